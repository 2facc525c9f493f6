/* The second factor (node/auth/totp.h, node/records/totprec.h) and the identity JWT
 * (node/auth/idjwt.h): RFC 4226 and RFC 6238 test vectors, the window and replays, strict
 * parsing of what users type, recovery codes, the records (sealed secret, bad input), tokens
 * that verify and the key file. */
#include "common/mp.h"
#include "node/auth/idjwt.h"
#include "node/auth/totp.h"
#include "node/records/registry.h"
#include "node/records/totprec.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

static const uint8_t RFC_KEY[] = "12345678901234567890"; /* RFC 4226 / 6238 SHA-1 secret */

static int setup(void **state)
{
    (void)state;
    return sodium_init() < 0 ? -1 : 0;
}

static void test_hotp_rfc4226(void **state)
{
    (void)state;
    static const uint32_t want[] = {755224, 287082, 359152, 969429, 338314,
                                    254676, 287922, 162583, 399871, 520489};
    for (uint64_t c = 0; c < 10; c++)
        assert_int_equal(totp_hotp(RFC_KEY, 20, c, 6), want[c]);
    assert_int_equal(totp_hotp(RFC_KEY, 20, 0, 0), -1);
    assert_int_equal(totp_hotp(RFC_KEY, 20, 0, 10), -1);
}

static void test_totp_rfc6238(void **state)
{
    (void)state;
    /* RFC 6238 appendix B, SHA-1 rows (8 digits); our 6 digits are the same number mod 10^6 */
    static const struct {
        uint64_t t;
        uint32_t code;
    } v[] = {{59, 94287082},         {1111111109, 7081804},  {1111111111, 14050471},
             {1234567890, 89005924}, {2000000000, 69279037}, {20000000000ull, 65353130}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        uint64_t s = totp_step(v[i].t);
        assert_int_equal(totp_hotp(RFC_KEY, 20, s, 8), v[i].code);
        assert_int_equal(totp_hotp(RFC_KEY, 20, s, 6), v[i].code % 1000000);
        uint64_t got = 0;
        assert_int_equal(totp_verify(RFC_KEY, 20, v[i].code % 1000000, s, 0, &got), 0);
        assert_int_equal(got, s);
    }
}

static void test_window_and_replay(void **state)
{
    (void)state;
    uint64_t now = totp_step(1234567890), got;
    uint32_t prev = (uint32_t)totp_hotp(RFC_KEY, 20, now - 1, 6);
    uint32_t next = (uint32_t)totp_hotp(RFC_KEY, 20, now + 1, 6);
    uint32_t far = (uint32_t)totp_hotp(RFC_KEY, 20, now + 2, 6);
    uint32_t old = (uint32_t)totp_hotp(RFC_KEY, 20, now - 2, 6);
    assert_int_equal(totp_verify(RFC_KEY, 20, prev, now, 0, &got), 0);
    assert_int_equal(got, now - 1);
    assert_int_equal(totp_verify(RFC_KEY, 20, next, now, 0, &got), 0);
    assert_int_equal(got, now + 1);
    assert_int_equal(totp_verify(RFC_KEY, 20, far, now, 0, &got), -EACCES);
    assert_int_equal(totp_verify(RFC_KEY, 20, old, now, 0, &got), -EACCES);
    /* a code is good once: after step now was accepted, it and the step before are replays */
    uint32_t cur = (uint32_t)totp_hotp(RFC_KEY, 20, now, 6);
    assert_int_equal(totp_verify(RFC_KEY, 20, cur, now, now, &got), -EALREADY);
    assert_int_equal(totp_verify(RFC_KEY, 20, prev, now, now, &got), -EALREADY);
    assert_int_equal(totp_verify(RFC_KEY, 20, next, now, now, &got), 0);
    /* a code from the next step accepted early makes the current one a replay too */
    assert_int_equal(totp_verify(RFC_KEY, 20, cur, now, now + 1, &got), -EALREADY);
    /* the wrong key */
    assert_int_not_equal(
        totp_verify((const uint8_t *)"another secret 12345", 20, cur, now, 0, &got), 0);
    /* step 0 and 1: no step before the first */
    assert_int_equal(totp_verify(RFC_KEY, 20, (uint32_t)totp_hotp(RFC_KEY, 20, 0, 6), 0, 0, &got),
                     -EALREADY); /* step 0 is never > last_step 0 */
    assert_int_equal(totp_verify(RFC_KEY, 20, (uint32_t)totp_hotp(RFC_KEY, 20, 1, 6), 0, 0, &got),
                     0);
}

static void test_code_parse(void **state)
{
    (void)state;
    uint32_t c = 7;
    assert_int_equal(totp_code_parse("123456", 6, &c), 0);
    assert_int_equal(c, 123456);
    assert_int_equal(totp_code_parse("012 345", 7, &c), 0);
    assert_int_equal(c, 12345);
    const char *bad[] = {"",
                         "12345",
                         "1234567",
                         "12a456",
                         "-12345",
                         "+123456",
                         "123456\n",
                         "12345 ",
                         "１２３４５６",
                         "123\0"
                         "456",
                         "            123456"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t l = i == 9 ? 7 : strlen(bad[i]);
        assert_int_equal(totp_code_parse(bad[i], l, &c), -EINVAL);
    }
    assert_false(totp_is_recovery("123456", 6));
    assert_false(totp_is_recovery("123 456", 7));
    assert_true(totp_is_recovery("abcd-efgh", 9));
    assert_true(totp_is_recovery("1234567", 7));
}

static void test_base32_uri(void **state)
{
    (void)state;
    char b[TOTP_B32_MAX], uri[TOTP_URI_MAX];
    assert_int_equal(totp_base32(RFC_KEY, 20, b, sizeof(b)), 32);
    assert_string_equal(b, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    assert_int_equal(totp_base32((const uint8_t *)"f", 1, b, sizeof(b)), 2);
    assert_string_equal(b, "MY");
    assert_int_equal(totp_uri("popmesh", "alice", RFC_KEY, uri, sizeof(uri)), 0);
    assert_string_equal(uri, "otpauth://totp/popmesh:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
                             "&issuer=popmesh&algorithm=SHA1&digits=6&period=30");
    assert_int_equal(totp_uri("my mesh", "a:b", RFC_KEY, uri, sizeof(uri)), 0);
    assert_non_null(strstr(uri, "totp/my%20mesh:a%3Ab?"));
    assert_int_equal(totp_uri("popmesh", "alice", RFC_KEY, uri, 40), -ENOSPC);
}

static void test_recovery(void **state)
{
    (void)state;
    char text[TOTP_RECOVERY_TEXT + 1], canon[TOTP_RECOVERY_CHARS + 1],
        other[TOTP_RECOVERY_TEXT + 1];
    uint8_t salt[TOTP_SALT_BYTES], h1[TOTP_RECOVERY_HASH], h2[TOTP_RECOVERY_HASH];
    randombytes_buf(salt, sizeof(salt));
    totp_recovery_make(text);
    totp_recovery_make(other);
    assert_int_equal(strlen(text), TOTP_RECOVERY_TEXT);
    assert_string_not_equal(text, other);
    assert_true(totp_is_recovery(text, strlen(text)));
    assert_int_equal(totp_recovery_parse(text, strlen(text), canon), 0);
    totp_recovery_hash(salt, canon, h1);
    /* typed in upper case, without dashes, with spaces: the same code */
    char typed[64];
    size_t o = 0;
    for (size_t i = 0; text[i]; i++)
        if (text[i] != '-')
            typed[o++] = (char)(text[i] >= 'a' && text[i] <= 'z' ? text[i] - 32 : text[i]);
    typed[o++] = ' ';
    typed[o] = '\0';
    assert_int_equal(totp_recovery_parse(typed, o, canon), 0);
    totp_recovery_hash(salt, canon, h2);
    assert_memory_equal(h1, h2, sizeof(h1));
    /* another salt, another hash */
    salt[0] ^= 1;
    totp_recovery_hash(salt, canon, h2);
    assert_memory_not_equal(h1, h2, sizeof(h1));
    const char *bad[] = {"",
                         "abcd-efgh-ijkl-mno",
                         "abcd-efgh-ijkl-mnopq",
                         "abcd-efgh-ijkl-mn0p",
                         "abcd-efgh-ijkl-mn1p",
                         "abcd-efgh-ijkl-mn8p",
                         "abcd_efgh_ijkl_mnop",
                         "abcd-efgh-ijkl-mnop-abcd-efgh-ijkl-mnop-x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(totp_recovery_parse(bad[i], strlen(bad[i]), canon), -EINVAL);
    assert_int_equal(totp_recovery_parse("abcd\0efgh-ijkl-mnop", 19, canon), -EINVAL);
}

static void pack_rec(const totp_rec_t *t, msgpack_sbuffer *sb)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    totprec_pack(&pk, t);
}

static void test_records(void **state)
{
    (void)state;
    storekey_t sk;
    storeseal_t k, other;
    storekey_generate(&sk);
    storeseal_init(&k, &sk, NULL);
    storekey_generate(&sk);
    storeseal_init(&other, &sk, NULL);
    totp_rec_t t = {.name = "alice", .enrolled_ms = 1700000000000ull, .nrecovery = 10}, back;
    uint8_t secret[TOTPREC_SECRET], out[TOTPREC_SECRET];
    randombytes_buf(secret, sizeof(secret));
    randombytes_buf(t.salt, sizeof(t.salt));
    randombytes_buf(t.recovery, sizeof(t.recovery));
    assert_int_equal(totprec_seal(&k, &t, secret), 0);
    assert_int_equal(t.sealed_len, TOTPREC_SECRET + STORESEAL_OVERHEAD);
    /* the secret is not in the record in clear */
    msgpack_sbuffer sb;
    pack_rec(&t, &sb);
    assert_null(memmem(sb.data, sb.size, secret, sizeof(secret)));
    const char *why = NULL;
    assert_int_equal(totprec_parse((uint8_t *)sb.data, sb.size, "alice", &back, &why), 0);
    assert_int_equal(back.enrolled_ms, t.enrolled_ms);
    assert_int_equal(back.nrecovery, 10);
    assert_memory_equal(back.recovery, t.recovery, sizeof(t.recovery));
    assert_int_equal(totprec_open(&k, &back, out), 0);
    assert_memory_equal(out, secret, sizeof(secret));
    /* another store key, or the record under another user's key, does not open */
    assert_int_not_equal(totprec_open(&other, &back, out), 0);
    memcpy(back.name, "bob", 4);
    assert_int_equal(totprec_open(&k, &back, out), -EBADMSG);
    /* the name must be the key's */
    assert_int_equal(totprec_parse((uint8_t *)sb.data, sb.size, "bob", &back, &why), -EBADMSG);
    /* every truncation is refused */
    for (size_t n = 0; n < sb.size; n++)
        assert_int_equal(totprec_parse((uint8_t *)sb.data, n, "alice", &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    /* a salt of the wrong size, an invalid name */
    {
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 4);
        mpw_kv_str(&pk, "name", "alice");
        mpw_kv_bin(&pk, "secret", t.sealed, t.sealed_len);
        mpw_kv_u64(&pk, "enrolled_ms", 1);
        mpw_kv_bin(&pk, "salt", t.salt, 15);
        assert_int_equal(totprec_parse((uint8_t *)sb.data, sb.size, "alice", &back, &why),
                         -EBADMSG);
        msgpack_sbuffer_destroy(&sb);
    }
    t.nrecovery = 10;
    memcpy(t.name, "Alice", 6);
    pack_rec(&t, &sb);
    assert_int_equal(totprec_parse((uint8_t *)sb.data, sb.size, "Alice", &back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    char key[TOTPREC_KEY_MAX];
    assert_int_equal(totprec_key("alice", key, sizeof(key)), 0);
    assert_string_equal(key, "totp/alice");
    assert_int_equal(totpuse_key("../x", key, sizeof(key)), -EINVAL);

    /* the use record */
    totp_use_t u = {.enrolled_ms = 5, .last_step = 123, .recovery_used = 0x201}, ub;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    totpuse_pack(&pk, &u);
    assert_int_equal(totpuse_parse((uint8_t *)sb.data, sb.size, &ub, &why), 0);
    assert_memory_equal(&u, &ub, sizeof(u));
    msgpack_sbuffer_destroy(&sb);
    u.recovery_used = 1u << 10; /* an 11th code does not exist */
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    totpuse_pack(&pk, &u);
    assert_int_equal(totpuse_parse((uint8_t *)sb.data, sb.size, &ub, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    storeseal_wipe(&k);
    storeseal_wipe(&other);
}

/* Decodes base64url (no padding) into out; its length. */
static size_t unb64(const char *s, size_t n, uint8_t *out, size_t cap)
{
    size_t bl = 0;
    assert_int_equal(sodium_base642bin(out, cap, s, n, NULL, &bl, NULL,
                                       sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    return bl;
}

static void test_jwt(void **state)
{
    (void)state;
    idjwt_key_t k;
    uint8_t seed[32] = {1};
    crypto_sign_seed_keypair(k.pk, k.sk, seed);
    idjwt_t *j = idjwt_new(&k, 0x1234abcdull, "00112233445566778899aabbccddeeff", "pop-1");
    assert_non_null(j);
    const char *groups[] = {"ops", "dev"};
    idjwt_claims_t c = {
        .user = "alice", .groups = groups, .ngroups = 2, .email = "a\"b@x", .resource = "app"};
    const char *tok;
    size_t len;
    assert_int_equal(idjwt_token(j, &c, 1000, &tok, &len), 0);
    char copy[IDJWT_MAX];
    memcpy(copy, tok, len + 1);
    char *d1 = strchr(copy, '.'), *d2 = strrchr(copy, '.');
    assert_non_null(d1);
    assert_true(d2 > d1);
    uint8_t sig[80], buf[IDJWT_MAX];
    assert_int_equal(unb64(d2 + 1, strlen(d2 + 1), sig, sizeof(sig)), 64);
    assert_int_equal(crypto_sign_verify_detached(sig, (uint8_t *)copy, (size_t)(d2 - copy), k.pk),
                     0);
    size_t hl = unb64(copy, (size_t)(d1 - copy), buf, sizeof(buf));
    buf[hl] = 0;
    assert_string_equal((char *)buf,
                        "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"000000001234abcd\"}");
    size_t pl = unb64(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf));
    buf[pl] = 0;
    assert_string_equal((char *)buf,
                        "{\"iss\":\"popmesh:00112233445566778899aabbccddeeff\",\"sub\":\"alice\","
                        "\"user\":\"alice\",\"groups\":[\"ops\",\"dev\"],\"email\":\"a\\\"b@x\","
                        "\"name\":\"alice\",\"aud\":\"app\",\"pop\":\"pop-1\",\"iat\":1000,"
                        "\"exp\":1060}");
    /* a tampered payload does not verify */
    copy[(d1 - copy) + 5] ^= 1;
    assert_int_not_equal(
        crypto_sign_verify_detached(sig, (uint8_t *)copy, (size_t)(d2 - copy), k.pk), 0);
    /* cached for half its life, then a new one; other claims, another token */
    const char *t2;
    size_t l2;
    assert_int_equal(idjwt_token(j, &c, 1029, &t2, &l2), 0);
    assert_true(strstr(t2, ".") && l2 == len);
    assert_int_equal(idjwt_token(j, &c, 1030, &t2, &l2), 0);
    pl = unb64(strchr(t2, '.') + 1, (size_t)(strrchr(t2, '.') - strchr(t2, '.') - 1), buf,
               sizeof(buf));
    buf[pl] = 0;
    assert_non_null(strstr((char *)buf, "\"iat\":1030,\"exp\":1090"));
    c.resource = "other";
    assert_int_equal(idjwt_token(j, &c, 1031, &t2, &l2), 0);
    pl = unb64(strchr(t2, '.') + 1, (size_t)(strrchr(t2, '.') - strchr(t2, '.') - 1), buf,
               sizeof(buf));
    buf[pl] = 0;
    assert_non_null(strstr((char *)buf, "\"aud\":\"other\""));
    /* control bytes escaped */
    char out[64];
    size_t o = 0;
    assert_true(idjwt_json_str(out, sizeof(out), &o, "a\n\\\x01"));
    assert_string_equal(out, "\"a\\u000a\\\\\\u0001\"");
    o = 0;
    assert_false(idjwt_json_str(out, 4, &o, "abcdef"));
    idjwt_destroy(&j);
    assert_null(j);
    idjwt_destroy(&j);
}

static void test_jwk_record(void **state)
{
    (void)state;
    uint8_t pub[32], back[32];
    randombytes_buf(pub, sizeof(pub));
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    idjwt_jwk_pack(&pk, 42, pub, 7);
    const char *why;
    assert_int_equal(idjwt_jwk_parse((uint8_t *)sb.data, sb.size, 42, back, &why), 0);
    assert_memory_equal(pub, back, 32);
    assert_int_equal(idjwt_jwk_parse((uint8_t *)sb.data, sb.size, 43, back, &why), -EBADMSG);
    for (size_t n = 0; n < sb.size; n++)
        assert_int_equal(idjwt_jwk_parse((uint8_t *)sb.data, n, 42, back, &why), -EBADMSG);
    msgpack_sbuffer_destroy(&sb);
    char key[24];
    idjwt_jwk_key(42, key);
    assert_string_equal(key, "jwk/000000000000002a");
}

static void test_key_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_totp.XXXXXX", err[512], path[600];
    assert_non_null(mkdtemp(dir));
    idjwt_key_t a, b;
    bool created;
    assert_int_equal(idjwt_key_load_or_create(dir, &a, &created, err, sizeof(err)), 0);
    assert_true(created);
    snprintf(path, sizeof(path), "%s/%s", dir, IDJWT_KEY_FILE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(idjwt_key_load_or_create(dir, &b, &created, err, sizeof(err)), 0);
    assert_false(created);
    assert_memory_equal(&a, &b, sizeof(a));
    chmod(path, 0644);
    assert_int_equal(idjwt_key_load_or_create(dir, &b, &created, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    FILE *f = fopen(path, "w");
    fputs("seed = nothex\n", f);
    fclose(f);
    chmod(path, 0600);
    assert_int_equal(idjwt_key_load_or_create(dir, &b, &created, err, sizeof(err)), -EINVAL);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hotp_rfc4226),      cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_window_and_replay), cmocka_unit_test(test_code_parse),
        cmocka_unit_test(test_base32_uri),        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_records),           cmocka_unit_test(test_jwt),
        cmocka_unit_test(test_jwk_record),        cmocka_unit_test(test_key_file),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
