/* Unit tests of the secure channel (tunnel/secchan.h): handshakes with payloads of every
 * length, records both ways, both suites (forced with sc_force_suites, and checked against
 * libsodium's own AEAD with the documented nonce), the wrong responder key, one changed byte
 * anywhere in HELLO, WELCOME and DATA, truncations, replayed and reordered records, a
 * replayed HELLO, header limits, the largest record, counter exhaustion, calls in the wrong
 * state, wiping, and the key schedule recomputed here from docs/tunnel.md with libsodium
 * primitives alone (a known-answer test that needs no pinned vector). Rekeying: many rekeys
 * both ways with records (DATA and SPLIT) before and after each, a record sealed with the old
 * key after the switch, replayed, reordered, tampered and forged REKEYs, the old key's bytes
 * gone from the struct, the byte and age limits, and the negotiation with an end that
 * predates it (either side). */
#include "tunnel/secchan.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <cmocka.h>

static uint8_t i_pk[32], i_sk[32];         /* the initiator (a site) */
static uint8_t r_pk[32], r_sk[32];         /* the responder (a PoP) */
static uint8_t other_pk[32], other_sk[32]; /* somebody else */

static const uint8_t I_PAYLOAD[] = "site 42 offers tunnel v1";
static const uint8_t R_PAYLOAD[] = "pop 7 accepts";

#define BIT(suite) ((uint8_t)(1u << (suite)))

/* HELLO timestamps of the test's initiators: strictly increasing, as sc_hello_clock's. */
static uint64_t ts_last;
static uint64_t next_ts(void)
{
    return sc_hello_clock(&ts_last);
}

static uint8_t all_suites(void)
{
    sc_force_suites(0);
    return sc_local_suites();
}

static bool have_aes(void)
{
    return (all_suites() & BIT(SC_SUITE_AES256GCM)) != 0;
}

static bool is_zero(const void *p, size_t n)
{
    return sodium_is_zero(p, n) != 0;
}

/* The handshake secrets and h/ck are gone, the transport keys are there. */
static void assert_established(const sc_t *s)
{
    assert_int_equal(s->state, SC_ESTABLISHED);
    assert_true(is_zero(s->e_sk, 32));
    assert_true(is_zero(s->e_pk, 32));
    assert_true(is_zero(s->re_pk, 32));
    assert_true(is_zero(s->ck, 32));
    assert_true(is_zero(s->h, 32));
    assert_false(is_zero(s->tx_key, 32));
    assert_false(is_zero(s->rx_key, 32));
}

/* Failed, and every secret wiped. */
static void assert_failed(const sc_t *s)
{
    assert_int_equal(s->state, SC_FAILED);
    assert_true(is_zero(s->local_sk, 32));
    assert_true(is_zero(s->e_sk, 32));
    assert_true(is_zero(s->ck, 32));
    assert_true(is_zero(s->h, 32));
    assert_true(is_zero(s->tx_key, 32));
    assert_true(is_zero(s->rx_key, 32));
    assert_true(is_zero(&s->tx_aes, sizeof(s->tx_aes)));
    assert_true(is_zero(&s->rx_aes, sizeof(s->rx_aes)));
}

/* Handshake records as they cross the wire. */
struct hs {
    uint8_t hello[SC_HELLO_MAX];
    int hello_len;
    uint8_t welcome[SC_WELCOME_MAX];
    int welcome_len;
};

/* A full handshake between i and r, checking every step and both payloads. */
static void handshake(sc_t *i, sc_t *r, const uint8_t *ipay, size_t iplen, const uint8_t *rpay,
                      size_t rplen, struct hs *hs)
{
    struct hs local;
    if (!hs)
        hs = &local;
    hs->hello_len = sc_initiate(i, i_pk, i_sk, r_pk, ipay, iplen, next_ts(), hs->hello);
    assert_int_equal(hs->hello_len, SC_HDR_LEN + SC_HELLO_BODY_MIN + iplen);
    assert_int_equal(i->state, SC_HELLO_SENT);

    uint8_t type;
    uint32_t len;
    assert_int_equal(sc_parse_header(hs->hello, &type, &len), 0);
    assert_int_equal(type, SC_REC_HELLO);
    assert_int_equal(len, hs->hello_len - SC_HDR_LEN);
    uint8_t body[SC_HELLO_MAX];
    memcpy(body, hs->hello + SC_HDR_LEN, len);
    const uint8_t *p;
    size_t plen;
    assert_int_equal(sc_accept(r, r_pk, r_sk, body, len, &p, &plen), 0);
    assert_int_equal(r->state, SC_HELLO_RECEIVED);
    assert_memory_equal(r->remote_pk, i_pk, 32);
    assert_int_equal(plen, iplen);
    if (iplen)
        assert_memory_equal(p, ipay, iplen);

    hs->welcome_len = sc_respond(r, rpay, rplen, hs->welcome);
    assert_int_equal(hs->welcome_len, SC_HDR_LEN + SC_WELCOME_BODY_MIN + rplen);
    assert_established(r);
    assert_int_equal(sc_parse_header(hs->welcome, &type, &len), 0);
    assert_int_equal(type, SC_REC_WELCOME);
    assert_int_equal(len, hs->welcome_len - SC_HDR_LEN);
    memcpy(body, hs->welcome + SC_HDR_LEN, len);
    assert_int_equal(sc_initiator_finish(i, body, len, &p, &plen), 0);
    assert_established(i);
    assert_int_equal(plen, rplen);
    if (rplen)
        assert_memory_equal(p, rpay, rplen);
    assert_int_equal(i->suite, r->suite);
}

static void default_handshake(sc_t *i, sc_t *r)
{
    handshake(i, r, I_PAYLOAD, sizeof(I_PAYLOAD), R_PAYLOAD, sizeof(R_PAYLOAD), NULL);
}

/* Seals len bytes of pattern `seed` from `from` and opens them at `to`, checking the bytes. */
static void send_one(sc_t *from, sc_t *to, size_t len, uint8_t seed)
{
    static uint8_t plain[SC_PLAIN_MAX], rec[SC_PLAIN_MAX + SC_OVERHEAD];
    for (size_t k = 0; k < len; k++)
        plain[k] = (uint8_t)(seed + k * 7);
    sc_piece_t piece = {plain, len};
    assert_int_equal(sc_seal(from, &piece, 1, rec), (ssize_t)(len + SC_OVERHEAD));
    uint8_t type;
    uint32_t blen;
    assert_int_equal(sc_parse_header(rec, &type, &blen), 0);
    assert_int_equal(type, SC_REC_DATA);
    assert_int_equal(blen, len + SC_TAG_LEN);
    size_t plen = 0;
    assert_int_equal(sc_open(to, rec, rec + SC_HDR_LEN, blen, &plen), 0);
    assert_int_equal(plen, len);
    assert_memory_equal(rec + SC_HDR_LEN, plain, len);
}

/* ---- handshake ---------------------------------------------------------------------------- */

static void test_handshake_payloads(void **state)
{
    sc_t i, r;
    struct hs hs;
    handshake(&i, &r, I_PAYLOAD, sizeof(I_PAYLOAD), R_PAYLOAD, sizeof(R_PAYLOAD), &hs);
    assert_true(i.initiator);
    assert_false(r.initiator);
    assert_memory_equal(i.remote_pk, r_pk, 32);
    assert_memory_equal(i.local_sk, i_sk, 32); /* the static key pair stays */
    assert_memory_equal(r.local_sk, r_sk, 32);
    /* Nothing of the payloads or the initiator's key is in clear on the wire. */
    assert_null(memmem(hs.hello, (size_t)hs.hello_len, I_PAYLOAD, 8));
    assert_null(memmem(hs.hello, (size_t)hs.hello_len, i_pk, 8));
    assert_null(memmem(hs.welcome, (size_t)hs.welcome_len, R_PAYLOAD, 8));
    /* Both directions work after it, and a second handshake gives other keys. */
    send_one(&i, &r, 100, 1);
    send_one(&r, &i, 100, 2);
    sc_t i2, r2;
    default_handshake(&i2, &r2);
    assert_memory_not_equal(i.tx_key, i2.tx_key, 32);
    assert_memory_not_equal(i.rx_key, i2.rx_key, 32);
}

static void test_payload_lengths(void **state)
{
    static uint8_t big_i[SC_PAYLOAD_MAX], big_r[SC_PAYLOAD_MAX];
    randombytes_buf(big_i, sizeof(big_i));
    randombytes_buf(big_r, sizeof(big_r));
    sc_t i, r;
    struct hs hs;
    handshake(&i, &r, NULL, 0, NULL, 0, &hs);
    assert_int_equal(hs.hello_len, SC_HDR_LEN + SC_HELLO_BODY_MIN);
    assert_int_equal(hs.welcome_len, SC_HDR_LEN + SC_WELCOME_BODY_MIN);
    send_one(&i, &r, 1, 3);

    handshake(&i, &r, big_i, sizeof(big_i), big_r, sizeof(big_r), &hs);
    assert_int_equal(hs.hello_len, SC_HELLO_MAX); /* the size macros are exact */
    assert_int_equal(hs.welcome_len, SC_WELCOME_MAX);
    send_one(&r, &i, 1, 4);

    handshake(&i, &r, big_i, 1, big_r, SC_PAYLOAD_MAX - 1, &hs);

    /* One byte too many, at either end. */
    uint8_t out[SC_HELLO_MAX + 1];
    assert_int_equal(sc_initiate(&i, i_pk, i_sk, r_pk, big_i, SC_PAYLOAD_MAX + 1, next_ts(), out),
                     -EINVAL);
    assert_failed(&i);
    handshake(&i, &r, NULL, 0, NULL, 0, NULL);
    sc_t i3;
    int n = sc_initiate(&i3, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hs.hello);
    assert_true(n > 0);
    const uint8_t *p;
    size_t plen;
    assert_int_equal(
        sc_accept(&r, r_pk, r_sk, hs.hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    static uint8_t wout[SC_WELCOME_MAX + 1];
    assert_int_equal(sc_respond(&r, big_r, SC_PAYLOAD_MAX + 1, wout), -EINVAL);
    assert_failed(&r);
}

static void test_wrong_responder_key(void **state)
{
    /* The initiator believes other_pk is the responder: r cannot read HELLO. */
    sc_t i, r;
    uint8_t hello[SC_HELLO_MAX];
    int n = sc_initiate(&i, i_pk, i_sk, other_pk, I_PAYLOAD, sizeof(I_PAYLOAD), next_ts(), hello);
    assert_true(n > 0);
    const uint8_t *p = NULL;
    size_t plen = 0;
    assert_int_equal(
        sc_accept(&r, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen), -EBADMSG);
    assert_failed(&r);
    assert_true(is_zero(r.remote_pk, 32)); /* nobody authenticated */
    assert_null(p);

    /* The same HELLO does open at the key it was meant for (so the failure above was the
     * key's). */
    n = sc_initiate(&i, i_pk, i_sk, other_pk, I_PAYLOAD, sizeof(I_PAYLOAD), next_ts(), hello);
    assert_int_equal(
        sc_accept(&r, other_pk, other_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen),
        0);
    assert_memory_equal(r.remote_pk, i_pk, 32);
}

/* Every byte of HELLO's body, changed in its lowest and highest bit (X25519 ignores the top
 * bit of a public key: only the transcript hash catches that one), and every truncation. */
static void test_tamper_hello(void **state)
{
    sc_t i, r;
    uint8_t hello[SC_HELLO_MAX], body[SC_HELLO_MAX];
    int n = sc_initiate(&i, i_pk, i_sk, r_pk, I_PAYLOAD, sizeof(I_PAYLOAD), next_ts(), hello);
    size_t len = (size_t)n - SC_HDR_LEN;
    const uint8_t *p;
    size_t plen;
    static const uint8_t masks[] = {0x01, 0x80};
    for (size_t at = 0; at < len; at++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            memcpy(body, hello + SC_HDR_LEN, len);
            body[at] ^= masks[m];
            int rc = sc_accept(&r, r_pk, r_sk, body, len, &p, &plen);
            if (rc != -EBADMSG)
                fail_msg("HELLO byte %zu ^ 0x%02x: %d", at, masks[m], rc);
            assert_failed(&r);
        }
    }
    for (size_t cut = 0; cut < len; cut++) {
        memcpy(body, hello + SC_HDR_LEN, len);
        assert_int_equal(sc_accept(&r, r_pk, r_sk, body, cut, &p, &plen), -EBADMSG);
    }
    memcpy(body, hello + SC_HDR_LEN, len);
    body[len] = 0;
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, len + 1, &p, &plen), -EBADMSG);
    /* The untouched HELLO passes (the loop above could have failed for another reason). */
    memcpy(body, hello + SC_HDR_LEN, len);
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, len, &p, &plen), 0);
}

static void test_tamper_welcome(void **state)
{
    sc_t i, r, i_copy;
    uint8_t hello[SC_HELLO_MAX], welcome[SC_WELCOME_MAX], body[SC_WELCOME_MAX];
    int n = sc_initiate(&i, i_pk, i_sk, r_pk, I_PAYLOAD, sizeof(I_PAYLOAD), next_ts(), hello);
    const uint8_t *p;
    size_t plen;
    assert_int_equal(
        sc_accept(&r, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    n = sc_respond(&r, R_PAYLOAD, sizeof(R_PAYLOAD), welcome);
    size_t len = (size_t)n - SC_HDR_LEN;
    static const uint8_t masks[] = {0x01, 0x80, 0x03};
    for (size_t at = 0; at < len; at++) {
        for (size_t m = 0; m < sizeof(masks); m++) {
            i_copy = i; /* the state is plain bytes: each attempt from the same point */
            memcpy(body, welcome + SC_HDR_LEN, len);
            body[at] ^= masks[m];
            int rc = sc_initiator_finish(&i_copy, body, len, &p, &plen);
            if (rc != -EBADMSG)
                fail_msg("WELCOME byte %zu ^ 0x%02x: %d", at, masks[m], rc);
            assert_failed(&i_copy);
        }
    }
    for (size_t cut = 0; cut < len; cut++) {
        i_copy = i;
        memcpy(body, welcome + SC_HDR_LEN, len);
        assert_int_equal(sc_initiator_finish(&i_copy, body, cut, &p, &plen), -EBADMSG);
    }
    i_copy = i;
    memcpy(body, welcome + SC_HDR_LEN, len);
    assert_int_equal(sc_initiator_finish(&i_copy, body, len, &p, &plen), 0);
    assert_memory_equal(i_copy.tx_key, r.rx_key, 32);
}

static void test_tamper_data(void **state)
{
    sc_t i, r, r_copy;
    default_handshake(&i, &r);
    send_one(&i, &r, 10, 9); /* the tampered record is not the first */
    uint8_t plain[40], rec[40 + SC_OVERHEAD], copy[40 + SC_OVERHEAD];
    randombytes_buf(plain, sizeof(plain));
    sc_piece_t piece = {plain, sizeof(plain)};
    ssize_t n = sc_seal(&i, &piece, 1, rec);
    assert_int_equal(n, sizeof(rec));
    size_t plen;
    for (size_t at = 0; at < (size_t)n; at++) {
        for (int bit = 0; bit < 8; bit++) {
            r_copy = r;
            memcpy(copy, rec, sizeof(rec));
            copy[at] ^= (uint8_t)(1u << bit);
            int rc = sc_open(&r_copy, copy, copy + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &plen);
            if (rc != -EBADMSG)
                fail_msg("DATA byte %zu bit %d: %d", at, bit, rc);
            assert_failed(&r_copy);
        }
    }
    /* A header that says another length than the body the caller passes. */
    r_copy = r;
    memcpy(copy, rec, sizeof(rec));
    assert_int_equal(sc_open(&r_copy, copy, copy + SC_HDR_LEN, (size_t)n - SC_HDR_LEN - 1, &plen),
                     -EBADMSG);
    r_copy = r;
    assert_int_equal(sc_open(&r_copy, copy, copy + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &plen), 0);
    assert_memory_equal(copy + SC_HDR_LEN, plain, sizeof(plain));
}

/* SPLIT records: the head is sealed, the tail carried as is; both arrive contiguous, the
 * counter is shared with DATA records, and any bit flipped in the header, the head length, the
 * tag or the head fails; a flipped tail bit does not (the end-to-end seal catches it). */
static void test_split_records(void **state)
{
    sc_t i, r, r_copy;
    default_handshake(&i, &r);
    send_one(&i, &r, 10, 9); /* counters shared with DATA records */
    uint8_t head[12], tail[300], rec[SC_HDR_LEN + SC_SPLIT_SKIP + 12 + 300], copy[sizeof(rec)];
    randombytes_buf(head, sizeof(head));
    randombytes_buf(tail, sizeof(tail));
    sc_piece_t pieces[2] = {{head, 5}, {head + 5, 7}};
    ssize_t n = sc_seal_split(&i, pieces, 2, tail, sizeof(tail), rec);
    assert_int_equal(n, sizeof(rec));
    /* the tail is on the wire unchanged, the head is not */
    assert_memory_equal(rec + sizeof(rec) - sizeof(tail), tail, sizeof(tail));
    assert_memory_not_equal(rec + SC_HDR_LEN + SC_SPLIT_SKIP, head, sizeof(head));
    uint8_t type;
    uint32_t blen;
    assert_int_equal(sc_parse_header(rec, &type, &blen), 0);
    assert_int_equal(type, SC_REC_SPLIT);
    assert_int_equal(blen, (uint32_t)n - SC_HDR_LEN);
    size_t plen, hl;
    for (size_t at = 0; at < (size_t)n; at++) {
        r_copy = r;
        memcpy(copy, rec, sizeof(rec));
        copy[at] ^= 0x10;
        int rc = sc_open_split(&r_copy, copy, copy + SC_HDR_LEN, blen, &plen, &hl);
        if (at < SC_HDR_LEN + SC_SPLIT_SKIP + sizeof(head)) {
            if (rc != -EBADMSG)
                fail_msg("SPLIT byte %zu: %d", at, rc);
            assert_failed(&r_copy);
        } else {
            assert_int_equal(rc, 0);
        }
    }
    r_copy = r;
    memcpy(copy, rec, sizeof(rec));
    assert_int_equal(sc_open_split(&r_copy, copy, copy + SC_HDR_LEN, blen, &plen, &hl), 0);
    assert_int_equal(hl, sizeof(head));
    assert_int_equal(plen, sizeof(head) + sizeof(tail));
    assert_memory_equal(copy + SC_HDR_LEN + SC_SPLIT_SKIP, head, sizeof(head));
    assert_memory_equal(copy + SC_HDR_LEN + SC_SPLIT_SKIP + sizeof(head), tail, sizeof(tail));
    /* the next DATA record opens: SPLIT and DATA share one counter */
    sc_t r_after = r_copy;
    send_one(&i, &r_after, 20, 3);
    /* replayed: the counter moved on */
    memcpy(copy, rec, sizeof(rec));
    assert_int_equal(sc_open_split(&r_copy, copy, copy + SC_HDR_LEN, blen, &plen, &hl), -EBADMSG);
    /* limits: no head, no tail, a head too long */
    sc_t i_copy = i;
    assert_int_equal(sc_seal_split(&i_copy, pieces, 0, tail, 1, rec), -EINVAL);
    i_copy = i;
    assert_int_equal(sc_seal_split(&i_copy, pieces, 2, tail, 0, rec), -EINVAL);
    uint8_t big[SC_SPLIT_HEAD_MAX + 1] = {0};
    sc_piece_t bp = {big, sizeof(big)};
    i_copy = i;
    assert_int_equal(sc_seal_split(&i_copy, &bp, 1, tail, 1, rec), -EINVAL);
    /* a head length byte of 0 or past the body */
    sc_t i3, r3;
    default_handshake(&i3, &r3);
    n = sc_seal_split(&i3, pieces, 2, tail, sizeof(tail), rec);
    assert_int_equal(n, sizeof(rec));
    for (int bad = 0; bad < 2; bad++) {
        r_copy = r3;
        memcpy(copy, rec, sizeof(rec));
        copy[SC_HDR_LEN] = bad ? 0xff : 0;
        assert_int_equal(sc_open_split(&r_copy, copy, copy + SC_HDR_LEN, blen, &plen, &hl),
                         -EBADMSG);
    }
    /* a DATA record handed to sc_open_split, and a SPLIT one to sc_open */
    r_copy = r3;
    memcpy(copy, rec, sizeof(rec));
    assert_int_equal(sc_open(&r_copy, copy, copy + SC_HDR_LEN, blen, &plen), -EBADMSG);
}

static void test_replay_reorder(void **state)
{
    sc_t i, r, i0, r0;
    default_handshake(&i0, &r0);
    uint8_t rec[3][64 + SC_OVERHEAD], copy[64 + SC_OVERHEAD];
    uint8_t plain[64] = {7};
    sc_piece_t piece = {plain, sizeof(plain)};
    i = i0;
    for (int k = 0; k < 3; k++)
        assert_int_equal(sc_seal(&i, &piece, 1, rec[k]), sizeof(copy));
    size_t plen;
    const size_t blen = sizeof(copy) - SC_HDR_LEN;

    /* In order: fine; the same record again: refused, and the channel is dead. */
    r = r0;
    memcpy(copy, rec[0], sizeof(copy));
    assert_int_equal(sc_open(&r, copy, copy + SC_HDR_LEN, blen, &plen), 0);
    memcpy(copy, rec[0], sizeof(copy));
    assert_int_equal(sc_open(&r, copy, copy + SC_HDR_LEN, blen, &plen), -EBADMSG);
    assert_failed(&r);
    memcpy(copy, rec[1], sizeof(copy));
    assert_int_equal(sc_open(&r, copy, copy + SC_HDR_LEN, blen, &plen), -EPIPE);

    /* Reordered (1 before 0) and dropped (2 after 0). */
    r = r0;
    memcpy(copy, rec[1], sizeof(copy));
    assert_int_equal(sc_open(&r, copy, copy + SC_HDR_LEN, blen, &plen), -EBADMSG);
    r = r0;
    memcpy(copy, rec[0], sizeof(copy));
    assert_int_equal(sc_open(&r, copy, copy + SC_HDR_LEN, blen, &plen), 0);
    memcpy(copy, rec[2], sizeof(copy));
    assert_int_equal(sc_open(&r, copy, copy + SC_HDR_LEN, blen, &plen), -EBADMSG);

    /* Reflected back to its sender: the directions have different keys. */
    sc_t back = i0;
    memcpy(copy, rec[0], sizeof(copy));
    assert_int_equal(sc_open(&back, copy, copy + SC_HDR_LEN, blen, &plen), -EBADMSG);

    /* All three in order: fine. */
    r = r0;
    for (int k = 0; k < 3; k++) {
        memcpy(copy, rec[k], sizeof(copy));
        assert_int_equal(sc_open(&r, copy, copy + SC_HDR_LEN, blen, &plen), 0);
    }
}

/* IK's first message can be replayed: the responder accepts it again and answers. The answer
 * is useless to whoever replayed it, and to any initiator state but the one that made the
 * HELLO (its ephemeral secret is in the WELCOME's keys). */
static void test_replayed_hello(void **state)
{
    sc_t i, r, r2, attacker;
    struct hs hs;
    handshake(&i, &r, I_PAYLOAD, sizeof(I_PAYLOAD), R_PAYLOAD, sizeof(R_PAYLOAD), &hs);

    uint8_t body[SC_HELLO_MAX], welcome2[SC_WELCOME_MAX], wbody[SC_WELCOME_MAX];
    const uint8_t *p;
    size_t plen;
    size_t hlen = (size_t)hs.hello_len - SC_HDR_LEN;
    memcpy(body, hs.hello + SC_HDR_LEN, hlen);
    assert_int_equal(sc_accept(&r2, r_pk, r_sk, body, hlen, &p, &plen), 0);
    assert_memory_equal(r2.remote_pk, i_pk, 32);
    int n = sc_respond(&r2, R_PAYLOAD, sizeof(R_PAYLOAD), welcome2);
    assert_int_equal(n, hs.welcome_len);
    assert_memory_not_equal(welcome2, hs.welcome, (size_t)n); /* a fresh ephemeral */
    size_t wlen = (size_t)n - SC_HDR_LEN;

    /* Another initiator state with the same static keys (the attacker's best case: it even
     * holds i's static secret) cannot accept it. */
    uint8_t hello2[SC_HELLO_MAX];
    assert_true(sc_initiate(&attacker, i_pk, i_sk, r_pk, I_PAYLOAD, sizeof(I_PAYLOAD), next_ts(),
                            hello2) > 0);
    memcpy(wbody, welcome2 + SC_HDR_LEN, wlen);
    assert_int_equal(sc_initiator_finish(&attacker, wbody, wlen, &p, &plen), -EBADMSG);
    assert_failed(&attacker);
    /* The real initiator is past its handshake. */
    memcpy(wbody, welcome2 + SC_HDR_LEN, wlen);
    assert_int_equal(sc_initiator_finish(&i, wbody, wlen, &p, &plen), -EINVAL);
    /* And r2's keys are not the ones the real pair uses. */
    assert_memory_not_equal(r2.rx_key, r.rx_key, 32);
}

/* The timestamp crosses authenticated: the responder reads what the initiator put, and a
 * copy of the HELLO carries the same one, which the replay filter refuses. */
static void test_hello_timestamp(void **state)
{
    (void)state;
    sc_t i, r, r2;
    uint8_t hello[SC_HELLO_MAX], body[SC_HELLO_MAX];
    const uint8_t *p;
    size_t plen;
    uint64_t ts = 0x0102030405060708ull;
    int n = sc_initiate(&i, i_pk, i_sk, r_pk, I_PAYLOAD, sizeof(I_PAYLOAD), ts, hello);
    assert_int_equal(n, SC_HDR_LEN + SC_HELLO_BODY_MIN + sizeof(I_PAYLOAD));
    size_t len = (size_t)n - SC_HDR_LEN;
    memcpy(body, hello + SC_HDR_LEN, len);
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, len, &p, &plen), 0);
    assert_true(r.hello_ts == ts);
    assert_int_equal(plen, sizeof(I_PAYLOAD));
    assert_memory_equal(p, I_PAYLOAD, plen);
    sc_replay_t f = {0};
    assert_int_equal(sc_replay_check(&f, r.hello_ts), 0);
    memcpy(body, hello + SC_HDR_LEN, len); /* the replay */
    assert_int_equal(sc_accept(&r2, r_pk, r_sk, body, len, &p, &plen), 0);
    assert_int_equal(sc_replay_check(&f, r2.hello_ts), -EALREADY);
    /* The timestamp is not in clear: the ciphertext does not hold its bytes. */
    uint8_t tsb[SC_TS_LEN] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_null(memmem(hello, (size_t)n, tsb, sizeof(tsb)));
    /* sc_hello_clock never repeats, even when the clock does not move or goes back. */
    uint64_t last = UINT64_MAX - 10, a = sc_hello_clock(&last), b = sc_hello_clock(&last);
    assert_true(a == UINT64_MAX - 9 && b == UINT64_MAX - 8);
    last = 0;
    a = sc_hello_clock(&last);
    b = sc_hello_clock(&last);
    assert_true(a > 1600000000ull * 1000000000ull && b > a);
}

/* The replay filter: each timestamp admitted once; racing HELLOs of one initiator within the
 * window admitted in any order; older than the window, or pushed out of the recent set,
 * refused. */
static void test_replay_filter(void **state)
{
    (void)state;
    const uint64_t s = 1000000000ull, base = 1700000000ull * s;
    sc_replay_t f = {0};
    assert_int_equal(sc_replay_check(&f, base), 0);
    assert_int_equal(sc_replay_check(&f, base), -EALREADY);
    assert_int_equal(sc_replay_check(&f, base + 5), 0);
    assert_int_equal(sc_replay_check(&f, base + 3), 0); /* raced: arrives after a newer one */
    assert_int_equal(sc_replay_check(&f, base + 3), -EALREADY);
    assert_int_equal(sc_replay_check(&f, base + 5), -EALREADY);
    assert_int_equal(sc_replay_check(&f, base + 10 * s), 0);    /* much later */
    assert_int_equal(sc_replay_check(&f, base + 4), -EALREADY); /* never seen, but too old */
    assert_int_equal(sc_replay_check(&f, base + 10 * s - SC_REPLAY_WINDOW_NS), -EALREADY);
    assert_int_equal(sc_replay_check(&f, base + 10 * s - SC_REPLAY_WINDOW_NS + 1), 0);
    /* More racing HELLOs than the set holds: the oldest leaves and becomes the floor. */
    sc_replay_t g = {0};
    for (uint64_t k = 0; k < SC_REPLAY_RECENT; k++)
        assert_int_equal(sc_replay_check(&g, base + 100 + k), 0);
    assert_int_equal(sc_replay_check(&g, base + 50), -EALREADY); /* below the set when full */
    assert_int_equal(sc_replay_check(&g, base + 200), 0);        /* base + 100 leaves: the floor */
    for (uint64_t k = 0; k < SC_REPLAY_RECENT; k++)
        assert_int_equal(sc_replay_check(&g, base + 100 + k), -EALREADY);
    assert_int_equal(sc_replay_check(&g, base + 200), -EALREADY);
    assert_int_equal(sc_replay_check(&g, base + 150), 0);
    /* A long run: never the same value twice, whatever the order within the window. */
    sc_replay_t h = {0};
    uint64_t seen[512];
    for (int k = 0; k < 512; k++) {
        seen[k] = base + (uint64_t)k * 1000 + (uint64_t)randombytes_uniform(3000);
        int rc = sc_replay_check(&h, seen[k]);
        for (int j = 0; j < k; j++)
            if (seen[j] == seen[k])
                assert_int_equal(rc, -EALREADY);
        assert_int_equal(sc_replay_check(&h, seen[k]), -EALREADY);
    }
}

/* ---- suites ------------------------------------------------------------------------------- */

/* Seals one record at seq from i and opens it with libsodium's AEAD of the suite directly,
 * with the nonce the docs give: proves which cipher runs and how the nonce is laid out. */
static void check_suite_on_wire(sc_t *i, enum sc_suite suite, uint64_t seq)
{
    i->tx_seq = seq;
    uint8_t plain[100], rec[100 + SC_OVERHEAD], out[100];
    randombytes_buf(plain, sizeof(plain));
    sc_piece_t piece = {plain, sizeof(plain)};
    assert_int_equal(sc_seal(i, &piece, 1, rec), sizeof(rec));
    uint8_t nonce[12] = {0};
    for (int k = 0; k < 8; k++)
        nonce[4 + k] = (uint8_t)(seq >> (8 * k));
    int rc;
    if (suite == SC_SUITE_AES256GCM)
        rc = crypto_aead_aes256gcm_decrypt_detached(out, NULL, rec + SC_HDR_LEN, sizeof(plain),
                                                    rec + SC_HDR_LEN + sizeof(plain), rec,
                                                    SC_HDR_LEN, nonce, i->tx_key);
    else
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(
            out, NULL, rec + SC_HDR_LEN, sizeof(plain), rec + SC_HDR_LEN + sizeof(plain), rec,
            SC_HDR_LEN, nonce, i->tx_key);
    assert_int_equal(rc, 0);
    assert_memory_equal(out, plain, sizeof(plain));
}

static void test_suites(void **state)
{
    sc_t i, r;
    uint8_t all = all_suites();
    assert_true(all & BIT(SC_SUITE_CHACHA20POLY1305));

    /* Default: AES-GCM where there is AES-NI. */
    default_handshake(&i, &r);
    assert_int_equal(i.suites_offered, all);
    assert_int_equal(r.suites_offered, all);
    assert_int_equal(r.suite, have_aes() ? SC_SUITE_AES256GCM : SC_SUITE_CHACHA20POLY1305);

    enum sc_suite suites[] = {SC_SUITE_AES256GCM, SC_SUITE_CHACHA20POLY1305};
    for (size_t k = 0; k < 2; k++) {
        if (!(all & BIT(suites[k]))) {
            print_message("suite %d not available here: not tested\n", suites[k]);
            continue;
        }
        sc_force_suites(BIT(suites[k]));
        default_handshake(&i, &r);
        assert_int_equal(i.suite, suites[k]);
        assert_int_equal(r.suite, suites[k]);
        for (int round = 0; round < 20; round++) {
            send_one(&i, &r, (size_t)round * 997 + 1, (uint8_t)round);
            send_one(&r, &i, (size_t)round * 3001 + 1, (uint8_t)round);
        }
        check_suite_on_wire(&i, suites[k], 0x0102030405060708ull);
        sc_force_suites(0);
    }

    /* The initiator offers ChaCha only; the responder could do both. */
    sc_force_suites(BIT(SC_SUITE_CHACHA20POLY1305));
    uint8_t hello[SC_HELLO_MAX];
    int n = sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hello);
    sc_force_suites(0);
    const uint8_t *p;
    size_t plen;
    assert_int_equal(
        sc_accept(&r, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    assert_int_equal(r.suite, SC_SUITE_CHACHA20POLY1305);

    if (have_aes()) {
        /* A responder (holding the right key) that answers with a suite the initiator did not
         * offer: refused, although the WELCOME is authentic. */
        sc_force_suites(BIT(SC_SUITE_CHACHA20POLY1305));
        n = sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hello);
        sc_force_suites(0);
        assert_int_equal(
            sc_accept(&r, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
        r.suite = SC_SUITE_AES256GCM;
        uint8_t welcome[SC_WELCOME_MAX];
        n = sc_respond(&r, NULL, 0, welcome);
        assert_true(n > 0);
        assert_int_equal(
            sc_initiator_finish(&i, welcome + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen),
            -EBADMSG);
        assert_failed(&i);

        /* The initiator offers AES only; the responder has ChaCha only: no common suite, found
         * after the HELLO was authenticated, so the caller knows whom it refused. */
        sc_force_suites(BIT(SC_SUITE_AES256GCM));
        n = sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hello);
        sc_force_suites(BIT(SC_SUITE_CHACHA20POLY1305));
        assert_int_equal(
            sc_accept(&r, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen),
            -ENOTSUP);
        sc_force_suites(0);
        assert_failed(&r);
        assert_memory_equal(r.remote_pk, i_pk, 32);
    }

    /* A mask of nothing this machine has: the initiator has nothing to offer. */
    sc_force_suites(1u << 7);
    assert_int_equal(sc_local_suites(), 0);
    assert_int_equal(sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hello), -ENOTSUP);
    assert_failed(&i);
    sc_force_suites(0);
}

/* ---- records ------------------------------------------------------------------------------ */

static void test_records_both_ways(void **state)
{
    sc_t i, r;
    default_handshake(&i, &r);
    uint32_t x = 12345;
    for (int k = 0; k < 200; k++) {
        x = x * 1103515245u + 12345u;
        size_t len = k < 4 ? (size_t)k + 1 : 1 + (x >> 8) % SC_PLAIN_MAX;
        if (k % 2)
            send_one(&i, &r, len, (uint8_t)k);
        else
            send_one(&r, &i, len, (uint8_t)k);
    }
    assert_int_equal(i.tx_seq, 100);
    assert_int_equal(r.rx_seq, 100);
    assert_int_equal(r.tx_seq, 100);
    assert_int_equal(i.rx_seq, 100);

    /* Pieces (one empty with no pointer) concatenate. */
    static uint8_t rec[300 + SC_OVERHEAD];
    uint8_t a[100], b[200], all[300];
    memset(a, 'a', sizeof(a));
    memset(b, 'b', sizeof(b));
    memcpy(all, a, 100);
    memcpy(all + 100, b, 200);
    sc_piece_t pieces[] = {{a, 100}, {NULL, 0}, {b, 200}};
    assert_int_equal(sc_seal(&i, pieces, 3, rec), 300 + SC_OVERHEAD);
    size_t plen;
    assert_int_equal(sc_open(&r, rec, rec + SC_HDR_LEN, 300 + SC_TAG_LEN, &plen), 0);
    assert_int_equal(plen, 300);
    assert_memory_equal(rec + SC_HDR_LEN, all, 300);

    /* In place: the plaintext already sits after room for the header. */
    memcpy(rec + SC_HDR_LEN, all, 300);
    sc_piece_t in_place = {rec + SC_HDR_LEN, 300};
    assert_int_equal(sc_seal(&r, &in_place, 1, rec), 300 + SC_OVERHEAD);
    assert_memory_not_equal(rec + SC_HDR_LEN, all, 300);
    assert_int_equal(sc_open(&i, rec, rec + SC_HDR_LEN, 300 + SC_TAG_LEN, &plen), 0);
    assert_memory_equal(rec + SC_HDR_LEN, all, 300);
}

static void test_seal_limits(void **state)
{
    static uint8_t plain[SC_PLAIN_MAX + 1], rec[SC_PLAIN_MAX + 1 + SC_OVERHEAD];
    sc_t i, r, i0;
    default_handshake(&i0, &r);
    i = i0;
    randombytes_buf(plain, sizeof(plain));
    sc_piece_t piece = {plain, SC_PLAIN_MAX};
    assert_int_equal(sc_seal(&i, &piece, 1, rec), SC_PLAIN_MAX + SC_OVERHEAD);
    uint8_t type;
    uint32_t blen;
    assert_int_equal(sc_parse_header(rec, &type, &blen), 0);
    assert_int_equal(blen, SC_RECORD_MAX);
    size_t plen;
    assert_int_equal(sc_open(&r, rec, rec + SC_HDR_LEN, blen, &plen), 0);
    assert_int_equal(plen, SC_PLAIN_MAX);
    assert_memory_equal(rec + SC_HDR_LEN, plain, SC_PLAIN_MAX);

    /* One byte more, in one piece or split. */
    i = i0;
    piece.len = SC_PLAIN_MAX + 1;
    assert_int_equal(sc_seal(&i, &piece, 1, rec), -EINVAL);
    assert_failed(&i);
    i = i0;
    sc_piece_t split[] = {{plain, SC_PLAIN_MAX}, {plain, 1}};
    assert_int_equal(sc_seal(&i, split, 2, rec), -EINVAL);
    /* A total that would wrap size_t. */
    i = i0;
    sc_piece_t wrap[] = {{plain, 10}, {plain, SIZE_MAX - 5}};
    assert_int_equal(sc_seal(&i, wrap, 2, rec), -EINVAL);
    /* Empty: the peer's sc_parse_header would refuse it. */
    i = i0;
    assert_int_equal(sc_seal(&i, NULL, 0, rec), -EINVAL);
    i = i0;
    sc_piece_t empty = {plain, 0};
    assert_int_equal(sc_seal(&i, &empty, 1, rec), -EINVAL);
    assert_failed(&i);
}

/* The counter is never wrapped: the last nonce is 2^64 - 2. */
static void test_counter_exhaustion(void **state)
{
    sc_t i, r;
    default_handshake(&i, &r);
    i.tx_seq = r.rx_seq = UINT64_MAX - 1;
    send_one(&i, &r, 10, 1);
    assert_int_equal(i.tx_seq, UINT64_MAX);
    uint8_t plain[10] = {0}, rec[10 + SC_OVERHEAD];
    sc_piece_t piece = {plain, sizeof(plain)};
    assert_int_equal(sc_seal(&i, &piece, 1, rec), -EPIPE);
    assert_failed(&i);
    size_t plen;
    memset(rec, 0, sizeof(rec));
    rec[0] = SC_REC_DATA;
    rec[3] = 10 + SC_TAG_LEN;
    assert_int_equal(sc_open(&r, rec, rec + SC_HDR_LEN, 10 + SC_TAG_LEN, &plen), -EPIPE);
    assert_failed(&r);
}

static void test_parse_header(void **state)
{
    struct {
        uint8_t type;
        uint32_t len;
        int rc;
    } cases[] = {
        {SC_REC_HELLO, 0, -EBADMSG},
        {SC_REC_HELLO, SC_HELLO_BODY_MIN - 1, -EBADMSG},
        {SC_REC_HELLO, SC_HELLO_BODY_MIN, 0},
        {SC_REC_HELLO, SC_HELLO_BODY_MAX, 0},
        {SC_REC_HELLO, SC_HELLO_BODY_MAX + 1, -EBADMSG},
        {SC_REC_WELCOME, 0, -EBADMSG},
        {SC_REC_WELCOME, SC_WELCOME_BODY_MIN - 1, -EBADMSG},
        {SC_REC_WELCOME, SC_WELCOME_BODY_MIN, 0},
        {SC_REC_WELCOME, SC_WELCOME_BODY_MAX, 0},
        {SC_REC_WELCOME, SC_WELCOME_BODY_MAX + 1, -EBADMSG},
        {SC_REC_DATA, 0, -EBADMSG},
        {SC_REC_DATA, SC_TAG_LEN, -EBADMSG},
        {SC_REC_DATA, SC_TAG_LEN + 1, 0},
        {SC_REC_DATA, 0x010203, 0}, /* big endian 66051; little endian would be too long */
        {SC_REC_DATA, 0x00fedc, 0},
        {SC_REC_DATA, SC_RECORD_MAX, 0},
        {SC_REC_DATA, SC_RECORD_MAX + 1, -EBADMSG},
        {SC_REC_DATA, 0xffffff, -EBADMSG},
        {0, 100, -EBADMSG},
        {SC_REC_SPLIT, SC_SPLIT_BODY_MIN - 1, -EBADMSG},
        {SC_REC_SPLIT, SC_SPLIT_BODY_MIN, 0},
        {SC_REC_SPLIT, SC_RECORD_MAX + 1, 0},
        {SC_REC_SPLIT, SC_RECORD_MAX + 2, -EBADMSG},
        {5, 100, -EBADMSG},
        {SC_REC_REKEY, 0, -EBADMSG},
        {SC_REC_REKEY, SC_REKEY_BODY_LEN - 1, -EBADMSG},
        {SC_REC_REKEY, SC_REKEY_BODY_LEN, 0},
        {SC_REC_REKEY, SC_REKEY_BODY_LEN + 1, -EBADMSG},
        {6, SC_REKEY_BODY_LEN, -EBADMSG},
        {SC_REC_REKEY | 0x80, SC_REKEY_BODY_LEN, -EBADMSG},
        {0x83, 100, -EBADMSG},
        {0xff, 100, -EBADMSG},
    };
    assert_int_equal(SC_HELLO_MAX - SC_HDR_LEN, SC_HELLO_BODY_MAX);
    assert_int_equal(SC_WELCOME_MAX - SC_HDR_LEN, SC_WELCOME_BODY_MAX);
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        uint8_t hdr[SC_HDR_LEN] = {cases[k].type, (uint8_t)(cases[k].len >> 16),
                                   (uint8_t)(cases[k].len >> 8), (uint8_t)cases[k].len};
        uint8_t type = 0xaa;
        uint32_t len = 0xaaaa;
        int rc = sc_parse_header(hdr, &type, &len);
        if (rc != cases[k].rc)
            fail_msg("case %zu: type %u len %u: %d", k, cases[k].type, cases[k].len, rc);
        if (rc == 0) {
            assert_int_equal(type, cases[k].type);
            assert_int_equal(len, cases[k].len);
        }
    }
}

/* ---- misuse ------------------------------------------------------------------------------- */

static void test_wrong_states(void **state)
{
    uint8_t hello[SC_HELLO_MAX], welcome[SC_WELCOME_MAX], rec[64];
    uint8_t plain[8] = {1};
    sc_piece_t piece = {plain, sizeof(plain)};
    const uint8_t *p;
    size_t plen;
    sc_t i, r, i0, r0;

    /* Initiator waiting for WELCOME: no records, no responder calls. */
    int n = sc_initiate(&i0, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hello);
    assert_true(n > 0);
    i = i0;
    assert_int_equal(sc_seal(&i, &piece, 1, rec), -EPIPE);
    assert_failed(&i);
    i = i0;
    memset(rec, 0, sizeof(rec));
    rec[0] = SC_REC_DATA;
    rec[3] = 20;
    assert_int_equal(sc_open(&i, rec, rec + SC_HDR_LEN, 20, &plen), -EPIPE);
    assert_failed(&i);
    i = i0;
    assert_int_equal(sc_respond(&i, NULL, 0, welcome), -EINVAL);
    assert_failed(&i);

    /* Responder checking the initiator: no records, no initiator calls. */
    assert_int_equal(
        sc_accept(&r0, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    r = r0;
    assert_int_equal(sc_seal(&r, &piece, 1, rec), -EPIPE);
    r = r0;
    uint8_t wbody[SC_WELCOME_MAX] = {SC_SUITE_CHACHA20POLY1305};
    assert_int_equal(sc_initiator_finish(&r, wbody, SC_WELCOME_BODY_MIN, &p, &plen), -EINVAL);
    assert_failed(&r);

    /* Established: no handshake calls. */
    r = r0;
    n = sc_respond(&r, NULL, 0, welcome);
    assert_true(n > 0);
    sc_t r_est = r;
    assert_int_equal(sc_respond(&r, NULL, 0, welcome), -EINVAL);
    assert_failed(&r);
    i = i0;
    memcpy(wbody, welcome + SC_HDR_LEN, (size_t)n - SC_HDR_LEN);
    assert_int_equal(sc_initiator_finish(&i, wbody, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    sc_t i_est = i;
    memcpy(wbody, welcome + SC_HDR_LEN, (size_t)n - SC_HDR_LEN);
    assert_int_equal(sc_initiator_finish(&i, wbody, (size_t)n - SC_HDR_LEN, &p, &plen), -EINVAL);
    assert_failed(&i);

    /* Failed: everything refuses. */
    i = i_est;
    r = r_est;
    sc_t dead = i;
    assert_int_equal(sc_respond(&dead, NULL, 0, welcome), -EINVAL); /* now failed */
    assert_int_equal(sc_seal(&dead, &piece, 1, rec), -EPIPE);
    assert_int_equal(sc_open(&dead, rec, rec + SC_HDR_LEN, 20, &plen), -EPIPE);
    assert_int_equal(sc_initiator_finish(&dead, wbody, SC_WELCOME_BODY_MIN, &p, &plen), -EINVAL);
    assert_int_equal(sc_respond(&dead, NULL, 0, welcome), -EINVAL);
    assert_failed(&dead);

    /* The live pair still works (the failures above were not theirs). */
    send_one(&i, &r, 8, 1);

    /* Initiator input: a responder key of small order, payload NULL with a length. */
    uint8_t zero_pk[32] = {0};
    assert_int_equal(sc_initiate(&i, i_pk, i_sk, zero_pk, NULL, 0, next_ts(), hello), -EINVAL);
    assert_failed(&i);
    assert_int_equal(sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 5, next_ts(), hello), -EINVAL);

    /* sc_wipe: everything zero, failed; NULL is fine. */
    sc_wipe(&r);
    assert_int_equal(r.state, SC_FAILED);
    sc_t zero;
    memset(&zero, 0, sizeof(zero));
    zero.state = SC_FAILED;
    assert_memory_equal(&r, &zero, sizeof(r));
    assert_int_equal(sc_seal(&r, &piece, 1, rec), -EPIPE);
    sc_wipe(NULL);
}

/* A HELLO whose ephemeral key is of small order: every DH with it is zero, refused. */
static void test_small_order_ephemeral(void **state)
{
    sc_t i, r;
    uint8_t hello[SC_HELLO_MAX];
    int n = sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hello);
    memset(hello + SC_HDR_LEN + 1, 0, 32); /* e.pub = 0, a point of order 4 */
    const uint8_t *p;
    size_t plen;
    assert_int_equal(
        sc_accept(&r, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen), -EBADMSG);
    hello[SC_HDR_LEN + 1] = 1; /* u = 1, also small order */
    assert_int_equal(
        sc_accept(&r, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen), -EBADMSG);
}

/* ---- rekeying ----------------------------------------------------------------------------- */

/* Seals a REKEY at from and opens it at to: both switch, and the next records open. */
static void rekey_one(sc_t *from, sc_t *to)
{
    uint8_t rec[SC_REKEY_LEN], old_tx[32];
    memcpy(old_tx, from->tx_key, 32);
    uint64_t n = from->tx_rekeys, seq = from->tx_seq;
    assert_int_equal(sc_seal_rekey(from, 7, rec), SC_REKEY_LEN);
    assert_int_equal(from->tx_rekeys, n + 1);
    assert_int_equal(from->tx_seq, seq + 1); /* the counter continues */
    assert_memory_not_equal(from->tx_key, old_tx, 32);
    uint8_t type;
    uint32_t blen;
    assert_int_equal(sc_parse_header(rec, &type, &blen), 0);
    assert_int_equal(type, SC_REC_REKEY);
    assert_int_equal(blen, SC_REKEY_BODY_LEN);
    assert_int_equal(sc_open_rekey(to, rec, rec + SC_HDR_LEN, blen), 0);
    assert_int_equal(to->rx_rekeys, n + 1);
    assert_int_equal(to->rx_seq, seq + 1);
    assert_memory_equal(from->tx_key, to->rx_key, 32);
}

/* A SPLIT record from `from` to `to`, opened and checked. */
static void split_one(sc_t *from, sc_t *to, uint8_t seed)
{
    uint8_t head[10], tail[200], rec[SC_HDR_LEN + SC_SPLIT_SKIP + 10 + 200];
    memset(head, seed, sizeof(head));
    memset(tail, seed ^ 0x5a, sizeof(tail));
    sc_piece_t hp = {head, sizeof(head)};
    assert_int_equal(sc_seal_split(from, &hp, 1, tail, sizeof(tail), rec), sizeof(rec));
    size_t plen, hl;
    assert_int_equal(sc_open_split(to, rec, rec + SC_HDR_LEN, sizeof(rec) - SC_HDR_LEN, &plen, &hl),
                     0);
    assert_memory_equal(rec + SC_HDR_LEN + SC_SPLIT_SKIP, head, sizeof(head));
}

static void test_rekey_both_ways(void **state)
{
    uint8_t all = all_suites();
    enum sc_suite suites[] = {SC_SUITE_AES256GCM, SC_SUITE_CHACHA20POLY1305};
    for (size_t k = 0; k < 2; k++) {
        if (!(all & BIT(suites[k])))
            continue;
        sc_force_suites(BIT(suites[k]));
        sc_t i, r;
        default_handshake(&i, &r);
        sc_force_suites(0);
        assert_int_equal(i.suite, suites[k]);
        assert_true(sc_rekey_agreed(&i) && sc_rekey_agreed(&r));
        assert_int_equal(i.features, SC_FEAT_REKEY);
        assert_int_equal(r.features, SC_FEAT_REKEY);
        uint8_t keys[3][32];
        uint32_t x = 777;
        for (int round = 0; round < 300; round++) {
            x = x * 1103515245u + 12345u;
            /* The directions rekey independently, at different paces. */
            if (round % 3 == 0)
                rekey_one(&i, &r);
            if (round % 7 == 3)
                rekey_one(&r, &i);
            send_one(&i, &r, 1 + (x >> 8) % 3000, (uint8_t)round);
            send_one(&r, &i, 1 + (x >> 12) % 3000, (uint8_t)round);
            if (round % 5 == 0) {
                split_one(&i, &r, (uint8_t)round);
                split_one(&r, &i, (uint8_t)round);
            }
            if (round == 0)
                memcpy(keys[0], i.tx_key, 32);
            if (round == 3)
                memcpy(keys[1], i.tx_key, 32);
        }
        memcpy(keys[2], i.tx_key, 32);
        assert_int_equal(i.tx_rekeys, 100);
        assert_int_equal(r.rx_rekeys, 100);
        assert_int_equal(r.tx_rekeys, 43);
        assert_int_equal(i.rx_rekeys, 43);
        assert_memory_not_equal(keys[0], keys[1], 32);
        assert_memory_not_equal(keys[1], keys[2], 32);
        /* two REKEYs in a row, with nothing between */
        rekey_one(&i, &r);
        rekey_one(&i, &r);
        send_one(&i, &r, 100, 1);
        assert_memory_not_equal(i.tx_key, i.rx_key, 32);
    }
}

/* After the switch, a record sealed with the old key fails at the receiver, even at the right
 * counter value; the receiver is then dead. */
static void test_rekey_old_key_refused(void **state)
{
    sc_t i, r;
    default_handshake(&i, &r);
    send_one(&i, &r, 50, 1);
    sc_t i_old = i; /* what someone holding the old key could seal */
    rekey_one(&i, &r);
    i_old.tx_seq = i.tx_seq; /* the nonce the receiver expects now */
    uint8_t plain[50] = {9}, rec[50 + SC_OVERHEAD];
    sc_piece_t piece = {plain, sizeof(plain)};
    assert_int_equal(sc_seal(&i_old, &piece, 1, rec), sizeof(rec));
    sc_t r_copy = r;
    size_t plen;
    assert_int_equal(sc_open(&r_copy, rec, rec + SC_HDR_LEN, sizeof(rec) - SC_HDR_LEN, &plen),
                     -EBADMSG);
    assert_failed(&r_copy);
    /* the same record from the new key opens */
    assert_int_equal(sc_seal(&i, &piece, 1, rec), sizeof(rec));
    assert_int_equal(sc_open(&r, rec, rec + SC_HDR_LEN, sizeof(rec) - SC_HDR_LEN, &plen), 0);
    /* and the receiver, not having seen the REKEY, cannot open the new key's records */
    sc_t i2, r2;
    default_handshake(&i2, &r2);
    uint8_t rk[SC_REKEY_LEN];
    assert_int_equal(sc_seal_rekey(&i2, 1, rk), SC_REKEY_LEN);
    assert_int_equal(sc_seal(&i2, &piece, 1, rec), sizeof(rec));
    r2.rx_seq++; /* as if the REKEY's slot had been taken by something else */
    assert_int_equal(sc_open(&r2, rec, rec + SC_HDR_LEN, sizeof(rec) - SC_HDR_LEN, &plen),
                     -EBADMSG);
}

/* A REKEY replayed (at once or later), reordered, or handed to the wrong call fails. */
static void test_rekey_replay(void **state)
{
    sc_t i, r, r0;
    default_handshake(&i, &r0);
    uint8_t rk[SC_REKEY_LEN], copy[SC_REKEY_LEN], plain[20] = {1}, data[20 + SC_OVERHEAD];
    sc_piece_t piece = {plain, sizeof(plain)};
    assert_int_equal(sc_seal_rekey(&i, 1, rk), SC_REKEY_LEN);
    assert_int_equal(sc_seal(&i, &piece, 1, data), sizeof(data));
    size_t plen;

    /* In order: fine; the REKEY again: refused, the channel dead. */
    r = r0;
    memcpy(copy, rk, sizeof(rk));
    assert_int_equal(sc_open_rekey(&r, copy, copy + SC_HDR_LEN, SC_REKEY_BODY_LEN), 0);
    memcpy(copy, rk, sizeof(rk));
    assert_int_equal(sc_open_rekey(&r, copy, copy + SC_HDR_LEN, SC_REKEY_BODY_LEN), -EBADMSG);
    assert_failed(&r);

    /* Later, after the record that followed it. */
    r = r0;
    memcpy(copy, rk, sizeof(rk));
    assert_int_equal(sc_open_rekey(&r, copy, copy + SC_HDR_LEN, SC_REKEY_BODY_LEN), 0);
    uint8_t dcopy[sizeof(data)];
    memcpy(dcopy, data, sizeof(data));
    assert_int_equal(sc_open(&r, dcopy, dcopy + SC_HDR_LEN, sizeof(data) - SC_HDR_LEN, &plen), 0);
    memcpy(copy, rk, sizeof(rk));
    assert_int_equal(sc_open_rekey(&r, copy, copy + SC_HDR_LEN, SC_REKEY_BODY_LEN), -EBADMSG);

    /* Reordered: the record after the REKEY first, then the REKEY. */
    r = r0;
    memcpy(dcopy, data, sizeof(data));
    assert_int_equal(sc_open(&r, dcopy, dcopy + SC_HDR_LEN, sizeof(data) - SC_HDR_LEN, &plen),
                     -EBADMSG);
    /* Dropped: the record after the REKEY without it. */
    r = r0;
    r.rx_seq = 1;
    memcpy(dcopy, data, sizeof(data));
    assert_int_equal(sc_open(&r, dcopy, dcopy + SC_HDR_LEN, sizeof(data) - SC_HDR_LEN, &plen),
                     -EBADMSG);

    /* A REKEY handed to sc_open, a DATA record to sc_open_rekey, reflected to its sender. */
    r = r0;
    memcpy(copy, rk, sizeof(rk));
    assert_int_equal(sc_open(&r, copy, copy + SC_HDR_LEN, SC_REKEY_BODY_LEN, &plen), -EBADMSG);
    r = r0;
    memcpy(dcopy, data, sizeof(data));
    assert_int_equal(sc_open_rekey(&r, dcopy, dcopy + SC_HDR_LEN, sizeof(data) - SC_HDR_LEN),
                     -EBADMSG);
    sc_t back = i;
    back.rx_seq = 0;
    memcpy(copy, rk, sizeof(rk));
    assert_int_equal(sc_open_rekey(&back, copy, copy + SC_HDR_LEN, SC_REKEY_BODY_LEN), -EBADMSG);
}

/* Every bit of a REKEY changed, every length but the right one, and an authentic REKEY with the
 * wrong key number (forged here with the sender's key): all refused, the receiver dead. */
static void test_rekey_tamper(void **state)
{
    sc_t i, r0, r;
    default_handshake(&i, &r0);
    send_one(&i, &r0, 30, 2);
    uint8_t rk[SC_REKEY_LEN], copy[SC_REKEY_LEN + 1];
    uint8_t old_key[32];
    memcpy(old_key, i.tx_key, 32);
    uint64_t seq = i.tx_seq;
    assert_int_equal(sc_seal_rekey(&i, 1, rk), SC_REKEY_LEN);
    for (size_t at = 0; at < sizeof(rk); at++)
        for (int bit = 0; bit < 8; bit++) {
            r = r0;
            memcpy(copy, rk, sizeof(rk));
            copy[at] ^= (uint8_t)(1u << bit);
            int rc = sc_open_rekey(&r, copy, copy + SC_HDR_LEN, SC_REKEY_BODY_LEN);
            if (rc != -EBADMSG)
                fail_msg("REKEY byte %zu bit %d: %d", at, bit, rc);
            assert_failed(&r);
        }
    for (size_t len = 0; len <= SC_REKEY_BODY_LEN + 1; len++) {
        if (len == SC_REKEY_BODY_LEN)
            continue;
        r = r0;
        memcpy(copy, rk, sizeof(rk));
        copy[3] = (uint8_t)len;
        assert_int_equal(sc_open_rekey(&r, copy, copy + SC_HDR_LEN, len), -EBADMSG);
        r = r0;
        memcpy(copy, rk, sizeof(rk)); /* header right, length passed wrong */
        assert_int_equal(sc_open_rekey(&r, copy, copy + SC_HDR_LEN, len), -EBADMSG);
    }
    /* Key numbers 0, 2 and 2^64 - 1 where 1 is due, sealed with the right key and nonce. */
    uint64_t wrong[] = {0, 2, UINT64_MAX};
    for (size_t k = 0; k < 3; k++) {
        uint8_t rec[SC_REKEY_LEN] = {SC_REC_REKEY, 0, 0, SC_REKEY_BODY_LEN}, nonce[12] = {0};
        for (int b = 0; b < 8; b++) {
            rec[SC_HDR_LEN + b] = (uint8_t)(wrong[k] >> (8 * (7 - b)));
            nonce[4 + b] = (uint8_t)(seq >> (8 * b));
        }
        if (i.suite == SC_SUITE_AES256GCM)
            crypto_aead_aes256gcm_encrypt_detached(rec + SC_HDR_LEN, rec + SC_HDR_LEN + 8, NULL,
                                                   rec + SC_HDR_LEN, 8, rec, SC_HDR_LEN, NULL,
                                                   nonce, old_key);
        else
            crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                rec + SC_HDR_LEN, rec + SC_HDR_LEN + 8, NULL, rec + SC_HDR_LEN, 8, rec, SC_HDR_LEN,
                NULL, nonce, old_key);
        r = r0;
        assert_int_equal(sc_open_rekey(&r, rec, rec + SC_HDR_LEN, SC_REKEY_BODY_LEN), -EBADMSG);
        assert_failed(&r);
    }
    /* the genuine one still opens */
    r = r0;
    memcpy(copy, rk, sizeof(rk));
    assert_int_equal(sc_open_rekey(&r, copy, copy + SC_HDR_LEN, SC_REKEY_BODY_LEN), 0);
}

/* The replaced key is gone: its 32 bytes appear nowhere in either end's struct (the AES
 * expansion starts with the key itself, so a stale expansion would be found too). */
static void test_rekey_wipes(void **state)
{
    uint8_t all = all_suites();
    enum sc_suite suites[] = {SC_SUITE_AES256GCM, SC_SUITE_CHACHA20POLY1305};
    for (size_t k = 0; k < 2; k++) {
        if (!(all & BIT(suites[k])))
            continue;
        sc_force_suites(BIT(suites[k]));
        sc_t i, r;
        default_handshake(&i, &r);
        sc_force_suites(0);
        uint8_t old_tx[32], old_rx[32];
        memcpy(old_tx, i.tx_key, 32);
        memcpy(old_rx, i.rx_key, 32);
        assert_non_null(memmem(&i, sizeof(i), old_tx, 32)); /* the search finds a live key */
        /* ... and the AES expansion holds it too */
        if (suites[k] == SC_SUITE_AES256GCM)
            assert_non_null(memmem(&i.tx_aes, sizeof(i.tx_aes), old_tx, 16));
        rekey_one(&i, &r);
        assert_null(memmem(&i, sizeof(i), old_tx, 32));
        assert_null(memmem(&r, sizeof(r), old_tx, 32));
        assert_null(memmem(&i, sizeof(i), old_tx, 16));
        assert_null(memmem(&r, sizeof(r), old_tx, 16));
        /* the other direction's key was not touched */
        assert_memory_equal(i.rx_key, old_rx, 32);
        rekey_one(&r, &i);
        assert_null(memmem(&i, sizeof(i), old_rx, 16));
        assert_null(memmem(&r, sizeof(r), old_rx, 16));
        send_one(&i, &r, 64, 3);
        send_one(&r, &i, 64, 4);
    }
}

/* The byte and age limits make sc_rekey_due true at the right moment, and a rekey restarts
 * both. */
static void test_rekey_limits(void **state)
{
    sc_t i, r;
    default_handshake(&i, &r);
    /* Without sc_rekey_config: the default byte limit only. */
    assert_false(sc_rekey_due(&i, UINT64_MAX));
    assert_true(sc_rekey_deadline(&i) == UINT64_MAX);
    i.tx_key_bytes = SC_REKEY_BYTES - 1;
    assert_false(sc_rekey_due(&i, 0));
    i.tx_key_bytes = SC_REKEY_BYTES;
    assert_true(sc_rekey_due(&i, 0));
    i.tx_key_bytes = 0;

    /* Limits are clamped to the defaults; 0 means the default. */
    sc_rekey_config(&i, UINT64_MAX, UINT64_MAX, 5);
    assert_true(i.rekey_bytes == SC_REKEY_BYTES && i.rekey_ms == SC_REKEY_MS);
    sc_rekey_config(&i, 0, 0, 5);
    assert_true(i.rekey_bytes == SC_REKEY_BYTES && i.rekey_ms == SC_REKEY_MS);
    assert_true(sc_rekey_deadline(&i) == 5 + SC_REKEY_MS);

    /* Tiny limits: 1000 bytes or 50 ms. Records of 100 + 20 bytes: due after the 9th. */
    sc_rekey_config(&i, 1000, 50, 1000);
    assert_true(sc_rekey_deadline(&i) == 1050);
    for (int k = 0; k < 8; k++) {
        send_one(&i, &r, 100, (uint8_t)k);
        assert_false(sc_rekey_due(&i, 1000));
    }
    send_one(&i, &r, 100, 9);
    assert_int_equal(i.tx_key_bytes, 9 * (100 + SC_OVERHEAD));
    assert_true(sc_rekey_due(&i, 1000));
    rekey_one(&i, &r); /* sealed "at" 7 ms: its age starts there */
    assert_int_equal(i.tx_key_bytes, 0);
    assert_true(sc_rekey_deadline(&i) == 7 + 50);
    assert_false(sc_rekey_due(&i, 56));
    assert_true(sc_rekey_due(&i, 57));
    assert_false(sc_rekey_due(&i, 3)); /* a clock behind the key's birth: not due */

    /* SPLIT records count their head, not their tail (someone else's ciphertext). */
    sc_rekey_config(&i, 1000, 50, 7);
    split_one(&i, &r, 1);
    assert_int_equal(i.tx_key_bytes, SC_HDR_LEN + SC_SPLIT_SKIP + 10);

    /* The due rekey, done with a real now: the age restarts at it. */
    uint8_t rk[SC_REKEY_LEN];
    assert_true(sc_rekey_due(&i, 100));
    assert_int_equal(sc_seal_rekey(&i, 100, rk), SC_REKEY_LEN);
    assert_int_equal(sc_open_rekey(&r, rk, rk + SC_HDR_LEN, SC_REKEY_BODY_LEN), 0);
    assert_false(sc_rekey_due(&i, 149));
    assert_true(sc_rekey_due(&i, 150));

    /* The receiver's limits are its own: r's sending key is not due for i's traffic. */
    sc_rekey_config(&r, 1000, 50, 7);
    assert_false(sc_rekey_due(&r, 8));
}

/* An end that predates rekeying, on either side: nothing is agreed, nothing is ever due, a
 * REKEY is neither sent nor accepted; and features cannot be added or stripped on the way. */
static void test_rekey_negotiation(void **state)
{
    sc_t i, r;
    struct hs hs;
    uint8_t rk[SC_REKEY_LEN];
    size_t plen;
    const uint8_t *p;

    /* Old initiator, new responder. */
    sc_force_no_features(true);
    int n = sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hs.hello);
    sc_force_no_features(false);
    assert_true(n > 0);
    assert_int_equal(hs.hello[SC_HDR_LEN] & SC_FEATURES, 0);
    uint8_t body[SC_HELLO_MAX];
    memcpy(body, hs.hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN);
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    int wn = sc_respond(&r, NULL, 0, hs.welcome);
    assert_true(wn > 0);
    /* what an old initiator checks: the suite byte is exactly a suite */
    assert_true(hs.welcome[SC_HDR_LEN] == SC_SUITE_AES256GCM ||
                hs.welcome[SC_HDR_LEN] == SC_SUITE_CHACHA20POLY1305);
    memcpy(body, hs.welcome + SC_HDR_LEN, (size_t)wn - SC_HDR_LEN);
    assert_int_equal(sc_initiator_finish(&i, body, (size_t)wn - SC_HDR_LEN, &p, &plen), 0);
    assert_false(sc_rekey_agreed(&i));
    assert_false(sc_rekey_agreed(&r));
    sc_rekey_config(&r, 1, 1, 0);
    send_one(&r, &i, 10, 1);
    assert_false(sc_rekey_due(&r, 1000)); /* past both limits, but the peer cannot */
    assert_true(sc_rekey_deadline(&r) == UINT64_MAX);
    sc_t r_copy = r;
    assert_int_equal(sc_seal_rekey(&r_copy, 1, rk), -ENOTSUP);
    assert_failed(&r_copy);
    /* a REKEY arriving where none was agreed (made by a new end with the same keys) */
    sc_t forger = r;
    forger.features = SC_FEAT_REKEY;
    assert_int_equal(sc_seal_rekey(&forger, 1, rk), SC_REKEY_LEN);
    sc_t i_copy = i;
    assert_int_equal(sc_open_rekey(&i_copy, rk, rk + SC_HDR_LEN, SC_REKEY_BODY_LEN), -ENOTSUP);
    assert_failed(&i_copy);
    send_one(&i, &r, 10, 2); /* the pair itself works as before */
    send_one(&r, &i, 10, 3);

    /* New initiator, old responder. */
    n = sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hs.hello);
    assert_int_equal(hs.hello[SC_HDR_LEN] & SC_FEATURES, SC_FEAT_REKEY);
    memcpy(body, hs.hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN);
    sc_force_no_features(true);
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    wn = sc_respond(&r, NULL, 0, hs.welcome);
    sc_force_no_features(false);
    assert_int_equal(hs.welcome[SC_HDR_LEN] & SC_FEATURES, 0);
    memcpy(body, hs.welcome + SC_HDR_LEN, (size_t)wn - SC_HDR_LEN);
    assert_int_equal(sc_initiator_finish(&i, body, (size_t)wn - SC_HDR_LEN, &p, &plen), 0);
    assert_false(sc_rekey_agreed(&i));
    assert_int_equal(i.features, 0);
    i_copy = i;
    assert_int_equal(sc_seal_rekey(&i_copy, 1, rk), -ENOTSUP);

    /* A WELCOME with a feature the HELLO did not offer: refused although authentic. */
    sc_force_no_features(true);
    n = sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hs.hello);
    sc_force_no_features(false);
    memcpy(body, hs.hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN);
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    r.features = SC_FEAT_REKEY;
    wn = sc_respond(&r, NULL, 0, hs.welcome);
    memcpy(body, hs.welcome + SC_HDR_LEN, (size_t)wn - SC_HDR_LEN);
    assert_int_equal(sc_initiator_finish(&i, body, (size_t)wn - SC_HDR_LEN, &p, &plen), -EBADMSG);
    assert_failed(&i);

    /* Stripping the offer from a HELLO, or the answer from a WELCOME, breaks a tag. */
    n = sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hs.hello);
    memcpy(body, hs.hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN);
    body[0] &= (uint8_t)~SC_FEAT_REKEY;
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, (size_t)n - SC_HDR_LEN, &p, &plen), -EBADMSG);
    memcpy(body, hs.hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN);
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, (size_t)n - SC_HDR_LEN, &p, &plen), 0);
    wn = sc_respond(&r, NULL, 0, hs.welcome);
    memcpy(body, hs.welcome + SC_HDR_LEN, (size_t)wn - SC_HDR_LEN);
    body[0] &= (uint8_t)~SC_FEAT_REKEY;
    assert_int_equal(sc_initiator_finish(&i, body, (size_t)wn - SC_HDR_LEN, &p, &plen), -EBADMSG);
}

/* Rekeying in the wrong state, and at the end of the counter. */
static void test_rekey_wrong_states(void **state)
{
    sc_t i, r;
    uint8_t hello[SC_HELLO_MAX], rk[SC_REKEY_LEN] = {SC_REC_REKEY, 0, 0, SC_REKEY_BODY_LEN};
    assert_true(sc_initiate(&i, i_pk, i_sk, r_pk, NULL, 0, next_ts(), hello) > 0);
    sc_t i0 = i;
    assert_false(sc_rekey_agreed(&i)); /* offered, not yet agreed */
    assert_false(sc_rekey_due(&i, UINT64_MAX));
    assert_int_equal(sc_seal_rekey(&i, 1, rk), -EPIPE);
    assert_failed(&i);
    i = i0;
    assert_int_equal(sc_open_rekey(&i, rk, rk + SC_HDR_LEN, SC_REKEY_BODY_LEN), -EPIPE);
    assert_failed(&i);

    default_handshake(&i, &r);
    i.tx_seq = r.rx_seq = UINT64_MAX - 1;
    rekey_one(&i, &r); /* the last nonce */
    assert_int_equal(sc_seal_rekey(&i, 1, rk), -EPIPE);
    assert_failed(&i);
    assert_int_equal(sc_open_rekey(&r, rk, rk + SC_HDR_LEN, SC_REKEY_BODY_LEN), -EPIPE);
    assert_failed(&r);
}

/* ---- key schedule (known answer) ---------------------------------------------------------- */

/* The construction of docs/tunnel.md, written again here from the document. */
static void kat_hash(uint8_t h[32], const uint8_t *data, size_t len)
{
    uint8_t buf[32 + SC_HELLO_MAX];
    memcpy(buf, h, 32);
    memcpy(buf + 32, data, len);
    crypto_generichash(h, 32, buf, 32 + len, NULL, 0);
}

static void kat_kdf(uint8_t ck[32], const uint8_t *ikm, size_t ikm_len, uint8_t k[32])
{
    uint8_t t[32], o1[32], in2[33];
    crypto_generichash(t, 32, ikm, ikm_len, ck, 32);
    const uint8_t one = 1;
    crypto_generichash(o1, 32, &one, 1, t, 32);
    memcpy(in2, o1, 32);
    in2[32] = 2;
    crypto_generichash(k, 32, in2, 33, t, 32);
    memcpy(ck, o1, 32);
}

static void kat_dh(uint8_t ck[32], const uint8_t sk[32], const uint8_t pk[32], uint8_t k[32])
{
    uint8_t dh[32];
    assert_int_equal(crypto_scalarmult(dh, sk, pk), 0);
    kat_kdf(ck, dh, 32, k);
}

static void kat_open(const uint8_t k[32], const uint8_t h[32], const uint8_t *c, size_t clen,
                     uint8_t *m)
{
    uint8_t nonce[12] = {0};
    unsigned long long mlen;
    assert_int_equal(
        crypto_aead_chacha20poly1305_ietf_decrypt(m, &mlen, NULL, c, clen, h, 32, nonce, k), 0);
    assert_int_equal(mlen, clen - 16);
}

static void test_key_schedule(void **state)
{
    sc_t i, r;
    uint8_t hello[SC_HELLO_MAX], body[SC_HELLO_MAX], welcome[SC_WELCOME_MAX];
    int hn = sc_initiate(&i, i_pk, i_sk, r_pk, I_PAYLOAD, sizeof(I_PAYLOAD), next_ts(), hello);
    uint8_t e_i_sk[32];
    memcpy(e_i_sk, i.e_sk, 32); /* the test's window on the ephemeral secret */
    memcpy(body, hello + SC_HDR_LEN, (size_t)hn - SC_HDR_LEN);
    const uint8_t *p;
    size_t plen;
    assert_int_equal(sc_accept(&r, r_pk, r_sk, body, (size_t)hn - SC_HDR_LEN, &p, &plen), 0);
    int wn = sc_respond(&r, R_PAYLOAD, sizeof(R_PAYLOAD), welcome);
    memcpy(body, welcome + SC_HDR_LEN, (size_t)wn - SC_HDR_LEN);
    assert_int_equal(sc_initiator_finish(&i, body, (size_t)wn - SC_HDR_LEN, &p, &plen), 0);

    /* Both sides agree, and the two directions differ. */
    assert_memory_equal(i.tx_key, r.rx_key, 32);
    assert_memory_equal(i.rx_key, r.tx_key, 32);
    assert_memory_not_equal(i.tx_key, i.rx_key, 32);

    /* Recompute from the wire bytes, the initiator's secrets and the document. */
    static const char name[] = "popmesh-sc-v2 Noise_IK_25519_BLAKE2b";
    uint8_t h[32], ck[32], k[32], m[SC_PAYLOAD_MAX];
    crypto_generichash(h, 32, (const uint8_t *)name, strlen(name), NULL, 0);
    memcpy(ck, h, 32);
    kat_hash(h, r_pk, 32);
    const uint8_t *w = hello + SC_HDR_LEN;
    assert_int_equal(w[0], sc_local_suites() | SC_FEAT_REKEY);
    kat_hash(h, w, 1);
    kat_hash(h, w + 1, 32);
    uint8_t e_i_pk[32];
    crypto_scalarmult_base(e_i_pk, e_i_sk);
    assert_memory_equal(w + 1, e_i_pk, 32);
    kat_dh(ck, e_i_sk, r_pk, k); /* es */
    kat_open(k, h, w + 33, 48, m);
    assert_memory_equal(m, i_pk, 32);
    kat_hash(h, w + 33, 48);
    kat_dh(ck, i_sk, r_pk, k); /* ss */
    size_t c2 = (size_t)hn - SC_HDR_LEN - 81;
    kat_open(k, h, w + 81, c2, m);
    uint64_t ts = 0; /* u64 big endian, then the payload */
    for (int b = 0; b < SC_TS_LEN; b++)
        ts = ts << 8 | m[b];
    assert_true(ts == i.hello_ts && ts == r.hello_ts && ts == ts_last);
    assert_memory_equal(m + SC_TS_LEN, I_PAYLOAD, sizeof(I_PAYLOAD));
    kat_hash(h, w + 81, c2);

    w = welcome + SC_HDR_LEN;
    assert_int_equal(w[0], r.suite | SC_FEAT_REKEY);
    kat_hash(h, w, 1);
    kat_hash(h, w + 1, 32);
    kat_dh(ck, e_i_sk, w + 1, k); /* ee */
    kat_dh(ck, i_sk, w + 1, k);   /* se */
    kat_open(k, h, w + 33, (size_t)wn - SC_HDR_LEN - 33, m);
    assert_memory_equal(m, R_PAYLOAD, sizeof(R_PAYLOAD));

    uint8_t i2r[32], r2i[32];
    kat_kdf(ck, NULL, 0, r2i);
    memcpy(i2r, ck, 32);
    assert_memory_equal(i.tx_key, i2r, 32);
    assert_memory_equal(i.rx_key, r2i, 32);
    assert_memory_equal(r.rx_key, i2r, 32);
    assert_memory_equal(r.tx_key, r2i, 32);

    /* Rekey: k' = KDF(k, "popmesh-sc-v2 rekey").o1, and the REKEY record is the number of the
     * next key, u64 big endian, sealed like a DATA record (nonce: the direction's counter). */
    static const char label[] = "popmesh-sc-v2 rekey";
    uint8_t rec[SC_REKEY_LEN], junk[32], next[32], nonce[12] = {0}, num[8];
    uint64_t seq = i.tx_seq;
    assert_int_equal(sc_seal_rekey(&i, 1, rec), SC_REKEY_LEN);
    assert_int_equal(rec[0], SC_REC_REKEY);
    assert_int_equal(rec[3], SC_REKEY_BODY_LEN);
    for (int b = 0; b < 8; b++)
        nonce[4 + b] = (uint8_t)(seq >> (8 * b));
    int rc;
    if (i.suite == SC_SUITE_AES256GCM)
        rc = crypto_aead_aes256gcm_decrypt_detached(
            num, NULL, rec + SC_HDR_LEN, 8, rec + SC_HDR_LEN + 8, rec, SC_HDR_LEN, nonce, i2r);
    else
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(
            num, NULL, rec + SC_HDR_LEN, 8, rec + SC_HDR_LEN + 8, rec, SC_HDR_LEN, nonce, i2r);
    assert_int_equal(rc, 0);
    static const uint8_t one[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    assert_memory_equal(num, one, 8);
    memcpy(next, i2r, 32);
    kat_kdf(next, (const uint8_t *)label, strlen(label), junk);
    assert_memory_equal(i.tx_key, next, 32);
    assert_int_equal(sc_open_rekey(&r, rec, rec + SC_HDR_LEN, SC_REKEY_BODY_LEN), 0);
    assert_memory_equal(r.rx_key, next, 32);
}

static void test_failure_wipes(void **state)
{
    sc_t i, r;
    default_handshake(&i, &r);
    uint8_t rec[20 + SC_OVERHEAD] = {SC_REC_DATA, 0, 0, 20 + SC_TAG_LEN};
    size_t plen;
    assert_int_equal(sc_open(&r, rec, rec + SC_HDR_LEN, 20 + SC_TAG_LEN, &plen), -EBADMSG);
    assert_failed(&r);
    /* The public keys stay for the log line. */
    assert_memory_equal(r.local_pk, r_pk, 32);
    assert_memory_equal(r.remote_pk, i_pk, 32);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    uint8_t seed[32];
    memset(seed, 0x11, 32);
    crypto_box_seed_keypair(i_pk, i_sk, seed);
    memset(seed, 0x22, 32);
    crypto_box_seed_keypair(r_pk, r_sk, seed);
    memset(seed, 0x33, 32);
    crypto_box_seed_keypair(other_pk, other_sk, seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_payloads),
        cmocka_unit_test(test_payload_lengths),
        cmocka_unit_test(test_wrong_responder_key),
        cmocka_unit_test(test_tamper_hello),
        cmocka_unit_test(test_tamper_welcome),
        cmocka_unit_test(test_tamper_data),
        cmocka_unit_test(test_split_records),
        cmocka_unit_test(test_replay_reorder),
        cmocka_unit_test(test_replayed_hello),
        cmocka_unit_test(test_hello_timestamp),
        cmocka_unit_test(test_replay_filter),
        cmocka_unit_test(test_suites),
        cmocka_unit_test(test_records_both_ways),
        cmocka_unit_test(test_seal_limits),
        cmocka_unit_test(test_counter_exhaustion),
        cmocka_unit_test(test_parse_header),
        cmocka_unit_test(test_wrong_states),
        cmocka_unit_test(test_small_order_ephemeral),
        cmocka_unit_test(test_key_schedule),
        cmocka_unit_test(test_failure_wipes),
        cmocka_unit_test(test_rekey_both_ways),
        cmocka_unit_test(test_rekey_old_key_refused),
        cmocka_unit_test(test_rekey_replay),
        cmocka_unit_test(test_rekey_tamper),
        cmocka_unit_test(test_rekey_wipes),
        cmocka_unit_test(test_rekey_limits),
        cmocka_unit_test(test_rekey_negotiation),
        cmocka_unit_test(test_rekey_wrong_states),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
