/* udpsite: the site's end of UDP flows (node/dataplane/udpingress.h is the PoP's). An OPEN
 * whose chosen target is "udp://host:port" gets a UDP socket connected to that target; the
 * stream's datagrams (udpframe.h) are sent on it, and what the target answers comes back on
 * the stream, each datagram framed. Connected, so the kernel drops datagrams from anyone but
 * the target, and the target sees one source port per client flow.
 *
 * Bounds: a flow holds at most UDPSITE_QUEUE_MAX bytes for a stream out of credit (past it a
 * datagram from the target is dropped and counted); a datagram from the target larger than
 * UDPFRAME_PAYLOAD_MAX is dropped and counted; a flow ends with its stream (the PoP resets it
 * after the resource's idle timeout) or after UDPSITE_IDLE_MAX_S without a datagram, a
 * backstop for a PoP that never does. */
#ifndef POPMESH_NODE_SITE_UDPSITE_H
#define POPMESH_NODE_SITE_UDPSITE_H

#include "node/dataplane/tconn.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#define UDPSITE_QUEUE_MAX  (256u << 10) /* bytes queued per flow towards the PoP */
#define UDPSITE_IDLE_MAX_S 3700.        /* s: longer than any resource's udp_idle */
#define UDPSITE_BURST      64           /* datagrams read per readiness event */

typedef struct udpsite udpsite_t;

typedef struct udpsite_stats {
    uint64_t flows, flows_opened; /* now, since start */
    uint64_t dg_to_target, dg_from_target;
    uint64_t dropped_oversize, dropped_queue, send_failed;
} udpsite_stats_t;

udpsite_t *udpsite_new(struct ev_loop *loop);
/* Ends every flow (streams reset). Accepts NULL; sets *p = NULL. */
void udpsite_destroy(udpsite_t **p);
/* A flow for the peer's OPEN sid on c, to target (a connected UDP socket fd, taken): accepts
 * the stream and sets its user pointer. done(ctx) is called once when the flow ends (the
 * site's bookkeeping of the target). 0, or -errno (fd closed, stream untouched). */
int udpsite_start(udpsite_t *x, tconn_t *c, uint64_t sid, int fd, void (*done)(void *ctx),
                  void *ctx);
/* Whether a stream's user pointer is one of our flows. */
bool udpsite_owns(const void *user);
/* The counters (popsite logs them on SIGUSR1). */
void udpsite_stats(const udpsite_t *x, udpsite_stats_t *st);

/* Stream events for streams udpsite_owns. */
void udpsite_on_data(void *user, tconn_t *c, uint64_t sid, const uint8_t *d, size_t n);
void udpsite_on_writable(void *user, tconn_t *c, uint64_t sid);
void udpsite_on_end(void *user, tconn_t *c, uint64_t sid); /* fin, reset or closed */

#endif
