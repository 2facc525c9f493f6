/* certstore: the mesh's TLS certificates and session-ticket keys, as replicated records, and
 * the secret they are sealed with.
 *
 *   cert/<id>       {id, names: [str], chain: str (PEM, leaf first), key: bin (sealed PEM),
 *                    not_before_ms, not_after_ms, issuer: str, source: "import" | "acme",
 *                    obtained_by: str (node name), created_ms, state: str, error?: str,
 *                    renew_after_ms?}
 *   tlsticket/<epoch:16 hex>   {epoch, key: bin (sealed 80 bytes: name 16, aes 32, hmac 32),
 *                    created_ms, created_by}
 *
 * <id> is derived from the certificate's first name ("www.example.com", "_wild.example.com"
 * for "*.example.com"), so importing or obtaining a new certificate for the same names
 * replaces the old one everywhere.
 *
 * SEALING. Private keys and ticket keys never sit in clear in LMDB, in a record on the wire
 * or in a log: they are sealed under the mesh's store key, bound to their record's key and
 * field (node/records/storeseal.h), which every PoP holds and no site does. The seal and open
 * functions below are the one place each record type's secret is sealed and opened. Values
 * sealed before the store key existed (under a mesh-derived key) still open, and say so, so
 * the start-up pass (reseal.h) rewrites them. A record from another node is untrusted input:
 * the parsers bound every field, and a sealed blob that does not open is refused, never used.
 *
 * Loop-free; fuzzed (tests/fuzz/fuzz_certrec.c). */
#ifndef POPMESH_NODE_TLS_CERTSTORE_H
#define POPMESH_NODE_TLS_CERTSTORE_H

#include "node/records/identity.h"
#include "node/records/storeseal.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CERT_PREFIX       "cert/"
#define TLSTICKET_PREFIX  "tlsticket/"
#define CERT_ID_MAX       253
#define CERT_NAMES_MAX    100        /* names on one certificate */
#define CERT_CHAIN_MAX    (64 << 10) /* bytes of the PEM chain */
#define CERT_KEY_MAX      (16 << 10) /* bytes of the PEM private key */
#define CERT_STATE_MAX    63
#define CERT_ERROR_MAX    511
#define TLSTICKET_KEY_LEN 80 /* name 16 + AES-256 32 + HMAC-SHA256 32 */

/* The keys secrets are sealed with (storeseal.h). */
typedef storeseal_t certstore_seal_key_t;

typedef struct cert_rec {
    char id[CERT_ID_MAX + 1];
    char (*names)[CERT_ID_MAX + 1]; /* malloc'd, nnames entries, lowercase */
    size_t nnames;
    char *chain_pem; /* malloc'd, NUL-terminated */
    uint8_t *key_sealed; /* malloc'd; open with certstore_open_key */
    size_t key_sealed_len;
    uint64_t not_before_ms, not_after_ms;
    char issuer[256];
    char source[16];      /* "import" or "acme" */
    char obtained_by[64]; /* node name */
    uint64_t created_ms;
    char state[CERT_STATE_MAX + 1]; /* "valid", "renewing", "failed", "expired" */
    char error[CERT_ERROR_MAX + 1]; /* the last failure, "" if none */
    uint64_t renew_after_ms;        /* 0 = two thirds of the lifetime */
} cert_rec_t;

void cert_rec_free(cert_rec_t *c);
/* "cert/<id>": 0 or -EINVAL. */
int cert_key(const char *id, char *out, size_t len);
/* The id for a certificate whose first name is name ("*." becomes "_wild."). */
int cert_id_for(const char *name, char *out, size_t len);
/* The id out of a "cert/<id>" key (klen bytes, no NUL needed): 0 or -EINVAL. */
int cert_key_id(const char *key, size_t klen, char *id, size_t len);
/* A name a certificate may carry: a lowercase DNS name without the trailing dot, or "*." and
 * one. 0, or -EINVAL with *why (static). */
int cert_check_name(const char *name, const char **why);
void cert_pack(msgpack_packer *pk, const cert_rec_t *c);
/* 0 or -EBADMSG with *why (static). id: from the key. */
int cert_parse(const uint8_t *buf, size_t len, const char *id, cert_rec_t *c, const char **why);

/* Seals a certificate's private key (PEM) for cert/<id> into c->key_sealed (replacing what
 * was there): 0, or a storeseal_seal error (-ENOKEY without a store key). */
int cert_seal_key(const certstore_seal_key_t *k, cert_rec_t *c, const uint8_t *pem, size_t len);
/* Opens c's private key: *pem malloc'd and NUL-terminated (caller wipes and frees); *legacy
 * (may be NULL): sealed in an older format, to be rewritten. 0 or a storeseal_open error
 * (storeseal_strerror says it for the log). */
int cert_open_key(const certstore_seal_key_t *k, const cert_rec_t *c, uint8_t **pem, size_t *len,
                  bool *legacy);

/* Reads a certificate chain and a key in PEM (what `meshctl cert import` sends), checks that
 * the key matches the leaf, and fills c (names from the leaf's subjectAltName DNS entries,
 * else its CN; validity; issuer), sealing the key. source, obtained_by set by the caller
 * after. 0, or -EINVAL with a message in err ("the key does not match the certificate",
 * "not a PEM certificate", "the certificate has expired", ...). */
int cert_from_pem(const certstore_seal_key_t *k, const char *chain_pem, size_t chain_len,
                  const char *key_pem, size_t key_len, uint64_t now_ms, cert_rec_t *c, char *err,
                  size_t errlen);

/* True if name (lowercase, no trailing dot) is covered by pattern (exact, or "*.rest" covering
 * exactly one more label on the left). */
bool cert_name_matches(const char *pattern, const char *name);

typedef struct tlsticket_rec {
    uint64_t epoch; /* period number: floor(unix ms / period ms) */
    uint8_t key_sealed[TLSTICKET_KEY_LEN + STORESEAL_OVERHEAD]; /* or + 40: legacy */
    size_t key_sealed_len;
    uint64_t created_ms;
    char created_by[64];
} tlsticket_rec_t;

int tlsticket_key(uint64_t epoch, char *out, size_t len);
/* The epoch out of a "tlsticket/<16 hex>" key: 0 or -EINVAL. */
int tlsticket_key_epoch(const char *key, size_t klen, uint64_t *epoch);
void tlsticket_pack(msgpack_packer *pk, const tlsticket_rec_t *t);
int tlsticket_parse(const uint8_t *buf, size_t len, uint64_t epoch, tlsticket_rec_t *t,
                    const char **why);
/* Seals a ticket key (80 bytes) for tlsticket/<t->epoch> into t: 0 or a storeseal_seal error. */
int tlsticket_seal_key(const certstore_seal_key_t *k, tlsticket_rec_t *t,
                       const uint8_t key[TLSTICKET_KEY_LEN]);
/* Opens t's ticket key into key: 0 or a storeseal_open error (-EBADMSG also for a plaintext
 * that is not 80 bytes); *legacy as for cert_open_key. */
int tlsticket_open_key(const certstore_seal_key_t *k, const tlsticket_rec_t *t,
                       uint8_t key[TLSTICKET_KEY_LEN], bool *legacy);

#endif
