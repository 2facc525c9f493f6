/* common/conncap: the overall and per-address connection caps of a listener. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/conncap.h"

static struct sockaddr_storage v4(const char *ip, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *s = (struct sockaddr_in *)&ss;
    s->sin_family = AF_INET;
    s->sin_port = htons(port);
    inet_pton(AF_INET, ip, &s->sin_addr);
    return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&ss;
    s->sin6_family = AF_INET6;
    inet_pton(AF_INET6, ip, &s->sin6_addr);
    return ss;
}

#define SA(x) ((struct sockaddr *)&(x))

static void test_per_address(void **state)
{
    (void)state;
    conncap_t *c = conncap_new(100, 3);
    struct sockaddr_storage a = v4("192.0.2.1", 1000), b = v4("192.0.2.2", 1000);
    conncap_slot_t *s[4];
    const char *why = NULL;
    for (int i = 0; i < 3; i++) {
        struct sockaddr_storage ai = v4("192.0.2.1", (uint16_t)(2000 + i)); /* ports differ */
        s[i] = conncap_admit(c, SA(ai), &why);
        assert_non_null(s[i]);
    }
    assert_null(conncap_admit(c, SA(a), &why));
    assert_string_equal(why, "this address's connection cap");
    /* Another address is not affected; a release makes room again. */
    s[3] = conncap_admit(c, SA(b), NULL);
    assert_non_null(s[3]);
    conncap_release(c, s[0]);
    s[0] = conncap_admit(c, SA(a), NULL);
    assert_non_null(s[0]);
    conncap_stats_t st;
    conncap_stats(c, &st);
    assert_int_equal(st.open, 4);
    assert_int_equal(st.addresses, 2);
    assert_int_equal(st.admitted, 5);
    assert_int_equal(st.refused_per_addr, 1);
    for (int i = 0; i < 4; i++)
        conncap_release(c, s[i]);
    conncap_stats(c, &st);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.addresses, 0); /* the table holds only addresses with connections */
    conncap_destroy(&c);
    assert_null(c);
    conncap_destroy(NULL);
}

static void test_overall_and_growth(void **state)
{
    (void)state;
    conncap_t *c = conncap_new(1000, 2);
    conncap_slot_t *s[1000];
    char ip[32];
    /* 1000 distinct addresses: the table grows past its first 64 buckets. */
    for (int i = 0; i < 1000; i++) {
        snprintf(ip, sizeof(ip), "10.0.%d.%d", i / 250, i % 250 + 1);
        struct sockaddr_storage a = v4(ip, 1);
        s[i] = conncap_admit(c, SA(a), NULL);
        assert_non_null(s[i]);
    }
    struct sockaddr_storage x = v4("198.51.100.7", 1);
    const char *why = NULL;
    assert_null(conncap_admit(c, SA(x), &why));
    assert_string_equal(why, "the overall connection cap");
    conncap_stats_t st;
    conncap_stats(c, &st);
    assert_int_equal(st.addresses, 1000);
    assert_int_equal(st.refused_total, 1);
    for (int i = 999; i >= 0; i--)
        conncap_release(c, s[i]);
    conncap_stats(c, &st);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.addresses, 0);
    conncap_destroy(&c);
}

static void test_ipv6_by_64_and_mapped(void **state)
{
    (void)state;
    conncap_t *c = conncap_new(100, 2);
    struct sockaddr_storage a = v6("2001:db8:1:2::1"), b = v6("2001:db8:1:2:ffff::9"),
                            other = v6("2001:db8:1:3::1");
    conncap_slot_t *s1 = conncap_admit(c, SA(a), NULL), *s2 = conncap_admit(c, SA(b), NULL);
    assert_non_null(s1);
    assert_non_null(s2);
    /* The same /64: counted together. */
    assert_null(conncap_admit(c, SA(a), NULL));
    conncap_slot_t *s3 = conncap_admit(c, SA(other), NULL);
    assert_non_null(s3);
    /* An IPv4-mapped IPv6 address counts as the IPv4 address. */
    struct sockaddr_storage m = v6("::ffff:192.0.2.9"), p = v4("192.0.2.9", 5);
    conncap_slot_t *s4 = conncap_admit(c, SA(m), NULL), *s5 = conncap_admit(c, SA(p), NULL);
    assert_non_null(s4);
    assert_non_null(s5);
    assert_null(conncap_admit(c, SA(p), NULL));
    conncap_slot_t *all[] = {s1, s2, s3, s4, s5};
    for (size_t i = 0; i < 5; i++)
        conncap_release(c, all[i]);
    conncap_release(c, NULL);
    conncap_destroy(&c);
}

static void test_half_nofile(void **state)
{
    (void)state;
    assert_true(conncap_half_nofile(64) >= 64);
    assert_int_equal(conncap_half_nofile(UINT32_MAX), UINT32_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_per_address),
        cmocka_unit_test(test_overall_and_growth),
        cmocka_unit_test(test_ipv6_by_64_and_mapped),
        cmocka_unit_test(test_half_nofile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
