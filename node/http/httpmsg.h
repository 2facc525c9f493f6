/* httpmsg: incremental HTTP/1.1 message readers for the reverse proxy (sans-I/O).
 *
 * A reader takes the bytes of one direction of one connection, as they arrive, and reports
 * each message through three callbacks: on_head (request or status line and headers, parsed by
 * libhttp-parser and checked against the rules in docs/http.md), on_body (decoded body bytes,
 * streamed: never buffered whole) and on_done. Only the head is buffered, bounded by
 * max_header_bytes. No sockets, no loop: the caller reads, feeds, and writes what it decides.
 *
 * REFUSALS. A message that is ambiguous (the request smuggling vectors: Content-Length with
 * Transfer-Encoding, repeated Content-Length, a Transfer-Encoding other than "chunked",
 * obs-fold, bare CR, NUL...), too large or of another HTTP version is refused: feed returns -1
 * and http_reader_error() gives the status to answer and a static reason. A refusal is final;
 * the connection must be closed after answering. For a response reader the status says what was
 * wrong (400 malformed, 413, 431...): the proxy answers its client 502 whatever it is.
 *
 * STOPPING. feed consumes up to the end of a message and returns early (a count < len) when
 *  - the message was an upgrade (WebSocket, 101 Switching Protocols): the rest of the bytes
 *    belong to the new protocol and are the caller's to relay raw;
 *  - the message ended the connection (not keep-alive): bytes after it are never consumed;
 *  - on_done returned 1: the caller wants to handle one message at a time (no pipelining
 *    concurrency); it feeds the unconsumed rest again when ready.
 * After an upgrade or the end of the connection, every further feed returns 0. */
#ifndef POPMESH_NODE_HTTP_HTTPMSG_H
#define POPMESH_NODE_HTTP_HTTPMSG_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define HTTP_DEFAULT_MAX_HEADER_BYTES 16384u /* bytes */
#define HTTP_DEFAULT_MAX_HEADERS      100u
#define HTTP_LIMIT_MAX_HEADER_BYTES   (1u << 20) /* upper bound accepted by http_reader_new */
#define HTTP_LIMIT_MAX_HEADERS        10000u

typedef struct http_limits {
    uint32_t max_header_bytes; /* bytes of start line + headers (+ blank lines before it); past
                                  it: 431. 1..HTTP_LIMIT_MAX_HEADER_BYTES */
    uint32_t max_headers;      /* header lines per message; past it: 431. 1..10000 */
    uint64_t max_body_bytes;   /* decoded body bytes per message; 0 = unlimited; past it: 413 */
} http_limits_t;

/* 16 KiB of head, 100 headers, unlimited body. */
void http_limits_defaults(http_limits_t *l);

typedef struct http_header {
    const char *name;  /* as sent, not NUL-terminated */
    size_t name_len;   /* bytes */
    const char *value; /* leading and trailing SP/HT removed, not NUL-terminated */
    size_t value_len;  /* bytes */
} http_header_t;

/* A request or response head. Every pointer is borrowed from the reader: valid from on_head
 * until on_done of the same message returns (for a 1xx: until the next on_head; the next
 * message reuses the buffer), and, when feed returned after that message, until the next
 * http_reader_feed/eof/destroy call. Strings are not NUL-terminated (method_name and the empty
 * reason of a request are). */
typedef struct http_head {
    bool request;                    /* true: a request head, false: a response head */
    int method;                      /* enum http_method (requests) */
    const char *method_name;         /* "GET"... static (requests), "" for responses */
    const char *target;              /* request target as sent: origin-form "/path?q", or "*" */
    size_t target_len;               /* bytes */
    int status;                      /* responses: 100..999 */
    const char *reason;              /* responses: reason phrase as sent (may be empty) */
    size_t reason_len;               /* bytes */
    unsigned http_major, http_minor; /* 1.0 or 1.1 */
    const http_header_t *headers;    /* in order received, all of them (hop-by-hop too) */
    size_t nheaders;
    const char *host;       /* the Host header's value (requests), NULL if none */
    size_t host_len;        /* bytes */
    bool keep_alive;        /* http_should_keep_alive: the connection may carry another message */
    bool chunked;           /* Transfer-Encoding: chunked */
    int64_t content_length; /* bytes; -1 = no Content-Length */
    bool upgrade;           /* Connection: upgrade + Upgrade (requests), 101 (responses) */
    const char *upgrade_proto; /* the Upgrade header's value ("websocket"), NULL if none */
    size_t upgrade_proto_len;  /* bytes */
} http_head_t;

typedef struct http_reader_cbs {
    void *ctx; /* passed to every callback */
    /* A head passed every check. Return 0 to go on, < 0 to refuse the message (feed returns
     * -1, status 500), or 1: for a response, it has no body whatever its headers say; for an
     * upgrade request, the caller declines the upgrade (it will forward the request without
     * Upgrade), so the reader goes on reading HTTP after it. An upgrade request's body, if it
     * has one, still follows.
     * Also called for interim 1xx responses (100 Continue, 103): those carry no body and no
     * on_done follows; the final response comes next with its own on_head. */
    int (*on_head)(void *ctx, const http_head_t *h);
    /* Decoded body bytes (chunk framing removed), borrowed for the call. 0, or < 0 to abort. */
    int (*on_body)(void *ctx, const uint8_t *data, size_t len);
    /* The message is complete. 0 to go on, 1 to make feed return now (after this message),
     * < 0 to abort. */
    int (*on_done)(void *ctx);
} http_reader_cbs_t;

typedef struct http_reader http_reader_t;

/* type: HTTP_REQUEST or HTTP_RESPONSE. lim NULL = defaults. cbs is copied. Returns NULL with
 * errno EINVAL on a bad type or limit. Caller owns the result. */
http_reader_t *http_reader_new(enum http_parser_type type, const http_limits_t *lim,
                               const http_reader_cbs_t *cbs);
/* Accepts NULL; sets *rp = NULL. Must not be called from a callback. */
void http_reader_destroy(http_reader_t **rp);

/* Feeds the next len bytes (borrowed for the call). Returns the bytes consumed: len, or fewer
 * when the reader stopped (see STOPPING); -1 on a refusal, then and ever after. Callbacks run
 * from inside this call. */
ssize_t http_reader_feed(http_reader_t *r, const uint8_t *data, size_t len);

/* After a refusal: the status to answer (400, 413, 431, 501, 505; 500 when a callback aborted)
 * and a static reason in *reason (may be NULL). 0 and "" when there was none. */
int http_reader_error(const http_reader_t *r, const char **reason);

/* Response readers: whether the request being answered was HEAD (the response then has no
 * body whatever its headers say). Stays in force until changed. */
void http_reader_expect_head(http_reader_t *r, bool head_request);

/* The peer closed its side. Completes a response whose body runs to EOF (on_body/on_done may
 * run). Returns 0 if the reader was between messages (or just completed one), -1 if a message
 * was cut short (http_reader_error: 400 "truncated"). */
int http_reader_eof(http_reader_t *r);

/* True between the first byte of a message and its end (for idle vs. request timeouts). */
bool http_reader_in_message(const http_reader_t *r);

/* How to re-serialise a head for the next hop. */
typedef struct http_head_rewrite {
    const char *const *drop; /* header names to remove (case-insensitive), borrowed */
    size_t ndrop;
    const http_header_t *extra; /* headers to append, borrowed; no control byte but HT */
    size_t nextra;
    int64_t content_length; /* bytes: write "Content-Length: N"; -1 = none */
    bool chunked;           /* write "Transfer-Encoding: chunked" */
    bool keep_upgrade;      /* keep the Upgrade header and write "Connection: upgrade" */
    /* NULL, or true for each further header to remove (a rule rather than a list of names:
     * look-alike spellings, one cookie among several Set-Cookie...) */
    bool (*drop_if)(const http_header_t *x);
} http_head_rewrite_t;

/* Writes h as "METHOD TARGET HTTP/1.1\r\n" (requests) or "HTTP/1.1 STATUS REASON\r\n"
 * (responses), then its headers except the hop-by-hop ones (Connection, Keep-Alive, Proxy-*,
 * TE, Trailer, Transfer-Encoding, Upgrade unless keep_upgrade, and any header the Connection
 * header names, Host excepted), Content-Length, and those in rw->drop; then rw->extra, then the
 * framing rw asks for, then "\r\n". Writes into buf (cap bytes, borrowed), no NUL added.
 * Returns the bytes written, -ENOSPC if they do not fit, -EINVAL on a bad rw (both framings, an
 * extra header value with a control byte other than HT, a name that is not a token). */
ssize_t http_head_serialize(const http_head_t *h, const http_head_rewrite_t *rw, char *buf,
                            size_t cap);

#endif
