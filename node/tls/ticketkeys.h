/* ticketkeys: mesh-wide TLS session-ticket keys, so a client that resumes at another PoP skips
 * the full handshake.
 *
 * Time is cut into periods (TICKETKEYS_PERIOD_MS by default). Each period E has one key, a
 * tlsticket/<E> record (certstore.h) sealed with the mesh-derived key. Keys are made ahead: one
 * period before E starts, the PoP that comes first for E in a rendezvous hash over the alive
 * PoPs writes a random key for E (others write one only if none has arrived half a period
 * later, so a dead writer never leaves a period without a key; two keys written for one period
 * resolve by last-writer-wins everywhere, and tickets sealed with the loser fall back to a full
 * handshake). New tickets are sealed with the key of the current period; tickets of the
 * previous period are still accepted (and renewed), older ones are not. Records older than two
 * periods are deleted.
 *
 * The ring of opened keys is rebuilt from the store's change feed; the OpenSSL callback
 * (tlsctx.c) reads it. */
#ifndef POPMESH_NODE_TLS_TICKETKEYS_H
#define POPMESH_NODE_TLS_TICKETKEYS_H

#include "node/membership/meshnode.h"
#include "node/tls/certstore.h"
#include "storage/store.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#define TICKETKEYS_PERIOD_MS (12ull * 3600 * 1000) /* 12 h */

typedef struct ticketkeys ticketkeys_t;

typedef struct ticketkey {
    uint8_t name[16];
    uint8_t aes[32];
    uint8_t hmac[32];
    uint64_t epoch;
} ticketkey_t;

typedef struct ticketkeys_opts {
    struct ev_loop *loop;
    store_t *store;
    meshnode_t *mesh;
    const certstore_seal_key_t *seal; /* borrowed */
    const char *node_name;
    uint64_t self_id;
    uint64_t period_ms; /* 0 = TICKETKEYS_PERIOD_MS (tests use seconds) */
} ticketkeys_opts_t;

ticketkeys_t *ticketkeys_new(const ticketkeys_opts_t *o, char *err, size_t errlen);
void ticketkeys_destroy(ticketkeys_t **tp);

/* The key to seal new tickets with: false if none is known yet (then issue no ticket). */
bool ticketkeys_current(const ticketkeys_t *t, ticketkey_t *out);
/* The key named name, if it may still decrypt (current or previous period). renew: set when it
 * is not the current key (OpenSSL then issues a fresh ticket). */
bool ticketkeys_find(const ticketkeys_t *t, const uint8_t name[16], ticketkey_t *out, bool *renew);

#endif
