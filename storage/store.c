/* store: the replicated last-writer-wins map on LMDB.
 *
 * BACKGROUND
 *
 * Every PoP holds the whole configuration and accepts writes on its own; replicas exchange
 * entries over gossip (fast, lossy) and anti-entropy (slow, complete). The map must therefore
 * converge whatever the order, duplication or loss of deliveries, and two replicas must be
 * able to find out cheaply whether, and where, they differ.
 *
 * Convergence comes from a total order on entries: (version, origin) first, which for honest
 * nodes is unique per write (an origin never issues the same HLC twice); then, only for the
 * case that should never happen (one origin reusing a version with different content, i.e. a
 * bug or a restored backup), tombstone over live and then the value bytes. With a total
 * order, "keep the larger" is a join: commutative, associative and idempotent, so every
 * delivery order of the same set of writes yields the same map, bit for bit.
 *
 * INVARIANTS (each write transaction keeps all of them, or aborts and keeps the old state)
 *
 * 1. Digest consistency. Bucket digest b is the XOR of entry_hash() over all records (live
 *    and tombstones) whose key hashes to b. The digests live in the "meta" DB and change in
 *    the same LMDB transaction as the records, so no crash, ENOSPC or abort can leave them out
 *    of step: a replica never advertises a digest for data it does not hold. XOR makes the
 *    update O(1) per change (remove the old entry's hash, add the new one) and independent of
 *    order, which is what makes equal maps give equal digests. store_verify() recomputes them.
 *
 * 2. Tombstones. A delete is a record with the tombstone flag and no value, versioned like a
 *    put, so a delete beats an older put that arrives later. Tombstones count in the digests
 *    like any entry: two replicas that agree on everything but a tombstone do differ.
 *
 * 3. Clock. The store's HLC has seen every version it holds (local writes come from it,
 *    remote ones are observed on merge, and its high-water mark is persisted in meta in the
 *    same transaction), so a local write always beats whatever is stored for that key, even
 *    right after a restart with a wall clock that went backwards.
 *
 * GC VERSUS RESYNC
 *
 * Tombstones cannot live forever, so store_gc drops those whose HLC is older than the grace
 * period (default 7 days). From then on this replica cannot stop a stale put of that key:
 * it no longer knows the key was deleted. Two rules keep this safe:
 *
 *  - A node that was away longer than the grace period throws its data away and resyncs in
 *    full from a peer (its stale puts would otherwise resurrect collected deletes). The
 *    store enforces nothing here; gossip/ owns that rule, and this is where it comes from.
 *  - A merged tombstone that is already older than the grace period is not stored (it still
 *    removes an older live entry it beats). Otherwise a replica that collected it would get
 *    it back from one that had not yet, collect it again, and the bucket digests would flap
 *    between the two for as long as GC runs lag each other.
 *
 * LMDB
 *
 * One environment per directory (data.mdb and lock.mdb inside it), two named DBs: "data"
 * (key -> record, record.h) and "meta" (digests, counts, clock high-water mark, format). Each
 * write is one transaction committed with fsync unless opts.nosync. Reads reuse one reset
 * read transaction. LMDB's errors are translated here, once: MDB_MAP_FULL becomes -ENOSPC
 * (the transaction is aborted, nothing was written and the store stays usable), everything
 * else -EIO with LMDB's text in store_last_error(). Single-threaded: the caller serialises. */
#include "storage/store.h"

#include <errno.h>
#include <lmdb.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "storage/hlc.h"
#include "storage/record.h"

#define STORE_FORMAT 1 /* layout of the meta DB; bump on incompatible change */

/* Fixed hash keys: every replica must compute identical buckets and entry hashes, so these
 * are constants of the protocol, not secrets. Changing them is a wire-format change. */
static const uint8_t bucket_hash_key[crypto_shorthash_KEYBYTES] = {
    'p', 'o', 'p', 'm', 'e', 's', 'h', '/', 'b', 'u', 'c', 'k', 'e', 't', '/', '1'};
static const uint8_t entry_hash_key[16] = {'p', 'o', 'p', 'm', 'e', 's', 'h', '/',
                                           'e', 'n', 't', 'r', 'y', '/', 'v', '1'};

/* meta DB keys */
#define META_FORMAT "format" /* uint: STORE_FORMAT */
#define META_HWM    "hwm"    /* uint: highest HLC issued or observed */
#define META_COUNT  "count"  /* [live entries, tombstones] */
#define META_DIGEST 'd'      /* "d" + one byte bucket -> uint digest */
#define META_GC     "gc_at"  /* uint: wall clock (ms) of the last GC that removed anything */

struct store {
    MDB_env *env;
    MDB_dbi data;  /* key -> record (record.h) */
    MDB_dbi meta;  /* META_* */
    MDB_txn *rtxn; /* reset read transaction, renewed for each read */
    uint64_t node_id;
    uint64_t grace_ms; /* ms */
    uint64_t map_size; /* bytes, as asked */
    bool in_iter;      /* a list/export callback is running */
    hlc_t clock;
    uint64_t hwm; /* HLC high-water mark as committed in meta */
    /* Committed state, mirrored from meta so digests and stats cost no transaction. */
    uint64_t digest[STORE_BUCKETS];
    uint64_t entries;    /* live */
    uint64_t tombstones; /* not yet collected */
    /* Counters since open (not persisted). */
    uint64_t merges_applied, merges_ignored, merges_refused, skew_rejected;
    uint64_t merges_unauthorized;
    uint64_t skew_last_origin;     /* writer of the last entry refused for skew */
    uint64_t skew_last_ahead_ms;   /* how far ahead of our clock its version was */
    uint8_t rec[STORE_RECORD_MAX]; /* scratch for encoding a record */
    /* Signed entries (store.h): the caller's signer and guard, and the signature of the last
     * local write (what store_put reports in *out). */
    store_sign_fn signer;
    void *signer_ctx;
    store_guard_wants_fn guard_wants;
    store_guard_fn guard;
    void *guard_ctx;
    uint8_t last_sig[STORE_SIG_BYTES];
    char err[256];
    /* The change feed: watchers, and the visible changes of the write transaction being
     * built. Entries point into the caller's keys and values, which outlive the call that
     * commits them, so nothing is copied. */
    struct watcher {
        int id; /* 0: free slot */
        char prefix[STORE_KEY_MAX];
        size_t plen;
        store_watch_fn fn;
        void *ctx;
    } watchers[STORE_WATCH_MAX];
    int next_watch_id;
    unsigned nwatchers;
    store_entry_t *changes; /* grows as needed; NULL while a feed is being delivered */
    size_t nchanges, changes_cap;
};

/* One write transaction and the state it will commit. Changes to digests and counts are
 * made here and copied into the store only once LMDB reports the commit durable. */
struct wtxn {
    MDB_txn *txn;
    uint64_t digest[STORE_BUCKETS];
    uint8_t dirty[STORE_BUCKETS / 8]; /* bit b: digest[b] changed */
    uint64_t entries, tombstones;
};

static void set_err(store_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(store_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof(s->err), fmt, ap);
    va_end(ap);
}

/* Keys are arbitrary bytes; messages show them printable and bounded. */
static const char *key_repr(const char *key, size_t klen, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < klen && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            buf[o++] = (char)c;
        else
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
    }
    if (o + 5 >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4), o = cap - 1;
    buf[o] = 0;
    return buf;
}

/* The one place LMDB's codes become errno values. */
static int lmdb_err(store_t *s, int rc, const char *what)
{
    switch (rc) {
    case MDB_MAP_FULL:
        set_err(s,
                "%s: map full (map_size %llu bytes): delete entries, run gc, or reopen with a "
                "larger map_size",
                what, (unsigned long long)s->map_size);
        log_warn("store: %s", s->err);
        return -ENOSPC;
    case MDB_TXN_FULL:
        set_err(s, "%s: too many changes for one transaction (%s)", what, mdb_strerror(rc));
        log_warn("store: %s", s->err);
        return -E2BIG;
    case ENOSPC:
        set_err(s, "%s: disk full (%s)", what, mdb_strerror(rc));
        log_error("store: %s", s->err);
        return -ENOSPC;
    default:
        set_err(s, "%s: %s", what, mdb_strerror(rc));
        log_error("store: %s", s->err);
        return -EIO;
    }
}

/* ---- hashing ---------------------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

unsigned store_bucket_of(const char *key, size_t klen)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const unsigned char *)key, klen, bucket_hash_key);
    return h[0];
}

/* BLAKE2b over an unambiguous layout (lengths before variable fields) of everything that
 * makes an entry what it is, so equal entries hash equal on every replica and any difference
 * in key, version, origin, tombstone or value changes the hash. 64 bits: the digests detect
 * divergence between honest replicas; they are not an authenticator. */
static uint64_t entry_hash(const char *key, size_t klen, const store_record_t *r)
{
    crypto_generichash_state st;
    uint8_t klen_le[4], hdr[8 + 8 + 1 + 4], out[16];
    crypto_generichash_init(&st, entry_hash_key, sizeof(entry_hash_key), sizeof(out));
    put_le(klen_le, klen, 4);
    crypto_generichash_update(&st, klen_le, sizeof(klen_le));
    crypto_generichash_update(&st, (const unsigned char *)key, klen);
    put_le(hdr, r->version, 8);
    put_le(hdr + 8, r->origin, 8);
    hdr[16] = r->tombstone ? 1 : 0;
    put_le(hdr + 17, r->tombstone ? 0 : r->vlen, 4);
    crypto_generichash_update(&st, hdr, sizeof(hdr));
    if (!r->tombstone)
        crypto_generichash_update(&st, r->value, r->vlen);
    crypto_generichash_final(&st, out, sizeof(out));
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | out[i];
    return v;
}

/* The total order of the essay: > 0 if a beats b, 0 if they are the same entry. */
static int entry_cmp(const store_record_t *a, const store_record_t *b)
{
    if (a->version != b->version)
        return a->version > b->version ? 1 : -1;
    if (a->origin != b->origin)
        return a->origin > b->origin ? 1 : -1;
    if (a->tombstone != b->tombstone)
        return a->tombstone ? 1 : -1;
    if (a->tombstone)
        return 0;
    size_t n = a->vlen < b->vlen ? a->vlen : b->vlen;
    int c = memcmp(a->value, b->value, n);
    if (c)
        return c > 0 ? 1 : -1;
    if (a->vlen != b->vlen)
        return a->vlen > b->vlen ? 1 : -1;
    return 0;
}

/* ms + grace < now, without overflow for any grace. */
static bool tombstone_expired(const store_t *s, uint64_t version, uint64_t now_ms)
{
    uint64_t ms = hlc_ms(version);
    return ms < now_ms && now_ms - ms > s->grace_ms;
}

/* ---- limits ----------------------------------------------------------------------------- */

static int check_key(const char *key, size_t klen)
{
    if (klen == 0 || !key)
        return -EINVAL;
    if (klen > STORE_KEY_MAX)
        return -E2BIG;
    if (memchr(key, 0, klen))
        return -EINVAL;
    return 0;
}

static int check_value(const void *value, size_t vlen)
{
    if (vlen > STORE_VALUE_MAX)
        return -E2BIG;
    if (!value || !mp_valid_object(value, vlen))
        return -EINVAL;
    return 0;
}

int store_check(const char *key, size_t klen, const void *value, size_t vlen)
{
    int rc = check_key(key, klen);
    return rc ? rc : check_value(value, vlen);
}

/* check_key/check_value with a message in the store. */
static int check_explain(store_t *s, const char *key, size_t klen, const void *value, size_t vlen,
                         bool tombstone)
{
    int rc = check_key(key, klen);
    if (rc == -E2BIG) {
        set_err(s, "key is %zu bytes; the limit is %d (STORE_KEY_MAX)", klen, STORE_KEY_MAX);
        return rc;
    }
    if (rc) {
        set_err(s, "%s",
                klen == 0 ? "empty key"
                : !key    ? "key is NULL"
                          : "key contains a NUL byte");
        return rc;
    }
    if (tombstone)
        return 0;
    rc = check_value(value, vlen);
    if (rc == -E2BIG)
        set_err(s, "value is %zu bytes; the limit is %d (STORE_VALUE_MAX)", vlen, STORE_VALUE_MAX);
    else if (rc)
        set_err(s, "value is not exactly one msgpack object");
    return rc;
}

/* ---- records ---------------------------------------------------------------------------- */

/* Reads and decodes key's record in txn. *found = false if absent. Corruption is -EIO. The
 * record's value is borrowed from LMDB until txn ends or writes the key. */
static int read_record(store_t *s, MDB_txn *txn, const char *key, size_t klen, store_record_t *rec,
                       bool *found)
{
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, v;
    int rc = mdb_get(txn, s->data, &k, &v);
    *found = false;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmdb_err(s, rc, "reading a record");
    const char *why = NULL;
    if (store_record_decode(v.mv_data, v.mv_size, rec, &why)) {
        char kr[80];
        set_err(s, "corrupt record for key \"%s\": %s", key_repr(key, klen, kr, sizeof(kr)), why);
        log_error("store: %s", s->err);
        return -EIO;
    }
    *found = true;
    return 0;
}

/* ---- transactions ----------------------------------------------------------------------- */

static int read_begin(store_t *s)
{
    int rc = s->rtxn ? mdb_txn_renew(s->rtxn) : mdb_txn_begin(s->env, NULL, MDB_RDONLY, &s->rtxn);
    if (rc) {
        if (s->rtxn) /* a handle that failed to renew is of no further use */
            mdb_txn_abort(s->rtxn);
        s->rtxn = NULL;
        return lmdb_err(s, rc, "starting a read transaction");
    }
    return 0;
}

static void read_end(store_t *s)
{
    mdb_txn_reset(s->rtxn);
}

static int wtxn_begin(store_t *s, struct wtxn *w)
{
    int rc = mdb_txn_begin(s->env, NULL, 0, &w->txn);
    if (rc) {
        w->txn = NULL;
        return lmdb_err(s, rc, "starting a write transaction");
    }
    memcpy(w->digest, s->digest, sizeof(w->digest));
    memset(w->dirty, 0, sizeof(w->dirty));
    s->nchanges = 0;
    w->entries = s->entries;
    w->tombstones = s->tombstones;
    return 0;
}

static void wtxn_abort(struct wtxn *w)
{
    if (w->txn)
        mdb_txn_abort(w->txn);
    w->txn = NULL;
}

/* Delivers the committed transaction's changes. The list is detached first, so a callback
 * that writes builds (and delivers) its own list without disturbing this one. */
static void feed(store_t *s)
{
    store_entry_t *ch = s->changes;
    size_t n = s->nchanges, cap = s->changes_cap;
    if (n == 0 || !ch)
        return;
    s->changes = NULL;
    s->nchanges = s->changes_cap = 0;
    store_entry_t *sel = xmalloc(n * sizeof(*sel));
    for (unsigned i = 0; i < STORE_WATCH_MAX; i++) {
        const struct watcher *wa = &s->watchers[i];
        if (!wa->id)
            continue;
        size_t m = 0;
        for (size_t j = 0; j < n; j++)
            if (ch[j].klen >= wa->plen && memcmp(ch[j].key, wa->prefix, wa->plen) == 0)
                sel[m++] = ch[j];
        if (m)
            wa->fn(wa->ctx, sel, m);
    }
    free(sel);
    if (!s->changes) { /* keep the buffer for the next transaction */
        s->changes = ch;
        s->changes_cap = cap;
    } else {
        free(ch);
    }
}

int store_watch(store_t *s, const char *prefix, size_t plen, store_watch_fn fn, void *ctx)
{
    if (!s || !fn || plen >= STORE_KEY_MAX || (plen && !prefix))
        return -EINVAL;
    for (unsigned i = 0; i < STORE_WATCH_MAX; i++) {
        struct watcher *wa = &s->watchers[i];
        if (wa->id)
            continue;
        if (++s->next_watch_id <= 0)
            s->next_watch_id = 1;
        *wa = (struct watcher){.id = s->next_watch_id, .plen = plen, .fn = fn, .ctx = ctx};
        if (plen)
            memcpy(wa->prefix, prefix, plen);
        s->nwatchers++;
        return wa->id;
    }
    return -ENOSPC;
}

void store_unwatch(store_t *s, int id)
{
    if (!s || id <= 0)
        return;
    for (unsigned i = 0; i < STORE_WATCH_MAX; i++)
        if (s->watchers[i].id == id) {
            s->watchers[i].id = 0;
            s->nwatchers--;
        }
}

static int meta_put_uint(store_t *s, MDB_txn *txn, const void *key, size_t klen, uint64_t v)
{
    uint8_t buf[16];
    uint8_t *p = buf;
    /* msgpack uint64, always the 9-byte form: fixed size keeps the meta pages stable. */
    *p++ = 0xcf;
    for (int i = 7; i >= 0; i--)
        *p++ = (uint8_t)(v >> (8 * i));
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, d = {.mv_size = 9, .mv_data = buf};
    int rc = mdb_put(txn, s->meta, &k, &d, 0);
    return rc ? lmdb_err(s, rc, "writing store metadata") : 0;
}

static int meta_put_counts(store_t *s, MDB_txn *txn, uint64_t entries, uint64_t tombstones)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, entries);
    msgpack_pack_uint64(&pk, tombstones);
    MDB_val k = {.mv_size = strlen(META_COUNT), .mv_data = META_COUNT};
    MDB_val d = {.mv_size = sb.size, .mv_data = sb.data};
    int rc = mdb_put(txn, s->meta, &k, &d, 0);
    msgpack_sbuffer_destroy(&sb);
    return rc ? lmdb_err(s, rc, "writing store metadata") : 0;
}

static int wtxn_commit(store_t *s, struct wtxn *w)
{
    int rc = 0;
    for (unsigned b = 0; b < STORE_BUCKETS && rc == 0; b++) {
        if (!(w->dirty[b / 8] & (1u << (b % 8))))
            continue;
        uint8_t key[2] = {META_DIGEST, (uint8_t)b};
        rc = meta_put_uint(s, w->txn, key, 2, w->digest[b]);
    }
    if (rc == 0 && (w->entries != s->entries || w->tombstones != s->tombstones))
        rc = meta_put_counts(s, w->txn, w->entries, w->tombstones);
    uint64_t hwm = s->clock.last;
    if (rc == 0 && hwm > s->hwm)
        rc = meta_put_uint(s, w->txn, META_HWM, strlen(META_HWM), hwm);
    if (rc) {
        wtxn_abort(w);
        return rc;
    }
    rc = mdb_txn_commit(w->txn);
    w->txn = NULL;
    if (rc)
        return lmdb_err(s, rc, "committing");
    memcpy(s->digest, w->digest, sizeof(s->digest));
    s->entries = w->entries;
    s->tombstones = w->tombstones;
    if (hwm > s->hwm)
        s->hwm = hwm;
    return 0;
}

static void count(struct wtxn *w, const store_record_t *r, int delta)
{
    uint64_t *c = r->tombstone ? &w->tombstones : &w->entries;
    *c += (uint64_t)(int64_t)delta;
}

static void digest_xor(struct wtxn *w, unsigned b, uint64_t h)
{
    w->digest[b] ^= h;
    w->dirty[b / 8] |= (uint8_t)(1u << (b % 8));
}

/* Remembers a visible change for the watchers; neu NULL is a delete. Only when someone
 * listens: a store without watchers (tests, tools) pays nothing. */
static void note_change(store_t *s, const char *key, size_t klen, const store_record_t *neu)
{
    if (s->nwatchers == 0)
        return;
    if (s->nchanges == s->changes_cap) {
        s->changes_cap = s->changes_cap ? s->changes_cap * 2 : 16;
        s->changes = xrealloc(s->changes, s->changes_cap * sizeof(*s->changes));
    }
    s->changes[s->nchanges++] = (store_entry_t){
        .key = (char *)key,
        .klen = klen,
        .value = neu && !neu->tombstone ? (uint8_t *)neu->value : NULL,
        .vlen = neu && !neu->tombstone ? neu->vlen : 0,
        .version = neu ? neu->version : 0,
        .origin = neu ? neu->origin : 0,
        .tombstone = !neu || neu->tombstone,
    };
    store_entry_t *c = &s->changes[s->nchanges - 1];
    if (neu && neu->sig) {
        c->has_sig = true;
        memcpy(c->sig, neu->sig, STORE_SIG_BYTES);
    }
}

/* Replaces key's record old (NULL: none) with new (NULL: remove), keeping digests and counts
 * in step. old->value may point into LMDB pages the write invalidates, so it is hashed first. */
static int apply(store_t *s, struct wtxn *w, const char *key, size_t klen,
                 const store_record_t *old, const store_record_t *neu)
{
    unsigned b = store_bucket_of(key, klen);
    uint64_t h = 0;
    if (old)
        h ^= entry_hash(key, klen, old);
    if (neu)
        h ^= entry_hash(key, klen, neu);
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key};
    int rc;
    if (neu) {
        size_t n = store_record_encode(neu, s->rec, sizeof(s->rec));
        if (n == 0) { /* unreachable after the limit checks; refuse rather than truncate */
            set_err(s, "record does not fit STORE_RECORD_MAX");
            return -E2BIG;
        }
        MDB_val d = {.mv_size = n, .mv_data = s->rec};
        rc = mdb_put(w->txn, s->data, &k, &d, 0);
    } else {
        rc = mdb_del(w->txn, s->data, &k, NULL);
    }
    if (rc)
        return lmdb_err(s, rc, "writing a record");
    if (old)
        count(w, old, -1);
    if (neu)
        count(w, neu, +1);
    digest_xor(w, b, h);
    if (neu || (old && !old->tombstone))
        note_change(s, key, klen, neu);
    return 0;
}

/* ---- open / close ----------------------------------------------------------------------- */

static int meta_get_uint(store_t *s, MDB_txn *txn, const void *key, size_t klen, uint64_t *v,
                         bool *found)
{
    MDB_val k = {.mv_size = klen, .mv_data = (void *)key}, d;
    int rc = mdb_get(txn, s->meta, &k, &d);
    *found = rc == 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return lmdb_err(s, rc, "reading store metadata");
    mpr_t r;
    mpr_init(&r, d.mv_data, d.mv_size);
    if (mpr_uint(&r, v) || r.left) {
        set_err(s, "corrupt store metadata (%.*s)", (int)(klen > 6 ? 6 : klen), (const char *)key);
        log_error("store: %s", s->err);
        return -EIO;
    }
    return 0;
}

/* Recomputes digests and counts from the records (store_verify; first open of a data DB
 * without metadata). Also finds the highest version held. */
static int recompute(store_t *s, MDB_txn *txn, uint64_t digest[STORE_BUCKETS], uint64_t *entries,
                     uint64_t *tombstones, uint64_t *max_version)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, s->data, &cur);
    if (rc)
        return lmdb_err(s, rc, "opening a cursor");
    memset(digest, 0, sizeof(uint64_t) * STORE_BUCKETS);
    *entries = *tombstones = *max_version = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        store_record_t r;
        const char *why = NULL;
        if (store_record_decode(v.mv_data, v.mv_size, &r, &why)) {
            char kr[80];
            set_err(s, "corrupt record for key \"%s\": %s",
                    key_repr(k.mv_data, k.mv_size, kr, sizeof(kr)), why);
            log_error("store: %s", s->err);
            mdb_cursor_close(cur);
            return -EIO;
        }
        digest[store_bucket_of(k.mv_data, k.mv_size)] ^= entry_hash(k.mv_data, k.mv_size, &r);
        (*(r.tombstone ? tombstones : entries))++;
        if (r.version > *max_version)
            *max_version = r.version;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : lmdb_err(s, rc, "scanning records");
}

/* Opens the named DBs and loads (or, on a fresh store, creates) the metadata. */
static int load_meta(store_t *s)
{
    MDB_txn *txn;
    uint64_t format, v;
    bool found;
    int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    if (rc)
        return lmdb_err(s, rc, "starting the open transaction");
    if ((rc = mdb_dbi_open(txn, "data", MDB_CREATE, &s->data)) ||
        (rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &s->meta))) {
        mdb_txn_abort(txn);
        return lmdb_err(s, rc, "opening the databases");
    }
    if ((rc = meta_get_uint(s, txn, META_FORMAT, strlen(META_FORMAT), &format, &found)))
        goto out;
    if (!found) {
        /* A fresh store (or records without metadata): derive everything from the records. */
        uint64_t maxv;
        if ((rc = recompute(s, txn, s->digest, &s->entries, &s->tombstones, &maxv)))
            goto out;
        s->hwm = maxv;
        if ((rc = meta_put_uint(s, txn, META_FORMAT, strlen(META_FORMAT), STORE_FORMAT)) ||
            (rc = meta_put_uint(s, txn, META_HWM, strlen(META_HWM), s->hwm)) ||
            (rc = meta_put_counts(s, txn, s->entries, s->tombstones)))
            goto out;
        for (unsigned b = 0; b < STORE_BUCKETS && rc == 0; b++) {
            uint8_t key[2] = {META_DIGEST, (uint8_t)b};
            rc = meta_put_uint(s, txn, key, 2, s->digest[b]);
        }
        if (rc)
            goto out;
    } else {
        if (format != STORE_FORMAT) {
            set_err(s, "store format %llu is not supported (this build reads %d)",
                    (unsigned long long)format, STORE_FORMAT);
            log_error("store: %s", s->err);
            rc = -EIO;
            goto out;
        }
        if ((rc = meta_get_uint(s, txn, META_HWM, strlen(META_HWM), &s->hwm, &found)))
            goto out;
        if (!found)
            goto missing;
        MDB_val k = {.mv_size = strlen(META_COUNT), .mv_data = META_COUNT}, d;
        rc = mdb_get(txn, s->meta, &k, &d);
        if (rc == MDB_NOTFOUND)
            goto missing;
        if (rc) {
            rc = lmdb_err(s, rc, "reading store metadata");
            goto out;
        }
        mpr_t r;
        uint32_t n;
        mpr_init(&r, d.mv_data, d.mv_size);
        if (mpr_array(&r, &n) || n != 2 || mpr_uint(&r, &s->entries) ||
            mpr_uint(&r, &s->tombstones) || r.left)
            goto missing;
        for (unsigned b = 0; b < STORE_BUCKETS; b++) {
            uint8_t key[2] = {META_DIGEST, (uint8_t)b};
            if ((rc = meta_get_uint(s, txn, key, 2, &v, &found)))
                goto out;
            if (!found)
                goto missing;
            s->digest[b] = v;
        }
    }
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc)
        return lmdb_err(s, rc, "committing the open transaction");
    s->clock.last = s->hwm;
    return 0;
missing:
    set_err(s, "corrupt store metadata: missing or malformed entries");
    log_error("store: %s", s->err);
    rc = -EIO;
out:
    if (txn)
        mdb_txn_abort(txn);
    return rc;
}

int store_open(const char *dir, const store_opts_t *opts, store_t **sp)
{
    struct stat st;
    int rc;

    if (!dir || !opts || !sp)
        return -EINVAL;
    if (opts->node_id == 0) {
        log_error("store: cannot open %s: node_id must not be 0", dir);
        return -EINVAL;
    }
    /* Check the directory ourselves: LMDB's errors for these cases name neither the path
     * nor what is wrong with it. */
    if (stat(dir, &st) != 0) {
        rc = -errno;
        log_error("store: cannot open %s: %s (the directory must exist)", dir, strerror(-rc));
        return rc;
    }
    if (!S_ISDIR(st.st_mode)) {
        log_error("store: cannot open %s: not a directory", dir);
        return -ENOTDIR;
    }
    if (access(dir, W_OK | X_OK) != 0) {
        rc = -errno;
        log_error("store: cannot open %s: %s (the directory must be writable)", dir, strerror(-rc));
        return rc;
    }
    if (sodium_init() < 0) {
        log_error("store: cannot open %s: libsodium failed to initialise", dir);
        return -EIO;
    }

    store_t *s = xcalloc(1, sizeof(*s));
    s->node_id = opts->node_id;
    s->grace_ms = opts->grace_ms ? opts->grace_ms : STORE_DEFAULT_GRACE;
    s->map_size = opts->map_size ? opts->map_size : STORE_DEFAULT_MAP;
    hlc_init(&s->clock);

    if ((rc = mdb_env_create(&s->env))) {
        log_error("store: cannot open %s: %s", dir, mdb_strerror(rc));
        free(s);
        return rc > 0 ? -rc : -EIO;
    }
    mdb_env_set_maxdbs(s->env, 2);
    if ((rc = mdb_env_set_mapsize(s->env, (size_t)s->map_size)))
        goto fail_lmdb;
    /* No MDB_NOSUBDIR: dir is the environment, data.mdb and lock.mdb live inside it. */
    rc = mdb_env_open(s->env, dir, opts->nosync ? MDB_NOSYNC : 0, 0600);
    if (rc)
        goto fail_lmdb;
    /* A process killed inside a read transaction leaves its reader slot behind, and a stale
     * slot pins old pages so they are never reused. Clear them; harmless when there are none. */
    int dead = 0;
    mdb_reader_check(s->env, &dead);
    if (dead)
        log_info("store: %s: cleared %d stale reader slots", dir, dead);
    if ((rc = load_meta(s))) {
        log_error("store: cannot open %s: %s", dir, s->err);
        mdb_env_close(s->env);
        free(s);
        return rc;
    }
    log_debug("store: opened %s: %llu entries, %llu tombstones", dir,
              (unsigned long long)s->entries, (unsigned long long)s->tombstones);
    *sp = s;
    return 0;

fail_lmdb:
    log_error("store: cannot open the LMDB environment (data.mdb, lock.mdb) in %s: %s", dir,
              mdb_strerror(rc));
    mdb_env_close(s->env);
    free(s);
    /* LMDB returns system errors as positive errno values and its own as negative codes. */
    if (rc == MDB_MAP_FULL)
        return -ENOSPC;
    return rc > 0 ? -rc : -EIO;
}

void store_close(store_t **sp)
{
    if (!sp || !*sp)
        return;
    store_t *s = *sp;
    if (s->rtxn)
        mdb_txn_abort(s->rtxn);
    mdb_env_close(s->env);
    free(s->changes);
    free(s);
    *sp = NULL;
}

const char *store_last_error(const store_t *s)
{
    return s ? s->err : "no store";
}

/* ---- local writes ----------------------------------------------------------------------- */

static int busy(store_t *s)
{
    if (!s)
        return -EINVAL;
    if (s->in_iter) {
        set_err(s, "called from inside a list/export callback");
        return -EBUSY;
    }
    return 0;
}

/* HEADROOM. LMDB copies the pages it changes, so even a delete needs free pages (its path in
 * the tree, and the freelist's own record) to commit. A map filled to its last page by puts
 * would then refuse the deletes that are the way out. So a local put is refused, as a full
 * store, when it would leave fewer than a reserve free (1/64 of the map, 4 to 256 pages):
 * deletes always find them.
 * Free = the pages above the high-water mark plus those on the freelist; the freelist is only
 * counted when the top runs short, so the check costs nothing until the map is nearly full. */
#define STORE_RESERVE_MIN 4   /* pages */
#define STORE_RESERVE_MAX 256 /* pages (1 MiB of 4 KiB pages) */

static int headroom(store_t *s, size_t klen, size_t vlen)
{
    MDB_envinfo ei;
    MDB_stat st;
    if (mdb_env_info(s->env, &ei) || mdb_env_stat(s->env, &st) || st.ms_psize == 0)
        return 0; /* cannot tell: LMDB itself says when it is full */
    size_t psize = st.ms_psize;
    size_t map_pages = ei.me_mapsize / psize;
    size_t reserve = map_pages / 64;
    reserve = reserve < STORE_RESERVE_MIN ? STORE_RESERVE_MIN
              : reserve > STORE_RESERVE_MAX ? STORE_RESERVE_MAX
                                            : reserve;
    size_t need = (klen + vlen + 64) / psize + 1 + 4 + reserve; /* value, path, reserve */
    size_t top = map_pages > ei.me_last_pgno + 1 ? map_pages - (ei.me_last_pgno + 1) : 0;
    if (top >= need)
        return 0;
    /* The freelist is read in a read transaction: LMDB refuses a cursor on it in a write one. */
    size_t freep = 0;
    MDB_cursor *cur;
    if (read_begin(s) == 0) {
        if (mdb_cursor_open(s->rtxn, 0 /* the freelist */, &cur) == 0) {
            MDB_val k, v;
            while (freep < need && mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
                if (v.mv_size >= sizeof(size_t)) {
                    size_t n;
                    memcpy(&n, v.mv_data, sizeof(n)); /* an ID list: its first word counts */
                    freep += n;
                }
            mdb_cursor_close(cur);
        }
        read_end(s);
    }
    if (top + freep >= need)
        return 0;
    set_err(s, "writing a record: map full (map_size %llu bytes, %zu pages kept free so that "
               "deletes can commit): delete entries, run gc, or reopen with a larger map_size",
            (unsigned long long)ei.me_mapsize, reserve);
    return -ENOSPC;
}

/* Asks the signer (store.h, "Signed entries") about a local write whose version and origin
 * are set; rec->sig points at s->last_sig when it signed, else NULL. */
static void sign_record(store_t *s, const char *key, size_t klen, store_record_t *rec)
{
    rec->sig = NULL;
    if (!s->signer)
        return;
    store_entry_t view = {.key = (char *)key,
                          .klen = klen,
                          .value = (uint8_t *)rec->value,
                          .vlen = rec->vlen,
                          .version = rec->version,
                          .origin = rec->origin,
                          .tombstone = rec->tombstone};
    if (s->signer(s->signer_ctx, &view, s->last_sig))
        rec->sig = s->last_sig;
}

/* One local put (value != NULL) or delete inside w. */
static int local_write(store_t *s, struct wtxn *w, const char *key, size_t klen, const void *value,
                       size_t vlen, uint64_t now_ms, store_record_t *out)
{
    store_record_t old, rec;
    bool have;
    int rc = read_record(s, w->txn, key, klen, &old, &have);
    if (rc)
        return rc;
    if (!value && (!have || old.tombstone)) {
        char kr[80];
        set_err(s, "no live entry for key \"%s\"", key_repr(key, klen, kr, sizeof(kr)));
        return -ENOENT;
    }
    /* Invariant 3 already guarantees the clock is past old.version; this keeps a local write
     * winning even if the metadata's high-water mark were behind (an older build, a bug). */
    if (have && old.version > s->clock.last)
        s->clock.last = old.version;
    rec.version = hlc_now(&s->clock, now_ms);
    rec.origin = s->node_id;
    rec.tombstone = value == NULL;
    rec.value = value;
    rec.vlen = value ? vlen : 0;
    sign_record(s, key, klen, &rec);
    if ((rc = apply(s, w, key, klen, have ? &old : NULL, &rec)))
        return rc;
    *out = rec;
    return 0;
}

static void fill_out(store_entry_t *out, const store_record_t *rec)
{
    if (!out)
        return;
    memset(out, 0, sizeof(*out));
    out->version = rec->version;
    out->origin = rec->origin;
    out->tombstone = rec->tombstone;
    if (rec->sig) {
        out->has_sig = true;
        memcpy(out->sig, rec->sig, STORE_SIG_BYTES);
    }
}

static int write_one(store_t *s, const char *key, size_t klen, const void *value, size_t vlen,
                     uint64_t now_ms, store_entry_t *out)
{
    struct wtxn w;
    store_record_t rec;
    int rc = value ? headroom(s, klen, vlen) : 0;
    if (rc)
        return rc;
    if ((rc = wtxn_begin(s, &w)))
        return rc;
    if ((rc = local_write(s, &w, key, klen, value, vlen, now_ms, &rec))) {
        wtxn_abort(&w);
        return rc;
    }
    if ((rc = wtxn_commit(s, &w)))
        return rc;
    fill_out(out, &rec);
    feed(s);
    return 0;
}

int store_put(store_t *s, const char *key, size_t klen, const void *value, size_t vlen,
              uint64_t now_ms, store_entry_t *out)
{
    int rc = busy(s);
    if (rc)
        return rc;
    if ((rc = check_explain(s, key, klen, value, vlen, false)))
        return rc;
    return write_one(s, key, klen, value, vlen, now_ms, out);
}

int store_del(store_t *s, const char *key, size_t klen, uint64_t now_ms, store_entry_t *out)
{
    int rc = busy(s);
    if (rc)
        return rc;
    if ((rc = check_explain(s, key, klen, NULL, 0, true)))
        return rc;
    return write_one(s, key, klen, NULL, 0, now_ms, out);
}

int store_put_batch(store_t *s, const store_entry_t *entries, size_t n, uint64_t now_ms)
{
    int rc = busy(s);
    if (rc)
        return rc;
    if (n == 0)
        return 0;
    if (!entries)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        const store_entry_t *e = &entries[i];
        if (e->tombstone || !e->value) {
            set_err(s, "batch entry %zu is a tombstone: store_put_batch only puts", i);
            return -EINVAL;
        }
        if ((rc = check_explain(s, e->key, e->klen, e->value, e->vlen, false)))
            return rc;
    }
    struct wtxn w;
    store_record_t rec;
    if ((rc = wtxn_begin(s, &w)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        const store_entry_t *e = &entries[i];
        if ((rc = local_write(s, &w, e->key, e->klen, e->value, e->vlen, now_ms, &rec))) {
            wtxn_abort(&w);
            return rc;
        }
    }
    if ((rc = wtxn_commit(s, &w)))
        return rc;
    feed(s);
    return 0;
}

/* ---- merge ------------------------------------------------------------------------------ */

/* One transaction over the entries idx[0..n) of entries (idx NULL: all n, in order). */
static int merge_txn(store_t *s, const store_entry_t *entries, const size_t *idx, size_t n,
                     uint64_t now_ms)
{
    int rc;
    struct wtxn w;
    uint64_t applied = 0, ignored = 0, refused = 0, skewed = 0;
    if (n == 0)
        return 0;
    if ((rc = wtxn_begin(s, &w)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        const store_entry_t *e = &entries[idx ? idx[i] : i];
        /* The value is validated only once the entry wins (below): anti-entropy ships whole
         * buckets, mostly duplicates, and they need not pay for it. */
        if (check_explain(s, e->key, e->klen, NULL, 0, true) || e->origin == 0) {
            if (e->origin == 0)
                set_err(s, "remote entry with origin 0");
            refused++;
            continue;
        }
        /* Observe before deciding: even a losing entry proves that version exists, and later
         * local writes must be newer than anything this node has seen. */
        if (hlc_observe(&s->clock, e->version, now_ms)) {
            /* Remembered so the node layer can say who is ahead and by how much: the
             * writer's own node cannot tell that its writes are being dropped. */
            s->skew_last_origin = e->origin;
            s->skew_last_ahead_ms = hlc_ms(e->version) - now_ms;
            skewed++;
            continue;
        }
        store_record_t old, rec = {
                                .version = e->version,
                                .origin = e->origin,
                                .tombstone = e->tombstone,
                                .value = e->tombstone ? NULL : e->value,
                                .vlen = e->tombstone ? 0 : e->vlen,
                                .sig = e->has_sig ? e->sig : NULL,
                            };
        bool have;
        if ((rc = read_record(s, w.txn, e->key, e->klen, &old, &have)))
            goto fail;
        if (!rec.tombstone && check_explain(s, e->key, e->klen, e->value, e->vlen, false)) {
            refused++;
            continue;
        }
        if (have && entry_cmp(&rec, &old) <= 0) {
            ignored++;
            continue;
        }
        if (rec.tombstone && tombstone_expired(s, rec.version, now_ms)) {
            /* Past the grace period: replicas may already have collected it, so storing it
             * would only make the digests flap. It still deletes what it beats. */
            if (!have) {
                ignored++;
                continue;
            }
            if ((rc = apply(s, &w, e->key, e->klen, &old, NULL)))
                goto fail;
        } else if ((rc = apply(s, &w, e->key, e->klen, have ? &old : NULL, &rec))) {
            goto fail;
        }
        applied++;
    }
    if ((rc = wtxn_commit(s, &w))) {
        s->skew_rejected += skewed;
        return rc;
    }
    s->merges_applied += applied;
    s->merges_ignored += ignored;
    s->merges_refused += refused;
    s->skew_rejected += skewed;
    feed(s);
    return applied > INT32_MAX ? INT32_MAX : (int)applied;
fail:
    wtxn_abort(&w);
    s->skew_rejected += skewed;
    return rc;
}

/* Would e win against the stored record? Entries that would not are left to merge_txn,
 * which ignores them, so the guard never pays for duplicates. */
static bool would_win(store_t *s, const store_entry_t *e)
{
    store_record_t old;
    bool have = false;
    if (read_begin(s))
        return true; /* cannot tell: let the guard decide */
    store_record_t rec = {.version = e->version,
                          .origin = e->origin,
                          .tombstone = e->tombstone,
                          .value = e->tombstone ? NULL : e->value,
                          .vlen = e->tombstone ? 0 : e->vlen};
    bool win = read_record(s, s->rtxn, e->key, e->klen, &old, &have) != 0 || !have ||
               entry_cmp(&rec, &old) > 0;
    read_end(s);
    return win;
}

int store_merge(store_t *s, const store_entry_t *entries, size_t n, uint64_t now_ms)
{
    int rc = busy(s);
    if (rc)
        return rc;
    if (n == 0)
        return 0;
    if (!entries)
        return -EINVAL;
    if (!s->guard)
        return merge_txn(s, entries, NULL, n, now_ms);

    /* Guarded keys go last and only if the guard accepts them (store.h, "Signed entries"). */
    size_t *idx = xmalloc(n * sizeof(*idx)), nfree = 0, nguarded = 0;
    for (size_t i = 0; i < n; i++)
        if (check_key(entries[i].key, entries[i].klen) != 0 ||
            !s->guard_wants(s->guard_ctx, entries[i].key, entries[i].klen))
            idx[nfree++] = i;
    int applied = merge_txn(s, entries, idx, nfree, now_ms);
    if (applied < 0) {
        free(idx);
        return applied;
    }
    uint64_t unauthorized = 0;
    for (size_t i = 0; i < n; i++) {
        const store_entry_t *e = &entries[i];
        if (check_key(e->key, e->klen) != 0 || !s->guard_wants(s->guard_ctx, e->key, e->klen))
            continue;
        if (!would_win(s, e)) {
            s->merges_ignored++;
            continue;
        }
        if (s->guard(s->guard_ctx, e) != 0) {
            unauthorized++;
            continue;
        }
        idx[nguarded++] = i;
    }
    s->merges_unauthorized += unauthorized;
    rc = merge_txn(s, entries, idx, nguarded, now_ms);
    free(idx);
    if (rc < 0)
        return rc;
    return applied + rc > INT32_MAX ? INT32_MAX : applied + rc;
}

int store_resign(store_t *s, const char *key, size_t klen, uint64_t now_ms, store_entry_t *out)
{
    (void)now_ms;
    int rc = busy(s);
    if (rc)
        return rc;
    if ((rc = check_explain(s, key, klen, NULL, 0, true)))
        return rc;
    struct wtxn w;
    store_record_t old, rec;
    bool have;
    if ((rc = wtxn_begin(s, &w)))
        return rc;
    if ((rc = read_record(s, w.txn, key, klen, &old, &have)) || !have) {
        if (!have && rc == 0) {
            char kr[80];
            set_err(s, "no entry for key \"%s\"", key_repr(key, klen, kr, sizeof(kr)));
            rc = -ENOENT;
        }
        wtxn_abort(&w);
        return rc;
    }
    /* The value lives in LMDB's pages, which the write below may reuse, and the change feed
     * reads it after the commit: a copy of our own. */
    uint8_t *copy = old.tombstone ? NULL : xmemdup(old.value, old.vlen);
    rec = (store_record_t){.version = old.version + 1,
                           .origin = s->node_id,
                           .tombstone = old.tombstone,
                           .value = copy,
                           .vlen = old.tombstone ? 0 : old.vlen};
    if (rec.version > s->clock.last)
        s->clock.last = rec.version; /* later local writes stay newer */
    sign_record(s, key, klen, &rec);
    if ((rc = apply(s, &w, key, klen, &old, &rec))) {
        wtxn_abort(&w);
        free(copy);
        return rc;
    }
    if ((rc = wtxn_commit(s, &w))) {
        free(copy);
        return rc;
    }
    fill_out(out, &rec);
    if (out && copy) {
        out->value = copy; /* the caller's now */
        out->vlen = rec.vlen;
        copy = NULL;
    }
    feed(s);
    free(copy);
    return 0;
}

void store_set_signer(store_t *s, store_sign_fn fn, void *ctx)
{
    s->signer = fn;
    s->signer_ctx = ctx;
}

void store_set_guard(store_t *s, store_guard_wants_fn wants, store_guard_fn check, void *ctx)
{
    s->guard_wants = check ? wants : NULL;
    s->guard = wants ? check : NULL;
    s->guard_ctx = ctx;
}

uint8_t *store_sig_message(const store_entry_t *e, size_t *len)
{
    static const char tag[] = "popmesh entry v1"; /* with its NUL */
    size_t vlen = e->tombstone ? 0 : e->vlen;
    size_t n = sizeof(tag) + 4 + e->klen + 8 + 8 + 1 + 4 + vlen;
    uint8_t *m = xmalloc(n), *p = m;
    memcpy(p, tag, sizeof(tag));
    p += sizeof(tag);
    put_le(p, e->klen, 4);
    p += 4;
    memcpy(p, e->key, e->klen);
    p += e->klen;
    put_le(p, e->version, 8);
    put_le(p + 8, e->origin, 8);
    p[16] = e->tombstone ? 1 : 0;
    put_le(p + 17, vlen, 4);
    p += 21;
    if (vlen)
        memcpy(p, e->value, vlen);
    *len = n;
    return m;
}

/* ---- reads ------------------------------------------------------------------------------ */

int store_get(store_t *s, const char *key, size_t klen, store_entry_t *e)
{
    int rc = busy(s);
    if (rc)
        return rc;
    if (!e || check_key(key, klen)) {
        set_err(s, "invalid key");
        return -EINVAL;
    }
    store_record_t rec;
    bool have;
    if ((rc = read_begin(s)))
        return rc;
    rc = read_record(s, s->rtxn, key, klen, &rec, &have);
    if (rc == 0 && (!have || rec.tombstone)) {
        char kr[80];
        set_err(s, "no live entry for key \"%s\"", key_repr(key, klen, kr, sizeof(kr)));
        rc = -ENOENT;
    }
    if (rc == 0) {
        e->key = xmalloc(klen + 1);
        memcpy(e->key, key, klen);
        e->key[klen] = 0;
        e->klen = klen;
        e->value = xmemdup(rec.value, rec.vlen);
        e->vlen = rec.vlen;
        e->version = rec.version;
        e->origin = rec.origin;
        e->tombstone = false;
        e->has_sig = rec.sig != NULL;
        if (rec.sig)
            memcpy(e->sig, rec.sig, STORE_SIG_BYTES);
    }
    read_end(s);
    return rc;
}

void store_entry_free(store_entry_t *e)
{
    if (!e)
        return;
    free(e->key);
    free(e->value);
    memset(e, 0, sizeof(*e));
}

/* Walks records in key order from prefix while keys start with it; calls fn for live ones
 * (and tombstones if with_tombstones) in the chosen buckets (NULL: all). */
static int scan(store_t *s, const char *prefix, size_t plen, const uint8_t *buckets,
                bool with_tombstones, store_iter_fn fn, void *ctx)
{
    MDB_cursor *cur;
    MDB_val k = {.mv_size = plen, .mv_data = (void *)prefix}, v;
    int rc = busy(s);
    if (rc)
        return rc;
    if (!fn || (plen && !prefix))
        return -EINVAL;
    if ((rc = read_begin(s)))
        return rc;
    if ((rc = mdb_cursor_open(s->rtxn, s->data, &cur))) {
        read_end(s);
        return lmdb_err(s, rc, "opening a cursor");
    }
    rc = plen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (plen && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)) {
            rc = MDB_NOTFOUND; /* past the prefix: the end of this walk */
            break;
        }
        if (buckets) {
            unsigned b = store_bucket_of(k.mv_data, k.mv_size);
            if (!(buckets[b / 8] & (1u << (b % 8))))
                continue;
        }
        store_record_t r;
        const char *why = NULL;
        if (store_record_decode(v.mv_data, v.mv_size, &r, &why)) {
            char kr[80];
            set_err(s, "corrupt record for key \"%s\": %s",
                    key_repr(k.mv_data, k.mv_size, kr, sizeof(kr)), why);
            log_error("store: %s", s->err);
            rc = -EIO;
            goto out;
        }
        if (r.tombstone && !with_tombstones)
            continue;
        store_entry_t e = {
            .key = k.mv_data,
            .klen = k.mv_size,
            .value = (uint8_t *)r.value,
            .vlen = r.vlen,
            .version = r.version,
            .origin = r.origin,
            .tombstone = r.tombstone,
            .has_sig = r.sig != NULL,
        };
        if (r.sig)
            memcpy(e.sig, r.sig, STORE_SIG_BYTES);
        s->in_iter = true;
        rc = fn(&e, ctx);
        s->in_iter = false;
        if (rc)
            goto out;
    }
    rc = rc == MDB_NOTFOUND ? 0 : lmdb_err(s, rc, "scanning records");
out:
    mdb_cursor_close(cur);
    read_end(s);
    return rc;
}

int store_list(store_t *s, const char *prefix, size_t plen, store_iter_fn fn, void *ctx)
{
    return scan(s, prefix, plen, NULL, false, fn, ctx);
}

int store_export(store_t *s, const uint8_t buckets[STORE_BUCKETS / 8], store_iter_fn fn, void *ctx)
{
    if (!buckets)
        return -EINVAL;
    /* One pass over the whole keyspace whatever the number of buckets asked: the data DB is
     * ordered by key (store_list needs that), not by bucket. See docs/storage.md. */
    return scan(s, NULL, 0, buckets, true, fn, ctx);
}

int store_digests(store_t *s, uint64_t out[STORE_BUCKETS])
{
    if (!s || !out)
        return -EINVAL;
    memcpy(out, s->digest, sizeof(s->digest));
    return 0;
}

/* ---- gc --------------------------------------------------------------------------------- */

/* Tombstones removed per transaction. Bounded so a large collection neither needs more free
 * pages than a nearly full map has (every leaf it touches is copied on write) nor hits
 * MDB_TXN_FULL; each batch is consistent on its own, so a crash between batches is harmless. */
#define GC_BATCH 256

/* One GC transaction: from *resume (empty: the first key) removes up to GC_BATCH expired
 * tombstones; leaves in *resume the first key not yet examined and sets *more. */
static int gc_batch(store_t *s, uint64_t now_ms, char *resume, size_t *rlen, bool *more,
                    int *removed)
{
    struct wtxn w;
    MDB_cursor *cur;
    MDB_val k = {.mv_size = *rlen, .mv_data = resume}, v;
    char next[STORE_KEY_MAX + 1]; /* where the next batch starts; *resume moves on commit */
    size_t nlen = 0;
    bool full = false;
    int rc;
    *removed = 0;
    *more = false;
    if ((rc = wtxn_begin(s, &w)))
        return rc;
    if ((rc = mdb_cursor_open(w.txn, s->data, &cur))) {
        wtxn_abort(&w);
        return lmdb_err(s, rc, "opening a cursor");
    }
    rc =
        *rlen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (*removed == GC_BATCH) {
            /* Full batch: remember where the next one starts (k dies with the txn). */
            nlen = k.mv_size < sizeof(next) ? k.mv_size : sizeof(next);
            memcpy(next, k.mv_data, nlen);
            full = true;
            rc = MDB_NOTFOUND;
            break;
        }
        store_record_t r;
        const char *why = NULL;
        if (store_record_decode(v.mv_data, v.mv_size, &r, &why)) {
            char kr[80];
            set_err(s, "corrupt record for key \"%s\": %s",
                    key_repr(k.mv_data, k.mv_size, kr, sizeof(kr)), why);
            log_error("store: %s", s->err);
            rc = -EIO;
            goto fail;
        }
        if (!r.tombstone || !tombstone_expired(s, r.version, now_ms))
            continue;
        /* Hash before deleting: k and v point into the page the delete rewrites. After
         * mdb_cursor_del the cursor already sits on the next record and MDB_NEXT returns it. */
        digest_xor(&w, store_bucket_of(k.mv_data, k.mv_size), entry_hash(k.mv_data, k.mv_size, &r));
        count(&w, &r, -1);
        if ((rc = mdb_cursor_del(cur, 0))) {
            rc = lmdb_err(s, rc, "collecting a tombstone");
            goto fail;
        }
        (*removed)++;
    }
    if (rc != MDB_NOTFOUND) {
        rc = lmdb_err(s, rc, "scanning records");
        goto fail;
    }
    mdb_cursor_close(cur);
    if (*removed == 0) {
        wtxn_abort(&w);
        return 0;
    }
    if ((rc = wtxn_commit(s, &w))) {
        *removed = 0;
        return rc;
    }
    if (full) {
        memcpy(resume, next, nlen);
        *rlen = nlen;
        *more = true;
    }
    return 0;
fail:
    mdb_cursor_close(cur);
    wtxn_abort(&w);
    *removed = 0;
    return rc;
}

/* LMDB reuses pages freed by transaction N only from transaction N + 2 on (N's predecessor
 * snapshot must stay intact until N + 1 commits). One small commit after a GC batch makes
 * the space that batch freed available to the very next write, which matters exactly when
 * GC runs because the map filled up. */
static int gc_settle(store_t *s, uint64_t now_ms)
{
    struct wtxn w;
    int rc = wtxn_begin(s, &w);
    if (rc)
        return rc;
    if ((rc = meta_put_uint(s, w.txn, META_GC, strlen(META_GC), now_ms))) {
        wtxn_abort(&w);
        return rc;
    }
    return wtxn_commit(s, &w);
}

int store_gc(store_t *s, uint64_t now_ms)
{
    int rc = busy(s);
    if (rc)
        return rc;
    if (s->tombstones == 0)
        return 0; /* the common case costs no scan */

    char resume[STORE_KEY_MAX + 1];
    size_t rlen = 0;
    bool more = true, settled = true;
    int total = 0, removed;
    while (more) {
        rc = gc_batch(s, now_ms, resume, &rlen, &more, &removed);
        if (rc == -ENOSPC && !settled) {
            /* The previous batch's pages are not reusable yet: settle, then retry once. */
            settled = gc_settle(s, now_ms) == 0;
            if (settled) {
                more = true;
                continue;
            }
        }
        if (rc) {
            if (total == 0)
                return rc;
            /* Earlier batches are committed and consistent: report them; the next run
             * continues (store_last_error says why this one stopped). */
            log_warn("store: gc stopped after %d tombstones: %s", total, s->err);
            return total;
        }
        total += removed;
        settled = removed == 0;
    }
    if (total && !settled)
        gc_settle(s, now_ms); /* best effort: the tombstones are gone either way */
    log_debug("store: gc collected %d tombstones", total);
    return total;
}

/* ---- inspection ------------------------------------------------------------------------- */

int store_verify(store_t *s)
{
    int rc = busy(s);
    if (rc)
        return rc;
    uint64_t digest[STORE_BUCKETS], entries, tombstones, maxv;
    if ((rc = read_begin(s)))
        return rc;
    rc = recompute(s, s->rtxn, digest, &entries, &tombstones, &maxv);
    read_end(s);
    if (rc)
        return rc;
    for (unsigned b = 0; b < STORE_BUCKETS; b++) {
        if (digest[b] != s->digest[b]) {
            set_err(s, "bucket %u digest is %016llx but the records give %016llx", b,
                    (unsigned long long)s->digest[b], (unsigned long long)digest[b]);
            return -EIO;
        }
    }
    if (entries != s->entries || tombstones != s->tombstones) {
        set_err(s, "counts say %llu entries/%llu tombstones, records %llu/%llu",
                (unsigned long long)s->entries, (unsigned long long)s->tombstones,
                (unsigned long long)entries, (unsigned long long)tombstones);
        return -EIO;
    }
    if (maxv > s->clock.last) {
        set_err(s, "clock %llu is behind a stored version %llu", (unsigned long long)s->clock.last,
                (unsigned long long)maxv);
        return -EIO;
    }
    return 0;
}

int store_stats(store_t *s, store_stats_t *st)
{
    if (!s || !st)
        return -EINVAL;
    MDB_envinfo info;
    MDB_stat ms;
    int rc = mdb_env_info(s->env, &info);
    if (rc == 0)
        rc = mdb_env_stat(s->env, &ms);
    if (rc)
        return lmdb_err(s, rc, "reading environment info");
    memset(st, 0, sizeof(*st));
    st->entries = s->entries;
    st->tombstones = s->tombstones;
    st->merges_applied = s->merges_applied;
    st->merges_ignored = s->merges_ignored;
    st->merges_refused = s->merges_refused;
    st->merges_unauthorized = s->merges_unauthorized;
    st->skew_rejected = s->skew_rejected;
    st->skew_last_origin = s->skew_last_origin;
    st->skew_last_ahead_ms = s->skew_last_ahead_ms;
    st->map_size = info.me_mapsize;
    /* High-water mark of pages ever used; freed pages are reused but not returned. */
    st->map_used = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    return 0;
}

struct hlc *store_clock(store_t *s)
{
    return s ? &s->clock : NULL;
}
