/* dataplane: see dataplane.h.
 *
 * Ownership of a stream's user pointer tells who handles its events: a splice (the stream
 * is open and carrying bytes), an ingress (our OPEN towards a site is in flight), or a relay
 * (a PoP's OPEN through us is waiting for the next hop to answer). Each starts with a
 * distinct uint32_t magic, so the tconn callbacks can tell them apart.
 *
 * Peers (tconn + what we know of the other end) are freed only from the reaper (an
 * ev_check), never inside a callback of their own connection. */

#include "node/dataplane/dataplane.h"

#include "common/conncap.h"
#include "common/netaddr.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/records/registry.h"
#include "node/records/resource.h"
#include "node/dataplane/sitemsg.h"
#include "node/dataplane/splice.h"
#include "node/dataplane/tconn.h"
#include "node/dataplane/udpingress.h"
#include "tunnel/secchan.h"
#include "tunnel/seal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#define INGRESS_MAGIC   0x494e4752u
#define RELAY_MAGIC     0x52454c59u
#define DIAL_BACKOFF_MS 1000 /* a PoP whose tunnel could not be dialled is skipped this long */
#define DATAPLANE_SEAL_SITES 64 /* site keys (K) kept per ephemeral epoch; more: recomputed */

struct waiter;
struct ingress_conn;

_Static_assert(DP_PATH_MAX == SM_PATH_MAX + 2, "a dp_path holds every hop an ingress may try");

struct peer {
    dataplane_t *dp;
    tconn_t *c;
    uint64_t id;
    bool is_site, up, dead, primary;
    bool probe;                /* a site's RTT probe: answered, never attached */
    bool accepted;             /* the peer dialled us (else we dialled it) */
    bool draining;             /* the site is moving off this PoP: not advertised as attached */
    bool info_dirty;           /* site: what its INFO says may have changed (on_apply sends it) */
    bool removed;              /* site: its record was removed (on_apply closes the tunnel) */
    uint32_t published_rtt_us; /* site: the tunnel RTT in our last link-state record */
    uint8_t seal;              /* the suites of sealed streams it opens (its HELLO / WELCOME);
                                * not 0: it reads SPLIT records too */
    char name[NODECFG_NAME_MAX + 1];
    char site[NODECFG_NAME_MAX + 1]; /* site: the site it serves (its name, or a replica's
                                      * site field) */
    uint64_t up_since_ms;
    sm_status_t *status;     /* site: last STATUS */
    uint8_t info_hash[16];   /* site: hash of the last INFO sent */
    uint8_t health_hash[16]; /* site: hash of the last sitehealth record written */
    struct waiter *waiters;  /* opens waiting for this PoP's tunnel to come up */
    conncap_slot_t *slot;    /* accepted and not yet authenticated: its pending-handshake slot */
    struct peer *next;
};

struct waiter {
    void (*ready)(struct waiter *w, struct peer *p); /* p NULL: the dial failed */
    bool queued;    /* on a peer's list: only that list may free the owner */
    bool cancelled; /* the owner is dead; free it when the list is run */
    struct waiter *next;
};

struct ingress {
    uint32_t magic;
    dataplane_t *dp;
    struct waiter w;
    splice_t *sp;           /* a TCP client: spliced once open */
    dp_stream_handler_t *h; /* or another consumer (dataplane_open_stream) */
    struct ingress_conn *ic; /* sp's connection (its access log line), NULL with h */
    ev_timer kick; /* h: starts the first attempt outside the caller's call; later, a spaced
                    * attempt (ingress_retry) */
    resource_t res;
    char cur_site[NODECFG_NAME_MAX + 1]; /* the site this attempt goes to */
    uint32_t tmask;                      /* the targets of res this attempt's OPEN names */
    uint64_t site; /* the node id of the site replica being tried */
    /* Replicas tried so far (of every site of the resource), with their attempts: the next
     * attempt goes to the one with the fewest, then the cheapest route (ingress_pick).
     * refused: the replica answered that none of the targets it was given answers; it is not
     * asked again by this connection. */
    uint64_t tried[DATAPLANE_TRIED_MAX];
    uint8_t tries[DATAPLANE_TRIED_MAX];
    bool refused[DATAPLANE_TRIED_MAX];
    uint32_t ntried;
    char client[64];
    char ingress[64]; /* where the client connected to (our local address), "" if unknown */
    int attempt;
    bool hit_limit; /* an attempt found its tunnel at max_streams */
    bool looped;    /* the site found this connection is its own, come back (a loop) */
    uint64_t t0_ms;
    char last_error[160];
    uint64_t hops[SM_PATH_MAX + 2]; /* the path being tried: us first, egress last */
    uint32_t n_hops;
};

struct relay {
    uint32_t magic;
    dataplane_t *dp;
    struct waiter w;
    tconn_t *up_c;
    uint64_t up_sid;
    tconn_t *down_c;
    uint64_t down_sid;
    bool down_opening, up_gone;
    sm_open_t desc; /* what to send on */
};

struct listener {
    uint16_t port;
    bool tls; /* the owner terminates TLS here */
    int fd;   /* -1: not bound (yet: retry runs; or never: own) */
    bool own; /* the port is one of this PoP's own (a clash, logged once, never bound) */
    ev_io io;
    ev_timer retry; /* binding again after a failure, every DATAPLANE_BIND_RETRY_S, or
                     * accepting again DATAPLANE_ACCEPT_BACKOFF_S after EMFILE and the like */
    bool backoff;   /* accept() failed for lack of descriptors or memory: not accepting */
    char resource[NODECFG_NAME_MAX + 1]; /* the resource that owns the port */
    dataplane_t *dp;
    struct listener *next;
};

/* What the data plane keeps of one resource record (the rest is read when needed). */
struct cfg_res {
    char name[NODECFG_NAME_MAX + 1];
    char site[NODECFG_NAME_MAX + 1];
    bool multi;          /* targets in several sites: every site's INFO may name them */
    bool here;           /* this PoP may take its users' connections (transit/ingress labels) */
    bool labelled;       /* it has transit labels (the sites' INFO says which PoPs to avoid) */
    uint16_t tcp_port;   /* 0: HTTP only */
    bool tls;            /* TLS terminated on tcp_port */
    uint64_t created_ms; /* Unix ms: the oldest owns a port two resources share */
};

/* What one connector replica's checks say: sitehealth/<replica>, which its primary PoP
 * writes when they change, kept here as the change feed brings it. */
struct rep_check {
    char target[NODECFG_ADDR_MAX + 1];
    char health[SM_HEALTH_MAX + 1];
    char why[SM_WHY_MAX + 1];
    bool healthy;
};

struct rep_health {
    char replica[NODECFG_NAME_MAX + 1];
    char host[SM_HOSTNAME_MAX + 1]; /* the machine it runs on, "" when it did not say */
    uint8_t seal;                   /* the suites of sealed streams it opens (its STATUS) */
    uint32_t n;
    struct rep_check *checks;
};

/* A PoP a site may be told about (registered, not removed, with a tunnel address). */
struct cfg_pop {
    uint64_t id;
    char name[NODECFG_NAME_MAX + 1];
    char tunnel_addr[NODECFG_ADDR_MAX + 1];
    uint8_t curve_pk[32];
    char region[NODECFG_NAME_MAX + 1]; /* "" when none: the site spreads over regions */
    bool no_inbound; /* takes no inbound connections: reached on the tunnel it dials to us */
    char labels[NODECFG_LABELS_MAX][NODECFG_NAME_MAX + 1]; /* popd --label */
    unsigned nlabels;
};

/* A site node: one connector replica. Several share a site. */
struct site_name {
    char name[NODECFG_NAME_MAX + 1]; /* the node's (replica's) name */
    char site[NODECFG_NAME_MAX + 1]; /* the site it serves */
    uint64_t id;
};

struct dial_fail {
    uint64_t id, at_ms;
};

/* The replay filter of one initiator key: HELLO timestamps admitted from it. */
struct hello_seen {
    uint64_t id; /* node id of the key */
    sc_replay_t filter;
};

struct dataplane {
    dataplane_opts_t o;
    int lfd;
    ev_io lio;
    ev_timer lbackoff;          /* the tunnel listener's accept backoff (as a listener's retry) */
    bool lbackoff_on;           /* the tunnel listener is waiting it out: not accepting */
    conncap_t *pending_cap;     /* tunnel connections not yet authenticated */
    conncap_t *tcp_cap;         /* TCP resource connections, shared by every resource port */
    uint64_t cap_log_ms;        /* ms (monotonic): last log line about a connection cap */
    uint64_t cap_unlogged;      /* refusals since that line */
    uint64_t accept_log_ms;     /* ms (monotonic): last log line about a failing accept() */
    uint64_t accept_unlogged;   /* failures since that line */
    ev_timer tick;              /* liveness of the PoPs sites are told about, tunnel RTTs */
    ev_timer apply;             /* deferred work of the change feed (on_apply) */
    int watch_res, watch_nodes, watch_health; /* store_watch ids */
    /* Node names by id for the access log's path (dataplane_path_names): a store read and a
     * record parse per line cost the log a few percent of requests/s. Direct-mapped; an entry
     * goes when its node record changes (on_nodes_changed). */
    struct {
        uint64_t id; /* 0: empty */
        char name[NODECFG_NAME_MAX + 1];
    } names[64];
    struct rep_health *health;                /* one per replica that reported, unordered */
    size_t nhealth;
    uint64_t pick_rr; /* spreads connections over targets by weight (choose_targets) */
    /* Routes for resources that may cross only some PoPs (transit_labels), by label set,
     * recomputed when the link state or the registry changed (routes_for). */
    route_t *route;
    uint64_t reg_gen; /* bumped on every node record change */
    struct label_routes {
        char key[RESOURCE_LABELS_MAX * (NODECFG_NAME_MAX + 1) + 1]; /* the labels, ","-joined */
        uint64_t gen;                                             /* lsdb generation ^ reg_gen */
        route_table_t *t;
        uint64_t used; /* pick_rr-like stamp: the least recently used goes first */
    } lroutes[DATAPLANE_LABEL_TABLES];
    uint64_t lroutes_clock;
    bool republish;             /* our node record lost its tunnel address */
    uint64_t alive_hash;        /* of the PoPs SWIM held alive at the last tick */
    ev_check reaper;
    ev_signal sigusr1; /* logs every splice (splice_ctx_dump) */
    splice_ctx_t *splices;
    udpin_t *udp; /* the UDP resources (udpingress.h) */
    struct peer *peers;
    struct listener *listeners;
    struct site_name *sites; /* registered sites, not removed */
    size_t nsites;
    struct cfg_res *res; /* every readable resource, unordered */
    size_t nres, cres;
    struct cfg_pop *pops;
    size_t npops;
    struct dial_fail fails[16];
    tconn_keys_t keys;
    uint64_t hello_ts_last;  /* ns: our last HELLO's timestamp (keys.hello_ts_last) */
    struct hello_seen *seen; /* one per registered node that sent us a HELLO */
    size_t nseen;
    uint64_t replay_log_ms;    /* ms (monotonic): last log line about replayed HELLOs */
    uint64_t replays_unlogged; /* replays since that line */
    uint64_t limit_log_ms;     /* ms (monotonic): last log line about the stream limit */
    uint64_t limit_unlogged;   /* refusals since that line */
    uint64_t loop_log_ms;      /* ms (monotonic): last log line about a loop */
    uint64_t loop_unlogged;    /* loops since that line */
    tun_config_t tcfg;
    char tunnel_addr[NODECFG_ADDR_MAX + 1];
    bool reap_pending;
    /* Sealed streams (tunnel/seal.h): the ephemeral key of this epoch, and K per site. */
    uint8_t seal_e_sk[32], seal_e_pk[32];
    uint64_t seal_epoch_ms; /* ms (monotonic) the ephemeral key was made; 0 = none yet */
    struct {
        uint64_t site;
        uint8_t k[SEAL_KEY_LEN];
    } seal_k[DATAPLANE_SEAL_SITES];
    size_t nseal_k;
    struct {
        uint64_t ingress_accepted, ingress_opened, ingress_failed, ingress_retries;
        uint64_t relayed, relay_refused, streams_from_peers_refused;
        uint64_t tunnels_accepted, tunnels_refused, handshake_failures, bytes_in, bytes_out;
        uint64_t ingress_refused_limit; /* ingress closed because tunnels were at max_streams */
        uint64_t hello_replays;         /* HELLOs refused by the replay filter */
        uint64_t hello_unconfirmed;     /* admitted HELLOs never followed by a sealed record */
        uint64_t ingress_loops;         /* ingress closed because the site saw a loop */
        uint64_t store_scans;           /* full listings of a prefix: at start only */
        uint64_t tunnel_refused_cap;    /* tunnel connections past the pending-handshake caps */
        uint64_t ingress_refused_cap;   /* TCP resource connections past the connection caps */
        uint64_t accept_failures;       /* accept() out of descriptors or memory */
        uint64_t tls_handshakes;        /* TLS resource connections past their handshake */
        uint64_t tls_resumed;           /* of which resumed by a session ticket */
        uint64_t tls_failed;            /* handshakes that failed (alerts, garbage, no SNI) */
        uint64_t tls_timeouts;          /* handshakes not done within tls_timeout */
        uint64_t ingress_sealed;        /* opens sealed end to end for the site */
        uint64_t ingress_unsealed;      /* opens that were not (why: docs/tunnel.md) */
        uint64_t relayed_sealed;        /* relayed streams whose records we could not open */
    } st;
    struct tls_pending *tls_pending; /* TLS resource connections in their handshake */
    double tls_timeout;              /* s: a handshake's limit (a test knob may change it) */
};

static const tconn_cbs_t *peer_cbs(void);

/* ---- registry lookups ------------------------------------------------------------------ */

static int node_get(dataplane_t *dp, uint64_t id, reg_node_t *n)
{
    char key[64];
    reg_node_key(id, key, sizeof(key));
    store_entry_t e;
    if (store_get(dp->o.store, key, strlen(key), &e))
        return -ENOENT;
    const char *why;
    int rc = e.tombstone ? -ENOENT : reg_node_parse(e.value, e.vlen, id, n, &why);
    store_entry_free(&e);
    return rc;
}

static void node_name(dataplane_t *dp, uint64_t id, char *out, size_t len)
{
    size_t slot = (size_t)((id * 0x9e3779b97f4a7c15ull) >> 58); /* 64 slots */
    if (id && dp->names[slot].id == id) {
        snprintf(out, len, "%s", dp->names[slot].name);
        return;
    }
    reg_node_t n;
    if (node_get(dp, id, &n) == 0) {
        snprintf(out, len, "%s", n.name);
        dp->names[slot].id = id;
        snprintf(dp->names[slot].name, sizeof(dp->names[slot].name), "%s", n.name);
    } else {
        snprintf(out, len, "%016llx", (unsigned long long)id);
    }
}

/* The node ids of site's live replicas, at most max of them (smallest ids first, so every PoP
 * considers the same ones); returns how many. */
static size_t site_replicas(dataplane_t *dp, const char *site, uint64_t *ids, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < dp->nsites; i++) {
        if (strcmp(dp->sites[i].site, site))
            continue;
        uint64_t id = dp->sites[i].id;
        size_t at = n;
        while (at > 0 && ids[at - 1] > id)
            at--;
        if (at >= max)
            continue;
        if (n == max)
            n--; /* the largest falls off */
        memmove(&ids[at + 1], &ids[at], (n - at) * sizeof(*ids));
        ids[at] = id;
        n++;
    }
    return n;
}

/* ---- peers ------------------------------------------------------------------------------ */

static struct peer *find_peer(dataplane_t *dp, uint64_t id, bool site, bool up_only)
{
    struct peer *best = NULL;
    for (struct peer *p = dp->peers; p; p = p->next) {
        if (p->dead || p->id != id || p->is_site != site)
            continue;
        if (p->up)
            return p;
        if (!up_only && !best)
            best = p;
    }
    return best;
}

static void on_reap(struct ev_loop *loop, ev_check *w, int revents)
{
    (void)revents;
    dataplane_t *dp = w->data;
    struct peer **pp = &dp->peers;
    while (*pp) {
        struct peer *p = *pp;
        if (!p->dead) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        tconn_destroy(&p->c);
        free(p->status);
        free(p);
    }
    dp->reap_pending = false;
    ev_check_stop(loop, w);
}

static void run_waiters(struct peer *p, bool ok)
{
    struct waiter *w = p->waiters;
    p->waiters = NULL;
    while (w) {
        struct waiter *next = w->next;
        w->next = NULL;
        w->queued = false;
        w->ready(w, ok ? p : NULL);
        w = next;
    }
}

static void dial_failed(dataplane_t *dp, uint64_t id)
{
    size_t slot = 0;
    for (size_t i = 0; i < 16; i++) {
        if (dp->fails[i].id == id) {
            slot = i;
            break;
        }
        if (dp->fails[i].at_ms < dp->fails[slot].at_ms)
            slot = i;
    }
    dp->fails[slot].id = id;
    dp->fails[slot].at_ms = clock_mono_ms();
}

static bool dial_backing_off(dataplane_t *dp, uint64_t id)
{
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < 16; i++)
        if (dp->fails[i].id == id && now - dp->fails[i].at_ms < DIAL_BACKOFF_MS)
            return true;
    return false;
}

/* The PoP's tunnel, up or being dialled; NULL when it cannot be dialled. */
static struct peer *pop_peer(dataplane_t *dp, uint64_t id)
{
    struct peer *p = find_peer(dp, id, false, false);
    if (p && p->up && !tconn_tun(p->c)) {
        /* Its tunnel just failed (on_down comes at the top of the next loop iteration): the
         * PoP is as good as gone for now, and dialling it again at once would race its death
         * (a SIGKILLed PoP refuses the dial a moment later). */
        dial_failed(dp, id);
        return NULL;
    }
    if (p)
        return p;
    if (dial_backing_off(dp, id))
        return NULL;
    reg_node_t n;
    if (node_get(dp, id, &n) || n.removed || n.role != ROLE_POP || !n.tunnel_addr[0]) {
        log_debug("dataplane: PoP %016llx has no tunnel address", (unsigned long long)id);
        return NULL;
    }
    /* It takes no inbound connections, by its record or learned from the mesh (our sends to
     * it only go back on its connections: meshnode_no_dial): only the tunnel it dialled to us
     * (found above) reaches it, and it keeps one to every PoP that cannot dial it either way
     * (on_tick there). Dialling would wait out a dropped SYN, again after every backoff. */
    if (meshnode_no_dial(dp->o.mesh, id) && !dp->o.cfg->no_inbound) {
        log_debug("dataplane: PoP %s takes no inbound connections%s and has no tunnel to us",
                  n.name, n.no_inbound ? "" : " (learned)");
        return NULL;
    }
    uint8_t hello[128];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_hello_t h = {.role = "pop", .seal = seal_local_suites()};
    snprintf(h.name, sizeof(h.name), "%s", dp->o.cfg->name);
    sm_pack_hello(&pk, &h);
    size_t hl = sb.size < sizeof(hello) ? sb.size : 0;
    memcpy(hello, sb.data, hl);
    msgpack_sbuffer_destroy(&sb);
    p = xcalloc(1, sizeof(*p));
    p->dp = dp;
    p->id = id;
    snprintf(p->name, sizeof(p->name), "%s", n.name);
    tconn_cbs_t cbs = *peer_cbs();
    cbs.ctx = p;
    p->c = tconn_dial(dp->o.loop, n.tunnel_addr, &dp->keys, n.curve_pk, hello, hl, &dp->tcfg, &cbs);
    if (!p->c) {
        log_warn("dataplane: cannot dial PoP %s at %s: %s", n.name, n.tunnel_addr, strerror(errno));
        free(p);
        dial_failed(dp, id);
        return NULL;
    }
    p->next = dp->peers;
    dp->peers = p;
    return p;
}

/* ---- target health, merged across a site's replicas --------------------------------------
 *
 * Every replica checks its site's targets and reports over its tunnels; its primary PoP writes
 * the report to sitehealth/<replica>, and the change feed brings it here on every PoP. A
 * target is up when a live replica (one some PoP has a tunnel to) says so, down when live
 * replicas report it and none says up, unknown when no live replica reported it yet (a new
 * resource: counted as up, as a site counts a target it has not checked), and unreachable
 * when its site has no live replica at all. A dead replica's last report is kept but not
 * counted: it says nothing about now. */

enum tstate { TS_UNKNOWN = 0, TS_UP, TS_DOWN, TS_UNREACHABLE };

static const char *tstate_str(enum tstate t)
{
    static const char *const s[] = {"unknown", "up", "down", "unreachable"};
    return s[t];
}

static struct rep_health *health_find(dataplane_t *dp, const char *replica)
{
    for (size_t i = 0; i < dp->nhealth; i++)
        if (!strcmp(dp->health[i].replica, replica))
            return &dp->health[i];
    return NULL;
}

static void on_health_changed(void *ctx, const store_entry_t *v, size_t n)
{
    dataplane_t *dp = ctx;
    const size_t pl = strlen(SITEHEALTH_PREFIX);
    sm_status_t *st = xmalloc(sizeof(*st));
    for (size_t i = 0; i < n; i++) {
        char name[NODECFG_NAME_MAX + 1];
        if (v[i].klen <= pl || v[i].klen - pl > NODECFG_NAME_MAX)
            continue;
        memcpy(name, v[i].key + pl, v[i].klen - pl);
        name[v[i].klen - pl] = 0;
        int type;
        const char *why;
        bool ok = !v[i].tombstone && sm_decode_ctl(v[i].value, v[i].vlen, &type, st, NULL, &why) == 0;
        if (!v[i].tombstone && !ok)
            log_warn("dataplane: sitehealth/%s: unreadable record ignored: %s", name, why);
        struct rep_health *h = health_find(dp, name);
        if (!ok) {
            if (h) {
                free(h->checks);
                *h = dp->health[--dp->nhealth];
            }
            continue;
        }
        if (!h) {
            dp->health = xrealloc(dp->health, (dp->nhealth + 1) * sizeof(*dp->health));
            h = &dp->health[dp->nhealth++];
            memset(h, 0, sizeof(*h));
            snprintf(h->replica, sizeof(h->replica), "%s", name);
        }
        snprintf(h->host, sizeof(h->host), "%s", st->host);
        h->seal = st->seal;
        h->checks = xrealloc(h->checks, (st->n ? st->n : 1) * sizeof(*h->checks));
        h->n = st->n;
        for (uint32_t k = 0; k < st->n; k++) {
            struct rep_check *c = &h->checks[k];
            snprintf(c->target, sizeof(c->target), "%s", st->checks[k].target);
            snprintf(c->health, sizeof(c->health), "%s", st->checks[k].health);
            snprintf(c->why, sizeof(c->why), "%s", st->checks[k].why);
            c->healthy = st->checks[k].healthy;
        }
    }
    free(st);
}

static int load_health(const store_entry_t *e, void *ctx)
{
    on_health_changed(ctx, e, 1);
    return 0;
}

/* A replica some PoP routes to, or attached here before the routes caught up. */
static bool replica_live(dataplane_t *dp, uint64_t id)
{
    const route_table_t *rt = meshnode_routes(dp->o.mesh);
    route_entry_t re;
    return (rt && route_table_lookup(rt, id, &re) == 0) || find_peer(dp, id, true, true);
}

/* A site's check spec starts with the resource's ("tcp", "http:/PATH"); settings follow it
 * after a space ("http:/h interval 500"). */
static bool health_match(const char *reported, const char *spec)
{
    size_t l = strlen(spec);
    return !strncmp(reported, spec, l) && (reported[l] == '\0' || reported[l] == ' ');
}

/* The merged state of target addr of site (checked as spec); *why the reason a replica gave
 * when down, *nlive and *nup the live replicas and how many of them say up. */
static enum tstate target_state(dataplane_t *dp, const char *site, const char *addr,
                                const char *spec, const char **why, unsigned *nlive,
                                unsigned *nup)
{
    bool down = false;
    *nlive = *nup = 0;
    *why = "";
    for (size_t i = 0; i < dp->nsites; i++) {
        if (strcmp(dp->sites[i].site, site) || !replica_live(dp, dp->sites[i].id))
            continue;
        (*nlive)++;
        const struct rep_health *h = health_find(dp, dp->sites[i].name);
        for (uint32_t k = 0; h && k < h->n; k++) {
            if (strcmp(h->checks[k].target, addr) || !health_match(h->checks[k].health, spec))
                continue;
            if (h->checks[k].healthy) {
                (*nup)++;
            } else {
                down = true;
                *why = h->checks[k].why;
            }
            break;
        }
    }
    if (!*nlive)
        return TS_UNREACHABLE;
    return *nup ? TS_UP : down ? TS_DOWN : TS_UNKNOWN;
}

/* ---- where a resource's traffic may go (transit and ingress labels) ----------------------
 *
 * A resource with transit_labels may be carried only by PoPs with one of them (a region
 * counts): this PoP takes its users' connections only if it has one (and an ingress label when
 * the resource names some), and its attempts route over a table computed without the other
 * PoPs (route_compute_filtered), so no relay or egress lacks the label. With no such path the
 * connection is refused, never sent another way. */

static bool labels_hit(const char *region, const char (*have)[NODECFG_NAME_MAX + 1],
                       unsigned nhave, const char (*want)[NODECFG_NAME_MAX + 1], unsigned nwant)
{
    if (!nwant)
        return true;
    for (unsigned i = 0; i < nwant; i++) {
        if (region[0] && !strcmp(region, want[i]))
            return true;
        for (unsigned k = 0; k < nhave; k++)
            if (!strcmp(have[k], want[i]))
                return true;
    }
    return false;
}

static bool self_allowed(dataplane_t *dp, const resource_t *r, bool ingress)
{
    const nodecfg_t *c = dp->o.cfg;
    return labels_hit(c->region, c->labels, c->nlabels, r->transit_labels, r->ntransit_labels) &&
           (!ingress ||
            labels_hit(c->region, c->labels, c->nlabels, r->ingress_labels, r->ningress_labels));
}

struct allow_ctx {
    dataplane_t *dp;
    const resource_t *r;
};

static struct cfg_pop *pop_find(dataplane_t *dp, uint64_t id);

static bool pop_allowed(void *ctx, uint64_t id)
{
    struct allow_ctx *a = ctx;
    const struct cfg_pop *cp = pop_find(a->dp, id);
    return cp && labels_hit(cp->region, cp->labels, cp->nlabels, a->r->transit_labels,
                            a->r->ntransit_labels);
}

/* The route table r's attempts use: the mesh's, or one over the PoPs its transit labels allow
 * (cached per label set until the link state or the registry changes). NULL when there is no
 * link state yet. */
static const route_table_t *routes_for(dataplane_t *dp, const resource_t *r)
{
    if (!r->ntransit_labels)
        return meshnode_routes(dp->o.mesh);
    const lsdb_t *db = meshnode_lsdb(dp->o.mesh);
    if (!db)
        return NULL;
    char key[sizeof(dp->lroutes[0].key)];
    size_t off = 0;
    for (unsigned i = 0; i < r->ntransit_labels; i++)
        off += (size_t)snprintf(key + off, sizeof(key) - off, "%s%s", i ? "," : "",
                                r->transit_labels[i]);
    uint64_t gen = lsdb_generation(db) ^ (dp->reg_gen * 0x9e3779b97f4a7c15ull);
    struct label_routes *slot = &dp->lroutes[0];
    for (size_t i = 0; i < DATAPLANE_LABEL_TABLES; i++) {
        struct label_routes *lr = &dp->lroutes[i];
        if (lr->t && !strcmp(lr->key, key)) {
            slot = lr;
            if (lr->gen == gen) {
                lr->used = ++dp->lroutes_clock;
                return lr->t;
            }
            break;
        }
        if (!lr->t || lr->used < slot->used)
            slot = lr;
    }
    route_table_destroy(&slot->t);
    struct allow_ctx a = {dp, r};
    if (route_compute_filtered(dp->route, db, dp->o.id->node_id, pop_allowed, &a, &slot->t))
        return NULL;
    snprintf(slot->key, sizeof(slot->key), "%s", key);
    slot->gen = gen;
    slot->used = ++dp->lroutes_clock;
    return slot->t;
}

/* ---- site information ------------------------------------------------------------------- */

/* Adds the originca/ record of id to in's cas, once. A CA not here yet (replication brings the
 * resource first) is left out: the site then refuses that resource's streams until the next
 * INFO, which a change of the site's resources sends. */
static void info_add_ca(dataplane_t *dp, sm_info_t *in, const uint8_t id[32])
{
    uint8_t have[32];
    for (uint32_t i = 0; i < in->ncas; i++) {
        resource_ca_id(in->cas[i], strlen(in->cas[i]), have);
        if (!memcmp(have, id, 32))
            return;
    }
    if (in->ncas >= SM_CAS_MAX)
        return;
    char key[RESOURCE_CA_KEY_MAX];
    resource_ca_key(id, key, sizeof(key));
    store_entry_t e;
    if (store_get(dp->o.store, key, strlen(key), &e))
        return;
    const char *why;
    if (!e.tombstone && e.value &&
        resource_ca_parse(e.value, e.vlen, id, in->cas[in->ncas], sizeof(in->cas[0]), &why) == 0)
        in->ncas++;
    else if (!e.tombstone)
        log_warn("data plane: %s: %s", key, e.value ? why : "empty");
    store_entry_free(&e);
}

/* The PoPs a site may use (alive now) and the checks of its resources' targets. Reads only
 * the site's own resources, by name: every replica of a site is told the same. */
static void send_info(struct peer *p, bool force)
{
    dataplane_t *dp = p->dp;
    sm_info_t *in = xcalloc(1, sizeof(*in));
    for (size_t i = 0; i < dp->npops && in->npops < SM_POPS_MAX; i++) {
        const struct cfg_pop *cp = &dp->pops[i];
        if (!meshnode_is_alive(dp->o.mesh, cp->id))
            continue;
        sm_pop_t *sp = &in->pops[in->npops++];
        sp->id = cp->id;
        snprintf(sp->name, sizeof(sp->name), "%s", cp->name);
        snprintf(sp->tunnel_addr, sizeof(sp->tunnel_addr), "%s", cp->tunnel_addr);
        memcpy(sp->curve_pk, cp->curve_pk, 32);
        snprintf(sp->region, sizeof(sp->region), "%s", cp->region);
    }
    resource_t *r = xmalloc(sizeof(*r));
    /* A PoP that may not carry one of the site's resources (transit labels) is one the site
     * should not hold its tunnels to when it can hold them elsewhere. */
    for (size_t i = 0; i < dp->nres; i++) {
        if (!dp->res[i].labelled || (!dp->res[i].multi && strcmp(dp->res[i].site, p->site)) ||
            resource_get(dp->o.store, dp->res[i].name, r))
            continue;
        bool mine = false;
        for (unsigned k = 0; k < r->ntargets && !mine; k++)
            mine = resource_target_in(r, k, p->site);
        for (uint32_t k = 0; mine && k < in->npops; k++) {
            const struct cfg_pop *cp = pop_find(dp, in->pops[k].id);
            if (!cp || !labels_hit(cp->region, cp->labels, cp->nlabels, r->transit_labels,
                                   r->ntransit_labels))
                in->pops[k].avoid = true;
        }
    }
    for (size_t i = 0; i < dp->nres && in->nchecks < SM_CHECKS_MAX; i++) {
        if ((!dp->res[i].multi && strcmp(dp->res[i].site, p->site)) ||
            resource_get(dp->o.store, dp->res[i].name, r))
            continue;
        if (r->has_origin_ca)
            info_add_ca(dp, in, r->origin_ca);
        for (unsigned k = 0; k < r->ntargets && in->nchecks < SM_CHECKS_MAX; k++) {
            if (!resource_target_in(r, k, p->site)) /* another site's network */
                continue;
            sm_check_t *ck = &in->checks[in->nchecks++];
            if (r->udp_port) { /* named as OPEN names them; not checked (sitemsg.h) */
                snprintf(ck->target, sizeof(ck->target), "%s%.*s", SM_UDP_SCHEME,
                         (int)(NODECFG_ADDR_MAX - RESOURCE_UDP_SCHEME_LEN), r->targets[k]);
                snprintf(ck->health, sizeof(ck->health), "%s", SM_UDP_HEALTH);
                continue;
            }
            snprintf(ck->target, sizeof(ck->target), "%s", r->targets[k]);
            resource_health_str(r, ck->health, sizeof(ck->health));
            if (!resource_hc_set(r))
                continue; /* the INFO entry older sites know */
            /* The site checks this resource's targets with its own settings; a change to them
             * changes INFO, which goes out at once (info_dirty). */
            snprintf(ck->resource, sizeof(ck->resource), "%s", r->name);
            ck->hc.interval_ms = r->hc_interval_ms;
            ck->hc.timeout_ms = r->hc_timeout_ms;
            ck->hc.rise = r->hc_rise;
            ck->hc.fall = r->hc_fall;
            resource_hc_status_str(r, ck->hc.status, sizeof(ck->hc.status));
            snprintf(ck->hc.host, sizeof(ck->hc.host), "%s", r->hc_host);
        }
    }
    free(r);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_pack_info(&pk, in);
    uint8_t h[16];
    crypto_generichash(h, sizeof(h), (const uint8_t *)sb.data, sb.size, NULL, 0);
    if (force || memcmp(h, p->info_hash, sizeof(h))) {
        if (tconn_send_ctl(p->c, (const uint8_t *)sb.data, sb.size) == 0)
            memcpy(p->info_hash, h, sizeof(h));
    }
    msgpack_sbuffer_destroy(&sb);
    free(in);
}

/* The primary PoP of a site stores its checks, only when they changed. */
static void store_site_health(struct peer *p)
{
    if (!p->status || !p->primary)
        return;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_pack_status(&pk, p->status);
    uint8_t h[16];
    crypto_generichash(h, sizeof(h), (const uint8_t *)sb.data, sb.size, NULL, 0);
    if (memcmp(h, p->health_hash, sizeof(h))) {
        char key[128];
        snprintf(key, sizeof(key), SITEHEALTH_PREFIX "%s", p->name);
        if (meshnode_put_value(p->dp->o.mesh, key, strlen(key), sb.data, sb.size, NULL) == 0)
            memcpy(p->health_hash, h, sizeof(h));
    }
    msgpack_sbuffer_destroy(&sb);
}

/* ---- tunnel callbacks -------------------------------------------------------------------- */

/* A HELLO from node id whose timestamp this PoP admitted before (or one older than the filter
 * remembers) is a copy: refuse it before it costs anything more than the handshake's DH.
 * The filter lives in memory: after a restart a recorded HELLO is admitted once more, but
 * tconn attaches nothing until a record sealed with the session's keys arrives, which a
 * replayer cannot make; the connection then dies at the handshake deadline. */
static bool hello_replayed(dataplane_t *dp, uint64_t id, uint64_t ts)
{
    struct hello_seen *e = NULL;
    for (size_t i = 0; i < dp->nseen && !e; i++)
        if (dp->seen[i].id == id)
            e = &dp->seen[i];
    if (!e) { /* bounded by the registry: only registered keys get here */
        dp->seen = xrealloc(dp->seen, (dp->nseen + 1) * sizeof(*dp->seen));
        e = &dp->seen[dp->nseen++];
        memset(e, 0, sizeof(*e));
        e->id = id;
    }
    return sc_replay_check(&e->filter, ts) != 0;
}

static int pc_admit(void *ctx, tconn_t *c, const uint8_t pk[32], const uint8_t *payload,
                    size_t plen, uint8_t *reply, size_t *reply_len)
{
    (void)c;
    struct peer *p = ctx;
    dataplane_t *dp = p->dp;
    sm_hello_t h;
    const char *why;
    if (sm_decode_hello(payload, plen, &h, &why)) {
        log_warn("dataplane: tunnel from %s refused: %s", tconn_peer_addr(c), why);
        dp->st.tunnels_refused++;
        return -EBADMSG;
    }
    uint64_t id = identity_node_id_of(pk);
    reg_node_t n;
    if (node_get(dp, id, &n)) {
        log_warn("dataplane: tunnel from %s refused: key of no registered node (%s '%s')",
                 tconn_peer_addr(c), h.role, h.name);
        dp->st.tunnels_refused++;
        return -EACCES;
    }
    if (n.removed || strcmp(node_role_name(n.role), h.role) || strcmp(n.name, h.name)) {
        log_warn("dataplane: tunnel from %s refused: %s %s%s", tconn_peer_addr(c),
                 node_role_name(n.role), n.name,
                 n.removed ? " was removed from the mesh" : " claims another role or name");
        dp->st.tunnels_refused++;
        return -EACCES;
    }
    if (hello_replayed(dp, id, tconn_hello_ts(c))) {
        dp->st.hello_replays++;
        uint64_t now = clock_mono_ms();
        if (now - dp->replay_log_ms >= 1000) { /* replays cost a line a second at most */
            log_warn("dataplane: tunnel from %s refused: replayed HELLO of %s %s (%llu more "
                     "since the last such line)",
                     tconn_peer_addr(c), node_role_name(n.role), n.name,
                     (unsigned long long)dp->replays_unlogged);
            dp->replay_log_ms = now;
            dp->replays_unlogged = 0;
        } else {
            dp->replays_unlogged++;
        }
        return -EALREADY;
    }
    p->id = id;
    p->is_site = n.role == ROLE_SITE;
    p->probe = h.probe;
    p->seal = h.seal;
    tconn_set_split(c, h.seal != 0);
    snprintf(p->name, sizeof(p->name), "%s", n.name);
    snprintf(p->site, sizeof(p->site), "%s", reg_node_site(&n));
    sm_welcome_t w = {.id = dp->o.id->node_id, .seal = seal_local_suites()};
    snprintf(w.name, sizeof(w.name), "%s", dp->o.cfg->name);
    msgpack_sbuffer sb;
    msgpack_packer mp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&mp, &sb, msgpack_sbuffer_write);
    sm_pack_welcome(&mp, &w);
    int rc = sb.size <= *reply_len ? 0 : -EMSGSIZE;
    if (!rc) {
        memcpy(reply, sb.data, sb.size);
        *reply_len = sb.size;
    }
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void pc_up(void *ctx, tconn_t *c, const uint8_t *payload, size_t plen)
{
    struct peer *p = ctx;
    dataplane_t *dp = p->dp;
    if (payload) { /* we dialled: check the WELCOME names the PoP we meant */
        sm_welcome_t w;
        const char *why;
        if (sm_decode_welcome(payload, plen, &w, &why) || w.id != p->id) {
            log_warn("dataplane: PoP %s answered with a bad WELCOME", p->name);
            tconn_close(c, "bad WELCOME");
            return;
        }
        p->seal = w.seal;
        tconn_set_split(c, w.seal != 0);
    } else {
        dp->st.tunnels_accepted++;
    }
    conncap_release(dp->pending_cap, p->slot); /* authenticated: no longer capped */
    p->slot = NULL;
    if (p->probe) { /* answered: the site has its RTT sample; it closes the connection */
        p->dead = false;
        return;
    }
    p->up = true;
    p->up_since_ms = clock_mono_ms();
    if (p->is_site) {
        log_info("dataplane: site %s attached from %s", p->name, tconn_peer_addr(c));
        send_info(p, true);
        meshnode_linkstate_changed(dp->o.mesh);
    } else {
        log_debug("dataplane: tunnel to PoP %s up", p->name);
        run_waiters(p, true);
    }
}

static void pc_down(void *ctx, tconn_t *c, const char *why)
{
    (void)c;
    struct peer *p = ctx;
    dataplane_t *dp = p->dp;
    if (p->is_site && p->up) {
        log_info("dataplane: site %s detached: %s", p->name, why);
        meshnode_linkstate_changed(dp->o.mesh);
    } else if (p->accepted && p->id && !p->up) {
        /* admitted but never proved it holds the session keys: a replayed HELLO, or a peer
         * that died within the handshake */
        dp->st.hello_unconfirmed++;
        log_debug("dataplane: tunnel from %s (%s) closed before its first record: %s",
                  tconn_peer_addr(c), p->name, why);
    } else if (!p->is_site && p->id) {
        if (!p->up) {
            log_info("dataplane: tunnel to PoP %s failed: %s", p->name, why);
            dial_failed(dp, p->id);
        } else {
            log_info("dataplane: tunnel to PoP %s down: %s", p->name, why);
            /* Connections being opened now take a path around it (ingress_pick) for
             * DIAL_BACKOFF_MS, until the routes know whether it is dead: a PoP SIGKILLed a
             * moment ago refuses the redial anyway, and each try through it cost a retry. */
            dial_failed(dp, p->id);
        }
    } else {
        if (!p->id) /* never admitted: garbage, a bad handshake, or a refused key */
            dp->st.handshake_failures++;
        log_debug("dataplane: tunnel from %s closed: %s", tconn_peer_addr(c), why);
    }
    conncap_release(dp->pending_cap, p->slot);
    p->slot = NULL;
    p->up = false;
    p->dead = true;
    run_waiters(p, false);
    if (!dp->reap_pending) {
        dp->reap_pending = true;
        ev_check_start(dp->o.loop, &dp->reaper);
    }
}

static void pc_ctl(void *ctx, tconn_t *c, const uint8_t *msg, size_t len)
{
    struct peer *p = ctx;
    if (!p->is_site)
        return;
    sm_status_t *st = xmalloc(sizeof(*st));
    int type;
    const char *why;
    if (sm_decode_ctl(msg, len, &type, st, NULL, &why)) {
        log_warn("dataplane: site %s sent a bad status: %s", p->name, why);
        free(st);
        return;
    }
    bool was = p->primary, was_draining = p->draining;
    free(p->status);
    p->status = st;
    p->primary = st->primary;
    p->draining = st->draining;
    if (was != p->primary || was_draining != p->draining) {
        log_info("dataplane: site %s calls this PoP its %s", p->name,
                 p->draining  ? "old PoP (draining: no new streams)"
                 : p->primary ? "primary"
                              : "standby");
        meshnode_linkstate_changed(p->dp->o.mesh);
    }
    store_site_health(p);
    (void)c;
}

static void pc_drain(void *ctx, tconn_t *c)
{
    struct peer *p = ctx;
    splice_ctx_tconn_drained(p->dp->splices, c);
}

/* ---- ingress ----------------------------------------------------------------------------- */

static void ingress_try(struct ingress *in);

static void ingress_fail(struct ingress *in, const char *why)
{
    dataplane_t *dp = in->dp;
    dp->st.ingress_failed++;
    if (in->hit_limit) {
        /* A burst past the limit would log a line per connection: one a second instead. */
        dp->st.ingress_refused_limit++;
        uint64_t now = clock_mono_ms();
        if (now - dp->limit_log_ms >= 1000) {
            log_warn("resource %s: connection from %s refused: tunnels at their stream limit "
                     "(%u); %llu more refused since the last such line",
                     in->res.name, in->client, dp->tcfg.max_streams,
                     (unsigned long long)dp->limit_unlogged);
            dp->limit_log_ms = now;
            dp->limit_unlogged = 0;
        } else {
            dp->limit_unlogged++;
        }
    } else if (in->looped) {
        /* A loop comes back once per connection and health check: one line a second. */
        dp->st.ingress_loops++;
        uint64_t now = clock_mono_ms();
        if (now - dp->loop_log_ms >= 1000) {
            log_warn("resource %s: connection from %s refused by site %s: %s (%llu more since "
                     "the last such line)",
                     in->res.name, in->client, in->cur_site, why,
                     (unsigned long long)dp->loop_unlogged);
            dp->loop_log_ms = now;
            dp->loop_unlogged = 0;
        } else {
            dp->loop_unlogged++;
        }
    } else {
        log_warn("resource %s: connection from %s closed: %s", in->res.name, in->client, why);
    }
    ev_timer_stop(dp->o.loop, &in->kick);
    if (in->h)
        in->h->on_fail(in->h, TUN_ERR_UNREACHABLE, why);
    else
        splice_abort(in->sp, TUN_ERR_UNREACHABLE, why);
    free(in);
}

/* Replicas registered for the sites of in's resource (each site counted once), at most
 * DATAPLANE_TRIED_MAX. */
static size_t resource_replicas(struct ingress *in)
{
    size_t n = 0;
    for (unsigned i = 0; i < in->res.ntargets; i++) {
        const char *site = resource_target_site(&in->res, i);
        bool seen = false;
        for (unsigned k = 0; k < i && !seen; k++)
            seen = !strcmp(site, resource_target_site(&in->res, k));
        if (!seen) {
            uint64_t ids[DATAPLANE_REPLICAS_MAX];
            n += site_replicas(in->dp, site, ids, DATAPLANE_REPLICAS_MAX);
        }
    }
    return n < DATAPLANE_TRIED_MAX ? n : DATAPLANE_TRIED_MAX;
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents);

/* BACKGROUND: SPACED ATTEMPTS
 *
 * The first attempts go at once: the second takes the backup path or another replica, which
 * is what a SIGKILLed PoP or replica needs. When those fail too, the cause is usually one that
 * time fixes: the only tunnel to the site died and the site redials it within 0.1-0.3 s, or
 * the next hop is known dead and the route table drops it within 20-200 ms. Attempts made at
 * once would all land in that window and fail; so later attempts wait 100 ms, doubling to
 * 800 ms, while the connection is younger than DATAPLANE_RETRY_WINDOW_MS (its client is held,
 * not read, meanwhile). A tunnel at its stream limit is the exception: more attempts would only
 * add load, so that connection is refused at once as before. */
static void ingress_retry(struct ingress *in, const char *why)
{
    /* Reasons are short; a long one is cut (it only feeds a log line and the last error). */
    snprintf(in->last_error, sizeof(in->last_error), "%.*s", (int)sizeof(in->last_error) - 1, why);
    /* One more attempt per replica beyond the first: each live one gets its chance; then more,
     * spaced, within the retry window. */
    size_t nrep = resource_replicas(in);
    int base = DATAPLANE_ATTEMPTS + (int)(nrep > 1 ? nrep - 1 : 0);
    uint64_t age = clock_mono_ms() - in->t0_ms;
    ++in->attempt;
    bool more = in->attempt < base ||
                (!in->hit_limit && age < DATAPLANE_RETRY_WINDOW_MS &&
                 in->attempt < DATAPLANE_ATTEMPTS_MAX);
    if (!more) {
        char msg[512];
        snprintf(msg, sizeof(msg), "cannot reach site %s after %d attempts: %s", in->cur_site,
                 in->attempt, why);
        ingress_fail(in, msg);
        return;
    }
    in->dp->st.ingress_retries++;
    log_debug("resource %s: retrying a connection from %s (%s)", in->res.name, in->client, why);
    if (in->attempt < 2 || in->hit_limit) {
        ingress_try(in);
        return;
    }
    int k = in->attempt - 2;
    double delay = 0.1 * (double)(1u << (k < 3 ? k : 3));
    ev_timer_stop(in->dp->o.loop, &in->kick);
    ev_timer_set(&in->kick, delay, 0.);
    ev_timer_start(in->dp->o.loop, &in->kick);
}

/* ---- sealed streams ----------------------------------------------------------------------
 *
 * The ingress seals a stream's payload for the site (tunnel/seal.h) when everyone on the way
 * can carry it: the site says it opens a suite we have (in its HELLO when it is attached here,
 * else in its STATUS as stored in sitehealth/), and every PoP on the path advertises sealed
 * relaying in its node record (`seal`: a PoP that predates it would drop the OPEN's seal field,
 * and the site would take records for plaintext). Otherwise the stream goes as before, sealed
 * hop by hop only. popd.conf's seal-streams = no turns it off at this ingress (for
 * comparisons; relays still carry others' sealed streams). */

/* The suites the site replica id opens, as far as this PoP knows. */
static uint8_t site_seal_suites(dataplane_t *dp, uint64_t id)
{
    struct peer *sp = find_peer(dp, id, true, true);
    if (sp && sp->seal)
        return sp->seal;
    for (size_t i = 0; i < dp->nsites; i++)
        if (dp->sites[i].id == id) {
            const struct rep_health *h = health_find(dp, dp->sites[i].name);
            return h ? h->seal : 0;
        }
    return 0;
}

/* K for the site whose key is s_pk, from this epoch's ephemeral key (made or replaced here). */
static int seal_site_key(dataplane_t *dp, uint64_t site, const uint8_t s_pk[32], uint8_t *k)
{
    uint64_t now = clock_mono_ms();
    if (!dp->seal_epoch_ms || now - dp->seal_epoch_ms >= SEAL_EPOCH_S * 1000ull) {
        /* A new epoch: the old ephemeral secret and every K made from it are forgotten, so
         * streams sealed before cannot be opened from this PoP's memory any more. */
        crypto_box_keypair(dp->seal_e_pk, dp->seal_e_sk);
        sodium_memzero(dp->seal_k, sizeof(dp->seal_k));
        dp->nseal_k = 0;
        dp->seal_epoch_ms = now ? now : 1;
    }
    for (size_t i = 0; i < dp->nseal_k; i++)
        if (dp->seal_k[i].site == site) {
            memcpy(k, dp->seal_k[i].k, SEAL_KEY_LEN);
            return 0;
        }
    int rc = seal_path_ingress(k, dp->seal_e_sk, dp->seal_e_pk, dp->keys.sk, dp->keys.pk, s_pk);
    if (rc)
        return rc;
    size_t slot = dp->nseal_k < DATAPLANE_SEAL_SITES ? dp->nseal_k++ : site % DATAPLANE_SEAL_SITES;
    dp->seal_k[slot].site = site;
    memcpy(dp->seal_k[slot].k, k, SEAL_KEY_LEN);
    return 0;
}

/* Fills o's seal and *keys when in's stream can be sealed on its path; false when it cannot
 * (*why says why, for the debug log). */
static bool ingress_seal(struct ingress *in, sm_open_t *o, seal_keys_t *keys, const char **why)
{
    dataplane_t *dp = in->dp;
    if (dp->o.cfg->no_seal) {
        *why = "seal-streams = no";
        return false;
    }
    uint8_t suite = seal_pick_suite(site_seal_suites(dp, in->site) & seal_local_suites());
    if (!suite) {
        *why = "the site does not open sealed streams (an older popsite?)";
        return false;
    }
    reg_node_t n;
    for (uint32_t i = 1; i < in->n_hops; i++)
        if (node_get(dp, in->hops[i], &n) || !n.seal) {
            *why = "a PoP on the path does not relay sealed streams (an older popd?)";
            return false;
        }
    uint8_t k[SEAL_KEY_LEN];
    if (node_get(dp, in->site, &n) || seal_site_key(dp, in->site, n.curve_pk, k)) {
        *why = "no usable key for the site";
        return false;
    }
    o->sealed = true;
    o->seal_from = dp->o.id->node_id;
    memcpy(o->seal_epk, dp->seal_e_pk, sizeof(o->seal_epk));
    memcpy(o->seal_ipk, dp->keys.pk, sizeof(o->seal_ipk));
    randombytes_buf(o->seal_salt, sizeof(o->seal_salt));
    o->seal_suite = suite;
    uint8_t bind[SEAL_BIND_LEN];
    sm_open_bind(o, bind);
    seal_stream_keys(keys, k, o->seal_salt, bind, suite, true);
    sodium_memzero(k, sizeof(k));
    return true;
}

static void ingress_open_on(struct ingress *in, struct peer *p)
{
    tun_t *t = tconn_tun(p->c);
    if (!t) {
        ingress_retry(in, "tunnel not up");
        return;
    }
    sm_open_t *o = xcalloc(1, sizeof(*o));
    snprintf(o->resource, sizeof(o->resource), "%s", in->res.name);
    o->site = in->site;
    /* hops[0] is us, hops[1] the PoP we hand the stream to: the rest goes in the OPEN. */
    for (uint32_t i = 2; i < in->n_hops && o->npath < SM_PATH_MAX; i++)
        o->path[o->npath++] = in->hops[i];
    snprintf(o->client, sizeof(o->client), "%s", in->client);
    snprintf(o->ingress, sizeof(o->ingress), "%s", in->ingress);
    /* The chosen site's targets of the chosen priority, with their weights (1 everywhere for
     * a resource that sets none: the OPEN is then what it always was). */
    for (unsigned i = 0; i < in->res.ntargets; i++) {
        if (!(in->tmask & (1u << i)))
            continue;
        snprintf(o->targets[o->ntargets], sizeof(o->targets[0]), "%s", in->res.targets[i]);
        o->weights[o->ntargets++] = (uint16_t)resource_target_weight(&in->res, i);
    }
    o->sticky = in->res.sticky;
    o->proxy = in->res.proxy_protocol; /* TCP resources only (resource_check) */
    o->tls = in->res.origin_tls; /* https:// targets: the site speaks TLS to them */
    o->has_ca = in->res.has_origin_ca;
    memcpy(o->ca, in->res.origin_ca, sizeof(o->ca));
    seal_keys_t keys;
    const char *why = "";
    bool sealed = ingress_seal(in, o, &keys, &why);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_pack_open(&pk, o);
    free(o);
    uint64_t sid;
    int rc = tun_open(t, (const uint8_t *)sb.data, sb.size, in, clock_mono_ms(), &sid);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        sodium_memzero(&keys, sizeof(keys));
        in->hit_limit |= rc == -EAGAIN;
        ingress_retry(in, rc == -EAGAIN ? "tunnel stream limit" : "tunnel closed");
        return;
    }
    if (sealed) {
        rc = tun_seal(t, sid, TUN_SEAL_END, &keys);
        sodium_memzero(&keys, sizeof(keys));
        if (rc) { /* our own suite, checked above: a bug, not input */
            tun_reset(t, sid, TUN_ERR_INTERNAL);
            ingress_retry(in, "cannot seal the stream");
            return;
        }
        in->dp->st.ingress_sealed++;
    } else {
        in->dp->st.ingress_unsealed++;
        log_debug("resource %s: %s: stream not sealed end to end: %s", in->res.name, in->client,
                  why);
    }
    tconn_kick(p->c);
}

static void ingress_peer_ready(struct waiter *w, struct peer *p)
{
    struct ingress *in = (struct ingress *)((char *)w - offsetof(struct ingress, w));
    if (w->cancelled) {
        free(in);
        return;
    }
    if (!p) {
        ingress_retry(in, "next PoP's tunnel could not be dialled");
        return;
    }
    ingress_open_on(in, p);
}

/* in's slot for replica id in tried[], or in->ntried when it has none. */
static uint32_t tried_slot(const struct ingress *in, uint64_t id)
{
    uint32_t k = 0;
    while (k < in->ntried && in->tried[k] != id)
        k++;
    return k;
}

/* BACKGROUND: TARGETS IN SEVERAL SITES
 *
 * Each attempt first chooses the targets (choose_targets), then a replica of their site
 * (ingress_pick). A target is a candidate when its site has a replica this connection may
 * still use (live, and it has not refused this connection) and its merged health is not down;
 * the candidates of the best (lowest) priority win, and one of them is drawn by weight (by
 * the client's address when the resource is sticky, so a client keeps its site): the OPEN
 * then names that site's targets of that priority, which the site shares by weight among the
 * healthy ones. So traffic stays on the best priority while any of its targets is up, moves
 * to the next when all are down or their sites unreachable, and comes back when the health
 * records say so.
 *
 * Health reaches a PoP through the store, so it lags a failure by a check interval and a
 * replication. Meanwhile the connection itself fails over: a replica that finds none of its
 * targets answering refuses the stream ("no target of ..."), is marked refused for this
 * connection, and the next attempt goes to another replica of the site or, when none is
 * left, to the next priority. A site whose replicas this connection tried twice each counts
 * as used up when another site can take the attempt. */
static bool site_usable(struct ingress *in, const char *site, bool *fresh)
{
    bool any = false;
    *fresh = false;
    dataplane_t *dp = in->dp;
    for (size_t i = 0; i < dp->nsites; i++) {
        if (strcmp(dp->sites[i].site, site) || !replica_live(dp, dp->sites[i].id))
            continue;
        uint32_t k = tried_slot(in, dp->sites[i].id);
        if (k < in->ntried && in->refused[k])
            continue;
        any = true;
        if (k == in->ntried || in->tries[k] < 2)
            *fresh = true;
    }
    return any;
}

static uint64_t client_hash(const char *client)
{
    /* The address without its port: one client keeps its target across connections. */
    char ip[NETADDR_HOST_MAX + 3];
    netaddr_t na;
    if (netaddr_parse(client, &na, true))
        snprintf(ip, sizeof(ip), "%.*s", NETADDR_HOST_MAX, client);
    else
        snprintf(ip, sizeof(ip), na.ipv6 ? "[%s]" : "%s", na.host);
    uint8_t h[8];
    crypto_generichash(h, sizeof(h), (const uint8_t *)ip, strlen(ip), NULL, 0);
    uint64_t v;
    memcpy(&v, h, 8);
    return v;
}

/* Sets in->cur_site and in->tmask for the next attempt; false when no site of the resource
 * has a replica left to try. */
static bool choose_targets(struct ingress *in)
{
    const resource_t *r = &in->res;
    unsigned n = r->ntargets, p0 = resource_target_priority(r, 0);
    bool one = true; /* one site, one priority: nothing to choose (the common case) */
    for (unsigned i = 1; i < n && one; i++)
        one = resource_target_in(r, i, r->site) && resource_target_priority(r, i) == p0;
    if (one) {
        bool fresh;
        snprintf(in->cur_site, sizeof(in->cur_site), "%s", r->site);
        in->tmask = (1u << n) - 1;
        return site_usable(in, r->site, &fresh);
    }
    bool fresh[RESOURCE_TARGETS_MAX], any[RESOURCE_TARGETS_MAX];
    enum tstate st[RESOURCE_TARGETS_MAX];
    char spec[RESOURCE_HEALTH_MAX + 1];
    resource_health_str(r, spec, sizeof(spec));
    for (unsigned i = 0; i < n; i++) {
        const char *site = resource_target_site(r, i);
        unsigned k = 0;
        while (k < i && strcmp(site, resource_target_site(r, k)))
            k++;
        if (k < i) {
            fresh[i] = fresh[k];
            any[i] = any[k];
        } else {
            any[i] = site_usable(in, site, &fresh[i]);
        }
        const char *why;
        unsigned nlive, nup;
        st[i] = any[i] ? target_state(in->dp, site, r->targets[i], spec, &why, &nlive, &nup)
                       : TS_UNREACHABLE;
    }
    /* Fresh sites with healthy targets first; then health is not believed (a check can lag
     * or be wrong); then sites this connection already tried twice. */
    for (int pass = 0; pass < 4; pass++) {
        bool ok[RESOURCE_TARGETS_MAX];
        unsigned best = UINT_MAX;
        for (unsigned i = 0; i < n; i++) {
            ok[i] = (pass < 2 ? fresh[i] : any[i]) && ((pass & 1) || st[i] != TS_DOWN);
            if (ok[i] && resource_target_priority(r, i) < best)
                best = resource_target_priority(r, i);
        }
        if (best == UINT_MAX)
            continue;
        uint64_t total = 0;
        for (unsigned i = 0; i < n; i++)
            if (ok[i] && resource_target_priority(r, i) == best)
                total += resource_target_weight(r, i);
        uint64_t v = (r->sticky ? client_hash(in->client) : in->dp->pick_rr++) % total;
        unsigned pick = 0;
        for (unsigned i = 0; i < n; i++) {
            if (!ok[i] || resource_target_priority(r, i) != best)
                continue;
            if (v < resource_target_weight(r, i)) {
                pick = i;
                break;
            }
            v -= resource_target_weight(r, i);
        }
        const char *site = resource_target_site(r, pick);
        snprintf(in->cur_site, sizeof(in->cur_site), "%s", site);
        in->tmask = 0;
        for (unsigned i = 0; i < n; i++)
            if (resource_target_priority(r, i) == best && resource_target_in(r, i, site))
                in->tmask |= 1u << i;
        return true;
    }
    return false;
}

/* BACKGROUND: REPLICAS
 *
 * A site may have several connector replicas, each a site node of its own whose tunnels ride
 * the link state under its own id, so the route table holds a route per replica. An attempt
 * goes to a replica of the chosen site whose checks do not say it cannot reach the targets
 * (one that can goes first), then the one this connection has tried least, then the one
 * with the cheapest route (a replica attached here before the routes caught up counts as
 * free); replicas no PoP reaches, and those that refused this connection, are skipped. So the
 * first attempt takes the cheapest path to the site, and a failed one (a replica SIGKILLed:
 * its tunnels reset at once) moves to another replica before the same replica is tried again
 * on its backup path. With one replica this is what it was: primary, backup, primary. */
/* True when replica id's last report has every target of this attempt down (it cannot reach
 * them): another replica that can goes first. A replica that has not reported one of them
 * does not count as reporting it down. */
static bool replica_reports_down(struct ingress *in, uint64_t id)
{
    dataplane_t *dp = in->dp;
    const struct rep_health *h = NULL;
    for (size_t i = 0; i < dp->nsites && !h; i++)
        if (dp->sites[i].id == id)
            h = health_find(dp, dp->sites[i].name);
    if (!h)
        return false;
    char spec[RESOURCE_HEALTH_MAX + 1];
    resource_health_str(&in->res, spec, sizeof(spec));
    for (unsigned t = 0; t < in->res.ntargets; t++) {
        if (!(in->tmask & (1u << t)))
            continue;
        bool down = false;
        for (uint32_t k = 0; k < h->n; k++)
            if (!strcmp(h->checks[k].target, in->res.targets[t]) &&
                health_match(h->checks[k].health, spec)) {
                down = !h->checks[k].healthy;
                break;
            }
        if (!down)
            return false;
    }
    return true;
}

static bool ingress_pick(struct ingress *in, route_entry_t *e, bool *routed, uint32_t *slot)
{
    dataplane_t *dp = in->dp;
    const route_table_t *rt = routes_for(dp, &in->res);
    uint64_t ids[DATAPLANE_REPLICAS_MAX];
    size_t n = site_replicas(dp, in->cur_site, ids, DATAPLANE_REPLICAS_MAX);
    bool found = false, best_down = false;
    uint64_t best_cost = 0;
    uint32_t best_tries = 0;
    for (size_t i = 0; i < n; i++) {
        route_entry_t re;
        bool r = rt && route_table_lookup(rt, ids[i], &re) == 0;
        if (!r && !find_peer(dp, ids[i], true, true))
            continue;
        uint64_t cost = r ? re.primary.cost_us : 0;
        uint32_t k = tried_slot(in, ids[i]);
        if (k < in->ntried && in->refused[k])
            continue;
        uint32_t tries = k < in->ntried ? in->tries[k] : 0;
        /* A replica whose checks say it cannot reach the targets goes after those that can
         * (the targets' merged health: up if a replica that reaches them says so). */
        bool down = n > 1 && replica_reports_down(in, ids[i]);
        if (found && (down > best_down || (down == best_down && tries > best_tries) ||
                      (down == best_down && tries == best_tries && cost >= best_cost)))
            continue;
        found = true;
        best_down = down;
        best_cost = cost;
        best_tries = tries;
        in->site = ids[i];
        *routed = r;
        if (r)
            *e = re;
        *slot = k;
    }
    if (!found)
        return false;
    if (*slot == in->ntried && in->ntried < DATAPLANE_TRIED_MAX) {
        in->tried[in->ntried] = in->site;
        in->refused[in->ntried] = false;
        in->tries[in->ntried++] = 0;
    }
    return true;
}

/* True when some live PoP's link state holds a tunnel to a replica of site: then a failed
 * pick means this PoP has no route to it (yet), not that the site is offline. */
static bool site_attached_somewhere(dataplane_t *dp, const char *site)
{
    const lsdb_t *db = meshnode_lsdb(dp->o.mesh);
    size_t cnt = db ? lsdb_count(db) : 0;
    for (size_t i = 0; i < cnt; i++) {
        lsdb_entry_t e;
        if (lsdb_entry_at(db, i, &e) || !meshnode_is_alive(dp->o.mesh, e.origin))
            continue;
        for (uint32_t k = 0; k < e.n_sites; k++) {
            if (e.sites[k].state != LS_SITE_ONLINE)
                continue;
            for (size_t s = 0; s < dp->nsites; s++)
                if (dp->sites[s].id == e.sites[k].site && !strcmp(dp->sites[s].site, site))
                    return true;
        }
    }
    return false;
}

static void ingress_try(struct ingress *in)
{
    dataplane_t *dp = in->dp;
    route_entry_t e;
    bool routed = false;
    uint32_t slot = 0;
    if (!choose_targets(in) || !ingress_pick(in, &e, &routed, &slot)) {
        char msg[400];
        bool refused = false;
        for (uint32_t k = 0; k < in->ntried; k++)
            refused |= in->refused[k];
        /* No replica to try now, but one was a moment ago (this connection tried it): its
         * tunnel is being redialled, or routes are catching up. Wait within the window. */
        if (!refused && in->ntried > 0 && in->attempt > 0 &&
            clock_mono_ms() - in->t0_ms < DATAPLANE_RETRY_WINDOW_MS &&
            in->attempt < DATAPLANE_ATTEMPTS_MAX) {
            in->attempt++;
            dp->st.ingress_retries++;
            ev_timer_stop(dp->o.loop, &in->kick);
            ev_timer_set(&in->kick, 0.1, 0.);
            ev_timer_start(dp->o.loop, &in->kick);
            return;
        }
        if (refused) /* every replica left said no target answers: its words */
            snprintf(msg, sizeof(msg), "%s", in->last_error);
        else if (in->res.ntransit_labels)
            snprintf(msg, sizeof(msg),
                     "no allowed path: no route to site %s crosses only PoPs with its transit "
                     "labels (the resource is not carried any other way)",
                     in->cur_site);
        else if (resource_multisite(&in->res))
            snprintf(msg, sizeof(msg), "no site of the resource is reachable from this PoP");
        else if (site_attached_somewhere(dp, in->res.site))
            snprintf(msg, sizeof(msg),
                     "site %s is attached at other PoPs but this PoP has no route to it (yet: "
                     "routes follow link state within a second; else no path reaches them)",
                     in->res.site);
        else
            snprintf(msg, sizeof(msg), "site %s is offline (no PoP has a tunnel to it)",
                     in->res.site);
        ingress_fail(in, msg);
        return;
    }
    uint32_t tries = slot < in->ntried ? in->tries[slot] : 0;
    if (slot < in->ntried && in->tries[slot] < UINT8_MAX)
        in->tries[slot]++;
    if (!routed) { /* attached here before the routes caught up */
        struct peer *direct = find_peer(dp, in->site, true, true);
        in->n_hops = 1;
        ingress_open_on(in, direct);
        return;
    }
    const route_path_t *path = (tries == 1 && e.has_backup) ? &e.backup : &e.primary;
    /* A next hop whose tunnel just failed (dial_failed) is skipped while the other path's is
     * not: the routes drop a dead PoP only once SWIM suspects it, up to a second later. */
    if (e.has_backup && path->egress != dp->o.id->node_id &&
        dial_backing_off(dp, path->next_hop)) {
        const route_path_t *other = path == &e.primary ? &e.backup : &e.primary;
        if (other->egress == dp->o.id->node_id || !dial_backing_off(dp, other->next_hop))
            path = other;
    }
    uint64_t self = dp->o.id->node_id;
    in->n_hops = 0;
    for (uint32_t i = 0; i < path->n_hops && i < SM_PATH_MAX + 2; i++)
        in->hops[in->n_hops++] = path->hops[i];
    if (path->egress == self) {
        struct peer *s = find_peer(dp, in->site, true, true);
        if (!s) {
            ingress_retry(in, "the site's tunnel here is gone");
            return;
        }
        ingress_open_on(in, s);
        return;
    }
    struct peer *p = pop_peer(dp, path->next_hop);
    if (!p) {
        ingress_retry(in, "next PoP unreachable");
        return;
    }
    if (p->up) {
        ingress_open_on(in, p);
        return;
    }
    in->w.ready = ingress_peer_ready;
    in->w.queued = true;
    in->w.next = p->waiters;
    p->waiters = &in->w;
}

/* ---- admission: connection caps and accept() failures ------------------------------------
 *
 * Both ports a PoP opens to anyone are capped with common/conncap.h. The tunnel port caps only
 * connections that have not proven their key yet (pending handshakes): a slot is released the
 * moment the tunnel is authenticated, so established site and PoP tunnels are never capped,
 * and someone without a key holds at most DATAPLANE_PENDING_MAX descriptors for at most
 * TCONN_HANDSHAKE_MS. The TCP resource ports share one cap for the whole connection. Past a
 * cap the connection is closed at once (a resource connection with RST) and counted; the log
 * says so at most once a second.
 *
 * accept() failing for lack of descriptors or memory leaves the connection in the backlog, so
 * the listener stays readable: retrying at once would spin. The listener's watcher stops for
 * DATAPLANE_ACCEPT_BACKOFF_S instead, and health reports it as not accepting meanwhile. */

static void log_refusal(dataplane_t *dp, const char *what, const struct sockaddr *sa,
                        const char *which, const conncap_t *cap)
{
    uint64_t now = clock_mono_ms();
    if (now - dp->cap_log_ms < 1000) {
        dp->cap_unlogged++;
        return;
    }
    char addr[NETADDR_MAX + 1];
    netaddr_format(sa, addr, sizeof(addr));
    conncap_stats_t st;
    conncap_stats(cap, &st);
    log_warn("dataplane: refused a %s from %s: %s is reached (%u open, at most %u, %u per "
             "address); %llu more refused since the last such line",
             what, addr, which, st.open, conncap_max_total(cap), conncap_max_per_addr(cap),
             (unsigned long long)dp->cap_unlogged);
    dp->cap_log_ms = now;
    dp->cap_unlogged = 0;
}

static bool accept_exhausted(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

static void log_accept_failure(dataplane_t *dp, const char *what, int e)
{
    dp->st.accept_failures++;
    uint64_t now = clock_mono_ms();
    if (now - dp->accept_log_ms < 1000) {
        dp->accept_unlogged++;
        return;
    }
    log_warn("dataplane: %s: accept: %s; not accepting for %.0f ms (%llu more such failures "
             "since the last such line)",
             what, strerror(e), DATAPLANE_ACCEPT_BACKOFF_S * 1000,
             (unsigned long long)dp->accept_unlogged);
    dp->accept_log_ms = now;
    dp->accept_unlogged = 0;
}

/* A TCP resource connection: its place under the caps, released when its splice ends, and
 * what its access log line needs (only when it gets one: log). */
struct ingress_conn {
    dataplane_t *dp;
    conncap_slot_t *slot;
    bool log;          /* the access log is on and this connection is sampled */
    uint64_t start_ms; /* Unix ms of the accept (after the TLS handshake with tls) */
    uint64_t t0_us;    /* monotonic us of the same */
    char resource[NODECFG_NAME_MAX + 1];
    char client[64];
    dp_path_t path; /* once its stream opened */
};

void dataplane_path_names(dataplane_t *dp, const dp_path_t *p, accesslog_event_t *ev,
                          char (*names)[NODECFG_NAME_MAX + 1])
{
    /* hops[0] is this PoP (and the only hop when it is the egress) */
    ev->ingress = dp->o.cfg->name;
    ev->egress = dp->o.cfg->name;
    ev->nrelays = 0;
    uint32_t n = p->n_hops < DP_PATH_MAX ? p->n_hops : DP_PATH_MAX;
    for (uint32_t i = 1; i < n; i++) {
        node_name(dp, p->hops[i], names[i], sizeof(names[i]));
        if (i + 1 == n)
            ev->egress = names[i];
        else if (ev->nrelays < ACCESSLOG_HOPS_MAX)
            ev->relays[ev->nrelays++] = names[i];
    }
    ev->site = NULL;
    if (p->site) {
        node_name(dp, p->site, names[0], sizeof(names[0]));
        ev->site = names[0];
    }
}

/* The connection's line: it ended (ok: closed cleanly; else why). */
static void log_tcp(struct ingress_conn *ic, bool ok, const char *why, const uint64_t b[2])
{
    dataplane_t *dp = ic->dp;
    char names[DP_PATH_MAX + 1][NODECFG_NAME_MAX + 1];
    accesslog_event_t ev = {.kind = ACCESSLOG_TCP,
                            .start_ms = ic->start_ms,
                            .duration_us = clock_mono_us() - ic->t0_us,
                            .pop = dp->o.cfg->name,
                            .client = ic->client,
                            .resource = ic->resource,
                            .decision = ACCESSLOG_OPEN,
                            .reason = ok ? NULL : why,
                            .bytes_in = b[0],
                            .bytes_out = b[1]};
    if (ic->path.n_hops)
        dataplane_path_names(dp, &ic->path, &ev, names);
    else
        ev.ingress = dp->o.cfg->name; /* it never left this PoP */
    accesslog_write(dp->o.alog, &ev);
}

static void splice_done(void *ctx, splice_t *s, bool ok, const char *why, const uint64_t b[2])
{
    dataplane_t *dp = ctx;
    (void)s;
    dp->st.bytes_in += b[0];
    dp->st.bytes_out += b[1];
    if (!ok)
        log_debug("dataplane: stream ended: %s", why);
}

static void ingress_conn_done(void *ctx, splice_t *s, bool ok, const char *why, const uint64_t b[2])
{
    struct ingress_conn *ic = ctx;
    if (ic->log)
        log_tcp(ic, ok, why, b);
    conncap_release(ic->dp->tcp_cap, ic->slot);
    splice_done(ic->dp, s, ok, why, b);
    free(ic);
}

/* ---- TLS on resource ports ----------------------------------------------------------------
 *
 * A connection to a port whose resource has tls does its handshake here, before anything
 * else: no stream is opened for a client that cannot finish one (a scanner, a client naming
 * a host we have no certificate for, a stalled peer), so the site never sees it. It holds its
 * place under the connection cap from accept on, and has dp->tls_timeout for the handshake.
 * Once done, the TLS connection becomes the splice's byte layer: the splice reads until TLS
 * says WANT_READ, so bytes decrypted ahead (SSL_pending: the socket will not signal them)
 * are never stranded. */

static ssize_t tls_io_read(void *io, void *buf, size_t len)
{
    return tlsconn_read(io, buf, len);
}

static ssize_t tls_io_write(void *io, const void *buf, size_t len)
{
    return tlsconn_write(io, buf, len);
}

static void tls_io_shutdown(void *io)
{
    tlsconn_shutdown(io);
}

static void tls_io_destroy(void *io)
{
    tlsconn_t *c = io;
    tlsconn_destroy(&c);
}

_Static_assert((int)TLS_WANT_READ == (int)SPLICE_IO_WANT_READ &&
                   (int)TLS_WANT_WRITE == (int)SPLICE_IO_WANT_WRITE &&
                   (int)TLS_CLOSED == (int)SPLICE_IO_CLOSED &&
                   (int)TLS_ERROR == (int)SPLICE_IO_ERROR,
               "splice reads tlsconn's codes as its own");

static const splice_io_ops_t tls_io_ops = {
    .name = "tls",
    .read = tls_io_read,
    .write = tls_io_write,
    .shutdown = tls_io_shutdown,
    .destroy = tls_io_destroy,
};

/* A connection to a resource port, admitted (and through its TLS handshake when tc): its
 * stream opens. Takes ownership of fd, slot and tc. */
static void ingress_start(dataplane_t *dp, const char *resource, int fd, conncap_slot_t *slot,
                          const struct sockaddr_storage *ss, tlsconn_t *tc)
{
    dp->st.ingress_accepted++;
    struct ingress *in = xcalloc(1, sizeof(*in));
    in->magic = INGRESS_MAGIC;
    in->dp = dp;
    in->t0_ms = clock_mono_ms();
    ev_timer_init(&in->kick, on_kick, 0., 0.); /* spaced attempts (ingress_retry) */
    in->kick.data = in;
    netaddr_format((const struct sockaddr *)ss, in->client, sizeof(in->client));
    struct sockaddr_storage ls;
    socklen_t ll = sizeof(ls);
    if (getsockname(fd, (struct sockaddr *)&ls, &ll) == 0)
        netaddr_format((const struct sockaddr *)&ls, in->ingress, sizeof(in->ingress));
    struct ingress_conn *ic = xcalloc(1, sizeof(*ic));
    ic->dp = dp;
    ic->slot = slot;
    in->ic = ic;
    in->sp = tc ? splice_new_tcp_io(dp->splices, fd, &tls_io_ops, tc, ingress_conn_done, ic)
                : splice_new_tcp(dp->splices, fd, ingress_conn_done, ic);
    int grc = resource_get(dp->o.store, resource, &in->res);
    /* The access log: decided now, so a connection it skips costs nothing more. */
    if (dp->o.alog &&
        (ic->log = accesslog_want(dp->o.alog, grc ? 1 : resource_access_log_one_in(&in->res)))) {
        ic->start_ms = clock_wall_ms();
        ic->t0_us = clock_mono_us();
        snprintf(ic->resource, sizeof(ic->resource), "%s", resource);
        snprintf(ic->client, sizeof(ic->client), "%s", in->client);
    }
    if (grc) {
        snprintf(in->res.name, sizeof(in->res.name), "%s", resource);
        ingress_fail(in, "the resource was removed");
        return;
    }
    if (!self_allowed(dp, &in->res, true)) { /* its labels changed since the accept */
        ingress_fail(in, "not served at this PoP (its transit or ingress labels)");
        return;
    }
    ingress_try(in);
}

struct tls_pending {
    dataplane_t *dp;
    int fd;
    conncap_slot_t *slot;
    tlsconn_t *tc;
    ev_io io;
    ev_timer timer; /* the handshake's deadline */
    struct sockaddr_storage ss;
    char resource[NODECFG_NAME_MAX + 1];
    struct tls_pending *prev, *next;
};

/* Unlinks and frees tp; with close_fd, its connection is closed and its slot released. */
static void tls_pending_free(struct tls_pending *tp, bool close_fd)
{
    dataplane_t *dp = tp->dp;
    ev_io_stop(dp->o.loop, &tp->io);
    ev_timer_stop(dp->o.loop, &tp->timer);
    if (tp->prev)
        tp->prev->next = tp->next;
    else
        dp->tls_pending = tp->next;
    if (tp->next)
        tp->next->prev = tp->prev;
    if (close_fd) {
        tlsconn_destroy(&tp->tc);
        close(tp->fd); /* not RST: an alert OpenSSL wrote still reaches the client */
        conncap_release(dp->tcp_cap, tp->slot);
    }
    free(tp);
}

static void tls_step(struct tls_pending *tp)
{
    dataplane_t *dp = tp->dp;
    const char *why = "";
    int rc = tlsconn_handshake(tp->tc, &why);
    if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE) {
        int ev = rc == TLS_WANT_READ ? EV_READ : EV_WRITE;
        if (!ev_is_active(&tp->io) || (tp->io.events & (EV_READ | EV_WRITE)) != ev) {
            ev_io_stop(dp->o.loop, &tp->io);
            ev_io_set(&tp->io, tp->fd, ev);
            ev_io_start(dp->o.loop, &tp->io);
        }
        return;
    }
    if (rc != TLS_OK) {
        dp->st.tls_failed++;
        char client[NETADDR_MAX + 1];
        netaddr_format((const struct sockaddr *)&tp->ss, client, sizeof(client));
        log_debug("resource %s: TLS handshake with %s failed: %s", tp->resource, client, why);
        tls_pending_free(tp, true);
        return;
    }
    dp->st.tls_handshakes++;
    dp->st.tls_resumed += tlsconn_resumed(tp->tc);
    int fd = tp->fd;
    conncap_slot_t *slot = tp->slot;
    tlsconn_t *tc = tp->tc;
    struct sockaddr_storage ss = tp->ss;
    char resource[NODECFG_NAME_MAX + 1];
    snprintf(resource, sizeof(resource), "%s", tp->resource);
    tls_pending_free(tp, false);
    ingress_start(dp, resource, fd, slot, &ss, tc);
}

static void on_tls_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    tls_step(w->data);
}

static void on_tls_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct tls_pending *tp = w->data;
    tp->dp->st.tls_timeouts++;
    log_debug("resource %s: a TLS handshake took longer than %.1f s: closed", tp->resource,
              tp->dp->tls_timeout);
    tls_pending_free(tp, true);
}

/* An admitted connection to a TLS resource's port: its handshake starts. Takes ownership of
 * fd and slot. */
static void tls_start(dataplane_t *dp, const char *resource, int fd, conncap_slot_t *slot,
                      const struct sockaddr_storage *ss)
{
    tlsconn_t *tc = dp->o.tls ? tlsconn_new(dp->o.tls, fd) : NULL;
    if (!tc) {
        if (!dp->o.tls)
            log_warn("resource %s: TLS asked for, but this PoP has no TLS context: connection "
                     "closed",
                     resource);
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
        conncap_release(dp->tcp_cap, slot);
        dp->st.tls_failed++;
        return;
    }
    struct tls_pending *tp = xcalloc(1, sizeof(*tp));
    tp->dp = dp;
    tp->fd = fd;
    tp->slot = slot;
    tp->tc = tc;
    tp->ss = *ss;
    snprintf(tp->resource, sizeof(tp->resource), "%s", resource);
    ev_io_init(&tp->io, on_tls_io, fd, EV_READ);
    tp->io.data = tp;
    ev_timer_init(&tp->timer, on_tls_timeout, dp->tls_timeout, 0.);
    tp->timer.data = tp;
    ev_timer_start(dp->o.loop, &tp->timer);
    tp->next = dp->tls_pending;
    if (tp->next)
        tp->next->prev = tp;
    dp->tls_pending = tp;
    tls_step(tp); /* the client hello may be here already */
}

static void on_accept_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct listener *l = w->data;
    ev_timer_stop(loop, w);
    l->backoff = false;
    ev_io_start(loop, &l->io);
}

static void on_ingress_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct listener *l = w->data;
    dataplane_t *dp = l->dp;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (accept_exhausted(e)) {
                char what[NODECFG_NAME_MAX + 32];
                snprintf(what, sizeof(what), "resource %s", l->resource);
                log_accept_failure(dp, what, e);
                ev_io_stop(loop, &l->io);
                l->backoff = true;
                ev_timer_init(&l->retry, on_accept_backoff, DATAPLANE_ACCEPT_BACKOFF_S, 0.);
                ev_timer_start(loop, &l->retry);
            } else if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR && e != ECONNABORTED) {
                log_warn("resource %s: accept: %s", l->resource, strerror(e));
            }
            return;
        }
        const char *which;
        conncap_slot_t *slot = conncap_admit(dp->tcp_cap, (struct sockaddr *)&ss, &which);
        if (!slot) {
            struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* RST: nothing lingers */
            setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
            close(fd);
            dp->st.ingress_refused_cap++;
            log_refusal(dp, "connection to resource port", (struct sockaddr *)&ss, which,
                        dp->tcp_cap);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (l->tls)
            tls_start(dp, l->resource, fd, slot, &ss);
        else
            ingress_start(dp, l->resource, fd, slot, &ss, NULL);
    }
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    ingress_try(w->data);
}

bool dataplane_serves(dataplane_t *dp, const resource_t *res)
{
    return self_allowed(dp, res, true);
}

int dataplane_open_stream(dataplane_t *dp, const resource_t *res, const char *client,
                          const char *ingress, dp_stream_handler_t *h)
{
    uint64_t ids[1];
    bool any = false;
    for (unsigned i = 0; i < res->ntargets && !any; i++)
        any = site_replicas(dp, resource_target_site(res, i), ids, 1) > 0;
    if (!any)
        return -ENOENT;
    if (!self_allowed(dp, res, true))
        return -EPERM;
    struct ingress *in = xcalloc(1, sizeof(*in));
    in->magic = INGRESS_MAGIC;
    in->dp = dp;
    in->h = h;
    h->magic = DP_HANDLER_MAGIC;
    in->res = *res;
    in->t0_ms = clock_mono_ms();
    snprintf(in->client, sizeof(in->client), "%s", client);
    snprintf(in->ingress, sizeof(in->ingress), "%s", ingress ? ingress : "");
    dp->st.ingress_accepted++;
    /* The first attempt may fail at once (no route): run it from the loop, so on_fail never
     * comes back inside the caller's call. */
    ev_timer_init(&in->kick, on_kick, 0., 0.);
    in->kick.data = in;
    ev_timer_start(dp->o.loop, &in->kick);
    return 0;
}

/* ---- relay ------------------------------------------------------------------------------- */

static void relay_free(struct relay *r)
{
    if (r->w.queued) { /* still on a peer's waiter list: that list frees it */
        r->w.cancelled = true;
        return;
    }
    free(r);
}

static void relay_open(struct relay *r, struct peer *p)
{
    tun_t *t = tconn_tun(p->c);
    tun_t *up = tconn_tun(r->up_c);
    if (!t) {
        if (up)
            tun_reject(up, r->up_sid, TUN_ERR_UNREACHABLE, "next hop down");
        free(r);
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_pack_open(&pk, &r->desc);
    int rc = tun_open(t, (const uint8_t *)sb.data, sb.size, r, clock_mono_ms(), &r->down_sid);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        if (up)
            tun_reject(up, r->up_sid, TUN_ERR_LIMIT, "next hop refused the stream");
        free(r);
        return;
    }
    if (r->desc.sealed)
        tun_seal(t, r->down_sid, TUN_SEAL_PASS, NULL); /* just opened: cannot fail */
    r->down_c = p->c;
    r->down_opening = true;
    tconn_kick(p->c);
}

static void relay_peer_ready(struct waiter *w, struct peer *p)
{
    struct relay *r = (struct relay *)((char *)w - offsetof(struct relay, w));
    if (w->cancelled) {
        free(r);
        return;
    }
    if (!p) {
        tun_t *up = tconn_tun(r->up_c);
        if (up)
            tun_reject(up, r->up_sid, TUN_ERR_UNREACHABLE, "next PoP unreachable");
        free(r);
        return;
    }
    relay_open(r, p);
}

static void pc_on_open(void *ctx, tconn_t *c, uint64_t sid, const uint8_t *target, size_t len)
{
    struct peer *p = ctx;
    dataplane_t *dp = p->dp;
    tun_t *t = tconn_tun(c);
    if (p->is_site) {
        dp->st.streams_from_peers_refused++;
        tun_reject(t, sid, TUN_ERR_REFUSED, "sites may not open streams");
        return;
    }
    struct relay *r = xcalloc(1, sizeof(*r));
    const char *why;
    if (sm_decode_open(target, len, &r->desc, &why)) {
        dp->st.relay_refused++;
        tun_reject(t, sid, TUN_ERR_REFUSED, why);
        free(r);
        return;
    }
    r->magic = RELAY_MAGIC;
    r->dp = dp;
    r->up_c = c;
    r->up_sid = sid;
    tun_set_user(t, sid, r);
    if (r->desc.sealed) {
        /* Records we cannot open: carried whole from leg to leg (tun_seal PASS). */
        tun_seal(t, sid, TUN_SEAL_PASS, NULL);
    }
    struct peer *next;
    if (r->desc.npath == 0) {
        next = find_peer(dp, r->desc.site, true, true);
        if (!next) {
            dp->st.relay_refused++;
            tun_reject(t, sid, TUN_ERR_UNREACHABLE, "the site has no tunnel to this PoP");
            free(r);
            return;
        }
        if (r->desc.sealed && !(next->seal & (1u << r->desc.seal_suite))) {
            dp->st.relay_refused++;
            tun_reject(t, sid, TUN_ERR_SEAL, "the site cannot open this sealed stream");
            free(r);
            return;
        }
    } else {
        uint64_t hop = r->desc.path[0];
        memmove(r->desc.path, r->desc.path + 1, (r->desc.npath - 1) * sizeof(uint64_t));
        r->desc.npath--;
        if (hop == dp->o.id->node_id || hop == p->id) {
            dp->st.relay_refused++;
            tun_reject(t, sid, TUN_ERR_PROTOCOL, "path loops");
            free(r);
            return;
        }
        next = pop_peer(dp, hop);
        if (!next) {
            dp->st.relay_refused++;
            tun_reject(t, sid, TUN_ERR_UNREACHABLE, "next PoP unreachable");
            free(r);
            return;
        }
        if (!next->up) {
            r->w.ready = relay_peer_ready;
            r->w.queued = true;
            r->w.next = next->waiters;
            next->waiters = &r->w;
            return;
        }
    }
    dp->st.relayed++;
    dp->st.relayed_sealed += r->desc.sealed;
    relay_open(r, next);
}

/* ---- stream event dispatch -------------------------------------------------------------- */

static uint32_t magic_of(const void *user)
{
    return user ? *(const uint32_t *)user : 0;
}

static void pc_on_open_ok(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    struct peer *p = ctx;
    dataplane_t *dp = p->dp;
    if (magic_of(user) == INGRESS_MAGIC) {
        struct ingress *in = user;
        dp->st.ingress_opened++;
        dp_path_t *path = in->h ? &in->h->path : in->ic && in->ic->log ? &in->ic->path : NULL;
        if (path) { /* the path this attempt took, for the access log */
            path->n_hops = in->n_hops < DP_PATH_MAX ? in->n_hops : DP_PATH_MAX;
            memcpy(path->hops, in->hops, path->n_hops * sizeof(path->hops[0]));
            path->site = in->site;
        }
        if (in->h) {
            tun_set_user(tconn_tun(c), sid, in->h);
            in->h->on_open(in->h, c, sid);
        } else {
            splice_attach_stream(in->sp, c, sid);
        }
        log_debug("resource %s: %s connected in %llu ms (attempt %d)", in->res.name, in->client,
                  (unsigned long long)(clock_mono_ms() - in->t0_ms), in->attempt + 1);
        free(in);
    } else if (magic_of(user) == RELAY_MAGIC) {
        struct relay *r = user;
        tun_t *up = tconn_tun(r->up_c);
        if (!up || tun_accept(up, r->up_sid)) {
            tun_reset(tconn_tun(c), sid, TUN_ERR_TUNNEL_DEAD);
            relay_free(r);
            return;
        }
        splice_t *s = splice_new_stream(dp->splices, r->up_c, r->up_sid, splice_done, dp);
        splice_attach_stream(s, c, sid);
        relay_free(r);
    }
}

/* Streams are spliced (TCP resources, relays) or handed to a handler (the HTTP proxy). */
static void pc_on_data(void *ctx, tconn_t *c, uint64_t sid, void *user, const uint8_t *d,
                       size_t len)
{
    if (magic_of(user) == DP_HANDLER_MAGIC)
        ((dp_stream_handler_t *)user)->on_data(user, c, sid, d, len);
    else
        splice_cb_data(ctx, c, sid, user, d, len);
}

static void pc_on_fin(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    if (magic_of(user) == DP_HANDLER_MAGIC)
        ((dp_stream_handler_t *)user)->on_fin(user, c, sid);
    else
        splice_cb_fin(ctx, c, sid, user);
}

static void pc_on_writable(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    if (magic_of(user) == DP_HANDLER_MAGIC)
        ((dp_stream_handler_t *)user)->on_writable(user, c, sid);
    else
        splice_cb_writable(ctx, c, sid, user);
}

static void pc_on_closed(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    if (magic_of(user) == DP_HANDLER_MAGIC)
        ((dp_stream_handler_t *)user)->on_closed(user, c, sid);
    else
        splice_cb_closed(ctx, c, sid, user);
}

static void pc_on_reset(void *ctx, tconn_t *c, uint64_t sid, void *user, uint32_t code, bool remote,
                        const char *msg, size_t ml)
{
    (void)ctx, (void)remote;
    if (magic_of(user) == DP_HANDLER_MAGIC) {
        ((dp_stream_handler_t *)user)->on_reset(user, c, sid, code, msg, ml);
    } else if (splice_owns(user)) {
        splice_on_reset(user, c, sid, code, msg, ml);
    } else if (magic_of(user) == INGRESS_MAGIC) {
        char why[200];
        snprintf(why, sizeof(why), "%s%s%.*s", tun_code_name(code), ml ? ": " : "", (int)ml,
                 msg ? msg : "");
        struct ingress *in = user;
        in->hit_limit |= code == TUN_ERR_LIMIT; /* a hop's limit */
        /* The site saw its own connection come back: another path leads to the same site and
         * the same answer, so fail now. */
        if (code == TUN_ERR_REFUSED && ml >= 5 && msg && !memcmp(msg, "loop:", 5)) {
            in->looped = true;
            ingress_fail(in, why);
            return;
        }
        /* The replica tried every target it was given and none answered: not this replica
         * again (another may reach them, or another site). */
        if (code == TUN_ERR_UNREACHABLE && ml >= 12 && msg && !memcmp(msg, "no target of", 12)) {
            uint32_t k = tried_slot(in, in->site);
            if (k < in->ntried)
                in->refused[k] = true;
        }
        ingress_retry(in, why);
    } else if (magic_of(user) == RELAY_MAGIC) {
        struct relay *r = user;
        if (c == r->up_c && sid == r->up_sid) { /* the upstream gave up */
            if (r->down_opening) {
                tun_t *t = tconn_tun(r->down_c);
                if (t)
                    tun_reset(t, r->down_sid, TUN_ERR_NONE);
            }
            relay_free(r);
        } else {
            tun_t *up = tconn_tun(r->up_c);
            if (up) {
                char m[TUN_MSG_MAX + 1];
                snprintf(m, sizeof(m), "%.*s", (int)ml, msg ? msg : "");
                tun_reject(up, r->up_sid, code, m);
            }
            relay_free(r);
        }
    }
}

static const tconn_cbs_t *peer_cbs(void)
{
    static const tconn_cbs_t cbs = {
        .admit = pc_admit,
        .on_up = pc_up,
        .on_ctl = pc_ctl,
        .on_down = pc_down,
        .on_drain = pc_drain,
        .on_open = pc_on_open,
        .on_open_ok = pc_on_open_ok,
        .on_data = pc_on_data,
        .on_fin = pc_on_fin,
        .on_writable = pc_on_writable,
        .on_reset = pc_on_reset,
        .on_closed = pc_on_closed,
    };
    return &cbs;
}

/* ---- the tunnel endpoint ----------------------------------------------------------------- */

static void on_tunnel_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    dataplane_t *dp = w->data;
    ev_timer_stop(loop, w);
    dp->lbackoff_on = false;
    ev_io_start(loop, &dp->lio);
}

static void on_tunnel_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    dataplane_t *dp = w->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(dp->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (accept_exhausted(e)) {
                log_accept_failure(dp, "tunnel port", e);
                ev_io_stop(loop, &dp->lio);
                dp->lbackoff_on = true;
                ev_timer_start(loop, &dp->lbackoff);
            }
            return;
        }
        const char *which;
        conncap_slot_t *slot = conncap_admit(dp->pending_cap, (struct sockaddr *)&ss, &which);
        if (!slot) {
            close(fd);
            dp->st.tunnel_refused_cap++;
            log_refusal(dp, "tunnel connection (handshake pending)", (struct sockaddr *)&ss, which,
                        dp->pending_cap);
            continue;
        }
        struct peer *p = xcalloc(1, sizeof(*p));
        p->dp = dp;
        p->accepted = true;
        p->slot = slot;
        tconn_cbs_t cbs = *peer_cbs();
        cbs.ctx = p;
        p->c = tconn_accept(loop, fd, &dp->keys, &dp->tcfg, &cbs);
        if (!p->c) {
            close(fd);
            conncap_release(dp->pending_cap, p->slot);
            free(p);
            continue;
        }
        p->next = dp->peers;
        dp->peers = p;
    }
}

#define LISTEN_BACKLOG 1024 /* connections the kernel queues before we accept them */

/* ---- configuration, kept current by the store's change feed ------------------------------
 *
 * The data plane reads three kinds of records: node/<id> (the sites it may attach and their
 * ids, the PoPs a site is told about, this PoP's own published tunnel address) and
 * resource/<name> (the TCP ports to listen on, the targets each site is told to check). It
 * loads them once at start and then applies each change the store reports (store_watch),
 * one key at a time: a resource change opens, moves or closes at most two listeners and
 * re-sends INFO to the sites concerned; a node change updates one site or PoP entry. Nothing
 * re-reads the store on a timer, so an idle PoP with thousands of resources does no work and
 * a change takes effect as soon as it is merged here (dp->st.store_scans counts the full
 * listings: two at start, then none).
 *
 * What cannot run inside the store's callback (it may come from within a merge in meshnode,
 * or from one of our own writes) is deferred to the next loop iteration (dp->apply): sending
 * INFO, closing a removed site's tunnel, re-publishing our tunnel address. */

static struct cfg_res *res_find(dataplane_t *dp, const char *name)
{
    for (size_t i = 0; i < dp->nres; i++)
        if (!strcmp(dp->res[i].name, name))
            return &dp->res[i];
    return NULL;
}

static struct cfg_pop *pop_find(dataplane_t *dp, uint64_t id)
{
    for (size_t i = 0; i < dp->npops; i++)
        if (dp->pops[i].id == id)
            return &dp->pops[i];
    return NULL;
}

static void schedule_apply(dataplane_t *dp)
{
    if (!ev_is_active(&dp->apply))
        ev_timer_start(dp->o.loop, &dp->apply);
}

/* Every attached site whose INFO may have changed: name NULL for all of them. */
static void info_dirty(dataplane_t *dp, const char *site)
{
    for (struct peer *p = dp->peers; p; p = p->next)
        if (p->is_site && p->up && !p->dead && (!site || !strcmp(p->site, site)))
            p->info_dirty = true;
    schedule_apply(dp);
}

static void publish_tunnel_addr(dataplane_t *dp)
{
    reg_node_t n;
    uint64_t self = dp->o.id->node_id;
    if (node_get(dp, self, &n) || !strcmp(n.tunnel_addr, dp->tunnel_addr))
        return;
    snprintf(n.tunnel_addr, sizeof(n.tunnel_addr), "%s", dp->tunnel_addr);
    n.id = self;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_node_pack(&pk, &n);
    char key[64];
    reg_node_key(self, key, sizeof(key));
    if (meshnode_put_record(dp->o.mesh, key, &sb) == 0)
        log_info("dataplane: tunnel endpoint %s published", dp->tunnel_addr);
    msgpack_sbuffer_destroy(&sb);
}

/* The port of a configured address, 0 when unset or malformed (nothing listens there). */
static uint16_t port_in(const char *addr)
{
    netaddr_t na;
    return addr && addr[0] && netaddr_parse(addr, &na, true) == 0 ? na.port : 0;
}

/* Which of this PoP's own listening ports port is ("mesh port", ...), or NULL. A resource on
 * one of them would take the port first at start, or fail to bind forever. */
static const char *own_port_use(dataplane_t *dp, uint16_t port)
{
    char tl[NODECFG_ADDR_MAX + 1];
    nodecfg_tunnel_listen(dp->o.cfg, tl, sizeof(tl));
    if (port == port_in(dp->o.cfg->mesh_listen))
        return "mesh port";
    if (port == port_in(tl))
        return "tunnel port";
    if (dp->o.cfg->http_listen[0] && port == port_in(dp->o.cfg->http_listen))
        return "HTTP ingress port";
    if (dp->o.cfg->https_listen[0] && port == port_in(dp->o.cfg->https_listen))
        return "HTTPS ingress port";
    return NULL;
}

static void listener_addr(dataplane_t *dp, uint16_t port, char *out, size_t len)
{
    const char *ip = dp->o.cfg->ingress_address[0] ? dp->o.cfg->ingress_address : "0.0.0.0";
    snprintf(out, len, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
}

/* Binds l's port: 0, or -errno with the reason logged when log is set. */
static int listener_bind(struct listener *l, bool log)
{
    dataplane_t *dp = l->dp;
    char addr[NODECFG_ADDR_MAX + 16], err[200];
    listener_addr(dp, l->port, addr, sizeof(addr));
    int fd = netaddr_listen(addr, LISTEN_BACKLOG, err, sizeof(err));
    if (fd < 0) {
        if (log)
            log_warn("resource %s: %s (retrying every %.0f s)", l->resource, err,
                     DATAPLANE_BIND_RETRY_S);
        return fd;
    }
    l->fd = fd;
    ev_io_init(&l->io, on_ingress_accept, fd, EV_READ);
    l->io.data = l;
    ev_io_start(dp->o.loop, &l->io);
    log_info("resource %s: listening on %s%s", l->resource, addr, l->tls ? " (TLS)" : "");
    return 0;
}

static void on_bind_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    struct listener *l = w->data;
    if (l->fd < 0 && !l->own && listener_bind(l, false) == 0)
        ev_timer_stop(l->dp->o.loop, &l->retry);
}

static void listener_free(dataplane_t *dp, struct listener *l)
{
    if (l->fd >= 0) {
        ev_io_stop(dp->o.loop, &l->io);
        close(l->fd);
    }
    ev_timer_stop(dp->o.loop, &l->retry);
    free(l);
}

/* Makes port's listener match the resources that name it: the oldest (smaller created_ms,
 * then smaller name: resource.h) owns a port two resources share; none, and it is closed. */
static void reconcile_port(dataplane_t *dp, uint16_t port)
{
    if (!port)
        return;
    const struct cfg_res *owner = NULL;
    for (size_t i = 0; i < dp->nres; i++) {
        const struct cfg_res *r = &dp->res[i];
        if (r->tcp_port == port && r->here &&
            (!owner || r->created_ms < owner->created_ms ||
             (r->created_ms == owner->created_ms && strcmp(r->name, owner->name) < 0)))
            owner = r;
    }
    struct listener **lp = &dp->listeners;
    while (*lp && (*lp)->port != port)
        lp = &(*lp)->next;
    struct listener *l = *lp;
    if (!owner) {
        if (l) {
            log_info("resource %s: removed; port %u closed", l->resource, l->port);
            *lp = l->next;
            listener_free(dp, l);
        }
        return;
    }
    if (l) {
        snprintf(l->resource, sizeof(l->resource), "%s", owner->name);
        l->tls = owner->tls; /* for connections accepted from now on */
        return;
    }
    l = xcalloc(1, sizeof(*l));
    l->dp = dp;
    l->fd = -1;
    l->port = port;
    l->tls = owner->tls;
    snprintf(l->resource, sizeof(l->resource), "%s", owner->name);
    ev_timer_init(&l->retry, on_bind_retry, DATAPLANE_BIND_RETRY_S, DATAPLANE_BIND_RETRY_S);
    l->retry.data = l;
    l->next = dp->listeners;
    dp->listeners = l;
    const char *own = own_port_use(dp, port);
    if (own) {
        l->own = true;
        log_warn("resource %s: tcp port %u is this PoP's %s: not listening for it (remove the "
                 "resource or give it another port)",
                 owner->name, port, own);
    } else if (listener_bind(l, true)) {
        ev_timer_start(dp->o.loop, &l->retry);
    }
}

/* One resource record changed (or was loaded): e NULL or a tombstone removes it. */
static void apply_resource(dataplane_t *dp, const char *name, const store_entry_t *e)
{
    resource_t *r = NULL;
    if (e && !e->tombstone) {
        r = xmalloc(sizeof(*r));
        char why_buf[200];
        const char *why;
        if (resource_parse(e->value, e->vlen, name, r, why_buf, sizeof(why_buf), &why)) {
            log_warn("dataplane: resource %s: unreadable record ignored: %s", name, why);
            free(r);
            r = NULL;
        }
    }
    struct cfg_res *c = res_find(dp, name);
    uint16_t old_port = c ? c->tcp_port : 0;
    bool was_multi = c && (c->multi || c->labelled);
    char old_site[NODECFG_NAME_MAX + 1] = "";
    if (c)
        snprintf(old_site, sizeof(old_site), "%s", c->site);
    if (!r) {
        if (c)
            *c = dp->res[--dp->nres];
    } else {
        if (!c) {
            if (dp->nres == dp->cres) {
                dp->cres = dp->cres ? 2 * dp->cres : 64;
                dp->res = xrealloc(dp->res, dp->cres * sizeof(*dp->res));
            }
            c = &dp->res[dp->nres++];
            memset(c, 0, sizeof(*c));
            snprintf(c->name, sizeof(c->name), "%s", name);
        }
        snprintf(c->site, sizeof(c->site), "%s", r->site);
        c->multi = resource_multisite(r);
        c->here = self_allowed(dp, r, true);
        c->labelled = r->ntransit_labels > 0;
        c->tcp_port = r->tcp_port;
        c->tls = r->tls;
        c->created_ms = r->created_ms;
    }
    if (old_port && (!r || r->tcp_port != old_port))
        reconcile_port(dp, old_port);
    if (r)
        reconcile_port(dp, r->tcp_port);
    udpin_apply(dp->udp, name, r, r && self_allowed(dp, r, true));
    if (was_multi || (r && (resource_multisite(r) || r->ntransit_labels))) { /* any site */
        info_dirty(dp, NULL);
    } else {
        if (old_site[0])
            info_dirty(dp, old_site);
        if (r && strcmp(old_site, r->site))
            info_dirty(dp, r->site);
    }
    free(r);
}

static void site_forget(dataplane_t *dp, uint64_t id)
{
    for (size_t i = 0; i < dp->nsites; i++)
        if (dp->sites[i].id == id) {
            dp->sites[i] = dp->sites[--dp->nsites];
            break;
        }
    for (struct peer *p = dp->peers; p; p = p->next)
        if (p->is_site && p->up && !p->dead && p->id == id) { /* removed while attached */
            p->removed = true;
            schedule_apply(dp);
        }
}

/* One node record changed (or was loaded); a tombstone or an unreadable record counts as
 * gone (the registry never deletes a node's record: removal sets removed). */
static void apply_node(dataplane_t *dp, uint64_t id, const store_entry_t *e)
{
    reg_node_t n;
    const char *why;
    bool ok = !e->tombstone && reg_node_parse(e->value, e->vlen, id, &n, &why) == 0;
    if (ok)
        n.id = id;
    bool site = ok && !n.removed && n.role == ROLE_SITE;
    bool pop = ok && !n.removed && n.role == ROLE_POP && n.tunnel_addr[0];
    if (site) {
        size_t i = 0;
        while (i < dp->nsites && dp->sites[i].id != id)
            i++;
        if (i == dp->nsites) {
            dp->sites = xrealloc(dp->sites, (dp->nsites + 1) * sizeof(*dp->sites));
            dp->nsites++;
        }
        dp->sites[i].id = id;
        snprintf(dp->sites[i].name, sizeof(dp->sites[i].name), "%s", n.name);
        snprintf(dp->sites[i].site, sizeof(dp->sites[i].site), "%s", reg_node_site(&n));
    } else {
        site_forget(dp, id);
    }
    struct cfg_pop *cp = pop_find(dp, id);
    if (pop) {
        if (!cp) {
            dp->pops = xrealloc(dp->pops, (dp->npops + 1) * sizeof(*dp->pops));
            cp = &dp->pops[dp->npops++];
        }
        cp->id = id;
        snprintf(cp->name, sizeof(cp->name), "%s", n.name);
        snprintf(cp->tunnel_addr, sizeof(cp->tunnel_addr), "%s", n.tunnel_addr);
        memcpy(cp->curve_pk, n.curve_pk, 32);
        snprintf(cp->region, sizeof(cp->region), "%s", n.region);
        cp->no_inbound = n.no_inbound;
        memcpy(cp->labels, n.labels, sizeof(cp->labels));
        cp->nlabels = n.nlabels;
        info_dirty(dp, NULL);
    } else if (cp) {
        *cp = dp->pops[--dp->npops];
        info_dirty(dp, NULL);
    }
    dp->reg_gen++; /* a PoP's labels may have changed: the filtered routes are recomputed */
    if (id == dp->o.id->node_id && ok && strcmp(n.tunnel_addr, dp->tunnel_addr)) {
        dp->republish = true; /* a record written without it (a rejoin, an older node) */
        schedule_apply(dp);
    }
}

static void on_resources_changed(void *ctx, const store_entry_t *v, size_t n)
{
    dataplane_t *dp = ctx;
    const size_t pl = strlen(RESOURCE_PREFIX);
    for (size_t i = 0; i < n; i++) {
        char name[NODECFG_NAME_MAX + 1];
        if (v[i].klen <= pl || v[i].klen - pl > NODECFG_NAME_MAX)
            continue;
        memcpy(name, v[i].key + pl, v[i].klen - pl);
        name[v[i].klen - pl] = 0;
        apply_resource(dp, name, &v[i]);
    }
}

static void on_nodes_changed(void *ctx, const store_entry_t *v, size_t n)
{
    dataplane_t *dp = ctx;
    for (size_t i = 0; i < n; i++) {
        uint64_t id;
        if (reg_node_key_id(v[i].key, v[i].klen, &id) != 0)
            continue;
        size_t slot = (size_t)((id * 0x9e3779b97f4a7c15ull) >> 58);
        if (dp->names[slot].id == id)
            dp->names[slot].id = 0; /* renamed or removed: read again */
        apply_node(dp, id, &v[i]);
    }
}

static int load_node(const store_entry_t *e, void *ctx)
{
    on_nodes_changed(ctx, e, 1);
    return 0;
}

static int load_resource(const store_entry_t *e, void *ctx)
{
    on_resources_changed(ctx, e, 1);
    return 0;
}

/* The one full read, at start; from then on the change feed keeps it current. */
static void load_config(dataplane_t *dp)
{
    dp->st.store_scans++;
    store_list(dp->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), load_node, dp);
    dp->st.store_scans++;
    store_list(dp->o.store, RESOURCE_PREFIX, strlen(RESOURCE_PREFIX), load_resource, dp);
    dp->st.store_scans++;
    store_list(dp->o.store, SITEHEALTH_PREFIX, strlen(SITEHEALTH_PREFIX), load_health, dp);
}

/* Work the change feed deferred (see above). */
static void on_apply(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    dataplane_t *dp = w->data;
    if (dp->republish) {
        dp->republish = false;
        publish_tunnel_addr(dp);
    }
    for (struct peer *p = dp->peers; p; p = p->next) {
        if (p->dead || !p->up || !p->is_site)
            continue;
        if (p->removed) {
            p->removed = false;
            log_info("dataplane: site %s was removed: closing its tunnel", p->name);
            tconn_close(p->c, "site removed");
            continue;
        }
        if (p->info_dirty) {
            p->info_dirty = false;
            send_info(p, false);
        }
    }
}

/* What the store does not report: which PoPs SWIM holds alive (a site's INFO lists those),
 * and tunnel RTTs. Reads no record. */
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    dataplane_t *dp = w->data;
    uint64_t alive = 0;
    for (size_t i = 0; i < dp->npops; i++)
        if (meshnode_is_alive(dp->o.mesh, dp->pops[i].id))
            alive ^= dp->pops[i].id * 0x9e3779b97f4a7c15ull;
    if (alive != dp->alive_hash) {
        dp->alive_hash = alive;
        info_dirty(dp, NULL);
    }
    /* Behind a firewall that takes no inbound connections, this PoP is reached only on tunnels
     * it dials: it keeps one to every live PoP that can take one (pop_peer redials one that
     * died, with its backoff). Told so (--no-inbound): to every PoP; not told: to each PoP
     * that the mesh found cannot dial us (its messages come back on our connections), which
     * for its part stops dialling us and waits for this tunnel (pop_peer). */
    for (size_t i = 0; i < dp->npops; i++)
        if (dp->pops[i].id != dp->o.id->node_id && !dp->pops[i].no_inbound &&
            meshnode_must_dial(dp->o.mesh, dp->pops[i].id) &&
            meshnode_is_alive(dp->o.mesh, dp->pops[i].id))
            pop_peer(dp, dp->pops[i].id);
    for (struct peer *p = dp->peers; p; p = p->next) {
        if (p->dead || !p->up || !p->is_site)
            continue;
        /* The tunnel RTT moved (first sample, or a path change): publish now rather than
         * at the next period, so routes do not lean on a stale cost. */
        uint32_t now_rtt = tconn_rtt_us(p->c);
        uint32_t was = p->published_rtt_us;
        if (now_rtt && was && !p->draining) {
            uint32_t diff = now_rtt > was ? now_rtt - was : was - now_rtt;
            if (diff > 2000 && diff * 4 > was)
                meshnode_linkstate_changed(dp->o.mesh);
        }
    }
}

/* ---- link state ------------------------------------------------------------------------- */

static void collect_sites(void *ctx, ls_record_t *rec)
{
    dataplane_t *dp = ctx;
    for (struct peer *p = dp->peers; p; p = p->next) {
        if (p->dead || !p->up || !p->is_site || p->draining)
            continue;
        uint32_t rtt = tconn_rtt_us(p->c);
        if (rtt == 0) /* no heartbeat answered yet: pessimistic until measured (on_tick
                       * republishes as soon as the first sample arrives) */
            rtt = DATAPLANE_UNMEASURED_US;
        p->published_rtt_us = rtt;
        if (ls_record_add_site(rec, p->id, rtt > LS_RTT_MAX_US ? LS_RTT_MAX_US : rtt,
                               LS_SITE_ONLINE) == 0)
            for (uint32_t i = 0; i < rec->n_sites; i++)
                if (rec->sites[i].site == p->id)
                    rec->sites[i].flags = p->primary ? LS_SITE_PRIMARY : 0;
    }
}

/* ---- control ---------------------------------------------------------------------------- */

static void pack_site(dataplane_t *dp, msgpack_packer *pk, const struct site_name *n)
{
    const lsdb_t *db = meshnode_lsdb(dp->o.mesh);
    size_t cnt = db ? lsdb_count(db) : 0;
    struct {
        uint64_t pop;
        uint32_t rtt;
        bool primary, online;
    } at[64];
    size_t nat = 0;
    bool online = false;
    for (size_t i = 0; i < cnt && nat < 64; i++) {
        lsdb_entry_t e;
        if (lsdb_entry_at(db, i, &e) || !meshnode_is_alive(dp->o.mesh, e.origin))
            continue;
        for (uint32_t k = 0; k < e.n_sites; k++)
            if (e.sites[k].site == n->id) {
                at[nat].pop = e.origin;
                at[nat].rtt = e.sites[k].rtt_us;
                at[nat].primary = e.sites[k].flags & LS_SITE_PRIMARY;
                at[nat].online = e.sites[k].state == LS_SITE_ONLINE;
                online |= at[nat].online;
                nat++;
            }
    }
    char idhex[17];
    identity_id_hex(n->id, idhex);
    const struct rep_health *rh = health_find(dp, n->name);
    msgpack_pack_map(pk, 7);
    mpw_kv_str(pk, "name", n->site);
    mpw_kv_str(pk, "replica", n->name);
    mpw_kv_str(pk, "host", rh ? rh->host : "");
    mpw_kv_str(pk, "id", idhex);
    mpw_kv_str(pk, "state", online ? "online" : "offline");
    mpw_str(pk, "pops");
    msgpack_pack_array(pk, nat);
    for (size_t i = 0; i < nat; i++) {
        char name[NODECFG_NAME_MAX + 20];
        node_name(dp, at[i].pop, name, sizeof(name));
        const struct cfg_pop *cp = pop_find(dp, at[i].pop);
        msgpack_pack_map(pk, 4);
        mpw_kv_str(pk, "name", name);
        mpw_kv_str(pk, "region", cp ? cp->region : "");
        mpw_str(pk, "rtt_ms");
        msgpack_pack_double(pk, at[i].rtt / 1000.0);
        mpw_kv_str(pk, "role", at[i].primary ? "primary" : "standby");
    }
    mpw_str(pk, "targets");
    uint32_t nck = rh ? rh->n : 0;
    msgpack_pack_array(pk, nck);
    for (uint32_t i = 0; i < nck; i++) {
        msgpack_pack_map(pk, 4);
        mpw_kv_str(pk, "addr", rh->checks[i].target);
        mpw_kv_bool(pk, "healthy", online && rh->checks[i].healthy);
        mpw_kv_str(pk, "check", rh->checks[i].health);
        mpw_kv_str(pk, "why", rh->checks[i].why);
    }
}

static int site_cmp(const void *a, const void *b)
{
    const struct site_name *x = a, *y = b;
    int c = strcmp(x->site, y->site);
    return c ? c : strcmp(x->name, y->name);
}

/* One entry per site node (replica), by site then replica name: name is the site's. */
static int cmd_sites(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    dataplane_t *dp = ctx;
    struct site_name *v = xmalloc((dp->nsites ? dp->nsites : 1) * sizeof(*v));
    if (dp->nsites)
        memcpy(v, dp->sites, dp->nsites * sizeof(*v));
    qsort(v, dp->nsites, sizeof(*v), site_cmp);
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "sites");
    msgpack_pack_array(pk, dp->nsites);
    for (size_t i = 0; i < dp->nsites; i++)
        pack_site(dp, pk, &v[i]);
    free(v);
    return CTL_OK;
}

void dataplane_pack_status(dataplane_t *dp, msgpack_packer *pk)
{
    size_t sites = 0, pops = 0;
    for (struct peer *p = dp->peers; p; p = p->next)
        if (p->up && !p->dead) {
            if (p->is_site)
                sites++;
            else
                pops++;
        }
    mpw_str(pk, "dataplane");
    msgpack_pack_map(pk, 30 + UDPIN_STATUS_PAIRS);
    udpin_pack_status(dp->udp, pk);
    mpw_kv_str(pk, "tunnel_addr", dp->tunnel_addr);
    mpw_kv_u64(pk, "sites_attached", sites);
    mpw_kv_u64(pk, "pop_tunnels", pops);
    mpw_kv_u64(pk, "streams", splice_ctx_count(dp->splices));
    mpw_kv_u64(pk, "ingress_accepted", dp->st.ingress_accepted);
    mpw_kv_u64(pk, "ingress_opened", dp->st.ingress_opened);
    mpw_kv_u64(pk, "ingress_failed", dp->st.ingress_failed);
    mpw_kv_u64(pk, "ingress_retries", dp->st.ingress_retries);
    mpw_kv_u64(pk, "ingress_refused_limit", dp->st.ingress_refused_limit);
    mpw_kv_u64(pk, "ingress_loops", dp->st.ingress_loops);
    mpw_kv_u64(pk, "relayed", dp->st.relayed);
    mpw_kv_u64(pk, "relay_refused", dp->st.relay_refused);
    mpw_kv_u64(pk, "ingress_sealed", dp->st.ingress_sealed);
    mpw_kv_u64(pk, "ingress_unsealed", dp->st.ingress_unsealed);
    mpw_kv_u64(pk, "relayed_sealed", dp->st.relayed_sealed);
    mpw_kv_u64(pk, "tunnels_accepted", dp->st.tunnels_accepted);
    mpw_kv_u64(pk, "tunnels_refused", dp->st.tunnels_refused);
    mpw_kv_u64(pk, "handshake_failures", dp->st.handshake_failures);
    mpw_kv_u64(pk, "hello_replays", dp->st.hello_replays);
    mpw_kv_u64(pk, "hello_unconfirmed", dp->st.hello_unconfirmed);
    mpw_kv_u64(pk, "bytes_in", dp->st.bytes_in);
    mpw_kv_u64(pk, "bytes_out", dp->st.bytes_out);
    mpw_kv_u64(pk, "store_scans", dp->st.store_scans);
    mpw_kv_u64(pk, "tunnel_refused_cap", dp->st.tunnel_refused_cap);
    mpw_kv_u64(pk, "ingress_refused_cap", dp->st.ingress_refused_cap);
    mpw_kv_u64(pk, "accept_failures", dp->st.accept_failures);
    mpw_kv_u64(pk, "tls_handshakes", dp->st.tls_handshakes);
    mpw_kv_u64(pk, "tls_resumed", dp->st.tls_resumed);
    mpw_kv_u64(pk, "tls_failed", dp->st.tls_failed);
    mpw_kv_u64(pk, "tls_timeouts", dp->st.tls_timeouts);
}

void dataplane_health(void *ctx, meshnode_health_t *h)
{
    dataplane_t *dp = ctx;
    h->streams += (uint32_t)splice_ctx_count(dp->splices);
    for (struct peer *p = dp->peers; p; p = p->next)
        h->tunnels += p->is_site && p->up && !p->dead;
    h->listeners++; /* the tunnel listener */
    h->listeners_up += !dp->lbackoff_on;
    for (struct listener *l = dp->listeners; l; l = l->next) {
        h->listeners++;
        h->listeners_up += l->fd >= 0 && !l->backoff;
    }
    udpin_listeners(dp->udp, &h->listeners, &h->listeners_up);
}

static int cmd_dataplane(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    dataplane_t *dp = ctx;
    size_t n = 0;
    for (struct peer *p = dp->peers; p; p = p->next)
        n += p->up && !p->dead;
    msgpack_pack_map(pk, 2);
    dataplane_pack_status(dp, pk);
    /* Every tunnel up, for operators chasing a slow or flapping one. */
    mpw_str(pk, "tunnels");
    msgpack_pack_array(pk, n);
    uint64_t now = clock_mono_ms();
    for (struct peer *p = dp->peers; p; p = p->next) {
        if (!p->up || p->dead)
            continue;
        tun_stats_t st = {0};
        tun_t *t = tconn_tun(p->c);
        if (t)
            tun_get_stats(t, &st);
        uint64_t rk_sent, rk_recv;
        bool rk = tconn_rekeys(p->c, &rk_sent, &rk_recv);
        msgpack_pack_map(pk, 15);
        mpw_kv_str(pk, "peer", p->name);
        mpw_kv_str(pk, "role",
                   p->is_site ? (p->draining  ? "site (draining)"
                                 : p->primary ? "site (primary)"
                                              : "site (standby)")
                              : "pop");
        mpw_kv_str(pk, "addr", tconn_peer_addr(p->c));
        mpw_kv_u64(pk, "up_ms", now - p->up_since_ms);
        mpw_kv_u64(pk, "rtt_us", st.rtt_us);
        mpw_kv_u64(pk, "rtt_min_us", st.rtt_recent_min_us);
        mpw_kv_u64(pk, "pings_sent", st.pings_sent);
        mpw_kv_u64(pk, "pongs_received", st.pongs_received);
        mpw_kv_u64(pk, "streams", st.streams);
        mpw_kv_u64(pk, "data_bytes_sent", st.data_bytes_sent);
        mpw_kv_u64(pk, "queued", tconn_queued(p->c));
        /* sealed payload relayed from another tunnel's buffer without a copy (tconn.c) */
        mpw_kv_u64(pk, "zero_copy_bytes", tconn_zc_bytes(p->c));
        mpw_kv_bool(pk, "rekey", rk); /* false: the peer predates rekeying */
        mpw_kv_u64(pk, "rekeys_sent", rk_sent);
        mpw_kv_u64(pk, "rekeys_received", rk_recv);
    }
    return CTL_OK;
}

/* Every resource's targets with their merged health (see "target health" above). */
static int cmd_targets(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    dataplane_t *dp = ctx;
    char only[NODECFG_NAME_MAX + 1] = "";
    if (ctl_arg_copy(req, "name", only, sizeof(only)) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "name must be a resource name");
    resource_t *all;
    size_t n;
    if (resource_list(dp->o.store, &all, &n))
        return control_error(pk, CTL_FAILED, "cannot list resources: %s",
                             store_last_error(dp->o.store));
    size_t shown = 0;
    for (size_t i = 0; i < n; i++)
        shown += !only[0] || !strcmp(all[i].name, only);
    if (only[0] && !shown) {
        free(all);
        return control_error(pk, CTL_NOT_FOUND, "there is no resource '%s'", only);
    }
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "resources");
    msgpack_pack_array(pk, shown);
    for (size_t i = 0; i < n; i++) {
        const resource_t *r = &all[i];
        if (only[0] && strcmp(r->name, only))
            continue;
        char spec[RESOURCE_HEALTH_MAX + 1];
        resource_health_str(r, spec, sizeof(spec));
        msgpack_pack_map(pk, 2);
        mpw_kv_str(pk, "name", r->name);
        mpw_str(pk, "targets");
        msgpack_pack_array(pk, r->ntargets);
        for (unsigned k = 0; k < r->ntargets; k++) {
            const char *why;
            unsigned nlive, nup;
            const char *site = resource_target_site(r, k);
            enum tstate t = target_state(dp, site, r->targets[k], spec, &why, &nlive, &nup);
            msgpack_pack_map(pk, 8);
            mpw_kv_str(pk, "site", site);
            mpw_kv_str(pk, "addr", r->targets[k]);
            mpw_kv_u64(pk, "priority", resource_target_priority(r, k));
            mpw_kv_u64(pk, "weight", resource_target_weight(r, k));
            mpw_kv_str(pk, "state", tstate_str(t));
            mpw_kv_str(pk, "why", t == TS_UNREACHABLE ? "no connector of the site is online"
                                  : t == TS_DOWN      ? why
                                                      : "");
            mpw_kv_u64(pk, "replicas_live", nlive);
            mpw_kv_u64(pk, "replicas_up", nup);
        }
    }
    free(all);
    return CTL_OK;
}

/* Routes of the resources restricted by transit labels: per replica of each of their sites,
 * the path over the allowed PoPs, or reachable false ("no allowed path"). */
static int cmd_resource_routes(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    dataplane_t *dp = ctx;
    resource_t *all;
    size_t n;
    if (resource_list(dp->o.store, &all, &n))
        return control_error(pk, CTL_FAILED, "cannot list resources: %s",
                             store_last_error(dp->o.store));
    size_t shown = 0;
    for (size_t i = 0; i < n; i++)
        shown += all[i].ntransit_labels > 0;
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "resources");
    msgpack_pack_array(pk, shown);
    for (size_t i = 0; i < n; i++) {
        const resource_t *r = &all[i];
        if (!r->ntransit_labels)
            continue;
        /* Not served here: no path from here counts (the filter lets paths start at self). */
        bool here = self_allowed(dp, r, true);
        const route_table_t *rt = here ? routes_for(dp, r) : NULL;
        uint64_t ids[RESOURCE_TARGETS_MAX * DATAPLANE_REPLICAS_MAX];
        size_t nid = 0;
        for (unsigned t = 0; t < r->ntargets; t++) {
            const char *site = resource_target_site(r, t);
            bool seen = false;
            for (unsigned k = 0; k < t && !seen; k++)
                seen = !strcmp(site, resource_target_site(r, k));
            if (!seen)
                nid += site_replicas(dp, site, ids + nid, DATAPLANE_REPLICAS_MAX);
        }
        msgpack_pack_map(pk, 4);
        mpw_kv_str(pk, "name", r->name);
        mpw_str(pk, "transit_labels");
        msgpack_pack_array(pk, r->ntransit_labels);
        for (unsigned k = 0; k < r->ntransit_labels; k++)
            mpw_str(pk, r->transit_labels[k]);
        mpw_kv_bool(pk, "served_here", here);
        mpw_str(pk, "replicas");
        msgpack_pack_array(pk, nid);
        for (size_t k = 0; k < nid; k++) {
            route_entry_t e;
            bool ok = rt && route_table_lookup(rt, ids[k], &e) == 0;
            char name[NODECFG_NAME_MAX + 20];
            node_name(dp, ids[k], name, sizeof(name));
            msgpack_pack_map(pk, ok ? 4 : 2);
            mpw_kv_str(pk, "replica", name);
            mpw_kv_bool(pk, "reachable", ok);
            if (!ok)
                continue;
            mpw_str(pk, "path");
            msgpack_pack_array(pk, e.primary.n_hops);
            for (uint32_t h = 0; h < e.primary.n_hops; h++) {
                node_name(dp, e.primary.hops[h], name, sizeof(name));
                mpw_str(pk, name);
            }
            mpw_str(pk, "cost_ms");
            msgpack_pack_double(pk, (double)e.primary.cost_us / 1000.0);
        }
    }
    free(all);
    return CTL_OK;
}

static const control_command_t dp_commands[] = {
    {"sites", cmd_sites,
     "-> {sites: [{name (the site), replica, id, state, pops: [{name, region, rtt_ms, role}], "
     "targets: [{addr, healthy}]}]}: one entry per connector replica"},
    {"resource.routes", cmd_resource_routes,
     "-> {resources: [{name, transit_labels, served_here, replicas: [{replica, reachable, path?, "
     "cost_ms?}]}]}: routes of the resources restricted to labelled PoPs, over those PoPs only"},
    {"targets", cmd_targets,
     "{name?} -> {resources: [{name, targets: [{site, addr, priority, weight, state, why, "
     "replicas_live, replicas_up}]}]}: targets with their health merged across replicas"},
    {"dataplane", cmd_dataplane,
     "-> {dataplane: {tunnel_addr, sites_attached, streams, ...}, tunnels: [{peer, role, rtt_us, "
     "...}]}"},
    {NULL, NULL, NULL},
};

int dataplane_register_commands(dataplane_t *dp, control_t *ctl)
{
    return control_add_commands(ctl, dp_commands, dp);
}

/* ---- life ------------------------------------------------------------------------------- */

static void on_dump(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    dataplane_t *dp = w->data;
    splice_ctx_dump(dp->splices);
}

/* A cap, or for tests only the value of the environment variable knob (docs/dataplane.md). */
static uint32_t test_knob(uint32_t dflt, const char *knob)
{
    const char *v = knob ? getenv(knob) : NULL;
    if (!v || !*v)
        return dflt;
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (*end || x == 0 || x > 1u << 24) {
        log_warn("dataplane: ignoring %s=%s (want a positive number)", knob, v);
        return dflt;
    }
    log_warn("dataplane: TEST KNOB: %s=%lu (for tests only)", knob, x);
    return (uint32_t)x;
}

dataplane_t *dataplane_new(const dataplane_opts_t *o, char *err, size_t errlen)
{
    dataplane_t *dp = xcalloc(1, sizeof(*dp));
    dp->o = *o;
    memcpy(dp->keys.pk, o->id->curve_pk, 32);
    memcpy(dp->keys.sk, o->id->curve_sk, 32);
    dp->keys.hello_ts_last = &dp->hello_ts_last;
    tconn_keys_test_knobs(&dp->keys);
    tun_config_defaults(&dp->tcfg);
    dp->route = route_new(NULL);
    /* For tests only: a low stream limit, to check what happens past it without opening
     * thousands of connections (docs/dataplane.md). */
    dp->tcfg.max_streams = test_knob(DATAPLANE_MAX_STREAMS, "POPMESH_TEST_MAX_STREAMS");
    dp->tcfg.window_auto_max = DATAPLANE_WINDOW_MAX;
    dp->tcfg.role = TUN_ACCEPTOR; /* tconn sets the role of each connection */
    dp->tcfg.open_timeout_ms = DATAPLANE_OPEN_TIMEOUT;
    char listen_addr[NODECFG_ADDR_MAX + 1];
    nodecfg_tunnel_listen(o->cfg, listen_addr, sizeof(listen_addr));
    nodecfg_tunnel_addr(o->cfg, dp->tunnel_addr, sizeof(dp->tunnel_addr));
    dp->lfd = netaddr_listen(listen_addr, LISTEN_BACKLOG, err, errlen);
    if (dp->lfd < 0) {
        free(dp);
        return NULL;
    }
    dp->pending_cap =
        conncap_new(test_knob(DATAPLANE_PENDING_MAX, NULL),
                    test_knob(DATAPLANE_PENDING_PER_ADDR, "POPMESH_TEST_TUNNEL_PENDING_PER_IP"));
    dp->tcp_cap = conncap_new(conncap_half_nofile(DATAPLANE_TCP_MAX_MIN),
                              test_knob(DATAPLANE_TCP_PER_ADDR, "POPMESH_TEST_TCP_PER_IP"));
    /* The HTTPS listener's knob (httpproxy.h): one handshake limit for both. */
    dp->tls_timeout =
        test_knob((uint32_t)(TLSCTX_HANDSHAKE_TIMEOUT_S * 1000), "POPMESH_TEST_TLS_HANDSHAKE_MS") /
        1000.0;
    ev_timer_init(&dp->lbackoff, on_tunnel_backoff, DATAPLANE_ACCEPT_BACKOFF_S, 0.);
    dp->lbackoff.data = dp;
    dp->splices = splice_ctx_new(o->loop);
    dp->udp = udpin_new(o->loop, dp, o->store, o->cfg);
    ev_io_init(&dp->lio, on_tunnel_accept, dp->lfd, EV_READ);
    dp->lio.data = dp;
    ev_io_start(o->loop, &dp->lio);
    ev_check_init(&dp->reaper, on_reap);
    dp->reaper.data = dp;
    ev_timer_init(&dp->apply, on_apply, 0., 0.);
    dp->apply.data = dp;
    ev_timer_init(&dp->tick, on_tick, DATAPLANE_TICK_S, DATAPLANE_TICK_S);
    dp->tick.data = dp;
    ev_timer_start(o->loop, &dp->tick);
    /* Watch first, then load: nothing can change in between (one thread), and every later
     * change is reported. */
    dp->watch_res =
        store_watch(o->store, RESOURCE_PREFIX, strlen(RESOURCE_PREFIX), on_resources_changed, dp);
    dp->watch_nodes =
        store_watch(o->store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), on_nodes_changed, dp);
    dp->watch_health = store_watch(o->store, SITEHEALTH_PREFIX, strlen(SITEHEALTH_PREFIX),
                                   on_health_changed, dp);
    if (dp->watch_res < 0 || dp->watch_nodes < 0 || dp->watch_health < 0) {
        snprintf(err, errlen, "cannot watch the store for configuration changes: %s",
                 strerror(-(dp->watch_res < 0     ? dp->watch_res
                            : dp->watch_nodes < 0 ? dp->watch_nodes
                                                  : dp->watch_health)));
        dataplane_destroy(&dp);
        return NULL;
    }
    load_config(dp);
    meshnode_set_site_source(o->mesh, collect_sites, dp);
    ev_signal_init(&dp->sigusr1, on_dump, SIGUSR1);
    dp->sigusr1.data = dp;
    ev_signal_start(o->loop, &dp->sigusr1);
    log_info("dataplane: tunnel endpoint on %s (published as %s)", listen_addr, dp->tunnel_addr);
    /* Before the control socket takes commands: a site enrolled right after start must find
     * this PoP's tunnel endpoint in the registry it is sent. */
    publish_tunnel_addr(dp);
    return dp;
}

void dataplane_destroy(dataplane_t **dpp)
{
    dataplane_t *dp = dpp ? *dpp : NULL;
    if (!dp)
        return;
    meshnode_set_site_source(dp->o.mesh, NULL, NULL);
    udpin_destroy(&dp->udp); /* before the tunnels: its flows reset their streams */
    splice_ctx_destroy(&dp->splices);
    while (dp->tls_pending)
        tls_pending_free(dp->tls_pending, true);
    ev_io_stop(dp->o.loop, &dp->lio);
    ev_timer_stop(dp->o.loop, &dp->lbackoff);
    ev_timer_stop(dp->o.loop, &dp->tick);
    ev_timer_stop(dp->o.loop, &dp->apply);
    if (dp->watch_res > 0)
        store_unwatch(dp->o.store, dp->watch_res);
    if (dp->watch_nodes > 0)
        store_unwatch(dp->o.store, dp->watch_nodes);
    if (dp->watch_health > 0)
        store_unwatch(dp->o.store, dp->watch_health);
    ev_check_stop(dp->o.loop, &dp->reaper);
    ev_signal_stop(dp->o.loop, &dp->sigusr1);
    close(dp->lfd);
    while (dp->peers) {
        struct peer *p = dp->peers;
        dp->peers = p->next;
        struct waiter *w = p->waiters;
        while (w) { /* their owners are freed with them: nothing else points at them */
            struct waiter *next = w->next;
            if (w->ready == ingress_peer_ready) {
                struct ingress *in = (struct ingress *)((char *)w - offsetof(struct ingress, w));
                free(in);
            } else {
                free((char *)w - offsetof(struct relay, w));
            }
            w = next;
        }
        tconn_destroy(&p->c);
        conncap_release(dp->pending_cap, p->slot);
        free(p->status);
        free(p);
    }
    while (dp->listeners) {
        struct listener *l = dp->listeners;
        dp->listeners = l->next;
        listener_free(dp, l);
    }
    conncap_destroy(&dp->pending_cap); /* every slot was released above */
    conncap_destroy(&dp->tcp_cap);     /* and by the splices' ends */
    for (size_t i = 0; i < DATAPLANE_LABEL_TABLES; i++)
        route_table_destroy(&dp->lroutes[i].t);
    route_destroy(&dp->route);
    for (size_t i = 0; i < dp->nhealth; i++)
        free(dp->health[i].checks);
    free(dp->health);
    free(dp->sites);
    free(dp->res);
    free(dp->pops);
    free(dp->seen);
    sodium_memzero(&dp->keys, sizeof(dp->keys));
    free(dp);
    *dpp = NULL;
}
