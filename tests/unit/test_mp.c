/* Unit tests for the bounded msgpack reader: valid encodings of every type round-trip through
 * msgpack-c's packer, and every way a hostile length can lie is refused. */
#include "common/mp.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void pack_sample(msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 9);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_int(&pk, -5);
    mpw_str(&pk, "hello");
    mpw_bin(&pk, "\x00\x01\x02", 3);
    msgpack_pack_double(&pk, 1.5);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk);
    msgpack_pack_map(&pk, 1);
    mpw_str(&pk, "k");
    msgpack_pack_array(&pk, 0);
}

static void test_roundtrip(void **state)
{
    msgpack_sbuffer sb;
    pack_sample(&sb);
    mpr_t r;
    uint32_t n;
    uint64_t u;
    int64_t i;
    const char *s;
    const uint8_t *b;
    double d;
    bool t;
    mpr_init(&r, sb.data, sb.size);
    assert_int_equal(mpr_array(&r, &n), 0);
    assert_int_equal(n, 9);
    assert_int_equal(mpr_uint(&r, &u), 0);
    assert_true(u == UINT64_MAX);
    assert_int_equal(mpr_int(&r, &i), 0);
    assert_true(i == INT64_MIN);
    assert_int_equal(mpr_peek(&r), MP_INT);
    assert_int_equal(mpr_int(&r, &i), 0);
    assert_int_equal(i, -5);
    assert_int_equal(mpr_str(&r, &s, &n), 0);
    assert_int_equal(n, 5);
    assert_memory_equal(s, "hello", 5);
    assert_int_equal(mpr_bin(&r, &b, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(mpr_double(&r, &d), 0);
    assert_true(d == 1.5);
    assert_int_equal(mpr_bool(&r, &t), 0);
    assert_true(t);
    assert_int_equal(mpr_nil(&r), 0);
    assert_int_equal(mpr_map(&r, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mpr_skip(&r), 0);
    assert_int_equal(mpr_skip(&r), 0);
    assert_int_equal(r.left, 0);
    assert_int_equal(r.err, 0);
    assert_true(mp_valid_object(sb.data, sb.size));
    msgpack_sbuffer_destroy(&sb);
}

/* Every proper prefix of a valid message must be refused, never read past. */
static void test_truncations(void **state)
{
    msgpack_sbuffer sb;
    pack_sample(&sb);
    for (size_t len = 0; len < sb.size; len++)
        assert_false(mp_valid_object(sb.data, len));
    msgpack_sbuffer_destroy(&sb);
}

static void test_hostile_counts(void **state)
{
    mpr_t r;
    uint32_t n;
    const char *s;
    /* array32 announcing 4 billion elements in a 5-byte message */
    static const uint8_t big_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
    mpr_init(&r, big_array, sizeof(big_array));
    assert_int_equal(mpr_array(&r, &n), -EBADMSG);
    /* map16 announcing more pairs than bytes */
    static const uint8_t big_map[] = {0xde, 0x00, 0x10, 0x01, 0x02};
    mpr_init(&r, big_map, sizeof(big_map));
    assert_int_equal(mpr_map(&r, &n), -EBADMSG);
    /* str32 longer than the buffer */
    static const uint8_t long_str[] = {0xdb, 0x00, 0x00, 0x01, 0x00, 'a'};
    mpr_init(&r, long_str, sizeof(long_str));
    assert_int_equal(mpr_str(&r, &s, &n), -EBADMSG);
    /* the reserved byte 0xc1 */
    static const uint8_t reserved[] = {0xc1};
    assert_false(mp_valid_object(reserved, 1));
    /* trailing bytes */
    static const uint8_t trailing[] = {0x01, 0x02};
    assert_false(mp_valid_object(trailing, 2));
    /* errors are sticky */
    mpr_init(&r, long_str, sizeof(long_str));
    assert_int_equal(mpr_str(&r, &s, &n), -EBADMSG);
    assert_int_equal(mpr_nil(&r), -EBADMSG);
    assert_int_equal(r.err, -EBADMSG);
}

static void test_depth_limit(void **state)
{
    uint8_t deep[MP_MAX_DEPTH + 8];
    memset(deep, 0x91, sizeof(deep)); /* [[[[...]]]] */
    deep[sizeof(deep) - 1] = 0xc0;
    assert_false(mp_valid_object(deep, sizeof(deep)));
    uint8_t ok[8];
    memset(ok, 0x91, sizeof(ok));
    ok[7] = 0xc0;
    assert_true(mp_valid_object(ok, sizeof(ok)));
}

static void test_type_mismatch(void **state)
{
    mpr_t r;
    uint64_t u;
    static const uint8_t neg[] = {0xff}; /* -1 */
    mpr_init(&r, neg, 1);
    assert_int_equal(mpr_uint(&r, &u), -EBADMSG);
    static const uint8_t u64max[] = {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    int64_t i;
    mpr_init(&r, u64max, sizeof(u64max));
    assert_int_equal(mpr_int(&r, &i), -EBADMSG); /* does not fit int64 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),      cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_hostile_counts), cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_type_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
