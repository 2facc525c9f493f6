/* storeseal: see storeseal.h.
 *
 * WHY THIS SHAPE
 *
 * - XChaCha20-Poly1305 (IETF AEAD, libsodium) with a random 24-byte nonce: records are sealed
 *   at any PoP with no counter to coordinate, and at 2^-96 odds of a nonce collision after
 *   2^48 seals random nonces are safe at any number of writes a mesh will make.
 * - Fields, not whole values: a record stays a readable msgpack map (cert list, acme show,
 *   config get, mdb_dump keep working and show names, dates and states) and only the secret
 *   is opaque. The record's key and the field's name are the associated data, so the unsealed
 *   parts cannot be paired with another record's secret.
 * - The header is authenticated too (it is part of the associated data): a changed key id or
 *   version does not open under another key by accident, it fails.
 * - The magic "pms" tells the current format from a legacy value, whose first bytes are a
 *   random nonce. A legacy value that starts with "pms" and a known version (odds 2^-32) is
 *   still opened: when the current format does not open, the legacy key is tried.
 *
 * INVARIANTS
 *
 * - Nothing here writes a plaintext anywhere but into the caller's buffer, which the caller
 *   wipes; a value that fails to open leaves *plain NULL.
 * - Every length is checked before it is read; storeseal_parse takes any bytes. */
#include "node/records/storeseal.h"

#include "common/xmalloc.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC0 'p'
#define MAGIC1 'm'
#define MAGIC2 's'

_Static_assert(STORESEAL_NONCE == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, "nonce size");
_Static_assert(STORESEAL_TAG == crypto_aead_xchacha20poly1305_ietf_ABYTES, "tag size");
_Static_assert(STORESEAL_LEGACY_OVERHEAD == crypto_secretbox_xchacha20poly1305_NONCEBYTES +
                                                crypto_secretbox_xchacha20poly1305_MACBYTES,
               "legacy overhead");
_Static_assert(STORESEAL_OVERHEAD == 45, "docs/security.md gives the overhead as 45 bytes");

/* The mesh-derived key values were sealed with before the store key (the same derivation as
 * the one certstore used: crypto_kdf, context "popmcert", subkey 1). */
static void legacy_from_mesh(uint8_t out[32], const meshkey_t *mk)
{
    crypto_kdf_derive_from_key(out, 32, 1, "popmcert", mk->sk);
}

void storeseal_init(storeseal_t *k, const storekey_t *sk, const meshkey_t *mk)
{
    memset(k, 0, sizeof(*k));
    if (sk) {
        k->have_key = true;
        k->key_id = sk->id;
        memcpy(k->key, sk->key, 32);
    }
    if (mk) {
        k->have_legacy = true;
        legacy_from_mesh(k->legacy, mk);
    }
}

void storeseal_wipe(storeseal_t *k)
{
    if (k)
        sodium_memzero(k, sizeof(*k));
}

int storeseal_parse(const uint8_t *in, size_t len, storeseal_hdr_t *h)
{
    memset(h, 0, sizeof(*h));
    if (len < 4 || in[0] != MAGIC0 || in[1] != MAGIC1 || in[2] != MAGIC2)
        return -EBADMSG;
    if (in[3] != STORESEAL_VERSION)
        return -EPROTO;
    if (len < STORESEAL_OVERHEAD || in[4] == 0)
        return -EBADMSG;
    h->version = in[3];
    h->key_id = in[4];
    h->plain_len = len - STORESEAL_OVERHEAD;
    return 0;
}

/* header | field | 0 | rkey into a fresh buffer (caller frees). */
static uint8_t *make_ad(const uint8_t hdr[STORESEAL_HEADER], const char *rkey, size_t klen,
                        const char *field, size_t *adlen)
{
    size_t fl = strlen(field);
    uint8_t *ad = xmalloc(STORESEAL_HEADER + fl + 1 + klen);
    memcpy(ad, hdr, STORESEAL_HEADER);
    memcpy(ad + STORESEAL_HEADER, field, fl);
    ad[STORESEAL_HEADER + fl] = 0;
    memcpy(ad + STORESEAL_HEADER + fl + 1, rkey, klen);
    *adlen = STORESEAL_HEADER + fl + 1 + klen;
    return ad;
}

int storeseal_seal_legacy(const storeseal_t *k, const uint8_t *plain, size_t len, uint8_t **out,
                          size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (!k->have_legacy)
        return -ENOKEY;
    uint8_t *b = xmalloc(len + STORESEAL_LEGACY_OVERHEAD);
    randombytes_buf(b, crypto_secretbox_xchacha20poly1305_NONCEBYTES);
    crypto_secretbox_xchacha20poly1305_easy(b + crypto_secretbox_xchacha20poly1305_NONCEBYTES,
                                            plain, len, b, k->legacy);
    *out = b;
    *outlen = len + STORESEAL_LEGACY_OVERHEAD;
    return 0;
}

int storeseal_seal(const storeseal_t *k, const char *rkey, size_t klen, const char *field,
                   const uint8_t *plain, size_t len, uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    if (strlen(field) > STORESEAL_FIELD_MAX)
        return -EINVAL;
    if (k->write_legacy)
        return storeseal_seal_legacy(k, plain, len, out, outlen);
    if (!k->have_key)
        return -ENOKEY;
    uint8_t *b = xmalloc(len + STORESEAL_OVERHEAD);
    b[0] = MAGIC0;
    b[1] = MAGIC1;
    b[2] = MAGIC2;
    b[3] = STORESEAL_VERSION;
    b[4] = k->key_id;
    uint8_t *nonce = b + STORESEAL_HEADER;
    randombytes_buf(nonce, STORESEAL_NONCE);
    size_t adlen;
    uint8_t *ad = make_ad(b, rkey, klen, field, &adlen);
    unsigned long long clen;
    crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + STORESEAL_NONCE, &clen, plain, len, ad,
                                               adlen, NULL, nonce, k->key);
    free(ad);
    *out = b;
    *outlen = STORESEAL_HEADER + STORESEAL_NONCE + (size_t)clen;
    return 0;
}

static int open_legacy(const storeseal_t *k, const uint8_t *in, size_t len, uint8_t **plain,
                       size_t *plainlen)
{
    if (!k->have_legacy || len < STORESEAL_LEGACY_OVERHEAD)
        return -EBADMSG;
    size_t n = len - STORESEAL_LEGACY_OVERHEAD;
    uint8_t *p = xmalloc(n + 1);
    const size_t nb = crypto_secretbox_xchacha20poly1305_NONCEBYTES;
    if (crypto_secretbox_xchacha20poly1305_open_easy(p, in + nb, len - nb, in, k->legacy) != 0) {
        free(p);
        return -EBADMSG;
    }
    p[n] = '\0';
    *plain = p;
    *plainlen = n;
    return 0;
}

int storeseal_open(const storeseal_t *k, const char *rkey, size_t klen, const char *field,
                   const uint8_t *in, size_t len, uint8_t **plain, size_t *plainlen,
                   bool *legacy)
{
    *plain = NULL;
    *plainlen = 0;
    if (legacy)
        *legacy = false;
    if (strlen(field) > STORESEAL_FIELD_MAX)
        return -EINVAL;
    storeseal_hdr_t h;
    int rc = storeseal_parse(in, len, &h);
    if (rc == 0 && (!k->have_key || h.key_id != k->key_id))
        rc = -ENOKEY; /* one key today; a rotation adds the keys it replaced here */
    if (rc == 0) {
        size_t adlen;
        uint8_t *ad = make_ad(in, rkey, klen, field, &adlen);
        uint8_t *p = xmalloc(h.plain_len + 1);
        unsigned long long pl;
        const uint8_t *nonce = in + STORESEAL_HEADER;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt(p, &pl, NULL, nonce + STORESEAL_NONCE,
                                                       len - STORESEAL_HEADER - STORESEAL_NONCE,
                                                       ad, adlen, nonce, k->key) == 0) {
            free(ad);
            p[pl] = '\0';
            *plain = p;
            *plainlen = (size_t)pl;
            return 0;
        }
        sodium_memzero(p, h.plain_len + 1);
        free(p);
        free(ad);
        rc = -EBADMSG;
    }
    /* Not the current format, or (2^-32) a legacy value whose nonce starts like one. */
    if (open_legacy(k, in, len, plain, plainlen) == 0) {
        if (legacy)
            *legacy = true;
        return 0;
    }
    return rc == -EBADMSG || rc == -ENOKEY || rc == -EPROTO ? rc : -EBADMSG;
}

const char *storeseal_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "opened";
    case -ENOKEY:
        return "it is sealed under a store key this PoP does not hold (DIR/store.key differs "
               "from the other PoPs', or is missing)";
    case -EPROTO:
        return "it is sealed in a format of a newer popd (upgrade this PoP)";
    case -EINVAL:
        return "bad field name";
    default:
        return "it does not open (tampered, truncated, copied from another record, or sealed "
               "under another mesh's store key)";
    }
}
