/* bench_route: route_compute (mesh/route.h) at mesh scale, against the obvious way to get the
 * same answers, in one run on the same database.
 *
 * The mesh: PoPs scattered on a 10,000 km square, each advertising its LS_LINKS_MAX nearest
 * (RTT ~ distance, a little loss), sites attached to k random PoPs, a third of the PoPs
 * loaded. Both contenders read the same lsdb_t with the same cost rules:
 *
 *   popmesh  route_compute: one Dijkstra from self, then for each distinct primary egress a
 *            Dijkstra restricted to that egress's subtree of the shortest-path tree
 *   naive    one Dijkstra from self, then one full Dijkstra per distinct primary egress with
 *            that egress removed (the textbook way to get "a backup that avoids the primary
 *            egress"), with a binary heap and the same adjacency
 *
 * Both must agree on every primary and backup cost (checked; a mismatch exits 1). The ratio
 * is naive / popmesh time: how many times faster the subtree method is. The naive side does
 * not build paths or a table, so the ratio understates the difference a little.
 *
 * Usage: bench_route [--pops N] [--sites N] [--attach K] [--rounds R] [--tsv] */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/xmalloc.h"
#include "mesh/linkstate.h"
#include "mesh/route.h"

#define INF UINT64_MAX

static uint64_t rng_state = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- the mesh --------------------------------------------------------------------------- */

static lsdb_t *make_mesh(int pops, int sites, int attach)
{
    double *x = xmalloc(pops * sizeof(double)), *y = xmalloc(pops * sizeof(double));
    for (int i = 0; i < pops; i++) {
        x[i] = (double)(rnd() % 10000);
        y[i] = (double)(rnd() % 10000);
    }
    ls_record_t *rec = xcalloc(pops, sizeof(ls_record_t));
    for (int i = 0; i < pops; i++) {
        ls_record_init(&rec[i], 1000 + (uint64_t)i, 1);
        for (int j = 0; j < pops; j++) {
            if (j == i)
                continue;
            double dx = x[i] - x[j], dy = y[i] - y[j];
            uint32_t rtt = (uint32_t)(sqrt(dx * dx + dy * dy) * 10.0) + 500;
            (void)ls_record_add_link(&rec[i], 1000 + (uint64_t)j, rtt, (uint16_t)(rnd() % 3));
        }
    }
    for (int s = 1; s <= sites; s++)
        for (int a = 0; a < attach; a++)
            (void)ls_record_add_site(&rec[rnd() % pops], (uint64_t)s,
                                     (uint32_t)(1000 + rnd() % 50000), LS_SITE_ONLINE);
    lsdb_t *db = lsdb_new();
    for (int i = 0; i < pops; i++) {
        lsdb_insert(db, &rec[i]);
        if (i % 3 == 0)
            lsdb_set_penalty(db, rec[i].origin, (uint16_t)(rnd() % 800), true);
    }
    free(rec);
    free(x);
    free(y);
    return db;
}

/* ---- the naive contender ---------------------------------------------------------------- */

struct graph {
    size_t n;
    uint64_t *id;        /* sorted */
    lsdb_entry_t *ent;   /* by index */
    uint64_t *node_cost; /* us */
    uint32_t *off;       /* CSR */
    int32_t *to;
    uint64_t *cost;
};

static int cmp_entry(const void *a, const void *b)
{
    const lsdb_entry_t *x = a, *y = b;
    return (x->origin > y->origin) - (x->origin < y->origin);
}

static int32_t index_of(const struct graph *g, uint64_t id)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->id[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < g->n && g->id[lo] == id ? (int32_t)lo : -1;
}

static void build_graph(struct graph *g, const lsdb_t *db, const route_config_t *cfg)
{
    g->n = lsdb_count(db);
    g->ent = xmalloc(g->n * sizeof(lsdb_entry_t));
    for (size_t i = 0; i < g->n; i++)
        lsdb_entry_at(db, i, &g->ent[i]);
    qsort(g->ent, g->n, sizeof(lsdb_entry_t), cmp_entry);
    g->id = xmalloc(g->n * sizeof(uint64_t));
    g->node_cost = xmalloc(g->n * sizeof(uint64_t));
    for (size_t i = 0; i < g->n; i++) {
        g->id[i] = g->ent[i].origin;
        g->node_cost[i] = (uint64_t)g->ent[i].load_permille * cfg->load_us_per_permille +
                          (g->ent[i].healthy ? 0 : cfg->unhealthy_us);
    }
    /* Every usable link once (from the lower index when both ends claim it, from the claiming
     * end otherwise), stored both ways. */
    size_t cap = 0;
    for (size_t i = 0; i < g->n; i++)
        cap += 2 * g->ent[i].n_links;
    int32_t *eu = xmalloc((cap + 1) * sizeof(int32_t)), *ev = xmalloc((cap + 1) * sizeof(int32_t));
    uint64_t *ec = xmalloc((cap + 1) * sizeof(uint64_t));
    size_t m = 0;
    for (size_t i = 0; i < g->n; i++) {
        for (uint32_t k = 0; k < g->ent[i].n_links; k++) {
            int32_t j = index_of(g, g->ent[i].links[k].peer);
            ls_link_t l;
            if (j < 0 || lsdb_link(db, g->id[i], g->id[j], &l))
                continue;
            bool mutual = false;
            for (uint32_t q = 0; q < g->ent[j].n_links; q++)
                mutual |= g->ent[j].links[q].peer == g->id[i];
            if (mutual && (size_t)j < i)
                continue;
            if (l.loss_permille >= cfg->loss_cutoff_permille)
                continue;
            uint64_t c =
                l.rtt_us + (uint64_t)l.loss_permille * cfg->loss_us_per_permille + cfg->hop_us;
            c = c ? c : 1;
            eu[m] = (int32_t)i, ev[m] = j, ec[m++] = c;
            eu[m] = j, ev[m] = (int32_t)i, ec[m++] = c;
        }
    }
    g->off = xcalloc(g->n + 1, sizeof(uint32_t));
    for (size_t k = 0; k < m; k++)
        g->off[eu[k] + 1]++;
    for (size_t i = 0; i < g->n; i++)
        g->off[i + 1] += g->off[i];
    g->to = xmalloc((m + 1) * sizeof(int32_t));
    g->cost = xmalloc((m + 1) * sizeof(uint64_t));
    uint32_t *fill = xmalloc((g->n + 1) * sizeof(uint32_t));
    memcpy(fill, g->off, (g->n + 1) * sizeof(uint32_t));
    for (size_t k = 0; k < m; k++) {
        uint32_t at = fill[eu[k]]++;
        g->to[at] = ev[k];
        g->cost[at] = ec[k];
    }
    free(fill);
    free(eu);
    free(ev);
    free(ec);
}

static void free_graph(struct graph *g)
{
    free(g->id);
    free(g->ent);
    free(g->node_cost);
    free(g->off);
    free(g->to);
    free(g->cost);
}

/* Lazy-deletion binary heap of (dist, node). */
struct item {
    uint64_t d;
    int32_t v;
};

static void push(struct item *h, size_t *n, struct item it)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2].d > it.d) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = it;
}

static struct item pop(struct item *h, size_t *n)
{
    struct item top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1].d < h[c].d)
            c++;
        if (h[c].d >= last.d)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = last;
    return top;
}

/* Full Dijkstra from src with node `skip` removed (-1: none). */
static void dijkstra(const struct graph *g, int32_t src, int32_t skip, uint64_t *dist,
                     struct item *heap)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++)
        dist[i] = INF;
    dist[src] = 0;
    push(heap, &n, (struct item){0, src});
    while (n) {
        struct item it = pop(heap, &n);
        if (it.d != dist[it.v])
            continue;
        for (uint32_t k = g->off[it.v]; k < g->off[it.v + 1]; k++) {
            int32_t v = g->to[k];
            if (v == skip || v == src)
                continue;
            uint64_t nd = it.d + g->cost[k] + g->node_cost[v];
            if (nd < dist[v]) {
                dist[v] = nd;
                push(heap, &n, (struct item){nd, v});
            }
        }
    }
}

struct naive_out {
    uint64_t *primary; /* per site id (1..sites): cost, INF if unreachable */
    uint64_t *backup;
};

static void naive_routes(const lsdb_t *db, const route_config_t *cfg, uint64_t self, int sites,
                         struct naive_out *out)
{
    struct graph g = {0};
    build_graph(&g, db, cfg);
    int32_t s = index_of(&g, self);
    uint64_t *dist = xmalloc(g.n * sizeof(uint64_t)), *alt = xmalloc(g.n * sizeof(uint64_t));
    size_t heap_cap = g.off[g.n] + 1;
    struct item *heap = xmalloc(heap_cap * sizeof(struct item));
    dijkstra(&g, s, -1, dist, heap);
    int32_t *prim = xmalloc((sites + 1) * sizeof(int32_t));
    for (int site = 0; site <= sites; site++) {
        out->primary[site] = out->backup[site] = INF;
        prim[site] = -1;
    }
    /* Primary: scan every record's sites (no sort: sites are dense small ids here). */
    for (size_t i = 0; i < g.n; i++) {
        for (uint32_t k = 0; k < g.ent[i].n_sites; k++) {
            const ls_site_t *a = &g.ent[i].sites[k];
            if (dist[i] == INF || a->site > (uint64_t)sites)
                continue;
            uint64_t c = dist[i] + a->rtt_us + ((int32_t)i == s ? g.node_cost[s] : 0);
            if (c < out->primary[a->site] ||
                (c == out->primary[a->site] && (int32_t)i < prim[a->site])) {
                out->primary[a->site] = c;
                prim[a->site] = (int32_t)i;
            }
        }
    }
    /* Backup: one full Dijkstra per distinct primary egress. */
    bool *done = xcalloc(g.n, sizeof(bool));
    for (int site = 1; site <= sites; site++) {
        int32_t e = prim[site];
        if (e < 0 || done[e])
            continue;
        done[e] = true;
        if (e == s)
            memcpy(alt, dist, g.n * sizeof(uint64_t));
        else
            dijkstra(&g, s, e, alt, heap);
        for (size_t i = 0; i < g.n; i++) {
            if ((int32_t)i == e || alt[i] == INF)
                continue;
            for (uint32_t k = 0; k < g.ent[i].n_sites; k++) {
                const ls_site_t *a = &g.ent[i].sites[k];
                if (a->site > (uint64_t)sites || prim[a->site] != e)
                    continue;
                uint64_t c = alt[i] + a->rtt_us + ((int32_t)i == s ? g.node_cost[s] : 0);
                if (c < out->backup[a->site])
                    out->backup[a->site] = c;
            }
        }
    }
    free(done);
    free(prim);
    free(heap);
    free(dist);
    free(alt);
    free_graph(&g);
}

/* ---- main ------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    int pops = 1000, sites = 10000, attach = 3, rounds = 7;
    bool tsv = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tsv"))
            tsv = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--pops"))
            pops = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--sites"))
            sites = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--attach"))
            attach = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_route [--pops N] [--sites N] [--attach K] [--rounds R] "
                            "[--tsv]\n");
            return 2;
        }
    }
    if (pops < 2 || sites < 1 || attach < 1 || rounds < 1) {
        fprintf(stderr, "bench_route: --pops >= 2, --sites, --attach, --rounds >= 1\n");
        return 2;
    }
    lsdb_t *db = make_mesh(pops, sites, attach);
    route_config_t cfg;
    route_config_defaults(&cfg);
    route_t *r = route_new(&cfg);
    uint64_t self = 1000 + (uint64_t)(pops / 3);
    double *tp = xmalloc(rounds * sizeof(double)), *tn = xmalloc(rounds * sizeof(double));
    struct naive_out nv = {xmalloc((sites + 1) * sizeof(uint64_t)),
                           xmalloc((sites + 1) * sizeof(uint64_t))};
    route_table_t *t = NULL;
    for (int k = 0; k < rounds; k++) {
        route_table_destroy(&t);
        double t0 = (clock_mono_s() * 1e3);
        route_compute(r, db, self, 0, &t);
        double t1 = (clock_mono_s() * 1e3);
        naive_routes(db, &cfg, self, sites, &nv);
        double t2 = (clock_mono_s() * 1e3);
        tp[k] = t1 - t0;
        tn[k] = t2 - t1;
    }
    /* Both must give the same costs. */
    int mismatches = 0;
    for (int s = 1; s <= sites; s++) {
        route_entry_t e;
        int rc = route_table_lookup(t, (uint64_t)s, &e);
        uint64_t p = rc == 0 ? e.primary.cost_us : INF;
        uint64_t b = rc == 0 && e.has_backup ? e.backup.cost_us : INF;
        if (rc == -ENOENT)
            continue; /* never attached (every random pick fell on a full PoP) */
        if (p != nv.primary[s] || b != nv.backup[s])
            mismatches++;
    }
    route_table_info_t info;
    route_table_get_info(t, &info);
    qsort(tp, rounds, sizeof(double), cmp_double);
    qsort(tn, rounds, sizeof(double), cmp_double);
    double mp = tp[rounds / 2], mn = tn[rounds / 2];
    if (tsv) {
        printf("route_compute\t%.3f\t%.3f\tms\t%.2f\n", mp, mn, mn / mp);
    } else {
        printf("mesh: %u PoPs, %u links, %u sites (%u reachable, %u with backup), self %llu\n",
               info.pops, info.links, info.sites, info.sites_reachable, info.sites_with_backup,
               (unsigned long long)self);
        printf("%-14s %12s %12s %6s %12s\n", "metric", "popmesh", "naive", "unit", "naive/popmesh");
        printf("%-14s %12.3f %12.3f %6s %12.2f\n", "route_compute", mp, mn, "ms", mn / mp);
        printf("(median of %d rounds; naive = one full Dijkstra per distinct primary egress)\n",
               rounds);
    }
    if (mismatches)
        fprintf(stderr, "bench_route: %d sites where popmesh and naive disagree\n", mismatches);
    free(nv.primary);
    free(nv.backup);
    free(tp);
    free(tn);
    route_table_destroy(&t);
    route_destroy(&r);
    lsdb_destroy(&db);
    return mismatches ? 1 : 0;
}
