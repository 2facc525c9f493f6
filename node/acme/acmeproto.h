/* acmeproto: the pieces of the ACME protocol (RFC 8555) that need no network and no loop:
 * keys, JSON Web Signatures (RFC 7515, flattened JSON serialisation), the key authorization
 * of a challenge, the CSR of an order, and the readers of the server's JSON.
 *
 * JWS. Every POST to an ACME server is a JWS over the account key, ES256 (P-256, SHA-256; the
 * signature is r||s, 64 bytes, not DER: RFC 7518 section 3.4). The protected header carries
 * alg, nonce, url, and either the public key ("jwk", only for newAccount) or the account URL
 * ("kid", everything after). A POST-as-GET has the empty payload "" (RFC 8555 section 6.3).
 * JSON is written by jansson (compact, keys sorted), base64url by libsodium (no padding).
 *
 * The server's JSON is untrusted: the readers take at most ACME_JSON_MAX bytes, refuse
 * duplicate keys, bound every string they keep, require https:// for every URL, and check that
 * tokens are base64url (they become store keys and URL paths). Fuzzed (tests/fuzz/fuzz_acme.c).
 *
 * Ownership: a function returning char * or EVP_PKEY * gives the caller the result (free() /
 * EVP_PKEY_free()). */
#ifndef POPMESH_NODE_ACME_ACMEPROTO_H
#define POPMESH_NODE_ACME_ACMEPROTO_H

#include "node/acme/acmerec.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACME_JSON_MAX       (256 << 10) /* bytes of one server response we read */
#define ACME_AUTHZ_MAX      100         /* authorizations of one order */
#define ACME_CHALLENGES_MAX 16          /* challenges of one authorization */
#define ACME_STATUS_MAX     15
#define ACME_DETAIL_MAX     300 /* bytes of a problem's detail we keep */
#define ACME_THUMB_LEN      43  /* base64url of 32 bytes */

/* base64url without padding of n bytes; caller owns the result. */
char *acme_b64url(const void *buf, size_t n);

/* A fresh P-256 key (accounts and certificates alike); NULL on failure. */
EVP_PKEY *acme_key_new(void);
/* PKCS#8 PEM of key (caller wipes and frees), or NULL. */
char *acme_key_pem(EVP_PKEY *key, size_t *len);
/* The key in pem (len bytes); NULL unless it is a P-256 private key. */
EVP_PKEY *acme_key_from_pem(const char *pem, size_t len);

/* The JWK of key's public half, {"crv","kty","x","y"}, compact with sorted keys, which is
 * also the RFC 7638 thumbprint input. Caller owns the result; NULL on failure. */
char *acme_jwk_json(EVP_PKEY *key);
/* base64url(SHA-256(JWK)) into out (ACME_THUMB_LEN + 1 bytes). 0 or -EINVAL. */
int acme_thumbprint(EVP_PKEY *key, char *out);
/* token "." thumbprint into out. 0 or -EINVAL (bad token, too small). */
int acme_key_authorization(const char *token, EVP_PKEY *key, char *out, size_t len);
/* DNS-01's TXT value, base64url(SHA-256(key authorization)), into out (44 bytes). */
void acme_dns01_value(const char *key_authorization, char *out);

/* The flattened JWS of payload (NULL = POST-as-GET, "") for url with nonce, signed by key,
 * with "kid" when kid is non-NULL, else "jwk". Caller owns the result; NULL on failure. */
char *acme_jws(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
               const char *payload);
/* The externalAccountBinding object of newAccount (RFC 8555 section 7.3.4): a JWS, HS256
 * with the CA's MAC key, over the account's JWK, for newAccount's url. NULL on failure. */
char *acme_eab_jws(EVP_PKEY *account, const char *eab_kid, const uint8_t *mac, size_t maclen,
                   const char *url);
/* The newAccount payload: {termsOfServiceAgreed, contact: ["mailto:EMAIL"]} and eab (a JSON
 * object's text, or NULL). NULL on failure (eab not JSON). */
char *acme_new_account_payload(const char *email, const char *eab);
/* {"identifiers":[{"type":"dns","value":NAME}, ...]} */
char *acme_new_order_payload(char (*names)[ACME_NAME_MAX + 1], size_t n);
/* {"csr": base64url(DER)} of a CSR with names in subjectAltName (the first also as CN),
 * signed by key. NULL on failure. */
char *acme_finalize_payload(EVP_PKEY *key, char (*names)[ACME_NAME_MAX + 1], size_t n);

/* ---- the server's JSON ---------------------------------------------------------------- */

typedef struct acme_directory {
    char new_nonce[ACME_URL_MAX + 1];
    char new_account[ACME_URL_MAX + 1];
    char new_order[ACME_URL_MAX + 1];
    char renewal_info[ACME_URL_MAX + 1]; /* "" = no ARI */
    bool eab_required;                   /* meta.externalAccountRequired */
} acme_directory_t;

typedef struct acme_order {
    char status[ACME_STATUS_MAX + 1]; /* pending, ready, processing, valid, invalid */
    char finalize[ACME_URL_MAX + 1];
    char certificate[ACME_URL_MAX + 1]; /* "" until valid */
    char (*authz)[ACME_URL_MAX + 1];    /* malloc'd, nauthz entries */
    size_t nauthz;
    char error[ACME_DETAIL_MAX + 1]; /* the order's problem, "" if none */
} acme_order_t;

typedef struct acme_challenge {
    char type[16]; /* "http-01", "dns-01", ... (others are skipped) */
    char url[ACME_URL_MAX + 1];
    char token[ACME_TOKEN_MAX + 1];
    char status[ACME_STATUS_MAX + 1];
    char error[ACME_DETAIL_MAX + 1];
} acme_challenge_t;

typedef struct acme_authz {
    char identifier[ACME_NAME_MAX + 1]; /* without "*." (RFC 8555 section 7.1.4) */
    bool wildcard;
    char status[ACME_STATUS_MAX + 1]; /* pending, valid, invalid, deactivated, expired, revoked */
    acme_challenge_t challenges[ACME_CHALLENGES_MAX];
    size_t nchallenges;
} acme_authz_t;

/* 0 or -EBADMSG with a reason in err. */
int acme_directory_parse(const char *json, size_t len, acme_directory_t *d, char *err,
                         size_t errlen);
/* order->authz is malloc'd even on failure: free with acme_order_free. */
int acme_order_parse(const char *json, size_t len, acme_order_t *o, char *err, size_t errlen);
void acme_order_free(acme_order_t *o);
int acme_authz_parse(const char *json, size_t len, acme_authz_t *a, char *err, size_t errlen);
/* An RFC 7807 problem document as one line, "detail (type)", into out; the body's first
 * bytes (printable only) if it is not one. */
void acme_problem_str(const char *json, size_t len, char *out, size_t outlen);
/* ACME Renewal Information (ARI, RFC 9773). The certificate's identifier in renewalInfo
 * URLs: base64url(authorityKeyIdentifier's keyIdentifier) "." base64url(the serial number's
 * DER content octets), from the leaf (the first certificate of chain_pem). 0, or -EINVAL (not
 * a certificate, no AKI keyIdentifier, out too small). */
int acme_ari_cert_id(const char *chain_pem, size_t len, char *out, size_t outlen);
/* A renewalInfo answer: suggestedWindow {start, end} (RFC 3339) as unix ms, start <= end.
 * 0, or -EBADMSG with a reason in err. */
int acme_ari_parse(const char *json, size_t len, uint64_t *start_ms, uint64_t *end_ms, char *err,
                   size_t errlen);
/* An RFC 3339 date-time ("2026-12-07T06:00:00Z", fractions and +hh:mm offsets too) as unix
 * ms, years 1970..9999. 0 or -EINVAL. */
int acme_time_parse(const char *s, uint64_t *ms);

/* The challenge of type in a, or NULL. */
const acme_challenge_t *acme_authz_challenge(const acme_authz_t *a, const char *type);

#endif
