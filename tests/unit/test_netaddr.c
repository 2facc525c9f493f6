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

static void test_format_mapped(void **state)
{
    (void)state;
    /* An IPv4 client of a dual-stack listener arrives as ::ffff:a.b.c.d: shown as IPv4. */
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
    char out[NETADDR_MAX + 1];
    assert_int_equal(inet_pton(AF_INET6, "::ffff:10.0.0.7", &s6.sin6_addr), 1);
    assert_string_equal(netaddr_format((struct sockaddr *)&s6, out, sizeof(out)), "10.0.0.7:443");
    assert_int_equal(inet_pton(AF_INET6, "fd00::ffff:a00:7", &s6.sin6_addr), 1);
    assert_string_equal(netaddr_format((struct sockaddr *)&s6, out, sizeof(out)),
                        "[fd00::ffff:a00:7]:443");
}

static void test_zmq_endpoint(void **state)
{
    (void)state;
    char ep[300];
    static const struct {
        const char *in, *out;
    } good[] = {
        {"127.0.0.1:7946", "tcp://127.0.0.1:7946"},
        {"[::1]:7946", "tcp://[::1]:7946"}, /* libzmq needs the brackets */
        {"[::]:7946", "tcp://[::]:7946"},
        {"[fd00::1]:0", "tcp://[fd00::1]:0"},
        {"localhost:7946", "tcp://127.0.0.1:7946"}, /* as netaddr_sockaddr reads it */
        {"pop-1.example:7946", "tcp://pop-1.example:7946"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(netaddr_zmq_endpoint(good[i].in, ep, sizeof(ep)), 0);
        assert_string_equal(ep, good[i].out);
    }
    assert_int_equal(netaddr_zmq_endpoint("::1:7946", ep, sizeof(ep)), -EINVAL);
    assert_int_equal(netaddr_zmq_endpoint("tcp://127.0.0.1:1", ep, sizeof(ep)), -EINVAL);
    assert_int_equal(netaddr_zmq_endpoint("[::1]:7946", ep, 16), -EINVAL); /* would not fit */
    assert_int_equal(netaddr_zmq_endpoint("[::1]:7946", ep, 17), 0);

    /* Back from ZMQ_LAST_ENDPOINT: an IPv4 bind on an IPV6 socket comes back mapped. */
    char a[NETADDR_MAX + 1];
    static const struct {
        const char *in, *out;
    } back[] = {
        {"tcp://[::ffff:127.0.0.1]:34917", "127.0.0.1:34917"},
        {"tcp://[::ffff:0.0.0.0]:1", "0.0.0.0:1"},
        {"tcp://[::1]:5", "[::1]:5"},
        {"tcp://[::]:5", "[::]:5"},
        {"tcp://10.0.0.1:7", "10.0.0.1:7"},
    };
    for (size_t i = 0; i < sizeof(back) / sizeof(back[0]); i++) {
        assert_int_equal(netaddr_from_zmq(back[i].in, a, sizeof(a)), 0);
        assert_string_equal(a, back[i].out);
    }
    assert_int_equal(netaddr_from_zmq(NULL, a, sizeof(a)), -EINVAL);
    assert_int_equal(netaddr_from_zmq("ipc:///tmp/x", a, sizeof(a)), -EINVAL);
    assert_int_equal(netaddr_from_zmq("tcp://[::1]", a, sizeof(a)), -EINVAL);
    assert_int_equal(netaddr_from_zmq("[::1]:5", a, sizeof(a)), -EINVAL);
    assert_int_equal(netaddr_from_zmq("tcp://[::1]:5", a, 7), -EINVAL);
}

/* connects to addr (blocking, loopback: the listener's backlog takes it at once). */
static int connect_to(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (netaddr_sockaddr(addr, &ss, &sl))
        return -1;
    int fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_listen_dual_stack(void **state)
{
    (void)state;
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 lo = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (probe < 0 || bind(probe, (struct sockaddr *)&lo, sizeof(lo)) != 0) {
        if (probe >= 0)
            close(probe);
        skip(); /* no ::1 on this machine */
    }
    close(probe);
    char err[200], a4[64], a6[64];
    int fd = netaddr_listen("[::]:0", 16, err, sizeof(err));
    assert_true(fd >= 0);
    int v6only = -1;
    socklen_t ol = sizeof(v6only);
    assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &ol), 0);
    assert_int_equal(v6only, 0); /* whatever net.ipv6.bindv6only says */
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    unsigned port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    snprintf(a4, sizeof(a4), "127.0.0.1:%u", port);
    snprintf(a6, sizeof(a6), "[::1]:%u", port);
    int c4 = connect_to(a4), c6 = connect_to(a6);
    assert_true(c4 >= 0); /* an IPv4 client of "[::]" */
    assert_true(c6 >= 0);
    /* The IPv4 client is accepted and shows as IPv4. */
    char peer[NETADDR_MAX + 1];
    int seen4 = 0;
    for (int i = 0; i < 2; i++) {
        sl = sizeof(ss);
        int a = -1;
        for (int tries = 0; tries < 100 && a < 0; tries++) { /* non-blocking listener */
            a = accept(fd, (struct sockaddr *)&ss, &sl);
            if (a < 0)
                usleep(10 * 1000);
        }
        assert_true(a >= 0);
        netaddr_format((struct sockaddr *)&ss, peer, sizeof(peer));
        if (strncmp(peer, "127.0.0.1:", 10) == 0)
            seen4++;
        else
            assert_true(strncmp(peer, "[::1]:", 6) == 0);
        close(a);
    }
    assert_int_equal(seen4, 1);
    close(c4);
    close(c6);
    close(fd);

    /* A specific IPv6 address listens too. */
    fd = netaddr_listen("[::1]:0", 16, err, sizeof(err));
    assert_true(fd >= 0);
    sl = sizeof(ss);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
    snprintf(a6, sizeof(a6), "[::1]:%u", ntohs(((struct sockaddr_in6 *)&ss)->sin6_port));
    c6 = connect_to(a6);
    assert_true(c6 >= 0);
    close(c6);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_sockaddr),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_format_mapped),
        cmocka_unit_test(test_zmq_endpoint),
        cmocka_unit_test(test_listen_dual_stack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
