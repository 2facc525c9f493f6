/* zone: see zone.h. Decoding checks shapes (common/mpfields); zone_check_name and zone_check
 * then apply what zone.add applies, so a replicated zone is never held to less. */
#include "node/records/zone.h"

#include "common/log.h"
#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool label_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int zone_check_name(const char *name, const char **why)
{
    size_t len = strnlen(name, ZONE_NAME_MAX + 1);
    if (len == 0) {
        *why = "a zone name is empty";
        return -EINVAL;
    }
    if (len > ZONE_NAME_MAX) {
        *why = "a zone name is longer than 253 bytes";
        return -EINVAL;
    }
    if (name[len - 1] == '.') {
        *why = "a zone name is written without the trailing dot";
        return -EINVAL;
    }
    size_t label = 0; /* bytes of the current label so far */
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? name[i] : '.';
        if (c == '.') {
            if (label == 0) {
                *why = "a zone name has an empty label ('..' or a leading '.')";
                return -EINVAL;
            }
            if (label > ZONE_LABEL_MAX) {
                *why = "a label of a zone name is longer than 63 bytes";
                return -EINVAL;
            }
            if (name[i - label] == '-' || name[i - 1] == '-') {
                *why = "a label of a zone name starts or ends with '-'";
                return -EINVAL;
            }
            label = 0;
        } else if (c >= 'A' && c <= 'Z') {
            *why = "a zone name is written in lower case";
            return -EINVAL;
        } else if (!label_char(c)) {
            *why = "a zone name holds a character other than a-z, 0-9, '-', '_' and '.'";
            return -EINVAL;
        } else {
            label++;
        }
    }
    return 0;
}

int zone_check(const zone_rec_t *z, const char **why)
{
    if (zone_check_name(z->name, why))
        return -EINVAL;
    if (z->ttl < 1 || z->ttl > ZONE_TTL_MAX) {
        *why = "ttl must be from 1 to 86400 seconds";
        return -EINVAL;
    }
    if (z->answers < 1 || z->answers > ZONE_ANSWERS_MAX) {
        *why = "answers must be from 1 to 8";
        return -EINVAL;
    }
    return 0;
}

int zone_key(const char *name, char *out, size_t len)
{
    const char *why;
    if (zone_check_name(name, &why))
        return -EINVAL;
    int n = snprintf(out, len, ZONE_PREFIX "%s", name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

void zone_pack(msgpack_packer *pk, const zone_rec_t *z)
{
    msgpack_pack_map(pk, 4);
    mpw_kv_str(pk, "name", z->name);
    mpw_kv_u64(pk, "ttl", z->ttl);
    mpw_kv_u64(pk, "answers", z->answers);
    mpw_kv_u64(pk, "created_ms", z->created_ms);
}

int zone_parse(const uint8_t *buf, size_t len, const char *name, zone_rec_t *z, const char **why)
{
    uint64_t ttl = 0, answers = 0;
    memset(z, 0, sizeof(*z));
    mpf_t fs[] = {
        {"name", MPF_STR, z->name, sizeof(z->name), true, false, NULL},
        {"ttl", MPF_U64, &ttl, 0, true, false, NULL},
        {"answers", MPF_U64, &answers, 0, true, false, NULL},
        {"created_ms", MPF_U64, &z->created_ms, 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    /* Clamp before narrowing so a huge value cannot wrap into range. */
    z->ttl = ttl > ZONE_TTL_MAX ? 0 : (uint32_t)ttl;
    z->answers = answers > ZONE_ANSWERS_MAX ? 0 : (unsigned)answers;
    if (zone_check(z, why))
        return -EBADMSG;
    if (strcmp(z->name, name) != 0) {
        *why = "the record's name is not the name in its key";
        return -EBADMSG;
    }
    return 0;
}

/* ---- the store ---------------------------------------------------------------------------- */

struct collect {
    zone_rec_t *v;
    size_t n;
};

static int collect_one(const store_entry_t *e, void *ctx)
{
    struct collect *c = ctx;
    size_t pl = strlen(ZONE_PREFIX), nl = e->klen - pl;
    char name[ZONE_NAME_MAX + 1];
    const char *why = "the key is too long";
    zone_rec_t r;
    if (nl <= ZONE_NAME_MAX) {
        memcpy(name, e->key + pl, nl);
        name[nl] = '\0';
        if (zone_parse(e->value, e->vlen, name, &r, &why) == 0) {
            c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
            c->v[c->n++] = r;
            return 0;
        }
    }
    log_warn("zone: skipping unreadable record %.*s: %s", (int)e->klen, e->key, why);
    return 0;
}

int zone_list(store_t *store, zone_rec_t **out, size_t *n)
{
    struct collect c = {0};
    int rc = store_list(store, ZONE_PREFIX, strlen(ZONE_PREFIX), collect_one, &c);
    if (rc) {
        free(c.v);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = c.v;
    *n = c.n;
    return 0;
}
