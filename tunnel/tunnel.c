/* tun: stream multiplexing over one tunnel, with per-stream credit flow control. Sans-I/O.
 *
 * BACKGROUND
 *
 * A tunnel (one TCP connection carrying the secure channel's records, secchan.h) is reliable
 * and ordered while it lives, and message oriented: one frame is one record. Many streams
 * share it, each carrying a user connection (PoP<->site) or one leg of a relayed one
 * (PoP<->PoP). Sharing a pipe is only safe if no stream can make anyone buffer without bound,
 * so every stream has its own credit, counted in bytes, in each direction (as HTTP/2 and QUIC
 * stream windows). There is no connection-level window: a receiver always reads the
 * connection, because whatever arrives for a stream fits in the credit it granted, so a
 * stalled stream never stops the others behind it.
 *
 * FLOW CONTROL
 *
 * A receiver grants its peer `window` bytes at open (in OPEN or OPEN_OK). A sender spends
 * credit with each DATA byte and can send nothing when it has none; tun_send therefore takes
 * only what the credit covers, and the caller keeps the rest and stops reading its socket:
 * that is where backpressure reaches the source. The receiver hands payload to the
 * application and gets the credit back only when the application says the bytes are gone
 * (tun_consumed: written to the destination socket, or taken by tun_send on the next tunnel
 * of a relay). It returns credit in WINDOW frames, coalesced until half a window is ready, so
 * a steadily draining stream costs one WINDOW per half window. A slow destination thus stops
 * the source one window later, hop by hop, and the bytes anywhere in between are at most one
 * window per stream and direction. For every stream at all times
 *
 *     recv_credit + unconsumed + ungranted == window
 *
 * (credit the peer may still use, bytes the application holds, bytes consumed but not yet
 * granted back), which tun_check verifies. DATA larger than recv_credit is a violation, never
 * buffered: the stream is reset with TUN_ERR_FLOW_CONTROL. A grant that would push send
 * credit past max_window (<= 2^31-1) resets it with TUN_ERR_WINDOW_OVERFLOW.
 *
 * The coalescing rule deadlocks only an application that holds more than half a window
 * unconsumed while waiting for more data to arrive; the application contract (tunnel.h,
 * docs/tunnel.md) is to consume what it has written on, not what it has parsed.
 *
 * STREAMS
 *
 * Ids are never reused in a tunnel's life: the initiator opens 1, 3, 5..., the acceptor 2, 4,
 * 6..., each strictly increasing (64-bit ids, so never exhausted). That gives a stream id
 * three possible meanings, and a frame for an id not in the table can be told apart:
 *   - an id at or below the peer's or our high-water mark was used and has closed: only
 *     WINDOW legitimately arrives for it (the peer granted credit while our FIN crossed its
 *     last WINDOW), so a stale WINDOW is ignored; DATA, FIN and OPEN_OK get RST STREAM_CLOSED;
 *   - a higher id was never opened: the same RST (the peer is confused; the RST tells it);
 *   - RST and OPEN_ERR are never answered, so two ends never trade RSTs.
 * An OPEN with our parity or with an id not above the peer's previous OPEN means the two ends
 * disagree about the id space itself; nothing said on the tunnel can be trusted after that,
 * so it kills the tunnel (TUN_DEAD_PROTOCOL). Every other violation costs one stream.
 *
 * A stream is opened (OPENING at the opener, PENDING at the acceptor until the application
 * answers), then OPEN, then each end half-closes with FIN; it is freed when this end has sent
 * FIN, received FIN and the application has consumed everything. Before OPEN_OK, nobody sends
 * DATA, WINDOW or FIN (the opener's FIN is held as a flag and sent with the open); PENDING
 * streams are given no credit, so early DATA is a flow violation. OPENING and PENDING streams
 * wait on one FIFO list: deadlines are now + a constant, so the list is sorted by construction
 * and timing out is O(1) per stream.
 *
 * HEARTBEATS
 *
 * A PING goes out every ping_interval_ms whether or not data flows (4 small frames a second
 * each way): the RTT sample stream is then continuous, which popsite needs to rank PoPs and
 * the mesh needs for link-state costs, and the rule has no idle/busy edge cases. Liveness is
 * "any frame received in the last dead_after_ms": DATA and WINDOW prove the peer alive as
 * well as a PONG. With the defaults (250, 1000) four PINGs in a row go unanswered before a
 * tunnel is declared dead. PONGs are matched to the last TUN_PING_TRACK PINGs by sequence
 * number, so a reordered or forged PONG cannot fake an RTT sample; RTT is smoothed as in
 * RFC 6298. Death resets every stream locally (on_reset TUN_ERR_TUNNEL_DEAD), then on_dead.
 *
 * MEMORY
 *
 * The core holds no payload and no frame: DATA is encoded into a stack buffer (head only; the
 * payload goes to io.send uncopied) and sent at once, received payload is borrowed from the
 * caller's frame. What it holds is the tunnel struct, one struct per open stream, and an
 * open-addressing table of pointers keyed by stream id, kept between 1/8 and 1/2 full. */
#include "tunnel/tunnel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/xmalloc.h"
#include "tunnel/seal.h"

#define TUN_PING_TRACK 8  /* outstanding PINGs a PONG can still match */
#define TUN_RTT_BUCKET 20 /* RTT samples per bucket of the windowed minimum (5 s of PINGs) */
#define MAP_MIN_CAP    16 /* slots; power of two */

struct stream {
    uint64_t sid;
    void *user;
    uint64_t open_deadline_ms;    /* OPENING/PENDING: timed out at this time (ms) */
    struct stream *tprev, *tnext; /* the open-timeout list */
    struct stream *dnext;         /* a detached list (tunnel death, tun_reset_all) */
    uint32_t send_credit;         /* bytes we may still send */
    uint32_t recv_credit;         /* bytes the peer may still send */
    uint32_t unconsumed;          /* bytes delivered to the application, not consumed */
    uint32_t ungranted;           /* bytes consumed, not yet granted back */
    uint32_t window;              /* bytes granted at open, then grown; 0 while PENDING */
    enum tun_stream_state state;
    bool local;      /* we opened it */
    bool fin_sent;   /* we sent FIN */
    bool fin_wanted; /* the application asked for FIN while OPENING */
    bool fin_recv;   /* the peer sent FIN */
    bool blocked;    /* tun_send ran out of credit: on_writable when it comes back */
    bool timed;      /* on the open-timeout list */
    uint8_t seal;    /* enum tun_seal_mode */
    seal_state_t *sealer; /* TUN_SEAL_END: the stream's keys and counters */
};

/* Open addressing, linear probing, backward-shift deletion (no tombstones). */
struct stream_map {
    struct stream **slots;
    uint32_t cap; /* 0 or a power of two */
    uint32_t count;
};

struct tun {
    tun_config_t cfg;
    tun_io_t io;
    struct stream_map map;
    uint64_t next_sid;            /* the next id we open */
    uint64_t peer_last_sid;       /* the highest id the peer opened; 0 = none */
    uint32_t n_local;             /* open streams we opened */
    uint32_t n_remote;            /* open streams the peer opened */
    struct stream *thead, *ttail; /* OPENING and PENDING streams, oldest first */
    uint64_t now_ms;              /* latest time seen: time never runs backwards in here */
    uint64_t last_rx_ms;          /* when a frame last arrived */
    uint64_t next_ping_ms;
    uint64_t ping_seq;                     /* of the last PING sent */
    uint32_t rtt_bucket_min, rtt_prev_min; /* us: windowed RTT minimum, current and last bucket */
    uint32_t rtt_bucket_n;                 /* samples in the current bucket */
    bool rtt_have_prev;
    struct {
        uint64_t seq; /* 0 = slot free */
        uint64_t sent_ms;
    } pings[TUN_PING_TRACK];
    bool dead;
    int dead_reason;
    uint64_t app_unconsumed; /* bytes, sum over streams */
    tun_stats_t st;          /* counters; the derived fields are filled by tun_get_stats */
    uint8_t *seal_buf;       /* TUN_DATA_MAX bytes: a sealed stream's record being sent */
};

/* ---------------------------------------------------------------------------------------- */
/* Stream table */

static uint32_t map_home(uint64_t sid, uint32_t cap)
{
    uint64_t h = sid * 0x9e3779b97f4a7c15ull; /* Fibonacci hashing: ids are sequential */
    return (uint32_t)(h >> 32) & (cap - 1);
}

static struct stream *map_find(const struct stream_map *m, uint64_t sid)
{
    if (m->cap == 0)
        return NULL;
    for (uint32_t i = map_home(sid, m->cap);; i = (i + 1) & (m->cap - 1)) {
        struct stream *s = m->slots[i];
        if (!s)
            return NULL;
        if (s->sid == sid)
            return s;
    }
}

static void map_place(struct stream_map *m, struct stream *s)
{
    uint32_t i = map_home(s->sid, m->cap);
    while (m->slots[i])
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = s;
}

static void map_resize(struct stream_map *m, uint32_t cap)
{
    struct stream **old = m->slots;
    uint32_t old_cap = m->cap;
    m->slots = xcalloc(cap, sizeof(*m->slots));
    m->cap = cap;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i])
            map_place(m, old[i]);
    free(old);
}

static void map_insert(struct stream_map *m, struct stream *s)
{
    if (m->cap == 0)
        map_resize(m, MAP_MIN_CAP);
    else if ((m->count + 1) * 2 > m->cap)
        map_resize(m, m->cap * 2);
    map_place(m, s);
    m->count++;
}

static void map_remove(struct stream_map *m, struct stream *s)
{
    uint32_t mask = m->cap - 1;
    uint32_t i = map_home(s->sid, m->cap);
    while (m->slots[i] != s)
        i = (i + 1) & mask;
    m->slots[i] = NULL;
    /* Backward shift: pull up every later entry of the run whose home is not in (i, j]. */
    for (uint32_t j = (i + 1) & mask; m->slots[j]; j = (j + 1) & mask) {
        uint32_t home = map_home(m->slots[j]->sid, m->cap);
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            m->slots[i] = m->slots[j];
            m->slots[j] = NULL;
            i = j;
        }
    }
    m->count--;
    if (m->cap > MAP_MIN_CAP && m->count * 8 < m->cap)
        map_resize(m, m->cap / 2);
}

/* ---------------------------------------------------------------------------------------- */
/* Helpers */

static uint64_t clock_in(tun_t *t, uint64_t now_ms)
{
    if (now_ms > t->now_ms)
        t->now_ms = now_ms;
    return t->now_ms;
}

/* raw: a DATA frame whose payload is sealed end to end (a sealed stream's record): the
 * driver may carry the payload without sealing it again (io.send_raw). */
static void emit_frame(tun_t *t, const tun_frame_t *f, bool raw)
{
    uint8_t head[TUN_HEAD_MAX];
    size_t n = tun_frame_encode(f, head);
    if (n == 0) {
        /* Every field was validated before it got here: this is a bug, not input. */
        log_error("tunnel: cannot encode %s for stream %llu; dropped", tun_frame_type_name(f->type),
                  (unsigned long long)f->sid);
        return;
    }
    size_t body = f->type == TUN_DATA ? f->len : 0;
    if (raw && t->io.send_raw)
        t->io.send_raw(t->io.ctx, head, n, f->data, body);
    else
        t->io.send(t->io.ctx, head, n, body ? f->data : NULL, body);
    t->st.frames_sent++;
    t->st.bytes_sent += n + body;
}

static void emit(tun_t *t, const tun_frame_t *f)
{
    emit_frame(t, f, false);
}

static void send_rst(tun_t *t, uint64_t sid, uint32_t code)
{
    tun_frame_t f = {.type = TUN_RST, .sid = sid, .code = code};
    emit(t, &f);
    t->st.resets_sent++;
}

static void send_open_err(tun_t *t, uint64_t sid, uint32_t code, const char *msg)
{
    size_t len = msg ? strnlen(msg, TUN_MSG_MAX) : 0;
    tun_frame_t f = {.type = TUN_OPEN_ERR,
                     .sid = sid,
                     .code = code,
                     .data = (const uint8_t *)msg,
                     .len = (uint32_t)len};
    emit(t, &f);
    t->st.resets_sent++;
}

/* Aborts s towards the peer: OPEN_ERR if its OPEN is unanswered, else RST. */
static void send_abort(tun_t *t, const struct stream *s, uint32_t code, const char *msg)
{
    if (s->state == TUN_STREAM_PENDING)
        send_open_err(t, s->sid, code, msg);
    else
        send_rst(t, s->sid, code);
}

static bool is_peer_sid(const tun_t *t, uint64_t sid)
{
    /* The initiator opens odd ids, so its peer opens even ones, and vice versa. */
    bool odd = sid & 1;
    return t->cfg.role == TUN_INITIATOR ? !odd : odd;
}

/* True if sid belonged to a stream that has existed on this tunnel. */
static bool sid_was_used(const tun_t *t, uint64_t sid)
{
    return is_peer_sid(t, sid) ? sid <= t->peer_last_sid : sid < t->next_sid;
}

static void timer_link(tun_t *t, struct stream *s, uint64_t now_ms)
{
    if (t->cfg.open_timeout_ms == 0)
        return;
    s->open_deadline_ms = now_ms + t->cfg.open_timeout_ms;
    s->tprev = t->ttail;
    s->tnext = NULL;
    if (t->ttail)
        t->ttail->tnext = s;
    else
        t->thead = s;
    t->ttail = s;
    s->timed = true;
}

static void timer_unlink(tun_t *t, struct stream *s)
{
    if (!s->timed)
        return;
    if (s->tprev)
        s->tprev->tnext = s->tnext;
    else
        t->thead = s->tnext;
    if (s->tnext)
        s->tnext->tprev = s->tprev;
    else
        t->ttail = s->tprev;
    s->tprev = s->tnext = NULL;
    s->timed = false;
}

static struct stream *stream_new(tun_t *t, uint64_t sid, bool local, enum tun_stream_state state)
{
    struct stream *s = xcalloc(1, sizeof(*s));
    s->sid = sid;
    s->local = local;
    s->state = state;
    map_insert(&t->map, s);
    if (local)
        t->n_local++;
    else
        t->n_remote++;
    return s;
}

/* Frees s (its keys wiped), which is in no structure any more. */
static void stream_release(struct stream *s)
{
    seal_state_free(&s->sealer);
    free(s);
}

/* Takes s out of every structure and frees it. */
static void stream_free(tun_t *t, struct stream *s)
{
    map_remove(&t->map, s);
    timer_unlink(t, s);
    if (s->local)
        t->n_local--;
    else
        t->n_remote--;
    t->app_unconsumed -= s->unconsumed;
    stream_release(s);
}

static bool stream_closable(const struct stream *s)
{
    return s->state == TUN_STREAM_OPEN && s->fin_sent && s->fin_recv && s->unconsumed == 0;
}

/* Ends s, which is gone before the application hears of it (so a call it makes on sid from
 * inside on_reset gets -ENOENT, not a half-dead stream). */
static void stream_reset_notify(tun_t *t, struct stream *s, uint32_t code, bool remote,
                                const char *msg, size_t msg_len)
{
    uint64_t sid = s->sid;
    void *user = s->user;
    stream_free(t, s);
    if (t->io.on_reset)
        t->io.on_reset(t->io.ctx, sid, user, code, remote, msg, msg_len);
}

/* The peer broke a stream rule: reset that stream at both ends. */
static void stream_violation(tun_t *t, struct stream *s, uint32_t code)
{
    switch (code) {
    case TUN_ERR_FLOW_CONTROL:
        t->st.flow_violations++;
        break;
    case TUN_ERR_WINDOW_OVERFLOW:
        t->st.window_overflows++;
        break;
    default:
        t->st.protocol_errors++;
        break;
    }
    log_debug("tunnel: stream %llu reset: %s", (unsigned long long)s->sid, tun_code_name(code));
    send_abort(t, s, code, tun_code_name(code));
    stream_reset_notify(t, s, code, false, NULL, 0);
}

/* Empties the table and the timer list; returns the streams as a list through dnext. The
 * counts drop to zero at once, so callbacks made while the list is walked see no stream. */
static struct stream *detach_all(tun_t *t)
{
    struct stream *list = NULL;
    for (uint32_t i = 0; i < t->map.cap; i++) {
        struct stream *s = t->map.slots[i];
        if (s) {
            s->dnext = list;
            list = s;
        }
    }
    free(t->map.slots);
    t->map.slots = NULL;
    t->map.cap = t->map.count = 0;
    t->thead = t->ttail = NULL;
    t->n_local = t->n_remote = 0;
    t->app_unconsumed = 0;
    return list;
}

static void tunnel_kill(tun_t *t, int reason)
{
    if (t->dead)
        return;
    t->dead = true;
    t->dead_reason = reason;
    if (reason == TUN_DEAD_TIMEOUT)
        log_info("tunnel: dead: nothing received for %u ms", t->cfg.dead_after_ms);
    else if (reason == TUN_DEAD_TRANSPORT)
        log_debug("tunnel: dead: transport closed");
    else
        log_warn("tunnel: dead: %s", tun_dead_reason_name(reason));
    struct stream *s = detach_all(t);
    while (s) {
        struct stream *next = s->dnext;
        uint64_t sid = s->sid;
        void *user = s->user;
        stream_release(s);
        if (t->io.on_reset)
            t->io.on_reset(t->io.ctx, sid, user, TUN_ERR_TUNNEL_DEAD, false, NULL, 0);
        s = next;
    }
    if (t->io.on_dead)
        t->io.on_dead(t->io.ctx, reason);
}

/* ---------------------------------------------------------------------------------------- */
/* Receiving */

/* A frame named a stream that is not in the table. */
static void on_unknown_stream(tun_t *t, const tun_frame_t *f)
{
    t->st.unknown_stream++;
    switch (f->type) {
    case TUN_RST:
    case TUN_OPEN_ERR:
        return; /* never answer an abort with an abort */
    case TUN_WINDOW:
        if (sid_was_used(t, f->sid))
            return; /* a grant that crossed our FIN or RST: harmless */
        break;
    default:
        break;
    }
    send_rst(t, f->sid, TUN_ERR_STREAM_CLOSED);
}

static int rx_open(tun_t *t, const tun_frame_t *f, uint64_t now_ms)
{
    if (!is_peer_sid(t, f->sid) || f->sid <= t->peer_last_sid) {
        /* Our parity, a duplicate or a reused id: the ends disagree about the id space. */
        tunnel_kill(t, TUN_DEAD_PROTOCOL);
        return -EPIPE;
    }
    t->peer_last_sid = f->sid;
    if (t->n_remote >= t->cfg.max_streams) {
        t->st.open_refused++;
        send_open_err(t, f->sid, TUN_ERR_LIMIT, "too many streams on this tunnel");
        return 0;
    }
    if (f->window > t->cfg.max_window) {
        t->st.open_refused++;
        t->st.window_overflows++;
        send_open_err(t, f->sid, TUN_ERR_WINDOW_OVERFLOW, "initial window too large");
        return 0;
    }
    struct stream *s = stream_new(t, f->sid, false, TUN_STREAM_PENDING);
    s->send_credit = f->window;
    timer_link(t, s, now_ms);
    if (t->io.on_open)
        t->io.on_open(t->io.ctx, f->sid, f->data, f->len);
    else
        tun_reject(t, f->sid, TUN_ERR_REFUSED, "this end accepts no streams");
    return 0;
}

static void rx_open_ok(tun_t *t, struct stream *s, const tun_frame_t *f)
{
    if (!s->local || s->state != TUN_STREAM_OPENING) {
        stream_violation(t, s, TUN_ERR_PROTOCOL);
        return;
    }
    if (f->window > t->cfg.max_window) {
        stream_violation(t, s, TUN_ERR_WINDOW_OVERFLOW);
        return;
    }
    s->state = TUN_STREAM_OPEN;
    timer_unlink(t, s);
    s->send_credit = f->window;
    if (s->fin_wanted) {
        tun_frame_t fin = {.type = TUN_FIN, .sid = s->sid};
        emit(t, &fin);
        s->fin_sent = true;
        s->fin_wanted = false;
    }
    if (t->io.on_open_ok)
        t->io.on_open_ok(t->io.ctx, s->sid, s->user);
}

static void rx_open_err(tun_t *t, struct stream *s, const tun_frame_t *f)
{
    if (!s->local || s->state != TUN_STREAM_OPENING) {
        stream_violation(t, s, TUN_ERR_PROTOCOL);
        return;
    }
    t->st.resets_received++;
    stream_reset_notify(t, s, f->code, true, (const char *)f->data, f->len);
}

/* frame: the received frame's buffer, writable, so that a sealed stream's record is opened
 * in place; raw: it came without the hop's seal over its payload (a SPLIT record), which only
 * a sealed stream may receive. */
static void rx_data(tun_t *t, struct stream *s, const tun_frame_t *f, uint8_t *frame, bool raw)
{
    if (s->state == TUN_STREAM_OPENING || s->fin_recv) {
        stream_violation(t, s, TUN_ERR_PROTOCOL);
        return;
    }
    if (raw && s->seal == TUN_SEAL_NONE) {
        stream_violation(t, s, TUN_ERR_PROTOCOL);
        return;
    }
    if (f->len > s->recv_credit) { /* PENDING streams have none */
        stream_violation(t, s, TUN_ERR_FLOW_CONTROL);
        return;
    }
    const uint8_t *data = f->data;
    uint32_t len = f->len;
    uint32_t tag = 0;
    if (s->seal == TUN_SEAL_END) {
        uint8_t *rec = frame + (f->data - frame);
        if (seal_open(s->sealer, rec, f->len) != 0) {
            t->st.seal_failures++;
            stream_violation(t, s, TUN_ERR_SEAL);
            return;
        }
        tag = SEAL_TAG_LEN;
        len -= tag;
    }
    s->recv_credit -= f->len;
    /* The tag is spent on arrival: it counts as consumed at once, so the invariant holds and
     * the sender's credit comes back with the plaintext's. */
    s->unconsumed += len;
    s->ungranted += tag;
    t->app_unconsumed += len;
    t->st.data_bytes_received += f->len;
    if (t->io.on_data)
        t->io.on_data(t->io.ctx, s->sid, s->user, data, len);
    else
        tun_consumed(t, f->sid, len); /* nobody to hold it: consumed on arrival */
}

static void rx_window(tun_t *t, struct stream *s, const tun_frame_t *f)
{
    if (s->state != TUN_STREAM_OPEN) {
        stream_violation(t, s, TUN_ERR_PROTOCOL);
        return;
    }
    if ((uint64_t)s->send_credit + f->window > t->cfg.max_window) {
        stream_violation(t, s, TUN_ERR_WINDOW_OVERFLOW);
        return;
    }
    s->send_credit += f->window;
    if (s->blocked && !s->fin_sent) {
        s->blocked = false;
        if (t->io.on_writable)
            t->io.on_writable(t->io.ctx, s->sid, s->user);
    }
}

static void rx_fin(tun_t *t, struct stream *s)
{
    if (s->state != TUN_STREAM_OPEN || s->fin_recv) {
        stream_violation(t, s, TUN_ERR_PROTOCOL);
        return;
    }
    s->fin_recv = true;
    uint64_t sid = s->sid;
    if (t->io.on_fin)
        t->io.on_fin(t->io.ctx, sid, s->user);
    /* The callback may have reset, finished or consumed: look the stream up again. */
    s = map_find(&t->map, sid);
    if (s && stream_closable(s)) {
        void *user = s->user;
        stream_free(t, s);
        if (t->io.on_closed)
            t->io.on_closed(t->io.ctx, sid, user);
    }
}

static void rx_pong(tun_t *t, const tun_frame_t *f, uint64_t now_ms)
{
    unsigned slot = f->seq % TUN_PING_TRACK;
    if (f->seq == 0 || t->pings[slot].seq != f->seq)
        return; /* not a PING we have outstanding: liveness only */
    t->pings[slot].seq = 0;
    t->st.pongs_received++;
    uint64_t us = (now_ms - t->pings[slot].sent_ms) * 1000;
    uint32_t r = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    /* Windowed minimum over two buckets of TUN_RTT_BUCKET samples: a busy tunnel's samples
     * queue behind its data, and the smallest recent one is the path without that queue. */
    if (t->rtt_bucket_n == 0 || r < t->rtt_bucket_min)
        t->rtt_bucket_min = r;
    if (++t->rtt_bucket_n == TUN_RTT_BUCKET) {
        t->rtt_prev_min = t->rtt_bucket_min;
        t->rtt_have_prev = true;
        t->rtt_bucket_n = 0;
    }
    uint32_t recent = t->rtt_bucket_n ? t->rtt_bucket_min : t->rtt_prev_min;
    if (t->rtt_have_prev && t->rtt_prev_min < recent)
        recent = t->rtt_prev_min;
    t->st.rtt_recent_min_us = recent;
    if (t->st.rtt_us == 0 && t->st.rttvar_us == 0 && t->st.rtt_min_us == 0) {
        t->st.rtt_us = r;
        t->st.rttvar_us = r / 2;
        t->st.rtt_min_us = r;
        return;
    }
    uint32_t dev = t->st.rtt_us > r ? t->st.rtt_us - r : r - t->st.rtt_us;
    t->st.rttvar_us = (uint32_t)(((uint64_t)t->st.rttvar_us * 3 + dev) / 4);
    t->st.rtt_us = (uint32_t)(((uint64_t)t->st.rtt_us * 7 + r) / 8);
    if (r < t->st.rtt_min_us)
        t->st.rtt_min_us = r;
}

static int receive(tun_t *t, uint8_t *frame, size_t len, uint64_t now_ms, bool raw)
{
    if (t->dead)
        return -EPIPE;
    now_ms = clock_in(t, now_ms);
    t->last_rx_ms = now_ms;
    t->st.frames_received++;
    t->st.bytes_received += len;
    tun_frame_t f;
    int rc = tun_frame_decode(frame, len, &f);
    if (rc == -EPROTONOSUPPORT) {
        tunnel_kill(t, TUN_DEAD_VERSION);
        return -EPIPE;
    }
    if (rc) {
        t->st.malformed++;
        /* A broken frame for a live stream leaves a hole in it (a lost DATA, a lost grant):
         * that stream cannot go on, the others can. */
        struct stream *s = f.sid ? map_find(&t->map, f.sid) : NULL;
        if (s)
            stream_violation(t, s, TUN_ERR_PROTOCOL);
        return -EBADMSG;
    }
    if (raw && f.type != TUN_DATA) { /* only payload may travel unsealed by the hop */
        t->st.malformed++;
        struct stream *s = f.sid ? map_find(&t->map, f.sid) : NULL;
        if (s)
            stream_violation(t, s, TUN_ERR_PROTOCOL);
        return -EBADMSG;
    }
    switch (f.type) {
    case TUN_PING: {
        tun_frame_t pong = {.type = TUN_PONG, .seq = f.seq};
        emit(t, &pong);
        return 0;
    }
    case TUN_PONG:
        rx_pong(t, &f, now_ms);
        return 0;
    case TUN_OPEN:
        return rx_open(t, &f, now_ms);
    default:
        break;
    }
    struct stream *s = map_find(&t->map, f.sid);
    if (!s) {
        on_unknown_stream(t, &f);
        return 0;
    }
    switch (f.type) {
    case TUN_OPEN_OK:
        rx_open_ok(t, s, &f);
        break;
    case TUN_OPEN_ERR:
        rx_open_err(t, s, &f);
        break;
    case TUN_DATA:
        rx_data(t, s, &f, frame, raw);
        break;
    case TUN_WINDOW:
        rx_window(t, s, &f);
        break;
    case TUN_FIN:
        rx_fin(t, s);
        break;
    case TUN_RST:
        t->st.resets_received++;
        stream_reset_notify(t, s, f.code, true, NULL, 0);
        break;
    default:
        break;
    }
    return 0;
}

int tun_receive(tun_t *t, uint8_t *frame, size_t len, uint64_t now_ms)
{
    return receive(t, frame, len, now_ms, false);
}

int tun_receive_raw(tun_t *t, uint8_t *frame, size_t len, uint64_t now_ms)
{
    return receive(t, frame, len, now_ms, true);
}

/* ---------------------------------------------------------------------------------------- */
/* Time */

void tun_tick(tun_t *t, uint64_t now_ms)
{
    if (t->dead)
        return;
    now_ms = clock_in(t, now_ms);
    if (now_ms >= t->last_rx_ms + t->cfg.dead_after_ms) {
        tunnel_kill(t, TUN_DEAD_TIMEOUT);
        return;
    }
    if (now_ms >= t->next_ping_ms) {
        uint64_t seq = ++t->ping_seq;
        unsigned slot = seq % TUN_PING_TRACK;
        t->pings[slot].seq = seq;
        t->pings[slot].sent_ms = now_ms;
        tun_frame_t ping = {.type = TUN_PING, .seq = seq};
        emit(t, &ping);
        t->st.pings_sent++;
        t->next_ping_ms = now_ms + t->cfg.ping_interval_ms;
    }
    /* The head is always the oldest open; callbacks may add (at the tail, later deadline)
     * or remove streams, so re-read the head each time. */
    while (t->thead && t->thead->open_deadline_ms <= now_ms && !t->dead) {
        struct stream *s = t->thead;
        t->st.open_timeouts++;
        send_abort(t, s, TUN_ERR_TIMEOUT, "open timed out");
        stream_reset_notify(t, s, TUN_ERR_TIMEOUT, false, NULL, 0);
    }
}

uint64_t tun_next_deadline(const tun_t *t)
{
    if (t->dead)
        return UINT64_MAX;
    uint64_t d = t->last_rx_ms + t->cfg.dead_after_ms;
    if (t->next_ping_ms < d)
        d = t->next_ping_ms;
    if (t->thead && t->thead->open_deadline_ms < d)
        d = t->thead->open_deadline_ms;
    return d;
}

void tun_kill(tun_t *t)
{
    tunnel_kill(t, TUN_DEAD_TRANSPORT);
}

bool tun_is_dead(const tun_t *t)
{
    return t->dead;
}

/* ---------------------------------------------------------------------------------------- */
/* Life */

const char *tun_dead_reason_name(int reason)
{
    switch (reason) {
    case TUN_DEAD_TIMEOUT:
        return "heartbeat timeout";
    case TUN_DEAD_PROTOCOL:
        return "protocol violation (stream id space)";
    case TUN_DEAD_VERSION:
        return "peer speaks another protocol version";
    case TUN_DEAD_TRANSPORT:
        return "transport closed";
    default:
        return "?";
    }
}

void tun_config_defaults(tun_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->window = 256 * 1024;
    cfg->max_window = TUN_WINDOW_MAX;
    cfg->max_data = 64 * 1024;
    cfg->max_streams = 4096;
    cfg->ping_interval_ms = 250;
    cfg->dead_after_ms = 1000;
    cfg->open_timeout_ms = 10000;
}

tun_t *tun_new(const tun_config_t *cfg, const tun_io_t *io, uint64_t now_ms)
{
    if (!cfg || !io || !io->send || (cfg->role != TUN_INITIATOR && cfg->role != TUN_ACCEPTOR) ||
        cfg->max_window == 0 || cfg->max_window > TUN_WINDOW_MAX || cfg->window == 0 ||
        cfg->window > TUN_WINDOW_MAX || cfg->window_auto_max > TUN_WINDOW_MAX ||
        cfg->max_data == 0 || cfg->max_data > TUN_DATA_MAX || cfg->max_streams == 0 ||
        cfg->max_streams > (1u << 24) || cfg->ping_interval_ms == 0 ||
        cfg->dead_after_ms <= cfg->ping_interval_ms) {
        errno = EINVAL;
        return NULL;
    }
    tun_t *t = xcalloc(1, sizeof(*t));
    t->cfg = *cfg;
    t->io = *io;
    t->next_sid = cfg->role == TUN_INITIATOR ? 1 : 2;
    t->now_ms = now_ms;
    t->last_rx_ms = now_ms;
    t->next_ping_ms = now_ms;
    return t;
}

void tun_destroy(tun_t **tp)
{
    if (!tp || !*tp)
        return;
    tun_t *t = *tp;
    struct stream *s = detach_all(t);
    while (s) {
        struct stream *next = s->dnext;
        stream_release(s);
        s = next;
    }
    free(t->seal_buf);
    free(t);
    *tp = NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Application calls */

int tun_open(tun_t *t, const uint8_t *target, size_t target_len, void *user, uint64_t now_ms,
             uint64_t *sid)
{
    if (t->dead)
        return -EPIPE;
    if (target_len > TUN_TARGET_MAX)
        return -E2BIG;
    if (!target && target_len)
        return -EINVAL;
    if (t->n_local >= t->cfg.max_streams)
        return -EAGAIN;
    if (t->next_sid > TUN_SID_MAX)
        return -ENOSPC;
    now_ms = clock_in(t, now_ms);
    struct stream *s = stream_new(t, t->next_sid, true, TUN_STREAM_OPENING);
    t->next_sid += 2;
    s->user = user;
    s->window = t->cfg.window;
    s->recv_credit = t->cfg.window;
    timer_link(t, s, now_ms);
    tun_frame_t f = {.type = TUN_OPEN,
                     .sid = s->sid,
                     .window = s->window,
                     .data = target,
                     .len = (uint32_t)target_len};
    emit(t, &f);
    t->st.streams_opened++;
    if (sid)
        *sid = s->sid;
    return 0;
}

/* Looks sid up for an application call: the stream, or NULL with *rc set. */
static struct stream *app_stream(const tun_t *t, uint64_t sid, int *rc)
{
    if (t->dead) {
        *rc = -EPIPE;
        return NULL;
    }
    struct stream *s = map_find(&t->map, sid);
    if (!s)
        *rc = -ENOENT;
    return s;
}

int tun_accept(tun_t *t, uint64_t sid)
{
    int rc;
    struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    if (s->state != TUN_STREAM_PENDING)
        return -EINVAL;
    s->state = TUN_STREAM_OPEN;
    timer_unlink(t, s);
    s->window = t->cfg.window;
    s->recv_credit = t->cfg.window;
    tun_frame_t f = {.type = TUN_OPEN_OK, .sid = sid, .window = s->window};
    emit(t, &f);
    t->st.streams_accepted++;
    return 0;
}

int tun_reject(tun_t *t, uint64_t sid, uint32_t code, const char *msg)
{
    int rc;
    struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    if (s->state != TUN_STREAM_PENDING || code > TUN_CODE_MAX)
        return -EINVAL;
    send_open_err(t, sid, code, msg);
    stream_free(t, s);
    return 0;
}

int tun_set_user(tun_t *t, uint64_t sid, void *user)
{
    int rc;
    struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    s->user = user;
    return 0;
}

ssize_t tun_send(tun_t *t, uint64_t sid, const void *data, size_t len)
{
    int rc;
    struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    if (s->fin_sent || s->fin_wanted)
        return -EPIPE;
    if (s->state != TUN_STREAM_OPEN)
        return -ENOTCONN;
    const uint8_t *p = data;
    size_t taken = 0;
    if (s->seal == TUN_SEAL_PASS) {
        /* A sealed record is forwarded whole, in one DATA frame, or not yet. */
        if (len > t->cfg.max_data)
            return -EMSGSIZE;
        if (len > s->send_credit) {
            s->blocked = true;
            return 0;
        }
        tun_frame_t f = {.type = TUN_DATA, .sid = sid, .data = p, .len = (uint32_t)len};
        emit_frame(t, &f, true);
        s->send_credit -= (uint32_t)len;
        t->st.data_bytes_sent += len;
        return (ssize_t)len;
    }
    if (s->seal == TUN_SEAL_END) {
        /* Each DATA frame is one record: plaintext plus its tag, within the credit. */
        if (!t->seal_buf)
            t->seal_buf = xmalloc(TUN_DATA_MAX);
        while (taken < len && s->send_credit > SEAL_TAG_LEN) {
            size_t n = len - taken;
            if (n > s->send_credit - SEAL_TAG_LEN)
                n = s->send_credit - SEAL_TAG_LEN;
            if (n > t->cfg.max_data - SEAL_TAG_LEN)
                n = t->cfg.max_data - SEAL_TAG_LEN;
            tun_frame_t f = {.type = TUN_DATA, .sid = sid, .data = t->seal_buf,
                             .len = (uint32_t)(n + SEAL_TAG_LEN)};
            uint8_t head[TUN_HEAD_MAX];
            size_t hl = tun_frame_encode(&f, head);
            uint8_t *dst = hl && t->io.raw_reserve && t->io.send_raw
                               ? t->io.raw_reserve(t->io.ctx, hl, f.len)
                               : NULL;
            if (!dst) /* no room offered (a hop that takes no SPLIT records): our buffer */
                dst = t->seal_buf;
            if (!hl || seal_record(s->sealer, p + taken, n, dst))
                return taken ? (ssize_t)taken : -EPIPE;
            f.data = dst;
            if (t->io.send_raw)
                t->io.send_raw(t->io.ctx, head, hl, dst, f.len);
            else
                t->io.send(t->io.ctx, head, hl, dst, f.len);
            t->st.frames_sent++;
            t->st.bytes_sent += hl + f.len;
            s->send_credit -= (uint32_t)(n + SEAL_TAG_LEN);
            t->st.data_bytes_sent += n + SEAL_TAG_LEN;
            taken += n;
        }
        if (taken < len)
            s->blocked = true;
        return (ssize_t)taken;
    }
    while (taken < len && s->send_credit > 0) {
        size_t n = len - taken;
        if (n > s->send_credit)
            n = s->send_credit;
        if (n > t->cfg.max_data)
            n = t->cfg.max_data;
        tun_frame_t f = {.type = TUN_DATA, .sid = sid, .data = p + taken, .len = (uint32_t)n};
        emit(t, &f);
        s->send_credit -= (uint32_t)n;
        t->st.data_bytes_sent += n;
        taken += n;
    }
    if (taken < len)
        s->blocked = true;
    return (ssize_t)taken;
}

int tun_seal(tun_t *t, uint64_t sid, enum tun_seal_mode mode, const seal_keys_t *keys)
{
    int rc;
    struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    /* Before any DATA: the opener's stream until OPEN_OK, the acceptor's until it answers. */
    bool fresh = (s->local && s->state == TUN_STREAM_OPENING) ||
                 (!s->local && s->state == TUN_STREAM_PENDING);
    if (!fresh || s->seal != TUN_SEAL_NONE || mode == TUN_SEAL_NONE || mode > TUN_SEAL_PASS ||
        (mode == TUN_SEAL_END && !keys) || t->cfg.max_data <= SEAL_TAG_LEN)
        return -EINVAL;
    if (mode == TUN_SEAL_END) {
        s->sealer = seal_state_new(keys);
        if (!s->sealer)
            return -errno;
    }
    s->seal = (uint8_t)mode;
    return 0;
}

int tun_consumed(tun_t *t, uint64_t sid, size_t n)
{
    int rc;
    struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    if (n > s->unconsumed)
        return -EINVAL;
    s->unconsumed -= (uint32_t)n;
    s->ungranted += (uint32_t)n;
    t->app_unconsumed -= n;
    /* Coalesce: one WINDOW per half window. After the peer's FIN no grant has a use. */
    uint32_t threshold = s->window / 2 ? s->window / 2 : 1;
    if (!s->fin_recv && s->ungranted >= threshold) {
        /* Auto-tuning: the application has consumed everything delivered (it keeps up with
         * arrivals), so the half window it is returning was used up by the sender: the
         * window, not the destination, limits the stream. Double it (the extra is granted
         * with this WINDOW, which keeps recv_credit + unconsumed + ungranted == window). A
         * consumer that falls behind holds unconsumed bytes and never triggers it, so what
         * an application may have to hold grows only for streams whose consumer drained as
         * fast as data came. No clock is involved: the core's time is only as fresh as the
         * last frame or tick, which would make slow consumers look fast. */
        uint32_t grow = 0;
        if (t->cfg.window_auto_max > s->window && s->unconsumed == 0) {
            grow = s->window;
            if (grow > t->cfg.window_auto_max - s->window)
                grow = t->cfg.window_auto_max - s->window;
            t->st.window_growths++;
        }
        tun_frame_t f = {.type = TUN_WINDOW, .sid = sid, .window = s->ungranted + grow};
        emit(t, &f);
        s->recv_credit += s->ungranted + grow;
        s->window += grow;
        s->ungranted = 0;
    }
    if (stream_closable(s)) {
        stream_free(t, s);
        return TUN_CLOSED;
    }
    return 0;
}

int tun_fin(tun_t *t, uint64_t sid)
{
    int rc;
    struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    if (s->fin_sent || s->fin_wanted)
        return -EALREADY;
    if (s->state == TUN_STREAM_PENDING)
        return -EINVAL;
    if (s->state == TUN_STREAM_OPENING) {
        s->fin_wanted = true; /* sent right after OPEN_OK */
        return 0;
    }
    tun_frame_t f = {.type = TUN_FIN, .sid = sid};
    emit(t, &f);
    s->fin_sent = true;
    if (stream_closable(s)) {
        stream_free(t, s);
        return TUN_CLOSED;
    }
    return 0;
}

int tun_reset(tun_t *t, uint64_t sid, uint32_t code)
{
    int rc;
    struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    if (code > TUN_CODE_MAX)
        return -EINVAL;
    send_abort(t, s, code, NULL);
    stream_free(t, s);
    return 0;
}

size_t tun_reset_all(tun_t *t, uint32_t code)
{
    if (t->dead)
        return 0;
    if (code > TUN_CODE_MAX)
        code = TUN_ERR_INTERNAL;
    size_t n = 0;
    struct stream *s = detach_all(t);
    while (s) {
        struct stream *next = s->dnext;
        send_abort(t, s, code, tun_code_name(code));
        free(s);
        n++;
        s = next;
    }
    return n;
}

/* ---------------------------------------------------------------------------------------- */
/* Introspection */

int tun_stream_get(const tun_t *t, uint64_t sid, tun_stream_info_t *out)
{
    int rc;
    const struct stream *s = app_stream(t, sid, &rc);
    if (!s)
        return rc;
    *out = (tun_stream_info_t){
        .sid = s->sid,
        .state = s->state,
        .local = s->local,
        .fin_sent = s->fin_sent || s->fin_wanted,
        .fin_received = s->fin_recv,
        .send_credit = s->send_credit,
        .recv_credit = s->recv_credit,
        .unconsumed = s->unconsumed,
        .ungranted = s->ungranted,
        .window = s->window,
        .seal = (enum tun_seal_mode)s->seal,
        .user = s->user,
    };
    return 0;
}

void tun_get_stats(const tun_t *t, tun_stats_t *st)
{
    *st = t->st;
    st->streams = t->n_local + t->n_remote;
    st->streams_local = t->n_local;
    st->app_unconsumed = t->app_unconsumed;
    st->mem_bytes = sizeof(*t) + (size_t)t->map.cap * sizeof(*t->map.slots) +
                    (size_t)(t->n_local + t->n_remote) * sizeof(struct stream);
    st->last_rx_ms = t->last_rx_ms;
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            log_error("tunnel: invariant broken: %s", #cond);                                      \
            return -1;                                                                             \
        }                                                                                          \
    } while (0)

int tun_check(const tun_t *t)
{
    uint32_t local = 0, remote = 0, pending = 0;
    uint64_t unconsumed = 0;
    CHECK(t->map.count == t->n_local + t->n_remote);
    CHECK(t->map.cap == 0 || (t->map.cap & (t->map.cap - 1)) == 0);
    CHECK(t->map.count * 2 <= t->map.cap || t->map.cap == 0);
    for (uint32_t i = 0; i < t->map.cap; i++) {
        const struct stream *s = t->map.slots[i];
        if (!s)
            continue;
        CHECK(map_find(&t->map, s->sid) == s);
        CHECK(s->sid != 0 && s->sid <= TUN_SID_MAX);
        CHECK(s->local == !is_peer_sid(t, s->sid));
        CHECK(s->local ? s->sid < t->next_sid : s->sid <= t->peer_last_sid);
        CHECK(s->send_credit <= t->cfg.max_window);
        CHECK((uint64_t)s->recv_credit + s->unconsumed + s->ungranted == s->window);
        CHECK(!(s->fin_sent && s->fin_wanted));
        switch (s->state) {
        case TUN_STREAM_OPENING:
            CHECK(s->local && !s->fin_sent && !s->fin_recv && s->unconsumed == 0);
            CHECK(s->send_credit == 0);
            pending++;
            break;
        case TUN_STREAM_PENDING:
            CHECK(!s->local && s->window == 0 && !s->fin_sent && !s->fin_recv);
            pending++;
            break;
        case TUN_STREAM_OPEN:
            CHECK(!s->timed && !s->fin_wanted && !stream_closable(s));
            break;
        default:
            CHECK(!"valid state");
        }
        CHECK(s->timed == (s->state != TUN_STREAM_OPEN && t->cfg.open_timeout_ms != 0));
        if (s->local)
            local++;
        else
            remote++;
        unconsumed += s->unconsumed;
    }
    CHECK(local == t->n_local && remote == t->n_remote);
    CHECK(unconsumed == t->app_unconsumed);
    uint32_t timed = 0;
    for (const struct stream *s = t->thead; s; s = s->tnext) {
        CHECK(s->timed && map_find(&t->map, s->sid) == s);
        CHECK(s->tnext || s == t->ttail);
        CHECK(!s->tnext || s->tnext->open_deadline_ms >= s->open_deadline_ms);
        timed++;
    }
    CHECK(timed == (t->cfg.open_timeout_ms ? pending : 0));
    return 0;
}
