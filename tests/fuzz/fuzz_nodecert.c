/* Fuzzes the decoders of the key hierarchy's replicated records (node/records/nodecert.h):
 * nodecert_parse and trustroot_parse take any bytes a nodecert/ or trust/root record can
 * carry, and trustroots_parse the text of root.pub. Nothing crashes or reads out of bounds; a
 * certificate verifies under this harness's fixed root only if it is the seed's own (the
 * fuzzer cannot forge a signature). */
#include "node/records/nodecert.h"

#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static trustroots_t roots;
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        uint8_t seed[32], sk[64];
        memset(seed, 0x42, sizeof(seed));
        crypto_sign_seed_keypair(roots.cur, sk, seed);
        ready = 1;
    }
    nodecert_t c;
    trustroot_rec_t r;
    trustroots_t t;
    const char *why = "";
    char err[200];
    if (nodecert_parse(data, size, &c, &why) == 0)
        (void)nodecert_verify(&c, &roots, CAP_VERIFY, 1800000000000ull, &why);
    if (trustroot_parse(data, size, &r, &why) == 0) {
        trustroots_t copy = roots;
        (void)trustroots_apply(&copy, true, &r, roots.cur, &why);
    }
    (void)trustroots_parse((const char *)data, size, &t, err, sizeof(err));
    return 0;
}
