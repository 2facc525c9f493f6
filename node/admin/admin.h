/* admin: the admin listener of a PoP (--admin-listen): /metrics, /healthz, /readyz, and the
 * status page (/, /login, /logout, /api/) for admins.
 *
 * HTTP/1.1 on its own address, never the public ingress (nodecfg refuses an admin address
 * equal to an ingress one). HTTPS on the same port: a connection that opens with a TLS
 * handshake gets the PoP's certificate for the name it asks (SNI, as the HTTPS ingress: an
 * unknown name gets an alert, never another host's certificate), so once the mesh holds a
 * certificate for the admin host name the page is reached over https:// and its cookie is
 * Secure; plain HTTP stays for scrapers and probes on the local network. One request per connection (Connection: close), read
 * with the ingress's bounded request parser (httpmsg.h); bounded in every way a client could
 * hold it: ADMIN_MAX_CONNS connections at once (past it: 503 and close), ADMIN_MAX_REQUEST
 * bytes of request head, ADMIN_TIMEOUT_S to send the request and then between two writes of
 * the answer.
 *
 *   GET /metrics  Prometheus text format 0.0.4 (adminmetrics.h), only to clients inside one of
 *                 the allowed networks (--metrics-allow; default 127.0.0.0/8 and ::1); others
 *                 get 403 with the reason.
 *   GET /healthz  200 "ok": the event loop answers.
 *   GET /readyz   200 "ready" when the ready callback says so, else 503 and its reasons, one
 *                 per line (what is checked is the daemon's business: docs/operations.md).
 * /healthz and /readyz answer any client that reaches the listener: load balancers and
 * orchestrators probe from their own addresses.
 *
 *   GET /         the status page (adminweb.h) to an admin; to a signed-in user who is not
 *                 one, 403 and a page saying so; without a session, the sign-in form.
 *   POST /login   username and password (a form of at most ADMIN_MAX_BODY bytes): the
 *                 ingress's password hashes and rate limits (per address and per user, as
 *                 HTTPPROXY_RL_* and AUTH_RL_*, kept per listener), checked on a worker thread;
 *                 an admin gets the session cookie ADMINWEB_COOKIE (HttpOnly, SameSite=Strict,
 *                 Path=/) and 303 to /; a user who is not an admin gets 403, no cookie.
 *   POST /logout  drops the cookie.
 *   GET /api/NAME the JSON `meshctl --json` prints for the same command (adminweb_apis), to
 *                 an admin session or `Authorization: Bearer <admin API key>`; 401 without
 *                 credentials (or with a bad key), 403 for a user or key that is not admin.
 * Forms posted from another site's page are refused (httphdr_cross_site). The page, the form
 * and /api/ need store, meshkey and control; without them only /metrics, /healthz and /readyz
 * are served. */
#ifndef POPMESH_NODE_ADMIN_ADMIN_H
#define POPMESH_NODE_ADMIN_ADMIN_H

#include "node/http/httpstats.h"
#include "node/records/cidr.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ADMIN_MAX_CONNS   16     /* concurrent admin connections */
#define ADMIN_MAX_REQUEST 8192   /* bytes of a request head */
#define ADMIN_MAX_HEADERS 64     /* header lines of a request */
#define ADMIN_MAX_BODY    1024   /* bytes of a request body (GETs have none) */
#define ADMIN_TIMEOUT_S   5.0    /* s to send the request; then s between two writes */
#define ADMIN_ALLOW_MAX   16     /* networks in the allow list */
#define ADMIN_REASONS_MAX 2048   /* bytes of /readyz's reasons */
#define ADMIN_PW_QUEUE    16     /* sign-ins being checked at once; past it: 503 */
#define ADMIN_RL_IP_BURST     30   /* sign-in attempts per client address (as the ingress) */
#define ADMIN_RL_IP_REFILL_MS 2000 /* ms per attempt regained, per address */

struct control;
struct store;
struct meshkey;
struct tlsctx;
typedef struct admin admin_t;

/* Fills reasons (len bytes: one reason per line, each ending in '\n') with what keeps the node
 * from being ready; returns true when ready (reasons then unused). */
typedef bool (*admin_ready_fn)(void *ctx, char *reasons, size_t len);

typedef struct admin_opts {
    struct ev_loop *loop;
    const char *listen;         /* "host:port" */
    const auth_cidr_t *allow;   /* networks that may read /metrics (copied); */
    size_t nallow;              /* 0 = 127.0.0.0/8 and ::1 */
    struct control *control;    /* borrowed: the commands metrics are read from */
    const httpstats_t *http;    /* borrowed: per-resource HTTP counters; NULL = none */
    admin_ready_fn ready;       /* NULL = always ready */
    void *ctx;                  /* for ready */
    struct store *store;        /* borrowed: users and API keys; NULL = no status page */
    const struct meshkey *meshkey; /* borrowed: signs and checks session cookies */
    const struct auth_keys *keys; /* borrowed: with the key hierarchy, signs and checks them
                                   * instead (node/auth/session.h); NULL = meshkey */
    struct tlsctx *tls;         /* borrowed: the PoP's certificates; NULL = plain HTTP only */
} admin_opts_t;

/* Binds the listener, and registers the command http.stats (the per-resource HTTP counters, for
 * the page's request rates and `meshctl http-stats`) on control. NULL with a reason in err.
 * Caller owns the result. */
admin_t *admin_new(const admin_opts_t *o, char *err, size_t errlen);
/* Closes the listener and every connection; accepts NULL; sets *ap = NULL. */
void admin_destroy(admin_t **ap);

typedef struct admin_stats {
    uint64_t requests;    /* requests answered (any path, any status) */
    uint64_t scrapes;     /* /metrics answered 200 */
    uint64_t forbidden;   /* /metrics refused: client not in the allow list */
    uint64_t bad;         /* requests refused by the parser or for their method or path */
    uint64_t refused_cap; /* connections refused: ADMIN_MAX_CONNS open */
    uint64_t timeouts;    /* connections closed by ADMIN_TIMEOUT_S */
    uint64_t pages;       /* status pages served */
    uint64_t api;         /* /api/ answers to an admin */
    uint64_t unauthenticated; /* page or /api/ refused: no valid credentials (401) */
    uint64_t forbidden_page;  /* page or /api/ refused: not an admin (403) */
    uint64_t logins;          /* admin sign-ins that made a session */
    uint64_t logins_failed;   /* sign-ins refused: wrong user or password, or no form */
    uint64_t logins_forbidden; /* sign-ins refused: the right password of a user not admin */
    uint64_t login_limited;   /* sign-ins refused by a rate limit (429) */
    uint64_t tls_handshakes;  /* HTTPS connections whose handshake completed */
    uint64_t tls_failed;      /* handshakes that failed (unknown name, garbage, gone) */
    unsigned conns;       /* open now */
} admin_stats_t;
void admin_get_stats(const admin_t *a, admin_stats_t *st);

#endif
