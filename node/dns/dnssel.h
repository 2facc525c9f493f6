/* dnssel: which PoPs a DNS client gets, and why. Pure: reads a dns_view_t only.
 *
 * THE RULE (docs/dns.md "Which addresses a query gets"):
 *  1. Candidates: PoPs whose state is DNS_OK, that have a public address of the family asked
 *     for, and, for a resource host, a route to its site.
 *  2. Where the client is: the longest geo rule containing the client's address (the EDNS
 *     Client Subnet's address when the query has one, else the resolver's source address).
 *     The rule gives a region and possibly a location. A client's location is the rule's, else
 *     the centroid of the PoPs of its region that have one.
 *  3. Order, best first, by the first key that differs:
 *       a. mapped client: PoPs of the client's region first; no mapping: the answering PoP
 *          (view.self) first;
 *       b. distance (great circle) from the client's location (mapped) or from the answering
 *          PoP's location (unmapped) to the PoP's location (its own, else its region's
 *          centroid); unknown distances sort after known ones;
 *       c. a rendezvous hash of (qname, PoP id): spreads equal PoPs over names, the same at
 *          every PoP.
 *  4. The answer: the first PoP, then the best PoP of each region not yet in the answer, then
 *     the rest in order, up to the zone's `answers` (default 2: the closest and one more in
 *     another region, so a client falling back to the second address leaves the failed one's
 *     region). A PoP without a region counts as a region of its own here.
 *
 * Details the rule leaves open, as dnssel.c settles them: distances compare in whole km (PoPs
 * of one city tie and share names by the hash); a region's centroid is the mean of its PoPs'
 * latitudes and longitudes (dnsview.c says when that is wrong); a mapped client whose region
 * has no PoP and no location gets the hash order; an unmapped client with no answering PoP in
 * the view (or one without a location) gets candidates by hash only.
 *
 * ECS scope (RFC 7871 section 7.2.1): the prefix length the answer depends on, computed so
 * that every address in client/scope gets the same geo rule: at least the matched rule's
 * length, longer where a more specific rule lies near, never longer than the source prefix.
 * 0 when the answer does not depend on the client's address: no geo rule of its family (for
 * IPv6, the IPv4 rules count as rules in ::ffff:0:0/96), or an ECS source prefix of 0. An IPv4-mapped IPv6 client (::ffff:0:0/96, a prefix of 96 bits
 * or more) is an IPv4 client; its scope is 96 plus the IPv4 one. The scope is computed for
 * every client; the wire writes it only when the query had ECS. */
#ifndef POPMESH_NODE_DNS_DNSSEL_H
#define POPMESH_NODE_DNS_DNSSEL_H

#include "node/dns/dnsview.h"

typedef struct dns_client {
    uint8_t family;   /* 4 or 6 */
    uint8_t addr[16]; /* bits past plen are zero */
    uint8_t plen;     /* ECS source prefix length, or 32 / 128 for a resolver's address */
    bool ecs;         /* it came from an EDNS Client Subnet option */
} dns_client_t;

/* Why the answer is what it is (meshctl dns explain). */
typedef struct dns_explain {
    size_t geo;              /* index of the matched geo rule in view.geos, or DNS_NONE */
    char region[DNS_LABEL_MAX + 1]; /* the client's region; "" when unmapped */
    bool has_loc;            /* the client's location is known */
    double lat, lon;
    size_t order[256];       /* every PoP (index into view.pops) in rule 3's order,
                              * candidates before the excluded (the answer is dns_pick_t's:
                              * rule 4 reorders across regions) */
    size_t norder;
    enum dns_excl why[256];  /* per PoP index: DNS_OK or why it was left out of this answer */
    double dist_km[256];     /* per PoP index: distance used, < 0 unknown */
} dns_explain_t;

typedef struct dns_pick {
    size_t pops[DNS_ANSWERS_MAX]; /* indexes into view.pops, in answer order */
    size_t n;                     /* 0: no PoP can take this client (NODATA) */
    uint8_t scope;                /* ECS scope prefix length */
} dns_pick_t;

/* Picks the PoPs for a query for name (lowercase; a resource host, the zone apex, or any name
 * whose answer is "the mesh") in zone z, family 4 (A) or 6 (AAAA), from client. host: the
 * resource host entry when name is one (its site's routes filter), NULL otherwise. ex may be
 * NULL; when given it is filled. Views with more than 256 PoPs consider the first 256. */
void dnssel_pick(const dns_view_t *v, const dns_zone_t *z, const dns_host_t *host,
                 const char *name, uint8_t family, const dns_client_t *client, dns_pick_t *out,
                 dns_explain_t *ex);

/* Great-circle distance in km (haversine, mean Earth radius). */
double dnssel_distance_km(double lat1, double lon1, double lat2, double lon2);

#endif
