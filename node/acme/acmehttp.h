/* acmehttp: the ACME client's HTTP, on a worker thread, so the event loop never waits for a
 * CA.
 *
 * One request at a time (an order is a sequence of steps, each depending on the last):
 * acmehttp_submit hands a job to the worker, which runs it with libcurl and hands the result
 * back on the loop through an ev_async (as node/http/httpproxy.c does with password hashing).
 * A signed POST is completed on the worker: it takes a nonce (the last Replay-Nonce, else a
 * HEAD of newNonce), signs (acmeproto.h), and on a badNonce error tries once more with the
 * nonce that error carried (RFC 8555 section 6.5). The nonce is the worker's alone. */
#ifndef POPMESH_NODE_ACME_ACMEHTTP_H
#define POPMESH_NODE_ACME_ACMEHTTP_H

#include "node/acme/acmeproto.h"

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACMEHTTP_TIMEOUT_S 30 /* one request, connect to last byte */
#define ACMEHTTP_BODY_MAX  (1 << 20)

typedef struct acmehttp acmehttp_t;

typedef struct acmehttp_job {
    bool post; /* a signed POST; else a plain GET (the directory) */
    char url[ACME_URL_MAX + 1];
    char *payload;              /* owned by the job; NULL = POST-as-GET */
    EVP_PKEY *key;              /* a reference taken by acmehttp_submit */
    char kid[ACME_URL_MAX + 1]; /* "" = sign with "jwk" (newAccount) */
    char new_nonce[ACME_URL_MAX + 1];
    char *ca_pem;  /* owned by the job; NULL = the system's roots */
    bool want_pem; /* Accept: application/pem-certificate-chain */
    /* A plain, unsigned POST of raw_len bytes with Content-Type raw_type, to an http:// or
     * https:// URL (an OCSP request, node/tls/ocspfetch.c); post and key are then unused. */
    uint8_t *raw; /* owned by the job; NULL = an ACME request */
    size_t raw_len;
    char raw_type[64];
} acmehttp_job_t;

typedef struct acmehttp_result {
    long status; /* HTTP status; 0 = no response (err says why) */
    char *body;  /* malloc'd, NUL-terminated (may hold NULs before) */
    size_t body_len;
    char location[ACME_URL_MAX + 1];
    char err[256]; /* transport failure, "" if a response came */
} acmehttp_result_t;

/* done runs on the loop with the result (borrowed for the call). NULL + errno on failure. */
acmehttp_t *acmehttp_new(struct ev_loop *loop, void (*done)(void *ctx, const acmehttp_result_t *r),
                         void *ctx);
/* Stops the worker (waiting for a request under way, at most ACMEHTTP_TIMEOUT_S). */
void acmehttp_destroy(acmehttp_t **hp);
/* Takes ownership of job->payload, job->ca_pem and job->raw (also on failure). 0, or -EBUSY while a
 * request is under way. */
int acmehttp_submit(acmehttp_t *h, acmehttp_job_t *job);
bool acmehttp_busy(const acmehttp_t *h);

#endif
