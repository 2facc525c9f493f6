/* proxyproto: PROXY protocol v1 and v2 headers (see proxyproto.h). */
#include "node/site/proxyproto.h"

#include "common/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* The v2 signature: \r\n\r\n\0\r\nQUIT\n, twelve bytes no text protocol starts with. */
static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* One end: its address as IPv6 (IPv4 mapped when it is IPv4) and port, host order. */
struct end {
    bool v4;
    uint8_t a6[16];
    uint16_t port;
};

static int end_of(const char *s, struct end *e)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(e, 0, sizeof(*e));
    if (netaddr_sockaddr(s, &ss, &sl))
        return -EINVAL;
    if (ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
        e->v4 = true;
        e->a6[10] = e->a6[11] = 0xff;
        memcpy(e->a6 + 12, &s4->sin_addr, 4);
        e->port = ntohs(s4->sin_port);
    } else if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
        memcpy(e->a6, &s6->sin6_addr, 16);
        e->port = ntohs(s6->sin6_port);
    } else {
        return -EINVAL;
    }
    return 0;
}

int proxyproto_encode(int version, const char *src, const char *dst, uint8_t *out, size_t cap)
{
    struct end s, d;
    if ((version != 1 && version != 2) || cap < PROXYPROTO_MAX || !src || !dst || end_of(src, &s))
        return -EINVAL;
    if (!dst[0]) {
        memset(&d, 0, sizeof(d));
        d.v4 = s.v4;
        if (d.v4)
            d.a6[10] = d.a6[11] = 0xff;
    } else if (end_of(dst, &d)) {
        return -EINVAL;
    }
    bool v4 = s.v4 && d.v4; /* else both as IPv6, the IPv4 one mapped */
    if (version == 1) {
        char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
        if (v4) {
            inet_ntop(AF_INET, s.a6 + 12, sa, sizeof(sa));
            inet_ntop(AF_INET, d.a6 + 12, da, sizeof(da));
        } else {
            inet_ntop(AF_INET6, s.a6, sa, sizeof(sa));
            inet_ntop(AF_INET6, d.a6, da, sizeof(da));
        }
        int n = snprintf((char *)out, cap, "PROXY %s %s %s %u %u\r\n", v4 ? "TCP4" : "TCP6", sa, da,
                         s.port, d.port);
        return n > 0 && (size_t)n < cap ? n : -EINVAL;
    }
    size_t alen = v4 ? 12 : 36; /* two addresses and two ports */
    memcpy(out, v2_sig, sizeof(v2_sig));
    out[12] = 0x21;             /* version 2, command PROXY */
    out[13] = v4 ? 0x11 : 0x21; /* AF_INET or AF_INET6, STREAM */
    out[14] = (uint8_t)(alen >> 8);
    out[15] = (uint8_t)alen;
    uint8_t *p = out + 16;
    size_t al = v4 ? 4 : 16, off = v4 ? 12 : 0;
    memcpy(p, s.a6 + off, al);
    memcpy(p + al, d.a6 + off, al);
    p += 2 * al;
    p[0] = (uint8_t)(s.port >> 8);
    p[1] = (uint8_t)s.port;
    p[2] = (uint8_t)(d.port >> 8);
    p[3] = (uint8_t)d.port;
    return (int)(16 + alen);
}
