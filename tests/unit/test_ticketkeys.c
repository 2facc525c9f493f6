/* The mesh-wide session-ticket keys (node/tls/ticketkeys.h).
 *
 * The rule, pure: the rendezvous rank is a permutation of the PoPs for every period, the same
 * whatever order the list comes in, counts self once, and spreads the writer role evenly; the
 * due times put the writer at the start of the period before, the fallbacks half a period
 * later one stagger apart, and leave a key noticed missing late that long.
 *
 * Driven on a real store and loop (no mesh: this PoP alone, so it is the writer of every
 * period) with a 2 s period: the keys of the current and the next period are written sealed,
 * the current key is found without renewal, the previous period's with renewal, an older one
 * not at all; a record three periods old is deleted; a record that does not open is counted
 * and skipped; the status carries key names, never keys. */
#include "common/clock.h"
#include "node/tls/ticketkeys.h"

#include <errno.h>
#include <ev.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include <cmocka.h>

#define PERIOD 2000ull /* ms */

/* ---- the rule ----------------------------------------------------------------------------- */

static void test_rank_permutation(void **state)
{
    (void)state;
    uint64_t ids[5] = {11, 22, 33, 44, 55};
    uint64_t rev[5] = {55, 44, 33, 22, 11};
    unsigned writer_count[5] = {0};
    for (uint64_t e = 1000; e < 3000; e++) {
        unsigned seen = 0;
        for (int i = 0; i < 5; i++) {
            unsigned r = ticketkeys_rank(ids[i], ids, 5, e);
            assert_true(r < 5);
            assert_int_equal(r, ticketkeys_rank(ids[i], rev, 5, e)); /* order does not matter */
            assert_false(seen & (1u << r));                          /* each rank once */
            seen |= 1u << r;
            if (r == 0)
                writer_count[i]++;
        }
        assert_int_equal(seen, 0x1f);
    }
    /* 2000 periods, 5 PoPs: 400 each expected; binomial sd 18, so 300..500 is > 5 sd. */
    for (int i = 0; i < 5; i++) {
        assert_true(writer_count[i] > 300);
        assert_true(writer_count[i] < 500);
    }
    /* Self counts once, listed or not; duplicates count once. */
    uint64_t others[4] = {11, 22, 44, 55}, dup[7] = {11, 11, 22, 33, 44, 55, 55};
    for (uint64_t e = 0; e < 200; e++) {
        assert_int_equal(ticketkeys_rank(33, others, 4, e), ticketkeys_rank(33, ids, 5, e));
        assert_int_equal(ticketkeys_rank(33, dup, 7, e), ticketkeys_rank(33, ids, 5, e));
    }
    assert_int_equal(ticketkeys_rank(33, NULL, 0, 9), 0); /* alone: always the writer */
    /* The score is a pure function of (id, epoch). */
    assert_int_equal(ticketkeys_score(1, 2), ticketkeys_score(1, 2));
    assert_int_not_equal(ticketkeys_score(1, 2), ticketkeys_score(1, 3));
    assert_int_not_equal(ticketkeys_score(1, 2), ticketkeys_score(2, 1));
}

static void test_due(void **state)
{
    (void)state;
    const uint64_t P = 12ull * 3600 * 1000, E = 100, base = (E - 1) * P;
    const uint64_t stagger = 30000; /* P / 16 capped at 30 s */
    /* Normal case: noticed at the start of the period before. */
    assert_int_equal(ticketkeys_due_ms(E, 0, P, base), base);
    assert_int_equal(ticketkeys_due_ms(E, 1, P, base), base + P / 2);
    assert_int_equal(ticketkeys_due_ms(E, 2, P, base), base + P / 2 + stagger);
    assert_int_equal(ticketkeys_due_ms(E, 3, P, base), base + P / 2 + 2 * stagger);
    /* Noticed before the period before started (a PoP checks early): the writer still waits. */
    assert_int_equal(ticketkeys_due_ms(E, 0, P, base - 5000), base);
    /* The key of the current period noticed missing late (a new mesh): the writer at once,
     * fallbacks one stagger apart from then. */
    uint64_t late = E * P + 1234;
    assert_int_equal(ticketkeys_due_ms(E, 0, P, late), late);
    assert_int_equal(ticketkeys_due_ms(E, 1, P, late), late + stagger);
    assert_int_equal(ticketkeys_due_ms(E, 2, P, late), late + 2 * stagger);
    /* Short periods: the stagger is P / 16, at least 200 ms. */
    assert_int_equal(ticketkeys_due_ms(E, 2, 4000, late) - ticketkeys_due_ms(E, 1, 4000, late),
                     250);
    assert_int_equal(ticketkeys_due_ms(E, 2, 1000, late) - ticketkeys_due_ms(E, 1, 1000, late),
                     200);
}

/* ---- driven ------------------------------------------------------------------------------- */

struct drive {
    struct ev_loop *loop;
    store_t *store;
    certstore_seal_key_t seal, other;
    ticketkeys_t *t;
    char dir[64];
};

static bool (*until_fn)(struct drive *);
static struct drive *until_d;

static void on_poll(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    if (until_fn(until_d))
        ev_break(loop, EVBREAK_ONE);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop until fn holds (checked every 20 ms) or secs pass; returns fn's last value. */
static bool run_until(struct drive *d, bool (*fn)(struct drive *), double secs)
{
    until_fn = fn;
    until_d = d;
    ev_timer poll, deadline;
    ev_timer_init(&poll, on_poll, 0.02, 0.02);
    ev_timer_init(&deadline, on_deadline, secs, 0);
    ev_timer_start(d->loop, &poll);
    ev_timer_start(d->loop, &deadline);
    ev_run(d->loop, 0);
    ev_timer_stop(d->loop, &poll);
    ev_timer_stop(d->loop, &deadline);
    return fn(d);
}

static bool has_current(struct drive *d)
{
    ticketkey_t k;
    return ticketkeys_current(d->t, &k) && k.epoch == clock_wall_ms() / PERIOD;
}

static uint64_t target_epoch;
static bool in_target(struct drive *d)
{
    ticketkey_t k;
    return clock_wall_ms() / PERIOD >= target_epoch && ticketkeys_current(d->t, &k) &&
           k.epoch == target_epoch;
}

static const char *gone_key;
static bool key_gone(struct drive *d)
{
    store_entry_t e;
    if (store_get(d->store, gone_key, strlen(gone_key), &e) == 0) {
        store_entry_free(&e);
        return false;
    }
    return true;
}

/* Writes a tlsticket record for epoch with key material `key`, sealed with s. */
static void put_ticket(struct drive *d, uint64_t epoch, const uint8_t key[TLSTICKET_KEY_LEN],
                       const certstore_seal_key_t *s)
{
    tlsticket_rec_t t = {.epoch = epoch, .created_ms = clock_wall_ms()};
    assert_int_equal(tlsticket_seal_key(s, &t, key), 0);
    snprintf(t.created_by, sizeof(t.created_by), "test");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tlsticket_pack(&pk, &t);
    char key_s[64];
    tlsticket_key(epoch, key_s, sizeof(key_s));
    assert_int_equal(
        store_put(d->store, key_s, strlen(key_s), sb.data, sb.size, clock_wall_ms(), NULL), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* A number of the status map (msgpack-c's unpacker: test code, trusted bytes). */
static uint64_t status_u64(const msgpack_sbuffer *sb, const char *name)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb->data, sb->size, NULL), MSGPACK_UNPACK_SUCCESS);
    uint64_t v = UINT64_MAX;
    msgpack_object_map *m = &u.data.via.map;
    for (uint32_t i = 0; i < m->size; i++) {
        msgpack_object_str *k = &m->ptr[i].key.via.str;
        if (k->size == strlen(name) && !memcmp(k->ptr, name, k->size))
            v = m->ptr[i].val.via.u64;
    }
    msgpack_unpacked_destroy(&u);
    assert_int_not_equal(v, UINT64_MAX);
    return v;
}

static void test_driven(void **state)
{
    (void)state;
    struct drive d = {0};
    snprintf(d.dir, sizeof(d.dir), "/tmp/test_ticketkeys-XXXXXX");
    assert_non_null(mkdtemp(d.dir));
    store_opts_t so = {.node_id = 0x1111, .nosync = true};
    assert_int_equal(store_open(d.dir, &so, &d.store), 0);
    d.loop = ev_loop_new(EVFLAG_AUTO);
    storekey_t a, b;
    storekey_generate(&a);
    storekey_generate(&b);
    storeseal_init(&d.seal, &a, NULL);
    storeseal_init(&d.other, &b, NULL);
    char err[256];
    ticketkeys_opts_t o = {.loop = d.loop,
                           .store = d.store,
                           .seal = &d.seal,
                           .node_name = "pop-t",
                           .self_id = 0x1111,
                           .period_ms = PERIOD};
    /* Bad options are refused with a reason. */
    ticketkeys_opts_t bad = o;
    bad.period_ms = 10;
    assert_null(ticketkeys_new(&bad, err, sizeof(err)));
    assert_non_null(strstr(err, "period"));
    d.t = ticketkeys_new(&o, err, sizeof(err));
    assert_non_null(d.t);
    ticketkey_t k, k2;
    assert_false(ticketkeys_current(d.t, &k)); /* nothing before the settle time */

    /* The current key appears (settle is half a period), sealed in the store. */
    assert_true(run_until(&d, has_current, 3 * PERIOD / 1000.0));
    assert_true(ticketkeys_current(d.t, &k));
    char key_s[64];
    tlsticket_key(k.epoch, key_s, sizeof(key_s));
    store_entry_t e;
    assert_int_equal(store_get(d.store, key_s, strlen(key_s), &e), 0);
    tlsticket_rec_t rec;
    const char *why;
    assert_int_equal(tlsticket_parse(e.value, e.vlen, k.epoch, &rec, &why), 0);
    assert_null(memmem(e.value, e.vlen, k.aes, sizeof(k.aes)));
    assert_null(memmem(e.value, e.vlen, k.name, sizeof(k.name)));
    store_entry_free(&e);
    uint8_t plain[TLSTICKET_KEY_LEN];
    assert_int_equal(tlsticket_open_key(&d.seal, &rec, plain, NULL), 0);
    assert_memory_equal(plain, k.name, 16);
    assert_memory_equal(plain + 16, k.aes, 32);
    assert_memory_equal(plain + 48, k.hmac, 32);
    assert_string_equal(rec.created_by, "pop-t");
    bool renew = true;
    assert_true(ticketkeys_find(d.t, k.name, &k2, &renew));
    assert_false(renew);
    assert_memory_equal(&k, &k2, sizeof(k));
    uint8_t unknown[16] = {0};
    assert_false(ticketkeys_find(d.t, unknown, &k2, &renew));

    /* Into the next period: its key was made ahead; the old one still decrypts, renewed. */
    target_epoch = k.epoch + 1;
    assert_true(run_until(&d, in_target, 3 * PERIOD / 1000.0));
    assert_true(ticketkeys_current(d.t, &k2));
    assert_int_equal(k2.epoch, k.epoch + 1);
    assert_memory_not_equal(k2.name, k.name, 16);
    assert_true(ticketkeys_find(d.t, k.name, &k2, &renew));
    assert_true(renew);

    /* A record three periods old: not usable, and deleted by the writer (this PoP). */
    uint64_t cur = clock_wall_ms() / PERIOD;
    uint8_t old[TLSTICKET_KEY_LEN];
    randombytes_buf(old, sizeof(old));
    put_ticket(&d, cur - 3, old, &d.seal);
    assert_false(ticketkeys_find(d.t, old, &k2, &renew)); /* name = the first 16 bytes */
    static char old_key[64];
    tlsticket_key(cur - 3, old_key, sizeof(old_key));
    gone_key = old_key;
    assert_true(run_until(&d, key_gone, 3 * PERIOD / 1000.0)); /* cleanup: once a period */

    /* A record sealed with another mesh's key: skipped and counted. */
    put_ticket(&d, cur + 40, old, &d.other);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ticketkeys_pack_status(d.t, &pk);
    assert_int_equal(status_u64(&sb, "unreadable"), 1);
    assert_true(status_u64(&sb, "written") >= 2);
    assert_true(status_u64(&sb, "deleted") >= 1);
    /* Names in hex, never key bytes. */
    assert_true(ticketkeys_current(d.t, &k));
    assert_null(memmem(sb.data, sb.size, k.aes, 32));
    assert_null(memmem(sb.data, sb.size, k.hmac, 32));
    char hex[33];
    sodium_bin2hex(hex, sizeof(hex), k.name, 16);
    assert_non_null(memmem(sb.data, sb.size, hex, 32));
    msgpack_sbuffer_destroy(&sb);

    ticketkeys_destroy(&d.t);
    assert_null(d.t);
    ticketkeys_destroy(&d.t); /* NULL is fine */
    ev_loop_destroy(d.loop);
    store_close(&d.store);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", d.dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rank_permutation),
        cmocka_unit_test(test_due),
        cmocka_unit_test(test_driven),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
