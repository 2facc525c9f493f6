/* mpfields: see mpfields.h. */
#include "common/mpfields.h"

#include <errno.h>
#include <string.h>

static int read_value(mpr_t *r, mpf_t *f, const char **why)
{
    switch (f->kind) {
    case MPF_STR: {
        const char *s;
        uint32_t sl;
        if (mpr_str(r, &s, &sl) || sl >= f->cap || memchr(s, '\0', sl))
            return -EBADMSG;
        memcpy(f->dst, s, sl);
        ((char *)f->dst)[sl] = '\0';
        return 0;
    }
    case MPF_U64:
        return mpr_uint(r, f->dst) ? -EBADMSG : 0;
    case MPF_BIN32: {
        const uint8_t *b;
        uint32_t bl;
        if (mpr_bin(r, &b, &bl) || bl != 32)
            return -EBADMSG;
        memcpy(f->dst, b, 32);
        return 0;
    }
    case MPF_BOOL:
        return mpr_bool(r, f->dst) ? -EBADMSG : 0;
    case MPF_CUSTOM:
        return f->read(r, f->dst, why) ? -EBADMSG - 1000 : 0; /* its own reason */
    }
    return -EBADMSG;
}

int mpf_parse(const void *buf, size_t len, mpf_t *fs, size_t nf, const char **why)
{
    mpr_t r;
    uint32_t pairs;
    mpr_init(&r, buf, len);
    if (mpr_map(&r, &pairs)) {
        *why = "not a map";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < pairs; i++) {
        const char *k;
        uint32_t kl;
        if (mpr_str(&r, &k, &kl)) {
            *why = "non-string field name";
            return -EBADMSG;
        }
        mpf_t *f = NULL;
        for (size_t j = 0; j < nf && !f; j++)
            if (strlen(fs[j].name) == kl && memcmp(fs[j].name, k, kl) == 0)
                f = &fs[j];
        if (!f) {
            if (mpr_skip(&r)) {
                *why = "malformed unknown field";
                return -EBADMSG;
            }
            continue;
        }
        if (f->seen) {
            *why = "a field appears twice";
            return -EBADMSG;
        }
        int rc = read_value(&r, f, why);
        if (rc == -EBADMSG - 1000)
            return -EBADMSG; /* a custom reader set its own reason */
        if (rc) {
            *why = "field of the wrong type or size";
            return -EBADMSG;
        }
        f->seen = true;
    }
    if (r.left) {
        *why = "trailing bytes";
        return -EBADMSG;
    }
    for (size_t j = 0; j < nf; j++) {
        if (fs[j].required && !fs[j].seen) {
            *why = "missing field";
            return -EBADMSG;
        }
    }
    return 0;
}
