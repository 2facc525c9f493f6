/* splice: see splice.h. Direction d carries bytes from legs[d] (its source) to legs[1 - d]
 * (its sink); dirs[d].buf holds what the sink has not taken yet.
 *
 * A TCP leg's two watchers serve both of its roles: reading (the leg as a source) and
 * writing (as a sink). On a raw socket reading waits for readability and writing for
 * writability; under a byte layer (TLS) either may wait for either (a TLS read may have to
 * write, a write may have to read), so each role says what it waits for (rd_need, wr_need)
 * and the watchers run for the union. An event goes to the role(s) waiting for it. */

#include "node/dataplane/splice.h"

#include "common/log.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define SPLICE_MAGIC 0x53504c43u

enum leg_kind { LEG_NONE = 0, LEG_TCP, LEG_STREAM };

struct leg {
    enum leg_kind kind;
    int fd;           /* LEG_TCP */
    ev_io rio, wio;   /* LEG_TCP */
    tconn_t *c;       /* LEG_STREAM */
    uint64_t sid;     /* LEG_STREAM */
    bool gone;        /* LEG_STREAM: the core forgot the stream (closed or reset) */
    bool eof_in;      /* as a source: EOF read / FIN received */
    bool fin_out;     /* as a sink: shutdown(SHUT_WR) / FIN sent */
    bool wants_drain; /* as a sink: its tunnel was congested when the source wanted to read */
    const splice_io_ops_t *ops; /* LEG_TCP: a byte layer (TLS), or NULL: recv/send */
    void *io;                   /* the layer's state (owned) */
    int io_end;                 /* a final CLOSED/ERROR the layer gave while filling a read */
    uint8_t rd_need, wr_need;   /* LEG_TCP: what reading / writing waits for (EV_READ, EV_WRITE) */
    bool records; /* LEG_STREAM carrying sealed records (tun_seal PASS): what it delivers is
                   * buffered with each record's length, and goes on whole */
};

struct dir {
    uint8_t *buf; /* bytes from the source the sink has not taken */
    size_t off, len;
    size_t cap;     /* bytes allocated at buf */
    uint64_t bytes; /* moved to the sink in total */
};

struct splice {
    uint32_t magic;
    splice_ctx_t *x;
    struct leg legs[2];
    struct dir dirs[2];
    bool finished;
    splice_done_fn done;
    void *ctx;
    splice_t *prev, *next; /* live list, or the zombie list once finished */
};

struct splice_ctx {
    struct ev_loop *loop;
    splice_t *live;
    splice_t *zombies;
    ev_check reaper;
    size_t count;
};

static void pump(splice_t *s, int d);

/* ---- list and life ---------------------------------------------------------------------- */

static void unlink_from(splice_t **head, splice_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        *head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static void push_to(splice_t **head, splice_t *s)
{
    s->prev = NULL;
    s->next = *head;
    if (*head)
        (*head)->prev = s;
    *head = s;
}

static void on_reap(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)revents;
    splice_ctx_t *x = w->data;
    while (x->zombies) {
        splice_t *s = x->zombies;
        unlink_from(&x->zombies, s);
        free(s->dirs[0].buf);
        free(s->dirs[1].buf);
        free(s);
    }
    ev_check_stop(loop, w);
}

static void leg_close_tcp(splice_t *s, struct leg *l, bool rst)
{
    if (l->kind != LEG_TCP || l->fd < 0)
        return;
    ev_io_stop(s->x->loop, &l->rio);
    ev_io_stop(s->x->loop, &l->wio);
    if (l->ops) {
        l->ops->destroy(l->io);
        l->io = NULL;
    }
    if (rst) {
        struct linger lg = {1, 0};
        setsockopt(l->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(l->fd);
    l->fd = -1;
}

static void finish(splice_t *s, bool ok, const char *why)
{
    if (s->finished)
        return;
    s->finished = true;
    for (int i = 0; i < 2; i++)
        leg_close_tcp(s, &s->legs[i], !ok);
    splice_ctx_t *x = s->x;
    unlink_from(&x->live, s);
    push_to(&x->zombies, s);
    x->count--;
    ev_check_start(x->loop, &x->reaper);
    uint64_t bytes[2] = {s->dirs[0].bytes, s->dirs[1].bytes};
    if (s->done)
        s->done(s->ctx, s, ok, why, bytes);
}

void splice_abort(splice_t *s, uint32_t code, const char *why)
{
    if (s->finished)
        return;
    for (int i = 0; i < 2; i++) {
        struct leg *l = &s->legs[i];
        if (l->kind == LEG_STREAM && !l->gone) {
            tun_t *t = tconn_tun(l->c);
            if (t)
                tun_reset(t, l->sid, code);
            l->gone = true;
        }
    }
    finish(s, false, why);
}

/* Both directions ended and every stream is gone: a clean close. */
static void check_done(splice_t *s)
{
    if (s->finished)
        return;
    for (int d = 0; d < 2; d++) {
        struct leg *src = &s->legs[d], *snk = &s->legs[1 - d];
        if (!src->eof_in || s->dirs[d].len || !snk->fin_out)
            return;
    }
    for (int i = 0; i < 2; i++)
        if (s->legs[i].kind == LEG_STREAM && !s->legs[i].gone)
            return;
    finish(s, true, "closed");
}

/* ---- moving bytes ----------------------------------------------------------------------- */

/* Starts or stops a TCP leg's watchers for what its two roles wait for. */
static void leg_arm(splice_t *s, struct leg *l)
{
    int ev = l->rd_need | l->wr_need;
    if (ev & EV_READ)
        ev_io_start(s->x->loop, &l->rio);
    else
        ev_io_stop(s->x->loop, &l->rio);
    if (ev & EV_WRITE)
        ev_io_start(s->x->loop, &l->wio);
    else
        ev_io_stop(s->x->loop, &l->wio);
}

/* The leg as a source waits for ev (0: it is not read for now). */
static void src_wait(splice_t *s, struct leg *l, int ev)
{
    l->rd_need = (uint8_t)ev;
    leg_arm(s, l);
}

/* The leg as a sink waits for ev. */
static void snk_wait(splice_t *s, struct leg *l, int ev)
{
    l->wr_need = (uint8_t)ev;
    leg_arm(s, l);
}

/* A layer's failure as an abort reason. An error right after the peer closed its socket is a
 * close without close_notify: most clients end that way, so it is an end of input, as for
 * plain TCP (a truncation only the application protocol can tell). */
static ssize_t io_result(splice_t *s, struct leg *l, ssize_t n)
{
    if (n != SPLICE_IO_ERROR)
        return n;
    uint8_t b;
    if (recv(l->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
        return SPLICE_IO_CLOSED;
    (void)s;
    return n;
}

/* Reads from a layered source into buf: as many bytes as the layer has at once (a TLS read
 * gives one record), up to len. > 0, or a SPLICE_IO_* code. */
static ssize_t io_read(splice_t *s, struct leg *l, uint8_t *buf, size_t len)
{
    if (l->io_end)
        return l->io_end;
    size_t got = 0;
    while (got < len) {
        ssize_t n = l->ops->read(l->io, buf + got, len - got);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        n = io_result(s, l, n);
        if (n == SPLICE_IO_CLOSED || n == SPLICE_IO_ERROR)
            l->io_end = (int)n; /* given after the bytes before it */
        if (got)
            break;
        return n;
    }
    return (ssize_t)got;
}

/* Offers bytes to the sink of direction d; returns how many it took, or -1 if the splice
 * was aborted. */
static ssize_t sink_take(splice_t *s, int d, const uint8_t *p, size_t len)
{
    struct leg *snk = &s->legs[1 - d];
    if (snk->kind == LEG_TCP && snk->ops) {
        /* A TLS write returns after each record: write until all is taken or it waits (the
         * bytes of a call that waited are the first the caller offers again). */
        size_t took = 0;
        while (took < len) {
            ssize_t n = snk->ops->write(snk->io, p + took, len - took);
            if (n > 0) {
                took += (size_t)n;
                continue;
            }
            if (n != SPLICE_IO_WANT_WRITE && n != SPLICE_IO_WANT_READ)
                break;
            snk_wait(s, snk, n == SPLICE_IO_WANT_WRITE ? EV_WRITE : EV_READ);
            return (ssize_t)took;
        }
        if (took == len)
            return (ssize_t)took;
        char why[96];
        snprintf(why, sizeof(why), "%s: write failed", snk->ops->name);
        splice_abort(s, TUN_ERR_UNREACHABLE, why);
        return -1;
    }
    if (snk->kind == LEG_TCP) {
        for (;;) {
            ssize_t n = send(snk->fd, p, len, MSG_NOSIGNAL);
            if (n >= 0) {
                if ((size_t)n < len)
                    snk_wait(s, snk, EV_WRITE);
                return n;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                snk_wait(s, snk, EV_WRITE);
                return 0;
            }
            char why[96];
            snprintf(why, sizeof(why), "send: %s", strerror(errno));
            splice_abort(s, TUN_ERR_UNREACHABLE, why);
            return -1;
        }
    }
    if (snk->kind == LEG_STREAM) {
        tun_t *t = tconn_tun(snk->c);
        if (!t || snk->gone) {
            splice_abort(s, TUN_ERR_TUNNEL_DEAD, "tunnel down");
            return -1;
        }
        ssize_t n = tun_send(t, snk->sid, p, len);
        if (n == -ENOTCONN)
            return 0;
        if (n < 0) {
            char why[96];
            snprintf(why, sizeof(why), "tunnel send: %s", strerror((int)-n));
            splice_abort(s, TUN_ERR_INTERNAL, why);
            return -1;
        }
        return n;
    }
    return 0; /* not attached yet: keep the bytes */
}

/* n bytes from a stream source left our hands: credit goes back to its sender. */
static void source_consumed(splice_t *s, int d, size_t n)
{
    struct leg *src = &s->legs[d];
    if (src->kind != LEG_STREAM || n == 0 || src->gone)
        return;
    tun_t *t = tconn_tun(src->c);
    if (!t)
        return;
    if (tun_consumed(t, src->sid, n) == TUN_CLOSED)
        src->gone = true;
}

static bool sink_ready(splice_t *s, int d)
{
    struct leg *snk = &s->legs[1 - d];
    if (snk->kind == LEG_TCP)
        return true;
    if (snk->kind == LEG_STREAM) {
        if (tconn_congested(snk->c)) {
            snk->wants_drain = true;
            return false;
        }
        return true;
    }
    return false;
}

static void forward_fin(splice_t *s, int d)
{
    struct leg *snk = &s->legs[1 - d];
    if (snk->fin_out)
        return;
    if (snk->kind == LEG_TCP) {
        if (snk->ops)
            snk->ops->shutdown(snk->io); /* close_notify, then the FIN */
        shutdown(snk->fd, SHUT_WR);
        snk->fin_out = true;
    } else if (snk->kind == LEG_STREAM && !snk->gone) {
        tun_t *t = tconn_tun(snk->c);
        if (!t) {
            splice_abort(s, TUN_ERR_TUNNEL_DEAD, "tunnel down");
            return;
        }
        int rc = tun_fin(t, snk->sid);
        if (rc == TUN_CLOSED)
            snk->gone = true;
        else if (rc < 0 && rc != -EALREADY) {
            splice_abort(s, TUN_ERR_INTERNAL, "cannot half-close the stream");
            return;
        }
        snk->fin_out = true;
    }
}

static void buf_append(struct dir *dr, const uint8_t *p, size_t len)
{
    if (dr->off && dr->off == dr->len)
        dr->off = dr->len = 0;
    if (dr->off) {
        memmove(dr->buf, dr->buf + dr->off, dr->len - dr->off);
        dr->len -= dr->off;
        dr->off = 0;
    }
    if (dr->cap < dr->len + len) { /* geometric: appends of a window cost O(window) */
        size_t cap = dr->cap ? dr->cap : SPLICE_CHUNK;
        while (cap < dr->len + len)
            cap *= 2;
        dr->buf = xrealloc(dr->buf, cap);
        dr->cap = cap;
    }
    memcpy(dr->buf + dr->len, p, len);
    dr->len += len;
}

/* A sealed record kept for a sink that had no credit for it: its length, then its bytes. */
static void buf_append_record(struct dir *dr, const uint8_t *p, size_t len)
{
    uint32_t l32 = (uint32_t)len;
    buf_append(dr, (const uint8_t *)&l32, sizeof(l32));
    buf_append(dr, p, len);
}

/* Drains dir d's buffer into its sink. true when the buffer is empty afterwards. */
static bool drain_buf(splice_t *s, int d)
{
    struct dir *dr = &s->dirs[d];
    if (s->legs[d].records && dr->off < dr->len) {
        /* Sealed records waiting for credit: lent to the sink's tunnel, which sends them
         * from here (tconn_lend_begin) rather than copying them a second time. */
        tconn_lend_t lent;
        bool stop = false;
        tconn_lend_begin(dr->buf + dr->off, dr->buf + dr->len, &lent);
        while (dr->off < dr->len) {
            uint32_t rl;
            memcpy(&rl, dr->buf + dr->off, sizeof(rl));
            ssize_t n = sink_take(s, d, dr->buf + dr->off + sizeof(rl), rl);
            if (n <= 0 || s->finished) {
                stop = true;
                break;
            }
            dr->off += sizeof(rl) + rl;
            dr->bytes += rl;
            source_consumed(s, d, rl);
        }
        tconn_lend_end(&lent);
        if (stop)
            return false;
    }
    while (dr->off < dr->len) {
        ssize_t n = sink_take(s, d, dr->buf + dr->off, dr->len - dr->off);
        if (n < 0 || s->finished)
            return false;
        if (n == 0)
            return false;
        dr->off += (size_t)n;
        dr->bytes += (uint64_t)n;
        source_consumed(s, d, (size_t)n);
    }
    dr->off = dr->len = 0;
    if (dr->buf && (s->legs[d].kind == LEG_TCP || dr->cap > SPLICE_CHUNK)) {
        free(dr->buf); /* an idle splice holds no buffer (or no more than a chunk) */
        dr->buf = NULL;
        dr->cap = 0;
    }
    return true;
}

static void pump(splice_t *s, int d)
{
    struct leg *src = &s->legs[d];
    if (s->finished || s->legs[1 - d].kind == LEG_NONE)
        return;
    for (int rounds = 0; rounds < 8; rounds++) {
        if (!drain_buf(s, d)) {
            if (src->kind == LEG_TCP && !s->finished)
                src_wait(s, src, 0);
            return;
        }
        if (src->kind == LEG_TCP && !src->eof_in) {
            if (!sink_ready(s, d)) {
                src_wait(s, src, 0);
                return;
            }
            struct dir *dr = &s->dirs[d];
            if (!dr->buf) {
                dr->buf = xmalloc(SPLICE_CHUNK);
                dr->cap = SPLICE_CHUNK;
            }
            if (src->ops) {
                ssize_t n = io_read(s, src, dr->buf, SPLICE_CHUNK);
                if (n > 0) {
                    dr->off = 0;
                    dr->len = (size_t)n;
                    continue;
                }
                if (n == SPLICE_IO_WANT_READ || n == SPLICE_IO_WANT_WRITE) {
                    src_wait(s, src, n == SPLICE_IO_WANT_READ ? EV_READ : EV_WRITE);
                    return;
                }
                if (n != SPLICE_IO_CLOSED) {
                    char why[96];
                    snprintf(why, sizeof(why), "%s: read failed", src->ops->name);
                    splice_abort(s, TUN_ERR_UNREACHABLE, why);
                    return;
                }
                src->eof_in = true;
                src_wait(s, src, 0);
                if (s->dirs[d].len == 0) {
                    forward_fin(s, d);
                    check_done(s);
                }
                return;
            }
            ssize_t n = recv(src->fd, dr->buf, SPLICE_CHUNK, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    src_wait(s, src, EV_READ);
                    return;
                }
                char why[96];
                snprintf(why, sizeof(why), "recv: %s", strerror(errno));
                splice_abort(s, TUN_ERR_UNREACHABLE, why);
                return;
            }
            if (n == 0) {
                src->eof_in = true;
                src_wait(s, src, 0);
            } else {
                dr->off = 0;
                dr->len = (size_t)n;
                continue;
            }
        }
        if (src->eof_in && s->dirs[d].len == 0) {
            forward_fin(s, d);
            check_done(s);
        }
        return;
    }
    /* Budget spent: let other sockets run. The last read may still sit in the buffer and the
     * source may stay quiet from now on (an echo client waiting for its answer), and a layer
     * may hold bytes the socket will not signal, so come back on the next loop iteration
     * whether or not the socket becomes readable. */
    if (src->kind == LEG_TCP && !src->eof_in) {
        src_wait(s, src, EV_READ);
        ev_feed_event(s->x->loop, &src->rio, EV_READ);
    }
}

/* ---- watchers --------------------------------------------------------------------------- */

/* Readiness of a TCP leg's socket, for whichever of its roles waits for it: writing first
 * (it frees room a read may need), then reading. */
static void on_tcp_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    splice_t *s = w->data;
    int i = (w == &s->legs[0].rio || w == &s->legs[0].wio) ? 0 : 1;
    struct leg *l = &s->legs[i];
    int ev = w == &l->rio ? EV_READ : EV_WRITE;
    bool rd = l->rd_need & ev;
    if (l->wr_need & ev) {
        snk_wait(s, l, 0);
        pump(s, 1 - i); /* the direction this leg is the sink of */
    }
    if (rd && !s->finished)
        pump(s, i);
}

static int leg_of(splice_t *s, tconn_t *c, uint64_t sid)
{
    for (int i = 0; i < 2; i++)
        if (s->legs[i].kind == LEG_STREAM && s->legs[i].c == c && s->legs[i].sid == sid)
            return i;
    return -1;
}

/* ---- public ----------------------------------------------------------------------------- */

splice_ctx_t *splice_ctx_new(struct ev_loop *loop)
{
    splice_ctx_t *x = xcalloc(1, sizeof(*x));
    x->loop = loop;
    ev_check_init(&x->reaper, on_reap);
    x->reaper.data = x;
    return x;
}

void splice_ctx_destroy(splice_ctx_t **p)
{
    splice_ctx_t *x = p ? *p : NULL;
    if (!x)
        return;
    while (x->live)
        splice_abort(x->live, TUN_ERR_SHUTTING_DOWN, "shutting down");
    on_reap(x->loop, &x->reaper, 0);
    free(x);
    *p = NULL;
}

void splice_ctx_tconn_drained(splice_ctx_t *x, tconn_t *c)
{
    /* Collect first: a pump may finish a splice, which moves it off the live list. */
    size_t n = 0, cap = 0;
    splice_t **v = NULL;
    for (splice_t *s = x->live; s; s = s->next)
        for (int i = 0; i < 2; i++)
            if (s->legs[i].kind == LEG_STREAM && s->legs[i].c == c && s->legs[i].wants_drain) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 16;
                    v = xrealloc(v, cap * sizeof(*v));
                }
                v[n++] = s;
                s->legs[i].wants_drain = false;
            }
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < 2; d++)
            if (!v[i]->finished)
                pump(v[i], d);
    free(v);
}

size_t splice_ctx_count(const splice_ctx_t *x)
{
    return x->count;
}

static splice_t *splice_alloc(splice_ctx_t *x, splice_done_fn done, void *ctx)
{
    splice_t *s = xcalloc(1, sizeof(*s));
    s->magic = SPLICE_MAGIC;
    s->x = x;
    s->done = done;
    s->ctx = ctx;
    s->legs[0].fd = s->legs[1].fd = -1;
    push_to(&x->live, s);
    x->count++;
    return s;
}

static void leg_set_tcp(splice_t *s, int i, int fd)
{
    struct leg *l = &s->legs[i];
    l->kind = LEG_TCP;
    l->fd = fd;
    ev_io_init(&l->rio, on_tcp_io, fd, EV_READ);
    ev_io_init(&l->wio, on_tcp_io, fd, EV_WRITE);
    l->rio.data = l->wio.data = s;
}

static void leg_set_stream(splice_t *s, int i, tconn_t *c, uint64_t sid)
{
    struct leg *l = &s->legs[i];
    l->kind = LEG_STREAM;
    l->c = c;
    l->sid = sid;
    tun_t *t = tconn_tun(c);
    tun_stream_info_t si;
    if (t) {
        tun_set_user(t, sid, s);
        l->records = tun_stream_get(t, sid, &si) == 0 && si.seal == TUN_SEAL_PASS;
    }
}

splice_t *splice_new_tcp(splice_ctx_t *x, int fd, splice_done_fn done, void *ctx)
{
    splice_t *s = splice_alloc(x, done, ctx);
    leg_set_tcp(s, 0, fd);
    return s;
}

splice_t *splice_new_tcp_io(splice_ctx_t *x, int fd, const splice_io_ops_t *ops, void *io,
                            splice_done_fn done, void *ctx)
{
    splice_t *s = splice_new_tcp(x, fd, done, ctx);
    s->legs[0].ops = ops;
    s->legs[0].io = io;
    return s;
}

splice_t *splice_new_stream(splice_ctx_t *x, tconn_t *c, uint64_t sid, splice_done_fn done,
                            void *ctx)
{
    splice_t *s = splice_alloc(x, done, ctx);
    leg_set_stream(s, 0, c, sid);
    return s;
}

void splice_attach_stream(splice_t *s, tconn_t *c, uint64_t sid)
{
    leg_set_stream(s, 1, c, sid);
    pump(s, 0);
    pump(s, 1);
}

void splice_attach_tcp(splice_t *s, int fd)
{
    leg_set_tcp(s, 1, fd);
    pump(s, 0);
    pump(s, 1);
}

bool splice_owns(const void *user)
{
    return user && *(const uint32_t *)user == SPLICE_MAGIC;
}

void splice_on_data(splice_t *s, tconn_t *c, uint64_t sid, const uint8_t *data, size_t len)
{
    int d = leg_of(s, c, sid);
    if (d < 0 || s->finished)
        return;
    struct dir *dr = &s->dirs[d];
    size_t took = 0;
    if (s->legs[d].records) { /* one sealed record: on whole now, or kept whole */
        if (dr->off == dr->len && s->legs[1 - d].kind != LEG_NONE) {
            ssize_t n = sink_take(s, d, data, len);
            if (n < 0 || s->finished)
                return;
            if ((size_t)n == len) {
                dr->bytes += len;
                source_consumed(s, d, len);
                return;
            }
            if (n > 0) { /* a sink that split a record (not a PASS stream): cannot go on */
                splice_abort(s, TUN_ERR_INTERNAL, "a sealed record was split");
                return;
            }
        }
        buf_append_record(dr, data, len);
        return;
    }
    if (dr->off == dr->len && s->legs[1 - d].kind != LEG_NONE) {
        ssize_t n = sink_take(s, d, data, len);
        if (n < 0 || s->finished)
            return;
        took = (size_t)n;
        dr->bytes += took;
        source_consumed(s, d, took);
    }
    if (took < len)
        buf_append(dr, data + took, len - took);
}

void splice_on_fin(splice_t *s, tconn_t *c, uint64_t sid)
{
    int d = leg_of(s, c, sid);
    if (d < 0 || s->finished)
        return;
    s->legs[d].eof_in = true;
    pump(s, d);
}

void splice_on_writable(splice_t *s, tconn_t *c, uint64_t sid)
{
    int k = leg_of(s, c, sid);
    if (k < 0 || s->finished)
        return;
    pump(s, 1 - k);
}

void splice_on_reset(splice_t *s, tconn_t *c, uint64_t sid, uint32_t code, const char *msg,
                     size_t msg_len)
{
    int k = leg_of(s, c, sid);
    if (k < 0 || s->finished)
        return;
    s->legs[k].gone = true;
    char why[200];
    snprintf(why, sizeof(why), "stream reset: %s%s%.*s", tun_code_name(code), msg_len ? ": " : "",
             (int)msg_len, msg ? msg : "");
    splice_abort(s, code, why);
}

void splice_on_closed(splice_t *s, tconn_t *c, uint64_t sid)
{
    int k = leg_of(s, c, sid);
    if (k < 0 || s->finished)
        return;
    s->legs[k].gone = true;
    check_done(s);
}

void splice_cb_data(void *ctx, tconn_t *c, uint64_t sid, void *user, const uint8_t *data,
                    size_t len)
{
    (void)ctx;
    if (splice_owns(user))
        splice_on_data(user, c, sid, data, len);
}

void splice_cb_fin(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    (void)ctx;
    if (splice_owns(user))
        splice_on_fin(user, c, sid);
}

void splice_cb_writable(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    (void)ctx;
    if (splice_owns(user))
        splice_on_writable(user, c, sid);
}

void splice_cb_closed(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    (void)ctx;
    if (splice_owns(user))
        splice_on_closed(user, c, sid);
}

void splice_ctx_dump(const splice_ctx_t *x)
{
    log_info("splice: %zu live", x->count);
    for (splice_t *s = x->live; s; s = s->next) {
        for (int i = 0; i < 2; i++) {
            const struct leg *l = &s->legs[i];
            const struct dir *dr = &s->dirs[i];
            if (l->kind == LEG_TCP) {
                log_info(
                    "splice %p leg %d tcp%s%s fd %d eof_in %d fin_out %d reading %d writing %d "
                    "rd_need %d wr_need %d held %zu moved %llu",
                    (void *)s, i, l->ops ? "+" : "", l->ops ? l->ops->name : "", l->fd, l->eof_in,
                    l->fin_out, ev_is_active(&l->rio), ev_is_active(&l->wio), l->rd_need,
                    l->wr_need, dr->len - dr->off, (unsigned long long)dr->bytes);
            } else if (l->kind == LEG_STREAM) {
                tun_stream_info_t si = {0};
                tun_t *t = tconn_tun(l->c);
                int rc = t ? tun_stream_get(t, l->sid, &si) : -EPIPE;
                log_info("splice %p leg %d stream %llu on %s rc %d eof_in %d fin_out %d gone %d "
                         "wants_drain %d congested %d queued %zu | state %d send_credit %u "
                         "recv_credit %u unconsumed %u ungranted %u window %u | held %zu moved "
                         "%llu",
                         (void *)s, i, (unsigned long long)l->sid, tconn_peer_addr(l->c), rc,
                         l->eof_in, l->fin_out, l->gone, l->wants_drain, tconn_congested(l->c),
                         tconn_queued(l->c), si.state, si.send_credit, si.recv_credit,
                         si.unconsumed, si.ungranted, si.window, dr->len - dr->off,
                         (unsigned long long)dr->bytes);
            }
        }
    }
}
