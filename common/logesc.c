#include "common/logesc.h"

#include <stdbool.h>
#include <string.h>

const char *log_esc(char *out, size_t cap, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, whole = 0;

    if (cap < 8) {
        if (cap)
            out[0] = '\0';
        return out;
    }
    for (size_t i = 0; s && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        whole += c >= 0x20 && c < 0x7f && c != '\\' ? 1 : 4;
    }
    bool cut = whole >= cap;
    size_t room = cut ? cap - 4 : cap - 1; /* "..." and the NUL, or the NUL */
    for (size_t i = 0; s && i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '\\';
        if (o + (plain ? 1 : 4) > room)
            break;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (cut) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

const char *log_escs(char *out, size_t cap, const char *s)
{
    return log_esc(out, cap, s, s ? strlen(s) : 0);
}
