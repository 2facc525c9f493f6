/* addrset: see addrset.h. A chained hash table keyed by a normalised (family, address, port);
 * lingering entries stay in their chain and also sit on a FIFO that addrset_expire walks. */
#include "node/site/addrset.h"

#include "common/xmalloc.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

struct key {
    uint8_t family; /* 4 or 6 */
    uint8_t addr[16];
    uint16_t port; /* host order */
};

struct addrset_entry {
    struct key k;            /* local end: the hash key */
    struct key r;            /* remote end */
    char *label;             /* owned */
    bool lingering;          /* released, waiting for until_ms */
    uint64_t until_ms;       /* ms (caller's clock): when a lingering entry goes */
    addrset_entry_t **pprev; /* the pointer that points at this entry in its chain */
    addrset_entry_t *next;   /* in the chain */
    addrset_entry_t *fifo;   /* lingering: the next one released */
};

struct addrset {
    addrset_entry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t n;        /* entries, live and lingering */
    addrset_entry_t *fifo_head, *fifo_tail;
};

static bool key_of(const struct sockaddr *sa, socklen_t len, struct key *k)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(k, 0, sizeof(*k));
    if (!sa)
        return false;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        k->family = 4;
        memcpy(k->addr, &s4->sin_addr, 4);
        k->port = ntohs(s4->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        const uint8_t *a = (const uint8_t *)&s6->sin6_addr;
        k->port = ntohs(s6->sin6_port);
        if (!memcmp(a, mapped, sizeof(mapped))) {
            k->family = 4;
            memcpy(k->addr, a + 12, 4);
        } else {
            k->family = 6;
            memcpy(k->addr, a, 16);
        }
        return true;
    }
    return false;
}

static bool key_eq(const struct key *a, const struct key *b)
{
    return a->family == b->family && a->port == b->port && !memcmp(a->addr, b->addr, 16);
}

/* FNV-1a: the keys are not chosen by an attacker who could aim at one bucket (they are our
 * own sockets' addresses), so a keyed hash buys nothing here. */
static size_t key_hash(const struct key *k)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const uint8_t *p = k->addr;
    for (int i = 0; i < 16; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    h = (h ^ k->family) * 0x100000001b3ull;
    h = (h ^ (k->port & 0xff)) * 0x100000001b3ull;
    h = (h ^ (k->port >> 8)) * 0x100000001b3ull;
    return (size_t)(h ^ (h >> 32));
}

static void link_in(addrset_t *s, addrset_entry_t *e)
{
    addrset_entry_t **b = &s->buckets[key_hash(&e->k) & (s->nbuckets - 1)];
    e->next = *b;
    if (*b)
        (*b)->pprev = &e->next;
    e->pprev = b;
    *b = e;
}

static void unlink_out(addrset_entry_t *e)
{
    *e->pprev = e->next;
    if (e->next)
        e->next->pprev = e->pprev;
}

addrset_t *addrset_new(void)
{
    addrset_t *s = xcalloc(1, sizeof(*s));
    s->nbuckets = 64;
    s->buckets = xcalloc(s->nbuckets, sizeof(*s->buckets));
    return s;
}

void addrset_destroy(addrset_t **sp)
{
    addrset_t *s = sp ? *sp : NULL;
    if (!s)
        return;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (addrset_entry_t *e = s->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e->label);
            free(e);
        }
    free(s->buckets);
    free(s);
    *sp = NULL;
}

static void grow(addrset_t *s)
{
    addrset_entry_t **old = s->buckets;
    size_t oldn = s->nbuckets;
    s->nbuckets *= 2;
    s->buckets = xcalloc(s->nbuckets, sizeof(*s->buckets));
    for (size_t i = 0; i < oldn; i++)
        for (addrset_entry_t *e = old[i], *next; e; e = next) {
            next = e->next;
            link_in(s, e);
        }
    free(old);
}

addrset_entry_t *addrset_add(addrset_t *s, const struct sockaddr *local, socklen_t llen,
                             const struct sockaddr *remote, socklen_t rlen, const char *label)
{
    struct key k, r;
    if (!key_of(local, llen, &k) || !key_of(remote, rlen, &r))
        return NULL;
    if (s->n >= s->nbuckets)
        grow(s);
    addrset_entry_t *e = xcalloc(1, sizeof(*e));
    e->k = k;
    e->r = r;
    e->label = xstrdup(label ? label : "");
    link_in(s, e);
    s->n++;
    return e;
}

static void entry_free(addrset_t *s, addrset_entry_t *e)
{
    unlink_out(e);
    s->n--;
    free(e->label);
    free(e);
}

void addrset_release(addrset_t *s, addrset_entry_t *e, uint64_t now_ms, uint32_t linger_ms)
{
    if (!e)
        return;
    if (!linger_ms) {
        entry_free(s, e);
        return;
    }
    e->lingering = true;
    e->until_ms = now_ms + linger_ms;
    e->fifo = NULL;
    if (s->fifo_tail)
        s->fifo_tail->fifo = e;
    else
        s->fifo_head = e;
    s->fifo_tail = e;
}

void addrset_expire(addrset_t *s, uint64_t now_ms)
{
    while (s->fifo_head && s->fifo_head->until_ms <= now_ms) {
        addrset_entry_t *e = s->fifo_head;
        s->fifo_head = e->fifo;
        if (!s->fifo_head)
            s->fifo_tail = NULL;
        entry_free(s, e);
    }
}

const char *addrset_find(const addrset_t *s, const struct sockaddr *local, socklen_t llen,
                         const struct sockaddr *remote, socklen_t rlen, bool *lingering)
{
    struct key k, r;
    if (lingering)
        *lingering = false;
    if (!key_of(local, llen, &k) || (remote && !key_of(remote, rlen, &r)))
        return NULL;
    const addrset_entry_t *found = NULL;
    for (const addrset_entry_t *e = s->buckets[key_hash(&k) & (s->nbuckets - 1)]; e; e = e->next) {
        if (!key_eq(&e->k, &k) || (remote ? !key_eq(&e->r, &r) : e->lingering))
            continue;
        found = e;
        if (!e->lingering)
            break;
    }
    if (found && lingering)
        *lingering = found->lingering;
    return found ? found->label : NULL;
}

size_t addrset_count(const addrset_t *s)
{
    return s->n;
}
