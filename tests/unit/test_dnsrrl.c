/* Unit tests of node/dns/dnsrrl (response rate limiting): the burst, the refill, slip
 * (0, 1, N), the networks that share a bucket (/24, /56, IPv4-mapped) and those that do not,
 * a clock that goes back, RRL off, non-IP sources, and bounded memory under a flood of
 * spoofed networks. */
#include "node/dns/dnsrrl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct sockaddr_storage ss[4];

static const struct sockaddr *addr(int slot, const char *a)
{
    memset(&ss[slot], 0, sizeof(ss[slot]));
    if (strchr(a, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss[slot];
        s6->sin6_family = AF_INET6;
        assert_int_equal(inet_pton(AF_INET6, a, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss[slot];
        s4->sin_family = AF_INET;
        assert_int_equal(inet_pton(AF_INET, a, &s4->sin_addr), 1);
    }
    return (const struct sockaddr *)&ss[slot];
}

/* count checks of src at now: how many SEND, DROP, SLIP */
static void run(dnsrrl_t *r, const struct sockaddr *src, uint64_t now, int count, int *send,
                int *drop, int *slip)
{
    *send = *drop = *slip = 0;
    for (int i = 0; i < count; i++) {
        switch (dnsrrl_check(r, src, now)) {
        case DNSRRL_SEND: (*send)++; break;
        case DNSRRL_DROP: (*drop)++; break;
        case DNSRRL_SLIP: (*slip)++; break;
        }
    }
}

static void test_off(void **state)
{
    (void)state;
    dnsrrl_t *r = dnsrrl_new(0, 2);
    assert_non_null(r);
    int s, d, l;
    run(r, addr(0, "192.0.2.1"), 1000, 10000, &s, &d, &l);
    assert_int_equal(s, 10000);
    dnsrrl_free(&r);
    assert_null(r);
    dnsrrl_free(&r); /* NULL is fine */
    dnsrrl_free(NULL);
}

static void test_burst_refill_slip(void **state)
{
    (void)state;
    dnsrrl_t *r = dnsrrl_new(10, 2);
    const struct sockaddr *a = addr(0, "192.0.2.1");
    int s, d, l;
    run(r, a, 5000, 10, &s, &d, &l); /* the burst */
    assert_int_equal(s, 10);
    run(r, a, 5000, 10, &s, &d, &l); /* over it: every 2nd slips */
    assert_int_equal(s, 0);
    assert_int_equal(d, 5);
    assert_int_equal(l, 5);
    run(r, a, 5099, 1, &s, &d, &l); /* 99 ms: 0.99 token */
    assert_int_equal(s, 0);
    run(r, a, 5100, 2, &s, &d, &l); /* 100 ms after: one token */
    assert_int_equal(s, 1);
    run(r, a, 5600, 10, &s, &d, &l); /* 500 ms: 5 */
    assert_int_equal(s, 5);
    run(r, a, 60000, 20, &s, &d, &l); /* a long pause refills to the burst, no more */
    assert_int_equal(s, 10);
    /* a steady 10/s is always sent */
    for (uint64_t t = 70000; t < 72000; t += 100) {
        run(r, a, t, 1, &s, &d, &l);
        assert_int_equal(s, 1);
    }
    dnsrrl_stats_t st;
    dnsrrl_stats(r, &st);
    assert_true(st.sent > 0 && st.dropped > 0 && st.slipped > 0);
    dnsrrl_free(&r);
}

static void test_slip_modes(void **state)
{
    (void)state;
    int s, d, l;
    dnsrrl_t *none = dnsrrl_new(5, 0), *all = dnsrrl_new(5, 1), *third = dnsrrl_new(5, 3);
    const struct sockaddr *a = addr(0, "198.51.100.1");
    run(none, a, 1, 35, &s, &d, &l);
    assert_int_equal(s, 5);
    assert_int_equal(d, 30);
    assert_int_equal(l, 0);
    run(all, a, 1, 35, &s, &d, &l);
    assert_int_equal(l, 30);
    assert_int_equal(d, 0);
    run(third, a, 1, 35, &s, &d, &l);
    assert_int_equal(l, 10);
    assert_int_equal(d, 20);
    dnsrrl_free(&none);
    dnsrrl_free(&all);
    dnsrrl_free(&third);
}

static void test_networks(void **state)
{
    (void)state;
    int s, d, l;
    dnsrrl_t *r = dnsrrl_new(3, 0);
    /* one /24 shares a bucket */
    run(r, addr(0, "192.0.2.1"), 1, 3, &s, &d, &l);
    run(r, addr(1, "192.0.2.200"), 1, 1, &s, &d, &l);
    assert_int_equal(d, 1);
    /* an IPv4-mapped address is its IPv4 network */
    run(r, addr(1, "::ffff:192.0.2.77"), 1, 1, &s, &d, &l);
    assert_int_equal(d, 1);
    /* the next /24 has its own */
    run(r, addr(1, "192.0.3.1"), 1, 3, &s, &d, &l);
    assert_int_equal(s, 3);
    /* IPv6: one /56 shares, the next /56 (bit 56 differs) does not; a different /48 neither */
    run(r, addr(2, "2001:db8:0:100::1"), 1, 3, &s, &d, &l);
    assert_int_equal(s, 3);
    run(r, addr(2, "2001:db8:0:1ff:ffff::9"), 1, 1, &s, &d, &l);
    assert_int_equal(d, 1);
    run(r, addr(2, "2001:db8:0:200::1"), 1, 3, &s, &d, &l);
    assert_int_equal(s, 3);
    run(r, addr(2, "2001:db8:1:100::1"), 1, 3, &s, &d, &l);
    assert_int_equal(s, 3);
    /* not IP, or no source: not limited */
    struct sockaddr un = {.sa_family = AF_UNIX};
    run(r, &un, 1, 100, &s, &d, &l);
    assert_int_equal(s, 100);
    run(r, NULL, 1, 100, &s, &d, &l);
    assert_int_equal(s, 100);
    dnsrrl_free(&r);
}

static void test_clock_back(void **state)
{
    (void)state;
    int s, d, l;
    dnsrrl_t *r = dnsrrl_new(2, 0);
    const struct sockaddr *a = addr(0, "192.0.2.1");
    run(r, a, 10000, 2, &s, &d, &l);
    assert_int_equal(s, 2);
    run(r, a, 5000, 5, &s, &d, &l); /* back in time: nothing refills */
    assert_int_equal(s, 0);
    run(r, a, 10500, 5, &s, &d, &l); /* 500 ms after the last real time: one */
    assert_int_equal(s, 1);
    dnsrrl_free(&r);
}

/* A flood of spoofed networks: memory stays the table's; the networks still talking keep
 * being limited when they stay recent, and the flood is itself limited per network. */
static void test_bounded(void **state)
{
    (void)state;
    int s, d, l;
    dnsrrl_t *r = dnsrrl_new(1, 0);
    const struct sockaddr *victim = addr(0, "203.0.113.5");
    run(r, victim, 1, 1, &s, &d, &l);
    uint64_t t = 1;
    for (uint32_t i = 0; i < 200000; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(0x0a000000u | (i << 8)); /* 10.x.y.0/24, distinct */
        if (dnsrrl_check(r, (struct sockaddr *)&sa, t) != DNSRRL_SEND)
            fail(); /* a new network always has its burst */
        if (i % 1000 == 0)
            t++;
    }
    dnsrrl_stats_t st;
    dnsrrl_stats(r, &st);
    assert_true(st.evictions >= 200000 - DNSRRL_ENTRIES);
    /* the table still works: a network asking faster than its rate is limited */
    const struct sockaddr *b = addr(1, "198.51.100.1");
    run(r, b, t, 5, &s, &d, &l);
    assert_int_equal(s, 1);
    assert_int_equal(d, 4);
    dnsrrl_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off),        cmocka_unit_test(test_burst_refill_slip),
        cmocka_unit_test(test_slip_modes), cmocka_unit_test(test_networks),
        cmocka_unit_test(test_clock_back), cmocka_unit_test(test_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
