/* seal: end-to-end sealing of one stream between its ingress PoP and the site.
 *
 * Why: a stream that enters at one PoP and reaches its site through relays (and the PoP that
 * holds the site's tunnel) crossed each of them in clear: every hop's secure channel
 * (secchan.h) was opened and sealed again at every PoP, so each could read the traffic and
 * paid two AEAD passes per byte for it. A sealed stream's payload is sealed once, by the
 * ingress PoP, for the site, and opened only there (and the other way); the PoPs between
 * forward the sealed records without a key (SPLIT records, secchan.h), so they can neither
 * read nor alter them, and spend no per-byte crypto. The site, not the egress PoP, is the far
 * end: it is the one place that must read the traffic anyway, it already holds a static key
 * every PoP knows, and a cloud PoP that carries an on-prem site's traffic then holds nothing of
 * it (docs/tunnel.md, "Sealed streams", has the whole argument).
 *
 * Keys. Each party has a static X25519 key (the same as its tunnel key). The ingress PoP also
 * has an ephemeral key it replaces every SEAL_EPOCH_S. For a site s:
 *
 *     K = BLAKE2b-256("popmesh seal v1" || DH(e_i, s_s) || DH(s_i, s_s) || e_i.pub || s_i.pub
 *                     || s_s.pub)
 *
 * DH(s_i, s_s) authenticates the ingress (only a holder of its static key, or of the site's,
 * computes K); DH(e_i, s_s) gives forward secrecy once the ephemeral key is dropped. K is
 * computed once per epoch and site at the ingress, and once per (ingress, ephemeral) at the
 * site. Each stream then draws a 16-byte salt, and its two keys are
 *
 *     up   = BLAKE2b-256(key K, "up"   || salt || bind)      ingress -> site
 *     down = BLAKE2b-256(key K, "down" || salt || bind)      site -> ingress
 *
 * where bind hashes what the site acts on (the resource, targets, client address: sitemsg's
 * sm_open_bind), so a relay that edits the OPEN (another target) only gets a stream whose
 * first record fails to open. Records are AEAD (AES-256-GCM when both ends have it, else
 * ChaCha20-Poly1305) with a 64-bit counter as nonce; a stream's keys seal at most 2^64 - 1
 * records, and a new stream has new keys.
 *
 * Sans-I/O, no globals; every function that reads peer bytes is bounds-checked. */
#ifndef POPMESH_TUNNEL_SEAL_H
#define POPMESH_TUNNEL_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <sodium.h>

#define SEAL_KEY_LEN  32
#define SEAL_SALT_LEN 16
#define SEAL_BIND_LEN 32
#define SEAL_TAG_LEN  16 /* bytes a record adds to its plaintext */
#define SEAL_EPOCH_S  600 /* s: how long an ingress keeps one ephemeral key */

/* Suites, as bits of a mask (1 << suite), the same numbers as secchan's. */
enum seal_suite {
    SEAL_SUITE_AES256GCM = 1,
    SEAL_SUITE_CHACHA20POLY1305 = 2,
};

/* The suites this machine can run, as a mask (0 if libsodium cannot initialise). */
uint8_t seal_local_suites(void);
/* The best suite of mask (AES-256-GCM first), or 0 if none. */
uint8_t seal_pick_suite(uint8_t mask);

/* K at the ingress: from its ephemeral and static secrets, their public halves, and the site's
 * public key. 0, or -EINVAL (a DH came out all zero: the site's key is of small order). */
int seal_path_ingress(uint8_t k[SEAL_KEY_LEN], const uint8_t e_sk[32], const uint8_t e_pk[32],
                      const uint8_t i_sk[32], const uint8_t i_pk[32], const uint8_t s_pk[32]);
/* K at the site: from its static key pair and the ingress's ephemeral and static public keys.
 * 0, or -EINVAL (a DH came out all zero). */
int seal_path_site(uint8_t k[SEAL_KEY_LEN], const uint8_t s_sk[32], const uint8_t s_pk[32],
                   const uint8_t e_pk[32], const uint8_t i_pk[32]);

/* One stream's keys: tx seals what this end sends, rx opens what it receives. */
typedef struct seal_keys {
    uint8_t suite; /* enum seal_suite */
    uint8_t tx[SEAL_KEY_LEN], rx[SEAL_KEY_LEN];
} seal_keys_t;
/* The keys of a stream from K, its salt and bind; ingress says which end this is. */
void seal_stream_keys(seal_keys_t *out, const uint8_t k[SEAL_KEY_LEN],
                      const uint8_t salt[SEAL_SALT_LEN], const uint8_t bind[SEAL_BIND_LEN],
                      uint8_t suite, bool ingress);

/* A stream's sealing state: keys expanded, record counters. Heap-allocated (the AES state
 * wants 16-byte alignment); wiped when freed. */
typedef struct seal_state seal_state_t;
/* NULL with errno: EINVAL (suite unknown or not available here), ENOMEM. */
seal_state_t *seal_state_new(const seal_keys_t *k);
void seal_state_free(seal_state_t **sp);
/* Seals len (1 or more) bytes from in into out (len + SEAL_TAG_LEN bytes; out may equal in).
 * 0, or -EPIPE (the counter is exhausted). */
int seal_record(seal_state_t *st, const uint8_t *in, size_t len, uint8_t *out);
/* Opens a record of len bytes in place: the plaintext is buf[0 .. len - SEAL_TAG_LEN).
 * 0, or -EBADMSG (too short, not authentic, out of order: the stream must be reset). */
int seal_open(seal_state_t *st, uint8_t *buf, size_t len);

#endif
