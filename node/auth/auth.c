/* auth: see auth.h.
 *
 * Why signed cookies and not a session table: a PoP must decide alone, with the mesh possibly
 * partitioned, and a session made at one PoP must hold at the next one a client's anycast
 * route lands on. A replicated session table would make every login a write that has to reach
 * the next PoP before the client does. A cookie signed by the mesh key carries its own proof;
 * what has to replicate is only the rare revocation, and that rides on the user record, which
 * every PoP already reads to check the user exists. The price: revocation is as fast as
 * replication (normally well under a second, a partition's length at worst), and a cookie
 * stays valid until expiry if the user record never changes.
 *
 * Signatures are made over a context string followed by the payload ("popmesh session v1",
 * "popmesh share v1", both NUL-terminated), so the mesh key's signature on one kind of token
 * can never be replayed as another kind, nor as a join token (pmt1., signed over its payload
 * alone, which starts with a msgpack array byte, never with 'p').
 *
 * Decoding is strict: the base64url text must be canonical (it re-encodes to the same
 * characters), the signature is checked before the payload is parsed, and the payload must be
 * exactly the expected array with nothing after it. */
#include "node/auth/auth.h"

#include "common/log.h"
#include "common/logesc.h"
#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fnmatch.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_CONTEXT "popmesh session v1"
#define SHARE_CONTEXT   "popmesh share v1"
#define APIKEY_CONTEXT  "popmesh apikey v1"
#define TOKEN_VERSION   1
#define SIG_BYTES       64
#define BODY_MAX        380 /* bytes of payload || signature that fit AUTH_TOKEN_MAX chars */

/* ---- names and keys ---------------------------------------------------------------------- */

static bool name_ok(const char *s)
{
    return nodecfg_check_name(s) == 0;
}

/* ---- users ------------------------------------------------------------------------------- */

int auth_password_hash(const char *pw, size_t pwlen, char *out, size_t outlen)
{
    if (pwlen < AUTH_PASSWORD_MIN || pwlen > AUTH_PASSWORD_MAX || outlen < crypto_pwhash_STRBYTES)
        return -EINVAL;
    if (crypto_pwhash_str_alg(out, pw, pwlen, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE, crypto_pwhash_ALG_ARGON2ID13))
        return -ENOMEM;
    return 0;
}

bool auth_password_verify(const char *hash, const char *pw, size_t pwlen)
{
    if (!hash || strncmp(hash, "$argon2id$", 10) != 0 || pwlen > AUTH_PASSWORD_MAX)
        return false;
    if (!memchr(hash, '\0', crypto_pwhash_STRBYTES))
        return false;
    return crypto_pwhash_str_verify(hash, pw, pwlen) == 0;
}

/* ---- signed tokens ----------------------------------------------------------------------- */

/* prefix || base64url(payload || Ed25519(context || payload)). */
static int sign_encode(const meshkey_t *k, const char *prefix, const char *context,
                       const msgpack_sbuffer *payload, char *out, size_t outlen)
{
    size_t cl = strlen(context) + 1, pl = strlen(prefix);
    uint8_t body[BODY_MAX], msg[BODY_MAX + 32];
    if (payload->size + SIG_BYTES > sizeof(body) || cl + payload->size > sizeof(msg))
        return -EINVAL;
    size_t need =
        pl + sodium_base64_encoded_len(payload->size + SIG_BYTES,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING); /* with NUL */
    if (need > outlen || need > AUTH_TOKEN_MAX + 1)
        return -EINVAL;
    memcpy(msg, context, cl);
    memcpy(msg + cl, payload->data, payload->size);
    memcpy(body, payload->data, payload->size);
    crypto_sign_detached(body + payload->size, NULL, msg, cl + payload->size, k->sk);
    memcpy(out, prefix, pl);
    sodium_bin2base64(out + pl, outlen - pl, body, payload->size + SIG_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

/* Checks the prefix, decodes canonical base64url, verifies the signature. On success the
 * payload is body[0 .. *plen). 0 or -EACCES with *why. */
static int verify_decode(const uint8_t mesh_pk[32], const char *prefix, const char *context,
                         const char *text, size_t len, uint8_t body[BODY_MAX], size_t *plen,
                         const char **why)
{
    size_t pl = strlen(prefix), cl = strlen(context) + 1, blen = 0;
    const char *end = NULL;
    if (len < pl || memcmp(text, prefix, pl) != 0) {
        *why = "not a token of this kind (wrong prefix)";
        return -EACCES;
    }
    if (len > AUTH_TOKEN_MAX) {
        *why = "too long";
        return -EACCES;
    }
    for (size_t i = pl; i < len; i++) {
        char c = text[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            *why = "not base64url";
            return -EACCES;
        }
    }
    if (sodium_base642bin(body, BODY_MAX, text + pl, len - pl, NULL, &blen, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != text + len) {
        *why = "not base64url";
        return -EACCES;
    }
    /* Canonical only: unused low bits in the last character would give one payload several
     * spellings. */
    char again[AUTH_TOKEN_MAX + 1];
    sodium_bin2base64(again, sizeof(again), body, blen, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (strlen(again) != len - pl || memcmp(again, text + pl, len - pl) != 0) {
        *why = "not canonical base64url";
        return -EACCES;
    }
    if (blen <= SIG_BYTES) {
        *why = "truncated";
        return -EACCES;
    }
    size_t n = blen - SIG_BYTES;
    uint8_t msg[BODY_MAX + 32];
    memcpy(msg, context, cl);
    memcpy(msg + cl, body, n);
    if (crypto_sign_verify_detached(body + n, msg, cl + n, mesh_pk) != 0) {
        *why = "signature does not verify (tampered, or another mesh's)";
        return -EACCES;
    }
    *plen = n;
    return 0;
}

/* A string field of a payload: a valid name, or "" if empty_ok. */
static int read_name(mpr_t *r, char *dst, bool empty_ok)
{
    const char *s;
    uint32_t sl;
    if (mpr_str(r, &s, &sl) || sl > NODECFG_NAME_MAX || memchr(s, '\0', sl))
        return -EBADMSG;
    memcpy(dst, s, sl);
    dst[sl] = '\0';
    if (sl == 0)
        return empty_ok ? 0 : -EBADMSG;
    return name_ok(dst) ? 0 : -EBADMSG;
}

static int read_nonce(mpr_t *r, uint8_t nonce[AUTH_NONCE_BYTES])
{
    const uint8_t *b;
    uint32_t bl;
    if (mpr_bin(r, &b, &bl) || bl != AUTH_NONCE_BYTES)
        return -EBADMSG;
    memcpy(nonce, b, AUTH_NONCE_BYTES);
    return 0;
}

static bool valid_scope_user(const char *user, const char *scope)
{
    if (*user && !name_ok(user))
        return false;
    if (*scope && !name_ok(scope))
        return false;
    return *user || *scope; /* a share session has a scope */
}

int auth_session_make(const meshkey_t *k, const char *user, uint64_t epoch, uint64_t now_ms,
                      uint64_t ttl_ms, const char *scope, char *out, size_t outlen)
{
    if (!user || !scope || !valid_scope_user(user, scope) || ttl_ms == 0 ||
        ttl_ms > AUTH_SESSION_TTL_MAX || now_ms > UINT64_MAX - ttl_ms)
        return -EINVAL;
    uint8_t nonce[AUTH_NONCE_BYTES];
    randombytes_buf(nonce, sizeof(nonce));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 7);
    msgpack_pack_uint32(&pk, TOKEN_VERSION);
    mpw_str(&pk, user);
    msgpack_pack_uint64(&pk, epoch);
    msgpack_pack_uint64(&pk, now_ms);
    msgpack_pack_uint64(&pk, now_ms + ttl_ms);
    mpw_str(&pk, scope);
    mpw_bin(&pk, nonce, sizeof(nonce));
    int rc = sign_encode(k, AUTH_SESSION_PREFIX, SESSION_CONTEXT, &sb, out, outlen);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int auth_session_verify(const uint8_t mesh_pk[32], const char *cookie, size_t len, uint64_t now_ms,
                        auth_session_t *c, const char **why)
{
    uint8_t body[BODY_MAX];
    size_t plen;
    memset(c, 0, sizeof(*c));
    if (verify_decode(mesh_pk, AUTH_SESSION_PREFIX, SESSION_CONTEXT, cookie, len, body, &plen, why))
        return -EACCES;
    mpr_t r;
    uint32_t n;
    uint64_t ver;
    mpr_init(&r, body, plen);
    if (mpr_array(&r, &n) || n != 7 || mpr_uint(&r, &ver) || ver != TOKEN_VERSION ||
        read_name(&r, c->user, true) || mpr_uint(&r, &c->epoch) || mpr_uint(&r, &c->issued_ms) ||
        mpr_uint(&r, &c->expires_ms) || read_name(&r, c->scope, true) || read_nonce(&r, c->nonce) ||
        r.left || !valid_scope_user(c->user, c->scope) || c->issued_ms > c->expires_ms) {
        memset(c, 0, sizeof(*c));
        *why = "malformed session payload";
        return -EACCES;
    }
    if (now_ms >= c->expires_ms) {
        *why = "session expired";
        return -EACCES;
    }
    if (c->issued_ms > now_ms + AUTH_CLOCK_SKEW_MS) {
        *why = "session issued in the future (clock skew?)";
        return -EACCES;
    }
    return 0;
}

int auth_session_check(store_t *store, const uint8_t mesh_pk[32], const char *cookie, size_t len,
                       uint64_t now_ms, const char *resource, auth_user_t *user_out,
                       const char **why)
{
    auth_session_t c;
    if (user_out)
        memset(user_out, 0, sizeof(*user_out));
    if (auth_session_verify(mesh_pk, cookie, len, now_ms, &c, why))
        return -EACCES;
    return auth_session_claims_check(store, &c, now_ms, resource, user_out, why);
}

int auth_session_claims_check(store_t *store, const auth_session_t *sc, uint64_t now_ms,
                              const char *resource, auth_user_t *user_out, const char **why)
{
    const auth_session_t c = *sc;
    auth_user_t u;
    if (user_out)
        memset(user_out, 0, sizeof(*user_out));
    if (now_ms >= c.expires_ms) {
        *why = "session expired";
        return -EACCES;
    }
    if (c.scope[0] && (!resource || strcmp(c.scope, resource) != 0)) {
        *why = "session is scoped to another resource";
        return -EACCES;
    }
    if (!c.user[0])
        return 0; /* a share session: its scope matched */
    int rc = auth_user_get(store, c.user, &u);
    if (rc == -ENOENT || rc == -EBADMSG) {
        *why = "the session's user does not exist";
        return -EACCES;
    }
    if (rc) {
        *why = "cannot read the user record";
        return rc;
    }
    if (u.removed) {
        *why = "the session's user was removed";
        return -EACCES;
    }
    if (u.session_epoch != c.epoch) {
        *why = "session revoked (user's session epoch changed)";
        return -EACCES;
    }
    if (user_out)
        *user_out = u;
    return 0;
}

/* ---- share links ------------------------------------------------------------------------- */

int auth_share_make(const meshkey_t *k, const char *resource, uint64_t expires_ms, char *out,
                    size_t outlen)
{
    if (!resource || !name_ok(resource) || expires_ms == 0)
        return -EINVAL;
    uint8_t nonce[AUTH_NONCE_BYTES];
    randombytes_buf(nonce, sizeof(nonce));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint32(&pk, TOKEN_VERSION);
    mpw_str(&pk, resource);
    msgpack_pack_uint64(&pk, expires_ms);
    mpw_bin(&pk, nonce, sizeof(nonce));
    int rc = sign_encode(k, AUTH_SHARE_PREFIX, SHARE_CONTEXT, &sb, out, outlen);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int auth_share_verify(const uint8_t mesh_pk[32], const char *token, size_t len, uint64_t now_ms,
                      auth_share_t *s, const char **why)
{
    uint8_t body[BODY_MAX];
    size_t plen;
    memset(s, 0, sizeof(*s));
    if (verify_decode(mesh_pk, AUTH_SHARE_PREFIX, SHARE_CONTEXT, token, len, body, &plen, why))
        return -EACCES;
    mpr_t r;
    uint32_t n;
    uint64_t ver;
    mpr_init(&r, body, plen);
    if (mpr_array(&r, &n) || n != 4 || mpr_uint(&r, &ver) || ver != TOKEN_VERSION ||
        read_name(&r, s->resource, false) || mpr_uint(&r, &s->expires_ms) ||
        read_nonce(&r, s->nonce) || r.left) {
        memset(s, 0, sizeof(*s));
        *why = "malformed share payload";
        return -EACCES;
    }
    if (now_ms >= s->expires_ms) {
        *why = "share link expired";
        return -EACCES;
    }
    return 0;
}

int auth_session_from_share(const meshkey_t *k, const auth_share_t *share, uint64_t now_ms,
                            uint64_t ttl_ms, char *out, size_t outlen)
{
    if (now_ms >= share->expires_ms || ttl_ms == 0)
        return -EINVAL;
    if (ttl_ms > share->expires_ms - now_ms)
        ttl_ms = share->expires_ms - now_ms;
    if (ttl_ms > AUTH_SESSION_TTL_MAX)
        ttl_ms = AUTH_SESSION_TTL_MAX;
    return auth_session_make(k, "", 0, now_ms, ttl_ms, share->resource, out, outlen);
}

/* ---- API keys ---------------------------------------------------------------------------- */

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
    if (!user || !name_ok(user) || textlen < AUTH_APIKEY_TEXT + 1 || now_ms > UINT64_MAX - ttl_ms)
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
    const char *end = NULL;
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
    for (size_t i = 0; i < b64len; i++) {
        char c = b64[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_')) {
            *why = "malformed API key";
            return -EACCES;
        }
    }
    if (sodium_base642bin(secret, 32, b64, b64len, NULL, &blen, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        blen != 32 || end != b64 + b64len) {
        *why = "malformed API key";
        return -EACCES;
    }
    char again[48];
    sodium_bin2base64(again, sizeof(again), secret, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    if (strlen(again) != b64len || memcmp(again, b64, b64len) != 0) {
        sodium_memzero(secret, 32);
        *why = "malformed API key (not canonical)";
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

/* ---- addresses and rules ----------------------------------------------------------------- */

struct rule_vec {
    auth_rule_t *v;
    size_t n;
};

/* rule/<resource>/<16 hex>: the key names the resource and the id. */
static int collect_rule(const store_entry_t *e, void *ctx)
{
    struct rule_vec *rv = ctx;
    size_t pl = strlen(AUTH_RULE_PREFIX);
    const char *why = "the key is not rule/<resource>/<16 hex>";
    const char *rest = e->key + pl;
    size_t rl = e->klen - pl;
    const char *slash = memchr(rest, '/', rl);
    char resource[NODECFG_NAME_MAX + 1];
    uint64_t id;
    if (slash && (size_t)(slash - rest) <= NODECFG_NAME_MAX &&
        authrec_id_parse(slash + 1, rl - (size_t)(slash - rest) - 1, &id) == 0) {
        memcpy(resource, rest, (size_t)(slash - rest));
        resource[slash - rest] = '\0';
        rv->v = xrealloc(rv->v, (rv->n + 1) * sizeof(*rv->v));
        if (auth_rule_parse(e->value, e->vlen, resource, id, &rv->v[rv->n], &why) == 0) {
            rv->n++;
            return 0;
        }
    }
    char ek[LOG_ESC_MAX];
    log_warn("auth: skipping unreadable record %s: %s", log_esc(ek, sizeof(ek), e->key, e->klen),
             why);
    return 0;
}

static int rule_order(const void *pa, const void *pb)
{
    const auth_rule_t *a = pa, *b = pb;
    int c = strcmp(a->resource, b->resource);
    if (c)
        return c;
    if (a->priority != b->priority)
        return a->priority < b->priority ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

int auth_rules_load(store_t *store, const char *resource, auth_rule_t **out, size_t *n)
{
    char prefix[AUTH_KEY_MAX];
    struct rule_vec rv = {0};
    *out = NULL;
    *n = 0;
    if (resource && *resource) {
        if (!name_ok(resource))
            return 0; /* no rules can exist for an invalid name */
        snprintf(prefix, sizeof(prefix), AUTH_RULE_PREFIX "%s/", resource);
    } else {
        snprintf(prefix, sizeof(prefix), AUTH_RULE_PREFIX);
    }
    int rc = store_list(store, prefix, strlen(prefix), collect_rule, &rv);
    if (rc) {
        free(rv.v);
        return rc;
    }
    if (rv.n > 1)
        qsort(rv.v, rv.n, sizeof(*rv.v), rule_order);
    *out = rv.v;
    *n = rv.n;
    return 0;
}

enum auth_decision auth_rules_match(const auth_rule_t *rules, size_t n, const auth_addr_t *client,
                                    const char *path, uint64_t *rule_id)
{
    for (size_t i = 0; i < n; i++) {
        const auth_rule_t *r = &rules[i];
        bool hit = r->cidr[0] ? auth_cidr_contains(&r->net, client)
                              : path && fnmatch(r->path, path, 0) == 0;
        if (!hit)
            continue;
        if (rule_id)
            *rule_id = r->id;
        return r->action == AUTH_ALLOW ? AUTH_DECISION_ALLOW : AUTH_DECISION_DENY;
    }
    if (rule_id)
        *rule_id = 0;
    return AUTH_DECISION_NONE;
}

int auth_rules_eval(store_t *store, const char *resource, const auth_addr_t *client,
                    const char *path, enum auth_decision *decision, uint64_t *rule_id)
{
    auth_rule_t *rules;
    size_t n;
    *decision = AUTH_DECISION_NONE;
    if (rule_id)
        *rule_id = 0;
    if (!resource || !*resource)
        return -EINVAL;
    int rc = auth_rules_load(store, resource, &rules, &n);
    if (rc)
        return rc;
    *decision = auth_rules_match(rules, n, client, path, rule_id);
    free(rules);
    return 0;
}

/* ---- login rate limiting ----------------------------------------------------------------- *
 *
 * A fixed table of entries, found through a hash of the key (keyed SipHash with a random key,
 * so a client cannot aim keys at one bucket), linked in LRU order. A full table evicts the
 * least recently used key: a flood of fresh keys can thus give an old key a fresh bucket, which
 * is why the per-user bucket and the per-address bucket are both checked. A bucket's level is
 * counted in ms of refill (one attempt = refill_ms), so refill is exact in integers however
 * often it is asked. */

#define RL_NONE UINT32_MAX

struct rl_entry {
    uint64_t h;           /* SipHash of the key: the key's identity */
    uint64_t last_ms;     /* when tokens was last brought up to date */
    uint64_t level;       /* ms of refill held; one attempt costs refill_ms */
    uint32_t next;        /* hash chain */
    uint32_t prev, newer; /* LRU list: prev is older, newer is more recent */
};

struct auth_ratelimit {
    unsigned burst;
    uint64_t refill_ms;
    size_t cap, used;
    uint32_t nbuckets;
    uint32_t *buckets;
    struct rl_entry *e;
    uint32_t oldest, newest;
    uint8_t key[crypto_shorthash_KEYBYTES];
};

auth_ratelimit_t *auth_ratelimit_new(unsigned burst, uint64_t refill_ms, size_t entries)
{
    if (burst == 0 || refill_ms == 0 || entries == 0 || entries >= RL_NONE / 2 ||
        refill_ms > UINT64_MAX / 2 / burst) {
        errno = EINVAL;
        return NULL;
    }
    auth_ratelimit_t *rl = xcalloc(1, sizeof(*rl));
    rl->burst = burst;
    rl->refill_ms = refill_ms;
    rl->cap = entries;
    rl->nbuckets = 1;
    while (rl->nbuckets < entries)
        rl->nbuckets <<= 1;
    rl->buckets = xmalloc(rl->nbuckets * sizeof(*rl->buckets));
    for (uint32_t i = 0; i < rl->nbuckets; i++)
        rl->buckets[i] = RL_NONE;
    rl->e = xcalloc(entries, sizeof(*rl->e));
    rl->oldest = rl->newest = RL_NONE;
    randombytes_buf(rl->key, sizeof(rl->key));
    return rl;
}

void auth_ratelimit_destroy(auth_ratelimit_t **rlp)
{
    if (!rlp || !*rlp)
        return;
    free((*rlp)->buckets);
    free((*rlp)->e);
    free(*rlp);
    *rlp = NULL;
}

size_t auth_ratelimit_size(const auth_ratelimit_t *rl)
{
    return rl->used;
}

static void lru_unlink(auth_ratelimit_t *rl, uint32_t i)
{
    struct rl_entry *x = &rl->e[i];
    if (x->prev != RL_NONE)
        rl->e[x->prev].newer = x->newer;
    else
        rl->oldest = x->newer;
    if (x->newer != RL_NONE)
        rl->e[x->newer].prev = x->prev;
    else
        rl->newest = x->prev;
}

static void lru_push(auth_ratelimit_t *rl, uint32_t i)
{
    struct rl_entry *x = &rl->e[i];
    x->prev = rl->newest;
    x->newer = RL_NONE;
    if (rl->newest != RL_NONE)
        rl->e[rl->newest].newer = i;
    rl->newest = i;
    if (rl->oldest == RL_NONE)
        rl->oldest = i;
}

static void chain_remove(auth_ratelimit_t *rl, uint32_t i)
{
    uint32_t *p = &rl->buckets[rl->e[i].h & (rl->nbuckets - 1)];
    while (*p != RL_NONE && *p != i)
        p = &rl->e[*p].next;
    if (*p == i)
        *p = rl->e[i].next;
}

bool auth_ratelimit_allow(auth_ratelimit_t *rl, const char *key, uint64_t now_ms)
{
    uint64_t h;
    crypto_shorthash((uint8_t *)&h, (const uint8_t *)key, strlen(key), rl->key);
    uint32_t b = (uint32_t)(h & (rl->nbuckets - 1)), i = rl->buckets[b];
    while (i != RL_NONE && rl->e[i].h != h)
        i = rl->e[i].next;
    uint64_t full = (uint64_t)rl->burst * rl->refill_ms;
    if (i == RL_NONE) {
        if (rl->used < rl->cap) {
            i = (uint32_t)rl->used++;
        } else {
            i = rl->oldest;
            lru_unlink(rl, i);
            chain_remove(rl, i);
        }
        rl->e[i] = (struct rl_entry){.h = h, .last_ms = now_ms, .level = full};
        rl->e[i].next = rl->buckets[b];
        rl->buckets[b] = i;
    } else {
        lru_unlink(rl, i);
    }
    lru_push(rl, i);
    struct rl_entry *x = &rl->e[i];
    if (now_ms > x->last_ms) {
        uint64_t dt = now_ms - x->last_ms;
        x->level = dt >= full - x->level ? full : x->level + dt;
        x->last_ms = now_ms;
    }
    if (x->level < rl->refill_ms)
        return false;
    x->level -= rl->refill_ms;
    return true;
}
