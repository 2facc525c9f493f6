/* httpstats: per-resource counters of the HTTP ingress, for /metrics (node/admin).
 *
 * The proxy finds a resource's entry once per request (a hash of its name) and then only
 * increments plain integers on it: no lock (one loop thread), no allocation after the first
 * request to a resource. Entries are never freed before the table (a deleted resource keeps
 * its counters, as Prometheus counters must not go back), and never move, so a connection
 * may hold a pointer to its request's entry. The table is bounded: past max entries, requests
 * to further resources are counted in `overflow` only.
 *
 * Latency is the time from a request's head being read to its response head (from the
 * application, or an answer made by the PoP itself: a refusal, a redirect to sign in), in
 * fixed buckets: the histogram's bounds never change, so series stay comparable. */
#ifndef POPMESH_NODE_HTTP_HTTPSTATS_H
#define POPMESH_NODE_HTTP_HTTPSTATS_H

#include <stddef.h>
#include <stdint.h>

#define HTTPSTATS_BUCKETS     11     /* finite upper bounds; one more bucket counts above them */
#define HTTPSTATS_DEFAULT_MAX 100000 /* resources with counters */
#define HTTPSTATS_NAME_MAX    63     /* bytes of a resource name (NODECFG_NAME_MAX) */

/* s: upper bounds of the latency buckets, ascending */
extern const double httpstats_bounds[HTTPSTATS_BUCKETS];

typedef struct httpstats_res {
    char name[HTTPSTATS_NAME_MAX + 1];
    uint64_t requests;                         /* requests routed to the resource */
    uint64_t responses[5];                     /* final responses by class: 1xx..5xx */
    uint64_t bytes_in;                         /* bytes: request bodies, as decoded */
    uint64_t bytes_out;                        /* bytes: response bodies, as decoded */
    uint64_t latency[HTTPSTATS_BUCKETS + 1];   /* responses per bucket (not cumulative) */
    uint64_t latency_sum_us;                   /* us: sum of all latencies */
} httpstats_res_t;

typedef struct httpstats httpstats_t;

/* max: entries at most (0 = HTTPSTATS_DEFAULT_MAX). Caller owns the result. */
httpstats_t *httpstats_new(size_t max);
/* Accepts NULL; sets *sp = NULL. */
void httpstats_destroy(httpstats_t **sp);

/* The entry of resource name (created at its first use), or NULL when name is too long or the
 * table is full (then counted in httpstats_overflow). Valid until httpstats_destroy. */
httpstats_res_t *httpstats_get(httpstats_t *s, const char *name);

/* A final response of status (100..599; others count nowhere) after seconds. */
static inline void httpstats_response(httpstats_res_t *r, int status, double seconds)
{
    if (status >= 100 && status < 600)
        r->responses[status / 100 - 1]++;
    int b = 0;
    while (b < HTTPSTATS_BUCKETS && seconds > httpstats_bounds[b])
        b++;
    r->latency[b]++;
    r->latency_sum_us += seconds > 0 ? (uint64_t)(seconds * 1e6) : 0;
}

/* Entries in the order they were created. */
size_t httpstats_count(const httpstats_t *s);
const httpstats_res_t *httpstats_at(const httpstats_t *s, size_t i);
/* Requests not counted per resource because the table was full. */
uint64_t httpstats_overflow(const httpstats_t *s);

#endif
