/* Fuzzes what the admin listener decodes from a client before anything is believed
 * (node/admin/adminweb.h): the sign-in form, the Authorization header, and the HTML escaper
 * that every echoed name goes through. Beyond "no crash, no out-of-bounds access" it checks:
 *  - a decoded form value is NUL-terminated inside its buffer and holds no NUL, in every
 *    buffer size from 0 to a little more than the input;
 *  - a bearer token holds only visible ASCII and is the header's tail;
 *  - escaped HTML holds none of < > " ' and no & but an entity's, and fits its buffer.
 * Input: the bytes of a form body (also read as an Authorization value and as a name). */
#include "node/admin/adminweb.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    const char *s = (const char *)data;
    char out[4200];
    static const char *const names[] = {"username", "password", "a", ""};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        for (size_t cap = 0; cap <= size + 2 && cap <= sizeof(out); cap += cap < 8 ? 1 : 97) {
            memset(out, 'Q', sizeof(out));
            if (adminweb_form_get(s, size, names[k], out, cap)) {
                size_t n = strnlen(out, cap);
                if (n >= cap || n > size)
                    abort();
            }
        }
    }
    if (adminweb_bearer(s, size, out, sizeof(out))) {
        size_t n = strlen(out);
        if (n + strlen(ADMINWEB_BEARER) != size || memcmp(out, s + size - n, n))
            abort();
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)out[i] <= ' ' || (unsigned char)out[i] >= 0x7f)
                abort();
    }
    char z[4097];
    memcpy(z, data, size);
    z[size] = '\0';
    for (size_t cap = 1; cap < 64 && cap <= sizeof(out); cap++) {
        adminweb_html_escape(z, out, cap);
        if (strnlen(out, cap) >= cap)
            abort();
    }
    adminweb_html_escape(z, out, sizeof(out));
    for (const char *p = out; *p; p++) {
        if (*p == '<' || *p == '>' || *p == '"' || *p == '\'')
            abort();
        if (*p == '&' && strncmp(p, "&lt;", 4) && strncmp(p, "&gt;", 4) && strncmp(p, "&amp;", 5) &&
            strncmp(p, "&quot;", 6) && strncmp(p, "&#39;", 5))
            abort();
    }
    return 0;
}
