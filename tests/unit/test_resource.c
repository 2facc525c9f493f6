/* Site and resource records (node/records/resource.h, and the site parts of
 * node/records/registry.h): a resource record round trips; unknown (later) fields are skipped;
 * every malformed or invalid field is refused with a reason that names it; resource_check names the
 * bad value; resource_list reads a real store and skips bad records. Also the site record and the
 * token's site field, which are the registry's side of the same feature. */
#include "common/mp.h"
#include "node/records/identity.h"
#include "node/records/registry.h"
#include "node/records/resource.h"
#include "storage/store.h"

#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- records built field by field, so a case can drop, change or add any one ------------- */

enum kind { K_STR, K_U64, K_INT, K_BOOL, K_NIL, K_STRS, K_MIXED, K_MAP, K_BIN };

struct item {
    const char *key;
    enum kind kind;
    const char *s; /* K_STR; slen if it holds a NUL */
    size_t slen;
    uint64_t u;              /* K_U64 */
    int64_t i;               /* K_INT */
    bool v;                  /* K_BOOL */
    const char *const *strs; /* K_STRS: n strings */
    size_t n;
};

static const char *const TARGETS2[] = {"10.0.0.5:22", "[fd00::1]:8080"};

static const struct item BASE[] = {
    {.key = "name", .kind = K_STR, .s = "web"},
    {.key = "site", .kind = K_STR, .s = "branch-1"},
    {.key = "targets", .kind = K_STRS, .strs = TARGETS2, .n = 2},
    {.key = "tcp_port", .kind = K_U64, .u = 8022},
    {.key = "health", .kind = K_STR, .s = "http:/healthz"},
    {.key = "sticky", .kind = K_BOOL, .v = true},
    {.key = "created_ms", .kind = K_U64, .u = 1700000000000ull},
};
#define NBASE (sizeof(BASE) / sizeof(BASE[0]))

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
    case K_BOOL:
        if (it->v)
            msgpack_pack_true(pk);
        else
            msgpack_pack_false(pk);
        break;
    case K_NIL:
        msgpack_pack_nil(pk);
        break;
    case K_STRS:
        msgpack_pack_array(pk, it->n);
        for (size_t i = 0; i < it->n; i++)
            mpw_str(pk, it->strs[i]);
        break;
    case K_MIXED: /* ["10.0.0.5:22", 7] */
        msgpack_pack_array(pk, 2);
        mpw_str(pk, "10.0.0.5:22");
        msgpack_pack_uint32(pk, 7);
        break;
    case K_MAP: /* {"realm": "x", "users": [1, 2]} */
        msgpack_pack_map(pk, 2);
        mpw_kv_str(pk, "realm", "x");
        mpw_str(pk, "users");
        msgpack_pack_array(pk, 2);
        msgpack_pack_uint32(pk, 1);
        msgpack_pack_uint32(pk, 2);
        break;
    case K_BIN:
        mpw_bin(pk, "abc", 3);
        break;
    }
}

enum op { OP_SET, OP_DROP, OP_ADD };

/* BASE with one change: SET replaces the value of key, DROP leaves key out, ADD appends `with`
 * (under its own key, which may repeat one of BASE's). */
static void pack_record(msgpack_sbuffer *sb, enum op op, const char *key, const struct item *with)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    size_t n = NBASE + (op == OP_ADD ? 1 : 0) - (op == OP_DROP ? 1 : 0);
    msgpack_pack_map(&pk, n);
    for (size_t i = 0; i < NBASE; i++) {
        bool match = key && strcmp(BASE[i].key, key) == 0;
        if (match && op == OP_DROP)
            continue;
        mpw_str(&pk, BASE[i].key);
        pack_value(&pk, match && op == OP_SET ? with : &BASE[i]);
    }
    if (op == OP_ADD) {
        mpw_str(&pk, with->key);
        pack_value(&pk, with);
    }
}

static int parse(const msgpack_sbuffer *sb, const char *name, resource_t *r, const char **why)
{
    static char why_buf[400];
    *why = NULL;
    return resource_parse((const uint8_t *)sb->data, sb->size, name, r, why_buf, sizeof(why_buf),
                          why);
}

/* ---- round trips --------------------------------------------------------------------------- */

static void make_resource(resource_t *r)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "ssh-jump");
    snprintf(r->site, sizeof(r->site), "branch-1");
    for (unsigned i = 0; i < RESOURCE_TARGETS_MAX; i++)
        snprintf(r->targets[i], sizeof(r->targets[i]), "10.0.%u.%u:%u", i, i + 1, 1000 + i);
    snprintf(r->targets[3], sizeof(r->targets[3]), "[fd00::1]:22");
    snprintf(r->targets[4], sizeof(r->targets[4]), "db.internal.example:5432");
    r->ntargets = RESOURCE_TARGETS_MAX;
    r->tcp_port = 65535;
    r->health = RESOURCE_HEALTH_HTTP;
    snprintf(r->http_path, sizeof(r->http_path), "/status?full=1&x=%%20");
    r->sticky = true;
    r->created_ms = 1700000000123ull;
}

static void assert_resource_equal(const resource_t *a, const resource_t *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->site, b->site);
    assert_int_equal(a->ntargets, b->ntargets);
    for (unsigned i = 0; i < a->ntargets; i++)
        assert_string_equal(a->targets[i], b->targets[i]);
    assert_int_equal(a->tcp_port, b->tcp_port);
    assert_int_equal(a->health, b->health);
    assert_string_equal(a->http_path, b->http_path);
    assert_int_equal(a->sticky, b->sticky);
    assert_int_equal(a->created_ms, b->created_ms);
}

static void test_roundtrip(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    resource_t r, back;
    const char *why;
    make_resource(&r);
    for (int variant = 0; variant < 4; variant++) {
        if (variant == 1) { /* the smallest: one target, tcp, not sticky */
            r.ntargets = 1;
            r.health = RESOURCE_HEALTH_TCP;
            r.http_path[0] = '\0';
            r.sticky = false;
            r.tcp_port = 1;
            r.created_ms = 0;
        } else if (variant == 2) { /* the longest http path */
            r.health = RESOURCE_HEALTH_HTTP;
            memset(r.http_path, 'a', RESOURCE_HTTP_PATH_MAX);
            r.http_path[0] = '/';
            r.http_path[RESOURCE_HTTP_PATH_MAX] = '\0';
        } else if (variant == 3) { /* names at their longest */
            memset(r.name, 'n', NODECFG_NAME_MAX);
            r.name[NODECFG_NAME_MAX] = '\0';
            memset(r.site, 's', NODECFG_NAME_MAX);
            r.site[NODECFG_NAME_MAX] = '\0';
        }
        msgpack_sbuffer_clear(&sb);
        resource_pack(&pk, &r);
        if (parse(&sb, r.name, &back, &why) != 0)
            fail_msg("variant %d refused: %s", variant, why);
        assert_resource_equal(&r, &back);
    }
    /* The record as sent by BASE, field by field. */
    pack_record(&sb, OP_SET, NULL, NULL);
    assert_int_equal(parse(&sb, "web", &back, &why), 0);
    assert_string_equal(back.name, "web");
    assert_int_equal(back.ntargets, 2);
    assert_string_equal(back.targets[1], "[fd00::1]:8080");
    assert_int_equal(back.tcp_port, 8022);
    assert_int_equal(back.health, RESOURCE_HEALTH_HTTP);
    assert_string_equal(back.http_path, "/healthz");
    assert_true(back.sticky);
    msgpack_sbuffer_destroy(&sb);
}

/* Later versions add fields; a node that does not know them must still read the record. (The
 * HTTP fields host, path_prefix and auth are known now: the test_http_* cases cover them.) */
static void test_unknown_fields_skipped(void **state)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    resource_t r;
    const char *why;
    static const struct item future[] = {
        {.key = "realm", .kind = K_MAP},
        {.key = "future_nil", .kind = K_NIL},
        {.key = "future_int", .kind = K_INT, .i = -5},
        {.key = "future_bin", .kind = K_BIN},
        {.key = "nam", .kind = K_U64, .u = 1},      /* a prefix of a known name */
        {.key = "targetsx", .kind = K_U64, .u = 1}, /* a known name plus a suffix */
    };
    for (size_t i = 0; i < sizeof(future) / sizeof(future[0]); i++) {
        pack_record(&sb, OP_ADD, NULL, &future[i]);
        if (parse(&sb, "web", &r, &why) != 0)
            fail_msg("unknown field %s refused: %s", future[i].key, why);
        assert_string_equal(r.site, "branch-1");
    }
    /* Optional fields may be left out. */
    pack_record(&sb, OP_DROP, "sticky", NULL);
    assert_int_equal(parse(&sb, "web", &r, &why), 0);
    assert_false(r.sticky);
    pack_record(&sb, OP_DROP, "created_ms", NULL);
    assert_int_equal(parse(&sb, "web", &r, &why), 0);
    assert_int_equal(r.created_ms, 0);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- every bad field, refused with its reason ---------------------------------------------- */

struct bad_case {
    const char *desc;
    enum op op;
    const char *key;
    struct item with;
    const char *why; /* a substring of the reason */
};

static const char *const TARGETS0[] = {NULL};
static const char *const TARGETS17[] = {"h:1",  "h:2",  "h:3",  "h:4",  "h:5",  "h:6",
                                        "h:7",  "h:8",  "h:9",  "h:10", "h:11", "h:12",
                                        "h:13", "h:14", "h:15", "h:16", "h:17"};
static const char *const T_NOPORT[] = {"10.0.0.5"};
static const char *const T_PORT0[] = {"10.0.0.5:0"};
static const char *const T_PORTBIG[] = {"10.0.0.5:65536"};
static const char *const T_PORTALPHA[] = {"10.0.0.5:ssh"};
static const char *const T_V6BARE[] = {"fd00::1:22"};
static const char *const T_EMPTYHOST[] = {":22"};
static const char *const T_SPACE[] = {"bad host:22"};
static const char *const T_DUP[] = {"a.example:22", "b.example:22", "a.example:22"};
static char T_LONG_BUF[300];
static const char *const T_LONG[] = {T_LONG_BUF};
static char PATH_LONG[5 + RESOURCE_HTTP_PATH_MAX + 2];

static const struct bad_case BAD[] = {
    /* missing required fields */
    {"no name", OP_DROP, "name", {0}, "missing field"},
    {"no site", OP_DROP, "site", {0}, "missing field"},
    {"no targets", OP_DROP, "targets", {0}, "missing field"},
    {"no tcp_port", OP_DROP, "tcp_port", {0}, "missing field"},
    {"no health", OP_DROP, "health", {0}, "missing field"},
    /* wrong types */
    {"name not a string", OP_SET, "name", {.kind = K_U64, .u = 1}, "wrong type"},
    {"site nil", OP_SET, "site", {.kind = K_NIL}, "wrong type"},
    {"targets a string", OP_SET, "targets", {.kind = K_STR, .s = "10.0.0.5:22"}, "not an array"},
    {"a target not a string", OP_SET, "targets", {.kind = K_MIXED}, "not a string"},
    {"tcp_port a string", OP_SET, "tcp_port", {.kind = K_STR, .s = "22"}, "wrong type"},
    {"tcp_port negative", OP_SET, "tcp_port", {.kind = K_INT, .i = -22}, "wrong type"},
    {"health a bool", OP_SET, "health", {.kind = K_BOOL, .v = true}, "wrong type"},
    {"sticky an int", OP_SET, "sticky", {.kind = K_U64, .u = 1}, "wrong type"},
    {"created_ms negative", OP_SET, "created_ms", {.kind = K_INT, .i = -1}, "wrong type"},
    {"a field twice", OP_ADD, NULL, {.key = "site", .kind = K_STR, .s = "other"}, "twice"},
    /* names */
    {"name upper case", OP_SET, "name", {.kind = K_STR, .s = "Web"}, "resource name 'Web'"},
    {"name with '-' first", OP_SET, "name", {.kind = K_STR, .s = "-web"}, "resource name"},
    {"name empty", OP_SET, "name", {.kind = K_STR, .s = ""}, "resource name"},
    {"name 64 bytes",
     OP_SET,
     "name",
     {.kind = K_STR, .s = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
     "wrong type or size"},
    {"name with a NUL", OP_SET, "name", {.kind = K_STR, .s = "we\0b", .slen = 4}, "wrong type"},
    {"name not the key's", OP_SET, "name", {.kind = K_STR, .s = "other"}, "name in its key"},
    {"site invalid", OP_SET, "site", {.kind = K_STR, .s = "branch_1"}, "site name 'branch_1'"},
    /* targets */
    {"no target", OP_SET, "targets", {.kind = K_STRS, .strs = TARGETS0, .n = 0}, "1 to 16"},
    {"17 targets", OP_SET, "targets", {.kind = K_STRS, .strs = TARGETS17, .n = 17}, "1 to 16"},
    {"target without port",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_NOPORT, .n = 1},
     "target '10.0.0.5' is not HOST:PORT"},
    {"target port 0",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_PORT0, .n = 1},
     "target '10.0.0.5:0'"},
    {"target port 65536",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_PORTBIG, .n = 1},
     "target '10.0.0.5:65536'"},
    {"target port not a number",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_PORTALPHA, .n = 1},
     "target '10.0.0.5:ssh'"},
    {"IPv6 target without brackets",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_V6BARE, .n = 1},
     "IPv6 in brackets"},
    {"target without host",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_EMPTYHOST, .n = 1},
     "target ':22'"},
    {"target with a space",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_SPACE, .n = 1},
     "target 'bad host:22'"},
    {"a target twice",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_DUP, .n = 3},
     "target 'a.example:22' is listed twice"},
    {"target over 255 bytes",
     OP_SET,
     "targets",
     {.kind = K_STRS, .strs = T_LONG, .n = 1},
     "at most 255 bytes"},
    /* tcp_port */
    {"tcp_port 0", OP_SET, "tcp_port", {.kind = K_U64, .u = 0}, "tcp_port"},
    {"tcp_port 65536", OP_SET, "tcp_port", {.kind = K_U64, .u = 65536}, "tcp_port"},
    {"tcp_port 2^32+22", OP_SET, "tcp_port", {.kind = K_U64, .u = (1ull << 32) + 22}, "tcp_port"},
    /* health */
    {"health empty", OP_SET, "health", {.kind = K_STR, .s = ""}, "'tcp' or 'http:/PATH'"},
    {"health udp", OP_SET, "health", {.kind = K_STR, .s = "udp"}, "'tcp' or 'http:/PATH'"},
    {"health TCP", OP_SET, "health", {.kind = K_STR, .s = "TCP"}, "'tcp' or 'http:/PATH'"},
    {"health tcp with a path",
     OP_SET,
     "health",
     {.kind = K_STR, .s = "tcp:/x"},
     "'tcp' or 'http:/PATH'"},
    {"health http without path", OP_SET, "health", {.kind = K_STR, .s = "http:"}, "start with '/'"},
    {"health http relative path",
     OP_SET,
     "health",
     {.kind = K_STR, .s = "http:healthz"},
     "start with '/'"},
    {"health http path with a space",
     OP_SET,
     "health",
     {.kind = K_STR, .s = "http:/a b"},
     "printable ASCII without spaces"},
    {"health http path with a control byte",
     OP_SET,
     "health",
     {.kind = K_STR, .s = "http:/a\tb"},
     "printable ASCII"},
    {"health http path with DEL",
     OP_SET,
     "health",
     {.kind = K_STR, .s = "http:/a\x7f"},
     "printable ASCII"},
    {"health http path with UTF-8",
     OP_SET,
     "health",
     {.kind = K_STR, .s = "http:/caf\xc3\xa9"},
     "printable ASCII"},
    {"health http path 201 bytes",
     OP_SET,
     "health",
     {.kind = K_STR, .s = PATH_LONG},
     "longer than 200 bytes"},
};

static void test_bad_fields(void **state)
{
    /* Filled here: static initializers cannot compute them. */
    memset(T_LONG_BUF, 'h', 256);
    memcpy(T_LONG_BUF + 256, ":22", 4);
    memcpy(PATH_LONG, "http:/", 6);
    memset(PATH_LONG + 6, 'p', RESOURCE_HTTP_PATH_MAX);
    PATH_LONG[5 + RESOURCE_HTTP_PATH_MAX + 1] = '\0';

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    resource_t r;
    const char *why;
    int checked = 0;
    for (size_t i = 0; i < sizeof(BAD) / sizeof(BAD[0]); i++) {
        const struct bad_case *c = &BAD[i];
        pack_record(&sb, c->op, c->key, &c->with);
        int rc = parse(&sb, "web", &r, &why);
        if (rc != -EBADMSG)
            fail_msg("%s: accepted (rc %d)", c->desc, rc);
        if (!why || !strstr(why, c->why))
            fail_msg("%s: reason '%s' does not say '%s'", c->desc, why ? why : "(none)", c->why);
        checked++;
    }
    assert_true(checked >= 45);

    /* "http://host/x" is a PATH of "//host/x": odd but harmless (GET //host/x), accepted. */
    struct item url = {.kind = K_STR, .s = "http://host/x"};
    pack_record(&sb, OP_SET, "health", &url);
    assert_int_equal(parse(&sb, "web", &r, &why), 0);
    assert_string_equal(r.http_path, "//host/x");
    msgpack_sbuffer_destroy(&sb);
}

/* Bytes that are not a record at all. */
static void test_bad_bytes(void **state)
{
    resource_t r;
    char why_buf[200];
    const char *why;
    static const struct {
        const char *desc;
        const char *bytes;
        size_t len;
        const char *why;
    } cases[] = {
        {"empty", "", 0, "not a map"},
        {"an array", "\x91\x01", 2, "not a map"},
        {"a non-string key", "\x81\x01\x02", 3, "non-string field name"},
        {"a truncated unknown field",
         "\x81\xa6"
         "future"
         "\xd9\x20short",
         14, "malformed"},
        {"a map claiming more pairs than bytes", "\x8f\xa4name", 6, "missing"},
        {"nil", "\xc0", 1, "not a map"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        why = NULL;
        int rc = resource_parse((const uint8_t *)cases[i].bytes, cases[i].len, "web", &r, why_buf,
                                sizeof(why_buf), &why);
        if (rc != -EBADMSG || !why)
            fail_msg("%s: accepted", cases[i].desc);
        (void)cases[i].why; /* the exact reason for garbage is not part of the contract */
    }

    /* Trailing bytes after a good record; and every truncation of a good record. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_record(&sb, OP_SET, NULL, NULL);
    size_t good = sb.size;
    msgpack_sbuffer_write(&sb, "\xc0", 1);
    assert_int_equal(parse(&sb, "web", &r, &why), -EBADMSG);
    assert_non_null(strstr(why, "trailing"));
    for (size_t n = 0; n < good; n++) {
        uint8_t *copy = malloc(n ? n : 1); /* exact size: ASan sees a read past the end */
        memcpy(copy, sb.data, n);
        why = NULL;
        if (resource_parse(copy, n, "web", &r, why_buf, sizeof(why_buf), &why) != -EBADMSG || !why)
            fail_msg("a record truncated to %zu of %zu bytes was accepted", n, good);
        free(copy);
    }
    msgpack_sbuffer_destroy(&sb);
}

/* resource_check is what resource.add applies: its reasons name the value. */
static void test_check(void **state)
{
    resource_t r;
    char buf[400];
    const char *why;
    make_resource(&r);
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), 0);

    r.ntargets = 0;
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "at least one target"));
    r.ntargets = RESOURCE_TARGETS_MAX + 1;
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "at most 16 targets"));

    make_resource(&r);
    snprintf(r.targets[7], sizeof(r.targets[7]), "10.1.1.1:99999");
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "target '10.1.1.1:99999'"));

    make_resource(&r);
    r.tcp_port = 0;
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "tcp_port"));

    make_resource(&r);
    snprintf(r.http_path, sizeof(r.http_path), "no-slash");
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "start with '/'"));

    make_resource(&r);
    r.health = RESOURCE_HEALTH_TCP; /* tcp with a leftover path: inconsistent */
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    r.health = (enum resource_health)7;
    r.http_path[0] = '\0';
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);

    make_resource(&r);
    snprintf(r.site, sizeof(r.site), "Branch");
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "site name 'Branch'"));

    /* A reason longer than the buffer is cut, never overflows. */
    make_resource(&r);
    memset(r.targets[0], 'x', NODECFG_ADDR_MAX);
    r.targets[0][NODECFG_ADDR_MAX] = '\0';
    char small[16];
    assert_int_equal(resource_check(&r, small, sizeof(small), &why), -EINVAL);
    assert_int_equal(strlen(why), sizeof(small) - 1);
}

static void test_health(void **state)
{
    resource_t r;
    const char *why;
    char out[RESOURCE_HEALTH_MAX + 1];
    static const char *const good[] = {"tcp", "http:/", "http:/healthz", "http:/a/b?c=d&e=%20#f"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        memset(&r, 0, sizeof(r));
        if (resource_health_parse(good[i], strlen(good[i]), &r, &why) != 0)
            fail_msg("'%s' refused: %s", good[i], why);
        resource_health_str(&r, out, sizeof(out));
        assert_string_equal(out, good[i]);
    }
    static const char *const bad[] = {
        "", "tcp ", "http", "http:", "https:/x", "http:x", "http:/ x", "HTTP:/x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (resource_health_parse(bad[i], strlen(bad[i]), &r, &why) != -EINVAL || !why)
            fail_msg("'%s' accepted", bad[i]);
    }
    /* A length that stops before the NUL is honoured: "tcpX" cut at 3 is "tcp". */
    assert_int_equal(resource_health_parse("tcpX", 3, &r, &why), 0);
    assert_int_equal(r.health, RESOURCE_HEALTH_TCP);
}

static void test_keys(void **state)
{
    char key[RESOURCE_KEY_MAX], name63[NODECFG_NAME_MAX + 1];
    assert_int_equal(resource_key("web", key, sizeof(key)), 0);
    assert_string_equal(key, "resource/web");
    memset(name63, 'a', NODECFG_NAME_MAX);
    name63[NODECFG_NAME_MAX] = '\0';
    assert_int_equal(resource_key(name63, key, sizeof(key)), 0);
    assert_int_equal(strlen(key), strlen(RESOURCE_PREFIX) + NODECFG_NAME_MAX);
    assert_int_equal(resource_key(name63, key, 20), -EINVAL);
    assert_int_equal(resource_key("Web", key, sizeof(key)), -EINVAL);
    assert_int_equal(resource_key("a/b", key, sizeof(key)), -EINVAL);
    assert_int_equal(resource_key("", key, sizeof(key)), -EINVAL);

    char skey[REG_SITE_KEY_MAX];
    assert_int_equal(reg_site_key("branch-1", skey, sizeof(skey)), 0);
    assert_string_equal(skey, "site/branch-1");
    assert_int_equal(reg_site_key(name63, skey, sizeof(skey)), 0);
    assert_int_equal(reg_site_key("../x", skey, sizeof(skey)), -EINVAL);
}

/* ---- HTTP resources --------------------------------------------------------------- */

static void make_http(resource_t *r)
{
    make_resource(r);
    snprintf(r->host, sizeof(r->host), "app.example.com");
    snprintf(r->path_prefix, sizeof(r->path_prefix), "/api/v1");
    r->auth = RESOURCE_AUTH_LOGIN;
    for (unsigned i = 0; i < RESOURCE_ALLOW_MAX; i++) {
        snprintf(r->allow_users[i], sizeof(r->allow_users[i]), "user-%u", i);
        snprintf(r->allow_groups[i], sizeof(r->allow_groups[i]), "group-%u", i);
    }
    r->nallow_users = RESOURCE_ALLOW_MAX;
    r->nallow_groups = RESOURCE_ALLOW_MAX;
}

static void assert_http_equal(const resource_t *a, const resource_t *b)
{
    assert_resource_equal(a, b);
    assert_string_equal(a->host, b->host);
    assert_string_equal(a->path_prefix, b->path_prefix);
    assert_int_equal(a->auth, b->auth);
    assert_int_equal(a->nallow_users, b->nallow_users);
    for (unsigned i = 0; i < a->nallow_users; i++)
        assert_string_equal(a->allow_users[i], b->allow_users[i]);
    assert_int_equal(a->nallow_groups, b->nallow_groups);
    for (unsigned i = 0; i < a->nallow_groups; i++)
        assert_string_equal(a->allow_groups[i], b->allow_groups[i]);
}

/* BASE (without its tcp_port when drop_port) plus extra fields. */
static void pack_http(msgpack_sbuffer *sb, bool drop_port, const struct item *extra, size_t ne)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, NBASE - (drop_port ? 1 : 0) + ne);
    for (size_t i = 0; i < NBASE; i++) {
        if (drop_port && strcmp(BASE[i].key, "tcp_port") == 0)
            continue;
        mpw_str(&pk, BASE[i].key);
        pack_value(&pk, &BASE[i]);
    }
    for (size_t i = 0; i < ne; i++) {
        mpw_str(&pk, extra[i].key);
        pack_value(&pk, &extra[i]);
    }
}

static void test_http_roundtrip(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    resource_t r, back;
    char buf[400];
    const char *why;
    make_http(&r);
    for (int variant = 0; variant < 5; variant++) {
        if (variant == 1) { /* HTTP only, no auth, no lists, prefix "/" */
            r.tcp_port = 0;
            r.auth = RESOURCE_AUTH_NONE;
            r.nallow_users = r.nallow_groups = 0;
            snprintf(r.path_prefix, sizeof(r.path_prefix), "/");
        } else if (variant == 2) { /* the longest host and prefix */
            char *h = r.host;
            for (int l = 0; l < 4; l++, h += 64) { /* 4 labels of 63 bytes, dots between */
                memset(h, 'a' + l, 63);
                if (l < 3)
                    h[63] = '.';
            }
            r.host[RESOURCE_HOST_MAX] = '\0'; /* cut to 253: the last label has 61 bytes */
            memset(r.path_prefix, 'p', RESOURCE_PREFIX_MAX);
            r.path_prefix[0] = '/';
            r.path_prefix[RESOURCE_PREFIX_MAX] = '\0';
        } else if (variant == 3) { /* login with groups only */
            r.auth = RESOURCE_AUTH_LOGIN;
            r.nallow_groups = 1;
        } else if (variant == 4) { /* an IPv4-looking host is a DNS name of digits */
            snprintf(r.host, sizeof(r.host), "10.0.0.1");
            r.tcp_port = 80;
        }
        if (resource_check(&r, buf, sizeof(buf), &why))
            fail_msg("variant %d: %s", variant, why);
        msgpack_sbuffer_clear(&sb);
        resource_pack(&pk, &r);
        if (parse(&sb, r.name, &back, &why) != 0)
            fail_msg("variant %d refused: %s", variant, why);
        assert_http_equal(&r, &back);
    }

    /* Fields as another node may send them: no tcp_port, no path_prefix (so "/"), no auth. */
    static const struct item host_only[] = {{.key = "host", .kind = K_STR, .s = "x.example"}};
    pack_http(&sb, true, host_only, 1);
    assert_int_equal(parse(&sb, "web", &back, &why), 0);
    assert_int_equal(back.tcp_port, 0);
    assert_string_equal(back.host, "x.example");
    assert_string_equal(back.path_prefix, "/");
    assert_int_equal(back.auth, RESOURCE_AUTH_NONE);
    assert_int_equal(back.nallow_users + back.nallow_groups, 0);
    static const struct item port0[] = {{.key = "host", .kind = K_STR, .s = "x.example"},
                                        {.key = "tcp_port", .kind = K_U64, .u = 0}};
    pack_http(&sb, true, port0, 2);
    assert_int_equal(parse(&sb, "web", &back, &why), 0);
    assert_int_equal(back.tcp_port, 0);
    msgpack_sbuffer_destroy(&sb);
}

/* A TCP-only resource packs to exactly the first version's record, and such records still
 * decode. */
static void test_http_old_records(void **state)
{
    msgpack_sbuffer old, now;
    msgpack_packer pk;
    msgpack_sbuffer_init(&old);
    msgpack_sbuffer_init(&now);
    msgpack_packer_init(&pk, &now, msgpack_sbuffer_write);
    resource_t r;
    const char *why;
    pack_record(&old, OP_SET, NULL, NULL); /* the first version's shape, in resource_pack's order */
    assert_int_equal(parse(&old, "web", &r, &why), 0);
    assert_string_equal(r.host, "");
    assert_string_equal(r.path_prefix, "");
    assert_int_equal(r.auth, RESOURCE_AUTH_NONE);
    assert_int_equal(r.nallow_users + r.nallow_groups, 0);
    resource_pack(&pk, &r);
    assert_int_equal(now.size, old.size);
    assert_memory_equal(now.data, old.data, old.size);
    msgpack_sbuffer_destroy(&old);
    msgpack_sbuffer_destroy(&now);
}

static const char *const U_ONE[] = {"alice"};
static const char *const U_BAD[] = {"Alice"};
static const char *const U_DUP[] = {"alice", "bob", "alice"};
static const char *const U_33[] = {"u1",  "u2",  "u3",  "u4",  "u5",  "u6",  "u7",  "u8",  "u9",
                                   "u10", "u11", "u12", "u13", "u14", "u15", "u16", "u17", "u18",
                                   "u19", "u20", "u21", "u22", "u23", "u24", "u25", "u26", "u27",
                                   "u28", "u29", "u30", "u31", "u32", "u33"};
static char HOST_254[RESOURCE_HOST_MAX + 2];
static char LABEL_64[80];
static char PREFIX_201[RESOURCE_PREFIX_MAX + 2];

#define H(v)                                                                                       \
    {                                                                                              \
        .key = "host", .kind = K_STR, .s = (v)                                                     \
    }
#define LOGIN                                                                                      \
    {                                                                                              \
        .key = "auth", .kind = K_STR, .s = "login"                                                 \
    }
#define PFX(v)                                                                                     \
    {                                                                                              \
        .key = "path_prefix", .kind = K_STR, .s = (v)                                              \
    }

static const struct {
    const char *desc;
    bool drop_port;
    struct item extra[3];
    size_t ne;
    const char *why; /* a substring of the reason */
} HTTP_BAD[] = {
    {"no tcp_port and no host", true, {{.key = "sticky", .kind = K_NIL}}, 0, "missing field"},
    {"host upper case", true, {H("App.example.com")}, 1, "host 'App.example.com' is invalid"},
    /* "*." and a name of two labels or more is a wildcard host; nothing else with a '*' */
    {"host wildcard of a TLD", true, {H("*.com")}, 1, "host '*.com' is invalid"},
    {"host wildcard inside", true, {H("a.*.example.com")}, 1, "host 'a.*.example.com' is invalid"},
    {"host trailing dot", true, {H("app.example.com.")}, 1, "is invalid"},
    {"host empty label", true, {H("app..example")}, 1, "is invalid"},
    {"host label starts with '-'", true, {H("-app.example")}, 1, "is invalid"},
    {"host label ends with '-'", true, {H("app-.example")}, 1, "is invalid"},
    {"host with a port", true, {H("app.example:80")}, 1, "is invalid"},
    {"host with '_'", true, {H("a_b.example")}, 1, "is invalid"},
    {"host label of 64 bytes", true, {H(LABEL_64)}, 1, "is invalid"},
    {"host of 254 bytes", true, {H(HOST_254)}, 1, "longer than 253"},
    {"host empty", true, {H("")}, 1, "host is empty"},
    {"host not a string", true, {{.key = "host", .kind = K_U64, .u = 1}}, 1, "wrong type"},
    {"prefix relative", true, {H("a.example"), PFX("api")}, 2, "must start with '/'"},
    {"prefix empty", true, {H("a.example"), PFX("")}, 2, "path_prefix is empty"},
    {"prefix with a space", true, {H("a.example"), PFX("/a b")}, 2, "without spaces"},
    {"prefix with '?'", true, {H("a.example"), PFX("/a?b")}, 2, "'?' or '#'"},
    {"prefix with '#'", true, {H("a.example"), PFX("/a#b")}, 2, "'?' or '#'"},
    {"prefix with UTF-8", true, {H("a.example"), PFX("/caf\xc3\xa9")}, 2, "printable ASCII"},
    {"prefix 201 bytes", true, {H("a.example"), PFX(PREFIX_201)}, 2, "longer than 200"},
    {"prefix without host", false, {PFX("/a")}, 1, "need a host"},
    {"auth bogus",
     true,
     {H("a.example"), {.key = "auth", .kind = K_STR, .s = "basic"}},
     2,
     "'none' or 'login'"},
    {"auth a map", true, {H("a.example"), {.key = "auth", .kind = K_MAP}}, 2, "wrong type"},
    {"auth login without host", false, {LOGIN}, 1, "need a host"},
    {"allow_users with auth none",
     true,
     {H("a.example"), {.key = "allow_users", .kind = K_STRS, .strs = U_ONE, .n = 1}},
     2,
     "need auth login"},
    {"allow_groups without auth",
     true,
     {H("a.example"), {.key = "allow_groups", .kind = K_STRS, .strs = U_ONE, .n = 1}},
     2,
     "need auth login"},
    {"allow_users invalid name",
     true,
     {H("a.example"), LOGIN, {.key = "allow_users", .kind = K_STRS, .strs = U_BAD, .n = 1}},
     3,
     "allow_users: name 'Alice' is invalid"},
    {"allow_groups a name twice",
     true,
     {H("a.example"), LOGIN, {.key = "allow_groups", .kind = K_STRS, .strs = U_DUP, .n = 3}},
     3,
     "allow_groups: 'alice' is listed twice"},
    {"allow_users 33 names",
     true,
     {H("a.example"), LOGIN, {.key = "allow_users", .kind = K_STRS, .strs = U_33, .n = 33}},
     3,
     "at most 32"},
    {"allow_users not a list",
     true,
     {H("a.example"), LOGIN, {.key = "allow_users", .kind = K_STR, .s = "alice"}},
     3,
     "at most 32"},
    {"allow_users a non-string",
     true,
     {H("a.example"), LOGIN, {.key = "allow_users", .kind = K_MIXED}},
     3,
     "not a string"},
};
#undef H
#undef LOGIN
#undef PFX

static void test_http_bad(void **state)
{
    memset(HOST_254, 'a', RESOURCE_HOST_MAX + 1);
    for (int i = 50; i < RESOURCE_HOST_MAX; i += 50)
        HOST_254[i] = '.';
    memset(LABEL_64, 'l', 64);
    memcpy(LABEL_64 + 64, ".example", 9);
    memset(PREFIX_201, 'p', RESOURCE_PREFIX_MAX + 1);
    PREFIX_201[0] = '/';

    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    resource_t r;
    const char *why;
    for (size_t i = 0; i < sizeof(HTTP_BAD) / sizeof(HTTP_BAD[0]); i++) {
        pack_http(&sb, HTTP_BAD[i].drop_port, HTTP_BAD[i].extra, HTTP_BAD[i].ne);
        int rc = parse(&sb, "web", &r, &why);
        if (rc != -EBADMSG)
            fail_msg("%s: accepted (rc %d)", HTTP_BAD[i].desc, rc);
        if (!why || !strstr(why, HTTP_BAD[i].why))
            fail_msg("%s: reason '%s' does not say '%s'", HTTP_BAD[i].desc, why ? why : "(none)",
                     HTTP_BAD[i].why);
    }

    /* resource_check, as resource.add applies it. */
    char buf[400];
    make_http(&r);
    r.tcp_port = 0;
    r.host[0] = '\0';
    r.path_prefix[0] = '\0';
    r.auth = RESOURCE_AUTH_NONE;
    r.nallow_users = r.nallow_groups = 0;
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "a tcp_port (1 to 65535), a host, or both"));
    make_http(&r);
    r.auth = (enum resource_auth)9;
    r.nallow_users = r.nallow_groups = 0;
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "'none' or 'login'"));
    make_http(&r);
    r.nallow_users = RESOURCE_ALLOW_MAX + 1;
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "at most 32 names"));
    make_http(&r);
    r.path_prefix[0] = '\0'; /* with a host, the default "/" must be filled in */
    assert_int_equal(resource_check(&r, buf, sizeof(buf), &why), -EINVAL);
    assert_non_null(strstr(why, "must start with '/'"));

    enum resource_auth a;
    assert_int_equal(resource_auth_parse("login", 5, &a), 0);
    assert_int_equal(a, RESOURCE_AUTH_LOGIN);
    assert_int_equal(resource_auth_parse("none", 4, &a), 0);
    assert_int_equal(a, RESOURCE_AUTH_NONE);
    assert_int_equal(resource_auth_parse("Login", 5, &a), -EINVAL);
    assert_int_equal(resource_auth_parse("login", 4, &a), -EINVAL);
    assert_string_equal(resource_auth_str(RESOURCE_AUTH_LOGIN), "login");
    msgpack_sbuffer_destroy(&sb);
}

static void set_http(resource_t *r, const char *name, const char *host, const char *prefix,
                     uint64_t created_ms)
{
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->path_prefix, sizeof(r->path_prefix), "%s", prefix);
    r->created_ms = created_ms;
}

static void test_match_http(void **state)
{
    resource_t v[9];
    set_http(&v[0], "root", "app.example.com", "/", 10);
    set_http(&v[1], "app", "app.example.com", "/app", 10);
    set_http(&v[2], "app-api", "app.example.com", "/app/api", 10);
    set_http(&v[3], "slash", "app.example.com", "/dir/", 10);
    set_http(&v[4], "other", "other.example.com", "/app", 10);
    set_http(&v[5], "tcp-only", "", "", 10);
    set_http(&v[6], "dup-new", "dup.example", "/", 20); /* same host and prefix as dup-old */
    set_http(&v[7], "dup-old2", "dup.example", "/", 5);
    set_http(&v[8], "dup-old", "dup.example", "/", 5); /* same created_ms: the smaller name */
    static const struct {
        const char *host, *path;
        int want;
    } cases[] = {
        {"app.example.com", "/", 0},
        {"app.example.com", "/index.html", 0},
        {"app.example.com", "", 0},       /* no path at all counts as "/" */
        {"app.example.com:8443", "/", 0}, /* a port is ignored */
        {"APP.Example.COM", "/app", 1},   /* no case */
        {"app.example.com.", "/app", 1},  /* a trailing dot */
        {"app.example.com", "/app", 1},
        {"app.example.com", "/app/", 1},
        {"app.example.com", "/app/x", 1},
        {"app.example.com", "/app?q=1", 1}, /* a query ends the path */
        {"app.example.com", "/app#frag", 1},
        {"app.example.com", "/apple", 0},   /* not on a segment boundary: the root's */
        {"app.example.com", "/app/api", 2}, /* the longest prefix */
        {"app.example.com", "/app/api/v1/x", 2},
        {"app.example.com", "/app/apix", 1},
        {"app.example.com", "/dir/", 3}, /* a prefix ending in '/' */
        {"app.example.com", "/dir/x", 3},
        {"app.example.com", "/dir", 0}, /* "/dir/" does not match "/dir" */
        {"other.example.com:80", "/app/x", 4},
        {"other.example.com", "/", -1}, /* the host, but no prefix matches */
        {"nope.example.com", "/", -1},  /* no such host */
        {"app.example.co", "/", -1},
        {"xapp.example.com", "/", -1},
        {"", "/", -1}, /* tcp-only resources never match */
        {"[::1]:80", "/", -1},
        {"dup.example", "/x", 8}, /* created_ms 5, then "dup-old" < "dup-old2" */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = resource_match_http(v, 9, cases[i].host, strlen(cases[i].host), cases[i].path,
                                      strlen(cases[i].path));
        if (got != cases[i].want)
            fail_msg("%s %s: got %d, want %d", cases[i].host, cases[i].path, got, cases[i].want);
    }
    /* Lengths are honoured: nothing is read past host_len or path_len. */
    assert_int_equal(resource_match_http(v, 9, "app.example.comXX", 15, "/app/apiZZ", 4), 1);
    assert_int_equal(resource_match_http(v, 0, "app.example.com", 15, "/", 1), -1);
}

/* ---- resource_list over a real store -------------------------------------------------------- */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void put_raw(store_t *s, const char *key, const msgpack_sbuffer *sb)
{
    assert_int_equal(store_put(s, key, strlen(key), sb->data, sb->size, 1700000000000ull, NULL), 0);
}

static void test_list(void **state)
{
    char dir[] = "/tmp/popmesh-test-resource-XXXXXX";
    assert_non_null(mkdtemp(dir));
    store_opts_t o = {.node_id = 42, .nosync = true};
    store_t *s = NULL;
    assert_int_equal(store_open(dir, &o, &s), 0);

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    resource_t r, *all;
    size_t n;
    assert_int_equal(resource_list(s, &all, &n), 0);
    assert_int_equal(n, 0);
    free(all);

    make_resource(&r);
    snprintf(r.name, sizeof(r.name), "zeta");
    resource_pack(&pk, &r);
    put_raw(s, "resource/zeta", &sb);
    msgpack_sbuffer_clear(&sb);
    snprintf(r.name, sizeof(r.name), "alpha");
    r.tcp_port = 2222;
    resource_pack(&pk, &r);
    put_raw(s, "resource/alpha", &sb);
    put_raw(s, "resource/mismatch", &sb); /* name "alpha" under another key */
    msgpack_sbuffer_clear(&sb);
    pack_record(&sb, OP_SET, "tcp_port", &(struct item){.kind = K_U64, .u = 0});
    put_raw(s, "resource/web", &sb); /* port 0: skipped */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_array(&pk, 0);
    put_raw(s, "resource/", &sb); /* not even a map, under an empty name */
    put_raw(s, "resourcez", &sb); /* outside the prefix */

    assert_int_equal(resource_list(s, &all, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(all[0].name, "alpha");
    assert_int_equal(all[0].tcp_port, 2222);
    assert_string_equal(all[1].name, "zeta");
    free(all);

    resource_t got;
    assert_int_equal(resource_get(s, "alpha", &got), 0);
    assert_string_equal(got.site, "branch-1");
    assert_int_equal(resource_get(s, "nothing", &got), -ENOENT);
    assert_int_equal(resource_get(s, "web", &got), -EBADMSG);
    assert_int_equal(resource_get(s, "mismatch", &got), -EBADMSG);
    assert_int_equal(resource_get(s, "Bad/Name", &got), -ENOENT);
    assert_int_equal(store_del(s, "resource/alpha", 14, 1700000000001ull, NULL), 0);
    assert_int_equal(resource_get(s, "alpha", &got), -ENOENT);

    msgpack_sbuffer_destroy(&sb);
    store_close(&s);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- the registry's side: site records and the token's site field ------------------------- */

static void test_site_record(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_site_t s = {.created_ms = 1700000000000ull,
                    .token_id = 0xfedcba9876543210ull,
                    .removed = true},
               back;
    snprintf(s.name, sizeof(s.name), "branch-1");
    snprintf(s.created_by, sizeof(s.created_by), "pop-1");
    const char *why;
    reg_site_pack(&pk, &s);
    assert_int_equal(reg_site_parse((const uint8_t *)sb.data, sb.size, "branch-1", &back, &why), 0);
    assert_string_equal(back.name, "branch-1");
    assert_string_equal(back.created_by, "pop-1");
    assert_int_equal(back.created_ms, s.created_ms);
    assert_int_equal(back.token_id, s.token_id);
    assert_true(back.removed);

    /* stored under another name's key */
    assert_int_equal(reg_site_parse((const uint8_t *)sb.data, sb.size, "branch-2", &back, &why),
                     -EBADMSG);
    assert_non_null(strstr(why, "key"));

    /* an invalid name, even under the matching key */
    msgpack_sbuffer_clear(&sb);
    snprintf(s.name, sizeof(s.name), "Branch");
    reg_site_pack(&pk, &s);
    assert_int_equal(reg_site_parse((const uint8_t *)sb.data, sb.size, "Branch", &back, &why),
                     -EBADMSG);
    assert_non_null(strstr(why, "valid site name"));

    /* token_id is required; unknown fields are skipped */
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    mpw_kv_str(&pk, "name", "branch-1");
    mpw_kv_str(&pk, "future", "x");
    assert_int_equal(reg_site_parse((const uint8_t *)sb.data, sb.size, "branch-1", &back, &why),
                     -EBADMSG);
    assert_non_null(strstr(why, "missing"));
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 3);
    mpw_kv_str(&pk, "name", "branch-1");
    mpw_kv_str(&pk, "future", "x");
    mpw_kv_u64(&pk, "token_id", 7);
    assert_int_equal(reg_site_parse((const uint8_t *)sb.data, sb.size, "branch-1", &back, &why), 0);
    assert_false(back.removed);
    msgpack_sbuffer_destroy(&sb);
}

static void test_token_site_field(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_token_t t = {.id = 9, .expires_ms = 5, .uses_max = 1}, back;
    const char *why;
    t.role = ROLE_SITE;
    snprintf(t.site, sizeof(t.site), "branch-1");
    reg_token_pack(&pk, &t);
    assert_int_equal(reg_token_parse((const uint8_t *)sb.data, sb.size, 9, &back, &why), 0);
    assert_string_equal(back.site, "branch-1");

    /* A PoP token has no site field at all: its record is what it was before the field. */
    msgpack_sbuffer_clear(&sb);
    t.site[0] = '\0';
    t.role = ROLE_POP;
    reg_token_pack(&pk, &t);
    assert_null(memmem(sb.data, sb.size, "site", 4));
    assert_int_equal(reg_token_parse((const uint8_t *)sb.data, sb.size, 9, &back, &why), 0);
    assert_string_equal(back.site, "");

    /* An old record (written before the field existed) decodes, unbound. */
    uint8_t join_pk[32] = {1};
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 3);
    mpw_kv_str(&pk, "role", "site");
    mpw_kv_u64(&pk, "expires_ms", 77);
    mpw_kv_bin(&pk, "join_pk", join_pk, 32);
    assert_int_equal(reg_token_parse((const uint8_t *)sb.data, sb.size, 9, &back, &why), 0);
    assert_string_equal(back.site, "");

    /* A site that is not a valid name, or not a string, is refused. */
    static const char *const bad_sites[] = {"Branch", "-x", "a b"};
    for (size_t i = 0; i < sizeof(bad_sites) / sizeof(bad_sites[0]); i++) {
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, 4);
        mpw_kv_str(&pk, "role", "site");
        mpw_kv_u64(&pk, "expires_ms", 77);
        mpw_kv_bin(&pk, "join_pk", join_pk, 32);
        mpw_kv_str(&pk, "site", bad_sites[i]);
        assert_int_equal(reg_token_parse((const uint8_t *)sb.data, sb.size, 9, &back, &why),
                         -EBADMSG);
    }
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 4);
    mpw_kv_str(&pk, "role", "site");
    mpw_kv_u64(&pk, "expires_ms", 77);
    mpw_kv_bin(&pk, "join_pk", join_pk, 32);
    mpw_kv_u64(&pk, "site", 1);
    assert_int_equal(reg_token_parse((const uint8_t *)sb.data, sb.size, 9, &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

/* A prefix with '.', '..' or an empty segment can never match a normalised request path. */
static void test_path_prefix_segments(void **state)
{
    (void)state;
    static const char *bad[] = {"/..",  "/a/../b", "/a/..", "/.",  "/./a",
                                "/a/.", "//",      "/a//b", "//a", "/a/./"};
    static const char *good[] = {"/",     "/a",   "/a/",    "/a/b", "/.well-known",
                                 "/a..b", "/...", "/a.b/c", "/.x/"};
    resource_t r;
    char buf[400];
    const char *why;
    make_http(&r);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(r.path_prefix, sizeof(r.path_prefix), "%s", bad[i]);
        if (resource_check(&r, buf, sizeof(buf), &why) != -EINVAL)
            fail_msg("path_prefix '%s' accepted", bad[i]);
        assert_non_null(strstr(why, "never match"));
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        snprintf(r.path_prefix, sizeof(r.path_prefix), "%s", good[i]);
        if (resource_check(&r, buf, sizeof(buf), &why))
            fail_msg("path_prefix '%s' refused: %s", good[i], why);
    }
}

static void put_pop(store_t *s, uint64_t id, const char *name, const char *addr,
                    const char *tunnel_addr, const char *role, bool removed)
{
    reg_node_t n = {.removed = removed};
    snprintf(n.name, sizeof(n.name), "%s", name);
    snprintf(n.addr, sizeof(n.addr), "%s", addr);
    snprintf(n.tunnel_addr, sizeof(n.tunnel_addr), "%s", tunnel_addr);
    assert_int_equal(node_role_parse(role, strlen(role), &n.role), 0);
    for (int i = 0; i < 32; i++)
        n.curve_pk[i] = (uint8_t)(id + (uint64_t)i);
    n.id = id = identity_node_id_of(n.curve_pk); /* a node's id is its key's */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_node_pack(&pk, &n);
    char key[64];
    reg_node_key(id, key, sizeof(key));
    put_raw(s, key, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/* resource.add's mesh checks: a port of a PoP, a target that is an ingress of the mesh. */
static void test_check_mesh(void **state)
{
    (void)state;
    char dir[] = "/tmp/popmesh-test-resource-XXXXXX";
    assert_non_null(mkdtemp(dir));
    store_opts_t o = {.node_id = 42, .nosync = true};
    store_t *s = NULL;
    assert_int_equal(store_open(dir, &o, &s), 0);
    put_pop(s, 1, "pop-1", "127.0.0.1:7000", "127.0.0.1:7001", "pop", false);
    put_pop(s, 2, "pop-2", "10.0.0.2:7000", "0.0.0.0:7101", "pop", false);
    put_pop(s, 3, "gone", "10.0.0.3:7000", "10.0.0.3:7001", "pop", true);
    put_pop(s, 4, "branch", "10.0.0.4:7000", "", "site", false);
    resource_t r, other;
    make_resource(&other);
    snprintf(other.name, sizeof(other.name), "other");
    other.tcp_port = 9000;
    char buf[400];
    const char *why = "";
    struct {
        uint16_t port;
        const char *target;
        const char *want; /* NULL: accepted; else in the reason */
    } cases[] = {
        {8000, "10.9.9.9:80", NULL},
        {7000, "10.9.9.9:80", "'s mesh port"},
        {7001, "10.9.9.9:80", "PoP pop-1's tunnel port"},
        {7101, "10.9.9.9:80", "PoP pop-2's tunnel port"},
        {8000, "127.0.0.1:8000", "resource 'web' itself"},
        {8000, "localhost:8000", "resource 'web' itself"},
        {8000, "127.0.0.1:9000", "resource 'other'"},
        {8000, "127.0.0.1:7001", "tunnel port"},
        {8000, "10.0.0.2:7000", "PoP pop-2, mesh port"},
        {8000, "127.0.0.1:7101", "PoP pop-2"}, /* pop-2's tunnel is on every address */
        {8000, "10.0.0.2:22", NULL},           /* the PoP's host, a port the mesh does not use */
        {8000, "10.0.0.3:7000", NULL},         /* a removed PoP */
        {8000, "10.0.0.4:7000", NULL},         /* a site is no ingress */
        {8000, "db.example:8000", NULL},       /* a name: the site resolves it */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        make_resource(&r);
        snprintf(r.name, sizeof(r.name), "web");
        r.tcp_port = cases[i].port;
        snprintf(r.targets[0], sizeof(r.targets[0]), "%s", cases[i].target);
        r.ntargets = 1;
        int rc = resource_check_mesh(s, &r, &other, 1, buf, sizeof(buf), &why);
        if (!cases[i].want && rc)
            fail_msg("case %zu (%u, %s) refused: %s", i, cases[i].port, cases[i].target, why);
        if (cases[i].want && (rc != -EINVAL || !strstr(why, cases[i].want)))
            fail_msg("case %zu (%u, %s): rc %d, '%s'", i, cases[i].port, cases[i].target, rc,
                     rc ? why : "");
    }
    store_close(&s);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* tls: written only when set, so a record without it stays byte for byte what the version
 * before wrote; it needs a tcp_port. */
static void test_tls_field(void **state)
{
    (void)state;
    msgpack_sbuffer a, b;
    msgpack_packer pk;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    resource_t r, back;
    const char *why;
    char why_buf[400];
    for (int http = 0; http < 2; http++) {
        if (http)
            make_http(&r);
        else
            make_resource(&r);
        msgpack_sbuffer_clear(&a);
        msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
        resource_pack(&pk, &r);
        assert_null(memmem(a.data, a.size, "\xa3tls", 4));
        assert_int_equal(parse(&a, r.name, &back, &why), 0);
        assert_false(back.tls);
        r.tls = true;
        msgpack_sbuffer_clear(&b);
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        resource_pack(&pk, &r);
        assert_int_equal(b.size, a.size + 5); /* "tls": true */
        if (parse(&b, r.name, &back, &why) != 0)
            fail_msg("tls record refused: %s", why);
        assert_true(back.tls);
        if (http)
            assert_http_equal(&r, &back);
        else
            assert_resource_equal(&r, &back);
    }
    make_http(&r); /* host only: nothing to terminate TLS on but the HTTPS listener */
    r.tcp_port = 0;
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), 0);
    r.tls = true;
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), -EINVAL);
    assert_non_null(strstr(why, "tls needs a tcp_port"));
    msgpack_sbuffer_clear(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_int_not_equal(parse(&b, r.name, &back, &why), 0);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

/* Health-check settings: written only when set (a record without them is what the version
 * before wrote), round trip, refused out of range or malformed with a reason naming the field,
 * from resource_check and from a replicated record alike. */
static void hc_expect_refused(resource_t *r, const char *what)
{
    char why_buf[400];
    const char *why;
    assert_int_equal(resource_check(r, why_buf, sizeof(why_buf), &why), -EINVAL);
    if (!strstr(why, what))
        fail_msg("reason '%s' does not name '%s'", why, what);
    /* The same record coming from another node is refused too. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    resource_t back;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    resource_pack(&pk, r);
    assert_int_equal(parse(&sb, r->name, &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

static void test_hc_settings(void **state)
{
    (void)state;
    msgpack_sbuffer a, b;
    msgpack_packer pk;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    resource_t r, back;
    const char *why;
    char why_buf[400], text[RESOURCE_HC_STATUS_STR];

    /* Without the settings: no hc_ key at all, and the bytes of the previous version. */
    make_resource(&r);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_null(memmem(a.data, a.size, "hc_", 3));
    assert_false(resource_hc_set(&r));
    assert_int_equal(parse(&a, r.name, &back, &why), 0);
    assert_false(resource_hc_set(&back));
    assert_int_equal(back.nhc_status, 0);
    assert_string_equal(back.hc_host, "");

    /* Every setting at once round trips. */
    r.hc_interval_ms = 200;
    r.hc_timeout_ms = 150;
    r.hc_rise = 1;
    r.hc_fall = 1000;
    assert_int_equal(
        resource_hc_status_parse("200,204,3xx,500-503,5XX", 23, &r, why_buf, sizeof(why_buf), &why),
        0);
    assert_int_equal(r.nhc_status, 5);
    assert_int_equal(r.hc_status[2].lo, 300);
    assert_int_equal(r.hc_status[2].hi, 399);
    assert_int_equal(r.hc_status[3].lo, 500);
    assert_int_equal(r.hc_status[3].hi, 503);
    resource_hc_status_str(&r, text, sizeof(text));
    assert_string_equal(text, "200,204,3xx,500-503,5xx");
    snprintf(r.hc_host, sizeof(r.hc_host), "app.example.com:8443");
    assert_true(resource_hc_set(&r));
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    if (parse(&b, r.name, &back, &why) != 0)
        fail_msg("hc record refused: %s", why);
    assert_resource_equal(&r, &back);
    assert_int_equal(back.hc_interval_ms, 200);
    assert_int_equal(back.hc_timeout_ms, 150);
    assert_int_equal(back.hc_rise, 1);
    assert_int_equal(back.hc_fall, 1000);
    assert_int_equal(back.nhc_status, 5);
    assert_memory_equal(back.hc_status, r.hc_status, 5 * sizeof(r.hc_status[0]));
    assert_string_equal(back.hc_host, "app.example.com:8443");
    /* Packing what was read gives the same bytes. */
    msgpack_sbuffer_clear(&a);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    resource_pack(&pk, &back);
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.data, b.data, a.size);

    /* One setting alone, and the limits themselves. */
    make_resource(&r);
    r.health = RESOURCE_HEALTH_TCP;
    r.http_path[0] = '\0';
    uint32_t *field[] = {&r.hc_interval_ms, &r.hc_timeout_ms, &r.hc_rise, &r.hc_fall};
    const uint32_t lo[] = {100, 50, 1, 1}, hi[] = {86400000, 600000, 1000, 1000};
    const char *names[] = {"hc_interval_ms", "hc_timeout_ms", "hc_rise", "hc_fall"};
    for (int f = 0; f < 4; f++) {
        for (int edge = 0; edge < 2; edge++) {
            *field[f] = edge ? hi[f] : lo[f];
            msgpack_sbuffer_clear(&a);
            msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
            resource_pack(&pk, &r);
            if (parse(&a, r.name, &back, &why) != 0)
                fail_msg("%s = %u refused: %s", names[f], *field[f], why);
            assert_int_equal(back.hc_interval_ms, r.hc_interval_ms);
            assert_int_equal(back.hc_timeout_ms, r.hc_timeout_ms);
            assert_int_equal(back.hc_rise, r.hc_rise);
            assert_int_equal(back.hc_fall, r.hc_fall);
        }
        *field[f] = hi[f] + 1;
        hc_expect_refused(&r, names[f] + (f >= 2 ? 0 : 0));
        if (lo[f] > 1) {
            *field[f] = lo[f] - 1;
            hc_expect_refused(&r, names[f]);
        }
        *field[f] = 0;
    }

    /* hc_status and hc_host only with an http health. */
    make_resource(&r);
    r.health = RESOURCE_HEALTH_TCP;
    r.http_path[0] = '\0';
    r.nhc_status = 1;
    r.hc_status[0] = (resource_code_range_t){200, 200};
    hc_expect_refused(&r, "need an http health check");
    r.nhc_status = 0;
    snprintf(r.hc_host, sizeof(r.hc_host), "example.com");
    hc_expect_refused(&r, "need an http health check");

    /* Bad hosts. */
    make_resource(&r);
    const char *bad_hosts[] = {"Example.com", "*.example.com", "a b",    "x:0",  "x:65536", "x:",
                               "x:80:80",     ":80",           "-a.com", "a..b", "x:08"};
    for (size_t i = 0; i < sizeof(bad_hosts) / sizeof(bad_hosts[0]); i++) {
        snprintf(r.hc_host, sizeof(r.hc_host), "%s", bad_hosts[i]);
        hc_expect_refused(&r, "hc_host");
    }
    const char *good_hosts[] = {"example.com", "10.0.0.1", "a:1", "api.internal:65535"};
    for (size_t i = 0; i < sizeof(good_hosts) / sizeof(good_hosts[0]); i++) {
        snprintf(r.hc_host, sizeof(r.hc_host), "%s", good_hosts[i]);
        if (resource_check(&r, why_buf, sizeof(why_buf), &why))
            fail_msg("hc_host %s refused: %s", good_hosts[i], why);
    }
    /* Bad status ranges (as from a buggy caller) and bad lists (as typed). */
    r.hc_host[0] = '\0';
    r.nhc_status = 1;
    r.hc_status[0] = (resource_code_range_t){99, 200};
    hc_expect_refused(&r, "hc_status");
    r.hc_status[0] = (resource_code_range_t){300, 200};
    hc_expect_refused(&r, "hc_status");
    r.nhc_status = RESOURCE_HC_STATUS_MAX + 1;
    hc_expect_refused(&r, "hc_status");
    r.nhc_status = 0;
    const char *bad_lists[] = {"",        "99",   "600",      "6xx",      "0xx",  "2x",
                               "200,",    ",200", "200,,204", "200 ,204", "abc",  "503-500",
                               "200-600", "2000", "20a",      "200-20",   "1,2,3"};
    for (size_t i = 0; i < sizeof(bad_lists) / sizeof(bad_lists[0]); i++) {
        resource_t t = r;
        if (resource_hc_status_parse(bad_lists[i], strlen(bad_lists[i]), &t, why_buf,
                                     sizeof(why_buf), &why) != -EINVAL)
            fail_msg("hc_status '%s' accepted", bad_lists[i]);
        assert_non_null(strstr(why, "hc_status"));
        assert_int_equal(t.nhc_status, 0); /* nothing changed */
    }
    char many[200] = "";
    for (int i = 0; i <= RESOURCE_HC_STATUS_MAX; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s%d", i ? "," : "", 200 + i);
    assert_int_equal(
        resource_hc_status_parse(many, strlen(many), &r, why_buf, sizeof(why_buf), &why), -EINVAL);
    assert_non_null(strstr(why, "at most 16"));
    many[strlen(many) - 4] = '\0'; /* exactly 16 */
    assert_int_equal(
        resource_hc_status_parse(many, strlen(many), &r, why_buf, sizeof(why_buf), &why), 0);
    assert_int_equal(r.nhc_status, RESOURCE_HC_STATUS_MAX);

    /* A replicated record with the fields malformed: present but 0, too large, not a string,
     * a bad list. */
    const struct item bad_items[] = {
        {.key = "hc_interval_ms", .kind = K_U64, .u = 0},
        {.key = "hc_interval_ms", .kind = K_U64, .u = 1ull << 40},
        {.key = "hc_interval_ms", .kind = K_U64, .u = 99},
        {.key = "hc_timeout_ms", .kind = K_INT, .i = -5},
        {.key = "hc_rise", .kind = K_U64, .u = 1001},
        {.key = "hc_fall", .kind = K_STR, .s = "1"},
        {.key = "hc_status", .kind = K_STR, .s = ""},
        {.key = "hc_status", .kind = K_STR, .s = "200;204"},
        {.key = "hc_status", .kind = K_U64, .u = 200},
        {.key = "hc_host", .kind = K_STR, .s = ""},
        {.key = "hc_host", .kind = K_STR, .s = "a\r\nX-Evil: 1"},
        {.key = "hc_host", .kind = K_STRS, .strs = TARGETS2, .n = 2},
    };
    for (size_t i = 0; i < sizeof(bad_items) / sizeof(bad_items[0]); i++) {
        pack_record(&a, OP_ADD, NULL, &bad_items[i]);
        if (parse(&a, "web", &back, &why) != -EBADMSG)
            fail_msg("bad item %zu (%s) accepted", i, bad_items[i].key);
        assert_non_null(why);
    }
    /* And well-formed ones on BASE (health http:/healthz). */
    const struct item good_items[] = {
        {.key = "hc_interval_ms", .kind = K_U64, .u = 250},
        {.key = "hc_status", .kind = K_STR, .s = "200,503"},
        {.key = "hc_host", .kind = K_STR, .s = "web.internal"},
    };
    for (size_t i = 0; i < sizeof(good_items) / sizeof(good_items[0]); i++) {
        pack_record(&a, OP_ADD, NULL, &good_items[i]);
        if (parse(&a, "web", &back, &why) != 0)
            fail_msg("good item %zu refused: %s", i, why);
    }
    assert_string_equal(back.hc_host, "web.internal");
    /* A duplicated key is refused, as for every field. */
    const struct item dup = {.key = "hc_status", .kind = K_STR, .s = "200"};
    msgpack_sbuffer_clear(&a);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, NBASE + 2);
    for (size_t i = 0; i < NBASE; i++) {
        mpw_str(&pk, BASE[i].key);
        pack_value(&pk, &BASE[i]);
    }
    for (int i = 0; i < 2; i++) {
        mpw_str(&pk, dup.key);
        pack_value(&pk, &dup);
    }
    assert_int_equal(parse(&a, "web", &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

/* Targets in several sites, with priorities and weights: written only when used, round trip
 * exactly, and every bad value refused with a reason (resource_check and resource_parse). */
static void pack_multi(msgpack_sbuffer *sb, int variant)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 7);
    mpw_str(&pk, "name");
    mpw_str(&pk, "app");
    mpw_str(&pk, "site");
    mpw_str(&pk, "onprem");
    mpw_str(&pk, "targets");
    msgpack_pack_array(&pk, 2);
    mpw_str(&pk, "10.0.0.5:80");
    mpw_str(&pk, "10.0.0.6:80");
    mpw_str(&pk, "tcp_port");
    msgpack_pack_uint32(&pk, 8080);
    mpw_str(&pk, "health");
    mpw_str(&pk, "tcp");
    mpw_str(&pk, "tmeta");
    msgpack_pack_array(&pk, variant == 1 ? 1 : 2); /* 1: one entry short */
    for (int i = 0; i < (variant == 1 ? 1 : 2); i++) {
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint32(&pk, variant == 2 ? 0 : 1);   /* 2: priority 0 */
        msgpack_pack_uint32(&pk, variant == 3 ? 1001 : 4); /* 3: weight too large */
    }
    mpw_str(&pk, "xtargets");
    if (variant == 4) { /* not a list of entries */
        mpw_str(&pk, "cloud/10.1.0.5:80");
        return;
    }
    unsigned nx = variant == 5 ? 15 : 1; /* 5: 17 targets in all */
    msgpack_pack_array(&pk, nx);
    for (unsigned i = 0; i < nx; i++) {
        msgpack_pack_array(&pk, variant == 6 ? 3 : 4); /* 6: an entry one field short */
        mpw_str(&pk, variant == 7 ? "onprem" : "cloud"); /* 7: the resource's own site */
        char a[32];
        snprintf(a, sizeof(a), "10.1.0.%u:80", i + 5);
        mpw_str(&pk, a);
        msgpack_pack_uint32(&pk, variant == 8 ? 101 : 2); /* 8: priority too large */
        if (variant != 6)
            msgpack_pack_uint32(&pk, 1);
    }
}

static void multi_expect_refused(resource_t *r, const char *what)
{
    char why_buf[400];
    const char *why;
    assert_int_equal(resource_check(r, why_buf, sizeof(why_buf), &why), -EINVAL);
    if (!strstr(why, what))
        fail_msg("reason '%s' does not name '%s'", why, what);
}

static void test_multisite(void **state)
{
    (void)state;
    msgpack_sbuffer a, b;
    msgpack_packer pk;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    resource_t r, back;
    const char *why;

    /* One site, default priorities: neither field, and every target reads as priority 1,
     * weight 1, in the resource's site. */
    make_resource(&r);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_null(memmem(a.data, a.size, "tmeta", 5));
    assert_null(memmem(a.data, a.size, "xtargets", 8));
    assert_false(resource_multisite(&r));
    assert_int_equal(parse(&a, r.name, &back, &why), 0);
    for (unsigned i = 0; i < back.ntargets; i++) {
        assert_string_equal(resource_target_site(&back, i), "branch-1");
        assert_int_equal(resource_target_priority(&back, i), 1);
        assert_int_equal(resource_target_weight(&back, i), 1);
    }

    /* Four targets: two on-prem (weights 5 and 1), two in a cloud site at priority 2, one of
     * them the same address as an on-prem one (another network). */
    make_resource(&r);
    r.ntargets = 4;
    snprintf(r.targets[0], sizeof(r.targets[0]), "10.0.0.5:22");
    snprintf(r.targets[1], sizeof(r.targets[1]), "10.0.0.6:22");
    snprintf(r.targets[2], sizeof(r.targets[2]), "10.0.0.5:22");
    snprintf(r.targets[3], sizeof(r.targets[3]), "10.9.0.7:22");
    r.tweight[0] = 5;
    snprintf(r.tsite[2], sizeof(r.tsite[2]), "cloud");
    snprintf(r.tsite[3], sizeof(r.tsite[3]), "cloud");
    r.tprio[2] = r.tprio[3] = 2;
    r.tweight[3] = RESOURCE_WEIGHT_MAX;
    char why_buf[400];
    if (resource_check(&r, why_buf, sizeof(why_buf), &why))
        fail_msg("multi-site resource refused: %s", why);
    assert_true(resource_multisite(&r));
    msgpack_sbuffer_clear(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_non_null(memmem(b.data, b.size, "tmeta", 5));
    assert_non_null(memmem(b.data, b.size, "xtargets", 8));
    if (parse(&b, r.name, &back, &why))
        fail_msg("multi-site record refused: %s", why);
    assert_int_equal(back.ntargets, 4);
    for (unsigned i = 0; i < 4; i++) {
        assert_string_equal(back.targets[i], r.targets[i]);
        assert_string_equal(resource_target_site(&back, i), resource_target_site(&r, i));
        assert_int_equal(resource_target_priority(&back, i), resource_target_priority(&r, i));
        assert_int_equal(resource_target_weight(&back, i), resource_target_weight(&r, i));
    }
    assert_true(resource_target_in(&back, 2, "cloud"));
    assert_false(resource_target_in(&back, 2, "branch-1"));
    /* The old reader's view: `targets` holds only the resource's own site's addresses. */
    msgpack_sbuffer_clear(&a);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    resource_pack(&pk, &back);
    assert_int_equal(a.size, b.size);
    assert_memory_equal(a.data, b.data, a.size);

    /* Bad values, as resource.add would get them. */
    resource_t bad = r;
    snprintf(bad.tsite[3], sizeof(bad.tsite[3]), "Cloud_1");
    multi_expect_refused(&bad, "site name 'Cloud_1' is invalid");
    bad = r;
    bad.tprio[1] = RESOURCE_PRIORITY_MAX + 1;
    multi_expect_refused(&bad, "priority 101 is not from 1 to 100");
    bad = r;
    bad.tweight[1] = RESOURCE_WEIGHT_MAX + 1;
    multi_expect_refused(&bad, "weight 1001 is not from 1 to 1000");
    bad = r;
    snprintf(bad.targets[3], sizeof(bad.targets[3]), "10.0.0.5:22");
    multi_expect_refused(&bad, "target 'cloud/10.0.0.5:22' is listed twice");
    bad = r;
    snprintf(bad.targets[2], sizeof(bad.targets[2]), "10.0.0.8:22");
    for (unsigned i = 0; i < 4; i++)
        snprintf(bad.tsite[i], sizeof(bad.tsite[i]), "cloud");
    multi_expect_refused(&bad, "no target is in site 'branch-1'");

    /* Bad records, as another node could send them. */
    pack_multi(&a, 0);
    if (parse(&a, "app", &back, &why))
        fail_msg("hand-built multi-site record refused: %s", why);
    assert_int_equal(back.ntargets, 3);
    assert_int_equal(resource_target_weight(&back, 0), 4);
    assert_string_equal(resource_target_site(&back, 2), "cloud");
    assert_int_equal(resource_target_priority(&back, 2), 2);
    const char *reasons[] = {"",         "tmeta does not have one entry per target",
                             "priority", "weight",
                             "xtargets", "more than 16",
                             "xtargets", "own site",
                             "priority"};
    for (int v = 1; v <= 8; v++) {
        pack_multi(&a, v);
        if (parse(&a, "app", &back, &why) != -EBADMSG)
            fail_msg("variant %d accepted", v);
        if (!why || !strstr(why, reasons[v]))
            fail_msg("variant %d: reason '%s' does not say '%s'", v, why ? why : "(none)",
                     reasons[v]);
    }
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

/* access_log: written only when not the default (a record without it is what the version
 * before wrote), "off" and "sample:N" round trip, bad values refused in text and in records. */
/* require_2fa: written only when set, read back; refused without auth login or a host, from a
 * command or from another node. */
static void test_require_2fa(void **state)
{
    (void)state;
    msgpack_sbuffer a, b;
    msgpack_packer pk;
    resource_t r, back;
    const char *why;
    char why_buf[200];
    make_http(&r);
    msgpack_sbuffer_init(&a);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_null(memmem(a.data, a.size, "require_2fa", 11)); /* off: not written */
    r.require_2fa = true;
    msgpack_sbuffer_init(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    if (parse(&b, r.name, &back, &why) != 0)
        fail_msg("require_2fa refused: %s", why);
    assert_true(back.require_2fa);
    assert_http_equal(&r, &back);
    r.auth = RESOURCE_AUTH_NONE;
    r.nallow_users = r.nallow_groups = 0;
    hc_expect_refused(&r, "require_2fa needs auth login");
    make_resource(&r);
    r.require_2fa = true;
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), -EINVAL);
    assert_non_null(strstr(why, "require_2fa"));
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

/* proxy_protocol: written only when set (a TCP record without it is what the version before
 * wrote, and such old records still decode), v1 and v2 round trip, the text forms, 3 refused
 * in memory and in a record, refused with a host or without a tcp_port. */
static void test_proxy_protocol(void **state)
{
    (void)state;
    msgpack_sbuffer a, b;
    msgpack_packer pk;
    resource_t r, back;
    const char *why;
    char why_buf[200];
    uint8_t v;
    make_resource(&r);
    msgpack_sbuffer_init(&a);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_null(memmem(a.data, a.size, "proxy_protocol", 14)); /* off: not written */
    if (parse(&a, r.name, &back, &why) != 0)
        fail_msg("a record without proxy_protocol refused: %s", why);
    assert_int_equal(back.proxy_protocol, 0);
    msgpack_sbuffer_init(&b);
    for (uint8_t pv = 1; pv <= 2; pv++) {
        r.proxy_protocol = pv;
        msgpack_sbuffer_clear(&b);
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        resource_pack(&pk, &r);
        if (parse(&b, r.name, &back, &why) != 0)
            fail_msg("proxy_protocol %u refused: %s", pv, why);
        assert_int_equal(back.proxy_protocol, pv);
        assert_resource_equal(&r, &back);
    }
    static const char *const txt[] = {"off", "v1", "v2"};
    for (uint8_t i = 0; i < 3; i++) {
        assert_int_equal(resource_proxy_protocol_parse(txt[i], strlen(txt[i]), &v), 0);
        assert_int_equal(v, i);
        assert_string_equal(resource_proxy_protocol_str(i), txt[i]);
    }
    static const char *const bad[] = {"", "v3", "V1", "1", "v", "v1 ", "on"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(resource_proxy_protocol_parse(bad[i], strlen(bad[i]), &v), -EINVAL);
    r.proxy_protocol = 3;
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), -EINVAL);
    /* a record saying 3 (what the packer writes for 2, with the value changed) */
    r.proxy_protocol = 2;
    msgpack_sbuffer_clear(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    char *at = memmem(b.data, b.size, "proxy_protocol", 14);
    assert_non_null(at);
    assert_int_equal(at[14], 2); /* positive fixint right after the key */
    at[14] = 3;
    assert_int_equal(parse(&b, r.name, &back, &why), -EBADMSG);
    assert_non_null(strstr(why, "proxy_protocol"));
    /* TCP only */
    make_http(&r);
    r.proxy_protocol = 1;
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), -EINVAL);
    assert_non_null(strstr(why, "proxy_protocol is for TCP resources"));
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

/* UDP fields: absent from a TCP record (byte for byte as before), round trip, refused next to a
 * tcp_port, host, tls or http health, out of range, and from a replicated record alike. */
static void udp_expect_refused(resource_t *r, const char *what)
{
    const char *why;
    char why_buf[400];
    assert_int_equal(resource_check(r, why_buf, sizeof(why_buf), &why), -EINVAL);
    if (!strstr(why, what))
        fail_msg("refused for '%s', expected '%s'", why, what);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    resource_pack(&pk, r);
    resource_t back;
    assert_int_not_equal(parse(&sb, r->name, &back, &why), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_udp_fields(void **state)
{
    (void)state;
    msgpack_sbuffer a;
    msgpack_packer pk;
    msgpack_sbuffer_init(&a);
    resource_t r, back;
    const char *why;
    make_resource(&r);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_null(memmem(a.data, a.size, "udp_", 4)); /* a TCP record: what the version before wrote */
    make_resource(&r);
    r.tcp_port = 0;
    r.health = RESOURCE_HEALTH_TCP;
    r.http_path[0] = '\0';
    r.udp_port = 53;
    for (int variant = 0; variant < 2; variant++) {
        if (variant) {
            r.udp_idle_s = RESOURCE_UDP_IDLE_MAX;
            r.udp_max_flows = 1;
        }
        msgpack_sbuffer_clear(&a);
        msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
        resource_pack(&pk, &r);
        assert_non_null(memmem(a.data, a.size, "udp_port", 8));
        assert_true((memmem(a.data, a.size, "udp_idle", 8) != NULL) == (variant == 1));
        if (parse(&a, r.name, &back, &why) != 0)
            fail_msg("udp record refused: %s", why);
        assert_resource_equal(&r, &back);
        assert_int_equal(back.udp_port, 53);
        assert_int_equal(back.udp_idle_s, r.udp_idle_s);
        assert_int_equal(back.udp_max_flows, r.udp_max_flows);
    }
    resource_t bad = r;
    bad.tcp_port = 22;
    udp_expect_refused(&bad, "has no tcp_port, host or tls");
    bad = r;
    snprintf(bad.host, sizeof(bad.host), "dns.example");
    snprintf(bad.path_prefix, sizeof(bad.path_prefix), "/");
    udp_expect_refused(&bad, "has no tcp_port, host or tls");
    bad = r;
    bad.health = RESOURCE_HEALTH_HTTP;
    snprintf(bad.http_path, sizeof(bad.http_path), "/");
    udp_expect_refused(&bad, "not health-checked");
    bad = r;
    bad.udp_idle_s = RESOURCE_UDP_IDLE_MAX + 1;
    udp_expect_refused(&bad, "udp_idle");
    bad = r;
    bad.udp_max_flows = RESOURCE_UDP_FLOWS_MAX + 1;
    udp_expect_refused(&bad, "udp_max_flows");
    make_resource(&bad);
    bad.udp_idle_s = 5; /* without a udp_port (which the record would not even carry) */
    char why_buf[400];
    assert_int_equal(resource_check(&bad, why_buf, sizeof(why_buf), &why), -EINVAL);
    assert_non_null(strstr(why, "need a udp_port"));
    /* A target too long to carry its scheme in the OPEN. */
    bad = r;
    bad.ntargets = 1;
    memset(bad.targets[0], 'a', NODECFG_ADDR_MAX - 5);
    memcpy(bad.targets[0] + NODECFG_ADDR_MAX - 8, ":53", 4);
    udp_expect_refused(&bad, "longer than");
    msgpack_sbuffer_destroy(&a);
}

/* origin_tls and origin_ca: written only when set, round trip, refused in the combinations
 * resource_check forbids and with bad values in records; the originca/ record and its id. */
static void test_origin_tls(void **state)
{
    (void)state;
    msgpack_sbuffer b;
    msgpack_packer pk;
    resource_t r, back;
    const char *why;
    char why_buf[300];
    make_http(&r);
    assert_int_equal(resource_health_parse("tcp", 3, &r, &why), 0); /* https: tcp checks */
    msgpack_sbuffer_init(&b);
    resource_pack((msgpack_packer_init(&pk, &b, msgpack_sbuffer_write), &pk), &r);
    assert_null(memmem(b.data, b.size, "origin_", 7)); /* plain: not written */
    const char *pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    r.origin_tls = RESOURCE_ORIGIN_TLS;
    r.has_origin_ca = true;
    resource_ca_id(pem, strlen(pem), r.origin_ca);
    for (int k = 0; k < 2; k++) {
        msgpack_sbuffer_clear(&b);
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        resource_pack(&pk, &r);
        if (parse(&b, r.name, &back, &why) != 0)
            fail_msg("origin_tls %u refused: %s", r.origin_tls, why);
        assert_int_equal(back.origin_tls, r.origin_tls);
        assert_int_equal(back.has_origin_ca, r.has_origin_ca);
        assert_memory_equal(back.origin_ca, r.origin_ca, 32);
        r.origin_tls = RESOURCE_ORIGIN_TLS_INSECURE; /* then without a CA */
        r.has_origin_ca = false;
        memset(r.origin_ca, 0, 32);
    }
    /* a CA without checked TLS; TLS with an http: health; origin_tls 3 */
    r.has_origin_ca = true;
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), -EINVAL);
    assert_non_null(strstr(why, "a CA for the targets needs https:// targets"));
    r.has_origin_ca = false;
    r.origin_tls = RESOURCE_ORIGIN_TLS;
    assert_int_equal(resource_health_parse("http:/h", 7, &r, &why), 0);
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), -EINVAL);
    assert_non_null(strstr(why, "plain HTTP"));
    make_http(&r);
    assert_int_equal(resource_health_parse("tcp", 3, &r, &why), 0);
    r.origin_tls = 3;
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), -EINVAL);
    /* in a record: origin_tls 3 (the fixint after the key changed), a 31-byte origin_ca */
    r.origin_tls = RESOURCE_ORIGIN_TLS_INSECURE;
    msgpack_sbuffer_clear(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    char *at = memmem(b.data, b.size, "origin_tls", 10);
    assert_non_null(at);
    assert_int_equal(at[10], 2);
    at[10] = 3;
    assert_int_equal(parse(&b, r.name, &back, &why), -EBADMSG);
    assert_non_null(strstr(why, "origin_tls"));
    r.origin_tls = RESOURCE_ORIGIN_TLS;
    r.has_origin_ca = true;
    msgpack_sbuffer_clear(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    at = memmem(b.data, b.size, "origin_ca", 9);
    assert_non_null(at);
    assert_int_equal((uint8_t)at[9], 0xc4); /* bin 8 */
    at[10] = 31;
    assert_int_equal(parse(&b, r.name, &back, &why), -EBADMSG);
    /* the CA text and its record */
    assert_int_equal(resource_ca_check(pem, strlen(pem), &why), 0);
    assert_int_equal(resource_ca_check("hello", 5, &why), -EINVAL);
    assert_int_equal(resource_ca_check("", 0, &why), -EINVAL);
    char bin[64];
    snprintf(bin, sizeof(bin), "-----BEGIN CERTIFICATE-----\n%c\n", 1);
    assert_int_equal(resource_ca_check(bin, strlen(bin), &why), -EINVAL);
    uint8_t id[32], other[32];
    resource_ca_id(pem, strlen(pem), id);
    char key[RESOURCE_CA_KEY_MAX], out[RESOURCE_CA_MAX + 1];
    resource_ca_key(id, key, sizeof(key));
    assert_int_equal(strlen(key), strlen(RESOURCE_CA_PREFIX) + 64);
    msgpack_sbuffer_clear(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_ca_pack(&pk, pem, strlen(pem));
    assert_int_equal(resource_ca_parse((uint8_t *)b.data, b.size, id, out, sizeof(out), &why), 0);
    assert_string_equal(out, pem);
    memcpy(other, id, 32);
    other[0] ^= 1; /* under another key: refused */
    assert_int_equal(resource_ca_parse((uint8_t *)b.data, b.size, other, out, sizeof(out), &why),
                     -EBADMSG);
    msgpack_sbuffer_destroy(&b);
}

static void test_access_log_field(void **state)
{
    (void)state;
    msgpack_sbuffer a, b;
    msgpack_packer pk;
    msgpack_sbuffer_init(&a);
    msgpack_sbuffer_init(&b);
    resource_t r, back;
    const char *why;
    uint32_t v;
    char txt[RESOURCE_ACCESS_LOG_STR];
    make_http(&r);
    msgpack_packer_init(&pk, &a, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    assert_null(memmem(a.data, a.size, "access_log", 10));
    assert_int_equal(resource_access_log_one_in(&r), 1);
    static const struct {
        const char *text;
        uint32_t value, one_in;
    } ok[] = {{"on", 0, 1},
              {"sample:1", 0, 1},
              {"off", RESOURCE_ACCESS_LOG_OFF, 0},
              {"sample:2", 2, 2},
              {"sample:1000000", 1000000, 1000000}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(resource_access_log_parse(ok[i].text, strlen(ok[i].text), &v), 0);
        assert_int_equal(v, ok[i].value);
        r.access_log = v;
        assert_int_equal(resource_access_log_one_in(&r), ok[i].one_in);
        msgpack_sbuffer_clear(&b);
        msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
        resource_pack(&pk, &r);
        if (parse(&b, r.name, &back, &why) != 0)
            fail_msg("access_log %s refused: %s", ok[i].text, why);
        assert_int_equal(back.access_log, v);
        assert_http_equal(&r, &back);
        if (v == 0)
            assert_int_equal(b.size, a.size); /* on: not written */
        resource_access_log_str(v, txt, sizeof(txt));
        assert_string_equal(txt, v == 0 ? "on" : ok[i].text);
    }
    static const char *const bad[] = {"", "yes", "sample:", "sample:0", "sample:01",
                                      "sample:1000001", "sample:-1", "sample:2x", "ON",
                                      "sample:99999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(resource_access_log_parse(bad[i], strlen(bad[i]), &v), -EINVAL);
    /* out of range in memory: resource_check refuses it, and so does a replicated record */
    char why_buf[200];
    r.access_log = 1; /* "on" is 0 in memory; its text sample:1 reads back as 0 */
    assert_int_equal(resource_check(&r, why_buf, sizeof(why_buf), &why), -EINVAL);
    r.access_log = RESOURCE_ACCESS_LOG_MAX + 1;
    hc_expect_refused(&r, "access_log");
    /* a record with a bad string */
    r.access_log = 0;
    msgpack_sbuffer_clear(&b);
    msgpack_packer_init(&pk, &b, msgpack_sbuffer_write);
    resource_pack(&pk, &r);
    /* the map gets one more pair: rewrite its header (fixmap) */
    assert_true(((uint8_t)b.data[0] & 0xf0) == 0x80 && ((uint8_t)b.data[0] & 0x0f) < 15);
    b.data[0] = (char)((uint8_t)b.data[0] + 1);
    msgpack_pack_str(&pk, 10);
    msgpack_pack_str_body(&pk, "access_log", 10);
    msgpack_pack_str(&pk, 9);
    msgpack_pack_str_body(&pk, "sample:0x", 9);
    assert_int_equal(parse(&b, r.name, &back, &why), -EBADMSG);
    assert_non_null(strstr(why, "access_log"));
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_unknown_fields_skipped),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_bad_bytes),
        cmocka_unit_test(test_check),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_site_record),
        cmocka_unit_test(test_token_site_field),
        cmocka_unit_test(test_http_roundtrip),
        cmocka_unit_test(test_http_old_records),
        cmocka_unit_test(test_http_bad),
        cmocka_unit_test(test_match_http),
        cmocka_unit_test(test_path_prefix_segments),
        cmocka_unit_test(test_check_mesh),
        cmocka_unit_test(test_tls_field),
        cmocka_unit_test(test_hc_settings),
        cmocka_unit_test(test_multisite),
        cmocka_unit_test(test_access_log_field),
        cmocka_unit_test(test_require_2fa),
        cmocka_unit_test(test_proxy_protocol),
        cmocka_unit_test(test_origin_tls),
        cmocka_unit_test(test_udp_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
