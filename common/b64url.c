#include "common/b64url.h"

#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "common/xmalloc.h"

static int in_alphabet(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int b64url_decode(const char *text, size_t len, uint8_t *out, size_t cap, size_t *outlen)
{
    for (size_t i = 0; i < len; i++)
        if (!in_alphabet(text[i]))
            return -EINVAL;
    /* Three bytes per four characters, rounded up: a text whose bytes cannot fit is refused
     * before libsodium is asked (it reports a full buffer like malformed text). */
    if (len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
        return -E2BIG;
    const char *end = NULL;
    size_t n = 0;
    if (sodium_base642bin(out, cap, text, len, NULL, &n, &end,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        end != text + len)
        return -EINVAL;
    size_t elen = sodium_base64_encoded_len(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *again = xmalloc(elen);
    sodium_bin2base64(again, elen, out, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    int canonical = strlen(again) == len && memcmp(again, text, len) == 0;
    sodium_memzero(again, elen); /* it may spell a secret */
    free(again);
    if (!canonical)
        return -EILSEQ;
    *outlen = n;
    return 0;
}
