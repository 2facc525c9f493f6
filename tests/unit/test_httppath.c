/* Unit tests of node/http/httppath (the canonical path routing and access rules compare):
 * every spelling a client can use for one path gives the same result, and what cannot be a
 * path is refused. */
#include "node/http/httppath.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* norm(target) with a buffer of the input's size + 1; NULL when refused (errno-style code in
 * *rc). */
static const char *norm(const char *target, ssize_t *rc)
{
    static char out[2048];
    *rc = httppath_normalize(target, strlen(target), out, strlen(target) + 1);
    return *rc < 0 ? NULL : out;
}

static void expect(const char *target, const char *want)
{
    ssize_t rc;
    const char *got = norm(target, &rc);
    if (!got || strcmp(got, want)) {
        print_error("'%s': want '%s', got '%s' (rc %zd)\n", target, want, got ? got : "(refused)",
                    rc);
        fail();
    }
    assert_int_equal(rc, (ssize_t)strlen(want));
}

static void expect_refused(const char *target, ssize_t want_rc)
{
    ssize_t rc;
    const char *got = norm(target, &rc);
    if (got || rc != want_rc) {
        print_error("'%s': want refusal %zd, got '%s' (rc %zd)\n", target, want_rc,
                    got ? got : "(refused)", rc);
        fail();
    }
}

static void test_slashes(void **state)
{
    (void)state;
    expect("/", "/");
    expect("//", "/");
    expect("//admin//x", "/admin/x");
    expect("/a///b", "/a/b");
    expect("/a%2fb", "/a/b");    /* an escaped slash splits segments as '/' does */
    expect("/a%2F%2Fb", "/a/b"); /* and collapses like one */
    expect("/admin%2f..%2fpublic", "/public");
}

static void test_escapes(void **state)
{
    (void)state;
    expect("/%61dmin/x", "/admin/x");
    expect("/%41%42c", "/ABc");
    expect("/caf%C3%A9", "/caf\xc3\xa9");
    expect("/a%20b", "/a b");
    /* '%', '?' and '#' stay escaped, in upper case: a second decode must not change the path */
    expect("/%2561dmin", "/%2561dmin");
    expect("/100%25", "/100%25");
    expect("/a%3fb", "/a%3Fb");
    expect("/a%3Fb/../c", "/c");
    expect("/a%23b", "/a%23b");
    expect_refused("/x%00y", -EINVAL);
    expect_refused("/%00", -EINVAL);
    expect_refused("/a%", -EINVAL);
    expect_refused("/a%4", -EINVAL);
    expect_refused("/a%zz", -EINVAL);
    expect_refused("/a%4g", -EINVAL);
}

static void test_dots(void **state)
{
    (void)state;
    expect("/./a/./b", "/a/b");
    expect("/a/.", "/a");
    expect("/public/../admin/x", "/admin/x");
    expect("/a/b/../../c", "/c");
    expect("/..", "/");
    expect("/../../etc/passwd", "/etc/passwd"); /* never above "/" */
    expect("/a/..", "/");
    expect("/%2e%2E/admin", "/admin"); /* escaped dots are dots */
    expect("/a/%2e/b", "/a/b");
    expect("/.hidden/...", "/.hidden/..."); /* only "." and ".." are special */
    expect("/a..b/.c", "/a..b/.c");
}

static void test_trailing_slash(void **state)
{
    (void)state;
    expect("/app/", "/app/");
    expect("/app", "/app");
    expect("/app//", "/app/");
    expect("/app/./", "/app/");
    expect("/app/x/../", "/app/");
    expect("/a/../", "/");
    expect("/app%2f", "/app/");
}

static void test_query_apart(void **state)
{
    (void)state;
    expect("/a/b?x=/../y", "/a/b");
    expect("/a/../b?q=%00", "/b"); /* the query is neither decoded nor checked */
    expect("/a?", "/a");
    expect("/?a=1", "/");
    expect("/a#frag/../x", "/a");
    expect("/a/?x", "/a/");
    expect_refused("?x", -EINVAL);
}

static void test_refused_forms(void **state)
{
    (void)state;
    expect_refused("", -EINVAL);
    expect_refused("*", -EINVAL);
    expect_refused("http://host/x", -EINVAL);
    expect_refused("a/b", -EINVAL);
    char out[4];
    assert_int_equal(httppath_normalize("/abcdef", 7, out, sizeof(out)), -ENOSPC);
    assert_int_equal(httppath_normalize("/", 1, out, 1), -ENOSPC);
    assert_int_equal(httppath_normalize("/ab", 3, out, sizeof(out)), 3);
    assert_string_equal(out, "/ab");
}

static void test_idempotent(void **state)
{
    (void)state;
    static const char *const in[] = {
        "//a/./b/../c/", "/%2561/%3f/%23/%25", "/a%2f%2e%2e%2fb", "/x/%2E./y", "/..%2f..%2fz",
    };
    for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
        char a[256], b[256];
        ssize_t n = httppath_normalize(in[i], strlen(in[i]), a, sizeof(a));
        assert_true(n > 0);
        assert_true((size_t)n <= strlen(in[i]));
        assert_int_equal(httppath_normalize(a, (size_t)n, b, sizeof(b)), n);
        assert_string_equal(a, b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slashes),     cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_dots),        cmocka_unit_test(test_trailing_slash),
        cmocka_unit_test(test_query_apart), cmocka_unit_test(test_refused_forms),
        cmocka_unit_test(test_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
