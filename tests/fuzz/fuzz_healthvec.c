/* Fuzzes the health vector decoder (node/membership/healthvec.h): any bytes either fail
 * cleanly or decode to a vector that is consistent (listeners_up <= listeners) and that
 * re-encodes and decodes to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/membership/healthvec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mpr_t r;
    healthvec_t h, back;
    mpr_init(&r, data, size);
    if (healthvec_decode(&r, &h))
        return 0;
    if (h.detailed && h.listeners_up > h.listeners)
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    h.detailed = true; /* the packer always writes every field */
    if (!(h.listeners_up <= h.listeners)) {
        h.listeners = h.listeners_up = 0;
    }
    healthvec_pack(&pk, &h);
    mpr_init(&r, (const uint8_t *)sb.data, sb.size);
    if (healthvec_decode(&r, &back) || memcmp(&h, &back, sizeof(h)) != 0)
        abort();
    msgpack_sbuffer_destroy(&sb);
    return 0;
}
