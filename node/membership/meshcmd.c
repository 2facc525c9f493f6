/* meshcmd: the control commands of the mesh (members, routes, tokens, node removal) and the
 * mesh part of status. They only read the node's state and write records through
 * meshnode_put_record; the commands on sites and resources are in meshadmin.c. A command that
 * writes the store goes through the clock guard (meshclock.c) first. */
#include "node/membership/meshnode_int.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/records/geo.h"
#include "node/records/token.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmd_routes(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshroute_pack(((meshnode_t *)ctx)->routes, pk);
    return CTL_OK;
}

struct members_ctx {
    meshnode_t *m;
    msgpack_packer *pk;
    size_t n;
    unsigned by_state[4];
};

static void count_member(const swim_member_info_t *mi, void *ctx)
{
    struct members_ctx *c = ctx;
    c->n++;
    if (mi->state <= SWIM_LEFT)
        c->by_state[mi->state]++;
}

static void pack_member(const swim_member_info_t *mi, void *ctx)
{
    struct members_ctx *c = ctx;
    const reg_node_t *r = meshnode_reg_find(c->m, mi->id);
    char name[NODECFG_NAME_MAX + 1] = "", addr[NODECFG_ADDR_MAX + 1] = "";
    uint8_t pk[32];
    if (r) {
        snprintf(name, sizeof(name), "%s", r->name);
        snprintf(addr, sizeof(addr), "%s", r->addr);
    } else {
        meshnode_parse_meta(mi->meta, mi->meta_len, mi->id, name, sizeof(name), addr, sizeof(addr),
                            pk);
    }
    char id[17];
    identity_id_hex(mi->id, id);
    msgpack_packer *pk_ = c->pk;
    const struct health *h = meshhealth_of(c->m, mi->id);
    msgpack_pack_map(pk_, 19);
    /* How this node's messages reach it: "direct" (our connection to it), "reverse" (back on
     * its connection to us: it cannot be dialled from here, one way only), "" (self, or
     * nothing sent yet); whether its record says it takes no inbound connections, and whether,
     * without that, it was learned not to (meshnet_one_way: the data plane waits for its
     * tunnels then). */
    enum meshnet_path path = mi->id == c->m->o.id->node_id ? MESHNET_PATH_UNKNOWN
                                                            : meshnet_path(c->m->net, mi->id);
    mpw_kv_str(pk_, "link", path == MESHNET_PATH_DIRECT  ? "direct"
                            : path == MESHNET_PATH_BACK ? "reverse"
                                                        : "");
    mpw_kv_bool(pk_, "no_inbound", r && r->no_inbound);
    mpw_kv_bool(pk_, "one_way_learned",
                !(r && r->no_inbound) && mi->id != c->m->o.id->node_id &&
                    meshnet_one_way(c->m->net, mi->id));
    mpw_str(pk_, "clock_offset_ms"); /* its clock minus ours; nil: not measured (or self) */
    if (mi->clock_known)
        msgpack_pack_int32(pk_, mi->clock_offset_ms);
    else
        msgpack_pack_nil(pk_);
    mpw_str(pk_, "clock_err_ms");
    msgpack_pack_uint32(pk_, mi->clock_known ? mi->clock_err_ms : 0);
    mpw_str(pk_, "health");
    if (h) {
        msgpack_pack_map(pk_, 9);
        mpw_str(pk_, "cpu_pct");
        msgpack_pack_double(pk_, h->cpu_permille / 10.0);
        mpw_str(pk_, "rss_kb");
        msgpack_pack_uint32(pk_, h->rss_kb);
        mpw_str(pk_, "streams");
        msgpack_pack_uint32(pk_, h->streams);
        mpw_kv_bool(pk_, "ingress_up", h->ingress_up);
        mpw_str(pk_, "load_pct"); /* meshhealth.c, "LOAD" */
        msgpack_pack_double(pk_, h->load_permille / 10.0);
        /* nil: an older node that does not send them */
        const char *const names[] = {"tunnels", "listeners", "listeners_up"};
        const uint32_t vals[] = {h->tunnels, h->listeners, h->listeners_up};
        for (int k = 0; k < 3; k++) {
            mpw_str(pk_, names[k]);
            if (h->detailed)
                msgpack_pack_uint32(pk_, vals[k]);
            else
                msgpack_pack_nil(pk_);
        }
        mpw_kv_u64(pk_, "age_ms", (uint64_t)(1000 * (ev_now(c->m->o.loop) - h->received)));
    } else {
        msgpack_pack_nil(pk_);
    }
    mpw_kv_str(pk_, "name", name);
    mpw_kv_str(pk_, "id", id);
    mpw_kv_str(pk_, "region", r ? r->region : "");
    mpw_kv_str(pk_, "addr", addr);
    mpw_kv_str(pk_, "state", swim_state_name(mi->state));
    mpw_kv_u64(pk_, "incarnation", mi->incarnation);
    mpw_str(pk_, "rtt_ms");
    msgpack_pack_uint32(pk_, mi->rtt_ms);
    mpw_str(pk_, "self");
    if (mi->id == c->m->o.id->node_id)
        msgpack_pack_true(pk_);
    else
        msgpack_pack_false(pk_);
    /* DNS steering: what its node record says ("" / nil: not set, or no record yet). */
    mpw_kv_bool(pk_, "draining", r && r->draining);
    mpw_kv_str(pk_, "public4", r ? r->public4 : "");
    mpw_kv_str(pk_, "public6", r ? r->public6 : "");
    mpw_str(pk_, "location");
    if (r && r->has_loc) {
        char loc[GEO_LOCATION_MAX];
        geo_format_location(r->lat, r->lon, loc, sizeof(loc));
        mpw_str(pk_, loc);
    } else {
        msgpack_pack_nil(pk_);
    }
    mpw_kv_str(pk_, "dns_addr", r ? r->dns_addr : "");
}

static int cmd_members(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    struct members_ctx c = {.m = m, .pk = pk};
    swim_foreach(m->swim, count_member, &c);
    msgpack_pack_array(pk, c.n);
    swim_foreach(m->swim, pack_member, &c);
    return CTL_OK;
}

void meshnode_pack_status(meshnode_t *m, msgpack_packer *pk)
{
    struct members_ctx c = {.m = m};
    swim_foreach(m->swim, count_member, &c);
    mpw_kv_str(pk, "mesh_id", m->mesh_id);
    mpw_str(pk, "members");
    msgpack_pack_map(pk, 4);
    for (int s = SWIM_ALIVE; s <= SWIM_LEFT; s++) {
        mpw_str(pk, swim_state_name((enum swim_state)s));
        msgpack_pack_uint32(pk, c.by_state[s]);
    }
    meshnet_stats_t ns;
    swim_stats_t ss;
    meshnet_get_stats(m->net, &ns);
    swim_get_stats(m->swim, &ss);
    mpw_str(pk, "mesh");
    msgpack_pack_map(pk, 24);
    mpw_kv_u64(pk, "redials", ns.redials);
    mpw_kv_u64(pk, "conns", ns.conns);
    mpw_kv_u64(pk, "conns_refused", ns.conns_refused);
    mpw_kv_str(pk, "addr", meshnet_bound(m->net));
    mpw_kv_u64(pk, "zap_admitted", ns.zap_admitted);
    mpw_kv_u64(pk, "zap_refused", ns.zap_refused);
    mpw_kv_u64(pk, "msgs_sent", ns.sent);
    mpw_kv_u64(pk, "msgs_received", ns.received);
    mpw_kv_u64(pk, "send_dropped", ns.send_dropped);
    mpw_kv_u64(pk, "bad_messages", m->bad_messages + ss.malformed);
    mpw_kv_u64(pk, "bad_version", m->bad_version);
    mpw_kv_u64(pk, "incarnation", ss.incarnation);
    mpw_str(pk, "local_health");
    msgpack_pack_uint32(pk, ss.local_health);
    mpw_kv_u64(pk, "joins_ok", m->joins_ok);
    mpw_kv_u64(pk, "joins_refused", m->joins_refused);
    mpw_kv_u64(pk, "joins_relayed", m->join_relayed); /* FORWARDs passed on for a seed */
    mpw_kv_u64(pk, "pushes_applied", m->pushes_applied);
    mpw_kv_u64(pk, "ae_entries_applied", m->ae.entries_applied);
    /* SWIM's own counters (/metrics: popmesh_swim_*) */
    mpw_kv_u64(pk, "probes", ss.probes);
    mpw_kv_u64(pk, "probe_failures", ss.probe_failures);
    mpw_kv_u64(pk, "indirect_probes", ss.indirect_probes);
    mpw_kv_u64(pk, "suspicions_raised", ss.suspicions_raised);
    mpw_kv_u64(pk, "suspicions_refuted", ss.suspicions_refuted);
    mpw_kv_u64(pk, "deaths_declared", ss.deaths_declared);
    /* clock: this node against the mesh (see "clocks") */
    int64_t off;
    unsigned peers = 0;
    bool known = meshclock_offset(m, &off, &peers) == 0;
    store_stats_t st;
    if (store_stats(m->o.store, &st))
        memset(&st, 0, sizeof(st));
    mpw_str(pk, "clock");
    msgpack_pack_map(pk, 6);
    mpw_str(pk, "offset_ms");
    if (known)
        msgpack_pack_int64(pk, off);
    else
        msgpack_pack_nil(pk);
    mpw_kv_u64(pk, "peers", peers);
    mpw_kv_u64(pk, "write_limit_ms", MESHNODE_CLOCK_WRITE_LIMIT_MS);
    mpw_kv_str(pk, "writes", known && off > MESHNODE_CLOCK_WRITE_LIMIT_MS ? "refused" : "ok");
    mpw_kv_u64(pk, "writes_refused", m->writes_refused);
    mpw_kv_u64(pk, "skew_rejected", st.skew_rejected);
}

struct seeds_ctx {
    meshnode_t *m;
    token_t *t;
};

static void add_seed(const swim_member_info_t *mi, void *ctx)
{
    struct seeds_ctx *c = ctx;
    if (c->t->nseeds >= 3 || mi->state != SWIM_ALIVE || mi->id == c->m->o.id->node_id)
        return;
    const reg_node_t *r = meshnode_reg_find(c->m, mi->id);
    if (!r || r->removed || r->role != ROLE_POP)
        return;
    token_seed_t *s = &c->t->seeds[c->t->nseeds++];
    snprintf(s->addr, sizeof(s->addr), "%s", r->addr);
    memcpy(s->curve_pk, r->curve_pk, 32);
}

int meshnode_token_mint(meshnode_t *m, enum node_role role, const char *site,
                        uint64_t site_token, uint64_t ttl, uint64_t uses, char *text,
                        size_t textlen, reg_token_t *rec, char *err, size_t errlen)
{
    return meshnode_token_mint_caps(m, role, site, site_token, ttl, uses, 0, text, textlen, rec,
                                    err, errlen);
}

int meshnode_token_mint_caps(meshnode_t *m, enum node_role role, const char *site,
                             uint64_t site_token, uint64_t ttl, uint64_t uses, uint32_t caps,
                             char *text, size_t textlen, reg_token_t *rec, char *err,
                             size_t errlen)
{
    token_t t = {0};
    /* CAP_INVITE (nodecert.h): joins are admitted only with tokens its holders signed. */
    if (m->trust.self_may && m->trust.self_may(m->trust.ctx, 1u << 2, err, errlen))
        return -EPERM;
    token_public_t pub;
    memcpy(t.mesh_pk, m->o.meshkey->pk, 32);
    t.role = role;
    snprintf(t.site, sizeof(t.site), "%s", site ? site : ""); /* popsite learns its name here */
    t.expires_ms = clock_wall_ms() + ttl;
    randombytes_buf(t.secret, sizeof(t.secret));
    /* Seeds: this node first (it is certainly up), then up to two other live PoPs. */
    snprintf(t.seeds[0].addr, sizeof(t.seeds[0].addr), "%s", nodecfg_mesh_addr(m->o.cfg));
    memcpy(t.seeds[0].curve_pk, m->o.id->curve_pk, 32);
    t.nseeds = 1;
    struct seeds_ctx sc = {m, &t};
    swim_foreach(m->swim, add_seed, &sc);
    token_public(&t, &pub);

    *rec = (reg_token_t){
        .id = pub.id, .expires_ms = t.expires_ms, .uses_max = uses, .created_ms = clock_wall_ms()};
    rec->role = role;
    snprintf(rec->site, sizeof(rec->site), "%s", site ? site : "");
    rec->site_token = site_token;
    snprintf(rec->created_by, sizeof(rec->created_by), "%s", m->o.cfg->name);
    memcpy(rec->join_pk, pub.join_pk, 32);
    rec->caps = caps;
    reg_token_sign(rec, m->o.id->node_id, m->o.id->sign_sk);
    msgpack_sbuffer sb;
    msgpack_packer vp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&vp, &sb, msgpack_sbuffer_write);
    reg_token_pack(&vp, rec);
    char key[64];
    reg_token_key(pub.id, key, sizeof(key));
    int rc = meshnode_put_record(m, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        sodium_memzero(&t, sizeof(t));
        snprintf(err, errlen, "cannot store the token: %s", store_last_error(m->o.store));
        return rc;
    }
    rc = token_encode(&t, m->o.meshkey->sk, text, textlen);
    sodium_memzero(&t, sizeof(t));
    if (rc) {
        snprintf(err, errlen, "cannot encode the token");
        return rc;
    }
    log_info("mesh: created %s token %016llx%s%s (%llu uses, expires in %llu s)",
             node_role_name(rec->role), (unsigned long long)rec->id,
             rec->site[0] ? " for site " : "", rec->site, (unsigned long long)uses,
             (unsigned long long)(ttl / 1000));
    return 0;
}

static int cmd_token_create(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    const char *role = "pop";
    uint32_t rl = 3;
    enum node_role r;
    uint64_t ttl = 3600 * 1000, uses = 1;
    if (ctl_arg_str(req, "role", &role, &rl) < 0 || node_role_parse(role, rl, &r))
        return control_error(pk, CTL_BAD_REQUEST, "role must be 'pop' or 'site'");
    if (ctl_arg_uint(req, "ttl_ms", &ttl) < 0 || ttl == 0 || ttl > 365ull * 24 * 3600 * 1000)
        return control_error(pk, CTL_BAD_REQUEST, "ttl must be between 1 ms and 365 days");
    if (ctl_arg_uint(req, "uses", &uses) < 0 || uses > 1000000)
        return control_error(pk, CTL_BAD_REQUEST, "uses must be 0 (unlimited) to 1000000");
    uint64_t caps = 0; /* 0: every capability, as before capabilities existed */
    if (ctl_arg_uint(req, "caps", &caps) < 0 || caps > 15 || (caps && r != ROLE_POP))
        return control_error(pk, CTL_BAD_REQUEST,
                             "capabilities are a mask of 1-15, for pop tokens only");

    char text[TOKEN_TEXT_MAX + 1], id[17], err[300];
    reg_token_t rec;
    if (meshnode_token_mint_caps(m, r, NULL, 0, ttl, uses, (uint32_t)caps, text, sizeof(text),
                                 &rec, err, sizeof(err)))
        return control_error(pk, CTL_FAILED, "%s", err);
    identity_id_hex(rec.id, id);
    msgpack_pack_map(pk, 5);
    mpw_kv_str(pk, "token", text);
    mpw_kv_str(pk, "id", id);
    mpw_kv_str(pk, "role", node_role_name(rec.role));
    mpw_kv_u64(pk, "expires_ms", rec.expires_ms);
    mpw_kv_u64(pk, "uses_max", rec.uses_max);
    sodium_memzero(text, sizeof(text));
    return CTL_OK;
}

struct token_vec {
    reg_token_t *v;
    size_t n;
};

static int collect_token(const store_entry_t *e, void *ctx)
{
    struct token_vec *tv = ctx;
    size_t pl = strlen(REG_TOKEN_PREFIX);
    reg_token_t t;
    const char *why;
    char idhex[17];
    if (e->klen != pl + 16)
        return 0;
    memcpy(idhex, e->key + pl, 16);
    idhex[16] = '\0';
    if (reg_token_parse(e->value, e->vlen, strtoull(idhex, NULL, 16), &t, &why))
        return 0;
    tv->v = xrealloc(tv->v, (tv->n + 1) * sizeof(*tv->v));
    tv->v[tv->n++] = t;
    return 0;
}

static uint64_t token_uses(meshnode_t *m, uint64_t id)
{
    char prefix[64];
    snprintf(prefix, sizeof(prefix), REG_TOKENUSE_PREFIX "%016llx/", (unsigned long long)id);
    return meshnode_count_prefix(m, prefix);
}

static int cmd_token_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    struct token_vec tv = {0};
    /* Collect first: the store cannot be asked anything from inside its own iteration. */
    int rc = store_list(m->o.store, REG_TOKEN_PREFIX, strlen(REG_TOKEN_PREFIX), collect_token, &tv);
    if (rc) {
        free(tv.v);
        return control_error(pk, CTL_FAILED, "cannot list tokens: %s",
                             store_last_error(m->o.store));
    }
    uint64_t now = clock_wall_ms();
    msgpack_pack_array(pk, tv.n);
    for (size_t i = 0; i < tv.n; i++) {
        const reg_token_t *t = &tv.v[i];
        uint64_t uses = token_uses(m, t->id);
        const char *state = t->revoked                           ? "revoked"
                            : now >= t->expires_ms               ? "expired"
                            : t->uses_max && uses >= t->uses_max ? "used-up"
                                                                 : "valid";
        char id[17];
        identity_id_hex(t->id, id);
        msgpack_pack_map(pk, 8);
        mpw_kv_str(pk, "id", id);
        mpw_kv_str(pk, "role", node_role_name(t->role));
        mpw_kv_str(pk, "state", state);
        mpw_kv_u64(pk, "expires_ms", t->expires_ms);
        mpw_kv_u64(pk, "uses", uses);
        mpw_kv_u64(pk, "uses_max", t->uses_max);
        mpw_kv_str(pk, "created_by", t->created_by);
        mpw_kv_u64(pk, "created_ms", t->created_ms);
    }
    free(tv.v);
    return CTL_OK;
}

static int cmd_token_revoke(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    const char *s;
    uint32_t sl;
    if (ctl_arg_str(req, "id", &s, &sl) != 1 || sl != 16)
        return control_error(pk, CTL_BAD_REQUEST,
                             "id must be a token id (16 hex digits, from "
                             "'meshctl token list')");
    char idhex[17], key[64];
    memcpy(idhex, s, 16);
    idhex[16] = '\0';
    char *end;
    uint64_t id = strtoull(idhex, &end, 16);
    if (*end)
        return control_error(pk, CTL_BAD_REQUEST, "id must be 16 hex digits");
    reg_token_key(id, key, sizeof(key));
    store_entry_t e;
    reg_token_t t;
    const char *why;
    if (store_get(m->o.store, key, strlen(key), &e) != 0)
        return control_error(pk, CTL_NOT_FOUND, "no token %s", idhex);
    int prc = reg_token_parse(e.value, e.vlen, id, &t, &why);
    store_entry_free(&e);
    if (prc)
        return control_error(pk, CTL_FAILED, "token %s is unreadable: %s", idhex, why);
    t.revoked = true;
    msgpack_sbuffer sb;
    msgpack_packer vp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&vp, &sb, msgpack_sbuffer_write);
    reg_token_pack(&vp, &t);
    int rc = meshnode_put_record(m, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot revoke: %s", store_last_error(m->o.store));
    log_info("mesh: token %s revoked", idhex);
    msgpack_pack_map(pk, 1);
    mpw_kv_str(pk, "id", idhex);
    return CTL_OK;
}

static int cmd_node_remove(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    const char *s;
    uint32_t sl;
    char name[NODECFG_NAME_MAX + 1];
    if (ctl_arg_str(req, "name", &s, &sl) != 1 || sl == 0 || sl > NODECFG_NAME_MAX)
        return control_error(pk, CTL_BAD_REQUEST, "name must be a node name");
    memcpy(name, s, sl);
    name[sl] = '\0';
    const reg_node_t *found = meshnode_reg_find_name(m, name);
    if (!found)
        return control_error(pk, CTL_NOT_FOUND, "no member named '%s'", name);
    if (found->id == m->o.id->node_id)
        return control_error(pk, CTL_REFUSED,
                             "a node cannot remove itself; run this on "
                             "another member");
    reg_node_t rec = *found; /* the write below replaces the registry snapshot */
    if (meshnode_remove_node(m, &rec))
        return control_error(pk, CTL_FAILED, "cannot record the removal: %s",
                             store_last_error(m->o.store));
    char id[17];
    identity_id_hex(rec.id, id);
    msgpack_pack_map(pk, 2);
    mpw_kv_str(pk, "name", rec.name);
    mpw_kv_str(pk, "id", id);
    return CTL_OK;
}

static const control_command_t commands[] = {
    {"members", cmd_members,
     "-> [{name, id, region, addr, state, incarnation, rtt_ms, self, clock_offset_ms, health: "
     "{cpu_pct, rss_kb, streams, tunnels, listeners, listeners_up, ingress_up, load_pct, age_ms}, "
     "draining, public4, public6, location, dns_addr}] as this node sees them"},
    {"token.create", cmd_token_create,
     "[role: pop|site] [ttl_ms: uint] [uses: uint, 0 = unlimited] -> {token, id, ...}"},
    {"token.list", cmd_token_list, "-> [{id, role, state, expires_ms, uses, uses_max, ...}]"},
    {"token.revoke", cmd_token_revoke, "id: str -> {id}"},
    {"node.remove", cmd_node_remove, "name: str -> {name, id}: evicts the node everywhere"},
    {"routes", cmd_routes,
     "-> {sites: [{site, egress, path, cost_ms, backup}], pops: [{pop, route}], info}"},
    {NULL, NULL, NULL},
};

int meshnode_register_commands(meshnode_t *m, control_t *ctl)
{
    int rc = control_add_commands(ctl, commands, m);
    control_set_guard(ctl, meshclock_guard, m);
    return rc ? rc : control_add_commands(ctl, meshadmin_commands, m);
}
