/* common/accesslog: every line is one valid JSON object whatever bytes its fields hold, within
 * ACCESSLOG_LINE_MAX; sampling; the file: mode, append, reopen after a rename, a full disk;
 * batching: the lines of one loop iteration in one write(2) before the loop blocks, a write
 * when the buffer would pass ACCESSLOG_BUF_MAX, whole lines only (a short write's rest first,
 * next iteration), the buffer written on reopen and close, the bound, drops counted. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "common/accesslog.h"
#include "common/rng.h"

/* ---- a strict JSON checker (RFC 8259), enough to say "json.loads would take this" -------- */

struct jp {
    const unsigned char *s;
    size_t n, i;
    int depth;
};

static void ws(struct jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

static bool hexd(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Raw bytes inside a string must be well-formed UTF-8 and not control characters. */
static bool j_string(struct jp *p)
{
    if (p->i >= p->n || p->s[p->i] != '"')
        return false;
    p->i++;
    while (p->i < p->n) {
        unsigned char c = p->s[p->i];
        if (c == '"') {
            p->i++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (p->i + 1 >= p->n)
                return false;
            unsigned char e = p->s[p->i + 1];
            if (e == 'u') {
                if (p->i + 6 > p->n)
                    return false;
                for (int k = 2; k < 6; k++)
                    if (!hexd(p->s[p->i + k]))
                        return false;
                p->i += 6;
            } else if (strchr("\"\\/bfnrt", e) && e) {
                p->i += 2;
            } else {
                return false;
            }
            continue;
        }
        if (c < 0x80) {
            p->i++;
            continue;
        }
        size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!len || p->i + len > p->n)
            return false;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c == 0xe0)
            lo = 0xa0;
        if (c == 0xed)
            hi = 0x9f;
        if (c == 0xf0)
            lo = 0x90;
        if (c == 0xf4)
            hi = 0x8f;
        if (p->s[p->i + 1] < lo || p->s[p->i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if (p->s[p->i + k] < 0x80 || p->s[p->i + k] > 0xbf)
                return false;
        p->i += len;
    }
    return false;
}

static bool j_value(struct jp *p);

static bool j_number(struct jp *p)
{
    size_t st = p->i;
    if (p->i < p->n && p->s[p->i] == '-')
        p->i++;
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9')
        return false;
    if (p->s[p->i] == '0')
        p->i++;
    else
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
    if (p->i < p->n && p->s[p->i] == '.') {
        p->i++;
        size_t d = p->i;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9')
            p->i++;
        if (d == p->i)
            return false;
    }
    return p->i > st;
}

static bool j_lit(struct jp *p, const char *w)
{
    size_t l = strlen(w);
    if (p->i + l > p->n || memcmp(p->s + p->i, w, l))
        return false;
    p->i += l;
    return true;
}

static bool j_value(struct jp *p)
{
    ws(p);
    if (p->i >= p->n || ++p->depth > 16)
        return false;
    bool ok = false;
    unsigned char c = p->s[p->i];
    if (c == '{' || c == '[') {
        bool obj = c == '{';
        p->i++;
        ws(p);
        if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
            p->i++;
            ok = true;
        } else {
            for (;;) {
                ws(p);
                if (obj) {
                    if (!j_string(p))
                        break;
                    ws(p);
                    if (p->i >= p->n || p->s[p->i++] != ':')
                        break;
                }
                if (!j_value(p))
                    break;
                ws(p);
                if (p->i < p->n && p->s[p->i] == ',') {
                    p->i++;
                    continue;
                }
                if (p->i < p->n && p->s[p->i] == (obj ? '}' : ']')) {
                    p->i++;
                    ok = true;
                }
                break;
            }
        }
    } else if (c == '"') {
        ok = j_string(p);
    } else if (c == 't') {
        ok = j_lit(p, "true");
    } else if (c == 'f') {
        ok = j_lit(p, "false");
    } else if (c == 'n') {
        ok = j_lit(p, "null");
    } else {
        ok = j_number(p);
    }
    p->depth--;
    return ok;
}

/* One object, then exactly one newline at the end. */
static bool valid_line(const char *buf, size_t n)
{
    if (n == 0 || buf[n - 1] != '\n' || memchr(buf, '\n', n - 1))
        return false;
    struct jp p = {(const unsigned char *)buf, n - 1, 0, 0};
    ws(&p);
    if (p.i >= p.n || p.s[p.i] != '{' || !j_value(&p))
        return false;
    ws(&p);
    return p.i == p.n;
}

static void test_checker_refuses(void **state)
{
    (void)state;
    /* the checker itself must be able to say no */
    assert_false(valid_line("{\"a\":\"\x01\"}\n", 10));
    assert_false(valid_line("{\"a\":\"\xff\"}\n", 10));
    assert_false(valid_line("{\"a\":\"\xed\xa0\x80\"}\n", 12));
    assert_false(valid_line("{\"a\":\"\\x41\"}\n", 13));
    assert_false(valid_line("{\"a\":1,}\n", 9));
    assert_false(valid_line("{\"a\":\"b\"}", 9));
    assert_true(valid_line("{\"a\":\"\\u00ff\\\"\xc3\xa9\",\"b\":[\"x\"],\"c\":1.5}\n", 37));
}

/* ---- the formatter ------------------------------------------------------------------------ */

static accesslog_event_t full_event(const char *v)
{
    accesslog_event_t ev = {
        .kind = ACCESSLOG_HTTP,
        .start_ms = 1700000000123ull,
        .duration_us = 1234567,
        .pop = v,
        .client = v,
        .user = v,
        .resource = v,
        .decision = ACCESSLOG_DENIED,
        .reason = v,
        .status = 403,
        .method = v,
        .host = v,
        .path = v,
        .bytes_in = UINT64_MAX,
        .bytes_out = 12,
        .ingress = v,
        .nrelays = ACCESSLOG_HOPS_MAX,
        .egress = v,
        .site = v,
    };
    for (unsigned i = 0; i < ACCESSLOG_HOPS_MAX; i++)
        ev.relays[i] = v;
    return ev;
}

static void check(const accesslog_event_t *ev)
{
    char buf[ACCESSLOG_LINE_MAX];
    size_t n = accesslog_format(ev, buf, sizeof(buf));
    assert_true(n <= ACCESSLOG_LINE_MAX);
    if (!valid_line(buf, n)) {
        fprintf(stderr, "not JSON: %.*s\n", (int)n, buf);
        fail();
    }
}

/* Every byte value in every field, alone and between letters. */
static void test_every_byte(void **state)
{
    (void)state;
    for (int b = 1; b < 256; b++) {
        char one[2] = {(char)b, 0}, mid[4] = {'a', (char)b, 'z', 0};
        accesslog_event_t e1 = full_event(one), e2 = full_event(mid);
        check(&e1);
        check(&e2);
    }
    char all[256];
    for (int b = 1; b < 256; b++)
        all[b - 1] = (char)b;
    all[255] = '\0';
    accesslog_event_t ev = full_event(all);
    check(&ev);
}

/* Fields at their worst: long, every byte needing 6 bytes of escape; the line stays within
 * ACCESSLOG_LINE_MAX and whole. Random bytes of random lengths likewise. */
static void test_long_and_random(void **state)
{
    (void)state;
    static char v[5000];
    memset(v, 0x01, sizeof(v) - 1);
    accesslog_event_t ev = full_event(v);
    check(&ev);
    memset(v, 0xff, sizeof(v) - 1);
    check(&ev);
    /* multi-byte characters cut at the budget: cut on a character boundary */
    for (size_t i = 0; i + 2 < sizeof(v); i += 2)
        memcpy(v + i, "\xc3\xa9", 2);
    check(&ev);
    uint64_t seed = 42;
    for (int round = 0; round < 2000; round++) {
        size_t len = rng_below(&seed, 1500);
        for (size_t i = 0; i < len; i++) {
            uint8_t b = (uint8_t)rng_below(&seed, 255) + 1;
            v[i] = (char)b;
        }
        v[len] = '\0';
        accesslog_event_t e = full_event(v);
        e.kind = (enum accesslog_kind)(round % 3);
        e.nrelays = (unsigned)(round % (ACCESSLOG_HOPS_MAX + 1));
        e.decision = (enum accesslog_decision)(round % (ACCESSLOG_DENIED + 1));
        check(&e);
    }
}

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    size_t n = accesslog_json_escape("a\"b\\c\n\x7f\xff\xc3\xa9", 10, out, sizeof(out));
    out[n] = '\0';
    assert_string_equal(out, "a\\\"b\\\\c\\n\\u007f\\u00ff\xc3\xa9");
    /* a cut: on a boundary, marked */
    n = accesslog_json_escape("abcdefghij", 10, out, 8);
    out[n] = '\0';
    assert_string_equal(out, "abcde...");
    n = accesslog_json_escape("abcdefgh", 8, out, 8);
    out[n] = '\0';
    assert_string_equal(out, "abcdefgh");
}

static void test_fields(void **state)
{
    (void)state;
    accesslog_event_t ev = {.kind = ACCESSLOG_TCP,
                            .start_ms = 86400000ull + 5,
                            .duration_us = 2500,
                            .pop = "pop-a",
                            .client = "127.0.0.1:40000",
                            .resource = "db",
                            .decision = ACCESSLOG_OPEN,
                            .bytes_in = 10,
                            .bytes_out = 20,
                            .ingress = "pop-a",
                            .relays = {"pop-b"},
                            .nrelays = 1,
                            .egress = "pop-c",
                            .site = "s1"};
    char buf[ACCESSLOG_LINE_MAX];
    size_t n = accesslog_format(&ev, buf, sizeof(buf));
    buf[n] = '\0';
    assert_string_equal(buf,
                        "{\"time\":\"1970-01-02T00:00:00.005Z\",\"kind\":\"tcp\",\"pop\":\"pop-a\","
                        "\"client\":\"127.0.0.1:40000\",\"resource\":\"db\",\"allowed\":true,"
                        "\"decision\":\"open\",\"bytes_in\":10,\"bytes_out\":20,"
                        "\"duration_ms\":2.500,\"route\":{\"ingress\":\"pop-a\",\"relays\":["
                        "\"pop-b\"],\"egress\":\"pop-c\",\"site\":\"s1\"}}\n");
}

/* ---- sampling ------------------------------------------------------------------------------ */

static void test_want(void **state)
{
    (void)state;
    char err[200];
    accesslog_t *l = accesslog_new(NULL, "/dev/null", err, sizeof(err));
    assert_non_null(l);
    assert_false(accesslog_want(NULL, 1));
    assert_false(accesslog_want(l, 0));
    assert_true(accesslog_want(l, 1));
    unsigned hits = 0;
    for (int i = 0; i < 100000; i++)
        hits += accesslog_want(l, 10);
    assert_in_range(hits, 9000, 11000);
    accesslog_destroy(&l);
    assert_null(l);
    accesslog_destroy(&l); /* NULL: nothing */
}

/* ---- the file ------------------------------------------------------------------------------ */

/* Lines of path, each checked whole and valid; a last line without its newline (a cut line)
 * is not counted, and says so in *cut when asked. */
static size_t count_lines_cut(const char *path, bool *cut)
{
    FILE *f = fopen(path, "r");
    if (cut)
        *cut = false;
    if (!f)
        return 0;
    char line[ACCESSLOG_LINE_MAX + 1];
    size_t n = 0;
    while (fgets(line, sizeof(line), f)) {
        size_t len = strlen(line);
        if (len && line[len - 1] != '\n' && feof(f)) {
            assert_non_null(cut); /* a cut line where none may be */
            *cut = true;
            break;
        }
        assert_true(valid_line(line, len));
        n++;
    }
    fclose(f);
    return n;
}

static size_t count_lines(const char *path)
{
    return count_lines_cut(path, NULL);
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

struct tmp {
    char dir[64], path[300], moved[300];
};

static void tmp_make(struct tmp *t)
{
    snprintf(t->dir, sizeof(t->dir), "/tmp/test_accesslog.XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->path, sizeof(t->path), "%s/access.log", t->dir);
    snprintf(t->moved, sizeof(t->moved), "%s/access.log.1", t->dir);
}

static void tmp_remove(struct tmp *t)
{
    unlink(t->path);
    unlink(t->moved);
    assert_int_equal(rmdir(t->dir), 0);
}

static size_t line_len(const accesslog_event_t *ev)
{
    char buf[ACCESSLOG_LINE_MAX];
    return accesslog_format(ev, buf, sizeof(buf));
}

/* One loop iteration: the log's prepare watcher runs before the (non-)block. */
static void iterate(struct ev_loop *loop)
{
    ev_run(loop, EVRUN_NOWAIT);
}

static void test_file_reopen(void **state)
{
    (void)state;
    struct tmp t;
    char err[300];
    tmp_make(&t);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    mode_t old = umask(022);
    accesslog_t *l = accesslog_new(loop, t.path, err, sizeof(err));
    umask(old);
    assert_non_null(l);
    struct stat st;
    assert_int_equal(stat(t.path, &st), 0);
    assert_int_equal(st.st_mode & 0777, ACCESSLOG_MODE);
    accesslog_event_t ev = full_event("x");
    accesslog_write(l, &ev);
    accesslog_write(l, &ev);
    iterate(loop);
    assert_int_equal(count_lines(t.path), 2);
    assert_int_equal(rename(t.path, t.moved), 0);
    accesslog_write(l, &ev); /* still the old file, as logrotate expects until the HUP */
    assert_int_equal(file_size(t.moved), 2 * (off_t)line_len(&ev)); /* buffered */
    /* the reopen writes the buffer to the old file before it switches */
    assert_int_equal(accesslog_reopen(l, err, sizeof(err)), 0);
    assert_int_equal(count_lines(t.moved), 3);
    accesslog_write(l, &ev);
    assert_int_equal(file_size(t.path), 0);
    iterate(loop);
    accesslog_stats_t s;
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, 4);
    assert_int_equal(s.reopens, 1);
    assert_int_equal(s.pending, 0);
    assert_int_equal(s.dropped, 0);
    assert_int_equal(count_lines(t.moved), 3);
    assert_int_equal(count_lines(t.path), 1);
    /* the cached second gives the same text as a fresh one */
    FILE *f = fopen(t.moved, "r");
    char first[ACCESSLOG_LINE_MAX + 1], third[ACCESSLOG_LINE_MAX + 1], fresh[ACCESSLOG_LINE_MAX];
    assert_non_null(fgets(first, sizeof(first), f));
    assert_non_null(fgets(third, sizeof(third), f));
    assert_non_null(fgets(third, sizeof(third), f));
    fclose(f);
    size_t fl = accesslog_format(&ev, fresh, sizeof(fresh));
    assert_int_equal(strlen(first), fl);
    assert_memory_equal(first, fresh, fl);
    assert_string_equal(first, third);
    /* a reopen that fails keeps the old descriptor */
    unlink(t.moved);
    assert_int_equal(unlink(t.path), 0);
    assert_int_equal(rmdir(t.dir), 0);
    assert_true(accesslog_reopen(l, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "cannot open the access log"));
    accesslog_destroy(&l);
    ev_loop_destroy(loop);
}

/* The lines of one iteration: none written before the loop would block, then all in one
 * write(2); an idle iteration writes nothing. */
static void test_batching(void **state)
{
    (void)state;
    struct tmp t;
    char err[300];
    tmp_make(&t);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    accesslog_t *l = accesslog_new(loop, t.path, err, sizeof(err));
    assert_non_null(l);
    accesslog_event_t ev = full_event("batch");
    for (int i = 0; i < 100; i++)
        accesslog_write(l, &ev);
    accesslog_stats_t s;
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 0);
    assert_int_equal(s.pending, 100);
    assert_int_equal(file_size(t.path), 0);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 1);
    assert_int_equal(s.lines, 100);
    assert_int_equal(s.pending, 0);
    assert_int_equal(count_lines(t.path), 100);
    iterate(loop);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 1);
    /* accesslog_flush: now, without the loop */
    accesslog_write(l, &ev);
    accesslog_flush(l);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 2);
    assert_int_equal(count_lines(t.path), 101);
    /* the log does not keep the loop running: ev_run returns with nothing else active */
    ev_run(loop, 0);
    accesslog_destroy(&l);
    ev_loop_destroy(loop);
    /* without a loop: each line at once */
    l = accesslog_new(NULL, t.path, err, sizeof(err));
    assert_non_null(l);
    accesslog_write(l, &ev);
    assert_int_equal(count_lines(t.path), 102);
    accesslog_destroy(&l);
    tmp_remove(&t);
}

static void never_fires(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
    fail_msg("the 5 s timer fired: the log's deadline did not wake the loop");
}

/* Batching (accesslog_set_batch): lines wait until the oldest is batch_ms old (the timer wakes
 * the loop for it) or batch_bytes are held; a waiting batch keeps no loop running; the close
 * writes what waits. */
static void test_batch_set(void **state)
{
    (void)state;
    struct tmp t;
    char err[300];
    tmp_make(&t);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    accesslog_t *l = accesslog_new(loop, t.path, err, sizeof(err));
    assert_non_null(l);
    accesslog_set_batch(l, 1 << 20, 80); /* bytes capped below the buffer */
    accesslog_event_t ev = full_event("held");
    for (int i = 0; i < 10; i++)
        accesslog_write(l, &ev);
    iterate(loop);
    iterate(loop);
    accesslog_stats_t s;
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 0);
    assert_int_equal(s.pending, 10);
    /* the timer: a loop that blocks (here for a 5 s timer of someone else, as popd's always
     * has some watcher) wakes when the oldest line is due, and the lines go */
    ev_timer other;
    ev_timer_init(&other, never_fires, 5., 0.);
    ev_timer_start(loop, &other);
    ev_tstamp t0 = ev_time();
    ev_run(loop, EVRUN_ONCE);
    iterate(loop);
    ev_timer_stop(loop, &other);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 1);
    assert_int_equal(s.pending, 0);
    assert_int_equal(count_lines(t.path), 10);
    assert_true(ev_time() - t0 >= 0.05);
    /* by size: a batch of 4 KiB goes at the first iteration past it */
    accesslog_set_batch(l, 4096, 60000);
    size_t per = line_len(&ev), n = 4096 / per + 1;
    for (size_t i = 0; i < n - 1; i++)
        accesslog_write(l, &ev);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 1);
    accesslog_write(l, &ev);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 2);
    assert_int_equal(count_lines(t.path), 10 + (int)n);
    /* a batch waiting does not keep the loop running; the close writes it */
    accesslog_write(l, &ev);
    iterate(loop);
    ev_run(loop, 0);
    accesslog_stats(l, &s);
    assert_int_equal(s.pending, 1);
    accesslog_destroy(&l);
    assert_int_equal(count_lines(t.path), 11 + (int)n);
    ev_loop_destroy(loop);
    tmp_remove(&t);
}

/* A line that could pass ACCESSLOG_BUF_MAX writes the buffer first; every write ends on a
 * line's end. */
static void test_bound(void **state)
{
    (void)state;
    struct tmp t;
    char err[300];
    tmp_make(&t);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    accesslog_t *l = accesslog_new(loop, t.path, err, sizeof(err));
    assert_non_null(l);
    static char v[3000];
    uint64_t seed = 7;
    size_t total = 0, bytes = 0;
    accesslog_stats_t s;
    while (bytes < 3 * ACCESSLOG_BUF_MAX) { /* lines of every length, up to the longest */
        size_t len = rng_below(&seed, sizeof(v) - 1);
        memset(v, 'a' + (int)(total % 26), len);
        v[len] = '\0';
        accesslog_event_t ev = full_event(v);
        accesslog_write(l, &ev);
        total++;
        bytes += line_len(&ev);
        off_t sz = file_size(t.path);
        assert_true(sz >= (off_t)(bytes > ACCESSLOG_BUF_MAX ? bytes - ACCESSLOG_BUF_MAX : 0));
        if (sz > 0) { /* whole lines only */
            char last;
            int fd = open(t.path, O_RDONLY);
            assert_int_equal(pread(fd, &last, 1, sz - 1), 1);
            close(fd);
            assert_int_equal(last, '\n');
        }
    }
    accesslog_stats(l, &s);
    assert_true(s.writes >= 2);
    assert_true(s.writes <= 2 * bytes / ACCESSLOG_BUF_MAX + 1); /* batches, not lines */
    assert_int_equal(s.lines + s.pending, total);
    assert_int_equal(count_lines(t.path), s.lines);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, total);
    assert_int_equal(s.dropped, 0);
    assert_int_equal(count_lines(t.path), total);
    assert_int_equal(file_size(t.path), (off_t)bytes);
    accesslog_destroy(&l);
    ev_loop_destroy(loop);
    tmp_remove(&t);
}

/* Closing writes the buffer. */
static void test_close_flushes(void **state)
{
    (void)state;
    struct tmp t;
    char err[300];
    tmp_make(&t);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    accesslog_t *l = accesslog_new(loop, t.path, err, sizeof(err));
    assert_non_null(l);
    accesslog_event_t ev = full_event("bye");
    for (int i = 0; i < 5; i++)
        accesslog_write(l, &ev);
    assert_int_equal(file_size(t.path), 0);
    accesslog_destroy(&l);
    assert_int_equal(count_lines(t.path), 5);
    ev_loop_destroy(loop);
    tmp_remove(&t);
}

/* A file that takes part of a write: RLIMIT_FSIZE cuts the write at the limit (then EFBIG),
 * as a full disk does. */
static void set_fsize(rlim_t max)
{
    struct rlimit r;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &r), 0);
    r.rlim_cur = max == RLIM_INFINITY ? r.rlim_max : max;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &r), 0);
}

/* The rest of a cut line is written first, next iteration, before any other line: the file
 * never holds half a line followed by another. */
static void test_short_write(void **state)
{
    (void)state;
    struct tmp t;
    char err[300];
    tmp_make(&t);
    signal(SIGXFSZ, SIG_IGN);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    accesslog_t *l = accesslog_new(loop, t.path, err, sizeof(err));
    assert_non_null(l);
    accesslog_event_t ev = full_event("short");
    size_t ll = line_len(&ev), limit = 3 * ll + ll / 2;
    set_fsize(limit);
    for (int i = 0; i < 10; i++)
        accesslog_write(l, &ev);
    iterate(loop);
    accesslog_stats_t s;
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, 3);
    assert_int_equal(s.pending, 7); /* the cut one included */
    assert_int_equal(file_size(t.path), (off_t)limit);
    bool cut;
    assert_int_equal(count_lines_cut(t.path, &cut), 3);
    assert_true(cut);
    /* still full: one attempt per iteration, nothing dropped, no line after the cut one */
    iterate(loop);
    iterate(loop);
    accesslog_write(l, &ev);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 3);
    assert_int_equal(s.dropped, 0);
    assert_int_equal(file_size(t.path), (off_t)limit);
    set_fsize(RLIM_INFINITY);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, 11);
    assert_int_equal(s.pending, 0);
    assert_int_equal(count_lines_cut(t.path, &cut), 11);
    assert_false(cut);
    assert_int_equal(file_size(t.path), (off_t)(11 * ll));

    /* A reopen with a cut line: its rest can go to neither file; dropped, counted; the whole
     * lines after it go to the new file. */
    set_fsize(limit + 11 * ll);
    for (int i = 0; i < 10; i++)
        accesslog_write(l, &ev);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, 14);
    assert_int_equal(s.pending, 7);
    assert_int_equal(rename(t.path, t.moved), 0);
    assert_int_equal(accesslog_reopen(l, err, sizeof(err)), 0);
    accesslog_stats(l, &s);
    assert_int_equal(s.dropped, 1);
    assert_int_equal(s.pending, 6);
    set_fsize(RLIM_INFINITY);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, 20);
    assert_int_equal(count_lines_cut(t.moved, &cut), 14);
    assert_true(cut); /* the limit kept even the newline out */
    assert_int_equal(count_lines_cut(t.path, &cut), 6);
    assert_false(cut);
    /* the file takes lines again: an iteration's lines past the bound are written, not
     * dropped (the failure stopped retries for its own iteration only) */
    size_t n = 3 * ACCESSLOG_BUF_MAX / ll;
    for (size_t i = 0; i < n; i++)
        accesslog_write(l, &ev);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.dropped, 1);
    assert_int_equal(s.lines, 20 + n);
    assert_int_equal(count_lines(t.path), 6 + n);
    accesslog_destroy(&l);
    ev_loop_destroy(loop);
    signal(SIGXFSZ, SIG_DFL);
    tmp_remove(&t);
}

static void test_disk_full(void **state)
{
    (void)state;
    char err[200];
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    accesslog_t *l = accesslog_new(loop, "/dev/full", err, sizeof(err));
    if (!l)
        skip();
    accesslog_event_t ev = full_event("y");
    size_t ll = line_len(&ev), n = 2 * ACCESSLOG_BUF_MAX / ll;
    for (size_t i = 0; i < n; i++)
        accesslog_write(l, &ev); /* returns at once, every time */
    accesslog_stats_t s;
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, 0);
    /* the buffer holds what fits; the rest is dropped whole and counted */
    assert_int_equal(s.pending, ACCESSLOG_BUF_MAX / ll);
    assert_int_equal(s.dropped, n - s.pending);
    assert_int_equal(s.writes, 1); /* one try when full, then none until the next iteration */
    iterate(loop);
    iterate(loop);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 3);
    assert_int_equal(s.dropped, n - ACCESSLOG_BUF_MAX / ll);
    accesslog_destroy(&l); /* the buffer: dropped, counted, warned about */
    ev_loop_destroy(loop);
    /* without a loop: one try per line */
    l = accesslog_new(NULL, "/dev/full", err, sizeof(err));
    assert_non_null(l);
    for (int i = 0; i < 10; i++)
        accesslog_write(l, &ev);
    accesslog_stats(l, &s);
    assert_int_equal(s.writes, 10);
    assert_int_equal(s.lines, 0);
    accesslog_destroy(&l);
    assert_null(accesslog_new(NULL, "/nonexistent-dir/x.log", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent-dir/x.log"));
}

/* A pipe nobody reads (a stalled shipper): chunks of whole lines, each written whole or not at
 * all; the loop never waits; what the pipe takes later arrives whole and in order. Another
 * writer shares the pipe (stdout of a supervisor): its lines, between our writes, never land
 * inside one of ours. */
static void test_pipe_full(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_true(fcntl(p[0], F_SETPIPE_SZ, 4096) >= 4096);
    int pipesz = fcntl(p[0], F_GETPIPE_SZ);
    assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    char where[64], err[200];
    snprintf(where, sizeof(where), "/proc/self/fd/%d", p[1]);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    accesslog_t *l = accesslog_new(loop, where, err, sizeof(err));
    assert_non_null(l);
    size_t total = 0, got = 0, dropped_expected = 0, markers = 0, seen = 0;
    assert_int_equal(fcntl(p[1], F_SETFL, O_NONBLOCK), 0); /* the other writer's description */
    static char v[1500], rd[ACCESSLOG_BUF_MAX * 2];
    size_t have = 0;
    uint64_t seed = 9;
    accesslog_stats_t s;
    for (int round = 0; round < 400; round++) {
        /* a burst of lines, an iteration, then read a little (never all: the pipe stays full) */
        for (int i = 0; i < 8; i++) {
            size_t len = rng_below(&seed, sizeof(v) - 1);
            memset(v, 'A' + (int)(total % 26), len);
            v[len] = '\0';
            accesslog_event_t ev = full_event(v);
            accesslog_write(l, &ev);
            total++;
        }
        iterate(loop);
        if (write(p[1], "{}\n", 3) == 3) /* the other writer, between two of ours */
            markers++;
        if (round % 3 == 0) {
            ssize_t r = read(p[0], rd + have, (size_t)pipesz / 2);
            if (r > 0)
                have += (size_t)r;
        }
        /* every whole line read so far is valid; keep a partial read for the next round */
        char *start = rd, *nl;
        while ((nl = memchr(start, '\n', have - (size_t)(start - rd))) != NULL) {
            assert_true(valid_line(start, (size_t)(nl - start) + 1));
            if (nl - start == 2)
                seen++; /* "{}": the other writer's */
            else
                got++;
            start = nl + 1;
        }
        have -= (size_t)(start - rd);
        memmove(rd, start, have);
    }
    accesslog_stats(l, &s);
    assert_true(s.dropped > 0); /* the pipe is much slower than the lines */
    dropped_expected = s.dropped;
    /* the reader catches up: the buffer drains, nothing more dropped */
    for (int i = 0; i < 10000 && (s.pending || have); i++) {
        iterate(loop);
        ssize_t r = read(p[0], rd + have, sizeof(rd) - have);
        if (r > 0)
            have += (size_t)r;
        char *start = rd, *nl;
        while ((nl = memchr(start, '\n', have - (size_t)(start - rd))) != NULL) {
            assert_true(valid_line(start, (size_t)(nl - start) + 1));
            if (nl - start == 2)
                seen++; /* "{}": the other writer's */
            else
                got++;
            start = nl + 1;
        }
        have -= (size_t)(start - rd);
        memmove(rd, start, have);
        accesslog_stats(l, &s);
    }
    assert_int_equal(s.pending, 0);
    assert_int_equal(have, 0);
    assert_int_equal(s.dropped, dropped_expected);
    assert_int_equal(s.lines, got);
    assert_int_equal(got + s.dropped, total);
    assert_true(markers > 0);
    assert_int_equal(seen, markers);
    accesslog_destroy(&l);
    ev_loop_destroy(loop);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_refuses), cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_long_and_random), cmocka_unit_test(test_escape),
        cmocka_unit_test(test_fields),          cmocka_unit_test(test_want),
        cmocka_unit_test(test_file_reopen),     cmocka_unit_test(test_batching),
        cmocka_unit_test(test_bound),           cmocka_unit_test(test_close_flushes),
        cmocka_unit_test(test_short_write),     cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_pipe_full),       cmocka_unit_test(test_batch_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
