/* adminweb: the status page of the admin listener, loop-free: what admin.c answers at "/",
 * "/login" and "/api/", and the small decoders it applies to a browser's bytes.
 *
 * The page is one HTML document with its CSS and a small script inline (no framework, nothing
 * fetched from elsewhere). The script polls the JSON endpoints every ADMINWEB_POLL_MS and
 * rebuilds the tables in place; it writes every value with textContent, never as HTML, so a
 * name an operator chose cannot become markup. What the server writes into the HTML itself
 * (the signed-in user's name, a message) is escaped with adminweb_html_escape. The inline
 * script and style run under a nonce made per answer (Content-Security-Policy:
 * ADMINWEB_CSP_FMT); nothing else may run, load, frame the page or be posted anywhere but
 * here.
 *
 * /api/NAME answers exactly what `meshctl --json` prints for the matching command: admin.c
 * runs the same control handler in-process (control_call) and renders it with mpjson_text. */
#ifndef POPMESH_NODE_ADMIN_ADMINWEB_H
#define POPMESH_NODE_ADMIN_ADMINWEB_H

#include <stdbool.h>
#include <stddef.h>

#define ADMINWEB_COOKIE      "popmesh_admin" /* not the ingress's popmesh_session */
#define ADMINWEB_SESSION_S   (12u * 3600)    /* s an admin session lasts */
#define ADMINWEB_POLL_MS     2000            /* ms between the page's polls */
#define ADMINWEB_NONCE_CHARS 24              /* base64 of 16 random bytes, unpadded-safe */
#define ADMINWEB_BEARER      "Bearer "       /* the Authorization scheme of API keys */

/* The policy of every HTML answer; %s twice: the nonce. */
#define ADMINWEB_CSP_FMT                                                                          \
    "default-src 'none'; script-src 'nonce-%s'; style-src 'nonce-%s'; connect-src 'self'; "     \
    "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

/* One /api/ endpoint and the control command whose answer it is. */
typedef struct adminweb_api {
    const char *path;    /* "/api/members" */
    const char *command; /* "members" */
    const char *meshctl; /* the meshctl command that prints the same JSON */
    const char *also;    /* NULL, or a second command whose field also_key meshctl adds to */
    const char *also_key; /* the answer when that command succeeds (as `meshctl routes`) */
} adminweb_api_t;

/* The endpoint at path (the target without its query), or NULL. */
const adminweb_api_t *adminweb_api_find(const char *path);
/* Every endpoint, ending with {NULL}. */
extern const adminweb_api_t adminweb_apis[];

/* Finds name=value in an application/x-www-form-urlencoded body or a query string (len
 * bytes, not NUL-terminated) and decodes it ('+' is a space, %XX a byte) into out (cap bytes,
 * NUL-terminated). false when name is absent, its value has a bad escape or a NUL byte, or does
 * not fit. The first occurrence counts. */
bool adminweb_form_get(const char *body, size_t len, const char *name, char *out, size_t cap);

/* The token of an Authorization value "Bearer TOKEN" (scheme case-insensitive, one space;
 * TOKEN the rest, no spaces in it) into out (cap bytes, NUL-terminated). false otherwise or
 * when it does not fit. */
bool adminweb_bearer(const char *v, size_t n, char *out, size_t cap);

/* s HTML-escaped into out (cap bytes, always NUL-terminated; cut short when it does not fit):
 * < > & " ' become entities, control bytes are dropped. */
void adminweb_html_escape(const char *s, char *out, size_t cap);

/* The pages, each a malloc'd NUL-terminated document (caller owns it). nonce: for the CSP
 * (ADMINWEB_NONCE_CHARS characters); user, message: plain text, escaped here (NULL = none). */
char *adminweb_status_page(const char *nonce, const char *user);
char *adminweb_login_page(const char *nonce, const char *message);
char *adminweb_forbidden_page(const char *nonce, const char *user);

#endif
