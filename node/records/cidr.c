/* cidr: see cidr.h. inet_pton does the address syntax (it takes no zone index, no leading
 * zeros in IPv4, no hostnames); what is checked here is the prefix length, written in one
 * spelling (decimal, no sign, no leading zero), and the host bits. */
#include "node/records/cidr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static void unmap_v4(auth_addr_t *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (a->family == AF_INET6 && memcmp(a->a, mapped, 12) == 0) {
        memmove(a->a, a->a + 12, 4);
        memset(a->a + 4, 0, 12);
        a->family = AF_INET;
    }
}

int auth_addr_parse(const char *text, auth_addr_t *a)
{
    memset(a, 0, sizeof(*a));
    if (inet_pton(AF_INET, text, a->a) == 1) {
        a->family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, a->a) == 1) {
        a->family = AF_INET6;
        unmap_v4(a);
        return 0;
    }
    memset(a, 0, sizeof(*a));
    return -EINVAL;
}

int auth_addr_from_sockaddr(const struct sockaddr *sa, auth_addr_t *a)
{
    memset(a, 0, sizeof(*a));
    if (!sa)
        return -EINVAL;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        memcpy(a->a, &s4->sin_addr, 4);
        a->family = AF_INET;
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        memcpy(a->a, &s6->sin6_addr, 16);
        a->family = AF_INET6;
        unmap_v4(a);
        return 0;
    }
    return -EINVAL;
}

int auth_cidr_parse(const char *text, auth_cidr_t *c, const char **why)
{
    char buf[AUTH_CIDR_MAX + 1];
    memset(c, 0, sizeof(*c));
    size_t len = strnlen(text, sizeof(buf));
    if (len == 0 || len >= sizeof(buf)) {
        *why = "a CIDR is ADDRESS/BITS, at most 49 characters";
        return -EINVAL;
    }
    memcpy(buf, text, len + 1);
    char *slash = strchr(buf, '/');
    unsigned long bits = 0;
    if (slash) {
        *slash = '\0';
        const char *b = slash + 1;
        if (!*b || strlen(b) > 3 || strspn(b, "0123456789") != strlen(b) || (b[0] == '0' && b[1])) {
            *why = "the prefix length of a CIDR must be a number (ADDRESS/BITS)";
            return -EINVAL;
        }
        bits = strtoul(b, NULL, 10);
    }
    /* The address as written: an IPv4-mapped IPv6 network stays IPv6 here. */
    if (inet_pton(AF_INET, buf, c->net.a) == 1) {
        c->net.family = AF_INET;
    } else if (inet_pton(AF_INET6, buf, c->net.a) == 1) {
        c->net.family = AF_INET6;
    } else {
        memset(c, 0, sizeof(*c));
        *why = "the address of a CIDR is not an IPv4 or IPv6 address";
        return -EINVAL;
    }
    unsigned max = c->net.family == AF_INET ? 32 : 128;
    if (!slash)
        bits = max;
    if (bits > max) {
        memset(c, 0, sizeof(*c));
        *why = "the prefix length of a CIDR is larger than the address (32 or 128 bits)";
        return -EINVAL;
    }
    c->prefix = (unsigned)bits;
    for (unsigned i = c->prefix; i < max; i++) {
        if (c->net.a[i / 8] & (0x80 >> (i % 8))) {
            memset(c, 0, sizeof(*c));
            *why = "the CIDR has host bits set (write the network address, e.g. 10.0.0.0/8)";
            return -EINVAL;
        }
    }
    return 0;
}

bool auth_cidr_contains(const auth_cidr_t *c, const auth_addr_t *a)
{
    if (!a || a->family != c->net.family || c->net.family == 0)
        return false;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(a->a, c->net.a, full) != 0)
        return false;
    if (rest) {
        uint8_t mask = (uint8_t)(0xff << (8 - rest));
        if ((a->a[full] & mask) != (c->net.a[full] & mask))
            return false;
    }
    return true;
}
