/* antientropy: push-pull repair of the replicated store between two nodes. Sans-I/O.
 *
 * Gossip carries fresh writes fast but may lose some; this exchange guarantees convergence.
 * Periodically a node sends one peer its 256 bucket digests (about 2 KiB). The peer compares
 * them with its own; for every bucket that differs it sends its entries of that bucket and
 * asks for the initiator's. Both sides merge what they receive; merge is a join (store.h), so
 * after one round trip both hold the union, and the buckets agree. When replicas agree, the
 * whole exchange is one 2 KiB message and no reply.
 *
 *   DIGEST  [1, AE_DIGEST, seq, digests: bin(256 * 8)]
 *   ENTRIES [1, AE_ENTRIES, seq, buckets: bin(32), want: bool, entries: [entry...]]
 *   entry = [key: bin, version: uint, origin: uint, tombstone: bool, value: any (nil if tomb)
 *            (, sig: bin(64))]     the origin's signature, on entries written signed
 *
 * ENTRIES with want=true asks the receiver to answer with its own entries of those buckets
 * (want=false, so the exchange stops there). A bucket's entries may span several ENTRIES
 * messages, each at most AE_CHUNK_BYTES; only the first of a reply carries want=true.
 *
 * The same entry encoding carries single fresh writes inside gossip broadcasts. */
#ifndef POPMESH_GOSSIP_ANTIENTROPY_H
#define POPMESH_GOSSIP_ANTIENTROPY_H

#include "common/mp.h"
#include "storage/store.h"

#include <stddef.h>
#include <stdint.h>

#define AE_VERSION 1
#define AE_DIGEST  32
#define AE_ENTRIES 33
/* A chunk is flushed once it reaches AE_CHUNK_BYTES, so one ENTRIES message holds at most
 * AE_CHUNK_BYTES - 1 bytes of entries plus one more entry, plus its head: AE_MSG_MAX. The
 * transport's message limit (MESHNET_MSG_MAX) must hold it. 64 KiB keeps one message, and so
 * what an unauthenticated connection may make a node allocate, small. */
#define AE_CHUNK_BYTES (64 * 1024) /* bytes of entries per ENTRIES message */
#define AE_MSG_MAX     (AE_CHUNK_BYTES + STORE_KEY_MAX + STORE_VALUE_MAX + 256) /* bytes */
#define AE_MAX_ENTRIES 100000 /* entries accepted in one ENTRIES message */

/* Called for each message to send to the peer; buf is borrowed for the call. */
typedef void (*ae_send_fn)(void *ctx, const uint8_t *buf, size_t len);

typedef struct ae_stats {
    uint64_t digests_sent, digests_received, digests_equal;
    uint64_t entries_sent, entries_received, entries_applied;
    uint64_t malformed;
} ae_stats_t;

/* Packs a DIGEST message of s's current digests. */
int ae_digest_msg(store_t *s, uint64_t seq, msgpack_sbuffer *out);

/* Handles one AE message (DIGEST or ENTRIES) from the peer; replies through send; merges
 * received entries at now_ms. 0, -EBADMSG (malformed: nothing merged from it), or a store
 * error. */
int ae_handle(store_t *s, const uint8_t *msg, size_t len, uint64_t now_ms, ae_send_fn send,
              void *ctx, ae_stats_t *st);

/* One entry in the shared encoding. */
void ae_entry_pack(msgpack_packer *pk, const store_entry_t *e);
/* Decodes one entry; key and value point into the reader's buffer (borrowed). */
int ae_entry_read(mpr_t *r, store_entry_t *e);

#endif
