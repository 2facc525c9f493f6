/* trust: pinned roots, the certifier and the key.* commands (see trust.h).
 *
 * INVARIANTS
 * - Which roots count is decided by DIR/root.pub only, never by what the store says: the
 *   store is writable by every member. trust/root in the store is a message ("here is a
 *   root, endorsed by X"), applied with trustroots_apply.
 * - A node's key counts only through its certificate and its registry record together: the
 *   certificate binds id, key and capabilities under the root; the record's removed flag is
 *   the revocation, which node rm already spreads to every PoP.
 * - The certifier writes only what the root vouches for: capabilities come from a token
 *   record signed by a PoP whose certificate holds invite, found through the tokenuse/ entry
 *   the join wrote. A node record with no such token (written by a member, not by a join)
 *   gets no certificate automatically. */
#include "node/trust/trust.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/logesc.h"
#include "common/xmalloc.h"
#include "node/oidc/idprec.h"
#include "node/records/alertrec.h"
#include "node/records/authrec.h"
#include "node/records/geo.h"
#include "node/records/resource.h"
#include "node/records/totprec.h"
#include "node/records/user.h"
#include "node/records/zone.h"
#include "storage/hlc.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UPGRADE_FIRST_S 3.0 /* s after start before a PoP of a root-less mesh looks */
#define UPGRADE_EVERY_S 5.0 /* s between looks until a root exists */
#define RENEW_LEFT      3   /* renew a certificate when less than 1/RENEW_LEFT of it is left */
#define ADOPT_DELAY_S   1.0 /* s after a change to the registry or the certificates: adopt pass */
#define ADOPT_BATCH     512 /* records re-signed per turn of the loop (then the pass goes on) */
#define KEYCACHE_MS     1000 /* ms a writer's key lookup is reused by the merge guard */

struct trust {
    trust_opts_t o;
    trustroots_t roots;
    bool have_roots;
    rootkey_t root; /* valid when have_root */
    bool have_root;
    auth_keys_t keys;
    int watch_root, watch_nodes, watch_uses;
    ev_idle certify_idle; /* a certify pass after a burst of changes */
    ev_timer upgrade_timer;
    unsigned issued, refused; /* certificates written; nodes left uncertified */
    /* Signed configuration (docs/security.md, "Signed configuration"). */
    bool sign_off;          /* POPMESH_TEST_UNSIGNED_CONFIG: write as a popd before signing */
    ev_timer adopt_timer;   /* the adopt pass, after changes settle */
    int watch_certs;
    uint64_t cfg_refused;   /* remote policy records refused */
    uint64_t cfg_adopted;   /* records this PoP signed again */
    char cfg_last_refused[200];
    double cfg_log_at;      /* ev_now of the last refusal logged (one a second at most) */
    unsigned cfg_log_skipped;
    /* Writers' keys as the merge guard last found them: a batch of thousands of records from
     * a few writers looks each writer up once. Dropped at any change to the registry, the
     * certificates or the roots (key_gen), and after KEYCACHE_MS in any case (validity). */
    struct keycache {
        uint64_t id, gen, until_ms;
        uint32_t need;
        int rc;
        const char *why;
        uint8_t pk[32];
    } kcache[8];
    unsigned kcache_next;
    uint64_t key_gen;
};

/* ---- lookups (loop-free) --------------------------------------------------------------- */

int trust_node_key(store_t *store, const trustroots_t *roots, uint64_t id, uint32_t need,
                   uint64_t now_ms, uint8_t pk[32], const char **why)
{
    char key[64];
    store_entry_t e;
    nodecert_t c;
    reg_node_t n;
    nodecert_key(id, key, sizeof(key));
    if (store_get(store, key, strlen(key), &e) != 0) {
        *why = "the signer has no certificate (not certified, or revoked)";
        return -EACCES;
    }
    int rc = nodecert_parse(e.value, e.vlen, &c, why);
    store_entry_free(&e);
    if (rc || c.node_id != id) {
        if (!rc)
            *why = "certificate of another node";
        return -EACCES;
    }
    if (nodecert_verify(&c, roots, need, now_ms, why))
        return -EACCES;
    reg_node_key(id, key, sizeof(key));
    if (store_get(store, key, strlen(key), &e) != 0) {
        *why = "the signer is not in the registry";
        return -EACCES;
    }
    rc = reg_node_parse(e.value, e.vlen, id, &n, why);
    store_entry_free(&e);
    if (rc)
        return -EACCES;
    if (n.removed) {
        *why = "the signer was removed from the mesh";
        return -EACCES;
    }
    if (sodium_memcmp(n.sign_pk, c.sign_pk, 32) != 0) {
        *why = "the certificate names another key than the signer's record";
        return -EACCES;
    }
    memcpy(pk, c.sign_pk, 32);
    return 0;
}

static int signer_key_cb(void *ctx, uint64_t signer, uint32_t need, uint64_t now_ms, uint8_t pk[32],
                         const char **why)
{
    trust_t *t = ctx;
    if (!t->have_roots) {
        *why = "this PoP has no root pinned yet";
        return -EACCES;
    }
    return trust_node_key(t->o.store, &t->roots, signer, need, now_ms, pk, why);
}

int trust_token_ok(trust_t *t, const reg_token_t *tok, uint64_t now_ms, const char **why)
{
    uint8_t pk[32];
    if (!t->have_roots)
        return 0;
    if (!tok->has_sig) {
        *why = "the token is not signed by a PoP that may invite (minted before the mesh had a "
               "root, or forged): mint a new one";
        return -EACCES;
    }
    if (trust_node_key(t->o.store, &t->roots, tok->minter, CAP_INVITE, now_ms, pk, why)) {
        static char buf[160];
        snprintf(buf, sizeof(buf), "the token's minter cannot invite: %s", *why);
        *why = buf;
        return -EACCES;
    }
    if (!reg_token_sig_ok(tok, pk)) {
        *why = "the token's signature does not verify (tampered)";
        return -EACCES;
    }
    return 0;
}

int trust_self_may(trust_t *t, uint32_t need, char *err, size_t errlen)
{
    uint8_t pk[32];
    const char *why = "";
    char caps[CAPS_TEXT_MAX];
    if (!t->have_roots)
        return 0;
    if (trust_node_key(t->o.store, &t->roots, t->o.id->node_id, need, clock_wall_ms(), pk, &why) ==
        0)
        return 0;
    nodecert_caps_format(need, caps, sizeof(caps));
    snprintf(err, errlen,
             "this PoP may not do that: it needs the capability %s (%s); run the command at a "
             "PoP that holds it, or certify this one with it (meshctl key certify)",
             caps, why);
    return -EPERM;
}

/* ---- records ----------------------------------------------------------------------------- */

static void entry_of(store_entry_t *e, const char *key, msgpack_sbuffer *sb)
{
    memset(e, 0, sizeof(*e));
    e->klen = strlen(key);
    e->key = xmalloc(e->klen + 1);
    memcpy(e->key, key, e->klen + 1);
    e->vlen = sb->size;
    e->value = xmalloc(sb->size);
    memcpy(e->value, sb->data, sb->size);
}

int trust_init_records(const rootkey_t *root, const meshkey_t *mk, const identity_t *id,
                       uint64_t now_ms, store_entry_t out[2])
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    trustroot_rec_t r = {.created_ms = now_ms};
    memcpy(r.root_pk, root->pk, 32);
    trustroot_sign(&r, mk->sk);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    trustroot_pack(&pk, &r);
    entry_of(&out[0], TRUST_ROOT_KEY, &sb);
    out[0].version = hlc_make(now_ms, 0);
    out[0].origin = id->node_id;
    msgpack_sbuffer_clear(&sb);
    nodecert_t c = {.node_id = id->node_id,
                    .caps = CAP_ALL,
                    .not_before_ms = now_ms - 60000,
                    .not_after_ms = now_ms + NODECERT_VALID};
    memcpy(c.sign_pk, id->sign_pk, 32);
    nodecert_sign(&c, root);
    nodecert_pack(&pk, &c);
    char key[NODECERT_KEY_MAX];
    nodecert_key(id->node_id, key, sizeof(key));
    entry_of(&out[1], key, &sb);
    out[1].version = hlc_make(now_ms, 0);
    out[1].origin = id->node_id;
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

static int put_cert(trust_t *t, const nodecert_t *c)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    char key[NODECERT_KEY_MAX];
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    nodecert_pack(&pk, c);
    nodecert_key(c->node_id, key, sizeof(key));
    int rc = meshnode_put_record(t->o.mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* ---- pinning ----------------------------------------------------------------------------- */

static void adopt_soon(trust_t *t);

static void roots_changed(trust_t *t)
{
    t->key_gen++;
    t->keys.self_id = t->have_roots ? t->o.id->node_id : 0;
    t->keys.legacy_until_ms = t->have_roots ? t->roots.legacy_until_ms : UINT64_MAX;
    if (t->have_roots && t->o.loop)
        adopt_soon(t);
}

/* A trust/root record (from the store, merged or ours). */
static void apply_root(trust_t *t, const uint8_t *v, size_t vlen)
{
    trustroot_rec_t r;
    const char *why = "";
    if (trustroot_parse(v, vlen, &r, &why)) {
        log_warn("trust: ignoring the trust/root record: %s", why);
        return;
    }
    trustroots_t nt = t->roots;
    int rc = trustroots_apply(&nt, t->have_roots, &r, t->o.meshkey->pk, &why);
    if (rc < 0) {
        char hex[17];
        snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)rootkey_id(r.root_pk));
        log_warn("trust: not accepting root %s from trust/root: %s", hex, why);
        return;
    }
    if (rc == 0)
        return;
    char err[300];
    if (trustroots_save(t->o.dir, &nt, err, sizeof(err))) {
        log_error("trust: cannot pin the root: %s", err);
        return;
    }
    bool rotated = t->have_roots;
    t->roots = nt;
    t->have_roots = true;
    roots_changed(t);
    log_info("trust: %s root %016llx%s", rotated ? "rotated to" : "pinned",
             (unsigned long long)rootkey_id(nt.cur),
             rotated ? " (the previous one stays accepted "
                       "until its rollover ends)"
                     : "");
}

static void on_root(void *ctx, const store_entry_t *ch, size_t n)
{
    trust_t *t = ctx;
    for (size_t i = 0; i < n; i++)
        if (!ch[i].tombstone && ch[i].klen == strlen(TRUST_ROOT_KEY))
            apply_root(t, ch[i].value, ch[i].vlen);
}

/* ---- the certifier ----------------------------------------------------------------------- */

struct find_use {
    char suffix[20];
    uint64_t token;
};

static int find_use_cb(const store_entry_t *e, void *ctx)
{
    struct find_use *f = ctx;
    size_t sl = strlen(f->suffix), pl = strlen(REG_TOKENUSE_PREFIX);
    if (e->tombstone || e->klen != pl + 16 + sl || memcmp(e->key + e->klen - sl, f->suffix, sl))
        return 0;
    uint64_t id = 0;
    for (size_t i = pl; i < pl + 16; i++) {
        char c = e->key[i];
        id = (id << 4) | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    f->token = id;
    return 1;
}

/* The capabilities node id enrolled with: its join's token, signed by an inviter. */
static int caps_of(trust_t *t, uint64_t id, uint32_t *caps, const char **why)
{
    struct find_use f = {0};
    snprintf(f.suffix, sizeof(f.suffix), "/%016llx", (unsigned long long)id);
    store_list(t->o.store, REG_TOKENUSE_PREFIX, strlen(REG_TOKENUSE_PREFIX), find_use_cb, &f);
    if (!f.token) {
        *why = "no join of it is recorded (tokenuse/)";
        return -ENOENT;
    }
    char key[64];
    store_entry_t e;
    reg_token_t tok;
    reg_token_key(f.token, key, sizeof(key));
    if (store_get(t->o.store, key, strlen(key), &e)) {
        *why = "the token it joined with is gone";
        return -ENOENT;
    }
    int rc = reg_token_parse(e.value, e.vlen, f.token, &tok, why);
    store_entry_free(&e);
    if (rc)
        return rc;
    /* Signed at minting, so it is judged as of then: an inviter removed since does not
     * un-admit what it admitted (the join was decided while it could invite). */
    if (trust_token_ok(t, &tok, tok.created_ms, why))
        return -EACCES;
    *caps = tok.caps ? tok.caps : CAP_ALL;
    return 0;
}

struct certify_ctx {
    trust_t *t;
    uint64_t now;
    bool all;      /* upgrade: every PoP, every capability */
    unsigned done; /* certificates written */
};

/* PoP records, collected: the store cannot be read again inside store_list's callback (one
 * LMDB read transaction per thread). */
struct pops {
    reg_node_t *v;
    size_t n, cap;
};

static int collect_pop(const store_entry_t *e, void *ctx)
{
    struct pops *p = ctx;
    uint64_t id;
    const char *why;
    if (e->tombstone || reg_node_key_id(e->key, e->klen, &id))
        return 0;
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->v = xrealloc(p->v, p->cap * sizeof(*p->v));
    }
    if (reg_node_parse(e->value, e->vlen, id, &p->v[p->n], &why) == 0 &&
        p->v[p->n].role == ROLE_POP)
        p->n++;
    return 0;
}

static void certify_one(struct certify_ctx *cc, const reg_node_t *np)
{
    trust_t *t = cc->t;
    const reg_node_t n = *np;
    uint64_t id = n.id;
    const char *why = "";
    char key[NODECERT_KEY_MAX];
    store_entry_t ce;
    nodecert_key(id, key, sizeof(key));
    bool have = store_get(t->o.store, key, strlen(key), &ce) == 0;
    nodecert_t c;
    bool good = have && !nodecert_parse(ce.value, ce.vlen, &c, &why) && c.node_id == id &&
                !memcmp(c.sign_pk, n.sign_pk, 32) &&
                !nodecert_verify(&c, &t->roots, 0, cc->now, &why);
    if (have)
        store_entry_free(&ce);
    if (n.removed) {
        /* Revocation is the removed flag; deleting the certificate too keeps nodecert/ a
         * list of the PoPs that may sign. */
        if (have)
            meshnode_del_record(t->o.mesh, key, strlen(key), NULL);
        return;
    }
    uint32_t caps = CAP_ALL;
    if (good) {
        if (c.not_after_ms - cc->now > (c.not_after_ms - c.not_before_ms) / RENEW_LEFT &&
            c.issuer == rootkey_id(t->root.pk))
            return;
        caps = c.caps; /* renewal, or re-issue under a rotated root: same capabilities */
    } else if (!cc->all && caps_of(t, id, &caps, &why)) {
        t->refused++;
        log_info("trust: not certifying %s (%016llx): %s; if it belongs in the mesh, run meshctl "
                 "key certify --node %s",
                 n.name, (unsigned long long)id, why, n.name);
        return;
    }
    nodecert_t nc = {.node_id = id,
                     .caps = caps | CAP_VERIFY,
                     .not_before_ms = cc->now - 60000,
                     .not_after_ms = cc->now + NODECERT_VALID};
    memcpy(nc.sign_pk, n.sign_pk, 32);
    nodecert_sign(&nc, &t->root);
    if (put_cert(t, &nc) == 0) {
        char cs[CAPS_TEXT_MAX];
        nodecert_caps_format(nc.caps, cs, sizeof(cs));
        log_info("trust: certified %s (%016llx): %s", n.name, (unsigned long long)id, cs);
        t->issued++;
        cc->done++;
    }
}

static void certify_all(trust_t *t, bool all)
{
    if (!t->have_root || !t->have_roots)
        return;
    struct certify_ctx cc = {.t = t, .now = clock_wall_ms(), .all = all};
    struct pops p = {0};
    store_list(t->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), collect_pop, &p);
    for (size_t i = 0; i < p.n; i++)
        certify_one(&cc, &p.v[i]);
    free(p.v);
}

static void on_certify_idle(struct ev_loop *loop, ev_idle *w, int revents)
{
    (void)revents;
    ev_idle_stop(loop, w);
    certify_all(w->data, false);
}

static void on_registry(void *ctx, const store_entry_t *ch, size_t n)
{
    trust_t *t = ctx;
    (void)ch;
    (void)n;
    t->key_gen++;
    if (t->have_root)
        ev_idle_start(t->o.loop, &t->certify_idle);
    adopt_soon(t);
}

/* ---- upgrading a mesh made before roots ---------------------------------------------------- */

struct oldest {
    uint64_t id, joined;
    bool any;
};

static int oldest_cb(const store_entry_t *e, void *ctx)
{
    struct oldest *o = ctx;
    uint64_t id;
    reg_node_t n;
    const char *why;
    if (e->tombstone || reg_node_key_id(e->key, e->klen, &id) ||
        reg_node_parse(e->value, e->vlen, id, &n, &why) || n.removed || n.role != ROLE_POP)
        return 0;
    if (!o->any || n.joined_ms < o->joined || (n.joined_ms == o->joined && id < o->id)) {
        o->any = true;
        o->id = id;
        o->joined = n.joined_ms;
    }
    return 0;
}

static int make_root(trust_t *t, uint64_t legacy_until_ms, char *err, size_t errlen)
{
    char path[4096];
    rootkey_t root;
    rootkey_generate(&root);
    snprintf(path, sizeof(path), "%s/%s", t->o.dir, ROOTKEY_FILE);
    int rc = rootkey_save(path, &root, err, errlen);
    if (rc) {
        sodium_memzero(&root, sizeof(root));
        return rc;
    }
    t->root = root;
    t->have_root = true;
    sodium_memzero(&root, sizeof(root));
    trustroot_rec_t r = {.created_ms = clock_wall_ms(), .legacy_until_ms = legacy_until_ms};
    memcpy(r.root_pk, t->root.pk, 32);
    trustroot_sign(&r, t->o.meshkey->sk);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    trustroot_pack(&pk, &r);
    apply_root(t, (const uint8_t *)sb.data, sb.size); /* pins it here first */
    rc = meshnode_put_record(t->o.mesh, TRUST_ROOT_KEY, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        snprintf(err, errlen, "cannot write trust/root: %s", store_last_error(t->o.store));
    return rc;
}

static void on_upgrade(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    trust_t *t = w->data;
    store_entry_t e;
    if (t->have_roots || store_get(t->o.store, TRUST_ROOT_KEY, strlen(TRUST_ROOT_KEY), &e) == 0) {
        if (!t->have_roots) {
            apply_root(t, e.value, e.vlen);
            store_entry_free(&e);
        }
        if (t->have_roots)
            ev_timer_stop(loop, w);
        return;
    }
    struct oldest o = {0};
    store_list(t->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), oldest_cb, &o);
    if (!o.any || o.id != t->o.id->node_id)
        return; /* the oldest PoP does it; we pin its root when trust/root arrives */
    char err[400];
    /* Cookies made with the mesh key before now stay valid for their lifetime. */
    uint64_t until = clock_wall_ms() + 1;
    if (make_root(t, until, err, sizeof(err))) {
        log_error("trust: cannot create the mesh's root: %s", err);
        return;
    }
    log_info("trust: this mesh had no root: created one (%s/%s) as its oldest PoP, certified "
             "every PoP with every capability; move it off-line with meshctl key export-root",
             t->o.dir, ROOTKEY_FILE);
    certify_all(t, true);
    ev_timer_stop(loop, w);
}

/* ---- signed configuration ------------------------------------------------------------------
 *
 * The mesh's policy (who may sign in, what is published and to whom) is written only by PoPs
 * whose certificate holds admin. Every PoP signs the records of these prefixes it writes
 * (store_set_signer); once a root is pinned, a PoP merges a remote record of them only if it
 * is signed by its origin and that origin's certificate holds the capability now
 * (store_set_guard). One exception: a PoP that may issue sessions writes the records of the
 * users an identity provider signs in there (names "idp:subject", no password, never raising
 * the admin flag): it could sign their sessions anyway.
 *
 * ADOPTION. Records already in the store stay: they were accepted when they arrived. But a
 * record whose signature no longer counts (written before the mesh signed, or by a PoP since
 * removed or no longer admin) would be refused by a PoP that joins later, and the mesh would
 * disagree. So every admin PoP, after a change to the registry or the certificates, signs
 * such records again (store_resign: the same value at version + 1, so no later write is
 * undone). What it re-signs is what it already accepted: nothing a removed PoP sends after its
 * removal gets in. */
static const char *const admin_prefixes[] = {
    AUTH_USER_PREFIX, AUTH_RULE_PREFIX, AUTH_APIKEY_PREFIX, RESOURCE_PREFIX, RESOURCE_CA_PREFIX,
    REG_SITE_PREFIX,  IDP_PREFIX,       ZONE_PREFIX,        GEO_PREFIX,      ALERT_PREFIX,
    TOTPREC_PREFIX,
};

uint32_t trust_record_needs(const char *key, size_t klen)
{
    uint64_t id;
    for (size_t i = 0; i < sizeof(admin_prefixes) / sizeof(admin_prefixes[0]); i++) {
        size_t pl = strlen(admin_prefixes[i]);
        if (klen > pl && memcmp(key, admin_prefixes[i], pl) == 0)
            return CAP_ADMIN;
    }
    if (reg_node_key_id(key, klen, &id) == 0)
        return CAP_VERIFY; /* see node_record_check */
    return 0;
}

/* Where the checks below get a writer's key: trust_node_key, through t's cache when t is
 * not NULL (the merge guard; the loop-free trust_record_check passes none). */
struct keys_of {
    store_t *store;
    const trustroots_t *roots;
    trust_t *t;
};

static int writer_key(const struct keys_of *k, uint64_t id, uint32_t need, uint64_t now_ms,
                      uint8_t pk[32], const char **why)
{
    trust_t *t = k->t;
    if (t)
        for (size_t i = 0; i < sizeof(t->kcache) / sizeof(t->kcache[0]); i++) {
            struct keycache *c = &t->kcache[i];
            if (c->until_ms && c->gen == t->key_gen && c->id == id && c->need == need &&
                now_ms < c->until_ms) {
                memcpy(pk, c->pk, 32);
                *why = c->why;
                return c->rc;
            }
        }
    int rc = trust_node_key(k->store, k->roots, id, need, now_ms, pk, why);
    if (t) {
        struct keycache *c = &t->kcache[t->kcache_next++ % (sizeof(t->kcache) / sizeof(t->kcache[0]))];
        *c = (struct keycache){.id = id, .gen = t->key_gen, .until_ms = now_ms + KEYCACHE_MS,
                               .need = need, .rc = rc, .why = rc ? *why : ""};
        memcpy(c->pk, pk, 32);
    }
    return rc;
}

/* Did an admin's change happen between old and neu: who the node is, or its standing? */
static bool node_admin_change(const reg_node_t *old, const reg_node_t *neu)
{
    return old->removed != neu->removed || old->draining != neu->draining ||
           old->role != neu->role || strcmp(old->name, neu->name) || strcmp(old->site, neu->site) ||
           sodium_memcmp(old->sign_pk, neu->sign_pk, 32) ||
           sodium_memcmp(old->curve_pk, neu->curve_pk, 32);
}

/* node/<id>, the registry. Not policy, but where revocation lives: a member that could write
 * it would remove the admins, or bring itself back after node rm (and be certified again from
 * its join's token). So:
 *  - a new record (a join: the arbiter writes it) needs a certified writer;
 *  - removal, drain and identity (name, role, site, keys) change only by an admin; a removal
 *    is never undone (a removed PoP joins again as a new node);
 *  - the rest (addresses, labels, location: what a PoP publishes about itself) by an admin or
 *    by the node itself, whose key is the one its current record holds;
 *  - a delete only by an admin.
 * On success *pk is the key the signature must verify with. */
static int node_record_check(const struct keys_of *k, const store_entry_t *e, uint64_t now_ms,
                             uint8_t pk[32], const char **why)
{
    store_t *store = k->store;
    uint64_t id;
    char key[64];
    store_entry_t se;
    reg_node_t *old = NULL, *neu = NULL;
    int rc = -EACCES;
    if (reg_node_key_id(e->key, e->klen, &id))
        return -EACCES;
    reg_node_key(id, key, sizeof(key));
    if (store_get(store, key, strlen(key), &se) == 0) {
        old = xcalloc(1, sizeof(*old));
        const char *w;
        if (reg_node_parse(se.value, se.vlen, id, old, &w)) {
            free(old);
            old = NULL;
        }
        store_entry_free(&se);
    }
    bool admin = writer_key(k, e->origin, CAP_ADMIN, now_ms, pk, why) == 0;
    if (admin) {
        rc = 0;
        goto out;
    }
    if (e->tombstone) {
        *why = "only an admin PoP may delete a node's record";
        goto out;
    }
    neu = xcalloc(1, sizeof(*neu));
    if (reg_node_parse(e->value, e->vlen, id, neu, why))
        goto out;
    if (!old) {
        rc = writer_key(k, e->origin, CAP_VERIFY, now_ms, pk, why);
        goto out;
    }
    if (old->removed && !neu->removed) {
        *why = "a removal is not undone (a removed PoP joins again as a new node)";
        goto out;
    }
    if (node_admin_change(old, neu)) {
        *why = "removal, drain, name, role and keys change only by an admin PoP";
        goto out;
    }
    if (e->origin != id || old->removed) {
        *why = "only an admin PoP or the node itself may update its record";
        goto out;
    }
    memcpy(pk, old->sign_pk, 32);
    rc = 0;
out:
    free(old);
    free(neu);
    return rc;
}

/* user/<idp:subject>: the name, NUL-terminated, into name; false for any other key. */
static bool idp_user_name(const store_entry_t *e, char *name, size_t len)
{
    size_t pl = strlen(AUTH_USER_PREFIX), nl = e->klen - pl;
    if (e->klen <= pl || memcmp(e->key, AUTH_USER_PREFIX, pl) || nl >= len ||
        !memchr(e->key + pl, ':', nl))
        return false;
    memcpy(name, e->key + pl, nl);
    name[nl] = '\0';
    return true;
}

/* The exception for sign-ins: may a PoP holding issue-sessions write e? */
static bool idp_user_ok(store_t *store, const store_entry_t *e, const char **why)
{
    char name[AUTH_KEY_MAX];
    if (!idp_user_name(e, name, sizeof(name)))
        return false;
    if (e->tombstone) {
        *why = "only an admin PoP may delete a user";
        return false;
    }
    auth_user_t *u = xcalloc(1, sizeof(*u));
    bool ok = auth_user_parse(e->value, e->vlen, name, u, why) == 0;
    if (ok && u->pwhash[0]) {
        *why = "a user with a password is written only by an admin PoP";
        ok = false;
    }
    if (ok && u->admin) {
        /* Kept from the record an admin wrote, never raised here. */
        auth_user_t *old = xcalloc(1, sizeof(*old));
        ok = auth_user_get(store, name, old) == 0 && old->admin;
        free(old);
        if (!ok)
            *why = "only an admin PoP may make a user an admin";
    }
    free(u);
    return ok;
}

static int record_check(const struct keys_of *k, const store_entry_t *e, uint64_t now_ms,
                        const char **why)
{
    uint32_t need = trust_record_needs(e->key, e->klen);
    uint8_t pk[32];
    if (!need)
        return 0;
    if (!e->has_sig) {
        *why = "unsigned (written by a popd that does not sign, or forged)";
        return -EACCES;
    }
    if (need == CAP_VERIFY) {
        if (node_record_check(k, e, now_ms, pk, why))
            return -EACCES;
    } else if (writer_key(k, e->origin, need, now_ms, pk, why)) {
        const char *w2 = *why;
        if (writer_key(k, e->origin, CAP_ISSUE_SESSIONS, now_ms, pk, &w2) ||
            !idp_user_ok(k->store, e, &w2)) {
            static char buf[200];
            snprintf(buf, sizeof(buf), "its origin may not write it: %s", *why);
            *why = buf;
            return -EACCES;
        }
    }
    size_t ml;
    uint8_t *m = store_sig_message(e, &ml);
    int rc = crypto_sign_verify_detached(e->sig, m, ml, pk);
    free(m);
    if (rc) {
        *why = "the signature does not verify (tampered, or signed by another key)";
        return -EACCES;
    }
    return 0;
}

int trust_record_check(store_t *store, const trustroots_t *roots, const store_entry_t *e,
                       uint64_t now_ms, const char **why)
{
    struct keys_of k = {.store = store, .roots = roots};
    return record_check(&k, e, now_ms, why);
}

static bool sign_cb(void *ctx, const store_entry_t *e, uint8_t sig[STORE_SIG_BYTES])
{
    trust_t *t = ctx;
    if (t->sign_off || !trust_record_needs(e->key, e->klen))
        return false;
    size_t ml;
    uint8_t *m = store_sig_message(e, &ml);
    crypto_sign_detached(sig, NULL, m, ml, t->o.id->sign_sk);
    free(m);
    return true;
}

static bool guard_wants_cb(void *ctx, const char *key, size_t klen)
{
    trust_t *t = ctx;
    return t->have_roots && trust_record_needs(key, klen) != 0;
}

static int guard_cb(void *ctx, const store_entry_t *e)
{
    trust_t *t = ctx;
    const char *why = "";
    struct keys_of k = {.store = t->o.store, .roots = &t->roots, .t = t};
    if (record_check(&k, e, clock_wall_ms(), &why) == 0)
        return 0;
    char kb[96];
    t->cfg_refused++;
    snprintf(t->cfg_last_refused, sizeof(t->cfg_last_refused), "%s from %016llx: %s",
             log_esc(kb, sizeof(kb), e->key, e->klen), (unsigned long long)e->origin, why);
    /* One line a second at most: a PoP sending forgeries must not flood the log. */
    double now = ev_now(t->o.loop);
    if (now - t->cfg_log_at >= 1.0) {
        log_warn("trust: refused the record %s%s", t->cfg_last_refused,
                 t->cfg_log_skipped ? " (and others not logged)" : "");
        t->cfg_log_at = now;
        t->cfg_log_skipped = 0;
    } else {
        t->cfg_log_skipped++;
    }
    return -EACCES;
}

/* The adopt pass: collect (the store cannot be read inside its own walk), judge, re-sign. */
struct adopt_item {
    char *key;
    size_t klen;
    uint64_t origin;
    bool has_sig;
    bool idp_user; /* user/<idp:subject> */
    bool node;     /* node/<id>: self is its id */
    uint64_t self;
};

struct adopt_walk {
    struct adopt_item *v;
    size_t n, cap;
};

static int adopt_collect(const store_entry_t *e, void *ctx)
{
    struct adopt_walk *w = ctx;
    char name[AUTH_KEY_MAX];
    if (!trust_record_needs(e->key, e->klen))
        return 0;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->v = xrealloc(w->v, w->cap * sizeof(*w->v));
    }
    struct adopt_item *it = &w->v[w->n++];
    it->key = xmemdup(e->key, e->klen);
    it->klen = e->klen;
    it->origin = e->origin;
    it->has_sig = e->has_sig;
    it->idp_user = !e->tombstone && idp_user_name(e, name, sizeof(name));
    it->node = reg_node_key_id(e->key, e->klen, &it->self) == 0;
    return 0;
}

/* What each origin may write, looked up once per pass. */
struct origin_caps {
    uint64_t id;
    bool admin, sessions, verify;
};

static const struct origin_caps *origin_of(trust_t *t, struct origin_caps **v, size_t *n,
                                           uint64_t id, uint64_t now)
{
    for (size_t i = 0; i < *n; i++)
        if ((*v)[i].id == id)
            return &(*v)[i];
    uint8_t pk[32];
    const char *why;
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    struct origin_caps *o = &(*v)[(*n)++];
    o->id = id;
    o->admin = trust_node_key(t->o.store, &t->roots, id, CAP_ADMIN, now, pk, &why) == 0;
    o->sessions = trust_node_key(t->o.store, &t->roots, id, CAP_ISSUE_SESSIONS, now, pk, &why) == 0;
    o->verify = trust_node_key(t->o.store, &t->roots, id, CAP_VERIFY, now, pk, &why) == 0;
    return o;
}

static void adopt_pass(trust_t *t)
{
    char err[300];
    if (!t->have_roots || t->sign_off || trust_self_may(t, CAP_ADMIN, err, sizeof(err)))
        return;
    uint8_t all[STORE_BUCKETS / 8];
    memset(all, 0xff, sizeof(all));
    struct adopt_walk w = {0};
    if (store_export(t->o.store, all, adopt_collect, &w) < 0)
        log_warn("trust: cannot walk the store for records to sign again: %s",
                 store_last_error(t->o.store));
    struct origin_caps *oc = NULL;
    size_t noc = 0, done = 0;
    uint64_t now = clock_wall_ms();
    bool more = false;
    for (size_t i = 0; i < w.n; i++) {
        struct adopt_item *it = &w.v[i];
        const struct origin_caps *o = origin_of(t, &oc, &noc, it->origin, now);
        /* Would a PoP that has not seen it take it? (node/: one that has no record yet) */
        bool counts = it->has_sig && (o->admin || (it->idp_user && o->sessions) ||
                                      (it->node && (o->verify || it->origin == it->self)));
        if (!counts && done < ADOPT_BATCH) {
            store_entry_t out;
            if (store_resign(t->o.store, it->key, it->klen, now, &out) == 0) {
                out.key = it->key;
                out.klen = it->klen;
                meshnode_published(t->o.mesh, &out);
                free(out.value);
                done++;
            }
        } else if (!counts) {
            more = true;
        }
        free(it->key);
    }
    free(w.v);
    free(oc);
    if (done) {
        t->cfg_adopted += done;
        log_info("trust: signed %zu configuration record%s again (written unsigned, or by a PoP "
                 "that may no longer write them), so that every PoP accepts them",
                 done, done == 1 ? "" : "s");
    }
    if (more) { /* the rest after a turn of the loop */
        ev_timer_stop(t->o.loop, &t->adopt_timer);
        ev_timer_set(&t->adopt_timer, 0.01, 0.0);
        ev_timer_start(t->o.loop, &t->adopt_timer);
    }
}

static void on_adopt_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop;
    (void)revents;
    adopt_pass(w->data);
}

static void adopt_soon(trust_t *t)
{
    if (ev_is_active(&t->adopt_timer))
        return; /* already coming: changes come in bursts */
    ev_timer_set(&t->adopt_timer, ADOPT_DELAY_S, 0.0);
    ev_timer_start(t->o.loop, &t->adopt_timer);
}

static void on_certs(void *ctx, const store_entry_t *ch, size_t n)
{
    trust_t *t = ctx;
    (void)ch;
    (void)n;
    t->key_gen++;
    adopt_soon(t);
}

/* ---- hooks the mesh calls ----------------------------------------------------------------- */

static int token_ok_cb(void *ctx, const reg_token_t *tok, uint64_t now_ms, const char **why)
{
    return trust_token_ok(ctx, tok, now_ms, why);
}

static int self_may_cb(void *ctx, uint32_t need, char *err, size_t errlen)
{
    return trust_self_may(ctx, need, err, errlen);
}

/* trust/root for a joiner: made from what this PoP pinned, endorsed by the mesh key (the
 * joiner checks nothing more: its seed is authenticated by the token). */
static int root_record_cb(void *ctx, msgpack_sbuffer *out)
{
    trust_t *t = ctx;
    if (!t->have_roots)
        return -ENOENT;
    trustroot_rec_t r = {.created_ms = clock_wall_ms(),
                         .legacy_until_ms = t->roots.legacy_until_ms};
    memcpy(r.root_pk, t->roots.cur, 32);
    trustroot_sign(&r, t->o.meshkey->sk);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    trustroot_pack(&pk, &r);
    return 0;
}

/* ---- life -------------------------------------------------------------------------------- */

trust_t *trust_new(const trust_opts_t *o, char *err, size_t errlen)
{
    trust_t *t = xcalloc(1, sizeof(*t));
    t->o = *o;
    char path[4096];
    int rc = trustroots_load(o->dir, &t->roots, err, errlen);
    if (rc && rc != -ENOENT)
        goto fail;
    t->have_roots = rc == 0;
    snprintf(path, sizeof(path), "%s/%s", o->dir, ROOTKEY_FILE);
    rc = rootkey_load(path, &t->root, err, errlen);
    if (rc && rc != -ENOENT)
        goto fail;
    t->have_root = rc == 0;
    if (t->have_root && (!t->have_roots || trustroots_find(&t->roots, rootkey_id(t->root.pk),
                                                           clock_wall_ms()) != t->roots.cur)) {
        snprintf(err, errlen,
                 "%s is not this PoP's current root (%s): remove it or restore the "
                 "matching %s",
                 path, TRUSTROOTS_FILE, TRUSTROOTS_FILE);
        rc = -EINVAL;
        goto fail;
    }
    t->keys = (auth_keys_t){
        .signer_key = signer_key_cb, .ctx = t, .self_sk = o->id->sign_sk, .mesh = o->meshkey};
    t->sign_off = getenv("POPMESH_TEST_UNSIGNED_CONFIG") != NULL;
    ev_init(&t->adopt_timer, on_adopt_timer);
    t->adopt_timer.data = t;
    roots_changed(t);
    store_set_signer(o->store, sign_cb, t);
    store_set_guard(o->store, guard_wants_cb, guard_cb, t);
    t->watch_certs = store_watch(o->store, NODECERT_PREFIX, strlen(NODECERT_PREFIX), on_certs, t);
    t->watch_root = store_watch(o->store, TRUST_ROOT_KEY, strlen(TRUST_ROOT_KEY), on_root, t);
    t->watch_nodes =
        store_watch(o->store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), on_registry, t);
    t->watch_uses =
        store_watch(o->store, REG_TOKENUSE_PREFIX, strlen(REG_TOKENUSE_PREFIX), on_registry, t);
    meshnode_trust_t hooks = {
        .token_ok = token_ok_cb, .self_may = self_may_cb, .root_record = root_record_cb, .ctx = t};
    meshnode_set_trust(o->mesh, &hooks);
    ev_idle_init(&t->certify_idle, on_certify_idle);
    t->certify_idle.data = t;
    ev_timer_init(&t->upgrade_timer, on_upgrade, UPGRADE_FIRST_S, UPGRADE_EVERY_S);
    t->upgrade_timer.data = t;
    if (!t->have_roots)
        ev_timer_start(o->loop, &t->upgrade_timer);
    else if (t->have_root)
        ev_idle_start(o->loop, &t->certify_idle);
    log_info("trust: %s%s", t->have_roots ? "root pinned" : "no root pinned yet",
             t->have_root ? ", root key held here" : "");
    return t;
fail:
    sodium_memzero(t, sizeof(*t));
    free(t);
    errno = -rc;
    return NULL;
}

void trust_destroy(trust_t **tp)
{
    trust_t *t = *tp;
    if (!t)
        return;
    store_unwatch(t->o.store, t->watch_root);
    store_unwatch(t->o.store, t->watch_nodes);
    store_unwatch(t->o.store, t->watch_uses);
    store_unwatch(t->o.store, t->watch_certs);
    store_set_signer(t->o.store, NULL, NULL);
    store_set_guard(t->o.store, NULL, NULL, NULL);
    ev_timer_stop(t->o.loop, &t->adopt_timer);
    ev_idle_stop(t->o.loop, &t->certify_idle);
    ev_timer_stop(t->o.loop, &t->upgrade_timer);
    sodium_memzero(t, sizeof(*t));
    free(t);
    *tp = NULL;
}

const auth_keys_t *trust_auth_keys(trust_t *t)
{
    return &t->keys;
}

/* ---- commands ---------------------------------------------------------------------------- */

/* A PoP by name or 16-hex id, from the store. */
static int find_node(trust_t *t, const char *name, reg_node_t *out);

struct by_name {
    const char *name;
    reg_node_t *out;
    bool found;
};

static int by_name_cb(const store_entry_t *e, void *ctx)
{
    struct by_name *b = ctx;
    uint64_t id;
    reg_node_t n;
    const char *why;
    char hex[17];
    if (e->tombstone || reg_node_key_id(e->key, e->klen, &id) ||
        reg_node_parse(e->value, e->vlen, id, &n, &why) || n.role != ROLE_POP)
        return 0;
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)id);
    if (strcmp(n.name, b->name) && strcmp(hex, b->name))
        return 0;
    if (n.removed && b->found)
        return 0; /* a live node of that name wins over a removed one */
    *b->out = n;
    b->found = true;
    return 0;
}

static int find_node(trust_t *t, const char *name, reg_node_t *out)
{
    struct by_name b = {.name = name, .out = out};
    store_list(t->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), by_name_cb, &b);
    return b.found ? 0 : -ENOENT;
}

static void pack_hex(msgpack_packer *pk, const char *k, const uint8_t *b, size_t n)
{
    char hex[129];
    sodium_bin2hex(hex, sizeof(hex), b, n);
    mpw_kv_str(pk, k, hex);
}

struct certs {
    nodecert_t *v;
    size_t n, cap;
};

static int collect_cert(const store_entry_t *e, void *ctx)
{
    struct certs *c = ctx;
    const char *why;
    if (e->tombstone)
        return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->v = xrealloc(c->v, c->cap * sizeof(*c->v));
    }
    if (nodecert_parse(e->value, e->vlen, &c->v[c->n], &why) == 0)
        c->n++;
    return 0;
}

static int cmd_status(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    trust_t *t = ctx;
    (void)req;
    char id[17] = "", prev[17] = "", caps[CAPS_TEXT_MAX] = "none";
    const char *why = "no root pinned";
    uint8_t k[32];
    if (t->have_roots) {
        snprintf(id, sizeof(id), "%016llx", (unsigned long long)rootkey_id(t->roots.cur));
        if (t->roots.has_prev)
            snprintf(prev, sizeof(prev), "%016llx", (unsigned long long)rootkey_id(t->roots.prev));
    }
    bool self_ok = t->have_roots && trust_node_key(t->o.store, &t->roots, t->o.id->node_id, 0,
                                                   clock_wall_ms(), k, &why) == 0;
    if (self_ok) {
        char key[NODECERT_KEY_MAX];
        store_entry_t e;
        nodecert_t c;
        nodecert_key(t->o.id->node_id, key, sizeof(key));
        if (store_get(t->o.store, key, strlen(key), &e) == 0) {
            if (!nodecert_parse(e.value, e.vlen, &c, &why))
                nodecert_caps_format(c.caps, caps, sizeof(caps));
            store_entry_free(&e);
        }
    }
    msgpack_pack_map(pk, 12);
    mpw_kv_str(pk, "root", id);
    mpw_kv_str(pk, "root_previous", prev);
    mpw_kv_u64(pk, "root_previous_until_ms", t->roots.has_prev ? t->roots.prev_until_ms : 0);
    mpw_kv_bool(pk, "root_key_here", t->have_root);
    mpw_kv_u64(pk, "legacy_until_ms", t->have_roots ? t->roots.legacy_until_ms : UINT64_MAX);
    mpw_kv_str(pk, "caps", caps);
    mpw_kv_str(pk, "cert", self_ok ? "valid" : why);
    mpw_kv_u64(pk, "issued", t->issued);
    mpw_kv_u64(pk, "uncertified", t->refused);
    mpw_kv_u64(pk, "config_refused", t->cfg_refused);
    mpw_kv_str(pk, "config_last_refused", t->cfg_last_refused);
    mpw_kv_u64(pk, "config_adopted", t->cfg_adopted);
    return CTL_OK;
}

static int cmd_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    trust_t *t = ctx;
    (void)req;
    struct certs cs = {0};
    store_list(t->o.store, NODECERT_PREFIX, strlen(NODECERT_PREFIX), collect_cert, &cs);
    msgpack_pack_array(pk, (uint32_t)cs.n);
    for (size_t i = 0; i < cs.n; i++) {
        const nodecert_t *c = &cs.v[i];
        char caps[CAPS_TEXT_MAX], id[17], iss[17];
        const char *why = "no root pinned";
        uint8_t k[32];
        int ok = t->have_roots ? trust_node_key(t->o.store, &t->roots, c->node_id, 0,
                                                clock_wall_ms(), k, &why)
                               : -EACCES;
        nodecert_caps_format(c->caps, caps, sizeof(caps));
        snprintf(id, sizeof(id), "%016llx", (unsigned long long)c->node_id);
        snprintf(iss, sizeof(iss), "%016llx", (unsigned long long)c->issuer);
        msgpack_pack_map(pk, 6);
        mpw_kv_str(pk, "node", id);
        mpw_kv_str(pk, "caps", caps);
        mpw_kv_u64(pk, "not_after_ms", c->not_after_ms);
        mpw_kv_str(pk, "issuer", iss);
        mpw_kv_bool(pk, "valid", ok == 0);
        mpw_kv_str(pk, "why", ok == 0 ? "" : why);
    }
    free(cs.v);
    return CTL_OK;
}

/* key.node NODE -> {id, sign_pk, name}: what an off-line certify needs. */
static int cmd_node(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    trust_t *t = ctx;
    char name[NODECFG_NAME_MAX + 1];
    reg_node_t n;
    if (ctl_arg_copy(req, "node", name, sizeof(name)) <= 0)
        return control_error(pk, CTL_BAD_REQUEST, "node NAME is required");
    if (find_node(t, name, &n) || n.removed)
        return control_error(pk, CTL_NOT_FOUND, "no PoP named '%s' in the registry", name);
    char id[17];
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)n.id);
    msgpack_pack_map(pk, 3);
    mpw_kv_str(pk, "id", id);
    mpw_kv_str(pk, "name", n.name);
    pack_hex(pk, "sign_pk", n.sign_pk, 32);
    return CTL_OK;
}

/* key.certify {node, caps[, cert: bin]}: with cert (made off-line by meshctl with the root
 * file), checks it against the pinned roots and the registry and stores it; without, signs
 * one here with the root key. */
static int cmd_certify(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    trust_t *t = ctx;
    char name[NODECFG_NAME_MAX + 1];
    const uint8_t *cb;
    size_t cl;
    reg_node_t n;
    nodecert_t c;
    const char *why = "";
    uint64_t caps = CAP_ALL, now = clock_wall_ms();
    if (!t->have_roots)
        return control_error(pk, CTL_FAILED, "this PoP has no root pinned yet");
    if (ctl_arg_copy(req, "node", name, sizeof(name)) <= 0)
        return control_error(pk, CTL_BAD_REQUEST, "node NAME is required");
    if (find_node(t, name, &n) || n.removed)
        return control_error(pk, CTL_NOT_FOUND, "no PoP named '%s' in the registry", name);
    if (ctl_arg(req, "cert", &cb, &cl) > 0) {
        if (nodecert_parse(cb, cl, &c, &why) || nodecert_verify(&c, &t->roots, 0, now, &why))
            return control_error(pk, CTL_REFUSED, "the certificate is refused: %s", why);
        if (c.node_id != n.id || memcmp(c.sign_pk, n.sign_pk, 32))
            return control_error(pk, CTL_REFUSED,
                                 "the certificate is for another node or key than %s's", name);
    } else {
        if (!t->have_root)
            return control_error(pk, CTL_FAILED,
                                 "the root key is not on this PoP: certify off-line with "
                                 "meshctl key certify --root FILE --node %s",
                                 name);
        if (ctl_arg_uint(req, "caps", &caps) < 0 || caps == 0 || caps > CAP_ALL)
            return control_error(pk, CTL_BAD_REQUEST, "caps must be a capability mask");
        c = (nodecert_t){.node_id = n.id,
                         .caps = (uint32_t)caps | CAP_VERIFY,
                         .not_before_ms = now - 60000,
                         .not_after_ms = now + NODECERT_VALID};
        memcpy(c.sign_pk, n.sign_pk, 32);
        nodecert_sign(&c, &t->root);
    }
    if (put_cert(t, &c))
        return control_error(pk, CTL_FAILED, "cannot store the certificate: %s",
                             store_last_error(t->o.store));
    char cs[CAPS_TEXT_MAX], id[17];
    nodecert_caps_format(c.caps, cs, sizeof(cs));
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)n.id);
    log_info("trust: certificate of %s (%s) stored: %s", n.name, id, cs);
    msgpack_pack_map(pk, 3);
    mpw_kv_str(pk, "node", n.name);
    mpw_kv_str(pk, "id", id);
    mpw_kv_str(pk, "caps", cs);
    return CTL_OK;
}

/* key.export-root -> {root_key: hex seed}; key.forget-root {root: id} removes it here once
 * meshctl has written it elsewhere. Two steps, so a failed write loses nothing. */
static int cmd_export_root(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    trust_t *t = ctx;
    (void)req;
    if (!t->have_root)
        return control_error(pk, CTL_NOT_FOUND, "the root key is not on this PoP");
    char id[17];
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)rootkey_id(t->root.pk));
    msgpack_pack_map(pk, 2);
    pack_hex(pk, "root_seed", t->root.sk, 32);
    mpw_kv_str(pk, "root", id);
    log_info("trust: root key %s exported to the control socket's client", id);
    return CTL_OK;
}

static int cmd_forget_root(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    trust_t *t = ctx;
    char id[17], want[17] = "";
    if (!t->have_root)
        return control_error(pk, CTL_NOT_FOUND, "the root key is not on this PoP");
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)rootkey_id(t->root.pk));
    if (ctl_arg_copy(req, "root", want, sizeof(want)) <= 0 || strcmp(want, id))
        return control_error(pk, CTL_BAD_REQUEST, "root must name the root held here (%s)", id);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", t->o.dir, ROOTKEY_FILE);
    if (unlink(path) != 0 && errno != ENOENT)
        return control_error(pk, CTL_FAILED, "cannot remove %s: %s", path, strerror(errno));
    sodium_memzero(&t->root, sizeof(t->root));
    t->have_root = false;
    log_info("trust: root key %s removed from this PoP (%s)", id, path);
    msgpack_pack_map(pk, 1);
    mpw_kv_str(pk, "root", id);
    return CTL_OK;
}

/* key.rotate-root {rollover_ms}: a new root, endorsed by the current one; every PoP's
 * certificate is issued again under it (same capabilities). The old root is accepted until
 * now + rollover_ms. */
static int cmd_rotate_root(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    trust_t *t = ctx;
    uint64_t rollover = 24ull * 3600 * 1000;
    if (!t->have_root || !t->have_roots)
        return control_error(pk, CTL_FAILED, "the root key is not on this PoP: rotate where it is");
    if (ctl_arg_uint(req, "rollover_ms", &rollover) < 0 || rollover > NODECERT_VALID)
        return control_error(pk, CTL_BAD_REQUEST, "rollover must be at most 10 years");
    rootkey_t nr;
    rootkey_generate(&nr);
    char path[4096], tmp[4200], err[400];
    snprintf(path, sizeof(path), "%s/%s", t->o.dir, ROOTKEY_FILE);
    snprintf(tmp, sizeof(tmp), "%s.new", path);
    unlink(tmp);
    if (rootkey_save(tmp, &nr, err, sizeof(err)) || rename(tmp, path) != 0) {
        sodium_memzero(&nr, sizeof(nr));
        unlink(tmp);
        return control_error(pk, CTL_FAILED, "cannot write the new root: %s", err);
    }
    trustroot_rec_t r = {.created_ms = clock_wall_ms(),
                         .prev_until_ms = clock_wall_ms() + rollover,
                         .legacy_until_ms = t->roots.legacy_until_ms};
    memcpy(r.root_pk, nr.pk, 32);
    trustroot_sign(&r, t->root.sk); /* endorsed by the current root */
    t->root = nr;
    sodium_memzero(&nr, sizeof(nr));
    msgpack_sbuffer sb;
    msgpack_packer vp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&vp, &sb, msgpack_sbuffer_write);
    trustroot_pack(&vp, &r);
    apply_root(t, (const uint8_t *)sb.data, sb.size);
    int rc = meshnode_put_record(t->o.mesh, TRUST_ROOT_KEY, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot write trust/root: %s",
                             store_last_error(t->o.store));
    certify_all(t, false); /* every certificate under the old root is issued again */
    char id[17];
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)rootkey_id(t->root.pk));
    log_info("trust: root rotated to %s; the previous root is accepted for %llu s more", id,
             (unsigned long long)(rollover / 1000));
    msgpack_pack_map(pk, 2);
    mpw_kv_str(pk, "root", id);
    mpw_kv_u64(pk, "previous_until_ms", r.prev_until_ms);
    return CTL_OK;
}

static const control_command_t commands[] = {
    {"key.status", cmd_status, "-> {root, root_key_here, caps, cert, ...}: this PoP's trust"},
    {"key.list", cmd_list, "-> [{node, caps, not_after_ms, issuer, valid, why}]: certificates"},
    {"key.node", cmd_node, "{node} -> {id, name, sign_pk}: for an off-line certify"},
    {"key.certify", cmd_certify, "{node, caps | cert: the record} -> {node, id, caps}"},
    {"key.export-root", cmd_export_root, "-> {root_seed, root}: the root key (then forget-root)"},
    {"key.forget-root", cmd_forget_root, "{root} -> {root}: removes the root key from this PoP"},
    {"key.rotate-root", cmd_rotate_root, "{rollover_ms} -> {root, previous_until_ms}"},
    {NULL, NULL, NULL},
};

int trust_register_commands(trust_t *t, control_t *ctl)
{
    return control_add_commands(ctl, commands, t);
}
