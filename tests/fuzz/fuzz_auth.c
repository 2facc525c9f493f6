/* Fuzzes the decoders of edge authentication: what a client sends (session cookies, share
 * tokens, API keys: node/auth/) and what other nodes replicate (user/, apikey/, rule/ records,
 * the addresses, CIDRs and globs inside them: node/records/user.h, apikey.h, rule.h, cidr.h).
 *
 * The first byte picks the decoder; the rest is its input. Cookies and share tokens are
 * checked for their signature before their payload is parsed, so random bytes would never
 * reach the payload parser: modes 4 and 5 sign the input as a payload with the harness's own
 * mesh key (the context strings are docs/security.md's) and feed the resulting token through
 * the real verifier. Any accepted input must satisfy the decoder's promises (valid names, a
 * user or a scope, records that re-encode to what they decoded to). */
#include "node/auth/auth.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static meshkey_t key;
static bool ready;

static void setup(void)
{
    if (ready)
        return;
    if (sodium_init() < 0)
        abort();
    uint8_t seed[32] = {1, 2, 3};
    crypto_sign_seed_keypair(key.pk, key.sk, seed);
    ready = true;
}

static const uint64_t NOW = 1700000000000ull;

static void check_session(const char *text, size_t len)
{
    auth_session_t s;
    const char *why = NULL;
    int rc = auth_session_verify(key.pk, text, len, NOW, &s, &why);
    if (rc != 0) {
        if (rc != -EACCES || !why)
            abort();
        return;
    }
    if ((!s.user[0] && !s.scope[0]) || (s.user[0] && nodecfg_check_name(s.user)) ||
        (s.scope[0] && nodecfg_check_name(s.scope)) || NOW >= s.expires_ms)
        abort();
}

static void check_share(const char *text, size_t len)
{
    auth_share_t s;
    const char *why = NULL;
    int rc = auth_share_verify(key.pk, text, len, NOW, &s, &why);
    if (rc != 0) {
        if (rc != -EACCES || !why)
            abort();
        return;
    }
    if (nodecfg_check_name(s.resource) || NOW >= s.expires_ms)
        abort();
}

/* Signs payload as the mesh would and verifies the token. */
static void signed_payload(const uint8_t *p, size_t n, bool session)
{
    const char *ctx = session ? "popmesh session v1" : "popmesh share v1";
    const char *prefix = session ? AUTH_SESSION_PREFIX : AUTH_SHARE_PREFIX;
    size_t cl = strlen(ctx) + 1;
    if (n > 300)
        return;
    uint8_t msg[400], body[400];
    char text[AUTH_TOKEN_MAX + 64];
    memcpy(msg, ctx, cl);
    memcpy(msg + cl, p, n);
    memcpy(body, p, n);
    crypto_sign_detached(body + n, NULL, msg, cl + n, key.sk);
    size_t pl = strlen(prefix);
    memcpy(text, prefix, pl);
    sodium_bin2base64(text + pl, sizeof(text) - pl, body, n + 64,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (session)
        check_session(text, strlen(text));
    else
        check_share(text, strlen(text));
}

static void check_user(const uint8_t *d, size_t n)
{
    auth_user_t u, back;
    const char *why = NULL;
    int rc = auth_user_parse(d, n, "alice", &u, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    auth_user_pack(&pk, &u);
    if (auth_user_parse((const uint8_t *)sb.data, sb.size, "alice", &back, &why) != 0 ||
        memcmp(&u, &back, sizeof(u)) != 0)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void check_apikey_record(const uint8_t *d, size_t n)
{
    auth_apikey_t a, back;
    const char *why = NULL;
    int rc = auth_apikey_parse(d, n, 7, &a, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    auth_apikey_pack(&pk, &a);
    if (auth_apikey_parse((const uint8_t *)sb.data, sb.size, 7, &back, &why) != 0 ||
        memcmp(&a, &back, sizeof(a)) != 0)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void check_rule_record(const uint8_t *d, size_t n)
{
    auth_rule_t r, back;
    const char *why = NULL;
    int rc = auth_rule_parse(d, n, "web", 9, &r, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    auth_rule_pack(&pk, &r);
    if (auth_rule_parse((const uint8_t *)sb.data, sb.size, "web", 9, &back, &why) != 0 ||
        memcmp(&r, &back, sizeof(r)) != 0)
        abort();
    msgpack_sbuffer_destroy(&sb);
    auth_addr_t a = r.net.net;
    if (r.cidr[0] && !auth_cidr_contains(&r.net, &a))
        abort();
    auth_rules_match(&r, 1, &a, "/some/path", NULL);
}

static void check_text(const uint8_t *d, size_t n)
{
    char s[256];
    if (n >= sizeof(s))
        return;
    memcpy(s, d, n);
    s[n] = '\0';
    auth_cidr_t c;
    auth_addr_t a;
    const char *why = NULL;
    if (auth_cidr_parse(s, &c, &why) == 0) {
        if (c.prefix > (c.net.family == AF_INET ? 32u : 128u) || !auth_cidr_contains(&c, &c.net))
            abort();
    } else if (!why) {
        abort();
    }
    if (auth_addr_parse(s, &a) == 0 && a.family != AF_INET && a.family != AF_INET6)
        abort();
    why = NULL;
    if (auth_glob_check(s, &why) != 0 && !why)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    setup();
    if (size < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 9) {
    case 0:
        check_session((const char *)d, n);
        break;
    case 1:
        check_share((const char *)d, n);
        break;
    case 2: {
        uint64_t id;
        uint8_t secret[32];
        const char *why = NULL;
        int rc = auth_apikey_token_parse((const char *)d, n, &id, secret, &why);
        if (rc != 0 && (rc != -EACCES || !why))
            abort();
        if (rc == 0 && n != AUTH_APIKEY_TEXT)
            abort();
        break;
    }
    case 3:
        check_user(d, n);
        break;
    case 4:
        signed_payload(d, n, true);
        break;
    case 5:
        signed_payload(d, n, false);
        break;
    case 6:
        check_apikey_record(d, n);
        break;
    case 7:
        check_rule_record(d, n);
        break;
    case 8:
        check_text(d, n);
        break;
    }
    return 0;
}
