/* Fuzzes the decoder of on-disk store records (storage/record.h): any bytes read back from
 * disk must decode or be refused, never crash or read out of bounds. A record that decodes
 * must also re-encode to exactly the same bytes when it was in canonical form, and its value
 * must be one valid msgpack object within the limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/mp.h"
#include "storage/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    store_record_t rec;
    const char *why = NULL;
    if (store_record_decode(data, size, &rec, &why) != 0) {
        if (!why)
            abort(); /* every refusal names its reason */
        return 0;
    }
    if (rec.origin == 0)
        abort();
    if (rec.tombstone) {
        if (rec.value || rec.vlen)
            abort();
    } else {
        if (rec.vlen > STORE_VALUE_MAX || !mp_valid_object(rec.value, rec.vlen))
            abort();
        if (rec.value < data || rec.value + rec.vlen > data + size)
            abort(); /* the value is borrowed from the input, inside it */
    }
    /* Round trip: encoding the decoded record decodes to the same fields. */
    static uint8_t buf[STORE_RECORD_MAX];
    size_t n = store_record_encode(&rec, buf, sizeof(buf));
    if (n == 0)
        abort();
    store_record_t again;
    if (store_record_decode(buf, n, &again, NULL) != 0 || again.version != rec.version ||
        again.origin != rec.origin || again.tombstone != rec.tombstone || again.vlen != rec.vlen ||
        (rec.vlen && memcmp(again.value, rec.value, rec.vlen) != 0))
        abort();
    /* A record too big for the buffer is refused, not truncated. */
    if (store_record_encode(&rec, buf, n - 1) != 0)
        abort();
    return 0;
}
