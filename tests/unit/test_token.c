/* Bootstrap tokens (node/records/token.h): round trips, every single-byte change and every
 * truncation refused, prefix/length/role/seed limits, the derived join key, ids and mesh id, a
 * token signed by the wrong key, and format-1 forward compatibility (extra fields appended and
 * re-signed). */
#include "common/mp.h"
#include "node/records/token.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <cmocka.h>

#define EXPIRES 1700000000000ull /* ms */

static uint8_t mesh_pk[32], mesh_sk[64];   /* "our" mesh */
static uint8_t other_pk[32], other_sk[64]; /* another mesh */

static void make_token(token_t *t, unsigned nseeds)
{
    memset(t, 0, sizeof(*t));
    memcpy(t->mesh_pk, mesh_pk, 32);
    t->role = ROLE_POP;
    t->expires_ms = EXPIRES;
    for (int i = 0; i < 32; i++)
        t->secret[i] = (uint8_t)(0xa0 + i);
    for (unsigned i = 0; i < nseeds; i++) {
        snprintf(t->seeds[i].addr, sizeof(t->seeds[i].addr), "pop%u.example.net:%u", i, 7000 + i);
        memset(t->seeds[i].curve_pk, (int)(0x10 + i), 32);
    }
    t->nseeds = nseeds;
}

static void assert_token_equal(const token_t *a, const token_t *b)
{
    assert_memory_equal(a->mesh_pk, b->mesh_pk, 32);
    assert_int_equal(a->role, b->role);
    assert_true(a->expires_ms == b->expires_ms);
    assert_memory_equal(a->secret, b->secret, 32);
    assert_int_equal(a->nseeds, b->nseeds);
    for (unsigned i = 0; i < a->nseeds; i++) {
        assert_string_equal(a->seeds[i].addr, b->seeds[i].addr);
        assert_memory_equal(a->seeds[i].curve_pk, b->seeds[i].curve_pk, 32);
    }
}

static void encode_ok(const token_t *t, char out[TOKEN_TEXT_MAX + 1])
{
    assert_int_equal(token_encode(t, mesh_sk, out, TOKEN_TEXT_MAX + 1), 0);
    assert_int_equal(strncmp(out, TOKEN_PREFIX, strlen(TOKEN_PREFIX)), 0);
    assert_true(strlen(out) <= TOKEN_TEXT_MAX);
}

/* The six format-1 fields of t with a chosen header, role and seed count; the caller may append
 * array(6 + extra) - 6 more fields. */
static void pack_payload(msgpack_packer *pk, const token_t *t, uint32_t fields, uint32_t format,
                         const char *role, uint32_t nseeds)
{
    msgpack_pack_array(pk, fields);
    msgpack_pack_uint32(pk, format);
    mpw_bin(pk, t->mesh_pk, 32);
    mpw_str(pk, role);
    msgpack_pack_uint64(pk, t->expires_ms);
    mpw_bin(pk, t->secret, 32);
    msgpack_pack_array(pk, nseeds);
    for (uint32_t i = 0; i < nseeds; i++) {
        msgpack_pack_array(pk, 2);
        mpw_str(pk, t->seeds[i].addr);
        mpw_bin(pk, t->seeds[i].curve_pk, 32);
    }
}

/* pmt1. + base64url(payload || sig), the signature made by sk over the payload. */
static void sign_and_wrap(const void *payload, size_t plen, const uint8_t sk[64], char *out,
                          size_t outlen)
{
    uint8_t *body = malloc(plen + crypto_sign_BYTES);
    memcpy(body, payload, plen);
    crypto_sign_detached(body + plen, NULL, body, plen, sk);
    size_t prefix = strlen(TOKEN_PREFIX);
    assert_true(prefix + sodium_base64_encoded_len(plen + crypto_sign_BYTES,
                                                   sodium_base64_VARIANT_URLSAFE_NO_PADDING) <=
                outlen);
    memcpy(out, TOKEN_PREFIX, prefix);
    sodium_bin2base64(out + prefix, outlen - prefix, body, plen + crypto_sign_BYTES,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    free(body);
}

static int decode(const char *text, token_t *t, const char **why)
{
    *why = NULL;
    return token_decode(text, strlen(text), t, why);
}

static void assert_refused(const char *text, const char *why_prefix)
{
    token_t t;
    const char *why;
    assert_int_equal(decode(text, &t, &why), -EINVAL);
    assert_non_null(why);
    if (why_prefix && strncmp(why, why_prefix, strlen(why_prefix)) != 0)
        fail_msg("refused as \"%s\", expected \"%s...\"", why, why_prefix);
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_roundtrip(void **state)
{
    static const unsigned counts[] = {1, TOKEN_MAX_SEEDS};
    for (size_t c = 0; c < 2; c++) {
        token_t t, back;
        char text[TOKEN_TEXT_MAX + 1];
        const char *why;
        make_token(&t, counts[c]);
        encode_ok(&t, text);
        assert_int_equal(decode(text, &back, &why), 0);
        assert_token_equal(&t, &back);

        /* What a terminal adds around a pasted token is ignored. */
        char padded[TOKEN_TEXT_MAX + 16];
        snprintf(padded, sizeof(padded), " \t\r\n%s\r\n ", text);
        assert_int_equal(decode(padded, &back, &why), 0);
        assert_token_equal(&t, &back);
    }
    /* A site token too. */
    token_t t, back;
    char text[TOKEN_TEXT_MAX + 1];
    const char *why;
    make_token(&t, 2);
    t.role = ROLE_SITE;
    encode_ok(&t, text);
    assert_int_equal(decode(text, &back, &why), 0);
    assert_int_equal(back.role, ROLE_SITE);
}

static void test_every_byte_change_refused(void **state)
{
    token_t t, back;
    char text[TOKEN_TEXT_MAX + 1];
    const char *why;
    make_token(&t, 1);
    encode_ok(&t, text);
    size_t len = strlen(text);
    char *copy = malloc(len);
    unsigned tampered = 0, garbled = 0;
    for (size_t i = 0; i < len; i++) {
        for (int c = 0; c < 256; c++) {
            if (c == (unsigned char)text[i])
                continue;
            memcpy(copy, text, len);
            copy[i] = (char)c;
            why = NULL;
            if (token_decode(copy, len, &back, &why) != -EINVAL)
                fail_msg("byte %zu changed from '%c' to 0x%02x still decodes", i, text[i], c);
            assert_non_null(why);
            tampered += strncmp(why, "tampered", 8) == 0;
            garbled += strncmp(why, "garbled", 7) == 0;
        }
    }
    /* Both refusal paths ran: alphabet characters reach the signature, the others do not. */
    assert_true(tampered > 0);
    assert_true(garbled > 0);
    free(copy);
}

static void test_truncation_refused(void **state)
{
    token_t t, back;
    char text[TOKEN_TEXT_MAX + 1];
    const char *why;
    make_token(&t, 3);
    encode_ok(&t, text);
    size_t len = strlen(text);
    for (size_t n = 0; n < len; n++) {
        char *cut = malloc(n ? n : 1); /* exact size: ASan sees any read past the cut */
        memcpy(cut, text, n);
        why = NULL;
        if (token_decode(cut, n, &back, &why) != -EINVAL)
            fail_msg("token cut to %zu of %zu characters still decodes", n, len);
        assert_non_null(why);
        free(cut);
    }
    /* Only the signature left. */
    uint8_t sig[crypto_sign_BYTES] = {0};
    char s[200] = TOKEN_PREFIX;
    sodium_bin2base64(s + 5, sizeof(s) - 5, sig, sizeof(sig),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_refused(s, "truncated");
}

static void test_prefix_and_length(void **state)
{
    token_t t, back;
    char text[TOKEN_TEXT_MAX + 1], other[TOKEN_TEXT_MAX + 8];
    const char *why;
    make_token(&t, 1);
    encode_ok(&t, text);

    assert_refused("", "not a popmesh token");
    assert_refused("pmt1", "not a popmesh token");
    assert_refused("pmt1.", "truncated");
    snprintf(other, sizeof(other), "pmt2.%s", text + 5);
    assert_refused(other, "not a popmesh token");
    snprintf(other, sizeof(other), "PMT1.%s", text + 5);
    assert_refused(other, "not a popmesh token");
    snprintf(other, sizeof(other), "x%s", text);
    assert_refused(other, "not a popmesh token");
    snprintf(other, sizeof(other), "%s", text + 5); /* the prefix forgotten in the paste */
    assert_refused(other, "not a popmesh token");
    snprintf(other, sizeof(other), "%s%s", TOKEN_PREFIX, text); /* pasted twice */
    assert_refused(other, "garbled");
    snprintf(other, sizeof(other), "%s=", text); /* padding is not part of the format */
    assert_refused(other, "garbled");

    /* Too long: refused before any decoding, whatever follows the prefix. */
    char *big = malloc(TOKEN_TEXT_MAX + 100);
    memset(big, 'A', TOKEN_TEXT_MAX + 99);
    memcpy(big, TOKEN_PREFIX, 5);
    big[TOKEN_TEXT_MAX + 1] = '\0';
    assert_refused(big, "too long");
    big[TOKEN_TEXT_MAX + 99] = '\0';
    assert_refused(big, "too long");
    /* ...but whitespace around a valid token does not count towards the limit. */
    size_t len = strlen(text);
    memset(big, ' ', TOKEN_TEXT_MAX + 99);
    memcpy(big + 10, text, len);
    big[TOKEN_TEXT_MAX + 99] = '\0';
    assert_int_equal(decode(big, &back, &why), 0);
    assert_token_equal(&t, &back);
    free(big);
}

static void test_role_refused(void **state)
{
    static const char *const bad[] = {"admin", "", "po", "pops", "Pop", "sit", "site "};
    token_t t, back;
    char text[TOKEN_TEXT_MAX + 1];
    const char *why;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        make_token(&t, 1);
        t.role = (enum node_role)(ROLE_SITE + 1 + i); /* outside the enum: not encoded */
        assert_int_equal(token_encode(&t, mesh_sk, text, sizeof(text)), -EINVAL);

        /* Signed by the real mesh key, still refused on decode. */
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_payload(&pk, &t, 6, TOKEN_FORMAT, bad[i], 1);
        sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
        msgpack_sbuffer_destroy(&sb);
        assert_refused(text, "truncated or garbled (bad field)");
    }
    /* The same builder with a good role decodes: the refusals above are about the role. */
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    make_token(&t, 1);
    pack_payload(&pk, &t, 6, TOKEN_FORMAT, "pop", 1);
    sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
    msgpack_sbuffer_destroy(&sb);
    assert_int_equal(decode(text, &back, &why), 0);
    assert_token_equal(&t, &back);
}

static void test_seed_limits(void **state)
{
    token_t t;
    char text[TOKEN_TEXT_MAX + 1];
    make_token(&t, 1);
    t.nseeds = 0;
    assert_int_equal(token_encode(&t, mesh_sk, text, sizeof(text)), -EINVAL);
    make_token(&t, TOKEN_MAX_SEEDS);
    t.nseeds = TOKEN_MAX_SEEDS + 1;
    assert_int_equal(token_encode(&t, mesh_sk, text, sizeof(text)), -EINVAL);
    make_token(&t, 2);
    t.seeds[1].addr[0] = '\0';
    assert_int_equal(token_encode(&t, mesh_sk, text, sizeof(text)), -EINVAL);

    /* Too big for the text limit (8 seeds of 255-byte addresses) or for the buffer. */
    make_token(&t, TOKEN_MAX_SEEDS);
    for (unsigned i = 0; i < TOKEN_MAX_SEEDS; i++) {
        memset(t.seeds[i].addr, 'a', TOKEN_ADDR_MAX);
        t.seeds[i].addr[TOKEN_ADDR_MAX] = '\0';
    }
    assert_int_equal(token_encode(&t, mesh_sk, text, sizeof(text)), -E2BIG);
    make_token(&t, 1);
    assert_int_equal(token_encode(&t, mesh_sk, text, 40), -E2BIG);

    /* A signed payload with 0 seeds or more than the limit is refused on decode. */
    static const uint32_t counts[] = {0, TOKEN_MAX_SEEDS + 1};
    for (size_t c = 0; c < 2; c++) {
        make_token(&t, 1);
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 6);
        msgpack_pack_uint32(&pk, TOKEN_FORMAT);
        mpw_bin(&pk, t.mesh_pk, 32);
        mpw_str(&pk, "pop");
        msgpack_pack_uint64(&pk, t.expires_ms);
        mpw_bin(&pk, t.secret, 32);
        msgpack_pack_array(&pk, counts[c]);
        for (uint32_t i = 0; i < counts[c]; i++) {
            msgpack_pack_array(&pk, 2);
            mpw_str(&pk, "s:1");
            mpw_bin(&pk, t.seeds[0].curve_pk, 32);
        }
        sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
        msgpack_sbuffer_destroy(&sb);
        assert_refused(text, "truncated or garbled (bad field)");
    }
}

static void test_join_keypair(void **state)
{
    uint8_t s1[32], s2[32], pk1[32], sk1[32], pk1b[32], sk1b[32], pk2[32], sk2[32], chk[32];
    memset(s1, 1, 32);
    memset(s2, 1, 32);
    s2[31] = 2;
    token_join_keypair(s1, pk1, sk1);
    token_join_keypair(s1, pk1b, sk1b);
    token_join_keypair(s2, pk2, sk2);
    assert_memory_equal(pk1, pk1b, 32);
    assert_memory_equal(sk1, sk1b, 32);
    assert_memory_not_equal(pk1, pk2, 32);
    assert_memory_not_equal(sk1, sk2, 32);
    /* A real Curve25519 pair, and the secret is not itself the key. */
    crypto_scalarmult_base(chk, sk1);
    assert_memory_equal(chk, pk1, 32);
    assert_memory_not_equal(sk1, s1, 32);
    assert_memory_not_equal(pk1, s1, 32);
}

static void test_public_ids(void **state)
{
    token_t t;
    token_public_t pub, pub2;
    make_token(&t, 1);
    token_public(&t, &pub);
    uint8_t pk[32], sk[32];
    token_join_keypair(t.secret, pk, sk);
    assert_memory_equal(pub.join_pk, pk, 32);
    assert_true(pub.id == token_id_of(pk));
    assert_true(pub.id != 0);

    /* The id is the first 8 bytes (big-endian) of BLAKE2b-128(join_pk): it names store keys
     * on every node, so it must not change silently. */
    uint8_t h[16];
    crypto_generichash(h, 16, pk, 32, NULL, 0);
    uint64_t want = 0;
    for (int i = 0; i < 8; i++)
        want = want << 8 | h[i];
    assert_true(pub.id == want);

    /* Mesh id: BLAKE2b-128(mesh_pk), stable, different per mesh. */
    uint8_t mid[16], mid2[16], mid_other[16];
    token_mesh_id(mesh_pk, mid);
    token_mesh_id(mesh_pk, mid2);
    token_mesh_id(other_pk, mid_other);
    assert_memory_equal(mid, mid2, 16);
    assert_memory_not_equal(mid, mid_other, 16);
    crypto_generichash(h, 16, mesh_pk, 32, NULL, 0);
    assert_memory_equal(mid, h, 16);
    assert_memory_equal(pub.mesh_id, mid, 16);

    /* Another secret, another id; same secret, same public values. */
    token_public(&t, &pub2);
    assert_memory_equal(&pub2, &pub, sizeof(pub));
    t.secret[0] ^= 1;
    token_public(&t, &pub2);
    assert_true(pub2.id != pub.id);
    assert_memory_not_equal(pub2.join_pk, pub.join_pk, 32);
    assert_memory_equal(pub2.mesh_id, pub.mesh_id, 16);
}

static void test_wrong_signer(void **state)
{
    token_t t;
    char text[TOKEN_TEXT_MAX + 1];
    make_token(&t, 2);
    /* Carries our mesh_pk but is signed by another mesh's key. */
    assert_int_equal(token_encode(&t, other_sk, text, sizeof(text)), 0);
    assert_refused(text, "tampered");
    /* Signed by the other key and carrying its pk: valid, for the other mesh. */
    token_t back;
    const char *why;
    memcpy(t.mesh_pk, other_pk, 32);
    assert_int_equal(token_encode(&t, other_sk, text, sizeof(text)), 0);
    assert_int_equal(decode(text, &back, &why), 0);
    assert_memory_equal(back.mesh_pk, other_pk, 32);
}

static void test_format(void **state)
{
    token_t t;
    char text[TOKEN_TEXT_MAX + 1];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    make_token(&t, 1);

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_payload(&pk, &t, 6, TOKEN_FORMAT + 1, "pop", 1);
    sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
    msgpack_sbuffer_destroy(&sb);
    assert_refused(text, "made by a newer popmesh");

    /* Fewer than six fields. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint32(&pk, TOKEN_FORMAT);
    mpw_bin(&pk, t.mesh_pk, 32);
    mpw_str(&pk, "pop");
    msgpack_pack_uint64(&pk, t.expires_ms);
    mpw_bin(&pk, t.secret, 32);
    sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
    msgpack_sbuffer_destroy(&sb);
    assert_refused(text, "truncated or garbled");
}

static void test_extra_fields(void **state)
{
    token_t t, back;
    char text[TOKEN_TEXT_MAX + 1];
    const char *why;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    make_token(&t, 2);

    /* A later format-1 writer appends two fields and signs the whole: still decodes. */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_payload(&pk, &t, 8, TOKEN_FORMAT, "pop", 2);
    mpw_str(&pk, ""); /* field 7: the site name, empty for a PoP token */
    msgpack_pack_map(&pk, 1);
    mpw_str(&pk, "nested");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_nil(&pk);
    sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
    assert_int_equal(decode(text, &back, &why), 0);
    assert_token_equal(&t, &back);

    /* Fields appended after signing (the signature covers the 6-field payload) fail. */
    msgpack_sbuffer_clear(&sb);
    pack_payload(&pk, &t, 6, TOKEN_FORMAT, "pop", 2);
    size_t signed_len = sb.size;
    uint8_t body[1024];
    memcpy(body, sb.data, signed_len);
    crypto_sign_detached(body + 900, NULL, body, signed_len, mesh_sk);
    msgpack_sbuffer_clear(&sb);
    pack_payload(&pk, &t, 7, TOKEN_FORMAT, "pop", 2);
    mpw_str(&pk, "branch-1"); /* a well-formed 7th field (site name) */
    msgpack_sbuffer_write(&sb, (const char *)body + 900, crypto_sign_BYTES);
    memcpy(text, TOKEN_PREFIX, 5);
    sodium_bin2base64(text + 5, sizeof(text) - 5, (const uint8_t *)sb.data, sb.size,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    assert_refused(text, "tampered");

    /* An extra field that is itself malformed (a cut-off str8, and an array header claiming
     * more fields than there are) is refused even when signed. */
    msgpack_sbuffer_clear(&sb);
    pack_payload(&pk, &t, 7, TOKEN_FORMAT, "pop", 2);
    msgpack_sbuffer_write(&sb, "\xd9\x10xy", 4);
    sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
    assert_refused(text, "truncated or garbled");
    msgpack_sbuffer_clear(&sb);
    pack_payload(&pk, &t, 9, TOKEN_FORMAT, "pop", 2);
    msgpack_pack_true(&pk);
    sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
    assert_refused(text, "truncated or garbled");

    /* Bytes after the payload array (not inside it) are refused too. */
    msgpack_sbuffer_clear(&sb);
    pack_payload(&pk, &t, 6, TOKEN_FORMAT, "pop", 2);
    msgpack_pack_true(&pk);
    sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
    assert_refused(text, "truncated or garbled (trailing bytes)");
    msgpack_sbuffer_destroy(&sb);
}

static void test_seed_fields(void **state)
{
    token_t t;
    char text[TOKEN_TEXT_MAX + 1];
    msgpack_sbuffer sb;
    msgpack_packer pk;
    make_token(&t, 1);
    /* A seed address with a NUL, an empty one, a seed pair of 3, a 31-byte key: all refused. */
    for (int variant = 0; variant < 4; variant++) {
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        pack_payload(&pk, &t, 6, TOKEN_FORMAT, "pop", 0);
        sb.size--; /* replace the empty seed array header (one byte, 0x90) with one seed */
        msgpack_pack_array(&pk, 1);
        msgpack_pack_array(&pk, variant == 2 ? 3 : 2);
        if (variant == 0)
            mpw_strn(&pk, "a\0b:1", 5);
        else if (variant == 1)
            mpw_str(&pk, "");
        else
            mpw_str(&pk, "a:1");
        mpw_bin(&pk, t.seeds[0].curve_pk, variant == 3 ? 31 : 32);
        if (variant == 2)
            msgpack_pack_nil(&pk);
        sign_and_wrap(sb.data, sb.size, mesh_sk, text, sizeof(text));
        msgpack_sbuffer_destroy(&sb);
        assert_refused(text, "truncated or garbled (bad seed)");
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    uint8_t seed[32];
    memset(seed, 0x5a, 32);
    crypto_sign_seed_keypair(mesh_pk, mesh_sk, seed);
    memset(seed, 0x6b, 32);
    crypto_sign_seed_keypair(other_pk, other_sk, seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),          cmocka_unit_test(test_every_byte_change_refused),
        cmocka_unit_test(test_truncation_refused), cmocka_unit_test(test_prefix_and_length),
        cmocka_unit_test(test_role_refused),       cmocka_unit_test(test_seed_limits),
        cmocka_unit_test(test_join_keypair),       cmocka_unit_test(test_public_ids),
        cmocka_unit_test(test_wrong_signer),       cmocka_unit_test(test_format),
        cmocka_unit_test(test_extra_fields),       cmocka_unit_test(test_seed_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
