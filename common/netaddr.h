/* netaddr: "host:port" strings, the one parser of them, and listening sockets.
 *
 * Every address popmesh takes from an operator or a peer (listen and advertise addresses,
 * seeds, resource targets, tunnel endpoints) is a "host:port" string. One parser decides what
 * such a string may be, so a form refused in popd.conf is refused the same way in a
 * `resource add`, and a form accepted at one end parses at the other:
 *   - host is an IPv4 address, a bracketed IPv6 address ("[fd00::1]:80"), or a name of
 *     printable bytes without '/', '#', ':' and spaces (an unbracketed IPv6 address would
 *     make the port ambiguous);
 *   - port is 1 to 5 decimal digits, at most 65535, and 0 only where the caller allows it
 *     (a listener that lets the kernel choose).
 * Turning a string into a socket address is numeric only (plus "localhost"): the event loop
 * never blocks on a resolver.
 *
 * IPv6 and dual stack: a listener on "[::]:PORT" takes IPv4 clients too (IPV6_V6ONLY off,
 * whatever the net.ipv6.bindv6only sysctl says), for plain sockets and for ZeroMQ alike.
 * ZeroMQ endpoints are made here (netaddr_zmq_endpoint) so every socket gets the same
 * translation, and read back here (netaddr_from_zmq): with ZMQ_IPV6 set, libzmq reports
 * an IPv4 bind as "[::ffff:a.b.c.d]", which we give back as "a.b.c.d". */
#ifndef POPMESH_COMMON_NETADDR_H
#define POPMESH_COMMON_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define NETADDR_MAX      255 /* bytes of "host:port", as stored and sent */
#define NETADDR_HOST_MAX 253 /* bytes of the host part, brackets excluded */

typedef struct netaddr {
    char host[NETADDR_HOST_MAX + 1]; /* without the brackets of an IPv6 address */
    uint16_t port;
    bool ipv6; /* it was bracketed */
} netaddr_t;

/* Parses s (NUL-terminated). 0, or -EINVAL when s breaks a rule above. out may be NULL (just
 * checking). allow_zero: port 0 is accepted. */
int netaddr_parse(const char *s, netaddr_t *out, bool allow_zero);

/* The socket address of a numeric host (or "localhost", as 127.0.0.1). 0, or -EINVAL when s
 * does not parse or its host is a name. */
int netaddr_sockaddr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* A non-blocking, close-on-exec TCP listener on s with SO_REUSEADDR (a restarted daemon
 * rebinds at once despite connections in TIME_WAIT). Returns the fd, or -errno with a
 * sentence in err naming the address and the reason. */
int netaddr_listen(const char *s, int backlog, char *err, size_t errlen);

/* "tcp://HOST:PORT" for zmq_bind/zmq_connect, into out: brackets kept for IPv6, and
 * "localhost" as 127.0.0.1, as netaddr_sockaddr reads it (with ZMQ_IPV6 set, libzmq would
 * resolve it to ::1 where /etc/hosts says so, and miss a peer on 127.0.0.1; a bind on a
 * name fails in libzmq). Other names are passed on for libzmq to resolve when it dials.
 * 0, or -EINVAL when s does not parse (port 0 allowed) or out is too short. */
int netaddr_zmq_endpoint(const char *s, char *out, size_t len);

/* The "host:port" of a ZeroMQ TCP endpoint as ZMQ_LAST_ENDPOINT reports it
 * ("tcp://[::ffff:127.0.0.1]:7946" gives "127.0.0.1:7946"), into out. 0, or -EINVAL when
 * ep is not a tcp:// endpoint of a "host:port" or out is too short. */
int netaddr_from_zmq(const char *ep, char *out, size_t len);

/* "ip:port" (IPv6 bracketed, IPv4-mapped IPv6 as IPv4) of a socket address, into out (at least
 * NETADDR_MAX + 1 bytes is always enough). Returns out. */
char *netaddr_format(const struct sockaddr *sa, char *out, size_t len);

#endif
