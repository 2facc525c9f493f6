/* oidcproto: the loop-free half of OpenID Connect sign-in (the authorization code flow with
 * PKCE, OpenID Connect Core 1.0 section 3.1, RFC 7636): readers of what the provider and the
 * browser send (the discovery document, the JWKS, the token response, the ID token, the
 * callback's query), the state cookie that carries the flow from one PoP to another, and the
 * admission policy. No I/O, no clock of its own: time is passed in (Unix ms).
 *
 * Everything read here comes from the network: the provider's documents through libcurl, the
 * callback query and the state cookie from any browser. Each reader bounds its input
 * (OIDC_DOC_MAX, OIDC_TOKEN_MAX), refuses on the first inconsistency with a static reason in
 * *why (fit for a log line), and is fuzzed (tests/fuzz/fuzz_oidc.c).
 *
 * The ID token (RFC 7519 JWT, JWS compact form) is accepted only when:
 *   - its header's alg is RS256 or ES256 (never "none", never HS256 with the client secret:
 *     the provider's keys sign, nobody else), and the key it names by kid (or, without a
 *     kid, the only key of that type) verifies the signature (OpenSSL);
 *   - iss equals the configured issuer byte for byte;
 *   - aud is, or contains, the client id; with several audiences azp must be present, and
 *     whenever azp is present it must equal the client id (Core 3.1.3.7 points 3-5);
 *   - exp is later than now - OIDC_SKEW_MS, iat earlier than now + OIDC_SKEW_MS and not older
 *     than OIDC_IAT_MAX_AGE_MS;
 *   - nonce equals the one this flow sent (it came back in the sealed state cookie);
 *   - sub is 1..255 bytes.
 * A kid the JWKS does not hold is -ENOKEY: the caller fetches the JWKS again (keys rotate)
 * and tries once more.
 *
 * The state cookie: the flow's state, nonce, PKCE verifier, redirect URI and return path,
 * sealed (XChaCha20-Poly1305) under a key derived from the mesh's store key, which every PoP
 * holds: the browser may come back from the provider to any PoP. Sealed, not only signed: the
 * verifier must not be readable by whoever sees the cookie jar (RFC 7636's point). */
#ifndef POPMESH_NODE_OIDC_OIDCPROTO_H
#define POPMESH_NODE_OIDC_OIDCPROTO_H

#include "node/nodecfg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OIDC_URL_MAX        1024      /* bytes of an endpoint URL */
#define OIDC_DOC_MAX        (64 << 10) /* bytes of a discovery document, JWKS, token response */
#define OIDC_TOKEN_MAX      (16 << 10) /* bytes of an ID token */
#define OIDC_JWKS_KEYS_MAX  32        /* keys of a JWKS (the rest are ignored) */
#define OIDC_KID_MAX        128       /* bytes of a key id */
#define OIDC_SUB_MAX        255       /* bytes of a subject (Core 2) */
#define OIDC_EMAIL_MAX      254       /* bytes of an email address */
#define OIDC_DISPLAY_MAX    127       /* bytes of a display name */
#define OIDC_GROUPS_MAX     16        /* groups kept from the claim (AUTH_GROUPS_MAX) */
#define OIDC_GROUP_MAX      63        /* bytes of a group kept (NODECFG_NAME_MAX) */
#define OIDC_CLAIM_NAME_MAX 63        /* bytes of the groups claim's name */
#define OIDC_SKEW_MS        (120ull * 1000)      /* ms of clock difference tolerated */
#define OIDC_IAT_MAX_AGE_MS (10ull * 60 * 1000)  /* ms: an older ID token is refused */
#define OIDC_STATE_TTL_MS   (10ull * 60 * 1000)  /* ms a sign-in may take at the provider */
#define OIDC_CODE_MAX       2048      /* bytes of an authorization code */
#define OIDC_RANDOM_LEN     43        /* characters of state, nonce, verifier: 32 bytes b64url */
#define OIDC_RD_MAX         1023      /* bytes of the path to return to */
#define OIDC_COOKIE_MAX     3100      /* characters of the sealed state cookie */
#define OIDC_DOMAIN_MAX     253       /* bytes of an email domain */
#define OIDC_DOMAINS_MAX    16        /* allowed domains of one provider */
#define OIDC_STATE_COOKIE   "popmesh_oidc"

/* ---- discovery (OpenID Connect Discovery 1.0 section 3) ---------------------------------- */

typedef struct oidc_discovery {
    char authorization_endpoint[OIDC_URL_MAX + 1];
    char token_endpoint[OIDC_URL_MAX + 1];
    char jwks_uri[OIDC_URL_MAX + 1];
} oidc_discovery_t;

/* Whether url is an absolute URL we may send a browser or a request to: https://, or http://
 * when allow_http; printable ASCII without spaces, quotes or angle brackets. */
bool oidc_url_ok(const char *url, bool allow_http);

/* Reads the discovery document: its issuer must equal issuer exactly (Discovery 4.3), the
 * three endpoints must be oidc_url_ok. 0 or -EBADMSG with *why. */
int oidc_discovery_parse(const char *json, size_t len, const char *issuer, bool allow_http,
                         oidc_discovery_t *d, const char **why);

/* ---- keys (RFC 7517) ------------------------------------------------------------------- */

typedef struct oidc_jwks oidc_jwks_t;

/* Reads a JWKS: RSA keys (2048..8192 bits) and EC P-256 keys usable for signatures; others
 * are skipped. NULL with *why when the document is malformed or holds no usable key. Caller
 * owns the result (oidc_jwks_free). */
oidc_jwks_t *oidc_jwks_parse(const char *json, size_t len, const char **why);
void oidc_jwks_free(oidc_jwks_t **kp);
size_t oidc_jwks_count(const oidc_jwks_t *k);

/* ---- the token endpoint's answer (Core 3.1.3.3) ---------------------------------------- */

/* Copies the id_token of a successful token response into out (cap bytes, NUL-terminated).
 * An error response ({"error": ...}) gives -EACCES with *why = its error code if it is one of
 * RFC 6749's (static), else a generic reason. 0, -EACCES or -EBADMSG. */
int oidc_token_response_parse(const char *json, size_t len, char *out, size_t cap,
                              const char **why);

/* ---- the ID token ---------------------------------------------------------------------- */

typedef struct oidc_expect {
    const char *issuer;
    const char *client_id;
    const char *nonce;
    const char *groups_claim; /* "" or NULL = none */
    uint64_t now_ms;          /* Unix ms */
} oidc_expect_t;

typedef struct oidc_claims {
    char sub[OIDC_SUB_MAX + 1];
    char email[OIDC_EMAIL_MAX + 1];    /* "" = none */
    bool email_verified;               /* the claim, true; absent or false: false */
    char name[OIDC_DISPLAY_MAX + 1];   /* display name; "" = none */
    char groups[OIDC_GROUPS_MAX][OIDC_GROUP_MAX + 1];
    unsigned ngroups;
    unsigned groups_dropped; /* groups of the claim that are not names (a-z, 0-9, '-'), or past
                              * OIDC_GROUPS_MAX */
    uint64_t exp_ms, iat_ms; /* Unix ms */
} oidc_claims_t;

/* Verifies token (len bytes) as described above. 0; -ENOKEY (its kid is not in keys: fetch
 * them again); -EACCES with *why for anything else. */
int oidc_idtoken_verify(const char *token, size_t len, const oidc_jwks_t *keys,
                        const oidc_expect_t *ex, oidc_claims_t *c, const char **why);

/* ---- the callback (Core 3.1.2.5, 3.1.2.6) ---------------------------------------------- */

typedef struct oidc_callback {
    char code[OIDC_CODE_MAX + 1];     /* "" with error set */
    char state[OIDC_RANDOM_LEN + 1];
    char error[64];                   /* the provider's error code; "" = none */
} oidc_callback_t;

/* Reads the callback's query string (after '?'): code and state, or error and state; each at
 * most once, percent-decoded, printable. 0 or -EBADMSG with *why. */
int oidc_callback_parse(const char *query, size_t len, oidc_callback_t *cb, const char **why);

/* ---- the state cookie ------------------------------------------------------------------ */

typedef struct oidc_state {
    char idp[NODECFG_NAME_MAX + 1];
    char state[OIDC_RANDOM_LEN + 1];
    char nonce[OIDC_RANDOM_LEN + 1];
    char verifier[OIDC_RANDOM_LEN + 1];
    char redirect_uri[OIDC_URL_MAX + 1];
    char rd[OIDC_RD_MAX + 1];
    uint64_t expires_ms; /* Unix ms */
} oidc_state_t;

/* The key of state cookies, from the mesh's store key (every PoP derives the same). */
void oidc_state_key(const uint8_t store_key[32], uint8_t out[32]);
/* Fills state, nonce and verifier with fresh random values. */
void oidc_state_fresh(oidc_state_t *s);
/* Seals s into out (cap >= OIDC_COOKIE_MAX + 1): 0 or -E2BIG. */
int oidc_state_seal(const uint8_t key[32], const oidc_state_t *s, char *out, size_t cap);
/* Opens a cookie value: 0, or -EACCES with *why (malformed, tampered, expired at now_ms). */
int oidc_state_open(const uint8_t key[32], const char *cookie, size_t len, uint64_t now_ms,
                    oidc_state_t *s, const char **why);
/* BASE64URL(SHA256(verifier)) (RFC 7636 4.2, S256) into out (44 bytes). */
void oidc_pkce_challenge(const char *verifier, char out[44]);

/* ---- who may enter ----------------------------------------------------------------------- */

typedef struct oidc_policy {
    const char (*domains)[OIDC_DOMAIN_MAX + 1]; /* allowed email domains (lower case) */
    unsigned ndomains;                          /* 0 = no domain list */
    bool auto_create;
} oidc_policy_t;

/* Whether a user with claims c may sign in, given whether a live user record already exists
 * for them (known). With allowed domains, a verified email in one of them is required (known
 * or not); without, known users may, and new ones when auto_create. 0 or -EACCES with *why. */
int oidc_admit(const oidc_policy_t *p, const oidc_claims_t *c, bool known, const char **why);

/* The popmesh user name of a provider's user: "IDP:SUBJECT" (auth_user_name_ok). 0, or
 * -ERANGE when the subject is too long or holds a byte outside [A-Za-z0-9._@|+=-]. */
int oidc_user_name(const char *idp, const char *sub, char *out, size_t cap);

#endif
