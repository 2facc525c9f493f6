/* session: session cookies and share links (see session.h).
 *
 * Threat model: a client holds the token and may alter, truncate, replay or forge it; a
 * token from another mesh, or the mesh key's signature on another kind of token, must never
 * pass. Only holders of the mesh key can mint tokens (docs/security.md, "Never stored, never
 * logged"); a stolen cookie is good until it expires or its user's session epoch changes.
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
#include "node/auth/session.h"

#include "common/b64url.h"
#include "common/mp.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#define SESSION_CONTEXT "popmesh session v1"
#define SHARE_CONTEXT   "popmesh share v1"
#define TOKEN_VERSION   1
#define SIG_BYTES       64
#define BODY_MAX        380 /* bytes of payload || signature that fit AUTH_TOKEN_MAX chars */

static bool name_ok(const char *s)
{
    return nodecfg_check_name(s) == 0;
}

/* ---- signed tokens ----------------------------------------------------------------------- */

/* prefix || base64url(payload || Ed25519(context || payload)). */
static int sign_encode(const uint8_t sk[64], const char *prefix, const char *context,
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
    crypto_sign_detached(body + payload->size, NULL, msg, cl + payload->size, sk);
    memcpy(out, prefix, pl);
    sodium_bin2base64(out + pl, outlen - pl, body, payload->size + SIG_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return 0;
}

/* Checks the prefix and length, decodes canonical base64url. On success the payload is
 * body[0 .. *plen) and the signature the 64 bytes after it. 0 or -EACCES with *why. */
static int decode_body(const char *prefix, const char *text, size_t len, uint8_t body[BODY_MAX],
                       size_t *plen, const char **why)
{
    size_t pl = strlen(prefix), blen = 0;
    if (len < pl || memcmp(text, prefix, pl) != 0) {
        *why = "not a token of this kind (wrong prefix)";
        return -EACCES;
    }
    if (len > AUTH_TOKEN_MAX) {
        *why = "too long";
        return -EACCES;
    }
    /* Canonical only: unused low bits in the last character would give one payload several
     * spellings. */
    int rc = b64url_decode(text + pl, len - pl, body, BODY_MAX, &blen);
    if (rc) {
        *why = rc == -EILSEQ ? "not canonical base64url" : "not base64url";
        return -EACCES;
    }
    if (blen <= SIG_BYTES) {
        *why = "truncated";
        return -EACCES;
    }
    *plen = blen - SIG_BYTES;
    return 0;
}

static int check_sig(const uint8_t pk[32], const char *context, const uint8_t *body, size_t n,
                     const char **why)
{
    size_t cl = strlen(context) + 1;
    uint8_t msg[BODY_MAX + 32];
    memcpy(msg, context, cl);
    memcpy(msg + cl, body, n);
    if (crypto_sign_verify_detached(body + n, msg, cl + n, pk) != 0) {
        *why = "signature does not verify (tampered, or another mesh's)";
        return -EACCES;
    }
    return 0;
}

/* Checks the prefix, decodes canonical base64url, verifies the signature. On success the
 * payload is body[0 .. *plen). 0 or -EACCES with *why. */
static int verify_decode(const uint8_t mesh_pk[32], const char *prefix, const char *context,
                         const char *text, size_t len, uint8_t body[BODY_MAX], size_t *plen,
                         const char **why)
{
    if (decode_body(prefix, text, len, body, plen, why))
        return -EACCES;
    return check_sig(mesh_pk, context, body, *plen, why);
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
    /* a user may be a provider's ("IDP:SUBJECT"); scopes are held to name_ok after */
    return auth_user_name_ok(dst) ? 0 : -EBADMSG;
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
    if (*user && !auth_user_name_ok(user))
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
    int rc = sign_encode(k->sk, AUTH_SESSION_PREFIX, SESSION_CONTEXT, &sb, out, outlen);
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
    int rc = sign_encode(k->sk, AUTH_SHARE_PREFIX, SHARE_CONTEXT, &sb, out, outlen);
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

/* ---- signed by the PoP that made them ------------------------------------------------------- */

#define SESSION2_CONTEXT "popmesh session v2"
#define SHARE2_CONTEXT   "popmesh share v2"
#define TOKEN_VERSION2   2

/* This PoP's signing key, if its own certificate lets it issue sessions. */
static int self_may_issue(const auth_keys_t *k, uint64_t now_ms, const char **why)
{
    uint8_t pk[32];
    if (!k->self_sk || !k->signer_key) {
        *why = "this PoP has no signing key";
        return -EPERM;
    }
    if (k->signer_key(k->ctx, k->self_id, AUTH_CAP_ISSUE_SESSIONS, now_ms, pk, why))
        return -EPERM;
    return 0;
}

int auth_cookie_make(const auth_keys_t *k, const char *user, uint64_t epoch, uint64_t now_ms,
                     uint64_t ttl_ms, const char *scope, char *out, size_t outlen,
                     const char **why)
{
    *why = "invalid session";
    if (!k->self_id) {
        if (!k->mesh) {
            *why = "this PoP holds no key that signs sessions";
            return -EPERM;
        }
        return auth_session_make(k->mesh, user, epoch, now_ms, ttl_ms, scope, out, outlen);
    }
    if (!user || !scope || !valid_scope_user(user, scope) || ttl_ms == 0 ||
        ttl_ms > AUTH_SESSION_TTL_MAX || now_ms > UINT64_MAX - ttl_ms)
        return -EINVAL;
    int rc = self_may_issue(k, now_ms, why);
    if (rc)
        return rc;
    uint8_t nonce[AUTH_NONCE_BYTES];
    randombytes_buf(nonce, sizeof(nonce));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 8);
    msgpack_pack_uint32(&pk, TOKEN_VERSION2);
    mpw_str(&pk, user);
    msgpack_pack_uint64(&pk, epoch);
    msgpack_pack_uint64(&pk, now_ms);
    msgpack_pack_uint64(&pk, now_ms + ttl_ms);
    mpw_str(&pk, scope);
    mpw_bin(&pk, nonce, sizeof(nonce));
    msgpack_pack_uint64(&pk, k->self_id);
    rc = sign_encode(k->self_sk, AUTH_SESSION2_PREFIX, SESSION2_CONTEXT, &sb, out, outlen);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* The signer's key, then its signature over the payload. */
static int check_signer_sig(const auth_keys_t *k, uint64_t signer, const char *context,
                            const uint8_t *body, size_t n, uint64_t now_ms, const char **why)
{
    uint8_t pk[32];
    if (!k->signer_key || !signer) {
        *why = "no signer";
        return -EACCES;
    }
    if (k->signer_key(k->ctx, signer, AUTH_CAP_ISSUE_SESSIONS, now_ms, pk, why))
        return -EACCES;
    return check_sig(pk, context, body, n, why);
}

int auth_cookie_signer_check(const auth_keys_t *k, const auth_session_t *c, uint64_t now_ms,
                             const char **why)
{
    if (!c->signer) {
        if (!k->mesh || c->issued_ms >= k->legacy_until_ms) {
            *why = "session signed by the mesh key, no longer accepted (sign in again)";
            return -EACCES;
        }
        return 0;
    }
    uint8_t pk[32];
    if (!k->signer_key || k->signer_key(k->ctx, c->signer, AUTH_CAP_ISSUE_SESSIONS, now_ms, pk, why))
        return -EACCES;
    return 0;
}

int auth_cookie_verify(const auth_keys_t *k, const char *cookie, size_t len, uint64_t now_ms,
                       auth_session_t *c, const char **why)
{
    size_t p1 = strlen(AUTH_SESSION_PREFIX);
    memset(c, 0, sizeof(*c));
    if (len >= p1 && !memcmp(cookie, AUTH_SESSION_PREFIX, p1)) {
        if (!k->mesh) {
            *why = "session signed by the mesh key, no longer accepted (sign in again)";
            return -EACCES;
        }
        if (auth_session_verify(k->mesh->pk, cookie, len, now_ms, c, why))
            return -EACCES;
        return auth_cookie_signer_check(k, c, now_ms, why);
    }
    uint8_t body[BODY_MAX];
    size_t plen;
    if (decode_body(AUTH_SESSION2_PREFIX, cookie, len, body, &plen, why))
        return -EACCES;
    mpr_t r;
    uint32_t n;
    uint64_t ver;
    mpr_init(&r, body, plen);
    if (mpr_array(&r, &n) || n != 8 || mpr_uint(&r, &ver) || ver != TOKEN_VERSION2 ||
        read_name(&r, c->user, true) || mpr_uint(&r, &c->epoch) || mpr_uint(&r, &c->issued_ms) ||
        mpr_uint(&r, &c->expires_ms) || read_name(&r, c->scope, true) || read_nonce(&r, c->nonce) ||
        mpr_uint(&r, &c->signer) || r.left || !c->signer || !valid_scope_user(c->user, c->scope) ||
        c->issued_ms > c->expires_ms) {
        memset(c, 0, sizeof(*c));
        *why = "malformed session payload";
        return -EACCES;
    }
    if (check_signer_sig(k, c->signer, SESSION2_CONTEXT, body, plen, now_ms, why)) {
        memset(c, 0, sizeof(*c));
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

int auth_link_make(const auth_keys_t *k, const char *resource, uint64_t now_ms,
                   uint64_t expires_ms, char *out, size_t outlen, const char **why)
{
    *why = "invalid share link";
    if (!k->self_id) {
        if (!k->mesh) {
            *why = "this PoP holds no key that signs share links";
            return -EPERM;
        }
        return auth_share_make(k->mesh, resource, expires_ms, out, outlen);
    }
    if (!resource || !name_ok(resource) || expires_ms == 0)
        return -EINVAL;
    int rc = self_may_issue(k, now_ms, why);
    if (rc)
        return rc;
    uint8_t nonce[AUTH_NONCE_BYTES];
    randombytes_buf(nonce, sizeof(nonce));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint32(&pk, TOKEN_VERSION2);
    mpw_str(&pk, resource);
    msgpack_pack_uint64(&pk, expires_ms);
    mpw_bin(&pk, nonce, sizeof(nonce));
    msgpack_pack_uint64(&pk, k->self_id);
    rc = sign_encode(k->self_sk, AUTH_SHARE2_PREFIX, SHARE2_CONTEXT, &sb, out, outlen);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

int auth_link_verify(const auth_keys_t *k, const char *token, size_t len, uint64_t now_ms,
                     auth_share_t *s, const char **why)
{
    size_t p1 = strlen(AUTH_SHARE_PREFIX);
    memset(s, 0, sizeof(*s));
    if (len >= p1 && !memcmp(token, AUTH_SHARE_PREFIX, p1)) {
        /* A pmsh1. link carries no issue time: it passes only while the upgrade window is
         * open (legacy_until_ms is UINT64_MAX on a mesh with no root yet). */
        if (!k->mesh || now_ms >= k->legacy_until_ms) {
            *why = "share link signed by the mesh key, no longer accepted";
            return -EACCES;
        }
        return auth_share_verify(k->mesh->pk, token, len, now_ms, s, why);
    }
    uint8_t body[BODY_MAX];
    size_t plen;
    if (decode_body(AUTH_SHARE2_PREFIX, token, len, body, &plen, why))
        return -EACCES;
    mpr_t r;
    uint32_t n;
    uint64_t ver;
    mpr_init(&r, body, plen);
    if (mpr_array(&r, &n) || n != 5 || mpr_uint(&r, &ver) || ver != TOKEN_VERSION2 ||
        read_name(&r, s->resource, false) || mpr_uint(&r, &s->expires_ms) ||
        read_nonce(&r, s->nonce) || mpr_uint(&r, &s->signer) || r.left || !s->signer) {
        memset(s, 0, sizeof(*s));
        *why = "malformed share payload";
        return -EACCES;
    }
    if (check_signer_sig(k, s->signer, SHARE2_CONTEXT, body, plen, now_ms, why)) {
        memset(s, 0, sizeof(*s));
        return -EACCES;
    }
    if (now_ms >= s->expires_ms) {
        *why = "share link expired";
        return -EACCES;
    }
    return 0;
}

int auth_cookie_from_share(const auth_keys_t *k, const auth_share_t *share, uint64_t now_ms,
                           uint64_t ttl_ms, char *out, size_t outlen, const char **why)
{
    *why = "invalid share link";
    if (now_ms >= share->expires_ms || ttl_ms == 0)
        return -EINVAL;
    if (ttl_ms > share->expires_ms - now_ms)
        ttl_ms = share->expires_ms - now_ms;
    if (ttl_ms > AUTH_SESSION_TTL_MAX)
        ttl_ms = AUTH_SESSION_TTL_MAX;
    return auth_cookie_make(k, "", 0, now_ms, ttl_ms, share->resource, out, outlen, why);
}
