/* Fuzzes what popd does with control socket bytes before any handler runs: framing, request
 * decoding and argument lookup. */
#include "node/ctl/ctlproto.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *body;
    size_t blen, flen;
    /* As a stream: frames back to back, the way the server consumes its buffer. */
    size_t off = 0;
    while (off < size &&
           ctl_frame_peek(data + off, size - off, CTL_MAX_REQUEST, &body, &blen, &flen) == 1) {
        ctl_request_t req;
        const char *why;
        if (ctl_request_decode(body, blen, &req, &why) == 0 && req.version == CTL_VERSION) {
            const char *s;
            uint32_t sl;
            uint64_t u;
            ctl_arg_str(&req, "key", &s, &sl);
            ctl_arg_uint(&req, "limit", &u);
        }
        off += flen;
    }
    /* As a bare body, and as a response. */
    ctl_request_t req;
    ctl_response_t resp;
    const char *why;
    ctl_request_decode(data, size, &req, &why);
    ctl_response_decode(data, size, &resp, &why);
    return 0;
}
