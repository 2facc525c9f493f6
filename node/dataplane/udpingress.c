/* udpingress: a PoP's UDP resources (see udpingress.h).
 *
 * BACKGROUND. A UDP "connection" is a client address and port; there is no handshake, so the
 * first datagram from a new address and port starts a flow and only silence ends it. Each flow
 * gets a tunnel stream of its own rather than sharing one per resource: a stream is what the
 * data plane routes, relays, seals and fails over, and per-flow streams let the site keep one
 * connected socket per client, so the target sees one source port per client and its answers
 * find their way back without a table at the site.
 *
 * INVARIANTS.
 *   - A flow is in the table from its first datagram until it is freed; its stream state is
 *     one of: none (f->state FLOW_IDLE: opened on the next datagram), opening (the data plane
 *     holds f->h until on_open or on_fail), open, or failed (dropping until retry_at).
 *   - A flow freed while its stream is opening is only unlinked (f->zombie): the data plane
 *     still holds f->h, and on_open (reset the stream) or on_fail frees it.
 *   - Bytes from the stream are consumed at once: every datagram is sent or dropped in the
 *     call that delivers it, so a flow holds no receive buffer beyond one cut datagram. */
#include "node/dataplane/udpingress.h"

#include "common/clock.h"
#include "common/conncap.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/netaddr.h"
#include "common/xmalloc.h"
#include "node/dataplane/dataplane.h"
#include "node/dataplane/sitemsg.h"
#include "node/dataplane/udpframe.h"
#include "node/records/resource.h"
#include "tunnel/tunnel.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUCKETS 4096

enum flow_state { FLOW_IDLE, FLOW_OPENING, FLOW_OPEN, FLOW_FAILED };

struct ulisten;

struct flow {
    dp_stream_handler_t h; /* first: the stream's user pointer */
    udpin_t *u;
    struct ulisten *l;
    struct flow *next;            /* bucket chain */
    struct flow *lprev, *lnext;   /* the listener's flows */
    struct sockaddr_storage peer; /* the client */
    socklen_t plen;
    char client[NETADDR_MAX + 1]; /* "ip:port" */
    enum flow_state state;
    bool zombie; /* unlinked while opening: freed by on_open/on_fail */
    tconn_t *c;  /* FLOW_OPEN */
    uint64_t sid;
    udpframe_rx_t rx;
    udpframe_txq_t tx;
    uint64_t retry_at; /* ms (mono): FLOW_FAILED until then */
    ev_timer idle;
    ev_tstamp last; /* s (ev_now): the last datagram either way */
    conncap_slot_t *slot;
};

struct ulisten {
    udpin_t *u;
    struct ulisten *next;
    char resource[NODECFG_NAME_MAX + 1];
    uint16_t port;
    int fd; /* -1: not bound (retrying) */
    ev_io io;
    ev_timer retry;
    char ingress[NETADDR_MAX + 1]; /* the socket's address, for OPEN */
    double idle_s;                 /* s */
    uint32_t max_flows, nflows;
    struct flow *flows;
};

struct udpin {
    struct ev_loop *loop;
    dataplane_t *dp;
    store_t *store;
    const nodecfg_t *cfg;
    struct ulisten *ls;
    struct flow *bucket[BUCKETS];
    uint8_t hkey[crypto_shorthash_KEYBYTES];
    conncap_t *cap;
    uint8_t buf[UDPFRAME_PAYLOAD_MAX + 1];
    struct {
        uint64_t flows_opened, dg_in, dg_out, bytes_in, bytes_out;
        uint64_t oversize, queue_full, flow_cap, no_route, send_failed;
    } st;
    uint32_t nflows;
    uint64_t cap_log_ms, cap_unlogged;   /* ms (mono); flows capped since that line */
    uint64_t fail_log_ms, fail_unlogged; /* ms (mono); flows failed since that line */
};

static uint32_t bucket_of(const udpin_t *u, const struct ulisten *l, const struct sockaddr *sa,
                          socklen_t sl)
{
    uint8_t in[sizeof(struct sockaddr_storage) + sizeof(void *)], h[8];
    memcpy(in, &l, sizeof(void *));
    memcpy(in + sizeof(void *), sa, sl);
    crypto_shorthash(h, in, sizeof(void *) + sl, u->hkey);
    uint32_t v;
    memcpy(&v, h, 4);
    return v % BUCKETS;
}

static struct flow *flow_find(udpin_t *u, struct ulisten *l, const struct sockaddr *sa,
                              socklen_t sl, uint32_t b)
{
    for (struct flow *f = u->bucket[b]; f; f = f->next)
        if (f->l == l && f->plen == sl && !memcmp(&f->peer, sa, sl))
            return f;
    return NULL;
}

static void flow_unlink(struct flow *f)
{
    udpin_t *u = f->u;
    uint32_t b = bucket_of(u, f->l, (struct sockaddr *)&f->peer, f->plen);
    for (struct flow **pp = &u->bucket[b]; *pp; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    if (f->lprev)
        f->lprev->lnext = f->lnext;
    else
        f->l->flows = f->lnext;
    if (f->lnext)
        f->lnext->lprev = f->lprev;
    f->l->nflows--;
    u->nflows--;
    ev_timer_stop(u->loop, &f->idle);
    conncap_release(u->cap, f->slot);
    f->slot = NULL;
    udpframe_rx_free(&f->rx);
    udpframe_txq_free(&f->tx);
}

/* Ends a flow: its stream is reset (or, while it opens, reset when it opens). */
static void flow_end(struct flow *f)
{
    flow_unlink(f);
    if (f->state == FLOW_OPENING) {
        f->zombie = true;
        return;
    }
    if (f->state == FLOW_OPEN) {
        tun_t *t = tconn_tun(f->c);
        if (t)
            tun_reset(t, f->sid, TUN_ERR_NONE);
    }
    free(f);
}

static void flow_flush(struct flow *f)
{
    if (f->state != FLOW_OPEN)
        return;
    tun_t *t = tconn_tun(f->c);
    size_t n;
    const uint8_t *d = udpframe_txq_data(&f->tx, &n);
    if (!t || !n)
        return;
    ssize_t sent = tun_send(t, f->sid, d, n);
    if (sent > 0)
        udpframe_txq_sent(&f->tx, (size_t)sent);
}

static void on_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct flow *f = w->data;
    ev_tstamp left = f->last + f->l->idle_s - ev_now(loop);
    if (left > 0.001) { /* touched since: wait out the rest */
        w->repeat = left;
        ev_timer_again(loop, w);
        return;
    }
    flow_end(f);
}

/* ---- the stream's events (dp_stream_handler_t) ---------------------------------------------- */

static void dg_to_client(void *ctx, const uint8_t *p, size_t len)
{
    struct flow *f = ctx;
    udpin_t *u = f->u;
    if (f->l->fd < 0 ||
        sendto(f->l->fd, p, len, MSG_DONTWAIT, (struct sockaddr *)&f->peer, f->plen) < 0) {
        u->st.send_failed++;
        return;
    }
    u->st.dg_out++;
    u->st.bytes_out += len;
}

static void h_open(dp_stream_handler_t *h, tconn_t *c, uint64_t sid)
{
    struct flow *f = (struct flow *)h;
    if (f->zombie) {
        tun_reset(tconn_tun(c), sid, TUN_ERR_NONE);
        free(f);
        return;
    }
    f->state = FLOW_OPEN;
    f->c = c;
    f->sid = sid;
    memset(&f->rx, 0, sizeof(f->rx));
    flow_flush(f);
}

static void h_fail(dp_stream_handler_t *h, uint32_t code, const char *why)
{
    (void)code;
    struct flow *f = (struct flow *)h;
    if (f->zombie) {
        free(f);
        return;
    }
    size_t n;
    udpframe_txq_data(&f->tx, &n);
    if (n)
        f->u->st.no_route++;
    udpframe_txq_free(&f->tx);
    f->tx.cap = UDPIN_QUEUE_MAX;
    f->state = FLOW_FAILED;
    udpin_t *u = f->u;
    uint64_t now = clock_mono_ms();
    f->retry_at = now + UDPIN_RETRY_MS;
    /* One line a second at most: a site offline fails every flow, and clients keep sending. */
    if (now - u->fail_log_ms >= 1000) {
        log_warn("resource %s: UDP flow from %s: %s (%llu more flows failed since the last such "
                 "line)",
                 f->l->resource, f->client, why, (unsigned long long)u->fail_unlogged);
        u->fail_log_ms = now;
        u->fail_unlogged = 0;
    } else {
        u->fail_unlogged++;
    }
}

static void h_data(dp_stream_handler_t *h, tconn_t *c, uint64_t sid, const uint8_t *d, size_t n)
{
    struct flow *f = (struct flow *)h;
    tun_t *t = tconn_tun(c);
    if (f->zombie || f->state != FLOW_OPEN) {
        if (t)
            tun_consumed(t, sid, n);
        return;
    }
    f->last = ev_now(f->u->loop);
    int rc = udpframe_feed(&f->rx, d, n, dg_to_client, f);
    if (t)
        tun_consumed(t, sid, n);
    if (rc) {
        log_warn("resource %s: UDP flow from %s: the site sent a datagram over %d bytes: "
                 "stream reset",
                 f->l->resource, f->client, UDPFRAME_PAYLOAD_MAX);
        if (t)
            tun_reset(t, sid, TUN_ERR_PROTOCOL);
        f->state = FLOW_IDLE;
        udpframe_rx_free(&f->rx);
    }
}

/* The stream ended (the site closed it, its replica or a tunnel died): the next datagram
 * opens another, wherever the data plane routes it then. */
static void stream_gone(struct flow *f)
{
    if (f->zombie) {
        free(f);
        return;
    }
    if (f->state == FLOW_OPEN) {
        f->state = FLOW_IDLE;
        f->c = NULL;
        udpframe_rx_free(&f->rx);
        udpframe_txq_free(&f->tx);
        f->tx.cap = UDPIN_QUEUE_MAX;
    }
}

static void h_fin(dp_stream_handler_t *h, tconn_t *c, uint64_t sid)
{
    struct flow *f = (struct flow *)h;
    tun_t *t = tconn_tun(c);
    if (t)
        tun_reset(t, sid, TUN_ERR_NONE);
    stream_gone(f);
}

static void h_writable(dp_stream_handler_t *h, tconn_t *c, uint64_t sid)
{
    (void)c, (void)sid;
    flow_flush((struct flow *)h);
}

static void h_reset(dp_stream_handler_t *h, tconn_t *c, uint64_t sid, uint32_t code,
                    const char *msg, size_t ml)
{
    (void)c, (void)sid, (void)code, (void)msg, (void)ml;
    stream_gone((struct flow *)h);
}

static void h_closed(dp_stream_handler_t *h, tconn_t *c, uint64_t sid)
{
    (void)c, (void)sid;
    stream_gone((struct flow *)h);
}

/* ---- datagrams from clients ------------------------------------------------------------- */

static void flow_open_stream(struct flow *f)
{
    udpin_t *u = f->u;
    resource_t *r = xmalloc(sizeof(*r));
    int rc = resource_get(u->store, f->l->resource, r);
    if (!rc && r->udp_port) {
        /* The site must know these targets for UDP: the scheme says so all the way there. */
        for (unsigned i = 0; i < r->ntargets; i++) {
            char t[NODECFG_ADDR_MAX + 1];
            snprintf(t, sizeof(t), "%s%.*s", SM_UDP_SCHEME,
                     (int)(NODECFG_ADDR_MAX - RESOURCE_UDP_SCHEME_LEN), r->targets[i]);
            memcpy(r->targets[i], t, sizeof(t));
        }
        rc = dataplane_open_stream(u->dp, r, f->client, f->l->ingress, &f->h);
    } else if (!rc) {
        rc = -ENOENT;
    }
    free(r);
    if (rc) {
        h_fail(&f->h, 0,
               rc == -EPERM ? "this PoP may not take its traffic (labels)"
                            : "its site is unknown or offline");
        return;
    }
    f->state = FLOW_OPENING;
}

static struct flow *flow_new(udpin_t *u, struct ulisten *l, const struct sockaddr *sa, socklen_t sl,
                             uint32_t b)
{
    const char *why = NULL;
    conncap_slot_t *slot = NULL;
    if (l->nflows >= l->max_flows)
        why = "the resource's flow cap (udp_max_flows)";
    else
        slot = conncap_admit(u->cap, sa, &why); /* NULL: why says which cap */
    if (!slot) {
        u->st.flow_cap++;
        uint64_t now = clock_mono_ms();
        if (now - u->cap_log_ms >= 1000) {
            char a[NETADDR_MAX + 1];
            log_warn("resource %s: UDP datagram from %s dropped: %s is reached (%llu more since "
                     "the last such line)",
                     l->resource, netaddr_format(sa, a, sizeof(a)), why,
                     (unsigned long long)u->cap_unlogged);
            u->cap_log_ms = now;
            u->cap_unlogged = 0;
        } else {
            u->cap_unlogged++;
        }
        return NULL;
    }
    struct flow *f = xcalloc(1, sizeof(*f));
    f->u = u;
    f->l = l;
    memcpy(&f->peer, sa, sl);
    f->plen = sl;
    f->slot = slot;
    f->tx.cap = UDPIN_QUEUE_MAX;
    netaddr_format(sa, f->client, sizeof(f->client));
    f->h.on_open = h_open;
    f->h.on_fail = h_fail;
    f->h.on_data = h_data;
    f->h.on_fin = h_fin;
    f->h.on_writable = h_writable;
    f->h.on_reset = h_reset;
    f->h.on_closed = h_closed;
    f->next = u->bucket[b];
    u->bucket[b] = f;
    f->lnext = l->flows;
    if (l->flows)
        l->flows->lprev = f;
    l->flows = f;
    l->nflows++;
    u->nflows++;
    u->st.flows_opened++;
    f->last = ev_now(u->loop);
    ev_timer_init(&f->idle, on_idle, l->idle_s, 0.);
    f->idle.data = f;
    ev_timer_start(u->loop, &f->idle);
    return f;
}

/* Queues one datagram on its flow (made if need be). The flow to flush, or NULL. */
static struct flow *on_datagram(udpin_t *u, struct ulisten *l, const struct sockaddr *sa,
                                socklen_t sl, const uint8_t *p, size_t len)
{
    uint32_t b = bucket_of(u, l, sa, sl);
    struct flow *f = flow_find(u, l, sa, sl, b);
    if (!f && !(f = flow_new(u, l, sa, sl, b)))
        return NULL;
    f->last = ev_now(u->loop);
    if (f->state == FLOW_FAILED) {
        if (clock_mono_ms() < f->retry_at) {
            u->st.no_route++;
            return NULL;
        }
        f->state = FLOW_IDLE;
    }
    if (udpframe_txq_push(&f->tx, p, len)) {
        u->st.queue_full++;
        return NULL;
    }
    u->st.dg_in++;
    u->st.bytes_in += len;
    if (f->state == FLOW_IDLE)
        flow_open_stream(f);
    return f->state == FLOW_OPEN ? f : NULL;
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct ulisten *l = w->data;
    udpin_t *u = l->u;
    /* Flows that got datagrams in this burst, flushed once at its end: one tun_send (and so
     * one DATA frame and one seal per window's worth) for many datagrams, not one each. Nothing
     * frees a flow inside the burst. */
    struct flow *touched[UDPIN_BURST];
    int nt = 0;
    for (int i = 0; i < UDPIN_BURST && l->fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        /* MSG_TRUNC: the datagram's real length, so one too large is seen as such. */
        ssize_t n = recvfrom(l->fd, u->buf, sizeof(u->buf), MSG_TRUNC | MSG_DONTWAIT,
                             (struct sockaddr *)&ss, &sl);
        if (n < 0)
            break; /* EAGAIN, or an ICMP error reported on the socket: nothing to do */
        if ((size_t)n > UDPFRAME_PAYLOAD_MAX) {
            u->st.oversize++;
            continue;
        }
        struct flow *f = on_datagram(u, l, (struct sockaddr *)&ss, sl, u->buf, (size_t)n);
        if (f && (!nt || touched[nt - 1] != f)) {
            bool seen = false;
            for (int k = 0; k < nt && !seen; k++)
                seen = touched[k] == f;
            if (!seen)
                touched[nt++] = f;
        }
    }
    for (int k = 0; k < nt; k++)
        flow_flush(touched[k]);
}

/* ---- sockets ---------------------------------------------------------------------------- */

static int ulisten_bind(struct ulisten *l, bool log)
{
    udpin_t *u = l->u;
    const char *ip = u->cfg->ingress_address[0] ? u->cfg->ingress_address : "0.0.0.0";
    char addr[NODECFG_ADDR_MAX + 16];
    snprintf(addr, sizeof(addr), strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, l->port);
    struct sockaddr_storage ss;
    socklen_t sl;
    if (netaddr_sockaddr(addr, &ss, &sl)) {
        if (log)
            log_warn("resource %s: bad UDP address %s", l->resource, addr);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* No SO_REUSEADDR: UDP has no TIME_WAIT to step over, and on Linux it would let a second
     * socket (another resource, the PoP's name server) bind the same port and take part of
     * its datagrams. A port in use fails here and is retried. */
    int rb = UDPIN_RCVBUF;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rb, sizeof(rb));
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &rb, sizeof(rb));
    if (bind(fd, (struct sockaddr *)&ss, sl) < 0) {
        int e = errno;
        if (log)
            log_warn("resource %s: cannot bind UDP %s: %s (retrying every second)", l->resource,
                     addr, strerror(e));
        close(fd);
        return -e;
    }
    l->fd = fd;
    snprintf(l->ingress, sizeof(l->ingress), "%.*s", (int)sizeof(l->ingress) - 1, addr);
    ev_io_init(&l->io, on_readable, fd, EV_READ);
    l->io.data = l;
    ev_io_start(u->loop, &l->io);
    log_info("resource %s: listening on UDP %s", l->resource, addr);
    return 0;
}

static void on_bind_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct ulisten *l = w->data;
    if (l->fd < 0 && ulisten_bind(l, false) == 0)
        ev_timer_stop(loop, w);
}

static void ulisten_free(udpin_t *u, struct ulisten *l)
{
    while (l->flows)
        flow_end(l->flows);
    ev_timer_stop(u->loop, &l->retry);
    if (l->fd >= 0) {
        ev_io_stop(u->loop, &l->io);
        close(l->fd);
    }
    free(l);
}

void udpin_apply(udpin_t *u, const char *name, const resource_t *r, bool here)
{
    struct ulisten **lp = &u->ls;
    while (*lp && strcmp((*lp)->resource, name))
        lp = &(*lp)->next;
    struct ulisten *l = *lp;
    bool want = r && r->udp_port && here;
    if (l && (!want || l->port != r->udp_port)) {
        log_info("resource %s: UDP port %u closed", l->resource, l->port);
        *lp = l->next;
        ulisten_free(u, l);
        l = NULL;
    }
    if (!want)
        return;
    if (!l) {
        l = xcalloc(1, sizeof(*l));
        l->u = u;
        l->fd = -1;
        l->port = r->udp_port;
        snprintf(l->resource, sizeof(l->resource), "%s", name);
        ev_timer_init(&l->retry, on_bind_retry, 1., 1.);
        l->retry.data = l;
        l->next = u->ls;
        u->ls = l;
        const char *dns = u->cfg->dns_listen;
        const char *colon = dns[0] ? strrchr(dns, ':') : NULL;
        if (colon && (uint16_t)atoi(colon + 1) == r->udp_port) {
            log_warn("resource %s: udp port %u is this PoP's DNS port: not listening for it", name,
                     r->udp_port);
        } else if (ulisten_bind(l, true)) {
            ev_timer_start(u->loop, &l->retry);
        }
    }
    /* Settings apply to flows from now on (an idle timer re-reads idle_s when it fires). */
    l->idle_s = r->udp_idle_s ? r->udp_idle_s : RESOURCE_UDP_IDLE_DEFAULT;
    l->max_flows = r->udp_max_flows ? r->udp_max_flows : RESOURCE_UDP_FLOWS_DEFAULT;
}

static uint32_t test_knob(uint32_t dflt, const char *knob)
{
    const char *v = getenv(knob);
    if (!v || !*v)
        return dflt;
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (*end || x == 0 || x > UDPIN_FLOWS_MAX) {
        log_warn("udp: ignoring %s=%s (want 1..%u)", knob, v, UDPIN_FLOWS_MAX);
        return dflt;
    }
    log_warn("udp: TEST KNOB: %s=%lu (for tests only)", knob, x);
    return (uint32_t)x;
}

udpin_t *udpin_new(struct ev_loop *loop, dataplane_t *dp, store_t *store, const nodecfg_t *cfg)
{
    udpin_t *u = xcalloc(1, sizeof(*u));
    u->loop = loop;
    u->dp = dp;
    u->store = store;
    u->cfg = cfg;
    randombytes_buf(u->hkey, sizeof(u->hkey));
    u->cap =
        conncap_new(UDPIN_FLOWS_MAX, test_knob(UDPIN_FLOWS_PER_ADDR, "POPMESH_TEST_UDP_PER_IP"));
    return u;
}

void udpin_destroy(udpin_t **up)
{
    udpin_t *u = up ? *up : NULL;
    if (!u)
        return;
    while (u->ls) {
        struct ulisten *l = u->ls;
        u->ls = l->next;
        ulisten_free(u, l);
    }
    conncap_destroy(&u->cap);
    free(u);
    *up = NULL;
}

void udpin_pack_status(const udpin_t *u, msgpack_packer *pk)
{
    mpw_kv_u64(pk, "udp_flows", u->nflows);
    mpw_kv_u64(pk, "udp_flows_opened", u->st.flows_opened);
    mpw_kv_u64(pk, "udp_datagrams_in", u->st.dg_in);
    mpw_kv_u64(pk, "udp_datagrams_out", u->st.dg_out);
    mpw_kv_u64(pk, "udp_bytes_in", u->st.bytes_in);
    mpw_kv_u64(pk, "udp_bytes_out", u->st.bytes_out);
    mpw_str(pk, "udp_dropped");
    msgpack_pack_map(pk, 5);
    mpw_kv_u64(pk, "oversize", u->st.oversize);
    mpw_kv_u64(pk, "queue_full", u->st.queue_full);
    mpw_kv_u64(pk, "flow_cap", u->st.flow_cap);
    mpw_kv_u64(pk, "no_route", u->st.no_route);
    mpw_kv_u64(pk, "send_failed", u->st.send_failed);
}

void udpin_listeners(const udpin_t *u, uint32_t *configured, uint32_t *bound)
{
    for (const struct ulisten *l = u->ls; l; l = l->next) {
        (*configured)++;
        *bound += l->fd >= 0;
    }
}
