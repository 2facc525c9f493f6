/* auth: edge authentication for the HTTP ingress (issue 5), decided offline at every PoP.
 *
 * Records (replicated; decoded as untrusted bytes, unknown fields skipped):
 *
 *   user/<name>                {name, groups: [str], pwhash: str, created_ms, session_epoch,
 *                               removed}
 *   apikey/<id:16 hex>         {user, hash: bin 32, expires_ms, created_ms, revoked}
 *   rule/<resource>/<id:16 hex> {resource, action: "allow"|"deny", cidr: str | path: str,
 *                               priority: int, created_ms}
 *
 * Tokens (docs/security.md, "Edge authentication", has them byte by byte):
 *
 *   session cookie  pms1.<base64url(payload || sig)>
 *                   payload = msgpack [1, user, epoch, issued_ms, expires_ms, scope, nonce:8]
 *   share link      pmsh1.<base64url(payload || sig)>
 *                   payload = msgpack [1, resource, expires_ms, nonce:8]
 *   API key         pmk1.<id:16 hex>.<base64url(secret:32)>
 *
 * sig is Ed25519 by the mesh key over a context string and the payload, so a cookie made at
 * one PoP verifies at every PoP, and a signature made for one kind of token (or for a join
 * token, pmt1.) is never valid for another. Nothing here does I/O other than store reads, and
 * time is always passed in (Unix ms for anything compared across PoPs).
 *
 * BEHAVIOR
 *
 * A session is valid while it is unexpired, its signature verifies, and, for a user session,
 * user/<user> exists, is not removed and has session_epoch == the cookie's epoch. Revoking
 * (user.rm, user.passwd, session.revoke) bumps session_epoch; the new record replicates, so
 * every PoP refuses the old cookies once it has it. A session with user "" is a share session:
 * it exists only with a scope and grants that one resource until it expires.
 *
 * Errors: 0, or -EACCES with a reason in *why (a static string, fit for a log line, not for
 * showing to the client) when the credential is refused, -EINVAL for bad arguments, or
 * another -errno from the store. Passwords, cookies, tokens and secrets are never logged. */
#ifndef POPMESH_NODE_AUTH_AUTH_H
#define POPMESH_NODE_AUTH_AUTH_H

#include "node/records/apikey.h"
#include "node/records/cidr.h"
#include "node/records/identity.h"
#include "node/records/rule.h"
#include "node/records/user.h"
#include "node/nodecfg.h"
#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTH_PASSWORD_MIN 8    /* bytes */
#define AUTH_PASSWORD_MAX 1024 /* bytes */

#define AUTH_SESSION_PREFIX  "pms1."
#define AUTH_SHARE_PREFIX    "pmsh1."
#define AUTH_APIKEY_TPREFIX  "pmk1."
#define AUTH_TOKEN_MAX       512 /* characters of an encoded cookie or share token */
#define AUTH_APIKEY_TEXT     65  /* characters of pmk1.<16 hex>.<43 base64url> */
#define AUTH_NONCE_BYTES     8
#define AUTH_SESSION_TTL_MAX (30ull * 24 * 3600 * 1000) /* ms */
#define AUTH_SHARE_TTL_MAX   (30ull * 24 * 3600 * 1000) /* ms */
#define AUTH_CLOCK_SKEW_MS   (5ull * 60 * 1000) /* ms a token may be issued "in the future" */

/* Login rate limiting defaults (auth_ratelimit_new). */
#define AUTH_RL_BURST     5     /* attempts */
#define AUTH_RL_REFILL_MS 10000 /* ms per attempt regained */
#define AUTH_RL_ENTRIES   4096  /* keys remembered; least recently used evicted */

/* ---- users ---------------------------------------------------------------------------- */

/* argon2id (crypto_pwhash_str, OPSLIMIT/MEMLIMIT_INTERACTIVE: 64 MiB and about 75 ms of one
 * core, see docs/security.md): blocks; never call it on the event loop for client requests.
 * out holds AUTH_PWHASH_MAX + 1. 0, -EINVAL (length outside MIN..MAX) or -ENOMEM. */
int auth_password_hash(const char *pw, size_t pwlen, char *out, size_t outlen);
/* true if pw matches hash (same cost as hashing). A malformed hash is false. */
bool auth_password_verify(const char *hash, const char *pw, size_t pwlen);

/* ---- sessions ------------------------------------------------------------------------- */

typedef struct auth_session {
    char user[NODECFG_NAME_MAX + 1];  /* "" = a share session (scope is then set) */
    uint64_t epoch;                   /* the user's session_epoch when it was made */
    uint64_t issued_ms;               /* Unix ms */
    uint64_t expires_ms;              /* Unix ms; valid while now < expires_ms */
    char scope[NODECFG_NAME_MAX + 1]; /* "" = every resource, else the one resource */
    uint8_t nonce[AUTH_NONCE_BYTES];  /* random: two sessions never share a cookie */
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
    uint64_t expires_ms; /* Unix ms */
    uint8_t nonce[AUTH_NONCE_BYTES];
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

/* ---- API keys ------------------------------------------------------------------------- */

/* A new key for user: fills rec (id, hash, user, created_ms = now, expires_ms = now + ttl or 0
 * for ttl 0) and text (AUTH_APIKEY_TEXT + 1 bytes: the bearer token, which holds the secret:
 * the caller wipes it). The caller stores rec. 0 or -EINVAL. */
int auth_apikey_new(const char *user, uint64_t now_ms, uint64_t ttl_ms, auth_apikey_t *rec,
                    char *text, size_t textlen);
/* Splits a bearer token into id and secret: 0 or -EACCES with *why. */
int auth_apikey_token_parse(const char *token, size_t len, uint64_t *id, uint8_t secret[32],
                            const char **why);
/* Checks a bearer token: the record exists, the hash matches (constant time), it is not
 * revoked or expired, and its user exists and is not removed. user_out may be NULL.
 * 0, -EACCES with *why, or -errno (store). */
int auth_apikey_check(store_t *store, const char *token, size_t len, uint64_t now_ms,
                      auth_user_t *user_out, const char **why);

/* ---- access rules --------------------------------------------------------------------- */

enum auth_decision {
    AUTH_DECISION_NONE = 0, /* no rule matched: authenticate */
    AUTH_DECISION_ALLOW,    /* an allow rule matched: no authentication */
    AUTH_DECISION_DENY,     /* a deny rule matched: 403 */
};

/* The rules of resource ("" or NULL: of every resource), sorted by resource, priority, id.
 * Unreadable records are skipped with a log line. Caller owns *out. 0 or -errno. */
int auth_rules_load(store_t *store, const char *resource, auth_rule_t **out, size_t *n);
/* The first rule of rules (sorted as auth_rules_load sorts) matching client and path decides;
 * *rule_id (may be NULL) gets its id. path is the request path as routed: decoded and
 * normalized, without the query. A NULL or unknown client matches no CIDR rule. */
enum auth_decision auth_rules_match(const auth_rule_t *rules, size_t n, const auth_addr_t *client,
                                    const char *path, uint64_t *rule_id);
/* auth_rules_load + auth_rules_match for one request. 0 or -errno (store). */
int auth_rules_eval(store_t *store, const char *resource, const auth_addr_t *client,
                    const char *path, enum auth_decision *decision, uint64_t *rule_id);

/* ---- login rate limiting -------------------------------------------------------------- */

/* Token buckets keyed by strings ("ip:203.0.113.7", "user:alice"), in memory, per PoP. */
typedef struct auth_ratelimit auth_ratelimit_t;

/* burst attempts, one regained every refill_ms, at most entries keys (least recently used
 * evicted). NULL with errno = EINVAL for a zero argument. */
auth_ratelimit_t *auth_ratelimit_new(unsigned burst, uint64_t refill_ms, size_t entries);
void auth_ratelimit_destroy(auth_ratelimit_t **rlp);
/* Takes one attempt from key's bucket: true if there was one. now_ms: any clock that does not
 * go back (monotonic); a clock that goes back regains nothing. */
bool auth_ratelimit_allow(auth_ratelimit_t *rl, const char *key, uint64_t now_ms);
/* Keys remembered now. */
size_t auth_ratelimit_size(const auth_ratelimit_t *rl);

#endif
