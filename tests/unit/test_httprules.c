/* Unit tests for node/http/httprules (a resource's request rules) and the rules' checks in
 * node/records/resource (resource_check, resource_hdr_parse): the prefix strip on segment
 * boundaries, a request and a response head rewritten through http_head_serialize as the
 * proxy does (set replaces every copy in any case, remove drops every copy, Host rewritten),
 * and every refusal: Host removed or set, CR/LF/NUL and other control bytes in values,
 * hop-by-hop and framing headers, what only the proxy says, bad names, duplicates, bad
 * host_rewrite and strip_prefix, rules without a host; the record round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "node/http/httprules.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static void strip(const char *target, const char *prefix, const char *want)
{
    char out[256];
    ssize_t n = httprules_strip_prefix(target, strlen(target), prefix, out, sizeof(out));
    if (n < 0 || (size_t)n != strlen(want) || memcmp(out, want, (size_t)n))
        fail_msg("strip %s of %s: got '%.*s', want '%s'", prefix, target, (int)(n < 0 ? 0 : n), out,
                 want);
}

static void test_strip_prefix(void **state)
{
    (void)state;
    strip("/api/v1/x?q=1", "/api", "/v1/x?q=1");
    strip("/api", "/api", "/");
    strip("/api/", "/api", "/");
    strip("/api?q", "/api", "/?q");
    strip("/api#f", "/api", "/#f");
    strip("/apix/y", "/api", "/apix/y"); /* not a segment boundary */
    strip("/ap", "/api", "/ap");
    strip("/other/api", "/api", "/other/api");
    strip("/a/b/c", "/a/b", "/c");
    strip("/x", "", "/x");
    strip("*", "/api", "*");
    char out[4];
    assert_int_equal(httprules_strip_prefix("/api/abcd", 9, "/api", out, sizeof(out)), -ENOSPC);
    assert_int_equal(httprules_strip_prefix("/api/abc", 8, "/api", out, sizeof(out)), 4);
    assert_int_equal(httprules_strip_prefix("/api", 4, "/api", out, 1), 1); /* "/" fits */
    assert_int_equal(httprules_strip_prefix("/api", 4, "/api", out, 0), -ENOSPC);
}

/* An HTTP resource with the rules of the integration test. */
static void make(resource_t *r)
{
    memset(r, 0, sizeof(*r));
    strcpy(r->name, "app");
    strcpy(r->site, "branch");
    r->ntargets = 1;
    strcpy(r->targets[0], "127.0.0.1:8080");
    strcpy(r->host, "app.test");
    strcpy(r->path_prefix, "/");
    const char *why;
    assert_int_equal(resource_hdr_parse("X-A:  b c \t", 11, &r->req_set[0], &why), 0);
    assert_string_equal(r->req_set[0].name, "X-A");
    assert_string_equal(r->req_set[0].value, "b c");
    r->nreq_set = 1;
    strcpy(r->req_remove[0], "X-B");
    r->nreq_remove = 1;
    strcpy(r->host_rewrite, "internal.lan:8080");
    strcpy(r->strip_prefix, "/api");
    assert_int_equal(resource_hdr_parse("X-Frame-Options: DENY", 21, &r->resp_set[0], &why), 0);
    r->nresp_set = 1;
    strcpy(r->resp_remove[0], "Server");
    r->nresp_remove = 1;
}

static void check_ok(const resource_t *r)
{
    char buf[300];
    const char *why;
    if (resource_check(r, buf, sizeof(buf), &why))
        fail_msg("refused: %s", why);
}

static void test_request_head(void **state)
{
    (void)state;
    resource_t r;
    make(&r);
    check_ok(&r);
    http_header_t hs[] = {
        {"Host", 4, "app.test", 8}, {"x-a", 3, "client", 6}, {"X-B", 3, "drop me", 7},
        {"x-b", 3, "me too", 6},    {"Accept", 6, "*/*", 3}, {"X-A", 3, "again", 5},
    };
    http_head_t h = {.request = true,
                     .method_name = "GET",
                     .target = "/api/v1?q=1",
                     .target_len = 11,
                     .http_major = 1,
                     .http_minor = 1,
                     .headers = hs,
                     .nheaders = sizeof(hs) / sizeof(hs[0]),
                     .host = "app.test",
                     .host_len = 8,
                     .content_length = -1};
    httprules_out_t o;
    httprules_request(&r, &o);
    char tgt[64];
    ssize_t tl = httprules_strip_prefix(h.target, h.target_len, r.strip_prefix, tgt, sizeof(tgt));
    assert_true(tl > 0);
    h.target = tgt;
    h.target_len = (size_t)tl;
    http_head_rewrite_t rw = {.drop = o.drop,
                              .ndrop = o.ndrop,
                              .extra = o.extra,
                              .nextra = o.nextra,
                              .content_length = -1};
    char out[1024];
    ssize_t n = http_head_serialize(&h, &rw, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    const char *want = "GET /v1?q=1 HTTP/1.1\r\n"
                       "Accept: */*\r\n"
                       "Host: internal.lan:8080\r\n"
                       "X-A: b c\r\n"
                       "\r\n";
    if (strcmp(out, want))
        fail_msg("request head:\n%s\nwant:\n%s", out, want);
}

static void test_response_head(void **state)
{
    (void)state;
    resource_t r;
    make(&r);
    http_header_t hs[] = {{"Server", 6, "nginx", 5},
                          {"X-Frame-Options", 15, "ALLOW", 5},
                          {"Content-Type", 12, "text/plain", 10}};
    http_head_t h = {.request = false,
                     .status = 200,
                     .reason = "OK",
                     .reason_len = 2,
                     .http_major = 1,
                     .http_minor = 1,
                     .headers = hs,
                     .nheaders = 3,
                     .content_length = 2};
    httprules_out_t o;
    httprules_response(&r, &o);
    http_head_rewrite_t rw = {.drop = o.drop,
                              .ndrop = o.ndrop,
                              .extra = o.extra,
                              .nextra = o.nextra,
                              .content_length = 2};
    char out[512];
    ssize_t n = http_head_serialize(&h, &rw, out, sizeof(out));
    assert_true(n > 0);
    out[n] = '\0';
    const char *want = "HTTP/1.1 200 OK\r\n"
                       "Content-Type: text/plain\r\n"
                       "X-Frame-Options: DENY\r\n"
                       "Content-Length: 2\r\n"
                       "\r\n";
    if (strcmp(out, want))
        fail_msg("response head:\n%s\nwant:\n%s", out, want);
    /* no rules: nothing dropped, nothing added */
    resource_t plain = r;
    plain.nresp_set = plain.nresp_remove = plain.nreq_set = plain.nreq_remove = 0;
    plain.host_rewrite[0] = plain.strip_prefix[0] = '\0';
    httprules_response(&plain, &o);
    assert_int_equal(o.ndrop + o.nextra, 0);
    httprules_request(&plain, &o);
    assert_int_equal(o.ndrop + o.nextra, 0);
    assert_false(resource_rules_set(&plain));
}

static void refused(resource_t *r, const char *want)
{
    char buf[300];
    const char *why = "";
    if (resource_check(r, buf, sizeof(buf), &why) != -EINVAL || !strstr(why, want))
        fail_msg("want a refusal with '%s', got '%s'", want, why);
    make(r);
}

static void test_refusals(void **state)
{
    (void)state;
    resource_t r;
    const char *why;
    make(&r);
    /* Host: never removed, never set by a header rule (any case, '_' for '-') */
    strcpy(r.req_remove[0], "host");
    refused(&r, "cannot be removed");
    strcpy(r.req_remove[0], "HOST");
    refused(&r, "cannot be removed");
    strcpy(r.req_set[0].name, "Host");
    refused(&r, "use host_rewrite");
    /* smuggling: CR, LF, NUL-free control bytes, DEL, high bytes in values */
    static const char *const bad_values[] = {"a\r\nX-Evil: 1", "a\nb",  "a\rb",
                                             "a\x01",          "a\x7f", "caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
        strcpy(r.req_set[0].value, bad_values[i]);
        refused(&r, "control byte");
        strcpy(r.resp_set[0].value, bad_values[i]);
        refused(&r, "control byte");
    }
    /* hop-by-hop and framing headers, both directions, set and remove */
    static const char *const hop[] = {
        "Transfer-Encoding", "Content-Length", "Connection",          "Keep-Alive",       "TE",
        "Trailer",           "Upgrade",        "Proxy-Authorization", "transfer_encoding"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++) {
        strcpy(r.req_set[0].name, hop[i]);
        refused(&r, "hop-by-hop");
        strcpy(r.req_remove[0], hop[i]);
        refused(&r, "hop-by-hop");
        strcpy(r.resp_set[0].name, hop[i]);
        refused(&r, "hop-by-hop");
        strcpy(r.resp_remove[0], hop[i]);
        refused(&r, "hop-by-hop");
    }
    /* what the proxy alone says, and what it handles */
    static const char *const proxy[] = {"Remote-User",     "remote_user", "X-Popmesh-Identity",
                                        "X-Forwarded-For", "Forwarded",   "X-Real-IP"};
    for (size_t i = 0; i < sizeof(proxy) / sizeof(proxy[0]); i++) {
        strcpy(r.req_set[0].name, proxy[i]);
        refused(&r, "proxy alone");
        strcpy(r.req_remove[0], proxy[i]);
        refused(&r, "proxy alone");
    }
    strcpy(r.req_set[0].name, "Cookie");
    refused(&r, "handled by the proxy");
    strcpy(r.req_remove[0], "Authorization");
    refused(&r, "handled by the proxy");
    strcpy(r.resp_set[0].name, "Set-Cookie");
    refused(&r, "cannot be set");
    strcpy(r.resp_remove[0], "Set-Cookie"); /* removing them is allowed */
    check_ok(&r);
    make(&r);
    /* names: tokens only; a name twice in one direction */
    strcpy(r.req_set[0].name, "X A");
    refused(&r, "not a header name");
    strcpy(r.req_remove[0], "X:B");
    refused(&r, "not a header name");
    strcpy(r.req_remove[0], "x-a");
    refused(&r, "two request rules");
    /* host_rewrite and strip_prefix */
    static const char *const bad_hosts[] = {"Evil.test", "a b", "a\r\nb", "x:0",
                                            "x:65536",   "x:",  ":80",    "x:8a"};
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        strcpy(r.host_rewrite, bad_hosts[i]);
        refused(&r, "host_rewrite");
    }
    static const char *const bad_prefixes[] = {"api", "/", "/api/", "/a b", "/a?b", "/a%2f"};
    for (size_t i = 0; i < sizeof(bad_prefixes) / sizeof(bad_prefixes[0]); i++) {
        strcpy(r.strip_prefix, bad_prefixes[i]);
        refused(&r, "strip_prefix");
    }
    /* rules without a host (TCP) */
    r.host[0] = r.path_prefix[0] = '\0';
    r.tcp_port = 4000;
    refused(&r, "need a host");
    /* resource_hdr_parse */
    resource_hdr_t hd;
    assert_int_equal(resource_hdr_parse("novalue", 7, &hd, &why), -EINVAL);
    assert_int_equal(resource_hdr_parse(": x", 3, &hd, &why), -EINVAL);
    assert_int_equal(resource_hdr_parse("X-Empty:", 8, &hd, &why), 0);
    assert_string_equal(hd.value, "");
    char longv[400];
    memset(longv, 'v', sizeof(longv));
    memcpy(longv, "X:", 2);
    assert_int_equal(resource_hdr_parse(longv, sizeof(longv), &hd, &why), -EINVAL);
}

static void test_record_roundtrip(void **state)
{
    (void)state;
    resource_t r, back;
    make(&r);
    strcpy(r.req_remove[0], "X-BB"); /* four bytes: the record's copy becomes "host" below */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    char buf[300];
    const char *why = "";
    if (resource_parse((uint8_t *)sb.data, sb.size, "app", &back, buf, sizeof(buf), &why))
        fail_msg("refused: %s", why);
    assert_int_equal(back.nreq_set, 1);
    assert_string_equal(back.req_set[0].name, "X-A");
    assert_string_equal(back.req_set[0].value, "b c");
    assert_string_equal(back.req_remove[0], "X-BB");
    assert_string_equal(back.host_rewrite, "internal.lan:8080");
    assert_string_equal(back.strip_prefix, "/api");
    assert_string_equal(back.resp_set[0].value, "DENY");
    assert_string_equal(back.resp_remove[0], "Server");
    /* a replicated record with a rule that removes Host: refused like the command */
    char *at = memmem(sb.data, sb.size, "X-BB", 4);
    assert_non_null(at);
    memcpy(at, "hoST", 4);
    assert_int_equal(
        resource_parse((uint8_t *)sb.data, sb.size, "app", &back, buf, sizeof(buf), &why),
        -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    /* without rules: none of the fields written */
    r.nreq_set = r.nreq_remove = r.nresp_set = r.nresp_remove = 0;
    r.host_rewrite[0] = r.strip_prefix[0] = '\0';
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_null(memmem(sb.data, sb.size, "req_", 4));
    assert_null(memmem(sb.data, sb.size, "resp_", 5));
    assert_null(memmem(sb.data, sb.size, "_rewrite", 8));
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strip_prefix),     cmocka_unit_test(test_request_head),
        cmocka_unit_test(test_response_head),    cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_record_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
