/* acme: certificates for the mesh's HTTP hosts from an ACME CA (RFC 8555), with no command
 * per certificate.
 *
 * Once `meshctl acme set` has stored acme/config, every PoP looks, every few seconds and on
 * every change of resources, zones or certificates, for HTTP resource hosts that need a
 * certificate: none yet, or past its renewal point (two thirds of its lifetime). Hosts inside
 * the mesh's zones qualify; without zones, every host does; a wildcard host needs a zone (it
 * can only be proven by DNS-01). One PoP works on each certificate at a time, under the lease
 * lease/acme/<cert id> (acmerec.h): see acme.c for the lease rules and why doing an order
 * twice is harmless.
 *
 * Commands: acme.set (directory, email, ca_pem?, eab_kid?, eab_hmac?) and acme.show. */
#ifndef POPMESH_NODE_ACME_ACME_H
#define POPMESH_NODE_ACME_ACME_H

#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "node/records/identity.h"
#include "node/records/storeseal.h"
#include "storage/store.h"

#include <ev.h>
#include <stdint.h>

typedef struct acme acme_t;

typedef struct acme_opts {
    struct ev_loop *loop;
    store_t *store;
    meshnode_t *mesh;         /* how a write spreads */
    const storeseal_t *seal;  /* borrowed: seals and opens acme/config's keys (storeseal.h) */
    const char *node_name;    /* borrowed for the acme_t's life */
    uint64_t node_id;
} acme_opts_t;

/* NULL with a message in err on failure. */
acme_t *acme_new(const acme_opts_t *o, char *err, size_t errlen);
void acme_destroy(acme_t **ap);
/* a must outlive ctl. 0 or -ENOSPC. */
int acme_register_commands(acme_t *a, control_t *ctl);

#endif
