/* sc: the tunnel's secure channel. The API and the wire summary are in secchan.h; this essay
 * says how the handshake works and why each step is there. docs/tunnel.md ("Secure channel")
 * has the same layout in tables.
 *
 * BACKGROUND
 *
 * The channel is Noise IK (noiseprotocol.org, revision 34) instantiated with X25519,
 * BLAKE2b with 32-byte outputs, and ChaCha20-Poly1305 for the handshake. It is not
 * byte-compatible with a Noise library (HASHLEN is 32, not 64; the KDF is keyed BLAKE2b, not
 * HMAC; our own protocol name), but every step is Noise's, so Noise's security analysis
 * applies: mutual authentication of the static keys, forward secrecy once the handshake
 * completes, the initiator's identity hidden from passive observers and from anyone who does
 * not hold the responder's static secret.
 *
 * Two values run through the handshake:
 *
 *   h   the transcript hash. Every public byte either side sends is hashed into it
 *       (MixHash: h = H(h || data)), and every handshake ciphertext uses the current h as
 *       its associated data. So a change to any byte sent earlier (a suite bit, a public key,
 *       a ciphertext) makes the next tag fail: the transcript is authenticated as a whole,
 *       not field by field.
 *   ck  the chaining key. Every DH result is folded into it (MixKey: ck, k = KDF(ck, dh)),
 *       so each key depends on all DH results so far; one weak DH does not weaken the
 *       others.
 *
 *   H(x)          BLAKE2b-256(x)                          (crypto_generichash, no key)
 *   KDF(ck, ikm)  t  = BLAKE2b-256(key = ck, ikm)          HKDF's extract and expand, with
 *                 o1 = BLAKE2b-256(key = t, 0x01)          keyed BLAKE2b (a PRF) where HKDF
 *                 o2 = BLAKE2b-256(key = t, o1 || 0x02)    has HMAC; returns (o1, o2)
 *   AEAD(k, ad, p)  ChaCha20-Poly1305-IETF, nonce 12 zero bytes; ciphertext || 16-byte tag
 *   DH(a, B)      X25519(a, B); an all-zero result (B of small order) is refused
 *
 * KEY SCHEDULE (i: initiator with static s_i, ephemeral e_i; r: responder with s_r, e_r;
 * the initiator knows s_r.pub in advance)
 *
 *   h  = H("popmesh-sc-v2 Noise_IK_25519_BLAKE2b"); ck = h
 *                        Naming the protocol and version first means that a transcript of
 *                        another protocol or version can never produce the same keys.
 *   h  = H(h || s_r.pub) IK's pre-message: both sides bind the responder's key they believe
 *                        in; an initiator who targets the wrong key fails at the first tag.
 *   HELLO
 *   h  = H(h || suites)  the offer is authenticated: stripping AES from it (a downgrade)
 *                        breaks the tag of enc(s).
 *   h  = H(h || e_i.pub) X25519 ignores the top bit of a public key; hashing the bytes as
 *                        sent makes even that bit count.
 *   ck, k1 = KDF(ck, DH(e_i, s_r))   es: only the holder of s_r can read what follows
 *   c1 = AEAD(k1, h, s_i.pub); h = H(h || c1)
 *                        the initiator's identity travels encrypted.
 *   ck, k2 = KDF(ck, DH(s_i, s_r))   ss: only the holder of s_i could have made k2, so a
 *                        valid c2 authenticates the initiator (to the responder, at once).
 *   c2 = AEAD(k2, h, ts || payload_i); h = H(h || c2)
 *                        ts: the initiator's clock (u64 big endian, ns since the Unix
 *                        epoch, strictly increasing per process). It is there for the
 *                        responder's replay filter: IK lets anyone replay a recorded HELLO,
 *                        and only a value the initiator can no longer produce tells the
 *                        copy from the original before any state is given to it (WireGuard
 *                        puts TAI64N in the same place for the same reason).
 *   WELCOME
 *   h  = H(h || suite)   the choice is authenticated by c3 (no downgrade on the way back).
 *   h  = H(h || e_r.pub)
 *   ck, _  = KDF(ck, DH(e_r, e_i))   ee: forward secrecy; stealing both static keys later
 *                        does not give the transport keys.
 *   ck, k3 = KDF(ck, DH(e_r, s_i))   se: only the holder of s_i can read c3, and only the
 *                        responder who made e_r and holds s_r (through es/ss in ck) could
 *                        have made it: a valid c3 authenticates the responder, and binds
 *                        the WELCOME to this HELLO's e_i (a WELCOME answering a replayed
 *                        HELLO is useless to anyone without e_i).
 *   c3 = AEAD(k3, h, payload_r)
 *   Split: i2r, r2i = KDF(ck, "")    initiator tx = i2r = responder rx, and the reverse.
 *
 * Each handshake key (k1, k2, k3) encrypts exactly one message, which is why a constant
 * nonce of zero is safe there. The responder does not learn that the initiator holds e_i
 * until the first DATA record from it opens; that is IK's known weakness (a replayed HELLO
 * is accepted and answered, and its payload is no proof of freshness) and the reason the
 * application must not act on a HELLO payload as if it were fresh.
 *
 * WIRE (every record: [type u8][length u24 big endian] then length bytes)
 *
 *   HELLO   body  [suites offered: u8, bit 1 << enum sc_suite, | SC_FEAT_* offered]
 *                 [e_i.pub: 32]
 *                 [c1: 32 + 16]
 *                 [c2: 8 + plen + 16]             ts u64 BE, then plen 0..SC_PAYLOAD_MAX
 *   WELCOME body  [suite chosen: u8, an enum sc_suite value, one of the offered bits,
 *                  | the SC_FEAT_* offered that the responder has too]
 *                 [e_r.pub: 32]
 *                 [c3: plen + 16]
 *   DATA    body  [ciphertext: 1..SC_PLAIN_MAX][tag: 16]
 *   SPLIT   body  [head length: u8][tag: 16][head ciphertext][tail]     (secchan.h)
 *   REKEY   body  [ciphertext: the sender's next key number, u64 BE][tag: 16]
 *
 * The headers of HELLO and WELCOME are not hashed: the type is implied by the step and the
 * length by the body. Unknown bits of the suites byte are ignored (a later version can add
 * suites), but hashed like the rest. Feature bits (SC_FEAT_*, the top bits) ride in the same
 * byte because it is the one place both versions of the protocol agree to tolerate news: an
 * older responder ignores them in HELLO; an older initiator refuses anything but a suite in
 * WELCOME, so a responder sets a feature there only when the HELLO offered it, which an older
 * initiator never does. Hashed with the rest, a feature can be neither stripped nor added by
 * someone in the middle.
 *
 * TRANSPORT
 *
 * Suite: AES-256-GCM when the initiator offered it and the responder's CPU has AES-NI and
 * CLMUL (libsodium's only AES-GCM), else ChaCha20-Poly1305-IETF; the responder chooses. Each
 * direction has its own key and a 64-bit counter of records, starting at 0; the nonce is
 * 4 zero bytes then the counter little endian. Keys differ per direction, so the two
 * counters never need to be coordinated. Nothing is sent with a record's number: the
 * receiver expects exactly the next one, so a replayed, dropped or reordered record fails
 * its tag (TCP already delivers in order; anything else is an attack). The 4-byte header is
 * the associated data, so a record cannot be truncated or retyped either. As in Noise, the
 * counter value 2^64 - 1 is never used: seal and open return -EPIPE there instead of
 * wrapping the nonce.
 *
 * Sealing copies the caller's pieces once, into the output after the header, and encrypts
 * there (libsodium allows c == m); opening decrypts in the receive buffer. For AES-GCM the
 * expanded key (crypto_aead_aes256gcm_beforenm) is kept per direction, so a record costs
 * only its own blocks.
 *
 * REKEYING
 *
 * One key must not seal without end: an attacker's advantage against AES-GCM grows with the
 * square of the blocks sealed under one key (RFC 8446, 5.5: 2^-57 after about 2^38.5 bytes,
 * which is libsodium's "350 GB"; a 10 Gbit/s tunnel gets there in five minutes), and a key
 * that lives as long as its connection opens, if taken from the memory of either end,
 * everything ever sent on it. So each sender counts what its key processed (headers,
 * plaintext and tags; a SPLIT tail is someone else's ciphertext and is not processed by this
 * key) and its age, and when either passes its limit (SC_REKEY_BYTES = 2^36 bytes, so about
 * 2^-62 by the same arithmetic; SC_REKEY_MS = 1 hour), sends
 *
 *   REKEY = AEAD(k_n, header, n + 1)   at the direction's next counter value, then
 *   k_{n+1} = KDF(k_n, "popmesh-sc-v2 rekey").o1     and k_n is overwritten at once.
 *
 * The receiver opens the REKEY with k_n (so it is authentic and in its place: a replayed,
 * reordered or forged one fails its tag like any record), checks the number (a bug
 * detector: the counter already orders everything), and derives the same k_{n+1}. The
 * switch falls on exactly that record on both ends without a round trip, streams do not
 * notice, and the two directions rekey independently (their keys were independent from the
 * split on). KDF is keyed BLAKE2b, a PRF: k_{n+1} reveals nothing of k_n, so a key taken
 * later opens nothing sealed before the rekey that made it (forward secrecy within a
 * connection; what follows it, it opens, until the next one).
 *
 * The counter continues across keys rather than restarting at 0. Restarting would also be
 * safe, each key being new; continuing makes the nonce unique per connection whatever the
 * keys (the guarantee does not rest on the KDF never repeating a key), keeps a record from
 * being valid at the same position under another key, and leaves 2^64 - 1 as the
 * connection's one hard end, as before.
 *
 * Only towards a peer that offered or accepted SC_FEAT_REKEY: an older peer would take the
 * REKEY's type for garbage and close the connection. Towards it, keys live as long as the
 * connection, as before. *
 * INVARIANTS
 *
 * - Any error return leaves the state SC_FAILED and wipes every secret (fail()): there is
 *   no retry, no partial state, and a caller that ignores an error cannot use the channel.
 * - On SC_ESTABLISHED, the ephemeral secrets, h and ck are wiped; only tx/rx keys (and
 *   their AES expansions) and the static key pair remain.
 * - Every read from a peer's bytes is preceded by a length check against the exact layout
 *   above; handshake lengths are checked before any DH is computed.
 * - A replaced key is overwritten in place (with its AES expansion) before the call returns:
 *   no copy of it stays in the struct. */
#include "tunnel/secchan.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define SC_PROTOCOL_NAME "popmesh-sc-v2 Noise_IK_25519_BLAKE2b"
#define SC_HASH_LEN      32
#define SC_NONCE_LEN     12

_Static_assert(SC_HASH_LEN == crypto_generichash_BYTES, "h and ck are BLAKE2b-256");
_Static_assert(SC_KEY_LEN == crypto_aead_chacha20poly1305_ietf_KEYBYTES, "handshake key");
_Static_assert(SC_KEY_LEN == crypto_aead_aes256gcm_KEYBYTES, "AES-256 key");
_Static_assert(SC_TAG_LEN == crypto_aead_chacha20poly1305_ietf_ABYTES, "ChaCha20 tag");
_Static_assert(SC_TAG_LEN == crypto_aead_aes256gcm_ABYTES, "GCM tag");
_Static_assert(SC_NONCE_LEN == crypto_aead_chacha20poly1305_ietf_NPUBBYTES, "ChaCha20 nonce");
_Static_assert(SC_NONCE_LEN == crypto_aead_aes256gcm_NPUBBYTES, "GCM nonce");
_Static_assert(crypto_scalarmult_BYTES == 32 && crypto_scalarmult_SCALARBYTES == 32, "X25519");
_Static_assert(SC_RECORD_MAX < (1u << 24), "a body length fits the u24 of the header");
_Static_assert(SC_HELLO_BODY_MIN == 105 && SC_WELCOME_BODY_MIN == 49, "layout in the essay");
_Static_assert(SC_REKEY_BODY_LEN == 24 && SC_REKEY_LEN == 28, "layout in the essay");
_Static_assert((SC_FEATURES & ((1u << SC_SUITE_AES256GCM) | (1u << SC_SUITE_CHACHA20POLY1305))) ==
                   0,
               "feature bits are not suite bits");
/* Each record adds at least SC_OVERHEAD + 1 bytes to the count, so the byte limit also bounds
 * the records per key, far below 2^32. */
_Static_assert(SC_REKEY_BYTES / (SC_OVERHEAD + 1) < (1ull << 32), "records per key");

static const uint8_t zero_nonce[SC_NONCE_LEN]; /* each handshake key seals one message */

static uint8_t forced_suites; /* sc_force_suites; 0 = not narrowed */
static bool no_features;      /* sc_force_no_features */

#define SC_REKEY_LABEL "popmesh-sc-v2 rekey"

static bool sodium_ready(void)
{
    return sodium_init() >= 0; /* idempotent and thread-safe */
}

uint8_t sc_local_suites(void)
{
    if (!sodium_ready())
        return 0;
    uint8_t m = 1u << SC_SUITE_CHACHA20POLY1305;
    if (crypto_aead_aes256gcm_is_available())
        m |= 1u << SC_SUITE_AES256GCM;
    return forced_suites ? m & forced_suites : m;
}

void sc_force_suites(uint8_t mask)
{
    forced_suites = mask;
}

void sc_force_no_features(bool off)
{
    no_features = off;
}

static uint8_t local_features(void)
{
    return no_features ? 0 : SC_FEATURES;
}

/* Every secret goes; the public keys stay for the caller's log line. */
static int fail(sc_t *s, int err)
{
    sodium_memzero(s->local_sk, sizeof(s->local_sk));
    sodium_memzero(s->e_pk, sizeof(s->e_pk));
    sodium_memzero(s->e_sk, sizeof(s->e_sk));
    sodium_memzero(s->re_pk, sizeof(s->re_pk));
    sodium_memzero(s->ck, sizeof(s->ck));
    sodium_memzero(s->h, sizeof(s->h));
    sodium_memzero(s->tx_key, sizeof(s->tx_key));
    sodium_memzero(s->rx_key, sizeof(s->rx_key));
    sodium_memzero(&s->tx_aes, sizeof(s->tx_aes));
    sodium_memzero(&s->rx_aes, sizeof(s->rx_aes));
    s->state = SC_FAILED;
    return err;
}

void sc_wipe(sc_t *s)
{
    if (!s)
        return;
    sodium_memzero(s, sizeof(*s));
    s->state = SC_FAILED;
}

/* ---- symmetric state: MixHash, MixKey, the AEAD, Split ------------------------------------ */

static void hash2(uint8_t out[SC_HASH_LEN], const uint8_t *a, size_t alen, const uint8_t *b,
                  size_t blen)
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, SC_HASH_LEN);
    crypto_generichash_update(&st, a, alen);
    crypto_generichash_update(&st, b, blen);
    crypto_generichash_final(&st, out, SC_HASH_LEN);
    sodium_memzero(&st, sizeof(st));
}

static void mix_hash(sc_t *s, const uint8_t *data, size_t len)
{
    hash2(s->h, s->h, sizeof(s->h), data, len);
}

/* KDF(ck, ikm) -> (o1, o2), described in the essay. o1 may be ck itself. */
static void kdf(const uint8_t ck[SC_HASH_LEN], const uint8_t *ikm, size_t ikm_len,
                uint8_t o1[SC_HASH_LEN], uint8_t o2[SC_HASH_LEN])
{
    static const uint8_t one = 0x01;
    uint8_t t[SC_HASH_LEN], buf[SC_HASH_LEN + 1];
    crypto_generichash(t, sizeof(t), ikm, ikm_len, ck, SC_HASH_LEN);
    crypto_generichash(buf, SC_HASH_LEN, &one, 1, t, sizeof(t));
    buf[SC_HASH_LEN] = 0x02;
    crypto_generichash(o2, SC_HASH_LEN, buf, sizeof(buf), t, sizeof(t));
    memcpy(o1, buf, SC_HASH_LEN);
    sodium_memzero(t, sizeof(t));
    sodium_memzero(buf, sizeof(buf));
}

/* ck, k = KDF(ck, DH(sk, pk)). -EBADMSG if the DH result is all zeros (pk of small order:
 * the "shared secret" would be known to everyone). */
static int mix_dh(sc_t *s, const uint8_t sk[32], const uint8_t pk[32], uint8_t k[SC_KEY_LEN])
{
    uint8_t dh[crypto_scalarmult_BYTES];
    int rc = crypto_scalarmult(dh, sk, pk);
    if (rc == 0 && sodium_is_zero(dh, sizeof(dh)))
        rc = -1; /* libsodium already refuses it; do not depend on the version */
    if (rc == 0)
        kdf(s->ck, dh, sizeof(dh), s->ck, k);
    sodium_memzero(dh, sizeof(dh));
    return rc == 0 ? 0 : -EBADMSG;
}

/* Encrypts len bytes of in to out (len + SC_TAG_LEN bytes) with AD = h, then h = H(h || out).
 * in may equal out. */
static void encrypt_and_hash(sc_t *s, const uint8_t k[SC_KEY_LEN], const uint8_t *in, size_t len,
                             uint8_t *out)
{
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(out, out + len, NULL, in, len, s->h,
                                                       sizeof(s->h), NULL, zero_nonce, k);
    mix_hash(s, out, len + SC_TAG_LEN);
}

/* Decrypts c (clen bytes, tag included) in place with AD = h, and h = H(h || c) as it was on
 * the wire. -EBADMSG if the tag fails (c is then zeroed by libsodium). */
static int decrypt_and_hash(sc_t *s, const uint8_t k[SC_KEY_LEN], uint8_t *c, size_t clen)
{
    uint8_t next_h[SC_HASH_LEN];
    hash2(next_h, s->h, sizeof(s->h), c, clen); /* before the ciphertext is overwritten */
    size_t mlen = clen - SC_TAG_LEN;
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(c, NULL, c, mlen, c + mlen, s->h,
                                                           sizeof(s->h), zero_nonce, k) != 0)
        return -EBADMSG;
    memcpy(s->h, next_h, sizeof(s->h));
    return 0;
}

/* Derives the transport keys, expands them for the suite, and wipes the handshake state. */
static int split(sc_t *s)
{
    uint8_t i2r[SC_KEY_LEN], r2i[SC_KEY_LEN];
    kdf(s->ck, NULL, 0, i2r, r2i);
    memcpy(s->tx_key, s->initiator ? i2r : r2i, SC_KEY_LEN);
    memcpy(s->rx_key, s->initiator ? r2i : i2r, SC_KEY_LEN);
    sodium_memzero(i2r, sizeof(i2r));
    sodium_memzero(r2i, sizeof(r2i));
    sodium_memzero(s->e_pk, sizeof(s->e_pk));
    sodium_memzero(s->e_sk, sizeof(s->e_sk));
    sodium_memzero(s->re_pk, sizeof(s->re_pk));
    sodium_memzero(s->ck, sizeof(s->ck));
    sodium_memzero(s->h, sizeof(s->h));
    if (s->suite == SC_SUITE_AES256GCM &&
        (crypto_aead_aes256gcm_beforenm(&s->tx_aes, s->tx_key) != 0 ||
         crypto_aead_aes256gcm_beforenm(&s->rx_aes, s->rx_key) != 0))
        return fail(s, -ENOTSUP); /* no AES-NI here after all */
    s->tx_seq = s->rx_seq = 0;
    s->state = SC_ESTABLISHED;
    return 0;
}

/* h = H(name); ck = h; h = H(h || s_r.pub). */
static void init_symmetric(sc_t *s, const uint8_t responder_pk[32])
{
    crypto_generichash(s->h, sizeof(s->h), (const uint8_t *)SC_PROTOCOL_NAME,
                       strlen(SC_PROTOCOL_NAME), NULL, 0);
    memcpy(s->ck, s->h, sizeof(s->ck));
    mix_hash(s, responder_pk, 32);
}

static void init_state(sc_t *s, bool initiator, const uint8_t local_pk[32],
                       const uint8_t local_sk[32])
{
    sodium_memzero(s, sizeof(*s));
    s->state = SC_INIT;
    s->initiator = initiator;
    memcpy(s->local_pk, local_pk, 32);
    memcpy(s->local_sk, local_sk, 32);
}

static void new_ephemeral(sc_t *s)
{
    randombytes_buf(s->e_sk, sizeof(s->e_sk));
    crypto_scalarmult_base(s->e_pk, s->e_sk);
}

static void put_header(uint8_t *out, uint8_t type, size_t len)
{
    out[0] = type;
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

/* ---- handshake ---------------------------------------------------------------------------- */

int sc_initiate(sc_t *s, const uint8_t local_pk[32], const uint8_t local_sk[32],
                const uint8_t remote_pk[32], const uint8_t *payload, size_t plen, uint64_t ts,
                uint8_t *out)
{
    init_state(s, true, local_pk, local_sk);
    memcpy(s->remote_pk, remote_pk, 32);
    s->hello_ts = ts;
    if (!sodium_ready())
        return fail(s, -EIO);
    if (plen > SC_PAYLOAD_MAX || (plen && !payload))
        return fail(s, -EINVAL);
    s->suites_offered = sc_local_suites();
    if (!s->suites_offered)
        return fail(s, -ENOTSUP);

    uint8_t k[SC_KEY_LEN];
    size_t body_len = SC_HELLO_BODY_MIN + plen;
    uint8_t *p = out + SC_HDR_LEN;
    put_header(out, SC_REC_HELLO, body_len);
    init_symmetric(s, s->remote_pk);

    s->features = local_features();
    p[0] = s->suites_offered | s->features;
    mix_hash(s, p, 1);
    p += 1;

    new_ephemeral(s);
    memcpy(p, s->e_pk, 32);
    mix_hash(s, p, 32);
    p += 32;

    if (mix_dh(s, s->e_sk, s->remote_pk, k) != 0) /* es */
        goto bad_key;
    encrypt_and_hash(s, k, s->local_pk, 32, p);
    p += 32 + SC_TAG_LEN;

    if (mix_dh(s, s->local_sk, s->remote_pk, k) != 0) /* ss */
        goto bad_key;
    for (int i = 0; i < SC_TS_LEN; i++)
        p[i] = (uint8_t)(ts >> (8 * (SC_TS_LEN - 1 - i)));
    if (plen)
        memcpy(p + SC_TS_LEN, payload, plen);
    encrypt_and_hash(s, k, p, SC_TS_LEN + plen, p);
    sodium_memzero(k, sizeof(k));
    s->state = SC_HELLO_SENT;
    return (int)(SC_HDR_LEN + body_len);

bad_key:
    /* remote_pk is of small order: no key of ours can reach it. */
    sodium_memzero(k, sizeof(k));
    return fail(s, -EINVAL);
}

int sc_accept(sc_t *s, const uint8_t local_pk[32], const uint8_t local_sk[32], uint8_t *body,
              size_t len, const uint8_t **payload, size_t *plen)
{
    init_state(s, false, local_pk, local_sk);
    if (!sodium_ready())
        return fail(s, -EIO);
    if (len < SC_HELLO_BODY_MIN || len > SC_HELLO_BODY_MAX)
        return fail(s, -EBADMSG);

    uint8_t k[SC_KEY_LEN];
    uint8_t *p = body;
    init_symmetric(s, s->local_pk);

    s->suites_offered = p[0] & (uint8_t)~SC_FEATURES;
    s->features = p[0] & local_features(); /* what both ends have: answered in WELCOME */
    mix_hash(s, p, 1);
    p += 1;

    memcpy(s->re_pk, p, 32);
    mix_hash(s, p, 32);
    p += 32;

    if (mix_dh(s, s->local_sk, s->re_pk, k) != 0) /* es */
        goto bad;
    if (decrypt_and_hash(s, k, p, 32 + SC_TAG_LEN) != 0)
        goto bad;
    uint8_t rs[32];
    memcpy(rs, p, 32);
    p += 32 + SC_TAG_LEN;

    if (mix_dh(s, s->local_sk, rs, k) != 0) /* ss */
        goto bad;
    size_t clen = len - (size_t)(p - body);
    if (decrypt_and_hash(s, k, p, clen) != 0)
        goto bad;
    sodium_memzero(k, sizeof(k));

    /* The whole HELLO is authentic: from here, remote_pk names its sender. */
    memcpy(s->remote_pk, rs, 32);
    uint8_t common = s->suites_offered & sc_local_suites();
    if (common & (1u << SC_SUITE_AES256GCM))
        s->suite = SC_SUITE_AES256GCM;
    else if (common & (1u << SC_SUITE_CHACHA20POLY1305))
        s->suite = SC_SUITE_CHACHA20POLY1305;
    else
        return fail(s, -ENOTSUP);
    s->hello_ts = 0;
    for (int i = 0; i < SC_TS_LEN; i++)
        s->hello_ts = s->hello_ts << 8 | p[i];
    *payload = p + SC_TS_LEN;
    *plen = clen - SC_TAG_LEN - SC_TS_LEN;
    s->state = SC_HELLO_RECEIVED;
    return 0;

bad:
    sodium_memzero(k, sizeof(k));
    return fail(s, -EBADMSG);
}

int sc_respond(sc_t *s, const uint8_t *payload, size_t plen, uint8_t *out)
{
    if (s->state != SC_HELLO_RECEIVED || plen > SC_PAYLOAD_MAX || (plen && !payload))
        return fail(s, -EINVAL);

    uint8_t k[SC_KEY_LEN];
    size_t body_len = SC_WELCOME_BODY_MIN + plen;
    uint8_t *p = out + SC_HDR_LEN;
    put_header(out, SC_REC_WELCOME, body_len);

    p[0] = (uint8_t)s->suite | s->features;
    mix_hash(s, p, 1);
    p += 1;

    new_ephemeral(s);
    memcpy(p, s->e_pk, 32);
    mix_hash(s, p, 32);
    p += 32;

    /* Both public keys passed mix_dh in sc_accept, so these cannot fail; checked anyway. */
    if (mix_dh(s, s->e_sk, s->re_pk, k) != 0 ||     /* ee */
        mix_dh(s, s->e_sk, s->remote_pk, k) != 0) { /* se */
        sodium_memzero(k, sizeof(k));
        return fail(s, -EINVAL);
    }
    if (plen)
        memcpy(p, payload, plen);
    encrypt_and_hash(s, k, p, plen, p);
    sodium_memzero(k, sizeof(k));
    int rc = split(s);
    return rc < 0 ? rc : (int)(SC_HDR_LEN + body_len);
}

int sc_initiator_finish(sc_t *s, uint8_t *body, size_t len, const uint8_t **payload, size_t *plen)
{
    if (s->state != SC_HELLO_SENT)
        return fail(s, -EINVAL);
    if (len < SC_WELCOME_BODY_MIN || len > SC_WELCOME_BODY_MAX)
        return fail(s, -EBADMSG);

    uint8_t k[SC_KEY_LEN];
    uint8_t *p = body;

    /* One suite, known, and one we offered; features only among those we offered. */
    uint8_t suite = p[0] & (uint8_t)~SC_FEATURES, feat = p[0] & SC_FEATURES;
    if ((suite != SC_SUITE_AES256GCM && suite != SC_SUITE_CHACHA20POLY1305) ||
        !(s->suites_offered & (1u << suite)) || (feat & ~s->features))
        return fail(s, -EBADMSG);
    s->suite = (enum sc_suite)suite;
    s->features = feat;
    mix_hash(s, p, 1);
    p += 1;

    memcpy(s->re_pk, p, 32);
    mix_hash(s, p, 32);
    p += 32;

    if (mix_dh(s, s->e_sk, s->re_pk, k) != 0 ||     /* ee */
        mix_dh(s, s->local_sk, s->re_pk, k) != 0) { /* se */
        sodium_memzero(k, sizeof(k));
        return fail(s, -EBADMSG);
    }
    size_t clen = len - (size_t)(p - body);
    int rc = decrypt_and_hash(s, k, p, clen);
    sodium_memzero(k, sizeof(k));
    if (rc != 0)
        return fail(s, rc);
    rc = split(s);
    if (rc < 0)
        return rc;
    *payload = p;
    *plen = clen - SC_TAG_LEN;
    return 0;
}

/* ---- records ------------------------------------------------------------------------------ */

int sc_parse_header(const uint8_t hdr[SC_HDR_LEN], uint8_t *type, uint32_t *len)
{
    uint32_t n = (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    uint32_t min, max;
    switch (hdr[0]) {
    case SC_REC_HELLO:
        min = SC_HELLO_BODY_MIN;
        max = SC_HELLO_BODY_MAX;
        break;
    case SC_REC_WELCOME:
        min = SC_WELCOME_BODY_MIN;
        max = SC_WELCOME_BODY_MAX;
        break;
    case SC_REC_DATA:
        min = SC_DATA_BODY_MIN;
        max = SC_RECORD_MAX;
        break;
    case SC_REC_SPLIT:
        min = SC_SPLIT_BODY_MIN;
        max = SC_RECORD_MAX + 1;
        break;
    case SC_REC_REKEY:
        min = max = SC_REKEY_BODY_LEN;
        break;
    default:
        return -EBADMSG;
    }
    if (n < min || n > max)
        return -EBADMSG;
    *type = hdr[0];
    *len = n;
    return 0;
}

/* 4 zero bytes, then the record counter little endian. */
static void record_nonce(uint8_t nonce[SC_NONCE_LEN], uint64_t seq)
{
    memset(nonce, 0, 4);
    for (int i = 0; i < 8; i++)
        nonce[4 + i] = (uint8_t)(seq >> (8 * i));
}

ssize_t sc_seal(sc_t *s, const sc_piece_t *pieces, size_t n, uint8_t *out)
{
    if (s->state != SC_ESTABLISHED || s->tx_seq == UINT64_MAX)
        return fail(s, -EPIPE);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (pieces[i].len > SC_PLAIN_MAX - total || (pieces[i].len && !pieces[i].p))
            return fail(s, -EINVAL);
        total += pieces[i].len;
    }
    if (total == 0)
        return fail(s, -EINVAL);

    uint8_t *c = out + SC_HDR_LEN;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (pieces[i].len && pieces[i].p != c + off) /* in place: already there */
            memmove(c + off, pieces[i].p, pieces[i].len);
        off += pieces[i].len;
    }
    put_header(out, SC_REC_DATA, total + SC_TAG_LEN);

    uint8_t nonce[SC_NONCE_LEN];
    record_nonce(nonce, s->tx_seq);
    if (s->suite == SC_SUITE_AES256GCM)
        crypto_aead_aes256gcm_encrypt_detached_afternm(c, c + total, NULL, c, total, out,
                                                       SC_HDR_LEN, NULL, nonce, &s->tx_aes);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(c, c + total, NULL, c, total, out,
                                                           SC_HDR_LEN, NULL, nonce, s->tx_key);
    s->tx_seq++;
    s->tx_key_bytes += total + SC_OVERHEAD;
    return (ssize_t)(total + SC_OVERHEAD);
}

int sc_open(sc_t *s, const uint8_t hdr[SC_HDR_LEN], uint8_t *body, size_t len, size_t *plen)
{
    if (s->state != SC_ESTABLISHED || s->rx_seq == UINT64_MAX)
        return fail(s, -EPIPE);
    uint8_t type;
    uint32_t hlen;
    if (sc_parse_header(hdr, &type, &hlen) != 0 || type != SC_REC_DATA || hlen != len)
        return fail(s, -EBADMSG);

    uint8_t nonce[SC_NONCE_LEN];
    record_nonce(nonce, s->rx_seq);
    size_t mlen = len - SC_TAG_LEN;
    int rc;
    if (s->suite == SC_SUITE_AES256GCM)
        rc = crypto_aead_aes256gcm_decrypt_detached_afternm(body, NULL, body, mlen, body + mlen,
                                                            hdr, SC_HDR_LEN, nonce, &s->rx_aes);
    else
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(body, NULL, body, mlen, body + mlen,
                                                                hdr, SC_HDR_LEN, nonce, s->rx_key);
    if (rc != 0)
        return fail(s, -EBADMSG);
    s->rx_seq++;
    *plen = mlen;
    return 0;
}

/* Seals the head of a SPLIT record whose tail (tail_len bytes) follows at
 * out + SC_HDR_LEN + SC_SPLIT_SKIP + head, or is sent from elsewhere right after the head
 * (tconn's zero-copy relaying): the tag covers the header and the head only, so the tail's
 * bytes need not be there yet. Returns the bytes of the record up to the tail. */
static ssize_t seal_split_head(sc_t *s, const sc_piece_t *head, size_t n, size_t tail_len,
                               uint8_t *out)
{
    if (s->state != SC_ESTABLISHED || s->tx_seq == UINT64_MAX)
        return fail(s, -EPIPE);
    size_t hl = 0;
    for (size_t i = 0; i < n; i++) {
        if (head[i].len > SC_SPLIT_HEAD_MAX - hl || (head[i].len && !head[i].p))
            return fail(s, -EINVAL);
        hl += head[i].len;
    }
    if (hl == 0 || tail_len == 0 || tail_len > SC_PLAIN_MAX - hl)
        return fail(s, -EINVAL);
    uint8_t *c = out + SC_HDR_LEN + SC_SPLIT_SKIP;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        if (head[i].len)
            memmove(c + off, head[i].p, head[i].len);
        off += head[i].len;
    }
    put_header(out, SC_REC_SPLIT, SC_SPLIT_SKIP + hl + tail_len);
    out[SC_HDR_LEN] = (uint8_t)hl;
    uint8_t *tag = out + SC_HDR_LEN + 1;
    uint8_t nonce[SC_NONCE_LEN];
    record_nonce(nonce, s->tx_seq);
    if (s->suite == SC_SUITE_AES256GCM)
        crypto_aead_aes256gcm_encrypt_detached_afternm(c, tag, NULL, c, hl, out, SC_HDR_LEN + 1,
                                                       NULL, nonce, &s->tx_aes);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(c, tag, NULL, c, hl, out,
                                                           SC_HDR_LEN + 1, NULL, nonce, s->tx_key);
    s->tx_seq++;
    s->tx_key_bytes += SC_HDR_LEN + SC_SPLIT_SKIP + hl; /* the tail is not this key's */
    return (ssize_t)(SC_HDR_LEN + SC_SPLIT_SKIP + hl);
}

ssize_t sc_seal_split(sc_t *s, const sc_piece_t *head, size_t n, const uint8_t *tail,
                      size_t tail_len, uint8_t *out)
{
    if (!tail)
        return fail(s, -EINVAL);
    ssize_t h = seal_split_head(s, head, n, tail_len, out);
    if (h < 0)
        return h;
    if (tail != out + h) /* else sealed there by its owner already (tconn's raw_reserve) */
        memmove(out + h, tail, tail_len);
    return h + (ssize_t)tail_len;
}

ssize_t sc_seal_split_head(sc_t *s, const sc_piece_t *head, size_t n, size_t tail_len,
                           uint8_t *out)
{
    return seal_split_head(s, head, n, tail_len, out);
}

int sc_open_split(sc_t *s, const uint8_t hdr[SC_HDR_LEN], uint8_t *body, size_t len,
                  size_t *plen, size_t *head_len)
{
    if (s->state != SC_ESTABLISHED || s->rx_seq == UINT64_MAX)
        return fail(s, -EPIPE);
    uint8_t type;
    uint32_t rlen;
    if (sc_parse_header(hdr, &type, &rlen) != 0 || type != SC_REC_SPLIT || rlen != len)
        return fail(s, -EBADMSG);
    size_t hl = body[0];
    /* the head and at least one byte of tail */
    if (hl == 0 || hl > SC_SPLIT_HEAD_MAX || len < SC_SPLIT_SKIP + hl + 1)
        return fail(s, -EBADMSG);
    /* The associated data is the header and the head length, contiguous in a received
     * record only if hdr sits right before body: copy them to be sure. */
    uint8_t ad[SC_HDR_LEN + 1];
    memcpy(ad, hdr, SC_HDR_LEN);
    ad[SC_HDR_LEN] = body[0];
    uint8_t *c = body + SC_SPLIT_SKIP;
    uint8_t nonce[SC_NONCE_LEN];
    record_nonce(nonce, s->rx_seq);
    int rc;
    if (s->suite == SC_SUITE_AES256GCM)
        rc = crypto_aead_aes256gcm_decrypt_detached_afternm(c, NULL, c, hl, body + 1, ad,
                                                            sizeof(ad), nonce, &s->rx_aes);
    else
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(c, NULL, c, hl, body + 1, ad,
                                                                sizeof(ad), nonce, s->rx_key);
    if (rc != 0)
        return fail(s, -EBADMSG);
    s->rx_seq++;
    *plen = len - SC_SPLIT_SKIP;
    *head_len = hl;
    return 0;
}

/* ---- rekeying ----------------------------------------------------------------------------- */

void sc_rekey_config(sc_t *s, uint64_t bytes, uint64_t ms, uint64_t now_ms)
{
    s->rekey_bytes = bytes && bytes < SC_REKEY_BYTES ? bytes : SC_REKEY_BYTES;
    s->rekey_ms = ms && ms < SC_REKEY_MS ? ms : SC_REKEY_MS;
    s->tx_key_ms = now_ms;
}

bool sc_rekey_agreed(const sc_t *s)
{
    return s->state == SC_ESTABLISHED && (s->features & SC_FEAT_REKEY);
}

bool sc_rekey_due(const sc_t *s, uint64_t now_ms)
{
    if (!sc_rekey_agreed(s))
        return false;
    if (s->tx_key_bytes >= (s->rekey_bytes ? s->rekey_bytes : SC_REKEY_BYTES))
        return true;
    return s->rekey_ms && now_ms >= s->tx_key_ms && now_ms - s->tx_key_ms >= s->rekey_ms;
}

uint64_t sc_rekey_deadline(const sc_t *s)
{
    if (!sc_rekey_agreed(s) || !s->rekey_ms || s->tx_key_ms > UINT64_MAX - s->rekey_ms)
        return UINT64_MAX;
    return s->tx_key_ms + s->rekey_ms;
}

/* k = KDF(k, label).o1 in place, and its AES expansion redone over the old one: nothing of the
 * old key stays. -ENOTSUP only if AES-GCM stopped being available (it was at the split). */
static int next_key(sc_t *s, uint8_t key[SC_KEY_LEN], crypto_aead_aes256gcm_state *aes)
{
    uint8_t unused[SC_HASH_LEN];
    kdf(key, (const uint8_t *)SC_REKEY_LABEL, strlen(SC_REKEY_LABEL), key, unused);
    sodium_memzero(unused, sizeof(unused));
    sodium_memzero(aes, sizeof(*aes));
    if (s->suite == SC_SUITE_AES256GCM && crypto_aead_aes256gcm_beforenm(aes, key) != 0)
        return -ENOTSUP;
    return 0;
}

ssize_t sc_seal_rekey(sc_t *s, uint64_t now_ms, uint8_t *out)
{
    if (s->state != SC_ESTABLISHED || s->tx_seq == UINT64_MAX)
        return fail(s, -EPIPE);
    if (!(s->features & SC_FEAT_REKEY))
        return fail(s, -ENOTSUP);
    uint64_t next = s->tx_rekeys + 1; /* each costs a record: tx_seq runs out first */
    uint8_t *c = out + SC_HDR_LEN;
    for (int i = 0; i < 8; i++)
        c[i] = (uint8_t)(next >> (8 * (7 - i)));
    put_header(out, SC_REC_REKEY, SC_REKEY_BODY_LEN);
    uint8_t nonce[SC_NONCE_LEN];
    record_nonce(nonce, s->tx_seq);
    if (s->suite == SC_SUITE_AES256GCM)
        crypto_aead_aes256gcm_encrypt_detached_afternm(c, c + 8, NULL, c, 8, out, SC_HDR_LEN, NULL,
                                                       nonce, &s->tx_aes);
    else
        crypto_aead_chacha20poly1305_ietf_encrypt_detached(c, c + 8, NULL, c, 8, out, SC_HDR_LEN,
                                                           NULL, nonce, s->tx_key);
    s->tx_seq++;
    if (next_key(s, s->tx_key, &s->tx_aes) != 0)
        return fail(s, -ENOTSUP);
    s->tx_rekeys = next;
    s->tx_key_bytes = 0;
    s->tx_key_ms = now_ms;
    return SC_REKEY_LEN;
}

int sc_open_rekey(sc_t *s, const uint8_t hdr[SC_HDR_LEN], uint8_t *body, size_t len)
{
    if (s->state != SC_ESTABLISHED || s->rx_seq == UINT64_MAX)
        return fail(s, -EPIPE);
    if (!(s->features & SC_FEAT_REKEY))
        return fail(s, -ENOTSUP);
    uint8_t type;
    uint32_t hlen;
    if (sc_parse_header(hdr, &type, &hlen) != 0 || type != SC_REC_REKEY || hlen != len)
        return fail(s, -EBADMSG);
    uint8_t nonce[SC_NONCE_LEN];
    record_nonce(nonce, s->rx_seq);
    int rc;
    if (s->suite == SC_SUITE_AES256GCM)
        rc = crypto_aead_aes256gcm_decrypt_detached_afternm(body, NULL, body, 8, body + 8, hdr,
                                                            SC_HDR_LEN, nonce, &s->rx_aes);
    else
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(body, NULL, body, 8, body + 8, hdr,
                                                                SC_HDR_LEN, nonce, s->rx_key);
    if (rc != 0)
        return fail(s, -EBADMSG);
    uint64_t next = 0;
    for (int i = 0; i < 8; i++)
        next = next << 8 | body[i];
    if (next != s->rx_rekeys + 1)
        return fail(s, -EBADMSG);
    s->rx_seq++;
    if (next_key(s, s->rx_key, &s->rx_aes) != 0)
        return fail(s, -ENOTSUP);
    s->rx_rekeys = next;
    return 0;
}

/* ---- replay filter ------------------------------------------------------------------------ */

uint64_t sc_hello_clock(uint64_t *last)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    uint64_t now = (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
    if (now <= *last)
        now = *last + 1;
    *last = now;
    return now;
}

int sc_replay_check(sc_replay_t *r, uint64_t ts)
{
    uint64_t newest = 0;
    size_t slot = SC_REPLAY_RECENT, oldest = SC_REPLAY_RECENT;
    for (size_t i = 0; i < SC_REPLAY_RECENT; i++) {
        uint64_t v = r->recent[i];
        if (v == ts && v != 0)
            return -EALREADY;
        if (v == 0) {
            slot = slot == SC_REPLAY_RECENT ? i : slot;
            continue;
        }
        newest = v > newest ? v : newest;
        if (oldest == SC_REPLAY_RECENT || v < r->recent[oldest])
            oldest = i;
    }
    uint64_t floor = r->floor;
    if (newest > SC_REPLAY_WINDOW_NS && newest - SC_REPLAY_WINDOW_NS > floor)
        floor = newest - SC_REPLAY_WINDOW_NS;
    /* Full: the oldest must leave to make room, and nothing at or below it may come in again
     * (it would no longer be remembered). */
    if (slot == SC_REPLAY_RECENT && r->recent[oldest] > floor)
        floor = r->recent[oldest];
    if (ts <= floor)
        return -EALREADY;
    if (slot == SC_REPLAY_RECENT)
        slot = oldest;
    r->recent[slot] = ts;
    newest = ts > newest ? ts : newest;
    if (newest > SC_REPLAY_WINDOW_NS && newest - SC_REPLAY_WINDOW_NS > floor)
        floor = newest - SC_REPLAY_WINDOW_NS;
    r->floor = floor;
    for (size_t i = 0; i < SC_REPLAY_RECENT; i++) /* refused by the floor from now on */
        if (r->recent[i] <= floor)
            r->recent[i] = 0;
    return 0;
}
