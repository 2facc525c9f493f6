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
 * Sites report their target checks over the tunnel; the PoP a site calls primary writes them
 * to the replicated store (sitehealth/<site>, only on change), so every PoP can show them. */
#ifndef POPMESH_NODE_DATAPLANE_H
#define POPMESH_NODE_DATAPLANE_H

#include "node/control.h"
#include "node/identity.h"
#include "node/meshnode.h"
#include "node/nodecfg.h"
#include "storage/store.h"

#include <ev.h>

#define DATAPLANE_SYNC_S        1.0  /* s between resource/registry syncs */
#define DATAPLANE_OPEN_TIMEOUT  3000 /* ms an OPEN may go unanswered before a retry */
#define DATAPLANE_ATTEMPTS      3    /* tries per ingress connection: primary, backup, primary */
#define SITEHEALTH_PREFIX       "sitehealth/"
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
} dataplane_opts_t;

/* Binds the tunnel endpoint; NULL with a reason in err. */
dataplane_t *dataplane_new(const dataplane_opts_t *o, char *err, size_t errlen);
void dataplane_destroy(dataplane_t **dp);
/* Registers "sites" and "dataplane" (counters) on the control socket. */
int dataplane_register_commands(dataplane_t *dp, control_t *ctl);
/* Adds the dataplane fields to status: this many pairs. */
#define DATAPLANE_STATUS_PAIRS 1
void dataplane_pack_status(dataplane_t *dp, msgpack_packer *pk);

#endif
