/* Unit tests of the tunnel core: two cores (A the initiator, B the acceptor) wired back to back
 * through an in-memory link per direction (a FIFO of messages, each delivered at send time +
 * a delay, or dropped while the link is cut), under virtual time. Hostile input is injected
 * straight into one core with tun_frame_encode, and what the core answers is read back off
 * its outgoing link.
 *
 * With TUN_CORPUS_DIR set, test_frame_roundtrip also writes one valid frame of each type
 * there: that is how tests/fuzz/corpus/fuzz_tunnel_frame/ was made (the stream ids match the
 * streams the fuzz harness sets up). TUN_BULK_MB overrides the bulk test's volume per
 * direction (default 256; 1024 takes about 12 s under ASan). */
#include "tunnel/tunnel.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/log.h"

/* ---------------------------------------------------------------------------------------- */
/* Harness */

struct msg {
    struct msg *next;
    uint64_t at; /* deliver at (ms) */
    bool raw;    /* sent by send_raw: delivered by tun_receive_raw (a SPLIT record's frame) */
    size_t len;
    uint8_t data[];
};

struct link {
    struct msg *head, *tail;
    size_t count;
    size_t bytes;     /* queued now */
    size_t max_bytes; /* high-water mark of bytes */
    uint64_t delay_ms;
    bool cut; /* drop everything sent */
};

struct pair;

struct end {
    struct pair *p;
    tun_t *t;
    struct link *out;
    /* The recording application. */
    bool auto_accept;  /* tun_accept inside on_open */
    bool auto_consume; /* tun_consumed inside on_data */
    int opens;
    uint64_t open_sid;
    uint8_t target[TUN_TARGET_MAX];
    size_t target_len;
    int open_oks;
    uint64_t open_ok_sid;
    uint8_t data[1 << 16]; /* every payload received, all streams */
    size_t data_len;
    int fins;
    uint64_t fin_sid;
    int writables;
    int resets;
    uint64_t reset_sid;
    uint32_t reset_code;
    bool reset_remote;
    char reset_msg[TUN_MSG_MAX + 1];
    int closed;
    uint64_t closed_sid;
    int deads;
    int dead_reason;
    uint8_t raw_room[TUN_DATA_MAX]; /* raw_reserve's room: the core seals records here */
    int raw_reserved;
};

struct pair {
    struct end e[2];  /* 0: A (initiator), 1: B (acceptor) */
    struct link l[2]; /* l[0]: A -> B, l[1]: B -> A */
    uint64_t now;
    void *app; /* the test's application state, if it has one */
};

static void link_send(void *ctx, const uint8_t *head, size_t head_len, const uint8_t *body,
                      size_t body_len)
{
    struct end *e = ctx;
    struct link *l = e->out;
    assert_true(head_len > 0 && head_len <= TUN_HEAD_MAX);
    assert_true(body_len <= TUN_DATA_MAX);
    assert_true(head_len + body_len <= TUN_FRAME_MAX);
    if (l->cut)
        return;
    struct msg *m = malloc(sizeof(*m) + head_len + body_len);
    assert_non_null(m);
    m->next = NULL;
    m->raw = false;
    m->at = e->p->now + l->delay_ms;
    m->len = head_len + body_len;
    memcpy(m->data, head, head_len);
    if (body_len)
        memcpy(m->data + head_len, body, body_len);
    if (l->tail)
        l->tail->next = m;
    else
        l->head = m;
    l->tail = m;
    l->count++;
    l->bytes += m->len;
    if (l->bytes > l->max_bytes)
        l->max_bytes = l->bytes;
}

static void link_send_raw(void *ctx, const uint8_t *head, size_t head_len, const uint8_t *body,
                          size_t body_len)
{
    struct end *e = ctx;
    assert_true(body_len > SEAL_TAG_LEN); /* only sealed records come this way */
    link_send(ctx, head, head_len, body, body_len);
    if (!e->out->cut)
        e->out->tail->raw = true;
}

static uint8_t *link_raw_reserve(void *ctx, size_t head_len, size_t body_len)
{
    struct end *e = ctx;
    assert_true(head_len > 0 && head_len <= TUN_HEAD_MAX && body_len <= TUN_DATA_MAX);
    e->raw_reserved++;
    return e->raw_room;
}

static struct msg *link_pop(struct link *l)
{
    struct msg *m = l->head;
    if (!m)
        return NULL;
    l->head = m->next;
    if (!l->head)
        l->tail = NULL;
    l->count--;
    l->bytes -= m->len;
    return m;
}

static void link_clear(struct link *l)
{
    struct msg *m;
    while ((m = link_pop(l)))
        free(m);
}

static void rec_open(void *ctx, uint64_t sid, const uint8_t *target, size_t len)
{
    struct end *e = ctx;
    e->opens++;
    e->open_sid = sid;
    assert_true(len <= sizeof(e->target));
    memcpy(e->target, target, len);
    e->target_len = len;
    if (e->auto_accept)
        assert_int_equal(tun_accept(e->t, sid), 0);
}

static void rec_open_ok(void *ctx, uint64_t sid, void *user)
{
    struct end *e = ctx;
    e->open_oks++;
    e->open_ok_sid = sid;
}

static void rec_data(void *ctx, uint64_t sid, void *user, const uint8_t *data, size_t len)
{
    struct end *e = ctx;
    assert_true(len > 0 && len <= TUN_DATA_MAX);
    if (e->data_len + len <= sizeof(e->data)) {
        memcpy(e->data + e->data_len, data, len);
        e->data_len += len;
    }
    if (e->auto_consume) {
        int rc = tun_consumed(e->t, sid, len);
        assert_true(rc == 0 || rc == TUN_CLOSED);
    }
}

static void rec_fin(void *ctx, uint64_t sid, void *user)
{
    struct end *e = ctx;
    e->fins++;
    e->fin_sid = sid;
}

static void rec_writable(void *ctx, uint64_t sid, void *user)
{
    struct end *e = ctx;
    e->writables++;
}

static void rec_reset(void *ctx, uint64_t sid, void *user, uint32_t code, bool remote,
                      const char *msg, size_t msg_len)
{
    struct end *e = ctx;
    /* The stream is already gone when the application hears of it. */
    tun_stream_info_t si;
    assert_int_not_equal(tun_stream_get(e->t, sid, &si), 0);
    e->resets++;
    e->reset_sid = sid;
    e->reset_code = code;
    e->reset_remote = remote;
    assert_true(msg_len <= TUN_MSG_MAX);
    memcpy(e->reset_msg, msg ? msg : "", msg ? msg_len : 0);
    e->reset_msg[msg ? msg_len : 0] = 0;
}

static void rec_closed(void *ctx, uint64_t sid, void *user)
{
    struct end *e = ctx;
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(e->t, sid, &si), -ENOENT);
    e->closed++;
    e->closed_sid = sid;
}

static void rec_dead(void *ctx, int reason)
{
    struct end *e = ctx;
    e->deads++;
    e->dead_reason = reason;
}

static const tun_io_t rec_io = {
    .on_open = rec_open,
    .on_open_ok = rec_open_ok,
    .on_data = rec_data,
    .on_fin = rec_fin,
    .on_writable = rec_writable,
    .on_reset = rec_reset,
    .on_closed = rec_closed,
    .on_dead = rec_dead,
};

/* cfg[0] for A, cfg[1] for B (NULL: defaults); io: the callbacks (ctx and send are set
 * here). */
static struct pair *pair_new(const tun_config_t *ca, const tun_config_t *cb, const tun_io_t *io)
{
    struct pair *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    p->now = 1000;
    for (int i = 0; i < 2; i++) {
        tun_config_t c;
        const tun_config_t *given = i == 0 ? ca : cb;
        if (given) {
            c = *given;
        } else {
            tun_config_defaults(&c);
        }
        c.role = i == 0 ? TUN_INITIATOR : TUN_ACCEPTOR;
        struct end *e = &p->e[i];
        e->p = p;
        e->out = &p->l[i];
        e->auto_accept = true;
        e->auto_consume = true;
        tun_io_t x = io ? *io : rec_io;
        x.ctx = e;
        x.send = link_send;
        x.send_raw = link_send_raw;
        x.raw_reserve = link_raw_reserve;
        e->t = tun_new(&c, &x, p->now);
        assert_non_null(e->t);
    }
    return p;
}

static void pair_free(struct pair *p)
{
    for (int i = 0; i < 2; i++) {
        assert_int_equal(tun_check(p->e[i].t), 0);
        tun_destroy(&p->e[i].t);
        assert_null(p->e[i].t);
        link_clear(&p->l[i]);
    }
    free(p);
}

#define A(p) (&(p)->e[0])
#define B(p) (&(p)->e[1])

/* Delivers every message due by now, both ways, until none is left. */
static void pair_deliver(struct pair *p)
{
    bool any = true;
    while (any) {
        any = false;
        for (int i = 0; i < 2; i++) {
            struct link *l = &p->l[i];
            struct end *dst = &p->e[1 - i];
            while (l->head && l->head->at <= p->now) {
                struct msg *m = link_pop(l);
                int rc = m->raw ? tun_receive_raw(dst->t, m->data, m->len, p->now)
                                : tun_receive(dst->t, m->data, m->len, p->now);
                assert_true(rc == 0 || rc == -EPIPE);
                free(m);
                any = true;
            }
        }
    }
}

/* Runs virtual time to `until`, delivering and ticking at every event on the way. */
static void pair_run_until(struct pair *p, uint64_t until)
{
    for (;;) {
        pair_deliver(p);
        uint64_t next = UINT64_MAX;
        for (int i = 0; i < 2; i++) {
            uint64_t d = tun_next_deadline(p->e[i].t);
            if (d <= p->now) {
                tun_tick(p->e[i].t, p->now);
                d = tun_next_deadline(p->e[i].t);
                if (d <= p->now) /* a tick must move the deadline on, or we would spin */
                    fail_msg("deadline %llu not past now %llu after a tick", (unsigned long long)d,
                             (unsigned long long)p->now);
            }
            if (d < next)
                next = d;
            if (p->l[i].head && p->l[i].head->at < next)
                next = p->l[i].head->at;
        }
        if (p->l[0].head && p->l[0].head->at <= p->now)
            continue;
        if (p->l[1].head && p->l[1].head->at <= p->now)
            continue;
        if (next > until)
            break;
        if (next > p->now)
            p->now = next;
    }
    p->now = until;
}

/* Encodes f into buf (head and payload), returns the frame's length. */
static size_t build(uint8_t *buf, const tun_frame_t *f)
{
    size_t n = tun_frame_encode(f, buf);
    assert_true(n > 0);
    if (f->type == TUN_DATA) {
        memcpy(buf + n, f->data, f->len);
        n += f->len;
    }
    return n;
}

/* Feeds f to e's core as if its peer had sent it. */
static int inject(struct end *e, const tun_frame_t *f)
{
    static uint8_t buf[TUN_FRAME_MAX];
    size_t n = build(buf, f);
    return tun_receive(e->t, buf, n, e->p->now);
}

/* Pops the oldest frame e sent (skipping PING/PONG unless keep_pings) into *f, its payload
 * copied into storage. False if there is none. */
static bool take(struct end *e, tun_frame_t *f, uint8_t *storage, bool keep_pings)
{
    struct msg *m;
    while ((m = link_pop(e->out))) {
        memcpy(storage, m->data, m->len);
        int rc = tun_frame_decode(storage, m->len, f);
        free(m);
        assert_int_equal(rc, 0);
        if (keep_pings || (f->type != TUN_PING && f->type != TUN_PONG))
            return true;
    }
    return false;
}

static size_t count_frames(const struct link *l, enum tun_frame_type type)
{
    size_t n = 0;
    for (const struct msg *m = l->head; m; m = m->next) {
        tun_frame_t f;
        if (tun_frame_decode(m->data, m->len, &f) == 0 && f.type == type)
            n++;
    }
    return n;
}

static uint64_t open_stream(struct pair *p, struct end *from, const char *target)
{
    uint64_t sid = 0;
    assert_int_equal(tun_open(from->t, (const uint8_t *)target, strlen(target), NULL, p->now, &sid),
                     0);
    pair_deliver(p);
    return sid;
}

static void stats(const struct end *e, tun_stats_t *st)
{
    tun_get_stats(e->t, st);
}

/* ---------------------------------------------------------------------------------------- */
/* The stream life cycle */

static void test_open_data_halfclose(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    B(p)->auto_accept = false;
    A(p)->auto_consume = false;
    static const char target[] = "tcp:db.internal:5432";
    uint64_t sid = open_stream(p, A(p), target);
    assert_int_equal(sid, 1); /* the initiator opens odd ids */
    assert_int_equal(B(p)->opens, 1);
    assert_int_equal(B(p)->open_sid, 1);
    assert_int_equal(B(p)->target_len, strlen(target));
    assert_memory_equal(B(p)->target, target, strlen(target));

    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(A(p)->t, sid, &si), 0);
    assert_int_equal(si.state, TUN_STREAM_OPENING);
    assert_int_equal(tun_stream_get(B(p)->t, sid, &si), 0);
    assert_int_equal(si.state, TUN_STREAM_PENDING);
    /* No data before the open is answered, either way. */
    assert_int_equal(tun_send(A(p)->t, sid, "x", 1), -ENOTCONN);
    assert_int_equal(tun_send(B(p)->t, sid, "x", 1), -ENOTCONN);
    assert_int_equal(tun_fin(B(p)->t, sid), -EINVAL);

    /* The site answers later (it dialled its target first). */
    p->now += 30;
    assert_int_equal(tun_accept(B(p)->t, sid), 0);
    assert_int_equal(tun_accept(B(p)->t, sid), -EINVAL);
    pair_deliver(p);
    assert_int_equal(A(p)->open_oks, 1);
    assert_int_equal(A(p)->open_ok_sid, sid);

    assert_int_equal(tun_send(A(p)->t, sid, "hello", 5), 5);
    pair_deliver(p);
    assert_int_equal(B(p)->data_len, 5);
    assert_memory_equal(B(p)->data, "hello", 5);
    assert_int_equal(tun_send(B(p)->t, sid, "world!", 6), 6);
    pair_deliver(p);
    assert_int_equal(A(p)->data_len, 6);

    /* A half-closes: B sees EOF, A can no longer send, B still can. */
    assert_int_equal(tun_fin(A(p)->t, sid), 0);
    assert_int_equal(tun_fin(A(p)->t, sid), -EALREADY);
    assert_int_equal(tun_send(A(p)->t, sid, "x", 1), -EPIPE);
    pair_deliver(p);
    assert_int_equal(B(p)->fins, 1);
    assert_int_equal(B(p)->fin_sid, sid);
    assert_int_equal(tun_send(B(p)->t, sid, "more", 4), 4);
    pair_deliver(p);
    assert_int_equal(A(p)->data_len, 10);
    assert_memory_equal(A(p)->data, "world!more", 10);

    /* B half-closes too: B has consumed all it got, so its FIN completes its side. */
    assert_int_equal(tun_fin(B(p)->t, sid), TUN_CLOSED);
    assert_int_equal(tun_stream_get(B(p)->t, sid, &si), -ENOENT);
    pair_deliver(p);
    assert_int_equal(A(p)->fins, 1);
    /* A still holds 10 unconsumed bytes: the stream lives until they are consumed. */
    assert_int_equal(tun_stream_get(A(p)->t, sid, &si), 0);
    assert_int_equal(si.unconsumed, 10);
    assert_true(si.fin_sent && si.fin_received);
    assert_int_equal(tun_consumed(A(p)->t, sid, 11), -EINVAL);
    assert_int_equal(tun_consumed(A(p)->t, sid, 4), 0);
    assert_int_equal(tun_consumed(A(p)->t, sid, 6), TUN_CLOSED);
    assert_int_equal(tun_consumed(A(p)->t, sid, 0), -ENOENT);
    assert_int_equal(A(p)->closed + B(p)->closed, 0); /* closes in app calls: no callback */
    /* No WINDOW was wasted on a stream whose peer had finished. */
    assert_int_equal(count_frames(&p->l[0], TUN_WINDOW), 0);

    /* The other way round: B opens (even id), B finishes first, A's FIN completes A's side,
     * and B's close completes inside tun_receive, so B hears on_closed. */
    A(p)->auto_consume = true;
    B(p)->auto_consume = true;
    uint64_t sid2 = open_stream(p, B(p), "x");
    assert_int_equal(sid2, 2);
    assert_int_equal(B(p)->open_oks, 1);
    assert_int_equal(tun_fin(B(p)->t, sid2), 0);
    pair_deliver(p);
    assert_int_equal(A(p)->fins, 2);
    assert_int_equal(tun_send(A(p)->t, sid2, "tail", 4), 4);
    assert_int_equal(tun_fin(A(p)->t, sid2), TUN_CLOSED);
    pair_deliver(p);
    assert_int_equal(B(p)->closed, 1);
    assert_int_equal(B(p)->closed_sid, sid2);

    tun_stats_t st;
    for (int i = 0; i < 2; i++) {
        stats(&p->e[i], &st);
        assert_int_equal(st.streams, 0);
        assert_int_equal(st.app_unconsumed, 0);
        assert_int_equal(st.resets_sent + st.resets_received, 0);
        assert_int_equal(st.malformed, 0);
    }
    pair_free(p);
}

/* A FIN asked for before OPEN_OK is held and sent with the open. */
static void test_fin_before_open_ok(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    B(p)->auto_accept = false;
    uint64_t sid = open_stream(p, A(p), "t");
    assert_int_equal(tun_fin(A(p)->t, sid), 0);
    assert_int_equal(tun_fin(A(p)->t, sid), -EALREADY);
    assert_int_equal(tun_send(A(p)->t, sid, "x", 1), -EPIPE);
    pair_deliver(p);
    assert_int_equal(B(p)->fins, 0);
    assert_int_equal(tun_accept(B(p)->t, sid), 0);
    pair_deliver(p);
    assert_int_equal(A(p)->open_oks, 1);
    assert_int_equal(B(p)->fins, 1);
    assert_int_equal(tun_send(B(p)->t, sid, "reply", 5), 5);
    assert_int_equal(tun_fin(B(p)->t, sid), TUN_CLOSED);
    pair_deliver(p);
    assert_int_equal(A(p)->closed, 1);
    assert_int_equal(A(p)->data_len, 5);
    pair_free(p);
}

static void test_reject(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    B(p)->auto_accept = false;
    uint64_t sid = open_stream(p, A(p), "tcp:10.1.2.3:22");
    p->now += 100;
    assert_int_equal(tun_reject(B(p)->t, sid, TUN_ERR_UNREACHABLE, "connection refused"), 0);
    assert_int_equal(tun_reject(B(p)->t, sid, TUN_ERR_UNREACHABLE, "again"), -ENOENT);
    pair_deliver(p);
    assert_int_equal(A(p)->resets, 1);
    assert_int_equal(A(p)->reset_sid, sid);
    assert_int_equal(A(p)->reset_code, TUN_ERR_UNREACHABLE);
    assert_true(A(p)->reset_remote);
    assert_string_equal(A(p)->reset_msg, "connection refused");
    assert_int_equal(B(p)->resets, 0); /* the application's own reject: no callback */
    tun_stats_t st;
    stats(A(p), &st);
    assert_int_equal(st.streams, 0);
    assert_int_equal(st.resets_received, 1);
    stats(B(p), &st);
    assert_int_equal(st.streams, 0);
    assert_int_equal(st.resets_sent, 1);
    /* Reject is only for unanswered opens; an open stream is reset instead. */
    B(p)->auto_accept = true;
    sid = open_stream(p, A(p), "t");
    assert_int_equal(tun_reject(B(p)->t, sid, TUN_ERR_REFUSED, NULL), -EINVAL);
    /* A long message is cut to TUN_MSG_MAX, and a NULL one is empty. */
    B(p)->auto_accept = false;
    char longmsg[TUN_MSG_MAX + 50];
    memset(longmsg, 'm', sizeof(longmsg) - 1);
    longmsg[sizeof(longmsg) - 1] = 0;
    sid = open_stream(p, A(p), "t");
    assert_int_equal(tun_reject(B(p)->t, sid, TUN_ERR_REFUSED, longmsg), 0);
    pair_deliver(p);
    assert_int_equal(strlen(A(p)->reset_msg), TUN_MSG_MAX);
    sid = open_stream(p, A(p), "t");
    assert_int_equal(tun_reject(B(p)->t, sid, TUN_ERR_REFUSED, NULL), 0);
    pair_deliver(p);
    assert_string_equal(A(p)->reset_msg, "");
    assert_int_equal(A(p)->reset_code, TUN_ERR_REFUSED);
    pair_free(p);
}

static void test_open_timeout(void **state)
{
    /* Opener side: A times out its own OPEN and tells B with RST TIMEOUT. */
    tun_config_t ca, cb;
    tun_config_defaults(&ca);
    tun_config_defaults(&cb);
    ca.open_timeout_ms = 500;
    cb.open_timeout_ms = 0; /* B waits for its application forever */
    struct pair *p = pair_new(&ca, &cb, NULL);
    B(p)->auto_accept = false;
    uint64_t t0 = p->now;
    uint64_t sid = open_stream(p, A(p), "slow");
    assert_int_equal(B(p)->opens, 1);
    pair_run_until(p, t0 + 499);
    assert_int_equal(A(p)->resets, 0);
    pair_run_until(p, t0 + 500);
    assert_int_equal(A(p)->resets, 1);
    assert_int_equal(A(p)->reset_code, TUN_ERR_TIMEOUT);
    assert_false(A(p)->reset_remote);
    assert_int_equal(B(p)->resets, 1); /* B cancels its dial */
    assert_int_equal(B(p)->reset_sid, sid);
    assert_int_equal(B(p)->reset_code, TUN_ERR_TIMEOUT);
    assert_true(B(p)->reset_remote);
    assert_int_equal(tun_accept(B(p)->t, sid), -ENOENT); /* too late */
    tun_stats_t st;
    stats(A(p), &st);
    assert_int_equal(st.open_timeouts, 1);
    assert_int_equal(st.streams, 0);
    /* Answered in time, nothing times out. */
    B(p)->auto_accept = true;
    sid = open_stream(p, A(p), "fast");
    pair_run_until(p, p->now + 2000);
    assert_int_equal(A(p)->resets, 1);
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(A(p)->t, sid, &si), 0);
    assert_int_equal(si.state, TUN_STREAM_OPEN);
    pair_free(p);

    /* Acceptor side: B's application never answers; B refuses with OPEN_ERR TIMEOUT. */
    ca.open_timeout_ms = 0;
    cb.open_timeout_ms = 300;
    p = pair_new(&ca, &cb, NULL);
    B(p)->auto_accept = false;
    t0 = p->now;
    sid = open_stream(p, A(p), "never");
    pair_run_until(p, t0 + 299);
    assert_int_equal(A(p)->resets + B(p)->resets, 0);
    pair_run_until(p, t0 + 300);
    assert_int_equal(B(p)->resets, 1);
    assert_int_equal(B(p)->reset_code, TUN_ERR_TIMEOUT);
    assert_false(B(p)->reset_remote);
    assert_int_equal(A(p)->resets, 1);
    assert_int_equal(A(p)->reset_code, TUN_ERR_TIMEOUT);
    assert_true(A(p)->reset_remote);
    assert_string_equal(A(p)->reset_msg, "open timed out");
    pair_free(p);
}

static void test_reset_both_ways(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    uint64_t s1 = open_stream(p, A(p), "one");
    uint64_t s2 = open_stream(p, A(p), "two");
    uint64_t s3 = open_stream(p, B(p), "three");
    assert_int_equal(s2, 3);
    assert_int_equal(s3, 2);
    assert_int_equal(tun_reset(A(p)->t, s1, TUN_ERR_NONE), 0);
    assert_int_equal(tun_reset(A(p)->t, s1, TUN_ERR_NONE), -ENOENT);
    assert_int_equal(tun_send(A(p)->t, s1, "x", 1), -ENOENT);
    pair_deliver(p);
    assert_int_equal(B(p)->resets, 1);
    assert_int_equal(B(p)->reset_sid, s1);
    assert_int_equal(B(p)->reset_code, TUN_ERR_NONE);
    assert_true(B(p)->reset_remote);
    assert_int_equal(A(p)->resets, 0);

    assert_int_equal(tun_reset(B(p)->t, s2, TUN_ERR_SHUTTING_DOWN), 0);
    assert_int_equal(tun_reset(B(p)->t, s3, 4242), 0); /* codes newer than ours pass through */
    pair_deliver(p);
    assert_int_equal(A(p)->resets, 2);
    assert_int_equal(A(p)->reset_sid, s3);
    assert_int_equal(A(p)->reset_code, 4242);
    assert_true(A(p)->reset_remote);
    /* Data in flight when the RST crossed it is answered with one RST, and no RST is ever
     * answered: the exchange ends. */
    uint64_t s4 = open_stream(p, A(p), "four");
    assert_int_equal(tun_send(A(p)->t, s4, "late", 4), 4);
    assert_int_equal(tun_reset(B(p)->t, s4, TUN_ERR_NONE), 0);
    pair_deliver(p);
    tun_stats_t sa, sb;
    stats(A(p), &sa);
    stats(B(p), &sb);
    assert_int_equal(sb.unknown_stream, 1);
    assert_int_equal(sa.unknown_stream, 1);
    assert_int_equal(sa.streams + sb.streams, 0);
    assert_int_equal(p->l[0].count + p->l[1].count, 0);

    /* tun_reset_all: each stream gets an abort, no callback at this end. */
    B(p)->auto_accept = false;
    open_stream(p, A(p), "a");
    B(p)->auto_accept = true;
    open_stream(p, A(p), "b");
    open_stream(p, B(p), "c");
    int before = A(p)->resets;
    assert_int_equal(tun_reset_all(B(p)->t, TUN_ERR_SHUTTING_DOWN), 3);
    int before_b = B(p)->resets;
    pair_deliver(p);
    assert_int_equal(A(p)->resets, before + 3);
    assert_int_equal(A(p)->reset_code, TUN_ERR_SHUTTING_DOWN);
    assert_int_equal(B(p)->resets, before_b);
    stats(A(p), &sa);
    assert_int_equal(sa.streams, 0);
    pair_free(p);
}

/* ---------------------------------------------------------------------------------------- */
/* Flow control */

static void test_slow_reader_backpressure(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    B(p)->auto_consume = false; /* B's destination socket is stuck */
    const uint32_t W = 256 * 1024;
    uint64_t sid = open_stream(p, A(p), "slow");
    static uint8_t chunk[100000];
    memset(chunk, 'z', sizeof(chunk));
    tun_stats_t sa0, sb0, sa, sb;
    uint64_t accepted = 0;
    for (int i = 0; i < 10; i++) {
        ssize_t n = tun_send(A(p)->t, sid, chunk, sizeof(chunk));
        assert_true(n >= 0);
        accepted += (uint64_t)n;
        pair_deliver(p);
    }
    assert_int_equal(accepted, W); /* exactly one window, not a byte more */
    stats(A(p), &sa0);
    stats(B(p), &sb0);
    /* It stays stopped however hard A pushes, and nothing grows anywhere. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(tun_send(A(p)->t, sid, chunk, sizeof(chunk)), 0);
        p->now++;
        pair_deliver(p);
    }
    stats(A(p), &sa);
    stats(B(p), &sb);
    assert_int_equal(sa.data_bytes_sent, W);
    assert_int_equal(sb.data_bytes_received, W);
    assert_int_equal(sb.app_unconsumed, W);
    assert_int_equal(sa.mem_bytes, sa0.mem_bytes);
    assert_int_equal(sb.mem_bytes, sb0.mem_bytes);
    /* The core's memory is its struct, a table and one struct per stream: no payload. */
    assert_true(sa.mem_bytes < 4096);
    assert_true(sb.mem_bytes < 4096);
    /* The link never held more than the window plus DATA headers. */
    assert_true(p->l[0].max_bytes <= W + (W / 65536 + 1) * 32 + 64);
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(A(p)->t, sid, &si), 0);
    assert_int_equal(si.send_credit, 0);
    assert_int_equal(tun_stream_get(B(p)->t, sid, &si), 0);
    assert_int_equal(si.recv_credit, 0);
    assert_int_equal(si.unconsumed, W);

    /* Grants are coalesced: nothing until half a window is consumed. */
    assert_int_equal(tun_consumed(B(p)->t, sid, W / 2 - 1), 0);
    assert_int_equal(count_frames(&p->l[1], TUN_WINDOW), 0);
    pair_deliver(p);
    assert_int_equal(A(p)->writables, 0);
    assert_int_equal(tun_send(A(p)->t, sid, chunk, 1), 0);
    assert_int_equal(tun_consumed(B(p)->t, sid, 1), 0);
    assert_int_equal(count_frames(&p->l[1], TUN_WINDOW), 1);
    pair_deliver(p);
    assert_int_equal(A(p)->writables, 1);
    accepted = 0;
    for (int i = 0; i < 5; i++) {
        ssize_t n = tun_send(A(p)->t, sid, chunk, sizeof(chunk));
        assert_true(n >= 0);
        accepted += (uint64_t)n;
    }
    assert_int_equal(accepted, W / 2);
    assert_int_equal(tun_stream_get(B(p)->t, sid, &si), 0);
    assert_int_equal(si.ungranted, 0);
    pair_free(p);
}

/* Window auto-tuning: a receiver that consumes as fast as data arrives doubles the window up
 * to window_auto_max (the sender then gets more in flight); one that consumes slowly (a half
 * window per 50 ms, with a 2 ms link) never grows it, so what a slow consumer's application
 * may hold stays at the initial window. */
static void auto_tune_run(bool fast, uint32_t *window_out, uint64_t *growths)
{
    tun_config_t cb;
    tun_config_defaults(&cb);
    cb.window_auto_max = 4u << 20;
    struct pair *p = pair_new(NULL, &cb, NULL);
    B(p)->auto_consume = fast;
    uint64_t sid = open_stream(p, A(p), "bulk");
    p->l[0].delay_ms = p->l[1].delay_ms = 1;
    static uint8_t chunk[1 << 16];
    memset(chunk, 'q', sizeof(chunk));
    for (int ms = 0; ms < 3000; ms++) {
        while (tun_send(A(p)->t, sid, chunk, sizeof(chunk)) > 0)
            ;
        if (!fast && ms % 50 == 49) {
            tun_stream_info_t si;
            assert_int_equal(tun_stream_get(B(p)->t, sid, &si), 0);
            uint32_t n = si.unconsumed < si.window / 2 ? si.unconsumed : si.window / 2;
            assert_true(tun_consumed(B(p)->t, sid, n) >= 0);
        }
        p->now++;
        pair_run_until(p, p->now);
        assert_int_equal(tun_check(A(p)->t), 0);
        assert_int_equal(tun_check(B(p)->t), 0);
    }
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(B(p)->t, sid, &si), 0);
    *window_out = si.window;
    tun_stats_t sb;
    stats(B(p), &sb);
    *growths = sb.window_growths;
    pair_free(p);
}

static void test_window_auto_tuning(void **state)
{
    uint32_t w;
    uint64_t g;
    auto_tune_run(true, &w, &g);
    print_message("fast consumer: window %u KiB after %llu doublings\n", w >> 10,
                  (unsigned long long)g);
    assert_int_equal(w, 4u << 20);
    assert_true(g >= 4);
    auto_tune_run(false, &w, &g);
    assert_int_equal(w, 256 * 1024);
    assert_int_equal(g, 0);
}

/* DATA frames never exceed max_data, and tun_send splits across frames. */
static void test_frame_size(void **state)
{
    tun_config_t ca;
    tun_config_defaults(&ca);
    ca.max_data = 1000;
    struct pair *p = pair_new(&ca, NULL, NULL);
    uint64_t sid = open_stream(p, A(p), "t");
    static uint8_t buf[5500];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(tun_send(A(p)->t, sid, buf, sizeof(buf)), sizeof(buf));
    assert_int_equal(count_frames(&p->l[0], TUN_DATA), 6);
    for (const struct msg *m = p->l[0].head; m; m = m->next) {
        tun_frame_t f;
        assert_int_equal(tun_frame_decode(m->data, m->len, &f), 0);
        assert_true(f.len <= 1000);
    }
    pair_deliver(p);
    assert_int_equal(B(p)->data_len, sizeof(buf));
    assert_memory_equal(B(p)->data, buf, sizeof(buf));
    assert_int_equal(tun_send(A(p)->t, sid, buf, 0), 0);
    pair_free(p);
}

/* Credit has no use once the peer has finished: consuming after its FIN grants nothing. */
static void test_no_grant_after_fin(void **state)
{
    tun_config_t cb;
    tun_config_defaults(&cb);
    cb.window = 1000;
    struct pair *p = pair_new(NULL, &cb, NULL);
    B(p)->auto_consume = false;
    uint64_t sid = open_stream(p, A(p), "t");
    static uint8_t bytes[1000];
    assert_int_equal(tun_send(A(p)->t, sid, bytes, sizeof(bytes)), 1000);
    assert_int_equal(tun_fin(A(p)->t, sid), 0);
    pair_deliver(p);
    assert_int_equal(B(p)->fins, 1);
    assert_int_equal(tun_consumed(B(p)->t, sid, 1000), 0);
    assert_int_equal(count_frames(&p->l[1], TUN_WINDOW), 0);
    /* Before a FIN, the same consumption grants. */
    sid = open_stream(p, A(p), "t");
    assert_int_equal(tun_send(A(p)->t, sid, bytes, sizeof(bytes)), 1000);
    pair_deliver(p);
    assert_int_equal(tun_consumed(B(p)->t, sid, 1000), 0);
    assert_int_equal(count_frames(&p->l[1], TUN_WINDOW), 1);
    pair_free(p);
}

static void test_data_beyond_window(void **state)
{
    tun_config_t cb;
    tun_config_defaults(&cb);
    cb.window = 1000;
    struct pair *p = pair_new(NULL, &cb, NULL);
    B(p)->auto_consume = false;
    uint64_t sid = open_stream(p, A(p), "t");
    static uint8_t bytes[1001];
    uint8_t storage[TUN_FRAME_MAX];
    tun_frame_t f = {.type = TUN_DATA, .sid = sid, .data = bytes, .len = 1000};
    assert_int_equal(inject(B(p), &f), 0);
    assert_int_equal(B(p)->data_len, 1000);
    f.len = 1; /* one byte past the window */
    assert_int_equal(inject(B(p), &f), 0);
    assert_int_equal(B(p)->data_len, 1000); /* never delivered */
    assert_int_equal(B(p)->resets, 1);
    assert_int_equal(B(p)->reset_code, TUN_ERR_FLOW_CONTROL);
    assert_false(B(p)->reset_remote);
    tun_frame_t out;
    assert_true(take(B(p), &out, storage, false));
    assert_int_equal(out.type, TUN_RST);
    assert_int_equal(out.sid, sid);
    assert_int_equal(out.code, TUN_ERR_FLOW_CONTROL);
    tun_stats_t st;
    stats(B(p), &st);
    assert_int_equal(st.flow_violations, 1);
    assert_int_equal(st.app_unconsumed, 0);
    assert_int_equal(st.streams, 0);

    /* DATA on a stream B has not accepted yet: it was granted nothing. */
    B(p)->auto_accept = false;
    sid = open_stream(p, A(p), "t");
    link_clear(&p->l[1]);
    f.sid = sid;
    assert_int_equal(inject(B(p), &f), 0);
    assert_true(take(B(p), &out, storage, false));
    assert_int_equal(out.type, TUN_OPEN_ERR); /* its open is answered: refused */
    assert_int_equal(out.code, TUN_ERR_FLOW_CONTROL);
    stats(B(p), &st);
    assert_int_equal(st.flow_violations, 2);
    pair_free(p);
}

static void test_window_overflow(void **state)
{
    uint8_t storage[TUN_FRAME_MAX];
    tun_frame_t out;
    struct pair *p = pair_new(NULL, NULL, NULL);
    uint64_t sid = open_stream(p, A(p), "t");
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(A(p)->t, sid, &si), 0);
    assert_int_equal(si.send_credit, 256 * 1024);
    /* Up to exactly 2^31-1 is fine... */
    tun_frame_t f = {.type = TUN_WINDOW, .sid = sid, .window = TUN_WINDOW_MAX - si.send_credit};
    assert_int_equal(inject(A(p), &f), 0);
    assert_int_equal(tun_stream_get(A(p)->t, sid, &si), 0);
    assert_int_equal(si.send_credit, TUN_WINDOW_MAX);
    assert_int_equal(A(p)->writables, 0); /* credit A was not waiting for: no event */
    /* ...one more byte is an overflow. */
    f.window = 1;
    assert_int_equal(inject(A(p), &f), 0);
    assert_int_equal(A(p)->resets, 1);
    assert_int_equal(A(p)->reset_code, TUN_ERR_WINDOW_OVERFLOW);
    link_clear(&p->l[0]);
    pair_deliver(p);
    tun_stats_t st;
    stats(A(p), &st);
    assert_int_equal(st.window_overflows, 1);
    assert_int_equal(st.streams, 0);
    /* A huge increment on a fresh stream (sum past 2^32) is caught too. */
    sid = open_stream(p, A(p), "t");
    f.sid = sid;
    f.window = TUN_WINDOW_INC_MAX;
    assert_int_equal(inject(A(p), &f), 0);
    assert_int_equal(A(p)->resets, 2);
    assert_true(take(A(p), &out, storage, false));
    assert_int_equal(out.type, TUN_RST);
    assert_int_equal(out.code, TUN_ERR_WINDOW_OVERFLOW);
    pair_free(p);

    /* A configured max_window below 2^31-1: the OPEN and OPEN_OK windows count too. */
    tun_config_t ca;
    tun_config_defaults(&ca);
    ca.max_window = 300 * 1024;
    p = pair_new(&ca, NULL, NULL);
    sid = open_stream(p, A(p), "t");
    f = (tun_frame_t){.type = TUN_WINDOW, .sid = sid, .window = 44 * 1024};
    assert_int_equal(inject(A(p), &f), 0);
    assert_int_equal(A(p)->resets, 0);
    f.window = 1;
    assert_int_equal(inject(A(p), &f), 0);
    assert_int_equal(A(p)->resets, 1);
    assert_int_equal(A(p)->reset_code, TUN_ERR_WINDOW_OVERFLOW);
    link_clear(&p->l[0]);
    f = (tun_frame_t){.type = TUN_OPEN, .sid = 2, .window = 300 * 1024 + 1};
    assert_int_equal(inject(A(p), &f), 0);
    assert_true(take(A(p), &out, storage, false));
    assert_int_equal(out.type, TUN_OPEN_ERR);
    assert_int_equal(out.code, TUN_ERR_WINDOW_OVERFLOW);
    assert_int_equal(A(p)->opens, 0);
    pair_free(p);
}

/* ---------------------------------------------------------------------------------------- */
/* Stream rules */

static void test_unknown_stream(void **state)
{
    uint8_t storage[TUN_FRAME_MAX];
    tun_frame_t out;
    struct pair *p = pair_new(NULL, NULL, NULL);
    struct end *a = A(p);
    static const uint8_t byte = 7;
    tun_frame_t in[] = {
        {.type = TUN_DATA, .sid = 2, .data = &byte, .len = 1},
        {.type = TUN_WINDOW, .sid = 4, .window = 10},
        {.type = TUN_FIN, .sid = 6},
        {.type = TUN_OPEN_OK, .sid = 1, .window = 10},
        {.type = TUN_RST, .sid = 8, .code = TUN_ERR_NONE},         /* never answered */
        {.type = TUN_OPEN_ERR, .sid = 3, .code = TUN_ERR_REFUSED}, /* never answered */
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++)
        assert_int_equal(inject(a, &in[i]), 0);
    for (size_t i = 0; i < 4; i++) {
        assert_true(take(a, &out, storage, false));
        assert_int_equal(out.type, TUN_RST);
        assert_int_equal(out.sid, in[i].sid);
        assert_int_equal(out.code, TUN_ERR_STREAM_CLOSED);
    }
    assert_false(take(a, &out, storage, false));
    tun_stats_t st;
    stats(a, &st);
    assert_int_equal(st.unknown_stream, 6);
    assert_int_equal(st.resets_sent, 4);
    assert_int_equal(a->resets + a->opens, 0);

    /* A WINDOW for a stream that closed cleanly crossed our FIN: ignored, not answered. */
    uint64_t sid = open_stream(p, a, "t");
    assert_int_equal(tun_fin(a->t, sid), 0);
    pair_deliver(p);
    assert_int_equal(tun_fin(B(p)->t, sid), TUN_CLOSED);
    pair_deliver(p);
    assert_int_equal(a->closed, 1);
    link_clear(&p->l[0]);
    tun_frame_t w = {.type = TUN_WINDOW, .sid = sid, .window = 4096};
    assert_int_equal(inject(a, &w), 0);
    assert_false(take(a, &out, storage, false));
    /* But DATA for it is answered. */
    tun_frame_t d = {.type = TUN_DATA, .sid = sid, .data = &byte, .len = 1};
    assert_int_equal(inject(a, &d), 0);
    assert_true(take(a, &out, storage, false));
    assert_int_equal(out.type, TUN_RST);
    pair_free(p);
}

static void test_stream_rule_violations(void **state)
{
    uint8_t storage[TUN_FRAME_MAX];
    tun_frame_t out;
    static const uint8_t byte = 1;
    struct pair *p = pair_new(NULL, NULL, NULL);
    tun_stats_t st;

    /* DATA after FIN. */
    uint64_t sid = open_stream(p, A(p), "t");
    assert_int_equal(tun_fin(A(p)->t, sid), 0);
    pair_deliver(p);
    tun_frame_t f = {.type = TUN_DATA, .sid = sid, .data = &byte, .len = 1};
    assert_int_equal(inject(B(p), &f), 0);
    assert_int_equal(B(p)->resets, 1);
    assert_int_equal(B(p)->reset_code, TUN_ERR_PROTOCOL);
    /* A second FIN. */
    sid = open_stream(p, A(p), "t");
    assert_int_equal(tun_fin(A(p)->t, sid), 0);
    pair_deliver(p);
    f = (tun_frame_t){.type = TUN_FIN, .sid = sid};
    assert_int_equal(inject(B(p), &f), 0);
    assert_int_equal(B(p)->resets, 2);
    assert_int_equal(B(p)->reset_code, TUN_ERR_PROTOCOL);
    /* Anything but an answer on an OPENING stream (the acceptor must OPEN_OK first). */
    B(p)->auto_accept = false;
    enum tun_frame_type early[] = {TUN_DATA, TUN_WINDOW, TUN_FIN};
    for (size_t i = 0; i < 3; i++) {
        sid = open_stream(p, A(p), "t");
        int before = A(p)->resets;
        f = (tun_frame_t){.type = early[i], .sid = sid, .data = &byte, .len = 1, .window = 1};
        assert_int_equal(inject(A(p), &f), 0);
        assert_int_equal(A(p)->resets, before + 1);
        assert_int_equal(A(p)->reset_sid, sid);
        assert_int_equal(A(p)->reset_code, TUN_ERR_PROTOCOL);
        assert_false(A(p)->reset_remote);
    }
    /* WINDOW and FIN on a PENDING stream; OPEN_OK/OPEN_ERR for a stream we did not open or
     * that is already open. */
    link_clear(&p->l[1]);
    sid = open_stream(p, A(p), "t");
    f = (tun_frame_t){.type = TUN_WINDOW, .sid = sid, .window = 5};
    assert_int_equal(inject(B(p), &f), 0);
    assert_true(take(B(p), &out, storage, false));
    assert_int_equal(out.type, TUN_OPEN_ERR);
    assert_int_equal(out.code, TUN_ERR_PROTOCOL);
    B(p)->auto_accept = true;
    sid = open_stream(p, A(p), "t");
    f = (tun_frame_t){.type = TUN_OPEN_OK, .sid = sid, .window = 5};
    assert_int_equal(inject(B(p), &f), 0); /* B is the acceptor of sid */
    assert_int_equal(B(p)->reset_sid, sid);
    sid = open_stream(p, A(p), "t");
    f = (tun_frame_t){.type = TUN_OPEN_ERR, .sid = sid, .code = 1};
    assert_int_equal(inject(A(p), &f), 0); /* already open at A */
    assert_int_equal(A(p)->reset_sid, sid);
    assert_int_equal(A(p)->reset_code, TUN_ERR_PROTOCOL);
    stats(B(p), &st);
    assert_int_equal(st.protocol_errors, 4);
    stats(A(p), &st);
    assert_int_equal(st.protocol_errors, 4);
    pair_deliver(p);
    assert_false(tun_is_dead(A(p)->t) || tun_is_dead(B(p)->t)); /* stream errors only */
    pair_free(p);
}

static void test_tunnel_fatal_violations(void **state)
{
    /* Duplicate OPEN. */
    struct pair *p = pair_new(NULL, NULL, NULL);
    uint64_t sid = open_stream(p, A(p), "t");
    open_stream(p, A(p), "u");
    tun_frame_t f = {.type = TUN_OPEN, .sid = sid, .window = 100};
    assert_int_equal(inject(B(p), &f), -EPIPE);
    assert_true(tun_is_dead(B(p)->t));
    assert_int_equal(B(p)->deads, 1);
    assert_int_equal(B(p)->dead_reason, TUN_DEAD_PROTOCOL);
    assert_int_equal(B(p)->resets, 2); /* both streams reset locally */
    assert_int_equal(B(p)->reset_code, TUN_ERR_TUNNEL_DEAD);
    assert_int_equal(tun_send(B(p)->t, sid, "x", 1), -EPIPE);
    assert_int_equal(tun_open(B(p)->t, NULL, 0, NULL, p->now, &sid), -EPIPE);
    assert_int_equal(tun_next_deadline(B(p)->t), UINT64_MAX);
    assert_int_equal(inject(B(p), &f), -EPIPE);
    assert_int_equal(B(p)->deads, 1);
    pair_free(p);

    /* An id of the receiver's own parity. */
    p = pair_new(NULL, NULL, NULL);
    f = (tun_frame_t){.type = TUN_OPEN, .sid = 2, .window = 100};
    assert_int_equal(inject(B(p), &f), -EPIPE);
    assert_int_equal(B(p)->dead_reason, TUN_DEAD_PROTOCOL);
    pair_free(p);

    /* An id below one already used (reuse after close). */
    p = pair_new(NULL, NULL, NULL);
    sid = open_stream(p, A(p), "t");
    open_stream(p, A(p), "u");
    assert_int_equal(tun_reset(A(p)->t, sid, 0), 0);
    pair_deliver(p);
    f = (tun_frame_t){.type = TUN_OPEN, .sid = sid, .window = 100};
    assert_int_equal(inject(B(p), &f), -EPIPE);
    assert_int_equal(B(p)->dead_reason, TUN_DEAD_PROTOCOL);
    pair_free(p);

    /* Another protocol version. */
    p = pair_new(NULL, NULL, NULL);
    open_stream(p, A(p), "t");
    static uint8_t v2[] = {0x93, 0x02, 0x08, 0x01}; /* [2, 8, 1] */
    assert_int_equal(tun_receive(A(p)->t, v2, sizeof(v2), p->now), -EPIPE);
    assert_int_equal(A(p)->dead_reason, TUN_DEAD_VERSION);
    assert_int_equal(A(p)->resets, 1);
    pair_free(p);
}

static void test_max_streams(void **state)
{
    tun_config_t ca, cb;
    tun_config_defaults(&ca);
    tun_config_defaults(&cb);
    ca.max_streams = 5;
    cb.max_streams = 3;
    struct pair *p = pair_new(&ca, &cb, NULL);
    uint64_t sid;
    for (int i = 0; i < 3; i++)
        open_stream(p, A(p), "t");
    assert_int_equal(A(p)->open_oks, 3);
    sid = open_stream(p, A(p), "t"); /* B's fourth: refused */
    assert_int_equal(A(p)->resets, 1);
    assert_int_equal(A(p)->reset_sid, sid);
    assert_int_equal(A(p)->reset_code, TUN_ERR_LIMIT);
    assert_true(A(p)->reset_remote);
    assert_int_equal(B(p)->opens, 3);
    tun_stats_t st;
    stats(B(p), &st);
    assert_int_equal(st.open_refused, 1);
    assert_int_equal(st.streams, 3);
    /* A's own cap: five of its own at once. */
    B(p)->auto_accept = false;
    assert_int_equal(tun_open(A(p)->t, NULL, 0, NULL, p->now, &sid), 0);
    assert_int_equal(tun_open(A(p)->t, NULL, 0, NULL, p->now, &sid), 0);
    assert_int_equal(tun_open(A(p)->t, NULL, 0, NULL, p->now, &sid), -EAGAIN);
    /* The peer's streams do not count against A's cap, and vice versa. */
    assert_int_equal(tun_open(B(p)->t, NULL, 0, NULL, p->now, &sid), 0);
    pair_deliver(p);
    assert_int_equal(A(p)->opens, 1);
    /* Target size limit. */
    static uint8_t big[TUN_TARGET_MAX + 1];
    assert_int_equal(tun_open(B(p)->t, big, sizeof(big), NULL, p->now, &sid), -E2BIG);
    assert_int_equal(tun_open(B(p)->t, big, TUN_TARGET_MAX, NULL, p->now, &sid), 0);
    pair_deliver(p);
    assert_int_equal(A(p)->target_len, TUN_TARGET_MAX);
    pair_free(p);
}

/* ---------------------------------------------------------------------------------------- */
/* Many streams, lots of data */

struct half {
    struct end *e;
    uint64_t sid;
    uint64_t tx_seed, tx_len, tx_off;
    uint64_t rx_seed, rx_len, rx_off;
    uint64_t held; /* received, not consumed */
    bool open, blocked, fin_sent, got_fin, closed;
};

struct bulk {
    struct half *halves; /* 2 per stream: [2k] at A, [2k+1] at B */
    size_t n;
    uint64_t rng;
    uint64_t closed;
};

static struct bulk *bulk_of(void *ctx)
{
    return ((struct end *)ctx)->p->app;
}

static uint64_t splitmix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static uint64_t rnd(struct bulk *b)
{
    b->rng = splitmix(b->rng);
    return b->rng;
}

/* Byte i of the stream named seed: any byte can be checked on its own. */
static void gen(uint64_t seed, uint64_t off, uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t pos = off + i;
        buf[i] = (uint8_t)(splitmix(seed ^ (pos >> 3)) >> ((pos & 7) * 8));
    }
}

static void bulk_open(void *ctx, uint64_t sid, const uint8_t *target, size_t len)
{
    struct end *e = ctx;
    uint64_t idx;
    assert_int_equal(len, sizeof(idx));
    memcpy(&idx, target, sizeof(idx));
    struct bulk *b = bulk_of(ctx);
    assert_true(idx < b->n);
    struct half *h = &b->halves[idx];
    assert_ptr_equal(h->e, e);
    h->sid = sid;
    h->open = true;
    assert_int_equal(tun_set_user(e->t, sid, h), 0);
    assert_int_equal(tun_accept(e->t, sid), 0);
}

static void bulk_open_ok(void *ctx, uint64_t sid, void *user)
{
    struct half *h = user;
    assert_int_equal(h->sid, sid);
    h->open = true;
}

static void bulk_data(void *ctx, uint64_t sid, void *user, const uint8_t *data, size_t len)
{
    struct half *h = user;
    static uint8_t expect[TUN_DATA_MAX];
    assert_true(h->rx_off + len <= h->rx_len);
    gen(h->rx_seed, h->rx_off, expect, len);
    assert_memory_equal(data, expect, len);
    h->rx_off += len;
    h->held += len;
}

static void bulk_fin(void *ctx, uint64_t sid, void *user)
{
    struct half *h = user;
    assert_int_equal(h->rx_off, h->rx_len);
    h->got_fin = true;
}

static void bulk_writable(void *ctx, uint64_t sid, void *user)
{
    struct half *h = user;
    h->blocked = false;
}

static void bulk_reset(void *ctx, uint64_t sid, void *user, uint32_t code, bool remote,
                       const char *msg, size_t msg_len)
{
    fail_msg("stream %llu reset: %s", (unsigned long long)sid, tun_code_name(code));
}

static void bulk_closed(void *ctx, uint64_t sid, void *user)
{
    struct half *h = user;
    h->closed = true;
    bulk_of(ctx)->closed++;
}

static const tun_io_t bulk_io = {
    .on_open = bulk_open,
    .on_open_ok = bulk_open_ok,
    .on_data = bulk_data,
    .on_fin = bulk_fin,
    .on_writable = bulk_writable,
    .on_reset = bulk_reset,
    .on_closed = bulk_closed,
};

/* One round of the application at one half: send a random chunk, consume a random part. */
static void bulk_step(struct bulk *b, struct half *h, uint8_t *scratch, size_t scratch_cap)
{
    if (!h->open || h->closed)
        return;
    if (!h->blocked && h->tx_off < h->tx_len) {
        size_t want = 1 + rnd(b) % scratch_cap;
        if (want > h->tx_len - h->tx_off)
            want = h->tx_len - h->tx_off;
        gen(h->tx_seed, h->tx_off, scratch, want);
        ssize_t n = tun_send(h->e->t, h->sid, scratch, want);
        assert_true(n >= 0 && (size_t)n <= want);
        h->tx_off += (uint64_t)n;
        if ((size_t)n < want)
            h->blocked = true; /* keep the rest, stop reading the source */
    }
    if (h->held && rnd(b) % 4 != 0) {
        uint64_t n = rnd(b) % 2 ? h->held : 1 + rnd(b) % h->held;
        h->held -= n;
        int rc = tun_consumed(h->e->t, h->sid, n);
        assert_true(rc == 0 || rc == TUN_CLOSED);
        if (rc == TUN_CLOSED) {
            h->closed = true;
            b->closed++;
        }
    }
    if (!h->closed && h->tx_off == h->tx_len && !h->fin_sent) {
        h->fin_sent = true;
        int rc = tun_fin(h->e->t, h->sid);
        assert_true(rc == 0 || rc == TUN_CLOSED);
        if (rc == TUN_CLOSED) {
            h->closed = true;
            b->closed++;
        }
    }
}

/* Opens nstreams (half from each end), moves per_stream bytes each way on each with random
 * chunk sizes and random consumption, byte-exact, and closes them all cleanly. */
static void run_bulk(size_t nstreams, uint64_t per_stream, uint64_t seed, size_t max_chunk)
{
    struct bulk b = {.n = nstreams * 2, .rng = seed};
    b.halves = calloc(b.n, sizeof(*b.halves));
    assert_non_null(b.halves);
    struct pair *p = pair_new(NULL, NULL, &bulk_io);
    p->app = &b;
    p->l[0].delay_ms = p->l[1].delay_ms = 2;
    uint8_t *scratch = malloc(max_chunk);
    assert_non_null(scratch);
    for (size_t k = 0; k < nstreams; k++) {
        for (int side = 0; side < 2; side++) {
            struct half *h = &b.halves[2 * k + side];
            h->e = &p->e[side];
            h->tx_seed = splitmix(seed ^ (2 * k + side));
            h->rx_seed = splitmix(seed ^ (2 * k + 1 - side));
            /* Unequal volumes, so the two FINs land at different moments. */
            h->tx_len = per_stream - (side ? rnd(&b) % 1024 : 0);
        }
        b.halves[2 * k].rx_len = b.halves[2 * k + 1].tx_len;
        b.halves[2 * k + 1].rx_len = b.halves[2 * k].tx_len;
        /* Even streams are opened by A, odd ones by B; the target names the acceptor's half. */
        int opener = k % 2;
        struct half *h = &b.halves[2 * k + opener];
        uint64_t peer_idx = 2 * k + 1 - opener;
        assert_int_equal(
            tun_open(h->e->t, (const uint8_t *)&peer_idx, sizeof(peer_idx), h, p->now, &h->sid), 0);
    }
    uint64_t peak_held = 0, peak_link = 0;
    uint32_t peak_streams = 0;
    while (b.closed < b.n) {
        for (size_t i = 0; i < b.n; i++)
            bulk_step(&b, &b.halves[i], scratch, max_chunk);
        p->now++;
        pair_run_until(p, p->now);
        uint64_t held = 0;
        for (size_t i = 0; i < b.n; i++)
            held += b.halves[i].held;
        if (held > peak_held)
            peak_held = held;
        if (p->l[0].bytes + p->l[1].bytes > peak_link)
            peak_link = p->l[0].bytes + p->l[1].bytes;
        tun_stats_t sa;
        stats(&p->e[0], &sa);
        if (sa.streams > peak_streams)
            peak_streams = sa.streams;
        assert_int_equal(tun_check(p->e[0].t), 0);
        assert_int_equal(tun_check(p->e[1].t), 0);
        assert_false(tun_is_dead(p->e[0].t));
    }
    /* Bytes anywhere between the two applications never exceed one window per stream and
     * direction. */
    uint64_t bound = (uint64_t)b.n * 256 * 1024;
    assert_true(peak_held + peak_link <= bound + bound / 100);
    assert_int_equal(peak_streams, nstreams); /* all open at once */
    tun_stats_t sa, sb;
    stats(&p->e[0], &sa);
    stats(&p->e[1], &sb);
    uint64_t total = 0;
    for (size_t i = 0; i < b.n; i++) {
        assert_int_equal(b.halves[i].rx_off, b.halves[i].rx_len);
        assert_true(b.halves[i].got_fin);
        if (b.halves[i].e == &p->e[0])
            total += b.halves[i].tx_len;
    }
    assert_int_equal(sa.data_bytes_sent, total);
    assert_int_equal(sb.data_bytes_received, total);
    assert_int_equal(sa.streams + sb.streams, 0);
    assert_int_equal(sa.malformed + sb.malformed + sa.resets_sent + sb.resets_sent, 0);
    print_message("bulk: %zu streams, %llu MiB each way, %llu ms virtual, peak in flight+held "
                  "%llu KiB\n",
                  nstreams, (unsigned long long)(total >> 20), (unsigned long long)(p->now - 1000),
                  (unsigned long long)((peak_held + peak_link) >> 10));
    pair_free(p);
    free(scratch);
    free(b.halves);
}

static void test_bulk_many_streams(void **state)
{
    const char *env = getenv("TUN_BULK_MB");
    uint64_t mb = env ? strtoull(env, NULL, 10) : 256;
    if (mb == 0)
        mb = 256;
    run_bulk(64, (mb << 20) / 64, 0x5eed, 150000);
}

static void test_thousand_streams(void **state)
{
    run_bulk(1000, 20000, 0xabc, 9000);
}

/* ---------------------------------------------------------------------------------------- */
/* Heartbeats */

static void test_dead_detection(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    uint64_t s1 = open_stream(p, A(p), "t");
    open_stream(p, B(p), "u");
    p->l[0].delay_ms = p->l[1].delay_ms = 20;
    /* Ten quiet seconds: heartbeats keep it alive, both ways. */
    pair_run_until(p, p->now + 10000);
    assert_false(tun_is_dead(A(p)->t) || tun_is_dead(B(p)->t));
    tun_stats_t st;
    stats(A(p), &st);
    assert_true(st.pings_sent >= 39 && st.pings_sent <= 41);
    assert_true(st.pongs_received >= 38);
    /* The link goes silent (both directions); what is in flight is lost. */
    p->l[0].cut = p->l[1].cut = true;
    link_clear(&p->l[0]);
    link_clear(&p->l[1]);
    stats(A(p), &st);
    uint64_t last = st.last_rx_ms;
    assert_true(last + 1000 > p->now);
    pair_run_until(p, last + 999);
    assert_false(tun_is_dead(A(p)->t));
    assert_int_equal(A(p)->deads, 0);
    pair_run_until(p, last + 1000);
    assert_true(tun_is_dead(A(p)->t));
    assert_int_equal(A(p)->deads, 1);
    assert_int_equal(A(p)->dead_reason, TUN_DEAD_TIMEOUT);
    assert_int_equal(A(p)->resets, 2);
    assert_int_equal(A(p)->reset_code, TUN_ERR_TUNNEL_DEAD);
    assert_int_equal(tun_send(A(p)->t, s1, "x", 1), -EPIPE);
    stats(A(p), &st);
    assert_int_equal(st.streams, 0);
    pair_run_until(p, p->now + 1000);
    assert_true(tun_is_dead(B(p)->t));
    assert_int_equal(A(p)->deads, 1); /* once */
    pair_free(p);

    /* A one-way failure: B still hears A, A hears nothing. A declares death 1000 ms after
     * B's last frame; B, which heard A's PINGs until then, follows 1000 ms after A's last. */
    p = pair_new(NULL, NULL, NULL);
    pair_run_until(p, p->now + 500);
    p->l[1].cut = true;
    stats(A(p), &st);
    uint64_t a_last = st.last_rx_ms;
    pair_run_until(p, a_last + 999);
    assert_false(tun_is_dead(A(p)->t));
    pair_run_until(p, a_last + 1000);
    assert_true(tun_is_dead(A(p)->t));
    stats(B(p), &st);
    uint64_t b_last = st.last_rx_ms;
    assert_true(b_last > a_last); /* B kept hearing A */
    assert_false(tun_is_dead(B(p)->t));
    pair_run_until(p, b_last + 999);
    assert_false(tun_is_dead(B(p)->t));
    pair_run_until(p, b_last + 1000);
    assert_true(tun_is_dead(B(p)->t));
    pair_free(p);

    /* Traffic other than PONG proves life too: a peer that stops answering PINGs but keeps
     * sending DATA is alive. */
    tun_config_t c;
    tun_config_defaults(&c);
    c.role = TUN_INITIATOR;
    struct end solo = {0};
    struct link sink = {.cut = true};
    struct pair host = {.now = 0};
    solo.p = &host;
    solo.out = &sink;
    tun_io_t io = rec_io;
    io.ctx = &solo;
    io.send = link_send;
    solo.t = tun_new(&c, &io, 0);
    assert_non_null(solo.t);
    tun_frame_t ping = {.type = TUN_PING, .seq = 9};
    for (uint64_t now = 0; now < 5000; now += 900) {
        host.now = now;
        tun_tick(solo.t, now);
        assert_int_equal(inject(&solo, &ping), 0);
    }
    assert_false(tun_is_dead(solo.t));
    tun_destroy(&solo.t);
}

static void test_heartbeat_rtt(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    p->l[0].delay_ms = p->l[1].delay_ms = 40;
    pair_run_until(p, p->now + 5000);
    tun_stats_t st;
    stats(A(p), &st);
    assert_int_equal(st.rtt_us, 80000);
    assert_int_equal(st.rtt_min_us, 80000);
    assert_true(st.rttvar_us < 40000);
    stats(B(p), &st);
    assert_int_equal(st.rtt_us, 80000);
    /* The path gets faster: the smoothed RTT follows. */
    p->l[0].delay_ms = p->l[1].delay_ms = 5;
    pair_run_until(p, p->now + 10000);
    stats(A(p), &st);
    assert_true(st.rtt_us >= 10000 && st.rtt_us <= 12000);
    assert_int_equal(st.rtt_min_us, 10000);
    assert_int_equal(st.rtt_recent_min_us, 10000);
    /* The path gets slower: the all-time minimum stays, the recent one follows within two
     * buckets (40 PINGs, 10 s). */
    p->l[0].delay_ms = p->l[1].delay_ms = 30;
    pair_run_until(p, p->now + 12000);
    stats(A(p), &st);
    assert_int_equal(st.rtt_min_us, 10000);
    assert_int_equal(st.rtt_recent_min_us, 60000);
    assert_false(tun_is_dead(A(p)->t));
    /* A PONG for a PING never sent is no sample. */
    tun_frame_t pong = {.type = TUN_PONG, .seq = 123456};
    stats(A(p), &st);
    uint64_t before = st.pongs_received;
    assert_int_equal(inject(A(p), &pong), 0);
    stats(A(p), &st);
    assert_int_equal(st.pongs_received, before);
    /* PING is answered with a PONG of the same seq. */
    link_clear(&p->l[0]);
    tun_frame_t ping = {.type = TUN_PING, .seq = 77};
    assert_int_equal(inject(A(p), &ping), 0);
    uint8_t storage[TUN_FRAME_MAX];
    tun_frame_t out;
    assert_true(take(A(p), &out, storage, true));
    assert_int_equal(out.type, TUN_PONG);
    assert_int_equal(out.seq, 77);
    pair_free(p);
}

/* ---------------------------------------------------------------------------------------- */
/* The codec and hostile bytes */

static const uint8_t sample_payload[300] = {1, 2, 3, 4, 5};

/* One valid frame of each type, with the stream ids the fuzz harness sets up. */
static const struct {
    const char *name;
    tun_frame_t f;
} samples[] = {
    {"open",
     {.type = TUN_OPEN,
      .sid = 7,
      .window = 65536,
      .data = (const uint8_t *)"tcp:10.0.0.1:80",
      .len = 15}},
    {"open_ok", {.type = TUN_OPEN_OK, .sid = 4, .window = 262144}},
    {"open_err",
     {.type = TUN_OPEN_ERR,
      .sid = 4,
      .code = TUN_ERR_UNREACHABLE,
      .data = (const uint8_t *)"connection refused",
      .len = 18}},
    {"data", {.type = TUN_DATA, .sid = 1, .data = sample_payload, .len = sizeof(sample_payload)}},
    {"window", {.type = TUN_WINDOW, .sid = 2, .window = 131072}},
    {"fin", {.type = TUN_FIN, .sid = 3}},
    {"rst", {.type = TUN_RST, .sid = 5, .code = TUN_ERR_REFUSED}},
    {"ping", {.type = TUN_PING, .seq = 1}},
    {"pong", {.type = TUN_PONG, .seq = 1}},
};
#define NSAMPLES (sizeof(samples) / sizeof(samples[0]))

static void test_frame_roundtrip(void **state)
{
    const char *dir = getenv("TUN_CORPUS_DIR");
    static uint8_t buf[TUN_FRAME_MAX];
    for (size_t k = 0; k < NSAMPLES; k++) {
        const tun_frame_t *in = &samples[k].f;
        size_t n = build(buf, in);
        tun_frame_t f;
        assert_int_equal(tun_frame_decode(buf, n, &f), 0);
        assert_int_equal(f.type, in->type);
        assert_true(f.sid == in->sid);
        assert_int_equal(f.window, in->window);
        assert_int_equal(f.code, in->code);
        assert_true(f.seq == in->seq);
        assert_int_equal(f.len, in->len);
        if (f.len)
            assert_memory_equal(f.data, in->data, f.len);
        assert_string_not_equal(tun_frame_type_name(f.type), "?");
        if (dir) {
            char path[512];
            snprintf(path, sizeof(path), "%s/%s", dir, samples[k].name);
            FILE *fp = fopen(path, "wb");
            assert_non_null(fp);
            assert_int_equal(fwrite(buf, 1, n, fp), n);
            fclose(fp);
        }
    }
    /* Limits, at and past the edge: the largest of each field encodes and decodes; past it,
     * the encoder refuses. */
    static uint8_t big[TUN_DATA_MAX + 1];
    uint8_t head[TUN_HEAD_MAX];
    tun_frame_t f = {.type = TUN_OPEN,
                     .sid = TUN_SID_MAX,
                     .window = TUN_WINDOW_MAX,
                     .data = big,
                     .len = TUN_TARGET_MAX};
    size_t n = tun_frame_encode(&f, head);
    assert_true(n > 0 && n <= TUN_HEAD_MAX);
    assert_int_equal(tun_frame_decode(head, n, &f), 0);
    f.len = TUN_TARGET_MAX + 1;
    assert_int_equal(tun_frame_encode(&f, head), 0);
    f = (tun_frame_t){.type = TUN_DATA, .sid = TUN_SID_MAX, .data = big, .len = TUN_DATA_MAX};
    n = build(buf, &f);
    assert_true(n <= TUN_FRAME_MAX);
    assert_int_equal(tun_frame_decode(buf, n, &f), 0);
    f.len = TUN_DATA_MAX + 1;
    assert_int_equal(tun_frame_encode(&f, head), 0);
    f.len = 0;
    assert_int_equal(tun_frame_encode(&f, head), 0);
    f = (tun_frame_t){
        .type = TUN_OPEN_ERR, .sid = 1, .code = TUN_CODE_MAX, .data = big, .len = TUN_MSG_MAX};
    n = tun_frame_encode(&f, head);
    assert_true(n > 0 && n <= TUN_HEAD_MAX);
    f.code = TUN_CODE_MAX + 1;
    assert_int_equal(tun_frame_encode(&f, head), 0);
    f = (tun_frame_t){.type = TUN_WINDOW, .sid = 1, .window = 0};
    assert_int_equal(tun_frame_encode(&f, head), 0);
    f = (tun_frame_t){.type = TUN_FIN, .sid = 0};
    assert_int_equal(tun_frame_encode(&f, head), 0);
    f = (tun_frame_t){.type = TUN_FIN, .sid = TUN_SID_MAX + 1};
    assert_int_equal(tun_frame_encode(&f, head), 0);
    f = (tun_frame_t){.type = (enum tun_frame_type)42, .sid = 1};
    assert_int_equal(tun_frame_encode(&f, head), 0);
    assert_string_equal(tun_code_name(TUN_ERR_LIMIT), "too many streams");
    assert_string_equal(tun_code_name(999), "unknown code");
}

/* Hand-written frames the encoder would never make: each is refused by the decoder. */
static void test_decoder_rejects(void **state)
{
    static const struct {
        const char *what;
        uint8_t bytes[16];
        size_t len;
        int rc;
    } bad[] = {
        {"not an array", {0x01}, 1, -EBADMSG},
        {"empty array", {0x90}, 1, -EBADMSG},
        {"version not an int", {0x93, 0xa1, 'x', 0x06, 0x01}, 5, -EBADMSG},
        {"other version", {0x93, 0x00, 0x06, 0x01}, 4, -EPROTONOSUPPORT},
        {"version only", {0x91, 0x01}, 2, -EBADMSG},
        {"unknown type", {0x93, 0x01, 0x0a, 0x01}, 4, -EBADMSG},
        {"type 0", {0x93, 0x01, 0x00, 0x01}, 4, -EBADMSG},
        {"FIN with a field too many", {0x94, 0x01, 0x06, 0x01, 0x00}, 5, -EBADMSG},
        {"RST with a field too few", {0x93, 0x01, 0x07, 0x01}, 4, -EBADMSG},
        {"sid 0", {0x93, 0x01, 0x06, 0x00}, 4, -EBADMSG},
        {"sid negative", {0x93, 0x01, 0x06, 0xff}, 4, -EBADMSG},
        {"sid past max", {0x93, 0x01, 0x06, 0xcf, 0x40, 0, 0, 0, 0, 0, 0, 1}, 12, -EBADMSG},
        {"DATA as str", {0x94, 0x01, 0x04, 0x01, 0xa1, 'x'}, 6, -EBADMSG},
        {"DATA empty", {0x94, 0x01, 0x04, 0x01, 0xc4, 0x00}, 6, -EBADMSG},
        {"WINDOW 0", {0x94, 0x01, 0x05, 0x01, 0x00}, 5, -EBADMSG},
        {"WINDOW past 2^32-1",
         {0x94, 0x01, 0x05, 0x01, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0},
         13,
         -EBADMSG},
        {"OPEN_OK window past 2^31-1", {0x94, 0x01, 0x02, 0x01, 0xce, 0x80, 0, 0, 0}, 9, -EBADMSG},
        {"RST code past max", {0x94, 0x01, 0x07, 0x01, 0xce, 0, 1, 0, 0}, 9, -EBADMSG},
        {"OPEN_ERR msg as bin", {0x95, 0x01, 0x03, 0x01, 0x01, 0xc4, 0x01, 'x'}, 8, -EBADMSG},
        {"OPEN target as str", {0x95, 0x01, 0x01, 0x01, 0x00, 0xa1, 'x'}, 7, -EBADMSG},
        {"PING seq negative", {0x93, 0x01, 0x08, 0xd0, 0x80}, 5, -EBADMSG},
        {"trailing byte", {0x93, 0x01, 0x06, 0x01, 0x00}, 5, -EBADMSG},
        {"lying bin length", {0x94, 0x01, 0x04, 0x01, 0xc4, 0x05, 'x'}, 7, -EBADMSG},
        {"a map", {0x81, 0x01, 0x06}, 3, -EBADMSG},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        tun_frame_t f;
        int rc = tun_frame_decode(bad[i].bytes, bad[i].len, &f);
        if (rc != bad[i].rc)
            fail_msg("%s: got %d, want %d", bad[i].what, rc, bad[i].rc);
    }
    /* Too big to fit in the test table: a target and a message one byte past their limit. */
    static uint8_t buf[2048];
    size_t n = 0;
    buf[n++] = 0x95, buf[n++] = 0x01, buf[n++] = 0x01, buf[n++] = 0x01, buf[n++] = 0x00;
    buf[n++] = 0xc5, buf[n++] = (TUN_TARGET_MAX + 1) >> 8, buf[n++] = (TUN_TARGET_MAX + 1) & 0xff;
    n += TUN_TARGET_MAX + 1;
    tun_frame_t f;
    assert_int_equal(tun_frame_decode(buf, n, &f), -EBADMSG);
    n = 0;
    buf[n++] = 0x95, buf[n++] = 0x01, buf[n++] = 0x03, buf[n++] = 0x01, buf[n++] = 0x00;
    buf[n++] = 0xda, buf[n++] = (TUN_MSG_MAX + 1) >> 8, buf[n++] = (TUN_MSG_MAX + 1) & 0xff;
    memset(buf + n, 'a', TUN_MSG_MAX + 1);
    n += TUN_MSG_MAX + 1;
    assert_int_equal(tun_frame_decode(buf, n, &f), -EBADMSG);
    buf[7] = TUN_MSG_MAX & 0xff; /* at the limit it is fine */
    assert_int_equal(tun_frame_decode(buf, n - 1, &f), 0);
    assert_int_equal(f.len, TUN_MSG_MAX);
}

/* Every proper prefix of a valid frame of each type is malformed, to the decoder and to a
 * core, and a broken frame naming an open stream resets that stream (a piece of it is
 * lost) without touching the others or the tunnel. */
static void test_truncations(void **state)
{
    static uint8_t buf[TUN_FRAME_MAX];
    for (size_t k = 0; k < NSAMPLES; k++) {
        size_t n = build(buf, &samples[k].f);
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *copy = malloc(cut ? cut : 1); /* exact size: ASan sees any overread */
            assert_non_null(copy);
            memcpy(copy, buf, cut);
            tun_frame_t f;
            assert_int_equal(tun_frame_decode(copy, cut, &f), -EBADMSG);
            free(copy);
        }
        /* And one byte too many. */
        buf[n] = 0xc0;
        tun_frame_t f;
        assert_int_equal(tun_frame_decode(buf, n + 1, &f), -EBADMSG);
    }

    struct pair *p = pair_new(NULL, NULL, NULL);
    uint64_t keep = open_stream(p, A(p), "keep"); /* sid 1 */
    (void)keep;
    tun_stats_t st;
    uint64_t malformed = 0;
    for (size_t k = 0; k < NSAMPLES; k++) {
        tun_frame_t g = samples[k].f;
        uint64_t victim = 0;
        if (g.type != TUN_PING && g.type != TUN_PONG && g.type != TUN_OPEN) {
            victim = open_stream(p, B(p), "victim"); /* an open stream at A to aim at */
            g.sid = victim;
        }
        size_t n = build(buf, &g);
        int resets = A(p)->resets;
        bool named = false; /* did some prefix get as far as a valid stream id? */
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *copy = malloc(cut ? cut : 1);
            assert_non_null(copy);
            memcpy(copy, buf, cut);
            tun_frame_t h;
            assert_int_equal(tun_frame_decode(copy, cut, &h), -EBADMSG);
            named |= victim && h.sid == victim;
            assert_int_equal(tun_receive(A(p)->t, copy, cut, p->now), -EBADMSG);
            free(copy);
            malformed++;
        }
        pair_deliver(p);
        /* mpr refuses an array header that announces more elements than bytes follow, so a
         * short frame (FIN, RST) never names its stream; one with a payload does. */
        if (g.type == TUN_DATA || g.type == TUN_OPEN_ERR)
            assert_true(named);
        if (named) {
            assert_int_equal(A(p)->resets, resets + 1);
            assert_int_equal(A(p)->reset_sid, victim);
            assert_int_equal(A(p)->reset_code, TUN_ERR_PROTOCOL);
        } else {
            assert_int_equal(A(p)->resets, resets);
        }
        assert_int_equal(tun_check(A(p)->t), 0);
    }
    stats(A(p), &st);
    assert_int_equal(st.malformed, malformed);
    assert_false(tun_is_dead(A(p)->t));
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(A(p)->t, 1, &si), 0); /* the bystander lives */
    assert_int_equal(tun_send(A(p)->t, 1, "ok", 2), 2);
    pair_deliver(p);
    assert_memory_equal(B(p)->data + B(p)->data_len - 2, "ok", 2);
    pair_free(p);
}

static void test_garbage(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    for (int i = 0; i < 4; i++)
        open_stream(p, i % 2 ? B(p) : A(p), "t");
    uint64_t rng = 42;
    static uint8_t buf[512];
    tun_stats_t st;
    /* Structured garbage first: a valid version and a type other than OPEN (the one frame
     * type that may legitimately kill a tunnel), then random bytes. The tunnel survives. */
    int bad = 0;
    for (int i = 0; i < 20000; i++) {
        rng = splitmix(rng);
        size_t n = 3 + rng % 60;
        buf[0] = 0x90 | (uint8_t)(rng >> 8) % 6;
        buf[1] = 0x01;
        buf[2] = 2 + (uint8_t)((rng >> 16) % 9);
        for (size_t j = 3; j < n; j++) {
            rng = splitmix(rng);
            buf[j] = (uint8_t)rng;
        }
        int rc = tun_receive(A(p)->t, buf, n, p->now);
        assert_true(rc == 0 || rc == -EBADMSG);
        bad += rc == -EBADMSG;
        assert_int_equal(tun_check(A(p)->t), 0);
    }
    stats(A(p), &st);
    assert_int_equal(st.malformed, bad);
    assert_true(bad > 10000);
    assert_false(tun_is_dead(A(p)->t));
    /* Its answers, if any, are well formed: B takes them all without complaint. */
    pair_deliver(p);
    stats(B(p), &st);
    assert_int_equal(st.malformed, 0);
    /* The tunnel still carries a new stream end to end. */
    uint64_t sid = open_stream(p, A(p), "after");
    size_t before = B(p)->data_len;
    assert_int_equal(tun_send(A(p)->t, sid, "alive", 5), 5);
    pair_deliver(p);
    assert_int_equal(B(p)->data_len, before + 5);

    /* Fully random bytes, which may kill the tunnel (another version, an OPEN with a bad
     * id): never a crash, and a dead core stays dead and consistent. */
    for (int i = 0; i < 20000; i++) {
        rng = splitmix(rng);
        size_t n = rng % 200;
        for (size_t j = 0; j < n; j++) {
            rng = splitmix(rng);
            buf[j] = (uint8_t)rng;
        }
        int rc = tun_receive(B(p)->t, buf, n, p->now);
        assert_true(rc == 0 || rc == -EBADMSG || rc == -EPIPE);
        assert_int_equal(tun_check(B(p)->t), 0);
    }
    pair_free(p);
}

static void test_config_and_api_errors(void **state)
{
    tun_config_t c;
    tun_io_t io = rec_io;
    struct end e = {0};
    struct link sink = {.cut = true};
    struct pair host = {0};
    e.p = &host;
    e.out = &sink;
    io.ctx = &e;
    io.send = link_send;
    tun_config_defaults(&c);
    errno = 0;
    assert_null(tun_new(&c, &io, 0)); /* no role */
    assert_int_equal(errno, EINVAL);
    c.role = TUN_ACCEPTOR;
    struct {
        uint32_t *field;
        uint32_t bad;
    } cases[] = {
        {&c.window, 0},           {&c.window, TUN_WINDOW_MAX + 1}, {&c.max_window, 0},
        {&c.max_data, 0},         {&c.max_data, TUN_DATA_MAX + 1}, {&c.max_streams, 0},
        {&c.ping_interval_ms, 0}, {&c.dead_after_ms, 250},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint32_t saved = *cases[i].field;
        *cases[i].field = cases[i].bad;
        errno = 0;
        assert_null(tun_new(&c, &io, 0));
        assert_int_equal(errno, EINVAL);
        *cases[i].field = saved;
    }
    tun_io_t nosend = io;
    nosend.send = NULL;
    assert_null(tun_new(&c, &nosend, 0));
    tun_t *t = tun_new(&c, &io, 0);
    assert_non_null(t);
    e.t = t;
    uint64_t sid;
    assert_int_equal(tun_open(t, NULL, 0, NULL, 0, &sid), 0);
    assert_int_equal(sid, 2);
    assert_int_equal(tun_open(t, NULL, 5, NULL, 0, &sid), -EINVAL);
    assert_int_equal(tun_accept(t, 2), -EINVAL); /* ours, not the peer's */
    assert_int_equal(tun_accept(t, 99), -ENOENT);
    assert_int_equal(tun_consumed(t, 99, 1), -ENOENT);
    assert_int_equal(tun_consumed(t, 2, 1), -EINVAL);
    assert_int_equal(tun_set_user(t, 2, &e), 0);
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(t, 2, &si), 0);
    assert_ptr_equal(si.user, &e);
    assert_true(si.local);
    assert_int_equal(tun_reset(t, 2, TUN_CODE_MAX + 1), -EINVAL);
    assert_string_equal(tun_dead_reason_name(TUN_DEAD_VERSION),
                        "peer speaks another protocol version");
    tun_destroy(&t);
    tun_destroy(&t); /* NULL is fine */
    tun_destroy(NULL);
}

/* Map growth and shrinkage under churn: ids spread, many inserts and deletes. */
static void test_stream_table_churn(void **state)
{
    struct pair *p = pair_new(NULL, NULL, NULL);
    B(p)->auto_accept = false;
    uint64_t ids[3000];
    size_t n = 0;
    tun_stats_t st, st0;
    stats(A(p), &st0);
    uint64_t rng = 7;
    for (int round = 0; round < 6; round++) {
        while (n < 3000) {
            assert_int_equal(tun_open(A(p)->t, NULL, 0, NULL, p->now, &ids[n]), 0);
            n++;
        }
        /* Reset a random two thirds. */
        for (size_t i = 0; i < n;) {
            rng = splitmix(rng);
            if (rng % 3) {
                assert_int_equal(tun_reset(A(p)->t, ids[i], 0), 0);
                ids[i] = ids[--n];
            } else {
                i++;
            }
        }
        assert_int_equal(tun_check(A(p)->t), 0);
        tun_stream_info_t si;
        for (size_t i = 0; i < n; i++)
            assert_int_equal(tun_stream_get(A(p)->t, ids[i], &si), 0);
        link_clear(&p->l[0]);
    }
    while (n)
        assert_int_equal(tun_reset(A(p)->t, ids[--n], 0), 0);
    stats(A(p), &st);
    assert_int_equal(st.streams, 0);
    assert_true(st.mem_bytes <= st0.mem_bytes + 16 * sizeof(void *)); /* shrunk back */
    link_clear(&p->l[0]);
    pair_free(p);
}

/* ---------------------------------------------------------------------------------------- */
/* Sealed streams */

/* Mirrored keys for the two ends of one stream. */
static void seal_pair_keys(seal_keys_t *ingress, seal_keys_t *site, uint8_t suite)
{
    uint8_t k[32], salt[16], bind[32];
    randombytes_buf(k, sizeof(k));
    randombytes_buf(salt, sizeof(salt));
    randombytes_buf(bind, sizeof(bind));
    seal_stream_keys(ingress, k, salt, bind, suite, true);
    seal_stream_keys(site, k, salt, bind, suite, false);
}

/* A sealed stream opened by A towards B, B answering after it set its mode. */
static uint64_t open_sealed(struct pair *p, enum tun_seal_mode b_mode, seal_keys_t *kb)
{
    seal_keys_t ka;
    seal_pair_keys(&ka, kb, SEAL_SUITE_CHACHA20POLY1305);
    B(p)->auto_accept = false;
    uint64_t sid = 0;
    assert_int_equal(tun_open(A(p)->t, (const uint8_t *)"s", 1, NULL, p->now, &sid), 0);
    assert_int_equal(tun_seal(A(p)->t, sid, TUN_SEAL_END, &ka), 0);
    assert_int_equal(tun_seal(A(p)->t, sid, TUN_SEAL_END, &ka), -EINVAL); /* once */
    pair_deliver(p);
    assert_int_equal(B(p)->opens, 1);
    assert_int_equal(tun_seal(B(p)->t, sid, b_mode, b_mode == TUN_SEAL_END ? kb : NULL), 0);
    assert_int_equal(tun_accept(B(p)->t, sid), 0);
    pair_deliver(p);
    assert_int_equal(A(p)->open_oks, 1);
    return sid;
}

static void test_sealed_end_to_end(void **state)
{
    (void)state;
    struct pair *p = pair_new(NULL, NULL, NULL);
    seal_keys_t kb;
    uint64_t sid = open_sealed(p, TUN_SEAL_END, &kb);
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(A(p)->t, sid, &si), 0);
    assert_int_equal(si.seal, TUN_SEAL_END);
    assert_int_equal(tun_seal(A(p)->t, sid, TUN_SEAL_PASS, NULL), -EINVAL); /* open: too late */

    /* More than a window's worth each way: credit counts plaintext plus tags. */
    static uint8_t plain[60000];
    for (size_t k = 0; k < sizeof(plain); k++)
        plain[k] = (uint8_t)(k * 13 + 1);
    size_t sent = 0;
    for (int round = 0; round < 200 && sent < 5 * sizeof(plain); round++) {
        ssize_t n = tun_send(A(p)->t, sid, plain, sizeof(plain));
        assert_true(n >= 0);
        sent += (size_t)n;
        /* on the wire, before delivery: no plaintext, one tag per record */
        for (const struct msg *m = p->l[0].head; m; m = m->next) {
            tun_frame_t f;
            assert_int_equal(tun_frame_decode(m->data, m->len, &f), 0);
            if (f.type != TUN_DATA)
                continue;
            assert_true(m->raw);
            assert_true(f.len > SEAL_TAG_LEN && f.len <= TUN_DATA_MAX);
            assert_memory_not_equal(f.data, plain, 64);
        }
        B(p)->data_len = 0;
        pair_run_until(p, p->now + 10);
        assert_int_equal(tun_check(A(p)->t), 0);
        assert_int_equal(tun_check(B(p)->t), 0);
        if (B(p)->data_len >= 64)
            assert_memory_equal(B(p)->data, plain, 64); /* each send starts at plain[0] */
    }
    assert_true(sent >= 5 * sizeof(plain));
    assert_true(A(p)->raw_reserved >= 5); /* sealed in the driver's room, not copied */
    assert_int_equal(tun_send(B(p)->t, sid, "answer", 6), 6);
    pair_deliver(p);
    assert_int_equal(A(p)->data_len, 6);
    assert_memory_equal(A(p)->data, "answer", 6);
    tun_stats_t st;
    stats(B(p), &st);
    assert_int_equal(st.seal_failures, 0);

    /* A record altered on the way: the receiving end resets the stream, both ends hear why. */
    assert_int_equal(tun_send(A(p)->t, sid, plain, 100), 100);
    struct msg *m = p->l[0].tail;
    m->data[m->len - 20] ^= 0x40;
    pair_deliver(p);
    stats(B(p), &st);
    assert_int_equal(st.seal_failures, 1);
    assert_int_equal(B(p)->resets, 1);
    assert_int_equal(B(p)->reset_code, TUN_ERR_SEAL);
    assert_int_equal(A(p)->resets, 1);
    assert_int_equal(A(p)->reset_code, TUN_ERR_SEAL);
    assert_true(A(p)->reset_remote);
    pair_free(p);
}

static void test_sealed_pass_and_rules(void **state)
{
    (void)state;
    struct pair *p = pair_new(NULL, NULL, NULL);
    seal_keys_t kb;
    uint64_t sid = open_sealed(p, TUN_SEAL_PASS, &kb);
    /* A relay sees records, not plaintext, and each whole. */
    static const char secret[] = "the payload a relay must not read";
    assert_int_equal(tun_send(A(p)->t, sid, secret, sizeof(secret)), sizeof(secret));
    pair_deliver(p);
    assert_int_equal(B(p)->data_len, sizeof(secret) + SEAL_TAG_LEN);
    assert_memory_not_equal(B(p)->data, secret, sizeof(secret));
    /* The relay's end at the site: opens it with the keys. */
    seal_state_t *site = seal_state_new(&kb);
    assert_non_null(site);
    uint8_t rec[sizeof(secret) + SEAL_TAG_LEN];
    memcpy(rec, B(p)->data, sizeof(rec));
    assert_int_equal(seal_open(site, rec, sizeof(rec)), 0);
    assert_memory_equal(rec, secret, sizeof(secret));
    /* PASS sends a record whole or not at all. */
    uint8_t out[sizeof(secret) + SEAL_TAG_LEN];
    assert_int_equal(seal_record(site, (const uint8_t *)secret, sizeof(secret), out), 0);
    assert_int_equal(tun_send(B(p)->t, sid, out, sizeof(out)), sizeof(out));
    pair_deliver(p);
    assert_int_equal(A(p)->data_len, sizeof(secret));
    assert_memory_equal(A(p)->data, secret, sizeof(secret));
    static uint8_t big[TUN_DATA_MAX + 1];
    assert_int_equal(tun_send(B(p)->t, sid, big, sizeof(big)), -EMSGSIZE);
    tun_stream_info_t si;
    assert_int_equal(tun_stream_get(B(p)->t, sid, &si), 0);
    size_t more = si.send_credit + 1 <= TUN_DATA_MAX ? si.send_credit + 1 : TUN_DATA_MAX;
    if (more > si.send_credit) /* past the credit: nothing taken, not a part */
        assert_int_equal(tun_send(B(p)->t, sid, big, more), 0);
    seal_state_free(&site);

    /* A raw frame (payload not sealed by the hop) for a stream that is not sealed: refused. */
    B(p)->auto_accept = true;
    uint64_t plain_sid = open_stream(p, A(p), "p");
    pair_deliver(p);
    assert_int_equal(tun_send(A(p)->t, plain_sid, "x", 1), 1);
    p->l[0].tail->raw = true;
    int resets = B(p)->resets;
    pair_deliver(p);
    assert_int_equal(B(p)->resets, resets + 1);
    assert_int_equal(B(p)->reset_code, TUN_ERR_PROTOCOL);
    /* Only DATA may come raw: anything else is malformed. */
    tun_frame_t fin = {.type = TUN_FIN, .sid = sid};
    static uint8_t buf[TUN_FRAME_MAX];
    size_t n = build(buf, &fin);
    assert_int_equal(tun_receive_raw(B(p)->t, buf, n, p->now), -EBADMSG);
    /* tun_seal: only before DATA, a valid mode, keys for END. */
    uint64_t s2 = 0;
    assert_int_equal(tun_open(A(p)->t, (const uint8_t *)"s", 1, NULL, p->now, &s2), 0);
    assert_int_equal(tun_seal(A(p)->t, s2, TUN_SEAL_NONE, NULL), -EINVAL);
    assert_int_equal(tun_seal(A(p)->t, s2, 3, NULL), -EINVAL);
    assert_int_equal(tun_seal(A(p)->t, s2, TUN_SEAL_END, NULL), -EINVAL);
    seal_keys_t bad = {.suite = 9};
    assert_int_equal(tun_seal(A(p)->t, s2, TUN_SEAL_END, &bad), -EINVAL);
    assert_int_equal(tun_seal(A(p)->t, 999, TUN_SEAL_PASS, NULL), -ENOENT);
    pair_free(p);
}

int main(void)
{
    log_init("test_tunnel", LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_data_halfclose),
        cmocka_unit_test(test_fin_before_open_ok),
        cmocka_unit_test(test_reject),
        cmocka_unit_test(test_open_timeout),
        cmocka_unit_test(test_reset_both_ways),
        cmocka_unit_test(test_slow_reader_backpressure),
        cmocka_unit_test(test_window_auto_tuning),
        cmocka_unit_test(test_frame_size),
        cmocka_unit_test(test_no_grant_after_fin),
        cmocka_unit_test(test_data_beyond_window),
        cmocka_unit_test(test_window_overflow),
        cmocka_unit_test(test_unknown_stream),
        cmocka_unit_test(test_stream_rule_violations),
        cmocka_unit_test(test_tunnel_fatal_violations),
        cmocka_unit_test(test_max_streams),
        cmocka_unit_test(test_bulk_many_streams),
        cmocka_unit_test(test_thousand_streams),
        cmocka_unit_test(test_dead_detection),
        cmocka_unit_test(test_heartbeat_rtt),
        cmocka_unit_test(test_frame_roundtrip),
        cmocka_unit_test(test_decoder_rejects),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_config_and_api_errors),
        cmocka_unit_test(test_stream_table_churn),
        cmocka_unit_test(test_sealed_end_to_end),
        cmocka_unit_test(test_sealed_pass_and_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
