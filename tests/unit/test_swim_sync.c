/* SYNC_REPLY rate limit: a member that floods a node with SYNC requests gets at most the
 * bucket's burst of full-table replies, then SWIM_SYNC_RATE per second; every SYNC is still
 * merged. Two real cores, messages captured by hand, virtual time. */
#include "common/mp.h"
#include "gossip/swim.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAXMSG 4096

struct capture {
    uint8_t *msgs[MAXMSG];
    size_t lens[MAXMSG];
    uint64_t dest[MAXMSG];
    size_t n;
};

static void cap_send(void *ctx, uint64_t dest, const uint8_t *msg, size_t len)
{
    struct capture *c = ctx;
    if (c->n == MAXMSG)
        return;
    c->msgs[c->n] = malloc(len);
    memcpy(c->msgs[c->n], msg, len);
    c->lens[c->n] = len;
    c->dest[c->n] = dest;
    c->n++;
}

static void cap_clear(struct capture *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->msgs[i]);
    c->n = 0;
}

static uint64_t msg_type(const uint8_t *m, size_t len)
{
    mpr_t r;
    uint32_t n;
    uint64_t v, t;
    mpr_init(&r, m, len);
    if (mpr_array(&r, &n) || mpr_uint(&r, &v) || mpr_uint(&r, &t))
        return 0;
    return t;
}

static size_t count_type(const struct capture *c, uint64_t type)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++)
        k += msg_type(c->msgs[i], c->lens[i]) == type;
    return k;
}

static swim_t *core(uint64_t id, struct capture *c)
{
    swim_config_t cfg;
    swim_config_defaults(&cfg);
    cfg.self_id = id;
    cfg.rng_seed = id;
    cfg.push_pull_ms = 1000;
    swim_io_t io = {.ctx = c, .send = cap_send};
    return swim_new(&cfg, &io, NULL, 0, 0);
}

static void test_sync_replies_are_rate_limited(void **state)
{
    struct capture ca = {0}, cb = {0};
    swim_t *a = core(1, &ca), *b = core(2, &cb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(swim_add_member(a, 2, NULL, 0, true, 0), 0);
    assert_int_equal(swim_add_member(b, 1, NULL, 0, true, 0), 0);

    /* Let a run until it has sent a SYNC (its push-pull) to b. */
    const uint8_t *sync = NULL;
    size_t sync_len = 0;
    for (uint64_t t = 0; t <= 5000 && !sync; t += 10) {
        swim_tick(a, t);
        for (size_t i = 0; i < ca.n && !sync; i++)
            if (msg_type(ca.msgs[i], ca.lens[i]) == 5) { /* SWIM_MSG_SYNC */
                sync = ca.msgs[i];
                sync_len = ca.lens[i];
            }
    }
    assert_non_null(sync);

    /* 100 copies within one millisecond: only the burst is answered. */
    for (int i = 0; i < 100; i++)
        assert_int_equal(swim_receive(b, 1, sync, sync_len, 100), 0);
    assert_int_equal(count_type(&cb, 6), SWIM_SYNC_BURST); /* SWIM_MSG_SYNC_REPLY */
    swim_stats_t st;
    swim_get_stats(b, &st);
    assert_int_equal(st.sync_replies_suppressed, 100 - SWIM_SYNC_BURST);

    /* One second later the bucket has refilled by the rate, no more. */
    cap_clear(&cb);
    for (int i = 0; i < 100; i++)
        assert_int_equal(swim_receive(b, 1, sync, sync_len, 1100), 0);
    assert_int_equal(count_type(&cb, 6), SWIM_SYNC_RATE);

    /* A node that stays quiet gets its full burst back, never more. */
    cap_clear(&cb);
    for (int i = 0; i < 100; i++)
        assert_int_equal(swim_receive(b, 1, sync, sync_len, 600000), 0);
    assert_int_equal(count_type(&cb, 6), SWIM_SYNC_BURST);

    cap_clear(&ca);
    cap_clear(&cb);
    swim_destroy(&a);
    swim_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sync_replies_are_rate_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
