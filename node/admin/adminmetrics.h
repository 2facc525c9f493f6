/* adminmetrics: what /metrics shows, from the counters the daemon already keeps.
 *
 * Nothing is counted twice: the values are read from the answers of the control commands
 * `status`, `dns.status` and `members` (the same that `meshctl --json status` prints), run
 * in-process, and from the HTTP ingress's per-resource counters (httpstats.h). A table maps
 * each field to its metric name (popmesh_ prefix, _total for counters, base units: seconds,
 * bytes), type and help; the list is in docs/operations.md. A field a command does not send
 * (no HTTP listener, no DNS) gives no sample. */
#ifndef POPMESH_NODE_ADMIN_ADMINMETRICS_H
#define POPMESH_NODE_ADMIN_ADMINMETRICS_H

#include "node/admin/promtext.h"
#include "node/http/httpstats.h"

#include <msgpack.h>

struct control;

/* The parsed answers the metrics are made from; any may be NULL (that part is left out). */
typedef struct adminmetrics_src {
    const msgpack_object *status;  /* `status` */
    const msgpack_object *dns;     /* `dns.status` */
    const msgpack_object *members; /* `members` (an array) */
    const httpstats_t *http;       /* per-resource HTTP counters */
} adminmetrics_src_t;

/* Appends every metric to out. */
void adminmetrics_render(const adminmetrics_src_t *src, promtext_t *out);

/* Runs the commands on ctl and renders them with http (may be NULL). */
void adminmetrics_collect(struct control *ctl, const httpstats_t *http, promtext_t *out);

#endif
