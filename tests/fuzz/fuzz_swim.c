/* Fuzzes the SWIM receive path: arbitrary bytes go to swim_receive of a core that knows a few
 * members (one of them a seed, one suspect), from a known member and from a stranger, and the
 * core then runs its timers, so whatever a hostile message managed to change is exercised by
 * probing, suspicion expiry, dead probes and push-pull too. The corpus (one valid message of
 * each type, written by tests/unit/test_swim.c with SWIM_CORPUS_DIR set) seeds the mutations. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gossip/swim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
    size_t bytes;
    uint64_t last_dest; /* the member last sent to: likely the probe target */
};

static void fz_send(void *ctx, uint64_t dest, const uint8_t *msg, size_t len)
{
    struct sink *s = ctx;
    s->last_dest = dest;
    /* Touch every byte: ASan checks the buffer handed to the driver is all valid. */
    for (size_t i = 0; i < len; i++)
        s->bytes += msg[i];
}

static bool fz_deliver(void *ctx, uint64_t key, const uint8_t *payload, size_t len)
{
    struct sink *s = ctx;
    for (size_t i = 0; i < len; i++)
        s->bytes += payload[i];
    return (key & 1) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sink sink = {0};
    swim_config_t c;
    swim_config_defaults(&c);
    c.self_id = 1;
    c.rng_seed = 7;
    swim_io_t io = {.ctx = &sink, .send = fz_send, .deliver = fz_deliver};
    swim_t *s = swim_new(&c, &io, (const uint8_t *)"self", 4, 1000);
    if (!s)
        abort();
    for (uint64_t id = 2; id <= 5; id++)
        swim_add_member(s, id, (const uint8_t *)"m", 1, id == 2, 1000);
    /* A wall clock, so probes carry timestamps and an ACK's feed the offset estimate. */
    const uint64_t wall0 = 1767225600000ull;
    swim_set_wall_ms(s, wall0 + 1000);
    swim_tick(s, 1000);
    uint64_t probed = sink.last_dest;
    swim_set_wall_ms(s, wall0 + 1010);
    swim_receive(s, 3, data, size, 1010);
    swim_receive(s, 99, data, size, 1020); /* from a member we do not know */
    /* From the member just probed: an ACK with the right seq is a clock sample. */
    if (probed && probed != 3)
        swim_receive(s, probed, data, size, 1021);
    uint64_t now = 1021;
    for (int i = 0; i < 40; i++) {
        uint64_t next = swim_next_deadline(s);
        now = next > now ? next : now + 1;
        swim_set_wall_ms(s, wall0 + now);
        swim_tick(s, now);
    }
    int64_t off;
    unsigned peers;
    swim_clock_offset(s, &off, &peers);
    swim_stats_t st;
    swim_get_stats(s, &st);
    swim_destroy(&s);
    if (st.malformed > 3) /* only the three receives above can be malformed */
        abort();
    return 0;
}
