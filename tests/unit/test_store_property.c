/* Property test of the store's convergence: any delivery order of the same writes, with
 * duplicates, partial delivery and anti-entropy repair, gives every replica the same contents
 * and the same digests, equal to a model computed independently of the store.
 *
 * For each seed: a stream of remote writes (puts and tombstones from several origins, with
 * versions drawn from a tiny range so that ties on version, and even on (version, origin), are
 * common); four replicas each get the stream shuffled differently, with duplicates, merged in
 * random batch sizes, first partially and then completely, or completed by digest-driven
 * anti-entropy after local writes on some replicas. Everything is seeded; a failure prints
 * the seed, and POPMESH_PROPERTY_SEED=<n> replays just that case.
 * POPMESH_PROPERTY_SEEDS=<n> changes how many cases run (default 2000). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "storage/hlc.h"
#include "storage/store.h"

#define REPLICAS  4
#define KEYS      6
#define MAX_OPS   24
#define MAX_DELIV (MAX_OPS * 2)
#define T0        1700000000000ull /* ms */
#define NOW       (T0 + 100)       /* ms: merges happen "now", well within the grace */

static uint64_t cur_seed;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char msg_[256];                                                                        \
            snprintf(msg_, sizeof(msg_), __VA_ARGS__);                                             \
            fail_msg("seed %llu: %s (%s:%d: %s); replay with POPMESH_PROPERTY_SEED=%llu",          \
                     (unsigned long long)cur_seed, msg_, __FILE__, __LINE__, #cond,                \
                     (unsigned long long)cur_seed);                                                \
        }                                                                                          \
    } while (0)

/* splitmix64: tiny, seedable, good enough to shuffle. */
static uint64_t rnd(uint64_t *st)
{
    uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One write, owning its bytes. */
struct op {
    char key[16];
    uint8_t val[16];
    size_t vlen;
    uint64_t version;
    uint64_t origin;
    bool tomb;
};

static store_entry_t as_entry(const struct op *o)
{
    return (store_entry_t){.key = (char *)o->key,
                           .klen = strlen(o->key),
                           .value = o->tomb ? NULL : (uint8_t *)o->val,
                           .vlen = o->tomb ? 0 : o->vlen,
                           .version = o->version,
                           .origin = o->origin,
                           .tombstone = o->tomb};
}

/* The model's order, written from the spec rather than shared with store.c: (version, origin),
 * then tombstone over live, then value bytes, then length. */
static int model_cmp(const struct op *a, const struct op *b)
{
    if (a->version != b->version)
        return a->version > b->version ? 1 : -1;
    if (a->origin != b->origin)
        return a->origin > b->origin ? 1 : -1;
    if (a->tomb != b->tomb)
        return a->tomb ? 1 : -1;
    if (a->tomb)
        return 0;
    size_t n = a->vlen < b->vlen ? a->vlen : b->vlen;
    int c = memcmp(a->val, b->val, n);
    if (c)
        return c > 0 ? 1 : -1;
    return a->vlen == b->vlen ? 0 : (a->vlen > b->vlen ? 1 : -1);
}

static void random_op(uint64_t *rs, struct op *o)
{
    static const char *const keys[KEYS] = {"cfg/a",  "cfg/b",  "site/1",
                                           "user/x", "rule/9", "cfg/a/b"};
    snprintf(o->key, sizeof(o->key), "%s", keys[rnd(rs) % KEYS]);
    o->origin = 1 + rnd(rs) % 3;
    o->version = hlc_make(T0 + rnd(rs) % 2, (uint16_t)(rnd(rs) % 4));
    o->tomb = rnd(rs) % 4 == 0;
    switch (rnd(rs) % 3) {
    case 0: /* fixstr "v<d>" */
        o->val[0] = 0xa2, o->val[1] = 'v', o->val[2] = (uint8_t)('0' + rnd(rs) % 5);
        o->vlen = 3;
        break;
    case 1: /* positive fixint */
        o->val[0] = (uint8_t)(rnd(rs) % 128);
        o->vlen = 1;
        break;
    default: /* {"n": uint16} */
        o->val[0] = 0x81, o->val[1] = 0xa1, o->val[2] = 'n', o->val[3] = 0xcd;
        o->val[4] = (uint8_t)rnd(rs), o->val[5] = (uint8_t)rnd(rs);
        o->vlen = 6;
        break;
    }
}

/* ---- replicas --------------------------------------------------------------------------- */

struct replica {
    char dir[64];
    store_t *s;
};

static void replica_reset(struct replica *r, uint64_t node_id)
{
    char p[320];
    store_close(&r->s);
    snprintf(p, sizeof(p), "%s/data.mdb", r->dir);
    unlink(p);
    snprintf(p, sizeof(p), "%s/lock.mdb", r->dir);
    unlink(p);
    store_opts_t o = {.node_id = node_id, .map_size = 4 << 20, .nosync = true};
    int rc = store_open(r->dir, &o, &r->s);
    CHECK(rc == 0, "store_open: %d", rc);
}

/* Export of everything, as a flat list in key order. */
struct dump {
    struct op e[KEYS + 4];
    int n;
};

static int dump_one(const store_entry_t *e, void *ctx)
{
    struct dump *d = ctx;
    CHECK(d->n < KEYS + 4, "too many entries exported");
    struct op *o = &d->e[d->n++];
    memset(o, 0, sizeof(*o));
    CHECK(e->klen < sizeof(o->key), "key too long");
    memcpy(o->key, e->key, e->klen);
    o->version = e->version;
    o->origin = e->origin;
    o->tomb = e->tombstone;
    CHECK(e->vlen <= sizeof(o->val), "value too long");
    if (!e->tombstone)
        memcpy(o->val, e->value, e->vlen);
    o->vlen = e->vlen;
    return 0;
}

static void dump(store_t *s, struct dump *d)
{
    uint8_t all[STORE_BUCKETS / 8];
    memset(all, 0xff, sizeof(all));
    d->n = 0;
    int rc = store_export(s, all, dump_one, d);
    CHECK(rc == 0, "export: %d", rc);
}

static void merge_in_batches(uint64_t *rs, store_t *s, const struct op *const *deliv, int from,
                             int to)
{
    store_entry_t batch[MAX_DELIV];
    while (from < to) {
        int n = 1 + (int)(rnd(rs) % 5);
        if (n > to - from)
            n = to - from;
        for (int i = 0; i < n; i++)
            batch[i] = as_entry(deliv[from + i]);
        int rc = store_merge(s, batch, (size_t)n, NOW);
        CHECK(rc >= 0 && rc <= n, "merge returned %d for %d entries (%s)", rc, n,
              store_last_error(s));
        from += n;
    }
}

/* Digest-driven repair of b from a and a from b, as gossip's anti-entropy will do it. */
struct ship {
    store_entry_t e[KEYS + 4];
    struct op o[KEYS + 4];
    int n;
};

static int ship_one(const store_entry_t *e, void *ctx)
{
    struct ship *sh = ctx;
    struct dump d = {.n = 0};
    dump_one(e, &d);
    sh->o[sh->n] = d.e[0];
    sh->n++;
    return 0;
}

static void sync_pair(store_t *a, store_t *b)
{
    uint64_t da[STORE_BUCKETS], db[STORE_BUCKETS];
    uint8_t diff[STORE_BUCKETS / 8] = {0};
    store_digests(a, da);
    store_digests(b, db);
    int nd = 0;
    for (unsigned i = 0; i < STORE_BUCKETS; i++)
        if (da[i] != db[i])
            diff[i / 8] |= (uint8_t)(1u << (i % 8)), nd++;
    if (!nd)
        return;
    struct ship ab = {.n = 0}, ba = {.n = 0};
    CHECK(store_export(a, diff, ship_one, &ab) == 0, "export a");
    CHECK(store_export(b, diff, ship_one, &ba) == 0, "export b");
    for (int i = 0; i < ab.n; i++)
        ab.e[i] = as_entry(&ab.o[i]);
    for (int i = 0; i < ba.n; i++)
        ba.e[i] = as_entry(&ba.o[i]);
    CHECK(store_merge(b, ab.e, (size_t)ab.n, NOW) >= 0, "merge into b");
    CHECK(store_merge(a, ba.e, (size_t)ba.n, NOW) >= 0, "merge into a");
}

/* ---- one case --------------------------------------------------------------------------- */

static void run_case(struct replica *reps, uint64_t seed)
{
    uint64_t rs = seed * 0x2545f4914f6cdd1dull + 1;
    struct op ops[MAX_OPS + REPLICAS];
    int nops = 4 + (int)(rnd(&rs) % (MAX_OPS - 4));
    for (int i = 0; i < nops; i++)
        random_op(&rs, &ops[i]);
    bool anti_entropy = rnd(&rs) % 2;

    for (int r = 0; r < REPLICAS; r++)
        replica_reset(&reps[r], 100 + (uint64_t)r);

    /* Deliveries: the stream plus duplicates, shuffled per replica (Fisher-Yates). */
    for (int r = 0; r < REPLICAS; r++) {
        const struct op *deliv[MAX_DELIV];
        int nd = 0;
        for (int i = 0; i < nops; i++)
            deliv[nd++] = &ops[i];
        int dups = (int)(rnd(&rs) % (uint64_t)(nops + 1));
        for (int i = 0; i < dups && nd < MAX_DELIV; i++)
            deliv[nd++] = &ops[rnd(&rs) % (uint64_t)nops];
        for (int i = nd - 1; i > 0; i--) {
            int j = (int)(rnd(&rs) % (uint64_t)(i + 1));
            const struct op *t = deliv[i];
            deliv[i] = deliv[j];
            deliv[j] = t;
        }
        int cut = (int)(rnd(&rs) % (uint64_t)(nd + 1));
        merge_in_batches(&rs, reps[r].s, deliv, 0, cut);
        CHECK(store_verify(reps[r].s) == 0, "replica %d after partial delivery: %s", r,
              store_last_error(reps[r].s));
        /* With anti-entropy, replicas 2 and 3 stop at the cut and must be repaired. */
        if (!anti_entropy || r < 2)
            merge_in_batches(&rs, reps[r].s, deliv, cut, nd);
    }

    int nall = nops;
    if (anti_entropy) {
        /* Local writes on two replicas, then pairwise digest sync until everyone agrees. */
        for (int r = 2; r < REPLICAS; r++) {
            struct op *o = &ops[nall];
            random_op(&rs, o);
            store_entry_t out;
            int rc;
            if (o->tomb) {
                rc = store_del(reps[r].s, o->key, strlen(o->key), NOW, &out);
                if (rc == -ENOENT)
                    continue;
            } else {
                rc = store_put(reps[r].s, o->key, strlen(o->key), o->val, o->vlen, NOW, &out);
            }
            CHECK(rc == 0, "local write on replica %d: %d", r, rc);
            CHECK(out.origin == 100 + (uint64_t)r, "local origin");
            o->version = out.version;
            o->origin = out.origin;
            nall++;
        }
        for (int round = 0; round < 2; round++)
            for (int r = 1; r < REPLICAS; r++)
                sync_pair(reps[0].s, reps[r].s);
    }

    /* The model: per key, the largest write under the total order. */
    struct op *best[KEYS + 4] = {0};
    int nbest = 0;
    for (int i = 0; i < nall; i++) {
        int k;
        for (k = 0; k < nbest; k++)
            if (strcmp(best[k]->key, ops[i].key) == 0)
                break;
        if (k == nbest)
            best[nbest++] = &ops[i];
        else if (model_cmp(&ops[i], best[k]) > 0)
            best[k] = &ops[i];
    }

    struct dump d0, dr;
    uint64_t g0[STORE_BUCKETS], gr[STORE_BUCKETS];
    dump(reps[0].s, &d0);
    store_digests(reps[0].s, g0);
    CHECK(d0.n == nbest, "replica 0 holds %d keys, model %d", d0.n, nbest);
    for (int i = 0; i < d0.n; i++) {
        const struct op *m = NULL;
        for (int k = 0; k < nbest; k++)
            if (strcmp(best[k]->key, d0.e[i].key) == 0)
                m = best[k];
        CHECK(m != NULL, "unexpected key %s", d0.e[i].key);
        CHECK(model_cmp(m, &d0.e[i]) == 0 && m->version == d0.e[i].version,
              "key %s: store has v=%llx o=%llu t=%d, model v=%llx o=%llu t=%d", m->key,
              (unsigned long long)d0.e[i].version, (unsigned long long)d0.e[i].origin, d0.e[i].tomb,
              (unsigned long long)m->version, (unsigned long long)m->origin, m->tomb);
    }
    for (int r = 0; r < REPLICAS; r++) {
        CHECK(store_verify(reps[r].s) == 0, "replica %d verify: %s", r,
              store_last_error(reps[r].s));
        if (r == 0)
            continue;
        dump(reps[r].s, &dr);
        store_digests(reps[r].s, gr);
        CHECK(dr.n == d0.n, "replica %d holds %d entries, replica 0 %d", r, dr.n, d0.n);
        for (int i = 0; i < dr.n; i++)
            CHECK(strcmp(dr.e[i].key, d0.e[i].key) == 0 && model_cmp(&dr.e[i], &d0.e[i]) == 0,
                  "replica %d differs from replica 0 at %s", r, d0.e[i].key);
        CHECK(memcmp(g0, gr, sizeof(g0)) == 0, "replica %d digests differ from replica 0", r);
    }
}

/* The replicas live in the fixture so their directories go away even when a case fails. */
static int setup_replicas(void **state)
{
    struct replica *reps = calloc(REPLICAS, sizeof(*reps));
    for (int r = 0; r < REPLICAS; r++) {
        snprintf(reps[r].dir, sizeof(reps[r].dir), "/tmp/popmesh-test-prop-XXXXXX");
        if (!mkdtemp(reps[r].dir))
            return -1;
    }
    *state = reps;
    return 0;
}

static int teardown_replicas(void **state)
{
    struct replica *reps = *state;
    for (int r = 0; r < REPLICAS; r++) {
        char p[320];
        store_close(&reps[r].s);
        snprintf(p, sizeof(p), "%s/data.mdb", reps[r].dir);
        unlink(p);
        snprintf(p, sizeof(p), "%s/lock.mdb", reps[r].dir);
        unlink(p);
        rmdir(reps[r].dir);
    }
    free(reps);
    return 0;
}

static void test_convergence(void **state)
{
    struct replica *reps = *state;
    const char *one = getenv("POPMESH_PROPERTY_SEED");
    const char *many = getenv("POPMESH_PROPERTY_SEEDS");
    uint64_t first = 1, count = 2000;
    if (one)
        first = strtoull(one, NULL, 10), count = 1;
    else if (many)
        count = strtoull(many, NULL, 10);
    for (uint64_t seed = first; seed < first + count; seed++) {
        cur_seed = seed;
        run_case(reps, seed);
    }
    printf("convergence: %llu seeds x %d replicas: all converged\n", (unsigned long long)count,
           REPLICAS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_convergence, setup_replicas, teardown_replicas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
