/* Unit tests of the hybrid logical clock (storage/hlc.h). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "storage/hlc.h"

static void test_init_and_first_version(void **state)
{
    hlc_t h;
    hlc_init(&h);
    assert_int_equal(h.last, 0);
    assert_int_equal(h.skew_rejected, 0);
    uint64_t v = hlc_now(&h, 1000);
    /* A fresh clock follows the wall clock with counter 0. */
    assert_int_equal(v, hlc_make(1000, 0));
    assert_int_equal(hlc_ms(v), 1000);
    assert_int_equal(h.last, v);
}

static void test_monotonic(void **state)
{
    hlc_t h;
    hlc_init(&h);
    uint64_t prev = 0;
    /* Wall clock that stalls, jumps ahead and goes backwards: versions only ever grow. */
    static const uint64_t wall[] = {5000, 5000, 5000, 5001, 4000, 4000, 9000, 8999, 9000, 1};
    for (size_t i = 0; i < sizeof(wall) / sizeof(wall[0]); i++) {
        uint64_t v = hlc_now(&h, wall[i]);
        assert_true(v > prev);
        prev = v;
    }
    /* Same millisecond: the counter counts. */
    hlc_init(&h);
    assert_int_equal(hlc_now(&h, 7), hlc_make(7, 0));
    assert_int_equal(hlc_now(&h, 7), hlc_make(7, 1));
    assert_int_equal(hlc_now(&h, 7), hlc_make(7, 2));
    /* Clock behind: stays on the logical millisecond, counter continues. */
    assert_int_equal(hlc_now(&h, 3), hlc_make(7, 3));
    /* Wall moves past: counter restarts. */
    assert_int_equal(hlc_now(&h, 8), hlc_make(8, 0));
}

static void test_counter_rollover(void **state)
{
    hlc_t h;
    hlc_init(&h);
    h.last = hlc_make(1000, 0xfffe);
    assert_int_equal(hlc_now(&h, 1000), hlc_make(1000, 0xffff));
    /* The counter is exhausted: carry into the millisecond field, never wrap backwards. */
    uint64_t v = hlc_now(&h, 1000);
    assert_int_equal(v, hlc_make(1001, 0));
    assert_int_equal(hlc_ms(v), 1001);
    /* And the wall clock catching up to the carried millisecond does not go back. */
    assert_int_equal(hlc_now(&h, 1001), hlc_make(1001, 1));
    /* 70000 events in one millisecond all stay distinct and ordered. */
    hlc_init(&h);
    uint64_t prev = 0;
    for (int i = 0; i < 70000; i++) {
        uint64_t x = hlc_now(&h, 42);
        assert_true(x > prev);
        prev = x;
    }
    assert_int_equal(hlc_ms(prev), 43);
}

static void test_receive_rule(void **state)
{
    hlc_t h;
    hlc_init(&h);
    uint64_t now = 100000;
    assert_int_equal(hlc_now(&h, now), hlc_make(now, 0));

    /* Remote ahead of us (within the limit): the next local version is after it, on the
     * remote's millisecond with its counter + 1 (l' = max(l, m.l, pt)). */
    uint64_t remote = hlc_make(now + 500, 7);
    assert_int_equal(hlc_observe(&h, remote, now), 0);
    assert_int_equal(h.last, remote);
    assert_int_equal(hlc_now(&h, now), hlc_make(now + 500, 8));

    /* Remote behind: the clock does not move backwards. */
    uint64_t before = h.last;
    assert_int_equal(hlc_observe(&h, hlc_make(now - 10, 3), now), 0);
    assert_int_equal(h.last, before);

    /* Equal ms, bigger counter: adopted. */
    assert_int_equal(hlc_observe(&h, hlc_make(now + 500, 100), now), 0);
    assert_int_equal(hlc_now(&h, now), hlc_make(now + 500, 101));

    /* Wall clock overtakes everything: counter back to 0. */
    assert_int_equal(hlc_now(&h, now + 600), hlc_make(now + 600, 0));
    assert_int_equal(h.skew_rejected, 0);
}

static void test_skew_rejected(void **state)
{
    hlc_t h;
    hlc_init(&h);
    uint64_t now = 1700000000000ull;
    uint64_t v = hlc_now(&h, now);

    /* One millisecond past the limit: refused, counted, clock unchanged. */
    assert_int_equal(hlc_observe(&h, hlc_make(now + HLC_MAX_AHEAD_MS + 1, 0), now), -ERANGE);
    assert_int_equal(h.skew_rejected, 1);
    assert_int_equal(h.last, v);
    assert_int_equal(hlc_observe(&h, UINT64_MAX, now), -ERANGE);
    assert_int_equal(h.skew_rejected, 2);
    assert_int_equal(h.last, v);
    /* The next local version is still on our own wall clock. */
    assert_int_equal(hlc_now(&h, now), v + 1);

    /* Exactly at the limit (any counter) is still accepted. */
    uint64_t edge = hlc_make(now + HLC_MAX_AHEAD_MS, 0xffff);
    assert_int_equal(hlc_observe(&h, edge, now), 0);
    assert_int_equal(h.last, edge);
    assert_int_equal(h.skew_rejected, 2);
}

static void test_wall_clock_out_of_range(void **state)
{
    hlc_t h;
    hlc_init(&h);
    /* A wall clock beyond 48 bits is clamped, not wrapped into a small version. */
    uint64_t v1 = hlc_now(&h, UINT64_MAX);
    assert_int_equal(hlc_ms(v1), (1ull << 48) - 1);
    uint64_t v2 = hlc_now(&h, UINT64_MAX);
    assert_true(v2 > v1);
    /* Saturation: the clock never wraps to 0. */
    h.last = UINT64_MAX;
    assert_int_equal(hlc_now(&h, 5), UINT64_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_first_version),
        cmocka_unit_test(test_monotonic),
        cmocka_unit_test(test_counter_rollover),
        cmocka_unit_test(test_receive_rule),
        cmocka_unit_test(test_skew_rejected),
        cmocka_unit_test(test_wall_clock_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
