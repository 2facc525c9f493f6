#include "common/kvfile.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

int kvfile_is(const char *name, size_t nlen, const char *want)
{
    return strlen(want) == nlen && memcmp(name, want, nlen) == 0;
}

int kvfile_parse(const char *text, size_t len, kvfile_fn fn, void *ctx, char *err, size_t errlen)
{
    size_t pos = 0;
    int lineno = 0;
    if (memchr(text, '\0', len)) {
        snprintf(err, errlen, "file contains a NUL byte");
        return -EINVAL;
    }
    while (pos < len) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        lineno++;
        if (ll > KVFILE_MAX_LINE) {
            snprintf(err, errlen, "line %d: longer than %d bytes", lineno, KVFILE_MAX_LINE);
            return -EINVAL;
        }
        while (ll && is_space(line[0]))
            line++, ll--;
        while (ll && is_space(line[ll - 1]))
            ll--;
        if (ll == 0 || line[0] == '#')
            continue;
        const char *eq = memchr(line, '=', ll);
        if (!eq) {
            snprintf(err, errlen, "line %d: expected 'name = value'", lineno);
            return -EINVAL;
        }
        size_t nlen = (size_t)(eq - line);
        while (nlen && is_space(line[nlen - 1]))
            nlen--;
        if (nlen == 0) {
            snprintf(err, errlen, "line %d: empty name before '='", lineno);
            return -EINVAL;
        }
        const char *v = eq + 1;
        size_t vlen = ll - (size_t)(v - line);
        while (vlen && is_space(*v))
            v++, vlen--;
        char why[256] = "invalid value";
        int rc = fn(line, nlen, v, vlen, ctx, why, sizeof(why));
        if (rc) {
            snprintf(err, errlen, "line %d: %s", lineno, why);
            return rc;
        }
    }
    return 0;
}
