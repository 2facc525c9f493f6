/* geoloc: see geoloc.h. Parsed by hand rather than with strtod, which follows the locale,
 * takes hex floats, exponents, "inf" and "nan": two nodes must read one setting one way. */
#include "common/geoloc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static const char *skip_spaces(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

/* One coordinate at *pp into microdegrees, rounded half away from zero; advances *pp. */
static int parse_coord(const char **pp, int64_t *udeg)
{
    const char *p = skip_spaces(*pp);
    bool neg = false;
    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    int64_t whole = 0;
    int nd = 0;
    for (; *p >= '0' && *p <= '9'; p++, nd++) {
        if (nd == 3)
            return -EINVAL;
        whole = whole * 10 + (*p - '0');
    }
    if (nd == 0)
        return -EINVAL;
    int64_t frac = 0; /* the first 6 decimals */
    bool round_up = false;
    if (*p == '.') {
        p++;
        int nf = 0;
        for (; *p >= '0' && *p <= '9'; p++, nf++) {
            if (nf == 15)
                return -EINVAL;
            if (nf < 6)
                frac = frac * 10 + (*p - '0');
            else if (nf == 6)
                round_up = *p >= '5';
        }
        if (nf == 0)
            return -EINVAL;
        for (int i = nf; i < 6; i++)
            frac *= 10;
    }
    int64_t v = whole * 1000000 + frac + (round_up ? 1 : 0);
    *udeg = neg ? -v : v;
    *pp = skip_spaces(p);
    return 0;
}

int geoloc_parse(const char *text, int64_t *lat_udeg, int64_t *lon_udeg)
{
    int64_t a, b;
    const char *p = text;
    if (strnlen(text, 128) >= 128)
        return -EINVAL;
    if (parse_coord(&p, &a) || *p++ != ',' || parse_coord(&p, &b) || *p != '\0')
        return -EINVAL;
    if (a < -GEOLOC_LAT_MAX || a > GEOLOC_LAT_MAX || b < -GEOLOC_LON_MAX || b > GEOLOC_LON_MAX)
        return -EINVAL;
    *lat_udeg = a;
    *lon_udeg = b;
    return 0;
}

static int format_coord(char *out, size_t len, int64_t u)
{
    uint64_t m = u < 0 ? (uint64_t)(-u) : (uint64_t)u;
    char frac[8];
    snprintf(frac, sizeof(frac), "%06llu", (unsigned long long)(m % 1000000));
    int end = 6;
    while (end > 0 && frac[end - 1] == '0')
        end--;
    frac[end] = '\0';
    return snprintf(out, len, "%s%llu%s%s", u < 0 ? "-" : "", (unsigned long long)(m / 1000000),
                    end ? "." : "", frac);
}

void geoloc_format(int64_t lat_udeg, int64_t lon_udeg, char *out, size_t len)
{
    if (len == 0)
        return;
    int n = format_coord(out, len, lat_udeg);
    if (n < 0 || (size_t)n + 1 >= len)
        return;
    out[n] = ',';
    format_coord(out + n + 1, len - (size_t)n - 1, lon_udeg);
}
