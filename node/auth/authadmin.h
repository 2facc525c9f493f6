/* authadmin: the operator commands of edge authentication: users, sessions, share
 * links, API keys and access rules. They only read and write the replicated records of auth.h;
 * the HTTP proxy reads the same records.
 *
 * The daemon keeps an authadmin_t alive next to its control server (on its own stack frame,
 * which outlives the loop) and registers the commands with authadmin_register_commands. */
#ifndef POPMESH_NODE_AUTH_AUTHADMIN_H
#define POPMESH_NODE_AUTH_AUTHADMIN_H

#include "node/auth/session.h"
#include "node/ctl/control.h"
#include "node/records/identity.h"
#include "node/membership/meshnode.h"

typedef struct authadmin {
    meshnode_t *mesh;         /* borrowed: its store, and how a write spreads */
    const meshkey_t *meshkey; /* borrowed: signs share links when keys is NULL */
    const auth_keys_t *keys;  /* borrowed: signs share links (the key hierarchy); may be NULL */
    const char *http_listen;  /* this PoP's HTTP ingress "host:port" ("" = none): the port
                               * share URLs name */
} authadmin_t;

/* user.add, user.list, user.rm, user.passwd, session.revoke, share.create, apikey.create,
 * apikey.list, apikey.revoke, rule.add, rule.list, rule.rm; ctx = authadmin_t. */
extern const control_command_t authadmin_commands[];

/* a must outlive ctl. 0 or -ENOSPC. */
int authadmin_register_commands(authadmin_t *a, control_t *ctl);

#endif
