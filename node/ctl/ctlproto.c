#include "node/ctl/ctlproto.h"

#include "common/mp.h"

#include <errno.h>
#include <string.h>

const char *ctl_status_name(int status)
{
    switch (status) {
    case CTL_OK:
        return "ok";
    case CTL_NOT_FOUND:
        return "not found";
    case CTL_BAD_REQUEST:
        return "bad request";
    case CTL_REFUSED:
        return "refused";
    case CTL_FAILED:
        return "failed";
    case CTL_BAD_VERSION:
        return "protocol version mismatch";
    default:
        return "unknown status";
    }
}

int ctl_frame_peek(const uint8_t *buf, size_t len, size_t max, const uint8_t **body,
                   size_t *body_len, size_t *frame_len)
{
    if (len < CTL_HEADER)
        return 0;
    uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
    if (n > max)
        return -EMSGSIZE;
    if (len - CTL_HEADER < n)
        return 0;
    *body = buf + CTL_HEADER;
    *body_len = n;
    *frame_len = CTL_HEADER + (size_t)n;
    return 1;
}

/* Both messages start [version, ...]; a version we don't speak is reported before anything
 * else is judged, so the caller can answer CTL_BAD_VERSION instead of "malformed". */
static int decode_head(mpr_t *r, uint32_t *version, const char **why)
{
    uint32_t n;
    uint64_t v;
    if (mpr_array(r, &n) || n != 3) {
        *why = "not a 3-element msgpack array";
        return -EBADMSG;
    }
    if (mpr_uint(r, &v) || v > UINT32_MAX) {
        *why = "version is not an unsigned integer";
        return -EBADMSG;
    }
    *version = (uint32_t)v;
    return 0;
}

int ctl_request_decode(const uint8_t *body, size_t len, ctl_request_t *req, const char **why)
{
    mpr_t r;
    mpr_init(&r, body, len);
    memset(req, 0, sizeof(*req));
    if (decode_head(&r, &req->version, why))
        return -EBADMSG;
    if (req->version != CTL_VERSION)
        return 0; /* caller answers CTL_BAD_VERSION; the rest may be any shape */
    if (mpr_str(&r, &req->command, &req->command_len)) {
        *why = "command is not a string";
        return -EBADMSG;
    }
    if (req->command_len == 0 || req->command_len > CTL_MAX_COMMAND) {
        *why = "command name empty or too long";
        return -EBADMSG;
    }
    if (mpr_peek(&r) != MP_MAP) {
        *why = "args is not a map";
        return -EBADMSG;
    }
    if (mpr_object(&r, &req->args, &req->args_len)) {
        *why = "args map is malformed";
        return -EBADMSG;
    }
    if (r.left != 0) {
        *why = "trailing bytes after the request";
        return -EBADMSG;
    }
    /* Keys must be strings: checked once here so lookups can trust the shape. */
    mpr_t a;
    uint32_t pairs;
    mpr_init(&a, req->args, req->args_len);
    mpr_map(&a, &pairs);
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        uint32_t kl;
        if (mpr_str(&a, &k, &kl) || mpr_skip(&a)) {
            *why = "args map has a non-string key";
            return -EBADMSG;
        }
    }
    return 0;
}

int ctl_response_decode(const uint8_t *body, size_t len, ctl_response_t *resp, const char **why)
{
    mpr_t r;
    uint64_t st;
    mpr_init(&r, body, len);
    memset(resp, 0, sizeof(*resp));
    if (decode_head(&r, &resp->version, why))
        return -EBADMSG;
    if (mpr_uint(&r, &st) || st > 255) {
        *why = "status is not a small unsigned integer";
        return -EBADMSG;
    }
    resp->status = (int)st;
    if (mpr_object(&r, &resp->body, &resp->body_len)) {
        *why = "response body is malformed";
        return -EBADMSG;
    }
    if (r.left != 0) {
        *why = "trailing bytes after the response";
        return -EBADMSG;
    }
    return 0;
}

int ctl_arg(const ctl_request_t *req, const char *name, const uint8_t **val, size_t *val_len)
{
    mpr_t r;
    uint32_t pairs;
    size_t nl = strlen(name);
    if (!req->args)
        return 0;
    mpr_init(&r, req->args, req->args_len);
    if (mpr_map(&r, &pairs))
        return -EBADMSG;
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        uint32_t kl;
        const uint8_t *v;
        size_t vl;
        if (mpr_str(&r, &k, &kl) || mpr_object(&r, &v, &vl))
            return -EBADMSG;
        if (kl == nl && memcmp(k, name, nl) == 0) {
            *val = v;
            *val_len = vl;
            return 1;
        }
    }
    return 0;
}

int ctl_arg_str(const ctl_request_t *req, const char *name, const char **s, uint32_t *len)
{
    const uint8_t *v;
    size_t vl;
    int rc = ctl_arg(req, name, &v, &vl);
    if (rc <= 0)
        return rc;
    mpr_t r;
    mpr_init(&r, v, vl);
    return mpr_str(&r, s, len) == 0 ? 1 : -EINVAL;
}

int ctl_arg_uint(const ctl_request_t *req, const char *name, uint64_t *out)
{
    const uint8_t *v;
    size_t vl;
    int rc = ctl_arg(req, name, &v, &vl);
    if (rc <= 0)
        return rc;
    mpr_t r;
    mpr_init(&r, v, vl);
    return mpr_uint(&r, out) == 0 ? 1 : -EINVAL;
}

void ctl_frame_begin(msgpack_sbuffer *sbuf)
{
    static const char zero[CTL_HEADER] = {0};
    msgpack_sbuffer_write(sbuf, zero, CTL_HEADER);
}

void ctl_frame_end(msgpack_sbuffer *sbuf)
{
    uint32_t n = (uint32_t)(sbuf->size - CTL_HEADER);
    uint8_t *p = (uint8_t *)sbuf->data;
    p[0] = (uint8_t)(n >> 24);
    p[1] = (uint8_t)(n >> 16);
    p[2] = (uint8_t)(n >> 8);
    p[3] = (uint8_t)n;
}

int ctl_arg_copy(const ctl_request_t *req, const char *name, char *buf, size_t cap)
{
    const char *s;
    uint32_t sl;
    int rc = ctl_arg_str(req, name, &s, &sl);
    if (rc <= 0)
        return rc;
    if (sl >= cap || memchr(s, '\0', sl))
        return -EINVAL;
    memcpy(buf, s, sl);
    buf[sl] = '\0';
    return 1;
}
