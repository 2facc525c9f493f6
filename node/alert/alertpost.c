/* alertpost: see alertpost.h. */
#include "node/alert/alertpost.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/xmalloc.h"
#include "node/records/alertrec.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct delivery {
    struct delivery *next;
    char name[ALERT_NAME_MAX + 1];
    char url[ALERT_URL_MAX + 1];
    char event[ALERT_EVENT_ID_LEN + 1];
    char *body;      /* malloc'd JSON */
    unsigned tries;  /* attempts made */
    uint64_t due_ms; /* monotonic ms: not before */
};

struct alertpost {
    struct ev_loop *loop;
    alertpost_opts_t o;
    /* loop side */
    struct delivery *head, *tail; /* waiting or in backoff, oldest first */
    size_t nqueued;
    struct delivery *cur; /* handed to the worker; NULL when idle */
    ev_timer kick;
    ev_async async;
    alertpost_stats_t st;
    /* shared with the worker, under mu */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop; /* also read by the transfer's progress callback (atomic load) */
    bool has_job, has_result;
    long status;   /* the answer's HTTP status, 0 = none */
    char err[200]; /* why there was none */
};

uint64_t alertpost_backoff_ms(unsigned n, uint32_t min_ms, uint32_t max_ms)
{
    uint64_t d = min_ms;
    for (unsigned i = 1; i < n && d < max_ms; i++)
        d *= 2;
    return d < max_ms ? d : max_ms;
}

/* ---- the worker --------------------------------------------------------------------------- */

static size_t discard(char *p, size_t sz, size_t n, void *ud)
{
    (void)p, (void)ud;
    return sz * n; /* the receiver's answer body says nothing we act on */
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    alertpost_t *p = ud;
    return __atomic_load_n(&p->stop, __ATOMIC_RELAXED) ? 1 : 0;
}

static void post_once(alertpost_t *p, const struct delivery *d, long *status, char *err,
                      size_t errlen)
{
    *status = 0;
    err[0] = '\0';
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "cannot start libcurl");
        return;
    }
    char ua[64];
    snprintf(ua, sizeof(ua), "popmesh-alert/%s", POPMESH_VERSION);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(c, CURLOPT_URL, d->url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)p->o.timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)p->o.timeout_ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(d->body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, p);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    else
        snprintf(err, errlen, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}

static void *worker(void *arg)
{
    alertpost_t *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && !p->has_job)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        /* cur is not touched by the loop while has_job or has_result is set */
        const struct delivery *d = p->cur;
        pthread_mutex_unlock(&p->mu);
        long status;
        char err[sizeof(p->err)];
        post_once(p, d, &status, err, sizeof(err));
        pthread_mutex_lock(&p->mu);
        p->has_job = false;
        p->has_result = true;
        p->status = status;
        memcpy(p->err, err, sizeof(err));
        ev_async_send(p->loop, &p->async);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the loop side ------------------------------------------------------------------------- */

static void delivery_free(struct delivery *d)
{
    if (d) {
        free(d->body);
        free(d);
    }
}

static void schedule(alertpost_t *p);

/* Hands the first due delivery to the worker when it is idle; else arms the timer for the
 * earliest due one. */
static void schedule(alertpost_t *p)
{
    ev_timer_stop(p->loop, &p->kick);
    if (p->cur || !p->head)
        return;
    uint64_t now = clock_mono_ms(), first = UINT64_MAX;
    struct delivery *prev = NULL;
    for (struct delivery *d = p->head; d; prev = d, d = d->next) {
        if (d->due_ms <= now) {
            /* unlink and hand over */
            if (prev)
                prev->next = d->next;
            else
                p->head = d->next;
            if (p->tail == d)
                p->tail = prev;
            d->next = NULL;
            p->nqueued--;
            pthread_mutex_lock(&p->mu);
            p->cur = d;
            p->has_job = true;
            pthread_cond_signal(&p->cv);
            pthread_mutex_unlock(&p->mu);
            return;
        }
        if (d->due_ms < first)
            first = d->due_ms;
    }
    ev_timer_set(&p->kick, (double)(first - now) / 1000.0, 0.);
    ev_timer_start(p->loop, &p->kick);
}

static void on_kick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    schedule(w->data);
}

static void enqueue(alertpost_t *p, struct delivery *d)
{
    d->next = NULL;
    if (p->tail)
        p->tail->next = d;
    else
        p->head = d;
    p->tail = d;
    p->nqueued++;
}

static void on_result(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    alertpost_t *p = w->data;
    pthread_mutex_lock(&p->mu);
    if (!p->has_result) {
        pthread_mutex_unlock(&p->mu);
        return;
    }
    p->has_result = false;
    long status = p->status;
    char err[sizeof(p->err)];
    memcpy(err, p->err, sizeof(err));
    struct delivery *d = p->cur;
    p->cur = NULL;
    pthread_mutex_unlock(&p->mu);

    char origin[ALERT_URL_MAX + 1];
    alert_url_origin(d->url, origin, sizeof(origin));
    d->tries++;
    if (status >= 200 && status < 300) {
        p->st.sent++;
        log_info("alert %s: event %s delivered to %s (HTTP %ld, attempt %u)", d->name, d->event,
                 origin, status, d->tries);
        delivery_free(d);
    } else {
        p->st.attempts_failed++;
        char why[240];
        if (status)
            snprintf(why, sizeof(why), "HTTP %ld", status);
        else
            snprintf(why, sizeof(why), "%s", err);
        if (d->tries >= p->o.attempts) {
            p->st.failed++;
            log_warn("alert %s: event %s not delivered to %s after %u attempts (last: %s); "
                     "given up",
                     d->name, d->event, origin, d->tries, why);
            delivery_free(d);
        } else {
            uint64_t wait =
                alertpost_backoff_ms(d->tries, p->o.backoff_min_ms, p->o.backoff_max_ms);
            log_warn("alert %s: event %s to %s failed (%s), attempt %u of %u; retrying in %llu ms",
                     d->name, d->event, origin, why, d->tries, p->o.attempts,
                     (unsigned long long)wait);
            d->due_ms = clock_mono_ms() + wait;
            enqueue(p, d);
        }
    }
    schedule(p);
}

void alertpost_submit(alertpost_t *p, const char *name, const char *url, const char *event,
                      const char *body)
{
    if (p->nqueued + (p->cur ? 1 : 0) >= p->o.queue_max && p->head) {
        struct delivery *old = p->head;
        p->head = old->next;
        if (!p->head)
            p->tail = NULL;
        p->nqueued--;
        p->st.dropped++;
        log_warn("alert %s: queue full (%u deliveries): event %s dropped, the oldest waiting "
                 "(%llu dropped so far)",
                 old->name, p->o.queue_max, old->event, (unsigned long long)p->st.dropped);
        delivery_free(old);
    }
    struct delivery *d = xcalloc(1, sizeof(*d));
    snprintf(d->name, sizeof(d->name), "%s", name);
    snprintf(d->url, sizeof(d->url), "%s", url);
    snprintf(d->event, sizeof(d->event), "%s", event);
    d->body = xstrdup(body);
    d->due_ms = clock_mono_ms();
    enqueue(p, d);
    p->st.queued_total++;
    schedule(p);
}

void alertpost_stats(const alertpost_t *p, alertpost_stats_t *out)
{
    *out = p->st;
    out->pending = p->nqueued + (p->cur ? 1 : 0);
}

alertpost_t *alertpost_new(const alertpost_opts_t *o)
{
    /* before the worker starts: libcurl's global set-up is not thread-safe everywhere */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    alertpost_t *p = xcalloc(1, sizeof(*p));
    p->loop = o->loop;
    p->o = *o;
    if (!p->o.queue_max)
        p->o.queue_max = ALERTPOST_QUEUE_MAX;
    if (!p->o.timeout_ms)
        p->o.timeout_ms = ALERTPOST_TIMEOUT_MS;
    if (!p->o.attempts)
        p->o.attempts = ALERTPOST_ATTEMPTS;
    if (!p->o.backoff_min_ms)
        p->o.backoff_min_ms = ALERTPOST_BACKOFF_MIN_MS;
    if (!p->o.backoff_max_ms)
        p->o.backoff_max_ms = ALERTPOST_BACKOFF_MAX_MS;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    ev_timer_init(&p->kick, on_kick, 0., 0.);
    p->kick.data = p;
    ev_async_init(&p->async, on_result);
    p->async.data = p;
    ev_async_start(p->loop, &p->async);
    int rc = pthread_create(&p->thread, NULL, worker, p);
    if (rc) {
        ev_async_stop(p->loop, &p->async);
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
        errno = rc;
        return NULL;
    }
    return p;
}

void alertpost_destroy(alertpost_t **pp)
{
    alertpost_t *p = *pp;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stop, true, __ATOMIC_RELAXED);
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    ev_timer_stop(p->loop, &p->kick);
    ev_async_stop(p->loop, &p->async);
    delivery_free(p->cur);
    while (p->head) {
        struct delivery *d = p->head;
        p->head = d->next;
        delivery_free(d);
    }
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
    *pp = NULL;
}
