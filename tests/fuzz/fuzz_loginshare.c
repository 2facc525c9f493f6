/* Fuzzes the login summary decoder and receiver (node/auth/loginshare.h): any bytes either fail
 * cleanly or decode to a summary that re-encodes and decodes to the same fields; fed to a
 * receiver that lives across inputs (its tables fill, evict and forget), a summary charges
 * nothing for a key of an unknown kind, nothing of 0, and never more than its counts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/auth/loginshare.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t charged;

static void charge(void *ctx, enum loginshare_kind kind, uint64_t key, uint64_t n)
{
    (void)ctx, (void)key;
    if (kind >= LOGINSHARE_KINDS || n == 0)
        abort();
    charged += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static loginshare_t *ls;
    static uint64_t now = 1;
    static loginshare_msg_t m, back;
    if (!ls)
        ls = loginshare_new(1, 1000);
    now += 997; /* about three minutes every 180 inputs: the forgetting runs too */
    uint64_t before = charged;
    int rc = loginshare_receive(ls, data, size, now, charge, NULL);
    if (loginshare_decode(data, size, &m) != (rc < 0 ? rc : 0))
        abort();
    if (rc < 0)
        return 0;
    uint64_t most = 0;
    for (uint32_t i = 0; i < m.n; i++)
        if (m.e[i].kind < LOGINSHARE_KINDS)
            most += m.e[i].count;
    if (charged - before > most || (rc == 0 && charged != before))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    loginshare_pack(&pk, &m);
    if (loginshare_decode((const uint8_t *)sb.data, sb.size, &back) || back.origin != m.origin ||
        back.epoch != m.epoch || back.seq != m.seq || back.n != m.n ||
        memcmp(back.e, m.e, m.n * sizeof(m.e[0])) != 0)
        abort();
    msgpack_sbuffer_destroy(&sb);
    uint64_t next;
    loginshare_tick(ls, now, NULL, &next);
    return 0;
}
