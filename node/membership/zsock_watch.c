/* zsock_watch: drive a ZeroMQ socket from a libev loop.
 *
 * BACKGROUND
 *
 * ZMQ_FD is the read end of libzmq's internal signaler (an eventfd or socketpair). libzmq writes
 * to it when a command arrives for the socket (e.g. "a pipe became readable") and reads it back
 * whenever the application thread processes commands, which happens inside zmq_recv, zmq_send
 * and zmq_getsockopt(ZMQ_EVENTS). A pipe only sends "activate_read" when it goes from empty to
 * non-empty, so once the application has seen the signal, further messages on the same pipe
 * arrive silently. The fd therefore says "the state changed, ask ZMQ_EVENTS", never "there is a
 * message", and any libzmq call may swallow the one readiness edge we were going to wait for.
 *
 * BEHAVIOR
 *
 * - io_cb (ZMQ_FD readable) and resume_cb both call drain(), which asks ZMQ_EVENTS before every
 *   message and hands the callback one message at a time until ZMQ_POLLIN is gone. Only
 *   ZMQ_EVENTS decides; the fd is a hint to come and look.
 * - drain() stops after `budget` messages per loop iteration (counted with ev_iteration, so the
 *   io and resume paths share one budget). If ZMQ_POLLIN is still set when it stops, it arms
 *   the resume pair described below; the fd will not fire again for those messages.
 * - zsock_watch_recheck() (and zsock_watch_send(), which calls it) asks ZMQ_EVENTS and arms the
 *   resume pair if a message is pending. It never drains inline: a send from inside the
 *   callback would otherwise recurse into the callback, and a send from another watcher would
 *   bypass the budget.
 *
 * The resume pair: an ev_check does the draining and an ev_idle with an empty callback only
 * keeps ev_run from blocking in the poll. Draining from the ev_idle itself would be simpler but
 * libev queues idle watchers only when nothing else of the same priority is pending, so a busy
 * neighbour (a tun fd that is always readable, a burst on another socket) could postpone our
 * drain indefinitely. Check watchers run on every iteration, right after the poll, whatever
 * else is pending; the idle watcher makes that poll return at once. Both are stopped as soon as
 * ZMQ_EVENTS shows no input, so an idle socket costs nothing per iteration. */
#include "node/membership/zsock_watch.h"

#include "common/log.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <zmq.h>

#define ZSOCK_WATCH_DEFAULT_BUDGET 256

struct zsock_watch {
    struct ev_loop *loop;
    void *sock;                    /* borrowed; the caller closes it after destroy */
    zsock_readable_fn on_readable; /* called once per pending message */
    void *ctx;                     /* passed to on_readable */
    unsigned budget;               /* messages per loop iteration */
    unsigned used;                 /* messages handed over during iteration `iteration` */
    unsigned int iteration;        /* ev_iteration() value `used` refers to */
    bool stopped;                  /* on_readable returned -1 during `iteration` */
    bool budget_hit;               /* resume armed because the budget ran out */
    bool failed;                   /* ZMQ_EVENTS failed (socket closed, context terminated) */
    bool *alive;                   /* set while on_readable runs; destroy clears *alive */
    ev_io io;                      /* ZMQ_FD, EV_READ: "state changed, look at ZMQ_EVENTS" */
    ev_check resume;               /* drains on the next iteration without a new fd edge */
    ev_idle keep_polling;          /* keeps the poll from blocking while `resume` is armed */
    zsock_watch_stats_t stats;
};

static void resume_arm(zsock_watch_t *w, bool budget_hit)
{
    w->budget_hit = w->budget_hit || budget_hit;
    ev_check_start(w->loop, &w->resume);
    ev_idle_start(w->loop, &w->keep_polling);
}

static void resume_disarm(zsock_watch_t *w)
{
    w->budget_hit = false;
    ev_check_stop(w->loop, &w->resume);
    ev_idle_stop(w->loop, &w->keep_polling);
}

/* A socket whose ZMQ_EVENTS fails will fail forever (ETERM, ENOTSOCK); stop watching it rather
 * than spin on a readable fd, and say so once. */
static void watch_fail(zsock_watch_t *w, int err)
{
    log_error("zsock_watch: ZMQ_EVENTS failed, no longer watching socket: %s", zmq_strerror(err));
    w->failed = true;
    resume_disarm(w);
    ev_io_stop(w->loop, &w->io);
}

/* Returns the ZMQ_EVENTS bits, or -errno. Processing commands here is what makes it
 * authoritative, and also what may consume the fd's edge. */
static int pending_events(zsock_watch_t *w)
{
    int events;
    size_t len;
    int rc;

    do {
        len = sizeof(events);
        rc = zmq_getsockopt(w->sock, ZMQ_EVENTS, &events, &len);
    } while (rc < 0 && zmq_errno() == EINTR);
    if (rc < 0)
        return -zmq_errno();
    return events;
}

static void drain(zsock_watch_t *w)
{
    unsigned int iteration = ev_iteration(w->loop);

    if (w->failed)
        return;
    if (iteration != w->iteration) {
        w->iteration = iteration;
        w->used = 0;
        w->stopped = false;
    }
    for (;;) {
        int events = pending_events(w);
        bool alive = true;
        int rc;

        if (events < 0) {
            watch_fail(w, -events);
            return;
        }
        if (!(events & ZMQ_POLLIN)) {
            resume_disarm(w);
            return;
        }
        if (w->stopped || w->used >= w->budget) {
            /* More is queued and no edge will announce it: come back next iteration. */
            resume_arm(w, !w->stopped);
            return;
        }
        w->used++;
        w->stats.received++;
        /* The callback may destroy the watch; `alive` tells us without touching freed memory.
         * A recursive ev_run from the callback is not supported, so one slot suffices. */
        w->alive = &alive;
        rc = w->on_readable(w, w->sock, w->ctx);
        if (!alive)
            return;
        w->alive = NULL;
        if (rc < 0)
            w->stopped = true; /* also holds for a second wake-up in this iteration */
    }
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    zsock_watch_t *w = io->data;

    w->stats.wakeups++;
    drain(w);
}

static void resume_cb(struct ev_loop *loop, ev_check *check, int revents)
{
    zsock_watch_t *w = check->data;

    if (w->budget_hit) {
        w->stats.idle_drains++;
        w->budget_hit = false;
    }
    drain(w);
}

static void keep_polling_cb(struct ev_loop *loop, ev_idle *idle, int revents)
{
    /* Nothing to do: being active is the point (ev_run polls with a zero timeout). */
}

zsock_watch_t *zsock_watch_new(struct ev_loop *loop, void *sock, unsigned budget,
                               zsock_readable_fn on_readable, void *ctx)
{
    zsock_watch_t *w;
    int fd;
    size_t len = sizeof(fd);

    if (!loop || !sock || !on_readable) {
        errno = EINVAL;
        return NULL;
    }
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &len) < 0) {
        int err = zmq_errno();

        log_error("zsock_watch: cannot get ZMQ_FD: %s", zmq_strerror(err));
        errno = err;
        return NULL;
    }

    w = xcalloc(1, sizeof(*w));
    w->loop = loop;
    w->sock = sock;
    w->on_readable = on_readable;
    w->ctx = ctx;
    w->budget = budget ? budget : ZSOCK_WATCH_DEFAULT_BUDGET;
    w->iteration = ev_iteration(loop) - 1; /* no budget used yet in any iteration */

    ev_io_init(&w->io, io_cb, fd, EV_READ);
    w->io.data = w;
    ev_check_init(&w->resume, resume_cb);
    w->resume.data = w;
    ev_idle_init(&w->keep_polling, keep_polling_cb);
    w->keep_polling.data = w;

    ev_io_start(loop, &w->io);
    /* Messages queued before we started watching may already have consumed the edge (the
     * caller's connect/bind/send processed commands); look now instead of waiting for one. */
    zsock_watch_recheck(w);
    return w;
}

void zsock_watch_destroy(zsock_watch_t **wp)
{
    zsock_watch_t *w;

    if (!wp || !*wp)
        return;
    w = *wp;
    if (w->alive)
        *w->alive = false;
    ev_io_stop(w->loop, &w->io);
    ev_check_stop(w->loop, &w->resume);
    ev_idle_stop(w->loop, &w->keep_polling);
    free(w);
    *wp = NULL;
}

void zsock_watch_recheck(zsock_watch_t *w)
{
    int events;

    if (w->failed)
        return;
    events = pending_events(w);
    if (events < 0)
        watch_fail(w, -events);
    else if (events & ZMQ_POLLIN)
        resume_arm(w, false);
    /* No POLLIN: leave an armed resume alone; drain() disarms it when it finds nothing. */
}

int zsock_watch_send(zsock_watch_t *w, const void *data, size_t len, bool more)
{
    int flags = ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0);
    int rc, err = 0;

    do {
        rc = zmq_send(w->sock, data, len, flags);
    } while (rc < 0 && (err = zmq_errno()) == EINTR);

    /* Even a failed send processed commands and may have eaten the edge (rule 2). */
    zsock_watch_recheck(w);

    if (rc >= 0)
        return 0;
    /* EAGAIN (peer queue full, or no peer with IMMEDIATE) and EHOSTUNREACH (ROUTER_MANDATORY,
     * peer gone) are routine under load and churn; the caller counts them, we do not log. */
    if (err != EAGAIN && err != EHOSTUNREACH)
        log_warn("zsock_watch: send failed: %s", zmq_strerror(err));
    return -err;
}

void zsock_watch_get_stats(const zsock_watch_t *w, zsock_watch_stats_t *st)
{
    *st = w->stats;
}
