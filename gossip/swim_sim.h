/* swim_sim: a deterministic network of SWIM cores in one process (tests and tools/meshsim).
 *
 * N cores talk through a virtual network: every message gets a delay drawn uniformly from
 * [delay_min_ms, delay_max_ms], is dropped with probability `loss`, and is dropped when
 * sender and receiver sit in different partition groups or the receiver is down. Time is
 * virtual: one event queue ordered by (time, insertion order) holds message deliveries and
 * each core's next deadline, and nothing reads a clock. All randomness comes from `seed`, so
 * a run repeats exactly.
 *
 * Node i (0-based) has member id i + 1. Not part of popd: linked only by tests and tools. */
#ifndef POPMESH_GOSSIP_SWIM_SIM_H
#define POPMESH_GOSSIP_SWIM_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/swim.h"

typedef struct swim_sim swim_sim_t;

enum swim_sim_bootstrap {
    SWIM_SIM_FULL,   /* every node knows every other from the start (swim_add_member) */
    SWIM_SIM_SEEDED, /* every node knows only node 0, as a seed, and joins through it */
};

typedef struct swim_sim_config {
    unsigned nodes;        /* started at time 0 */
    unsigned spare;        /* extra node slots, down until swim_sim_join() */
    uint64_t seed;         /* network randomness and each core's rng_seed */
    double loss;           /* probability that a message is dropped, 0..1 */
    uint32_t delay_min_ms; /* one-way delay, uniform in [min, max] */
    uint32_t delay_max_ms;
    swim_config_t swim; /* template; self_id and rng_seed are set per node */
    enum swim_sim_bootstrap bootstrap;
    bool meta; /* give each node the meta "node-<i>" */
    /* Observers, called with the node index that observed; never during swim_sim_new. */
    void *ctx;
    void (*member_changed)(void *ctx, unsigned node, const swim_member_info_t *m, int old_state);
    /* Return true if the broadcast was new to node (it is then re-gossiped). NULL: true the
     * first time a node sees a key, by a per-node record of the last key seen. */
    bool (*deliver)(void *ctx, unsigned node, uint64_t key, const uint8_t *payload, size_t len);
} swim_sim_config_t;

typedef struct swim_sim_stats {
    uint64_t sent;      /* messages handed to the network */
    uint64_t dropped;   /* lost, partitioned, or to a down node */
    uint64_t delivered; /* passed to swim_receive */
    uint64_t bytes;     /* bytes handed to the network */
    uint64_t rejected;  /* swim_receive returned an error (should stay 0) */
} swim_sim_stats_t;

/* NULL with errno set if a core cannot be created (bad swim config). Caller owns the result. */
swim_sim_t *swim_sim_new(const swim_sim_config_t *cfg);
void swim_sim_destroy(swim_sim_t **simp);

uint64_t swim_sim_now(const swim_sim_t *sim);
/* Runs every event up to and including t_ms, then sets the clock to t_ms. */
void swim_sim_run_until(swim_sim_t *sim, uint64_t t_ms);
/* Runs in steps of step_ms until pred returns true or the clock passes deadline_ms. True if
 * pred held; the clock is then at the step where it first held. */
bool swim_sim_run_while(swim_sim_t *sim, uint64_t deadline_ms, uint32_t step_ms,
                        bool (*pred)(swim_sim_t *sim, void *ctx), void *ctx);

static inline uint64_t swim_sim_id(unsigned node)
{
    return (uint64_t)node + 1;
}
/* The core of an up node, else NULL. Borrowed. */
swim_t *swim_sim_core(swim_sim_t *sim, unsigned node);
bool swim_sim_up(const swim_sim_t *sim, unsigned node);
/* What observer thinks of subject: its state, or -1 if unknown (or observer down). */
int swim_sim_state(swim_sim_t *sim, unsigned observer, unsigned subject);

/* The node stops: nothing to or from it, no ticks. */
void swim_sim_crash(swim_sim_t *sim, unsigned node);
/* A crashed node comes back as a new core at incarnation 0 that knows the others as the
 * bootstrap mode says (FULL: all, and node 0 or 1 as a seed; SEEDED: node 0 or 1 as seed). */
void swim_sim_restart(swim_sim_t *sim, unsigned node);
/* A spare (or crashed) node starts with only `seed_node` known, as a seed. */
void swim_sim_join(swim_sim_t *sim, unsigned node, unsigned seed_node);
/* Graceful leave; the node keeps running until swim_sim_crash. */
void swim_sim_leave(swim_sim_t *sim, unsigned node);
/* Nodes in different groups cannot talk. All start in group 0. */
void swim_sim_set_group(swim_sim_t *sim, unsigned node, unsigned group);
void swim_sim_set_loss(swim_sim_t *sim, double loss);
/* Extra loss on everything to or from one node (a sick node), on top of the global loss. */
void swim_sim_set_node_loss(swim_sim_t *sim, unsigned node, double loss);
/* Blocks (or unblocks) the link between a and b, both ways, while both can reach others:
 * what indirect probes are for. At most SWIM_SIM_MAX_BLOCKS links at a time. */
#define SWIM_SIM_MAX_BLOCKS 64
int swim_sim_block(swim_sim_t *sim, unsigned a, unsigned b, bool blocked);
/* Delivers msg to node now, as if from member id `from`; returns swim_receive's result. */
int swim_sim_inject(swim_sim_t *sim, uint64_t from, unsigned node, const uint8_t *msg, size_t len);

void swim_sim_get_stats(const swim_sim_t *sim, swim_sim_stats_t *st);

#endif
