/* storeseal (node/records/storeseal.h): the seal/open helpers of secrets in replicated records,
 * and the store key file (identity.h). */
#include "node/records/storeseal.h"

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

static storeseal_t k, other;
static meshkey_t mk;

#define RKEY  "cert/www.example.com"
#define FIELD "key"
static const char secret[] = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n";

static int setup(void **state)
{
    (void)state;
    if (sodium_init() < 0)
        return -1;
    storekey_t a, b;
    storekey_generate(&a);
    storekey_generate(&b);
    meshkey_generate(&mk);
    storeseal_init(&k, &a, &mk);
    storeseal_init(&other, &b, NULL);
    return 0;
}

static void seal(const storeseal_t *key, const char *rkey, uint8_t **out, size_t *outlen)
{
    assert_int_equal(storeseal_seal(key, rkey, strlen(rkey), FIELD, (const uint8_t *)secret,
                                    strlen(secret), out, outlen),
                     0);
}

static int open_(const storeseal_t *key, const char *rkey, const char *field, const uint8_t *in,
                 size_t len, bool *legacy)
{
    uint8_t *p = (uint8_t *)"not touched";
    size_t pl = 99;
    int rc = storeseal_open(key, rkey, strlen(rkey), field, in, len, &p, &pl, legacy);
    if (rc == 0) {
        assert_int_equal(pl, strlen(secret));
        assert_string_equal((char *)p, secret); /* NUL-terminated */
        free(p);
    } else {
        assert_null(p);
        assert_int_equal(pl, 0);
    }
    return rc;
}

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t *s, *s2;
    size_t sl, sl2;
    seal(&k, RKEY, &s, &sl);
    assert_int_equal(sl, strlen(secret) + STORESEAL_OVERHEAD);
    assert_memory_equal(s, "pms\x01", 4);
    assert_int_equal(s[4], STOREKEY_ID_FIRST);
    assert_null(memmem(s, sl, "PRIVATE", 7));
    bool legacy = true;
    assert_int_equal(open_(&k, RKEY, FIELD, s, sl, &legacy), 0);
    assert_false(legacy);
    storeseal_hdr_t h;
    assert_int_equal(storeseal_parse(s, sl, &h), 0);
    assert_int_equal(h.version, STORESEAL_VERSION);
    assert_int_equal(h.plain_len, strlen(secret));
    /* Random nonces: two seals differ. */
    seal(&k, RKEY, &s2, &sl2);
    assert_memory_not_equal(s, s2, sl);
    free(s2);
    /* Empty plaintext. */
    assert_int_equal(storeseal_seal(&k, RKEY, strlen(RKEY), FIELD, (const uint8_t *)"", 0, &s2,
                                    &sl2),
                     0);
    uint8_t *p;
    size_t pl;
    assert_int_equal(storeseal_open(&k, RKEY, strlen(RKEY), FIELD, s2, sl2, &p, &pl, NULL), 0);
    assert_int_equal(pl, 0);
    free(p);
    free(s2);
    free(s);
}

static void test_wrong_key(void **state)
{
    (void)state;
    uint8_t *s;
    size_t sl;
    seal(&k, RKEY, &s, &sl);
    /* Another mesh's key with the same id: does not open. */
    assert_int_equal(open_(&other, RKEY, FIELD, s, sl, NULL), -EBADMSG);
    /* A key id this PoP does not hold. */
    storeseal_t k2 = k;
    k2.key_id = 2;
    assert_int_equal(open_(&k2, RKEY, FIELD, s, sl, NULL), -ENOKEY);
    /* No store key at all: nothing seals, nothing opens. */
    storeseal_t none;
    storeseal_init(&none, NULL, NULL);
    uint8_t *o;
    size_t ol;
    assert_int_equal(storeseal_seal(&none, RKEY, strlen(RKEY), FIELD, (const uint8_t *)"x", 1, &o,
                                    &ol),
                     -ENOKEY);
    assert_null(o);
    assert_int_equal(open_(&none, RKEY, FIELD, s, sl, NULL), -ENOKEY);
    free(s);
}

static void test_moved(void **state)
{
    (void)state;
    uint8_t *s;
    size_t sl;
    seal(&k, RKEY, &s, &sl);
    /* To another record, a prefix or extension of the key, another field. */
    assert_int_equal(open_(&k, "cert/evil.example.com", FIELD, s, sl, NULL), -EBADMSG);
    assert_int_equal(open_(&k, "cert/www.example.co", FIELD, s, sl, NULL), -EBADMSG);
    assert_int_equal(open_(&k, RKEY "m", FIELD, s, sl, NULL), -EBADMSG);
    assert_int_equal(open_(&k, RKEY, "eab_hmac", s, sl, NULL), -EBADMSG);
    /* field | 0 | key is unambiguous: "ke" + "y..." is not "key" + "...". */
    assert_int_equal(open_(&k, "y" RKEY, "ke", s, sl, NULL), -EBADMSG);
    free(s);
}

static void test_tampered(void **state)
{
    (void)state;
    uint8_t *s;
    size_t sl;
    seal(&k, RKEY, &s, &sl);
    for (size_t i = 0; i < sl; i++)
        for (int bit = 0; bit < 8; bit++) {
            s[i] ^= (uint8_t)(1 << bit);
            int rc = open_(&k, RKEY, FIELD, s, sl, NULL);
            /* the version byte gives -EPROTO, the key id -ENOKEY, the rest -EBADMSG */
            assert_true(rc == -EBADMSG || rc == -EPROTO || rc == -ENOKEY);
            s[i] ^= (uint8_t)(1 << bit);
        }
    assert_int_equal(open_(&k, RKEY, FIELD, s, sl, NULL), 0);
    free(s);
}

static void test_truncated(void **state)
{
    (void)state;
    uint8_t *s;
    size_t sl;
    seal(&k, RKEY, &s, &sl);
    for (size_t n = 0; n < sl; n++) {
        int rc = open_(&k, RKEY, FIELD, s, n, NULL);
        assert_true(rc == -EBADMSG);
    }
    /* One byte more. */
    uint8_t *longer = malloc(sl + 1);
    memcpy(longer, s, sl);
    longer[sl] = 0;
    assert_int_equal(open_(&k, RKEY, FIELD, longer, sl + 1, NULL), -EBADMSG);
    free(longer);
    free(s);
}

static void test_legacy_accepted(void **state)
{
    (void)state;
    /* The format before the store key: nonce | secretbox under the mesh-derived key, as
     * certstore wrote it (pinned derivation: crypto_kdf, subkey 1, "popmcert"). */
    uint8_t lk[32], nonce[24];
    crypto_kdf_derive_from_key(lk, 32, 1, "popmcert", mk.sk);
    size_t sl = strlen(secret) + 40;
    uint8_t *s = malloc(sl);
    randombytes_buf(nonce, sizeof(nonce));
    memcpy(s, nonce, 24);
    crypto_secretbox_xchacha20poly1305_easy(s + 24, (const uint8_t *)secret, strlen(secret), nonce,
                                            lk);
    bool legacy = false;
    assert_int_equal(open_(&k, RKEY, FIELD, s, sl, &legacy), 0);
    assert_true(legacy);
    /* Legacy values carry no record binding: they open under any record key (that is what
     * the rewrite fixes), but only with the mesh key. */
    assert_int_equal(open_(&other, RKEY, FIELD, s, sl, NULL), -EBADMSG);
    s[30] ^= 1;
    assert_int_equal(open_(&k, RKEY, FIELD, s, sl, NULL), -EBADMSG);
    free(s);
    /* The test knob writes the legacy format. */
    storeseal_t old = k;
    old.write_legacy = true;
    uint8_t *o;
    size_t ol;
    seal(&old, RKEY, &o, &ol);
    assert_int_equal(ol, strlen(secret) + STORESEAL_LEGACY_OVERHEAD);
    assert_int_equal(open_(&k, RKEY, FIELD, o, ol, &legacy), 0);
    assert_true(legacy);
    free(o);
    /* Clear text is not a format any version wrote: refused, not taken as the secret. */
    assert_int_equal(open_(&k, RKEY, FIELD, (const uint8_t *)secret, strlen(secret), NULL),
                     -EBADMSG);
    /* A legacy value whose nonce happens to start like the current header still opens. */
    sl = strlen(secret) + 40;
    s = malloc(sl);
    randombytes_buf(nonce, sizeof(nonce));
    memcpy(nonce, "pms\x01\x01", 5);
    memcpy(s, nonce, 24);
    crypto_secretbox_xchacha20poly1305_easy(s + 24, (const uint8_t *)secret, strlen(secret), nonce,
                                            lk);
    assert_int_equal(open_(&k, RKEY, FIELD, s, sl, &legacy), 0);
    assert_true(legacy);
    free(s);
}

static void test_parse(void **state)
{
    (void)state;
    storeseal_hdr_t h;
    uint8_t b[STORESEAL_OVERHEAD] = {'p', 'm', 's', 1, 1};
    assert_int_equal(storeseal_parse(b, sizeof(b), &h), 0);
    assert_int_equal(h.plain_len, 0);
    assert_int_equal(storeseal_parse(b, sizeof(b) - 1, &h), -EBADMSG);
    b[3] = 2;
    assert_int_equal(storeseal_parse(b, sizeof(b), &h), -EPROTO);
    b[3] = 1;
    b[4] = 0; /* key id 0 is no key */
    assert_int_equal(storeseal_parse(b, sizeof(b), &h), -EBADMSG);
    b[4] = 1;
    b[0] = 'P';
    assert_int_equal(storeseal_parse(b, sizeof(b), &h), -EBADMSG);
    assert_int_equal(storeseal_parse(b, 0, &h), -EBADMSG);
    assert_non_null(storeseal_strerror(-EBADMSG));
    assert_non_null(strstr(storeseal_strerror(-ENOKEY), "store key"));
}

static void test_storekey_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_storeseal-XXXXXX", path[64], err[300];
    assert_non_null(mkdtemp(dir));
    storekey_t a, b;
    assert_int_equal(storekey_load(dir, &b, err, sizeof(err)), -ENOENT);
    storekey_generate(&a);
    assert_int_equal(storekey_save(dir, &a, err, sizeof(err)), 0);
    snprintf(path, sizeof(path), "%s/%s", dir, STOREKEY_FILE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(storekey_load(dir, &b, err, sizeof(err)), 0);
    assert_memory_equal(&a, &b, sizeof(a));
    /* Never overwritten. */
    assert_int_not_equal(storekey_save(dir, &a, err, sizeof(err)), 0);
    chmod(path, 0644);
    assert_int_equal(storekey_load(dir, &b, err, sizeof(err)), -EPERM);
    unlink(path);
    rmdir(dir);
    /* Parsing. */
    const char *good = "store-key-id = 7\nstore-key = "
                       "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    assert_int_equal(storekey_parse(good, strlen(good), &b, err, sizeof(err)), 0);
    assert_int_equal(b.id, 7);
    assert_int_equal(b.key[31], 0x1f);
    const char *bad[] = {"store-key-id = 0\nstore-key = "
                         "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
                         "store-key-id = 256\nstore-key = "
                         "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
                         "store-key-id = 1\nstore-key = 0001\n", "store-key-id = 1\n",
                         "store-key = "
                         "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
                         "store-key-id = -1\n", "other = 1\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(storekey_parse(bad[i], strlen(bad[i]), &b, err, sizeof(err)), -EINVAL);
    /* Derived from the mesh key: the same on every PoP, not the legacy key, pinned. */
    storekey_t d1, d2;
    storekey_from_mesh(&d1, &mk);
    storekey_from_mesh(&d2, &mk);
    assert_memory_equal(&d1, &d2, sizeof(d1));
    assert_int_equal(d1.id, STOREKEY_ID_FIRST);
    uint8_t want[32], lk[32];
    crypto_kdf_derive_from_key(want, 32, 1, "popmstor", mk.sk);
    crypto_kdf_derive_from_key(lk, 32, 1, "popmcert", mk.sk);
    assert_memory_equal(d1.key, want, 32);
    assert_memory_not_equal(d1.key, lk, 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),      cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_moved),           cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_truncated),       cmocka_unit_test(test_legacy_accepted),
        cmocka_unit_test(test_parse),           cmocka_unit_test(test_storekey_file),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
