/* seal: see seal.h. */
#include "tunnel/seal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SEAL_NONCE_LEN 12
_Static_assert(SEAL_NONCE_LEN == crypto_aead_chacha20poly1305_ietf_NPUBBYTES, "ChaCha20 nonce");
_Static_assert(SEAL_NONCE_LEN == crypto_aead_aes256gcm_NPUBBYTES, "AES-GCM nonce");
_Static_assert(SEAL_TAG_LEN == crypto_aead_aes256gcm_ABYTES, "AES-GCM tag");
_Static_assert(SEAL_TAG_LEN == crypto_aead_chacha20poly1305_ietf_ABYTES, "ChaCha20 tag");

struct seal_state {
    crypto_aead_aes256gcm_state tx_aes, rx_aes; /* first: the allocation is aligned for them */
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
    seal_state_t *st = NULL;
    if (posix_memalign((void **)&st, 16, sizeof(*st))) {
        errno = ENOMEM;
        return NULL;
    }
    memset(st, 0, sizeof(*st));
    st->suite = k->suite;
    memcpy(st->tx, k->tx, SEAL_KEY_LEN);
    memcpy(st->rx, k->rx, SEAL_KEY_LEN);
    if (st->suite == SEAL_SUITE_AES256GCM) {
        crypto_aead_aes256gcm_beforenm(&st->tx_aes, st->tx);
        crypto_aead_aes256gcm_beforenm(&st->rx_aes, st->rx);
    }
    return st;
}

void seal_state_free(seal_state_t **sp)
{
    if (!*sp)
        return;
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

int seal_record(seal_state_t *st, const uint8_t *in, size_t len, uint8_t *out)
{
    if (st->tx_seq == UINT64_MAX)
        return -EPIPE;
    uint8_t n[SEAL_NONCE_LEN];
    nonce_of(n, st->tx_seq++);
    if (st->suite == SEAL_SUITE_AES256GCM)
        crypto_aead_aes256gcm_encrypt_detached_afternm(out, out + len, NULL, in, len, NULL, 0,
                                                       NULL, n, &st->tx_aes);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + len, NULL, in, len, NULL, 0,
                                                           NULL, n, st->tx);
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
        rc = crypto_aead_aes256gcm_decrypt_detached_afternm(buf, NULL, buf, m, buf + m, NULL, 0,
                                                            n, &st->rx_aes);
    else
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(buf, NULL, buf, m, buf + m, NULL,
                                                                0, n, st->rx);
    if (rc)
        return -EBADMSG;
    st->rx_seq++;
    return 0;
}
