/* joinmsg: the three messages of the join handshake (docs/protocol.md, "Joining"), and the
 * two a seed and the join arbiter exchange about one.
 *
 *   JOIN     [1, 48, name, region, addr, curve_pk: bin 32, sign_pk: bin 32, role]
 *   JOIN_OK  [1, 49, mesh_pk: bin 32, mesh_sk: bin 64 | nil, registry: [entry, ...]
 *             (, store_key: [id: uint 1..255, key: bin 32])]
 *   JOIN_ERR [1, 50, code: str, message: str]
 *
 *   FORWARD  [1, 51, seq, token_id, token: entry, join: bin]            seed -> arbiter
 *   VERDICT  [1, 52, seq, code: str, message: str, node: entry | nil]   arbiter -> seed
 *
 * FORWARD hands the joiner's JOIN, byte for byte, to the PoP that decides every join
 * (meshjoin.c), with the seed's copy of the token's record (the arbiter may not have received
 * it yet). VERDICT answers it: code "" admits, and node is the joiner's registry record as
 * the arbiter wrote it; any other code refuses, with a message for the joiner. seq pairs them.
 *
 * Both ends decode what the other sent with these functions; everything is bounds-checked
 * and string fields are NUL-free and fit their buffers. FORWARD and VERDICT come only from
 * members (ZAP: "n:"), but are decoded as strictly as anything else. */
#ifndef POPMESH_NODE_MEMBERSHIP_JOINMSG_H
#define POPMESH_NODE_MEMBERSHIP_JOINMSG_H

#include "node/membership/meshmsg.h"
#include "node/records/identity.h"
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
 * packed back to back in the antientropy encoding. store_key (may be NULL) adds the sixth
 * element: given to PoPs only, and left out for sites, so that a connector of a version
 * before it (which refuses a JOIN_OK of 6) still joins. Like mesh_sk, it travels inside the
 * CURVE-encrypted connection the joiner opened with the token's join key. */
void joinmsg_pack_ok(msgpack_packer *pk, const uint8_t mesh_pk[32], const uint8_t *mesh_sk,
                     const void *entries, size_t entries_len, uint32_t count,
                     const storekey_t *store_key);
void joinmsg_pack_err(msgpack_packer *pk, const char *code, const char *message);

typedef struct joinmsg_reply {
    int type; /* MESH_MSG_JOIN_OK or MESH_MSG_JOIN_ERR */
    /* JOIN_OK */
    uint8_t mesh_pk[32];
    bool has_mesh_sk;
    uint8_t mesh_sk[64];
    bool has_store_key; /* a seed of a version before store keys sends none */
    storekey_t store_key;
    store_entry_t *entries; /* caller frees (free()); keys/values point into the buffer */
    size_t nentries;
    /* JOIN_ERR (NUL-terminated copies) */
    char code[32];
    char message[300];
} joinmsg_reply_t;

/* Decodes JOIN_OK or JOIN_ERR. 0 or -EBADMSG with why. */
int joinmsg_decode_reply(const uint8_t *buf, size_t len, joinmsg_reply_t *r, const char **why);

#define JOINMSG_CODE_MAX    31  /* bytes of a refusal's code ("used-up", "arbiter-down", ...) */
#define JOINMSG_MESSAGE_MAX 299 /* bytes of a refusal's message kept; longer ones are cut */

typedef struct joinmsg_forward {
    uint64_t seq;
    uint64_t token_id;
    store_entry_t token; /* token/<token_id>; borrowed from the buffer */
    const uint8_t *join; /* the JOIN message; borrowed from the buffer */
    size_t join_len;
    bool relayed; /* sent on by a PoP for a seed that cannot reach the arbiter: not again */
} joinmsg_forward_t;

/* FORWARD; token is the seed's token/<token_id> entry. relayed: written as a 7th field
 * (true) only when set, so a FORWARD is what it was before relaying existed. */
void joinmsg_pack_forward(msgpack_packer *pk, uint64_t seq, uint64_t token_id,
                          const store_entry_t *token, const uint8_t *join, size_t join_len,
                          bool relayed);
/* 0 or -EBADMSG with why; also refuses a token entry that is not token/<token_id>, or a
 * tombstone. */
int joinmsg_decode_forward(const uint8_t *buf, size_t len, joinmsg_forward_t *f,
                           const char **why);

typedef struct joinmsg_verdict {
    uint64_t seq;
    char code[JOINMSG_CODE_MAX + 1];       /* "" = admitted; no control characters */
    char message[JOINMSG_MESSAGE_MAX + 1]; /* no control characters */
    bool has_node;
    store_entry_t node; /* when admitted: the node/ record; borrowed from the buffer */
} joinmsg_verdict_t;

/* VERDICT; node is NULL for a refusal, the joiner's node/ entry when code is "". */
void joinmsg_pack_verdict(msgpack_packer *pk, uint64_t seq, const char *code, const char *message,
                          const store_entry_t *node);
/* 0 or -EBADMSG with why; an admission must carry a node/ entry (not a tombstone) and a
 * refusal must carry none. */
int joinmsg_decode_verdict(const uint8_t *buf, size_t len, joinmsg_verdict_t *v,
                           const char **why);

#endif
