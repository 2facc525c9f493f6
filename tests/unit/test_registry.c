/* Registry records (node/records/registry.h): node and token records round trip; unknown fields are
 * skipped, missing required fields, wrong types, oversize strings and records stored under
 * another node's id are refused; key helpers and reg_node_key_id's parse errors. The node
 * record's DNS fields (public4/6, location, dns_addr, draining): round trip, absent = the old
 * record byte for byte, each bad value refused with its own reason. */
#include "common/mp.h"
#include "node/records/identity.h"
#include "node/records/registry.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <cmocka.h>

/* ---- records built field by field, so a test can drop or change any one ------------------ */

enum kind { K_STR, K_U64, K_INT, K_BIN, K_BOOL, K_NIL, K_MAP };

struct item {
    const char *key;
    enum kind kind;
    const char *s; /* K_STR: NUL-terminated unless slen is set */
    size_t slen;
    uint64_t u;    /* K_U64 */
    int64_t i;     /* K_INT */
    const void *b; /* K_BIN */
    size_t blen;   /* K_BIN */
    bool v;        /* K_BOOL */
};

#define NODE_FIELDS  8
#define TOKEN_FIELDS 7

static void node_items(const reg_node_t *n, struct item it[NODE_FIELDS])
{
    it[0] = (struct item){.key = "name", .kind = K_STR, .s = n->name};
    it[1] = (struct item){.key = "region", .kind = K_STR, .s = n->region};
    it[2] = (struct item){.key = "addr", .kind = K_STR, .s = n->addr};
    it[3] = (struct item){.key = "curve_pk", .kind = K_BIN, .b = n->curve_pk, .blen = 32};
    it[4] = (struct item){.key = "sign_pk", .kind = K_BIN, .b = n->sign_pk, .blen = 32};
    it[5] = (struct item){.key = "role", .kind = K_STR, .s = node_role_name(n->role)};
    it[6] = (struct item){.key = "joined_ms", .kind = K_U64, .u = n->joined_ms};
    it[7] = (struct item){.key = "removed", .kind = K_BOOL, .v = n->removed};
}

static void token_items(const reg_token_t *t, struct item it[TOKEN_FIELDS])
{
    it[0] = (struct item){.key = "role", .kind = K_STR, .s = node_role_name(t->role)};
    it[1] = (struct item){.key = "expires_ms", .kind = K_U64, .u = t->expires_ms};
    it[2] = (struct item){.key = "uses_max", .kind = K_U64, .u = t->uses_max};
    it[3] = (struct item){.key = "created_ms", .kind = K_U64, .u = t->created_ms};
    it[4] = (struct item){.key = "created_by", .kind = K_STR, .s = t->created_by};
    it[5] = (struct item){.key = "join_pk", .kind = K_BIN, .b = t->join_pk, .blen = 32};
    it[6] = (struct item){.key = "revoked", .kind = K_BOOL, .v = t->revoked};
}

static void pack_value(msgpack_packer *pk, const struct item *it)
{
    switch (it->kind) {
    case K_STR:
        mpw_strn(pk, it->s, it->slen ? it->slen : strlen(it->s));
        break;
    case K_U64:
        msgpack_pack_uint64(pk, it->u);
        break;
    case K_INT:
        msgpack_pack_int64(pk, it->i);
        break;
    case K_BIN:
        mpw_bin(pk, it->b, it->blen);
        break;
    case K_BOOL:
        if (it->v)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case K_NIL:
        msgpack_pack_nil(pk);
        break;
    case K_MAP: /* a nested value of the kind a later version might add */
        msgpack_pack_map(pk, 2);
        mpw_str(pk, "list");
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint32(pk, 1);
        msgpack_pack_nil(pk);
        mpw_bin(pk, "xy", 2);
        mpw_str(pk, "n");
        msgpack_pack_double(pk, 1.5);
        break;
    }
}

/* Packs items as a map, leaving out index skip (or none if skip < 0). */
static void pack_items(msgpack_sbuffer *sb, const struct item *it, int n, int skip)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, (size_t)(n - (skip >= 0)));
    for (int i = 0; i < n; i++) {
        if (i == skip)
            continue;
        mpw_str(&pk, it[i].key);
        pack_value(&pk, &it[i]);
    }
}

static uint8_t seed_byte = 1;

static void make_node(reg_node_t *n)
{
    uint8_t sk[32];
    memset(n, 0, sizeof(*n));
    memset(sk, seed_byte++, 32);
    crypto_scalarmult_base(n->curve_pk, sk);
    memset(n->sign_pk, 0x55, 32);
    n->id = identity_node_id_of(n->curve_pk);
    strcpy(n->name, "pop-fra-1");
    strcpy(n->region, "eu-central");
    strcpy(n->addr, "10.1.2.3:7946");
    n->role = ROLE_POP;
    n->joined_ms = 1700000000123ull;
    n->removed = false;
}

static void make_regtoken(reg_token_t *t)
{
    memset(t, 0, sizeof(*t));
    t->id = 0x0123456789abcdefull;
    t->role = ROLE_SITE;
    t->expires_ms = 1800000000000ull;
    t->uses_max = 3;
    t->created_ms = 1700000000000ull;
    strcpy(t->created_by, "pop-fra-1");
    memset(t->join_pk, 0x77, 32);
    t->revoked = true;
}

static void assert_node_equal(const reg_node_t *a, const reg_node_t *b)
{
    assert_true(a->id == b->id);
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->region, b->region);
    assert_string_equal(a->addr, b->addr);
    assert_memory_equal(a->curve_pk, b->curve_pk, 32);
    assert_memory_equal(a->sign_pk, b->sign_pk, 32);
    assert_int_equal(a->role, b->role);
    assert_true(a->joined_ms == b->joined_ms);
    assert_int_equal(a->removed, b->removed);
    assert_string_equal(a->tunnel_addr, b->tunnel_addr);
    assert_string_equal(a->public4, b->public4);
    assert_string_equal(a->public6, b->public6);
    assert_int_equal(a->has_loc, b->has_loc);
    assert_true(a->lat == b->lat && a->lon == b->lon);
    assert_string_equal(a->dns_addr, b->dns_addr);
    assert_int_equal(a->draining, b->draining);
    assert_string_equal(a->site, b->site);
}

static void assert_regtoken_equal(const reg_token_t *a, const reg_token_t *b)
{
    assert_true(a->id == b->id);
    assert_int_equal(a->role, b->role);
    assert_true(a->expires_ms == b->expires_ms);
    assert_true(a->uses_max == b->uses_max);
    assert_true(a->created_ms == b->created_ms);
    assert_string_equal(a->created_by, b->created_by);
    assert_memory_equal(a->join_pk, b->join_pk, 32);
    assert_int_equal(a->revoked, b->revoked);
    assert_string_equal(a->site, b->site);
    assert_true(a->site_token == b->site_token);
}

static int parse_node(const msgpack_sbuffer *sb, uint64_t id, reg_node_t *n, const char **why)
{
    *why = NULL;
    return reg_node_parse((const uint8_t *)sb->data, sb->size, id, n, why);
}

static int parse_token(const msgpack_sbuffer *sb, uint64_t id, reg_token_t *t, const char **why)
{
    *why = NULL;
    return reg_token_parse((const uint8_t *)sb->data, sb->size, id, t, why);
}

#define assert_why(why, want) assert_string_equal((why) ? (why) : "(null)", want)

/* ---- tests ------------------------------------------------------------------------------ */

static void test_node_roundtrip(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int variant = 0; variant < 5; variant++) {
        reg_node_t n, back;
        const char *why;
        make_node(&n);
        if (variant == 3) { /* every DNS field set */
            strcpy(n.tunnel_addr, "10.1.2.3:7947");
            strcpy(n.public4, "203.0.113.7");
            strcpy(n.public6, "2001:db8:1:2:3:4:5:6");
            n.has_loc = true;
            n.lat = -33.868820;
            n.lon = 151.209296;
            strcpy(n.dns_addr, "[2001:db8::53]:53");
            n.draining = true;
        } else if (variant == 4) { /* the extremes of a location, one address family */
            strcpy(n.public6, "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255");
            n.has_loc = true;
            n.lat = -90;
            n.lon = 180;
        }
        if (variant == 1) {
            n.removed = true;
            n.region[0] = '\0';
            n.role = ROLE_SITE;
            n.joined_ms = UINT64_MAX;
        } else if (variant == 2) { /* every string at its largest */
            memset(n.name, 'n', NODECFG_NAME_MAX);
            n.name[NODECFG_NAME_MAX] = '\0';
            memset(n.region, 'r', NODECFG_NAME_MAX);
            n.region[NODECFG_NAME_MAX] = '\0';
            memset(n.addr, 'a', NODECFG_ADDR_MAX);
            n.addr[NODECFG_ADDR_MAX] = '\0';
        }
        msgpack_sbuffer_clear(&sb);
        reg_node_pack(&pk, &n);
        memset(&back, 0xee, sizeof(back));
        assert_int_equal(parse_node(&sb, n.id, &back, &why), 0);
        assert_node_equal(&n, &back);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_token_roundtrip(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int variant = 0; variant < 2; variant++) {
        reg_token_t t, back;
        const char *why;
        make_regtoken(&t);
        if (variant == 1) {
            t.revoked = false;
            t.uses_max = 0;
            t.role = ROLE_POP;
            t.created_by[0] = '\0';
            t.id = UINT64_MAX;
        }
        msgpack_sbuffer_clear(&sb);
        reg_token_pack(&pk, &t);
        memset(&back, 0xee, sizeof(back));
        assert_int_equal(parse_token(&sb, t.id, &back, &why), 0);
        assert_regtoken_equal(&t, &back);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_unknown_fields_skipped(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_node_t n, back;
    reg_token_t t, tback;
    const char *why;
    make_node(&n);
    make_regtoken(&t);
    static const struct item extra[] = {
        {.key = "future_map", .kind = K_MAP},
        {.key = "future_nil", .kind = K_NIL},
        {.key = "future_int", .kind = K_INT, .i = -5},
        {.key = "nam", .kind = K_U64, .u = 1},   /* a prefix of a known name */
        {.key = "names", .kind = K_U64, .u = 2}, /* a known name plus a suffix */
    };
    /* Unknown fields before, between and after the known ones. */
    struct item it[NODE_FIELDS + 5], known[NODE_FIELDS];
    node_items(&n, known);
    int k = 0;
    for (int i = 0; i < NODE_FIELDS; i++) {
        if (i % 2 == 0 && i / 2 < 5)
            it[k++] = extra[i / 2];
        it[k++] = known[i];
    }
    it[k++] = extra[4];
    pack_items(&sb, it, k, -1);
    assert_int_equal(parse_node(&sb, n.id, &back, &why), 0);
    assert_node_equal(&n, &back);

    struct item tit[TOKEN_FIELDS + 5], tknown[TOKEN_FIELDS];
    token_items(&t, tknown);
    k = 0;
    for (int i = 0; i < 5; i++)
        tit[k++] = extra[i];
    for (int i = 0; i < TOKEN_FIELDS; i++)
        tit[k++] = tknown[i];
    pack_items(&sb, tit, k, -1);
    assert_int_equal(parse_token(&sb, t.id, &tback, &why), 0);
    assert_regtoken_equal(&t, &tback);

    /* A new field that is itself malformed is still refused: skipping needs its length. */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    mpw_str(&pk, "role");
    mpw_str(&pk, "pop");
    mpw_str(&pk, "future");
    msgpack_sbuffer_write(&sb, "\xd9\x20short", 7);
    assert_int_equal(parse_token(&sb, t.id, &tback, &why), -EBADMSG);
    assert_non_null(why);
    msgpack_sbuffer_destroy(&sb);
}

static void test_optional_and_required(void **state)
{
    static const bool node_required[NODE_FIELDS] = {true,  false, true,  true,
                                                    false, true,  false, false};
    static const bool token_required[TOKEN_FIELDS] = {true, true, false, false, false, true, false};
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    reg_node_t n, back;
    reg_token_t t, tback;
    const char *why;
    make_node(&n);
    make_regtoken(&t);
    struct item it[NODE_FIELDS], tit[TOKEN_FIELDS];
    node_items(&n, it);
    token_items(&t, tit);
    for (int i = 0; i < NODE_FIELDS; i++) {
        pack_items(&sb, it, NODE_FIELDS, i);
        int rc = parse_node(&sb, n.id, &back, &why);
        if (node_required[i]) {
            if (rc != -EBADMSG)
                fail_msg("node record without %s accepted", it[i].key);
            assert_why(why, "missing field");
        } else {
            if (rc != 0)
                fail_msg("node record without optional %s refused: %s", it[i].key, why);
        }
    }
    for (int i = 0; i < TOKEN_FIELDS; i++) {
        pack_items(&sb, tit, TOKEN_FIELDS, i);
        int rc = parse_token(&sb, t.id, &tback, &why);
        if (token_required[i]) {
            if (rc != -EBADMSG)
                fail_msg("token record without %s accepted", tit[i].key);
            assert_why(why, "missing field");
        } else {
            if (rc != 0)
                fail_msg("token record without optional %s refused: %s", tit[i].key, why);
        }
    }
    /* Only the required fields: the others read as zero. */
    struct item req[4] = {it[0], it[2], it[3], it[5]};
    pack_items(&sb, req, 4, -1);
    assert_int_equal(parse_node(&sb, n.id, &back, &why), 0);
    assert_string_equal(back.region, "");
    assert_true(back.joined_ms == 0);
    assert_false(back.removed);
    static const uint8_t zero[32];
    assert_memory_equal(back.sign_pk, zero, 32);
    struct item treq[3] = {tit[0], tit[1], tit[5]};
    pack_items(&sb, treq, 3, -1);
    assert_int_equal(parse_token(&sb, t.id, &tback, &why), 0);
    assert_true(tback.uses_max == 0 && tback.created_ms == 0 && !tback.revoked);
    assert_string_equal(tback.created_by, "");
    msgpack_sbuffer_destroy(&sb);
}

/* Every field replaced in turn by each value of the wrong type or size. */
static void test_wrong_types(void **state)
{
    static const uint8_t bytes[33] = {0};
    static const struct item not_str[] = {
        {.kind = K_U64, .u = 5},
        {.kind = K_BIN, .b = "pop", .blen = 3},
        {.kind = K_NIL},
        {.kind = K_MAP},
    };
    static const struct item not_u64[] = {
        {.kind = K_STR, .s = "5"},
        {.kind = K_INT, .i = -1},
        {.kind = K_BOOL, .v = true},
        {.kind = K_NIL},
    };
    static const struct item not_bin32[] = {
        {.kind = K_BIN, .b = bytes, .blen = 31},
        {.kind = K_BIN, .b = bytes, .blen = 33},
        {.kind = K_BIN, .b = bytes, .blen = 0},
        {.kind = K_STR, .s = "0123456789abcdef0123456789abcdef"},
        {.kind = K_NIL},
    };
    static const struct item not_bool[] = {
        {.kind = K_U64, .u = 1},
        {.kind = K_STR, .s = "true"},
        {.kind = K_NIL},
    };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    reg_node_t n, back;
    reg_token_t t, tback;
    const char *why;
    make_node(&n);
    make_regtoken(&t);
    int refused = 0;
    for (int rec = 0; rec < 2; rec++) {
        struct item it[NODE_FIELDS];
        int nf = rec == 0 ? NODE_FIELDS : TOKEN_FIELDS;
        if (rec == 0)
            node_items(&n, it);
        else
            token_items(&t, it);
        for (int i = 0; i < nf; i++) {
            const struct item *bad;
            size_t nbad;
            switch (it[i].kind) {
            case K_STR:
                bad = not_str, nbad = sizeof(not_str) / sizeof(not_str[0]);
                break;
            case K_U64:
                bad = not_u64, nbad = sizeof(not_u64) / sizeof(not_u64[0]);
                break;
            case K_BIN:
                bad = not_bin32, nbad = sizeof(not_bin32) / sizeof(not_bin32[0]);
                break;
            default:
                bad = not_bool, nbad = sizeof(not_bool) / sizeof(not_bool[0]);
                break;
            }
            for (size_t b = 0; b < nbad; b++) {
                struct item mod[NODE_FIELDS];
                memcpy(mod, it, sizeof(mod));
                mod[i] = bad[b];
                mod[i].key = it[i].key;
                pack_items(&sb, mod, nf, -1);
                int rc = rec == 0 ? parse_node(&sb, n.id, &back, &why)
                                  : parse_token(&sb, t.id, &tback, &why);
                if (rc != -EBADMSG)
                    fail_msg("%s record with %s of kind %d accepted", rec ? "token" : "node",
                             it[i].key, (int)bad[b].kind);
                assert_why(why, "field of the wrong type or size");
                refused++;
            }
        }
    }
    assert_true(refused > 40);
    msgpack_sbuffer_destroy(&sb);
}

static void test_malformed(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_node_t n, back;
    reg_token_t t, tback;
    const char *why;
    make_node(&n);
    make_regtoken(&t);

    /* Every truncation of valid records. */
    reg_node_pack(&pk, &n);
    for (size_t len = 0; len < sb.size; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, sb.data, len);
        why = NULL;
        if (reg_node_parse(cut, len, n.id, &back, &why) != -EBADMSG)
            fail_msg("node record cut to %zu of %zu bytes accepted", len, sb.size);
        assert_non_null(why);
        free(cut);
    }
    msgpack_sbuffer_clear(&sb);
    reg_token_pack(&pk, &t);
    for (size_t len = 0; len < sb.size; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, sb.data, len);
        why = NULL;
        if (reg_token_parse(cut, len, t.id, &tback, &why) != -EBADMSG)
            fail_msg("token record cut to %zu of %zu bytes accepted", len, sb.size);
        assert_non_null(why);
        free(cut);
    }
    /* Trailing bytes after the map. */
    msgpack_pack_nil(&pk);
    assert_int_equal(parse_token(&sb, t.id, &tback, &why), -EBADMSG);
    assert_why(why, "trailing bytes");

    /* Not a map; a non-string field name. */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 0);
    assert_int_equal(parse_node(&sb, n.id, &back, &why), -EBADMSG);
    assert_why(why, "not a map");
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_uint32(&pk, 1);
    msgpack_pack_uint32(&pk, 1);
    assert_int_equal(parse_node(&sb, n.id, &back, &why), -EBADMSG);
    assert_why(why, "non-string field name");
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 1);
    mpw_bin(&pk, "role", 4);
    mpw_str(&pk, "pop");
    assert_int_equal(parse_token(&sb, t.id, &tback, &why), -EBADMSG);
    assert_why(why, "non-string field name");

    /* A map header claiming more pairs than there are bytes. */
    static const uint8_t huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa4, 'n', 'a', 'm', 'e'};
    assert_int_equal(reg_node_parse(huge, sizeof(huge), n.id, &back, &why), -EBADMSG);
    assert_int_equal(reg_token_parse(huge, sizeof(huge), t.id, &tback, &why), -EBADMSG);
    assert_int_equal(reg_node_parse(NULL, 0, n.id, &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

static void test_oversize_strings(void **state)
{
    char big[300];
    memset(big, 'x', sizeof(big));
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    reg_node_t n, back;
    reg_token_t t, tback;
    const char *why;
    make_node(&n);
    make_regtoken(&t);
    struct item it[NODE_FIELDS], tit[TOKEN_FIELDS];

    /* {field index, largest accepted length} */
    static const struct {
        int field;
        size_t max;
    } node_limits[] = {{0, NODECFG_NAME_MAX}, {1, NODECFG_NAME_MAX}, {2, NODECFG_ADDR_MAX}},
      token_limits[] = {{4, NODECFG_NAME_MAX}};
    for (size_t l = 0; l < 3; l++) {
        for (size_t extra = 0; extra < 3; extra++) {
            size_t len = node_limits[l].max + extra;
            node_items(&n, it);
            it[node_limits[l].field].s = big;
            it[node_limits[l].field].slen = len;
            pack_items(&sb, it, NODE_FIELDS, -1);
            int rc = parse_node(&sb, n.id, &back, &why);
            if (extra == 0) {
                assert_int_equal(rc, 0);
                assert_int_equal(strlen(node_limits[l].field == 0   ? back.name
                                        : node_limits[l].field == 1 ? back.region
                                                                    : back.addr),
                                 len);
            } else {
                if (rc != -EBADMSG)
                    fail_msg("%s of %zu bytes accepted", it[node_limits[l].field].key, len);
            }
        }
    }
    for (size_t l = 0; l < 1; l++) {
        for (size_t extra = 0; extra < 3; extra++) {
            size_t len = token_limits[l].max + extra;
            token_items(&t, tit);
            tit[token_limits[l].field].s = big;
            tit[token_limits[l].field].slen = len;
            pack_items(&sb, tit, TOKEN_FIELDS, -1);
            int rc = parse_token(&sb, t.id, &tback, &why);
            if (extra == 0)
                assert_int_equal(rc, 0);
            else if (rc != -EBADMSG)
                fail_msg("%s of %zu bytes accepted", tit[token_limits[l].field].key, len);
        }
    }
    /* A NUL inside a string would cut it short where C reads it: refused. */
    node_items(&n, it);
    it[0].s = "pop\0evil";
    it[0].slen = 8;
    pack_items(&sb, it, NODE_FIELDS, -1);
    assert_int_equal(parse_node(&sb, n.id, &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

/* Roles are an enum in memory and the strings "pop" and "site" in records: both directions,
 * and anything else refused. */
static void test_roles(void **state)
{
    enum node_role r;
    assert_string_equal(node_role_name(ROLE_POP), "pop");
    assert_string_equal(node_role_name(ROLE_SITE), "site");
    assert_string_equal(node_role_name((enum node_role)7), "?");
    assert_int_equal(node_role_parse("pop", 3, &r), 0);
    assert_int_equal(r, ROLE_POP);
    assert_int_equal(node_role_parse("site", 4, &r), 0);
    assert_int_equal(r, ROLE_SITE);
    assert_int_equal(node_role_parse("sitex", 4, &r), 0); /* the length given is what counts */
    static const char *const bad[] = {"", "po", "pops", "POP", "Site", "relay", "pop ", "?"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(node_role_parse(bad[i], strlen(bad[i]), &r), -EINVAL);

    /* The stored form is the string, and a record with another role is refused. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_node_t n, back;
    reg_token_t t, tback;
    const char *why;
    make_node(&n);
    n.role = ROLE_SITE;
    reg_node_pack(&pk, &n);
    assert_non_null(memmem(sb.data, sb.size, "\xa4role\xa4site", 10));
    make_regtoken(&t);
    t.role = ROLE_POP;
    msgpack_sbuffer_clear(&sb);
    reg_token_pack(&pk, &t);
    assert_non_null(memmem(sb.data, sb.size, "\xa4role\xa3pop", 9));
    struct item it[NODE_FIELDS], tit[TOKEN_FIELDS];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        node_items(&n, it);
        it[5].s = bad[i];
        pack_items(&sb, it, NODE_FIELDS, -1);
        assert_int_equal(parse_node(&sb, n.id, &back, &why), -EBADMSG);
        token_items(&t, tit);
        tit[0].s = bad[i];
        pack_items(&sb, tit, TOKEN_FIELDS, -1);
        assert_int_equal(parse_token(&sb, t.id, &tback, &why), -EBADMSG);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_key_id_mismatch(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_node_t a, b, back;
    const char *why;
    make_node(&a);
    make_node(&b);
    assert_true(a.id != b.id);
    /* b's record (b's key) stored under node/<a's id>: a record may not bind b's key to a. */
    reg_node_pack(&pk, &b);
    assert_int_equal(parse_node(&sb, a.id, &back, &why), -EBADMSG);
    assert_why(why, "curve_pk does not belong to the record's node id");
    assert_int_equal(parse_node(&sb, b.id ^ 1, &back, &why), -EBADMSG);
    assert_int_equal(parse_node(&sb, 0, &back, &why), -EBADMSG);
    assert_int_equal(parse_node(&sb, b.id, &back, &why), 0);
    assert_true(back.id == b.id);
    msgpack_sbuffer_destroy(&sb);
}

static void test_keys(void **state)
{
    char key[64];
    uint64_t id;
    reg_node_key(0x00ab00cd00ef0012ull, key, sizeof(key));
    assert_string_equal(key, "node/00ab00cd00ef0012");
    reg_token_key(0xfedcba9876543210ull, key, sizeof(key));
    assert_string_equal(key, "token/fedcba9876543210");
    reg_tokenuse_key(1, UINT64_MAX, key, sizeof(key));
    assert_string_equal(key, "tokenuse/0000000000000001/ffffffffffffffff");

    static const uint64_t ids[] = {0, 1, 0x00ab00cd00ef0012ull, UINT64_MAX};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        reg_node_key(ids[i], key, sizeof(key));
        id = 42;
        assert_int_equal(reg_node_key_id(key, strlen(key), &id), 0);
        assert_true(id == ids[i]);
    }

    static const char *const bad[] = {
        "token/00ab00cd00ef0012", /* another prefix */
        "Node/00ab00cd00ef0012",  /* prefix case */
        "node00ab00cd00ef0012x",  /* no slash */
        "node/00ab00cd00ef001",   /* 15 digits */
        "node/00ab00cd00ef00123", /* 17 digits */
        "node/00ab00cd00ef001g",  /* not hex */
        "node/00AB00CD00EF0012",  /* uppercase: keys are written lowercase */
        "node/00ab00cd00ef001F",  /* one uppercase digit */
        "node/ 0ab00cd00ef0012",  /* space */
        "node/-0ab00cd00ef0012",  /* sign */
        "node/0x00cd00ef001234",  /* 0x */
        "node/",
        "node",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        id = 42;
        if (reg_node_key_id(bad[i], strlen(bad[i]), &id) != -EINVAL)
            fail_msg("key \"%s\" accepted", bad[i]);
        assert_true(id == 42); /* untouched on error */
    }
    /* klen is what counts, not the NUL: a valid key followed by more bytes is refused, and a
     * NUL inside the digits too. */
    assert_int_equal(reg_node_key_id("node/00ab00cd00ef0012", 20, &id), -EINVAL);
    assert_int_equal(reg_node_key_id("node/00ab00cd00ef0012/x", 23, &id), -EINVAL);
    assert_int_equal(reg_node_key_id("node/00ab00cd\0000ef0012", 21, &id), -EINVAL);
}

static int pack_node_with(msgpack_sbuffer *sb, const reg_node_t *n, const struct item *extra,
                          int nextra, const char **why)
{
    struct item it[NODE_FIELDS + 4];
    node_items(n, it);
    for (int i = 0; i < nextra; i++)
        it[NODE_FIELDS + i] = extra[i];
    pack_items(sb, it, NODE_FIELDS + nextra, -1);
    reg_node_t back;
    return parse_node(sb, n->id, &back, why);
}

static void test_node_dns_fields(void **state)
{
    (void)state;
    msgpack_sbuffer sb, sb2;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&sb2);
    reg_node_t n;
    const char *why;
    make_node(&n);

    /* Without them, the record is the eight fields it always was, byte for byte. */
    struct item it[NODE_FIELDS];
    node_items(&n, it);
    pack_items(&sb, it, NODE_FIELDS, -1);
    msgpack_packer_init(&pk, &sb2, msgpack_sbuffer_write);
    reg_node_pack(&pk, &n);
    assert_int_equal(sb.size, sb2.size);
    assert_memory_equal(sb.data, sb2.data, sb.size);

    /* Microdegrees on the wire: exact, and the same on every node. */
    n.has_loc = true;
    n.lat = 48.8566;
    n.lon = -2.3522;
    msgpack_sbuffer_clear(&sb2);
    reg_node_pack(&pk, &n);
    reg_node_t back;
    assert_int_equal(parse_node(&sb2, n.id, &back, &why), 0);
    assert_true(back.has_loc && back.lat == 48.8566 && back.lon == -2.3522);
    n.has_loc = false;

    struct {
        struct item extra[2];
        int nextra;
        const char *why;
    } bad[] = {
        {{{.key = "public4", .kind = K_STR, .s = "10.0.0"}}, 1, "public4 is not an IPv4 address"},
        {{{.key = "public4", .kind = K_STR, .s = "::1"}}, 1, "public4 is not an IPv4 address"},
        {{{.key = "public4", .kind = K_STR, .s = "0.0.0.0"}}, 1, "public4 is not an IPv4 address"},
        {{{.key = "public4", .kind = K_U64, .u = 1}}, 1, NULL},
        {{{.key = "public6", .kind = K_STR, .s = "10.0.0.1"}}, 1, "public6 is not an IPv6 address"},
        {{{.key = "public6", .kind = K_STR, .s = "::"}}, 1, "public6 is not an IPv6 address"},
        {{{.key = "lat_udeg", .kind = K_INT, .i = 1}},
         1,
         "a location needs both lat_udeg and lon_udeg"},
        {{{.key = "lon_udeg", .kind = K_INT, .i = 1}},
         1,
         "a location needs both lat_udeg and lon_udeg"},
        {{{.key = "lat_udeg", .kind = K_INT, .i = 90000001}, {.key = "lon_udeg", .kind = K_INT}},
         2,
         "lat_udeg must be within +-90000000 and lon_udeg within +-180000000"},
        {{{.key = "lat_udeg", .kind = K_INT}, {.key = "lon_udeg", .kind = K_INT, .i = -180000001}},
         2,
         "lat_udeg must be within +-90000000 and lon_udeg within +-180000000"},
        {{{.key = "lat_udeg", .kind = K_STR, .s = "1"}, {.key = "lon_udeg", .kind = K_INT}},
         2,
         "lat_udeg and lon_udeg must be integers (microdegrees)"},
        {{{.key = "dns_addr", .kind = K_STR, .s = "10.0.0.1"}}, 1, "dns_addr is not host:port"},
        {{{.key = "dns_addr", .kind = K_STR, .s = "10.0.0.1:0"}}, 1, "dns_addr is not host:port"},
        {{{.key = "draining", .kind = K_STR, .s = "yes"}}, 1, NULL},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(pack_node_with(&sb, &n, bad[i].extra, bad[i].nextra, &why), -EBADMSG);
        assert_non_null(why);
        if (bad[i].why)
            assert_string_equal(why, bad[i].why);
    }
    /* The good ones, written by hand (as another version might). */
    struct item good[4] = {
        {.key = "public4", .kind = K_STR, .s = "198.51.100.1"},
        {.key = "lat_udeg", .kind = K_INT, .i = -90000000},
        {.key = "lon_udeg", .kind = K_U64, .u = 180000000},
        {.key = "draining", .kind = K_BOOL, .v = false},
    };
    assert_int_equal(pack_node_with(&sb, &n, good, 4, &why), 0);
    assert_int_equal(parse_node(&sb, n.id, &back, &why), 0);
    assert_string_equal(back.public4, "198.51.100.1");
    assert_true(back.has_loc && back.lat == -90.0 && back.lon == 180.0);
    assert_false(back.draining);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&sb2);
}

/* Connector replicas: a site node's optional site field (absent = its name is the site, so the
 * first connector's record is what it always was) and a replica token's site_token. */
static void test_site_replicas(void **state)
{
    (void)state;
    msgpack_sbuffer sb, sb2;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&sb2);
    const char *why;
    reg_node_t n, back;
    make_node(&n);
    n.role = ROLE_SITE;
    strcpy(n.name, "branch");
    assert_string_equal(reg_node_site(&n), "branch");

    /* Without site: the eight fields, byte for byte. */
    struct item it[NODE_FIELDS];
    node_items(&n, it);
    pack_items(&sb, it, NODE_FIELDS, -1);
    msgpack_packer_init(&pk, &sb2, msgpack_sbuffer_write);
    reg_node_pack(&pk, &n);
    assert_int_equal(sb.size, sb2.size);
    assert_memory_equal(sb.data, sb2.data, sb.size);

    /* A replica: its own name, the site in site; round trips. */
    strcpy(n.name, "branch-2");
    strcpy(n.site, "branch");
    msgpack_sbuffer_clear(&sb2);
    reg_node_pack(&pk, &n);
    memset(&back, 0xee, sizeof(back));
    assert_int_equal(parse_node(&sb2, n.id, &back, &why), 0);
    assert_node_equal(&n, &back);
    assert_string_equal(reg_node_site(&back), "branch");

    /* Refused: a site on a PoP, an invalid site name, a site of the wrong type. */
    struct item site_bad = {.key = "site", .kind = K_STR, .s = "Not_A_Name"};
    n.site[0] = '\0';
    assert_int_equal(pack_node_with(&sb, &n, &site_bad, 1, &why), -EBADMSG);
    assert_why(why, "site is set on a PoP or is not a valid site name");
    struct item site_num = {.key = "site", .kind = K_U64, .u = 7};
    assert_int_equal(pack_node_with(&sb, &n, &site_num, 1, &why), -EBADMSG);
    struct item site_ok = {.key = "site", .kind = K_STR, .s = "branch"};
    assert_int_equal(pack_node_with(&sb, &n, &site_ok, 1, &why), 0);
    n.role = ROLE_POP;
    assert_int_equal(pack_node_with(&sb, &n, &site_ok, 1, &why), -EBADMSG);
    assert_why(why, "site is set on a PoP or is not a valid site name");

    /* A replica token: site_token round trips; it needs a site. */
    reg_token_t t, tback;
    make_regtoken(&t);
    strcpy(t.site, "branch");
    t.site_token = 0xfedcba9876543210ull;
    msgpack_sbuffer_clear(&sb2);
    reg_token_pack(&pk, &t);
    memset(&tback, 0xee, sizeof(tback));
    assert_int_equal(parse_token(&sb2, t.id, &tback, &why), 0);
    assert_regtoken_equal(&t, &tback);
    t.site[0] = '\0';
    msgpack_sbuffer_clear(&sb2);
    reg_token_pack(&pk, &t);
    assert_int_equal(parse_token(&sb2, t.id, &tback, &why), -EBADMSG);
    assert_why(why, "site_token on a token bound to no site");
    /* Without it, a token's record is the seven fields it always was. */
    t.site_token = 0;
    struct item ti[TOKEN_FIELDS];
    token_items(&t, ti);
    pack_items(&sb, ti, TOKEN_FIELDS, -1);
    msgpack_sbuffer_clear(&sb2);
    reg_token_pack(&pk, &t);
    assert_int_equal(sb.size, sb2.size);
    assert_memory_equal(sb.data, sb2.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&sb2);
}

static void test_tokenuse_pack(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_tokenuse_pack(&pk, "site-7", 1234567890123ull);
    mpr_t r;
    uint32_t pairs, l;
    const char *s;
    uint64_t v;
    mpr_init(&r, sb.data, sb.size);
    assert_int_equal(mpr_map(&r, &pairs), 0);
    assert_int_equal(pairs, 2);
    assert_int_equal(mpr_str(&r, &s, &l), 0);
    assert_int_equal(l, 4);
    assert_memory_equal(s, "name", 4);
    assert_int_equal(mpr_str(&r, &s, &l), 0);
    assert_int_equal(l, 6);
    assert_memory_equal(s, "site-7", 6);
    assert_int_equal(mpr_str(&r, &s, &l), 0);
    assert_int_equal(l, 5);
    assert_memory_equal(s, "at_ms", 5);
    assert_int_equal(mpr_uint(&r, &v), 0);
    assert_true(v == 1234567890123ull);
    assert_int_equal(r.left, 0);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_node_roundtrip),
        cmocka_unit_test(test_token_roundtrip),
        cmocka_unit_test(test_unknown_fields_skipped),
        cmocka_unit_test(test_optional_and_required),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_oversize_strings),
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_key_id_mismatch),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_tokenuse_pack),
        cmocka_unit_test(test_node_dns_fields),
        cmocka_unit_test(test_site_replicas),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
