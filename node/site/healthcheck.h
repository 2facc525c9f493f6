/* healthcheck: TCP and HTTP health checks of a site's targets, driven by a libev loop.
 *
 * The site connector declares the checks it wants (hc_set, idempotent) and learns which
 * targets are usable through on_change and hc_healthy. A check is identified by all of its
 * hc_target_t (target, kind, path and its settings): a target shared by two resources with
 * different check kinds or settings is checked once per distinct check, each with its own
 * state, and a check whose settings change is a new check.
 *
 *  - HC_TCP: a non-blocking connect; success = connected within timeout_ms (then closed).
 *  - HC_HTTP: connect, send "GET PATH HTTP/1.1" with "Host: TARGET" (or the check's host),
 *    "User-Agent: popmesh-healthcheck" and "Connection: close", read until the end of the
 *    response headers (at most HC_RESPONSE_MAX bytes, parsed by libhttp-parser); success = a
 *    final status 200..399 (or one of the check's status ranges) within timeout_ms. Interim
 *    1xx responses (all but 101) are skipped.
 *
 * Interval, timeout, rise and fall are the hc_t's (hc_config_t) unless a check sets its own.
 *
 * STATES. A new check is HC_UNKNOWN until its first verdict, and unknown counts as usable
 * (hc_healthy is true), so a freshly started site serves at once. `rise` consecutive
 * successes make it HC_HEALTHY, `fall` consecutive failures make it HC_UNHEALTHY (from unknown
 * too). on_change fires exactly when hc_healthy() of a check flips: unknown/healthy ->
 * unhealthy and unhealthy -> healthy; unknown -> healthy is visible only in hc_snapshot.
 *
 * ADDRESSES. Targets are "IPv4:port", "[IPv6]:port" (a zone, "[fe80::1%eth0]:80", is allowed)
 * or "localhost:port" (checked as 127.0.0.1). Names are refused with -EINVAL: getaddrinfo
 * blocks, for seconds when DNS is slow, and this module never blocks the loop. A caller with
 * names resolves them off the loop and declares the addresses; re-resolving (say every 60 s)
 * is then a new hc_set, which keeps the state of every check whose address did not change.
 *
 * SCHEDULE. A new check runs first after a random delay in [0, interval_ms), so a batch of new
 * targets is spread over one interval, then every interval_ms +-10% (random per run) counted
 * from the start of the previous run, so checks never synchronise. If a run takes longer than
 * the interval (timeout_ms >= interval_ms) the next one starts as soon as it ends.
 *
 * A run is the only one of its check in flight: the next is scheduled when it ends, so a check
 * never holds more than one socket, however slow or strange its target (a target that leads
 * back into the mesh costs one connection per interval, never a growing number).
 *
 * Callbacks come only from the loop, never from inside hc_new, hc_set or hc_destroy. on_change
 * may call hc_set and hc_destroy (even removing or destroying the check it is told about).
 *
 * SOCKETS. A caller that must know the checks' sockets (popsite records their local addresses,
 * to recognise a check that comes back to it through the mesh) sets a socket hook: it is called
 * with open = true right after a run's connect() is issued (the local address is bound by
 * then, before anything can reach the target), and with open = false right before that socket
 * is closed, from anywhere including hc_set and hc_destroy. *slot is per-run storage for the
 * caller, NULL at open and reset to NULL after the close call. The hook must not call hc. */
#ifndef POPMESH_NODE_SITE_HEALTHCHECK_H
#define POPMESH_NODE_SITE_HEALTHCHECK_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HC_RESPONSE_MAX 16384 /* bytes: a response whose headers do not end by here fails */
#define HC_TARGET_MAX   96    /* bytes of a target string, without the NUL */
#define HC_PATH_MAX     1024  /* bytes of an HTTP path, without the NUL */
#define HC_MAX_CHECKS   1024  /* checks per hc_t */
#define HC_REASON_MAX   128   /* bytes of a result text, with the NUL */
#define HC_STATUS_MAX   16    /* status ranges per check */
#define HC_HOST_MAX     260   /* bytes of a check's Host header value, without the NUL */

typedef struct hc hc_t;

enum hc_kind { HC_TCP = 1, HC_HTTP = 2 };
enum hc_state { HC_UNKNOWN = 0, HC_HEALTHY = 1, HC_UNHEALTHY = 2 };

/* A zero field takes the default shown. */
typedef struct hc_config {
    uint32_t interval_ms; /* ms from a run's start to the next one's, +-10%; 1000; <= 86400000 */
    uint32_t timeout_ms;  /* ms a run may take, connect to end of headers; 800; <= 600000 */
    uint32_t rise;        /* consecutive successes to become healthy; 2; <= 1000 */
    uint32_t fall;        /* consecutive failures to become unhealthy; 1; <= 1000 */
} hc_config_t;

/* HTTP statuses lo..hi, both included, 100 <= lo <= hi <= 999. */
typedef struct hc_code_range {
    uint16_t lo, hi;
} hc_code_range_t;

/* One check. Strings and status are borrowed for the duration of the call they are passed to.
 * A zero setting takes the hc_t's (hc_config_t), with that config's limits. */
typedef struct hc_target {
    const char *target; /* "host:port", see ADDRESSES */
    enum hc_kind kind;
    const char *path;     /* HC_HTTP: "/..." of printable ASCII without spaces, NULL or "" = "/";
                             ignored (and reported as NULL) for HC_TCP */
    uint32_t interval_ms; /* ms; 0 = the hc_t's */
    uint32_t timeout_ms;  /* ms; 0 = the hc_t's */
    uint32_t rise;        /* 0 = the hc_t's */
    uint32_t fall;        /* 0 = the hc_t's */
    const hc_code_range_t *status; /* HC_HTTP: the statuses that succeed; NULL/0 = 200..399 */
    size_t nstatus;                /* 0..HC_STATUS_MAX; ignored (reported 0) for HC_TCP */
    const char *host; /* HC_HTTP: the Host header's value, printable ASCII without spaces, at
                         most HC_HOST_MAX; NULL or "" = the target; ignored for HC_TCP */
} hc_target_t;

/* `check` (normalised: path NULL for TCP, "/" for an empty HTTP path, status and host NULL
 * when unset or TCP) and `why` ("connected",
 * "HTTP 200", "connect: Connection refused", "timeout after 800 ms (connecting)", "HTTP 503",
 * "bad HTTP response: ...") are borrowed for the duration of the call. */
typedef void (*hc_change_fn)(void *ctx, const hc_target_t *check, bool healthy, const char *why);

/* Checks run on loop (borrowed, must outlive h); cfg may be NULL (all defaults); on_change may
 * be NULL. Returns NULL with errno = EINVAL for a NULL loop or a config field out of range. */
hc_t *hc_new(struct ev_loop *loop, const hc_config_t *cfg, hc_change_fn on_change, void *ctx);
/* Stops every check (closing sockets in flight) and frees; accepts NULL; sets *hp = NULL.
 * Calls no callback. */
void hc_destroy(hc_t **hp);

struct sockaddr;
/* to/tolen: where the socket connects (the check's parsed target). */
typedef void (*hc_socket_fn)(void *ctx, const hc_target_t *check, int fd, const struct sockaddr *to,
                             unsigned tolen, bool open, void **slot);
/* Sets (fn NULL: clears) the socket hook; it sees only sockets opened after this call. */
void hc_set_socket_hook(hc_t *h, hc_socket_fn fn, void *ctx);

/* 0 if t is a check hc_set accepts; -EINVAL otherwise, with *why (may be NULL) set to a static
 * text naming the problem. */
int hc_target_validate(const hc_target_t *t, const char **why);
/* Declares the full set of checks wanted now. Checks already present keep their state,
 * counters and schedule; new ones start as HC_UNKNOWN; checks not in targets stop at once
 * (a run in flight is abandoned) and never call on_change again. Duplicates count once.
 * targets is borrowed. All or nothing: 0, or -EINVAL (an invalid entry, logged with its index
 * and reason) or -E2BIG (more than HC_MAX_CHECKS distinct checks) with nothing changed. */
int hc_set(hc_t *h, const hc_target_t *targets, size_t n);

/* True if the check is declared and not HC_UNHEALTHY (unknown counts as healthy). */
bool hc_healthy(const hc_t *h, const hc_target_t *check);

typedef struct hc_status {
    hc_target_t check;         /* normalised; strings borrowed like last_result */
    enum hc_state state;       /* HC_UNKNOWN until rise successes or fall failures */
    const char *last_result;   /* text of the last completed run, "" before the first */
    const char *last_error;    /* text of the last failed run (kept after later successes),
                                  "" if none failed yet */
    uint32_t last_duration_us; /* us, start to verdict of the last completed run */
    uint32_t successes;        /* consecutive successes up to now (0 after a failure) */
    uint32_t failures;         /* consecutive failures up to now (0 after a success) */
    uint64_t runs;             /* completed runs since the check was added */
} hc_status_t;

/* Writes the status of up to max checks, in the order of the last hc_set, to out (may be NULL
 * when max is 0) and returns the number of checks. The strings in out are borrowed: valid
 * until control returns to the loop or the next hc_set / hc_destroy. */
size_t hc_snapshot(const hc_t *h, hc_status_t *out, size_t max);

/* The response parser of HC_HTTP, pure, for tests and the fuzzer. buf holds the first len
 * bytes of a response. HC_PARSE_COMPLETE with *status set (0..999, never a 1xx interim code)
 * once the headers of the final response have ended; HC_PARSE_NEED_MORE if they may end
 * further on; HC_PARSE_BAD if they cannot (not HTTP, malformed, or no end of headers in the
 * first HC_RESPONSE_MAX bytes). Bytes past the end of the headers are not looked at. Feeding a
 * longer buf with the same start never changes a COMPLETE or BAD answer. */
enum hc_parse { HC_PARSE_BAD = -1, HC_PARSE_NEED_MORE = 0, HC_PARSE_COMPLETE = 1 };
enum hc_parse hc_parse_response(const uint8_t *buf, size_t len, int *status);

#endif
