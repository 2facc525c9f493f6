/* admin: the admin listener of a PoP (--admin-listen): /metrics, /healthz, /readyz.
 *
 * Plain HTTP/1.1 on its own address, never the public ingress (nodecfg refuses an admin
 * address equal to an ingress one). One request per connection (Connection: close), read
 * with the ingress's bounded request parser (httpmsg.h); bounded in every way a client could
 * hold it: ADMIN_MAX_CONNS connections at once (past it: 503 and close), ADMIN_MAX_REQUEST
 * bytes of request head, ADMIN_TIMEOUT_S to send the request and then between two writes of
 * the answer.
 *
 *   GET /metrics  Prometheus text format 0.0.4 (adminmetrics.h), only to clients inside one of
 *                 the allowed networks (--metrics-allow; default 127.0.0.0/8 and ::1); others
 *                 get 403 with the reason.
 *   GET /healthz  200 "ok": the event loop answers.
 *   GET /readyz   200 "ready" when the ready callback says so, else 503 and its reasons, one
 *                 per line (what is checked is the daemon's business: docs/operations.md).
 * /healthz and /readyz answer any client that reaches the listener: load balancers and
 * orchestrators probe from their own addresses. */
#ifndef POPMESH_NODE_ADMIN_ADMIN_H
#define POPMESH_NODE_ADMIN_ADMIN_H

#include "node/http/httpstats.h"
#include "node/records/cidr.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADMIN_MAX_CONNS   16     /* concurrent admin connections */
#define ADMIN_MAX_REQUEST 8192   /* bytes of a request head */
#define ADMIN_MAX_HEADERS 64     /* header lines of a request */
#define ADMIN_MAX_BODY    1024   /* bytes of a request body (GETs have none) */
#define ADMIN_TIMEOUT_S   5.0    /* s to send the request; then s between two writes */
#define ADMIN_ALLOW_MAX   16     /* networks in the allow list */
#define ADMIN_REASONS_MAX 2048   /* bytes of /readyz's reasons */

struct control;
typedef struct admin admin_t;

/* Fills reasons (len bytes: one reason per line, each ending in '\n') with what keeps the node
 * from being ready; returns true when ready (reasons then unused). */
typedef bool (*admin_ready_fn)(void *ctx, char *reasons, size_t len);

typedef struct admin_opts {
    struct ev_loop *loop;
    const char *listen;         /* "host:port" */
    const auth_cidr_t *allow;   /* networks that may read /metrics (copied); */
    size_t nallow;              /* 0 = 127.0.0.0/8 and ::1 */
    struct control *control;    /* borrowed: the commands metrics are read from */
    const httpstats_t *http;    /* borrowed: per-resource HTTP counters; NULL = none */
    admin_ready_fn ready;       /* NULL = always ready */
    void *ctx;                  /* for ready */
} admin_opts_t;

/* Binds the listener. NULL with a reason in err. Caller owns the result. */
admin_t *admin_new(const admin_opts_t *o, char *err, size_t errlen);
/* Closes the listener and every connection; accepts NULL; sets *ap = NULL. */
void admin_destroy(admin_t **ap);

typedef struct admin_stats {
    uint64_t requests;    /* requests answered (any path, any status) */
    uint64_t scrapes;     /* /metrics answered 200 */
    uint64_t forbidden;   /* /metrics refused: client not in the allow list */
    uint64_t bad;         /* requests refused by the parser or for their method or path */
    uint64_t refused_cap; /* connections refused: ADMIN_MAX_CONNS open */
    uint64_t timeouts;    /* connections closed by ADMIN_TIMEOUT_S */
    unsigned conns;       /* open now */
} admin_stats_t;
void admin_get_stats(const admin_t *a, admin_stats_t *st);

#endif
