/* Unit tests of node/httphdr (header checks and rewrites of the reverse proxy) and of
 * common/logesc (escaping client-controlled text for logs). */
#include "common/logesc.h"
#include "node/http/httphdr.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define S(lit) lit, sizeof(lit) - 1

static void test_names(void **state)
{
    (void)state;
    assert_true(httphdr_name_is(S("Remote_User"), "remote-user"));
    assert_true(httphdr_name_is(S("REMOTE-USER"), "remote-user"));
    assert_false(httphdr_name_is(S("Remote-Users"), "remote-user"));
    static const char *const reserved[] = {
        "Remote-User",     "remote_user",     "Remote-Groups",    "REMOTE_EMAIL",
        "X-Forwarded-For", "x_forwarded_for", "X-Forwarded-Host", "X-Forwarded-Port",
        "Forwarded",       "X-Real-IP",       "x_real_ip",        "X-Client-IP",
        "True-Client-IP",  "X-Original-URL",  "X-Rewrite-Url",    "X-Popmesh-Identity",
        "x_popmesh_identity", "Remote-Name",
    };
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        assert_true(httphdr_reserved_request_name(reserved[i], strlen(reserved[i])));
    static const char *const free_[] = {"Accept",        "Remote", "X-Forwarded", "Forwarded-For",
                                        "Authorization", "Cookie", "X-Real"};
    for (size_t i = 0; i < sizeof(free_) / sizeof(free_[0]); i++)
        assert_false(httphdr_reserved_request_name(free_[i], strlen(free_[i])));
}

static void test_host(void **state)
{
    (void)state;
    static const char *const good[] = {"",           "a",         "a.b.example", "a:80",
                                       "a:65535",    "1.2.3.4:1", "[::1]",       "[::1]:8080",
                                       "x%41y.test", "a-b_c~d"};
    static const char *const bad[] = {"a:80:80", "a:http", "a:",     "a:65536", "a:123456", ":80",
                                      "[::1",    "[]",     "[::1]x", "a b",     "a,b",      "a/b",
                                      "a%4",     "a%zz",   "[::g]",  "a@b",     "a\\b"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(httphdr_host_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (httphdr_host_valid(bad[i], strlen(bad[i])))
            fail_msg("Host '%s' accepted", bad[i]);
    }
}

static void test_redirect(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out; /* out NULL: refused */
    } cases[] = {
        {"/", "/"},
        {"/after", "/after"},
        {"/a%20b/c?x=%2f", "/a%20b/c?x=%2F"},
        {"/a b", "/a%20b"},
        {"/\xc3\xa9t\xc3\xa9", "/%C3%A9t%C3%A9"},
        {"/x?q=\"<>", "/x?q=%22%3C%3E"},
        {"/a/%2F/b", "/a/%2F/b"}, /* an encoded slash inside the path is harmless */
        {"/\t/evil.example/", NULL},
        {"/\n/evil", NULL},
        {"/\x7f", NULL},
        {"//evil.example/", NULL},
        {"/\\evil.example", NULL},
        {"/a\\b", NULL},
        {"/%2f/evil.example", NULL},
        {"/%2F%2Fevil", NULL},
        {"/%5cevil", NULL},
        {"/%09/evil", NULL},
        {"/%0d%0aSet-Cookie:x", NULL},
        {"/x?a=%00", NULL},
        {"/%", NULL},
        {"/%zz", NULL},
        {"https://evil.example/", NULL},
        {"javascript:alert(1)", NULL},
        {"evil.example", NULL},
        {"", NULL},
    };
    char out[256];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = httphdr_redirect_target(cases[i].in, strlen(cases[i].in), out, sizeof(out));
        if (!cases[i].out) {
            if (rc != -EINVAL)
                fail_msg("rd '%s' not refused (%d, '%s')", cases[i].in, rc, out);
        } else {
            if (rc != 0 || strcmp(out, cases[i].out) != 0)
                fail_msg("rd '%s': %d '%s', expected '%s'", cases[i].in, rc, out, cases[i].out);
        }
    }
    assert_int_equal(httphdr_redirect_target(S("/abcdef"), out, 4), -ENOSPC);
    assert_int_equal(httphdr_redirect_target(S("/ab"), out, 4), 0);
}

static http_head_t head_of(const http_header_t *hs, size_t n, const char *host)
{
    http_head_t h = {.request = true, .headers = hs, .nheaders = n};
    if (host) {
        h.host = host;
        h.host_len = strlen(host);
    }
    return h;
}

#define HDR(n, v)                                                                                  \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static void test_cross_site(void **state)
{
    (void)state;
    static const struct {
        http_header_t h[2];
        size_t n;
        bool cross;
    } cases[] = {
        {{{0}}, 0, false},
        {{HDR("Sec-Fetch-Site", "same-origin")}, 1, false},
        {{HDR("Sec-Fetch-Site", "none")}, 1, false},
        {{HDR("Sec-Fetch-Site", "same-site")}, 1, true},
        {{HDR("Sec-Fetch-Site", "cross-site")}, 1, true},
        {{HDR("Origin", "http://app.test:8080")}, 1, false},
        {{HDR("Origin", "https://APP.test:8080")}, 1, false},
        {{HDR("Origin", "http://evil.test")}, 1, true},
        {{HDR("Origin", "null")}, 1, true},
        {{HDR("Origin", "http://app.test:8080/x")}, 1, true},
        {{HDR("Origin", "http://app.test:8080.evil")}, 1, true},
        {{HDR("Sec-Fetch-Site", "same-origin"), HDR("Origin", "null")}, 2, false},
        {{HDR("Origin", "http://app.test:8080"), HDR("Origin", "http://evil")}, 2, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        http_head_t h = head_of(cases[i].h, cases[i].n, "app.test:8080");
        if (httphdr_cross_site(&h) != cases[i].cross)
            fail_msg("case %zu: cross-site %d", i, !cases[i].cross);
    }
    http_header_t o80 = HDR("Origin", "http://app.test");
    http_head_t h = head_of(&o80, 1, "app.test:80");
    assert_false(httphdr_cross_site(&h));
    http_header_t o443 = HDR("Origin", "https://app.test:443");
    h = head_of(&o443, 1, "app.test");
    assert_false(httphdr_cross_site(&h));
}

static void test_cookies(void **state)
{
    (void)state;
    assert_true(httphdr_set_cookie_is(S("popmesh_session=x; Path=/"), "popmesh_session"));
    assert_true(httphdr_set_cookie_is(S("  POPMESH_SESSION =x"), "popmesh_session"));
    assert_true(httphdr_set_cookie_is(S("popmesh_session"), "popmesh_session"));
    assert_true(httphdr_set_cookie_is(S("popmesh_session; Domain=a"), "popmesh_session"));
    assert_false(httphdr_set_cookie_is(S("app=popmesh_session"), "popmesh_session"));
    assert_false(httphdr_set_cookie_is(S("popmesh_session2=x"), "popmesh_session"));
    assert_false(httphdr_set_cookie_is(S(""), "popmesh_session"));

    http_header_t hs[] = {HDR("Cookie", "a=1; popmesh_session=S1;b=2"),
                          HDR("Cookie", "popmesh_session=S1; c=3")};
    http_head_t h = head_of(hs, 2, "h");
    const char *v;
    size_t vl;
    assert_int_equal(httphdr_cookie_find(&h, "popmesh_session", &v, &vl), 1);
    assert_int_equal(vl, 2);
    assert_memory_equal(v, "S1", 2);
    char out[64];
    ssize_t n = httphdr_cookie_without(&h, "popmesh_session", out, sizeof(out));
    assert_int_equal(n, strlen("a=1; b=2; c=3"));
    assert_memory_equal(out, "a=1; b=2; c=3", (size_t)n);
    assert_int_equal(httphdr_cookie_without(&h, "popmesh_session", out, 5), -ENOSPC);

    http_header_t two[] = {HDR("Cookie", "popmesh_session=S1; popmesh_session=S2")};
    h = head_of(two, 1, "h");
    assert_int_equal(httphdr_cookie_find(&h, "popmesh_session", &v, &vl), 2);
    http_header_t none[] = {HDR("Cookie", "popmesh_session_x=1; x=popmesh_session")};
    h = head_of(none, 1, "h");
    assert_int_equal(httphdr_cookie_find(&h, "popmesh_session", &v, &vl), 0);
    assert_int_equal(httphdr_cookie_without(&h, "popmesh_session", out, sizeof(out)),
                     strlen("popmesh_session_x=1; x=popmesh_session"));
}

static void test_apikey(void **state)
{
    (void)state;
    assert_true(httphdr_is_apikey_auth(S("Bearer pmk1.0123456789abcdef.x")));
    assert_true(httphdr_is_apikey_auth(S("bearer   pmk1.x")));
    assert_false(httphdr_is_apikey_auth(S("Bearer other")));
    assert_false(httphdr_is_apikey_auth(S("Basic cG1rMS4=")));
    assert_false(httphdr_is_apikey_auth(S("Bearerpmk1.x")));
}

static void test_websocket(void **state)
{
    (void)state;
    unsigned char d[20];
    httphdr_sha1(S("abc"), d);
    static const unsigned char abc[20] = {0xa9, 0x99, 0x3e, 0x36, 0x47, 0x06, 0x81,
                                          0x6a, 0xba, 0x3e, 0x25, 0x71, 0x78, 0x50,
                                          0xc2, 0x6c, 0x9c, 0xd0, 0xd8, 0x9d};
    assert_memory_equal(d, abc, 20);
    /* 56..64-byte tails take a second padding block. */
    httphdr_sha1(S("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"), d);
    static const unsigned char l56[20] = {0x84, 0x98, 0x3e, 0x44, 0x1c, 0x3b, 0xd2,
                                          0x6e, 0xba, 0xae, 0x4a, 0xa1, 0xf9, 0x51,
                                          0x29, 0xe5, 0xe5, 0x46, 0x70, 0xf1};
    assert_memory_equal(d, l56, 20);

    /* RFC 6455 section 1.3. */
    const char *key = "dGhlIHNhbXBsZSBub25jZQ==";
    char acc[HTTPHDR_WS_ACCEPT_LEN + 1];
    httphdr_ws_accept(key, strlen(key), acc);
    assert_string_equal(acc, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_true(httphdr_ws_key_valid(key, strlen(key)));
    assert_false(httphdr_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZR==")));
    assert_false(httphdr_ws_key_valid(S("short==")));
    assert_false(httphdr_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQ=x")));

    http_header_t ok[] = {HDR("Upgrade", "websocket"), HDR("Connection", "keep-alive, Upgrade"),
                          HDR("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")};
    http_head_t h = {.status = 101, .headers = ok, .nheaders = 3};
    assert_null(httphdr_ws_check_101(&h, key, strlen(key)));
    assert_non_null(httphdr_ws_check_101(&h, S("AAAAAAAAAAAAAAAAAAAAAA==")));
    h.status = 200;
    assert_non_null(httphdr_ws_check_101(&h, key, strlen(key)));
    http_header_t h2c[] = {HDR("Upgrade", "h2c"), HDR("Connection", "Upgrade"),
                           HDR("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")};
    h = (http_head_t){.status = 101, .headers = h2c, .nheaders = 3};
    assert_non_null(httphdr_ws_check_101(&h, key, strlen(key)));
    http_header_t noconn[] = {HDR("Upgrade", "websocket"),
                              HDR("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")};
    h = (http_head_t){.status = 101, .headers = noconn, .nheaders = 2};
    assert_non_null(httphdr_ws_check_101(&h, key, strlen(key)));
    http_header_t twoacc[] = {HDR("Upgrade", "websocket"), HDR("Connection", "upgrade"),
                              HDR("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
                              HDR("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")};
    h = (http_head_t){.status = 101, .headers = twoacc, .nheaders = 4};
    assert_non_null(httphdr_ws_check_101(&h, key, strlen(key)));
}

static void test_log_esc(void **state)
{
    (void)state;
    char out[64];
    assert_string_equal(log_esc(out, sizeof(out), S("alice")), "alice");
    assert_string_equal(log_esc(out, sizeof(out), S("a\nFORGED\r\x1b[2J\\\x7f\xc3")),
                        "a\\x0aFORGED\\x0d\\x1b[2J\\x5c\\x7f\\xc3");
    assert_string_equal(log_escs(out, sizeof(out), NULL), "");
    char small[10];
    assert_string_equal(log_esc(small, sizeof(small), S("abcdefghijkl")), "abcdef...");
    assert_string_equal(log_esc(small, sizeof(small), S("\n\n\n")), "\\x0a...");
    assert_string_equal(log_esc(small, sizeof(small), S("abcdefghi")), "abcdefghi");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),     cmocka_unit_test(test_host),
        cmocka_unit_test(test_redirect),  cmocka_unit_test(test_cross_site),
        cmocka_unit_test(test_cookies),   cmocka_unit_test(test_apikey),
        cmocka_unit_test(test_websocket), cmocka_unit_test(test_log_esc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
