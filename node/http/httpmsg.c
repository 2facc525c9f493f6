/* httpmsg: incremental HTTP/1.1 message readers for the reverse proxy (sans-I/O).
 *
 * BACKGROUND
 *
 * A reverse proxy sits between clients it does not trust and backends that trust it. Request
 * smuggling lives in the gap between two parsers: if the proxy and the backend can disagree on
 * where a request ends (Content-Length against Transfer-Encoding, two Content-Lengths, a
 * Transfer-Encoding the backend reads differently, a folded header, a bare CR one side treats as
 * a line end), a client can hide a second request inside the first one's body and have it run
 * as someone else. The defence here is twofold: refuse every message on which two reasonable
 * parsers could disagree, and never forward the client's framing: the head is re-serialised
 * (http_head_serialize) with framing the proxy chose, so what the backend sees is canonical.
 *
 * BEHAVIOR
 *
 * libhttp-parser does the HTTP grammar. Around it, two things it does not do for us:
 *
 *  - A raw scanner walks the head's bytes *before* the parser sees them, and only up to the
 *    blank line that ends the head. It counts them (431 past max_header_bytes: a 1 MiB header
 *    line is refused after max_header_bytes bytes, nothing of it kept), and refuses a NUL, any
 *    other control byte but HT, a CR not followed by LF, and a line starting with SP/HT
 *    (obs-fold, or whitespace before the first header). Because it knows where the head ends,
 *    the parser is fed the head alone and on_headers_complete runs with every head byte
 *    checked; then the semantic checks (framing headers, Host, version, target form) run there,
 *    before the caller's on_head, whose answer can still make the parser skip the body.
 *
 *  - The head's strings are copied by the data callbacks into one buffer of max_header_bytes
 *    (they are a subset of the head's bytes, so it cannot overflow), with offsets, because a
 *    head may span many feeds. Bodies are passed through on_body as the parser finds them.
 *
 * The parser is paused in on_message_complete so execute returns at every message boundary:
 * feed resets the per-message state, and stops there after an upgrade, a message that ends the
 * connection, or when on_done asked. After a bodiless message the parser is back at its start
 * state; after a message with a body the bytes up to its end went through the body phase.
 *
 * Trailers after a chunked body are parsed (bounded by max_header_bytes) and dropped: they are
 * not forwarded, the next hop gets a chunked body without trailers. */
#include "node/http/httpmsg.h"

#include "common/xmalloc.h"
#include "node/http/httphdr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct hdr_off {
    uint32_t name_off, name_len;   /* into buf, bytes */
    uint32_t value_off, value_len; /* into buf, bytes */
};

enum phase {
    PH_HEAD,    /* scanning + parsing a head (or waiting for the first byte of one) */
    PH_BODY,    /* the head is done, its body is being parsed */
    PH_STOPPED, /* after an upgrade or the last message of the connection */
    PH_FAILED,  /* refused; err_* say why */
};

enum last_cb { CB_NONE, CB_FIELD, CB_VALUE };

/* Where the chunk scanner is in a chunked body (see chunk_scan). */
enum chunk_state {
    CK_SIZE_FIRST,    /* the first hex digit of a chunk size */
    CK_SIZE,          /* more hex digits, ';' or CR */
    CK_EXT,           /* a chunk extension, up to CR */
    CK_SIZE_LF,       /* the LF after a size line */
    CK_DATA,          /* chunk data: ck_left bytes */
    CK_DATA_CR,       /* the CR after chunk data */
    CK_DATA_LF,       /* the LF after chunk data */
    CK_TRAILER_START, /* the start of a trailer line, or the CR of the final blank line */
    CK_TRAILER,       /* inside a trailer line */
    CK_TRAILER_LF,    /* the LF ending a trailer line */
    CK_END_LF,        /* the LF of the final blank line */
};

struct http_reader {
    http_parser parser;
    enum http_parser_type type;
    http_limits_t lim;
    http_reader_cbs_t cbs;
    enum phase phase;
    bool expect_head; /* responses: the request was HEAD */

    /* The raw head scanner, reset at each message. */
    uint32_t head_bytes;  /* bytes scanned of this head, <= lim.max_header_bytes */
    uint32_t line_len;    /* bytes on the current line, CR excluded */
    bool scan_started;    /* a byte other than CR/LF was seen (blank lines may precede) */
    bool scan_first_line; /* still on the start line */
    bool scan_cr;         /* the previous byte was CR */

    /* The head under construction. */
    char *buf;            /* lim.max_header_bytes bytes */
    uint32_t buf_len;     /* bytes used */
    struct hdr_off *offs; /* lim.max_headers entries */
    http_header_t *hdrs;  /* lim.max_headers entries, built at the end of the head */
    uint32_t nhdrs;
    uint32_t target_off, target_len; /* into buf, bytes */
    uint32_t reason_off, reason_len; /* into buf, bytes */
    enum last_cb last;
    http_head_t head;

    /* This message. */
    bool head_done;         /* on_headers_complete ran */
    bool msg_done;          /* on_message_complete ran (the parser is paused) */
    bool interim;           /* a 1xx response other than 101 */
    bool stop_after;        /* on_done returned 1 */
    uint64_t body_bytes;    /* decoded body bytes so far */
    uint32_t trailer_bytes; /* bytes of trailer names and values so far */
    enum chunk_state ck;    /* chunked bodies: the strict framing scanner's state */
    uint64_t ck_left;       /* CK_SIZE: the size so far; CK_DATA: bytes of data left */

    int err_status;         /* 0 until refused */
    const char *err_reason; /* static */
};

void http_limits_defaults(http_limits_t *l)
{
    l->max_header_bytes = HTTP_DEFAULT_MAX_HEADER_BYTES;
    l->max_headers = HTTP_DEFAULT_MAX_HEADERS;
    l->max_body_bytes = 0;
}

/* Records the first refusal; returns -1 so callbacks can `return fail(...)`. */
static int fail(http_reader_t *r, int status, const char *why)
{
    if (r->err_status == 0) {
        r->err_status = status;
        r->err_reason = why;
    }
    return -1;
}

/* ---- small string helpers ------------------------------------------------------------------ */

static bool ieq(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    return n == m && strncasecmp(s, lit, m) == 0;
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A plain decimal: 1..18 digits (< 10^18 bytes, so no overflow), nothing else. */
static bool parse_decimal(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;

    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

/* ---- parser callbacks ---------------------------------------------------------------------- */

static int append(http_reader_t *r, const char *at, size_t len)
{
    if (len > r->lim.max_header_bytes - r->buf_len)
        return fail(r, 431, "request header fields too large");
    memcpy(r->buf + r->buf_len, at, len);
    r->buf_len += (uint32_t)len;
    return 0;
}

static int cb_message_begin(http_parser *p)
{
    http_reader_t *r = p->data;

    r->buf_len = 0;
    r->nhdrs = 0;
    r->target_off = r->target_len = 0;
    r->reason_off = r->reason_len = 0;
    r->last = CB_NONE;
    r->head_done = false;
    r->interim = false;
    r->body_bytes = 0;
    r->trailer_bytes = 0;
    r->ck = CK_SIZE_FIRST;
    r->ck_left = 0;
    return 0;
}

static int cb_url(http_parser *p, const char *at, size_t len)
{
    http_reader_t *r = p->data;

    if (r->target_len == 0)
        r->target_off = r->buf_len;
    r->target_len += (uint32_t)len;
    return append(r, at, len);
}

static int cb_status(http_parser *p, const char *at, size_t len)
{
    http_reader_t *r = p->data;

    if (r->reason_len == 0)
        r->reason_off = r->buf_len;
    r->reason_len += (uint32_t)len;
    return append(r, at, len);
}

/* Trailers (after the last chunk) come through the header callbacks once the head is done:
 * counted, bounded, dropped. */
static int trailer(http_reader_t *r, size_t len)
{
    if (len > r->lim.max_header_bytes - r->trailer_bytes)
        return fail(r, 431, "trailer fields too large");
    r->trailer_bytes += (uint32_t)len;
    return 0;
}

static int cb_header_field(http_parser *p, const char *at, size_t len)
{
    http_reader_t *r = p->data;

    if (r->head_done)
        return trailer(r, len);
    if (r->last != CB_FIELD) {
        if (r->nhdrs >= r->lim.max_headers)
            return fail(r, 431, "too many header fields");
        r->offs[r->nhdrs++] = (struct hdr_off){.name_off = r->buf_len};
        r->last = CB_FIELD;
    }
    r->offs[r->nhdrs - 1].name_len += (uint32_t)len;
    return append(r, at, len);
}

static int cb_header_value(http_parser *p, const char *at, size_t len)
{
    http_reader_t *r = p->data;

    if (r->head_done)
        return trailer(r, len);
    if (r->nhdrs == 0)
        return fail(r, 400, "header value without a name");
    if (r->last != CB_VALUE) {
        r->offs[r->nhdrs - 1].value_off = r->buf_len;
        r->last = CB_VALUE;
    }
    r->offs[r->nhdrs - 1].value_len += (uint32_t)len;
    return append(r, at, len);
}

/* Builds r->head from the buffer and checks what the grammar cannot: the framing headers, Host,
 * the version, the target. Returns 0 or fail(). */
static int check_head(http_reader_t *r, http_parser *p)
{
    http_head_t *h = &r->head;
    bool req = r->type == HTTP_REQUEST;
    int ncl = 0, nte = 0, nhost = 0;
    bool te_chunked = false;
    const http_header_t *cl_hdr = NULL;

    memset(h, 0, sizeof(*h));
    h->request = req;
    h->http_major = p->http_major;
    h->http_minor = p->http_minor;
    h->content_length = -1;
    if (p->http_major != 1 || p->http_minor > 1)
        return fail(r, 505, "HTTP version not supported");

    for (uint32_t i = 0; i < r->nhdrs; i++) {
        const struct hdr_off *o = &r->offs[i];
        http_header_t *x = &r->hdrs[i];
        x->name = r->buf + o->name_off;
        x->name_len = o->name_len;
        x->value = r->buf + o->value_off;
        x->value_len = o->value_len;
        while (x->value_len > 0 && is_ows(x->value[0])) {
            x->value++;
            x->value_len--;
        }
        /* Transfer-Encoding is compared before trailing OWS is trimmed: libhttp-parser does not
         * read "chunked " as chunked, and the two must agree on the framing. */
        if (ieq(x->name, x->name_len, "transfer-encoding")) {
            nte++;
            te_chunked = ieq(x->value, x->value_len, "chunked");
        }
        while (x->value_len > 0 && is_ows(x->value[x->value_len - 1]))
            x->value_len--;

        if (ieq(x->name, x->name_len, "content-length")) {
            ncl++;
            cl_hdr = x;
        } else if (ieq(x->name, x->name_len, "host")) {
            nhost++;
            h->host = x->value;
            h->host_len = x->value_len;
        } else if (ieq(x->name, x->name_len, "upgrade") && !h->upgrade_proto) {
            h->upgrade_proto = x->value;
            h->upgrade_proto_len = x->value_len;
        }
    }
    h->headers = r->hdrs;
    h->nheaders = r->nhdrs;

    /* Framing: exactly one way to find the end of the body, or none. */
    if (ncl > 0 && nte > 0)
        return fail(r, 400, "both Content-Length and Transfer-Encoding");
    if (ncl > 1)
        return fail(r, 400, "repeated Content-Length");
    if (nte > 1)
        return fail(r, 400, "repeated Transfer-Encoding");
    if (nte == 1 && !te_chunked)
        return fail(r, 400, "Transfer-Encoding other than chunked");
    if (nte == 1 && p->http_minor == 0)
        return fail(r, 400, "Transfer-Encoding in an HTTP/1.0 message");
    if (cl_hdr && !parse_decimal(cl_hdr->value, cl_hdr->value_len, &h->content_length))
        return fail(r, 400, "Content-Length is not a plain decimal");
    h->chunked = te_chunked;
    /* The parser must have understood the same framing (it decides what it reads). */
    /* (libhttp-parser 2.9.4 also takes a name that starts with "Transfer-Encoding", as
     * "Transfer-Encoding2", for one: such a message is refused here, before on_head.) */
    if (h->chunked != ((p->flags & F_CHUNKED) != 0) ||
        (nte > 0) != (p->uses_transfer_encoding != 0) ||
        (cl_hdr && (uint64_t)h->content_length != p->content_length))
        return fail(r, 400, "inconsistent message framing");
    if (r->lim.max_body_bytes && h->content_length > 0 &&
        (uint64_t)h->content_length > r->lim.max_body_bytes)
        return fail(r, 413, "content too large");

    h->keep_alive = http_should_keep_alive(p) != 0;
    h->upgrade = p->upgrade != 0;
    if (req) {
        h->method = p->method;
        h->method_name = http_method_str((enum http_method)p->method);
        h->target = r->buf + r->target_off;
        h->target_len = r->target_len;
        h->reason = "";
        if (p->method == HTTP_CONNECT)
            return fail(r, 501, "CONNECT is not supported");
        bool origin = h->target_len > 0 && h->target[0] == '/';
        bool asterisk = h->target_len == 1 && h->target[0] == '*' && p->method == HTTP_OPTIONS;
        if (!origin && !asterisk)
            return fail(r, 400, "request target not in origin form");
        if (nhost > 1)
            return fail(r, 400, "repeated Host");
        if (nhost == 0 && p->http_minor == 1)
            return fail(r, 400, "HTTP/1.1 request without Host");
        if (h->host && !httphdr_host_valid(h->host, h->host_len))
            return fail(r, 400, "malformed Host");
    } else {
        h->method_name = "";
        h->status = (int)p->status_code;
        h->reason = r->buf + r->reason_off;
        h->reason_len = r->reason_len;
        if (h->status < 100)
            return fail(r, 400, "malformed status code");
        if (h->status == 101 && !h->upgrade)
            return fail(r, 400, "101 without Connection: upgrade and Upgrade");
        r->interim = h->status < 200 && h->status != 101;
    }
    return 0;
}

static int cb_headers_complete(http_parser *p)
{
    http_reader_t *r = p->data;

    r->head_done = true;
    if (check_head(r, p) < 0)
        return -1;
    int rc = r->cbs.on_head ? r->cbs.on_head(r->cbs.ctx, &r->head) : 0;
    if (rc < 0)
        return fail(r, 500, "refused by on_head");
    /* A request whose Upgrade the caller declined is an ordinary request: the reader goes on
     * parsing HTTP after it instead of stopping for another protocol. */
    if (r->type == HTTP_REQUEST && rc == 1)
        r->head.upgrade = false;
    /* No body, whatever the headers say: responses to HEAD, 1xx, 204, 304. The parser skips
     * 1xx/204/304 only when they carry no Content-Length, so say it for all of them. */
    if (r->type == HTTP_RESPONSE &&
        (rc == 1 || r->expect_head || r->interim || r->head.status == 204 || r->head.status == 304))
        return 1;
    return 0;
}

static int cb_body(http_parser *p, const char *at, size_t len)
{
    http_reader_t *r = p->data;

    if (r->phase != PH_BODY)
        return fail(r, 400, "body bytes inside the head"); /* the scanner and parser disagree */
    /* Past the limit, the bytes up to it are still passed on, so what the caller sees does not
     * depend on how the stream was split; then the message is refused. */
    size_t pass = len;
    bool over = false;
    if (r->lim.max_body_bytes && len > r->lim.max_body_bytes - r->body_bytes) {
        pass = (size_t)(r->lim.max_body_bytes - r->body_bytes);
        over = true;
    }
    r->body_bytes += pass;
    if (pass && r->cbs.on_body && r->cbs.on_body(r->cbs.ctx, (const uint8_t *)at, pass) < 0)
        return fail(r, 500, "refused by on_body");
    if (over)
        return fail(r, 413, "content too large");
    return 0;
}

static int cb_message_complete(http_parser *p)
{
    http_reader_t *r = p->data;

    if (!r->head_done)
        return fail(r, 400, "message without a head");
    if (!r->interim && r->cbs.on_done) {
        int rc = r->cbs.on_done(r->cbs.ctx);
        if (rc < 0)
            return fail(r, 500, "refused by on_done");
        r->stop_after = rc == 1;
    }
    r->msg_done = true;
    http_parser_pause(p, 1); /* execute returns here: feed handles the boundary */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = cb_message_begin,
    .on_url = cb_url,
    .on_status = cb_status,
    .on_header_field = cb_header_field,
    .on_header_value = cb_header_value,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_message_complete = cb_message_complete,
};

/* ---- the raw head scanner ------------------------------------------------------------------ */

static void scan_reset(http_reader_t *r)
{
    r->head_bytes = 0;
    r->line_len = 0;
    r->scan_started = false;
    r->scan_first_line = true;
    r->scan_cr = false;
}

/* Scans head bytes from data. Sets *take to the bytes that belong to the head and are good (all
 * of len, up to and including the LF of the blank line that ends it, or up to the bad byte).
 * Returns 1 if the head ended, 0 if more is needed, or the refusal status with *why set. */
static int scan(http_reader_t *r, const uint8_t *data, size_t len, size_t *take, const char **why)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];

        *take = i;
        if (r->head_bytes >= r->lim.max_header_bytes) {
            *why = "request header fields too large";
            return 431;
        }
        if (r->scan_cr) {
            if (c != '\n') {
                *why = "CR not followed by LF";
                return 400;
            }
        } else if (c == '\r') {
            r->head_bytes++;
            r->scan_cr = true;
            continue;
        } else if (c != '\n') {
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                *why = c ? "control character in the head" : "NUL in the head";
                return 400;
            }
            if (r->line_len == 0 && !r->scan_first_line && (c == ' ' || c == '\t')) {
                *why = "obs-fold or whitespace before a header";
                return 400;
            }
        }
        r->head_bytes++;
        r->scan_cr = false;
        if (c == '\n') {
            if (!r->scan_started)
                continue; /* blank lines before the start line are ignored */
            if (r->line_len == 0) {
                *take = i + 1;
                return 1;
            }
            r->line_len = 0;
            r->scan_first_line = false;
            continue;
        }
        r->scan_started = true;
        r->line_len++;
    }
    *take = len;
    return 0;
}

/* libhttp-parser (not built strict) reads "3\r\nabcXX0\r\n" as the chunk "abc" and a last
 * chunk, takes "3 \r\n" for "3", and a bare LF for CRLF in chunk lines: a front proxy that
 * reads the same bytes another way would disagree with us on where the body ends. This
 * scanner walks a chunked body strictly (RFC 9112 7.1: size = 1*HEXDIG, then ';' and an
 * extension or CRLF; data; CRLF; trailer lines with CRLF and no control bytes) ahead of the
 * parser, like scan() for heads. Same contract as scan(): *take = the good bytes (up to the
 * end of the message, or up to a bad byte); returns 1 if the message ended at *take, 0 if more
 * is needed, or the refusal status. */
static int chunk_scan(http_reader_t *r, const uint8_t *data, size_t len, size_t *take,
                      const char **why)
{
    size_t i = 0;

    while (i < len) {
        uint8_t c = data[i];
        bool ctl = (c < 0x20 && c != '\t') || c == 0x7f;

        *take = i;
        switch (r->ck) {
        case CK_DATA: {
            uint64_t n = r->ck_left < len - i ? r->ck_left : len - i;
            r->ck_left -= n;
            i += (size_t)n;
            if (r->ck_left == 0)
                r->ck = CK_DATA_CR;
            continue;
        }
        case CK_SIZE_FIRST:
        case CK_SIZE: {
            int h = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                           : -1;
            if (h >= 0) {
                if (r->ck_left > (UINT64_MAX >> 4)) {
                    *why = "chunk size too large";
                    return 400;
                }
                r->ck_left = r->ck_left * 16 + (uint64_t)h;
                r->ck = CK_SIZE;
            } else if (r->ck == CK_SIZE && c == ';') {
                r->ck = CK_EXT;
            } else if (r->ck == CK_SIZE && c == '\r') {
                r->ck = CK_SIZE_LF;
            } else {
                *why = "malformed chunk size line";
                return 400;
            }
            break;
        }
        case CK_EXT:
            if (c == '\r') {
                r->ck = CK_SIZE_LF;
            } else if (ctl) {
                *why = "control character in a chunk extension";
                return 400;
            }
            break;
        case CK_SIZE_LF:
            if (c != '\n') {
                *why = "chunk size line not ended by CRLF";
                return 400;
            }
            r->ck = r->ck_left ? CK_DATA : CK_TRAILER_START;
            break;
        case CK_DATA_CR:
        case CK_DATA_LF:
            if (c != (r->ck == CK_DATA_CR ? '\r' : '\n')) {
                *why = "chunk data not followed by CRLF";
                return 400;
            }
            r->ck = r->ck == CK_DATA_CR ? CK_DATA_LF : CK_SIZE_FIRST;
            r->ck_left = 0;
            break;
        case CK_TRAILER_START:
            if (c == '\r') {
                r->ck = CK_END_LF;
                break;
            }
            if (c == ' ' || c == '\t') {
                *why = "obs-fold or whitespace before a trailer field";
                return 400;
            }
            /* fall through */
        case CK_TRAILER:
            if (c == '\r') {
                r->ck = CK_TRAILER_LF;
            } else if (ctl) {
                *why = "control character in a trailer";
                return 400;
            } else {
                r->ck = CK_TRAILER;
            }
            break;
        case CK_TRAILER_LF:
        case CK_END_LF:
            if (c != '\n') {
                *why = "CR not followed by LF";
                return 400;
            }
            if (r->ck == CK_END_LF) {
                *take = i + 1;
                return 1;
            }
            r->ck = CK_TRAILER_START;
            break;
        }
        i++;
    }
    *take = len;
    return 0;
}

/* ---- the reader ---------------------------------------------------------------------------- */

http_reader_t *http_reader_new(enum http_parser_type type, const http_limits_t *lim,
                               const http_reader_cbs_t *cbs)
{
    http_limits_t l;

    if (lim)
        l = *lim;
    else
        http_limits_defaults(&l);
    if ((type != HTTP_REQUEST && type != HTTP_RESPONSE) || l.max_header_bytes == 0 ||
        l.max_header_bytes > HTTP_LIMIT_MAX_HEADER_BYTES || l.max_headers == 0 ||
        l.max_headers > HTTP_LIMIT_MAX_HEADERS) {
        errno = EINVAL;
        return NULL;
    }
    http_reader_t *r = xcalloc(1, sizeof(*r));
    r->type = type;
    r->lim = l;
    if (cbs)
        r->cbs = *cbs;
    r->buf = xmalloc(l.max_header_bytes);
    r->offs = xcalloc(l.max_headers, sizeof(*r->offs));
    r->hdrs = xcalloc(l.max_headers, sizeof(*r->hdrs));
    http_parser_init(&r->parser, type);
    r->parser.data = r;
    r->phase = PH_HEAD;
    scan_reset(r);
    return r;
}

void http_reader_destroy(http_reader_t **rp)
{
    if (!rp || !*rp)
        return;
    http_reader_t *r = *rp;
    free(r->buf);
    free(r->offs);
    free(r->hdrs);
    free(r);
    *rp = NULL;
}

static ssize_t refuse(http_reader_t *r, int status, const char *why)
{
    fail(r, status, why);
    r->phase = PH_FAILED;
    return -1;
}

/* The parser stopped with e (not OK, not PAUSED). A callback's refusal was recorded already. */
static ssize_t refuse_parser(http_reader_t *r, enum http_errno e)
{
    if (e == HPE_INVALID_METHOD && r->type == HTTP_REQUEST)
        return refuse(r, 501, "unknown method");
    if (e == HPE_HEADER_OVERFLOW)
        return refuse(r, 431, "request header fields too large");
    return refuse(r, 400, http_errno_description(e));
}

ssize_t http_reader_feed(http_reader_t *r, const uint8_t *data, size_t len)
{
    size_t off = 0;

    if (r->phase == PH_FAILED)
        return -1;
    if (r->phase == PH_STOPPED)
        return 0;
    while (off < len) {
        size_t take = len - off;
        int head_end = 0, chunk_end = 0;
        const char *why = NULL;
        bool chunked_body = r->phase == PH_BODY && r->head.chunked;

        if (r->phase == PH_HEAD) {
            head_end = scan(r, data + off, len - off, &take, &why);
            /* A bad byte: the parser still gets the good ones before it, so that an error it
             * finds there wins, as it would had the stream been split just before the bad byte. */
            if (head_end > 1 && take == 0)
                return refuse(r, head_end, why);
        } else if (chunked_body) {
            chunk_end = chunk_scan(r, data + off, len - off, &take, &why);
            if (chunk_end > 1 && take == 0)
                return refuse(r, chunk_end, why);
        }
        /* take >= 1 here: execute treats a length of 0 as the end of the stream. */
        r->msg_done = false;
        size_t n = http_parser_execute(&r->parser, &settings, (const char *)data + off, take);
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e == HPE_PAUSED)
            http_parser_pause(&r->parser, 0);
        else if (e != HPE_OK)
            return refuse_parser(r, e);
        if (head_end > 1)
            return refuse(r, head_end, why);
        if (chunk_end > 1)
            return refuse(r, chunk_end, why);
        if (chunked_body && (n != take || (chunk_end == 1) != r->msg_done))
            return refuse(r, 400, "inconsistent chunked framing");
        if (r->phase == PH_HEAD) {
            /* The parser must end the head exactly where the scanner did. */
            if (n != take || head_end != (r->head_done ? 1 : 0))
                return refuse(r, 400, "malformed head");
            if (r->head_done && !r->msg_done)
                r->phase = PH_BODY;
        } else if (!r->msg_done && n != take) {
            return refuse(r, 400, "parser stopped inside the body");
        }
        off += n;
        if (!r->msg_done)
            continue;
        r->phase = PH_HEAD;
        r->head_done = false;
        scan_reset(r);
        if (r->head.upgrade || !r->head.keep_alive) {
            r->phase = PH_STOPPED;
            break;
        }
        if (r->stop_after) {
            r->stop_after = false;
            break;
        }
    }
    return (ssize_t)off;
}

int http_reader_error(const http_reader_t *r, const char **reason)
{
    if (reason)
        *reason = r->err_reason ? r->err_reason : "";
    return r->err_status;
}

void http_reader_expect_head(http_reader_t *r, bool head_request)
{
    r->expect_head = head_request;
}

bool http_reader_in_message(const http_reader_t *r)
{
    return r->phase == PH_BODY || (r->phase == PH_HEAD && r->scan_started);
}

int http_reader_eof(http_reader_t *r)
{
    if (r->phase == PH_FAILED)
        return -1;
    if (!http_reader_in_message(r))
        return 0;
    if (r->phase == PH_BODY) {
        r->msg_done = false;
        http_parser_execute(&r->parser, &settings, NULL, 0);
        enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
        if (e == HPE_PAUSED)
            http_parser_pause(&r->parser, 0);
        else if (e != HPE_OK && e != HPE_INVALID_EOF_STATE)
            return (int)refuse_parser(r, e);
        if (r->msg_done) {
            r->phase = PH_STOPPED;
            return 0;
        }
    }
    return (int)refuse(r, 400, "message truncated by the end of the stream");
}

/* ---- re-serialisation ---------------------------------------------------------------------- */

struct out {
    char *buf;
    size_t cap, len;
    bool full;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->len) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_header(struct out *o, const char *name, size_t nlen, const char *val, size_t vlen)
{
    put(o, name, nlen);
    put(o, ": ", 2);
    put(o, val, vlen);
    put(o, "\r\n", 2);
}

/* Whether a Connection header of h lists name (comma-separated tokens, case-insensitive). */
static bool named_by_connection(const http_head_t *h, const char *name, size_t nlen)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        const http_header_t *x = &h->headers[i];
        if (!ieq(x->name, x->name_len, "connection"))
            continue;
        size_t a = 0;
        while (a < x->value_len) {
            size_t b = a;
            while (b < x->value_len && x->value[b] != ',')
                b++;
            size_t s = a, e = b;
            while (s < e && is_ows(x->value[s]))
                s++;
            while (e > s && is_ows(x->value[e - 1]))
                e--;
            if (e - s == nlen && strncasecmp(x->value + s, name, nlen) == 0)
                return true;
            a = b + 1;
        }
    }
    return false;
}

static bool skip_header(const http_head_t *h, const http_head_rewrite_t *rw, const http_header_t *x)
{
    static const char *const hop[] = {"connection", "keep-alive",        "te",
                                      "trailer",    "transfer-encoding", "content-length"};

    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (ieq(x->name, x->name_len, hop[i]))
            return true;
    if (x->name_len >= 6 && strncasecmp(x->name, "proxy-", 6) == 0)
        return true;
    if (ieq(x->name, x->name_len, "upgrade"))
        return !rw->keep_upgrade;
    if (rw->drop_if && rw->drop_if(x))
        return true;
    for (size_t i = 0; i < rw->ndrop; i++)
        if (rw->drop[i] && ieq(x->name, x->name_len, rw->drop[i]))
            return true;
    /* Host is never dropped this way: a client must not strip the routing key. */
    if (!ieq(x->name, x->name_len, "host") && named_by_connection(h, x->name, x->name_len))
        return true;
    return false;
}

static bool extra_ok(const http_header_t *x)
{
    if (!x->name || x->name_len == 0 || (x->value_len && !x->value))
        return false;
    for (size_t i = 0; i < x->name_len; i++)
        if (!is_tchar((unsigned char)x->name[i]))
            return false;
    for (size_t i = 0; i < x->value_len; i++) {
        unsigned char c = (unsigned char)x->value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

ssize_t http_head_serialize(const http_head_t *h, const http_head_rewrite_t *rw, char *buf,
                            size_t cap)
{
    struct out o = {.buf = buf, .cap = cap};
    char num[32];

    if (rw->chunked && rw->content_length >= 0)
        return -EINVAL;
    for (size_t i = 0; i < rw->nextra; i++)
        if (!extra_ok(&rw->extra[i]))
            return -EINVAL;

    if (h->request) {
        puts_(&o, h->method_name);
        put(&o, " ", 1);
        put(&o, h->target, h->target_len);
        puts_(&o, " HTTP/1.1\r\n");
    } else {
        snprintf(num, sizeof(num), "HTTP/1.1 %03d ", h->status);
        puts_(&o, num);
        put(&o, h->reason, h->reason_len);
        put(&o, "\r\n", 2);
    }
    for (size_t i = 0; i < h->nheaders; i++) {
        const http_header_t *x = &h->headers[i];
        if (!skip_header(h, rw, x))
            put_header(&o, x->name, x->name_len, x->value, x->value_len);
    }
    for (size_t i = 0; i < rw->nextra; i++) {
        const http_header_t *x = &rw->extra[i];
        put_header(&o, x->name, x->name_len, x->value, x->value_len);
    }
    if (rw->keep_upgrade)
        puts_(&o, "Connection: upgrade\r\n");
    if (rw->content_length >= 0) {
        snprintf(num, sizeof(num), "%lld", (long long)rw->content_length);
        put_header(&o, "Content-Length", 14, num, strlen(num));
    } else if (rw->chunked) {
        puts_(&o, "Transfer-Encoding: chunked\r\n");
    }
    put(&o, "\r\n", 2);
    if (o.full)
        return -ENOSPC;
    return (ssize_t)o.len;
}
