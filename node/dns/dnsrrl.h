/* dnsrrl: response rate limiting against DNS reflection, per client network. Pure: the
 * caller passes the time.
 *
 * An authoritative server on UDP answers whoever the source address says, so an attacker who
 * spoofs a victim's address turns us into an amplifier. Like NSD's and BIND's RRL, we bound
 * the responses per client network (/24 for IPv4, /56 for IPv6: one customer, one resolver
 * farm) with a token bucket of `rate` responses per second and a burst of `rate`. Over it, a
 * response is dropped, except every `slip`-th one, which goes out in its TC=1 form
 * (dnsanswer_slip): a real resolver behind that network retries over TCP, which a spoofer
 * cannot, so the victim sees at most a trickle no bigger than the queries. slip 0 drops every
 * limited response; slip 1 slips them all.
 *
 * Memory is bounded: a fixed table of DNSRRL_ENTRIES buckets, hashed by network in windows
 * of DNSRRL_WAYS; a new network takes a free slot of its window, else the stalest one (the
 * least recently seen network). An evicted network comes back with a full burst: a flood of
 * spoofed networks can thus lend a victim's network a fresh burst, which costs the attacker
 * DNSRRL_ENTRIES / DNSRRL_WAYS times more packets than it gains and is the usual price of
 * bounded RRL state.
 *
 * Only UDP is limited (the server calls this); TCP proves the source address. */
#ifndef POPMESH_NODE_DNS_DNSRRL_H
#define POPMESH_NODE_DNS_DNSRRL_H

#include <stdint.h>
#include <sys/socket.h>

#define DNSRRL_ENTRIES 4096 /* buckets (one client network each); a power of two */
#define DNSRRL_WAYS    8    /* slots a network may take (its window) */
#define DNSRRL_V4_PLEN 24   /* bits of an IPv4 client's network */
#define DNSRRL_V6_PLEN 56   /* bits of an IPv6 client's network */

typedef struct dnsrrl dnsrrl_t;

enum dnsrrl_verdict {
    DNSRRL_SEND, /* within the rate (or RRL off, or a source that is not IP) */
    DNSRRL_DROP, /* limited: send nothing */
    DNSRRL_SLIP, /* limited, but send the TC=1 form (dnsanswer_slip) */
};

/* rate_per_s: responses per second and burst per client network; 0 turns RRL off (every
 * check says SEND). slip: every slip-th limited response slips; 0 = none. Caller owns the
 * result (dnsrrl_free); NULL with errno on failure. */
dnsrrl_t *dnsrrl_new(unsigned rate_per_s, unsigned slip);
void dnsrrl_free(dnsrrl_t **r);

/* One response about to go to src at now_ms (any monotonic clock in ms; a clock that goes
 * back counts as no time passing). An IPv4-mapped IPv6 source counts as its IPv4 network. */
enum dnsrrl_verdict dnsrrl_check(dnsrrl_t *r, const struct sockaddr *src, uint64_t now_ms);

/* Counters since dnsrrl_new. */
typedef struct dnsrrl_stats {
    uint64_t sent, dropped, slipped;
    uint64_t evictions; /* a network took the slot of another */
} dnsrrl_stats_t;
void dnsrrl_stats(const dnsrrl_t *r, dnsrrl_stats_t *out);

#endif
