#include "node/registry.h"

#include "common/mp.h"
#include "node/identity.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void reg_node_key(uint64_t id, char *out, size_t len)
{
    snprintf(out, len, REG_NODE_PREFIX "%016llx", (unsigned long long)id);
}

void reg_token_key(uint64_t id, char *out, size_t len)
{
    snprintf(out, len, REG_TOKEN_PREFIX "%016llx", (unsigned long long)id);
}

void reg_tokenuse_key(uint64_t token_id, uint64_t node_id, char *out, size_t len)
{
    snprintf(out, len, REG_TOKENUSE_PREFIX "%016llx/%016llx", (unsigned long long)token_id,
             (unsigned long long)node_id);
}

int reg_node_key_id(const char *key, size_t klen, uint64_t *id)
{
    size_t pl = strlen(REG_NODE_PREFIX);
    if (klen != pl + 16 || memcmp(key, REG_NODE_PREFIX, pl) != 0)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = pl; i < klen; i++) {
        char c = key[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -EINVAL;
        v = v << 4 | (uint64_t)d;
    }
    *id = v;
    return 0;
}

void reg_node_pack(msgpack_packer *pk, const reg_node_t *n)
{
    msgpack_pack_map(pk, 8);
    mpw_kv_str(pk, "name", n->name);
    mpw_kv_str(pk, "region", n->region);
    mpw_kv_str(pk, "addr", n->addr);
    mpw_kv_bin(pk, "curve_pk", n->curve_pk, 32);
    mpw_kv_bin(pk, "sign_pk", n->sign_pk, 32);
    mpw_kv_str(pk, "role", n->role);
    mpw_kv_u64(pk, "joined_ms", n->joined_ms);
    mpw_kv_bool(pk, "removed", n->removed);
}

void reg_token_pack(msgpack_packer *pk, const reg_token_t *t)
{
    msgpack_pack_map(pk, 7);
    mpw_kv_str(pk, "role", t->role);
    mpw_kv_u64(pk, "expires_ms", t->expires_ms);
    mpw_kv_u64(pk, "uses_max", t->uses_max);
    mpw_kv_u64(pk, "created_ms", t->created_ms);
    mpw_kv_str(pk, "created_by", t->created_by);
    mpw_kv_bin(pk, "join_pk", t->join_pk, 32);
    mpw_kv_bool(pk, "revoked", t->revoked);
}

void reg_tokenuse_pack(msgpack_packer *pk, const char *name, uint64_t at_ms)
{
    msgpack_pack_map(pk, 2);
    mpw_kv_str(pk, "name", name);
    mpw_kv_u64(pk, "at_ms", at_ms);
}

/* A table-driven map decoder: each field names its key, its kind and where it goes. */
enum fkind { F_STR, F_U64, F_BIN32, F_BOOL };

struct field {
    const char *name;
    enum fkind kind;
    void *dst;
    size_t cap; /* F_STR: buffer size */
    bool required;
    bool seen;
};

static int parse_fields(const uint8_t *buf, size_t len, struct field *fs, size_t nf,
                        const char **why)
{
    mpr_t r;
    uint32_t pairs;
    mpr_init(&r, buf, len);
    if (mpr_map(&r, &pairs)) {
        *why = "not a map";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        uint32_t kl;
        if (mpr_str(&r, &k, &kl)) {
            *why = "non-string field name";
            return -EBADMSG;
        }
        struct field *f = NULL;
        for (size_t j = 0; j < nf; j++)
            if (strlen(fs[j].name) == kl && memcmp(fs[j].name, k, kl) == 0)
                f = &fs[j];
        if (!f) {
            if (mpr_skip(&r)) {
                *why = "malformed unknown field";
                return -EBADMSG;
            }
            continue;
        }
        int bad = 0;
        switch (f->kind) {
        case F_STR: {
            const char *s;
            uint32_t sl;
            bad = mpr_str(&r, &s, &sl) || sl >= f->cap || memchr(s, '\0', sl);
            if (!bad) {
                memcpy(f->dst, s, sl);
                ((char *)f->dst)[sl] = '\0';
            }
            break;
        }
        case F_U64:
            bad = mpr_uint(&r, f->dst) != 0;
            break;
        case F_BIN32: {
            const uint8_t *b;
            uint32_t bl;
            bad = mpr_bin(&r, &b, &bl) || bl != 32;
            if (!bad)
                memcpy(f->dst, b, 32);
            break;
        }
        case F_BOOL:
            bad = mpr_bool(&r, f->dst) != 0;
            break;
        }
        if (bad) {
            *why = "field of the wrong type or size";
            return -EBADMSG;
        }
        f->seen = true;
    }
    if (r.left) {
        *why = "trailing bytes";
        return -EBADMSG;
    }
    for (size_t j = 0; j < nf; j++) {
        if (fs[j].required && !fs[j].seen) {
            *why = "missing field";
            return -EBADMSG;
        }
    }
    return 0;
}

int reg_node_parse(const uint8_t *buf, size_t len, uint64_t id, reg_node_t *n, const char **why)
{
    memset(n, 0, sizeof(*n));
    struct field fs[] = {
        {"name", F_STR, n->name, sizeof(n->name), true, false},
        {"region", F_STR, n->region, sizeof(n->region), false, false},
        {"addr", F_STR, n->addr, sizeof(n->addr), true, false},
        {"curve_pk", F_BIN32, n->curve_pk, 0, true, false},
        {"sign_pk", F_BIN32, n->sign_pk, 0, false, false},
        {"role", F_STR, n->role, sizeof(n->role), true, false},
        {"joined_ms", F_U64, &n->joined_ms, 0, false, false},
        {"removed", F_BOOL, &n->removed, 0, false, false},
    };
    int rc = parse_fields(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc)
        return rc;
    if (identity_node_id_of(n->curve_pk) != id) {
        *why = "curve_pk does not belong to the record's node id";
        return -EBADMSG;
    }
    n->id = id;
    return 0;
}

int reg_token_parse(const uint8_t *buf, size_t len, uint64_t id, reg_token_t *t, const char **why)
{
    memset(t, 0, sizeof(*t));
    struct field fs[] = {
        {"role", F_STR, t->role, sizeof(t->role), true, false},
        {"expires_ms", F_U64, &t->expires_ms, 0, true, false},
        {"uses_max", F_U64, &t->uses_max, 0, false, false},
        {"created_ms", F_U64, &t->created_ms, 0, false, false},
        {"created_by", F_STR, t->created_by, sizeof(t->created_by), false, false},
        {"join_pk", F_BIN32, t->join_pk, 0, true, false},
        {"revoked", F_BOOL, &t->revoked, 0, false, false},
    };
    int rc = parse_fields(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc)
        return rc;
    t->id = id;
    return 0;
}
