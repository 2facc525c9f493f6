/* Unit tests of end-to-end stream sealing (tunnel/seal.h): both ends derive the same keys and
 * only they do; records open in order and nowhere else; every bit matters; suites. */
#include "tunnel/seal.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

struct party {
    uint8_t pk[32], sk[32];
};

static void keypair(struct party *p)
{
    crypto_box_keypair(p->pk, p->sk);
}

/* K at both ends, then the stream keys. */
static void derive(const struct party *e, const struct party *i, const struct party *s,
                   const uint8_t salt[16], const uint8_t bind[32], uint8_t suite,
                   seal_keys_t *ki, seal_keys_t *ks)
{
    uint8_t k1[32], k2[32];
    assert_int_equal(seal_path_ingress(k1, e->sk, e->pk, i->sk, i->pk, s->pk), 0);
    assert_int_equal(seal_path_site(k2, s->sk, s->pk, e->pk, i->pk), 0);
    assert_memory_equal(k1, k2, 32);
    seal_stream_keys(ki, k1, salt, bind, suite, true);
    seal_stream_keys(ks, k2, salt, bind, suite, false);
}

static void test_agreement(void **state)
{
    (void)state;
    struct party e, i, s, other;
    keypair(&e);
    keypair(&i);
    keypair(&s);
    keypair(&other);
    uint8_t salt[16] = {1}, bind[32] = {2};
    seal_keys_t ki, ks;
    derive(&e, &i, &s, salt, bind, SEAL_SUITE_CHACHA20POLY1305, &ki, &ks);
    assert_memory_equal(ki.tx, ks.rx, 32);
    assert_memory_equal(ki.rx, ks.tx, 32);
    assert_memory_not_equal(ki.tx, ki.rx, 32); /* one key per direction */

    /* Someone who claims to be the ingress without its static secret (a relay that swapped
     * the ingress id for its own key) gets another K. */
    uint8_t k_site[32], k_fake[32];
    assert_int_equal(seal_path_site(k_site, s.sk, s.pk, e.pk, i.pk), 0);
    assert_int_equal(seal_path_ingress(k_fake, e.sk, e.pk, other.sk, i.pk, s.pk), 0);
    assert_memory_not_equal(k_site, k_fake, 32);
    /* Another salt or another bind (an edited OPEN): other stream keys. */
    seal_keys_t k2;
    uint8_t salt2[16] = {3}, bind2[32] = {4};
    seal_stream_keys(&k2, k_site, salt2, bind, SEAL_SUITE_CHACHA20POLY1305, false);
    assert_memory_not_equal(k2.rx, ks.rx, 32);
    seal_stream_keys(&k2, k_site, salt, bind2, SEAL_SUITE_CHACHA20POLY1305, false);
    assert_memory_not_equal(k2.rx, ks.rx, 32);

    /* A small-order site key is refused (the DH would be all zero). */
    uint8_t zero[32] = {0}, k[32];
    assert_int_equal(seal_path_ingress(k, e.sk, e.pk, i.sk, i.pk, zero), -EINVAL);
    assert_int_equal(seal_path_site(k, s.sk, s.pk, zero, i.pk), -EINVAL);
}

static void roundtrip(uint8_t suite)
{
    struct party e, i, s;
    keypair(&e);
    keypair(&i);
    keypair(&s);
    uint8_t salt[16], bind[32];
    randombytes_buf(salt, sizeof(salt));
    randombytes_buf(bind, sizeof(bind));
    seal_keys_t ki, ks;
    derive(&e, &i, &s, salt, bind, suite, &ki, &ks);
    seal_state_t *a = seal_state_new(&ki), *b = seal_state_new(&ks);
    assert_non_null(a);
    assert_non_null(b);
    static uint8_t plain[65520], rec[65520 + SEAL_TAG_LEN], copy[sizeof(rec)];
    randombytes_buf(plain, sizeof(plain));
    for (int n = 0; n < 3; n++) { /* in order, several records */
        size_t len = n == 0 ? 1 : n == 1 ? 1000 : sizeof(plain);
        assert_int_equal(seal_record(a, plain, len, rec), 0);
        if (len >= 16) /* one byte of ciphertext equals the plaintext once in 256 */
            assert_memory_not_equal(rec, plain, 16);
        assert_int_equal(seal_open(b, rec, len + SEAL_TAG_LEN), 0);
        assert_memory_equal(rec, plain, len);
    }
    /* the other way, in place */
    memcpy(rec, plain, 100);
    assert_int_equal(seal_record(b, rec, 100, rec), 0);
    memcpy(copy, rec, 100 + SEAL_TAG_LEN);
    assert_int_equal(seal_open(a, rec, 100 + SEAL_TAG_LEN), 0);
    assert_memory_equal(rec, plain, 100);
    /* a replay of that record fails (the counter moved on), so does a record sealed for the
     * other direction */
    assert_int_equal(seal_open(a, copy, 100 + SEAL_TAG_LEN), -EBADMSG);
    assert_int_equal(seal_record(a, plain, 50, rec), 0);
    memcpy(copy, rec, 50 + SEAL_TAG_LEN);
    assert_int_equal(seal_open(a, copy, 50 + SEAL_TAG_LEN), -EBADMSG);
    /* every bit of a record matters */
    for (size_t at = 0; at < 50 + SEAL_TAG_LEN; at++) {
        memcpy(copy, rec, 50 + SEAL_TAG_LEN);
        copy[at] ^= 1;
        assert_int_equal(seal_open(b, copy, 50 + SEAL_TAG_LEN), -EBADMSG);
    }
    assert_int_equal(seal_open(b, rec, 50 + SEAL_TAG_LEN), 0);
    /* too short to hold a tag and a byte */
    assert_int_equal(seal_open(b, rec, SEAL_TAG_LEN), -EBADMSG);
    seal_state_free(&a);
    seal_state_free(&b);
    assert_null(a);
}

static void test_records(void **state)
{
    (void)state;
    roundtrip(SEAL_SUITE_CHACHA20POLY1305);
    if (seal_local_suites() & (1u << SEAL_SUITE_AES256GCM))
        roundtrip(SEAL_SUITE_AES256GCM);
}

/* The records are plain AES-256-GCM / ChaCha20-Poly1305 (RFC 8439) with the counter as nonce:
 * libsodium's own implementations open what seal_record sealed (the AES one runs in OpenSSL),
 * so both ends agree whatever library each uses. */
static void test_interop(void **state)
{
    (void)state;
    for (uint8_t suite = 1; suite <= 2; suite++) {
        if (!(seal_local_suites() & (1u << suite)))
            continue;
        seal_keys_t k = {.suite = suite};
        randombytes_buf(k.tx, sizeof(k.tx));
        randombytes_buf(k.rx, sizeof(k.rx));
        seal_state_t *st = seal_state_new(&k);
        assert_non_null(st);
        uint8_t plain[3000], rec[3000 + SEAL_TAG_LEN], out[3000];
        randombytes_buf(plain, sizeof(plain));
        for (uint64_t seq = 0; seq < 3; seq++) {
            assert_int_equal(seal_record(st, plain, sizeof(plain), rec), 0);
            uint8_t n[12] = {0};
            for (int i = 0; i < 8; i++)
                n[4 + i] = (uint8_t)(seq >> (8 * i));
            int rc = suite == SEAL_SUITE_AES256GCM
                         ? crypto_aead_aes256gcm_decrypt_detached(out, NULL, rec, sizeof(plain),
                                                                  rec + sizeof(plain), NULL, 0, n,
                                                                  k.tx)
                         : crypto_aead_chacha20poly1305_ietf_decrypt_detached(
                               out, NULL, rec, sizeof(plain), rec + sizeof(plain), NULL, 0, n,
                               k.tx);
            assert_int_equal(rc, 0);
            assert_memory_equal(out, plain, sizeof(plain));
            /* and the other way: libsodium seals, seal_open opens */
            if (suite == SEAL_SUITE_AES256GCM)
                crypto_aead_aes256gcm_encrypt_detached(rec, rec + sizeof(plain), NULL, plain,
                                                       sizeof(plain), NULL, 0, NULL, n, k.rx);
            else
                crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                    rec, rec + sizeof(plain), NULL, plain, sizeof(plain), NULL, 0, NULL, n, k.rx);
            assert_int_equal(seal_open(st, rec, sizeof(rec)), 0);
            assert_memory_equal(rec, plain, sizeof(plain));
        }
        seal_state_free(&st);
    }
}

static void test_suites(void **state)
{
    (void)state;
    uint8_t m = seal_local_suites();
    assert_true(m & (1u << SEAL_SUITE_CHACHA20POLY1305));
    assert_int_equal(seal_pick_suite(m), (m & 2) ? SEAL_SUITE_AES256GCM
                                                 : SEAL_SUITE_CHACHA20POLY1305);
    assert_int_equal(seal_pick_suite(1u << SEAL_SUITE_CHACHA20POLY1305),
                     SEAL_SUITE_CHACHA20POLY1305);
    assert_int_equal(seal_pick_suite(0), 0);
    assert_int_equal(seal_pick_suite(0x80), 0);
    seal_keys_t k = {.suite = 0};
    assert_null(seal_state_new(&k));
    assert_int_equal(errno, EINVAL);
    k.suite = 7;
    assert_null(seal_state_new(&k));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agreement),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_interop),
        cmocka_unit_test(test_suites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
