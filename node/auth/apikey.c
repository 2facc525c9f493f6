/* apikey: API key bearer tokens (see apikey.h).
 *
 * Threat model: a client presents any string as a key; a copy of the replicated store (a
 * backup, a compromised PoP's disk) must not yield a usable key. So the secret exists only in
 * the token handed out once (never stored, never logged), the record holds BLAKE2b-256 over a
 * context string, the id and the secret, and the comparison is constant time. A fast hash is
 * enough: the secret is 32 random bytes, not a password, so there is nothing to guess at.
 * The id is bound into the hash, so a hash copied into another record verifies nothing.
 *
 * The token must be canonical (16 lowercase hex digits, base64url that re-encodes to the same
 * characters), so one key has exactly one spelling. */
#include "node/auth/apikey.h"

#include "common/b64url.h"
#include "common/log.h"
#include "common/logesc.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#define APIKEY_CONTEXT "popmesh apikey v1"

static void apikey_hash(uint64_t id, const uint8_t secret[32], uint8_t out[32])
{
    crypto_generichash_state st;
    uint8_t idb[8];
    for (int i = 0; i < 8; i++)
        idb[i] = (uint8_t)(id >> (56 - 8 * i));
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)APIKEY_CONTEXT, sizeof(APIKEY_CONTEXT));
    crypto_generichash_update(&st, idb, sizeof(idb));
    crypto_generichash_update(&st, secret, 32);
    crypto_generichash_final(&st, out, 32);
}

int auth_apikey_new(const char *user, uint64_t now_ms, uint64_t ttl_ms, auth_apikey_t *rec,
                    char *text, size_t textlen)
{
    if (!user || nodecfg_check_name(user) != 0 || textlen < AUTH_APIKEY_TEXT + 1 ||
        now_ms > UINT64_MAX - ttl_ms)
        return -EINVAL;
    uint8_t secret[32];
    memset(rec, 0, sizeof(*rec));
    do
        randombytes_buf(&rec->id, sizeof(rec->id));
    while (rec->id == 0);
    randombytes_buf(secret, sizeof(secret));
    snprintf(rec->user, sizeof(rec->user), "%s", user);
    apikey_hash(rec->id, secret, rec->hash);
    rec->created_ms = now_ms;
    rec->expires_ms = ttl_ms ? now_ms + ttl_ms : 0;
    int n = snprintf(text, textlen, AUTH_APIKEY_TPREFIX "%016llx.", (unsigned long long)rec->id);
    sodium_bin2base64(text + n, textlen - (size_t)n, secret, sizeof(secret),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(secret, sizeof(secret));
    return 0;
}

int auth_apikey_token_parse(const char *token, size_t len, uint64_t *id, uint8_t secret[32],
                            const char **why)
{
    size_t pl = strlen(AUTH_APIKEY_TPREFIX), blen = 0;
    if (len < pl || memcmp(token, AUTH_APIKEY_TPREFIX, pl) != 0) {
        *why = "not an API key (wrong prefix)";
        return -EACCES;
    }
    if (len != AUTH_APIKEY_TEXT || token[pl + 16] != '.' || authrec_id_parse(token + pl, 16, id)) {
        *why = "malformed API key";
        return -EACCES;
    }
    const char *b64 = token + pl + 17;
    size_t b64len = len - pl - 17;
    int rc = b64url_decode(b64, b64len, secret, 32, &blen);
    if (rc || blen != 32) {
        sodium_memzero(secret, 32);
        *why = rc == -EILSEQ ? "malformed API key (not canonical)" : "malformed API key";
        return -EACCES;
    }
    return 0;
}

int auth_apikey_check(store_t *store, const char *token, size_t len, uint64_t now_ms,
                      auth_user_t *user_out, const char **why)
{
    uint64_t id;
    uint8_t secret[32], h[32];
    char key[AUTH_KEY_MAX];
    store_entry_t e;
    auth_apikey_t a;
    auth_user_t u;
    if (user_out)
        memset(user_out, 0, sizeof(*user_out));
    if (auth_apikey_token_parse(token, len, &id, secret, why))
        return -EACCES;
    apikey_hash(id, secret, h);
    sodium_memzero(secret, sizeof(secret));
    auth_apikey_key(id, key, sizeof(key));
    int rc = store_get(store, key, strlen(key), &e);
    if (rc == -ENOENT) {
        *why = "unknown API key";
        return -EACCES;
    }
    if (rc) {
        *why = "cannot read the API key record";
        return rc;
    }
    const char *pwhy = "";
    rc = auth_apikey_parse(e.value, e.vlen, id, &a, &pwhy);
    store_entry_free(&e);
    if (rc) {
        char ek[LOG_ESC_MAX];
        log_warn("auth: record %s is unreadable: %s", log_escs(ek, sizeof(ek), key), pwhy);
        *why = "unreadable API key record";
        return -EACCES;
    }
    if (sodium_memcmp(a.hash, h, 32) != 0) {
        *why = "wrong API key secret";
        return -EACCES;
    }
    if (a.revoked) {
        *why = "API key revoked";
        return -EACCES;
    }
    if (a.expires_ms && now_ms >= a.expires_ms) {
        *why = "API key expired";
        return -EACCES;
    }
    rc = auth_user_get(store, a.user, &u);
    if (rc == -ENOENT || rc == -EBADMSG || (rc == 0 && u.removed)) {
        *why = "the API key's user does not exist";
        return -EACCES;
    }
    if (rc) {
        *why = "cannot read the user record";
        return rc;
    }
    if (user_out)
        *user_out = u;
    return 0;
}
