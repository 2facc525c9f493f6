/* Unit tests for node/healthcheck: real sockets on 127.0.0.1 (and ::1 when the host has it),
 * served by small servers that run in the test's own libev loop, next to the checks.
 *
 * Servers: CLOSE accepts and closes (a live TCP port), SILENT accepts and never answers,
 * REPLY reads the request up to its blank line, keeps it, writes a canned response and closes.
 * A "refused" port is a socket bound but not listening: connects get RST, and no other process
 * can take the port while the test holds it.
 *
 * Every wait is bounded (run_until), so a regression fails within seconds instead of hanging.
 * Timing is asserted in runs, not seconds: on_change must fire on exactly the fall-th
 * consecutive failure and the rise-th consecutive success, which the callback checks against
 * the counters of hc_snapshot at the moment it is called.
 *
 * Also here, since popsite uses the two together against loops into the mesh: the socket hook
 * (every check socket reported open, with its bound local address, and closed, exactly once)
 * and node/addrset, the set those local addresses go into. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "node/site/addrset.h"
#include "node/site/healthcheck.h"

#define WAIT_LIMIT 5.0   /* s: the longest any single wait may take */
#define POLL_EVERY 0.002 /* s between two evaluations of a wait's condition */
#define MANY       200

/* ---- in-loop servers --------------------------------------------------------------------- */

enum srv_mode { SRV_CLOSE, SRV_SILENT, SRV_REPLY };

struct conn {
    struct srv *srv;
    int fd;
    ev_io w;
    char in[2048]; /* the request, up to its blank line */
    size_t inlen;  /* bytes */
    size_t outoff; /* bytes of the response written */
    bool replying; /* the request is complete, writing the response */
    struct conn *next;
};

struct srv {
    struct ev_loop *loop;
    int lfd;
    uint16_t port;
    int family;
    enum srv_mode mode;
    const char *response; /* SRV_REPLY */
    size_t response_len;  /* bytes */
    unsigned accepts;
    char last_request[2048];
    ev_io accept_w;
    struct conn *conns;
};

static void conn_close(struct conn *c)
{
    struct srv *s = c->srv;
    ev_io_stop(s->loop, &c->w);
    close(c->fd);
    for (struct conn **p = &s->conns; *p; p = &(*p)->next) {
        if (*p == c) {
            *p = c->next;
            break;
        }
    }
    free(c);
}

static void conn_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    struct srv *s = c->srv;

    if (!c->replying) {
        ssize_t n = read(c->fd, c->in + c->inlen, sizeof(c->in) - 1 - c->inlen);
        if (n <= 0) {
            if (n < 0 && errno == EAGAIN)
                return;
            conn_close(c);
            return;
        }
        c->inlen += (size_t)n;
        c->in[c->inlen] = '\0';
        if (!strstr(c->in, "\r\n\r\n")) {
            if (c->inlen == sizeof(c->in) - 1)
                conn_close(c);
            return;
        }
        snprintf(s->last_request, sizeof(s->last_request), "%s", c->in);
        c->replying = true;
        ev_io_stop(loop, &c->w);
        ev_io_set(&c->w, c->fd, EV_WRITE);
        ev_io_start(loop, &c->w);
        return;
    }
    ssize_t n = send(c->fd, s->response + c->outoff, s->response_len - c->outoff, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n > 0)
        c->outoff += (size_t)n;
    if (n <= 0 || c->outoff == s->response_len)
        conn_close(c);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct srv *s = w->data;
    int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (fd < 0)
        return;
    s->accepts++;
    if (s->mode == SRV_CLOSE) {
        close(fd);
        return;
    }
    struct conn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->srv = s;
    c->fd = fd;
    c->next = s->conns;
    s->conns = c;
    if (s->mode == SRV_REPLY) {
        ev_io_init(&c->w, conn_cb, fd, EV_READ);
        c->w.data = c;
        ev_io_start(loop, &c->w);
    }
}

/* A socket bound to 127.0.0.1:port (0 = any) or [::1]:port; returns the fd, -1 on failure. */
static int bound_socket(int family, uint16_t *port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&ss, 0, sizeof(ss));
    if (family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        sin->sin_family = AF_INET;
        sin->sin_port = htons(*port);
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*sin);
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(*port);
        sin6->sin6_addr = in6addr_loopback;
        len = sizeof(*sin6);
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        close(fd);
        return -1;
    }
    len = sizeof(ss);
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                    : ((struct sockaddr_in6 *)&ss)->sin6_port);
    return fd;
}

static int srv_start_family(struct srv *s, struct ev_loop *loop, int family, uint16_t port,
                            enum srv_mode mode, const char *response)
{
    memset(s, 0, sizeof(*s));
    s->loop = loop;
    s->family = family;
    s->mode = mode;
    s->response = response;
    s->response_len = response ? strlen(response) : 0;
    s->port = port;
    s->lfd = bound_socket(family, &s->port);
    if (s->lfd < 0)
        return -1;
    assert_int_equal(listen(s->lfd, 512), 0);
    ev_io_init(&s->accept_w, accept_cb, s->lfd, EV_READ);
    s->accept_w.data = s;
    ev_io_start(loop, &s->accept_w);
    return 0;
}

static void srv_start(struct srv *s, struct ev_loop *loop, uint16_t port, enum srv_mode mode,
                      const char *response)
{
    assert_int_equal(srv_start_family(s, loop, AF_INET, port, mode, response), 0);
}

static void srv_stop(struct srv *s)
{
    if (s->lfd < 0)
        return;
    ev_io_stop(s->loop, &s->accept_w);
    close(s->lfd);
    s->lfd = -1;
    while (s->conns)
        conn_close(s->conns);
}

static void target_of(char *buf, size_t len, uint16_t port)
{
    snprintf(buf, len, "127.0.0.1:%u", (unsigned)port);
}

/* ---- the loop and the callback -------------------------------------------------------------- */

struct change {
    char target[HC_TARGET_MAX + 1];
    enum hc_kind kind;
    bool healthy;
    char why[HC_REASON_MAX];
    uint32_t successes, failures; /* the check's counters when on_change ran */
    uint64_t runs;
};

enum cb_action { CB_RECORD, CB_DESTROY, CB_CLEAR };

struct rec {
    hc_t *h;
    enum cb_action action;
    unsigned n;
    struct change ch[64];
};

static bool find_status(hc_t *h, const char *target, enum hc_kind kind, hc_status_t *out)
{
    hc_status_t st[MANY + 8];
    size_t n = hc_snapshot(h, st, MANY + 8);

    for (size_t i = 0; i < n && i < MANY + 8; i++) {
        if (strcmp(st[i].check.target, target) == 0 && st[i].check.kind == kind) {
            *out = st[i];
            return true;
        }
    }
    return false;
}

static void on_change(void *ctx, const hc_target_t *check, bool healthy, const char *why)
{
    struct rec *r = ctx;

    assert_true(r->n < 64);
    struct change *c = &r->ch[r->n++];
    snprintf(c->target, sizeof(c->target), "%s", check->target);
    c->kind = check->kind;
    c->healthy = healthy;
    snprintf(c->why, sizeof(c->why), "%s", why);
    hc_status_t st = {0};
    assert_true(find_status(r->h, check->target, check->kind, &st));
    c->successes = st.successes;
    c->failures = st.failures;
    c->runs = st.runs;
    assert_int_equal(st.state, healthy ? HC_HEALTHY : HC_UNHEALTHY);
    assert_string_equal(st.last_result, why);
    if (r->action == CB_DESTROY) {
        hc_destroy(&r->h);
        assert_null(r->h);
    } else if (r->action == CB_CLEAR) {
        assert_int_equal(hc_set(r->h, NULL, 0), 0);
    }
}

typedef bool (*pred_fn)(void *arg);

struct waiter {
    pred_fn pred;
    void *arg;
    bool ok;
};

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct waiter *wt = w->data;
    if (wt->pred && wt->pred(wt->arg)) {
        wt->ok = true;
        ev_break(loop, EVBREAK_ONE);
    }
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    ev_break(loop, EVBREAK_ONE);
}

/* Runs loop until pred(arg) holds (true) or `seconds` pass (false). pred NULL: just run. */
static bool run_until(struct ev_loop *loop, pred_fn pred, void *arg, double seconds)
{
    struct waiter wt = {pred, arg, false};
    ev_timer poll, deadline;

    ev_timer_init(&poll, poll_cb, POLL_EVERY, POLL_EVERY);
    poll.data = &wt;
    ev_timer_init(&deadline, deadline_cb, seconds, 0.);
    ev_timer_start(loop, &poll);
    ev_timer_start(loop, &deadline);
    ev_run(loop, 0);
    ev_timer_stop(loop, &poll);
    ev_timer_stop(loop, &deadline);
    return wt.ok;
}

static bool changes_at_least(void *arg)
{
    struct rec *r = arg;
    return r->n >= 1;
}

struct state_wait {
    hc_t *h;
    size_t n;
    enum hc_state want[MANY];
};

/* Every check in the snapshot is in its wanted state. */
static bool states_are(void *arg)
{
    struct state_wait *sw = arg;
    hc_status_t st[MANY];
    size_t n = hc_snapshot(sw->h, st, MANY);

    if (n != sw->n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (st[i].state != sw->want[i])
            return false;
    return true;
}

static const hc_config_t fast = {.interval_ms = 50, .timeout_ms = 400, .rise = 2, .fall = 1};

/* ---- tests -------------------------------------------------------------------------------- */

static void test_tcp_healthy(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rec r = {0};
    struct srv s;
    char t[64];

    srv_start(&s, loop, 0, SRV_CLOSE, NULL);
    target_of(t, sizeof(t), s.port);
    r.h = hc_new(loop, &fast, on_change, &r);
    assert_non_null(r.h);
    hc_target_t c = {.target = t, .kind = HC_TCP, .path = "/ignored"};
    assert_int_equal(hc_set(r.h, &c, 1), 0);

    /* Before the first run: unknown, and usable. */
    hc_status_t st = {0};
    assert_true(find_status(r.h, t, HC_TCP, &st));
    assert_int_equal(st.state, HC_UNKNOWN);
    assert_null(st.check.path);
    assert_string_equal(st.last_result, "");
    assert_int_equal(st.runs, 0);
    assert_true(hc_healthy(r.h, &c));

    struct state_wait sw = {r.h, 1, {HC_HEALTHY}};
    assert_true(run_until(loop, states_are, &sw, WAIT_LIMIT));
    assert_true(find_status(r.h, t, HC_TCP, &st));
    assert_string_equal(st.last_result, "connected");
    assert_string_equal(st.last_error, "");
    assert_true(st.successes >= 2);
    assert_int_equal(st.failures, 0);
    assert_true(st.last_duration_us > 0 && st.last_duration_us < 400000);
    assert_true(s.accepts >= 2);
    assert_true(hc_healthy(r.h, &c));
    assert_int_equal(r.n, 0); /* unknown -> healthy does not change hc_healthy: no callback */

    hc_destroy(&r.h);
    assert_null(r.h);
    hc_destroy(&r.h); /* accepts NULL */
    srv_stop(&s);
    ev_loop_destroy(loop);
}

static void test_tcp_refused(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rec r = {0};
    uint16_t port = 0;
    int hold = bound_socket(AF_INET, &port); /* bound, not listening: connects are refused */
    char t[64];

    assert_true(hold >= 0);
    target_of(t, sizeof(t), port);
    r.h = hc_new(loop, &fast, on_change, &r);
    hc_target_t c = {.target = t, .kind = HC_TCP, .path = NULL};
    assert_int_equal(hc_set(r.h, &c, 1), 0);
    assert_true(run_until(loop, changes_at_least, &r, WAIT_LIMIT));
    assert_int_equal(r.n, 1);
    assert_string_equal(r.ch[0].target, t);
    assert_false(r.ch[0].healthy);
    assert_string_equal(r.ch[0].why, "connect: Connection refused");
    assert_int_equal(r.ch[0].failures, 1); /* fall = 1: the first failure */
    assert_int_equal(r.ch[0].runs, 1);
    assert_false(hc_healthy(r.h, &c));

    hc_status_t st = {0};
    assert_true(find_status(r.h, t, HC_TCP, &st));
    assert_int_equal(st.state, HC_UNHEALTHY);
    assert_string_equal(st.last_error, "connect: Connection refused");

    hc_destroy(&r.h);
    close(hold);
    ev_loop_destroy(loop);
}

static void test_http_timeout(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    hc_config_t cfg = {.interval_ms = 300, .timeout_ms = 200, .rise = 2, .fall = 1};
    struct rec r = {0};
    struct srv s;
    char t[64];

    srv_start(&s, loop, 0, SRV_SILENT, NULL);
    target_of(t, sizeof(t), s.port);
    r.h = hc_new(loop, &cfg, on_change, &r);
    hc_target_t c = {.target = t, .kind = HC_HTTP, .path = "/"};
    assert_int_equal(hc_set(r.h, &c, 1), 0);
    assert_true(run_until(loop, changes_at_least, &r, WAIT_LIMIT));
    assert_false(r.ch[0].healthy);
    assert_string_equal(r.ch[0].why, "timeout after 200 ms (reading response)");
    hc_status_t st = {0};
    assert_true(find_status(r.h, t, HC_HTTP, &st));
    assert_true(st.last_duration_us >= 150000 && st.last_duration_us < 1000000);
    assert_true(s.accepts >= 1);

    hc_destroy(&r.h); /* with the silent connection possibly in flight */
    srv_stop(&s);
    ev_loop_destroy(loop);
}

struct http_case {
    const char *response;
    enum hc_state want;
    const char *result; /* last_result, or its prefix when ending in '*' */
};

static void test_http_statuses(void **state)
{
    static char longhdr[20000];
    memset(longhdr, 0, sizeof(longhdr));
    strcpy(longhdr, "HTTP/1.1 200 OK\r\nX-Long: ");
    memset(longhdr + strlen(longhdr), 'a', 19000);
    strcat(longhdr, "\r\n\r\n");

    const struct http_case cases[] = {
        {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", HC_HEALTHY, "HTTP 200"},
        {"HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", HC_HEALTHY, "HTTP 302"},
        {"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", HC_UNHEALTHY, "HTTP 503"},
        {"garbage\r\n\r\n", HC_UNHEALTHY, "bad HTTP response: *"},
        {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", HC_HEALTHY, "HTTP 204"},
        {"HTTP/1.0 404 Not Found\r\n\r\n", HC_UNHEALTHY, "HTTP 404"},
        {"HTTP/1.1 200 OK\r\nServer: x\r\n", HC_UNHEALTHY,
         "bad HTTP response: closed after 28 bytes, in the headers"},
        {"", HC_UNHEALTHY, "connection closed without a response"},
        {longhdr, HC_UNHEALTHY, "bad HTTP response: headers longer than 16384 bytes"},
    };
    enum { N = sizeof(cases) / sizeof(cases[0]) };
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rec r = {0};
    struct srv s[N];
    char t[N][64];
    hc_target_t checks[N];
    struct state_wait sw = {NULL, N, {0}};

    r.h = hc_new(loop, &fast, on_change, &r);
    sw.h = r.h;
    for (int i = 0; i < N; i++) {
        srv_start(&s[i], loop, 0, SRV_REPLY, cases[i].response);
        target_of(t[i], sizeof(t[i]), s[i].port);
        checks[i] =
            (hc_target_t){.target = t[i], .kind = HC_HTTP, .path = i == 0 ? "/health?x=1" : NULL};
        sw.want[i] = cases[i].want;
    }
    assert_int_equal(hc_set(r.h, checks, N), 0);
    assert_true(run_until(loop, states_are, &sw, WAIT_LIMIT));

    unsigned unhealthy = 0;
    for (int i = 0; i < N; i++) {
        hc_status_t st = {0};
        assert_true(find_status(r.h, t[i], HC_HTTP, &st));
        size_t l = strlen(cases[i].result);
        if (cases[i].result[l - 1] == '*')
            assert_memory_equal(st.last_result, cases[i].result, l - 1);
        else
            assert_string_equal(st.last_result, cases[i].result);
        assert_string_equal(st.check.path, i == 0 ? "/health?x=1" : "/");
        unhealthy += cases[i].want == HC_UNHEALTHY;
    }
    /* One callback per unhealthy check, none for the healthy ones (unknown -> healthy). */
    assert_int_equal(r.n, unhealthy);
    for (unsigned i = 0; i < r.n; i++)
        assert_false(r.ch[i].healthy);

    /* The request, byte for byte. */
    char want[256];
    snprintf(want, sizeof(want),
             "GET /health?x=1 HTTP/1.1\r\nHost: %s\r\nUser-Agent: popmesh-healthcheck\r\n"
             "Connection: close\r\n\r\n",
             t[0]);
    assert_string_equal(s[0].last_request, want);

    hc_destroy(&r.h);
    for (int i = 0; i < N; i++)
        srv_stop(&s[i]);
    ev_loop_destroy(loop);
}

static void test_rise_fall(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    hc_config_t cfg = {.interval_ms = 30, .timeout_ms = 300, .rise = 3, .fall = 2};
    struct rec r = {0};
    struct srv s;
    char t[64];

    srv_start(&s, loop, 0, SRV_CLOSE, NULL);
    uint16_t port = s.port;
    target_of(t, sizeof(t), port);
    r.h = hc_new(loop, &cfg, on_change, &r);
    hc_target_t c = {.target = t, .kind = HC_TCP, .path = NULL};
    assert_int_equal(hc_set(r.h, &c, 1), 0);

    struct state_wait sw = {r.h, 1, {HC_HEALTHY}};
    assert_true(run_until(loop, states_are, &sw, WAIT_LIMIT));
    assert_int_equal(r.n, 0);

    /* Down: refused from now on. The callback comes on the second consecutive failure. */
    srv_stop(&s);
    uint16_t p = port;
    int hold = bound_socket(AF_INET, &p);
    assert_true(hold >= 0);
    assert_int_equal(p, port);
    assert_true(run_until(loop, changes_at_least, &r, WAIT_LIMIT));
    assert_int_equal(r.n, 1);
    assert_false(r.ch[0].healthy);
    assert_int_equal(r.ch[0].failures, 2);
    assert_int_equal(r.ch[0].successes, 0);
    assert_string_equal(r.ch[0].why, "connect: Connection refused");
    assert_false(hc_healthy(r.h, &c));

    /* Up again: the callback comes on the third consecutive success, and only then. */
    close(hold);
    srv_start(&s, loop, port, SRV_CLOSE, NULL);
    r.n = 0;
    assert_true(run_until(loop, changes_at_least, &r, WAIT_LIMIT));
    assert_int_equal(r.n, 1);
    assert_true(r.ch[0].healthy);
    assert_int_equal(r.ch[0].successes, 3);
    assert_int_equal(r.ch[0].failures, 0);
    assert_string_equal(r.ch[0].why, "connected");
    assert_true(hc_healthy(r.h, &c));

    /* Steady: no more callbacks. */
    run_until(loop, NULL, NULL, 0.3);
    assert_int_equal(r.n, 1);
    hc_status_t st = {0};
    assert_true(find_status(r.h, t, HC_TCP, &st));
    assert_int_equal(st.state, HC_HEALTHY);
    assert_string_equal(st.last_error, "connect: Connection refused"); /* kept */

    hc_destroy(&r.h);
    srv_stop(&s);
    ev_loop_destroy(loop);
}

struct runs_wait {
    hc_t *h;
    uint64_t runs; /* of the first check */
};

static bool runs_at_least(void *arg)
{
    struct runs_wait *rw = arg;
    hc_status_t st[4];
    size_t n = hc_snapshot(rw->h, st, 4);
    return n >= 1 && st[0].runs >= rw->runs;
}

static void test_set_removes_and_keeps(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rec r = {0};
    struct srv b, a2;
    uint16_t pa = 0;
    int hold = bound_socket(AF_INET, &pa);
    char ta[64], tb[64];

    assert_true(hold >= 0);
    srv_start(&b, loop, 0, SRV_CLOSE, NULL);
    target_of(ta, sizeof(ta), pa);
    target_of(tb, sizeof(tb), b.port);
    r.h = hc_new(loop, &fast, on_change, &r);
    hc_target_t both[] = {{.target = ta, .kind = HC_TCP, .path = NULL},
                          {.target = tb, .kind = HC_TCP, .path = NULL},
                          {.target = tb, .kind = HC_TCP, .path = "/dup"}};
    assert_int_equal(hc_set(r.h, both, 3), 0);
    assert_int_equal(hc_snapshot(r.h, NULL, 0), 2); /* the duplicate counts once */
    assert_true(run_until(loop, changes_at_least, &r, WAIT_LIMIT));
    assert_string_equal(r.ch[0].target, ta);
    assert_false(hc_healthy(r.h, &both[0]));

    /* Let B be healthy, then declare B only: A stops, B keeps its state and counters. */
    struct state_wait sw = {r.h, 2, {HC_UNHEALTHY, HC_HEALTHY}};
    assert_true(run_until(loop, states_are, &sw, WAIT_LIMIT));
    hc_status_t before = {0};
    assert_true(find_status(r.h, tb, HC_TCP, &before));
    assert_int_equal(hc_set(r.h, &both[1], 1), 0);
    assert_int_equal(hc_snapshot(r.h, NULL, 0), 1);
    hc_status_t after = {0};
    assert_true(find_status(r.h, tb, HC_TCP, &after));
    assert_int_equal(after.state, HC_HEALTHY);
    assert_true(after.runs >= before.runs);
    assert_false(hc_healthy(r.h, &both[0])); /* not declared any more */

    /* A comes up: were it still checked, it would rise and call back. Nothing may connect. */
    close(hold);
    srv_start(&a2, loop, pa, SRV_CLOSE, NULL);
    struct runs_wait more = {r.h, after.runs + 8};
    assert_true(run_until(loop, runs_at_least, &more, WAIT_LIMIT));
    assert_int_equal(a2.accepts, 0);
    assert_int_equal(r.n, 1);

    /* Idempotent: declaring the same set again changes nothing. */
    assert_true(find_status(r.h, tb, HC_TCP, &before));
    assert_int_equal(hc_set(r.h, &both[1], 1), 0);
    assert_true(find_status(r.h, tb, HC_TCP, &after));
    assert_int_equal(after.runs, before.runs);
    assert_int_equal(after.successes, before.successes);
    assert_int_equal(after.state, HC_HEALTHY);

    /* Everything removed: no more connections at all. */
    assert_int_equal(hc_set(r.h, NULL, 0), 0);
    unsigned accepts = b.accepts;
    run_until(loop, NULL, NULL, 0.3);
    assert_int_equal(b.accepts, accepts);
    assert_int_equal(r.n, 1);

    hc_destroy(&r.h);
    srv_stop(&b);
    srv_stop(&a2);
    ev_loop_destroy(loop);
}

static void test_callback_may_destroy_or_clear(void **state)
{
    for (int round = 0; round < 2; round++) {
        struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
        struct rec r = {.action = round == 0 ? CB_DESTROY : CB_CLEAR};
        uint16_t p1 = 0, p2 = 0;
        int h1 = bound_socket(AF_INET, &p1), h2 = bound_socket(AF_INET, &p2);
        char t1[64], t2[64];

        target_of(t1, sizeof(t1), p1);
        target_of(t2, sizeof(t2), p2);
        r.h = hc_new(loop, &fast, on_change, &r);
        hc_target_t c[] = {{.target = t1, .kind = HC_TCP, .path = NULL},
                           {.target = t2, .kind = HC_HTTP, .path = "/"}};
        assert_int_equal(hc_set(r.h, c, 2), 0);
        assert_true(run_until(loop, changes_at_least, &r, WAIT_LIMIT));
        run_until(loop, NULL, NULL, 0.3); /* the other check must not call back any more */
        assert_int_equal(r.n, 1);
        if (round == 0)
            assert_null(r.h);
        else
            assert_int_equal(hc_snapshot(r.h, NULL, 0), 0);
        hc_destroy(&r.h);
        close(h1);
        close(h2);
        ev_loop_destroy(loop);
    }
}

static void test_many_targets(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    hc_config_t cfg = {.interval_ms = 200, .timeout_ms = 1000, .rise = 2, .fall = 1};
    struct rec r = {0};
    static struct srv s[MANY];
    static char t[MANY][64];
    static hc_target_t c[MANY];
    static struct state_wait sw;

    r.h = hc_new(loop, &cfg, on_change, &r);
    for (int i = 0; i < MANY; i++) {
        srv_start(&s[i], loop, 0, i % 2 ? SRV_REPLY : SRV_CLOSE,
                  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        target_of(t[i], sizeof(t[i]), s[i].port);
        c[i] = (hc_target_t){.target = t[i], .kind = i % 2 ? HC_HTTP : HC_TCP, .path = "/healthz"};
        sw.want[i] = HC_HEALTHY;
    }
    sw.h = r.h;
    sw.n = MANY;
    assert_int_equal(hc_set(r.h, c, MANY), 0);
    assert_true(run_until(loop, states_are, &sw, WAIT_LIMIT));
    assert_int_equal(r.n, 0);
    for (int i = 0; i < MANY; i++)
        assert_true(s[i].accepts >= 2);

    hc_destroy(&r.h);
    for (int i = 0; i < MANY; i++)
        srv_stop(&s[i]);
    ev_loop_destroy(loop);
}

static void test_ipv6_and_localhost(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct rec r = {0};
    struct srv s4, s6;
    char t4[64], t6[64];
    bool have6;

    srv_start(&s4, loop, 0, SRV_REPLY, "HTTP/1.1 204 No Content\r\n\r\n");
    have6 = srv_start_family(&s6, loop, AF_INET6, 0, SRV_CLOSE, NULL) == 0;
    snprintf(t4, sizeof(t4), "localhost:%u", (unsigned)s4.port);
    snprintf(t6, sizeof(t6), "[::1]:%u", have6 ? (unsigned)s6.port : 1u);
    r.h = hc_new(loop, &fast, on_change, &r);
    hc_target_t c[] = {{.target = t4, .kind = HC_HTTP, .path = "/"},
                       {.target = t6, .kind = HC_TCP, .path = NULL}};
    assert_int_equal(hc_set(r.h, c, have6 ? 2 : 1), 0);
    struct state_wait sw = {r.h, have6 ? 2 : 1, {HC_HEALTHY, HC_HEALTHY}};
    assert_true(run_until(loop, states_are, &sw, WAIT_LIMIT));
    char want[64];
    snprintf(want, sizeof(want), "Host: localhost:%u\r\n", (unsigned)s4.port);
    assert_non_null(strstr(s4.last_request, want));
    if (!have6)
        print_message("no ::1 on this host: IPv6 part skipped\n");

    hc_destroy(&r.h);
    srv_stop(&s4);
    if (have6)
        srv_stop(&s6);
    ev_loop_destroy(loop);
}

static void test_validation(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    static const char *const bad_targets[] = {
        "example.com:80", "127.0.0.1",     "::1:80",         "[::1]80", "[::1]:",
        "1.2.3.4:0",      "1.2.3.4:65536", "1.2.3.4:+80",    ":80",     "127.1:80",
        "[zz::1]:80",     "1.2.3.4:80 ",   "1.2.3.4:8\r\n0", "",        "[127.0.0.1]:80"};
    static const char *const good_targets[] = {"1.2.3.4:80", "[::1]:80", "LocalHost:65535",
                                               "[fe80::1%lo]:8080"};
    const char *why;

    for (size_t i = 0; i < sizeof(bad_targets) / sizeof(bad_targets[0]); i++) {
        hc_target_t t = {.target = bad_targets[i], .kind = HC_TCP, .path = NULL};
        why = NULL;
        assert_int_equal(hc_target_validate(&t, &why), -EINVAL);
        assert_non_null(why);
    }
    for (size_t i = 0; i < sizeof(good_targets) / sizeof(good_targets[0]); i++) {
        hc_target_t t = {.target = good_targets[i], .kind = HC_HTTP, .path = "/a/b?c=d"};
        assert_int_equal(hc_target_validate(&t, NULL), 0);
    }
    hc_target_t t = {.target = "1.2.3.4:80", .kind = HC_HTTP, .path = "health"};
    assert_int_equal(hc_target_validate(&t, &why), -EINVAL);
    t.path = "/a b";
    assert_int_equal(hc_target_validate(&t, &why), -EINVAL);
    t.path = "/a\r\nX: y";
    assert_int_equal(hc_target_validate(&t, &why), -EINVAL);
    t.kind = (enum hc_kind)3;
    t.path = "/";
    assert_int_equal(hc_target_validate(&t, &why), -EINVAL);
    t.kind = HC_TCP;
    t.path = "not a path, ignored for TCP";
    assert_int_equal(hc_target_validate(&t, &why), 0);
    t.target = NULL;
    assert_int_equal(hc_target_validate(&t, &why), -EINVAL);

    /* hc_set is all or nothing. */
    struct rec r = {0};
    r.h = hc_new(loop, NULL, on_change, &r);
    hc_target_t ok[] = {{.target = "127.0.0.1:9", .kind = HC_TCP, .path = NULL}};
    assert_int_equal(hc_set(r.h, ok, 1), 0);
    hc_target_t mixed[] = {{.target = "127.0.0.1:10", .kind = HC_TCP, .path = NULL},
                           {.target = "db.internal:5432", .kind = HC_TCP, .path = NULL}};
    assert_int_equal(hc_set(r.h, mixed, 2), -EINVAL);
    hc_status_t st = {0};
    assert_int_equal(hc_snapshot(r.h, &st, 1), 1);
    assert_string_equal(st.check.target, "127.0.0.1:9");
    assert_int_equal(hc_set(r.h, NULL, 1), -EINVAL);

    static hc_target_t too_many[HC_MAX_CHECKS + 1];
    static char names[HC_MAX_CHECKS + 1][32];
    for (int i = 0; i <= HC_MAX_CHECKS; i++) {
        snprintf(names[i], sizeof(names[i]), "10.0.%d.%d:80", i / 256, i % 256);
        too_many[i] = (hc_target_t){.target = names[i], .kind = HC_TCP, .path = NULL};
    }
    assert_int_equal(hc_set(r.h, too_many, HC_MAX_CHECKS + 1), -E2BIG);
    assert_int_equal(hc_snapshot(r.h, NULL, 0), 1);
    assert_int_equal(hc_set(r.h, too_many, HC_MAX_CHECKS), 0);
    assert_int_equal(hc_snapshot(r.h, NULL, 0), HC_MAX_CHECKS);
    hc_destroy(&r.h); /* 1024 checks, none run yet (default interval 1 s) */

    /* Configuration limits. */
    hc_config_t cfg = {.rise = 1001};
    errno = 0;
    assert_null(hc_new(loop, &cfg, NULL, NULL));
    assert_int_equal(errno, EINVAL);
    cfg = (hc_config_t){.interval_ms = 86400001};
    assert_null(hc_new(loop, &cfg, NULL, NULL));
    assert_null(hc_new(NULL, NULL, NULL, NULL));
    ev_loop_destroy(loop);
}

static void test_parse_response(void **state)
{
    int status = -1;
#define P(s) hc_parse_response((const uint8_t *)(s), strlen(s), &status)
    assert_int_equal(P("HTTP/1.1 200 OK\r\n\r\n"), HC_PARSE_COMPLETE);
    assert_int_equal(status, 200);
    assert_int_equal(P("HTTP/1.1 503 Nope\r\nContent-Length: 5\r\n\r\nhello"), HC_PARSE_COMPLETE);
    assert_int_equal(status, 503);
    assert_int_equal(P("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n<anything, not parsed>"),
                     HC_PARSE_COMPLETE);
    assert_int_equal(P("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: "
                       "upgrade\r\n\r\n"),
                     HC_PARSE_COMPLETE);
    assert_int_equal(status, 101);
    assert_int_equal(P("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 301 Moved\r\n\r\n"),
                     HC_PARSE_COMPLETE);
    assert_int_equal(status, 301);
    assert_int_equal(P("HTTP/1.1 100 Continue\r\n\r\n"), HC_PARSE_NEED_MORE);
    assert_int_equal(P("HTTP/1.1 200 OK\r\nServer: x\r\n"), HC_PARSE_NEED_MORE);
    assert_int_equal(P("HTTP/1."), HC_PARSE_NEED_MORE);
    assert_int_equal(hc_parse_response(NULL, 0, &status), HC_PARSE_NEED_MORE);
    assert_int_equal(P("garbage"), HC_PARSE_BAD);
    assert_int_equal(P("HTTP/1.1 2x0 OK\r\n\r\n"), HC_PARSE_BAD);
    assert_int_equal(P("HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"), HC_PARSE_BAD);
    assert_int_equal(P("SSH-2.0-OpenSSH_9.2\r\n"), HC_PARSE_BAD);
#undef P

    /* Every split of a response answers NEED_MORE until the end of the headers. */
    const char *resp = "HTTP/1.1 204 No Content\r\nDate: x\r\nContent-Length: 0\r\n\r\n";
    size_t len = strlen(resp);
    for (size_t k = 0; k < len; k++)
        assert_int_equal(hc_parse_response((const uint8_t *)resp, k, &status), HC_PARSE_NEED_MORE);
    assert_int_equal(hc_parse_response((const uint8_t *)resp, len, &status), HC_PARSE_COMPLETE);
    assert_int_equal(status, 204);

    /* The 16 KiB cap: headers ending exactly at the cap are fine, one byte later they are not. */
    static uint8_t big[HC_RESPONSE_MAX + 64];
    const char *head = "HTTP/1.1 200 OK\r\nX: ";
    for (int extra = 0; extra <= 1; extra++) {
        size_t total = HC_RESPONSE_MAX + (size_t)extra;
        memset(big, 'a', sizeof(big));
        memcpy(big, head, strlen(head));
        memcpy(big + total - 4, "\r\n\r\n", 4);
        enum hc_parse want = extra ? HC_PARSE_BAD : HC_PARSE_COMPLETE;
        assert_int_equal(hc_parse_response(big, sizeof(big), &status), want);
        assert_int_equal(hc_parse_response(big, total - 1, &status),
                         extra ? HC_PARSE_BAD : HC_PARSE_NEED_MORE);
    }
}

/* ---- the socket hook and addrset ---------------------------------------------------------- */

struct hook_rec {
    addrset_t *set;
    unsigned opens, closes;
    bool bound;    /* every socket had a local port when reported open */
    uint16_t port; /* the target's */
};

static void on_sock(void *ctx, const hc_target_t *check, int fd, const struct sockaddr *to,
                    unsigned tolen, bool open, void **slot)
{
    struct hook_rec *r = ctx;
    if (open) {
        assert_null(*slot);
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &sl), 0);
        r->bound &= ((struct sockaddr_in *)&ss)->sin_port != 0;
        assert_int_equal(ntohs(((const struct sockaddr_in *)to)->sin_port), r->port);
        *slot = addrset_add(r->set, (struct sockaddr *)&ss, sl, to, tolen, check->target);
        assert_non_null(*slot);
        assert_non_null(addrset_find(r->set, (struct sockaddr *)&ss, sl, to, tolen, NULL));
        r->opens++;
    } else {
        assert_non_null(*slot);
        addrset_release(r->set, *slot, 0, 0);
        r->closes++;
    }
}

static bool opened_some(void *arg)
{
    return ((struct hook_rec *)arg)->opens >= 3;
}

static void test_socket_hook(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct srv s;
    char t[64];
    struct hook_rec r = {.set = addrset_new(), .bound = true};

    srv_start(&s, loop, 0, SRV_SILENT, NULL);
    target_of(t, sizeof(t), s.port);
    r.port = s.port;
    hc_t *h = hc_new(loop, &fast, NULL, NULL);
    hc_set_socket_hook(h, on_sock, &r);
    hc_target_t c = {.target = t, .kind = HC_HTTP, .path = "/"};
    assert_int_equal(hc_set(h, &c, 1), 0);
    assert_true(run_until(loop, opened_some, &r, WAIT_LIMIT));
    assert_true(r.bound);
    /* One run in flight per check: never more than one socket open. */
    assert_true(r.opens - r.closes <= 1);
    hc_destroy(&h); /* closes the run in flight: reported */
    assert_int_equal(r.opens, r.closes);
    assert_int_equal(addrset_count(r.set), 0);
    addrset_destroy(&r.set);
    assert_null(r.set);
    srv_stop(&s);
    ev_loop_destroy(loop);
}

static void test_addrset(void **state)
{
    addrset_t *s = addrset_new();
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(4242)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    struct sockaddr_in b = a;
    b.sin_port = htons(4243);
    struct sockaddr_in6 m = {.sin6_family = AF_INET6, .sin6_port = htons(4242)};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &m.sin6_addr);
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons(4242)};
    inet_pton(AF_INET6, "::1", &v6.sin6_addr);
    const struct sockaddr *A = (struct sockaddr *)&a, *B = (struct sockaddr *)&b;
    /* Remote ends: the PoP's ingress R, and another destination O. */
    struct sockaddr_in r = {.sin_family = AF_INET, .sin_port = htons(80)};
    inet_pton(AF_INET, "127.0.0.11", &r.sin_addr);
    struct sockaddr_in o = r;
    o.sin_port = htons(81);
    const struct sockaddr *R = (struct sockaddr *)&r, *O = (struct sockaddr *)&o;
    const socklen_t RL = sizeof(r);
    bool lingering;

    assert_null(addrset_find(s, A, sizeof(a), R, RL, &lingering));
    addrset_entry_t *e1 = addrset_add(s, A, sizeof(a), R, RL, "t1");
    assert_string_equal(addrset_find(s, A, sizeof(a), R, RL, &lingering), "t1");
    assert_false(lingering);
    assert_null(addrset_find(s, B, sizeof(b), R, RL, NULL)); /* another port */
    assert_null(addrset_find(s, (struct sockaddr *)&v6, sizeof(v6), R, RL, NULL)); /* another IP */
    /* A dual-stack listener's view of an IPv4 client is the same address. */
    assert_string_equal(addrset_find(s, (struct sockaddr *)&m, sizeof(m), R, RL, NULL), "t1");
    /* The same local address towards another destination is someone else's connection. */
    assert_null(addrset_find(s, A, sizeof(a), O, RL, NULL));
    /* No remote given: any live entry with that local address. */
    assert_string_equal(addrset_find(s, A, sizeof(a), NULL, 0, NULL), "t1");
    /* Bad input: another family, short lengths. */
    struct sockaddr un = {.sa_family = AF_UNIX};
    assert_null(addrset_add(s, &un, sizeof(un), R, RL, "x"));
    assert_null(addrset_add(s, A, sizeof(a), &un, sizeof(un), "x"));
    assert_null(addrset_add(s, A, 4, R, RL, "x"));
    assert_null(addrset_find(s, A, 4, R, RL, NULL));
    assert_null(addrset_find(s, NULL, 0, NULL, 0, NULL));

    /* The same key twice (a port shared between destinations): both count, live first. */
    addrset_entry_t *e2 = addrset_add(s, A, sizeof(a), R, RL, "t2");
    assert_int_equal(addrset_count(s), 2);
    addrset_release(s, e2, 1000, 500);
    const char *l = addrset_find(s, A, sizeof(a), R, RL, &lingering);
    assert_string_equal(l, "t1");
    assert_false(lingering);
    addrset_release(s, e1, 1000, 0);
    assert_string_equal(addrset_find(s, A, sizeof(a), R, RL, &lingering), "t2");
    assert_true(lingering);
    /* A released local address is free for anyone: without a remote it does not match. */
    assert_null(addrset_find(s, A, sizeof(a), NULL, 0, NULL));
    addrset_expire(s, 1499);
    assert_non_null(addrset_find(s, A, sizeof(a), R, RL, NULL));
    addrset_expire(s, 1500);
    assert_null(addrset_find(s, A, sizeof(a), R, RL, NULL));
    assert_int_equal(addrset_count(s), 0);
    addrset_release(s, NULL, 0, 0); /* accepted */

    /* Many: growth keeps every entry findable, removal leaves the others. */
    enum { N = 5000 };
    addrset_entry_t **es = calloc(N, sizeof(*es));
    for (int i = 0; i < N; i++) {
        struct sockaddr_in x = a;
        x.sin_port = htons((uint16_t)(1000 + i));
        char lab[16];
        snprintf(lab, sizeof(lab), "%d", i);
        es[i] = addrset_add(s, (struct sockaddr *)&x, sizeof(x), R, RL, lab);
    }
    for (int i = 0; i < N; i += 2)
        addrset_release(s, es[i], 0, i % 4 ? 10 : 0);
    addrset_expire(s, 10);
    assert_int_equal(addrset_count(s), N / 2);
    for (int i = 0; i < N; i++) {
        struct sockaddr_in x = a;
        x.sin_port = htons((uint16_t)(1000 + i));
        const char *got = addrset_find(s, (struct sockaddr *)&x, sizeof(x), R, RL, NULL);
        if (i % 2) {
            char lab[16];
            snprintf(lab, sizeof(lab), "%d", i);
            assert_non_null(got);
            assert_string_equal(got, lab);
        } else {
            assert_null(got);
        }
    }
    free(es);
    addrset_destroy(&s); /* frees what is left, live and lingering */
    assert_null(s);
    addrset_destroy(&s);
}

/* Per-check settings. The hc-wide config is slow (60 s interval, rise and fall 5, 5 s timeout),
 * so a check that turns within a second did so by its own interval, rise, fall and timeout. */

struct keyed_change {
    bool healthy;
    char why[HC_REASON_MAX];
    uint32_t successes, failures;
    uint32_t nstatus;
};

struct keyed_rec {
    hc_t *h;
    unsigned n;
    struct keyed_change ch[64];
};

/* Finds the check by its own strings (the snapshot's key is the check's own copy, like the
 * one on_change gets), so two checks of one target with other settings are told apart. */
static void on_change_keyed(void *ctx, const hc_target_t *check, bool healthy, const char *why)
{
    struct keyed_rec *r = ctx;
    hc_status_t st[8];
    size_t n = hc_snapshot(r->h, st, 8);
    assert_true(r->n < 64);
    struct keyed_change *c = &r->ch[r->n++];
    c->healthy = healthy;
    snprintf(c->why, sizeof(c->why), "%s", why);
    c->nstatus = (uint32_t)check->nstatus;
    for (size_t i = 0; i < n && i < 8; i++) {
        if (st[i].check.target == check->target) {
            c->successes = st[i].successes;
            c->failures = st[i].failures;
            assert_int_equal(st[i].state, healthy ? HC_HEALTHY : HC_UNHEALTHY);
            return;
        }
    }
    fail_msg("on_change for a check not in the snapshot");
}

static bool snapshot_state(hc_t *h, size_t i, enum hc_state want)
{
    hc_status_t st[8];
    size_t n = hc_snapshot(h, st, 8);
    return i < n && st[i].state == want;
}

struct idx_wait {
    hc_t *h;
    size_t i;
    enum hc_state want;
};

static bool idx_state_is(void *arg)
{
    struct idx_wait *w = arg;
    return snapshot_state(w->h, w->i, w->want);
}

static void test_per_check_settings(void **state)
{
    static const char resp503[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";
    static const hc_config_t slow = {
        .interval_ms = 60000, .timeout_ms = 5000, .rise = 5, .fall = 5};
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct keyed_rec r = {0};
    struct srv s503, shost, silent;
    char t503[64], thost[64], tsilent[64];
    const hc_code_range_t ok503[] = {{200, 200}, {503, 503}};
    const hc_code_range_t only2xx[] = {{200, 299}};
    const hc_code_range_t any5xx[] = {{500, 599}};

    srv_start(&s503, loop, 0, SRV_REPLY, resp503);
    srv_start(&shost, loop, 0, SRV_REPLY, resp503);
    srv_start(&silent, loop, 0, SRV_SILENT, NULL);
    target_of(t503, sizeof(t503), s503.port);
    target_of(thost, sizeof(thost), shost.port);
    target_of(tsilent, sizeof(tsilent), silent.port);
    r.h = hc_new(loop, &slow, on_change_keyed, &r);
    hc_target_t c[] = {
        /* 0: 503 listed, rise 1: healthy at the first run */
        {.target = t503,
         .kind = HC_HTTP,
         .path = "/",
         .interval_ms = 40,
         .rise = 1,
         .status = ok503,
         .nstatus = 2},
        /* 1: the same target, 2xx only, fall 2: unhealthy at the second failure */
        {.target = t503,
         .kind = HC_HTTP,
         .path = "/",
         .interval_ms = 40,
         .fall = 2,
         .status = only2xx,
         .nstatus = 1},
        /* 2: the same target and path, default statuses (200..399), fall 1 */
        {.target = t503, .kind = HC_HTTP, .path = "/", .interval_ms = 40, .fall = 1},
        /* 3: a Host of its own */
        {.target = thost,
         .kind = HC_HTTP,
         .path = "/hz",
         .interval_ms = 40,
         .rise = 1,
         .status = any5xx,
         .nstatus = 1,
         .host = "app.example.com:8443"},
        /* 4: a timeout of its own, against a server that never answers */
        {.target = tsilent,
         .kind = HC_HTTP,
         .path = "/",
         .interval_ms = 300,
         .timeout_ms = 100,
         .fall = 1},
    };
    enum { N = sizeof(c) / sizeof(c[0]) };
    assert_int_equal(hc_set(r.h, c, N), 0);
    assert_int_equal(hc_snapshot(r.h, NULL, 0), N); /* one target, three distinct checks */

    double t0 = ev_time();
    struct state_wait sw = {
        r.h, N, {HC_HEALTHY, HC_UNHEALTHY, HC_UNHEALTHY, HC_HEALTHY, HC_UNHEALTHY}};
    assert_true(run_until(loop, states_are, &sw, 2.0));
    /* Within about one interval plus rise/fall runs: far below the hc-wide 60 s and 5 s. */
    double took = ev_time() - t0;
    assert_true(took < 1.5);

    hc_status_t st[N];
    assert_int_equal(hc_snapshot(r.h, st, N), N);
    assert_string_equal(st[0].last_result, "HTTP 503");
    assert_string_equal(st[1].last_result, "HTTP 503");
    assert_string_equal(st[2].last_result, "HTTP 503");
    assert_string_equal(st[3].last_result, "HTTP 503");
    assert_string_equal(st[4].last_result, "timeout after 100 ms (reading response)");
    assert_int_equal(st[0].check.nstatus, 2);
    assert_int_equal(st[0].check.status[1].lo, 503);
    assert_null(st[2].check.status);
    assert_string_equal(st[3].check.host, "app.example.com:8443");
    assert_null(st[0].check.host);
    assert_true(hc_healthy(r.h, &c[0]));
    assert_false(hc_healthy(r.h, &c[1]));
    assert_false(hc_healthy(r.h, &c[2]));

    /* The callbacks: check 1 turned on its second consecutive failure, 2 and 4 on their
     * first; the healthy ones called nothing (unknown -> healthy). */
    unsigned seen_fall2 = 0, seen_fall1 = 0;
    for (unsigned i = 0; i < r.n; i++) {
        assert_false(r.ch[i].healthy);
        if (r.ch[i].nstatus == 1 && strcmp(r.ch[i].why, "HTTP 503") == 0) {
            assert_int_equal(r.ch[i].failures, 2);
            seen_fall2++;
        } else {
            assert_int_equal(r.ch[i].failures, 1);
            seen_fall1++;
        }
    }
    assert_int_equal(seen_fall2, 1);
    assert_int_equal(seen_fall1, 2);

    /* The Host header the server saw. */
    char want[256];
    snprintf(want, sizeof(want),
             "GET /hz HTTP/1.1\r\nHost: app.example.com:8443\r\nUser-Agent: "
             "popmesh-healthcheck\r\nConnection: close\r\n\r\n");
    assert_string_equal(shost.last_request, want);

    /* The per-check interval is honoured: about 12 runs in 0.5 s at 40 ms +-10% (the hc-wide
     * interval would give none). The lower bound leaves room for a loaded CI host, whose loop
     * may be starved for part of the window; more than 16 would mean the interval is ignored. */
    uint64_t runs0 = st[0].runs;
    run_until(loop, NULL, NULL, 0.5);
    assert_int_equal(hc_snapshot(r.h, st, N), N);
    uint64_t more = st[0].runs - runs0;
    if (more < 3 || more > 16)
        fail_msg("%llu runs in 0.5 s at a 40 ms interval", (unsigned long long)more);

    /* Changing a setting makes a new check (unknown again); the same settings keep the old. */
    uint64_t runs_kept = st[0].runs;
    const hc_code_range_t ok200[] = {{200, 200}};
    hc_target_t next[] = {c[0], c[1]};
    next[1].status = ok200; /* was 2xx */
    assert_int_equal(hc_set(r.h, next, 2), 0);
    assert_int_equal(hc_snapshot(r.h, st, 2), 2);
    assert_true(st[0].runs >= runs_kept);
    assert_int_equal(st[0].state, HC_HEALTHY);
    assert_int_equal(st[1].runs, 0);
    assert_int_equal(st[1].state, HC_UNKNOWN);
    assert_true(hc_healthy(r.h, &next[1])); /* unknown counts as usable */
    struct idx_wait iw = {r.h, 1, HC_UNHEALTHY};
    assert_true(run_until(loop, idx_state_is, &iw, 2.0));

    hc_destroy(&r.h);
    srv_stop(&s503);
    srv_stop(&shost);
    srv_stop(&silent);
    ev_loop_destroy(loop);
}

static void test_settings_validation(void **state)
{
    const hc_code_range_t bad_range[] = {{300, 200}};
    const hc_code_range_t low[] = {{99, 200}};
    hc_code_range_t many[HC_STATUS_MAX + 1];
    for (int i = 0; i <= HC_STATUS_MAX; i++)
        many[i] = (hc_code_range_t){200, 200};
    const char *why;
    hc_target_t bad[] = {
        {.target = "127.0.0.1:80", .kind = HC_HTTP, .status = bad_range, .nstatus = 1},
        {.target = "127.0.0.1:80", .kind = HC_HTTP, .status = low, .nstatus = 1},
        {.target = "127.0.0.1:80", .kind = HC_HTTP, .status = many, .nstatus = HC_STATUS_MAX + 1},
        {.target = "127.0.0.1:80", .kind = HC_HTTP, .status = NULL, .nstatus = 1},
        {.target = "127.0.0.1:80", .kind = HC_HTTP, .host = "a\r\nX-Evil: 1"},
        {.target = "127.0.0.1:80", .kind = HC_HTTP, .host = "a b"},
        {.target = "127.0.0.1:80", .kind = HC_TCP, .interval_ms = 86400001},
        {.target = "127.0.0.1:80", .kind = HC_TCP, .timeout_ms = 600001},
        {.target = "127.0.0.1:80", .kind = HC_TCP, .rise = 1001},
        {.target = "127.0.0.1:80", .kind = HC_TCP, .fall = 1001},
    };
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    hc_t *h = hc_new(loop, NULL, NULL, NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (hc_target_validate(&bad[i], &why) != -EINVAL)
            fail_msg("bad check %zu accepted", i);
        assert_non_null(why);
        assert_int_equal(hc_set(h, &bad[i], 1), -EINVAL);
    }
    assert_int_equal(hc_snapshot(h, NULL, 0), 0);
    /* TCP ignores status and host (reported unset), and the limits themselves pass. */
    hc_target_t tcp = {.target = "127.0.0.1:9",
                       .kind = HC_TCP,
                       .status = many,
                       .nstatus = 3,
                       .host = "x",
                       .interval_ms = 86400000,
                       .timeout_ms = 600000,
                       .rise = 1000,
                       .fall = 1000};
    assert_int_equal(hc_set(h, &tcp, 1), 0);
    hc_status_t st;
    assert_int_equal(hc_snapshot(h, &st, 1), 1);
    assert_null(st.check.status);
    assert_int_equal(st.check.nstatus, 0);
    assert_null(st.check.host);
    assert_int_equal(st.check.interval_ms, 86400000);
    hc_target_t http = {.target = "127.0.0.1:9",
                        .kind = HC_HTTP,
                        .status = many,
                        .nstatus = HC_STATUS_MAX,
                        .host = ""};
    assert_int_equal(hc_set(h, &http, 1), 0);
    assert_int_equal(hc_snapshot(h, &st, 1), 1);
    assert_null(st.check.host); /* "" = the target */
    assert_int_equal(st.check.nstatus, HC_STATUS_MAX);
    hc_destroy(&h);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_response),
        cmocka_unit_test(test_addrset),
        cmocka_unit_test(test_socket_hook),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_tcp_healthy),
        cmocka_unit_test(test_tcp_refused),
        cmocka_unit_test(test_http_timeout),
        cmocka_unit_test(test_http_statuses),
        cmocka_unit_test(test_rise_fall),
        cmocka_unit_test(test_set_removes_and_keeps),
        cmocka_unit_test(test_callback_may_destroy_or_clear),
        cmocka_unit_test(test_many_targets),
        cmocka_unit_test(test_ipv6_and_localhost),
        cmocka_unit_test(test_per_check_settings),
        cmocka_unit_test(test_settings_validation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
