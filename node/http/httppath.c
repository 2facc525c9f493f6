/* httppath: see httppath.h.
 *
 * Two passes over out: the first decodes the path into it (escapes that must stay escaped are
 * copied, upper-cased), the second resolves the segments in place. In place works because
 * the second pass writes '/' + segment only after skipping at least one '/' of input, so its
 * write position never passes its read position. */
#include "node/http/httppath.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

int httppath_hexval(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Decodes the path part of target into out; its length, or -EINVAL / -ENOSPC. */
static ssize_t decode(const char *t, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t d = 0;
    for (size_t i = 0; i < n && t[i] != '?' && t[i] != '#'; i++) {
        int c = (unsigned char)t[i];
        if (c == '\0')
            return -EINVAL;
        if (c == '%') {
            if (n - i < 3)
                return -EINVAL;
            int h = httppath_hexval(t[i + 1]), l = httppath_hexval(t[i + 2]);
            if (h < 0 || l < 0)
                return -EINVAL;
            c = h * 16 + l;
            i += 2;
            if (c == 0)
                return -EINVAL;
            if (c == '%' || c == '?' || c == '#') {
                if (cap - d < 4) /* three bytes and the NUL */
                    return -ENOSPC;
                out[d++] = '%';
                out[d++] = hex[h];
                out[d++] = hex[l];
                continue;
            }
        }
        if (cap - d < 2)
            return -ENOSPC;
        out[d++] = (char)c;
    }
    return (ssize_t)d;
}

ssize_t httppath_normalize(const char *target, size_t n, char *out, size_t cap)
{
    if (!n || target[0] != '/' || cap < 2)
        return n && target[0] == '/' ? -ENOSPC : -EINVAL;
    ssize_t dl = decode(target, n, out, cap);
    if (dl < 0)
        return dl;
    size_t d = (size_t)dl;
    bool trailing = out[d - 1] == '/';
    size_t o = 0, i = 0;
    while (i < d) {
        while (i < d && out[i] == '/')
            i++;
        size_t start = i;
        while (i < d && out[i] != '/')
            i++;
        size_t sl = i - start;
        if (sl == 0 || (sl == 1 && out[start] == '.'))
            continue;
        if (sl == 2 && out[start] == '.' && out[start + 1] == '.') {
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the slash before the dropped segment */
            continue;
        }
        out[o++] = '/';
        memmove(out + o, out + start, sl);
        o += sl;
    }
    /* "/" itself, and a trailing slash, are kept. The input had a slash there, so it fits. */
    if (o == 0 || trailing)
        out[o++] = '/';
    out[o] = '\0';
    return (ssize_t)o;
}
