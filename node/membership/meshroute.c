#include "node/membership/meshroute.h"

#include "common/clock.h"

#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct meshroute {
    struct ev_loop *loop;
    uint64_t self;
    meshroute_io_t io;
    lsdb_t *db;
    route_t *route;
    route_table_t *table;
    ev_timer publish;
    ev_timer recompute;
    uint64_t rng;
};

static void arm_recompute(meshroute_t *m)
{
    if (!route_is_dirty(m->route))
        return;
    uint64_t now = clock_mono_ms(), due = route_next_deadline(m->route);
    ev_timer_stop(m->loop, &m->recompute);
    ev_timer_set(&m->recompute, due > now ? (double)(due - now) / 1000.0 : 0.0, 0.0);
    ev_timer_start(m->loop, &m->recompute);
}

static void mark(meshroute_t *m)
{
    route_mark_dirty(m->route, clock_mono_ms());
    arm_recompute(m);
}

static void on_recompute(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshroute_t *m = t->data;
    uint64_t now = clock_mono_ms();
    if (!route_due(m->route, now)) {
        arm_recompute(m);
        return;
    }
    route_table_t *next = NULL;
    if (route_compute(m->route, m->db, m->self, now, &next) == 0) {
        route_table_destroy(&m->table);
        m->table = next;
        if (m->io.recomputed)
            m->io.recomputed(m->io.ctx);
        route_table_info_t info;
        route_table_get_info(next, &info);
        log_debug("routes: %u/%u PoPs reachable, %u/%u sites (%u with a backup)",
                  info.pops_reachable, info.pops, info.sites_reachable, info.sites,
                  info.sites_with_backup);
    }
    arm_recompute(m);
}

/* Returns true when a link is still unmeasured (see meshroute_io_t.collect). */
static bool publish_now(meshroute_t *m)
{
    ls_record_t rec;
    /* Wall-clock ms as the sequence: it keeps rising across restarts, so a restarted PoP's
     * first record beats the copies of its old one still circulating. */
    ls_record_init(&rec, m->self, clock_wall_ms());
    bool pending = m->io.collect(m->io.ctx, &rec);
    /* Rounding keeps RTT jitter from changing the record (and recomputing every PoP's routes)
     * on every publication. */
    for (uint32_t i = 0; i < rec.n_links; i++)
        rec.links[i].rtt_us = (rec.links[i].rtt_us + MESHROUTE_RTT_STEP / 2) / MESHROUTE_RTT_STEP *
                              MESHROUTE_RTT_STEP;
    if (lsdb_insert(m->db, &rec) == LSDB_CHANGED)
        mark(m);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (ls_record_encode(&rec, &sb) == 0)
        m->io.publish(m->io.ctx, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return pending;
}

static void on_publish(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshroute_t *m = t->data;
    bool pending = publish_now(m);
    m->rng = m->rng * 6364136223846793005ull + 1442695040888963407ull;
    t->repeat = (pending ? MESHROUTE_PENDING_S : MESHROUTE_PUBLISH_S) *
                (0.8 + (double)((m->rng >> 33) % 400) / 1000.0);
    ev_timer_again(loop, t);
}

meshroute_t *meshroute_new(struct ev_loop *loop, uint64_t self, const meshroute_io_t *io)
{
    meshroute_t *m = xcalloc(1, sizeof(*m));
    m->loop = loop;
    m->self = self;
    m->io = *io;
    m->rng = self;
    m->db = lsdb_new();
    m->route = route_new(NULL);
    ev_init(&m->recompute, on_recompute);
    m->recompute.data = m;
    ev_init(&m->publish, on_publish);
    m->publish.data = m;
    m->publish.repeat = 0.3; /* a first record soon after start */
    ev_timer_again(loop, &m->publish);
    return m;
}

void meshroute_destroy(meshroute_t **mp)
{
    if (!mp || !*mp)
        return;
    meshroute_t *m = *mp;
    ev_timer_stop(m->loop, &m->publish);
    ev_timer_stop(m->loop, &m->recompute);
    route_table_destroy(&m->table);
    route_destroy(&m->route);
    lsdb_destroy(&m->db);
    free(m);
    *mp = NULL;
}

bool meshroute_receive(meshroute_t *m, const uint8_t *buf, size_t len)
{
    int rc = lsdb_receive(m->db, buf, len);
    if (rc == LSDB_CHANGED)
        mark(m);
    return rc == LSDB_CHANGED || rc == LSDB_REFRESHED;
}

void meshroute_forget(meshroute_t *m, uint64_t pop)
{
    if (pop != m->self && lsdb_remove(m->db, pop) > 0)
        mark(m);
}

void meshroute_penalty(meshroute_t *m, uint64_t pop, uint16_t load_permille, bool healthy)
{
    uint64_t before = lsdb_generation(m->db);
    lsdb_set_penalty(m->db, pop, load_permille, healthy);
    if (lsdb_generation(m->db) != before)
        mark(m);
}

void meshroute_publish_soon(meshroute_t *m)
{
    ev_timer_stop(m->loop, &m->publish);
    ev_timer_set(&m->publish, 0.05, 0.0);
    ev_timer_start(m->loop, &m->publish);
}

const route_table_t *meshroute_table(const meshroute_t *m)
{
    return m->table;
}

static void pack_id(meshroute_t *m, msgpack_packer *pk, uint64_t id)
{
    char name[80];
    snprintf(name, sizeof(name), "%016llx", (unsigned long long)id);
    m->io.name_of(m->io.ctx, id, name, sizeof(name));
    mpw_str(pk, name);
}

static void pack_path(meshroute_t *m, msgpack_packer *pk, const route_path_t *p)
{
    msgpack_pack_map(pk, 4);
    mpw_str(pk, "egress");
    pack_id(m, pk, p->egress);
    mpw_str(pk, "next_hop");
    pack_id(m, pk, p->next_hop);
    mpw_str(pk, "path");
    msgpack_pack_array(pk, p->n_hops);
    for (uint32_t i = 0; i < p->n_hops; i++)
        pack_id(m, pk, p->hops[i]);
    mpw_str(pk, "cost_ms");
    msgpack_pack_double(pk, (double)p->cost_us / 1000.0);
}

void meshroute_pack(meshroute_t *m, msgpack_packer *pk)
{
    const route_table_t *t = m->table;
    route_table_info_t info = {0};
    if (t)
        route_table_get_info(t, &info);
    msgpack_pack_map(pk, 3);
    mpw_str(pk, "sites");
    size_t ns = t ? route_table_site_count(t) : 0;
    msgpack_pack_array(pk, ns);
    for (size_t i = 0; i < ns; i++) {
        route_entry_t e;
        int rc = route_table_site_at(t, i, &e);
        bool ok = rc == 0;
        msgpack_pack_map(pk, ok ? 6 : 2);
        mpw_str(pk, "site");
        pack_id(m, pk, e.site);
        mpw_kv_bool(pk, "reachable", ok);
        if (!ok)
            continue;
        mpw_str(pk, "egress");
        pack_id(m, pk, e.primary.egress);
        mpw_str(pk, "path");
        msgpack_pack_array(pk, e.primary.n_hops);
        for (uint32_t h = 0; h < e.primary.n_hops; h++)
            pack_id(m, pk, e.primary.hops[h]);
        mpw_str(pk, "cost_ms");
        msgpack_pack_double(pk, (double)e.primary.cost_us / 1000.0);
        mpw_str(pk, "backup");
        if (e.has_backup)
            pack_path(m, pk, &e.backup);
        else
            msgpack_pack_nil(pk);
    }
    /* Routes to every PoP in the graph: what relaying uses. */
    size_t n = lsdb_count(m->db), reach = 0;
    for (size_t i = 0; i < n; i++) {
        lsdb_entry_t le;
        route_path_t p;
        if (lsdb_entry_at(m->db, i, &le) == 0 && t && route_table_to_pop(t, le.origin, &p) == 0)
            reach++;
    }
    mpw_str(pk, "pops");
    msgpack_pack_array(pk, reach);
    for (size_t i = 0; i < n; i++) {
        lsdb_entry_t le;
        route_path_t p;
        if (lsdb_entry_at(m->db, i, &le) != 0 || !t || route_table_to_pop(t, le.origin, &p))
            continue;
        msgpack_pack_map(pk, 2);
        mpw_str(pk, "pop");
        pack_id(m, pk, le.origin);
        mpw_str(pk, "route");
        pack_path(m, pk, &p);
    }
    mpw_str(pk, "info");
    msgpack_pack_map(pk, 5);
    mpw_kv_u64(pk, "pops", info.pops);
    mpw_kv_u64(pk, "pops_reachable", info.pops_reachable);
    mpw_kv_u64(pk, "links", info.links);
    mpw_kv_u64(pk, "sites", info.sites);
    mpw_kv_u64(pk, "sites_reachable", info.sites_reachable);
}

const lsdb_t *meshroute_lsdb(const meshroute_t *m)
{
    return m->db;
}
