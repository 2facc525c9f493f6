/* udpsite: see udpsite.h. */
#include "node/site/udpsite.h"

#include "common/log.h"
#include "common/xmalloc.h"
#include "node/dataplane/udpframe.h"
#include "tunnel/tunnel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UDPSITE_MAGIC 0x55445046u /* "UDPF" */

struct uflow {
    uint32_t magic; /* first: popsite tells its stream users apart by it */
    udpsite_t *x;
    struct uflow *prev, *next;
    tconn_t *c;
    uint64_t sid;
    int fd;
    ev_io io;
    ev_timer idle;
    ev_tstamp last; /* s (ev_now) */
    udpframe_rx_t rx;
    udpframe_txq_t tx;
    void (*done)(void *ctx);
    void *ctx;
};

struct udpsite {
    struct ev_loop *loop;
    struct uflow *flows;
    udpsite_stats_t st;
    uint8_t buf[UDPFRAME_PAYLOAD_MAX + 1];
};

bool udpsite_owns(const void *user)
{
    return user && *(const uint32_t *)user == UDPSITE_MAGIC;
}

/* Frees f; reset says whether its stream is still ours to reset. */
static void flow_free(struct uflow *f, bool reset)
{
    udpsite_t *x = f->x;
    if (reset) {
        tun_t *t = tconn_tun(f->c);
        if (t)
            tun_reset(t, f->sid, TUN_ERR_NONE);
    }
    ev_io_stop(x->loop, &f->io);
    ev_timer_stop(x->loop, &f->idle);
    close(f->fd);
    udpframe_rx_free(&f->rx);
    udpframe_txq_free(&f->tx);
    if (f->prev)
        f->prev->next = f->next;
    else
        x->flows = f->next;
    if (f->next)
        f->next->prev = f->prev;
    x->st.flows--;
    if (f->done)
        f->done(f->ctx);
    f->magic = 0;
    free(f);
}

static void flush(struct uflow *f)
{
    tun_t *t = tconn_tun(f->c);
    size_t n;
    const uint8_t *d = udpframe_txq_data(&f->tx, &n);
    if (t && n) {
        ssize_t sent = tun_send(t, f->sid, d, n);
        if (sent > 0)
            udpframe_txq_sent(&f->tx, (size_t)sent);
    }
}

static void on_target(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct uflow *f = w->data;
    udpsite_t *x = f->x;
    for (int i = 0; i < UDPSITE_BURST; i++) {
        ssize_t n = recv(f->fd, x->buf, sizeof(x->buf), MSG_TRUNC | MSG_DONTWAIT);
        if (n < 0)
            break; /* EAGAIN, or ECONNREFUSED (ICMP): the client's next datagram tries again */
        f->last = ev_now(loop);
        if ((size_t)n > UDPFRAME_PAYLOAD_MAX) {
            x->st.dropped_oversize++;
            continue;
        }
        if (udpframe_txq_push(&f->tx, x->buf, (size_t)n)) {
            x->st.dropped_queue++;
            continue;
        }
        x->st.dg_from_target++;
    }
    flush(f);
}

static void on_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct uflow *f = w->data;
    ev_tstamp left = f->last + UDPSITE_IDLE_MAX_S - ev_now(loop);
    if (left > 0.001) {
        w->repeat = left;
        ev_timer_again(loop, w);
        return;
    }
    flow_free(f, true);
}

static void to_target(void *ctx, const uint8_t *p, size_t len)
{
    struct uflow *f = ctx;
    if (send(f->fd, p, len, MSG_DONTWAIT) < 0)
        f->x->st.send_failed++; /* a full buffer, or the target's ICMP refusal: UDP's loss */
    else
        f->x->st.dg_to_target++;
}

void udpsite_on_data(void *user, tconn_t *c, uint64_t sid, const uint8_t *d, size_t n)
{
    struct uflow *f = user;
    f->last = ev_now(f->x->loop);
    int rc = udpframe_feed(&f->rx, d, n, to_target, f);
    tun_t *t = tconn_tun(c);
    if (t)
        tun_consumed(t, sid, n);
    if (rc) {
        log_warn("popsite: UDP flow: a datagram over %d bytes from the PoP: stream reset",
                 UDPFRAME_PAYLOAD_MAX);
        if (t)
            tun_reset(t, sid, TUN_ERR_PROTOCOL);
        flow_free(f, false);
    }
}

void udpsite_on_writable(void *user, tconn_t *c, uint64_t sid)
{
    (void)c, (void)sid;
    flush(user);
}

void udpsite_on_end(void *user, tconn_t *c, uint64_t sid)
{
    struct uflow *f = user;
    tun_t *t = tconn_tun(c);
    /* A FIN leaves our half open in the core: close it, the flow is over. Harmless on a stream
     * already gone (-ENOENT). */
    if (t)
        tun_reset(t, sid, TUN_ERR_NONE);
    flow_free(f, false);
}

int udpsite_start(udpsite_t *x, tconn_t *c, uint64_t sid, int fd, void (*done)(void *ctx),
                  void *ctx)
{
    tun_t *t = tconn_tun(c);
    int rc = t ? tun_accept(t, sid) : -EPIPE;
    if (rc) {
        close(fd);
        return rc;
    }
    struct uflow *f = xcalloc(1, sizeof(*f));
    f->magic = UDPSITE_MAGIC;
    f->x = x;
    f->c = c;
    f->sid = sid;
    f->fd = fd;
    f->done = done;
    f->ctx = ctx;
    f->tx.cap = UDPSITE_QUEUE_MAX;
    f->last = ev_now(x->loop);
    tun_set_user(t, sid, f);
    ev_io_init(&f->io, on_target, fd, EV_READ);
    f->io.data = f;
    ev_io_start(x->loop, &f->io);
    ev_timer_init(&f->idle, on_idle, UDPSITE_IDLE_MAX_S, 0.);
    f->idle.data = f;
    ev_timer_start(x->loop, &f->idle);
    f->next = x->flows;
    if (x->flows)
        x->flows->prev = f;
    x->flows = f;
    x->st.flows++;
    x->st.flows_opened++;
    return 0;
}

udpsite_t *udpsite_new(struct ev_loop *loop)
{
    udpsite_t *x = xcalloc(1, sizeof(*x));
    x->loop = loop;
    return x;
}

void udpsite_destroy(udpsite_t **p)
{
    udpsite_t *x = p ? *p : NULL;
    if (!x)
        return;
    while (x->flows)
        flow_free(x->flows, true);
    free(x);
    *p = NULL;
}

void udpsite_stats(const udpsite_t *x, udpsite_stats_t *st)
{
    *st = x->st;
}
