/* ocsprec: OCSP responses for the mesh's certificates, as replicated records, and the checks a
 * response must pass before any PoP staples it.
 *
 *   ocsp/<cert id>  {der: bin (the OCSPResponse as the responder sent it), status: "good" |
 *                    "revoked" | "unknown", this_update_ms, next_update_ms, fetched_by: str
 *                    (node name), fetched_ms}
 *
 * One PoP fetches (ocspfetch.h) and writes the record; every PoP reads it. A record from
 * another node is untrusted input: the parser bounds every field, and the DER is checked again
 * by every PoP against the certificate it serves (ocsp_check) before it reaches tlsctx, so a
 * response for another certificate, an unsigned or badly signed one, or a stale one is never
 * stapled.
 *
 * Loop-free; fuzzed (tests/fuzz/fuzz_ocsprec.c). */
#ifndef POPMESH_NODE_TLS_OCSPREC_H
#define POPMESH_NODE_TLS_OCSPREC_H

#include "node/tls/certstore.h"

#include <msgpack.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OCSP_PREFIX      "ocsp/"
#define OCSP_DER_MAX     (64u << 10) /* bytes of one response (tlsctx takes up to this) */
#define OCSP_URL_MAX     1024        /* bytes of a responder URL */
#define OCSP_SKEW_MS     (5 * 60 * 1000ull) /* clock skew allowed on thisUpdate / nextUpdate */

enum ocsp_status { OCSP_ST_GOOD = 0, OCSP_ST_REVOKED = 1, OCSP_ST_UNKNOWN = 2 };

typedef struct ocsp_rec {
    uint8_t *der; /* malloc'd, der_len bytes */
    size_t der_len;
    enum ocsp_status status;
    uint64_t this_update_ms, next_update_ms; /* Unix ms, from the response */
    char fetched_by[64];                     /* node name */
    uint64_t fetched_ms;                     /* Unix ms */
} ocsp_rec_t;

void ocsp_rec_free(ocsp_rec_t *r);
/* "ocsp/<id>": 0 or -EINVAL. */
int ocsp_key(const char *id, char *out, size_t len);
/* The cert id out of an "ocsp/<id>" key (klen bytes): 0 or -EINVAL. */
int ocsp_key_id(const char *key, size_t klen, char *id, size_t len);
const char *ocsp_status_name(enum ocsp_status s);
void ocsp_pack(msgpack_packer *pk, const ocsp_rec_t *r);
/* 0 or -EBADMSG with *why (static). Checks sizes and the times' order, not the DER. */
int ocsp_parse(const uint8_t *buf, size_t len, ocsp_rec_t *r, const char **why);

/* ---- the certificate side (OpenSSL) ---- */

/* The leaf and its issuer out of a PEM chain (leaf first, issuer next). *leaf and *issuer:
 * caller frees (X509_free). 0; -ENOENT when the chain holds no issuer (nothing to ask a
 * responder about) or -EINVAL when it does not parse or the second certificate did not issue
 * (sign) the first. */
int ocsp_chain(const char *chain_pem, X509 **leaf, X509 **issuer);
/* The leaf's first OCSP responder URL (Authority Information Access), http:// or https://,
 * into url. 0, or -ENOENT when it names none (no fetch), -EINVAL for another scheme or a
 * URL longer than OCSP_URL_MAX. */
int ocsp_responder(X509 *leaf, char *url, size_t len);
/* A DER OCSPRequest about leaf (SHA-1 CertID, as RFC 6960 responders expect; no nonce: a
 * stapled response is shared by every client). *der: caller frees (OPENSSL_free). 0 or
 * -ENOMEM / -EINVAL. */
int ocsp_request(X509 *leaf, X509 *issuer, uint8_t **der, size_t *len);

typedef struct ocsp_info {
    enum ocsp_status status;
    uint64_t this_update_ms, next_update_ms;
} ocsp_info_t;

/* Whether der (len bytes) is a response fit to store and staple for leaf: the whole buffer is
 * one OCSPResponse, its status is successful, it is a basic response signed by issuer or by a
 * responder issuer delegated (OCSP signing) and that signature verifies (OCSP_basic_verify
 * with issuer as the only trust anchor), it holds a SingleResponse for exactly this leaf's
 * CertID, thisUpdate is not in the future (OCSP_SKEW_MS allowed), nextUpdate is present,
 * after thisUpdate and not past at now_ms. 0 with *out (status good, revoked or unknown: the
 * caller decides), or -EBADMSG with *why (static). */
int ocsp_check(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer, uint64_t now_ms,
               ocsp_info_t *out, const char **why);

/* When to ask again for a response valid this_update_ms .. next_update_ms: half-way
 * through its window. */
uint64_t ocsp_refresh_at(uint64_t this_update_ms, uint64_t next_update_ms);

#endif
