/* totp: see totp.h. */
#include "node/auth/totp.h"

#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

static const char B32[] = "abcdefghijklmnopqrstuvwxyz234567";

int64_t totp_hotp(const uint8_t *key, size_t keylen, uint64_t counter, unsigned digits)
{
    uint8_t msg[8], mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    if (digits < 1 || digits > 9)
        return -1;
    for (int i = 7; i >= 0; i--) {
        msg[i] = (uint8_t)counter;
        counter >>= 8;
    }
    if (!HMAC(EVP_sha1(), key, (int)keylen, msg, sizeof(msg), mac, &maclen) || maclen != 20)
        return -1;
    /* RFC 4226 5.3, dynamic truncation: 31 bits from the offset the last nibble names. */
    unsigned off = mac[19] & 0x0f;
    uint32_t bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
                   (uint32_t)mac[off + 2] << 8 | mac[off + 3];
    uint32_t mod = 1;
    for (unsigned i = 0; i < digits; i++)
        mod *= 10;
    sodium_memzero(mac, sizeof(mac));
    return bin % mod;
}

uint64_t totp_step(uint64_t unix_s)
{
    return unix_s / TOTP_STEP_S;
}

int totp_code_parse(const char *s, size_t len, uint32_t *code)
{
    uint32_t v = 0;
    unsigned nd = 0;
    if (len > 16)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            continue;
        if (s[i] < '0' || s[i] > '9' || ++nd > TOTP_DIGITS)
            return -EINVAL;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    if (nd != TOTP_DIGITS)
        return -EINVAL;
    *code = v;
    return 0;
}

int totp_verify(const uint8_t *key, size_t keylen, uint32_t code, uint64_t now_step,
                uint64_t last_step, uint64_t *step)
{
    int found = 0, replay = 0;
    uint64_t match = 0;
    for (int d = -TOTP_WINDOW; d <= TOTP_WINDOW; d++) {
        if (d < 0 && now_step < (uint64_t)-d)
            continue;
        uint64_t s = now_step + (uint64_t)(int64_t)d;
        int64_t want = totp_hotp(key, keylen, s, TOTP_DIGITS);
        if (want < 0)
            return -EIO;
        uint32_t w = (uint32_t)want;
        /* branch-free equality of the two numbers: no early exit on the first match */
        int eq = sodium_memcmp(&w, &code, sizeof(w)) == 0;
        int fresh = s > last_step;
        if (eq && fresh && !found) {
            found = 1;
            match = s;
        }
        replay |= eq && !fresh;
    }
    if (found) {
        *step = match;
        return 0;
    }
    return replay ? -EALREADY : -EACCES;
}

size_t totp_base32(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        acc = acc << 8 | in[i];
        bits += 8;
        while (bits >= 5) {
            if (o + 1 < cap)
                out[o++] = B32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0 && o + 1 < cap)
        out[o++] = B32[(acc << (5 - bits)) & 31];
    if (cap)
        out[o] = '\0';
    /* otpauth:// secrets are customarily upper case */
    for (size_t i = 0; i < o; i++)
        if (out[i] >= 'a' && out[i] <= 'z')
            out[i] = (char)(out[i] - 'a' + 'A');
    return o;
}

static size_t pct(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_';
        if (o + 4 >= cap)
            return cap;
        o += plain ? (size_t)snprintf(out + o, cap - o, "%c", c)
                   : (size_t)snprintf(out + o, cap - o, "%%%02X", c);
    }
    out[o] = '\0';
    return o;
}

int totp_uri(const char *issuer, const char *user, const uint8_t secret[TOTP_SECRET_BYTES],
             char *out, size_t cap)
{
    char ei[200], eu[200], b32[TOTP_B32_MAX];
    if (pct(issuer, ei, sizeof(ei)) >= sizeof(ei) || pct(user, eu, sizeof(eu)) >= sizeof(eu))
        return -ENOSPC;
    totp_base32(secret, TOTP_SECRET_BYTES, b32, sizeof(b32));
    int n = snprintf(out, cap,
                     "otpauth://totp/%s:%s?secret=%s&issuer=%s&algorithm=SHA1&digits=%d&period=%d",
                     ei, eu, b32, ei, TOTP_DIGITS, TOTP_STEP_S);
    sodium_memzero(b32, sizeof(b32));
    return n < 0 || (size_t)n >= cap ? -ENOSPC : 0;
}

void totp_recovery_make(char text[TOTP_RECOVERY_TEXT + 1])
{
    uint8_t r[TOTP_RECOVERY_CHARS];
    randombytes_buf(r, sizeof(r));
    size_t o = 0;
    for (unsigned i = 0; i < TOTP_RECOVERY_CHARS; i++) {
        if (i && i % 4 == 0)
            text[o++] = '-';
        text[o++] = B32[r[i] & 31]; /* 256 is a multiple of 32: uniform */
    }
    text[o] = '\0';
    sodium_memzero(r, sizeof(r));
}

int totp_recovery_parse(const char *s, size_t len, char canon[TOTP_RECOVERY_CHARS + 1])
{
    size_t n = 0;
    if (len > 40)
        return -EINVAL;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (!memchr(B32, c, 32) || c == '\0' || n >= TOTP_RECOVERY_CHARS)
            return -EINVAL;
        canon[n++] = c;
    }
    if (n != TOTP_RECOVERY_CHARS)
        return -EINVAL;
    canon[n] = '\0';
    return 0;
}

bool totp_is_recovery(const char *s, size_t len)
{
    size_t digits = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == ' ')
            continue;
        if (s[i] < '0' || s[i] > '9')
            return true;
        digits++;
    }
    return digits > TOTP_DIGITS;
}

void totp_recovery_hash(const uint8_t salt[TOTP_SALT_BYTES],
                        const char canon[TOTP_RECOVERY_CHARS + 1], uint8_t out[TOTP_RECOVERY_HASH])
{
    crypto_generichash(out, TOTP_RECOVERY_HASH, (const uint8_t *)canon, TOTP_RECOVERY_CHARS, salt,
                       TOTP_SALT_BYTES);
}
