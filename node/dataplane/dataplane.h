/* dataplane: a PoP's traffic: the tunnel endpoint (sites and other PoPs connect to it), the
 * TCP resource listeners, and the streams between them, direct or relayed.
 *
 * An ingress connection on a resource port is carried along the route the mesh computed
 * (mesh/route.h) for the resource's site: straight into the site's tunnel when this PoP is
 * the egress, otherwise as a stream to the next PoP with the rest of the path in the OPEN,
 * each relay splicing its upstream stream to a downstream one. A stream that cannot open
 * (the egress lost the site, the next PoP is down, the tunnel died) is retried on the backup
 * path, then once more on the primary of a fresh table, before any byte reached the client;
 * after that the client is closed at once with a logged reason, never left hanging.
 *
 * A resource with tls has its connections go through a TLS handshake first (tlsctx.h: the
 * certificate by SNI, an unknown name refused with an alert), under the same connection cap
 * and within the handshake timeout; only then does its stream open, and the splice reads and
 * writes the client through the TLS connection. The site sees the plain stream.
 *
 * Sites report their target checks over the tunnel; the PoP a site calls primary writes them
 * to the replicated store (sitehealth/<site>, only on change), so every PoP can show them. */
#ifndef POPMESH_NODE_DATAPLANE_DATAPLANE_H
#define POPMESH_NODE_DATAPLANE_DATAPLANE_H

#include "common/accesslog.h"
#include "node/ctl/control.h"
#include "node/records/identity.h"
#include "node/membership/meshnode.h"
#include "node/nodecfg.h"
#include "node/dataplane/tconn.h"
#include "node/tls/tlsctx.h"
#include "storage/store.h"

#include <ev.h>

#define DATAPLANE_TICK_S           1.0 /* s between checks of PoP liveness and tunnel RTTs */
#define DATAPLANE_BIND_RETRY_S     1.0 /* s between attempts to bind a resource port that failed */
#define DATAPLANE_ACCEPT_BACKOFF_S 0.1 /* s a listener rests after accept() ran out of fds */
/* Tunnel connections that have not yet proven their key. A handshake takes one round trip and
 * is bounded by TCONN_HANDSHAKE_MS (5 s), so even every site of a busy PoP reconnecting at
 * once after a restart holds a few dozen pending at a time (they complete in milliseconds);
 * 256 leaves that room many times over, while someone without a key holds at most 256
 * descriptors and handshake states (a few KiB each) for 5 s. Per address 32: enough for a
 * NAT gateway with many sites behind it reconnecting together, small enough that one host
 * takes an eighth of the total. Authenticated tunnels are not counted. */
#define DATAPLANE_PENDING_MAX      256
#define DATAPLANE_PENDING_PER_ADDR 32
/* TCP resource connections, shared by every resource port of the PoP: in all, half the
 * descriptor limit (conncap_half_nofile, at least this floor), per client address 256. */
#define DATAPLANE_TCP_MAX_MIN  1024
#define DATAPLANE_TCP_PER_ADDR 256
#define DATAPLANE_OPEN_TIMEOUT 3000 /* ms an OPEN may go unanswered before a retry */
#define DATAPLANE_ATTEMPTS     3    /* tries per ingress connection: primary, backup, primary */
/* After the first two attempts, a connection waits before each next one (100 ms, doubling up
 * to 800 ms) while it is younger than DATAPLANE_RETRY_WINDOW_MS, so it rides out a tunnel
 * that is redialling or a route table that has not caught up yet; DATAPLANE_ATTEMPTS_MAX
 * bounds the attempts whatever the window. */
#define DATAPLANE_RETRY_WINDOW_MS 2000
#define DATAPLANE_ATTEMPTS_MAX    12
/* Route tables kept for resources restricted to PoPs with some labels (one per label set). */
#define DATAPLANE_LABEL_TABLES 8
/* Replicas of one site an ingress connection considers, each one more attempt beyond the
 * first. */
#define DATAPLANE_REPLICAS_MAX 8
/* Replicas one ingress connection keeps count of, over every site of its resource. */
#define DATAPLANE_TRIED_MAX 16
#define SITEHEALTH_PREFIX      "sitehealth/"
/* Concurrent streams one tunnel admits (tunnel.h's default is 4096). A busy site carries more
 * than 4096 user connections on one tunnel; what a stream costs when idle is a few KiB in each
 * daemon (measured by tests/integration/dataplane_limit.sh), and bytes in flight stay bounded
 * by each stream's window, so the ceiling is a memory budget: 65536 idle streams cost about
 * 0.5 GiB in popd. Past it an ingress connection is reset at once and counted
 * (ingress_refused_limit). */
#define DATAPLANE_MAX_STREAMS   65536
#define DATAPLANE_UNMEASURED_US 100000 /* us: a site tunnel's cost until its first heartbeat */
#define DATAPLANE_WINDOW_MAX                                                                       \
    (8u << 20) /* bytes: a stream window grows up to this while its consumer keeps up (tunnel.h)   \
                */

typedef struct dataplane dataplane_t;

typedef struct dataplane_opts {
    struct ev_loop *loop;
    store_t *store;       /* borrowed */
    const nodecfg_t *cfg; /* borrowed */
    const identity_t *id; /* borrowed */
    meshnode_t *mesh;     /* borrowed: routes, link state, liveness */
    tlsctx_t *tls;        /* borrowed: certificates for resources with tls; NULL: their
                           * connections are refused */
    accesslog_t *alog;    /* borrowed: one line per TCP connection (its resource's sampling);
                           * NULL = off */
} dataplane_opts_t;

/* Binds the tunnel endpoint; NULL with a reason in err. */
dataplane_t *dataplane_new(const dataplane_opts_t *o, char *err, size_t errlen);
void dataplane_destroy(dataplane_t **dp);
/* Registers "sites" and "dataplane" (counters) on the control socket. */
int dataplane_register_commands(dataplane_t *dp, control_t *ctl);
/* The path a stream took, as its ingress chose it: PoP node ids from this PoP (hops[0]) to the
 * egress (the last; n_hops 1 when this PoP is the egress), and the site replica's node id. */
#define DP_PATH_MAX 10 /* SM_PATH_MAX + 2 (sitemsg.h) */
typedef struct dp_path {
    uint64_t hops[DP_PATH_MAX];
    uint32_t n_hops; /* 0 = none yet */
    uint64_t site;
} dp_path_t;

/* The names of a path for an access log line, into ev (ingress, relays, egress, site) with the
 * strings in names (DP_PATH_MAX + 1 of them; borrowed by ev). Reads the registry: call it
 * only for a line that will be written. */
void dataplane_path_names(dataplane_t *dp, const dp_path_t *p, accesslog_event_t *ev,
                          char (*names)[NODECFG_NAME_MAX + 1]);

/* A consumer of streams other than a TCP socket (the HTTP proxy): it opens streams through
 * the data plane's routing and retries, and gets the stream's events. The struct is the
 * stream's user pointer; embed it in the consumer's own state (first member or not). */
#define DP_HANDLER_MAGIC 0x48414e44u
typedef struct dp_stream_handler dp_stream_handler_t;
struct dp_stream_handler {
    uint32_t magic; /* DP_HANDLER_MAGIC (set by dataplane_open_stream) */
    dp_path_t path; /* set before on_open: the path the stream took (for the access log) */
    /* The stream is open on c: events of sid follow. */
    void (*on_open)(dp_stream_handler_t *h, tconn_t *c, uint64_t sid);
    /* It could not be opened (after the retries), why for the log and the error page; the
     * handler is not used again by the data plane. */
    void (*on_fail)(dp_stream_handler_t *h, uint32_t code, const char *why);
    void (*on_data)(dp_stream_handler_t *h, tconn_t *c, uint64_t sid, const uint8_t *data,
                    size_t len);
    void (*on_fin)(dp_stream_handler_t *h, tconn_t *c, uint64_t sid);
    void (*on_writable)(dp_stream_handler_t *h, tconn_t *c, uint64_t sid);
    void (*on_reset)(dp_stream_handler_t *h, tconn_t *c, uint64_t sid, uint32_t code,
                     const char *msg, size_t msg_len);
    void (*on_closed)(dp_stream_handler_t *h, tconn_t *c, uint64_t sid);
};

struct resource;
/* Opens a stream to one of res's targets for a client ("ip:port", for stickiness and logs)
 * that connected to ingress ("ip:port", the local address of its socket; may be NULL). The
 * site needs the pair to tell its own target connections coming back into the mesh (a loop)
 * from a client that happens to share an address with one of them. 0 (h->on_open or
 * h->on_fail follows, never inside this call), or -ENOENT when the resource's site is
 * unknown. */
int dataplane_open_stream(dataplane_t *dp, const struct resource *res, const char *client,
                          const char *ingress, dp_stream_handler_t *h);

/* True when this PoP may take res's users' connections (its transit_labels and
 * ingress_labels, node/records/resource.h); dataplane_open_stream refuses the others (-EPERM). */
bool dataplane_serves(dataplane_t *dp, const struct resource *res);

/* A health source for meshnode_add_health_source (ctx is the dataplane_t *). Adds to h, never
 * overwrites: streams (TCP ingress connections, pending or spliced, and streams relayed for
 * other PoPs; the HTTP ingress counts its own upstream streams), site tunnels up
 * (authenticated, not RTT probes), listeners (the tunnel listener and every TCP resource port
 * configured for this PoP) and listeners_up (of those, bound and accepting: not waiting out
 * an accept that failed for lack of descriptors or memory). */
void dataplane_health(void *ctx, meshnode_health_t *h);

/* Adds the dataplane fields to status: this many pairs. */
#define DATAPLANE_STATUS_PAIRS 1
void dataplane_pack_status(dataplane_t *dp, msgpack_packer *pk);

#endif
