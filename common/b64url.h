/* b64url: strict decoding of base64url (RFC 4648 section 5, no padding), for tokens.
 *
 * Every popmesh token (bootstrap tokens, session cookies, share links, API keys) is a prefix
 * and base64url text. Decoding it must give each payload exactly one spelling and accept
 * nothing else: libsodium's decoder on its own is too lenient for that (1.0.18 takes every
 * byte >= 0x80 for '_', and a last character with non-zero unused bits decodes to the same
 * bytes as the canonical one). So the alphabet is checked first and the decoded bytes are
 * encoded again and compared. */
#ifndef POPMESH_COMMON_B64URL_H
#define POPMESH_COMMON_B64URL_H

#include <stddef.h>
#include <stdint.h>

/* Decodes len bytes of text into out (cap bytes) and sets *outlen. 0; -EINVAL: a byte
 * outside the alphabet or text that is not base64url; -EILSEQ: base64url, but not the
 * canonical spelling of its bytes; -E2BIG: more than cap bytes. out may be written to on
 * failure. */
int b64url_decode(const char *text, size_t len, uint8_t *out, size_t cap, size_t *outlen);

#endif
