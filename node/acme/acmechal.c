/* acmechal: see acmechal.h. */
#include "node/acme/acmechal.h"

#include "common/log.h"
#include "node/acme/acmerec.h"

#include <string.h>

bool acmechal_lookup(store_t *store, const char *token, size_t tlen, uint64_t now_ms, char *buf,
                     size_t len)
{
    char tok[ACME_TOKEN_MAX + 1], key[sizeof(ACMECHAL_PREFIX) + ACME_TOKEN_MAX];
    if (!acme_token_ok(token, tlen))
        return false;
    memcpy(tok, token, tlen);
    tok[tlen] = '\0';
    if (acmechal_key(tok, key, sizeof(key)))
        return false;
    store_entry_t e;
    if (store_get(store, key, strlen(key), &e))
        return false;
    acmechal_rec_t c;
    const char *why = "";
    bool ok = acmechal_parse(e.value, e.vlen, tok, &c, &why) == 0;
    store_entry_free(&e);
    if (!ok) {
        log_warn("acme: unreadable record %s: %s", key, why);
        return false;
    }
    if (c.expires_ms <= now_ms || strlen(c.key_authorization) >= len)
        return false;
    memcpy(buf, c.key_authorization, strlen(c.key_authorization) + 1);
    return true;
}

int acmechal_answer(store_t *store, const char *target, size_t len, uint64_t now_ms, char *buf,
                    size_t buflen)
{
    const size_t pl = sizeof(ACMECHAL_PATH) - 1;
    if (len < pl || memcmp(target, ACMECHAL_PATH, pl) != 0)
        return 0;
    const char *tok = target + pl;
    size_t tl = len - pl;
    const char *q = memchr(tok, '?', tl);
    if (q)
        tl = (size_t)(q - tok);
    return acmechal_lookup(store, tok, tl, now_ms, buf, buflen) ? 1 : -1;
}
