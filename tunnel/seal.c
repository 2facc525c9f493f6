/* seal: see seal.h.
 *
 * The records' AES-256-GCM runs in OpenSSL's EVP, not libsodium's: on this project's machines
 * (AVX-512, VAES) OpenSSL 3 seals 64 KiB records at 4.3 GB/s against libsodium 1.0.18's 1.8
 * (`openssl speed -evp aes-256-gcm` beside a libsodium loop, Dec 2026), and these records are
 * every byte a user sends through the mesh. Both are the same AES-256-GCM (12-byte nonce,
 * 16-byte tag, no associated data), so the wire does not change. Keys and everything else stay
 * libsodium's. ChaCha20-Poly1305 (for machines without AES-NI) stays libsodium's. */
#include "tunnel/seal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define SEAL_NONCE_LEN 12
_Static_assert(SEAL_NONCE_LEN == crypto_aead_chacha20poly1305_ietf_NPUBBYTES, "ChaCha20 nonce");
_Static_assert(SEAL_NONCE_LEN == crypto_aead_aes256gcm_NPUBBYTES, "AES-GCM nonce");
_Static_assert(SEAL_TAG_LEN == crypto_aead_aes256gcm_ABYTES, "AES-GCM tag");
_Static_assert(SEAL_TAG_LEN == crypto_aead_chacha20poly1305_ietf_ABYTES, "ChaCha20 tag");

struct seal_state {
    EVP_CIPHER_CTX *tx_aes, *rx_aes; /* AES-256-GCM: keyed once, a new nonce per record */
    uint8_t suite;
    uint8_t tx[SEAL_KEY_LEN], rx[SEAL_KEY_LEN];
    uint64_t tx_seq, rx_seq; /* records sealed / opened: the next nonce */
};

uint8_t seal_local_suites(void)
{
    if (sodium_init() < 0)
        return 0;
    uint8_t m = 1u << SEAL_SUITE_CHACHA20POLY1305;
    if (crypto_aead_aes256gcm_is_available())
        m |= 1u << SEAL_SUITE_AES256GCM;
    return m;
}

uint8_t seal_pick_suite(uint8_t mask)
{
    if (mask & (1u << SEAL_SUITE_AES256GCM))
        return SEAL_SUITE_AES256GCM;
    if (mask & (1u << SEAL_SUITE_CHACHA20POLY1305))
        return SEAL_SUITE_CHACHA20POLY1305;
    return 0;
}

static const char seal_label[] = "popmesh seal v1";

/* K from the two DH results and the three public keys (seal.h). */
static void path_key(uint8_t k[SEAL_KEY_LEN], const uint8_t es[32], const uint8_t ss[32],
                     const uint8_t e_pk[32], const uint8_t i_pk[32], const uint8_t s_pk[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, SEAL_KEY_LEN);
    crypto_generichash_update(&h, (const uint8_t *)seal_label, sizeof(seal_label) - 1);
    crypto_generichash_update(&h, es, 32);
    crypto_generichash_update(&h, ss, 32);
    crypto_generichash_update(&h, e_pk, 32);
    crypto_generichash_update(&h, i_pk, 32);
    crypto_generichash_update(&h, s_pk, 32);
    crypto_generichash_final(&h, k, SEAL_KEY_LEN);
    sodium_memzero(&h, sizeof(h));
}

int seal_path_ingress(uint8_t k[SEAL_KEY_LEN], const uint8_t e_sk[32], const uint8_t e_pk[32],
                      const uint8_t i_sk[32], const uint8_t i_pk[32], const uint8_t s_pk[32])
{
    uint8_t es[32], ss[32];
    int rc = 0;
    /* crypto_scalarmult fails on an all-zero result (a small-order point) */
    if (sodium_init() < 0 || crypto_scalarmult(es, e_sk, s_pk) || crypto_scalarmult(ss, i_sk, s_pk))
        rc = -EINVAL;
    else
        path_key(k, es, ss, e_pk, i_pk, s_pk);
    sodium_memzero(es, sizeof(es));
    sodium_memzero(ss, sizeof(ss));
    return rc;
}

int seal_path_site(uint8_t k[SEAL_KEY_LEN], const uint8_t s_sk[32], const uint8_t s_pk[32],
                   const uint8_t e_pk[32], const uint8_t i_pk[32])
{
    uint8_t es[32], ss[32];
    int rc = 0;
    if (sodium_init() < 0 || crypto_scalarmult(es, s_sk, e_pk) || crypto_scalarmult(ss, s_sk, i_pk))
        rc = -EINVAL;
    else
        path_key(k, es, ss, e_pk, i_pk, s_pk);
    sodium_memzero(es, sizeof(es));
    sodium_memzero(ss, sizeof(ss));
    return rc;
}

static void dir_key(uint8_t out[SEAL_KEY_LEN], const uint8_t k[SEAL_KEY_LEN], const char *dir,
                    const uint8_t salt[SEAL_SALT_LEN], const uint8_t bind[SEAL_BIND_LEN])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, k, SEAL_KEY_LEN, SEAL_KEY_LEN);
    crypto_generichash_update(&h, (const uint8_t *)dir, strlen(dir) + 1); /* with the NUL */
    crypto_generichash_update(&h, salt, SEAL_SALT_LEN);
    crypto_generichash_update(&h, bind, SEAL_BIND_LEN);
    crypto_generichash_final(&h, out, SEAL_KEY_LEN);
    sodium_memzero(&h, sizeof(h));
}

void seal_stream_keys(seal_keys_t *out, const uint8_t k[SEAL_KEY_LEN],
                      const uint8_t salt[SEAL_SALT_LEN], const uint8_t bind[SEAL_BIND_LEN],
                      uint8_t suite, bool ingress)
{
    out->suite = suite;
    dir_key(ingress ? out->tx : out->rx, k, "up", salt, bind);
    dir_key(ingress ? out->rx : out->tx, k, "down", salt, bind);
}

seal_state_t *seal_state_new(const seal_keys_t *k)
{
    if (k->suite == 0 || k->suite > SEAL_SUITE_CHACHA20POLY1305 ||
        !(seal_local_suites() & (1u << k->suite))) {
        errno = EINVAL;
        return NULL;
    }
    seal_state_t *st = calloc(1, sizeof(*st));
    if (!st) {
        errno = ENOMEM;
        return NULL;
    }
    st->suite = k->suite;
    memcpy(st->tx, k->tx, SEAL_KEY_LEN);
    memcpy(st->rx, k->rx, SEAL_KEY_LEN);
    if (st->suite == SEAL_SUITE_AES256GCM) {
        st->tx_aes = EVP_CIPHER_CTX_new();
        st->rx_aes = EVP_CIPHER_CTX_new();
        if (!st->tx_aes || !st->rx_aes ||
            EVP_EncryptInit_ex(st->tx_aes, EVP_aes_256_gcm(), NULL, st->tx, NULL) != 1 ||
            EVP_DecryptInit_ex(st->rx_aes, EVP_aes_256_gcm(), NULL, st->rx, NULL) != 1) {
            seal_state_free(&st);
            errno = ENOMEM;
            return NULL;
        }
    }
    return st;
}

void seal_state_free(seal_state_t **sp)
{
    if (!*sp)
        return;
    EVP_CIPHER_CTX_free((*sp)->tx_aes); /* clears its key schedule */
    EVP_CIPHER_CTX_free((*sp)->rx_aes);
    sodium_memzero(*sp, sizeof(**sp));
    free(*sp);
    *sp = NULL;
}

static void nonce_of(uint8_t n[SEAL_NONCE_LEN], uint64_t seq)
{
    memset(n, 0, 4);
    for (int i = 0; i < 8; i++)
        n[4 + i] = (uint8_t)(seq >> (8 * i));
}

/* AES-256-GCM with OpenSSL: the key is set, each record sets its nonce (12 bytes is the
 * default IV length). in may equal out. */
static int aes_seal(EVP_CIPHER_CTX *c, const uint8_t n[SEAL_NONCE_LEN], const uint8_t *in,
                    size_t len, uint8_t *out)
{
    int l = 0, f = 0;
    if (len > INT32_MAX || EVP_EncryptInit_ex(c, NULL, NULL, NULL, n) != 1 ||
        EVP_EncryptUpdate(c, out, &l, in, (int)len) != 1 || EVP_EncryptFinal_ex(c, out + l, &f) != 1 ||
        (size_t)(l + f) != len ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, out + len) != 1)
        return -EIO;
    return 0;
}

static int aes_open(EVP_CIPHER_CTX *c, const uint8_t n[SEAL_NONCE_LEN], uint8_t *buf, size_t m)
{
    int l = 0, f = 0;
    if (m > INT32_MAX || EVP_DecryptInit_ex(c, NULL, NULL, NULL, n) != 1 ||
        EVP_DecryptUpdate(c, buf, &l, buf, (int)m) != 1 ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, buf + m) != 1 ||
        EVP_DecryptFinal_ex(c, buf + l, &f) != 1) /* the tag is checked here */
        return -EBADMSG;
    return 0;
}

int seal_record(seal_state_t *st, const uint8_t *in, size_t len, uint8_t *out)
{
    if (st->tx_seq == UINT64_MAX)
        return -EPIPE;
    uint8_t n[SEAL_NONCE_LEN];
    nonce_of(n, st->tx_seq++);
    if (st->suite == SEAL_SUITE_AES256GCM)
        return aes_seal(st->tx_aes, n, in, len, out);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + len, NULL, in, len, NULL, 0, NULL,
                                                       n, st->tx);
    return 0;
}

int seal_open(seal_state_t *st, uint8_t *buf, size_t len)
{
    if (len <= SEAL_TAG_LEN || st->rx_seq == UINT64_MAX)
        return -EBADMSG;
    size_t m = len - SEAL_TAG_LEN;
    uint8_t n[SEAL_NONCE_LEN];
    nonce_of(n, st->rx_seq);
    int rc;
    if (st->suite == SEAL_SUITE_AES256GCM)
        rc = aes_open(st->rx_aes, n, buf, m);
    else
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, m, buf + m, NULL,
                                                                0, n, st->rx);
    if (rc)
        return -EBADMSG;
    st->rx_seq++;
    return 0;
}
