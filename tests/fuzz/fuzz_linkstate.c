/* Fuzzes the link-state record decoder and what a decoded record reaches: arbitrary bytes go
 * to ls_record_decode; a record it accepts must validate, re-encode to bytes that decode to
 * the same record (decode . encode is the identity on accepted input), and is then offered to
 * a database holding a few neighbours through lsdb_receive, and routes are computed over it
 * from two PoPs, so a hostile record also exercises the graph build, Dijkstra and the backup
 * pass. The corpus (valid records written by tests/unit/test_linkstate.c with LS_CORPUS_DIR
 * set) seeds the mutations. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mesh/linkstate.h"
#include "mesh/route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same_or_abort(const ls_record_t *a, const ls_record_t *b)
{
    if (a->origin != b->origin || a->seq != b->seq || a->n_links != b->n_links ||
        a->n_sites != b->n_sites)
        abort();
    for (uint32_t i = 0; i < a->n_links; i++)
        if (a->links[i].peer != b->links[i].peer || a->links[i].rtt_us != b->links[i].rtt_us ||
            a->links[i].loss_permille != b->links[i].loss_permille)
            abort();
    for (uint32_t i = 0; i < a->n_sites; i++)
        if (a->sites[i].site != b->sites[i].site || a->sites[i].rtt_us != b->sites[i].rtt_us ||
            a->sites[i].state != b->sites[i].state)
            abort();
}

static void touch_path(const route_path_t *p, uint64_t *sum)
{
    for (uint32_t h = 0; h < p->n_hops; h++)
        *sum += p->hops[h];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ls_record_t *rec = malloc(sizeof(*rec)), *again = malloc(sizeof(*again));
    if (!rec || !again)
        abort();
    const char *why = NULL;
    int rc = ls_record_decode(data, size, rec, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        goto out;
    }
    if (ls_record_validate(rec, NULL) != 0)
        abort();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    if (ls_record_encode(rec, &sb) != 0 || ls_record_decode(sb.data, sb.size, again, NULL) != 0)
        abort();
    same_or_abort(rec, again);
    msgpack_sbuffer_destroy(&sb);

    /* A small mesh the record joins: 1..4 in a ring, each claiming the record's origin too,
     * and a site on 2 shared with the record's first site. */
    lsdb_t *db = lsdb_new();
    for (uint64_t id = 1; id <= 4; id++) {
        ls_record_init(again, id, 1);
        ls_record_add_link(again, id % 4 + 1, 1000 * (uint32_t)id, 0);
        ls_record_add_link(again, (id + 2) % 4 + 1, 2000, 5);
        if (rec->origin != id)
            ls_record_add_link(again, rec->origin, 3000, 0);
        if (id == 2)
            ls_record_add_site(again, rec->n_sites ? rec->sites[0].site : 7, 500, LS_SITE_ONLINE);
        if (lsdb_insert(db, again) < 0)
            abort();
        lsdb_set_penalty(db, id, (uint16_t)(id * 100), id != 3);
    }
    rc = lsdb_receive(db, data, size);
    if (rc < 0)
        abort(); /* it decoded above */
    uint64_t sum = 0;
    const uint64_t selves[] = {1, rec->origin};
    for (size_t k = 0; k < 2; k++) {
        route_t *r = route_new(NULL);
        route_table_t *t = NULL;
        if (route_compute(r, db, selves[k], 0, &t) != 0)
            abort();
        for (size_t i = 0; i < route_table_site_count(t); i++) {
            route_entry_t e;
            if (route_table_site_at(t, i, &e) == 0) {
                touch_path(&e.primary, &sum);
                if (e.has_backup) {
                    touch_path(&e.backup, &sum);
                    if (e.backup.egress == e.primary.egress)
                        abort();
                }
            }
        }
        route_table_destroy(&t);
        route_destroy(&r);
    }
    lsdb_destroy(&db);
    (void)sum;
out:
    free(rec);
    free(again);
    return 0;
}
