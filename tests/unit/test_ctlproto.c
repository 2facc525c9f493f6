/* Control protocol codec: framing, request/response decoding, argument lookup, bad input. */
#include "common/mp.h"
#include "node/ctl/ctlproto.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

static void build_request(msgpack_sbuffer *sb, unsigned version, const char *cmd, int with_key)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    ctl_frame_begin(sb);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, version);
    mpw_str(&pk, cmd);
    msgpack_pack_map(&pk, with_key ? 2 : 0);
    if (with_key) {
        mpw_str(&pk, "key");
        mpw_str(&pk, "cfg/a");
        mpw_str(&pk, "limit");
        msgpack_pack_uint32(&pk, 7);
    }
    ctl_frame_end(sb);
}

static void test_request_roundtrip(void **state)
{
    msgpack_sbuffer sb;
    build_request(&sb, CTL_VERSION, "config.get", 1);
    const uint8_t *body;
    size_t blen, flen;
    assert_int_equal(
        ctl_frame_peek((uint8_t *)sb.data, sb.size, CTL_MAX_REQUEST, &body, &blen, &flen), 1);
    assert_int_equal(flen, sb.size);
    ctl_request_t req;
    const char *why = NULL;
    assert_int_equal(ctl_request_decode(body, blen, &req, &why), 0);
    assert_int_equal(req.version, CTL_VERSION);
    assert_int_equal(req.command_len, 10);
    assert_memory_equal(req.command, "config.get", 10);
    const char *k;
    uint32_t kl;
    uint64_t lim;
    assert_int_equal(ctl_arg_str(&req, "key", &k, &kl), 1);
    assert_int_equal(kl, 5);
    assert_memory_equal(k, "cfg/a", 5);
    assert_int_equal(ctl_arg_uint(&req, "limit", &lim), 1);
    assert_int_equal(lim, 7);
    assert_int_equal(ctl_arg_str(&req, "limit", &k, &kl), -EINVAL); /* wrong type */
    assert_int_equal(ctl_arg_str(&req, "absent", &k, &kl), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_partial_and_oversized_frames(void **state)
{
    msgpack_sbuffer sb;
    build_request(&sb, CTL_VERSION, "status", 0);
    const uint8_t *body;
    size_t blen, flen;
    for (size_t len = 0; len < sb.size; len++)
        assert_int_equal(
            ctl_frame_peek((uint8_t *)sb.data, len, CTL_MAX_REQUEST, &body, &blen, &flen), 0);
    static const uint8_t huge[] = {0x7f, 0xff, 0xff, 0xff, 0x90};
    assert_int_equal(ctl_frame_peek(huge, sizeof(huge), CTL_MAX_REQUEST, &body, &blen, &flen),
                     -EMSGSIZE);
    msgpack_sbuffer_destroy(&sb);
}

static void test_bad_requests(void **state)
{
    ctl_request_t req;
    const char *why;
    /* not an array */
    static const uint8_t a[] = {0xc0};
    why = NULL;
    assert_int_equal(ctl_request_decode(a, sizeof(a), &req, &why), -EBADMSG);
    assert_non_null(why);
    /* command not a string */
    static const uint8_t b[] = {0x93, 0x01, 0x05, 0x80};
    assert_int_equal(ctl_request_decode(b, sizeof(b), &req, &why), -EBADMSG);
    /* args not a map */
    static const uint8_t c[] = {0x93, 0x01, 0xa1, 'x', 0x90};
    assert_int_equal(ctl_request_decode(c, sizeof(c), &req, &why), -EBADMSG);
    /* non-string key in args */
    static const uint8_t d[] = {0x93, 0x01, 0xa1, 'x', 0x81, 0x01, 0x02};
    assert_int_equal(ctl_request_decode(d, sizeof(d), &req, &why), -EBADMSG);
    /* trailing garbage */
    static const uint8_t e[] = {0x93, 0x01, 0xa1, 'x', 0x80, 0x00};
    assert_int_equal(ctl_request_decode(e, sizeof(e), &req, &why), -EBADMSG);
    /* empty command */
    static const uint8_t f[] = {0x93, 0x01, 0xa0, 0x80};
    assert_int_equal(ctl_request_decode(f, sizeof(f), &req, &why), -EBADMSG);
    /* other version: decodes (so the server can say which version it speaks) */
    static const uint8_t g[] = {0x93, 0x09, 0x00, 0x00};
    assert_int_equal(ctl_request_decode(g, sizeof(g), &req, &why), 0);
    assert_int_equal(req.version, 9);
}

static void test_response(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint32(&pk, CTL_VERSION);
    msgpack_pack_int(&pk, CTL_NOT_FOUND);
    msgpack_pack_map(&pk, 1);
    mpw_str(&pk, "error");
    mpw_str(&pk, "no key");
    ctl_response_t resp;
    const char *why;
    assert_int_equal(ctl_response_decode((uint8_t *)sb.data, sb.size, &resp, &why), 0);
    assert_int_equal(resp.status, CTL_NOT_FOUND);
    assert_true(mp_valid_object(resp.body, resp.body_len));
    for (size_t len = 0; len < sb.size; len++)
        assert_int_equal(ctl_response_decode((uint8_t *)sb.data, len, &resp, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_roundtrip),
        cmocka_unit_test(test_partial_and_oversized_frames),
        cmocka_unit_test(test_bad_requests),
        cmocka_unit_test(test_response),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
