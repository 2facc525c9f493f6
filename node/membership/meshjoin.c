/* meshjoin: the seed's side of joining, and the join arbiter (docs/protocol.md, "Joining";
 * docs/security.md, "Joining").
 *
 * A joiner connects with its token's join key, so the ZAP handler admits it as "t:<token id>"
 * and the only message it may send is JOIN. The seed checks the token against its replicated
 * record (revoked, expired, role, bound site, uses left), the name and address, then has the
 * join decided and recorded (below), and answers JOIN_OK with the mesh key and the registry.
 * Every refusal says why, in words an operator can act on, because the joiner has no other
 * way to learn it. The same node asking again (its JOIN_OK lost) is answered again without
 * using the token twice.
 *
 * ONE PLACE DECIDES. A token's uses and the node names are counted in replicated records
 * (tokenuse/, node/), which converge by last-writer-wins within a second or so. Checked at
 * each seed, two seeds admitting joins in that second both see the old count: a 1-use token
 * enrolled one node per seed, and two nodes could take one name. So every join that would
 * write is decided and written at one PoP, the join arbiter: the PoP that has been a member
 * longest (the smallest joined_ms among PoPs not removed, then the smallest id). It runs the
 * same checks against its own store and writes tokenuse/ and node/ in the same turn of its
 * loop, so its next decision already counts them: exactly uses_max joins, one node per name,
 * whichever seeds they came through. Every PoP derives the arbiter from the registry, which
 * changes only when a PoP is removed (a newer PoP is never older), so all agree on it but for
 * the moments a removal of the arbiter takes to spread.
 *
 * A seed that is not the arbiter checks the JOIN itself first (a revoked token or a taken name
 * is refused at once, without the arbiter), then FORWARDs it (joinmsg.h) with its copy of the
 * token's record, resends it every MESHJOIN_RESEND_MS (the arbiter answers a repeat as "the
 * same node again") and answers the joiner from the VERDICT: an admission carries the node's
 * record as the arbiter wrote it, which the seed merges before packing JOIN_OK.
 *
 * A seed cut off from the arbiter alone (a partial partition) asks two other live PoPs, after
 * MESHJOIN_RELAY_AFTER_MS, to pass its FORWARD on and the VERDICT back (relay_forward); the
 * decision is still the arbiter's.
 *
 * WHEN THE ARBITER IS DOWN. No answer within MESHJOIN_ARBITER_MS (or SWIM already says it is
 * dead) refuses the join with "arbiter-down", naming the arbiter and the two ways out (bring it
 * back, or meshctl node rm it so the next oldest PoP decides). Nothing is written, so the
 * token is not used. Availability of joins is traded for never admitting a join twice: joins
 * are operator actions, and a refusal says exactly what to do. An arbiter that sees another
 * PoP as the arbiter (a removal still spreading) refuses with "not-arbiter" rather than decide.
 *
 * Connector replicas: a site JOIN names the site (popsite knows nothing else before it is
 * enrolled). When a live connector of that site already holds the name, and the token is
 * bound to the site, the newcomer is named NAME-2, NAME-3, ... (the first name no live node
 * and no live site holds) with site = NAME in its record; the arbiter picks the name, so two
 * replicas joining at once get two names. The newcomer learns its name from its own record,
 * which JOIN_OK carries first. An unbound site token cannot add a replica: the name stays
 * taken, as before replicas existed.
 *
 * Test knob (environment, integration tests only): POPMESH_TEST_JOIN_HOLD_MS holds every JOIN
 * this long after the seed's own checks pass, before it is decided and recorded, so that
 * concurrent joins in a test overlap for certain. */
#include "node/membership/meshnode_int.h"
#include "node/records/nodecert.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/membership/joinmsg.h"
#include "node/records/token.h"

#include <errno.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOIN_REPLICAS_MAX    64   /* names NAME-2 .. NAME-64 are tried for a site's replicas */
#define MESHJOIN_WAITING_MAX 32   /* JOINs a seed holds for the arbiter at once */
#define MESHJOIN_RESEND_MS   500  /* ms between two FORWARDs of one JOIN */
#define MESHJOIN_ARBITER_MS  3000 /* ms the arbiter has to answer; under MESH_JOIN_TIMEOUT */
#define MESHJOIN_RELAY_AFTER_MS 1000 /* ms without an answer before other PoPs are asked to relay */
#define MESHJOIN_RELAYS_PER_JOIN 2   /* PoPs asked to relay one JOIN */
#define MESHJOIN_RELAYS_MAX 32       /* FORWARDs this PoP relays at once */

_Static_assert(MESHJOIN_ARBITER_MS + 1000 < MESH_JOIN_TIMEOUT,
               "the joiner must still be waiting when the seed gives up on the arbiter");

/* Why a join is refused: the code and message JOIN_ERR (or VERDICT) carries. */
struct refusal {
    char code[JOINMSG_CODE_MAX + 1];
    char text[JOINMSG_MESSAGE_MAX + 1];
};

static int refuse(struct refusal *ref, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(struct refusal *ref, const char *code, const char *fmt, ...)
{
    va_list ap;
    snprintf(ref->code, sizeof(ref->code), "%s", code);
    va_start(ap, fmt);
    vsnprintf(ref->text, sizeof(ref->text), fmt, ap);
    va_end(ap);
    return -1;
}

/* A JOIN that passed the seed's checks and waits: for the test hold, then for the arbiter. */
struct join_wait {
    bool used;
    uint64_t seq;                 /* pairs FORWARD and VERDICT; never 0 */
    uint64_t token_id;
    uint64_t arbiter;             /* the node asked */
    reg_node_t want;              /* as the joiner asked, id set */
    uint8_t join[1024];           /* the JOIN as it came (a valid one is far smaller) */
    size_t join_len;
    uint8_t rid[MESHNET_RID_MAX]; /* the joiner's connection */
    size_t rl;
    uint64_t deadline_ms;         /* clock_mono_ms: give up on the arbiter */
    uint64_t relay_ms;            /* clock_mono_ms: from then on, ask relays too */
    uint64_t relays[MESHJOIN_RELAYS_PER_JOIN]; /* PoPs asked to pass the FORWARD on; 0 = none */
    ev_timer timer;               /* the hold, then the resends */
    meshnode_t *m;
};

/* A FORWARD this PoP passes on to the arbiter for a seed that cannot reach it. */
struct join_relay {
    uint64_t seq;      /* ours, in the FORWARD we send the arbiter; 0 = free slot */
    uint64_t seed;     /* who asked */
    uint64_t seed_seq; /* its seq */
    uint64_t arbiter;
    uint64_t until_ms; /* clock_mono_ms: forgotten after */
};

struct meshjoin {
    struct join_wait waits[MESHJOIN_WAITING_MAX];
    struct join_relay relays[MESHJOIN_RELAYS_MAX];
    uint64_t next_seq;
    uint64_t hold_ms; /* POPMESH_TEST_JOIN_HOLD_MS; 0 = none */
};

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

static void reply_err(meshnode_t *m, const uint8_t *rid, size_t rl, const struct refusal *ref)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    joinmsg_pack_err(&pk, ref->code, ref->text);
    meshnet_reply(m->net, rid, rl, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    m->joins_refused++;
    log_info("mesh: refused a join: %s", ref->text);
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
    /* A site's JOIN_OK carries its entries unsigned: a site is no store replica and checks
     * no signature, and a connector older than signed records reads only five elements. */
    bool unsigned_only;
};

static void pack_join_entry(const struct join_pack *jp, msgpack_packer *pk, const store_entry_t *e)
{
    if (jp->unsigned_only && e->has_sig) {
        store_entry_t u = *e;
        u.has_sig = false;
        ae_entry_pack(pk, &u);
    } else {
        ae_entry_pack(pk, e);
    }
}

static int pack_registry_entry(const store_entry_t *e, void *ctx)
{
    struct join_pack *jp = ctx;
    uint64_t id;
    if (reg_node_key_id(e->key, e->klen, &id) == 0 && (id == jp->skip[0] || id == jp->skip[1]))
        return 0;
    size_t before = jp->entries->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, jp->entries, msgpack_sbuffer_write);
    pack_join_entry(jp, &pk, e);
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
    pack_join_entry(jp, &pk, &e);
    jp->count++;
    store_entry_free(&e);
}

/* The PoP that decides joins (see the top of this file); NULL only with no PoP registered. */
static const reg_node_t *arbiter_of(const meshnode_t *m)
{
    size_t n;
    const reg_node_t *reg = meshnode_registry(m, &n), *best = NULL;
    for (size_t i = 0; i < n; i++) {
        const reg_node_t *r = &reg[i];
        if (r->removed || r->role != ROLE_POP)
            continue;
        if (!best || r->joined_ms < best->joined_ms ||
            (r->joined_ms == best->joined_ms && r->id < best->id))
            best = r;
    }
    return best;
}

/* Every check of a JOIN against this node's store. want comes decoded, its id unset; on
 * success its id is set, its name is the one it will get (a replica's NAME-k) and *again
 * says it is the same node asking again (nothing to write). 0, or -1 with ref filled. */
static int join_check(meshnode_t *m, uint64_t token_id, reg_node_t *want, bool *again,
                      struct refusal *ref)
{
    char key[64];
    store_entry_t e;
    reg_token_t tok;
    const char *why;
    *again = false;
    reg_token_key(token_id, key, sizeof(key));
    if (store_get(m->o.store, key, strlen(key), &e) != 0)
        return refuse(ref, "unknown", "this mesh has no such token");
    int prc = reg_token_parse(e.value, e.vlen, token_id, &tok, &why);
    store_entry_free(&e);
    if (prc)
        return refuse(ref, "unknown", "the token's record is unreadable (%s)", why);
    uint64_t now = clock_wall_ms();
    if (tok.revoked)
        return refuse(ref, "revoked", "the token was revoked");
    if (now >= tok.expires_ms)
        return refuse(ref, "expired", "the token expired %llu s ago",
                      (unsigned long long)((now - tok.expires_ms) / 1000));
    if (m->trust.token_ok && m->trust.token_ok(m->trust.ctx, &tok, tok.created_ms, &why))
        return refuse(ref, "untrusted", "%s", why);
    if (tok.role != want->role)
        return refuse(ref, "role", "this is a %s token; it cannot join a %s",
                      node_role_name(tok.role), node_role_name(want->role));
    if (tok.site[0] && (want->role != ROLE_SITE || strcmp(want->name, tok.site) != 0))
        return refuse(ref, "site", "this token enrolls site '%s' only; it cannot enroll %s '%s'",
                      tok.site, node_role_name(want->role), want->name);
    /* A site listens on nothing (it dials out), so its address may be empty. */
    bool addr_ok =
        (want->role == ROLE_SITE && !want->addr[0]) || !nodecfg_check_addr(want->addr, 0);
    if (nodecfg_check_name(want->name) || (want->region[0] && nodecfg_check_name(want->region)) ||
        !addr_ok)
        return refuse(ref, "invalid", "name, region or address is invalid");
    if (want->role == ROLE_SITE) {
        reg_site_t site;
        if (meshadmin_site_get(m->o.store, want->name, &site) != 0)
            return refuse(ref, "no-site", "there is no site '%s' in this mesh (meshctl site add %s)",
                          want->name, want->name);
        if (site.removed)
            return refuse(ref, "no-site",
                          "site '%s' was removed from this mesh (meshctl site add %s to add it "
                          "again)",
                          want->name, want->name);
        /* Two site.add of one name on two nodes at once: the site/ record that won names the
         * token that enrolls it. */
        if (tok.site[0] && site.token_id != token_id && tok.site_token != site.token_id)
            return refuse(ref, "site", "site '%s' was added again with another token; use that one",
                          want->name);
    }
    want->id = identity_node_id_of(want->curve_pk);
    const reg_node_t *same = meshnode_reg_find(m, want->id);
    if (same && same->removed)
        return refuse(ref, "removed",
                      "this node's key was removed from the mesh; join with a new data "
                      "directory");
    /* The same node asking again (its JOIN_OK was lost): answer again, use nothing more. A
     * site's JOIN names its site, which a replica's record holds in site. */
    *again = same && (want->role == ROLE_SITE ? !strcmp(reg_node_site(same), want->name)
                                              : !strcmp(same->name, want->name));
    const reg_node_t *named = meshnode_reg_find_name(m, want->name);
    if (*again) {
        snprintf(want->name, sizeof(want->name), "%s", same->name);
        snprintf(want->site, sizeof(want->site), "%s", same->site);
        return 0;
    }
    if (named && named->id != want->id && want->role == ROLE_SITE && tok.site[0] &&
        named->role == ROLE_SITE && !strcmp(reg_node_site(named), want->name)) {
        /* Another connector of this site holds the name: this one is a replica. */
        char rname[NODECFG_NAME_MAX + 1];
        if (replica_name(m, want->name, rname, sizeof(rname)))
            return refuse(ref, "name-taken",
                          "site '%s' has no free replica name left (%s-2 .. %s-%d are taken or "
                          "too long)",
                          want->name, want->name, want->name, JOIN_REPLICAS_MAX);
        snprintf(want->site, sizeof(want->site), "%s", want->name);
        snprintf(want->name, sizeof(want->name), "%s", rname);
    } else if (named && named->id != want->id) {
        return refuse(ref, "name-taken", "the name '%s' is already taken by node %016llx",
                      want->name, (unsigned long long)named->id);
    }
    char prefix[64];
    snprintf(prefix, sizeof(prefix), REG_TOKENUSE_PREFIX "%016llx/", (unsigned long long)token_id);
    uint64_t used = meshnode_count_prefix(m, prefix);
    if (tok.uses_max && used >= tok.uses_max)
        return refuse(ref, "used-up", "the token is used up (%llu of %llu uses)",
                      (unsigned long long)used, (unsigned long long)tok.uses_max);
    return 0;
}

/* The arbiter's part: checks want against this store and writes one use of the token and the
 * node's record, in one turn of the loop. 0, or -1 with ref filled. */
static int join_decide(meshnode_t *m, uint64_t token_id, reg_node_t *want, struct refusal *ref)
{
    bool again;
    if (join_check(m, token_id, want, &again, ref))
        return -1;
    if (again)
        return 0;
    char key[64];
    uint64_t now = clock_wall_ms();
    want->joined_ms = now;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_tokenuse_pack(&pk, want->name, now);
    reg_tokenuse_key(token_id, want->id, key, sizeof(key));
    int rc = meshnode_put_record(m, key, &sb);
    msgpack_sbuffer_clear(&sb);
    reg_node_pack(&pk, want);
    reg_node_key(want->id, key, sizeof(key));
    if (rc == 0)
        rc = meshnode_put_record(m, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return refuse(ref, "failed", "the mesh could not record the join: %s",
                      store_last_error(m->o.store));
    /* Gossip would get there in a few rounds; the newcomer probes at once. */
    meshnode_push_to_alive(m, key, want->id);
    return 0;
}

/* JOIN_OK to the joiner, whose record is in the store by now. */
static void answer_ok(meshnode_t *m, const uint8_t *rid, size_t rl, const reg_node_t *want,
                      uint64_t token_id)
{
    /* JOIN_OK [1, 49, mesh_pk, mesh_sk | nil, entries of node/] */
    msgpack_sbuffer entries, out;
    msgpack_sbuffer_init(&entries);
    struct join_pack jp = {.entries = &entries,
                           .skip = {want->id, m->o.id->node_id},
                           .unsigned_only = want->role != ROLE_POP};
    pack_registry_first(m, &jp, want->id);
    pack_registry_first(m, &jp, m->o.id->node_id);
    store_list(m->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), pack_registry_entry, &jp);
    /* The key hierarchy: the root a PoP pins (made here from this PoP's own pinned root, not
     * copied from the store, which any member can write), and the certificates, so the
     * newcomer verifies sessions from its first request. */
    msgpack_sbuffer rootv;
    msgpack_sbuffer_init(&rootv);
    if (want->role == ROLE_POP && m->trust.root_record &&
        m->trust.root_record(m->trust.ctx, &rootv) == 0) {
        store_entry_t re = {.key = (char *)TRUST_ROOT_KEY,
                            .klen = strlen(TRUST_ROOT_KEY),
                            .value = (uint8_t *)rootv.data,
                            .vlen = rootv.size,
                            .version = 1,
                            .origin = m->o.id->node_id};
        pack_registry_entry(&re, &jp);
        store_list(m->o.store, NODECERT_PREFIX, strlen(NODECERT_PREFIX), pack_registry_entry, &jp);
    }
    msgpack_sbuffer_destroy(&rootv);
    uint32_t count = jp.count;
    if (jp.left)
        log_info("mesh: JOIN_OK to %s carries %u registry records; %zu more follow by "
                 "anti-entropy (message limit %d bytes)",
                 want->name, count, jp.left, MESHNET_MSG_MAX);
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    /* Every PoP signs tokens and sessions, so PoPs get the mesh key; nobody else does. So
     * with the store key, which opens the secrets of the replicated store. */
    joinmsg_pack_ok(&pk, m->o.meshkey->pk, want->role == ROLE_POP ? m->o.meshkey->sk : NULL,
                    entries.data, entries.size, count,
                    want->role == ROLE_POP ? m->o.storekey : NULL);
    meshnet_reply(m->net, rid, rl, (const uint8_t *)out.data, out.size);
    sodium_memzero(out.data, out.size);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&entries);
    m->joins_ok++;
    log_info("mesh: %s %s%s%s (%016llx, %s) joined with token %016llx", node_role_name(want->role),
             want->name, want->site[0] ? ", a replica of site " : "", want->site,
             (unsigned long long)want->id, want->addr[0] ? want->addr : "dials out",
             (unsigned long long)token_id);
    meshnode_swim_rearm(m);
}

static void wait_done(struct join_wait *w)
{
    ev_timer_stop(w->m->o.loop, &w->timer);
    w->used = false;
}

static void arbiter_down(struct join_wait *w, const reg_node_t *arb, const char *what)
{
    struct refusal ref;
    refuse(&ref, "arbiter-down",
           "the join arbiter, PoP '%s' (%016llx), %s: joins are decided there so that a token's "
           "uses and a node name are never given twice, and nothing was recorded. Start %s "
           "again, or if it is gone for good remove it (meshctl node rm %s) and the next oldest "
           "PoP decides joins",
           arb ? arb->name : "?", (unsigned long long)w->arbiter, what, arb ? arb->name : "it",
           arb ? arb->name : "NAME");
    reply_err(w->m, w->rid, w->rl, &ref);
    wait_done(w);
}

static void send_forward(struct join_wait *w)
{
    meshnode_t *m = w->m;
    char key[64];
    store_entry_t tok;
    reg_token_key(w->token_id, key, sizeof(key));
    if (store_get(m->o.store, key, strlen(key), &tok) != 0)
        return; /* checked a moment ago; the next resend or the deadline decides */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    joinmsg_pack_forward(&pk, w->seq, w->token_id, &tok, w->join, w->join_len, false);
    meshnode_send(m, w->arbiter, (const uint8_t *)sb.data, sb.size); /* loss: resent */
    /* No answer for a while: the arbiter may be alive but cut off from us alone (a firewall,
     * a partial partition: SWIM's indirect probes keep it alive). Other PoPs pass the FORWARD
     * on and its VERDICT back; the decision is still the arbiter's, taken once. */
    if (clock_mono_ms() >= w->relay_ms) {
        if (!w->relays[0]) {
            size_t n, k = 0;
            const reg_node_t *reg = meshnode_registry(m, &n);
            for (size_t i = 0; i < n && k < MESHJOIN_RELAYS_PER_JOIN; i++)
                if (!reg[i].removed && reg[i].role == ROLE_POP && reg[i].id != w->arbiter &&
                    reg[i].id != m->o.id->node_id && meshnode_is_alive(m, reg[i].id))
                    w->relays[k++] = reg[i].id;
        }
        for (size_t k = 0; k < MESHJOIN_RELAYS_PER_JOIN && w->relays[k]; k++)
            meshnode_send(m, w->relays[k], (const uint8_t *)sb.data, sb.size);
    }
    msgpack_sbuffer_destroy(&sb);
    store_entry_free(&tok);
}

static void on_wait_timer(struct ev_loop *loop, ev_timer *t, int revents);

/* The seed's checks passed (and the test hold is over): decide here if this PoP is the
 * arbiter, else ask it. */
static void wait_proceed(struct join_wait *w)
{
    meshnode_t *m = w->m;
    const reg_node_t *arb = arbiter_of(m);
    if (!arb || arb->id == m->o.id->node_id) {
        struct refusal ref;
        if (join_decide(m, w->token_id, &w->want, &ref))
            reply_err(m, w->rid, w->rl, &ref);
        else
            answer_ok(m, w->rid, w->rl, &w->want, w->token_id);
        wait_done(w);
        return;
    }
    w->arbiter = arb->id;
    if (!meshnode_is_alive(m, arb->id)) {
        swim_member_info_t mi;
        if (swim_member_get(m->swim, arb->id, &mi) == 0 && mi.state == SWIM_DEAD) {
            arbiter_down(w, arb, "is down (the mesh's failure detector says dead)");
            return;
        }
    }
    w->deadline_ms = clock_mono_ms() + MESHJOIN_ARBITER_MS;
    w->relay_ms = clock_mono_ms() + MESHJOIN_RELAY_AFTER_MS;
    send_forward(w);
    ev_timer_stop(m->o.loop, &w->timer);
    ev_timer_set(&w->timer, MESHJOIN_RESEND_MS / 1000.0, MESHJOIN_RESEND_MS / 1000.0);
    ev_timer_start(m->o.loop, &w->timer);
}

static void on_wait_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    struct join_wait *w = t->data;
    if (!w->arbiter) { /* the hold is over */
        wait_proceed(w);
        return;
    }
    if (clock_mono_ms() >= w->deadline_ms) {
        char what[64];
        snprintf(what, sizeof(what), "did not answer within %d ms", MESHJOIN_ARBITER_MS);
        arbiter_down(w, meshnode_reg_find(w->m, w->arbiter), what);
        return;
    }
    send_forward(w);
}

void meshjoin_handle(meshnode_t *m, uint64_t token_id, const uint8_t *rid, size_t rl,
                     const uint8_t *msg, size_t len)
{
    reg_node_t want;
    const char *why;
    struct refusal ref;
    if (joinmsg_decode_join(msg, len, &want, &why) != 0) {
        m->bad_messages++;
        refuse(&ref, "malformed", "malformed join request: %s", why);
        reply_err(m, rid, rl, &ref);
        return;
    }
    /* join_check names a replica (NAME-k) in want; the decision, here or at the arbiter,
     * starts again from the JOIN as asked, which is what the token's site binding is checked
     * against. */
    reg_node_t asked = want;
    bool again;
    if (join_check(m, token_id, &want, &again, &ref)) {
        reply_err(m, rid, rl, &ref);
        return;
    }
    if (again) {
        answer_ok(m, rid, rl, &want, token_id);
        return;
    }
    struct meshjoin *j = m->join;
    struct join_wait *w = NULL;
    for (size_t i = 0; i < MESHJOIN_WAITING_MAX && !w; i++)
        if (!j->waits[i].used)
            w = &j->waits[i];
    if (!w || len > sizeof(w->join) || rl > sizeof(w->rid)) {
        refuse(&ref, "busy",
               "this seed already has %d joins waiting to be decided; try again in a few seconds",
               MESHJOIN_WAITING_MAX);
        reply_err(m, rid, rl, &ref);
        return;
    }
    *w = (struct join_wait){.used = true, .seq = ++j->next_seq, .token_id = token_id, .m = m};
    w->want = asked;
    w->want.id = want.id;
    memcpy(w->join, msg, len);
    w->join_len = len;
    memcpy(w->rid, rid, rl);
    w->rl = rl;
    ev_init(&w->timer, on_wait_timer);
    w->timer.data = w;
    if (j->hold_ms) {
        ev_timer_set(&w->timer, (double)j->hold_ms / 1000.0, 0.);
        ev_timer_start(m->o.loop, &w->timer);
        return;
    }
    wait_proceed(w);
}

/* A seed that cannot reach the arbiter asked us to pass its FORWARD on: sent again under our
 * own seq (seeds' seqs may clash), marked relayed (no PoP passes it on twice, so two PoPs that
 * disagree on the arbiter cannot bounce it), the VERDICT to go back to the seed. A repeat
 * (the seed resends) reuses the slot. */
static void relay_forward(meshnode_t *m, uint64_t seed, const joinmsg_forward_t *f,
                          uint64_t arbiter)
{
    struct meshjoin *j = m->join;
    uint64_t now = clock_mono_ms();
    struct join_relay *r = NULL, *free_slot = NULL;
    for (size_t i = 0; i < MESHJOIN_RELAYS_MAX; i++) {
        struct join_relay *c = &j->relays[i];
        if (c->seq && now >= c->until_ms)
            c->seq = 0; /* expired */
        if (c->seq && c->seed == seed && c->seed_seq == f->seq)
            r = c;
        else if (!c->seq && !free_slot)
            free_slot = c;
    }
    if (!r) {
        if (!free_slot) {
            m->join_relay_full++;
            return; /* the seed's deadline tells the joiner */
        }
        r = free_slot;
        *r = (struct join_relay){.seq = ++j->next_seq, .seed = seed, .seed_seq = f->seq,
                                 .arbiter = arbiter, .until_ms = now + 2 * MESHJOIN_ARBITER_MS};
        m->join_relayed++;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    joinmsg_pack_forward(&pk, r->seq, f->token_id, &f->token, f->join, f->join_len, true);
    meshnode_send(m, r->arbiter, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

/* A VERDICT for a FORWARD we relayed: back to its seed under the seed's seq. true if it was. */
static bool relay_verdict(meshnode_t *m, uint64_t from, const joinmsg_verdict_t *v)
{
    struct meshjoin *j = m->join;
    for (size_t i = 0; i < MESHJOIN_RELAYS_MAX; i++) {
        struct join_relay *r = &j->relays[i];
        if (!r->seq || r->seq != v->seq || r->arbiter != from)
            continue;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        joinmsg_pack_verdict(&pk, r->seed_seq, v->code, v->message, v->has_node ? &v->node : NULL);
        meshnode_send(m, r->seed, (const uint8_t *)sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
        return true; /* kept until it expires: a resent FORWARD gets its answer again */
    }
    return false;
}

/* A FORWARD from seed `from`: decided here if this PoP is the arbiter, and answered. */
void meshjoin_forward(meshnode_t *m, uint64_t from, const uint8_t *msg, size_t len)
{
    joinmsg_forward_t f;
    const char *why;
    if (joinmsg_decode_forward(msg, len, &f, &why) != 0) {
        m->bad_messages++;
        return; /* the seed gives up after its deadline */
    }
    /* Copied: writing the node's record below replaces the registry snapshot. */
    const reg_node_t *seed = meshnode_reg_find(m, from);
    char seed_name[NODECFG_NAME_MAX + 1];
    snprintf(seed_name, sizeof(seed_name), "%s", seed ? seed->name : "?");
    struct refusal ref;
    memset(&ref, 0, sizeof(ref));
    reg_node_t want;
    store_entry_t node = {0};
    bool admitted = false;
    const reg_node_t *arb = arbiter_of(m);
    if (arb && arb->id != m->o.id->node_id && !f.relayed) {
        /* Not ours to decide, and not relayed yet: a seed asks us to pass it on. With the
         * arbiter not alive here either, say nothing: the seed's deadline answers the joiner
         * "arbiter-down", which is what it is. */
        if (arb->id != from && meshnode_is_alive(m, arb->id))
            relay_forward(m, from, &f, arb->id);
        return;
    }
    if (!arb || arb->id != m->o.id->node_id) {
        refuse(&ref, "not-arbiter",
               "PoP '%s', asked to decide the join, sees PoP '%s' as the join arbiter (a removal "
               "is still spreading); try again in a few seconds",
               m->o.cfg->name, arb ? arb->name : "?");
    } else if (joinmsg_decode_join(f.join, f.join_len, &want, &why) != 0) {
        refuse(&ref, "malformed", "malformed join request: %s", why);
    } else {
        /* The seed's copy of the token's record may be newer than ours (minted there a moment
         * ago); last writer wins, so a revocation we hold is kept. */
        store_merge(m->o.store, &f.token, 1, clock_wall_ms());
        if (join_decide(m, f.token_id, &want, &ref) == 0) {
            char key[64];
            reg_node_key(want.id, key, sizeof(key));
            if (store_get(m->o.store, key, strlen(key), &node) == 0)
                admitted = true;
            else
                refuse(&ref, "failed", "the mesh could not read back the node's record: %s",
                       store_last_error(m->o.store));
        }
    }
    if (admitted)
        log_info("mesh: decided a join at %s: %s %s (%016llx) admitted with token %016llx",
                 seed_name, node_role_name(want.role), want.name, (unsigned long long)want.id,
                 (unsigned long long)f.token_id);
    else
        log_info("mesh: decided a join at %s: refused: %s", seed_name, ref.text);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    joinmsg_pack_verdict(&pk, f.seq, admitted ? "" : ref.code, admitted ? "" : ref.text,
                         admitted ? &node : NULL);
    meshnode_send(m, from, (const uint8_t *)sb.data, sb.size); /* lost: the seed asks again */
    msgpack_sbuffer_destroy(&sb);
    if (admitted)
        store_entry_free(&node);
}

/* A VERDICT from `from` on one of our waiting JOINs: answered to the joiner. */
void meshjoin_verdict(meshnode_t *m, uint64_t from, const uint8_t *msg, size_t len)
{
    joinmsg_verdict_t v;
    const char *why;
    if (joinmsg_decode_verdict(msg, len, &v, &why) != 0) {
        m->bad_messages++;
        return;
    }
    if (relay_verdict(m, from, &v))
        return;
    struct join_wait *w = NULL;
    for (size_t i = 0; i < MESHJOIN_WAITING_MAX && !w; i++) {
        struct join_wait *c = &m->join->waits[i];
        bool via = false;
        for (size_t k = 0; k < MESHJOIN_RELAYS_PER_JOIN; k++)
            via |= c->relays[k] && c->relays[k] == from;
        if (c->used && c->seq == v.seq && (c->arbiter == from || via))
            w = c;
    }
    if (!w)
        return; /* an answer to a resend, already used; or late */
    if (v.code[0]) {
        struct refusal ref;
        snprintf(ref.code, sizeof(ref.code), "%s", v.code);
        snprintf(ref.text, sizeof(ref.text), "%s", v.message);
        reply_err(m, w->rid, w->rl, &ref);
        wait_done(w);
        return;
    }
    /* The arbiter's record of the joiner: the one JOIN_OK must carry, under the joiner's key
     * (the arbiter names replicas, so the name may differ from the one asked for). */
    uint64_t id;
    reg_node_t rec;
    if (reg_node_key_id(v.node.key, v.node.klen, &id) != 0 || id != w->want.id ||
        reg_node_parse(v.node.value, v.node.vlen, id, &rec, &why) != 0 ||
        store_merge(m->o.store, &v.node, 1, clock_wall_ms()) < 0) {
        m->bad_messages++;
        struct refusal ref;
        refuse(&ref, "failed", "the join arbiter admitted the node but sent an unusable record");
        reply_err(m, w->rid, w->rl, &ref);
        wait_done(w);
        return;
    }
    answer_ok(m, w->rid, w->rl, &rec, w->token_id);
    wait_done(w);
}

void meshjoin_start(meshnode_t *m)
{
    m->join = xcalloc(1, sizeof(*m->join));
    const char *hold = getenv("POPMESH_TEST_JOIN_HOLD_MS");
    if (hold && *hold) {
        m->join->hold_ms = strtoull(hold, NULL, 10);
        log_warn("mesh: POPMESH_TEST_JOIN_HOLD_MS=%" PRIu64 ": every join is held that long "
                 "(a test knob)",
                 m->join->hold_ms);
    }
}

void meshjoin_stop(meshnode_t *m)
{
    if (!m->join)
        return;
    for (size_t i = 0; i < MESHJOIN_WAITING_MAX; i++)
        if (m->join->waits[i].used)
            ev_timer_stop(m->o.loop, &m->join->waits[i].timer);
    free(m->join);
    m->join = NULL;
}
