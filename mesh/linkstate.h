/* linkstate: the link-state record every PoP advertises, its wire codec, and the database of
 * the records a PoP holds (one per origin). Sans-I/O: no clock, no socket.
 *
 * A record says, from its origin's point of view: "these are the PoPs I talk to and how well
 * (RTT, loss), and these are the sites attached to me (tunnel RTT, state)", stamped with a
 * sequence number. Records ride the gossip; every PoP keeps the newest record of every origin
 * and computes its routes from them (mesh/route.h). The model and the cost rules are in
 * docs/routing.md.
 *
 * Wire format: one msgpack array
 *
 *     [LS_VERSION, origin: uint, seq: uint,
 *      links: [[peer: uint, rtt_us: uint, loss_permille: uint, ...], ...],
 *      sites: [[site: uint, rtt_us: uint, state: uint, [flags: uint], ...], ...],
 *      ...]
 *
 *   origin, peer, site  64-bit ids, never 0; a link never names its own origin
 *   seq                 newer record = larger seq. Use the origin's wall-clock time in ms at
 *                       publication (as health vectors do) so it keeps growing across restarts
 *   rtt_us              smoothed round-trip time in microseconds, at most LS_RTT_MAX_US
 *   loss_permille       0..1000 (1000: the origin probes the peer and hears nothing)
 *   state               enum ls_site_state; values this version does not know are decoded
 *                       and treated as not usable
 *   links, sites        sorted by strictly increasing id (so duplicates cannot exist), at most
 *                       LS_LINKS_MAX and LS_SITES_MAX entries
 *
 * Fields after the last known one, in the record and in each link or site entry, are skipped:
 * that is the room for later fields without a version bump. A change of the meaning of an
 * existing field bumps LS_VERSION; a record of another version is refused.
 *
 * The decoder reads through mpr (common/mp.h): every length is checked before it is read, the
 * first inconsistency refuses the whole record (-EBADMSG), nothing is half-applied. */
#ifndef POPMESH_MESH_LINKSTATE_H
#define POPMESH_MESH_LINKSTATE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LS_VERSION      1
#define LS_LINKS_MAX    16        /* links per record: the origin's best neighbours */
#define LS_SITES_MAX    256       /* sites per record */
#define LS_RTT_MAX_US   60000000u /* us: 60 s; anything slower is refused as nonsense */
#define LS_LOSS_MAX     1000      /* permille */
#define LS_RECORD_MAX   8192      /* bytes of one encoded record; = SWIM_PAYLOAD_MAX */
#define LS_RANK_LOSS_US 1000u     /* us per permille of loss when ranking links for the cap */

enum ls_site_state {
    LS_SITE_OFFLINE = 0,  /* tunnel down: not an egress for this site */
    LS_SITE_ONLINE = 1,   /* tunnel up and healthy */
    LS_SITE_DEGRADED = 2, /* tunnel up, but flapping or the site's checks fail: penalised */
};

typedef struct ls_link {
    uint64_t peer;          /* PoP id, != 0, != origin */
    uint32_t rtt_us;        /* microseconds, <= LS_RTT_MAX_US */
    uint16_t loss_permille; /* 0..LS_LOSS_MAX */
} ls_link_t;

typedef struct ls_site {
    uint64_t site;   /* site id, != 0 */
    uint32_t rtt_us; /* tunnel round trip, microseconds, <= LS_RTT_MAX_US */
    uint8_t state;   /* enum ls_site_state; unknown values are not usable */
    uint8_t flags;   /* LS_SITE_PRIMARY: the site calls this PoP its primary (display only:
                      * routing goes by cost) */
} ls_site_t;
#define LS_SITE_PRIMARY 0x01

/* A whole record, by value (about 4.4 KiB: keep it off hot stacks in loops). links and sites
 * are sorted by strictly increasing peer / site id. */
typedef struct ls_record {
    uint64_t origin; /* PoP id, != 0 */
    uint64_t seq;    /* larger = newer */
    uint32_t n_links;
    ls_link_t links[LS_LINKS_MAX];
    uint32_t n_sites;
    ls_site_t sites[LS_SITES_MAX];
} ls_record_t;

/* ---- building a record ----------------------------------------------------------------- */

/* Empties rec and sets its origin and seq. */
void ls_record_init(ls_record_t *rec, uint64_t origin, uint64_t seq);
/* Adds (or updates) the link to peer, keeping links sorted and capped to the LS_LINKS_MAX
 * best by rank = rtt_us + loss_permille * LS_RANK_LOSS_US (ties: lower peer id wins).
 * Returns 0 if the link is held, -ENOSPC if the record is full of better links (nothing
 * changed; a worse link is evicted otherwise), -EINVAL for a bad peer or value. */
int ls_record_add_link(ls_record_t *rec, uint64_t peer, uint32_t rtt_us, uint16_t loss_permille);
/* Adds (or updates) a site, keeping sites sorted. 0, -ENOSPC when LS_SITES_MAX sites are
 * held, -EINVAL for a bad site id or rtt. */
int ls_record_add_site(ls_record_t *rec, uint64_t site, uint32_t rtt_us, uint8_t state);
/* Checks every rule of the wire format on a record in memory. 0 or -EINVAL (why set). */
int ls_record_validate(const ls_record_t *rec, const char **why);

/* ---- codec ----------------------------------------------------------------------------- */

/* Packs rec with msgpack-c. -EINVAL (nothing packed) if rec does not validate. */
int ls_record_pack(msgpack_packer *pk, const ls_record_t *rec);
/* Appends the encoding of rec to out. 0 or -EINVAL. */
int ls_record_encode(const ls_record_t *rec, msgpack_sbuffer *out);
/* Decodes one record (exactly one msgpack object, nothing after it, at most LS_RECORD_MAX
 * bytes) into *rec. 0, or -EBADMSG with *why (if not NULL) set to a static string naming the
 * first inconsistency; *rec is then undefined. */
int ls_record_decode(const void *buf, size_t len, ls_record_t *rec, const char **why);

/* ---- the database ---------------------------------------------------------------------- */

typedef struct lsdb lsdb_t;

/* Outcome of offering a record to the database. */
enum lsdb_result {
    LSDB_STALE = 0,     /* seq not newer than the one held (or than a removed origin's): ignored */
    LSDB_REFRESHED = 1, /* newer seq, same links and sites: held, routes unaffected */
    LSDB_CHANGED = 2,   /* new origin, or its links or sites changed: routes must be recomputed */
};

/* A record as held, plus the node's penalty inputs. Pointers are borrowed until the next call
 * that changes the database. */
typedef struct lsdb_entry {
    uint64_t origin;
    uint64_t seq;
    const ls_link_t *links; /* sorted by peer */
    uint32_t n_links;
    const ls_site_t *sites; /* sorted by site */
    uint32_t n_sites;
    uint16_t load_permille; /* from lsdb_set_penalty; 0 if never set */
    bool healthy;           /* from lsdb_set_penalty; true if never set */
} lsdb_entry_t;

typedef struct lsdb_stats {
    uint64_t malformed; /* lsdb_receive: records refused by the decoder */
    uint64_t stale;     /* records ignored: seq not newer */
    uint64_t changed;   /* records that changed links or sites (or were new) */
    uint64_t refreshed; /* newer seq, same content */
    uint64_t removed;   /* origins removed */
} lsdb_stats_t;

/* An empty database. Never NULL (aborts on OOM). */
lsdb_t *lsdb_new(void);
/* Accepts NULL; sets *dbp = NULL. */
void lsdb_destroy(lsdb_t **dbp);

/* Offers a record (copied). Returns an enum lsdb_result, or -EINVAL if rec does not
 * validate. The caller offers only records of registered, live members: the database holds
 * whatever it is given. */
int lsdb_insert(lsdb_t *db, const ls_record_t *rec);
/* Decodes buf and offers the record. An enum lsdb_result, or -EBADMSG (counted in
 * stats.malformed, nothing changed). */
int lsdb_receive(lsdb_t *db, const void *buf, size_t len);
/* Forgets origin's record (member dead or removed). Its seq is remembered, so a delayed copy
 * of the same record cannot bring it back; a newer one can (the node came back and
 * republished). Returns 1 if a record was removed, 0 if none was held. */
int lsdb_remove(lsdb_t *db, uint64_t origin);
/* Sets the penalty inputs of a node (from its health vector): load in permille (clamped to
 * 1000), and whether its health is good. Kept even while the node has no record. Returns 1 if
 * anything changed, 0 if not, -EINVAL for id 0. */
int lsdb_set_penalty(lsdb_t *db, uint64_t node, uint16_t load_permille, bool healthy);

/* Records held. */
size_t lsdb_count(const lsdb_t *db);
/* The i-th record, 0 <= i < lsdb_count (order unspecified, stable until the next change).
 * 0 or -ENOENT. */
int lsdb_entry_at(const lsdb_t *db, size_t i, lsdb_entry_t *out);
/* origin's record. 0 or -ENOENT. */
int lsdb_get(const lsdb_t *db, uint64_t origin, lsdb_entry_t *out);

/* The usable link between PoPs a and b as routing sees it (docs/routing.md, "Links"):
 *   - both a and b must hold a record;
 *   - both claim the link: rtt and loss are the larger of the two claims;
 *   - only one claims it: usable (with that claim) only if the silent end's record is full
 *     (LS_LINKS_MAX links), since then the cap may have hidden the link; a silent end with
 *     room to spare is saying it does not reach the other one.
 * Fills out->peer = b, rtt_us, loss_permille. 0, or -ENOENT if there is no usable link. */
int lsdb_link(const lsdb_t *db, uint64_t a, uint64_t b, ls_link_t *out);

/* Increases on every change that can move a route (LSDB_CHANGED, a removal, a penalty change). */
uint64_t lsdb_generation(const lsdb_t *db);
void lsdb_get_stats(const lsdb_t *db, lsdb_stats_t *st);

#endif
