/* meshhealth: health vectors, what each PoP tells the mesh about itself (DESIGN.md section 6).
 *
 * Every HEALTH_PERIOD a PoP samples what is true of it and broadcasts it through SWIM's
 * piggyback, keyed by node so a newer vector replaces a queued older one. Receivers keep the
 * latest per member (newer seq wins) and turn it into a route penalty: load makes a PoP
 * dearer, an ingress down makes it a last resort (docs/routing.md). Soft state: rebuilt from
 * gossip after a restart.
 *
 * WHAT IS MEASURED. CPU and resident memory come from the process; streams, tunnels and
 * listeners from the health sources (meshnode_add_health_source: the data plane, the HTTP
 * ingress), each adding its counts. The ingress is up when every configured listener is
 * bound and accepting (listeners_up == listeners): one TCP resource port that cannot be bound,
 * or an accept failing for lack of descriptors or memory, is a PoP that refuses some of its
 * users, and routing should not send more through it.
 *
 * LOAD. One figure, 0..1000, for the route cost: the larger of CPU (permille of one core,
 * capped at 1000: popd is one thread) and streams against capacity. Capacity is half the
 * process's descriptor limit (RLIMIT_NOFILE), because a stream holds a descriptor at its
 * ingress and another where it leaves the PoP: at that many streams the next accept fails
 * for EMFILE, which is the wall a PoP actually hits first, long before CPU on small
 * machines. Each half alone can saturate the figure; they are not added, since a PoP full on
 * descriptors is not less full for being idle on CPU.
 *
 * WIRE. healthvec.h: ten fields, the first six the original vector, so old and new nodes read
 * each other's. */
#include "node/membership/meshnode_int.h"
#include "node/membership/healthvec.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/rng.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define HEALTH_PERIOD       2.0 /* s between a node's health vectors (jittered) */
#define HEALTH_PERMILLE_MAX 1000

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

static uint32_t clamp_permille(uint64_t v)
{
    return v > HEALTH_PERMILLE_MAX ? HEALTH_PERMILLE_MAX : (uint32_t)v;
}

/* Tells the route computation what the vector means: load, and whether the PoP is healthy. */
static void apply_penalty(meshnode_t *m, const struct health *h)
{
    meshroute_penalty(m->routes, h->id, (uint16_t)h->load_permille, h->ingress_up);
}

bool meshhealth_merge(meshnode_t *m, mpr_t *r)
{
    healthvec_t v;
    if (healthvec_decode(r, &v)) {
        m->bad_messages++;
        return false;
    }
    uint64_t id = v.id;
    const reg_node_t *reg = meshnode_reg_find(m, id);
    if (!reg || reg->removed || id == m->o.id->node_id)
        return false; /* only registered members have a health vector here */
    struct health *h = health_slot(m, id);
    if (v.seq <= h->seq)
        return false;
    bool news = h->seq == 0 || h->ingress_up != v.ingress_up;
    h->seq = v.seq;
    h->cpu_permille = v.cpu_permille;
    h->rss_kb = v.rss_kb;
    h->streams = v.streams;
    h->detailed = v.detailed;
    h->tunnels = v.tunnels;
    h->listeners = v.listeners;
    h->listeners_up = v.listeners_up;
    /* The sender's own ingress_up is what counts: it is listeners_up == listeners there. */
    h->ingress_up = v.ingress_up;
    h->load_permille = clamp_permille(v.detailed ? v.load_permille : v.cpu_permille);
    h->received = ev_now(m->o.loop);
    apply_penalty(m, h);
    if (news)
        meshnode_changed(m);
    return true;
}

int meshnode_add_health_source(meshnode_t *m, meshnode_health_fn fn, void *ctx)
{
    if (m->nhealth_src >= MESHNODE_HEALTH_SOURCES)
        return -ENOSPC;
    m->health_src[m->nhealth_src].fn = fn;
    m->health_src[m->nhealth_src].ctx = ctx;
    m->nhealth_src++;
    return 0;
}

/* Streams this process can hold: half its descriptor limit (see LOAD above). */
static uint64_t stream_capacity(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur < 2)
        return 1u << 20;
    return rl.rlim_cur / 2;
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
    bool was_up = h->seq == 0 || h->ingress_up; /* the first vector reports only a DOWN */
    bool first = h->seq == 0;
    h->seq = clock_wall_ms();
    h->cpu_permille =
        now > m->cpu_at ? (uint32_t)(1000.0 * (cpu - m->cpu_last) / (now - m->cpu_at)) : 0;
    h->rss_kb = self_rss_kb();
    meshnode_health_t sum = {0};
    for (unsigned i = 0; i < m->nhealth_src; i++)
        m->health_src[i].fn(m->health_src[i].ctx, &sum);
    if (sum.listeners_up > sum.listeners) /* a source that counted wrong: not up */
        sum.listeners_up = sum.listeners;
    h->streams = sum.streams;
    h->tunnels = sum.tunnels;
    h->listeners = sum.listeners;
    h->listeners_up = sum.listeners_up;
    h->ingress_up = sum.listeners_up == sum.listeners;
    h->detailed = true;
    uint64_t by_streams = (uint64_t)sum.streams * HEALTH_PERMILLE_MAX / stream_capacity();
    uint32_t cpu_load = clamp_permille(h->cpu_permille);
    h->load_permille = clamp_permille(by_streams > cpu_load ? by_streams : cpu_load);
    h->received = now;
    if (was_up != h->ingress_up)
        log_msg(h->ingress_up ? LOG_INFO : LOG_WARN,
                "mesh: this PoP's ingress is %s (%u of %u listeners bound and accepting)%s",
                h->ingress_up ? "up again" : "DOWN", h->listeners_up, h->listeners,
                h->ingress_up ? "" : "; routes avoid it as a relay and as an egress");
    apply_penalty(m, h); /* self pays it as an egress (mesh/route.h) */
    if (was_up != h->ingress_up || first)
        meshnode_changed(m);
    m->cpu_last = cpu;
    meshclock_check(m);
    m->cpu_at = now;

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, MESH_BCAST_HEALTH);
    healthvec_pack(&pk, &(healthvec_t){
                            .id = h->id,
                            .seq = h->seq,
                            .cpu_permille = h->cpu_permille,
                            .rss_kb = h->rss_kb,
                            .streams = h->streams,
                            .ingress_up = h->ingress_up,
                            .tunnels = h->tunnels,
                            .listeners = h->listeners,
                            .listeners_up = h->listeners_up,
                            .load_permille = h->load_permille,
                        });
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
