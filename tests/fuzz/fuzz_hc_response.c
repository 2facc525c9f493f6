/* Fuzzes the HTTP health-check response parser (node/site/healthcheck.h, hc_parse_response): any
 * bytes a target sends must be answered COMPLETE, NEED_MORE or BAD, never crash or read out of
 * bounds. Beyond that it checks the promises the socket path relies on:
 *  - COMPLETE gives a status 0..999 that is never a 1xx interim code (101 is final);
 *  - the answer is stable under more input: a prefix that is COMPLETE or BAD stays so, with the
 *    same status, whatever follows it (the socket path reads the response in pieces);
 *  - nothing past HC_RESPONSE_MAX is looked at. */
#include "node/site/healthcheck.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_status(enum hc_parse r, int status)
{
    if (r != HC_PARSE_COMPLETE)
        return;
    if (status < 0 || status > 999 || (status >= 100 && status <= 199 && status != 101))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int status = -1, pstatus = -1;
    enum hc_parse full = hc_parse_response(data, size, &status);

    if (full != HC_PARSE_BAD && full != HC_PARSE_NEED_MORE && full != HC_PARSE_COMPLETE)
        abort();
    check_status(full, status);
    if (size > HC_RESPONSE_MAX && full == HC_PARSE_NEED_MORE)
        abort(); /* past the cap the answer is final */

    /* A prefix chosen from the input itself, so the fuzzer steers where the split falls. */
    size_t split = size ? (size_t)data[0] * 257 % (size + 1) : 0;
    enum hc_parse part = hc_parse_response(data, split, &pstatus);
    check_status(part, pstatus);
    if (part == HC_PARSE_COMPLETE && (full != HC_PARSE_COMPLETE || pstatus != status))
        abort();
    if (part == HC_PARSE_BAD && full != HC_PARSE_BAD)
        abort();
    if (full == HC_PARSE_NEED_MORE && part != HC_PARSE_NEED_MORE)
        abort();

    /* Bytes past the cap are never looked at. */
    if (size > HC_RESPONSE_MAX) {
        int cstatus = -1;
        enum hc_parse capped = hc_parse_response(data, HC_RESPONSE_MAX, &cstatus);
        if (capped != full || (full == HC_PARSE_COMPLETE && cstatus != status))
            abort();
    }
    return 0;
}
