/* The control server: one listening Unix socket, up to CONTROL_MAX_CONNS clients.
 *
 * Each connection reads frames into a buffer bounded by the largest legal request, answers
 * them in order, and stops reading while a response is still being written, so a client that
 * sends requests and never reads answers costs at most one response of memory, not a queue.
 * A frame that announces more than CTL_MAX_REQUEST is answered with an error and the
 * connection closed: after a bad length the byte stream has no trustworthy frame boundary.
 * Anything else bad (garbage msgpack, unknown command, wrong argument types) is answered with
 * a status and the connection stays open. */
#include "node/ctl/control.h"

#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct conn {
    control_t *srv;
    int fd;
    ev_io rio, wio;
    ev_timer idle;
    uint8_t *in; /* received, not yet processed */
    size_t in_len;
    size_t in_cap;
    msgpack_sbuffer out; /* response bytes not yet written */
    size_t out_off;
    int closing; /* close once out is flushed */
    struct conn *next;
};

struct control {
    struct ev_loop *loop;
    int fd;
    ev_io accept_io;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    struct {
        const control_command_t *table;
        void *ctx;
    } tables[CONTROL_MAX_TABLES];
    unsigned ntables;
    control_guard_fn guard; /* runs before every command but help; NULL = none */
    void *guard_ctx;
    struct conn *conns;
    control_stats_t stats;
};

int control_error(msgpack_packer *body, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    msgpack_pack_map(body, 1);
    mpw_str(body, "error");
    mpw_str(body, msg);
    return status;
}

static void conn_close(struct conn *c)
{
    control_t *s = c->srv;
    ev_io_stop(s->loop, &c->rio);
    ev_io_stop(s->loop, &c->wio);
    ev_timer_stop(s->loop, &c->idle);
    close(c->fd);
    for (struct conn **pp = &s->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    s->stats.connections--;
    free(c->in);
    msgpack_sbuffer_destroy(&c->out);
    free(c);
}

static void queue_response(struct conn *c, int status, const msgpack_sbuffer *body)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &c->out, msgpack_sbuffer_write);
    size_t start = c->out.size;
    ctl_frame_begin(&c->out);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, CTL_VERSION);
    msgpack_pack_int(&pk, status);
    if (body && body->size)
        mpw_raw(&pk, body->data, body->size);
    else
        msgpack_pack_nil(&pk);
    /* ctl_frame_end patches the first 4 bytes of the buffer it is given; the response may
     * follow earlier unsent ones, so patch at this frame's own offset. */
    uint32_t n = (uint32_t)(c->out.size - start - CTL_HEADER);
    uint8_t *p = (uint8_t *)c->out.data + start;
    p[0] = (uint8_t)(n >> 24), p[1] = (uint8_t)(n >> 16), p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
}

static void queue_error(struct conn *c, int status, const char *msg)
{
    msgpack_sbuffer body;
    msgpack_packer pk;
    msgpack_sbuffer_init(&body);
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    control_error(&pk, status, "%s", msg);
    queue_response(c, status, &body);
    msgpack_sbuffer_destroy(&body);
}

static void pack_help(control_t *s, msgpack_packer *pk)
{
    size_t n = 0;
    for (unsigned t = 0; t < s->ntables; t++)
        for (const control_command_t *cmd = s->tables[t].table; cmd->name; cmd++)
            n++;
    msgpack_pack_array(pk, n + 1);
    for (unsigned t = 0; t < s->ntables; t++) {
        for (const control_command_t *cmd = s->tables[t].table; cmd->name; cmd++) {
            msgpack_pack_map(pk, 2);
            mpw_str(pk, "name");
            mpw_str(pk, cmd->name);
            mpw_str(pk, "usage");
            mpw_str(pk, cmd->usage);
        }
    }
    msgpack_pack_map(pk, 2);
    mpw_str(pk, "name");
    mpw_str(pk, "help");
    mpw_str(pk, "usage");
    mpw_str(pk, "list the commands this node answers");
}

static void dispatch(struct conn *c, const uint8_t *body, size_t len)
{
    control_t *s = c->srv;
    ctl_request_t req;
    const char *why = NULL;
    char msg[256];

    if (ctl_request_decode(body, len, &req, &why) != 0) {
        s->stats.bad_requests++;
        snprintf(msg, sizeof(msg), "malformed request: %s", why);
        queue_error(c, CTL_BAD_REQUEST, msg);
        return;
    }
    if (req.version != CTL_VERSION) {
        s->stats.bad_requests++;
        snprintf(msg, sizeof(msg), "this popd speaks control protocol version %d, not %u",
                 CTL_VERSION, req.version);
        queue_error(c, CTL_BAD_VERSION, msg);
        return;
    }

    msgpack_sbuffer out;
    msgpack_packer pk;
    msgpack_sbuffer_init(&out);
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    int status = -1;
    if (req.command_len == 4 && memcmp(req.command, "help", 4) == 0) {
        pack_help(s, &pk);
        status = CTL_OK;
    } else if (s->guard) {
        status = s->guard(s->guard_ctx, req.command, req.command_len, &pk);
    }
    for (unsigned t = 0; status < 0 && t < s->ntables; t++) {
        for (const control_command_t *cmd = s->tables[t].table; status < 0 && cmd->name; cmd++) {
            if (strlen(cmd->name) == req.command_len &&
                memcmp(cmd->name, req.command, req.command_len) == 0)
                status = cmd->fn(s->tables[t].ctx, &req, &pk);
        }
    }
    if (status < 0) {
        s->stats.bad_requests++;
        snprintf(msg, sizeof(msg), "unknown command '%.*s' (try 'help')", (int)req.command_len,
                 req.command);
        queue_error(c, CTL_BAD_REQUEST, msg);
    } else if (out.size > CTL_MAX_RESPONSE) {
        queue_error(c, CTL_FAILED, "response too large; narrow the request");
    } else {
        if (status == CTL_BAD_REQUEST)
            s->stats.bad_requests++;
        queue_response(c, status, &out);
    }
    msgpack_sbuffer_destroy(&out);
    s->stats.requests++;
}

/* Writes what is queued. 0: all written; 1: the socket is full (write watcher armed, reading
 * paused); -1: the peer is gone and the connection was freed. */
static int conn_flush(struct conn *c)
{
    control_t *s = c->srv;
    while (c->out_off < c->out.size) {
        ssize_t w = send(c->fd, c->out.data + c->out_off, c->out.size - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                ev_io_stop(s->loop, &c->rio); /* backpressure: read no more until drained */
                ev_io_start(s->loop, &c->wio);
                return 1;
            }
            conn_close(c);
            return -1;
        }
        c->out_off += (size_t)w;
    }
    ev_io_stop(s->loop, &c->wio);
    msgpack_sbuffer_clear(&c->out);
    c->out_off = 0;
    if (c->closing) {
        conn_close(c);
        return -1;
    }
    ev_io_start(s->loop, &c->rio);
    return 0;
}

/* Answers the complete frames buffered in c->in, in order, while responses can be written
 * straight away; a response that cannot be written pauses processing until it can. */
static void conn_process(struct conn *c)
{
    size_t off = 0;
    while (c->out_off == c->out.size) {
        const uint8_t *body;
        size_t blen, flen;
        int rc = ctl_frame_peek(c->in + off, c->in_len - off, CTL_MAX_REQUEST, &body, &blen, &flen);
        if (rc == 0)
            break;
        if (rc < 0) {
            char msg[128];
            snprintf(msg, sizeof(msg), "request larger than %d bytes; closing connection",
                     CTL_MAX_REQUEST);
            c->srv->stats.dropped++;
            c->srv->stats.bad_requests++;
            log_warn("control: %s", msg);
            queue_error(c, CTL_REFUSED, msg);
            c->closing = 1;
            conn_flush(c);
            return; /* closed, or closes once the error is written */
        }
        dispatch(c, body, blen);
        off += flen;
        if (conn_flush(c) < 0)
            return;
    }
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

static void on_conn_write(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    if (conn_flush(c) == 0)
        conn_process(c); /* requests pipelined behind the one just answered */
}

static void on_conn_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = w->data;
    /* Room for exactly one maximal frame; more would only be buffered, never processed. */
    size_t cap = CTL_HEADER + CTL_MAX_REQUEST;
    if (c->in_cap - c->in_len < 4096 && c->in_cap < cap) {
        c->in_cap = c->in_cap * 2 > cap ? cap : c->in_cap * 2;
        c->in = xrealloc(c->in, c->in_cap);
    }
    if (c->in_len == c->in_cap) {
        /* Full, yet no complete frame: impossible with legal frames, so drop the peer
         * rather than spin on a readable socket we can't read into. */
        c->srv->stats.dropped++;
        conn_close(c);
        return;
    }
    ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n < 0)
        return;
    c->in_len += (size_t)n;
    ev_timer_again(loop, &c->idle);
    conn_process(c);
}

static void on_conn_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct conn *c = w->data;
    c->srv->stats.dropped++;
    log_debug("control: closing idle connection");
    conn_close(c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    control_t *s = w->data;
    for (;;) {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR)
                log_warn("control: accept: %s", strerror(errno));
            return;
        }
        if (s->stats.connections >= CONTROL_MAX_CONNS) {
            log_warn("control: %d connections open; refusing another", CONTROL_MAX_CONNS);
            close(fd);
            continue;
        }
        struct conn *c = xcalloc(1, sizeof(*c));
        c->srv = s;
        c->fd = fd;
        c->in_cap = 4096;
        c->in = xmalloc(c->in_cap);
        msgpack_sbuffer_init(&c->out);
        ev_io_init(&c->rio, on_conn_read, fd, EV_READ);
        ev_io_init(&c->wio, on_conn_write, fd, EV_WRITE);
        ev_init(&c->idle, on_conn_idle);
        c->idle.repeat = CONTROL_IDLE_MS / 1000.0;
        c->rio.data = c->wio.data = c->idle.data = c;
        ev_io_start(loop, &c->rio);
        ev_timer_again(loop, &c->idle);
        c->next = s->conns;
        s->conns = c;
        s->stats.connections++;
    }
}

control_t *control_new(struct ev_loop *loop, const char *path, const control_command_t *table,
                       void *ctx, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen,
                 "control socket path %s is longer than %zu bytes; use a shorter "
                 "data directory path",
                 path, sizeof(sa.sun_path) - 1);
        return NULL;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return NULL;
    }
    unlink(path);
    /* Bind under a 077 umask so the socket is never reachable by others, not even between
     * bind and chmod. */
    mode_t old = umask(077);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    int e = errno;
    umask(old);
    if (rc != 0 || chmod(path, 0600) != 0 || listen(fd, 16) != 0) {
        e = rc ? e : errno;
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(e));
        close(fd);
        return NULL;
    }
    control_t *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->fd = fd;
    s->tables[0].table = table;
    s->tables[0].ctx = ctx;
    s->ntables = 1;
    memcpy(s->path, path, strlen(path) + 1);
    ev_io_init(&s->accept_io, on_accept, fd, EV_READ);
    s->accept_io.data = s;
    ev_io_start(loop, &s->accept_io);
    return s;
}

void control_destroy(control_t **cp)
{
    if (!cp || !*cp)
        return;
    control_t *s = *cp;
    while (s->conns)
        conn_close(s->conns);
    ev_io_stop(s->loop, &s->accept_io);
    close(s->fd);
    unlink(s->path);
    free(s);
    *cp = NULL;
}

void control_set_guard(control_t *c, control_guard_fn fn, void *ctx)
{
    c->guard = fn;
    c->guard_ctx = ctx;
}

int control_add_commands(control_t *c, const control_command_t *table, void *ctx)
{
    if (c->ntables == CONTROL_MAX_TABLES)
        return -ENOSPC;
    c->tables[c->ntables].table = table;
    c->tables[c->ntables].ctx = ctx;
    c->ntables++;
    return 0;
}

int control_call(control_t *c, const char *command, msgpack_packer *body)
{
    static const uint8_t empty_map = 0x80; /* msgpack fixmap of 0 pairs */
    ctl_request_t req = {.version = CTL_VERSION,
                         .command = command,
                         .command_len = (uint32_t)strlen(command),
                         .args = &empty_map,
                         .args_len = 1};
    for (unsigned t = 0; t < c->ntables; t++)
        for (const control_command_t *cmd = c->tables[t].table; cmd->name; cmd++)
            if (!strcmp(cmd->name, command))
                return cmd->fn(c->tables[t].ctx, &req, body);
    return -ENOENT;
}

void control_get_stats(const control_t *c, control_stats_t *st)
{
    *st = c->stats;
}
