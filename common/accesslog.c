/* accesslog: see accesslog.h.
 *
 * BATCHING. accesslog_write appends the formatted line to l->buf; an ev_prepare watcher
 * writes the buffer. A prepare watcher runs when libev is about to block in epoll_wait, after
 * every callback of the iteration ran: the lines those callbacks wrote go out together, before
 * the loop sleeps, so none waits longer than the iteration that made it. An ev_check watcher
 * would be the wrong one: libev queues check watchers right after epoll_wait returns and runs
 * them before that iteration's I/O callbacks, so the lines of one iteration would wait for the
 * next event to arrive (unbounded on an idle PoP) and go out in the middle of the next batch.
 * The watcher has the lowest priority, so it runs after any other prepare watcher, and is
 * unreferenced: an open log never keeps ev_run from returning.
 *
 * THE BUFFER holds whole lines, except that its head may be the rest of a line whose start a
 * short write already put in the file (l->cut): that rest is written first and never dropped
 * while the descriptor stays, so the file never holds half a line followed by another line.
 * A regular file gets the whole buffer in one write(2); a pipe or socket gets chunks of whole
 * lines of at most PIPE_BUF bytes (each written whole or not at all on a pipe, so lines stay
 * whole there even among other writers of the same pipe). A write that fails or is short is
 * not retried before the next iteration (l->stuck): a full disk or a stalled reader costs at
 * most one system call per iteration, and lines wait in the buffer, up to ACCESSLOG_BUF_MAX;
 * a line that finds no room is dropped whole. */
#include "common/accesslog.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <ev.h>
#include <sodium.h>

_Static_assert(ACCESSLOG_LINE_MAX <= PIPE_BUF, "a line must go into a pipe in one piece");
_Static_assert(ACCESSLOG_BUF_MAX >= 2 * ACCESSLOG_LINE_MAX, "the buffer holds lines");

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
    char *path;           /* NULL: stdout */
    int fd;               /* appended to */
    bool sock;            /* fd is a socket: send() with MSG_DONTWAIT */
    bool chunked;         /* fd is a pipe or socket: writes of whole lines <= PIPE_BUF */
    struct ev_loop *loop; /* borrowed; NULL: each line written at once */
    ev_prepare flusher;   /* writes buf before the loop blocks */
    ev_timer deadline;    /* batching: wakes the loop when the oldest line is batch_ms old */
    size_t batch_bytes;   /* batching (accesslog_set_batch): write once this much is held, */
    uint32_t batch_ms;    /* or once the oldest line is this old; 0, 0: every iteration */
    uint64_t first_ms;    /* monotonic ms: when the buffer's oldest line was added */
    char *buf;            /* ACCESSLOG_BUF_MAX bytes: lines not yet written */
    size_t len;           /* bytes in buf */
    size_t nlines;        /* newlines in buf (= lines, the cut one included) */
    bool cut;             /* buf starts with the rest of a line partly written */
    bool stuck;           /* a write failed or was short this iteration: none until next */
    int last_err;         /* errno of the last failed or short write, for the warning */
    uint64_t rng;         /* sampling draws (common/rng.h) */
    uint64_t warned;      /* monotonic s of the last warning about dropped lines */
    uint64_t unwarned;    /* lines dropped since, not yet warned about */
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

/* Whether fd needs chunks of at most PIPE_BUF (a pipe, or a socket: stdout into a shipper,
 * or a FIFO named as the path). */
static bool is_chunked(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
}

/* Counts n lines dropped; warns at most once every ACCESSLOG_WARN_S. */
static void dropped(accesslog_t *l, uint64_t n, const char *why)
{
    if (n == 0)
        return;
    l->st.dropped += n;
    uint64_t now = mono_s();
    if (l->warned && now - l->warned < ACCESSLOG_WARN_S) {
        l->unwarned += n;
        return;
    }
    log_warn("access log %s: %llu line%s dropped: %s%s%s (%llu more since the last such "
             "warning; %llu dropped in all)",
             l->path ? l->path : "stdout", (unsigned long long)n, n == 1 ? "" : "s", why,
             l->last_err ? ": " : "", l->last_err ? strerror(l->last_err) : "",
             (unsigned long long)l->unwarned, (unsigned long long)l->st.dropped);
    l->warned = now ? now : 1;
    l->unwarned = 0;
}

static size_t count_newlines(const char *p, size_t n)
{
    size_t c = 0;
    for (const char *e = p + n; (p = memchr(p, '\n', (size_t)(e - p))) != NULL; p++)
        c++;
    return c;
}

/* Writes the buffer: whole lines only (after the cut line's rest, when there is one). Stops at
 * the first write that fails or is short, and then keeps the rest for the next try. */
static void flush(accesslog_t *l)
{
    size_t off = 0;
    while (off < l->len) {
        size_t n = l->len - off;
        if (l->chunked && n > PIPE_BUF) {
            /* the last line end within PIPE_BUF: there is one, a line being at most that */
            const char *nl = memrchr(l->buf + off, '\n', PIPE_BUF);
            n = nl ? (size_t)(nl - (l->buf + off)) + 1 : PIPE_BUF;
        }
        ssize_t w;
        l->st.writes++;
        do
            w = l->sock ? send(l->fd, l->buf + off, n, MSG_DONTWAIT | MSG_NOSIGNAL)
                        : write(l->fd, l->buf + off, n);
        while (w < 0 && errno == EINTR);
        if (w <= 0) {
            l->last_err = w < 0 ? errno : ENOSPC;
            l->stuck = l->loop != NULL;
            break;
        }
        off += (size_t)w;
        if ((size_t)w < n) {
            l->last_err = ENOSPC; /* a short write: the next try says why */
            l->stuck = l->loop != NULL;
            break;
        }
    }
    if (off == 0)
        return;
    if (off == l->len) { /* the common case: everything */
        l->st.lines += l->nlines;
        l->len = l->nlines = 0;
        l->cut = false;
        return;
    }
    size_t done = count_newlines(l->buf, off);
    l->st.lines += done;
    l->nlines -= done;
    l->cut = l->buf[off - 1] != '\n';
    memmove(l->buf, l->buf + off, l->len - off);
    l->len -= off;
}

static void deadline_stop(accesslog_t *l)
{
    if (ev_is_active(&l->deadline)) {
        ev_ref(l->loop); /* the reference ev_unref took at the start */
        ev_timer_stop(l->loop, &l->deadline);
    }
}

/* Before the loop blocks: the lines of this iteration go out, or, batching, wait for more
 * until there are batch_bytes of them or the oldest is batch_ms old (the timer wakes the loop
 * for that). A cut line's rest never waits. */
static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
    (void)revents;
    accesslog_t *l = w->data;
    l->stuck = false;
    if (!l->len)
        return;
    if (l->batch_ms && l->len < l->batch_bytes && !l->cut) {
        uint64_t age = clock_mono_ms() - l->first_ms;
        if (age < l->batch_ms) {
            if (!ev_is_active(&l->deadline)) {
                ev_timer_set(&l->deadline, (double)(l->batch_ms - age) / 1000.0, 0.);
                ev_timer_start(loop, &l->deadline);
                ev_unref(loop); /* a batch waiting keeps no loop running */
            }
            return;
        }
    }
    deadline_stop(l);
    flush(l);
}

/* The oldest line's time is up: the next prepare writes (the timer only wakes the loop). */
static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    accesslog_t *l = w->data;
    ev_ref(loop); /* a one-shot timer is stopped now: give back its reference */
    if (l->len)
        flush(l);
}

/* Gives up the rest of a cut line (the descriptor it started on is going away): it cannot
 * start another file, or follow that file's last line. Best effort, the old file gets a
 * newline so the cut line ends there. */
static void drop_cut(accesslog_t *l)
{
    if (!l->cut)
        return;
    const char *nl = memchr(l->buf, '\n', l->len);
    size_t n = nl ? (size_t)(nl - l->buf) + 1 : l->len;
    if (!l->sock && write(l->fd, "\n", 1) < 0) {
        /* nothing more to do: the file takes nothing */
    }
    memmove(l->buf, l->buf + n, l->len - n);
    l->len -= n;
    l->nlines -= nl ? 1 : 0;
    l->cut = false;
    dropped(l, 1, "the rest of a line cut by a short write, at a reopen or close");
}

accesslog_t *accesslog_new(struct ev_loop *loop, const char *where, char *err, size_t errlen)
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
    l->chunked = is_chunked(l->fd);
    l->buf = xmalloc(ACCESSLOG_BUF_MAX);
    l->loop = loop;
    if (loop) {
        ev_prepare_init(&l->flusher, on_prepare);
        ev_set_priority(&l->flusher, EV_MINPRI);
        l->flusher.data = l;
        ev_prepare_start(loop, &l->flusher);
        ev_unref(loop); /* the log alone keeps no loop running */
        ev_init(&l->deadline, on_deadline);
        l->deadline.data = l;
    }
    return l;
}

void accesslog_set_batch(accesslog_t *l, size_t bytes, uint32_t ms)
{
    if (!l || !l->loop)
        return; /* without a loop every line is written at once */
    l->batch_bytes = bytes < ACCESSLOG_BUF_MAX - ACCESSLOG_LINE_MAX ? bytes
                                                                    : ACCESSLOG_BUF_MAX - ACCESSLOG_LINE_MAX;
    l->batch_ms = ms;
}

void accesslog_destroy(accesslog_t **lp)
{
    accesslog_t *l = *lp;
    if (!l)
        return;
    if (l->loop) {
        ev_ref(l->loop);
        ev_prepare_stop(l->loop, &l->flusher);
        deadline_stop(l);
    }
    flush(l);
    drop_cut(l);
    dropped(l, l->nlines, "the file did not take them before it was closed");
    close(l->fd);
    free(l->buf);
    free(l->path);
    free(l);
    *lp = NULL;
}

void accesslog_flush(accesslog_t *l)
{
    if (l && l->len)
        flush(l);
}

int accesslog_reopen(accesslog_t *l, char *err, size_t errlen)
{
    /* the lines of this iteration belong to the file they were written for */
    if (l->len)
        flush(l);
    if (!l->path)
        return 0;
    int fd = open_file(l->path, err, errlen);
    if (fd < 0)
        return fd;
    drop_cut(l); /* the whole lines left go to the new file */
    close(l->fd);
    l->fd = fd;
    l->chunked = is_chunked(fd);
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
    if (l) {
        *st = l->st;
        st->pending = l->nlines;
    } else {
        memset(st, 0, sizeof(*st));
    }
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
        if (!fits && run > budget - o) {
            /* This run alone passes the budget, so the rest cannot fit: cut it here at once.
             * (Going on one character at a time would scan the run again for each: a 8 KiB
             * path took milliseconds.) While !fits, o <= budget - 3. */
            memcpy(out + o, u + i, budget - 3 - o);
            memcpy(out + budget - 3, "...", 3);
            return budget;
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
    [ACCESSLOG_PROVIDER] = "provider",
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
    if (l->len == 0 && l->batch_ms)
        l->first_ms = clock_mono_ms();
    if (ACCESSLOG_BUF_MAX - l->len < ACCESSLOG_LINE_MAX && !l->stuck)
        flush(l); /* the line might not fit: write the buffer now rather than wait */
    size_t n;
    if (ACCESSLOG_BUF_MAX - l->len >= ACCESSLOG_LINE_MAX) {
        /* the common case: formatted in place */
        n = format_line(ev, l->buf + l->len, ACCESSLOG_LINE_MAX, &l->tc);
    } else {
        char line[ACCESSLOG_LINE_MAX];
        n = format_line(ev, line, sizeof(line), &l->tc);
        if (n > ACCESSLOG_BUF_MAX - l->len) {
            /* the file takes nothing (disk full, a reader that stopped) and the buffer is
             * full: this line goes, whole; the ones before it wait their turn */
            dropped(l, 1, "the buffer is full");
            return;
        }
        memcpy(l->buf + l->len, line, n);
    }
    l->len += n;
    l->nlines++;
    if (!l->loop)
        flush(l);
}
