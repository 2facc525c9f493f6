/* Unit tests for node/site/proxyproto: v1 and v2 headers for IPv4 and IPv6, the mixed-family
 * and unknown-destination cases, and what is refused. The expected bytes are written out by
 * hand from HAProxy's proxy-protocol.txt (sections 2.1 and 2.2), not produced by the code. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "node/site/proxyproto.h"

#include <errno.h>
#include <string.h>

static void v1_ipv4(void **st)
{
    (void)st;
    uint8_t b[PROXYPROTO_MAX];
    int n = proxyproto_encode(1, "192.0.2.7:51234", "198.51.100.1:8080", b, sizeof(b));
    const char *want = "PROXY TCP4 192.0.2.7 198.51.100.1 51234 8080\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(b, want, strlen(want));
}

static void v1_ipv6(void **st)
{
    (void)st;
    uint8_t b[PROXYPROTO_MAX];
    int n = proxyproto_encode(1, "[2001:db8::5]:443", "[fd00::1]:9000", b, sizeof(b));
    const char *want = "PROXY TCP6 2001:db8::5 fd00::1 443 9000\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(b, want, strlen(want));
    /* The longest addresses fit, within the spec's 107 bytes. */
    n = proxyproto_encode(1, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:65535",
                          "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", b, sizeof(b));
    assert_true(n > 0 && n <= 107);
    assert_memory_equal(b + n - 2, "\r\n", 2);
}

static void v1_mixed_and_unknown(void **st)
{
    (void)st;
    uint8_t b[PROXYPROTO_MAX];
    /* An IPv4 client on an IPv6 ingress address: one family, the IPv4 end mapped. */
    int n = proxyproto_encode(1, "10.1.2.3:1000", "[2001:db8::1]:80", b, sizeof(b));
    const char *want = "PROXY TCP6 ::ffff:10.1.2.3 2001:db8::1 1000 80\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(b, want, strlen(want));
    /* No ingress address: the unspecified address of the client's family. */
    n = proxyproto_encode(1, "10.1.2.3:1000", "", b, sizeof(b));
    want = "PROXY TCP4 10.1.2.3 0.0.0.0 1000 0\r\n";
    assert_int_equal(n, (int)strlen(want));
    assert_memory_equal(b, want, strlen(want));
}

static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

static void v2_ipv4(void **st)
{
    (void)st;
    uint8_t b[PROXYPROTO_MAX];
    int n = proxyproto_encode(2, "192.0.2.7:51234", "198.51.100.1:8080", b, sizeof(b));
    const uint8_t want[] = {0x21, 0x11, 0x00, 0x0c, 192,  0,    2,   7, 198,
                            51,   100,  1,    0xc8, 0x22, 0x1f, 0x90}; /* 51234, 8080 big-endian */
    assert_int_equal(n, 28);
    assert_memory_equal(b, sig, 12);
    assert_memory_equal(b + 12, want, sizeof(want));
}

static void v2_ipv6(void **st)
{
    (void)st;
    uint8_t b[PROXYPROTO_MAX];
    int n = proxyproto_encode(2, "[2001:db8::5]:443", "[fd00::1]:9000", b, sizeof(b));
    assert_int_equal(n, 16 + 36);
    assert_memory_equal(b, sig, 12);
    assert_int_equal(b[12], 0x21); /* v2, PROXY */
    assert_int_equal(b[13], 0x21); /* AF_INET6, STREAM */
    assert_int_equal(b[14], 0);
    assert_int_equal(b[15], 36);
    const uint8_t src[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5};
    const uint8_t dst[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    assert_memory_equal(b + 16, src, 16);
    assert_memory_equal(b + 32, dst, 16);
    const uint8_t ports[4] = {0x01, 0xbb, 0x23, 0x28};
    assert_memory_equal(b + 48, ports, 4);
    /* Mixed families: IPv6 with the IPv4 end mapped. */
    n = proxyproto_encode(2, "10.1.2.3:1000", "[2001:db8::1]:80", b, sizeof(b));
    assert_int_equal(n, 52);
    assert_int_equal(b[13], 0x21);
    const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3};
    assert_memory_equal(b + 16, mapped, 16);
}

static void refused(void **st)
{
    (void)st;
    uint8_t b[PROXYPROTO_MAX];
    assert_int_equal(proxyproto_encode(0, "1.2.3.4:5", "1.2.3.4:6", b, sizeof(b)), -EINVAL);
    assert_int_equal(proxyproto_encode(3, "1.2.3.4:5", "1.2.3.4:6", b, sizeof(b)), -EINVAL);
    assert_int_equal(proxyproto_encode(1, "example.com:5", "1.2.3.4:6", b, sizeof(b)), -EINVAL);
    assert_int_equal(proxyproto_encode(1, "1.2.3.4", "1.2.3.4:6", b, sizeof(b)), -EINVAL);
    assert_int_equal(proxyproto_encode(1, "", "1.2.3.4:6", b, sizeof(b)), -EINVAL);
    assert_int_equal(proxyproto_encode(2, "1.2.3.4:5", "bad\r\n:6", b, sizeof(b)), -EINVAL);
    assert_int_equal(proxyproto_encode(2, "1.2.3.4:5", "1.2.3.4:6", b, 20), -EINVAL);
    assert_int_equal(proxyproto_encode(1, "1.2.3.4:5", "1.2.3.4:6", NULL, 0), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(v1_ipv4),
        cmocka_unit_test(v1_ipv6),
        cmocka_unit_test(v1_mixed_and_unknown),
        cmocka_unit_test(v2_ipv4),
        cmocka_unit_test(v2_ipv6),
        cmocka_unit_test(refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
