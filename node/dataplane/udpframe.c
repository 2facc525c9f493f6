/* udpframe: see udpframe.h. */
#include "node/dataplane/udpframe.h"

#include "common/xmalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int udpframe_feed(udpframe_rx_t *rx, const uint8_t *d, size_t n, udpframe_fn fn, void *ctx)
{
    while (n) {
        if (rx->nhdr < UDPFRAME_HDR) {
            rx->hdr[rx->nhdr++] = *d++;
            n--;
            if (rx->nhdr < UDPFRAME_HDR)
                continue;
            rx->need = (uint32_t)rx->hdr[0] << 8 | rx->hdr[1];
            rx->have = 0;
            if (rx->need > UDPFRAME_PAYLOAD_MAX)
                return -EMSGSIZE;
            if (rx->need == 0) { /* an empty datagram is a datagram */
                fn(ctx, d, 0);
                rx->nhdr = 0;
            }
            continue; /* the payload, if any byte of it came: the loop checks n */
        }
        size_t want = rx->need - rx->have;
        if (!rx->have && n >= want) { /* whole in this delivery: no copy */
            fn(ctx, d, want);
        } else {
            size_t take = n < want ? n : want;
            if (!rx->buf)
                rx->buf = xmalloc(rx->need);
            memcpy(rx->buf + rx->have, d, take);
            rx->have += (uint32_t)take;
            d += take;
            n -= take;
            if (rx->have < rx->need)
                return 0;
            fn(ctx, rx->buf, rx->need);
            free(rx->buf);
            rx->buf = NULL;
            rx->nhdr = 0;
            rx->have = 0;
            continue;
        }
        d += want;
        n -= want;
        rx->nhdr = 0;
    }
    return 0;
}

void udpframe_rx_free(udpframe_rx_t *rx)
{
    free(rx->buf);
    memset(rx, 0, sizeof(*rx));
}

int udpframe_txq_push(udpframe_txq_t *q, const uint8_t *payload, size_t len)
{
    if (len > UDPFRAME_PAYLOAD_MAX)
        return -EMSGSIZE;
    if (q->len - q->off + UDPFRAME_HDR + len > q->cap)
        return -ENOBUFS;
    if (q->off && q->off == q->len)
        q->off = q->len = 0;
    if (q->len + UDPFRAME_HDR + len > q->alloc) {
        if (q->off) { /* move what is left to the front before growing */
            memmove(q->buf, q->buf + q->off, q->len - q->off);
            q->len -= q->off;
            q->off = 0;
        }
        if (q->len + UDPFRAME_HDR + len > q->alloc) {
            size_t a = q->alloc ? q->alloc : 4096;
            while (a < q->len + UDPFRAME_HDR + len)
                a *= 2;
            q->buf = xrealloc(q->buf, a);
            q->alloc = a;
        }
    }
    q->buf[q->len] = (uint8_t)(len >> 8);
    q->buf[q->len + 1] = (uint8_t)len;
    if (len)
        memcpy(q->buf + q->len + UDPFRAME_HDR, payload, len);
    q->len += UDPFRAME_HDR + len;
    return 0;
}

void udpframe_txq_sent(udpframe_txq_t *q, size_t n)
{
    q->off += n;
    if (q->off == q->len) {
        q->off = q->len = 0;
        if (q->alloc > 65536) { /* an idle flow gives back a large buffer */
            free(q->buf);
            q->buf = NULL;
            q->alloc = 0;
        }
    }
}

void udpframe_txq_free(udpframe_txq_t *q)
{
    free(q->buf);
    q->buf = NULL;
    q->off = q->len = q->alloc = 0;
}
