/* swim: SWIM membership and failure detection with the Lifeguard refinements.
 *
 * BACKGROUND
 *
 * SWIM (Das, Gupta, Motivala 2002) splits membership into two jobs. Failure detection: every
 * protocol period each member pings one other member; if no ACK comes within the ack
 * timeout it asks k others to ping the target on its behalf (PING_REQ), so one bad link does
 * not condemn a healthy node. Dissemination: what a member learns (joins, suspicions,
 * deaths) rides piggyback on the probes it sends anyway, each update a bounded number of
 * times, so news spreads like an epidemic in O(log N) periods with O(1) messages per member
 * per period, whatever N is. A member that fails a probe is first only SUSPECT; the suspect
 * hears of it (gossip reaches everyone) and refutes by announcing ALIVE with a higher
 * incarnation number. Only a suspicion that nobody refutes in time becomes DEAD.
 *
 * Lifeguard (Dadgar, Phillips, Currey 2018; HashiCorp memberlist) fixes SWIM's weak spot: a
 * member that is itself slow (CPU starved, lossy uplink) misses ACKs and accuses healthy
 * peers. Its refinements, all here:
 *   - Local Health Multiplier (LHM): a counter of recent evidence that *we* are the problem
 *     (+1 per failed probe, +1 more when a helper we asked did not even NACK, +1 each time we
 *     must refute a suspicion of ourselves; -1 per successful probe; saturating at
 *     max_local_health). Our probe interval and ack timeouts are scaled by LHM+1, so a sick
 *     node slows down instead of spraying false accusations.
 *   - NACKs: a PING_REQ helper that gets no ACK from the target says so. A NACK proves the
 *     path origin-helper works, so a missing NACK is evidence against ourselves.
 *   - Dynamic suspicion timeout: a suspicion starts long (max) and shrinks towards min as
 *     distinct members independently confirm it: timeout = max(min, max - (max - min) *
 *     log(C+1) / log(K+1)), C confirmations of K expected. A lone accuser waits long enough
 *     for the accused to refute; a real failure seen by many is declared quickly.
 *   - Buddy system: when we send to a member we hold as SUSPECT (or DEAD/LEFT), the first
 *     piggyback entry is that belief, so the member learns it directly and refutes at once
 *     instead of waiting for gossip to reach it.
 *
 * BEYOND MEMBERLIST
 *
 * Partition healing (serf#605, memberlist#222: two halves that declared each other dead
 * never talk again): DEAD and LEFT members stay on a list until dead_reap_ms and one of them
 * is pinged every dead_probe_ms; the buddy entry makes a live one refute, and everyone marks
 * it alive again. Dead seeds are pushed-pulled every push-pull period. A periodic push-pull
 * (SYNC/SYNC_REPLY: full member state with one random live member) repairs what gossip
 * missed; a DEAD in a SYNC is merged as SUSPECT, so stale verdicts from the other side of a
 * healed split cannot kill members we reach.
 *
 * Loss hardening, each found by tools/meshsim at 10-20% uniform loss, where plain
 * SWIM+Lifeguard collapsed into mesh-wide false DEADs (docs/gossip.md has the numbers):
 *   - the direct ping is repeated alongside the PING_REQs (memberlist's TCP fallback, in the
 *     same channel), halving the probes that fail although the target is up;
 *   - a suspicion at a higher incarnation than the one held restarts the timer (memberlist
 *     keeps the old one: a node that missed one refutation then declares DEAD, at the new
 *     incarnation that everyone accepts, moments after the next accusation);
 *   - corrections: a reply to a sender that told us something older than we know (by
 *     incarnation) leads with our newer state, so a refutation whose finite gossip missed a
 *     node still reaches it, from the next member it talks to;
 *   - last chance: a timed-out suspicion first pings the suspect (buddy entry aboard) and is
 *     declared DEAD only if nothing refutes it within two ack timeouts (rate-limited).
 *
 * INVARIANTS
 *
 *   - Precedence, for a member at incarnation cur: ALIVE(i) wins iff i > cur (or i == cur and
 *     we only knew it from swim_add_member); SUSPECT(i) wins over ALIVE iff i >= cur; DEAD or
 *     LEFT (i) win over ALIVE/SUSPECT iff i >= cur and over each other iff i > cur. Only the
 *     member itself raises its incarnation, so an accusation can always be answered.
 *   - A member is in exactly one of: the probe list (ALIVE, SUSPECT), the down list (DEAD,
 *     LEFT), or neither (self). Suspicion state exists iff state == SUSPECT.
 *   - The dissemination queue holds at most one entry per member and one per application
 *     key: a newer update replaces the older (its transmit count starts again at 0).
 *   - Messages sent per tick are O(1) (two pings, k PING_REQs, at most FWD_MAX NACKs, one
 *     dead probe, VERIFY_PER_ROUND last-chance pings); only push-pull is O(N), once per
 *     (N-scaled) push_pull_ms.
 *   - A received message is validated in full before any part is applied.
 *   - Everything is a function of the inputs and cfg.rng_seed: no clock, no rand(), no
 *     global, and every iteration runs over arrays in a deterministic order.
 *
 * CLOCKS
 *
 * Versions in the replicated store are hybrid logical clocks, and a node refuses a version
 * more than HLC_MAX_AHEAD_MS ahead of its own wall clock (storage/hlc.h). So a node whose
 * clock runs ahead has every write refused by every other node, and without a measure of the
 * offsets nobody can tell. The probes SWIM already sends measure it for free: a PING carries
 * the sender's wall clock t1, the direct ACK echoes t1 and adds the target's clock t2 when it
 * answered, and the prober reads t4 on arrival. As in NTP (RFC 5905, section 8), with the
 * answer sent at once (t3 = t2):
 *
 *     offset = ((t2 - t1) + (t3 - t4)) / 2        delay = t4 - t1
 *
 * is exact when both legs take equally long and wrong by at most delay / 2 otherwise. So the
 * estimate keeps the sample with the smallest round trip (NTP's clock filter), and lets a
 * sample stay in charge for at most SWIM_CLOCK_WINDOW samples, so a clock that was stepped
 * is followed within a window. Relayed ACKs carry no stamps (they would time the helper's
 * clock); the core takes the wall clock only as an input (swim_set_wall_ms), keeps its own
 * timers on now_ms, and never acts on the estimate itself: the driver shows it and decides.
 * 8 bytes per member, inline (no allocation per sample).
 *
 * MEMORY
 *
 * The simulator runs 10,000 cores of 10,000 members each, so a member is a 64-byte struct in
 * one array, found through an open-addressing map of 4-byte slot indices; meta and suspicion
 * state are heap allocated only when present. */
#include "gossip/swim.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/rng.h"
#include "common/xmalloc.h"
#include "gossip/swim_wire.h"

#define NONE                     UINT32_MAX
#define INDIRECT_MAX             16  /* cap on cfg.indirect_probes */
#define FWD_MAX                  64  /* PING_REQs we serve at once */
#define SWIM_DIRECT_FAILS_FORGET 2   /* consecutive missed direct acks that void the RTT */
#define BQ_BUCKETS               256 /* transmit counts 0..255; the transmit limit is capped below */
#define SYNC_CHUNK_BYTES         49152 /* bytes of member entries per SYNC chunk */
#define PP_SCALE_FROM            32 /* push-pull period grows with log2(N) past this many members */
#define UPDATE_BUF               (SWIM_PAYLOAD_MAX + 64) /* bytes: the largest encoded update */
#define CORRECT_MAX              4                       /* corrections carried by one reply */
#define VERIFY_PER_ROUND         4                       /* last-chance pings per probe interval */

enum member_flags {
    MF_USED = 1,    /* slot holds a member (else on the free list) */
    MF_SEED = 2,    /* added with seed = true: re-contacted while dead */
    MF_HEARSAY = 4, /* known only from swim_add_member: its own ALIVE at equal inc wins */
    MF_WIRE_V1 = 8, /* its last message was SWIM version 1: we speak version 1 to it */
};

struct suspicion {
    uint64_t start_ms;    /* when we started suspecting */
    uint64_t deadline_ms; /* start + timeout(confirmations) */
    uint64_t accuser;     /* who raised it (not counted as a confirmation) */
    uint32_t min_ms;      /* timeout with K confirmations */
    uint32_t max_ms;      /* timeout with none */
    uint32_t pos;         /* index in the suspect list */
    uint8_t k;            /* confirmations expected */
    uint8_t n;            /* distinct confirmations so far */
    bool verifying;       /* timed out; the last-chance ping is out, deadline is its wait */
    uint64_t confirmers[];
};

struct member {
    uint64_t id;
    uint64_t incarnation;
    uint64_t state_since_ms; /* local time of the last state change */
    uint8_t *meta;           /* meta_len bytes, or NULL */
    struct suspicion *susp;  /* iff state == SUSPECT */
    uint32_t pos;            /* index in the probe list or down list; free-list link */
    uint32_t rtt8;           /* smoothed direct RTT in 1/8 ms; 0 = none */
    uint8_t direct_fails;    /* consecutive probes it missed the direct ack of */
    uint16_t loss8;          /* EWMA of direct probe losses, permille * 8 */
    uint16_t meta_len;       /* bytes */
    uint8_t state;           /* enum swim_state */
    uint8_t flags;           /* enum member_flags */
    swim_clock_est_t clk;    /* its wall clock against ours (see CLOCKS) */
};

enum bq_kind { BQ_MEMBER = 0, BQ_APP = 1 };

/* One queued piggyback entry, already encoded. */
struct bcast {
    struct bcast *prev, *next; /* in bucket[transmits] */
    struct bcast *sel;         /* chain while one message is being built */
    uint64_t key;              /* member id or application key */
    uint8_t kind;              /* enum bq_kind */
    uint8_t transmits;         /* times sent so far */
    uint32_t len;              /* bytes of data */
    uint8_t data[];
};

/* A PING_REQ we serve: we pinged target with seq for origin, who used origin_seq. */
struct fwd {
    uint64_t origin, target;
    uint64_t nack_at_ms;
    uint32_t seq, origin_seq;
};

/* The one probe in flight. */
struct probe {
    bool active;
    bool indirect; /* PING_REQs sent, and the direct ping repeated */
    uint32_t seq;
    uint64_t target;
    uint64_t sent_ms, ack_deadline_ms, end_ms;
    unsigned nhelpers, nacks;
    uint64_t helpers[INDIRECT_MAX];
    bool nacked[INDIRECT_MAX];
};

struct swim {
    swim_config_t cfg;
    swim_io_t io;
    uint64_t rng; /* splitmix64 state */

    struct member *m; /* member slots */
    uint32_t mlen;    /* slots in use or on the free list */
    uint32_t mcap;
    uint32_t free_head;
    uint32_t self;     /* slot of self */
    uint32_t nmembers; /* self included */
    uint32_t nlive;    /* ALIVE + SUSPECT, self included unless left */
    unsigned nseeds;

    uint32_t *map; /* id -> slot + 1; 0 = empty; linear probing */
    uint32_t map_cap;
    uint32_t map_used;

    uint32_t *plist; /* probe order: slots of ALIVE/SUSPECT members, NONE = hole */
    uint32_t plen, pcap, pcursor;
    uint32_t *dlist; /* DEAD/LEFT slots, dense */
    uint32_t dlen, dcap;
    uint32_t *slist; /* SUSPECT slots, dense */
    uint32_t slen, scap;

    uint64_t *removed; /* sorted ids refused by swim_remove_member */
    uint32_t nremoved, removed_cap;

    struct bcast **bq_map; /* (kind, key) -> entry; NULL = empty */
    uint32_t bq_cap, bq_used;
    struct bcast *bucket[BQ_BUCKETS];

    struct fwd fwd[FWD_MAX];
    unsigned nfwd;
    struct probe probe;
    uint32_t next_seq;
    uint64_t next_probe_ms, next_dead_probe_ms, next_push_pull_ms; /* absolute ms */
    /* SYNC_REPLY token bucket, in thousandths of a token: a reply carries the whole member
     * table, so any authenticated peer could otherwise make us send it as often as it asks. */
    uint64_t sync_tokens;    /* milli-tokens, at most SWIM_SYNC_BURST * 1000 */
    uint64_t sync_tokens_at; /* ms of the last refill */
    uint64_t wall_ms; /* Unix ms at the now of the current call; 0 = unknown (swim_set_wall_ms) */
    unsigned lhm;
    unsigned verify_budget; /* last-chance pings left this probe interval */
    bool left;

    /* Corrections: while handling a message from `correct_to`, the ids it told us something
     * older (by incarnation) than we know; our replies to it lead with our newer state. */
    uint64_t correct_to;
    uint64_t correct_ids[CORRECT_MAX];
    unsigned ncorrect;

    struct swim_wbuf out;   /* the message being built */
    struct swim_wbuf extra; /* buddy and correction entries of that message */
    struct swim_wbuf sync;  /* SYNC member entries of one chunk */
    swim_stats_t st;
};

/* ---- small helpers ------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static uint64_t self_id(const swim_t *s)
{
    return s->cfg.self_id;
}

static uint64_t scaled(const swim_t *s, uint64_t ms)
{
    return ms * (s->lhm + 1);
}

static void lhm_add(swim_t *s, int delta)
{
    int v = (int)s->lhm + delta;
    if (v < 0)
        v = 0;
    if (v > (int)s->cfg.max_local_health)
        v = (int)s->cfg.max_local_health;
    s->lhm = (unsigned)v;
}

/* ceil(log10(n + 1)) for n >= 1, in integers so no rounding surprises at powers of ten. */
static unsigned ceil_log10_plus1(uint32_t n)
{
    unsigned d = 0;
    uint64_t p = 1;
    while (p < (uint64_t)n + 1) {
        p *= 10;
        d++;
    }
    return d;
}

/* How many times each update is sent: lambda * ceil(log10(N + 1)). */
static unsigned transmit_limit(const swim_t *s)
{
    unsigned limit = s->cfg.retransmit_mult * ceil_log10_plus1(s->nlive ? s->nlive : 1);
    if (limit < 1)
        limit = 1;
    if (limit > BQ_BUCKETS - 1)
        limit = BQ_BUCKETS - 1;
    return limit;
}

const char *swim_state_name(enum swim_state st)
{
    switch (st) {
    case SWIM_ALIVE:
        return "alive";
    case SWIM_SUSPECT:
        return "suspect";
    case SWIM_DEAD:
        return "dead";
    case SWIM_LEFT:
        return "left";
    }
    return "unknown";
}

void swim_config_defaults(swim_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->probe_interval_ms = 200;
    cfg->ack_timeout_ms = 100;
    cfg->indirect_probes = 3;
    cfg->suspicion_mult = 4;
    cfg->suspicion_max_mult = 6;
    cfg->retransmit_mult = 4;
    cfg->max_local_health = 8;
    cfg->dead_probe_ms = 2000;
    cfg->push_pull_ms = 10000;
    cfg->dead_reap_ms = 24ull * 3600 * 1000;
    cfg->max_piggyback = 16384;
}

/* ---- id -> slot map ---------------------------------------------------------------- */

static uint32_t map_find(const swim_t *s, uint64_t id)
{
    uint32_t mask = s->map_cap - 1;
    for (uint32_t i = (uint32_t)mix64(id) & mask;; i = (i + 1) & mask) {
        uint32_t v = s->map[i];
        if (v == 0)
            return NONE;
        if (s->m[v - 1].id == id)
            return v - 1;
    }
}

static void map_put_raw(uint32_t *map, uint32_t cap, uint64_t id, uint32_t slot)
{
    uint32_t mask = cap - 1;
    uint32_t i = (uint32_t)mix64(id) & mask;
    while (map[i])
        i = (i + 1) & mask;
    map[i] = slot + 1;
}

static void map_resize(swim_t *s, uint32_t cap)
{
    uint32_t *old = s->map;
    uint32_t old_cap = s->map_cap;
    s->map = xcalloc(cap, sizeof(*s->map));
    s->map_cap = cap;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i])
            map_put_raw(s->map, cap, s->m[old[i] - 1].id, old[i] - 1);
    free(old);
}

static void map_insert(swim_t *s, uint64_t id, uint32_t slot)
{
    /* Load factor at most 0.7: linear probing stays short and the table stays 4 bytes a
     * slot, under 6 bytes per member. */
    if ((uint64_t)(s->map_used + 1) * 10 > (uint64_t)s->map_cap * 7)
        map_resize(s, s->map_cap * 2);
    map_put_raw(s->map, s->map_cap, id, slot);
    s->map_used++;
}

/* Backward-shift deletion: no tombstones, so lookups never slow down with churn. */
static void map_delete(swim_t *s, uint64_t id)
{
    uint32_t mask = s->map_cap - 1;
    uint32_t i = (uint32_t)mix64(id) & mask;
    while (s->map[i] && s->m[s->map[i] - 1].id != id)
        i = (i + 1) & mask;
    if (!s->map[i])
        return;
    for (uint32_t j = i;;) {
        j = (j + 1) & mask;
        if (!s->map[j])
            break;
        uint32_t home = (uint32_t)mix64(s->m[s->map[j] - 1].id) & mask;
        /* The entry at j may move to i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            s->map[i] = s->map[j];
            i = j;
        }
    }
    s->map[i] = 0;
    s->map_used--;
}

/* ---- removed ids (operator removals: rare, so a sorted array) ---------------------- */

static bool removed_find(const swim_t *s, uint64_t id, uint32_t *at)
{
    uint32_t lo = 0, hi = s->nremoved;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (s->removed[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return lo < s->nremoved && s->removed[lo] == id;
}

static bool is_removed(const swim_t *s, uint64_t id)
{
    uint32_t at;
    return s->nremoved && removed_find(s, id, &at);
}

/* ---- dissemination queue ------------------------------------------------------------- */

static uint32_t bq_home(const swim_t *s, int kind, uint64_t key)
{
    return (uint32_t)mix64(key ^ ((uint64_t)kind << 63) ^ (uint64_t)kind) & (s->bq_cap - 1);
}

static uint32_t bq_slot(const swim_t *s, int kind, uint64_t key)
{
    uint32_t mask = s->bq_cap - 1;
    uint32_t i = bq_home(s, kind, key);
    while (s->bq_map[i] && !(s->bq_map[i]->kind == kind && s->bq_map[i]->key == key))
        i = (i + 1) & mask;
    return i;
}

static struct bcast *bq_find(const swim_t *s, int kind, uint64_t key)
{
    return s->bq_map[bq_slot(s, kind, key)];
}

static void bq_map_resize(swim_t *s, uint32_t cap)
{
    struct bcast **old = s->bq_map;
    uint32_t old_cap = s->bq_cap;
    s->bq_map = xcalloc(cap, sizeof(*s->bq_map));
    s->bq_cap = cap;
    for (uint32_t i = 0; i < old_cap; i++)
        if (old[i])
            s->bq_map[bq_slot(s, old[i]->kind, old[i]->key)] = old[i];
    free(old);
}

static void bucket_unlink(swim_t *s, struct bcast *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        s->bucket[b->transmits] = b->next;
    if (b->next)
        b->next->prev = b->prev;
    b->prev = b->next = NULL;
}

/* Newest first within a transmit count, as memberlist does: the freshest news (a
 * refutation above all) goes out on the very next message. */
static void bucket_push(swim_t *s, struct bcast *b)
{
    b->prev = NULL;
    b->next = s->bucket[b->transmits];
    if (b->next)
        b->next->prev = b;
    s->bucket[b->transmits] = b;
}

static void bq_drop(swim_t *s, struct bcast *b)
{
    uint32_t mask = s->bq_cap - 1;
    uint32_t i = bq_slot(s, b->kind, b->key);
    bucket_unlink(s, b);
    /* Backward-shift deletion, as in map_delete. */
    for (uint32_t j = i;;) {
        j = (j + 1) & mask;
        if (!s->bq_map[j])
            break;
        uint32_t home = bq_home(s, s->bq_map[j]->kind, s->bq_map[j]->key);
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            s->bq_map[i] = s->bq_map[j];
            i = j;
        }
    }
    s->bq_map[i] = NULL;
    s->bq_used--;
    s->st.queued_broadcasts--;
    free(b);
}

static void bq_drop_key(swim_t *s, int kind, uint64_t key)
{
    struct bcast *b = bq_find(s, kind, key);
    if (b)
        bq_drop(s, b);
}

/* Queues an encoded entry, replacing any entry with the same (kind, key). */
static void bq_put(swim_t *s, int kind, uint64_t key, const uint8_t *data, size_t len)
{
    bq_drop_key(s, kind, key);
    if ((uint64_t)(s->bq_used + 1) * 10 > (uint64_t)s->bq_cap * 7)
        bq_map_resize(s, s->bq_cap * 2);
    struct bcast *b = xmalloc(sizeof(*b) + len);
    memset(b, 0, sizeof(*b));
    b->key = key;
    b->kind = (uint8_t)kind;
    b->len = (uint32_t)len;
    memcpy(b->data, data, len);
    s->bq_map[bq_slot(s, kind, key)] = b;
    s->bq_used++;
    s->st.queued_broadcasts++;
    bucket_push(s, b);
}

static void queue_update(swim_t *s, const struct swim_update *u)
{
    uint8_t buf[UPDATE_BUF];
    size_t len = swim_wire_encode_update(u, buf, sizeof(buf));
    if (len == 0 || len > s->cfg.max_piggyback) /* could never be sent */
        return;
    bq_put(s, u->kind == SWIM_UPD_APP ? BQ_APP : BQ_MEMBER, u->id, buf, len);
}

/* ---- member table and its lists ------------------------------------------------------ */

static void fill_info(const swim_t *s, const struct member *m, swim_member_info_t *out)
{
    out->id = m->id;
    out->state = (enum swim_state)m->state;
    out->incarnation = m->incarnation;
    out->meta = m->meta;
    out->meta_len = m->meta_len;
    out->state_since_ms = m->state_since_ms;
    out->rtt_ms = m->rtt8 ? (m->rtt8 + 4) / 8 : 0;
    if (m->rtt8 && out->rtt_ms == 0)
        out->rtt_ms = 1;
    out->loss_permille = (uint16_t)((m->loss8 + 4) / 8);
    out->clock_known = m->clk.rtt_ms != 0;
    out->clock_offset_ms = m->clk.offset_ms;
    out->clock_err_ms = (uint16_t)((m->clk.rtt_ms + 1) / 2);
}

static void notify(swim_t *s, uint32_t slot, int old_state)
{
    if (!s->io.member_changed)
        return;
    swim_member_info_t info;
    fill_info(s, &s->m[slot], &info);
    s->io.member_changed(s->io.ctx, &info, old_state);
}

static void set_meta(struct member *m, const uint8_t *meta, size_t len)
{
    free(m->meta);
    m->meta = len ? xmemdup(meta, len) : NULL;
    m->meta_len = (uint16_t)len;
}

static bool meta_equal(const struct member *m, const uint8_t *meta, size_t len)
{
    return m->meta_len == len && (len == 0 || memcmp(m->meta, meta, len) == 0);
}

static void grow_u32(uint32_t **a, uint32_t *cap, uint32_t need)
{
    if (need <= *cap)
        return;
    uint32_t c = *cap ? *cap : 8;
    while (c < need)
        c = c + c / 2 + 1;
    *a = xrealloc(*a, (size_t)c * sizeof(**a));
    *cap = c;
}

/* Appends to the probe list and swaps with a random position, so a new member is probed
 * somewhere in the current or next pass rather than always last (SWIM's round-robin with
 * random insertion keeps the worst-case detection time at two passes). */
static void plist_add(swim_t *s, uint32_t slot)
{
    grow_u32(&s->plist, &s->pcap, s->plen + 1);
    uint32_t at = s->plen++;
    s->plist[at] = slot;
    uint32_t r = rng_below(&s->rng, s->plen);
    uint32_t other = s->plist[r];
    s->plist[at] = other;
    s->plist[r] = slot;
    if (other != NONE)
        s->m[other].pos = at;
    s->m[slot].pos = r;
}

static void plist_remove(swim_t *s, uint32_t slot)
{
    /* Leave a hole: moving entries would disturb the current pass; holes go at reshuffle. */
    s->plist[s->m[slot].pos] = NONE;
    s->m[slot].pos = NONE;
}

static void plist_reshuffle(swim_t *s)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->plen; i++)
        if (s->plist[i] != NONE)
            s->plist[n++] = s->plist[i];
    s->plen = n;
    for (uint32_t i = n; i > 1; i--) { /* Fisher-Yates */
        uint32_t j = rng_below(&s->rng, i);
        uint32_t t = s->plist[i - 1];
        s->plist[i - 1] = s->plist[j];
        s->plist[j] = t;
    }
    for (uint32_t i = 0; i < n; i++)
        s->m[s->plist[i]].pos = i;
    s->pcursor = 0;
}

static void dlist_add(swim_t *s, uint32_t slot)
{
    grow_u32(&s->dlist, &s->dcap, s->dlen + 1);
    s->m[slot].pos = s->dlen;
    s->dlist[s->dlen++] = slot;
}

static void dlist_remove(swim_t *s, uint32_t slot)
{
    uint32_t at = s->m[slot].pos;
    uint32_t last = s->dlist[--s->dlen];
    s->dlist[at] = last;
    s->m[last].pos = at;
    s->m[slot].pos = NONE;
}

static void suspicion_free(swim_t *s, uint32_t slot)
{
    struct suspicion *sp = s->m[slot].susp;
    if (!sp)
        return;
    uint32_t last = s->slist[--s->slen];
    s->slist[sp->pos] = last;
    s->m[last].susp->pos = sp->pos;
    free(sp);
    s->m[slot].susp = NULL;
}

static uint64_t suspicion_timeout(const struct suspicion *sp)
{
    if (sp->k == 0)
        return sp->min_ms;
    double frac = log((double)sp->n + 1.0) / log((double)sp->k + 1.0);
    double t = (double)sp->max_ms - ((double)sp->max_ms - (double)sp->min_ms) * frac;
    if (t < (double)sp->min_ms)
        t = (double)sp->min_ms;
    return (uint64_t)t;
}

/* Starts the suspicion timer of a member that just became SUSPECT. */
static void suspicion_start(swim_t *s, uint32_t slot, uint64_t accuser, uint64_t now)
{
    uint32_t n = s->nlive;
    /* K: how many independent confirmations we can expect. Only the k members probing on
     * someone's behalf are likely to see the same failure soon; with fewer than K + 2
     * members (accuser and accused excluded) there are not enough to wait for. */
    unsigned k = s->cfg.indirect_probes;
    if (n < 2)
        k = 0;
    else if (k > n - 2)
        k = n - 2;
    double min =
        (double)s->cfg.suspicion_mult * log10((double)n + 1.0) * (double)s->cfg.probe_interval_ms;
    if (min < 1)
        min = 1;
    struct suspicion *sp = xmalloc(sizeof(*sp) + k * sizeof(sp->confirmers[0]));
    sp->start_ms = now;
    sp->accuser = accuser;
    sp->min_ms = (uint32_t)min;
    sp->max_ms = (uint32_t)(min * s->cfg.suspicion_max_mult);
    sp->k = (uint8_t)k;
    sp->n = 0;
    sp->verifying = false;
    sp->deadline_ms = now + suspicion_timeout(sp);
    grow_u32(&s->slist, &s->scap, s->slen + 1);
    sp->pos = s->slen;
    s->slist[s->slen++] = slot;
    s->m[slot].susp = sp;
}

/* Counts `from` as a confirmation if it is new and distinct; true if it was. */
static bool suspicion_confirm(swim_t *s, uint32_t slot, uint64_t from)
{
    struct suspicion *sp = s->m[slot].susp;
    if (!sp || sp->n >= sp->k || from == sp->accuser)
        return false;
    for (unsigned i = 0; i < sp->n; i++)
        if (sp->confirmers[i] == from)
            return false;
    sp->confirmers[sp->n++] = from;
    if (!sp->verifying)
        sp->deadline_ms = sp->start_ms + suspicion_timeout(sp);
    return true;
}

static bool is_live(uint8_t st)
{
    return st == SWIM_ALIVE || st == SWIM_SUSPECT;
}

/* Moves a member (not self) between states and keeps every list consistent. Starting the
 * suspicion timer of a new SUSPECT is the caller's job (it knows the accuser). */
static void member_set_state(swim_t *s, uint32_t slot, enum swim_state st, uint64_t now)
{
    struct member *m = &s->m[slot];
    uint8_t old = m->state;
    if (old == st)
        return;
    if (old == SWIM_SUSPECT)
        suspicion_free(s, slot);
    bool was_live = is_live(old), live = is_live((uint8_t)st);
    if (slot != s->self) {
        if (was_live && !live) {
            plist_remove(s, slot);
            dlist_add(s, slot);
        } else if (!was_live && live) {
            dlist_remove(s, slot);
            plist_add(s, slot);
        }
    }
    if (was_live && !live)
        s->nlive--;
    else if (!was_live && live)
        s->nlive++;
    m->state = (uint8_t)st;
    m->state_since_ms = now;
}

static uint32_t member_new(swim_t *s, uint64_t id, uint64_t inc, const uint8_t *meta, size_t len,
                           uint64_t now)
{
    uint32_t slot;
    if (s->free_head != NONE) {
        slot = s->free_head;
        s->free_head = s->m[slot].pos;
    } else {
        if (s->mlen == s->mcap) {
            uint32_t c = s->mcap ? s->mcap + s->mcap / 2 : 16;
            s->m = xrealloc(s->m, (size_t)c * sizeof(*s->m));
            s->mcap = c;
        }
        slot = s->mlen++;
    }
    struct member *m = &s->m[slot];
    memset(m, 0, sizeof(*m));
    m->id = id;
    m->incarnation = inc;
    m->state_since_ms = now;
    m->state = SWIM_ALIVE;
    m->flags = MF_USED;
    m->pos = NONE;
    set_meta(m, meta, len);
    map_insert(s, id, slot);
    s->nmembers++;
    s->nlive++;
    return slot;
}

/* Forgets a member entirely (reaped or removed by the operator). */
static void member_forget(swim_t *s, uint32_t slot)
{
    struct member *m = &s->m[slot];
    if (m->state == SWIM_SUSPECT)
        suspicion_free(s, slot);
    if (is_live(m->state)) {
        plist_remove(s, slot);
        s->nlive--;
    } else {
        dlist_remove(s, slot);
    }
    if (m->flags & MF_SEED)
        s->nseeds--;
    bq_drop_key(s, BQ_MEMBER, m->id);
    map_delete(s, m->id);
    free(m->meta);
    memset(m, 0, sizeof(*m));
    m->pos = s->free_head;
    s->free_head = slot;
    s->nmembers--;
}

/* ---- sending --------------------------------------------------------------------------- */

/* The version dest understands: the one it last spoke to us (see swim_wire.h). */
static uint8_t wire_version_for(const swim_t *s, uint64_t dest)
{
    uint32_t slot = map_find(s, dest);
    return slot != NONE && (s->m[slot].flags & MF_WIRE_V1) ? 1 : SWIM_VERSION;
}

static void msg_begin(swim_t *s, msgpack_packer *pk, uint64_t dest, const struct swim_msg *head)
{
    struct swim_msg h = *head;
    h.version = wire_version_for(s, dest);
    s->out.len = 0;
    s->out.overflow = false;
    msgpack_packer_init(pk, &s->out, swim_wbuf_write);
    swim_wire_pack_head(pk, &h);
}

/* Our current belief about member m as an update (ALIVE with its meta). */
static void belief_update(const swim_t *s, const struct member *m, struct swim_update *u)
{
    memset(u, 0, sizeof(*u));
    u->kind = (enum swim_update_kind)m->state;
    u->id = m->id;
    u->incarnation = m->incarnation;
    if (m->state == SWIM_SUSPECT || m->state == SWIM_DEAD)
        u->from = self_id(s);
    if (m->state == SWIM_ALIVE) {
        u->data = m->meta;
        u->len = m->meta_len;
    }
}

/* Packs one extra entry (buddy or correction) if it fits the budget. */
static bool extra_add(swim_t *s, msgpack_packer *epk, const struct swim_update *u, size_t budget)
{
    size_t before = s->extra.len;
    swim_wire_pack_update(epk, u);
    if (s->extra.overflow || s->extra.len > budget) {
        s->extra.len = before;
        s->extra.overflow = false;
        return false;
    }
    return true;
}

/* Appends the piggyback list and sends. First the entries meant for dest in particular:
 *   - buddy: if dest is a member we hold as SUSPECT/DEAD/LEFT, that belief, so it can refute
 *     right away (from the queue if it is there, so it counts as a transmission);
 *   - corrections: if dest just told us something older than we know (a suspicion that was
 *     refuted meanwhile, or our own past), our newer state, because the update that carried
 *     it may have stopped circulating before it reached dest;
 * then queued entries, least-transmitted first, as many as fit in max_piggyback bytes. */
static void msg_finish(swim_t *s, msgpack_packer *pk, uint64_t dest)
{
    size_t room = SWIM_MSG_MAX - s->out.len - 5; /* 5: the largest array header */
    size_t budget = s->cfg.max_piggyback < room ? s->cfg.max_piggyback : room;
    size_t used = 0;
    unsigned count = 0;
    struct bcast *chain = NULL, **tail = &chain, *buddy = NULL;
    msgpack_packer epk;
    s->extra.len = 0;
    s->extra.overflow = false;
    msgpack_packer_init(&epk, &s->extra, swim_wbuf_write);

    unsigned limit = transmit_limit(s);
    /* Entries sent `limit` times are done; the limit shrinks when members die, so entries
     * can sit above it: drop them here, where the limit is applied (and before anything is
     * chosen, so nothing chosen is freed). */
    for (unsigned t = limit; t < BQ_BUCKETS; t++)
        while (s->bucket[t])
            bq_drop(s, s->bucket[t]);

    uint32_t dslot = dest == self_id(s) ? NONE : map_find(s, dest);
    if (dslot != NONE && s->m[dslot].state != SWIM_ALIVE) {
        buddy = bq_find(s, BQ_MEMBER, dest);
        if (buddy && buddy->len <= budget) {
            *tail = buddy;
            tail = &buddy->sel;
            used += buddy->len;
            count++;
        } else {
            struct swim_update bu;
            buddy = NULL;
            belief_update(s, &s->m[dslot], &bu);
            count += extra_add(s, &epk, &bu, budget);
        }
    }
    if (dest == s->correct_to) {
        for (unsigned i = 0; i < s->ncorrect; i++) {
            uint32_t slot = map_find(s, s->correct_ids[i]);
            if (slot == NONE || slot == dslot)
                continue;
            struct swim_update cu;
            belief_update(s, &s->m[slot], &cu);
            count += extra_add(s, &epk, &cu, budget - used);
        }
    }
    used += s->extra.len;

    unsigned skipped = 0;
    for (unsigned t = 0; t < limit && count < SWIM_PIGGYBACK_MAX; t++) {
        for (struct bcast *b = s->bucket[t]; b && count < SWIM_PIGGYBACK_MAX; b = b->next) {
            if (b == buddy)
                continue;
            if (b->len > budget - used) {
                /* Keep looking for smaller entries, but not forever. */
                if (++skipped > 32 || budget - used < 8)
                    goto chosen;
                continue;
            }
            *tail = b;
            tail = &b->sel;
            used += b->len;
            count++;
        }
    }
chosen:
    *tail = NULL;
    msgpack_pack_array(pk, count);
    mpw_raw(pk, s->extra.p, s->extra.len);
    for (struct bcast *b = chain; b; b = b->sel)
        mpw_raw(pk, b->data, b->len);
    if (s->out.overflow) {
        /* Cannot happen: budget keeps us under SWIM_MSG_MAX. Refuse to send a cut message. */
        log_error("swim: message to %016llx overflowed; dropped", (unsigned long long)dest);
        return;
    }
    s->io.send(s->io.ctx, dest, s->out.p, s->out.len);
    s->st.msgs_sent++;
    s->st.bytes_sent += s->out.len;
    for (struct bcast *b = chain, *next; b; b = next) {
        next = b->sel;
        b->sel = NULL;
        bucket_unlink(s, b);
        if (++b->transmits >= limit)
            bq_drop(s, b);
        else
            bucket_push(s, b);
    }
}

static void send_simple(swim_t *s, uint64_t dest, enum swim_msg_type type, uint32_t seq,
                        uint64_t target, uint32_t timeout_ms)
{
    msgpack_packer pk;
    struct swim_msg h = {.type = type, .seq = seq, .target = target, .timeout_ms = timeout_ms};
    if (type == SWIM_MSG_PING)
        h.t1 = s->wall_ms; /* every ping carries our clock; only direct answers are used */
    msg_begin(s, &pk, dest, &h);
    msg_finish(s, &pk, dest);
}

/* The answer to a PING that carried t1: echo it, and add our clock, so the prober can
 * estimate our offset (see CLOCKS). Without a t1, or without our clock, no stamps. */
static void send_ack(swim_t *s, uint64_t dest, uint32_t seq, uint64_t t1)
{
    msgpack_packer pk;
    struct swim_msg h = {.type = SWIM_MSG_ACK, .seq = seq};
    if (t1 && s->wall_ms) {
        h.t1 = t1;
        h.t2 = s->wall_ms;
    }
    msg_begin(s, &pk, dest, &h);
    msg_finish(s, &pk, dest);
}

/* Full member state, in as many chunks as it takes to stay under SWIM_MSG_MAX. */
static void send_sync(swim_t *s, uint64_t dest, enum swim_msg_type type)
{
    msgpack_packer spk;
    msgpack_packer_init(&spk, &s->sync, swim_wbuf_write);
    uint32_t i = 0, chunk = 0;
    do {
        uint32_t count = 0;
        s->sync.len = 0;
        s->sync.overflow = false;
        for (; i < s->mlen && count < SWIM_SYNC_MAX; i++) {
            const struct member *m = &s->m[i];
            if (!(m->flags & MF_USED))
                continue;
            size_t before = s->sync.len;
            struct swim_sync_entry e = {.id = m->id,
                                        .incarnation = m->incarnation,
                                        .state = (enum swim_state)m->state,
                                        .meta = m->meta,
                                        .meta_len = m->meta_len};
            swim_wire_pack_sync_entry(&spk, &e);
            if (s->sync.len > SYNC_CHUNK_BYTES && count > 0) {
                s->sync.len = before; /* this one starts the next chunk */
                break;
            }
            count++;
        }
        msgpack_packer pk;
        struct swim_msg h = {.type = type, .chunk = chunk++};
        msg_begin(s, &pk, dest, &h);
        msgpack_pack_array(&pk, count);
        mpw_raw(&pk, s->sync.p, s->sync.len);
        msg_finish(s, &pk, dest);
    } while (i < s->mlen);
}

/* ---- applying updates ----------------------------------------------------------------- */

/* Someone says something about us. Refute anything but the truth: a suspicion or death at
 * our incarnation or above, or an ALIVE above ours (we restarted at 0 and the mesh still
 * remembers our last life). The new incarnation outbids every claim heard. */
static void about_self(swim_t *s, const struct swim_update *u, uint64_t now)
{
    struct member *me = &s->m[s->self];
    if (s->left) /* we are leaving: LEFT is the truth, and nothing else matters now */
        return;
    if (u->kind == SWIM_UPD_ALIVE ? u->incarnation <= me->incarnation
                                  : u->incarnation < me->incarnation)
        return;
    me->incarnation = u->incarnation + 1;
    s->st.incarnation = me->incarnation;
    if (u->kind != SWIM_UPD_ALIVE)
        s->st.suspicions_refuted++;
    lhm_add(s, 1); /* being accused is evidence that we are slow to answer */
    struct swim_update a = {.kind = SWIM_UPD_ALIVE,
                            .id = me->id,
                            .incarnation = me->incarnation,
                            .data = me->meta,
                            .len = me->meta_len};
    queue_update(s, &a);
    notify(s, s->self, SWIM_ALIVE);
    (void)now;
}

/* Drops a stale queued entry when a change arrives that we do not re-gossip ourselves. */
static void supersede(swim_t *s, uint64_t id, bool gossip, const struct swim_update *u)
{
    if (gossip)
        queue_update(s, u);
    else
        bq_drop_key(s, BQ_MEMBER, id);
}

static void apply_alive(swim_t *s, uint32_t slot, const struct swim_update *u, uint64_t now,
                        bool gossip)
{
    if (slot == NONE) {
        slot = member_new(s, u->id, u->incarnation, u->data, u->len, now);
        plist_add(s, slot);
        notify(s, slot, -1);
        if (gossip)
            queue_update(s, u);
        return;
    }
    struct member *m = &s->m[slot];
    bool hearsay = m->flags & MF_HEARSAY;
    if (!(u->incarnation > m->incarnation || (hearsay && u->incarnation == m->incarnation)))
        return;
    uint8_t old = m->state;
    bool changed =
        old != SWIM_ALIVE || u->incarnation != m->incarnation || !meta_equal(m, u->data, u->len);
    m->flags &= (uint8_t)~MF_HEARSAY;
    if (!changed)
        return;
    member_set_state(s, slot, SWIM_ALIVE, now);
    m = &s->m[slot];
    m->incarnation = u->incarnation;
    if (!meta_equal(m, u->data, u->len))
        set_meta(m, u->data, u->len);
    notify(s, slot, old);
    supersede(s, u->id, gossip, u);
}

static void apply_suspect(swim_t *s, uint32_t slot, const struct swim_update *u, uint64_t now,
                          bool gossip)
{
    if (slot == NONE)
        return; /* nothing to suspect; its ALIVE will introduce it */
    struct member *m = &s->m[slot];
    if (!is_live(m->state) || u->incarnation < m->incarnation)
        return;
    if (m->state == SWIM_SUSPECT && u->incarnation == m->incarnation) {
        if (suspicion_confirm(s, slot, u->from))
            supersede(s, u->id, gossip, u);
        return;
    }
    if (m->state == SWIM_SUSPECT) {
        /* A suspicion at a higher incarnation: the member refuted the one we hold (we missed
         * its ALIVE) and is suspected anew. The new suspicion gets a new timer. Keeping the
         * old one, as memberlist does, declares the member dead within moments of the new
         * accusation, at an incarnation everyone accepts: one missed refutation turns into
         * a mesh-wide false DEAD (meshsim found it at 20% loss). */
        m->incarnation = u->incarnation;
        suspicion_free(s, slot);
        suspicion_start(s, slot, u->from, now);
        s->st.suspicions_raised++;
        notify(s, slot, SWIM_SUSPECT);
        supersede(s, u->id, gossip, u);
        return;
    }
    m->incarnation = u->incarnation;
    member_set_state(s, slot, SWIM_SUSPECT, now);
    suspicion_start(s, slot, u->from, now);
    s->st.suspicions_raised++;
    notify(s, slot, SWIM_ALIVE);
    supersede(s, u->id, gossip, u);
}

static void apply_down(swim_t *s, uint32_t slot, const struct swim_update *u, uint64_t now,
                       bool gossip)
{
    if (slot == NONE)
        return;
    struct member *m = &s->m[slot];
    if (u->incarnation < m->incarnation)
        return;
    if (!is_live(m->state) && u->incarnation == m->incarnation)
        return; /* already down at this incarnation */
    uint8_t old = m->state;
    m->incarnation = u->incarnation;
    member_set_state(s, slot, u->kind == SWIM_UPD_LEFT ? SWIM_LEFT : SWIM_DEAD, now);
    notify(s, slot, old);
    supersede(s, u->id, gossip, u);
}

/* The sender of the message being handled told us an update about `id` at an incarnation
 * below the one we know: remember to set it right in our reply. */
static void note_stale(swim_t *s, uint32_t slot, uint64_t id, uint64_t heard_inc)
{
    if (slot == NONE || heard_inc >= s->m[slot].incarnation || s->ncorrect == CORRECT_MAX)
        return;
    for (unsigned i = 0; i < s->ncorrect; i++)
        if (s->correct_ids[i] == id)
            return;
    s->correct_ids[s->ncorrect++] = id;
}

static void apply_member_update(swim_t *s, const struct swim_update *u, uint64_t now, bool gossip)
{
    if (is_removed(s, u->id))
        return;
    uint32_t slot = map_find(s, u->id);
    note_stale(s, slot, u->id, u->incarnation);
    if (slot == s->self) {
        about_self(s, u, now);
        return;
    }
    switch (u->kind) {
    case SWIM_UPD_ALIVE:
        apply_alive(s, slot, u, now, gossip);
        break;
    case SWIM_UPD_SUSPECT:
        apply_suspect(s, slot, u, now, gossip);
        break;
    case SWIM_UPD_DEAD:
    case SWIM_UPD_LEFT:
        apply_down(s, slot, u, now, gossip);
        break;
    case SWIM_UPD_APP:
        break;
    }
}

static void apply_piggyback(swim_t *s, mpr_t r, uint32_t count, uint64_t now)
{
    for (uint32_t i = 0; i < count; i++) {
        struct swim_update u;
        if (swim_wire_next_update(&r, &u)) /* validated already: cannot happen */
            return;
        if (u.kind != SWIM_UPD_APP) {
            apply_member_update(s, &u, now, true);
            continue;
        }
        /* Epidemic spread of application data: re-gossip only what was new to the
         * application, so a broadcast dies out once everyone has it. */
        if (s->io.deliver && s->io.deliver(s->io.ctx, u.id, u.data, u.len))
            queue_update(s, &u);
    }
}

/* Merges a SYNC member list. A remote DEAD becomes a local SUSPECT (as memberlist does):
 * after a partition each side holds the other dead at the incarnations it last saw, and
 * taking that verbatim would kill live members we can reach; a suspicion gives them time to
 * refute. Only news that must reach its subject (SUSPECT, LEFT) is re-gossiped: a joiner
 * learning 10,000 members from one SYNC_REPLY must not queue 10,000 updates everyone has. */
static void merge_sync(swim_t *s, uint64_t from, mpr_t r, uint32_t count, uint64_t now)
{
    for (uint32_t i = 0; i < count; i++) {
        struct swim_sync_entry e;
        if (swim_wire_next_sync(&r, &e))
            return;
        struct swim_update u = {.id = e.id, .incarnation = e.incarnation};
        bool gossip = true;
        switch (e.state) {
        case SWIM_ALIVE:
            u.kind = SWIM_UPD_ALIVE;
            u.data = e.meta;
            u.len = e.meta_len;
            gossip = false;
            break;
        case SWIM_SUSPECT:
        case SWIM_DEAD:
            u.kind = SWIM_UPD_SUSPECT;
            u.from = from;
            break;
        case SWIM_LEFT:
            u.kind = SWIM_UPD_LEFT;
            break;
        }
        apply_member_update(s, &u, now, gossip);
    }
}

/* ---- probing ------------------------------------------------------------------------- */

static uint32_t next_probe_target(swim_t *s)
{
    for (int pass = 0; pass < 2; pass++) {
        while (s->pcursor < s->plen) {
            uint32_t slot = s->plist[s->pcursor++];
            if (slot != NONE)
                return slot;
        }
        plist_reshuffle(s);
        if (s->plen == 0)
            break;
    }
    return NONE;
}

/* A random ALIVE member other than self and `not`, by bounded sampling of the probe list
 * (O(1) expected: most of the list is alive). NONE if none found. */
static uint32_t random_alive(swim_t *s, uint64_t not_id)
{
    for (int tries = 0; tries < 32 && s->plen; tries++) {
        uint32_t slot = s->plist[rng_below(&s->rng, s->plen)];
        if (slot != NONE && s->m[slot].state == SWIM_ALIVE && s->m[slot].id != not_id)
            return slot;
    }
    return NONE;
}

static void probe_start(swim_t *s, uint64_t now)
{
    s->next_probe_ms = now + scaled(s, s->cfg.probe_interval_ms);
    s->verify_budget = VERIFY_PER_ROUND;
    uint32_t slot = next_probe_target(s);
    if (slot == NONE)
        return;
    struct probe *p = &s->probe;
    memset(p, 0, sizeof(*p));
    p->active = true;
    p->seq = ++s->next_seq;
    p->target = s->m[slot].id;
    p->sent_ms = now;
    uint64_t ack = scaled(s, s->cfg.ack_timeout_ms);
    p->ack_deadline_ms = now + ack;
    /* The probe ends when the interval does, but never before the indirect round trip
     * (PING_REQ, helper's ping, its ack timeout, NACK or ACK back) has had time: that is
     * what lets a helper's NACK arrive before we judge. */
    uint64_t span = scaled(s, s->cfg.probe_interval_ms);
    if (span < 3 * ack)
        span = 3 * ack;
    p->end_ms = now + span;
    s->st.probes++;
    send_simple(s, p->target, SWIM_MSG_PING, p->seq, p->target, 0);
}

static void probe_go_indirect(swim_t *s)
{
    struct probe *p = &s->probe;
    p->indirect = true;
    /* The direct path failed. Twice in a row and its RTT is forgotten: the member may well
     * stay alive through helpers, but "I reach it directly in X ms" is no longer true, and
     * link state (which advertises measured RTTs) must stop routing over a cut link. */
    uint32_t tslot = map_find(s, p->target);
    if (tslot != NONE) {
        struct member *m = &s->m[tslot];
        if (m->direct_fails < UINT8_MAX)
            m->direct_fails++;
        /* Loss counts only on a path that has worked (an RTT sample exists): the first probes
         * of a new member also wait for its connection to be set up, which is not loss. */
        if (m->rtt8)
            m->loss8 = (uint16_t)(m->loss8 - (m->loss8 + 7) / 8 + 1000); /* EWMA to 1000 */
        if (m->direct_fails >= SWIM_DIRECT_FAILS_FORGET)
            m->rtt8 = 0;
    }
    /* Repeat the direct ping alongside the PING_REQs (memberlist's TCP fallback, in the
     * same channel): under uniform loss a second direct round trip halves the chance that a
     * live member fails the probe, and a false failure is what starts a false suspicion. An
     * ACK may now answer either ping, so it gives no RTT sample (Karn's rule). */
    send_simple(s, p->target, SWIM_MSG_PING, p->seq, p->target, 0);
    unsigned want = s->cfg.indirect_probes;
    uint64_t timeout = scaled(s, s->cfg.ack_timeout_ms);
    if (timeout > SWIM_NACK_TIMEOUT_MAX)
        timeout = SWIM_NACK_TIMEOUT_MAX;
    for (unsigned tries = 0; p->nhelpers < want && tries < 4 * want; tries++) {
        uint32_t slot = random_alive(s, p->target);
        if (slot == NONE)
            break;
        uint64_t id = s->m[slot].id;
        bool dup = false;
        for (unsigned i = 0; i < p->nhelpers; i++)
            dup |= p->helpers[i] == id;
        if (dup)
            continue;
        p->helpers[p->nhelpers++] = id;
        s->st.indirect_probes++;
        send_simple(s, id, SWIM_MSG_PING_REQ, p->seq, p->target, (uint32_t)timeout);
    }
}

/* No ACK, direct or relayed, by the end of the probe. */
static void probe_fail(swim_t *s, uint64_t now)
{
    struct probe *p = &s->probe;
    p->active = false;
    s->st.probe_failures++;
    /* Lifeguard: a failed probe counts against us; so does each helper that did not even
     * NACK (the path to it is bad, or we are). NACKs from every helper mean the network
     * around us works and the target is the likely culprit. */
    int delta = 1;
    if (p->nacks < p->nhelpers)
        delta += 1;
    lhm_add(s, delta);
    uint32_t slot = map_find(s, p->target);
    if (slot == NONE || !is_live(s->m[slot].state) || s->left)
        return;
    struct member *m = &s->m[slot];
    struct swim_update u = {
        .kind = SWIM_UPD_SUSPECT, .id = m->id, .incarnation = m->incarnation, .from = self_id(s)};
    if (m->state == SWIM_SUSPECT) {
        if (suspicion_confirm(s, slot, self_id(s)))
            queue_update(s, &u);
        return;
    }
    member_set_state(s, slot, SWIM_SUSPECT, now);
    suspicion_start(s, slot, self_id(s), now);
    s->st.suspicions_raised++;
    notify(s, slot, SWIM_ALIVE);
    queue_update(s, &u);
}

/* One NTP-style sample from a direct ACK: we sent at t1 and got the answer at t4 (our
 * clock), the member answered at t2 (its clock). With t3 = t2 (it answers at once):
 * offset = ((t2 - t1) + (t3 - t4)) / 2, exact when both legs take the same time and wrong by
 * at most half the round trip t4 - t1 when they do not. */
static void clock_sample(swim_t *s, struct member *m, uint64_t t1, uint64_t t2)
{
    uint64_t t4 = s->wall_ms;
    if (!t1 || !t2 || !t4 || t4 < t1 || t4 - t1 > 60000)
        return; /* no stamps, no clock, or our clock stepped back or far forward meanwhile */
    int64_t offset = (int64_t)t2 - (int64_t)(t1 + (t4 - t1) / 2);
    swim_clock_sample(&m->clk, offset, t4 - t1);
}

static void handle_ack(swim_t *s, uint64_t from, const struct swim_msg *msg, uint64_t now)
{
    uint32_t seq = msg->seq;
    struct probe *p = &s->probe;
    if (p->active && seq == p->seq) {
        p->active = false;
        lhm_add(s, -1);
        uint32_t slot = from == p->target && !p->indirect ? map_find(s, from) : NONE;
        if (slot != NONE) { /* direct answer to the only ping: an RTT sample */
            uint64_t rtt = now > p->sent_ms ? now - p->sent_ms : 0;
            if (rtt < 1)
                rtt = 1;
            if (rtt > 60000)
                rtt = 60000;
            struct member *m = &s->m[slot];
            m->direct_fails = 0;
            m->loss8 = (uint16_t)(m->loss8 - (m->loss8 + 7) / 8); /* EWMA towards 0 */
            int64_t r8 = (int64_t)rtt * 8;
            /* EWMA with gain 1/8 (the TCP SRTT constant), in 1/8 ms fixed point. */
            m->rtt8 =
                m->rtt8 ? (uint32_t)((int64_t)m->rtt8 + (r8 - (int64_t)m->rtt8) / 8) : (uint32_t)r8;
            clock_sample(s, m, msg->t1, msg->t2);
        }
        return;
    }
    for (unsigned i = 0; i < s->nfwd; i++) {
        struct fwd *f = &s->fwd[i];
        if (f->seq == seq && f->target == from) {
            uint64_t origin = f->origin;
            uint32_t oseq = f->origin_seq;
            s->fwd[i] = s->fwd[--s->nfwd];
            send_simple(s, origin, SWIM_MSG_ACK, oseq, 0, 0);
            return;
        }
    }
}

static void handle_nack(swim_t *s, uint64_t from, uint32_t seq)
{
    struct probe *p = &s->probe;
    if (!p->active || seq != p->seq)
        return;
    for (unsigned i = 0; i < p->nhelpers; i++) {
        if (p->helpers[i] == from && !p->nacked[i]) {
            p->nacked[i] = true;
            p->nacks++;
        }
    }
}

static void handle_ping_req(swim_t *s, uint64_t from, const struct swim_msg *m, uint64_t now)
{
    if (m->target == self_id(s)) { /* odd, but the answer is easy */
        send_ack(s, from, m->seq, 0);
        return;
    }
    if (s->nfwd == FWD_MAX)
        return; /* overloaded: the origin sees a missing NACK, which is the truth */
    struct fwd *f = &s->fwd[s->nfwd++];
    f->origin = from;
    f->target = m->target;
    f->origin_seq = m->seq;
    f->seq = ++s->next_seq;
    f->nack_at_ms = now + m->timeout_ms;
    send_simple(s, m->target, SWIM_MSG_PING, f->seq, m->target, 0);
}

/* ---- timers -------------------------------------------------------------------------- */

static void expire_fwd(swim_t *s, uint64_t now)
{
    for (unsigned i = 0; i < s->nfwd;) {
        struct fwd *f = &s->fwd[i];
        if (f->nack_at_ms > now) {
            i++;
            continue;
        }
        uint64_t origin = f->origin;
        uint32_t oseq = f->origin_seq;
        s->fwd[i] = s->fwd[--s->nfwd];
        send_simple(s, origin, SWIM_MSG_NACK, oseq, 0, 0);
    }
}

/* A suspicion that times out is first given a last chance: a ping (two copies) carrying the
 * suspicion (the buddy entry). A live member refutes in its ACK, or, if it refuted long ago and
 * only we missed the ALIVE (its spread is finite and lossy), its ACK carries the correction. Only
 * if nothing comes back within two ack timeouts is it declared DEAD. At most VERIFY_PER_ROUND per
 * probe interval, so a mass failure (a partition) costs O(1) messages per tick; the rest are
 * declared without the extra ping, as plain SWIM does. */
static void expire_suspicions(swim_t *s, uint64_t now)
{
    /* Backwards: removing index i moves the last (already visited) entry into i. */
    for (uint32_t i = s->slen; i-- > 0;) {
        uint32_t slot = s->slist[i];
        struct suspicion *sp = s->m[slot].susp;
        if (sp->deadline_ms > now || s->left)
            continue;
        struct member *m = &s->m[slot];
        if (!sp->verifying && s->verify_budget > 0) {
            s->verify_budget--;
            sp->verifying = true;
            sp->deadline_ms = now + 2 * scaled(s, s->cfg.ack_timeout_ms);
            /* Twice: under loss one round trip fails a third of the time at 20%. */
            uint32_t seq = ++s->next_seq;
            send_simple(s, m->id, SWIM_MSG_PING, seq, m->id, 0);
            send_simple(s, m->id, SWIM_MSG_PING, seq, m->id, 0);
            continue;
        }
        struct swim_update u = {
            .kind = SWIM_UPD_DEAD, .id = m->id, .incarnation = m->incarnation, .from = self_id(s)};
        member_set_state(s, slot, SWIM_DEAD, now);
        s->st.deaths_declared++;
        notify(s, slot, SWIM_SUSPECT);
        queue_update(s, &u);
    }
}

/* Re-probe one dead or left member, and forget those past dead_reap_ms. The ping's buddy
 * entry tells a member that came back what we think of it; it refutes in its ACK. */
static void dead_probe(swim_t *s, uint64_t now)
{
    for (uint32_t i = s->dlen; i-- > 0;) {
        uint32_t slot = s->dlist[i];
        if (now >= s->m[slot].state_since_ms &&
            now - s->m[slot].state_since_ms >= s->cfg.dead_reap_ms)
            member_forget(s, slot);
    }
    if (s->dlen == 0)
        return;
    uint32_t slot = s->dlist[rng_below(&s->rng, s->dlen)];
    uint64_t id = s->m[slot].id;
    send_simple(s, id, SWIM_MSG_PING, ++s->next_seq, id, 0);
}

/* memberlist's pushPullScale: past 32 members, the period grows with log2(N), so the
 * mesh-wide push-pull traffic (N * N entries per period) grows slower than N^2. */
static uint64_t push_pull_period(const swim_t *s)
{
    uint64_t base = s->cfg.push_pull_ms;
    if (s->nlive <= PP_SCALE_FROM)
        return base;
    double mult = ceil(log2((double)s->nlive) - log2((double)PP_SCALE_FROM)) + 1.0;
    return base * (uint64_t)mult;
}

static void push_pull(swim_t *s, uint64_t now)
{
    uint64_t period = push_pull_period(s);
    if (period > UINT32_MAX)
        period = UINT32_MAX;
    s->next_push_pull_ms = now + period / 2 + rng_below(&s->rng, (uint32_t)period);
    uint32_t slot = random_alive(s, 0);
    uint64_t peer = slot == NONE ? 0 : s->m[slot].id;
    if (peer)
        send_sync(s, peer, SWIM_MSG_SYNC);
    if (s->nseeds == 0)
        return;
    /* Seeds: a dead seed is pushed-pulled every period, so two halves that declared each
     * other dead find each other again through it; when we know nobody alive, any seed. */
    uint32_t pick = NONE, seen = 0;
    for (uint32_t i = 0; i < s->dlen; i++) {
        uint32_t d = s->dlist[i];
        if ((s->m[d].flags & MF_SEED) && s->m[d].state == SWIM_DEAD &&
            rng_below(&s->rng, ++seen) == 0)
            pick = d;
    }
    if (pick == NONE && s->nlive <= 1) {
        for (uint32_t i = 0; i < s->mlen; i++)
            if ((s->m[i].flags & MF_SEED) && s->m[i].state != SWIM_LEFT &&
                rng_below(&s->rng, ++seen) == 0)
                pick = i;
    }
    if (pick != NONE && s->m[pick].id != peer)
        send_sync(s, s->m[pick].id, SWIM_MSG_SYNC);
}

void swim_tick(swim_t *s, uint64_t now)
{
    expire_fwd(s, now);
    struct probe *p = &s->probe;
    if (p->active && !p->indirect && now >= p->ack_deadline_ms)
        probe_go_indirect(s);
    if (p->active && now >= p->end_ms)
        probe_fail(s, now);
    if (!p->active && now >= s->next_probe_ms)
        probe_start(s, now);
    expire_suspicions(s, now);
    if (s->cfg.dead_probe_ms && now >= s->next_dead_probe_ms) {
        s->next_dead_probe_ms = now + s->cfg.dead_probe_ms;
        dead_probe(s, now);
    }
    if (s->cfg.push_pull_ms && now >= s->next_push_pull_ms)
        push_pull(s, now);
}

uint64_t swim_next_deadline(const swim_t *s)
{
    const struct probe *p = &s->probe;
    uint64_t d;
    if (p->active)
        d = p->indirect ? p->end_ms : p->ack_deadline_ms;
    else
        d = s->next_probe_ms;
    for (unsigned i = 0; i < s->nfwd; i++)
        if (s->fwd[i].nack_at_ms < d)
            d = s->fwd[i].nack_at_ms;
    if (!s->left)
        for (uint32_t i = 0; i < s->slen; i++)
            if (s->m[s->slist[i]].susp->deadline_ms < d)
                d = s->m[s->slist[i]].susp->deadline_ms;
    if (s->cfg.dead_probe_ms && s->next_dead_probe_ms < d)
        d = s->next_dead_probe_ms;
    if (s->cfg.push_pull_ms && s->next_push_pull_ms < d)
        d = s->next_push_pull_ms;
    return d;
}

/* ---- receiving ----------------------------------------------------------------------- */

int swim_receive(swim_t *s, uint64_t from, const uint8_t *msg, size_t len, uint64_t now)
{
    if (from == 0 || from == self_id(s))
        return -EINVAL;
    if (is_removed(s, from)) {
        s->st.from_removed++;
        return -EPERM;
    }
    struct swim_msg m;
    if (swim_wire_decode(msg, len, &m)) {
        s->st.malformed++;
        return -EBADMSG;
    }
    s->st.msgs_received++;
    s->st.bytes_received += len;
    s->correct_to = from;
    s->ncorrect = 0;
    uint32_t fslot = map_find(s, from);
    if (fslot != NONE) { /* answer in the version it speaks (rolling upgrades) */
        if (m.version < SWIM_VERSION)
            s->m[fslot].flags |= MF_WIRE_V1;
        else
            s->m[fslot].flags &= (uint8_t)~MF_WIRE_V1;
    }
    apply_piggyback(s, m.piggyback, m.pb_count, now);
    switch (m.type) {
    case SWIM_MSG_PING:
        /* A ping meant for another id (a reused address) must not vouch for it. */
        if (m.target == self_id(s))
            send_ack(s, from, m.seq, m.t1);
        break;
    case SWIM_MSG_ACK:
        handle_ack(s, from, &m, now);
        break;
    case SWIM_MSG_PING_REQ:
        handle_ping_req(s, from, &m, now);
        break;
    case SWIM_MSG_NACK:
        handle_nack(s, from, m.seq);
        break;
    case SWIM_MSG_SYNC:
        merge_sync(s, from, m.members, m.member_count, now);
        if (m.chunk == 0) { /* one reply per exchange, even if later chunks are lost */
            /* Legitimate push-pulls arrive about once per period per member; the bucket lets
             * bursts through (a healed partition, a wave of joins) and caps abuse. What is
             * not answered still merged, and the sender's next push-pull will try again. */
            if (now > s->sync_tokens_at) {
                s->sync_tokens += (now - s->sync_tokens_at) * SWIM_SYNC_RATE;
                if (s->sync_tokens > SWIM_SYNC_BURST * 1000ull)
                    s->sync_tokens = SWIM_SYNC_BURST * 1000ull;
                s->sync_tokens_at = now;
            }
            if (s->sync_tokens >= 1000) {
                s->sync_tokens -= 1000;
                send_sync(s, from, SWIM_MSG_SYNC_REPLY);
            } else {
                s->st.sync_replies_suppressed++;
            }
        }
        break;
    case SWIM_MSG_SYNC_REPLY:
        merge_sync(s, from, m.members, m.member_count, now);
        break;
    }
    s->correct_to = 0;
    s->ncorrect = 0;
    return 0;
}

/* ---- lifecycle and the rest of the API ---------------------------------------------- */

swim_t *swim_new(const swim_config_t *cfg, const swim_io_t *io, const uint8_t *meta,
                 size_t meta_len, uint64_t now_ms)
{
    if (!cfg || !io || !io->send || cfg->self_id == 0 || cfg->probe_interval_ms == 0 ||
        cfg->ack_timeout_ms == 0 || cfg->indirect_probes > INDIRECT_MAX ||
        cfg->suspicion_mult == 0 || cfg->suspicion_max_mult == 0 || cfg->retransmit_mult == 0 ||
        cfg->max_local_health > 1000 || cfg->max_piggyback < 1024 ||
        cfg->probe_interval_ms > 600000 || cfg->ack_timeout_ms > SWIM_NACK_TIMEOUT_MAX ||
        (meta_len && !meta)) {
        errno = EINVAL;
        return NULL;
    }
    if (meta_len > SWIM_META_MAX) {
        errno = E2BIG;
        return NULL;
    }
    swim_t *s = xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    if (s->cfg.max_piggyback > SWIM_MSG_MAX)
        s->cfg.max_piggyback = SWIM_MSG_MAX;
    s->io = *io;
    s->rng = cfg->rng_seed ^ mix64(cfg->self_id);
    s->free_head = NONE;
    s->map_cap = 16;
    s->map = xcalloc(s->map_cap, sizeof(*s->map));
    s->bq_cap = 16;
    s->bq_map = xcalloc(s->bq_cap, sizeof(*s->bq_map));
    swim_wbuf_init(&s->out, SWIM_MSG_MAX);
    swim_wbuf_init(&s->extra, SWIM_MSG_MAX);
    swim_wbuf_init(&s->sync, SWIM_MSG_MAX);
    s->self = member_new(s, cfg->self_id, 0, meta, meta_len, now_ms);
    /* Spread the first probes, dead probes and push-pulls of nodes started together. */
    s->next_probe_ms = now_ms + rng_below(&s->rng, cfg->probe_interval_ms);
    s->next_dead_probe_ms =
        now_ms + (cfg->dead_probe_ms ? rng_below(&s->rng, cfg->dead_probe_ms) : 0);
    s->next_push_pull_ms = now_ms + (cfg->push_pull_ms ? rng_below(&s->rng, cfg->push_pull_ms) : 0);
    s->sync_tokens = SWIM_SYNC_BURST * 1000ull; /* a fresh node answers a burst at once */
    s->sync_tokens_at = now_ms;
    /* Announce ourselves (with meta) on the first messages we send. */
    struct swim_update a = {.kind = SWIM_UPD_ALIVE,
                            .id = cfg->self_id,
                            .incarnation = 0,
                            .data = meta,
                            .len = (uint32_t)meta_len};
    queue_update(s, &a);
    return s;
}

void swim_destroy(swim_t **sp)
{
    if (!sp || !*sp)
        return;
    swim_t *s = *sp;
    for (uint32_t i = 0; i < s->mlen; i++) {
        free(s->m[i].meta);
        free(s->m[i].susp);
    }
    for (uint32_t i = 0; i < s->bq_cap; i++)
        free(s->bq_map[i]);
    free(s->m);
    free(s->map);
    free(s->plist);
    free(s->dlist);
    free(s->slist);
    free(s->removed);
    free(s->bq_map);
    swim_wbuf_free(&s->out);
    swim_wbuf_free(&s->extra);
    swim_wbuf_free(&s->sync);
    free(s);
    *sp = NULL;
}

int swim_reserve(swim_t *s, size_t members)
{
    if (members > UINT32_MAX / 4)
        return -E2BIG;
    uint32_t n = (uint32_t)members;
    if (n > s->mcap) {
        s->m = xrealloc(s->m, (size_t)n * sizeof(*s->m));
        s->mcap = n;
    }
    grow_u32(&s->plist, &s->pcap, n);
    uint32_t cap = s->map_cap;
    while ((uint64_t)n * 10 > (uint64_t)cap * 7)
        cap *= 2;
    if (cap != s->map_cap)
        map_resize(s, cap);
    return 0;
}

int swim_add_member(swim_t *s, uint64_t id, const uint8_t *meta, size_t meta_len, bool seed,
                    uint64_t now_ms)
{
    if (id == 0 || id == self_id(s) || (meta_len && !meta))
        return -EINVAL;
    if (meta_len > SWIM_META_MAX)
        return -E2BIG;
    uint32_t at;
    if (s->nremoved && removed_find(s, id, &at)) { /* the registry admits it again */
        memmove(&s->removed[at], &s->removed[at + 1],
                (s->nremoved - at - 1) * sizeof(s->removed[0]));
        s->nremoved--;
    }
    uint32_t slot = map_find(s, id);
    /* A new seed: exchange full state with it right away (that is how a node joins). Only
     * when new, so a driver that re-adds its seeds on every registry reload causes no
     * push-pull storm. */
    bool new_seed = seed && (slot == NONE || !(s->m[slot].flags & MF_SEED));
    if (new_seed)
        s->next_push_pull_ms = now_ms;
    if (slot != NONE) {
        struct member *m = &s->m[slot];
        if (new_seed) {
            m->flags |= MF_SEED;
            s->nseeds++;
        }
        if (!meta_equal(m, meta, meta_len)) {
            set_meta(m, meta, meta_len);
            notify(s, slot, m->state);
        }
        return -EEXIST;
    }
    slot = member_new(s, id, 0, meta, meta_len, now_ms);
    s->m[slot].flags |= MF_HEARSAY | (seed ? MF_SEED : 0);
    if (seed)
        s->nseeds++;
    plist_add(s, slot);
    notify(s, slot, -1);
    return 0;
}

int swim_remove_member(swim_t *s, uint64_t id)
{
    if (id == 0 || id == self_id(s))
        return -EINVAL;
    uint32_t at;
    if (!removed_find(s, id, &at)) {
        if (s->nremoved == s->removed_cap) {
            s->removed_cap = s->removed_cap ? s->removed_cap * 2 : 8;
            s->removed = xrealloc(s->removed, s->removed_cap * sizeof(s->removed[0]));
        }
        memmove(&s->removed[at + 1], &s->removed[at], (s->nremoved - at) * sizeof(s->removed[0]));
        s->removed[at] = id;
        s->nremoved++;
    }
    uint32_t slot = map_find(s, id);
    if (slot == NONE)
        return -ENOENT;
    if (s->probe.active && s->probe.target == id)
        s->probe.active = false;
    member_forget(s, slot);
    return 0;
}

int swim_broadcast(swim_t *s, uint64_t key, const uint8_t *payload, size_t len)
{
    if (len && !payload)
        return -EINVAL;
    if (len > SWIM_PAYLOAD_MAX || len + 32 > s->cfg.max_piggyback)
        return -E2BIG;
    struct swim_update u = {.kind = SWIM_UPD_APP, .id = key, .data = payload, .len = (uint32_t)len};
    queue_update(s, &u);
    return 0;
}

int swim_set_meta(swim_t *s, const uint8_t *meta, size_t meta_len)
{
    if (meta_len && !meta)
        return -EINVAL;
    if (meta_len > SWIM_META_MAX)
        return -E2BIG;
    if (s->left)
        return -EINVAL;
    struct member *me = &s->m[s->self];
    set_meta(me, meta, meta_len);
    me->incarnation++;
    s->st.incarnation = me->incarnation;
    struct swim_update a = {.kind = SWIM_UPD_ALIVE,
                            .id = me->id,
                            .incarnation = me->incarnation,
                            .data = me->meta,
                            .len = me->meta_len};
    queue_update(s, &a);
    notify(s, s->self, SWIM_ALIVE);
    return 0;
}

void swim_leave(swim_t *s, uint64_t now_ms)
{
    if (s->left)
        return;
    struct member *me = &s->m[s->self];
    me->incarnation++;
    s->st.incarnation = me->incarnation;
    s->left = true;
    member_set_state(s, s->self, SWIM_LEFT, now_ms);
    struct swim_update u = {.kind = SWIM_UPD_LEFT, .id = me->id, .incarnation = me->incarnation};
    queue_update(s, &u);
    notify(s, s->self, SWIM_ALIVE);
}

uint32_t swim_leave_drain_ms(const swim_t *s)
{
    /* We keep probing while draining, one message per interval carrying LEFT, and each ack
     * we send to others' probes carries it too: limit + 2 intervals send it limit times. */
    return (transmit_limit(s) + 2) * s->cfg.probe_interval_ms;
}

size_t swim_member_count(const swim_t *s)
{
    return s->nmembers;
}

int swim_member_get(const swim_t *s, uint64_t id, swim_member_info_t *out)
{
    uint32_t slot = map_find(s, id);
    if (slot == NONE)
        return -ENOENT;
    fill_info(s, &s->m[slot], out);
    return 0;
}

void swim_foreach(const swim_t *s, swim_member_fn fn, void *ctx)
{
    for (uint32_t i = 0; i < s->mlen; i++) {
        if (!(s->m[i].flags & MF_USED))
            continue;
        swim_member_info_t info;
        fill_info(s, &s->m[i], &info);
        fn(&info, ctx);
    }
}

void swim_set_wall_ms(swim_t *s, uint64_t wall_ms)
{
    s->wall_ms = wall_ms > SWIM_WALL_MAX ? 0 : wall_ms;
}

void swim_clock_sample(swim_clock_est_t *est, int64_t offset_ms, uint64_t rtt_ms)
{
    if (rtt_ms < 1)
        rtt_ms = 1;
    if (rtt_ms > UINT16_MAX)
        rtt_ms = UINT16_MAX;
    if (offset_ms > INT32_MAX)
        offset_ms = INT32_MAX;
    if (offset_ms < -INT32_MAX)
        offset_ms = -INT32_MAX;
    if (est->rtt_ms == 0 || rtt_ms <= est->rtt_ms || est->age + 1 >= SWIM_CLOCK_WINDOW) {
        est->offset_ms = (int32_t)offset_ms;
        est->rtt_ms = (uint16_t)rtt_ms;
        est->age = 0;
    } else {
        est->age++;
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int swim_clock_offset(const swim_t *s, int64_t *offset_ms, unsigned *peers)
{
    int32_t *v = xmalloc((s->mlen ? s->mlen : 1) * sizeof(*v));
    unsigned n = 0;
    for (uint32_t i = 0; i < s->mlen; i++) {
        const struct member *m = &s->m[i];
        if ((m->flags & MF_USED) && i != s->self && m->state == SWIM_ALIVE && m->clk.rtt_ms)
            v[n++] = m->clk.offset_ms;
    }
    *peers = n;
    if (n == 0) {
        free(v);
        return -ENOENT;
    }
    qsort(v, n, sizeof(*v), cmp_i32);
    /* Theirs minus ours, so ours against them is the opposite. The median: one or two peers
     * with a bad clock of their own do not make this node look skewed. */
    int64_t med = n % 2 ? v[n / 2] : ((int64_t)v[n / 2 - 1] + v[n / 2]) / 2;
    free(v);
    *offset_ms = -med;
    return 0;
}

void swim_get_stats(const swim_t *s, swim_stats_t *st)
{
    *st = s->st;
    st->local_health = s->lhm;
    st->incarnation = s->m[s->self].incarnation;
}
