/* log: leveled, timestamped logging to stderr.
 *
 * One line per event: "2026-11-26T00:16:07.123Z popd[123] INFO  store: opened ...".
 * Secrets never go through here: callers log key ids and fingerprints, never key bytes,
 * token secrets or passwords. */
#ifndef POPMESH_COMMON_LOG_H
#define POPMESH_COMMON_LOG_H

#include <stdbool.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the program name shown in every line and the lowest level printed. */
void log_init(const char *progname, enum log_level min_level);
/* Parses "debug", "info", "warn" or "error"; returns -1 on anything else. */
int log_level_parse(const char *s);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Whether a line of this level is printed: for a caller whose arguments cost something to
 * compute (a formatted address on a hot path), to skip them when the line would be dropped. */
bool log_enabled(enum log_level level);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
