/* meshnode_int: the inside of meshnode_t, shared by the files that make up a popd's life in
 * the mesh. Internal to node/membership: nothing else includes it, and meshnode.h keeps the
 * type opaque to everyone else.
 *
 * Who owns what (each file holds one concept; the struct is one because they share its state):
 *   meshnode.c    the core: the transport glue (who a member is and where, sending), SWIM
 *                 driving and its callbacks, the registry snapshot, the store's dissemination
 *                 (broadcast, push fan-out, anti-entropy, removal pushes), link-state glue,
 *                 the life cycle;
 *   meshjoin.c    the join server: a token holder's JOIN answered at a seed, and decided at
 *                 the join arbiter;
 *   meshhealth.c  health vectors: this PoP's own (its sources), the members' (merge), and
 *                 the route penalties they give;
 *   meshclock.c   this node's clock against the mesh's, and the write guard it implies;
 *   meshcmd.c     the control commands on the mesh (members, status, tokens, node removal,
 *                 routes);
 *   meshadmin.c   operator commands that only read and write records (sites, resources),
 *                 through the few functions below. */
#ifndef POPMESH_NODE_MEMBERSHIP_MESHNODE_INT_H
#define POPMESH_NODE_MEMBERSHIP_MESHNODE_INT_H

#include "common/mp.h"
#include "gossip/antientropy.h"
#include "gossip/swim.h"
#include "node/ctl/control.h"
#include "node/membership/meshmsg.h"
#include "node/membership/meshnet.h"
#include "node/membership/meshnode.h"
#include "node/membership/meshroute.h"
#include "node/records/registry.h"

#include <ev.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MESHNODE_PENDING_PUSH  8  /* removals pushed straight to the removed node at once */
#define MESH_BAD_VERSION_LOG_S 10 /* s between two log lines about messages of unknown versions */

struct health {
    uint64_t id;
    uint64_t seq;           /* the sender's wall clock ms when it measured: newer wins */
    uint32_t cpu_permille;  /* of one core, over the sender's last period */
    uint32_t rss_kb;        /* resident memory, KiB */
    uint32_t streams;       /* streams open through it: ingress and relayed */
    uint32_t tunnels;       /* site tunnels up at it */
    uint32_t listeners;     /* ingress listeners configured (TCP resource ports, HTTP, tunnels) */
    uint32_t listeners_up;  /* of those, bound and accepting */
    uint32_t load_permille; /* max(cpu, streams against capacity), 0..1000 (meshhealth.c) */
    bool detailed;          /* the sender sent the fields above from tunnels on (a newer node) */
    bool ingress_up;        /* listeners_up == listeners (an older sender: what it said) */
    double received;        /* ev_now when it arrived here, s */
};

/* A removal record still to be pushed to the removed node (meshnode.c). */
struct removal_push {
    uint64_t id;
    int left; /* pushes still to send */
};

struct meshnode {
    meshnode_opts_t o;
    meshnet_t *net;
    swim_t *swim;
    ev_timer swim_timer;
    ev_timer ae_timer;
    ev_timer push_timer;
    ev_timer leave_timer;
    ev_timer keep_timer; /* no-inbound: keeps a connection to every PoP (on_keep_timer) */
    void (*leave_done)(void *);
    void *leave_ctx;
    reg_node_t *reg; /* registry snapshot, not removed and removed alike */
    int reg_watch;   /* the store watch that keeps reg in step with node/ records */
    size_t nreg;
    struct removal_push pushes[MESHNODE_PENDING_PUSH];
    uint64_t ae_seq;
    uint64_t rng;
    ae_stats_t ae;
    char mesh_id[33];
    uint64_t joins_ok, joins_refused, bad_messages, pushes_applied;
    uint64_t join_relayed, join_relay_full; /* FORWARDs passed on to the arbiter for seeds */
    uint64_t bad_version;       /* messages dropped for a version this node does not speak */
    uint64_t bad_version_quiet; /* of those, since the last log line */
    double bad_version_log_at;  /* ev_now of that log line, s */
    bool removed;
    meshroute_t *routes;
    void (*site_source)(void *ctx, ls_record_t *rec); /* meshnode_set_site_source */
    void *site_source_ctx;
    struct health *health; /* one per member that sent one, self included (meshhealth.c) */
    size_t nhealth;
    struct {
        meshnode_health_fn fn;
        void *ctx;
    } health_src[MESHNODE_HEALTH_SOURCES]; /* meshnode_add_health_source */
    unsigned nhealth_src;
    struct {
        void (*fn)(void *ctx);
        void *ctx;
    } change_hooks[MESHNODE_CHANGE_HOOKS]; /* meshnode_add_change_hook; fn NULL = free */
    meshnode_trust_t trust;       /* meshnode_set_trust; zeroed = no checks */
    meshnode_logins_fn logins_fn; /* meshnode_set_logins_sink; NULL = none */
    void *logins_ctx;
    ev_timer health_timer;
    double cpu_last; /* s of CPU used by this process at the last health sample */
    double cpu_at;   /* ev_now of that sample */
    /* Clock skew (meshclock.c). */
    uint64_t skew_seen;      /* store skew_rejected already reported */
    uint64_t skew_quiet;     /* refused since the last report */
    double skew_log_at;      /* ev_now of the last "refused for skew" report, s */
    double clock_log_at;     /* ev_now of the last "this node's clock is off" report, s */
    bool clock_off;          /* that report is in force (to log the recovery once) */
    uint64_t writes_refused; /* control writes refused for this node's clock */
    struct meshjoin *join;   /* JOINs waiting for the join arbiter (meshjoin.c) */
};

/* ---- meshnode.c -------------------------------------------------------------------------- */

/* The registry record of node id (removed ones included), or the live one named name; NULL if
 * none. Borrowed: into the snapshot (see meshnode_registry). */
const reg_node_t *meshnode_reg_find(const meshnode_t *m, uint64_t id);
const reg_node_t *meshnode_reg_find_name(const meshnode_t *m, const char *name);
/* Parses SWIM metadata [name, addr, curve_pk]; the key is trusted only if it is the key of the
 * member's id. 0 or -EBADMSG. */
int meshnode_parse_meta(const uint8_t *meta, size_t len, uint64_t id, char *name, size_t nl,
                        char *addr, size_t al, uint8_t pk[32]);
/* Sends msg to member id (registry first, else what SWIM heard). 0 or -errno; loss is the
 * protocols' business. */
int meshnode_send(meshnode_t *m, uint64_t id, const uint8_t *msg, size_t len);
/* Re-arms the SWIM timer at SWIM's next deadline: after anything handed to SWIM. */
void meshnode_swim_rearm(meshnode_t *m);
/* Sends the current record at key straight to every alive member but `except`. */
void meshnode_push_to_alive(meshnode_t *m, const char *key, uint64_t except);
/* How many keys start with prefix. */
uint64_t meshnode_count_prefix(const meshnode_t *m, const char *prefix);
/* The registry snapshot: every node/ record, removed ones included. Borrowed: any write or
 * merge of a node/ record replaces it, so copy what is needed before writing anything. */
const reg_node_t *meshnode_registry(const meshnode_t *m, size_t *n);
/* Mints a token of role, bound to site when site is not NULL or "", valid
 * ttl ms, for uses joins (0 = unlimited), and stores its record. site_token (0: none; only
 * with a site) is the id of the site's own token, for a replica's token (meshadmin.c): the
 * record is written once, complete. On success text (textlen >= TOKEN_TEXT_MAX + 1) holds
 * the token, which carries its secret: the caller wipes it (sodium_memzero) once sent; *rec
 * is the stored record. 0 or -errno with a reason in err. */
int meshnode_token_mint(meshnode_t *m, enum node_role role, const char *site,
                        uint64_t site_token, uint64_t ttl, uint64_t uses, char *text,
                        size_t textlen, reg_token_t *rec, char *err, size_t errlen);
/* The same, for a PoP token naming the capabilities (nodecert.h; 0 = all) its PoP's
 * certificate will carry. Refused (-EPERM) when this PoP's own certificate lacks invite. The
 * record is signed with this PoP's node key (reg_token_sign). */
int meshnode_token_mint_caps(meshnode_t *m, enum node_role role, const char *site,
                             uint64_t site_token, uint64_t ttl, uint64_t uses, uint32_t caps,
                             char *text, size_t textlen, reg_token_t *rec, char *err,
                             size_t errlen);
/* Marks node n removed everywhere, as node.remove does: the record is written with
 * removed = true (every PoP refuses its key from then on) and pushed straight to the node.
 * n may point into the registry snapshot. 0 or -errno; store_last_error() says why. */
int meshnode_remove_node(meshnode_t *m, const reg_node_t *n);

/* ---- meshjoin.c -------------------------------------------------------------------------- */

/* A JOIN from the holder of token token_id, on the connection with routing id rid: answered
 * with JOIN_OK or JOIN_ERR through meshnet_reply. msg is borrowed for the call. */
void meshjoin_handle(meshnode_t *m, uint64_t token_id, const uint8_t *rid, size_t rl,
                     const uint8_t *msg, size_t len);
/* FORWARD from member `from` (a seed): decided here when this PoP is the join arbiter, and
 * answered with VERDICT. VERDICT from member `from`: the answer to one of this seed's waiting
 * JOINs. msg is borrowed for the call. */
void meshjoin_forward(meshnode_t *m, uint64_t from, const uint8_t *msg, size_t len);
void meshjoin_verdict(meshnode_t *m, uint64_t from, const uint8_t *msg, size_t len);
/* Sets up / tears down the waiting JOINs (meshnode_new, meshnode_destroy). */
void meshjoin_start(meshnode_t *m);
void meshjoin_stop(meshnode_t *m);

/* ---- meshhealth.c ------------------------------------------------------------------------ */

/* Starts this PoP's health vectors (the first soon after start) / stops them and frees the
 * members' vectors. */
void meshhealth_start(meshnode_t *m);
void meshhealth_stop(meshnode_t *m);
/* A member's health vector from a broadcast, r at its body. Returns whether it was news. */
bool meshhealth_merge(meshnode_t *m, mpr_t *r);
/* Member id's last vector, self included; NULL if none arrived. Borrowed until the next merge. */
const struct health *meshhealth_of(const meshnode_t *m, uint64_t id);

/* ---- meshclock.c ------------------------------------------------------------------------- */

/* This node's clock minus the mesh's (median over alive peers). 0 or -ENOENT (no peer). */
int meshclock_offset(meshnode_t *m, int64_t *off, unsigned *peers);
/* Reports store versions refused for skew since the last call (rate-limited). */
void meshclock_note_skew(meshnode_t *m);
/* Checks and reports this node's own offset (rate-limited); called with each health vector. */
void meshclock_check(meshnode_t *m);
/* control_set_guard's guard: refuses store writes while this node's clock is too far ahead. */
int meshclock_guard(void *ctx, const char *cmd, size_t len, msgpack_packer *body);

/* ---- meshadmin.c ------------------------------------------------------------------------- */

/* site.add, site.rm, site.list, resource.add, resource.list, resource.rm; ctx = meshnode_t. */
extern const control_command_t meshadmin_commands[];
/* Reads site/<name>: 0, -ENOENT (absent, deleted, or name invalid), -EBADMSG (unreadable,
 * logged) or another -errno from the store. */
int meshadmin_site_get(store_t *store, const char *name, reg_site_t *s);

#endif
