#include "node/http/httpstats.h"

#include "common/xmalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

const double httpstats_bounds[HTTPSTATS_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                    0.5,   1.0,  2.5,   5.0,  10.0};

/* Entries live in chunks that never move; an open-addressing index (slots hold entry number
 * + 1, 0 = empty) is rebuilt at twice the size when half full. Resource names come from the
 * replicated store, written by operators, not from clients: FNV-1a is enough. */
#define CHUNK 256

struct httpstats {
    httpstats_res_t **chunks;
    size_t nchunks;
    size_t n, max;
    uint32_t *slots;
    size_t nslots; /* a power of two */
    uint64_t overflow;
};

static uint64_t hash(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

httpstats_t *httpstats_new(size_t max)
{
    httpstats_t *s = xcalloc(1, sizeof(*s));
    s->max = max ? max : HTTPSTATS_DEFAULT_MAX;
    s->nslots = 64;
    s->slots = xcalloc(s->nslots, sizeof(*s->slots));
    return s;
}

void httpstats_destroy(httpstats_t **sp)
{
    if (!sp || !*sp)
        return;
    httpstats_t *s = *sp;
    for (size_t i = 0; i < s->nchunks; i++)
        free(s->chunks[i]);
    free(s->chunks);
    free(s->slots);
    free(s);
    *sp = NULL;
}

static httpstats_res_t *entry(const httpstats_t *s, size_t i)
{
    return &s->chunks[i / CHUNK][i % CHUNK];
}

static void insert_slot(uint32_t *slots, size_t nslots, uint64_t h, uint32_t v)
{
    size_t i = (size_t)h & (nslots - 1);
    while (slots[i])
        i = (i + 1) & (nslots - 1);
    slots[i] = v;
}

httpstats_res_t *httpstats_get(httpstats_t *s, const char *name)
{
    size_t len = strlen(name);
    if (len > HTTPSTATS_NAME_MAX)
        return NULL;
    uint64_t h = hash(name, len);
    for (size_t i = (size_t)h & (s->nslots - 1); s->slots[i]; i = (i + 1) & (s->nslots - 1)) {
        httpstats_res_t *r = entry(s, s->slots[i] - 1);
        if (!strcmp(r->name, name))
            return r;
    }
    if (s->n >= s->max) {
        s->overflow++;
        return NULL;
    }
    if (s->n % CHUNK == 0) {
        s->chunks = xrealloc(s->chunks, (s->nchunks + 1) * sizeof(*s->chunks));
        s->chunks[s->nchunks++] = xcalloc(CHUNK, sizeof(httpstats_res_t));
    }
    httpstats_res_t *r = entry(s, s->n);
    memcpy(r->name, name, len + 1);
    s->n++;
    if (s->n * 2 > s->nslots) { /* rebuild the index at twice the size */
        size_t ns = s->nslots * 2;
        uint32_t *slots = xcalloc(ns, sizeof(*slots));
        for (size_t i = 0; i < s->n; i++) {
            const httpstats_res_t *e = entry(s, i);
            insert_slot(slots, ns, hash(e->name, strlen(e->name)), (uint32_t)(i + 1));
        }
        free(s->slots);
        s->slots = slots;
        s->nslots = ns;
    } else {
        insert_slot(s->slots, s->nslots, h, (uint32_t)s->n);
    }
    return r;
}

size_t httpstats_count(const httpstats_t *s)
{
    return s ? s->n : 0;
}

const httpstats_res_t *httpstats_at(const httpstats_t *s, size_t i)
{
    return i < s->n ? entry(s, i) : NULL;
}

uint64_t httpstats_overflow(const httpstats_t *s)
{
    return s ? s->overflow : 0;
}
