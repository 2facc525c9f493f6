/* dnsadmin: the operator commands of DNS steering (zones and geo rules) and the publication of
 * this PoP's own DNS settings in its node record. They only read and write the replicated
 * records (node/records/zone.h, geo.h, registry.h); the name server (dnsserver.c) reads the
 * same records and rebuilds its view when they change.
 *
 * The daemon keeps a dnsadmin_t alive next to its control server and registers the commands
 * with dnsadmin_register_commands. (node.drain, which writes a node record, lives with the
 * other node commands in node/membership/meshadmin.c.) */
#ifndef POPMESH_NODE_DNS_DNSADMIN_H
#define POPMESH_NODE_DNS_DNSADMIN_H

#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "node/nodecfg.h"
#include "storage/store.h"

#include <stdint.h>

typedef struct dnsadmin {
    meshnode_t *mesh; /* borrowed: its store, and how a write spreads */
} dnsadmin_t;

/* zone.add, zone.list, zone.rm, geo.add, geo.list, geo.rm; ctx = dnsadmin_t. */
extern const control_command_t dnsadmin_commands[];

/* a must outlive ctl. 0 or -ENOSPC. */
int dnsadmin_register_commands(dnsadmin_t *a, control_t *ctl);

/* Brings this PoP's node record in line with its settings: public4/public6
 * (nodecfg_public_addrs), the location and dns_addr (dns_listen). Read-modify-write of the
 * record as stored, written (and spread) only when a field differs, so a restart with the same
 * settings writes nothing and fields others set (draining, tunnel_addr) are kept. Call once at
 * start, after the mesh is up. 0 (written or nothing to do), -ENOENT (no record of its own
 * yet: logged), or the store's -errno (logged). */
int dnsadmin_publish_self(store_t *st, meshnode_t *mesh, const nodecfg_t *cfg, uint64_t self_id);

#endif
