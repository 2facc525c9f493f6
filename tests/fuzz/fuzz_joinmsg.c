/* Fuzzes the join handshake decoders (node/membership/joinmsg.h): the seed decodes JOIN from a
 * joiner that holds only a token, and the joiner decodes the seed's reply. Anything decoded must
 * hold what the header promises: NUL-terminated strings that fit, no control characters in JOIN_ERR
 * text, registry entries that point inside the message; a JOIN re-encodes to the same fields.
 * Between PoPs, the join arbiter decodes FORWARD and the seed VERDICT: borrowed pointers stay
 * inside the message, a FORWARD's record is the named token's, an admission carries a node
 * record and a refusal none. */
#include "node/membership/joinmsg.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_join(const uint8_t *data, size_t size)
{
    reg_node_t n, back;
    const char *why = NULL;
    int rc = joinmsg_decode_join(data, size, &n, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    if (strnlen(n.name, sizeof(n.name)) == sizeof(n.name) ||
        strnlen(n.region, sizeof(n.region)) == sizeof(n.region) ||
        strnlen(n.addr, sizeof(n.addr)) == sizeof(n.addr) ||
        (n.role != ROLE_POP && n.role != ROLE_SITE))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    joinmsg_pack_join(&pk, &n);
    if (joinmsg_decode_join((const uint8_t *)sb.data, sb.size, &back, &why) != 0 ||
        strcmp(n.name, back.name) || strcmp(n.region, back.region) || strcmp(n.addr, back.addr) ||
        memcmp(n.curve_pk, back.curve_pk, 32) || memcmp(n.sign_pk, back.sign_pk, 32) ||
        n.role != back.role)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void check_text(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            abort();
}

static void check_reply(const uint8_t *data, size_t size)
{
    joinmsg_reply_t r;
    const char *why = NULL;
    int rc = joinmsg_decode_reply(data, size, &r, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why || r.entries)
            abort();
        return;
    }
    if (r.type == MESH_MSG_JOIN_ERR) {
        check_text(r.code, sizeof(r.code));
        check_text(r.message, sizeof(r.message));
        if (r.entries)
            abort();
    } else if (r.type == MESH_MSG_JOIN_OK) {
        if (!r.entries || r.nentries > JOINMSG_MAX_ENTRIES)
            abort();
        for (size_t i = 0; i < r.nentries; i++) {
            const store_entry_t *e = &r.entries[i];
            if ((const uint8_t *)e->key < data || (const uint8_t *)e->key + e->klen > data + size)
                abort();
            if (e->tombstone ? e->value != NULL
                             : (!e->value || e->value < data || e->value + e->vlen > data + size))
                abort();
        }
        free(r.entries);
    } else {
        abort();
    }
}

static bool inside(const void *p, size_t n, const uint8_t *data, size_t size)
{
    return (const uint8_t *)p >= data && (const uint8_t *)p + n <= data + size;
}

static void check_forward(const uint8_t *data, size_t size)
{
    joinmsg_forward_t f;
    const char *why = NULL;
    int rc = joinmsg_decode_forward(data, size, &f, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    char key[64];
    reg_token_key(f.token_id, key, sizeof(key));
    if (f.token.tombstone || f.token.klen != strlen(key) || memcmp(f.token.key, key, f.token.klen) ||
        !inside(f.token.key, f.token.klen, data, size) || !inside(f.join, f.join_len, data, size) ||
        (f.token.vlen && !inside(f.token.value, f.token.vlen, data, size)))
        abort();
    check_join(f.join, f.join_len);
}

static void check_verdict(const uint8_t *data, size_t size)
{
    joinmsg_verdict_t v;
    const char *why = NULL;
    int rc = joinmsg_decode_verdict(data, size, &v, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    check_text(v.code, sizeof(v.code));
    check_text(v.message, sizeof(v.message));
    uint64_t id;
    if ((v.code[0] == '\0') != v.has_node)
        abort();
    if (v.has_node && (v.node.tombstone || reg_node_key_id(v.node.key, v.node.klen, &id) != 0 ||
                       !inside(v.node.key, v.node.klen, data, size) ||
                       (v.node.vlen && !inside(v.node.value, v.node.vlen, data, size))))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_join(data, size);
    check_reply(data, size);
    check_forward(data, size);
    check_verdict(data, size);
    return 0;
}
