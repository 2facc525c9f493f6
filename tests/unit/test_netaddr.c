/* common/netaddr: the one "host:port" parser, socket addresses and listeners. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/netaddr.h"

static void test_parse_good(void **state)
{
    (void)state;
    netaddr_t a;
    assert_int_equal(netaddr_parse("127.0.0.1:7946", &a, false), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 7946);
    assert_false(a.ipv6);
    assert_int_equal(netaddr_parse("[fd00::1]:80", &a, false), 0);
    assert_string_equal(a.host, "fd00::1");
    assert_true(a.ipv6);
    assert_int_equal(netaddr_parse("pop-1.example:65535", &a, false), 0);
    assert_string_equal(a.host, "pop-1.example");
    assert_int_equal(a.port, 65535);
    assert_int_equal(netaddr_parse("0.0.0.0:0", &a, true), 0);
    assert_int_equal(a.port, 0);
    assert_int_equal(netaddr_parse("localhost:00080", NULL, false), 0);
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",
        "noport",
        ":80",
        "host:",
        "host:0",
        "host:65536",
        "host:8o",
        "host:+80",
        "host:-1",
        "host: 80",
        "host:123456",
        "fd00::1:80",
        "[fd00::1:80",
        "[]:80",
        "[zz]:80",
        "[1.2.3.4]:80",
        "ho st:80",
        "h/x:80",
        "h#x:80",
        "h\x01:80",
        "h\x80:80",
        "a:80:80",
        "[::1]x:80",
        "h]:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (netaddr_parse(bad[i], NULL, false) != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
    }
    assert_int_equal(netaddr_parse(NULL, NULL, false), -EINVAL);
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost));
    snprintf(longhost + 254, sizeof(longhost) - 254, ":80");
    assert_int_equal(netaddr_parse(longhost, NULL, false), -EINVAL); /* host of 254 bytes */
    longhost[253] = '\0';
    char ok[320];
    snprintf(ok, sizeof(ok), "%.253s:1", longhost); /* 253 + 2 = 255 bytes: the limit */
    assert_int_equal(netaddr_parse(ok, NULL, false), 0);
}

static void test_sockaddr(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t sl;
    char out[NETADDR_MAX + 1];
    assert_int_equal(netaddr_sockaddr("127.0.0.11:7990", &ss, &sl), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(sl, sizeof(struct sockaddr_in));
    assert_string_equal(netaddr_format((struct sockaddr *)&ss, out, sizeof(out)),
                        "127.0.0.11:7990");
    assert_int_equal(netaddr_sockaddr("[::1]:8080", &ss, &sl), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_string_equal(netaddr_format((struct sockaddr *)&ss, out, sizeof(out)), "[::1]:8080");
    assert_int_equal(netaddr_sockaddr("localhost:22", &ss, &sl), 0);
    assert_string_equal(netaddr_format((struct sockaddr *)&ss, out, sizeof(out)), "127.0.0.1:22");
    /* Names are never resolved here: the event loop must not block on DNS. */
    assert_int_equal(netaddr_sockaddr("example.com:80", &ss, &sl), -EINVAL);
    assert_int_equal(netaddr_sockaddr("bad", &ss, &sl), -EINVAL);
}

static void test_listen(void **state)
{
    (void)state;
    char err[200];
    int fd = netaddr_listen("127.0.0.1:0", 16, err, sizeof(err));
    assert_true(fd >= 0);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    char addr[NETADDR_MAX + 1];
    netaddr_format((struct sockaddr *)&ss, addr, sizeof(addr));
    /* The same port again: in use, and the message names the address and the reason. */
    int fd2 = netaddr_listen(addr, 16, err, sizeof(err));
    assert_int_equal(fd2, -EADDRINUSE);
    assert_non_null(strstr(err, addr));
    assert_non_null(strstr(err, "in use"));
    close(fd);
    assert_int_equal(netaddr_listen("nonsense", 16, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "nonsense"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_sockaddr),
        cmocka_unit_test(test_listen),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
