/* healthcheck: TCP and HTTP health checks of a site's targets, driven by a libev loop.
 *
 * BACKGROUND
 *
 * popsite must not route users to a target that is down, and must notice quickly when it comes
 * back, without ever stalling its loop (which also carries the tunnels). A check is therefore a
 * small state machine on two watchers, and nothing in it waits: connect is non-blocking, the
 * request is sent as the socket accepts it, the response is read as it arrives and fed to an
 * incremental parser, and one ev_timer bounds the whole run. Names are not resolved here at all
 * (getaddrinfo blocks; see ADDRESSES in the header).
 *
 * BEHAVIOR
 *
 * Each check (target, kind, path) owns:
 *  - timer: while idle it is the start of the next run; while a run is in flight it is that
 *    run's timeout. One watcher, so a run can never overlap the next one.
 *  - io: the run's socket, EV_WRITE while connecting and sending, EV_READ while reading.
 * A run goes IDLE -> CONNECTING -> (HTTP: SENDING -> READING) -> run_end(), which closes the
 * socket, records the result, updates the rise/fall counters, schedules the next run and, as
 * its very last action, calls on_change if hc_healthy() of the check flipped. Because nothing
 * touches the check or the hc_t after that call, on_change may call hc_set (removing this very
 * check) or hc_destroy. libev clears a stopped watcher's pending events, so freeing a check
 * whose watchers are stopped is safe even in the middle of an iteration.
 *
 * The response is parsed by libhttp-parser, paused in on_headers_complete of the first final
 * (non-1xx, or 101) response: the body is never read. Both the socket path and the pure
 * hc_parse_response() go through resp_feed(), so the fuzzer explores the code that runs. At most
 * HC_RESPONSE_MAX bytes are read per run, so a target cannot make us buffer or parse more.
 *
 * Unknown counts as usable: a site that just started should not refuse every connection for
 * rise intervals. The cost is that a dead target is offered until its first failed run
 * (<= one interval plus the timeout), which is also what happens when a healthy target dies. */
#include "node/site/healthcheck.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/netaddr.h"
#include "common/rng.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define HC_DEFAULT_INTERVAL_MS 1000
#define HC_DEFAULT_TIMEOUT_MS  800
#define HC_DEFAULT_RISE        2
#define HC_DEFAULT_FALL        1
#define HC_MAX_INTERVAL_MS     86400000u
#define HC_MAX_TIMEOUT_MS      600000u
#define HC_MAX_RISE_FALL       1000u
#define HC_READ_CHUNK          4096 /* bytes per recv */

/* ---- the response parser ------------------------------------------------------------------- */

struct hc_resp {
    http_parser parser;
    size_t received; /* bytes fed so far, <= HC_RESPONSE_MAX */
    int status;      /* the final response's status, once done */
    bool done;       /* the final response's headers have ended */
    const char *why; /* static text, once the response is known to be bad */
};

static int resp_on_headers_complete(http_parser *p)
{
    struct hc_resp *r = p->data;
    unsigned status = p->status_code;

    if (status >= 100 && status <= 199 && status != 101)
        return 1; /* interim (100 Continue, 103 Early Hints): no body, the final one follows */
    r->status = (int)status;
    r->done = true;
    http_parser_pause(p, 1); /* stop here: the body is none of our business */
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_headers_complete = resp_on_headers_complete,
};

static void resp_init(struct hc_resp *r)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
}

/* Feeds the next len bytes of the response. Once COMPLETE or BAD, the answer sticks. */
static enum hc_parse resp_feed(struct hc_resp *r, const uint8_t *buf, size_t len)
{
    if (r->done)
        return HC_PARSE_COMPLETE;
    if (r->why)
        return HC_PARSE_BAD;
    size_t room = HC_RESPONSE_MAX - r->received;
    size_t take = len < room ? len : room;
    if (take > 0) {
        /* http_parser_execute treats len 0 as end of stream: never call it with 0. */
        size_t used = http_parser_execute(&r->parser, &resp_settings, (const char *)buf, take);
        r->received += take;
        if (r->done)
            return HC_PARSE_COMPLETE;
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e != HPE_OK) {
            r->why = http_errno_description(e);
            return HC_PARSE_BAD;
        }
        if (used != take) {
            r->why = "parser stopped before the end of the headers";
            return HC_PARSE_BAD;
        }
    }
    if (r->received >= HC_RESPONSE_MAX) {
        r->why = "headers longer than 16384 bytes";
        return HC_PARSE_BAD;
    }
    return HC_PARSE_NEED_MORE;
}

enum hc_parse hc_parse_response(const uint8_t *buf, size_t len, int *status)
{
    struct hc_resp r;

    resp_init(&r);
    enum hc_parse res = resp_feed(&r, buf, len);
    if (res == HC_PARSE_COMPLETE && status)
        *status = r.status;
    return res;
}

/* ---- targets -------------------------------------------------------------------------------- */

struct hc_addr {
    struct sockaddr_storage ss;
    socklen_t len;
    char host_header[HC_TARGET_MAX + 16]; /* the target without an IPv6 zone (room for gcc) */
};

/* The grammar is common/netaddr's, so a target popd accepts in a resource is one a check can
 * run against; what it adds: IPv6 zones (netaddr has none), "localhost" in any case, and no
 * names. */
static int parse_target(const char *s, struct hc_addr *a, const char **why)
{
    if (!s) {
        *why = "no target";
        return -EINVAL;
    }
    size_t len = strnlen(s, HC_TARGET_MAX + 1);
    if (len == 0 || len > HC_TARGET_MAX) {
        *why = len ? "target longer than 96 bytes" : "empty target";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] <= ' ' || s[i] > '~') {
            *why = "target has a space, control or non-ASCII character";
            return -EINVAL;
        }
    }
    /* "[fe80::1%eth0]:80": netaddr parses it without its zone; getaddrinfo reads the zone. */
    char plain[HC_TARGET_MAX + 1], zone[HC_TARGET_MAX + 1] = "";
    const char *pct = s[0] == '[' ? strchr(s, '%') : NULL, *rb = strchr(s, ']');
    if (pct && rb && pct < rb) {
        snprintf(zone, sizeof(zone), "%.*s", (int)(rb - pct), pct);
        snprintf(plain, sizeof(plain), "%.*s%s", (int)(pct - s), s, rb);
    } else {
        snprintf(plain, sizeof(plain), "%s", s);
    }
    netaddr_t na;
    if (netaddr_parse(plain, &na, false)) {
        *why = "expected IPv4:port, [IPv6]:port or localhost:port, with a port of 1..65535";
        return -EINVAL;
    }

    memset(a, 0, sizeof(*a));
    if (zone[0]) {
        /* AI_NUMERICHOST: no DNS, only the literal and its zone (interface name or index). */
        char host[NETADDR_HOST_MAX + HC_TARGET_MAX + 1];
        snprintf(host, sizeof(host), "%s%s", na.host, zone);
        struct addrinfo hints = {
            .ai_family = AF_INET6, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
        struct addrinfo *res = NULL;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res || res->ai_addrlen > sizeof(a->ss)) {
            if (res)
                freeaddrinfo(res);
            *why = "not an IPv6 address with a zone";
            return -EINVAL;
        }
        memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
        a->len = res->ai_addrlen;
        freeaddrinfo(res);
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(na.port);
    } else {
        char numeric[HC_TARGET_MAX + 1];
        const char *t = plain;
        if (!na.ipv6 && strcasecmp(na.host, "localhost") == 0) { /* netaddr's is lower case */
            snprintf(numeric, sizeof(numeric), "localhost:%u", (unsigned)na.port);
            t = numeric;
        }
        if (netaddr_sockaddr(t, &a->ss, &a->len)) {
            *why = "not an IPv4 address, [IPv6] or localhost (names are not resolved)";
            return -EINVAL;
        }
    }
    if (na.ipv6)
        snprintf(a->host_header, sizeof(a->host_header), "[%.*s]:%u", HC_TARGET_MAX, na.host,
                 (unsigned)na.port);
    else
        snprintf(a->host_header, sizeof(a->host_header), "%s", s);
    return 0;
}

/* The key of a check: path "/" for an empty HTTP path, NULL for TCP. */
static int normalise(const hc_target_t *in, hc_target_t *out, const char **why)
{
    if (!in || !in->target) {
        *why = in ? "no target" : "no check";
        return -EINVAL;
    }
    *out = *in;
    if (in->interval_ms > HC_MAX_INTERVAL_MS || in->timeout_ms > HC_MAX_TIMEOUT_MS ||
        in->rise > HC_MAX_RISE_FALL || in->fall > HC_MAX_RISE_FALL) {
        *why = "interval_ms, timeout_ms, rise or fall out of range";
        return -EINVAL;
    }
    if (in->kind == HC_TCP) {
        out->path = NULL;
        out->status = NULL;
        out->nstatus = 0;
        out->host = NULL;
        return 0;
    }
    if (in->kind != HC_HTTP) {
        *why = "kind must be HC_TCP or HC_HTTP";
        return -EINVAL;
    }
    if (in->nstatus > HC_STATUS_MAX || (in->nstatus && !in->status)) {
        *why = "more than 16 status ranges";
        return -EINVAL;
    }
    for (size_t i = 0; i < in->nstatus; i++) {
        if (in->status[i].lo < 100 || in->status[i].hi > 999 ||
            in->status[i].lo > in->status[i].hi) {
            *why = "a status range is not within 100..999";
            return -EINVAL;
        }
    }
    if (!in->nstatus)
        out->status = NULL;
    if (in->host && in->host[0]) {
        size_t hl = strnlen(in->host, HC_HOST_MAX + 1);
        if (hl > HC_HOST_MAX) {
            *why = "host longer than 260 bytes";
            return -EINVAL;
        }
        for (size_t i = 0; i < hl; i++) {
            /* It goes verbatim into a header line. */
            if (in->host[i] <= ' ' || in->host[i] > '~') {
                *why = "host has a space, control or non-ASCII character";
                return -EINVAL;
            }
        }
    } else {
        out->host = NULL;
    }
    if (!in->path || !in->path[0]) {
        out->path = "/";
        return 0;
    }
    size_t len = strnlen(in->path, HC_PATH_MAX + 1);
    if (len > HC_PATH_MAX) {
        *why = "path longer than 1024 bytes";
        return -EINVAL;
    }
    if (in->path[0] != '/') {
        *why = "path must start with /";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        /* No spaces or controls: the path goes verbatim into the request line. */
        if (in->path[i] <= ' ' || in->path[i] > '~') {
            *why = "path has a space, control or non-ASCII character";
            return -EINVAL;
        }
    }
    return 0;
}

int hc_target_validate(const hc_target_t *t, const char **why)
{
    const char *dummy;
    hc_target_t key;
    struct hc_addr addr;

    if (!why)
        why = &dummy;
    int rc = normalise(t, &key, why);
    if (rc == 0)
        rc = parse_target(key.target, &addr, why);
    return rc;
}

/* Both normalised: every field counts, so a check whose settings change is a new check. */
static bool same_key(const hc_target_t *a, const hc_target_t *b)
{
    if (a->kind != b->kind || strcmp(a->target, b->target) != 0 ||
        a->interval_ms != b->interval_ms || a->timeout_ms != b->timeout_ms || a->rise != b->rise ||
        a->fall != b->fall)
        return false;
    if (a->kind == HC_TCP)
        return true;
    return strcmp(a->path, b->path) == 0 && a->nstatus == b->nstatus &&
           (!a->nstatus || !memcmp(a->status, b->status, a->nstatus * sizeof(*a->status))) &&
           !a->host == !b->host && (!a->host || strcmp(a->host, b->host) == 0);
}

/* ---- checks ---------------------------------------------------------------------------------- */

enum hc_phase { HC_IDLE = 0, HC_CONNECTING, HC_SENDING, HC_READING };

static const char *const phase_names[] = {"idle", "connecting", "sending request",
                                          "reading response"};

struct hc_check {
    hc_t *h;
    hc_target_t key;              /* normalised; target and path point to the copies below */
    char *target;                 /* owned */
    char *path;                   /* owned; NULL for HC_TCP */
    hc_code_range_t *status;      /* owned; NULL when unset */
    char *host;                   /* owned; NULL when unset */
    uint32_t interval_ms;         /* ms: the check's, else the hc_t's */
    uint32_t timeout_ms;          /* ms: likewise */
    uint32_t rise, fall;          /* likewise */
    struct sockaddr_storage addr; /* where to connect */
    socklen_t addrlen;            /* bytes of addr */
    char *request;                /* HC_HTTP: the whole request, owned; NULL for HC_TCP */
    size_t request_len;           /* bytes */

    enum hc_state state;
    uint32_t successes;              /* consecutive */
    uint32_t failures;               /* consecutive */
    uint64_t runs;                   /* completed */
    uint32_t last_duration_us;       /* us */
    char last_result[HC_REASON_MAX]; /* "" before the first run */
    char last_error[HC_REASON_MAX];  /* "" before the first failure */

    /* The run in flight. */
    enum hc_phase phase;
    int fd;              /* -1 when idle */
    size_t sent;         /* bytes of request sent */
    struct hc_resp resp; /* HC_HTTP */
    uint64_t started_us; /* monotonic us at the start, for the duration */
    ev_tstamp started;   /* ev_now at the start, for the schedule */
    ev_timer timer;      /* idle: the next run; in flight: the timeout */
    ev_io io;            /* fd */
    bool hooked;         /* the socket hook was told about fd */
    void *slot;          /* the socket hook's storage for this run */
    bool claimed;        /* scratch for hc_set */
};

struct hc {
    struct ev_loop *loop;     /* borrowed */
    hc_config_t cfg;          /* defaults applied */
    hc_change_fn on_change;   /* may be NULL */
    void *ctx;                /* passed to on_change */
    struct hc_check **checks; /* owned, in the order of the last hc_set */
    size_t n;                 /* checks */
    uint64_t rng;             /* splitmix64 state for the jitter (common/rng.h) */
    hc_socket_fn on_socket;   /* may be NULL */
    void *socket_ctx;         /* passed to on_socket */
};

/* The check's interval_ms +-10%, in seconds. */
static ev_tstamp jittered_interval(struct hc_check *c)
{
    uint64_t base = c->interval_ms;
    uint64_t ms = base - base / 10 + rng_below(&c->h->rng, (uint32_t)(base / 5 + 1));
    return (ev_tstamp)ms / 1000.;
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void arm_timer(struct hc_check *c, ev_tstamp after)
{
    ev_timer_stop(c->h->loop, &c->timer);
    ev_timer_set(&c->timer, after > 0 ? after : 0., 0.);
    ev_timer_start(c->h->loop, &c->timer);
}

static void wait_fd(struct hc_check *c, int events)
{
    ev_io_stop(c->h->loop, &c->io);
    ev_io_set(&c->io, c->fd, events);
    ev_io_start(c->h->loop, &c->io);
}

static void run_abandon(struct hc_check *c)
{
    ev_io_stop(c->h->loop, &c->io);
    ev_timer_stop(c->h->loop, &c->timer);
    if (c->hooked && c->h->on_socket)
        c->h->on_socket(c->h->socket_ctx, &c->key, c->fd, (const struct sockaddr *)&c->addr,
                        c->addrlen, false, &c->slot);
    c->hooked = false;
    c->slot = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->phase = HC_IDLE;
}

static const char *kind_name(enum hc_kind k)
{
    return k == HC_TCP ? "tcp" : "http";
}

/* Records the verdict of the run, schedules the next and reports a flip. Tail call: the
 * callback may free c and c->h, so callers return right after. */
__attribute__((format(printf, 3, 4))) static void run_end(struct hc_check *c, bool ok,
                                                          const char *fmt, ...)
{
    hc_t *h = c->h;
    va_list ap;

    run_abandon(c);
    uint64_t us = clock_mono_us() - c->started_us;
    c->last_duration_us = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    va_start(ap, fmt);
    vsnprintf(c->last_result, sizeof(c->last_result), fmt, ap);
    va_end(ap);
    c->runs++;

    bool was_usable = c->state != HC_UNHEALTHY;
    if (ok) {
        c->failures = 0;
        if (c->successes < UINT32_MAX)
            c->successes++;
        if (c->state != HC_HEALTHY && c->successes >= c->rise)
            c->state = HC_HEALTHY;
    } else {
        memcpy(c->last_error, c->last_result, sizeof(c->last_error));
        c->successes = 0;
        if (c->failures < UINT32_MAX)
            c->failures++;
        if (c->state != HC_UNHEALTHY && c->failures >= c->fall)
            c->state = HC_UNHEALTHY;
    }
    /* From the start of this run, so a slow target is not checked less often. */
    arm_timer(c, c->started + jittered_interval(c) - ev_now(h->loop));

    bool usable = c->state != HC_UNHEALTHY;
    if (usable == was_usable)
        return;
    log_info("healthcheck: %s %s%s is %s: %s", kind_name(c->key.kind), c->key.target,
             c->key.path ? c->key.path : "", usable ? "healthy" : "unhealthy", c->last_result);
    if (h->on_change)
        h->on_change(h->ctx, &c->key, usable, c->last_result); /* last: may free c and h */
}

static void send_more(struct hc_check *c)
{
    while (c->sent < c->request_len) {
        ssize_t n = send(c->fd, c->request + c->sent, c->request_len - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                wait_fd(c, EV_WRITE);
                return;
            }
            run_end(c, false, "send: %s", strerror(errno));
            return;
        }
        c->sent += (size_t)n;
    }
    c->phase = HC_READING;
    wait_fd(c, EV_READ);
}

static void connected(struct hc_check *c)
{
    if (c->key.kind == HC_TCP) {
        run_end(c, true, "connected");
        return;
    }
    c->phase = HC_SENDING;
    send_more(c);
}

static void read_some(struct hc_check *c)
{
    uint8_t buf[HC_READ_CHUNK];
    size_t room = HC_RESPONSE_MAX - c->resp.received; /* > 0: resp_feed fails at the cap */
    ssize_t n = recv(c->fd, buf, room < sizeof(buf) ? room : sizeof(buf), 0);

    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        run_end(c, false, "recv: %s", strerror(errno));
        return;
    }
    if (n == 0) {
        if (c->resp.received == 0)
            run_end(c, false, "connection closed without a response");
        else
            run_end(c, false, "bad HTTP response: closed after %zu bytes, in the headers",
                    c->resp.received);
        return;
    }
    switch (resp_feed(&c->resp, buf, (size_t)n)) {
    case HC_PARSE_COMPLETE: {
        int s = c->resp.status;
        bool ok = !c->key.nstatus && s >= 200 && s <= 399;
        for (size_t i = 0; i < c->key.nstatus && !ok; i++)
            ok = s >= c->status[i].lo && s <= c->status[i].hi;
        run_end(c, ok, "HTTP %d", s);
        return;
    }
    case HC_PARSE_BAD:
        run_end(c, false, "bad HTTP response: %s", c->resp.why);
        return;
    case HC_PARSE_NEED_MORE:
        return;
    }
}

static void run_start(struct hc_check *c)
{
    c->phase = HC_CONNECTING;
    c->started = ev_now(c->h->loop);
    c->started_us = clock_mono_us();
    c->sent = 0;
    resp_init(&c->resp);
    arm_timer(c, c->timeout_ms / 1000.);

    c->fd = socket(c->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        run_end(c, false, "socket: %s", strerror(errno));
        return;
    }
    int rc = connect(c->fd, (const struct sockaddr *)&c->addr, c->addrlen);
    if (rc < 0 && errno != EINPROGRESS && errno != EINTR) { /* EINTR: the connect goes on */
        run_end(c, false, "connect: %s", strerror(errno));
        return;
    }
    if (c->h->on_socket) {
        c->hooked = true;
        c->h->on_socket(c->h->socket_ctx, &c->key, c->fd, (const struct sockaddr *)&c->addr,
                        c->addrlen, true, &c->slot);
    }
    if (rc == 0) {
        connected(c);
        return;
    }
    wait_fd(c, EV_WRITE);
}

static void io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    struct hc_check *c = w->data;

    switch (c->phase) {
    case HC_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err)
            run_end(c, false, "connect: %s", strerror(err));
        else
            connected(c);
        return;
    }
    case HC_SENDING:
        send_more(c);
        return;
    case HC_READING:
        read_some(c);
        return;
    case HC_IDLE:
        ev_io_stop(loop, w);
        return;
    }
}

static void timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct hc_check *c = w->data;

    if (c->phase == HC_IDLE)
        run_start(c);
    else
        run_end(c, false, "timeout after %u ms (%s)", c->timeout_ms, phase_names[c->phase]);
}

static struct hc_check *check_new(hc_t *h, const hc_target_t *key, const struct hc_addr *a)
{
    struct hc_check *c = xcalloc(1, sizeof(*c));

    c->h = h;
    c->target = xstrdup(key->target);
    c->path = key->path ? xstrdup(key->path) : NULL;
    if (key->nstatus) {
        c->status = xmalloc(key->nstatus * sizeof(*c->status));
        memcpy(c->status, key->status, key->nstatus * sizeof(*c->status));
    }
    c->host = key->host ? xstrdup(key->host) : NULL;
    c->key = *key;
    c->key.target = c->target;
    c->key.path = c->path;
    c->key.status = c->status;
    c->key.host = c->host;
    c->interval_ms = key->interval_ms ? key->interval_ms : h->cfg.interval_ms;
    c->timeout_ms = key->timeout_ms ? key->timeout_ms : h->cfg.timeout_ms;
    c->rise = key->rise ? key->rise : h->cfg.rise;
    c->fall = key->fall ? key->fall : h->cfg.fall;
    memcpy(&c->addr, &a->ss, sizeof(c->addr));
    c->addrlen = a->len;
    if (key->kind == HC_HTTP) {
        static const char fmt[] = "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: "
                                  "popmesh-healthcheck\r\nConnection: close\r\n\r\n";
        const char *host = c->host ? c->host : a->host_header;
        int n = snprintf(NULL, 0, fmt, c->path, host);
        c->request = xmalloc((size_t)n + 1);
        snprintf(c->request, (size_t)n + 1, fmt, c->path, host);
        c->request_len = (size_t)n;
    }
    c->fd = -1;
    ev_io_init(&c->io, io_cb, 0, EV_WRITE);
    c->io.data = c;
    ev_timer_init(&c->timer, timer_cb, 0., 0.);
    c->timer.data = c;
    /* The first run anywhere in the first interval: a batch of new targets is spread out. */
    arm_timer(c, (ev_tstamp)rng_below(&h->rng, c->interval_ms) / 1000.);
    return c;
}

static void check_free(struct hc_check *c)
{
    run_abandon(c);
    free(c->target);
    free(c->path);
    free(c->status);
    free(c->host);
    free(c->request);
    free(c);
}

/* ---- the module ---------------------------------------------------------------------------- */

hc_t *hc_new(struct ev_loop *loop, const hc_config_t *cfg, hc_change_fn on_change, void *ctx)
{
    hc_config_t conf = cfg ? *cfg : (hc_config_t){0};

    if (!conf.interval_ms)
        conf.interval_ms = HC_DEFAULT_INTERVAL_MS;
    if (!conf.timeout_ms)
        conf.timeout_ms = HC_DEFAULT_TIMEOUT_MS;
    if (!conf.rise)
        conf.rise = HC_DEFAULT_RISE;
    if (!conf.fall)
        conf.fall = HC_DEFAULT_FALL;
    if (!loop || conf.interval_ms > HC_MAX_INTERVAL_MS || conf.timeout_ms > HC_MAX_TIMEOUT_MS ||
        conf.rise > HC_MAX_RISE_FALL || conf.fall > HC_MAX_RISE_FALL) {
        errno = EINVAL;
        return NULL;
    }
    hc_t *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->cfg = conf;
    h->on_change = on_change;
    h->ctx = ctx;
    /* Only the jitter depends on it: distinct per instance is all that matters. */
    h->rng = clock_mono_us() ^ (uint64_t)(uintptr_t)h ^ (uint64_t)getpid();
    return h;
}

void hc_destroy(hc_t **hp)
{
    if (!hp || !*hp)
        return;
    hc_t *h = *hp;
    for (size_t i = 0; i < h->n; i++)
        check_free(h->checks[i]);
    free(h->checks);
    free(h);
    *hp = NULL;
}

void hc_set_socket_hook(hc_t *h, hc_socket_fn fn, void *ctx)
{
    h->on_socket = fn;
    h->socket_ctx = ctx;
}

static struct hc_check *find(const hc_t *h, const hc_target_t *key)
{
    for (size_t i = 0; i < h->n; i++)
        if (same_key(&h->checks[i]->key, key))
            return h->checks[i];
    return NULL;
}

struct hc_slot {
    hc_target_t key;          /* normalised, strings borrowed from the caller */
    struct hc_addr addr;      /* parsed key.target */
    struct hc_check *current; /* the existing check with this key, or NULL */
};

int hc_set(hc_t *h, const hc_target_t *targets, size_t n)
{
    struct hc_slot *slots = NULL;
    size_t m = 0;
    int rc = 0;

    if (n > 0 && !targets)
        return -EINVAL;
    if (n > 0)
        slots = xcalloc(n < HC_MAX_CHECKS ? n : HC_MAX_CHECKS, sizeof(*slots));
    /* Validate and deduplicate everything before changing anything. */
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        hc_target_t key;
        if (normalise(&targets[i], &key, &why) < 0) {
            log_warn("healthcheck: check %zu: %s", i, why);
            rc = -EINVAL;
            goto out;
        }
        bool dup = false;
        for (size_t j = 0; j < m && !dup; j++)
            dup = same_key(&slots[j].key, &key);
        if (dup)
            continue;
        if (m == HC_MAX_CHECKS) {
            log_warn("healthcheck: more than %d checks", HC_MAX_CHECKS);
            rc = -E2BIG;
            goto out;
        }
        if (parse_target(key.target, &slots[m].addr, &why) < 0) {
            log_warn("healthcheck: check %zu (%.96s): %s", i, key.target ? key.target : "", why);
            rc = -EINVAL;
            goto out;
        }
        slots[m].key = key;
        slots[m].current = find(h, &key);
        m++;
    }

    struct hc_check **next = m ? xcalloc(m, sizeof(*next)) : NULL;
    for (size_t j = 0; j < m; j++) {
        if (slots[j].current) {
            next[j] = slots[j].current;
            next[j]->claimed = true;
        } else {
            next[j] = check_new(h, &slots[j].key, &slots[j].addr);
        }
    }
    for (size_t i = 0; i < h->n; i++) {
        if (h->checks[i]->claimed)
            h->checks[i]->claimed = false;
        else
            check_free(h->checks[i]);
    }
    for (size_t j = 0; j < m; j++)
        next[j]->claimed = false;
    free(h->checks);
    h->checks = next;
    h->n = m;
out:
    free(slots);
    return rc;
}

bool hc_healthy(const hc_t *h, const hc_target_t *check)
{
    const char *why;
    hc_target_t key;

    if (!h || normalise(check, &key, &why) < 0)
        return false;
    const struct hc_check *c = find(h, &key);
    return c && c->state != HC_UNHEALTHY;
}

size_t hc_snapshot(const hc_t *h, hc_status_t *out, size_t max)
{
    for (size_t i = 0; i < h->n && i < max; i++) {
        const struct hc_check *c = h->checks[i];
        out[i] = (hc_status_t){
            .check = c->key,
            .state = c->state,
            .last_result = c->last_result,
            .last_error = c->last_error,
            .last_duration_us = c->last_duration_us,
            .successes = c->successes,
            .failures = c->failures,
            .runs = c->runs,
        };
    }
    return h->n;
}
