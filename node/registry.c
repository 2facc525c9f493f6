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
    /* tunnel_addr only when set: a record without it stays what it was before the field. */
    msgpack_pack_map(pk, n->tunnel_addr[0] ? 9 : 8);
    if (n->tunnel_addr[0])
        mpw_kv_str(pk, "tunnel_addr", n->tunnel_addr);
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
    /* site only when set: a PoP token's record stays what it was before the field existed. */
    msgpack_pack_map(pk, t->site[0] ? 8 : 7);
    mpw_kv_str(pk, "role", t->role);
    mpw_kv_u64(pk, "expires_ms", t->expires_ms);
    mpw_kv_u64(pk, "uses_max", t->uses_max);
    mpw_kv_u64(pk, "created_ms", t->created_ms);
    mpw_kv_str(pk, "created_by", t->created_by);
    mpw_kv_bin(pk, "join_pk", t->join_pk, 32);
    mpw_kv_bool(pk, "revoked", t->revoked);
    if (t->site[0])
        mpw_kv_str(pk, "site", t->site);
}

int reg_site_key(const char *name, char *out, size_t len)
{
    if (nodecfg_check_name(name))
        return -EINVAL;
    int n = snprintf(out, len, REG_SITE_PREFIX "%s", name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

void reg_site_pack(msgpack_packer *pk, const reg_site_t *s)
{
    msgpack_pack_map(pk, 5);
    mpw_kv_str(pk, "name", s->name);
    mpw_kv_u64(pk, "created_ms", s->created_ms);
    mpw_kv_str(pk, "created_by", s->created_by);
    mpw_kv_u64(pk, "token_id", s->token_id);
    mpw_kv_bool(pk, "removed", s->removed);
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
        {"tunnel_addr", F_STR, n->tunnel_addr, sizeof(n->tunnel_addr), false, false},
    };
    int rc = parse_fields(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc)
        return rc;
    if (n->tunnel_addr[0] && nodecfg_check_addr(n->tunnel_addr, 0)) {
        *why = "tunnel_addr is not host:port";
        return -EBADMSG;
    }
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
        {"site", F_STR, t->site, sizeof(t->site), false, false},
    };
    int rc = parse_fields(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc)
        return rc;
    if (t->site[0] && nodecfg_check_name(t->site)) {
        *why = "site is not a valid site name";
        return -EBADMSG;
    }
    t->id = id;
    return 0;
}

int reg_site_parse(const uint8_t *buf, size_t len, const char *name, reg_site_t *s,
                   const char **why)
{
    memset(s, 0, sizeof(*s));
    struct field fs[] = {
        {"name", F_STR, s->name, sizeof(s->name), true, false},
        {"created_ms", F_U64, &s->created_ms, 0, false, false},
        {"created_by", F_STR, s->created_by, sizeof(s->created_by), false, false},
        {"token_id", F_U64, &s->token_id, 0, true, false},
        {"removed", F_BOOL, &s->removed, 0, false, false},
    };
    int rc = parse_fields(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc)
        return rc;
    if (nodecfg_check_name(s->name)) {
        *why = "name is not a valid site name";
        return -EBADMSG;
    }
    if (strcmp(s->name, name) != 0) {
        *why = "the record's name is not the name in its key";
        return -EBADMSG;
    }
    return 0;
}
