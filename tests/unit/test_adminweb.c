/* The status page's loop-free parts (node/admin/adminweb.h): the form decoder and the bearer
 * token reader on every bad input a browser or script could send (bad and cut escapes, NUL,
 * values one byte too long, look-alike names, spaces and control bytes in a token), the HTML
 * escaper (never half an entity, never past its buffer), the /api/ table, and the pages: the
 * nonce on the inline script and style, every interpolated name escaped, no placeholder left. */
#include "node/admin/adminweb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static bool form(const char *body, const char *name, char *out, size_t cap)
{
    return adminweb_form_get(body, strlen(body), name, out, cap);
}

static void test_form(void **state)
{
    char v[16];
    assert_true(form("username=alice&password=p%40ss+word", "password", v, sizeof(v)));
    assert_string_equal(v, "p@ss word");
    assert_true(form("username=alice&password=x", "username", v, sizeof(v)));
    assert_string_equal(v, "alice");
    assert_true(form("a=1&a=2", "a", v, sizeof(v))); /* the first counts */
    assert_string_equal(v, "1");
    assert_true(form("&&a=&", "a", v, sizeof(v)));
    assert_string_equal(v, "");
    assert_true(form("a=%41%62", "a", v, sizeof(v)));
    assert_string_equal(v, "Ab");
    /* absent, look-alike names, no '=' */
    assert_false(form("", "a", v, sizeof(v)));
    assert_false(form("ab=1", "a", v, sizeof(v)));
    assert_false(form("xa=1", "a", v, sizeof(v)));
    assert_false(form("a", "a", v, sizeof(v)));
    assert_false(form("username", "username", v, sizeof(v)));
    /* bad and cut escapes, NUL */
    assert_false(form("a=%zz", "a", v, sizeof(v)));
    assert_false(form("a=%4", "a", v, sizeof(v)));
    assert_false(form("a=%", "a", v, sizeof(v)));
    assert_false(form("a=x%4&b=1", "a", v, sizeof(v))); /* the escape does not run into b */
    assert_false(form("a=%00", "a", v, sizeof(v)));
    /* exactly full, one byte over */
    assert_true(form("a=123456789012345", "a", v, sizeof(v)));
    assert_false(form("a=1234567890123456", "a", v, sizeof(v)));
    assert_false(form("a=1", "a", v, 0));
    /* the length is the caller's, not the NUL's: a value cut by len */
    assert_true(adminweb_form_get("a=12345", 4, "a", v, sizeof(v)));
    assert_string_equal(v, "12");
    assert_false(adminweb_form_get("a=%41", 4, "a", v, sizeof(v)));
}

static bool bearer(const char *h, char *out, size_t cap)
{
    return adminweb_bearer(h, strlen(h), out, cap);
}

static void test_bearer(void **state)
{
    char t[16];
    assert_true(bearer("Bearer pmk1.ab.cd", t, sizeof(t)));
    assert_string_equal(t, "pmk1.ab.cd");
    assert_true(bearer("bearer x", t, sizeof(t)));
    assert_string_equal(t, "x");
    assert_false(bearer("Bearer ", t, sizeof(t)));
    assert_false(bearer("Bearer", t, sizeof(t)));
    assert_false(bearer("Basic YWxpY2U6eA==", t, sizeof(t)));
    assert_false(bearer("Bearer  x", t, sizeof(t)));     /* two spaces */
    assert_false(bearer("Bearer a b", t, sizeof(t)));    /* a space inside */
    assert_false(bearer("Bearer a\tb", t, sizeof(t)));   /* a control byte */
    assert_false(bearer("Bearer a\xc3\xa9", t, sizeof(t))); /* not ASCII */
    assert_true(bearer("Bearer 123456789012345", t, sizeof(t)));
    assert_false(bearer("Bearer 1234567890123456", t, sizeof(t)));
}

static void test_escape(void **state)
{
    char o[64];
    adminweb_html_escape("<a href=\"x\" onclick='y'>&</a>", o, sizeof(o));
    assert_string_equal(o, "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
    adminweb_html_escape("a\x01\nb\x7f", o, sizeof(o));
    assert_string_equal(o, "ab");
    adminweb_html_escape(NULL, o, sizeof(o));
    assert_string_equal(o, "");
    /* a short buffer: whole entities only, always terminated */
    for (size_t cap = 1; cap < 12; cap++) {
        char s[12];
        memset(s, 'Z', sizeof(s));
        adminweb_html_escape("a<b", s, cap);
        assert_true(strlen(s) < cap);
        assert_true(!strcmp(s, "") || !strcmp(s, "a") || !strcmp(s, "a&lt;") ||
                    !strcmp(s, "a&lt;b"));
        if (cap >= 7)
            assert_string_equal(s, "a&lt;b");
        if (cap <= 5)
            assert_true(strlen(s) <= 1);
    }
}

static void test_api_table(void **state)
{
    const adminweb_api_t *a = adminweb_api_find("/api/members");
    assert_non_null(a);
    assert_string_equal(a->command, "members");
    assert_null(adminweb_api_find("/api/members/"));
    assert_null(adminweb_api_find("/api/"));
    assert_null(adminweb_api_find("/api/config.set"));
    /* every endpoint is /api/ + a word, and maps to a read-only command */
    for (const adminweb_api_t *e = adminweb_apis; e->path; e++) {
        assert_int_equal(strncmp(e->path, "/api/", 5), 0);
        assert_null(strstr(e->command, "add"));
        assert_null(strstr(e->command, "set"));
        assert_null(strstr(e->command, "rm"));
    }
}

static void test_pages(void **state)
{
    const char *nonce = "AAAAAAAAAAAAAAAAAAAAAA==";
    char *p = adminweb_status_page(nonce, "<img src=x onerror=alert(1)>");
    assert_non_null(strstr(p, "<script nonce=\"AAAAAAAAAAAAAAAAAAAAAA==\">"));
    assert_non_null(strstr(p, "<style nonce=\"AAAAAAAAAAAAAAAAAAAAAA==\">"));
    assert_null(strstr(p, "<img"));
    assert_non_null(strstr(p, "&lt;img src=x onerror=alert(1)&gt;"));
    assert_null(strstr(p, "@@"));
    assert_non_null(strstr(p, "var POLL = 2000;"));
    assert_null(strstr(p, "innerHTML")); /* the script writes text only */
    assert_null(strstr(p, "style=\""));  /* no inline style attributes: the CSP forbids them */
    /* exactly one script, one style: nothing else for the CSP to allow */
    assert_null(strstr(strstr(p, "<script") + 1, "<script"));
    assert_null(strstr(strstr(p, "<style") + 1, "<style"));
    free(p);
    p = adminweb_login_page(nonce, "bad \"<b>\"");
    assert_non_null(strstr(p, "bad &quot;&lt;b&gt;&quot;"));
    assert_non_null(strstr(p, "action=\"/login\""));
    assert_null(strstr(p, "<script"));
    free(p);
    p = adminweb_forbidden_page(nonce, "bob'");
    assert_non_null(strstr(p, "bob&#39;"));
    assert_null(strstr(p, "bob'"));
    free(p);
    char csp[256];
    snprintf(csp, sizeof(csp), ADMINWEB_CSP_FMT, nonce, nonce);
    assert_non_null(strstr(csp, "default-src 'none'"));
    assert_non_null(strstr(csp, "script-src 'nonce-AAAAAAAAAAAAAAAAAAAAAA=='"));
    assert_non_null(strstr(csp, "frame-ancestors 'none'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_form),      cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_escape),    cmocka_unit_test(test_api_table),
        cmocka_unit_test(test_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
