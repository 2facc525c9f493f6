/* ratelimit: login attempts per client address and per user name, in memory, per PoP.
 *
 * One login costs an argon2id verification (node/auth/password.h), so password guessing is
 * bounded here, before the hash: token buckets keyed by strings ("ip:203.0.113.7",
 * "user:alice"), a bounded table that forgets the least recently used key. Both the address's
 * and the user's bucket must allow an attempt.
 *
 * Across the mesh: attempts admitted at other PoPs are charged to the same buckets
 * (auth_ratelimit_charge, fed by node/auth/loginshare.h), which is why a bucket may go below
 * empty, into debt, and why the key's hash can be made the same at every PoP
 * (auth_ratelimit_set_hash_key): it is the key's name on the wire. */
#ifndef POPMESH_NODE_AUTH_RATELIMIT_H
#define POPMESH_NODE_AUTH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Login rate limiting defaults (auth_ratelimit_new). */
#define AUTH_RL_BURST     5     /* attempts */
#define AUTH_RL_REFILL_MS 10000 /* ms per attempt regained */
#define AUTH_RL_ENTRIES   4096  /* keys remembered; least recently used evicted */
/* Debt a bucket may run into from attempts charged by other PoPs, in full bursts: a key is held
 * back at most (1 + AUTH_RL_DEBT_BURSTS) * burst * refill_ms after the last attempt anywhere,
 * whatever a peer reports; debt past it is forgiven (docs/security.md says what that costs). */
#define AUTH_RL_DEBT_BURSTS 16

typedef struct auth_ratelimit auth_ratelimit_t;

/* burst attempts, one regained every refill_ms, at most entries keys (least recently used
 * evicted). NULL with errno = EINVAL for a zero argument, or one so large that the debt
 * (AUTH_RL_DEBT_BURSTS) would overflow. Caller owns the result. Keys are hashed with a random
 * key until auth_ratelimit_set_hash_key. */
auth_ratelimit_t *auth_ratelimit_new(unsigned burst, uint64_t refill_ms, size_t entries);
/* Accepts NULL or *rlp NULL; sets *rlp = NULL. */
void auth_ratelimit_destroy(auth_ratelimit_t **rlp);
/* Takes one attempt from key's bucket: true if there was one. now_ms: any clock that does not
 * go back (monotonic); a clock that goes back regains nothing. */
bool auth_ratelimit_allow(auth_ratelimit_t *rl, const char *key, uint64_t now_ms);
/* Hashes keys with `key` (a secret shared by the PoPs of one mesh) instead of the random one,
 * so a key's hash names it at every PoP. Forgets every key remembered so far (their hashes
 * change). */
#define AUTH_RL_HASH_KEY_BYTES 16
void auth_ratelimit_set_hash_key(auth_ratelimit_t *rl, const uint8_t key[AUTH_RL_HASH_KEY_BYTES]);
/* The hash that names key in this table (keyed SipHash-2-4). */
uint64_t auth_ratelimit_hash(const auth_ratelimit_t *rl, const char *key);
/* auth_ratelimit_allow for a key already hashed. */
bool auth_ratelimit_take(auth_ratelimit_t *rl, uint64_t h, uint64_t now_ms);
/* Charges n attempts admitted elsewhere to h's bucket (a fresh one if h is not remembered),
 * which may run into debt down to AUTH_RL_DEBT_BURSTS full buckets. */
void auth_ratelimit_charge(auth_ratelimit_t *rl, uint64_t h, uint64_t n, uint64_t now_ms);
/* Attempts h's bucket holds now: negative in debt; burst for a key not remembered. */
int64_t auth_ratelimit_level(auth_ratelimit_t *rl, uint64_t h, uint64_t now_ms);
/* Keys remembered now. */
size_t auth_ratelimit_size(const auth_ratelimit_t *rl);

#endif
