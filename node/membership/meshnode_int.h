/* meshnode_int: what meshadmin.c (the site and resource commands) reaches inside meshnode.c,
 * and what meshnode.c uses of meshadmin.c. Internal to node/: nothing else includes it.
 *
 * The split: meshnode.c owns the mesh (transport, SWIM, the registry snapshot, joining);
 * meshadmin.c holds operator commands that only read and write records, so they need the
 * store, the registry snapshot, the way to write a record that spreads it, and the two
 * registry operations that must stay in one place: minting a token and removing a node. */
#ifndef POPMESH_NODE_MEMBERSHIP_MESHNODE_INT_H
#define POPMESH_NODE_MEMBERSHIP_MESHNODE_INT_H

#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "node/records/registry.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

/* ---- meshnode.c -------------------------------------------------------------------------- */

/* The registry snapshot: every node/ record, removed ones included. Borrowed: any write or
 * merge of a node/ record replaces it, so copy what is needed before writing anything. */
const reg_node_t *meshnode_registry(const meshnode_t *m, size_t *n);
/* The node's store (borrowed). */
store_t *meshnode_store(const meshnode_t *m);
/* Writes val at key at a fresh local version and spreads it (push, piggyback, anti-entropy).
 * 0 or -errno; store_last_error() says why. */
int meshnode_put_record(meshnode_t *m, const char *key, const msgpack_sbuffer *val);
/* Mints a token of role ("pop" or "site"), bound to site when site is not NULL or "", valid
 * ttl ms, for uses joins (0 = unlimited), and stores its record. On success text (textlen >=
 * TOKEN_TEXT_MAX + 1) holds the token, which carries its secret: the caller wipes it
 * (sodium_memzero) once sent; *rec is the stored record. 0 or -errno with a reason in err. */
int meshnode_token_mint(meshnode_t *m, const char *role, const char *site, uint64_t ttl,
                        uint64_t uses, char *text, size_t textlen, reg_token_t *rec, char *err,
                        size_t errlen);
/* Marks node n removed everywhere, as node.remove does: the record is written with
 * removed = true (every PoP refuses its key from then on) and pushed straight to the node.
 * n may point into the registry snapshot. 0 or -errno; store_last_error() says why. */
int meshnode_remove_node(meshnode_t *m, const reg_node_t *n);

/* ---- meshadmin.c ------------------------------------------------------------------------- */

/* site.add, site.rm, site.list, resource.add, resource.list, resource.rm; ctx = meshnode_t. */
extern const control_command_t meshadmin_commands[];
/* Reads site/<name>: 0, -ENOENT (absent, deleted, or name invalid), -EBADMSG (unreadable,
 * logged) or another -errno from the store. */
int meshadmin_site_get(store_t *store, const char *name, reg_site_t *s);

#endif
