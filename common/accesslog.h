/* accesslog: one JSON line per HTTP request and per TCP connection, to a file or stdout.
 *
 * The HTTP ingress (node/http) and the data plane (node/dataplane) both write here, and the
 * one depends on the other, so the module lives below both: it knows nothing of either, only
 * an event (accesslog_event_t) made of plain strings and numbers.
 *
 * RULES
 * - Lines are batched: accesslog_write formats the line into an in-memory buffer of whole
 *   lines, and the buffer goes out in one write(2) on a descriptor opened with O_APPEND when
 *   the loop is about to block (an ev_prepare watcher), or at once when the next line could
 *   pass ACCESSLOG_BUF_MAX. So a line reaches the file at most one loop iteration after it was
 *   written, and a busy loop pays one system call per iteration instead of one per line (the
 *   system call was most of the log's cost: docs/operations.md "Access log").
 * - Lines from this process never interleave or split: a write holds only whole lines, and
 *   after a short write (a full disk) the rest of the cut line is kept at the head of the
 *   buffer and written first, next iteration, before any other line. logrotate's copy or
 *   rename never splits a line either. A line is at most ACCESSLOG_LINE_MAX bytes (every field
 *   has a budget; a field past it is cut and ends in "..."), which is PIPE_BUF: on a pipe or a
 *   socket (stdout into a shipper, which other writers may share) the buffer goes out in
 *   chunks of whole lines of at most PIPE_BUF bytes, so each chunk is written whole or not at
 *   all.
 * - Every line parses as JSON whatever the bytes of a field (a client chooses the Host, the
 *   path, the user name it types): '"', '\\' and control bytes are escaped, and bytes that are
 *   not well-formed UTF-8 are written as \u00XX of their value (so a byte 0xff reads back as
 *   U+00FF: the line stays valid JSON and the byte stays visible).
 * - Never a secret: callers pass no cookie, no Authorization header, no API key, and the URL
 *   path without its query string (tokens travel in query strings: share links' ?t=).
 * - Never a stall: the descriptor is non-blocking where that can be had without touching
 *   another process's (a regular file's write is a page-cache copy; a pipe or socket on stdout
 *   is reopened or written with MSG_DONTWAIT). A write that fails or is short (disk full, a
 *   reader that stopped) is not retried in that iteration: the lines wait in the buffer for
 *   the next one. Memory is capped by ACCESSLOG_BUF_MAX: a line that finds the buffer full is
 *   dropped whole and counted; a warning goes to the daemon's log at most once every
 *   ACCESSLOG_WARN_S.
 * - SIGHUP (the daemon's handler calls accesslog_reopen): the buffer is written to the old
 *   file first, then the path is opened again, so after logrotate renamed the file the next
 *   line goes to a new one; the old descriptor is closed only once the new one is open (a
 *   failed reopen keeps writing where it was). accesslog_destroy (the daemon's stop, after
 *   the HTTP ingress and the data plane wrote their last lines) writes the buffer too; what
 *   the file will not take then is dropped and counted.
 * - The file is created mode 0640: it names users and client addresses (personal data), not
 *   secrets, and a log shipper in the file's group may read it; nobody else may.
 *
 * Sampling: accesslog_want(log, one_in) decides per event before anything is formatted, so an
 * event that is not logged costs a branch (log off) or one PRNG draw (sampled). */
#ifndef POPMESH_COMMON_ACCESSLOG_H
#define POPMESH_COMMON_ACCESSLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACCESSLOG_LINE_MAX   4096    /* bytes of one line with its newline (PIPE_BUF) */
#define ACCESSLOG_SAMPLE_MAX 1000000 /* the largest N of "one in N" */
#define ACCESSLOG_HOPS_MAX   8       /* relays named in one line's route */
#define ACCESSLOG_WARN_S     10      /* s between warnings about dropped lines */
#define ACCESSLOG_MODE       0640    /* of a file it creates */
#define ACCESSLOG_BUF_MAX    65536   /* bytes of lines held between writes (>= LINE_MAX) */

struct ev_loop;

typedef struct accesslog accesslog_t;

enum accesslog_kind {
    ACCESSLOG_HTTP = 0, /* one HTTP request */
    ACCESSLOG_TCP,      /* one TCP connection (TLS-terminated or not) */
    ACCESSLOG_UDP,      /* one UDP flow */
};

/* Why the request was let through, or that it was not. */
enum accesslog_decision {
    ACCESSLOG_NO_DECISION = 0, /* it ended before one (a malformed request, no such resource) */
    ACCESSLOG_OPEN,            /* the resource asks for nobody (auth none, or a TCP port) */
    ACCESSLOG_RULE,            /* an allow rule matched */
    ACCESSLOG_SESSION,         /* a user's session cookie */
    ACCESSLOG_APIKEY,          /* an API key (Authorization: Bearer) */
    ACCESSLOG_SHARE,           /* a share link's session */
    ACCESSLOG_PASSWORD,        /* a sign-in with the right password (the login form) */
    ACCESSLOG_DENIED,          /* refused: reason says why */
    ACCESSLOG_PROVIDER,        /* a sign-in through an OpenID provider (its callback) */
};

/* One event. Strings may be NULL or "" (left out of the line); they are borrowed for the
 * call. */
typedef struct accesslog_event {
    enum accesslog_kind kind;
    uint64_t start_ms;    /* Unix ms the request or connection began */
    uint64_t duration_us; /* us from then to its end */
    const char *pop;      /* this PoP's name */
    const char *client;   /* "ip:port" */
    const char *user;     /* who (a user or an API key's user) */
    const char *resource;
    enum accesslog_decision decision;
    const char *reason; /* why denied, or why it failed (the site was offline...) */
    int status;         /* HTTP status answered; 0 = none (the client went away first) */
    const char *method; /* HTTP only */
    const char *host;   /* HTTP only: the Host asked for */
    const char *path;   /* HTTP only: the target's path, WITHOUT its query string */
    uint64_t bytes_in;  /* bytes from the client (HTTP: the request as received) */
    uint64_t bytes_out; /* bytes to the client */
    /* The path the traffic took; "" or NULL ingress = no route part in the line. */
    const char *ingress;                       /* the PoP the client reached (this one) */
    const char *relays[ACCESSLOG_HOPS_MAX];    /* PoPs in between, in order */
    unsigned nrelays;
    const char *egress; /* the PoP holding the site's tunnel */
    const char *site;   /* the site replica (connector) that took the stream */
} accesslog_event_t;

/* Opens the log: "stdout", or a file path (created ACCESSLOG_MODE, appended to). Lines are
 * written from an ev_prepare watcher on loop (borrowed: it must outlive the log); a NULL loop
 * writes each line at once (no batching), for tools without a loop. NULL with a reason in
 * err. Caller owns the result (accesslog_destroy). */
accesslog_t *accesslog_new(struct ev_loop *loop, const char *where, char *err, size_t errlen);
/* Writes what is buffered (lines the file will not take are dropped, with a warning), then
 * closes. Accepts NULL; sets *lp to NULL. */
void accesslog_destroy(accesslog_t **lp);

/* Writes the buffered lines to the file opened so far, then opens the path again (after
 * logrotate moved it); for stdout only the first. 0, or -errno with the reason in err (the log
 * keeps the old descriptor). */
int accesslog_reopen(accesslog_t *l, char *err, size_t errlen);

/* Writes what is buffered now, as the loop would before blocking (whole lines; what the file
 * does not take stays buffered). Nothing to do for NULL. */
void accesslog_flush(accesslog_t *l);
/* Batching (with a loop): lines are held until there are `bytes` of them or the oldest is `ms`
 * old, instead of written at the end of every loop iteration, so a busy PoP makes one write(2)
 * per batch rather than per handful of lines. 0 ms (the default) writes every iteration.
 * A reopen, accesslog_flush and the close still write at once; a crash loses at most the held
 * lines. popd uses ACCESSLOG_BATCH_BYTES and ACCESSLOG_BATCH_MS. */
#define ACCESSLOG_BATCH_BYTES 32768
#define ACCESSLOG_BATCH_MS    200
void accesslog_set_batch(accesslog_t *l, size_t bytes, uint32_t ms);

/* Whether to log this event: one_in 0 = never, 1 = always, N = a random one in N. False when
 * l is NULL (the log is off). */
bool accesslog_want(accesslog_t *l, uint32_t one_in);

/* Formats ev as one line (with its newline) into buf (cap >= ACCESSLOG_LINE_MAX). Its length. */
size_t accesslog_format(const accesslog_event_t *ev, char *buf, size_t cap);

/* Formats ev into the buffer; it is written before the loop blocks (with the other lines of
 * this iteration) or now when the buffer is full. Counts a line dropped for want of room. */
void accesslog_write(accesslog_t *l, const accesslog_event_t *ev);

typedef struct accesslog_stats {
    uint64_t lines;   /* written whole */
    uint64_t dropped; /* not written (or not whole): the buffer full (disk full, a reader that
                         stalled), or still buffered when the file was reopened or closed */
    uint64_t reopens; /* successful accesslog_reopen calls */
    uint64_t writes;  /* write(2) or send(2) calls made, failed ones included */
    uint64_t pending; /* lines in the buffer now (one cut by a short write included) */
} accesslog_stats_t;
void accesslog_stats(const accesslog_t *l, accesslog_stats_t *st);

/* JSON string escaping of s[0..n) into out, at most budget bytes of output (cut on a
 * character boundary, then "..." when cut); no quotes added. Returns the bytes written.
 * Exposed for the unit test. */
size_t accesslog_json_escape(const char *s, size_t n, char *out, size_t budget);

#endif
