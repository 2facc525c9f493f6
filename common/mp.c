#include "common/mp.h"

#include <errno.h>
#include <string.h>

void mpr_init(mpr_t *r, const void *buf, size_t len)
{
    r->p = buf;
    r->left = buf ? len : 0;
    r->err = 0;
}

static int fail(mpr_t *r)
{
    r->err = -EBADMSG;
    r->left = 0;
    return -EBADMSG;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Consumes the type byte plus an n-byte big-endian field; returns the field value. */
static int take(mpr_t *r, int n, uint64_t *v)
{
    if (r->left < (size_t)1 + (size_t)n)
        return fail(r);
    *v = be(r->p + 1, n);
    r->p += 1 + n;
    r->left -= 1 + (size_t)n;
    return 0;
}

enum mp_type mpr_peek(const mpr_t *r)
{
    if (r->err || r->left == 0)
        return MP_NONE;
    uint8_t b = r->p[0];
    if (b <= 0x7f || (b >= 0xcc && b <= 0xcf))
        return MP_UINT;
    if (b >= 0xe0 || (b >= 0xd0 && b <= 0xd3))
        return MP_INT;
    if ((b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb))
        return MP_STR;
    if ((b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd)
        return MP_ARRAY;
    if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf)
        return MP_MAP;
    switch (b) {
    case 0xc0:
        return MP_NIL;
    case 0xc2:
    case 0xc3:
        return MP_BOOL;
    case 0xc4:
    case 0xc5:
    case 0xc6:
        return MP_BIN;
    case 0xca:
    case 0xcb:
        return MP_FLOAT;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return MP_EXT;
    default: /* 0xc1 is never used */
        return MP_NONE;
    }
}

int mpr_array(mpr_t *r, uint32_t *count)
{
    uint64_t v;
    if (r->err || r->left == 0)
        return fail(r);
    uint8_t b = r->p[0];
    if ((b & 0xf0) == 0x90) {
        v = b & 0x0f;
        r->p++, r->left--;
    } else if (b == 0xdc) {
        if (take(r, 2, &v))
            return -EBADMSG;
    } else if (b == 0xdd) {
        if (take(r, 4, &v))
            return -EBADMSG;
    } else {
        return fail(r);
    }
    if (v > r->left) /* every element needs at least one byte */
        return fail(r);
    *count = (uint32_t)v;
    return 0;
}

int mpr_map(mpr_t *r, uint32_t *count)
{
    uint64_t v;
    if (r->err || r->left == 0)
        return fail(r);
    uint8_t b = r->p[0];
    if ((b & 0xf0) == 0x80) {
        v = b & 0x0f;
        r->p++, r->left--;
    } else if (b == 0xde) {
        if (take(r, 2, &v))
            return -EBADMSG;
    } else if (b == 0xdf) {
        if (take(r, 4, &v))
            return -EBADMSG;
    } else {
        return fail(r);
    }
    if (v * 2 > r->left)
        return fail(r);
    *count = (uint32_t)v;
    return 0;
}

int mpr_int(mpr_t *r, int64_t *v)
{
    uint64_t u;
    if (r->err || r->left == 0)
        return fail(r);
    uint8_t b = r->p[0];
    if (b <= 0x7f) {
        *v = b;
        r->p++, r->left--;
        return 0;
    }
    if (b >= 0xe0) {
        *v = (int8_t)b;
        r->p++, r->left--;
        return 0;
    }
    switch (b) {
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
        if (take(r, 1 << (b - 0xcc), &u))
            return -EBADMSG;
        if (u > INT64_MAX)
            return fail(r);
        *v = (int64_t)u;
        return 0;
    case 0xd0:
        if (take(r, 1, &u))
            return -EBADMSG;
        *v = (int8_t)u;
        return 0;
    case 0xd1:
        if (take(r, 2, &u))
            return -EBADMSG;
        *v = (int16_t)u;
        return 0;
    case 0xd2:
        if (take(r, 4, &u))
            return -EBADMSG;
        *v = (int32_t)u;
        return 0;
    case 0xd3:
        if (take(r, 8, &u))
            return -EBADMSG;
        *v = (int64_t)u;
        return 0;
    default:
        return fail(r);
    }
}

int mpr_uint(mpr_t *r, uint64_t *v)
{
    if (r->err || r->left == 0)
        return fail(r);
    uint8_t b = r->p[0];
    if (b >= 0xcc && b <= 0xcf)
        return take(r, 1 << (b - 0xcc), v);
    int64_t s;
    mpr_t save = *r;
    if (mpr_int(r, &s))
        return -EBADMSG;
    if (s < 0) {
        *r = save;
        return fail(r);
    }
    *v = (uint64_t)s;
    return 0;
}

int mpr_bool(mpr_t *r, bool *v)
{
    if (r->err || r->left == 0 || (r->p[0] != 0xc2 && r->p[0] != 0xc3))
        return fail(r);
    *v = r->p[0] == 0xc3;
    r->p++, r->left--;
    return 0;
}

int mpr_nil(mpr_t *r)
{
    if (r->err || r->left == 0 || r->p[0] != 0xc0)
        return fail(r);
    r->p++, r->left--;
    return 0;
}

int mpr_double(mpr_t *r, double *v)
{
    uint64_t u;
    if (r->err || r->left == 0)
        return fail(r);
    if (r->p[0] == 0xca) {
        if (take(r, 4, &u))
            return -EBADMSG;
        uint32_t u32 = (uint32_t)u;
        float f;
        memcpy(&f, &u32, sizeof(f));
        *v = f;
        return 0;
    }
    if (r->p[0] == 0xcb) {
        if (take(r, 8, &u))
            return -EBADMSG;
        memcpy(v, &u, sizeof(*v));
        return 0;
    }
    int64_t i;
    if (mpr_int(r, &i))
        return -EBADMSG;
    *v = (double)i;
    return 0;
}

/* Reads a length header of a str/bin/ext-like object and checks the payload fits. */
static int raw_payload(mpr_t *r, int lenbytes, const uint8_t **data, uint32_t *len)
{
    uint64_t n;
    if (take(r, lenbytes, &n))
        return -EBADMSG;
    if (n > r->left)
        return fail(r);
    *data = r->p;
    *len = (uint32_t)n;
    r->p += n;
    r->left -= n;
    return 0;
}

int mpr_str(mpr_t *r, const char **s, uint32_t *len)
{
    if (r->err || r->left == 0)
        return fail(r);
    uint8_t b = r->p[0];
    const uint8_t *d;
    int rc;
    if ((b & 0xe0) == 0xa0) {
        uint32_t n = b & 0x1f;
        if (n + (size_t)1 > r->left)
            return fail(r);
        d = r->p + 1;
        r->p += 1 + n;
        r->left -= 1 + (size_t)n;
        *s = (const char *)d;
        *len = n;
        return 0;
    }
    if (b == 0xd9)
        rc = raw_payload(r, 1, &d, len);
    else if (b == 0xda)
        rc = raw_payload(r, 2, &d, len);
    else if (b == 0xdb)
        rc = raw_payload(r, 4, &d, len);
    else
        return fail(r);
    if (rc == 0)
        *s = (const char *)d;
    return rc;
}

int mpr_bin(mpr_t *r, const uint8_t **b, uint32_t *len)
{
    if (r->err || r->left == 0)
        return fail(r);
    switch (r->p[0]) {
    case 0xc4:
        return raw_payload(r, 1, b, len);
    case 0xc5:
        return raw_payload(r, 2, b, len);
    case 0xc6:
        return raw_payload(r, 4, b, len);
    default:
        return fail(r);
    }
}

static int skip_depth(mpr_t *r, int depth)
{
    if (depth > MP_MAX_DEPTH)
        return fail(r);
    const uint8_t *d;
    uint32_t n;
    uint64_t u;
    switch (mpr_peek(r)) {
    case MP_NIL:
    case MP_BOOL:
        r->p++, r->left--;
        return 0;
    case MP_UINT:
    case MP_INT: {
        int64_t i;
        if (r->p[0] == 0xcf)
            return take(r, 8, &u);
        return mpr_int(r, &i);
    }
    case MP_FLOAT: {
        double x;
        return mpr_double(r, &x);
    }
    case MP_STR:
        return mpr_str(r, (const char **)&d, &n);
    case MP_BIN:
        return mpr_bin(r, &d, &n);
    case MP_ARRAY:
        if (mpr_array(r, &n))
            return -EBADMSG;
        for (uint32_t i = 0; i < n; i++)
            if (skip_depth(r, depth + 1))
                return -EBADMSG;
        return 0;
    case MP_MAP:
        if (mpr_map(r, &n))
            return -EBADMSG;
        for (uint32_t i = 0; i < 2 * n; i++)
            if (skip_depth(r, depth + 1))
                return -EBADMSG;
        return 0;
    case MP_EXT: {
        uint8_t b = r->p[0];
        size_t fixed = 0;
        switch (b) {
        case 0xd4:
            fixed = 1;
            break;
        case 0xd5:
            fixed = 2;
            break;
        case 0xd6:
            fixed = 4;
            break;
        case 0xd7:
            fixed = 8;
            break;
        case 0xd8:
            fixed = 16;
            break;
        }
        if (fixed) {
            if (r->left < 2 + fixed)
                return fail(r);
            r->p += 2 + fixed;
            r->left -= 2 + fixed;
            return 0;
        }
        int lb = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
        if (take(r, lb, &u))
            return -EBADMSG;
        if (r->left < 1 + u)
            return fail(r);
        r->p += 1 + u;
        r->left -= 1 + u;
        return 0;
    }
    default:
        return fail(r);
    }
}

int mpr_skip(mpr_t *r)
{
    if (r->err)
        return -EBADMSG;
    return skip_depth(r, 0);
}

int mpr_object(mpr_t *r, const uint8_t **start, size_t *len)
{
    const uint8_t *s = r->p;
    if (mpr_skip(r))
        return -EBADMSG;
    *start = s;
    *len = (size_t)(r->p - s);
    return 0;
}

bool mp_valid_object(const void *buf, size_t len)
{
    mpr_t r;
    mpr_init(&r, buf, len);
    return len > 0 && mpr_skip(&r) == 0 && r.left == 0;
}

void mpw_str(msgpack_packer *pk, const char *s)
{
    mpw_strn(pk, s, strlen(s));
}

void mpw_strn(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void mpw_bin(msgpack_packer *pk, const void *b, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, b, n);
}

void mpw_raw(msgpack_packer *pk, const void *b, size_t n)
{
    /* msgpack_packer's callback appends bytes as-is; that is exactly a raw splice. */
    pk->callback(pk->data, b, n);
}

void mpw_kv_str(msgpack_packer *pk, const char *key, const char *v)
{
    mpw_str(pk, key);
    mpw_str(pk, v);
}

void mpw_kv_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    mpw_str(pk, key);
    msgpack_pack_uint64(pk, v);
}

void mpw_kv_bin(msgpack_packer *pk, const char *key, const void *b, size_t n)
{
    mpw_str(pk, key);
    mpw_bin(pk, b, n);
}

void mpw_kv_bool(msgpack_packer *pk, const char *key, bool v)
{
    mpw_str(pk, key);
    if (v)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}
