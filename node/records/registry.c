#include "node/records/registry.h"

#include "common/mpfields.h"

#include "common/mp.h"
#include "node/records/geo.h"
#include "node/records/identity.h"

#include <arpa/inet.h>
#include <sodium.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *node_role_name(enum node_role r)
{
    switch (r) {
    case ROLE_POP:
        return "pop";
    case ROLE_SITE:
        return "site";
    }
    return "?";
}

int node_role_parse(const char *s, size_t len, enum node_role *out)
{
    if (len == 3 && memcmp(s, "pop", 3) == 0)
        *out = ROLE_POP;
    else if (len == 4 && memcmp(s, "site", 4) == 0)
        *out = ROLE_SITE;
    else
        return -EINVAL;
    return 0;
}

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
    /* The optional fields only when set: a record without them stays what it was before
     * they existed. */
    uint32_t fields = 8 + !!n->tunnel_addr[0] + !!n->public4[0] + !!n->public6[0] +
                      (n->has_loc ? 2 : 0) + !!n->dns_addr[0] + !!n->draining + !!n->site[0] +
                      !!n->no_inbound + !!n->nlabels + !!n->seal;
    msgpack_pack_map(pk, fields);
    if (n->tunnel_addr[0])
        mpw_kv_str(pk, "tunnel_addr", n->tunnel_addr);
    mpw_kv_str(pk, "name", n->name);
    mpw_kv_str(pk, "region", n->region);
    mpw_kv_str(pk, "addr", n->addr);
    mpw_kv_bin(pk, "curve_pk", n->curve_pk, 32);
    mpw_kv_bin(pk, "sign_pk", n->sign_pk, 32);
    mpw_kv_str(pk, "role", node_role_name(n->role));
    mpw_kv_u64(pk, "joined_ms", n->joined_ms);
    mpw_kv_bool(pk, "removed", n->removed);
    if (n->public4[0])
        mpw_kv_str(pk, "public4", n->public4);
    if (n->public6[0])
        mpw_kv_str(pk, "public6", n->public6);
    if (n->has_loc)
        geo_pack_location(pk, n->lat, n->lon);
    if (n->dns_addr[0])
        mpw_kv_str(pk, "dns_addr", n->dns_addr);
    if (n->draining)
        mpw_kv_bool(pk, "draining", true);
    if (n->site[0])
        mpw_kv_str(pk, "site", n->site);
    if (n->no_inbound)
        mpw_kv_bool(pk, "no_inbound", true);
    if (n->nlabels) {
        mpw_str(pk, "labels");
        msgpack_pack_array(pk, n->nlabels);
        for (unsigned i = 0; i < n->nlabels; i++)
            mpw_str(pk, n->labels[i]);
    }
    if (n->seal)
        mpw_kv_bool(pk, "seal", true);
}

bool reg_node_has_label(const reg_node_t *n, const char *label)
{
    if (n->region[0] && !strcmp(n->region, label))
        return true;
    for (unsigned i = 0; i < n->nlabels; i++)
        if (!strcmp(n->labels[i], label))
            return true;
    return false;
}

static int read_labels(mpr_t *r, void *dst, const char **why)
{
    reg_node_t *n = dst;
    uint32_t cnt;
    if (mpr_array(r, &cnt) || cnt > NODECFG_LABELS_MAX) {
        *why = "labels is not a list of at most 8 names";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < cnt; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(r, &s, &sl) || sl == 0 || sl > NODECFG_NAME_MAX || memchr(s, '\0', sl)) {
            *why = "a label is not a name";
            return -EBADMSG;
        }
        memcpy(n->labels[i], s, sl);
        n->labels[i][sl] = '\0';
        if (nodecfg_check_name(n->labels[i])) {
            *why = "a label is not a valid name";
            return -EBADMSG;
        }
    }
    n->nlabels = cnt;
    return 0;
}

const char *reg_node_site(const reg_node_t *n)
{
    return n->site[0] ? n->site : n->name;
}

int reg_check_public_ip(const char *s, int family)
{
    uint8_t a[16];
    if (inet_pton(family, s, a) != 1)
        return -EINVAL;
    static const uint8_t zero[16];
    if (!memcmp(a, zero, family == AF_INET ? 4 : 16))
        return -EINVAL; /* 0.0.0.0 or ::: a wildcard, no address a client can reach */
    return 0;
}

void reg_token_pack(msgpack_packer *pk, const reg_token_t *t)
{
    /* site only when set: a PoP token's record stays what it was before the field existed. */
    msgpack_pack_map(pk, 7 + !!t->site[0] + !!t->site_token + !!t->caps + 2 * !!t->has_sig);
    mpw_kv_str(pk, "role", node_role_name(t->role));
    mpw_kv_u64(pk, "expires_ms", t->expires_ms);
    mpw_kv_u64(pk, "uses_max", t->uses_max);
    mpw_kv_u64(pk, "created_ms", t->created_ms);
    mpw_kv_str(pk, "created_by", t->created_by);
    mpw_kv_bin(pk, "join_pk", t->join_pk, 32);
    mpw_kv_bool(pk, "revoked", t->revoked);
    if (t->site[0])
        mpw_kv_str(pk, "site", t->site);
    if (t->site_token)
        mpw_kv_u64(pk, "site_token", t->site_token);
    if (t->caps)
        mpw_kv_u64(pk, "caps", t->caps);
    if (t->has_sig) {
        mpw_kv_u64(pk, "minter", t->minter);
        mpw_kv_bin(pk, "sig", t->sig, 64);
    }
}

/* What a token's signature covers: every field that decides a join or a certificate. */
static void token_signed_msg(const reg_token_t *t, msgpack_sbuffer *sb)
{
    static const char context[] = "popmesh tokenrec v1";
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_sbuffer_write(sb, context, sizeof(context)); /* with the NUL */
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 9);
    msgpack_pack_uint64(&pk, t->id);
    mpw_bin(&pk, t->join_pk, 32);
    mpw_str(&pk, node_role_name(t->role));
    msgpack_pack_uint64(&pk, t->expires_ms);
    msgpack_pack_uint64(&pk, t->uses_max);
    msgpack_pack_uint64(&pk, t->caps);
    mpw_str(&pk, t->site);
    msgpack_pack_uint64(&pk, t->site_token);
    msgpack_pack_uint64(&pk, t->minter);
}

void reg_token_sign(reg_token_t *t, uint64_t minter, const uint8_t sign_sk[64])
{
    msgpack_sbuffer sb;
    t->minter = minter;
    token_signed_msg(t, &sb);
    crypto_sign_detached(t->sig, NULL, (const uint8_t *)sb.data, sb.size, sign_sk);
    t->has_sig = true;
    msgpack_sbuffer_destroy(&sb);
}

bool reg_token_sig_ok(const reg_token_t *t, const uint8_t pk[32])
{
    if (!t->has_sig)
        return false;
    msgpack_sbuffer sb;
    token_signed_msg(t, &sb);
    bool ok = crypto_sign_verify_detached(t->sig, (const uint8_t *)sb.data, sb.size, pk) == 0;
    msgpack_sbuffer_destroy(&sb);
    return ok;
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

int reg_node_parse(const uint8_t *buf, size_t len, uint64_t id, reg_node_t *n, const char **why)
{
    memset(n, 0, sizeof(*n));
    char role[REG_ROLE_MAX + 1] = "";
    int64_t lat = 0, lon = 0;
    mpf_t fs[] = {
        {"name", MPF_STR, n->name, sizeof(n->name), true, false, NULL},
        {"region", MPF_STR, n->region, sizeof(n->region), false, false, NULL},
        {"addr", MPF_STR, n->addr, sizeof(n->addr), true, false, NULL},
        {"curve_pk", MPF_BIN32, n->curve_pk, 0, true, false, NULL},
        {"sign_pk", MPF_BIN32, n->sign_pk, 0, false, false, NULL},
        {"role", MPF_STR, role, sizeof(role), true, false, NULL},
        {"joined_ms", MPF_U64, &n->joined_ms, 0, false, false, NULL},
        {"removed", MPF_BOOL, &n->removed, 0, false, false, NULL},
        {"tunnel_addr", MPF_STR, n->tunnel_addr, sizeof(n->tunnel_addr), false, false, NULL},
        {"public4", MPF_STR, n->public4, sizeof(n->public4), false, false, NULL},
        {"public6", MPF_STR, n->public6, sizeof(n->public6), false, false, NULL},
        {"lat_udeg", MPF_CUSTOM, &lat, 0, false, false, geo_read_udeg},
        {"lon_udeg", MPF_CUSTOM, &lon, 0, false, false, geo_read_udeg},
        {"dns_addr", MPF_STR, n->dns_addr, sizeof(n->dns_addr), false, false, NULL},
        {"draining", MPF_BOOL, &n->draining, 0, false, false, NULL},
        {"site", MPF_STR, n->site, sizeof(n->site), false, false, NULL},
        {"no_inbound", MPF_BOOL, &n->no_inbound, 0, false, false, NULL},
        {"labels", MPF_CUSTOM, n, 0, false, false, read_labels},
        {"seal", MPF_BOOL, &n->seal, 0, false, false, NULL},
    };
    int rc = mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc)
        return rc;
    if (n->public4[0] && reg_check_public_ip(n->public4, AF_INET)) {
        *why = "public4 is not an IPv4 address";
        return -EBADMSG;
    }
    if (n->public6[0] && reg_check_public_ip(n->public6, AF_INET6)) {
        *why = "public6 is not an IPv6 address";
        return -EBADMSG;
    }
    if (geo_location_from_udeg(fs[11].seen, lat, fs[12].seen, lon, &n->has_loc, &n->lat, &n->lon,
                               why))
        return -EBADMSG;
    if (n->dns_addr[0] && nodecfg_check_addr(n->dns_addr, 0)) {
        *why = "dns_addr is not host:port";
        return -EBADMSG;
    }
    if (node_role_parse(role, strlen(role), &n->role)) {
        *why = "role is not pop or site";
        return -EBADMSG;
    }
    if (n->tunnel_addr[0] && nodecfg_check_addr(n->tunnel_addr, 0)) {
        *why = "tunnel_addr is not host:port";
        return -EBADMSG;
    }
    if (n->site[0] && (n->role != ROLE_SITE || nodecfg_check_name(n->site))) {
        *why = "site is set on a PoP or is not a valid site name";
        return -EBADMSG;
    }
    if (identity_node_id_of(n->curve_pk) != id) {
        *why = "curve_pk does not belong to the record's node id";
        return -EBADMSG;
    }
    n->id = id;
    return 0;
}

static int read_sig64(mpr_t *r, void *dst, const char **why)
{
    const uint8_t *b;
    uint32_t n;
    if (mpr_bin(r, &b, &n) || n != 64) {
        *why = "sig is not 64 bytes";
        return -EBADMSG;
    }
    memcpy(dst, b, 64);
    return 0;
}

int reg_token_parse(const uint8_t *buf, size_t len, uint64_t id, reg_token_t *t, const char **why)
{
    memset(t, 0, sizeof(*t));
    char role[REG_ROLE_MAX + 1] = "";
    uint64_t caps = 0;
    mpf_t fs[] = {
        {"role", MPF_STR, role, sizeof(role), true, false, NULL},
        {"expires_ms", MPF_U64, &t->expires_ms, 0, true, false, NULL},
        {"uses_max", MPF_U64, &t->uses_max, 0, false, false, NULL},
        {"created_ms", MPF_U64, &t->created_ms, 0, false, false, NULL},
        {"created_by", MPF_STR, t->created_by, sizeof(t->created_by), false, false, NULL},
        {"join_pk", MPF_BIN32, t->join_pk, 0, true, false, NULL},
        {"revoked", MPF_BOOL, &t->revoked, 0, false, false, NULL},
        {"site", MPF_STR, t->site, sizeof(t->site), false, false, NULL},
        {"site_token", MPF_U64, &t->site_token, 0, false, false, NULL},
        {"caps", MPF_U64, &caps, 0, false, false, NULL},
        {"minter", MPF_U64, &t->minter, 0, false, false, NULL},
        {"sig", MPF_CUSTOM, t->sig, 0, false, false, read_sig64},
    };
    int rc = mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
    if (rc)
        return rc;
    if (caps > UINT32_MAX) {
        *why = "caps out of range";
        return -EBADMSG;
    }
    t->caps = (uint32_t)caps;
    t->has_sig = fs[11].seen;
    if (t->has_sig != !!t->minter) {
        *why = "a token signature needs its minter, and a minter its signature";
        return -EBADMSG;
    }
    if (node_role_parse(role, strlen(role), &t->role)) {
        *why = "role is not pop or site";
        return -EBADMSG;
    }
    if (t->site[0] && nodecfg_check_name(t->site)) {
        *why = "site is not a valid site name";
        return -EBADMSG;
    }
    if (t->site_token && !t->site[0]) {
        *why = "site_token on a token bound to no site";
        return -EBADMSG;
    }
    t->id = id;
    return 0;
}

int reg_site_parse(const uint8_t *buf, size_t len, const char *name, reg_site_t *s,
                   const char **why)
{
    memset(s, 0, sizeof(*s));
    mpf_t fs[] = {
        {"name", MPF_STR, s->name, sizeof(s->name), true, false, NULL},
        {"created_ms", MPF_U64, &s->created_ms, 0, false, false, NULL},
        {"created_by", MPF_STR, s->created_by, sizeof(s->created_by), false, false, NULL},
        {"token_id", MPF_U64, &s->token_id, 0, true, false, NULL},
        {"removed", MPF_BOOL, &s->removed, 0, false, false, NULL},
    };
    int rc = mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why);
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
