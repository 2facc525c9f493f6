/* swim: membership and failure detection, SWIM with the Lifeguard refinements. Sans-I/O.
 *
 * The core never touches a socket or a clock. The driver (popd's node layer, or the
 * simulator in tools/meshsim) feeds it:
 *   - swim_receive(): a message that arrived from an authenticated peer id,
 *   - swim_tick(): the current time, at or after swim_next_deadline(),
 * and the core calls back through swim_io_t to send messages and to report membership changes
 * and application broadcasts. Everything that happens is a function of those inputs and the
 * seed in swim_config_t, so the simulator reproduces a run exactly from its seed.
 *
 * Members are identified by a 64-bit node id. Each carries an opaque "meta" blob (at most
 * SWIM_META_MAX bytes) that the driver defines (popd: name, region, mesh address) and that
 * travels with ALIVE updates, so a new member's address reaches everyone with its liveness.
 *
 * Wire format and the algorithm are described in docs/gossip.md, gossip/swim_wire.h and at
 * the top of swim.c.
 *
 * Callbacks (send, member_changed, deliver) run inside swim_receive/swim_tick/... and must not
 * call back into a function that changes the core (reading with swim_member_get is fine). */
#ifndef POPMESH_GOSSIP_SWIM_H
#define POPMESH_GOSSIP_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SWIM_VERSION     2     /* 2: PING and ACK carry wall-clock timestamps; 1 still spoken */
#define SWIM_META_MAX    512   /* bytes of driver metadata per member */
#define SWIM_PAYLOAD_MAX 8192  /* bytes of one application broadcast */
#define SWIM_MSG_MAX     65536 /* bytes of one encoded message, piggyback included */
#define SWIM_SYNC_BURST  8     /* SYNC_REPLYs this node may send back to back */
#define SWIM_SYNC_RATE   2     /* SYNC_REPLYs per second it may send on average */

enum swim_state {
    SWIM_ALIVE = 0,
    SWIM_SUSPECT,
    SWIM_DEAD,
    SWIM_LEFT,
};

const char *swim_state_name(enum swim_state s);

typedef struct swim swim_t;

typedef struct swim_config {
    uint64_t self_id;            /* this node; never 0 */
    uint32_t probe_interval_ms;  /* 200: one probe per interval (scaled by local health) */
    uint32_t ack_timeout_ms;     /* 100: direct ack wait (scaled by local health) */
    unsigned indirect_probes;    /* 3: k members asked to probe on our behalf */
    unsigned suspicion_mult;     /* 4: alpha; min suspicion = alpha * log10(N+1) * interval */
    unsigned suspicion_max_mult; /* 6: beta; max suspicion = beta * min */
    unsigned retransmit_mult;    /* 4: lambda; an update is sent lambda * ceil(log10(N+1)) times */
    unsigned max_local_health;   /* 8: Lifeguard's local health multiplier saturates here */
    uint32_t dead_probe_ms;      /* 2000: period of re-probing one dead/left member */
    uint32_t push_pull_ms;       /* 10000: period of a full-state exchange with one member */
    uint64_t dead_reap_ms;       /* 24h: dead members are forgotten after this long */
    size_t max_piggyback;        /* 16384: bytes of piggybacked updates per message */
    uint64_t rng_seed;           /* shuffles and random choices */
} swim_config_t;

/* Fills the defaults above; self_id and rng_seed are left 0 for the caller to set. */
void swim_config_defaults(swim_config_t *cfg);

/* What the driver learns about a member. meta is borrowed for the duration of the callback
 * (or until the next call into the core, from swim_member_get/swim_foreach). */
typedef struct swim_member_info {
    uint64_t id;
    enum swim_state state;
    uint64_t incarnation;
    const uint8_t *meta;
    size_t meta_len;
    uint64_t state_since_ms; /* when the current state began (local time) */
    uint32_t rtt_ms;         /* smoothed direct-probe round trip; 0 = not measured */
    uint16_t loss_permille;  /* smoothed share of direct probes left unanswered (gain 1/8) */
    bool clock_known;        /* clock_offset_ms holds an estimate */
    int32_t clock_offset_ms; /* its wall clock minus ours, estimated from probes (NTP-style) */
    uint16_t clock_err_ms;   /* bound on that estimate's error: half the sample's round trip */
} swim_member_info_t;

typedef struct swim_io {
    void *ctx;
    /* Send msg to member dest (fire and forget; loss is expected and handled). msg is
     * borrowed for the duration of the call. */
    void (*send)(void *ctx, uint64_t dest, const uint8_t *msg, size_t len);
    /* A member appeared, changed state or incarnation, or changed meta. old_state is the
     * previous state, or -1 for a member seen for the first time. */
    void (*member_changed)(void *ctx, const swim_member_info_t *m, int old_state);
    /* An application broadcast arrived (from the member that sent us this message, not
     * necessarily its origin). Return true if it was new to the application: the core then
     * re-gossips it (epidemic spread); false stops it here. May be NULL. */
    bool (*deliver)(void *ctx, uint64_t key, const uint8_t *payload, size_t len);
} swim_io_t;

/* Creates the core with self as the only alive member. meta: self's metadata (copied).
 * NULL with errno set on bad config (EINVAL) or meta too large (E2BIG). */
swim_t *swim_new(const swim_config_t *cfg, const swim_io_t *io, const uint8_t *meta,
                 size_t meta_len, uint64_t now_ms);
/* Accepts NULL; sets *sp = NULL. */
void swim_destroy(swim_t **sp);
/* Optional: pre-sizes the member table for about `members` members, so a driver that adds
 * a large registry at once (the simulator: 10,000 each) does not pay for growth slack.
 * 0 or -E2BIG. */
int swim_reserve(swim_t *s, size_t members);

/* Adds a member known from elsewhere (the replicated registry, a seed list) so it gets
 * probed; if unknown, it starts ALIVE at incarnation 0 (a real ALIVE from it wins). Seeds
 * added this way are also re-contacted periodically while the member list is small or they
 * are dead, so a partition always heals. Returns 0, -EEXIST if already known (meta updated),
 * -EINVAL for self or id 0, -E2BIG for meta. */
int swim_add_member(swim_t *s, uint64_t id, const uint8_t *meta, size_t meta_len, bool seed,
                    uint64_t now_ms);
/* Forgets a member at once and refuses any later update about it (operator removal). Its
 * removal is not gossiped by the core: the registry carries it. Returns 0, -ENOENT if it was
 * not known (it is refused from now on all the same), -EINVAL for self or id 0. A later
 * swim_add_member of the same id admits it again. */
int swim_remove_member(swim_t *s, uint64_t id);

/* The wall clock (Unix ms) at the now_ms of the next swim_receive/swim_tick call, for the
 * timestamps of probes; 0 (the default) = not known: nothing is estimated. The core keeps
 * its own time on now_ms; the wall clock is only ever compared with other nodes'. */
void swim_set_wall_ms(swim_t *s, uint64_t wall_ms);

/* This node's clock against the mesh: the median, over ALIVE members with an estimate, of
 * (our wall clock - theirs), in ms; *peers = how many had one. -ENOENT when none has. */
int swim_clock_offset(const swim_t *s, int64_t *offset_ms, unsigned *peers);

/* The offset estimator, exposed for its tests: folds one sample (peer minus us, ms; its
 * round trip, ms) into a member's estimate held in *est. SWIM_CLOCK_WINDOW samples at most
 * stay in charge; within them the one with the smallest round trip wins. */
#define SWIM_CLOCK_WINDOW 8
typedef struct swim_clock_est {
    int32_t offset_ms; /* estimate */
    uint16_t rtt_ms;   /* round trip of the sample behind it; 0 = no estimate yet */
    uint8_t age;       /* samples since it was taken */
} swim_clock_est_t;
void swim_clock_sample(swim_clock_est_t *est, int64_t offset_ms, uint64_t rtt_ms);

/* Handles one message from authenticated peer `from`. Returns 0, or -EBADMSG (malformed,
 * counted, nothing changed), -EPERM (from a removed member, counted), -EINVAL (from is 0 or
 * self). */
int swim_receive(swim_t *s, uint64_t from, const uint8_t *msg, size_t len, uint64_t now_ms);
/* Runs everything due at now_ms (probes, timeouts, suspicion expiry, push-pull, re-probes). */
void swim_tick(swim_t *s, uint64_t now_ms);
/* The next time swim_tick must be called (absolute ms, same clock as now_ms). */
uint64_t swim_next_deadline(const swim_t *s);

/* Queues an application broadcast for piggybacked dissemination. A queued broadcast with the
 * same key is replaced (newer supersedes older). -E2BIG over SWIM_PAYLOAD_MAX (or over
 * cfg.max_piggyback less 32 bytes of framing). */
int swim_broadcast(swim_t *s, uint64_t key, const uint8_t *payload, size_t len);

/* Replaces self's metadata and gossips it with a new incarnation. -EINVAL after swim_leave. */
int swim_set_meta(swim_t *s, const uint8_t *meta, size_t meta_len);
/* Graceful leave: gossips LEFT for self with a higher incarnation. Keep ticking for about
 * swim_leave_drain_ms() so the update spreads, then stop. */
void swim_leave(swim_t *s, uint64_t now_ms);
uint32_t swim_leave_drain_ms(const swim_t *s);

/* Members, self included. */
size_t swim_member_count(const swim_t *s);
int swim_member_get(const swim_t *s, uint64_t id, swim_member_info_t *out);
typedef void (*swim_member_fn)(const swim_member_info_t *m, void *ctx);
void swim_foreach(const swim_t *s, swim_member_fn fn, void *ctx);

typedef struct swim_stats {
    uint64_t msgs_sent, msgs_received;
    uint64_t bytes_sent, bytes_received;
    uint64_t malformed;               /* messages dropped by the decoder */
    uint64_t from_removed;            /* messages from removed members */
    uint64_t probes;                  /* probes started (one per probe interval) */
    uint64_t probe_failures;          /* probes with no ACK, direct or relayed */
    uint64_t indirect_probes;         /* PING_REQs sent */
    uint64_t suspicions_raised;       /* members this node moved to SUSPECT (own probe or gossip) */
    uint64_t suspicions_refuted;      /* times this node refuted a SUSPECT/DEAD/LEFT about itself */
    uint64_t deaths_declared;         /* suspicions of ours that timed out into DEAD */
    unsigned local_health;            /* Lifeguard LHM now: 0 = healthy */
    uint64_t incarnation;             /* self */
    unsigned queued_broadcasts;       /* dissemination queue entries: membership updates + app */
    uint64_t sync_replies_suppressed; /* SYNCs merged but not answered: over the rate limit */
} swim_stats_t;
void swim_get_stats(const swim_t *s, swim_stats_t *st);

#endif
