/* Fuzzes the decoders of sessions and share links signed by their PoP (node/auth/session.h:
 * pms2., pmsh2.). Their payload names the signer, so it is parsed before the signature is
 * checked: random bytes reach the payload parser here. The first byte picks the mode: 0 and 1
 * feed the input as cookie or link text; 2 and 3 sign it as a payload with the harness's key
 * (which signer_key hands out for every signer but 0) and feed the token through the real
 * verifier. Anything accepted must keep the decoder's promises. */
#include "node/auth/session.h"
#include "node/records/user.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t pk[32], sk[64];
static bool ready;
static const uint64_t NOW = 1700000000000ull;

static int signer_key(void *ctx, uint64_t signer, uint32_t need, uint64_t now_ms, uint8_t out[32],
                      const char **why)
{
    (void)ctx;
    (void)need;
    (void)now_ms;
    if (signer == 0 || signer == 7) { /* 7: a removed PoP */
        *why = "no such signer";
        return -EACCES;
    }
    memcpy(out, pk, 32);
    return 0;
}

static const auth_keys_t keys = {
    .signer_key = signer_key, .self_id = 1, .self_sk = sk, .legacy_until_ms = 0};

static void check_cookie(const char *t, size_t n)
{
    auth_session_t c;
    const char *why = NULL;
    int rc = auth_cookie_verify(&keys, t, n, NOW, &c, &why);
    if (rc) {
        if (rc != -EACCES || !why)
            abort();
        return;
    }
    if (!c.signer || c.signer == 7 || (!c.user[0] && !c.scope[0]) ||
        (c.user[0] && !auth_user_name_ok(c.user)) || (c.scope[0] && nodecfg_check_name(c.scope)) ||
        NOW >= c.expires_ms || c.issued_ms > c.expires_ms)
        abort();
}

static void check_link(const char *t, size_t n)
{
    auth_share_t s;
    const char *why = NULL;
    int rc = auth_link_verify(&keys, t, n, NOW, &s, &why);
    if (rc) {
        if (rc != -EACCES || !why)
            abort();
        return;
    }
    if (!s.signer || s.signer == 7 || nodecfg_check_name(s.resource) || NOW >= s.expires_ms)
        abort();
}

static void signed_payload(const uint8_t *p, size_t n, bool session)
{
    const char *ctx = session ? "popmesh session v2" : "popmesh share v2";
    const char *prefix = session ? AUTH_SESSION2_PREFIX : AUTH_SHARE2_PREFIX;
    size_t cl = strlen(ctx) + 1, pl = strlen(prefix);
    if (n > 300)
        return;
    uint8_t msg[400], body[400];
    char text[AUTH_TOKEN_MAX + 64];
    memcpy(msg, ctx, cl);
    memcpy(msg + cl, p, n);
    memcpy(body, p, n);
    crypto_sign_detached(body + n, NULL, msg, cl + n, sk);
    memcpy(text, prefix, pl);
    sodium_bin2base64(text + pl, sizeof(text) - pl, body, n + 64,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (session)
        check_cookie(text, strlen(text));
    else
        check_link(text, strlen(text));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        uint8_t seed[32] = {9, 8, 7};
        crypto_sign_seed_keypair(pk, sk, seed);
        ready = true;
    }
    if (size < 1)
        return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0:
        check_cookie((const char *)p, n);
        break;
    case 1:
        check_link((const char *)p, n);
        break;
    case 2:
        signed_payload(p, n, true);
        break;
    default:
        signed_payload(p, n, false);
        break;
    }
    return 0;
}
