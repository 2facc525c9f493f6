/* httppath: the path of a request target, as routing and access rules see it.
 *
 * A deny rule on "/admin/ *" must hold however the client spells the path: "//admin",
 * "/%61dmin", "/public/../admin" and "/./admin//" all reach /admin at the application, so all
 * must match the rule here. httppath_normalize turns a target's path into one canonical
 * spelling, which routing (resource_match_http) and the rules (auth_rules_match) compare:
 *   - percent escapes are decoded, except %25 ('%'), %3F ('?') and %23 ('#'), which stay
 *     escaped (hex in upper case): decoding them would give the path a second meaning on a
 *     second decode ("%2561" would become "%61", then "a") or end it early ('?', '#');
 *   - empty segments ("//") and "." are dropped; ".." drops the segment before it, never
 *     going above "/";
 *   - a trailing slash is kept ("/app/" is not "/app"), and an empty result is "/";
 *   - the query ('?' and after) and a fragment ('#' and after) are not part of the path: they
 *     are neither decoded nor checked.
 * Refused: a path that does not start with '/' (the authority or asterisk forms), %00, and a
 * '%' not followed by two hex digits.
 *
 * INVARIANTS (tests/fuzz/fuzz_httppath.c checks them): the result is never longer than the
 * input; it never holds "//", "/./", "/../" or NUL, nor ends in "/." or "/.."; normalising it
 * again gives it back unchanged.
 *
 * Loop-free and allocation-free. The application itself still gets the target as the client
 * sent it: this spelling is for decisions at the PoP only. */
#ifndef POPMESH_NODE_HTTP_HTTPPATH_H
#define POPMESH_NODE_HTTP_HTTPPATH_H

#include <stddef.h>
#include <sys/types.h>

/* Normalises the path of target (n bytes, not NUL-terminated) into out (cap bytes, NUL
 * terminated). Returns the length of the result (at least 1), -EINVAL for a path refused
 * above, or -ENOSPC when out is too small (cap > n always suffices). */
ssize_t httppath_normalize(const char *target, size_t n, char *out, size_t cap);

/* The value of a hex digit, or -1. */
int httppath_hexval(int c);

#endif
