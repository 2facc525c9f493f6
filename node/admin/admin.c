#include "node/admin/admin.h"

#include "common/log.h"
#include "common/netaddr.h"
#include "common/xmalloc.h"
#include "node/admin/adminmetrics.h"
#include "node/admin/promtext.h"
#include "node/http/httpmsg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TARGET_MAX 256 /* bytes of a request target we look at; longer: 414 */

struct aconn {
    admin_t *a;
    int fd;
    auth_addr_t peer;
    char peer_text[64];
    ev_io rio, wio;
    ev_timer timer;
    http_reader_t *rd;
    bool have_request; /* a whole request was read: answering */
    int method;        /* enum http_method */
    char target[TARGET_MAX + 1];
    bool target_too_long;
    char *out; /* the answer (head and body), malloc'd */
    size_t out_len, out_off;
    struct aconn *prev, *next;
};

struct admin {
    admin_opts_t o;
    auth_cidr_t allow[ADMIN_ALLOW_MAX];
    size_t nallow;
    int fd;
    ev_io io;
    struct aconn *conns;
    admin_stats_t st;
};

static void conn_close(struct aconn *c)
{
    admin_t *a = c->a;
    ev_io_stop(a->o.loop, &c->rio);
    ev_io_stop(a->o.loop, &c->wio);
    ev_timer_stop(a->o.loop, &c->timer);
    close(c->fd);
    http_reader_destroy(&c->rd);
    free(c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->st.conns--;
    free(c);
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* The whole answer into c->out; takes ownership of body (malloc'd, may be NULL). */
static void answer(struct aconn *c, int code, const char *ctype, char *body, size_t blen,
                   const char *extra)
{
    char head[512];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                      code, reason_phrase(code), ctype, blen, extra ? extra : "");
    bool head_only = c->method == HTTP_HEAD && code < 400;
    size_t n = (size_t)hl + (head_only ? 0 : blen);
    c->out = xmalloc(n);
    memcpy(c->out, head, (size_t)hl);
    if (!head_only && blen)
        memcpy(c->out + hl, body, blen);
    free(body);
    c->out_len = n;
    c->out_off = 0;
    c->a->st.requests++;
}

static void answer_text(struct aconn *c, int code, const char *text)
{
    size_t n = strlen(text);
    char *b = xmalloc(n + 1);
    memcpy(b, text, n + 1);
    answer(c, code, "text/plain; charset=utf-8", b, n, code == 405 ? "Allow: GET, HEAD\r\n" : NULL);
}

static bool allowed(const admin_t *a, const auth_addr_t *peer)
{
    for (size_t i = 0; i < a->nallow; i++)
        if (auth_cidr_contains(&a->allow[i], peer))
            return true;
    return false;
}

static void render_own(const admin_t *a, promtext_t *p)
{
    const struct {
        const char *name, *help, *type;
        uint64_t v;
    } own[] = {
        {"popmesh_admin_requests_total", "Requests answered by the admin listener.", "counter",
         a->st.requests},
        {"popmesh_admin_scrapes_total", "/metrics answered 200.", "counter", a->st.scrapes},
        {"popmesh_admin_forbidden_total",
         "/metrics refused: the client is not in metrics-allow.", "counter", a->st.forbidden},
        {"popmesh_admin_bad_requests_total",
         "Admin requests refused for their form, method or path.", "counter", a->st.bad},
        {"popmesh_admin_refused_total", "Admin connections refused: too many open.", "counter",
         a->st.refused_cap},
        {"popmesh_admin_timeouts_total", "Admin connections closed by the timeout.", "counter",
         a->st.timeouts},
        {"popmesh_admin_connections", "Admin connections open.", "gauge", a->st.conns},
    };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        prom_family(p, own[i].name, own[i].type, own[i].help);
        prom_u64(p, own[i].name, NULL, 0, own[i].v);
    }
}

/* A whole request was read: decide the answer. */
static void route(struct aconn *c)
{
    admin_t *a = c->a;
    if (c->target_too_long) {
        a->st.bad++;
        answer_text(c, 414, "the request target is too long\n");
        return;
    }
    if (c->method != HTTP_GET && c->method != HTTP_HEAD) {
        a->st.bad++;
        answer_text(c, 405, "only GET and HEAD\n");
        return;
    }
    char *q = strchr(c->target, '?');
    if (q)
        *q = '\0';
    if (!strcmp(c->target, "/metrics")) {
        if (!allowed(a, &c->peer)) {
            char why[160];
            a->st.forbidden++;
            snprintf(why, sizeof(why), "forbidden: %s is not in metrics-allow\n", c->peer_text);
            log_info("admin: /metrics from %s refused: not in metrics-allow", c->peer_text);
            answer_text(c, 403, why);
            return;
        }
        promtext_t p;
        prom_init(&p);
        adminmetrics_collect(a->o.control, a->o.http, &p);
        a->st.scrapes++;
        render_own(a, &p);
        answer(c, 200, PROMTEXT_CONTENT_TYPE, p.buf, p.len, NULL); /* takes p.buf */
        return;
    }
    if (!strcmp(c->target, "/healthz")) {
        answer_text(c, 200, "ok\n");
        return;
    }
    if (!strcmp(c->target, "/readyz")) {
        char reasons[ADMIN_REASONS_MAX] = "";
        if (!a->o.ready || a->o.ready(a->o.ctx, reasons, sizeof(reasons)))
            answer_text(c, 200, "ready\n");
        else
            answer_text(c, 503, reasons[0] ? reasons : "not ready\n");
        return;
    }
    a->st.bad++;
    answer_text(c, 404, "not found: the admin listener serves /metrics, /healthz and /readyz\n");
}

static void start_writing(struct aconn *c)
{
    c->have_request = true;
    ev_io_stop(c->a->o.loop, &c->rio);
    ev_io_start(c->a->o.loop, &c->wio);
    ev_feed_event(c->a->o.loop, &c->wio, EV_WRITE);
}

static void arm(struct aconn *c)
{
    ev_timer_stop(c->a->o.loop, &c->timer);
    ev_timer_set(&c->timer, ADMIN_TIMEOUT_S, 0.);
    ev_timer_start(c->a->o.loop, &c->timer);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    struct aconn *c = w->data;
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
        arm(c); /* progress: the client gets its time again */
    }
    shutdown(c->fd, SHUT_WR);
    conn_close(c);
}

static int rd_on_head(void *ctx, const http_head_t *h)
{
    struct aconn *c = ctx;
    c->method = h->method;
    c->target_too_long = h->target_len > TARGET_MAX;
    size_t n = c->target_too_long ? 0 : h->target_len;
    memcpy(c->target, h->target, n);
    c->target[n] = '\0';
    return 0;
}

static int rd_on_body(void *ctx, const uint8_t *d, size_t n)
{
    (void)ctx, (void)d, (void)n;
    return 0; /* bounded by ADMIN_MAX_BODY, ignored */
}

static int rd_on_done(void *ctx)
{
    (void)ctx;
    return 1; /* one request per connection */
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct aconn *c = w->data;
    uint8_t buf[4096];
    ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* gone before a whole request */
        conn_close(c);
        return;
    }
    ssize_t used = http_reader_feed(c->rd, buf, (size_t)n);
    if (used < 0) {
        const char *why = NULL;
        int code = http_reader_error(c->rd, &why);
        char text[200];
        snprintf(text, sizeof(text), "%s\n", why && why[0] ? why : "malformed request");
        c->a->st.bad++;
        c->method = HTTP_GET; /* the body is sent whatever was asked */
        answer_text(c, code ? code : 400, text);
        start_writing(c);
        return;
    }
    if (used < n || !http_reader_in_message(c->rd)) {
        /* on_done stopped the feed, or the message just ended: answer it */
        if (c->method >= 0 && (c->target[0] || c->target_too_long)) {
            route(c);
            start_writing(c);
        }
    }
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct aconn *c = w->data;
    c->a->st.timeouts++;
    log_debug("admin: connection from %s timed out", c->peer_text);
    conn_close(c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    admin_t *a = w->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(a->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a failure the next readiness retries */
        if (a->st.conns >= ADMIN_MAX_CONNS) {
            static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                       "text/plain\r\nContent-Length: 27\r\nConnection: "
                                       "close\r\n\r\ntoo many admin connections\n";
            a->st.refused_cap++;
            ssize_t ignored = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
            close(fd);
            continue;
        }
        struct aconn *c = xcalloc(1, sizeof(*c));
        c->a = a;
        c->fd = fd;
        c->method = -1;
        auth_addr_from_sockaddr((struct sockaddr *)&ss, &c->peer);
        char host[64] = "?";
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
        snprintf(c->peer_text, sizeof(c->peer_text), "%s", host);
        http_limits_t lim = {.max_header_bytes = ADMIN_MAX_REQUEST,
                             .max_headers = ADMIN_MAX_HEADERS,
                             .max_body_bytes = ADMIN_MAX_BODY};
        http_reader_cbs_t cbs = {.ctx = c,
                                 .on_head = rd_on_head,
                                 .on_body = rd_on_body,
                                 .on_done = rd_on_done};
        c->rd = http_reader_new(HTTP_REQUEST, &lim, &cbs);
        ev_io_init(&c->rio, on_read, fd, EV_READ);
        ev_io_init(&c->wio, on_write, fd, EV_WRITE);
        ev_timer_init(&c->timer, on_timer, ADMIN_TIMEOUT_S, 0.);
        c->rio.data = c->wio.data = c->timer.data = c;
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->st.conns++;
        ev_io_start(loop, &c->rio);
        ev_timer_start(loop, &c->timer);
    }
}

admin_t *admin_new(const admin_opts_t *o, char *err, size_t errlen)
{
    if (o->nallow > ADMIN_ALLOW_MAX) {
        snprintf(err, errlen, "admin: at most %d networks in metrics-allow", ADMIN_ALLOW_MAX);
        return NULL;
    }
    admin_t *a = xcalloc(1, sizeof(*a));
    a->o = *o;
    if (o->nallow) {
        memcpy(a->allow, o->allow, o->nallow * sizeof(*o->allow));
        a->nallow = o->nallow;
    } else {
        const char *why;
        auth_cidr_parse("127.0.0.0/8", &a->allow[0], &why);
        auth_cidr_parse("::1/128", &a->allow[1], &why);
        a->nallow = 2;
    }
    char why[300];
    a->fd = netaddr_listen(o->listen, 64, why, sizeof(why));
    if (a->fd < 0) {
        snprintf(err, errlen, "admin listener: %s", why);
        free(a);
        return NULL;
    }
    ev_io_init(&a->io, on_accept, a->fd, EV_READ);
    a->io.data = a;
    ev_io_start(o->loop, &a->io);
    log_info("admin: listening on %s (/metrics, /healthz, /readyz)", o->listen);
    return a;
}

void admin_destroy(admin_t **ap)
{
    if (!ap || !*ap)
        return;
    admin_t *a = *ap;
    while (a->conns)
        conn_close(a->conns);
    ev_io_stop(a->o.loop, &a->io);
    close(a->fd);
    free(a);
    *ap = NULL;
}

void admin_get_stats(const admin_t *a, admin_stats_t *st)
{
    *st = a->st;
}
