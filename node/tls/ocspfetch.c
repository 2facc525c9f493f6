/* ocspfetch: see ocspfetch.h. */
#include "node/tls/ocspfetch.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/acme/acmehttp.h"
#include "node/records/registry.h"
#include "node/tls/certstore.h"
#include "node/tls/ocsprec.h"
#include "node/tls/ticketkeys.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>
#include <sodium.h>

#define POPS_MAX        1024
#define REFRESH_MIN_MS  1000ull
#define REFRESH_MAX_MS  (24 * 3600 * 1000ull)
#define SYNC_DELAY_S    0.05 /* after a change: tlsctx reloads cert/ in its own watch first */
#define CLEAN_EVERY_MS  (60 * 1000ull)
#define ORPHAN_GRACE_MS (3600 * 1000ull) /* past its nextUpdate, a record without cert/ goes */

/* One certificate whose leaf names a responder. */
struct ocsp_cert {
    char id[CERT_ID_MAX + 1];
    char url[OCSP_URL_MAX + 1];
    X509 *leaf, *issuer;   /* owned */
    uint64_t seen_ms;      /* when this PoP loaded this leaf (Unix ms) */
    bool have;             /* a checked response for this leaf is stored */
    uint64_t this_ms, next_ms, fetched_ms; /* of that response */
    uint64_t retry_ms;     /* no fetch before this (backoff), Unix ms */
    uint64_t backoff_ms;   /* the next failure's wait */
    enum ocsp_status last_status; /* what the last sync handed on, for one log line a change */
    bool logged;
};

struct ocspfetch {
    ocspfetch_opts_t o;
    char node_name[64];
    uint64_t refresh_ms; /* 0 = half the window */
    uint64_t takeover_ms, backoff_min_ms, backoff_max_ms;
    acmehttp_t *http;
    int watch_certs, watch_ocsp;
    ev_timer tick, sync;
    struct ocsp_cert **certs;
    size_t n;
    /* the request under way */
    bool busy;
    char busy_id[CERT_ID_MAX + 1];
    X509 *busy_leaf, *busy_issuer; /* references */
    uint64_t busy_started_ms;
    uint64_t *pops;
    size_t npops;
    uint64_t clean_every_ms, orphan_grace_ms, clean_at_ms;
    ocspfetch_stats_t st;
};

/* ---- the rule ------------------------------------------------------------------------------ */

static uint64_t id_hash(const char *id)
{
    uint8_t h[8];
    crypto_generichash(h, sizeof(h), (const uint8_t *)id, strlen(id), NULL, 0);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | h[i];
    return v;
}

unsigned ocspfetch_rank(uint64_t self, const uint64_t *pops, size_t n, const char *id)
{
    return ticketkeys_rank(self, pops, n, id_hash(id));
}

uint64_t ocspfetch_due_ms(uint64_t base_ms, unsigned rank, uint64_t takeover_ms)
{
    return base_ms + (uint64_t)rank * takeover_ms;
}

/* ---- the certificates ---------------------------------------------------------------------- */

static void cert_free(struct ocsp_cert *c)
{
    if (!c)
        return;
    X509_free(c->leaf);
    X509_free(c->issuer);
    free(c);
}

static struct ocsp_cert *find(ocspfetch_t *f, const char *id)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->certs[i]->id, id))
            return f->certs[i];
    return NULL;
}

struct load {
    ocspfetch_t *f;
    struct ocsp_cert **certs;
    size_t n;
};

static int load_cert(const store_entry_t *e, void *ctx)
{
    struct load *l = ctx;
    char id[CERT_ID_MAX + 1];
    cert_rec_t rec;
    const char *why;
    if (cert_key_id(e->key, e->klen, id, sizeof(id)) || !e->value ||
        cert_parse(e->value, e->vlen, id, &rec, &why))
        return 0; /* tlsctx logs unreadable records */
    X509 *leaf, *issuer;
    char url[OCSP_URL_MAX + 1];
    int rc = ocsp_target(rec.chain_pem, &leaf, &issuer, url, sizeof(url), &why);
    cert_rec_free(&rec);
    if (rc) {
        /* No chain yet, no issuer to ask about or no responder: nothing to fetch. A responder
         * or chain that cannot be used is worth a word. */
        if (rc == -EINVAL)
            log_warn("tls: no OCSP stapling for cert/%s: %s", id, why);
        return 0;
    }
    struct ocsp_cert *c = xcalloc(1, sizeof(*c));
    snprintf(c->id, sizeof(c->id), "%s", id);
    memcpy(c->url, url, sizeof(url));
    c->leaf = leaf;
    c->issuer = issuer;
    c->seen_ms = clock_wall_ms();
    c->backoff_ms = l->f->backoff_min_ms;
    c->last_status = OCSP_ST_GOOD;
    /* The same leaf as before keeps its schedule (a record rewritten for its state). */
    struct ocsp_cert *old = find(l->f, id);
    if (old && X509_cmp(old->leaf, leaf) == 0) {
        c->seen_ms = old->seen_ms;
        c->retry_ms = old->retry_ms;
        c->backoff_ms = old->backoff_ms;
        c->last_status = old->last_status;
        c->logged = old->logged;
    }
    l->certs = xrealloc(l->certs, (l->n + 1) * sizeof(*l->certs));
    l->certs[l->n++] = c;
    return 0;
}

static void reload_certs(ocspfetch_t *f)
{
    struct load l = {.f = f};
    if (store_list(f->o.store, CERT_PREFIX, strlen(CERT_PREFIX), load_cert, &l)) {
        log_warn("tls: cannot read the certificates for OCSP: %s", store_last_error(f->o.store));
        for (size_t i = 0; i < l.n; i++)
            cert_free(l.certs[i]);
        free(l.certs);
        return;
    }
    for (size_t i = 0; i < f->n; i++)
        cert_free(f->certs[i]);
    free(f->certs);
    f->certs = l.certs;
    f->n = l.n;
}

/* The stored response of c, checked against the leaf this PoP serves, handed to tlsctx when it
 * says good, else dropped from it. */
static void apply(ocspfetch_t *f, struct ocsp_cert *c, uint64_t now)
{
    char key[CERT_ID_MAX + 8];
    ocsp_key(c->id, key, sizeof(key));
    store_entry_t e = {0};
    c->have = false;
    if (store_get(f->o.store, key, strlen(key), &e) || !e.value) {
        store_entry_free(&e);
        return; /* pending */
    }
    ocsp_rec_t r;
    ocsp_info_t info;
    const char *why;
    /* The rule cert.list shows too (ocsprec.h): only GOOD is stapled. */
    enum ocsp_state state =
        ocsp_judge_record(e.value, e.vlen, c->leaf, c->issuer, now, &r, &info, &why);
    store_entry_free(&e);
    if (state == OCSP_STATE_STALE || state == OCSP_STATE_UNUSABLE) {
        /* Stale, for a leaf this PoP no longer serves (a renewal racing its response), or
         * bad: never stapled. The fetcher replaces it in its turn. */
        f->st.refused++;
        c->logged = false; /* the next good one is logged again */
        tlsctx_clear_ocsp(f->o.tls, c->id);
        log_debug("tls: the stored OCSP response of cert/%s is not used: %s", c->id, why);
        ocsp_rec_free(&r);
        return;
    }
    c->have = true;
    c->this_ms = info.this_update_ms;
    c->next_ms = info.next_update_ms;
    c->fetched_ms = r.fetched_ms;
    if (state == OCSP_STATE_GOOD) {
        int rc = tlsctx_set_ocsp(f->o.tls, c->id, r.der, r.der_len);
        if (rc == 0) {
            f->st.stapling++;
            if (c->last_status != OCSP_ST_GOOD || !c->logged)
                log_info("tls: stapling the OCSP response of cert/%s (good, fetched by %s, "
                         "next update in %llu s)",
                         c->id, r.fetched_by, (unsigned long long)((c->next_ms - now) / 1000));
            c->logged = true;
        } else {
            log_warn("tls: tlsctx refused the OCSP response of cert/%s (%s)", c->id,
                     rc == -ENOENT ? "the certificate is not loaded" : "not a good response");
        }
    } else {
        tlsctx_clear_ocsp(f->o.tls, c->id);
        if (c->last_status != info.status || !c->logged)
            log_warn("tls: the OCSP responder says cert/%s is %s (fetched by %s): its response is "
                     "not stapled",
                     c->id, ocsp_status_name(info.status), r.fetched_by);
        c->logged = true;
    }
    c->last_status = info.status;
    ocsp_rec_free(&r);
}

static void sync_all(ocspfetch_t *f)
{
    uint64_t now = clock_wall_ms();
    f->st.stapling = 0;
    for (size_t i = 0; i < f->n; i++)
        apply(f, f->certs[i], now);
}

static void on_sync(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    ocspfetch_t *f = w->data;
    reload_certs(f);
    sync_all(f);
}

static void schedule_sync(ocspfetch_t *f)
{
    if (!ev_is_active(&f->sync)) {
        ev_timer_set(&f->sync, SYNC_DELAY_S, 0.);
        ev_timer_start(f->o.loop, &f->sync);
    }
}

static void on_changed(void *ctx, const store_entry_t *changes, size_t n)
{
    (void)changes, (void)n;
    schedule_sync(ctx);
}

/* ---- fetching ------------------------------------------------------------------------------ */

static int load_pop(const store_entry_t *e, void *ctx)
{
    ocspfetch_t *f = ctx;
    uint64_t id;
    reg_node_t node;
    const char *why;
    if (reg_node_key_id(e->key, e->klen, &id) ||
        reg_node_parse(e->value, e->vlen, id, &node, &why) || node.removed ||
        node.role != ROLE_POP || f->npops == POPS_MAX)
        return 0;
    if (f->o.mesh && id != f->o.self_id && !meshnode_is_alive(f->o.mesh, id))
        return 0;
    f->pops = xrealloc(f->pops, (f->npops + 1) * sizeof(*f->pops));
    f->pops[f->npops++] = id;
    return 0;
}

static void alive_pops(ocspfetch_t *f)
{
    free(f->pops);
    f->pops = NULL;
    f->npops = 0;
    if (store_list(f->o.store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), load_pop, f))
        log_warn("tls: cannot read the registry: %s (OCSP fetchers may differ for a while)",
                 store_last_error(f->o.store));
}

static void fail(ocspfetch_t *f, struct ocsp_cert *c, const char *url, const char *why)
{
    f->st.failed++;
    uint64_t now = clock_wall_ms();
    if (!c) {
        log_warn("tls: OCSP for cert/%s from %s failed: %s", f->busy_id, url, why);
        return;
    }
    c->retry_ms = now + c->backoff_ms;
    char held[96] = "";
    if (c->have && c->last_status == OCSP_ST_GOOD && c->next_ms > now)
        snprintf(held, sizeof(held), " (the stored good response is stapled %llu s more)",
                 (unsigned long long)((c->next_ms - now) / 1000));
    log_warn("tls: OCSP for cert/%s from %s failed: %s; next try in %llu s%s", c->id, url, why,
             (unsigned long long)(c->backoff_ms / 1000), held);
    c->backoff_ms = c->backoff_ms * 2 > f->backoff_max_ms ? f->backoff_max_ms : c->backoff_ms * 2;
}

static void store_response(ocspfetch_t *f, struct ocsp_cert *c, const acmehttp_result_t *r,
                           const ocsp_info_t *info)
{
    uint64_t now = clock_wall_ms();
    ocsp_rec_t rec = {.der = (uint8_t *)r->body,
                      .der_len = r->body_len,
                      .status = info->status,
                      .this_update_ms = info->this_update_ms,
                      .next_update_ms = info->next_update_ms,
                      .fetched_ms = now};
    snprintf(rec.fetched_by, sizeof(rec.fetched_by), "%s", f->node_name);
    char key[CERT_ID_MAX + 8];
    ocsp_key(c->id, key, sizeof(key));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ocsp_pack(&pk, &rec);
    int rc;
    if (f->o.mesh) {
        rc = meshnode_put_record(f->o.mesh, key, &sb);
    } else {
        store_entry_t out = {0};
        rc = store_put(f->o.store, key, strlen(key), sb.data, sb.size, now, &out);
    }
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        fail(f, c, c->url, store_last_error(f->o.store));
        return;
    }
    f->st.fetched++;
    /* Known at once (the sync that follows the write checks it again), so the next tick does
     * not ask a second time. */
    c->have = true;
    c->this_ms = info->this_update_ms;
    c->next_ms = info->next_update_ms;
    c->fetched_ms = now;
    c->backoff_ms = f->backoff_min_ms;
    c->retry_ms = 0;
    log_info("tls: OCSP response for cert/%s from %s: %s, valid %llu s more (stored in %s)", c->id,
             c->url, ocsp_status_name(info->status),
             (unsigned long long)((info->next_update_ms - now) / 1000), key);
}

static void on_done(void *ctx, const acmehttp_result_t *r)
{
    ocspfetch_t *f = ctx;
    f->busy = false;
    struct ocsp_cert *c = find(f, f->busy_id);
    /* The certificate may have changed (renewed) while the request ran: a response about the
     * old leaf is of no use, and is never stored for the new one. */
    if (c && (X509_cmp(c->leaf, f->busy_leaf) || X509_cmp(c->issuer, f->busy_issuer)))
        c = NULL;
    char url[OCSP_URL_MAX + 1];
    snprintf(url, sizeof(url), "%s", c ? c->url : "its responder");
    ocsp_info_t info;
    const char *why = NULL;
    char msg[320];
    if (r->err[0]) {
        snprintf(msg, sizeof(msg), "%s", r->err);
        why = msg;
    } else if (r->status != 200) {
        snprintf(msg, sizeof(msg), "HTTP %ld", r->status);
        why = msg;
    } else if (!c) {
        why = "the certificate changed or went away while the request ran";
    } else if (ocsp_check((const uint8_t *)r->body, r->body_len, f->busy_leaf, f->busy_issuer,
                          clock_wall_ms(), &info, &why) == 0) {
        store_response(f, c, r, &info);
        why = NULL;
    }
    if (why)
        fail(f, c, url, why);
    X509_free(f->busy_leaf);
    X509_free(f->busy_issuer);
    f->busy_leaf = f->busy_issuer = NULL;
}

static void start_fetch(ocspfetch_t *f, struct ocsp_cert *c)
{
    acmehttp_job_t job = {0};
    uint8_t *der;
    size_t len;
    if (ocsp_request(c->leaf, c->issuer, &der, &len)) {
        fail(f, c, c->url, "cannot build the OCSP request (OpenSSL)");
        return;
    }
    job.raw = xmemdup(der, len);
    job.raw_len = len;
    OPENSSL_free(der);
    snprintf(job.raw_type, sizeof(job.raw_type), "application/ocsp-request");
    if (strlen(c->url) >= sizeof(job.url)) {
        free(job.raw);
        fail(f, c, c->url, "the responder URL is too long");
        return;
    }
    snprintf(job.url, sizeof(job.url), "%s", c->url);
    if (acmehttp_submit(f->http, &job))
        return; /* busy: the next tick */
    f->busy = true;
    snprintf(f->busy_id, sizeof(f->busy_id), "%s", c->id);
    X509_up_ref(c->leaf);
    X509_up_ref(c->issuer);
    f->busy_leaf = c->leaf;
    f->busy_issuer = c->issuer;
    f->busy_started_ms = clock_wall_ms();
    log_debug("tls: asking %s about cert/%s", c->url, c->id);
}

/* ---- records of certificates that are gone ------------------------------------------------- */

struct orphans {
    uint64_t now, grace;
    char (*ids)[CERT_ID_MAX + 1];
    size_t n;
};

static int collect_stale(const store_entry_t *e, void *ctx)
{
    struct orphans *o = ctx;
    char id[CERT_ID_MAX + 1];
    ocsp_rec_t r;
    const char *why;
    if (ocsp_key_id(e->key, e->klen, id, sizeof(id)) || o->n == POPS_MAX)
        return 0;
    bool stale = true; /* an unreadable record too */
    if (e->value && ocsp_parse(e->value, e->vlen, &r, &why) == 0) {
        stale = r.next_update_ms + o->grace < o->now;
        ocsp_rec_free(&r);
    }
    if (stale) {
        o->ids = xrealloc(o->ids, (o->n + 1) * sizeof(*o->ids));
        memcpy(o->ids[o->n++], id, sizeof(id));
    }
    return 0;
}

/* Deletes ocsp/<id> records long past their nextUpdate whose certificate is gone (a removed
 * certificate leaves its response behind). Only stale ones: a PoP may hold a fresh ocsp/
 * record before the cert/ record it belongs to has arrived. The first-ranked PoP of the id
 * deletes. */
static void clean_orphans(ocspfetch_t *f, uint64_t now)
{
    struct orphans o = {.now = now, .grace = f->orphan_grace_ms};
    if (store_list(f->o.store, OCSP_PREFIX, strlen(OCSP_PREFIX), collect_stale, &o)) {
        free(o.ids);
        return;
    }
    for (size_t i = 0; i < o.n; i++) {
        char ck[CERT_ID_MAX + 16], ok[CERT_ID_MAX + 16];
        store_entry_t e = {0};
        if (cert_key(o.ids[i], ck, sizeof(ck)) || ocsp_key(o.ids[i], ok, sizeof(ok)))
            continue;
        bool has_cert = store_get(f->o.store, ck, strlen(ck), &e) == 0 && e.value;
        store_entry_free(&e);
        if (has_cert || ocspfetch_rank(f->o.self_id, f->pops, f->npops, o.ids[i]) != 0)
            continue;
        store_entry_t out = {0};
        int rc = f->o.mesh ? meshnode_del_record(f->o.mesh, ok, strlen(ok), &out)
                           : store_del(f->o.store, ok, strlen(ok), now, &out);
        if (rc == 0)
            log_info("tls: deleted %s (its certificate is gone, its response long stale)", ok);
    }
    free(o.ids);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    ocspfetch_t *f = w->data;
    uint64_t now = clock_wall_ms();
    if (now >= f->clean_at_ms) {
        f->clean_at_ms = now + f->clean_every_ms;
        alive_pops(f);
        clean_orphans(f, now);
    }
    if (f->busy || f->n == 0)
        return;
    alive_pops(f);
    for (size_t i = 0; i < f->n; i++) {
        struct ocsp_cert *c = f->certs[i];
        uint64_t base = c->seen_ms;
        if (c->have) {
            base = ocsp_refresh_at(c->this_ms, c->next_ms);
            if (f->refresh_ms && c->fetched_ms + f->refresh_ms < base)
                base = c->fetched_ms + f->refresh_ms;
        }
        unsigned rank = ocspfetch_rank(f->o.self_id, f->pops, f->npops, c->id);
        uint64_t due = ocspfetch_due_ms(base, rank, f->takeover_ms);
        if (now >= due && now >= c->retry_ms) {
            start_fetch(f, c);
            return; /* one request at a time */
        }
    }
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static uint64_t refresh_from_env(void)
{
    const char *v = getenv("POPMESH_TEST_OCSP_REFRESH_MS");
    if (!v || !*v)
        return 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || x < REFRESH_MIN_MS || x > REFRESH_MAX_MS) {
        log_warn("tls: ignoring POPMESH_TEST_OCSP_REFRESH_MS=%s (want %llu to %llu)", v,
                 REFRESH_MIN_MS, REFRESH_MAX_MS);
        return 0;
    }
    log_warn("tls: TEST KNOB: POPMESH_TEST_OCSP_REFRESH_MS=%llu (for tests only)", x);
    return x;
}

ocspfetch_t *ocspfetch_new(const ocspfetch_opts_t *o, char *err, size_t errlen)
{
    if (!o->loop || !o->store || !o->tls || !o->self_id) {
        snprintf(err, errlen, "OCSP fetching needs a loop, a store, a TLS context and a node id");
        errno = EINVAL;
        return NULL;
    }
    ocspfetch_t *f = xcalloc(1, sizeof(*f));
    f->o = *o;
    snprintf(f->node_name, sizeof(f->node_name), "%s", o->node_name ? o->node_name : "");
    f->o.node_name = f->node_name;
    f->refresh_ms = o->refresh_ms ? o->refresh_ms : refresh_from_env();
    f->takeover_ms = OCSPFETCH_TAKEOVER_MS;
    f->backoff_min_ms = OCSPFETCH_BACKOFF_MIN_MS;
    f->backoff_max_ms = OCSPFETCH_BACKOFF_MAX_MS;
    f->clean_every_ms = CLEAN_EVERY_MS;
    f->orphan_grace_ms = ORPHAN_GRACE_MS;
    if (f->refresh_ms) { /* tests: everything on the knob's scale */
        f->clean_every_ms = f->orphan_grace_ms = f->refresh_ms;
        /* three refreshes: a busy test machine must not make the second PoP take a turn that
         * the first is only late for */
        f->takeover_ms = 3 * f->refresh_ms;
        f->backoff_min_ms = f->refresh_ms / 4 < 1000 ? 1000 : f->refresh_ms / 4;
        f->backoff_max_ms = f->refresh_ms;
    }
    f->http = acmehttp_new(o->loop, on_done, f);
    if (!f->http) {
        snprintf(err, errlen, "cannot start the OCSP HTTP worker: %s", strerror(errno));
        free(f);
        return NULL;
    }
    f->watch_certs = store_watch(o->store, CERT_PREFIX, strlen(CERT_PREFIX), on_changed, f);
    f->watch_ocsp = f->watch_certs > 0
                        ? store_watch(o->store, OCSP_PREFIX, strlen(OCSP_PREFIX), on_changed, f)
                        : -EINVAL;
    if (f->watch_certs <= 0 || f->watch_ocsp <= 0) {
        if (f->watch_certs > 0)
            store_unwatch(o->store, f->watch_certs);
        acmehttp_destroy(&f->http);
        free(f);
        snprintf(err, errlen, "cannot watch the certificates for OCSP (too many watchers)");
        errno = ENOSPC;
        return NULL;
    }
    ev_timer_init(&f->sync, on_sync, SYNC_DELAY_S, 0.);
    f->sync.data = f;
    ev_timer_init(&f->tick, on_tick, OCSPFETCH_TICK_S, OCSPFETCH_TICK_S);
    f->tick.data = f;
    ev_timer_start(o->loop, &f->tick);
    reload_certs(f);
    sync_all(f);
    return f;
}

void ocspfetch_destroy(ocspfetch_t **fp)
{
    ocspfetch_t *f = fp ? *fp : NULL;
    if (!f)
        return;
    acmehttp_destroy(&f->http); /* before anything its callback would touch */
    store_unwatch(f->o.store, f->watch_certs);
    store_unwatch(f->o.store, f->watch_ocsp);
    ev_timer_stop(f->o.loop, &f->tick);
    ev_timer_stop(f->o.loop, &f->sync);
    for (size_t i = 0; i < f->n; i++)
        cert_free(f->certs[i]);
    free(f->certs);
    X509_free(f->busy_leaf);
    X509_free(f->busy_issuer);
    free(f->pops);
    free(f);
    *fp = NULL;
}

void ocspfetch_stats(const ocspfetch_t *f, ocspfetch_stats_t *out)
{
    *out = f->st;
}
