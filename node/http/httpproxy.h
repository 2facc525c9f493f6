/* httpproxy: the PoP's HTTP/1.1 ingress: an identity-aware reverse proxy.
 *
 * A request is routed by its Host and path to an HTTP resource (resource_match_http), checked
 * against the resource's rules and, for `auth login`, a session cookie or an API key, all
 * decided here from the replicated store (node/auth/auth.h); then it goes through the data plane
 * (dataplane_open_stream) to the site, which connects to a target. One stream serves the
 * client connection's requests to one resource in turn (keep-alive on both sides). Bodies
 * are streamed, chunked bodies re-chunked; the response is relayed as it comes.
 *
 * /.popmesh/login (GET form, POST username/password and, for a user with a second factor, a
 * TOTP or recovery code: node/auth/totp.h), /.popmesh/logout, /.popmesh/share?t=TOKEN and
 * /.popmesh/jwks.json (the keys that verify X-Popmesh-Identity: node/auth/idjwt.h) are served
 * by the PoP itself on every host.
 *
 * HTTPS: a second listener, where each connection first completes a TLS handshake (tlsctx.h;
 * bounded by the handshake timeout and the same connection caps, which both listeners share)
 * and then speaks exactly the same HTTP. Under TLS the session cookie is Secure, the
 * application gets X-Forwarded-Proto https, a Host the connection's certificate does not cover
 * gets 421 (a client must not reuse a connection for another name), and a resource with hsts
 * gets Strict-Transport-Security. Over plain HTTP, a request for a resource whose host a
 * certificate covers is redirected (308) to HTTPS, unless the resource says no_https_redirect
 * or the path is an ACME HTTP-01 challenge (/.well-known/acme-challenge/: CAs fetch those over
 * plain HTTP). */
#ifndef POPMESH_NODE_HTTP_HTTPPROXY_H
#define POPMESH_NODE_HTTP_HTTPPROXY_H

#include "node/auth/session.h"
#include "node/dataplane/dataplane.h"
#include "node/http/httpstats.h"
#include "node/membership/meshnode.h"
#include "node/oidc/oidc.h"
#include "node/auth/idjwt.h"
#include "node/records/identity.h"
#include "node/records/storeseal.h"
#include "node/nodecfg.h"
#include "node/tls/tlsctx.h"
#include "storage/store.h"

#include <ev.h>

/* Timeouts of a client connection. Each is a bound on how long one unauthenticated client
 * can hold a connection, its buffers and an upstream stream while doing nothing: they are
 * measured from the last byte moved (either way) unless said otherwise. One ev_timer per
 * connection, re-armed lazily (bytes only stamp the time). */
#define HTTPPROXY_HEADER_TIMEOUT_S   10.0 /* s to send a complete request head, from its 1st byte */
#define HTTPPROXY_IDLE_TIMEOUT_S     60.0 /* s a keep-alive connection may stay idle */
#define HTTPPROXY_BODY_TIMEOUT_S     30.0 /* s without a request body byte: 408 (or close) */
#define HTTPPROXY_RESPONSE_TIMEOUT_S 60.0 /* s from the request's end to the response head: 504 */
#define HTTPPROXY_RESP_IDLE_S        60.0 /* s without a byte either way once the response began */
#define HTTPPROXY_WS_IDLE_S          600.0      /* s without a byte either way on a WebSocket */
#define HTTPPROXY_CLOSING_TIMEOUT_S  10.0       /* s a client may take to read our last answer */
#define HTTPPROXY_LINGER_S           2.0        /* s we read and discard after answering and FIN */
#define HTTPPROXY_LINGER_MAX         (1u << 20) /* bytes discarded at most in that time */
/* Connection caps. The overall cap defaults to half the process's RLIMIT_NOFILE (read after
 * popd raised it to the hard limit), leaving the other half for tunnels, the store and the
 * site side of streams; past it, and past the per-address cap, a connection is accepted, sent
 * a minimal 503 and closed at once (never left in the backlog), counted and logged at most
 * once a second. IPv6 clients are counted by /64: one host usually holds a whole /64. */
#define HTTPPROXY_MAX_CONNS_MIN  64  /* floor of the overall cap, whatever the fd limit */
#define HTTPPROXY_MAX_PER_IP     256 /* concurrent connections per client IPv4 address or /64 */
#define HTTPPROXY_SESSION_TTL_MS (12ull * 3600 * 1000)
#define HTTPPROXY_ACME_PREFIX    "/.well-known/acme-challenge/" /* never redirected */
#define HTTPPROXY_COOKIE         "popmesh_session"
/* Login attempts: per user AUTH_RL_BURST then one per AUTH_RL_REFILL_MS (node/auth/auth.h); per
 * client address more, since an office behind one NAT address shares it. */
#define HTTPPROXY_RL_IP_BURST     30
#define HTTPPROXY_RL_IP_REFILL_MS 2000
#define HTTPPROXY_PW_WORKERS      2    /* threads checking passwords (argon2id) */
#define HTTPPROXY_PW_QUEUE        64   /* checks waiting; past it logins get 503 */
#define HTTPPROXY_SESSION_CACHE   4096 /* verified session cookies remembered (slots) */
/* ms a cached cookie's user record is trusted: a revoked session is refused at most this long
 * after the revocation reached the PoP. */
#define HTTPPROXY_USER_RECHECK_MS 1000

typedef struct httpproxy httpproxy_t;

typedef struct httpproxy_opts {
    struct ev_loop *loop;
    store_t *store;           /* borrowed */
    const char *listen;       /* "host:port" of plain HTTP; NULL or "" = none */
    const char *https_listen; /* "host:port" of HTTPS; NULL or "" = none (needs tls) */
    tlsctx_t *tls;            /* borrowed: the certificates (tlsctx.h); NULL = no HTTPS */
    const meshkey_t *meshkey; /* borrowed: signs sessions when keys is NULL; login hashes */
    const auth_keys_t *keys;  /* borrowed: signs and checks sessions and share links (the key
                               * hierarchy: node/auth/session.h); NULL = the mesh key alone */
    dataplane_t *dp;          /* borrowed */
    meshnode_t *mesh;         /* borrowed: shares login attempt counts (NULL = this PoP alone) */
    uint64_t self_id;         /* this PoP's node id (names its login attempt counts) */
    uint64_t max_body;        /* bytes of one request body; past it 413 (0 = no limit) */
    httpstats_t *stats;       /* borrowed: per-resource counters (/metrics); NULL = none */
    accesslog_t *alog;        /* borrowed: one line per request (its resource's sampling);
                               * NULL = off */
    const char *node_name;    /* borrowed: this PoP's name, for the access log */
    const storeseal_t *seal;  /* borrowed: opens users' TOTP secrets (totprec.h); NULL = a user
                               * with a second factor cannot sign in here */
    idjwt_t *idjwt;           /* borrowed: signs X-Popmesh-Identity (idjwt.h); NULL = not sent */
    oidc_t *oidc;             /* borrowed: sign-in with OpenID providers; NULL = none */
} httpproxy_opts_t;

/* Test knobs, read once by httpproxy_new from the environment; for tests only (docs/http.md):
 *   POPMESH_TEST_HTTP_PER_IP=N         per-address cap instead of HTTPPROXY_MAX_PER_IP
 *   POPMESH_TEST_HTTP_MAX_CONNS=N      overall cap instead of half RLIMIT_NOFILE
 *   POPMESH_TEST_HTTP_TIMEOUT_SCALE=F  every timeout above multiplied by F (0 < F <= 1)
 *   POPMESH_TEST_TLS_HANDSHAKE_MS=N    the TLS handshake timeout (TLSCTX_HANDSHAKE_TIMEOUT_S)
 *   POPMESH_TEST_NO_IDENTITY_JWT=1     no X-Popmesh-Identity (what it costs: bench_identity) */

/* Binds the listeners (at least one); NULL with a reason in err. */
httpproxy_t *httpproxy_new(const httpproxy_opts_t *o, char *err, size_t errlen);
void httpproxy_destroy(httpproxy_t **pp);

/* One key/value pair of `status`: "http" -> a map of the proxy's counters (connections now,
 * refused by each cap, requests, timeouts by kind). */
#define HTTPPROXY_STATUS_PAIRS 1
void httpproxy_pack_status(httpproxy_t *px, msgpack_packer *pk);

/* A meshnode health source (meshnode_add_health_source; ctx is the httpproxy_t *): adds each
 * listener (HTTP, HTTPS) to h->listeners, and to h->listeners_up while it accepts. One does
 * not while accept() backs off after failing for lack of descriptors or memory (EMFILE,
 * ENFILE, ENOBUFS, ENOMEM): the listener then sleeps HTTPPROXY_ACCEPT_RETRY_S rather than spin
 * on a socket that stays readable, and a client waits in the backlog meanwhile. */
#define HTTPPROXY_ACCEPT_RETRY_S 0.1 /* s between accept attempts after such a failure */
void httpproxy_health(void *ctx, meshnode_health_t *h);

#endif
