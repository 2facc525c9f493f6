/* cidr: client addresses and the networks that access rules (rule.h) match them against.
 *
 * A rule names a network as text ("10.0.0.0/8", "2001:db8::/32") in a replicated record, so
 * the parser reads untrusted bytes and must accept one spelling per network; the matcher runs
 * on every request the rules of a resource are evaluated for. Three choices keep a rule from
 * meaning something other than what the operator wrote:
 *   - a network with host bits set ("10.0.0.1/8") is refused rather than guessed at: the
 *     operator meant either 10.0.0.0/8 or 10.0.0.1/32, and those are far apart;
 *   - a client's IPv4-mapped IPv6 address (::ffff:a.b.c.d, what a dual-stack listener reports
 *     for an IPv4 client) is its IPv4 address, so one IPv4 rule covers the client whichever
 *     way the listener was bound; a network is kept as written;
 *   - families never mix: an IPv4 network matches no IPv6 address and the reverse, and an
 *     unknown address matches nothing.
 * Loop-free and allocation-free. */
#ifndef POPMESH_NODE_RECORDS_CIDR_H
#define POPMESH_NODE_RECORDS_CIDR_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define AUTH_CIDR_MAX 49 /* bytes of "ffff:...:ffff/128" and some slack */

/* An address with its family: AF_INET (4 bytes used) or AF_INET6 (16); 0 = unknown. */
typedef struct auth_addr {
    int family;
    uint8_t a[16]; /* network byte order; the rest zero */
} auth_addr_t;

typedef struct auth_cidr {
    auth_addr_t net;
    unsigned prefix; /* bits: 0..32 or 0..128 */
} auth_cidr_t;

/* A bare address. IPv4-mapped IPv6 addresses become IPv4, so one IPv4 rule covers both.
 * 0 or -EINVAL (*a zeroed). */
int auth_addr_parse(const char *text, auth_addr_t *a);
/* The same from a socket address (AF_INET or AF_INET6). 0 or -EINVAL (*a zeroed). */
int auth_addr_from_sockaddr(const struct sockaddr *sa, auth_addr_t *a);
/* "A.B.C.D/N", "X:Y::Z/N", or a bare address (/32, /128); host bits must be zero.
 * 0 or -EINVAL with *why. */
int auth_cidr_parse(const char *text, auth_cidr_t *c, const char **why);
/* true if a (may be NULL) is inside c; never across families. */
bool auth_cidr_contains(const auth_cidr_t *c, const auth_addr_t *a);

#endif
