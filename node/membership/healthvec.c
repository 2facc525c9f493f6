#include "node/membership/healthvec.h"

#include <errno.h>
#include <string.h>

void healthvec_pack(msgpack_packer *pk, const healthvec_t *h)
{
    msgpack_pack_array(pk, HEALTHVEC_FIELDS);
    msgpack_pack_uint64(pk, h->id);
    msgpack_pack_uint64(pk, h->seq);
    msgpack_pack_uint32(pk, h->cpu_permille);
    msgpack_pack_uint32(pk, h->rss_kb);
    msgpack_pack_uint32(pk, h->streams);
    if (h->ingress_up)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_pack_uint32(pk, h->tunnels);
    msgpack_pack_uint32(pk, h->listeners);
    msgpack_pack_uint32(pk, h->listeners_up);
    msgpack_pack_uint32(pk, h->load_permille);
}

static int u32(mpr_t *r, uint32_t *out)
{
    uint64_t v;
    if (mpr_uint(r, &v) || v > UINT32_MAX)
        return -EBADMSG;
    *out = (uint32_t)v;
    return 0;
}

int healthvec_decode(mpr_t *r, healthvec_t *h)
{
    uint32_t n;
    memset(h, 0, sizeof(*h));
    if (mpr_array(r, &n) || n < HEALTHVEC_FIELDS_V1 || mpr_uint(r, &h->id) ||
        mpr_uint(r, &h->seq) || u32(r, &h->cpu_permille) || u32(r, &h->rss_kb) ||
        u32(r, &h->streams) || mpr_bool(r, &h->ingress_up))
        return -EBADMSG;
    h->detailed = n >= HEALTHVEC_FIELDS;
    if (h->detailed && (u32(r, &h->tunnels) || u32(r, &h->listeners) || u32(r, &h->listeners_up) ||
                        u32(r, &h->load_permille) || h->listeners_up > h->listeners))
        return -EBADMSG;
    for (uint32_t i = h->detailed ? HEALTHVEC_FIELDS : HEALTHVEC_FIELDS_V1; i < n; i++)
        if (mpr_skip(r)) /* fields a newer node may add */
            return -EBADMSG;
    return 0;
}
