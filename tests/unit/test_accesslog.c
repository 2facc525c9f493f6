/* common/accesslog: every line is one valid JSON object whatever bytes its fields hold, within
 * ACCESSLOG_LINE_MAX; sampling; the file: mode, append, reopen after a rename, a full disk. */
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
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

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
    accesslog_t *l = accesslog_new("/dev/null", err, sizeof(err));
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
}

/* ---- the file ------------------------------------------------------------------------------ */

static size_t count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[ACCESSLOG_LINE_MAX + 1];
    size_t n = 0;
    while (fgets(line, sizeof(line), f)) {
        assert_true(valid_line(line, strlen(line)));
        n++;
    }
    fclose(f);
    return n;
}

static void test_file_reopen(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_accesslog.XXXXXX", path[300], moved[300], err[300];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/access.log", dir);
    snprintf(moved, sizeof(moved), "%s/access.log.1", dir);
    mode_t old = umask(022);
    accesslog_t *l = accesslog_new(path, err, sizeof(err));
    umask(old);
    assert_non_null(l);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, ACCESSLOG_MODE);
    accesslog_event_t ev = full_event("x");
    accesslog_write(l, &ev);
    accesslog_write(l, &ev);
    assert_int_equal(rename(path, moved), 0);
    accesslog_write(l, &ev); /* still the old file, as logrotate expects until the HUP */
    assert_int_equal(accesslog_reopen(l, err, sizeof(err)), 0);
    accesslog_write(l, &ev);
    accesslog_stats_t s;
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, 4);
    assert_int_equal(s.reopens, 1);
    assert_int_equal(count_lines(moved), 3);
    /* the cached second gives the same text as a fresh one */
    FILE *f = fopen(moved, "r");
    char first[ACCESSLOG_LINE_MAX + 1], third[ACCESSLOG_LINE_MAX + 1], fresh[ACCESSLOG_LINE_MAX];
    assert_non_null(fgets(first, sizeof(first), f));
    assert_non_null(fgets(third, sizeof(third), f));
    assert_non_null(fgets(third, sizeof(third), f));
    fclose(f);
    size_t fl = accesslog_format(&ev, fresh, sizeof(fresh));
    assert_int_equal(strlen(first), fl);
    assert_memory_equal(first, fresh, fl);
    assert_string_equal(first, third);
    assert_int_equal(count_lines(path), 1);
    /* a reopen that fails keeps the old descriptor */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir) == 0 ? 0 : errno, ENOTEMPTY);
    unlink(moved);
    assert_int_equal(rmdir(dir), 0);
    assert_true(accesslog_reopen(l, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "cannot open the access log"));
    accesslog_destroy(&l);
}

static void test_disk_full(void **state)
{
    (void)state;
    char err[200];
    accesslog_t *l = accesslog_new("/dev/full", err, sizeof(err));
    if (!l)
        skip();
    accesslog_event_t ev = full_event("y");
    for (int i = 0; i < 100; i++)
        accesslog_write(l, &ev); /* returns at once, every time */
    accesslog_stats_t s;
    accesslog_stats(l, &s);
    assert_int_equal(s.lines, 0);
    assert_int_equal(s.dropped, 100);
    accesslog_destroy(&l);
    assert_null(accesslog_new("/nonexistent-dir/x.log", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent-dir/x.log"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checker_refuses), cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_long_and_random), cmocka_unit_test(test_escape),
        cmocka_unit_test(test_fields),          cmocka_unit_test(test_want),
        cmocka_unit_test(test_file_reopen),     cmocka_unit_test(test_disk_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
