/* totp: one-time codes of a second factor (RFC 6238 over RFC 4226) and recovery codes.
 *
 * A user who enrolled (meshctl user totp enable) holds a 20-byte secret in an authenticator
 * app; a code is HOTP(secret, floor(unix_s / 30)) with HMAC-SHA-1 and 6 digits, the parameters
 * every app assumes when an otpauth:// URI names none. A code is accepted for the current step
 * and one step either side (a phone's clock a little off, a code typed as it changed), and only
 * for a step after the last one the user's account accepted: a code seen once (by an observer
 * of the screen, a phishing proxy) is not good again anywhere the last accepted step has
 * reached (node/records/totprec.h; docs/security.md, "Second factor").
 *
 * Recovery codes: 10 per enrolment, 16 characters of base32 (80 random bits), shown once as
 * xxxx-xxxx-xxxx-xxxx; the record keeps BLAKE2b-256 of each, keyed by a random per-enrolment
 * salt. 80 bits need no slow hash: an offline search of a stolen record costs 2^79 hashes.
 *
 * Pure: time is passed in, nothing here reads a clock or the store. Codes from clients are
 * parsed strictly (totp_code_parse, totp_recovery_parse) before anything is compared, and
 * compared in constant time. HMAC-SHA-1 is OpenSSL's (libsodium has no SHA-1). */
#ifndef POPMESH_NODE_AUTH_TOTP_H
#define POPMESH_NODE_AUTH_TOTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOTP_SECRET_BYTES   20 /* RFC 4226's recommended 160 bits */
#define TOTP_DIGITS         6
#define TOTP_STEP_S         30 /* s per time step */
#define TOTP_WINDOW         1  /* steps accepted either side of the current one */
#define TOTP_RECOVERY_N     10 /* recovery codes per enrolment */
#define TOTP_RECOVERY_CHARS 16 /* base32 characters of one (80 bits) */
#define TOTP_RECOVERY_TEXT  19 /* "xxxx-xxxx-xxxx-xxxx" */
#define TOTP_RECOVERY_HASH  32 /* bytes of its stored hash */
#define TOTP_SALT_BYTES     16
#define TOTP_B32_MAX        64 /* characters of a base32 secret, with room */
#define TOTP_URI_MAX        512

/* HOTP (RFC 4226) of counter with key, as a number of `digits` digits (1..9). -1 when the HMAC
 * cannot be computed (OpenSSL failure). */
int64_t totp_hotp(const uint8_t *key, size_t keylen, uint64_t counter, unsigned digits);

/* The time step of unix_s: floor(unix_s / TOTP_STEP_S). */
uint64_t totp_step(uint64_t unix_s);

/* A code typed by a user: exactly TOTP_DIGITS ASCII digits, spaces between them ignored (apps
 * show "123 456"); anything else, or more than 16 characters in all, is -EINVAL. */
int totp_code_parse(const char *s, size_t len, uint32_t *code);

/* Checks code against steps now_step - TOTP_WINDOW .. now_step + TOTP_WINDOW, keeping only
 * steps > last_step (the last step the account accepted; 0 = none). Every candidate is
 * computed and compared (constant time in which one matched). 0 with *step = the matching
 * step; -EACCES when none matches; -EALREADY when the code matches a step already used (a
 * replay: said apart so it can be logged as one). */
int totp_verify(const uint8_t *key, size_t keylen, uint32_t code, uint64_t now_step,
                uint64_t last_step, uint64_t *step);

/* RFC 4648 base32 without padding (what otpauth:// carries). out holds len * 8 / 5 + 2 bytes;
 * returns the characters written. */
size_t totp_base32(const uint8_t *in, size_t len, char *out, size_t cap);

/* otpauth://totp/ISSUER:USER?secret=...&issuer=ISSUER&algorithm=SHA1&digits=6&period=30 with
 * issuer and user percent-encoded. 0, or -ENOSPC. */
int totp_uri(const char *issuer, const char *user, const uint8_t secret[TOTP_SECRET_BYTES],
             char *out, size_t cap);

/* A new recovery code: text (TOTP_RECOVERY_TEXT + 1 bytes, "xxxx-xxxx-xxxx-xxxx"). */
void totp_recovery_make(char text[TOTP_RECOVERY_TEXT + 1]);

/* A recovery code typed by a user into its TOTP_RECOVERY_CHARS canonical characters
 * (lowercase base32; '-' and spaces ignored, upper case folded). 0 or -EINVAL. */
int totp_recovery_parse(const char *s, size_t len, char canon[TOTP_RECOVERY_CHARS + 1]);

/* Whether s looks like a recovery code rather than a TOTP code (it has a letter or is longer
 * than the digits): decides which check a login's code field gets. */
bool totp_is_recovery(const char *s, size_t len);

/* BLAKE2b-256 of a canonical recovery code, keyed by salt. */
void totp_recovery_hash(const uint8_t salt[TOTP_SALT_BYTES],
                        const char canon[TOTP_RECOVERY_CHARS + 1], uint8_t out[TOTP_RECOVERY_HASH]);

#endif
