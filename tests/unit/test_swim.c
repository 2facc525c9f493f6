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
    unsigned dead_events[MAX_NODES]; /* per subject node: transitions into DEAD */
    unsigned left_events[MAX_NODES]; /* per subject node: transitions into LEFT */
    bool subject_down[MAX_NODES];    /* crashed on purpose: its DEAD is not false */
    unsigned false_dead;             /* DEAD of a node that is up */
    unsigned delivered[MAX_NODES];   /* per node: deliver() calls that were new */
    uint64_t seen_key[MAX_NODES];    /* per node: last key + 1 */
    uint64_t seen_mask[MAX_NODES];   /* per node: keys 1000..1063 seen */
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

static swim_sim_t *make_sim_cfg(struct watch *w, unsigned nodes, uint64_t seed, double loss,
                                enum swim_sim_bootstrap boot, const swim_config_t *swim)
{
    memset(w, 0, sizeof(*w));
    swim_sim_config_t c = {0};
    c.nodes = nodes;
    c.seed = seed;
    c.loss = loss;
    c.delay_min_ms = 1;
    c.delay_max_ms = 10;
    if (swim)
        c.swim = *swim;
    else
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

static swim_sim_t *make_sim(struct watch *w, unsigned nodes, uint64_t seed, double loss,
                            enum swim_sim_bootstrap boot)
{
    return make_sim_cfg(w, nodes, seed, loss, boot, NULL);
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
 * confirmations: every other node fails its own probe within the same pass) and max, plus
 * the last-chance ping's wait of two ack timeouts; the DEAD then spreads in a few intervals. */
static uint64_t expected_detection_ms(const swim_config_t *c, unsigned n)
{
    double interval = c->probe_interval_ms;
    double span = fmax(interval, 3.0 * c->ack_timeout_ms);
    double min_susp = c->suspicion_mult * log10(n + 1.0) * interval;
    /* With K = min(indirect, n - 2) confirmations the timeout reaches min; they arrive
     * within one pass, after which min still has to run from the first suspicion. */
    double pass = (n - 1) * interval;
    return (uint64_t)(pass + span + fmax(min_susp, pass) + 2.0 * c->ack_timeout_ms + 3 * interval);
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

/* Crashes in a 10-node mesh shrink the transmit limit (lambda * ceil(log10(N + 1)) goes from
 * 8 to 4 at 9 live members) while suspicion updates about the crashed nodes sit in queues
 * and are handed to them as buddy entries: the path where entries above the new limit are
 * dropped. ASan watches; detection must still complete everywhere. */
static void test_crash_limit_shrinks(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 10, 14, 0.0, SWIM_SIM_FULL);
    swim_sim_run_until(sim, 3000);
    for (unsigned v = 7; v < 10; v++) {
        w.subject_down[v] = true;
        swim_sim_crash(sim, v);
    }
    for (unsigned v = 7; v < 10; v++) {
        struct pred dead = {.subject = v, .state = SWIM_DEAD, .nodes = 10};
        assert_true(swim_sim_run_while(sim, swim_sim_now(sim) + 20000, 10, all_see, &dead));
    }
    assert_int_equal(w.false_dead, 0);
    swim_sim_run_until(sim, swim_sim_now(sim) + 10000);
    struct pred alive = {.nodes = 10};
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
    struct swim_update u = {
        .kind = SWIM_UPD_SUSPECT, .id = swim_sim_id(2), .incarnation = inc, .from = swim_sim_id(1)};
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
    /* From here every node is reachable: any DEAD is false. In particular the SYNCs that
     * cross the healed split carry the other side's DEAD verdicts about our own side. */
    unsigned dead_during_split = w.false_dead;
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
    assert_int_equal(w.false_dead, dead_during_split);
    swim_sim_destroy(&sim);
}

/* One link is down (0 <-> 1) but both reach everyone else: the indirect probes carry 0's
 * probes of 1 and 1's of 0, so nobody is ever suspected. */
static void test_indirect_probe_blocked_link(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 8, 15, 0.0, SWIM_SIM_FULL);
    swim_sim_run_until(sim, 3000);
    assert_int_equal(swim_sim_block(sim, 0, 1, true), 0);
    swim_sim_run_until(sim, 63000);
    swim_stats_t st;
    swim_get_stats(swim_sim_core(sim, 0), &st);
    printf("# link 0-1 down for 60 s: node 0 sent %llu PING_REQs, %llu probes failed\n",
           (unsigned long long)st.indirect_probes, (unsigned long long)st.probe_failures);
    assert_true(st.indirect_probes > 10);
    for (unsigned i = 0; i < 8; i++) {
        swim_get_stats(swim_sim_core(sim, i), &st);
        assert_int_equal(st.suspicions_raised, 0);
    }
    assert_int_equal(w.false_dead, 0);
    /* Node 1 is alive for node 0 (through helpers) but its RTT is forgotten, so link state
     * no longer advertises a direct link that does not work; the other way round too. */
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(swim_sim_core(sim, 0), swim_sim_id(1), &mi), 0);
    assert_int_equal(mi.state, SWIM_ALIVE);
    assert_int_equal(mi.rtt_ms, 0);
    assert_true(mi.loss_permille > 200); /* its direct probes went unanswered (counted until
                                          * the RTT was forgotten) */
    assert_int_equal(swim_member_get(swim_sim_core(sim, 1), swim_sim_id(0), &mi), 0);
    assert_int_equal(mi.rtt_ms, 0);
    assert_int_equal(swim_member_get(swim_sim_core(sim, 0), swim_sim_id(2), &mi), 0);
    assert_true(mi.rtt_ms > 0); /* working links keep theirs */
    assert_int_equal(mi.loss_permille, 0);
    /* The link heals: the next direct ack measures it again. */
    assert_int_equal(swim_sim_block(sim, 0, 1, false), 0);
    swim_sim_run_until(sim, 93000);
    assert_int_equal(swim_member_get(swim_sim_core(sim, 0), swim_sim_id(1), &mi), 0);
    assert_true(mi.rtt_ms > 0);
    swim_sim_destroy(&sim);
}

/* Lifeguard: a node that loses most of its own traffic raises its local health multiplier
 * and probes (and so accuses) less often, while the healthy nodes keep their pace; and
 * nobody, the sick node included, declares a live node dead. */
static void test_lifeguard_sick_node(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 10, 16, 0.0, SWIM_SIM_FULL);
    swim_sim_run_until(sim, 3000);
    swim_stats_t before[10];
    for (unsigned i = 0; i < 10; i++)
        swim_get_stats(swim_sim_core(sim, i), &before[i]);
    swim_sim_set_node_loss(sim, 0, 0.6);
    unsigned max_lhm = 0;
    for (uint64_t t = 3000; t < 63000; t += 100) {
        swim_sim_run_until(sim, t);
        swim_stats_t st;
        swim_get_stats(swim_sim_core(sim, 0), &st);
        if (st.local_health > max_lhm)
            max_lhm = st.local_health;
    }
    swim_stats_t sick, healthy;
    swim_get_stats(swim_sim_core(sim, 0), &sick);
    swim_get_stats(swim_sim_core(sim, 5), &healthy);
    uint64_t sick_probes = sick.probes - before[0].probes;
    uint64_t healthy_probes = healthy.probes - before[5].probes;
    printf("# sick node (60%% loss) for 60 s: LHM peaked at %u, %llu probes vs %llu for a "
           "healthy node; %llu suspicions raised by it\n",
           max_lhm, (unsigned long long)sick_probes, (unsigned long long)healthy_probes,
           (unsigned long long)(sick.probe_failures - before[0].probe_failures));
    assert_true(max_lhm >= 3);
    assert_true(sick_probes * 10 < healthy_probes * 7);
    assert_int_equal(sick.deaths_declared, 0);
    /* The sick node itself may well be declared dead (six messages in ten vanish); what
     * Lifeguard protects are the healthy nodes it would otherwise accuse. */
    for (unsigned i = 1; i < 10; i++)
        assert_int_equal(w.dead_events[i], 0);
    swim_sim_destroy(&sim);
}

/* Healing without seeds: every node knows every other from the registry, none is a seed,
 * so only the re-probing of dead members can bring the halves back together. */
static void test_partition_heal_no_seeds(void **state)
{
    struct watch w;
    swim_sim_t *sim = make_sim(&w, 6, 17, 0.0, SWIM_SIM_FULL);
    struct pred p = {.nodes = 6};
    swim_sim_run_until(sim, 3000);
    for (unsigned i = 3; i < 6; i++) {
        swim_sim_set_group(sim, i, 1);
        w.subject_down[i] = true; /* unreachable from half the mesh: DEAD is right there */
    }
    for (unsigned i = 0; i < 3; i++)
        w.subject_down[i] = true;
    swim_sim_run_until(sim, 33000);
    for (unsigned i = 0; i < 6; i++)
        for (unsigned j = 0; j < 6; j++)
            if ((i < 3) != (j < 3))
                assert_int_equal(swim_sim_state(sim, i, j), SWIM_DEAD);
    assert_int_equal(w.false_dead, 0);
    memset(w.subject_down, 0, sizeof(w.subject_down));
    for (unsigned i = 3; i < 6; i++)
        swim_sim_set_group(sim, i, 0);
    uint64_t t1 = swim_sim_now(sim);
    assert_true(swim_sim_run_while(sim, t1 + 30000, 10, all_alive, &p));
    printf("# 3|3 without seeds healed after %llu ms\n",
           (unsigned long long)(swim_sim_now(sim) - t1));
    swim_sim_run_until(sim, swim_sim_now(sim) + 20000);
    assert_true(all_alive(sim, &p));
    assert_int_equal(w.false_dead, 0); /* no one was declared dead after the heal */
    swim_sim_destroy(&sim);
}

/* Healing through seeds alone (dead re-probing off): the first contact across the healed
 * split is a SYNC, full of the other side's DEAD verdicts about our own live side. Taken
 * verbatim they would kill live members; as suspicions they get refuted. */
static void test_partition_heal_seeds_only(void **state)
{
    struct watch w;
    swim_config_t c;
    swim_config_defaults(&c);
    c.dead_probe_ms = 0;
    swim_sim_t *sim = make_sim_cfg(&w, 5, 18, 0.0, SWIM_SIM_SEEDED, &c);
    struct pred p = {.nodes = 5};
    assert_true(swim_sim_run_while(sim, 5000, 10, all_alive, &p));
    for (unsigned i = 3; i < 5; i++)
        swim_sim_set_group(sim, i, 1);
    assert_true(swim_sim_run_while(sim, swim_sim_now(sim) + 30000, 50, sides_see_other_dead, NULL));
    swim_sim_run_until(sim, swim_sim_now(sim) + 20000);
    for (unsigned i = 3; i < 5; i++)
        swim_sim_set_group(sim, i, 0);
    unsigned dead_during_split = w.false_dead;
    uint64_t t1 = swim_sim_now(sim);
    /* A dead seed is pushed-pulled once per push-pull period (randomised in [0.5, 1.5) x). */
    assert_true(swim_sim_run_while(sim, t1 + 3 * c.push_pull_ms, 10, all_alive, &p));
    printf("# 3|2 healed through the seed alone after %llu ms\n",
           (unsigned long long)(swim_sim_now(sim) - t1));
    swim_sim_run_until(sim, swim_sim_now(sim) + 20000);
    assert_true(all_alive(sim, &p));
    assert_int_equal(w.false_dead, dead_during_split);
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

/* Counts sent messages and keeps the last one (and the last one to `watch_dest`). */
struct sent_log {
    unsigned count;
    uint64_t last_dest;
    uint8_t last[SWIM_MSG_MAX];
    size_t last_len;
    uint64_t watch_dest;
    uint8_t watched[SWIM_MSG_MAX];
    size_t watched_len;
};

static void count_send(void *ctx, uint64_t dest, const uint8_t *msg, size_t len)
{
    struct sent_log *log = ctx;
    log->count++;
    log->last_dest = dest;
    memcpy(log->last, msg, len);
    log->last_len = len;
    if (dest == log->watch_dest) {
        memcpy(log->watched, msg, len);
        log->watched_len = len;
    }
}

/* The i-th piggyback entry of an encoded message; false if there is none. */
static bool nth_update(const uint8_t *msg, size_t len, unsigned i, struct swim_update *u)
{
    struct swim_msg m;
    assert_int_equal(swim_wire_decode(msg, len, &m), 0);
    if (i >= m.pb_count)
        return false;
    for (unsigned k = 0; k <= i; k++)
        assert_int_equal(swim_wire_next_update(&m.piggyback, u), 0);
    return true;
}

/* Whether the message carries the application broadcast `key`. */
static bool carries_app(const uint8_t *msg, size_t len, uint64_t key)
{
    struct swim_update u;
    for (unsigned i = 0; nth_update(msg, len, i, &u); i++)
        if (u.kind == SWIM_UPD_APP && u.id == key)
            return true;
    return false;
}

static swim_t *lone_core_cfg(struct sent_log *log, size_t max_piggyback)
{
    swim_config_t c;
    swim_config_defaults(&c);
    c.max_piggyback = max_piggyback;
    c.self_id = 1;
    c.rng_seed = 5;
    swim_io_t io = {.ctx = log, .send = count_send};
    swim_t *s = swim_new(&c, &io, (const uint8_t *)"me", 2, 1000);
    assert_non_null(s);
    for (uint64_t id = 2; id <= 4; id++)
        assert_int_equal(swim_add_member(s, id, NULL, 0, id == 2, 1000), 0);
    return s;
}

static swim_t *lone_core(struct sent_log *log)
{
    return lone_core_cfg(log, 16384);
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
    static struct sent_log log;
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
    static const uint8_t garbage[][8] = {
        {0xc1}, {0xff, 0xff}, {0x90}, {0x80}, {0xc0}, {0x01, 0x02, 0x03}, {0xa3, 'a', 'b', 'c'}};
    static const size_t garbage_len[] = {1, 2, 1, 1, 1, 3, 4};
    for (size_t i = 0; i < sizeof(garbage_len) / sizeof(garbage_len[0]); i++)
        expect_bad(s, &log, garbage[i], garbage_len[i]);
    expect_bad(s, &log, NULL, 0);

    /* Huge declared counts: the outer array, the piggyback list, a SYNC member list. */
    static const uint8_t huge_outer[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01};
    expect_bad(s, &log, huge_outer, sizeof(huge_outer));
    static const uint8_t huge_pb[] = {0x94, 0x01, 0x02, 0x05, 0xdd, 0x7f, 0xff, 0xff, 0xff};
    expect_bad(s, &log, huge_pb, sizeof(huge_pb));
    static const uint8_t huge_sync[] = {0x95, 0x01, 0x05, 0x00, 0xdd, 0x00, 0x10, 0x00, 0x00, 0x90};
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
    static const uint8_t wrong_version[] = {0x94, 0x03, 0x02, 0x05, 0x90};
    expect_bad(s, &log, wrong_version, sizeof(wrong_version));
    static const uint8_t version_zero[] = {0x94, 0x00, 0x02, 0x05, 0x90};
    expect_bad(s, &log, version_zero, sizeof(version_zero));
    /* Version 2 probes carry timestamps: the version 1 arity is wrong there, and back. */
    static const uint8_t v2_ack_v1_arity[] = {0x94, 0x02, 0x02, 0x05, 0x90};
    expect_bad(s, &log, v2_ack_v1_arity, sizeof(v2_ack_v1_arity));
    static const uint8_t v2_ping_v1_arity[] = {0x95, 0x02, 0x01, 0x05, 0x01, 0x90};
    expect_bad(s, &log, v2_ping_v1_arity, sizeof(v2_ping_v1_arity));
    static const uint8_t v1_ack_v2_arity[] = {0x96, 0x01, 0x02, 0x05, 0x01, 0x01, 0x90};
    expect_bad(s, &log, v1_ack_v2_arity, sizeof(v1_ack_v2_arity));
    /* A timestamp past SWIM_WALL_MAX (2^48 ms), and one that is not an integer. */
    static const uint8_t v2_ack_t2_huge[] = {0x96, 0x02, 0x02, 0x05, 0x01, 0xcf, 0x00, 0x01,
                                             0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x90};
    expect_bad(s, &log, v2_ack_t2_huge, sizeof(v2_ack_t2_huge));
    static const uint8_t v2_ping_t1_str[] = {0x96, 0x02, 0x01, 0x05, 0x01, 0xa1, 'x', 0x90};
    expect_bad(s, &log, v2_ping_t1_str, sizeof(v2_ping_t1_str));
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
        {.kind = SWIM_UPD_ALIVE,
         .id = 9,
         .incarnation = 1,
         .data = meta,
         .len = SWIM_META_MAX + 1},                                       /* oversized meta */
        {.kind = SWIM_UPD_ALIVE, .id = 0, .incarnation = 1},              /* id 0 */
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
        struct swim_sync_entry e = {.id = 5,
                                    .incarnation = 1,
                                    .state = SWIM_ALIVE,
                                    .meta = meta,
                                    .meta_len = SWIM_META_MAX + 1};
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

/* The buddy entry for a suspect sits in the queue with 4 transmissions when a death shrinks
 * the transmit limit from 8 to 4 (10 -> 9 live members), and the very next message goes to
 * the suspect: the entry must be dropped, not handed out (meshsim found the use after free). */
static void test_buddy_above_limit(void **state)
{
    static struct sent_log log;
    swim_t *s = lone_core(&log); /* self 1, members 2..4 */
    for (uint64_t id = 5; id <= 10; id++)
        assert_int_equal(swim_add_member(s, id, NULL, 0, false, 1000), 0);
    uint8_t buf[512];
    struct swim_update susp = {.kind = SWIM_UPD_SUSPECT, .id = 5, .incarnation = 0, .from = 3};
    struct swim_msg ack = {.type = SWIM_MSG_ACK, .seq = 424242};
    size_t n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &susp, 1);
    assert_int_equal(swim_receive(s, 3, buf, n, 1100), 0);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(s, 5, &mi), 0);
    assert_int_equal(mi.state, SWIM_SUSPECT);
    /* Four pings from 2: four ACKs, each carrying the queued SUSPECT(5). */
    struct swim_msg ping = {.type = SWIM_MSG_PING, .seq = 1, .target = 1};
    n = build_msg(buf, sizeof(buf), &ping, NULL, 0, NULL, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(swim_receive(s, 2, buf, n, 1101 + i), 0);
    /* A SYNC from the suspect itself, whose piggyback kills member 6. */
    struct swim_update dead = {.kind = SWIM_UPD_DEAD, .id = 6, .incarnation = 0, .from = 3};
    struct swim_msg sync = {.type = SWIM_MSG_SYNC, .chunk = 0};
    n = build_msg(buf, sizeof(buf), &sync, NULL, 0, &dead, 1);
    unsigned before = log.count;
    assert_int_equal(swim_receive(s, 5, buf, n, 1110), 0);
    assert_true(log.count > before); /* the SYNC_REPLY went out */
    assert_int_equal(swim_member_get(s, 6, &mi), 0);
    assert_int_equal(mi.state, SWIM_DEAD);
    for (uint64_t t = 1110; t < 3000; t += 7)
        swim_tick(s, t);
    swim_destroy(&s);
}

/* A ping from `from` to core s (self id 1); returns swim_receive's result. The reply ACK is
 * then log->last. */
static int ping_from(swim_t *s, uint64_t from, uint64_t now)
{
    uint8_t buf[64];
    struct swim_msg ping = {.type = SWIM_MSG_PING, .seq = 5, .target = 1};
    size_t n = build_msg(buf, sizeof(buf), &ping, NULL, 0, NULL, 0);
    return swim_receive(s, from, buf, n, now);
}

/* Each update goes out exactly lambda * ceil(log10(N + 1)) times (4 members: 4 times). */
static void test_transmit_limit_exact(void **state)
{
    struct sent_log *log = calloc(1, sizeof(*log));
    assert_non_null(log);
    swim_t *s = lone_core(log);
    assert_int_equal(swim_broadcast(s, 5, (const uint8_t *)"hello", 5), 0);
    unsigned carried = 0;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ping_from(s, 2, 1100 + i), 0);
        assert_int_equal(log->last_dest, 2);
        if (carries_app(log->last, log->last_len, 5)) {
            assert_int_equal(carried, i); /* the first four, then never again */
            carried++;
        }
    }
    assert_int_equal(carried, 4);
    swim_stats_t st;
    swim_get_stats(s, &st);
    assert_int_equal(st.queued_broadcasts, 0);
    swim_destroy(&s);
    free(log);
}

/* Least-transmitted first, within max_piggyback: with room for one 600-byte broadcast per
 * message, a new one overtakes one already sent twice. */
static void test_least_transmitted_first(void **state)
{
    struct sent_log *log = calloc(1, sizeof(*log));
    assert_non_null(log);
    swim_t *s = lone_core_cfg(log, 1024);
    uint8_t big[600];
    memset(big, 'a', sizeof(big));
    assert_int_equal(swim_broadcast(s, 100, big, sizeof(big)), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ping_from(s, 2, 1100 + i), 0);
        assert_true(carries_app(log->last, log->last_len, 100));
        assert_true(log->last_len <= 1024 + 32);
    }
    assert_int_equal(swim_broadcast(s, 200, big, sizeof(big)), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ping_from(s, 2, 1200 + i), 0);
        assert_true(carries_app(log->last, log->last_len, 200));
        assert_false(carries_app(log->last, log->last_len, 100));
    }
    unsigned a = 2, b = 2;
    for (int i = 0; i < 10; i++) {
        assert_int_equal(ping_from(s, 2, 1300 + i), 0);
        a += carries_app(log->last, log->last_len, 100);
        b += carries_app(log->last, log->last_len, 200);
        assert_true(log->last_len <= 1024 + 32);
    }
    assert_int_equal(a, 4);
    assert_int_equal(b, 4);
    swim_destroy(&s);
    free(log);
}

/* Buddy system: whatever we send to a member we hold as SUSPECT starts with that suspicion,
 * our probe of it and our reply to its ping alike. */
static void test_buddy_first(void **state)
{
    struct sent_log *log = calloc(1, sizeof(*log));
    assert_non_null(log);
    swim_t *s = lone_core(log);
    uint8_t buf[256];
    struct swim_update susp = {.kind = SWIM_UPD_SUSPECT, .id = 3, .incarnation = 0, .from = 4};
    struct swim_msg ack = {.type = SWIM_MSG_ACK, .seq = 777};
    size_t n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &susp, 1);
    assert_int_equal(swim_receive(s, 4, buf, n, 1100), 0);
    /* Our reply to its ping. */
    assert_int_equal(ping_from(s, 3, 1101), 0);
    assert_int_equal(log->last_dest, 3);
    struct swim_update u;
    assert_true(nth_update(log->last, log->last_len, 0, &u));
    assert_int_equal(u.kind, SWIM_UPD_SUSPECT);
    assert_int_equal(u.id, 3);
    /* Our probe of it: tick until a PING goes to 3. */
    log->watch_dest = 3;
    log->watched_len = 0;
    for (uint64_t t = 1102; t < 3000 && !log->watched_len; t++)
        swim_tick(s, t);
    assert_true(log->watched_len > 0);
    struct swim_msg m;
    assert_int_equal(swim_wire_decode(log->watched, log->watched_len, &m), 0);
    assert_int_equal(m.type, SWIM_MSG_PING);
    assert_true(nth_update(log->watched, log->watched_len, 0, &u));
    assert_int_equal(u.kind, SWIM_UPD_SUSPECT);
    assert_int_equal(u.id, 3);
    /* And a stale claim about ourselves is corrected in the reply: after a refutation (we
     * are now at incarnation 1) a SUSPECT of us at 0 gets our ALIVE at 1 back. */
    struct swim_update me = {.kind = SWIM_UPD_SUSPECT, .id = 1, .incarnation = 0, .from = 4};
    n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &me, 1);
    assert_int_equal(swim_receive(s, 4, buf, n, 3000), 0);
    swim_stats_t st;
    swim_get_stats(s, &st);
    assert_int_equal(st.incarnation, 1);
    struct swim_msg ping = {.type = SWIM_MSG_PING, .seq = 9, .target = 1};
    n = build_msg(buf, sizeof(buf), &ping, NULL, 0, &me, 1);
    for (int i = 0; i < 8; i++) /* let the refutation's own transmissions run out */
        assert_int_equal(ping_from(s, 2, 3001 + i), 0);
    assert_int_equal(swim_receive(s, 4, buf, n, 3010), 0);
    assert_int_equal(log->last_dest, 4);
    assert_true(nth_update(log->last, log->last_len, 0, &u));
    assert_int_equal(u.kind, SWIM_UPD_ALIVE);
    assert_int_equal(u.id, 1);
    assert_int_equal(u.incarnation, 1);
    swim_get_stats(s, &st);
    assert_int_equal(st.incarnation, 1); /* a stale claim is not refuted again */
    swim_destroy(&s);
    free(log);
}

/* A suspicion at a higher incarnation than the one we hold (we missed the refutation in
 * between) starts a new timer: the old one must not kill the member at the new incarnation. */
static void test_suspicion_restarts_on_new_incarnation(void **state)
{
    static struct sent_log log;
    swim_t *s = lone_core(&log); /* no network: every probe of ours fails */
    uint8_t buf[256];
    struct swim_msg ack = {.type = SWIM_MSG_ACK, .seq = 777};
    struct swim_update susp = {.kind = SWIM_UPD_SUSPECT, .id = 3, .incarnation = 0, .from = 4};
    size_t n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &susp, 1);
    assert_int_equal(swim_receive(s, 4, buf, n, 1100), 0);
    /* N = 4: min = 4 * log10(5) * 200 = 559 ms, max = 6 * min = 3354 ms, K = 2. Our own
     * probes of 3 fail within the first pass (3 members, 200 ms each, +300 ms to fail), a
     * confirmation: the timer then runs out at 1100 + 1590 = 2690. Just before, a new
     * suspicion at incarnation 1. */
    for (uint64_t t = 1100; t < 2600; t++)
        swim_tick(s, t);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(s, 3, &mi), 0);
    assert_int_equal(mi.state, SWIM_SUSPECT);
    susp.incarnation = 1;
    n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &susp, 1);
    assert_int_equal(swim_receive(s, 4, buf, n, 2600), 0);
    /* The new timer runs at least 1590 ms (to 4190); the old one would have declared it at
     * about 2900 (2690 plus the last-chance wait). */
    for (uint64_t t = 2600; t < 4100; t++)
        swim_tick(s, t);
    assert_int_equal(swim_member_get(s, 3, &mi), 0);
    assert_int_equal(mi.state, SWIM_SUSPECT);
    assert_int_equal(mi.incarnation, 1);
    for (uint64_t t = 4100; t < 12000; t++)
        swim_tick(s, t);
    assert_int_equal(swim_member_get(s, 3, &mi), 0);
    assert_int_equal(mi.state, SWIM_DEAD); /* nobody refuted: dead in the end */
    swim_destroy(&s);
}

/* Round-robin over a shuffled list: every member exactly once per pass, a new order each
 * pass. Each PING the core sends is answered at once, so every probe succeeds. */
static void test_probe_round_robin(void **state)
{
    static struct sent_log log;
    swim_t *s = lone_core(&log);
    for (uint64_t id = 5; id <= 12; id++)
        assert_int_equal(swim_add_member(s, id, NULL, 0, false, 1000), 0);
    const unsigned members = 11, passes = 4;
    uint64_t order[4 * 11];
    unsigned got = 0, seen = log.count;
    for (uint64_t t = 1000; t < 100000 && got < members * passes; t++) {
        swim_tick(s, t);
        if (log.count == seen)
            continue;
        seen = log.count;
        struct swim_msg m;
        assert_int_equal(swim_wire_decode(log.last, log.last_len, &m), 0);
        if (m.type != SWIM_MSG_PING)
            continue;
        order[got++] = log.last_dest;
        uint8_t buf[64];
        struct swim_msg ack = {.type = SWIM_MSG_ACK, .seq = m.seq};
        size_t n = build_msg(buf, sizeof(buf), &ack, NULL, 0, NULL, 0);
        assert_int_equal(swim_receive(s, log.last_dest, buf, n, t), 0);
        seen = log.count;
    }
    assert_int_equal(got, members * passes);
    bool differs = false;
    for (unsigned p = 0; p < passes; p++) {
        bool hit[13] = {false};
        for (unsigned i = 0; i < members; i++) {
            uint64_t id = order[p * members + i];
            assert_true(id >= 2 && id <= 12);
            assert_false(hit[id]); /* once per pass */
            hit[id] = true;
            if (p && order[p * members + i] != order[(p - 1) * members + i])
                differs = true;
        }
    }
    assert_true(differs);
    swim_stats_t st;
    swim_get_stats(s, &st);
    assert_int_equal(st.probe_failures, 0);
    swim_destroy(&s);
}

/* A member known only from swim_add_member is overruled by its own ALIVE at the same
 * incarnation (its meta wins); a member heard from directly is not. */
static void test_hearsay_precedence(void **state)
{
    static struct sent_log log;
    swim_t *s = lone_core(&log);
    assert_int_equal(swim_add_member(s, 20, (const uint8_t *)"registry", 8, false, 1000), 0);
    uint8_t buf[256];
    struct swim_msg ack = {.type = SWIM_MSG_ACK, .seq = 1};
    struct swim_update a = {.kind = SWIM_UPD_ALIVE,
                            .id = 20,
                            .incarnation = 0,
                            .data = (const uint8_t *)"own",
                            .len = 3};
    size_t n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &a, 1);
    assert_int_equal(swim_receive(s, 2, buf, n, 1100), 0);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(s, 20, &mi), 0);
    assert_int_equal(mi.meta_len, 3);
    assert_memory_equal(mi.meta, "own", 3);
    a.data = (const uint8_t *)"other";
    a.len = 5;
    n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &a, 1);
    assert_int_equal(swim_receive(s, 2, buf, n, 1200), 0);
    assert_int_equal(swim_member_get(s, 20, &mi), 0);
    assert_memory_equal(mi.meta, "own", 3); /* equal incarnation: no longer wins */
    a.incarnation = 1;
    n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &a, 1);
    assert_int_equal(swim_receive(s, 2, buf, n, 1300), 0);
    assert_int_equal(swim_member_get(s, 20, &mi), 0);
    assert_int_equal(mi.meta_len, 5);
    swim_destroy(&s);
}

/* Records every PING the core sends to one member: time and seq. */
struct ping_rec {
    uint64_t t[256];
    uint32_t seq[256];
    unsigned n;
};

static void record_ping(struct sent_log *log, unsigned *seen, uint64_t dest, uint64_t now,
                        struct ping_rec *rec)
{
    if (log->count == *seen)
        return;
    *seen = log->count;
    /* Only the last message is kept; ticks in these tests send at most one message to dest
     * per call, except the doubled last-chance ping, which watch_dest catches below. */
    if (log->watched_len) {
        struct swim_msg m;
        assert_int_equal(swim_wire_decode(log->watched, log->watched_len, &m), 0);
        if (m.type == SWIM_MSG_PING && rec->n < 256) {
            rec->t[rec->n] = now;
            rec->seq[rec->n++] = m.seq;
        }
        log->watched_len = 0;
    }
    (void)dest;
}

/* A timed-out suspicion is not declared at once: two copies of a ping carrying it go to the
 * suspect first, and only their silence makes it DEAD. Thirty members keep the round-robin
 * probes of the suspect rare, so the pings seen just before DEAD are the last chance. */
static void test_last_chance_ping(void **state)
{
    static struct sent_log log;
    swim_t *s = lone_core(&log);
    for (uint64_t id = 5; id <= 31; id++)
        assert_int_equal(swim_add_member(s, id, NULL, 0, false, 1000), 0);
    uint8_t buf[256];
    struct swim_msg ack = {.type = SWIM_MSG_ACK, .seq = 777};
    struct swim_update susp = {.kind = SWIM_UPD_SUSPECT, .id = 3, .incarnation = 0, .from = 4};
    size_t n = build_msg(buf, sizeof(buf), &ack, NULL, 0, &susp, 1);
    assert_int_equal(swim_receive(s, 4, buf, n, 1100), 0);
    log.watch_dest = 3;
    static struct ping_rec rec;
    unsigned seen = log.count;
    uint64_t dead_at = 0;
    swim_member_info_t mi;
    for (uint64_t t = 1100; t < 20000 && !dead_at; t++) {
        /* Two messages to 3 in one tick would hide the first from `watched`: look at the
         * count of messages too. */
        unsigned c0 = log.count;
        swim_tick(s, t);
        if (log.count - c0 >= 2 && log.watched_len) {
            struct swim_msg m;
            assert_int_equal(swim_wire_decode(log.watched, log.watched_len, &m), 0);
            if (m.type == SWIM_MSG_PING && rec.n < 255) {
                rec.t[rec.n] = t;
                rec.seq[rec.n++] = m.seq; /* the first copy: same seq, same time */
            }
        }
        record_ping(&log, &seen, 3, t, &rec);
        assert_int_equal(swim_member_get(s, 3, &mi), 0);
        if (mi.state == SWIM_DEAD)
            dead_at = t;
    }
    assert_true(dead_at);
    bool doubled = false;
    for (unsigned i = 1; i < rec.n; i++)
        if (rec.t[i] == rec.t[i - 1] && rec.seq[i] == rec.seq[i - 1] && rec.t[i] + 2000 > dead_at)
            doubled = true;
    assert_true(doubled);
    swim_destroy(&s);

    /* And when the suspect answers the last chance, it lives. */
    s = lone_core(&log);
    for (uint64_t id = 5; id <= 31; id++)
        assert_int_equal(swim_add_member(s, id, NULL, 0, false, 1000), 0);
    assert_int_equal(swim_receive(s, 4, buf, n, 1100), 0);
    memset(&rec, 0, sizeof(rec));
    seen = log.count;
    for (uint64_t t = 1100; t < 20000; t++) {
        unsigned c0 = log.count;
        swim_tick(s, t);
        if (log.count - c0 < 2 || log.last_dest != 3)
            continue;
        struct swim_msg m;
        assert_int_equal(swim_wire_decode(log.last, log.last_len, &m), 0);
        if (m.type != SWIM_MSG_PING)
            continue;
        /* The doubled ping: answer it, refuting. */
        struct swim_update a = {.kind = SWIM_UPD_ALIVE, .id = 3, .incarnation = 1};
        struct swim_msg reply = {.type = SWIM_MSG_ACK, .seq = m.seq};
        size_t rn = build_msg(buf, sizeof(buf), &reply, NULL, 0, &a, 1);
        assert_int_equal(swim_receive(s, 3, buf, rn, t + 5), 0);
        break;
    }
    assert_int_equal(swim_member_get(s, 3, &mi), 0);
    assert_int_equal(mi.state, SWIM_ALIVE);
    assert_int_equal(mi.incarnation, 1);
    swim_destroy(&s);
}

/* After the ack timeout the direct ping is repeated (same seq) alongside the PING_REQs; an
 * ACK that may answer either ping gives no RTT sample (Karn), one to the only ping does. */
static void test_probe_retry_and_karn(void **state)
{
    static struct sent_log log;
    swim_t *s = lone_core(&log);
    uint64_t target = 0, first_t = 0;
    uint32_t seq = 0;
    unsigned seen = log.count, pings_to_target = 0, ping_reqs = 0;
    for (uint64_t t = 1000; t < 3000; t++) {
        swim_tick(s, t);
        if (log.count == seen)
            continue;
        /* Decode only the last message; the retry and the PING_REQs go out in one tick,
         * the PING_REQs last, so count them from the stats below. */
        seen = log.count;
        struct swim_msg m;
        assert_int_equal(swim_wire_decode(log.last, log.last_len, &m), 0);
        if (m.type == SWIM_MSG_PING && !target) {
            target = log.last_dest;
            seq = m.seq;
            first_t = t;
            log.watch_dest = target;
            pings_to_target = 1;
        }
        if (target && t > first_t && log.watched_len) {
            struct swim_msg w;
            assert_int_equal(swim_wire_decode(log.watched, log.watched_len, &w), 0);
            if (w.type == SWIM_MSG_PING && w.seq == seq) {
                pings_to_target++;
                assert_int_equal(t, first_t + 100); /* at the ack timeout */
            }
            log.watched_len = 0;
        }
        if (pings_to_target == 2)
            break;
    }
    assert_int_equal(pings_to_target, 2);
    swim_stats_t st;
    swim_get_stats(s, &st);
    ping_reqs = (unsigned)st.indirect_probes;
    assert_int_equal(ping_reqs, 2); /* k = 3, but only 2 others besides the target */
    /* The target answers now: success, but no RTT sample. */
    uint8_t buf[64];
    struct swim_msg a = {.type = SWIM_MSG_ACK, .seq = seq};
    size_t n = build_msg(buf, sizeof(buf), &a, NULL, 0, NULL, 0);
    assert_int_equal(swim_receive(s, target, buf, n, first_t + 130), 0);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(s, target, &mi), 0);
    assert_int_equal(mi.rtt_ms, 0);
    assert_int_equal(mi.state, SWIM_ALIVE);
    swim_get_stats(s, &st);
    assert_int_equal(st.probe_failures, 0);
    /* Next probe of someone: answered in 7 ms, before the timeout: RTT 7. */
    seen = log.count;
    for (uint64_t t = first_t + 131; t < first_t + 2000; t++) {
        swim_tick(s, t);
        if (log.count == seen)
            continue;
        seen = log.count;
        struct swim_msg m;
        assert_int_equal(swim_wire_decode(log.last, log.last_len, &m), 0);
        if (m.type != SWIM_MSG_PING)
            continue;
        uint64_t who = log.last_dest;
        a.seq = m.seq;
        n = build_msg(buf, sizeof(buf), &a, NULL, 0, NULL, 0);
        assert_int_equal(swim_receive(s, who, buf, n, t + 7), 0);
        assert_int_equal(swim_member_get(s, who, &mi), 0);
        assert_int_equal(mi.rtt_ms, 7);
        break;
    }
    swim_destroy(&s);
}

static void test_removed_member(void **state)
{
    static struct sent_log log;
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

/* ---- clocks -------------------------------------------------------------------------- */

/* The estimator alone: the smallest round trip wins within the window; a sample stays in
 * charge for SWIM_CLOCK_WINDOW samples at most, so a stepped clock is followed. */
static void test_clock_estimator(void **state)
{
    swim_clock_est_t e = {0};
    swim_clock_sample(&e, 1000, 40);
    assert_int_equal(e.offset_ms, 1000);
    assert_int_equal(e.rtt_ms, 40);
    swim_clock_sample(&e, 1010, 10); /* better: taken */
    assert_int_equal(e.offset_ms, 1010);
    for (int i = 0; i < SWIM_CLOCK_WINDOW - 1; i++) {
        swim_clock_sample(&e, 5000, 200); /* worse: ignored while the window lasts */
        assert_int_equal(e.offset_ms, 1010);
    }
    swim_clock_sample(&e, 300000, 30); /* the held sample is stale: the clock moved */
    assert_int_equal(e.offset_ms, 300000);
    assert_int_equal(e.rtt_ms, 30);
    swim_clock_sample(&e, 7, 0); /* a zero round trip counts as 1 ms */
    assert_int_equal(e.rtt_ms, 1);
    swim_clock_sample(&e, INT64_MAX, 0); /* clamped, never wrapped */
    assert_int_equal(e.offset_ms, INT32_MAX);
    swim_clock_sample(&e, INT64_MIN, 0);
    assert_int_equal(e.offset_ms, -INT32_MAX);

    /* Asymmetric, jittery paths: the error stays within half the best round trip. */
    uint64_t rng = 42;
    swim_clock_est_t f = {0};
    for (int i = 0; i < 200; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint64_t d1 = 2 + (rng >> 33) % 40, d2 = 2 + (rng >> 13) % 40; /* ms each way */
        int64_t truth = -300000;
        uint64_t t1 = 1000000 + (uint64_t)i * 200;
        int64_t t2 = (int64_t)(t1 + d1) + truth; /* its clock */
        uint64_t t4 = t1 + d1 + d2;
        int64_t off = t2 - (int64_t)(t1 + (t4 - t1) / 2);
        swim_clock_sample(&f, off, t4 - t1);
        int64_t err = f.offset_ms - truth;
        assert_true(err <= (f.rtt_ms + 1) / 2 && -err <= (f.rtt_ms + 1) / 2);
    }
    assert_true(f.rtt_ms < 30); /* it found one of the quick exchanges */
}

/* Two real cores whose clocks differ by `skew` ms, over paths of 3 ms one way and 11 ms the
 * other: each estimates the other's offset from its probes (within the 4 ms asymmetry error
 * plus the 1 ms clock quantum), and the median says which one is off. */
struct duo_msg {
    uint64_t due, from, to;
    size_t len;
    uint8_t buf[2048];
};
struct duo {
    swim_t *core[2];
    int64_t skew[2]; /* ms added to the true time for each node's wall clock */
    struct duo_msg q[64];
    unsigned nq;
    uint64_t now;
    unsigned me;       /* whose send callback runs */
    unsigned v1_to[2]; /* version 1 messages each sent */
};

static void duo_send(void *ctx, uint64_t dest, const uint8_t *msg, size_t len)
{
    struct duo **dp = ctx, *d = *dp;
    if (d->nq == 64 || len > sizeof(d->q[0].buf))
        return;
    struct duo_msg *m = &d->q[d->nq++];
    m->from = d->me + 1;
    m->to = dest;
    m->due = d->now + (d->me == 0 ? 3 : 11);
    m->len = len;
    memcpy(m->buf, msg, len);
    if (len > 1 && msg[1] == 1)
        d->v1_to[d->me]++;
}

static void duo_run(struct duo *d, struct duo **self, int64_t skew_b, uint64_t until)
{
    (void)self;
    for (; d->now < until; d->now++) {
        for (unsigned i = 0; i < d->nq;) {
            if (d->q[i].due <= d->now) {
                struct duo_msg m = d->q[i];
                d->q[i] = d->q[--d->nq];
                d->me = (unsigned)m.to - 1;
                swim_set_wall_ms(d->core[d->me],
                                 1767225600000ull + d->now + (uint64_t)(d->me ? skew_b : 0));
                swim_receive(d->core[d->me], m.from, m.buf, m.len, d->now);
            } else {
                i++;
            }
        }
        for (unsigned k = 0; k < 2; k++) {
            if (swim_next_deadline(d->core[k]) > d->now)
                continue;
            d->me = k;
            swim_set_wall_ms(d->core[k], 1767225600000ull + d->now + (uint64_t)(k ? skew_b : 0));
            swim_tick(d->core[k], d->now);
        }
    }
}

static void duo_check(int64_t skew)
{
    static struct duo d;
    static struct duo *dp;
    memset(&d, 0, sizeof(d));
    dp = &d;
    for (unsigned k = 0; k < 2; k++) {
        swim_config_t c;
        swim_config_defaults(&c);
        c.self_id = k + 1;
        c.rng_seed = 7 + k;
        swim_io_t io = {.ctx = &dp, .send = duo_send};
        d.core[k] = swim_new(&c, &io, NULL, 0, 0);
        assert_non_null(d.core[k]);
    }
    assert_int_equal(swim_add_member(d.core[0], 2, NULL, 0, true, 0), 0);
    assert_int_equal(swim_add_member(d.core[1], 1, NULL, 0, true, 0), 0);
    duo_run(&d, &dp, skew, 5000);
    swim_member_info_t a_b, b_a;
    assert_int_equal(swim_member_get(d.core[0], 2, &a_b), 0);
    assert_int_equal(swim_member_get(d.core[1], 1, &b_a), 0);
    assert_true(a_b.clock_known && b_a.clock_known);
    /* A sees B ahead by skew; B sees A behind by skew; error <= (11 - 3) / 2 + 1. */
    assert_true(llabs((long long)a_b.clock_offset_ms - skew) <= 5);
    assert_true(llabs((long long)b_a.clock_offset_ms + skew) <= 5);
    assert_true(a_b.clock_err_ms >= 7 && a_b.clock_err_ms <= 8); /* half of 14 ms */
    int64_t off;
    unsigned peers;
    assert_int_equal(swim_clock_offset(d.core[0], &off, &peers), 0);
    assert_int_equal(peers, 1);
    assert_true(llabs((long long)off + skew) <= 5); /* A is behind the mesh (of B) */
    assert_int_equal(swim_clock_offset(d.core[1], &off, &peers), 0);
    assert_true(llabs((long long)off - skew) <= 5);
    assert_int_equal(d.v1_to[0] + d.v1_to[1], 0); /* both speak version 2 */
    swim_destroy(&d.core[0]);
    swim_destroy(&d.core[1]);
}

static void test_clock_offset_two_cores(void **state)
{
    duo_check(300000); /* B 300 s ahead */
    duo_check(2000);   /* a small offset is measured all the same */
    duo_check(0);
    duo_check(-90000);
}

/* Without a wall clock (the simulator, or a driver that never sets it) nothing is estimated
 * and no member has an offset. */
static void test_clock_unknown_without_wall(void **state)
{
    static struct sent_log log;
    swim_t *s = lone_core(&log);
    int64_t off;
    unsigned peers = 9;
    assert_int_equal(swim_clock_offset(s, &off, &peers), -ENOENT);
    assert_int_equal(peers, 0);
    /* An ACK with stamps but no clock of ours: no sample. */
    struct swim_msg m = {0};
    unsigned seen = log.count;
    for (uint64_t t = 1000; t < 1300 && m.type != SWIM_MSG_PING; t++) {
        swim_tick(s, t);
        if (log.count != seen)
            assert_int_equal(swim_wire_decode(log.last, log.last_len, &m), 0);
        seen = log.count;
    }
    assert_int_equal(m.type, SWIM_MSG_PING);
    assert_int_equal(m.version, SWIM_VERSION);
    assert_int_equal(m.t1, 0);
    uint8_t buf[64];
    struct swim_msg a = {.type = SWIM_MSG_ACK, .seq = m.seq, .t1 = 5, .t2 = 6};
    size_t n = build_msg(buf, sizeof(buf), &a, NULL, 0, NULL, 0);
    assert_int_equal(swim_receive(s, log.last_dest, buf, n, 1301), 0);
    swim_member_info_t mi;
    assert_int_equal(swim_member_get(s, log.last_dest, &mi), 0);
    assert_false(mi.clock_known);
    swim_destroy(&s);
}

/* A member that speaks version 1 is answered, and probed, in version 1; once it speaks
 * version 2 it gets version 2 again. */
static void test_wire_v1_peer(void **state)
{
    static struct sent_log log;
    swim_t *s = lone_core(&log);
    swim_set_wall_ms(s, 1767225600000ull);
    uint8_t buf[64];
    struct swim_msg p1 = {.version = 1, .type = SWIM_MSG_PING, .seq = 3, .target = 1};
    size_t n = build_msg(buf, sizeof(buf), &p1, NULL, 0, NULL, 0);
    log.watch_dest = 3;
    assert_int_equal(swim_receive(s, 3, buf, n, 1000), 0);
    struct swim_msg m;
    assert_int_equal(swim_wire_decode(log.watched, log.watched_len, &m), 0);
    assert_int_equal(m.type, SWIM_MSG_ACK);
    assert_int_equal(m.version, 1);
    assert_int_equal(m.seq, 3);
    /* Our own probes of member 3 are version 1 too. */
    log.watched_len = 0;
    for (uint64_t t = 1001; t < 3000 && !log.watched_len; t++) {
        swim_set_wall_ms(s, 1767225600000ull + t);
        swim_tick(s, t);
        if (log.watched_len) {
            assert_int_equal(swim_wire_decode(log.watched, log.watched_len, &m), 0);
            if (m.type != SWIM_MSG_PING)
                log.watched_len = 0;
        }
    }
    assert_int_equal(m.type, SWIM_MSG_PING);
    assert_int_equal(m.version, 1);
    /* It speaks version 2: our answer carries its t1 and our clock. */
    struct swim_msg p2 = {.type = SWIM_MSG_PING, .seq = 4, .target = 1, .t1 = 1767225599000ull};
    n = build_msg(buf, sizeof(buf), &p2, NULL, 0, NULL, 0);
    log.watched_len = 0;
    swim_set_wall_ms(s, 1767225609999ull);
    assert_int_equal(swim_receive(s, 3, buf, n, 3000), 0);
    assert_int_equal(swim_wire_decode(log.watched, log.watched_len, &m), 0);
    assert_int_equal(m.type, SWIM_MSG_ACK);
    assert_int_equal(m.version, 2);
    assert_int_equal(m.t1, 1767225599000ull);
    assert_int_equal(m.t2, 1767225609999ull);
    swim_destroy(&s);
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
        {"ping", {.type = SWIM_MSG_PING, .seq = 7, .target = 1, .t1 = 1767225600123ull}, 2},
        {"ping_buddy", {.type = SWIM_MSG_PING, .seq = 8, .target = 1}, 6},
        {"ack",
         {.type = SWIM_MSG_ACK, .seq = 1, .t1 = 1767225600123ull, .t2 = 1767225900456ull},
         5},
        {"ping_v1", {.version = 1, .type = SWIM_MSG_PING, .seq = 7, .target = 1}, 2},
        {"ack_v1", {.version = 1, .type = SWIM_MSG_ACK, .seq = 1}, 1},
        {"nack_v1", {.version = 1, .type = SWIM_MSG_NACK, .seq = 9}, 0},
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
        assert_int_equal(m.version, msgs[k].h.version ? msgs[k].h.version : SWIM_VERSION);
        assert_int_equal(m.t1, msgs[k].h.t1);
        assert_int_equal(m.t2, msgs[k].h.t2);
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
        cmocka_unit_test(test_crash_limit_shrinks),
        cmocka_unit_test(test_refute_false_suspicion),
        cmocka_unit_test(test_lossy_10),
        cmocka_unit_test(test_lossy_20),
        cmocka_unit_test(test_partition_heal),
        cmocka_unit_test(test_partition_heal_no_seeds),
        cmocka_unit_test(test_partition_heal_seeds_only),
        cmocka_unit_test(test_indirect_probe_blocked_link),
        cmocka_unit_test(test_lifeguard_sick_node),
        cmocka_unit_test(test_leave),
        cmocka_unit_test(test_broadcast_10),
        cmocka_unit_test(test_broadcast_100),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_buddy_above_limit),
        cmocka_unit_test(test_transmit_limit_exact),
        cmocka_unit_test(test_least_transmitted_first),
        cmocka_unit_test(test_buddy_first),
        cmocka_unit_test(test_suspicion_restarts_on_new_incarnation),
        cmocka_unit_test(test_probe_round_robin),
        cmocka_unit_test(test_hearsay_precedence),
        cmocka_unit_test(test_last_chance_ping),
        cmocka_unit_test(test_probe_retry_and_karn),
        cmocka_unit_test(test_removed_member),
        cmocka_unit_test(test_piggyback_budget),
        cmocka_unit_test(test_wire_roundtrip),
        cmocka_unit_test(test_clock_estimator),
        cmocka_unit_test(test_clock_offset_two_cores),
        cmocka_unit_test(test_clock_unknown_without_wall),
        cmocka_unit_test(test_wire_v1_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
