/* store: the replicated last-writer-wins map, kept in LMDB.
 *
 * Every entry is (key, value, version, origin, tombstone). The value is one msgpack object,
 * opaque to the store. version is an HLC (hlc.h); origin is the 64-bit id of the node that
 * wrote it and breaks ties. Merging a remote entry keeps whichever of (version, origin) is
 * higher, so merge is commutative, associative and idempotent and any delivery order of the
 * same writes converges to the same map.
 *
 * Deletes write tombstones (entries without a value) so a delete can win over an older put
 * that arrives later. Tombstones older than a grace period are collected (store_gc); a
 * replica that has been away longer than the grace period must do a full resync, because a
 * collected tombstone can no longer beat the stale put it would resurrect.
 *
 * For anti-entropy the store keeps STORE_BUCKETS digests: the key's hash picks a bucket, and
 * a bucket's digest is the XOR of the hashes of its entries (key, version, origin, tombstone,
 * value). The digests change in the same LMDB transaction as the entries, so they are never
 * out of step with the data, even after a crash. Two replicas compare 256 digests and ship
 * only the entries of buckets that differ.
 *
 * Durability: store_put/del/merge return only after the LMDB transaction committed with a
 * sync, so a caller that acknowledges after a 0 return never acknowledges a lost write.
 *
 * Time comes in as an argument (now_ms, wall clock): the store never reads a clock. */
#ifndef POPMESH_STORAGE_STORE_H
#define POPMESH_STORAGE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_BUCKETS       256
#define STORE_KEY_MAX       256                       /* bytes */
#define STORE_VALUE_MAX     (64 * 1024)               /* bytes of one msgpack object */
#define STORE_DEFAULT_MAP   (1ull << 30)              /* bytes: LMDB map size */
#define STORE_DEFAULT_GRACE (7ull * 24 * 3600 * 1000) /* ms: tombstone grace period */
#define STORE_SIG_BYTES     64                        /* an Ed25519 signature */

typedef struct store store_t;

typedef struct store_opts {
    uint64_t node_id;  /* origin id of local writes; must not be 0 */
    uint64_t map_size; /* bytes; 0 means STORE_DEFAULT_MAP */
    uint64_t grace_ms; /* tombstone grace; 0 means STORE_DEFAULT_GRACE */
    bool nosync;       /* benchmarks and tests only: commit without fsync */
} store_opts_t;

/* One entry. key and value point into memory owned by whoever filled the struct:
 * from store_get: caller owns (free with store_entry_free); in callbacks: borrowed until the
 * callback returns. */
typedef struct store_entry {
    char *key; /* not NUL-terminated in general; klen bytes (store_get adds a NUL) */
    size_t klen;
    uint8_t *value; /* one msgpack object; NULL for a tombstone */
    size_t vlen;
    uint64_t version; /* HLC */
    uint64_t origin;  /* node id of the writer */
    bool tombstone;
    bool has_sig;                   /* sig holds the origin's signature (see below) */
    uint8_t sig[STORE_SIG_BYTES];
} store_entry_t;

typedef struct store_stats {
    uint64_t entries;            /* live entries */
    uint64_t tombstones;         /* tombstones not yet collected */
    uint64_t merges_applied;     /* remote entries that won */
    uint64_t merges_ignored;     /* remote entries that lost or were duplicates */
    uint64_t skew_rejected;      /* remote entries refused for a clock too far ahead */
    uint64_t skew_last_origin;   /* the node that wrote the last of them (0: none yet) */
    uint64_t skew_last_ahead_ms; /* ms its version was ahead of this node's clock */
    uint64_t merges_refused;     /* remote entries refused for limits (bad key/value/origin) */
    uint64_t merges_unauthorized; /* remote entries refused by the guard (see below) */
    uint64_t map_size;           /* bytes */
    uint64_t map_used;           /* bytes in use by LMDB pages */
} store_stats_t;

/* Each callback returns 0 to go on, anything else to stop (then returned by the iterator).
 * A callback must not call back into the same store's functions that read or write entries
 * (they return -EBUSY while an iteration runs); store_digests and store_stats are fine. */
typedef int (*store_iter_fn)(const store_entry_t *e, void *ctx);

/* Opens or creates the store in directory dir (which must exist). 0 or -errno; *sp is set on
 * success. -EEXIST-style conflicts are not detected here: one process per directory is the
 * caller's job (popd holds a lock file). */
int store_open(const char *dir, const store_opts_t *opts, store_t **sp);
/* Closes and frees; accepts NULL; sets *sp = NULL. */
void store_close(store_t **sp);
/* A human-readable reason for the last error this store returned (LMDB's own message where
 * it came from LMDB). Borrowed; valid until the next call. */
const char *store_last_error(const store_t *s);

/* Checks a key and value against the limits: 0, -EINVAL (empty key, NUL in key, not one
 * msgpack object) or -E2BIG (over STORE_KEY_MAX / STORE_VALUE_MAX). */
int store_check(const char *key, size_t klen, const void *value, size_t vlen);

/* Writes a value at a fresh local version. On success fills *out (if not NULL) with the
 * version and origin (out->key/value are left NULL). 0, -EINVAL, -E2BIG, -ENOSPC (map full:
 * nothing was written), -EIO. */
int store_put(store_t *s, const char *key, size_t klen, const void *value, size_t vlen,
              uint64_t now_ms, store_entry_t *out);
/* Writes a tombstone. -ENOENT if there is no live entry (nothing is written). Same errors as
 * store_put otherwise. */
int store_del(store_t *s, const char *key, size_t klen, uint64_t now_ms, store_entry_t *out);
/* Several local puts in one transaction (one fsync): all or nothing. Each entry's key/value
 * are used (version/origin are ignored and assigned fresh, in array order); an entry with
 * tombstone set or no value is -EINVAL. Every entry is checked before anything is written. */
int store_put_batch(store_t *s, const store_entry_t *entries, size_t n, uint64_t now_ms);

/* Reads a live entry. -ENOENT if missing or a tombstone. Caller owns e's buffers. */
int store_get(store_t *s, const char *key, size_t klen, store_entry_t *e);
void store_entry_free(store_entry_t *e);

/* Calls fn for every live entry whose key starts with prefix, in key order. */
int store_list(store_t *s, const char *prefix, size_t plen, store_iter_fn fn, void *ctx);

/* Merges remote entries (version and origin as sent; key/value checked against the limits).
 * Returns the number applied (>= 0) or -errno; entries refused for skew or limits are
 * counted and skipped, the rest still merge. One transaction for the whole batch. */
int store_merge(store_t *s, const store_entry_t *entries, size_t n, uint64_t now_ms);

/* Copies the STORE_BUCKETS digests. */
int store_digests(store_t *s, uint64_t out[STORE_BUCKETS]);
/* Which bucket a key falls in. */
unsigned store_bucket_of(const char *key, size_t klen);
/* Calls fn for every entry, tombstones included, of each bucket whose bit is set in
 * buckets[] (bit b of buckets[b / 8]). */
int store_export(store_t *s, const uint8_t buckets[STORE_BUCKETS / 8], store_iter_fn fn, void *ctx);

/* Removes tombstones older than the grace period. Returns how many, or -errno. */
int store_gc(store_t *s, uint64_t now_ms);

/* Consistency check (tests, tools, after a crash): recomputes every bucket digest and the
 * entry/tombstone counts from the records and compares them with the ones maintained
 * incrementally. 0, or -EIO (store_last_error names the first difference or corrupt record).
 * O(entries): not for the hot path. */
int store_verify(store_t *s);

int store_stats(store_t *s, store_stats_t *st);

/* ---- change feed ------------------------------------------------------------------------
 *
 * Consumers of configuration (the data plane's resources and sites, the HTTP routes, the
 * registry) react to a change instead of re-reading the store on a timer. A watcher names a
 * key prefix; after every transaction that commits (a local put, delete or batch, or a merge
 * of remote entries) the store calls each watcher once with the entries of that transaction
 * under its prefix, in the order they were applied. A delete is reported as a tombstone
 * (value NULL). Collecting an expired tombstone changes nothing visible and is not reported;
 * nor is a merged entry that lost to the one already stored.
 *
 * Callbacks run synchronously, after the commit and before store_put / store_merge return,
 * on the caller's thread. The entries are borrowed until the callback returns. A callback may
 * read and write the store (a nested write fires its own callbacks first); it must not add or
 * remove watchers. */
typedef void (*store_watch_fn)(void *ctx, const store_entry_t *changes, size_t n);

/* Registers fn for keys starting with prefix (plen 0: every key). Returns a watch id > 0, or
 * -EINVAL / -ENOSPC (STORE_WATCH_MAX watchers). The prefix is copied. */
#define STORE_WATCH_MAX 32
int store_watch(store_t *s, const char *prefix, size_t plen, store_watch_fn fn, void *ctx);
/* Removes a watcher; unknown ids are ignored. */
void store_unwatch(store_t *s, int id);
/* ---- signed entries -------------------------------------------------------------------
 *
 * Some keys (the mesh's policy: users, resources, rules) may be written only by nodes the
 * caller trusts for it. The store knows nothing of keys or trust; it carries a signature per
 * entry and lets its caller make and check them:
 *  - the signer is asked, for every local put or delete, after the entry's version and
 *    origin are assigned and inside the write transaction, whether it signs the entry; if it
 *    fills sig and returns true, the signature is stored with the record, reported to the
 *    writer (store_put's *out), exported with the entry and carried by the change feed. It
 *    must not call the store.
 *  - the guard is asked, for each remote entry of a store_merge whose key it wants, whether
 *    the entry may be merged. It is called outside any transaction, so it may read the store
 *    (to find the writer's key, say), and only for entries that would win: duplicates and
 *    entries older than the stored one are ignored without a check. The batch is merged in
 *    two transactions: first the entries the guard does not want (so a node's key and the
 *    records it signed can arrive in one batch), then those it accepted. Refused entries are
 *    counted (merges_unauthorized) and skipped; anti-entropy offers them again later.
 * What is signed is up to the signer; store_sig_message gives every caller the same bytes:
 *     "popmesh entry v1" 0x00 || klen (u32 LE) || key || version (u64 LE) || origin (u64 LE)
 *     || tombstone (u8) || vlen (u32 LE) || value
 * so a signature binds the key, the value (or the delete), the version and the origin: a
 * replayed signed entry is the same entry, which last-writer-wins already orders. */
typedef bool (*store_sign_fn)(void *ctx, const store_entry_t *e, uint8_t sig[STORE_SIG_BYTES]);
typedef bool (*store_guard_wants_fn)(void *ctx, const char *key, size_t klen);
/* 0: merge it; anything else: refuse it. */
typedef int (*store_guard_fn)(void *ctx, const store_entry_t *e);
void store_set_signer(store_t *s, store_sign_fn fn, void *ctx);
void store_set_guard(store_t *s, store_guard_wants_fn wants, store_guard_fn check, void *ctx);
/* Writes key's record again, unchanged (its value, or its tombstone), at its version + 1 with
 * this node as origin and through the signer: how a node adopts a record whose signature no
 * longer counts (its writer was removed, or wrote it unsigned before the mesh signed). Newer
 * than the copy it re-signs, older than any later write (a millisecond later at least), so it
 * never undoes a change that has not arrived yet. On success *out (if not NULL) holds the
 * version, origin and signature, and value/vlen: a malloc'd copy of the value (NULL for a
 * tombstone) the caller frees. -ENOENT if there is no record at all. */
int store_resign(store_t *s, const char *key, size_t klen, uint64_t now_ms, store_entry_t *out);
/* The bytes a signature covers, in a malloc'd buffer (*len set); free() it. */
uint8_t *store_sig_message(const store_entry_t *e, size_t *len);

/* The store's clock, for callers that stamp their own events. Borrowed. */
struct hlc *store_clock(store_t *s);

#endif
