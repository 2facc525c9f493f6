/* conncap: how many connections one listener holds, in all and per client address.
 *
 * Every port a PoP opens to the world (the HTTP ingress, TCP resource ports, the tunnel port
 * before a peer has proven its key) is a place where someone who holds no key can make the PoP
 * hold a descriptor and some memory per connection. Nothing else bounds that number but the
 * descriptor limit, and a daemon out of descriptors cannot accept its own sites' tunnels. So
 * each listener admits a connection only under two caps: an overall one, and one per client
 * address, so a single host (or a single IPv6 customer, who holds a whole /64) cannot take
 * the whole overall cap from everyone else. A connection past a cap is the caller's to refuse
 * at once (close it, or answer 503 and close), never to leave in the backlog to time out.
 *
 * The per-address table holds only addresses that have a connection open now, so it never
 * has more entries than the overall cap; its buckets are chosen by SipHash under a random key
 * so clients cannot aim collisions. IPv4-mapped IPv6 addresses count as their IPv4 address. */
#ifndef POPMESH_COMMON_CONNCAP_H
#define POPMESH_COMMON_CONNCAP_H

#include <stdint.h>
#include <sys/socket.h>

typedef struct conncap conncap_t;
typedef struct conncap_slot conncap_slot_t;

typedef struct conncap_stats {
    uint64_t admitted;
    uint64_t refused_total;    /* past the overall cap */
    uint64_t refused_per_addr; /* past one address's cap */
    uint32_t open;             /* connections admitted and not yet released */
    uint32_t addresses;        /* distinct addresses among them */
} conncap_stats_t;

/* max_total and max_per_addr must be > 0. Never NULL (aborts on out of memory). */
conncap_t *conncap_new(uint32_t max_total, uint32_t max_per_addr);
/* Accepts NULL; sets *cp = NULL. Outstanding slots must have been released. */
void conncap_destroy(conncap_t **cp);

/* Admits one connection from sa: a slot to release when the connection ends, or NULL when a
 * cap is reached (then *why, if not NULL, says which: "the overall connection cap" or "this
 * address's connection cap"). Addresses of other families share one "unknown" entry. */
conncap_slot_t *conncap_admit(conncap_t *c, const struct sockaddr *sa, const char **why);
/* Releases a slot from conncap_admit; accepts NULL. */
void conncap_release(conncap_t *c, conncap_slot_t *slot);

void conncap_stats(const conncap_t *c, conncap_stats_t *st);
uint32_t conncap_max_total(const conncap_t *c);
uint32_t conncap_max_per_addr(const conncap_t *c);

/* Half of the process's descriptor limit (RLIMIT_NOFILE, soft), at least floor: the usual
 * overall cap of a listener, leaving the other half for tunnels, upstream streams and the
 * store. */
uint32_t conncap_half_nofile(uint32_t floor);

#endif
