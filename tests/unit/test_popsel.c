/* Unit tests of the site's PoP choice (tunnel/popsel.h), in virtual time: the first choice
 * (the k best measured; unmeasured PoPs only when nothing better is known), the hysteresis of
 * the set (absolute and relative, one replacement at a time, the worst drained once the
 * replacement is up, judged against the set after the drain) and of the primary, young
 * tunnels judged by their probe too, redial backoff (doubling, capped, jittered within its
 * bounds, reset after a long good run), drains closing when idle or at the maximum, fail-back,
 * bad configs, an out[] too small, the next deadline, and a seeded random driver checking the
 * invariants after every event and step and that a run replays exactly from its seed.
 * Regions: the set spreads over two (at enrollment, from measurements, and back after a region
 * returns), a region with no reachable PoP leaves the set in the other, one region only (or
 * none, or k = 1) gives the very action traces the core gave before it knew regions. */
#include "tunnel/popsel.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define MS 1000u /* us */

static popsel_action_t acts[POPSEL_ACTIONS_MAX];
static size_t nacts;

static popsel_t *make(unsigned k, uint64_t seed)
{
    popsel_config_t cfg;
    popsel_config_defaults(&cfg);
    cfg.k = k;
    cfg.rng_seed = seed;
    popsel_t *ps = popsel_new(&cfg);
    assert_non_null(ps);
    return ps;
}

static size_t step(popsel_t *ps, uint64_t now)
{
    nacts = popsel_step(ps, now, acts, POPSEL_ACTIONS_MAX);
    return nacts;
}

static size_t count(enum popsel_kind kind)
{
    size_t c = 0;
    for (size_t i = 0; i < nacts; i++)
        c += acts[i].kind == kind;
    return c;
}

static const popsel_action_t *find(enum popsel_kind kind, unsigned pop)
{
    for (size_t i = 0; i < nacts; i++)
        if (acts[i].kind == kind && acts[i].pop == pop)
            return &acts[i];
    return NULL;
}

/* Answers every PROBE of the last step with rtt[pop] (0 = failed). */
static void answer_probes(popsel_t *ps, const uint32_t *rtt)
{
    for (size_t i = 0; i < nacts; i++)
        if (acts[i].kind == POPSEL_PROBE)
            assert_int_equal(popsel_probe_result(ps, acts[i].pop, rtt[acts[i].pop]), 0);
}

/* Brings slot i up with path RTT rtt_us, measured by a probe first if it had none. */
static void bring_up(popsel_t *ps, unsigned i, uint32_t rtt_us, uint64_t now)
{
    assert_true(popsel_is_dialing(ps, i));
    assert_int_equal(popsel_tunnel_up(ps, i, rtt_us, now), 0);
    assert_int_equal(popsel_tunnel_rtt(ps, i, rtt_us), 0);
}

/* ---- the first choice --------------------------------------------------------------- */

static void test_initial_k_best_measured(void **state)
{
    (void)state;
    popsel_t *ps = make(2, 7);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(popsel_set_known(ps, i, true), 0);
    /* Enrollment: nothing measured, so the first two (slot order) are dialled at once, and
     * every PoP is probed. */
    step(ps, 0);
    assert_int_equal(count(POPSEL_PROBE), 5);
    assert_int_equal(count(POPSEL_DIAL), 2);
    assert_non_null(find(POPSEL_DIAL, 0));
    assert_non_null(find(POPSEL_DIAL, 1));
    assert_int_equal(find(POPSEL_DIAL, 0)->why, POPSEL_WHY_FILL);
    /* Those two cannot be reached; the probes measure 2, 3, 4. */
    const uint32_t rtt[5] = {0, 0, 40 * MS, 20 * MS, 30 * MS};
    answer_probes(ps, rtt);
    assert_int_equal(popsel_tunnel_down(ps, 0, 10), 0);
    assert_int_equal(popsel_tunnel_down(ps, 1, 10), 0);
    /* Before the redial is due only measured PoPs are candidates: the best two. */
    step(ps, 20);
    assert_int_equal(count(POPSEL_DIAL), 2);
    assert_non_null(find(POPSEL_DIAL, 3));
    assert_non_null(find(POPSEL_DIAL, 4));
    assert_int_equal(acts[0].kind, POPSEL_DIAL);
    assert_int_equal(acts[0].pop, 3); /* best first */
    /* And once 0 and 1 may be redialled, they are not: measured PoPs are known. */
    bring_up(ps, 3, 20 * MS, 30);
    assert_int_equal(popsel_tunnel_down(ps, 4, 30), 0); /* 4 fails: a slot is free */
    step(ps, 1000);
    assert_int_equal(count(POPSEL_DIAL), 1);
    assert_non_null(find(POPSEL_DIAL, 2));
    popsel_destroy(&ps);
    assert_null(ps);
    popsel_destroy(&ps);
    popsel_destroy(NULL);
}

static void test_unmeasured_only_when_nothing_measured(void **state)
{
    (void)state;
    popsel_t *ps = make(3, 3);
    for (unsigned i = 0; i < 3; i++)
        popsel_set_known(ps, i, true);
    step(ps, 0);
    assert_int_equal(count(POPSEL_DIAL), 3); /* nothing measured: unmeasured ones go */
    const uint32_t rtt[3] = {0, 0, 0};
    answer_probes(ps, rtt); /* every probe fails */
    bring_up(ps, 0, 30 * MS, 10);
    assert_int_equal(popsel_tunnel_down(ps, 1, 10), 0);
    assert_int_equal(popsel_tunnel_down(ps, 2, 10), 0);
    /* 0 up, 1 and 2 unmeasured: with nothing measured, both are dialled to fill the set. */
    step(ps, 1000);
    assert_int_equal(count(POPSEL_DIAL), 2);
    assert_int_equal(popsel_tunnel_down(ps, 1, 1000), 0);
    assert_int_equal(popsel_tunnel_down(ps, 2, 1000), 0);
    /* Probes due again (5 s +-20%), redials due: still nothing measured, so they go. */
    assert_int_equal(popsel_probe_result(ps, 2, 0), -EINVAL); /* no probe in flight */
    step(ps, 7000);
    assert_non_null(find(POPSEL_PROBE, 1));
    assert_non_null(find(POPSEL_PROBE, 2));
    assert_int_equal(count(POPSEL_DIAL), 2);
    assert_int_equal(popsel_tunnel_down(ps, 1, 7000), 0);
    assert_int_equal(popsel_tunnel_down(ps, 2, 7000), 0);
    /* Now 2 is measured: 1 (unmeasured) is not dialled, although the set has room for it
     * and it comes first in slot order. */
    const uint32_t rtt2[3] = {0, 0, 50 * MS};
    answer_probes(ps, rtt2);
    step(ps, 9000); /* past the redials (800 ms backoff: at most 1.2 s) */
    assert_int_equal(count(POPSEL_DIAL), 1);
    assert_non_null(find(POPSEL_DIAL, 2));
    popsel_destroy(&ps);
}

/* ---- hysteresis --------------------------------------------------------------------- */

/* Two tunnels up: slot 0 at a_ms, slot 1 at b_ms, both measured, at *now past young. */
static popsel_t *two_up(uint32_t a_ms, uint32_t b_ms, unsigned extra, uint64_t *now)
{
    popsel_t *ps = make(2, 11);
    for (unsigned i = 0; i < 2 + extra; i++)
        popsel_set_known(ps, i, true);
    step(ps, 0);
    assert_non_null(find(POPSEL_DIAL, 0));
    assert_non_null(find(POPSEL_DIAL, 1));
    uint32_t rtt[8] = {a_ms * MS, b_ms * MS};
    answer_probes(ps, rtt); /* extra slots: failed probes, unmeasured */
    bring_up(ps, 0, a_ms * MS, 5);
    bring_up(ps, 1, b_ms * MS, 5);
    step(ps, 6);
    assert_non_null(find(POPSEL_PRIMARY, 0));
    *now = 10000;
    return ps;
}

/* Probes slot i at now (its probe is due) and answers rtt_us. */
static void probe(popsel_t *ps, unsigned i, uint32_t rtt_us, uint64_t now)
{
    step(ps, now);
    assert_non_null(find(POPSEL_PROBE, i));
    assert_int_equal(popsel_probe_result(ps, i, rtt_us), 0);
}

static void test_hysteresis_holds(void **state)
{
    (void)state;
    uint64_t now;
    popsel_t *ps = two_up(50, 90, 2, &now);
    /* 5 ms better than the worst (90): no. */
    probe(ps, 2, 85 * MS, now);
    step(ps, now + 1);
    assert_int_equal(count(POPSEL_DIAL), 0);
    /* 25 ms better but not a third: no. */
    probe(ps, 2, 65 * MS, now += 7000);
    step(ps, now + 1);
    assert_int_equal(count(POPSEL_DIAL), 0);
    /* A third better (60 = 2/3 of 90) and 30 ms: yes. */
    probe(ps, 2, 60 * MS, now += 7000);
    step(ps, now + 1);
    assert_int_equal(count(POPSEL_DIAL), 1);
    const popsel_action_t *d = find(POPSEL_DIAL, 2);
    assert_non_null(d);
    assert_int_equal(d->why, POPSEL_WHY_CLOSER);
    assert_int_equal(d->other, 1);
    assert_int_equal(d->rtt_us, 60 * MS);
    assert_int_equal(d->other_rtt_us, 90 * MS);
    popsel_destroy(&ps);

    /* Small RTTs: a third better but only 8 ms: no; 10 ms: yes. */
    ps = two_up(10, 24, 1, &now);
    probe(ps, 2, 16 * MS, now);
    step(ps, now + 1);
    assert_int_equal(count(POPSEL_DIAL), 0);
    probe(ps, 2, 14 * MS, now += 7000);
    step(ps, now + 1);
    assert_non_null(find(POPSEL_DIAL, 2));
    popsel_destroy(&ps);
}

static void test_replace_one_at_a_time(void **state)
{
    (void)state;
    uint64_t now;
    popsel_t *ps = two_up(50, 90, 2, &now);
    /* Two clearly better PoPs measured at once: one dial. */
    step(ps, now);
    assert_int_equal(count(POPSEL_PROBE), 2);
    assert_int_equal(popsel_probe_result(ps, 2, 55 * MS), 0);
    assert_int_equal(popsel_probe_result(ps, 3, 52 * MS), 0);
    step(ps, now + 1);
    assert_int_equal(count(POPSEL_DIAL), 1);
    assert_non_null(find(POPSEL_DIAL, 3)); /* the best candidate */
    /* While it dials, nothing else is dialled and nothing drained. */
    step(ps, now + 2);
    assert_int_equal(count(POPSEL_DIAL), 0);
    assert_int_equal(count(POPSEL_DRAIN), 0);
    assert_true(popsel_is_up(ps, 1));
    assert_false(popsel_is_draining(ps, 1));
    /* Up: the worst (1, 90 ms) is drained; 2 (55) does not beat the set's new worst
     * (52 .. 50 ms), so it is not dialled, although it beats the tunnel just drained. */
    bring_up(ps, 3, 52 * MS, now + 3);
    step(ps, now + 4);
    const popsel_action_t *dr = find(POPSEL_DRAIN, 1);
    assert_non_null(dr);
    assert_int_equal(dr->why, POPSEL_WHY_REPLACED);
    assert_int_equal(count(POPSEL_DRAIN), 1);
    assert_int_equal(count(POPSEL_DIAL), 0);
    assert_true(popsel_is_draining(ps, 1));
    /* Idle: closed in the same step. */
    assert_non_null(find(POPSEL_CLOSE, 1));
    popsel_destroy(&ps);
}

static void test_primary_hysteresis(void **state)
{
    (void)state;
    uint64_t now;
    popsel_t *ps = two_up(50, 90, 0, &now);
    assert_int_equal(popsel_primary(ps), 0);
    assert_true(popsel_is_primary(ps, 0));
    /* 1 gets better than 0, but not by the hysteresis: 0 stays. */
    popsel_tunnel_rtt(ps, 1, 45 * MS);
    step(ps, now);
    assert_int_equal(count(POPSEL_PRIMARY), 0);
    popsel_tunnel_rtt(ps, 1, 35 * MS); /* 15 ms but not a third */
    step(ps, now);
    assert_int_equal(count(POPSEL_PRIMARY), 0);
    popsel_tunnel_rtt(ps, 1, 33 * MS); /* 17 ms and a third */
    step(ps, now);
    const popsel_action_t *p = find(POPSEL_PRIMARY, 1);
    assert_non_null(p);
    assert_int_equal(p->other, 0);
    assert_int_equal(p->why, POPSEL_WHY_BETTER);
    assert_int_equal(p->rtt_us, 33 * MS);
    assert_int_equal(p->other_rtt_us, 50 * MS);
    assert_true(popsel_is_primary(ps, 1));
    assert_false(popsel_is_primary(ps, 0));
    /* The primary dies: the other takes over at once, whatever the RTTs. */
    popsel_tunnel_down(ps, 1, now);
    assert_int_equal(popsel_primary(ps), POPSEL_NONE);
    step(ps, now + 1);
    p = find(POPSEL_PRIMARY, 0);
    assert_non_null(p);
    assert_int_equal(p->other, POPSEL_NONE);
    assert_int_equal(p->why, POPSEL_WHY_NO_PRIMARY);
    popsel_destroy(&ps);
}

static void test_young_tunnel_judged_by_probe(void **state)
{
    (void)state;
    uint64_t now;
    popsel_t *ps = two_up(50, 90, 1, &now);
    probe(ps, 2, 20 * MS, now);
    step(ps, now + 1);
    assert_non_null(find(POPSEL_DIAL, 2));
    /* It comes up reading 95 ms (a handshake under load), above the 90 ms it replaces. */
    assert_int_equal(popsel_tunnel_up(ps, 2, 95 * MS, now + 2), 0);
    popsel_tunnel_rtt(ps, 2, 95 * MS);
    assert_int_equal(popsel_rtt_of(ps, 2, now + 2), 20 * MS); /* young: the probe counts */
    step(ps, now + 3);
    assert_non_null(find(POPSEL_DRAIN, 1)); /* so 1 is drained, not the newcomer */
    /* Grown up, it is judged by its tunnel alone. */
    assert_int_equal(popsel_rtt_of(ps, 2, now + 2 + 2999), 20 * MS);
    assert_int_equal(popsel_rtt_of(ps, 2, now + 2 + 3000), 95 * MS);
    /* A tunnel up always has an RTT. */
    popsel_tunnel_rtt(ps, 2, 0);
    assert_int_equal(popsel_rtt_of(ps, 2, now + 10000), 1);
    popsel_destroy(&ps);
}

/* ---- redial backoff ----------------------------------------------------------------- */

static void test_backoff(void **state)
{
    (void)state;
    for (uint64_t seed = 0; seed < 200; seed++) {
        popsel_t *ps = make(1, seed);
        popsel_set_known(ps, 0, true);
        uint64_t now = 0;
        step(ps, now);
        assert_non_null(find(POPSEL_DIAL, 0));
        static const uint32_t want[] = {200, 400, 800, 1600, 3200, 5000, 5000};
        for (size_t r = 0; r < sizeof(want) / sizeof(want[0]); r++) {
            now += 17;
            assert_int_equal(popsel_tunnel_down(ps, 0, now), 0);
            uint32_t b = popsel_backoff_ms(ps, 0);
            assert_int_equal(b, want[r]);
            uint64_t at = popsel_retry_at(ps, 0);
            assert_true(at >= now + b / 2);
            assert_true(at < now + b / 2 + b);
            /* Not before it is due, at once when it is. */
            step(ps, at - 1);
            assert_null(find(POPSEL_DIAL, 0));
            step(ps, at);
            assert_non_null(find(POPSEL_DIAL, 0));
            now = at;
        }
        /* Up briefly: the backoff goes on growing (capped). */
        popsel_tunnel_up(ps, 0, 10 * MS, now);
        now += 10000;
        popsel_tunnel_down(ps, 0, now);
        assert_int_equal(popsel_backoff_ms(ps, 0), 5000);
        /* Up for longer than 10 s: news, retry soon. */
        step(ps, now = popsel_retry_at(ps, 0));
        assert_non_null(find(POPSEL_DIAL, 0));
        popsel_tunnel_up(ps, 0, 10 * MS, now);
        now += 10001;
        popsel_tunnel_down(ps, 0, now);
        assert_int_equal(popsel_backoff_ms(ps, 0), 200);
        assert_false(popsel_is_up(ps, 0));
        assert_int_equal(popsel_rtt_of(ps, 0, now), 0); /* unmeasured until probed again */
        popsel_destroy(&ps);
    }
    /* The jitter spreads the redials over the whole window. */
    uint64_t lo = UINT64_MAX, hi = 0;
    for (uint64_t seed = 0; seed < 200; seed++) {
        popsel_t *ps = make(1, seed);
        popsel_set_known(ps, 0, true);
        step(ps, 0);
        popsel_tunnel_down(ps, 0, 1000);
        uint64_t at = popsel_retry_at(ps, 0);
        lo = at < lo ? at : lo;
        hi = at > hi ? at : hi;
        popsel_destroy(&ps);
    }
    assert_true(lo < 1000 + 110);
    assert_true(hi > 1000 + 290);
}

/* ---- drain -------------------------------------------------------------------------- */

/* two_up(50, 90) and a third PoP at 30 ms replacing 1: returns with 1 drained at *now. */
static popsel_t *drained(uint32_t streams, uint64_t *now)
{
    popsel_t *ps = two_up(50, 90, 1, now);
    popsel_tunnel_streams(ps, 1, streams);
    probe(ps, 2, 30 * MS, *now);
    step(ps, *now + 1);
    assert_non_null(find(POPSEL_DIAL, 2));
    bring_up(ps, 2, 30 * MS, *now + 2);
    *now += 3;
    step(ps, *now);
    assert_non_null(find(POPSEL_DRAIN, 1));
    assert_true(popsel_is_draining(ps, 1));
    assert_false(popsel_is_primary(ps, 1));
    return ps;
}

static void test_drain_closes_when_idle(void **state)
{
    (void)state;
    uint64_t now;
    popsel_t *ps = drained(3, &now);
    assert_int_equal(count(POPSEL_CLOSE), 0);
    popsel_tunnel_streams(ps, 1, 1);
    step(ps, now + 1000);
    assert_int_equal(count(POPSEL_CLOSE), 0);
    popsel_tunnel_streams(ps, 1, 0);
    step(ps, now + 2000);
    const popsel_action_t *c = find(POPSEL_CLOSE, 1);
    assert_non_null(c);
    assert_int_equal(c->why, POPSEL_WHY_IDLE);
    /* Closing: not closed again while the close completes. */
    step(ps, now + 2100);
    assert_int_equal(count(POPSEL_CLOSE), 0);
    assert_int_equal(popsel_tunnel_down(ps, 1, now + 2200), 0);
    assert_false(popsel_is_draining(ps, 1));
    assert_false(popsel_is_up(ps, 1));
    popsel_destroy(&ps);
}

static void test_drain_max(void **state)
{
    (void)state;
    uint64_t now;
    popsel_t *ps = drained(5, &now);
    assert_int_equal(popsel_next_deadline(ps) <= now + 60001, true);
    step(ps, now + 60000);
    assert_int_equal(count(POPSEL_CLOSE), 0);
    step(ps, now + 60001);
    const popsel_action_t *c = find(POPSEL_CLOSE, 1);
    assert_non_null(c);
    assert_int_equal(c->why, POPSEL_WHY_DRAIN_MAX);
    popsel_destroy(&ps);
}

/* ---- fail-back ---------------------------------------------------------------------- */

static void test_fail_back(void **state)
{
    (void)state;
    uint64_t now;
    popsel_t *ps = two_up(20, 80, 1, &now);
    probe(ps, 2, 100 * MS, now);
    assert_true(popsel_is_primary(ps, 0));
    /* The primary's PoP dies: the standby takes over, the third fills the set. */
    popsel_tunnel_down(ps, 0, now + 1);
    step(ps, now + 2);
    assert_non_null(find(POPSEL_PRIMARY, 1));
    assert_non_null(find(POPSEL_DIAL, 2));
    assert_null(find(POPSEL_DIAL, 0));      /* unmeasured, and backing off */
    assert_non_null(find(POPSEL_PROBE, 0)); /* probed again at once: it fails */
    assert_int_equal(popsel_probe_result(ps, 0, 0), 0);
    bring_up(ps, 2, 100 * MS, now + 3);
    step(ps, now + 4);
    assert_int_equal(count(POPSEL_DRAIN), 0);
    /* 0 comes back: probed at 20 ms, it replaces the worst (2) and wins the primary back. */
    now += 8000;
    probe(ps, 0, 20 * MS, now);
    step(ps, now + 1);
    const popsel_action_t *d = find(POPSEL_DIAL, 0);
    assert_non_null(d);
    assert_int_equal(d->other, 2);
    bring_up(ps, 0, 20 * MS, now + 2);
    step(ps, now + 3);
    assert_non_null(find(POPSEL_DRAIN, 2));
    const popsel_action_t *p = find(POPSEL_PRIMARY, 0);
    assert_non_null(p);
    assert_int_equal(p->other, 1);
    popsel_destroy(&ps);
}

/* ---- API edges ---------------------------------------------------------------------- */

static void test_bad_config(void **state)
{
    (void)state;
    popsel_config_t good, c;
    popsel_config_defaults(&good);
    popsel_t *ps = popsel_new(&good);
    assert_non_null(ps);
    popsel_destroy(&ps);
    errno = 0;
    assert_null(popsel_new(NULL));
    assert_int_equal(errno, EINVAL);
#define BAD(field, value)                                                                          \
    do {                                                                                           \
        c = good;                                                                                  \
        c.field = value;                                                                           \
        errno = 0;                                                                                 \
        assert_null(popsel_new(&c));                                                               \
        assert_int_equal(errno, EINVAL);                                                           \
    } while (0)
    BAD(k, 0);
    BAD(k, POPSEL_MAX + 1);
    BAD(hyst_div, 1);
    BAD(hyst_div, 0);
    BAD(probe_ms, 0);
    BAD(drain_max_ms, 0);
    BAD(backoff_min_ms, 0);
    BAD(backoff_max_ms, good.backoff_min_ms - 1);
    BAD(backoff_max_ms, (1u << 31) + 1);
#undef BAD
    c = good;
    c.k = POPSEL_MAX;
    c.hyst_ms = 0;
    c.young_ms = 0;
    c.backoff_min_ms = c.backoff_max_ms = 1u << 31;
    ps = popsel_new(&c);
    assert_non_null(ps);
    popsel_destroy(&ps);
}

static void test_events_checked(void **state)
{
    (void)state;
    popsel_t *ps = make(1, 5);
    assert_int_equal(popsel_set_known(ps, POPSEL_MAX, true), -ERANGE);
    assert_int_equal(popsel_tunnel_up(ps, 0, 1, 0), -EINVAL);   /* not dialled */
    assert_int_equal(popsel_tunnel_down(ps, 0, 0), -EINVAL);    /* nothing to lose */
    assert_int_equal(popsel_tunnel_rtt(ps, 0, 1), -EINVAL);     /* not up */
    assert_int_equal(popsel_tunnel_streams(ps, 0, 1), -EINVAL); /* not up */
    assert_int_equal(popsel_probe_result(ps, 0, 1), -EINVAL);   /* no probe */
    assert_int_equal(popsel_probe_result(ps, POPSEL_MAX, 1), -ERANGE);
    /* Unknown PoPs are neither probed nor dialled. */
    assert_int_equal(step(ps, 0), 0);
    assert_int_equal(popsel_next_deadline(ps), UINT64_MAX);
    popsel_set_known(ps, 5, true);
    step(ps, 0);
    assert_non_null(find(POPSEL_PROBE, 5));
    assert_non_null(find(POPSEL_DIAL, 5));
    assert_int_equal(popsel_forget(ps, 5), -EBUSY);
    assert_int_equal(popsel_move(ps, 6, 5), -EBUSY);
    bring_up(ps, 5, 10 * MS, 1);
    /* Dropped from the list, its tunnel stays. */
    popsel_set_known(ps, 5, false);
    step(ps, 2);
    assert_true(popsel_is_up(ps, 5));
    assert_true(popsel_is_primary(ps, 5));
    assert_int_equal(popsel_probe_result(ps, 5, 10 * MS), 0);
    /* Moved: the state goes along. */
    assert_int_equal(popsel_move(ps, 5, 9), 0);
    assert_true(popsel_is_up(ps, 9));
    assert_true(popsel_is_primary(ps, 9));
    assert_false(popsel_is_up(ps, 5));
    assert_int_equal(popsel_tunnel_down(ps, 9, 3), 0);
    assert_int_equal(popsel_forget(ps, 9), 0);
    assert_int_equal(popsel_backoff_ms(ps, 9), 0);
    assert_int_equal(step(ps, 4), 0);
    assert_string_equal(popsel_kind_name(POPSEL_DRAIN), "drain");
    assert_string_equal(popsel_why_name(POPSEL_WHY_IDLE), "drained and idle");
    popsel_destroy(&ps);
}

/* An out[] of one: every action still comes, one per step, none lost or repeated. */
static void test_small_out(void **state)
{
    (void)state;
    popsel_t *ps = make(2, 9);
    for (unsigned i = 0; i < 3; i++)
        popsel_set_known(ps, i, true);
    popsel_action_t one;
    unsigned probes = 0, dials = 0;
    for (uint64_t t = 0; t < 10; t++) {
        size_t n = popsel_step(ps, t, &one, 1);
        assert_true(n <= 1);
        if (n && one.kind == POPSEL_PROBE)
            probes |= 1u << one.pop;
        if (n && one.kind == POPSEL_DIAL)
            dials |= 1u << one.pop;
    }
    assert_int_equal(probes, 7);
    assert_int_equal(dials, 3);
    popsel_destroy(&ps);
}

/* ---- regions ------------------------------------------------------------------------ */

/* A driver that carries every action out at once: probes and dials answer with rtt_ms[i]
 * (a dial to an unreachable PoP fails, its probe measures 0), closes complete, tunnels carry
 * no stream. Steps every 100 ms from *now for ms, killing the tunnels of PoPs made
 * unreachable. Counts the actions of each kind (and the DIALs by why) into the globals. */
#define RG 6 /* PoPs in the region tests */
static uint32_t rg_rtt_ms[RG];
static bool rg_reach[RG];
static unsigned rg_dials, rg_spread_dials, rg_drains, rg_primaries;

static void drive(popsel_t *ps, uint64_t *now, uint64_t ms)
{
    for (uint64_t end = *now + ms; *now < end; *now += 100) {
        for (unsigned i = 0; i < RG; i++) {
            if (popsel_is_up(ps, i) && !rg_reach[i])
                assert_int_equal(popsel_tunnel_down(ps, i, *now), 0);
            if (popsel_is_up(ps, i)) {
                assert_int_equal(popsel_tunnel_rtt(ps, i, rg_rtt_ms[i] * MS), 0);
                assert_int_equal(popsel_tunnel_streams(ps, i, 0), 0);
            }
        }
        bool was_spread = popsel_is_spread(ps);
        step(ps, *now);
        /* A step never takes a spread set back to one region. */
        assert_true(!was_spread || popsel_is_spread(ps));
        for (size_t j = 0; j < nacts; j++) {
            const popsel_action_t *a = &acts[j];
            switch (a->kind) {
            case POPSEL_PROBE:
                assert_int_equal(
                    popsel_probe_result(ps, a->pop, rg_reach[a->pop] ? rg_rtt_ms[a->pop] * MS : 0),
                    0);
                break;
            case POPSEL_DIAL:
                rg_dials++;
                rg_spread_dials += a->why == POPSEL_WHY_SPREAD;
                if (rg_reach[a->pop])
                    assert_int_equal(popsel_tunnel_up(ps, a->pop, rg_rtt_ms[a->pop] * MS, *now), 0);
                else
                    assert_int_equal(popsel_tunnel_down(ps, a->pop, *now), 0);
                break;
            case POPSEL_DRAIN:
                rg_drains++;
                break;
            case POPSEL_CLOSE:
                assert_int_equal(popsel_tunnel_down(ps, a->pop, *now), 0);
                break;
            case POPSEL_PRIMARY:
                rg_primaries++;
                break;
            }
        }
    }
}

/* The tunnels up and not draining, as a bit set of slots. */
static unsigned kept_set(const popsel_t *ps)
{
    unsigned m = 0;
    for (unsigned i = 0; i < RG; i++)
        if (popsel_is_up(ps, i) && !popsel_is_draining(ps, i))
            m |= 1u << i;
    return m;
}

/* Six PoPs: 0, 1, 2 at 10, 20, 30 ms and 3, 4, 5 at 40, 70, 80 ms; region[i] for each. */
static popsel_t *six(unsigned k, const uint32_t *region)
{
    static const uint32_t rtt[RG] = {10, 20, 30, 40, 70, 80};
    popsel_t *ps = make(k, 21);
    for (unsigned i = 0; i < RG; i++) {
        rg_rtt_ms[i] = rtt[i];
        rg_reach[i] = true;
        assert_int_equal(popsel_set_known(ps, i, true), 0);
        if (region)
            assert_int_equal(popsel_set_region(ps, i, region[i]), 0);
    }
    rg_dials = rg_spread_dials = rg_drains = rg_primaries = 0;
    return ps;
}

static const uint32_t two_regions[RG] = {1, 1, 1, 2, 2, 2};

static void test_regions_spread(void **state)
{
    (void)state;
    popsel_t *ps = six(2, two_regions);
    assert_int_equal(popsel_region_of(ps, 3), 2);
    assert_int_equal(popsel_set_region(ps, POPSEL_MAX, 1), -ERANGE);
    /* Enrollment, nothing measured: the first PoP, then the first of another region. */
    step(ps, 0);
    assert_int_equal(count(POPSEL_DIAL), 2);
    assert_int_equal(acts[RG].kind, POPSEL_DIAL); /* after the six probes */
    assert_int_equal(acts[RG].pop, 0);
    assert_non_null(find(POPSEL_DIAL, 3));
    assert_int_equal(find(POPSEL_DIAL, 3)->why, POPSEL_WHY_FILL);
    /* Both fail; the probes measure everyone. While 0 and 3 back off, the fill takes the best
     * (1, 20 ms) and the best of the other region (4, 70 ms), not 2 (30 ms). */
    for (unsigned i = 0; i < RG; i++)
        assert_int_equal(popsel_probe_result(ps, i, rg_rtt_ms[i] * MS), 0);
    assert_int_equal(popsel_tunnel_down(ps, 0, 10), 0);
    assert_int_equal(popsel_tunnel_down(ps, 3, 10), 0);
    step(ps, 20);
    assert_int_equal(count(POPSEL_DIAL), 2);
    assert_int_equal(acts[0].pop, 1);
    assert_non_null(find(POPSEL_DIAL, 4));
    assert_null(find(POPSEL_DIAL, 2));
    bring_up(ps, 1, 20 * MS, 30);
    bring_up(ps, 4, 70 * MS, 30);
    /* Once 0 and 3 are measured again each replaces its region's member: 0 (10 ms) beats 1 (20
     * ms, the member whose leaving keeps two regions), 3 (40) beats 4 (70). 2 (30 ms) beats 4
     * too, but would replace itself: it is never dialled. The primary ends on 0, the best. */
    uint64_t now = 100;
    drive(ps, &now, 30000);
    assert_int_equal(kept_set(ps), 1u << 0 | 1u << 3);
    assert_true(popsel_is_primary(ps, 0));
    assert_true(popsel_is_spread(ps));
    assert_int_equal(rg_dials, 2); /* 0 and 3, nothing else */
    /* And it stays: a minute more, no dial. */
    drive(ps, &now, 60000);
    assert_int_equal(rg_dials, 2);
    assert_int_equal(kept_set(ps), 1u << 0 | 1u << 3);
    popsel_destroy(&ps);
}

/* Region 2 fails whole: the set fills in region 1 (as without regions); when region 2
 * returns, the spread rule brings it back past any hysteresis, draining region 1's worst. */
static void test_region_unreachable(void **state)
{
    (void)state;
    popsel_t *ps = six(2, two_regions);
    uint64_t now = 0;
    drive(ps, &now, 30000);
    assert_int_equal(kept_set(ps), 1u << 0 | 1u << 3);
    for (unsigned i = 3; i < RG; i++)
        rg_reach[i] = false;
    unsigned primaries = rg_primaries;
    drive(ps, &now, 20000);
    assert_int_equal(kept_set(ps), 1u << 0 | 1u << 1);
    assert_true(popsel_is_primary(ps, 0));
    assert_false(popsel_is_spread(ps));
    assert_int_equal(rg_primaries, primaries); /* the primary never moved */
    /* Nothing more while region 2 stays down. */
    unsigned dials = rg_dials;
    drive(ps, &now, 30000);
    assert_int_equal(rg_dials, dials);
    /* It comes back. Within a probe period (5 s, +20%) the first of its PoPs measured
     * replaces 1 by the spread rule, whatever its RTT (here 5, 80 ms), and 3, the closest,
     * replaces that one past the hysteresis once measured too (or directly when first). */
    for (unsigned i = 3; i < RG; i++)
        rg_reach[i] = true;
    unsigned spread_dials = rg_spread_dials, drains = rg_drains;
    drive(ps, &now, 6100);
    assert_int_equal(kept_set(ps), 1u << 0 | 1u << 3);
    assert_int_equal(rg_spread_dials, spread_dials + 1);
    assert_in_range(rg_drains, drains + 1, drains + 2);
    assert_true(popsel_is_primary(ps, 0));
    assert_int_equal(rg_primaries, primaries);
    popsel_destroy(&ps);
}

/* The spread dial ignores the hysteresis, and the drain keeps the best and the new region. */
static void test_spread_dial(void **state)
{
    (void)state;
    popsel_t *ps = six(2, two_regions);
    for (unsigned i = 3; i < RG; i++)
        rg_reach[i] = false;
    uint64_t now = 0;
    drive(ps, &now, 10000);
    assert_int_equal(kept_set(ps), 1u << 0 | 1u << 1);
    /* 5 comes back (80 ms, far worse than 1's 20): dialled anyway, to replace 1. */
    rg_reach[5] = true;
    const popsel_action_t *d = NULL;
    for (unsigned t = 0; t < 80 && !d; t++) {
        drive(ps, &now, 100);
        d = find(POPSEL_DIAL, 5);
    }
    assert_non_null(d);
    assert_int_equal(d->why, POPSEL_WHY_SPREAD);
    assert_int_equal(d->other, 1);
    assert_int_equal(d->rtt_us, 80 * MS);
    assert_int_equal(d->other_rtt_us, 20 * MS);
    drive(ps, &now, 200);
    assert_int_equal(kept_set(ps), 1u << 0 | 1u << 5);
    assert_true(popsel_is_primary(ps, 0));
    popsel_destroy(&ps);
}

/* One region for all, or none at all: the choice by RTT alone, the two closest. */
static void test_one_region_as_before(void **state)
{
    (void)state;
    static const uint32_t one[RG] = {4, 4, 4, 4, 4, 4};
    for (int pass = 0; pass < 2; pass++) {
        popsel_t *ps = six(2, pass ? one : NULL);
        uint64_t now = 0;
        drive(ps, &now, 30000);
        assert_int_equal(kept_set(ps), 1u << 0 | 1u << 1);
        assert_false(popsel_is_spread(ps) && pass);
        assert_true(popsel_is_spread(ps) || pass); /* no region: apart from every other */
        assert_int_equal(rg_spread_dials, 0);
        popsel_destroy(&ps);
    }
}

/* k = 1: one tunnel, the best PoP, wherever it is; its death moves it to the next best. */
static void test_regions_k1(void **state)
{
    (void)state;
    popsel_t *ps = six(1, two_regions);
    uint64_t now = 0;
    drive(ps, &now, 30000);
    assert_int_equal(kept_set(ps), 1u << 0);
    rg_reach[0] = false;
    drive(ps, &now, 10000);
    assert_int_equal(kept_set(ps), 1u << 1); /* region 1 again: no spread with one tunnel */
    assert_int_equal(rg_spread_dials, 0);
    popsel_destroy(&ps);
}

/* ---- random driver ------------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

#define RP 12 /* PoPs in the random runs */

struct sim {
    uint32_t base_ms[RP]; /* each PoP's true RTT; it drifts */
    bool probing[RP], dialing[RP], up[RP], closing[RP];
};

static void check_invariants(const popsel_t *ps, unsigned k)
{
    unsigned kept = 0, dialing = 0, primaries = 0;
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        if (popsel_is_up(ps, i) && !popsel_is_draining(ps, i))
            kept++;
        dialing += popsel_is_dialing(ps, i);
        if (popsel_is_primary(ps, i)) {
            primaries++;
            assert_true(popsel_is_up(ps, i));
            assert_false(popsel_is_draining(ps, i));
        }
        if (popsel_is_draining(ps, i))
            assert_true(popsel_is_up(ps, i));
    }
    assert_true(kept <= k + 1);
    if (kept >= k)
        assert_true(dialing <= 1);
    assert_true(primaries <= 1);
}

/* How the random runs place PoPs in regions. */
enum rr_regions {
    RR_NONE = 0, /* popsel_set_region never called */
    RR_ZERO,     /* every PoP set to region 0 */
    RR_ONE,      /* every PoP in one region */
    RR_TWO,      /* two regions, alternating */
    RR_MIXED,    /* three regions and PoPs without one */
};

/* Runs a random driver and returns a hash of every action. */
static uint64_t random_run(uint64_t seed, unsigned k, unsigned rounds, enum rr_regions regions)
{
    popsel_t *ps = make(k, seed);
    struct sim sim = {0};
    uint64_t r = seed * 7919 + 1, now = 0, hash = 1469598103934665603ull;
    for (unsigned i = 0; i < RP; i++) {
        sim.base_ms[i] = 5 + (uint32_t)(splitmix(&r) % 150);
        if (splitmix(&r) % 4)
            popsel_set_known(ps, i, true);
        static const uint32_t mixed[4] = {0, 1, 2, 3};
        if (regions != RR_NONE)
            assert_int_equal(popsel_set_region(ps, i,
                                               regions == RR_ZERO  ? 0
                                               : regions == RR_ONE ? 9
                                               : regions == RR_TWO ? 1 + i % 2
                                                                   : mixed[i % 4]),
                             0);
    }
    for (unsigned round = 0; round < rounds; round++) {
        now += 1 + splitmix(&r) % 400;
        for (unsigned i = 0; i < RP; i++) {
            uint64_t x = splitmix(&r) % 1000;
            if (x < 3)
                popsel_set_known(ps, i, !(x & 1));
            if (x < 40) /* drift */
                sim.base_ms[i] = 5 + (uint32_t)(splitmix(&r) % 150);
            if (sim.probing[i] && x % 3 == 0) {
                sim.probing[i] = false;
                uint32_t v = x % 7 == 0 ? 0 : sim.base_ms[i] * MS;
                assert_int_equal(popsel_probe_result(ps, i, v), 0);
            }
            if (sim.dialing[i] && x % 4 == 0) {
                sim.dialing[i] = false;
                if (x % 5 == 0) {
                    assert_int_equal(popsel_tunnel_down(ps, i, now), 0);
                } else {
                    assert_int_equal(popsel_tunnel_up(ps, i, sim.base_ms[i] * MS, now), 0);
                    sim.up[i] = true;
                }
            } else if (sim.up[i] && (x < 5 || (sim.closing[i] && x % 2 == 0))) {
                sim.up[i] = sim.closing[i] = false;
                assert_int_equal(popsel_tunnel_down(ps, i, now), 0);
            }
            if (sim.up[i]) {
                assert_int_equal(popsel_tunnel_rtt(ps, i, sim.base_ms[i] * MS), 0);
                assert_int_equal(popsel_tunnel_streams(ps, i, (uint32_t)(x % 4)), 0);
            }
            check_invariants(ps, k);
        }
        bool was_spread = popsel_is_spread(ps);
        step(ps, now);
        if (k >= 2 && was_spread) /* a step never takes the set back to one region */
            assert_true(popsel_is_spread(ps));
        assert_true(count(POPSEL_DRAIN) <= 1);
        assert_true(count(POPSEL_PRIMARY) <= 1);
        size_t closer = 0;
        for (size_t j = 0; j < nacts; j++) {
            const popsel_action_t *a = &acts[j];
            closer += a->kind == POPSEL_DIAL &&
                      (a->why == POPSEL_WHY_CLOSER || a->why == POPSEL_WHY_SPREAD);
            hash = (hash ^ ((uint64_t)a->kind << 8 | a->pop)) * 1099511628211ull;
            hash = (hash ^ now) * 1099511628211ull;
            switch (a->kind) {
            case POPSEL_PROBE:
                assert_false(sim.probing[a->pop]);
                sim.probing[a->pop] = true;
                break;
            case POPSEL_DIAL:
                assert_false(sim.dialing[a->pop] || sim.up[a->pop]);
                sim.dialing[a->pop] = true;
                break;
            case POPSEL_CLOSE:
                assert_true(sim.up[a->pop]);
                assert_false(sim.closing[a->pop]);
                sim.closing[a->pop] = true;
                break;
            case POPSEL_DRAIN:
            case POPSEL_PRIMARY:
                assert_true(sim.up[a->pop]);
                break;
            }
        }
        assert_true(closer <= 1);
        check_invariants(ps, k);
        /* Whatever was due has been done: the next deadline is in the future. */
        assert_true(popsel_next_deadline(ps) > now);
    }
    popsel_destroy(&ps);
    return hash;
}

static void test_random_invariants(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        unsigned k = 1 + (unsigned)(seed % 4);
        enum rr_regions regions = (enum rr_regions)(seed % 5);
        uint64_t h = random_run(seed, k, 1500, regions);
        assert_int_equal(random_run(seed, k, 1500, regions), h); /* replays from its seed */
    }
}

/* Action traces of the core before it knew regions (commit 4cbbbbe), for seeds 1 .. 8 with
 * k = 1 + seed % 4: without regions, with every PoP in region 0 or in one region, and with
 * k = 1 whatever the regions, a run must give the very same actions. */
static const uint64_t before_regions[8] = {
    0x9d80837904f1d321ull, 0xfd5c5e18a91cff3cull, 0x62c94401ebc0ef23ull, 0xc436b8ea615aacb9ull,
    0x3e53816577fb0131ull, 0xb0073d9069cf12d9ull, 0xb35f706c62869b23ull, 0x737123774b52ececull,
};

static void test_regions_change_nothing_else(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        unsigned k = 1 + (unsigned)(seed % 4);
        uint64_t want = before_regions[seed - 1];
        assert_int_equal(random_run(seed, k, 1500, RR_NONE), want);
        assert_int_equal(random_run(seed, k, 1500, RR_ZERO), want);
        assert_int_equal(random_run(seed, k, 1500, RR_ONE), want);
        if (k == 1) {
            assert_int_equal(random_run(seed, k, 1500, RR_TWO), want);
            assert_int_equal(random_run(seed, k, 1500, RR_MIXED), want);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_initial_k_best_measured),
        cmocka_unit_test(test_unmeasured_only_when_nothing_measured),
        cmocka_unit_test(test_hysteresis_holds),
        cmocka_unit_test(test_replace_one_at_a_time),
        cmocka_unit_test(test_primary_hysteresis),
        cmocka_unit_test(test_young_tunnel_judged_by_probe),
        cmocka_unit_test(test_backoff),
        cmocka_unit_test(test_drain_closes_when_idle),
        cmocka_unit_test(test_drain_max),
        cmocka_unit_test(test_fail_back),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_events_checked),
        cmocka_unit_test(test_small_out),
        cmocka_unit_test(test_regions_spread),
        cmocka_unit_test(test_region_unreachable),
        cmocka_unit_test(test_spread_dial),
        cmocka_unit_test(test_one_region_as_before),
        cmocka_unit_test(test_regions_k1),
        cmocka_unit_test(test_random_invariants),
        cmocka_unit_test(test_regions_change_nothing_else),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
