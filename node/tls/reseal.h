/* reseal: the start-up pass over the records that carry a secret (cert/, tlsticket/,
 * acme/config; docs/security.md, "Secrets in the store").
 *
 * It opens every sealed secret with this PoP's keys and counts what it finds. A secret sealed
 * in an older format (before the store key: under a key derived from mesh.key) is sealed
 * afresh under the store key and the record written back, so that an upgraded mesh ends with
 * no value that needs mesh.key to open. A secret that does not open is logged with the
 * record's key and the reason, never with any of its bytes, and left alone: the record is
 * unreadable here (its consumers skip it), nothing else is.
 *
 * THE REWRITE IS NOT NEWER THAN THE RECORD. A PoP that starts after a long stop may hold an
 * old copy of a record another PoP has since replaced (a renewed certificate that has not
 * reached it yet). Written with a fresh version, the rewrite of the old copy would beat the
 * renewal everywhere. So it is merged with the record's own version + 1 (origin: this PoP):
 * newer than the copy it re-encodes, older than any later write of that record, which has a
 * version at least a millisecond later (an equal version from another PoP, possible only for
 * a write in the same millisecond, is decided by origin). Two PoPs rewriting the same record
 * end with one of their rewrites everywhere; both hold the same secret. */
#ifndef POPMESH_NODE_TLS_RESEAL_H
#define POPMESH_NODE_TLS_RESEAL_H

#include "node/membership/meshnode.h"
#include "node/records/storeseal.h"
#include "storage/store.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct reseal_stats {
    unsigned current;   /* secrets sealed under the current store key */
    unsigned legacy;    /* secrets sealed in an older format, found */
    unsigned rewritten; /* of those, records written back sealed under the store key */
    unsigned unreadable; /* secrets that do not open (logged, record by record) */
    unsigned bad_current; /* of those, current-format values under this key id that fail */
} reseal_stats_t;

/* Walks the records; with rewrite, writes back those sealed in an older format (mesh may be
 * NULL: merged into the store only, anti-entropy spreads them). 0 or -errno from the store. */
int reseal_run(store_t *store, meshnode_t *mesh, const storeseal_t *k, uint64_t self_id,
               bool rewrite, reseal_stats_t *st);

#endif
