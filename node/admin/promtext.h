/* promtext: writes the Prometheus text exposition format, version 0.0.4.
 *
 *   # HELP popmesh_x_total What it counts.
 *   # TYPE popmesh_x_total counter
 *   popmesh_x_total{resource="a \"b\""} 12
 *
 * A family is announced once (prom_family) and its samples follow it, all together: the
 * format requires a family's lines to be contiguous. Label values are escaped here (\\, \",
 * \n), HELP text too (\\, \n); names are the caller's constants and are not checked.
 * The buffer grows as needed (xrealloc): /metrics with 10,000 resources is a few MB. Loop-free
 * and allocation-light: numbers are formatted by hand, not by printf, which dominates otherwise. */
#ifndef POPMESH_NODE_ADMIN_PROMTEXT_H
#define POPMESH_NODE_ADMIN_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

#define PROMTEXT_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct promtext {
    char *buf;  /* the text so far (not NUL-terminated); caller frees with prom_free */
    size_t len; /* bytes */
    size_t cap; /* bytes allocated */
} promtext_t;

/* A label: name (a constant) and value (any bytes of a NUL-terminated string; escaped). */
typedef struct prom_label {
    const char *name;
    const char *value;
} prom_label_t;

void prom_init(promtext_t *p);
void prom_free(promtext_t *p);

/* "# HELP name help\n# TYPE name type\n": type is counter, gauge or histogram. */
void prom_family(promtext_t *p, const char *name, const char *type, const char *help);
/* "name{labels} value\n"; nlabels may be 0. */
void prom_u64(promtext_t *p, const char *name, const prom_label_t *labels, size_t nlabels,
              uint64_t v);
void prom_double(promtext_t *p, const char *name, const prom_label_t *labels, size_t nlabels,
                 double v);
/* A histogram's samples (after its prom_family): name_bucket{labels,le="b"} for each bound
 * and +Inf (cumulative), name_sum, name_count. le holds the nbounds bounds as text ("0.005"),
 * ascending (given as text: formatting them for every series would cost more than the rest);
 * counts holds nbounds + 1 per-bucket counts (not cumulative; the last is above every bound);
 * sum in the histogram's unit. */
void prom_histogram(promtext_t *p, const char *name, const prom_label_t *labels, size_t nlabels,
                    const char *const *le, size_t nbounds, const uint64_t *counts, double sum);

/* Escapes a label value into out (len bytes, NUL-terminated, cut if short); for tests. */
void prom_escape_label(const char *in, char *out, size_t len);

#endif
