/* Unit tests of node/httpmsg: the HTTP/1.1 readers of the reverse proxy.
 *
 * Table-driven: each case is raw bytes -> the status of the refusal, or the log of callbacks
 * (heads with their parsed fields, body bytes, ends) and how many bytes were consumed. Every
 * case is also fed split at every byte boundary and one byte at a time, and must give the same
 * result: a reader fed by a socket sees arbitrary splits. */
#include "node/http/httpmsg.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- a recorder of callbacks --------------------------------------------------------------- */

struct rec {
    char log[8192];
    size_t len;
    bool in_body;
    int done_rc;        /* what on_done returns */
    int head_rc;        /* what on_head returns */
    int body_rc;        /* what on_body returns */
    uint64_t body_seen; /* bytes */
};

static void logf_(struct rec *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(c->log + c->len, sizeof(c->log) - c->len, fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(c->log) - c->len);
    c->len += (size_t)n;
}

static int on_head(void *ctx, const http_head_t *h)
{
    struct rec *c = ctx;

    c->in_body = false;
    if (h->request)
        logf_(c, "[%s %.*s %u.%u host=%.*s", h->method_name, (int)h->target_len, h->target,
              h->http_major, h->http_minor, h->host ? (int)h->host_len : 1,
              h->host ? h->host : "-");
    else
        logf_(c, "[%d %.*s %u.%u", h->status, (int)h->reason_len, h->reason, h->http_major,
              h->http_minor);
    logf_(c, " n=%zu ka=%d cl=%lld ch=%d", h->nheaders, h->keep_alive, (long long)h->content_length,
          h->chunked);
    if (h->upgrade)
        logf_(c, " up=%.*s", (int)h->upgrade_proto_len, h->upgrade_proto);
    logf_(c, "]");
    return c->head_rc;
}

static int on_body(void *ctx, const uint8_t *data, size_t len)
{
    struct rec *c = ctx;

    if (!c->in_body)
        logf_(c, "B:");
    c->in_body = true;
    c->body_seen += len;
    logf_(c, "%.*s", (int)len, (const char *)data);
    return c->body_rc;
}

static int on_done(void *ctx)
{
    struct rec *c = ctx;

    c->in_body = false;
    logf_(c, "|D|");
    return c->done_rc;
}

/* ---- running a case ------------------------------------------------------------------------ */

struct hcase {
    const char *name;
    enum http_parser_type type;
    const char *raw;
    size_t rawlen;
    int status;        /* expected refusal, 0 = accepted */
    const char *log;   /* expected callbacks (accepted cases) */
    long consumed;     /* expected bytes consumed, -1 = all */
    bool eof;          /* call http_reader_eof after the bytes */
    bool head_request; /* response readers: the request was HEAD */
    uint64_t max_body; /* bytes, 0 = unlimited */
};

#define R(s) .raw = s, .rawlen = sizeof(s) - 1

struct result {
    struct rec rec;
    long consumed;
    int status;
    const char *reason;
};

static http_reader_t *make(const struct hcase *tc, struct rec *rec)
{
    http_limits_t lim;
    http_limits_defaults(&lim);
    lim.max_body_bytes = tc->max_body;
    http_reader_cbs_t cbs = {
        .ctx = rec, .on_head = on_head, .on_body = on_body, .on_done = on_done};
    http_reader_t *r = http_reader_new(tc->type, &lim, &cbs);
    assert_non_null(r);
    http_reader_expect_head(r, tc->head_request);
    return r;
}

/* Feeds tc->raw in pieces of at most `piece` bytes after a first piece of `first` bytes
 * (first 0: none). Stops at the first refusal or short count. */
static void run(const struct hcase *tc, size_t first, size_t piece, struct result *res)
{
    memset(res, 0, sizeof(*res));
    http_reader_t *r = make(tc, &res->rec);
    const uint8_t *d = (const uint8_t *)tc->raw;
    size_t off = 0;
    bool failed = false;

    while (off < tc->rawlen) {
        size_t n = tc->rawlen - off;
        if (off == 0 && first)
            n = first;
        else if (n > piece)
            n = piece;
        ssize_t got = http_reader_feed(r, d + off, n);
        if (got < 0) {
            failed = true;
            break;
        }
        assert_true((size_t)got <= n);
        off += (size_t)got;
        if ((size_t)got < n)
            break;
    }
    if (!failed && tc->eof && http_reader_eof(r) < 0)
        failed = true;
    res->consumed = failed ? -2 : (long)off;
    res->status = http_reader_error(r, &res->reason);
    if (failed)
        assert_int_not_equal(res->status, 0);
    else
        assert_int_equal(res->status, 0);
    http_reader_destroy(&r);
    assert_null(r);
}

static void check_same(const struct hcase *tc, const struct result *a, const struct result *b,
                       size_t split)
{
    if (a->status != b->status || a->consumed != b->consumed || strcmp(a->rec.log, b->rec.log)) {
        print_error("case %s, split at %zu: status %d/%d consumed %ld/%ld\n  %s\n  %s\n", tc->name,
                    split, a->status, b->status, a->consumed, b->consumed, a->rec.log, b->rec.log);
        fail();
    }
}

static void run_case(const struct hcase *tc)
{
    struct result whole, part;

    run(tc, 0, SIZE_MAX, &whole);
    if (whole.status != tc->status) {
        print_error("case %s: status %d (%s), expected %d\n  log %s\n", tc->name, whole.status,
                    whole.reason, tc->status, whole.rec.log);
        fail();
    }
    if (tc->status == 0) {
        if (strcmp(whole.rec.log, tc->log) != 0) {
            print_error("case %s:\n  got      %s\n  expected %s\n", tc->name, whole.rec.log,
                        tc->log);
            fail();
        }
        long want = tc->consumed == 0 ? (long)tc->rawlen : tc->consumed;
        if (whole.consumed != want) {
            print_error("case %s: consumed %ld, expected %ld\n", tc->name, whole.consumed, want);
            fail();
        }
    }
    for (size_t split = 1; split < tc->rawlen; split++) {
        run(tc, split, SIZE_MAX, &part);
        check_same(tc, &whole, &part, split);
    }
    run(tc, 0, 1, &part);
    check_same(tc, &whole, &part, 0);
}

/* ---- requests ------------------------------------------------------------------------------ */

static const struct hcase request_cases[] = {
    {.name = "get",
     .type = HTTP_REQUEST,
     R("GET /a?b=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"),
     .log = "[GET /a?b=1 1.1 host=example.com n=2 ka=1 cl=-1 ch=0]|D|"},
    {.name = "post content-length",
     .type = HTTP_REQUEST,
     R("POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"),
     .log = "[POST /p 1.1 host=h n=2 ka=1 cl=5 ch=0]B:hello|D|"},
    {.name = "chunked with extension and trailer",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
     .log = "[POST / 1.1 host=h n=2 ka=1 cl=-1 ch=1]B:hello world|D|"},
    {.name = "chunked: case, leading OWS",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  Chunked\r\n\r\n"
       "3\r\nabc\r\n0\r\n\r\n"),
     .log = "[POST / 1.1 host=h n=2 ka=1 cl=-1 ch=1]B:abc|D|"},
    {.name = "pipelined, last one closes",
     .type = HTTP_REQUEST,
     R("GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
       "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
       "GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
       "GET /4 HTTP/1.1\r\nHost: h\r\n\r\n"),
     .log =
         "[GET /1 1.1 host=h n=1 ka=1 cl=-1 ch=0]|D|[POST /2 1.1 host=h n=2 ka=1 cl=3 ch=0]B:abc|D|"
         "[GET /3 1.1 host=h n=2 ka=0 cl=-1 ch=0]|D|",
     .consumed = 126},
    {.name = "HTTP/1.0 without Host",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.0\r\n\r\n"),
     .log = "[GET / 1.0 host=- n=0 ka=0 cl=-1 ch=0]|D|"},
    {.name = "HTTP/1.0 keep-alive",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /x HTTP/1.0\r\n\r\n"),
     .log = "[GET / 1.0 host=- n=1 ka=1 cl=-1 ch=0]|D|[GET /x 1.0 host=- n=0 ka=0 cl=-1 ch=0]|D|"},
    {.name = "blank lines before the request",
     .type = HTTP_REQUEST,
     R("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"),
     .log = "[GET / 1.1 host=h n=1 ka=1 cl=-1 ch=0]|D|"},
    {.name = "OPTIONS *",
     .type = HTTP_REQUEST,
     R("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"),
     .log = "[OPTIONS * 1.1 host=h n=1 ka=1 cl=-1 ch=0]|D|"},
    {.name = "websocket upgrade stops at the head",
     .type = HTTP_REQUEST,
     R("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
       "Upgrade: websocket\r\nSec-WebSocket-Key: x\r\n\r\n\x81\x05hello"),
     .log = "[GET /ws 1.1 host=h n=4 ka=1 cl=-1 ch=0 up=websocket]|D|",
     .consumed = 104},
    {.name = "Upgrade without Connection: upgrade is no upgrade",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n"),
     .log = "[GET / 1.1 host=h n=2 ka=1 cl=-1 ch=0]|D|"},
    {.name = "obs-text and empty value",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: h\r\nX-A:\r\nX-B: \xe9t\xe9\r\n\r\n"),
     .log = "[GET / 1.1 host=h n=3 ka=1 cl=-1 ch=0]|D|"},
    {.name = "Content-Length: 0",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"),
     .log = "[POST / 1.1 host=h n=2 ka=1 cl=0 ch=0]|D|"},
    {.name = "body exactly at the limit",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: "
       "chunked\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"),
     .log = "[POST / 1.1 host=h n=2 ka=1 cl=-1 ch=1]B:abcd|D|",
     .max_body = 4},

    /* Smuggling and ambiguity: 400. */
    {.name = "CL and TE",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .status = 400},
    {.name = "TE and CL",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
     .status = 400},
    {.name = "duplicate CL, equal values",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
     .status = 400},
    {.name = "CL list",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc"),
     .status = 400},
    {.name = "CL sign",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc"),
     .status = 400},
    {.name = "CL hex",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x3\r\n\r\nabc"),
     .status = 400},
    {.name = "CL empty",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"),
     .status = 400},
    {.name = "CL inner space",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n"),
     .status = 400},
    {.name = "CL overflow",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n"),
     .status = 400},
    {.name = "TE list",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n"),
     .status = 400},
    {.name = "TE gzip, chunked",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
     .status = 400},
    {.name = "TE xchunked",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n"),
     .status = 400},
    {.name = "TE identity",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n"),
     .status = 400},
    {.name = "TE with trailing space",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n"),
     .status = 400},
    {.name = "a name starting with Transfer-Encoding",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding2: chunked\r\n\r\n"),
     .status = 400},
    {.name = "TE twice",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "chunked\r\n\r\n"),
     .status = 400},
    {.name = "TE with vertical tab",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x0b\r\n\r\n"),
     .status = 400},
    {.name = "TE in HTTP/1.0",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
     .status = 400},
    {.name = "TE name with space",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n"),
     .status = 400},
    /* The chunk framing is read strictly (libhttp-parser, not built strict, is lenient). */
    {.name = "chunk data not followed by CRLF",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n"),
     .status = 400},
    {.name = "space after a chunk size",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3 \r\nabc\r\n0\r\n\r\n"),
     .status = 400},
    {.name = "bare LF after a chunk size",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"),
     .status = 400},
    {.name = "bare LF after chunk data",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n"),
     .status = 400},
    {.name = "bare LF in the last chunk",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\n\r\n"),
     .status = 400},
    {.name = "control byte in a chunk extension",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;a\x01\r\nabc\r\n"),
     .status = 400},
    {.name = "obs-fold in a trailer",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: a\r\n b\r\n\r\n"),
     .status = 400},
    {.name = "chunked then a pipelined request",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n"
       "GET /n HTTP/1.1\r\nHost: h\r\n\r\n"),
     .log =
         "[POST / 1.1 host=h n=2 ka=1 cl=-1 ch=1]B:a|D|[GET /n 1.1 host=h n=1 ka=1 cl=-1 ch=0]|D|"},
    {.name = "Host with two ports",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n"),
     .status = 400},
    {.name = "Host with a non-numeric port",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: a:http\r\n\r\n"),
     .status = 400},
    {.name = "Host with a port over 65535",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n"),
     .status = 400},
    {.name = "Host IPv6 literal with port",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"),
     .log = "[GET / 1.1 host=[::1]:8080 n=1 ka=1 cl=-1 ch=0]|D|"},
    {.name = "chunk size not hex",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"),
     .status = 400},
    {.name = "chunk size overflow",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
       "fffffffffffffffff1\r\nab\r\n"),
     .status = 400},
    {.name = "chunk size sign",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n"),
     .status = 400},
    {.name = "obs-fold",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n"),
     .status = 400},
    {.name = "obs-fold with tab",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n"),
     .status = 400},
    {.name = "whitespace before the first header",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\n Host: h\r\n\r\n"),
     .status = 400},
    {.name = "NUL in a value",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\0b\r\n\r\n"),
     .status = 400},
    {.name = "NUL in the target",
     .type = HTTP_REQUEST,
     R("GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n"),
     .status = 400},
    {.name = "bare CR in a value",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n"),
     .status = 400},
    {.name = "bare CR as a line end",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\rHost: h\r\n\r\n"),
     .status = 400},
    {.name = "space before the colon",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost : h\r\n\r\n"),
     .status = 400},
    {.name = "HTTP/1.1 without Host",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nX-A: a\r\n\r\n"),
     .status = 400},
    {.name = "two Hosts",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
     .status = 400},
    {.name = "two Hosts, equal",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
     .status = 400},
    {.name = "Host list",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"),
     .status = 400},
    {.name = "absolute-form target",
     .type = HTTP_REQUEST,
     R("GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n"),
     .status = 400},
    {.name = "garbage",
     .type = HTTP_REQUEST,
     R("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
     .status = 400},

    /* Versions and methods. */
    {.name = "HTTP/2.0",
     .type = HTTP_REQUEST,
     R("GET / HTTP/2.0\r\nHost: h\r\n\r\n"),
     .status = 505},
    {.name = "HTTP/1.2",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.2\r\nHost: h\r\n\r\n"),
     .status = 505},
    {.name = "HTTP/0.9", .type = HTTP_REQUEST, R("GET /\r\n\r\n"), .status = 505},
    {.name = "unknown method",
     .type = HTTP_REQUEST,
     R("BREW / HTTP/1.1\r\nHost: h\r\n\r\n"),
     .status = 501},
    {.name = "CONNECT",
     .type = HTTP_REQUEST,
     R("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n"),
     .status = 501},

    /* Sizes. */
    {.name = "CL over the body limit",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n"),
     .status = 413,
     .max_body = 10},
    {.name = "chunked over the body limit",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n"),
     .status = 413,
     .max_body = 4},
    {.name = "truncated body at EOF",
     .type = HTTP_REQUEST,
     R("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel"),
     .status = 400,
     .eof = true},
    {.name = "truncated head at EOF",
     .type = HTTP_REQUEST,
     R("GET / HTTP/1.1\r\nHost: h\r\n"),
     .status = 400,
     .eof = true},
};

static void test_requests(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(request_cases) / sizeof(request_cases[0]); i++)
        run_case(&request_cases[i]);
}

/* ---- responses ----------------------------------------------------------------------------- */

static const struct hcase response_cases[] = {
    {.name = "200 with CL",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"),
     .log = "[200 OK 1.1 n=1 ka=1 cl=2 ch=0]B:hi|D|"},
    {.name = "chunked",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
     .log = "[200 OK 1.1 n=1 ka=1 cl=-1 ch=1]B:hi|D|"},
    {.name = "body to EOF",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\n\r\nall of it"),
     .log = "[200 OK 1.1 n=0 ka=0 cl=-1 ch=0]B:all of it|D|",
     .eof = true},
    {.name = "HTTP/1.0 body to EOF",
     .type = HTTP_RESPONSE,
     R("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nab"),
     .log = "[200 OK 1.0 n=1 ka=0 cl=-1 ch=0]B:ab|D|",
     .eof = true},
    {.name = "100 Continue then 200",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
     .log = "[100 Continue 1.1 n=0 ka=1 cl=-1 ch=0][200 OK 1.1 n=1 ka=1 cl=1 ch=0]B:x|D|"},
    {.name = "103 with CL is still bodiless",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\nContent-Length: 5\r\n\r\n"
       "HTTP/1.1 204 No Content\r\n\r\n"),
     .log = "[103 Early Hints 1.1 n=2 ka=1 cl=5 ch=0][204 No Content 1.1 n=0 ka=1 cl=-1 ch=0]|D|"},
    {.name = "204 then 304 with CL then 200",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"
       "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"),
     .log =
         "[204 No Content 1.1 n=0 ka=1 cl=-1 ch=0]|D|[304 Not Modified 1.1 n=1 ka=1 cl=10 ch=0]|D|"
         "[200 OK 1.1 n=1 ka=1 cl=1 ch=0]B:z|D|"},
    {.name = "response to HEAD",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: "
       "0\r\n\r\n"),
     .log = "[200 OK 1.1 n=1 ka=1 cl=100 ch=0]|D|[200 OK 1.1 n=1 ka=1 cl=0 ch=0]|D|",
     .head_request = true},
    {.name = "101 switching protocols",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
       "\x81\x00"),
     .log = "[101 Switching Protocols 1.1 n=2 ka=1 cl=-1 ch=0 up=websocket]|D|",
     .consumed = 77},
    {.name = "empty reason",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n"),
     .log = "[404  1.1 n=1 ka=1 cl=0 ch=0]|D|"},
    {.name = "Connection: close stops",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nxHTTP/1.1 200 OK\r\n"),
     .log = "[200 OK 1.1 n=2 ka=0 cl=1 ch=0]B:x|D|",
     .consumed = 58},
    {.name = "response CL and TE",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"),
     .status = 400},
    {.name = "response TE gzip",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"),
     .status = 400},
    {.name = "response HTTP/2", .type = HTTP_RESPONSE, R("HTTP/2.0 200 OK\r\n\r\n"), .status = 505},
    {.name = "101 without upgrade headers",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 101 Switching\r\n\r\n"),
     .status = 400},
    {.name = "response obs-fold",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"),
     .status = 400},
    {.name = "response truncated",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"),
     .status = 400,
     .eof = true},
    {.name = "response over the body limit",
     .type = HTTP_RESPONSE,
     R("HTTP/1.1 200 OK\r\n\r\nabcdef"),
     .status = 413,
     .eof = true,
     .max_body = 5},
};

static void test_responses(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(response_cases) / sizeof(response_cases[0]); i++)
        run_case(&response_cases[i]);
}

/* ---- limits on the head -------------------------------------------------------------------- */

static char *build(size_t *len, size_t nheaders, size_t value_len)
{
    size_t cap = 64 + nheaders * (value_len + 16);
    char *b = malloc(cap);
    size_t n = (size_t)snprintf(b, cap, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (size_t i = 0; i < nheaders; i++) {
        n += (size_t)snprintf(b + n, cap - n, "X-%zu: ", i);
        memset(b + n, 'v', value_len);
        n += value_len;
        memcpy(b + n, "\r\n", 2);
        n += 2;
    }
    memcpy(b + n, "\r\n", 2);
    *len = n + 2;
    return b;
}

static int feed_all(http_reader_t *r, const char *b, size_t len, size_t piece, size_t *fed)
{
    *fed = 0;
    while (*fed < len) {
        size_t n = len - *fed < piece ? len - *fed : piece;
        ssize_t got = http_reader_feed(r, (const uint8_t *)b + *fed, n);
        if (got < 0)
            return http_reader_error(r, NULL);
        *fed += (size_t)got;
    }
    return 0;
}

static void test_head_limits(void **state)
{
    (void)state;
    struct rec rec = {0};
    http_reader_cbs_t cbs = {.ctx = &rec, .on_head = on_head, .on_done = on_done};
    size_t len, fed;
    char *b;

    /* 99 + Host = 100 headers: accepted; 101: 431. */
    http_reader_t *r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    b = build(&len, 99, 4);
    assert_int_equal(feed_all(r, b, len, len, &fed), 0);
    assert_non_null(strstr(rec.log, "n=100"));
    free(b);
    http_reader_destroy(&r);

    r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    b = build(&len, 100, 4);
    assert_int_equal(feed_all(r, b, len, len, &fed), 431);
    free(b);
    http_reader_destroy(&r);

    /* A head of exactly 16384 bytes is accepted; with one blank line before it (those count
     * too) it is 431. */
    b = build(&len, 1, 16384 - 34);
    assert_int_equal(len, 16384);
    r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    assert_int_equal(feed_all(r, b, len, 1000, &fed), 0);
    assert_int_equal(fed, 16384);
    http_reader_destroy(&r);
    r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    assert_int_equal(http_reader_feed(r, (const uint8_t *)"\n", 1), 1);
    assert_int_equal(feed_all(r, b, len, 1000, &fed), 431);
    http_reader_destroy(&r);
    free(b);

    /* A 1 MiB header line is refused once max_header_bytes are seen, not at its end. */
    size_t big = 1u << 20;
    b = malloc(big);
    memcpy(b, "GET / HTTP/1.1\r\nX-Big: ", 23);
    memset(b + 23, 'a', big - 23);
    r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    size_t off = 0;
    ssize_t got = 0;
    while (off < big && (got = http_reader_feed(r, (const uint8_t *)b + off, 4096)) > 0)
        off += (size_t)got;
    assert_int_equal(got, -1);
    assert_true(off <= 16384);
    const char *why;
    assert_int_equal(http_reader_error(r, &why), 431);
    assert_non_null(why);
    /* Refusals stick. */
    assert_int_equal(http_reader_feed(r, (const uint8_t *)"GET", 3), -1);
    assert_int_equal(http_reader_eof(r), -1);
    http_reader_destroy(&r);
    free(b);

    /* Trailers are bounded too. */
    r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    const char *head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n";
    assert_int_equal(http_reader_feed(r, (const uint8_t *)head, strlen(head)), strlen(head));
    char line[1024];
    memset(line, 'a', sizeof(line));
    memcpy(line, "X: ", 3);
    memcpy(line + sizeof(line) - 2, "\r\n", 2);
    got = 0;
    for (int i = 0; i < 40 && got >= 0; i++)
        got = http_reader_feed(r, (const uint8_t *)line, sizeof(line));
    assert_int_equal(got, -1);
    assert_int_equal(http_reader_error(r, NULL), 431);
    http_reader_destroy(&r);
}

static void test_new_bad_limits(void **state)
{
    (void)state;
    http_limits_t lim;
    http_limits_defaults(&lim);
    assert_int_equal(lim.max_header_bytes, 16384);
    assert_int_equal(lim.max_headers, 100);
    assert_int_equal(lim.max_body_bytes, 0);
    lim.max_headers = 0;
    errno = 0;
    assert_null(http_reader_new(HTTP_REQUEST, &lim, NULL));
    assert_int_equal(errno, EINVAL);
    http_limits_defaults(&lim);
    lim.max_header_bytes = HTTP_LIMIT_MAX_HEADER_BYTES + 1;
    assert_null(http_reader_new(HTTP_REQUEST, &lim, NULL));
    assert_null(http_reader_new(HTTP_BOTH, NULL, NULL));
    http_reader_destroy(NULL);
    http_reader_t *r = http_reader_new(HTTP_RESPONSE, NULL, NULL); /* no callbacks: fine */
    const char *m = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx";
    assert_int_equal(http_reader_feed(r, (const uint8_t *)m, strlen(m)), strlen(m));
    assert_int_equal(http_reader_eof(r), 0);
    http_reader_destroy(&r);
}

/* ---- stopping and aborting ----------------------------------------------------------------- */

static void test_stop_after_done(void **state)
{
    (void)state;
    struct rec rec = {.done_rc = 1};
    http_reader_cbs_t cbs = {
        .ctx = &rec, .on_head = on_head, .on_body = on_body, .on_done = on_done};
    http_reader_t *r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    const char *m = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    size_t one = strlen(m) / 2;

    assert_false(http_reader_in_message(r));
    assert_int_equal(http_reader_feed(r, (const uint8_t *)m, strlen(m)), one);
    assert_string_equal(rec.log, "[GET /1 1.1 host=h n=1 ka=1 cl=-1 ch=0]|D|");
    assert_false(http_reader_in_message(r));
    assert_int_equal(http_reader_feed(r, (const uint8_t *)m + one, 5), 5);
    assert_true(http_reader_in_message(r));
    assert_int_equal(http_reader_feed(r, (const uint8_t *)m + one + 5, one - 5), one - 5);
    assert_non_null(strstr(rec.log, "GET /2"));
    assert_int_equal(http_reader_eof(r), 0);
    http_reader_destroy(&r);
}

static void test_callback_aborts(void **state)
{
    (void)state;
    struct rec rec = {.body_rc = -1};
    http_reader_cbs_t cbs = {
        .ctx = &rec, .on_head = on_head, .on_body = on_body, .on_done = on_done};
    http_reader_t *r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    const char *m = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
    assert_int_equal(http_reader_feed(r, (const uint8_t *)m, strlen(m)), -1);
    assert_int_equal(http_reader_error(r, NULL), 500);
    http_reader_destroy(&r);

    memset(&rec, 0, sizeof(rec));
    rec.head_rc = -1;
    r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    assert_int_equal(http_reader_feed(r, (const uint8_t *)m, strlen(m)), -1);
    assert_int_equal(http_reader_error(r, NULL), 500);
    assert_null(strstr(rec.log, "B:"));
    http_reader_destroy(&r);

    /* on_head returning 1 on an upgrade request: declined, the next request is parsed. */
    memset(&rec, 0, sizeof(rec));
    rec.head_rc = 1;
    r = http_reader_new(HTTP_REQUEST, NULL, &cbs);
    const char *up = "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                     "GET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_int_equal(http_reader_feed(r, (const uint8_t *)up, strlen(up)), strlen(up));
    assert_string_equal(rec.log, "[GET / 1.1 host=h n=3 ka=1 cl=-1 ch=0 up=h2c]|D|"
                                 "[GET /2 1.1 host=h n=1 ka=1 cl=-1 ch=0]|D|");
    http_reader_destroy(&r);

    /* on_head returning 1 on a response: no body. */
    memset(&rec, 0, sizeof(rec));
    rec.head_rc = 1;
    r = http_reader_new(HTTP_RESPONSE, NULL, &cbs);
    const char *resp = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n";
    assert_int_equal(http_reader_feed(r, (const uint8_t *)resp, strlen(resp)), strlen(resp));
    assert_string_equal(rec.log, "[200 OK 1.1 n=1 ka=1 cl=3 ch=0]|D|");
    http_reader_destroy(&r);
}

/* ---- re-serialisation ---------------------------------------------------------------------- */

struct capture {
    char text[4096];
};

static int capture_head(void *ctx, const http_head_t *h)
{
    static const char *const drop[] = {"X-Forwarded-For", "remote-user", "Remote-Groups"};
    static const http_header_t extra[] = {
        {"X-Forwarded-For", 15, "192.0.2.1", 9},
        {"Remote-User", 11, "alice", 5},
    };
    struct capture *c = ctx;
    http_head_rewrite_t rw = {.drop = drop,
                              .ndrop = 3,
                              .extra = extra,
                              .nextra = 2,
                              .content_length = h->content_length,
                              .chunked = h->chunked,
                              .keep_upgrade = h->upgrade};
    if (!h->request) {
        rw.ndrop = rw.nextra = 0;
    }
    ssize_t n = http_head_serialize(h, &rw, c->text, sizeof(c->text) - 1);
    assert_true(n > 0);
    c->text[n] = 0;

    /* Every smaller buffer is refused whole. */
    char small[4096];
    for (ssize_t cap = 0; cap < n; cap++)
        assert_int_equal(http_head_serialize(h, &rw, small, (size_t)cap), -ENOSPC);
    assert_int_equal(http_head_serialize(h, &rw, small, (size_t)n), n);

    /* Bad rewrites. */
    http_head_rewrite_t bad = rw;
    bad.chunked = true;
    bad.content_length = 3;
    assert_int_equal(http_head_serialize(h, &bad, small, sizeof(small)), -EINVAL);
    http_header_t inj = {"Remote-User", 11, "a\r\nX-Admin: 1", 14};
    bad = rw;
    bad.content_length = -1;
    bad.extra = &inj;
    bad.nextra = 1;
    assert_int_equal(http_head_serialize(h, &bad, small, sizeof(small)), -EINVAL);
    http_header_t badname = {"Remote User", 11, "a", 1};
    bad.extra = &badname;
    assert_int_equal(http_head_serialize(h, &bad, small, sizeof(small)), -EINVAL);
    return 0;
}

static void serialize(enum http_parser_type type, const char *in, char *out)
{
    struct capture c = {{0}};
    http_reader_cbs_t cbs = {.ctx = &c, .on_head = capture_head};
    http_reader_t *r = http_reader_new(type, NULL, &cbs);
    assert_true(http_reader_feed(r, (const uint8_t *)in, strlen(in)) > 0);
    strcpy(out, c.text);
    http_reader_destroy(&r);
}

static void test_serialize(void **state)
{
    (void)state;
    char out[4096];

    serialize(
        HTTP_REQUEST,
        "POST /api?x=1 HTTP/1.0\r\nHost: app.example\r\nConnection: keep-alive, X-Hop, Host\r\n"
        "Keep-Alive: timeout=5\r\nX-Hop: 1\r\nProxy-Authorization: Basic x\r\n"
        "X-Forwarded-For: 6.6.6.6\r\nremote-user: root\r\nREMOTE-GROUPS: admin\r\n"
        "TE: trailers\r\nContent-Length: 3\r\nAccept: */*\r\n\r\nabc",
        out);
    assert_string_equal(out, "POST /api?x=1 HTTP/1.1\r\nHost: app.example\r\nAccept: */*\r\n"
                             "X-Forwarded-For: 192.0.2.1\r\nRemote-User: alice\r\n"
                             "Content-Length: 3\r\n\r\n");

    serialize(HTTP_REQUEST,
              "PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n"
              "Upgrade: h2c\r\n\r\n0\r\n\r\n",
              out);
    assert_string_equal(out, "PUT / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 192.0.2.1\r\n"
                             "Remote-User: alice\r\nTransfer-Encoding: chunked\r\n\r\n");

    serialize(HTTP_REQUEST,
              "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
              "Sec-WebSocket-Key: k\r\n\r\n",
              out);
    assert_string_equal(out, "GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
                             "Sec-WebSocket-Key: k\r\nX-Forwarded-For: 192.0.2.1\r\n"
                             "Remote-User: alice\r\nConnection: upgrade\r\n\r\n");

    serialize(HTTP_RESPONSE,
              "HTTP/1.1 404 Not Found\r\nServer: s\r\nConnection: close\r\n"
              "Proxy-Authenticate: x\r\nContent-Length: 0\r\n\r\n",
              out);
    assert_string_equal(out, "HTTP/1.1 404 Not Found\r\nServer: s\r\nContent-Length: 0\r\n\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requests),        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_head_limits),     cmocka_unit_test(test_new_bad_limits),
        cmocka_unit_test(test_stop_after_done), cmocka_unit_test(test_callback_aborts),
        cmocka_unit_test(test_serialize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
