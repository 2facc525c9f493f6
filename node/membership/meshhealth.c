/* meshhealth: health vectors, what each PoP tells the mesh about itself (DESIGN.md section 6).
 *
 * Every HEALTH_PERIOD a PoP samples its own state and broadcasts it through SWIM's piggyback,
 * keyed by node so a newer vector replaces a queued older one. Receivers keep the latest per
 * member (newer seq wins) and turn it into a route penalty: load makes a PoP dearer, bad health
 * makes it a last resort. Soft state: rebuilt from gossip after a restart. */
#include "node/membership/meshnode_int.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "common/rng.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define HEALTH_PERIOD 2.0 /* s between a node's health vectors (jittered) */

static struct health *health_slot(meshnode_t *m, uint64_t id)
{
    for (size_t i = 0; i < m->nhealth; i++)
        if (m->health[i].id == id)
            return &m->health[i];
    m->health = xrealloc(m->health, (m->nhealth + 1) * sizeof(*m->health));
    struct health *h = &m->health[m->nhealth++];
    memset(h, 0, sizeof(*h));
    h->id = id;
    return h;
}

/* body = [node_id, seq, cpu_permille, rss_kb, streams, ingress_up] */
bool meshhealth_merge(meshnode_t *m, mpr_t *r)
{
    uint32_t n;
    uint64_t id, seq, cpu, rss, streams;
    bool up;
    if (mpr_array(r, &n) || n < 6 || mpr_uint(r, &id) || mpr_uint(r, &seq) || mpr_uint(r, &cpu) ||
        mpr_uint(r, &rss) || mpr_uint(r, &streams) || mpr_bool(r, &up) || cpu > UINT32_MAX ||
        rss > UINT32_MAX || streams > UINT32_MAX) {
        m->bad_messages++;
        return false;
    }
    for (uint32_t i = 6; i < n; i++) /* fields a newer node may add */
        if (mpr_skip(r)) {
            m->bad_messages++;
            return false;
        }
    const reg_node_t *reg = meshnode_reg_find(m, id);
    if (!reg || reg->removed || id == m->o.id->node_id)
        return false; /* only registered members have a health vector here */
    struct health *h = health_slot(m, id);
    if (seq <= h->seq)
        return false;
    h->seq = seq;
    h->cpu_permille = (uint32_t)cpu;
    h->rss_kb = (uint32_t)rss;
    h->streams = (uint32_t)streams;
    h->ingress_up = up;
    h->received = ev_now(m->o.loop);
    meshroute_penalty(m->routes, id, (uint16_t)(cpu > 1000 ? 1000 : cpu), up);
    return true;
}

static uint32_t self_rss_kb(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (uint32_t)(resident * (unsigned long)sysconf(_SC_PAGESIZE) / 1024);
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void on_health_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    meshnode_t *m = t->data;
    double now = ev_now(loop), cpu = self_cpu_s();
    struct health *h = health_slot(m, m->o.id->node_id);
    h->seq = clock_wall_ms();
    h->cpu_permille =
        now > m->cpu_at ? (uint32_t)(1000.0 * (cpu - m->cpu_last) / (now - m->cpu_at)) : 0;
    h->rss_kb = self_rss_kb();
    h->streams = 0;
    h->ingress_up = true;
    h->received = now;
    m->cpu_last = cpu;
    meshclock_check(m);
    m->cpu_at = now;

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, MESH_BCAST_HEALTH);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_uint64(&pk, h->id);
    msgpack_pack_uint64(&pk, h->seq);
    msgpack_pack_uint32(&pk, h->cpu_permille);
    msgpack_pack_uint32(&pk, h->rss_kb);
    msgpack_pack_uint32(&pk, h->streams);
    msgpack_pack_true(&pk);
    /* Keyed by node: a newer vector replaces the queued older one instead of queueing up. */
    swim_broadcast(m->swim, h->id ^ 0x6865616c74680000ull, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    meshnode_swim_rearm(m);
    t->repeat = HEALTH_PERIOD * (0.8 + (double)rng_below(&m->rng, 400) / 1000.0);
    ev_timer_again(loop, t);
}

void meshhealth_start(meshnode_t *m)
{
    m->cpu_last = self_cpu_s();
    m->cpu_at = ev_now(m->o.loop);
    ev_init(&m->health_timer, on_health_timer);
    m->health_timer.data = m;
    m->health_timer.repeat = 0.5; /* first vector soon after start */
    ev_timer_again(m->o.loop, &m->health_timer);
}

void meshhealth_stop(meshnode_t *m)
{
    ev_timer_stop(m->o.loop, &m->health_timer);
    free(m->health);
    m->health = NULL;
    m->nhealth = 0;
}

const struct health *meshhealth_of(const meshnode_t *m, uint64_t id)
{
    for (size_t i = 0; i < m->nhealth; i++)
        if (m->health[i].id == id)
            return &m->health[i];
    return NULL;
}
