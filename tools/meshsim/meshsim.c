/* meshsim: drives N real SWIM cores (gossip/swim.c) in one process over the seeded virtual
 * network of gossip/swim_sim.h, and measures what an operator cares about: how long a
 * membership change or a broadcast takes to reach 99.99% and 100% of the mesh, what the
 * protocol costs per node, and how often loss makes it declare a live node dead.
 *
 *   meshsim                      the report: N = 10, 100, 1000, 10000 (same as --report)
 *   meshsim --scenario crash --nodes 1000 --loss 0.01 --delay-ms 1:40
 *
 * Same arguments, same seed: same stdout, byte for byte (wall time and memory go to stderr).
 * Scenarios are a table, like meshctl's subcommands; --help is generated from it. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/clock.h"
#include "common/xmalloc.h"
#include "gossip/swim.h"
#include "gossip/swim_sim.h"

struct opts {
    unsigned nodes;
    uint64_t seed;
    double loss;
    uint32_t delay_min, delay_max; /* ms */
    uint32_t duration_s;           /* lossy scenario length; report: per loss level */
    bool nodes_set, duration_set;
    bool full; /* report: also 20% loss at 10,000 nodes (see docs/gossip.md: hours) */
};

/* How far a change has spread: observers that know it, and when 99.99% / 100% did. */
struct spread {
    uint8_t *seen; /* per node */
    unsigned count, need_quorum, need_all;
    uint64_t t0, t_quorum, t_all; /* ms; t_* == 0: not reached */
};

enum watch { WATCH_NONE, WATCH_DEAD, WATCH_JOIN };

struct run {
    swim_sim_t *sim;
    unsigned n;     /* nodes started at time 0 */
    unsigned total; /* n + spare */
    uint8_t *down;  /* per node: crashed or left on purpose */
    enum watch watch;
    unsigned subject;
    struct spread change; /* crash or join */
    struct spread bcast;
    uint64_t bkey;
    uint64_t *last_key;    /* per node: key + 1 of the last broadcast delivered */
    uint64_t false_dead;   /* DEAD declarations about nodes that are up */
    uint8_t *falsely_dead; /* per subject: was ever declared dead while up */
    unsigned false_subjects;
};

static void spread_start(struct spread *sp, unsigned total, unsigned others, uint64_t now)
{
    free(sp->seen);
    sp->seen = xcalloc(total, 1);
    sp->count = 0;
    sp->need_all = others;
    /* 99.99% of the others, rounded up: all but one only from 10,000 on. */
    sp->need_quorum = (unsigned)ceil(0.9999 * others);
    sp->t0 = now;
    sp->t_quorum = sp->t_all = 0;
}

static void spread_mark(struct spread *sp, unsigned node, uint64_t now)
{
    if (!sp->seen || sp->seen[node])
        return;
    sp->seen[node] = 1;
    sp->count++;
    if (sp->count >= sp->need_quorum && !sp->t_quorum)
        sp->t_quorum = now;
    if (sp->count >= sp->need_all && !sp->t_all)
        sp->t_all = now;
}

static void on_member(void *ctx, unsigned node, const swim_member_info_t *m, int old)
{
    struct run *r = ctx;
    unsigned subj = (unsigned)(m->id - 1);
    uint64_t now = swim_sim_now(r->sim);
    if (m->state == SWIM_DEAD && old != SWIM_DEAD && subj < r->total && !r->down[subj]) {
        r->false_dead++;
        if (!r->falsely_dead[subj]) {
            r->falsely_dead[subj] = 1;
            r->false_subjects++;
        }
    }
    if (subj != r->subject || node == r->subject)
        return;
    if (r->watch == WATCH_DEAD && m->state == SWIM_DEAD)
        spread_mark(&r->change, node, now);
    if (r->watch == WATCH_JOIN && (m->state == SWIM_ALIVE || m->state == SWIM_SUSPECT))
        spread_mark(&r->change, node, now);
}

static bool on_deliver(void *ctx, unsigned node, uint64_t key, const uint8_t *p, size_t len)
{
    struct run *r = ctx;
    if (r->last_key[node] == key + 1)
        return false;
    r->last_key[node] = key + 1;
    if (key == r->bkey)
        spread_mark(&r->bcast, node, swim_sim_now(r->sim));
    return true;
}

static void run_init(struct run *r, const struct opts *o, unsigned nodes, unsigned spare,
                     double loss)
{
    memset(r, 0, sizeof(*r));
    r->n = nodes;
    r->total = nodes + spare;
    r->down = xcalloc(r->total, 1);
    r->falsely_dead = xcalloc(r->total, 1);
    r->last_key = xcalloc(r->total, sizeof(*r->last_key));
    r->subject = UINT32_MAX;
    swim_sim_config_t c = {0};
    c.nodes = nodes;
    c.spare = spare;
    c.seed = o->seed;
    c.loss = loss;
    c.delay_min_ms = o->delay_min;
    c.delay_max_ms = o->delay_max;
    swim_config_defaults(&c.swim);
    c.bootstrap = SWIM_SIM_FULL;
    c.ctx = r;
    c.member_changed = on_member;
    c.deliver = on_deliver;
    r->sim = swim_sim_new(&c);
    if (!r->sim) {
        fprintf(stderr, "meshsim: cannot create the mesh: %s\n", strerror(errno));
        exit(1);
    }
    for (unsigned i = nodes; i < r->total; i++)
        r->down[i] = 1; /* spare: not started */
}

static void run_free(struct run *r)
{
    swim_sim_destroy(&r->sim);
    free(r->down);
    free(r->falsely_dead);
    free(r->last_key);
    free(r->change.seen);
    free(r->bcast.seen);
}

static unsigned up_count(const struct run *r)
{
    unsigned up = 0;
    for (unsigned i = 0; i < r->total; i++)
        up += !r->down[i];
    return up;
}

/* Runs until the spread is complete or `cap_ms` passed; steps of 10 ms of virtual time. */
static void run_spread(struct run *r, struct spread *sp, uint64_t cap_ms)
{
    uint64_t end = swim_sim_now(r->sim) + cap_ms;
    while (!sp->t_all && swim_sim_now(r->sim) < end)
        swim_sim_run_until(r->sim, swim_sim_now(r->sim) + 10);
}

static void fmt_ms(char *buf, size_t n, uint64_t t0, uint64_t t)
{
    if (!t)
        snprintf(buf, n, "never");
    else
        snprintf(buf, n, "%.3f s", (double)(t - t0) / 1000.0);
}

/* ---- measurements ------------------------------------------------------------------------ */

struct result {
    unsigned n;
    char crash_q[16], crash_all[16], join_q[16], join_all[16], bc_q[16], bc_all[16];
    double msgs_per_node_s, bytes_per_node_s;
    uint64_t fp5, fp20;           /* false DEAD declarations */
    unsigned fp5_subj, fp20_subj; /* distinct live nodes declared dead */
    uint32_t fp_duration_s;
    bool fp20_skipped;
};

static void measure_steady(struct run *r, uint32_t seconds, struct result *res)
{
    swim_sim_stats_t a, b;
    swim_sim_get_stats(r->sim, &a);
    swim_sim_run_until(r->sim, swim_sim_now(r->sim) + seconds * 1000ull);
    swim_sim_get_stats(r->sim, &b);
    double nodes = up_count(r);
    res->msgs_per_node_s = (double)(b.sent - a.sent) / nodes / seconds;
    res->bytes_per_node_s = (double)(b.bytes - a.bytes) / nodes / seconds;
}

static void measure_broadcast(struct run *r, struct result *res)
{
    static const uint8_t payload[] = "cfg/resource/web: {\"target\":\"10.1.2.3:8080\"}";
    r->bkey = 0xc0ffee;
    spread_start(&r->bcast, r->total, up_count(r) - 1, swim_sim_now(r->sim));
    r->last_key[0] = r->bkey + 1; /* the origin has it */
    swim_broadcast(swim_sim_core(r->sim, 0), r->bkey, payload, sizeof(payload) - 1);
    run_spread(r, &r->bcast, 60000);
    fmt_ms(res->bc_q, sizeof(res->bc_q), r->bcast.t0, r->bcast.t_quorum);
    fmt_ms(res->bc_all, sizeof(res->bc_all), r->bcast.t0, r->bcast.t_all);
}

static void measure_crash(struct run *r, struct result *res)
{
    unsigned victim = r->n / 2;
    r->down[victim] = 1;
    r->subject = victim;
    r->watch = WATCH_DEAD;
    spread_start(&r->change, r->total, up_count(r), swim_sim_now(r->sim));
    swim_sim_crash(r->sim, victim);
    run_spread(r, &r->change, 120000);
    r->watch = WATCH_NONE;
    fmt_ms(res->crash_q, sizeof(res->crash_q), r->change.t0, r->change.t_quorum);
    fmt_ms(res->crash_all, sizeof(res->crash_all), r->change.t0, r->change.t_all);
}

static void measure_join(struct run *r, struct result *res)
{
    unsigned joiner = r->n; /* the first spare */
    r->subject = joiner;
    r->watch = WATCH_JOIN;
    spread_start(&r->change, r->total, up_count(r), swim_sim_now(r->sim));
    r->down[joiner] = 0;
    swim_sim_join(r->sim, joiner, 1);
    run_spread(r, &r->change, 120000);
    r->watch = WATCH_NONE;
    fmt_ms(res->join_q, sizeof(res->join_q), r->change.t0, r->change.t_quorum);
    fmt_ms(res->join_all, sizeof(res->join_all), r->change.t0, r->change.t_all);
}

static void measure_false_positives(struct run *r, double loss, uint32_t seconds, uint64_t *events,
                                    unsigned *subjects)
{
    uint64_t e0 = r->false_dead;
    memset(r->falsely_dead, 0, r->total);
    r->false_subjects = 0;
    swim_sim_set_loss(r->sim, loss);
    swim_sim_run_until(r->sim, swim_sim_now(r->sim) + seconds * 1000ull);
    swim_sim_set_loss(r->sim, 0);
    *events = r->false_dead - e0;
    *subjects = r->false_subjects;
}

static long peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

/* One mesh of n nodes through every measurement, in order: steady cost, broadcast, crash,
 * join, then false positives at 5% and 20% loss. */
static void report_one(const struct opts *o, unsigned n, uint32_t fp_seconds, bool with_fp20,
                       struct result *res)
{
    double t = clock_mono_s();
    struct run r;
    memset(res, 0, sizeof(*res));
    res->n = n;
    res->fp_duration_s = fp_seconds;
    run_init(&r, o, n, 1, 0.0);
    fprintf(stderr, "meshsim: N=%u: mesh built in %.1f s\n", n, clock_mono_s() - t);
    swim_sim_run_until(r.sim, 10000); /* startup announcements drain */
    measure_steady(&r, 10, res);
    measure_broadcast(&r, res);
    measure_crash(&r, res);
    measure_join(&r, res);
    fprintf(stderr, "meshsim: N=%u: timings done at %.1f s wall\n", n, clock_mono_s() - t);
    measure_false_positives(&r, 0.05, fp_seconds, &res->fp5, &res->fp5_subj);
    /* Under uniform 20% loss about 2% of probes fail although the target is up, every
     * node hears of every resulting suspicion and refutation, so the work grows as N^2; at
     * 10,000 nodes it exceeds the piggyback bandwidth, queues grow without end, and each
     * simulated second costs 60 s of CPU and more (docs/gossip.md). */
    if (with_fp20)
        measure_false_positives(&r, 0.20, fp_seconds, &res->fp20, &res->fp20_subj);
    else
        res->fp20_skipped = true;
    run_free(&r);
    fprintf(stderr, "meshsim: N=%u: done in %.1f s wall, peak RSS %ld MiB\n", n, clock_mono_s() - t,
            peak_rss_mb());
}

static void print_config(const struct opts *o)
{
    swim_config_t c;
    swim_config_defaults(&c);
    printf("swim: probe %u ms, ack timeout %u ms, %u indirect, suspicion alpha %u beta %u, "
           "retransmit lambda %u, LHM max %u, push-pull %u ms\n",
           c.probe_interval_ms, c.ack_timeout_ms, c.indirect_probes, c.suspicion_mult,
           c.suspicion_max_mult, c.retransmit_mult, c.max_local_health, c.push_pull_ms);
    printf("network: one-way delay uniform %u..%u ms, seed %llu\n", o->delay_min, o->delay_max,
           (unsigned long long)o->seed);
}

static int cmd_report(const struct opts *o)
{
    static const unsigned sizes[] = {10, 100, 1000, 10000};
    unsigned only = o->nodes_set ? o->nodes : 0;
    struct result res[4];
    unsigned nres = 0;
    print_config(o);
    for (unsigned i = 0; i < 4; i++) {
        unsigned n = only ? only : sizes[i];
        /* False-positive phases: 60 s each, 30 s at 10,000 nodes (see docs/gossip.md). */
        uint32_t fp = o->duration_set ? o->duration_s : (n >= 10000 ? 30 : 60);
        report_one(o, n, fp, n < 10000 || o->full, &res[nres++]);
        if (only)
            break;
    }
    printf("\n| N | crash: DEAD at 99.99%% | at 100%% | join: known at 99.99%% | at 100%% "
           "| broadcast at 99.99%% | at 100%% | msgs/node/s | bytes/node/s "
           "| false DEAD, 5%% loss | false DEAD, 20%% loss |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (unsigned i = 0; i < nres; i++) {
        struct result *x = &res[i];
        char fp20[64];
        if (x->fp20_skipped)
            snprintf(fp20, sizeof(fp20), "not run (--full)");
        else
            snprintf(fp20, sizeof(fp20), "%llu (%u nodes) / %u s", (unsigned long long)x->fp20,
                     x->fp20_subj, x->fp_duration_s);
        printf("| %u | %s | %s | %s | %s | %s | %s | %.1f | %.0f | %llu (%u nodes) / %u s "
               "| %s |\n",
               x->n, x->crash_q, x->crash_all, x->join_q, x->join_all, x->bc_q, x->bc_all,
               x->msgs_per_node_s, x->bytes_per_node_s, (unsigned long long)x->fp5, x->fp5_subj,
               x->fp_duration_s, fp20);
    }
    printf("\nfalse DEAD: declarations by any node that a live node is dead (in parentheses: "
           "how many distinct live nodes).\n99.99%% of the others is all of them below 10,001 "
           "nodes.\n");
    return 0;
}

/* ---- single scenarios ---------------------------------------------------------------- */

static int cmd_crash(const struct opts *o)
{
    struct run r;
    struct result res;
    print_config(o);
    run_init(&r, o, o->nodes, 0, o->loss);
    swim_sim_run_until(r.sim, 10000);
    measure_crash(&r, &res);
    printf("crash of 1 of %u nodes, loss %.3f: DEAD known by 99.99%% after %s, by 100%% after "
           "%s; false DEAD declarations: %llu\n",
           o->nodes, o->loss, res.crash_q, res.crash_all, (unsigned long long)r.false_dead);
    run_free(&r);
    return 0;
}

static int cmd_join(const struct opts *o)
{
    struct run r;
    struct result res;
    print_config(o);
    run_init(&r, o, o->nodes, 1, o->loss);
    swim_sim_run_until(r.sim, 10000);
    measure_join(&r, &res);
    printf("join of 1 node into %u, loss %.3f: known by 99.99%% after %s, by 100%% after %s\n",
           o->nodes, o->loss, res.join_q, res.join_all);
    run_free(&r);
    return 0;
}

static int cmd_broadcast(const struct opts *o)
{
    struct run r;
    struct result res;
    print_config(o);
    run_init(&r, o, o->nodes, 0, o->loss);
    swim_sim_run_until(r.sim, 10000);
    measure_broadcast(&r, &res);
    printf("broadcast from 1 of %u nodes, loss %.3f: delivered to 99.99%% after %s, to 100%% "
           "after %s\n",
           o->nodes, o->loss, res.bc_q, res.bc_all);
    run_free(&r);
    return 0;
}

static int cmd_steady(const struct opts *o)
{
    struct run r;
    struct result res;
    print_config(o);
    run_init(&r, o, o->nodes, 0, o->loss);
    swim_sim_run_until(r.sim, 10000);
    measure_steady(&r, o->duration_s, &res);
    printf("steady state, %u nodes, loss %.3f, %u s: %.2f messages and %.0f bytes per node "
           "per second; false DEAD declarations: %llu\n",
           o->nodes, o->loss, o->duration_s, res.msgs_per_node_s, res.bytes_per_node_s,
           (unsigned long long)r.false_dead);
    run_free(&r);
    return 0;
}

static int cmd_lossy(const struct opts *o)
{
    struct run r;
    uint64_t ev;
    unsigned subj;
    print_config(o);
    run_init(&r, o, o->nodes, 0, 0);
    swim_sim_run_until(r.sim, 10000);
    measure_false_positives(&r, o->loss, o->duration_s, &ev, &subj);
    uint64_t suspicions = 0, refutations = 0;
    for (unsigned i = 0; i < r.n; i++) {
        swim_stats_t st;
        swim_get_stats(swim_sim_core(r.sim, i), &st);
        suspicions += st.suspicions_raised;
        refutations += st.suspicions_refuted;
    }
    printf("%u nodes, loss %.3f for %u s: %llu false DEAD declarations about %u live nodes; "
           "%llu suspicions raised, %llu refutations\n",
           o->nodes, o->loss, o->duration_s, (unsigned long long)ev, subj,
           (unsigned long long)suspicions, (unsigned long long)refutations);
    run_free(&r);
    return 0;
}

/* The two halves of the partition scenario: nodes [0, half) and [half, n). */
struct halves {
    unsigned n, half;
};

static bool halves_state(swim_sim_t *sim, void *ctx, bool want_dead)
{
    struct halves *h = ctx;
    for (unsigned i = 0; i < h->n; i++) {
        unsigned other = i < h->half ? h->n - h->half : h->half;
        unsigned got = 0;
        for (unsigned j = 0; j < h->n; j++)
            if ((i < h->half) != (j < h->half)) {
                int st = swim_sim_state(sim, i, j);
                got += want_dead ? st == SWIM_DEAD : st == SWIM_ALIVE;
            }
        if (got != other)
            return false;
    }
    return true;
}

static bool halves_dead(swim_sim_t *sim, void *ctx)
{
    return halves_state(sim, ctx, true);
}

static bool halves_alive(swim_sim_t *sim, void *ctx)
{
    return halves_state(sim, ctx, false);
}

static int cmd_partition(const struct opts *o)
{
    struct run r;
    print_config(o);
    if (o->nodes > 1000) {
        fprintf(stderr, "meshsim: partition checks every pair; use --nodes <= 1000\n");
        return 2;
    }
    run_init(&r, o, o->nodes, 0, o->loss);
    swim_sim_run_until(r.sim, 10000);
    struct halves h = {.n = o->nodes, .half = o->nodes / 2};
    for (unsigned i = h.half; i < h.n; i++)
        swim_sim_set_group(r.sim, i, 1);
    uint64_t t0 = swim_sim_now(r.sim);
    bool split = swim_sim_run_while(r.sim, t0 + 300000, 100, halves_dead, &h);
    uint64_t t1 = swim_sim_now(r.sim);
    uint64_t fd = r.false_dead;
    for (unsigned i = h.half; i < h.n; i++)
        swim_sim_set_group(r.sim, i, 0);
    bool healed = swim_sim_run_while(r.sim, t1 + 300000, 100, halves_alive, &h);
    uint64_t t2 = swim_sim_now(r.sim);
    printf("partition %u|%u: each half holds the other dead after %s%.1f s; healed: all alive "
           "everywhere %s%.1f s after the heal\n",
           h.half, h.n - h.half, split ? "" : "more than ", (double)(t1 - t0) / 1000.0,
           healed ? "" : "not within ", (double)(t2 - t1) / 1000.0);
    printf("(DEAD declarations across the split, expected: %llu)\n", (unsigned long long)fd);
    run_free(&r);
    return healed ? 0 : 1;
}

struct scenario {
    const char *name;
    int (*fn)(const struct opts *o);
    const char *help;
};

static const struct scenario scenarios[] = {
    {"report", cmd_report,
     "N = 10, 100, 1000, 10000 (or --nodes): crash, join, broadcast spread; cost; false DEAD "
     "under 5% and 20% loss (default)"},
    {"crash", cmd_crash, "one node crashes: time until 99.99% / 100% hold it DEAD"},
    {"join", cmd_join, "one node joins through a seed: time until 99.99% / 100% know it"},
    {"broadcast", cmd_broadcast, "one application broadcast: time to 99.99% / 100%"},
    {"steady", cmd_steady, "messages and bytes per node per second for --duration"},
    {"lossy", cmd_lossy, "false DEAD declarations under --loss for --duration"},
    {"partition", cmd_partition, "split in halves until each holds the other dead, heal"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: meshsim [--nodes N] [--seed S] [--loss P] [--delay-ms MIN:MAX] "
               "[--duration S] [--scenario NAME] [--report [--full]]\n\nscenarios:\n");
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
        fprintf(f, "  %-10s %s\n", scenarios[i].name, scenarios[i].help);
    fprintf(f, "\ndefaults: --nodes 100 (report: 10..10000) --seed 1 --loss 0 --delay-ms 1:20 "
               "--duration 60 (report: 60, 30 at 10,000)\n"
               "--full: the report also runs 20%% loss at 10,000 nodes (hours, over 15 GB: see "
               "docs/gossip.md)\n");
}

int main(int argc, char **argv)
{
    struct opts o = {.nodes = 100, .seed = 1, .delay_min = 1, .delay_max = 20, .duration_s = 60};
    const char *scenario = "report";
    static const struct option longopts[] = {
        {"nodes", required_argument, NULL, 'n'},    {"seed", required_argument, NULL, 's'},
        {"loss", required_argument, NULL, 'l'},     {"delay-ms", required_argument, NULL, 'd'},
        {"duration", required_argument, NULL, 't'}, {"scenario", required_argument, NULL, 'c'},
        {"report", no_argument, NULL, 'r'},         {"full", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
    int ch;
    while ((ch = getopt_long(argc, argv, "n:s:l:d:t:c:rfh", longopts, NULL)) != -1) {
        char *end = NULL;
        switch (ch) {
        case 'n': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 2 || v > 100000) {
                fprintf(stderr, "meshsim: --nodes wants 2..100000, not '%s'\n", optarg);
                return 2;
            }
            o.nodes = (unsigned)v;
            o.nodes_set = true;
            break;
        }
        case 's':
            o.seed = strtoull(optarg, &end, 0);
            if (*end) {
                fprintf(stderr, "meshsim: --seed wants an integer, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'l':
            o.loss = strtod(optarg, &end);
            if (*end || !(o.loss >= 0 && o.loss < 1)) {
                fprintf(stderr, "meshsim: --loss wants a probability in [0, 1), not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'd': {
            unsigned a, b;
            char tail;
            if (sscanf(optarg, "%u:%u%c", &a, &b, &tail) != 2 || a > b || b > 60000) {
                fprintf(stderr, "meshsim: --delay-ms wants MIN:MAX in ms, not '%s'\n", optarg);
                return 2;
            }
            o.delay_min = a;
            o.delay_max = b;
            break;
        }
        case 't': {
            unsigned long v = strtoul(optarg, &end, 10);
            if (*end || v < 1 || v > 86400) {
                fprintf(stderr, "meshsim: --duration wants seconds (1..86400), not '%s'\n", optarg);
                return 2;
            }
            o.duration_s = (uint32_t)v;
            o.duration_set = true;
            break;
        }
        case 'c':
            scenario = optarg;
            break;
        case 'r':
            scenario = "report";
            break;
        case 'f':
            o.full = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "meshsim: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++) {
        if (strcmp(scenarios[i].name, scenario) == 0) {
            double t = clock_mono_s();
            int rc = scenarios[i].fn(&o);
            fprintf(stderr, "meshsim: %.1f s wall, peak RSS %ld MiB\n", clock_mono_s() - t,
                    peak_rss_mb());
            return rc;
        }
    }
    fprintf(stderr, "meshsim: unknown scenario '%s'\n", scenario);
    usage(stderr);
    return 2;
}
