/* hlc: the hybrid logical clock rules of hlc.h on the packed 64-bit representation.
 *
 * Why the packed form works: with l in the high 48 bits and c in the low 16, the pair (l, c)
 * orders exactly like the integer. The classic send rule "l' = max(l, pt); c' = l' == l ?
 * c + 1 : 0" is then "max(last + 1, pt << 16)": if the wall clock moved past l, pt << 16 is
 * larger and the counter restarts at 0; otherwise last + 1 bumps the counter. When the
 * counter is already 0xffff, last + 1 carries into the millisecond field: the clock runs a
 * millisecond ahead of the wall for a moment instead of wrapping the counter and going
 * backwards, which would break "strictly greater than any before".
 *
 * The receive rule needs no arithmetic of its own: observing m sets last = max(last, m), and
 * the next local event takes max(last + 1, pt << 16), which is l' = max(l, m.l, pt) with the
 * counter that follows from whichever won. */
#include "storage/hlc.h"

#include <errno.h>

#define HLC_MS_MAX ((1ull << (64 - HLC_COUNTER_BITS)) - 1) /* ms: the largest 48-bit value */

void hlc_init(hlc_t *h)
{
    h->last = 0;
    h->skew_rejected = 0;
}

uint64_t hlc_now(hlc_t *h, uint64_t now_ms)
{
    /* A wall clock past the year 10889 cannot be represented; clamp rather than wrap, so a
     * broken clock at worst stalls the millisecond field and the counter keeps us moving. */
    if (now_ms > HLC_MS_MAX)
        now_ms = HLC_MS_MAX;
    uint64_t next = hlc_make(now_ms, 0);
    /* Saturate at UINT64_MAX instead of wrapping to 0: unreachable with sane inputs (remote
     * versions more than a minute ahead are refused), and wrapping would be the worse bug. */
    if (h->last != UINT64_MAX && h->last + 1 > next)
        next = h->last + 1;
    else if (h->last == UINT64_MAX)
        next = UINT64_MAX;
    h->last = next;
    return next;
}

int hlc_observe(hlc_t *h, uint64_t remote, uint64_t now_ms)
{
    /* Compare in milliseconds: a remote at now + 60 s with any counter is still acceptable,
     * one millisecond more is not. now_ms + HLC_MAX_AHEAD_MS cannot overflow for any wall
     * clock this code will meet, but guard anyway: overflow would reject everything. */
    uint64_t limit =
        now_ms > UINT64_MAX - HLC_MAX_AHEAD_MS ? UINT64_MAX : now_ms + HLC_MAX_AHEAD_MS;
    if (hlc_ms(remote) > limit) {
        h->skew_rejected++;
        return -ERANGE;
    }
    if (remote > h->last)
        h->last = remote;
    return 0;
}
