/* popsel: which PoPs a site holds tunnels to, and which one is its primary. Sans-I/O.
 *
 * The core never reads a clock, never draws from the system's randomness and never touches
 * a connection. The driver (popsite, or a test) owns the PoPs and their connections and
 * identifies each PoP by a slot index 0 .. POPSEL_MAX-1 of its own choosing. It feeds:
 *   - events as they happen: popsel_set_known(), popsel_probe_result(), popsel_tunnel_up(),
 *     popsel_tunnel_down(), and before each step the measurements of every tunnel up,
 *     popsel_tunnel_rtt() and popsel_tunnel_streams();
 *   - popsel_step(now): returns the actions to carry out, in order (probe, drain, dial,
 *     close, new primary). Call it on a periodic tick (popsite: 100 ms) and after events; at
 *     the latest at popsel_next_deadline().
 * Every decision is a function of those inputs and cfg.rng_seed (the probe and redial
 * jitter), so a test replays a run exactly. The algorithm and its invariants are described
 * at the top of popsel.c and in docs/tunnel.md ("How a site picks its PoPs").
 *
 * Times are absolute milliseconds on one monotonic clock (popsite: clock_mono_ms()); RTTs are
 * microseconds, 0 meaning "not measured" (or unreachable). */
#ifndef POPMESH_TUNNEL_POPSEL_H
#define POPMESH_TUNNEL_POPSEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define POPSEL_MAX  64         /* PoP slots; the driver asserts it equals its own PoP limit */
#define POPSEL_NONE UINT32_MAX /* "no slot" in popsel_action_t.other and popsel_primary() */
/* Actions one step can return: per slot at most two (PROBE and DIAL, or DRAIN and CLOSE),
 * plus one PRIMARY. An out[] of this size never leaves one for the next step. */
#define POPSEL_ACTIONS_MAX (2 * POPSEL_MAX + 1)

typedef struct popsel popsel_t;

typedef struct popsel_config {
    unsigned k;                /* 2: tunnels held (1 .. POPSEL_MAX); one is the primary */
    uint32_t hyst_ms;          /* 10: a PoP replaces another only if lower by this many ms */
    uint32_t hyst_div;         /* 3: ... and by at least 1/hyst_div of the other's RTT (>= 2) */
    uint32_t probe_ms;         /* 5000: probe period of a PoP without a tunnel, jittered
                                  0.8x .. 1.2x (> 0) */
    uint32_t young_ms;         /* 3000: a tunnel this young is judged by its probe RTT too
                                  (0 = never) */
    uint32_t drain_max_ms;     /* 60000: a drained tunnel is closed after this long even with
                                  streams left (> 0) */
    uint32_t backoff_min_ms;   /* 200: first redial delay after a tunnel dies (> 0) */
    uint32_t backoff_max_ms;   /* 5000: the delay doubles up to this (>= backoff_min_ms, at
                                  most 2^31) */
    uint32_t backoff_reset_ms; /* 10000: a tunnel up longer than this dies as news: the
                                  backoff starts again at backoff_min_ms */
    uint64_t rng_seed;         /* 0: jitter of probes and redials (popsite: from
                                  randombytes_buf) */
} popsel_config_t;

/* Fills the defaults above (today's popsite constants); rng_seed is left 0. */
void popsel_config_defaults(popsel_config_t *cfg);

/* Creates the core with every slot empty. NULL with errno = EINVAL on a bad config (cfg
 * NULL, or a field outside the ranges above). Caller owns the result. */
popsel_t *popsel_new(const popsel_config_t *cfg);
/* Accepts NULL and *ps == NULL; sets *ps = NULL. */
void popsel_destroy(popsel_t **ps);

/* ---- events: each returns 0, -ERANGE for a slot >= POPSEL_MAX, or -EINVAL when the slot's
 * state does not allow it (a driver bug: nothing changed). ---------------------------------- */

/* The PoP is (known = true) or is no longer (false) in the latest PoP list. Only known PoPs
 * are probed and dialled; a tunnel to a PoP that drops off the list stays until it dies. */
int popsel_set_known(popsel_t *ps, unsigned i, bool known);
/* The PoP's region: an id the driver interns from the region's name (popsite: 1, 2, ... in
 * the order it meets them), 0 = none. With k >= 2 the set is kept in at least two regions
 * when reachable PoPs of two regions are known (popsel.c, "REGIONS"); a PoP without a region
 * counts as apart from every other (nothing says what it shares a failure with), so when no
 * PoP has one the choice is by RTT alone, as with one region only. Kept across
 * popsel_move(), cleared by popsel_forget(). */
int popsel_set_region(popsel_t *ps, unsigned i, uint32_t region);
/* Clears slot i so another PoP can use it. -EBUSY if it holds a tunnel (dialling or up) or a
 * probe: a live tunnel is not forgotten. */
int popsel_forget(popsel_t *ps, unsigned i);
/* Moves slot from's state to slot to and clears from (for a driver that compacts its list:
 * the order of slots breaks ties between equal RTTs). -EBUSY if to holds a tunnel or a
 * probe. */
int popsel_move(popsel_t *ps, unsigned from, unsigned to);

/* The probe of a PROBE action ended: rtt_us > 0 measured (its handshake RTT), 0 failed or
 * could not be started (the PoP counts as unreachable until measured again). -EINVAL if no
 * probe is in flight. */
int popsel_probe_result(popsel_t *ps, unsigned i, uint32_t rtt_us);
/* The tunnel of a DIAL action is up. hs_rtt_us: its handshake RTT (0 if unknown), which also
 * serves as its RTT until popsel_tunnel_rtt() says otherwise. -EINVAL unless dialling. */
int popsel_tunnel_up(popsel_t *ps, unsigned i, uint32_t hs_rtt_us, uint64_t now);
/* The tunnel died, was closed (after CLOSE), failed to connect, or could not be dialled at
 * all. Schedules the redial: backoff doubles from backoff_min_ms to backoff_max_ms (starting
 * again when the tunnel had been up longer than backoff_reset_ms), the redial comes after
 * 0.5x .. 1.5x of it. Clears up, primary, draining and the PoP's RTT. -EINVAL unless
 * dialling or up. */
int popsel_tunnel_down(popsel_t *ps, unsigned i, uint64_t now);
/* The tunnel's path RTT now (popsite: tconn_rtt_us(), the recent minimum heartbeat RTT; 0 =
 * none yet). Push it for every tunnel up before each step. -EINVAL unless up. */
int popsel_tunnel_rtt(popsel_t *ps, unsigned i, uint32_t rtt_us);
/* Streams open on the tunnel now. Push it for every tunnel up (at least every draining one)
 * before each step: a draining tunnel closes when this reaches 0. -EINVAL unless up. */
int popsel_tunnel_streams(popsel_t *ps, unsigned i, uint32_t streams);

/* ---- the step ----------------------------------------------------------------------------- */

enum popsel_kind {
    POPSEL_PROBE = 0, /* measure PoP pop (a handshake closed at once); report with
                         popsel_probe_result */
    POPSEL_DIAL,      /* dial a tunnel to pop; report popsel_tunnel_up or _down */
    POPSEL_DRAIN,     /* no new streams on pop's tunnel; the open ones finish (tell the PoP) */
    POPSEL_CLOSE,     /* close pop's drained tunnel; report popsel_tunnel_down when it is */
    POPSEL_PRIMARY,   /* pop is the primary now, instead of other (tell the PoPs) */
};

enum popsel_why {
    POPSEL_WHY_DUE = 0,    /* PROBE: its period came round */
    POPSEL_WHY_FILL,       /* DIAL: fewer than k tunnels up or dialling */
    POPSEL_WHY_CLOSER,     /* DIAL: clearly closer than other, the worst tunnel in the set */
    POPSEL_WHY_REPLACED,   /* DRAIN: more than k up (a replacement came up); pop is the worst */
    POPSEL_WHY_IDLE,       /* CLOSE: drained and no stream left */
    POPSEL_WHY_DRAIN_MAX,  /* CLOSE: drained for drain_max_ms, streams or not */
    POPSEL_WHY_NO_PRIMARY, /* PRIMARY: there was none (first tunnel, or the primary left) */
    POPSEL_WHY_BETTER,     /* PRIMARY: clearly closer than the old one */
    POPSEL_WHY_SPREAD,     /* DIAL: the set is all in one region and pop is in another
                              (other: the tunnel it will replace) */
};

typedef struct popsel_action {
    enum popsel_kind kind;
    enum popsel_why why;
    unsigned pop;          /* the slot acted on */
    unsigned other;        /* DIAL (CLOSER, SPREAD): the slot it is to replace; PRIMARY: the
                              old primary or POPSEL_NONE; otherwise POPSEL_NONE */
    uint32_t rtt_us;       /* pop's RTT as the choice saw it (for the log); 0 = unmeasured */
    uint32_t other_rtt_us; /* other's, likewise; 0 when other is POPSEL_NONE */
} popsel_action_t;

const char *popsel_kind_name(enum popsel_kind kind);
const char *popsel_why_name(enum popsel_why why);

/* Decides at now and writes up to max actions to out (caller owns out), in the order to carry
 * them out; returns how many. An action that does not fit is not taken (the state stays as
 * if it had not been considered) and comes at a later step; max = POPSEL_ACTIONS_MAX always
 * fits. The core assumes each action is carried out; the driver reports what follows. */
size_t popsel_step(popsel_t *ps, uint64_t now, popsel_action_t *out, size_t max);
/* The earliest time a step would act on its own (a probe due, a redial due, a young tunnel
 * growing up, a drain past its maximum); UINT64_MAX if none. Events and new measurements can
 * call for a step sooner. */
uint64_t popsel_next_deadline(const popsel_t *ps);

/* ---- what the driver logs and reports ----------------------------------------------------- */

/* Slot i's RTT as the choice sees it at now, us: a tunnel's heartbeat RTT (its probe's too
 * while young, whichever is lower; never 0 for a tunnel up), else the last probe's; 0 = not
 * measured or unreachable (or i out of range). */
uint32_t popsel_rtt_of(const popsel_t *ps, unsigned i, uint64_t now);
bool popsel_is_up(const popsel_t *ps, unsigned i);
/* Slot i's region as last set (0: none, or i out of range). */
uint32_t popsel_region_of(const popsel_t *ps, unsigned i);
/* Whether the tunnels up and not draining span two regions (as defined above). */
bool popsel_is_spread(const popsel_t *ps);
bool popsel_is_dialing(const popsel_t *ps, unsigned i);
bool popsel_is_primary(const popsel_t *ps, unsigned i);
bool popsel_is_draining(const popsel_t *ps, unsigned i);
/* The primary's slot, or POPSEL_NONE. */
unsigned popsel_primary(const popsel_t *ps);
/* When slot i may be redialled (0: at once), ms; and its current backoff, ms (0: none). */
uint64_t popsel_retry_at(const popsel_t *ps, unsigned i);
uint32_t popsel_backoff_ms(const popsel_t *ps, unsigned i);

#endif
