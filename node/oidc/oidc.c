/* oidc: see oidc.h.
 *
 * THREADS. The loop thread reads the records (idp/, user/), opens the client secret and the
 * state cookie, and writes user records; the one worker thread does every HTTP request and
 * owns the discovery and JWKS caches, so they need no lock. A job carries copies of all it
 * needs both ways; the queue and the list of finished jobs are the only shared state, under
 * one mutex, and an ev_async wakes the loop for finished jobs.
 *
 * WHY A COOKIE, NOT A RECORD, CARRIES THE FLOW. The browser may leave from one PoP and come
 * back to another (DNS sends it to the closest, and that changes). A replicated record per
 * sign-in would race the browser across the mesh; a cookie sealed under a key every PoP
 * derives from the store key travels with the browser and is there at whichever PoP it lands.
 * Its state is compared with the query's (login CSRF: the provider's answer must be to a
 * sign-in this browser started), its nonce with the ID token's (the token was made for this
 * sign-in), and its verifier goes to the token endpoint (PKCE: a code stolen on its way back
 * is useless without it). It is cleared by the callback's answer; a code is single-use at the
 * provider, so a replayed callback fails there. */
#include "node/oidc/oidc.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/logesc.h"
#include "common/mp.h"
#include "common/xmalloc.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum job_kind { JOB_START = 1, JOB_FINISH };

struct oidc_job {
    struct oidc_job *next;
    oidc_t *x;
    enum job_kind kind;
    bool cancelled; /* loop thread only: the connection is gone */
    oidc_done_fn done;
    void *ctx;
    /* in: copied on the loop */
    idp_rec_t idp;                    /* ca_pem owned by the job */
    char secret[IDP_SECRET_MAX + 1];  /* wiped with the job */
    oidc_state_t st;                  /* start: fresh; finish: from the cookie */
    oidc_callback_t cb;               /* finish */
    uint8_t state_key[32];
    /* out: the worker's */
    oidc_result_t res;
    oidc_claims_t claims; /* finish, when res.status == 302 */
};

/* A provider as the worker knows it (worker thread only). */
struct pcache {
    char name[NODECFG_NAME_MAX + 1];
    char issuer[OIDC_URL_MAX + 1];
    oidc_discovery_t d;
    uint64_t disc_ms; /* monotonic ms of the discovery fetch; 0 = none */
    oidc_jwks_t *jwks;
    uint64_t jwks_ms; /* monotonic ms of the JWKS fetch; 0 = none */
};

struct oidc {
    oidc_opts_t o;
    pthread_t worker;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct oidc_job *todo, *todo_tail, *done; /* under mu */
    unsigned queued;                          /* loop thread: jobs not yet delivered */
    bool stopping; /* under mu; read atomically by requests in flight (on_progress) */
    ev_async wake;
    uint8_t state_key[32];
    bool have_state_key;
    struct pcache cache[IDP_MAX]; /* worker thread only */
    oidc_stats_t st;              /* loop thread (the fetch counts: the worker's, read racily) */
    uint64_t disc_fetches, jwks_fetches; /* worker thread */
};

/* ---- the worker: HTTP ----------------------------------------------------------------------- */

struct body {
    char *buf;
    size_t len;
    bool too_big;
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    struct body *b = ud;
    size_t l = sz * n;
    if (b->len + l > OIDC_DOC_MAX) {
        b->too_big = true;
        return 0; /* libcurl stops the transfer */
    }
    b->buf = xrealloc(b->buf, b->len + l + 1);
    memcpy(b->buf + b->len, p, l);
    b->len += l;
    b->buf[b->len] = '\0';
    return l;
}

/* libcurl's progress callback: a request in flight stops when popd does (not after up to
 * OIDC_HTTP_TIMEOUT_S more). */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    const oidc_t *x = ud;
    return __atomic_load_n(&x->stopping, __ATOMIC_RELAXED) ? 1 : 0;
}

/* One request; form (NULL = GET) is POSTed. 0 with the body of a 200 (caller frees b->buf),
 * or -EIO with *why. */
static int http_do(const struct oidc_job *j, const char *url, const char *form, bool basic,
                   struct body *b, const char **why)
{
    memset(b, 0, sizeof(*b));
    CURL *c = curl_easy_init();
    if (!c) {
        *why = "cannot make an HTTP client";
        return -EIO;
    }
    char *user = NULL, *pass = NULL;
    struct curl_slist *hl = curl_slist_append(NULL, "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "popmesh-oidc/1");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)OIDC_HTTP_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)OIDC_HTTP_TIMEOUT_S / 2);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, j->idp.allow_http ? "http,https" : "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, j->x);
    if (j->idp.ca_pem) {
        struct curl_blob blob = {j->idp.ca_pem, strlen(j->idp.ca_pem), CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (form) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, form);
        if (basic) {
            /* client_secret_basic: both parts form-urlencoded first (RFC 6749 2.3.1) */
            user = curl_easy_escape(c, j->idp.client_id, 0);
            pass = curl_easy_escape(c, j->secret, 0);
            curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
            curl_easy_setopt(c, CURLOPT_USERNAME, user);
            curl_easy_setopt(c, CURLOPT_PASSWORD, pass);
        }
    }
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    if (pass) {
        sodium_memzero(pass, strlen(pass));
        curl_free(pass);
    }
    curl_free(user);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    int rc = 0;
    if (b->too_big) {
        *why = "the identity provider's answer is larger than 64 KiB";
        rc = -EIO;
    } else if (cc != CURLE_OK) {
        *why = "the identity provider cannot be reached";
        rc = -EIO;
    } else if (code != 200 && !(form && code == 400 && b->len)) {
        /* a token endpoint's 400 carries an error document worth reading */
        *why = "the identity provider answered with an error status";
        rc = -EIO;
    }
    if (rc) {
        free(b->buf);
        b->buf = NULL;
        b->len = 0;
    }
    return rc;
}

static struct pcache *cache_for(oidc_t *x, const idp_rec_t *idp)
{
    struct pcache *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < IDP_MAX; i++) {
        struct pcache *p = &x->cache[i];
        if (p->name[0] && !strcmp(p->name, idp->name)) {
            if (strcmp(p->issuer, idp->issuer)) { /* the provider was replaced */
                oidc_jwks_free(&p->jwks);
                memset(p, 0, sizeof(*p));
                snprintf(p->name, sizeof(p->name), "%s", idp->name);
                snprintf(p->issuer, sizeof(p->issuer), "%s", idp->issuer);
            }
            return p;
        }
        if (!p->name[0] && !free_slot)
            free_slot = p;
        if (!oldest || p->disc_ms < oldest->disc_ms)
            oldest = p;
    }
    struct pcache *p = free_slot ? free_slot : oldest;
    oidc_jwks_free(&p->jwks);
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", idp->name);
    snprintf(p->issuer, sizeof(p->issuer), "%s", idp->issuer);
    return p;
}

static int discover(oidc_t *x, struct oidc_job *j, struct pcache *p, const char **why)
{
    uint64_t now = clock_mono_ms();
    if (p->disc_ms && now - p->disc_ms < OIDC_CACHE_MS)
        return 0;
    char url[OIDC_URL_MAX + 64];
    size_t il = strlen(j->idp.issuer);
    snprintf(url, sizeof(url), "%s%s.well-known/openid-configuration", j->idp.issuer,
             il && j->idp.issuer[il - 1] == '/' ? "" : "/");
    struct body b;
    x->disc_fetches++;
    if (http_do(j, url, NULL, false, &b, why))
        return -EIO;
    int rc = oidc_discovery_parse(b.buf, b.len, j->idp.issuer, j->idp.allow_http, &p->d, why);
    free(b.buf);
    if (rc)
        return rc;
    p->disc_ms = now ? now : 1;
    return 0;
}

static int fetch_jwks(oidc_t *x, struct oidc_job *j, struct pcache *p, const char **why)
{
    struct body b;
    x->jwks_fetches++;
    p->jwks_ms = clock_mono_ms();
    if (http_do(j, p->d.jwks_uri, NULL, false, &b, why))
        return -EIO;
    oidc_jwks_t *k = oidc_jwks_parse(b.buf, b.len, why);
    free(b.buf);
    if (!k)
        return -EBADMSG;
    oidc_jwks_free(&p->jwks);
    p->jwks = k;
    return 0;
}

static void fail(struct oidc_job *j, int status, const char *why)
{
    j->res.status = status;
    j->res.error = why;
}

static void run_start(oidc_t *x, struct oidc_job *j)
{
    const char *why = "";
    struct pcache *p = cache_for(x, &j->idp);
    if (discover(x, j, p, &why)) {
        log_warn("oidc: provider %s: discovery failed: %s", j->idp.name, why);
        fail(j, 502, "the identity provider cannot be reached or answered wrongly; try again "
                     "later, or sign in with a password");
        return;
    }
    char challenge[44];
    oidc_pkce_challenge(j->st.verifier, challenge);
    CURL *c = curl_easy_init();
    if (!c) {
        fail(j, 500, "cannot start the sign-in");
        return;
    }
    char *cid = curl_easy_escape(c, j->idp.client_id, 0);
    char *ru = curl_easy_escape(c, j->st.redirect_uri, 0);
    char *sc = curl_easy_escape(c, j->idp.scopes, 0);
    int n = snprintf(j->res.location, sizeof(j->res.location),
                     "%s%cresponse_type=code&client_id=%s&redirect_uri=%s&scope=%s&state=%s"
                     "&nonce=%s&code_challenge=%s&code_challenge_method=S256",
                     p->d.authorization_endpoint,
                     strchr(p->d.authorization_endpoint, '?') ? '&' : '?', cid ? cid : "",
                     ru ? ru : "", sc ? sc : "", j->st.state, j->st.nonce, challenge);
    curl_free(cid);
    curl_free(ru);
    curl_free(sc);
    curl_easy_cleanup(c);
    if (n < 0 || (size_t)n >= sizeof(j->res.location) ||
        oidc_state_seal(j->state_key, &j->st, j->res.cookie, sizeof(j->res.cookie))) {
        fail(j, 500, "the sign-in request is too large");
        return;
    }
    j->res.status = 302;
}

static void run_finish(oidc_t *x, struct oidc_job *j)
{
    const char *why = "";
    struct pcache *p = cache_for(x, &j->idp);
    if (discover(x, j, p, &why)) {
        log_warn("oidc: provider %s: discovery failed: %s", j->idp.name, why);
        fail(j, 502, "the identity provider cannot be reached or answered wrongly");
        return;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        fail(j, 500, "cannot finish the sign-in");
        return;
    }
    char *code = curl_easy_escape(c, j->cb.code, 0), *ru = curl_easy_escape(c, j->st.redirect_uri, 0);
    char *cid = curl_easy_escape(c, j->idp.client_id, 0);
    char form[OIDC_CODE_MAX * 3 + OIDC_URL_MAX * 3 + IDP_CLIENT_ID_MAX * 3 + 256];
    bool basic = j->secret[0] != '\0';
    int n = snprintf(form, sizeof(form),
                     "grant_type=authorization_code&code=%s&redirect_uri=%s&code_verifier=%s%s%s",
                     code ? code : "", ru ? ru : "", j->st.verifier, basic ? "" : "&client_id=",
                     basic ? "" : (cid ? cid : ""));
    curl_free(code);
    curl_free(ru);
    curl_free(cid);
    curl_easy_cleanup(c);
    if (n < 0 || (size_t)n >= sizeof(form)) {
        fail(j, 400, "the sign-in answer is too large");
        return;
    }
    struct body b;
    if (http_do(j, p->d.token_endpoint, form, basic, &b, &why)) {
        sodium_memzero(form, sizeof(form));
        log_warn("oidc: provider %s: token request failed: %s", j->idp.name, why);
        fail(j, 502, "the identity provider did not complete the sign-in");
        return;
    }
    sodium_memzero(form, sizeof(form));
    char *idt = xmalloc(OIDC_TOKEN_MAX + 1);
    int rc = oidc_token_response_parse(b.buf, b.len, idt, OIDC_TOKEN_MAX + 1, &why);
    free(b.buf);
    if (rc) {
        log_warn("oidc: provider %s: the token endpoint refused: %s", j->idp.name, why);
        fail(j, 403, "the identity provider refused the sign-in (it may have been used already): "
                     "start again");
        free(idt);
        return;
    }
    oidc_expect_t ex = {.issuer = j->idp.issuer,
                        .client_id = j->idp.client_id,
                        .nonce = j->st.nonce,
                        .groups_claim = j->idp.groups_claim,
                        .now_ms = clock_wall_ms()};
    if (!p->jwks && fetch_jwks(x, j, p, &why) && !p->jwks) {
        log_warn("oidc: provider %s: cannot read its keys: %s", j->idp.name, why);
        fail(j, 502, "the identity provider's keys cannot be read");
        free(idt);
        return;
    }
    if (p->jwks_ms && clock_mono_ms() - p->jwks_ms > OIDC_CACHE_MS)
        fetch_jwks(x, j, p, &why); /* a failed refresh keeps the keys held */
    rc = oidc_idtoken_verify(idt, strlen(idt), p->jwks, &ex, &j->claims, &why);
    if (rc == -ENOKEY && clock_mono_ms() - p->jwks_ms >= OIDC_JWKS_REFETCH_MS &&
        fetch_jwks(x, j, p, &why) == 0)
        rc = oidc_idtoken_verify(idt, strlen(idt), p->jwks, &ex, &j->claims, &why);
    sodium_memzero(idt, OIDC_TOKEN_MAX + 1);
    free(idt);
    if (rc) {
        log_warn("oidc: provider %s: ID token refused: %s", j->idp.name, why);
        fail(j, 403, "the identity provider's answer was refused");
        return;
    }
    j->res.status = 302;
}

static void *worker(void *arg)
{
    oidc_t *x = arg;
    for (;;) {
        pthread_mutex_lock(&x->mu);
        while (!x->todo && !x->stopping)
            pthread_cond_wait(&x->cv, &x->mu);
        if (x->stopping) {
            pthread_mutex_unlock(&x->mu);
            return NULL;
        }
        struct oidc_job *j = x->todo;
        x->todo = j->next;
        if (!x->todo)
            x->todo_tail = NULL;
        pthread_mutex_unlock(&x->mu);
        if (j->kind == JOB_START)
            run_start(x, j);
        else
            run_finish(x, j);
        sodium_memzero(j->secret, sizeof(j->secret));
        pthread_mutex_lock(&x->mu);
        j->next = x->done;
        x->done = j;
        pthread_mutex_unlock(&x->mu);
        ev_async_send(x->o.loop, &x->wake);
    }
}

/* ---- the loop ------------------------------------------------------------------------------ */

static void job_free(struct oidc_job *j)
{
    idp_rec_free(&j->idp);
    sodium_memzero(j, sizeof(*j));
    free(j);
}

static int read_idp(oidc_t *x, const char *name, idp_rec_t *r)
{
    char key[IDP_KEY_BUF];
    if (idp_key(name, key, sizeof(key)))
        return -ENOENT;
    store_entry_t e;
    int rc = store_get(x->o.store, key, strlen(key), &e);
    if (rc)
        return rc;
    const char *why = "";
    rc = idp_parse(e.value, e.vlen, name, r, &why);
    store_entry_free(&e);
    if (rc)
        log_warn("oidc: record %s is unreadable: %s", key, why);
    return rc;
}

static oidc_job_t *submit(oidc_t *x, struct oidc_job *j, const char **why)
{
    if (x->queued >= OIDC_QUEUE_MAX) {
        *why = "too many sign-ins in progress: try again in a moment";
        job_free(j);
        return NULL;
    }
    x->queued++;
    pthread_mutex_lock(&x->mu);
    if (x->todo_tail)
        x->todo_tail->next = j;
    else
        x->todo = j;
    x->todo_tail = j;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
    return j;
}

static struct oidc_job *job_new(oidc_t *x, enum job_kind kind, const char *idp_name,
                                oidc_done_fn done, void *ctx, const char **why)
{
    if (!x->have_state_key) {
        *why = "this node holds no store key: it cannot sign users in with a provider";
        return NULL;
    }
    struct oidc_job *j = xcalloc(1, sizeof(*j));
    j->x = x;
    j->kind = kind;
    j->done = done;
    j->ctx = ctx;
    memcpy(j->state_key, x->state_key, sizeof(j->state_key));
    if (read_idp(x, idp_name, &j->idp)) {
        *why = "no such identity provider";
        job_free(j);
        return NULL;
    }
    if (idp_secret_open(x->o.seal, &j->idp, j->secret, sizeof(j->secret))) {
        log_warn("oidc: provider %s: its client secret does not open here", idp_name);
        *why = "this identity provider cannot be used from this PoP";
        job_free(j);
        return NULL;
    }
    return j;
}

oidc_job_t *oidc_start(oidc_t *x, const char *idp, const char *rd, const char *redirect_uri,
                       oidc_done_fn done, void *ctx, const char **why)
{
    if (strlen(rd) > OIDC_RD_MAX || strlen(redirect_uri) > OIDC_URL_MAX) {
        *why = "the sign-in request is too large";
        return NULL;
    }
    struct oidc_job *j = job_new(x, JOB_START, idp, done, ctx, why);
    if (!j)
        return NULL;
    oidc_state_fresh(&j->st);
    snprintf(j->st.idp, sizeof(j->st.idp), "%s", j->idp.name);
    snprintf(j->st.redirect_uri, sizeof(j->st.redirect_uri), "%s", redirect_uri);
    snprintf(j->st.rd, sizeof(j->st.rd), "%s", rd);
    j->st.expires_ms = clock_wall_ms() + OIDC_STATE_TTL_MS;
    x->st.started++;
    return submit(x, j, why);
}

oidc_job_t *oidc_finish(oidc_t *x, const char *query, size_t qlen, const char *cookie,
                        size_t clen, oidc_done_fn done, void *ctx, const char **why)
{
    if (!x->have_state_key) {
        *why = "this node holds no store key: it cannot sign users in with a provider";
        return NULL;
    }
    oidc_callback_t cb;
    oidc_state_t st;
    if (oidc_callback_parse(query, qlen, &cb, why)) {
        x->st.refused++;
        return NULL;
    }
    if (!cookie || oidc_state_open(x->state_key, cookie, clen, clock_wall_ms(), &st, why)) {
        if (!cookie)
            *why = "the sign-in cookie is missing (cookies blocked, or the sign-in was not "
                   "started from this browser)";
        x->st.refused++;
        return NULL;
    }
    if (sodium_memcmp(cb.state, st.state, OIDC_RANDOM_LEN)) {
        *why = "the sign-in's state does not match its cookie";
        x->st.refused++;
        sodium_memzero(&st, sizeof(st));
        return NULL;
    }
    if (cb.error[0]) {
        *why = "the identity provider did not sign the user in";
        x->st.refused++;
        sodium_memzero(&st, sizeof(st));
        return NULL;
    }
    struct oidc_job *j = job_new(x, JOB_FINISH, st.idp, done, ctx, why);
    if (!j) {
        sodium_memzero(&st, sizeof(st));
        return NULL;
    }
    j->st = st;
    j->cb = cb;
    sodium_memzero(&st, sizeof(st));
    return submit(x, j, why);
}

void oidc_cancel(oidc_job_t *j)
{
    if (j)
        j->cancelled = true;
}

/* The user record of a verified sign-in: admitted, then written when new or changed. */
static void sign_in(oidc_t *x, struct oidc_job *j)
{
    const oidc_claims_t *c = &j->claims;
    auth_user_t *u = &j->res.user;
    char name[NODECFG_NAME_MAX + 1], en[LOG_ESC_MAX];
    const char *why = "";
    if (oidc_user_name(j->idp.name, c->sub, name, sizeof(name))) {
        log_warn("oidc: provider %s: a subject too long or with bytes outside "
                 "[A-Za-z0-9._@|+=-] cannot be a user name: refused",
                 j->idp.name);
        fail(j, 403, "this account's identifier cannot be used here");
        return;
    }
    auth_user_t old;
    int g = auth_user_get(x->o.store, name, &old);
    bool known = g == 0 && !old.removed;
    if (g == 0 && old.removed) {
        log_info("oidc: %s was removed by an operator: refused", log_escs(en, sizeof(en), name));
        fail(j, 403, "your account may not sign in here");
        return;
    }
    oidc_policy_t pol = {.domains = (const char(*)[OIDC_DOMAIN_MAX + 1])j->idp.domains,
                         .ndomains = j->idp.ndomains,
                         .auto_create = j->idp.auto_create};
    if (oidc_admit(&pol, c, known, &why)) {
        log_info("oidc: %s refused: %s", log_escs(en, sizeof(en), name), why);
        fail(j, 403, "your account may not sign in here");
        return;
    }
    memset(u, 0, sizeof(*u));
    snprintf(u->name, sizeof(u->name), "%s", name);
    for (unsigned i = 0; i < c->ngroups && i < AUTH_GROUPS_MAX; i++)
        snprintf(u->groups[u->ngroups++], sizeof(u->groups[0]), "%s", c->groups[i]);
    snprintf(u->email, sizeof(u->email), "%s", c->email);
    snprintf(u->display_name, sizeof(u->display_name), "%s", c->name);
    u->created_ms = known ? old.created_ms : clock_wall_ms();
    u->session_epoch = known ? old.session_epoch : (g == 0 ? old.session_epoch + 1 : 1);
    if (known)
        u->admin = old.admin;
    bool same = known && old.ngroups == u->ngroups && !strcmp(old.email, u->email) &&
                !strcmp(old.display_name, u->display_name) && !old.pwhash[0];
    for (unsigned i = 0; same && i < u->ngroups; i++)
        same = !strcmp(old.groups[i], u->groups[i]);
    if (!same) {
        char key[AUTH_KEY_MAX];
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        auth_user_pack(&pk, u);
        int rc = auth_user_key(name, key, sizeof(key)) ? -EINVAL
                                                        : meshnode_put_record(x->o.mesh, key, &sb);
        msgpack_sbuffer_destroy(&sb);
        if (rc) {
            log_warn("oidc: cannot write the user record of %s: %s",
                     log_escs(en, sizeof(en), name), strerror(-rc));
            fail(j, 503, "cannot record the sign-in: try again");
            return;
        }
    }
    log_info("oidc: %s signed in with %s%s", log_escs(en, sizeof(en), name), j->idp.name,
             known ? "" : " (new user)");
    snprintf(j->res.location, sizeof(j->res.location), "%s", j->st.rd);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    oidc_t *x = w->data;
    pthread_mutex_lock(&x->mu);
    struct oidc_job *list = x->done;
    x->done = NULL;
    pthread_mutex_unlock(&x->mu);
    while (list) {
        struct oidc_job *j = list;
        list = j->next;
        x->queued--;
        if (j->kind == JOB_FINISH) {
            if (j->res.status == 302)
                sign_in(x, j);
            if (j->res.status == 302)
                x->st.signed_in++;
            else if (j->res.status >= 500)
                x->st.failed++;
            else
                x->st.refused++;
        } else if (j->res.status != 302) {
            x->st.failed++;
        }
        if (!j->cancelled)
            j->done(j->ctx, &j->res);
        job_free(j);
    }
}

/* ---- the login page ------------------------------------------------------------------------ */

struct links {
    char *out;
    size_t cap, len;
    const char *rd;
    unsigned n;
};

static void append(struct links *l, const char *s)
{
    size_t sl = strlen(s);
    if (l->len + sl + 1 > l->cap)
        return;
    memcpy(l->out + l->len, s, sl + 1);
    l->len += sl;
}

static int add_link(const store_entry_t *e, void *ctx)
{
    struct links *l = ctx;
    size_t pl = strlen(IDP_PREFIX);
    if (l->n >= IDP_MAX || e->klen <= pl || e->klen - pl > NODECFG_NAME_MAX)
        return 0;
    char name[NODECFG_NAME_MAX + 1];
    memcpy(name, e->key + pl, e->klen - pl);
    name[e->klen - pl] = '\0';
    idp_rec_t r;
    const char *why;
    if (idp_parse(e->value, e->vlen, name, &r, &why))
        return 0;
    idp_rec_free(&r);
    /* names are a-z, 0-9 and '-': nothing to escape in them */
    char line[OIDC_RD_MAX * 3 + 300];
    snprintf(line, sizeof(line),
             "<p><a class=\"idp\" href=\"/.popmesh/oidc/start?idp=%s&amp;rd=%s\">Sign in with "
             "%s</a></p>",
             name, l->rd, name);
    append(l, line);
    l->n++;
    return 0;
}

void oidc_login_links(oidc_t *x, const char *rd, char *out, size_t cap)
{
    out[0] = '\0';
    if (!x || !cap)
        return;
    char enc[OIDC_RD_MAX * 3 + 1];
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)rd; *p && o + 4 < sizeof(enc); p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~/", *p))
            enc[o++] = (char)*p;
        else
            o += (size_t)snprintf(enc + o, 4, "%%%02X", *p);
    }
    enc[o] = '\0';
    struct links l = {.out = out, .cap = cap, .len = 0, .rd = enc};
    store_list(x->o.store, IDP_PREFIX, strlen(IDP_PREFIX), add_link, &l);
}

/* ---- commands ------------------------------------------------------------------------------ */

static int cmd_idp_add(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    oidc_t *x = ctx;
    idp_rec_t r;
    memset(&r, 0, sizeof(r));
    uint64_t ac = 0, ah = 0;
    const char *sec = NULL, *ca = NULL, *dom = NULL;
    uint32_t secl = 0, cal = 0, doml = 0;
    if (ctl_arg_copy(req, "name", r.name, sizeof(r.name)) != 1 || nodecfg_check_name(r.name))
        return control_error(pk, CTL_BAD_REQUEST,
                             "name must be 1-63 of a-z, 0-9 and '-' (it prefixes the provider's "
                             "user names: NAME:subject)");
    if (ctl_arg_uint(req, "auto_create", &ac) < 0 || ctl_arg_uint(req, "allow_http", &ah) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "auto_create and allow_http are 0 or 1");
    r.auto_create = ac != 0;
    r.allow_http = ah != 0;
    if (ctl_arg_copy(req, "issuer", r.issuer, sizeof(r.issuer)) != 1 ||
        !idp_issuer_ok(r.issuer, r.allow_http))
        return control_error(pk, CTL_BAD_REQUEST,
                             "issuer must be an https:// URL without query (plain http:// only "
                             "to a loopback address, with --insecure-http-loopback, for tests)");
    if (ctl_arg_copy(req, "client_id", r.client_id, sizeof(r.client_id)) != 1 || !r.client_id[0])
        return control_error(pk, CTL_BAD_REQUEST, "client_id is required (at most 255 bytes)");
    for (const char *p = r.client_id; *p; p++)
        if (*p < 0x20 || *p >= 0x7f)
            return control_error(pk, CTL_BAD_REQUEST, "client_id must be printable ASCII");
    int sr = ctl_arg_copy(req, "scopes", r.scopes, sizeof(r.scopes));
    if (sr == 0)
        snprintf(r.scopes, sizeof(r.scopes), "openid email profile");
    if (sr < 0 || !idp_scopes_ok(r.scopes))
        return control_error(pk, CTL_BAD_REQUEST,
                             "scopes must be space-separated scope names that include openid");
    if (ctl_arg_copy(req, "groups_claim", r.groups_claim, sizeof(r.groups_claim)) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "groups_claim is at most 63 bytes");
    for (const char *p = r.groups_claim; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            return control_error(pk, CTL_BAD_REQUEST, "groups_claim must be a claim name");
    if (ctl_arg_str(req, "allowed_domains", &dom, &doml) < 0 || doml > 4096)
        return control_error(pk, CTL_BAD_REQUEST, "allowed_domains is a comma-separated list");
    for (uint32_t i = 0; dom && i < doml;) {
        uint32_t k = i;
        while (k < doml && dom[k] != ',')
            k++;
        if (r.ndomains == OIDC_DOMAINS_MAX || k - i > OIDC_DOMAIN_MAX || k == i)
            return control_error(pk, CTL_BAD_REQUEST,
                                 "allowed_domains: at most %d domains, none empty",
                                 OIDC_DOMAINS_MAX);
        char *d = r.domains[r.ndomains];
        for (uint32_t m = i; m < k; m++)
            d[m - i] = (char)((dom[m] >= 'A' && dom[m] <= 'Z') ? dom[m] + 32 : dom[m]);
        d[k - i] = '\0';
        if (!idp_domain_ok(d))
            return control_error(pk, CTL_BAD_REQUEST, "'%s' is not a domain name", d);
        r.ndomains++;
        i = k + 1;
    }
    if (ctl_arg_str(req, "ca_pem", &ca, &cal) < 0 || cal > IDP_CA_PEM_MAX ||
        (ca && (cal == 0 || memchr(ca, '\0', cal) ||
                !memmem(ca, cal, "-----BEGIN CERTIFICATE-----", 27))))
        return control_error(pk, CTL_BAD_REQUEST,
                             "ca_pem must be PEM certificates of at most %d bytes", IDP_CA_PEM_MAX);
    if (ctl_arg_str(req, "client_secret", &sec, &secl) < 0 || secl > IDP_SECRET_MAX ||
        (sec && memchr(sec, '\0', secl)))
        return control_error(pk, CTL_BAD_REQUEST, "the client secret is at most %d bytes",
                             IDP_SECRET_MAX);
    if (sec && secl) {
        char tmp[IDP_SECRET_MAX + 1];
        memcpy(tmp, sec, secl);
        tmp[secl] = '\0';
        int rc = idp_secret_seal(x->o.seal, &r, tmp, secl);
        sodium_memzero(tmp, sizeof(tmp));
        if (rc)
            return control_error(pk, CTL_FAILED,
                                 "cannot seal the client secret (%s): this PoP holds no store "
                                 "key?",
                                 strerror(-rc));
    }
    if (ca) {
        r.ca_pem = xmalloc(cal + 1);
        memcpy(r.ca_pem, ca, cal);
        r.ca_pem[cal] = '\0';
    }
    r.created_ms = clock_wall_ms();
    char key[IDP_KEY_BUF];
    idp_key(r.name, key, sizeof(key));
    msgpack_sbuffer sb;
    msgpack_packer p2;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&p2, &sb, msgpack_sbuffer_write);
    idp_pack(&p2, &r);
    int rc = meshnode_put_record(x->o.mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    idp_rec_free(&r);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot store %s: %s", key,
                             store_last_error(x->o.store));
    msgpack_pack_map(pk, 3);
    mpw_kv_str(pk, "name", r.name);
    mpw_kv_str(pk, "issuer", r.issuer);
    mpw_kv_str(pk, "callback_path", "/.popmesh/oidc/callback");
    return CTL_OK;
}

struct idp_list {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    uint32_t n;
};

static int list_one(const store_entry_t *e, void *ctx)
{
    struct idp_list *l = ctx;
    size_t pl = strlen(IDP_PREFIX);
    if (l->n >= 1000 || e->klen <= pl || e->klen - pl > NODECFG_NAME_MAX)
        return 0;
    char name[NODECFG_NAME_MAX + 1];
    memcpy(name, e->key + pl, e->klen - pl);
    name[e->klen - pl] = '\0';
    idp_rec_t r;
    const char *why;
    if (idp_parse(e->value, e->vlen, name, &r, &why)) {
        log_warn("oidc: record idp/%s is unreadable: %s", name, why);
        return 0;
    }
    msgpack_pack_map(&l->pk, 10);
    mpw_kv_str(&l->pk, "name", r.name);
    mpw_kv_str(&l->pk, "issuer", r.issuer);
    mpw_kv_str(&l->pk, "client_id", r.client_id);
    mpw_kv_bool(&l->pk, "client_secret", r.secret_sealed_len > 0); /* never the secret */
    mpw_kv_str(&l->pk, "scopes", r.scopes);
    mpw_kv_str(&l->pk, "groups_claim", r.groups_claim);
    mpw_str(&l->pk, "allowed_domains");
    msgpack_pack_array(&l->pk, r.ndomains);
    for (unsigned i = 0; i < r.ndomains; i++)
        mpw_str(&l->pk, r.domains[i]);
    mpw_kv_bool(&l->pk, "auto_create", r.auto_create);
    mpw_kv_bool(&l->pk, "insecure_http", r.allow_http);
    mpw_kv_bool(&l->pk, "ca_bundle", r.ca_pem != NULL);
    idp_rec_free(&r);
    l->n++;
    return 0;
}

static int cmd_idp_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    oidc_t *x = ctx;
    struct idp_list l = {.n = 0};
    msgpack_sbuffer_init(&l.sb);
    msgpack_packer_init(&l.pk, &l.sb, msgpack_sbuffer_write);
    store_list(x->o.store, IDP_PREFIX, strlen(IDP_PREFIX), list_one, &l);
    msgpack_pack_map(pk, 2);
    mpw_str(pk, "providers");
    msgpack_pack_array(pk, l.n);
    mpw_raw(pk, l.sb.data, l.sb.size);
    msgpack_sbuffer_destroy(&l.sb);
    mpw_str(pk, "stats");
    msgpack_pack_map(pk, 6);
    mpw_kv_u64(pk, "started", x->st.started);
    mpw_kv_u64(pk, "signed_in", x->st.signed_in);
    mpw_kv_u64(pk, "refused", x->st.refused);
    mpw_kv_u64(pk, "failed", x->st.failed);
    mpw_kv_u64(pk, "discovery_fetches", x->disc_fetches);
    mpw_kv_u64(pk, "jwks_fetches", x->jwks_fetches);
    return CTL_OK;
}

static int cmd_idp_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    oidc_t *x = ctx;
    char name[NODECFG_NAME_MAX + 1], key[IDP_KEY_BUF];
    if (ctl_arg_copy(req, "name", name, sizeof(name)) != 1 || idp_key(name, key, sizeof(key)))
        return control_error(pk, CTL_BAD_REQUEST, "name is required");
    store_entry_t e;
    if (store_get(x->o.store, key, strlen(key), &e))
        return control_error(pk, CTL_NOT_FOUND, "no identity provider '%s'", name);
    store_entry_free(&e);
    if (meshnode_del_record(x->o.mesh, key, strlen(key), NULL))
        return control_error(pk, CTL_FAILED, "cannot remove %s: %s", key,
                             store_last_error(x->o.store));
    msgpack_pack_map(pk, 1);
    mpw_kv_str(pk, "name", name);
    return CTL_OK;
}

static const control_command_t idp_commands[] = {
    {"idp.add", cmd_idp_add,
     "name, issuer, client_id: str, [client_secret, scopes, groups_claim, allowed_domains "
     "(comma-separated), ca_pem: str], [auto_create, allow_http: 0|1] -> {name, issuer}"},
    {"idp.list", cmd_idp_list, "-> {providers: [...] (never a secret), stats}"},
    {"idp.rm", cmd_idp_rm, "name: str -> {name}"},
    {NULL, NULL, NULL},
};

int oidc_register_commands(oidc_t *x, control_t *ctl)
{
    return control_add_commands(ctl, idp_commands, x);
}

oidc_stats_t oidc_get_stats(const oidc_t *x)
{
    oidc_stats_t s = x->st;
    s.discovery_fetches = x->disc_fetches;
    s.jwks_fetches = x->jwks_fetches;
    return s;
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

oidc_t *oidc_new(const oidc_opts_t *o, char *err, size_t errlen)
{
    oidc_t *x = xcalloc(1, sizeof(*x));
    x->o = *o;
    if (o->seal && o->seal->have_key) {
        oidc_state_key(o->seal->key, x->state_key);
        x->have_state_key = true;
    }
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    ev_async_init(&x->wake, on_wake);
    x->wake.data = x;
    ev_async_start(o->loop, &x->wake);
    int rc = pthread_create(&x->worker, NULL, worker, x);
    if (rc) {
        snprintf(err, errlen, "cannot start the OpenID Connect worker thread: %s", strerror(rc));
        ev_async_stop(o->loop, &x->wake);
        free(x);
        return NULL;
    }
    x->started = true;
    return x;
}

void oidc_destroy(oidc_t **op)
{
    oidc_t *x = op ? *op : NULL;
    if (!x)
        return;
    pthread_mutex_lock(&x->mu);
    __atomic_store_n(&x->stopping, true, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&x->cv);
    pthread_mutex_unlock(&x->mu);
    if (x->started)
        pthread_join(x->worker, NULL);
    ev_async_stop(x->o.loop, &x->wake);
    for (struct oidc_job *l = x->todo, *n; l; l = n) {
        n = l->next;
        job_free(l);
    }
    for (struct oidc_job *l = x->done, *n; l; l = n) {
        n = l->next;
        job_free(l);
    }
    for (size_t i = 0; i < IDP_MAX; i++)
        oidc_jwks_free(&x->cache[i].jwks);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    sodium_memzero(x->state_key, sizeof(x->state_key));
    free(x);
    *op = NULL;
}
