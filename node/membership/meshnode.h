/* meshnode: a popd's life in the mesh. It ties together the transport (meshnet), the SWIM core
 * (gossip/swim), store anti-entropy (gossip/antientropy), the replicated registry of members
 * and tokens (registry.h) and the join handshake, and answers the mesh's control commands
 * (members, tokens, node removal).
 *
 * The messages on the mesh socket, their versions and who may send them: meshmsg.h. */
#ifndef POPMESH_NODE_MEMBERSHIP_MESHNODE_H
#define POPMESH_NODE_MEMBERSHIP_MESHNODE_H

#include "node/ctl/control.h"
#include "node/records/identity.h"
#include "node/membership/joinmsg.h"
#include "node/nodecfg.h"
#include "storage/store.h"

#include <ev.h>
#include <stdbool.h>

#define MESH_AE_PERIOD    1.0  /* s between anti-entropy exchanges (jittered) */
#define MESH_JOIN_TIMEOUT 5000 /* ms a joiner waits for one seed */

typedef struct meshnode meshnode_t;

typedef struct meshnode_opts {
    struct ev_loop *loop;
    void *zctx;               /* ZeroMQ context, owned by the caller */
    store_t *store;           /* borrowed */
    const nodecfg_t *cfg;     /* borrowed */
    const identity_t *id;     /* borrowed */
    const meshkey_t *meshkey; /* borrowed */
    const storekey_t *storekey; /* borrowed; handed to joining PoPs in JOIN_OK (may be NULL) */
    /* Called when this node learns it was removed from the mesh; the daemon then stops. */
    void (*on_removed)(void *ctx);
    void *ctx;
} meshnode_opts_t;

meshnode_t *meshnode_new(const meshnode_opts_t *o, char *err, size_t errlen);

/* The key hierarchy's checks (node/trust), set once trust exists: joins are admitted only
 * with tokens token_ok accepts, tokens are minted only when self_may(CAP_INVITE), and a
 * joining PoP learns the root from root_record (the value of trust/root, or -ENOENT). Any
 * may be NULL: no check. The struct is copied; ctx is borrowed. */
typedef struct meshnode_trust {
    int (*token_ok)(void *ctx, const reg_token_t *t, uint64_t now_ms, const char **why);
    int (*self_may)(void *ctx, uint32_t need, char *err, size_t errlen);
    int (*root_record)(void *ctx, msgpack_sbuffer *out);
    void *ctx;
} meshnode_trust_t;
void meshnode_set_trust(meshnode_t *m, const meshnode_trust_t *t);
void meshnode_destroy(meshnode_t **mp);

/* Registers the mesh commands (members, token.*, node.remove, mesh.status). */
int meshnode_register_commands(meshnode_t *m, control_t *ctl);

/* A local write (put or tombstone) committed: spread it. e's buffers are borrowed; its key
 * (and value, for a put) must be set: store_put and store_del leave them NULL. */
void meshnode_published(meshnode_t *m, const store_entry_t *e);

/* The one way modules write the replicated store: write at a fresh local version, then spread
 * (push, piggyback, anti-entropy). out (may be NULL) gets the version and origin. 0 or -errno;
 * store_last_error() says why. del: -ENOENT when there is no live entry (nothing written). */
int meshnode_put_record(meshnode_t *m, const char *key, const msgpack_sbuffer *val);
int meshnode_put_value(meshnode_t *m, const char *key, size_t klen, const void *value,
                       size_t vlen, store_entry_t *out);
int meshnode_del_record(meshnode_t *m, const char *key, size_t klen, store_entry_t *out);
/* The node's store (borrowed). */
store_t *meshnode_store(const meshnode_t *m);

/* Graceful leave: gossips LEFT and calls done() once it had time to spread (bounded). */
void meshnode_leave(meshnode_t *m, void (*done)(void *ctx), void *ctx);

/* Adds the mesh fields to a status answer: the map gets these n pairs. */
#define MESHNODE_STATUS_PAIRS 4
/* Writes are refused while this node's clock is more than this ahead of the mesh's: 15 s
 * under HLC_MAX_AHEAD_MS (60 s), past which every other node drops its versions. */
#define MESHNODE_CLOCK_WRITE_LIMIT_MS 45000 /* ms */
#define MESHNODE_CLOCK_LOG_S          10    /* s between two log lines about clock skew */
void meshnode_pack_status(meshnode_t *m, msgpack_packer *pk);

/* ---- for the data plane (node/dataplane/dataplane.c) ---- */
#include "mesh/linkstate.h"
#include "mesh/route.h"
/* fn adds the sites attached to this PoP to each link-state record it publishes. */
void meshnode_set_site_source(meshnode_t *m, void (*fn)(void *ctx, ls_record_t *rec), void *ctx);
/* A site attached or detached here: publish the link state now rather than at the period. */
void meshnode_linkstate_changed(meshnode_t *m);
/* The current routes (NULL before the first computation); borrowed until the loop turns. */
const route_table_t *meshnode_routes(const meshnode_t *m);
/* Every PoP's link-state record (for meshctl sites). Borrowed until the loop turns. */
const lsdb_t *meshnode_lsdb(const meshnode_t *m);
/* Whether SWIM holds id alive (this node always is). */
bool meshnode_is_alive(const meshnode_t *m, uint64_t id);
/* PoP id cannot be dialled from here: its record says --no-inbound, or it was learned (our
 * mesh sends to it have all gone back on its connection to us: meshnet_one_way). The data
 * plane then waits for the tunnel it dials rather than dialling it. */
bool meshnode_no_dial(const meshnode_t *m, uint64_t id);
/* PoP id cannot dial this node: this node is started with --no-inbound, or it was learned (id
 * sends to us back on our own connection: meshnet_cannot_dial_us). This node then keeps a
 * connection and a tunnel to it. */
bool meshnode_must_dial(const meshnode_t *m, uint64_t id);

/* A PoP's latest health vector as held here (this PoP's own included, once it made its first):
 * false if none has arrived. ingress_up, load_permille may be NULL. */
bool meshnode_pop_health(const meshnode_t *m, uint64_t id, bool *ingress_up,
                         uint16_t *load_permille);

/* Something that decides which PoPs users should get changed: a member's liveness, a PoP's
 * ingress health (up or down, or its first vector), or the routes. fn runs synchronously at the
 * change, on the loop's thread; it should only mark its own state dirty (the DNS view, the
 * ticket-key writer). Up to MESHNODE_CHANGE_HOOKS hooks: 0 or -ENOSPC. remove: by fn and ctx,
 * unknown pairs ignored. */
#define MESHNODE_CHANGE_HOOKS 4
int meshnode_add_change_hook(meshnode_t *m, void (*fn)(void *ctx), void *ctx);
void meshnode_remove_change_hook(meshnode_t *m, void (*fn)(void *ctx), void *ctx);
/* Calls the hook (for the parts of membership that notice a change). */
void meshnode_changed(meshnode_t *m);

/* ---- login attempt counts shared across the mesh (node/auth/loginshare.h) ---- */

/* Gets every login summary another PoP broadcast (body borrowed for the call, untrusted): 1
 * when it was news (then SWIM gossips it on), 0 when not, -errno when malformed (counted). */
typedef int (*meshnode_logins_fn)(void *ctx, const uint8_t *body, size_t len);
/* One sink; fn NULL removes it (summaries are then dropped, not gossiped on). */
void meshnode_set_logins_sink(meshnode_t *m, meshnode_logins_fn fn, void *ctx);
/* Broadcasts this PoP's summary (body: one msgpack object, copied); a newer one replaces a
 * queued older one. 0 or -E2BIG. */
int meshnode_broadcast_logins(meshnode_t *m, const uint8_t *body, size_t len);

/* ---- this PoP's own health, as its health vector reports it ---- */

/* What is true of this PoP right now, sampled each time a health vector is made. Each source
 * (the data plane, the HTTP ingress) adds its own part to the counts; none overwrites. */
typedef struct meshnode_health {
    uint32_t streams;      /* streams open through this PoP: ingress and relayed */
    uint32_t tunnels;      /* site tunnels up (authenticated) */
    uint32_t listeners;    /* ingress listeners configured: TCP resource ports, HTTP */
    uint32_t listeners_up; /* of those, bound, and the last accept did not fail for lack of
                            * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) */
} meshnode_health_t;
typedef void (*meshnode_health_fn)(void *ctx, meshnode_health_t *h);
/* Adds a source of health (up to MESHNODE_HEALTH_SOURCES; 0 or -ENOSPC). */
#define MESHNODE_HEALTH_SOURCES 4
int meshnode_add_health_source(meshnode_t *m, meshnode_health_fn fn, void *ctx);

#endif
