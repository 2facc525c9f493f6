/* rng: splitmix64, the one small deterministic PRNG of the protocol cores.
 *
 * Sans-I/O cores (swim, popsel) and the simulator need randomness they can replay: the caller
 * seeds the state (from libsodium in the daemons, from a test's seed elsewhere) and the core
 * draws from it. splitmix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
 * generators", 2014) passes BigCrush, needs 8 bytes of state and accepts any seed, zero
 * included. It is not a cryptographic generator: keys, nonces and tokens come from libsodium. */
#ifndef POPMESH_COMMON_RNG_H
#define POPMESH_COMMON_RNG_H

#include <stdint.h>

/* The next value of the sequence; advances *state. */
static inline uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A uniform value in [0, n) (n > 0), by Lemire's multiply-shift: bias below 2^-32 for the
 * small n the cores use (member counts, jitter in ms). */
static inline uint32_t rng_below(uint64_t *state, uint32_t n)
{
    return (uint32_t)(((rng_next(state) >> 32) * (uint64_t)n) >> 32);
}

#endif
