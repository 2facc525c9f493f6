/* Fuzzes the canonical request path (node/http/httppath.h) that routing and access rules
 * compare. Beyond "no crash, no out-of-bounds read", it checks the invariants the rules rely
 * on: a path that is accepted
 *  - is never longer than the input, and starts with '/';
 *  - holds no "//", "/./", "/../" and no NUL, and does not end in "/." or "/..";
 *  - is its own normal form: normalising it again gives the same bytes (a second decode
 *    cannot give it another meaning);
 *  - comes out the same in a buffer just one byte longer than the input.
 * Input: the request target, as received. */
#include "node/http/httppath.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char out[4097], again[4097];
    ssize_t n = httppath_normalize((const char *)data, size, out, sizeof(out));
    if (n < 0)
        return 0;
    if ((size_t)n > size || (size_t)n != strlen(out) || out[0] != '/')
        abort();
    if (strstr(out, "//") || strstr(out, "/./") || strstr(out, "/../") ||
        ends_with(out, (size_t)n, "/.") || ends_with(out, (size_t)n, "/.."))
        abort();
    ssize_t m = httppath_normalize(out, (size_t)n, again, sizeof(again));
    if (m != n || memcmp(out, again, (size_t)n + 1))
        abort();
    /* A buffer one byte longer than the input is always enough (httppath.h). */
    char *fit = malloc(size + 1);
    if (!fit || httppath_normalize((const char *)data, size, fit, size + 1) != n ||
        memcmp(fit, out, (size_t)n + 1))
        abort();
    free(fit);
    return 0;
}
