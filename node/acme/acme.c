/* acme: the orchestration of certificate orders, on the loop. See acme.h.
 *
 * BACKGROUND
 *
 * An ACME order (RFC 8555 section 7.4) is a conversation: newOrder, then for each name an
 * authorization whose challenge we answer (HTTP-01 at any PoP's ingress, DNS-01 at any PoP's
 * name server, both from replicated records), then finalize with a CSR, then the download.
 * Each step is one HTTP request, run by acmehttp's worker thread; its answer comes back here
 * and decides the next step. Nothing here blocks.
 *
 * ONE PoP PER ORDER. The PoP that starts an order takes lease/acme/<cert id>: it may when the
 * lease is absent, released (expires_ms 0) or expired for ACME_LEASE_SKEW_MS (room for clocks
 * that disagree). It writes {holder: itself, version: previous + 1, expires_ms: now + lease},
 * waits ACME_SETTLE_MS for the write to meet any concurrent one (last writer wins in the
 * store), and goes on only if the lease it reads back is still its own. Before every external
 * step it reads the lease again: if another PoP holds it now, it stops and leaves the order to
 * that PoP; it extends the lease when half of it has passed. A PoP that dies mid-order stops
 * extending: after expiry plus the skew another PoP takes the lease and starts the order over.
 *
 * WHY DOING AN ORDER TWICE IS SAFE. If two PoPs ever both believe they hold a lease (a
 * partition, a clock far off), each runs its own order for the same names. The CA treats them
 * as two orders of one account: each gets its own tokens (so the challenge records do not
 * collide), both may succeed, and each writes cert/<id>; the store keeps the last write, a
 * valid certificate either way. The cost is one extra certificate at the CA, which is what
 * the lease exists to make rare. An order abandoned half way simply expires at the CA.
 *
 * RENEWAL AND FAILURE. A certificate is renewed from renew_after_ms (written when it was
 * obtained: two thirds of its lifetime after not_before, or a random point of the window the
 * CA suggests through renewalInfo, RFC 9773, asked once after the download). A failed order
 * is recorded in the lease (failures, retry_after_ms, error: so the backoff holds whichever
 * PoP tries next), in the certificate record (state "failed", error: `meshctl cert list`
 * shows it; a certificate not obtained yet is a record with an empty chain) and in one log
 * line. The next try waits 1 min, doubling up to 1 h.
 *
 * Test knobs (environment, for integration tests only): POPMESH_TEST_ACME_STEP_DELAY_MS (a
 * pause before every step: time to kill a PoP mid-order), POPMESH_TEST_ACME_LEASE_MS,
 * POPMESH_TEST_ACME_RENEW_AFTER_MS (renew this long after not_before), and
 * POPMESH_TEST_ACME_TICK_MS (how often hosts are checked). */
#include "node/acme/acme.h"

#include "common/b64url.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/acme/acmehttp.h"
#include "node/acme/acmeproto.h"
#include "node/acme/acmerec.h"
#include "node/records/resource.h"
#include "node/records/zone.h"
#include "node/tls/certstore.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sodium.h>

#define ACME_TICK_MS        5000   /* how often hosts are checked without a change */
#define ACME_LEASE_MS       120000 /* a lease's life; extended while the order goes on */
#define ACME_LEASE_SKEW_MS  10000  /* an expired lease is taken only this much later */
#define ACME_SETTLE_MS      2000   /* after taking a lease, before trusting it */
#define ACME_PUBLISH_MS     2000   /* after writing a challenge record, before the CA looks */
#define ACME_POLL_MS        1000
#define ACME_POLLS_MAX      60
#define ACME_BACKOFF_MIN_MS 60000
#define ACME_BACKOFF_MAX_MS 3600000
#define ACME_CHAL_LIFE_MS   3600000 /* challenge records outlive an order by far */

enum step {
    S_IDLE,
    S_CONFIRM,   /* the lease settled: is it ours? */
    S_DIRECTORY, /* GET the directory */
    S_ACCOUNT,   /* newAccount: the account URL (kid) */
    S_ORDER,     /* newOrder */
    S_AUTHZ,     /* fetch authorization authz_i, pick and publish its challenge */
    S_RESPOND,   /* tell the CA the challenge is ready */
    S_AUTHZ_POLL,
    S_FINALIZE,
    S_ORDER_POLL,
    S_DOWNLOAD,
    S_ARI, /* the CA's suggested renewal window (RFC 9773), when it offers renewalInfo */
};

static const char *const step_names[] = {
    [S_IDLE] = "idle",           [S_CONFIRM] = "lease",         [S_DIRECTORY] = "directory",
    [S_ACCOUNT] = "account",     [S_ORDER] = "new-order",       [S_AUTHZ] = "authorization",
    [S_RESPOND] = "challenge",   [S_AUTHZ_POLL] = "validation", [S_FINALIZE] = "finalize",
    [S_ORDER_POLL] = "issuance", [S_DOWNLOAD] = "download",     [S_ARI] = "renewal-info",
};

struct acme {
    acme_opts_t o;
    const certstore_seal_key_t *seal; /* borrowed (acme_opts_t) */
    acmehttp_t *http;
    ev_timer tick, step;
    int watches[3];
    /* acme/config as last read */
    bool have_cfg;
    uint64_t cfg_version;
    acme_config_t cfg;
    EVP_PKEY *account;
    bool have_dir;
    acme_directory_t dir;
    char kid[ACME_URL_MAX + 1]; /* the account URL, "" until newAccount answered */
    /* the order under way (st != S_IDLE) */
    enum step st;
    char cert_id[CERT_ID_MAX + 1];
    char names[1][ACME_NAME_MAX + 1];
    size_t nnames;
    uint64_t lease_version;
    uint64_t lease_expires_ms;
    char order_url[ACME_URL_MAX + 1];
    acme_order_t order;
    size_t authz_i;
    acme_challenge_t chal;
    char chal_key[STORE_KEY_MAX + 1]; /* the challenge record we wrote, "" if none */
    unsigned polls;
    EVP_PKEY *cert_key;
    bool have_pending; /* the certificate, while its renewal window is asked for (S_ARI) */
    cert_rec_t pending;
    char ari_url[ACME_URL_MAX + 1];
    uint64_t started_ms;
    /* knobs */
    uint64_t step_delay_ms, lease_ms, renew_after_ms, tick_ms;
    struct {
        uint64_t orders, issued, failed, lost;
    } stats;
};

static uint64_t knob(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    char *end;
    if (!v || !*v)
        return dflt;
    unsigned long long x = strtoull(v, &end, 10);
    return *end ? dflt : (uint64_t)x;
}

/* ---- records --------------------------------------------------------------------------- */

static int put_rec(acme_t *a, const char *key, const msgpack_sbuffer *sb)
{
    int rc = meshnode_put_record(a->o.mesh, key, sb);
    if (rc)
        log_warn("acme: cannot write %s: %s", key, store_last_error(a->o.store));
    return rc;
}

static void del_rec(acme_t *a, const char *key)
{
    meshnode_del_record(a->o.mesh, key, strlen(key), NULL);
}

/* Reads key and parses it with fn (a parse function of the given shape); -ENOENT if absent. */
static int read_lease(acme_t *a, const char *cert_id, acme_lease_t *l)
{
    char key[STORE_KEY_MAX + 1];
    if (acme_lease_key(cert_id, key, sizeof(key)))
        return -EINVAL;
    store_entry_t e;
    int rc = store_get(a->o.store, key, strlen(key), &e);
    if (rc)
        return rc;
    const char *why = "";
    rc = acme_lease_parse(e.value, e.vlen, l, &why);
    store_entry_free(&e);
    if (rc)
        log_warn("acme: unreadable record %s: %s (taken as free)", key, why);
    return rc ? -ENOENT : 0;
}

static int write_lease(acme_t *a, const char *cert_id, const acme_lease_t *l)
{
    char key[STORE_KEY_MAX + 1];
    if (acme_lease_key(cert_id, key, sizeof(key)))
        return -EINVAL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    acme_lease_pack(&pk, l);
    int rc = put_rec(a, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static int read_cert(acme_t *a, const char *id, cert_rec_t *c)
{
    char key[STORE_KEY_MAX + 1];
    if (cert_key(id, key, sizeof(key)))
        return -EINVAL;
    store_entry_t e;
    int rc = store_get(a->o.store, key, strlen(key), &e);
    if (rc)
        return rc;
    const char *why = "";
    rc = cert_parse(e.value, e.vlen, id, c, &why);
    store_entry_free(&e);
    if (rc)
        log_warn("acme: unreadable record %s: %s", key, why);
    return rc ? -EBADMSG : 0;
}

static int write_cert(acme_t *a, const cert_rec_t *c)
{
    char key[STORE_KEY_MAX + 1];
    if (cert_key(c->id, key, sizeof(key)))
        return -EINVAL;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cert_pack(&pk, c);
    int rc = put_rec(a, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* acme/config, when its version changed: the account key is opened again and the account
 * URL and directory forgotten (a new directory is another CA). */
static void load_config(acme_t *a)
{
    store_entry_t e;
    int rc = store_get(a->o.store, ACME_CONFIG_KEY, strlen(ACME_CONFIG_KEY), &e);
    if (rc) {
        if (a->have_cfg)
            log_info("acme: configuration removed; no new orders");
        acme_config_free(&a->cfg);
        a->have_cfg = false;
        a->cfg_version = 0;
        return;
    }
    if (a->have_cfg && e.version == a->cfg_version) {
        store_entry_free(&e);
        return;
    }
    acme_config_t c;
    const char *why = "";
    rc = acme_config_parse(e.value, e.vlen, &c, &why);
    uint64_t version = e.version;
    store_entry_free(&e);
    if (rc) {
        log_warn("acme: unreadable record " ACME_CONFIG_KEY ": %s", why);
        return;
    }
    uint8_t *pem = NULL;
    size_t pl = 0;
    EVP_PKEY *k = NULL;
    int orc = acme_config_open(a->seal, "account_key", c.account_key_sealed,
                               c.account_key_sealed_len, &pem, &pl, NULL);
    if (orc == 0) {
        k = acme_key_from_pem((const char *)pem, pl);
        sodium_memzero(pem, pl);
        free(pem);
    }
    if (!k) {
        log_warn("acme: the account key in " ACME_CONFIG_KEY " is unreadable: %s; run 'meshctl "
                 "acme set' again",
                 orc ? storeseal_strerror(orc) : "not a PEM key");
        acme_config_free(&c);
        return;
    }
    acme_config_free(&a->cfg);
    EVP_PKEY_free(a->account);
    a->cfg = c;
    a->account = k;
    a->have_cfg = true;
    a->cfg_version = version;
    a->have_dir = false;
    a->kid[0] = '\0';
    log_info("acme: using %s as %s", a->cfg.directory, a->cfg.email);
}

/* ---- the order ------------------------------------------------------------------------- */

static void scan(acme_t *a);

static void go(acme_t *a, enum step s, uint64_t delay_ms)
{
    a->st = s;
    ev_timer_stop(a->o.loop, &a->step);
    ev_timer_set(&a->step, (double)(delay_ms + a->step_delay_ms) / 1000.0, 0.0);
    ev_timer_start(a->o.loop, &a->step);
}

static void drop_challenge(acme_t *a)
{
    if (a->chal_key[0])
        del_rec(a, a->chal_key);
    a->chal_key[0] = '\0';
}

static void order_reset(acme_t *a)
{
    drop_challenge(a);
    acme_order_free(&a->order);
    EVP_PKEY_free(a->cert_key);
    a->cert_key = NULL;
    if (a->have_pending)
        cert_rec_free(&a->pending);
    a->have_pending = false;
    a->st = S_IDLE;
    a->order_url[0] = '\0';
    a->cert_id[0] = '\0';
    a->nnames = 0;
    ev_timer_stop(a->o.loop, &a->step);
}

static uint64_t backoff_ms(uint64_t failures)
{
    uint64_t d = ACME_BACKOFF_MIN_MS;
    for (uint64_t i = 1; i < failures && d < ACME_BACKOFF_MAX_MS; i++)
        d *= 2;
    return d < ACME_BACKOFF_MAX_MS ? d : ACME_BACKOFF_MAX_MS;
}

/* The order failed: the lease keeps the count and the next try time (and is released), the
 * certificate record the state and error, the log one line. */
static void fail(acme_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(acme_t *a, const char *fmt, ...)
{
    char why[CERT_ERROR_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    uint64_t now = clock_wall_ms();
    acme_lease_t l;
    if (read_lease(a, a->cert_id, &l) || l.holder_id != a->o.node_id ||
        l.version != a->lease_version) {
        log_warn("acme: certificate %s: %s (the lease is no longer ours: left to its holder)",
                 a->cert_id, why);
        order_reset(a);
        return;
    }
    l.failures++;
    l.retry_after_ms = now + backoff_ms(l.failures);
    l.expires_ms = 0;
    snprintf(l.error, sizeof(l.error), "%s", why);
    write_lease(a, a->cert_id, &l);
    cert_rec_t c;
    if (read_cert(a, a->cert_id, &c) != 0) {
        memset(&c, 0, sizeof(c));
        snprintf(c.id, sizeof(c.id), "%s", a->cert_id);
        c.names = xcalloc(a->nnames, sizeof(*c.names));
        for (size_t i = 0; i < a->nnames; i++)
            snprintf(c.names[i], sizeof(c.names[i]), "%s", a->names[i]);
        c.nnames = a->nnames;
        c.chain_pem = xcalloc(1, 1);
        snprintf(c.source, sizeof(c.source), "acme");
        c.created_ms = now;
    }
    snprintf(c.obtained_by, sizeof(c.obtained_by), "%s", a->o.node_name);
    snprintf(c.state, sizeof(c.state), "failed");
    snprintf(c.error, sizeof(c.error), "%s", why);
    write_cert(a, &c);
    cert_rec_free(&c);
    a->stats.failed++;
    log_warn("acme: certificate %s for %s failed at %s: %s; next try in %llu s (failure %llu)",
             a->cert_id, a->names[0], step_names[a->st], why,
             (unsigned long long)(backoff_ms(l.failures) / 1000), (unsigned long long)l.failures);
    order_reset(a);
}

/* Before every external step: the lease is still ours (else the order is left to its holder),
 * extended when half of it has passed. */
static bool lease_held(acme_t *a)
{
    acme_lease_t l;
    uint64_t now = clock_wall_ms();
    if (read_lease(a, a->cert_id, &l) || l.holder_id != a->o.node_id ||
        l.version != a->lease_version || l.expires_ms == 0) {
        a->stats.lost++;
        log_info("acme: certificate %s: the lease went to %s; leaving the order to it", a->cert_id,
                 l.holder[0] ? l.holder : "nobody");
        order_reset(a);
        return false;
    }
    if (l.expires_ms < now + a->lease_ms / 2) {
        l.expires_ms = now + a->lease_ms;
        write_lease(a, a->cert_id, &l);
    }
    return true;
}

static void submit(acme_t *a, bool post, const char *url, char *payload, bool use_jwk,
                   bool want_pem)
{
    acmehttp_job_t j = {.post = post, .payload = payload, .key = a->account, .want_pem = want_pem};
    snprintf(j.url, sizeof(j.url), "%s", url);
    if (!use_jwk)
        snprintf(j.kid, sizeof(j.kid), "%s", a->kid);
    snprintf(j.new_nonce, sizeof(j.new_nonce), "%s", a->dir.new_nonce);
    j.ca_pem = a->cfg.ca_pem ? xstrdup(a->cfg.ca_pem) : NULL;
    if (acmehttp_submit(a->http, &j))
        fail(a, "internal: a request is already under way");
}

static void after_lease(acme_t *a)
{
    if (!a->have_dir)
        go(a, S_DIRECTORY, 0);
    else if (!a->kid[0])
        go(a, S_ACCOUNT, 0);
    else
        go(a, S_ORDER, 0);
}

static bool in_zones(const char *name, const zone_rec_t *z, size_t nz)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < nz; i++) {
        size_t zl = strlen(z[i].name);
        if (nl == zl ? !strcmp(name, z[i].name)
                     : nl > zl && name[nl - zl - 1] == '.' && !strcmp(name + nl - zl, z[i].name))
            return true;
    }
    return false;
}

/* Publishes the answer to authorization a's challenge: HTTP-01 for a name, DNS-01 for a
 * wildcard (the only way to prove one). */
static void on_authz(acme_t *a, const acme_authz_t *az)
{
    if (!strcmp(az->status, "valid")) {
        a->authz_i++;
        go(a, a->authz_i < a->order.nauthz ? S_AUTHZ : S_FINALIZE, 0);
        return;
    }
    if (strcmp(az->status, "pending")) {
        fail(a, "the authorization of %s%s is %s", az->wildcard ? "*." : "", az->identifier,
             az->status);
        return;
    }
    const char *type = az->wildcard ? "dns-01" : "http-01";
    const acme_challenge_t *ch = acme_authz_challenge(az, type);
    if (!ch) {
        fail(a, "the CA offers no %s challenge for %s", type, az->identifier);
        return;
    }
    a->chal = *ch;
    char ka[ACME_KEYAUTH_MAX + 1];
    if (acme_key_authorization(ch->token, a->account, ka, sizeof(ka))) {
        fail(a, "cannot compute the key authorization");
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t exp = clock_wall_ms() + ACME_CHAL_LIFE_MS;
    int rc;
    if (az->wildcard) {
        acmedns_rec_t d = {.nvalues = 1, .expires_ms = exp};
        acme_dns01_value(ka, d.values[0]);
        acmedns_pack(&pk, &d);
        rc = acmedns_key(az->identifier, a->chal_key, sizeof(a->chal_key));
    } else {
        acmechal_rec_t c = {.expires_ms = exp};
        snprintf(c.key_authorization, sizeof(c.key_authorization), "%s", ka);
        acmechal_pack(&pk, &c);
        rc = acmechal_key(ch->token, a->chal_key, sizeof(a->chal_key));
    }
    if (rc == 0)
        rc = put_rec(a, a->chal_key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        a->chal_key[0] = '\0';
        fail(a, "cannot write the %s answer for %s", type, az->identifier);
        return;
    }
    log_info("acme: certificate %s: %s for %s%s published; asking the CA to check", a->cert_id,
             type, az->wildcard ? "*." : "", az->identifier);
    go(a, S_RESPOND, ACME_PUBLISH_MS);
}

/* The chain is in: the certificate record (names, validity and the sealed key from
 * cert_from_pem), the renewal point, the lease released with its failures cleared. */
static void store_cert(acme_t *a, cert_rec_t *cp);

static void on_chain(acme_t *a, const char *pem, size_t len)
{
    size_t kl = 0;
    char *kpem = acme_key_pem(a->cert_key, &kl);
    cert_rec_t c;
    char err[256] = "";
    uint64_t now = clock_wall_ms();
    int rc =
        kpem ? cert_from_pem(a->seal, pem, len, kpem, kl, now, &c, err, sizeof(err)) : -ENOMEM;
    if (kpem) {
        OPENSSL_cleanse(kpem, kl);
        free(kpem);
    }
    if (rc) {
        fail(a, "the CA's certificate was refused: %s", err[0] ? err : "cannot encode the key");
        return;
    }
    snprintf(c.source, sizeof(c.source), "acme");
    snprintf(c.obtained_by, sizeof(c.obtained_by), "%s", a->o.node_name);
    snprintf(c.state, sizeof(c.state), "valid");
    c.error[0] = '\0';
    c.created_ms = now;
    uint64_t life = c.not_after_ms > c.not_before_ms ? c.not_after_ms - c.not_before_ms : 0;
    c.renew_after_ms = c.not_before_ms + (a->renew_after_ms ? a->renew_after_ms : life / 3 * 2);
    if (strcmp(c.id, a->cert_id)) {
        cert_rec_free(&c);
        fail(a, "the CA's certificate is for other names than %s", a->names[0]);
        return;
    }
    /* The CA's renewal window, when it offers one (and no test knob fixes the point). */
    char cid[256];
    if (!a->renew_after_ms && a->dir.renewal_info[0] &&
        acme_ari_cert_id(c.chain_pem, strlen(c.chain_pem), cid, sizeof(cid)) == 0 &&
        (size_t)snprintf(a->ari_url, sizeof(a->ari_url), "%s%s%s", a->dir.renewal_info,
                         a->dir.renewal_info[strlen(a->dir.renewal_info) - 1] == '/' ? "" : "/",
                         cid) < sizeof(a->ari_url)) {
        a->pending = c;
        a->have_pending = true;
        go(a, S_ARI, 0);
        return;
    }
    store_cert(a, &c);
}

/* The renewal window: a random point in the CA's suggested window, so that the mesh's
 * certificates do not all come due at once; kept only when it lies within the certificate's
 * life. Any failure here keeps two thirds of the lifetime: the certificate is good anyway. */
static void on_ari(acme_t *a, const acmehttp_result_t *r)
{
    cert_rec_t *c = &a->pending;
    uint64_t start, end;
    char err[256] = "";
    if (r->err[0] || r->status != 200) {
        log_info("acme: certificate %s: no renewal window from the CA (%s); renewing at two "
                 "thirds of its life",
                 a->cert_id, r->err[0] ? r->err : "HTTP error");
    } else if (acme_ari_parse(r->body, r->body_len, &start, &end, err, sizeof(err))) {
        log_info("acme: certificate %s: %s; renewing at two thirds of its life", a->cert_id, err);
    } else if (start < c->not_before_ms || end > c->not_after_ms) {
        log_info("acme: certificate %s: the CA's renewal window lies outside the certificate's "
                 "life; renewing at two thirds of it",
                 a->cert_id);
    } else {
        uint64_t span = end - start, pick = 0;
        randombytes_buf(&pick, sizeof(pick));
        c->renew_after_ms = start + (span ? pick % (span + 1) : 0);
    }
    cert_rec_t done = *c;
    a->have_pending = false; /* store_cert owns it now */
    store_cert(a, &done);
}

/* Writes the certificate (c: freed here) and releases the lease with its failures cleared. */
static void store_cert(acme_t *a, cert_rec_t *cp)
{
    cert_rec_t c = *cp;
    uint64_t now = clock_wall_ms();
    int rc = write_cert(a, &c);
    acme_lease_t l;
    if (rc == 0 && read_lease(a, a->cert_id, &l) == 0 && l.holder_id == a->o.node_id) {
        l.expires_ms = 0;
        l.failures = 0;
        l.retry_after_ms = 0;
        l.error[0] = '\0';
        write_lease(a, a->cert_id, &l);
    }
    a->stats.issued++;
    log_info("acme: certificate %s for %s obtained (valid until %llu, renewal from %llu) in %.1f s",
             a->cert_id, a->names[0], (unsigned long long)(c.not_after_ms / 1000),
             (unsigned long long)(c.renew_after_ms / 1000), (double)(now - a->started_ms) / 1000.0);
    cert_rec_free(&c);
    order_reset(a);
}

static void on_step(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    acme_t *a = t->data;
    if (a->st == S_IDLE)
        return;
    if (!a->have_cfg) {
        order_reset(a);
        return;
    }
    if (a->st == S_CONFIRM) {
        if (lease_held(a))
            after_lease(a);
        return;
    }
    if (!lease_held(a))
        return;
    switch (a->st) {
    case S_DIRECTORY:
        submit(a, false, a->cfg.directory, NULL, false, false);
        break;
    case S_ACCOUNT: {
        char *eab = NULL;
        if (a->cfg.eab_kid[0]) {
            uint8_t *mac = NULL;
            size_t ml = 0;
            if (acme_config_open(a->seal, "eab_hmac", a->cfg.eab_hmac_sealed,
                                 a->cfg.eab_hmac_sealed_len, &mac, &ml, NULL)) {
                fail(a, "the EAB key in " ACME_CONFIG_KEY " does not open");
                return;
            }
            eab = acme_eab_jws(a->account, a->cfg.eab_kid, mac, ml, a->dir.new_account);
            sodium_memzero(mac, ml);
            free(mac);
        } else if (a->dir.eab_required) {
            fail(a, "the CA requires external account binding: run 'meshctl acme set' with "
                    "--eab KID:HMAC");
            return;
        }
        char *p = acme_new_account_payload(a->cfg.email, eab);
        free(eab);
        submit(a, true, a->dir.new_account, p, true, false);
        break;
    }
    case S_ORDER:
        submit(a, true, a->dir.new_order, acme_new_order_payload(a->names, a->nnames), false,
               false);
        break;
    case S_AUTHZ:
    case S_AUTHZ_POLL:
        submit(a, true, a->order.authz[a->authz_i], NULL, false, false);
        break;
    case S_RESPOND:
        submit(a, true, a->chal.url, xstrdup("{}"), false, false);
        break;
    case S_FINALIZE: {
        EVP_PKEY_free(a->cert_key);
        a->cert_key = acme_key_new(); /* a fresh key for every certificate */
        char *p = a->cert_key ? acme_finalize_payload(a->cert_key, a->names, a->nnames) : NULL;
        if (!p) {
            fail(a, "cannot make the certificate key or CSR (OpenSSL)");
            return;
        }
        submit(a, true, a->order.finalize, p, false, false);
        break;
    }
    case S_ORDER_POLL:
        submit(a, true, a->order_url, NULL, false, false);
        break;
    case S_DOWNLOAD:
        submit(a, true, a->order.certificate, NULL, false, true);
        break;
    case S_ARI:
        submit(a, false, a->ari_url, NULL, false, false);
        break;
    default:
        break;
    }
}

/* An order response (newOrder, finalize, a poll): what comes next. */
static void on_order(acme_t *a, const acmehttp_result_t *r)
{
    char err[256];
    acme_order_free(&a->order);
    if (acme_order_parse(r->body, r->body_len, &a->order, err, sizeof(err))) {
        fail(a, "%s", err);
        return;
    }
    const char *s = a->order.status;
    if (!strcmp(s, "invalid")) {
        fail(a, "the order is invalid%s%s", a->order.error[0] ? ": " : "", a->order.error);
    } else if (!strcmp(s, "valid")) {
        if (!a->order.certificate[0])
            fail(a, "the order is valid but names no certificate");
        else
            go(a, S_DOWNLOAD, 0);
    } else if (!strcmp(s, "ready") && a->st != S_FINALIZE) {
        go(a, S_FINALIZE, 0);
    } else if (!strcmp(s, "pending") && a->st == S_ORDER) {
        a->authz_i = 0;
        go(a, S_AUTHZ, 0);
    } else if (++a->polls > ACME_POLLS_MAX) {
        fail(a, "the order is still %s after %d polls", s, ACME_POLLS_MAX);
    } else {
        go(a, S_ORDER_POLL, ACME_POLL_MS);
    }
}

static void on_http(void *ctx, const acmehttp_result_t *r)
{
    acme_t *a = ctx;
    if (a->st == S_IDLE)
        return; /* the order was dropped meanwhile */
    if (a->st == S_ARI) {
        on_ari(a, r);
        return;
    }
    if (r->err[0]) {
        fail(a, "%s", r->err);
        return;
    }
    bool ok = r->status >= 200 && r->status < 300;
    if (!ok) {
        char prob[CERT_ERROR_MAX - 64];
        acme_problem_str(r->body, r->body_len, prob, sizeof(prob));
        if (a->st == S_ACCOUNT || r->status == 401 || r->status == 403)
            a->kid[0] = '\0'; /* the account may be gone: register again next time */
        fail(a, "HTTP %ld: %s", r->status, prob);
        return;
    }
    char err[256];
    switch (a->st) {
    case S_DIRECTORY:
        if (acme_directory_parse(r->body, r->body_len, &a->dir, err, sizeof(err))) {
            fail(a, "%s", err);
            return;
        }
        a->have_dir = true;
        go(a, a->kid[0] ? S_ORDER : S_ACCOUNT, 0);
        break;
    case S_ACCOUNT:
        if (!r->location[0] || strncmp(r->location, "https://", 8)) {
            fail(a, "newAccount gave no account URL");
            return;
        }
        snprintf(a->kid, sizeof(a->kid), "%s", r->location);
        log_info("acme: account %s", a->kid);
        go(a, S_ORDER, 0);
        break;
    case S_ORDER:
        if (!r->location[0] || strncmp(r->location, "https://", 8)) {
            fail(a, "newOrder gave no order URL");
            return;
        }
        snprintf(a->order_url, sizeof(a->order_url), "%s", r->location);
        a->polls = 0;
        on_order(a, r);
        break;
    case S_AUTHZ: {
        acme_authz_t az;
        if (acme_authz_parse(r->body, r->body_len, &az, err, sizeof(err))) {
            fail(a, "%s", err);
            return;
        }
        on_authz(a, &az);
        break;
    }
    case S_RESPOND:
        a->polls = 0;
        go(a, S_AUTHZ_POLL, ACME_POLL_MS);
        break;
    case S_AUTHZ_POLL: {
        acme_authz_t az;
        if (acme_authz_parse(r->body, r->body_len, &az, err, sizeof(err))) {
            fail(a, "%s", err);
            return;
        }
        if (!strcmp(az.status, "valid")) {
            drop_challenge(a);
            a->authz_i++;
            go(a, a->authz_i < a->order.nauthz ? S_AUTHZ : S_FINALIZE, 0);
        } else if (strcmp(az.status, "pending") && strcmp(az.status, "processing")) {
            const acme_challenge_t *ch = acme_authz_challenge(&az, a->chal.type);
            fail(a, "%s of %s%s: %s", a->chal.type, az.wildcard ? "*." : "", az.identifier,
                 ch && ch->error[0] ? ch->error : az.status);
        } else if (++a->polls > ACME_POLLS_MAX) {
            fail(a, "%s of %s still pending after %d polls", a->chal.type, az.identifier,
                 ACME_POLLS_MAX);
        } else {
            go(a, S_AUTHZ_POLL, ACME_POLL_MS);
        }
        break;
    }
    case S_FINALIZE:
    case S_ORDER_POLL:
        on_order(a, r);
        break;
    case S_DOWNLOAD:
        on_chain(a, r->body, r->body_len);
        break;
    default:
        break;
    }
}

/* ---- which certificates are wanted ------------------------------------------------------- */

/* Whether the certificate for name needs an order now: none yet, a failed one, or past its
 * renewal point. An imported certificate is the operator's: never replaced. */
static bool wanted(acme_t *a, const char *id, uint64_t now)
{
    cert_rec_t c;
    int rc = read_cert(a, id, &c);
    if (rc == -ENOENT)
        return true;
    if (rc)
        return false; /* unreadable: logged; not ours to overwrite blindly */
    bool want;
    if (strcmp(c.source, "acme"))
        want = false;
    else if (!c.chain_pem[0] || strcmp(c.state, "valid"))
        want = true;
    else {
        uint64_t life = c.not_after_ms > c.not_before_ms ? c.not_after_ms - c.not_before_ms : 0;
        uint64_t at = c.renew_after_ms ? c.renew_after_ms : c.not_before_ms + life / 3 * 2;
        want = now >= at;
    }
    cert_rec_free(&c);
    return want;
}

/* Takes the lease of id if it is free and no backoff holds: 1 taken, 0 not. */
static int take_lease(acme_t *a, const char *id, uint64_t now)
{
    acme_lease_t l;
    bool have = read_lease(a, id, &l) == 0;
    if (have) {
        /* A backoff counts against the configuration that failed: an 'acme set' since the
         * failure (a new CA, an EAB key, a CA bundle) is tried at once, from a fresh count. */
        uint64_t b = backoff_ms(l.failures);
        uint64_t failed_at = l.retry_after_ms > b ? l.retry_after_ms - b : 0;
        if (l.retry_after_ms > now && a->have_cfg && a->cfg.created_ms > failed_at) {
            log_info("acme: certificate %s: the ACME settings changed since it failed; trying "
                     "again now",
                     id);
            l.retry_after_ms = 0;
            l.failures = 0;
        }
        if (l.retry_after_ms > now)
            return 0;
        if (l.expires_ms && l.expires_ms + ACME_LEASE_SKEW_MS > now && l.holder_id != a->o.node_id)
            return 0;
        if (l.expires_ms && l.holder_id != a->o.node_id)
            log_info("acme: certificate %s: the lease of %s expired; taking the order over", id,
                     l.holder);
    } else {
        memset(&l, 0, sizeof(l));
    }
    snprintf(l.holder, sizeof(l.holder), "%s", a->o.node_name);
    l.holder_id = a->o.node_id;
    l.version++;
    l.expires_ms = now + a->lease_ms;
    if (write_lease(a, id, &l))
        return 0;
    a->lease_version = l.version;
    return 1;
}

/* Challenge records outlive their order only when the PoP that wrote them died mid-order (it
 * deletes its own otherwise): any PoP deletes them an hour after they expired, and unreadable
 * ones (no PoP answers from those). */
struct stale {
    char (*keys)[STORE_KEY_MAX + 1];
    size_t n;
    uint64_t before_ms;
};

static int find_stale(const store_entry_t *e, void *ctx)
{
    struct stale *st = ctx;
    const char *why;
    size_t dl = strlen(ACMEDNS_PREFIX), cl = strlen(ACMECHAL_PREFIX);
    uint64_t exp = 0;
    if (e->klen > dl && !memcmp(e->key, ACMEDNS_PREFIX, dl)) {
        acmedns_rec_t d;
        exp = acmedns_parse(e->value, e->vlen, &d, &why) ? 0 : d.expires_ms;
    } else if (e->klen > cl && e->klen - cl <= ACME_TOKEN_MAX) {
        acmechal_rec_t c;
        char tok[ACME_TOKEN_MAX + 1];
        memcpy(tok, e->key + cl, e->klen - cl);
        tok[e->klen - cl] = '\0';
        exp = acmechal_parse(e->value, e->vlen, tok, &c, &why) ? 0 : c.expires_ms;
    }
    if (exp < st->before_ms && st->n < 64 && e->klen <= STORE_KEY_MAX) {
        st->keys = xrealloc(st->keys, (st->n + 1) * sizeof(*st->keys));
        memcpy(st->keys[st->n], e->key, e->klen);
        st->keys[st->n][e->klen] = '\0';
        st->n++;
    }
    return 0;
}

static void sweep_challenges(acme_t *a, uint64_t now)
{
    struct stale st = {.before_ms = now > ACME_CHAL_LIFE_MS ? now - ACME_CHAL_LIFE_MS : 0};
    store_list(a->o.store, ACMECHAL_PREFIX, strlen(ACMECHAL_PREFIX), find_stale, &st);
    store_list(a->o.store, ACMEDNS_PREFIX, strlen(ACMEDNS_PREFIX), find_stale, &st);
    for (size_t i = 0; i < st.n; i++)
        del_rec(a, st.keys[i]);
    if (st.n)
        log_info("acme: deleted %zu challenge record(s) left by orders that never finished", st.n);
    free(st.keys);
}

static void scan(acme_t *a)
{
    if (a->st != S_IDLE || acmehttp_busy(a->http))
        return;
    sweep_challenges(a, clock_wall_ms());
    load_config(a);
    if (!a->have_cfg)
        return;
    resource_t *res = NULL;
    zone_rec_t *zones = NULL;
    size_t nres = 0, nz = 0;
    if (resource_list(a->o.store, &res, &nres) || zone_list(a->o.store, &zones, &nz)) {
        free(res);
        return;
    }
    uint64_t now = clock_wall_ms();
    for (size_t i = 0; i < nres && a->st == S_IDLE; i++) {
        const char *host = res[i].host;
        if (!host[0])
            continue;
        bool wild = !strncmp(host, "*.", 2);
        if (nz ? !in_zones(wild ? host + 2 : host, zones, nz) : wild)
            continue; /* outside the mesh's zones (a wildcard needs one: DNS-01) */
        char id[CERT_ID_MAX + 1];
        if (cert_id_for(host, id, sizeof(id)) || !wanted(a, id, now))
            continue;
        if (take_lease(a, id, now) != 1)
            continue;
        snprintf(a->cert_id, sizeof(a->cert_id), "%s", id);
        snprintf(a->names[0], sizeof(a->names[0]), "%s", host);
        a->nnames = 1;
        a->started_ms = now;
        a->stats.orders++;
        log_info("acme: certificate %s for %s: lease taken (version %llu); ordering", id, host,
                 (unsigned long long)a->lease_version);
        go(a, S_CONFIRM, ACME_SETTLE_MS);
    }
    free(res);
    free(zones);
}

static void on_tick(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    scan(t->data);
}

/* A change of resources, zones or certificates: look soon (not at once: a burst of changes
 * from a merge is one look). */
static void on_change(void *ctx, const store_entry_t *changes, size_t n)
{
    (void)changes, (void)n;
    acme_t *a = ctx;
    if (a->st == S_IDLE && ev_timer_remaining(a->o.loop, &a->tick) > 0.5) {
        ev_timer_stop(a->o.loop, &a->tick);
        ev_timer_set(&a->tick, 0.5, (double)a->tick_ms / 1000.0);
        ev_timer_start(a->o.loop, &a->tick);
    }
}

/* ---- commands ----------------------------------------------------------------------------- */

static int cmd_acme_set(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    acme_t *a = ctx;
    acme_config_t c;
    memset(&c, 0, sizeof(c));
    const char *ca = NULL, *hmac = NULL;
    uint32_t cal = 0, hl = 0;
    if (ctl_arg_copy(req, "directory", c.directory, sizeof(c.directory)) != 1 ||
        strncmp(c.directory, "https://", 8) || strlen(c.directory) < 9)
        return control_error(pk, CTL_BAD_REQUEST,
                             "directory must be an https:// URL of at most "
                             "%d bytes",
                             ACME_URL_MAX);
    if (ctl_arg_copy(req, "email", c.email, sizeof(c.email)) != 1 || !strchr(c.email, '@') ||
        strpbrk(c.email, " \t\r\n,<>\"'"))
        return control_error(pk, CTL_BAD_REQUEST, "email must be one address (user@domain)");
    if (ctl_arg_str(req, "ca_pem", &ca, &cal) < 0 || cal > ACME_CA_PEM_MAX ||
        (ca && (cal == 0 || memchr(ca, '\0', cal) ||
                !memmem(ca, cal, "-----BEGIN CERTIFICATE-----", 27))))
        return control_error(pk, CTL_BAD_REQUEST,
                             "ca_pem must be PEM certificates of at most %d bytes",
                             ACME_CA_PEM_MAX);
    if (ctl_arg_copy(req, "eab_kid", c.eab_kid, sizeof(c.eab_kid)) < 0 ||
        ctl_arg_str(req, "eab_hmac", &hmac, &hl) < 0 || !c.eab_kid[0] != !hmac)
        return control_error(pk, CTL_BAD_REQUEST, "eab_kid and eab_hmac come together");
    uint8_t mac[256];
    size_t ml = 0;
    if (hmac && (b64url_decode(hmac, hl, mac, sizeof(mac), &ml) || ml < 16))
        return control_error(pk, CTL_BAD_REQUEST,
                             "the EAB HMAC key must be base64url (no padding), 16..256 bytes");
    if (hmac && acme_config_seal(a->seal, "eab_hmac", mac, ml, c.eab_hmac_sealed,
                                 sizeof(c.eab_hmac_sealed), &c.eab_hmac_sealed_len)) {
        sodium_memzero(mac, sizeof(mac));
        return control_error(pk, CTL_FAILED, "cannot seal the EAB key");
    }
    sodium_memzero(mac, sizeof(mac));
    /* The account key: kept while the directory stays the same (it is the account), made
     * afresh for a new CA. */
    load_config(a);
    bool keep = a->have_cfg && !strcmp(a->cfg.directory, c.directory);
    if (keep) {
        memcpy(c.account_key_sealed, a->cfg.account_key_sealed, a->cfg.account_key_sealed_len);
        c.account_key_sealed_len = a->cfg.account_key_sealed_len;
        /* A key sealed before the store key is sealed afresh with this write. */
        uint8_t *old = NULL;
        size_t ol = 0;
        bool legacy = false;
        if (acme_config_open(a->seal, "account_key", c.account_key_sealed,
                             c.account_key_sealed_len, &old, &ol, &legacy) == 0) {
            if (legacy && acme_config_seal(a->seal, "account_key", old, ol, c.account_key_sealed,
                                           sizeof(c.account_key_sealed),
                                           &c.account_key_sealed_len))
                log_warn("acme: cannot seal the account key afresh; it stays as it was");
            sodium_memzero(old, ol);
            free(old);
        }
    } else {
        EVP_PKEY *k = acme_key_new();
        size_t kl = 0;
        char *pem = k ? acme_key_pem(k, &kl) : NULL;
        EVP_PKEY_free(k);
        int rc = pem ? acme_config_seal(a->seal, "account_key", (const uint8_t *)pem, kl,
                                        c.account_key_sealed, sizeof(c.account_key_sealed),
                                        &c.account_key_sealed_len)
                     : -ENOMEM;
        if (pem) {
            OPENSSL_cleanse(pem, kl);
            free(pem);
        }
        if (rc)
            return control_error(pk, CTL_FAILED, "cannot make the account key");
    }
    if (ca) {
        c.ca_pem = xmalloc(cal + 1);
        memcpy(c.ca_pem, ca, cal);
        c.ca_pem[cal] = '\0';
    }
    c.created_ms = clock_wall_ms();
    snprintf(c.set_by, sizeof(c.set_by), "%s", a->o.node_name);
    msgpack_sbuffer sb;
    msgpack_packer p2;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&p2, &sb, msgpack_sbuffer_write);
    acme_config_pack(&p2, &c);
    int rc = put_rec(a, ACME_CONFIG_KEY, &sb);
    msgpack_sbuffer_destroy(&sb);
    acme_config_free(&c);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot store " ACME_CONFIG_KEY ": %s",
                             store_last_error(a->o.store));
    load_config(a);
    on_change(a, NULL, 0);
    msgpack_pack_map(pk, 3);
    mpw_kv_str(pk, "directory", a->cfg.directory);
    mpw_kv_str(pk, "email", a->cfg.email);
    mpw_kv_bool(pk, "new_account_key", !keep);
    return CTL_OK;
}

struct lease_list {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n;
};

static int list_lease(const store_entry_t *e, void *ctx)
{
    struct lease_list *ll = ctx;
    acme_lease_t l;
    const char *why;
    if (ll->n >= 1000 || acme_lease_parse(e->value, e->vlen, &l, &why))
        return 0;
    size_t pl = strlen(ACME_LEASE_PREFIX);
    msgpack_pack_map(&ll->pk, 7);
    mpw_str(&ll->pk, "cert");
    mpw_strn(&ll->pk, e->key + pl, e->klen - pl);
    mpw_kv_str(&ll->pk, "holder", l.holder);
    mpw_kv_u64(&ll->pk, "expires_ms", l.expires_ms);
    mpw_kv_u64(&ll->pk, "version", l.version);
    mpw_kv_u64(&ll->pk, "failures", l.failures);
    mpw_kv_u64(&ll->pk, "retry_after_ms", l.retry_after_ms);
    mpw_kv_str(&ll->pk, "error", l.error);
    ll->n++;
    return 0;
}

static int cmd_acme_show(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    acme_t *a = ctx;
    load_config(a);
    if (!a->have_cfg)
        return control_error(pk, CTL_NOT_FOUND,
                             "ACME is not configured; run 'meshctl acme set --directory URL "
                             "--email ADDR'");
    char th[ACME_THUMB_LEN + 1] = "";
    acme_thumbprint(a->account, th);
    struct lease_list ll = {.n = 0};
    msgpack_sbuffer_init(&ll.sb);
    msgpack_packer_init(&ll.pk, &ll.sb, msgpack_sbuffer_write);
    store_list(a->o.store, ACME_LEASE_PREFIX, strlen(ACME_LEASE_PREFIX), list_lease, &ll);
    msgpack_pack_map(pk, 12);
    mpw_kv_str(pk, "directory", a->cfg.directory);
    mpw_kv_str(pk, "email", a->cfg.email);
    mpw_kv_bool(pk, "ca_bundle", a->cfg.ca_pem != NULL);
    mpw_kv_str(pk, "eab_kid", a->cfg.eab_kid);
    mpw_kv_u64(pk, "created_ms", a->cfg.created_ms);
    mpw_kv_str(pk, "set_by", a->cfg.set_by);
    mpw_kv_str(pk, "account_thumbprint", th);
    mpw_kv_str(pk, "account_url", a->kid); /* as this PoP knows it; "" before its first order */
    mpw_kv_str(pk, "order_cert", a->cert_id);
    mpw_kv_str(pk, "order_step", step_names[a->st]);
    mpw_str(pk, "leases");
    msgpack_pack_array(pk, ll.n);
    mpw_raw(pk, ll.sb.data, ll.sb.size);
    mpw_str(pk, "stats");
    msgpack_pack_map(pk, 4);
    mpw_kv_u64(pk, "orders", a->stats.orders);
    mpw_kv_u64(pk, "issued", a->stats.issued);
    mpw_kv_u64(pk, "failed", a->stats.failed);
    mpw_kv_u64(pk, "leases_lost", a->stats.lost);
    msgpack_sbuffer_destroy(&ll.sb);
    return CTL_OK;
}

static const control_command_t acme_commands[] = {
    {"acme.set", cmd_acme_set,
     "directory: str, email: str, [ca_pem: str], [eab_kid: str, eab_hmac: str] -> "
     "{directory, email, new_account_key}"},
    {"acme.show", cmd_acme_show,
     "-> {directory, email, ca_bundle, eab_kid, account_thumbprint, leases: [...], ...}"},
    {NULL, NULL, NULL},
};

int acme_register_commands(acme_t *a, control_t *ctl)
{
    return control_add_commands(ctl, acme_commands, a);
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

acme_t *acme_new(const acme_opts_t *o, char *err, size_t errlen)
{
    acme_t *a = xcalloc(1, sizeof(*a));
    a->o = *o;
    a->seal = o->seal;
    a->step_delay_ms = knob("POPMESH_TEST_ACME_STEP_DELAY_MS", 0);
    a->lease_ms = knob("POPMESH_TEST_ACME_LEASE_MS", ACME_LEASE_MS);
    a->renew_after_ms = knob("POPMESH_TEST_ACME_RENEW_AFTER_MS", 0);
    a->tick_ms = knob("POPMESH_TEST_ACME_TICK_MS", ACME_TICK_MS);
    if (a->lease_ms < 1000)
        a->lease_ms = 1000;
    if (a->tick_ms < 100)
        a->tick_ms = 100;
    a->http = acmehttp_new(o->loop, on_http, a);
    if (!a->http) {
        snprintf(err, errlen, "cannot start the ACME worker thread: %s", strerror(errno));
        free(a);
        return NULL;
    }
    const char *prefixes[] = {RESOURCE_PREFIX, ZONE_PREFIX, CERT_PREFIX};
    for (size_t i = 0; i < 3; i++) {
        a->watches[i] = store_watch(o->store, prefixes[i], strlen(prefixes[i]), on_change, a);
        if (a->watches[i] < 0) {
            snprintf(err, errlen, "cannot watch %s records: %s", prefixes[i],
                     strerror(-a->watches[i]));
            acme_destroy(&a);
            return NULL;
        }
    }
    ev_init(&a->step, on_step);
    a->step.data = a;
    ev_timer_init(&a->tick, on_tick, 1.0, (double)a->tick_ms / 1000.0);
    a->tick.data = a;
    ev_timer_start(o->loop, &a->tick);
    return a;
}

void acme_destroy(acme_t **ap)
{
    acme_t *a = ap ? *ap : NULL;
    if (!a)
        return;
    for (size_t i = 0; i < 3; i++)
        if (a->watches[i] > 0)
            store_unwatch(a->o.store, a->watches[i]);
    ev_timer_stop(a->o.loop, &a->tick);
    ev_timer_stop(a->o.loop, &a->step);
    acmehttp_destroy(&a->http);
    acme_order_free(&a->order);
    EVP_PKEY_free(a->cert_key);
    EVP_PKEY_free(a->account);
    acme_config_free(&a->cfg);
    free(a);
    *ap = NULL;
}
