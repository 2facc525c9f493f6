/* accesslog: see accesslog.h. */
#include "common/accesslog.h"

#include "common/log.h"
#include "common/rng.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

/* Output bytes each field may take (escaped); the sum with the fixed parts stays below
 * ACCESSLOG_LINE_MAX (checked by the unit test with every field at its longest). */
#define B_NAME   140 /* pop, user, resource, route names (63 bytes: 2-byte characters fit) */
#define B_RELAY  70  /* each relay's name (a PoP name: 63 bytes of a-z, 0-9, '-') */
#define B_CLIENT 80  /* "[v6]:port" */
#define B_REASON 300 /* a refusal or error reason */
#define B_METHOD 40  /* a method (httpmsg bounds it to 15 bytes) */
#define B_HOST   300 /* the Host header */
#define B_PATH   800 /* the path, without its query */

#define ACCESSLOG_TS_LEN 19 /* "YYYY-MM-DDTHH:MM:SS" */

/* The last second formatted: most lines fall in the same second as the one before. */
struct time_cache {
    int64_t secs; /* Unix s of text; -1 = none */
    char text[ACCESSLOG_TS_LEN];
};

struct accesslog {
    struct time_cache tc;
    char *path;      /* NULL: stdout */
    int fd;          /* appended to */
    bool sock;       /* fd is a socket: send() with MSG_DONTWAIT */
    uint64_t rng;    /* sampling draws (common/rng.h) */
    uint64_t warned; /* monotonic s of the last warning about dropped lines */
    uint64_t unwarned;
    accesslog_stats_t st;
};

static uint64_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec;
}

static int open_file(const char *path, char *err, size_t errlen)
{
    /* O_NONBLOCK means nothing to a regular file; it does to a FIFO named as the path. */
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
                  ACCESSLOG_MODE);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open the access log %s: %s", path, strerror(e));
        return -e;
    }
    return fd;
}

/* stdout, without blocking the loop and without changing the flags of a file description
 * another process shares (the shell's, a supervisor's): a pipe is opened again through /proc
 * (a new description of the same pipe, non-blocking for us alone); a socket is written with
 * MSG_DONTWAIT; a file or terminal is used as it is. */
static int open_stdout(accesslog_t *l, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(STDOUT_FILENO, &st) != 0) {
        snprintf(err, errlen, "access log to stdout: stdout is not open: %s", strerror(errno));
        return -EBADF;
    }
    if (S_ISFIFO(st.st_mode)) {
        int fd = open("/proc/self/fd/1", O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0)
            return fd;
    }
    l->sock = S_ISSOCK(st.st_mode);
    int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) {
        snprintf(err, errlen, "access log to stdout: %s", strerror(errno));
        return -errno;
    }
    return fd;
}

accesslog_t *accesslog_new(const char *where, char *err, size_t errlen)
{
    accesslog_t *l = xcalloc(1, sizeof(*l));
    l->tc.secs = -1;
    randombytes_buf(&l->rng, sizeof(l->rng));
    if (!strcmp(where, "stdout")) {
        l->fd = open_stdout(l, err, errlen);
    } else {
        l->path = xstrdup(where);
        l->fd = open_file(where, err, errlen);
    }
    if (l->fd < 0) {
        free(l->path);
        free(l);
        return NULL;
    }
    return l;
}

void accesslog_destroy(accesslog_t **lp)
{
    accesslog_t *l = *lp;
    if (!l)
        return;
    close(l->fd);
    free(l->path);
    free(l);
    *lp = NULL;
}

int accesslog_reopen(accesslog_t *l, char *err, size_t errlen)
{
    if (!l->path)
        return 0;
    int fd = open_file(l->path, err, errlen);
    if (fd < 0)
        return fd;
    close(l->fd);
    l->fd = fd;
    l->st.reopens++;
    return 0;
}

bool accesslog_want(accesslog_t *l, uint32_t one_in)
{
    if (!l || one_in == 0)
        return false;
    return one_in == 1 || rng_below(&l->rng, one_in) == 0;
}

void accesslog_stats(const accesslog_t *l, accesslog_stats_t *st)
{
    if (l)
        *st = l->st;
    else
        memset(st, 0, sizeof(*st));
}

/* ---- formatting ----------------------------------------------------------------------- */

/* The length of the well-formed UTF-8 sequence at s[0..n) (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong below U+0800 */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates U+D800..DFFF */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0)
            lo = 0x90; /* overlong below U+10000 */
        else if (c == 0xf4)
            hi = 0x8f; /* past U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* The escaped form of the character at u[i..n): into esc (8 bytes), its length in *el;
 * returns the input bytes it takes. */
static size_t escape_one(const unsigned char *u, size_t i, size_t n, char *esc, size_t *el)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char c = u[i];
    size_t used;
    if (c == '"' || c == '\\') {
        esc[0] = '\\', esc[1] = (char)c, *el = 2;
    } else if (c == '\n') {
        esc[0] = '\\', esc[1] = 'n', *el = 2;
    } else if (c == '\r') {
        esc[0] = '\\', esc[1] = 'r', *el = 2;
    } else if (c == '\t') {
        esc[0] = '\\', esc[1] = 't', *el = 2;
    } else if (c >= 0x20 && c < 0x7f) {
        esc[0] = (char)c, *el = 1;
    } else if (c >= 0x80 && (used = utf8_len(u + i, n - i)) > 0) {
        memcpy(esc, u + i, used); /* well-formed UTF-8: as it is */
        *el = used;
        return used;
    } else {
        /* a control byte, DEL, or a byte that starts no well-formed sequence */
        memcpy(esc, "\\u00", 4);
        esc[4] = hex[c >> 4], esc[5] = hex[c & 15], *el = 6;
    }
    return 1;
}

size_t accesslog_json_escape(const char *s, size_t n, char *out, size_t budget)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;
    bool fits = false; /* the rest is known to fit whole */
    if (budget < 4)
        return 0;
    for (size_t i = 0; i < n;) {
        /* the common case first: a run of printable ASCII needing no escape */
        size_t run = 0;
        while (i + run < n && u[i + run] >= 0x20 && u[i + run] < 0x7f && u[i + run] != '"' &&
               u[i + run] != '\\')
            run++;
        if (run && (fits || o + run <= budget - 3)) {
            memcpy(out + o, u + i, run);
            o += run;
            i += run;
            continue;
        }
        char esc[8];
        size_t el, used = escape_one(u, i, n, esc, &el);
        if (!fits && o + el > budget - 3) {
            /* Near the budget: the rest whole if it fits, else a cut here (on a character
             * boundary) marked with "...". */
            size_t need = 0;
            for (size_t k = i; k < n && o + need <= budget;) {
                char tmp[8];
                size_t tl;
                k += escape_one(u, k, n, tmp, &tl);
                need += tl;
            }
            if (o + need > budget) {
                memcpy(out + o, "...", 3);
                return o + 3;
            }
            fits = true;
        }
        memcpy(out + o, esc, el);
        o += el;
        i += used;
    }
    return o;
}

struct line {
    char *buf;
    size_t len, cap;
    bool first;
};

static void raw(struct line *ln, const char *s, size_t n)
{
    if (ln->len + n > ln->cap)
        n = ln->cap - ln->len; /* cannot happen within the budgets; never overflow anyway */
    memcpy(ln->buf + ln->len, s, n);
    ln->len += n;
}

static void key(struct line *ln, const char *k)
{
    if (!ln->first)
        raw(ln, ",", 1);
    ln->first = false;
    raw(ln, "\"", 1);
    raw(ln, k, strlen(k));
    raw(ln, "\":", 2);
}

static void str_val(struct line *ln, const char *v, size_t budget)
{
    raw(ln, "\"", 1);
    size_t room = ln->cap - ln->len;
    if (room > 2)
        ln->len += accesslog_json_escape(v, strlen(v), ln->buf + ln->len,
                                         budget < room - 2 ? budget : room - 2);
    raw(ln, "\"", 1);
}

static void kv_str(struct line *ln, const char *k, const char *v, size_t budget)
{
    if (!v || !v[0])
        return;
    key(ln, k);
    str_val(ln, v, budget);
}

/* v in decimal, at least min_digits (zero-padded), into out (24 bytes); its length. Per line
 * this runs a handful of times: snprintf's parsing showed in the benchmark. */
static size_t fmt_u64(char *out, uint64_t v, unsigned min_digits)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v || n < min_digits);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static void kv_u64(struct line *ln, const char *k, uint64_t v)
{
    char num[24];
    key(ln, k);
    raw(ln, num, fmt_u64(num, v, 1));
}

static const char *const kind_names[] = {"http", "tcp", "udp"};
static const char *const decision_names[] = {
    [ACCESSLOG_NO_DECISION] = NULL,     [ACCESSLOG_OPEN] = "open",
    [ACCESSLOG_RULE] = "rule",          [ACCESSLOG_SESSION] = "session",
    [ACCESSLOG_APIKEY] = "api_key",     [ACCESSLOG_SHARE] = "share_link",
    [ACCESSLOG_PASSWORD] = "password",  [ACCESSLOG_DENIED] = "denied",
};

static size_t format_line(const accesslog_event_t *ev, char *buf, size_t cap,
                          struct time_cache *tc)
{
    struct line ln = {.buf = buf, .cap = cap - 1 /* the newline */, .first = true};
    char ts[40];
    time_t secs = (time_t)(ev->start_ms / 1000);
    size_t tl;
    if (tc && tc->secs == (int64_t)secs) { /* the same second as the line before */
        memcpy(ts, tc->text, ACCESSLOG_TS_LEN);
        tl = ACCESSLOG_TS_LEN;
    } else {
        struct tm tm;
        gmtime_r(&secs, &tm);
        tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
        if (tc && tl == ACCESSLOG_TS_LEN) {
            tc->secs = (int64_t)secs;
            memcpy(tc->text, ts, ACCESSLOG_TS_LEN);
        }
    }
    ts[tl++] = '.';
    tl += fmt_u64(ts + tl, ev->start_ms % 1000, 3);
    ts[tl++] = 'Z';
    ts[tl] = '\0';
    raw(&ln, "{", 1);
    kv_str(&ln, "time", ts, sizeof(ts));
    kv_str(&ln, "kind", ev->kind <= ACCESSLOG_UDP ? kind_names[ev->kind] : "?", 8);
    kv_str(&ln, "pop", ev->pop, B_NAME);
    kv_str(&ln, "client", ev->client, B_CLIENT);
    kv_str(&ln, "user", ev->user, B_NAME);
    kv_str(&ln, "resource", ev->resource, B_NAME);
    if (ev->kind == ACCESSLOG_HTTP) {
        kv_str(&ln, "method", ev->method, B_METHOD);
        kv_str(&ln, "host", ev->host, B_HOST);
        kv_str(&ln, "path", ev->path, B_PATH);
    }
    if (ev->decision != ACCESSLOG_NO_DECISION && ev->decision <= ACCESSLOG_DENIED) {
        key(&ln, "allowed");
        raw(&ln, ev->decision == ACCESSLOG_DENIED ? "false" : "true",
            ev->decision == ACCESSLOG_DENIED ? 5 : 4);
        kv_str(&ln, "decision", decision_names[ev->decision], 16);
    }
    kv_str(&ln, "reason", ev->reason, B_REASON);
    if (ev->kind == ACCESSLOG_HTTP && ev->status)
        kv_u64(&ln, "status", (uint64_t)ev->status);
    kv_u64(&ln, "bytes_in", ev->bytes_in);
    kv_u64(&ln, "bytes_out", ev->bytes_out);
    char dur[48];
    size_t dl = fmt_u64(dur, ev->duration_us / 1000, 1);
    dur[dl++] = '.';
    dl += fmt_u64(dur + dl, ev->duration_us % 1000, 3);
    key(&ln, "duration_ms");
    raw(&ln, dur, dl);
    if (ev->ingress && ev->ingress[0]) {
        key(&ln, "route");
        raw(&ln, "{", 1);
        ln.first = true;
        kv_str(&ln, "ingress", ev->ingress, B_NAME);
        key(&ln, "relays");
        raw(&ln, "[", 1);
        for (unsigned i = 0; i < ev->nrelays && i < ACCESSLOG_HOPS_MAX; i++) {
            if (i)
                raw(&ln, ",", 1);
            str_val(&ln, ev->relays[i] ? ev->relays[i] : "", B_RELAY);
        }
        raw(&ln, "]", 1);
        kv_str(&ln, "egress", ev->egress, B_NAME);
        kv_str(&ln, "site", ev->site, B_NAME);
        raw(&ln, "}", 1);
    }
    raw(&ln, "}", 1);
    buf[ln.len++] = '\n';
    return ln.len;
}

size_t accesslog_format(const accesslog_event_t *ev, char *buf, size_t cap)
{
    return format_line(ev, buf, cap, NULL);
}

void accesslog_write(accesslog_t *l, const accesslog_event_t *ev)
{
    if (!l)
        return;
    char buf[ACCESSLOG_LINE_MAX];
    size_t n = format_line(ev, buf, sizeof(buf), &l->tc);
    ssize_t w;
    do
        w = l->sock ? send(l->fd, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL) : write(l->fd, buf, n);
    while (w < 0 && errno == EINTR);
    if (w == (ssize_t)n) {
        l->st.lines++;
        return;
    }
    /* Not retried: a full disk or a stalled reader must not stall the loop. A short write
     * (a file only: pipes take a line of at most PIPE_BUF whole or not at all) leaves part of
     * a line: it is ended here, best effort, so the next line starts on a line of its own. */
    int e = w < 0 ? errno : ENOSPC;
    if (w > 0 && !l->sock && write(l->fd, "\n", 1) < 0)
        e = errno;
    l->st.dropped++;
    uint64_t now = mono_s();
    if (l->warned && now - l->warned < ACCESSLOG_WARN_S) {
        l->unwarned++;
        return;
    }
    log_warn("access log %s: a line was dropped: %s (%llu more since the last such warning; "
             "%llu dropped in all)",
             l->path ? l->path : "stdout", strerror(e), (unsigned long long)l->unwarned,
             (unsigned long long)l->st.dropped);
    l->warned = now ? now : 1;
    l->unwarned = 0;
}
