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
 *    tell it. */
#include "node/membership/meshnode.h"

#include "common/clock.h"

#include "common/log.h"
#include "common/rng.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "gossip/antientropy.h"
#include "gossip/swim.h"
#include "node/membership/meshnet.h"
#include "node/membership/meshnode_int.h"
#include "node/membership/meshroute.h"
#include "node/records/registry.h"
#include "node/records/token.h"
#include "storage/hlc.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define REMOVAL_PUSHES   4 /* times the removal record is pushed to the removed node */
#define MAX_PENDING_PUSH 8
#define LEAVE_DRAIN_MAX  1.0 /* s: at most this long spreading LEFT on shutdown */
#define BCAST_ENTRY      1   /* broadcast kinds */
#define BCAST_HEALTH     2
#define BCAST_LINKSTATE  3
#define MESH_MSG_PUSH    34  /* [1, 34, entry]: a fresh write pushed to a few peers at once */
#define PUSH_FANOUT_MAX  16  /* peers each new write is pushed to, by each node that learns it */
#define HEALTH_PERIOD    2.0 /* s between a node's health vectors (jittered) */

/* A member's last health vector (DESIGN.md section 6). Soft state: rebuilt from gossip. */
struct health {
    uint64_t id;
    uint64_t seq;          /* the sender's wall clock ms when it measured: newer wins */
    uint32_t cpu_permille; /* of one core, over the sender's last period */
    uint32_t rss_kb;       /* resident memory */
    uint32_t streams;      /* active streams (tunnels come later: 0 for now) */
    bool ingress_up;       /* its ingress listeners are up */
    double received;       /* ev_now when it arrived here, s */
};

struct removal_push {
    uint64_t id;
    int left;
};

struct meshnode {
    meshnode_opts_t o;
    meshnet_t *net;
    swim_t *swim;
    ev_timer swim_timer;
    ev_timer ae_timer;
    ev_timer push_timer;
    ev_timer leave_timer;
    void (*leave_done)(void *);
    void *leave_ctx;
    reg_node_t *reg; /* registry snapshot, not removed and removed alike */
    size_t nreg;
    struct removal_push pushes[MAX_PENDING_PUSH];
    uint64_t ae_seq;
    uint64_t rng;
    ae_stats_t ae;
    char mesh_id[33];
    uint64_t joins_ok, joins_refused, bad_messages, pushes_applied;
    bool removed;
    meshroute_t *routes;
    void (*site_source)(void *ctx, ls_record_t *rec); /* meshnode_set_site_source */
    void *site_source_ctx;
    struct health *health; /* one per member that sent one, self included */
    size_t nhealth;
    ev_timer health_timer;
    double cpu_last; /* s of CPU used by this process at the last health sample */
    double cpu_at;   /* ev_now of that sample */
    /* Clock skew (see "clocks" below). */
    uint64_t skew_seen;      /* store skew_rejected already reported */
    uint64_t skew_quiet;     /* refused since the last report */
    double skew_log_at;      /* ev_now of the last "refused for skew" report, s */
    double clock_log_at;     /* ev_now of the last "this node's clock is off" report, s */
    bool clock_off;          /* that report is in force (to log the recovery once) */
    uint64_t writes_refused; /* control writes refused for this node's clock */
};

static const reg_node_t *reg_find(const meshnode_t *m, uint64_t id)
{
    for (size_t i = 0; i < m->nreg; i++)
        if (m->reg[i].id == id)
            return &m->reg[i];
    return NULL;
}

static const reg_node_t *reg_find_name(const meshnode_t *m, const char *name)
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
static int parse_meta(const uint8_t *meta, size_t len, uint64_t id, char *name, size_t nl,
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

/* Where and how to reach member id: the registry, else what SWIM heard (self-certified). */
static int peer_endpoint(meshnode_t *m, uint64_t id, char *addr, size_t al, uint8_t pk[32])
{
    const reg_node_t *r = reg_find(m, id);
    if (r) {
        if (r->removed)
            return -EPERM;
        snprintf(addr, al, "%s", r->addr);
        memcpy(pk, r->curve_pk, 32);
        return 0;
    }
    swim_member_info_t info;
    char name[NODECFG_NAME_MAX + 1];
    if (swim_member_get(m->swim, id, &info) == 0 &&
        parse_meta(info.meta, info.meta_len, id, name, sizeof(name), addr, al, pk) == 0)
        return 0;
    return -ENOENT;
}

static int send_to(meshnode_t *m, uint64_t id, const uint8_t *msg, size_t len)
{
    char addr[NODECFG_ADDR_MAX + 1];
    uint8_t pk[32];
    int rc = peer_endpoint(m, id, addr, sizeof(addr), pk);
    if (rc)
        return rc;
    return meshnet_send(m->net, id, addr, pk, msg, len);
}

/* ---- SWIM glue ------------------------------------------------------------------------------ */

static void swim_rearm(meshnode_t *m)
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
    swim_rearm(m);
}

static void io_send(void *ctx, uint64_t dest, const uint8_t *msg, size_t len)
{
    send_to(ctx, dest, msg, len); /* loss is SWIM's business */
}

static void io_member_changed(void *ctx, const swim_member_info_t *mi, int old_state)
{
    meshnode_t *m = ctx;
    const reg_node_t *r = reg_find(m, mi->id);
    char name[NODECFG_NAME_MAX + 1] = "?", addr[NODECFG_ADDR_MAX + 1];
    uint8_t pk[32];
    if (r)
        snprintf(name, sizeof(name), "%s", r->name);
    else
        parse_meta(mi->meta, mi->meta_len, mi->id, name, sizeof(name), addr, sizeof(addr), pk);
    if (m->routes && mi->id != m->o.id->node_id) {
        if (mi->state == SWIM_DEAD || mi->state == SWIM_LEFT)
            meshroute_forget(m->routes, mi->id);
        if (old_state != (int)mi->state)
            meshroute_publish_soon(m->routes);
    }
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

static bool touches_registry(const char *key, size_t klen)
{
    size_t pl = strlen(REG_NODE_PREFIX);
    return klen >= pl && memcmp(key, REG_NODE_PREFIX, pl) == 0;
}

static bool health_merge(meshnode_t *m, mpr_t *r);

/* A broadcast payload is [kind, body]: BCAST_ENTRY carries one store entry (antientropy.h's
 * entry encoding), BCAST_HEALTH a node's health vector. Returns whether it was news, which
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
    if (kind == BCAST_HEALTH)
        return health_merge(m, &r);
    if (kind == BCAST_LINKSTATE) {
        const uint8_t *body;
        size_t bl;
        if (mpr_object(&r, &body, &bl) || r.left) {
            m->bad_messages++;
            return false;
        }
        return meshroute_receive(m->routes, body, bl);
    }
    if (kind != BCAST_ENTRY || ae_entry_read(&r, &e) || r.left) {
        m->bad_messages++;
        return false;
    }
    int applied = store_merge(m->o.store, &e, 1, clock_wall_ms());
    if (applied > 0 && touches_registry(e.key, e.klen))
        registry_reload(m);
    return applied > 0;
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
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, MESH_MSG_PUSH);
    ae_entry_pack(&pk, e);
    for (unsigned i = 0; i < f.n; i++)
        send_to(m, f.chosen[i], (const uint8_t *)sb.data, sb.size);
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
    msgpack_pack_uint32(&pk, BCAST_ENTRY);
    ae_entry_pack(&pk, e);
    /* Too large to piggyback: anti-entropy carries it within a period or two. */
    if (sb.size <= SWIM_PAYLOAD_MAX)
        swim_broadcast(m->swim, broadcast_key(e->key, e->klen), (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    if (touches_registry(e->key, e->klen))
        registry_reload(m);
    swim_rearm(m);
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
            for (int k = 0; k < MAX_PENDING_PUSH; k++)
                pushing |= m->pushes[k].id == r->id && m->pushes[k].left > 0;
            if (!pushing)
                meshnet_forget(m->net, r->id);
            continue;
        }
        if (strcmp(r->role, "pop") != 0)
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
    send_to(rc->m, rc->peer, buf, len);
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
            send_to(m, p.chosen, (const uint8_t *)sb.data, sb.size) == 0)
            m->ae.digests_sent++;
        msgpack_sbuffer_destroy(&sb);
    }
    /* Jitter keeps nodes that started together from syncing in lockstep. */
    t->repeat = MESH_AE_PERIOD * (0.75 + (double)rng_below(&m->rng, 500) / 1000.0);
    ev_timer_again(loop, t);
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
    const reg_node_t *r = reg_find(m, id);
    if (r) /* the removed node included: peer_endpoint would refuse it */
        meshnet_send(m->net, id, r->addr, r->curve_pk, (const uint8_t *)sb.data, sb.size);
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

/* ---- joining (server side) ------------------------------------------------------------------ */

static void join_reply_err(meshnode_t *m, const uint8_t *rid, size_t rl, const char *code,
                           const char *fmt, ...) __attribute__((format(printf, 5, 6)));

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

struct count_ctx {
    uint64_t n;
};

static int count_one(const store_entry_t *e, void *ctx)
{
    ((struct count_ctx *)ctx)->n++;
    return 0;
}

/* Every message on the mesh fits the transport's limit, which is also what bounds what an
 * unauthenticated connection can make libzmq allocate (meshnet.h). */
_Static_assert(SWIM_MSG_MAX <= MESHNET_MSG_MAX, "SWIM messages must fit the mesh limit");
_Static_assert(AE_MSG_MAX <= MESHNET_MSG_MAX, "ENTRIES messages must fit the mesh limit");
_Static_assert(STORE_KEY_MAX + STORE_VALUE_MAX + 256 <= MESHNET_MSG_MAX,
               "a PUSH of one entry must fit the mesh limit");
_Static_assert(MESHNET_JOIN_OK_BUDGET + 1024 <= MESHNET_MSG_MAX, "JOIN_OK must fit the mesh limit");

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

static int put_record(meshnode_t *m, const char *key, const msgpack_sbuffer *val)
{
    store_entry_t out = {0};
    int rc = store_put(m->o.store, key, strlen(key), val->data, val->size, clock_wall_ms(), &out);
    if (rc == 0) {
        out.key = (char *)key;
        out.klen = strlen(key);
        out.value = (uint8_t *)val->data;
        out.vlen = val->size;
        meshnode_published(m, &out);
    }
    return rc;
}

int meshnode_put_record(meshnode_t *m, const char *key, const msgpack_sbuffer *val)
{
    return put_record(m, key, val);
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

static void handle_join(meshnode_t *m, uint64_t token_id, const uint8_t *rid, size_t rl,
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
    if (strcmp(tok.role, want.role) != 0) {
        join_reply_err(m, rid, rl, "role", "this is a %s token; it cannot join a %s", tok.role,
                       want.role);
        return;
    }
    if (tok.site[0] && (strcmp(want.role, "site") != 0 || strcmp(want.name, tok.site) != 0)) {
        join_reply_err(m, rid, rl, "site",
                       "this token enrolls site '%s' only; it cannot enroll %s '%s'", tok.site,
                       want.role, want.name);
        return;
    }
    /* A site listens on nothing (it dials out), so its address may be empty. */
    bool addr_ok =
        (!strcmp(want.role, "site") && !want.addr[0]) || !nodecfg_check_addr(want.addr, 0);
    if (nodecfg_check_name(want.name) || (want.region[0] && nodecfg_check_name(want.region)) ||
        !addr_ok) {
        join_reply_err(m, rid, rl, "invalid", "name, region or address is invalid");
        return;
    }
    if (strcmp(want.role, "site") == 0) {
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
        if (tok.site[0] && site.token_id != token_id) {
            join_reply_err(m, rid, rl, "site",
                           "site '%s' was added again with another token; use that one", want.name);
            return;
        }
    }
    want.id = identity_node_id_of(want.curve_pk);
    const reg_node_t *same = reg_find(m, want.id);
    if (same && same->removed) {
        join_reply_err(m, rid, rl, "removed",
                       "this node's key was removed from the mesh; join with a new data "
                       "directory");
        return;
    }
    const reg_node_t *named = reg_find_name(m, want.name);
    if (named && named->id != want.id) {
        join_reply_err(m, rid, rl, "name-taken", "the name '%s' is already taken by node %016llx",
                       want.name, (unsigned long long)named->id);
        return;
    }
    /* The same node asking again (its JOIN_OK was lost): answer again, use nothing more. */
    bool again = same && strcmp(same->name, want.name) == 0;
    if (!again) {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), REG_TOKENUSE_PREFIX "%016llx/",
                 (unsigned long long)token_id);
        struct count_ctx cc = {0};
        store_list(m->o.store, prefix, strlen(prefix), count_one, &cc);
        if (tok.uses_max && cc.n >= tok.uses_max) {
            join_reply_err(m, rid, rl, "used-up", "the token is used up (%llu of %llu uses)",
                           (unsigned long long)cc.n, (unsigned long long)tok.uses_max);
            return;
        }
        want.joined_ms = now;
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        reg_tokenuse_pack(&pk, want.name, now);
        reg_tokenuse_key(token_id, want.id, key, sizeof(key));
        int rc = put_record(m, key, &sb);
        msgpack_sbuffer_clear(&sb);
        reg_node_pack(&pk, &want);
        reg_node_key(want.id, key, sizeof(key));
        if (rc == 0)
            rc = put_record(m, key, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (rc) {
            join_reply_err(m, rid, rl, "failed", "the seed could not record the join: %s",
                           store_last_error(m->o.store));
            return;
        }
        /* Gossip would get there in a few rounds; the newcomer probes at once. */
        struct push_all pa = {m, key, want.id};
        swim_foreach(m->swim, push_to_alive, &pa);
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
    joinmsg_pack_ok(&pk, m->o.meshkey->pk, strcmp(want.role, "pop") == 0 ? m->o.meshkey->sk : NULL,
                    entries.data, entries.size, count);
    meshnet_reply(m->net, rid, rl, (const uint8_t *)out.data, out.size);
    sodium_memzero(out.data, out.size);
    msgpack_sbuffer_destroy(&out);
    msgpack_sbuffer_destroy(&entries);
    m->joins_ok++;
    log_info("mesh: %s %s (%016llx, %s) joined with token %016llx", want.role, want.name,
             (unsigned long long)want.id, want.addr[0] ? want.addr : "dials out",
             (unsigned long long)token_id);
    swim_rearm(m);
}

/* ---- clocks ----------------------------------------------------------------------------------
 *
 * A node refuses store versions more than HLC_MAX_AHEAD_MS ahead of its own clock (hlc.h),
 * so a node whose clock runs ahead has all its writes dropped by everyone else, and a node
 * whose clock runs behind drops everyone else's. SWIM estimates each member's clock offset
 * from its probes (swim.c, "CLOCKS"); this node's offset against the mesh is the median
 * over alive members (swim_clock_offset), so one peer with a bad clock does not make a
 * healthy node look wrong. What is done with it:
 *   - writes through the control socket are refused while this node is more than
 *     MESHNODE_CLOCK_WRITE_LIMIT_MS ahead: they would be acknowledged here and dropped
 *     everywhere else. The margin under HLC_MAX_AHEAD_MS covers the estimate's error (half
 *     a round trip) and a clock still drifting. A node behind still writes (the others
 *     accept its versions, which only lose last-writer-wins races); it is logged.
 *   - both ends log: the receiver names the origin of refused versions and by how much they
 *     were ahead (from the store), the skewed node logs its own offset; at most one line per
 *     MESHNODE_CLOCK_LOG_S each.
 * With two nodes the median cannot tell which clock is wrong: each sees the other off by the
 * same amount. Refusing only "ahead" keeps the right one writable: the one behind is the one
 * whose writes still reach the other. */

_Static_assert(MESHNODE_CLOCK_WRITE_LIMIT_MS < HLC_MAX_AHEAD_MS,
               "writes must stop before the mesh drops them");

static int clock_offset(meshnode_t *m, int64_t *off, unsigned *peers)
{
    return swim_clock_offset(m->swim, off, peers);
}

static void note_skew(meshnode_t *m)
{
    store_stats_t st;
    if (store_stats(m->o.store, &st) || st.skew_rejected == m->skew_seen)
        return;
    uint64_t fresh = st.skew_rejected - m->skew_seen;
    m->skew_seen = st.skew_rejected;
    double now = ev_now(m->o.loop);
    if (now - m->skew_log_at < MESHNODE_CLOCK_LOG_S && m->skew_log_at > 0) {
        m->skew_quiet += fresh;
        return;
    }
    const reg_node_t *r = reg_find(m, st.skew_last_origin);
    log_warn("store: refused %llu entries written by %s (%016llx): their versions are %.1f s "
             "ahead of this node's clock (limit %d s); that node's clock is wrong, or this "
             "one's: check NTP on both",
             (unsigned long long)(fresh + m->skew_quiet), r ? r->name : "an unknown node",
             (unsigned long long)st.skew_last_origin, st.skew_last_ahead_ms / 1000.0,
             HLC_MAX_AHEAD_MS / 1000);
    m->skew_log_at = now;
    m->skew_quiet = 0;
}

/* The skewed node's own view, checked with every health vector (about every 2 s). */
static void check_own_clock(meshnode_t *m)
{
    int64_t off;
    unsigned peers;
    double now = ev_now(m->o.loop);
    bool off_now = clock_offset(m, &off, &peers) == 0 &&
                   (off > MESHNODE_CLOCK_WRITE_LIMIT_MS || off < -MESHNODE_CLOCK_WRITE_LIMIT_MS);
    if (!off_now) {
        if (m->clock_off)
            log_info("clock: this node's clock agrees with the mesh again; writes are accepted");
        m->clock_off = false;
        return;
    }
    if (m->clock_off && now - m->clock_log_at < MESHNODE_CLOCK_LOG_S)
        return;
    if (off > 0)
        log_warn("clock: this node's clock is %.1f s ahead of the mesh (median of %u peer(s)); "
                 "other nodes refuse its writes (versions more than %d s ahead), so writes "
                 "here are refused; fix its time (NTP)",
                 off / 1000.0, peers, HLC_MAX_AHEAD_MS / 1000);
    else
        log_warn("clock: this node's clock is %.1f s behind the mesh (median of %u peer(s)); "
                 "it refuses other nodes' writes (versions more than %d s ahead of it); fix its "
                 "time (NTP)",
                 -off / 1000.0, peers, HLC_MAX_AHEAD_MS / 1000);
    m->clock_off = true;
    m->clock_log_at = now;
}

/* Commands that write the replicated store: refused while this node's clock is too far
 * ahead (control_set_guard). Reads, status and token-free commands are never refused. */
static const char *const store_writers[] = {
    "config.set", "config.del", "site.add",     "site.rm",        "resource.add",  "resource.rm",
    "user.add",   "user.rm",    "user.passwd",  "session.revoke", "apikey.create", "apikey.revoke",
    "rule.add",   "rule.rm",    "token.create", "token.revoke",   "node.remove",   NULL,
};

static int clock_guard(void *ctx, const char *cmd, size_t len, msgpack_packer *body)
{
    meshnode_t *m = ctx;
    bool writes = false;
    for (const char *const *w = store_writers; *w && !writes; w++)
        writes = strlen(*w) == len && memcmp(*w, cmd, len) == 0;
    int64_t off;
    unsigned peers;
    if (!writes || clock_offset(m, &off, &peers) || off <= MESHNODE_CLOCK_WRITE_LIMIT_MS)
        return -1;
    m->writes_refused++;
    log_warn("control: refused %.*s: this node's clock is %.1f s ahead of the mesh", (int)len, cmd,
             off / 1000.0);
    return control_error(body, CTL_REFUSED,
                         "this node's clock is %.1f s ahead of the mesh (median of %u "
                         "peer(s); writes stop at %d s, the mesh drops versions more than %d s "
                         "ahead); fix its time (NTP) and retry",
                         off / 1000.0, peers, MESHNODE_CLOCK_WRITE_LIMIT_MS / 1000,
                         HLC_MAX_AHEAD_MS / 1000);
}

/* ---- transport callbacks ----------------------------------------------------------------------
 */

static int authorize(void *ctx, const uint8_t client_pk[32], char *user_id)
{
    meshnode_t *m = ctx;
    uint64_t id = identity_node_id_of(client_pk);
    const reg_node_t *r = reg_find(m, id);
    if (r && !r->removed && strcmp(r->role, "pop") == 0 &&
        memcmp(r->curve_pk, client_pk, 32) == 0) {
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
    if (user_id[0] == 't') {
        if (type == MESH_MSG_JOIN)
            handle_join(m, from, rid, rid_len, msg, len);
        else
            m->bad_messages++; /* a token holder may only ask to join */
        return;
    }
    if (type >= 1 && type < 32) {
        swim_set_wall_ms(m->swim, clock_wall_ms());
        swim_receive(m->swim, from, msg, len, clock_mono_ms());
        swim_rearm(m);
    } else if (type == MESH_MSG_PUSH) {
        store_entry_t e;
        if (n != 3 || ae_entry_read(&r, &e) || r.left) {
            m->bad_messages++;
            return;
        }
        if (store_merge(m->o.store, &e, 1, clock_wall_ms()) > 0) {
            m->pushes_applied++;
            if (touches_registry(e.key, e.klen))
                registry_reload(m);
            push_fanout(m, &e, from);
        }
    } else if (type == AE_DIGEST || type == AE_ENTRIES) {
        struct reply_ctx rc = {m, from};
        uint64_t before = m->ae.entries_applied;
        ae_handle(m->o.store, msg, len, clock_wall_ms(), ae_reply, &rc, &m->ae);
        if (m->ae.entries_applied != before)
            registry_reload(m); /* cheap, and membership may have changed */
    } else {
        m->bad_messages++;
    }
    note_skew(m);
}

/* ---- removal pushes -------------------------------------------------------------------------- */

static void on_push_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshnode_t *m = t->data;
    int pending = 0;
    for (int i = 0; i < MAX_PENDING_PUSH; i++) {
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

/* ---- health vectors ------------------------------------------------------------------------ */

static struct health *health_slot(meshnode_t *m, uint64_t id)
{
    for (size_t i = 0; i < m->nhealth; i++)
        if (m->health[i].id == id)
            return &m->health[i];
    m->health = xrealloc(m->health, (m->nhealth + 1) * sizeof(*m->health));
    struct health *h = &m->health[m->nhealth++];
    memset(h, 0, sizeof(*h));
    h->id = id;
    return h;
}

/* body = [node_id, seq, cpu_permille, rss_kb, streams, ingress_up] */
static bool health_merge(meshnode_t *m, mpr_t *r)
{
    uint32_t n;
    uint64_t id, seq, cpu, rss, streams;
    bool up;
    if (mpr_array(r, &n) || n < 6 || mpr_uint(r, &id) || mpr_uint(r, &seq) || mpr_uint(r, &cpu) ||
        mpr_uint(r, &rss) || mpr_uint(r, &streams) || mpr_bool(r, &up) || cpu > UINT32_MAX ||
        rss > UINT32_MAX || streams > UINT32_MAX) {
        m->bad_messages++;
        return false;
    }
    for (uint32_t i = 6; i < n; i++) /* fields a newer node may add */
        if (mpr_skip(r)) {
            m->bad_messages++;
            return false;
        }
    const reg_node_t *reg = reg_find(m, id);
    if (!reg || reg->removed || id == m->o.id->node_id)
        return false; /* only registered members have a health vector here */
    struct health *h = health_slot(m, id);
    if (seq <= h->seq)
        return false;
    h->seq = seq;
    h->cpu_permille = (uint32_t)cpu;
    h->rss_kb = (uint32_t)rss;
    h->streams = (uint32_t)streams;
    h->ingress_up = up;
    h->received = ev_now(m->o.loop);
    meshroute_penalty(m->routes, id, (uint16_t)(cpu > 1000 ? 1000 : cpu), up);
    return true;
}

static uint32_t self_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (uint32_t)(resident * (unsigned long)sysconf(_SC_PAGESIZE) / 1024);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void on_health_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshnode_t *m = t->data;
    double now = ev_now(loop), cpu = self_cpu_s();
    struct health *h = health_slot(m, m->o.id->node_id);
    h->seq = clock_wall_ms();
    h->cpu_permille =
        now > m->cpu_at ? (uint32_t)(1000.0 * (cpu - m->cpu_last) / (now - m->cpu_at)) : 0;
    h->rss_kb = self_rss_kb();
    h->streams = 0;
    h->ingress_up = true;
    h->received = now;
    m->cpu_last = cpu;
    check_own_clock(m);
    m->cpu_at = now;

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, BCAST_HEALTH);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_uint64(&pk, h->id);
    msgpack_pack_uint64(&pk, h->seq);
    msgpack_pack_uint32(&pk, h->cpu_permille);
    msgpack_pack_uint32(&pk, h->rss_kb);
    msgpack_pack_uint32(&pk, h->streams);
    msgpack_pack_true(&pk);
    /* Keyed by node: a newer vector replaces the queued older one instead of queueing up. */
    swim_broadcast(m->swim, h->id ^ 0x6865616c74680000ull, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    swim_rearm(m);
    t->repeat = HEALTH_PERIOD * (0.8 + (double)rng_below(&m->rng, 400) / 1000.0);
    ev_timer_again(loop, t);
}

/* ---- link state ---------------------------------------------------------------------------------
 */

struct collect_ctx {
    meshnode_t *m;
    ls_record_t *rec;
};

static void collect_link(const swim_member_info_t *mi, void *ctx)
{
    struct collect_ctx *c = ctx;
    if (mi->id == c->m->o.id->node_id || mi->state != SWIM_ALIVE || mi->rtt_ms == 0)
        return;
    const reg_node_t *r = reg_find(c->m, mi->id);
    if (!r || r->removed || strcmp(r->role, "pop") != 0)
        return;
    /* The record keeps the best LS_LINKS_MAX by cost; a full record answers -ENOSPC for the
     * rest, which is the cap working, not an error. */
    ls_record_add_link(c->rec, mi->id, mi->rtt_ms * 1000,
                       mi->loss_permille > LS_LOSS_MAX ? LS_LOSS_MAX : mi->loss_permille);
}

static void ls_collect(void *ctx, ls_record_t *rec)
{
    meshnode_t *m = ctx;
    struct collect_ctx c = {ctx, rec};
    swim_foreach(m->swim, collect_link, &c);
    if (m->site_source)
        m->site_source(m->site_source_ctx, rec); /* the sites attached here (dataplane) */
}

static void ls_publish(void *ctx, const uint8_t *buf, size_t len)
{
    meshnode_t *m = ctx;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, BCAST_LINKSTATE);
    mpw_raw(&pk, buf, len);
    swim_broadcast(m->swim, m->o.id->node_id ^ 0x6c696e6b00000000ull, (const uint8_t *)sb.data,
                   sb.size);
    msgpack_sbuffer_destroy(&sb);
    swim_rearm(m);
}

static void ls_name_of(void *ctx, uint64_t id, char *out, size_t len)
{
    const reg_node_t *r = reg_find(ctx, id);
    if (r)
        snprintf(out, len, "%s", r->name);
}

static int cmd_routes(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshroute_pack(((meshnode_t *)ctx)->routes, pk);
    return CTL_OK;
}

/* ---- control commands ------------------------------------------------------------------------ */

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
    const reg_node_t *r = reg_find(c->m, mi->id);
    char name[NODECFG_NAME_MAX + 1] = "", addr[NODECFG_ADDR_MAX + 1] = "";
    uint8_t pk[32];
    if (r) {
        snprintf(name, sizeof(name), "%s", r->name);
        snprintf(addr, sizeof(addr), "%s", r->addr);
    } else {
        parse_meta(mi->meta, mi->meta_len, mi->id, name, sizeof(name), addr, sizeof(addr), pk);
    }
    char id[17];
    identity_id_hex(mi->id, id);
    msgpack_packer *pk_ = c->pk;
    const struct health *h = NULL;
    for (size_t i = 0; i < c->m->nhealth; i++)
        if (c->m->health[i].id == mi->id)
            h = &c->m->health[i];
    msgpack_pack_map(pk_, 11);
    mpw_str(pk_, "clock_offset_ms"); /* its clock minus ours; nil: not measured (or self) */
    if (mi->clock_known)
        msgpack_pack_int32(pk_, mi->clock_offset_ms);
    else
        msgpack_pack_nil(pk_);
    mpw_str(pk_, "clock_err_ms");
    msgpack_pack_uint32(pk_, mi->clock_known ? mi->clock_err_ms : 0);
    mpw_str(pk_, "health");
    if (h) {
        msgpack_pack_map(pk_, 5);
        mpw_str(pk_, "cpu_pct");
        msgpack_pack_double(pk_, h->cpu_permille / 10.0);
        mpw_str(pk_, "rss_kb");
        msgpack_pack_uint32(pk_, h->rss_kb);
        mpw_str(pk_, "streams");
        msgpack_pack_uint32(pk_, h->streams);
        mpw_str(pk_, "ingress_up");
        if (h->ingress_up)
            msgpack_pack_true(pk_);
        else
            msgpack_pack_false(pk_);
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
    msgpack_pack_map(pk, 16);
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
    mpw_kv_u64(pk, "incarnation", ss.incarnation);
    mpw_str(pk, "local_health");
    msgpack_pack_uint32(pk, ss.local_health);
    mpw_kv_u64(pk, "joins_ok", m->joins_ok);
    mpw_kv_u64(pk, "joins_refused", m->joins_refused);
    mpw_kv_u64(pk, "pushes_applied", m->pushes_applied);
    mpw_kv_u64(pk, "ae_entries_applied", m->ae.entries_applied);
    /* clock: this node against the mesh (see "clocks") */
    int64_t off;
    unsigned peers = 0;
    bool known = clock_offset(m, &off, &peers) == 0;
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
    const reg_node_t *r = reg_find(c->m, mi->id);
    if (!r || r->removed || strcmp(r->role, "pop") != 0)
        return;
    token_seed_t *s = &c->t->seeds[c->t->nseeds++];
    snprintf(s->addr, sizeof(s->addr), "%s", r->addr);
    memcpy(s->curve_pk, r->curve_pk, 32);
}

int meshnode_token_mint(meshnode_t *m, const char *role, const char *site, uint64_t ttl,
                        uint64_t uses, char *text, size_t textlen, reg_token_t *rec, char *err,
                        size_t errlen)
{
    token_t t = {0};
    token_public_t pub;
    memcpy(t.mesh_pk, m->o.meshkey->pk, 32);
    snprintf(t.role, sizeof(t.role), "%s", role);
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
    snprintf(rec->role, sizeof(rec->role), "%s", role);
    snprintf(rec->site, sizeof(rec->site), "%s", site ? site : "");
    snprintf(rec->created_by, sizeof(rec->created_by), "%s", m->o.cfg->name);
    memcpy(rec->join_pk, pub.join_pk, 32);
    msgpack_sbuffer sb;
    msgpack_packer vp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&vp, &sb, msgpack_sbuffer_write);
    reg_token_pack(&vp, rec);
    char key[64];
    reg_token_key(pub.id, key, sizeof(key));
    int rc = put_record(m, key, &sb);
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
    log_info("mesh: created %s token %016llx%s%s (%llu uses, expires in %llu s)", rec->role,
             (unsigned long long)rec->id, rec->site[0] ? " for site " : "", rec->site,
             (unsigned long long)uses, (unsigned long long)(ttl / 1000));
    return 0;
}

static int cmd_token_create(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    meshnode_t *m = ctx;
    const char *role = "pop";
    uint32_t rl = 3;
    uint64_t ttl = 3600 * 1000, uses = 1;
    if (ctl_arg_str(req, "role", &role, &rl) < 0 ||
        !((rl == 3 && !memcmp(role, "pop", 3)) || (rl == 4 && !memcmp(role, "site", 4))))
        return control_error(pk, CTL_BAD_REQUEST, "role must be 'pop' or 'site'");
    if (ctl_arg_uint(req, "ttl_ms", &ttl) < 0 || ttl == 0 || ttl > 365ull * 24 * 3600 * 1000)
        return control_error(pk, CTL_BAD_REQUEST, "ttl must be between 1 ms and 365 days");
    if (ctl_arg_uint(req, "uses", &uses) < 0 || uses > 1000000)
        return control_error(pk, CTL_BAD_REQUEST, "uses must be 0 (unlimited) to 1000000");

    char rolez[REG_ROLE_MAX + 1] = "", text[TOKEN_TEXT_MAX + 1], id[17], err[300];
    reg_token_t rec;
    memcpy(rolez, role, rl);
    if (meshnode_token_mint(m, rolez, NULL, ttl, uses, text, sizeof(text), &rec, err, sizeof(err)))
        return control_error(pk, CTL_FAILED, "%s", err);
    identity_id_hex(rec.id, id);
    msgpack_pack_map(pk, 5);
    mpw_kv_str(pk, "token", text);
    mpw_kv_str(pk, "id", id);
    mpw_kv_str(pk, "role", rec.role);
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
    struct count_ctx cc = {0};
    store_list(m->o.store, prefix, strlen(prefix), count_one, &cc);
    return cc.n;
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
        mpw_kv_str(pk, "role", t->role);
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
    int rc = put_record(m, key, &sb);
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
    const reg_node_t *found = reg_find_name(m, name);
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
    bool member = strcmp(rec.role, "pop") == 0;
    for (int i = 0; member && i < MAX_PENDING_PUSH; i++) {
        if (m->pushes[i].left <= 0) {
            m->pushes[i].id = rec.id;
            m->pushes[i].left = REMOVAL_PUSHES;
            break;
        }
    }
    int rc = put_record(m, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return rc;
    if (member) {
        ev_timer_stop(m->o.loop, &m->push_timer);
        ev_timer_set(&m->push_timer, 0.0, 0.5);
        ev_timer_start(m->o.loop, &m->push_timer);
    }
    log_warn("mesh: removed %s %s (%016llx) from the mesh",
             strcmp(rec.role, "pop") ? rec.role : "node", rec.name, (unsigned long long)rec.id);
    return 0;
}

static const control_command_t commands[] = {
    {"members", cmd_members,
     "-> [{name, id, region, addr, state, incarnation, rtt_ms, self}] as this node sees them"},
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
    control_set_guard(ctl, clock_guard, m);
    return rc ? rc : control_add_commands(ctl, meshadmin_commands, m);
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
    swim_rearm(m);
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

    meshroute_io_t rio = {
        .ctx = m, .collect = ls_collect, .publish = ls_publish, .name_of = ls_name_of};
    m->routes = meshroute_new(o->loop, o->id->node_id, &rio);

    meshnet_cb_t cb = {.ctx = m, .authorize = authorize, .receive = receive};
    m->net = meshnet_new(o->loop, o->zctx, o->cfg->mesh_listen, o->id->curve_pk, o->id->curve_sk,
                         &cb, err, errlen);
    if (!m->net)
        goto fail;

    registry_reload(m);
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
    swim_rearm(m);
    ev_init(&m->ae_timer, on_ae_timer);
    m->ae_timer.data = m;
    m->ae_timer.repeat = MESH_AE_PERIOD;
    ev_timer_again(o->loop, &m->ae_timer);
    ev_init(&m->push_timer, on_push_timer);
    m->push_timer.data = m;
    m->cpu_last = self_cpu_s();
    m->cpu_at = ev_now(o->loop);
    ev_init(&m->health_timer, on_health_timer);
    m->health_timer.data = m;
    m->health_timer.repeat = 0.5; /* first vector soon after start */
    ev_timer_again(o->loop, &m->health_timer);
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
    ev_timer_stop(m->o.loop, &m->health_timer);
    free(m->health);
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

bool meshnode_is_alive(const meshnode_t *m, uint64_t id)
{
    swim_member_info_t mi;
    if (id == m->o.id->node_id)
        return true;
    return swim_member_get(m->swim, id, &mi) == 0 && mi.state == SWIM_ALIVE;
}
