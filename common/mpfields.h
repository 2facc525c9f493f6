/* mpfields: a table-driven decoder for msgpack maps with string keys (the replicated
 * records: registry, resources).
 *
 * Each field names its key, its kind, where the value goes and whether it is required.
 * Unknown keys are skipped (room for later fields); a key seen twice, a value of the wrong
 * type or size, a missing required field or trailing bytes refuse the whole map, with a
 * static reason in *why. Strings must be NUL-free and fit their buffer with the NUL. */
#ifndef POPMESH_COMMON_MPFIELDS_H
#define POPMESH_COMMON_MPFIELDS_H

#include "common/mp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mpf_kind {
    MPF_STR,    /* char[cap] */
    MPF_U64,    /* uint64_t */
    MPF_BIN32,  /* uint8_t[32] */
    MPF_BOOL,   /* bool */
    MPF_CUSTOM, /* read(r, dst, why): 0, or -EBADMSG with *why set */
};

typedef struct mpf {
    const char *name;
    enum mpf_kind kind;
    void *dst;
    size_t cap; /* MPF_STR: buffer size, bytes */
    bool required;
    bool seen;                                          /* set by mpf_parse */
    int (*read)(mpr_t *r, void *dst, const char **why); /* MPF_CUSTOM */
} mpf_t;

/* 0, or -EBADMSG with *why. */
int mpf_parse(const void *buf, size_t len, mpf_t *fs, size_t nf, const char **why);

#endif
