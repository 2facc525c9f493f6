/* swim_wire: encoder and strict decoder of SWIM messages (layout in swim_wire.h).
 *
 * The decoder reads only through mpr, which checks every length before it reads, and
 * validates a message in full before the core applies any of it: the member list and the
 * piggyback list are walked once here (to check every entry) and once more by the core (to
 * apply them). Walking twice costs a few hundred nanoseconds per message and buys two
 * things: a message that is bad in its last byte changes nothing, and the decoder needs no
 * scratch array sized by a count the sender chose. */
#include "gossip/swim_wire.h"

#include <errno.h>
#include <string.h>

#include "common/xmalloc.h"

static int read_u32(mpr_t *r, uint32_t *v)
{
    uint64_t u;
    if (mpr_uint(r, &u) || u > UINT32_MAX)
        return -EBADMSG;
    *v = (uint32_t)u;
    return 0;
}

static int read_id(mpr_t *r, uint64_t *v)
{
    if (mpr_uint(r, v) || *v == 0)
        return -EBADMSG;
    return 0;
}

static int read_inc(mpr_t *r, uint64_t *v)
{
    if (mpr_uint(r, v) || *v > SWIM_INCARNATION_MAX)
        return -EBADMSG;
    return 0;
}

int swim_wire_next_update(mpr_t *r, struct swim_update *u)
{
    uint32_t n;
    uint64_t kind;
    if (mpr_array(r, &n) || n < 3 || mpr_uint(r, &kind))
        return -EBADMSG;
    memset(u, 0, sizeof(*u));
    switch (kind) {
    case SWIM_UPD_ALIVE:
        if (n != 4 || read_id(r, &u->id) || read_inc(r, &u->incarnation) ||
            mpr_bin(r, &u->data, &u->len) || u->len > SWIM_META_MAX)
            return -EBADMSG;
        break;
    case SWIM_UPD_SUSPECT:
    case SWIM_UPD_DEAD:
        if (n != 4 || read_id(r, &u->id) || read_inc(r, &u->incarnation) || read_id(r, &u->from))
            return -EBADMSG;
        break;
    case SWIM_UPD_LEFT:
        if (n != 3 || read_id(r, &u->id) || read_inc(r, &u->incarnation))
            return -EBADMSG;
        break;
    case SWIM_UPD_APP:
        /* Application keys may be any 64-bit value, 0 included: they are not member ids. */
        if (n != 3 || mpr_uint(r, &u->id) || mpr_bin(r, &u->data, &u->len) ||
            u->len > SWIM_PAYLOAD_MAX)
            return -EBADMSG;
        break;
    default:
        return -EBADMSG;
    }
    u->kind = (enum swim_update_kind)kind;
    return 0;
}

int swim_wire_next_sync(mpr_t *r, struct swim_sync_entry *e)
{
    uint32_t n;
    uint64_t state;
    if (mpr_array(r, &n) || n != 4 || read_id(r, &e->id) || read_inc(r, &e->incarnation) ||
        mpr_uint(r, &state) || state > SWIM_LEFT || mpr_bin(r, &e->meta, &e->meta_len) ||
        e->meta_len > SWIM_META_MAX)
        return -EBADMSG;
    e->state = (enum swim_state)state;
    return 0;
}

/* Reads a list header, remembers where its elements start, and validates every element. */
static int read_list(mpr_t *r, uint32_t cap, bool sync, mpr_t *start, uint32_t *count)
{
    if (mpr_array(r, count) || *count > cap)
        return -EBADMSG;
    *start = *r;
    for (uint32_t i = 0; i < *count; i++) {
        int rc;
        if (sync) {
            struct swim_sync_entry e;
            rc = swim_wire_next_sync(r, &e);
        } else {
            struct swim_update u;
            rc = swim_wire_next_update(r, &u);
        }
        if (rc)
            return -EBADMSG;
    }
    return 0;
}

static int read_wall(mpr_t *r, uint64_t *v)
{
    if (mpr_uint(r, v) || *v > SWIM_WALL_MAX)
        return -EBADMSG;
    return 0;
}

/* Number of outer array elements of each type, piggyback list included. */
static uint32_t outer_len(enum swim_msg_type t, unsigned version)
{
    switch (t) {
    case SWIM_MSG_PING:
        return version >= 2 ? 6 : 5;
    case SWIM_MSG_ACK:
        return version >= 2 ? 6 : 4;
    case SWIM_MSG_NACK:
        return 4;
    case SWIM_MSG_PING_REQ:
        return 6;
    case SWIM_MSG_SYNC:
    case SWIM_MSG_SYNC_REPLY:
        return 5;
    }
    return 0;
}

int swim_wire_decode(const uint8_t *buf, size_t len, struct swim_msg *m)
{
    mpr_t r;
    uint32_t n;
    uint64_t version, type;

    if (len > SWIM_MSG_MAX)
        return -EBADMSG;
    memset(m, 0, sizeof(*m));
    mpr_init(&r, buf, len);
    if (mpr_array(&r, &n) || n < 3 || mpr_uint(&r, &version) || version < SWIM_VERSION_MIN ||
        version > SWIM_VERSION || mpr_uint(&r, &type) || type < SWIM_MSG_PING ||
        type > SWIM_MSG_SYNC_REPLY)
        return -EBADMSG;
    m->version = (uint8_t)version;
    m->type = (enum swim_msg_type)type;
    if (n != outer_len(m->type, m->version))
        return -EBADMSG;

    switch (m->type) {
    case SWIM_MSG_PING:
        if (read_u32(&r, &m->seq) || read_id(&r, &m->target) ||
            (m->version >= 2 && read_wall(&r, &m->t1)))
            return -EBADMSG;
        break;
    case SWIM_MSG_ACK:
        if (read_u32(&r, &m->seq) ||
            (m->version >= 2 && (read_wall(&r, &m->t1) || read_wall(&r, &m->t2))))
            return -EBADMSG;
        break;
    case SWIM_MSG_NACK:
        if (read_u32(&r, &m->seq))
            return -EBADMSG;
        break;
    case SWIM_MSG_PING_REQ:
        if (read_u32(&r, &m->seq) || read_id(&r, &m->target) || read_u32(&r, &m->timeout_ms) ||
            m->timeout_ms > SWIM_NACK_TIMEOUT_MAX)
            return -EBADMSG;
        break;
    case SWIM_MSG_SYNC:
    case SWIM_MSG_SYNC_REPLY:
        if (read_u32(&r, &m->chunk) ||
            read_list(&r, SWIM_SYNC_MAX, true, &m->members, &m->member_count))
            return -EBADMSG;
        break;
    }
    if (read_list(&r, SWIM_PIGGYBACK_MAX, false, &m->piggyback, &m->pb_count))
        return -EBADMSG;
    if (r.err || r.left != 0) /* one message per buffer, nothing after it */
        return -EBADMSG;
    return 0;
}

void swim_wire_pack_head(msgpack_packer *pk, const struct swim_msg *m)
{
    unsigned version = m->version ? m->version : SWIM_VERSION;
    msgpack_pack_array(pk, outer_len(m->type, version));
    msgpack_pack_uint64(pk, version);
    msgpack_pack_uint64(pk, m->type);
    switch (m->type) {
    case SWIM_MSG_PING:
        msgpack_pack_uint32(pk, m->seq);
        msgpack_pack_uint64(pk, m->target);
        if (version >= 2)
            msgpack_pack_uint64(pk, m->t1);
        break;
    case SWIM_MSG_ACK:
        msgpack_pack_uint32(pk, m->seq);
        if (version >= 2) {
            msgpack_pack_uint64(pk, m->t1);
            msgpack_pack_uint64(pk, m->t2);
        }
        break;
    case SWIM_MSG_NACK:
        msgpack_pack_uint32(pk, m->seq);
        break;
    case SWIM_MSG_PING_REQ:
        msgpack_pack_uint32(pk, m->seq);
        msgpack_pack_uint64(pk, m->target);
        msgpack_pack_uint32(pk, m->timeout_ms);
        break;
    case SWIM_MSG_SYNC:
    case SWIM_MSG_SYNC_REPLY:
        msgpack_pack_uint32(pk, m->chunk);
        break;
    }
}

void swim_wire_pack_update(msgpack_packer *pk, const struct swim_update *u)
{
    switch (u->kind) {
    case SWIM_UPD_ALIVE:
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint64(pk, u->kind);
        msgpack_pack_uint64(pk, u->id);
        msgpack_pack_uint64(pk, u->incarnation);
        mpw_bin(pk, u->data, u->len);
        break;
    case SWIM_UPD_SUSPECT:
    case SWIM_UPD_DEAD:
        msgpack_pack_array(pk, 4);
        msgpack_pack_uint64(pk, u->kind);
        msgpack_pack_uint64(pk, u->id);
        msgpack_pack_uint64(pk, u->incarnation);
        msgpack_pack_uint64(pk, u->from);
        break;
    case SWIM_UPD_LEFT:
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint64(pk, u->kind);
        msgpack_pack_uint64(pk, u->id);
        msgpack_pack_uint64(pk, u->incarnation);
        break;
    case SWIM_UPD_APP:
        msgpack_pack_array(pk, 3);
        msgpack_pack_uint64(pk, u->kind);
        msgpack_pack_uint64(pk, u->id);
        mpw_bin(pk, u->data, u->len);
        break;
    }
}

void swim_wire_pack_sync_entry(msgpack_packer *pk, const struct swim_sync_entry *e)
{
    msgpack_pack_array(pk, 4);
    msgpack_pack_uint64(pk, e->id);
    msgpack_pack_uint64(pk, e->incarnation);
    msgpack_pack_uint64(pk, e->state);
    mpw_bin(pk, e->meta, e->meta_len);
}

void swim_wbuf_init(struct swim_wbuf *b, size_t limit)
{
    memset(b, 0, sizeof(*b));
    b->limit = limit;
}

void swim_wbuf_free(struct swim_wbuf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

int swim_wbuf_write(void *data, const char *buf, size_t len)
{
    struct swim_wbuf *b = data;
    if (len == 0) /* an empty bin body: nothing to copy (and buf may be NULL) */
        return 0;
    if (b->overflow || len > b->limit - b->len) {
        b->overflow = true;
        return -1;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        if (cap > b->limit)
            cap = b->limit;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

/* A packer target over a caller's fixed array. */
struct fixed_out {
    uint8_t *p;
    size_t len, cap; /* bytes */
    bool overflow;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
    struct fixed_out *o = data;
    if (len == 0)
        return 0;
    if (o->overflow || len > o->cap - o->len) {
        o->overflow = true;
        return -1;
    }
    memcpy(o->p + o->len, buf, len);
    o->len += len;
    return 0;
}

size_t swim_wire_encode_update(const struct swim_update *u, uint8_t *buf, size_t cap)
{
    struct fixed_out o = {.p = buf, .len = 0, .cap = cap, .overflow = false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &o, fixed_write);
    swim_wire_pack_update(&pk, u);
    return o.overflow ? 0 : o.len;
}
