#include "node/membership/meshnet.h"

#include "common/log.h"
#include "common/netaddr.h"
#include "common/xmalloc.h"
#include "node/membership/zsock_watch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <zmq.h>

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define ZAP_DOMAIN   "popmesh"

struct peer {
    uint64_t id;
    void *sock;       /* DEALER */
    zsock_watch_t *w; /* reads what the peer sends back on it (the peer's back channel) */
    char addr[272];   /* "host:port" it is connected to */
    uint8_t pk[32];   /* its CURVE server key */
    double last_used; /* ev_now of the last send attempt, s */
    double last_ok;   /* ev_now of the last accepted send (or creation), s */
    double last_rx;   /* ev_now of the last message the peer sent back on it (it could not
                       * dial us), s; 0: none */
};

/* A member's connection to our ROUTER, learned from its messages: the way back to a peer we
 * cannot dial (its firewall takes no inbound connections). */
struct back {
    uint64_t id;
    uint8_t rid[MESHNET_RID_MAX];
    size_t rid_len;
    double seen;        /* ev_now of its last message, s */
    double last_direct; /* ev_now of our last send that went through a DEALER to it, s */
    double last_back;   /* ev_now of our last send that went back through this, s */
    double back_since;  /* ev_now of the first send of the current run that went back (none
                         * through a DEALER since), s */
};

/* One inbound connection on the ROUTER, as the socket monitor reported it. */
struct conn {
    int fd;
    struct sockaddr_in6 addr; /* peer address, IPv4 as IPv4-mapped IPv6; zero if unknown */
};

struct meshnet {
    struct ev_loop *loop;
    void *zctx;
    void *router;
    void *zap;
    void *mon; /* PAIR receiving the ROUTER's monitor events */
    zsock_watch_t *router_w;
    zsock_watch_t *zap_w;
    zsock_watch_t *mon_w;
    struct conn *conns; /* MESHNET_MAX_CONNS; linear scans: one per accept or close */
    unsigned nconns;
    unsigned bound_port;    /* the ROUTER's TCP port, to recognise its accepted fds */
    double zap_log_at;      /* ev_now of the last "refused key" log line, s */
    unsigned zap_log_quiet; /* refusals not logged since then */
    double cap_log_at;      /* ev_now of the last "connection cap" log line, s */
    unsigned cap_log_quiet;
    uint8_t pk[32], sk[32];
    meshnet_cb_t cb;
    struct peer *peers; /* small array: linear scan is fine up to MESHNET_MAX_PEERS */
    unsigned npeers;
    struct back *backs; /* MESHNET_MAX_PEERS, least recently seen replaced first */
    unsigned nbacks;
    ev_timer idle;
    char bound[300];
    meshnet_stats_t stats;
};

static int set_int(void *s, int opt, int v)
{
    return zmq_setsockopt(s, opt, &v, sizeof(v));
}

/* ZMQ_MAXMSGSIZE is the one int64_t option we set. */
static int set_max_msg(void *s)
{
    int64_t v = MESHNET_MSG_MAX;
    return zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &v, sizeof(v));
}

/* ---- ZAP (RFC 27): one request = 7+ frames; one reply = 6 frames ------------------------ */

static int zap_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    meshnet_t *m = ctx;
    zmq_msg_t f[8];
    int n = 0, more = 1;
    /* Read every frame of the request even if it is malformed, so the next request starts
     * on a frame boundary. */
    while (more) {
        zmq_msg_t tmp;
        zmq_msg_init(&tmp);
        if (zmq_msg_recv(&tmp, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&tmp);
            break;
        }
        more = zmq_msg_more(&tmp);
        if (n < 8)
            f[n++] = tmp;
        else
            zmq_msg_close(&tmp);
    }
    char user_id[MESHNET_USER_ID_MAX] = "";
    int admit = 0;
    const char *status = "400", *text = "unknown key";
    /* frames: version, request id, domain, address, identity, mechanism, credentials... */
    if (n >= 7 && zmq_msg_size(&f[5]) == 5 && memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 &&
        zmq_msg_size(&f[6]) == 32) {
        admit = m->cb.authorize(m->cb.ctx, zmq_msg_data(&f[6]), user_id);
        user_id[MESHNET_USER_ID_MAX - 1] = '\0';
    } else {
        text = "only CURVE is accepted";
    }
    if (admit) {
        status = "200";
        text = "OK";
        m->stats.zap_admitted++;
    } else {
        char hex[65] = "?";
        if (n >= 7 && zmq_msg_size(&f[6]) == 32)
            sodium_bin2hex(hex, sizeof(hex), zmq_msg_data(&f[6]), 32);
        /* Anyone who can reach the port can make a refusal: one line per second at most, so
         * a stranger cannot fill the disk through our log. */
        double now = ev_now(m->loop);
        if (now - m->zap_log_at >= 1.0) {
            log_info("mesh: refused connection from unregistered key %.16s… (%u more since "
                     "the last report)",
                     hex, m->zap_log_quiet);
            m->zap_log_at = now;
            m->zap_log_quiet = 0;
        } else {
            m->zap_log_quiet++;
        }
        m->stats.zap_refused++;
        user_id[0] = '\0';
    }
    if (n >= 2) {
        zmq_send(sock, "1.0", 3, ZMQ_SNDMORE);
        zmq_send(sock, zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), ZMQ_SNDMORE);
        zmq_send(sock, status, 3, ZMQ_SNDMORE);
        zmq_send(sock, text, strlen(text), ZMQ_SNDMORE);
        zmq_send(sock, user_id, strlen(user_id), ZMQ_SNDMORE);
        zmq_send(sock, "", 0, 0);
        zsock_watch_recheck(w);
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
    return 0;
}

/* ---- back channels --------------------------------------------------------------------------
 *
 * A member that takes no inbound connections (an on-prem PoP behind a firewall) can still
 * dial us, and a ROUTER can answer on any connection it holds. So every member message that
 * arrives on the ROUTER records its routing id under the sender's id (the ZAP user id
 * "n:<16 hex>", from the authenticated handshake), and a send our DEALER cannot make (not
 * connected: with IMMEDIATE that is EAGAIN at once) goes back that way. The other end reads
 * its DEALERs (dealer_readable). ROUTER_MANDATORY makes a send on a routing id whose
 * connection has gone fail (EHOSTUNREACH) instead of vanishing: the entry is dropped then. A
 * zero-length message is a keepalive (meshnet_keep): it only refreshes the entry. */

static struct back *back_find(const meshnet_t *m, uint64_t id)
{
    for (unsigned i = 0; i < m->nbacks; i++)
        if (m->backs[i].id == id)
            return &m->backs[i];
    return NULL;
}

static void back_note(meshnet_t *m, const char *uid, const void *rid, size_t rid_len)
{
    if (uid[0] != 'n' || uid[1] != ':' || rid_len == 0 || rid_len > MESHNET_RID_MAX)
        return;
    uint64_t id = strtoull(uid + 2, NULL, 16);
    if (!id)
        return;
    struct back *b = back_find(m, id);
    if (!b) {
        if (m->nbacks < MESHNET_MAX_PEERS) {
            b = &m->backs[m->nbacks++];
        } else { /* the one heard from longest ago makes room */
            b = &m->backs[0];
            for (unsigned i = 1; i < m->nbacks; i++)
                if (m->backs[i].seen < b->seen)
                    b = &m->backs[i];
        }
        memset(b, 0, sizeof(*b));
        b->id = id;
    }
    memcpy(b->rid, rid, rid_len);
    b->rid_len = rid_len;
    b->seen = ev_now(m->loop);
}

static void back_drop(meshnet_t *m, struct back *b)
{
    *b = m->backs[--m->nbacks];
}

/* Sends msg back on peer_id's connection to our ROUTER: 0, -EAGAIN (none known, or its queue
 * is full) or -EHOSTUNREACH (it has gone; forgotten). */
static int back_send(meshnet_t *m, uint64_t peer_id, const uint8_t *msg, size_t len)
{
    struct back *b = back_find(m, peer_id);
    if (!b || !b->rid_len)
        return -EAGAIN;
    int rc = 0;
    if (zmq_send(m->router, b->rid, b->rid_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0 ||
        zmq_send(m->router, msg, len, ZMQ_DONTWAIT) < 0) {
        rc = -zmq_errno();
        if (rc == -EHOSTUNREACH)
            back_drop(m, b);
    } else {
        double now = ev_now(m->loop);
        if (b->last_back <= b->last_direct || b->back_since == 0)
            b->back_since = now; /* a run of sends going back starts */
        b->last_back = now;
        m->stats.sent_back++;
    }
    zsock_watch_recheck(m->router_w);
    return rc;
}

/* ---- ROUTER: [routing id][body] ------------------------------------------------------------ */

static int router_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    meshnet_t *m = ctx;
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    if (zmq_msg_recv(&rid, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
        return 0;
    }
    int ok = zmq_msg_more(&rid) && zmq_msg_recv(&body, sock, ZMQ_DONTWAIT) >= 0;
    /* Discard any further frames: our protocol is one frame per message. */
    int extra = ok && zmq_msg_more(&body);
    while (extra) {
        zmq_msg_t t;
        zmq_msg_init(&t);
        if (zmq_msg_recv(&t, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&t);
            break;
        }
        extra = zmq_msg_more(&t);
        zmq_msg_close(&t);
        ok = 0;
    }
    if (ok) {
        const char *uid = zmq_msg_gets(&body, "User-Id");
        m->stats.received++;
        m->stats.bytes_received += zmq_msg_size(&body);
        if (uid && uid[0])
            back_note(m, uid, zmq_msg_data(&rid), zmq_msg_size(&rid));
        if (uid && uid[0] && zmq_msg_size(&body)) /* empty: a keepalive, nothing to deliver */
            m->cb.receive(m->cb.ctx, uid, zmq_msg_data(&rid), zmq_msg_size(&rid),
                          zmq_msg_data(&body), zmq_msg_size(&body));
    }
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
    return 0;
}

/* ---- inbound connection caps --------------------------------------------------------------
 *
 * libzmq accepts every connection on a bound socket and offers no cap. The monitor reports
 * each accepted fd (ZMQ_EVENT_ACCEPTED) and each one that ends (ZMQ_EVENT_DISCONNECTED, both
 * with the fd as value, in order), which is enough to count connections per peer address and
 * shut down (never close: the fd stays libzmq's) the ones over a cap. libzmq then sees the
 * connection fail and reports it as disconnected like any other.
 *
 * The events arrive asynchronously: by the time one is read here, libzmq may already have
 * closed that fd and the number may name another socket. So before shutting an fd down we
 * check it is a TCP socket whose local port is the mesh port (never our DEALERs, the control
 * socket or a tunnel); at worst another fresh inbound mesh connection is refused, and its
 * peer dials again. */

static bool same_addr(const struct sockaddr_in6 *a, const struct sockaddr_in6 *b)
{
    return memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
}

static void peer_addr_of(int fd, struct sockaddr_in6 *out)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(out, 0, sizeof(*out));
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    out->sin6_family = AF_INET6;
    if (ss.ss_family == AF_INET6) {
        out->sin6_addr = ((struct sockaddr_in6 *)&ss)->sin6_addr;
    } else if (ss.ss_family == AF_INET) {
        /* ::ffff:a.b.c.d, so one comparison covers both families */
        out->sin6_addr.s6_addr[10] = 0xff;
        out->sin6_addr.s6_addr[11] = 0xff;
        memcpy(&out->sin6_addr.s6_addr[12], &((struct sockaddr_in *)&ss)->sin_addr, 4);
    }
}

static bool is_mesh_fd(const meshnet_t *m, int fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
        return false;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port) == m->bound_port;
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) == m->bound_port;
    return false;
}

static void conn_refuse(meshnet_t *m, int fd, const struct sockaddr_in6 *a, const char *why)
{
    if (is_mesh_fd(m, fd))
        shutdown(fd, SHUT_RDWR);
    m->stats.conns_refused++;
    double now = ev_now(m->loop);
    if (now - m->cap_log_at >= 1.0) {
        char txt[INET6_ADDRSTRLEN] = "?";
        if (a->sin6_family)
            inet_ntop(AF_INET6, &a->sin6_addr, txt, sizeof(txt));
        log_warn("mesh: refused a connection from %s: %s (%u more since the last report)", txt, why,
                 m->cap_log_quiet);
        m->cap_log_at = now;
        m->cap_log_quiet = 0;
    } else {
        m->cap_log_quiet++;
    }
}

static void conn_accepted(meshnet_t *m, int fd)
{
    struct sockaddr_in6 a;
    peer_addr_of(fd, &a);
    if (m->nconns >= MESHNET_MAX_CONNS) {
        conn_refuse(m, fd, &a, "too many connections on the mesh port");
        return;
    }
    unsigned same = 0;
    for (unsigned i = 0; i < m->nconns; i++)
        if (a.sin6_family && same_addr(&m->conns[i].addr, &a))
            same++;
    if (same >= MESHNET_MAX_CONNS_PER_ADDR) {
        conn_refuse(m, fd, &a, "too many connections from that address");
        return;
    }
    m->conns[m->nconns].fd = fd;
    m->conns[m->nconns].addr = a;
    m->nconns++;
    m->stats.conns = m->nconns;
}

static void conn_ended(meshnet_t *m, int fd)
{
    for (unsigned i = 0; i < m->nconns; i++) {
        if (m->conns[i].fd == fd) {
            m->conns[i] = m->conns[--m->nconns];
            m->stats.conns = m->nconns;
            return;
        }
    }
}

/* Monitor message: frame 1 = u16 event + u32 value (native order), frame 2 = endpoint. */
static int mon_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    meshnet_t *m = ctx;
    uint8_t head[6] = {0};
    int n = 0, more = 1, first = 1;
    while (more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            return 0;
        }
        if (first && zmq_msg_size(&f) == sizeof(head)) {
            memcpy(head, zmq_msg_data(&f), sizeof(head));
            n = 1;
        }
        first = 0;
        more = zmq_msg_more(&f);
        zmq_msg_close(&f);
    }
    (void)w;
    if (!n)
        return 0;
    uint16_t event;
    uint32_t value;
    memcpy(&event, head, 2);
    memcpy(&value, head + 2, 4);
    if (event == ZMQ_EVENT_ACCEPTED)
        conn_accepted(m, (int)value);
    else if (event == ZMQ_EVENT_DISCONNECTED)
        conn_ended(m, (int)value);
    return 0;
}

/* ---- DEALER pool ---------------------------------------------------------------------------- */

static void peer_close(meshnet_t *m, unsigned i)
{
    zsock_watch_destroy(&m->peers[i].w);
    zmq_close(m->peers[i].sock);
    m->peers[i] = m->peers[--m->npeers];
    m->stats.peers = m->npeers;
}

/* A message the peer sent back on our DEALER (it could not dial us): from that peer, whose
 * key the DEALER pinned in its CURVE handshake. */
static int dealer_readable(zsock_watch_t *w, void *sock, void *ctx)
{
    meshnet_t *m = ctx;
    zmq_msg_t body;
    zmq_msg_init(&body);
    if (zmq_msg_recv(&body, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body);
        return 0;
    }
    bool ok = !zmq_msg_more(&body);
    while (zmq_msg_more(&body)) { /* one frame per message: drop the rest */
        zmq_msg_close(&body);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&body, sock, ZMQ_DONTWAIT) < 0)
            break;
    }
    struct peer *p = NULL;
    for (unsigned i = 0; i < m->npeers && !p; i++)
        if (m->peers[i].sock == sock)
            p = &m->peers[i];
    if (ok && p) /* a keepalive counts too: it came this way because the peer cannot dial */
        p->last_rx = ev_now(m->loop);
    if (ok && p && zmq_msg_size(&body)) {
        char uid[24];
        snprintf(uid, sizeof(uid), "n:%016llx", (unsigned long long)p->id);
        m->stats.received++;
        m->stats.received_back++;
        m->stats.bytes_received += zmq_msg_size(&body);
        m->cb.receive(m->cb.ctx, uid, NULL, 0, zmq_msg_data(&body), zmq_msg_size(&body));
    }
    zmq_msg_close(&body);
    (void)w;
    return 0;
}

static struct peer *peer_open(meshnet_t *m, uint64_t id, const char *addr, const uint8_t pk[32])
{
    if (m->npeers == MESHNET_MAX_PEERS) {
        unsigned lru = 0;
        for (unsigned i = 1; i < m->npeers; i++)
            if (m->peers[i].last_used < m->peers[lru].last_used)
                lru = i;
        peer_close(m, lru);
    }
    char endpoint[300];
    if (netaddr_zmq_endpoint(addr, endpoint, sizeof(endpoint))) {
        log_warn("mesh: cannot connect to '%s': not a HOST:PORT", addr);
        return NULL;
    }
    void *s = zmq_socket(m->zctx, ZMQ_DEALER);
    if (!s)
        return NULL;
    set_int(s, ZMQ_IPV6, 1); /* or libzmq refuses an IPv6 peer ("No such device") */
    set_int(s, ZMQ_LINGER, 0);
    set_int(s, ZMQ_IMMEDIATE, 1);
    set_int(s, ZMQ_SNDHWM, 1000);
    set_int(s, ZMQ_RECONNECT_IVL, 100);
    set_int(s, ZMQ_RECONNECT_IVL_MAX,
            500); /* a refused or dead peer is retried often enough for SWIM */
    set_int(s, ZMQ_TCP_KEEPALIVE, 1);
    /* Answers normally come to our ROUTER; a peer that cannot dial us sends them back on
     * this DEALER (back channels, above), read as they come, bounded like the ROUTER. */
    set_int(s, ZMQ_RCVHWM, 1000);
    set_max_msg(s);
    set_int(s, ZMQ_HANDSHAKE_IVL, MESHNET_HANDSHAKE_MS);
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, pk, 32) ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, m->pk, 32) ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, m->sk, 32) || zmq_connect(s, endpoint) != 0) {
        log_warn("mesh: cannot connect to %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    zsock_watch_t *w = zsock_watch_new(m->loop, s, 64, dealer_readable, m);
    if (!w) {
        zmq_close(s);
        return NULL;
    }
    struct peer *p = &m->peers[m->npeers++];
    m->stats.peers = m->npeers;
    p->id = id;
    p->sock = s;
    p->w = w;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    memcpy(p->pk, pk, 32);
    p->last_used = p->last_ok = ev_now(m->loop);
    return p;
}

int meshnet_send(meshnet_t *m, uint64_t peer_id, const char *addr, const uint8_t peer_pk[32],
                 const uint8_t *msg, size_t len, unsigned flags)
{
    if (flags & MESHNET_NO_DIAL) { /* it takes no inbound connections: only the way back */
        int rc = back_send(m, peer_id, msg, len);
        if (rc) {
            m->stats.send_dropped++;
            return rc;
        }
        m->stats.sent++;
        m->stats.bytes_sent += len;
        return 0;
    }
    struct peer *p = NULL;
    for (unsigned i = 0; i < m->npeers; i++) {
        if (m->peers[i].id != peer_id)
            continue;
        if (strcmp(m->peers[i].addr, addr) == 0 && memcmp(m->peers[i].pk, peer_pk, 32) == 0)
            p = &m->peers[i];
        else
            peer_close(m, i); /* moved or re-keyed: reconnect */
        break;
    }
    if (!p && !(p = peer_open(m, peer_id, addr, peer_pk)))
        return back_send(m, peer_id, msg, len) == 0 ? 0 : -EIO;
    double now = ev_now(m->loop);
    p->last_used = now;
    int src = zmq_send(p->sock, msg, len, ZMQ_DONTWAIT);
    zsock_watch_recheck(p->w);
    if (src < 0) {
        int e = zmq_errno();
        /* With IMMEDIATE, EAGAIN means "no completed connection". libzmq retries refused TCP
         * connects by itself, but a handshake the peer refused (its ZAP handler did not know
         * our key yet, e.g. right after we joined) ends that connection for good: the DEALER
         * would stay silent forever. So a DEALER that has not taken a message for
         * MESHNET_REDIAL_MS is replaced by a fresh one. */
        if (e == EAGAIN && (now - p->last_ok) * 1000 > MESHNET_REDIAL_MS) {
            unsigned idx = (unsigned)(p - m->peers);
            char a[sizeof(p->addr)];
            uint8_t k[32];
            memcpy(a, p->addr, sizeof(a));
            memcpy(k, p->pk, 32);
            peer_close(m, idx);
            if (peer_open(m, peer_id, a, k))
                m->stats.redials++;
        }
        /* Not connected: the peer may be one that cannot be dialled but dials us. */
        if (e == EAGAIN && back_send(m, peer_id, msg, len) == 0) {
            m->stats.sent++;
            m->stats.bytes_sent += len;
            return 0;
        }
        m->stats.send_dropped++;
        return -e;
    }
    struct back *b = back_find(m, peer_id);
    if (b)
        b->last_direct = now;
    p->last_ok = now;
    m->stats.sent++;
    m->stats.bytes_sent += len;
    return 0;
}

void meshnet_keep(meshnet_t *m, uint64_t peer_id, const char *addr, const uint8_t peer_pk[32])
{
    struct peer *p = NULL;
    for (unsigned i = 0; i < m->npeers && !p; i++)
        if (m->peers[i].id == peer_id && !strcmp(m->peers[i].addr, addr) &&
            !memcmp(m->peers[i].pk, peer_pk, 32))
            p = &m->peers[i];
    double now = ev_now(m->loop);
    if (p && (now - p->last_used) * 1000 < MESHNET_KEEPALIVE_MS)
        return;
    /* An empty message: the peer learns (or refreshes) the way back to us, and the DEALER
     * counts as used, so the idle check leaves it. */
    meshnet_send(m, peer_id, addr, peer_pk, (const uint8_t *)"", 0, 0);
}

enum meshnet_path meshnet_path(const meshnet_t *m, uint64_t peer_id)
{
    for (unsigned i = 0; i < m->nbacks; i++) {
        const struct back *b = &m->backs[i];
        if (b->id != peer_id)
            continue;
        /* the way our last sends went */
        if (b->last_back > b->last_direct)
            return MESHNET_PATH_BACK;
        return b->last_direct > 0 ? MESHNET_PATH_DIRECT : MESHNET_PATH_UNKNOWN;
    }
    for (unsigned i = 0; i < m->npeers; i++)
        if (m->peers[i].id == peer_id && m->peers[i].last_ok > 0)
            return MESHNET_PATH_DIRECT;
    return MESHNET_PATH_UNKNOWN;
}

bool meshnet_one_way(const meshnet_t *m, uint64_t peer_id)
{
    const struct back *b = back_find(m, peer_id);
    double now = ev_now(m->loop);
    /* Going back now (the last send did), for long enough, and still in use: a peer we no
     * longer send to says nothing about its firewall. */
    return b && b->last_back > b->last_direct && b->back_since > 0 &&
           (now - b->back_since) * 1000 >= MESHNET_ONE_WAY_MS &&
           (now - b->last_back) * 1000 < MESHNET_ONE_WAY_MS;
}

bool meshnet_cannot_dial_us(const meshnet_t *m, uint64_t peer_id)
{
    double now = ev_now(m->loop);
    for (unsigned i = 0; i < m->npeers; i++)
        if (m->peers[i].id == peer_id && m->peers[i].last_rx > 0 &&
            (now - m->peers[i].last_rx) * 1000 < MESHNET_ONE_WAY_MS)
            return true;
    return false;
}

int meshnet_reply(meshnet_t *m, const uint8_t *rid, size_t rid_len, const uint8_t *msg, size_t len)
{
    if (zmq_send(m->router, rid, rid_len, ZMQ_DONTWAIT | ZMQ_SNDMORE) < 0 ||
        zmq_send(m->router, msg, len, ZMQ_DONTWAIT) < 0) {
        int e = zmq_errno();
        m->stats.send_dropped++;
        zsock_watch_recheck(m->router_w);
        return -e;
    }
    m->stats.sent++;
    m->stats.bytes_sent += len;
    zsock_watch_recheck(m->router_w);
    return 0;
}

void meshnet_forget(meshnet_t *m, uint64_t peer_id)
{
    for (unsigned i = 0; i < m->npeers; i++) {
        if (m->peers[i].id == peer_id) {
            peer_close(m, i);
            return;
        }
    }
}

static void on_idle_check(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshnet_t *m = t->data;
    double now = ev_now(loop);
    for (unsigned i = 0; i < m->npeers;) {
        if (now - m->peers[i].last_used > MESHNET_IDLE_MS / 1000.0)
            peer_close(m, i);
        else
            i++;
    }
}

const char *meshnet_bound(const meshnet_t *m)
{
    return m->bound;
}

void meshnet_get_stats(const meshnet_t *m, meshnet_stats_t *st)
{
    *st = m->stats;
}

meshnet_t *meshnet_new(struct ev_loop *loop, void *zctx, const char *listen,
                       const uint8_t curve_pk[32], const uint8_t curve_sk[32],
                       const meshnet_cb_t *cb, char *err, size_t errlen)
{
    meshnet_t *m = xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->zctx = zctx;
    m->cb = *cb;
    memcpy(m->pk, curve_pk, 32);
    memcpy(m->sk, curve_sk, 32);
    m->peers = xcalloc(MESHNET_MAX_PEERS, sizeof(*m->peers));
    m->backs = xcalloc(MESHNET_MAX_PEERS, sizeof(*m->backs));
    m->conns = xcalloc(MESHNET_MAX_CONNS, sizeof(*m->conns));
    char endpoint[300];

    /* The ZAP handler must be bound before any CURVE server socket binds, or libzmq admits
     * connections without asking anyone. */
    m->zap = zmq_socket(zctx, ZMQ_REP);
    if (!m->zap || set_int(m->zap, ZMQ_LINGER, 0) || zmq_bind(m->zap, ZAP_ENDPOINT) != 0) {
        snprintf(err, errlen, "cannot start the ZAP handler: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    m->zap_w = zsock_watch_new(loop, m->zap, 64, zap_readable, m);

    if (netaddr_zmq_endpoint(listen, endpoint, sizeof(endpoint))) {
        snprintf(err, errlen, "cannot listen on '%s' for the mesh: not a HOST:PORT", listen);
        goto fail;
    }
    m->router = zmq_socket(zctx, ZMQ_ROUTER);
    /* ZMQ_IPV6: an IPv6 address binds at all, and "[::]" takes IPv4 peers too (libzmq turns
     * IPV6_V6ONLY off with it). */
    if (!m->router || set_int(m->router, ZMQ_IPV6, 1) || set_int(m->router, ZMQ_LINGER, 0) ||
        set_int(m->router, ZMQ_ROUTER_MANDATORY, 1) || set_int(m->router, ZMQ_CURVE_SERVER, 1) ||
        set_int(m->router, ZMQ_RCVHWM, 10000) || set_max_msg(m->router) ||
        set_int(m->router, ZMQ_HANDSHAKE_IVL, MESHNET_HANDSHAKE_MS) ||
        zmq_setsockopt(m->router, ZMQ_CURVE_SECRETKEY, curve_sk, 32) ||
        zmq_setsockopt(m->router, ZMQ_ZAP_DOMAIN, ZAP_DOMAIN, strlen(ZAP_DOMAIN))) {
        snprintf(err, errlen, "cannot set up the mesh socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    /* The monitor before the bind, so no accepted connection goes uncounted. */
    char monep[64];
    snprintf(monep, sizeof(monep), "inproc://popmesh-meshnet-monitor-%p", (void *)m);
    m->mon = zmq_socket(zctx, ZMQ_PAIR);
    if (!m->mon || set_int(m->mon, ZMQ_LINGER, 0) ||
        zmq_socket_monitor(m->router, monep, ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED) ||
        zmq_connect(m->mon, monep) != 0) {
        snprintf(err, errlen, "cannot monitor the mesh socket: %s", zmq_strerror(zmq_errno()));
        goto fail;
    }
    m->mon_w = zsock_watch_new(loop, m->mon, 256, mon_readable, m);
    if (zmq_bind(m->router, endpoint) != 0) {
        snprintf(err, errlen, "cannot listen on %s for the mesh: %s", listen,
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    char last[300];
    size_t ll = sizeof(last);
    if (zmq_getsockopt(m->router, ZMQ_LAST_ENDPOINT, last, &ll) != 0 ||
        netaddr_from_zmq(last, m->bound, sizeof(m->bound)) != 0)
        snprintf(m->bound, sizeof(m->bound), "%s", listen);
    netaddr_t b;
    m->bound_port = netaddr_parse(m->bound, &b, true) == 0 ? b.port : 0;
    m->router_w = zsock_watch_new(loop, m->router, 256, router_readable, m);
    if (!m->zap_w || !m->router_w || !m->mon_w) {
        snprintf(err, errlen, "cannot watch the mesh sockets");
        goto fail;
    }
    ev_timer_init(&m->idle, on_idle_check, 10.0, 10.0);
    m->idle.data = m;
    ev_timer_start(loop, &m->idle);
    return m;
fail:
    meshnet_destroy(&m);
    return NULL;
}

void meshnet_destroy(meshnet_t **mp)
{
    if (!mp || !*mp)
        return;
    meshnet_t *m = *mp;
    ev_timer_stop(m->loop, &m->idle);
    zsock_watch_destroy(&m->router_w);
    zsock_watch_destroy(&m->zap_w);
    zsock_watch_destroy(&m->mon_w);
    while (m->npeers)
        peer_close(m, 0);
    if (m->router) {
        if (m->mon)
            zmq_socket_monitor(m->router, NULL, 0);
        zmq_close(m->router);
    }
    if (m->mon)
        zmq_close(m->mon);
    if (m->zap)
        zmq_close(m->zap);
    sodium_memzero(m->sk, sizeof(m->sk));
    free(m->peers);
    free(m->backs);
    free(m->conns);
    free(m);
    *mp = NULL;
}
