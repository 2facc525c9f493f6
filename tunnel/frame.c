/* tun_frame: encoder and strict decoder of tunnel frames (layout in frame.h).
 *
 * Encoding goes through msgpack-c's packer into a fixed buffer on the caller's stack: every
 * field is bounded (frame.h), so the head never exceeds TUN_HEAD_MAX and encoding needs no
 * allocation. A DATA payload is never copied here; the driver joins head and payload when it
 * builds the transport message.
 *
 * Decoding reads only through mpr. The array length is checked against the type before any
 * field is read, every integer against its range, and the frame must end exactly where its
 * last field ends. */
#include "tunnel/frame.h"

#include <errno.h>
#include <msgpack.h>
#include <string.h>

#include "common/mp.h"

/* Elements of each frame type's array, version and type included; 0 = unknown type. */
static unsigned frame_arity(uint64_t type)
{
    switch (type) {
    case TUN_OPEN:
    case TUN_OPEN_ERR:
        return 5;
    case TUN_OPEN_OK:
    case TUN_DATA:
    case TUN_WINDOW:
    case TUN_RST:
        return 4;
    case TUN_FIN:
    case TUN_PING:
    case TUN_PONG:
        return 3;
    default:
        return 0;
    }
}

const char *tun_frame_type_name(enum tun_frame_type type)
{
    static const char *const names[] = {
        [TUN_OPEN] = "OPEN", [TUN_OPEN_OK] = "OPEN_OK", [TUN_OPEN_ERR] = "OPEN_ERR",
        [TUN_DATA] = "DATA", [TUN_WINDOW] = "WINDOW",   [TUN_FIN] = "FIN",
        [TUN_RST] = "RST",   [TUN_PING] = "PING",       [TUN_PONG] = "PONG",
    };
    if ((unsigned)type < sizeof(names) / sizeof(names[0]) && names[type])
        return names[type];
    return "?";
}

const char *tun_code_name(uint32_t code)
{
    static const char *const names[] = {
        [TUN_ERR_NONE] = "none",
        [TUN_ERR_REFUSED] = "refused",
        [TUN_ERR_TIMEOUT] = "timeout",
        [TUN_ERR_PROTOCOL] = "protocol error",
        [TUN_ERR_WINDOW_OVERFLOW] = "window overflow",
        [TUN_ERR_FLOW_CONTROL] = "flow control violation",
        [TUN_ERR_UNREACHABLE] = "target unreachable",
        [TUN_ERR_SHUTTING_DOWN] = "shutting down",
        [TUN_ERR_LIMIT] = "too many streams",
        [TUN_ERR_STREAM_CLOSED] = "stream closed",
        [TUN_ERR_INTERNAL] = "internal error",
        [TUN_ERR_TUNNEL_DEAD] = "tunnel dead",
        [TUN_ERR_SEAL] = "sealed record failed to open",
    };
    if (code < sizeof(names) / sizeof(names[0]))
        return names[code];
    return "unknown code";
}

static int read_u32(mpr_t *r, uint64_t max, uint32_t *v)
{
    uint64_t u;
    if (mpr_uint(r, &u) || u > max)
        return -EBADMSG;
    *v = (uint32_t)u;
    return 0;
}

int tun_frame_decode(const uint8_t *buf, size_t len, tun_frame_t *f)
{
    mpr_t r;
    uint32_t n;
    uint64_t version, type, sid;
    memset(f, 0, sizeof(*f));
    mpr_init(&r, buf, len);
    if (mpr_array(&r, &n) || n < 1 || mpr_uint(&r, &version))
        return -EBADMSG;
    if (version != TUN_VERSION)
        return -EPROTONOSUPPORT;
    if (n < 2 || mpr_uint(&r, &type) || frame_arity(type) == 0)
        return -EBADMSG;
    f->type = (enum tun_frame_type)type;
    if (n != frame_arity(type))
        return -EBADMSG;
    if (type == TUN_PING || type == TUN_PONG) {
        if (mpr_uint(&r, &f->seq))
            return -EBADMSG;
    } else {
        if (mpr_uint(&r, &sid) || sid == 0 || sid > TUN_SID_MAX)
            return -EBADMSG;
        f->sid = sid;
    }
    const char *msg;
    switch (f->type) {
    case TUN_OPEN:
        if (read_u32(&r, TUN_WINDOW_MAX, &f->window) || mpr_bin(&r, &f->data, &f->len) ||
            f->len > TUN_TARGET_MAX)
            return -EBADMSG;
        break;
    case TUN_OPEN_OK:
        if (read_u32(&r, TUN_WINDOW_MAX, &f->window))
            return -EBADMSG;
        break;
    case TUN_OPEN_ERR:
        if (read_u32(&r, TUN_CODE_MAX, &f->code) || mpr_str(&r, &msg, &f->len) ||
            f->len > TUN_MSG_MAX)
            return -EBADMSG;
        f->data = (const uint8_t *)msg;
        break;
    case TUN_DATA:
        if (mpr_bin(&r, &f->data, &f->len) || f->len == 0 || f->len > TUN_DATA_MAX)
            return -EBADMSG;
        break;
    case TUN_WINDOW:
        if (read_u32(&r, TUN_WINDOW_INC_MAX, &f->window) || f->window == 0)
            return -EBADMSG;
        break;
    case TUN_RST:
        if (read_u32(&r, TUN_CODE_MAX, &f->code))
            return -EBADMSG;
        break;
    case TUN_FIN:
    case TUN_PING:
    case TUN_PONG:
        break;
    }
    if (r.err || r.left != 0)
        return -EBADMSG;
    return 0;
}

/* A packer target of fixed capacity: msgpack-c calls this for every piece it writes. */
struct fixed_buf {
    uint8_t *p;
    size_t len, cap;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
    struct fixed_buf *b = data;
    if (len > b->cap - b->len)
        return -1;
    if (len == 0) /* an empty body may come with a NULL pointer */
        return 0;
    memcpy(b->p + b->len, buf, len);
    b->len += len;
    return 0;
}

static int frame_valid(const tun_frame_t *f)
{
    if (f->type != TUN_PING && f->type != TUN_PONG && (f->sid == 0 || f->sid > TUN_SID_MAX))
        return 0;
    switch (f->type) {
    case TUN_OPEN:
        return f->window <= TUN_WINDOW_MAX && f->len <= TUN_TARGET_MAX && (f->data || !f->len);
    case TUN_OPEN_OK:
        return f->window <= TUN_WINDOW_MAX;
    case TUN_OPEN_ERR:
        return f->code <= TUN_CODE_MAX && f->len <= TUN_MSG_MAX && (f->data || !f->len);
    case TUN_DATA:
        return f->len >= 1 && f->len <= TUN_DATA_MAX && f->data;
    case TUN_WINDOW:
        return f->window >= 1;
    case TUN_RST:
        return f->code <= TUN_CODE_MAX;
    case TUN_FIN:
    case TUN_PING:
    case TUN_PONG:
        return 1;
    }
    return 0;
}

size_t tun_frame_encode(const tun_frame_t *f, uint8_t head[TUN_HEAD_MAX])
{
    if (!frame_valid(f))
        return 0;
    struct fixed_buf b = {.p = head, .len = 0, .cap = TUN_HEAD_MAX};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, fixed_write);
    int rc = msgpack_pack_array(&pk, frame_arity(f->type));
    rc |= msgpack_pack_uint8(&pk, TUN_VERSION);
    rc |= msgpack_pack_uint8(&pk, (uint8_t)f->type);
    if (f->type == TUN_PING || f->type == TUN_PONG)
        rc |= msgpack_pack_uint64(&pk, f->seq);
    else
        rc |= msgpack_pack_uint64(&pk, f->sid);
    switch (f->type) {
    case TUN_OPEN:
        rc |= msgpack_pack_uint32(&pk, f->window);
        rc |= msgpack_pack_bin(&pk, f->len);
        rc |= msgpack_pack_bin_body(&pk, f->data, f->len);
        break;
    case TUN_OPEN_OK:
    case TUN_WINDOW:
        rc |= msgpack_pack_uint32(&pk, f->window);
        break;
    case TUN_OPEN_ERR:
        rc |= msgpack_pack_uint32(&pk, f->code);
        rc |= msgpack_pack_str(&pk, f->len);
        rc |= msgpack_pack_str_body(&pk, f->data, f->len);
        break;
    case TUN_DATA:
        rc |= msgpack_pack_bin(&pk, f->len); /* the payload follows, uncopied */
        break;
    case TUN_RST:
        rc |= msgpack_pack_uint32(&pk, f->code);
        break;
    case TUN_FIN:
    case TUN_PING:
    case TUN_PONG:
        break;
    }
    return rc ? 0 : b.len;
}
