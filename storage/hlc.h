/* hlc: hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014).
 *
 * A version is one uint64: the high 48 bits are wall-clock milliseconds since the Unix epoch,
 * the low 16 bits a counter. Versions order like integers, stay close to real time (so a
 * human can read them and tombstone grace periods mean something) and still respect
 * causality: a node that has seen version v only issues versions > v.
 *
 * Send/local event:  l' = max(l, pt); c' = (l' == l) ? c + 1 : 0
 * Receive of m:      l' = max(l, m.l, pt); c' follows from which of them won
 * (folded here into "next = max(last + 1, pt << 16)", which is the same rule on the packed
 * integer, with counter overflow carrying into the millisecond field.)
 *
 * A remote version more than HLC_MAX_AHEAD_MS ahead of our wall clock is rejected and counted:
 * adopting it would drag every later local write into that node's future and let one bad
 * clock win every last-writer-wins race for as long as the skew lasts.
 *
 * Sans-I/O: the caller passes the wall clock in. */
#ifndef POPMESH_STORAGE_HLC_H
#define POPMESH_STORAGE_HLC_H

#include <stdint.h>

#define HLC_MAX_AHEAD_MS 60000 /* ms */
#define HLC_COUNTER_BITS 16

typedef struct hlc {
    uint64_t last;          /* last version issued or observed */
    uint64_t skew_rejected; /* remote versions refused as too far ahead */
} hlc_t;

static inline uint64_t hlc_ms(uint64_t version)
{
    return version >> HLC_COUNTER_BITS;
}
static inline uint64_t hlc_make(uint64_t ms, uint16_t counter)
{
    return (ms << HLC_COUNTER_BITS) | counter;
}

void hlc_init(hlc_t *h);
/* A version for a local event at wall time now_ms; strictly greater than any before. */
uint64_t hlc_now(hlc_t *h, uint64_t now_ms);
/* Folds a remote version in. Returns 0, or -ERANGE (and counts it) when remote is more than
 * HLC_MAX_AHEAD_MS ahead of now_ms; the clock is then unchanged. */
int hlc_observe(hlc_t *h, uint64_t remote, uint64_t now_ms);

#endif
