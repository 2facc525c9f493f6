/* registry: the replicated member and token records, as stored in the store.
 *
 *   node/<id:16 hex>                 {name, region, addr, curve_pk, sign_pk, role, joined_ms,
 *                                     removed}
 *   token/<id:16 hex>                {role, expires_ms, uses_max, created_ms, created_by,
 *                                     join_pk, revoked}
 *   tokenuse/<token id>/<node id>    {name, at_ms}
 *
 * Values are msgpack maps with string keys, so fields can be added later; decoders skip
 * fields they do not know and refuse records missing a field they need. Records come from
 * other nodes through replication, so they are decoded as untrusted input. A node's record
 * is never deleted: removal sets removed=true, so every PoP keeps refusing its key even after
 * tombstones are collected. */
#ifndef POPMESH_NODE_REGISTRY_H
#define POPMESH_NODE_REGISTRY_H

#include "node/nodecfg.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REG_NODE_PREFIX     "node/"
#define REG_TOKEN_PREFIX    "token/"
#define REG_TOKENUSE_PREFIX "tokenuse/"
#define REG_ROLE_MAX        15

typedef struct reg_node {
    uint64_t id;
    char name[NODECFG_NAME_MAX + 1];
    char region[NODECFG_NAME_MAX + 1];
    char addr[NODECFG_ADDR_MAX + 1];
    uint8_t curve_pk[32];
    uint8_t sign_pk[32];
    char role[REG_ROLE_MAX + 1]; /* "pop" or "site" */
    uint64_t joined_ms;
    bool removed;
} reg_node_t;

typedef struct reg_token {
    uint64_t id;
    char role[REG_ROLE_MAX + 1];
    uint64_t expires_ms;
    uint64_t uses_max; /* 0 = unlimited */
    uint64_t created_ms;
    char created_by[NODECFG_NAME_MAX + 1];
    uint8_t join_pk[32];
    bool revoked;
} reg_token_t;

/* Keys. out must hold at least 64 bytes. */
void reg_node_key(uint64_t id, char *out, size_t len);
void reg_token_key(uint64_t id, char *out, size_t len);
void reg_tokenuse_key(uint64_t token_id, uint64_t node_id, char *out, size_t len);

void reg_node_pack(msgpack_packer *pk, const reg_node_t *n);
/* Decodes a node record; id comes from the key. 0 or -EBADMSG (with why). Also checks that
 * the key's id is the id of curve_pk, so a record cannot bind a key to another node's id. */
int reg_node_parse(const uint8_t *buf, size_t len, uint64_t id, reg_node_t *n, const char **why);
/* Parses the id out of "node/<16 hex>"; 0 or -EINVAL. */
int reg_node_key_id(const char *key, size_t klen, uint64_t *id);

void reg_token_pack(msgpack_packer *pk, const reg_token_t *t);
int reg_token_parse(const uint8_t *buf, size_t len, uint64_t id, reg_token_t *t, const char **why);

void reg_tokenuse_pack(msgpack_packer *pk, const char *name, uint64_t at_ms);

#endif
