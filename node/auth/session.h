/* session: session cookies and share links, the two tokens signed by the mesh key.
 *
 *   session cookie  pms1.<base64url(payload || sig)>
 *                   payload = msgpack [1, user, epoch, issued_ms, expires_ms, scope, nonce:8]
 *   share link      pmsh1.<base64url(payload || sig)>
 *                   payload = msgpack [1, resource, expires_ms, nonce:8]
 *
 * sig is Ed25519 by the mesh key over a context string and the payload, so a cookie made at
 * one PoP verifies at every PoP, and a signature made for one kind of token (or for a join
 * token, pmt1.) is never valid for another. docs/security.md, "Edge authentication", has both
 * byte by byte. Time is always passed in, in Unix ms (it is compared across PoPs).
 *
 * BEHAVIOR
 *
 * A session is valid while it is unexpired, its signature verifies, and, for a user session,
 * user/<user> exists, is not removed and has session_epoch == the cookie's epoch. Revoking
 * (user.rm, user.passwd, session.revoke) bumps session_epoch; the new record replicates, so
 * every PoP refuses the old cookies once it has it. A session with user "" is a share session:
 * it exists only with a scope and grants that one resource until it expires. */
#ifndef POPMESH_NODE_AUTH_SESSION_H
#define POPMESH_NODE_AUTH_SESSION_H

#include "node/nodecfg.h"
#include "node/records/identity.h"
#include "node/records/user.h"
#include "storage/store.h"

#include <stddef.h>
#include <stdint.h>

#define AUTH_SESSION_PREFIX  "pms1."
#define AUTH_SHARE_PREFIX    "pmsh1."
#define AUTH_TOKEN_MAX       512 /* characters of an encoded cookie or share token */
#define AUTH_NONCE_BYTES     8
#define AUTH_SESSION_TTL_MAX (30ull * 24 * 3600 * 1000) /* ms */
#define AUTH_SHARE_TTL_MAX   (30ull * 24 * 3600 * 1000) /* ms */
#define AUTH_CLOCK_SKEW_MS   (5ull * 60 * 1000) /* ms a token may be issued "in the future" */

/* ---- sessions ------------------------------------------------------------------------- */

typedef struct auth_session {
    char user[NODECFG_NAME_MAX + 1];  /* "" = a share session (scope is then set) */
    uint64_t epoch;                   /* the user's session_epoch when it was made */
    uint64_t issued_ms;               /* Unix ms */
    uint64_t expires_ms;              /* Unix ms; valid while now < expires_ms */
    char scope[NODECFG_NAME_MAX + 1]; /* "" = every resource, else the one resource */
    uint8_t nonce[AUTH_NONCE_BYTES];  /* random: two sessions never share a cookie */
    uint64_t signer;                  /* pms2.: the signing PoP's node id; 0 = mesh key */
} auth_session_t;

/* Makes a cookie value for user (or "" with a scope, see auth_session_from_share), valid
 * ttl ms (1..AUTH_SESSION_TTL_MAX) from now. out holds AUTH_TOKEN_MAX + 1. 0 or -EINVAL. */
int auth_session_make(const meshkey_t *k, const char *user, uint64_t epoch, uint64_t now_ms,
                      uint64_t ttl_ms, const char *scope, char *out, size_t outlen);
/* Decodes and checks a cookie value (signature, shape, expiry): 0, or -EACCES with *why.
 * Does not look at the store: see auth_session_check. */
int auth_session_verify(const uint8_t mesh_pk[32], const char *cookie, size_t len, uint64_t now_ms,
                        auth_session_t *claims, const char **why);
/* Everything a request needs: verify, then the scope against resource, then (user sessions)
 * the user record: present, not removed, same epoch. user_out (may be NULL) gets the user
 * record, or is zeroed for a share session. 0, -EACCES with *why, or -errno (store). */
int auth_session_check(store_t *store, const uint8_t mesh_pk[32], const char *cookie, size_t len,
                       uint64_t now_ms, const char *resource, auth_user_t *user_out,
                       const char **why);

/* The second half of auth_session_check, for claims whose signature was verified earlier (a
 * cache of verified cookies: an Ed25519 verification costs ~45 us, this ~1 us): expiry, the
 * scope against resource, and for user sessions the user record (exists, not removed, same
 * session epoch). 0, -EACCES with *why, or -errno from the store. */
int auth_session_claims_check(store_t *store, const auth_session_t *claims, uint64_t now_ms,
                              const char *resource, auth_user_t *user_out, const char **why);

/* ---- share links ---------------------------------------------------------------------- */

typedef struct auth_share {
    char resource[NODECFG_NAME_MAX + 1];
    uint64_t expires_ms;             /* Unix ms */
    uint8_t nonce[AUTH_NONCE_BYTES]; /* random: two links never share a token */
    uint64_t signer;                 /* pmsh2.: the signing PoP's node id; 0 = mesh key */
} auth_share_t;

/* A share token for resource, valid until expires_ms. out holds AUTH_TOKEN_MAX + 1. */
int auth_share_make(const meshkey_t *k, const char *resource, uint64_t expires_ms, char *out,
                    size_t outlen);
/* 0, or -EACCES with *why (malformed, tampered, expired). */
int auth_share_verify(const uint8_t mesh_pk[32], const char *token, size_t len, uint64_t now_ms,
                      auth_share_t *share, const char **why);
/* The session a verified share link turns into: user "", scope = the resource, expiring at
 * the earlier of now + ttl_ms and the link's own expiry. 0 or -EINVAL. */
int auth_session_from_share(const meshkey_t *k, const auth_share_t *share, uint64_t now_ms,
                            uint64_t ttl_ms, char *out, size_t outlen);

/* ---- signed by the PoP that made them ------------------------------------------------- */

/* The functions above are the first format (pms1., pmsh1.), signed by the mesh key that every
 * PoP holds. A mesh with a root (node/records/nodecert.h) signs with the making PoP's own key
 * instead, and names it:
 *
 *   session cookie  pms2.<base64url(payload || sig)>
 *                   payload = msgpack [2, user, epoch, issued_ms, expires_ms, scope, nonce:8,
 *                                      signer: uint (node id)]
 *   share link      pmsh2.<base64url(payload || sig)>
 *                   payload = msgpack [2, resource, expires_ms, nonce:8, signer: uint]
 *
 * sig is Ed25519 by the signer's node key over "popmesh session v2" (or "popmesh share v2"),
 * 0x00, payload. The verifier asks signer_key for the signer's key, which it gives only while
 * the signer's certificate chains to an accepted root, holds issue-sessions, and the node is
 * not removed: so removing a PoP refuses everything it signed, at each PoP as soon as the
 * removal reaches it. The payload is parsed (strictly, bounded) before the signature is
 * checked, since the signer's id is in it; nothing in it is used before the check passes.
 *
 * auth_keys_t is owned by popd and updated in place when this PoP pins a root. */
#define AUTH_SESSION2_PREFIX "pms2."
#define AUTH_SHARE2_PREFIX   "pmsh2."

typedef struct auth_keys {
    /* The signer's certified key: 0, or -EACCES with why. need: the capability bits. */
    int (*signer_key)(void *ctx, uint64_t signer, uint32_t need, uint64_t now_ms, uint8_t pk[32],
                      const char **why);
    void *ctx;
    uint64_t self_id;          /* this PoP's node id: signs pms2./pmsh2.; 0 = no root yet */
    const uint8_t *self_sk;    /* this PoP's Ed25519 secret key (node.key), borrowed */
    const meshkey_t *mesh;     /* the mesh key: pms1./pmsh1. (NULL: refused and never made) */
    uint64_t legacy_until_ms;  /* pms1. issued before it, pmsh1. until it; UINT64_MAX: no
                                * root pinned (a mesh before roots): the only format */
} auth_keys_t;

/* The capability bit a signer needs (nodecert.h's CAP_ISSUE_SESSIONS). */
#define AUTH_CAP_ISSUE_SESSIONS 2u

/* A cookie in the format the mesh uses now: pms2. when k->self_id is set (-EPERM when this
 * PoP's own certificate lacks issue-sessions, with *why), else pms1. */
int auth_cookie_make(const auth_keys_t *k, const char *user, uint64_t epoch, uint64_t now_ms,
                     uint64_t ttl_ms, const char *scope, char *out, size_t outlen,
                     const char **why);
/* Either format; claims->signer says which (0 = the mesh key's). 0 or -EACCES with *why. */
int auth_cookie_verify(const auth_keys_t *k, const char *cookie, size_t len, uint64_t now_ms,
                       auth_session_t *claims, const char **why);
/* Is the signer of verified claims still trusted (a cache of verified cookies re-asks this
 * with the user record)? 0 or -EACCES with *why. */
int auth_cookie_signer_check(const auth_keys_t *k, const auth_session_t *claims, uint64_t now_ms,
                             const char **why);
int auth_link_make(const auth_keys_t *k, const char *resource, uint64_t now_ms,
                   uint64_t expires_ms, char *out, size_t outlen, const char **why);
int auth_link_verify(const auth_keys_t *k, const char *token, size_t len, uint64_t now_ms,
                     auth_share_t *share, const char **why);
int auth_cookie_from_share(const auth_keys_t *k, const auth_share_t *share, uint64_t now_ms,
                           uint64_t ttl_ms, char *out, size_t outlen, const char **why);

#endif
