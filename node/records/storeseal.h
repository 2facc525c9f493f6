/* storeseal: the secrets inside replicated records, sealed under the mesh's store key.
 *
 * Every PoP holds the whole replicated store, so a copy of one PoP's store/data.mdb (a backup,
 * a disk image, a snapshot taken by a hosting provider) would otherwise hold every private key
 * of the mesh. The records that carry a secret (docs/security.md, "Secrets in the store")
 * therefore keep that field sealed, and only sealed, in LMDB, on the wire and in logs:
 *
 *   sealed = "pms" | version (1 byte, STORESEAL_VERSION) | key id (1 byte) | nonce (24)
 *            | XChaCha20-Poly1305 ciphertext | tag (16)
 *   associated data = the 5 header bytes | field name | 0x00 | record key
 *
 * The key is the store key: 32 random bytes in DIR/store.key (identity.h), made by popd init,
 * handed to every PoP that joins in JOIN_OK, never to a site. Binding the record key and the
 * field name into the tag means a sealed value copied into another record, or into another
 * field of the same record, does not open. The key id names which store key sealed a value,
 * so the key can be rotated later: a PoP holding several keys opens each value with the key
 * it names.
 *
 * LEGACY. Before the store key existed, the same fields were sealed (crypto_secretbox
 * XChaCha20-Poly1305: nonce 24 | box) under a key derived from mesh.key, with no header, no
 * key id and no associated data. storeseal_open still opens those, with the legacy key, and
 * says so (*legacy), so that the reader can rewrite the record in the current format
 * (node/tls/reseal.h). No version ever stored these fields in clear, so a value that is
 * neither format is refused: accepting clear text would let whoever can write to a PoP's
 * data.mdb, but holds no key, plant a private key of their choice.
 *
 * Loop-free; the header decoder is fuzzed (tests/fuzz/fuzz_storeseal.c). */
#ifndef POPMESH_NODE_RECORDS_STORESEAL_H
#define POPMESH_NODE_RECORDS_STORESEAL_H

#include "node/records/identity.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORESEAL_VERSION  1
#define STORESEAL_HEADER   5  /* "pms", version, key id */
#define STORESEAL_NONCE    24 /* XChaCha20 */
#define STORESEAL_TAG      16 /* Poly1305 */
#define STORESEAL_OVERHEAD (STORESEAL_HEADER + STORESEAL_NONCE + STORESEAL_TAG) /* 45 */
#define STORESEAL_LEGACY_OVERHEAD 40 /* nonce 24 + tag 16 */
#define STORESEAL_FIELD_MAX 32 /* bytes of a field name bound into the tag */

/* The keys one PoP seals and opens with. Plain data; wipe with storeseal_wipe. */
typedef struct storeseal {
    bool have_key;       /* false: nothing can be sealed (a PoP without a store key) */
    uint8_t key_id;      /* the store key's id, 1.. (STOREKEY_ID_FIRST) */
    uint8_t key[32];     /* the store key */
    bool have_legacy;    /* the mesh-derived key of values sealed before the store key */
    uint8_t legacy[32];
    bool write_legacy;   /* test knob only: seal in the legacy format (an older version) */
} storeseal_t;

/* k from the store key (may be NULL: no key) and the mesh key (may be NULL: no legacy key). */
void storeseal_init(storeseal_t *k, const storekey_t *sk, const meshkey_t *mk);
void storeseal_wipe(storeseal_t *k);

/* The parsed header of a value in the current format. */
typedef struct storeseal_hdr {
    uint8_t version;
    uint8_t key_id;
    size_t plain_len; /* bytes of the plaintext inside */
} storeseal_hdr_t;

/* Reads the header of a sealed value of len bytes: 0; -EPROTO for the magic with a version
 * this code does not know; -EBADMSG for anything else that is not the current format (too
 * short, another magic: possibly a legacy value). */
int storeseal_parse(const uint8_t *in, size_t len, storeseal_hdr_t *h);

/* Seals plain (len bytes) for field `field` of the record at rkey (klen bytes, no NUL needed).
 * *out is malloc'd (caller frees), *outlen = len + STORESEAL_OVERHEAD. 0; -ENOKEY without a
 * store key; -EINVAL for a field name over STORESEAL_FIELD_MAX. */
int storeseal_seal(const storeseal_t *k, const char *rkey, size_t klen, const char *field,
                   const uint8_t *plain, size_t len, uint8_t **out, size_t *outlen);

/* Opens what storeseal_seal made for the same rkey and field, or a legacy value. *plain is
 * malloc'd with a NUL after its *plainlen bytes; the caller wipes and frees it. *legacy
 * (may be NULL) says the value is not in the current format under the current key and should
 * be rewritten. 0; -EBADMSG when it does not open (tampered, truncated, moved from another
 * record or field, sealed under another mesh's key); -ENOKEY when it names a key id this PoP
 * does not hold; -EPROTO for a format version this code does not know. */
int storeseal_open(const storeseal_t *k, const char *rkey, size_t klen, const char *field,
                   const uint8_t *in, size_t len, uint8_t **plain, size_t *plainlen,
                   bool *legacy);

/* A sentence for an error from storeseal_open (static), for a log line that names the record. */
const char *storeseal_strerror(int rc);

/* The legacy format, for tests and the test knob: nonce | secretbox under k->legacy. */
int storeseal_seal_legacy(const storeseal_t *k, const uint8_t *plain, size_t len, uint8_t **out,
                          size_t *outlen);

#endif
