/* proxyproto: the PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2) a site
 * writes to a target before the first byte of the client's stream, so the application sees
 * the client's address instead of the site connector's.
 *
 * Only an encoder: popmesh never reads a PROXY header. One a client sends is payload like any
 * other and reaches the target after ours, where a server that reads one header per
 * connection takes ours (the first) and sees the client's as its data; a client cannot
 * choose the address the target is told.
 *
 * The addresses are "ip:port" strings as the OPEN carries them (netaddr_format: IPv6
 * bracketed, IPv4-mapped IPv6 given as IPv4): src is the client as the ingress PoP saw it, dst
 * the PoP's address the client connected to. Both must be numeric. When their families
 * differ (a dual-stack listener), the IPv4 one is written IPv4-mapped, since a header has one
 * family; dst "" (an ingress PoP that did not say) is the unspecified address of src's
 * family, port 0. Pure: no I/O, no allocation. */
#ifndef POPMESH_NODE_SITE_PROXYPROTO_H
#define POPMESH_NODE_SITE_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

/* Bytes of the longest header: v1 with two full IPv6 addresses is 104 (the spec's bound),
 * v2 with IPv6 addresses 16 + 36 = 52. */
#define PROXYPROTO_MAX 108

/* Writes the version (1 or 2) header for a TCP connection from src to dst into out (at least
 * PROXYPROTO_MAX bytes). Returns its length, or -EINVAL when the version is not 1 or 2 or an
 * address is not a numeric "ip:port". */
int proxyproto_encode(int version, const char *src, const char *dst, uint8_t *out, size_t cap);

#endif
