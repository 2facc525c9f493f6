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

/* NULL with errno and a reason in err. mesh may be NULL (tests): then every PoP of the
 * registry counts as alive and writes are not spread. With period_ms 0 the test knob
 * POPMESH_TEST_TICKET_PERIOD_MS (>= 1000, logged) replaces TICKETKEYS_PERIOD_MS. */
ticketkeys_t *ticketkeys_new(const ticketkeys_opts_t *o, char *err, size_t errlen);
void ticketkeys_destroy(ticketkeys_t **tp);

/* The key to seal new tickets with: false if none is known yet (then issue no ticket). */
bool ticketkeys_current(const ticketkeys_t *t, ticketkey_t *out);
/* The key named name, if it may still decrypt (current or previous period, or the next one,
 * which a PoP whose clock runs a little ahead may already use). renew: set when it is the
 * previous period's key (OpenSSL then issues a fresh ticket). */
bool ticketkeys_find(const ticketkeys_t *t, const uint8_t name[16], ticketkey_t *out, bool *renew);

/* For tls.status: {period_ms, epoch, current: name hex | nil, keys: [{epoch, name, created_by,
 * created_ms}], written, fallbacks, deleted, unreadable}. Names only, never a key. */
void ticketkeys_pack_status(const ticketkeys_t *t, msgpack_packer *pk);

/* ---- the rule, pure (tests) ---- */
/* The rendezvous score of a PoP for a period: BLAKE2b-64 of (id, epoch), big-endian. */
uint64_t ticketkeys_score(uint64_t node_id, uint64_t epoch);
/* self's rank for epoch among pops (self counts even when it is not in the list; duplicates
 * count once): 0 is the writer, k > 0 the k-th fallback. */
unsigned ticketkeys_rank(uint64_t self, const uint64_t *pops, size_t n, uint64_t epoch);
/* When the PoP of rank rank writes the key of epoch if none has arrived: ms since the epoch.
 * noticed_ms: when this PoP first saw it missing (a fallback leaves the writer that long). */
uint64_t ticketkeys_due_ms(uint64_t epoch, unsigned rank, uint64_t period_ms, uint64_t noticed_ms);

#endif
