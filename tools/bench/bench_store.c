/* bench_store: the storage module against raw LMDB, in one run, on the same disk.
 *
 * Every metric is measured twice: through popmesh's store (record encoding, digest upkeep,
 * limit checks, the LWW comparison) and as plain mdb_put of the same keys and values into a
 * plain LMDB environment with the same sync mode. Raw LMDB is the ceiling: the ratio says how
 * much of it the store keeps.
 *
 *   durable_put    one store_put = one transaction + fsync, on a store holding 100k entries
 *   batched_put    100k puts, 1000 per transaction (one fsync each)
 *   merge          100k remote entries that all win, merged 1000 per transaction
 *   digest_sync    two stores of 100k entries differing in 100 keys: compare 256 digests,
 *                  export the differing buckets from one, merge into the other, check the
 *                  digests are equal. The raw "limit" is putting just the 100 differing
 *                  entries (a replica that magically knew the delta); the naive alternative,
 *                  a full scan of both raw databases to find the delta, is printed too.
 *
 * Usage: bench_store [--tsv] [DIR]   (DIR defaults to a fresh directory under /tmp, removed
 * at the end). --tsv prints "metric<TAB>popmesh<TAB>raw<TAB>unit" lines for bench_store.sh. */
#include <errno.h>
#include <ftw.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "storage/hlc.h"
#include "storage/store.h"

#define N_ENTRIES 100000
#define N_DURABLE 2000
#define BATCH     1000
#define N_DIFF    100
#define MAP_SIZE  (1ull << 30) /* bytes */
#define T0        1700000000000ull

static bool tsv;

/* ---- data ------------------------------------------------------------------------------- */

struct data {
    char (*key)[32];
    size_t *klen;
    uint8_t (*val)[80];
    size_t *vlen;
};

/* Values like a small config object, ~64 bytes of msgpack:
 * {"name": "svc-<i>", "port": 443, "weight": <i % 100>, "tag": "<pad>"} */
static void make_data(struct data *d, uint32_t salt)
{
    d->key = xcalloc(N_ENTRIES, sizeof(*d->key));
    d->klen = xcalloc(N_ENTRIES, sizeof(*d->klen));
    d->val = xcalloc(N_ENTRIES, sizeof(*d->val));
    d->vlen = xcalloc(N_ENTRIES, sizeof(*d->vlen));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    for (uint32_t i = 0; i < N_ENTRIES; i++) {
        d->klen[i] = (size_t)snprintf(d->key[i], sizeof(d->key[i]), "cfg/bench/%u", i);
        char name[32], tag[40];
        snprintf(name, sizeof(name), "svc-%u", i);
        snprintf(tag, sizeof(tag), "rev-%08x-abcdefghijklmnop", salt ^ (i * 2654435761u));
        msgpack_sbuffer_clear(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        mpw_str(&pk, "name");
        mpw_str(&pk, name);
        mpw_str(&pk, "port");
        msgpack_pack_uint16(&pk, 443);
        mpw_str(&pk, "weight");
        msgpack_pack_uint8(&pk, (uint8_t)(i % 100));
        mpw_str(&pk, "tag");
        mpw_str(&pk, tag);
        if (sb.size > sizeof(d->val[i]))
            abort();
        memcpy(d->val[i], sb.data, sb.size);
        d->vlen[i] = sb.size;
    }
    msgpack_sbuffer_destroy(&sb);
}

static void free_data(struct data *d)
{
    free(d->key);
    free(d->klen);
    free(d->val);
    free(d->vlen);
}

/* ---- helpers ---------------------------------------------------------------------------- */

static void die(const char *what, int rc) __attribute__((noreturn));
static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_store: %s: %d (%s)\n", what, rc,
            rc > 0 ? mdb_strerror(rc) : strerror(-rc));
    exit(1);
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static char *subdir(const char *base, const char *name)
{
    char *p = xmalloc(strlen(base) + strlen(name) + 2);
    sprintf(p, "%s/%s", base, name);
    if (mkdir(p, 0700) != 0)
        die("mkdir", -errno);
    return p;
}

static store_t *store_at(const char *dir, uint64_t node, bool nosync)
{
    store_opts_t o = {.node_id = node, .map_size = MAP_SIZE, .nosync = nosync};
    store_t *s;
    int rc = store_open(dir, &o, &s);
    if (rc)
        die("store_open", rc);
    return s;
}

static MDB_env *raw_at(const char *dir, bool nosync)
{
    MDB_env *env;
    int rc;
    if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_mapsize(env, MAP_SIZE)) ||
        (rc = mdb_env_open(env, dir, nosync ? MDB_NOSYNC : 0, 0600)))
        die("raw env", rc);
    return env;
}

/* Raw: puts of [from, to) in transactions of per_txn. */
static void raw_put(MDB_env *env, const struct data *d, size_t from, size_t to, size_t per_txn)
{
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc;
    for (size_t i = from; i < to;) {
        if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) || (rc = mdb_dbi_open(txn, NULL, 0, &dbi)))
            die("raw txn", rc);
        for (size_t k = 0; k < per_txn && i < to; k++, i++) {
            MDB_val key = {.mv_size = d->klen[i], .mv_data = d->key[i]};
            MDB_val val = {.mv_size = d->vlen[i], .mv_data = d->val[i]};
            if ((rc = mdb_put(txn, dbi, &key, &val, 0)))
                die("raw put", rc);
        }
        if ((rc = mdb_txn_commit(txn)))
            die("raw commit", rc);
    }
}

static void store_batches(store_t *s, const struct data *d, size_t from, size_t to)
{
    store_entry_t *b = xcalloc(BATCH, sizeof(*b));
    for (size_t i = from; i < to;) {
        size_t n = 0;
        for (; n < BATCH && i < to; n++, i++)
            b[n] = (store_entry_t){
                .key = d->key[i], .klen = d->klen[i], .value = d->val[i], .vlen = d->vlen[i]};
        int rc = store_put_batch(s, b, n, T0);
        if (rc)
            die(store_last_error(s), rc);
    }
    free(b);
}

static void store_merges(store_t *s, const struct data *d, size_t from, size_t to, uint64_t version,
                         uint64_t origin)
{
    store_entry_t *b = xcalloc(BATCH, sizeof(*b));
    for (size_t i = from; i < to;) {
        size_t n = 0;
        for (; n < BATCH && i < to; n++, i++)
            b[n] = (store_entry_t){.key = d->key[i],
                                   .klen = d->klen[i],
                                   .value = d->val[i],
                                   .vlen = d->vlen[i],
                                   .version = version + i,
                                   .origin = origin};
        int rc = store_merge(s, b, n, T0 + 1000000);
        if (rc < 0)
            die(store_last_error(s), rc);
    }
    free(b);
}

static void report(const char *metric, double popmesh, double raw, const char *unit,
                   const char *note)
{
    if (tsv)
        printf("%s\t%.6g\t%.6g\t%s\n", metric, popmesh, raw, unit);
    else
        printf("%-14s %12.1f %12.1f  %-8s %6.2f   %s\n", metric, popmesh, raw, unit, popmesh / raw,
               note);
    fflush(stdout);
}

/* ---- anti-entropy ----------------------------------------------------------------------- */

struct shipment {
    store_entry_t *e;
    uint8_t *arena; /* copies of keys and values */
    size_t n, cap, used, arena_cap;
};

static int ship(const store_entry_t *e, void *ctx)
{
    struct shipment *sh = ctx;
    if (sh->n == sh->cap) {
        sh->cap = sh->cap ? 2 * sh->cap : 1024;
        sh->e = xrealloc(sh->e, sh->cap * sizeof(*sh->e));
    }
    /* Offsets first, pointers fixed after the walk: the arena may move while growing. */
    size_t need = e->klen + e->vlen;
    if (sh->used + need > sh->arena_cap) {
        sh->arena_cap = 2 * (sh->arena_cap + need);
        sh->arena = xrealloc(sh->arena, sh->arena_cap);
    }
    store_entry_t *d = &sh->e[sh->n++];
    *d = *e;
    d->key = (char *)(uintptr_t)sh->used;
    memcpy(sh->arena + sh->used, e->key, e->klen);
    sh->used += e->klen;
    if (e->value) {
        d->value = (uint8_t *)(uintptr_t)sh->used;
        memcpy(sh->arena + sh->used, e->value, e->vlen);
        sh->used += e->vlen;
    }
    return 0;
}

static void ship_fix(struct shipment *sh)
{
    for (size_t i = 0; i < sh->n; i++) {
        sh->e[i].key = (char *)sh->arena + (uintptr_t)sh->e[i].key;
        if (sh->e[i].value)
            sh->e[i].value = sh->arena + (uintptr_t)sh->e[i].value;
    }
}

/* The naive way without digests: walk both raw DBs in key order and copy what differs. */
static size_t raw_full_diff(MDB_env *from, MDB_env *to)
{
    MDB_txn *rt, *wt;
    MDB_dbi rd, wd;
    MDB_cursor *rcur, *wc;
    MDB_val k1, v1, k2, v2;
    size_t copied = 0;
    int rc;
    if ((rc = mdb_txn_begin(from, NULL, MDB_RDONLY, &rt)) ||
        (rc = mdb_dbi_open(rt, NULL, 0, &rd)) || (rc = mdb_txn_begin(to, NULL, 0, &wt)) ||
        (rc = mdb_dbi_open(wt, NULL, 0, &wd)) || (rc = mdb_cursor_open(rt, rd, &rcur)) ||
        (rc = mdb_cursor_open(wt, wd, &wc)))
        die("raw diff", rc);
    for (rc = mdb_cursor_get(rcur, &k1, &v1, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(rcur, &k1, &v1, MDB_NEXT)) {
        k2 = k1;
        if (mdb_cursor_get(wc, &k2, &v2, MDB_SET_KEY) == 0 && v2.mv_size == v1.mv_size &&
            memcmp(v1.mv_data, v2.mv_data, v1.mv_size) == 0)
            continue;
        if ((rc = mdb_put(wt, wd, &k1, &v1, 0)))
            die("raw diff put", rc);
        copied++;
    }
    mdb_cursor_close(wc);
    mdb_cursor_close(rcur);
    mdb_txn_abort(rt);
    if ((rc = mdb_txn_commit(wt)))
        die("raw diff commit", rc);
    return copied;
}

int main(int argc, char **argv)
{
    const char *base_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tsv") == 0)
            tsv = true;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: bench_store [--tsv] [DIR]\n");
            return 2;
        } else
            base_arg = argv[i];
    }
    log_init("bench_store", LOG_WARN);
    char tmpl[] = "/tmp/popmesh-bench-store-XXXXXX";
    char *base = base_arg ? (char *)base_arg : mkdtemp(tmpl);
    if (!base)
        die("mkdtemp", -errno);

    struct data d, d2;
    make_data(&d, 1);
    make_data(&d2, 2); /* same keys, other values: the "remote" writes */

    if (!tsv)
        printf("%-14s %12s %12s  %-8s %6s   %s\n", "metric", "popmesh", "raw lmdb", "unit", "ratio",
               "note");

    /* batched_put: 100k into fresh environments, 1000 per transaction, fsync per commit. */
    char *sdir = subdir(base, "store"), *rdir = subdir(base, "raw");
    store_t *s = store_at(sdir, 1, false);
    MDB_env *raw = raw_at(rdir, false);
    double t = clock_mono_s();
    store_batches(s, &d, 0, N_ENTRIES);
    double ps = clock_mono_s() - t;
    t = clock_mono_s();
    raw_put(raw, &d, 0, N_ENTRIES, BATCH);
    double rs = clock_mono_s() - t;
    report("batched_put", N_ENTRIES / ps, N_ENTRIES / rs, "ops/s", "1000 per txn, fsync each");

    /* durable_put: one transaction and fsync each, over the 100k entries now held. */
    t = clock_mono_s();
    for (size_t i = 0; i < N_DURABLE; i++) {
        int rc = store_put(s, d2.key[i], d2.klen[i], d2.val[i], d2.vlen[i], T0, NULL);
        if (rc)
            die(store_last_error(s), rc);
    }
    ps = clock_mono_s() - t;
    t = clock_mono_s();
    raw_put(raw, &d2, 0, N_DURABLE, 1);
    rs = clock_mono_s() - t;
    report("durable_put", N_DURABLE / ps, N_DURABLE / rs, "ops/s", "1 txn + fsync per write");

    /* merge: 100k remote entries, all newer than what is held, 1000 per transaction. */
    t = clock_mono_s();
    store_merges(s, &d, 0, N_ENTRIES, hlc_make(T0 + 500000, 0), 2);
    ps = clock_mono_s() - t;
    t = clock_mono_s();
    raw_put(raw, &d, 0, N_ENTRIES, BATCH);
    rs = clock_mono_s() - t;
    store_stats_t st;
    store_stats(s, &st);
    if (st.merges_applied != N_ENTRIES)
        die("merge: not every entry applied", -EPROTO);
    report("merge", N_ENTRIES / ps, N_ENTRIES / rs, "ops/s", "1000 per txn, all applied");
    store_close(&s);
    mdb_env_close(raw);

    /* digest_sync: two replicas of the same 100k entries, then 100 keys change on one. */
    char *adir = subdir(base, "a"), *bdir = subdir(base, "b");
    char *radir = subdir(base, "raw-a"), *rbdir = subdir(base, "raw-b");
    store_t *a = store_at(adir, 1, true), *b = store_at(bdir, 2, true);
    store_merges(a, &d, 0, N_ENTRIES, hlc_make(T0, 0), 7);
    store_merges(b, &d, 0, N_ENTRIES, hlc_make(T0, 0), 7);
    store_close(&a);
    store_close(&b);
    a = store_at(adir, 1, false); /* the timed part runs with fsync, like the others */
    b = store_at(bdir, 2, false);
    for (size_t i = 0; i < N_DIFF; i++) {
        size_t k = i * (N_ENTRIES / N_DIFF) + 17;
        int rc = store_put(b, d2.key[k], d2.klen[k], d2.val[k], d2.vlen[k], T0 + 1000, NULL);
        if (rc)
            die(store_last_error(b), rc);
    }
    MDB_env *ra = raw_at(radir, false), *rb = raw_at(rbdir, false);
    raw_put(ra, &d, 0, N_ENTRIES, 10000);
    raw_put(rb, &d, 0, N_ENTRIES, 10000);
    /* The 100 changed entries, as raw data. */
    struct data delta = {xcalloc(N_DIFF, 32), xcalloc(N_DIFF, sizeof(size_t)), xcalloc(N_DIFF, 80),
                         xcalloc(N_DIFF, sizeof(size_t))};
    for (size_t i = 0; i < N_DIFF; i++) {
        size_t k = i * (N_ENTRIES / N_DIFF) + 17;
        memcpy(delta.key[i], d2.key[k], 32);
        delta.klen[i] = d2.klen[k];
        memcpy(delta.val[i], d2.val[k], 80);
        delta.vlen[i] = d2.vlen[k];
    }
    raw_put(rb, &delta, 0, N_DIFF, N_DIFF);

    double t0 = clock_mono_s();
    uint64_t da[STORE_BUCKETS], db[STORE_BUCKETS];
    uint8_t diff[STORE_BUCKETS / 8] = {0};
    store_digests(a, da);
    store_digests(b, db);
    int nbuckets = 0;
    for (unsigned i = 0; i < STORE_BUCKETS; i++)
        if (da[i] != db[i])
            diff[i / 8] |= (uint8_t)(1u << (i % 8)), nbuckets++;
    struct shipment sh = {0};
    double t_cmp = clock_mono_s();
    int rc = store_export(b, diff, ship, &sh);
    if (rc)
        die("export", rc);
    ship_fix(&sh);
    double t_exp = clock_mono_s();
    rc = store_merge(a, sh.e, sh.n, T0 + 2000);
    double t_mrg = clock_mono_s();
    if (rc < 0)
        die(store_last_error(a), rc);
    store_digests(a, da);
    ps = clock_mono_s() - t0;
    if (memcmp(da, db, sizeof(da)) != 0)
        die("digest_sync: digests still differ", -EPROTO);
    if (rc != N_DIFF)
        die("digest_sync: wrong number of entries applied", -EPROTO);

    t = clock_mono_s();
    raw_put(ra, &delta, 0, N_DIFF, N_DIFF);
    rs = clock_mono_s() - t;
    char note[128];
    snprintf(note, sizeof(note),
             "%d buckets, %zu entries shipped, %d applied; compare %.1f, export %.1f, merge "
             "%.1f ms",
             nbuckets, sh.n, rc, (t_cmp - t0) * 1000, (t_exp - t_cmp) * 1000,
             (t_mrg - t_exp) * 1000);
    report("digest_sync", ps * 1000, rs * 1000, "ms", note);

    /* The naive alternative (no digests): scan both full raw DBs and copy the delta. */
    char *rcdir = subdir(base, "raw-c");
    MDB_env *rc2 = raw_at(rcdir, false);
    raw_put(rc2, &d, 0, N_ENTRIES, 10000);
    t = clock_mono_s();
    size_t copied = raw_full_diff(rb, rc2);
    double naive = clock_mono_s() - t;
    if (copied != N_DIFF)
        die("raw full diff copied the wrong count", -EPROTO);
    report("full_scan_diff", ps * 1000, naive * 1000, "ms", "raw: scan 100k x2, copy delta");

    free(sh.e);
    free(sh.arena);
    free_data(&delta);
    store_close(&a);
    store_close(&b);
    mdb_env_close(ra);
    mdb_env_close(rb);
    mdb_env_close(rc2);
    free_data(&d);
    free_data(&d2);
    free(sdir), free(rdir), free(adir), free(bdir), free(radir), free(rbdir), free(rcdir);
    if (!base_arg)
        nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}
