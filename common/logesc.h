/* logesc: makes client-controlled text safe to put in a log line.
 *
 * A log line is one event: a user name, Host, path or header value that carries a newline
 * would forge a second "event", and an escape sequence could rewrite what an operator's
 * terminal shows. Every log call that prints bytes a client chose passes them through
 * log_esc first. */
#ifndef POPMESH_COMMON_LOGESC_H
#define POPMESH_COMMON_LOGESC_H

#include <stddef.h>

/* Enough for a 255-byte field fully escaped ("\xHH" per byte) plus the NUL. */
#define LOG_ESC_MAX 1024

/* Writes s[0..n) into out (cap bytes, cap >= 8) with every byte below 0x20, 0x7f, every byte
 * >= 0x80 and the backslash written as "\xHH" (so the result is printable ASCII and can be
 * read back unambiguously). Truncates with "..." if it does not fit. s may be NULL (written as
 * ""). Returns out, always NUL-terminated. */
const char *log_esc(char *out, size_t cap, const char *s, size_t n);

/* log_esc of a NUL-terminated string. */
const char *log_escs(char *out, size_t cap, const char *s);

#endif
