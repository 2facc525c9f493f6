/* Fuzzes node/dataplane/udpframe.h's reader, which reads a UDP flow's stream from the other
 * end of the mesh (a site, or the PoP). The input is cut into deliveries by its first byte;
 * every datagram reported must fit the payload limit, and the reported lengths with their
 * headers must add up to the bytes consumed (nothing invented, nothing skipped). A refusal
 * (-EMSGSIZE) must come from a length over the limit. Seeds: tests/fuzz/corpus/fuzz_udpframe. */
#include "node/dataplane/udpframe.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t total;

static void count(void *ctx, const uint8_t *p, size_t len)
{
    (void)ctx;
    if (len > UDPFRAME_PAYLOAD_MAX || (len && !p))
        abort();
    for (size_t i = 0; i < len; i++) /* reads every byte: ASan sees an overread */
        total += p[i] & 0;
    total += UDPFRAME_HDR + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cut = (size_t)data[0] + 1;
    data++;
    size--;
    udpframe_rx_t rx = {0};
    total = 0;
    size_t fed = 0;
    int rc = 0;
    while (fed < size && rc == 0) {
        size_t k = size - fed < cut ? size - fed : cut;
        rc = udpframe_feed(&rx, data + fed, k, count, NULL);
        fed += k;
    }
    if (rc == 0) {
        /* what is still held is the start of the next datagram */
        size_t held = rx.nhdr + rx.have;
        if (total + held != size)
            abort();
    } else if (rc != -EMSGSIZE) {
        abort();
    }
    udpframe_rx_free(&rx);
    return 0;
}
