/* healthvec: the health vector's wire format, what each PoP tells the mesh about itself.
 *
 *   [node_id, seq, cpu_permille, rss_kb, streams, ingress_up,
 *    tunnels, listeners, listeners_up, load_permille, ...]
 *
 * The first six fields are the original vector; the next four were appended, so an older node
 * skips them and this codec accepts a six-field vector from an older node (then tunnels and
 * listeners are unknown and the load is its CPU). Fields past the known ones are skipped:
 * newer nodes may append more. Loop-free, so the decoder is fuzzed (tests/fuzz/fuzz_healthvec.c);
 * meshhealth.c decides what the fields mean for routing. */
#ifndef POPMESH_NODE_MEMBERSHIP_HEALTHVEC_H
#define POPMESH_NODE_MEMBERSHIP_HEALTHVEC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/mp.h"

#define HEALTHVEC_FIELDS_V1 6  /* fields of the original vector */
#define HEALTHVEC_FIELDS    10 /* fields this version sends */

typedef struct healthvec {
    uint64_t id;            /* the node it describes */
    uint64_t seq;           /* the sender's wall clock (ms) when made: newer replaces older */
    uint32_t cpu_permille;  /* CPU used, permille of one core */
    uint32_t rss_kb;        /* resident memory, KiB */
    uint32_t streams;       /* streams open through it */
    bool ingress_up;        /* every ingress listener bound and accepting */
    bool detailed;          /* the four fields below were sent (a newer node) */
    uint32_t tunnels;       /* site tunnels up */
    uint32_t listeners;     /* ingress listeners configured */
    uint32_t listeners_up;  /* of those, bound and accepting (<= listeners) */
    uint32_t load_permille; /* the sender's load figure, 0..1000 (meshhealth.c says how) */
} healthvec_t;

/* Packs h as HEALTHVEC_FIELDS fields. */
void healthvec_pack(msgpack_packer *pk, const healthvec_t *h);
/* Reads one vector from r: 0, or -EBADMSG when it is malformed (too few fields, a count over
 * 32 bits, more listeners up than configured). The load is taken as sent: the reader clamps. */
int healthvec_decode(mpr_t *r, healthvec_t *h);

#endif
