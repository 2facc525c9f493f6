/* meshadmin: the operator commands for sites and TCP resources.
 *
 *   site.add      {name, ttl_ms?, replicas?} -> {name, token, token_id, expires_ms, uses}
 *   site.token    {name, ttl_ms?}            -> {name, token, token_id, expires_ms, uses}
 *   site.rm       {name, replica?}           -> {name, nodes_removed: [id], token_revoked}
 *   site.list     {}                         -> {sites: [{name, enrolled, replicas, ...}]}
 *   resource.add  {name, site?, targets, priorities?, weights?, tcp_port?, health?, sticky?,
 *                  replace?, transit_labels?, ingress_labels?, host?,
 *                  path_prefix?, auth?, allow_users?, allow_groups?, no_https_redirect?,
 *                  hsts?, tls?, hc_interval_ms?, hc_timeout_ms?, hc_rise?, hc_fall?,
 *                  hc_status?, hc_host?, access_log?, require_2fa?, proxy_protocol?,
 *                  insecure_skip_verify?, origin_ca? (targets may be https://HOST:PORT),
 *                  udp_port?, udp_idle?, udp_max_flows?} -> the record
 *   resource.set  {name, access_log?, require_2fa?, proxy_protocol?} -> the record (settings
 *                 changed in place)
 *   resource.list {}                         -> {resources: [record, ...]}
 *   resource.rm   {name}                     -> {name}
 *   node.drain    {name, undo?}              -> {name, id, draining, changed}
 *
 * BACKGROUND
 *
 * A site is two records: site/<name>, written here, which makes the name enrollable, and
 * node/<id> with role site, written by the seed that admits the site's JOIN (meshnode.c). The
 * site's token is bound to its name, so a token handed to one site's operator cannot enroll
 * another site. Removing a site marks both removed and never deletes them: a removed node
 * record is what makes every PoP refuse that key for good, and the name can be added again
 * (joins ignore removed node records when they look for a taken name).
 *
 * A site may have several connectors (replicas), each its own node with its own key: the
 * token of site.add has `replicas` uses (default 1), and site.token mints a one-use token for
 * one more, bound to the site and naming the site's own token (site_token), so it stops
 * working if the site is removed and its name added again. How replicas are named is in
 * meshjoin.c. site.rm evicts every replica, or with replica just that one (the site stays).
 *
 * Every check here runs against this node's view of the replicated store. Two operators
 * adding the same site or the same tcp_port on two nodes at the same moment can both succeed
 * locally; the registry converges by last-writer-wins, JOIN admits only the token named by the
 * site/ record that won, and resource.h says how a shared tcp_port is resolved.
 *
 * Draining a PoP sets draining in its node record: DNS answers stop pointing clients at it
 * (node/dns), while it keeps serving whoever still comes, so it can be taken down once resolver
 * caches expire. It is a record rather than a local switch so that every PoP's name server
 * agrees, and so that it holds across the drained PoP's restarts (its own start rewrites its
 * record from its settings, keeping fields it does not own, draining among them). */
#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/records/identity.h"
#include "node/membership/meshnode_int.h"
#include "node/records/resource.h"
#include "node/records/token.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SITE_TOKEN_TTL_DEFAULT (3600ull * 1000)            /* ms */
#define SITE_TOKEN_TTL_MAX     (365ull * 24 * 3600 * 1000) /* ms */
#define NAME_RULE              "1-63 of a-z, 0-9 and '-', not starting or ending with '-'"
#define SITE_REPLICAS_MAX      64 /* uses of one site token; meshjoin names at most 64 */

/* ---- arguments ---------------------------------------------------------------------------- */

/* 1 found, 0 absent, -EINVAL not a bool. */
static int arg_bool(const ctl_request_t *req, const char *name, bool *v)
{
    const uint8_t *val;
    size_t vl;
    int rc = ctl_arg(req, name, &val, &vl);
    if (rc <= 0)
        return rc;
    mpr_t r;
    mpr_init(&r, val, vl);
    return mpr_bool(&r, v) == 0 ? 1 : -EINVAL;
}

/* The "name" argument as a valid name, else a CTL_BAD_REQUEST answer (returned). */
static int arg_name(const ctl_request_t *req, msgpack_packer *pk, const char *what, char *name)
{
    char buf[256];
    int rc = ctl_arg_copy(req, "name", buf, sizeof(buf));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'name' (the %s's name)", what);
    if (rc < 0 || nodecfg_check_name(buf))
        return control_error(pk, CTL_BAD_REQUEST, "%s name '%s' is invalid (" NAME_RULE ")", what,
                             rc < 0 ? "?" : buf);
    memcpy(name, buf, strlen(buf) + 1); /* a valid name fits: at most NODECFG_NAME_MAX */
    return CTL_OK;
}

static void pack_id(msgpack_packer *pk, const char *key, uint64_t id)
{
    char hex[17];
    identity_id_hex(id, hex);
    mpw_kv_str(pk, key, hex);
}

/* ---- records ------------------------------------------------------------------------------ */

/* A record on its way to meshnode_put_record: pack it into packed_begin's packer, then
 * put_packed stores it under key and frees the buffer, whether or not the write succeeds. A
 * pair rather than one call taking a pack function: each reg_*_pack takes its own type. */
struct packed {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static msgpack_packer *packed_begin(struct packed *p)
{
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
    return &p->pk;
}

/* 0 or -errno; store_last_error() says why. */
static int put_packed(meshnode_t *m, const char *key, struct packed *p)
{
    int rc = meshnode_put_record(m, key, &p->sb);
    msgpack_sbuffer_destroy(&p->sb);
    return rc;
}

/* ---- sites -------------------------------------------------------------------------------- */

/* {name, token, token_id, expires_ms, uses}: what site.add and site.token answer. */
static void pack_token_answer(msgpack_packer *pk, const char *name, const char *text,
                              const reg_token_t *tok)
{
    msgpack_pack_map(pk, 5);
    mpw_kv_str(pk, "name", name);
    mpw_kv_str(pk, "token", text);
    pack_id(pk, "token_id", tok->id);
    mpw_kv_u64(pk, "expires_ms", tok->expires_ms);
    mpw_kv_u64(pk, "uses", tok->uses_max);
}

int meshadmin_site_get(store_t *store, const char *name, reg_site_t *s)
{
    char key[REG_SITE_KEY_MAX];
    store_entry_t e;
    if (reg_site_key(name, key, sizeof(key)))
        return -ENOENT; /* no valid record can be stored under an invalid name */
    int rc = store_get(store, key, strlen(key), &e);
    if (rc)
        return rc;
    const char *why = "";
    rc = reg_site_parse(e.value, e.vlen, name, s, &why);
    store_entry_free(&e);
    if (rc)
        log_warn("mesh: site record %s is unreadable: %s", key, why);
    return rc;
}

/* Whether r is a live connector (any replica) of site name. */
static bool serves_site(const reg_node_t *r, const char *name)
{
    return !r->removed && r->role == ROLE_SITE && !strcmp(reg_node_site(r), name);
}

/* The live node enrolled as site name (the one named name when it is live, else another
 * replica), or NULL. Borrowed from the registry snapshot. */
static const reg_node_t *site_node(const meshnode_t *m, const char *name)
{
    size_t n;
    const reg_node_t *reg = meshnode_registry(m, &n), *any = NULL;
    for (size_t i = 0; i < n; i++)
        if (serves_site(&reg[i], name)) {
            if (!strcmp(reg[i].name, name))
                return &reg[i];
            any = any ? any : &reg[i];
        }
    return any;
}

static int put_site(meshnode_t *m, const reg_site_t *s)
{
    char key[REG_SITE_KEY_MAX];
    if (reg_site_key(s->name, key, sizeof(key)))
        return -EINVAL;
    struct packed p;
    reg_site_pack(packed_begin(&p), s);
    return put_packed(m, key, &p);
}

static int cmd_site_add(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    store_t *store = meshnode_store(m);
    char name[NODECFG_NAME_MAX + 1];
    uint64_t ttl = SITE_TOKEN_TTL_DEFAULT, replicas = 1;
    int rc = arg_name(req, pk, "site", name);
    if (rc != CTL_OK)
        return rc;
    if (ctl_arg_uint(req, "ttl_ms", &ttl) < 0 || ttl == 0 || ttl > SITE_TOKEN_TTL_MAX)
        return control_error(pk, CTL_BAD_REQUEST, "ttl must be between 1 ms and 365 days");
    if (ctl_arg_uint(req, "replicas", &replicas) < 0 || replicas == 0 ||
        replicas > SITE_REPLICAS_MAX)
        return control_error(pk, CTL_BAD_REQUEST, "replicas must be between 1 and %d",
                             SITE_REPLICAS_MAX);
    reg_site_t site;
    rc = meshadmin_site_get(store, name, &site);
    if (rc == 0 && !site.removed)
        return control_error(pk, CTL_REFUSED,
                             "site '%s' already exists (added by %s); remove it first "
                             "(meshctl site rm %s) to enroll it again",
                             name, site.created_by[0] ? site.created_by : "?", name);
    if (rc != 0 && rc != -ENOENT && rc != -EBADMSG)
        return control_error(pk, CTL_FAILED, "cannot read site '%s': %s", name,
                             store_last_error(store));
    /* JOIN refuses a name held by a live node, whatever its role: say so now, not then. */
    size_t n;
    const reg_node_t *reg = meshnode_registry(m, &n);
    for (size_t i = 0; i < n; i++)
        if (!reg[i].removed && !strcmp(reg[i].name, name))
            return control_error(pk, CTL_REFUSED,
                                 "the name '%s' is taken by %s node %016llx "
                                 "(meshctl node remove %s frees it)",
                                 name, node_role_name(reg[i].role), (unsigned long long)reg[i].id,
                                 name);

    char text[TOKEN_TEXT_MAX + 1], err[300];
    reg_token_t tok;
    if (meshnode_token_mint(m, ROLE_SITE, name, 0, ttl, replicas, text, sizeof(text), &tok, err,
                            sizeof(err)))
        return control_error(pk, CTL_FAILED, "%s", err);
    /* The token first: the site record names it. Should this write fail, the token is left
     * unusable, since JOIN wants a live site record. */
    site = (reg_site_t){.created_ms = clock_wall_ms(), .token_id = tok.id};
    snprintf(site.name, sizeof(site.name), "%s", name);
    snprintf(site.created_by, sizeof(site.created_by), "%s", tok.created_by);
    if (put_site(m, &site)) {
        sodium_memzero(text, sizeof(text));
        return control_error(pk, CTL_FAILED, "cannot store site '%s': %s", name,
                             store_last_error(store));
    }
    pack_token_answer(pk, name, text, &tok);
    sodium_memzero(text, sizeof(text));
    log_info("mesh: site %s added (token %016llx, %llu use%s)", name, (unsigned long long)tok.id,
             (unsigned long long)replicas, replicas == 1 ? "" : "s");
    return CTL_OK;
}

/* One more connector for an existing site: a one-use token bound to the site that names the
 * site's own token, which is what JOIN checks (the site's token_id may never be reused). */
static int cmd_site_token(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    store_t *store = meshnode_store(m);
    char name[NODECFG_NAME_MAX + 1];
    uint64_t ttl = SITE_TOKEN_TTL_DEFAULT;
    int rc = arg_name(req, pk, "site", name);
    if (rc != CTL_OK)
        return rc;
    if (ctl_arg_uint(req, "ttl_ms", &ttl) < 0 || ttl == 0 || ttl > SITE_TOKEN_TTL_MAX)
        return control_error(pk, CTL_BAD_REQUEST, "ttl must be between 1 ms and 365 days");
    reg_site_t site;
    rc = meshadmin_site_get(store, name, &site);
    if (rc == -ENOENT || (rc == 0 && site.removed))
        return control_error(pk, CTL_NOT_FOUND, "no site '%s' (meshctl site add %s first)", name,
                             name);
    if (rc)
        return control_error(pk, CTL_FAILED, "site '%s' is unreadable here", name);
    char text[TOKEN_TEXT_MAX + 1], err[300];
    reg_token_t tok;
    /* Bound to the site and naming its token (site_token), in the one record the mint
     * writes: JOIN takes the site's own token or one naming it. */
    if (meshnode_token_mint(m, ROLE_SITE, name, site.token_id, ttl, 1, text, sizeof(text), &tok,
                            err, sizeof(err)))
        return control_error(pk, CTL_FAILED, "replica token of site '%s': %s", name, err);
    pack_token_answer(pk, name, text, &tok);
    sodium_memzero(text, sizeof(text));
    log_info("mesh: token %016llx for one more replica of site %s", (unsigned long long)tok.id,
             name);
    return CTL_OK;
}

struct count_ctx {
    uint64_t n;
};

static int count_one(const store_entry_t *e, void *ctx)
{
    ((struct count_ctx *)ctx)->n++;
    return 0;
}

/* Revokes token id if it is still unused and not revoked: a used one-use token is spent
 * already, and its state ("used-up") says more than "revoked" would. 1 revoked, 0 nothing to
 * do, -errno. */
static int revoke_unused(meshnode_t *m, uint64_t id)
{
    store_t *store = meshnode_store(m);
    char key[64], prefix[64];
    store_entry_t e;
    reg_token_t t;
    const char *why;
    reg_token_key(id, key, sizeof(key));
    if (store_get(store, key, strlen(key), &e) != 0)
        return 0;
    int rc = reg_token_parse(e.value, e.vlen, id, &t, &why);
    store_entry_free(&e);
    if (rc || t.revoked)
        return 0;
    snprintf(prefix, sizeof(prefix), REG_TOKENUSE_PREFIX "%016llx/", (unsigned long long)id);
    struct count_ctx cc = {0};
    store_list(store, prefix, strlen(prefix), count_one, &cc);
    if (cc.n > 0)
        return 0;
    t.revoked = true;
    struct packed p;
    reg_token_pack(packed_begin(&p), &t);
    rc = put_packed(m, key, &p);
    return rc ? rc : 1;
}

/* site.rm with replica: evicts that one connector of site name; the site and its other
 * replicas stay. */
static int site_rm_replica(meshnode_t *m, msgpack_packer *pk, const char *name, const char *replica)
{
    const reg_node_t *found = meshnode_reg_find_name(m, replica);
    if (!found || !serves_site(found, name))
        return control_error(pk, CTL_NOT_FOUND,
                             "site '%s' has no replica '%s' (meshctl site list --json names them)",
                             name, replica);
    reg_node_t rec = *found; /* the write below replaces the registry snapshot */
    if (meshnode_remove_node(m, &rec))
        return control_error(pk, CTL_FAILED, "cannot record the removal of replica '%s': %s",
                             replica, store_last_error(meshnode_store(m)));
    char hex[17];
    identity_id_hex(rec.id, hex);
    msgpack_pack_map(pk, 3);
    mpw_kv_str(pk, "name", name);
    mpw_str(pk, "nodes_removed");
    msgpack_pack_array(pk, 1);
    mpw_str(pk, hex);
    mpw_kv_bool(pk, "token_revoked", false);
    log_warn("mesh: replica %s (%s) of site %s removed", replica, hex, name);
    return CTL_OK;
}

static int cmd_site_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    store_t *store = meshnode_store(m);
    char name[NODECFG_NAME_MAX + 1];
    int rc = arg_name(req, pk, "site", name);
    if (rc != CTL_OK)
        return rc;
    reg_site_t site;
    rc = meshadmin_site_get(store, name, &site);
    if (rc == -ENOENT || (rc == 0 && site.removed))
        return control_error(pk, CTL_NOT_FOUND, "no site '%s' (meshctl site list shows them)",
                             name);
    if (rc)
        return control_error(pk, CTL_FAILED, "site '%s' is unreadable here", name);
    char replica[256];
    int has_replica = ctl_arg_copy(req, "replica", replica, sizeof(replica));
    if (has_replica < 0 || (has_replica > 0 && nodecfg_check_name(replica)))
        return control_error(pk, CTL_BAD_REQUEST, "replica name is invalid (" NAME_RULE ")");
    if (has_replica > 0)
        return site_rm_replica(m, pk, name, replica);
    /* The site record first: from now on no JOIN can enroll the name. */
    site.removed = true;
    if (put_site(m, &site))
        return control_error(pk, CTL_FAILED, "cannot record the removal of site '%s': %s", name,
                             store_last_error(store));
    /* Copies: each removal replaces the registry snapshot. Every replica of the site, and
     * any stale enrollment that survived somewhere. */
    size_t n, nrm = 0;
    const reg_node_t *reg = meshnode_registry(m, &n);
    reg_node_t *victims = xcalloc(n ? n : 1, sizeof(*victims));
    for (size_t i = 0; i < n; i++)
        if (serves_site(&reg[i], name))
            victims[nrm++] = reg[i];
    for (size_t i = 0; i < nrm; i++) {
        if (meshnode_remove_node(m, &victims[i])) {
            unsigned long long id = (unsigned long long)victims[i].id;
            free(victims);
            return control_error(pk, CTL_FAILED,
                                 "site '%s' is marked removed, but its node %016llx could not "
                                 "be: %s (run meshctl site rm %s again)",
                                 name, id, store_last_error(store), name);
        }
    }
    int revoked = revoke_unused(m, site.token_id);
    msgpack_pack_map(pk, 3);
    mpw_kv_str(pk, "name", name);
    mpw_str(pk, "nodes_removed");
    msgpack_pack_array(pk, nrm);
    for (size_t i = 0; i < nrm; i++) {
        char hex[17];
        identity_id_hex(victims[i].id, hex);
        mpw_str(pk, hex);
    }
    mpw_kv_bool(pk, "token_revoked", revoked > 0);
    free(victims);
    log_warn("mesh: site %s removed (%zu node(s) evicted%s)", name, nrm,
             revoked > 0 ? ", its unused token revoked" : "");
    return CTL_OK;
}

struct site_vec {
    reg_site_t *v;
    size_t n;
};

static int collect_site(const store_entry_t *e, void *ctx)
{
    struct site_vec *sv = ctx;
    size_t pl = strlen(REG_SITE_PREFIX), nl = e->klen - pl;
    char name[NODECFG_NAME_MAX + 1];
    const char *why = "the key's name is too long";
    reg_site_t s;
    if (nl <= NODECFG_NAME_MAX) {
        memcpy(name, e->key + pl, nl);
        name[nl] = '\0';
        if (reg_site_parse(e->value, e->vlen, name, &s, &why) == 0) {
            sv->v = xrealloc(sv->v, (sv->n + 1) * sizeof(*sv->v));
            sv->v[sv->n++] = s;
            return 0;
        }
    }
    log_warn("mesh: skipping unreadable site record %.*s: %s", (int)e->klen, e->key, why);
    return 0;
}

static int cmd_site_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    store_t *store = meshnode_store(m);
    struct site_vec sv = {0};
    /* Collect first: the store cannot be asked anything from inside its own iteration. */
    if (store_list(store, REG_SITE_PREFIX, strlen(REG_SITE_PREFIX), collect_site, &sv)) {
        free(sv.v);
        return control_error(pk, CTL_FAILED, "cannot list sites: %s", store_last_error(store));
    }
    size_t live = 0;
    for (size_t i = 0; i < sv.n; i++)
        live += !sv.v[i].removed;
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "sites");
    msgpack_pack_array(pk, live);
    for (size_t i = 0; i < sv.n; i++) {
        const reg_site_t *s = &sv.v[i];
        if (s->removed)
            continue;
        const reg_node_t *node = site_node(m, s->name);
        msgpack_pack_map(pk, 6);
        mpw_kv_str(pk, "name", s->name);
        mpw_str(pk, "enrolled");
        if (node) {
            char hex[17];
            identity_id_hex(node->id, hex);
            mpw_str(pk, hex);
        } else {
            msgpack_pack_nil(pk);
        }
        mpw_kv_u64(pk, "created_ms", s->created_ms);
        mpw_kv_str(pk, "created_by", s->created_by);
        pack_id(pk, "token_id", s->token_id);
        /* every live connector: [{name, id}] */
        size_t nreg, nrep = 0;
        const reg_node_t *reg = meshnode_registry(m, &nreg);
        for (size_t k = 0; k < nreg; k++)
            nrep += serves_site(&reg[k], s->name);
        mpw_str(pk, "replicas");
        msgpack_pack_array(pk, nrep);
        for (size_t k = 0; k < nreg; k++) {
            if (!serves_site(&reg[k], s->name))
                continue;
            msgpack_pack_map(pk, 2);
            mpw_kv_str(pk, "name", reg[k].name);
            pack_id(pk, "id", reg[k].id);
        }
    }
    free(sv.v);
    return CTL_OK;
}

/* ---- resources ---------------------------------------------------------------------------- */

/* An optional list of n numbers (priorities, weights) into out[i]; 0 where absent. CTL_OK or a
 * CTL_BAD_REQUEST answer; resource_check judges the ranges and names the target. */
static int arg_target_nums(const ctl_request_t *req, msgpack_packer *pk, const char *what,
                           uint32_t n, unsigned max, uint16_t *out)
{
    const uint8_t *val;
    size_t vl;
    uint32_t cnt;
    mpr_t mr;
    memset(out, 0, n * sizeof(*out));
    if (ctl_arg(req, what, &val, &vl) != 1)
        return CTL_OK;
    mpr_init(&mr, val, vl);
    if (mpr_array(&mr, &cnt) || cnt != n)
        return control_error(pk, CTL_BAD_REQUEST,
                             "%s must be a list with one number per target (%u), 0 for the "
                             "default",
                             what, n);
    for (uint32_t i = 0; i < cnt; i++) {
        uint64_t v;
        if (mpr_uint(&mr, &v) || v > max)
            return control_error(pk, CTL_BAD_REQUEST, "%s: entry %u is not a number from 1 to %u",
                                 what, i + 1, max);
        out[i] = (uint16_t)v;
    }
    return CTL_OK;
}

/* targets: [str] into r, each "HOST:PORT" (in the site argument's site) or
 * "SITE/HOST:PORT"; priorities and weights: optional [uint] parallel to it. r->site is the
 * site argument, or the first target's site without one. CTL_OK or a CTL_BAD_REQUEST
 * answer. */
static int arg_targets(const ctl_request_t *req, msgpack_packer *pk, resource_t *r)
{
    const uint8_t *val;
    size_t vl;
    uint32_t n;
    mpr_t mr;
    if (ctl_arg(req, "targets", &val, &vl) != 1)
        return control_error(pk, CTL_BAD_REQUEST,
                             "missing argument 'targets' (a list of HOST:PORT at the site, or "
                             "SITE/HOST:PORT)");
    mpr_init(&mr, val, vl);
    if (mpr_array(&mr, &n) || n == 0 || n > RESOURCE_TARGETS_MAX)
        return control_error(pk, CTL_BAD_REQUEST,
                             "targets must be a list of 1 to %d HOST:PORT strings",
                             RESOURCE_TARGETS_MAX);
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(&mr, &s, &sl))
            return control_error(pk, CTL_BAD_REQUEST, "target %u is not a string", i + 1);
        /* A scheme first, for every target or none: https:// has the site speak TLS to the
         * targets (origin_tls), http:// is what a target without one means. */
        const char *sep = sl > 3 ? memmem(s, sl, "://", 3) : NULL;
        int tls = -1;
        if (sep) {
            size_t kl = (size_t)(sep - s);
            if (kl == 5 && !memcmp(s, "https", 5))
                tls = 1;
            else if (kl == 4 && !memcmp(s, "http", 4))
                tls = 0;
            else
                return control_error(pk, CTL_BAD_REQUEST,
                                     "target %u: scheme '%.*s' is not http or https (write "
                                     "https://HOST:PORT for a TLS origin, or HOST:PORT)",
                                     i + 1, (int)(kl > 16 ? 16 : kl), s);
            sl -= (uint32_t)(kl + 3);
            s = sep + 3;
        }
        if (i > 0 && (tls == 1) != (r->origin_tls != 0))
            return control_error(pk, CTL_BAD_REQUEST,
                                 "target %u: every target of a resource is https:// or none is",
                                 i + 1);
        if (tls == 1)
            r->origin_tls = RESOURCE_ORIGIN_TLS;
        /* A site name has no '/', and neither has HOST:PORT: the first one splits them. */
        const char *slash = memchr(s, '/', sl);
        if (slash) {
            size_t nl = (size_t)(slash - s);
            if (nl == 0 || nl > NODECFG_NAME_MAX || memchr(s, '\0', nl))
                return control_error(pk, CTL_BAD_REQUEST,
                                     "target %u: '%.*s' is not a site name before the '/' (" NAME_RULE
                                     ")",
                                     i + 1, (int)(nl > 64 ? 64 : nl), s);
            memcpy(r->tsite[i], s, nl);
            r->tsite[i][nl] = '\0';
            sl -= (uint32_t)nl + 1;
            s = slash + 1;
        } else if (!r->site[0]) {
            return control_error(pk, CTL_BAD_REQUEST,
                                 "target %u (%.*s) names no site: give the site argument or "
                                 "write it SITE/HOST:PORT",
                                 i + 1, (int)(sl > 80 ? 80 : sl), s);
        }
        if (sl > NODECFG_ADDR_MAX || memchr(s, '\0', sl))
            return control_error(pk, CTL_BAD_REQUEST,
                                 "target %u is not HOST:PORT (longer than %d bytes or with a NUL)",
                                 i + 1, NODECFG_ADDR_MAX);
        memcpy(r->targets[i], s, sl);
        r->targets[i][sl] = '\0';
    }
    r->ntargets = n;
    if (!r->site[0]) /* every target names its site: the first one's is the resource's */
        snprintf(r->site, sizeof(r->site), "%s", r->tsite[0]);
    for (uint32_t i = 0; i < n; i++) /* "" is the resource's site: one way to say it */
        if (!strcmp(r->tsite[i], r->site))
            r->tsite[i][0] = '\0';
    uint16_t prio[RESOURCE_TARGETS_MAX];
    int rc = arg_target_nums(req, pk, "priorities", n, 65535, prio);
    if (rc == CTL_OK)
        rc = arg_target_nums(req, pk, "weights", n, 65535, r->tweight);
    if (rc != CTL_OK)
        return rc;
    for (uint32_t i = 0; i < n; i++) {
        if (prio[i] > RESOURCE_PRIORITY_MAX)
            return control_error(pk, CTL_BAD_REQUEST,
                                 "target %u: priority %u is not from 1 to %u (1 is tried first)",
                                 i + 1, prio[i], RESOURCE_PRIORITY_MAX);
        r->tprio[i] = (uint8_t)prio[i];
    }
    return CTL_OK;
}

/* allow_users / allow_groups: [str] into v, *n. CTL_OK (also when absent) or a
 * CTL_BAD_REQUEST answer; resource_check judges the names themselves. */
static int arg_names(const ctl_request_t *req, msgpack_packer *pk, const char *what,
                     char (*v)[NODECFG_NAME_MAX + 1], unsigned *n, unsigned max)
{
    const uint8_t *val;
    size_t vl;
    uint32_t cnt;
    mpr_t mr;
    if (ctl_arg(req, what, &val, &vl) != 1)
        return CTL_OK;
    mpr_init(&mr, val, vl);
    if (mpr_array(&mr, &cnt) || cnt > max)
        return control_error(pk, CTL_BAD_REQUEST, "%s must be a list of at most %u names", what,
                             max);
    for (uint32_t i = 0; i < cnt; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(&mr, &s, &sl) || sl > NODECFG_NAME_MAX || memchr(s, '\0', sl))
            return control_error(pk, CTL_BAD_REQUEST, "%s: entry %u is not a name (" NAME_RULE ")",
                                 what, i + 1);
        memcpy(v[i], s, sl);
        v[i][sl] = '\0';
    }
    *n = cnt;
    return CTL_OK;
}

/* The HTTP arguments into r: host lowercased, path_prefix "/" by default with a
 * host. CTL_OK or a CTL_BAD_REQUEST answer. */
static int arg_http(const ctl_request_t *req, msgpack_packer *pk, resource_t *r)
{
    char auth[16] = "none";
    int hrc = ctl_arg_copy(req, "host", r->host, sizeof(r->host));
    if (hrc < 0)
        return control_error(pk, CTL_BAD_REQUEST, "host must be a DNS name of at most %d bytes",
                             RESOURCE_HOST_MAX);
    for (char *p = r->host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    int prc = ctl_arg_copy(req, "path_prefix", r->path_prefix, sizeof(r->path_prefix));
    if (prc < 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "path_prefix must be a path of at most %d bytes starting with '/'",
                             RESOURCE_PREFIX_MAX);
    if (prc == 0 && r->host[0])
        snprintf(r->path_prefix, sizeof(r->path_prefix), "/");
    if (ctl_arg_copy(req, "auth", auth, sizeof(auth)) < 0 ||
        resource_auth_parse(auth, strlen(auth), &r->auth))
        return control_error(pk, CTL_BAD_REQUEST, "auth must be 'none' or 'login'");
    uint64_t hsts = 0;
    if (arg_bool(req, "no_https_redirect", &r->no_https_redirect) < 0 ||
        ctl_arg_uint(req, "hsts", &hsts) < 0 || hsts > RESOURCE_HSTS_MAX)
        return control_error(pk, CTL_BAD_REQUEST,
                             "no_https_redirect must be true or false; hsts seconds from 0 to "
                             "%d",
                             RESOURCE_HSTS_MAX);
    r->hsts_s = (uint32_t)hsts;
    if (arg_bool(req, "require_2fa", &r->require_2fa) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "require_2fa must be true or false");
    int rc =
        arg_names(req, pk, "allow_users", r->allow_users, &r->nallow_users, RESOURCE_ALLOW_MAX);
    if (rc == CTL_OK)
        rc = arg_names(req, pk, "allow_groups", r->allow_groups, &r->nallow_groups,
                       RESOURCE_ALLOW_MAX);
    return rc;
}

/* The health-check settings into r (0 / "" when absent; resource_check judges the ranges and
 * names the field). CTL_OK or a CTL_BAD_REQUEST answer. */
static int arg_hc(const ctl_request_t *req, msgpack_packer *pk, resource_t *r)
{
    static const char *const names[] = {"hc_interval_ms", "hc_timeout_ms", "hc_rise", "hc_fall"};
    uint32_t *dst[] = {&r->hc_interval_ms, &r->hc_timeout_ms, &r->hc_rise, &r->hc_fall};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        uint64_t v = 0;
        int rc = ctl_arg_uint(req, names[i], &v);
        if (rc < 0 || (rc > 0 && (v == 0 || v > UINT32_MAX)))
            return control_error(pk, CTL_BAD_REQUEST,
                                 "%s must be a positive number (leave it out for the default)",
                                 names[i]);
        *dst[i] = (uint32_t)v;
    }
    char status[RESOURCE_HC_STATUS_STR], why_buf[300];
    const char *why;
    int src = ctl_arg_copy(req, "hc_status", status, sizeof(status));
    if (src < 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "hc_status must be a list of HTTP status codes, classes (3xx) or "
                             "ranges (500-503) of at most %d bytes",
                             RESOURCE_HC_STATUS_STR - 1);
    if (src > 0 &&
        resource_hc_status_parse(status, strlen(status), r, why_buf, sizeof(why_buf), &why))
        return control_error(pk, CTL_BAD_REQUEST, "%s", why);
    if (ctl_arg_copy(req, "hc_host", r->hc_host, sizeof(r->hc_host)) < 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "hc_host must be a host name with an optional :port, of at most %d "
                             "bytes",
                             RESOURCE_HC_HOST_MAX);
    for (char *p = r->hc_host; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return CTL_OK;
}

/* access_log: "on", "off" or "sample:N" into r (on when absent). CTL_OK, or a
 * CTL_BAD_REQUEST answer. */
static int arg_access_log(const ctl_request_t *req, msgpack_packer *pk, resource_t *r)
{
    char al[RESOURCE_ACCESS_LOG_STR + 1] = "on";
    if (ctl_arg_copy(req, "access_log", al, sizeof(al)) < 0 ||
        resource_access_log_parse(al, strlen(al), &r->access_log))
        return control_error(pk, CTL_BAD_REQUEST,
                             "access_log must be on, off or sample:N (one in N requests and "
                             "connections logged, N from 1 to %u)",
                             RESOURCE_ACCESS_LOG_MAX);
    return CTL_OK;
}

/* proxy_protocol: "off", "v1" or "v2" into r (off when absent). CTL_OK, or a CTL_BAD_REQUEST
 * answer; resource_check says which resources may have it. */
static int arg_proxy_protocol(const ctl_request_t *req, msgpack_packer *pk, resource_t *r)
{
    char pp[8] = "off";
    if (ctl_arg_copy(req, "proxy_protocol", pp, sizeof(pp)) < 0 ||
        resource_proxy_protocol_parse(pp, strlen(pp), &r->proxy_protocol))
        return control_error(pk, CTL_BAD_REQUEST, "proxy_protocol must be v1, v2 or off");
    return CTL_OK;
}

/* The request rules given in req (each list replaces that list; clear_rules first empties
 * them all) into r. *any: whether one was given. CTL_OK or a CTL_BAD_REQUEST answer;
 * resource_check judges names and values. */
static int arg_rules(const ctl_request_t *req, msgpack_packer *pk, resource_t *r, bool *any)
{
    static const char *const keys[] = {"req_set", "req_remove", "resp_set", "resp_remove"};
    resource_hdr_t *sets[] = {r->req_set, NULL, r->resp_set, NULL};
    char (*rms[])[RESOURCE_HDR_NAME_MAX + 1] = {NULL, r->req_remove, NULL, r->resp_remove};
    unsigned *ns[] = {&r->nreq_set, &r->nreq_remove, &r->nresp_set, &r->nresp_remove};
    bool clear = false;
    *any = false;
    if (arg_bool(req, "clear_rules", &clear) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "clear_rules must be true or false");
    if (clear) {
        *any = true;
        r->nreq_set = r->nreq_remove = r->nresp_set = r->nresp_remove = 0;
        r->host_rewrite[0] = r->strip_prefix[0] = '\0';
    }
    for (int k = 0; k < 4; k++) {
        const uint8_t *val;
        size_t vl;
        uint32_t cnt;
        mpr_t mr;
        if (ctl_arg(req, keys[k], &val, &vl) != 1)
            continue;
        *any = true;
        mpr_init(&mr, val, vl);
        if (mpr_array(&mr, &cnt) || cnt > RESOURCE_RULES_MAX)
            return control_error(pk, CTL_BAD_REQUEST, "%s must be a list of at most %d entries",
                                 keys[k], RESOURCE_RULES_MAX);
        for (uint32_t i = 0; i < cnt; i++) {
            const char *s, *why = "";
            uint32_t sl;
            if (mpr_str(&mr, &s, &sl))
                return control_error(pk, CTL_BAD_REQUEST, "%s: entry %u is not a string",
                                     keys[k], i + 1);
            if (sets[k] && resource_hdr_parse(s, sl, &sets[k][i], &why))
                return control_error(pk, CTL_BAD_REQUEST, "%s: %s", keys[k], why);
            if (rms[k]) {
                if (sl == 0 || sl > RESOURCE_HDR_NAME_MAX || memchr(s, '\0', sl))
                    return control_error(pk, CTL_BAD_REQUEST,
                                         "%s: entry %u is not a header name of 1 to %d bytes",
                                         keys[k], i + 1, RESOURCE_HDR_NAME_MAX);
                memcpy(rms[k][i], s, sl);
                rms[k][i][sl] = '\0';
            }
        }
        *ns[k] = cnt;
    }
    int hrc = ctl_arg_copy(req, "host_rewrite", r->host_rewrite, sizeof(r->host_rewrite));
    int prc = ctl_arg_copy(req, "strip_prefix", r->strip_prefix, sizeof(r->strip_prefix));
    if (hrc < 0 || prc < 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "host_rewrite must be a host name (at most %d bytes), strip_prefix a "
                             "path (at most %d bytes)",
                             RESOURCE_HOST_MAX + 6, RESOURCE_PREFIX_MAX);
    *any |= hrc > 0 || prc > 0;
    for (char *p = r->host_rewrite; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return CTL_OK;
}

/* Changes settings of an existing resource without restating it: for now its access log.
 * The record is read, changed and written whole (last writer wins, as with add --replace). */
static int cmd_resource_set(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    store_t *store = meshnode_store(m);
    resource_t *r = xcalloc(1, sizeof(*r));
    char name[NODECFG_NAME_MAX + 1], key[RESOURCE_KEY_MAX], why_buf[400];
    const char *why = "";
    int rc = arg_name(req, pk, "resource", name);
    if (rc != CTL_OK)
        goto out;
    const uint8_t *v;
    size_t vl;
    bool set_al = ctl_arg(req, "access_log", &v, &vl) == 1;
    bool set_2fa = ctl_arg(req, "require_2fa", &v, &vl) == 1;
    bool set_pp = ctl_arg(req, "proxy_protocol", &v, &vl) == 1;
    static const char *const rule_keys[] = {"req_set",      "req_remove",   "resp_set",
                                            "resp_remove",  "host_rewrite", "strip_prefix",
                                            "clear_rules"};
    bool set_rules = false;
    for (size_t i = 0; i < sizeof(rule_keys) / sizeof(rule_keys[0]); i++)
        set_rules |= ctl_arg(req, rule_keys[i], &v, &vl) == 1;
    if (!set_al && !set_2fa && !set_pp && !set_rules) {
        rc = control_error(pk, CTL_BAD_REQUEST,
                           "nothing to set (access_log: on|off|sample:N, require_2fa: bool, "
                           "proxy_protocol: v1|v2|off, req_set, req_remove, resp_set, "
                           "resp_remove, host_rewrite, strip_prefix, clear_rules)");
        goto out;
    }
    int grc = resource_get(store, name, r);
    if (grc) {
        rc = grc == -ENOENT
                 ? control_error(pk, CTL_NOT_FOUND, "no resource '%s' (meshctl resource list)",
                                 name)
                 : control_error(pk, CTL_FAILED, "cannot read resource '%s': %s", name,
                                 store_last_error(store));
        goto out;
    }
    if (set_al && (rc = arg_access_log(req, pk, r)) != CTL_OK)
        goto out;
    if (set_pp && (rc = arg_proxy_protocol(req, pk, r)) != CTL_OK)
        goto out;
    bool any_rule;
    if (set_rules && (rc = arg_rules(req, pk, r, &any_rule)) != CTL_OK)
        goto out;
    if (set_2fa && arg_bool(req, "require_2fa", &r->require_2fa) < 0) {
        rc = control_error(pk, CTL_BAD_REQUEST, "require_2fa must be true or false");
        goto out;
    }
    if (resource_check(r, why_buf, sizeof(why_buf), &why)) {
        rc = control_error(pk, CTL_BAD_REQUEST, "%s", why);
        goto out;
    }
    resource_key(r->name, key, sizeof(key));
    struct packed p;
    resource_pack(packed_begin(&p), r);
    if (put_packed(m, key, &p)) {
        rc = control_error(pk, CTL_FAILED, "cannot store resource '%s': %s", r->name,
                           store_last_error(store));
        goto out;
    }
    resource_pack(pk, r);
    char al[RESOURCE_ACCESS_LOG_STR];
    resource_access_log_str(r->access_log, al, sizeof(al));
    log_info("mesh: resource %s: access log %s%s, PROXY protocol %s", r->name, al,
             set_2fa ? (r->require_2fa ? ", second factor required" : ", second factor optional")
                     : "",
             resource_proxy_protocol_str(r->proxy_protocol));
    rc = CTL_OK;
out:
    free(r);
    return rc;
}

static int cmd_resource_add(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    store_t *store = meshnode_store(m);
    resource_t *r = xcalloc(1, sizeof(*r)), old;
    char health[RESOURCE_HEALTH_MAX + 1] = "tcp", why_buf[400];
    const char *why = "";
    uint64_t port = 0;
    bool replace = false;
    char *ca_pem = NULL; /* origin_ca's PEM, stored as originca/<id> */
    int rc = arg_name(req, pk, "resource", r->name);
    if (rc != CTL_OK)
        goto out;
    rc = ctl_arg_copy(req, "site", r->site, sizeof(r->site));
    if (rc < 0) {
        rc = control_error(pk, CTL_BAD_REQUEST, "site must be a site name (" NAME_RULE ")");
        goto out;
    }
    if ((rc = arg_targets(req, pk, r)) != CTL_OK)
        goto out;
    if ((rc = arg_http(req, pk, r)) != CTL_OK)
        goto out;
    /* UDP: the port and its bounds (resource_check refuses them next to a tcp_port or host). */
    const struct {
        const char *arg;
        uint64_t lo, hi;
    } udp_args[] = {{"udp_port", 1, 65535},
                    {"udp_idle", 1, RESOURCE_UDP_IDLE_MAX},
                    {"udp_max_flows", 1, RESOURCE_UDP_FLOWS_MAX}};
    uint64_t udp[3] = {0, 0, 0};
    for (int i = 0; i < 3; i++) {
        rc = ctl_arg_uint(req, udp_args[i].arg, &udp[i]);
        if (rc < 0 || (rc > 0 && (udp[i] < udp_args[i].lo || udp[i] > udp_args[i].hi))) {
            rc = control_error(pk, CTL_BAD_REQUEST, "%s must be from %llu to %llu",
                               udp_args[i].arg, (unsigned long long)udp_args[i].lo,
                               (unsigned long long)udp_args[i].hi);
            goto out;
        }
    }
    r->udp_port = (uint16_t)udp[0];
    r->udp_idle_s = (uint32_t)udp[1];
    r->udp_max_flows = (uint32_t)udp[2];
    rc = ctl_arg_uint(req, "tcp_port", &port);
    if ((rc == 0 && !r->host[0] && !r->udp_port) || rc < 0 ||
        (rc > 0 && (port == 0 || port > 65535))) {
        rc = control_error(pk, CTL_BAD_REQUEST,
                           rc == 0 ? "missing argument 'tcp_port' or 'host' (the port PoPs listen "
                                     "on, the HTTP host they serve, or both)"
                                   : "tcp_port must be from 1 to 65535");
        goto out;
    }
    r->tcp_port = (uint16_t)port;
    if (ctl_arg_copy(req, "health", health, sizeof(health)) < 0 ||
        resource_health_parse(health, strlen(health), r, &why)) {
        rc = control_error(pk, CTL_BAD_REQUEST, "%s",
                           *why ? why : "health must be 'tcp' or 'http:/PATH'");
        goto out;
    }
    if ((rc = arg_hc(req, pk, r)) != CTL_OK)
        goto out;
    if ((rc = arg_access_log(req, pk, r)) != CTL_OK)
        goto out;
    if ((rc = arg_proxy_protocol(req, pk, r)) != CTL_OK)
        goto out;
    bool any_rule;
    if ((rc = arg_rules(req, pk, r, &any_rule)) != CTL_OK)
        goto out;
    bool insecure = false;
    if (arg_bool(req, "insecure_skip_verify", &insecure) < 0) {
        rc = control_error(pk, CTL_BAD_REQUEST, "insecure_skip_verify must be true or false");
        goto out;
    }
    if (insecure && !r->origin_tls) {
        rc = control_error(pk, CTL_BAD_REQUEST,
                           "insecure_skip_verify is for https:// targets (it skips their "
                           "certificate checks)");
        goto out;
    }
    if (insecure)
        r->origin_tls = RESOURCE_ORIGIN_TLS_INSECURE;
    const uint8_t *cav;
    size_t cal;
    if (ctl_arg(req, "origin_ca", &cav, &cal) == 1) {
        mpr_t cr;
        const char *cs;
        uint32_t cl;
        mpr_init(&cr, cav, cal);
        if (mpr_str(&cr, &cs, &cl) || resource_ca_check(cs, cl, &why)) {
            rc = control_error(pk, CTL_BAD_REQUEST, "origin_ca: %s",
                               *why ? why : "not a string");
            goto out;
        }
        ca_pem = xmalloc((size_t)cl + 1);
        memcpy(ca_pem, cs, cl);
        ca_pem[cl] = '\0';
        resource_ca_id(ca_pem, cl, r->origin_ca);
        r->has_origin_ca = true; /* resource_check: only with checked https:// targets */
    }
    /* resource_check judges the labels themselves (names, distinct). */
    if ((rc = arg_names(req, pk, "transit_labels", r->transit_labels, &r->ntransit_labels,
                        RESOURCE_LABELS_MAX)) !=
            CTL_OK ||
        (rc = arg_names(req, pk, "ingress_labels", r->ingress_labels, &r->ningress_labels,
                        RESOURCE_LABELS_MAX)) !=
            CTL_OK)
        goto out;
    if (arg_bool(req, "sticky", &r->sticky) < 0 || arg_bool(req, "replace", &replace) < 0 ||
        arg_bool(req, "tls", &r->tls) < 0) {
        rc = control_error(pk, CTL_BAD_REQUEST, "sticky, replace and tls must be true or false");
        goto out;
    }
    if (resource_check(r, why_buf, sizeof(why_buf), &why)) {
        rc = control_error(pk, CTL_BAD_REQUEST, "%s", why);
        goto out;
    }

    for (unsigned i = 0; i < r->ntargets; i++) { /* every site a target is in */
        const char *sn = resource_target_site(r, i);
        bool seen = false;
        for (unsigned k = 0; k < i && !seen; k++)
            seen = !strcmp(sn, resource_target_site(r, k));
        reg_site_t site;
        int src = seen ? 0 : meshadmin_site_get(store, sn, &site);
        if (!seen && (src != 0 || site.removed)) {
            rc = control_error(pk, CTL_NOT_FOUND,
                               src == 0 ? "site '%s' was removed (meshctl site add %s adds it again)"
                                        : "there is no site '%s' (meshctl site add %s adds it)",
                               sn, sn);
            goto out;
        }
    }
    int orc = resource_get(store, r->name, &old);
    if (orc == 0 && !replace) {
        rc = control_error(pk, CTL_REFUSED,
                           "resource '%s' already exists (site %s, tcp port %u); replace it "
                           "with meshctl resource add --replace, or pick another name",
                           r->name, old.site, old.tcp_port);
        goto out;
    }
    if (orc != 0 && orc != -ENOENT && orc != -EBADMSG) {
        rc = control_error(pk, CTL_FAILED, "cannot read resource '%s': %s", r->name,
                           store_last_error(store));
        goto out;
    }
    resource_t *all;
    size_t n;
    if (resource_list(store, &all, &n)) {
        rc = control_error(pk, CTL_FAILED, "cannot list resources: %s", store_last_error(store));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(all[i].name, r->name) == 0)
            continue; /* the resource being replaced */
        if (r->host[0] && strcmp(all[i].host, r->host) == 0 &&
            strcmp(all[i].path_prefix, r->path_prefix) == 0) {
            rc = control_error(pk, CTL_REFUSED,
                               "host %s with path prefix %s is already served by resource '%s' "
                               "(site %s); pick another host or path prefix",
                               r->host, r->path_prefix, all[i].name, all[i].site);
            free(all);
            goto out;
        }
        if (r->udp_port && all[i].udp_port == r->udp_port) {
            rc = control_error(pk, CTL_REFUSED,
                               "udp port %u is already used by resource '%s' (site %s)",
                               r->udp_port, all[i].name, all[i].site);
            free(all);
            goto out;
        }
        if (r->tcp_port && all[i].tcp_port == r->tcp_port) {
            rc = control_error(pk, CTL_REFUSED,
                               "tcp port %u is already used by resource '%s' (site %s)",
                               r->tcp_port, all[i].name, all[i].site);
            free(all);
            goto out;
        }
    }
    /* No loop into the mesh, no clash with its ports (node/records/resource.h). */
    int mrc = resource_check_mesh(store, r, all, n, why_buf, sizeof(why_buf), &why);
    free(all);
    if (mrc) {
        rc = mrc == -EINVAL ? control_error(pk, CTL_REFUSED, "%s", why)
                            : control_error(pk, CTL_FAILED, "cannot read the registry: %s",
                                            store_last_error(store));
        goto out;
    }

    r->created_ms = orc == 0 ? old.created_ms : clock_wall_ms();
    if (ca_pem) { /* the CA before the resource naming it, so no PoP reads one without it */
        char ckey[RESOURCE_CA_KEY_MAX];
        resource_ca_key(r->origin_ca, ckey, sizeof(ckey));
        struct packed cp;
        resource_ca_pack(packed_begin(&cp), ca_pem, strlen(ca_pem));
        if (put_packed(m, ckey, &cp)) {
            rc = control_error(pk, CTL_FAILED, "cannot store the CA of resource '%s': %s",
                               r->name, store_last_error(store));
            goto out;
        }
    }
    char key[RESOURCE_KEY_MAX];
    resource_key(r->name, key, sizeof(key));
    struct packed p;
    resource_pack(packed_begin(&p), r);
    if (put_packed(m, key, &p)) {
        rc = control_error(pk, CTL_FAILED, "cannot store resource '%s': %s", r->name,
                           store_last_error(store));
        goto out;
    }
    resource_pack(pk, r);
    log_info("mesh: resource %s %s: tcp port %u, udp port %u, http %s%s -> site %s (%u target(s))",
             r->name, orc == 0 ? "replaced" : "added", r->tcp_port, r->udp_port,
             r->host[0] ? r->host : "-", r->path_prefix, r->site, r->ntargets);
    rc = CTL_OK;
out:
    free(ca_pem);
    free(r);
    return rc;
}

static int cmd_resource_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    store_t *store = meshnode_store(m);
    resource_t *all;
    size_t n;
    if (resource_list(store, &all, &n))
        return control_error(pk, CTL_FAILED, "cannot list resources: %s", store_last_error(store));
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "resources");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        resource_pack(pk, &all[i]);
    free(all);
    return CTL_OK;
}

static int cmd_resource_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    store_t *store = meshnode_store(m);
    char name[NODECFG_NAME_MAX + 1], key[RESOURCE_KEY_MAX];
    int rc = arg_name(req, pk, "resource", name);
    if (rc != CTL_OK)
        return rc;
    resource_key(name, key, sizeof(key));
    rc = meshnode_del_record(m, key, strlen(key), NULL);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "no resource '%s' (meshctl resource list)", name);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot remove resource '%s': %s", name,
                             store_last_error(store));
    msgpack_pack_map(pk, 1);
    mpw_kv_str(pk, "name", name);
    log_info("mesh: resource %s removed", name);
    return CTL_OK;
}

/* ---- draining ------------------------------------------------------------------------------ */

static int cmd_node_drain(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    char name[NODECFG_NAME_MAX + 1];
    bool undo = false;
    int rc = arg_name(req, pk, "PoP", name);
    if (rc != CTL_OK)
        return rc;
    if (arg_bool(req, "undo", &undo) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "undo must be true or false");
    const reg_node_t *found = meshnode_reg_find_name(m, name);
    if (!found || found->removed)
        return control_error(pk, CTL_NOT_FOUND, "no PoP named '%s' (meshctl members shows them)",
                             name);
    if (found->role != ROLE_POP)
        return control_error(pk, CTL_REFUSED,
                             "'%s' is a site; only PoPs are drained (DNS answers name PoPs)", name);
    reg_node_t rec = *found; /* the write below replaces the registry snapshot */
    bool changed = rec.draining == undo;
    if (changed) {
        rec.draining = !undo;
        char key[64];
        reg_node_key(rec.id, key, sizeof(key));
        struct packed p;
        reg_node_pack(packed_begin(&p), &rec);
        if (put_packed(m, key, &p))
            return control_error(pk, CTL_FAILED, "cannot record the drain of %s: %s", name,
                                 store_last_error(meshnode_store(m)));
        log_info("mesh: PoP %s %s", name,
                 rec.draining ? "draining: DNS answers leave it out" : "no longer draining");
    }
    msgpack_pack_map(pk, 4);
    mpw_kv_str(pk, "name", rec.name);
    pack_id(pk, "id", rec.id);
    mpw_kv_bool(pk, "draining", rec.draining);
    mpw_kv_bool(pk, "changed", changed);
    return CTL_OK;
}

const control_command_t meshadmin_commands[] = {
    {"site.add", cmd_site_add,
     "name: str [ttl_ms: uint] [replicas: uint] -> {name, token, token_id, expires_ms, uses}: a "
     "site and its token, one use per connector replica (default 1)"},
    {"site.token", cmd_site_token,
     "name: str [ttl_ms: uint] -> {name, token, token_id, expires_ms, uses}: a one-use token for "
     "one more connector replica of an existing site"},
    {"site.rm", cmd_site_rm,
     "name: str [replica: str] -> {name, nodes_removed: [id], token_revoked}: evicts the site "
     "everywhere, or only that connector replica of it"},
    {"site.list", cmd_site_list,
     "-> {sites: [{name, enrolled: id | nil, created_ms, ..., replicas: [{name, id}]}]}"},
    {"resource.add", cmd_resource_add,
     "name: str, site: str, targets: [str], tcp_port: uint and/or host: str "
     "[path_prefix: str] [auth: none|login] [allow_users: [str]] [allow_groups: [str]] "
     "[no_https_redirect: bool] [hsts: uint (s)] [health: tcp|http:/PATH] [sticky: bool] "
     "[tls: bool (TLS on tcp_port)] [access_log: on|off|sample:N] [require_2fa: bool] "
     "[proxy_protocol: v1|v2|off] [insecure_skip_verify: bool] [origin_ca: str (PEM)] "
     "[udp_port: uint (instead of tcp_port and host)] [udp_idle: uint (s)] "
     "[udp_max_flows: uint] [replace: bool] -> the resource"},
    {"resource.set", cmd_resource_set,
     "name: str [access_log: on|off|sample:N] [require_2fa: bool] [proxy_protocol: "
     "v1|v2|off] [req_set: [\"Name: value\"]] [req_remove: [name]] [resp_set: [\"Name: "
     "value\"]] [resp_remove: [name]] [host_rewrite: str] [strip_prefix: str] [clear_rules: "
     "bool] -> the resource: changes its access log sampling, whether users need a second "
     "factor, the PROXY header its targets get, or its request rules (each list given "
     "replaces that list)"},
    {"resource.list", cmd_resource_list,
     "-> {resources: [{name, site, targets, tcp_port, health, sticky, created_ms, host?, "
     "path_prefix?, auth?, allow_users?, allow_groups?, tls?}]}"},
    {"resource.rm", cmd_resource_rm, "name: str -> {name}"},
    {"node.drain", cmd_node_drain,
     "name: str [undo: bool] -> {name, id, draining, changed}: DNS answers leave the PoP out "
     "(undo: back in)"},
    {NULL, NULL, NULL},
};
