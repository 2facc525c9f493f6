/* trust: the key hierarchy at run time (docs/security.md, "The key hierarchy").
 *
 * Holds the roots this PoP pinned (DIR/root.pub) and, on the one PoP that has it, the root
 * key (DIR/root.key), and answers the one question the rest of popd asks: "is this node's
 * key certified for this capability, now?" (trust_node_key). With the root key it also
 * certifies: every PoP admitted with a signed token gets a certificate carrying that token's
 * capabilities, written to nodecert/<id> and replicated, as soon as its node record reaches
 * the root holder; a removed PoP's certificate record is deleted there.
 *
 * Upgrading a mesh made before roots: a PoP with no pinned root pins the first trust/root
 * endorsed by the mesh key; if there is none, the join arbiter's rule (the oldest PoP not
 * removed, then the smallest id) picks the one PoP that creates the root, certifies every
 * PoP of the registry at that moment with every capability (they all held the mesh key,
 * which gave them all of it), and writes trust/root. Two PoPs creating roots at once (each
 * thinking itself the oldest during a partition) end with the record of one (last writer
 * wins): every PoP pins whichever it saw first, so the operator may have to re-pin the
 * others; the log says so (trust_apply). */
#ifndef POPMESH_NODE_TRUST_TRUST_H
#define POPMESH_NODE_TRUST_TRUST_H

#include "node/auth/session.h"
#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "node/records/identity.h"
#include "node/records/nodecert.h"
#include "node/records/registry.h"
#include "storage/store.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct trust trust_t;

typedef struct trust_opts {
    struct ev_loop *loop;
    store_t *store;           /* borrowed */
    meshnode_t *mesh;         /* borrowed: writes spread through it */
    const char *dir;          /* the data directory */
    const identity_t *id;     /* borrowed: this PoP's keys */
    const meshkey_t *meshkey; /* borrowed */
} trust_opts_t;

/* Loads root.pub and root.key when present, starts watching trust/root, node/ and
 * tokenuse/. NULL with errno and err on failure. */
trust_t *trust_new(const trust_opts_t *o, char *err, size_t errlen);
void trust_destroy(trust_t **tp);
/* The keys sessions and share links are made and checked with: owned by t, updated in place
 * when a root is pinned. */
const auth_keys_t *trust_auth_keys(trust_t *t);
/* key.* commands. */
int trust_register_commands(trust_t *t, control_t *ctl);
/* Is token (a join's) signed by a PoP whose certificate holds invite? 0, or -EACCES with
 * why. Always 0 while this PoP has no root (a mesh before roots). */
int trust_token_ok(trust_t *t, const reg_token_t *token, uint64_t now_ms, const char **why);
/* 0 when this PoP's own certificate holds need (or no root is pinned yet); else -EPERM with a
 * message for the operator in err. */
int trust_self_may(trust_t *t, uint32_t need, char *err, size_t errlen);

/* Loop-free: the Ed25519 key of node id when its certificate (nodecert/<id>) chains to roots,
 * is valid at now_ms and holds need, and its registry record exists, is not removed and
 * carries that same key. 0, or -EACCES with why. */
int trust_node_key(store_t *store, const trustroots_t *roots, uint64_t id, uint32_t need,
                   uint64_t now_ms, uint8_t pk[32], const char **why);

/* Signed configuration (docs/security.md): the capability a record's origin needs to write
 * key (CAP_ADMIN for the mesh's policy: users, rules, API keys, resources, sites, identity
 * providers, zones, geo, alerts, TOTP; CAP_VERIFY for node/<id>, whose rules are finer:
 * trust.c, node_record_check), 0 for any other key. */
uint32_t trust_record_needs(const char *key, size_t klen);
/* Loop-free: may the remote entry e be merged? 0 when its key needs nothing, or when it is
 * signed by its origin (store_sig_message) and that origin's certificate holds what the key
 * needs at now_ms (or issue-sessions, for a user/<idp:subject> record without a password that
 * does not raise the admin flag; node/ records: see trust.c); else -EACCES with why. */
int trust_record_check(store_t *store, const trustroots_t *roots, const store_entry_t *e,
                       uint64_t now_ms, const char **why);

/* The records popd init writes for a new mesh: trust/root (endorsed by the mesh key, no
 * legacy window) and the first node's certificate with every capability. Each entry's key and
 * value are malloc'd (caller frees both). */
int trust_init_records(const rootkey_t *root, const meshkey_t *mk, const identity_t *id,
                       uint64_t now_ms, store_entry_t out[2]);

#endif
