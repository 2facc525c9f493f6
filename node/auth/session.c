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
 * characters), the signature is checked before the payload is parsed (a pms2./pmsh2. payload,
 * which names its signer, is parsed first and used only after; token_open), and the payload
 * must be exactly the expected array with nothing after it. */
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

/* ---- the two formats ------------------------------------------------------------------------
 * Each kind of token is made and read by one path whatever its format: format 1 (pms1.,
 * pmsh1.) is signed by the mesh key, format 2 (pms2., pmsh2.) by the PoP its payload names in a
 * last field (session.h). The format picks the prefix, the context, the payload's version and
 * length, and how the signature is checked. */

#define SESSION2_CONTEXT     "popmesh session v2"
#define SHARE2_CONTEXT       "popmesh share v2"
#define TOKEN_VERSION2       2
#define MESH_SESSION_REFUSED "session signed by the mesh key, no longer accepted (sign in again)"

static bool has_prefix(const char *text, size_t len, const char *prefix)
{
    size_t pl = strlen(prefix);
    return len >= pl && !memcmp(text, prefix, pl);
}

static bool session_args_ok(const char *user, const char *scope, uint64_t now_ms, uint64_t ttl_ms)
{
    return user && scope && valid_scope_user(user, scope) && ttl_ms != 0 &&
           ttl_ms <= AUTH_SESSION_TTL_MAX && now_ms <= UINT64_MAX - ttl_ms;
}

static bool share_args_ok(const char *resource, uint64_t expires_ms)
{
    return resource && name_ok(resource) && expires_ms != 0;
}

/* Format 2: the signer's certified key, then its signature over the payload. */
static int check_signer_sig(const auth_keys_t *k, uint64_t signer, const char *context,
                            const uint8_t *body, size_t n, uint64_t now_ms, const char **why)
{
    uint8_t pk[32];
    if (!k || !k->signer_key || !signer) {
        *why = "no signer";
        return -EACCES;
    }
    if (k->signer_key(k->ctx, signer, AUTH_CAP_ISSUE_SESSIONS, now_ms, pk, why))
        return -EACCES;
    return check_sig(pk, context, body, n, why);
}

/* A session payload of the given format into dst (auth_session_t): 0 or -EBADMSG. */
static int session_parse(const uint8_t *body, size_t plen, int format, void *dst)
{
    auth_session_t *c = dst;
    mpr_t r;
    uint32_t n;
    uint64_t ver;
    mpr_init(&r, body, plen);
    if (mpr_array(&r, &n) || n != (format == 2 ? 8u : 7u) || mpr_uint(&r, &ver) ||
        ver != (format == 2 ? TOKEN_VERSION2 : TOKEN_VERSION) || read_name(&r, c->user, true) ||
        mpr_uint(&r, &c->epoch) || mpr_uint(&r, &c->issued_ms) || mpr_uint(&r, &c->expires_ms) ||
        read_name(&r, c->scope, true) || read_nonce(&r, c->nonce) ||
        (format == 2 && (mpr_uint(&r, &c->signer) || !c->signer)) || r.left ||
        !valid_scope_user(c->user, c->scope) || c->issued_ms > c->expires_ms)
        return -EBADMSG;
    return 0;
}

/* A share payload of the given format into dst (auth_share_t): 0 or -EBADMSG. */
static int share_parse(const uint8_t *body, size_t plen, int format, void *dst)
{
    auth_share_t *s = dst;
    mpr_t r;
    uint32_t n;
    uint64_t ver;
    mpr_init(&r, body, plen);
    if (mpr_array(&r, &n) || n != (format == 2 ? 5u : 4u) || mpr_uint(&r, &ver) ||
        ver != (format == 2 ? TOKEN_VERSION2 : TOKEN_VERSION) ||
        read_name(&r, s->resource, false) || mpr_uint(&r, &s->expires_ms) ||
        read_nonce(&r, s->nonce) || (format == 2 && (mpr_uint(&r, &s->signer) || !s->signer)) ||
        r.left)
        return -EBADMSG;
    return 0;
}

/* A kind of token, by format (index format - 1). */
struct token_kind {
    const char *prefix[2];
    const char *context[2];
    int (*parse)(const uint8_t *body, size_t plen, int format, void *dst);
    const char *malformed; /* why, when parse refuses the payload */
};

static const struct token_kind session_kind = {
    {AUTH_SESSION_PREFIX, AUTH_SESSION2_PREFIX},
    {SESSION_CONTEXT, SESSION2_CONTEXT},
    session_parse,
    "malformed session payload",
};

static const struct token_kind share_kind = {
    {AUTH_SHARE_PREFIX, AUTH_SHARE2_PREFIX},
    {SHARE_CONTEXT, SHARE2_CONTEXT},
    share_parse,
    "malformed share payload",
};

/* The start of a token's payload: the array header and the version. The caller packs its
 * `fields` fields of the kind next, and token_seal ends it. signer 0: format 1, else 2. */
static void token_begin(msgpack_sbuffer *sb, msgpack_packer *pk, uint64_t signer, uint32_t fields)
{
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
    /* + version, nonce, and in format 2 the signer */
    msgpack_pack_array(pk, fields + (signer ? 3 : 2));
    msgpack_pack_uint32(pk, signer ? TOKEN_VERSION2 : TOKEN_VERSION);
}

/* The end of the payload (a fresh nonce, then the signer in format 2), signed by sk into out as
 * a token of kind; frees sb. sk is the mesh key's for format 1, the signer's for format 2. */
static int token_seal(const struct token_kind *kind, const uint8_t sk[64], uint64_t signer,
                      msgpack_sbuffer *sb, msgpack_packer *pk, char *out, size_t outlen)
{
    uint8_t nonce[AUTH_NONCE_BYTES];
    randombytes_buf(nonce, sizeof(nonce));
    mpw_bin(pk, nonce, sizeof(nonce));
    if (signer)
        msgpack_pack_uint64(pk, signer);
    int rc = sign_encode(sk, kind->prefix[signer ? 1 : 0], kind->context[signer ? 1 : 0], sb, out,
                         outlen);
    msgpack_sbuffer_destroy(sb);
    return rc;
}

/* A session cookie signed by sk: signer 0 makes pms1. (sk is the mesh key's), else pms2.
 * naming signer. The arguments are session_args_ok's. */
static int session_encode(const uint8_t sk[64], uint64_t signer, const char *user, uint64_t epoch,
                          uint64_t now_ms, uint64_t ttl_ms, const char *scope, char *out,
                          size_t outlen)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    token_begin(&sb, &pk, signer, 5);
    mpw_str(&pk, user);
    msgpack_pack_uint64(&pk, epoch);
    msgpack_pack_uint64(&pk, now_ms);
    msgpack_pack_uint64(&pk, now_ms + ttl_ms);
    mpw_str(&pk, scope);
    return token_seal(&session_kind, sk, signer, &sb, &pk, out, outlen);
}

/* A share link signed by sk: signer 0 makes pmsh1., else pmsh2. naming signer. The arguments
 * are share_args_ok's. */
static int share_encode(const uint8_t sk[64], uint64_t signer, const char *resource,
                        uint64_t expires_ms, char *out, size_t outlen)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    token_begin(&sb, &pk, signer, 2);
    mpw_str(&pk, resource);
    msgpack_pack_uint64(&pk, expires_ms);
    return token_seal(&share_kind, sk, signer, &sb, &pk, out, outlen);
}

/* Opens a token of the given kind and format: the prefix, canonical base64url, then its
 * payload and signature. Format 1's signature (by mesh_pk) is checked before the payload is
 * parsed; format 2 names its signer inside the payload, so that is parsed first (strictly,
 * bounded) and nothing in it is used until k's key for *signer (a field of dst) verifies the
 * signature. dst (dst_size bytes) is zeroed first and again on any failure. 0 or -EACCES with
 * *why. */
static int token_open(const struct token_kind *kind, int format, const uint8_t *mesh_pk,
                      const auth_keys_t *k, const char *text, size_t len, uint64_t now_ms,
                      void *dst, size_t dst_size, uint64_t *signer, const char **why)
{
    uint8_t body[BODY_MAX];
    size_t plen;
    memset(dst, 0, dst_size);
    if (decode_body(kind->prefix[format - 1], text, len, body, &plen, why))
        return -EACCES;
    if (format == 1 && check_sig(mesh_pk, kind->context[0], body, plen, why))
        return -EACCES;
    if (kind->parse(body, plen, format, dst)) {
        memset(dst, 0, dst_size);
        *why = kind->malformed;
        return -EACCES;
    }
    if (format == 2 && check_signer_sig(k, *signer, kind->context[1], body, plen, now_ms, why)) {
        memset(dst, 0, dst_size);
        return -EACCES;
    }
    return 0;
}

/* A session cookie of the given format (token_open), unexpired and not issued in the future. */
static int session_read(int format, const uint8_t *mesh_pk, const auth_keys_t *k,
                        const char *cookie, size_t len, uint64_t now_ms, auth_session_t *c,
                        const char **why)
{
    if (token_open(&session_kind, format, mesh_pk, k, cookie, len, now_ms, c, sizeof(*c),
                   &c->signer, why))
        return -EACCES;
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

/* A share link of the given format (token_open), unexpired. */
static int share_read(int format, const uint8_t *mesh_pk, const auth_keys_t *k, const char *token,
                      size_t len, uint64_t now_ms, auth_share_t *s, const char **why)
{
    if (token_open(&share_kind, format, mesh_pk, k, token, len, now_ms, s, sizeof(*s), &s->signer,
                   why))
        return -EACCES;
    if (now_ms >= s->expires_ms) {
        *why = "share link expired";
        return -EACCES;
    }
    return 0;
}

/* The lifetime of the session a share link turns into: ttl_ms, cut to the link's own expiry
 * and to AUTH_SESSION_TTL_MAX. 0 or -EINVAL (the link expired, or ttl_ms is 0). */
static int share_session_ttl(const auth_share_t *share, uint64_t now_ms, uint64_t *ttl_ms)
{
    if (now_ms >= share->expires_ms || *ttl_ms == 0)
        return -EINVAL;
    if (*ttl_ms > share->expires_ms - now_ms)
        *ttl_ms = share->expires_ms - now_ms;
    if (*ttl_ms > AUTH_SESSION_TTL_MAX)
        *ttl_ms = AUTH_SESSION_TTL_MAX;
    return 0;
}

/* ---- sessions signed by the mesh key ------------------------------------------------------- */

int auth_session_make(const meshkey_t *k, const char *user, uint64_t epoch, uint64_t now_ms,
                      uint64_t ttl_ms, const char *scope, char *out, size_t outlen)
{
    if (!session_args_ok(user, scope, now_ms, ttl_ms))
        return -EINVAL;
    return session_encode(k->sk, 0, user, epoch, now_ms, ttl_ms, scope, out, outlen);
}

int auth_session_verify(const uint8_t mesh_pk[32], const char *cookie, size_t len, uint64_t now_ms,
                        auth_session_t *c, const char **why)
{
    return session_read(1, mesh_pk, NULL, cookie, len, now_ms, c, why);
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

/* ---- share links signed by the mesh key ---------------------------------------------------- */

int auth_share_make(const meshkey_t *k, const char *resource, uint64_t expires_ms, char *out,
                    size_t outlen)
{
    if (!share_args_ok(resource, expires_ms))
        return -EINVAL;
    return share_encode(k->sk, 0, resource, expires_ms, out, outlen);
}

int auth_share_verify(const uint8_t mesh_pk[32], const char *token, size_t len, uint64_t now_ms,
                      auth_share_t *s, const char **why)
{
    return share_read(1, mesh_pk, NULL, token, len, now_ms, s, why);
}

int auth_session_from_share(const meshkey_t *k, const auth_share_t *share, uint64_t now_ms,
                            uint64_t ttl_ms, char *out, size_t outlen)
{
    if (share_session_ttl(share, now_ms, &ttl_ms))
        return -EINVAL;
    return auth_session_make(k, "", 0, now_ms, ttl_ms, share->resource, out, outlen);
}

/* ---- either format: what popd uses ---------------------------------------------------------- */

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
                     uint64_t ttl_ms, const char *scope, char *out, size_t outlen, const char **why)
{
    *why = "invalid session";
    if (!k->self_id) {
        if (!k->mesh) {
            *why = "this PoP holds no key that signs sessions";
            return -EPERM;
        }
        return auth_session_make(k->mesh, user, epoch, now_ms, ttl_ms, scope, out, outlen);
    }
    if (!session_args_ok(user, scope, now_ms, ttl_ms))
        return -EINVAL;
    int rc = self_may_issue(k, now_ms, why);
    if (rc)
        return rc;
    return session_encode(k->self_sk, k->self_id, user, epoch, now_ms, ttl_ms, scope, out, outlen);
}

int auth_cookie_signer_check(const auth_keys_t *k, const auth_session_t *c, uint64_t now_ms,
                             const char **why)
{
    if (!c->signer) {
        if (!k->mesh || c->issued_ms >= k->legacy_until_ms) {
            *why = MESH_SESSION_REFUSED;
            return -EACCES;
        }
        return 0;
    }
    uint8_t pk[32];
    if (!k->signer_key ||
        k->signer_key(k->ctx, c->signer, AUTH_CAP_ISSUE_SESSIONS, now_ms, pk, why))
        return -EACCES;
    return 0;
}

int auth_cookie_verify(const auth_keys_t *k, const char *cookie, size_t len, uint64_t now_ms,
                       auth_session_t *c, const char **why)
{
    if (!has_prefix(cookie, len, AUTH_SESSION_PREFIX))
        return session_read(2, NULL, k, cookie, len, now_ms, c, why);
    if (!k->mesh) {
        memset(c, 0, sizeof(*c));
        *why = MESH_SESSION_REFUSED;
        return -EACCES;
    }
    if (session_read(1, k->mesh->pk, NULL, cookie, len, now_ms, c, why))
        return -EACCES;
    return auth_cookie_signer_check(k, c, now_ms, why);
}

int auth_link_make(const auth_keys_t *k, const char *resource, uint64_t now_ms, uint64_t expires_ms,
                   char *out, size_t outlen, const char **why)
{
    *why = "invalid share link";
    if (!k->self_id) {
        if (!k->mesh) {
            *why = "this PoP holds no key that signs share links";
            return -EPERM;
        }
        return auth_share_make(k->mesh, resource, expires_ms, out, outlen);
    }
    if (!share_args_ok(resource, expires_ms))
        return -EINVAL;
    int rc = self_may_issue(k, now_ms, why);
    if (rc)
        return rc;
    return share_encode(k->self_sk, k->self_id, resource, expires_ms, out, outlen);
}

int auth_link_verify(const auth_keys_t *k, const char *token, size_t len, uint64_t now_ms,
                     auth_share_t *s, const char **why)
{
    if (!has_prefix(token, len, AUTH_SHARE_PREFIX))
        return share_read(2, NULL, k, token, len, now_ms, s, why);
    /* A pmsh1. link carries no issue time: it passes only while the upgrade window is open
     * (legacy_until_ms is UINT64_MAX on a mesh with no root yet). */
    if (!k->mesh || now_ms >= k->legacy_until_ms) {
        memset(s, 0, sizeof(*s));
        *why = "share link signed by the mesh key, no longer accepted";
        return -EACCES;
    }
    return share_read(1, k->mesh->pk, NULL, token, len, now_ms, s, why);
}

int auth_cookie_from_share(const auth_keys_t *k, const auth_share_t *share, uint64_t now_ms,
                           uint64_t ttl_ms, char *out, size_t outlen, const char **why)
{
    *why = "invalid share link";
    if (share_session_ttl(share, now_ms, &ttl_ms))
        return -EINVAL;
    return auth_cookie_make(k, "", 0, now_ms, ttl_ms, share->resource, out, outlen, why);
}
