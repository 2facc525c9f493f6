/* ocspfetch: OCSP responses for the mesh's certificates, fetched by one PoP per certificate
 * and stapled at every PoP.
 *
 * WHO FETCHES. A rendezvous hash of the certificate id over the alive PoPs (the rank of
 * ticketkeys.h, with BLAKE2b-64 of the id in place of the period): every PoP computes the same
 * order from the registry and SWIM, with no record to write first. A lease (node/acme) earns
 * its keep when two writers would cost something (two orders, a CA's rate limit); two PoPs
 * asking a responder for the same certificate during a membership change cost one extra
 * request and store answers that are equally good, so the lease's write, expiry and takeover
 * buy nothing here. The first-ranked PoP asks when a response is due; the k-th only k
 * takeover delays later, so a PoP that is alive but cannot reach the responder does not leave
 * the certificate unstapled.
 *
 * WHEN. A certificate whose leaf names a responder (Authority Information Access, http:// or
 * https://) and whose chain holds its issuer: at once when no verified response for this leaf
 * is stored, then half-way through the stored response's thisUpdate .. nextUpdate window. A
 * failure (no answer, an HTTP error, a response that fails ocsp_check) is logged with its
 * reason and tried again after a backoff (OCSPFETCH_BACKOFF_MIN_MS doubling to
 * OCSPFETCH_BACKOFF_MAX_MS). A certificate without a responder is never fetched.
 *
 * WHAT IS STAPLED. A checked response (ocsprec.h: signed by the issuer or its delegate, about
 * this leaf, fresh) is written to ocsp/<cert id> whatever the status it gives. Every PoP, when
 * a cert/ or ocsp/ record arrives, checks the stored response again against the certificate
 * it serves and hands it to tlsctx only when it says good; tlsctx stops stapling at
 * nextUpdate. A revoked or unknown status is not stapled at all (and an earlier good one is
 * dropped at once), with a warning: tlsctx staples good answers only, and a client that
 * requires a staple then fails the handshake, which is what a revoked certificate deserves
 * (docs/tls.md).
 *
 * CLEANING. A certificate removed leaves its ocsp/ record; once that record is an hour past
 * its nextUpdate (never sooner: a fresh ocsp/ record may arrive before its cert/ record), the
 * first-ranked PoP of its id deletes it.
 *
 * The HTTP request runs on an acmehttp worker (node/acme/acmehttp.h), off the loop. */
#ifndef POPMESH_NODE_TLS_OCSPFETCH_H
#define POPMESH_NODE_TLS_OCSPFETCH_H

#include "node/membership/meshnode.h"
#include "node/tls/tlsctx.h"
#include "storage/store.h"

#include <ev.h>
#include <stdint.h>

#define OCSPFETCH_TICK_S          1.0
#define OCSPFETCH_TAKEOVER_MS     (10 * 60 * 1000ull) /* between two ranks' turns */
#define OCSPFETCH_BACKOFF_MIN_MS  (30 * 1000ull)
#define OCSPFETCH_BACKOFF_MAX_MS  (60 * 60 * 1000ull)

typedef struct ocspfetch ocspfetch_t;

typedef struct ocspfetch_opts {
    struct ev_loop *loop;
    store_t *store;    /* borrowed: cert/, ocsp/ and the registry are read and watched */
    meshnode_t *mesh;  /* borrowed; NULL (tests): every PoP of the registry is alive and
                        * writes are not spread */
    tlsctx_t *tls;     /* borrowed: fed the responses; must outlive this */
    const char *node_name;
    uint64_t self_id;
    uint64_t refresh_ms; /* 0 = half the window; tests: at most this long after a fetch, and
                          * the takeover delay, backoff and cleaning scale with it. With 0 the
                          * test knob POPMESH_TEST_OCSP_REFRESH_MS (>= 1000, logged) sets it. */
} ocspfetch_opts_t;

/* NULL with errno and a reason in err. */
ocspfetch_t *ocspfetch_new(const ocspfetch_opts_t *o, char *err, size_t errlen);
/* Stops the worker (a request under way is aborted). Accepts NULL. */
void ocspfetch_destroy(ocspfetch_t **fp);

typedef struct ocspfetch_stats {
    uint64_t fetched;  /* responses fetched and checked (any status) */
    uint64_t failed;   /* fetches that failed */
    uint64_t stapling; /* certificates handed a good response at the last sync */
    uint64_t refused;  /* stored responses refused by the check at a sync */
} ocspfetch_stats_t;
void ocspfetch_stats(const ocspfetch_t *f, ocspfetch_stats_t *out);

/* ---- the rule, pure (tests) ---- */
/* self's rank for cert id among pops (0 fetches first). */
unsigned ocspfetch_rank(uint64_t self, const uint64_t *pops, size_t n, const char *id);
/* When a PoP of rank rank asks: base_ms is the stored response's refresh point (ocsp_refresh_at,
 * or fetched_ms + refresh_ms if sooner), or when this PoP first saw the certificate without one;
 * each rank after the first waits takeover_ms more. */
uint64_t ocspfetch_due_ms(uint64_t base_ms, unsigned rank, uint64_t takeover_ms);

#endif
