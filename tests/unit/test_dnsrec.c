/* DNS steering's records (node/records/zone.h, geo.h): zone names (every rule, each with its
 * reason), zone and geo records round trip, unknown fields are skipped, missing required
 * fields, wrong types, out-of-range values and records under another key are refused; CIDRs
 * are keyed by one canonical spelling; "LAT,LON" parses exactly to microdegrees and refuses
 * everything else. */
#include "common/mp.h"
#include "node/records/geo.h"
#include "node/records/zone.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- records built field by field -------------------------------------------------------- */

enum kind { K_STR, K_U64, K_INT, K_BOOL, K_NIL, K_DOUBLE, K_MAP };

struct item {
    const char *key;
    enum kind kind;
    const char *s;
    uint64_t u;
    int64_t i;
    double d;
};

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
        switch (it[i].kind) {
        case K_STR:
            mpw_str(&pk, it[i].s);
            break;
        case K_U64:
            msgpack_pack_uint64(&pk, it[i].u);
            break;
        case K_INT:
            msgpack_pack_int64(&pk, it[i].i);
            break;
        case K_BOOL:
            msgpack_pack_true(&pk);
            break;
        case K_NIL:
            msgpack_pack_nil(&pk);
            break;
        case K_DOUBLE:
            msgpack_pack_double(&pk, it[i].d);
            break;
        case K_MAP:
            msgpack_pack_map(&pk, 1);
            mpw_str(&pk, "x");
            msgpack_pack_array(&pk, 0);
            break;
        }
    }
}

/* ---- zones ------------------------------------------------------------------------------- */

static void test_zone_names(void **state)
{
    (void)state;
    char long_label[80], long_name[300];
    memset(long_label, 'a', 63);
    strcpy(long_label + 63, ".test");
    const char *good[] = {
        "example.test",       "test",    "a.b.c.d.e", "x-1.example.test", "_dmarc.example.test",
        "1.2.3.in-addr.arpa", long_label};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *why = NULL;
        assert_int_equal(zone_check_name(good[i], &why), 0);
    }
    /* 253 bytes is the most: 3 labels of 63 and one of 61, separated by dots. */
    memset(long_name, 'a', 253);
    long_name[63] = long_name[127] = long_name[191] = '.';
    long_name[253] = '\0';
    const char *why = NULL;
    assert_int_equal(zone_check_name(long_name, &why), 0);
    long_name[253] = 'a';
    long_name[254] = '\0';
    assert_int_equal(zone_check_name(long_name, &why), -EINVAL);
    assert_string_equal(why, "a zone name is longer than 253 bytes");

    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ".test");
    struct {
        const char *name, *why;
    } bad[] = {
        {"", "a zone name is empty"},
        {"example.test.", "a zone name is written without the trailing dot"},
        {".", "a zone name is written without the trailing dot"},
        {"Example.test", "a zone name is written in lower case"},
        {"example..test", "a zone name has an empty label ('..' or a leading '.')"},
        {".example.test", "a zone name has an empty label ('..' or a leading '.')"},
        {"-a.test", "a label of a zone name starts or ends with '-'"},
        {"a-.test", "a label of a zone name starts or ends with '-'"},
        {"a.test-", "a label of a zone name starts or ends with '-'"},
        {"a b.test", "a zone name holds a character other than a-z, 0-9, '-', '_' and '.'"},
        {"*.test", "a zone name holds a character other than a-z, 0-9, '-', '_' and '.'"},
        {"a\xc3\xa9.test", "a zone name holds a character other than a-z, 0-9, '-', '_' and '.'"},
        {long_label, "a label of a zone name is longer than 63 bytes"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_int_equal(zone_check_name(bad[i].name, &why), -EINVAL);
        assert_string_equal(why, bad[i].why);
    }

    char key[ZONE_KEY_MAX];
    assert_int_equal(zone_key("example.test", key, sizeof(key)), 0);
    assert_string_equal(key, "zone/example.test");
    assert_int_equal(zone_key("Example.test", key, sizeof(key)), -EINVAL);
    assert_int_equal(zone_key("example.test", key, 10), -EINVAL);
    long_name[253] = '\0';
    assert_int_equal(zone_key(long_name, key, sizeof(key)), 0);
    assert_int_equal(strlen(key), ZONE_KEY_MAX - 1);
}

static void test_zone_roundtrip(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    zone_rec_t z = {.name = "example.test", .ttl = 1, .answers = 8, .created_ms = UINT64_MAX};
    for (int v = 0; v < 2; v++) {
        if (v == 1)
            z = (zone_rec_t){.name = "b.example.test", .ttl = ZONE_TTL_MAX, .answers = 1};
        zone_rec_t back;
        const char *why = NULL;
        msgpack_sbuffer_clear(&sb);
        zone_pack(&pk, &z);
        assert_int_equal(zone_parse((const uint8_t *)sb.data, sb.size, z.name, &back, &why), 0);
        assert_string_equal(back.name, z.name);
        assert_int_equal(back.ttl, z.ttl);
        assert_int_equal(back.answers, z.answers);
        assert_true(back.created_ms == z.created_ms);
        /* Under another key: refused. */
        assert_int_equal(zone_parse((const uint8_t *)sb.data, sb.size, "other.test", &back, &why),
                         -EBADMSG);
        assert_string_equal(why, "the record's name is not the name in its key");
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_zone_fields(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    struct item base[] = {
        {.key = "name", .kind = K_STR, .s = "example.test"},
        {.key = "ttl", .kind = K_U64, .u = 30},
        {.key = "answers", .kind = K_U64, .u = 2},
        {.key = "created_ms", .kind = K_U64, .u = 5},
        {.key = "later", .kind = K_MAP}, /* a field a later version adds: skipped */
    };
    zone_rec_t z;
    const char *why = NULL;
    pack_items(&sb, base, 5, -1);
    assert_int_equal(zone_parse((const uint8_t *)sb.data, sb.size, "example.test", &z, &why), 0);
    assert_int_equal(z.ttl, 30);
    /* created_ms may be left out; the others may not. */
    pack_items(&sb, base, 5, 3);
    assert_int_equal(zone_parse((const uint8_t *)sb.data, sb.size, "example.test", &z, &why), 0);
    for (int skip = 0; skip < 3; skip++) {
        pack_items(&sb, base, 5, skip);
        why = NULL;
        assert_int_equal(zone_parse((const uint8_t *)sb.data, sb.size, "example.test", &z, &why),
                         -EBADMSG);
        assert_non_null(why);
        assert_non_null(strstr(why, "missing"));
    }
    struct {
        int field;
        struct item value;
        const char *why; /* NULL: any reason */
    } bad[] = {
        {1, {.key = "ttl", .kind = K_U64, .u = 0}, "ttl must be from 1 to 86400 seconds"},
        {1, {.key = "ttl", .kind = K_U64, .u = 86401}, "ttl must be from 1 to 86400 seconds"},
        {1,
         {.key = "ttl", .kind = K_U64, .u = (1ull << 32) + 20},
         "ttl must be from 1 to 86400 seconds"},
        {1, {.key = "ttl", .kind = K_INT, .i = -1}, NULL},
        {1, {.key = "ttl", .kind = K_STR, .s = "20"}, NULL},
        {1, {.key = "ttl", .kind = K_DOUBLE, .d = 20.0}, NULL},
        {2, {.key = "answers", .kind = K_U64, .u = 0}, "answers must be from 1 to 8"},
        {2, {.key = "answers", .kind = K_U64, .u = 9}, "answers must be from 1 to 8"},
        {2, {.key = "answers", .kind = K_U64, .u = UINT64_MAX}, "answers must be from 1 to 8"},
        {0,
         {.key = "name", .kind = K_STR, .s = "Example.test"},
         "a zone name is written in lower case"},
        {0, {.key = "name", .kind = K_NIL}, NULL},
        {4, {.key = "ttl", .kind = K_U64, .u = 30}, NULL}, /* ttl twice */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct item it[5];
        memcpy(it, base, sizeof(it));
        it[bad[i].field] = bad[i].value;
        pack_items(&sb, it, 5, -1);
        why = NULL;
        assert_int_equal(zone_parse((const uint8_t *)sb.data, sb.size, "example.test", &z, &why),
                         -EBADMSG);
        assert_non_null(why);
        if (bad[i].why)
            assert_string_equal(why, bad[i].why);
    }
    /* Not a map, truncated, trailing bytes. */
    const uint8_t junk[] = {0x93, 1, 2, 3};
    assert_int_equal(zone_parse(junk, sizeof(junk), "example.test", &z, &why), -EBADMSG);
    pack_items(&sb, base, 5, -1);
    assert_int_equal(zone_parse((const uint8_t *)sb.data, sb.size - 1, "example.test", &z, &why),
                     -EBADMSG);
    msgpack_sbuffer_write(&sb, "\x01", 1);
    assert_int_equal(zone_parse((const uint8_t *)sb.data, sb.size, "example.test", &z, &why),
                     -EBADMSG);
    assert_int_equal(zone_parse(NULL, 0, "example.test", &z, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- geo --------------------------------------------------------------------------------- */

static void test_geo_cidr_canonical(void **state)
{
    (void)state;
    struct {
        const char *in, *out;
    } good[] = {
        {"10.1.0.0/16", "10.1.0.0/16"},
        {"10.1.2.3", "10.1.2.3/32"},
        {"0.0.0.0/0", "0.0.0.0/0"},
        {"2001:DB8:0:0::/32", "2001:db8::/32"},
        {"::/0", "::/0"},
        {"::ffff:10.0.0.0/104", "::ffff:10.0.0.0/104"},
        {"fd00:0000::1", "fd00::1/128"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char out[AUTH_CIDR_MAX + 1], key[GEO_KEY_MAX];
        const char *why = NULL;
        auth_cidr_t net;
        assert_int_equal(geo_cidr_canonical(good[i].in, out, sizeof(out), &net, &why), 0);
        assert_string_equal(out, good[i].out);
        assert_int_equal(geo_key(good[i].in, key, sizeof(key)), 0);
        assert_string_equal(key + strlen(GEO_PREFIX), good[i].out);
        assert_memory_equal(key, GEO_PREFIX, strlen(GEO_PREFIX));
    }
    const char *bad[] = {"10.1.0.1/16", "10.0.0.0/33",    "10.0.0/8", "10.0.0.0/",
                         "10.0.0.0/08", "host.example/8", "",         "2001:db8::1/32",
                         "10.0.0.0/8 "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char out[AUTH_CIDR_MAX + 1], key[GEO_KEY_MAX];
        const char *why = NULL;
        assert_int_equal(geo_cidr_canonical(bad[i], out, sizeof(out), NULL, &why), -EINVAL);
        assert_non_null(why);
        assert_int_equal(geo_key(bad[i], key, sizeof(key)), -EINVAL);
    }
    const char *why = NULL;
    char out[AUTH_CIDR_MAX + 1];
    assert_int_equal(geo_cidr_canonical("10.1.0.1/16", out, sizeof(out), NULL, &why), -EINVAL);
    assert_non_null(strstr(why, "host bits"));
}

static void test_geo_roundtrip(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    geo_rec_t cases[] = {
        {.cidr = "10.1.0.0/16", .region = "eu-west", .created_ms = 7},
        {.cidr = "2001:db8::/32", .region = "us", .has_loc = true, .lat = 40.7128, .lon = -74.006},
        {.cidr = "0.0.0.0/0", .region = "x", .has_loc = true, .lat = -90, .lon = 180},
        {.cidr = "::/0", .region = "x", .has_loc = true, .lat = 90, .lon = -180},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        geo_rec_t back;
        const char *why = NULL;
        msgpack_sbuffer_clear(&sb);
        geo_pack(&pk, &cases[i]);
        assert_int_equal(geo_parse((const uint8_t *)sb.data, sb.size, cases[i].cidr, &back, &why),
                         0);
        assert_string_equal(back.cidr, cases[i].cidr);
        assert_string_equal(back.region, cases[i].region);
        assert_int_equal(back.has_loc, cases[i].has_loc);
        assert_true(back.lat == cases[i].lat && back.lon == cases[i].lon);
        assert_true(back.created_ms == cases[i].created_ms);
        assert_int_equal(back.net.prefix,
                         strchr(cases[i].cidr, ':') ? (i == 1 ? 32 : 0) : (i == 0 ? 16 : 0));
        assert_int_equal(geo_parse((const uint8_t *)sb.data, sb.size, "10.2.0.0/16", &back, &why),
                         -EBADMSG);
        assert_string_equal(why, "the record's cidr is not the cidr in its key");
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_geo_fields(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    struct item base[] = {
        {.key = "cidr", .kind = K_STR, .s = "10.1.0.0/16"},
        {.key = "region", .kind = K_STR, .s = "eu"},
        {.key = "lat_udeg", .kind = K_INT, .i = -1500000},
        {.key = "lon_udeg", .kind = K_U64, .u = 2000000},
        {.key = "created_ms", .kind = K_U64, .u = 1},
        {.key = "later", .kind = K_MAP},
    };
    geo_rec_t g;
    const char *why = NULL;
    pack_items(&sb, base, 6, -1);
    assert_int_equal(geo_parse((const uint8_t *)sb.data, sb.size, "10.1.0.0/16", &g, &why), 0);
    assert_true(g.has_loc && g.lat == -1.5 && g.lon == 2.0);
    for (int skip = 0; skip < 5; skip++) {
        pack_items(&sb, base, 6, skip);
        why = NULL;
        int rc = geo_parse((const uint8_t *)sb.data, sb.size, "10.1.0.0/16", &g, &why);
        if (skip == 4) {
            assert_int_equal(rc, 0);
            continue;
        }
        assert_int_equal(rc, -EBADMSG);
        if (skip >= 2)
            assert_string_equal(why, "a location needs both lat_udeg and lon_udeg");
        else
            assert_non_null(strstr(why, "missing"));
    }
    /* Neither lat nor lon: no location. */
    struct item noloc[] = {base[0], base[1], base[4]};
    pack_items(&sb, noloc, 3, -1);
    assert_int_equal(geo_parse((const uint8_t *)sb.data, sb.size, "10.1.0.0/16", &g, &why), 0);
    assert_false(g.has_loc);
    struct {
        int field;
        struct item value;
        const char *key, *why;
    } bad[] = {
        {0, {.key = "cidr", .kind = K_STR, .s = "10.1.0.1/16"}, "10.1.0.1/16", NULL},
        {0, {.key = "cidr", .kind = K_STR, .s = "10.1.0.0/016"}, "10.1.0.0/16", NULL},
        {0,
         {.key = "cidr", .kind = K_STR, .s = "2001:DB8::/32"},
         "2001:DB8::/32",
         "the cidr is not written canonically (the network as inet_ntop writes it, then /BITS)"},
        {0,
         {.key = "cidr", .kind = K_STR, .s = "10.1.2.3"},
         "10.1.2.3",
         "the cidr is not written canonically (the network as inet_ntop writes it, then /BITS)"},
        {1,
         {.key = "region", .kind = K_STR, .s = ""},
         "10.1.0.0/16",
         "a region is 1-63 of a-z, 0-9 and '-', not starting or ending with '-'"},
        {1,
         {.key = "region", .kind = K_STR, .s = "EU"},
         "10.1.0.0/16",
         "a region is 1-63 of a-z, 0-9 and '-', not starting or ending with '-'"},
        {2,
         {.key = "lat_udeg", .kind = K_INT, .i = 90000001},
         "10.1.0.0/16",
         "lat_udeg must be within +-90000000 and lon_udeg within +-180000000"},
        {3,
         {.key = "lon_udeg", .kind = K_INT, .i = -180000001},
         "10.1.0.0/16",
         "lat_udeg must be within +-90000000 and lon_udeg within +-180000000"},
        {3, {.key = "lon_udeg", .kind = K_U64, .u = UINT64_MAX}, "10.1.0.0/16", NULL},
        {2,
         {.key = "lat_udeg", .kind = K_DOUBLE, .d = 1.5},
         "10.1.0.0/16",
         "lat_udeg and lon_udeg must be integers (microdegrees)"},
        {5, {.key = "region", .kind = K_STR, .s = "eu"}, "10.1.0.0/16", NULL}, /* twice */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct item it[6];
        memcpy(it, base, sizeof(it));
        it[bad[i].field] = bad[i].value;
        pack_items(&sb, it, 6, -1);
        why = NULL;
        assert_int_equal(geo_parse((const uint8_t *)sb.data, sb.size, bad[i].key, &g, &why),
                         -EBADMSG);
        assert_non_null(why);
        if (bad[i].why)
            assert_string_equal(why, bad[i].why);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_geo_location(void **state)
{
    (void)state;
    struct {
        const char *in;
        int64_t lat, lon; /* microdegrees */
        const char *out;
    } good[] = {
        {"48.8566,2.3522", 48856600, 2352200, "48.8566,2.3522"},
        {"-33.86882, 151.209296", -33868820, 151209296, "-33.86882,151.209296"},
        {" 0,0 ", 0, 0, "0,0"},
        {"-90,180", -90000000, 180000000, "-90,180"},
        {"90,-180", 90000000, -180000000, "90,-180"},
        {"+1.5,-0.0000004", 1500000, 0, "1.5,0"},
        {"1.0000005,2.00000049", 1000001, 2000000, "1.000001,2"},
        {"-0.0000005,0.9999995", -1, 1000000, "-0.000001,1"},
        {"12.123456789012345,1", 12123457, 1000000, "12.123457,1"},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        double lat = 99, lon = 99;
        char out[GEO_LOCATION_MAX];
        assert_int_equal(geo_parse_location(good[i].in, &lat, &lon), 0);
        assert_true(geo_udeg(lat) == good[i].lat);
        assert_true(geo_udeg(lon) == good[i].lon);
        geo_format_location(lat, lon, out, sizeof(out));
        assert_string_equal(out, good[i].out);
        /* What is printed parses back to the same microdegrees. */
        double lat2, lon2;
        assert_int_equal(geo_parse_location(out, &lat2, &lon2), 0);
        assert_true(lat2 == lat && lon2 == lon);
    }
    const char *bad[] = {"",
                         "48.8566",
                         "48.8566;2.35",
                         "90.000001,0",
                         "0,180.0000005",
                         "-91,0",
                         "0,-181",
                         "1e1,0",
                         "0x10,0",
                         "inf,0",
                         "nan,nan",
                         "1.,2",
                         ".5,2",
                         "1,2,3",
                         "1,2 x",
                         "1000,0",
                         "--1,0",
                         "1.2.3,4",
                         "1,",
                         ",1",
                         "1 2,3",
                         "0,1.0000000000000001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        double lat = 7, lon = 7;
        if (geo_parse_location(bad[i], &lat, &lon) != -EINVAL)
            fail_msg("accepted location '%s'", bad[i]);
        assert_true(lat == 7 && lon == 7);
    }
    assert_true(geo_location_ok(90, -180));
    assert_false(geo_location_ok(90.1, 0));
    assert_false(geo_location_ok(0.0 / 0.0, 0));
    assert_true(geo_udeg(0.0 / 0.0) == 0);
    /* Every microdegree of a range survives udeg -> degrees -> udeg. */
    for (int64_t u = -180000000; u <= 180000000; u += 999983) {
        assert_true(geo_udeg((double)u / 1e6) == u);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zone_names),    cmocka_unit_test(test_zone_roundtrip),
        cmocka_unit_test(test_zone_fields),   cmocka_unit_test(test_geo_cidr_canonical),
        cmocka_unit_test(test_geo_roundtrip), cmocka_unit_test(test_geo_fields),
        cmocka_unit_test(test_geo_location),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
