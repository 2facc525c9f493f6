#include "storage/record.h"

#include <errno.h>
#include <string.h>

#include "common/mp.h"

/* A bounded output buffer for msgpack-c's packer: it refuses to grow, and remembers that it
 * overflowed so the encoder can report "does not fit" instead of writing a short record. */
struct fixed_buf {
    uint8_t *p;
    size_t len; /* bytes written */
    size_t cap; /* bytes */
    bool overflow;
};

static int fixed_write(void *data, const char *buf, size_t len)
{
    struct fixed_buf *fb = data;
    if (fb->overflow || len > fb->cap - fb->len) {
        fb->overflow = true;
        return -1;
    }
    memcpy(fb->p + fb->len, buf, len);
    fb->len += len;
    return 0;
}

size_t store_record_encode(const store_record_t *rec, uint8_t *buf, size_t cap)
{
    struct fixed_buf fb = {.p = buf, .len = 0, .cap = cap, .overflow = false};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &fb, fixed_write);
    msgpack_pack_array(&pk, rec->sig ? 6 : 5);
    msgpack_pack_uint64(&pk, STORE_RECORD_FORMAT);
    msgpack_pack_uint64(&pk, rec->version);
    msgpack_pack_uint64(&pk, rec->origin);
    msgpack_pack_uint64(&pk, rec->tombstone ? STORE_RECORD_TOMBSTONE : 0);
    if (rec->tombstone)
        msgpack_pack_nil(&pk);
    else
        mpw_raw(&pk, rec->value, rec->vlen);
    if (rec->sig)
        mpw_bin(&pk, rec->sig, STORE_SIG_BYTES);
    return fb.overflow ? 0 : fb.len;
}

static int bad(const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return -EBADMSG;
}

int store_record_decode(const void *buf, size_t len, store_record_t *rec, const char **why)
{
    mpr_t r;
    uint32_t n;
    uint64_t format, flags;

    mpr_init(&r, buf, len);
    if (mpr_array(&r, &n) || (n != 5 && n != 6))
        return bad(why, "not a 5- or 6-element array");
    if (mpr_uint(&r, &format))
        return bad(why, "format is not an unsigned integer");
    if (format != STORE_RECORD_FORMAT)
        return bad(why, "unknown record format");
    if (mpr_uint(&r, &rec->version))
        return bad(why, "version is not an unsigned integer");
    if (mpr_uint(&r, &rec->origin) || rec->origin == 0)
        return bad(why, "origin is not a non-zero unsigned integer");
    if (mpr_uint(&r, &flags))
        return bad(why, "flags is not an unsigned integer");
    if (flags & ~(uint64_t)STORE_RECORD_TOMBSTONE)
        return bad(why, "unknown flag bits");
    rec->tombstone = flags & STORE_RECORD_TOMBSTONE;
    if (rec->tombstone) {
        if (mpr_nil(&r))
            return bad(why, "tombstone carries a value");
        rec->value = NULL;
        rec->vlen = 0;
    } else {
        if (mpr_object(&r, &rec->value, &rec->vlen))
            return bad(why, "value is not one msgpack object");
        if (rec->vlen > STORE_VALUE_MAX)
            return bad(why, "value over STORE_VALUE_MAX");
    }
    rec->sig = NULL;
    if (n == 6) {
        const uint8_t *sig;
        uint32_t sl;
        if (mpr_bin(&r, &sig, &sl) || sl != STORE_SIG_BYTES)
            return bad(why, "signature is not 64 bytes of bin");
        rec->sig = sig;
    }
    if (r.left != 0)
        return bad(why, "trailing bytes after the record");
    return 0;
}
