/* meshnode: a popd's life in the mesh. It ties together the transport (meshnet), the SWIM core
 * (gossip/swim), store anti-entropy (gossip/antientropy), the replicated registry of members
 * and tokens (registry.h) and the join handshake, and answers the mesh's control commands
 * (members, tokens, node removal).
 *
 * Message space on the mesh socket: every message is a msgpack array [1, type, ...];
 * type 1..31 is SWIM, 32..47 anti-entropy, 48..63 joining. Who sent a message is known from
 * the CURVE handshake (the ZAP user id), never from its content: "n:<node id>" for members,
 * "t:<token id>" for a holder of a token's join key, which may only send JOIN. */
#ifndef POPMESH_NODE_MESHNODE_H
#define POPMESH_NODE_MESHNODE_H

#include "node/control.h"
#include "node/identity.h"
#include "node/joinmsg.h"
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
    /* Called when this node learns it was removed from the mesh; the daemon then stops. */
    void (*on_removed)(void *ctx);
    void *ctx;
} meshnode_opts_t;

meshnode_t *meshnode_new(const meshnode_opts_t *o, char *err, size_t errlen);
void meshnode_destroy(meshnode_t **mp);

/* Registers the mesh commands (members, token.*, node.remove, mesh.status). */
int meshnode_register_commands(meshnode_t *m, control_t *ctl);

/* A local write (put or tombstone) committed: spread it. e's buffers are borrowed. */
void meshnode_published(meshnode_t *m, const store_entry_t *e);

/* Graceful leave: gossips LEFT and calls done() once it had time to spread (bounded). */
void meshnode_leave(meshnode_t *m, void (*done)(void *ctx), void *ctx);

/* Adds the mesh fields to a status answer: the map gets these n pairs. */
#define MESHNODE_STATUS_PAIRS 3
void meshnode_pack_status(meshnode_t *m, msgpack_packer *pk);

#endif
