/* tconn: a tunnel over one TCP connection (see tconn.h for the contract).
 *
 * Reentrancy. Applications call into one connection from the callbacks of another (a relay
 * forwards DATA from one tunnel to the next), so nothing here reports a failure from inside
 * a call the application made: a write error only marks the connection failed and arms a
 * zero-delay timer, and on_down runs from that timer, at the top of the loop, where no other
 * callback of this connection is on the stack. Inside our own event handlers, every callback
 * may make the connection fail; handlers check c->state after each one.
 *
 * Writes are batched: records sealed during one loop iteration are flushed together by an
 * ev_prepare watcher just before the loop would block, so a burst of frames costs one write
 * and a lone small frame still leaves in the same iteration (no added latency). A queue past
 * TCONN_OUT_HIGH is flushed at once.
 *
 * The output queue is a list of segments over fixed chunks (no compaction: a queue that never
 * empties under load used to be moved to the front of its buffer again and again), sent with
 * one sendmsg of many iovecs. A segment may also BORROW bytes it does not own: a relay forwards
 * a sealed stream's record straight from the read buffer of the tunnel it came in on (only the
 * hop's head is sealed, the payload is not this hop's to touch), so the payload is not copied
 * in user space at all. Borrowing is allowed only while the source connection is inside its
 * record loop (rx_lo..rx_hi), and before that buffer is read into again every borrower sends
 * what it can and copies what is left into its own chunks (settle_borrowers): a borrowed
 * pointer never outlives the bytes it points to.
 *
 * Rekeying: after each record sealed, if the sending key reached its byte limit, a REKEY
 * record is queued right behind it (maybe_rekey); its age limit is one more deadline of the
 * timer. Never between tio_raw_reserve and tio_send_raw: the REKEY follows a seal, and the
 * core queues nothing between those two calls. */

#include "node/dataplane/tconn.h"

#include "common/netaddr.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "tunnel/secchan.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <sodium.h>

#define IN_CAP         (SC_HDR_LEN + SC_RECORD_MAX + (256u << 10)) /* bytes of the read buffer */
#define OUT_CHUNK      (256u << 10) /* bytes of an output chunk (a bigger record gets its own) */
#define OUT_IOV        64           /* segments per sendmsg */
#define BORROWERS_MAX  64           /* connections borrowing at once; more copy at once */
#define READ_BUDGET    (1u << 20)   /* bytes read per wake-up before letting others run */
#define IN_MIN_ROOM    (64u << 10)  /* bytes: below this room after the data, compact first */
#define CLOSE_FLUSH_MS 1000
#define OUT_IDLE_MS    1000 /* ms an empty output buffer past OUT_SLACK is kept */

enum state {
    ST_CONNECTING = 1, /* initiator: connect() in progress */
    ST_HANDSHAKE,      /* HELLO sent / awaited */
    ST_CONFIRMING,     /* responder: WELCOME sent, waiting for the initiator's first record */
    ST_UP,
    ST_CLOSING, /* tconn_close: flushing, then down */
    ST_FAILED,  /* failure noted; on_down pending from the timer */
    ST_DOWN,    /* on_down delivered */
};

struct tconn {
    struct ev_loop *loop;
    int fd;
    enum state state;
    bool initiator;
    ev_io rio, wio;
    ev_timer timer;     /* handshake deadline, tun deadline, deferred failure, close flush */
    ev_prepare flusher; /* writes what this iteration queued */
    sc_t sc;
    tconn_keys_t keys;
    tun_config_t tcfg;
    tun_t *tun;
    tconn_cbs_t cbs;
    char why[160]; /* reason of the failure, for on_down */
    char peer_addr[64];
    uint64_t hs_start_ms, hs_deadline_ms, close_deadline_ms;
    uint32_t hs_rtt_us;
    uint64_t hs_start_us; /* us (monotonic): HELLO sent */
    bool congested;       /* went past TCONN_OUT_HIGH; on_drain when below TCONN_OUT_LOW */
    bool tun_died;        /* on_dead was called: fail after the current event */
    bool split_ok;        /* the peer reads SPLIT records (tconn_set_split) */
    int tun_dead_reason;
    uint8_t *in;
    size_t in_off, in_len; /* in[in_off .. in_len): received, not yet a whole record */
    /* Output: segs[seg_head .. seg_n) in order, over chunks (see the top of the file). */
    struct oseg *segs;
    size_t seg_head, seg_n, seg_cap;
    struct ochunk *tail;    /* the chunk appended to */
    struct ochunk *spare;   /* an emptied chunk kept for the next one */
    size_t out_bytes;       /* queued, not yet sent */
    size_t borrowed;        /* of which in borrowed segments */
    bool borrowing;         /* listed in borrowers[] */
    uint64_t split_records; /* SPLIT records sent */
    uint64_t zc_bytes;      /* payload bytes sent from another connection's buffer, uncopied */
    uint64_t out_empty_ms;  /* ms (monotonic): the output last emptied with chunks kept; 0 = none */
};

struct ochunk {
    size_t cap, used; /* data[0 .. used) handed out */
    size_t pending;   /* of which queued and not sent: 0 and not the tail = free */
    uint8_t data[];
};

struct oseg {
    const uint8_t *p;
    size_t len;
    struct ochunk *ch; /* the chunk p is in; NULL: borrowed */
};

/* The read window others may borrow from (the buffer of the connection whose records are being
 * handled), and who borrowed. One loop per thread; popd runs one loop. */
static __thread const uint8_t *rx_lo, *rx_hi;
static __thread tconn_t *borrowers[BORROWERS_MAX];
static __thread size_t nborrowers;

static void rearm(tconn_t *c);
static void flush(tconn_t *c);
static void maybe_rekey(tconn_t *c, uint64_t now_ms);

/* Marks the connection failed; on_down comes from the timer. Safe anywhere. */
static void fail(tconn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(tconn_t *c, const char *fmt, ...)
{
    if (c->state == ST_FAILED || c->state == ST_DOWN)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof(c->why), fmt, ap);
    va_end(ap);
    c->state = ST_FAILED;
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_prepare_stop(c->loop, &c->flusher);
    ev_timer_stop(c->loop, &c->timer);
    ev_timer_set(&c->timer, 0., 0.);
    ev_timer_start(c->loop, &c->timer);
}

/* ---- output ---------------------------------------------------------------------------- */

static void chunk_drop(tconn_t *c, struct ochunk *ch)
{
    if (!c->spare) {
        c->spare = ch;
    } else if (ch->cap > c->spare->cap) {
        free(c->spare);
        c->spare = ch;
    } else {
        free(ch);
    }
}

/* Room for n contiguous bytes at the end of the queue; out_commit queues what was written. */
static uint8_t *out_reserve(tconn_t *c, size_t n)
{
    struct ochunk *t = c->tail;
    if (t && t->pending == 0)
        t->used = 0; /* all sent: start over */
    if (t && t->cap - t->used >= n)
        return t->data + t->used;
    struct ochunk *ch = NULL;
    if (c->spare && c->spare->cap >= n) {
        ch = c->spare;
        c->spare = NULL;
    } else {
        size_t cap = n > OUT_CHUNK ? n : OUT_CHUNK;
        ch = xmalloc(sizeof(*ch) + cap);
        ch->cap = cap;
    }
    ch->used = ch->pending = 0;
    if (t && t->pending == 0)
        chunk_drop(c, t);
    c->tail = ch;
    return ch->data;
}

static struct oseg *seg_push(tconn_t *c)
{
    if (c->seg_n == c->seg_cap) {
        if (c->seg_head) {
            memmove(c->segs, c->segs + c->seg_head, (c->seg_n - c->seg_head) * sizeof(*c->segs));
            c->seg_n -= c->seg_head;
            c->seg_head = 0;
        }
        if (c->seg_n == c->seg_cap) {
            c->seg_cap = c->seg_cap ? 2 * c->seg_cap : 16;
            c->segs = xrealloc(c->segs, c->seg_cap * sizeof(*c->segs));
        }
    }
    return &c->segs[c->seg_n++];
}

/* Queues the n bytes just written at out_reserve's pointer. */
static void out_commit(tconn_t *c, size_t n)
{
    struct ochunk *t = c->tail;
    uint8_t *p = t->data + t->used;
    struct oseg *last = c->seg_n > c->seg_head ? &c->segs[c->seg_n - 1] : NULL;
    if (last && last->ch == t && last->p + last->len == p) {
        last->len += n;
    } else {
        struct oseg *g = seg_push(c);
        *g = (struct oseg){p, n, t};
    }
    t->used += n;
    t->pending += n;
    c->out_bytes += n;
}

/* Copies the borrowed segments into our own chunks, in place in the queue. */
static void unborrow(tconn_t *c)
{
    for (size_t i = c->seg_head; i < c->seg_n && c->borrowed; i++) {
        struct oseg *g = &c->segs[i];
        if (g->ch)
            continue;
        uint8_t *dst = out_reserve(c, g->len);
        memcpy(dst, g->p, g->len);
        g->p = dst;
        g->ch = c->tail;
        c->tail->used += g->len;
        c->tail->pending += g->len;
        c->borrowed -= g->len;
    }
    c->borrowed = 0;
}

/* Queues n bytes at p, which stay where they are until settle_borrowers. */
static void out_borrow(tconn_t *c, const uint8_t *p, size_t n)
{
    struct oseg *g = seg_push(c);
    *g = (struct oseg){p, n, NULL};
    c->out_bytes += n;
    c->borrowed += n;
    c->zc_bytes += n;
    if (c->borrowing)
        return;
    if (nborrowers == BORROWERS_MAX) {
        unborrow(c);
        return;
    }
    borrowers[nborrowers++] = c;
    c->borrowing = true;
}

static bool can_borrow(const uint8_t *p, size_t n)
{
    return rx_lo && p >= rx_lo && p <= rx_hi && n <= (size_t)(rx_hi - p);
}

/* The source's buffer is about to be reused: every borrower sends what it can now and keeps a
 * copy of the rest. */
static void settle_borrowers(void)
{
    rx_lo = rx_hi = NULL;
    while (nborrowers) {
        tconn_t *b = borrowers[--nborrowers];
        if (!b)
            continue; /* destroyed meanwhile */
        b->borrowing = false;
        if (b->state == ST_UP || b->state == ST_CLOSING)
            flush(b);
        if (b->borrowed)
            unborrow(b);
    }
}

void tconn_lend_begin(const uint8_t *lo, const uint8_t *hi, tconn_lend_t *saved)
{
    saved->lo = rx_lo;
    saved->hi = rx_hi;
    rx_lo = lo;
    rx_hi = hi;
}

void tconn_lend_end(const tconn_lend_t *saved)
{
    settle_borrowers();
    rx_lo = saved->lo;
    rx_hi = saved->hi;
}

/* Marks the sent bytes off the front of the queue. */
static void out_sent(tconn_t *c, size_t n)
{
    c->out_bytes -= n;
    while (n) {
        struct oseg *g = &c->segs[c->seg_head];
        size_t k = n < g->len ? n : g->len;
        if (g->ch) {
            g->ch->pending -= k;
            if (g->ch->pending == 0 && g->ch != c->tail)
                chunk_drop(c, g->ch);
        } else {
            c->borrowed -= k;
        }
        g->p += k;
        g->len -= k;
        n -= k;
        if (g->len == 0)
            c->seg_head++;
    }
    if (c->seg_head == c->seg_n)
        c->seg_head = c->seg_n = 0;
}

static void out_free(tconn_t *c)
{
    for (size_t i = c->seg_head; i < c->seg_n; i++) {
        struct ochunk *ch = c->segs[i].ch;
        if (ch && ch != c->tail && (ch->pending -= c->segs[i].len) == 0)
            free(ch);
    }
    free(c->tail);
    free(c->spare);
    free(c->segs);
    c->tail = c->spare = NULL;
    c->segs = NULL;
    c->seg_head = c->seg_n = c->seg_cap = 0;
    c->out_bytes = c->borrowed = 0;
}

/* After queueing: flush at once past TCONN_OUT_HIGH, else before the loop blocks. */
static void kick(tconn_t *c)
{
    if (c->state == ST_FAILED || c->state == ST_DOWN)
        return;
    if (c->out_bytes > TCONN_OUT_HIGH) {
        c->congested = true;
        flush(c);
    } else {
        ev_prepare_start(c->loop, &c->flusher);
    }
}

static void queued(tconn_t *c, size_t n)
{
    out_commit(c, n);
    kick(c);
}

/* Seals one message [kind][pieces...] into the output queue. */
static int seal_msg(tconn_t *c, uint8_t kind, const uint8_t *a, size_t alen, const uint8_t *b,
                    size_t blen)
{
    if (1 + alen + blen > SC_PLAIN_MAX)
        return -EMSGSIZE;
    sc_piece_t pieces[3] = {{&kind, 1}, {a, alen}, {b, blen}};
    uint8_t *dst = out_reserve(c, 1 + alen + blen + SC_OVERHEAD);
    ssize_t n = sc_seal(&c->sc, pieces, blen ? 3 : 2, dst);
    if (n < 0)
        return (int)n;
    queued(c, (size_t)n);
    maybe_rekey(c, 0);
    return 0;
}

static void flush(tconn_t *c)
{
    while (c->out_bytes) {
        struct iovec iov[OUT_IOV];
        int k = 0;
        for (size_t i = c->seg_head; i < c->seg_n && k < OUT_IOV; i++, k++)
            iov[k] = (struct iovec){(void *)c->segs[i].p, c->segs[i].len};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)k};
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(c->loop, &c->wio);
                break;
            }
            fail(c, "send: %s", strerror(errno));
            return;
        }
        out_sent(c, (size_t)n);
    }
    ev_prepare_stop(c->loop, &c->flusher);
    size_t left = c->out_bytes;
    if (left == 0) {
        ev_io_stop(c->loop, &c->wio);
        /* The chunks go back once the queue has stayed empty for OUT_IDLE_MS (on_timer), so
         * an idle tunnel stays small; freeing them as soon as it empties cost a bulk transfer
         * a fresh mapping, page faults and zeroed pages on every refill (8% of a relaying
         * PoP's CPU). */
        if (c->tail || c->spare)
            c->out_empty_ms = clock_mono_ms(); /* the last time it emptied */
        if (c->state == ST_CLOSING) {
            char why[sizeof(c->why)];
            memcpy(why, c->why, sizeof(why)); /* fail() formats into c->why */
            fail(c, "%s", why);
            return;
        }
    }
    if (c->congested && left < TCONN_OUT_LOW && c->state == ST_UP) {
        c->congested = false;
        if (c->cbs.on_drain)
            c->cbs.on_drain(c->cbs.ctx, c);
    }
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)loop, (void)revents;
    flush(w->data);
}

/* ---- tun io ----------------------------------------------------------------------------- */

static void tio_send(void *ctx, const uint8_t *head, size_t hl, const uint8_t *body, size_t bl)
{
    tconn_t *c = ctx;
    if (c->state != ST_UP && c->state != ST_CLOSING)
        return;
    int rc = seal_msg(c, TCONN_MSG_FRAME, head, hl, body, bl);
    if (rc)
        fail(c, "cannot seal a frame: %s", strerror(-rc));
}

/* A sealed stream's record: only the frame's head is sealed for this hop when the peer reads
 * SPLIT records (the record is already sealed end to end). */
static void tio_send_raw(void *ctx, const uint8_t *head, size_t hl, const uint8_t *body,
                         size_t bl)
{
    tconn_t *c = ctx;
    if (c->state != ST_UP && c->state != ST_CLOSING)
        return;
    if (!c->split_ok || bl == 0 || 1 + hl > SC_SPLIT_HEAD_MAX) {
        tio_send(ctx, head, hl, body, bl);
        return;
    }
    uint8_t kind = TCONN_MSG_FRAME;
    sc_piece_t pieces[2] = {{&kind, 1}, {head, hl}};
    if (can_borrow(body, bl)) {
        /* a relayed record, still in the read buffer it arrived in: sent from there */
        uint8_t *dst = out_reserve(c, SC_HDR_LEN + SC_SPLIT_SKIP + 1 + hl);
        ssize_t n = sc_seal_split_head(&c->sc, pieces, 2, bl, dst);
        if (n < 0) {
            fail(c, "cannot seal a frame: %s", strerror((int)-n));
            return;
        }
        c->split_records++;
        out_commit(c, (size_t)n);
        out_borrow(c, body, bl);
        kick(c);
        maybe_rekey(c, 0);
        return;
    }
    /* out_reserve keeps what raw_reserve gave: nothing was queued in between */
    uint8_t *dst = out_reserve(c, SC_HDR_LEN + SC_SPLIT_SKIP + 1 + hl + bl);
    ssize_t n = sc_seal_split(&c->sc, pieces, 2, body, bl, dst);
    if (n < 0) {
        fail(c, "cannot seal a frame: %s", strerror((int)-n));
        return;
    }
    c->split_records++;
    queued(c, (size_t)n);
    maybe_rekey(c, 0);
}

/* Queues a REKEY record when the sending key is due (sc_rekey_due). After a seal now_ms is 0:
 * only the byte limit is checked there, so a record costs no clock read; the age limit is the
 * timer's (now_ms set). */
static void maybe_rekey(tconn_t *c, uint64_t now_ms)
{
    if ((c->state != ST_UP && c->state != ST_CLOSING) || !sc_rekey_due(&c->sc, now_ms))
        return;
    uint8_t *dst = out_reserve(c, SC_REKEY_LEN);
    ssize_t n = sc_seal_rekey(&c->sc, now_ms ? now_ms : clock_mono_ms(), dst);
    if (n < 0) {
        fail(c, "cannot seal a REKEY record: %s", strerror((int)-n));
        return;
    }
    queued(c, (size_t)n);
}

/* The place where tio_send_raw will put a sealed record of body_len bytes after a frame head of
 * head_len: the tun core seals the record there, and the SPLIT record is built around it. */
static uint8_t *tio_raw_reserve(void *ctx, size_t hl, size_t bl)
{
    tconn_t *c = ctx;
    if (!c->split_ok || 1 + hl > SC_SPLIT_HEAD_MAX || (c->state != ST_UP && c->state != ST_CLOSING))
        return NULL;
    uint8_t *dst = out_reserve(c, SC_HDR_LEN + SC_SPLIT_SKIP + 1 + hl + bl);
    return dst + SC_HDR_LEN + SC_SPLIT_SKIP + 1 + hl;
}

static void tio_on_open(void *ctx, uint64_t sid, const uint8_t *target, size_t len)
{
    tconn_t *c = ctx;
    if (c->state != ST_UP) { /* closing: the peer should open elsewhere */
        tun_reject(c->tun, sid, TUN_ERR_SHUTTING_DOWN, "tunnel closing");
        return;
    }
    if (c->cbs.on_open)
        c->cbs.on_open(c->cbs.ctx, c, sid, target, len);
    else
        tun_reject(c->tun, sid, TUN_ERR_REFUSED, "this end accepts no streams");
}
static void tio_on_open_ok(void *ctx, uint64_t sid, void *user)
{
    tconn_t *c = ctx;
    if (c->cbs.on_open_ok)
        c->cbs.on_open_ok(c->cbs.ctx, c, sid, user);
}
static void tio_on_data(void *ctx, uint64_t sid, void *user, const uint8_t *d, size_t len)
{
    tconn_t *c = ctx;
    if (c->cbs.on_data)
        c->cbs.on_data(c->cbs.ctx, c, sid, user, d, len);
}
static void tio_on_fin(void *ctx, uint64_t sid, void *user)
{
    tconn_t *c = ctx;
    if (c->cbs.on_fin)
        c->cbs.on_fin(c->cbs.ctx, c, sid, user);
}
static void tio_on_writable(void *ctx, uint64_t sid, void *user)
{
    tconn_t *c = ctx;
    if (c->cbs.on_writable)
        c->cbs.on_writable(c->cbs.ctx, c, sid, user);
}
static void tio_on_reset(void *ctx, uint64_t sid, void *user, uint32_t code, bool remote,
                         const char *msg, size_t ml)
{
    tconn_t *c = ctx;
    if (c->cbs.on_reset)
        c->cbs.on_reset(c->cbs.ctx, c, sid, user, code, remote, msg, ml);
}
static void tio_on_closed(void *ctx, uint64_t sid, void *user)
{
    tconn_t *c = ctx;
    if (c->cbs.on_closed)
        c->cbs.on_closed(c->cbs.ctx, c, sid, user);
}
static void tio_on_dead(void *ctx, int reason)
{
    tconn_t *c = ctx;
    c->tun_died = true;
    c->tun_dead_reason = reason;
}

/* ---- input ------------------------------------------------------------------------------ */

static int become_up(tconn_t *c, const uint8_t *payload, size_t plen)
{
    sc_rekey_config(&c->sc, c->keys.rekey_bytes, c->keys.rekey_ms, clock_mono_ms());
    tun_io_t io = {.ctx = c,
                   .send = tio_send,
                   .send_raw = tio_send_raw,
                   .raw_reserve = tio_raw_reserve,
                   .on_open = tio_on_open,
                   .on_open_ok = tio_on_open_ok,
                   .on_data = tio_on_data,
                   .on_fin = tio_on_fin,
                   .on_writable = tio_on_writable,
                   .on_reset = tio_on_reset,
                   .on_closed = tio_on_closed,
                   .on_dead = tio_on_dead};
    c->tun = tun_new(&c->tcfg, &io, clock_mono_ms());
    if (!c->tun) {
        fail(c, "cannot create the tunnel core: %s", strerror(errno));
        return -1;
    }
    c->state = ST_UP;
    if (c->cbs.on_up)
        c->cbs.on_up(c->cbs.ctx, c, payload, plen);
    return c->state == ST_UP ? 0 : -1;
}

/* One whole record: hdr then body (len bytes, decrypted in place). */
static void handle_record(tconn_t *c, uint8_t type, uint8_t *hdr, uint8_t *body, size_t len)
{
    if (c->state == ST_HANDSHAKE && c->initiator) {
        if (type != SC_REC_WELCOME) {
            fail(c, "handshake: expected WELCOME, got record type %u", type);
            return;
        }
        const uint8_t *p;
        size_t pl;
        if (sc_initiator_finish(&c->sc, body, len, &p, &pl)) {
            fail(c, "handshake: WELCOME not authentic (the PoP's key is not the one we know)");
            return;
        }
        c->hs_rtt_us = (uint32_t)(clock_mono_us() - c->hs_start_us);
        become_up(c, p, pl);
        return;
    }
    if (c->state == ST_HANDSHAKE) {
        if (type != SC_REC_HELLO) {
            fail(c, "handshake: expected HELLO, got record type %u", type);
            return;
        }
        const uint8_t *p;
        size_t pl;
        int rc = sc_accept(&c->sc, c->keys.pk, c->keys.sk, body, len, &p, &pl);
        if (rc) {
            fail(c, "handshake: %s",
                 rc == -ENOTSUP ? "no cipher suite in common"
                                : "HELLO malformed or not for our key");
            return;
        }
        uint8_t reply[SC_PAYLOAD_MAX];
        size_t rl = sizeof(reply);
        rc = c->cbs.admit ? c->cbs.admit(c->cbs.ctx, c, c->sc.remote_pk, p, pl, reply, &rl)
                          : -EACCES;
        if (c->state != ST_HANDSHAKE)
            return;
        if (rc) {
            fail(c, "refused by the application: %s", strerror(-rc));
            return;
        }
        uint8_t *dst = out_reserve(c, SC_WELCOME_MAX);
        int n = sc_respond(&c->sc, reply, rl, dst);
        if (n < 0) {
            fail(c, "handshake: cannot answer: %s", strerror(-n));
            return;
        }
        queued(c, (size_t)n);
        c->state = ST_CONFIRMING;
        return;
    }
    if (type == SC_REC_SPLIT) {
        size_t pl, hl;
        if (c->state != ST_UP && c->state != ST_CLOSING) {
            fail(c, "protocol: a SPLIT record before the channel was confirmed");
            return;
        }
        if (sc_open_split(&c->sc, hdr, body, len, &pl, &hl)) {
            fail(c, "protocol: a record failed authentication");
            return;
        }
        uint8_t *m = body + SC_SPLIT_SKIP;
        if (m[0] != TCONN_MSG_FRAME) { /* only a tunnel frame's payload may come unsealed */
            fail(c, "protocol: a SPLIT record of message kind %u", m[0]);
            return;
        }
        tun_receive_raw(c->tun, m + 1, pl - 1, clock_mono_ms());
        if (c->tun_died)
            fail(c, "tunnel dead: %s", tun_dead_reason_name(c->tun_dead_reason));
        return;
    }
    if (type == SC_REC_REKEY) {
        if (c->state != ST_UP && c->state != ST_CLOSING) {
            fail(c, "protocol: a REKEY record before the channel was confirmed");
            return;
        }
        int rc = sc_open_rekey(&c->sc, hdr, body, len);
        if (rc == -ENOTSUP)
            fail(c, "protocol: a REKEY record, but rekeying was not agreed in the handshake");
        else if (rc)
            fail(c, "protocol: a REKEY record failed authentication (forged, replayed or out "
                    "of order)");
        return;
    }
    if (type != SC_REC_DATA) {
        fail(c, "protocol: handshake record type %u after the handshake", type);
        return;
    }
    size_t pl;
    if (sc_open(&c->sc, hdr, body, len, &pl) || pl < 1) {
        fail(c, "protocol: a record failed authentication");
        return;
    }
    if (c->state == ST_CONFIRMING && become_up(c, NULL, 0))
        return; /* the peer holds the session keys: only now is it who the HELLO said */
    if (body[0] == TCONN_MSG_FRAME) {
        int rc = tun_receive(c->tun, body + 1, pl - 1, clock_mono_ms());
        (void)rc; /* malformed frames are counted by the core; death is seen via on_dead */
    } else if (body[0] == TCONN_MSG_CTL) {
        if (c->cbs.on_ctl)
            c->cbs.on_ctl(c->cbs.ctx, c, body + 1, pl - 1);
    } else {
        log_debug("tconn %s: message of unknown kind %u ignored", c->peer_addr, body[0]);
    }
    if (c->tun_died)
        fail(c, "tunnel dead: %s", tun_dead_reason_name(c->tun_dead_reason));
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    tconn_t *c = w->data;
    size_t budget = READ_BUDGET;
    while (budget > 0 && (c->state == ST_HANDSHAKE || c->state == ST_CONFIRMING ||
                          c->state == ST_UP || c->state == ST_CLOSING)) {
        /* The unread part (at most one partial record) moves to the front only when the room
         * after it runs short, not after every read: at the egress of a relayed stream that
         * move was a fifth of a copy per byte carried. */
        if (IN_CAP - c->in_len < IN_MIN_ROOM && c->in_off) {
            memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
            c->in_len -= c->in_off;
            c->in_off = 0;
        }
        ssize_t n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            fail(c, "recv: %s", strerror(errno));
            break;
        }
        if (n == 0) {
            fail(c, "connection closed by the peer");
            break;
        }
        budget = (size_t)n >= budget ? 0 : budget - (size_t)n;
        c->in_len += (size_t)n;
        size_t pos = c->in_off;
        tconn_lend_t lent;
        tconn_lend_begin(c->in + pos, c->in + c->in_len, &lent);
        while (c->in_len - pos >= SC_HDR_LEN &&
               (c->state == ST_HANDSHAKE || c->state == ST_CONFIRMING || c->state == ST_UP ||
                c->state == ST_CLOSING)) {
            uint8_t type;
            uint32_t len;
            if (sc_parse_header(c->in + pos, &type, &len)) {
                fail(c, "protocol: bad record header (type %u, length %u)", c->in[pos],
                     (unsigned)((c->in[pos + 1] << 16) | (c->in[pos + 2] << 8) | c->in[pos + 3]));
                break;
            }
            if (c->in_len - pos - SC_HDR_LEN < len)
                break;
            handle_record(c, type, c->in + pos, c->in + pos + SC_HDR_LEN, len);
            pos += SC_HDR_LEN + len;
        }
        tconn_lend_end(&lent); /* before this buffer is read into or moved again */
        c->in_off = pos;
        if (c->in_off == c->in_len)
            c->in_off = c->in_len = 0;
    }
    if (c->state == ST_UP || c->state == ST_HANDSHAKE || c->state == ST_CONFIRMING ||
        c->state == ST_CLOSING)
        rearm(c);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    tconn_t *c = w->data;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            fail(c, "connect to %s: %s", c->peer_addr, strerror(err));
            return;
        }
        c->state = ST_HANDSHAKE;
        c->hs_start_us = clock_mono_us();
        ev_io_start(c->loop, &c->rio);
    }
    flush(c);
}

/* ---- timer ------------------------------------------------------------------------------ */

static void deliver_down(tconn_t *c)
{
    c->state = ST_DOWN;
    if (c->tun && !tun_is_dead(c->tun))
        tun_kill(c->tun); /* every stream hears on_reset(TUNNEL_DEAD) before on_down */
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    if (c->cbs.on_down)
        c->cbs.on_down(c->cbs.ctx, c, c->why);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    tconn_t *c = w->data;
    uint64_t now = clock_mono_ms();
    switch (c->state) {
    case ST_FAILED:
        deliver_down(c);
        return;
    case ST_CONNECTING:
    case ST_HANDSHAKE:
    case ST_CONFIRMING:
        if (now >= c->hs_deadline_ms) {
            fail(c, "handshake with %s timed out after %u ms", c->peer_addr, TCONN_HANDSHAKE_MS);
            return;
        }
        break;
    case ST_CLOSING:
        if (now >= c->close_deadline_ms) {
            char why[sizeof(c->why)];
            memcpy(why, c->why, sizeof(why));
            fail(c, "%s", why);
            return;
        }
        break;
    case ST_UP: {
        /* Bytes already in the socket were received, whatever the loop was busy with: read
         * them before the core judges the peer silent. A loop held up for a second (a burst of
         * thousands of connections on a loaded machine) used to declare healthy tunnels dead
         * with their heartbeats sitting unread in the kernel. */
        int avail = 0;
        if (ioctl(c->fd, FIONREAD, &avail) == 0 && avail > 0) {
            on_read(c->loop, &c->rio, EV_READ);
            if (c->state != ST_UP)
                return;
            now = clock_mono_ms();
        }
        tun_tick(c->tun, now);
        if (c->tun_died) {
            fail(c, "tunnel dead: %s", tun_dead_reason_name(c->tun_dead_reason));
            return;
        }
        maybe_rekey(c, now);
        if (c->state != ST_UP)
            return;
        if (c->out_empty_ms && c->out_bytes == 0 && now - c->out_empty_ms >= OUT_IDLE_MS) {
            out_free(c); /* idle for a second: see flush */
            c->out_empty_ms = 0;
        }
        break;
    }
    case ST_DOWN:
        return;
    }
    rearm(c);
}

static void rearm(tconn_t *c)
{
    uint64_t now = clock_mono_ms(), at;
    switch (c->state) {
    case ST_CONNECTING:
    case ST_HANDSHAKE:
    case ST_CONFIRMING:
        at = c->hs_deadline_ms;
        break;
    case ST_UP: {
        at = tun_next_deadline(c->tun);
        uint64_t rk = sc_rekey_deadline(&c->sc);
        at = rk < at ? rk : at;
        break;
    }
    case ST_CLOSING:
        at = c->close_deadline_ms;
        break;
    default:
        return;
    }
    double d = at > now ? (double)(at - now) / 1000.0 : 0.;
    ev_timer_stop(c->loop, &c->timer);
    ev_timer_set(&c->timer, d, 0.);
    ev_timer_start(c->loop, &c->timer);
}

/* ---- life ------------------------------------------------------------------------------- */

static void tune_socket(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
}

static tconn_t *conn_new(struct ev_loop *loop, int fd, const tconn_keys_t *keys,
                         const tun_config_t *tcfg, const tconn_cbs_t *cbs)
{
    tconn_t *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    c->fd = fd;
    c->keys = *keys;
    c->tcfg = *tcfg;
    c->cbs = *cbs;
    c->in = xmalloc(IN_CAP);
    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_init(&c->timer, on_timer);
    ev_prepare_init(&c->flusher, on_prepare);
    c->rio.data = c->wio.data = c->timer.data = c->flusher.data = c;
    c->hs_deadline_ms = clock_mono_ms() + TCONN_HANDSHAKE_MS;
    tune_socket(fd);
    return c;
}

tconn_t *tconn_dial(struct ev_loop *loop, const char *addr, const tconn_keys_t *keys,
                    const uint8_t remote_pk[32], const uint8_t *payload, size_t plen,
                    const tun_config_t *tcfg, const tconn_cbs_t *cbs)
{
    struct sockaddr_storage ss;
    unsigned sl;
    if (netaddr_sockaddr(addr, &ss, &sl) || plen > SC_PAYLOAD_MAX) {
        errno = EINVAL;
        return NULL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    tconn_t *c = conn_new(loop, fd, keys, tcfg, cbs);
    c->initiator = true;
    c->tcfg.role = TUN_INITIATOR;
    snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", addr);
    uint8_t *dst = out_reserve(c, SC_HELLO_MAX);
    uint64_t last = 0, *lastp = keys->hello_ts_last ? keys->hello_ts_last : &last;
    int n = sc_initiate(&c->sc, keys->pk, keys->sk, remote_pk, payload, plen, sc_hello_clock(lastp),
                        dst);
    if (n < 0) {
        int e = -n;
        tconn_destroy(&c);
        errno = e;
        return NULL;
    }
    out_commit(c, (size_t)n); /* sent once connected */
    c->state = ST_CONNECTING;
    if (connect(fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS) {
        fail(c, "connect to %s: %s", addr, strerror(errno));
        return c;
    }
    ev_io_start(loop, &c->wio);
    rearm(c);
    return c;
}

tconn_t *tconn_accept(struct ev_loop *loop, int fd, const tconn_keys_t *keys,
                      const tun_config_t *tcfg, const tconn_cbs_t *cbs)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return NULL;
    tconn_t *c = conn_new(loop, fd, keys, tcfg, cbs);
    c->tcfg.role = TUN_ACCEPTOR;
    c->state = ST_HANDSHAKE;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        netaddr_format((const struct sockaddr *)&ss, c->peer_addr, sizeof(c->peer_addr));
    else
        snprintf(c->peer_addr, sizeof(c->peer_addr), "?");
    ev_io_start(loop, &c->rio);
    rearm(c);
    return c;
}

void tconn_destroy(tconn_t **cp)
{
    tconn_t *c = cp ? *cp : NULL;
    if (!c)
        return;
    ev_io_stop(c->loop, &c->rio);
    ev_io_stop(c->loop, &c->wio);
    ev_timer_stop(c->loop, &c->timer);
    ev_prepare_stop(c->loop, &c->flusher);
    if (c->fd >= 0)
        close(c->fd);
    tun_destroy(&c->tun);
    sc_wipe(&c->sc);
    sodium_memzero(&c->keys, sizeof(c->keys));
    for (size_t i = 0; i < nborrowers; i++)
        if (borrowers[i] == c)
            borrowers[i] = NULL;
    free(c->in);
    out_free(c);
    free(c);
    *cp = NULL;
}

void tconn_close(tconn_t *c, const char *why)
{
    if (c->state == ST_FAILED || c->state == ST_DOWN || c->state == ST_CLOSING)
        return;
    if (c->state != ST_UP) {
        fail(c, "%s", why);
        return;
    }
    snprintf(c->why, sizeof(c->why), "%s", why);
    tun_reset_all(c->tun, TUN_ERR_SHUTTING_DOWN);
    c->state = ST_CLOSING;
    c->close_deadline_ms = clock_mono_ms() + CLOSE_FLUSH_MS;
    ev_prepare_start(c->loop, &c->flusher);
    rearm(c);
}

bool tconn_congested(const tconn_t *c)
{
    return c->congested || c->state != ST_UP;
}

tun_t *tconn_tun(tconn_t *c)
{
    /* Closing still has a live core (its streams were reset; frames in flight still arrive
     * and are answered), so callbacks during the flush can use it. */
    return c->state == ST_UP || c->state == ST_CLOSING ? c->tun : NULL;
}

void tconn_kick(tconn_t *c)
{
    if (c->state == ST_UP)
        rearm(c);
}

int tconn_send_ctl(tconn_t *c, const uint8_t *msg, size_t len)
{
    if (c->state != ST_UP)
        return -EPIPE;
    return seal_msg(c, TCONN_MSG_CTL, msg, len, NULL, 0);
}

const char *tconn_peer_addr(const tconn_t *c)
{
    return c->peer_addr;
}

uint64_t tconn_hello_ts(const tconn_t *c)
{
    return c->initiator ? 0 : c->sc.hello_ts;
}

uint32_t tconn_handshake_rtt_us(const tconn_t *c)
{
    return c->hs_rtt_us;
}

uint32_t tconn_rtt_us(const tconn_t *c)
{
    if (c->tun) {
        tun_stats_t st;
        tun_get_stats(c->tun, &st);
        if (st.pongs_received) /* heartbeats are timed in ms: below 1 ms reads as 0 */
            return st.rtt_recent_min_us ? st.rtt_recent_min_us : 500;
    }
    return c->hs_rtt_us;
}

size_t tconn_queued(const tconn_t *c)
{
    return c->out_bytes;
}

uint64_t tconn_zc_bytes(const tconn_t *c)
{
    return c->zc_bytes;
}

void tconn_set_split(tconn_t *c, bool on)
{
    c->split_ok = on;
}

uint64_t tconn_split_records(const tconn_t *c)
{
    return c->split_records;
}

bool tconn_rekeys(const tconn_t *c, uint64_t *sent, uint64_t *received)
{
    *sent = c->sc.tx_rekeys;
    *received = c->sc.rx_rekeys;
    return sc_rekey_agreed(&c->sc);
}

/* A test knob's value: a positive number, or 0 (unset or not a number: said in the log). */
static uint64_t test_knob(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return 0;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno || x == 0) {
        log_warn("tconn: ignoring %s=%s (want a positive number)", name, v);
        return 0;
    }
    log_warn("tconn: TEST KNOB: %s=%llu (for tests only)", name, x);
    return x;
}

void tconn_keys_test_knobs(tconn_keys_t *k)
{
    uint64_t b = test_knob("POPMESH_TEST_REKEY_BYTES"), ms = test_knob("POPMESH_TEST_REKEY_MS");
    if (b)
        k->rekey_bytes = b;
    if (ms)
        k->rekey_ms = ms;
}
