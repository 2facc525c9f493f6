/* acmehttp: see acmehttp.h. */
#include "node/acme/acmehttp.h"

#include "common/xmalloc.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct acmehttp {
    struct ev_loop *loop;
    void (*done)(void *ctx, const acmehttp_result_t *r);
    void *ctx;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop; /* under mu; also read by the transfer's progress callback (atomic load) */
    bool has_job, has_result; /* under mu */
    bool busy;                /* loop side: submitted, result not yet delivered */
    acmehttp_job_t job;
    acmehttp_result_t res;
    ev_async async;
    /* the worker's own */
    char nonce[256];
    char nonce_url[ACME_URL_MAX + 1];
};

struct body {
    char *buf;
    size_t len;
    bool too_big;
};

struct hdrs {
    char nonce[256];
    char location[ACME_URL_MAX + 1];
};

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    struct body *b = ud;
    size_t add = sz * n;
    if (b->len + add > ACMEHTTP_BODY_MAX) {
        b->too_big = true;
        return 0;
    }
    b->buf = xrealloc(b->buf, b->len + add + 1);
    memcpy(b->buf + b->len, p, add);
    b->len += add;
    b->buf[b->len] = '\0';
    return add;
}

/* One header line: keeps Replay-Nonce and Location (trimmed, bounded; longer ones dropped). */
static void keep_header(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t'))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
        vl--;
    if (vl == 0 || vl >= cap)
        return;
    for (size_t i = 0; i < vl; i++)
        if (v[i] <= 0x20 || v[i] >= 0x7f)
            return;
    memcpy(out, v, vl);
    out[vl] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct hdrs *h = ud;
    keep_header(p, sz * n, "Replay-Nonce", h->nonce, sizeof(h->nonce));
    keep_header(p, sz * n, "Location", h->location, sizeof(h->location));
    return sz * n;
}

/* Aborts a transfer under way when the worker is told to stop (popd is shutting down), so a
 * slow CA never holds the exit up for ACMEHTTP_TIMEOUT_S. */
static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    acmehttp_t *h = ud;
    return __atomic_load_n(&h->stop, __ATOMIC_RELAXED) ? 1 : 0;
}

/* One HTTP exchange. method: "GET", "HEAD" or "POST" (body then set: a JWS, or the job's raw
 * bytes when it has some). */
static void exchange(acmehttp_t *hp, const acmehttp_job_t *j, const char *method, const char *url,
                     const char *body, acmehttp_result_t *r, struct hdrs *h)
{
    CURL *c = curl_easy_init();
    struct body b = {0};
    struct curl_slist *hl = NULL;
    memset(h, 0, sizeof(*h));
    r->status = 0;
    r->err[0] = '\0';
    if (!c) {
        snprintf(r->err, sizeof(r->err), "cannot start libcurl");
        return;
    }
    char ua[64];
    snprintf(ua, sizeof(ua), "popmesh-acme/%s", POPMESH_VERSION);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)ACMEHTTP_TIMEOUT_S);
    /* OCSP responders speak plain HTTP (the response is signed); ACME is HTTPS only. */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, j->raw ? "http,https" : "https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, hp);
    if (j->ca_pem) {
        struct curl_blob blob = {
            .data = j->ca_pem, .len = strlen(j->ca_pem), .flags = CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (!strcmp(method, "HEAD")) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(method, "POST") && j->raw) {
        char ct[96];
        snprintf(ct, sizeof(ct), "Content-Type: %s", j->raw_type);
        hl = curl_slist_append(hl, ct);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)j->raw_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)j->raw);
    } else if (!strcmp(method, "POST")) {
        hl = curl_slist_append(hl, "Content-Type: application/jose+json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    if (j->want_pem)
        hl = curl_slist_append(hl, "Accept: application/pem-certificate-chain");
    if (hl)
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    } else {
        snprintf(r->err, sizeof(r->err), "%s %s: %s", method, url,
                 b.too_big ? "the response is larger than 1 MiB" : curl_easy_strerror(rc));
    }
    free(r->body);
    r->body = b.buf ? b.buf : xcalloc(1, 1);
    r->body_len = b.len;
    snprintf(r->location, sizeof(r->location), "%s", h->location);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}

static bool is_bad_nonce(const acmehttp_result_t *r)
{
    return r->status == 400 && r->body &&
           strstr(r->body, "urn:ietf:params:acme:error:badNonce") != NULL;
}

static void run_job(acmehttp_t *h, const acmehttp_job_t *j, acmehttp_result_t *r)
{
    struct hdrs hd;
    if (j->raw) {
        exchange(h, j, "POST", j->url, NULL, r, &hd);
        return;
    }
    if (!j->post) {
        exchange(h, j, "GET", j->url, NULL, r, &hd);
        return;
    }
    if (strcmp(h->nonce_url, j->new_nonce)) { /* another CA: its nonces are not ours */
        snprintf(h->nonce_url, sizeof(h->nonce_url), "%s", j->new_nonce);
        h->nonce[0] = '\0';
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!h->nonce[0]) {
            exchange(h, j, "HEAD", j->new_nonce, NULL, r, &hd);
            if (r->err[0])
                return;
            if (!hd.nonce[0]) {
                snprintf(r->err, sizeof(r->err), "newNonce gave no Replay-Nonce (HTTP %ld)",
                         r->status);
                r->status = 0;
                return;
            }
            snprintf(h->nonce, sizeof(h->nonce), "%s", hd.nonce);
        }
        char *jws = acme_jws(j->key, j->kid[0] ? j->kid : NULL, h->nonce, j->url, j->payload);
        h->nonce[0] = '\0'; /* a nonce is good for one request */
        if (!jws) {
            snprintf(r->err, sizeof(r->err), "cannot sign the request (OpenSSL)");
            return;
        }
        exchange(h, j, "POST", j->url, jws, r, &hd);
        free(jws);
        if (hd.nonce[0])
            snprintf(h->nonce, sizeof(h->nonce), "%s", hd.nonce);
        if (!is_bad_nonce(r))
            return;
    }
}

static void *worker(void *arg)
{
    acmehttp_t *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->stop && !h->has_job)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->stop)
            break;
        acmehttp_job_t j = h->job;
        pthread_mutex_unlock(&h->mu);
        acmehttp_result_t r = {0};
        run_job(h, &j, &r);
        free(j.payload);
        free(j.ca_pem);
        free(j.raw);
        EVP_PKEY_free(j.key);
        pthread_mutex_lock(&h->mu);
        h->has_job = false;
        h->res = r;
        h->has_result = true;
        ev_async_send(h->loop, &h->async);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    acmehttp_t *h = w->data;
    pthread_mutex_lock(&h->mu);
    bool have = h->has_result;
    acmehttp_result_t r = h->res;
    h->has_result = false;
    memset(&h->res, 0, sizeof(h->res));
    pthread_mutex_unlock(&h->mu);
    if (!have)
        return;
    h->busy = false;
    h->done(h->ctx, &r);
    free(r.body);
}

/* libcurl's global state, once per process (it is not thread-safe to set up). */
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

acmehttp_t *acmehttp_new(struct ev_loop *loop, void (*done)(void *ctx, const acmehttp_result_t *r),
                         void *ctx)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);
    acmehttp_t *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->done = done;
    h->ctx = ctx;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    ev_async_init(&h->async, on_async);
    h->async.data = h;
    ev_async_start(loop, &h->async);
    int rc = pthread_create(&h->thread, NULL, worker, h);
    if (rc) {
        ev_async_stop(loop, &h->async);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        free(h);
        errno = rc;
        return NULL;
    }
    return h;
}

void acmehttp_destroy(acmehttp_t **hp)
{
    acmehttp_t *h = hp ? *hp : NULL;
    if (!h)
        return;
    pthread_mutex_lock(&h->mu);
    __atomic_store_n(&h->stop, true, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
    pthread_join(h->thread, NULL);
    if (h->has_job) { /* never started */
        free(h->job.payload);
        free(h->job.ca_pem);
        free(h->job.raw);
        EVP_PKEY_free(h->job.key);
    }
    free(h->res.body);
    ev_async_stop(h->loop, &h->async);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
    *hp = NULL;
}

int acmehttp_submit(acmehttp_t *h, acmehttp_job_t *job)
{
    if (h->busy) {
        free(job->payload);
        free(job->ca_pem);
        free(job->raw);
        job->payload = job->ca_pem = NULL;
        job->raw = NULL;
        return -EBUSY;
    }
    if (job->key)
        EVP_PKEY_up_ref(job->key);
    pthread_mutex_lock(&h->mu);
    h->job = *job;
    h->has_job = true;
    h->busy = true;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
    job->payload = job->ca_pem = NULL;
    job->raw = NULL;
    return 0;
}

bool acmehttp_busy(const acmehttp_t *h)
{
    return h->busy;
}
