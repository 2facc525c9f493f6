/* Login attempts counted mesh-wide (node/auth/loginshare.h with node/auth/ratelimit.h): the
 * summary codec and its refusals, the cumulative counters under loss, duplicates, reordering,
 * restarts and forgetting, and a simulated mesh of PoPs whose limiters must together admit what
 * one PoP would (within the documented bound), where PoPs alone admit N times that. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "node/auth/loginshare.h"
#include "node/auth/ratelimit.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static size_t pack_msg(const loginshare_msg_t *m, uint8_t *out, size_t cap)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    loginshare_pack(&pk, m);
    assert_true(sb.size <= cap);
    memcpy(out, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

struct charges {
    uint64_t n[LOGINSHARE_KINDS];
    unsigned calls;
    uint64_t last_key;
};

static void count_charge(void *ctx, enum loginshare_kind kind, uint64_t key, uint64_t n)
{
    struct charges *c = ctx;
    assert_true(kind < LOGINSHARE_KINDS);
    assert_true(n >= 1);
    c->n[kind] += n;
    c->calls++;
    c->last_key = key;
}

/* ---- the codec ------------------------------------------------------------------------------ */

static void test_codec_roundtrip(void **state)
{
    (void)state;
    loginshare_msg_t m = {.origin = 7, .epoch = 1700000000000ull, .seq = 3, .n = 2};
    m.e[0] = (loginshare_entry_t){
        .kind = LOGINSHARE_USER, .key = 0xdeadbeefcafef00dull, .born = 1, .count = 4};
    m.e[1] = (loginshare_entry_t){.kind = LOGINSHARE_ADDR, .key = 42, .born = 9, .count = 1};
    uint8_t buf[LOGINSHARE_MSG_MAX];
    size_t len = pack_msg(&m, buf, sizeof(buf));
    loginshare_msg_t back;
    assert_int_equal(loginshare_decode(buf, len, &back), 0);
    assert_int_equal(back.origin, 7);
    assert_int_equal(back.epoch, m.epoch);
    assert_int_equal(back.seq, 3);
    assert_int_equal(back.n, 2);
    assert_memory_equal(back.e, m.e, 2 * sizeof(m.e[0]));

    /* the largest summary this version packs fits LOGINSHARE_MSG_MAX */
    loginshare_msg_t big = {
        .origin = UINT64_MAX, .epoch = UINT64_MAX, .seq = UINT64_MAX, .n = LOGINSHARE_ENTRIES_MAX};
    for (uint32_t i = 0; i < big.n; i++)
        big.e[i] = (loginshare_entry_t){.kind = LOGINSHARE_USER,
                                        .key = UINT64_MAX - i,
                                        .born = UINT32_MAX,
                                        .count = UINT32_MAX};
    len = pack_msg(&big, buf, sizeof(buf));
    assert_int_equal(loginshare_decode(buf, len, &back), 0);
    assert_int_equal(back.n, LOGINSHARE_ENTRIES_MAX);
}

/* Builds raw bytes with msgpack-c for the refusal cases. */
static size_t raw(uint8_t *out, size_t cap, uint64_t version, uint32_t fields, uint32_t nentries,
                  uint32_t entry_fields, uint64_t count, uint64_t seq, bool dup, bool trailing)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, fields);
    msgpack_pack_uint64(&pk, version);
    msgpack_pack_uint64(&pk, 5);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, seq);
    msgpack_pack_array(&pk, nentries);
    for (uint32_t i = 0; i < nentries; i++) {
        msgpack_pack_array(&pk, entry_fields);
        msgpack_pack_uint32(&pk, LOGINSHARE_USER);
        msgpack_pack_uint64(&pk, dup ? 1 : i + 1);
        msgpack_pack_uint32(&pk, 1);
        msgpack_pack_uint64(&pk, count);
        for (uint32_t f = LOGINSHARE_ENTRY_FIELDS; f < entry_fields; f++)
            msgpack_pack_str_with_body(&pk, "later", 5);
    }
    for (uint32_t f = LOGINSHARE_FIELDS; f < fields; f++)
        msgpack_pack_nil(&pk);
    if (trailing)
        msgpack_pack_nil(&pk);
    assert_true(sb.size <= cap);
    memcpy(out, sb.data, sb.size);
    size_t n = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void test_codec_refusals(void **state)
{
    (void)state;
    uint8_t buf[8192];
    loginshare_msg_t m;
    size_t len = raw(buf, sizeof(buf), 1, 5, 2, 4, 3, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), 0);
    /* every strict prefix is refused, never read past */
    for (size_t i = 0; i < len; i++)
        assert_int_equal(loginshare_decode(buf, i, &m), -EBADMSG);
    /* fields a newer node appends, to the summary and to an entry, are skipped */
    len = raw(buf, sizeof(buf), 1, 7, 2, 6, 3, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), 0);
    assert_int_equal(m.n, 2);
    assert_int_equal(m.e[1].count, 3);
    /* another version: refused as such, not guessed at */
    len = raw(buf, sizeof(buf), 2, 5, 2, 4, 3, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), -EPROTONOSUPPORT);
    /* too few fields, in the summary or in an entry */
    len = raw(buf, sizeof(buf), 1, 4, 0, 4, 3, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), -EBADMSG);
    len = raw(buf, sizeof(buf), 1, 5, 1, 3, 3, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), -EBADMSG);
    /* a count of 0, a count over 32 bits, a seq of 0 */
    len = raw(buf, sizeof(buf), 1, 5, 1, 4, 0, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), -EBADMSG);
    len = raw(buf, sizeof(buf), 1, 5, 1, 4, 1ull << 32, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), -EBADMSG);
    len = raw(buf, sizeof(buf), 1, 5, 1, 4, 1, 0, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), -EBADMSG);
    /* one key twice */
    len = raw(buf, sizeof(buf), 1, 5, 2, 4, 1, 1, true, false);
    assert_int_equal(loginshare_decode(buf, len, &m), -EBADMSG);
    /* more entries than a summary may hold */
    len = raw(buf, sizeof(buf), 1, 5, LOGINSHARE_ENTRIES_MAX + 1, 4, 1, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), -EBADMSG);
    len = raw(buf, sizeof(buf), 1, 5, LOGINSHARE_ENTRIES_MAX, 4, 1, 1, false, false);
    assert_int_equal(loginshare_decode(buf, len, &m), 0);
    /* bytes after the summary */
    len = raw(buf, sizeof(buf), 1, 5, 1, 4, 1, 1, false, true);
    assert_int_equal(loginshare_decode(buf, len, &m), -EBADMSG);
    /* not an array; a huge declared count in five bytes */
    assert_int_equal(loginshare_decode((const uint8_t *)"\xc0", 1, &m), -EBADMSG);
    assert_int_equal(loginshare_decode((const uint8_t *)"\xdd\xff\xff\xff\xff", 5, &m), -EBADMSG);
    assert_int_equal(loginshare_decode(NULL, 0, &m), -EBADMSG);

    /* a refused summary changes nothing and is counted */
    loginshare_t *ls = loginshare_new(1, 1000);
    struct charges c = {0};
    len = raw(buf, sizeof(buf), 1, 5, 2, 4, 1, 1, true, false);
    assert_int_equal(loginshare_receive(ls, buf, len, 10, count_charge, &c), -EBADMSG);
    assert_int_equal(c.calls, 0);
    assert_int_equal(loginshare_stats(ls).malformed, 1);
    loginshare_destroy(&ls);
    assert_null(ls);
    loginshare_destroy(&ls);
    loginshare_destroy(NULL);
}

/* ---- cumulative counters -------------------------------------------------------------------- */

/* Ticks `from` at now and returns its summary's bytes in buf (0 if none was due). */
static size_t summary(loginshare_t *from, uint64_t now, uint8_t *buf, size_t cap, uint64_t *next)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t nx;
    size_t n = 0;
    if (loginshare_tick(from, now, &pk, next ? next : &nx) == 1) {
        assert_true(sb.size <= cap && sb.size <= LOGINSHARE_MSG_MAX);
        memcpy(buf, sb.data, sb.size);
        n = sb.size;
    }
    msgpack_sbuffer_destroy(&sb);
    return n;
}

static void test_counting(void **state)
{
    (void)state;
    loginshare_t *a = loginshare_new(1, 5000), *b = loginshare_new(2, 5000);
    struct charges c = {0};
    uint8_t s1[LOGINSHARE_MSG_MAX], s2[LOGINSHARE_MSG_MAX], s3[LOGINSHARE_MSG_MAX];
    uint64_t t = 1000, next;

    /* nothing attempted: nothing to send, nothing to wake for */
    assert_int_equal(summary(a, t, s1, sizeof(s1), &next), 0);
    assert_true(next == UINT64_MAX);

    /* two attempts for alice, one from an address: one summary after the flush delay */
    uint64_t due = loginshare_note(a, LOGINSHARE_USER, 0xa11ce, t);
    assert_int_equal(due, t + LOGINSHARE_FLUSH_MS);
    assert_int_equal(loginshare_note(a, LOGINSHARE_USER, 0xa11ce, t + 10), due);
    loginshare_note(a, LOGINSHARE_ADDR, 0x1234, t + 20);
    assert_int_equal(summary(a, t + 30, s1, sizeof(s1), &next), 0); /* not yet */
    assert_int_equal(next, due);
    size_t l1 = summary(a, due, s1, sizeof(s1), &next);
    assert_true(l1 > 0);
    assert_int_equal(next, due + LOGINSHARE_PERIOD_MS); /* the repeat */
    loginshare_msg_t m;
    assert_int_equal(loginshare_decode(s1, l1, &m), 0);
    assert_int_equal(m.n, 2);
    assert_int_equal(m.e[0].kind, LOGINSHARE_USER); /* users first */
    assert_int_equal(m.e[0].count, 2);

    assert_int_equal(loginshare_receive(b, s1, l1, 50, count_charge, &c), 1);
    assert_int_equal(c.n[LOGINSHARE_USER], 2);
    assert_int_equal(c.n[LOGINSHARE_ADDR], 1);
    /* the same summary again (gossip brings it twice): no news, no charge */
    assert_int_equal(loginshare_receive(b, s1, l1, 60, count_charge, &c), 0);
    assert_int_equal(c.n[LOGINSHARE_USER], 2);
    /* our own summary relayed back to us: ignored */
    assert_int_equal(loginshare_receive(a, s1, l1, 60, count_charge, &c), 0);
    assert_int_equal(c.calls, 2);

    /* a third attempt; its summary is lost; a fourth; the next summary makes up for both */
    loginshare_note(a, LOGINSHARE_USER, 0xa11ce, t + 2000);
    size_t l2 = summary(a, t + 2000 + LOGINSHARE_FLUSH_MS, s2, sizeof(s2), NULL);
    assert_true(l2 > 0);
    loginshare_note(a, LOGINSHARE_USER, 0xa11ce, t + 3000);
    size_t l3 = summary(a, t + 3000 + LOGINSHARE_FLUSH_MS, s3, sizeof(s3), NULL);
    assert_true(l3 > 0);
    assert_int_equal(loginshare_receive(b, s3, l3, 100, count_charge, &c), 1);
    assert_int_equal(c.n[LOGINSHARE_USER], 4);
    /* the lost one arriving late (older seq) changes nothing */
    assert_int_equal(loginshare_receive(b, s2, l2, 110, count_charge, &c), 0);
    assert_int_equal(c.n[LOGINSHARE_USER], 4);
    assert_int_equal(c.n[LOGINSHARE_ADDR], 1); /* its count did not grow: not charged again */

    /* while a key is recent the summary is repeated each period, then no more */
    uint64_t last = t + 3000, at = last + LOGINSHARE_FLUSH_MS, repeats = 0;
    for (int i = 0; i < 100 && at < last + 2 * LOGINSHARE_RESEND_MS; i++) {
        summary(a, at, s1, sizeof(s1), &next);
        if (next == UINT64_MAX)
            break;
        at = next;
        size_t l = summary(a, at, s1, sizeof(s1), &next);
        if (l) {
            repeats++;
            assert_int_equal(loginshare_receive(b, s1, l, 200 + at, count_charge, &c), 1);
        }
        at = next;
    }
    assert_true(repeats >= LOGINSHARE_RESEND_MS / LOGINSHARE_PERIOD_MS / 2 - 1);
    assert_true(repeats <= LOGINSHARE_RESEND_MS / LOGINSHARE_PERIOD_MS);
    assert_int_equal(c.n[LOGINSHARE_USER], 4); /* repeats charge nothing */
    loginshare_stats_t st = loginshare_stats(b);
    assert_int_equal(st.charged, 5);
    assert_true(st.stale >= 2);

    loginshare_destroy(&a);
    loginshare_destroy(&b);
}

static void test_counters_restart(void **state)
{
    (void)state;
    loginshare_t *a = loginshare_new(1, 5000), *b = loginshare_new(2, 0);
    struct charges c = {0};
    uint8_t s[LOGINSHARE_MSG_MAX];
    uint64_t t = 1000;

    for (int i = 0; i < 3; i++)
        loginshare_note(a, LOGINSHARE_USER, 77, t);
    size_t l = summary(a, t + LOGINSHARE_FLUSH_MS, s, sizeof(s), NULL);
    assert_int_equal(loginshare_receive(b, s, l, t, count_charge, &c), 1);
    assert_int_equal(c.n[LOGINSHARE_USER], 3);

    /* idle past KEEP_MS at a: a new counter (new born) starting at 1: b charges exactly 1,
     * although b still remembers the old counter (count 3) */
    t += LOGINSHARE_KEEP_MS;
    loginshare_note(a, LOGINSHARE_USER, 77, t);
    l = summary(a, t + LOGINSHARE_FLUSH_MS, s, sizeof(s), NULL);
    loginshare_msg_t m;
    assert_int_equal(loginshare_decode(s, l, &m), 0);
    assert_int_equal(m.e[0].count, 1);
    assert_int_equal(loginshare_receive(b, s, l, t, count_charge, &c), 1);
    assert_int_equal(c.n[LOGINSHARE_USER], 4);

    /* a restarts (a later epoch, seq from 1 again): its new counts are charged, not taken for
     * stale ones */
    loginshare_t *a2 = loginshare_new(1, 6000);
    loginshare_note(a2, LOGINSHARE_USER, 77, t + 10);
    l = summary(a2, t + 10 + LOGINSHARE_FLUSH_MS, s, sizeof(s), NULL);
    assert_int_equal(loginshare_receive(b, s, l, t + 100, count_charge, &c), 1);
    assert_int_equal(c.n[LOGINSHARE_USER], 5);
    /* a summary of the older life still travelling: stale */
    loginshare_note(a, LOGINSHARE_USER, 77, t + 20);
    l = summary(a, t + 20 + LOGINSHARE_FLUSH_MS, s, sizeof(s), NULL);
    assert_int_equal(loginshare_receive(b, s, l, t + 200, count_charge, &c), 0);
    assert_int_equal(c.n[LOGINSHARE_USER], 5);
    /* ... unless nothing was heard from the origin for FORGET_MS: its clock went back */
    loginshare_note(a, LOGINSHARE_USER, 77, t + 30);
    l = summary(a, t + 30 + LOGINSHARE_FLUSH_MS, s, sizeof(s), NULL);
    assert_int_equal(loginshare_receive(b, s, l, t + 100 + LOGINSHARE_FORGET_MS, count_charge, &c),
                     1);
    assert_int_equal(c.n[LOGINSHARE_USER], 5 + 3); /* counters of that life start over here */

    /* forgetting: after FORGET_MS without growth b holds nothing; a (idle past KEEP_MS) too */
    uint64_t next;
    uint64_t late = t + 200 + 3 * LOGINSHARE_FORGET_MS;
    assert_int_equal(summary(b, late, s, sizeof(s), &next), 0);
    assert_true(next == UINT64_MAX);
    assert_int_equal(summary(a, late, s, sizeof(s), &next), 0);
    assert_true(next == UINT64_MAX);

    loginshare_destroy(&a);
    loginshare_destroy(&a2);
    loginshare_destroy(&b);
}

static void test_bounded(void **state)
{
    (void)state;
    loginshare_t *a = loginshare_new(1, 5000), *b = loginshare_new(2, 5000);
    struct charges c = {0};
    uint8_t s[LOGINSHARE_MSG_MAX];
    /* more keys than a summary holds: users first, then the most recent */
    for (uint64_t i = 0; i < 3 * LOGINSHARE_ENTRIES_MAX; i++)
        loginshare_note(a, LOGINSHARE_ADDR, 1000 + i, 10 + i);
    loginshare_note(a, LOGINSHARE_USER, 5, 5);
    size_t l = summary(a, 10000, s, sizeof(s), NULL);
    loginshare_msg_t m;
    assert_int_equal(loginshare_decode(s, l, &m), 0);
    assert_int_equal(m.n, LOGINSHARE_ENTRIES_MAX);
    assert_int_equal(m.e[0].kind, LOGINSHARE_USER);
    assert_int_equal(m.e[1].key, 1000 + 3 * LOGINSHARE_ENTRIES_MAX - 1);
    /* more keys than a PoP counts: the least recent are forgotten, the table stays bounded */
    for (uint64_t i = 0; i < 3 * LOGINSHARE_LOCAL_MAX; i++)
        loginshare_note(a, LOGINSHARE_ADDR, 1u << 20 | i, 20000 + i);
    l = summary(a, 30000, s, sizeof(s), NULL);
    assert_true(l > 0);
    /* a peer flooding more counters than a receiver remembers: bounded, evictions counted */
    loginshare_msg_t big = {.origin = 9, .epoch = 1, .n = LOGINSHARE_ENTRIES_MAX};
    uint8_t buf[LOGINSHARE_MSG_MAX];
    for (uint64_t seq = 1; seq <= 2 * LOGINSHARE_SEEN_MAX / LOGINSHARE_ENTRIES_MAX; seq++) {
        big.seq = seq;
        for (uint32_t i = 0; i < big.n; i++)
            big.e[i] = (loginshare_entry_t){
                .kind = LOGINSHARE_USER, .key = seq * 1000 + i, .born = 1, .count = 1};
        size_t bl = pack_msg(&big, buf, sizeof(buf));
        assert_int_equal(loginshare_receive(b, buf, bl, seq, count_charge, &c), 1);
    }
    assert_int_equal(loginshare_stats(b).evicted, LOGINSHARE_SEEN_MAX);
    /* an unknown kind of key (a newer node's) is skipped, the rest applied */
    big.seq = 100000;
    big.n = 2;
    big.e[0] = (loginshare_entry_t){.kind = 7, .key = 1, .born = 1, .count = 9};
    big.e[1] = (loginshare_entry_t){.kind = LOGINSHARE_ADDR, .key = 1, .born = 1, .count = 2};
    size_t bl = pack_msg(&big, buf, sizeof(buf));
    uint64_t before = c.n[LOGINSHARE_ADDR];
    assert_int_equal(loginshare_receive(b, buf, bl, 100000, count_charge, &c), 1);
    assert_int_equal(c.n[LOGINSHARE_ADDR], before + 2);
    loginshare_destroy(&a);
    loginshare_destroy(&b);
}

/* ---- the limiter's debt --------------------------------------------------------------------- */

static void test_ratelimit_charge(void **state)
{
    (void)state;
    auth_ratelimit_t *rl = auth_ratelimit_new(5, 10000, 16);
    uint8_t k[AUTH_RL_HASH_KEY_BYTES] = "sixteen byte key";
    auth_ratelimit_set_hash_key(rl, k);
    uint64_t h = auth_ratelimit_hash(rl, "user:alice");
    /* the hash is a function of the key only: another table with the same key agrees */
    auth_ratelimit_t *other = auth_ratelimit_new(30, 2000, 4);
    auth_ratelimit_set_hash_key(other, k);
    assert_true(auth_ratelimit_hash(other, "user:alice") == h);
    assert_true(auth_ratelimit_hash(other, "user:bob") != h);
    auth_ratelimit_destroy(&other);

    uint64_t t = 1000;
    assert_int_equal(auth_ratelimit_level(rl, h, t), 5); /* unknown: full */
    auth_ratelimit_charge(rl, h, 3, t);
    assert_int_equal(auth_ratelimit_level(rl, h, t), 2);
    assert_true(auth_ratelimit_take(rl, h, t));
    assert_true(auth_ratelimit_allow(rl, "user:alice", t));
    assert_false(auth_ratelimit_take(rl, h, t));
    /* charges past empty are debt: refill pays it back before the next attempt */
    auth_ratelimit_charge(rl, h, 4, t);
    assert_int_equal(auth_ratelimit_level(rl, h, t), -4);
    assert_false(auth_ratelimit_take(rl, h, t + 4 * 10000));
    assert_true(auth_ratelimit_take(rl, h, t + 5 * 10000));
    assert_false(auth_ratelimit_take(rl, h, t + 5 * 10000));
    /* a report however large is floored: held back at most (1 + DEBT_BURSTS) full buckets */
    auth_ratelimit_charge(rl, h, UINT64_MAX, t + 5 * 10000);
    assert_int_equal(auth_ratelimit_level(rl, h, t + 5 * 10000), -5 * AUTH_RL_DEBT_BURSTS);
    uint64_t back = t + 5 * 10000 + (uint64_t)(AUTH_RL_DEBT_BURSTS * 5 + 1) * 10000;
    assert_false(auth_ratelimit_take(rl, h, back - 1));
    assert_true(auth_ratelimit_take(rl, h, back));
    /* refill stops at full, debt or not */
    assert_int_equal(auth_ratelimit_level(rl, h, back + 1000 * 10000), 5);
    auth_ratelimit_charge(rl, h, 0, back);
    assert_int_equal(auth_ratelimit_level(rl, h, back), 0);
    /* a charge for a key not remembered makes a bucket for it */
    uint64_t g = auth_ratelimit_hash(rl, "user:carol");
    auth_ratelimit_charge(rl, g, 5, t);
    assert_false(auth_ratelimit_take(rl, g, t));
    assert_null(auth_ratelimit_new(1, UINT64_MAX / 4, 1)); /* the debt would overflow */
    auth_ratelimit_destroy(&rl);
}

/* ---- a simulated mesh ----------------------------------------------------------------------- */

#define SIM_POPS 3

struct pop {
    auth_ratelimit_t *rl;
    loginshare_t *ls;
    uint64_t next; /* ms: its tick deadline */
};

static uint64_t sim_now; /* ms: the simulation's clock */

static void sim_charge(void *ctx, enum loginshare_kind kind, uint64_t key, uint64_t n)
{
    (void)kind;
    struct pop *p = ctx;
    auth_ratelimit_charge(p->rl, key, n, sim_now);
}

/* Runs every PoP's tick due by sim_now; each summary reaches the others `delay` ms later (all of
 * them arrive, in order, for simplicity: loss is test_counting's business). */
struct inflight {
    uint64_t at;
    int from;
    size_t len;
    uint8_t buf[LOGINSHARE_MSG_MAX];
};
static struct inflight sim_q[4096];
static size_t sim_nq;

static void sim_run(struct pop *pops, int n, uint64_t until, uint64_t delay, bool share)
{
    for (; sim_now <= until; sim_now++) {
        for (size_t i = 0; i < sim_nq;) {
            if (sim_q[i].at > sim_now) {
                i++;
                continue;
            }
            for (int p = 0; p < n; p++)
                if (p != sim_q[i].from)
                    loginshare_receive(pops[p].ls, sim_q[i].buf, sim_q[i].len, sim_now, sim_charge,
                                       &pops[p]);
            sim_q[i] = sim_q[--sim_nq];
        }
        for (int p = 0; p < n; p++) {
            if (pops[p].next > sim_now)
                continue;
            uint8_t buf[LOGINSHARE_MSG_MAX];
            size_t len = summary(pops[p].ls, sim_now, buf, sizeof(buf), &pops[p].next);
            if (len && share) {
                assert_true(sim_nq < sizeof(sim_q) / sizeof(sim_q[0]));
                struct inflight *f = &sim_q[sim_nq++];
                f->at = sim_now + delay;
                f->from = p;
                f->len = len;
                memcpy(f->buf, buf, len);
            }
        }
    }
    sim_now = until;
}

static bool sim_attempt(struct pop *p, uint64_t h)
{
    if (!auth_ratelimit_take(p->rl, h, sim_now))
        return false;
    uint64_t due = loginshare_note(p->ls, LOGINSHARE_USER, h, sim_now);
    if (due < p->next)
        p->next = due;
    return true;
}

/* An attacker guessing one user's password round-robin over the PoPs, one guess every `gap` ms
 * for `total` ms. Returns the guesses admitted. */
static unsigned sim_attack(int n, uint64_t gap, uint64_t total, uint64_t delay, bool share,
                           bool all_at_once)
{
    struct pop pops[SIM_POPS];
    uint8_t k[AUTH_RL_HASH_KEY_BYTES] = "mesh-derived key";
    for (int i = 0; i < n; i++) {
        pops[i].rl = auth_ratelimit_new(AUTH_RL_BURST, AUTH_RL_REFILL_MS, 64);
        auth_ratelimit_set_hash_key(pops[i].rl, k);
        pops[i].ls = loginshare_new((uint64_t)i + 1, 1000);
        pops[i].next = UINT64_MAX;
    }
    uint64_t h = auth_ratelimit_hash(pops[0].rl, "user:alice");
    unsigned admitted = 0, turn = 0;
    sim_now = 1;
    sim_nq = 0;
    for (uint64_t t = 1; t < total; t += gap) {
        sim_run(pops, n, t, delay, share);
        if (all_at_once) {
            for (int i = 0; i < n; i++)
                while (sim_attempt(&pops[i], h))
                    admitted++;
        } else {
            admitted += sim_attempt(&pops[turn++ % (unsigned)n], h);
        }
    }
    for (int i = 0; i < n; i++) {
        auth_ratelimit_destroy(&pops[i].rl);
        loginshare_destroy(&pops[i].ls);
    }
    return admitted;
}

static void test_mesh_bound(void **state)
{
    (void)state;
    const unsigned B = AUTH_RL_BURST;
    const uint64_t R = AUTH_RL_REFILL_MS, delay = 300; /* ms of gossip delay */
    /* guesses 1 s apart, round-robin over 3 PoPs, for 30 s: alone each PoP admits its burst
     * and its refill (3 * (5 + 3) = 24 at most); together the mesh admits what one PoP would:
     * B + 30 s / R */
    unsigned alone = sim_attack(SIM_POPS, 1000, 30000, delay, false, false);
    unsigned shared = sim_attack(SIM_POPS, 1000, 30000, delay, true, false);
    unsigned single = sim_attack(1, 1000, 30000, delay, false, false);
    print_message(
        "30 s, one guess per s: %u admitted by 3 PoPs alone, %u by 3 sharing, %u by one\n", alone,
        shared, single);
    assert_true(alone >= 2 * B + B);
    assert_true(shared <= B + 30000 / R);
    assert_true(shared <= single);
    /* guesses faster than the gossip delay: the bound's slack, (N-1) * the guesses one PoP
     * admits within a delay */
    unsigned fast = sim_attack(SIM_POPS, 50, 30000, delay, true, false);
    print_message("30 s, one guess per 50 ms: %u admitted by 3 sharing\n", fast);
    assert_true(fast <= B + 30000 / R + (SIM_POPS - 1) * (delay / 50 / SIM_POPS + 1));
    /* every PoP emptied at once, over and over for 10 min: once up to N * B, but the debt keeps
     * the long-run rate at one per R for the whole mesh, not N per R */
    uint64_t T = 600000;
    unsigned flood = sim_attack(SIM_POPS, 100, T, delay, true, true);
    unsigned flood_alone = sim_attack(SIM_POPS, 100, T, delay, false, true);
    print_message("10 min, all PoPs emptied every 100 ms: %u admitted sharing, %u alone "
                  "(bound %u)\n",
                  flood, flood_alone, (unsigned)(B + T / R + (SIM_POPS - 1) * (B + delay / R + 1)));
    assert_true(flood <= B + T / R + (SIM_POPS - 1) * (B + delay / R + 1));
    assert_true(flood_alone >= SIM_POPS * (B + T / R) - SIM_POPS);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codec_roundtrip), cmocka_unit_test(test_codec_refusals),
        cmocka_unit_test(test_counting),        cmocka_unit_test(test_counters_restart),
        cmocka_unit_test(test_bounded),         cmocka_unit_test(test_ratelimit_charge),
        cmocka_unit_test(test_mesh_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
