/* acmechal: HTTP-01 answers at every PoP (RFC 8555 section 8.3).
 *
 * The PoP that works on an order writes acmechal/<token> (node/acme/acmerec.h); the record
 * spreads to every PoP, and whichever one the CA reaches answers
 * GET /.well-known/acme-challenge/<token> with the key authorization, on any Host, before
 * routing and authentication (the CA has no session and the host may have no resource at
 * this path). The HTTP ingress calls acmechal_answer on each request head; a lookup is one
 * store read, and only for targets under the challenge path. */
#ifndef POPMESH_NODE_ACME_ACMECHAL_H
#define POPMESH_NODE_ACME_ACMECHAL_H

#include "storage/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ACMECHAL_PATH "/.well-known/acme-challenge/"

/* The key authorization of token (tlen bytes) into buf, if a live record holds it (not
 * expired at now_ms, readable). */
bool acmechal_lookup(store_t *store, const char *token, size_t tlen, uint64_t now_ms, char *buf,
                     size_t len);

/* For a request target (len bytes): 0 when it is not under ACMECHAL_PATH (route it as usual);
 * 1 with the key authorization in buf; -1 when it is, but there is nothing to answer (404). */
int acmechal_answer(store_t *store, const char *target, size_t len, uint64_t now_ms, char *buf,
                    size_t buflen);

#endif
