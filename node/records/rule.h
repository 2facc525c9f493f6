/* rule: an access rule of one resource, replicated under rule/<resource>/<id: 16 hex>:
 *
 *   {resource: str, action: "allow"|"deny", cidr: str | path: str, priority: int,
 *    created_ms: uint}
 *
 * A rule lets a request through without authentication (allow) or answers 403 (deny), by the
 * client's network (cidr, cidr.h) or the request path (a glob). How rules are ordered and
 * matched is node/auth/rules.h; this is the record, and what makes one valid. Every PoP
 * evaluates rules alone from its replica, so a record from another node is checked field by
 * field with the rules rule.add applies (auth_rule_check): a rule that one PoP would read one
 * way and another PoP another way (both a cidr and a path, a CIDR with host bits) is refused
 * everywhere instead. Unknown fields are skipped, a field seen twice refused. */
#ifndef POPMESH_NODE_RECORDS_RULE_H
#define POPMESH_NODE_RECORDS_RULE_H

#include "node/nodecfg.h"
#include "node/records/authrec.h"
#include "node/records/cidr.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_GLOB_MAX       200     /* bytes of a path glob */
#define AUTH_PRIORITY_LIMIT 1000000 /* |priority| <= this */

enum auth_action { AUTH_ALLOW = 1, AUTH_DENY = 2 };

typedef struct auth_rule {
    char resource[NODECFG_NAME_MAX + 1];
    uint64_t id; /* from the key rule/<resource>/<id> */
    enum auth_action action;
    char cidr[AUTH_CIDR_MAX + 1]; /* "" for a path rule */
    char path[AUTH_GLOB_MAX + 1]; /* "" for a CIDR rule; fnmatch glob, '*' crosses '/' */
    int64_t priority;             /* lower first; ties by id */
    uint64_t created_ms;          /* Unix ms */
    auth_cidr_t net;              /* parsed cidr */
} auth_rule_t;

/* A glob for request paths: starts with '/' or '*', printable ASCII without spaces,
 * at most AUTH_GLOB_MAX bytes. 0 or -EINVAL with *why. */
int auth_glob_check(const char *glob, const char **why);

/* Checks every field (resource name, exactly one of cidr/path and its syntax, priority).
 * 0 or -EINVAL with *why; fills r->net. */
int auth_rule_check(auth_rule_t *r, const char **why);
/* "rule/<resource>/<16 hex>"; 0 or -EINVAL. out holds AUTH_KEY_MAX. */
int auth_rule_key(const char *resource, uint64_t id, char *out, size_t len);
void auth_rule_pack(msgpack_packer *pk, const auth_rule_t *r);
/* Decodes rule/<resource>/<id>: 0 or -EBADMSG with *why. The record must pass
 * auth_rule_check and name the resource of its key; r->id = id. */
int auth_rule_parse(const uint8_t *buf, size_t len, const char *resource, uint64_t id,
                    auth_rule_t *r, const char **why);

#endif
