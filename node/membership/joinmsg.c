#include "node/membership/joinmsg.h"

#include "common/mp.h"
#include "common/xmalloc.h"
#include "gossip/antientropy.h"
#include "node/records/registry.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

static int read_cstr(mpr_t *r, char *dst, size_t cap)
{
    const char *s;
    uint32_t n;
    if (mpr_str(r, &s, &n) || n >= cap || memchr(s, '\0', n))
        return -EBADMSG;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

static int read_bin(mpr_t *r, uint8_t *dst, uint32_t want)
{
    const uint8_t *b;
    uint32_t n;
    if (mpr_bin(r, &b, &n) || n != want)
        return -EBADMSG;
    memcpy(dst, b, n);
    return 0;
}

static int read_head(mpr_t *r, uint32_t *n, uint64_t *type)
{
    uint64_t v;
    if (mpr_array(r, n) || *n < 2 || mpr_uint(r, &v) || v != MESH_VERSION || mpr_uint(r, type))
        return -EBADMSG;
    return 0;
}

void joinmsg_pack_join(msgpack_packer *pk, const reg_node_t *n)
{
    msgpack_pack_array(pk, 8);
    msgpack_pack_uint32(pk, MESH_VERSION);
    msgpack_pack_uint32(pk, MESH_MSG_JOIN);
    mpw_str(pk, n->name);
    mpw_str(pk, n->region);
    mpw_str(pk, n->addr);
    mpw_bin(pk, n->curve_pk, 32);
    mpw_bin(pk, n->sign_pk, 32);
    mpw_str(pk, node_role_name(n->role));
}

int joinmsg_decode_join(const uint8_t *buf, size_t len, reg_node_t *n, const char **why)
{
    char role[REG_ROLE_MAX + 1];
    mpr_t r;
    uint32_t count;
    uint64_t type;
    memset(n, 0, sizeof(*n));
    mpr_init(&r, buf, len);
    if (read_head(&r, &count, &type) || type != MESH_MSG_JOIN || count != 8) {
        *why = "not a JOIN message";
        return -EBADMSG;
    }
    if (read_cstr(&r, n->name, sizeof(n->name)) || read_cstr(&r, n->region, sizeof(n->region)) ||
        read_cstr(&r, n->addr, sizeof(n->addr)) || read_bin(&r, n->curve_pk, 32) ||
        read_bin(&r, n->sign_pk, 32) || read_cstr(&r, role, sizeof(role)) || r.left) {
        *why = "malformed JOIN field";
        return -EBADMSG;
    }
    if (node_role_parse(role, strlen(role), &n->role)) {
        *why = "role is not pop or site";
        return -EBADMSG;
    }
    return 0;
}

void joinmsg_pack_ok(msgpack_packer *pk, const uint8_t mesh_pk[32], const uint8_t *mesh_sk,
                     const void *entries, size_t entries_len, uint32_t count,
                     const storekey_t *store_key)
{
    msgpack_pack_array(pk, store_key ? 6 : 5);
    msgpack_pack_uint32(pk, MESH_VERSION);
    msgpack_pack_uint32(pk, MESH_MSG_JOIN_OK);
    mpw_bin(pk, mesh_pk, 32);
    if (mesh_sk)
        mpw_bin(pk, mesh_sk, 64);
    else
        msgpack_pack_nil(pk);
    msgpack_pack_array(pk, count);
    mpw_raw(pk, entries, entries_len);
    if (store_key) {
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint32(pk, store_key->id);
        mpw_bin(pk, store_key->key, 32);
    }
}

void joinmsg_pack_err(msgpack_packer *pk, const char *code, const char *message)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint32(pk, MESH_VERSION);
    msgpack_pack_uint32(pk, MESH_MSG_JOIN_ERR);
    mpw_str(pk, code);
    mpw_str(pk, message);
}

int joinmsg_decode_reply(const uint8_t *buf, size_t len, joinmsg_reply_t *out, const char **why)
{
    mpr_t r;
    uint32_t count, n;
    uint64_t type;
    memset(out, 0, sizeof(*out));
    mpr_init(&r, buf, len);
    if (read_head(&r, &count, &type)) {
        *why = "not a join reply";
        return -EBADMSG;
    }
    if (type == MESH_MSG_JOIN_ERR && count == 4) {
        const char *s;
        uint32_t sl;
        /* Messages are for a human: keep them even if they are longer than we show. */
        if (read_cstr(&r, out->code, sizeof(out->code)) || mpr_str(&r, &s, &sl) || r.left) {
            *why = "malformed JOIN_ERR";
            return -EBADMSG;
        }
        size_t keep = sl < sizeof(out->message) - 1 ? sl : sizeof(out->message) - 1;
        memcpy(out->message, s, keep);
        out->message[keep] = '\0';
        for (size_t i = 0; i < keep; i++)
            if ((unsigned char)out->message[i] < 0x20 || out->message[i] == 0x7f)
                out->message[i] = ' '; /* no terminal control characters from a peer */
        /* The code is printed next to the message. */
        for (char *c = out->code; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f)
                *c = ' ';
        out->type = MESH_MSG_JOIN_ERR;
        return 0;
    }
    if (type != MESH_MSG_JOIN_OK || (count != 5 && count != 6) || read_bin(&r, out->mesh_pk, 32)) {
        *why = "not a JOIN_OK or JOIN_ERR";
        return -EBADMSG;
    }
    if (mpr_peek(&r) == MP_NIL) {
        mpr_nil(&r);
    } else if (read_bin(&r, out->mesh_sk, 64) == 0) {
        out->has_mesh_sk = true;
    } else {
        *why = "malformed mesh key";
        return -EBADMSG;
    }
    if (mpr_array(&r, &n) || n > JOINMSG_MAX_ENTRIES) {
        *why = "malformed registry";
        return -EBADMSG;
    }
    out->entries = xcalloc(n ? n : 1, sizeof(*out->entries));
    for (uint32_t i = 0; i < n; i++) {
        if (ae_entry_read(&r, &out->entries[i])) {
            free(out->entries);
            out->entries = NULL;
            sodium_memzero(out->mesh_sk, sizeof(out->mesh_sk));
            *why = "malformed registry entry";
            return -EBADMSG;
        }
    }
    if (count == 6) {
        uint32_t two;
        uint64_t id;
        if (mpr_array(&r, &two) || two != 2 || mpr_uint(&r, &id) || id < 1 || id > 255 ||
            read_bin(&r, out->store_key.key, 32)) {
            free(out->entries);
            out->entries = NULL;
            sodium_memzero(out->mesh_sk, sizeof(out->mesh_sk));
            sodium_memzero(&out->store_key, sizeof(out->store_key));
            *why = "malformed store key";
            return -EBADMSG;
        }
        out->store_key.id = (uint8_t)id;
        out->has_store_key = true;
    }
    if (r.left) {
        free(out->entries);
        out->entries = NULL;
        sodium_memzero(out->mesh_sk, sizeof(out->mesh_sk));
        sodium_memzero(&out->store_key, sizeof(out->store_key));
        *why = "trailing bytes";
        return -EBADMSG;
    }
    out->nentries = n;
    out->type = MESH_MSG_JOIN_OK;
    return 0;
}

/* Copies a peer's text into dst (cap bytes with the NUL), cut if longer, with control
 * characters replaced: it ends up on an operator's terminal. */
static int read_text(mpr_t *r, char *dst, size_t cap, bool cut)
{
    const char *s;
    uint32_t n;
    if (mpr_str(r, &s, &n) || (!cut && n >= cap))
        return -EBADMSG;
    size_t keep = n < cap - 1 ? n : cap - 1;
    memcpy(dst, s, keep);
    dst[keep] = '\0';
    for (size_t i = 0; i < keep; i++)
        if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
            dst[i] = ' ';
    return 0;
}

void joinmsg_pack_forward(msgpack_packer *pk, uint64_t seq, uint64_t token_id,
                          const store_entry_t *token, const uint8_t *join, size_t join_len,
                          bool relayed)
{
    msgpack_pack_array(pk, relayed ? 7 : 6);
    msgpack_pack_uint32(pk, MESH_VERSION);
    msgpack_pack_uint32(pk, MESH_MSG_FORWARD);
    msgpack_pack_uint64(pk, seq);
    msgpack_pack_uint64(pk, token_id);
    ae_entry_pack(pk, token);
    mpw_bin(pk, join, join_len);
    if (relayed)
        msgpack_pack_true(pk);
}

int joinmsg_decode_forward(const uint8_t *buf, size_t len, joinmsg_forward_t *f, const char **why)
{
    mpr_t r;
    uint32_t count, jl;
    uint64_t type;
    char key[64];
    memset(f, 0, sizeof(*f));
    mpr_init(&r, buf, len);
    if (read_head(&r, &count, &type) || type != MESH_MSG_FORWARD || count < 6 || count > 7) {
        *why = "not a FORWARD message";
        return -EBADMSG;
    }
    if (mpr_uint(&r, &f->seq) || mpr_uint(&r, &f->token_id) || ae_entry_read(&r, &f->token) ||
        mpr_bin(&r, &f->join, &jl) || (count == 7 && mpr_bool(&r, &f->relayed)) || r.left) {
        *why = "malformed FORWARD field";
        return -EBADMSG;
    }
    f->join_len = jl;
    reg_token_key(f->token_id, key, sizeof(key));
    if (f->token.tombstone || f->token.klen != strlen(key) ||
        memcmp(f->token.key, key, f->token.klen) != 0) {
        *why = "the token record is not the token's";
        return -EBADMSG;
    }
    return 0;
}

void joinmsg_pack_verdict(msgpack_packer *pk, uint64_t seq, const char *code, const char *message,
                          const store_entry_t *node)
{
    msgpack_pack_array(pk, 6);
    msgpack_pack_uint32(pk, MESH_VERSION);
    msgpack_pack_uint32(pk, MESH_MSG_VERDICT);
    msgpack_pack_uint64(pk, seq);
    mpw_str(pk, code);
    mpw_str(pk, message);
    if (node)
        ae_entry_pack(pk, node);
    else
        msgpack_pack_nil(pk);
}

int joinmsg_decode_verdict(const uint8_t *buf, size_t len, joinmsg_verdict_t *v, const char **why)
{
    mpr_t r;
    uint32_t count;
    uint64_t type, id;
    memset(v, 0, sizeof(*v));
    mpr_init(&r, buf, len);
    if (read_head(&r, &count, &type) || type != MESH_MSG_VERDICT || count != 6) {
        *why = "not a VERDICT message";
        return -EBADMSG;
    }
    if (mpr_uint(&r, &v->seq) || read_text(&r, v->code, sizeof(v->code), false) ||
        read_text(&r, v->message, sizeof(v->message), true)) {
        *why = "malformed VERDICT field";
        return -EBADMSG;
    }
    if (mpr_peek(&r) == MP_NIL) {
        mpr_nil(&r);
    } else if (ae_entry_read(&r, &v->node) == 0) {
        v->has_node = true;
    } else {
        *why = "malformed VERDICT record";
        return -EBADMSG;
    }
    if (r.left) {
        *why = "trailing bytes";
        return -EBADMSG;
    }
    bool admitted = v->code[0] == '\0';
    if (admitted != v->has_node ||
        (admitted && (v->node.tombstone ||
                      reg_node_key_id(v->node.key, v->node.klen, &id) != 0))) {
        *why = admitted ? "an admission without the node's record" : "a refusal with a record";
        return -EBADMSG;
    }
    return 0;
}
