#include "node/admin/admin.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/logesc.h"
#include "common/mp.h"
#include "common/mpjson.h"
#include "common/netaddr.h"
#include "common/xmalloc.h"
#include "node/admin/adminmetrics.h"
#include "node/admin/adminweb.h"
#include "node/admin/promtext.h"
#include "node/auth/auth.h"
#include "node/ctl/control.h"
#include "node/http/httphdr.h"
#include "node/http/httpmsg.h"
#include "node/tls/tlsctx.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define TARGET_MAX 256 /* bytes of a request target we look at; longer: 414 */
#define BEARER_MAX 128 /* bytes of an Authorization token we look at (an API key is 65) */

struct pwjob;

struct aconn {
    admin_t *a;
    int fd;
    auth_addr_t peer;
    char peer_text[64];
    ev_io rio, wio;
    ev_timer timer;
    http_reader_t *rd;
    bool have_request; /* a whole request was read: answering */
    int method;        /* enum http_method */
    char target[TARGET_MAX + 1];
    bool target_too_long;
    char *out; /* the answer (head and body), malloc'd */
    size_t out_len, out_off;
    /* credentials and the sign-in form, copied from the head and body as they are read */
    char cookie[AUTH_TOKEN_MAX + 1]; /* the ADMINWEB_COOKIE value, "" if none */
    int ncookies;                    /* distinct values of it sent (2: two or more) */
    bool has_authz;                  /* an Authorization header was sent */
    char bearer[BEARER_MAX + 1];     /* its token when it is "Bearer TOKEN" and fits */
    bool cross_site;                 /* sent from another site's page (httphdr_cross_site) */
    char body[ADMIN_MAX_BODY];       /* the request body (the reader refuses more: 413) */
    size_t body_len;                 /* bytes */
    struct pwjob *job;               /* a password check under way for this connection */
    /* HTTPS: a connection whose first byte is a TLS handshake record goes through tls (when
     * the PoP has a certificate for the name the client asks; unknown names get an alert). */
    bool sniff;           /* its first byte is not seen yet (the listener has certificates) */
    tlsconn_t *tls;       /* NULL: plain HTTP */
    bool handshaking;     /* tls: the handshake is not done */
    bool rd_wants_write;  /* tls: a read waits for the socket to be writable */
    bool wr_wants_read;   /* tls: a write waits for the socket to be readable */
    struct aconn *prev, *next;
};

/* A sign-in's password check, made by the worker thread (argon2id never runs on the loop). */
struct pwjob {
    struct aconn *c;                  /* NULL once the connection is gone (loop thread only) */
    auth_user_t u;                    /* the user record, when user_ok */
    bool user_ok;                     /* the user exists and is not removed */
    char pw[AUTH_PASSWORD_MAX + 1];   /* wiped as soon as it is checked */
    size_t pwlen;                     /* bytes */
    bool ok;                          /* the password matched (worker's answer) */
    struct pwjob *next;
};

struct admin {
    admin_opts_t o;
    auth_cidr_t allow[ADMIN_ALLOW_MAX];
    size_t nallow;
    int fd;
    ev_io io;
    struct aconn *conns;
    admin_stats_t st;
    /* sign-in: rate limits as the ingress's (per address generous, per user strict), and one
     * worker thread for the password checks */
    auth_ratelimit_t *rl_ip, *rl_user;
    pthread_t worker;
    bool have_worker;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pwjob *todo, *done; /* under mu */
    unsigned queued;           /* jobs not finished (loop thread) */
    bool stopping;             /* under mu */
    ev_async wake;             /* the worker finished a job */
};

static void conn_close(struct aconn *c)
{
    admin_t *a = c->a;
    ev_io_stop(a->o.loop, &c->rio);
    ev_io_stop(a->o.loop, &c->wio);
    ev_timer_stop(a->o.loop, &c->timer);
    tlsconn_destroy(&c->tls);
    close(c->fd);
    http_reader_destroy(&c->rd);
    if (c->job)
        c->job->c = NULL; /* the worker's answer is dropped when it comes */
    sodium_memzero(c->body, sizeof(c->body));
    sodium_memzero(c->cookie, sizeof(c->cookie));
    sodium_memzero(c->bearer, sizeof(c->bearer));
    free(c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->st.conns--;
    free(c);
}

static const char *reason_phrase(int code)
{
    switch (code) {
    case 200: return "OK";
    case 303: return "See Other";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}

/* The whole answer into c->out; takes ownership of body (malloc'd, may be NULL). */
static void answer(struct aconn *c, int code, const char *ctype, char *body, size_t blen,
                   const char *extra)
{
    char head[2048];
    int hl = snprintf(head, sizeof(head),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
                      code, reason_phrase(code), ctype, blen, extra ? extra : "");
    bool head_only = c->method == HTTP_HEAD && code < 400;
    size_t n = (size_t)hl + (head_only ? 0 : blen);
    c->out = xmalloc(n);
    memcpy(c->out, head, (size_t)hl);
    if (!head_only && blen)
        memcpy(c->out + hl, body, blen);
    free(body);
    c->out_len = n;
    c->out_off = 0;
    c->a->st.requests++;
}

static void answer_text(struct aconn *c, int code, const char *text)
{
    size_t n = strlen(text);
    char *b = xmalloc(n + 1);
    memcpy(b, text, n + 1);
    answer(c, code, "text/plain; charset=utf-8", b, n, code == 405 ? "Allow: GET, HEAD\r\n" : NULL);
}

/* ---- the status page and its sign-in ------------------------------------------------------ */

/* An HTML answer: page(nonce, arg) under a CSP allowing only what carries that nonce. extra:
 * more header lines (each ending in \r\n), or NULL. */
static void answer_html(struct aconn *c, int code, char *(*page)(const char *, const char *),
                        const char *arg, const char *extra)
{
    uint8_t raw[16];
    char nonce[ADMINWEB_NONCE_CHARS + 1], hdr[1600];
    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(nonce, sizeof(nonce), raw, sizeof(raw), sodium_base64_VARIANT_ORIGINAL);
    snprintf(hdr, sizeof(hdr),
             "Content-Security-Policy: " ADMINWEB_CSP_FMT "\r\nX-Frame-Options: DENY\r\n"
             "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n%s",
             nonce, nonce, extra ? extra : "");
    char *body = page(nonce, arg);
    answer(c, code, "text/html; charset=utf-8", body, strlen(body), hdr);
}

/* {"error": why} as JSON, for /api/. */
static void answer_json_error(struct aconn *c, int code, const char *why, const char *extra)
{
    json_t *j = json_pack("{s:s}", "error", why);
    char *t = j ? mpjson_text(j) : NULL;
    json_decref(j);
    if (!t)
        t = xstrdup("{\"error\": \"?\"}\n");
    answer(c, code, "application/json", t, strlen(t), extra);
}

enum who {
    WHO_NONE,  /* no credentials (or an expired session): the sign-in form */
    WHO_BAD,   /* an Authorization header that is not a valid API key */
    WHO_USER,  /* a valid user or key, not an admin */
    WHO_ADMIN, /* an admin user, or an admin key of an admin user */
};

/* Who the request comes from, by its admin API key or its session cookie; user gets the name
 * (when known), why a reason for the log. */
static enum who authenticate(admin_t *a, struct aconn *c, char *user, size_t ulen,
                             const char **why)
{
    auth_user_t u;
    uint64_t now = clock_wall_ms();
    *why = "";
    user[0] = '\0';
    if (c->has_authz) {
        uint64_t id;
        uint8_t secret[32];
        char key[AUTH_KEY_MAX];
        store_entry_t e;
        auth_apikey_t k;
        size_t tl = strlen(c->bearer);
        if (!c->bearer[0]) {
            *why = "Authorization is not Bearer and an API key";
            return WHO_BAD;
        }
        if (auth_apikey_check(a->o.store, c->bearer, tl, now, &u, why))
            return WHO_BAD;
        snprintf(user, ulen, "%s", u.name);
        /* The key is valid: is it an admin key? (the id is the one just checked) */
        if (auth_apikey_token_parse(c->bearer, tl, &id, secret, why)) {
            sodium_memzero(secret, sizeof(secret));
            return WHO_BAD;
        }
        sodium_memzero(secret, sizeof(secret));
        auth_apikey_key(id, key, sizeof(key));
        if (store_get(a->o.store, key, strlen(key), &e)) {
            *why = "the API key's record cannot be read";
            return WHO_BAD;
        }
        int rc = auth_apikey_parse(e.value, e.vlen, id, &k, why);
        store_entry_free(&e);
        if (rc)
            return WHO_BAD;
        if (!k.admin) {
            *why = "not an admin API key";
            return WHO_USER;
        }
        if (!u.admin) {
            *why = "the API key's user is not an admin";
            return WHO_USER;
        }
        return WHO_ADMIN;
    }
    if (c->ncookies == 0)
        return WHO_NONE;
    if (c->ncookies > 1) {
        *why = "two admin session cookies";
        return WHO_NONE;
    }
    /* No resource: a session scoped to one resource (a share link's) is refused here. */
    if (a->o.keys) {
        /* Signed by a PoP whose certificate holds issue-sessions (and not removed). */
        auth_session_t claims;
        if (auth_cookie_verify(a->o.keys, c->cookie, strlen(c->cookie), now, &claims, why) ||
            auth_session_claims_check(a->o.store, &claims, now, NULL, &u, why))
            return WHO_NONE;
    } else if (auth_session_check(a->o.store, a->o.meshkey->pk, c->cookie, strlen(c->cookie), now,
                                  NULL, &u, why))
        return WHO_NONE;
    snprintf(user, ulen, "%s", u.name);
    if (!u.admin) {
        *why = "the user is not an admin";
        return WHO_USER;
    }
    return WHO_ADMIN;
}

static char *page_status(const char *nonce, const char *user)
{
    return adminweb_status_page(nonce, user);
}

static char *page_login(const char *nonce, const char *msg)
{
    return adminweb_login_page(nonce, msg);
}

static char *page_forbidden(const char *nonce, const char *user)
{
    return adminweb_forbidden_page(nonce, user);
}

/* GET /api/NAME: the control command's answer as meshctl --json prints it. */
static void answer_api(admin_t *a, struct aconn *c, const adminweb_api_t *api)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int rc = control_call(a->o.control, api->command, &pk);
    json_t *j = mpjson_from((const uint8_t *)sb.data, sb.size);
    if (j && rc == CTL_OK && api->also) { /* as meshctl does it */
        msgpack_sbuffer_clear(&sb);
        if (control_call(a->o.control, api->also, &pk) == CTL_OK) {
            json_t *more = mpjson_from((const uint8_t *)sb.data, sb.size);
            if (more)
                json_object_set(j, api->also_key, json_object_get(more, api->also_key));
            json_decref(more);
        }
    }
    msgpack_sbuffer_destroy(&sb);
    char *t = j ? mpjson_text(j) : NULL;
    json_decref(j);
    if (!t) {
        answer_json_error(c, 500, "the answer could not be rendered", NULL);
        return;
    }
    /* A command this PoP does not serve (no TLS part: cert.list) answers its own error. */
    int code = rc == CTL_OK ? 200 : rc == -ENOENT ? 404 : 503;
    answer(c, code, "application/json", t, strlen(t), NULL);
}

/* A sign-in attempt: rate limits, then the password on the worker. */
static void sign_in(admin_t *a, struct aconn *c)
{
    char user[NODECFG_NAME_MAX + 1] = "", pw[AUTH_PASSWORD_MAX + 1] = "";
    bool parsed = adminweb_form_get(c->body, c->body_len, "username", user, sizeof(user)) &&
                  adminweb_form_get(c->body, c->body_len, "password", pw, sizeof(pw));
    char k1[sizeof(c->peer_text) + 8], k2[NODECFG_NAME_MAX + 8], eu[LOG_ESC_MAX];
    snprintf(k1, sizeof(k1), "ip:%s", c->peer_text);
    snprintf(k2, sizeof(k2), "user:%s", user);
    uint64_t now = clock_mono_ms();
    if (!auth_ratelimit_allow(a->rl_ip, k1, now) ||
        (parsed && !auth_ratelimit_allow(a->rl_user, k2, now))) {
        a->st.login_limited++;
        log_warn("admin: sign-in from %s for '%s' rate-limited", c->peer_text,
                 log_escs(eu, sizeof(eu), user));
        sodium_memzero(pw, sizeof(pw));
        answer_html(c, 429, page_login, "Too many attempts: wait a little and try again.", NULL);
        return;
    }
    if (!parsed) {
        a->st.logins_failed++;
        answer_html(c, 400, page_login, "Give a user name and a password.", NULL);
        return;
    }
    if (a->queued >= ADMIN_PW_QUEUE || !a->have_worker) {
        sodium_memzero(pw, sizeof(pw));
        answer_text(c, 503, "too many sign-ins in progress: try again in a moment\n");
        return;
    }
    /* An unknown user is checked against the worker's dummy hash: the answer takes as long
     * whether the user exists or not. */
    struct pwjob *job = xcalloc(1, sizeof(*job));
    job->c = c;
    job->user_ok = auth_user_get(a->o.store, user, &job->u) == 0 && !job->u.removed;
    if (!job->user_ok)
        snprintf(job->u.name, sizeof(job->u.name), "%s", user);
    job->pwlen = strlen(pw);
    memcpy(job->pw, pw, job->pwlen);
    sodium_memzero(pw, sizeof(pw));
    c->job = job;
    a->queued++;
    pthread_mutex_lock(&a->mu);
    job->next = a->todo;
    a->todo = job;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

static void start_writing(struct aconn *c);

/* The worker's answer to a sign-in, on the loop. */
static void finish_sign_in(admin_t *a, struct pwjob *job)
{
    struct aconn *c = job->c;
    char eu[LOG_ESC_MAX];
    log_escs(eu, sizeof(eu), job->u.name);
    if (!job->ok || !job->user_ok) {
        a->st.logins_failed++;
        log_info("admin: sign-in of '%s' from %s refused: wrong user or password", eu,
                 c->peer_text);
        answer_html(c, 401, page_login, "Wrong user or password.", NULL);
    } else if (!job->u.admin) {
        a->st.logins_forbidden++;
        log_info("admin: sign-in of '%s' from %s refused: not an admin", eu, c->peer_text);
        answer_html(c, 403, page_forbidden, job->u.name, NULL);
    } else {
        char cookie[AUTH_TOKEN_MAX + 1], hdr[AUTH_TOKEN_MAX + 200];
        const char *why = "";
        int mrc = a->o.keys ? auth_cookie_make(a->o.keys, job->u.name, job->u.session_epoch,
                                               clock_wall_ms(), ADMINWEB_SESSION_S * 1000ull, "",
                                               cookie, sizeof(cookie), &why)
                            : auth_session_make(a->o.meshkey, job->u.name, job->u.session_epoch,
                                                clock_wall_ms(), ADMINWEB_SESSION_S * 1000ull, "",
                                                cookie, sizeof(cookie));
        if (mrc == -EPERM) {
            log_info("admin: cannot sign a session here: %s", why);
            answer_text(c, 403, "this PoP does not sign sessions; sign in at another PoP\n");
        } else if (mrc) {
            answer_text(c, 500, "cannot make a session\n");
        } else {
            /* HttpOnly: the page's script never needs it; SameSite=Strict: no other site's
             * page can make the browser send it; Secure when signed in over HTTPS, so the
             * browser never sends it in clear afterwards. */
            snprintf(hdr, sizeof(hdr),
                     "Set-Cookie: " ADMINWEB_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict; "
                     "%sMax-Age=%u\r\nLocation: /\r\n",
                     cookie, c->tls ? "Secure; " : "", ADMINWEB_SESSION_S);
            a->st.logins++;
            log_info("admin: %s signed in from %s", eu, c->peer_text);
            char *b = xstrdup("signed in\n");
            answer(c, 303, "text/plain; charset=utf-8", b, strlen(b), hdr);
            sodium_memzero(hdr, sizeof(hdr));
        }
        sodium_memzero(cookie, sizeof(cookie));
    }
    start_writing(c);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
    admin_t *a = w->data;
    pthread_mutex_lock(&a->mu);
    struct pwjob *done = a->done;
    a->done = NULL;
    pthread_mutex_unlock(&a->mu);
    while (done) {
        struct pwjob *job = done;
        done = job->next;
        a->queued--;
        if (job->c) {
            job->c->job = NULL;
            finish_sign_in(a, job);
        }
        sodium_memzero(job, sizeof(*job));
        free(job);
    }
}

static void *pw_worker(void *arg)
{
    admin_t *a = arg;
    /* The hash unknown users are checked against, made here: not on the loop, not at start. */
    char dummy[AUTH_PWHASH_MAX + 1];
    uint8_t rnd[16];
    char rpw[33];
    randombytes_buf(rnd, sizeof(rnd));
    sodium_bin2hex(rpw, sizeof(rpw), rnd, sizeof(rnd));
    if (auth_password_hash(rpw, strlen(rpw), dummy, sizeof(dummy)))
        dummy[0] = '\0';
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->todo && !a->stopping)
            pthread_cond_wait(&a->cv, &a->mu);
        if (a->stopping)
            break;
        struct pwjob *job = a->todo;
        a->todo = job->next;
        pthread_mutex_unlock(&a->mu);
        job->ok = auth_password_verify(job->user_ok ? job->u.pwhash : dummy, job->pw, job->pwlen);
        sodium_memzero(job->pw, sizeof(job->pw));
        pthread_mutex_lock(&a->mu);
        job->next = a->done;
        a->done = job;
        ev_async_send(a->o.loop, &a->wake);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Whether the status page can be served: it needs the store and the mesh key. */
static bool has_page(const admin_t *a)
{
    return a->o.store && a->o.meshkey && a->o.control;
}

/* "/", "/login", "/logout" and "/api/...": true if path was one of them (answered). */
static bool route_page(admin_t *a, struct aconn *c, const char *path)
{
    const adminweb_api_t *api = adminweb_api_find(path);
    bool page = !strcmp(path, "/") || !strcmp(path, "/login") || !strcmp(path, "/logout");
    if (!api && !page && strncmp(path, "/api/", 5) != 0)
        return false;
    if (!has_page(a))
        return false;
    bool post = c->method == HTTP_POST, get = c->method == HTTP_GET || c->method == HTTP_HEAD;
    bool may_post = !strcmp(path, "/login") || !strcmp(path, "/logout");
    bool may_get = strcmp(path, "/logout") != 0;
    if (!((post && may_post) || (get && may_get))) {
        a->st.bad++;
        answer_text(c, 405, may_post ? "sign in and out with POST\n" : "only GET and HEAD here\n");
        return true;
    }
    if (post && c->cross_site) {
        /* A form posted from another site's page: login CSRF (signing the victim in as the
         * attacker) or a forced sign-out. */
        a->st.bad++;
        log_info("admin: cross-site %s from %s refused", path, c->peer_text);
        answer_text(c, 403, "sign in and out from this listener's own page\n");
        return true;
    }
    if (post && !strcmp(path, "/login")) {
        sign_in(a, c);
        return true;
    }
    if (post) { /* /logout: the cookie goes; the session itself lapses (or: meshctl session revoke) */
        char *b = xstrdup("signed out\n");
        answer(c, 303, "text/plain; charset=utf-8", b, strlen(b),
               "Set-Cookie: " ADMINWEB_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
               "\r\nLocation: /\r\n");
        return true;
    }
    char user[NODECFG_NAME_MAX + 1], eu[LOG_ESC_MAX];
    const char *why;
    enum who who = authenticate(a, c, user, sizeof(user), &why);
    if (who == WHO_BAD)
        log_info("admin: %s from %s refused: %s", path, c->peer_text, why);
    if (who == WHO_USER)
        log_info("admin: %s from %s (%s) refused: %s", path, c->peer_text,
                 log_escs(eu, sizeof(eu), user), why);
    if (api || !page) {
        if (who == WHO_ADMIN) {
            if (!api) {
                a->st.bad++;
                answer_json_error(c, 404, "no such endpoint: see docs/operations.md", NULL);
            } else {
                a->st.api++;
                answer_api(a, c, api);
            }
        } else if (who == WHO_USER) {
            a->st.forbidden_page++;
            answer_json_error(c, 403, "not an admin: an admin user's session or an admin API "
                                      "key is needed", NULL);
        } else {
            a->st.unauthenticated++;
            answer_json_error(c, 401,
                              who == WHO_BAD ? "the API key is not valid"
                                             : "sign in as an admin, or send Authorization: "
                                               "Bearer with an admin API key",
                              "WWW-Authenticate: Bearer realm=\"popmesh admin\"\r\n");
        }
        return true;
    }
    if (who == WHO_ADMIN && !strcmp(path, "/")) {
        a->st.pages++;
        answer_html(c, 200, page_status, user, NULL);
    } else if (who == WHO_USER) {
        a->st.forbidden_page++;
        answer_html(c, 403, page_forbidden, user, NULL);
    } else if (who == WHO_BAD) {
        a->st.unauthenticated++;
        answer_html(c, 401, page_login, "That API key is not valid.", NULL);
    } else if (who == WHO_ADMIN) { /* GET /login while signed in */
        char *b = xstrdup("signed in already\n");
        answer(c, 303, "text/plain; charset=utf-8", b, strlen(b), "Location: /\r\n");
    } else {
        answer_html(c, 200, page_login, NULL, NULL);
    }
    return true;
}

static bool allowed(const admin_t *a, const auth_addr_t *peer)
{
    for (size_t i = 0; i < a->nallow; i++)
        if (auth_cidr_contains(&a->allow[i], peer))
            return true;
    return false;
}

static void render_own(const admin_t *a, promtext_t *p)
{
    const struct {
        const char *name, *help, *type;
        uint64_t v;
    } own[] = {
        {"popmesh_admin_requests_total", "Requests answered by the admin listener.", "counter",
         a->st.requests},
        {"popmesh_admin_scrapes_total", "/metrics answered 200.", "counter", a->st.scrapes},
        {"popmesh_admin_forbidden_total",
         "/metrics refused: the client is not in metrics-allow.", "counter", a->st.forbidden},
        {"popmesh_admin_bad_requests_total",
         "Admin requests refused for their form, method or path.", "counter", a->st.bad},
        {"popmesh_admin_refused_total", "Admin connections refused: too many open.", "counter",
         a->st.refused_cap},
        {"popmesh_admin_timeouts_total", "Admin connections closed by the timeout.", "counter",
         a->st.timeouts},
        {"popmesh_admin_connections", "Admin connections open.", "gauge", a->st.conns},
        {"popmesh_admin_tls_handshakes_total",
         "HTTPS connections to the admin listener whose handshake completed.", "counter",
         a->st.tls_handshakes},
        {"popmesh_admin_tls_failed_total",
         "TLS handshakes on the admin listener that failed (unknown name, bad hello).",
         "counter", a->st.tls_failed},
    };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        prom_family(p, own[i].name, own[i].type, own[i].help);
        prom_u64(p, own[i].name, NULL, 0, own[i].v);
    }
    const struct {
        const char *result;
        uint64_t v;
    } logins[] = {{"ok", a->st.logins},
                  {"wrong_password", a->st.logins_failed},
                  {"not_admin", a->st.logins_forbidden},
                  {"rate_limited", a->st.login_limited}};
    prom_family(p, "popmesh_admin_logins_total", "counter",
                "Sign-ins to the admin listener's status page, by result.");
    for (size_t i = 0; i < sizeof(logins) / sizeof(logins[0]); i++)
        prom_u64(p, "popmesh_admin_logins_total",
                 &(prom_label_t){.name = "result", .value = logins[i].result}, 1, logins[i].v);
    const struct {
        const char *result;
        uint64_t v;
    } pages[] = {{"page", a->st.pages},
                 {"api", a->st.api},
                 {"unauthenticated", a->st.unauthenticated},
                 {"forbidden", a->st.forbidden_page}};
    prom_family(p, "popmesh_admin_page_requests_total", "counter",
                "Status page and /api/ requests, by answer: page or api (served to an admin), "
                "unauthenticated (401), forbidden (403, not an admin).");
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++)
        prom_u64(p, "popmesh_admin_page_requests_total",
                 &(prom_label_t){.name = "result", .value = pages[i].result}, 1, pages[i].v);
}

/* http.stats: the per-resource HTTP counters, as /api/httpstats and meshctl http-stats show
 * them (the page's request rates are their differences between two polls). */
static int cmd_http_stats(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    const httpstats_t *hs = ctx;
    size_t n = hs ? httpstats_count(hs) : 0;
    msgpack_pack_map(pk, 2);
    mpw_str(pk, "resources");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        const httpstats_res_t *r = httpstats_at(hs, i);
        static const char *const cls[5] = {"responses_1xx", "responses_2xx", "responses_3xx",
                                           "responses_4xx", "responses_5xx"};
        msgpack_pack_map(pk, 10);
        mpw_kv_str(pk, "name", r->name);
        mpw_kv_u64(pk, "requests", r->requests);
        for (int k = 0; k < 5; k++)
            mpw_kv_u64(pk, cls[k], r->responses[k]);
        mpw_kv_u64(pk, "bytes_in", r->bytes_in);
        mpw_kv_u64(pk, "bytes_out", r->bytes_out);
        mpw_kv_u64(pk, "latency_sum_us", r->latency_sum_us);
    }
    mpw_kv_u64(pk, "overflow", hs ? httpstats_overflow(hs) : 0);
    return CTL_OK;
}

static const control_command_t http_stats_commands[] = {
    {"http.stats", cmd_http_stats,
     "-> {resources: [{name, requests, responses_1xx..5xx, bytes_in, bytes_out, "
     "latency_sum_us}], overflow}: this PoP's HTTP ingress counters"},
    {NULL, NULL, NULL},
};

/* A whole request was read: decide the answer. */
static void route(struct aconn *c)
{
    admin_t *a = c->a;
    if (c->target_too_long) {
        a->st.bad++;
        answer_text(c, 414, "the request target is too long\n");
        return;
    }
    char *q = strchr(c->target, '?');
    if (q)
        *q = '\0';
    if (route_page(a, c, c->target))
        return;
    if (c->method != HTTP_GET && c->method != HTTP_HEAD) {
        a->st.bad++;
        answer_text(c, 405, "only GET and HEAD\n");
        return;
    }
    if (!strcmp(c->target, "/metrics")) {
        if (!allowed(a, &c->peer)) {
            char why[160];
            a->st.forbidden++;
            snprintf(why, sizeof(why), "forbidden: %s is not in metrics-allow\n", c->peer_text);
            log_info("admin: /metrics from %s refused: not in metrics-allow", c->peer_text);
            answer_text(c, 403, why);
            return;
        }
        promtext_t p;
        prom_init(&p);
        adminmetrics_collect(a->o.control, a->o.http, &p);
        a->st.scrapes++;
        render_own(a, &p);
        answer(c, 200, PROMTEXT_CONTENT_TYPE, p.buf, p.len, NULL); /* takes p.buf */
        return;
    }
    if (!strcmp(c->target, "/healthz")) {
        answer_text(c, 200, "ok\n");
        return;
    }
    if (!strcmp(c->target, "/readyz")) {
        char reasons[ADMIN_REASONS_MAX] = "";
        if (!a->o.ready || a->o.ready(a->o.ctx, reasons, sizeof(reasons)))
            answer_text(c, 200, "ready\n");
        else
            answer_text(c, 503, reasons[0] ? reasons : "not ready\n");
        return;
    }
    a->st.bad++;
    answer_text(c, 404, has_page(a) ? "not found: the admin listener serves /, /api/, /metrics, "
                                      "/healthz and /readyz\n"
                                    : "not found: the admin listener serves /metrics, /healthz "
                                      "and /readyz\n");
}

static void start_writing(struct aconn *c)
{
    c->have_request = true;
    ev_io_stop(c->a->o.loop, &c->rio);
    ev_io_start(c->a->o.loop, &c->wio);
    ev_feed_event(c->a->o.loop, &c->wio, EV_WRITE);
}

static void arm(struct aconn *c)
{
    ev_timer_stop(c->a->o.loop, &c->timer);
    ev_timer_set(&c->timer, ADMIN_TIMEOUT_S, 0.);
    ev_timer_start(c->a->o.loop, &c->timer);
}

/* recv/send on the connection, plain or through TLS: bytes, 0 at EOF (recv), or -1 with errno
 * (EAGAIN: not now; under TLS the flags say which readiness the retry waits for). */
static ssize_t conn_recv(struct aconn *c, void *buf, size_t len)
{
    if (!c->tls)
        return recv(c->fd, buf, len, 0);
    ssize_t n = tlsconn_read(c->tls, buf, len);
    if (n > 0)
        return n;
    if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
        c->rd_wants_write = n == TLS_WANT_WRITE;
        if (c->rd_wants_write)
            ev_io_start(c->a->o.loop, &c->wio);
        errno = EAGAIN;
        return -1;
    }
    if (n == TLS_CLOSED)
        return 0;
    errno = EPROTO;
    return -1;
}

static ssize_t conn_send(struct aconn *c, const void *buf, size_t len)
{
    if (!c->tls)
        return send(c->fd, buf, len, MSG_NOSIGNAL);
    ssize_t n = tlsconn_write(c->tls, buf, len);
    if (n > 0)
        return n;
    if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
        c->wr_wants_read = n == TLS_WANT_READ;
        if (c->wr_wants_read) {
            ev_io_stop(c->a->o.loop, &c->wio);
            ev_io_start(c->a->o.loop, &c->rio);
        }
        errno = EAGAIN;
        return -1;
    }
    errno = EPIPE;
    return -1;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents);

/* The TLS handshake, as far as the socket allows; then the request is read. */
static void handshake_step(struct aconn *c)
{
    struct ev_loop *loop = c->a->o.loop;
    const char *why = NULL;
    int rc = tlsconn_handshake(c->tls, &why);
    if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE) {
        ev_io_start(loop, rc == TLS_WANT_READ ? &c->rio : &c->wio);
        ev_io_stop(loop, rc == TLS_WANT_READ ? &c->wio : &c->rio);
        return;
    }
    if (rc != TLS_OK) {
        c->a->st.tls_failed++;
        log_debug("admin: TLS handshake with %s failed: %s", c->peer_text, why);
        conn_close(c);
        return;
    }
    c->a->st.tls_handshakes++;
    c->handshaking = false;
    arm(c);
    ev_io_stop(loop, &c->wio);
    ev_io_start(loop, &c->rio);
    if (tlsconn_pending(c->tls))
        ev_feed_event(loop, &c->rio, EV_READ);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    struct aconn *c = w->data;
    if (c->handshaking) {
        handshake_step(c);
        return;
    }
    if (c->rd_wants_write && !c->have_request) { /* a TLS read waited for this */
        c->rd_wants_write = false;
        ev_io_stop(loop, &c->wio);
        on_read(loop, &c->rio, EV_READ);
        return;
    }
    while (c->out_off < c->out_len) {
        ssize_t n = conn_send(c, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
        arm(c); /* progress: the client gets its time again */
    }
    if (c->tls)
        tlsconn_shutdown(c->tls); /* close_notify, with the FIN */
    shutdown(c->fd, SHUT_WR);
    conn_close(c);
}

static int rd_on_head(void *ctx, const http_head_t *h)
{
    struct aconn *c = ctx;
    const char *v;
    size_t vl;
    c->ncookies = httphdr_cookie_find(h, ADMINWEB_COOKIE, &v, &vl);
    if (c->ncookies == 1 && vl <= AUTH_TOKEN_MAX) {
        memcpy(c->cookie, v, vl);
        c->cookie[vl] = '\0';
    } else if (c->ncookies == 1) {
        c->ncookies = 0; /* too long to be ours */
    }
    for (size_t i = 0; i < h->nheaders; i++) {
        if (!httphdr_name_is(h->headers[i].name, h->headers[i].name_len, "authorization"))
            continue;
        if (c->has_authz) { /* two: neither is believed */
            c->bearer[0] = '\0';
            break;
        }
        c->has_authz = true;
        if (!adminweb_bearer(h->headers[i].value, h->headers[i].value_len, c->bearer,
                             sizeof(c->bearer)))
            c->bearer[0] = '\0';
    }
    c->cross_site = httphdr_cross_site(h);
    c->method = h->method;
    c->target_too_long = h->target_len > TARGET_MAX;
    size_t n = c->target_too_long ? 0 : h->target_len;
    memcpy(c->target, h->target, n);
    c->target[n] = '\0';
    return 0;
}

static int rd_on_body(void *ctx, const uint8_t *d, size_t n)
{
    struct aconn *c = ctx;
    /* The reader stops at ADMIN_MAX_BODY (413); this check only keeps the copy in bounds. */
    if (n > sizeof(c->body) - c->body_len)
        return -1;
    memcpy(c->body + c->body_len, d, n);
    c->body_len += n;
    return 0;
}

static int rd_on_done(void *ctx)
{
    (void)ctx;
    return 1; /* one request per connection */
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    struct aconn *c = w->data;
    if (c->sniff) {
        /* A TLS handshake record starts with 0x16; HTTP with a method's letter. */
        uint8_t first;
        ssize_t k = recv(c->fd, &first, 1, MSG_PEEK);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (k <= 0) {
            conn_close(c);
            return;
        }
        c->sniff = false;
        if (first == 0x16) {
            c->tls = tlsconn_new(c->a->o.tls, c->fd);
            if (!c->tls) {
                conn_close(c);
                return;
            }
            c->handshaking = true;
            handshake_step(c);
            return;
        }
    }
    if (c->handshaking) {
        handshake_step(c);
        return;
    }
    if (c->have_request) { /* a TLS write waited for the socket to be readable */
        if (c->wr_wants_read) {
            c->wr_wants_read = false;
            ev_io_stop(loop, &c->rio);
            ev_io_start(loop, &c->wio);
            ev_feed_event(loop, &c->wio, EV_WRITE);
        }
        return;
    }
    uint8_t buf[4096];
    ssize_t n = conn_recv(c, buf, sizeof(buf));
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) { /* gone before a whole request */
        conn_close(c);
        return;
    }
    ssize_t used = http_reader_feed(c->rd, buf, (size_t)n);
    if (used < 0) {
        const char *why = NULL;
        int code = http_reader_error(c->rd, &why);
        char text[200];
        snprintf(text, sizeof(text), "%s\n", why && why[0] ? why : "malformed request");
        c->a->st.bad++;
        c->method = HTTP_GET; /* the body is sent whatever was asked */
        answer_text(c, code ? code : 400, text);
        start_writing(c);
        return;
    }
    if (used < n || !http_reader_in_message(c->rd)) {
        /* on_done stopped the feed, or the message just ended: answer it */
        if (c->method >= 0 && (c->target[0] || c->target_too_long) && !c->have_request) {
            c->have_request = true;
            ev_io_stop(c->a->o.loop, &c->rio);
            route(c);
            if (!c->job) /* a sign-in answers when its password check is done */
                start_writing(c);
        }
    }
    if (c->tls && !c->have_request && tlsconn_pending(c->tls))
        ev_feed_event(loop, &c->rio, EV_READ); /* decrypted bytes the socket will not signal */
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    struct aconn *c = w->data;
    c->a->st.timeouts++;
    log_debug("admin: connection from %s timed out", c->peer_text);
    conn_close(c);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    admin_t *a = w->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(a->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or a failure the next readiness retries */
        if (a->st.conns >= ADMIN_MAX_CONNS) {
            static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                       "text/plain\r\nContent-Length: 27\r\nConnection: "
                                       "close\r\n\r\ntoo many admin connections\n";
            a->st.refused_cap++;
            ssize_t ignored = send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
            close(fd);
            continue;
        }
        struct aconn *c = xcalloc(1, sizeof(*c));
        c->a = a;
        c->fd = fd;
        c->method = -1;
        c->sniff = a->o.tls != NULL;
        auth_addr_from_sockaddr((struct sockaddr *)&ss, &c->peer);
        char host[64] = "?";
        if (ss.ss_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, host, sizeof(host));
        else if (ss.ss_family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, host, sizeof(host));
        snprintf(c->peer_text, sizeof(c->peer_text), "%s", host);
        http_limits_t lim = {.max_header_bytes = ADMIN_MAX_REQUEST,
                             .max_headers = ADMIN_MAX_HEADERS,
                             .max_body_bytes = ADMIN_MAX_BODY};
        http_reader_cbs_t cbs = {.ctx = c,
                                 .on_head = rd_on_head,
                                 .on_body = rd_on_body,
                                 .on_done = rd_on_done};
        c->rd = http_reader_new(HTTP_REQUEST, &lim, &cbs);
        ev_io_init(&c->rio, on_read, fd, EV_READ);
        ev_io_init(&c->wio, on_write, fd, EV_WRITE);
        ev_timer_init(&c->timer, on_timer, ADMIN_TIMEOUT_S, 0.);
        c->rio.data = c->wio.data = c->timer.data = c;
        c->next = a->conns;
        if (a->conns)
            a->conns->prev = c;
        a->conns = c;
        a->st.conns++;
        ev_io_start(loop, &c->rio);
        ev_timer_start(loop, &c->timer);
    }
}

admin_t *admin_new(const admin_opts_t *o, char *err, size_t errlen)
{
    if (o->nallow > ADMIN_ALLOW_MAX) {
        snprintf(err, errlen, "admin: at most %d networks in metrics-allow", ADMIN_ALLOW_MAX);
        return NULL;
    }
    admin_t *a = xcalloc(1, sizeof(*a));
    a->o = *o;
    if (o->nallow) {
        memcpy(a->allow, o->allow, o->nallow * sizeof(*o->allow));
        a->nallow = o->nallow;
    } else {
        const char *why;
        auth_cidr_parse("127.0.0.0/8", &a->allow[0], &why);
        auth_cidr_parse("::1/128", &a->allow[1], &why);
        a->nallow = 2;
    }
    char why[300];
    a->fd = netaddr_listen(o->listen, 64, why, sizeof(why));
    if (a->fd < 0) {
        snprintf(err, errlen, "admin listener: %s", why);
        free(a);
        return NULL;
    }
    a->rl_ip = auth_ratelimit_new(ADMIN_RL_IP_BURST, ADMIN_RL_IP_REFILL_MS, AUTH_RL_ENTRIES);
    a->rl_user = auth_ratelimit_new(AUTH_RL_BURST, AUTH_RL_REFILL_MS, AUTH_RL_ENTRIES);
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    ev_async_init(&a->wake, on_wake);
    a->wake.data = a;
    ev_async_start(o->loop, &a->wake);
    if (has_page(a)) {
        a->have_worker = pthread_create(&a->worker, NULL, pw_worker, a) == 0;
        if (!a->have_worker)
            log_warn("admin: no thread for password checks: sign-ins answer 503");
    }
    if (o->control && control_add_commands(o->control, http_stats_commands, (void *)o->http))
        log_warn("admin: no room for the http.stats command (CONTROL_MAX_TABLES)");
    ev_io_init(&a->io, on_accept, a->fd, EV_READ);
    a->io.data = a;
    ev_io_start(o->loop, &a->io);
    log_info("admin: listening on %s (%s/metrics, /healthz, /readyz)", o->listen,
             has_page(a) ? "the status page at /, /api/, " : "");
    return a;
}

void admin_destroy(admin_t **ap)
{
    if (!ap || !*ap)
        return;
    admin_t *a = *ap;
    while (a->conns)
        conn_close(a->conns);
    pthread_mutex_lock(&a->mu);
    a->stopping = true;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    if (a->have_worker)
        pthread_join(a->worker, NULL);
    for (int l = 0; l < 2; l++) {
        struct pwjob *j = l ? a->done : a->todo;
        while (j) {
            struct pwjob *next = j->next;
            sodium_memzero(j, sizeof(*j));
            free(j);
            j = next;
        }
    }
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    ev_async_stop(a->o.loop, &a->wake);
    auth_ratelimit_destroy(&a->rl_ip);
    auth_ratelimit_destroy(&a->rl_user);
    ev_io_stop(a->o.loop, &a->io);
    close(a->fd);
    free(a);
    *ap = NULL;
}

void admin_get_stats(const admin_t *a, admin_stats_t *st)
{
    *st = a->st;
}
