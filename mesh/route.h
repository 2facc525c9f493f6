/* route: shortest paths over the link-state database, the route table they give, and the
 * debounce that decides when to recompute. Sans-I/O: the caller passes the time.
 *
 * route_compute() runs Dijkstra from this PoP over the PoP graph of an lsdb_t and, for every
 * site any record mentions, picks
 *   - a primary: the cheapest (path to an attached PoP + that PoP's tunnel to the site);
 *   - a backup: the cheapest alternative whose egress PoP differs from the primary's and whose
 *     path does not pass through the primary's egress at all,
 * and returns an immutable route_table_t. The caller keeps the table it routes with until the
 * next one is ready, then swaps and destroys the old one: lookups never see a half-built
 * table. Costs, penalties, the backup rule and the complexity are explained in
 * docs/routing.md; all costs are in microseconds of equivalent round-trip time.
 *
 * Debounce: the node layer calls route_mark_dirty(now) on every change (lsdb_insert returning
 * LSDB_CHANGED, lsdb_remove, lsdb_set_penalty returning 1, a membership change), arms a timer
 * at route_next_deadline(), and calls route_compute when route_due(now). A lone change is acted
 * on after settle_ms; a burst costs at most one computation per min_interval_ms, and no change
 * waits longer than max(settle_ms, min_interval_ms). */
#ifndef POPMESH_MESH_ROUTE_H
#define POPMESH_MESH_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh/linkstate.h"

typedef struct route_config {
    uint32_t hop_us;               /* 500: cost of one PoP-to-PoP hop on top of its RTT */
    uint32_t loss_us_per_permille; /* 1000: 1% loss costs like 10 ms more RTT */
    uint16_t loss_cutoff_permille; /* 500: a link losing this much or more is not used */
    uint32_t load_us_per_permille; /* 50: a fully loaded PoP costs like 50 ms more RTT */
    uint32_t unhealthy_us;         /* 1000000000: a PoP with bad health (its ingress down) costs
                                    * like 1000 s more RTT: more than any path of usable links,
                                    * so it carries transit or egresses only as a last resort */
    uint32_t degraded_site_us;     /* 200000: a DEGRADED tunnel costs like 200 ms more RTT */
    uint32_t settle_ms;            /* 20: wait after the first change, to batch a burst */
    uint32_t min_interval_ms;      /* 200: at most one computation per this many ms */
} route_config_t;

/* Fills the defaults above. */
void route_config_defaults(route_config_t *cfg);

/* ---- the route table ------------------------------------------------------------------- */

typedef struct route_table route_table_t;

/* One path from self. hops is borrowed from the table (valid until route_table_destroy). */
typedef struct route_path {
    uint64_t egress;      /* last PoP of the path: the one whose tunnel reaches the site */
    uint64_t next_hop;    /* first PoP after self; self itself when egress is self */
    uint64_t cost_us;     /* total cost, tunnel RTT and penalties included */
    const uint64_t *hops; /* PoP ids from self to egress, both included */
    uint32_t n_hops;      /* >= 1 */
} route_path_t;

typedef struct route_entry {
    uint64_t site;
    route_path_t primary;
    bool has_backup;
    route_path_t backup; /* only if has_backup */
} route_entry_t;

/* Routes to site. 0; -ENOENT if no record mentions the site; -EHOSTUNREACH if it is known
 * but offline everywhere or attached only to PoPs this one cannot reach. */
int route_table_lookup(const route_table_t *t, uint64_t site, route_entry_t *out);
/* The path from self to PoP pop (egress = pop, cost without any tunnel). 0, -ENOENT if pop
 * is unknown or unreachable. pop == self gives a one-hop path with cost 0. */
int route_table_to_pop(const route_table_t *t, uint64_t pop, route_path_t *out);
/* The next hop from self toward pop, for relaying frames. 0 or -ENOENT. */
int route_table_next_hop(const route_table_t *t, uint64_t pop, uint64_t *next_hop);

/* Every site the table knows, reachable or not, by increasing site id: for meshctl. Returns
 * 0, -EHOSTUNREACH (out->site set, no path), or -ENOENT past the end. */
size_t route_table_site_count(const route_table_t *t);
int route_table_site_at(const route_table_t *t, size_t i, route_entry_t *out);

typedef struct route_table_info {
    uint64_t self;
    uint64_t generation;     /* lsdb_generation() of the database it was computed from */
    uint32_t pops;           /* PoPs in the graph (records held, plus self) */
    uint32_t pops_reachable; /* self included */
    uint32_t links;          /* usable undirected links */
    uint32_t sites;          /* sites known */
    uint32_t sites_reachable;
    uint32_t sites_with_backup;
} route_table_info_t;
void route_table_get_info(const route_table_t *t, route_table_info_t *out);

/* Accepts NULL; sets *tp = NULL. */
void route_table_destroy(route_table_t **tp);

/* ---- the computation and its debounce -------------------------------------------------- */

typedef struct route route_t;

/* Copies cfg (NULL: defaults). Never NULL (aborts on OOM). */
route_t *route_new(const route_config_t *cfg);
/* Accepts NULL; sets *rp = NULL. */
void route_destroy(route_t **rp);

/* Computes the routes of self_id over db at now_ms, and clears the dirty mark. *out: caller
 * owns the result (route_table_destroy); it does not refer to db, which may change or go
 * away. 0, or -EINVAL for self_id 0. Self need not hold a record (then nothing but self is
 * reachable). Scratch memory is allocated and freed inside the call. */
int route_compute(route_t *r, const lsdb_t *db, uint64_t self_id, uint64_t now_ms,
                  route_table_t **out);

/* The routes of self_id over db using only the PoPs allow(ctx, id) accepts besides self (a
 * resource that may cross only PoPs with some label): the others neither relay nor egress.
 * Leaves r's debounce alone (a table for one purpose, computed when the caller needs it). */
typedef bool (*route_allow_fn)(void *ctx, uint64_t pop);
int route_compute_filtered(route_t *r, const lsdb_t *db, uint64_t self_id, route_allow_fn allow,
                           void *allow_ctx, route_table_t **out);

/* Something changed at now_ms. The first mark after a computation starts the clock; later
 * ones do not move the deadline. */
void route_mark_dirty(route_t *r, uint64_t now_ms);
bool route_is_dirty(const route_t *r);
/* True if dirty and now_ms >= route_next_deadline(). */
bool route_due(const route_t *r, uint64_t now_ms);
/* When to compute next (absolute ms): max(dirty_since + settle_ms, last_compute +
 * min_interval_ms); UINT64_MAX when clean. */
uint64_t route_next_deadline(const route_t *r);

#endif
