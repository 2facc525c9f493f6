/* meshjoin: the seed's side of joining (docs/protocol.md, "Joining").
 *
 * A joiner connects with its token's join key, so the ZAP handler admits it as "t:<token id>"
 * and the only message it may send is JOIN. The seed checks the token against its replicated
 * record (revoked, expired, role, bound site, uses left), the name and address, then writes the
 * node's record and one use of the token, pushes the record to every alive member (their ZAP
 * must admit the newcomer before its first probe) and answers JOIN_OK with the mesh key and
 * the registry. Every refusal says why, in words an operator can act on, because the joiner
 * has no other way to learn it. The same node asking again (its JOIN_OK lost) is answered
 * again without using the token twice.
 *
 * Connector replicas: a site JOIN names the site (popsite knows nothing else before it is
 * enrolled). When a live connector of that site already holds the name, and the token is
 * bound to the site, this seed names the newcomer NAME-2, NAME-3, ... (the first name no live
 * node and no live site holds) and writes site = NAME in its record; the newcomer learns its
 * name from its own record, which JOIN_OK carries first. An unbound site token cannot add a
 * replica: the name stays taken, as before replicas existed. */
#include "node/membership/meshnode_int.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/membership/joinmsg.h"
#include "node/records/token.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void join_reply_err(meshnode_t *m, const uint8_t *rid, size_t rl, const char *code,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define JOIN_REPLICAS_MAX 64 /* names NAME-2 .. NAME-64 are tried for a site's replicas */

/* A free node name for one more connector of site: NAME-k for the smallest k from 2 whose
 * name fits, is held by no live node and is no live site's name. 0, or -ENOSPC. */
static int replica_name(meshnode_t *m, const char *site, char *out, size_t len)
{
    for (int k = 2; k <= JOIN_REPLICAS_MAX; k++) {
        char cand[NODECFG_NAME_MAX + 8];
        int n = snprintf(cand, sizeof(cand), "%s-%d", site, k);
        if (n < 0 || (size_t)n >= len || (size_t)n > NODECFG_NAME_MAX)
            return -ENOSPC;
        reg_site_t other;
        if (meshnode_reg_find_name(m, cand) ||
            (meshadmin_site_get(m->o.store, cand, &other) == 0 && !other.removed))
            continue;
        memcpy(out, cand, (size_t)n + 1);
        return 0;
    }
    return -ENOSPC;
}

static void join_reply_err(meshnode_t *m, const uint8_t *rid, size_t rl, const char *code,
                           const char *fmt, ...)
{
    char text[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    joinmsg_pack_err(&pk, code, text);
    meshnet_reply(m->net, rid, rl, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    m->joins_refused++;
    log_info("mesh: refused a join: %s", text);
}

/* The registry part of a JOIN_OK, bounded by MESHNET_JOIN_OK_BUDGET: the records that must
 * be there (the joiner's and the seed's, so each side's ZAP admits the other at once) come
 * first, then the others in key order while they fit. A larger registry is not an error:
 * the joiner learns the rest from gossip and anti-entropy within seconds. */
struct join_pack {
    msgpack_sbuffer *entries;
    uint32_t count;
    uint64_t skip[2]; /* node ids already packed */
    size_t left;      /* records that did not fit */
};

static int pack_registry_entry(const store_entry_t *e, void *ctx)
{
    struct join_pack *jp = ctx;
    uint64_t id;
    if (reg_node_key_id(e->key, e->klen, &id) == 0 && (id == jp->skip[0] || id == jp->skip[1]))
        return 0;
    size_t before = jp->entries->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, jp->entries, msgpack_sbuffer_write);
    ae_entry_pack(&pk, e);
    if (jp->count > 0 && jp->entries->size > MESHNET_JOIN_OK_BUDGET) {
        jp->entries->size = before; /* undo: it stays for anti-entropy */
        jp->left++;
        return 0;
    }
    jp->count++;
    return 0;
}

static void pack_registry_first(meshnode_t *m, struct join_pack *jp, uint64_t id)
{
    char key[64];
    store_entry_t e;
    reg_node_key(id, key, sizeof(key));
    if (store_get(m->o.store, key, strlen(key), &e) != 0)
        return;
    msgpack_packer pk;
    msgpack_packer_init(&pk, jp->entries, msgpack_sbuffer_write);
    ae_entry_pack(&pk, &e);
    jp->count++;
    store_entry_free(&e);
}

void meshjoin_handle(meshnode_t *m, uint64_t token_id, const uint8_t *rid, size_t rl,
                     const uint8_t *msg, size_t len)
{
    reg_node_t want;
    const char *why;
    if (joinmsg_decode_join(msg, len, &want, &why) != 0) {
        m->bad_messages++;
        join_reply_err(m, rid, rl, "malformed", "malformed join request: %s", why);
        return;
    }
    char key[64];
    store_entry_t e;
    reg_token_t tok;
    reg_token_key(token_id, key, sizeof(key));
    if (store_get(m->o.store, key, strlen(key), &e) != 0) {
        join_reply_err(m, rid, rl, "unknown", "this mesh has no such token");
        return;
    }
    int prc = reg_token_parse(e.value, e.vlen, token_id, &tok, &why);
    store_entry_free(&e);
    if (prc) {
        join_reply_err(m, rid, rl, "unknown", "the token's record is unreadable (%s)", why);
        return;
    }
    uint64_t now = clock_wall_ms();
    if (tok.revoked) {
        join_reply_err(m, rid, rl, "revoked", "the token was revoked");
        return;
    }
    if (now >= tok.expires_ms) {
        join_reply_err(m, rid, rl, "expired", "the token expired %llu s ago",
                       (unsigned long long)((now - tok.expires_ms) / 1000));
        return;
    }
    if (tok.role != want.role) {
        join_reply_err(m, rid, rl, "role", "this is a %s token; it cannot join a %s",
                       node_role_name(tok.role), node_role_name(want.role));
        return;
    }
    if (tok.site[0] && (want.role != ROLE_SITE || strcmp(want.name, tok.site) != 0)) {
        join_reply_err(m, rid, rl, "site",
                       "this token enrolls site '%s' only; it cannot enroll %s '%s'", tok.site,
                       node_role_name(want.role), want.name);
        return;
    }
    /* A site listens on nothing (it dials out), so its address may be empty. */
    bool addr_ok = (want.role == ROLE_SITE && !want.addr[0]) || !nodecfg_check_addr(want.addr, 0);
    if (nodecfg_check_name(want.name) || (want.region[0] && nodecfg_check_name(want.region)) ||
        !addr_ok) {
        join_reply_err(m, rid, rl, "invalid", "name, region or address is invalid");
        return;
    }
    if (want.role == ROLE_SITE) {
        reg_site_t site;
        int src = meshadmin_site_get(m->o.store, want.name, &site);
        if (src != 0) {
            join_reply_err(m, rid, rl, "no-site",
                           "there is no site '%s' in this mesh (meshctl site add %s)", want.name,
                           want.name);
            return;
        }
        if (site.removed) {
            join_reply_err(m, rid, rl, "no-site",
                           "site '%s' was removed from this mesh (meshctl site add %s to add it "
                           "again)",
                           want.name, want.name);
            return;
        }
        /* Two site.add of one name on two nodes at once: the site/ record that won names the
         * token that enrolls it. */
        if (tok.site[0] && site.token_id != token_id && tok.site_token != site.token_id) {
            join_reply_err(m, rid, rl, "site",
                           "site '%s' was added again with another token; use that one", want.name);
            return;
        }
    }
    want.id = identity_node_id_of(want.curve_pk);
    const reg_node_t *same = meshnode_reg_find(m, want.id);
    if (same && same->removed) {
        join_reply_err(m, rid, rl, "removed",
                       "this node's key was removed from the mesh; join with a new data "
                       "directory");
        return;
    }
    /* The same node asking again (its JOIN_OK was lost): answer again, use nothing more. A
     * site's JOIN names its site, which a replica's record holds in site. */
    bool again = same && (want.role == ROLE_SITE ? !strcmp(reg_node_site(same), want.name)
                                                 : !strcmp(same->name, want.name));
    const reg_node_t *named = meshnode_reg_find_name(m, want.name);
    if (again) {
        snprintf(want.name, sizeof(want.name), "%s", same->name);
        snprintf(want.site, sizeof(want.site), "%s", same->site);
    } else if (named && named->id != want.id && want.role == ROLE_SITE && tok.site[0] &&
               named->role == ROLE_SITE && !strcmp(reg_node_site(named), want.name)) {
        /* Another connector of this site holds the name: this one is a replica. */
        char rname[NODECFG_NAME_MAX + 1];
        if (replica_name(m, want.name, rname, sizeof(rname))) {
            join_reply_err(m, rid, rl, "name-taken",
                           "site '%s' has no free replica name left (%s-2 .. %s-%d are taken or "
                           "too long)",
                           want.name, want.name, want.name, JOIN_REPLICAS_MAX);
            return;
        }
        snprintf(want.site, sizeof(want.site), "%s", want.name);
        snprintf(want.name, sizeof(want.name), "%s", rname);
    } else if (named && named->id != want.id) {
        join_reply_err(m, rid, rl, "name-taken", "the name '%s' is already taken by node %016llx",
                       want.name, (unsigned long long)named->id);
        return;
    }
    if (!again) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), REG_TOKENUSE_PREFIX "%016llx/",
                 (unsigned long long)token_id);
        uint64_t used = meshnode_count_prefix(m, prefix);
        if (tok.uses_max && used >= tok.uses_max) {
            join_reply_err(m, rid, rl, "used-up", "the token is used up (%llu of %llu uses)",
                           (unsigned long long)used, (unsigned long long)tok.uses_max);
            return;
        }
        want.joined_ms = now;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        reg_tokenuse_pack(&pk, want.name, now);
        reg_tokenuse_key(token_id, want.id, key, sizeof(key));
        int rc = meshnode_put_record(m, key, &sb);
        msgpack_sbuffer_clear(&sb);
        reg_node_pack(&pk, &want);
        reg_node_key(want.id, key, sizeof(key));
        if (rc == 0)
            rc = meshnode_put_record(m, key, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (rc) {
            join_reply_err(m, rid, rl, "failed", "the seed could not record the join: %s",
                           store_last_error(m->o.store));
            return;
        }
        /* Gossip would get there in a few rounds; the newcomer probes at once. */
        meshnode_push_to_alive(m, key, want.id);
    }

    /* JOIN_OK [1, 49, mesh_pk, mesh_sk | nil, entries of node/] */
    msgpack_sbuffer entries, out;
    msgpack_sbuffer_init(&entries);
    struct join_pack jp = {.entries = &entries, .skip = {want.id, m->o.id->node_id}};
    pack_registry_first(m, &jp, want.id);
    pack_registry_first(m, &jp, m->o.id->node_id);
    store_list(m->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), pack_registry_entry, &jp);
    uint32_t count = jp.count;
    if (jp.left)
        log_info("mesh: JOIN_OK to %s carries %u registry records; %zu more follow by "
                 "anti-entropy (message limit %d bytes)",
                 want.name, count, jp.left, MESHNET_MSG_MAX);
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    /* Every PoP signs tokens and sessions, so PoPs get the mesh key; nobody else does. */
    joinmsg_pack_ok(&pk, m->o.meshkey->pk, want.role == ROLE_POP ? m->o.meshkey->sk : NULL,
                    entries.data, entries.size, count);
    meshnet_reply(m->net, rid, rl, (const uint8_t *)out.data, out.size);
    sodium_memzero(out.data, out.size);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&entries);
    m->joins_ok++;
    log_info("mesh: %s %s%s%s (%016llx, %s) joined with token %016llx", node_role_name(want.role),
             want.name, want.site[0] ? ", a replica of site " : "", want.site,
             (unsigned long long)want.id, want.addr[0] ? want.addr : "dials out",
             (unsigned long long)token_id);
    meshnode_swim_rearm(m);
}
