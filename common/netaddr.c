#include "common/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int netaddr_parse(const char *s, netaddr_t *out, bool allow_zero)
{
    if (!s)
        return -EINVAL;
    size_t len = strlen(s);
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s || len > NETADDR_MAX)
        return -EINVAL;
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    bool v6 = s[0] == '[';
    if (v6) {
        if (hl < 3 || s[hl - 1] != ']')
            return -EINVAL;
        h++;
        hl -= 2;
    }
    if (hl > NETADDR_HOST_MAX)
        return -EINVAL;
    for (size_t i = 0; i < hl; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch <= ' ' || ch >= 0x7f || ch == '/' || ch == '#' || ch == '[' || ch == ']' ||
            (ch == ':' && !v6))
            return -EINVAL;
    }
    const char *p = colon + 1;
    size_t pl = strlen(p);
    if (pl == 0 || pl > 5)
        return -EINVAL;
    unsigned long port = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        port = port * 10 + (unsigned long)(*p - '0');
    }
    if (port > 65535 || (port == 0 && !allow_zero))
        return -EINVAL;
    if (v6) { /* brackets promise an IPv6 address: hold them to it */
        struct in6_addr a6;
        char tmp[NETADDR_HOST_MAX + 1];
        memcpy(tmp, h, hl);
        tmp[hl] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return -EINVAL;
    }
    if (out) {
        memcpy(out->host, h, hl);
        out->host[hl] = '\0';
        out->port = (uint16_t)port;
        out->ipv6 = v6;
    }
    return 0;
}

int netaddr_sockaddr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    netaddr_t a;
    if (netaddr_parse(s, &a, true))
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    const char *host = strcmp(a.host, "localhost") ? a.host : "127.0.0.1";
    if (!a.ipv6 && inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons(a.port);
        *len = sizeof(*s4);
        return 0;
    }
    if (a.ipv6 && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(a.port);
        *len = sizeof(*s6);
        return 0;
    }
    return -EINVAL;
}

int netaddr_listen(const char *s, int backlog, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (netaddr_sockaddr(s, &ss, &sl)) {
        snprintf(err, errlen, "'%s' is not a numeric HOST:PORT", s);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s: socket: %s", s, strerror(e));
        return -e;
    }
    int one = 1, zero = 0;
    /* Dual stack on "[::]" (see the header), not left to the bindv6only sysctl. */
    if (ss.ss_family == AF_INET6 &&
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s: IPV6_V6ONLY: %s", s, strerror(e));
        close(fd);
        return -e;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot listen on %s: %s", s, strerror(e));
        close(fd);
        return -e;
    }
    return fd;
}

int netaddr_zmq_endpoint(const char *s, char *out, size_t len)
{
    netaddr_t a;
    if (netaddr_parse(s, &a, true))
        return -EINVAL;
    const char *host = strcmp(a.host, "localhost") ? a.host : "127.0.0.1";
    int n = snprintf(out, len, a.ipv6 ? "tcp://[%s]:%u" : "tcp://%s:%u", host, a.port);
    return n > 0 && (size_t)n < len ? 0 : -EINVAL;
}

int netaddr_from_zmq(const char *ep, char *out, size_t len)
{
    netaddr_t a;
    if (!ep || strncmp(ep, "tcp://", 6) || netaddr_parse(ep + 6, &a, true))
        return -EINVAL;
    struct in6_addr a6;
    char ip4[INET_ADDRSTRLEN];
    int n;
    if (a.ipv6 && inet_pton(AF_INET6, a.host, &a6) == 1 && IN6_IS_ADDR_V4MAPPED(&a6) &&
        inet_ntop(AF_INET, &a6.s6_addr[12], ip4, sizeof(ip4)))
        n = snprintf(out, len, "%s:%u", ip4, a.port);
    else
        n = snprintf(out, len, a.ipv6 ? "[%s]:%u" : "%s:%u", a.host, a.port);
    return n > 0 && (size_t)n < len ? 0 : -EINVAL;
}

char *netaddr_format(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        port = ntohs(s4->sin_port);
        snprintf(out, len, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        /* An IPv4 client of a dual-stack listener shows as IPv4, as it would on 0.0.0.0. */
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        port = ntohs(s6->sin6_port);
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip, sizeof(ip));
            snprintf(out, len, "%s:%u", ip, port);
        } else {
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
            snprintf(out, len, "[%s]:%u", ip, port);
        }
    } else {
        snprintf(out, len, "?");
    }
    return out;
}
