/* ticketkeys: see ticketkeys.h.
 *
 * BACKGROUND
 *
 * A TLS session ticket is the server's own state, encrypted under a key only servers know. For
 * a client to resume at any PoP, every PoP must hold the key the ticket was sealed with, so
 * the keys are replicated records (tlsticket/<epoch>), sealed with the mesh-derived key like
 * certificate keys. Who makes each key needs no election: a rendezvous hash over the alive
 * PoPs (score = BLAKE2b(id, epoch)) ranks them per period; every PoP computes the same order
 * from the same registry and SWIM view, and the first writes. Views differ for a moment after
 * a failure, which is why a key is made a whole period ahead: the writer for E writes at the
 * start of E - 1, and only if nothing has arrived half a period later do the others step in,
 * one after another (the k-th fallback waits k - 1 more staggers). Two keys for one period are
 * harmless: the store's last-writer-wins keeps one everywhere, and the tickets sealed with the
 * other fall back to a full handshake.
 *
 * A PoP that just started (or just joined, with an empty store) waits a settle time before it
 * writes anything, so anti-entropy can bring the keys the mesh already has: writing a fresh
 * key for the current period would replace the one every ticket out there was sealed with.
 *
 * The ring (the opened keys, at most RING_MAX, newest periods first) is rebuilt from the
 * store at each change under tlsticket/ (store_watch), never on a timer. The timer only
 * decides, from the wall clock, whether a key is due; and the writer of the next period
 * deletes records older than the previous period.
 *
 * INVARIANTS
 *
 * - Keys are in clear only in this struct's ring (wiped when replaced and at destroy) and in
 *   what ticketkeys_current/find copy out; never in a log, a record or a status answer (those
 *   carry the 16-byte key name, which travels in clear in every ticket anyway).
 * - Only periods E (current) and E + 1 are ever written; never a past one. */
#include "node/tls/ticketkeys.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/records/registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define RING_MAX       8
#define PERIOD_MIN_MS  1000ull
#define PERIOD_MAX_MS  (7ull * 24 * 3600 * 1000)
#define SETTLE_MAX_MS  10000ull /* ms after start before any write (anti-entropy first) */
#define STAGGER_MIN_MS 200ull   /* ms between two fallbacks, at least */
#define STAGGER_MAX_MS 30000ull /* and at most */
#define TICK_MIN_S     0.1      /* s between two checks, at least */
#define TICK_MAX_S     30.0     /* and at most */
#define POPS_MAX       1024

struct ring_entry {
    ticketkey_t k;
    uint64_t created_ms;
    char created_by[64];
};

struct noticed {
    uint64_t epoch;
    uint64_t at_ms; /* wall ms this PoP first saw epoch without a key; 0 = not missing */
};

struct ticketkeys {
    ticketkeys_opts_t o;
    char node_name[64];
    uint64_t period;                  /* ms */
    uint64_t settle_until;            /* wall ms */
    uint64_t stagger;                 /* ms */
    struct ring_entry ring[RING_MAX]; /* newest epoch first */
    size_t nring;
    uint64_t *pops; /* ids of the registry's PoPs, not removed */
    size_t npops;
    int watch_keys, watch_nodes;
    struct noticed noticed[2]; /* by parity: the current and the next period */
    ev_timer tick;
    uint64_t cleaned_epoch; /* the period of the last delete_old (once a period is enough) */
    uint64_t written, fallbacks, deleted, unreadable;
};

/* ---- the rule ----------------------------------------------------------------------------- */

static void be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

uint64_t ticketkeys_score(uint64_t node_id, uint64_t epoch)
{
    uint8_t in[16], h[8];
    be64(in, node_id);
    be64(in + 8, epoch);
    crypto_generichash(h, sizeof(h), in, sizeof(in), NULL, 0);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    return v;
}

/* a ranks before b for epoch: higher score, then lower id (a tie is a 2^-64 event). */
static bool before(uint64_t a, uint64_t sa, uint64_t b, uint64_t sb)
{
    return sa != sb ? sa > sb : a < b;
}

unsigned ticketkeys_rank(uint64_t self, const uint64_t *pops, size_t n, uint64_t epoch)
{
    uint64_t ss = ticketkeys_score(self, epoch);
    unsigned rank = 0;
    for (size_t i = 0; i < n; i++) {
        if (pops[i] == self)
            continue;
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++)
            dup = pops[j] == pops[i];
        if (!dup && before(pops[i], ticketkeys_score(pops[i], epoch), self, ss))
            rank++;
    }
    return rank;
}

static uint64_t stagger_of(uint64_t period)
{
    uint64_t s = period / 16;
    return s < STAGGER_MIN_MS ? STAGGER_MIN_MS : s > STAGGER_MAX_MS ? STAGGER_MAX_MS : s;
}

uint64_t ticketkeys_due_ms(uint64_t epoch, unsigned rank, uint64_t period_ms, uint64_t noticed_ms)
{
    uint64_t base = epoch ? (epoch - 1) * period_ms : 0; /* the start of the period before */
    uint64_t stagger = stagger_of(period_ms);
    if (rank == 0)
        return base > noticed_ms ? base : noticed_ms;
    uint64_t a = base + period_ms / 2 + (uint64_t)(rank - 1) * stagger;
    uint64_t b = noticed_ms + (uint64_t)rank * stagger;
    return a > b ? a : b;
}

/* ---- the ring, from the store ------------------------------------------------------------- */

static const struct ring_entry *ring_find_epoch(const ticketkeys_t *t, uint64_t epoch)
{
    for (size_t i = 0; i < t->nring; i++)
        if (t->ring[i].k.epoch == epoch)
            return &t->ring[i];
    return NULL;
}

struct rebuild {
    ticketkeys_t *t;
    struct ring_entry ring[RING_MAX];
    size_t n;
};

static int load_key(const store_entry_t *e, void *ctx)
{
    struct rebuild *rb = ctx;
    ticketkeys_t *t = rb->t;
    uint64_t epoch;
    tlsticket_rec_t rec;
    const char *why = "the key is not tlsticket/<16 hex digits>";
    if (tlsticket_key_epoch(e->key, e->klen, &epoch) ||
        tlsticket_parse(e->value, e->vlen, epoch, &rec, &why)) {
        t->unreadable++;
        log_warn("tls: skipping unreadable ticket key record %.*s: %s", (int)e->klen, e->key, why);
        return 0;
    }
    uint8_t plain[TLSTICKET_KEY_LEN];
    int orc = tlsticket_open_key(t->o.seal, &rec, plain, NULL);
    if (orc) {
        t->unreadable++;
        log_warn("tls: the ticket key of period %llu (%.*s, written by %s) is unreadable: %s; "
                 "skipped",
                 (unsigned long long)epoch, (int)e->klen, e->key, rec.created_by,
                 storeseal_strerror(orc));
        return 0;
    }
    /* Keep the RING_MAX newest: the slot of the oldest goes when full. */
    size_t slot = rb->n;
    if (rb->n == RING_MAX) {
        slot = 0;
        for (size_t i = 1; i < rb->n; i++)
            if (rb->ring[i].k.epoch < rb->ring[slot].k.epoch)
                slot = i;
        if (rb->ring[slot].k.epoch > epoch)
            slot = RING_MAX;
    } else {
        rb->n++;
    }
    if (slot < RING_MAX) {
        struct ring_entry *r = &rb->ring[slot];
        memcpy(r->k.name, plain, 16);
        memcpy(r->k.aes, plain + 16, 32);
        memcpy(r->k.hmac, plain + 48, 32);
        r->k.epoch = epoch;
        r->created_ms = rec.created_ms;
        snprintf(r->created_by, sizeof(r->created_by), "%s", rec.created_by);
    }
    sodium_memzero(plain, sizeof(plain));
    return 0;
}

static int newest_first(const void *a, const void *b)
{
    const struct ring_entry *x = a, *y = b;
    return x->k.epoch < y->k.epoch ? 1 : x->k.epoch > y->k.epoch ? -1 : 0;
}

static void rebuild_ring(ticketkeys_t *t)
{
    struct rebuild *rb = xcalloc(1, sizeof(*rb));
    rb->t = t;
    if (store_list(t->o.store, TLSTICKET_PREFIX, strlen(TLSTICKET_PREFIX), load_key, rb)) {
        log_warn("tls: cannot read the ticket keys: %s (keeping the ones held)",
                 store_last_error(t->o.store));
    } else {
        qsort(rb->ring, rb->n, sizeof(rb->ring[0]), newest_first);
        sodium_memzero(t->ring, sizeof(t->ring));
        memcpy(t->ring, rb->ring, sizeof(rb->ring));
        t->nring = rb->n;
    }
    sodium_memzero(rb, sizeof(*rb));
    free(rb);
}

static void on_keys_changed(void *ctx, const store_entry_t *changes, size_t n)
{
    (void)changes, (void)n;
    rebuild_ring(ctx);
}

static int load_pop(const store_entry_t *e, void *ctx)
{
    ticketkeys_t *t = ctx;
    uint64_t id;
    reg_node_t node;
    const char *why;
    if (reg_node_key_id(e->key, e->klen, &id) ||
        reg_node_parse(e->value, e->vlen, id, &node, &why) || node.removed ||
        node.role != ROLE_POP || t->npops == POPS_MAX)
        return 0;
    t->pops = xrealloc(t->pops, (t->npops + 1) * sizeof(*t->pops));
    t->pops[t->npops++] = id;
    return 0;
}

static void rebuild_pops(ticketkeys_t *t)
{
    free(t->pops);
    t->pops = NULL;
    t->npops = 0;
    if (store_list(t->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), load_pop, t))
        log_warn("tls: cannot read the registry: %s (ticket key writers may differ for a while)",
                 store_last_error(t->o.store));
}

static void on_nodes_changed(void *ctx, const store_entry_t *changes, size_t n)
{
    (void)changes, (void)n;
    rebuild_pops(ctx);
}

/* ---- writing and deleting ----------------------------------------------------------------- */

static void name_hex(const uint8_t name[16], char out[33])
{
    sodium_bin2hex(out, 33, name, 16);
}

static void publish(ticketkeys_t *t, const char *key, const store_entry_t *out, const void *value,
                    size_t vlen)
{
    if (!t->o.mesh)
        return;
    store_entry_t e = *out;
    e.key = (char *)key;
    e.klen = strlen(key);
    e.value = (uint8_t *)value;
    e.vlen = vlen;
    e.tombstone = value == NULL;
    meshnode_published(t->o.mesh, &e);
}

static void write_key(ticketkeys_t *t, uint64_t epoch, unsigned rank, uint64_t now)
{
    uint8_t plain[TLSTICKET_KEY_LEN];
    randombytes_buf(plain, sizeof(plain));
    char nhex[33];
    name_hex(plain, nhex);
    tlsticket_rec_t rec = {.epoch = epoch, .created_ms = now};
    int src = tlsticket_seal_key(t->o.seal, &rec, plain);
    sodium_memzero(plain, sizeof(plain));
    if (src) {
        log_warn("tls: cannot seal the ticket key of period %llu: %s", (unsigned long long)epoch,
                 src == -ENOKEY ? "this PoP has no store key" : strerror(-src));
        return;
    }
    snprintf(rec.created_by, sizeof(rec.created_by), "%s", t->node_name);
    char key[64];
    tlsticket_key(epoch, key, sizeof(key));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tlsticket_pack(&pk, &rec);
    store_entry_t out = {0};
    int rc = store_put(t->o.store, key, strlen(key), sb.data, sb.size, now, &out);
    if (rc) {
        log_warn("tls: cannot store the ticket key of period %llu: %s", (unsigned long long)epoch,
                 store_last_error(t->o.store));
    } else {
        publish(t, key, &out, sb.data, sb.size);
        t->written++;
        if (rank)
            t->fallbacks++;
        if (rank)
            log_info("tls: ticket key of period %llu written as fallback %u (none had arrived; "
                     "key name %s)",
                     (unsigned long long)epoch, rank, nhex);
        else
            log_info("tls: ticket key of period %llu written (key name %s)",
                     (unsigned long long)epoch, nhex);
    }
    msgpack_sbuffer_destroy(&sb);
}

struct old_keys {
    uint64_t before; /* epochs below this go */
    char (*keys)[64];
    size_t n;
};

static int collect_old(const store_entry_t *e, void *ctx)
{
    struct old_keys *o = ctx;
    uint64_t epoch;
    if (tlsticket_key_epoch(e->key, e->klen, &epoch) == 0 && epoch < o->before) {
        o->keys = xrealloc(o->keys, (o->n + 1) * sizeof(*o->keys));
        tlsticket_key(epoch, o->keys[o->n++], sizeof(o->keys[0]));
    }
    return 0;
}

static void delete_old(ticketkeys_t *t, uint64_t cur, uint64_t now)
{
    if (cur < 2)
        return;
    struct old_keys o = {.before = cur - 1};
    if (store_list(t->o.store, TLSTICKET_PREFIX, strlen(TLSTICKET_PREFIX), collect_old, &o)) {
        free(o.keys);
        return;
    }
    for (size_t i = 0; i < o.n; i++) {
        store_entry_t out = {0};
        if (store_del(t->o.store, o.keys[i], strlen(o.keys[i]), now, &out) == 0) {
            publish(t, o.keys[i], &out, NULL, 0);
            t->deleted++;
        }
    }
    if (o.n)
        log_debug("tls: %zu ticket key record(s) older than the previous period deleted", o.n);
    free(o.keys);
}

/* The alive PoPs as this PoP sees them (self included). Caller frees. */
static uint64_t *alive_pops(ticketkeys_t *t, size_t *n)
{
    uint64_t *v = xmalloc((t->npops + 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < t->npops; i++)
        if (!t->o.mesh || meshnode_is_alive(t->o.mesh, t->pops[i]))
            v[k++] = t->pops[i];
    v[k++] = t->o.self_id; /* ticketkeys_rank ignores it when it is already there */
    *n = k;
    return v;
}

/* When this PoP first saw epoch without a key. E and E + 1 have different parities, so one
 * slot per parity holds both; a slot of an older period is simply reused. */
static uint64_t noticed_at(ticketkeys_t *t, uint64_t epoch, uint64_t now)
{
    struct noticed *s = &t->noticed[epoch & 1];
    if (s->epoch != epoch || !s->at_ms) {
        s->epoch = epoch;
        s->at_ms = now;
    }
    return s->at_ms;
}

static void check(ticketkeys_t *t)
{
    uint64_t now = clock_wall_ms();
    if (now < t->settle_until)
        return;
    uint64_t cur = now / t->period;
    size_t n;
    uint64_t *alive = alive_pops(t, &n);
    for (uint64_t e = cur; e <= cur + 1; e++) {
        if (ring_find_epoch(t, e))
            continue;
        unsigned rank = ticketkeys_rank(t->o.self_id, alive, n, e);
        if (now >= ticketkeys_due_ms(e, rank, t->period, noticed_at(t, e, now)))
            write_key(t, e, rank, now);
    }
    if (t->cleaned_epoch != cur && ticketkeys_rank(t->o.self_id, alive, n, cur + 1) == 0) {
        t->cleaned_epoch = cur;
        delete_old(t, cur, now);
    }
    free(alive);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    check(w->data);
}

/* ---- life cycle --------------------------------------------------------------------------- */

static uint64_t period_from_env(void)
{
    const char *v = getenv("POPMESH_TEST_TICKET_PERIOD_MS");
    if (!v || !*v)
        return TICKETKEYS_PERIOD_MS;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || x < PERIOD_MIN_MS || x > PERIOD_MAX_MS) {
        log_warn("tls: ignoring POPMESH_TEST_TICKET_PERIOD_MS=%s (want %llu to %llu)", v,
                 PERIOD_MIN_MS, PERIOD_MAX_MS);
        return TICKETKEYS_PERIOD_MS;
    }
    log_warn("tls: TEST KNOB: POPMESH_TEST_TICKET_PERIOD_MS=%llu (for tests only)", x);
    return x;
}

ticketkeys_t *ticketkeys_new(const ticketkeys_opts_t *o, char *err, size_t errlen)
{
    if (!o->loop || !o->store || !o->seal || !o->self_id) {
        snprintf(err, errlen, "ticket keys need a loop, a store, the sealing key and a node id");
        errno = EINVAL;
        return NULL;
    }
    uint64_t period = o->period_ms ? o->period_ms : period_from_env();
    if (period < PERIOD_MIN_MS || period > PERIOD_MAX_MS) {
        snprintf(err, errlen, "ticket key period %llu ms is outside %llu ms to 7 days",
                 (unsigned long long)period, PERIOD_MIN_MS);
        errno = EINVAL;
        return NULL;
    }
    ticketkeys_t *t = xcalloc(1, sizeof(*t));
    t->o = *o;
    snprintf(t->node_name, sizeof(t->node_name), "%s", o->node_name ? o->node_name : "");
    t->o.node_name = t->node_name;
    t->period = period;
    t->stagger = stagger_of(period);
    uint64_t settle = period / 2 < SETTLE_MAX_MS ? period / 2 : SETTLE_MAX_MS;
    t->settle_until = clock_wall_ms() + settle;
    t->watch_keys =
        store_watch(o->store, TLSTICKET_PREFIX, strlen(TLSTICKET_PREFIX), on_keys_changed, t);
    t->watch_nodes = t->watch_keys > 0 ? store_watch(o->store, REG_NODE_PREFIX,
                                                     strlen(REG_NODE_PREFIX), on_nodes_changed, t)
                                       : -ENOSPC;
    if (t->watch_keys < 0 || t->watch_nodes < 0) {
        snprintf(err, errlen, "cannot watch the store for ticket keys: too many watchers");
        ticketkeys_destroy(&t);
        errno = ENOSPC;
        return NULL;
    }
    rebuild_pops(t);
    rebuild_ring(t);
    double tick = (double)period / 16 / 1000;
    tick = tick < TICK_MIN_S ? TICK_MIN_S : tick > TICK_MAX_S ? TICK_MAX_S : tick;
    /* Jitter the phase so PoPs started together do not check in lockstep. */
    double first = (double)settle / 1000 + tick * (0.5 + randombytes_uniform(1000) / 1000.0);
    ev_timer_init(&t->tick, on_tick, first, tick);
    t->tick.data = t;
    ev_timer_start(o->loop, &t->tick);
    return t;
}

void ticketkeys_destroy(ticketkeys_t **tp)
{
    if (!tp || !*tp)
        return;
    ticketkeys_t *t = *tp;
    ev_timer_stop(t->o.loop, &t->tick);
    if (t->watch_keys > 0)
        store_unwatch(t->o.store, t->watch_keys);
    if (t->watch_nodes > 0)
        store_unwatch(t->o.store, t->watch_nodes);
    free(t->pops);
    sodium_memzero(t, sizeof(*t));
    free(t);
    *tp = NULL;
}

/* ---- lookups ------------------------------------------------------------------------------ */

bool ticketkeys_current(const ticketkeys_t *t, ticketkey_t *out)
{
    uint64_t cur = clock_wall_ms() / t->period;
    const struct ring_entry *r = ring_find_epoch(t, cur);
    if (!r && cur)
        r = ring_find_epoch(t, cur - 1); /* the writer is late: last period's is still good */
    if (!r)
        return false;
    *out = r->k;
    return true;
}

bool ticketkeys_find(const ticketkeys_t *t, const uint8_t name[16], ticketkey_t *out, bool *renew)
{
    uint64_t cur = clock_wall_ms() / t->period;
    for (size_t i = 0; i < t->nring; i++) {
        const ticketkey_t *k = &t->ring[i].k;
        if (memcmp(k->name, name, 16))
            continue;
        if (k->epoch != cur && k->epoch != cur + 1 && k->epoch + 1 != cur)
            return false; /* too old (or far ahead): a full handshake */
        *out = *k;
        if (renew)
            *renew = k->epoch + 1 == cur;
        return true;
    }
    return false;
}

void ticketkeys_pack_status(const ticketkeys_t *t, msgpack_packer *pk)
{
    uint64_t cur = clock_wall_ms() / t->period;
    ticketkey_t k;
    char hex[33];
    msgpack_pack_map(pk, 8);
    mpw_kv_u64(pk, "period_ms", t->period);
    mpw_kv_u64(pk, "epoch", cur);
    mpw_str(pk, "current");
    if (ticketkeys_current(t, &k)) {
        name_hex(k.name, hex);
        mpw_str(pk, hex);
        sodium_memzero(&k, sizeof(k));
    } else {
        msgpack_pack_nil(pk);
    }
    mpw_str(pk, "keys");
    msgpack_pack_array(pk, t->nring);
    for (size_t i = 0; i < t->nring; i++) {
        const struct ring_entry *r = &t->ring[i];
        name_hex(r->k.name, hex);
        msgpack_pack_map(pk, 4);
        mpw_kv_u64(pk, "epoch", r->k.epoch);
        mpw_kv_str(pk, "name", hex);
        mpw_kv_str(pk, "created_by", r->created_by);
        mpw_kv_u64(pk, "created_ms", r->created_ms);
    }
    mpw_kv_u64(pk, "written", t->written);
    mpw_kv_u64(pk, "fallbacks", t->fallbacks);
    mpw_kv_u64(pk, "deleted", t->deleted);
    mpw_kv_u64(pk, "unreadable", t->unreadable);
}
