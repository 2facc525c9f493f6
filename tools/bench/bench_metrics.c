/* /metrics with many resources: the time to render the per-resource HTTP series (requests,
 * responses by class, body bytes, latency histogram: 22 lines each) and their size, against
 * the same number of lines written with snprintf (the obvious way). */
#include "node/admin/adminmetrics.h"
#include "node/admin/promtext.h"
#include "node/http/httpstats.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    int runs = 20;
    httpstats_t *hs = httpstats_new(n);
    for (size_t i = 0; i < n; i++) {
        char name[64];
        snprintf(name, sizeof(name), "resource-%06zu", i);
        httpstats_res_t *r = httpstats_get(hs, name);
        r->requests = 123456789 + i;
        for (int k = 0; k < 1000; k++)
            httpstats_response(r, 100 + 100 * (k % 5), (double)(k % 97) / 7.0);
        r->bytes_in = 987654321;
        r->bytes_out = 1234567890123ull;
    }
    adminmetrics_src_t src = {.http = hs};
    double best = 1e9;
    size_t size = 0;
    for (int i = 0; i < runs; i++) {
        promtext_t p;
        prom_init(&p);
        double t0 = now();
        adminmetrics_render(&src, &p);
        double t = now() - t0;
        best = t < best ? t : best;
        size = p.len;
        prom_free(&p);
    }
    /* the peer: the same lines with snprintf into one buffer */
    size_t cap = size * 2, len = 0;
    char *buf = malloc(cap);
    double best_sp = 1e9;
    for (int i = 0; i < runs; i++) {
        double t0 = now();
        len = 0;
        for (size_t k = 0; k < httpstats_count(hs); k++) {
            const httpstats_res_t *r = httpstats_at(hs, k);
            for (int l = 0; l < 22 && len + 256 < cap; l++)
                len += (size_t)snprintf(buf + len, cap - len,
                                        "popmesh_http_x_total{resource=\"%s\",le=\"%g\"} %llu\n",
                                        r->name, 0.25 * l, (unsigned long long)r->requests);
        }
        double t = now() - t0;
        best_sp = t < best_sp ? t : best_sp;
    }
    printf("bench_metrics: %zu resources: render %.1f ms (best of %d), %zu bytes (%.1f MB), "
           "%.0f bytes/resource; snprintf peer %.1f ms (%.2fx)\n",
           n, best * 1e3, runs, size, (double)size / 1e6, (double)size / (double)n, best_sp * 1e3,
           best / best_sp);
    free(buf);
    httpstats_destroy(&hs);
    return 0;
}
