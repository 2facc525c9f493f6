/* promtext (the Prometheus text writer), httpstats (per-resource counters) and adminmetrics
 * (status fields to metrics): escaping, histogram shape, the table's bounds, and the mapping
 * of a status answer. */
#include "node/admin/adminmetrics.h"
#include "node/admin/promtext.h"
#include "node/http/httpstats.h"

#include <msgpack.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static char *text(promtext_t *p)
{
    char *s = malloc(p->len + 1);
    memcpy(s, p->buf, p->len);
    s[p->len] = '\0';
    return s;
}

static void test_escape(void **state)
{
    (void)state;
    char out[64];
    prom_escape_label("a\"b\\c\nd", out, sizeof(out));
    assert_string_equal(out, "a\\\"b\\\\c\\nd");
    promtext_t p;
    prom_init(&p);
    prom_family(&p, "x_total", "counter", "help with \\ and\nnewline");
    prom_label_t l = {"resource", "we\"ird"};
    prom_u64(&p, "x_total", &l, 1, 18446744073709551615ull);
    prom_double(&p, "y", NULL, 0, 0.25);
    char *s = text(&p);
    assert_string_equal(s, "# HELP x_total help with \\\\ and\\nnewline\n# TYPE x_total counter\n"
                           "x_total{resource=\"we\\\"ird\"} 18446744073709551615\ny 0.25\n");
    free(s);
    prom_free(&p);
}

static void test_histogram(void **state)
{
    (void)state;
    static const char *const le[2] = {"0.1", "1"};
    uint64_t counts[3] = {2, 3, 1};
    promtext_t p;
    prom_init(&p);
    prom_label_t l = {"resource", "a"};
    prom_histogram(&p, "h", &l, 1, le, 2, counts, 4.5);
    char *s = text(&p);
    assert_string_equal(s, "h_bucket{resource=\"a\",le=\"0.1\"} 2\nh_bucket{resource=\"a\",le=\"1\"} 5\n"
                           "h_bucket{resource=\"a\",le=\"+Inf\"} 6\nh_sum{resource=\"a\"} 4.5\n"
                           "h_count{resource=\"a\"} 6\n");
    free(s);
    prom_free(&p);
}

static void test_httpstats(void **state)
{
    (void)state;
    httpstats_t *s = httpstats_new(1000);
    httpstats_res_t *a = httpstats_get(s, "a");
    assert_non_null(a);
    /* entries never move while the table grows */
    char name[16];
    for (int i = 0; i < 999; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        assert_non_null(httpstats_get(s, name));
    }
    assert_ptr_equal(httpstats_get(s, "a"), a);
    assert_null(httpstats_get(s, "one-too-many"));
    assert_int_equal(httpstats_overflow(s), 1);
    assert_int_equal(httpstats_count(s), 1000);
    char longname[80];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[79] = '\0';
    assert_null(httpstats_get(s, longname));
    httpstats_response(a, 204, 0.003);
    httpstats_response(a, 503, 30.0);
    httpstats_response(a, 99, 0.5); /* no class; still a latency */
    assert_int_equal(a->responses[1], 1);
    assert_int_equal(a->responses[4], 1);
    assert_int_equal(a->latency[0], 1);
    assert_int_equal(a->latency[HTTPSTATS_BUCKETS], 1);
    assert_int_equal(a->latency[6], 1); /* 0.5 s: the 0.5 bucket (le is inclusive) */
    httpstats_destroy(&s);
    assert_null(s);
    httpstats_destroy(&s);
}

/* A status answer maps to its metrics; absent fields give no sample and no family. */
static void test_render_status(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "name", 4);
    msgpack_pack_str_with_body(&pk, "p\"1", 3);
    msgpack_pack_str_with_body(&pk, "members", 7);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "dead", 4);
    msgpack_pack_uint32(&pk, 2);
    msgpack_pack_str_with_body(&pk, "clock", 5);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "offset_ms", 9);
    msgpack_pack_int64(&pk, -1500);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    assert_int_equal(msgpack_unpack_next(&up, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    adminmetrics_src_t src = {.status = &up.data};
    promtext_t p;
    prom_init(&p);
    adminmetrics_render(&src, &p);
    char *s = text(&p);
    assert_non_null(strstr(s, "popmesh_node_info{node=\"p\\\"1\",region=\"\",version=\"\"} 1\n"));
    assert_non_null(strstr(s, "# TYPE popmesh_members gauge\npopmesh_members{state=\"dead\"} 2\n"));
    assert_non_null(strstr(s, "popmesh_clock_offset_seconds -1.5\n"));
    assert_null(strstr(s, "popmesh_store_entries"));
    assert_null(strstr(s, "popmesh_dns"));
    free(s);
    prom_free(&p);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_httpstats),
        cmocka_unit_test(test_render_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
