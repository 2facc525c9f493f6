/* node/membership/healthvec: the health vector codec, old and new shapes, bad input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "node/membership/healthvec.h"

/* Packs an array of n unsigned integers (with a bool at index 5) and decodes it. */
static int decode_fields(const uint64_t *f, size_t n, healthvec_t *h)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        if (i == 5)
            f[i] ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        else
            msgpack_pack_uint64(&pk, f[i]);
    }
    mpr_t r;
    mpr_init(&r, (const uint8_t *)sb.data, sb.size);
    int rc = healthvec_decode(&r, h);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void test_round_trip(void **state)
{
    (void)state;
    healthvec_t h = {.id = 7,
                     .seq = 1733540000000ull,
                     .cpu_permille = 250,
                     .rss_kb = 9000,
                     .streams = 12,
                     .ingress_up = false,
                     .detailed = true,
                     .tunnels = 2,
                     .listeners = 3,
                     .listeners_up = 2,
                     .load_permille = 250},
                back;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    healthvec_pack(&pk, &h);
    mpr_t r;
    mpr_init(&r, (const uint8_t *)sb.data, sb.size);
    assert_int_equal(healthvec_decode(&r, &back), 0);
    assert_memory_equal(&h, &back, sizeof(h));
    /* Every truncation is refused. */
    for (size_t cut = 0; cut < sb.size; cut++) {
        mpr_init(&r, (const uint8_t *)sb.data, cut);
        assert_int_equal(healthvec_decode(&r, &back), -EBADMSG);
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_old_and_newer_shapes(void **state)
{
    (void)state;
    healthvec_t h;
    /* An older node's six fields: accepted, the rest unknown. */
    uint64_t v1[] = {7, 100, 300, 1000, 4, 1};
    assert_int_equal(decode_fields(v1, 6, &h), 0);
    assert_false(h.detailed);
    assert_true(h.ingress_up);
    assert_int_equal(h.streams, 4);
    assert_int_equal(h.listeners, 0);
    /* A newer node's extra fields are skipped. */
    uint64_t v3[] = {7, 100, 300, 1000, 4, 1, 1, 2, 2, 300, 99, 98};
    assert_int_equal(decode_fields(v3, 12, &h), 0);
    assert_true(h.detailed);
    assert_int_equal(h.listeners_up, 2);
    assert_int_equal(h.load_permille, 300);
}

static void test_refused(void **state)
{
    (void)state;
    healthvec_t h;
    uint64_t few[] = {7, 100, 300, 1000, 4};
    assert_int_equal(decode_fields(few, 5, &h), -EBADMSG);
    uint64_t big[] = {7, 100, 1ull << 32, 1000, 4, 1};
    assert_int_equal(decode_fields(big, 6, &h), -EBADMSG);
    uint64_t up_over[] = {7, 100, 300, 1000, 4, 1, 1, 2, 3, 300};
    assert_int_equal(decode_fields(up_over, 10, &h), -EBADMSG);
    /* Between the shapes: the four detailed fields come all or none. */
    uint64_t partial[] = {7, 100, 300, 1000, 4, 1, 1, 2};
    assert_int_equal(decode_fields(partial, 8, &h), 0);
    assert_false(h.detailed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_old_and_newer_shapes),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
