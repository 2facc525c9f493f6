/* idjwt: the identity an application can verify: X-Popmesh-Identity, a short-lived JWT.
 *
 * Every request the HTTP ingress authenticated for a user reaches the application with the
 * user's name, groups and email in Remote-* headers and, signed, in a JWT (RFC 7519, JWS
 * compact, alg EdDSA over Ed25519, RFC 8037):
 *
 *   header  {"alg":"EdDSA","typ":"JWT","kid":"<node id: 16 hex>"}
 *   payload {"iss":"popmesh:<mesh id: 32 hex>","sub":USER,"user":USER,"groups":[...],
 *            ["email":...,] "name":NAME,"aud":RESOURCE,"pop":POP NAME,"iat":S,"exp":S+60}
 *
 * The headers are only as good as the network between the site and the application; the JWT
 * is not: an application that checks it against /.popmesh/jwks.json (docs/http.md) knows the
 * mesh said so, for this resource (aud), within the last minute.
 *
 * KEYS. Each PoP signs with its own Ed25519 key, DIR/identity-jwt.key (0600, made on the first
 * start), apart from the mesh key: a JWT must not be something that could pass for a session
 * or a join token, and one PoP's key can be dropped alone. Its public half is the replicated
 * record jwk/<node id> (jwkrec.h); every PoP's /.popmesh/jwks.json lists the keys of the
 * registered, not removed PoPs, so a token signed at one PoP verifies with the set fetched
 * from any other, and a removed PoP's key is gone from every set once the removal replicated.
 * (These keys will be certified by the mesh's root key once node certificates exist; for now
 * the registry's say-so is the trust.)
 *
 * COST. An Ed25519 signature costs ~25 us; a token is cached per (claims, resource) and reused
 * while it has more than half its life left, so a busy user's requests sign about once every
 * 30 s. */
#ifndef POPMESH_NODE_AUTH_IDJWT_H
#define POPMESH_NODE_AUTH_IDJWT_H

#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDJWT_KEY_FILE   "identity-jwt.key"
#define IDJWT_TTL_S      60   /* s a token is valid */
#define IDJWT_MAX        4096 /* bytes of a token (16 groups of 63 bytes fit with room) */
#define IDJWT_CACHE      1024 /* cached tokens (slots) */
#define IDJWT_JWK_PREFIX "jwk/"

typedef struct idjwt_key {
    uint8_t pk[32];
    uint8_t sk[64];
} idjwt_key_t;

/* Loads DIR/identity-jwt.key, or makes it (0600) when there is none; *created says which. A
 * file others may read or that does not parse is refused. 0 or -errno with err. */
int idjwt_key_load_or_create(const char *dir, idjwt_key_t *k, bool *created, char *err,
                             size_t errlen);

/* The jwk/<node id> record: {kid: str (16 hex), pk: bin 32, created_ms: uint}. */
void idjwt_jwk_key(uint64_t node_id, char out[24]);
void idjwt_jwk_pack(msgpack_packer *pk, uint64_t node_id, const uint8_t pub[32],
                    uint64_t created_ms);
/* 0 or -EBADMSG with *why; the kid must be the id in the record's key. */
int idjwt_jwk_parse(const uint8_t *buf, size_t len, uint64_t node_id, uint8_t pub[32],
                    const char **why);

/* The JWKS document of every jwk/ record whose node is registered and not removed, into a
 * malloc'd string (caller frees). 0 or -errno from the store. */
int idjwt_jwks(store_t *store, char **out, size_t *len);

typedef struct idjwt idjwt_t;

/* A signer for this PoP: key copied; iss = "popmesh:<mesh id>", pop = this PoP's name. NULL
 * with errno on bad arguments. */
idjwt_t *idjwt_new(const idjwt_key_t *k, uint64_t node_id, const char *mesh_id_hex,
                   const char *pop_name);
void idjwt_destroy(idjwt_t **jp);

typedef struct idjwt_claims {
    const char *user;
    const char *const *groups;
    unsigned ngroups;
    const char *email;    /* NULL or "" = none */
    const char *name;     /* display name; NULL or "" = the user */
    const char *resource; /* aud */
} idjwt_claims_t;

/* A token for c at now_s (Unix s), from the cache when one has more than half its life left.
 * *tok is borrowed until the next call. 0 or -ENOSPC (the claims do not fit IDJWT_MAX). */
int idjwt_token(idjwt_t *j, const idjwt_claims_t *c, uint64_t now_s, const char **tok, size_t *len);

/* Appends s to out (cap bytes, *o used) as a JSON string with quotes; false when it does not
 * fit. Bytes >= 0x80 are copied as they are (UTF-8 from the records). */
bool idjwt_json_str(char *out, size_t cap, size_t *o, const char *s);

#endif
