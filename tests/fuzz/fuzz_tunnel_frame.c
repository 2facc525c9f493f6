/* Fuzzes the tunnel receive path: arbitrary bytes go to tun_receive, as one frame, of an
 * acceptor-side core that already has streams in every state (open with data held, open with
 * credit, pending, opening), twice (so a frame that changed state meets its own aftermath:
 * duplicate OPEN, second FIN, DATA past a now-smaller window); between and after, the
 * application consumes, sends and half-closes on every stream and time runs past the open
 * timeout and the heartbeat deadline. The core's invariants (tun_check: credit accounting,
 * table, timer list) must hold after every step. The corpus (one valid frame of each type,
 * written by tests/unit/test_tunnel.c with TUN_CORPUS_DIR set) names these streams: 1, 3 open
 * (peer-opened), 5 pending, 2 open and 4 opening (ours); 7 is sealed end to end (tun_seal END:
 * its DATA is opened in place, and fails) and 11 carries sealed records (PASS). The input goes
 * in once as an ordinary frame and once as a raw one (tun_receive_raw: a SPLIT record's), each
 * from a writable copy, since a sealed stream's record is opened in place. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "tunnel/tunnel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
    tun_t *t;
    uint64_t bytes;
};

static void fz_send(void *ctx, const uint8_t *head, size_t head_len, const uint8_t *body,
                    size_t body_len)
{
    struct sink *s = ctx;
    /* Touch every byte: ASan checks what the core hands the driver. */
    for (size_t i = 0; i < head_len; i++)
        s->bytes += head[i];
    for (size_t i = 0; i < body_len; i++)
        s->bytes += body[i];
    if (head_len == 0 || head_len > TUN_HEAD_MAX || body_len > TUN_DATA_MAX)
        abort();
}

static void fz_open(void *ctx, uint64_t sid, const uint8_t *target, size_t len)
{
    struct sink *s = ctx;
    for (size_t i = 0; i < len; i++)
        s->bytes += target[i];
    if (sid == 5)
        return; /* stays pending */
    if (sid == 7 || sid == 11) {
        seal_keys_t k = {.suite = SEAL_SUITE_CHACHA20POLY1305};
        memset(k.rx, 7, sizeof(k.rx));
        memset(k.tx, 8, sizeof(k.tx));
        if (tun_seal(s->t, sid, sid == 7 ? TUN_SEAL_END : TUN_SEAL_PASS, &k))
            abort();
    }
    if (sid % 3 == 0 && sid > 3)
        tun_reject(s->t, sid, TUN_ERR_UNREACHABLE, "no route");
    else
        tun_accept(s->t, sid);
}

static void fz_data(void *ctx, uint64_t sid, void *user, const uint8_t *data, size_t len)
{
    struct sink *s = ctx;
    for (size_t i = 0; i < len; i++)
        s->bytes += data[i];
    if (sid == 1) /* one stream consumes at once, the others hold */
        tun_consumed(s->t, sid, len);
}

static void fz_fin(void *ctx, uint64_t sid, void *user)
{
    struct sink *s = ctx;
    tun_fin(s->t, sid); /* answer a half-close with ours: exercises close inside receive */
}

static void fz_reset(void *ctx, uint64_t sid, void *user, uint32_t code, bool remote,
                     const char *msg, size_t msg_len)
{
    struct sink *s = ctx;
    for (size_t i = 0; i < msg_len; i++)
        s->bytes += (uint8_t)msg[i];
}

static void check(const tun_t *t)
{
    if (tun_check(t) != 0)
        abort();
}

static void feed_as(tun_t *t, const tun_frame_t *f, uint64_t now, bool raw)
{
    uint8_t buf[TUN_FRAME_MAX];
    size_t n = tun_frame_encode(f, buf);
    if (n == 0)
        abort();
    if (f->type == TUN_DATA) {
        memcpy(buf + n, f->data, f->len);
        n += f->len;
    }
    if (raw)
        tun_receive_raw(t, buf, n, now);
    else
        tun_receive(t, buf, n, now);
}

static void feed(tun_t *t, const tun_frame_t *f, uint64_t now)
{
    feed_as(t, f, now, false);
}

/* Consume what is held, send, and sometimes half-close, on every stream id in use. */
static void app_round(tun_t *t, int round)
{
    static const uint8_t payload[700];
    for (uint64_t sid = 1; sid <= 12; sid++) {
        tun_stream_info_t si;
        if (tun_stream_get(t, sid, &si) != 0)
            continue;
        if (si.unconsumed)
            tun_consumed(t, sid, si.unconsumed / (round + 1) + 1);
        tun_send(t, sid, payload, sizeof(payload));
        if (round == 1 && sid == 2)
            tun_fin(t, sid);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool quiet;
    if (!quiet) {
        log_init("fuzz_tunnel_frame", LOG_ERROR + 1); /* the core logs resets at debug */
        quiet = true;
    }
    struct sink sink = {0};
    tun_config_t c;
    tun_config_defaults(&c);
    c.window_auto_max = 1u << 20; /* the auto-tuning grant path too */
    c.role = TUN_ACCEPTOR;
    c.window = 8192;
    c.max_window = 1 << 20;
    c.max_streams = 8;
    c.open_timeout_ms = 500;
    tun_io_t io = {
        .ctx = &sink,
        .send = fz_send,
        .send_raw = fz_send,
        .on_open = fz_open,
        .on_data = fz_data,
        .on_fin = fz_fin,
        .on_reset = fz_reset,
    };
    tun_t *t = tun_new(&c, &io, 1000);
    if (!t)
        abort();
    sink.t = t;
    static const uint8_t bytes[100] = {1};
    tun_frame_t setup[] = {
        {.type = TUN_OPEN, .sid = 1, .window = 65536, .data = bytes, .len = 4},
        {.type = TUN_OPEN, .sid = 3, .window = 65536, .data = bytes, .len = 4},
        {.type = TUN_DATA, .sid = 3, .data = bytes, .len = sizeof(bytes)},
        {.type = TUN_OPEN, .sid = 5, .window = 1000, .data = bytes, .len = 4},
        {.type = TUN_OPEN, .sid = 7, .window = 65536, .data = bytes, .len = 4},
        {.type = TUN_OPEN, .sid = 11, .window = 65536, .data = bytes, .len = 4},
    };
    for (size_t i = 0; i < sizeof(setup) / sizeof(setup[0]); i++)
        feed(t, &setup[i], 1000);
    uint64_t sid;
    if (tun_open(t, bytes, 8, NULL, 1000, &sid) || sid != 2)
        abort();
    tun_frame_t ok = {.type = TUN_OPEN_OK, .sid = 2, .window = 4096};
    feed(t, &ok, 1000);
    if (tun_open(t, bytes, 8, NULL, 1000, &sid) || sid != 4)
        abort();
    /* One genuine record on the sealed stream (the peer's keys mirror fz_open's), held. */
    seal_keys_t pk = {.suite = SEAL_SUITE_CHACHA20POLY1305};
    memset(pk.tx, 7, sizeof(pk.tx));
    memset(pk.rx, 8, sizeof(pk.rx));
    seal_state_t *peer = seal_state_new(&pk);
    uint8_t rec[sizeof(bytes) + SEAL_TAG_LEN];
    if (!peer || seal_record(peer, bytes, sizeof(bytes), rec))
        abort();
    seal_state_free(&peer);
    tun_frame_t sealed = {.type = TUN_DATA, .sid = 7, .data = rec, .len = sizeof(rec)};
    feed_as(t, &sealed, 1000, true);
    tun_frame_t passed = {.type = TUN_DATA, .sid = 11, .data = rec, .len = sizeof(rec)};
    feed_as(t, &passed, 1000, true);
    tun_tick(t, 1000);
    check(t);

    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    if (size)
        memcpy(copy, data, size);
    tun_receive(t, copy, size, 1010);
    check(t);
    app_round(t, 0);
    check(t);
    if (size)
        memcpy(copy, data, size);
    tun_receive_raw(t, copy, size, 1020);
    free(copy);
    check(t);
    app_round(t, 1);
    check(t);
    /* Time: open timeouts (1500), heartbeat death (2020). */
    for (uint64_t now = 1100; now <= 2100; now += 100) {
        tun_tick(t, now);
        check(t);
        app_round(t, 2);
        check(t);
    }
    if (!tun_is_dead(t)) /* nothing arrived after 1020: it must be dead by 2020 */
        abort();
    tun_destroy(&t);
    return 0;
}
