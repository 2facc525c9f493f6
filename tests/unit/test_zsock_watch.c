/* Unit tests for node/zsock_watch: real libzmq sockets (inproc and tcp on 127.0.0.1) driven by a
 * real libev loop. Every run is bounded by a watchdog ev_timer: a stall (no message for
 * STALL_LIMIT seconds) or a run longer than RUN_LIMIT seconds breaks the loop and fails the test,
 * so a regression shows up as a failure within seconds, never as a hung CTest.
 *
 * Showing that these tests can fail: build with -DZSOCK_TEST_NAIVE=1, e.g.
 *   cmake -S . -B /tmp/naive -DCMAKE_C_FLAGS=-DZSOCK_TEST_NAIVE=1 && \
 *   cmake --build /tmp/naive --target test_zsock_watch && /tmp/naive/test_zsock_watch
 * and the burst, fairness and ping-pong tests drive their sockets through naive_watch below (one
 * recv per ZMQ_FD wake-up, no ZMQ_EVENTS re-check, no budget) instead of zsock_watch. All ten of
 * them then stall and fail (about 20 s in all, 2 s per stall). test_naive_watcher_stalls runs in
 * every build and asserts that stall, documenting the hazard the module exists to solve. The
 * edge-swallow tests further down pin rule 2 (re-check after a send) deterministically. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "node/membership/zsock_watch.h"

#ifndef ZSOCK_TEST_NAIVE
#define ZSOCK_TEST_NAIVE 0
#endif

#define BURST_N        20000u
#define PINGPONG_N     10000u
#define MSG_MAGIC      0xa5c3e1f0u
#define STALL_LIMIT    2.0  /* s without progress before a run is declared stalled */
#define NAIVE_STALL    0.3  /* s; the naive stall is certain, no need to wait STALL_LIMIT */
#define RUN_LIMIT      8.0  /* s; hard cap on any single run */
#define WATCHDOG_EVERY 0.05 /* s */
#define FAIR_SPIN      2e-6 /* s of busy work per message in the fairness tests */

/* ---- a deliberately naive watcher: what zsock_watch replaces --------------------------------
 * It treats ZMQ_FD like a data fd: one callback per wake-up, no ZMQ_EVENTS loop, sends without
 * a re-check. The recv inside the callback processes libzmq's commands, which reads the
 * signaler and clears the fd, while the rest of the queue stays in the pipe unannounced. */

struct naive_watch {
    struct ev_loop *loop;
    void *sock;
    zsock_readable_fn on_readable;
    void *ctx;
    ev_io io;
    zsock_watch_stats_t stats;
};

static void naive_io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    struct naive_watch *n = io->data;

    n->stats.wakeups++;
    n->stats.received++;
    n->on_readable(NULL, n->sock, n->ctx);
}

static struct naive_watch *naive_watch_new(struct ev_loop *loop, void *sock, unsigned budget,
                                           zsock_readable_fn on_readable, void *ctx)
{
    struct naive_watch *n = calloc(1, sizeof(*n));
    int fd;
    size_t len = sizeof(fd);

    assert_non_null(n);
    assert_int_equal(zmq_getsockopt(sock, ZMQ_FD, &fd, &len), 0);
    n->loop = loop;
    n->sock = sock;
    n->on_readable = on_readable;
    n->ctx = ctx;
    ev_io_init(&n->io, naive_io_cb, fd, EV_READ);
    n->io.data = n;
    ev_io_start(loop, &n->io);
    return n;
}

static void naive_watch_destroy(struct naive_watch **np)
{
    if (!*np)
        return;
    ev_io_stop((*np)->loop, &(*np)->io);
    free(*np);
    *np = NULL;
}

/* Used only with ZSOCK_TEST_NAIVE (through tw_send). */
__attribute__((unused)) static int naive_watch_send(struct naive_watch *n, const void *data,
                                                    size_t len, bool more)
{
    int rc = zmq_send(n->sock, data, len, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0));

    return rc < 0 ? -zmq_errno() : 0;
}

static void naive_watch_get_stats(const struct naive_watch *n, zsock_watch_stats_t *st)
{
    *st = n->stats;
}

/* The watcher the burst, fairness and ping-pong tests use (see the top comment). Callbacks
 * ignore their first argument (the naive watcher passes NULL) and send through ctx instead. */
#if ZSOCK_TEST_NAIVE
typedef struct naive_watch test_watch_t;
#define tw_new       naive_watch_new
#define tw_destroy   naive_watch_destroy
#define tw_send      naive_watch_send
#define tw_get_stats naive_watch_get_stats
#else
typedef zsock_watch_t test_watch_t;
#define tw_new       zsock_watch_new
#define tw_destroy   zsock_watch_destroy
#define tw_send      zsock_watch_send
#define tw_get_stats zsock_watch_get_stats
#endif

/* ---- watchdog --------------------------------------------------------------------------------
 * Breaks the loop when `*progress` has not moved for `stall_limit` seconds or the run exceeds
 * RUN_LIMIT. Uses ev_time(), not ev_now(): a long callback must count against the limit. */

struct watchdog {
    ev_timer timer;
    const unsigned *progress; /* counter that must keep moving */
    unsigned last_seen;       /* *progress at the last change */
    ev_tstamp last_change;    /* s, ev_time() */
    ev_tstamp started;        /* s, ev_time() */
    ev_tstamp stall_limit;    /* s */
    bool fired;
};

static void watchdog_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct watchdog *wd = t->data;
    ev_tstamp now = ev_time();

    if (*wd->progress != wd->last_seen) {
        wd->last_seen = *wd->progress;
        wd->last_change = now;
    } else if (now - wd->last_change > wd->stall_limit) {
        wd->fired = true;
    }
    if (now - wd->started > RUN_LIMIT)
        wd->fired = true;
    if (wd->fired)
        ev_break(loop, EVBREAK_ALL);
}

static void watchdog_start(struct watchdog *wd, struct ev_loop *loop, const unsigned *progress,
                           ev_tstamp stall_limit)
{
    memset(wd, 0, sizeof(*wd));
    wd->progress = progress;
    wd->last_seen = *progress;
    wd->started = wd->last_change = ev_time();
    wd->stall_limit = stall_limit;
    ev_timer_init(&wd->timer, watchdog_cb, WATCHDOG_EVERY, WATCHDOG_EVERY);
    wd->timer.data = wd;
    ev_timer_start(loop, &wd->timer);
}

/* ---- helpers -------------------------------------------------------------------------------- */

static void *socket_new(void *zctx, int type)
{
    void *s = zmq_socket(zctx, type);
    int zero = 0;

    assert_non_null(s);
    /* HWM 0 = unbounded: a burst must be queued whole, never dropped or blocked. */
    assert_int_equal(zmq_setsockopt(s, ZMQ_SNDHWM, &zero, sizeof(zero)), 0);
    assert_int_equal(zmq_setsockopt(s, ZMQ_RCVHWM, &zero, sizeof(zero)), 0);
    assert_int_equal(zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof(zero)), 0);
    return s;
}

/* Binds to `where` ("inproc://name" or "tcp://127.0.0.1:*") and returns the real endpoint. */
static void bind_endpoint(void *s, const char *where, char *endpoint, size_t cap)
{
    size_t len = cap;

    assert_int_equal(zmq_bind(s, where), 0);
    assert_int_equal(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, endpoint, &len), 0);
}

static void encode_seq(uint32_t msg[2], uint32_t seq)
{
    msg[0] = seq;
    msg[1] = seq ^ MSG_MAGIC;
}

/* ---- burst: a PUSH in another thread, a PULL under the watcher --------------------------------
 * The sender owns its socket in its own thread; after pthread_join the main thread closes it
 * (libzmq allows migrating a socket across a full memory barrier). */

struct sender {
    void *zctx;
    const char *endpoint;
    void *sock;      /* created by the thread, closed by the main thread */
    unsigned n;      /* messages to send */
    unsigned failed; /* sends that returned an error */
};

static void *sender_main(void *arg)
{
    struct sender *s = arg;

    s->sock = socket_new(s->zctx, ZMQ_PUSH);
    if (zmq_connect(s->sock, s->endpoint) < 0) {
        s->failed = s->n;
        return NULL;
    }
    for (uint32_t seq = 0; seq < s->n; seq++) {
        uint32_t msg[2];

        encode_seq(msg, seq);
        if (zmq_send(s->sock, msg, sizeof(msg), 0) != (int)sizeof(msg))
            s->failed++;
    }
    return NULL;
}

struct burst {
    struct ev_loop *loop;
    unsigned received;     /* messages received, well formed or not */
    unsigned errors;       /* wrong size, wrong content or out of order */
    unsigned empty_calls;  /* callback found nothing to receive */
    unsigned stop_every;   /* if nonzero, return -1 after every stop_every-th message */
    ev_tstamp spin;        /* s of busy work per message (makes drain time machine-independent) */
    ev_timer tick;         /* 1 ms timer for the fairness test */
    unsigned ticks_during; /* ticks seen after the first and before the last message */
    ev_prepare probe;      /* runs once per iteration, before the poll */
    unsigned at_probe;     /* `received` at the previous probe */
    unsigned max_per_iter; /* most messages received within one loop iteration */
};

static int burst_on_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    struct burst *b = ctx;
    uint32_t msg[2];
    int n = zmq_recv(sock, msg, sizeof(msg), ZMQ_DONTWAIT);

    if (n < 0) {
        b->empty_calls++; /* only the naive watcher calls us without a message */
        return 0;
    }
    if (n != (int)sizeof(msg) || msg[0] != b->received || msg[1] != (msg[0] ^ MSG_MAGIC))
        b->errors++;
    b->received++;
    if (b->spin > 0) {
        ev_tstamp until = ev_time() + b->spin;

        while (ev_time() < until)
            ;
    }
    if (b->received == BURST_N)
        ev_break(b->loop, EVBREAK_ALL);
    if (b->stop_every && b->received % b->stop_every == 0)
        return -1;
    return 0;
}

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct burst *b = t->data;

    if (b->received > 0 && b->received < BURST_N)
        b->ticks_during++;
}

static void probe_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
    struct burst *b = p->data;

    if (b->received - b->at_probe > b->max_per_iter)
        b->max_per_iter = b->received - b->at_probe;
    b->at_probe = b->received;
}

struct burst_opts {
    const char *where; /* bind address */
    bool prequeue;     /* all messages sent (thread joined) before the loop runs */
    unsigned budget;
    bool naive;            /* use naive_watch regardless of ZSOCK_TEST_NAIVE */
    ev_tstamp stall_limit; /* s */
    unsigned stop_every;   /* see struct burst */
    ev_tstamp spin;        /* see struct burst */
};

struct burst_result {
    struct burst b;
    zsock_watch_stats_t stats;
    bool stalled;
    unsigned send_failures;
};

static void run_burst(const struct burst_opts *o, struct burst_result *r)
{
    void *zctx = zmq_ctx_new();
    void *pull;
    char endpoint[256];
    struct sender snd;
    pthread_t thread;
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    test_watch_t *w = NULL;
    struct naive_watch *nw = NULL;
    struct watchdog wd;

    assert_non_null(zctx);
    assert_non_null(loop);
    memset(r, 0, sizeof(*r));
    r->b.loop = loop;
    r->b.stop_every = o->stop_every;
    r->b.spin = o->spin;

    pull = socket_new(zctx, ZMQ_PULL);
    bind_endpoint(pull, o->where, endpoint, sizeof(endpoint));

    snd = (struct sender){.zctx = zctx, .endpoint = endpoint, .n = BURST_N};
    assert_int_equal(pthread_create(&thread, NULL, sender_main, &snd), 0);
    if (o->prequeue)
        assert_int_equal(pthread_join(thread, NULL), 0);

    if (o->naive)
        nw = naive_watch_new(loop, pull, o->budget, burst_on_readable, &r->b);
    else
        w = tw_new(loop, pull, o->budget, burst_on_readable, &r->b);
    assert_true(w || nw);

    ev_timer_init(&r->b.tick, tick_cb, 0.001, 0.001);
    r->b.tick.data = &r->b;
    ev_timer_start(loop, &r->b.tick);
    ev_prepare_init(&r->b.probe, probe_cb);
    r->b.probe.data = &r->b;
    ev_prepare_start(loop, &r->b.probe);
    watchdog_start(&wd, loop, &r->b.received, o->stall_limit);

    ev_run(loop, 0);
    probe_cb(loop, &r->b.probe, 0); /* account for the last iteration */

    r->stalled = wd.fired;
    if (nw) {
        naive_watch_get_stats(nw, &r->stats);
        naive_watch_destroy(&nw);
    } else {
        tw_get_stats(w, &r->stats);
        tw_destroy(&w);
    }
    ev_timer_stop(loop, &wd.timer);
    ev_timer_stop(loop, &r->b.tick);
    ev_prepare_stop(loop, &r->b.probe);
    ev_loop_destroy(loop);

    if (!o->prequeue)
        assert_int_equal(pthread_join(thread, NULL), 0);
    r->send_failures = snd.failed;
    zmq_close(snd.sock);
    zmq_close(pull);
    assert_int_equal(zmq_ctx_term(zctx), 0);
}

static void assert_burst_complete(const struct burst_result *r)
{
    assert_int_equal(r->send_failures, 0);
    assert_false(r->stalled);
    assert_int_equal(r->b.received, BURST_N);
    assert_int_equal(r->b.errors, 0);
    assert_int_equal(r->b.empty_calls, 0);
}

/* Test 1: every message arrives, in order, intact, without stalling. */
static void burst_case(const char *where, bool prequeue)
{
    struct burst_opts o = {.where = where, .prequeue = prequeue, .stall_limit = STALL_LIMIT};
    struct burst_result r;

    run_burst(&o, &r);
    assert_burst_complete(&r);
}

static void test_burst_inproc_prequeued(void **state)
{
    burst_case("inproc://burst-pre", true);
}

static void test_burst_inproc_concurrent(void **state)
{
    burst_case("inproc://burst-live", false);
}

static void test_burst_tcp_prequeued(void **state)
{
    burst_case("tcp://127.0.0.1:*", true);
}

static void test_burst_tcp_concurrent(void **state)
{
    burst_case("tcp://127.0.0.1:*", false);
}

/* Test 2: with budget 16 a 1 ms timer keeps firing during the drain, no iteration handles more
 * than 16 messages, and the drain resumes through the idle path without new fd edges.
 * FAIR_SPIN of busy work per message makes the drain last >= 40 ms on any machine, so about 40
 * ticks are due during it; asking for 10 leaves room for a loaded CI host (which only stretches
 * the drain, adding ticks). */
static void test_budget_keeps_timers_running(void **state)
{
    struct burst_opts o = {.where = "inproc://fair",
                           .prequeue = true,
                           .budget = 16,
                           .stall_limit = STALL_LIMIT,
                           .spin = FAIR_SPIN};
    struct burst_result r;

    run_burst(&o, &r);
    assert_burst_complete(&r);
    assert_true(r.stats.idle_drains > 0);
    assert_true(r.b.max_per_iter <= 16);
    assert_true(r.b.ticks_during >= 10);
    /* 20000 messages at <= 16 per iteration take >= 1250 iterations; almost all of them must
     * have come from the idle path, not from fd edges. */
    assert_true(r.stats.idle_drains >= BURST_N / 16 - r.stats.wakeups - 1);
}

/* Contrast for test 2, showing its assertions can fail: with an effectively unlimited budget
 * the whole prequeued burst is drained inside one callback and the timer never runs meanwhile. */
static void test_unbounded_budget_starves_timers(void **state)
{
    struct burst_opts o = {.where = "inproc://unfair",
                           .prequeue = true,
                           .budget = UINT_MAX,
                           .stall_limit = STALL_LIMIT,
                           .spin = FAIR_SPIN};
    struct burst_result r;

    if (ZSOCK_TEST_NAIVE)
        skip();
    run_burst(&o, &r);
    assert_burst_complete(&r);
    assert_int_equal(r.stats.idle_drains, 0);
    assert_int_equal(r.b.max_per_iter, BURST_N);
    assert_int_equal(r.b.ticks_during, 0);
}

/* A callback that returns -1 ends the drain for this iteration; the rest must still arrive
 * (resumed without an fd edge), one message per iteration here. */
static void test_callback_stop_resumes(void **state)
{
    struct burst_opts o = {
        .where = "inproc://stop", .prequeue = true, .stall_limit = STALL_LIMIT, .stop_every = 1};
    struct burst_result r;

    run_burst(&o, &r);
    assert_burst_complete(&r);
    assert_int_equal(r.b.max_per_iter, 1);
}

/* Test 4: the hazard. One recv per wake-up on a prequeued burst receives a message or two and
 * then waits forever for an edge that will not come. Deterministic: the first recv drains the
 * signaler and the inproc pipe never signals again while it is non-empty. */
static void test_naive_watcher_stalls(void **state)
{
    struct burst_opts o = {
        .where = "inproc://naive", .prequeue = true, .naive = true, .stall_limit = NAIVE_STALL};
    struct burst_result r;

    run_burst(&o, &r);
    assert_true(r.stalled);
    assert_true(r.b.received < BURST_N);
    assert_int_equal(r.b.errors, 0);
}

/* ---- test 3: ping-pong, DEALER client and ROUTER echo server in one loop ----------------------
 * Every send happens on a socket whose edge the send may consume: the server replies inside its
 * callback; the client sends the next ping either inside its callback or from a separate
 * ev_idle (outside any zsock_watch callback), relying on zsock_watch_send's re-check. */

struct pingpong {
    struct ev_loop *loop;
    test_watch_t *server;
    test_watch_t *client;
    bool send_outside; /* client sends from `later` instead of its callback */
    ev_idle later;
    unsigned pongs;  /* replies received by the client */
    unsigned echoed; /* requests answered by the server */
    unsigned errors; /* malformed or out-of-order messages, failed sends */
    unsigned empty_calls;
};

static void send_ping(struct pingpong *p)
{
    uint32_t msg[2];

    encode_seq(msg, p->pongs);
    if (tw_send(p->client, msg, sizeof(msg), false) < 0)
        p->errors++;
}

static int server_on_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    struct pingpong *p = ctx;
    uint8_t id[256];
    uint32_t msg[2];
    int more = 0;
    size_t len = sizeof(more);
    int idlen = zmq_recv(sock, id, sizeof(id), ZMQ_DONTWAIT);
    int n;

    if (idlen < 0) {
        p->empty_calls++;
        return 0;
    }
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len);
    if (!more || idlen > (int)sizeof(id)) {
        p->errors++;
        return 0;
    }
    n = zmq_recv(sock, msg, sizeof(msg), ZMQ_DONTWAIT);
    if (n != (int)sizeof(msg) || msg[0] != p->echoed || msg[1] != (msg[0] ^ MSG_MAGIC))
        p->errors++;
    p->echoed++;
    if (tw_send(p->server, id, (size_t)idlen, true) < 0 ||
        tw_send(p->server, msg, sizeof(msg), false) < 0)
        p->errors++;
    return 0;
}

static int client_on_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    struct pingpong *p = ctx;
    uint32_t msg[2];
    int n = zmq_recv(sock, msg, sizeof(msg), ZMQ_DONTWAIT);

    if (n < 0) {
        p->empty_calls++;
        return 0;
    }
    if (n != (int)sizeof(msg) || msg[0] != p->pongs || msg[1] != (msg[0] ^ MSG_MAGIC))
        p->errors++;
    p->pongs++;
    if (p->pongs == PINGPONG_N)
        ev_break(p->loop, EVBREAK_ALL);
    else if (p->send_outside)
        ev_idle_start(p->loop, &p->later);
    else
        send_ping(p);
    return 0;
}

static void later_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
    struct pingpong *p = idle->data;

    ev_idle_stop(loop, idle);
    send_ping(p);
}

static void pingpong_case(const char *where, bool send_outside)
{
    void *zctx = zmq_ctx_new();
    void *router, *dealer;
    char endpoint[256];
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct pingpong p = {.loop = loop, .send_outside = send_outside};
    struct watchdog wd;

    assert_non_null(zctx);
    assert_non_null(loop);
    router = socket_new(zctx, ZMQ_ROUTER);
    bind_endpoint(router, where, endpoint, sizeof(endpoint));
    dealer = socket_new(zctx, ZMQ_DEALER);
    assert_int_equal(zmq_connect(dealer, endpoint), 0);

    p.server = tw_new(loop, router, 0, server_on_readable, &p);
    p.client = tw_new(loop, dealer, 0, client_on_readable, &p);
    assert_non_null(p.server);
    assert_non_null(p.client);
    ev_idle_init(&p.later, later_cb);
    p.later.data = &p;

    send_ping(&p); /* outside any callback: only the re-check can notice a consumed edge */
    watchdog_start(&wd, loop, &p.pongs, STALL_LIMIT);
    ev_run(loop, 0);

    ev_timer_stop(loop, &wd.timer);
    ev_idle_stop(loop, &p.later);
    tw_destroy(&p.server);
    tw_destroy(&p.client);
    assert_null(p.server);
    assert_null(p.client);
    ev_loop_destroy(loop);
    zmq_close(dealer);
    zmq_close(router);
    assert_int_equal(zmq_ctx_term(zctx), 0);

    assert_false(wd.fired);
    assert_int_equal(p.pongs, PINGPONG_N);
    assert_int_equal(p.echoed, PINGPONG_N);
    assert_int_equal(p.errors, 0);
    assert_int_equal(p.empty_calls, 0);
}

static void test_pingpong_inproc_inline(void **state)
{
    pingpong_case("inproc://pp-inline", false);
}

static void test_pingpong_inproc_outside(void **state)
{
    pingpong_case("inproc://pp-outside", true);
}

static void test_pingpong_tcp_inline(void **state)
{
    pingpong_case("tcp://127.0.0.1:*", false);
}

static void test_pingpong_tcp_outside(void **state)
{
    pingpong_case("tcp://127.0.0.1:*", true);
}

/* ---- the edge a send swallows, made deterministic --------------------------------------------
 * PAIR sockets a (watched) and b (plain) over inproc. In one timer callback, outside any
 * zsock_watch callback: b sends to a, which wakes a's reader and makes ZMQ_FD readable; then a
 * sends to b, and that zmq_send processes a's pending commands, reading the signaler back. The
 * fd was readable only between two lines of the same callback, so epoll never sees it, and the
 * inproc pipe will not signal again while the message sits unread. Only the re-check after the
 * send can notice it. Rounds are EDGE_PERIOD apart because libzmq skips command processing in
 * zmq_send when it processed commands less than ~1 ms ago (its rdtsc throttle); 10 ms makes the
 * swallow certain rather than likely. */

#define EDGE_ROUNDS 5u
#define EDGE_PERIOD 0.01 /* s */
#define EDGE_STALL  0.5  /* s; each round takes microseconds when the module is right */

struct edge {
    struct ev_loop *loop;
    zsock_watch_t *w;
    void *a;           /* watched */
    void *b;           /* plain peer */
    bool raw;          /* zmq_send + zsock_watch_recheck instead of zsock_watch_send */
    unsigned expect;   /* messages to receive before breaking the loop */
    unsigned rounds;   /* rounds run by round_cb */
    unsigned received; /* messages a received */
    unsigned errors;
    ev_timer round_timer;
};

static int edge_on_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    struct edge *e = ctx;
    uint32_t seq;
    int n = zmq_recv(sock, &seq, sizeof(seq), ZMQ_DONTWAIT);

    if (n != (int)sizeof(seq) || seq != e->received)
        e->errors++;
    e->received++;
    if (e->received == e->expect)
        ev_break(e->loop, EVBREAK_ALL);
    return 0;
}

static void round_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    struct edge *e = t->data;
    uint32_t seq = e->rounds++;

    if (zmq_send(e->b, &seq, sizeof(seq), 0) != (int)sizeof(seq))
        e->errors++;
    if (e->raw) {
        if (zmq_send(e->a, "x", 1, ZMQ_DONTWAIT) != 1)
            e->errors++;
        zsock_watch_recheck(e->w);
    } else if (zsock_watch_send(e->w, "x", 1, false) != 0) {
        e->errors++;
    }
    if (e->rounds == EDGE_ROUNDS)
        ev_timer_stop(loop, t);
}

static void edge_setup(struct edge *e, void **zctx)
{
    *zctx = zmq_ctx_new();
    assert_non_null(*zctx);
    e->loop = ev_loop_new(EVFLAG_AUTO);
    assert_non_null(e->loop);
    e->a = socket_new(*zctx, ZMQ_PAIR);
    e->b = socket_new(*zctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(e->a, "inproc://edge"), 0);
    assert_int_equal(zmq_connect(e->b, "inproc://edge"), 0);
}

static void edge_run_and_teardown(struct edge *e, void *zctx)
{
    struct watchdog wd;

    watchdog_start(&wd, e->loop, &e->received, EDGE_STALL);
    ev_run(e->loop, 0);
    ev_timer_stop(e->loop, &wd.timer);
    ev_timer_stop(e->loop, &e->round_timer);
    zsock_watch_destroy(&e->w);
    ev_loop_destroy(e->loop);
    zmq_close(e->a);
    zmq_close(e->b);
    assert_int_equal(zmq_ctx_term(zctx), 0);

    assert_false(wd.fired);
    assert_int_equal(e->received, e->expect);
    assert_int_equal(e->errors, 0);
}

static void send_swallow_case(bool raw)
{
    struct edge e = {.raw = raw, .expect = EDGE_ROUNDS};
    void *zctx;

    edge_setup(&e, &zctx);
    e.w = zsock_watch_new(e.loop, e.a, 0, edge_on_readable, &e);
    assert_non_null(e.w);
    ev_timer_init(&e.round_timer, round_cb, EDGE_PERIOD, EDGE_PERIOD);
    e.round_timer.data = &e;
    ev_timer_start(e.loop, &e.round_timer);
    edge_run_and_teardown(&e, zctx);
}

/* Rule 2 through zsock_watch_send. */
static void test_send_outside_callback_rechecks(void **state)
{
    send_swallow_case(false);
}

/* Rule 2 for callers that send with zmq_send themselves and then call zsock_watch_recheck. */
static void test_recheck_after_raw_send(void **state)
{
    send_swallow_case(true);
}

/* Messages that arrived, and whose edge was consumed, before the watch existed: new() must look
 * at ZMQ_EVENTS itself instead of waiting for an fd edge. */
static void test_pending_before_new(void **state)
{
    struct edge e = {.expect = 3};
    void *zctx;
    int events;
    size_t len = sizeof(events);

    edge_setup(&e, &zctx);
    for (uint32_t seq = 0; seq < e.expect; seq++)
        assert_int_equal(zmq_send(e.b, &seq, sizeof(seq), 0), (int)sizeof(seq));
    /* Reads the signaler: ZMQ_FD is no longer readable, the messages are still queued. */
    assert_int_equal(zmq_getsockopt(e.a, ZMQ_EVENTS, &events, &len), 0);
    assert_true(events & ZMQ_POLLIN);

    e.w = zsock_watch_new(e.loop, e.a, 0, edge_on_readable, &e);
    assert_non_null(e.w);
    ev_timer_init(&e.round_timer, round_cb, EDGE_PERIOD, 0.); /* never started */
    edge_run_and_teardown(&e, zctx);
}

/* ---- test 5 and API edges -------------------------------------------------------------------- */

static int never_called(zsock_watch_t *w, void *sock, void *ctx)
{
    fail_msg("callback called on an idle socket");
    return -1;
}

static void test_destroy_null_and_clears_pointer(void **state)
{
    void *zctx = zmq_ctx_new();
    void *s = socket_new(zctx, ZMQ_PULL);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    zsock_watch_t *w = NULL;
    zsock_watch_stats_t st;

    zsock_watch_destroy(NULL);
    zsock_watch_destroy(&w);
    assert_null(w);

    w = zsock_watch_new(loop, s, 0, never_called, NULL);
    assert_non_null(w);
    /* Nothing is queued: the loop must have nothing to do and return promptly once the watch
     * is gone (no leftover idle/check keeping it busy). */
    ev_run(loop, EVRUN_NOWAIT);
    zsock_watch_get_stats(w, &st);
    assert_int_equal(st.received, 0);
    assert_int_equal(st.idle_drains, 0);
    zsock_watch_destroy(&w);
    assert_null(w);
    assert_int_equal(ev_run(loop, EVRUN_NOWAIT), 0); /* no active watchers left */

    ev_loop_destroy(loop);
    zmq_close(s);
    zmq_ctx_term(zctx);
}

static void test_new_rejects_bad_arguments(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    void *zctx = zmq_ctx_new();
    void *s = socket_new(zctx, ZMQ_PULL);

    errno = 0;
    assert_null(zsock_watch_new(NULL, s, 0, never_called, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(zsock_watch_new(loop, NULL, 0, never_called, NULL));
    assert_int_equal(errno, EINVAL);
    errno = 0;
    assert_null(zsock_watch_new(loop, s, 0, NULL, NULL));
    assert_int_equal(errno, EINVAL);

    ev_loop_destroy(loop);
    zmq_close(s);
    zmq_ctx_term(zctx);
}

/* A DEALER with IMMEDIATE and no connected peer has nowhere to queue: -EAGAIN, not a block. */
static void test_send_translates_errno(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    void *zctx = zmq_ctx_new();
    void *s = socket_new(zctx, ZMQ_DEALER);
    int one = 1;
    zsock_watch_t *w;

    assert_int_equal(zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof(one)), 0);
    w = zsock_watch_new(loop, s, 0, never_called, NULL);
    assert_non_null(w);
    assert_int_equal(zsock_watch_send(w, "x", 1, false), -EAGAIN);

    zsock_watch_destroy(&w);
    ev_loop_destroy(loop);
    zmq_close(s);
    zmq_ctx_term(zctx);
}

/* Destroying the watch from its own callback must not touch freed memory (ASan checks). */
struct self_destroy {
    struct ev_loop *loop;
    zsock_watch_t *w;
    unsigned calls;
};

static int destroy_on_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    struct self_destroy *sd = ctx;
    char buf[16];

    zmq_recv(sock, buf, sizeof(buf), ZMQ_DONTWAIT);
    sd->calls++;
    if (sd->calls == 10) {
        zsock_watch_destroy(&sd->w);
        ev_break(sd->loop, EVBREAK_ALL);
    }
    return 0;
}

static void test_destroy_inside_callback(void **state)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    void *zctx = zmq_ctx_new();
    void *pull = socket_new(zctx, ZMQ_PULL);
    void *push = socket_new(zctx, ZMQ_PUSH);
    struct self_destroy sd = {.loop = loop};
    struct watchdog wd;

    assert_int_equal(zmq_bind(pull, "inproc://self-destroy"), 0);
    assert_int_equal(zmq_connect(push, "inproc://self-destroy"), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(zmq_send(push, "m", 1, 0), 1);
    sd.w = zsock_watch_new(loop, pull, 0, destroy_on_readable, &sd);
    assert_non_null(sd.w);
    watchdog_start(&wd, loop, &sd.calls, EDGE_STALL);
    ev_run(loop, 0);
    ev_timer_stop(loop, &wd.timer);
    assert_false(wd.fired);
    assert_null(sd.w);
    assert_int_equal(sd.calls, 10);

    ev_loop_destroy(loop);
    zmq_close(push);
    zmq_close(pull);
    zmq_ctx_term(zctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_inproc_prequeued),
        cmocka_unit_test(test_burst_inproc_concurrent),
        cmocka_unit_test(test_burst_tcp_prequeued),
        cmocka_unit_test(test_burst_tcp_concurrent),
        cmocka_unit_test(test_budget_keeps_timers_running),
        cmocka_unit_test(test_unbounded_budget_starves_timers),
        cmocka_unit_test(test_callback_stop_resumes),
        cmocka_unit_test(test_naive_watcher_stalls),
        cmocka_unit_test(test_pingpong_inproc_inline),
        cmocka_unit_test(test_pingpong_inproc_outside),
        cmocka_unit_test(test_pingpong_tcp_inline),
        cmocka_unit_test(test_pingpong_tcp_outside),
        cmocka_unit_test(test_send_outside_callback_rechecks),
        cmocka_unit_test(test_recheck_after_raw_send),
        cmocka_unit_test(test_pending_before_new),
        cmocka_unit_test(test_destroy_null_and_clears_pointer),
        cmocka_unit_test(test_new_rejects_bad_arguments),
        cmocka_unit_test(test_send_translates_errno),
        cmocka_unit_test(test_destroy_inside_callback),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
