/* Unit tests of the SWIM core (gossip/swim.h), driven through the deterministic virtual
 * network of gossip/swim_sim.h: convergence, failure detection and restart, refutation,
 * Lifeguard under loss, partition healing, leave, broadcast, determinism, and the decoder's
 * handling of every kind of malformed message. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gossip/swim.h"
#include "gossip/swim_sim.h"
#include "gossip/swim_wire.h"

/* ---- observers ------------------------------------------------------------------------ */

#define MAX_NODES 128

/* What the tests watch: DEAD declarations (false or not), deliveries, and a running hash of
 * every membership event for the determinism test. */
struct watch {
    unsigned dead_events[MAX_NODES];  /* per subject node: transitions into DEAD */
    unsigned left_events[MAX_NODES];  /* per subject node: transitions into LEFT */
    bool subject_down[MAX_NODES];     /* crashed on purpose: its DEAD is not false */
    unsigned false_dead;              /* DEAD of a node that is up */
    unsigned delivered[MAX_NODES];    /* per node: deliver() calls that were new */
    uint64_t seen_key[MAX_NODES];     /* per node: last key + 1 */
    uint64_t seen_mask[MAX_NODES];    /* per node: keys 1000..1063 seen */
    uint64_t event_hash;
    unsigned events;
    swim_sim_t *sim;
};

static void on_member(void *ctx, unsigned node, const swim_member_info_t *m, int old)
{
    struct watch *w = ctx;
    unsigned subj = (unsigned)(m->id - 1);
    uint64_t t = w->sim ? swim_sim_now(w->sim) : 0;
    uint64_t h = w->event_hash ^ (t * 0x9e3779b97f4a7c15ull) ^ (node * 0x85ebca6bull) ^
                 (m->id << 20) ^ ((uint64_t)m->state << 8) ^ (m->incarnation << 40) ^
                 (uint64_t)(old + 1);
    w->event_hash = h * 0x100000001b3ull;
    w->events++;
    if (subj >= MAX_NODES)
        return;
    if (m->state == SWIM_DEAD && old != SWIM_DEAD) {
        w->dead_events[subj]++;
        if (!w->subject_down[subj])
            w->false_dead++;
    }
    if (m->state == SWIM_LEFT && old != SWIM_LEFT && node != subj)
        w->left_events[subj]++;
}

static bool on_deliver(void *ctx, unsigned node, uint64_t key, const uint8_t *p, size_t len)
{
    struct watch *w = ctx;
    if (node >= MAX_NODES)
        return false;
    if (key >= 1000 && key < 1064) {
        uint64_t bit = 1ull << (key - 1000);
        if (w->seen_mask[node] & bit)
            return false;
        w->seen_mask[node] |= bit;
        w->delivered[node]++;
        return true;
    }
    if (w->seen_key[node] == key + 1)
        return false;
    w->seen_key[node] = key + 1;
    w->delivered[node]++;
    return true;
}

static swim_sim_t *make_sim(struct watch *w, unsigned nodes, uint64_t seed, double loss,
                            enum swim_sim_bootstrap boot)
{
    memset(w, 0, sizeof(*w));
    swim_sim_config_t c = {0};
    c.nodes = nodes;
    c.seed = seed;
    c.loss = loss;
    c.delay_min_ms = 1;
    c.delay_max_ms = 10;
    swim_config_defaults(&c.swim);
    c.bootstrap = boot;
    c.meta = true;
    c.ctx = w;
    c.member_changed = on_member;
    c.deliver = on_deliver;
    swim_sim_t *sim = swim_sim_new(&c);
    assert_non_null(sim);
    w->sim = sim;
    return sim;
}

/* ---- predicates ------------------------------------------------------------------------ */

struct pred {
    unsigned subject;
    int state;
    unsigned nodes;
};

/* Every up node other than the subject holds the subject in `state`. */
static bool all_see(swim_sim_t *sim, void *ctx)
{
    struct pred *p = ctx;
    for (unsigned i = 0; i < p->nodes; i++) {
        if (i == p->subject || !swim_sim_up(sim, i))
            continue;
        if (swim_sim_state(sim, i, p->subject) != p->state)
            return false;
    }
    return true;
}

/* Every up node holds every up node ALIVE. */
static bool all_alive(swim_sim_t *sim, void *ctx)
{
    struct pred *p = ctx;
    for (unsigned i = 0; i < p->nodes; i++) {
        if (!swim_sim_up(sim, i))
            continue;
        for (unsigned j = 0; j < p->nodes; j++)
            if (j != i && swim_sim_up(sim, j) && swim_sim_state(sim, i, j) != SWIM_ALIVE)
                return false;
    }
    return true;
}

/* ---- scenarios ------------------------------------------------------------------------ */

static void test_converge_seeded(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 5, 1, 0.0, SWIM_SIM_SEEDED);
    struct pred p = {.nodes = 5};
    /* Joining through one seed: the seed learns each joiner from its SYNC, the joiners learn
     * each other through gossip and push-pull. */
    assert_true(swim_sim_run_while(sim, 5000, 10, all_alive, &p));
    printf("# 5 nodes joined through one seed: all alive everywhere at %llu ms\n",
           (unsigned long long)swim_sim_now(sim));
    /* Meta travelled with the ALIVEs. */
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(swim_sim_core(sim, 3), swim_sim_id(4), &mi), 0);
    assert_int_equal(mi.meta_len, 6);
    assert_memory_equal(mi.meta, "node-4", 6);
    assert_int_equal(swim_member_count(swim_sim_core(sim, 3)), 5);
    /* And it stays so: no suspicion on a clean network. */
    swim_sim_run_until(sim, 30000);
    assert_true(all_alive(sim, &p));
    for (unsigned i = 0; i < 5; i++) {
        swim_stats_t st;
        swim_get_stats(swim_sim_core(sim, i), &st);
        assert_int_equal(st.suspicions_raised, 0);
        assert_int_equal(st.malformed, 0);
        assert_int_equal(st.local_health, 0);
        assert_true(st.probes > 100);
    }
    assert_int_equal(w.false_dead, 0);
    swim_sim_destroy(&sim);
    assert_null(sim);
}

/* The detection bound from the parameters (LHM 0, every prober independently): the crashed
 * node is probed by each member within one pass of the N-1 others plus one interval (it was
 * inserted at a random position, the pass may have just passed it: two passes worst case; one
 * pass is the expectation used here, with the other probers shortening it further), the probe
 * fails after max(interval, 3 * ack timeout), the suspicion then runs between min (K
 * confirmations: every other node fails its own probe within the same pass) and max; the
 * DEAD then spreads in a few intervals. */
static uint64_t expected_detection_ms(const swim_config_t *c, unsigned n)
{
    double interval = c->probe_interval_ms;
    double span = fmax(interval, 3.0 * c->ack_timeout_ms);
    double min_susp = c->suspicion_mult * log10(n + 1.0) * interval;
    /* With K = min(indirect, n - 2) confirmations the timeout reaches min; they arrive
     * within one pass, after which min still has to run from the first suspicion. */
    double pass = (n - 1) * interval;
    return (uint64_t)(pass + span + fmax(min_susp, pass) + 3 * interval);
}

static void test_crash_detect_restart(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 5, 2, 0.0, SWIM_SIM_FULL);
    struct pred alive = {.nodes = 5};
    swim_sim_run_until(sim, 3000);
    assert_true(all_alive(sim, &alive));

    swim_member_info_t before;
    assert_int_equal(swim_member_get(swim_sim_core(sim, 0), swim_sim_id(4), &before), 0);
    /* RTT was measured: delays are 1..10 ms each way. */
    assert_true(before.rtt_ms >= 2 && before.rtt_ms <= 20);

    uint64_t t0 = swim_sim_now(sim);
    w.subject_down[4] = true;
    swim_sim_crash(sim, 4);
    struct pred dead = {.subject = 4, .state = SWIM_DEAD, .nodes = 5};
    swim_config_t c;
    swim_config_defaults(&c);
    uint64_t bound = expected_detection_ms(&c, 5);
    assert_true(swim_sim_run_while(sim, t0 + 20000, 10, all_see, &dead));
    uint64_t took = swim_sim_now(sim) - t0;
    printf("# crash of 1 of 5: DEAD everywhere after %llu ms (expected bound %llu ms)\n",
           (unsigned long long)took, (unsigned long long)bound);
    assert_true(took <= bound);
    assert_true(took <= 3000);
    assert_int_equal(w.false_dead, 0);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(w.dead_events[i], 0);

    /* Restart at incarnation 0: the mesh holds it DEAD at its old incarnation; the first
     * ACK it gets (buddy entry) or its first SYNC tells it so, and it outbids that. */
    uint64_t t1 = swim_sim_now(sim);
    w.subject_down[4] = false;
    swim_sim_restart(sim, 4);
    struct pred back = {.subject = 4, .state = SWIM_ALIVE, .nodes = 5};
    assert_true(swim_sim_run_while(sim, t1 + 5000, 10, all_see, &back));
    printf("# restart: ALIVE everywhere again after %llu ms\n",
           (unsigned long long)(swim_sim_now(sim) - t1));
    swim_member_info_t after;
    assert_int_equal(swim_member_get(swim_sim_core(sim, 0), swim_sim_id(4), &after), 0);
    assert_true(after.incarnation > before.incarnation);
    swim_stats_t st;
    swim_get_stats(swim_sim_core(sim, 4), &st);
    assert_int_equal(st.incarnation, after.incarnation);
    assert_true(all_alive(sim, &alive));
    swim_sim_destroy(&sim);
}

/* Encodes a complete message with the given piggyback updates (test helper). */
static size_t build_msg(uint8_t *out, size_t cap, const struct swim_msg *h,
                        const struct swim_sync_entry *members, unsigned nmembers,
                        const struct swim_update *pb, unsigned npb)
{
    struct swim_wbuf b;
    swim_wbuf_init(&b, cap);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, swim_wbuf_write);
    swim_wire_pack_head(&pk, h);
    if (h->type == SWIM_MSG_SYNC || h->type == SWIM_MSG_SYNC_REPLY) {
        msgpack_pack_array(&pk, nmembers);
        for (unsigned i = 0; i < nmembers; i++)
            swim_wire_pack_sync_entry(&pk, &members[i]);
    }
    msgpack_pack_array(&pk, npb);
    for (unsigned i = 0; i < npb; i++)
        swim_wire_pack_update(&pk, &pb[i]);
    assert_false(b.overflow);
    memcpy(out, b.p, b.len);
    size_t n = b.len;
    swim_wbuf_free(&b);
    return n;
}

static void test_refute_false_suspicion(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 5, 3, 0.0, SWIM_SIM_FULL);
    swim_sim_run_until(sim, 3000);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(swim_sim_core(sim, 0), swim_sim_id(2), &mi), 0);
    uint64_t inc = mi.incarnation;

    /* Node 1 "says" node 2 is suspect, in the piggyback of a stray ACK to node 0. */
    struct swim_update u = {.kind = SWIM_UPD_SUSPECT,
                            .id = swim_sim_id(2),
                            .incarnation = inc,
                            .from = swim_sim_id(1)};
    struct swim_msg h = {.type = SWIM_MSG_ACK, .seq = 999999};
    uint8_t buf[256];
    size_t n = build_msg(buf, sizeof(buf), &h, NULL, 0, &u, 1);
    assert_int_equal(swim_sim_inject(sim, swim_sim_id(1), 0, buf, n), 0);
    assert_int_equal(swim_sim_state(sim, 0, 2), SWIM_SUSPECT);

    struct pred p = {.subject = 2, .state = SWIM_ALIVE, .nodes = 5};
    uint64_t t0 = swim_sim_now(sim);
    assert_true(swim_sim_run_while(sim, t0 + 5000, 10, all_see, &p));
    printf("# false suspicion refuted everywhere after %llu ms\n",
           (unsigned long long)(swim_sim_now(sim) - t0));
    for (unsigned i = 0; i < 5; i++) {
        if (i == 2)
            continue;
        assert_int_equal(swim_member_get(swim_sim_core(sim, i), swim_sim_id(2), &mi), 0);
        assert_int_equal(mi.incarnation, inc + 1);
    }
    swim_stats_t st;
    swim_get_stats(swim_sim_core(sim, 2), &st);
    assert_int_equal(st.incarnation, inc + 1);
    assert_int_equal(st.suspicions_refuted, 1);
    swim_sim_run_until(sim, swim_sim_now(sim) + 10000);
    assert_int_equal(w.dead_events[2], 0);
    assert_int_equal(w.false_dead, 0);
    swim_sim_destroy(&sim);
}

static void lossy_run(unsigned nodes, uint64_t seed)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, nodes, seed, 0.0, SWIM_SIM_FULL);
    swim_sim_run_until(sim, 2000);
    swim_sim_set_loss(sim, 0.10);
    swim_sim_run_until(sim, 122000);
    uint64_t suspicions = 0, refuted = 0, failures = 0, probes = 0;
    unsigned max_lhm = 0;
    for (unsigned i = 0; i < nodes; i++) {
        swim_stats_t st;
        swim_get_stats(swim_sim_core(sim, i), &st);
        suspicions += st.suspicions_raised;
        refuted += st.suspicions_refuted;
        failures += st.probe_failures;
        probes += st.probes;
        if (st.local_health > max_lhm)
            max_lhm = st.local_health;
    }
    swim_sim_stats_t ss;
    swim_sim_get_stats(sim, &ss);
    printf("# %u nodes, 10%% loss, 120 s: %llu probes, %llu failed, %llu suspicions, %llu "
           "refutations, %u false DEAD (%llu messages dropped of %llu)\n",
           nodes, (unsigned long long)probes, (unsigned long long)failures,
           (unsigned long long)suspicions, (unsigned long long)refuted, w.false_dead,
           (unsigned long long)ss.dropped, (unsigned long long)ss.sent);
    /* The test can fail: the loss does cause probe failures and suspicions... */
    assert_true(failures > 0);
    assert_true(ss.dropped > ss.sent / 20);
    /* ...but Lifeguard and refutation keep every node alive. */
    assert_int_equal(w.false_dead, 0);
    struct pred p = {.nodes = nodes};
    swim_sim_set_loss(sim, 0.0);
    assert_true(swim_sim_run_while(sim, swim_sim_now(sim) + 10000, 50, all_alive, &p));
    swim_sim_destroy(&sim);
}

static void test_lossy_10(void **state)
{
    lossy_run(10, 4);
}

static void test_lossy_20(void **state)
{
    lossy_run(20, 5);
}

static bool sides_see_other_dead(swim_sim_t *sim, void *ctx)
{
    for (unsigned i = 0; i < 5; i++)
        for (unsigned j = 0; j < 5; j++)
            if ((i < 3) != (j < 3) && swim_sim_state(sim, i, j) != SWIM_DEAD)
                return false;
    return true;
}

static void test_partition_heal(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 5, 6, 0.0, SWIM_SIM_SEEDED);
    struct pred p = {.nodes = 5};
    assert_true(swim_sim_run_while(sim, 5000, 10, all_alive, &p));
    for (unsigned i = 3; i < 5; i++)
        swim_sim_set_group(sim, i, 1);
    uint64_t t0 = swim_sim_now(sim);
    assert_true(swim_sim_run_while(sim, t0 + 30000, 50, sides_see_other_dead, NULL));
    printf("# partition 3|2: each side holds the other dead after %llu ms\n",
           (unsigned long long)(swim_sim_now(sim) - t0));
    /* Stay apart long enough for the DEAD updates to finish spreading and go quiet. */
    swim_sim_run_until(sim, swim_sim_now(sim) + 20000);
    assert_true(sides_see_other_dead(sim, NULL));
    for (unsigned i = 3; i < 5; i++)
        swim_sim_set_group(sim, i, 0);
    uint64_t t1 = swim_sim_now(sim);
    /* Healing relies on the dead-member re-probe (one per dead_probe_ms per node) and the
     * seed re-contact (every push-pull period): bound it by two of the former plus the
     * refutation's spread. */
    swim_config_t c;
    swim_config_defaults(&c);
    uint64_t bound = 2 * c.dead_probe_ms + 10 * c.probe_interval_ms;
    assert_true(swim_sim_run_while(sim, t1 + 60000, 10, all_alive, &p));
    uint64_t took = swim_sim_now(sim) - t1;
    printf("# healed: all 5 alive everywhere after %llu ms (bound %llu ms)\n",
           (unsigned long long)took, (unsigned long long)bound);
    assert_true(took <= bound);
    /* And it holds. */
    swim_sim_run_until(sim, swim_sim_now(sim) + 20000);
    assert_true(all_alive(sim, &p));
    swim_sim_destroy(&sim);
}

static void test_leave(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 5, 7, 0.0, SWIM_SIM_FULL);
    swim_sim_run_until(sim, 3000);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(swim_sim_core(sim, 0), swim_sim_id(3), &mi), 0);
    uint64_t inc = mi.incarnation;
    w.subject_down[3] = true; /* gone on purpose; a DEAD would still be counted below */
    swim_sim_leave(sim, 3);
    uint32_t drain = swim_leave_drain_ms(swim_sim_core(sim, 3));
    assert_true(drain > 0 && drain < 10000);
    swim_sim_run_until(sim, swim_sim_now(sim) + drain);
    swim_sim_crash(sim, 3);
    struct pred p = {.subject = 3, .state = SWIM_LEFT, .nodes = 5};
    assert_true(all_see(sim, &p));
    assert_int_equal(swim_member_get(swim_sim_core(sim, 0), swim_sim_id(3), &mi), 0);
    assert_int_equal(mi.incarnation, inc + 1);
    /* Long after: still LEFT, never DEAD, no accusations of it. */
    swim_sim_run_until(sim, swim_sim_now(sim) + 30000);
    assert_true(all_see(sim, &p));
    assert_int_equal(w.dead_events[3], 0);
    assert_int_equal(w.left_events[3], 4);
    assert_int_equal(w.false_dead, 0);
    for (unsigned i = 0; i < 5; i++) {
        if (i == 3)
            continue;
        swim_stats_t st;
        swim_get_stats(swim_sim_core(sim, i), &st);
        assert_int_equal(st.suspicions_raised, 0);
    }
    swim_sim_destroy(&sim);
}

static void broadcast_run(unsigned nodes, uint64_t seed)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, nodes, seed, 0.0, SWIM_SIM_FULL);
    swim_sim_run_until(sim, 5000); /* the startup ALIVEs drain */
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)i;
    assert_int_equal(swim_broadcast(swim_sim_core(sim, 0), 42, payload, sizeof(payload)), 0);
    /* A newer broadcast with the same key replaces the queued one. */
    payload[0] = 0xee;
    assert_int_equal(swim_broadcast(swim_sim_core(sim, 0), 42, payload, sizeof(payload)), 0);
    assert_int_equal(swim_broadcast(swim_sim_core(sim, 0), 43, payload, SWIM_PAYLOAD_MAX + 1),
                     -E2BIG);
    uint64_t t0 = swim_sim_now(sim);
    uint64_t done = 0;
    for (uint64_t t = t0; t < t0 + 20000 && !done; t += 10) {
        swim_sim_run_until(sim, t);
        unsigned have = 0;
        for (unsigned i = 1; i < nodes; i++)
            have += w.delivered[i] > 0;
        if (have == nodes - 1)
            done = t;
    }
    assert_true(done);
    printf("# broadcast to %u nodes: delivered everywhere after %llu ms\n", nodes,
           (unsigned long long)(done - t0));
    /* Each node delivered it exactly once (the replaced version never went out). */
    for (unsigned i = 1; i < nodes; i++)
        assert_int_equal(w.delivered[i], 1);
    /* Retransmission stops: after the limit every queue is empty and traffic is just
     * probes (no more deliveries of anything). */
    swim_sim_run_until(sim, swim_sim_now(sim) + 20000);
    for (unsigned i = 0; i < nodes; i++) {
        swim_stats_t st;
        swim_get_stats(swim_sim_core(sim, i), &st);
        assert_int_equal(st.queued_broadcasts, 0);
    }
    swim_sim_stats_t a, b;
    swim_sim_get_stats(sim, &a);
    swim_sim_run_until(sim, swim_sim_now(sim) + 10000);
    swim_sim_get_stats(sim, &b);
    /* Quiet mesh: each node sends about one ping and one ack per interval, small ones. */
    double per_msg = (double)(b.bytes - a.bytes) / (double)(b.sent - a.sent);
    assert_true(per_msg < 32);
    swim_sim_destroy(&sim);
}

static void test_broadcast_10(void **state)
{
    broadcast_run(10, 8);
}

static void test_broadcast_100(void **state)
{
    broadcast_run(100, 9);
}

/* One scenario with crash, loss, a leave and a broadcast; returns the event hash. */
static uint64_t determinism_run(uint64_t seed, swim_sim_stats_t *ss, swim_stats_t *st0)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 8, seed, 0.05, SWIM_SIM_SEEDED);
    swim_sim_run_until(sim, 5000);
    swim_broadcast(swim_sim_core(sim, 2), 7, (const uint8_t *)"x", 1);
    swim_sim_crash(sim, 5);
    swim_sim_run_until(sim, 15000);
    swim_sim_leave(sim, 6);
    swim_sim_run_until(sim, 20000);
    swim_sim_restart(sim, 5);
    swim_sim_run_until(sim, 30000);
    swim_sim_get_stats(sim, ss);
    swim_get_stats(swim_sim_core(sim, 0), st0);
    uint64_t h = w.event_hash ^ w.events;
    swim_sim_destroy(&sim);
    return h;
}

static void test_determinism(void **state)
{
    swim_sim_stats_t a, b, c;
    swim_stats_t sa, sb, sc;
    uint64_t ha = determinism_run(11, &a, &sa);
    uint64_t hb = determinism_run(11, &b, &sb);
    uint64_t hc = determinism_run(12, &c, &sc);
    assert_int_equal(ha, hb);
    assert_memory_equal(&a, &b, sizeof(a));
    assert_memory_equal(&sa, &sb, sizeof(sa));
    /* A different seed gives a different run (so the comparison above means something). */
    assert_true(ha != hc || memcmp(&a, &c, sizeof(a)) != 0);
}

/* ---- bad input ------------------------------------------------------------------------ */

/* A fingerprint of everything observable: member states, incarnations, meta, stats (minus
 * the malformed counter, which must move). */
static void fp_member(const swim_member_info_t *m, void *ctx)
{
    uint64_t *h = ctx;
    uint64_t x = m->id * 31 + m->state * 7 + m->incarnation * 131 + m->meta_len;
    for (size_t i = 0; i < m->meta_len; i++)
        x = x * 33 + m->meta[i];
    *h = (*h ^ x) * 0x100000001b3ull;
}

static uint64_t fingerprint(swim_t *s)
{
    uint64_t h = 1469598103934665603ull;
    swim_foreach(s, fp_member, &h);
    swim_stats_t st;
    swim_get_stats(s, &st);
    st.malformed = 0;
    const uint8_t *p = (const uint8_t *)&st;
    for (size_t i = 0; i < sizeof(st); i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h ^ swim_next_deadline(s);
}

struct sent_log {
    unsigned count;
};

static void count_send(void *ctx, uint64_t dest, const uint8_t *msg, size_t len)
{
    ((struct sent_log *)ctx)->count++;
}

static swim_t *lone_core(struct sent_log *log)
{
    swim_config_t c;
    swim_config_defaults(&c);
    c.self_id = 1;
    c.rng_seed = 5;
    swim_io_t io = {.ctx = log, .send = count_send};
    swim_t *s = swim_new(&c, &io, (const uint8_t *)"me", 2, 1000);
    assert_non_null(s);
    for (uint64_t id = 2; id <= 4; id++)
        assert_int_equal(swim_add_member(s, id, NULL, 0, id == 2, 1000), 0);
    return s;
}

static void expect_bad(swim_t *s, struct sent_log *log, const uint8_t *msg, size_t len)
{
    uint64_t before = fingerprint(s);
    swim_stats_t a, b;
    swim_get_stats(s, &a);
    unsigned sent = log->count;
    /* Exact-size heap copy: ASan sees any read past the end. */
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, msg, len);
    assert_int_equal(swim_receive(s, 3, copy, len, 1500), -EBADMSG);
    free(copy);
    swim_get_stats(s, &b);
    assert_int_equal(b.malformed, a.malformed + 1);
    assert_int_equal(fingerprint(s), before);
    assert_int_equal(log->count, sent);
}

static void test_bad_input(void **state)
{
    struct sent_log log = {0};
    swim_t *s = lone_core(&log);
    uint8_t meta[SWIM_META_MAX + 1];
    memset(meta, 'm', sizeof(meta));
    struct swim_update pb[] = {
        {.kind = SWIM_UPD_ALIVE, .id = 9, .incarnation = 3, .data = meta, .len = 10},
        {.kind = SWIM_UPD_SUSPECT, .id = 2, .incarnation = 0, .from = 4},
        {.kind = SWIM_UPD_DEAD, .id = 3, .incarnation = 5, .from = 4},
        {.kind = SWIM_UPD_LEFT, .id = 4, .incarnation = 1},
        {.kind = SWIM_UPD_APP, .id = 0, .data = meta, .len = 20},
    };
    struct swim_sync_entry members[] = {
        {.id = 2, .incarnation = 7, .state = SWIM_ALIVE, .meta = meta, .meta_len = 5},
        {.id = 12, .incarnation = 1, .state = SWIM_SUSPECT},
    };
    struct swim_msg heads[] = {
        {.type = SWIM_MSG_PING, .seq = 1, .target = 1},
        {.type = SWIM_MSG_ACK, .seq = 2},
        {.type = SWIM_MSG_PING_REQ, .seq = 3, .target = 2, .timeout_ms = 100},
        {.type = SWIM_MSG_NACK, .seq = 4},
        {.type = SWIM_MSG_SYNC, .chunk = 0},
        {.type = SWIM_MSG_SYNC_REPLY, .chunk = 1},
    };
    uint8_t buf[4096];
    /* Every valid message truncated at every length is refused and changes nothing. */
    for (size_t k = 0; k < sizeof(heads) / sizeof(heads[0]); k++) {
        size_t n = build_msg(buf, sizeof(buf), &heads[k], members, 2, pb, 5);
        struct swim_msg m;
        assert_int_equal(swim_wire_decode(buf, n, &m), 0);
        assert_int_equal(m.pb_count, 5);
        for (size_t cut = 0; cut < n; cut++)
            expect_bad(s, &log, buf, cut);
        /* One trailing byte too. */
        buf[n] = 0xc0;
        expect_bad(s, &log, buf, n + 1);
    }

    /* Garbage. */
    static const uint8_t garbage[][8] = {{0xc1}, {0xff, 0xff}, {0x90}, {0x80}, {0xc0},
                                         {0x01, 0x02, 0x03}, {0xa3, 'a', 'b', 'c'}};
    static const size_t garbage_len[] = {1, 2, 1, 1, 1, 3, 4};
    for (size_t i = 0; i < sizeof(garbage_len) / sizeof(garbage_len[0]); i++)
        expect_bad(s, &log, garbage[i], garbage_len[i]);
    expect_bad(s, &log, NULL, 0);

    /* Huge declared counts: the outer array, the piggyback list, a SYNC member list. */
    static const uint8_t huge_outer[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01};
    expect_bad(s, &log, huge_outer, sizeof(huge_outer));
    static const uint8_t huge_pb[] = {0x94, 0x01, 0x02, 0x05, 0xdd, 0x7f, 0xff, 0xff, 0xff};
    expect_bad(s, &log, huge_pb, sizeof(huge_pb));
    static const uint8_t huge_sync[] = {0x95, 0x01, 0x05, 0x00, 0xdd, 0x00, 0x10, 0x00, 0x00,
                                        0x90};
    expect_bad(s, &log, huge_sync, sizeof(huge_sync));
    /* Declared counts that fit the bytes but exceed the caps. */
    {
        size_t n = 0;
        uint8_t *big = malloc(8 + 4 * (SWIM_PIGGYBACK_MAX + 1) + 8);
        assert_non_null(big);
        big[n++] = 0x94;
        big[n++] = 0x01;
        big[n++] = 0x02;
        big[n++] = 0x05;
        big[n++] = 0xdc;
        big[n++] = (SWIM_PIGGYBACK_MAX + 1) >> 8;
        big[n++] = (SWIM_PIGGYBACK_MAX + 1) & 0xff;
        for (unsigned i = 0; i < SWIM_PIGGYBACK_MAX + 1; i++) {
            big[n++] = 0x93; /* [3, 9, 0]: LEFT of member 9 */
            big[n++] = 0x03;
            big[n++] = 0x09;
            big[n++] = 0x00;
        }
        expect_bad(s, &log, big, n);
        free(big);
    }

    /* Wrong version, unknown type, wrong arity. */
    static const uint8_t wrong_version[] = {0x94, 0x02, 0x02, 0x05, 0x90};
    expect_bad(s, &log, wrong_version, sizeof(wrong_version));
    static const uint8_t unknown_type[] = {0x94, 0x01, 0x07, 0x05, 0x90};
    expect_bad(s, &log, unknown_type, sizeof(unknown_type));
    static const uint8_t type_zero[] = {0x94, 0x01, 0x00, 0x05, 0x90};
    expect_bad(s, &log, type_zero, sizeof(type_zero));
    static const uint8_t ack_extra[] = {0x95, 0x01, 0x02, 0x05, 0x05, 0x90};
    expect_bad(s, &log, ack_extra, sizeof(ack_extra));
    static const uint8_t seq_too_big[] = {0x94, 0x01, 0x02, 0xcf, 1, 0, 0, 0, 0, 0, 0, 0, 0x90};
    expect_bad(s, &log, seq_too_big, sizeof(seq_too_big));
    static const uint8_t ping_target_zero[] = {0x95, 0x01, 0x01, 0x05, 0x00, 0x90};
    expect_bad(s, &log, ping_target_zero, sizeof(ping_target_zero));

    /* Bad piggyback entries inside an otherwise fine ACK; the good entry before each bad
     * one must not be applied either. */
    struct swim_update bad_entries[] = {
        {.kind = SWIM_UPD_ALIVE, .id = 9, .incarnation = 1, .data = meta,
         .len = SWIM_META_MAX + 1}, /* oversized meta */
        {.kind = SWIM_UPD_ALIVE, .id = 0, .incarnation = 1},       /* id 0 */
        {.kind = SWIM_UPD_SUSPECT, .id = 2, .incarnation = 1, .from = 0}, /* from 0 */
        {.kind = SWIM_UPD_DEAD, .id = 2, .incarnation = SWIM_INCARNATION_MAX + 1, .from = 3},
    };
    for (size_t i = 0; i < sizeof(bad_entries) / sizeof(bad_entries[0]); i++) {
        struct swim_update two[2] = {pb[0], bad_entries[i]};
        struct swim_msg h = {.type = SWIM_MSG_ACK, .seq = 1};
        size_t n = build_msg(buf, sizeof(buf), &h, NULL, 0, two, 2);
        expect_bad(s, &log, buf, n);
    }
    /* Unknown piggyback kind, and an APP payload over the limit (hand-built). */
    static const uint8_t kind9[] = {0x94, 0x01, 0x02, 0x05, 0x91, 0x93, 0x09, 0x01, 0x01};
    expect_bad(s, &log, kind9, sizeof(kind9));
    {
        size_t n = 0;
        static uint8_t big[SWIM_PAYLOAD_MAX + 32];
        big[n++] = 0x94;
        big[n++] = 0x01;
        big[n++] = 0x02;
        big[n++] = 0x05;
        big[n++] = 0x91;
        big[n++] = 0x93;
        big[n++] = 0x04;
        big[n++] = 0x01;
        big[n++] = 0xc5; /* bin16 */
        big[n++] = (SWIM_PAYLOAD_MAX + 1) >> 8;
        big[n++] = (SWIM_PAYLOAD_MAX + 1) & 0xff;
        memset(big + n, 'p', SWIM_PAYLOAD_MAX + 1);
        n += SWIM_PAYLOAD_MAX + 1;
        expect_bad(s, &log, big, n);
    }
    /* SYNC with an oversized meta and with a bad state. */
    {
        struct swim_sync_entry e = {.id = 5, .incarnation = 1, .state = SWIM_ALIVE,
                                    .meta = meta, .meta_len = SWIM_META_MAX + 1};
        struct swim_msg h = {.type = SWIM_MSG_SYNC};
        uint8_t big[2048];
        size_t n = build_msg(big, sizeof(big), &h, &e, 1, NULL, 0);
        expect_bad(s, &log, big, n);
        e.meta_len = 0;
        e.state = (enum swim_state)4;
        n = build_msg(big, sizeof(big), &h, &e, 1, NULL, 0);
        expect_bad(s, &log, big, n);
    }
    /* A message over SWIM_MSG_MAX is refused before it is read. */
    {
        uint8_t *big = calloc(1, SWIM_MSG_MAX + 1);
        assert_non_null(big);
        expect_bad(s, &log, big, SWIM_MSG_MAX + 1);
        free(big);
    }

    /* The valid ones are accepted (so the checks above are not refusing everything). */
    swim_stats_t st;
    swim_get_stats(s, &st);
    uint64_t malformed = st.malformed;
    for (size_t k = 0; k < sizeof(heads) / sizeof(heads[0]); k++) {
        size_t n = build_msg(buf, sizeof(buf), &heads[k], members, 2, pb, 5);
        assert_int_equal(swim_receive(s, 3, buf, n, 1500), 0);
    }
    swim_get_stats(s, &st);
    assert_int_equal(st.malformed, malformed);
    assert_int_equal(st.msgs_received, 6);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(s, 9, &mi), 0); /* learned from the ALIVE */
    assert_int_equal(mi.incarnation, 3);
    assert_int_equal(swim_member_get(s, 3, &mi), 0);
    assert_int_equal(mi.state, SWIM_DEAD);
    assert_int_equal(swim_member_get(s, 4, &mi), 0);
    assert_int_equal(mi.state, SWIM_LEFT);
    /* The SYNC said self? No; but it said 2 is ALIVE at 7: higher incarnation wins. */
    assert_int_equal(swim_member_get(s, 2, &mi), 0);
    assert_int_equal(mi.incarnation, 7);
    assert_int_equal(mi.state, SWIM_ALIVE);

    /* From 0 or from self: -EINVAL, not counted as malformed. */
    size_t n = build_msg(buf, sizeof(buf), &heads[1], NULL, 0, NULL, 0);
    assert_int_equal(swim_receive(s, 0, buf, n, 1500), -EINVAL);
    assert_int_equal(swim_receive(s, 1, buf, n, 1500), -EINVAL);
    swim_destroy(&s);
    assert_null(s);
    swim_destroy(&s); /* NULL is fine */
}

static void test_removed_member(void **state)
{
    struct sent_log log = {0};
    swim_t *s = lone_core(&log);
    assert_int_equal(swim_member_count(s), 4);
    assert_int_equal(swim_remove_member(s, 3), 0);
    assert_int_equal(swim_member_count(s), 3);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(s, 3, &mi), -ENOENT);
    uint8_t buf[256];
    struct swim_msg h = {.type = SWIM_MSG_PING, .seq = 1, .target = 1};
    size_t n = build_msg(buf, sizeof(buf), &h, NULL, 0, NULL, 0);
    assert_int_equal(swim_receive(s, 3, buf, n, 1500), -EPERM);
    swim_stats_t st;
    swim_get_stats(s, &st);
    assert_int_equal(st.from_removed, 1);
    /* Updates about it from others are ignored too. */
    struct swim_update u = {.kind = SWIM_UPD_ALIVE, .id = 3, .incarnation = 9};
    n = build_msg(buf, sizeof(buf), &h, NULL, 0, &u, 1);
    assert_int_equal(swim_receive(s, 2, buf, n, 1500), 0);
    assert_int_equal(swim_member_get(s, 3, &mi), -ENOENT);
    /* The registry admits it again. */
    assert_int_equal(swim_add_member(s, 3, NULL, 0, false, 1600), 0);
    assert_int_equal(swim_receive(s, 3, buf, n, 1700), 0);
    /* API argument checks. */
    assert_int_equal(swim_remove_member(s, 77), -ENOENT);
    assert_int_equal(swim_remove_member(s, 1), -EINVAL);
    assert_int_equal(swim_add_member(s, 1, NULL, 0, false, 0), -EINVAL);
    assert_int_equal(swim_add_member(s, 0, NULL, 0, false, 0), -EINVAL);
    assert_int_equal(swim_add_member(s, 2, NULL, 0, false, 0), -EEXIST);
    uint8_t meta[SWIM_META_MAX + 1] = {0};
    assert_int_equal(swim_add_member(s, 50, meta, sizeof(meta), false, 0), -E2BIG);
    assert_int_equal(swim_set_meta(s, meta, sizeof(meta)), -E2BIG);
    assert_int_equal(swim_set_meta(s, meta, 3), 0);
    swim_get_stats(s, &st);
    assert_int_equal(st.incarnation, 1);
    swim_destroy(&s);

    swim_config_t c;
    swim_config_defaults(&c);
    swim_io_t io = {.ctx = &log, .send = count_send};
    errno = 0;
    assert_null(swim_new(&c, &io, NULL, 0, 0)); /* self_id 0 */
    assert_int_equal(errno, EINVAL);
    c.self_id = 1;
    assert_null(swim_new(&c, &io, meta, sizeof(meta), 0));
    assert_int_equal(errno, E2BIG);
}

/* The piggyback budget holds, and least-transmitted entries go first. */
static void test_piggyback_budget(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 10, 13, 0.0, SWIM_SIM_FULL);
    swim_sim_run_until(sim, 3000);
    swim_t *s0 = swim_sim_core(sim, 0);
    /* 40 broadcasts of 1000 bytes: far more than one 16 KiB piggyback holds. */
    uint8_t payload[1000];
    memset(payload, 'b', sizeof(payload));
    for (uint64_t k = 0; k < 40; k++)
        assert_int_equal(swim_broadcast(s0, 1000 + k, payload, sizeof(payload)), 0);
    swim_stats_t st;
    swim_get_stats(s0, &st);
    assert_true(st.queued_broadcasts >= 40);
    swim_sim_stats_t a, b;
    swim_sim_get_stats(sim, &a);
    uint64_t sent0 = st.msgs_sent, bytes0 = st.bytes_sent;
    swim_sim_run_until(sim, 3400); /* about two probes and their acks */
    swim_get_stats(s0, &st);
    swim_sim_get_stats(sim, &b);
    uint64_t msgs = st.msgs_sent - sent0;
    assert_true(msgs > 0);
    /* No message of node 0 exceeded the budget (plus a small header). */
    assert_true((st.bytes_sent - bytes0) <= msgs * (16384 + 64));
    /* Broadcasts are independent keys: every node gets all 40, and the queues drain. */
    swim_sim_run_until(sim, 30000);
    for (unsigned i = 0; i < 10; i++) {
        swim_get_stats(swim_sim_core(sim, i), &st);
        assert_int_equal(st.queued_broadcasts, 0);
        if (i)
            assert_int_equal(w.delivered[i], 40);
    }
    swim_sim_destroy(&sim);
}

/* Every message type and update kind survives encode -> decode unchanged. With
 * SWIM_CORPUS_DIR set, the messages are also written there: that is how
 * tests/fuzz/corpus/fuzz_swim/ was made. */
static void test_wire_roundtrip(void **state)
{
    static const uint8_t meta[] = "region=eu-west;addr=10.0.0.7:4000";
    struct swim_update pb[] = {
        {.kind = SWIM_UPD_ALIVE, .id = 2, .incarnation = 4, .data = meta, .len = sizeof(meta)},
        {.kind = SWIM_UPD_SUSPECT, .id = 3, .incarnation = 1, .from = 4},
        {.kind = SWIM_UPD_DEAD, .id = 4, .incarnation = 2, .from = 2},
        {.kind = SWIM_UPD_LEFT, .id = 5, .incarnation = 9},
        {.kind = SWIM_UPD_APP, .id = 77, .data = meta, .len = 10},
        {.kind = SWIM_UPD_SUSPECT, .id = 1, .incarnation = 0, .from = 3}, /* about the fuzz core */
    };
    struct swim_sync_entry members[] = {
        {.id = 2, .incarnation = 4, .state = SWIM_ALIVE, .meta = meta, .meta_len = 8},
        {.id = 3, .incarnation = 1, .state = SWIM_SUSPECT},
        {.id = 4, .incarnation = 2, .state = SWIM_DEAD},
        {.id = 5, .incarnation = 9, .state = SWIM_LEFT},
        {.id = 1, .incarnation = 3, .state = SWIM_DEAD},
    };
    struct {
        const char *name;
        struct swim_msg h;
        unsigned npb;
    } msgs[] = {
        {"ping", {.type = SWIM_MSG_PING, .seq = 7, .target = 1}, 2},
        {"ping_buddy", {.type = SWIM_MSG_PING, .seq = 8, .target = 1}, 6},
        {"ack", {.type = SWIM_MSG_ACK, .seq = 1}, 5},
        {"ping_req", {.type = SWIM_MSG_PING_REQ, .seq = 9, .target = 4, .timeout_ms = 100}, 1},
        {"nack", {.type = SWIM_MSG_NACK, .seq = 9}, 0},
        {"sync", {.type = SWIM_MSG_SYNC, .chunk = 0}, 2},
        {"sync_reply", {.type = SWIM_MSG_SYNC_REPLY, .chunk = 0}, 1},
    };
    const char *dir = getenv("SWIM_CORPUS_DIR");
    for (size_t k = 0; k < sizeof(msgs) / sizeof(msgs[0]); k++) {
        uint8_t buf[2048];
        const struct swim_update *list = msgs[k].npb == 6 ? pb : pb + (k % 2);
        unsigned npb = msgs[k].npb == 6 ? 6 : msgs[k].npb;
        size_t n = build_msg(buf, sizeof(buf), &msgs[k].h, members, 5, list, npb);
        struct swim_msg m;
        assert_int_equal(swim_wire_decode(buf, n, &m), 0);
        assert_int_equal(m.type, msgs[k].h.type);
        assert_int_equal(m.seq, msgs[k].h.seq);
        assert_int_equal(m.target, msgs[k].h.target);
        assert_int_equal(m.timeout_ms, msgs[k].h.timeout_ms);
        assert_int_equal(m.pb_count, npb);
        for (unsigned i = 0; i < npb; i++) {
            struct swim_update u;
            assert_int_equal(swim_wire_next_update(&m.piggyback, &u), 0);
            assert_int_equal(u.kind, list[i].kind);
            assert_int_equal(u.id, list[i].id);
            assert_int_equal(u.incarnation, list[i].incarnation);
            assert_int_equal(u.from, list[i].from);
            assert_int_equal(u.len, list[i].len);
            if (u.len)
                assert_memory_equal(u.data, list[i].data, u.len);
        }
        if (m.type == SWIM_MSG_SYNC || m.type == SWIM_MSG_SYNC_REPLY) {
            assert_int_equal(m.member_count, 5);
            for (unsigned i = 0; i < 5; i++) {
                struct swim_sync_entry e;
                assert_int_equal(swim_wire_next_sync(&m.members, &e), 0);
                assert_int_equal(e.id, members[i].id);
                assert_int_equal(e.incarnation, members[i].incarnation);
                assert_int_equal(e.state, members[i].state);
                assert_int_equal(e.meta_len, members[i].meta_len);
            }
        }
        if (dir) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", dir, msgs[k].name);
            FILE *f = fopen(path, "wb");
            assert_non_null(f);
            assert_int_equal(fwrite(buf, 1, n, f), n);
            fclose(f);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converge_seeded),
        cmocka_unit_test(test_crash_detect_restart),
        cmocka_unit_test(test_refute_false_suspicion),
        cmocka_unit_test(test_lossy_10),
        cmocka_unit_test(test_lossy_20),
        cmocka_unit_test(test_partition_heal),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_broadcast_10),
        cmocka_unit_test(test_broadcast_100),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_removed_member),
        cmocka_unit_test(test_piggyback_budget),
        cmocka_unit_test(test_wire_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
