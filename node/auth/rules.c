/* rules: loading and matching access rules (see rules.h).
 *
 * Threat model: the rules are the operator's, replicated; a client controls only its path and,
 * within limits, its address. So a rule must match what the operator wrote and nothing else:
 * records that do not decode are skipped (with a log line) rather than guessed at, the path
 * matched is the routed one (decoded, normalized, no query: a rule is only as good as the
 * normalization in front of it), and a client whose address is unknown matches no CIDR rule.
 * Every PoP sorts the same records the same way, so a request gets one answer mesh-wide. */
#include "node/auth/rules.h"

#include "common/log.h"
#include "common/logesc.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rule_vec {
    auth_rule_t *v;
    size_t n;
};

/* rule/<resource>/<16 hex>: the key names the resource and the id. */
static int collect_rule(const store_entry_t *e, void *ctx)
{
    struct rule_vec *rv = ctx;
    size_t pl = strlen(AUTH_RULE_PREFIX);
    const char *why = "the key is not rule/<resource>/<16 hex>";
    const char *rest = e->key + pl;
    size_t rl = e->klen - pl;
    const char *slash = memchr(rest, '/', rl);
    char resource[NODECFG_NAME_MAX + 1];
    uint64_t id;
    if (slash && (size_t)(slash - rest) <= NODECFG_NAME_MAX &&
        authrec_id_parse(slash + 1, rl - (size_t)(slash - rest) - 1, &id) == 0) {
        memcpy(resource, rest, (size_t)(slash - rest));
        resource[slash - rest] = '\0';
        rv->v = xrealloc(rv->v, (rv->n + 1) * sizeof(*rv->v));
        if (auth_rule_parse(e->value, e->vlen, resource, id, &rv->v[rv->n], &why) == 0) {
            rv->n++;
            return 0;
        }
    }
    char ek[LOG_ESC_MAX];
    log_warn("auth: skipping unreadable record %s: %s", log_esc(ek, sizeof(ek), e->key, e->klen),
             why);
    return 0;
}

static int rule_order(const void *pa, const void *pb)
{
    const auth_rule_t *a = pa, *b = pb;
    int c = strcmp(a->resource, b->resource);
    if (c)
        return c;
    if (a->priority != b->priority)
        return a->priority < b->priority ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

int auth_rules_load(store_t *store, const char *resource, auth_rule_t **out, size_t *n)
{
    char prefix[AUTH_KEY_MAX];
    struct rule_vec rv = {0};
    *out = NULL;
    *n = 0;
    if (resource && *resource) {
        if (nodecfg_check_name(resource) != 0)
            return 0; /* no rules can exist for an invalid name */
        snprintf(prefix, sizeof(prefix), AUTH_RULE_PREFIX "%s/", resource);
    } else {
        snprintf(prefix, sizeof(prefix), AUTH_RULE_PREFIX);
    }
    int rc = store_list(store, prefix, strlen(prefix), collect_rule, &rv);
    if (rc) {
        free(rv.v);
        return rc;
    }
    if (rv.n > 1)
        qsort(rv.v, rv.n, sizeof(*rv.v), rule_order);
    *out = rv.v;
    *n = rv.n;
    return 0;
}

enum auth_decision auth_rules_match(const auth_rule_t *rules, size_t n, const auth_addr_t *client,
                                    const char *path, uint64_t *rule_id)
{
    for (size_t i = 0; i < n; i++) {
        const auth_rule_t *r = &rules[i];
        bool hit = r->cidr[0] ? auth_cidr_contains(&r->net, client)
                              : path && fnmatch(r->path, path, 0) == 0;
        if (!hit)
            continue;
        if (rule_id)
            *rule_id = r->id;
        return r->action == AUTH_ALLOW ? AUTH_DECISION_ALLOW : AUTH_DECISION_DENY;
    }
    if (rule_id)
        *rule_id = 0;
    return AUTH_DECISION_NONE;
}

int auth_rules_eval(store_t *store, const char *resource, const auth_addr_t *client,
                    const char *path, enum auth_decision *decision, uint64_t *rule_id)
{
    auth_rule_t *rules;
    size_t n;
    *decision = AUTH_DECISION_NONE;
    if (rule_id)
        *rule_id = 0;
    if (!resource || !*resource)
        return -EINVAL;
    int rc = auth_rules_load(store, resource, &rules, &n);
    if (rc)
        return rc;
    *decision = auth_rules_match(rules, n, client, path, rule_id);
    free(rules);
    return 0;
}
