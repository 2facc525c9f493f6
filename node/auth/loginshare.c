/* loginshare: login attempts counted mesh-wide (see loginshare.h).
 *
 * BACKGROUND. Each PoP limits logins with token buckets per user name and per client address
 * (ratelimit.h): burst B, then one attempt per R ms. Alone, N PoPs give an attacker who spreads
 * guesses over them N times that: N*B at once and N per R after. The limiter needs the mesh's
 * attempts, not only its own, without a store write per attempt (a replicated LMDB record per
 * guess, kept forever as a tombstone, is the wrong tool for a counter that matters for a minute).
 *
 * BEHAVIOR. A PoP counts, per key it admitted attempts for, a cumulative counter (born, count):
 * `born` names the counter, `count` the attempts since. Within LOGINSHARE_FLUSH_MS of an
 * attempt it broadcasts a summary of its recent keys (last attempt within RESEND_MS, users
 * first, then the most recent, at most ENTRIES_MAX) through SWIM's piggyback, where a newer
 * summary replaces the queued one, and repeats it every PERIOD_MS while a key is recent, so a
 * summary lost on the way is made good by the next. A receiver remembers, per (origin, key), the
 * last (born, count) it saw and charges the growth to its own bucket for the key: count - seen
 * for the same counter, count for a new one. Counters are cumulative, so loss, duplicates and
 * reordering within one counter never charge an attempt twice or drop one for good; summaries
 * older than the last seen from an origin (seq) are ignored whole, so an old counter cannot
 * come back as a new one.
 *
 * Charging the other PoPs' attempts to one's own bucket, into debt if need be (ratelimit.c),
 * makes every bucket see every attempt; refill is the bucket's own. So the mesh behaves as
 * one bucket, late by the time a summary takes to arrive.
 *
 * THE BOUND. Let d be the gossip delay: from an attempt to its charge at every other PoP
 * (FLUSH_MS + SWIM dissemination: about 0.1-0.5 s in a small mesh, probe interval 200 ms,
 * growing with log N). Take any PoP p and its last admission at time t. p admitted it with at
 * least one attempt in its bucket, which was full at most at the start, refilled at one per R
 * and was charged every attempt of the mesh it had heard of. So the mesh admitted, up to t,
 *
 *     at most  B + t/R  +  (attempts admitted at the other PoPs in the d before t)
 *
 * and the last term is at most (N-1) * (B + d/R) (each of the others at most its bucket in d).
 * An attacker whose attempts are more than d apart (any sequence of guesses each of which waits
 * for the previous answer, when an argon2id check plus a round trip takes longer than d) gets
 * exactly the single-PoP limit. One who fires at all N PoPs at once gets up to N*B, once: the
 * debt that follows holds every PoP back until the mesh-wide total is back under B + t/R, so
 * the long-run rate is one per R for the whole mesh, not N.
 *
 * WHAT WEAKENS IT, and in which direction:
 * - Debt is floored at AUTH_RL_DEBT_BURSTS full buckets: more attempts than that in flight at
 *   once (16 PoPs bursting together) are forgiven.
 * - A summary names at most ENTRIES_MAX keys, users first: a flood of more fresh addresses than
 *   that within RESEND_MS leaves some address counts unshared (user counts come first because
 *   guessing one user's password from many addresses is the attack this closes).
 * - A PoP that forgets a key for room (LOCAL_MAX) starts a new counter: nothing is lost. A
 *   receiver that forgets a counter for room (SEEN_MAX, clock-hand eviction) charges its whole
 *   count again when it grows: over-charging, the safe side (stats.evicted counts it).
 * - A restarted PoP starts a new epoch; its previous counters were charged already.
 *
 * FORGETTING WITHOUT CLOCKS. A PoP starts a new counter (a new born) for a key idle KEEP_MS here;
 * a receiver forgets a counter FORGET_MS after it last grew on its own clock. The receiver saw
 * the growth after the attempt behind it, so it forgets after the origin stopped counting on
 * that counter: a counter forgotten by a receiver never grows again, and no clocks are compared
 * across PoPs.
 *
 * TRUST. Summaries come from members only (SWIM over the CURVE-authenticated mesh socket), but
 * are still untrusted bytes: strictly decoded, bounded, and fuzzed (tests/fuzz/fuzz_loginshare.c).
 * The worst a member can do with made-up counts is hold keys back, for at most the debt floor;
 * it could do as much by attempting logins itself. Keys are hashed under a key derived from the
 * mesh secret (httpproxy.c), so names and addresses never travel, and no one outside the mesh
 * can aim keys at one hash chain.
 *
 * INVARIANTS.
 * - Local counters: count >= 1, born unique among the keys counted since the epoch began.
 * - Every seen counter belongs to an origin's current epoch or an epoch that was replaced by one
 *   with a larger value (replacing an epoch drops its counters).
 * - A summary is validated whole before any of it is applied. */
#include "node/auth/loginshare.h"

#include "common/mp.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

/* ---- wire ----------------------------------------------------------------------------------- */

static int u32(mpr_t *r, uint32_t *out)
{
    uint64_t v;
    if (mpr_uint(r, &v) || v > UINT32_MAX)
        return -EBADMSG;
    *out = (uint32_t)v;
    return 0;
}

int loginshare_decode(const uint8_t *buf, size_t len, loginshare_msg_t *m)
{
    mpr_t r;
    uint32_t n, ne;
    uint64_t version;
    mpr_init(&r, buf, len);
    memset(m, 0, sizeof(*m));
    if (mpr_array(&r, &n) || n < LOGINSHARE_FIELDS || mpr_uint(&r, &version))
        return -EBADMSG;
    if (version != LOGINSHARE_VERSION)
        return -EPROTONOSUPPORT;
    if (mpr_uint(&r, &m->origin) || mpr_uint(&r, &m->epoch) || mpr_uint(&r, &m->seq) ||
        m->seq == 0 || mpr_array(&r, &ne) || ne > LOGINSHARE_ENTRIES_MAX)
        return -EBADMSG;
    for (uint32_t i = 0; i < ne; i++) {
        uint32_t nf;
        loginshare_entry_t *e = &m->e[i];
        if (mpr_array(&r, &nf) || nf < LOGINSHARE_ENTRY_FIELDS || u32(&r, &e->kind) ||
            mpr_uint(&r, &e->key) || u32(&r, &e->born) || u32(&r, &e->count) || e->count == 0)
            return -EBADMSG;
        for (uint32_t f = LOGINSHARE_ENTRY_FIELDS; f < nf; f++)
            if (mpr_skip(&r))
                return -EBADMSG;
        /* one key once: two counts for it would make "the growth" ambiguous */
        for (uint32_t j = 0; j < i; j++)
            if (m->e[j].kind == e->kind && m->e[j].key == e->key)
                return -EBADMSG;
    }
    m->n = ne;
    for (uint32_t f = LOGINSHARE_FIELDS; f < n; f++)
        if (mpr_skip(&r))
            return -EBADMSG;
    return r.err || r.left ? -EBADMSG : 0;
}

void loginshare_pack(msgpack_packer *pk, const loginshare_msg_t *m)
{
    msgpack_pack_array(pk, LOGINSHARE_FIELDS);
    msgpack_pack_uint32(pk, LOGINSHARE_VERSION);
    msgpack_pack_uint64(pk, m->origin);
    msgpack_pack_uint64(pk, m->epoch);
    msgpack_pack_uint64(pk, m->seq);
    msgpack_pack_array(pk, m->n);
    for (uint32_t i = 0; i < m->n; i++) {
        msgpack_pack_array(pk, LOGINSHARE_ENTRY_FIELDS);
        msgpack_pack_uint32(pk, m->e[i].kind);
        msgpack_pack_uint64(pk, m->e[i].key);
        msgpack_pack_uint32(pk, m->e[i].born);
        msgpack_pack_uint32(pk, m->e[i].count);
    }
}

/* ---- state ---------------------------------------------------------------------------------- */

struct local_key {
    uint64_t key;     /* hash */
    uint64_t last_ms; /* ms: the last attempt admitted here; 0 = slot free */
    uint32_t kind;    /* enum loginshare_kind */
    uint32_t born;    /* counter id */
    uint32_t count;   /* attempts since born */
};

struct seen {
    uint64_t origin, key;
    uint64_t grew_ms; /* ms (our clock): when count last grew */
    uint32_t kind, born, count;
    uint32_t next; /* hash chain, or free list; NONE ends */
    bool used;
};

struct origin {
    uint64_t id;
    uint64_t epoch;    /* ms, the origin's clock */
    uint64_t seq;      /* last summary seen */
    uint64_t heard_ms; /* ms (our clock): when that was */
};

struct loginshare {
    uint64_t self_id, epoch, seq;
    uint64_t dirty_ms; /* ms: when the first unsent attempt was noted; 0 = nothing unsent */
    uint64_t sent_ms;  /* ms: last summary packed */
    uint32_t next_born;
    struct local_key local[LOGINSHARE_LOCAL_MAX];
    struct seen *seen;   /* LOGINSHARE_SEEN_MAX */
    uint32_t *heads;     /* SEEN_HEADS chain heads */
    uint32_t free, hand; /* free list head; clock hand for eviction */
    struct origin origins[LOGINSHARE_ORIGINS_MAX];
    size_t norigins;
    loginshare_msg_t msg; /* scratch for one summary (1.5 KiB), decoded or packed */
    loginshare_stats_t st;
};

#define SEEN_HEADS 16384 /* power of two, twice SEEN_MAX */
_Static_assert((SEEN_HEADS & (SEEN_HEADS - 1)) == 0 && SEEN_HEADS >= LOGINSHARE_SEEN_MAX,
               "SEEN_HEADS: a power of two, at least SEEN_MAX");
_Static_assert(LOGINSHARE_FORGET_MS > LOGINSHARE_KEEP_MS,
               "a receiver must remember a counter longer than its origin keeps counting it");

loginshare_t *loginshare_new(uint64_t self_id, uint64_t epoch_ms)
{
    loginshare_t *ls = xcalloc(1, sizeof(*ls));
    ls->self_id = self_id;
    ls->epoch = epoch_ms;
    ls->next_born = 1;
    ls->seen = xcalloc(LOGINSHARE_SEEN_MAX, sizeof(*ls->seen));
    ls->heads = xmalloc(SEEN_HEADS * sizeof(*ls->heads));
    for (uint32_t i = 0; i < SEEN_HEADS; i++)
        ls->heads[i] = NONE;
    for (uint32_t i = 0; i < LOGINSHARE_SEEN_MAX; i++)
        ls->seen[i].next = i + 1 < LOGINSHARE_SEEN_MAX ? i + 1 : NONE;
    ls->free = 0;
    return ls;
}

void loginshare_destroy(loginshare_t **lsp)
{
    if (!lsp || !*lsp)
        return;
    free((*lsp)->seen);
    free((*lsp)->heads);
    free(*lsp);
    *lsp = NULL;
}

loginshare_stats_t loginshare_stats(const loginshare_t *ls)
{
    return ls->st;
}

/* ---- this PoP's attempts -------------------------------------------------------------------- */

uint64_t loginshare_note(loginshare_t *ls, enum loginshare_kind kind, uint64_t key, uint64_t now_ms)
{
    if (now_ms == 0) /* 0 marks a free slot and "nothing unsent" */
        now_ms = 1;
    struct local_key *k = NULL, *oldest = &ls->local[0];
    for (size_t i = 0; i < LOGINSHARE_LOCAL_MAX; i++) {
        struct local_key *x = &ls->local[i];
        if (x->last_ms && x->kind == (uint32_t)kind && x->key == key) {
            k = x;
            break;
        }
        if (x->last_ms < oldest->last_ms)
            oldest = x;
    }
    /* idle past KEEP_MS: a receiver may have forgotten the counter, so start a new one */
    if (k && now_ms >= k->last_ms && now_ms - k->last_ms >= LOGINSHARE_KEEP_MS)
        k->last_ms = 0;
    if (!k || !k->last_ms) {
        k = k ? k : oldest; /* a free slot (last_ms 0) is the oldest */
        *k = (struct local_key){.key = key, .kind = kind, .born = ls->next_born++};
        if (ls->next_born == 0)
            ls->next_born = 1;
    }
    if (k->count < UINT32_MAX)
        k->count++;
    k->last_ms = now_ms;
    if (!ls->dirty_ms)
        ls->dirty_ms = now_ms;
    return ls->dirty_ms + LOGINSHARE_FLUSH_MS;
}

static int cmp_entry_rank(const void *a, const void *b)
{
    const struct local_key *x = *(struct local_key *const *)a, *y = *(struct local_key *const *)b;
    if (x->kind != y->kind) /* users first: they are what a spread-out guesser aims at */
        return x->kind == LOGINSHARE_USER ? -1 : 1;
    return x->last_ms > y->last_ms ? -1 : x->last_ms < y->last_ms ? 1 : 0;
}

/* ---- peers' counters ------------------------------------------------------------------------ */

static uint32_t seen_slot(uint64_t origin, uint32_t kind, uint64_t key)
{
    uint64_t x = origin * 0x9e3779b97f4a7c15ull ^ key ^ ((uint64_t)kind << 61);
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    return (uint32_t)(x & (SEEN_HEADS - 1));
}

static struct seen *seen_find(loginshare_t *ls, uint64_t origin, uint32_t kind, uint64_t key)
{
    for (uint32_t i = ls->heads[seen_slot(origin, kind, key)]; i != NONE; i = ls->seen[i].next) {
        struct seen *s = &ls->seen[i];
        if (s->origin == origin && s->kind == kind && s->key == key)
            return s;
    }
    return NULL;
}

static void seen_remove(loginshare_t *ls, uint32_t i)
{
    struct seen *s = &ls->seen[i];
    uint32_t *p = &ls->heads[seen_slot(s->origin, s->kind, s->key)];
    while (*p != NONE && *p != i)
        p = &ls->seen[*p].next;
    if (*p == i)
        *p = s->next;
    s->used = false;
    s->next = ls->free;
    ls->free = i;
}

static struct seen *seen_add(loginshare_t *ls, uint64_t origin, uint32_t kind, uint64_t key)
{
    if (ls->free == NONE) {
        /* full: the clock hand picks one to forget (all slots are in use) */
        uint32_t victim = ls->hand;
        ls->hand = (ls->hand + 1) % LOGINSHARE_SEEN_MAX;
        seen_remove(ls, victim);
        ls->st.evicted++;
    }
    uint32_t i = ls->free;
    struct seen *s = &ls->seen[i];
    ls->free = s->next;
    uint32_t h = seen_slot(origin, kind, key);
    *s = (struct seen){
        .origin = origin, .key = key, .kind = kind, .used = true, .next = ls->heads[h]};
    ls->heads[h] = i;
    return s;
}

static void forget_origin_counters(loginshare_t *ls, uint64_t origin)
{
    for (uint32_t i = 0; i < LOGINSHARE_SEEN_MAX; i++)
        if (ls->seen[i].used && ls->seen[i].origin == origin)
            seen_remove(ls, i);
}

/* The origin's slot, made if new (forgetting the least recently heard one when full). */
static struct origin *origin_slot(loginshare_t *ls, uint64_t id)
{
    struct origin *o = NULL;
    for (size_t i = 0; i < ls->norigins; i++)
        if (ls->origins[i].id == id)
            return &ls->origins[i];
    if (ls->norigins < LOGINSHARE_ORIGINS_MAX) {
        o = &ls->origins[ls->norigins++];
    } else {
        o = &ls->origins[0];
        for (size_t i = 1; i < ls->norigins; i++)
            if (ls->origins[i].heard_ms < o->heard_ms)
                o = &ls->origins[i];
    }
    *o = (struct origin){.id = id};
    return o;
}

int loginshare_receive(loginshare_t *ls, const uint8_t *buf, size_t len, uint64_t now_ms,
                       loginshare_charge_fn charge, void *ctx)
{
    loginshare_msg_t *m = &ls->msg;
    int rc = loginshare_decode(buf, len, m);
    if (rc) {
        ls->st.malformed++;
        return rc;
    }
    if (m->origin == ls->self_id) {
        ls->st.stale++;
        return 0;
    }
    struct origin *o = origin_slot(ls, m->origin);
    bool fresh = o->seq == 0;
    if (!fresh && m->epoch != o->epoch) {
        /* A larger epoch is a restart. A smaller one is an older life's summary still
         * travelling, unless we have not heard from the origin for long: then its clock went
         * back across a restart, and refusing it for good would stop counting its attempts. */
        if (m->epoch < o->epoch && now_ms - o->heard_ms < LOGINSHARE_FORGET_MS) {
            ls->st.stale++;
            return 0;
        }
        forget_origin_counters(ls, m->origin);
        fresh = true;
    }
    if (!fresh && m->seq <= o->seq) {
        ls->st.stale++;
        return 0;
    }
    o->epoch = m->epoch;
    o->seq = m->seq;
    o->heard_ms = now_ms;
    ls->st.received++;
    for (uint32_t i = 0; i < m->n; i++) {
        const loginshare_entry_t *e = &m->e[i];
        if (e->kind >= LOGINSHARE_KINDS)
            continue; /* a newer node's kind of key */
        struct seen *s = seen_find(ls, m->origin, e->kind, e->key);
        uint64_t grew;
        if (!s) {
            s = seen_add(ls, m->origin, e->kind, e->key);
            grew = e->count;
        } else if (s->born != e->born) {
            grew = e->count; /* the origin started a new counter for the key */
        } else if (e->count > s->count) {
            grew = e->count - s->count;
        } else {
            continue;
        }
        s->born = e->born;
        s->count = e->count;
        s->grew_ms = now_ms;
        ls->st.charged += grew;
        if (charge)
            charge(ctx, (enum loginshare_kind)e->kind, e->key, grew);
    }
    return 1;
}

/* ---- time ----------------------------------------------------------------------------------- */

int loginshare_tick(loginshare_t *ls, uint64_t now_ms, msgpack_packer *pk, uint64_t *next_ms)
{
    struct local_key *recent[LOGINSHARE_LOCAL_MAX];
    size_t nrecent = 0;
    bool counting = false;
    for (size_t i = 0; i < LOGINSHARE_LOCAL_MAX; i++) {
        struct local_key *k = &ls->local[i];
        if (!k->last_ms)
            continue;
        if (now_ms >= k->last_ms && now_ms - k->last_ms >= LOGINSHARE_KEEP_MS) {
            k->last_ms = 0;
            continue;
        }
        counting = true;
        if (now_ms < k->last_ms || now_ms - k->last_ms < LOGINSHARE_RESEND_MS)
            recent[nrecent++] = k;
    }
    bool seen_any = false;
    for (uint32_t i = 0; i < LOGINSHARE_SEEN_MAX; i++) {
        struct seen *s = &ls->seen[i];
        if (!s->used)
            continue;
        if (now_ms >= s->grew_ms && now_ms - s->grew_ms >= LOGINSHARE_FORGET_MS)
            seen_remove(ls, i);
        else
            seen_any = true;
    }

    int packed = 0;
    bool due = ls->dirty_ms ? now_ms >= ls->dirty_ms + LOGINSHARE_FLUSH_MS
                            : nrecent && now_ms >= ls->sent_ms + LOGINSHARE_PERIOD_MS;
    if (due && nrecent && pk) {
        loginshare_msg_t *m = &ls->msg;
        qsort(recent, nrecent, sizeof(recent[0]), cmp_entry_rank);
        m->origin = ls->self_id;
        m->epoch = ls->epoch;
        m->seq = ++ls->seq;
        m->n = nrecent < LOGINSHARE_ENTRIES_MAX ? (uint32_t)nrecent : LOGINSHARE_ENTRIES_MAX;
        for (uint32_t i = 0; i < m->n; i++)
            m->e[i] = (loginshare_entry_t){.kind = recent[i]->kind,
                                           .key = recent[i]->key,
                                           .born = recent[i]->born,
                                           .count = recent[i]->count};
        loginshare_pack(pk, m);
        ls->sent_ms = now_ms;
        ls->dirty_ms = 0;
        ls->st.sent++;
        packed = 1;
    } else if (due && !nrecent) {
        ls->dirty_ms = 0;
    }

    /* next: the flush of what is unsent, the repeat while a key is recent, or the forgetting */
    uint64_t next = UINT64_MAX;
    if (ls->dirty_ms)
        next = ls->dirty_ms + LOGINSHARE_FLUSH_MS;
    else if (nrecent)
        next = ls->sent_ms + LOGINSHARE_PERIOD_MS;
    if (next == UINT64_MAX && (counting || seen_any))
        next = now_ms + LOGINSHARE_RESEND_MS; /* forget idle counters in good time */
    if (next <= now_ms)
        next = now_ms + 1;
    *next_ms = next;
    return packed;
}
