/* route: Dijkstra over the PoP graph, primary and backup per site, the table, the debounce.
 *
 * BACKGROUND. Every PoP holds the same link-state database (eventually) and computes its own
 * routes from it, as OSPF routers do. The graph has one vertex per PoP that holds a record;
 * an undirected edge where lsdb_link() says a link is usable. Entering a PoP costs its
 * penalty (load, bad health), so a path pays for every PoP it transits and for its egress;
 * self pays nothing as ingress, and its penalty only when it is also the egress. Sites are
 * not vertices: a site's cost through PoP p is dist(p) + p's tunnel cost, so one Dijkstra
 * from self prices every site, and the primary is the cheapest attachment.
 *
 * BACKUPS. The backup of a site must not touch the primary's egress E. Running a Dijkstra
 * per distinct E would cost O(#E * (V + E) log V), about a second at 1000 PoPs. Instead:
 * removing E only changes the distances of E's subtree in the shortest-path tree (every other
 * PoP's tree path avoids E). For E's subtree S, seed each w in S \ {E} with its cheapest
 * edge from a PoP outside S (whose distance is unchanged), then run Dijkstra inside S \ {E}.
 * That is exactly the distances of the graph without E (the last vertex outside S on any
 * E-avoiding path has its true distance; the rest of the path lies inside S). The work per E
 * is proportional to |S|, so the total is the sum of depths of the egresses: small on real
 * meshes, O(V^2) only on a chain (docs/routing.md, "Complexity").
 *
 * DETERMINISM. The heap orders by (cost, index) and indices follow node ids; a relaxation
 * that ties keeps the lower-id predecessor; a site's equal-cost egresses resolve to the lower
 * PoP id. So the same database gives the same table on every PoP and in every run, whatever
 * the order the records arrived in. Hop-by-hop relaying is loop-free when views agree because
 * every edge costs at least 1: each hop strictly lowers the remaining cost. */
#include "mesh/route.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/xmalloc.h"

#define INF UINT64_MAX

void route_config_defaults(route_config_t *cfg)
{
    *cfg = (route_config_t){
        .hop_us = 500,
        .loss_us_per_permille = 1000,
        .loss_cutoff_permille = 500,
        .load_us_per_permille = 50,
        .unhealthy_us = 1000000000,
        .degraded_site_us = 200000,
        .settle_ms = 20,
        .min_interval_ms = 200,
    };
}

/* ---- the table ------------------------------------------------------------------------- */

struct tpath {
    uint64_t cost; /* us */
    uint32_t off;  /* into table->hops */
    uint32_t len;  /* hops, >= 1 */
};

struct pop_route {
    uint64_t id;
    struct tpath path;
};

struct site_route {
    uint64_t site;
    bool reachable;
    bool has_backup;
    struct tpath primary, backup;
};

struct route_table {
    route_table_info_t info;
    struct pop_route *pops; /* reachable PoPs, sorted by id */
    size_t n_pops;
    struct site_route *sites; /* every known site, sorted by id */
    size_t n_sites;
    uint64_t *hops; /* path pool */
    size_t n_hops, hops_cap;
};

static void fill_path(const route_table_t *t, const struct tpath *p, route_path_t *out)
{
    out->hops = &t->hops[p->off];
    out->n_hops = p->len;
    out->egress = out->hops[p->len - 1];
    out->next_hop = out->hops[p->len > 1 ? 1 : 0];
    out->cost_us = p->cost;
}

static int fill_entry(const route_table_t *t, const struct site_route *s, route_entry_t *out)
{
    memset(out, 0, sizeof(*out));
    out->site = s->site;
    if (!s->reachable)
        return -EHOSTUNREACH;
    fill_path(t, &s->primary, &out->primary);
    out->has_backup = s->has_backup;
    if (s->has_backup)
        fill_path(t, &s->backup, &out->backup);
    return 0;
}

int route_table_lookup(const route_table_t *t, uint64_t site, route_entry_t *out)
{
    size_t lo = 0, hi = t->n_sites;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->sites[mid].site < site)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->n_sites || t->sites[lo].site != site)
        return -ENOENT;
    return fill_entry(t, &t->sites[lo], out);
}

int route_table_to_pop(const route_table_t *t, uint64_t pop, route_path_t *out)
{
    size_t lo = 0, hi = t->n_pops;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->pops[mid].id < pop)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == t->n_pops || t->pops[lo].id != pop)
        return -ENOENT;
    fill_path(t, &t->pops[lo].path, out);
    return 0;
}

int route_table_next_hop(const route_table_t *t, uint64_t pop, uint64_t *next_hop)
{
    route_path_t p;
    int rc = route_table_to_pop(t, pop, &p);
    if (rc == 0)
        *next_hop = p.next_hop;
    return rc;
}

size_t route_table_site_count(const route_table_t *t)
{
    return t->n_sites;
}

int route_table_site_at(const route_table_t *t, size_t i, route_entry_t *out)
{
    if (i >= t->n_sites)
        return -ENOENT;
    return fill_entry(t, &t->sites[i], out);
}

void route_table_get_info(const route_table_t *t, route_table_info_t *out)
{
    *out = t->info;
}

void route_table_destroy(route_table_t **tp)
{
    if (!tp || !*tp)
        return;
    route_table_t *t = *tp;
    free(t->pops);
    free(t->sites);
    free(t->hops);
    free(t);
    *tp = NULL;
}

/* Reserves n hops at the end of the pool; returns their offset. */
static uint32_t hops_alloc(route_table_t *t, size_t n)
{
    if (t->n_hops + n > t->hops_cap) {
        while (t->n_hops + n > t->hops_cap)
            t->hops_cap = t->hops_cap ? t->hops_cap * 2 : 1024;
        t->hops = xrealloc(t->hops, t->hops_cap * sizeof(uint64_t));
    }
    uint32_t off = (uint32_t)t->n_hops;
    t->n_hops += n;
    return off;
}

/* ---- the debounce ---------------------------------------------------------------------- */

struct route {
    route_config_t cfg;
    bool dirty;
    uint64_t dirty_since;  /* ms: the first change not yet computed */
    bool computed;         /* last_compute is meaningful */
    uint64_t last_compute; /* ms */
};

route_t *route_new(const route_config_t *cfg)
{
    route_t *r = xcalloc(1, sizeof(*r));
    if (cfg)
        r->cfg = *cfg;
    else
        route_config_defaults(&r->cfg);
    return r;
}

void route_destroy(route_t **rp)
{
    if (!rp || !*rp)
        return;
    free(*rp);
    *rp = NULL;
}

void route_mark_dirty(route_t *r, uint64_t now_ms)
{
    if (!r->dirty) {
        r->dirty = true;
        r->dirty_since = now_ms;
    }
}

bool route_is_dirty(const route_t *r)
{
    return r->dirty;
}

uint64_t route_next_deadline(const route_t *r)
{
    if (!r->dirty)
        return UINT64_MAX;
    uint64_t d = r->dirty_since + r->cfg.settle_ms;
    if (r->computed && r->last_compute + r->cfg.min_interval_ms > d)
        d = r->last_compute + r->cfg.min_interval_ms;
    return d;
}

bool route_due(const route_t *r, uint64_t now_ms)
{
    return r->dirty && now_ms >= route_next_deadline(r);
}

/* ---- the computation ------------------------------------------------------------------- */

/* A binary min-heap of node indices ordered by (key[v], v), with decrease-key. */
struct heap {
    int32_t *a;          /* heap array */
    int32_t *pos;        /* pos[v]: index in a, or -1; all -1 between runs */
    size_t n;            /* elements */
    const uint64_t *key; /* the distance array of the current run */
};

static bool heap_less(const struct heap *h, int32_t x, int32_t y)
{
    return h->key[x] != h->key[y] ? h->key[x] < h->key[y] : x < y;
}

static void heap_up(struct heap *h, size_t i)
{
    int32_t v = h->a[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(h, v, h->a[p]))
            break;
        h->a[i] = h->a[p];
        h->pos[h->a[i]] = (int32_t)i;
        i = p;
    }
    h->a[i] = v;
    h->pos[v] = (int32_t)i;
}

static void heap_down(struct heap *h, size_t i)
{
    int32_t v = h->a[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && heap_less(h, h->a[c + 1], h->a[c]))
            c++;
        if (!heap_less(h, h->a[c], v))
            break;
        h->a[i] = h->a[c];
        h->pos[h->a[i]] = (int32_t)i;
        i = c;
    }
    h->a[i] = v;
    h->pos[v] = (int32_t)i;
}

/* Inserts v, or restores order after key[v] decreased. */
static void heap_update(struct heap *h, int32_t v)
{
    if (h->pos[v] < 0) {
        h->a[h->n] = v;
        h->pos[v] = (int32_t)h->n;
        heap_up(h, h->n++);
    } else {
        heap_up(h, (size_t)h->pos[v]);
    }
}

static int32_t heap_pop(struct heap *h)
{
    int32_t v = h->a[0];
    h->pos[v] = -1;
    if (--h->n > 0) {
        h->a[0] = h->a[h->n];
        h->pos[h->a[0]] = 0;
        heap_down(h, 0);
    }
    return v;
}

/* One site's attachment to one PoP, as found in that PoP's record. */
struct attach {
    uint64_t site;
    int32_t pop;   /* node index */
    bool usable;   /* ONLINE or DEGRADED */
    uint64_t cost; /* us: tunnel rtt + state penalty */
};

/* Sorts attachments by site id, keeping the order of equal ids (stable LSD radix sort, one
 * byte per pass, passes where every key has the same byte skipped). They are gathered by
 * increasing PoP index, so the result is ordered by (site, PoP): what the egress tie rule
 * needs. Linear, unlike qsort, which was a third of the whole computation at 30,000
 * attachments. */
static void sort_attachments(struct attach *at, size_t n)
{
    struct attach *tmp = xmalloc((n + 1) * sizeof(*tmp));
    struct attach *src = at, *dst = tmp;
    for (unsigned shift = 0; shift < 64; shift += 8) {
        size_t count[257] = {0};
        for (size_t k = 0; k < n; k++)
            count[((src[k].site >> shift) & 0xff) + 1]++;
        bool trivial = false;
        for (int b = 1; b <= 256; b++)
            trivial |= count[b] == n;
        if (trivial)
            continue;
        for (int b = 0; b < 256; b++)
            count[b + 1] += count[b];
        for (size_t k = 0; k < n; k++)
            dst[count[(src[k].site >> shift) & 0xff]++] = src[k];
        struct attach *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != at)
        memcpy(at, src, n * sizeof(*at));
    free(tmp);
}

struct node_ref {
    uint64_t id;
    int32_t entry; /* index into the entry array, -1 for a self without a record */
};

static int node_ref_cmp(const void *a, const void *b)
{
    const struct node_ref *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* Everything one computation needs; freed at the end. Indices are node ranks by id. */
struct work {
    const route_config_t *cfg;
    route_allow_fn allow; /* NULL: every PoP; else the PoPs besides self a path may use */
    void *allow_ctx;
    size_t n;            /* PoPs */
    uint64_t *id;        /* id[i], increasing */
    lsdb_entry_t *ent;   /* ent[i]; origin 0 for a self without a record */
    uint64_t *node_cost; /* us: penalty for entering (transiting or egressing) i */
    int32_t self;        /* index of self */
    uint32_t *adj_off;   /* CSR: edges of i are adj_off[i] .. adj_off[i+1] */
    int32_t *adj_to;     /* neighbour index */
    uint64_t *adj_cost;  /* us, >= 1 */
    size_t n_links;      /* undirected */
    uint64_t *dist;      /* from self; INF if unreachable */
    int32_t *pred;       /* predecessor on the tree path, -1 for self/unreachable */
    int32_t *order;      /* reachable nodes in settle order */
    size_t n_order;
    struct heap heap;
    /* backup pass */
    uint32_t *child_off; /* CSR of the tree's children */
    int32_t *child;
    uint32_t *in_sub;      /* == epoch: in the current egress's subtree */
    uint32_t *bpath_stamp; /* == epoch: bpath[i] holds a backup path to i for this egress */
    struct tpath *bpath;
    uint64_t *alt; /* distance avoiding the current egress (valid where in_sub) */
    int32_t *apred;
    int32_t *stack;
    uint32_t epoch;
};

static int32_t index_of(const struct work *w, uint64_t id)
{
    size_t lo = 0, hi = w->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w->id[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < w->n && w->id[lo] == id ? (int32_t)lo : -1;
}

static bool claims(const lsdb_entry_t *e, uint64_t peer)
{
    uint32_t lo = 0, hi = e->n_links;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (e->links[mid].peer < peer)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < e->n_links && e->links[lo].peer == peer;
}

/* The vertices: every record, plus self. */
static void build_nodes(struct work *w, const lsdb_t *db, uint64_t self)
{
    size_t count = lsdb_count(db);
    struct node_ref *refs = xmalloc((count + 1) * sizeof(*refs));
    lsdb_entry_t *ents = xmalloc((count + 1) * sizeof(*ents));
    size_t n = 0;
    bool have_self = false;
    for (size_t k = 0; k < count; k++) {
        lsdb_entry_at(db, k, &ents[k]);
        refs[n++] = (struct node_ref){.id = ents[k].origin, .entry = (int32_t)k};
        have_self |= ents[k].origin == self;
    }
    if (!have_self)
        refs[n++] = (struct node_ref){.id = self, .entry = -1};
    qsort(refs, n, sizeof(*refs), node_ref_cmp);

    w->n = n;
    w->id = xmalloc(n * sizeof(uint64_t));
    w->ent = xcalloc(n, sizeof(lsdb_entry_t));
    w->node_cost = xmalloc(n * sizeof(uint64_t));
    for (size_t i = 0; i < n; i++) {
        w->id[i] = refs[i].id;
        if (refs[i].entry >= 0)
            w->ent[i] = ents[refs[i].entry];
        const lsdb_entry_t *e = &w->ent[i];
        w->node_cost[i] = (uint64_t)e->load_permille * w->cfg->load_us_per_permille +
                          (e->origin && !e->healthy ? w->cfg->unhealthy_us : 0);
    }
    w->self = index_of(w, self);
    free(refs);
    free(ents);
}

/* The edges, as a CSR adjacency (each undirected link stored in both directions). */
static void build_edges(struct work *w, const lsdb_t *db)
{
    size_t cap = 0;
    for (size_t i = 0; i < w->n; i++)
        cap += w->ent[i].n_links;
    cap *= 2;
    int32_t *eu = xmalloc((cap + 1) * sizeof(int32_t));
    int32_t *ev = xmalloc((cap + 1) * sizeof(int32_t));
    uint64_t *ec = xmalloc((cap + 1) * sizeof(uint64_t));
    size_t m = 0;
    w->adj_off = xcalloc(w->n + 1, sizeof(uint32_t));
    for (size_t i = 0; i < w->n; i++) {
        const lsdb_entry_t *e = &w->ent[i];
        for (uint32_t k = 0; k < e->n_links; k++) {
            int32_t j = index_of(w, e->links[k].peer);
            if (j < 0)
                continue; /* the peer holds no record: not in the graph */
            /* A PoP a filtered computation may not use has no links: no path crosses it or
             * ends there (self is where paths start, whatever the filter). */
            if (w->allow && (((int32_t)i != w->self && !w->allow(w->allow_ctx, w->id[i])) ||
                             (j != w->self && !w->allow(w->allow_ctx, w->id[j]))))
                continue;
            /* A link both ends claim is added once, from the lower index. */
            if (claims(&w->ent[j], e->origin) && (size_t)j < i)
                continue;
            ls_link_t l;
            if (lsdb_link(db, e->origin, e->links[k].peer, &l))
                continue;
            if (l.loss_permille >= w->cfg->loss_cutoff_permille)
                continue;
            uint64_t c = (uint64_t)l.rtt_us +
                         (uint64_t)l.loss_permille * w->cfg->loss_us_per_permille + w->cfg->hop_us;
            if (c == 0)
                c = 1; /* every edge costs something: no zero-cost cycles, no relay loops */
            eu[m] = (int32_t)i, ev[m] = j, ec[m++] = c;
            eu[m] = j, ev[m] = (int32_t)i, ec[m++] = c;
        }
    }
    w->n_links = m / 2;
    for (size_t k = 0; k < m; k++)
        w->adj_off[eu[k] + 1]++;
    for (size_t i = 0; i < w->n; i++)
        w->adj_off[i + 1] += w->adj_off[i];
    w->adj_to = xmalloc((m + 1) * sizeof(int32_t));
    w->adj_cost = xmalloc((m + 1) * sizeof(uint64_t));
    uint32_t *fill = xmalloc((w->n + 1) * sizeof(uint32_t));
    memcpy(fill, w->adj_off, (w->n + 1) * sizeof(uint32_t));
    for (size_t k = 0; k < m; k++) {
        uint32_t at = fill[eu[k]]++;
        w->adj_to[at] = ev[k];
        w->adj_cost[at] = ec[k];
    }
    free(fill);
    free(eu);
    free(ev);
    free(ec);
}

static void dijkstra(struct work *w)
{
    w->dist = xmalloc(w->n * sizeof(uint64_t));
    w->pred = xmalloc(w->n * sizeof(int32_t));
    w->order = xmalloc(w->n * sizeof(int32_t));
    for (size_t i = 0; i < w->n; i++) {
        w->dist[i] = INF;
        w->pred[i] = -1;
    }
    struct heap *h = &w->heap;
    h->key = w->dist;
    w->dist[w->self] = 0;
    heap_update(h, w->self);
    while (h->n) {
        int32_t u = heap_pop(h);
        w->order[w->n_order++] = u;
        for (uint32_t k = w->adj_off[u]; k < w->adj_off[u + 1]; k++) {
            int32_t v = w->adj_to[k];
            if (v == w->self)
                continue;
            uint64_t nd = w->dist[u] + w->adj_cost[k] + w->node_cost[v];
            if (nd < w->dist[v] || (nd == w->dist[v] && u < w->pred[v])) {
                bool decreased = nd < w->dist[v];
                w->dist[v] = nd;
                w->pred[v] = u;
                if (decreased)
                    heap_update(h, v);
            }
        }
    }
}

/* Paths to every reachable PoP, built in settle order so each extends its predecessor's. */
static void build_pop_paths(struct work *w, route_table_t *t, uint32_t *path_off,
                            uint32_t *path_len)
{
    t->pops = xmalloc((w->n_order + 1) * sizeof(struct pop_route));
    for (size_t k = 0; k < w->n_order; k++) {
        int32_t v = w->order[k];
        int32_t p = w->pred[v];
        uint32_t len = p < 0 ? 1 : path_len[p] + 1;
        uint32_t off = hops_alloc(t, len);
        if (p >= 0)
            memcpy(&t->hops[off], &t->hops[path_off[p]], (len - 1) * sizeof(uint64_t));
        t->hops[off + len - 1] = w->id[v];
        path_off[v] = off;
        path_len[v] = len;
    }
    /* The table lists them by id: index order is id order. */
    for (size_t i = 0; i < w->n; i++) {
        if (w->dist[i] == INF)
            continue;
        t->pops[t->n_pops++] = (struct pop_route){
            .id = w->id[i],
            .path = {.cost = w->dist[i], .off = path_off[i], .len = path_len[i]},
        };
    }
}

/* Collects every site attachment of every record, sorted by (site, PoP). */
static struct attach *gather_attachments(const struct work *w, size_t *n_out)
{
    size_t n = 0;
    for (size_t i = 0; i < w->n; i++)
        n += w->ent[i].n_sites;
    struct attach *at = xmalloc((n + 1) * sizeof(*at));
    n = 0;
    for (size_t i = 0; i < w->n; i++) {
        const lsdb_entry_t *e = &w->ent[i];
        for (uint32_t k = 0; k < e->n_sites; k++) {
            const ls_site_t *s = &e->sites[k];
            bool degraded = s->state == LS_SITE_DEGRADED;
            at[n++] = (struct attach){
                .site = s->site,
                .pop = (int32_t)i,
                .usable = s->state == LS_SITE_ONLINE || degraded,
                .cost = (uint64_t)s->rtt_us + (degraded ? w->cfg->degraded_site_us : 0),
            };
        }
    }
    sort_attachments(at, n);
    *n_out = n;
    return at;
}

/* Total cost of reaching the site through attachment a, given the distance d to its PoP. Self
 * pays its own penalty only as an egress (as ingress it is where the user already is). */
static uint64_t via_cost(const struct work *w, const struct attach *a, uint64_t d)
{
    return d + a->cost + (a->pop == w->self ? w->node_cost[w->self] : 0);
}

/* Distances in the graph without egress e, for e's subtree (see BACKUPS above). */
static void dijkstra_without(struct work *w, int32_t e)
{
    uint32_t ep = w->epoch;
    size_t top = 0, n_sub = 0;
    /* Collect the subtree into stack[0..n_sub) by walking children. */
    w->stack[top++] = e;
    w->in_sub[e] = ep;
    while (n_sub < top) {
        int32_t v = w->stack[n_sub++];
        for (uint32_t k = w->child_off[v]; k < w->child_off[v + 1]; k++) {
            int32_t c = w->child[k];
            w->in_sub[c] = ep;
            w->stack[top++] = c;
        }
    }
    struct heap *h = &w->heap;
    h->key = w->alt;
    for (size_t s = 0; s < n_sub; s++) {
        int32_t v = w->stack[s];
        w->alt[v] = INF;
        w->apred[v] = -1;
        if (v == e)
            continue;
        for (uint32_t k = w->adj_off[v]; k < w->adj_off[v + 1]; k++) {
            int32_t u = w->adj_to[k];
            if (w->in_sub[u] == ep || w->dist[u] == INF)
                continue;
            uint64_t c = w->dist[u] + w->adj_cost[k] + w->node_cost[v];
            if (c < w->alt[v] || (c == w->alt[v] && u < w->apred[v])) {
                w->alt[v] = c;
                w->apred[v] = u;
            }
        }
        if (w->alt[v] != INF)
            heap_update(h, v);
    }
    while (h->n) {
        int32_t u = heap_pop(h);
        for (uint32_t k = w->adj_off[u]; k < w->adj_off[u + 1]; k++) {
            int32_t v = w->adj_to[k];
            if (w->in_sub[v] != ep || v == e)
                continue;
            uint64_t nd = w->alt[u] + w->adj_cost[k] + w->node_cost[v];
            if (nd < w->alt[v] || (nd == w->alt[v] && u < w->apred[v])) {
                bool decreased = nd < w->alt[v];
                w->alt[v] = nd;
                w->apred[v] = u;
                if (decreased)
                    heap_update(h, v);
            }
        }
    }
}

/* Distance to v avoiding the current egress e (e itself: INF). */
static uint64_t dist_without(const struct work *w, int32_t e, int32_t v)
{
    if (v == e)
        return INF;
    return w->in_sub[v] == w->epoch ? w->alt[v] : w->dist[v];
}

/* The path to v avoiding the current egress, memoised per egress. */
static struct tpath backup_path(struct work *w, route_table_t *t, int32_t v, uint64_t cost,
                                const uint32_t *path_off, const uint32_t *path_len)
{
    if (w->in_sub[v] != w->epoch) /* its tree path already avoids the egress */
        return (struct tpath){.cost = cost, .off = path_off[v], .len = path_len[v]};
    if (w->bpath_stamp[v] != w->epoch) {
        /* Walk back through the detour inside the subtree, then up the ordinary tree. */
        uint32_t len = 0;
        for (int32_t x = v; x >= 0; x = w->in_sub[x] == w->epoch ? w->apred[x] : w->pred[x])
            len++;
        uint32_t off = hops_alloc(t, len), at = len;
        for (int32_t x = v; x >= 0; x = w->in_sub[x] == w->epoch ? w->apred[x] : w->pred[x])
            t->hops[off + --at] = w->id[x];
        w->bpath[v] = (struct tpath){.off = off, .len = len};
        w->bpath_stamp[v] = w->epoch;
    }
    struct tpath p = w->bpath[v];
    p.cost = cost;
    return p;
}

static void free_work(struct work *w)
{
    free(w->id);
    free(w->ent);
    free(w->node_cost);
    free(w->adj_off);
    free(w->adj_to);
    free(w->adj_cost);
    free(w->dist);
    free(w->pred);
    free(w->order);
    free(w->heap.a);
    free(w->heap.pos);
    free(w->child_off);
    free(w->child);
    free(w->in_sub);
    free(w->bpath_stamp);
    free(w->bpath);
    free(w->alt);
    free(w->apred);
    free(w->stack);
}

static int compute(route_t *r, const lsdb_t *db, uint64_t self_id, route_allow_fn allow,
                   void *allow_ctx, route_table_t **out)
{
    if (self_id == 0)
        return -EINVAL;
    struct work w = {.cfg = &r->cfg, .allow = allow, .allow_ctx = allow_ctx};
    build_nodes(&w, db, self_id);
    build_edges(&w, db);
    size_t n = w.n;
    w.heap.a = xmalloc(n * sizeof(int32_t));
    w.heap.pos = xmalloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        w.heap.pos[i] = -1;
    dijkstra(&w);

    route_table_t *t = xcalloc(1, sizeof(*t));
    uint32_t *path_off = xcalloc(n, sizeof(uint32_t));
    uint32_t *path_len = xcalloc(n, sizeof(uint32_t));
    build_pop_paths(&w, t, path_off, path_len);

    /* Sites and their primaries. */
    size_t n_att;
    struct attach *at = gather_attachments(&w, &n_att);
    size_t n_sites = 0;
    for (size_t k = 0; k < n_att; k++)
        n_sites += k == 0 || at[k].site != at[k - 1].site;
    t->sites = xcalloc(n_sites + 1, sizeof(struct site_route));
    uint32_t *site_first = xmalloc((n_sites + 1) * sizeof(uint32_t)); /* into at[] */
    int32_t *prim = xmalloc((n_sites + 1) * sizeof(int32_t));         /* egress index, or -1 */
    for (size_t k = 0; k < n_att; k++) {
        if (k == 0 || at[k].site != at[k - 1].site) {
            site_first[t->n_sites] = (uint32_t)k;
            t->sites[t->n_sites++].site = at[k].site;
        }
    }
    site_first[n_sites] = (uint32_t)n_att;
    for (size_t s = 0; s < n_sites; s++) {
        uint64_t best = INF;
        int32_t egress = -1;
        for (uint32_t k = site_first[s]; k < site_first[s + 1]; k++) {
            const struct attach *a = &at[k];
            if (!a->usable || w.dist[a->pop] == INF)
                continue;
            uint64_t c = via_cost(&w, a, w.dist[a->pop]);
            if (c < best) { /* attachments are by increasing PoP: ties keep the lower id */
                best = c;
                egress = a->pop;
            }
        }
        prim[s] = egress;
        struct site_route *sr = &t->sites[s];
        if (egress >= 0) {
            sr->reachable = true;
            sr->primary =
                (struct tpath){.cost = best, .off = path_off[egress], .len = path_len[egress]};
        }
    }

    /* Backups, egress by egress: group the sites by primary egress (counting sort). */
    uint32_t *grp_off = xcalloc(n + 1, sizeof(uint32_t));
    uint32_t *grp = xmalloc((n_sites + 1) * sizeof(uint32_t));
    for (size_t s = 0; s < n_sites; s++)
        if (prim[s] >= 0)
            grp_off[prim[s] + 1]++;
    for (size_t i = 0; i < n; i++)
        grp_off[i + 1] += grp_off[i];
    {
        uint32_t *fill = xmalloc((n + 1) * sizeof(uint32_t));
        memcpy(fill, grp_off, (n + 1) * sizeof(uint32_t));
        for (size_t s = 0; s < n_sites; s++)
            if (prim[s] >= 0)
                grp[fill[prim[s]]++] = (uint32_t)s;
        free(fill);
    }
    /* The shortest-path tree's children, for the subtrees. */
    w.child_off = xcalloc(n + 1, sizeof(uint32_t));
    w.child = xmalloc((n + 1) * sizeof(int32_t));
    for (size_t i = 0; i < n; i++)
        if (w.pred[i] >= 0)
            w.child_off[w.pred[i] + 1]++;
    for (size_t i = 0; i < n; i++)
        w.child_off[i + 1] += w.child_off[i];
    {
        uint32_t *fill = xmalloc((n + 1) * sizeof(uint32_t));
        memcpy(fill, w.child_off, (n + 1) * sizeof(uint32_t));
        for (size_t i = 0; i < n; i++) /* by increasing index: children sorted by id */
            if (w.pred[i] >= 0)
                w.child[fill[w.pred[i]]++] = (int32_t)i;
        free(fill);
    }
    w.in_sub = xcalloc(n, sizeof(uint32_t));
    w.bpath_stamp = xcalloc(n, sizeof(uint32_t));
    w.bpath = xmalloc(n * sizeof(struct tpath));
    w.alt = xmalloc(n * sizeof(uint64_t));
    w.apred = xmalloc(n * sizeof(int32_t));
    w.stack = xmalloc(n * sizeof(int32_t));
    for (size_t e = 0; e < n; e++) {
        if (grp_off[e] == grp_off[e + 1])
            continue;
        w.epoch++;
        /* Self as egress: nothing transits the source, every other tree path is fine. */
        if ((int32_t)e != w.self)
            dijkstra_without(&w, (int32_t)e);
        for (uint32_t g = grp_off[e]; g < grp_off[e + 1]; g++) {
            uint32_t s = grp[g];
            uint64_t best = INF;
            int32_t egress = -1;
            for (uint32_t k = site_first[s]; k < site_first[s + 1]; k++) {
                const struct attach *a = &at[k];
                if (!a->usable || a->pop == (int32_t)e)
                    continue;
                uint64_t d = dist_without(&w, (int32_t)e, a->pop);
                if (d == INF)
                    continue;
                uint64_t c = via_cost(&w, a, d);
                if (c < best) {
                    best = c;
                    egress = a->pop;
                }
            }
            if (egress >= 0) {
                struct site_route *sr = &t->sites[s];
                sr->has_backup = true;
                sr->backup = backup_path(&w, t, egress, best, path_off, path_len);
            }
        }
    }

    t->info = (route_table_info_t){
        .self = self_id,
        .generation = lsdb_generation(db),
        .pops = (uint32_t)n,
        .pops_reachable = (uint32_t)t->n_pops,
        .links = (uint32_t)w.n_links,
        .sites = (uint32_t)n_sites,
    };
    for (size_t s = 0; s < n_sites; s++) {
        t->info.sites_reachable += t->sites[s].reachable;
        t->info.sites_with_backup += t->sites[s].has_backup;
    }

    free(grp_off);
    free(grp);
    free(site_first);
    free(prim);
    free(at);
    free(path_off);
    free(path_len);
    free_work(&w);
    *out = t;
    return 0;
}

int route_compute(route_t *r, const lsdb_t *db, uint64_t self_id, uint64_t now_ms,
                  route_table_t **out)
{
    int rc = compute(r, db, self_id, NULL, NULL, out);
    if (rc)
        return rc;
    r->dirty = false;
    r->computed = true;
    r->last_compute = now_ms;
    return 0;
}

int route_compute_filtered(route_t *r, const lsdb_t *db, uint64_t self_id, route_allow_fn allow,
                           void *allow_ctx, route_table_t **out)
{
    return compute(r, db, self_id, allow, allow_ctx, out);
}
