/* zsock_watch: drive a ZeroMQ socket from a libev loop.
 *
 * ZMQ_FD is not a data fd: it is an edge-triggered "something changed, ask ZMQ_EVENTS" signal.
 * It becomes readable once when the socket's state changes, and not again until the state
 * changes again. So a watcher that reads one message per wake-up, or that sends a message
 * (which may internally consume the pending signal) without re-checking, stalls forever with
 * messages queued. The rules this module enforces:
 *
 *  1. On every wake-up, drain: receive until ZMQ_EVENTS no longer shows ZMQ_POLLIN.
 *  2. After every send and every receive, re-check ZMQ_EVENTS (zsock_watch_recheck), because
 *     either may have consumed the edge.
 *  3. Drain with a budget per loop iteration so one busy socket cannot starve timers and the
 *     other watchers; when the budget runs out with messages still pending, an ev_idle keeps
 *     the loop from blocking and the drain resumes on the next iteration.
 *
 * Only node/ uses libev and ZeroMQ together; protocol cores never see either. */
#ifndef POPMESH_NODE_MEMBERSHIP_ZSOCK_WATCH_H
#define POPMESH_NODE_MEMBERSHIP_ZSOCK_WATCH_H

#include <ev.h>
#include <stdbool.h>

typedef struct zsock_watch zsock_watch_t;

/* Called once per readable message (the whole multipart message is for the callback to
 * receive, with ZMQ_DONTWAIT). The callback must receive exactly one message (all parts) from
 * sock; return 0 to continue, -1 to stop draining for this iteration. */
typedef int (*zsock_readable_fn)(zsock_watch_t *w, void *sock, void *ctx);

/* Watches zmq socket sock on loop; budget = max messages per loop iteration (0 = 256).
 * Caller keeps owning sock; returns NULL with errno set on failure. */
zsock_watch_t *zsock_watch_new(struct ev_loop *loop, void *sock, unsigned budget,
                               zsock_readable_fn on_readable, void *ctx);
/* Stops the watchers and frees; accepts NULL; sets *wp = NULL. Does not close the socket. */
void zsock_watch_destroy(zsock_watch_t **wp);
/* Must be called after sending on the socket outside the callback (rule 2); cheap. */
void zsock_watch_recheck(zsock_watch_t *w);
/* Sends one frame with ZMQ_DONTWAIT (and ZMQ_SNDMORE if more), then rechecks.
 * 0, or -errno (-EAGAIN when the peer's queue is full: the caller drops or retries). */
int zsock_watch_send(zsock_watch_t *w, const void *data, size_t len, bool more);

/* Counters for tests and metrics. */
typedef struct zsock_watch_stats {
    unsigned long long received;    /* messages handed to the callback */
    unsigned long long wakeups;     /* ZMQ_FD readiness events */
    unsigned long long idle_drains; /* iterations resumed from the idle watcher (budget hit) */
} zsock_watch_stats_t;
void zsock_watch_get_stats(const zsock_watch_t *w, zsock_watch_stats_t *st);

#endif
