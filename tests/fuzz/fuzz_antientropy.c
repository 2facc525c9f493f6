/* Fuzzes the anti-entropy message handler (gossip/antientropy.h) over a real store: DIGEST and
 * ENTRIES from a peer are untrusted. The store is opened once in a temp directory (removed at
 * exit) and keeps what valid inputs merge, so later inputs meet a non-empty store; it is wiped
 * when it grows past a few thousand entries. A message refused as malformed must merge nothing
 * (digests unchanged) and be counted; the store must stay consistent (store_verify). A toy
 * guard (keys starting with 'p' need a signature whose first byte is even; it reads the store,
 * as popd's does) sends part of every batch through the signed-entries path (store.h). */
#include "gossip/antientropy.h"
#include "storage/store.h"

#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS      1700000010000ull /* ms: the corpus versions are around this time */
#define MAX_ENTRIES 10000
#define MAP_SIZE    (256ull << 20) /* bytes */

static char dir[] = "/tmp/popmesh-fuzz-ae-XXXXXX";
static store_t *store;
static ae_stats_t stats;
static unsigned runs;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static void wipe(void)
{
    store_close(&store);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static bool toy_wants(void *ctx, const char *key, size_t klen);
static int toy_guard(void *ctx, const store_entry_t *e);

static void open_store(void)
{
    static int made;
    if (!made) {
        if (!mkdtemp(dir))
            abort();
        made = 1;
        atexit(wipe);
    } else if (mkdir(dir, 0700) != 0) {
        abort();
    }
    store_opts_t o = {.node_id = 0xf00d, .map_size = MAP_SIZE, .nosync = true};
    if (store_open(dir, &o, &store) != 0)
        abort();
    store_set_guard(store, toy_wants, toy_guard, NULL);
}

static bool toy_wants(void *ctx, const char *key, size_t klen)
{
    (void)ctx;
    return klen > 0 && key[0] == 'p';
}

static int toy_guard(void *ctx, const store_entry_t *e)
{
    store_entry_t cur;
    (void)ctx;
    if (store_get(store, "k", 1, &cur) == 0) /* the guard may read: it runs outside a txn */
        store_entry_free(&cur);
    return e->has_sig && (e->sig[0] & 1) == 0 ? 0 : -EACCES;
}

static void send_nothing(void *ctx, const uint8_t *buf, size_t len)
{
    (*(size_t *)ctx)++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!store)
        open_store();
    uint64_t before[STORE_BUCKETS], after[STORE_BUCKETS];
    if (store_digests(store, before) != 0)
        abort();
    uint64_t malformed = stats.malformed;
    size_t sent = 0;
    int rc = ae_handle(store, data, size, NOW_MS, send_nothing, &sent, &stats);
    if (rc == -EBADMSG) {
        if (stats.malformed != malformed + 1 || sent != 0)
            abort();
        if (store_digests(store, after) != 0 || memcmp(before, after, sizeof(after)) != 0)
            abort(); /* a refused message merged something */
    } else if (stats.malformed != malformed) {
        abort();
    }

    store_stats_t ss;
    if (store_stats(store, &ss) != 0)
        abort();
    if (++runs % 1000 == 0 && store_verify(store) != 0) {
        fprintf(stderr, "store_verify: %s\n", store_last_error(store));
        abort();
    }
    if (rc == -ENOSPC || ss.entries + ss.tombstones > MAX_ENTRIES || ss.map_used > MAP_SIZE / 2) {
        if (store_verify(store) != 0)
            abort();
        wipe();
        open_store();
    }
    return 0;
}
