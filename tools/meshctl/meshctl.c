/* meshctl: the operator CLI. It talks to the local popd over DIR/control.sock.
 *
 * Commands come from one table (group, name, handler, usage, help): dispatch, "--help" and the
 * command list are all generated from it. Exit codes are part of the interface:
 *   0 ok, 1 not found or refused, 2 usage error, 3 daemon unreachable. */
#include "common/mp.h"
#include "common/mpjson.h"
#include "common/xmalloc.h"
#include "node/ctl/ctlproto.h"
#include "node/records/nodecert.h"

#include <errno.h>
#include <jansson.h>
#include <qrencode.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

#define DEFAULT_DATA_DIR "/var/lib/popmesh"
#define RESPONSE_TIMEOUT 10000 /* ms to wait for popd's answer */
#define LIST_PAGE        1000  /* entries per config.list request */

typedef struct ctx {
    const char *socket_path;
    bool json;
    int fd;
    char sockbuf[256];
} ctx_t;

typedef struct command {
    const char *group; /* NULL for a top-level command */
    const char *name;
    int (*fn)(ctx_t *c, const struct command *self, int argc, char **argv);
    const char *usage;
    const char *help;
} command_t;

static const command_t commands[];

static int usage(const command_t *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void print_usage_line(FILE *f, const command_t *cmd)
{
    fprintf(f, "meshctl %s%s%s %s\n", cmd->group ? cmd->group : "", cmd->group ? " " : "",
            cmd->name, cmd->usage);
}

static int usage(const command_t *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "meshctl: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: ");
    print_usage_line(stderr, cmd);
    return EXIT_USAGE;
}

/* ---- talking to popd ------------------------------------------------------------------ */

static int connect_daemon(ctx_t *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(c->socket_path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "meshctl: socket path %s is too long\n", c->socket_path);
        return EXIT_USAGE;
    }
    strcpy(sa.sun_path, c->socket_path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        fprintf(stderr, "meshctl: cannot reach popd at %s: %s\n", c->socket_path, strerror(e));
        if (e == ENOENT || e == ECONNREFUSED)
            fprintf(stderr, "meshctl: is popd running? (popd run --data DIR; meshctl -d DIR)\n");
        else if (e == EACCES)
            fprintf(stderr, "meshctl: the control socket is mode 0600: run as its owner\n");
        return EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}

static int read_full(int fd, uint8_t *buf, size_t len, int *timeout_ms)
{
    size_t off = 0;
    while (off < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = poll(&p, 1, *timeout_ms);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        *timeout_ms -= (int)((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
        if (rc == 0 || *timeout_ms <= 0)
            return -ETIMEDOUT;
        if (rc < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        ssize_t n = recv(fd, buf + off, len - off, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        off += (size_t)n;
    }
    return 0;
}

/* Sends one request and waits for its response. On EXIT_OK, *resp points into *raw, which the
 * caller frees. Transport failures print their reason and return EXIT_UNREACHABLE. */
static int call(ctx_t *c, const msgpack_sbuffer *req, ctl_response_t *resp, uint8_t **raw)
{
    if (c->fd < 0) {
        int rc = connect_daemon(c);
        if (rc)
            return rc;
    }
    size_t off = 0;
    while (off < req->size) {
        ssize_t w = send(c->fd, req->data + off, req->size - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "meshctl: sending to popd failed: %s\n", strerror(errno));
            return EXIT_UNREACHABLE;
        }
        off += (size_t)w;
    }
    uint8_t hdr[CTL_HEADER];
    int timeout = RESPONSE_TIMEOUT;
    int rc = read_full(c->fd, hdr, sizeof(hdr), &timeout);
    uint32_t n = 0;
    if (rc == 0) {
        n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
        if (n > CTL_MAX_RESPONSE)
            rc = -EMSGSIZE;
    }
    if (rc == 0) {
        *raw = xmalloc(n ? n : 1);
        rc = read_full(c->fd, *raw, n, &timeout);
        if (rc)
            free(*raw);
    }
    if (rc) {
        fprintf(stderr, "meshctl: no answer from popd at %s: %s\n", c->socket_path,
                rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
        return EXIT_UNREACHABLE;
    }
    const char *why = "";
    if (ctl_response_decode(*raw, n, resp, &why) != 0) {
        free(*raw);
        fprintf(stderr, "meshctl: popd sent a malformed response: %s\n", why);
        return EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}

/* Builds [version, command, {args...}] from (name, str) pairs; a NULL str skips the pair.
 * Non-string arguments are added by the caller through the returned packer before the frame
 * is closed, so this takes the number of extra pairs too. */
typedef struct request {
    msgpack_sbuffer buf;
    msgpack_packer pk;
} request_t;

static void request_begin(request_t *r, const char *command, size_t nargs)
{
    msgpack_sbuffer_init(&r->buf);
    msgpack_packer_init(&r->pk, &r->buf, msgpack_sbuffer_write);
    ctl_frame_begin(&r->buf);
    msgpack_pack_array(&r->pk, 3);
    msgpack_pack_uint32(&r->pk, CTL_VERSION);
    mpw_str(&r->pk, command);
    msgpack_pack_map(&r->pk, nargs);
}

static void request_end(request_t *r)
{
    ctl_frame_end(&r->buf);
}

/* Prints an error response and maps its status to an exit code. */
static int report_failure(const ctl_response_t *resp)
{
    json_t *body = mpjson_from(resp->body, resp->body_len);
    const char *msg = json_string_value(json_object_get(body, "error"));
    fprintf(stderr, "meshctl: %s: %s\n", ctl_status_name(resp->status),
            msg ? msg : "(no reason given)");
    json_decref(body);
    return resp->status == CTL_BAD_REQUEST ? EXIT_USAGE : EXIT_REFUSED;
}

/* Send, check the status, hand back the body as JSON (caller owns it). quiet: a refusal
 * prints nothing (an optional part of an answer that an older popd lacks). */
static int roundtrip_as(ctx_t *c, request_t *r, json_t **out, bool quiet)
{
    ctl_response_t resp;
    uint8_t *raw = NULL;
    *out = NULL;
    request_end(r);
    int rc = call(c, &r->buf, &resp, &raw);
    msgpack_sbuffer_destroy(&r->buf);
    if (rc)
        return rc;
    if (resp.status != CTL_OK) {
        rc = quiet ? EXIT_REFUSED : report_failure(&resp);
        free(raw);
        return rc;
    }
    *out = mpjson_from(resp.body, resp.body_len);
    free(raw);
    if (!*out) {
        if (!quiet)
            fprintf(stderr, "meshctl: popd's answer could not be rendered\n");
        return EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}

/* The common path. */
static int roundtrip(ctx_t *c, request_t *r, json_t **out)
{
    return roundtrip_as(c, r, out, false);
}

static int roundtrip_quiet(ctx_t *c, request_t *r, json_t **out)
{
    return roundtrip_as(c, r, out, true);
}

/* The same text as the admin listener's /api/ answers (mpjson_text). */
static void print_json(json_t *j)
{
    char *t = mpjson_text(j);
    fputs(t ? t : "null\n", stdout);
    free(t);
}

/* A value for humans: strings as they are, anything else as compact JSON. */
static void print_value(FILE *f, json_t *v)
{
    if (json_is_string(v)) {
        fputs(json_string_value(v), f);
        return;
    }
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    fputs(s ? s : "?", f);
    free(s);
}

/* ---- commands ------------------------------------------------------------------------- */

/* Handles --json and --help anywhere and drops them (and a "--") from argv. */
static int parse_flags(ctx_t *c, const command_t *cmd, int *argc, char **argv)
{
    int out = 0;
    for (int i = 0; i < *argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            c->json = true;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: ");
            print_usage_line(stdout, cmd);
            printf("\n%s\n", cmd->help);
            return -1;
        } else if (!strcmp(argv[i], "--")) {
            for (i++; i < *argc; i++)
                argv[out++] = argv[i];
        } else {
            /* Other options belong to the command (it validates them); a value may also
             * start with '-'. */
            argv[out++] = argv[i];
        }
    }
    *argc = out;
    return 0;
}

static const char *human_size(uint64_t b, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    int u = 0;
    while (v >= 1024 && u < 4)
        v /= 1024, u++;
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

/* An HLC version as a reader wants it: the wall-clock time it stands for, plus the counter
 * that orders events within one millisecond. */
static const char *human_version(json_t *v, char *buf, size_t len)
{
    uint64_t ver = (uint64_t)json_integer_value(v);
    time_t secs = (time_t)((ver >> 16) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03lluZ+%llu", when, (unsigned long long)((ver >> 16) % 1000),
             (unsigned long long)(ver & 0xffff));
    return buf;
}

/* The shape of every argument-less query: check there are no arguments, ask popd, and with
 * --json print the answer as is. Returns an exit code; *out is the answer for the caller to
 * render as a table (caller owns it), or NULL when it was already printed as JSON. */
static int query(ctx_t *c, const command_t *self, int argc, const char *command, json_t **out)
{
    request_t r;
    json_t *j;
    *out = NULL;
    if (argc)
        return usage(self, "this command takes no arguments");
    request_begin(&r, command, 0);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    *out = j;
    return EXIT_OK;
}

/* A query with at most one positional argument, sent as argname when given: like query(),
 * --json prints the answer and leaves *out NULL. what names the argument in the usage error. */
static int query_one(ctx_t *c, const command_t *self, int argc, char **argv, const char *command,
                     const char *argname, const char *what, json_t **out)
{
    *out = NULL;
    if (argc > 1)
        return usage(self, "%s%s%s takes at most one %s", self->group ? self->group : "",
                     self->group ? " " : "", self->name, what);
    request_t r;
    json_t *j;
    request_begin(&r, command, argc ? 1 : 0);
    if (argc) {
        mpw_str(&r.pk, argname);
        mpw_str(&r.pk, argv[0]);
    }
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    *out = j;
    return EXIT_OK;
}

static int cmd_status(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query(c, self, argc, "status", &j);
    if (rc || !j)
        return rc;
    json_t *st = json_object_get(j, "store");
    char a[32], b[32];
    json_t *mem = json_object_get(j, "members");
    printf("mesh      %s\n", json_string_value(json_object_get(j, "mesh_id")));
    printf("members   %lld alive, %lld suspect, %lld dead, %lld left\n",
           (long long)json_integer_value(json_object_get(mem, "alive")),
           (long long)json_integer_value(json_object_get(mem, "suspect")),
           (long long)json_integer_value(json_object_get(mem, "dead")),
           (long long)json_integer_value(json_object_get(mem, "left")));
    printf("node      %s\n", json_string_value(json_object_get(j, "name")));
    printf("id        %s\n", json_string_value(json_object_get(j, "id")));
    const char *region = json_string_value(json_object_get(j, "region"));
    printf("region    %s\n", region && region[0] ? region : "-");
    printf("version   %s\n", json_string_value(json_object_get(j, "version")));
    printf("pid       %lld\n", (long long)json_integer_value(json_object_get(j, "pid")));
    printf("uptime    %.1f s\n", json_number_value(json_object_get(j, "uptime_s")));
    printf("data      %s\n", json_string_value(json_object_get(j, "data_dir")));
    /* clock: this node's wall clock against the median of its alive peers' */
    json_t *clk = json_object_get(j, "clock");
    json_t *off = json_object_get(clk, "offset_ms");
    if (json_is_integer(off)) {
        long long o = (long long)json_integer_value(off);
        printf("clock     %+.1f s against the mesh (median of %lld peers)%s\n", o / 1000.0,
               (long long)json_integer_value(json_object_get(clk, "peers")),
               !strcmp(json_string_value(json_object_get(clk, "writes")) ?: "", "refused")
                   ? ": WRITES REFUSED, fix this node's time (NTP)"
                   : "");
    } else {
        printf("clock     not measured (no alive peer answered a probe yet)\n");
    }
    printf("entries   %lld live, %lld tombstones\n",
           (long long)json_integer_value(json_object_get(st, "entries")),
           (long long)json_integer_value(json_object_get(st, "tombstones")));
    printf("store     %s used of %s\n",
           human_size((uint64_t)json_integer_value(json_object_get(st, "map_used")), a, sizeof(a)),
           human_size((uint64_t)json_integer_value(json_object_get(st, "map_size")), b, sizeof(b)));
    json_t *dpj = json_object_get(j, "dataplane"), *drop = json_object_get(dpj, "udp_dropped");
    if (json_integer_value(json_object_get(dpj, "udp_flows_opened"))) { /* UDP resources seen */
        long long dv[5];
        const char *dk[5] = {"oversize", "queue_full", "flow_cap", "no_route", "send_failed"};
        for (int i = 0; i < 5; i++)
            dv[i] = (long long)json_integer_value(json_object_get(drop, dk[i]));
        printf("udp       %lld flows (%lld opened), %lld datagrams in, %lld out; dropped: "
               "oversize %lld, queue full %lld, flow cap %lld, no route %lld, send failed %lld\n",
               (long long)json_integer_value(json_object_get(dpj, "udp_flows")),
               (long long)json_integer_value(json_object_get(dpj, "udp_flows_opened")),
               (long long)json_integer_value(json_object_get(dpj, "udp_datagrams_in")),
               (long long)json_integer_value(json_object_get(dpj, "udp_datagrams_out")), dv[0],
               dv[1], dv[2], dv[3], dv[4]);
    }
    json_decref(j);
    return EXIT_OK;
}

static int read_stdin_value(char **out, size_t *len)
{
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap > CTL_MAX_REQUEST) {
                free(buf);
                return -E2BIG;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, stdin);
        n += r;
        if (r == 0)
            break;
    }
    if (n && buf[n - 1] == '\n') /* what `echo value |` adds is not part of the value */
        n--;
    *out = buf;
    *len = n;
    return 0;
}

static int cmd_config_set(ctx_t *c, const command_t *self, int argc, char **argv)
{
    if (argc != 2)
        return usage(self, "config set takes KEY and VALUE");
    char *stdin_value = NULL;
    const char *value = argv[1];
    size_t vlen = strlen(value);
    if (!strcmp(value, "-")) {
        if (read_stdin_value(&stdin_value, &vlen) != 0) {
            fprintf(stderr, "meshctl: value on stdin is larger than %d bytes\n", CTL_MAX_REQUEST);
            return EXIT_REFUSED;
        }
        value = stdin_value;
    }
    request_t r;
    json_t *j;
    request_begin(&r, "config.set", 2);
    mpw_str(&r.pk, "key");
    mpw_str(&r.pk, argv[0]);
    mpw_str(&r.pk, "value");
    mpw_strn(&r.pk, value, vlen);
    free(stdin_value);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json)
        print_json(j);
    else {
        char when[64];
        printf("%s set (version %s)\n", argv[0],
               human_version(json_object_get(j, "version"), when, sizeof(when)));
    }
    json_decref(j);
    return EXIT_OK;
}

static int key_request(ctx_t *c, const char *command, const char *key, json_t **j)
{
    request_t r;
    request_begin(&r, command, 1);
    mpw_str(&r.pk, "key");
    mpw_str(&r.pk, key);
    return roundtrip(c, &r, j);
}

static int cmd_config_get(ctx_t *c, const command_t *self, int argc, char **argv)
{
    if (argc != 1)
        return usage(self, "config get takes one KEY");
    json_t *j;
    int rc = key_request(c, "config.get", argv[0], &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        print_value(stdout, json_object_get(j, "value"));
        fputc('\n', stdout);
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_config_del(ctx_t *c, const command_t *self, int argc, char **argv)
{
    if (argc != 1)
        return usage(self, "config del takes one KEY");
    json_t *j;
    int rc = key_request(c, "config.del", argv[0], &j);
    if (rc)
        return rc;
    if (c->json)
        print_json(j);
    else
        printf("%s deleted\n", argv[0]);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_config_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    if (argc > 1)
        return usage(self, "config list takes at most one PREFIX");
    const char *prefix = argc ? argv[0] : "";
    json_t *all = json_array();
    char *after = NULL;
    int rc = EXIT_OK;
    /* Page through: each answer is bounded, and 'after' resumes past the last key seen. */
    for (;;) {
        request_t r;
        json_t *j;
        request_begin(&r, "config.list", after ? 3 : 2);
        mpw_str(&r.pk, "prefix");
        mpw_str(&r.pk, prefix);
        mpw_str(&r.pk, "limit");
        msgpack_pack_uint32(&r.pk, LIST_PAGE);
        if (after) {
            mpw_str(&r.pk, "after");
            mpw_str(&r.pk, after);
        }
        rc = roundtrip(c, &r, &j);
        if (rc)
            break;
        json_t *entries = json_object_get(j, "entries");
        size_t i;
        json_t *e;
        json_array_foreach(entries, i, e) json_array_append(all, e);
        size_t n = json_array_size(entries);
        bool more = json_is_true(json_object_get(j, "more"));
        free(after);
        after =
            n ? xstrdup(json_string_value(json_object_get(json_array_get(entries, n - 1), "key")))
              : NULL;
        json_decref(j);
        if (!more || !after)
            break;
    }
    free(after);
    if (rc == EXIT_OK) {
        if (c->json) {
            print_json(all);
        } else {
            size_t i, w = 3;
            json_t *e;
            json_array_foreach(all, i, e)
            {
                size_t l = strlen(json_string_value(json_object_get(e, "key")));
                w = l > w ? l : w;
            }
            if (w > 60)
                w = 60;
            printf("%-*s  %s\n", (int)w, "KEY", "VALUE");
            json_array_foreach(all, i, e)
            {
                printf("%-*s  ", (int)w, json_string_value(json_object_get(e, "key")));
                print_value(stdout, json_object_get(e, "value"));
                fputc('\n', stdout);
            }
        }
    }
    json_decref(all);
    return rc;
}

/* Parses "90s", "15m", "2h", "7d", "500ms" into ms. */
static int parse_duration_ms(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -1;
    uint64_t mult;
    if (!strcmp(end, "ms"))
        mult = 1;
    else if (!strcmp(end, "s") || !*end)
        mult = 1000;
    else if (!strcmp(end, "m"))
        mult = 60000;
    else if (!strcmp(end, "h"))
        mult = 3600000;
    else if (!strcmp(end, "d"))
        mult = 86400000;
    else
        return -1;
    if (v > UINT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static const char *human_time(uint64_t ms, char *buf, size_t len)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
    return buf;
}

static int cmd_members(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query(c, self, argc, "members", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *m;
    printf("%-20s %-16s %-12s %-22s %-8s %5s %7s %-20s %9s %6s %8s %-12s %7s %7s %6s %-8s %-32s "
           "%s\n",
           "NAME", "ID", "REGION", "ADDRESS", "STATE", "INC", "RTT", "LINK", "CLOCK", "CPU", "RSS",
           "INGRESS", "STREAMS", "TUNNELS", "LOAD", "DRAINING", "PUBLIC", "LOCATION");
    json_array_foreach(j, i, m)
    {
        char rtt[32] = "-";
        long long ms = (long long)json_integer_value(json_object_get(m, "rtt_ms"));
        if (json_is_true(json_object_get(m, "self")))
            snprintf(rtt, sizeof(rtt), "(self)");
        else if (ms > 0)
            snprintf(rtt, sizeof(rtt), "%lldms", ms);
        /* CLOCK: the member's clock minus ours, as estimated from probes. */
        char clk[32] = "-";
        json_t *off = json_object_get(m, "clock_offset_ms");
        if (json_is_integer(off))
            snprintf(clk, sizeof(clk), "%+.1fs", (double)json_integer_value(off) / 1000.0);
        const char *region = json_string_value(json_object_get(m, "region"));
        json_t *h = json_object_get(m, "health");
        char cpu[16] = "-", rss[24] = "-", ingress[32] = "-", streams[16] = "-", tunnels[16] = "-",
             load[16] = "-";
        if (json_is_object(h)) {
            snprintf(cpu, sizeof(cpu), "%.1f%%", json_number_value(json_object_get(h, "cpu_pct")));
            snprintf(rss, sizeof(rss), "%.1fM",
                     (double)json_integer_value(json_object_get(h, "rss_kb")) / 1024.0);
            /* INGRESS: up or DOWN, with listeners bound and accepting / configured (an older
             * node does not send the counts). */
            bool up = json_is_true(json_object_get(h, "ingress_up"));
            json_t *lu = json_object_get(h, "listeners_up"), *l = json_object_get(h, "listeners");
            if (json_is_integer(lu) && json_is_integer(l))
                snprintf(ingress, sizeof(ingress), "%s %lld/%lld", up ? "up" : "DOWN",
                         (long long)json_integer_value(lu), (long long)json_integer_value(l));
            else
                snprintf(ingress, sizeof(ingress), "%s", up ? "up" : "DOWN");
            snprintf(streams, sizeof(streams), "%lld",
                     (long long)json_integer_value(json_object_get(h, "streams")));
            json_t *t = json_object_get(h, "tunnels");
            if (json_is_integer(t))
                snprintf(tunnels, sizeof(tunnels), "%lld", (long long)json_integer_value(t));
            snprintf(load, sizeof(load), "%.1f%%",
                     json_number_value(json_object_get(h, "load_pct")));
        }
        /* DNS steering: draining, the public addresses answers give, the location. */
        const char *p4 = json_string_value(json_object_get(m, "public4"));
        const char *p6 = json_string_value(json_object_get(m, "public6"));
        const char *loc = json_string_value(json_object_get(m, "location"));
        char pub[128] = "-";
        if ((p4 && *p4) || (p6 && *p6))
            snprintf(pub, sizeof(pub), "%s%s%s", p4 ? p4 : "", p4 && *p4 && p6 && *p6 ? "," : "",
                     p6 ? p6 : "");
        /* LINK: how this PoP reaches it: direct, or reverse (only on the connection it opened
         * to us: one way), and "no-inbound" when its record says it takes none, "learned" when
         * it was found not to without being told. */
        const char *lk = json_string_value(json_object_get(m, "link"));
        char link[40];
        snprintf(link, sizeof(link), "%s%s", lk && *lk ? lk : "-",
                 json_is_true(json_object_get(m, "no_inbound"))        ? " (no-inbound)"
                 : json_is_true(json_object_get(m, "one_way_learned")) ? " (learned)"
                                                                       : "");
        printf("%-20s %-16s %-12s %-22s %-8s %5lld %7s %-20s %9s %6s %8s %-12s %7s %7s %6s %-8s "
               "%-32s %s\n",
               json_string_value(json_object_get(m, "name")),
               json_string_value(json_object_get(m, "id")), region && *region ? region : "-",
               json_string_value(json_object_get(m, "addr")),
               json_string_value(json_object_get(m, "state")),
               (long long)json_integer_value(json_object_get(m, "incarnation")), rtt, link, clk, cpu,
               rss,
               ingress, streams, tunnels, load,
               json_is_true(json_object_get(m, "draining")) ? "yes" : "-", pub, loc ? loc : "-");
    }
    json_decref(j);
    return EXIT_OK;
}

/* Options after the subcommand: --name VALUE pairs; returns the value or NULL. Consumes. */
static const char *take_opt(int *argc, char **argv, const char *name, int *err)
{
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], name) != 0)
            continue;
        if (i + 1 >= *argc) {
            *err = 1;
            return NULL;
        }
        const char *v = argv[i + 1];
        memmove(&argv[i], &argv[i + 2], (size_t)(*argc - i - 2) * sizeof(char *));
        *argc -= 2;
        return v;
    }
    return NULL;
}

static int cmd_token_create(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *role = take_opt(&argc, argv, "--role", &err);
    const char *ttl = take_opt(&argc, argv, "--ttl", &err);
    const char *uses = take_opt(&argc, argv, "--uses", &err);
    const char *capstr = take_opt(&argc, argv, "--capabilities", &err);
    if (err)
        return usage(self, "an option is missing its value");
    if (argc)
        return usage(self, "unexpected argument '%s'", argv[0]);
    if (!role)
        role = "pop";
    uint32_t caps = 0;
    char cwhy[300];
    if (capstr && nodecert_caps_parse(capstr, &caps, cwhy, sizeof(cwhy)))
        return usage(self, "--capabilities: %s", cwhy);
    if (strcmp(role, "pop") && strcmp(role, "site"))
        return usage(self, "--role must be pop or site");
    uint64_t ttl_ms = 3600 * 1000, nuses = 1;
    if (ttl && parse_duration_ms(ttl, &ttl_ms))
        return usage(self, "--ttl '%s' is not a duration (e.g. 30m, 2h, 7d)", ttl);
    if (uses) {
        char *end;
        nuses = strtoull(uses, &end, 10);
        if (*end || uses[0] == '-' || !*uses)
            return usage(self, "--uses '%s' is not a whole number (0 = unlimited)", uses);
    }
    request_t r;
    json_t *j;
    request_begin(&r, "token.create", 3 + !!caps);
    if (caps) {
        mpw_str(&r.pk, "caps");
        msgpack_pack_uint64(&r.pk, caps);
    }
    mpw_str(&r.pk, "role");
    mpw_str(&r.pk, role);
    mpw_str(&r.pk, "ttl_ms");
    msgpack_pack_uint64(&r.pk, ttl_ms);
    mpw_str(&r.pk, "uses");
    msgpack_pack_uint64(&r.pk, nuses);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        /* The token alone on stdout, so $(meshctl token create) captures exactly it. */
        char when[40];
        printf("%s\n", json_string_value(json_object_get(j, "token")));
        fprintf(stderr, "token %s: role %s, %s use(s), expires %s\n",
                json_string_value(json_object_get(j, "id")), role,
                nuses ? uses ? uses : "1" : "unlimited",
                human_time((uint64_t)json_integer_value(json_object_get(j, "expires_ms")), when,
                           sizeof(when)));
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_token_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query(c, self, argc, "token.list", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *t;
    printf("%-16s %-5s %-8s %-9s %-21s %s\n", "ID", "ROLE", "STATE", "USES", "EXPIRES",
           "CREATED BY");
    json_array_foreach(j, i, t)
    {
        char uses[32], when[40];
        long long max = (long long)json_integer_value(json_object_get(t, "uses_max"));
        long long used = (long long)json_integer_value(json_object_get(t, "uses"));
        if (max)
            snprintf(uses, sizeof(uses), "%lld/%lld", used, max);
        else
            snprintf(uses, sizeof(uses), "%lld/-", used);
        printf("%-16s %-5s %-8s %-9s %-21s %s\n", json_string_value(json_object_get(t, "id")),
               json_string_value(json_object_get(t, "role")),
               json_string_value(json_object_get(t, "state")), uses,
               human_time((uint64_t)json_integer_value(json_object_get(t, "expires_ms")), when,
                          sizeof(when)),
               json_string_value(json_object_get(t, "created_by")));
    }
    json_decref(j);
    return EXIT_OK;
}

static int simple_named(ctx_t *c, const char *command, const char *arg, const char *value,
                        json_t **j)
{
    request_t r;
    request_begin(&r, command, 1);
    mpw_str(&r.pk, arg);
    mpw_str(&r.pk, value);
    return roundtrip(c, &r, j);
}

/* The commands that act on one named thing (token revoke ID, node remove NAME, site rm NAME,
 * resource rm NAME): checks the one argument, sends {key: argv[0]}, prints the answer with
 * --json. *out is the answer for the caller to describe, or NULL when already printed. */
static int named_action(ctx_t *c, const command_t *self, int argc, char **argv, const char *command,
                        const char *key, json_t **out)
{
    *out = NULL;
    if (argc != 1)
        return usage(self, "%s %s takes one %s", self->group, self->name, self->usage);
    json_t *j;
    int rc = simple_named(c, command, key, argv[0], &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    *out = j;
    return EXIT_OK;
}

static int cmd_token_revoke(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "token.revoke", "id", &j);
    if (rc || !j)
        return rc;
    printf("token %s revoked\n", argv[0]);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_node_remove(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "node.remove", "name", &j);
    if (rc || !j)
        return rc;
    printf("node %s (%s) removed from the mesh\n", argv[0],
           json_string_value(json_object_get(j, "id")));
    json_decref(j);
    return EXIT_OK;
}

/* "a > b > c" from a JSON array of names. */
static void print_path(json_t *path, char *buf, size_t len)
{
    size_t i, off = 0;
    json_t *h;
    buf[0] = '\0';
    json_array_foreach(path, i, h)
    {
        int n = snprintf(buf + off, len - off, "%s%s", i ? " > " : "", json_string_value(h));
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
}

static int cmd_tunnels(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "dataplane", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *e;
    printf("%-20s %-16s %-22s %9s %9s %7s %12s\n", "PEER", "ROLE", "ADDRESS", "UP", "RTT",
           "STREAMS", "SENT");
    json_array_foreach(json_object_get(j, "tunnels"), i, e)
    {
        printf("%-20s %-16s %-22s %8.1fs %7.2fms %7lld %12lld\n",
               json_string_value(json_object_get(e, "peer")),
               json_string_value(json_object_get(e, "role")),
               json_string_value(json_object_get(e, "addr")),
               (double)json_integer_value(json_object_get(e, "up_ms")) / 1000.0,
               (double)json_integer_value(json_object_get(e, "rtt_us")) / 1000.0,
               (long long)json_integer_value(json_object_get(e, "streams")),
               (long long)json_integer_value(json_object_get(e, "data_bytes_sent")));
    }
    json_decref(j);
    return 0;
}

static void cell_add(char *buf, size_t len, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int cmd_routes(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    bool json = c->json;
    c->json = false; /* the answer is two queries' */
    int rc = query(c, self, argc, "routes", &j);
    c->json = json;
    if (rc || !j)
        return rc;
    if (json) { /* with the restricted resources' routes under "resources" when popd has them */
        request_t r;
        json_t *res = NULL;
        request_begin(&r, "resource.routes", 0);
        if (roundtrip_quiet(c, &r, &res) == 0 && res)
            json_object_set(j, "resources", json_object_get(res, "resources"));
        json_decref(res);
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    size_t i;
    json_t *e;
    char path[512], bpath[512];
    printf("%-20s %-16s %-32s %9s  %s\n", "SITE", "EGRESS", "PATH", "COST", "BACKUP");
    json_array_foreach(json_object_get(j, "sites"), i, e)
    {
        if (!json_is_true(json_object_get(e, "reachable"))) {
            printf("%-20s %-16s\n", json_string_value(json_object_get(e, "site")), "unreachable");
            continue;
        }
        json_t *b = json_object_get(e, "backup");
        print_path(json_object_get(e, "path"), path, sizeof(path));
        if (json_is_object(b)) {
            char p2[400];
            print_path(json_object_get(b, "path"), p2, sizeof(p2));
            snprintf(bpath, sizeof(bpath), "%s (%.2f ms)", p2,
                     json_number_value(json_object_get(b, "cost_ms")));
        } else {
            snprintf(bpath, sizeof(bpath), "-");
        }
        printf("%-20s %-16s %-32s %7.2fms  %s\n", json_string_value(json_object_get(e, "site")),
               json_string_value(json_object_get(e, "egress")), path,
               json_number_value(json_object_get(e, "cost_ms")), bpath);
    }
    printf("\n%-20s %-16s %-32s %9s\n", "POP", "NEXT HOP", "PATH", "COST");
    json_array_foreach(json_object_get(j, "pops"), i, e)
    {
        json_t *rt = json_object_get(e, "route");
        print_path(json_object_get(rt, "path"), path, sizeof(path));
        printf("%-20s %-16s %-32s %7.2fms\n", json_string_value(json_object_get(e, "pop")),
               json_string_value(json_object_get(rt, "next_hop")), path,
               json_number_value(json_object_get(rt, "cost_ms")));
    }
    json_decref(j);
    /* Resources restricted to labelled PoPs route over those only: their own lines, "no
     * allowed path" when there is none (a PoP that predates them answers an error: skipped). */
    request_t r;
    request_begin(&r, "resource.routes", 0);
    if (roundtrip_quiet(c, &r, &j) == 0 && j) {
        json_t *res, *rep;
        size_t k;
        if (json_array_size(json_object_get(j, "resources")))
            printf("\n%-20s %-20s %-20s %-32s %9s\n", "RESOURCE", "TRANSIT LABELS", "REPLICA",
                   "PATH", "COST");
        json_array_foreach(json_object_get(j, "resources"), i, res)
        {
            char labels[256];
            size_t off = 0;
            labels[0] = '\0';
            json_array_foreach(json_object_get(res, "transit_labels"), k, rep)
                cell_add(labels, sizeof(labels), &off, "%s%s", k ? "," : "",
                         json_string_value(rep));
            const char *name = json_string_value(json_object_get(res, "name"));
            if (!json_array_size(json_object_get(res, "replicas")))
                printf("%-20s %-20s %-20s %s\n", name, labels, "-", "no connector enrolled");
            json_array_foreach(json_object_get(res, "replicas"), k, rep)
            {
                if (!json_is_true(json_object_get(rep, "reachable"))) {
                    printf("%-20s %-20s %-20s %s\n", name, labels,
                           json_string_value(json_object_get(rep, "replica")),
                           "no allowed path (not carried any other way)");
                    continue;
                }
                print_path(json_object_get(rep, "path"), path, sizeof(path));
                printf("%-20s %-20s %-20s %-32s %7.2fms\n", name, labels,
                       json_string_value(json_object_get(rep, "replica")), path,
                       json_number_value(json_object_get(rep, "cost_ms")));
            }
            if (!json_is_true(json_object_get(res, "served_here")))
                printf("%-20s %-20s (not served at this PoP: it lacks those labels)\n", name,
                       labels);
        }
        json_decref(j);
    }
    return EXIT_OK;
}

/* ---- sites and resources --------------------------------------------------------------- */

/* A flag after the subcommand (no value): true if present. Consumes. */
static bool take_flag(int *argc, char **argv, const char *name)
{
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], name) != 0)
            continue;
        memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i - 1) * sizeof(char *));
        (*argc)--;
        return true;
    }
    return false;
}

/* Appends to a fixed buffer, truncating quietly: for table cells. */
static void cell_add(char *buf, size_t len, size_t *off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cell_add(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
    if (*off >= len)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf + *off, len - *off, fmt, ap);
    va_end(ap);
    if (n > 0)
        *off += (size_t)n;
}

/* site add and site token: both mint a site token and print it the same way. */
static int site_token_cmd(ctx_t *c, const command_t *self, int argc, char **argv, bool add)
{
    int err = 0;
    const char *ttl = take_opt(&argc, argv, "--ttl", &err);
    const char *replicas = add ? take_opt(&argc, argv, "--replicas", &err) : NULL;
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 1)
        return usage(self, "site %s takes one NAME", add ? "add" : "token");
    uint64_t ttl_ms = 3600 * 1000;
    if (ttl && parse_duration_ms(ttl, &ttl_ms))
        return usage(self, "--ttl '%s' is not a duration (e.g. 30m, 2h, 7d)", ttl);
    unsigned long nrep = 1;
    if (replicas) {
        char *end;
        errno = 0;
        nrep = strtoul(replicas, &end, 10);
        if (errno || *end || end == replicas || nrep < 1 || nrep > 64 || replicas[0] == '-')
            return usage(self, "--replicas '%s' is not a number from 1 to 64", replicas);
    }
    request_t r;
    json_t *j;
    request_begin(&r, add ? "site.add" : "site.token", replicas ? 3 : 2);
    mpw_str(&r.pk, "name");
    mpw_str(&r.pk, argv[0]);
    mpw_str(&r.pk, "ttl_ms");
    msgpack_pack_uint64(&r.pk, ttl_ms);
    if (replicas) {
        mpw_str(&r.pk, "replicas");
        msgpack_pack_uint64(&r.pk, nrep);
    }
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        /* The token alone on stdout, as token create does; the rest on stderr. */
        char when[40], uses[64];
        json_int_t n = json_integer_value(json_object_get(j, "uses"));
        if (n > 1)
            snprintf(uses, sizeof(uses), "%lld uses (one per connector replica)", (long long)n);
        else
            snprintf(uses, sizeof(uses), "one use");
        printf("%s\n", json_string_value(json_object_get(j, "token")));
        fprintf(stderr,
                "%s %s%s: token %s, %s, expires %s\n"
                "enroll it on the site's machine with: popsite run --data DIR --token TOKEN\n"
                "(TOKEN is the line printed above; each replica has its own DIR)\n",
                add ? "site" : "one more replica for site", argv[0], add ? " added" : "",
                json_string_value(json_object_get(j, "token_id")), uses,
                human_time((uint64_t)json_integer_value(json_object_get(j, "expires_ms")), when,
                           sizeof(when)));
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_site_add(ctx_t *c, const command_t *self, int argc, char **argv)
{
    return site_token_cmd(c, self, argc, argv, true);
}

static int cmd_site_token(ctx_t *c, const command_t *self, int argc, char **argv)
{
    return site_token_cmd(c, self, argc, argv, false);
}

static int cmd_site_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *replica = take_opt(&argc, argv, "--replica", &err);
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 1)
        return usage(self, "site rm takes one NAME");
    request_t r;
    json_t *j;
    request_begin(&r, "site.rm", replica ? 2 : 1);
    mpw_str(&r.pk, "name");
    mpw_str(&r.pk, argv[0]);
    if (replica) {
        mpw_str(&r.pk, "replica");
        mpw_str(&r.pk, replica);
    }
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else if (replica) {
        printf("replica %s of site %s removed: its key is refused from now on\n", replica, argv[0]);
    } else {
        size_t n = json_array_size(json_object_get(j, "nodes_removed"));
        printf("site %s removed: %zu enrolled node(s) evicted%s\n", argv[0], n,
               json_is_true(json_object_get(j, "token_revoked")) ? ", its unused token revoked"
                                                                 : "");
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_site_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query(c, self, argc, "site.list", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *s;
    printf("%-20s %-16s %-8s %-21s %s\n", "NAME", "ENROLLED", "REPLICAS", "CREATED", "CREATED BY");
    json_array_foreach(json_object_get(j, "sites"), i, s)
    {
        char when[40];
        const char *node = json_string_value(json_object_get(s, "enrolled"));
        printf("%-20s %-16s %-8zu %-21s %s\n", json_string_value(json_object_get(s, "name")),
               node ? node : "(not yet)", json_array_size(json_object_get(s, "replicas")),
               human_time((uint64_t)json_integer_value(json_object_get(s, "created_ms")), when,
                          sizeof(when)),
               json_string_value(json_object_get(s, "created_by")));
    }
    json_decref(j);
    return EXIT_OK;
}

/* --hc-* numbers: a decimal from lo to hi into *out; false (with nothing written) if not. */
#define MESHCTL_TARGETS_MAX 16 /* node/records/resource.h: RESOURCE_TARGETS_MAX */

static bool hc_number(const char *s, unsigned long lo, unsigned long hi, uint32_t *out)
{
    char *end = NULL;
    if (!s || !*s || s[0] == '-' || s[0] == '+')
        return false;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = (uint32_t)v;
    return true;
}

/* A resource's health check as text: "http:/hz" and, when it sets any, its own settings
 * ("http:/hz (status 200,503, every 200ms, rise 1)"). */
static void health_text(json_t *res, char *buf, size_t len)
{
    size_t off = 0, n = 0;
    const char *health = json_string_value(json_object_get(res, "health"));
    buf[0] = '\0';
    cell_add(buf, len, &off, "%s", health ? health : "tcp");
    const char *status = json_string_value(json_object_get(res, "hc_status"));
    const char *host = json_string_value(json_object_get(res, "hc_host"));
    const struct {
        const char *key, *fmt;
    } nums[] = {{"hc_interval_ms", "every %lldms"},
                {"hc_timeout_ms", "timeout %lldms"},
                {"hc_rise", "rise %lld"},
                {"hc_fall", "fall %lld"}};
    if (status)
        cell_add(buf, len, &off, "%sstatus %s", n++ ? ", " : " (", status);
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        json_t *v = json_object_get(res, nums[i].key);
        if (!json_is_integer(v))
            continue;
        cell_add(buf, len, &off, "%s", n++ ? ", " : " (");
        cell_add(buf, len, &off, nums[i].fmt, (long long)json_integer_value(v));
    }
    if (host)
        cell_add(buf, len, &off, "%shost %s", n++ ? ", " : " (", host);
    if (n)
        cell_add(buf, len, &off, ")");
}

/* A resource's targets as text: "HOST:PORT, ..." for one site with default priorities;
 * with targets in several sites each is SITE/HOST:PORT, and a priority or weight not 1 follows
 * in brackets ("onprem/10.0.0.5:80 [p1 w3]"). */
static void targets_text(json_t *res, char *buf, size_t len)
{
    size_t k, off = 0;
    json_t *t;
    json_t *meta = json_object_get(res, "tmeta"), *x = json_object_get(res, "xtargets");
    const char *site = json_string_value(json_object_get(res, "site"));
    bool multi = json_array_size(x) > 0;
    buf[0] = '\0';
    json_array_foreach(json_object_get(res, "targets"), k, t)
    {
        json_t *m = json_array_get(meta, k);
        long long p = m ? json_integer_value(json_array_get(m, 0)) : 1;
        long long w = m ? json_integer_value(json_array_get(m, 1)) : 1;
        cell_add(buf, len, &off, "%s%s%s%s", off ? ", " : "", multi ? site : "", multi ? "/" : "",
                 json_string_value(t));
        if (p != 1 || w != 1)
            cell_add(buf, len, &off, " [p%lld w%lld]", p, w);
    }
    json_array_foreach(x, k, t)
    {
        long long p = json_integer_value(json_array_get(t, 2));
        long long w = json_integer_value(json_array_get(t, 3));
        cell_add(buf, len, &off, "%s%s/%s", off ? ", " : "",
                 json_string_value(json_array_get(t, 0)), json_string_value(json_array_get(t, 1)));
        if (p != 1 || w != 1)
            cell_add(buf, len, &off, " [p%lld w%lld]", p, w);
    }
}

static int read_pem_file(const command_t *self, const char *what, const char *path, size_t max,
                         char **out, size_t *len); /* cmd_cert.c */

static int cmd_resource_add(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *site = take_opt(&argc, argv, "--site", &err);
    const char *port = take_opt(&argc, argv, "--tcp-port", &err);
    const char *health = take_opt(&argc, argv, "--health", &err);
    const char *host = take_opt(&argc, argv, "--host", &err);
    const char *prefix = take_opt(&argc, argv, "--path-prefix", &err);
    const char *auth = take_opt(&argc, argv, "--auth", &err);
    const char *hsts = take_opt(&argc, argv, "--hsts", &err);
    const char *hc_interval = take_opt(&argc, argv, "--hc-interval", &err);
    const char *hc_timeout = take_opt(&argc, argv, "--hc-timeout", &err);
    const char *hc_rise = take_opt(&argc, argv, "--hc-rise", &err);
    const char *hc_fall = take_opt(&argc, argv, "--hc-fall", &err);
    const char *hc_status = take_opt(&argc, argv, "--hc-status", &err);
    const char *hc_host = take_opt(&argc, argv, "--hc-host", &err);
    const char *transit = take_opt(&argc, argv, "--transit-labels", &err);
    const char *ingress_l = take_opt(&argc, argv, "--ingress-labels", &err);
    const char *access_log = take_opt(&argc, argv, "--access-log", &err);
    const char *proxy = take_opt(&argc, argv, "--proxy-protocol", &err);
    const char *ca_file = take_opt(&argc, argv, "--ca", &err);
    const char *udp_port = take_opt(&argc, argv, "--udp-port", &err);
    const char *udp_idle = take_opt(&argc, argv, "--udp-idle", &err);
    const char *udp_flows = take_opt(&argc, argv, "--udp-max-flows", &err);
    uint32_t udp_num[3] = {0, 0, 0}; /* port, idle s, flows */
    uint32_t hc_num[4] = {0, 0, 0, 0};
    const char **targets = xcalloc((size_t)argc + 1, sizeof(*targets));
    const char **users = xcalloc((size_t)argc + 1, sizeof(*users));
    const char **groups = xcalloc((size_t)argc + 1, sizeof(*groups));
    size_t nt = 0, nu = 0, ng = 0;
    const char *t;
    /* --priority and --weight belong to the --target before them: read in order. */
    const char **prios = xcalloc((size_t)argc + 1, sizeof(*prios));
    const char **weights = xcalloc((size_t)argc + 1, sizeof(*weights));
    const char *orphan = NULL;
    bool any_pw = false;
    for (int i = 0; i < argc;) {
        bool is_t = !strcmp(argv[i], "--target"), is_p = !strcmp(argv[i], "--priority"),
             is_w = !strcmp(argv[i], "--weight");
        if (!is_t && !is_p && !is_w) {
            i++;
            continue;
        }
        if (i + 1 >= argc) {
            err = 1;
            break;
        }
        if (is_t) {
            targets[nt++] = argv[i + 1];
        } else if (!nt) {
            orphan = argv[i];
        } else {
            (is_p ? prios : weights)[nt - 1] = argv[i + 1];
            any_pw = true;
        }
        memmove(&argv[i], &argv[i + 2], (size_t)(argc - i - 2) * sizeof(char *));
        argc -= 2;
    }
    while ((t = take_opt(&argc, argv, "--allow-user", &err)))
        users[nu++] = t;
    while ((t = take_opt(&argc, argv, "--allow-group", &err)))
        groups[ng++] = t;
    bool sticky = take_flag(&argc, argv, "--sticky");
    bool replace = take_flag(&argc, argv, "--replace");
    bool no_redirect = take_flag(&argc, argv, "--no-https-redirect");
    bool tls = take_flag(&argc, argv, "--tls");
    bool insecure = take_flag(&argc, argv, "--insecure-skip-verify");
    bool require_2fa = take_flag(&argc, argv, "--require-2fa");
    int rc = EXIT_OK;
    unsigned long tcp_port = 0, hsts_s = 0;
    char *hend = NULL;
    if (hsts) {
        errno = 0;
        hsts_s = strtoul(hsts, &hend, 10);
    }
    char *end = NULL;
    if (port) {
        errno = 0;
        tcp_port = strtoul(port, &end, 10);
    }
    if (err)
        rc = usage(self, "an option is missing its value");
    else if (argc != 1)
        rc = argc ? usage(self, "unexpected argument '%s'", argv[argc > 1 ? 1 : 0])
                  : usage(self, "resource add takes one NAME");
    else if (orphan)
        rc = usage(self, "%s goes after the --target it is for", orphan);
    else if (nt == 0)
        rc = usage(self, "at least one --target HOST:PORT (or SITE/HOST:PORT) is required");
    else if (!site && !strchr(targets[0], '/'))
        rc = usage(self, "--site SITE is required for a --target without its site (%s): the site "
                         "that serves it; or write --target SITE/HOST:PORT",
                   targets[0]);
    else if (udp_port && (port || host || tls || health))
        rc = usage(self, "--udp-port makes a UDP resource: it takes no --tcp-port, --host, --tls "
                         "or --health (add another resource for TCP or HTTP)");
    else if (udp_port && !hc_number(udp_port, 1, 65535, &udp_num[0]))
        rc = usage(self, "--udp-port '%s' is not a port (1-65535)", udp_port);
    else if ((udp_idle || udp_flows) && !udp_port)
        rc = usage(self, "--udp-idle and --udp-max-flows need --udp-port");
    else if (udp_idle && !hc_number(udp_idle, 1, 3600, &udp_num[1]))
        rc = usage(self, "--udp-idle '%s' is not a number of seconds from 1 to 3600", udp_idle);
    else if (udp_flows && !hc_number(udp_flows, 1, 65536, &udp_num[2]))
        rc = usage(self, "--udp-max-flows '%s' is not a number from 1 to 65536", udp_flows);
    else if (!port && !host && !udp_port)
        rc = usage(self, "--tcp-port PORT or --host HOSTNAME (or both), or --udp-port PORT, is "
                         "required: the port every PoP listens on, the HTTP host they serve");
    else if (port &&
             (errno || !*port || *end || port[0] == '-' || tcp_port == 0 || tcp_port > 65535))
        rc = usage(self, "--tcp-port '%s' is not a port (1-65535)", port);
    else if (!host && (prefix || auth || nu || ng || hsts || no_redirect))
        rc = usage(self, "--path-prefix, --auth, --allow-user, --allow-group, --hsts and "
                         "--no-https-redirect need --host");
    else if (tls && !port)
        rc = usage(self, "--tls needs --tcp-port: it terminates TLS on that port (HTTP hosts get "
                         "TLS from the PoPs' HTTPS listener)");
    else if (hsts && (errno || !*hsts || *hend || hsts[0] == '-' || hsts_s > 63072000))
        rc = usage(self, "--hsts '%s' is not a number of seconds (0 to 63072000, two years)",
                   hsts);
    else if (hc_interval && !hc_number(hc_interval, 100, 86400000, &hc_num[0]))
        rc = usage(self, "--hc-interval '%s' is not a number of milliseconds from 100 to 86400000",
                   hc_interval);
    else if (hc_timeout && !hc_number(hc_timeout, 50, 600000, &hc_num[1]))
        rc = usage(self, "--hc-timeout '%s' is not a number of milliseconds from 50 to 600000",
                   hc_timeout);
    else if (hc_rise && !hc_number(hc_rise, 1, 1000, &hc_num[2]))
        rc = usage(self, "--hc-rise '%s' is not a number of checks from 1 to 1000", hc_rise);
    else if (hc_fall && !hc_number(hc_fall, 1, 1000, &hc_num[3]))
        rc = usage(self, "--hc-fall '%s' is not a number of checks from 1 to 1000", hc_fall);
    else if ((hc_status || hc_host) && (!health || strncmp(health, "http:", 5) != 0))
        rc = usage(self, "--hc-status and --hc-host need --health http:/PATH (a tcp check sends "
                         "no request)");
    else if (hc_status && (!*hc_status || strlen(hc_status) > 127))
        rc = usage(self, "--hc-status '%s' is not a list such as 200,204,3xx,500-503", hc_status);
    else if (hc_host && (!*hc_host || strlen(hc_host) > 259))
        rc = usage(self, "--hc-host '%s' is not a host name with an optional :port", hc_host);
    uint32_t pv[MESHCTL_TARGETS_MAX + 1] = {0}, wv[MESHCTL_TARGETS_MAX + 1] = {0};
    for (size_t i = 0; i < nt && !rc && i < MESHCTL_TARGETS_MAX + 1; i++) {
        if (prios[i] && !hc_number(prios[i], 1, 100, &pv[i]))
            rc = usage(self, "--priority '%s' (of --target %s) is not a number from 1 to 100 (1 "
                             "is tried first)",
                       prios[i], targets[i]);
        else if (weights[i] && !hc_number(weights[i], 1, 1000, &wv[i]))
            rc = usage(self, "--weight '%s' (of --target %s) is not a number from 1 to 1000",
                       weights[i], targets[i]);
    }
    if (!rc && nt > MESHCTL_TARGETS_MAX)
        rc = usage(self, "a resource has 1 to %d targets, not %zu", MESHCTL_TARGETS_MAX, nt);
    char *ca_pem = NULL; /* --ca: its text is sent, popd checks it */
    size_t ca_len = 0;
    if (!rc && ca_file)
        rc = read_pem_file(self, "CA", ca_file, 8192, &ca_pem, &ca_len);
    free(prios);
    free(weights);
    if (rc) {
        free(targets);
        free(users);
        free(groups);
        return rc;
    }
    request_t r;
    json_t *j;
    request_begin(&r, "resource.add",
                  3 + (site ? 1 : 0) + (any_pw ? 2 : 0) + (transit ? 1 : 0) + (ingress_l ? 1 : 0) +
                      (port ? 1 : 0) + (health ? 1 : 0) + (replace ? 1 : 0) + (host ? 1 : 0) +
                      (prefix ? 1 : 0) + (auth ? 1 : 0) + (nu ? 1 : 0) + (ng ? 1 : 0) +
                      (hsts ? 1 : 0) + (no_redirect ? 1 : 0) + (tls ? 1 : 0) +
                      (hc_interval ? 1 : 0) + (hc_timeout ? 1 : 0) + (hc_rise ? 1 : 0) +
                      (hc_fall ? 1 : 0) + (hc_status ? 1 : 0) + (hc_host ? 1 : 0) +
                      (access_log ? 1 : 0) + (require_2fa ? 1 : 0) + (udp_port ? 1 : 0) +
                      (udp_idle ? 1 : 0) + (udp_flows ? 1 : 0) + (proxy ? 1 : 0) +
                      (insecure ? 1 : 0) + (ca_pem ? 1 : 0));
    if (insecure) { /* popd says it needs https:// targets */
        mpw_str(&r.pk, "insecure_skip_verify");
        msgpack_pack_true(&r.pk);
    }
    if (ca_pem) {
        mpw_str(&r.pk, "origin_ca");
        msgpack_pack_str(&r.pk, ca_len);
        msgpack_pack_str_body(&r.pk, ca_pem, ca_len);
        free(ca_pem);
    }
    if (proxy) { /* popd judges it: v1, v2 or off, TCP resources only */
        mpw_str(&r.pk, "proxy_protocol");
        mpw_str(&r.pk, proxy);
    }
    const char *udp_keys[3] = {"udp_port", "udp_idle", "udp_max_flows"};
    for (int i = 0; i < 3; i++) {
        if (!udp_num[i])
            continue;
        mpw_str(&r.pk, udp_keys[i]);
        msgpack_pack_uint32(&r.pk, udp_num[i]);
    }
    if (require_2fa) { /* popd says it needs --auth login */
        mpw_str(&r.pk, "require_2fa");
        msgpack_pack_true(&r.pk);
    }
    if (access_log) { /* popd judges it and says what it takes */
        mpw_str(&r.pk, "access_log");
        mpw_str(&r.pk, access_log);
    }
    mpw_str(&r.pk, "name");
    mpw_str(&r.pk, argv[0]);
    if (site) {
        mpw_str(&r.pk, "site");
        mpw_str(&r.pk, site);
    }
    mpw_str(&r.pk, "targets");
    msgpack_pack_array(&r.pk, nt);
    for (size_t i = 0; i < nt; i++)
        mpw_str(&r.pk, targets[i]);
    if (any_pw) { /* 0: the default (1) */
        mpw_str(&r.pk, "priorities");
        msgpack_pack_array(&r.pk, nt);
        for (size_t i = 0; i < nt; i++)
            msgpack_pack_uint32(&r.pk, pv[i]);
        mpw_str(&r.pk, "weights");
        msgpack_pack_array(&r.pk, nt);
        for (size_t i = 0; i < nt; i++)
            msgpack_pack_uint32(&r.pk, wv[i]);
    }
    if (port) {
        mpw_str(&r.pk, "tcp_port");
        msgpack_pack_uint32(&r.pk, (uint32_t)tcp_port);
    }
    /* "a,b": popd judges each label and names a bad one */
    const char *label_opts[][2] = {{"transit_labels", transit}, {"ingress_labels", ingress_l}};
    for (size_t i = 0; i < 2; i++) {
        if (!label_opts[i][1])
            continue;
        mpw_str(&r.pk, label_opts[i][0]);
        size_t cnt = 1;
        for (const char *q = label_opts[i][1]; *q; q++)
            cnt += *q == ',';
        msgpack_pack_array(&r.pk, cnt);
        for (const char *q = label_opts[i][1];;) {
            const char *comma = strchr(q, ',');
            size_t l = comma ? (size_t)(comma - q) : strlen(q);
            msgpack_pack_str(&r.pk, l);
            msgpack_pack_str_body(&r.pk, q, l);
            if (!comma)
                break;
            q = comma + 1;
        }
    }
    const char *http_opts[][2] = {{"host", host}, {"path_prefix", prefix}, {"auth", auth}};
    for (size_t i = 0; i < 3; i++) {
        if (http_opts[i][1]) {
            mpw_str(&r.pk, http_opts[i][0]);
            mpw_str(&r.pk, http_opts[i][1]);
        }
    }
    if (nu) {
        mpw_str(&r.pk, "allow_users");
        msgpack_pack_array(&r.pk, nu);
        for (size_t i = 0; i < nu; i++)
            mpw_str(&r.pk, users[i]);
    }
    if (ng) {
        mpw_str(&r.pk, "allow_groups");
        msgpack_pack_array(&r.pk, ng);
        for (size_t i = 0; i < ng; i++)
            mpw_str(&r.pk, groups[i]);
    }
    mpw_str(&r.pk, "sticky");
    if (sticky)
        msgpack_pack_true(&r.pk);
    else
        msgpack_pack_false(&r.pk);
    if (health) {
        mpw_str(&r.pk, "health");
        mpw_str(&r.pk, health);
    }
    if (replace) {
        mpw_str(&r.pk, "replace");
        msgpack_pack_true(&r.pk);
    }
    if (hsts) {
        mpw_str(&r.pk, "hsts");
        msgpack_pack_uint32(&r.pk, (uint32_t)hsts_s);
    }
    if (no_redirect) {
        mpw_str(&r.pk, "no_https_redirect");
        msgpack_pack_true(&r.pk);
    }
    if (tls) {
        mpw_str(&r.pk, "tls");
        msgpack_pack_true(&r.pk);
    }
    const char *hc_keys[] = {"hc_interval_ms", "hc_timeout_ms", "hc_rise", "hc_fall"};
    const char *hc_given[] = {hc_interval, hc_timeout, hc_rise, hc_fall};
    for (size_t i = 0; i < 4; i++) {
        if (hc_given[i]) {
            mpw_str(&r.pk, hc_keys[i]);
            msgpack_pack_uint32(&r.pk, hc_num[i]);
        }
    }
    /* popd parses and judges these two; its answer names the field */
    if (hc_status) {
        mpw_str(&r.pk, "hc_status");
        mpw_str(&r.pk, hc_status);
    }
    if (hc_host) {
        mpw_str(&r.pk, "hc_host");
        mpw_str(&r.pk, hc_host);
    }
    free(targets);
    free(users);
    free(groups);
    rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    long long jport = (long long)json_integer_value(json_object_get(j, "tcp_port"));
    const char *jhost = json_string_value(json_object_get(j, "host"));
    char served[400] = "";
    size_t off = 0;
    if (jport)
        cell_add(served, sizeof(served), &off, "tcp port %lld%s", jport,
                 json_is_true(json_object_get(j, "tls")) ? " (TLS)" : "");
    long long judp = (long long)json_integer_value(json_object_get(j, "udp_port"));
    if (judp)
        cell_add(served, sizeof(served), &off, "udp port %lld", judp);
    if (jhost)
        cell_add(served, sizeof(served), &off, "%shttp %s%s (auth %s)", jport ? ", " : "", jhost,
                 json_string_value(json_object_get(j, "path_prefix")),
                 json_string_value(json_object_get(j, "auth")));
    char htext[512];
    health_text(j, htext, sizeof(htext));
    if (c->json)
        print_json(j);
    else
    {
        char tt[2048];
        targets_text(j, tt, sizeof(tt));
        printf("resource %s: %s on every PoP -> site %s, %zu target(s) (%s), health %s%s\n",
               argv[0], served, json_string_value(json_object_get(j, "site")),
               json_array_size(json_object_get(j, "targets")) +
                   json_array_size(json_object_get(j, "xtargets")),
               tt, htext, json_is_true(json_object_get(j, "sticky")) ? ", sticky" : "");
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_resource_set(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *access_log = take_opt(&argc, argv, "--access-log", &err);
    const char *req2fa = take_opt(&argc, argv, "--require-2fa", &err);
    const char *proxy = take_opt(&argc, argv, "--proxy-protocol", &err);
    /* Request rules: each list given replaces that list (resource.set). */
    static const char *const rule_opts[] = {"--set-header", "--remove-header",
                                            "--set-response-header", "--remove-response-header"};
    static const char *const rule_keys[] = {"req_set", "req_remove", "resp_set", "resp_remove"};
    const char **rule_v[4];
    size_t rule_n[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4; k++) {
        const char *t;
        rule_v[k] = xcalloc((size_t)argc + 1, sizeof(*rule_v[k]));
        while ((t = take_opt(&argc, argv, rule_opts[k], &err)))
            rule_v[k][rule_n[k]++] = t;
    }
    const char *host_rw = take_opt(&argc, argv, "--host-rewrite", &err);
    const char *strip = take_opt(&argc, argv, "--strip-prefix", &err);
    bool clear_rules = take_flag(&argc, argv, "--clear-rules");
    size_t nrules = (host_rw ? 1 : 0) + (strip ? 1 : 0) + (clear_rules ? 1 : 0);
    for (int k = 0; k < 4; k++)
        nrules += rule_n[k] ? 1 : 0;
    int bad = -1; /* a usage error's exit code, once the lists are freed */
    if (err)
        bad = usage(self, "an option is missing its value");
    else if (argc != 1)
        bad = argc ? usage(self, "unexpected argument '%s'", argv[argc > 1 ? 1 : 0])
                   : usage(self, "resource set takes one NAME");
    else if (!access_log && !req2fa && !proxy && !nrules)
        bad = usage(self, "nothing to set: --access-log on|off|sample:N, --require-2fa on|off, "
                          "--proxy-protocol v1|v2|off, or request rules (--set-header ...)");
    else if (req2fa && strcmp(req2fa, "on") && strcmp(req2fa, "off"))
        bad = usage(self, "--require-2fa takes on or off, not '%s'", req2fa);
    if (bad >= 0) {
        for (int k = 0; k < 4; k++)
            free(rule_v[k]);
        return bad;
    }
    request_t r;
    json_t *j;
    request_begin(&r, "resource.set",
                  1 + (access_log ? 1 : 0) + (req2fa ? 1 : 0) + (proxy ? 1 : 0) + nrules);
    mpw_str(&r.pk, "name");
    mpw_str(&r.pk, argv[0]);
    for (int k = 0; k < 4; k++) { /* popd judges names and values, and says what is wrong */
        if (rule_n[k]) {
            mpw_str(&r.pk, rule_keys[k]);
            msgpack_pack_array(&r.pk, (uint32_t)rule_n[k]);
            for (size_t i = 0; i < rule_n[k]; i++)
                mpw_str(&r.pk, rule_v[k][i]);
        }
        free(rule_v[k]);
    }
    if (host_rw) {
        mpw_str(&r.pk, "host_rewrite");
        mpw_str(&r.pk, host_rw);
    }
    if (strip) {
        mpw_str(&r.pk, "strip_prefix");
        mpw_str(&r.pk, strip);
    }
    if (clear_rules) {
        mpw_str(&r.pk, "clear_rules");
        msgpack_pack_true(&r.pk);
    }
    if (proxy) {
        mpw_str(&r.pk, "proxy_protocol");
        mpw_str(&r.pk, proxy);
    }
    if (access_log) {
        mpw_str(&r.pk, "access_log");
        mpw_str(&r.pk, access_log);
    }
    if (req2fa) {
        mpw_str(&r.pk, "require_2fa");
        if (!strcmp(req2fa, "on"))
            msgpack_pack_true(&r.pk);
        else
            msgpack_pack_false(&r.pk);
    }
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        const char *al = json_string_value(json_object_get(j, "access_log"));
        long long pp = (long long)json_integer_value(json_object_get(j, "proxy_protocol"));
        printf("resource %s: access log %s, second factor %s, PROXY protocol %s\n", argv[0],
               al ? al : "on",
               json_is_true(json_object_get(j, "require_2fa")) ? "required" : "not required",
               pp == 1 ? "v1" : pp == 2 ? "v2" : "off");
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_resource_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query(c, self, argc, "resource.list", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *res;
    printf("%-20s %-20s %9s %-24s %-12s %-5s %-16s %-6s %s\n", "NAME", "SITE", "PORT", "HOST",
           "PATH", "AUTH", "HEALTH", "STICKY", "TARGETS");
    json_array_foreach(json_object_get(j, "resources"), i, res)
    {
        char targets[2048];
        targets_text(res, targets, sizeof(targets));
        char port[12] = "-"; /* "65535/tls" */
        long long p = (long long)json_integer_value(json_object_get(res, "tcp_port"));
        const char *host = json_string_value(json_object_get(res, "host"));
        const char *prefix = json_string_value(json_object_get(res, "path_prefix"));
        const char *auth = json_string_value(json_object_get(res, "auth"));
        if (p)
            snprintf(port, sizeof(port), "%lld%s", p,
                     json_is_true(json_object_get(res, "tls")) ? "/tls" : "");
        long long up = (long long)json_integer_value(json_object_get(res, "udp_port"));
        if (up)
            snprintf(port, sizeof(port), "%lld/udp", up);
        char htext[512];
        health_text(res, htext, sizeof(htext));
        /* How the site talks to the targets, after them: the columns stay where they were. */
        char origin[128] = "";
        long long pp = (long long)json_integer_value(json_object_get(res, "proxy_protocol"));
        long long ot = (long long)json_integer_value(json_object_get(res, "origin_tls"));
        snprintf(origin, sizeof(origin), "%s%s%s%s", pp == 1 ? " (proxy-protocol v1)" : "",
                 pp == 2 ? " (proxy-protocol v2)" : "",
                 ot == 1 ? (json_object_get(res, "origin_ca") ? " (https, own CA)" : " (https)")
                         : "",
                 ot == 2 ? " (https, INSECURE: certificates not verified)" : "");
        static const char *const rk[] = {"req_set", "req_remove", "resp_set", "resp_remove",
                                         "host_rewrite", "strip_prefix"};
        bool rules = false;
        for (size_t k = 0; k < sizeof(rk) / sizeof(rk[0]); k++)
            rules |= json_object_get(res, rk[k]) != NULL;
        if (rules) /* meshctl --json resource list shows them */
            snprintf(origin + strlen(origin), sizeof(origin) - strlen(origin), " (rules)");
        printf("%-20s %-20s %9s %-24s %-12s %-5s %-16s %-6s %s%s\n",
               json_string_value(json_object_get(res, "name")),
               json_string_value(json_object_get(res, "site")), port, host ? host : "-",
               prefix ? prefix : "-", auth ? auth : "-", htext,
               json_is_true(json_object_get(res, "sticky")) ? "yes" : "no", targets, origin);
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_resource_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "resource.rm", "name", &j);
    if (rc || !j)
        return rc;
    printf("resource %s removed\n", argv[0]);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_targets(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query_one(c, self, argc, argv, "targets", "name", "RESOURCE", &j);
    if (rc || !j)
        return rc;
    printf("%-20s %-20s %-28s %4s %6s %-12s %s\n", "RESOURCE", "SITE", "TARGET", "PRIO",
           "WEIGHT", "STATE", "REPLICAS UP/LIVE (WHY)");
    size_t i, k;
    json_t *res, *t;
    json_array_foreach(json_object_get(j, "resources"), i, res)
    {
        json_array_foreach(json_object_get(res, "targets"), k, t)
        {
            const char *why = json_string_value(json_object_get(t, "why"));
            printf("%-20s %-20s %-28s %4lld %6lld %-12s %lld/%lld%s%s%s\n",
                   json_string_value(json_object_get(res, "name")),
                   json_string_value(json_object_get(t, "site")),
                   json_string_value(json_object_get(t, "addr")),
                   (long long)json_integer_value(json_object_get(t, "priority")),
                   (long long)json_integer_value(json_object_get(t, "weight")),
                   json_string_value(json_object_get(t, "state")),
                   (long long)json_integer_value(json_object_get(t, "replicas_up")),
                   (long long)json_integer_value(json_object_get(t, "replicas_live")),
                   why && *why ? " (" : "", why && *why ? why : "", why && *why ? ")" : "");
        }
    }
    json_decref(j);
    return EXIT_OK;
}

/* "pop-1 (2.4ms)" for each PoP of a site with the given role, comma-separated, or "-". */
static void site_pops(json_t *pops, const char *role, char *buf, size_t len)
{
    size_t i, off = 0, n = 0;
    json_t *p;
    buf[0] = '\0';
    json_array_foreach(pops, i, p)
    {
        const char *r = json_string_value(json_object_get(p, "role"));
        if (!r || strcmp(r, role) != 0)
            continue;
        /* the region, when the PoP has one (a PoP that predates regions sends none) */
        const char *region = json_string_value(json_object_get(p, "region"));
        bool has_region = region && region[0];
        cell_add(buf, len, &off, "%s%s (%s%s%.1fms)", n++ ? ", " : "",
                 json_string_value(json_object_get(p, "name")), has_region ? region : "",
                 has_region ? ", " : "", json_number_value(json_object_get(p, "rtt_ms")));
    }
    if (!n)
        snprintf(buf, len, "-");
}

static int cmd_sites(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query(c, self, argc, "sites", &j);
    if (rc || !j)
        return rc;
    size_t i, k;
    json_t *s, *t;
    /* A REPLICA column only when some site has a connector replica of another name: a mesh
     * of one connector per site reads as it always did. An older PoP sends no replica. */
    bool replicas = false;
    json_array_foreach(json_object_get(j, "sites"), i, s)
    {
        const char *rep = json_string_value(json_object_get(s, "replica"));
        replicas |= rep && strcmp(rep, json_string_value(json_object_get(s, "name")) ?: "");
    }
    /* With replicas, the machine each runs on ("-" until it said, or from an older site). */
    if (replicas)
        printf("%-20s %-20s %-20s ", "SITE", "REPLICA", "HOST");
    else
        printf("%-20s ", "SITE");
    printf("%-8s %-32s %-40s %s\n", "STATE", "PRIMARY (REGION, RTT)", "STANDBY (REGION, RTT)",
           "TARGETS");
    json_array_foreach(json_object_get(j, "sites"), i, s)
    {
        char primary[256], standby[512], targets[1024];
        size_t off = 0;
        json_t *pops = json_object_get(s, "pops");
        site_pops(pops, "primary", primary, sizeof(primary));
        site_pops(pops, "standby", standby, sizeof(standby));
        targets[0] = '\0';
        json_array_foreach(json_object_get(s, "targets"), k, t)
        {
            /* why a target is down, when the site said (the check spec is in --json) */
            const char *why = json_string_value(json_object_get(t, "why"));
            bool up = json_is_true(json_object_get(t, "healthy"));
            cell_add(targets, sizeof(targets), &off, "%s%s %s%s%s%s", k ? ", " : "",
                     json_string_value(json_object_get(t, "addr")), up ? "up" : "DOWN",
                     !up && why && *why ? " (" : "", !up && why && *why ? why : "",
                     !up && why && *why ? ")" : "");
        }
        /* One line per connector replica, grouped under its site (the daemon sorts them). */
        const char *site = json_string_value(json_object_get(s, "name"));
        const char *rep = json_string_value(json_object_get(s, "replica"));
        const char *host = json_string_value(json_object_get(s, "host"));
        if (replicas)
            printf("%-20s %-20s %-20s ", site, rep ? rep : site, host && *host ? host : "-");
        else
            printf("%-20s ", site);
        printf("%-8s %-32s %-40s %s\n", json_string_value(json_object_get(s, "state")), primary,
               standby, off ? targets : "-");
    }
    json_decref(j);
    return EXIT_OK;
}

/* ---- edge authentication ------------------------------------------------------ */

/* Reads a password: from stdin when it is not a terminal (one line, the newline dropped), else
 * prompted for twice on the terminal with echo off. buf holds cap bytes. 0, or an exit code
 * with the reason printed. The password is never echoed or printed. */
static int read_password(const command_t *self, char *buf, size_t cap)
{
    bool tty = isatty(STDIN_FILENO);
    size_t n = 0;
    for (int round = 0; round < (tty ? 2 : 1); round++) {
        struct termios old, quiet;
        char *dst = round == 0 ? buf : buf + cap / 2;
        size_t dcap = tty ? cap / 2 : cap;
        if (tty) {
            fprintf(stderr, round == 0 ? "password: " : "again: ");
            fflush(stderr);
            tcgetattr(STDIN_FILENO, &old);
            quiet = old;
            quiet.c_lflag &= (tcflag_t)~ECHO;
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        }
        bool got = fgets(dst, (int)dcap, stdin) != NULL;
        if (tty) {
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
            fputc('\n', stderr);
        }
        if (!got) {
            fprintf(stderr, "meshctl: no password given%s\n",
                    tty ? "" : " (pipe it on stdin: printf '%s\\n' \"$PW\" | meshctl ...)");
            return EXIT_USAGE;
        }
        size_t l = strlen(dst);
        if (l == dcap - 1 && dst[l - 1] != '\n') {
            fprintf(stderr, "meshctl: the password is too long\n");
            return EXIT_USAGE;
        }
        while (l && (dst[l - 1] == '\n' || dst[l - 1] == '\r'))
            dst[--l] = '\0';
        if (round == 0)
            n = l;
        else if (l != n || memcmp(buf, dst, n) != 0) {
            fprintf(stderr, "meshctl: the two passwords differ\n");
            return EXIT_USAGE;
        }
    }
    if (n < 8)
        return usage(self, "a password is at least 8 bytes");
    return EXIT_OK;
}

#define PASSWORD_BUF 2 * 1026 /* two copies of up to 1024 bytes plus newline and NUL */

/* user add NAME [--group G ...] [--admin] and user passwd NAME: both send a password. */
static int user_password_cmd(ctx_t *c, const command_t *self, int argc, char **argv, bool add)
{
    int err = 0, rc;
    const char **groups = xcalloc((size_t)argc + 1, sizeof(*groups));
    size_t ng = 0;
    const char *g;
    bool admin = add && take_flag(&argc, argv, "--admin");
    while (add && (g = take_opt(&argc, argv, "--group", &err)))
        groups[ng++] = g;
    if (err)
        rc = usage(self, "an option is missing its value");
    else if (argc != 1)
        rc = argc ? usage(self, "unexpected argument '%s'", argv[argc > 1 ? 1 : 0])
                  : usage(self, "%s takes one user NAME", add ? "user add" : "user passwd");
    else
        rc = EXIT_OK;
    char *pw = xcalloc(1, PASSWORD_BUF);
    if (!rc)
        rc = read_password(self, pw, PASSWORD_BUF);
    if (rc) {
        sodium_memzero(pw, PASSWORD_BUF);
        free(pw);
        free(groups);
        return rc;
    }
    request_t r;
    json_t *j;
    request_begin(&r, add ? "user.add" : "user.passwd", add ? 3 + admin : 2);
    mpw_str(&r.pk, "name");
    mpw_str(&r.pk, argv[0]);
    mpw_str(&r.pk, "password");
    mpw_str(&r.pk, pw);
    if (add) {
        mpw_str(&r.pk, "groups");
        msgpack_pack_array(&r.pk, ng);
        for (size_t i = 0; i < ng; i++)
            mpw_str(&r.pk, groups[i]);
        if (admin)
            mpw_kv_bool(&r.pk, "admin", true);
    }
    sodium_memzero(pw, PASSWORD_BUF);
    free(pw);
    free(groups);
    request_end(&r);
    ctl_response_t resp;
    uint8_t *raw = NULL;
    rc = call(c, &r.buf, &resp, &raw);
    /* The request held the password: wipe it before anything else. */
    sodium_memzero(r.buf.data, r.buf.size);
    msgpack_sbuffer_destroy(&r.buf);
    if (rc)
        return rc;
    if (resp.status != CTL_OK) {
        rc = report_failure(&resp);
        free(raw);
        return rc;
    }
    j = mpjson_from(resp.body, resp.body_len);
    free(raw);
    if (!j) {
        fprintf(stderr, "meshctl: popd's answer could not be rendered\n");
        return EXIT_UNREACHABLE;
    }
    if (c->json)
        print_json(j);
    else if (add)
        printf("user %s added (%zu group(s)%s)\n", argv[0],
               json_array_size(json_object_get(j, "groups")), admin ? ", admin" : "");
    else
        printf("password of %s changed; their sessions are revoked\n", argv[0]);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_user_add(ctx_t *c, const command_t *self, int argc, char **argv)
{
    return user_password_cmd(c, self, argc, argv, true);
}

static int cmd_user_passwd(ctx_t *c, const command_t *self, int argc, char **argv)
{
    return user_password_cmd(c, self, argc, argv, false);
}

static int cmd_user_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query(c, self, argc, "user.list", &j);
    if (rc || !j)
        return rc;
    size_t i, k;
    json_t *u, *g;
    printf("%-24s %-5s %-21s %6s %s\n", "NAME", "ADMIN", "CREATED", "EPOCH", "GROUPS");
    json_array_foreach(json_object_get(j, "users"), i, u)
    {
        char when[40], groups[1200];
        size_t off = 0;
        groups[0] = '\0';
        json_array_foreach(json_object_get(u, "groups"), k, g)
            cell_add(groups, sizeof(groups), &off, "%s%s", k ? "," : "", json_string_value(g));
        printf("%-24s %-5s %-21s %6lld %s\n", json_string_value(json_object_get(u, "name")),
               json_is_true(json_object_get(u, "admin")) ? "yes" : "no",
               human_time((uint64_t)json_integer_value(json_object_get(u, "created_ms")), when,
                          sizeof(when)),
               (long long)json_integer_value(json_object_get(u, "session_epoch")),
               off ? groups : "-");
    }
    json_decref(j);
    return EXIT_OK;
}

/* user set NAME --admin on|off */
static int cmd_user_set(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *admin = take_opt(&argc, argv, "--admin", &err);
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 1)
        return usage(self, "user set takes one user NAME");
    if (!admin)
        return usage(self, "nothing to set: give --admin on|off");
    bool on = !strcmp(admin, "on");
    if (!on && strcmp(admin, "off"))
        return usage(self, "--admin takes on or off, not '%s'", admin);
    request_t r;
    json_t *j;
    request_begin(&r, "user.set", 2);
    mpw_kv_str(&r.pk, "name", argv[0]);
    mpw_kv_bool(&r.pk, "admin", on);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json)
        print_json(j);
    else
        printf("user %s: admin %s\n", argv[0], on ? "on" : "off");
    json_decref(j);
    return EXIT_OK;
}

static int cmd_user_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "user.rm", "name", &j);
    if (rc || !j)
        return rc;
    printf("user %s removed; their sessions and API keys stop working\n", argv[0]);
    json_decref(j);
    return EXIT_OK;
}

/* A QR code for a terminal with a dark background: two modules per character cell (upper and
 * lower half blocks), light modules drawn, a quiet zone of 2 light modules around. */
static void print_qr(const char *text)
{
    QRcode *q = QRcode_encodeString(text, 0, QR_ECLEVEL_L, QR_MODE_8, 1);
    if (!q) {
        fprintf(stderr, "meshctl: cannot make a QR code of the URI: enter it by hand\n");
        return;
    }
    int w = q->width, z = 2;
    for (int y = -z; y < w + z; y += 2) {
        for (int x = -z; x < w + z; x++) {
            bool top = y < 0 || y >= w || x < 0 || x >= w || !(q->data[y * w + x] & 1);
            bool bot = y + 1 < 0 || y + 1 >= w || x < 0 || x >= w ||
                       !(q->data[(y + 1) * w + x] & 1);
            fputs(top && bot ? "\u2588" : top ? "\u2580" : bot ? "\u2584" : " ", stdout);
        }
        fputc('\n', stdout);
    }
    QRcode_free(q);
}

/* user totp enable|disable NAME */
static int cmd_user_totp(ctx_t *c, const command_t *self, int argc, char **argv)
{
    if (argc != 2 || (strcmp(argv[0], "enable") && strcmp(argv[0], "disable")))
        return usage(self, "user totp takes enable or disable, and one user NAME");
    bool enable = !strcmp(argv[0], "enable");
    json_t *j;
    int rc = simple_named(c, enable ? "user.totp.enable" : "user.totp.disable", "name", argv[1],
                          &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else if (!enable) {
        printf("user %s: TOTP disabled (a resource with --require-2fa now refuses them)\n",
               argv[1]);
    } else {
        const char *uri = json_string_value(json_object_get(j, "uri"));
        printf("user %s: TOTP enabled; their sessions were revoked.\n"
               "Scan this with an authenticator app, or enter the URI (shown once):\n\n",
               argv[1]);
        print_qr(uri ? uri : "");
        printf("\n%s\n\nRecovery codes (each works once; shown once):\n", uri ? uri : "?");
        size_t i;
        json_t *code;
        json_array_foreach(json_object_get(j, "recovery"), i, code)
        {
            printf("  %s\n", json_string_value(code));
        }
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_session_revoke(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "session.revoke", "user", &j);
    if (rc || !j)
        return rc;
    printf("sessions of %s revoked (session epoch %lld)\n", argv[0],
           (long long)json_integer_value(json_object_get(j, "session_epoch")));
    json_decref(j);
    return EXIT_OK;
}

/* --ttl DURATION into ttl_ms; 0 ok, else a usage exit code. */
static int opt_ttl(const command_t *self, const char *ttl, uint64_t *ttl_ms)
{
    if (ttl && (parse_duration_ms(ttl, ttl_ms) || *ttl_ms == 0))
        return usage(self, "--ttl '%s' is not a duration (e.g. 30m, 2h, 7d)", ttl);
    return EXIT_OK;
}

static int cmd_share_create(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *ttl = take_opt(&argc, argv, "--ttl", &err);
    uint64_t ttl_ms = 24 * 3600 * 1000ull;
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 1)
        return usage(self, "share create takes one RESOURCE");
    int rc = opt_ttl(self, ttl, &ttl_ms);
    if (rc)
        return rc;
    request_t r;
    json_t *j;
    request_begin(&r, "share.create", 2);
    mpw_str(&r.pk, "resource");
    mpw_str(&r.pk, argv[0]);
    mpw_str(&r.pk, "ttl_ms");
    msgpack_pack_uint64(&r.pk, ttl_ms);
    if ((rc = roundtrip(c, &r, &j)))
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        /* The link (or the bare token) alone on stdout. */
        char when[40];
        const char *url = json_string_value(json_object_get(j, "url"));
        printf("%s\n", url ? url : json_string_value(json_object_get(j, "token")));
        fprintf(stderr, "share link for resource %s, valid until %s%s\n", argv[0],
                human_time((uint64_t)json_integer_value(json_object_get(j, "expires_ms")), when,
                           sizeof(when)),
                url ? "" : " (the resource has no host: the token is printed alone)");
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_apikey_create(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *user = take_opt(&argc, argv, "--user", &err);
    const char *ttl = take_opt(&argc, argv, "--ttl", &err);
    bool admin = take_flag(&argc, argv, "--admin");
    uint64_t ttl_ms = 0;
    if (err)
        return usage(self, "an option is missing its value");
    if (argc)
        return usage(self, "unexpected argument '%s'", argv[0]);
    if (!user)
        return usage(self, "--user USER is required: the user the key acts as");
    int rc = opt_ttl(self, ttl, &ttl_ms);
    if (rc)
        return rc;
    request_t r;
    json_t *j;
    request_begin(&r, "apikey.create", 1 + (ttl != NULL) + admin);
    mpw_str(&r.pk, "user");
    mpw_str(&r.pk, user);
    if (admin)
        mpw_kv_bool(&r.pk, "admin", true);
    if (ttl) {
        mpw_str(&r.pk, "ttl_ms");
        msgpack_pack_uint64(&r.pk, ttl_ms);
    }
    if ((rc = roundtrip(c, &r, &j)))
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        char when[40];
        uint64_t exp = (uint64_t)json_integer_value(json_object_get(j, "expires_ms"));
        printf("%s\n", json_string_value(json_object_get(j, "token")));
        fprintf(stderr,
                "%sAPI key %s for user %s, %s%s\n"
                "this is the only time the key is shown: store it now "
                "(send it as Authorization: Bearer KEY)\n",
                admin ? "admin " : "", json_string_value(json_object_get(j, "id")), user,
                exp ? "expires " : "no expiry",
                exp ? human_time(exp, when, sizeof(when)) : "");
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_apikey_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query(c, self, argc, "apikey.list", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *k;
    printf("%-16s %-24s %-5s %-8s %-21s %s\n", "ID", "USER", "ADMIN", "STATE", "CREATED",
           "EXPIRES");
    json_array_foreach(json_object_get(j, "apikeys"), i, k)
    {
        char c1[40], c2[40] = "never";
        uint64_t exp = (uint64_t)json_integer_value(json_object_get(k, "expires_ms"));
        if (exp)
            human_time(exp, c2, sizeof(c2));
        printf("%-16s %-24s %-5s %-8s %-21s %s\n", json_string_value(json_object_get(k, "id")),
               json_string_value(json_object_get(k, "user")),
               json_is_true(json_object_get(k, "admin")) ? "yes" : "no",
               json_string_value(json_object_get(k, "state")),
               human_time((uint64_t)json_integer_value(json_object_get(k, "created_ms")), c1,
                          sizeof(c1)),
               c2);
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_apikey_revoke(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "apikey.revoke", "id", &j);
    if (rc || !j)
        return rc;
    printf("API key %s (user %s) revoked\n", argv[0],
           json_string_value(json_object_get(j, "user")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_rule_add(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *cidr = take_opt(&argc, argv, "--cidr", &err);
    const char *path = take_opt(&argc, argv, "--path", &err);
    const char *prio = take_opt(&argc, argv, "--priority", &err);
    long long priority = 0;
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 2)
        return usage(self, argc > 2 ? "unexpected argument '%s'" : "rule add takes RESOURCE and %s",
                     argc > 2 ? argv[2] : "allow or deny");
    if (strcmp(argv[1], "allow") && strcmp(argv[1], "deny"))
        return usage(self, "the action is allow or deny, not '%s'", argv[1]);
    if (!cidr == !path)
        return usage(self, "give exactly one of --cidr CIDR and --path GLOB");
    if (prio) {
        char *end;
        errno = 0;
        priority = strtoll(prio, &end, 10);
        if (errno || !*prio || *end)
            return usage(self, "--priority '%s' is not a whole number", prio);
    }
    request_t r;
    json_t *j;
    request_begin(&r, "rule.add", 4);
    mpw_str(&r.pk, "resource");
    mpw_str(&r.pk, argv[0]);
    mpw_str(&r.pk, "action");
    mpw_str(&r.pk, argv[1]);
    mpw_str(&r.pk, cidr ? "cidr" : "path");
    mpw_str(&r.pk, cidr ? cidr : path);
    mpw_str(&r.pk, "priority");
    msgpack_pack_int64(&r.pk, priority);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json)
        print_json(j);
    else
        printf("rule %s: %s %s %s on %s (priority %lld)\n",
               json_string_value(json_object_get(j, "id")), argv[1], cidr ? "cidr" : "path",
               cidr ? cidr : path, argv[0], priority);
    json_decref(j);
    return EXIT_OK;
}

static int cmd_rule_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = query_one(c, self, argc, argv, "rule.list", "resource", "RESOURCE", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *ru;
    printf("%-16s %-20s %8s %-6s %s\n", "ID", "RESOURCE", "PRIORITY", "ACTION", "MATCH");
    json_array_foreach(json_object_get(j, "rules"), i, ru)
    {
        const char *cidr = json_string_value(json_object_get(ru, "cidr"));
        printf("%-16s %-20s %8lld %-6s %s %s\n", json_string_value(json_object_get(ru, "id")),
               json_string_value(json_object_get(ru, "resource")),
               (long long)json_integer_value(json_object_get(ru, "priority")),
               json_string_value(json_object_get(ru, "action")), cidr ? "cidr" : "path",
               cidr ? cidr : json_string_value(json_object_get(ru, "path")));
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_rule_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "rule.rm", "id", &j);
    if (rc || !j)
        return rc;
    printf("rule %s of %s removed\n", argv[0], json_string_value(json_object_get(j, "resource")));
    json_decref(j);
    return EXIT_OK;
}

/* ---- DNS ------------------------------------------------------------------------------- */

static int cmd_dns_explain(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *client = take_opt(&argc, argv, "--client", &err);
    const char *type = take_opt(&argc, argv, "--type", &err);
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 1)
        return usage(self, argc ? "one NAME, and only the options shown" : "missing NAME");
    request_t r;
    json_t *j;
    request_begin(&r, "dns.explain", 1 + (client != NULL) + (type != NULL));
    mpw_kv_str(&r.pk, "name", argv[0]);
    if (client)
        mpw_kv_str(&r.pk, "client", client);
    if (type)
        mpw_kv_str(&r.pk, "type", type);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
        json_decref(j);
        return EXIT_OK;
    }
    const char *kind = json_string_value(json_object_get(j, "kind"));
    const char *zone = json_string_value(json_object_get(j, "zone"));
    printf("%s %s: %s", json_string_value(json_object_get(j, "name")),
           json_string_value(json_object_get(j, "type")), kind);
    if (zone && zone[0])
        printf(" in zone %s (ttl %lld s)", zone,
               (long long)json_integer_value(json_object_get(j, "ttl")));
    const char *site = json_string_value(json_object_get(j, "site"));
    if (site && site[0])
        printf(", served by site %s", site);
    printf("\n");
    const char *cl = json_string_value(json_object_get(j, "client"));
    json_t *m = json_object_get(j, "mapping");
    if (!cl || !cl[0])
        printf("client: not given: answered as for an unmapped client (this PoP first)\n");
    else if (json_is_object(m))
        printf("client: %s is in region %s (geo rule %s%s), ECS scope /%lld\n", cl,
               json_string_value(json_object_get(m, "region")),
               json_string_value(json_object_get(m, "geo")),
               json_is_true(json_object_get(m, "located")) ? ", located" : ", no location",
               (long long)json_integer_value(json_object_get(j, "scope")));
    else
        printf("client: %s matches no geo rule: this PoP first, then by distance from it\n", cl);
    size_t i;
    json_t *e;
    json_t *ans = json_object_get(j, "answer");
    const char *none = !strcmp(kind, "refused")        ? " none (REFUSED: outside every zone)"
                       : !strcmp(kind, "no such name") ? " none (NXDOMAIN)"
                                                       : " none (NODATA)";
    /* A resource restricted to labelled PoPs: say which, and when no PoP may carry it, why
     * (the answer is empty because nothing is allowed to, not because of a fault). */
    json_t *tr = json_object_get(j, "transit");
    bool no_path = json_is_object(tr) && json_is_true(json_object_get(tr, "no_allowed_path"));
    if (no_path)
        none = " none (NODATA: no allowed path)";
    printf("answer:%s\n", json_array_size(ans) ? "" : none);
    json_array_foreach(ans, i, e)
    {
        json_t *d = json_object_get(e, "distance_km");
        printf("  %zu. %-16s %-20s %-12s", i + 1, json_string_value(json_object_get(e, "address")),
               json_string_value(json_object_get(e, "pop")),
               json_string_value(json_object_get(e, "region")));
        if (json_is_number(d))
            printf(" %.0f km", json_number_value(d));
        printf("\n");
    }
    if (json_is_object(tr)) {
        char tl[256] = "-", il[256] = "-";
        size_t k, off = 0;
        json_t *l;
        json_array_foreach(json_object_get(tr, "transit_labels"), k, l)
            cell_add(tl, sizeof(tl), &off, "%s%s", k ? "," : "", json_string_value(l));
        off = 0;
        json_array_foreach(json_object_get(tr, "ingress_labels"), k, l)
            cell_add(il, sizeof(il), &off, "%s%s", k ? "," : "", json_string_value(l));
        printf("transit: resource %s may cross %s%s, users enter at %s%s; %lld PoP(s) may "
               "carry it, %lld alive\n",
               json_string_value(json_object_get(tr, "resource")),
               strcmp(tl, "-") ? "PoPs labelled " : "any PoP", strcmp(tl, "-") ? tl : "",
               strcmp(il, "-") ? "PoPs labelled " : "any of them", strcmp(il, "-") ? il : "",
               (long long)json_integer_value(json_object_get(tr, "carriers")),
               (long long)json_integer_value(json_object_get(tr, "carriers_alive")));
        if (no_path)
            printf("no allowed path: %s; it is not carried any other way\n",
                   json_string_value(json_object_get(tr, "why")));
    }
    json_t *pops = json_object_get(j, "pops");
    if (json_array_size(pops)) {
        printf("\n%-5s %-20s %-12s %-14s %10s  %s\n", "RANK", "POP", "REGION", "STATE", "DISTANCE",
               "ANSWERED");
        json_array_foreach(pops, i, e)
        {
            json_t *d = json_object_get(e, "distance_km");
            char dist[32] = "-";
            if (json_is_number(d))
                snprintf(dist, sizeof(dist), "%.0f km", json_number_value(d));
            const char *reg = json_string_value(json_object_get(e, "region"));
            printf("%-5lld %-20s %-12s %-14s %10s  %s\n",
                   (long long)json_integer_value(json_object_get(e, "rank")),
                   json_string_value(json_object_get(e, "pop")), reg && reg[0] ? reg : "-",
                   json_string_value(json_object_get(e, "state")), dist,
                   json_is_true(json_object_get(e, "answered")) ? "yes" : "no");
        }
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_dns_status(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "dns.status", &j);
    if (rc || !j)
        return rc;
    const char *l = json_string_value(json_object_get(j, "listen"));
    printf("listening: %s\n", l && l[0] ? l : "no (dns-listen is not set)");
    printf("view: %lld zones, %lld hosts, %lld of %lld PoPs answerable (generation %lld)\n",
           (long long)json_integer_value(json_object_get(j, "zones")),
           (long long)json_integer_value(json_object_get(j, "hosts")),
           (long long)json_integer_value(json_object_get(j, "pops_answerable")),
           (long long)json_integer_value(json_object_get(j, "pops")),
           (long long)json_integer_value(json_object_get(j, "view_generation")));
    json_t *q = json_object_get(j, "queries");
    printf("queries: %lld UDP, %lld TCP\n",
           (long long)json_integer_value(json_object_get(q, "udp")),
           (long long)json_integer_value(json_object_get(q, "tcp")));
    const char *k;
    json_t *v;
    json_object_foreach(json_object_get(j, "counters"), k, v)
        printf("  %-18s %lld\n", k, (long long)json_integer_value(v));
    json_decref(j);
    return EXIT_OK;
}

/* http-stats: the HTTP ingress's per-resource counters (served by the admin listener's module). */
static int cmd_http_stats(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "http.stats", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *r;
    printf("%-24s %10s %8s %8s %8s %8s %12s %12s\n", "RESOURCE", "REQUESTS", "2XX", "3XX", "4XX",
           "5XX", "BYTES IN", "BYTES OUT");
    json_array_foreach(json_object_get(j, "resources"), i, r)
    {
        printf("%-24s %10lld %8lld %8lld %8lld %8lld %12lld %12lld\n",
               json_string_value(json_object_get(r, "name")),
               (long long)json_integer_value(json_object_get(r, "requests")),
               (long long)json_integer_value(json_object_get(r, "responses_2xx")),
               (long long)json_integer_value(json_object_get(r, "responses_3xx")),
               (long long)json_integer_value(json_object_get(r, "responses_4xx")),
               (long long)json_integer_value(json_object_get(r, "responses_5xx")),
               (long long)json_integer_value(json_object_get(r, "bytes_in")),
               (long long)json_integer_value(json_object_get(r, "bytes_out")));
    }
    json_decref(j);
    return EXIT_OK;
}

/* zone, geo, node drain: DNS steering's configuration, in a file of their own. */
#include "cmd_dns.c"
/* cert import/list/rm, tls status: in a file of their own. */
#include "cmd_cert.c"
#include "cmd_acme.c"
/* alert add/list/rm: webhook alerts. */
#include "cmd_alert.c"
/* idp add/list/rm: OpenID Connect providers, in a file of their own. */
#include "cmd_idp.c"
/* key status/list/certify/export-root/rotate-root: the key hierarchy. */
#include "cmd_key.c"

static int cmd_help(ctx_t *c, const command_t *self, int argc, char **argv);

/* Order is the order of the help output. */
static const command_t commands[] = {
    {NULL, "status", cmd_status, "", "Shows the local node: name, id, region, uptime, store."},
    {"config", "set", cmd_config_set, "KEY VALUE",
     "Writes VALUE (a string; '-' reads it from stdin) at KEY on this node. The write is\n"
     "durable on this node when the command returns."},
    {"config", "get", cmd_config_get, "KEY",
     "Prints the value at KEY; with --json: {key, value, version, origin, signed}. Exit 1 if absent."},
    {"config", "rm", cmd_config_del, "KEY",
     "Deletes KEY (a tombstone that replicates like a write). Exit 1 if absent."},
    {"config", "list", cmd_config_list, "[PREFIX]",
     "Lists keys and values, optionally only those starting with PREFIX."},
    {NULL, "members", cmd_members, "",
     "Lists the mesh's members as this node sees them: name, id, region, address, state\n"
     "(alive, suspect, dead, left), incarnation, round-trip time and, from each member's\n"
     "gossiped health vector, its CPU use and memory, its ingress (up, or DOWN when a\n"
     "listener is not bound or not accepting; listeners up/configured), open streams, site\n"
     "tunnels and load (the larger of CPU and streams against capacity; docs/routing.md);\n"
     "for DNS steering, whether it is drained (meshctl node drain), the public addresses DNS\n"
     "answers give for it and its location (popd --public-address, --location)."},
    {NULL, "tunnels", cmd_tunnels, "",
     "Lists this PoP's tunnels (sites and other PoPs): peer, role, address, age, heartbeat\n"
     "round trip, open streams and payload bytes sent; --json adds the data plane counters."},
    {NULL, "http-stats", cmd_http_stats, "",
     "Shows this PoP's HTTP ingress counters per resource: requests, responses by class,\n"
     "body bytes (served when popd has an admin listener: --admin-listen)."},
    {NULL, "routes", cmd_routes, "",
     "Shows this PoP's routes: per site the egress PoP, the path, its cost and a backup\n"
     "whose egress differs; per PoP the next hop and path that relayed traffic takes."},
    {"token", "create", cmd_token_create,
     "[--role pop|site] [--ttl DURATION] [--uses N] [--capabilities CAPS]",
     "Mints a bootstrap token (default: role pop, 1 use, valid 1h; --uses 0 = unlimited)\n"
     "and prints it alone on stdout. Only a hash of its secret is kept, replicated.\n"
     "--capabilities (pop tokens): what the PoP's certificate will allow, of verify,\n"
     "issue-sessions, invite, admin (default all). Needs a PoP that holds invite."},
    {"token", "list", cmd_token_list, "", "Lists tokens: id, role, state, uses, expiry."},
    {"key", "status", cmd_key_status, "", "This PoP's root, certificate and capabilities."},
    {"key", "list", cmd_key_list, "", "Lists the PoPs' certificates and whether each is valid."},
    {"key", "certify", cmd_key_certify,
     "--node NAME [--capabilities CAPS] [--root FILE] [--valid DURATION]",
     "Issues NAME's certificate (CAPS of verify, issue-sessions, invite, admin; default all):\n"
     "signed by the PoP holding the root, or here with the root in FILE (off-line root)."},
    {"key", "export-root", cmd_key_export_root, "FILE",
     "Writes the root key to FILE (0600, new) and removes it from the PoP."},
    {"key", "rotate-root", cmd_key_rotate_root, "[--rollover DURATION]",
     "Makes a new root endorsed by the current one and certifies every PoP again under it;\n"
     "the old root stays accepted for DURATION (default 1d), then is refused."},
    {"token", "revoke", cmd_token_revoke, "ID", "Revokes a token everywhere."},
    {"node", "rm", cmd_node_remove, "NAME",
     "Evicts a node: every PoP refuses its key from then on, and it stops."},
    {"node", "drain", cmd_node_drain, "NAME [--undo]",
     "Drains a PoP: DNS answers stop naming it (at every PoP), while it keeps serving the\n"
     "clients that still come; take it down once resolvers' caches expire (the zone's TTL).\n"
     "--undo puts it back. 'meshctl members' shows it. Sites cannot be drained."},
    {"site", "add", cmd_site_add, "NAME [--replicas N] [--ttl DURATION]",
     "Adds a site and mints its enrollment token (valid 1h unless --ttl), printed alone on\n"
     "stdout, with N uses (default 1): one per connector replica, each on its own machine\n"
     "with its own key. The token enrolls this site name only: on the site's machine run\n"
     "popsite run --data DIR --token TOKEN. Replicas are named NAME, NAME-2, NAME-3..."},
    {"site", "token", cmd_site_token, "NAME [--ttl DURATION]",
     "Mints a one-use token for one more connector replica of an existing site."},
    {"site", "rm", cmd_site_rm, "NAME [--replica R]",
     "Removes a site everywhere: the keys of all its connectors are refused by every PoP from\n"
     "then on and its unused token is revoked. The name can be added again. With --replica,\n"
     "removes only that connector replica (its key is refused; the others keep serving)."},
    {"site", "list", cmd_site_list, "",
     "Lists the sites of the registry: name, the node id enrolled for it (or none yet),\n"
     "when and where it was added. 'meshctl sites' shows their live state."},
    {NULL, "sites", cmd_sites, "",
     "Shows each site's live state as this PoP sees it, one line per connector replica:\n"
     "online or offline, the machine it runs on, its primary and standby PoPs with their\n"
     "regions and round-trip\n"
     "times, and the health of its targets as that replica checks them."},
    {"resource", "add", cmd_resource_add,
     "NAME [--site SITE] --target [SITE/]HOST:PORT [--priority P] [--weight W]\n"
     "        [--target ...] [--tcp-port PORT]\n"
     "        [--host HOSTNAME [--path-prefix /P] [--auth none|login] [--allow-user U ...]\n"
     "        [--allow-group G ...] [--no-https-redirect] [--hsts SECONDS] [--require-2fa]]\n"
     "        [--health tcp | --health http:/PATH] [--hc-interval MS] [--hc-timeout MS]\n"
     "        [--hc-rise N] [--hc-fall N] [--hc-status LIST] [--hc-host HOST]\n"
     "        [--sticky] [--tls] [--replace] [--transit-labels L,...] [--ingress-labels L,...]\n"
     "        [--access-log on|off|sample:N] [--proxy-protocol v1|v2]\n"
     "        [--ca FILE | --insecure-skip-verify] (with --target https://HOST:PORT)\n"
     "        or, for UDP: --udp-port PORT [--udp-idle SECONDS] [--udp-max-flows N]",
     "Publishes a service of SITE on every PoP: connections to PORT on any PoP, and HTTP\n"
     "requests for HOSTNAME under the path prefix (default /), go through the site's tunnel to\n"
     "one of the targets (1 to 16). A target written SITE/HOST:PORT is in that site (then\n"
     "--site may be left out); targets may be in several sites. --priority P (1-100, default\n"
     "1) and --weight W (1-1000, default 1) after a --target are that target's: connections go\n"
     "to the best priority with a target up and a connector online, shared by weight, and\n"
     "move to the next priority when none is (failover), back when one returns.\n"
     "A resource needs --tcp-port, --host or both. --auth login\n"
     "asks for a user login, limited to the --allow-user users and --allow-group groups when\n"
     "given; --require-2fa also wants a second factor (meshctl user totp enable) and refuses\n"
     "API keys. --health says how the site checks a target (default tcp: a connect; http:/PATH:\n"
     "GET PATH answers 2xx or 3xx). --hc-interval and --hc-timeout (ms), --hc-rise and\n"
     "--hc-fall (consecutive results to turn healthy/unhealthy) override the site's defaults\n"
     "(1000, 800, 2, 1) for this resource; with http:, --hc-status lists the statuses that\n"
     "count as up (200,204,3xx,500-503) and --hc-host sets the Host sent. --sticky keeps a\n"
     "client on one target. --replace changes an existing resource of that name (all of it:\n"
     "settings left out go back to their defaults). Plain HTTP requests for HOSTNAME are\n"
     "redirected (308) to HTTPS at PoPs with an HTTPS listener once a certificate covers it,\n"
     "unless --no-https-redirect; --hsts SECONDS adds Strict-Transport-Security to HTTPS\n"
     "answers.\n"
     "--tls terminates TLS on PORT at every PoP (the certificate chosen by SNI, as for HTTPS)\n"
     "and carries the plain stream to the target.\n"
     "--udp-port PORT publishes a UDP service instead (no --tcp-port, --host, --tls or\n"
     "--health): every PoP carries each client address and port's datagrams as one flow to a\n"
     "target; a flow ends after --udp-idle seconds without a datagram (default 30), and one PoP\n"
     "carries at most --udp-max-flows flows of the resource (default 4096).\n"
     "--transit-labels L,... lets only PoPs with one of those labels (popd --label; a region\n"
     "counts) carry the traffic: take users' connections, relay, or reach the site; with no\n"
     "such path the resource is unreachable (meshctl routes says so) rather than carried by\n"
     "another PoP. --ingress-labels L,... narrows which of them take users' connections.\n"
     "--access-log: which of its requests and connections the PoPs' access logs record\n"
     "(popd.conf access-log): on (every one, the default), off, or sample:N (one in N).\n"
     "--proxy-protocol v1|v2 (--tcp-port without --host): the site sends each connection to\n"
     "a target a PROXY protocol header first, with the client's address as the PoP saw it.\n"
     "--target https://HOST:PORT (every target or none): the site speaks TLS to the targets,\n"
     "SNI HOST, the certificate checked against the system store and --ca FILE (PEM);\n"
     "--insecure-skip-verify checks none (shown in resource list)."},
    {"resource", "set", cmd_resource_set,
     "NAME [--access-log on|off|sample:N] [--require-2fa on|off]\n"
     "        [--proxy-protocol v1|v2|off] [--set-header 'NAME: VALUE' ...]\n"
     "        [--remove-header NAME ...] [--host-rewrite HOST[:PORT]] [--strip-prefix /P]\n"
     "        [--set-response-header 'NAME: VALUE' ...] [--remove-response-header NAME ...]\n"
     "        [--clear-rules]",
     "Changes a setting of a resource in place: --access-log says which of its requests and\n"
     "connections PoPs with an access log record: every one (on), none (off), or a random\n"
     "one in N (sample:N, N from 1 to 1000000). --require-2fa (auth login only): users must\n"
     "have signed in with a second factor (meshctl user totp enable); API keys are refused.\n"
     "--proxy-protocol (TCP resources): the site sends each target connection a PROXY protocol\n"
     "header of that version first, with the client's address and port.\n"
     "Request rules (HTTP resources), applied at the PoP: --set-header sets a request header\n"
     "(replacing the client's), --remove-header drops one, --host-rewrite sets the Host the\n"
     "application gets, --strip-prefix takes a path prefix off (/api/x -> /x); the response\n"
     "ones likewise. Each kind given replaces that list; --clear-rules drops them all. Host,\n"
     "hop-by-hop and framing headers, and what the proxy itself says, are refused."},
    {"resource", "list", cmd_resource_list, "",
     "Lists resources: name, site, tcp port (PORT/tls under TLS), HTTP host, path prefix and\n"
     "auth, health check (with its settings when not the defaults), stickiness, targets\n"
     "(--json: every field, with allow_users, allow_groups and the hc_ settings when set)."},
    {"resource", "rm", cmd_resource_rm, "NAME", "Removes a resource everywhere."},
    {NULL, "targets", cmd_targets, "[RESOURCE]",
     "Shows each resource's targets with their health merged across the site's connector\n"
     "replicas, as this PoP sees it: up (a live replica says so), down (live replicas say so\n"
     "and none says up), unknown (not checked yet), unreachable (no connector of the site is\n"
     "online); with site, priority and weight."},
    {"user", "add", cmd_user_add, "NAME [--group G ...] [--admin]",
     "Adds a user of the HTTP ingress. The password is read from stdin when it is not a\n"
     "terminal (one line), else prompted for twice without echo; it leaves popd only as an\n"
     "argon2id hash. Up to 16 groups. --admin: may sign in to the admin listener's status page."},
    {"user", "list", cmd_user_list, "",
     "Lists users: name, admin, when added, session epoch, groups (never a password hash)."},
    {"user", "set", cmd_user_set, "NAME --admin on|off",
     "Grants or takes away admin (the admin listener's status page); takes effect at once at\n"
     "every PoP the record reaches, sessions kept."},
    {"user", "rm", cmd_user_rm, "NAME",
     "Removes a user everywhere; their sessions and API keys stop working."},
    {"user", "passwd", cmd_user_passwd, "NAME",
     "Sets a user's password (read as for user add) and revokes their sessions."},
    {"user", "totp", cmd_user_totp, "enable|disable NAME",
     "enable: a second factor for the user (RFC 6238 TOTP): prints the otpauth:// URI and its\n"
     "QR code for an authenticator app, and 10 one-use recovery codes, all shown once; revokes\n"
     "the user's sessions. From then on the login page wants a code after the password.\n"
     "disable: removes it (the user can re-enrol a new device with enable)."},
    {"session", "revoke", cmd_session_revoke, "USER",
     "Revokes every session of USER at every PoP (bumps the user's session epoch)."},
    {"share", "create", cmd_share_create, "RESOURCE [--ttl DURATION]",
     "Makes a link that opens RESOURCE without logging in until it expires (24h unless\n"
     "--ttl, at most 30d); printed alone on stdout as a URL when the resource has a host,\n"
     "else as the bare token. It cannot be revoked alone: keep it short-lived."},
    {"apikey", "create", cmd_apikey_create, "--user USER [--ttl DURATION] [--admin]",
     "Makes an API key acting as USER (no expiry unless --ttl), printed once on stdout as\n"
     "pmk1.ID.SECRET; popd keeps only a hash of the secret. --admin: an admin key, which\n"
     "reads the admin listener's /api/ (USER must be an admin)."},
    {"apikey", "list", cmd_apikey_list, "",
     "Lists API keys: id, user, admin, state, creation, expiry."},
    {"apikey", "revoke", cmd_apikey_revoke, "ID", "Revokes an API key everywhere."},
    {"rule", "add", cmd_rule_add, "RESOURCE allow|deny (--cidr CIDR | --path GLOB) [--priority N]",
     "Adds an access rule to RESOURCE: allow skips authentication, deny answers 403. Rules\n"
     "are tried by priority (lower first, default 0), then id; the first match decides.\n"
     "--path globs match the request path like fnmatch, '*' also crossing '/'."},
    {"rule", "list", cmd_rule_list, "[RESOURCE]",
     "Lists access rules in the order they are tried."},
    {"rule", "rm", cmd_rule_rm, "ID", "Removes an access rule everywhere."},
    {"zone", "add", cmd_zone_add, "ZONE [--ttl SECONDS] [--answers N]",
     "Makes every PoP with a DNS listener (popd --dns-listen) authoritative for ZONE (a DNS\n"
     "name; case and a trailing dot do not matter). Answers carry N PoP addresses (1-8,\n"
     "default 2) with a TTL of SECONDS (1-86400, default 20). Delegate ZONE to the PoPs at\n"
     "the parent zone. Refused if ZONE exists: rm it first to change it."},
    {"zone", "list", cmd_zone_list, "", "Lists zones: name, TTL, addresses per answer, added."},
    {"zone", "rm", cmd_zone_rm, "ZONE", "Removes a zone everywhere: PoPs stop answering for it."},
    {"geo", "add", cmd_geo_add, "CIDR REGION [--location LAT,LON]",
     "Places clients in CIDR (e.g. 10.1.0.0/16; no host bits) in REGION (the --region of\n"
     "PoPs), and at LAT,LON (decimal degrees) when given: DNS answers prefer that region's\n"
     "PoPs, else the nearest. The longest matching CIDR wins. Refused if CIDR has a rule."},
    {"geo", "list", cmd_geo_list, "", "Lists geo rules: CIDR, region, location, added."},
    {"geo", "rm", cmd_geo_rm, "CIDR", "Removes a geo rule everywhere."},
    {"dns", "explain", cmd_dns_explain, "NAME [--client IP|CIDR] [--type A|AAAA]",
     "Prints the answer a client would get for NAME from this PoP, and why: the zone, the\n"
     "client's region (geo rule, location), the PoPs in answer order with their distance, and\n"
     "every other PoP with the reason it was left out (dead, draining, no-health,\n"
     "ingress-down, no-address, no-route). Without --client: as for an unmapped client."},
    {"dns", "status", cmd_dns_status, "",
     "Shows this PoP's name server: its listener, the view it answers from, and counters\n"
     "(queries over UDP and TCP, answers by kind, truncations, rate-limited responses)."},
    {"cert", "import", cmd_cert_import, "--cert FILE --key FILE",
     "Imports a certificate (FILE: PEM, the leaf first, then its intermediates) and its\n"
     "private key (PEM, unencrypted) for every PoP to serve. The names come from the\n"
     "certificate (subjectAltName DNS entries, else its CN). Refused, and nothing changes,\n"
     "when the key does not match, the certificate has expired or a file is not PEM. A\n"
     "certificate for the same first name replaces the old one. The key is sealed by popd\n"
     "with the mesh key before it is stored: it is never stored or shown in clear."},
    {"cert", "list", cmd_cert_list, "",
     "Lists certificates: id, names, expiry, source (import or acme), the PoP that obtained\n"
     "it, state (valid, renewing, failed, expired, unreadable), issuer, and the last error."},
    {"cert", "rm", cmd_cert_rm, "ID|NAME",
     "Removes a certificate everywhere (by id, or by a name it holds): PoPs stop serving it."},
    {"tls", "status", cmd_tls_status, "",
     "Shows this PoP's TLS state: certificates held, and the mesh-wide session-ticket keys\n"
     "(the period, the current key's name, the keys held; never a key itself)."},
    {"acme", "set", cmd_acme_set,
     "--directory URL --email ADDR [--ca-bundle FILE] [--eab KID:HMAC]",
     "Obtains certificates from an ACME CA (RFC 8555) from now on: every HTTP resource host in\n"
     "the mesh's zones (every host when there are no zones; a wildcard host needs a zone, it\n"
     "is proven by DNS-01) gets one, renewed at two thirds of its lifetime. --ca-bundle: the\n"
     "CA's TLS roots (PEM) when not the system's; --eab: the CA's external account binding.\n"
     "The account key is made by popd and sealed; setting the same directory again keeps it."},
    {"idp", "add", cmd_idp_add,
     "NAME --issuer URL --client-id ID [--scopes 'openid email profile'] [--groups-claim CLAIM]\n"
     "    [--allowed-domains D1,D2] [--auto-create] [--ca FILE] [--no-secret]\n"
     "    [--insecure-http-loopback]",
     "Lets users sign in with an OpenID Connect provider: the login page offers 'Sign in with\n"
     "NAME'. The client secret is read from stdin and sealed by popd. Users are NAME:SUBJECT,\n"
     "with the groups of --groups-claim. Who may enter: with --allowed-domains, users whose\n"
     "verified email is in one of them; without, users known already, and anyone the provider\n"
     "signs in with --auto-create. --ca: the provider's TLS roots (PEM) when not the system's;\n"
     "--insecure-http-loopback: a plain http:// issuer on 127.0.0.1 or localhost (tests only).\n"
     "Register https://HOST/.popmesh/oidc/callback at the provider for every HOST."},
    {"idp", "list", cmd_idp_list, "",
     "Lists the identity providers (never a client secret) and this PoP's sign-in counters."},
    {"idp", "rm", cmd_idp_rm, "NAME",
     "Removes an identity provider: its sign-in link goes; sessions already made last."},
    {"acme", "show", cmd_acme_show, "",
     "Shows the ACME settings (never the account key), the orders under way (leases: which\n"
     "PoP, until when, failures in a row, next try, last error) and this PoP's counters."},
    {"alert", "add", cmd_alert_add, "NAME --webhook URL [--events pop,site,target,cert]",
     "POSTs a JSON object to URL (http:// or https://) for every event of the kinds listed\n"
     "(default all): a PoP down or back up, a site that lost or regained every tunnel, a\n"
     "target's health (up, down), a certificate within 14 days of expiry. Exactly one PoP\n"
     "sends each event (docs/operations.md, \"Alerts\"). Refused if NAME exists: rm it first."},
    {"alert", "list", cmd_alert_list, "", "Lists alerts: name, event kinds, added, webhook URL."},
    {"alert", "rm", cmd_alert_rm, "NAME", "Removes an alert everywhere."},
    {NULL, "help", cmd_help, "[COMMAND]", "Shows help."},
    {NULL, NULL, NULL, NULL, NULL},
};

static void print_help(FILE *f)
{
    fprintf(f, "usage: meshctl [-d DIR | -s SOCKET] [--json] COMMAND [ARGS]\n\n"
               "Operates the popd whose data directory is DIR (default $POPMESH_DATA, "
               "else " DEFAULT_DATA_DIR ").\n\ncommands:\n");
    for (const command_t *cmd = commands; cmd->name; cmd++) {
        fprintf(f, "  ");
        print_usage_line(f, cmd);
    }
    fprintf(f, "\nexit codes: 0 ok, 1 not found or refused, 2 usage error, 3 popd unreachable\n"
               "'meshctl COMMAND --help' shows more.\n");
}

static const command_t *find_command(int argc, char **argv, int *used);

static int cmd_help(ctx_t *c, const command_t *self, int argc, char **argv)
{
    if (argc == 0) {
        print_help(stdout);
        return EXIT_OK;
    }
    int used = 0;
    const command_t *cmd = find_command(argc, argv, &used);
    if (!cmd || used != argc)
        return usage(self, "no command '%s%s%s'", argv[0], argc > 1 ? " " : "",
                     argc > 1 ? argv[1] : "");
    printf("usage: ");
    print_usage_line(stdout, cmd);
    printf("\n%s\n", cmd->help);
    return EXIT_OK;
}

/* Deleting is "rm" everywhere; the spellings of earlier releases still work, unlisted, so
 * scripts written for them keep running. */
static const struct {
    const char *group, *old, *now;
} aliases[] = {
    {"config", "del", "rm"},
    {"node", "remove", "rm"},
};

static const command_t *find_command(int argc, char **argv, int *used)
{
    const char *verb = argc >= 2 ? argv[1] : NULL;
    for (size_t i = 0; verb && i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (!strcmp(argv[0], aliases[i].group) && !strcmp(verb, aliases[i].old))
            verb = aliases[i].now;
    for (const command_t *cmd = commands; cmd->name; cmd++) {
        if (cmd->group) {
            if (argc >= 2 && !strcmp(argv[0], cmd->group) && !strcmp(verb, cmd->name)) {
                *used = 2;
                return cmd;
            }
        } else if (argc >= 1 && !strcmp(argv[0], cmd->name)) {
            *used = 1;
            return cmd;
        }
    }
    return NULL;
}

static int group_exists(const char *name)
{
    for (const command_t *cmd = commands; cmd->name; cmd++)
        if (cmd->group && !strcmp(cmd->group, name))
            return 1;
    return 0;
}

int main(int argc, char **argv)
{
    ctx_t c = {.fd = -1};
    const char *dir = getenv("POPMESH_DATA");
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if ((!strcmp(argv[i], "-d") || !strcmp(argv[i], "--data")) && i + 1 < argc) {
            dir = argv[++i];
        } else if ((!strcmp(argv[i], "-s") || !strcmp(argv[i], "--socket")) && i + 1 < argc) {
            c.socket_path = argv[++i];
        } else if (!strcmp(argv[i], "--json")) {
            c.json = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            print_help(stdout);
            return EXIT_OK;
        } else if (!strcmp(argv[i], "--version")) {
            printf("meshctl %s\n", POPMESH_VERSION);
            return EXIT_OK;
        } else {
            fprintf(stderr, "meshctl: unknown or incomplete option '%s'\n\n", argv[i]);
            print_help(stderr);
            return EXIT_USAGE;
        }
    }
    if (i == argc) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    int used = 0;
    const command_t *cmd = find_command(argc - i, argv + i, &used);
    if (!cmd) {
        if (group_exists(argv[i]))
            fprintf(stderr, "meshctl: '%s' needs a subcommand%s%s\n\n", argv[i],
                    i + 1 < argc ? "; unknown: " : "", i + 1 < argc ? argv[i + 1] : "");
        else
            fprintf(stderr, "meshctl: unknown command '%s'\n\n", argv[i]);
        print_help(stderr);
        return EXIT_USAGE;
    }
    int sub_argc = argc - i - used;
    char **sub_argv = argv + i + used;
    int rc = parse_flags(&c, cmd, &sub_argc, sub_argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    if (!c.socket_path) {
        snprintf(c.sockbuf, sizeof(c.sockbuf), "%s/%s", dir ? dir : DEFAULT_DATA_DIR,
                 CONTROL_SOCKET_FILE);
        c.socket_path = c.sockbuf;
    }
    rc = cmd->fn(&c, cmd, sub_argc, sub_argv);
    if (c.fd >= 0)
        close(c.fd);
    return rc;
}
