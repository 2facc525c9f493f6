/* Fuzzes the bootstrap token decoder (node/records/token.h): any text must decode or be refused
 * with a reason, never crash or read out of bounds. Past the signature check only valid tokens go,
 * so the fuzzer mostly explores the layers before it (prefix, base64url, payload framing); a token
 * that does decode must satisfy every limit the header promises. */
#include "node/records/token.h"

#include <errno.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_role(enum node_role r)
{
    return r == ROLE_POP || r == ROLE_SITE;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        ready = 1;
    }
    token_t t;
    const char *why = NULL;
    int rc = token_decode((const char *)data, size, &t, &why);
    if (rc != 0) {
        if (rc != -EINVAL || !why)
            abort(); /* every refusal is -EINVAL and names its reason */
        return 0;
    }
    if (!valid_role(t.role) || t.nseeds == 0 || t.nseeds > TOKEN_MAX_SEEDS)
        abort();
    for (unsigned i = 0; i < t.nseeds; i++) {
        size_t al = strnlen(t.seeds[i].addr, sizeof(t.seeds[i].addr));
        if (al == 0 || al > TOKEN_ADDR_MAX)
            abort();
    }
    token_public_t pub;
    token_public(&t, &pub);
    if (pub.id != token_id_of(pub.join_pk))
        abort();
    return 0;
}
