/* Anti-entropy (gossip/antientropy.h) between two real stores, driven in memory: one exchange
 * makes different replicas (unique keys, overlaps, tombstones, an equal-version conflict)
 * converge; equal replicas exchange one DIGEST and nothing else; replies larger than
 * AE_CHUNK_BYTES span several ENTRIES messages and still converge; malformed messages of every
 * kind are refused whole, merge nothing and are counted. */
#include "common/mp.h"
#include "gossip/antientropy.h"
#include "storage/store.h"

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define T0     1700000000000ull /* ms: a fixed "now" */
#define NODE_A 0xa1ull
#define NODE_B 0xb2ull      /* > NODE_A: wins ties on version */
#define NOW    (T0 + 10000) /* ms: when messages are handled */

/* ---- fixture: two stores in temp dirs ---------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

struct fix {
    char dir_a[64], dir_b[64];
    store_t *a, *b;
    ae_stats_t st_a, st_b;
};

static store_t *open_store(char *dir, uint64_t node)
{
    strcpy(dir, "/tmp/popmesh-test-ae-XXXXXX");
    assert_non_null(mkdtemp(dir));
    store_opts_t o = {.node_id = node, .nosync = true};
    store_t *s = NULL;
    assert_int_equal(store_open(dir, &o, &s), 0);
    return s;
}

static int setup(void **state)
{
    struct fix *f = calloc(1, sizeof(*f));
    f->a = open_store(f->dir_a, NODE_A);
    f->b = open_store(f->dir_b, NODE_B);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    store_close(&f->a);
    store_close(&f->b);
    nftw(f->dir_a, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    nftw(f->dir_b, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* A msgpack str value holding text. */
static void put_str(store_t *s, const char *key, const char *text, uint64_t now, store_entry_t *out)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    mpw_str(&pk, text);
    assert_int_equal(store_put(s, key, strlen(key), sb.data, sb.size, now, out), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* The live value of key as the text of its msgpack str, or NULL if missing or a tombstone. */
static char *get_str(store_t *s, const char *key)
{
    store_entry_t e;
    if (store_get(s, key, strlen(key), &e) != 0)
        return NULL;
    mpr_t r;
    const char *str;
    uint32_t n;
    mpr_init(&r, e.value, e.vlen);
    assert_int_equal(mpr_str(&r, &str, &n), 0);
    char *copy = strndup(str, n);
    store_entry_free(&e);
    return copy;
}

static void assert_value(store_t *s, const char *key, const char *want)
{
    char *got = get_str(s, key);
    if (!want) {
        if (got)
            fail_msg("%s: expected missing, found \"%s\"", key, got);
        return;
    }
    if (!got)
        fail_msg("%s: expected \"%s\", found nothing", key, want);
    assert_string_equal(got, want);
    free(got);
}

/* Every entry of a store, tombstones included, as owned copies sorted by key. */
struct snap_entry {
    char *key;
    size_t klen;
    uint8_t *value;
    size_t vlen;
    uint64_t version, origin;
    bool tombstone;
};

struct snap {
    struct snap_entry *v;
    size_t n, cap;
};

static int snap_add(const store_entry_t *e, void *ctx)
{
    struct snap *sn = ctx;
    if (sn->n == sn->cap) {
        sn->cap = sn->cap ? sn->cap * 2 : 64;
        sn->v = realloc(sn->v, sn->cap * sizeof(*sn->v));
    }
    struct snap_entry *c = &sn->v[sn->n++];
    c->key = malloc(e->klen);
    memcpy(c->key, e->key, e->klen);
    c->klen = e->klen;
    c->value = e->vlen ? malloc(e->vlen) : NULL;
    if (e->vlen)
        memcpy(c->value, e->value, e->vlen);
    c->vlen = e->vlen;
    c->version = e->version;
    c->origin = e->origin;
    c->tombstone = e->tombstone;
    return 0;
}

static int snap_cmp(const void *x, const void *y)
{
    const struct snap_entry *a = x, *b = y;
    size_t n = a->klen < b->klen ? a->klen : b->klen;
    int c = memcmp(a->key, b->key, n);
    return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

static void snapshot(store_t *s, struct snap *sn)
{
    uint8_t all[STORE_BUCKETS / 8];
    memset(all, 0xff, sizeof(all));
    memset(sn, 0, sizeof(*sn));
    assert_int_equal(store_export(s, all, snap_add, sn), 0);
    if (sn->n)
        qsort(sn->v, sn->n, sizeof(*sn->v), snap_cmp);
}

static void snap_free(struct snap *sn)
{
    for (size_t i = 0; i < sn->n; i++) {
        free(sn->v[i].key);
        free(sn->v[i].value);
    }
    free(sn->v);
}

static void assert_same_contents(store_t *a, store_t *b)
{
    uint64_t da[STORE_BUCKETS], db[STORE_BUCKETS];
    assert_int_equal(store_digests(a, da), 0);
    assert_int_equal(store_digests(b, db), 0);
    assert_memory_equal(da, db, sizeof(da));
    struct snap sa, sb;
    snapshot(a, &sa);
    snapshot(b, &sb);
    assert_int_equal(sa.n, sb.n);
    for (size_t i = 0; i < sa.n; i++) {
        const struct snap_entry *x = &sa.v[i], *y = &sb.v[i];
        if (x->klen != y->klen || memcmp(x->key, y->key, x->klen) != 0)
            fail_msg("entry %zu: key %.*s vs %.*s", i, (int)x->klen, x->key, (int)y->klen, y->key);
        assert_true(x->version == y->version);
        assert_true(x->origin == y->origin);
        assert_int_equal(x->tombstone, y->tombstone);
        assert_int_equal(x->vlen, y->vlen);
        if (x->vlen)
            assert_memory_equal(x->value, y->value, x->vlen);
    }
    snap_free(&sa);
    snap_free(&sb);
    assert_int_equal(store_verify(a), 0);
    assert_int_equal(store_verify(b), 0);
}

static void assert_digests_equal(store_t *s, const uint64_t before[STORE_BUCKETS])
{
    uint64_t now[STORE_BUCKETS];
    assert_int_equal(store_digests(s, now), 0);
    assert_memory_equal(now, before, sizeof(now));
}

/* Messages in flight to one side, in order. */
struct queue {
    struct msg {
        uint8_t *buf;
        size_t len;
    } * v;
    size_t head, n, cap;
    size_t entries_msgs, entries_want; /* ENTRIES messages queued, and those with want=true */
};

static void queue_push(void *ctx, const uint8_t *buf, size_t len)
{
    struct queue *q = ctx;
    if (q->n == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 8;
        q->v = realloc(q->v, q->cap * sizeof(*q->v));
    }
    q->v[q->n].buf = malloc(len);
    memcpy(q->v[q->n].buf, buf, len);
    q->v[q->n].len = len;
    q->n++;
    /* Peek at the header: [1, type, seq, buckets, want, ...] */
    mpr_t r;
    uint32_t count, bl;
    uint64_t version, type, seq;
    const uint8_t *b;
    bool want;
    mpr_init(&r, buf, len);
    assert_int_equal(mpr_array(&r, &count), 0);
    assert_int_equal(mpr_uint(&r, &version), 0);
    assert_int_equal(mpr_uint(&r, &type), 0);
    assert_int_equal(mpr_uint(&r, &seq), 0);
    if (type == AE_ENTRIES) {
        assert_int_equal(mpr_bin(&r, &b, &bl), 0);
        assert_int_equal(mpr_bool(&r, &want), 0);
        q->entries_msgs++;
        q->entries_want += want;
        /* A message stays near its chunk size: one entry may go past it. */
        assert_true(len <= AE_CHUNK_BYTES + STORE_VALUE_MAX + STORE_KEY_MAX + 64);
    }
}

static void queue_free(struct queue *q)
{
    for (size_t i = q->head; i < q->n; i++)
        free(q->v[i].buf);
    free(q->v);
    memset(q, 0, sizeof(*q));
}

static void send_forbidden(void *ctx, const uint8_t *buf, size_t len)
{
    (*(int *)ctx)++;
}

/* One anti-entropy round initiated by a: a's DIGEST to b, then every reply delivered to the
 * other side until nothing is in flight. Messages are queued, never handled from inside a
 * send callback (the sender is in the middle of a store_export then). */
static void exchange(struct fix *f, struct queue *to_a, struct queue *to_b)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    assert_int_equal(ae_digest_msg(f->a, 1, &sb), 0);
    queue_push(to_b, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    int rounds = 0;
    while (to_a->head < to_a->n || to_b->head < to_b->n) {
        if (++rounds > 1000) /* one round trip and a few chunks: this never ends */
            fail_msg("exchange did not stop after %d rounds", rounds);
        if (to_b->head < to_b->n) {
            struct msg *m = &to_b->v[to_b->head++];
            assert_int_equal(ae_handle(f->b, m->buf, m->len, NOW, queue_push, to_a, &f->st_b), 0);
            free(m->buf);
        }
        if (to_a->head < to_a->n) {
            struct msg *m = &to_a->v[to_a->head++];
            assert_int_equal(ae_handle(f->a, m->buf, m->len, NOW, queue_push, to_b, &f->st_a), 0);
            free(m->buf);
        }
    }
}

/* ---- convergence ------------------------------------------------------------------------ */

static void test_converge(void **state)
{
    struct fix *f = *state;
    store_entry_t e;
    char key[32], val[64];
    /* Keys only A has, only B has, and the same entries on both. */
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "a/%d", i);
        snprintf(val, sizeof(val), "from a %d", i);
        put_str(f->a, key, val, T0, NULL);
        snprintf(key, sizeof(key), "b/%d", i);
        snprintf(val, sizeof(val), "from b %d", i);
        put_str(f->b, key, val, T0, NULL);
    }
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof(key), "c/%d", i);
        put_str(f->a, key, "common", T0, NULL);
        assert_int_equal(store_get(f->a, key, strlen(key), &e), 0);
        assert_int_equal(store_merge(f->b, &e, 1, T0), 1);
        store_entry_free(&e);
    }
    /* The same key written on both, B's later: B's value wins everywhere. */
    put_str(f->a, "o/1", "older", T0 + 1, NULL);
    put_str(f->b, "o/1", "newer", T0 + 5, NULL);
    /* A tombstone beats the live value B still has; a tombstone only B knows. */
    put_str(f->a, "t/1", "doomed", T0 + 1, NULL);
    assert_int_equal(store_get(f->a, "t/1", 3, &e), 0);
    assert_int_equal(store_merge(f->b, &e, 1, T0 + 1), 1);
    store_entry_free(&e);
    assert_int_equal(store_del(f->a, "t/1", 3, T0 + 2, NULL), 0);
    put_str(f->b, "t/2", "short-lived", T0 + 1, NULL);
    assert_int_equal(store_del(f->b, "t/2", 3, T0 + 2, NULL), 0);
    /* A conflict: the same version written by two origins; the higher origin (B) wins. */
    store_entry_t ea, eb;
    put_str(f->a, "x/conflict", "a's", T0 + 1000, &ea);
    put_str(f->b, "x/conflict", "b's", T0 + 1000, &eb);
    assert_true(ea.version == eb.version);
    assert_true(ea.origin == NODE_A && eb.origin == NODE_B);

    struct queue to_a = {0}, to_b = {0};
    exchange(f, &to_a, &to_b);
    assert_same_contents(f->a, f->b);
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof(key), "b/%d", i);
        snprintf(val, sizeof(val), "from b %d", i);
        assert_value(f->a, key, val);
        snprintf(key, sizeof(key), "a/%d", i);
        snprintf(val, sizeof(val), "from a %d", i);
        assert_value(f->b, key, val);
    }
    assert_value(f->a, "c/3", "common");
    assert_value(f->a, "o/1", "newer");
    assert_value(f->b, "o/1", "newer");
    assert_value(f->a, "t/1", NULL);
    assert_value(f->b, "t/1", NULL);
    assert_value(f->a, "t/2", NULL);
    assert_value(f->a, "x/conflict", "b's");
    assert_value(f->b, "x/conflict", "b's");
    store_stats_t ss;
    assert_int_equal(store_stats(f->a, &ss), 0);
    assert_int_equal(ss.tombstones, 2);
    assert_int_equal(store_stats(f->b, &ss), 0);
    assert_int_equal(ss.tombstones, 2);

    assert_int_equal(f->st_b.digests_received, 1);
    assert_int_equal(f->st_b.digests_equal, 0);
    assert_true(f->st_b.entries_sent > 0 && f->st_a.entries_sent > 0);
    assert_true(f->st_a.entries_applied > 0 && f->st_b.entries_applied > 0);
    assert_int_equal(f->st_a.entries_received, f->st_b.entries_sent);
    assert_int_equal(f->st_b.entries_received, f->st_a.entries_sent);
    assert_int_equal(f->st_a.malformed + f->st_b.malformed, 0);
    /* B asked (want=true), A answered (want=false), and it stopped there. */
    assert_true(to_a.entries_msgs >= 1);
    assert_int_equal(to_a.entries_want, 1);
    assert_int_equal(to_b.entries_want, 0);
    queue_free(&to_a);
    queue_free(&to_b);

    /* A second round finds nothing to do: one DIGEST, no reply. */
    exchange(f, &to_a, &to_b);
    assert_int_equal(to_a.n, 0);
    assert_int_equal(to_b.n, 1);
    assert_int_equal(f->st_b.digests_equal, 1);
    queue_free(&to_a);
    queue_free(&to_b);
}

static void test_equal_stores_silent(void **state)
{
    struct fix *f = *state;
    struct queue to_a = {0}, to_b = {0};
    /* Two empty stores. */
    exchange(f, &to_a, &to_b);
    assert_int_equal(to_a.n, 0);
    assert_int_equal(f->st_b.digests_equal, 1);
    queue_free(&to_a);
    queue_free(&to_b);
    /* The same entries reached both by other means. */
    for (int i = 0; i < 50; i++) {
        char key[16];
        store_entry_t e;
        snprintf(key, sizeof(key), "k/%d", i);
        put_str(f->a, key, "v", T0, NULL);
        assert_int_equal(store_get(f->a, key, strlen(key), &e), 0);
        assert_int_equal(store_merge(f->b, &e, 1, T0), 1);
        store_entry_free(&e);
    }
    exchange(f, &to_a, &to_b);
    assert_int_equal(to_a.n, 0);
    assert_int_equal(f->st_b.digests_equal, 2);
    assert_int_equal(f->st_b.entries_sent, 0);
    queue_free(&to_a);
    queue_free(&to_b);
    assert_same_contents(f->a, f->b);
}

/* A reply too big for one ENTRIES message: chunked, only the first asks back, converges. */
static void test_chunked(void **state)
{
    struct fix *f = *state;
    enum { PER_SIDE = 3000, VALUE_LEN = 200 };
    store_entry_t *es = calloc(PER_SIDE, sizeof(*es));
    char(*keys)[16] = calloc(PER_SIDE, 16);
    uint8_t value[VALUE_LEN + 2];
    value[0] = 0xd9; /* str8 */
    value[1] = VALUE_LEN;
    for (int side = 0; side < 2; side++) {
        /* A: k/0..k/2999, B: k/1000..k/3999; 2000 keys written on both. */
        for (int i = 0; i < PER_SIDE; i++) {
            int k = i + side * 1000;
            es[i].klen = (size_t)snprintf(keys[i], 16, "k/%05d", k);
            es[i].key = keys[i];
            memset(value + 2, 'a' + (k + side) % 26, VALUE_LEN);
            es[i].value = malloc(sizeof(value));
            memcpy(es[i].value, value, sizeof(value));
            es[i].vlen = sizeof(value);
        }
        assert_int_equal(store_put_batch(side ? f->b : f->a, es, PER_SIDE, T0), 0);
        for (int i = 0; i < PER_SIDE; i++)
            free(es[i].value);
    }
    free(es);
    free(keys);

    struct queue to_a = {0}, to_b = {0};
    exchange(f, &to_a, &to_b);
    assert_true(to_a.entries_msgs > 1); /* B's reply did not fit one message */
    assert_true(to_b.entries_msgs > 1);
    assert_int_equal(to_a.entries_want, 1);
    assert_int_equal(to_b.entries_want, 0);
    assert_int_equal(f->st_b.entries_sent, PER_SIDE);
    store_stats_t ss;
    assert_int_equal(store_stats(f->a, &ss), 0);
    assert_int_equal(ss.entries, PER_SIDE + 1000);
    assert_same_contents(f->a, f->b);
    queue_free(&to_a);
    queue_free(&to_b);
}

/* ---- malformed messages ----------------------------------------------------------------- */

/* msg must be refused as malformed, counted, with nothing sent and nothing merged. */
static void expect_bad(store_t *s, const void *msg, size_t len, ae_stats_t *st, const char *what)
{
    uint64_t before[STORE_BUCKETS];
    store_stats_t ss0, ss1;
    assert_int_equal(store_digests(s, before), 0);
    assert_int_equal(store_stats(s, &ss0), 0);
    uint64_t malformed = st->malformed;
    int sent = 0;
    uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any overread */
    memcpy(copy, msg, len);
    int rc = ae_handle(s, copy, len, NOW, send_forbidden, &sent, st);
    free(copy);
    if (rc != -EBADMSG)
        fail_msg("%s: ae_handle returned %d, not -EBADMSG", what, rc);
    assert_int_equal(st->malformed, malformed + 1);
    assert_int_equal(sent, 0);
    assert_digests_equal(s, before);
    assert_int_equal(store_stats(s, &ss1), 0);
    assert_true(ss1.merges_applied == ss0.merges_applied);
}

/* An ENTRIES message with each header part chosen; entries are packed, then raw tail bytes. */
struct entries_spec {
    uint32_t elements, version, type;
    uint32_t buckets_len;
    int want;          /* 0, 1, or -1 for a nil */
    uint32_t declared; /* entries count in the array header */
};

static const struct entries_spec good_spec = {6, AE_VERSION, AE_ENTRIES, STORE_BUCKETS / 8, 0, 0};

static void pack_entries_msg(msgpack_sbuffer *sb, const struct entries_spec *m,
                             const store_entry_t *es, size_t n, const void *tail, size_t tlen)
{
    msgpack_packer pk;
    uint8_t buckets[STORE_BUCKETS / 8 + 1];
    memset(buckets, 0xff, sizeof(buckets));
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, m->elements);
    msgpack_pack_uint32(&pk, m->version);
    msgpack_pack_uint32(&pk, m->type);
    msgpack_pack_uint64(&pk, 9);
    mpw_bin(&pk, buckets, m->buckets_len);
    if (m->want < 0)
        msgpack_pack_nil(&pk);
    else if (m->want)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    msgpack_pack_array(&pk, m->declared);
    for (size_t i = 0; i < n; i++)
        ae_entry_pack(&pk, &es[i]);
    if (tlen)
        msgpack_sbuffer_write(sb, tail, tlen);
}

static void pack_digest_msg(msgpack_sbuffer *sb, uint32_t elements, uint32_t version, uint32_t type,
                            uint32_t dlen)
{
    msgpack_packer pk;
    uint8_t *raw = calloc(1, dlen + 1);
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, elements);
    msgpack_pack_uint32(&pk, version);
    msgpack_pack_uint32(&pk, type);
    msgpack_pack_uint64(&pk, 3);
    mpw_bin(&pk, raw, dlen);
    free(raw);
}

static void test_malformed(void **state)
{
    struct fix *f = *state;
    char key[16];
    for (int i = 0; i < 30; i++) {
        snprintf(key, sizeof(key), "a/%d", i);
        put_str(f->a, key, "aaaa", T0, NULL);
        snprintf(key, sizeof(key), "b/%d", i);
        put_str(f->b, key, "bbbb", T0, NULL);
    }
    assert_int_equal(store_del(f->b, "b/7", 3, T0 + 1, NULL), 0);

    /* Every truncation of a valid DIGEST. */
    msgpack_sbuffer digest;
    msgpack_sbuffer_init(&digest);
    assert_int_equal(ae_digest_msg(f->a, 5, &digest), 0);
    for (size_t len = 0; len < digest.size; len++)
        expect_bad(f->b, digest.data, len, &f->st_b, "truncated DIGEST");

    /* A valid ENTRIES (B's answer to that DIGEST), and every truncation of it. */
    struct queue to_a = {0};
    assert_int_equal(
        ae_handle(f->b, (uint8_t *)digest.data, digest.size, NOW, queue_push, &to_a, &f->st_b), 0);
    msgpack_sbuffer_destroy(&digest);
    assert_int_equal(to_a.n, 1);
    const struct msg *entries = &to_a.v[0];
    for (size_t len = 0; len < entries->len; len++)
        expect_bad(f->a, entries->buf, len, &f->st_a, "truncated ENTRIES");
    /* The whole message does merge: the refusals above were not for lack of news. */
    uint64_t before[STORE_BUCKETS], after[STORE_BUCKETS];
    assert_int_equal(store_digests(f->a, before), 0);
    int sent = 0;
    assert_int_equal(
        ae_handle(f->a, entries->buf, entries->len, NOW, send_forbidden, &sent, &f->st_a), 0);
    assert_int_equal(store_digests(f->a, after), 0);
    assert_memory_not_equal(before, after, sizeof(before));
    assert_int_equal(sent, 1); /* want=true: A answered */
    queue_free(&to_a);

    /* DIGEST: wrong version, type, element count, digest length, trailing byte. */
    msgpack_sbuffer sb;
    static const struct {
        uint32_t elements, version, type, dlen;
    } digests[] = {
        {4, 2, AE_DIGEST, STORE_BUCKETS * 8},
        {4, 0, AE_DIGEST, STORE_BUCKETS * 8},
        {4, AE_VERSION, 34, STORE_BUCKETS * 8},
        {4, AE_VERSION, AE_ENTRIES, STORE_BUCKETS * 8},
        {5, AE_VERSION, AE_DIGEST, STORE_BUCKETS * 8},
        {3, AE_VERSION, AE_DIGEST, STORE_BUCKETS * 8},
        {4, AE_VERSION, AE_DIGEST, STORE_BUCKETS * 8 - 1},
        {4, AE_VERSION, AE_DIGEST, STORE_BUCKETS * 8 + 1},
        {4, AE_VERSION, AE_DIGEST, STORE_BUCKETS * 4},
        {4, AE_VERSION, AE_DIGEST, 0},
    };
    for (size_t i = 0; i < sizeof(digests) / sizeof(digests[0]); i++) {
        pack_digest_msg(&sb, digests[i].elements, digests[i].version, digests[i].type,
                        digests[i].dlen);
        expect_bad(f->b, sb.data, sb.size, &f->st_b, "bad DIGEST");
        msgpack_sbuffer_destroy(&sb);
    }
    pack_digest_msg(&sb, 4, AE_VERSION, AE_DIGEST, STORE_BUCKETS * 8);
    msgpack_sbuffer_write(&sb, "\xc0", 1);
    expect_bad(f->b, sb.data, sb.size, &f->st_b, "DIGEST with a trailing byte");
    msgpack_sbuffer_destroy(&sb);
    /* The same builder without the trailing byte is accepted. */
    sent = 0;
    pack_digest_msg(&sb, 4, AE_VERSION, AE_DIGEST, STORE_BUCKETS * 8);
    assert_int_equal(
        ae_handle(f->b, (uint8_t *)sb.data, sb.size, NOW, send_forbidden, &sent, &f->st_b), 0);
    msgpack_sbuffer_destroy(&sb);

    /* ENTRIES: a valid entry first (never merged), then one part wrong. */
    store_entry_t es[2] = {
        {.key = "z/new",
         .klen = 5,
         .value = (uint8_t *)"\xa1z",
         .vlen = 2,
         .version = (T0 + 5) << 16,
         .origin = 0x77},
        {.key = "z/new2",
         .klen = 6,
         .value = (uint8_t *)"\xc3",
         .vlen = 1,
         .version = (T0 + 5) << 16,
         .origin = 0x77},
    };
    struct entries_spec m;
#define BAD_ENTRIES(field, val, what)                                                              \
    do {                                                                                           \
        m = good_spec;                                                                             \
        m.declared = 2;                                                                            \
        m.field = val;                                                                             \
        pack_entries_msg(&sb, &m, es, 2, NULL, 0);                                                 \
        expect_bad(f->a, sb.data, sb.size, &f->st_a, what);                                        \
        msgpack_sbuffer_destroy(&sb);                                                              \
    } while (0)
    BAD_ENTRIES(version, 2, "ENTRIES version 2");
    BAD_ENTRIES(type, AE_DIGEST, "ENTRIES typed DIGEST");
    BAD_ENTRIES(type, 99, "ENTRIES type 99");
    BAD_ENTRIES(elements, 5, "ENTRIES of 5 elements");
    BAD_ENTRIES(elements, 7, "ENTRIES of 7 elements");
    BAD_ENTRIES(buckets_len, STORE_BUCKETS / 8 - 1, "ENTRIES buckets of 31 bytes");
    BAD_ENTRIES(buckets_len, STORE_BUCKETS / 8 + 1, "ENTRIES buckets of 33 bytes");
    BAD_ENTRIES(want, -1, "ENTRIES want nil");
    BAD_ENTRIES(declared, 3, "ENTRIES announcing more entries than sent");
    BAD_ENTRIES(declared, 1, "ENTRIES announcing fewer entries than sent");
#undef BAD_ENTRIES

    /* Bad third entry after two good ones: a str key, 4 fields, a non-bool tombstone flag, a
     * negative version, a value that is not msgpack, a key running past the end. */
    static const struct {
        const char *raw;
        size_t len;
    } bad[] = {
        {"\x95\xa1k\x01\x01\xc2\xc0", 7},
        {"\x94\xc4\x01k\x01\x01\xc2", 7},
        {"\x95\xc4\x01k\x01\x01\x01\xc0", 8},
        {"\x95\xc4\x01k\xff\x01\xc2\xc0", 8},
        {"\x95\xc4\x01k\x01\x01\xc2\xc1", 8},
        {"\x95\xc4\x09k\x01\x01\xc2\xc0", 8},
        {"\x93\x01\x02\x03", 4},
        {"\xc0", 1},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        m = good_spec;
        m.declared = 3;
        pack_entries_msg(&sb, &m, es, 2, bad[i].raw, bad[i].len);
        expect_bad(f->a, sb.data, sb.size, &f->st_a, "ENTRIES with a bad entry");
        msgpack_sbuffer_destroy(&sb);
    }
    /* More than AE_MAX_ENTRIES, with the bytes behind the count to make it plausible. */
    m = good_spec;
    m.declared = AE_MAX_ENTRIES + 1;
    char *nils = malloc(AE_MAX_ENTRIES + 1);
    memset(nils, 0xc0, AE_MAX_ENTRIES + 1);
    pack_entries_msg(&sb, &m, NULL, 0, nils, AE_MAX_ENTRIES + 1);
    free(nils);
    expect_bad(f->a, sb.data, sb.size, &f->st_a, "ENTRIES over AE_MAX_ENTRIES");
    msgpack_sbuffer_destroy(&sb);
    /* Not an array; empty; a negative version. */
    expect_bad(f->a, "\x81\xa1v\x01", 4, &f->st_a, "a map");
    expect_bad(f->a, "", 0, &f->st_a, "nothing");
    expect_bad(f->a, "\x94\xff\x20\x00\xc0", 5, &f->st_a, "negative version");

    /* The good-spec message itself merges both entries. */
    m = good_spec;
    m.declared = 2;
    pack_entries_msg(&sb, &m, es, 2, NULL, 0);
    sent = 0;
    assert_int_equal(
        ae_handle(f->a, (uint8_t *)sb.data, sb.size, NOW, send_forbidden, &sent, &f->st_a), 0);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(sent, 0);
    assert_value(f->a, "z/new", "z");

    /* Entries the store refuses (origin 0, NUL in the key) are the store's business: the
     * message is well-formed, so it is not counted as malformed. */
    store_entry_t refused[2] = {
        {.key = "z/zero",
         .klen = 6,
         .value = (uint8_t *)"\xc3",
         .vlen = 1,
         .version = (T0 + 6) << 16,
         .origin = 0},
        {.key = "z/n\0ul",
         .klen = 6,
         .value = (uint8_t *)"\xc3",
         .vlen = 1,
         .version = (T0 + 6) << 16,
         .origin = 5},
    };
    m.declared = 2;
    pack_entries_msg(&sb, &m, refused, 2, NULL, 0);
    uint64_t malformed = f->st_a.malformed;
    store_stats_t ss0, ss1;
    assert_int_equal(store_stats(f->a, &ss0), 0);
    assert_int_equal(
        ae_handle(f->a, (uint8_t *)sb.data, sb.size, NOW, send_forbidden, &sent, &f->st_a), 0);
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(store_stats(f->a, &ss1), 0);
    assert_int_equal(ss1.merges_refused, ss0.merges_refused + 2);
    assert_int_equal(f->st_a.malformed, malformed);

    /* Counters: every refusal above was counted once, on the side that got it. */
    assert_true(f->st_a.malformed > 100 && f->st_b.malformed > 2000);
}

/* The shared entry encoding on its own: round trip, tombstones carry no value. */
static void test_entry_codec(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    store_entry_t live = {.key = "k",
                          .klen = 1,
                          .value = (uint8_t *)"\x92\x01\x02",
                          .vlen = 3,
                          .version = UINT64_MAX,
                          .origin = 1};
    store_entry_t tomb = {.key = "t\xff",
                          .klen = 2,
                          .value = (uint8_t *)"\xc3",
                          .vlen = 1,
                          .version = 5,
                          .origin = UINT64_MAX,
                          .tombstone = true,
                          .has_sig = true};
    for (int i = 0; i < STORE_SIG_BYTES; i++)
        tomb.sig[i] = (uint8_t)(i * 7 + 1);
    ae_entry_pack(&pk, &live);
    ae_entry_pack(&pk, &tomb);
    mpr_t r;
    store_entry_t e;
    mpr_init(&r, sb.data, sb.size);
    assert_int_equal(ae_entry_read(&r, &e), 0);
    assert_int_equal(e.klen, 1);
    assert_memory_equal(e.key, "k", 1);
    assert_int_equal(e.vlen, 3);
    assert_memory_equal(e.value, "\x92\x01\x02", 3);
    assert_true(e.version == UINT64_MAX && e.origin == 1 && !e.tombstone);
    assert_false(e.has_sig); /* five elements: unsigned */
    assert_int_equal(ae_entry_read(&r, &e), 0);
    assert_int_equal(e.klen, 2);
    assert_memory_equal(e.key, "t\xff", 2);
    assert_null(e.value); /* a tombstone's value is not sent */
    assert_int_equal(e.vlen, 0);
    assert_true(e.version == 5 && e.origin == UINT64_MAX && e.tombstone);
    assert_true(e.has_sig); /* the sixth element */
    assert_memory_equal(e.sig, tomb.sig, STORE_SIG_BYTES);
    assert_int_equal(r.left, 0);
    assert_int_equal(ae_entry_read(&r, &e), -EBADMSG);
    /* a signature that is not 64 bytes of bin, and a seventh element, are refused */
    static const uint8_t short_sig[] = {0x96, 0xc4, 0x01, 'k', 0x01, 0x01, 0xc2, 0xc0, 0xc4, 0x03, 1, 2, 3};
    mpr_init(&r, short_sig, sizeof(short_sig));
    assert_int_equal(ae_entry_read(&r, &e), -EBADMSG);
    static const uint8_t str_sig[] = {0x96, 0xc4, 0x01, 'k', 0x01, 0x01, 0xc2, 0xc0, 0xa1, 'x'};
    mpr_init(&r, str_sig, sizeof(str_sig));
    assert_int_equal(ae_entry_read(&r, &e), -EBADMSG);
    static const uint8_t seven[] = {0x97, 0xc4, 0x01, 'k', 0x01, 0x01, 0xc2, 0xc0, 0xc0, 0xc0};
    mpr_init(&r, seven, sizeof(seven));
    assert_int_equal(ae_entry_read(&r, &e), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_converge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_equal_stores_silent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test(test_entry_codec),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
