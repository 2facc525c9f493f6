/* store_writer: the process under test of store_durability.sh.
 *
 *   store_writer DIR N             open the store in DIR (sync on) and put "k/<i>" = "v<i>"
 *                                  for i in 0..N-1, printing "ACK <i>" after each put returned
 *                                  0 (the moment a client would be told "saved")
 *   store_writer --check DIR ACKS  reopen the store and check every key acknowledged in the
 *                                  file ACKS is there with its value, and that the digests
 *                                  match the records; exit 1 listing what is missing
 *
 * The script SIGKILLs the writer at a random point; a write acknowledged before the kill must
 * survive it. Exit codes: 0 ok, 1 check failed, 2 usage, 3 store error. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/mp.h"
#include "storage/store.h"

static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* The value of key i: msgpack str "v<i>". */
static size_t value_of(uint64_t i, uint8_t *buf, size_t cap)
{
    char s[32];
    int n = snprintf(s, sizeof(s), "v%" PRIu64, i);
    if (n < 0 || (size_t)n + 1 > cap || n > 31)
        abort();
    buf[0] = (uint8_t)(0xa0 | n);
    memcpy(buf + 1, s, (size_t)n);
    return (size_t)n + 1;
}

static int open_store(const char *dir, store_t **s)
{
    store_opts_t o = {.node_id = 1, .nosync = false};
    int rc = store_open(dir, &o, s);
    if (rc) {
        fprintf(stderr, "store_writer: cannot open %s: %s\n", dir, strerror(-rc));
        return 3;
    }
    return 0;
}

static int write_keys(const char *dir, uint64_t n)
{
    store_t *s;
    int rc = open_store(dir, &s);
    if (rc)
        return rc;
    for (uint64_t i = 0; i < n; i++) {
        char key[32];
        uint8_t val[40];
        int kl = snprintf(key, sizeof(key), "k/%" PRIu64, i);
        size_t vl = value_of(i, val, sizeof(val));
        rc = store_put(s, key, (size_t)kl, val, vl, wall_ms(), NULL);
        if (rc) {
            fprintf(stderr, "store_writer: put %s: %s\n", key, store_last_error(s));
            store_close(&s);
            return 3;
        }
        printf("ACK %" PRIu64 "\n", i);
        fflush(stdout);
    }
    store_close(&s);
    return 0;
}

static int check(const char *dir, const char *ackfile)
{
    FILE *f = fopen(ackfile, "r");
    if (!f) {
        fprintf(stderr, "store_writer: %s: %s\n", ackfile, strerror(errno));
        return 3;
    }
    store_t *s;
    int rc = open_store(dir, &s);
    if (rc) {
        fclose(f);
        return rc;
    }
    uint64_t acked = 0, missing = 0;
    char line[64];
    while (fgets(line, sizeof(line), f)) {
        uint64_t i;
        /* A kill can cut the last line short: only complete lines are acknowledgements. */
        if (!strchr(line, '\n') || sscanf(line, "ACK %" SCNu64, &i) != 1)
            continue;
        acked++;
        char key[32];
        uint8_t want[40];
        int kl = snprintf(key, sizeof(key), "k/%" PRIu64, i);
        size_t wl = value_of(i, want, sizeof(want));
        store_entry_t e;
        rc = store_get(s, key, (size_t)kl, &e);
        if (rc || e.vlen != wl || memcmp(e.value, want, wl) != 0) {
            printf("MISSING %s (%s)\n", key, rc ? strerror(-rc) : "wrong value");
            missing++;
        }
        if (rc == 0)
            store_entry_free(&e);
    }
    fclose(f);
    int vrc = store_verify(s);
    if (vrc)
        printf("VERIFY FAILED: %s\n", store_last_error(s));
    store_stats_t st;
    store_stats(s, &st);
    store_close(&s);
    printf("checked %" PRIu64 " acknowledged writes: %" PRIu64 " missing; store holds %" PRIu64
           " entries\n",
           acked, missing, st.entries);
    return missing || vrc ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--check") == 0)
        return check(argv[2], argv[3]);
    if (argc == 3 && argv[1][0] != '-') {
        char *end;
        uint64_t n = strtoull(argv[2], &end, 10);
        if (*end == 0)
            return write_keys(argv[1], n);
    }
    fprintf(stderr, "usage: store_writer DIR N\n       store_writer --check DIR ACKFILE\n");
    return 2;
}
