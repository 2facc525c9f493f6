/* totpadmin: the operator commands of the second factor and of the identity keys.
 *
 *   user.totp.enable   {name, issuer?} -> {name, uri, recovery: [str x 10], session_epoch}
 *   user.totp.disable  {name}          -> {name}
 *
 * The daemon keeps a totpadmin_t alive next to its control server and registers the commands
 * with totpadmin_register_commands. It also publishes this PoP's identity JWT key
 * (totpadmin_publish_jwk). */
#ifndef POPMESH_NODE_AUTH_TOTPADMIN_H
#define POPMESH_NODE_AUTH_TOTPADMIN_H

#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "node/records/storeseal.h"

typedef struct totpadmin {
    meshnode_t *mesh;        /* borrowed: its store, and how a write spreads */
    const storeseal_t *seal; /* borrowed: seals the TOTP secret (storeseal.h) */
} totpadmin_t;

extern const control_command_t totpadmin_commands[];

/* a must outlive ctl. 0 or -ENOSPC. */
int totpadmin_register_commands(totpadmin_t *a, control_t *ctl);

/* Writes jwk/<node_id> with pub unless the store already holds that key for it. 0 or -errno
 * (logged). */
int totpadmin_publish_jwk(meshnode_t *mesh, uint64_t node_id, const uint8_t pub[32]);

#endif
