/* authrec: the key space of the edge-authentication records (node/auth reads them).
 *
 *   user/<name>                   the user record (user.h)
 *   apikey/<id: 16 lowercase hex>  an API key's record (apikey.h)
 *   rule/<resource>/<id: 16 hex>  an access rule of one resource (rule.h)
 *
 * Each record's format lives with its codec; what the three share is here: the prefixes, the
 * longest key, and the id spelling (exactly 16 lowercase hex digits, so a key has one spelling
 * and a store listing by prefix sees every id once). */
#ifndef POPMESH_NODE_RECORDS_AUTHREC_H
#define POPMESH_NODE_RECORDS_AUTHREC_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_USER_PREFIX   "user/"
#define AUTH_APIKEY_PREFIX "apikey/"
#define AUTH_RULE_PREFIX   "rule/"
#define AUTH_KEY_MAX       96 /* bytes of any of the keys above, with the NUL */

/* The id of an apikey/ or rule/ key (or an API key token): exactly 16 lowercase hex digits
 * (len counts them, no NUL needed). 0 or -EINVAL. */
static inline int authrec_id_parse(const char *s, size_t len, uint64_t *out)
{
    if (len != 16)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -EINVAL;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

#endif
