/* ocsprec: OCSP responses for the mesh's certificates, as replicated records, and the checks a
 * response must pass before any PoP staples it.
 *
 *   ocsp/<cert id>  {der: bin (the OCSPResponse as the responder sent it), status: "good" |
 *                    "revoked" | "unknown", this_update_ms, next_update_ms, fetched_by: str
 *                    (node name), fetched_ms}
 *
 * One PoP fetches (ocspfetch.h) and writes the record; every PoP reads it. A record from
 * another node is untrusted input: the parser bounds every field, and the DER is checked again
 * by every PoP against the certificate it serves (ocsp_judge_record) before it reaches tlsctx,
 * so a response for another certificate, an unsigned or badly signed one, or a stale one is
 * never stapled. tlsctx_set_ocsp and cert.list (certadmin.c) apply the same ocsp_judge, so what
 * an operator is shown is what a PoP staples.
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
    uint64_t this_update_ms, next_update_ms; /* Unix ms */
    uint64_t revoked_ms; /* revocationTime when status is revoked, else 0 (Unix ms) */
} ocsp_info_t;

/* Whether der (len bytes) is a response fit to store for leaf (ocsp_judge says GOOD, REVOKED
 * or UNKNOWN): the whole buffer is
 * one OCSPResponse, its status is successful, it is a basic response signed by issuer or by a
 * responder issuer delegated (OCSP signing) and that signature verifies (OCSP_basic_verify
 * with issuer as the only trust anchor), it holds a SingleResponse for exactly this leaf's
 * CertID, thisUpdate is not in the future (OCSP_SKEW_MS allowed), nextUpdate is present,
 * after thisUpdate and not past at now_ms. 0 with *out (status good, revoked or unknown: the
 * caller decides), or -EBADMSG with *why (static). */
int ocsp_check(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer, uint64_t now_ms,
               ocsp_info_t *out, const char **why);

/* ---- the one rule of what is stapled (ocspfetch, tlsctx and cert.list share it) ---- */

/* What a PoP does with the OCSP side of one certificate. Only GOOD is ever stapled; cert.list
 * shows the state by name, so an operator sees what the PoPs really do. */
enum ocsp_state {
    OCSP_STATE_NONE = 0,  /* nothing fetched: the leaf names no http(s) responder, or the
                           * chain holds no issuer to name in a request */
    OCSP_STATE_PENDING,   /* a responder, no response stored yet */
    OCSP_STATE_GOOD,      /* a verified, fresh, good response: stapled */
    OCSP_STATE_STALE,     /* verified, but its nextUpdate has passed: not stapled */
    OCSP_STATE_REVOKED,   /* verified, fresh, revoked: not stapled */
    OCSP_STATE_UNKNOWN,   /* verified, fresh, the responder does not know it: not stapled */
    OCSP_STATE_UNUSABLE,  /* stored, but it fails the checks for this leaf: not stapled */
};
/* "none", "pending", "good", "stale", "revoked", "unknown", "unusable". */
const char *ocsp_state_name(enum ocsp_state s);

/* Whether a certificate's OCSP is fetched at all, from its PEM chain: 0 with *leaf and
 * *issuer (ocsp_chain; caller frees both) and the responder URL (ocsp_responder) in url.
 * Else *leaf and *issuer are NULL, *why (static) says why, and the state is OCSP_STATE_NONE:
 * -ENOENT (the leaf names no responder, or the chain holds no issuer), or -EINVAL (a responder
 * that is not an http(s) URL that fits, or a chain that does not parse or whose second
 * certificate did not issue the first). */
int ocsp_target(const char *chain_pem, X509 **leaf, X509 **issuer, char *url, size_t len,
                const char **why);

/* The verdict on a response der (len bytes) for leaf at now_ms: every check of ocsp_check
 * but the last, then OCSP_STATE_STALE past nextUpdate, else GOOD, REVOKED or UNKNOWN as it
 * says. *info is filled for those four (zeroed for UNUSABLE); *why (static) is set for STALE
 * and UNUSABLE. */
enum ocsp_state ocsp_judge(const uint8_t *der, size_t len, X509 *leaf, X509 *issuer,
                           uint64_t now_ms, ocsp_info_t *info, const char **why);

/* The same for the stored value of ocsp/<id> (vlen bytes; NULL: none stored, which is
 * OCSP_STATE_PENDING): parsed (ocsp_parse) into *rec, then its DER judged. A value that does
 * not parse is UNUSABLE. *rec: caller frees (ocsp_rec_free); zeroed unless it parsed. The
 * record's own status and times are never trusted: the DER decides. */
enum ocsp_state ocsp_judge_record(const uint8_t *val, size_t vlen, X509 *leaf, X509 *issuer,
                                  uint64_t now_ms, ocsp_rec_t *rec, ocsp_info_t *info,
                                  const char **why);

/* When to ask again for a response valid this_update_ms .. next_update_ms: half-way
 * through its window. */
uint64_t ocsp_refresh_at(uint64_t this_update_ms, uint64_t next_update_ms);

#endif
