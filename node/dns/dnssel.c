/* dnssel: which PoPs a DNS client gets (the rule is in dnssel.h; this is how it is computed).
 *
 * DETERMINISM
 *
 * Every PoP answers for the mesh, and a resolver may ask any of them, so two PoPs holding the
 * same view must give a client the same answer, or caches and clients see the mesh flap.
 * Everything below therefore depends only on the view's content, never on the order it was
 * built in (dnsview_finish sorts it) nor on the PoP that answers, except where the rule says
 * so (an unmapped client gets the answering PoP first). The order of PoPs is total: region
 * first (or self), then distance, then a rendezvous hash, then the PoP index (ids are unique,
 * so equal hashes still order the same everywhere).
 *
 * Distances compare in whole kilometres. Two PoPs of one city (a few hundred metres apart)
 * then tie and the hash spreads names over both instead of sending everything to whichever
 * sits a street closer; and a PoP built with another libm, whose asin may differ in the last
 * bit, can only disagree when a distance falls on a kilometre boundary.
 *
 * The rendezvous hash is FNV-1a (64 bits) of the name, then for each PoP a 64-bit finaliser
 * (MurmurHash3's fmix64) of that hash mixed with the PoP id's. Fixed, portable and cheap (one
 * pass over the name per query, a few multiplications per PoP). Its strength does not matter:
 * a client choosing names to collide only chooses between PoPs that are equally good for it.
 * Highest-random-weight hashing means a PoP joining or leaving moves only the names it wins
 * or held, not every name.
 *
 * THE LONGEST PREFIX MATCH AND THE ECS SCOPE
 *
 * dnsview_finish sorts the rules by family, longest prefix first, then address, and records
 * the runs of one prefix length (geo_groups). A lookup walks the runs of the client's family
 * from the longest, binary searching each for the client's address masked to that length;
 * the first hit is the longest match. The same walk yields the scope: the answer depends only
 * on which rule matched, so a prefix client/s may be cached as one answer when no address in
 * it matches another rule. Every address of client/s with s >= m (m: the matched length) is
 * inside the matched rule; only a longer rule can take some of them, and a longer rule R
 * (which does not contain the client, or it would have matched) overlaps client/s exactly
 * when the common prefix of R and the client is at least s bits. So
 *     scope = max(m, 1 + max over longer rules R of common_prefix(R, client)),
 * capped at the source prefix length. Within one run, sorted by address, the rule sharing
 * the longest prefix with the client is next to where the client would be inserted, so each
 * run costs one binary search and two comparisons. An unmapped client has m = 0 and every
 * rule of its family is "longer", so the scope is 0 only when no rule of its family exists.
 *
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d, a prefix of at least 96 bits) is an IPv4
 * client: IPv4 rules apply, and the scope is 96 plus the IPv4 scope. Conversely, for a native
 * IPv6 client, the IPv4 rules stand for rules inside ::ffff:0:0/96, which counts as one more
 * longer rule when any IPv4 rule exists. */
#include "node/dns/dnssel.h"

#include <math.h>
#include <string.h>

#define SEL_MAX         256
#define EARTH_RADIUS_KM 6371.0088 /* mean radius (IUGG) */
#define DIST_UNKNOWN    UINT32_MAX

double dnssel_distance_km(double lat1, double lon1, double lat2, double lon2)
{
    const double rad = M_PI / 180.0;
    double dlat = (lat2 - lat1) * rad, dlon = (lon2 - lon1) * rad;
    double s1 = sin(dlat / 2), s2 = sin(dlon / 2);
    double a = s1 * s1 + cos(lat1 * rad) * cos(lat2 * rad) * s2 * s2;
    if (a > 1)
        a = 1;
    return 2 * EARTH_RADIUS_KM * asin(sqrt(a));
}

/* The same great circle from points on the unit sphere: the chord c between them is
 * 2 sin(d/2), which is what haversine computes the square of, without trigonometry but one
 * asin. */
static double place_distance_km(const dns_place_t *a, const dns_place_t *b)
{
    double dx = a->xyz[0] - b->xyz[0], dy = a->xyz[1] - b->xyz[1], dz = a->xyz[2] - b->xyz[2];
    double half = sqrt(dx * dx + dy * dy + dz * dz) / 2;
    if (half > 1)
        half = 1;
    return 2 * EARTH_RADIUS_KM * asin(half);
}

/* ---- hashing ------------------------------------------------------------------------------- */

static uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

static uint64_t name_hash(const char *name)
{
    uint64_t h = UINT64_C(0xcbf29ce484222325);
    for (const unsigned char *p = (const unsigned char *)name; p && *p; p++) {
        h ^= *p;
        h *= UINT64_C(0x100000001b3);
    }
    return fmix64(h);
}

static uint64_t rendezvous(uint64_t hname, uint64_t id)
{
    return fmix64(hname ^ fmix64(id + UINT64_C(0x9e3779b97f4a7c15)));
}

/* ---- geo ----------------------------------------------------------------------------------- */

/* Common prefix of a and b in bits, at most max. */
static unsigned common_prefix(const uint8_t *a, const uint8_t *b, unsigned max)
{
    unsigned n = 0;
    for (unsigned i = 0; n < max; i++) {
        uint8_t x = a[i] ^ b[i];
        if (x == 0) {
            n += 8;
            continue;
        }
        while (!(x & 0x80)) {
            x <<= 1;
            n++;
        }
        break;
    }
    return n < max ? n : max;
}

static void mask(uint8_t *out, const uint8_t *in, unsigned plen)
{
    for (unsigned i = 0; i < 16; i++) {
        unsigned bit = i * 8;
        if (bit >= plen)
            out[i] = 0;
        else if (plen - bit < 8)
            out[i] = in[i] & (uint8_t)(0xff00u >> (plen - bit));
        else
            out[i] = in[i];
    }
}

/* The longest rule of family containing addr (16 bytes, bits past srcplen zero), or DNS_NONE;
 * *scope as the essay above says (in the family's own bits, at most srcplen). */
static size_t geo_match(const dns_view_t *v, uint8_t family, const uint8_t *addr, unsigned srcplen,
                        unsigned *scope)
{
    size_t bytes = family == 4 ? 4 : 16;
    size_t match = DNS_NONE;
    unsigned s = 0, m = 0;
    bool have_v4 = false;

    for (size_t gi = 0; gi < v->ngeo_groups; gi++) {
        const dns_geo_group_t *g = &v->geo_groups[gi];
        if (g->family == 4)
            have_v4 = true;
        if (g->family != family)
            continue;
        uint8_t key[16];
        mask(key, addr, g->plen);
        size_t lo = g->first, hi = g->first + g->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (memcmp(v->geos[mid].addr, key, bytes) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < g->first + g->n && memcmp(v->geos[lo].addr, key, bytes) == 0) {
            match = lo;
            m = g->plen;
            break; /* the runs that follow are shorter */
        }
        /* Not in this run: how close its nearest rules come to the client. */
        if (lo < g->first + g->n) {
            unsigned c = common_prefix(v->geos[lo].addr, addr, g->plen) + 1;
            s = c > s ? c : s;
        }
        if (lo > g->first) {
            unsigned c = common_prefix(v->geos[lo - 1].addr, addr, g->plen) + 1;
            s = c > s ? c : s;
        }
    }
    if (family == 6 && m < 96) {
        /* The IPv4 rules live in ::ffff:0:0/96 (for a native IPv6 client: a mapped one
         * never gets here). The groups were walked in family order, so have_v4 is set when
         * an IPv4 rule exists. */
        static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (have_v4) {
            unsigned c = common_prefix(mapped, addr, 96) + 1;
            s = c > s ? c : s;
        }
    }
    s = m > s ? m : s;
    *scope = s < srcplen ? s : srcplen;
    return match;
}

/* ---- ordering ------------------------------------------------------------------------------ */

typedef struct sel_key {
    uint8_t excluded; /* 1: not a candidate (explain only) */
    uint8_t tier;     /* 0: the client's region (mapped) or the answering PoP (unmapped) */
    uint32_t dist;    /* whole km, DIST_UNKNOWN last */
    uint64_t hash;
    uint16_t idx; /* index into view.pops */
} sel_key_t;

static inline bool key_less(const sel_key_t *a, const sel_key_t *b)
{
    if (a->excluded != b->excluded)
        return a->excluded < b->excluded;
    if (a->tier != b->tier)
        return a->tier < b->tier;
    if (a->dist != b->dist)
        return a->dist < b->dist;
    if (a->hash != b->hash)
        return a->hash < b->hash;
    return a->idx < b->idx;
}

/* Insertion sort for explain (not the query path): at most 256 keys, and the keys are small. */
static void keys_sort(sel_key_t *k, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        sel_key_t x = k[i];
        size_t j = i;
        for (; j > 0 && key_less(&x, &k[j - 1]); j--)
            k[j] = k[j - 1];
        k[j] = x;
    }
}

static bool region_in_answer(const dns_view_t *v, const dns_pick_t *out, size_t region)
{
    for (size_t i = 0; i < out->n; i++)
        if (v->pop_place[out->pops[i]].region == region)
            return true;
    return false;
}

void dnssel_pick(const dns_view_t *v, const dns_zone_t *z, const dns_host_t *host, const char *name,
                 uint8_t family, const dns_client_t *client, dns_pick_t *out, dns_explain_t *ex)
{
    memset(out, 0, sizeof(*out));
    if (ex) {
        memset(ex, 0, sizeof(*ex));
        ex->geo = DNS_NONE;
    }
    if (!v || !v->finished)
        return;
    size_t npops = v->npops < SEL_MAX ? v->npops : SEL_MAX;

    /* 2. Where the client is. */
    size_t geo = DNS_NONE;
    unsigned scope = 0;
    if (client && (client->family == 4 || client->family == 6)) {
        uint8_t fam = client->family;
        unsigned maxlen = fam == 4 ? 32 : 128;
        unsigned plen = client->plen < maxlen ? client->plen : maxlen;
        uint8_t addr[16];
        mask(addr, client->addr, fam == 4 ? (plen < 32 ? plen : 32) : plen);
        if (fam == 4)
            memset(addr + 4, 0, 12);
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        bool v4mapped = fam == 6 && plen >= 96 && memcmp(addr, mapped, 12) == 0;
        if (v4mapped) {
            uint8_t a4[16] = {0};
            memcpy(a4, addr + 12, 4);
            geo = geo_match(v, 4, a4, plen - 96, &scope);
            scope += 96;
        } else {
            geo = geo_match(v, fam, addr, plen, &scope);
        }
        if (v->ngeos == 0)
            scope = 0; /* nothing here depends on the address */
    }
    out->scope = (uint8_t)scope;

    /* The place distances are measured from, and which PoPs come first. */
    const dns_place_t *from = NULL;
    size_t region = DNS_NONE;
    if (geo != DNS_NONE) {
        from = &v->geo_place[geo];
        region = v->geo_place[geo].region;
    } else if (v->self != DNS_NONE && v->self < npops) {
        from = &v->pop_place[v->self];
    }
    if (from && !from->has_loc)
        from = NULL;
    if (ex) {
        ex->geo = geo;
        if (geo != DNS_NONE) {
            strcpy(ex->region, v->geos[geo].region);
            ex->has_loc = v->geo_place[geo].has_loc;
            ex->lat = v->geo_place[geo].lat;
            ex->lon = v->geo_place[geo].lon;
        }
    }

    /* 1 and 3: the candidates and their keys. */
    sel_key_t keys[SEL_MAX];
    size_t nkeys = 0;
    uint64_t hname = name_hash(name);
    bool routed = host != NULL;
    const bool *reach = NULL;
    if (routed && v->reach && host->site < v->nsites)
        reach = v->reach + host->site * v->npops;
    for (size_t p = 0; p < npops; p++) {
        const dns_pop_t *pop = &v->pops[p];
        enum dns_excl why = pop->state;
        if (why == DNS_OK && !(family == 4 ? pop->has_v4 : family == 6 ? pop->has_v6 : false))
            why = DNS_EXCL_NO_ADDRESS;
        if (why == DNS_OK && routed && !(reach && reach[p]))
            why = DNS_EXCL_NO_ROUTE;
        if (why != DNS_OK && !ex)
            continue;

        const dns_place_t *at = &v->pop_place[p];
        double km = -1;
        if (from && at->has_loc)
            km = place_distance_km(from, at);
        sel_key_t *k = &keys[nkeys++];
        k->excluded = why != DNS_OK;
        if (geo != DNS_NONE)
            k->tier = region != DNS_NONE && at->region == region ? 0 : 1;
        else
            k->tier = p == v->self ? 0 : 1;
        k->dist = km < 0 ? DIST_UNKNOWN : (uint32_t)km;
        k->hash = rendezvous(hname, pop->id);
        k->idx = (uint16_t)p;
        if (ex) {
            ex->why[p] = why;
            ex->dist_km[p] = km;
        }
    }

    /* 4. The answer: the best, then the best of each region not in it yet, then the rest.
     * A PoP without a region is a region of its own: nothing says it shares a failure with
     * anyone. Each step is one pass over the candidates; answers are short. */
    unsigned want = z && z->answers ? z->answers : DNS_ANSWERS_DEFAULT;
    if (want > DNS_ANSWERS_MAX)
        want = DNS_ANSWERS_MAX;
    uint64_t taken[SEL_MAX / 64] = {0};
    for (int pass = 0; pass < 2; pass++) {
        while (out->n < want) {
            const sel_key_t *best = NULL;
            for (size_t i = 0; i < nkeys; i++) {
                const sel_key_t *k = &keys[i];
                if (k->excluded || (taken[k->idx / 64] >> (k->idx % 64) & 1))
                    continue;
                if (pass == 0) {
                    size_t r = v->pop_place[k->idx].region;
                    if (r != DNS_NONE && region_in_answer(v, out, r))
                        continue;
                }
                if (!best || key_less(k, best))
                    best = k;
            }
            if (!best)
                break;
            taken[best->idx / 64] |= UINT64_C(1) << (best->idx % 64);
            out->pops[out->n++] = best->idx;
        }
    }

    if (ex) {
        keys_sort(keys, nkeys);
        for (size_t i = 0; i < nkeys; i++)
            ex->order[i] = keys[i].idx;
        ex->norder = nkeys;
    }
}
