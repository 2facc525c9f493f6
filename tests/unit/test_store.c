/* Unit tests of the LWW store (storage/store.h): semantics, merge rule, digests, export, GC,
 * limits, map full, open errors, reopen, corruption. Each test uses its own temp directory. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/hlc.h"
#include "storage/record.h"
#include "storage/store.h"

#define T0    1700000000000ull /* ms: a fixed "now" */
#define NODE  0x1111ull
#define NODE2 0x2222ull

/* ---- fixtures --------------------------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *mk_tmpdir(void)
{
    char *d = strdup("/tmp/popmesh-test-store-XXXXXX");
    assert_non_null(mkdtemp(d));
    return d;
}

struct fix {
    char *dir;
    store_t *s;
};

static store_t *open_at(const char *dir, uint64_t node, uint64_t map_size, uint64_t grace)
{
    store_opts_t o = {.node_id = node, .map_size = map_size, .grace_ms = grace, .nosync = true};
    store_t *s = NULL;
    int rc = store_open(dir, &o, &s);
    if (rc)
        fail_msg("store_open(%s): %d", dir, rc);
    return s;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    f->dir = mk_tmpdir();
    f->s = open_at(f->dir, NODE, 0, 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    store_close(&f->s);
    assert_null(f->s);
    rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* msgpack fixstr value */
static size_t mpstr(uint8_t *buf, const char *s)
{
    size_t n = strlen(s);
    assert_true(n < 32);
    buf[0] = (uint8_t)(0xa0 | n);
    memcpy(buf + 1, s, n);
    return n + 1;
}

static int put_str(store_t *s, const char *key, const char *val, uint64_t now)
{
    uint8_t v[40];
    size_t n = mpstr(v, val);
    return store_put(s, key, strlen(key), v, n, now, NULL);
}

static void assert_get_str(store_t *s, const char *key, const char *val)
{
    store_entry_t e;
    uint8_t v[40];
    size_t n = mpstr(v, val);
    int rc = store_get(s, key, strlen(key), &e);
    if (rc)
        fail_msg("get %s: %d (%s)", key, rc, store_last_error(s));
    assert_int_equal(e.vlen, n);
    assert_memory_equal(e.value, v, n);
    assert_string_equal(e.key, key);
    store_entry_free(&e);
}

/* A remote entry for store_merge; val NULL = tombstone. Uses a static buffer per slot. */
static store_entry_t remote(const char *key, const char *val, uint64_t version, uint64_t origin)
{
    static uint8_t bufs[64][40];
    static int next;
    store_entry_t e = {.key = (char *)key,
                       .klen = strlen(key),
                       .version = version,
                       .origin = origin,
                       .tombstone = val == NULL};
    if (val) {
        uint8_t *b = bufs[next++ % 64];
        e.vlen = mpstr(b, val);
        e.value = b;
    }
    return e;
}

static int merge1(store_t *s, store_entry_t e, uint64_t now)
{
    return store_merge(s, &e, 1, now);
}

/* Collects what an iterator yields. */
struct seen {
    int n;
    char keys[512][64];
    bool tomb[512];
    uint64_t version[512];
    uint64_t origin[512];
    int stop_after; /* 0: never */
};

static int collect(const store_entry_t *e, void *ctx)
{
    struct seen *c = ctx;
    assert_true(c->n < 512);
    assert_true(e->klen < 64);
    memcpy(c->keys[c->n], e->key, e->klen);
    c->keys[c->n][e->klen] = 0;
    c->tomb[c->n] = e->tombstone;
    c->version[c->n] = e->version;
    c->origin[c->n] = e->origin;
    if (e->tombstone)
        assert_null(e->value);
    else
        assert_true(e->vlen > 0);
    c->n++;
    return c->stop_after && c->n >= c->stop_after ? 77 : 0;
}

static void all_buckets(uint8_t b[STORE_BUCKETS / 8])
{
    memset(b, 0xff, STORE_BUCKETS / 8);
}

/* ---- basic semantics -------------------------------------------------------------------- */

static void test_put_get(void **state)
{
    struct fix *f = *state;
    store_entry_t out, e;
    uint8_t v[40];
    size_t n = mpstr(v, "hello");

    assert_int_equal(store_get(f->s, "cfg/a", 5, &e), -ENOENT);
    assert_int_equal(store_put(f->s, "cfg/a", 5, v, n, T0, &out), 0);
    assert_int_equal(out.origin, NODE);
    assert_false(out.tombstone);
    assert_null(out.key);
    assert_null(out.value);
    assert_int_equal(hlc_ms(out.version), T0);

    assert_int_equal(store_get(f->s, "cfg/a", 5, &e), 0);
    assert_int_equal(e.klen, 5);
    assert_string_equal(e.key, "cfg/a"); /* NUL added */
    assert_int_equal(e.vlen, n);
    assert_memory_equal(e.value, v, n);
    assert_int_equal(e.version, out.version);
    assert_int_equal(e.origin, NODE);
    assert_false(e.tombstone);
    store_entry_free(&e);
    assert_null(e.key);
    store_entry_free(NULL);

    /* Overwrite: same wall clock, still a newer version. */
    store_entry_t out2;
    assert_int_equal(put_str(f->s, "cfg/a", "world", T0), 0);
    n = mpstr(v, "again");
    assert_int_equal(store_put(f->s, "cfg/a", 5, v, n, T0 - 5000, &out2), 0);
    assert_true(out2.version > out.version + 1);
    assert_get_str(f->s, "cfg/a", "again");
    /* A prefix of a key is a different key. */
    assert_int_equal(store_get(f->s, "cfg/", 4, &e), -ENOENT);
    assert_int_equal(store_verify(f->s), 0);
}

static void test_delete_tombstone(void **state)
{
    struct fix *f = *state;
    store_entry_t out, e;
    store_stats_t st;

    assert_int_equal(store_del(f->s, "k", 1, T0, &out), -ENOENT); /* nothing to delete */
    assert_int_equal(put_str(f->s, "k", "v", T0), 0);
    assert_int_equal(store_del(f->s, "k", 1, T0, &out), 0);
    assert_true(out.tombstone);
    assert_int_equal(out.origin, NODE);
    assert_int_equal(store_get(f->s, "k", 1, &e), -ENOENT);
    assert_int_equal(store_del(f->s, "k", 1, T0, &out), -ENOENT); /* already deleted */

    assert_int_equal(store_stats(f->s, &st), 0);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.tombstones, 1);

    /* list hides tombstones, export shows them. */
    struct seen c = {0};
    assert_int_equal(store_list(f->s, "", 0, collect, &c), 0);
    assert_int_equal(c.n, 0);
    uint8_t all[STORE_BUCKETS / 8];
    all_buckets(all);
    assert_int_equal(store_export(f->s, all, collect, &c), 0);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.keys[0], "k");
    assert_true(c.tomb[0]);
    assert_int_equal(c.version[0], out.version);

    /* A delete wins over an older put arriving later... */
    assert_int_equal(merge1(f->s, remote("k", "old", out.version - 1, NODE2), T0), 0);
    assert_int_equal(store_get(f->s, "k", 1, &e), -ENOENT);
    /* ...and a later local put revives the key. */
    assert_int_equal(put_str(f->s, "k", "back", T0), 0);
    assert_get_str(f->s, "k", "back");
    assert_int_equal(store_stats(f->s, &st), 0);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.tombstones, 0);
    assert_int_equal(store_verify(f->s), 0);
}

static void test_list_prefix(void **state)
{
    struct fix *f = *state;
    const char *keys[] = {"b/1", "a/2", "ab", "a/1", "a/3", "a", "c"};
    for (size_t i = 0; i < 7; i++)
        assert_int_equal(put_str(f->s, keys[i], keys[i], T0), 0);
    assert_int_equal(store_del(f->s, "a/3", 3, T0, NULL), 0);

    struct seen c = {0};
    assert_int_equal(store_list(f->s, "a/", 2, collect, &c), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.keys[0], "a/1"); /* key order */
    assert_string_equal(c.keys[1], "a/2");

    memset(&c, 0, sizeof(c));
    assert_int_equal(store_list(f->s, "a", 1, collect, &c), 0);
    assert_int_equal(c.n, 4); /* a, a/1, a/2, ab */
    assert_string_equal(c.keys[0], "a");
    assert_string_equal(c.keys[3], "ab");

    memset(&c, 0, sizeof(c));
    assert_int_equal(store_list(f->s, NULL, 0, collect, &c), 0);
    assert_int_equal(c.n, 6);

    memset(&c, 0, sizeof(c));
    assert_int_equal(store_list(f->s, "zz", 2, collect, &c), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(store_list(f->s, "a/", 2, NULL, NULL), -EINVAL);

    /* A callback's non-zero return stops the walk and is returned. */
    memset(&c, 0, sizeof(c));
    c.stop_after = 2;
    assert_int_equal(store_list(f->s, "", 0, collect, &c), 77);
    assert_int_equal(c.n, 2);
}

static int reenter(const store_entry_t *e, void *ctx)
{
    store_t *s = ctx;
    store_entry_t g;
    assert_int_equal(put_str(s, "x", "y", T0), -EBUSY);
    assert_int_equal(store_get(s, "x", 1, &g), -EBUSY);
    uint64_t d[STORE_BUCKETS];
    assert_int_equal(store_digests(s, d), 0); /* allowed */
    return 0;
}

static void test_callback_reentry_refused(void **state)
{
    struct fix *f = *state;
    assert_int_equal(put_str(f->s, "a", "1", T0), 0);
    assert_int_equal(store_list(f->s, "", 0, reenter, f->s), 0);
    /* And the store is fine afterwards. */
    assert_int_equal(put_str(f->s, "x", "y", T0), 0);
    assert_get_str(f->s, "x", "y");
}

static void test_put_batch(void **state)
{
    struct fix *f = *state;
    uint8_t v[3][8];
    store_entry_t b[3] = {
        {.key = "b/1", .klen = 3, .value = v[0], .vlen = mpstr(v[0], "one")},
        {.key = "b/2", .klen = 3, .value = v[1], .vlen = mpstr(v[1], "two")},
        {.key = "b/1", .klen = 3, .value = v[2], .vlen = mpstr(v[2], "uno")}, /* later wins */
    };
    assert_int_equal(store_put_batch(f->s, b, 3, T0), 0);
    assert_get_str(f->s, "b/1", "uno");
    assert_get_str(f->s, "b/2", "two");

    /* All or nothing: one bad entry and nothing is written. */
    store_entry_t bad[2] = {
        {.key = "c/1", .klen = 3, .value = v[0], .vlen = mpstr(v[0], "x")},
        {.key = "c/2", .klen = 3, .value = (uint8_t *)"\xc1", .vlen = 1},
    };
    assert_int_equal(store_put_batch(f->s, bad, 2, T0), -EINVAL);
    store_entry_t e;
    assert_int_equal(store_get(f->s, "c/1", 3, &e), -ENOENT);
    bad[1] = (store_entry_t){.key = "c/2", .klen = 3, .tombstone = true};
    assert_int_equal(store_put_batch(f->s, bad, 2, T0), -EINVAL);
    assert_int_equal(store_get(f->s, "c/1", 3, &e), -ENOENT);
    assert_int_equal(store_put_batch(f->s, NULL, 0, T0), 0);
    assert_int_equal(store_verify(f->s), 0);
}

/* ---- merge ------------------------------------------------------------------------------ */

static void test_merge_rules(void **state)
{
    struct fix *f = *state;
    store_entry_t e;
    store_stats_t st;
    uint64_t v = hlc_make(T0 - 1000, 5);

    assert_int_equal(merge1(f->s, remote("m", "first", v, NODE2), T0), 1);
    assert_get_str(f->s, "m", "first");
    /* Newer wins. */
    assert_int_equal(merge1(f->s, remote("m", "newer", v + 1, NODE2), T0), 1);
    assert_get_str(f->s, "m", "newer");
    /* Older loses. */
    assert_int_equal(merge1(f->s, remote("m", "older", v, 0xffff), T0), 0);
    assert_get_str(f->s, "m", "newer");
    /* Same version: the higher origin wins, the lower loses, whatever the order. */
    assert_int_equal(merge1(f->s, remote("m", "hi-origin", v + 1, NODE2 + 1), T0), 1);
    assert_get_str(f->s, "m", "hi-origin");
    assert_int_equal(merge1(f->s, remote("m", "lo-origin", v + 1, NODE2 - 1), T0), 0);
    assert_get_str(f->s, "m", "hi-origin");
    assert_int_equal(store_get(f->s, "m", 1, &e), 0);
    assert_int_equal(e.version, v + 1);
    assert_int_equal(e.origin, NODE2 + 1);
    store_entry_free(&e);
    /* Exact duplicate: ignored. */
    assert_int_equal(merge1(f->s, remote("m", "hi-origin", v + 1, NODE2 + 1), T0), 0);
    /* Remote tombstone newer than the live entry deletes it. */
    assert_int_equal(merge1(f->s, remote("m", NULL, v + 2, NODE2), T0), 1);
    assert_int_equal(store_get(f->s, "m", 1, &e), -ENOENT);

    assert_int_equal(store_stats(f->s, &st), 0);
    assert_int_equal(st.merges_applied, 4);
    assert_int_equal(st.merges_ignored, 3);
    assert_int_equal(st.tombstones, 1);

    /* A local write after merging a version ahead of our wall clock is newer still
     * (merge observes the remote version). */
    uint64_t ahead = hlc_make(T0 + 30000, 9);
    assert_int_equal(merge1(f->s, remote("z", "future", ahead, NODE2), T0), 1);
    store_entry_t out;
    uint8_t buf[8];
    size_t n = mpstr(buf, "mine");
    assert_int_equal(store_put(f->s, "z", 1, buf, n, T0, &out), 0);
    assert_true(out.version > ahead);
    assert_get_str(f->s, "z", "mine");
    assert_int_equal(store_verify(f->s), 0);
}

static void test_merge_refusals(void **state)
{
    struct fix *f = *state;
    store_stats_t st;
    store_entry_t e;
    char big[STORE_KEY_MAX + 2];
    memset(big, 'k', sizeof(big));
    store_entry_t batch[5] = {
        remote("ok/1", "a", hlc_make(T0, 1), NODE2),
        remote("ok/2", "b", hlc_make(T0 + HLC_MAX_AHEAD_MS + 1, 0), NODE2), /* skew */
        remote("ok/3", "c", hlc_make(T0, 1), 0),                            /* origin 0 */
        remote("ok/4", "d", hlc_make(T0, 1), NODE2),
        remote("ok/5", "e", hlc_make(T0, 1), NODE2),
    };
    batch[3].value = (uint8_t *)"\x92\x01"; /* truncated array: not one object */
    batch[3].vlen = 2;
    batch[4].key = big;
    batch[4].klen = sizeof(big);
    uint64_t clock_before = store_clock(f->s)->last;
    assert_int_equal(store_merge(f->s, batch, 5, T0), 1);
    assert_get_str(f->s, "ok/1", "a");
    for (int i = 2; i <= 4; i++) {
        char k[8];
        snprintf(k, sizeof(k), "ok/%d", i);
        assert_int_equal(store_get(f->s, k, 4, &e), -ENOENT);
    }
    assert_int_equal(store_stats(f->s, &st), 0);
    assert_int_equal(st.skew_rejected, 1);
    assert_int_equal(st.merges_refused, 3);
    assert_int_equal(st.merges_applied, 1);
    /* The skewed version did not drag the clock forward. */
    assert_true(hlc_ms(store_clock(f->s)->last) <= T0);
    assert_true(store_clock(f->s)->last >= clock_before);
    assert_int_equal(store_merge(f->s, NULL, 1, T0), -EINVAL);
    assert_int_equal(store_merge(f->s, NULL, 0, T0), 0);
}

static void test_merge_commutative_idempotent(void **state)
{
    char *d2 = mk_tmpdir();
    store_t *a = ((struct fix *)*state)->s, *b = open_at(d2, NODE2, 0, 0);
    store_entry_t ops[6] = {
        remote("x", "1", hlc_make(T0, 1), 3),  remote("x", "2", hlc_make(T0, 1), 4),
        remote("x", NULL, hlc_make(T0, 0), 9), remote("y", "3", hlc_make(T0, 7), 3),
        remote("y", NULL, hlc_make(T0, 7), 3), /* same (version, origin): tombstone wins */
        remote("z", "4", hlc_make(T0, 2), 5),
    };
    for (int i = 0; i < 6; i++)
        assert_true(merge1(a, ops[i], T0) >= 0);
    for (int i = 5; i >= 0; i--) { /* reverse order, each twice */
        assert_true(merge1(b, ops[i], T0) >= 0);
        assert_int_equal(merge1(b, ops[i], T0), 0);
    }
    uint64_t da[STORE_BUCKETS], db[STORE_BUCKETS];
    assert_int_equal(store_digests(a, da), 0);
    assert_int_equal(store_digests(b, db), 0);
    assert_memory_equal(da, db, sizeof(da));
    assert_get_str(a, "x", "2");
    assert_get_str(b, "x", "2");
    store_entry_t e;
    assert_int_equal(store_get(a, "y", 1, &e), -ENOENT);
    assert_int_equal(store_get(b, "y", 1, &e), -ENOENT);
    /* Merging everything again changes nothing. */
    assert_int_equal(store_merge(a, ops, 6, T0), 0);
    assert_int_equal(store_digests(a, da), 0);
    assert_memory_equal(da, db, sizeof(da));
    assert_int_equal(store_verify(a), 0);
    assert_int_equal(store_verify(b), 0);
    store_close(&b);
    rm_rf(d2);
    free(d2);
}

/* ---- digests and export ----------------------------------------------------------------- */

static void test_digests(void **state)
{
    char *d2 = mk_tmpdir();
    store_t *a = ((struct fix *)*state)->s, *b = open_at(d2, NODE, 0, 0);
    uint64_t da[STORE_BUCKETS], db[STORE_BUCKETS], zero[STORE_BUCKETS] = {0};

    assert_int_equal(store_digests(a, da), 0);
    assert_memory_equal(da, zero, sizeof(da)); /* empty store */

    /* Same node id, same clock input, same ops: identical digests. */
    char key[32];
    for (int i = 0; i < 50; i++) {
        snprintf(key, sizeof(key), "cfg/%d", i);
        assert_int_equal(put_str(a, key, "v", T0 + (uint64_t)i), 0);
        assert_int_equal(put_str(b, key, "v", T0 + (uint64_t)i), 0);
    }
    assert_int_equal(store_del(a, "cfg/7", 5, T0 + 100, NULL), 0);
    assert_int_equal(store_del(b, "cfg/7", 5, T0 + 100, NULL), 0);
    assert_int_equal(store_digests(a, da), 0);
    assert_int_equal(store_digests(b, db), 0);
    assert_memory_equal(da, db, sizeof(da));
    assert_memory_not_equal(da, zero, sizeof(da));

    /* One more write on a: exactly the key's bucket differs. */
    assert_int_equal(put_str(a, "cfg/7", "v", T0 + 200), 0);
    assert_int_equal(store_digests(a, da), 0);
    unsigned kb = store_bucket_of("cfg/7", 5);
    for (unsigned i = 0; i < STORE_BUCKETS; i++) {
        if (i == kb)
            assert_true(da[i] != db[i]);
        else
            assert_true(da[i] == db[i]);
    }
    /* Same on b: equal again. */
    assert_int_equal(put_str(b, "cfg/7", "v", T0 + 200), 0);
    assert_int_equal(store_digests(b, db), 0);
    assert_memory_equal(da, db, sizeof(da));

    /* Replicas that differ only by a value byte, or only by a tombstone, differ. */
    assert_int_equal(put_str(a, "cfg/1", "v", T0 + 300), 0);
    assert_int_equal(put_str(b, "cfg/1", "w", T0 + 300), 0);
    assert_int_equal(store_digests(a, da), 0);
    assert_int_equal(store_digests(b, db), 0);
    assert_memory_not_equal(da, db, sizeof(da));
    assert_int_equal(put_str(b, "cfg/1", "v", T0 + 300), 0); /* b's version moves on */
    assert_int_equal(store_digests(b, db), 0);
    assert_memory_not_equal(da, db, sizeof(da)); /* same value, different version */

    assert_int_equal(store_digests(a, NULL), -EINVAL);
    /* Maintained digests equal recomputed ones, and survive a reopen. */
    assert_int_equal(store_verify(a), 0);
    assert_int_equal(store_verify(b), 0);
    store_close(&b);
    b = open_at(d2, NODE, 0, 0);
    uint64_t again[STORE_BUCKETS];
    assert_int_equal(store_digests(b, again), 0);
    assert_memory_equal(again, db, sizeof(db));
    assert_int_equal(store_verify(b), 0);
    store_close(&b);
    rm_rf(d2);
    free(d2);
}

static void test_hashes_pinned(void **state)
{
    struct fix *f = *state;
    /* Buckets and entry hashes are part of the protocol: every replica and every build must
     * agree, or anti-entropy would see differences that are not there. These values pin
     * them (SipHash-2-4 and BLAKE2b with fixed keys over a fixed layout), so an accidental
     * change fails here rather than as endless resyncs in a mixed-version mesh. */
    assert_int_equal(store_bucket_of("cfg/a", 5), 16);
    assert_int_equal(store_bucket_of("node/1", 6), 30);
    store_entry_t e[2] = {
        {.key = "cfg/a",
         .klen = 5,
         .value = (uint8_t *)"\xa3"
                             "abc",
         .vlen = 4,
         .version = hlc_make(T0, 1),
         .origin = 0x2222},
        {.key = "node/1",
         .klen = 6,
         .version = hlc_make(T0, 2),
         .origin = 0x3333,
         .tombstone = true},
    };
    assert_int_equal(store_merge(f->s, e, 2, T0), 2);
    uint64_t d[STORE_BUCKETS];
    assert_int_equal(store_digests(f->s, d), 0);
    assert_int_equal(d[16], 0xef0de1be7cca7cd5ull);
    assert_int_equal(d[30], 0xd0b2c9545d7f7477ull);

    /* Spread: 4096 keys hit nearly all of the 256 buckets. */
    uint8_t hit[STORE_BUCKETS] = {0};
    int distinct = 0;
    for (int i = 0; i < 4096; i++) {
        char k[32];
        int n = snprintf(k, sizeof(k), "cfg/%d", i);
        unsigned b = store_bucket_of(k, (size_t)n);
        assert_true(b < STORE_BUCKETS);
        if (!hit[b]++)
            distinct++;
    }
    assert_true(distinct > 250);
}

static void test_export_bucket(void **state)
{
    struct fix *f = *state;
    char key[32];
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof(key), "e/%d", i);
        assert_int_equal(put_str(f->s, key, "v", T0), 0);
    }
    for (int i = 0; i < 400; i += 7) {
        snprintf(key, sizeof(key), "e/%d", i);
        assert_int_equal(store_del(f->s, key, strlen(key), T0, NULL), 0);
    }
    /* Two buckets: the export yields exactly the keys hashing there, tombstones included. */
    unsigned b1 = store_bucket_of("e/0", 3), b2 = store_bucket_of("e/1", 3);
    uint8_t sel[STORE_BUCKETS / 8] = {0};
    sel[b1 / 8] |= (uint8_t)(1u << (b1 % 8));
    sel[b2 / 8] |= (uint8_t)(1u << (b2 % 8));
    struct seen *c = calloc(1, sizeof(*c));
    assert_int_equal(store_export(f->s, sel, collect, c), 0);
    int expected = 0, tombs = 0;
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof(key), "e/%d", i);
        unsigned b = store_bucket_of(key, strlen(key));
        if (b != b1 && b != b2)
            continue;
        expected++;
        bool found = false;
        for (int j = 0; j < c->n; j++) {
            if (strcmp(c->keys[j], key) == 0) {
                found = true;
                assert_int_equal(c->tomb[j], i % 7 == 0);
                tombs += c->tomb[j];
            }
        }
        if (!found)
            fail_msg("export missed %s", key);
    }
    assert_int_equal(c->n, expected);
    assert_true(expected >= 2);
    for (int j = 0; j < c->n; j++) {
        unsigned b = store_bucket_of(c->keys[j], strlen(c->keys[j]));
        assert_true(b == b1 || b == b2);
    }
    (void)tombs;

    /* No bucket: nothing. All buckets: everything. */
    memset(c, 0, sizeof(*c));
    memset(sel, 0, sizeof(sel));
    assert_int_equal(store_export(f->s, sel, collect, c), 0);
    assert_int_equal(c->n, 0);
    all_buckets(sel);
    assert_int_equal(store_export(f->s, sel, collect, c), 0);
    assert_int_equal(c->n, 400);
    assert_int_equal(store_export(f->s, NULL, collect, c), -EINVAL);
    free(c);
}

/* Anti-entropy as gossip/ will do it: compare digests, ship differing buckets, merge. */
struct shipment {
    store_entry_t e[512];
    uint8_t *bufs[512];
    char *keys[512];
    int n;
};

static int ship(const store_entry_t *e, void *ctx)
{
    struct shipment *sh = ctx;
    assert_true(sh->n < 512);
    store_entry_t *d = &sh->e[sh->n];
    *d = *e;
    d->key = sh->keys[sh->n] = strndup(e->key, e->klen);
    d->value = sh->bufs[sh->n] = e->value ? malloc(e->vlen) : NULL;
    if (e->value)
        memcpy(d->value, e->value, e->vlen);
    sh->n++;
    return 0;
}

static void test_anti_entropy_roundtrip(void **state)
{
    char *d2 = mk_tmpdir();
    store_t *a = ((struct fix *)*state)->s, *b = open_at(d2, NODE2, 0, 0);
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "r/%d", i);
        store_entry_t e = remote(key, "same", hlc_make(T0, (uint16_t)i), 7);
        assert_int_equal(merge1(a, e, T0), 1);
        assert_int_equal(merge1(b, e, T0), 1);
    }
    assert_int_equal(put_str(a, "r/5", "a-new", T0 + 10), 0);
    assert_int_equal(store_del(a, "r/6", 3, T0 + 10, NULL), 0);
    assert_int_equal(put_str(b, "r/9", "b-new", T0 + 10), 0);

    uint64_t da[STORE_BUCKETS], db[STORE_BUCKETS];
    uint8_t diff[STORE_BUCKETS / 8] = {0};
    assert_int_equal(store_digests(a, da), 0);
    assert_int_equal(store_digests(b, db), 0);
    int ndiff = 0;
    for (unsigned i = 0; i < STORE_BUCKETS; i++)
        if (da[i] != db[i])
            diff[i / 8] |= (uint8_t)(1u << (i % 8)), ndiff++;
    assert_true(ndiff >= 1 && ndiff <= 3);

    struct shipment *ab = calloc(1, sizeof(*ab)), *ba = calloc(1, sizeof(*ba));
    assert_int_equal(store_export(a, diff, ship, ab), 0);
    assert_int_equal(store_export(b, diff, ship, ba), 0);
    assert_true(store_merge(b, ab->e, (size_t)ab->n, T0 + 20) >= 2);
    assert_true(store_merge(a, ba->e, (size_t)ba->n, T0 + 20) >= 1);
    assert_int_equal(store_digests(a, da), 0);
    assert_int_equal(store_digests(b, db), 0);
    assert_memory_equal(da, db, sizeof(da));
    assert_get_str(b, "r/5", "a-new");
    assert_get_str(a, "r/9", "b-new");
    store_entry_t e;
    assert_int_equal(store_get(b, "r/6", 3, &e), -ENOENT);
    for (int i = 0; i < ab->n; i++)
        free(ab->keys[i]), free(ab->bufs[i]);
    for (int i = 0; i < ba->n; i++)
        free(ba->keys[i]), free(ba->bufs[i]);
    free(ab);
    free(ba);
    store_close(&b);
    rm_rf(d2);
    free(d2);
}

/* ---- gc --------------------------------------------------------------------------------- */

#define GRACE 1000ull /* ms */

static void test_gc(void **state)
{
    char *d1 = mk_tmpdir(), *d2 = mk_tmpdir();
    store_t *a = open_at(d1, NODE, 0, GRACE), *ref = open_at(d2, NODE, 0, GRACE);
    char key[32];
    /* Old tombstones on consecutive keys (the GC cursor deletes runs), young tombstones,
     * old live entries, and one tombstone exactly at the boundary. */
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "g/%02d", i);
        uint64_t ms = i < 20 ? T0 : (i < 30 ? T0 + 5000 : T0);
        bool tomb = i < 30;
        store_entry_t e = remote(key, tomb ? NULL : "live", hlc_make(ms, 1), NODE2);
        assert_int_equal(merge1(a, e, T0), 1);
        if (i >= 20) /* the reference never had the old tombstones */
            assert_int_equal(merge1(ref, e, T0), 1);
    }
    store_entry_t edge = remote("g/edge", NULL, hlc_make(T0 + 1500, 0), NODE2);
    assert_int_equal(merge1(a, edge, T0), 1);
    assert_int_equal(merge1(ref, edge, T0), 1);

    store_stats_t st;
    assert_int_equal(store_stats(a, &st), 0);
    assert_int_equal(st.tombstones, 31);
    assert_int_equal(st.entries, 10);

    /* Nothing is old enough yet. */
    assert_int_equal(store_gc(a, T0 + GRACE), 0);
    /* ms + grace < now for the 20 old ones only; g/edge has ms + grace == now. */
    assert_int_equal(store_gc(a, T0 + 2500), 20);
    assert_int_equal(store_stats(a, &st), 0);
    assert_int_equal(st.tombstones, 11);
    assert_int_equal(st.entries, 10);
    uint64_t da[STORE_BUCKETS], dr[STORE_BUCKETS];
    assert_int_equal(store_digests(a, da), 0);
    assert_int_equal(store_digests(ref, dr), 0);
    assert_memory_equal(da, dr, sizeof(da)); /* as if the collected ones never existed */
    assert_int_equal(store_verify(a), 0);
    assert_int_equal(store_gc(a, T0 + 2500), 0); /* idempotent */

    /* Live entries are never collected, however old. */
    assert_int_equal(store_gc(a, T0 + 100000000), 11);
    assert_int_equal(store_stats(a, &st), 0);
    assert_int_equal(st.tombstones, 0);
    assert_int_equal(st.entries, 10);
    assert_get_str(a, "g/35", "live");
    assert_int_equal(store_verify(a), 0);
    store_close(&a);
    store_close(&ref);
    rm_rf(d1);
    rm_rf(d2);
    free(d1);
    free(d2);
}

static void test_merge_expired_tombstone(void **state)
{
    char *d = mk_tmpdir();
    store_t *s = open_at(d, NODE, 0, GRACE);
    uint64_t now = T0 + 10000;
    store_entry_t e;
    store_stats_t st;
    /* A live entry, then a tombstone for it that is already past the grace period: the entry
     * goes, and no tombstone is stored (others may have collected theirs). */
    assert_int_equal(merge1(s, remote("t", "live", hlc_make(T0, 0), NODE2), now), 1);
    assert_int_equal(merge1(s, remote("t", NULL, hlc_make(T0, 1), NODE2), now), 1);
    assert_int_equal(store_get(s, "t", 1, &e), -ENOENT);
    assert_int_equal(store_stats(s, &st), 0);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.tombstones, 0);
    /* Nothing local: the expired tombstone is ignored. */
    assert_int_equal(merge1(s, remote("u", NULL, hlc_make(T0, 1), NODE2), now), 0);
    assert_int_equal(store_stats(s, &st), 0);
    assert_int_equal(st.tombstones, 0);
    uint64_t dg[STORE_BUCKETS], zero[STORE_BUCKETS] = {0};
    assert_int_equal(store_digests(s, dg), 0);
    assert_memory_equal(dg, zero, sizeof(dg));
    /* An expired tombstone does not delete a newer live entry. */
    assert_int_equal(merge1(s, remote("w", "new", hlc_make(T0, 9), NODE2), now), 1);
    assert_int_equal(merge1(s, remote("w", NULL, hlc_make(T0, 8), NODE2), now), 0);
    assert_get_str(s, "w", "new");
    /* A young tombstone is stored as usual. */
    assert_int_equal(merge1(s, remote("w", NULL, hlc_make(now - 10, 0), NODE2), now), 1);
    assert_int_equal(store_stats(s, &st), 0);
    assert_int_equal(st.tombstones, 1);
    assert_int_equal(store_verify(s), 0);
    store_close(&s);
    rm_rf(d);
    free(d);
}

/* ---- limits ----------------------------------------------------------------------------- */

static void test_limits(void **state)
{
    struct fix *f = *state;
    uint8_t v[8];
    size_t n = mpstr(v, "x");
    char key[STORE_KEY_MAX + 1];
    memset(key, 'k', sizeof(key));

    assert_int_equal(store_check("k", 1, v, n), 0);
    assert_int_equal(store_check(key, STORE_KEY_MAX, v, n), 0);
    assert_int_equal(store_check(key, STORE_KEY_MAX + 1, v, n), -E2BIG);
    assert_int_equal(store_check("", 0, v, n), -EINVAL);
    assert_int_equal(store_check("a\0b", 3, v, n), -EINVAL);
    assert_int_equal(store_check("k", 1, "\xc1", 1), -EINVAL);     /* never-used byte */
    assert_int_equal(store_check("k", 1, "\x01\x02", 2), -EINVAL); /* two objects */
    assert_int_equal(store_check("k", 1,
                                 "\xa5"
                                 "ab",
                                 3),
                     -EINVAL); /* truncated */
    assert_int_equal(store_check("k", 1, v, 0), -EINVAL);
    assert_int_equal(store_check("k", 1, NULL, 0), -EINVAL);

    /* Values: a bin object of exactly STORE_VALUE_MAX bytes is fine, one more is not. */
    size_t max = STORE_VALUE_MAX;
    uint8_t *big = calloc(1, max + 1);
    big[0] = 0xc6; /* bin32 */
    uint32_t body = (uint32_t)(max - 5);
    big[1] = (uint8_t)(body >> 24), big[2] = (uint8_t)(body >> 16);
    big[3] = (uint8_t)(body >> 8), big[4] = (uint8_t)body;
    assert_int_equal(store_check("k", 1, big, max), 0);
    assert_int_equal(store_put(f->s, "big", 3, big, max, T0, NULL), 0);
    body++;
    big[1] = (uint8_t)(body >> 24), big[2] = (uint8_t)(body >> 16);
    big[3] = (uint8_t)(body >> 8), big[4] = (uint8_t)body;
    assert_int_equal(store_check("k", 1, big, max + 1), -E2BIG);
    assert_int_equal(store_put(f->s, "big2", 4, big, max + 1, T0, NULL), -E2BIG);
    assert_non_null(strstr(store_last_error(f->s), "limit"));
    free(big);

    /* Through store_put, with a message. */
    assert_int_equal(store_put(f->s, key, STORE_KEY_MAX + 1, v, n, T0, NULL), -E2BIG);
    assert_non_null(strstr(store_last_error(f->s), "256"));
    assert_int_equal(store_put(f->s, "", 0, v, n, T0, NULL), -EINVAL);
    assert_non_null(strstr(store_last_error(f->s), "empty"));
    assert_int_equal(store_put(f->s, "a\0b", 3, v, n, T0, NULL), -EINVAL);
    assert_non_null(strstr(store_last_error(f->s), "NUL"));
    assert_int_equal(store_put(f->s, "k", 1, "\xc1", 1, T0, NULL), -EINVAL);
    assert_non_null(strstr(store_last_error(f->s), "msgpack"));
    assert_int_equal(store_del(f->s, "", 0, T0, NULL), -EINVAL);
    assert_int_equal(store_del(f->s, key, STORE_KEY_MAX + 1, T0, NULL), -E2BIG);
    store_entry_t e;
    assert_int_equal(store_get(f->s, "", 0, &e), -EINVAL);
    assert_int_equal(store_put(f->s, key, STORE_KEY_MAX, v, n, T0, NULL), 0);
    /* A nil value is a value, not a delete. */
    assert_int_equal(store_put(f->s, "nil", 3, "\xc0", 1, T0, NULL), 0);
    assert_int_equal(store_get(f->s, "nil", 3, &e), 0);
    assert_int_equal(e.vlen, 1);
    store_entry_free(&e);
    assert_int_equal(store_verify(f->s), 0);
}

/* ---- map full --------------------------------------------------------------------------- */

/* Big values (overflow pages) up to a full 2 MiB map, then every one deleted, each in its own
 * transaction: puts stop short of the last pages (store.c, HEADROOM), so no delete finds the
 * map too full to commit, and the space comes back for a put. */
static void test_map_full_deletes(void **state)
{
    (void)state;
    char *d = mk_tmpdir();
    store_t *s = open_at(d, NODE, 2 << 20, GRACE);
    size_t vl = 3 + 60000;
    uint8_t *val = malloc(vl);
    val[0] = 0xc5; /* bin16, 60000 bytes */
    val[1] = 60000 >> 8;
    val[2] = 60000 & 0xff;
    memset(val + 3, 0xcd, 60000);
    char key[32];
    int i, rc = 0;
    for (i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "big/%03d", i);
        if ((rc = store_put(s, key, strlen(key), val, vl, T0, NULL)))
            break;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_true(i > 10);
    for (int k = 0; k < i; k++) {
        snprintf(key, sizeof(key), "big/%03d", k);
        rc = store_del(s, key, strlen(key), T0, NULL);
        if (rc)
            fail_msg("del %s on a full map: %d (%s)", key, rc, store_last_error(s));
    }
    assert_int_equal(store_put(s, "big/again", 9, val, vl, T0, NULL), 0);
    assert_int_equal(store_verify(s), 0);
    free(val);
    store_close(&s);
    rm_rf(d);
    free(d);
}

#define SMALL_MAP (256 * 1024) /* bytes */

static void test_map_full(void **state)
{
    char *d = mk_tmpdir();
    store_t *s = open_at(d, NODE, SMALL_MAP, GRACE);
    uint8_t val[1003];
    val[0] = 0xc5; /* bin16, 1000 bytes */
    val[1] = 1000 >> 8;
    val[2] = 1000 & 0xff;
    memset(val + 3, 0xab, 1000);
    char key[32];
    int i, rc = 0;
    for (i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "full/%05d", i);
        rc = store_put(s, key, strlen(key), val, sizeof(val), T0, NULL);
        if (rc)
            break;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_non_null(strstr(store_last_error(s), "map full"));
    int written = i;
    assert_true(written > 10);

    /* Nothing of the failed write is visible; everything before it is. */
    store_entry_t e;
    assert_int_equal(store_get(s, key, strlen(key), &e), -ENOENT);
    assert_int_equal(store_get(s, "full/00000", 10, &e), 0);
    assert_int_equal(e.vlen, sizeof(val));
    store_entry_free(&e);
    struct seen *c = calloc(1, sizeof(*c));
    assert_int_equal(store_list(s, "full/", 5, collect, c), 0);
    assert_int_equal(c->n, written);
    free(c);
    store_stats_t st;
    assert_int_equal(store_stats(s, &st), 0);
    assert_int_equal(st.entries, (uint64_t)written);
    assert_int_equal(store_verify(s), 0);

    /* A small write may still fit; then free space: delete and collect, and writes work. */
    for (int k = 0; k < written / 2; k++) {
        snprintf(key, sizeof(key), "full/%05d", k);
        rc = store_del(s, key, strlen(key), T0, NULL);
        if (rc)
            fail_msg("del %s after map full: %d (%s)", key, rc, store_last_error(s));
    }
    assert_int_equal(store_gc(s, T0 + 2 * GRACE), written / 2);
    snprintf(key, sizeof(key), "full/%05d", written);
    assert_int_equal(store_put(s, key, strlen(key), val, sizeof(val), T0, NULL), 0);
    assert_int_equal(store_verify(s), 0);
    uint64_t before[STORE_BUCKETS], after[STORE_BUCKETS];
    assert_int_equal(store_digests(s, before), 0);

    /* Reopen with the same small map: data intact. */
    store_close(&s);
    s = open_at(d, NODE, SMALL_MAP, GRACE);
    assert_int_equal(store_digests(s, after), 0);
    assert_memory_equal(before, after, sizeof(before));
    assert_int_equal(store_get(s, key, strlen(key), &e), 0);
    assert_memory_equal(e.value, val, sizeof(val));
    store_entry_free(&e);
    snprintf(key, sizeof(key), "full/%05d", written - 1);
    assert_int_equal(store_get(s, key, strlen(key), &e), 0);
    store_entry_free(&e);
    assert_int_equal(store_get(s, "full/00000", 10, &e), -ENOENT); /* deleted */
    assert_int_equal(store_stats(s, &st), 0);
    assert_int_equal(st.entries, (uint64_t)(written - written / 2 + 1));
    assert_int_equal(st.tombstones, 0);
    assert_true(st.map_used <= st.map_size);
    assert_int_equal(store_verify(s), 0);

    /* A merge batch that does not fit is all-or-nothing too. */
    store_entry_t *batch = calloc(400, sizeof(*batch));
    char(*keys)[32] = calloc(400, 32);
    for (int k = 0; k < 400; k++) {
        snprintf(keys[k], 32, "merge/%05d", k);
        batch[k] = (store_entry_t){.key = keys[k],
                                   .klen = strlen(keys[k]),
                                   .value = val,
                                   .vlen = sizeof(val),
                                   .version = hlc_make(T0, 1),
                                   .origin = NODE2};
    }
    assert_int_equal(store_merge(s, batch, 400, T0), -ENOSPC);
    assert_int_equal(store_get(s, "merge/00000", 11, &e), -ENOENT);
    assert_int_equal(store_stats(s, &st), 0);
    assert_int_equal(st.merges_applied, 0);
    assert_int_equal(store_verify(s), 0);
    free(batch);
    free(keys);
    store_close(&s);
    rm_rf(d);
    free(d);
}

/* ---- open / reopen / corruption --------------------------------------------------------- */

static void test_open_errors(void **state)
{
    store_opts_t o = {.node_id = NODE, .nosync = true};
    store_t *s = NULL;
    char *d = mk_tmpdir();
    char path[512];

    snprintf(path, sizeof(path), "%s/missing", d);
    assert_int_equal(store_open(path, &o, &s), -ENOENT);
    assert_null(s);

    snprintf(path, sizeof(path), "%s/file", d);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(store_open(path, &o, &s), -ENOTDIR); /* a file, not a directory */
    assert_null(s);
    snprintf(path, sizeof(path), "%s/file/sub", d);
    assert_int_equal(store_open(path, &o, &s), -ENOTDIR); /* under a regular file */
    assert_null(s);

    /* Unwritable even for root: procfs refuses new files. */
    int rc = store_open("/proc", &o, &s);
    assert_true(rc < 0);
    assert_null(s);

    o.node_id = 0;
    assert_int_equal(store_open(d, &o, &s), -EINVAL);
    assert_int_equal(store_open(d, NULL, &s), -EINVAL);
    assert_null(s);
    o.node_id = NODE;
    assert_int_equal(store_open(d, &o, NULL), -EINVAL);

    /* A directory holding something that is not LMDB. */
    snprintf(path, sizeof(path), "%s/junk", d);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/junk/data.mdb", d);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    char junk[8192];
    memset(junk, 0x5a, sizeof(junk));
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    close(fd);
    snprintf(path, sizeof(path), "%s/junk", d);
    rc = store_open(path, &o, &s);
    assert_true(rc < 0);
    assert_null(s);

    store_close(NULL);
    store_close(&s);
    assert_string_equal(store_last_error(NULL), "no store");
    rm_rf(d);
    free(d);
}

static void test_reopen(void **state)
{
    char *d = mk_tmpdir();
    store_t *s = open_at(d, NODE, 0, 0);
    store_entry_t out, e;
    assert_int_equal(put_str(s, "p/1", "one", T0), 0);
    assert_int_equal(put_str(s, "p/2", "two", T0), 0);
    /* A merged version ahead of the wall clock, so the persisted clock matters. */
    assert_int_equal(merge1(s, remote("p/3", "r", hlc_make(T0 + 50000, 3), NODE2), T0), 1);
    assert_int_equal(store_del(s, "p/2", 3, T0, &out), 0);
    uint64_t last = store_clock(s)->last, d1[STORE_BUCKETS], d2[STORE_BUCKETS];
    assert_int_equal(store_digests(s, d1), 0);
    store_close(&s);

    s = open_at(d, NODE, 0, 0);
    assert_get_str(s, "p/1", "one");
    assert_int_equal(store_get(s, "p/2", 3, &e), -ENOENT);
    assert_get_str(s, "p/3", "r");
    assert_int_equal(store_digests(s, d2), 0);
    assert_memory_equal(d1, d2, sizeof(d1));
    store_stats_t st;
    assert_int_equal(store_stats(s, &st), 0);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.tombstones, 1);
    /* The clock resumes where it was, even with a wall clock that went back an hour. */
    assert_true(store_clock(s)->last >= last);
    uint8_t v[8];
    size_t n = mpstr(v, "new");
    assert_int_equal(store_put(s, "p/3", 3, v, n, T0 - 3600000, &out), 0);
    assert_true(out.version > last);
    assert_get_str(s, "p/3", "new");
    assert_int_equal(store_verify(s), 0);
    store_close(&s);
    rm_rf(d);
    free(d);
}

/* Writes raw bytes as key's record, bypassing the store (a bad disk, a stray tool). */
static void corrupt(const char *dir, const char *key, const void *bytes, size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 2), 0);
    assert_int_equal(mdb_env_open(env, dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "data", 0, &dbi), 0);
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    MDB_val v = {.mv_size = len, .mv_data = (void *)bytes};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_corrupt_record(void **state)
{
    char *d = mk_tmpdir();
    store_t *s = open_at(d, NODE, 0, GRACE);
    assert_int_equal(put_str(s, "ok", "fine", T0), 0);
    assert_int_equal(put_str(s, "bad", "soon", T0), 0);
    store_close(&s);

    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\x95\x01\x01\x01\x00", 5},         /* truncated: value missing */
        {"\x95\x02\x01\x01\x00\xc0", 6},     /* unknown format */
        {"\x95\x01\x01\x00\x00\xc0", 6},     /* origin 0 */
        {"\x95\x01\x01\x01\x01\x01", 6},     /* tombstone with a value */
        {"\x95\x01\x01\x01\x04\xc0", 6},     /* unknown flag */
        {"\x95\x01\x01\x01\x00\xc0\x00", 7}, /* trailing byte */
        {"\x94\x01\x01\x01\x00", 5},         /* 4 elements */
        {"\xa3"
         "abc",
         4},                             /* not an array */
        {"", 0},                         /* empty */
        {"\x95\x01\xff\x01\x00\xc0", 6}, /* negative version */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        corrupt(d, "bad", cases[i].bytes, cases[i].len);
        s = open_at(d, NODE, 0, GRACE);
        store_entry_t e;
        assert_int_equal(store_get(s, "bad", 3, &e), -EIO);
        assert_non_null(strstr(store_last_error(s), "corrupt record"));
        assert_non_null(strstr(store_last_error(s), "bad"));
        struct seen c = {0};
        assert_int_equal(store_list(s, "", 0, collect, &c), -EIO);
        assert_int_equal(store_verify(s), -EIO);
        /* Writing over it cannot fix the digest: refused, not silently wrong. */
        assert_int_equal(put_str(s, "bad", "x", T0), -EIO);
        assert_int_equal(merge1(s, remote("bad", "x", hlc_make(T0 + 1, 0), NODE2), T0), -EIO);
        /* Other keys still work. */
        assert_get_str(s, "ok", "fine");
        assert_int_equal(put_str(s, "other", "y", T0), 0);
        assert_int_equal(store_gc(s, T0), 0); /* no tombstones: no scan */
        store_close(&s);
    }
    /* GC does scan when there are tombstones, and stops at the corrupt record. */
    s = open_at(d, NODE, 0, GRACE);
    assert_int_equal(store_del(s, "ok", 2, T0, NULL), 0);
    assert_int_equal(store_gc(s, T0 + 10 * GRACE), -EIO);
    store_close(&s);
    rm_rf(d);
    free(d);
}

/* ---- change feed ---- */

struct feedseen {
    int calls;
    size_t n;
    char keys[16][32];
    bool tomb[16];
    store_t *s; /* for the nested write */
    bool nest;
};

static void on_change(void *ctx, const store_entry_t *ch, size_t n)
{
    struct feedseen *w = ctx;
    w->calls++;
    for (size_t i = 0; i < n && w->n < 16; i++, w->n++) {
        snprintf(w->keys[w->n], sizeof(w->keys[0]), "%.*s", (int)ch[i].klen, ch[i].key);
        w->tomb[w->n] = ch[i].tombstone;
        assert_true(ch[i].tombstone == (ch[i].value == NULL));
    }
    if (w->nest) { /* a watcher that writes: its own change is delivered, ours stays intact */
        w->nest = false;
        assert_int_equal(put_str(w->s, "other/nested", "n", T0 + 50), 0);
        assert_string_equal(w->keys[0], "res/a");
    }
}

static void test_change_feed(void **state)
{
    struct fix *f = *state;
    struct feedseen res = {.s = f->s}, all = {.s = f->s}, other = {.s = f->s};
    int wr = store_watch(f->s, "res/", 4, on_change, &res);
    int wa = store_watch(f->s, NULL, 0, on_change, &all);
    int wo = store_watch(f->s, "other/", 6, on_change, &other);
    assert_true(wr > 0 && wa > 0 && wo > 0 && wr != wa);

    /* A local put reaches the matching watchers only, once each. */
    assert_int_equal(put_str(f->s, "res/a", "1", T0), 0);
    assert_int_equal(res.calls, 1);
    assert_string_equal(res.keys[0], "res/a");
    assert_false(res.tomb[0]);
    assert_int_equal(all.calls, 1);
    assert_int_equal(other.calls, 0);

    /* A delete is a tombstone; deleting what is not there reports nothing. */
    assert_int_equal(store_del(f->s, "res/a", 5, T0 + 1, NULL), 0);
    assert_int_equal(res.calls, 2);
    assert_true(res.tomb[1]);
    assert_int_equal(store_del(f->s, "res/a", 5, T0 + 2, NULL), -ENOENT);
    assert_int_equal(res.calls, 2);

    /* A merge: one call per watcher for the whole batch, winners only. */
    store_entry_t batch[3] = {
        remote("res/b", "x", hlc_make(T0 + 10, 0), NODE2),
        remote("res/c", "y", hlc_make(T0 + 10, 0), NODE2),
        remote("res/b", "old", hlc_make(T0 + 5, 0), NODE2), /* loses to the first */
    };
    assert_int_equal(store_merge(f->s, batch, 3, T0 + 20), 2);
    assert_int_equal(res.calls, 3);
    assert_int_equal(res.n, 4);
    assert_string_equal(res.keys[2], "res/b");
    assert_string_equal(res.keys[3], "res/c");
    /* The same batch again changes nothing and reports nothing. */
    assert_int_equal(store_merge(f->s, batch, 3, T0 + 21), 0);
    assert_int_equal(res.calls, 3);

    /* A batch of local puts is one call. */
    uint8_t v1[8], v2[8];
    size_t l1 = mpstr(v1, "1"), l2 = mpstr(v2, "2");
    store_entry_t puts[2] = {{.key = "res/d", .klen = 5, .value = v1, .vlen = l1},
                             {.key = "zzz", .klen = 3, .value = v2, .vlen = l2}};
    assert_int_equal(store_put_batch(f->s, puts, 2, T0 + 30), 0);
    assert_int_equal(res.calls, 4);
    assert_string_equal(res.keys[4], "res/d");
    assert_string_equal(all.keys[all.n - 1], "zzz");

    /* A watcher that writes from its callback. */
    res.nest = true;
    res.n = 0;
    assert_int_equal(put_str(f->s, "res/a", "again", T0 + 40), 0);
    assert_int_equal(other.calls, 1);
    assert_string_equal(other.keys[0], "other/nested");
    assert_get_str(f->s, "other/nested", "n");

    /* Unwatched: silent. Bad arguments and a full table are refused. */
    store_unwatch(f->s, wr);
    int before = res.calls;
    assert_int_equal(put_str(f->s, "res/e", "1", T0 + 60), 0);
    assert_int_equal(res.calls, before);
    assert_int_equal(store_watch(f->s, "x", 1, NULL, NULL), -EINVAL);
    int ids[STORE_WATCH_MAX];
    int got = 0;
    for (int i = 0; i < STORE_WATCH_MAX; i++) {
        int id = store_watch(f->s, "q", 1, on_change, &other);
        if (id < 0) {
            assert_int_equal(id, -ENOSPC);
            break;
        }
        ids[got++] = id;
    }
    assert_int_equal(got, STORE_WATCH_MAX - 2); /* two watchers still registered */
    for (int i = 0; i < got; i++)
        store_unwatch(f->s, ids[i]);
    store_unwatch(f->s, wa);
    store_unwatch(f->s, wo);
}

/* ---- signed entries ----------------------------------------------------------------------- */

/* A toy signer and guard: keys under "p/" are signed with a byte pattern made of the entry's
 * version (enough to tell one signature from another), and accepted only when the pattern
 * matches; the guard also counts its calls and records which keys it saw. */
struct toy {
    int signs, checks;
    char seen[16][32];
};

static void toy_sig(const store_entry_t *e, uint8_t sig[STORE_SIG_BYTES])
{
    for (int i = 0; i < STORE_SIG_BYTES; i++)
        sig[i] = (uint8_t)(e->version >> (8 * (i % 8))) ^ (uint8_t)e->klen ^ (e->tombstone ? 0x5a : 0);
}

static bool toy_sign(void *ctx, const store_entry_t *e, uint8_t sig[STORE_SIG_BYTES])
{
    struct toy *t = ctx;
    if (e->klen < 2 || memcmp(e->key, "p/", 2))
        return false;
    t->signs++;
    toy_sig(e, sig);
    return true;
}

static bool toy_wants(void *ctx, const char *key, size_t klen)
{
    (void)ctx;
    return klen >= 2 && memcmp(key, "p/", 2) == 0;
}

static int toy_check(void *ctx, const store_entry_t *e)
{
    struct toy *t = ctx;
    uint8_t want[STORE_SIG_BYTES];
    if (t->checks < 16)
        snprintf(t->seen[t->checks], sizeof(t->seen[0]), "%.*s", (int)e->klen, e->key);
    t->checks++;
    toy_sig(e, want);
    return e->has_sig && memcmp(e->sig, want, sizeof(want)) == 0 ? 0 : -EACCES;
}

static int find_cb(const store_entry_t *e, void *ctx)
{
    store_entry_t *out = ctx;
    if (e->klen == out->klen && memcmp(e->key, out->key, e->klen) == 0) {
        out->has_sig = e->has_sig;
        memcpy(out->sig, e->sig, STORE_SIG_BYTES);
        out->version = e->version;
        out->origin = e->origin;
        out->tombstone = e->tombstone;
        return 1;
    }
    return 0;
}

/* The exported entry of key (tombstones too). */
static store_entry_t exported(store_t *s, const char *key)
{
    uint8_t all[STORE_BUCKETS / 8];
    memset(all, 0xff, sizeof(all));
    store_entry_t e = {.key = (char *)key, .klen = strlen(key)};
    assert_int_equal(store_export(s, all, find_cb, &e), 1);
    return e;
}

static void test_record_sig_codec(void **state)
{
    (void)state;
    uint8_t sig[STORE_SIG_BYTES], buf[STORE_RECORD_MAX];
    for (int i = 0; i < STORE_SIG_BYTES; i++)
        sig[i] = (uint8_t)i;
    store_record_t r = {.version = 9, .origin = 3, .value = (const uint8_t *)"\xa1x", .vlen = 2,
                        .sig = sig}, d;
    size_t n = store_record_encode(&r, buf, sizeof(buf));
    assert_true(n > STORE_SIG_BYTES);
    assert_int_equal(store_record_decode(buf, n, &d, NULL), 0);
    assert_non_null(d.sig);
    assert_memory_equal(d.sig, sig, sizeof(sig));
    assert_int_equal(d.vlen, 2);
    /* a truncated signature, and an unsigned record's 5 elements */
    const char *why = NULL;
    assert_int_equal(store_record_decode(buf, n - 1, &d, &why), -EBADMSG);
    assert_non_null(why);
    r.sig = NULL;
    n = store_record_encode(&r, buf, sizeof(buf));
    assert_int_equal(store_record_decode(buf, n, &d, NULL), 0);
    assert_null(d.sig);
    /* a sixth element that is not a 64-byte bin */
    static const uint8_t bad[] = {0x96, 0x01, 0x09, 0x03, 0x00, 0xa1, 'x', 0xa1, 'y'};
    assert_int_equal(store_record_decode(bad, sizeof(bad), &d, &why), -EBADMSG);
    assert_string_equal(why, "signature is not 64 bytes of bin");
}

static void test_signed_local_writes(void **state)
{
    struct fix *f = *state;
    struct toy t = {0};
    store_set_signer(f->s, toy_sign, &t);
    uint8_t v[40];
    size_t n = mpstr(v, "alice");
    store_entry_t out;
    assert_int_equal(store_put(f->s, "p/u", 3, v, n, T0, &out), 0);
    assert_true(out.has_sig);
    uint8_t want[STORE_SIG_BYTES];
    store_entry_t view = {.key = "p/u", .klen = 3, .version = out.version};
    toy_sig(&view, want);
    assert_memory_equal(out.sig, want, sizeof(want));
    /* get and export carry it, and it survives a reopen (it is in the record) */
    store_entry_t g;
    assert_int_equal(store_get(f->s, "p/u", 3, &g), 0);
    assert_true(g.has_sig);
    assert_memory_equal(g.sig, want, sizeof(want));
    store_entry_free(&g);
    store_close(&f->s);
    f->s = open_at(f->dir, NODE, 0, 0);
    store_entry_t x = exported(f->s, "p/u");
    assert_true(x.has_sig);
    assert_memory_equal(x.sig, want, sizeof(want));
    assert_int_equal(store_verify(f->s), 0);
    /* other keys are not signed; a delete of a signed key is */
    store_set_signer(f->s, toy_sign, &t);
    assert_int_equal(put_str(f->s, "q/x", "1", T0 + 1), 0);
    assert_false(exported(f->s, "q/x").has_sig);
    assert_int_equal(store_del(f->s, "p/u", 3, T0 + 2, &out), 0);
    assert_true(out.has_sig);
    x = exported(f->s, "p/u");
    assert_true(x.tombstone && x.has_sig);
    assert_memory_equal(x.sig, out.sig, STORE_SIG_BYTES);
    assert_int_equal(t.signs, 2);
}

static void test_guarded_merge(void **state)
{
    struct fix *f = *state;
    struct toy t = {0};
    store_set_guard(f->s, toy_wants, toy_check, &t);
    store_entry_t good = remote("p/good", "v", hlc_make(T0, 0), NODE2);
    toy_sig(&good, good.sig);
    good.has_sig = true;
    store_entry_t forged = remote("p/forged", "v", hlc_make(T0, 1), NODE2);
    memset(forged.sig, 0x42, sizeof(forged.sig));
    forged.has_sig = true;
    store_entry_t unsigned_ = remote("p/unsigned", "v", hlc_make(T0, 2), NODE2);
    store_entry_t free_ = remote("q/free", "v", hlc_make(T0, 3), NODE2); /* not guarded */
    store_entry_t batch[4] = {good, forged, unsigned_, free_};
    assert_int_equal(store_merge(f->s, batch, 4, T0), 2);
    assert_get_str(f->s, "p/good", "v");
    assert_get_str(f->s, "q/free", "v");
    store_entry_t e;
    assert_int_equal(store_get(f->s, "p/forged", 8, &e), -ENOENT);
    assert_int_equal(store_get(f->s, "p/unsigned", 10, &e), -ENOENT);
    store_stats_t st;
    assert_int_equal(store_stats(f->s, &st), 0);
    assert_int_equal(st.merges_unauthorized, 2);
    assert_int_equal(t.checks, 3); /* the unguarded key was never shown to the guard */
    /* a duplicate or an older entry is ignored without asking the guard */
    assert_int_equal(merge1(f->s, good, T0), 0);
    store_entry_t older = remote("p/good", "old", hlc_make(T0 - 5, 0), NODE2);
    assert_int_equal(merge1(f->s, older, T0), 0);
    assert_int_equal(t.checks, 3);
    assert_get_str(f->s, "p/good", "v");
    /* a signed entry merged keeps its signature (a third replica can check it again) */
    store_entry_t x = exported(f->s, "p/good");
    assert_true(x.has_sig);
    assert_memory_equal(x.sig, good.sig, STORE_SIG_BYTES);
    /* without a guard everything merges again (a mesh before signing) */
    store_set_guard(f->s, NULL, NULL, NULL);
    assert_int_equal(merge1(f->s, forged, T0), 1);
}

/* The guard reads the store for what came earlier in the same batch: guarded entries are
 * merged after the rest of it. */
struct order_ctx {
    store_t *s;
};

static int needs_key_check(void *ctx, const store_entry_t *e)
{
    struct order_ctx *o = ctx;
    store_entry_t k;
    (void)e;
    if (store_get(o->s, "k/signer", 8, &k))
        return -EACCES;
    store_entry_free(&k);
    return 0;
}

static void test_guarded_merge_order(void **state)
{
    struct fix *f = *state;
    struct order_ctx o = {.s = f->s};
    store_set_guard(f->s, toy_wants, needs_key_check, &o);
    store_entry_t b[2] = {remote("p/rec", "v", hlc_make(T0, 0), NODE2),
                          remote("k/signer", "key", hlc_make(T0, 1), NODE2)};
    assert_int_equal(store_merge(f->s, b, 2, T0), 2);
    assert_get_str(f->s, "p/rec", "v");
}

static void test_resign(void **state)
{
    struct fix *f = *state;
    struct toy t = {0};
    store_entry_t r = remote("p/old", "v", hlc_make(T0, 7), NODE2);
    assert_int_equal(merge1(f->s, r, T0), 1);
    store_entry_t tomb = remote("p/gone", NULL, hlc_make(T0, 8), NODE2);
    assert_int_equal(merge1(f->s, tomb, T0), 1);
    store_set_signer(f->s, toy_sign, &t);
    store_entry_t out;
    assert_int_equal(store_resign(f->s, "p/old", 5, T0, &out), 0);
    assert_int_equal(out.version, hlc_make(T0, 8));
    assert_int_equal(out.origin, NODE);
    assert_true(out.has_sig);
    assert_non_null(out.value);
    free(out.value);
    assert_get_str(f->s, "p/old", "v");
    assert_int_equal(store_resign(f->s, "p/gone", 6, T0, &out), 0);
    assert_true(out.tombstone && out.has_sig && out.value == NULL);
    assert_true(exported(f->s, "p/gone").tombstone);
    assert_int_equal(store_resign(f->s, "p/none", 6, T0, &out), -ENOENT);
    /* a later write elsewhere (a millisecond on) still wins over the re-signed copy */
    store_entry_t later = remote("p/old", "new", hlc_make(T0 + 1, 0), NODE2);
    assert_int_equal(merge1(f->s, later, T0 + 1), 1);
    assert_get_str(f->s, "p/old", "new");
    /* and a local write after it is newer than the re-signed version */
    assert_int_equal(store_resign(f->s, "p/old", 5, T0, &out), 0);
    free(out.value);
    assert_int_equal(store_put(f->s, "p/old", 5, (const uint8_t *)"\xa1x", 2, T0, &out), 0);
    assert_true(out.version > hlc_make(T0 + 1, 1));
    assert_int_equal(store_verify(f->s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_tombstone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_reentry_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_refusals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_merge_commutative_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_digests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hashes_pinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_bucket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_anti_entropy_roundtrip, setup, teardown),
        cmocka_unit_test(test_gc),
        cmocka_unit_test(test_merge_expired_tombstone),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test(test_map_full), cmocka_unit_test(test_map_full_deletes),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_reopen),
        cmocka_unit_test(test_corrupt_record),
        cmocka_unit_test_setup_teardown(test_change_feed, setup, teardown),
        cmocka_unit_test(test_record_sig_codec),
        cmocka_unit_test_setup_teardown(test_signed_local_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guarded_merge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guarded_merge_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resign, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
