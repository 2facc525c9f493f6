/* rules: which requests skip authentication (allow) or are refused outright (deny).
 *
 * The rules of a resource (rule/<resource>/<id>, node/records/rule.h) are tried in the order
 * (priority ascending, then id) and the first match decides; no match means "authenticate".
 * A CIDR rule matches the client's address, a path rule the request path with fnmatch without
 * FNM_PATHNAME ('*' crosses '/'). The order is total, so every PoP decides the same from the
 * same records. */
#ifndef POPMESH_NODE_AUTH_RULES_H
#define POPMESH_NODE_AUTH_RULES_H

#include "node/records/cidr.h"
#include "node/records/rule.h"
#include "storage/store.h"

#include <stddef.h>
#include <stdint.h>

enum auth_decision {
    AUTH_DECISION_NONE = 0, /* no rule matched: authenticate */
    AUTH_DECISION_ALLOW,    /* an allow rule matched: no authentication */
    AUTH_DECISION_DENY,     /* a deny rule matched: 403 */
};

/* The rules of resource ("" or NULL: of every resource), sorted by resource, priority, id.
 * Unreadable records are skipped with a log line. Caller owns *out (free()). 0 or -errno. */
int auth_rules_load(store_t *store, const char *resource, auth_rule_t **out, size_t *n);
/* The first rule of rules (sorted as auth_rules_load sorts) matching client and path decides;
 * *rule_id (may be NULL) gets its id. path is the request path as routed: decoded and
 * normalized, without the query. A NULL or unknown client matches no CIDR rule. */
enum auth_decision auth_rules_match(const auth_rule_t *rules, size_t n, const auth_addr_t *client,
                                    const char *path, uint64_t *rule_id);
/* auth_rules_load + auth_rules_match for one request. 0 or -errno (store). */
int auth_rules_eval(store_t *store, const char *resource, const auth_addr_t *client,
                    const char *path, enum auth_decision *decision, uint64_t *rule_id);

#endif
