/* dnsview: the snapshot a DNS answer is computed from; builders, dnsview_finish, lookups.
 *
 * The builders copy and check each entry as it comes (the server feeds them records that
 * came through replication, so nothing here trusts a field to be in range or terminated).
 * dnsview_finish then puts everything in the one order every PoP can agree on, whatever
 * order the entries arrived in: zones and hosts by name, PoPs by id, geo rules by family,
 * longest prefix first, then address. It also computes, once per view, what every query
 * would otherwise recompute: the regions' centroids, each PoP's and each geo rule's place on
 * the unit sphere, and the runs of geo rules of one prefix length that make the longest
 * prefix match a handful of binary searches. Lookups on a finished view allocate nothing.
 *
 * A region's centroid is the plain mean of its PoPs' latitudes and longitudes. That is fine
 * for the PoPs of one region, which sit within a few thousand km of each other; it is wrong
 * for a region straddling the antimeridian (the mean of 179 and -179 is 0), and an operator
 * with such a region gives the clients' rules a location instead (meshctl geo add
 * ... --location). The sum runs in PoP id order, so every PoP gets the same bits. */
#include "node/dns/dnsview.h"

#include "common/xmalloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building ------------------------------------------------------------------------------ */

/* Arrays grow to powers of two, so a capacity field is not needed: an array of n entries
 * (n >= 4) is full exactly when n is a power of two. Builders refuse entries after finish,
 * which may shrink hosts below such a boundary. */
static void *grow(void *arr, size_t n, size_t elem)
{
    if (n == 0)
        return xrealloc(arr, 4 * elem);
    if (n >= 4 && (n & (n - 1)) == 0) {
        if (n > SIZE_MAX / 2 / elem)
            abort(); /* unreachable: far beyond memory */
        return xrealloc(arr, 2 * n * elem);
    }
    return arr;
}

/* A DNS name as the mesh spells it: 1..253 bytes of '.'-separated labels of 1..63 of a-z,
 * 0-9, '-' and '_', a label neither starting nor ending with '-' (node/records/zone.h). Read
 * within a buffer of size bytes, so an unterminated one is refused. */
static bool name_ok(const char *s, size_t size)
{
    size_t len = strnlen(s, size);
    if (len == 0 || len == size || len > DNS_NAME_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : '.';
        if (c == '.') {
            if (label == 0 || label > DNS_LABEL_MAX || s[i - 1] == '-' || s[i - label] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* One label (a node, region or site name); "" only when empty_ok. */
static bool label_ok(const char *s, size_t size, bool empty_ok)
{
    size_t len = strnlen(s, size);
    if (len == 0)
        return empty_ok;
    return name_ok(s, size) && memchr(s, '.', len) == NULL;
}

static bool location_ok(double lat, double lon)
{
    return isfinite(lat) && isfinite(lon) && lat >= -90.0 && lat <= 90.0 && lon >= -180.0 &&
           lon <= 180.0;
}

dns_view_t *dnsview_new(void)
{
    dns_view_t *v = xcalloc(1, sizeof(*v));
    v->self = DNS_NONE;
    return v;
}

void dnsview_free(dns_view_t **vp)
{
    if (!vp || !*vp)
        return;
    dns_view_t *v = *vp;
    free(v->zones);
    free(v->pops);
    free(v->hosts);
    free(v->sites);
    free(v->reach);
    free(v->geos);
    free(v->txts);
    free(v->pops_by_name);
    free(v->regions);
    free(v->pop_place);
    free(v->geo_place);
    free(v->geo_groups);
    free(v);
    *vp = NULL;
}

int dnsview_add_zone(dns_view_t *v, const dns_zone_t *z)
{
    if (!v || !z || v->finished || !name_ok(z->name, sizeof(z->name)) ||
        z->answers > DNS_ANSWERS_MAX)
        return -EINVAL;
    for (size_t i = 0; i < v->nzones; i++)
        if (strcmp(v->zones[i].name, z->name) == 0)
            return -EEXIST;
    v->zones = grow(v->zones, v->nzones, sizeof(*v->zones));
    dns_zone_t *d = &v->zones[v->nzones++];
    *d = *z;
    if (d->answers == 0)
        d->answers = DNS_ANSWERS_DEFAULT;
    return 0;
}

int dnsview_add_pop(dns_view_t *v, const dns_pop_t *p)
{
    if (!v || !p || v->finished || !label_ok(p->name, sizeof(p->name), false) ||
        !label_ok(p->region, sizeof(p->region), true) ||
        (p->has_loc && !location_ok(p->lat, p->lon)))
        return -EINVAL;
    switch (p->state) {
    case DNS_OK:
    case DNS_EXCL_DEAD:
    case DNS_EXCL_DRAINING:
    case DNS_EXCL_NO_HEALTH:
    case DNS_EXCL_INGRESS_DOWN:
        break;
    default:
        return -EINVAL; /* NO_ADDRESS and NO_ROUTE depend on the query, not on the PoP */
    }
    for (size_t i = 0; i < v->npops; i++)
        if (v->pops[i].id == p->id || strcmp(v->pops[i].name, p->name) == 0)
            return -EEXIST;
    v->pops = grow(v->pops, v->npops, sizeof(*v->pops));
    dns_pop_t *d = &v->pops[v->npops++];
    *d = *p;
    if (!d->has_loc)
        d->lat = d->lon = 0;
    return 0;
}

int dnsview_add_host(dns_view_t *v, const char *name, const char *site)
{
    /* a wildcard host: "*." and a name of two labels or more (node/records/resource.h) */
    const char *n =
        name && name[0] == '*' && name[1] == '.' && strchr(name + 2, '.') ? name + 2 : name;
    if (!v || !name || !site || v->finished || !name_ok(n, DNS_NAME_MAX + 1 - (size_t)(n - name)) ||
        !label_ok(site, DNS_LABEL_MAX + 1, false))
        return -EINVAL;
    /* Hosts of one site usually come together: look at the last site first. */
    size_t s = DNS_NONE;
    if (v->nsites && strcmp(v->sites[v->nsites - 1], site) == 0)
        s = v->nsites - 1;
    for (size_t i = 0; s == DNS_NONE && i < v->nsites; i++)
        if (strcmp(v->sites[i], site) == 0)
            s = i;
    if (s == DNS_NONE) {
        v->sites = grow(v->sites, v->nsites, sizeof(*v->sites));
        s = v->nsites++;
        strcpy(v->sites[s], site); /* length checked by label_ok */
    }
    v->hosts = grow(v->hosts, v->nhosts, sizeof(*v->hosts));
    dns_host_t *h = &v->hosts[v->nhosts++];
    memset(h, 0, sizeof(*h));
    strcpy(h->name, name); /* length checked by name_ok */
    h->site = s;
    return 0;
}

int dnsview_add_txt(dns_view_t *v, const char *name, const char *value)
{
    if (!v || !name || !value || v->finished || !name_ok(name, DNS_NAME_MAX + 1) || !value[0] ||
        strlen(value) > DNS_TXT_MAX)
        return -EINVAL;
    v->txts = grow(v->txts, v->ntxts, sizeof(*v->txts));
    dns_txt_t *t = &v->txts[v->ntxts++];
    memset(t, 0, sizeof(*t));
    strcpy(t->name, name);   /* length checked by name_ok */
    strcpy(t->value, value); /* and above */
    return 0;
}

static int cmp_txt(const void *a, const void *b)
{
    const dns_txt_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

int dnsview_add_geo(dns_view_t *v, const dns_geo_t *g)
{
    if (!v || !g || v->finished || (g->family != 4 && g->family != 6) ||
        g->plen > (g->family == 4 ? 32 : 128) || !label_ok(g->region, sizeof(g->region), false) ||
        (g->has_loc && !location_ok(g->lat, g->lon)))
        return -EINVAL;
    v->geos = grow(v->geos, v->ngeos, sizeof(*v->geos));
    dns_geo_t *d = &v->geos[v->ngeos++];
    *d = *g;
    /* Only the network counts: clear the host bits (and an IPv4 rule's last 12 bytes), so
     * rules compare and sort by what they match. */
    size_t bytes = g->family == 4 ? 4 : 16;
    for (size_t i = 0; i < sizeof(d->addr); i++) {
        size_t bit = i * 8;
        if (i >= bytes || bit >= d->plen)
            d->addr[i] = 0;
        else if (d->plen - bit < 8)
            d->addr[i] &= (uint8_t)(0xff00u >> (d->plen - bit));
    }
    if (!d->has_loc)
        d->lat = d->lon = 0;
    return 0;
}

/* ---- dnsview_finish ------------------------------------------------------------------------ */

static int cmp_zone(const void *a, const void *b)
{
    return strcmp(((const dns_zone_t *)a)->name, ((const dns_zone_t *)b)->name);
}

static int cmp_pop_id(const void *a, const void *b)
{
    uint64_t x = ((const dns_pop_t *)a)->id, y = ((const dns_pop_t *)b)->id;
    return x < y ? -1 : x > y;
}

/* Hosts by name, then by the order they were added (qsort is not stable). */
struct host_ref {
    const dns_host_t *h;
    size_t added;
};

static int cmp_host_ref(const void *a, const void *b)
{
    const struct host_ref *x = a, *y = b;
    int c = strcmp(x->h->name, y->h->name);
    if (c)
        return c;
    return x->added < y->added ? -1 : x->added > y->added;
}

static int cmp_double(double x, double y)
{
    return x < y ? -1 : x > y;
}

/* Geo rules: family ascending, longest prefix first, address; then the rest of the content,
 * so that two identical prefixes with different regions resolve the same at every PoP. */
static int cmp_geo(const void *a, const void *b)
{
    const dns_geo_t *x = a, *y = b;
    if (x->family != y->family)
        return x->family < y->family ? -1 : 1;
    if (x->plen != y->plen)
        return x->plen > y->plen ? -1 : 1;
    int c = memcmp(x->addr, y->addr, sizeof(x->addr));
    if (c)
        return c;
    if ((c = strcmp(x->region, y->region)) != 0)
        return c;
    if (x->has_loc != y->has_loc)
        return x->has_loc ? -1 : 1;
    if ((c = cmp_double(x->lat, y->lat)) != 0)
        return c;
    return cmp_double(x->lon, y->lon);
}

/* PoPs by region then id (the centroid's summation order), or by name, through indexes. */
struct pop_ref {
    const dns_pop_t *p;
    size_t idx;
};

static int cmp_pop_region(const void *a, const void *b)
{
    const struct pop_ref *x = a, *y = b;
    int c = strcmp(x->p->region, y->p->region);
    if (c)
        return c;
    return x->p->id < y->p->id ? -1 : x->p->id > y->p->id;
}

static int cmp_pop_name(const void *a, const void *b)
{
    const struct pop_ref *x = a, *y = b;
    return strcmp(x->p->name, y->p->name);
}

static size_t region_find(const dns_view_t *v, const char *name)
{
    size_t lo = 0, hi = v->nregions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->regions[mid].name, name);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return DNS_NONE;
}

static void place_set(dns_place_t *pl, size_t region, bool has_loc, double lat, double lon)
{
    pl->region = region;
    pl->has_loc = has_loc;
    pl->lat = has_loc ? lat : 0;
    pl->lon = has_loc ? lon : 0;
    if (has_loc) {
        const double rad = M_PI / 180.0;
        pl->xyz[0] = cos(lat * rad) * cos(lon * rad);
        pl->xyz[1] = cos(lat * rad) * sin(lon * rad);
        pl->xyz[2] = sin(lat * rad);
    } else {
        pl->xyz[0] = pl->xyz[1] = pl->xyz[2] = 0;
    }
}

/* The place of something in region r (DNS_NONE: none) with its own location, if any. */
static void place_in_region(const dns_view_t *v, dns_place_t *pl, size_t r, bool has_loc,
                            double lat, double lon)
{
    if (has_loc)
        place_set(pl, r, true, lat, lon);
    else if (r != DNS_NONE && v->regions[r].has_loc)
        place_set(pl, r, true, v->regions[r].lat, v->regions[r].lon);
    else
        place_set(pl, r, false, 0, 0);
}

static void finish_hosts(dns_view_t *v)
{
    if (v->nhosts < 2)
        return;
    struct host_ref *refs = xmalloc(v->nhosts * sizeof(*refs));
    for (size_t i = 0; i < v->nhosts; i++)
        refs[i] = (struct host_ref){&v->hosts[i], i};
    qsort(refs, v->nhosts, sizeof(*refs), cmp_host_ref);
    dns_host_t *sorted = xmalloc(v->nhosts * sizeof(*sorted));
    size_t n = 0;
    for (size_t i = 0; i < v->nhosts; i++) {
        if (n && strcmp(sorted[n - 1].name, refs[i].h->name) == 0)
            continue; /* a later duplicate: the first added won */
        sorted[n++] = *refs[i].h;
    }
    free(refs);
    free(v->hosts);
    v->hosts = sorted;
    v->nhosts = n;
}

static void finish_regions(dns_view_t *v)
{
    struct pop_ref *refs = xmalloc((v->npops ? v->npops : 1) * sizeof(*refs));
    for (size_t i = 0; i < v->npops; i++)
        refs[i] = (struct pop_ref){&v->pops[i], i};
    qsort(refs, v->npops, sizeof(*refs), cmp_pop_region);

    v->regions = xcalloc(v->npops ? v->npops : 1, sizeof(*v->regions));
    v->nregions = 0;
    for (size_t i = 0; i < v->npops;) {
        size_t j = i;
        double lat = 0, lon = 0;
        size_t nloc = 0;
        for (; j < v->npops && strcmp(refs[j].p->region, refs[i].p->region) == 0; j++) {
            if (refs[j].p->has_loc) {
                lat += refs[j].p->lat;
                lon += refs[j].p->lon;
                nloc++;
            }
        }
        if (refs[i].p->region[0]) {
            dns_region_t *r = &v->regions[v->nregions++];
            strcpy(r->name, refs[i].p->region);
            r->has_loc = nloc > 0;
            r->lat = nloc ? lat / (double)nloc : 0;
            r->lon = nloc ? lon / (double)nloc : 0;
        }
        i = j;
    }

    /* And the PoPs by name, for NAME.pop.ZONE. */
    qsort(refs, v->npops, sizeof(*refs), cmp_pop_name);
    v->pops_by_name = xmalloc((v->npops ? v->npops : 1) * sizeof(*v->pops_by_name));
    for (size_t i = 0; i < v->npops; i++)
        v->pops_by_name[i] = refs[i].idx;
    free(refs);
}

static void finish_geo_groups(dns_view_t *v)
{
    v->geo_groups = xmalloc((v->ngeos ? v->ngeos : 1) * sizeof(*v->geo_groups));
    v->ngeo_groups = 0;
    for (size_t i = 0; i < v->ngeos; i++) {
        dns_geo_group_t *g = v->ngeo_groups ? &v->geo_groups[v->ngeo_groups - 1] : NULL;
        if (g && g->family == v->geos[i].family && g->plen == v->geos[i].plen) {
            g->n++;
            continue;
        }
        v->geo_groups[v->ngeo_groups++] = (dns_geo_group_t){
            .family = v->geos[i].family, .plen = v->geos[i].plen, .first = i, .n = 1};
    }
}

void dnsview_finish(dns_view_t *v, uint64_t self_id)
{
    if (!v || v->finished)
        return;
    if (v->nzones)
        qsort(v->zones, v->nzones, sizeof(*v->zones), cmp_zone);
    if (v->npops)
        qsort(v->pops, v->npops, sizeof(*v->pops), cmp_pop_id);
    if (v->ngeos)
        qsort(v->geos, v->ngeos, sizeof(*v->geos), cmp_geo);
    finish_hosts(v);
    if (v->ntxts)
        qsort(v->txts, v->ntxts, sizeof(*v->txts), cmp_txt);
    finish_regions(v);
    finish_geo_groups(v);

    v->pop_place = xmalloc((v->npops ? v->npops : 1) * sizeof(*v->pop_place));
    for (size_t i = 0; i < v->npops; i++) {
        const dns_pop_t *p = &v->pops[i];
        size_t r = p->region[0] ? region_find(v, p->region) : DNS_NONE;
        place_in_region(v, &v->pop_place[i], r, p->has_loc, p->lat, p->lon);
    }
    v->geo_place = xmalloc((v->ngeos ? v->ngeos : 1) * sizeof(*v->geo_place));
    for (size_t i = 0; i < v->ngeos; i++) {
        const dns_geo_t *g = &v->geos[i];
        place_in_region(v, &v->geo_place[i], region_find(v, g->region), g->has_loc, g->lat, g->lon);
    }

    free(v->reach);
    v->reach = NULL;
    if (v->nsites && v->npops) {
        if (v->nsites > SIZE_MAX / v->npops)
            abort(); /* unreachable: far beyond memory */
        v->reach = xcalloc(v->nsites * v->npops, sizeof(*v->reach));
    }

    v->self = DNS_NONE;
    size_t lo = 0, hi = v->npops;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->pops[mid].id == self_id) {
            v->self = mid;
            break;
        }
        if (v->pops[mid].id < self_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    v->finished = true;
}

void dnsview_set_reach(dns_view_t *v, size_t site, size_t pop, bool r)
{
    if (!v || !v->reach || site >= v->nsites || pop >= v->npops)
        return;
    v->reach[site * v->npops + pop] = r;
}

/* ---- lookups ------------------------------------------------------------------------------- */

static const dns_zone_t *zone_find(const dns_view_t *v, const char *name)
{
    size_t lo = 0, hi = v->nzones;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->zones[mid].name, name);
        if (c == 0)
            return &v->zones[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* qname itself, then each parent from the longest: the first found is the longest zone. Only
 * suffixes that start after a '.' are tried, so "xexample.test" is not in "example.test". */
const dns_zone_t *dnsview_zone_of(const dns_view_t *v, const char *qname)
{
    if (!v || !qname || !v->nzones)
        return NULL;
    for (const char *q = qname;;) {
        const dns_zone_t *z = zone_find(v, q);
        if (z)
            return z;
        q = strchr(q, '.');
        if (!q)
            return NULL;
        q++;
    }
}

static const dns_host_t *host_exact(const dns_view_t *v, const char *name);

const dns_host_t *dnsview_host(const dns_view_t *v, const char *name)
{
    const dns_host_t *h = host_exact(v, name);
    const char *dot = h || !name ? NULL : strchr(name, '.');
    if (!dot || dot == name)
        return h;
    /* "*.rest" covers one label more than rest, as in HTTP routing and certificates */
    char wild[DNS_NAME_MAX + 2];
    if (snprintf(wild, sizeof(wild), "*%s", dot) >= (int)sizeof(wild))
        return NULL;
    return host_exact(v, wild);
}

static const dns_host_t *host_exact(const dns_view_t *v, const char *name)
{
    if (!v || !name)
        return NULL;
    size_t lo = 0, hi = v->nhosts;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v->hosts[mid].name, name);
        if (c == 0)
            return &v->hosts[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

size_t dnsview_pop_by_name(const dns_view_t *v, const char *name)
{
    if (!v || !name || !v->pops_by_name)
        return DNS_NONE;
    size_t lo = 0, hi = v->npops;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        size_t p = v->pops_by_name[mid];
        int c = strcmp(v->pops[p].name, name);
        if (c == 0)
            return p;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return DNS_NONE;
}

const char *dns_excl_name(enum dns_excl e)
{
    switch (e) {
    case DNS_OK:
        return "ok";
    case DNS_EXCL_DEAD:
        return "dead";
    case DNS_EXCL_DRAINING:
        return "draining";
    case DNS_EXCL_NO_HEALTH:
        return "no-health";
    case DNS_EXCL_INGRESS_DOWN:
        return "ingress-down";
    case DNS_EXCL_NO_ADDRESS:
        return "no-address";
    case DNS_EXCL_NO_ROUTE:
        return "no-route";
    }
    return "unknown";
}

size_t dnsview_txt(const dns_view_t *v, const char *name, size_t *first)
{
    if (!v || !name)
        return 0;
    size_t lo = 0, hi = v->ntxts;
    while (lo < hi) { /* the first entry not below name */
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(v->txts[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    while (lo + n < v->ntxts && strcmp(v->txts[lo + n].name, name) == 0)
        n++;
    *first = lo;
    return n;
}
