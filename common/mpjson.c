#include "common/mpjson.h"

#include "common/mp.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static json_t *b64(const uint8_t *p, size_t n)
{
    size_t cap = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (!s)
        return NULL;
    sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
    json_t *o = json_pack("{s:s}", "base64", s);
    free(s);
    return o;
}

static json_t *convert(mpr_t *r)
{
    const char *s;
    const uint8_t *b;
    uint32_t n;
    switch (mpr_peek(r)) {
    case MP_NIL:
        mpr_nil(r);
        return json_null();
    case MP_BOOL: {
        bool v;
        mpr_bool(r, &v);
        return json_boolean(v);
    }
    case MP_UINT: {
        uint64_t v;
        if (mpr_uint(r, &v))
            return NULL;
        if (v > INT64_MAX) {
            char buf[24];
            snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
            return json_string(buf);
        }
        return json_integer((json_int_t)v);
    }
    case MP_INT: {
        int64_t v;
        if (mpr_int(r, &v))
            return NULL;
        return json_integer(v);
    }
    case MP_FLOAT: {
        double v;
        if (mpr_double(r, &v))
            return NULL;
        return json_real(v);
    }
    case MP_STR: {
        if (mpr_str(r, &s, &n))
            return NULL;
        json_t *o = json_stringn(s, n); /* NULL if not UTF-8 */
        return o ? o : b64((const uint8_t *)s, n);
    }
    case MP_BIN:
        if (mpr_bin(r, &b, &n))
            return NULL;
        return b64(b, n);
    case MP_ARRAY: {
        if (mpr_array(r, &n))
            return NULL;
        json_t *a = json_array();
        for (uint32_t i = 0; i < n; i++) {
            json_t *e = convert(r);
            if (!e) {
                json_decref(a);
                return NULL;
            }
            json_array_append_new(a, e);
        }
        return a;
    }
    case MP_MAP: {
        if (mpr_map(r, &n))
            return NULL;
        json_t *m = json_object();
        for (uint32_t i = 0; i < n; i++) {
            json_t *k = convert(r);
            json_t *v = k ? convert(r) : NULL;
            if (!v) {
                json_decref(k);
                json_decref(m);
                return NULL;
            }
            if (json_is_string(k)) {
                json_object_set_new(m, json_string_value(k), v);
            } else {
                char *text = json_dumps(k, JSON_ENCODE_ANY | JSON_COMPACT);
                json_object_set_new(m, text ? text : "?", v);
                free(text);
            }
            json_decref(k);
        }
        return m;
    }
    case MP_EXT: {
        const uint8_t *start;
        size_t len;
        if (mpr_object(r, &start, &len))
            return NULL;
        return b64(start, len);
    }
    default:
        return NULL;
    }
}

json_t *mpjson_from(const uint8_t *buf, size_t len)
{
    mpr_t r;
    mpr_init(&r, buf, len);
    /* Depth is bounded: the control protocol only carries objects the server validated with
     * mpr (MP_MAX_DEPTH), and mp_valid_object checks it again here. */
    if (!mp_valid_object(buf, len))
        return NULL;
    return convert(&r);
}

char *mpjson_text(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *out = realloc(s, n + 2);
    if (!out) {
        free(s);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}
