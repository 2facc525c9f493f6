/* token: bootstrap tokens, the one copy-pasteable string that lets a new node join the mesh.
 *
 *   pmt1.<base64url(body)>            body = payload || Ed25519 signature (64 bytes)
 *   payload = msgpack [TOKEN_FORMAT, mesh_pk: bin 32, role: str, expires_ms: uint,
 *                      secret: bin 32, seeds: [[addr: str, curve_pk: bin 32], ...]]
 *
 * The signature is made with the mesh's signing key, whose public half (mesh_pk) travels in the
 * token; the mesh id is a hash of mesh_pk. So a token is self-certifying: any change to any
 * byte (a bad copy-paste, an edited expiry) fails verification before anything goes on the
 * network, and a token can only point at the seeds and mesh its signer chose.
 *
 * The secret never leaves the joiner. Both sides derive from it a Curve25519 keypair, the
 * "join key": the joiner uses it as its CURVE client key on the join connection, and the mesh
 * stores only its public half (in token/<id>, replicated). The ZAP handler admits a join key
 * only if such a token record exists, so holding the secret is proven by the CURVE handshake
 * itself, and a copy of the replicated store is not enough to join. The token id is derived
 * from the join public key, so the ZAP handler finds the record in one lookup. */
#ifndef POPMESH_NODE_RECORDS_TOKEN_H
#define POPMESH_NODE_RECORDS_TOKEN_H

#include "node/records/registry.h"

#include <stddef.h>
#include <stdint.h>

#define TOKEN_FORMAT    1
#define TOKEN_PREFIX    "pmt1."
#define TOKEN_MAX_SEEDS 8
#define TOKEN_ADDR_MAX  255  /* bytes of one seed address */
#define TOKEN_TEXT_MAX  2048 /* characters of an encoded token */

typedef struct token_seed {
    char addr[TOKEN_ADDR_MAX + 1]; /* "host:port" of the seed's mesh ROUTER */
    uint8_t curve_pk[32];          /* the seed's CURVE server key */
} token_seed_t;

typedef struct token {
    uint8_t mesh_pk[32]; /* Ed25519 public key of the mesh */
    enum node_role role; /* on the wire: "pop" or "site" */
    uint64_t expires_ms; /* Unix ms */
    uint8_t secret[32];
    token_seed_t seeds[TOKEN_MAX_SEEDS];
    unsigned nseeds;
    char site[64]; /* site tokens: the site's name (optional 7th field); "" otherwise */
} token_t;

/* Derived, public values. */
typedef struct token_public {
    uint8_t join_pk[32]; /* Curve25519 public join key */
    uint64_t id;         /* first 8 bytes of BLAKE2b(join_pk) */
    uint8_t mesh_id[16]; /* BLAKE2b-128(mesh_pk) */
} token_public_t;

/* Encodes and signs with the mesh secret key (64-byte libsodium Ed25519 sk). out must hold
 * TOKEN_TEXT_MAX + 1 bytes. 0 or -EINVAL (bad field) / -E2BIG. */
int token_encode(const token_t *t, const uint8_t mesh_sk[64], char *out, size_t outlen);

/* Decodes and verifies. 0, or -EINVAL with a specific reason in why (static string):
 * "not a popmesh token", "truncated", "tampered (signature does not verify)", ... */
int token_decode(const char *text, size_t len, token_t *t, const char **why);

/* The join keypair from the secret (sk is secret). */
void token_join_keypair(const uint8_t secret[32], uint8_t pk[32], uint8_t sk[32]);
void token_public(const token_t *t, token_public_t *pub);
/* id from a join public key (what the ZAP handler has). */
uint64_t token_id_of(const uint8_t join_pk[32]);
/* mesh id (16 bytes) from the mesh public key; hex form is 32 characters. */
void token_mesh_id(const uint8_t mesh_pk[32], uint8_t out[16]);

#endif
