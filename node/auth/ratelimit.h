/* ratelimit: login attempts per client address and per user name, in memory, per PoP.
 *
 * One login costs an argon2id verification (node/auth/password.h), so password guessing is
 * bounded here, before the hash: token buckets keyed by strings ("ip:203.0.113.7",
 * "user:alice"), a bounded table that forgets the least recently used key. Both the address's
 * and the user's bucket must allow an attempt. */
#ifndef POPMESH_NODE_AUTH_RATELIMIT_H
#define POPMESH_NODE_AUTH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Login rate limiting defaults (auth_ratelimit_new). */
#define AUTH_RL_BURST     5     /* attempts */
#define AUTH_RL_REFILL_MS 10000 /* ms per attempt regained */
#define AUTH_RL_ENTRIES   4096  /* keys remembered; least recently used evicted */

typedef struct auth_ratelimit auth_ratelimit_t;

/* burst attempts, one regained every refill_ms, at most entries keys (least recently used
 * evicted). NULL with errno = EINVAL for a zero argument. Caller owns the result. */
auth_ratelimit_t *auth_ratelimit_new(unsigned burst, uint64_t refill_ms, size_t entries);
/* Accepts NULL or *rlp NULL; sets *rlp = NULL. */
void auth_ratelimit_destroy(auth_ratelimit_t **rlp);
/* Takes one attempt from key's bucket: true if there was one. now_ms: any clock that does not
 * go back (monotonic); a clock that goes back regains nothing. */
bool auth_ratelimit_allow(auth_ratelimit_t *rl, const char *key, uint64_t now_ms);
/* Keys remembered now. */
size_t auth_ratelimit_size(const auth_ratelimit_t *rl);

#endif
