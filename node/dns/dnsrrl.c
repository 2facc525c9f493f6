/* dnsrrl: token buckets per client network in a fixed table (the rules are in dnsrrl.h).
 *
 * Buckets count milli-responses, so a rate of R responses/s refills R tokens per ms exactly,
 * without floating point: a bucket holds at most R * 1000 (the burst, R responses) and a
 * response costs 1000. The table is keyed by SipHash (libsodium's crypto_shorthash, as in
 * common/conncap.c) under a random key drawn at dnsrrl_new, so a spoofer cannot choose
 * networks that share a victim's window to evict it on purpose. */
#include "node/dns/dnsrrl.h"

#include "common/xmalloc.h"

#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

_Static_assert((DNSRRL_ENTRIES & (DNSRRL_ENTRIES - 1)) == 0, "DNSRRL_ENTRIES: a power of two");
_Static_assert(DNSRRL_WAYS <= DNSRRL_ENTRIES, "a window fits the table");

#define MILLI 1000u /* tokens per response */

typedef struct rrl_entry {
    uint8_t key[8];   /* family (4 or 6), then the network's 3 (/24) or 7 (/56) bytes */
    bool used;
    uint64_t last_ms; /* ms: the last check of this network */
    uint64_t tokens;  /* milli-responses, <= rate * 1000 */
    uint64_t limited; /* limited responses so far (every slip-th slips) */
} rrl_entry_t;

struct dnsrrl {
    unsigned rate; /* responses/s and burst; 0 = off */
    unsigned slip; /* every slip-th limited response slips; 0 = never */
    uint8_t hashkey[crypto_shorthash_KEYBYTES];
    rrl_entry_t table[DNSRRL_ENTRIES];
    dnsrrl_stats_t stats;
};

dnsrrl_t *dnsrrl_new(unsigned rate_per_s, unsigned slip)
{
    if (sodium_init() < 0) {
        errno = EIO;
        return NULL;
    }
    dnsrrl_t *r = xcalloc(1, sizeof(*r));
    r->rate = rate_per_s;
    r->slip = slip;
    randombytes_buf(r->hashkey, sizeof(r->hashkey));
    return r;
}

void dnsrrl_free(dnsrrl_t **rp)
{
    if (!rp || !*rp)
        return;
    free(*rp);
    *rp = NULL;
}

void dnsrrl_stats(const dnsrrl_t *r, dnsrrl_stats_t *out)
{
    *out = r->stats;
}

/* The client's network as a key; false for a source that is not IP. */
static bool network_of(const struct sockaddr *sa, uint8_t key[8])
{
    memset(key, 0, 8);
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET) {
        const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        key[0] = 4;
        memcpy(key + 1, a, DNSRRL_V4_PLEN / 8);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {
            key[0] = 4;
            memcpy(key + 1, a6->s6_addr + 12, DNSRRL_V4_PLEN / 8);
        } else {
            key[0] = 6;
            memcpy(key + 1, a6->s6_addr, DNSRRL_V6_PLEN / 8);
        }
        return true;
    }
    return false;
}

/* The network's slot: its own, a free one of its window, or the stalest of the window. */
static rrl_entry_t *slot_for(dnsrrl_t *r, const uint8_t key[8], bool *fresh)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, 8, r->hashkey);
    uint64_t hv;
    memcpy(&hv, h, sizeof(hv));
    size_t base = (size_t)(hv & (DNSRRL_ENTRIES - 1)) & ~(size_t)(DNSRRL_WAYS - 1);
    rrl_entry_t *free_slot = NULL, *stalest = NULL;
    for (size_t i = 0; i < DNSRRL_WAYS; i++) {
        rrl_entry_t *e = &r->table[base + i];
        if (!e->used) {
            if (!free_slot)
                free_slot = e;
            continue;
        }
        if (memcmp(e->key, key, 8) == 0) {
            *fresh = false;
            return e;
        }
        if (!stalest || e->last_ms < stalest->last_ms)
            stalest = e;
    }
    *fresh = true;
    if (free_slot)
        return free_slot;
    r->stats.evictions++;
    return stalest;
}

enum dnsrrl_verdict dnsrrl_check(dnsrrl_t *r, const struct sockaddr *src, uint64_t now_ms)
{
    uint8_t key[8];
    if (!r || r->rate == 0 || !network_of(src, key)) {
        if (r)
            r->stats.sent++;
        return DNSRRL_SEND;
    }
    uint64_t burst = (uint64_t)r->rate * MILLI;
    bool fresh;
    rrl_entry_t *e = slot_for(r, key, &fresh);
    if (fresh) {
        memcpy(e->key, key, 8);
        e->used = true;
        e->last_ms = now_ms;
        e->tokens = burst;
        e->limited = 0;
    } else if (now_ms > e->last_ms) {
        /* A full refill takes 1 s (burst = rate): cap the elapsed time there, which also
         * keeps elapsed * rate far from overflowing. */
        uint64_t elapsed = now_ms - e->last_ms;
        if (elapsed > MILLI)
            elapsed = MILLI;
        e->tokens += elapsed * r->rate;
        if (e->tokens > burst)
            e->tokens = burst;
        e->last_ms = now_ms;
    }
    if (e->tokens >= MILLI) {
        e->tokens -= MILLI;
        r->stats.sent++;
        return DNSRRL_SEND;
    }
    e->limited++;
    if (r->slip && e->limited % r->slip == 0) {
        r->stats.slipped++;
        return DNSRRL_SLIP;
    }
    r->stats.dropped++;
    return DNSRRL_DROP;
}
