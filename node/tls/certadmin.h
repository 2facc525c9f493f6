/* certadmin: the operator commands on certificates (cert.import, cert.list, cert.rm) and
 * tls.status. They only read and write the replicated cert/ records (certstore.h); the TLS
 * listener (tlsctx.c) reads the same records and reloads when they change.
 *
 * A private key arrives in clear over the control socket (mode 0600, local only) and leaves
 * cert.import sealed; no answer, record or log line carries it in clear.
 *
 * The daemon keeps a certadmin_t alive next to its control server and registers the commands
 * with certadmin_register_commands. */
#ifndef POPMESH_NODE_TLS_CERTADMIN_H
#define POPMESH_NODE_TLS_CERTADMIN_H

#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "node/tls/certstore.h"
#include "node/tls/ticketkeys.h"

typedef struct certadmin {
    meshnode_t *mesh;                 /* borrowed: its store, and how a write spreads */
    const certstore_seal_key_t *seal; /* borrowed */
    const char *node_name;            /* borrowed: obtained_by of an import */
    ticketkeys_t *tickets;            /* borrowed; NULL: tls.status says so */
} certadmin_t;

/* cert.import, cert.list, cert.rm, tls.status; ctx = certadmin_t. */
extern const control_command_t certadmin_commands[];

/* a must outlive ctl. 0 or -ENOSPC. */
int certadmin_register_commands(certadmin_t *a, control_t *ctl);

#endif
