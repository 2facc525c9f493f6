/* record: the on-disk encoding of one store entry's value side (internal to storage/).
 *
 * An LMDB data record is the entry's key (the LMDB key, raw bytes) and this msgpack value:
 *
 *     [format, version, origin, flags, value-or-nil]            (unsigned)
 *     [format, version, origin, flags, value-or-nil, sig]       (signed by its origin)
 *
 *   format   uint, STORE_RECORD_FORMAT; anything else is refused (a newer popmesh wrote it,
 *            or the bytes are not ours)
 *   version  uint, the entry's HLC (hlc.h)
 *   origin   uint, node id of the writer; never 0
 *   flags    uint, bit 0 = tombstone; other bits must be 0
 *   value    the entry's msgpack object spliced in verbatim (at most STORE_VALUE_MAX bytes),
 *            or nil for a tombstone. A live value may itself be nil: the flag, not the nil,
 *            says "deleted".
 *   sig      bin 64: the origin's Ed25519 signature over the entry (store.h, "Signed
 *            entries"); absent for an entry written unsigned. Only the decoder's length check
 *            knows it: what it signs and who checks it is the store's caller's business.
 *
 * Bytes read back from disk are untrusted (a torn sector, a bad disk, a stray tool): the
 * decoder goes through mpr, checks every field and refuses trailing bytes, so corruption
 * surfaces as -EBADMSG and the store reports it as -EIO instead of crashing. */
#ifndef POPMESH_STORAGE_RECORD_H
#define POPMESH_STORAGE_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/store.h"

#define STORE_RECORD_FORMAT    1
#define STORE_RECORD_TOMBSTONE 0x01u
/* bytes: array header + format + two uint64 + flags + the value + a signature (bin 64) */
#define STORE_RECORD_MAX (STORE_VALUE_MAX + 32 + 2 + STORE_SIG_BYTES)

typedef struct store_record {
    uint64_t version;     /* HLC */
    uint64_t origin;      /* node id, != 0 */
    bool tombstone;       /* true: value is NULL and vlen 0 */
    const uint8_t *value; /* one msgpack object; borrowed from the buffer decoded */
    size_t vlen;          /* bytes */
    const uint8_t *sig;   /* STORE_SIG_BYTES, borrowed; NULL: unsigned */
} store_record_t;

/* Decodes buf into *rec (value borrowed from buf). 0 or -EBADMSG; *why (if not NULL) is set
 * to a static string naming the first inconsistency. */
int store_record_decode(const void *buf, size_t len, store_record_t *rec, const char **why);
/* Encodes rec into buf (cap bytes). Returns the length, or 0 if it does not fit. The value
 * must already be one valid msgpack object (the caller checked it). */
size_t store_record_encode(const store_record_t *rec, uint8_t *buf, size_t cap);

#endif
