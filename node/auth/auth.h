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

#include "node/records/identity.h"
#include "node/nodecfg.h"
#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTH_USER_PREFIX    "user/"
#define AUTH_APIKEY_PREFIX  "apikey/"
#define AUTH_RULE_PREFIX    "rule/"
#define AUTH_KEY_MAX        96 /* bytes of any of the keys above, with the NUL */
#define AUTH_GROUPS_MAX     16
#define AUTH_PWHASH_MAX     127     /* bytes of a crypto_pwhash_str string (STRBYTES - 1) */
#define AUTH_PASSWORD_MIN   8       /* bytes */
#define AUTH_PASSWORD_MAX   1024    /* bytes */
#define AUTH_CIDR_MAX       49      /* bytes of "ffff:...:ffff/128" and some slack */
#define AUTH_GLOB_MAX       200     /* bytes of a path glob */
#define AUTH_PRIORITY_LIMIT 1000000 /* |priority| <= this */

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

typedef struct auth_user {
    char name[NODECFG_NAME_MAX + 1]; /* a valid name (nodecfg_check_name) */
    char groups[AUTH_GROUPS_MAX][NODECFG_NAME_MAX + 1];
    unsigned ngroups;                 /* 0..AUTH_GROUPS_MAX, distinct valid names */
    char pwhash[AUTH_PWHASH_MAX + 1]; /* "$argon2id$..."; "" once removed */
    uint64_t created_ms;              /* Unix ms */
    uint64_t session_epoch;           /* sessions carry it; bumped to revoke them all */
    bool removed;                     /* the name may be added again, at a higher epoch */
} auth_user_t;

/* "user/<name>"; 0 or -EINVAL (invalid name). out holds AUTH_KEY_MAX. */
int auth_user_key(const char *name, char *out, size_t len);
void auth_user_pack(msgpack_packer *pk, const auth_user_t *u);
/* Decodes user/<name>: 0 or -EBADMSG with *why. The record's name must equal name. */
int auth_user_parse(const uint8_t *buf, size_t len, const char *name, auth_user_t *u,
                    const char **why);
/* Reads user/<name>: 0, -ENOENT (absent, deleted, invalid name), -EBADMSG (logged), -errno. */
int auth_user_get(store_t *store, const char *name, auth_user_t *u);
/* Every readable user record (removed ones included), in name order. Caller owns *out. */
int auth_user_list(store_t *store, auth_user_t **out, size_t *n);

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

typedef struct auth_apikey {
    uint64_t id;
    char user[NODECFG_NAME_MAX + 1];
    uint8_t hash[32];    /* BLAKE2b-256("popmesh apikey v1\0" || id (8, BE) || secret) */
    uint64_t expires_ms; /* Unix ms; 0 = never */
    uint64_t created_ms; /* Unix ms */
    bool revoked;
} auth_apikey_t;

void auth_apikey_key(uint64_t id, char *out, size_t len);
void auth_apikey_pack(msgpack_packer *pk, const auth_apikey_t *a);
int auth_apikey_parse(const uint8_t *buf, size_t len, uint64_t id, auth_apikey_t *a,
                      const char **why);
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

enum auth_action { AUTH_ALLOW = 1, AUTH_DENY = 2 };
enum auth_decision {
    AUTH_DECISION_NONE = 0, /* no rule matched: authenticate */
    AUTH_DECISION_ALLOW,    /* an allow rule matched: no authentication */
    AUTH_DECISION_DENY,     /* a deny rule matched: 403 */
};

/* An address with its family: AF_INET (4 bytes used) or AF_INET6 (16); 0 = unknown. */
typedef struct auth_addr {
    int family;
    uint8_t a[16];
} auth_addr_t;

typedef struct auth_cidr {
    auth_addr_t net;
    unsigned prefix; /* bits: 0..32 or 0..128 */
} auth_cidr_t;

typedef struct auth_rule {
    char resource[NODECFG_NAME_MAX + 1];
    uint64_t id;
    enum auth_action action;
    char cidr[AUTH_CIDR_MAX + 1]; /* "" for a path rule */
    char path[AUTH_GLOB_MAX + 1]; /* "" for a CIDR rule; fnmatch glob, '*' crosses '/' */
    int64_t priority;             /* lower first; ties by id */
    uint64_t created_ms;          /* Unix ms */
    auth_cidr_t net;              /* parsed cidr */
} auth_rule_t;

/* IPv4-mapped IPv6 addresses become IPv4, so one IPv4 rule covers both. 0 or -EINVAL. */
int auth_addr_parse(const char *text, auth_addr_t *a);
int auth_addr_from_sockaddr(const struct sockaddr *sa, auth_addr_t *a);
/* "A.B.C.D/N", "X:Y::Z/N", or a bare address (/32, /128); host bits must be zero.
 * 0 or -EINVAL with *why. */
int auth_cidr_parse(const char *text, auth_cidr_t *c, const char **why);
bool auth_cidr_contains(const auth_cidr_t *c, const auth_addr_t *a);
/* A glob for request paths: starts with '/' or '*', printable ASCII without spaces,
 * at most AUTH_GLOB_MAX bytes. 0 or -EINVAL with *why. */
int auth_glob_check(const char *glob, const char **why);

/* Checks every field (resource name, exactly one of cidr/path and its syntax, priority).
 * 0 or -EINVAL with *why; fills r->net. */
int auth_rule_check(auth_rule_t *r, const char **why);
/* "rule/<resource>/<16 hex>"; 0 or -EINVAL. */
int auth_rule_key(const char *resource, uint64_t id, char *out, size_t len);
void auth_rule_pack(msgpack_packer *pk, const auth_rule_t *r);
int auth_rule_parse(const uint8_t *buf, size_t len, const char *resource, uint64_t id,
                    auth_rule_t *r, const char **why);
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
