/* mp: msgpack helpers. Writing goes through msgpack-c's packer; reading untrusted bytes goes
 * through mpr, a zero-copy cursor that checks every length before it reads.
 *
 * Why not msgpack-c's unpacker for reading: it allocates the element array of a container
 * from the declared count before reading any element, so five hostile bytes (0xdd ff ff ff ff)
 * ask for ~100 GB and a 5-byte message costs a megabyte of zone memory. mpr allocates nothing
 * and refuses a declared count larger than the bytes left (every element takes at least one
 * byte), so a decoder's memory cost is bounded by the message size it already holds.
 *
 * Errors are sticky: after the first failure every call returns -EBADMSG, so a decoder can
 * read a whole message and check r->err once, or check each call; both are safe. */
#ifndef POPMESH_COMMON_MP_H
#define POPMESH_COMMON_MP_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mp_type {
    MP_NONE = 0, /* end of input or error */
    MP_NIL,
    MP_BOOL,
    MP_UINT,
    MP_INT, /* negative integer */
    MP_FLOAT,
    MP_STR,
    MP_BIN,
    MP_ARRAY,
    MP_MAP,
    MP_EXT,
};

typedef struct mpr {
    const uint8_t *p; /* next byte to read */
    size_t left;      /* bytes left from p */
    int err;          /* 0, or -EBADMSG once anything failed */
} mpr_t;

/* Nesting deeper than this is refused by mpr_skip and mpr_object (stack safety). */
#define MP_MAX_DEPTH 32

void mpr_init(mpr_t *r, const void *buf, size_t len);
enum mp_type mpr_peek(const mpr_t *r);
/* Container headers: *count is at most the bytes left (and half of that for maps). */
int mpr_array(mpr_t *r, uint32_t *count);
int mpr_map(mpr_t *r, uint32_t *count);
int mpr_uint(mpr_t *r, uint64_t *v); /* non-negative integers of any encoding */
int mpr_int(mpr_t *r, int64_t *v);   /* any integer that fits int64 */
int mpr_bool(mpr_t *r, bool *v);
int mpr_nil(mpr_t *r);
int mpr_double(mpr_t *r, double *v);
/* Zero-copy: *s points into the buffer, borrowed for as long as the buffer lives, and is
 * not NUL-terminated. */
int mpr_str(mpr_t *r, const char **s, uint32_t *len);
int mpr_bin(mpr_t *r, const uint8_t **b, uint32_t *len);
/* Skips one whole object of any type, nested up to MP_MAX_DEPTH. */
int mpr_skip(mpr_t *r);
/* Like mpr_skip, but also returns where the object's bytes start and how many there are:
 * the way to take an opaque msgpack value out of a message after validating it. */
int mpr_object(mpr_t *r, const uint8_t **start, size_t *len);
/* Checks that buf holds exactly one well-formed msgpack object and nothing after it. */
bool mp_valid_object(const void *buf, size_t len);

/* Packing helpers over msgpack-c. */
void mpw_str(msgpack_packer *pk, const char *s);
void mpw_strn(msgpack_packer *pk, const char *s, size_t n);
void mpw_bin(msgpack_packer *pk, const void *b, size_t n);
/* Appends pre-encoded msgpack bytes verbatim (one object already validated). */
void mpw_raw(msgpack_packer *pk, const void *b, size_t n);
/* One "key": value pair of a map with a string key (the caller packed the map header). */
void mpw_kv_str(msgpack_packer *pk, const char *key, const char *v);
void mpw_kv_u64(msgpack_packer *pk, const char *key, uint64_t v);
void mpw_kv_bin(msgpack_packer *pk, const char *key, const void *b, size_t n);
void mpw_kv_bool(msgpack_packer *pk, const char *key, bool v);

#endif
