/* swim_sim: the virtual network of swim_sim.h.
 *
 * One binary heap of events ordered by (time, sequence number): deliveries of messages and
 * node ticks. A node has at most one live tick event, at `sched`; when a call into its core
 * brings its next deadline earlier, a new tick event is pushed and the old one becomes stale
 * (recognised on pop because its time no longer equals `sched`). The sequence number breaks
 * ties in insertion order, which makes the whole run a pure function of the seed. */
#include "gossip/swim_sim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/xmalloc.h"

struct sim_node {
    swim_sim_t *sim;
    unsigned index;
    swim_t *core; /* NULL while never started */
    bool up;
    unsigned group;               /* partition group */
    unsigned epoch;               /* restarts, for the core's rng seed */
    uint64_t sched;               /* time of the live tick event; UINT64_MAX: none */
    uint64_t last_key_seen_plus1; /* default deliver(): 0 = none */
    double loss;                  /* extra loss to and from this node */
    uint8_t meta[24];
    size_t meta_len;
};

struct event {
    uint64_t t;   /* ms */
    uint64_t seq; /* insertion order */
    uint8_t *msg; /* NULL: a tick */
    uint32_t len;
    uint32_t node; /* receiver */
    uint64_t from; /* sender id (messages) */
};

struct swim_sim {
    swim_sim_config_t cfg;
    struct sim_node *nodes;
    unsigned n; /* nodes + spare */
    uint64_t now;
    uint64_t rng;
    uint64_t seq;
    struct event *heap;
    size_t hlen, hcap;
    bool booting;                            /* observers are not called while true */
    uint32_t blocks[SWIM_SIM_MAX_BLOCKS][2]; /* blocked links, a < b */
    unsigned nblocks;
    swim_sim_stats_t st;
};

static uint64_t sim_rng(swim_sim_t *sim)
{
    return rng_next(&sim->rng);
}

static double sim_uniform(swim_sim_t *sim)
{
    return (double)(sim_rng(sim) >> 11) * (1.0 / 9007199254740992.0);
}

static bool ev_less(const struct event *a, const struct event *b)
{
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static void heap_push(swim_sim_t *sim, struct event ev)
{
    if (sim->hlen == sim->hcap) {
        sim->hcap = sim->hcap ? sim->hcap * 2 : 1024;
        sim->heap = xrealloc(sim->heap, sim->hcap * sizeof(*sim->heap));
    }
    ev.seq = sim->seq++;
    size_t i = sim->hlen++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!ev_less(&ev, &sim->heap[parent]))
            break;
        sim->heap[i] = sim->heap[parent];
        i = parent;
    }
    sim->heap[i] = ev;
}

static struct event heap_pop(swim_sim_t *sim)
{
    struct event top = sim->heap[0];
    struct event last = sim->heap[--sim->hlen];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= sim->hlen)
            break;
        if (c + 1 < sim->hlen && ev_less(&sim->heap[c + 1], &sim->heap[c]))
            c++;
        if (!ev_less(&sim->heap[c], &last))
            break;
        sim->heap[i] = sim->heap[c];
        i = c;
    }
    if (sim->hlen)
        sim->heap[i] = last;
    return top;
}

/* Makes sure a tick event exists at or before the core's next deadline. */
static void resched(struct sim_node *nd)
{
    swim_sim_t *sim = nd->sim;
    if (!nd->up)
        return;
    uint64_t d = swim_next_deadline(nd->core);
    if (d <= sim->now)
        d = sim->now + 1; /* everything due now has run: never spin on one instant */
    if (d >= nd->sched)
        return;
    nd->sched = d;
    heap_push(sim, (struct event){.t = d, .node = nd->index});
}

static void io_send(void *ctx, uint64_t dest, const uint8_t *msg, size_t len)
{
    struct sim_node *nd = ctx;
    swim_sim_t *sim = nd->sim;
    sim->st.sent++;
    sim->st.bytes += len;
    /* Draw loss and delay for every message, dropped or not, so that a partition or a crash
     * elsewhere does not shift the random stream of everything after it. */
    double u = sim_uniform(sim), u2 = sim_uniform(sim);
    uint32_t span = sim->cfg.delay_max_ms - sim->cfg.delay_min_ms + 1;
    uint32_t delay = sim->cfg.delay_min_ms + (uint32_t)(sim_rng(sim) % span);
    bool lost = dest == 0 || dest > sim->n || u < sim->cfg.loss;
    if (!lost) {
        struct sim_node *to = &sim->nodes[dest - 1];
        lost = to->group != nd->group || u2 < nd->loss + to->loss;
        uint32_t a = nd->index < to->index ? nd->index : to->index;
        uint32_t b = nd->index < to->index ? to->index : nd->index;
        for (unsigned i = 0; i < sim->nblocks && !lost; i++)
            lost = sim->blocks[i][0] == a && sim->blocks[i][1] == b;
    }
    if (lost) {
        sim->st.dropped++;
        return;
    }
    struct event ev = {.t = sim->now + delay,
                       .msg = xmemdup(msg, len ? len : 1),
                       .len = (uint32_t)len,
                       .node = (uint32_t)(dest - 1),
                       .from = swim_sim_id(nd->index)};
    heap_push(sim, ev);
}

static void io_member_changed(void *ctx, const swim_member_info_t *m, int old_state)
{
    struct sim_node *nd = ctx;
    swim_sim_t *sim = nd->sim;
    if (!sim->booting && sim->cfg.member_changed)
        sim->cfg.member_changed(sim->cfg.ctx, nd->index, m, old_state);
}

static bool io_deliver(void *ctx, uint64_t key, const uint8_t *payload, size_t len)
{
    struct sim_node *nd = ctx;
    swim_sim_t *sim = nd->sim;
    if (sim->cfg.deliver)
        return sim->cfg.deliver(sim->cfg.ctx, nd->index, key, payload, len);
    if (nd->last_key_seen_plus1 == key + 1)
        return false;
    nd->last_key_seen_plus1 = key + 1;
    return true;
}

static int start_core(swim_sim_t *sim, unsigned i)
{
    struct sim_node *nd = &sim->nodes[i];
    swim_config_t c = sim->cfg.swim;
    c.self_id = swim_sim_id(i);
    c.rng_seed = sim->cfg.seed * 0x100000001b3ull + ((uint64_t)nd->epoch << 32) + i;
    swim_io_t io = {
        .ctx = nd, .send = io_send, .member_changed = io_member_changed, .deliver = io_deliver};
    nd->core = swim_new(&c, &io, nd->meta, nd->meta_len, sim->now);
    if (!nd->core)
        return -errno;
    nd->up = true;
    nd->sched = UINT64_MAX;
    return 0;
}

static void add_known(swim_sim_t *sim, unsigned i, unsigned j, bool seed)
{
    struct sim_node *o = &sim->nodes[j];
    swim_add_member(sim->nodes[i].core, swim_sim_id(j), o->meta, o->meta_len, seed, sim->now);
}

swim_sim_t *swim_sim_new(const swim_sim_config_t *cfg)
{
    if (cfg->nodes == 0 || cfg->delay_max_ms < cfg->delay_min_ms) {
        errno = EINVAL;
        return NULL;
    }
    swim_sim_t *sim = xcalloc(1, sizeof(*sim));
    sim->cfg = *cfg;
    sim->n = cfg->nodes + cfg->spare;
    sim->rng = cfg->seed;
    sim->nodes = xcalloc(sim->n, sizeof(*sim->nodes));
    sim->booting = true;
    for (unsigned i = 0; i < sim->n; i++) {
        struct sim_node *nd = &sim->nodes[i];
        nd->sim = sim;
        nd->index = i;
        nd->sched = UINT64_MAX;
        if (cfg->meta)
            nd->meta_len = (size_t)snprintf((char *)nd->meta, sizeof(nd->meta), "node-%u", i);
    }
    for (unsigned i = 0; i < cfg->nodes; i++) {
        if (start_core(sim, i)) {
            int e = errno;
            swim_sim_destroy(&sim);
            errno = e;
            return NULL;
        }
        if (cfg->bootstrap == SWIM_SIM_FULL) {
            swim_reserve(sim->nodes[i].core, cfg->nodes);
            for (unsigned j = 0; j < cfg->nodes; j++)
                if (j != i)
                    add_known(sim, i, j, false);
        } else if (i != 0) {
            add_known(sim, i, 0, true);
        }
    }
    sim->booting = false;
    for (unsigned i = 0; i < cfg->nodes; i++)
        resched(&sim->nodes[i]);
    return sim;
}

void swim_sim_destroy(swim_sim_t **simp)
{
    if (!simp || !*simp)
        return;
    swim_sim_t *sim = *simp;
    for (unsigned i = 0; i < sim->n; i++)
        swim_destroy(&sim->nodes[i].core);
    for (size_t i = 0; i < sim->hlen; i++)
        free(sim->heap[i].msg);
    free(sim->heap);
    free(sim->nodes);
    free(sim);
    *simp = NULL;
}

uint64_t swim_sim_now(const swim_sim_t *sim)
{
    return sim->now;
}

void swim_sim_run_until(swim_sim_t *sim, uint64_t t_ms)
{
    while (sim->hlen && sim->heap[0].t <= t_ms) {
        struct event ev = heap_pop(sim);
        struct sim_node *nd = &sim->nodes[ev.node];
        sim->now = ev.t;
        if (ev.msg) {
            if (!nd->up) {
                sim->st.dropped++;
            } else {
                sim->st.delivered++;
                if (swim_receive(nd->core, ev.from, ev.msg, ev.len, sim->now))
                    sim->st.rejected++;
                resched(nd);
            }
            free(ev.msg);
            continue;
        }
        if (!nd->up || ev.t != nd->sched)
            continue; /* stale tick */
        nd->sched = UINT64_MAX;
        swim_tick(nd->core, sim->now);
        resched(nd);
    }
    if (t_ms > sim->now)
        sim->now = t_ms;
}

bool swim_sim_run_while(swim_sim_t *sim, uint64_t deadline_ms, uint32_t step_ms,
                        bool (*pred)(swim_sim_t *sim, void *ctx), void *ctx)
{
    for (;;) {
        if (pred(sim, ctx))
            return true;
        if (sim->now >= deadline_ms)
            return false;
        uint64_t next = sim->now + step_ms;
        swim_sim_run_until(sim, next < deadline_ms ? next : deadline_ms);
    }
}

swim_t *swim_sim_core(swim_sim_t *sim, unsigned node)
{
    return node < sim->n && sim->nodes[node].up ? sim->nodes[node].core : NULL;
}

bool swim_sim_up(const swim_sim_t *sim, unsigned node)
{
    return node < sim->n && sim->nodes[node].up;
}

int swim_sim_state(swim_sim_t *sim, unsigned observer, unsigned subject)
{
    swim_t *c = swim_sim_core(sim, observer);
    swim_member_info_t mi;
    if (!c || swim_member_get(c, swim_sim_id(subject), &mi))
        return -1;
    return (int)mi.state;
}

void swim_sim_crash(swim_sim_t *sim, unsigned node)
{
    struct sim_node *nd = &sim->nodes[node];
    nd->up = false;
    nd->sched = UINT64_MAX;
}

static void restart_core(swim_sim_t *sim, unsigned node)
{
    struct sim_node *nd = &sim->nodes[node];
    swim_destroy(&nd->core);
    nd->epoch++;
    nd->last_key_seen_plus1 = 0;
    if (start_core(sim, node)) {
        fprintf(stderr, "swim_sim: cannot start node %u\n", node);
        abort();
    }
}

void swim_sim_restart(swim_sim_t *sim, unsigned node)
{
    restart_core(sim, node);
    unsigned seed = node == 0 ? 1 : 0;
    if (sim->cfg.bootstrap == SWIM_SIM_FULL) {
        swim_reserve(sim->nodes[node].core, sim->cfg.nodes);
        for (unsigned j = 0; j < sim->cfg.nodes; j++)
            if (j != node)
                add_known(sim, node, j, j == seed);
    } else if (seed < sim->n) {
        add_known(sim, node, seed, true);
    }
    resched(&sim->nodes[node]);
}

void swim_sim_join(swim_sim_t *sim, unsigned node, unsigned seed_node)
{
    restart_core(sim, node);
    add_known(sim, node, seed_node, true);
    resched(&sim->nodes[node]);
}

void swim_sim_leave(swim_sim_t *sim, unsigned node)
{
    struct sim_node *nd = &sim->nodes[node];
    if (!nd->up)
        return;
    swim_leave(nd->core, sim->now);
    resched(nd);
}

void swim_sim_set_group(swim_sim_t *sim, unsigned node, unsigned group)
{
    sim->nodes[node].group = group;
}

void swim_sim_set_loss(swim_sim_t *sim, double loss)
{
    sim->cfg.loss = loss;
}

void swim_sim_set_node_loss(swim_sim_t *sim, unsigned node, double loss)
{
    sim->nodes[node].loss = loss;
}

int swim_sim_block(swim_sim_t *sim, unsigned a, unsigned b, bool blocked)
{
    uint32_t lo = a < b ? a : b, hi = a < b ? b : a;
    for (unsigned i = 0; i < sim->nblocks; i++) {
        if (sim->blocks[i][0] == lo && sim->blocks[i][1] == hi) {
            if (!blocked) {
                sim->nblocks--;
                sim->blocks[i][0] = sim->blocks[sim->nblocks][0];
                sim->blocks[i][1] = sim->blocks[sim->nblocks][1];
            }
            return 0;
        }
    }
    if (!blocked)
        return 0;
    if (sim->nblocks == SWIM_SIM_MAX_BLOCKS)
        return -ENOSPC;
    sim->blocks[sim->nblocks][0] = lo;
    sim->blocks[sim->nblocks][1] = hi;
    sim->nblocks++;
    return 0;
}

int swim_sim_inject(swim_sim_t *sim, uint64_t from, unsigned node, const uint8_t *msg, size_t len)
{
    struct sim_node *nd = &sim->nodes[node];
    if (!nd->up)
        return -EHOSTDOWN;
    int rc = swim_receive(nd->core, from, msg, len, sim->now);
    resched(nd);
    return rc;
}

void swim_sim_get_stats(const swim_sim_t *sim, swim_sim_stats_t *st)
{
    *st = sim->st;
}
