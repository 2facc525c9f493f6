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
 * WIRE. body = [node_id, seq, cpu_permille, rss_kb, streams, ingress_up,
 *               tunnels, listeners, listeners_up, load_permille]
 * The first six are the original vector; the last four were appended, so an older node skips
 * them (it always skipped fields past the sixth) and this one accepts a six-field vector from
 * an older node (tunnels and listeners then unknown, load = its CPU). */
#include "node/membership/meshnode_int.h"

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
#define HEALTH_FIELDS_V1    6   /* fields of the original vector */
#define HEALTH_FIELDS       10  /* fields this node sends */
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
    uint32_t n;
    uint64_t id, seq, cpu, rss, streams, tunnels = 0, listeners = 0, up_count = 0, load = 0;
    bool up;
    if (mpr_array(r, &n) || n < HEALTH_FIELDS_V1 || mpr_uint(r, &id) || mpr_uint(r, &seq) ||
        mpr_uint(r, &cpu) || mpr_uint(r, &rss) || mpr_uint(r, &streams) || mpr_bool(r, &up) ||
        cpu > UINT32_MAX || rss > UINT32_MAX || streams > UINT32_MAX) {
        m->bad_messages++;
        return false;
    }
    bool detailed = n >= HEALTH_FIELDS;
    if (detailed && (mpr_uint(r, &tunnels) || mpr_uint(r, &listeners) || mpr_uint(r, &up_count) ||
                     mpr_uint(r, &load) || tunnels > UINT32_MAX || listeners > UINT32_MAX ||
                     up_count > listeners)) {
        m->bad_messages++;
        return false;
    }
    for (uint32_t i = detailed ? HEALTH_FIELDS : HEALTH_FIELDS_V1; i < n; i++)
        if (mpr_skip(r)) { /* fields a newer node may add */
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
    h->detailed = detailed;
    h->tunnels = (uint32_t)tunnels;
    h->listeners = (uint32_t)listeners;
    h->listeners_up = (uint32_t)up_count;
    /* The sender's own ingress_up is what counts: it is listeners_up == listeners there. */
    h->ingress_up = up;
    h->load_permille = clamp_permille(detailed ? load : cpu);
    h->received = ev_now(m->o.loop);
    apply_penalty(m, h);
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
    m->cpu_last = cpu;
    meshclock_check(m);
    m->cpu_at = now;

    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint32(&pk, MESH_BCAST_HEALTH);
    msgpack_pack_array(&pk, HEALTH_FIELDS);
    msgpack_pack_uint64(&pk, h->id);
    msgpack_pack_uint64(&pk, h->seq);
    msgpack_pack_uint32(&pk, h->cpu_permille);
    msgpack_pack_uint32(&pk, h->rss_kb);
    msgpack_pack_uint32(&pk, h->streams);
    if (h->ingress_up)
        msgpack_pack_true(&pk);
    else
        msgpack_pack_false(&pk);
    msgpack_pack_uint32(&pk, h->tunnels);
    msgpack_pack_uint32(&pk, h->listeners);
    msgpack_pack_uint32(&pk, h->listeners_up);
    msgpack_pack_uint32(&pk, h->load_permille);
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
