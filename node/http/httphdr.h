/* httphdr: pure checks and rewrites of HTTP header values for the reverse proxy.
 *
 * The proxy speaks for the client to the application (identity headers, the client's
 * address) and for the application to the browser (cookies, redirects): every value here
 * crosses that trust boundary, so each rule is one small function, unit-tested and fuzzed.
 * No I/O, no allocation; strings are (pointer, length), not NUL-terminated unless said. */
#ifndef POPMESH_NODE_HTTP_HTTPHDR_H
#define POPMESH_NODE_HTTP_HTTPHDR_H

#include "node/http/httpmsg.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Whether a header name is canon when compared as CGI and WSGI do: case-insensitive, '_'
 * and '-' the same ("Remote_User" is "remote-user": both become HTTP_REMOTE_USER). */
bool httphdr_name_is(const char *name, size_t n, const char *canon);

/* Whether a request header name belongs to what the proxy alone may tell the application:
 * the identity it authenticated (Remote-*, X-Popmesh-*), the client's address and the original
 * request (X-Forwarded-*, Forwarded, X-Real-IP, X-Client-IP, True-Client-IP, X-Original-URL,
 * X-Rewrite-URL), in any spelling httphdr_name_is accepts. A client's copy is dropped. */
bool httphdr_reserved_request_name(const char *name, size_t n);

/* Host = uri-host [ ":" port ]: a reg-name (unreserved, sub-delims, %HH; no ':'), an IPv4
 * address (a reg-name too) or an IP-literal "[...]" (hex digits, ':' and '.'), then at most
 * one ":" and 1..5 digits <= 65535. An empty Host is valid (no authority). This is RFC 9110's
 * Host, not common/netaddr's "host:port" (which wants a port and no escapes): a client's
 * header is checked against what HTTP allows, an operator's address against what popmesh
 * binds and dials. */
bool httphdr_host_valid(const char *s, size_t n);

/* The redirect target after sign-in, from the already form-decoded rd parameter: only a path
 * on this host. Refused (-EINVAL): a byte below 0x20 or 0x7f (browsers strip TAB/CR/LF from
 * URLs, so "/\t/evil" would become "//evil"), a backslash (read as '/'), anything not starting
 * with one '/', a bad %-escape, and a path that once percent-decoded holds a control byte or a
 * backslash or starts with "//". Bytes >= 0x80 and those not allowed in a URL are
 * percent-encoded; escapes are kept (hex upper-cased). Writes a NUL-terminated result into out
 * (cap bytes); -ENOSPC if it does not fit. */
int httphdr_redirect_target(const char *rd, size_t n, char *out, size_t cap);

/* Whether a request comes from another site's page: Sec-Fetch-Site, when present, neither
 * "same-origin" nor "none" (typed by the user); without it, an Origin header ("null"
 * included) whose host[:port] is not the request's Host. A request with neither header (curl,
 * scripts, browsers too old to send them) is not cross-site by this test. */
bool httphdr_cross_site(const http_head_t *h);

/* Whether a Set-Cookie value sets the cookie `name` (case-insensitive, spaces around the name
 * ignored, and a nameless "Set-Cookie: name" too: browsers store that as a cookie whose value
 * is the name). */
bool httphdr_set_cookie_is(const char *v, size_t n, const char *name);

/* The cookie `name` in the request's Cookie headers. Returns how many distinct values it has
 * (0, 1 or 2 for "two or more"); *v and *vl: the first one (borrowed from h). */
int httphdr_cookie_find(const http_head_t *h, const char *name, const char **v, size_t *vl);

/* Every cookie of the request's Cookie headers but those named `name`, joined with "; " into
 * out (cap bytes, no NUL). Returns the length (0: none left), -ENOSPC if they do not fit. */
ssize_t httphdr_cookie_without(const http_head_t *h, const char *name, char *out, size_t cap);

/* Whether an Authorization value carries a popmesh API key ("Bearer pmk1..."): popmesh
 * consumes it, the application must not see it. */
bool httphdr_is_apikey_auth(const char *v, size_t n);

/* A Sec-WebSocket-Key as RFC 6455 wants it: base64 of 16 bytes (24 characters, "==" end). */
bool httphdr_ws_key_valid(const char *key, size_t n);

#define HTTPHDR_WS_ACCEPT_LEN 28 /* base64 of a SHA-1 */

/* out = base64(SHA-1(key || "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), NUL-terminated. */
void httphdr_ws_accept(const char *key, size_t n, char out[HTTPHDR_WS_ACCEPT_LEN + 1]);

/* Checks a 101 answer to a WebSocket request with Sec-WebSocket-Key key: Upgrade is
 * "websocket", Connection lists "upgrade", exactly one Sec-WebSocket-Accept, equal to
 * httphdr_ws_accept(key). NULL if it holds, else a static reason. */
const char *httphdr_ws_check_101(const http_head_t *resp, const char *key, size_t n);

/* SHA-1 (FIPS 180-4), only for the WebSocket handshake above (not a security function there:
 * it proves the application speaks WebSocket). libsodium has none. */
void httphdr_sha1(const void *data, size_t n, unsigned char out[20]);

#endif
