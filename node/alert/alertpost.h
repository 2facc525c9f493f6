/* alertpost: webhook deliveries, off the event loop.
 *
 * A bounded queue on the loop and one worker thread that runs libcurl (the pattern of
 * node/acme/acmehttp.h: a job handed over under a mutex, the result handed back through an
 * ev_async). One POST is under way at a time, each attempt bounded by timeout_ms from connect to
 * last byte, so a receiver that accepts and never answers holds the worker that long and no
 * longer, and never the loop: the loop only queues, and reads results.
 *
 * RETRIES. A delivery succeeds on a 2xx answer. Anything else (no connection, a timeout, any
 * other status) is tried again after backoff_min_ms, doubling to backoff_max_ms, until it has
 * been tried attempts times; then it is given up, counted (failed) and logged. Deliveries wait
 * for their turn independently: one in backoff does not hold the others back.
 *
 * BOUND. At most queue_max deliveries are held (waiting, in backoff, or under way). A new one
 * beyond that drops the oldest waiting one, counted (dropped) and logged, so a receiver that is
 * down for a day costs queue_max bodies of memory, never more.
 *
 * Logs name the alert and the URL's scheme://host[:port] only: the path or query of a webhook
 * URL is often its secret. */
#ifndef POPMESH_NODE_ALERT_ALERTPOST_H
#define POPMESH_NODE_ALERT_ALERTPOST_H

#include <ev.h>
#include <stddef.h>
#include <stdint.h>

#define ALERTPOST_QUEUE_MAX      256        /* deliveries held */
#define ALERTPOST_TIMEOUT_MS     5000       /* ms: one attempt, connect to last byte */
#define ALERTPOST_ATTEMPTS       5          /* tries of one delivery */
#define ALERTPOST_BACKOFF_MIN_MS 1000       /* ms before the first retry, then doubling */
#define ALERTPOST_BACKOFF_MAX_MS 60000      /* ms: the cap */
#define ALERTPOST_BODY_MAX       (64 << 10) /* bytes of one event's JSON */

typedef struct alertpost alertpost_t;

typedef struct alertpost_opts {
    struct ev_loop *loop;
    unsigned queue_max;      /* 0 = ALERTPOST_QUEUE_MAX */
    uint32_t timeout_ms;     /* 0 = ALERTPOST_TIMEOUT_MS */
    unsigned attempts;       /* 0 = ALERTPOST_ATTEMPTS */
    uint32_t backoff_min_ms; /* 0 = ALERTPOST_BACKOFF_MIN_MS */
    uint32_t backoff_max_ms; /* 0 = ALERTPOST_BACKOFF_MAX_MS */
} alertpost_opts_t;

typedef struct alertpost_stats {
    uint64_t queued_total;    /* deliveries accepted */
    uint64_t sent;            /* delivered (2xx) */
    uint64_t attempts_failed; /* attempts that failed (each retry counts) */
    uint64_t failed;          /* deliveries given up after every attempt */
    uint64_t dropped;         /* deliveries dropped from a full queue (the oldest waiting) */
    uint64_t pending;         /* held now, the one under way included */
} alertpost_stats_t;

/* NULL with errno (the worker thread could not start). */
alertpost_t *alertpost_new(const alertpost_opts_t *o);
/* Stops the worker, aborting an attempt under way; drops what is queued. Accepts NULL. */
void alertpost_destroy(alertpost_t **pp);
/* Queues one POST of body (Content-Type: application/json) to url for the alert named name
 * about event id. Copies every string. */
void alertpost_submit(alertpost_t *p, const char *name, const char *url, const char *event,
                      const char *body);
void alertpost_stats(const alertpost_t *p, alertpost_stats_t *out);

/* The delay before retry number n (1 = the first retry): min doubling, capped. */
uint64_t alertpost_backoff_ms(unsigned n, uint32_t min_ms, uint32_t max_ms);

#endif
