/* dnsanswer: one DNS query in, one response out, computed from a dns_view_t. Pure (no clock,
 * no I/O, no state between calls), so it is unit-tested and fuzzed on its own; the listeners
 * (node/dns/dnsserver.c) only move bytes, and apply rate limiting (dnsrrl.h) on UDP.
 *
 * The mesh is authoritative for every zone of the view and for nothing else: a name outside
 * them is REFUSED, never recursed for (RA is always 0). Inside a zone (AA=1) the names are:
 *   ZONE              SOA, NS (one per PoP that serves DNS), A/AAAA (the mesh: dnssel_pick
 *                     with no host), ANY (RFC 8482 HINFO);
 *   HOST              a resource host (dnsview_host): A/AAAA from dnssel_pick with the host;
 *   NAME.pop.ZONE     a PoP's own public address, whatever its health: it is the glue of the
 *                     NS set, and an operator's way to reach one PoP;
 *   pop.ZONE and any parent of a host below the apex: empty non-terminals (NODATA).
 * A PoP name under pop.ZONE wins over a resource host of the same name.
 * Anything else is NXDOMAIN. Negative answers carry the zone's SOA (TTL = zone.ttl, which is
 * also the SOA minimum). The SOA's MNAME is NAME.pop.ZONE of the lowest-id PoP that serves DNS
 * (it is a name we answer for, with an address); with no such PoP, the apex itself.
 *
 * Wire format: ldns parses the query and writes the response; nothing here encodes or decodes
 * DNS by hand, except reading the 12-byte header of a query ldns refused (to answer FORMERR
 * with its id) and the fields inside an EDNS Client Subnet option (RFC 7871), which ldns hands
 * over as bytes.
 *
 * EDNS (RFC 6891): a query with OPT gets OPT back, with payload min(max(client's, 512), 1232)
 * (the DNS flag day 2020 size, below common path MTUs); version > 0 gets BADVERS. More than
 * one OPT, or an option list that overruns its RDATA, is FORMERR. DO is ignored and not
 * echoed (no DNSSEC). A UDP response over the limit (512 without OPT) goes out with TC=1 and
 * the question only; over TCP the limit is 65535 (and outmax).
 *
 * Client Subnet (RFC 7871): a valid option is the client dnssel_pick sees, and is echoed with
 * the pick's scope (0 for answers that do not depend on the client: SOA, NS, pop names,
 * negative answers). Source prefix 0 means "do not use client information": scope 0, and the
 * pick sees an empty /0 client (so no geo rule but a /0 one matches). A malformed option
 * (unknown family, prefix too long, address length not ceil(prefix/8), bits set past the
 * prefix, two ECS options) is FORMERR. Without ECS, the client is the resolver's address /32
 * or /128 (an IPv4-mapped IPv6 source counts as IPv4).
 *
 * The question is echoed byte for byte (resolvers randomise the case of qnames, "0x20");
 * names are compared lowercased. */
#ifndef POPMESH_NODE_DNS_DNSANSWER_H
#define POPMESH_NODE_DNS_DNSANSWER_H

#include "node/dns/dnsview.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define DNSANSWER_UDP_MIN    512   /* bytes: UDP limit without EDNS, and the floor with it */
#define DNSANSWER_UDP_MAX    1232  /* bytes: the most we send over UDP, whatever the client says */
#define DNSANSWER_TCP_MAX    65535 /* bytes: a TCP message (2-byte length prefix) */
#define DNSANSWER_SOA_REFRESH 3600  /* s */
#define DNSANSWER_SOA_RETRY   600   /* s */
#define DNSANSWER_SOA_EXPIRE  86400 /* s */

enum dnsanswer_kind {
    DNSA_DROP,     /* nothing sent: a response (QR=1), or shorter than a header */
    DNSA_ANSWER,   /* NOERROR with records in the answer section */
    DNSA_NODATA,   /* NOERROR, no answer: the name exists, the type does not (or no PoP) */
    DNSA_NXDOMAIN, /* the name does not exist in our zone */
    DNSA_REFUSED,  /* not our zone, class not IN, or a zone transfer */
    DNSA_FORMERR,  /* unparsable, QDCOUNT != 1, bad OPT or ECS */
    DNSA_NOTIMP,   /* opcode other than QUERY */
    DNSA_BADVERS,  /* EDNS version > 0 */
    DNSA_KINDS
};
/* "drop", "answer", "nodata", ... (static strings; "?" out of range). */
const char *dnsanswer_kind_name(enum dnsanswer_kind k);

/* What a response was, for counters and logs. */
typedef struct dnsanswer_info {
    enum dnsanswer_kind kind;
    uint16_t qtype;  /* of the question, 0 when there was none */
    bool truncated;  /* TC=1: the answer did not fit the limit */
    bool ecs;        /* the query carried a valid Client Subnet option (echoed) */
    uint8_t scope;   /* ECS scope prefix length sent back */
} dnsanswer_info_t;

/* q/qlen: the query as received; src: the sender (the resolver's address, AF_INET or AF_INET6;
 * anything else, or NULL, is a client with no address); tcp: it came over TCP (no truncation;
 * 65535 max); out/outmax: the buffer for the response. Returns the response's length, 0 =
 * send nothing (DROP; also when outmax cannot hold even a truncated response). info may be
 * NULL. Borrows everything; keeps nothing. */
size_t dnsanswer(const dns_view_t *v, const uint8_t *q, size_t qlen, const struct sockaddr *src,
                 bool tcp, uint8_t *out, size_t outmax, dnsanswer_info_t *info);

/* Turns a response we produced (resp/len, in place) into its rate-limited "slip" form: TC=1,
 * the question and OPT only, so a real client retries over TCP while a reflection victim gets
 * nothing bigger than the query. Returns the new length (<= len), or 0 when resp does not
 * parse (send nothing). */
size_t dnsanswer_slip(uint8_t *resp, size_t len);

#endif
