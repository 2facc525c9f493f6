/* Fuzzes the bounded msgpack reader: validation, skipping and typed reads of any bytes. */
#include "common/mp.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)mp_valid_object(data, size);
    mpr_t r;
    mpr_init(&r, data, size);
    /* Walk with typed reads chosen by peek, so every reader sees hostile input. */
    for (int i = 0; i < 64 && r.left && !r.err; i++) {
        uint32_t n;
        uint64_t u;
        int64_t s;
        double d;
        bool b;
        const char *str;
        const uint8_t *bin;
        switch (mpr_peek(&r)) {
        case MP_ARRAY:
            mpr_array(&r, &n);
            break;
        case MP_MAP:
            mpr_map(&r, &n);
            break;
        case MP_UINT:
            mpr_uint(&r, &u);
            break;
        case MP_INT:
            mpr_int(&r, &s);
            break;
        case MP_FLOAT:
            mpr_double(&r, &d);
            break;
        case MP_BOOL:
            mpr_bool(&r, &b);
            break;
        case MP_STR:
            mpr_str(&r, &str, &n);
            break;
        case MP_BIN:
            mpr_bin(&r, &bin, &n);
            break;
        default:
            mpr_skip(&r);
            break;
        }
    }
    return 0;
}
