/* joinmsg: the three messages of the join handshake (docs/protocol.md, "Joining").
 *
 *   JOIN     [1, 48, name, region, addr, curve_pk: bin 32, sign_pk: bin 32, role]
 *   JOIN_OK  [1, 49, mesh_pk: bin 32, mesh_sk: bin 64 | nil, registry: [entry, ...]]
 *   JOIN_ERR [1, 50, code: str, message: str]
 *
 * Both ends decode what the other sent with these functions; everything is bounds-checked
 * and string fields are NUL-free and fit their buffers. */
#ifndef POPMESH_NODE_MEMBERSHIP_JOINMSG_H
#define POPMESH_NODE_MEMBERSHIP_JOINMSG_H

#include "node/membership/meshmsg.h"
#include "node/records/registry.h"
#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JOINMSG_MAX_ENTRIES 100000 /* registry entries in one JOIN_OK */

/* JOIN: the fields of a registry record the joiner proposes (id, joined_ms, removed unset). */
void joinmsg_pack_join(msgpack_packer *pk, const reg_node_t *n);
int joinmsg_decode_join(const uint8_t *buf, size_t len, reg_node_t *n, const char **why);

/* JOIN_OK; mesh_sk may be NULL (site joiners get none); entries is `count` entries already
 * packed back to back in the antientropy encoding. */
void joinmsg_pack_ok(msgpack_packer *pk, const uint8_t mesh_pk[32], const uint8_t *mesh_sk,
                     const void *entries, size_t entries_len, uint32_t count);
void joinmsg_pack_err(msgpack_packer *pk, const char *code, const char *message);

typedef struct joinmsg_reply {
    int type; /* MESH_MSG_JOIN_OK or MESH_MSG_JOIN_ERR */
    /* JOIN_OK */
    uint8_t mesh_pk[32];
    bool has_mesh_sk;
    uint8_t mesh_sk[64];
    store_entry_t *entries; /* caller frees (free()); keys/values point into the buffer */
    size_t nentries;
    /* JOIN_ERR (NUL-terminated copies) */
    char code[32];
    char message[300];
} joinmsg_reply_t;

/* Decodes JOIN_OK or JOIN_ERR. 0 or -EBADMSG with why. */
int joinmsg_decode_reply(const uint8_t *buf, size_t len, joinmsg_reply_t *r, const char **why);

#endif
