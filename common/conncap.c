#include "common/conncap.h"

#include <netinet/in.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "common/xmalloc.h"

/* Live connections of one client address. */
struct conncap_slot {
    struct conncap_slot *next; /* same bucket */
    uint8_t key[9];            /* family byte, then 4 (IPv4) or 8 (IPv6 /64) address bytes */
    uint32_t n;                /* connections open now; the entry is freed at 0 */
};

struct conncap {
    uint32_t max_total, max_per_addr;
    uint32_t open;
    struct conncap_slot **bucket; /* a power of two, doubled with the number of addresses */
    size_t size, used;
    uint8_t key[crypto_shorthash_KEYBYTES];
    uint64_t admitted, refused_total, refused_per_addr;
};

conncap_t *conncap_new(uint32_t max_total, uint32_t max_per_addr)
{
    conncap_t *c = xcalloc(1, sizeof(*c));
    c->max_total = max_total ? max_total : 1;
    c->max_per_addr = max_per_addr ? max_per_addr : 1;
    c->size = 64;
    c->bucket = xcalloc(c->size, sizeof(*c->bucket));
    randombytes_buf(c->key, sizeof(c->key));
    return c;
}

void conncap_destroy(conncap_t **cp)
{
    if (!cp || !*cp)
        return;
    conncap_t *c = *cp;
    for (size_t i = 0; i < c->size; i++)
        while (c->bucket[i]) {
            struct conncap_slot *e = c->bucket[i];
            c->bucket[i] = e->next;
            free(e);
        }
    free(c->bucket);
    free(c);
    *cp = NULL;
}

/* IPv4 whole, IPv6 by its /64 (one host, or one customer, usually holds a whole /64 and may
 * use any address in it), IPv4-mapped IPv6 as IPv4. */
static void key_of(const struct sockaddr *sa, uint8_t key[9])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(key, 0, 9);
    if (sa && sa->sa_family == AF_INET) {
        key[0] = 4;
        memcpy(key + 1, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa && sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        if (!memcmp(a, mapped, sizeof(mapped))) {
            key[0] = 4;
            memcpy(key + 1, a + 12, 4);
        } else {
            key[0] = 6;
            memcpy(key + 1, a, 8);
        }
    }
}

static size_t bucket_of(const conncap_t *c, const uint8_t key[9])
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, key, 9, c->key);
    uint64_t v;
    memcpy(&v, h, sizeof(v));
    return (size_t)(v & (c->size - 1));
}

static void grow(conncap_t *c)
{
    struct conncap_slot **old = c->bucket;
    size_t oldn = c->size;
    c->size *= 2;
    c->bucket = xcalloc(c->size, sizeof(*c->bucket));
    for (size_t i = 0; i < oldn; i++)
        while (old[i]) {
            struct conncap_slot *e = old[i];
            old[i] = e->next;
            size_t b = bucket_of(c, e->key);
            e->next = c->bucket[b];
            c->bucket[b] = e;
        }
    free(old);
}

conncap_slot_t *conncap_admit(conncap_t *c, const struct sockaddr *sa, const char **why)
{
    if (c->open >= c->max_total) {
        c->refused_total++;
        if (why)
            *why = "the overall connection cap";
        return NULL;
    }
    uint8_t key[9];
    key_of(sa, key);
    size_t b = bucket_of(c, key);
    struct conncap_slot *e;
    for (e = c->bucket[b]; e; e = e->next)
        if (!memcmp(e->key, key, sizeof(e->key)))
            break;
    if (e && e->n >= c->max_per_addr) {
        c->refused_per_addr++;
        if (why)
            *why = "this address's connection cap";
        return NULL;
    }
    if (!e) {
        if (c->used >= c->size) {
            grow(c);
            b = bucket_of(c, key);
        }
        e = xcalloc(1, sizeof(*e));
        memcpy(e->key, key, sizeof(e->key));
        e->next = c->bucket[b];
        c->bucket[b] = e;
        c->used++;
    }
    e->n++;
    c->open++;
    c->admitted++;
    return e;
}

void conncap_release(conncap_t *c, conncap_slot_t *e)
{
    if (!c || !e)
        return;
    c->open--;
    if (--e->n)
        return;
    for (struct conncap_slot **pp = &c->bucket[bucket_of(c, e->key)]; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            free(e);
            c->used--;
            return;
        }
}

void conncap_stats(const conncap_t *c, conncap_stats_t *st)
{
    *st = (conncap_stats_t){
        .admitted = c->admitted,
        .refused_total = c->refused_total,
        .refused_per_addr = c->refused_per_addr,
        .open = c->open,
        .addresses = (uint32_t)c->used,
    };
}

uint32_t conncap_max_total(const conncap_t *c)
{
    return c->max_total;
}

uint32_t conncap_max_per_addr(const conncap_t *c)
{
    return c->max_per_addr;
}

uint32_t conncap_half_nofile(uint32_t floor)
{
    struct rlimit rl;
    uint64_t half = 0;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        half = (uint64_t)rl.rlim_cur / 2;
    else
        half = UINT32_MAX;
    if (half > UINT32_MAX)
        half = UINT32_MAX;
    return half < floor ? floor : (uint32_t)half;
}
