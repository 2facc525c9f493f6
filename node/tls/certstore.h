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
 * or in a log: they are sealed (XChaCha20-Poly1305, libsodium secretbox) with a key derived
 * from the mesh key's secret (crypto_kdf_derive_from_key, context "popmcert", subkey 1), which
 * every PoP holds and no site does. certstore_seal_key_t holds that derived key; wipe it with
 * certstore_wipe_key. A record from another node is untrusted input: the parsers bound every
 * field, and a sealed blob that does not open is refused, never used.
 *
 * Loop-free; fuzzed (tests/fuzz/fuzz_certrec.c). */
#ifndef POPMESH_NODE_TLS_CERTSTORE_H
#define POPMESH_NODE_TLS_CERTSTORE_H

#include "node/records/identity.h"

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

typedef struct certstore_seal_key {
    uint8_t k[32];
} certstore_seal_key_t;

/* The sealing key from the mesh key. */
void certstore_seal_key_from_mesh(const meshkey_t *mk, certstore_seal_key_t *out);
void certstore_wipe_key(certstore_seal_key_t *k);

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

/* Seals / opens a private key (PEM). seal: *out malloc'd. open: *pem malloc'd and
 * NUL-terminated (caller wipes and frees). 0, or -EBADMSG when it does not open. */
int certstore_seal(const certstore_seal_key_t *k, const uint8_t *plain, size_t len, uint8_t **out,
                   size_t *outlen);
int certstore_open(const certstore_seal_key_t *k, const uint8_t *sealed, size_t len,
                   uint8_t **plain, size_t *plainlen);

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
    uint8_t key_sealed[TLSTICKET_KEY_LEN + 40];
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

#endif
