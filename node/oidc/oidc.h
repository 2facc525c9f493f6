/* oidc: OpenID Connect sign-in at the HTTP ingress, on the loop (the protocol is oidcproto's,
 * the records idprec's).
 *
 * Two steps, each a job for one worker thread that owns libcurl and the caches (nothing on
 * the loop waits for a provider):
 *   start   /.popmesh/oidc/start?idp=NAME&rd=PATH: the provider's discovery document (cached
 *           an hour), a fresh state, nonce and PKCE verifier sealed into the state cookie, and
 *           the authorization URL to send the browser to.
 *   finish  /.popmesh/oidc/callback?code=..&state=..: the cookie opened (at any PoP: the key
 *           comes from the store key), its state compared with the query's, the code exchanged
 *           at the token endpoint (client_secret_basic, code_verifier), the ID token verified
 *           against the JWKS (cached an hour, fetched again at once for a kid it does not
 *           hold, at most every OIDC_JWKS_REFETCH_MS). Back on the loop: who may enter
 *           (oidcproto's oidc_admit), and the user record user/IDP:SUBJECT written (groups,
 *           email and display name from the token; created_ms and session_epoch kept).
 * The ingress then makes the same session cookie a password sign-in makes.
 *
 * Jobs belong to a connection: oidc_cancel when it closes first (its answer is then dropped). */
#ifndef POPMESH_NODE_OIDC_OIDC_H
#define POPMESH_NODE_OIDC_OIDC_H

#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "node/oidc/idprec.h"
#include "node/records/user.h"
#include "storage/store.h"

#include <ev.h>

#define OIDC_HTTP_TIMEOUT_S  10                  /* s per request to the provider */
#define OIDC_CACHE_MS        (3600ull * 1000)    /* ms discovery and JWKS are kept */
#define OIDC_JWKS_REFETCH_MS (10ull * 1000)      /* ms between fetches for an unknown kid */
#define OIDC_QUEUE_MAX       64                  /* jobs waiting for the worker */
#define OIDC_LOCATION_MAX    8192                /* bytes of an authorization URL */

typedef struct oidc oidc_t;
typedef struct oidc_job oidc_job_t;

typedef struct oidc_opts {
    struct ev_loop *loop;
    store_t *store;          /* borrowed */
    meshnode_t *mesh;        /* borrowed: writes idp/ and user/ records */
    const storeseal_t *seal; /* borrowed: opens client secrets; the state cookie key */
} oidc_opts_t;

typedef struct oidc_result {
    int status;                          /* 302 on success; else the page's status */
    const char *error;                   /* static: the page's message when status != 302 */
    char location[OIDC_LOCATION_MAX];    /* start: the provider; finish: the path to return to */
    char cookie[OIDC_COOKIE_MAX + 1];    /* start: the state cookie's value */
    auth_user_t user;                    /* finish: who signed in */
} oidc_result_t;

/* Called on the loop with the job's result (borrowed for the call); the job is gone after. */
typedef void (*oidc_done_fn)(void *ctx, const oidc_result_t *r);

/* NULL with a reason in err (the worker thread could not start). */
oidc_t *oidc_new(const oidc_opts_t *o, char *err, size_t errlen);
void oidc_destroy(oidc_t **op);
int oidc_register_commands(oidc_t *x, control_t *ctl);

/* The login page's "Sign in with NAME" links, one per provider, as HTML into out (cap bytes;
 * "" with no providers). rd is the path to return to (URL-encoded here). */
void oidc_login_links(oidc_t *x, const char *rd, char *out, size_t cap);

/* Starts a sign-in with provider idp; redirect_uri is this ingress's callback URL (scheme and
 * Host of the request). NULL with *why (static, fit for the page) when it cannot start. */
oidc_job_t *oidc_start(oidc_t *x, const char *idp, const char *rd, const char *redirect_uri,
                       oidc_done_fn done, void *ctx, const char **why);
/* Finishes one from the callback's query and the state cookie's value. NULL with *why. */
oidc_job_t *oidc_finish(oidc_t *x, const char *query, size_t qlen, const char *cookie,
                        size_t clen, oidc_done_fn done, void *ctx, const char **why);
/* The connection is gone: done will not be called. */
void oidc_cancel(oidc_job_t *j);

typedef struct oidc_stats {
    uint64_t started, signed_in, refused, failed; /* failed: the provider did not answer well */
    uint64_t discovery_fetches, jwks_fetches;
} oidc_stats_t;
oidc_stats_t oidc_get_stats(const oidc_t *x);

#endif
