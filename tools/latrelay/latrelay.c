/* latrelay: a user-space TCP relay that adds latency, for tests on machines without tc netem.
 *
 *   latrelay --listen HOST:PORT --to HOST:PORT --delay MS [--control PATH]
 *
 *   --listen HOST:PORT  where to accept connections (IPv6 as [::1]:PORT; port 0 picks one,
 *                       printed on the ready line; an empty HOST means every address)
 *   --to HOST:PORT      where each accepted connection is relayed to (resolved once, at start)
 *   --delay MS          added to every byte in each direction (0..3600000), so a round trip
 *                       through the relay takes 2 x MS longer
 *   --control PATH      a "name = value" file read at start (if it exists) and on SIGHUP:
 *                           delay = MS      the new delay, applied at once to queued bytes too
 *                           down = 0|1      1: reset every connection and refuse new ones
 *                                           (the listening socket is closed); 0: accept again
 *                       A setting missing from the file keeps its current value; a file with
 *                       any error changes nothing.
 *
 * Ready when it prints "latrelay: listening on HOST:PORT ..." to stderr; each control file it
 * applies prints "latrelay: control: delay = MS ms, down = 0|1". SIGTERM or SIGINT closes
 * everything and exits 0. Bad arguments exit 2 with the reason; a runtime failure exits 1.
 *
 * HOW IT WORKS
 *
 * Each accepted connection gets its own outgoing connection to --to, and the two sockets are
 * joined by two flows, one per direction. A flow is a FIFO of chunks: every read(2) from the
 * source becomes one chunk stamped with its arrival time (CLOCK_MONOTONIC, in us), and a
 * chunk may be written to the destination once arrival + delay has passed. Arrival times grow
 * along the queue and every chunk shares the same delay, so the head is always the first
 * chunk due: one ev_timer per flow, armed for the head, is all the scheduling there is (libev
 * keeps its timers in a heap, so 1000 connections are 2000 timers and cheap). Delivery
 * writes every chunk already due in one sendmsg, and waits for EV_WRITE when the destination
 * is full.
 *
 * Because a changed delay applies to the arrival stamps already queued, lowering it releases
 * bytes at once and raising it holds back bytes not yet written; order never changes.
 *
 * End of stream travels the same queue as data. EOF from the source appends a FIN marker:
 * when it comes due, after every byte read before it was written, the relay calls
 * shutdown(SHUT_WR) on the destination, so half-close works each way and the FIN is delayed
 * like a packet would be. A reset (ECONNRESET or any other read error from the source, or a
 * write error such as EPIPE on a destination) appends an RST marker to the flow leaving the
 * dead side and drops the flow going to it, which can never be delivered; when the marker
 * comes due the other side is closed with SO_LINGER 0, i.e. with an RST. The connection is
 * freed when both FINs have been delivered or an RST has.
 *
 * MEMORY
 *
 * A flow holds at most FLOW_MAX_QUEUED bytes, counting each chunk's header as well as its
 * data (so a sender trickling single bytes cannot turn 4 MiB into 100 MB of headers). At the
 * limit the relay stops reading the source, whose kernel buffers then fill and TCP flow
 * control slows the sender: backpressure, not loss. Throughput is therefore bounded by about
 * FLOW_MAX_QUEUED / delay per direction (200 MiB/s at 20 ms), and memory by 2 x 4 MiB per
 * connection plus one shared read buffer.
 *
 * Not simulated: loss, reordering, bandwidth limits, and the TCP handshake (the client's
 * connect completes at once; the relay connects to --to when it accepts, and resets the
 * client if that fails or takes longer than CONNECT_TIMEOUT). */
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>

#include "common/clock.h"
#include "common/kvfile.h"
#include "common/xmalloc.h"

#define FLOW_MAX_QUEUED   (4u << 20)   /* bytes per flow, data + chunk headers */
#define READ_MAX          (256u << 10) /* bytes per read(2) */
#define WRITE_IOV         64           /* chunks per sendmsg */
#define READS_PER_EVENT   4 /* reads per EV_READ, so one busy flow cannot starve others */
#define ACCEPTS_PER_EVENT 64
#define DELAY_MAX_MS      3600000u
#define CONNECT_TIMEOUT   10.0 /* s */
#define LISTEN_RETRY      1.0  /* s, after EMFILE or a failed re-bind */
#define CONTROL_MAX_BYTES 65536
#define ADDR_STR          (INET6_ADDRSTRLEN + 16) /* "[addr]:port" */

enum chunk_kind { CHUNK_DATA, CHUNK_FIN, CHUNK_RST };

struct chunk {
    struct chunk *next;
    uint64_t arrival; /* us, CLOCK_MONOTONIC, when read from the source */
    uint32_t len;     /* bytes of data (0 for FIN and RST) */
    uint32_t off;     /* bytes of data already written */
    uint8_t kind;     /* enum chunk_kind */
    char data[];
};
#define CHUNK_OVERHEAD sizeof(struct chunk) /* bytes charged per chunk besides its data */

struct conn;

/* One direction of a connection: conn->fd[from] -> conn->fd[1 - from]. */
struct flow {
    struct conn *conn;
    int from;                  /* index of the source in conn->fd */
    struct chunk *head, *tail; /* FIFO, oldest first */
    size_t queued;             /* bytes: data + CHUNK_OVERHEAD per chunk */
    bool src_closed;           /* EOF or reset seen on the source, or dropped: no more reads */
    bool fin_sent;             /* shutdown(SHUT_WR) done on the destination */
    ev_timer timer;            /* fires when the head chunk is due */
};

struct relay;

struct conn {
    struct relay *relay;
    struct conn *prev, *next; /* relay->conns */
    int fd[2];                /* 0: the accepted client; 1: our connection to --to */
    ev_io rd[2];              /* EV_READ on fd[i]: the source of flow[i] */
    ev_io wr[2];              /* EV_WRITE on fd[i]: the destination of flow[1 - i] */
    struct flow flow[2];      /* flow[i]: fd[i] -> fd[1 - i] */
    bool connecting;          /* fd[1]'s connect() has not completed; wr[1] waits for it */
    bool reset;               /* an RST marker is queued: the connection is going away */
    ev_timer connect_timer;
};

struct relay {
    struct ev_loop *loop;
    struct sockaddr_storage listen_addr; /* after the first bind: the bound address */
    socklen_t listen_len;
    struct sockaddr_storage to_addr;
    socklen_t to_len;
    char listen_name[ADDR_STR], to_name[ADDR_STR];
    int listen_fd; /* -1 while down */
    ev_io listen_io;
    ev_timer listen_retry; /* re-bind after a failure, or resume accepting after EMFILE */
    uint32_t delay_ms;
    bool down;
    const char *control_path; /* NULL: no control file */
    struct conn *conns;
    size_t nconns;
    char *scratch;             /* READ_MAX bytes, shared by every read */
    uint64_t accepted, failed; /* connections: total, dial to --to failed */
    uint64_t bytes[2];         /* bytes delivered: [0] client -> to, [1] to -> client */
    ev_signal sighup, sigterm, sigint;
};

/* ---- sockets ------------------------------------------------------------------------------ */

static void set_nodelay(int fd)
{
    /* The relay writes chunks as they come due; with Nagle a second small write would wait
     * for the ACK of the first (and the peer's delayed ACK), adding latency we did not ask for. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Closes fd with an RST instead of a FIN. */
static void close_with_reset(int fd)
{
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd);
}

static void addr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN], port[8];
    if (getnameinfo(sa, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    snprintf(out, outlen, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* Parses HOST:PORT ([v6]:PORT for IPv6) and resolves it to the first address. An empty HOST is
 * the wildcard address when passive, an error otherwise. 0 or -EINVAL with err set. */
static int addr_parse(const char *arg, bool passive, struct sockaddr_storage *ss, socklen_t *len,
                      char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(arg, ':');
    if (!colon || colon[1] == '\0') {
        snprintf(err, errlen, "'%s': expected HOST:PORT", arg);
        return -EINVAL;
    }
    const char *h = arg;
    size_t hlen = (size_t)(colon - arg);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    } else if (memchr(h, ':', hlen)) {
        snprintf(err, errlen, "'%s': write an IPv6 address in brackets, as [::1]:PORT", arg);
        return -EINVAL;
    }
    if (hlen >= sizeof(host)) {
        snprintf(err, errlen, "'%s': host name too long", arg);
        return -EINVAL;
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || errno || port > 65535 || colon[1] == '-' || colon[1] == '+' ||
        (port == 0 && !passive)) {
        snprintf(err, errlen, "'%s': port must be %s..65535", arg, passive ? "0" : "1");
        return -EINVAL;
    }
    if (hlen == 0 && !passive) {
        snprintf(err, errlen, "'%s': a host is required", arg);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
    struct addrinfo *res;
    int rc = getaddrinfo(hlen ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "'%s': cannot resolve '%s': %s", arg, host, gai_strerror(rc));
        return -EINVAL;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Parses a delay in ms: digits only, at most DELAY_MAX_MS. */
static int delay_parse(const char *s, size_t len, uint32_t *ms)
{
    uint64_t v = 0;
    if (len == 0 || len > 10)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > DELAY_MAX_MS)
        return -EINVAL;
    *ms = (uint32_t)v;
    return 0;
}

/* ---- flows -------------------------------------------------------------------------------- */

static bool flow_pump(struct flow *f);
static void conn_free(struct conn *c, bool with_reset);

static void flow_append(struct flow *f, enum chunk_kind kind, const char *data, uint32_t len)
{
    struct chunk *ch = xmalloc(sizeof(*ch) + len);
    ch->next = NULL;
    ch->arrival = clock_mono_us();
    ch->len = len;
    ch->off = 0;
    ch->kind = (uint8_t)kind;
    if (len)
        memcpy(ch->data, data, len);
    if (f->tail)
        f->tail->next = ch;
    else
        f->head = ch;
    f->tail = ch;
    f->queued += CHUNK_OVERHEAD + len;
}

static void flow_pop(struct flow *f)
{
    struct chunk *ch = f->head;
    f->head = ch->next;
    if (!f->head)
        f->tail = NULL;
    f->queued -= CHUNK_OVERHEAD + ch->len;
    free(ch);
}

/* Forgets everything queued and stops reading the source: for a flow whose destination is
 * gone, and on teardown. */
static void flow_drop(struct flow *f)
{
    struct conn *c = f->conn;
    while (f->head)
        flow_pop(f);
    ev_timer_stop(c->relay->loop, &f->timer);
    ev_io_stop(c->relay->loop, &c->rd[f->from]);
    f->src_closed = true;
}

/* Side s of the connection is dead (its peer reset, or it cannot be written). What was read
 * from it still goes out, followed by an RST; what was going to it is dropped. Returns true if
 * the connection was freed. */
static bool conn_side_reset(struct conn *c, int s)
{
    struct ev_loop *loop = c->relay->loop;
    if (c->connecting || c->reset) {
        conn_free(c, true);
        return true;
    }
    c->reset = true;
    ev_io_stop(loop, &c->rd[s]);
    ev_io_stop(loop, &c->wr[s]);
    flow_drop(&c->flow[1 - s]);
    struct flow *out = &c->flow[s];
    out->src_closed = true;
    flow_append(out, CHUNK_RST, NULL, 0);
    return flow_pump(out);
}

/* Writes every chunk that is due, then arms the timer for the next one or waits for EV_WRITE.
 * Returns true if the connection was freed. */
static bool flow_pump(struct flow *f)
{
    struct conn *c = f->conn;
    struct relay *r = c->relay;
    int to = 1 - f->from;
    uint64_t delay = (uint64_t)r->delay_ms * 1000;

    ev_timer_stop(r->loop, &f->timer);
    while (f->head) {
        uint64_t now = clock_mono_us();
        if (f->head->arrival + delay > now) {
            ev_timer_set(&f->timer, (double)(f->head->arrival + delay - now) / 1e6, 0.);
            ev_timer_start(r->loop, &f->timer);
            return false;
        }
        if (c->connecting)
            return false; /* on_connected pumps */
        if (f->head->kind == CHUNK_RST) {
            conn_free(c, true);
            return true;
        }
        if (f->head->kind == CHUNK_FIN) {
            shutdown(c->fd[to], SHUT_WR);
            flow_pop(f);
            f->fin_sent = true;
            if (c->flow[0].fin_sent && c->flow[1].fin_sent) {
                conn_free(c, false);
                return true;
            }
            continue;
        }
        struct iovec iov[WRITE_IOV];
        int n = 0;
        size_t want = 0;
        for (struct chunk *ch = f->head; ch && n < WRITE_IOV; ch = ch->next) {
            if (ch->kind != CHUNK_DATA || ch->arrival + delay > now)
                break;
            iov[n].iov_base = ch->data + ch->off;
            iov[n].iov_len = ch->len - ch->off;
            want += iov[n].iov_len;
            n++;
        }
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd[to], &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                ev_io_start(r->loop, &c->wr[to]);
                return false;
            }
            return conn_side_reset(c, to);
        }
        r->bytes[f->from] += (uint64_t)w;
        size_t left = (size_t)w;
        while (left) {
            struct chunk *ch = f->head;
            size_t rest = ch->len - ch->off;
            if (left < rest) {
                ch->off += (uint32_t)left;
                break;
            }
            left -= rest;
            flow_pop(f);
        }
        if (!f->src_closed && !ev_is_active(&c->rd[f->from]) &&
            f->queued + CHUNK_OVERHEAD + READ_MAX <= FLOW_MAX_QUEUED)
            ev_io_start(r->loop, &c->rd[f->from]); /* backpressure released */
        if ((size_t)w < want) {
            ev_io_start(r->loop, &c->wr[to]);
            return false;
        }
    }
    if (!c->connecting) /* while connecting, wr[1] waits for the connect */
        ev_io_stop(r->loop, &c->wr[to]);
    return false;
}

/* Reads what the source has, up to the flow's limit. */
static void flow_read(struct flow *f)
{
    struct conn *c = f->conn;
    struct relay *r = c->relay;
    int fd = c->fd[f->from];
    for (int i = 0; i < READS_PER_EVENT; i++) {
        if (f->queued + CHUNK_OVERHEAD >= FLOW_MAX_QUEUED) {
            ev_io_stop(r->loop, &c->rd[f->from]); /* full: flow_pump restarts us */
            return;
        }
        size_t room = FLOW_MAX_QUEUED - f->queued - CHUNK_OVERHEAD;
        ssize_t n = recv(fd, r->scratch, room < READ_MAX ? room : READ_MAX, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            conn_side_reset(c, f->from);
            return;
        }
        bool was_empty = f->head == NULL;
        if (n == 0) {
            f->src_closed = true;
            ev_io_stop(r->loop, &c->rd[f->from]);
            flow_append(f, CHUNK_FIN, NULL, 0);
        } else {
            flow_append(f, CHUNK_DATA, r->scratch, (uint32_t)n);
        }
        /* A non-empty queue already has its timer armed or waits for EV_WRITE or connect. */
        if (was_empty && flow_pump(f))
            return;
        if (n == 0)
            return;
    }
}

/* ---- connections -------------------------------------------------------------------------- */

static void conn_free(struct conn *c, bool with_reset)
{
    struct relay *r = c->relay;
    for (int i = 0; i < 2; i++) {
        flow_drop(&c->flow[i]);
        ev_io_stop(r->loop, &c->wr[i]);
    }
    ev_timer_stop(r->loop, &c->connect_timer);
    for (int i = 0; i < 2; i++) {
        if (with_reset)
            close_with_reset(c->fd[i]);
        else
            close(c->fd[i]);
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        r->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    r->nconns--;
    free(c);
}

static void on_connected(struct conn *c)
{
    struct relay *r = c->relay;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        fprintf(stderr, "latrelay: cannot connect to %s: %s; resetting the client\n", r->to_name,
                strerror(err));
        r->failed++;
        conn_free(c, true);
        return;
    }
    c->connecting = false;
    ev_timer_stop(r->loop, &c->connect_timer);
    ev_io_stop(r->loop, &c->wr[1]);
    if (!c->flow[1].src_closed)
        ev_io_start(r->loop, &c->rd[1]);
    flow_pump(&c->flow[0]);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    flow_read(&c->flow[w == &c->rd[0] ? 0 : 1]);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    int i = w == &c->wr[0] ? 0 : 1;
    if (i == 1 && c->connecting)
        on_connected(c);
    else
        flow_pump(&c->flow[1 - i]);
}

static void on_flow_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    flow_pump(w->data);
}

static void on_connect_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = w->data;
    fprintf(stderr, "latrelay: cannot connect to %s: no answer in %.0f s; resetting the client\n",
            c->relay->to_name, CONNECT_TIMEOUT);
    c->relay->failed++;
    conn_free(c, true);
}

/* Takes ownership of client (a connected, non-blocking socket) and dials --to for it. */
static void conn_new(struct relay *r, int client)
{
    int out = socket(r->to_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (out < 0) {
        fprintf(stderr, "latrelay: socket: %s; resetting the client\n", strerror(errno));
        r->failed++;
        close_with_reset(client);
        return;
    }
    set_nodelay(client);
    set_nodelay(out);
    struct conn *c = xcalloc(1, sizeof(*c));
    c->relay = r;
    c->fd[0] = client;
    c->fd[1] = out;
    for (int i = 0; i < 2; i++) {
        ev_io_init(&c->rd[i], on_read, c->fd[i], EV_READ);
        ev_io_init(&c->wr[i], on_write, c->fd[i], EV_WRITE);
        c->rd[i].data = c->wr[i].data = c;
        struct flow *f = &c->flow[i];
        f->conn = c;
        f->from = i;
        ev_init(&f->timer, on_flow_timer);
        f->timer.data = f;
    }
    ev_timer_init(&c->connect_timer, on_connect_timeout, CONNECT_TIMEOUT, 0.);
    c->connect_timer.data = c;
    c->next = r->conns;
    if (r->conns)
        r->conns->prev = c;
    r->conns = c;
    r->nconns++;

    if (connect(out, (struct sockaddr *)&r->to_addr, r->to_len) == 0) {
        ev_io_start(r->loop, &c->rd[0]);
        ev_io_start(r->loop, &c->rd[1]);
        return;
    }
    if (errno != EINPROGRESS) {
        fprintf(stderr, "latrelay: cannot connect to %s: %s; resetting the client\n", r->to_name,
                strerror(errno));
        r->failed++;
        conn_free(c, true);
        return;
    }
    /* Read the client at once: its bytes are stamped when they arrive, not when we connect. */
    c->connecting = true;
    ev_io_start(r->loop, &c->rd[0]);
    ev_io_start(r->loop, &c->wr[1]);
    ev_timer_start(r->loop, &c->connect_timer);
}

/* ---- listening ---------------------------------------------------------------------------- */

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    struct relay *r = w->data;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        int fd = accept4(r->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                fprintf(stderr, "latrelay: accept: %s; pausing for %.0f s\n", strerror(errno),
                        LISTEN_RETRY);
                ev_io_stop(loop, &r->listen_io);
                ev_timer_set(&r->listen_retry, LISTEN_RETRY, 0.);
                ev_timer_start(loop, &r->listen_retry);
            }
            return; /* EAGAIN, or a connection that died in the backlog */
        }
        r->accepted++;
        conn_new(r, fd);
    }
}

/* Binds and listens on r->listen_addr; the first call replaces a port 0 with the port given,
 * so a re-bind after down = 0 comes back on the same one. */
static int listener_open(struct relay *r, char *err, size_t errlen)
{
    int fd = socket(r->listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&r->listen_addr, r->listen_len) < 0 ||
        listen(fd, SOMAXCONN) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s: %s", r->listen_name, strerror(e));
        close(fd);
        return -e;
    }
    r->listen_len = sizeof(r->listen_addr);
    getsockname(fd, (struct sockaddr *)&r->listen_addr, &r->listen_len);
    addr_format((struct sockaddr *)&r->listen_addr, r->listen_len, r->listen_name,
                sizeof(r->listen_name));
    r->listen_fd = fd;
    ev_io_set(&r->listen_io, fd, EV_READ);
    ev_io_start(r->loop, &r->listen_io);
    return 0;
}

static void listener_close(struct relay *r)
{
    ev_io_stop(r->loop, &r->listen_io);
    ev_timer_stop(r->loop, &r->listen_retry);
    if (r->listen_fd >= 0)
        close(r->listen_fd);
    r->listen_fd = -1;
}

static void on_listen_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct relay *r = w->data;
    if (r->down)
        return;
    if (r->listen_fd >= 0) {
        ev_io_start(loop, &r->listen_io); /* after EMFILE */
        return;
    }
    char err[256];
    if (listener_open(r, err, sizeof(err)) < 0) {
        fprintf(stderr, "latrelay: %s; retrying in %.0f s\n", err, LISTEN_RETRY);
        ev_timer_set(w, LISTEN_RETRY, 0.);
        ev_timer_start(loop, w);
        return;
    }
    fprintf(stderr, "latrelay: listening again on %s\n", r->listen_name);
}

/* ---- control file ------------------------------------------------------------------------- */

struct control_settings {
    uint32_t delay_ms;
    bool down;
};

static int control_setting(const char *name, size_t nlen, const char *value, size_t vlen, void *ctx,
                           char *err, size_t errlen)
{
    struct control_settings *s = ctx;
    if (kvfile_is(name, nlen, "delay")) {
        if (delay_parse(value, vlen, &s->delay_ms) < 0) {
            snprintf(err, errlen, "delay wants milliseconds, 0..%u, not '%.*s'", DELAY_MAX_MS,
                     (int)vlen, value);
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "down")) {
        if (vlen != 1 || (value[0] != '0' && value[0] != '1')) {
            snprintf(err, errlen, "down wants 0 or 1, not '%.*s'", (int)vlen, value);
            return -EINVAL;
        }
        s->down = value[0] == '1';
        return 0;
    }
    snprintf(err, errlen, "unknown setting '%.*s' (known: delay, down)", (int)nlen, name);
    return -EINVAL;
}

/* Reads the control file over the current settings into *s. 0, -ENOENT, or -errno with err. */
static int control_read(const struct relay *r, struct control_settings *s, char *err, size_t errlen)
{
    FILE *fp = fopen(r->control_path, "r");
    if (!fp) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", r->control_path, strerror(e));
        return -e;
    }
    char *text = xmalloc(CONTROL_MAX_BYTES + 1);
    size_t len = fread(text, 1, CONTROL_MAX_BYTES + 1, fp);
    int rc = 0;
    if (ferror(fp)) {
        rc = -EIO;
        snprintf(err, errlen, "%s: read error", r->control_path);
    } else if (len > CONTROL_MAX_BYTES) {
        rc = -EFBIG;
        snprintf(err, errlen, "%s: larger than %d bytes", r->control_path, CONTROL_MAX_BYTES);
    } else {
        s->delay_ms = r->delay_ms;
        s->down = r->down;
        char why[256];
        rc = kvfile_parse(text, len, control_setting, s, why, sizeof(why));
        if (rc)
            snprintf(err, errlen, "%s: %s", r->control_path, why);
    }
    free(text);
    fclose(fp);
    return rc;
}

static void relay_apply(struct relay *r, const struct control_settings *s)
{
    bool delay_changed = s->delay_ms != r->delay_ms;
    r->delay_ms = s->delay_ms;
    if (s->down && !r->down) {
        r->down = true;
        listener_close(r);
        size_t n = r->nconns;
        while (r->conns)
            conn_free(r->conns, true);
        fprintf(stderr, "latrelay: down: reset %zu connections, refusing new ones\n", n);
    } else if (!s->down && r->down) {
        r->down = false;
        char err[256];
        if (listener_open(r, err, sizeof(err)) < 0) {
            fprintf(stderr, "latrelay: %s; retrying in %.0f s\n", err, LISTEN_RETRY);
            ev_timer_set(&r->listen_retry, LISTEN_RETRY, 0.);
            ev_timer_start(r->loop, &r->listen_retry);
        } else {
            fprintf(stderr, "latrelay: up: listening again on %s\n", r->listen_name);
        }
    }
    if (delay_changed) {
        /* Queued chunks keep their arrival stamps: re-arm every flow for the new delay. */
        struct conn *next;
        for (struct conn *c = r->conns; c; c = next) {
            next = c->next;
            if (!flow_pump(&c->flow[0]))
                flow_pump(&c->flow[1]);
        }
    }
    fprintf(stderr, "latrelay: control: delay = %u ms, down = %d\n", r->delay_ms, r->down);
}

static void on_sighup(struct ev_loop *loop, ev_signal *w, int revents)
{
    struct relay *r = w->data;
    if (!r->control_path) {
        fprintf(stderr, "latrelay: SIGHUP ignored: no --control file\n");
        return;
    }
    struct control_settings s;
    char err[512];
    if (control_read(r, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "latrelay: control file not applied: %s\n", err);
        return;
    }
    relay_apply(r, &s);
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
    fprintf(stderr, "latrelay: %s: stopping\n", strsignal(w->signum));
    ev_break(loop, EVBREAK_ALL);
}

/* ---- main --------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: latrelay --listen HOST:PORT --to HOST:PORT --delay MS [--control PATH]\n"
            "  --listen HOST:PORT  accept here ([::1]:PORT for IPv6; port 0 picks one)\n"
            "  --to HOST:PORT      relay each connection to here\n"
            "  --delay MS          add MS ms to every byte in each direction (0..%u)\n"
            "  --control PATH      file of 'delay = MS' and 'down = 0|1', read at start and "
            "on SIGHUP\n",
            DELAY_MAX_MS);
}

/* A thousand connections are two thousand sockets: more than the usual soft limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'}, {"to", required_argument, NULL, 't'},
        {"delay", required_argument, NULL, 'd'},  {"control", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    struct relay r = {.listen_fd = -1};
    const char *listen_arg = NULL, *to_arg = NULL;
    bool delay_set = false;
    char err[512];
    int ch;
    while ((ch = getopt_long(argc, argv, "l:t:d:c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'l':
            listen_arg = optarg;
            break;
        case 't':
            to_arg = optarg;
            break;
        case 'd':
            if (delay_parse(optarg, strlen(optarg), &r.delay_ms) < 0) {
                fprintf(stderr, "latrelay: --delay wants milliseconds, 0..%u, not '%s'\n",
                        DELAY_MAX_MS, optarg);
                return 2;
            }
            delay_set = true;
            break;
        case 'c':
            r.control_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "latrelay: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!listen_arg || !to_arg || !delay_set) {
        fprintf(stderr, "latrelay: %s is required\n",
                !listen_arg ? "--listen"
                : !to_arg   ? "--to"
                            : "--delay");
        usage(stderr);
        return 2;
    }
    if (addr_parse(listen_arg, true, &r.listen_addr, &r.listen_len, err, sizeof(err)) < 0) {
        fprintf(stderr, "latrelay: --listen %s\n", err);
        return 2;
    }
    if (addr_parse(to_arg, false, &r.to_addr, &r.to_len, err, sizeof(err)) < 0) {
        fprintf(stderr, "latrelay: --to %s\n", err);
        return 2;
    }
    addr_format((struct sockaddr *)&r.listen_addr, r.listen_len, r.listen_name,
                sizeof(r.listen_name));
    addr_format((struct sockaddr *)&r.to_addr, r.to_len, r.to_name, sizeof(r.to_name));
    struct control_settings initial = {.delay_ms = r.delay_ms};
    if (r.control_path) {
        int rc = control_read(&r, &initial, err, sizeof(err));
        if (rc < 0 && rc != -ENOENT) {
            fprintf(stderr, "latrelay: --control %s\n", err);
            return 2;
        }
    }

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    r.loop = ev_default_loop(EVFLAG_AUTO);
    if (!r.loop) {
        fprintf(stderr, "latrelay: cannot initialise libev\n");
        return 1;
    }
    r.scratch = xmalloc(READ_MAX);
    ev_init(&r.listen_io, on_accept);
    r.listen_io.data = &r;
    ev_init(&r.listen_retry, on_listen_retry);
    r.listen_retry.data = &r;
    r.delay_ms = initial.delay_ms;
    r.down = initial.down;
    int rc = 0;
    /* Bind even when starting down: a bad address fails now, and a port 0 gets the port that
     * down = 0 will bind again. */
    if (listener_open(&r, err, sizeof(err)) < 0) {
        fprintf(stderr, "latrelay: %s\n", err);
        rc = 1;
        goto out;
    }
    if (r.down)
        listener_close(&r);
    ev_signal_init(&r.sighup, on_sighup, SIGHUP);
    ev_signal_init(&r.sigterm, on_stop, SIGTERM);
    ev_signal_init(&r.sigint, on_stop, SIGINT);
    r.sighup.data = r.sigterm.data = r.sigint.data = &r;
    ev_signal_start(r.loop, &r.sighup);
    ev_signal_start(r.loop, &r.sigterm);
    ev_signal_start(r.loop, &r.sigint);
    fprintf(stderr, "latrelay: listening on %s, relaying to %s with %u ms each way%s\n",
            r.listen_name, r.to_name, r.delay_ms, r.down ? " (down: refusing connections)" : "");

    ev_run(r.loop, 0);

    fprintf(stderr,
            "latrelay: %llu connections (%llu could not reach %s), %llu bytes to it, %llu "
            "back\n",
            (unsigned long long)r.accepted, (unsigned long long)r.failed, r.to_name,
            (unsigned long long)r.bytes[0], (unsigned long long)r.bytes[1]);
    while (r.conns)
        conn_free(r.conns, false);
    ev_signal_stop(r.loop, &r.sighup);
    ev_signal_stop(r.loop, &r.sigterm);
    ev_signal_stop(r.loop, &r.sigint);
out:
    listener_close(&r);
    free(r.scratch);
    ev_loop_destroy(r.loop);
    return rc;
}
