/* Fuzzes the HTTP/1.1 readers of the reverse proxy (node/http/httpmsg.h), requests and responses.
 * Any bytes must be consumed, stopped at or refused, never crash or read out of bounds. Beyond
 * that it checks the promises the proxy relies on:
 *  - the outcome does not depend on how the bytes are split: fed whole and fed in two pieces at
 *    a point the input chooses, the callbacks (heads, body bytes, ends), the bytes consumed and
 *    the refusal status are the same;
 *  - every head delivered is sane (version 1.0/1.1, never both Content-Length and chunked,
 *    Host present in 1.1 requests, at most max_headers), and no more body than max_body_bytes
 *    is passed on;
 *  - a head re-serialised by http_head_serialize parses back, in a fresh reader, to the same
 *    method, target, Host or status (what the proxy forwards is what it checked).
 *
 * Input: byte 0 chooses the reader (bit 0: response), HEAD expectation (bit 1), a small body
 * limit (bit 2) and EOF at the end (bit 3); byte 1 the split point; the rest is the stream. */
#include "node/http/httpmsg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
    uint64_t hash; /* FNV-1a over the events, body bytes one by one */
    uint64_t body; /* body bytes of the current message */
    uint64_t max_body;
    enum http_parser_type type;
};

static void mix(struct trace *t, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ b[i]) * 1099511628211ull;
}

struct reparse {
    bool seen;
    const http_head_t *want;
};

static int reparse_head(void *ctx, const http_head_t *h)
{
    struct reparse *rp = ctx;
    const http_head_t *w = rp->want;

    rp->seen = true;
    if (h->request != w->request || h->method != w->method || h->status != w->status ||
        h->target_len != w->target_len ||
        (h->target_len && memcmp(h->target, w->target, h->target_len) != 0) ||
        h->host_len != w->host_len || (h->host_len && memcmp(h->host, w->host, h->host_len)) ||
        h->content_length != w->content_length || h->chunked != w->chunked)
        abort();
    return 0;
}

static void roundtrip(const http_head_t *h)
{
    static char buf[20000];
    http_head_rewrite_t rw = {
        .content_length = h->content_length, .chunked = h->chunked, .keep_upgrade = h->upgrade};

    /* An HTTP/1.0 request may lack Host; forwarded as 1.1 it would need one (the proxy adds it). */
    if (h->request && !h->host)
        return;
    ssize_t n = http_head_serialize(h, &rw, buf, sizeof(buf));
    if (n < 0)
        abort();
    struct reparse rp = {.want = h};
    http_reader_cbs_t cbs = {.ctx = &rp, .on_head = reparse_head};
    http_reader_t *r = http_reader_new(h->request ? HTTP_REQUEST : HTTP_RESPONSE, NULL, &cbs);
    if (http_reader_feed(r, (const uint8_t *)buf, (size_t)n) < 0 || !rp.seen)
        abort();
    http_reader_destroy(&r);
}

static int on_head(void *ctx, const http_head_t *h)
{
    struct trace *t = ctx;

    if (h->http_major != 1 || h->http_minor > 1 || (h->chunked && h->content_length >= 0) ||
        h->nheaders > HTTP_DEFAULT_MAX_HEADERS || h->request != (t->type == HTTP_REQUEST))
        abort();
    if (h->request && h->http_minor == 1 && !h->host)
        abort();
    t->body = 0;
    mix(t, "H", 1);
    mix(t, &h->status, sizeof(h->status));
    mix(t, &h->method, sizeof(h->method));
    mix(t, h->target ? h->target : "", h->target_len);
    mix(t, &h->nheaders, sizeof(h->nheaders));
    for (size_t i = 0; i < h->nheaders; i++) {
        mix(t, h->headers[i].name, h->headers[i].name_len);
        mix(t, ":", 1);
        mix(t, h->headers[i].value, h->headers[i].value_len);
    }
    roundtrip(h);
    return 0;
}

static int on_body(void *ctx, const uint8_t *data, size_t len)
{
    struct trace *t = ctx;

    t->body += len;
    if (t->max_body && t->body > t->max_body)
        abort();
    mix(t, data, len);
    return 0;
}

static int on_done(void *ctx)
{
    struct trace *t = ctx;
    mix(t, "D", 1);
    return 0;
}

struct outcome {
    uint64_t hash;
    long consumed;
    int status;
};

static void run(const uint8_t *data, size_t size, uint8_t mode, size_t split, struct outcome *o)
{
    http_limits_t lim;
    http_limits_defaults(&lim);
    struct trace t = {.hash = 14695981039346656037ull,
                      .type = (mode & 1) ? HTTP_RESPONSE : HTTP_REQUEST};
    if (mode & 4)
        lim.max_body_bytes = t.max_body = 7;
    http_reader_cbs_t cbs = {.ctx = &t, .on_head = on_head, .on_body = on_body, .on_done = on_done};
    http_reader_t *r = http_reader_new(t.type, &lim, &cbs);
    http_reader_expect_head(r, (mode & 2) != 0);

    long consumed = 0;
    ssize_t got = http_reader_feed(r, data, split);
    if (got >= 0) {
        consumed = got;
        if ((size_t)got == split) {
            got = http_reader_feed(r, data + split, size - split);
            if (got >= 0)
                consumed += got;
        }
    }
    if (got < 0)
        consumed = -1;
    else if ((size_t)got > size)
        abort();
    if (got >= 0 && (mode & 8) && http_reader_eof(r) < 0)
        consumed = -1;
    o->status = http_reader_error(r, NULL);
    if ((consumed < 0) != (o->status != 0))
        abort();
    o->hash = t.hash;
    o->consumed = consumed;
    http_reader_destroy(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t mode = data[0];
    size_t split_seed = data[1];
    data += 2;
    size -= 2;

    struct outcome whole, part;
    run(data, size, mode, size, &whole);
    run(data, size, mode, size ? split_seed * 257 % (size + 1) : 0, &part);
    if (whole.hash != part.hash || whole.consumed != part.consumed || whole.status != part.status)
        abort();
    return 0;
}
