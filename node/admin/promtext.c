#include "node/admin/promtext.h"

#include "common/xmalloc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void prom_init(promtext_t *p)
{
    memset(p, 0, sizeof(*p));
}

void prom_free(promtext_t *p)
{
    free(p->buf);
    memset(p, 0, sizeof(*p));
}

static void reserve(promtext_t *p, size_t n)
{
    if (p->cap - p->len >= n)
        return;
    size_t cap = p->cap ? p->cap : 16384;
    while (cap - p->len < n)
        cap *= 2;
    p->buf = xrealloc(p->buf, cap);
    p->cap = cap;
}

static void put(promtext_t *p, const char *s, size_t n)
{
    reserve(p, n);
    memcpy(p->buf + p->len, s, n);
    p->len += n;
}

static void puts_(promtext_t *p, const char *s)
{
    put(p, s, strlen(s));
}

static void put_u64(promtext_t *p, uint64_t v)
{
    char tmp[20];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(p, tmp + i, sizeof(tmp) - i);
}

static void put_double(promtext_t *p, double v)
{
    if (isnan(v)) {
        puts_(p, "NaN");
        return;
    }
    if (isinf(v)) {
        puts_(p, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v >= 0 && v < 1e15 && v == floor(v)) {
        put_u64(p, (uint64_t)v);
        return;
    }
    char tmp[40];
    int n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    put(p, tmp, (size_t)n);
}

/* Escapes \\, \" (label values only) and newline. */
static void put_escaped(promtext_t *p, const char *s, int quotes)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = *s == '\\'              ? "\\\\"
                          : *s == '\n'            ? "\\n"
                          : (*s == '"' && quotes) ? "\\\""
                                                  : NULL;
        if (!rep)
            continue;
        put(p, run, (size_t)(s - run));
        put(p, rep, 2);
        run = s + 1;
    }
    put(p, run, (size_t)(s - run));
}

void prom_escape_label(const char *in, char *out, size_t len)
{
    promtext_t p;
    prom_init(&p);
    put_escaped(&p, in, 1);
    if (len) {
        size_t n = p.len < len - 1 ? p.len : len - 1;
        if (n)
            memcpy(out, p.buf, n);
        out[n] = '\0';
    }
    prom_free(&p);
}

void prom_family(promtext_t *p, const char *name, const char *type, const char *help)
{
    puts_(p, "# HELP ");
    puts_(p, name);
    put(p, " ", 1);
    put_escaped(p, help, 0);
    puts_(p, "\n# TYPE ");
    puts_(p, name);
    put(p, " ", 1);
    puts_(p, type);
    put(p, "\n", 1);
}

/* name{a="x",b="y"[,extra="v"]} with a space after */
static void put_series(promtext_t *p, const char *name, const char *suffix,
                       const prom_label_t *labels, size_t nlabels, const char *extra_name,
                       const char *extra_value)
{
    puts_(p, name);
    if (suffix)
        puts_(p, suffix);
    if (nlabels || extra_name) {
        put(p, "{", 1);
        for (size_t i = 0; i < nlabels; i++) {
            if (i)
                put(p, ",", 1);
            puts_(p, labels[i].name);
            put(p, "=\"", 2);
            put_escaped(p, labels[i].value, 1);
            put(p, "\"", 1);
        }
        if (extra_name) {
            if (nlabels)
                put(p, ",", 1);
            puts_(p, extra_name);
            put(p, "=\"", 2);
            puts_(p, extra_value);
            put(p, "\"", 1);
        }
        put(p, "}", 1);
    }
    put(p, " ", 1);
}

void prom_u64(promtext_t *p, const char *name, const prom_label_t *labels, size_t nlabels,
              uint64_t v)
{
    put_series(p, name, NULL, labels, nlabels, NULL, NULL);
    put_u64(p, v);
    put(p, "\n", 1);
}

void prom_double(promtext_t *p, const char *name, const prom_label_t *labels, size_t nlabels,
                 double v)
{
    put_series(p, name, NULL, labels, nlabels, NULL, NULL);
    put_double(p, v);
    put(p, "\n", 1);
}

void prom_histogram(promtext_t *p, const char *name, const prom_label_t *labels, size_t nlabels,
                    const char *const *le, size_t nbounds, const uint64_t *counts, double sum)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= nbounds; i++) {
        cum += counts[i];
        put_series(p, name, "_bucket", labels, nlabels, "le", i < nbounds ? le[i] : "+Inf");
        put_u64(p, cum);
        put(p, "\n", 1);
    }
    put_series(p, name, "_sum", labels, nlabels, NULL, NULL);
    put_double(p, sum);
    put(p, "\n", 1);
    put_series(p, name, "_count", labels, nlabels, NULL, NULL);
    put_u64(p, cum);
    put(p, "\n", 1);
}
