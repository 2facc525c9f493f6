/* Route computation (mesh/route.h) over link-state databases built by hand:
 *   - small topologies with known answers: relay through a third PoP when the direct link is
 *     worse, primary and backup with distinct egresses, a backup that must not transit the
 *     primary's egress (also deep inside its subtree), loss, load and health penalties, node
 *     removal, unreachable and unknown sites, self as egress, one-sided links, deterministic
 *     ties whatever the insertion order;
 *   - the debounce;
 *   - random graphs of 50 PoPs, many seeds, against a Floyd-Warshall oracle (costs, egresses,
 *     reachability, backups), every returned path re-priced hop by hop;
 *   - the scale case (1000 PoPs x 16 links, 10000 sites), timed and printed (no pass/fail on
 *     time; tools/bench/bench_route measures it properly). */
#include "mesh/linkstate.h"
#include "mesh/route.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <time.h>

#include <cmocka.h>

#define MS 1000u /* us */

/* ---- a small topology builder: node ids 1..TOPO_MAX-1 ----------------------------------- */

#define TOPO_MAX 64

struct topo {
    lsdb_t *db;
    ls_record_t *rec; /* rec[id] */
    bool present[TOPO_MAX];
    uint64_t seq;
};

static struct topo *topo_new(void)
{
    struct topo *t = calloc(1, sizeof(*t));
    t->db = lsdb_new();
    t->rec = calloc(TOPO_MAX, sizeof(ls_record_t));
    return t;
}

static void topo_free(struct topo *t)
{
    lsdb_destroy(&t->db);
    free(t->rec);
    free(t);
}

static ls_record_t *topo_node(struct topo *t, uint64_t id)
{
    assert_true(id > 0 && id < TOPO_MAX);
    if (!t->present[id]) {
        ls_record_init(&t->rec[id], id, 0);
        t->present[id] = true;
    }
    return &t->rec[id];
}

/* One end's claim. */
static void topo_half(struct topo *t, uint64_t a, uint64_t b, uint32_t rtt_us, uint16_t loss)
{
    topo_node(t, b);
    assert_int_equal(ls_record_add_link(topo_node(t, a), b, rtt_us, loss), 0);
}

/* Both ends claim the same. */
static void topo_link(struct topo *t, uint64_t a, uint64_t b, uint32_t rtt_us, uint16_t loss)
{
    topo_half(t, a, b, rtt_us, loss);
    topo_half(t, b, a, rtt_us, loss);
}

static void topo_site(struct topo *t, uint64_t pop, uint64_t site, uint32_t rtt_us, uint8_t st)
{
    assert_int_equal(ls_record_add_site(topo_node(t, pop), site, rtt_us, st), 0);
}

/* Publishes every record (a new seq each time). */
static void topo_commit(struct topo *t)
{
    t->seq++;
    for (uint64_t id = 1; id < TOPO_MAX; id++) {
        if (!t->present[id])
            continue;
        t->rec[id].seq = t->seq;
        assert_true(lsdb_insert(t->db, &t->rec[id]) >= 0);
    }
}

/* Defaults, but no per-hop cost, so expected costs are plain sums of RTTs. */
static route_config_t plain_cfg(void)
{
    route_config_t c;
    route_config_defaults(&c);
    c.hop_us = 0;
    return c;
}

static route_table_t *routes(const lsdb_t *db, uint64_t self, const route_config_t *cfg)
{
    route_t *r = route_new(cfg);
    route_table_t *t = NULL;
    assert_int_equal(route_compute(r, db, self, 0, &t), 0);
    assert_non_null(t);
    route_destroy(&r);
    assert_null(r);
    return t;
}

/* Asserts path p is exactly the n ids given. */
static void assert_path(const route_path_t *p, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    if (p->n_hops != n)
        fail_msg("path has %u hops, expected %zu", p->n_hops, n);
    for (size_t i = 0; i < n; i++) {
        uint64_t id = va_arg(ap, uint64_t);
        if (p->hops[i] != id)
            fail_msg("hop %zu is %llu, expected %llu", i, (unsigned long long)p->hops[i],
                     (unsigned long long)id);
    }
    va_end(ap);
    assert_int_equal(p->egress, p->hops[n - 1]);
    assert_int_equal(p->next_hop, p->hops[n > 1 ? 1 : 0]);
}

#define A    1ull
#define B    2ull
#define C    3ull
#define D    4ull
#define E    5ull
#define SITE 900ull

/* ---- known answers ---------------------------------------------------------------------- */

/* A-B direct is 100 ms, A-C-B is 20 + 30: the site behind B is reached through C, and C is
 * the next hop toward B for relaying. A better direct link wins back. */
static void test_triangle_relay(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 100 * MS, 0);
    topo_link(t, A, C, 20 * MS, 0);
    topo_link(t, C, B, 30 * MS, 0);
    topo_site(t, B, SITE, 5 * MS, LS_SITE_ONLINE);
    topo_commit(t);

    route_table_t *rt = routes(t->db, A, &cfg);
    route_entry_t e;
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.site, SITE);
    assert_path(&e.primary, 3, A, C, B);
    assert_int_equal(e.primary.cost_us, 55 * MS);
    assert_false(e.has_backup);
    uint64_t nh = 0;
    assert_int_equal(route_table_next_hop(rt, B, &nh), 0);
    assert_int_equal(nh, C);
    route_path_t p;
    assert_int_equal(route_table_to_pop(rt, B, &p), 0);
    assert_int_equal(p.cost_us, 50 * MS);
    assert_int_equal(route_table_to_pop(rt, A, &p), 0);
    assert_path(&p, 1, A);
    assert_int_equal(p.cost_us, 0);
    route_table_info_t info;
    route_table_get_info(rt, &info);
    assert_int_equal(info.self, A);
    assert_int_equal(info.pops, 3);
    assert_int_equal(info.pops_reachable, 3);
    assert_int_equal(info.links, 3);
    assert_int_equal(info.sites, 1);
    assert_int_equal(info.sites_reachable, 1);
    route_table_destroy(&rt);
    assert_null(rt);

    /* The relay's own view: C reaches the site directly through B. */
    rt = routes(t->db, C, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, C, B);
    route_table_destroy(&rt);

    /* With the per-hop cost (0.5 ms), 40 ms direct beats 20 + 19.8 and one more hop. */
    t->rec[A].links[0].rtt_us = 40 * MS; /* A-B */
    t->rec[B].links[0].rtt_us = 40 * MS;
    t->rec[C].links[1].rtt_us = 19800; /* C-B */
    t->rec[B].links[1].rtt_us = 19800;
    topo_commit(t);
    route_config_defaults(&cfg); /* hop_us 500 */
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    assert_int_equal(e.primary.cost_us, 40 * MS + 500 + 5 * MS);
    route_table_destroy(&rt);
    cfg.hop_us = 0; /* without it, the relay is 0.2 ms better */
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 3, A, C, B);
    route_table_destroy(&rt);
    topo_free(t);
}

/* route_compute_filtered: a PoP the filter refuses neither relays nor egresses; self is the
 * start whatever the filter; the debounce is left alone. A-C-B is the cheap way to the site on
 * B, A-B direct the dear one, and D holds the site too. */
static bool allow_not_c(void *ctx, uint64_t pop)
{
    (void)ctx;
    return pop != C;
}

static bool allow_none(void *ctx, uint64_t pop)
{
    (void)ctx, (void)pop;
    return false;
}

static void test_filtered(void **state)
{
    (void)state;
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 100 * MS, 0);
    topo_link(t, A, C, 20 * MS, 0);
    topo_link(t, C, B, 30 * MS, 0);
    topo_site(t, B, SITE, 5 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_t *r = route_new(&cfg);
    route_mark_dirty(r, 1);
    route_table_t *rt = NULL;
    route_entry_t e;
    assert_int_equal(route_compute_filtered(r, t->db, A, allow_not_c, NULL, &rt), 0);
    assert_true(route_is_dirty(r)); /* a table for one purpose: the debounce is not touched */
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B); /* the dear direct link: C may not relay */
    assert_int_equal(e.primary.cost_us, 105 * MS);
    route_path_t p;
    assert_int_equal(route_table_to_pop(rt, C, &p), -ENOENT);
    route_table_destroy(&rt);
    /* Nothing allowed but self: the site on B is out of reach, not reached another way. */
    assert_int_equal(route_compute_filtered(r, t->db, A, allow_none, NULL, &rt), 0);
    assert_int_equal(route_table_lookup(rt, SITE, &e), -EHOSTUNREACH);
    route_table_destroy(&rt);
    /* The unfiltered table still takes the cheap relay. */
    assert_int_equal(route_compute(r, t->db, A, 2, &rt), 0);
    assert_false(route_is_dirty(r));
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 3, A, C, B);
    route_table_destroy(&rt);
    route_destroy(&r);
    topo_free(t);
}

/* A site on B and C: primary through the cheaper, backup through the other. */
static void test_two_egresses(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 10 * MS, 0);
    topo_link(t, A, C, 20 * MS, 0);
    topo_site(t, B, SITE, 10 * MS, LS_SITE_ONLINE);
    topo_site(t, C, SITE, 5 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_table_t *rt = routes(t->db, A, &cfg);
    route_entry_t e;
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    assert_int_equal(e.primary.cost_us, 20 * MS);
    assert_true(e.has_backup);
    assert_path(&e.backup, 2, A, C);
    assert_int_equal(e.backup.cost_us, 25 * MS);
    assert_int_not_equal(e.primary.egress, e.backup.egress);
    route_table_info_t info;
    route_table_get_info(rt, &info);
    assert_int_equal(info.sites_with_backup, 1);
    route_table_destroy(&rt);
    topo_free(t);
}

/* The cheapest way to C is through B, the primary egress: the backup must take the direct,
 * dearer A-C link instead. */
static void test_backup_avoids_primary_egress(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 10 * MS, 0);
    topo_link(t, B, C, 10 * MS, 0);
    topo_link(t, A, C, 50 * MS, 0);
    topo_site(t, B, SITE, 10 * MS, LS_SITE_ONLINE);
    topo_site(t, C, SITE, 10 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_table_t *rt = routes(t->db, A, &cfg);
    route_entry_t e;
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    assert_int_equal(e.primary.cost_us, 20 * MS);
    assert_true(e.has_backup);
    assert_path(&e.backup, 2, A, C);
    assert_int_equal(e.backup.cost_us, 60 * MS);
    route_path_t p; /* while the ordinary path to C goes through B */
    assert_int_equal(route_table_to_pop(rt, C, &p), 0);
    assert_path(&p, 3, A, B, C);
    route_table_destroy(&rt);

    /* Without the direct link, the only way to C is through B: no backup. */
    t->rec[A].n_links = 1; /* keeps A-B, drops A-C */
    assert_int_equal(t->rec[C].links[0].peer, A);
    t->rec[C].links[0] = t->rec[C].links[1]; /* keeps C-B, drops C-A */
    t->rec[C].n_links = 1;
    topo_commit(t);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    assert_false(e.has_backup);
    route_table_destroy(&rt);
    topo_free(t);
}

/* Deep in the primary egress's subtree: A-B-C-D is the tree (10 ms each), A-E-D the detour
 * (30 ms each). The site is on B (primary) and on C, which without B is reached only through
 * E and D: the backup is A,E,D,C. */
static void test_backup_detour_inside_subtree(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 10 * MS, 0);
    topo_link(t, B, C, 10 * MS, 0);
    topo_link(t, C, D, 10 * MS, 0);
    topo_link(t, A, E, 30 * MS, 0);
    topo_link(t, E, D, 30 * MS, 0);
    topo_site(t, B, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_site(t, C, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_site(t, E, SITE + 1, 1 * MS, LS_SITE_ONLINE); /* another egress group: E */
    topo_site(t, D, SITE + 1, 100 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_table_t *rt = routes(t->db, A, &cfg);
    route_entry_t e;
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    assert_int_equal(e.primary.cost_us, 11 * MS);
    assert_true(e.has_backup);
    assert_path(&e.backup, 4, A, E, D, C);
    assert_int_equal(e.backup.cost_us, 71 * MS);
    /* Site+1: primary E (31 ms); backup D avoiding E: A,B,C,D = 30 + 100. */
    assert_int_equal(route_table_lookup(rt, SITE + 1, &e), 0);
    assert_path(&e.primary, 2, A, E);
    assert_path(&e.backup, 4, A, B, C, D);
    assert_int_equal(e.backup.cost_us, 130 * MS);
    route_table_destroy(&rt);
    topo_free(t);
}

/* Loss, load and health change the choice. */
static void test_penalties(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 10 * MS, 0);
    topo_link(t, A, C, 20 * MS, 0);
    topo_site(t, B, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_site(t, C, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_entry_t e;
    route_table_t *rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, B);
    route_table_destroy(&rt);

    /* 15 permille loss on A-B, claimed by B only (the larger claim counts): 10 + 15 > 20. */
    t->rec[B].links[0].loss_permille = 15;
    topo_commit(t);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, C);
    assert_int_equal(e.primary.cost_us, 21 * MS);
    assert_int_equal(e.backup.egress, B);
    assert_int_equal(e.backup.cost_us, 10 * MS + 15 * MS + 1 * MS);
    route_table_destroy(&rt);

    /* At the cutoff the link is not used at all. */
    t->rec[B].links[0].loss_permille = 500;
    topo_commit(t);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, C);
    assert_false(e.has_backup);
    uint64_t nh;
    assert_int_equal(route_table_next_hop(rt, B, &nh), -ENOENT);
    route_table_destroy(&rt);
    t->rec[B].links[0].loss_permille = 0;
    topo_commit(t);

    /* Load: B at 300 permille costs 15 ms more: 26 > 21. */
    assert_int_equal(lsdb_set_penalty(t->db, B, 300, true), 1);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, C);
    assert_int_equal(e.backup.cost_us, 26 * MS);
    route_table_destroy(&rt);
    assert_int_equal(lsdb_set_penalty(t->db, B, 100, true), 1); /* 5 ms: 16 < 21 */
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, B);
    assert_int_equal(e.primary.cost_us, 16 * MS);
    route_table_destroy(&rt);

    /* Bad health outweighs 500 ms of distance, but remains usable as the backup. */
    t->rec[A].links[1].rtt_us = 500 * MS;
    t->rec[C].links[0].rtt_us = 500 * MS;
    topo_commit(t);
    assert_int_equal(lsdb_set_penalty(t->db, B, 0, false), 1);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, C);
    assert_int_equal(e.backup.egress, B);
    assert_int_equal(e.backup.cost_us, 11 * MS + cfg.unhealthy_us);
    route_table_destroy(&rt);
    assert_int_equal(lsdb_set_penalty(t->db, B, 0, true), 1);

    /* A transit penalty: the relay C of a triangle gets loaded, the direct link wins. */
    struct topo *u = topo_new();
    topo_link(u, A, B, 50 * MS, 0);
    topo_link(u, A, C, 10 * MS, 0);
    topo_link(u, C, B, 10 * MS, 0);
    topo_site(u, B, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_commit(u);
    rt = routes(u->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 3, A, C, B);
    route_table_destroy(&rt);
    assert_int_equal(lsdb_set_penalty(u->db, C, 700, true), 1); /* +35 ms */
    rt = routes(u->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    route_table_destroy(&rt);

    /* A degraded tunnel is penalised, not excluded. */
    topo_site(t, B, SITE, 1 * MS, LS_SITE_DEGRADED);
    topo_commit(t);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, B);
    assert_int_equal(e.primary.cost_us, 11 * MS + cfg.degraded_site_us);
    route_table_destroy(&rt);
    topo_free(u);
    topo_free(t);
}

/* Removing the relay reroutes over the direct link; removing the egress leaves the site
 * unreachable. */
/* A PoP whose ingress is down (its health vector says so) is a last resort: it carries no
 * transit and is no site's egress while any other way exists, however long (here a 3 s
 * detour, which the old 1 s penalty would have lost to), and it is still used when it is the
 * only way. A <-> B 5 ms <-> D, A <-> C 3 s <-> D; the site hangs off D, then off B alone. */
static void test_ingress_down_last_resort(void **state)
{
    (void)state;
    route_config_t cfg = plain_cfg();
    struct topo *t = topo_new();
    topo_link(t, A, B, 5 * MS, 0);
    topo_link(t, B, D, 5 * MS, 0);
    topo_link(t, A, C, 1500 * MS, 0);
    topo_link(t, C, D, 1500 * MS, 0);
    topo_site(t, D, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_entry_t e;
    route_table_t *rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 3, A, B, D);
    route_table_destroy(&rt);

    /* B's ingress is down: transit goes around it, even 3 s around. */
    assert_int_equal(lsdb_set_penalty(t->db, B, 0, false), 1);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 3, A, C, D);
    assert_int_equal(e.primary.cost_us, 3001 * MS);
    uint64_t nh;
    assert_int_equal(route_table_next_hop(rt, D, &nh), 0);
    assert_int_equal(nh, C);
    route_table_destroy(&rt);

    /* The only way: C gone, B carries the traffic again (at its penalty). */
    lsdb_remove(t->db, C);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 3, A, B, D);
    assert_int_equal(e.primary.cost_us, 11 * MS + cfg.unhealthy_us);
    route_table_destroy(&rt);
    topo_free(t);

    /* As an egress: the site on B (1 ms) and on C (3 s away). B down: C is the egress, and
     * B the backup; B's ingress back: B again. */
    struct topo *u = topo_new();
    topo_link(u, A, B, 5 * MS, 0);
    topo_link(u, A, C, 3000 * MS, 0);
    topo_site(u, B, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_site(u, C, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_commit(u);
    assert_int_equal(lsdb_set_penalty(u->db, B, 0, false), 1);
    rt = routes(u->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, C);
    assert_true(e.has_backup);
    assert_int_equal(e.backup.egress, B);
    route_table_destroy(&rt);
    assert_int_equal(lsdb_set_penalty(u->db, B, 0, true), 1);
    rt = routes(u->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, B);
    route_table_destroy(&rt);

    /* Self with its ingress down is no egress either while another exists. */
    assert_int_equal(lsdb_set_penalty(u->db, A, 0, false), 1);
    topo_site(u, A, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_commit(u);
    rt = routes(u->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_int_equal(e.primary.egress, B);
    route_table_destroy(&rt);
    topo_free(u);
}

static void test_node_removal_reroutes(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 100 * MS, 0);
    topo_link(t, A, C, 20 * MS, 0);
    topo_link(t, C, B, 30 * MS, 0);
    topo_site(t, B, SITE, 5 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_entry_t e;
    route_table_t *rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 3, A, C, B);
    route_table_destroy(&rt);

    assert_int_equal(lsdb_remove(t->db, C), 1);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    assert_int_equal(e.primary.cost_us, 105 * MS);
    route_path_t p;
    assert_int_equal(route_table_to_pop(rt, C, &p), -ENOENT);
    route_table_destroy(&rt);

    assert_int_equal(lsdb_remove(t->db, B), 1);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), -ENOENT); /* no record names it */
    route_table_destroy(&rt);
    topo_free(t);
}

static void test_unreachable(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 10 * MS, 0);
    topo_link(t, A, C, 10 * MS, 0);
    topo_site(t, B, SITE, 1 * MS, LS_SITE_OFFLINE);
    topo_site(t, C, SITE, 1 * MS, LS_SITE_OFFLINE);
    topo_site(t, C, SITE + 1, 1 * MS, 77); /* a state this version does not know */
    topo_node(t, D);                       /* no links at all */
    topo_site(t, D, SITE + 2, 1 * MS, LS_SITE_ONLINE);
    topo_site(t, B, SITE + 3, 1 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_table_t *rt = routes(t->db, A, &cfg);
    route_entry_t e;
    assert_int_equal(route_table_lookup(rt, SITE, &e), -EHOSTUNREACH);
    assert_int_equal(e.site, SITE);
    assert_int_equal(route_table_lookup(rt, SITE + 1, &e), -EHOSTUNREACH);
    assert_int_equal(route_table_lookup(rt, SITE + 2, &e), -EHOSTUNREACH);
    assert_int_equal(route_table_lookup(rt, SITE + 3, &e), 0);
    assert_int_equal(route_table_lookup(rt, 12345, &e), -ENOENT);
    route_path_t p;
    assert_int_equal(route_table_to_pop(rt, D, &p), -ENOENT);
    assert_int_equal(route_table_to_pop(rt, 12345, &p), -ENOENT);

    /* Listing: every known site, by id, with its status. */
    assert_int_equal(route_table_site_count(rt), 4);
    static const int want[] = {-EHOSTUNREACH, -EHOSTUNREACH, -EHOSTUNREACH, 0};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(route_table_site_at(rt, i, &e), want[i]);
        assert_int_equal(e.site, SITE + i);
    }
    assert_int_equal(route_table_site_at(rt, 4, &e), -ENOENT);
    route_table_info_t info;
    route_table_get_info(rt, &info);
    assert_int_equal(info.pops, 4);
    assert_int_equal(info.pops_reachable, 3);
    assert_int_equal(info.sites, 4);
    assert_int_equal(info.sites_reachable, 1);
    route_table_destroy(&rt);

    /* A self that holds no record yet: only itself is reachable. */
    rt = routes(t->db, 42, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE + 3, &e), -EHOSTUNREACH);
    assert_int_equal(route_table_to_pop(rt, 42, &p), 0);
    assert_int_equal(route_table_to_pop(rt, A, &p), -ENOENT);
    route_table_destroy(&rt);

    route_t *r = route_new(NULL);
    assert_int_equal(route_compute(r, t->db, 0, 0, &rt), -EINVAL);
    route_destroy(&r);
    route_destroy(&r); /* NULL is fine */
    route_table_destroy(&rt);
    topo_free(t);
}

/* Self attached to the site: egress self, next hop self, path [self]; self's own penalty
 * counts when it egresses. */
static void test_self_egress(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_link(t, A, B, 10 * MS, 0);
    topo_site(t, A, SITE, 5 * MS, LS_SITE_ONLINE);
    topo_site(t, B, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_table_t *rt = routes(t->db, A, &cfg);
    route_entry_t e;
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 1, A);
    assert_int_equal(e.primary.cost_us, 5 * MS);
    assert_true(e.has_backup);
    assert_path(&e.backup, 2, A, B);
    assert_int_equal(e.backup.cost_us, 11 * MS);
    route_table_destroy(&rt);

    assert_int_equal(lsdb_set_penalty(t->db, A, 200, true), 1); /* +10 ms as egress */
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    assert_path(&e.backup, 1, A);
    assert_int_equal(e.backup.cost_us, 15 * MS);
    route_table_destroy(&rt);
    topo_free(t);
}

/* A link only one end claims is used only if the silent end's record is full. */
static void test_one_sided_links(void **state)
{
    struct topo *t = topo_new();
    route_config_t cfg = plain_cfg();
    topo_half(t, A, B, 10 * MS, 0);
    topo_site(t, B, SITE, 1 * MS, LS_SITE_ONLINE);
    topo_commit(t);
    route_table_t *rt = routes(t->db, A, &cfg);
    route_entry_t e;
    assert_int_equal(route_table_lookup(rt, SITE, &e), -EHOSTUNREACH);
    route_table_info_t info;
    route_table_get_info(rt, &info);
    assert_int_equal(info.links, 0);
    route_table_destroy(&rt);

    for (uint64_t p = 10; p < 10 + LS_LINKS_MAX; p++)
        topo_link(t, B, p, 1 * MS, 0); /* B fills up with better links */
    topo_commit(t);
    rt = routes(t->db, A, &cfg);
    assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
    assert_path(&e.primary, 2, A, B);
    assert_int_equal(e.primary.cost_us, 11 * MS);
    route_table_destroy(&rt);
    topo_free(t);
}

/* Equal costs resolve to the lower id, whatever the order nodes settle or records arrive in. */
static void test_ties_deterministic(void **state)
{
    route_config_t cfg = plain_cfg();
    /* Two equal-cost ways A-x-D and A-y-D, x < y. Variant 0: a plain square. Variant 1: y is
     * nearer to A, so it settles first and reaches D first; x ties later and must win. */
    static const struct {
        uint64_t x, y;
        uint32_t ax, xd, ay, yd; /* ms */
        uint32_t tun_x, tun_y;   /* ms: SITE+1's tunnels, equalising its two egresses */
    } v[] = {
        {2, 3, 10, 10, 10, 10, 1, 1},
        {2, 5, 15, 5, 5, 15, 1, 11},
    };
    for (size_t k = 0; k < sizeof(v) / sizeof(v[0]); k++) {
        struct topo *t = topo_new();
        topo_link(t, A, v[k].x, v[k].ax * MS, 0);
        topo_link(t, v[k].x, D, v[k].xd * MS, 0);
        topo_link(t, A, v[k].y, v[k].ay * MS, 0);
        topo_link(t, v[k].y, D, v[k].yd * MS, 0);
        topo_site(t, D, SITE, 1 * MS, LS_SITE_ONLINE);
        topo_site(t, v[k].y, SITE + 1, v[k].tun_y * MS, LS_SITE_ONLINE);
        topo_site(t, v[k].x, SITE + 1, v[k].tun_x * MS, LS_SITE_ONLINE);
        topo_commit(t);
        route_table_t *rt = routes(t->db, A, &cfg);
        route_entry_t e;
        assert_int_equal(route_table_lookup(rt, SITE, &e), 0);
        assert_path(&e.primary, 3, A, v[k].x, D);
        assert_int_equal(route_table_lookup(rt, SITE + 1, &e), 0);
        assert_int_equal(e.primary.egress, v[k].x);
        assert_int_equal(e.backup.egress, v[k].y);
        assert_int_equal(e.primary.cost_us, e.backup.cost_us);

        /* The same records inserted in the opposite order give the same table. */
        lsdb_t *db2 = lsdb_new();
        for (uint64_t id = TOPO_MAX - 1; id > 0; id--)
            if (t->present[id])
                assert_int_equal(lsdb_insert(db2, &t->rec[id]), LSDB_CHANGED);
        route_table_t *rt2 = routes(db2, A, &cfg);
        assert_int_equal(route_table_site_count(rt), route_table_site_count(rt2));
        for (size_t i = 0; i < route_table_site_count(rt); i++) {
            route_entry_t x, y;
            assert_int_equal(route_table_site_at(rt, i, &x), route_table_site_at(rt2, i, &y));
            assert_int_equal(x.site, y.site);
            assert_int_equal(x.primary.cost_us, y.primary.cost_us);
            assert_int_equal(x.primary.n_hops, y.primary.n_hops);
            assert_memory_equal(x.primary.hops, y.primary.hops, x.primary.n_hops * 8);
            assert_int_equal(x.has_backup, y.has_backup);
            assert_int_equal(x.backup.n_hops, y.backup.n_hops);
            if (x.has_backup)
                assert_memory_equal(x.backup.hops, y.backup.hops, x.backup.n_hops * 8);
        }
        route_table_destroy(&rt2);
        lsdb_destroy(&db2);
        route_table_destroy(&rt);
        topo_free(t);
    }
}

static void test_debounce(void **state)
{
    route_config_t cfg;
    route_config_defaults(&cfg); /* settle 20, min interval 200 */
    assert_int_equal(cfg.settle_ms, 20);
    assert_int_equal(cfg.min_interval_ms, 200);
    route_t *r = route_new(&cfg);
    lsdb_t *db = lsdb_new();
    route_table_t *rt = NULL;

    assert_false(route_is_dirty(r));
    assert_false(route_due(r, 1000));
    assert_true(route_next_deadline(r) == UINT64_MAX);

    route_mark_dirty(r, 1000); /* first change: computed after settle_ms */
    route_mark_dirty(r, 1010); /* does not move the deadline */
    assert_true(route_is_dirty(r));
    assert_int_equal(route_next_deadline(r), 1020);
    assert_false(route_due(r, 1019));
    assert_true(route_due(r, 1020));
    assert_int_equal(route_compute(r, db, 1, 1020, &rt), 0);
    route_table_destroy(&rt);
    assert_false(route_is_dirty(r));
    assert_false(route_due(r, 5000));

    /* A burst right after: held until min_interval_ms after the last computation. */
    route_mark_dirty(r, 1030);
    route_mark_dirty(r, 1100);
    assert_int_equal(route_next_deadline(r), 1220);
    assert_false(route_due(r, 1219));
    assert_true(route_due(r, 1220));
    assert_int_equal(route_compute(r, db, 1, 1225, &rt), 0);
    route_table_destroy(&rt);

    /* Long after: only the settle delay. */
    route_mark_dirty(r, 9000);
    assert_int_equal(route_next_deadline(r), 9020);
    route_destroy(&r);
    lsdb_destroy(&db);
}

/* ---- random graphs against a Floyd-Warshall oracle -------------------------------------- */

#define ON   50 /* PoPs */
#define OS   40 /* sites */
#define OINF UINT64_MAX

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return a == OINF || b == OINF ? OINF : a + b;
}

/* The oracle's own reading of the rules: weight of entering j from i (edge + penalty of j). */
struct oracle {
    uint64_t id[ON];
    ls_record_t *rec; /* rec[i] */
    uint64_t nc[ON];  /* node cost */
    uint64_t w[ON][ON];
    uint64_t d[ON][ON];
};

static const ls_link_t *rec_link(const ls_record_t *r, uint64_t peer)
{
    for (uint32_t k = 0; k < r->n_links; k++)
        if (r->links[k].peer == peer)
            return &r->links[k];
    return NULL;
}

static void oracle_weights(struct oracle *o, const route_config_t *cfg)
{
    for (int i = 0; i < ON; i++) {
        for (int j = 0; j < ON; j++) {
            o->w[i][j] = OINF;
            if (i == j)
                continue;
            const ls_link_t *ij = rec_link(&o->rec[i], o->id[j]);
            const ls_link_t *ji = rec_link(&o->rec[j], o->id[i]);
            uint32_t rtt, loss;
            if (ij && ji) {
                rtt = ij->rtt_us > ji->rtt_us ? ij->rtt_us : ji->rtt_us;
                loss =
                    ij->loss_permille > ji->loss_permille ? ij->loss_permille : ji->loss_permille;
            } else if (ij && o->rec[j].n_links == LS_LINKS_MAX) {
                rtt = ij->rtt_us, loss = ij->loss_permille;
            } else if (ji && o->rec[i].n_links == LS_LINKS_MAX) {
                rtt = ji->rtt_us, loss = ji->loss_permille;
            } else {
                continue;
            }
            if (loss >= cfg->loss_cutoff_permille)
                continue;
            uint64_t c = rtt + (uint64_t)loss * cfg->loss_us_per_permille + cfg->hop_us;
            o->w[i][j] = (c ? c : 1) + o->nc[j];
        }
    }
}

/* All-pairs distances with node `skip` removed (-1: none). */
static void oracle_fw(struct oracle *o, int skip)
{
    for (int i = 0; i < ON; i++)
        for (int j = 0; j < ON; j++)
            o->d[i][j] = i == j ? 0 : (i == skip || j == skip ? OINF : o->w[i][j]);
    for (int k = 0; k < ON; k++) {
        if (k == skip)
            continue;
        for (int i = 0; i < ON; i++) {
            if (o->d[i][k] == OINF)
                continue;
            for (int j = 0; j < ON; j++) {
                uint64_t via = add_sat(o->d[i][k], o->d[k][j]);
                if (via < o->d[i][j])
                    o->d[i][j] = via;
            }
        }
    }
}

static int oracle_index(const struct oracle *o, uint64_t id)
{
    for (int i = 0; i < ON; i++)
        if (o->id[i] == id)
            return i;
    fail_msg("id %llu not in the graph", (unsigned long long)id);
    return -1;
}

/* Re-prices a returned path hop by hop from the oracle's weights (and checks it is simple and
 * starts at self). Returns the cost to its last PoP. */
static uint64_t price_path(const struct oracle *o, int self, const route_path_t *p, int avoid)
{
    assert_true(p->n_hops >= 1);
    assert_int_equal(p->hops[0], o->id[self]);
    uint64_t cost = 0;
    bool seen[ON] = {false};
    int prev = self;
    seen[self] = true;
    for (uint32_t h = 1; h < p->n_hops; h++) {
        int cur = oracle_index(o, p->hops[h]);
        assert_false(seen[cur]);
        seen[cur] = true;
        assert_true(cur != avoid);
        assert_true(o->w[prev][cur] != OINF);
        cost += o->w[prev][cur];
        prev = cur;
    }
    return cost;
}

/* The cost through attachment s of PoP i at distance d (oracle's version of the rules). */
static uint64_t oracle_via(const struct oracle *o, const route_config_t *cfg, int self, int i,
                           const ls_site_t *s, uint64_t d)
{
    if (d == OINF)
        return OINF;
    uint64_t c = d + s->rtt_us + (s->state == LS_SITE_DEGRADED ? cfg->degraded_site_us : 0);
    return c + (i == self ? o->nc[self] : 0);
}

static bool usable(const ls_site_t *s)
{
    return s->state == LS_SITE_ONLINE || s->state == LS_SITE_DEGRADED;
}

/* Best attachment of site over distances dist[] (row of self), skipping PoP `skip`. Ties:
 * lower PoP id. Returns the index or -1. */
static int oracle_best(const struct oracle *o, const route_config_t *cfg, int self,
                       const uint64_t *dist, uint64_t site, int skip, uint64_t *cost)
{
    int best = -1;
    *cost = OINF;
    for (int i = 0; i < ON; i++) {
        if (i == skip)
            continue;
        for (uint32_t k = 0; k < o->rec[i].n_sites; k++) {
            const ls_site_t *s = &o->rec[i].sites[k];
            if (s->site != site || !usable(s))
                continue;
            uint64_t c = oracle_via(o, cfg, self, i, s, dist[i]);
            if (c < *cost || (c == *cost && c != OINF && o->id[i] < o->id[best])) {
                *cost = c;
                best = i;
            }
        }
    }
    return best;
}

static void oracle_case(uint64_t seed, int *backups_checked)
{
    struct oracle *o = calloc(1, sizeof(*o));
    o->rec = calloc(ON, sizeof(ls_record_t));
    rng_state = seed * 0x9e3779b97f4a7c15ull + 1;
    route_config_t cfg;
    route_config_defaults(&cfg);
    if (seed % 3 == 0)
        cfg.hop_us = 0;
    lsdb_t *db = lsdb_new();

    /* Random ids (so id order differs from creation order); some are hubs with many links. */
    for (int i = 0; i < ON; i++) {
    again:
        o->id[i] = 1 + rnd() % 100000;
        for (int j = 0; j < i; j++)
            if (o->id[j] == o->id[i])
                goto again;
        ls_record_init(&o->rec[i], o->id[i], 1);
    }
    int degree_pct = 4 + (int)(rnd() % 10);
    for (int i = 0; i < ON; i++) {
        bool hub = rnd() % 8 == 0;
        for (int j = i + 1; j < ON; j++) {
            if ((int)(rnd() % 100) >= (hub ? 60 : degree_pct))
                continue;
            /* Coarse RTTs (whole ms) make ties common; sometimes the two ends disagree;
             * sometimes lossy; sometimes only one end claims. */
            uint32_t rtt = (uint32_t)(1 + rnd() % 40) * MS;
            uint32_t rtt2 = rnd() % 4 == 0 ? (uint32_t)(1 + rnd() % 40) * MS : rtt;
            uint16_t loss = rnd() % 5 == 0 ? (uint16_t)(rnd() % 600) : 0;
            int sided = (int)(rnd() % 10); /* 0: only i claims, 1: only j claims */
            if (sided != 1)
                (void)ls_record_add_link(&o->rec[i], o->id[j], rtt, loss); /* may be capped */
            if (sided != 0)
                (void)ls_record_add_link(&o->rec[j], o->id[i], rtt2, 0);
        }
    }
    for (uint64_t s = 1; s <= OS; s++) {
        int k = 1 + (int)(rnd() % 4);
        for (int a = 0; a < k; a++) {
            static const uint8_t states[] = {LS_SITE_ONLINE,   LS_SITE_ONLINE,  LS_SITE_ONLINE,
                                             LS_SITE_DEGRADED, LS_SITE_OFFLINE, 9};
            int i = (int)(rnd() % ON);
            uint32_t rtt = (uint32_t)(rnd() % 30) * MS;
            assert_int_equal(ls_record_add_site(&o->rec[i], s, rtt, states[rnd() % 6]), 0);
        }
    }
    for (int i = 0; i < ON; i++) {
        assert_int_equal(lsdb_insert(db, &o->rec[i]), LSDB_CHANGED);
        uint16_t load = rnd() % 3 == 0 ? (uint16_t)(rnd() % 1000) : 0;
        bool healthy = rnd() % 10 != 0;
        lsdb_set_penalty(db, o->id[i], load, healthy);
        o->nc[i] = (uint64_t)load * cfg.load_us_per_permille + (healthy ? 0 : cfg.unhealthy_us);
    }
    int self = (int)(rnd() % ON);

    oracle_weights(o, &cfg);
    oracle_fw(o, -1);
    uint64_t dist[ON], dist_wo[ON];
    memcpy(dist, o->d[self], sizeof(dist));

    route_t *r = route_new(&cfg);
    route_table_t *rt = NULL;
    assert_int_equal(route_compute(r, db, o->id[self], 0, &rt), 0);

    /* PoPs: reachability and distance, and the path prices to it. */
    for (int i = 0; i < ON; i++) {
        route_path_t p;
        int rc = route_table_to_pop(rt, o->id[i], &p);
        if (dist[i] == OINF) {
            assert_int_equal(rc, -ENOENT);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(p.cost_us, dist[i]);
        assert_int_equal(p.egress, o->id[i]);
        assert_int_equal(price_path(o, self, &p, -1), dist[i]);
    }

    /* Sites: primary first, remembering each primary egress. */
    int prim[OS + 1];
    for (uint64_t s = 1; s <= OS; s++) {
        uint64_t want;
        int best = oracle_best(o, &cfg, self, dist, s, -1, &want);
        route_entry_t e;
        int rc = route_table_lookup(rt, s, &e);
        prim[s] = best;
        bool known = false;
        for (int i = 0; i < ON; i++)
            for (uint32_t k = 0; k < o->rec[i].n_sites; k++)
                known |= o->rec[i].sites[k].site == s;
        if (!known) {
            assert_int_equal(rc, -ENOENT);
            continue;
        }
        if (best < 0) {
            assert_int_equal(rc, -EHOSTUNREACH);
            continue;
        }
        assert_int_equal(rc, 0);
        assert_int_equal(e.primary.cost_us, want);
        assert_int_equal(e.primary.egress, o->id[best]);
        /* The path prices to the cost minus the egress's tunnel (and self's penalty). */
        uint64_t to_egress = price_path(o, self, &e.primary, -1);
        assert_int_equal(to_egress, dist[best]);
    }
    /* Backups, with each primary egress removed from the graph. */
    for (int ex = 0; ex < ON; ex++) {
        bool any = false;
        for (uint64_t s = 1; s <= OS; s++)
            any |= prim[s] == ex;
        if (!any)
            continue;
        if (ex == self) {
            memcpy(dist_wo, dist, sizeof(dist_wo)); /* nothing transits the source */
        } else {
            oracle_fw(o, ex);
            memcpy(dist_wo, o->d[self], sizeof(dist_wo));
        }
        for (uint64_t s = 1; s <= OS; s++) {
            if (prim[s] != ex)
                continue;
            uint64_t want;
            int best = oracle_best(o, &cfg, self, dist_wo, s, ex, &want);
            route_entry_t e;
            assert_int_equal(route_table_lookup(rt, s, &e), 0);
            if (best < 0) {
                assert_false(e.has_backup);
                continue;
            }
            assert_true(e.has_backup);
            assert_int_equal(e.backup.cost_us, want);
            assert_int_equal(e.backup.egress, o->id[best]);
            assert_int_not_equal(e.backup.egress, e.primary.egress);
            uint64_t to_egress = price_path(o, self, &e.backup, ex == self ? -1 : ex);
            assert_int_equal(to_egress, dist_wo[best]);
            (*backups_checked)++;
        }
    }
    route_table_destroy(&rt);
    route_destroy(&r);
    lsdb_destroy(&db);
    free(o->rec);
    free(o);
}

static void test_random_vs_oracle(void **state)
{
    int backups = 0;
    for (uint64_t seed = 1; seed <= 120; seed++)
        oracle_case(seed, &backups);
    assert_true(backups > 500); /* the backup path was really exercised */
}

/* ---- scale ------------------------------------------------------------------------------ */

#define SN      1000  /* PoPs */
#define SSITES  10000 /* sites */
#define SATTACH 3     /* PoPs per site */

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* PoPs on a plane (a 10000 km square); each claims its 16 nearest, RTT ~ distance. */
static lsdb_t *scale_db(void)
{
    double *x = malloc(SN * sizeof(double)), *y = malloc(SN * sizeof(double));
    rng_state = 12345;
    for (int i = 0; i < SN; i++) {
        x[i] = (double)(rnd() % 10000);
        y[i] = (double)(rnd() % 10000);
    }
    lsdb_t *db = lsdb_new();
    ls_record_t *rec = calloc(SN, sizeof(ls_record_t));
    for (int i = 0; i < SN; i++) {
        ls_record_init(&rec[i], 1000 + (uint64_t)i, 1);
        for (int j = 0; j < SN; j++) {
            if (j == i)
                continue;
            double dx = x[i] - x[j], dy = y[i] - y[j];
            double km = dx * dx + dy * dy;
            uint32_t rtt = (uint32_t)(sqrt(km) * 10.0) + 500; /* ~1 ms per 100 km */
            (void)ls_record_add_link(&rec[i], 1000 + (uint64_t)j, rtt, (uint16_t)(rnd() % 3));
        }
    }
    for (uint64_t s = 1; s <= SSITES; s++)
        for (int a = 0; a < SATTACH; a++)
            (void)ls_record_add_site(&rec[rnd() % SN], s, (uint32_t)(1000 + rnd() % 50000),
                                     LS_SITE_ONLINE);
    for (int i = 0; i < SN; i++)
        assert_int_equal(lsdb_insert(db, &rec[i]), LSDB_CHANGED);
    free(rec);
    free(x);
    free(y);
    return db;
}

static void test_scale(void **state)
{
    lsdb_t *db = scale_db();
    route_t *r = route_new(NULL);
    route_table_t *rt = NULL;
    double best = 1e9;
    for (int round = 0; round < 3; round++) {
        double t0 = now_ms();
        assert_int_equal(route_compute(r, db, 1000 + 17, 0, &rt), 0);
        double el = now_ms() - t0;
        best = el < best ? el : best;
        if (round < 2)
            route_table_destroy(&rt);
    }
    route_table_info_t info;
    route_table_get_info(rt, &info);
    printf("[ route    ] scale: %u PoPs, %u links, %u sites (%u reachable, %u with backup): "
           "route_compute best of 3 = %.2f ms\n",
           info.pops, info.links, info.sites, info.sites_reachable, info.sites_with_backup, best);
    assert_int_equal(info.pops, SN);
    assert_true(info.links >= SN * LS_LINKS_MAX / 2);
    assert_int_equal(info.pops_reachable, SN);
    assert_true(info.sites > SSITES * 95 / 100); /* a few lost to the per-PoP site cap */
    assert_int_equal(info.sites_reachable, info.sites);
    /* Every site with two distinct attachments has a backup avoiding the primary egress. */
    size_t checked = 0;
    for (size_t i = 0; i < route_table_site_count(rt); i++) {
        route_entry_t e;
        assert_int_equal(route_table_site_at(rt, i, &e), 0);
        assert_true(e.primary.cost_us > 0);
        if (!e.has_backup)
            continue;
        assert_int_not_equal(e.backup.egress, e.primary.egress);
        assert_true(e.backup.cost_us >= e.primary.cost_us);
        /* hops[0] is self, which may be the primary egress: the source is not transited. */
        for (uint32_t h = 1; h < e.backup.n_hops; h++)
            assert_int_not_equal(e.backup.hops[h], e.primary.egress);
        checked++;
    }
    assert_true(checked > info.sites * 9 / 10);
    route_table_destroy(&rt);
    route_destroy(&r);
    lsdb_destroy(&db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_triangle_relay),
        cmocka_unit_test(test_filtered),
        cmocka_unit_test(test_two_egresses),
        cmocka_unit_test(test_backup_avoids_primary_egress),
        cmocka_unit_test(test_backup_detour_inside_subtree),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_ingress_down_last_resort),
        cmocka_unit_test(test_node_removal_reroutes),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_self_egress),
        cmocka_unit_test(test_one_sided_links),
        cmocka_unit_test(test_ties_deterministic),
        cmocka_unit_test(test_debounce),
        cmocka_unit_test(test_random_vs_oracle),
        cmocka_unit_test(test_scale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
