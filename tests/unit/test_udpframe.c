/* udpframe: datagrams framed as [u16 length][payload] in a stream, read back in any cut;
 * lengths over the payload limit refused; the send queue bounded by its cap. */
#include "node/dataplane/udpframe.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

struct got {
    size_t n;
    size_t len[64];
    uint8_t first[64];
};

static void collect(void *ctx, const uint8_t *p, size_t len)
{
    struct got *g = ctx;
    assert_true(g->n < 64);
    g->len[g->n] = len;
    g->first[g->n] = len ? p[0] : 0;
    /* every byte of datagram i is (i + 1): checks nothing was mixed across boundaries */
    for (size_t i = 0; i < len; i++)
        assert_int_equal(p[i], p[0]);
    g->n++;
}

/* Datagrams of these sizes, framed by the queue, fed back in every cut size. */
static void test_roundtrip_any_cut(void **state)
{
    (void)state;
    const size_t sizes[] = {0, 1, 2, 100, 1200, 0, 65507, 3};
    const size_t n = sizeof(sizes) / sizeof(sizes[0]);
    udpframe_txq_t q = {.cap = 1 << 20};
    uint8_t *buf = malloc(65507);
    for (size_t i = 0; i < n; i++) {
        memset(buf, (int)(i + 1), sizes[i]);
        assert_int_equal(udpframe_txq_push(&q, buf, sizes[i]), 0);
    }
    size_t wire_len;
    const uint8_t *wire = udpframe_txq_data(&q, &wire_len);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += UDPFRAME_HDR + sizes[i];
    assert_int_equal(wire_len, total);
    const size_t cuts[] = {1, 2, 3, 7, 1000, 65536, 1 << 20};
    for (size_t c = 0; c < sizeof(cuts) / sizeof(cuts[0]); c++) {
        udpframe_rx_t rx = {0};
        struct got g = {0};
        for (size_t off = 0; off < wire_len; off += cuts[c]) {
            size_t k = wire_len - off < cuts[c] ? wire_len - off : cuts[c];
            assert_int_equal(udpframe_feed(&rx, wire + off, k, collect, &g), 0);
        }
        assert_int_equal(g.n, n);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(g.len[i], sizes[i]);
            if (sizes[i])
                assert_int_equal(g.first[i], i + 1);
        }
        assert_null(rx.buf); /* nothing held between datagrams */
        udpframe_rx_free(&rx);
    }
    udpframe_txq_free(&q);
    free(buf);
}

static void test_oversize_refused(void **state)
{
    (void)state;
    /* 65508 = 0xffe4: one byte over the limit; the reader is spent, not fooled */
    const uint8_t bad[] = {0xff, 0xe4, 1, 2, 3};
    udpframe_rx_t rx = {0};
    struct got g = {0};
    assert_int_equal(udpframe_feed(&rx, bad, sizeof(bad), collect, &g), -EMSGSIZE);
    assert_int_equal(g.n, 0);
    udpframe_rx_free(&rx);
    const uint8_t max[] = {0xff, 0xff};
    assert_int_equal(udpframe_feed(&rx, max, 2, collect, &g), -EMSGSIZE);
    udpframe_rx_free(&rx);
    udpframe_txq_t q = {.cap = 1 << 20};
    static uint8_t big[65508];
    assert_int_equal(udpframe_txq_push(&q, big, sizeof(big)), -EMSGSIZE);
    assert_int_equal(udpframe_txq_push(&q, big, sizeof(big) - 1), 0);
    udpframe_txq_free(&q);
}

/* The queue holds at most cap bytes, headers included; what was sent makes room again. */
static void test_queue_cap(void **state)
{
    (void)state;
    udpframe_txq_t q = {.cap = 1000};
    uint8_t d[498] = {0};
    assert_int_equal(udpframe_txq_push(&q, d, 498), 0); /* 500 */
    assert_int_equal(udpframe_txq_push(&q, d, 498), 0); /* 1000 */
    assert_int_equal(udpframe_txq_push(&q, d, 0), -ENOBUFS);
    size_t n;
    udpframe_txq_data(&q, &n);
    assert_int_equal(n, 1000);
    udpframe_txq_sent(&q, 300); /* a partial send keeps the rest in order */
    udpframe_txq_data(&q, &n);
    assert_int_equal(n, 700);
    assert_int_equal(udpframe_txq_push(&q, d, 298), 0); /* 1000 again */
    assert_int_equal(udpframe_txq_push(&q, d, 1), -ENOBUFS);
    const uint8_t *p = udpframe_txq_data(&q, &n);
    assert_int_equal(n, 1000);
    /* the first whole frame left is the second push: after 200 more bytes of the first */
    assert_int_equal(p[200], 498 >> 8);
    assert_int_equal(p[201], 498 & 0xff);
    udpframe_txq_sent(&q, n);
    udpframe_txq_data(&q, &n);
    assert_int_equal(n, 0);
    udpframe_txq_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_any_cut),
        cmocka_unit_test(test_oversize_refused),
        cmocka_unit_test(test_queue_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
