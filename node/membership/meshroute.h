/* meshroute: link state and routes in a running popd (the I/O side of mesh/linkstate and
 * mesh/route).
 *
 * Every MESHROUTE_PUBLISH_S this PoP builds its link-state record (its measured RTT to the
 * members it probes, capped to the best by mesh/linkstate, and the sites attached to it),
 * stores it in its own database and hands it to the caller to gossip. Records from other PoPs
 * arrive through meshroute_receive. Any change marks the routes dirty; a debounce timer
 * recomputes them (mesh/route.h: a lone change after 20 ms, a burst at most every 200 ms) and
 * swaps the table atomically for lookups. */
#ifndef POPMESH_NODE_MEMBERSHIP_MESHROUTE_H
#define POPMESH_NODE_MEMBERSHIP_MESHROUTE_H

#include "mesh/linkstate.h"
#include "mesh/route.h"

#include <ev.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#define MESHROUTE_PUBLISH_S 3.0 /* s between this PoP's link-state records (jittered) */
#define MESHROUTE_RTT_STEP  250 /* us: measured RTTs are rounded to this before publishing */
#define MESHROUTE_PENDING_S 0.3 /* s to the next record while a live peer awaits its first RTT */

typedef struct meshroute meshroute_t;

typedef struct meshroute_io {
    void *ctx;
    /* Fill rec's links and sites (rec is initialised with origin and seq). True when a link
     * is still being measured (a live peer with no RTT yet): the next record follows in
     * MESHROUTE_PENDING_S, not a whole period later. */
    bool (*collect)(void *ctx, ls_record_t *rec);
    /* Gossip an encoded record. */
    void (*publish)(void *ctx, const uint8_t *buf, size_t len);
    /* Names for display: write the name of node id (PoP or site) into out, or leave it. */
    void (*name_of)(void *ctx, uint64_t id, char *out, size_t len);
    /* A new route table is in place (may be NULL). */
    void (*recomputed)(void *ctx);
} meshroute_io_t;

meshroute_t *meshroute_new(struct ev_loop *loop, uint64_t self, const meshroute_io_t *io);
void meshroute_destroy(meshroute_t **mp);

/* A record gossiped by another PoP. Returns true if it was newer than what we held (the
 * caller gossips it on). */
bool meshroute_receive(meshroute_t *m, const uint8_t *buf, size_t len);
/* A PoP is dead, left or removed: its record no longer counts. */
void meshroute_forget(meshroute_t *m, uint64_t pop);
/* Load (permille of a core) and health of a PoP, from its health vector. */
void meshroute_penalty(meshroute_t *m, uint64_t pop, uint16_t load_permille, bool healthy);
/* Publish now (membership changed). */
void meshroute_publish_soon(meshroute_t *m);

/* The current table; NULL until the first computation. Borrowed until the next event loop
 * iteration. */
const route_table_t *meshroute_table(const meshroute_t *m);

/* The records held (every PoP's latest). Borrowed. */
const lsdb_t *meshroute_lsdb(const meshroute_t *m);

/* {sites: [{site, egress, path, cost_ms, backup}], pops: [{pop, next_hop, path, cost_ms}],
 *  info: {...}} for meshctl routes. */
void meshroute_pack(meshroute_t *m, msgpack_packer *pk);

#endif
