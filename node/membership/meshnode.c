/* meshnode: see meshnode.h.
 *
 * BACKGROUND
 *
 * Three sources of truth meet here and must not be confused:
 *  - the registry (node/ and token/ records in the replicated store) says who MAY be in the
 *    mesh and with which key. It is durable, converges by last-writer-wins, and is what the
 *    ZAP handler consults, so admission is decided by replicated state and nothing else;
 *  - SWIM says who is alive right now. It is soft state, rebuilt after a restart from the
 *    registry (every registered member is handed to SWIM to probe);
 *  - the CURVE handshake says who sent a message. A member's node id is derived from its key,
 *    so no message can claim to come from another node.
 *
 * BEHAVIOR
 *
 *  - Fresh local writes are broadcast through SWIM's piggyback queue (fast path, lossy); every
 *    MESH_AE_PERIOD a digest exchange with one random alive member repairs whatever was lost
 *    (slow path, complete). Writes larger than a broadcast payload travel by the slow path.
 *  - A change to any node/ record reloads the registry: new members are given to SWIM, removed
 *    ones are dropped from SWIM and the transport, and a node that finds itself removed stops.
 *  - The node that executes a removal also pushes the removal record straight to the removed
 *    node: everyone else stops talking to it the moment they learn, so gossip alone might never
 *    tell it.
 *
 * This file is the core those rules live in; joining, health vectors, clocks and the control
 * commands each have their own file (meshnode_int.h says which owns what). */
#include "node/membership/meshnode.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/rng.h"
#include "common/xmalloc.h"
#include "gossip/antientropy.h"
#include "gossip/swim.h"
#include "node/membership/meshnet.h"
#include "node/membership/meshnode_int.h"
#include "node/membership/meshroute.h"
#include "node/records/registry.h"
#include "node/records/token.h"

#include <errno.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REMOVAL_PUSHES  4   /* times the removal record is pushed to the removed node */
#define LEAVE_DRAIN_MAX 1.0 /* s: at most this long spreading LEFT on shutdown */
#define PUSH_FANOUT_MAX 16  /* peers each new write is pushed to, by each node that learns it */

const reg_node_t *meshnode_reg_find(const meshnode_t *m, uint64_t id)
{
    for (size_t i = 0; i < m->nreg; i++)
        if (m->reg[i].id == id)
            return &m->reg[i];
    return NULL;
}

const reg_node_t *meshnode_reg_find_name(const meshnode_t *m, const char *name)
{
    for (size_t i = 0; i < m->nreg; i++)
        if (!m->reg[i].removed && strcmp(m->reg[i].name, name) == 0)
            return &m->reg[i];
    return NULL;
}

/* ---- SWIM metadata: [name, addr, curve_pk] ------------------------------------------------ */

static void pack_meta(msgpack_sbuffer *sb, const char *name, const char *addr, const uint8_t pk[32])
{
    msgpack_packer pk_;
    msgpack_packer_init(&pk_, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk_, 3);
    mpw_str(&pk_, name);
    mpw_str(&pk_, addr);
    mpw_bin(&pk_, pk, 32);
}

/* Parses meta; the key is trusted only if it is the key of the member's id. */
int meshnode_parse_meta(const uint8_t *meta, size_t len, uint64_t id, char *name, size_t nl,
                        char *addr, size_t al, uint8_t pk[32])
{
    mpr_t r;
    uint32_t n, sl;
    const char *s;
    const uint8_t *b;
    mpr_init(&r, meta, len);
    if (mpr_array(&r, &n) || n < 3 || mpr_str(&r, &s, &sl) || sl >= nl)
        return -EBADMSG;
    memcpy(name, s, sl);
    name[sl] = '\0';
    if (mpr_str(&r, &s, &sl) || sl >= al || memchr(s, '\0', sl))
        return -EBADMSG;
    memcpy(addr, s, sl);
    addr[sl] = '\0';
    if (mpr_bin(&r, &b, &sl) || sl != 32 || identity_node_id_of(b) != id)
        return -EBADMSG;
    memcpy(pk, b, 32);
    return 0;
}

/* Where and how to reach member id: the registry, else what SWIM heard (self-certified).
 * *flags: MESHNET_NO_DIAL when its record says it takes no inbound connections. */
static int peer_endpoint(meshnode_t *m, uint64_t id, char *addr, size_t al, uint8_t pk[32],
                         unsigned *flags)
{
    const reg_node_t *r = meshnode_reg_find(m, id);
    *flags = 0;
    if (r) {
        if (r->removed)
            return -EPERM;
        snprintf(addr, al, "%s", r->addr);
        memcpy(pk, r->curve_pk, 32);
        *flags = r->no_inbound ? MESHNET_NO_DIAL : 0;
        return 0;
    }
    swim_member_info_t info;
    char name[NODECFG_NAME_MAX + 1];
    if (swim_member_get(m->swim, id, &info) == 0 &&
        meshnode_parse_meta(info.meta, info.meta_len, id, name, sizeof(name), addr, al, pk) == 0)
        return 0;
    return -ENOENT;
}

int meshnode_send(meshnode_t *m, uint64_t id, const uint8_t *msg, size_t len)
{
    char addr[NODECFG_ADDR_MAX + 1];
    uint8_t pk[32];
    unsigned flags;
    int rc = peer_endpoint(m, id, addr, sizeof(addr), pk, &flags);
    if (rc)
        return rc;
    return meshnet_send(m->net, id, addr, pk, msg, len, flags);
}

/* ---- SWIM glue ------------------------------------------------------------------------------ */

void meshnode_swim_rearm(meshnode_t *m)
{
    uint64_t now = clock_mono_ms(), next = swim_next_deadline(m->swim);
    double delay = next > now ? (double)(next - now) / 1000.0 : 0.0;
    ev_timer_stop(m->o.loop, &m->swim_timer);
    ev_timer_set(&m->swim_timer, delay, 0.0);
    ev_timer_start(m->o.loop, &m->swim_timer);
}

static void on_swim_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshnode_t *m = t->data;
    swim_set_wall_ms(m->swim, clock_wall_ms());
    swim_tick(m->swim, clock_mono_ms());
    meshnode_swim_rearm(m);
}

static void io_send(void *ctx, uint64_t dest, const uint8_t *msg, size_t len)
{
    meshnode_send(ctx, dest, msg, len); /* loss is SWIM's business */
}

static void io_member_changed(void *ctx, const swim_member_info_t *mi, int old_state)
{
    meshnode_t *m = ctx;
    const reg_node_t *r = meshnode_reg_find(m, mi->id);
    char name[NODECFG_NAME_MAX + 1] = "?", addr[NODECFG_ADDR_MAX + 1];
    uint8_t pk[32];
    if (r)
        snprintf(name, sizeof(name), "%s", r->name);
    else
        meshnode_parse_meta(mi->meta, mi->meta_len, mi->id, name, sizeof(name), addr, sizeof(addr),
                            pk);
    if (m->routes && mi->id != m->o.id->node_id) {
        if (mi->state == SWIM_DEAD || mi->state == SWIM_LEFT)
            meshroute_forget(m->routes, mi->id);
        if (old_state != (int)mi->state)
            meshroute_publish_soon(m->routes);
    }
    if (old_state != (int)mi->state)
        meshnode_changed(m);
    if (old_state < 0)
        log_info("mesh: member %s (%016llx) is %s", name, (unsigned long long)mi->id,
                 swim_state_name(mi->state));
    else if ((int)mi->state != old_state)
        log_msg(mi->state == SWIM_DEAD ? LOG_WARN : LOG_INFO,
                "mesh: member %s (%016llx) %s -> %s (incarnation %llu)", name,
                (unsigned long long)mi->id, swim_state_name((enum swim_state)old_state),
                swim_state_name(mi->state), (unsigned long long)mi->incarnation);
}

static void registry_reload(meshnode_t *m);

static void ls_recomputed(void *ctx)
{
    meshnode_changed(ctx);
}

int meshnode_add_change_hook(meshnode_t *m, void (*fn)(void *ctx), void *ctx)
{
    for (unsigned i = 0; i < MESHNODE_CHANGE_HOOKS; i++)
        if (!m->change_hooks[i].fn) {
            m->change_hooks[i].fn = fn;
            m->change_hooks[i].ctx = ctx;
            return 0;
        }
    return -ENOSPC;
}

void meshnode_remove_change_hook(meshnode_t *m, void (*fn)(void *ctx), void *ctx)
{
    for (unsigned i = 0; i < MESHNODE_CHANGE_HOOKS; i++)
        if (m->change_hooks[i].fn == fn && m->change_hooks[i].ctx == ctx)
            m->change_hooks[i].fn = NULL;
}

void meshnode_changed(meshnode_t *m)
{
    for (unsigned i = 0; i < MESHNODE_CHANGE_HOOKS; i++)
        if (m->change_hooks[i].fn)
            m->change_hooks[i].fn(m->change_hooks[i].ctx);
}

bool meshnode_pop_health(const meshnode_t *m, uint64_t id, bool *ingress_up,
                         uint16_t *load_permille)
{
    const struct health *h = meshhealth_of(m, id);
    if (!h || h->seq == 0)
        return false;
    if (ingress_up)
        *ingress_up = h->ingress_up;
    if (load_permille)
        *load_permille = (uint16_t)h->load_permille;
    return true;
}

/* The registry snapshot follows the store's change feed: whatever commits a node/ record (a
 * local write, a gossiped entry, a PUSH, anti-entropy) reloads it once per transaction. */
static void on_registry_change(void *ctx, const store_entry_t *changes, size_t n)
{
    (void)changes, (void)n;
    registry_reload(ctx);
}

/* A broadcast payload is [kind, body]: MESH_BCAST_ENTRY carries one store entry (antientropy.h's
 * entry encoding), MESH_BCAST_HEALTH a node's health vector. Returns whether it was news, which
 * is what decides if SWIM gossips it on. */
static bool io_deliver(void *ctx, uint64_t key, const uint8_t *payload, size_t len)
{
    meshnode_t *m = ctx;
    mpr_t r;
    uint32_t n;
    uint64_t kind;
    store_entry_t e;
    mpr_init(&r, payload, len);
    if (mpr_array(&r, &n) || n != 2 || mpr_uint(&r, &kind)) {
        m->bad_messages++;
        return false;
    }
    if (kind == MESH_BCAST_HEALTH)
        return meshhealth_merge(m, &r);
    if (kind == MESH_BCAST_LINKSTATE) {
        const uint8_t *body;
        size_t bl;
        if (mpr_object(&r, &body, &bl) || r.left) {
            m->bad_messages++;
            return false;
        }
        return meshroute_receive(m->routes, body, bl);
    }
    if (kind == MESH_BCAST_LOGINS) {
        const uint8_t *body;
        size_t bl;
        int rc;
        if (mpr_object(&r, &body, &bl) || r.left) {
            m->bad_messages++;
            return false;
        }
        if (!m->logins_fn)
            return false;
        if ((rc = m->logins_fn(m->logins_ctx, body, bl)) < 0)
            m->bad_messages++;
        return rc > 0;
    }
    if (kind != MESH_BCAST_ENTRY || ae_entry_read(&r, &e) || r.left) {
        m->bad_messages++;
        return false;
    }
    return store_merge(m->o.store, &e, 1, clock_wall_ms()) > 0;
}

static uint64_t broadcast_key(const char *key, size_t klen)
{
    static const uint8_t k[crypto_shorthash_KEYBYTES] = "popmesh/bcast/1";
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const uint8_t *)key, klen, k);
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return v;
}

struct fanout {
    meshnode_t *m;
    uint64_t except;
    uint64_t chosen[PUSH_FANOUT_MAX];
    unsigned n, want;
    uint64_t seen;
};

static void fanout_pick(const swim_member_info_t *mi, void *ctx);

/* Pushes an entry straight to a few random alive peers (not `except`). Gossip by piggyback
 * needs about log2(N) probe intervals to reach everyone; forwarding each new write at once to
 * k peers, who do the same, takes about log_k(N) network round trips instead. Only the first
 * arrival of a write is forwarded, so a write costs k messages per node, once. With push
 * gossip a node is missed with probability about e^-k, so k = ln(N) + 3 leaves a 5% chance
 * that any of the N nodes is missed (it then gets the write from piggyback or anti-entropy,
 * a few hundred milliseconds later). */
static void push_fanout(meshnode_t *m, const store_entry_t *e, uint64_t except)
{
    size_t members = swim_member_count(m->swim);
    unsigned want = 3;
    while (want < PUSH_FANOUT_MAX && (double)want < log((double)members + 1.0) + 3.0)
        want++;
    struct fanout f = {.m = m, .except = except, .want = want};
    swim_foreach(m->swim, fanout_pick, &f);
    if (f.n == 0)
        return;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, MESH_VERSION);
    msgpack_pack_uint32(&pk, MESH_MSG_PUSH);
    ae_entry_pack(&pk, e);
    for (unsigned i = 0; i < f.n; i++)
        meshnode_send(m, f.chosen[i], (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
}

void meshnode_published(meshnode_t *m, const store_entry_t *e)
{
    push_fanout(m, e, 0);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, MESH_BCAST_ENTRY);
    ae_entry_pack(&pk, e);
    /* Too large to piggyback: anti-entropy carries it within a period or two. */
    if (sb.size <= SWIM_PAYLOAD_MAX)
        swim_broadcast(m->swim, broadcast_key(e->key, e->klen), (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    meshnode_swim_rearm(m);
}

void meshnode_set_trust(meshnode_t *m, const meshnode_trust_t *t)
{
    m->trust = *t;
}

void meshnode_set_logins_sink(meshnode_t *m, meshnode_logins_fn fn, void *ctx)
{
    m->logins_fn = fn;
    m->logins_ctx = ctx;
}

int meshnode_broadcast_logins(meshnode_t *m, const uint8_t *body, size_t len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, MESH_BCAST_LOGINS);
    mpw_raw(&pk, body, len);
    /* Keyed by node: a newer summary (cumulative counts) replaces the queued older one. */
    int rc = swim_broadcast(m->swim, m->o.id->node_id ^ 0x6c6f67696e730000ull,
                            (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    meshnode_swim_rearm(m);
    return rc;
}

/* ---- registry ------------------------------------------------------------------------------- */

static int reload_one(const store_entry_t *e, void *ctx)
{
    meshnode_t *m = ctx;
    uint64_t id;
    reg_node_t rec;
    const char *why;
    if (reg_node_key_id(e->key, e->klen, &id) != 0 ||
        reg_node_parse(e->value, e->vlen, id, &rec, &why) != 0) {
        log_warn("mesh: ignoring malformed registry record %.*s", (int)e->klen, e->key);
        return 0;
    }
    m->reg = xrealloc(m->reg, (m->nreg + 1) * sizeof(*m->reg));
    m->reg[m->nreg++] = rec;
    return 0;
}

static void registry_reload(meshnode_t *m)
{
    free(m->reg);
    m->reg = NULL;
    m->nreg = 0;
    store_list(m->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), reload_one, m);
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < m->nreg; i++) {
        const reg_node_t *r = &m->reg[i];
        if (r->id == m->o.id->node_id) {
            if (r->removed && !m->removed) {
                m->removed = true;
                log_error("this node was removed from the mesh by an operator; stopping. "
                          "To come back it must join again as a new node (popd join).");
                if (m->o.on_removed)
                    m->o.on_removed(m->o.ctx);
            }
            continue;
        }
        if (r->removed) {
            if (swim_remove_member(m->swim, r->id) == 0)
                log_info("mesh: member %s (%016llx) was removed from the mesh", r->name,
                         (unsigned long long)r->id);
            if (m->routes)
                meshroute_forget(m->routes, r->id);
            bool pushing = false;
            for (int k = 0; k < MESHNODE_PENDING_PUSH; k++)
                pushing |= m->pushes[k].id == r->id && m->pushes[k].left > 0;
            if (!pushing)
                meshnet_forget(m->net, r->id);
            continue;
        }
        if (r->role != ROLE_POP)
            continue; /* sites hold tunnels; they are not members of the PoP mesh */
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        pack_meta(&sb, r->name, r->addr, r->curve_pk);
        swim_add_member(m->swim, r->id, (const uint8_t *)sb.data, sb.size, false, now);
        msgpack_sbuffer_destroy(&sb);
    }
}

/* ---- anti-entropy -----------------------------------------------------------------------------
 */

struct reply_ctx {
    meshnode_t *m;
    uint64_t peer;
};

static void ae_reply(void *ctx, const uint8_t *buf, size_t len)
{
    struct reply_ctx *rc = ctx;
    meshnode_send(rc->m, rc->peer, buf, len);
}

struct pick {
    meshnode_t *m;
    uint64_t chosen;
    uint64_t seen;
};

/* Reservoir sampling of up to PUSH_FANOUT alive peers in one pass. */
static void fanout_pick(const swim_member_info_t *mi, void *ctx)
{
    struct fanout *f = ctx;
    if (mi->id == f->m->o.id->node_id || mi->id == f->except || mi->state != SWIM_ALIVE)
        return;
    f->seen++;
    if (f->n < f->want) {
        f->chosen[f->n++] = mi->id;
        return;
    }
    uint64_t j = rng_next(&f->m->rng) % f->seen;
    if (j < f->want)
        f->chosen[j] = mi->id;
}

static void pick_alive(const swim_member_info_t *mi, void *ctx)
{
    struct pick *p = ctx;
    if (mi->id == p->m->o.id->node_id || mi->state != SWIM_ALIVE)
        return;
    /* Reservoir sampling: a uniform choice in one pass, without a copy of the list. */
    p->seen++;
    if (rng_next(&p->m->rng) % p->seen == 0)
        p->chosen = mi->id;
}

static void on_ae_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshnode_t *m = t->data;
    struct pick p = {.m = m};
    swim_foreach(m->swim, pick_alive, &p);
    if (p.chosen) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        if (ae_digest_msg(m->o.store, ++m->ae_seq, &sb) == 0 &&
            meshnode_send(m, p.chosen, (const uint8_t *)sb.data, sb.size) == 0)
            m->ae.digests_sent++;
        msgpack_sbuffer_destroy(&sb);
    }
    /* Jitter keeps nodes that started together from syncing in lockstep. */
    t->repeat = MESH_AE_PERIOD * (0.75 + (double)rng_below(&m->rng, 500) / 1000.0);
    ev_timer_again(loop, t);
}

/* A node that takes no inbound connections is reached only on connections it opens: it keeps
 * one to every PoP (meshnet_keep: a keepalive when idle, so the idle check never closes it and
 * the PoP learns the way back at once, before it has anything to say to us). A node that was
 * not told so keeps one to each PoP found unable to dial it (meshnode_must_dial): a firewall
 * nobody declared. Every second, a walk over the registry: no work beyond a keepalive each. */
static void on_keep_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    meshnode_t *m = t->data;
    for (size_t i = 0; i < m->nreg; i++) {
        const reg_node_t *r = &m->reg[i];
        if (r->removed || r->role != ROLE_POP || r->id == m->o.id->node_id || r->no_inbound)
            continue; /* two PoPs behind firewalls cannot reach each other: none to keep */
        if (meshnode_must_dial(m, r->id))
            meshnet_keep(m->net, r->id, r->addr, r->curve_pk);
    }
}

/* Sends the current record at key straight to member id as an ENTRIES message without
 * "want": the receiver merges it and answers nothing. For records that must not wait for
 * gossip: a removal (the removed node hears nothing else) and a new member (its peers must know
 * its key before its first probe arrives, or their ZAP handlers refuse it). */
static void push_record(meshnode_t *m, uint64_t id, const char *key)
{
    store_entry_t e;
    if (store_get(m->o.store, key, strlen(key), &e) != 0)
        return;
    uint8_t buckets[STORE_BUCKETS / 8] = {0};
    unsigned b = store_bucket_of(key, strlen(key));
    buckets[b / 8] |= (uint8_t)(1u << (b % 8));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_uint32(&pk, AE_VERSION);
    msgpack_pack_uint32(&pk, AE_ENTRIES);
    msgpack_pack_uint64(&pk, 0);
    mpw_bin(&pk, buckets, sizeof(buckets));
    msgpack_pack_false(&pk);
    msgpack_pack_array(&pk, 1);
    ae_entry_pack(&pk, &e);
    const reg_node_t *r = meshnode_reg_find(m, id);
    if (r) /* the removed node included: peer_endpoint would refuse it */
        meshnet_send(m->net, id, r->addr, r->curve_pk, (const uint8_t *)sb.data, sb.size,
                     r->no_inbound ? MESHNET_NO_DIAL : 0);
    msgpack_sbuffer_destroy(&sb);
    store_entry_free(&e);
}

struct push_all {
    meshnode_t *m;
    const char *key;
    uint64_t except;
};

static void push_to_alive(const swim_member_info_t *mi, void *ctx)
{
    struct push_all *p = ctx;
    if (mi->state == SWIM_ALIVE && mi->id != p->m->o.id->node_id && mi->id != p->except)
        push_record(p->m, mi->id, p->key);
}

void meshnode_push_to_alive(meshnode_t *m, const char *key, uint64_t except)
{
    struct push_all pa = {m, key, except};
    swim_foreach(m->swim, push_to_alive, &pa);
}

static int count_one(const store_entry_t *e, void *ctx)
{
    (*(uint64_t *)ctx)++;
    return 0;
}

uint64_t meshnode_count_prefix(const meshnode_t *m, const char *prefix)
{
    uint64_t n = 0;
    store_list(m->o.store, prefix, strlen(prefix), count_one, &n);
    return n;
}

int meshnode_put_value(meshnode_t *m, const char *key, size_t klen, const void *value,
                       size_t vlen, store_entry_t *out)
{
    store_entry_t e = {0};
    int rc = store_put(m->o.store, key, klen, value, vlen, clock_wall_ms(), &e);
    if (rc)
        return rc;
    /* store_put fills only the version and origin; what spreads is the record itself */
    e.key = (char *)key;
    e.klen = klen;
    e.value = (uint8_t *)value;
    e.vlen = vlen;
    meshnode_published(m, &e);
    if (out)
        *out = e;
    return 0;
}

int meshnode_put_record(meshnode_t *m, const char *key, const msgpack_sbuffer *val)
{
    return meshnode_put_value(m, key, strlen(key), val->data, val->size, NULL);
}

int meshnode_del_record(meshnode_t *m, const char *key, size_t klen, store_entry_t *out)
{
    store_entry_t e = {0};
    int rc = store_del(m->o.store, key, klen, clock_wall_ms(), &e);
    if (rc)
        return rc;
    e.key = (char *)key; /* a tombstone spreads like a write */
    e.klen = klen;
    e.value = NULL;
    e.vlen = 0;
    e.tombstone = true;
    meshnode_published(m, &e);
    if (out)
        *out = e;
    return 0;
}

const reg_node_t *meshnode_registry(const meshnode_t *m, size_t *n)
{
    *n = m->nreg;
    return m->reg;
}

store_t *meshnode_store(const meshnode_t *m)
{
    return m->o.store;
}

/* ---- transport callbacks ----------------------------------------------------------------------
 */

static int authorize(void *ctx, const uint8_t client_pk[32], char *user_id)
{
    meshnode_t *m = ctx;
    uint64_t id = identity_node_id_of(client_pk);
    const reg_node_t *r = meshnode_reg_find(m, id);
    if (r && !r->removed && r->role == ROLE_POP && memcmp(r->curve_pk, client_pk, 32) == 0) {
        snprintf(user_id, MESHNET_USER_ID_MAX, "n:%016llx", (unsigned long long)id);
        return 1;
    }
    /* A token's join key: admitted whatever the token's state, so JOIN can say what is wrong
     * with it (expired, revoked, used up) instead of a silent refusal. */
    uint64_t tid = token_id_of(client_pk);
    char key[64];
    store_entry_t e;
    reg_token_key(tid, key, sizeof(key));
    if (store_get(m->o.store, key, strlen(key), &e) == 0) {
        reg_token_t t;
        const char *why;
        int ok = reg_token_parse(e.value, e.vlen, tid, &t, &why) == 0 &&
                 memcmp(t.join_pk, client_pk, 32) == 0;
        store_entry_free(&e);
        if (ok) {
            snprintf(user_id, MESHNET_USER_ID_MAX, "t:%016llx", (unsigned long long)tid);
            return 1;
        }
    }
    return 0;
}

/* A message in a version this node does not speak: dropped unread and counted. Logged at most
 * once per MESH_BAD_VERSION_LOG_S, with how many were dropped in between: a newer node would
 * send many, and each says the same thing. */
static void bad_version(meshnode_t *m, const char *user_id, uint64_t type, uint64_t version)
{
    m->bad_version++;
    double now = ev_now(m->o.loop);
    if (m->bad_version_log_at > 0 && now - m->bad_version_log_at < MESH_BAD_VERSION_LOG_S) {
        m->bad_version_quiet++;
        return;
    }
    const reg_node_t *r =
        user_id[0] == 'n' ? meshnode_reg_find(m, strtoull(user_id + 2, NULL, 16)) : NULL;
    log_warn("mesh: dropped a message of type %llu in version %llu from %s (%s), which this "
             "node does not speak (%llu more since the last report); is that node running a "
             "newer popmesh? Upgrade this one",
             (unsigned long long)type, (unsigned long long)version, r ? r->name : "?", user_id,
             (unsigned long long)m->bad_version_quiet);
    m->bad_version_log_at = now;
    m->bad_version_quiet = 0;
}

static void receive(void *ctx, const char *user_id, const uint8_t *rid, size_t rid_len,
                    const uint8_t *msg, size_t len)
{
    meshnode_t *m = ctx;
    uint64_t from = strtoull(user_id + 2, NULL, 16);
    mpr_t r;
    uint32_t n;
    uint64_t version, type;
    mpr_init(&r, msg, len);
    if (mpr_array(&r, &n) || n < 2 || mpr_uint(&r, &version) || mpr_uint(&r, &type)) {
        m->bad_messages++;
        return;
    }
    if (!meshmsg_version_ok(type, version)) {
        bad_version(m, user_id, type, version);
        return;
    }
    if (user_id[0] == 't') {
        if (type == MESH_MSG_JOIN)
            meshjoin_handle(m, from, rid, rid_len, msg, len);
        else
            m->bad_messages++; /* a token holder may only ask to join */
        return;
    }
    if (type >= MESH_MSG_SWIM_FIRST && type <= MESH_MSG_SWIM_LAST) {
        swim_set_wall_ms(m->swim, clock_wall_ms());
        swim_receive(m->swim, from, msg, len, clock_mono_ms());
        meshnode_swim_rearm(m);
    } else if (type == MESH_MSG_PUSH) {
        store_entry_t e;
        if (n != 3 || ae_entry_read(&r, &e) || r.left) {
            m->bad_messages++;
            return;
        }
        if (store_merge(m->o.store, &e, 1, clock_wall_ms()) > 0) {
            m->pushes_applied++;
            push_fanout(m, &e, from);
        }
    } else if (type == MESH_MSG_FORWARD) {
        meshjoin_forward(m, from, msg, len);
    } else if (type == MESH_MSG_VERDICT) {
        meshjoin_verdict(m, from, msg, len);
    } else if (type == MESH_MSG_AE_DIGEST || type == MESH_MSG_AE_ENTRIES) {
        struct reply_ctx rc = {m, from};
        ae_handle(m->o.store, msg, len, clock_wall_ms(), ae_reply, &rc, &m->ae);
    } else {
        m->bad_messages++;
    }
    meshclock_note_skew(m);
}

/* ---- removal pushes -------------------------------------------------------------------------- */

static void on_push_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshnode_t *m = t->data;
    int pending = 0;
    for (int i = 0; i < MESHNODE_PENDING_PUSH; i++) {
        struct removal_push *p = &m->pushes[i];
        if (p->left <= 0)
            continue;
        char key[64];
        reg_node_key(p->id, key, sizeof(key));
        push_record(m, p->id, key);
        if (--p->left == 0) {
            meshnet_forget(m->net, p->id);
            p->id = 0;
        } else {
            pending++;
        }
    }
    if (!pending)
        ev_timer_stop(loop, t);
}

/* ---- link state ---------------------------------------------------------------------------------
 */

/* permille: the least loss a link to a suspect peer is published with (250 ms of path cost). */
#define MESHNODE_SUSPECT_LOSS 250

struct collect_ctx {
    meshnode_t *m;
    ls_record_t *rec;
    bool unmeasured; /* a live PoP has no RTT yet: publish again soon */
};

static void collect_link(const swim_member_info_t *mi, void *ctx)
{
    struct collect_ctx *c = ctx;
    if (mi->id == c->m->o.id->node_id ||
        (mi->state != SWIM_ALIVE && mi->state != SWIM_SUSPECT))
        return;
    const reg_node_t *r = meshnode_reg_find(c->m, mi->id);
    if (!r || r->removed || r->role != ROLE_POP)
        return;
    if (mi->rtt_ms == 0) {
        c->unmeasured = true;
        return;
    }
    /* A suspect peer keeps its link, costed as at least MESHNODE_SUSPECT_LOSS loss: suspicion is
     * SWIM's "not sure yet", and on a loaded host it is often wrong. Dropping the link would cut
     * the only path of a small mesh on every false suspicion (both ends must claim a link); the
     * cost steers paths around it whenever another way exists, and a confirmed death removes
     * the peer's record at once (meshroute_forget). */
    uint32_t loss = mi->loss_permille > LS_LOSS_MAX ? LS_LOSS_MAX : mi->loss_permille;
    if (mi->state == SWIM_SUSPECT && loss < MESHNODE_SUSPECT_LOSS)
        loss = MESHNODE_SUSPECT_LOSS;
    /* The record keeps the best LS_LINKS_MAX by cost; a full record answers -ENOSPC for the
     * rest, which is the cap working, not an error. */
    ls_record_add_link(c->rec, mi->id, mi->rtt_ms * 1000, (uint16_t)loss);
}

static bool ls_collect(void *ctx, ls_record_t *rec)
{
    meshnode_t *m = ctx;
    struct collect_ctx c = {ctx, rec, false};
    swim_foreach(m->swim, collect_link, &c);
    if (m->site_source)
        m->site_source(m->site_source_ctx, rec); /* the sites attached here (dataplane) */
    return c.unmeasured;
}

static void ls_publish(void *ctx, const uint8_t *buf, size_t len)
{
    meshnode_t *m = ctx;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, MESH_BCAST_LINKSTATE);
    mpw_raw(&pk, buf, len);
    swim_broadcast(m->swim, m->o.id->node_id ^ 0x6c696e6b00000000ull, (const uint8_t *)sb.data,
                   sb.size);
    msgpack_sbuffer_destroy(&sb);
    meshnode_swim_rearm(m);
}

static void ls_name_of(void *ctx, uint64_t id, char *out, size_t len)
{
    const reg_node_t *r = meshnode_reg_find(ctx, id);
    if (r)
        snprintf(out, len, "%s", r->name);
}

int meshnode_remove_node(meshnode_t *m, const reg_node_t *n)
{
    reg_node_t rec = *n;
    rec.removed = true;
    msgpack_sbuffer sb;
    msgpack_packer vp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&vp, &sb, msgpack_sbuffer_write);
    reg_node_pack(&vp, &rec);
    char key[64];
    reg_node_key(rec.id, key, sizeof(key));
    /* Arm the direct pushes before the write: the reload it triggers keeps the transport to
     * the removed node open only while pushes are pending. Only a PoP listens for them; a
     * site learns from the PoPs that refuse its key. */
    bool member = rec.role == ROLE_POP;
    for (int i = 0; member && i < MESHNODE_PENDING_PUSH; i++) {
        if (m->pushes[i].left <= 0) {
            m->pushes[i].id = rec.id;
            m->pushes[i].left = REMOVAL_PUSHES;
            break;
        }
    }
    int rc = meshnode_put_record(m, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return rc;
    if (member) {
        ev_timer_stop(m->o.loop, &m->push_timer);
        ev_timer_set(&m->push_timer, 0.0, 0.5);
        ev_timer_start(m->o.loop, &m->push_timer);
    }
    log_warn("mesh: removed %s %s (%016llx) from the mesh",
             member ? "node" : node_role_name(rec.role), rec.name, (unsigned long long)rec.id);
    return 0;
}

/* ---- lifecycle ------------------------------------------------------------------------------- */

static void on_leave_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshnode_t *m = t->data;
    if (m->leave_done)
        m->leave_done(m->leave_ctx);
}

void meshnode_leave(meshnode_t *m, void (*done)(void *ctx), void *ctx)
{
    m->leave_done = done;
    m->leave_ctx = ctx;
    swim_leave(m->swim, clock_mono_ms());
    meshnode_swim_rearm(m);
    double drain = swim_leave_drain_ms(m->swim) / 1000.0;
    if (drain > LEAVE_DRAIN_MAX)
        drain = LEAVE_DRAIN_MAX;
    ev_timer_init(&m->leave_timer, on_leave_timer, drain, 0.0);
    m->leave_timer.data = m;
    ev_timer_start(m->o.loop, &m->leave_timer);
    log_info("mesh: leaving (spreading the news for %.1f s)", drain);
}

meshnode_t *meshnode_new(const meshnode_opts_t *o, char *err, size_t errlen)
{
    meshnode_t *m = xcalloc(1, sizeof(*m));
    m->o = *o;
    randombytes_buf(&m->rng, sizeof(m->rng));
    meshkey_id_hex(o->meshkey->pk, m->mesh_id);

    swim_config_t sc;
    swim_config_defaults(&sc);
    sc.self_id = o->id->node_id;
    sc.rng_seed = rng_next(&m->rng);
    swim_io_t io = {
        .ctx = m, .send = io_send, .member_changed = io_member_changed, .deliver = io_deliver};
    msgpack_sbuffer meta;
    msgpack_sbuffer_init(&meta);
    pack_meta(&meta, o->cfg->name, nodecfg_mesh_addr(o->cfg), o->id->curve_pk);
    m->swim = swim_new(&sc, &io, (const uint8_t *)meta.data, meta.size, clock_mono_ms());
    msgpack_sbuffer_destroy(&meta);
    if (!m->swim) {
        snprintf(err, errlen, "cannot start membership: %s", strerror(errno));
        goto fail;
    }

    meshroute_io_t rio = {.ctx = m,
                          .collect = ls_collect,
                          .publish = ls_publish,
                          .name_of = ls_name_of,
                          .recomputed = ls_recomputed};
    m->routes = meshroute_new(o->loop, o->id->node_id, &rio);

    meshnet_cb_t cb = {.ctx = m, .authorize = authorize, .receive = receive};
    m->net = meshnet_new(o->loop, o->zctx, o->cfg->mesh_listen, o->id->curve_pk, o->id->curve_sk,
                         &cb, err, errlen);
    if (!m->net)
        goto fail;

    registry_reload(m);
    m->reg_watch =
        store_watch(o->store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), on_registry_change, m);
    if (m->reg_watch < 0) {
        snprintf(err, errlen, "cannot watch the registry: %s", strerror(-m->reg_watch));
        goto fail;
    }
    if (m->removed) {
        snprintf(err, errlen,
                 "this node was removed from the mesh; it cannot run again. "
                 "Join with a new data directory (popd join)");
        goto fail;
    }
    /* Seeds from popd.conf: contacted even if the registry does not know them yet. */
    uint64_t now = clock_mono_ms();
    for (unsigned i = 0; i < o->cfg->nseeds; i++) {
        uint64_t id = identity_node_id_of(o->cfg->seeds[i].curve_pk);
        if (id == o->id->node_id)
            continue;
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        pack_meta(&sb, "", o->cfg->seeds[i].addr, o->cfg->seeds[i].curve_pk);
        swim_add_member(m->swim, id, (const uint8_t *)sb.data, sb.size, true, now);
        msgpack_sbuffer_destroy(&sb);
    }

    ev_init(&m->swim_timer, on_swim_timer);
    m->swim_timer.data = m;
    meshnode_swim_rearm(m);
    ev_init(&m->ae_timer, on_ae_timer);
    m->ae_timer.data = m;
    m->ae_timer.repeat = MESH_AE_PERIOD;
    ev_timer_again(o->loop, &m->ae_timer);
    ev_init(&m->push_timer, on_push_timer);
    m->push_timer.data = m;
    ev_timer_init(&m->keep_timer, on_keep_timer, 0.05, 1.0);
    m->keep_timer.data = m;
    ev_timer_start(o->loop, &m->keep_timer); /* with --no-inbound, or once learned */
    meshhealth_start(m);
    meshjoin_start(m);
    log_info("mesh: %s listening on %s (mesh %s, %zu registered members)", o->cfg->name,
             meshnet_bound(m->net), m->mesh_id, m->nreg);
    return m;
fail:
    meshnode_destroy(&m);
    return NULL;
}

void meshnode_destroy(meshnode_t **mp)
{
    if (!mp || !*mp)
        return;
    meshnode_t *m = *mp;
    ev_timer_stop(m->o.loop, &m->swim_timer);
    ev_timer_stop(m->o.loop, &m->ae_timer);
    ev_timer_stop(m->o.loop, &m->push_timer);
    ev_timer_stop(m->o.loop, &m->leave_timer);
    ev_timer_stop(m->o.loop, &m->keep_timer);
    meshhealth_stop(m);
    meshjoin_stop(m);
    store_unwatch(m->o.store, m->reg_watch);
    meshroute_destroy(&m->routes);
    meshnet_destroy(&m->net);
    swim_destroy(&m->swim);
    free(m->reg);
    free(m);
    *mp = NULL;
}

/* ---- for the data plane ---------------------------------------------------------------------- */

void meshnode_set_site_source(meshnode_t *m, void (*fn)(void *ctx, ls_record_t *rec), void *ctx)
{
    m->site_source = fn;
    m->site_source_ctx = ctx;
}

void meshnode_linkstate_changed(meshnode_t *m)
{
    meshroute_publish_soon(m->routes);
}

const route_table_t *meshnode_routes(const meshnode_t *m)
{
    return meshroute_table(m->routes);
}

const lsdb_t *meshnode_lsdb(const meshnode_t *m)
{
    return meshroute_lsdb(m->routes);
}

bool meshnode_no_dial(const meshnode_t *m, uint64_t id)
{
    const reg_node_t *r = meshnode_reg_find(m, id);
    return id != m->o.id->node_id && ((r && r->no_inbound) || meshnet_one_way(m->net, id));
}

bool meshnode_must_dial(const meshnode_t *m, uint64_t id)
{
    return id != m->o.id->node_id && (m->o.cfg->no_inbound || meshnet_cannot_dial_us(m->net, id));
}

bool meshnode_is_alive(const meshnode_t *m, uint64_t id)
{
    swim_member_info_t mi;
    if (id == m->o.id->node_id)
        return true;
    return swim_member_get(m->swim, id, &mi) == 0 && mi.state == SWIM_ALIVE;
}
