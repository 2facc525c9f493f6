/* linkstate: records, codec, database.
 *
 * The database is two structures:
 *   - a node table, open addressing keyed by node id, one slot per node ever mentioned to the
 *     database (a record, a removal, a penalty). A slot holds the highest seq seen (also after
 *     removal: that is the tombstone that keeps a delayed copy from resurrecting a dead node),
 *     the penalty inputs, and the index of the node's record in the dense array, or -1;
 *   - a dense array of the records held, so the route computation walks them without holes.
 * Slots are never deleted; nodes come only from the member registry, so the table is bounded
 * by the number of members a mesh has ever had (tens of bytes each).
 *
 * Records are canonical (links and sites sorted by strictly increasing id), so "did anything
 * change" is a field-by-field comparison and a link lookup is a binary search. */
#include "mesh/linkstate.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/mp.h"
#include "common/xmalloc.h"

/* ---- records --------------------------------------------------------------------------- */

void ls_record_init(ls_record_t *rec, uint64_t origin, uint64_t seq)
{
    memset(rec, 0, sizeof(*rec));
    rec->origin = origin;
    rec->seq = seq;
}

static uint64_t link_rank(uint32_t rtt_us, uint16_t loss_permille)
{
    return (uint64_t)rtt_us + (uint64_t)loss_permille * LS_RANK_LOSS_US;
}

/* True if link a ranks worse than link b (kept last when capping). */
static bool link_worse(const ls_link_t *a, const ls_link_t *b)
{
    uint64_t ra = link_rank(a->rtt_us, a->loss_permille);
    uint64_t rb = link_rank(b->rtt_us, b->loss_permille);
    return ra != rb ? ra > rb : a->peer > b->peer;
}

int ls_record_add_link(ls_record_t *rec, uint64_t peer, uint32_t rtt_us, uint16_t loss_permille)
{
    if (peer == 0 || peer == rec->origin || rtt_us > LS_RTT_MAX_US || loss_permille > LS_LOSS_MAX)
        return -EINVAL;
    ls_link_t nl = {.peer = peer, .rtt_us = rtt_us, .loss_permille = loss_permille};
    uint32_t pos = 0;
    while (pos < rec->n_links && rec->links[pos].peer < peer)
        pos++;
    if (pos < rec->n_links && rec->links[pos].peer == peer) {
        rec->links[pos] = nl;
        return 0;
    }
    if (rec->n_links == LS_LINKS_MAX) {
        uint32_t worst = 0;
        for (uint32_t i = 1; i < rec->n_links; i++)
            if (link_worse(&rec->links[i], &rec->links[worst]))
                worst = i;
        if (!link_worse(&rec->links[worst], &nl))
            return -ENOSPC;
        memmove(&rec->links[worst], &rec->links[worst + 1],
                (rec->n_links - worst - 1) * sizeof(ls_link_t));
        rec->n_links--;
        if (worst < pos)
            pos--;
    }
    memmove(&rec->links[pos + 1], &rec->links[pos], (rec->n_links - pos) * sizeof(ls_link_t));
    rec->links[pos] = nl;
    rec->n_links++;
    return 0;
}

int ls_record_add_site(ls_record_t *rec, uint64_t site, uint32_t rtt_us, uint8_t state)
{
    if (site == 0 || rtt_us > LS_RTT_MAX_US)
        return -EINVAL;
    ls_site_t ns = {.site = site, .rtt_us = rtt_us, .state = state, .flags = 0};
    /* Binary search: records hold up to 256 sites and are rebuilt often. */
    uint32_t lo = 0, hi = rec->n_sites;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (rec->sites[mid].site < site)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < rec->n_sites && rec->sites[lo].site == site) {
        rec->sites[lo] = ns;
        return 0;
    }
    if (rec->n_sites == LS_SITES_MAX)
        return -ENOSPC;
    memmove(&rec->sites[lo + 1], &rec->sites[lo], (rec->n_sites - lo) * sizeof(ls_site_t));
    rec->sites[lo] = ns;
    rec->n_sites++;
    return 0;
}

#define INVALID(msg)                                                                               \
    do {                                                                                           \
        if (why)                                                                                   \
            *why = (msg);                                                                          \
        return -EINVAL;                                                                            \
    } while (0)

int ls_record_validate(const ls_record_t *rec, const char **why)
{
    if (rec->origin == 0)
        INVALID("origin is 0");
    if (rec->n_links > LS_LINKS_MAX)
        INVALID("too many links");
    if (rec->n_sites > LS_SITES_MAX)
        INVALID("too many sites");
    for (uint32_t i = 0; i < rec->n_links; i++) {
        const ls_link_t *l = &rec->links[i];
        if (l->peer == 0 || l->peer == rec->origin)
            INVALID("link peer is 0 or the origin");
        if (i && l->peer <= rec->links[i - 1].peer)
            INVALID("links not sorted by peer, or a duplicate");
        if (l->rtt_us > LS_RTT_MAX_US)
            INVALID("link rtt out of range");
        if (l->loss_permille > LS_LOSS_MAX)
            INVALID("link loss out of range");
    }
    for (uint32_t i = 0; i < rec->n_sites; i++) {
        const ls_site_t *s = &rec->sites[i];
        if (s->site == 0)
            INVALID("site id is 0");
        if (i && s->site <= rec->sites[i - 1].site)
            INVALID("sites not sorted by id, or a duplicate");
        if (s->rtt_us > LS_RTT_MAX_US)
            INVALID("site rtt out of range");
    }
    return 0;
}

/* ---- codec ----------------------------------------------------------------------------- */

int ls_record_pack(msgpack_packer *pk, const ls_record_t *rec)
{
    if (ls_record_validate(rec, NULL))
        return -EINVAL;
    msgpack_pack_array(pk, 5);
    msgpack_pack_uint64(pk, LS_VERSION);
    msgpack_pack_uint64(pk, rec->origin);
    msgpack_pack_uint64(pk, rec->seq);
    msgpack_pack_array(pk, rec->n_links);
    for (uint32_t i = 0; i < rec->n_links; i++) {
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint64(pk, rec->links[i].peer);
        msgpack_pack_uint32(pk, rec->links[i].rtt_us);
        msgpack_pack_uint16(pk, rec->links[i].loss_permille);
    }
    msgpack_pack_array(pk, rec->n_sites);
    for (uint32_t i = 0; i < rec->n_sites; i++) {
        /* flags only when set, so a record without them encodes as before the field. */
        msgpack_pack_array(pk, rec->sites[i].flags ? 4 : 3);
        msgpack_pack_uint64(pk, rec->sites[i].site);
        msgpack_pack_uint32(pk, rec->sites[i].rtt_us);
        msgpack_pack_uint8(pk, rec->sites[i].state);
        if (rec->sites[i].flags)
            msgpack_pack_uint8(pk, rec->sites[i].flags);
    }
    return 0;
}

int ls_record_encode(const ls_record_t *rec, msgpack_sbuffer *out)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    return ls_record_pack(&pk, rec);
}

#define BAD(msg)                                                                                   \
    do {                                                                                           \
        if (why)                                                                                   \
            *why = (msg);                                                                          \
        return -EBADMSG;                                                                           \
    } while (0)

/* Skips the fields of an entry (or of the record) after the `known` ones this version reads. */
static int skip_extra(mpr_t *r, uint32_t count, uint32_t known)
{
    for (uint32_t i = known; i < count; i++)
        if (mpr_skip(r))
            return -EBADMSG;
    return 0;
}

int ls_record_decode(const void *buf, size_t len, ls_record_t *rec, const char **why)
{
    mpr_t r;
    uint32_t n, count;
    uint64_t v, a, b;

    if (len > LS_RECORD_MAX)
        BAD("record larger than LS_RECORD_MAX");
    mpr_init(&r, buf, len);
    if (mpr_array(&r, &n) || n < 5)
        BAD("not an array of at least 5 fields");
    if (mpr_uint(&r, &v) || v != LS_VERSION)
        BAD("unknown version");
    if (mpr_uint(&r, &rec->origin) || rec->origin == 0)
        BAD("bad origin");
    if (mpr_uint(&r, &rec->seq))
        BAD("bad seq");

    if (mpr_array(&r, &count) || count > LS_LINKS_MAX)
        BAD("bad link list");
    rec->n_links = count;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t fields;
        ls_link_t *l = &rec->links[i];
        if (mpr_array(&r, &fields) || fields < 3)
            BAD("link is not an array of at least 3 fields");
        if (mpr_uint(&r, &l->peer) || mpr_uint(&r, &a) || mpr_uint(&r, &b))
            BAD("link field is not an unsigned integer");
        if (l->peer == 0 || l->peer == rec->origin)
            BAD("link peer is 0 or the origin");
        if (i && l->peer <= rec->links[i - 1].peer)
            BAD("links not sorted by peer, or a duplicate");
        if (a > LS_RTT_MAX_US)
            BAD("link rtt out of range");
        if (b > LS_LOSS_MAX)
            BAD("link loss out of range");
        l->rtt_us = (uint32_t)a;
        l->loss_permille = (uint16_t)b;
        if (skip_extra(&r, fields, 3))
            BAD("bad extra field in a link");
    }

    if (mpr_array(&r, &count) || count > LS_SITES_MAX)
        BAD("bad site list");
    rec->n_sites = count;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t fields;
        ls_site_t *s = &rec->sites[i];
        if (mpr_array(&r, &fields) || fields < 3)
            BAD("site is not an array of at least 3 fields");
        if (mpr_uint(&r, &s->site) || mpr_uint(&r, &a) || mpr_uint(&r, &b))
            BAD("site field is not an unsigned integer");
        if (s->site == 0)
            BAD("site id is 0");
        if (i && s->site <= rec->sites[i - 1].site)
            BAD("sites not sorted by id, or a duplicate");
        if (a > LS_RTT_MAX_US)
            BAD("site rtt out of range");
        if (b > UINT8_MAX)
            BAD("site state out of range");
        s->rtt_us = (uint32_t)a;
        s->state = (uint8_t)b;
        s->flags = 0;
        if (fields >= 4) {
            if (mpr_uint(&r, &a) || a > UINT8_MAX)
                BAD("site flags are not an unsigned byte");
            s->flags = (uint8_t)a;
        }
        if (skip_extra(&r, fields, 4))
            BAD("bad extra field in a site");
    }

    if (skip_extra(&r, n, 5))
        BAD("bad extra field in the record");
    if (r.left != 0)
        BAD("trailing bytes after the record");
    return 0;
}

/* ---- database -------------------------------------------------------------------------- */

struct lrec {
    uint64_t origin;
    uint64_t seq;
    uint32_t n_links;
    ls_link_t links[LS_LINKS_MAX];
    uint32_t n_sites;
    ls_site_t *sites; /* n_sites entries, owned; NULL when 0 */
};

struct slot {
    uint64_t id;            /* 0 = empty slot */
    uint64_t seq;           /* highest seq held or removed */
    bool seen;              /* seq is meaningful (a record was held once) */
    int32_t rec;            /* index into db->recs, or -1 */
    uint16_t load_permille; /* 0..1000 */
    bool healthy;
};

struct lsdb {
    struct slot *slots;
    size_t cap;  /* slots, a power of two */
    size_t used; /* non-empty slots */
    struct lrec *recs;
    size_t n_recs, recs_cap;
    uint64_t generation;
    lsdb_stats_t st;
};

static size_t hash_id(uint64_t id)
{
    /* splitmix64 finaliser: ids may be anything, including small sequential test ids. */
    id ^= id >> 30;
    id *= 0xbf58476d1ce4e5b9ull;
    id ^= id >> 27;
    id *= 0x94d049bb133111ebull;
    id ^= id >> 31;
    return (size_t)id;
}

static struct slot *slot_find(const lsdb_t *db, uint64_t id)
{
    size_t mask = db->cap - 1;
    for (size_t i = hash_id(id) & mask;; i = (i + 1) & mask) {
        if (db->slots[i].id == id)
            return &db->slots[i];
        if (db->slots[i].id == 0)
            return NULL;
    }
}

static void slots_grow(lsdb_t *db)
{
    struct slot *old = db->slots;
    size_t old_cap = db->cap;
    db->cap = old_cap * 2;
    db->slots = xcalloc(db->cap, sizeof(struct slot));
    size_t mask = db->cap - 1;
    for (size_t k = 0; k < old_cap; k++) {
        if (old[k].id == 0)
            continue;
        size_t i = hash_id(old[k].id) & mask;
        while (db->slots[i].id != 0)
            i = (i + 1) & mask;
        db->slots[i] = old[k];
    }
    free(old);
}

static struct slot *slot_get(lsdb_t *db, uint64_t id)
{
    struct slot *s = slot_find(db, id);
    if (s)
        return s;
    if ((db->used + 1) * 2 > db->cap)
        slots_grow(db);
    size_t mask = db->cap - 1;
    size_t i = hash_id(id) & mask;
    while (db->slots[i].id != 0)
        i = (i + 1) & mask;
    s = &db->slots[i];
    *s = (struct slot){.id = id, .rec = -1, .healthy = true};
    db->used++;
    return s;
}

lsdb_t *lsdb_new(void)
{
    lsdb_t *db = xcalloc(1, sizeof(*db));
    db->cap = 64;
    db->slots = xcalloc(db->cap, sizeof(struct slot));
    return db;
}

void lsdb_destroy(lsdb_t **dbp)
{
    if (!dbp || !*dbp)
        return;
    lsdb_t *db = *dbp;
    for (size_t i = 0; i < db->n_recs; i++)
        free(db->recs[i].sites);
    free(db->recs);
    free(db->slots);
    free(db);
    *dbp = NULL;
}

static bool same_content(const struct lrec *h, const ls_record_t *rec)
{
    if (h->n_links != rec->n_links || h->n_sites != rec->n_sites)
        return false;
    for (uint32_t i = 0; i < h->n_links; i++) {
        const ls_link_t *a = &h->links[i], *b = &rec->links[i];
        if (a->peer != b->peer || a->rtt_us != b->rtt_us || a->loss_permille != b->loss_permille)
            return false;
    }
    for (uint32_t i = 0; i < h->n_sites; i++) {
        const ls_site_t *a = &h->sites[i], *b = &rec->sites[i];
        if (a->site != b->site || a->rtt_us != b->rtt_us || a->state != b->state)
            return false;
    }
    return true;
}

static void copy_content(struct lrec *h, const ls_record_t *rec)
{
    h->origin = rec->origin;
    h->seq = rec->seq;
    h->n_links = rec->n_links;
    memcpy(h->links, rec->links, rec->n_links * sizeof(ls_link_t));
    if (h->n_sites != rec->n_sites) {
        free(h->sites);
        h->sites = rec->n_sites ? xmalloc(rec->n_sites * sizeof(ls_site_t)) : NULL;
    }
    h->n_sites = rec->n_sites;
    if (rec->n_sites)
        memcpy(h->sites, rec->sites, rec->n_sites * sizeof(ls_site_t));
}

int lsdb_insert(lsdb_t *db, const ls_record_t *rec)
{
    if (ls_record_validate(rec, NULL))
        return -EINVAL;
    struct slot *s = slot_get(db, rec->origin);
    if (s->seen && rec->seq <= s->seq) {
        db->st.stale++;
        return LSDB_STALE;
    }
    s->seen = true;
    s->seq = rec->seq;
    if (s->rec >= 0) {
        struct lrec *h = &db->recs[s->rec];
        if (same_content(h, rec)) {
            h->seq = rec->seq;
            /* Display-only fields (site flags) may still have changed. */
            for (uint32_t i = 0; i < h->n_sites; i++)
                h->sites[i].flags = rec->sites[i].flags;
            db->st.refreshed++;
            return LSDB_REFRESHED;
        }
        copy_content(h, rec);
    } else {
        if (db->n_recs == db->recs_cap) {
            db->recs_cap = db->recs_cap ? db->recs_cap * 2 : 16;
            db->recs = xrealloc(db->recs, db->recs_cap * sizeof(struct lrec));
        }
        struct lrec *h = &db->recs[db->n_recs];
        memset(h, 0, sizeof(*h));
        copy_content(h, rec);
        s->rec = (int32_t)db->n_recs++;
    }
    db->st.changed++;
    db->generation++;
    return LSDB_CHANGED;
}

int lsdb_receive(lsdb_t *db, const void *buf, size_t len)
{
    ls_record_t *rec = xmalloc(sizeof(*rec)); /* 4.4 KiB: not on the caller's stack */
    int rc = ls_record_decode(buf, len, rec, NULL);
    if (rc == 0)
        rc = lsdb_insert(db, rec);
    else
        db->st.malformed++;
    free(rec);
    return rc;
}

int lsdb_remove(lsdb_t *db, uint64_t origin)
{
    struct slot *s = origin ? slot_find(db, origin) : NULL;
    if (!s || s->rec < 0)
        return 0;
    size_t i = (size_t)s->rec, last = db->n_recs - 1;
    free(db->recs[i].sites);
    if (i != last) {
        db->recs[i] = db->recs[last];
        slot_find(db, db->recs[i].origin)->rec = (int32_t)i;
    }
    db->n_recs--;
    s->rec = -1;
    db->st.removed++;
    db->generation++;
    return 1;
}

int lsdb_set_penalty(lsdb_t *db, uint64_t node, uint16_t load_permille, bool healthy)
{
    if (node == 0)
        return -EINVAL;
    if (load_permille > 1000)
        load_permille = 1000;
    struct slot *s = slot_get(db, node);
    if (s->load_permille == load_permille && s->healthy == healthy)
        return 0;
    s->load_permille = load_permille;
    s->healthy = healthy;
    db->generation++;
    return 1;
}

size_t lsdb_count(const lsdb_t *db)
{
    return db->n_recs;
}

static void fill_entry(const struct lrec *h, const struct slot *s, lsdb_entry_t *out)
{
    out->origin = h->origin;
    out->seq = h->seq;
    out->links = h->links;
    out->n_links = h->n_links;
    out->sites = h->sites;
    out->n_sites = h->n_sites;
    out->load_permille = s->load_permille;
    out->healthy = s->healthy;
}

int lsdb_entry_at(const lsdb_t *db, size_t i, lsdb_entry_t *out)
{
    if (i >= db->n_recs)
        return -ENOENT;
    const struct lrec *h = &db->recs[i];
    fill_entry(h, slot_find(db, h->origin), out);
    return 0;
}

int lsdb_get(const lsdb_t *db, uint64_t origin, lsdb_entry_t *out)
{
    const struct slot *s = origin ? slot_find(db, origin) : NULL;
    if (!s || s->rec < 0)
        return -ENOENT;
    fill_entry(&db->recs[s->rec], s, out);
    return 0;
}

static const ls_link_t *find_link(const struct lrec *h, uint64_t peer)
{
    uint32_t lo = 0, hi = h->n_links;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (h->links[mid].peer < peer)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < h->n_links && h->links[lo].peer == peer ? &h->links[lo] : NULL;
}

int lsdb_link(const lsdb_t *db, uint64_t a, uint64_t b, ls_link_t *out)
{
    if (a == 0 || b == 0 || a == b)
        return -ENOENT;
    const struct slot *sa = slot_find(db, a), *sb = slot_find(db, b);
    if (!sa || !sb || sa->rec < 0 || sb->rec < 0)
        return -ENOENT;
    const struct lrec *ra = &db->recs[sa->rec], *rb = &db->recs[sb->rec];
    const ls_link_t *ab = find_link(ra, b), *ba = find_link(rb, a);
    if (ab && ba) {
        /* Both ends measured: the larger claim. See docs/routing.md ("Links"). */
        out->rtt_us = ab->rtt_us > ba->rtt_us ? ab->rtt_us : ba->rtt_us;
        out->loss_permille =
            ab->loss_permille > ba->loss_permille ? ab->loss_permille : ba->loss_permille;
    } else if (ab && rb->n_links >= LS_LINKS_MAX) {
        out->rtt_us = ab->rtt_us;
        out->loss_permille = ab->loss_permille;
    } else if (ba && ra->n_links >= LS_LINKS_MAX) {
        out->rtt_us = ba->rtt_us;
        out->loss_permille = ba->loss_permille;
    } else {
        return -ENOENT;
    }
    out->peer = b;
    return 0;
}

uint64_t lsdb_generation(const lsdb_t *db)
{
    return db->generation;
}

void lsdb_get_stats(const lsdb_t *db, lsdb_stats_t *st)
{
    *st = db->st;
}
