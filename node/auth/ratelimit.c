/* ratelimit: login attempts per client address and per user name (see ratelimit.h).
 *
 * Threat model: an attacker guessing passwords, from one address or many, against one user or
 * many, and trying to make the limiter itself expensive or useless (many keys, colliding keys).
 * Each PoP decides alone, but attempts admitted at other PoPs are charged here too
 * (auth_ratelimit_charge, from node/auth/loginshare.h), so an attacker spreading over N PoPs
 * does not get N times the rate (the bound: docs/security.md, "Rate limits").
 *
 * A fixed table of entries, found through a hash of the key (keyed SipHash with a random key,
 * so a client cannot aim keys at one bucket), linked in LRU order. A full table evicts the
 * least recently used key: a flood of fresh keys can thus give an old key a fresh bucket, which
 * is why the per-user bucket and the per-address bucket are both checked. A bucket's level is
 * counted in ms of refill (one attempt = refill_ms), so refill is exact in integers however
 * often it is asked. Attempts charged from elsewhere may take it below zero: a debt that refill
 * pays back before the key is allowed again, which is what keeps the long-run rate mesh-wide
 * at one per refill_ms. The debt is floored (AUTH_RL_DEBT_BURSTS) so that no report, however
 * large, locks a key out for longer than that. */
#include "node/auth/ratelimit.h"

#include "common/xmalloc.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define RL_NONE UINT32_MAX

struct rl_entry {
    uint64_t h;           /* SipHash of the key: the key's identity */
    uint64_t last_ms;     /* ms: when level was last brought up to date */
    int64_t level;        /* ms of refill held, floor..full; one attempt costs refill_ms;
                           * below 0 is debt: attempts charged by other PoPs */
    uint32_t next;        /* hash chain */
    uint32_t prev, newer; /* LRU list: prev is older, newer is more recent */
};

struct auth_ratelimit {
    unsigned burst;                         /* attempts a full bucket holds */
    uint64_t refill_ms;                     /* ms to regain one attempt */
    int64_t full, floor;                    /* ms: a full bucket; the deepest debt (< 0) */
    size_t cap, used;                       /* entries allocated, entries in use */
    uint32_t nbuckets;                      /* hash heads: a power of two >= cap */
    uint32_t *buckets;                      /* head entry of each chain, or RL_NONE */
    struct rl_entry *e;                     /* cap entries */
    uint32_t oldest, newest;                /* ends of the LRU list, or RL_NONE */
    uint8_t key[crypto_shorthash_KEYBYTES]; /* random SipHash key, per table */
};

auth_ratelimit_t *auth_ratelimit_new(unsigned burst, uint64_t refill_ms, size_t entries)
{
    if (burst == 0 || refill_ms == 0 || entries == 0 || entries >= RL_NONE / 2 ||
        refill_ms > (uint64_t)INT64_MAX / 4 / (AUTH_RL_DEBT_BURSTS + 1) / burst) {
        errno = EINVAL;
        return NULL;
    }
    auth_ratelimit_t *rl = xcalloc(1, sizeof(*rl));
    rl->burst = burst;
    rl->refill_ms = refill_ms;
    rl->full = (int64_t)(burst * refill_ms);
    rl->floor = -(int64_t)AUTH_RL_DEBT_BURSTS * rl->full;
    rl->cap = entries;
    rl->nbuckets = 1;
    while (rl->nbuckets < entries)
        rl->nbuckets <<= 1;
    rl->buckets = xmalloc(rl->nbuckets * sizeof(*rl->buckets));
    for (uint32_t i = 0; i < rl->nbuckets; i++)
        rl->buckets[i] = RL_NONE;
    rl->e = xcalloc(entries, sizeof(*rl->e));
    rl->oldest = rl->newest = RL_NONE;
    randombytes_buf(rl->key, sizeof(rl->key));
    return rl;
}

void auth_ratelimit_destroy(auth_ratelimit_t **rlp)
{
    if (!rlp || !*rlp)
        return;
    free((*rlp)->buckets);
    free((*rlp)->e);
    free(*rlp);
    *rlp = NULL;
}

size_t auth_ratelimit_size(const auth_ratelimit_t *rl)
{
    return rl->used;
}

static void lru_unlink(auth_ratelimit_t *rl, uint32_t i)
{
    struct rl_entry *x = &rl->e[i];
    if (x->prev != RL_NONE)
        rl->e[x->prev].newer = x->newer;
    else
        rl->oldest = x->newer;
    if (x->newer != RL_NONE)
        rl->e[x->newer].prev = x->prev;
    else
        rl->newest = x->prev;
}

static void lru_push(auth_ratelimit_t *rl, uint32_t i)
{
    struct rl_entry *x = &rl->e[i];
    x->prev = rl->newest;
    x->newer = RL_NONE;
    if (rl->newest != RL_NONE)
        rl->e[rl->newest].newer = i;
    rl->newest = i;
    if (rl->oldest == RL_NONE)
        rl->oldest = i;
}

static void chain_remove(auth_ratelimit_t *rl, uint32_t i)
{
    uint32_t *p = &rl->buckets[rl->e[i].h & (rl->nbuckets - 1)];
    while (*p != RL_NONE && *p != i)
        p = &rl->e[*p].next;
    if (*p == i)
        *p = rl->e[i].next;
}

void auth_ratelimit_set_hash_key(auth_ratelimit_t *rl, const uint8_t key[AUTH_RL_HASH_KEY_BYTES])
{
    memcpy(rl->key, key, sizeof(rl->key));
    for (uint32_t i = 0; i < rl->nbuckets; i++)
        rl->buckets[i] = RL_NONE;
    rl->used = 0;
    rl->oldest = rl->newest = RL_NONE;
}

uint64_t auth_ratelimit_hash(const auth_ratelimit_t *rl, const char *key)
{
    uint64_t h;
    crypto_shorthash((uint8_t *)&h, (const uint8_t *)key, strlen(key), rl->key);
    return h;
}

static uint32_t find(const auth_ratelimit_t *rl, uint64_t h)
{
    uint32_t i = rl->buckets[h & (rl->nbuckets - 1)];
    while (i != RL_NONE && rl->e[i].h != h)
        i = rl->e[i].next;
    return i;
}

/* Level of x at now_ms, refilled (not stored). */
static int64_t level_at(const auth_ratelimit_t *rl, const struct rl_entry *x, uint64_t now_ms)
{
    if (now_ms <= x->last_ms)
        return x->level;
    uint64_t dt = now_ms - x->last_ms;
    /* full - level <= full * (1 + AUTH_RL_DEBT_BURSTS), which auth_ratelimit_new bounded */
    return dt >= (uint64_t)(rl->full - x->level) ? rl->full : x->level + (int64_t)dt;
}

/* h's entry, made most recently used and brought up to date at now_ms; a fresh one (full) if
 * h was not remembered. */
static struct rl_entry *touch(auth_ratelimit_t *rl, uint64_t h, uint64_t now_ms)
{
    uint32_t i = find(rl, h);
    if (i == RL_NONE) {
        uint32_t b = (uint32_t)(h & (rl->nbuckets - 1));
        if (rl->used < rl->cap) {
            i = (uint32_t)rl->used++;
        } else {
            i = rl->oldest;
            lru_unlink(rl, i);
            chain_remove(rl, i);
        }
        rl->e[i] = (struct rl_entry){.h = h, .last_ms = now_ms, .level = rl->full};
        rl->e[i].next = rl->buckets[b];
        rl->buckets[b] = i;
    } else {
        lru_unlink(rl, i);
    }
    lru_push(rl, i);
    struct rl_entry *x = &rl->e[i];
    x->level = level_at(rl, x, now_ms);
    if (now_ms > x->last_ms)
        x->last_ms = now_ms;
    return x;
}

bool auth_ratelimit_take(auth_ratelimit_t *rl, uint64_t h, uint64_t now_ms)
{
    struct rl_entry *x = touch(rl, h, now_ms);
    if (x->level < (int64_t)rl->refill_ms)
        return false;
    x->level -= (int64_t)rl->refill_ms;
    return true;
}

bool auth_ratelimit_allow(auth_ratelimit_t *rl, const char *key, uint64_t now_ms)
{
    return auth_ratelimit_take(rl, auth_ratelimit_hash(rl, key), now_ms);
}

void auth_ratelimit_charge(auth_ratelimit_t *rl, uint64_t h, uint64_t n, uint64_t now_ms)
{
    struct rl_entry *x = touch(rl, h, now_ms);
    /* n is a peer's word: bound it before multiplying */
    uint64_t room = (uint64_t)(x->level - rl->floor);
    uint64_t cost = n > room / rl->refill_ms ? room : n * rl->refill_ms;
    x->level -= (int64_t)cost;
}

int64_t auth_ratelimit_level(auth_ratelimit_t *rl, uint64_t h, uint64_t now_ms)
{
    uint32_t i = find(rl, h);
    int64_t level = i == RL_NONE ? rl->full : level_at(rl, &rl->e[i], now_ms);
    /* whole attempts, rounded toward minus infinity: -1 means some debt */
    int64_t r = (int64_t)rl->refill_ms;
    return level >= 0 ? level / r : -((-level + r - 1) / r);
}
