/* acmerec: the replicated records of ACME (RFC 8555) certificate issuance.
 *
 *   acme/config          {directory: str, email: str, ca_pem?: str, eab_kid?: str,
 *                         eab_hmac?: bin (sealed), account_key: bin (sealed PEM, P-256),
 *                         created_ms, set_by: str}
 *   acmechal/<token>     {key_authorization: str, expires_ms}        HTTP-01 answers
 *   acmedns/<name>       {values: [str], expires_ms}                 DNS-01 answers: TXT of
 *                                                                    _acme-challenge.<name>
 *   lease/acme/<cert id> {holder: str, holder_id: uint, expires_ms, version, failures,
 *                         retry_after_ms, error: str}
 *
 * Every PoP answers challenges from the first two (the HTTP ingress, node/acme/acmechal.h;
 * the name server, node/dns/dnsserver.c), so the CA may ask whichever PoP DNS sends it to.
 * The lease names the one PoP working on a certificate's order (node/acme/acme.c) and keeps
 * the order's failure count between PoPs, so the backoff survives a takeover.
 *
 * A record from another node is untrusted: every field is bounded here; a token or a name
 * that could not be part of a URL path or a DNS name is refused (the token ends up in
 * /.well-known/acme-challenge/<token>, the name in a TXT owner). Loop-free; fuzzed
 * (tests/fuzz/fuzz_acme.c). */
#ifndef POPMESH_NODE_ACME_ACMEREC_H
#define POPMESH_NODE_ACME_ACMEREC_H

#include "node/records/storeseal.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACME_CONFIG_KEY     "acme/config"
#define ACMECHAL_PREFIX     "acmechal/"
#define ACMEDNS_PREFIX      "acmedns/"
#define ACME_LEASE_PREFIX   "lease/acme/"
#define ACME_URL_MAX        1024 /* bytes of a URL we accept from a directory or a response */
#define ACME_EMAIL_MAX      254
#define ACME_TOKEN_MAX      128 /* bytes of a challenge token (base64url; Pebble and LE: 43) */
#define ACME_KEYAUTH_MAX    (ACME_TOKEN_MAX + 1 + 43)
#define ACME_TXT_VALUES_MAX 8  /* TXT values on one name (a name and its wildcard: 2) */
#define ACME_TXT_MAX        64 /* bytes of one TXT value (a SHA-256 in base64url: 43) */
#define ACME_NAME_MAX       253
#define ACME_CA_PEM_MAX     (32 << 10)
#define ACME_SEALED_MAX     (4 << 10)
#define ACME_EAB_KID_MAX    256

typedef struct acme_config {
    char directory[ACME_URL_MAX + 1];
    char email[ACME_EMAIL_MAX + 1];
    char *ca_pem;                       /* malloc'd, NUL-terminated, or NULL: the system's roots */
    char eab_kid[ACME_EAB_KID_MAX + 1]; /* "" = no external account binding */
    uint8_t eab_hmac_sealed[ACME_SEALED_MAX];
    size_t eab_hmac_sealed_len;
    uint8_t account_key_sealed[ACME_SEALED_MAX];
    size_t account_key_sealed_len;
    uint64_t created_ms;
    char set_by[64];
} acme_config_t;

void acme_config_free(acme_config_t *c);
void acme_config_pack(msgpack_packer *pk, const acme_config_t *c);
/* 0 or -EBADMSG with *why (static). */
int acme_config_parse(const uint8_t *buf, size_t len, acme_config_t *c, const char **why);

/* The secrets of acme/config, sealed under the store key and bound to the record and to the
 * field (storeseal.h): the one place they are sealed and opened. field is "account_key" or
 * "eab_hmac". seal: into out (cap bytes): 0, -E2BIG, or a storeseal_seal error. open: *plain
 * malloc'd (caller wipes and frees); *legacy (may be NULL) as storeseal_open says. */
int acme_config_seal(const storeseal_t *k, const char *field, const uint8_t *plain, size_t len,
                     uint8_t *out, size_t cap, size_t *outlen);
int acme_config_open(const storeseal_t *k, const char *field, const uint8_t *sealed, size_t len,
                     uint8_t **plain, size_t *plainlen, bool *legacy);

typedef struct acmechal_rec {
    char key_authorization[ACME_KEYAUTH_MAX + 1];
    uint64_t expires_ms;
} acmechal_rec_t;

/* A token is 1..ACME_TOKEN_MAX bytes of the base64url alphabet (RFC 8555 section 8.3). */
bool acme_token_ok(const char *t, size_t len);
/* "acmechal/<token>": 0 or -EINVAL. */
int acmechal_key(const char *token, char *out, size_t len);
void acmechal_pack(msgpack_packer *pk, const acmechal_rec_t *c);
/* 0 or -EBADMSG: also when key_authorization does not start with "<token>." */
int acmechal_parse(const uint8_t *buf, size_t len, const char *token, acmechal_rec_t *c,
                   const char **why);

typedef struct acmedns_rec {
    char values[ACME_TXT_VALUES_MAX][ACME_TXT_MAX + 1];
    size_t nvalues;
    uint64_t expires_ms;
} acmedns_rec_t;

/* A DNS name as the mesh spells it: lowercase labels of a-z 0-9 '-', no "*.", no dot at the
 * end, 1..253 bytes. */
bool acme_name_ok(const char *n, size_t len);
/* "acmedns/<name>": 0 or -EINVAL. */
int acmedns_key(const char *name, char *out, size_t len);
void acmedns_pack(msgpack_packer *pk, const acmedns_rec_t *d);
/* values: 1..8 strings of 1..64 printable ASCII bytes without '"' or '\\'. */
int acmedns_parse(const uint8_t *buf, size_t len, acmedns_rec_t *d, const char **why);

typedef struct acme_lease {
    char holder[64];         /* node name */
    uint64_t holder_id;      /* node id */
    uint64_t expires_ms;     /* unix ms; 0 = released */
    uint64_t version;        /* bumps with every take; a takeover is version + 1 */
    uint64_t failures;       /* orders of this certificate that failed in a row */
    uint64_t retry_after_ms; /* no new order before this (backoff), unix ms */
    char error[512];         /* the last failure, "" if none */
} acme_lease_t;

/* "lease/acme/<cert id>": 0 or -EINVAL. */
int acme_lease_key(const char *cert_id, char *out, size_t len);
void acme_lease_pack(msgpack_packer *pk, const acme_lease_t *l);
int acme_lease_parse(const uint8_t *buf, size_t len, acme_lease_t *l, const char **why);

#endif
