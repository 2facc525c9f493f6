/* rule: see rule.h. Decoding checks shapes (common/mpfields); auth_rule_check then applies
 * the same checks rule.add applies, so a replicated rule is never held to less. */
#include "node/records/rule.h"

#include "common/mp.h"
#include "common/mpfields.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int auth_rule_key(const char *resource, uint64_t id, char *out, size_t len)
{
    if (nodecfg_check_name(resource) != 0)
        return -EINVAL;
    int n = snprintf(out, len, AUTH_RULE_PREFIX "%s/%016llx", resource, (unsigned long long)id);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

int auth_glob_check(const char *glob, const char **why)
{
    size_t len = strnlen(glob, AUTH_GLOB_MAX + 1);
    if (len == 0 || len > AUTH_GLOB_MAX) {
        *why = "a path glob is 1 to 200 characters";
        return -EINVAL;
    }
    if (glob[0] != '/' && glob[0] != '*') {
        *why = "a path glob starts with '/' or '*' (e.g. /admin/*)";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)glob[i];
        if (ch <= ' ' || ch >= 0x7f) {
            *why = "a path glob is printable ASCII without spaces";
            return -EINVAL;
        }
    }
    return 0;
}

int auth_rule_check(auth_rule_t *r, const char **why)
{
    if (nodecfg_check_name(r->resource) != 0) {
        *why = "resource is not a valid name";
        return -EINVAL;
    }
    if (r->action != AUTH_ALLOW && r->action != AUTH_DENY) {
        *why = "action must be allow or deny";
        return -EINVAL;
    }
    if (!!r->cidr[0] == !!r->path[0]) {
        *why = "a rule has exactly one of cidr and path";
        return -EINVAL;
    }
    if (r->cidr[0] && auth_cidr_parse(r->cidr, &r->net, why))
        return -EINVAL;
    if (r->path[0] && auth_glob_check(r->path, why))
        return -EINVAL;
    if (r->priority < -AUTH_PRIORITY_LIMIT || r->priority > AUTH_PRIORITY_LIMIT) {
        *why = "priority must be from -1000000 to 1000000";
        return -EINVAL;
    }
    return 0;
}

void auth_rule_pack(msgpack_packer *pk, const auth_rule_t *r)
{
    msgpack_pack_map(pk, 5);
    mpw_kv_str(pk, "resource", r->resource);
    mpw_kv_str(pk, "action", r->action == AUTH_ALLOW ? "allow" : "deny");
    if (r->cidr[0])
        mpw_kv_str(pk, "cidr", r->cidr);
    else
        mpw_kv_str(pk, "path", r->path);
    mpw_str(pk, "priority");
    msgpack_pack_int64(pk, r->priority);
    mpw_kv_u64(pk, "created_ms", r->created_ms);
}

static int read_priority(mpr_t *r, void *dst, const char **why)
{
    if (mpr_int(r, dst)) {
        *why = "priority is not an integer";
        return -EBADMSG;
    }
    return 0;
}

int auth_rule_parse(const uint8_t *buf, size_t len, const char *resource, uint64_t id,
                    auth_rule_t *r, const char **why)
{
    char action[8] = "";
    memset(r, 0, sizeof(*r));
    mpf_t fs[] = {
        {"resource", MPF_STR, r->resource, sizeof(r->resource), true, false, NULL},
        {"action", MPF_STR, action, sizeof(action), true, false, NULL},
        {"cidr", MPF_STR, r->cidr, sizeof(r->cidr), false, false, NULL},
        {"path", MPF_STR, r->path, sizeof(r->path), false, false, NULL},
        {"priority", MPF_CUSTOM, &r->priority, 0, false, false, read_priority},
        {"created_ms", MPF_U64, &r->created_ms, 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    if (fs[2].seen == fs[3].seen) {
        *why = "a rule has exactly one of cidr and path";
        return -EBADMSG;
    }
    r->action = !strcmp(action, "allow") ? AUTH_ALLOW : !strcmp(action, "deny") ? AUTH_DENY : 0;
    if (auth_rule_check(r, why))
        return -EBADMSG;
    if (strcmp(r->resource, resource) != 0) {
        *why = "the record's resource is not the resource in its key";
        return -EBADMSG;
    }
    r->id = id;
    return 0;
}
