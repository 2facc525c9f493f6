/* popsel: which PoPs a site holds tunnels to, and which one is its primary.
 *
 * BACKGROUND
 *
 * A site connector dials out to the mesh (it listens on nothing), so it alone decides where
 * its traffic enters. Two designs bracket the choice. cloudflared holds several connections
 * to at least two Cloudflare data centres at all times: losing one costs nothing but the
 * streams on it, because the others are already up and routed. Tailscale picks one "home"
 * DERP region by latency (net/netcheck) and moves it only when another region is better by
 * at least 10 ms and by a third of the old one's latency (preferredDERPAbsoluteDiff, and
 * bestAny > old/3*2 keeps the old): a home that flips between two near-equal regions on
 * measurement noise makes every peer re-learn the path each time.
 *
 * We take both. The site holds tunnels to the k PoPs with the lowest RTT (default 2: a
 * primary and a warm standby), and one of them is the primary, which stores the site's
 * health for the mesh and is the mesh's preferred egress. Both the set and the primary
 * change only past the same hysteresis as Tailscale's home DERP: hyst_ms and 1/hyst_div
 * lower (10 ms and a third). A PoP is measured by its tunnel's heartbeat RTT while it has
 * one (the recent minimum, so a busy tunnel's queueing does not make its PoP look far), by a
 * probe otherwise: a handshake closed at once, every probe_ms with +-20% jitter so the
 * probes of many sites do not fall into step.
 *
 * Replacing a tunnel drains it instead of cutting it. The site first dials the better PoP;
 * once that tunnel is up there are k+1, and the worst is drained: the site tells the PoP (in
 * its STATUS) to route no new streams to it, the streams already on it finish, and it is
 * closed when it carries none or after drain_max_ms, whichever comes first. A user's
 * download in progress survives a better PoP appearing. Only one replacement is in flight at
 * a time, so a burst of new measurements moves the set one PoP at a time, each move judged
 * on the set as it then is.
 *
 * A new tunnel's heartbeat RTT has no history in its first seconds, and its handshake ran
 * under whatever load the dial met. For young_ms after it comes up it is judged by the lower
 * of its tunnel RTT and the probe that made us dial it, so a replacement is not drained
 * again on one bad first sample (which would dial the old PoP back: a flap).
 *
 * A tunnel that dies is redialled after a jittered exponential backoff, 0.5x .. 1.5x of a
 * delay that doubles from backoff_min_ms to backoff_max_ms (200 ms .. 5 s). A tunnel that
 * had been up for backoff_reset_ms (10 s) dies as news: its backoff starts again from the
 * minimum. While it is down its PoP is unmeasured; the probe that follows measures it again
 * and, if it is better by the hysteresis, it takes its place back (fail-back).
 *
 * Candidates are sorted best measured first and unmeasured last (slot order breaks ties). An
 * unmeasured PoP is dialled only when no measured candidate is known or nothing at all is up
 * or dialling: at enrollment nothing is measured, and a site with no tunnel should take any
 * PoP now rather than wait a probe period for the best one.
 *
 * REGIONS
 *
 * Two tunnels to two PoPs in one region share that region's failures: a power or transit
 * loss there takes both, and the site is detached until it has dialled elsewhere (a probe
 * period, then a handshake, then the mesh learning the new attachment). cloudflared spreads
 * its connections over two data centres for this. So each PoP carries its region (the
 * driver's id of its name, 0 = none), and with k >= 2 the set is kept "spread": it holds two
 * PoPs not known to share a region. A PoP without a region shares none with any other (we
 * know nothing of its failures), so with no region set anywhere every set of two is spread
 * and the choice is by RTT alone, as it is when every PoP is in one region (no set can be
 * spread) and with k = 1.
 *
 * The set the rules aim for is the best PoP (lowest RTT), then the best PoP of another
 * region, then the rest by RTT. Three rules get there and keep it:
 *   - Fill: while the set is in one region, the next dial is the best candidate that spreads
 *     it, when one may be dialled (measured, or unmeasured under the rule above: at
 *     enrollment the second dial already goes to another region); else the best, as before.
 *   - Spread: with the set full, in one region and nothing dialling, the best measured
 *     candidate of another region is dialled, whatever its RTT (no hysteresis: this is about
 *     failure, not speed), to replace the set's worst. A spread set never goes back to one
 *     region by our own doing, so this cannot flap; only a death does, and the fill rule
 *     answers it.
 *   - Victim: the member drained when k+1 are up, and the one a CLOSER candidate is judged
 *     against, is the worst of those whose leaving keeps the set spread, when it is (else
 *     the worst, as before). Judging a candidate against the member it would actually
 *     replace matters: a second PoP in the best one's region must not be dialled because it
 *     beats the other region's PoP, only to be drained itself once up (and dialled again).
 *     The candidates are tried best first until one beats its victim by the hysteresis.
 * The primary is chosen as before, by RTT alone: the best PoP, wherever it is; the victim of
 * a spread set of three or more is never the best member, so spreading does not drain it.
 * "Reachable" is "measured": a region whose PoPs all fail their probes (or whose tunnels
 * died and are not measured again yet) has no candidate, the set fills in the remaining
 * region, and the spread rule brings the region back once a probe measures one of its PoPs.
 *
 * This file holds the decisions only; node/site/popsite.c holds the connections and feeds the
 * core (the contract is in popsel.h). The rules are those popsite's manage() applied before
 * they moved here, with two corrections: a replacement is judged against the set's worst
 * tunnel after a drain, not the tunnel just drained (else a PoP that beats the drained one
 * but not the new worst is dialled, and the new worst drained for a PoP hardly closer); and a
 * dial or probe that cannot even be started counts as a failed one (backoff, unmeasured)
 * rather than being retried every step.
 *
 * INVARIANTS
 *
 *   - A slot is in exactly one connection state: none, dialling, or up. draining and
 *     closing imply up; primary implies up and not draining. At most one slot is primary.
 *   - "kept" (up, not draining) plus "dialling" never exceeds k + 1: dials that fill the set
 *     stop at k, and a replacement is dialled only when nothing is dialling and the set is
 *     full. So kept never exceeds k + 1, and when kept >= k at most one dial is in flight.
 *   - A step drains at most one tunnel and dials at most one replacement; it returns each
 *     action at most once (a closing tunnel is not closed again, a probing PoP not probed).
 *   - An action not returned (out[] full) changed nothing: it is decided again next step.
 *   - With k >= 2, a drain never turns a spread set into a one-region one, and a set in
 *     one region is left for a spread one as soon as a measured candidate of another region
 *     may be dialled (one step; the dial is the step's one replacement).
 *   - Everything is a function of the inputs and cfg.rng_seed: no clock, no global, and
 *     slots are visited in index order. */
#include "tunnel/popsel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/xmalloc.h"

enum conn {
    CONN_NONE = 0, /* no tunnel */
    CONN_DIALING,  /* DIAL returned, not up yet */
    CONN_UP,       /* popsel_tunnel_up seen */
};

struct slot {
    uint64_t next_probe_ms;  /* ms: the next probe is due (0 = at once) */
    uint64_t retry_at_ms;    /* ms: no redial before (0 = at once) */
    uint64_t up_at_ms;       /* ms: when the tunnel came up */
    uint64_t drain_since_ms; /* ms: when the drain began */
    uint32_t rtt_us;         /* us: last probe or handshake; 0 = none or unreachable */
    uint32_t tun_rtt_us;     /* us: the tunnel's path RTT as last pushed; 0 = none yet */
    uint32_t backoff_ms;     /* ms: the last redial delay; 0 = none */
    uint32_t streams;        /* streams open on the tunnel, as last pushed */
    uint32_t region;         /* the driver's id of the PoP's region; 0 = none */
    uint8_t conn;            /* enum conn */
    bool known;              /* in the latest PoP list */
    bool probing;            /* a probe is in flight */
    bool primary;            /* the site's primary (up, not draining) */
    bool draining;           /* replaced: no new streams, closed once idle */
    bool closing;            /* CLOSE returned, down not yet reported */
};

struct popsel {
    popsel_config_t cfg;
    uint64_t rng;          /* splitmix64 state */
    uint64_t last_step_ms; /* now of the last popsel_step */
    struct slot s[POPSEL_MAX];
};

/* ---- small helpers ------------------------------------------------------------------ */

/* The RTT the choice goes by (see popsel_rtt_of in popsel.h). */
static uint32_t rtt_of(const popsel_t *ps, const struct slot *s, uint64_t now)
{
    if (s->conn == CONN_UP) {
        uint32_t r = s->tun_rtt_us;
        if (s->rtt_us && s->rtt_us < r && now - s->up_at_ms < ps->cfg.young_ms)
            r = s->rtt_us;
        return r ? r : 1;
    }
    return s->rtt_us;
}

/* a is better than b by the hysteresis: at least hyst_ms and 1/hyst_div of b lower. */
static bool clearly_better(const popsel_t *ps, uint32_t a, uint32_t b)
{
    uint64_t d = ps->cfg.hyst_div;
    return (uint64_t)a + (uint64_t)ps->cfg.hyst_ms * 1000 <= b && (uint64_t)a * d <= b * (d - 1);
}

/* Known to fail together: both in one region. A PoP without a region shares none. */
static bool same_region(const struct slot *a, const struct slot *b)
{
    return a->region && a->region == b->region;
}

/* In the set: a tunnel up and not draining, or a dial in flight. */
static bool in_set(const struct slot *s)
{
    return (s->conn == CONN_UP && !s->draining) || s->conn == CONN_DIALING;
}

/* Whether the set, with slot plus added and slot minus taken out (either POPSEL_NONE), spans
 * two regions: it holds two PoPs not known to share one. */
static bool spread(const popsel_t *ps, unsigned plus, unsigned minus)
{
    const struct slot *first = NULL;
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        const struct slot *s = &ps->s[i];
        if (i == minus || (i != plus && !in_set(s)))
            continue;
        if (!first)
            first = s;
        else if (!same_region(first, s))
            return true;
    }
    return false;
}

/* The member the set with plus added (POPSEL_NONE: as it is) would drop: the one with the
 * highest RTT (the first on a tie) whose removal leaves the set spread, when it is spread and
 * k >= 2; otherwise the one with the highest RTT. POPSEL_NONE if the set is empty. When the
 * set is spread and holds three or more, this is never its best (lowest RTT) member: were
 * every other member's removal to leave one region, all would be in the best one's. */
static unsigned victim(const popsel_t *ps, unsigned plus, uint64_t now)
{
    bool keep = ps->cfg.k >= 2 && spread(ps, plus, POPSEL_NONE);
    unsigned worst = POPSEL_NONE, worst_any = POPSEL_NONE;
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        const struct slot *s = &ps->s[i];
        if (i != plus && !in_set(s))
            continue;
        uint32_t r = rtt_of(ps, s, now);
        if (worst_any == POPSEL_NONE || r > rtt_of(ps, &ps->s[worst_any], now))
            worst_any = i;
        if (keep && (worst == POPSEL_NONE || r > rtt_of(ps, &ps->s[worst], now)) &&
            spread(ps, plus, i))
            worst = i;
    }
    return worst != POPSEL_NONE ? worst : worst_any;
}

/* Counts the tunnels up and not draining (*kept) and the dials in flight (*dialing);
 * returns the kept tunnel with the highest RTT (the first one on a tie), or POPSEL_NONE. */
static unsigned the_set(const popsel_t *ps, uint64_t now, unsigned *kept, unsigned *dialing)
{
    unsigned worst = POPSEL_NONE;
    *kept = *dialing = 0;
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        const struct slot *s = &ps->s[i];
        if (s->conn == CONN_UP && !s->draining) {
            (*kept)++;
            if (worst == POPSEL_NONE || rtt_of(ps, s, now) > rtt_of(ps, &ps->s[worst], now))
                worst = i;
        } else if (s->conn == CONN_DIALING) {
            (*dialing)++;
        }
    }
    return worst;
}

static bool emit(popsel_action_t *out, size_t max, size_t *n, popsel_action_t a)
{
    if (*n >= max)
        return false;
    out[(*n)++] = a;
    return true;
}

/* ---- life cycle --------------------------------------------------------------------- */

void popsel_config_defaults(popsel_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->k = 2;
    cfg->hyst_ms = 10;
    cfg->hyst_div = 3;
    cfg->probe_ms = 5000;
    cfg->young_ms = 3000;
    cfg->drain_max_ms = 60000;
    cfg->backoff_min_ms = 200;
    cfg->backoff_max_ms = 5000;
    cfg->backoff_reset_ms = 10000;
}

popsel_t *popsel_new(const popsel_config_t *cfg)
{
    if (!cfg || cfg->k < 1 || cfg->k > POPSEL_MAX || cfg->hyst_div < 2 || cfg->probe_ms == 0 ||
        cfg->drain_max_ms == 0 || cfg->backoff_min_ms == 0 ||
        cfg->backoff_max_ms < cfg->backoff_min_ms || cfg->backoff_max_ms > (1u << 31)) {
        errno = EINVAL;
        return NULL;
    }
    popsel_t *ps = xcalloc(1, sizeof(*ps));
    ps->cfg = *cfg;
    ps->rng = cfg->rng_seed;
    return ps;
}

void popsel_destroy(popsel_t **ps)
{
    if (!ps || !*ps)
        return;
    free(*ps);
    *ps = NULL;
}

/* ---- events ------------------------------------------------------------------------- */

int popsel_set_known(popsel_t *ps, unsigned i, bool known)
{
    if (i >= POPSEL_MAX)
        return -ERANGE;
    ps->s[i].known = known;
    return 0;
}

int popsel_set_region(popsel_t *ps, unsigned i, uint32_t region)
{
    if (i >= POPSEL_MAX)
        return -ERANGE;
    ps->s[i].region = region;
    return 0;
}

int popsel_forget(popsel_t *ps, unsigned i)
{
    if (i >= POPSEL_MAX)
        return -ERANGE;
    if (ps->s[i].conn != CONN_NONE || ps->s[i].probing)
        return -EBUSY;
    memset(&ps->s[i], 0, sizeof(ps->s[i]));
    return 0;
}

int popsel_move(popsel_t *ps, unsigned from, unsigned to)
{
    if (from >= POPSEL_MAX || to >= POPSEL_MAX)
        return -ERANGE;
    if (from == to)
        return 0;
    if (ps->s[to].conn != CONN_NONE || ps->s[to].probing)
        return -EBUSY;
    ps->s[to] = ps->s[from];
    memset(&ps->s[from], 0, sizeof(ps->s[from]));
    return 0;
}

int popsel_probe_result(popsel_t *ps, unsigned i, uint32_t rtt_us)
{
    if (i >= POPSEL_MAX)
        return -ERANGE;
    struct slot *s = &ps->s[i];
    if (!s->probing)
        return -EINVAL;
    s->probing = false;
    s->rtt_us = rtt_us;
    return 0;
}

int popsel_tunnel_up(popsel_t *ps, unsigned i, uint32_t hs_rtt_us, uint64_t now)
{
    if (i >= POPSEL_MAX)
        return -ERANGE;
    struct slot *s = &ps->s[i];
    if (s->conn != CONN_DIALING)
        return -EINVAL;
    s->conn = CONN_UP;
    s->up_at_ms = now;
    s->tun_rtt_us = hs_rtt_us; /* the tunnel's RTT until its first heartbeat */
    s->streams = 0;
    uint32_t hs = hs_rtt_us ? hs_rtt_us : 1;
    if (!s->rtt_us || hs < s->rtt_us) /* keep the probe's when it was lower */
        s->rtt_us = hs;
    return 0;
}

int popsel_tunnel_down(popsel_t *ps, unsigned i, uint64_t now)
{
    if (i >= POPSEL_MAX)
        return -ERANGE;
    struct slot *s = &ps->s[i];
    if (s->conn == CONN_NONE)
        return -EINVAL;
    if (s->conn == CONN_UP && now - s->up_at_ms > ps->cfg.backoff_reset_ms)
        s->backoff_ms = 0; /* it had been fine for a while: this is news, retry soon */
    uint64_t b = s->backoff_ms ? (uint64_t)s->backoff_ms * 2 : ps->cfg.backoff_min_ms;
    if (b > ps->cfg.backoff_max_ms)
        b = ps->cfg.backoff_max_ms;
    s->backoff_ms = (uint32_t)b;
    s->retry_at_ms = now + b / 2 + rng_below(&ps->rng, (uint32_t)b);
    s->conn = CONN_NONE;
    s->primary = false;
    s->draining = false;
    s->closing = false;
    s->rtt_us = 0;
    s->tun_rtt_us = 0;
    s->streams = 0;
    return 0;
}

int popsel_tunnel_rtt(popsel_t *ps, unsigned i, uint32_t rtt_us)
{
    if (i >= POPSEL_MAX)
        return -ERANGE;
    if (ps->s[i].conn != CONN_UP)
        return -EINVAL;
    ps->s[i].tun_rtt_us = rtt_us;
    return 0;
}

int popsel_tunnel_streams(popsel_t *ps, unsigned i, uint32_t streams)
{
    if (i >= POPSEL_MAX)
        return -ERANGE;
    if (ps->s[i].conn != CONN_UP)
        return -EINVAL;
    ps->s[i].streams = streams;
    return 0;
}

/* ---- the step ----------------------------------------------------------------------- */

size_t popsel_step(popsel_t *ps, uint64_t now, popsel_action_t *out, size_t max)
{
    size_t n = 0;
    unsigned k = ps->cfg.k;
    ps->last_step_ms = now;

    /* Probes for PoPs without a tunnel. */
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        struct slot *s = &ps->s[i];
        if (s->conn != CONN_NONE || s->probing || now < s->next_probe_ms || !s->known)
            continue;
        popsel_action_t a = {POPSEL_PROBE, POPSEL_WHY_DUE, i, POPSEL_NONE, s->rtt_us, 0};
        if (!emit(out, max, &n, a))
            break;
        /* 0.8 .. 1.2 probe periods */
        s->next_probe_ms =
            now + (uint64_t)ps->cfg.probe_ms * (2000 + rng_below(&ps->rng, 1000)) / 2500;
        s->probing = true;
    }

    /* The set: tunnels up (not draining), and dials in flight. */
    unsigned kept, dialing, worst = the_set(ps, now, &kept, &dialing);

    /* More up than wanted (a replacement came up): drain the worst, of those whose leaving
     * keeps the set in two regions when it is. */
    if (kept > k && worst != POPSEL_NONE) {
        worst = victim(ps, POPSEL_NONE, now);
        struct slot *w = &ps->s[worst];
        popsel_action_t a = {POPSEL_DRAIN, POPSEL_WHY_REPLACED, worst,
                             POPSEL_NONE,  rtt_of(ps, w, now),  0};
        if (emit(out, max, &n, a)) {
            w->draining = true;
            w->primary = false;
            w->drain_since_ms = now;
            /* A replacement is judged against the set as it now is, not the tunnel just
             * drained (which would let a PoP in that beats it but not the set's new worst). */
            worst = the_set(ps, now, &kept, &dialing);
        }
    }

    /* Candidates without a tunnel, best measured first, unmeasured last (slot order). */
    unsigned order[POPSEL_MAX], nc = 0;
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        const struct slot *s = &ps->s[i];
        if (s->conn == CONN_NONE && s->known && now >= s->retry_at_ms)
            order[nc++] = i;
    }
    for (unsigned a = 1; a < nc; a++)
        for (unsigned b = a; b > 0; b--) {
            uint32_t ra = ps->s[order[b]].rtt_us, rb = ps->s[order[b - 1]].rtt_us;
            if ((ra ? ra : UINT32_MAX) >= (rb ? rb : UINT32_MAX))
                break;
            unsigned t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    /* An unmeasured candidate may be dialled only when no measured one is known or the set is
     * empty (order[0] is measured if any is). */
    bool any_measured = nc > 0 && ps->s[order[0]].rtt_us;

    /* Fill: the best candidate; but while the set is all in one region, the best candidate
     * in another, when one may be dialled. */
    while (kept + dialing < k) {
        bool one_region = k >= 2 && kept + dialing > 0 && !spread(ps, POPSEL_NONE, POPSEL_NONE);
        unsigned pick = POPSEL_NONE;
        for (unsigned j = 0; j < nc; j++) {
            const struct slot *s = &ps->s[order[j]];
            if (s->conn != CONN_NONE) /* dialled by this loop */
                continue;
            if (!s->rtt_us && any_measured && kept + dialing > 0)
                break; /* unmeasured: only when nothing better is known */
            if (pick == POPSEL_NONE)
                pick = order[j];
            if (!one_region)
                break;
            if (spread(ps, order[j], POPSEL_NONE)) {
                pick = order[j];
                break;
            }
        }
        if (pick == POPSEL_NONE)
            break;
        struct slot *s = &ps->s[pick];
        popsel_action_t a = {POPSEL_DIAL, POPSEL_WHY_FILL, pick, POPSEL_NONE, s->rtt_us, 0};
        if (!emit(out, max, &n, a))
            break;
        s->conn = CONN_DIALING;
        dialing++;
    }

    /* Full, and nothing dialling: one replacement at a time, by a measured PoP. While the set
     * is all in one region, the best PoP of another takes the place of the set's worst,
     * whatever their RTTs. Otherwise a PoP clearly better than the member it would replace
     * (the set's worst, of those whose leaving keeps it in two regions) takes its place. */
    if (kept + dialing >= k && dialing == 0 && worst != POPSEL_NONE) {
        unsigned pick = POPSEL_NONE, other = POPSEL_NONE;
        enum popsel_why why = POPSEL_WHY_SPREAD;
        if (k >= 2 && !spread(ps, POPSEL_NONE, POPSEL_NONE))
            for (unsigned j = 0; j < nc && pick == POPSEL_NONE; j++)
                if (ps->s[order[j]].rtt_us && spread(ps, order[j], POPSEL_NONE))
                    pick = order[j];
        if (pick != POPSEL_NONE) {
            other = victim(ps, pick, now);
        } else {
            why = POPSEL_WHY_CLOSER;
            uint32_t worst_rtt = rtt_of(ps, &ps->s[worst], now);
            for (unsigned j = 0; j < nc; j++) {
                uint32_t r = ps->s[order[j]].rtt_us;
                if (!r || !clearly_better(ps, r, worst_rtt))
                    break; /* nor can any after it */
                unsigned v = victim(ps, order[j], now);
                if (v != order[j] && clearly_better(ps, r, rtt_of(ps, &ps->s[v], now))) {
                    pick = order[j];
                    other = v;
                    break;
                }
            }
        }
        if (pick != POPSEL_NONE) {
            popsel_action_t a = {
                POPSEL_DIAL, why, pick, other, ps->s[pick].rtt_us, rtt_of(ps, &ps->s[other], now)};
            if (emit(out, max, &n, a))
                ps->s[pick].conn = CONN_DIALING;
        }
    }

    /* Drained tunnels close once idle (or after drain_max_ms). */
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        struct slot *s = &ps->s[i];
        if (!s->draining || s->conn != CONN_UP || s->closing)
            continue;
        bool idle = s->streams == 0;
        if (idle || (now > s->drain_since_ms && now - s->drain_since_ms > ps->cfg.drain_max_ms)) {
            popsel_action_t a = {POPSEL_CLOSE,
                                 idle ? POPSEL_WHY_IDLE : POPSEL_WHY_DRAIN_MAX,
                                 i,
                                 POPSEL_NONE,
                                 rtt_of(ps, s, now),
                                 0};
            if (!emit(out, max, &n, a))
                break;
            s->closing = true;
        }
    }

    /* The primary: the best tunnel up, changing only past the hysteresis. */
    unsigned primary = POPSEL_NONE, best = POPSEL_NONE;
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        struct slot *s = &ps->s[i];
        if (s->primary && (s->conn != CONN_UP || s->draining))
            s->primary = false;
        if (s->conn != CONN_UP || s->draining)
            continue;
        if (s->primary)
            primary = i;
        if (best == POPSEL_NONE || rtt_of(ps, s, now) < rtt_of(ps, &ps->s[best], now))
            best = i;
    }
    if (best != POPSEL_NONE && best != primary &&
        (primary == POPSEL_NONE ||
         clearly_better(ps, rtt_of(ps, &ps->s[best], now), rtt_of(ps, &ps->s[primary], now)))) {
        popsel_action_t a = {
            POPSEL_PRIMARY,
            primary == POPSEL_NONE ? POPSEL_WHY_NO_PRIMARY : POPSEL_WHY_BETTER,
            best,
            primary,
            rtt_of(ps, &ps->s[best], now),
            primary == POPSEL_NONE ? 0 : rtt_of(ps, &ps->s[primary], now),
        };
        if (emit(out, max, &n, a)) {
            if (primary != POPSEL_NONE)
                ps->s[primary].primary = false;
            ps->s[best].primary = true;
        }
    }
    return n;
}

uint64_t popsel_next_deadline(const popsel_t *ps)
{
    uint64_t next = UINT64_MAX, last = ps->last_step_ms;
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        const struct slot *s = &ps->s[i];
        uint64_t t = UINT64_MAX;
        if (s->conn == CONN_NONE && s->known) {
            if (!s->probing)
                t = s->next_probe_ms; /* due now if a full out[] left it */
            if (s->retry_at_ms > last && s->retry_at_ms < t)
                t = s->retry_at_ms;
        } else if (s->conn == CONN_UP) {
            uint64_t grown = s->up_at_ms + ps->cfg.young_ms;
            if (ps->cfg.young_ms && grown > last)
                t = grown;
            uint64_t cut = s->drain_since_ms + ps->cfg.drain_max_ms + 1;
            if (s->draining && !s->closing && cut < t)
                t = cut;
        }
        if (t < next)
            next = t;
    }
    return next;
}

/* ---- accessors ---------------------------------------------------------------------- */

uint32_t popsel_rtt_of(const popsel_t *ps, unsigned i, uint64_t now)
{
    return i < POPSEL_MAX ? rtt_of(ps, &ps->s[i], now) : 0;
}

bool popsel_is_up(const popsel_t *ps, unsigned i)
{
    return i < POPSEL_MAX && ps->s[i].conn == CONN_UP;
}

uint32_t popsel_region_of(const popsel_t *ps, unsigned i)
{
    return i < POPSEL_MAX ? ps->s[i].region : 0;
}

bool popsel_is_spread(const popsel_t *ps)
{
    const struct slot *first = NULL;
    for (unsigned i = 0; i < POPSEL_MAX; i++) {
        const struct slot *s = &ps->s[i];
        if (s->conn != CONN_UP || s->draining)
            continue;
        if (!first)
            first = s;
        else if (!same_region(first, s))
            return true;
    }
    return false;
}

bool popsel_is_dialing(const popsel_t *ps, unsigned i)
{
    return i < POPSEL_MAX && ps->s[i].conn == CONN_DIALING;
}

bool popsel_is_primary(const popsel_t *ps, unsigned i)
{
    return i < POPSEL_MAX && ps->s[i].primary;
}

bool popsel_is_draining(const popsel_t *ps, unsigned i)
{
    return i < POPSEL_MAX && ps->s[i].draining;
}

unsigned popsel_primary(const popsel_t *ps)
{
    for (unsigned i = 0; i < POPSEL_MAX; i++)
        if (ps->s[i].primary)
            return i;
    return POPSEL_NONE;
}

uint64_t popsel_retry_at(const popsel_t *ps, unsigned i)
{
    return i < POPSEL_MAX ? ps->s[i].retry_at_ms : 0;
}

uint32_t popsel_backoff_ms(const popsel_t *ps, unsigned i)
{
    return i < POPSEL_MAX ? ps->s[i].backoff_ms : 0;
}

const char *popsel_kind_name(enum popsel_kind kind)
{
    static const char *const names[] = {
        [POPSEL_PROBE] = "probe", [POPSEL_DIAL] = "dial",       [POPSEL_DRAIN] = "drain",
        [POPSEL_CLOSE] = "close", [POPSEL_PRIMARY] = "primary",
    };
    return (unsigned)kind < sizeof(names) / sizeof(names[0]) ? names[kind] : "?";
}

const char *popsel_why_name(enum popsel_why why)
{
    static const char *const names[] = {
        [POPSEL_WHY_DUE] = "probe due",
        [POPSEL_WHY_FILL] = "fewer than k tunnels",
        [POPSEL_WHY_CLOSER] = "closer than the worst tunnel",
        [POPSEL_WHY_REPLACED] = "a closer PoP is up",
        [POPSEL_WHY_IDLE] = "drained and idle",
        [POPSEL_WHY_DRAIN_MAX] = "drained for the maximum time",
        [POPSEL_WHY_NO_PRIMARY] = "no primary",
        [POPSEL_WHY_BETTER] = "clearly closer than the primary",
        [POPSEL_WHY_SPREAD] = "the set is all in one region",
    };
    return (unsigned)why < sizeof(names) / sizeof(names[0]) ? names[why] : "?";
}
