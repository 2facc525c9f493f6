/* resource: see resource.h.
 *
 * The decoder is table-driven like registry.c's: each field names its key, its kind and where
 * it goes; keys it does not know are skipped (so later fields can be added without breaking older
 * nodes), a key seen twice is refused (which of the two would count is otherwise up to the
 * decoder, and two nodes must never read one record two ways). Decoding only checks shapes and
 * sizes; resource_check then applies the same rules resource.add applies, so a record from
 * another node is held to the standard of a local command. */
#include "node/records/resource.h"

#include "common/netaddr.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"
#include "node/records/registry.h"
#include "node/dataplane/tconn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include <sodium.h>

int resource_key(const char *name, char *out, size_t len)
{
    if (nodecfg_check_name(name))
        return -EINVAL;
    int n = snprintf(out, len, RESOURCE_PREFIX "%s", name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

static int check_http_path(const char *path, size_t pl, const char **why)
{
    if (pl == 0 || path[0] != '/') {
        *why = "the PATH of an http health check must start with '/' (http:/PATH)";
        return -EINVAL;
    }
    if (pl > RESOURCE_HTTP_PATH_MAX) {
        *why = "the PATH of an http health check is longer than 200 bytes";
        return -EINVAL;
    }
    for (size_t i = 0; i < pl; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c <= ' ' || c >= 0x7f) {
            *why = "the PATH of an http health check must be printable ASCII without spaces";
            return -EINVAL;
        }
    }
    return 0;
}

int resource_health_parse(const char *s, size_t len, resource_t *r, const char **why)
{
    if (len == 3 && memcmp(s, "tcp", 3) == 0) {
        r->health = RESOURCE_HEALTH_TCP;
        r->http_path[0] = '\0';
        return 0;
    }
    if (len < 5 || memcmp(s, "http:", 5) != 0) {
        *why = "health must be 'tcp' or 'http:/PATH'";
        return -EINVAL;
    }
    const char *path = s + 5;
    size_t pl = len - 5;
    if (check_http_path(path, pl, why))
        return -EINVAL;
    r->health = RESOURCE_HEALTH_HTTP;
    memcpy(r->http_path, path, pl);
    r->http_path[pl] = '\0';
    return 0;
}

void resource_health_str(const resource_t *r, char *out, size_t len)
{
    if (r->health == RESOURCE_HEALTH_HTTP)
        snprintf(out, len, "http:%s", r->http_path);
    else
        snprintf(out, len, "tcp");
}

static int refuse(char *buf, size_t len, const char **why, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int refuse(char *buf, size_t len, const char **why, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    *why = buf;
    return -EINVAL;
}

#define NAME_RULE "1-63 of a-z, 0-9 and '-', not starting or ending with '-'"
#define HOST_RULE                                                                                  \
    "a lowercase DNS name: at most 253 bytes, labels of 1-63 of a-z, 0-9 and '-' not "             \
    "starting or ending with '-', separated by '.'; or '*.' and such a name of two labels or "     \
    "more, for every name one label below it"

int resource_auth_parse(const char *s, size_t len, enum resource_auth *auth)
{
    if (len == 4 && memcmp(s, "none", 4) == 0)
        *auth = RESOURCE_AUTH_NONE;
    else if (len == 5 && memcmp(s, "login", 5) == 0)
        *auth = RESOURCE_AUTH_LOGIN;
    else
        return -EINVAL;
    return 0;
}

const char *resource_auth_str(enum resource_auth auth)
{
    return auth == RESOURCE_AUTH_LOGIN ? "login" : "none";
}

/* No trailing '.', no upper case: the host is compared byte for byte with the lowercased Host
 * of a request, so there is exactly one spelling of each. A wildcard is "*." and a name of two
 * labels or more ("*.com" would claim a whole TLD), as in certificates (RFC 6125 6.4.3). */
static bool host_ok(const char *h, size_t len)
{
    if (len > 2 && h[0] == '*' && h[1] == '.') {
        if (!memchr(h + 2, '.', len - 2))
            return false;
        h += 2, len -= 2;
    }
    if (len == 0 || len > RESOURCE_HOST_MAX)
        return false;
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? h[i] : '.';
        if (c == '.') {
            if (label == 0 || label > 63 || h[i - 1] == '-' || h[i - label] == '-')
                return false;
            label = 0;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            label++;
        } else {
            return false;
        }
    }
    return true;
}

/* '?' and '#' would end a request's path before them, so a prefix holding one never matches. */
static int check_path_prefix(const char *p, char *buf, size_t len, const char **why)
{
    size_t pl = strnlen(p, RESOURCE_PREFIX_MAX + 1);
    if (pl == 0 || p[0] != '/')
        return refuse(buf, len, why, "path_prefix '%s' must start with '/'", p);
    if (pl > RESOURCE_PREFIX_MAX)
        return refuse(buf, len, why, "path_prefix is longer than %d bytes", RESOURCE_PREFIX_MAX);
    for (size_t i = 0; i < pl; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= ' ' || c >= 0x7f || c == '?' || c == '#')
            return refuse(buf, len, why,
                          "path_prefix '%s' must be printable ASCII without spaces, '?' or '#'", p);
    }
    /* The HTTP ingress matches the request's path as normalised (dot segments removed, no
     * empty segment), so a prefix holding one of those could never match anything. */
    for (const char *seg = p + 1; seg <= p + pl;) {
        const char *end = strchr(seg, '/');
        size_t sl = end ? (size_t)(end - seg) : strlen(seg);
        if ((sl == 1 && seg[0] == '.') || (sl == 2 && seg[0] == '.' && seg[1] == '.'))
            return refuse(buf, len, why,
                          "path_prefix '%s' holds a '.' or '..' segment; request paths are "
                          "matched without them, so it could never match: write the path "
                          "they stand for",
                          p);
        if (sl == 0 && end)
            return refuse(buf, len, why,
                          "path_prefix '%s' holds '//'; request paths are matched without empty "
                          "segments, so it could never match",
                          p);
        if (!end)
            break;
        seg = end + 1;
    }
    return 0;
}

static int check_names(const char (*v)[NODECFG_NAME_MAX + 1], unsigned n, const char *what,
                       char *buf, size_t len, const char **why)
{
    if (n > RESOURCE_ALLOW_MAX)
        return refuse(buf, len, why, "%s holds at most %d names, not %u", what, RESOURCE_ALLOW_MAX,
                      n);
    for (unsigned i = 0; i < n; i++) {
        if (nodecfg_check_name(v[i]))
            return refuse(buf, len, why, "%s: name '%s' is invalid (" NAME_RULE ")", what, v[i]);
        for (unsigned j = 0; j < i; j++)
            if (strcmp(v[i], v[j]) == 0)
                return refuse(buf, len, why, "%s: '%s' is listed twice", what, v[i]);
    }
    return 0;
}

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* name equals canon without case, '_' counting as '-' (how CGI and WSGI read names). */
static bool hname_is(const char *name, const char *canon)
{
    for (; *name && *canon; name++, canon++) {
        char a = *name == '_' ? '-' : (char)tolower((unsigned char)*name);
        if (a != *canon)
            return false;
    }
    return !*name && !*canon;
}

static bool hname_starts(const char *name, const char *canon)
{
    for (; *canon; name++, canon++) {
        char a = *name == '_' ? '-' : (char)tolower((unsigned char)*name);
        if (!*name || a != *canon)
            return false;
    }
    return true;
}

/* Why a header name may not be in a rule (NULL: it may). */
static const char *rule_name_refused(const char *n, bool request, bool set)
{
    static const char *const hop[] = {"connection", "keep-alive", "te", "trailer",
                                      "transfer-encoding", "upgrade", "content-length"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (hname_is(n, hop[i]))
            return "is a hop-by-hop or framing header (a rule on it could smuggle a request)";
    if (hname_starts(n, "proxy-"))
        return "is a hop-by-hop header (a rule on it could smuggle a request)";
    if (!request)
        return set && hname_is(n, "set-cookie") ? "cannot be set by a rule (the proxy filters "
                                                  "the application's cookies)"
                                                : NULL;
    if (hname_is(n, "host"))
        return set ? "cannot be set by a rule: use host_rewrite"
                   : "cannot be removed: every request carries a Host";
    if (hname_is(n, "cookie") || hname_is(n, "authorization"))
        return "is handled by the proxy (session cookie and API keys are taken out)";
    if (hname_starts(n, "remote-") || hname_starts(n, "x-popmesh-") ||
        hname_starts(n, "x-forwarded-") || hname_is(n, "forwarded") || hname_is(n, "x-real-ip"))
        return "is said by the proxy alone (identity and client address)";
    return NULL;
}

static int check_rule_name(const char *n, bool request, bool set, const char *what, char *buf,
                           size_t len, const char **why)
{
    size_t l = strnlen(n, RESOURCE_HDR_NAME_MAX + 1);
    if (l == 0 || l > RESOURCE_HDR_NAME_MAX)
        return refuse(buf, len, why, "%s: a header name of 1 to %d bytes is needed", what,
                      RESOURCE_HDR_NAME_MAX);
    for (size_t i = 0; i < l; i++)
        if (!is_tchar((unsigned char)n[i]))
            return refuse(buf, len, why, "%s: '%.64s' is not a header name (a token)", what, n);
    const char *no = rule_name_refused(n, request, set);
    if (no)
        return refuse(buf, len, why, "%s: %.64s %s", what, n, no);
    return 0;
}

static int check_rules(const resource_t *r, char *buf, size_t len, const char **why)
{
    if (r->nreq_set > RESOURCE_RULES_MAX || r->nreq_remove > RESOURCE_RULES_MAX ||
        r->nresp_set > RESOURCE_RULES_MAX || r->nresp_remove > RESOURCE_RULES_MAX)
        return refuse(buf, len, why, "at most %d header rules of each kind", RESOURCE_RULES_MAX);
    for (int dir = 0; dir < 2; dir++) {
        bool req = dir == 0;
        const resource_hdr_t *set = req ? r->req_set : r->resp_set;
        unsigned ns = req ? r->nreq_set : r->nresp_set;
        const char (*rm)[RESOURCE_HDR_NAME_MAX + 1] = req ? r->req_remove : r->resp_remove;
        unsigned nr = req ? r->nreq_remove : r->nresp_remove;
        const char *ws = req ? "set-header" : "set-response-header";
        const char *wr = req ? "remove-header" : "remove-response-header";
        for (unsigned i = 0; i < ns; i++) {
            if (check_rule_name(set[i].name, req, true, ws, buf, len, why))
                return -EINVAL;
            size_t vl = strnlen(set[i].value, RESOURCE_HDR_VALUE_MAX + 1);
            if (vl > RESOURCE_HDR_VALUE_MAX)
                return refuse(buf, len, why, "%s %s: the value is longer than %d bytes", ws,
                              set[i].name, RESOURCE_HDR_VALUE_MAX);
            for (size_t k = 0; k < vl; k++) {
                unsigned char c = (unsigned char)set[i].value[k];
                if ((c < 0x20 && c != '\t') || c >= 0x7f)
                    return refuse(buf, len, why,
                                  "%s %s: the value holds a control byte (CR, LF...) or a byte "
                                  "above 0x7e: a header value is printable text",
                                  ws, set[i].name);
            }
        }
        for (unsigned i = 0; i < nr; i++)
            if (check_rule_name(rm[i], req, false, wr, buf, len, why))
                return -EINVAL;
        /* Each name once in a direction: two rules on one header would contradict. */
        for (unsigned i = 0; i < ns + nr; i++)
            for (unsigned k = i + 1; k < ns + nr; k++) {
                const char *a = i < ns ? set[i].name : rm[i - ns];
                const char *b = k < ns ? set[k].name : rm[k - ns];
                if (!strcasecmp(a, b))
                    return refuse(buf, len, why, "header %.64s has two %s rules", a,
                                  req ? "request" : "response");
            }
    }
    if (r->host_rewrite[0]) {
        size_t hl = strnlen(r->host_rewrite, sizeof(r->host_rewrite));
        const char *colon = memchr(r->host_rewrite, ':', hl);
        size_t nl = colon ? (size_t)(colon - r->host_rewrite) : hl;
        bool ok = nl > 0 && nl <= RESOURCE_HOST_MAX && hl < sizeof(r->host_rewrite);
        for (size_t i = 0; ok && i < nl; i++) {
            char c = r->host_rewrite[i];
            ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
        }
        if (ok && colon) {
            size_t pl = hl - nl - 1;
            ok = pl >= 1 && pl <= 5;
            unsigned long p = 0;
            for (size_t i = 0; ok && i < pl; i++) {
                ok = colon[1 + i] >= '0' && colon[1 + i] <= '9';
                p = p * 10 + (unsigned long)(colon[1 + i] - '0');
            }
            ok = ok && p >= 1 && p <= 65535;
        }
        if (!ok)
            return refuse(buf, len, why,
                          "host_rewrite '%.80s' is not a lowercase host name or IPv4 address "
                          "with an optional :port",
                          r->host_rewrite);
    }
    if (r->strip_prefix[0]) {
        size_t pl = strnlen(r->strip_prefix, sizeof(r->strip_prefix));
        bool ok = r->strip_prefix[0] == '/' && pl >= 2 && pl <= RESOURCE_PREFIX_MAX &&
                  r->strip_prefix[pl - 1] != '/';
        for (size_t i = 0; ok && i < pl; i++) {
            char c = r->strip_prefix[i];
            ok = c > ' ' && c < 0x7f && c != '?' && c != '#' && c != '%';
        }
        if (!ok)
            return refuse(buf, len, why,
                          "strip_prefix '%.80s' must be a path of 2 to %d printable bytes "
                          "starting with '/', not ending with '/', without spaces, '?', '#' or "
                          "'%%'",
                          r->strip_prefix, RESOURCE_PREFIX_MAX);
    }
    return 0;
}

static int check_http(const resource_t *r, char *buf, size_t len, const char **why)
{
    if (!r->host[0] && resource_rules_set(r))
        return refuse(buf, len, why, "header, host and prefix rules need a host (HTTP)");
    if (r->host[0] && check_rules(r, buf, len, why))
        return -EINVAL;
    if (!r->host[0]) {
        if (r->path_prefix[0] || r->auth != RESOURCE_AUTH_NONE || r->nallow_users ||
            r->nallow_groups || r->no_https_redirect || r->hsts_s || r->require_2fa)
            return refuse(buf, len, why,
                          "path_prefix, auth, allow_users, allow_groups, no_https_redirect, "
                          "hsts and require_2fa need a host");
        return 0;
    }
    if (r->require_2fa && r->auth != RESOURCE_AUTH_LOGIN)
        return refuse(buf, len, why, "require_2fa needs auth login");
    if (r->hsts_s > RESOURCE_HSTS_MAX)
        return refuse(buf, len, why, "hsts is at most %d s (two years)", RESOURCE_HSTS_MAX);
    if (!host_ok(r->host, strnlen(r->host, sizeof(r->host))))
        return refuse(buf, len, why, "host '%s' is invalid (" HOST_RULE ")", r->host);
    if (check_path_prefix(r->path_prefix, buf, len, why))
        return -EINVAL;
    if (r->auth != RESOURCE_AUTH_NONE && r->auth != RESOURCE_AUTH_LOGIN)
        return refuse(buf, len, why, "auth must be 'none' or 'login'");
    if ((r->nallow_users || r->nallow_groups) && r->auth != RESOURCE_AUTH_LOGIN)
        return refuse(buf, len, why,
                      "allow_users and allow_groups need auth login (with auth none anyone "
                      "gets in)");
    if (check_names(r->allow_users, r->nallow_users, "allow_users", buf, len, why) ||
        check_names(r->allow_groups, r->nallow_groups, "allow_groups", buf, len, why))
        return -EINVAL;
    return 0;
}

/* ---- health-check settings ------------------------------------------------------------- */

/* One item of an hc_status list: "204", "3xx" or "500-503". */
static int status_item(const char *s, size_t len, resource_code_range_t *out)
{
    unsigned v[2] = {0, 0};
    if (len == 3 && s[0] >= '1' && s[0] <= '5' && (s[1] == 'x' || s[1] == 'X') &&
        (s[2] == 'x' || s[2] == 'X')) {
        out->lo = (uint16_t)((s[0] - '0') * 100);
        out->hi = (uint16_t)(out->lo + 99);
        return 0;
    }
    if (len != 3 && len != 7)
        return -EINVAL;
    for (size_t k = 0; k < len; k += 4) {
        for (size_t i = k; i < k + 3; i++) {
            if (s[i] < '0' || s[i] > '9')
                return -EINVAL;
            v[k / 4] = v[k / 4] * 10 + (unsigned)(s[i] - '0');
        }
        if (k == 0 && len == 7 && s[3] != '-')
            return -EINVAL;
    }
    if (len == 3)
        v[1] = v[0];
    if (v[0] < 100 || v[1] > 599 || v[0] > v[1])
        return -EINVAL;
    out->lo = (uint16_t)v[0];
    out->hi = (uint16_t)v[1];
    return 0;
}

int resource_hc_status_parse(const char *s, size_t len, resource_t *r, char *why_buf,
                             size_t why_len, const char **why)
{
    resource_code_range_t v[RESOURCE_HC_STATUS_MAX];
    unsigned n = 0;
    if (len == 0)
        return refuse(why_buf, why_len, why,
                      "hc_status is empty (leave it out for the default, 200 to 399)");
    if (len >= RESOURCE_HC_STATUS_STR)
        return refuse(why_buf, why_len, why, "hc_status is longer than %d bytes",
                      RESOURCE_HC_STATUS_STR - 1);
    for (size_t start = 0; start <= len;) {
        const char *comma = memchr(s + start, ',', len - start);
        size_t end = comma ? (size_t)(comma - s) : len;
        if (n == RESOURCE_HC_STATUS_MAX)
            return refuse(why_buf, why_len, why, "hc_status holds at most %d items",
                          RESOURCE_HC_STATUS_MAX);
        if (status_item(s + start, end - start, &v[n]))
            return refuse(why_buf, why_len, why,
                          "hc_status item '%.*s' is not an HTTP status code (100 to 599), a class "
                          "(1xx to 5xx) or a range (500-503); items are separated by ','",
                          (int)(end - start), s + start);
        n++;
        start = end + 1;
    }
    memcpy(r->hc_status, v, n * sizeof(v[0]));
    r->nhc_status = n;
    return 0;
}

void resource_hc_status_str(const resource_t *r, char *out, size_t len)
{
    size_t off = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < r->nhc_status && i < RESOURCE_HC_STATUS_MAX && off < len; i++) {
        const resource_code_range_t *c = &r->hc_status[i];
        const char *sep = i ? "," : "";
        int w;
        if (c->lo % 100 == 0 && c->hi == c->lo + 99)
            w = snprintf(out + off, len - off, "%s%uxx", sep, c->lo / 100u);
        else if (c->lo == c->hi)
            w = snprintf(out + off, len - off, "%s%u", sep, c->lo);
        else
            w = snprintf(out + off, len - off, "%s%u-%u", sep, c->lo, c->hi);
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

bool resource_hc_set(const resource_t *r)
{
    return r->hc_interval_ms || r->hc_timeout_ms || r->hc_rise || r->hc_fall || r->nhc_status ||
           r->hc_host[0];
}

/* hc_host goes into a request header: a lowercase name or IPv4 address (no wildcard), then an
 * optional ":port" from 1 to 65535. */
static bool hc_host_ok(const char *h, size_t len)
{
    const char *colon = memchr(h, ':', len);
    if (colon) {
        size_t pl = len - (size_t)(colon - h) - 1;
        unsigned long port = 0;
        if (pl == 0 || pl > 5 || colon[1] == '0')
            return false;
        for (size_t i = 1; i <= pl; i++) {
            if (colon[i] < '0' || colon[i] > '9')
                return false;
            port = port * 10 + (unsigned long)(colon[i] - '0');
        }
        if (port > 65535)
            return false;
        len = (size_t)(colon - h);
    }
    return len > 0 && len <= RESOURCE_HOST_MAX && h[0] != '*' && host_ok(h, len);
}

static int check_hc(const resource_t *r, char *buf, size_t len, const char **why)
{
    if (r->hc_interval_ms && (r->hc_interval_ms < RESOURCE_HC_INTERVAL_MIN ||
                              r->hc_interval_ms > RESOURCE_HC_INTERVAL_MAX))
        return refuse(buf, len, why,
                      "hc_interval_ms %u is out of range (%u to %u ms; leave it out for the "
                      "default, 1000)",
                      r->hc_interval_ms, RESOURCE_HC_INTERVAL_MIN, RESOURCE_HC_INTERVAL_MAX);
    if (r->hc_timeout_ms &&
        (r->hc_timeout_ms < RESOURCE_HC_TIMEOUT_MIN || r->hc_timeout_ms > RESOURCE_HC_TIMEOUT_MAX))
        return refuse(buf, len, why,
                      "hc_timeout_ms %u is out of range (%u to %u ms; leave it out for the "
                      "default, 800)",
                      r->hc_timeout_ms, RESOURCE_HC_TIMEOUT_MIN, RESOURCE_HC_TIMEOUT_MAX);
    if (r->hc_rise > RESOURCE_HC_RISE_FALL_MAX || r->hc_fall > RESOURCE_HC_RISE_FALL_MAX)
        return refuse(buf, len, why, "hc_rise and hc_fall are from 1 to %u, not %u",
                      RESOURCE_HC_RISE_FALL_MAX,
                      r->hc_rise > RESOURCE_HC_RISE_FALL_MAX ? r->hc_rise : r->hc_fall);
    if (r->nhc_status > RESOURCE_HC_STATUS_MAX)
        return refuse(buf, len, why, "hc_status holds at most %d items, not %u",
                      RESOURCE_HC_STATUS_MAX, r->nhc_status);
    for (unsigned i = 0; i < r->nhc_status; i++) {
        const resource_code_range_t *c = &r->hc_status[i];
        if (c->lo < 100 || c->hi > 599 || c->lo > c->hi)
            return refuse(buf, len, why, "hc_status range %u-%u is not within 100 to 599", c->lo,
                          c->hi);
    }
    size_t hl = strnlen(r->hc_host, sizeof(r->hc_host));
    if (hl && !hc_host_ok(r->hc_host, hl))
        return refuse(buf, len, why,
                      "hc_host '%.*s' is not a lowercase host name or IPv4 address with an "
                      "optional :port",
                      (int)(hl > 80 ? 80 : hl), r->hc_host);
    if ((r->nhc_status || hl) && r->health != RESOURCE_HEALTH_HTTP)
        return refuse(buf, len, why,
                      "hc_status and hc_host need an http health check (health http:/PATH)");
    return 0;
}

/* ---- targets ----------------------------------------------------------------------------- */

const char *resource_target_site(const resource_t *r, unsigned i)
{
    return r->tsite[i][0] ? r->tsite[i] : r->site;
}

unsigned resource_target_priority(const resource_t *r, unsigned i)
{
    return r->tprio[i] ? r->tprio[i] : 1;
}

unsigned resource_target_weight(const resource_t *r, unsigned i)
{
    return r->tweight[i] ? r->tweight[i] : 1;
}

bool resource_target_in(const resource_t *r, unsigned i, const char *site)
{
    return strcmp(resource_target_site(r, i), site) == 0;
}

static bool has_any(const struct reg_node *n, const char (*labels)[NODECFG_NAME_MAX + 1],
                    unsigned nl)
{
    if (!nl)
        return true;
    for (unsigned i = 0; i < nl; i++)
        if (reg_node_has_label(n, labels[i]))
            return true;
    return false;
}

bool resource_pop_allowed(const resource_t *r, const struct reg_node *n, bool ingress)
{
    return has_any(n, r->transit_labels, r->ntransit_labels) &&
           (!ingress || has_any(n, r->ingress_labels, r->ningress_labels));
}

bool resource_multisite(const resource_t *r)
{
    for (unsigned i = 0; i < r->ntargets; i++)
        if (!resource_target_in(r, i, r->site))
            return true;
    return false;
}

int resource_check(const resource_t *r, char *why_buf, size_t why_len, const char **why)
{
    if (nodecfg_check_name(r->name))
        return refuse(why_buf, why_len, why, "resource name '%s' is invalid (" NAME_RULE ")",
                      r->name);
    if (nodecfg_check_name(r->site))
        return refuse(why_buf, why_len, why, "site name '%s' is invalid (" NAME_RULE ")", r->site);
    if (r->ntargets == 0)
        return refuse(why_buf, why_len, why, "a resource needs at least one target (HOST:PORT)");
    if (r->ntargets > RESOURCE_TARGETS_MAX)
        return refuse(why_buf, why_len, why, "a resource has at most %d targets, not %u",
                      RESOURCE_TARGETS_MAX, r->ntargets);
    bool in_site = false;
    for (unsigned i = 0; i < r->ntargets; i++) {
        const char *ts = resource_target_site(r, i);
        if (nodecfg_check_addr(r->targets[i], 0))
            return refuse(why_buf, why_len, why,
                          "target '%s' is not HOST:PORT with a port from 1 to 65535 "
                          "(IPv6 in brackets)",
                          r->targets[i]);
        if (nodecfg_check_name(ts))
            return refuse(why_buf, why_len, why,
                          "target '%s': site name '%s' is invalid (" NAME_RULE ")", r->targets[i],
                          ts);
        in_site |= strcmp(ts, r->site) == 0;
        unsigned p = resource_target_priority(r, i), w = resource_target_weight(r, i);
        if (p < 1 || p > RESOURCE_PRIORITY_MAX)
            return refuse(why_buf, why_len, why,
                          "target %s/%s: priority %u is not from 1 to %u (1 is tried first)", ts,
                          r->targets[i], p, RESOURCE_PRIORITY_MAX);
        if (w < 1 || w > RESOURCE_WEIGHT_MAX)
            return refuse(why_buf, why_len, why, "target %s/%s: weight %u is not from 1 to %u",
                          ts, r->targets[i], w, RESOURCE_WEIGHT_MAX);
        for (unsigned j = 0; j < i; j++)
            if (strcmp(r->targets[i], r->targets[j]) == 0 &&
                strcmp(ts, resource_target_site(r, j)) == 0)
                return refuse(why_buf, why_len, why, "target '%s%s%s' is listed twice",
                              r->tsite[i][0] ? ts : "", r->tsite[i][0] ? "/" : "",
                              r->targets[i]);
    }
    if (r->ntargets && !in_site)
        return refuse(why_buf, why_len, why, "no target is in site '%s' (the resource's site)",
                      r->site);
    const struct {
        const char *what;
        const char (*v)[NODECFG_NAME_MAX + 1];
        unsigned n;
    } lists[] = {{"transit_labels", r->transit_labels, r->ntransit_labels},
                 {"ingress_labels", r->ingress_labels, r->ningress_labels}};
    for (int l = 0; l < 2; l++) {
        if (lists[l].n > RESOURCE_LABELS_MAX)
            return refuse(why_buf, why_len, why, "%s holds at most %d labels", lists[l].what,
                          RESOURCE_LABELS_MAX);
        for (unsigned i = 0; i < lists[l].n; i++) {
            if (nodecfg_check_name(lists[l].v[i]))
                return refuse(why_buf, why_len, why, "%s: label '%s' is invalid (" NAME_RULE ")",
                              lists[l].what, lists[l].v[i]);
            for (unsigned j = 0; j < i; j++)
                if (!strcmp(lists[l].v[i], lists[l].v[j]))
                    return refuse(why_buf, why_len, why, "%s: label '%s' is listed twice",
                                  lists[l].what, lists[l].v[i]);
        }
    }
    if (r->udp_port) {
        /* One kind of traffic per resource: a UDP port next to a TCP port or a host would make
         * one set of targets serve two protocols, and its health checks mean one of them. */
        if (r->tcp_port || r->host[0] || r->tls)
            return refuse(why_buf, why_len, why,
                          "a UDP resource (udp_port) has no tcp_port, host or tls: add another "
                          "resource for those");
        if (r->health != RESOURCE_HEALTH_TCP || resource_hc_set(r))
            return refuse(why_buf, why_len, why,
                          "a UDP resource's targets are not health-checked: leave out health and "
                          "the hc_ settings");
        for (unsigned i = 0; i < r->ntargets; i++)
            if (strlen(r->targets[i]) + RESOURCE_UDP_SCHEME_LEN > NODECFG_ADDR_MAX)
                return refuse(why_buf, why_len, why, "UDP target %.60s... is longer than %d bytes",
                              r->targets[i], NODECFG_ADDR_MAX - RESOURCE_UDP_SCHEME_LEN);
    } else if (r->udp_idle_s || r->udp_max_flows) {
        return refuse(why_buf, why_len, why, "udp_idle and udp_max_flows need a udp_port");
    }
    if (r->udp_idle_s > RESOURCE_UDP_IDLE_MAX)
        return refuse(why_buf, why_len, why, "udp_idle %u is not from 1 to %u s", r->udp_idle_s,
                      RESOURCE_UDP_IDLE_MAX);
    if (r->udp_max_flows > RESOURCE_UDP_FLOWS_MAX)
        return refuse(why_buf, why_len, why, "udp_max_flows %u is not from 1 to %u",
                      r->udp_max_flows, RESOURCE_UDP_FLOWS_MAX);
    if (r->tcp_port == 0 && !r->host[0] && !r->udp_port)
        return refuse(why_buf, why_len, why,
                      "a resource needs a tcp_port (1 to 65535), a host, or both, or a udp_port");
    if (r->access_log != 0 && r->access_log != RESOURCE_ACCESS_LOG_OFF &&
        (r->access_log < 2 || r->access_log > RESOURCE_ACCESS_LOG_MAX))
        return refuse(why_buf, why_len, why, "access_log sample:%u is not from 1 to %u",
                      r->access_log, RESOURCE_ACCESS_LOG_MAX);
    if (r->proxy_protocol > 2)
        return refuse(why_buf, why_len, why, "proxy_protocol must be v1 or v2");
    if (r->proxy_protocol && (r->tcp_port == 0 || r->host[0]))
        return refuse(why_buf, why_len, why,
                      "proxy_protocol is for TCP resources: it needs a tcp_port and no host (the "
                      "HTTP ingress names the client in X-Forwarded-For)");
    if (r->origin_tls > RESOURCE_ORIGIN_TLS_INSECURE)
        return refuse(why_buf, why_len, why, "origin_tls must be 0, 1 or 2");
    if (r->has_origin_ca && r->origin_tls != RESOURCE_ORIGIN_TLS)
        return refuse(why_buf, why_len, why,
                      "a CA for the targets needs https:// targets whose certificates are "
                      "checked (not with insecure_skip_verify)");
    if (r->origin_tls && r->health == RESOURCE_HEALTH_HTTP)
        return refuse(why_buf, why_len, why,
                      "an http: health check speaks plain HTTP: use --health tcp with https:// "
                      "targets");
    if (r->tls && r->tcp_port == 0)
        return refuse(why_buf, why_len, why,
                      "tls needs a tcp_port (HTTP hosts get TLS from the HTTPS listener)");
    if (r->health == RESOURCE_HEALTH_HTTP) {
        if (check_http_path(r->http_path, strnlen(r->http_path, sizeof(r->http_path)), why))
            return -EINVAL;
    } else if (r->health != RESOURCE_HEALTH_TCP || r->http_path[0]) {
        return refuse(why_buf, why_len, why, "health must be 'tcp' or 'http:/PATH'");
    }
    if (check_hc(r, why_buf, why_len, why))
        return -EINVAL;
    return check_http(r, why_buf, why_len, why);
}

/* A rule list: [str], each "Name: value" (set) or a name (remove). */
static void pack_rule_list(msgpack_packer *pk, const char *key, const resource_hdr_t *set,
                           const char (*rm)[RESOURCE_HDR_NAME_MAX + 1], unsigned n)
{
    mpw_str(pk, key);
    msgpack_pack_array(pk, n);
    for (unsigned i = 0; i < n; i++) {
        if (rm) {
            mpw_str(pk, rm[i]);
            continue;
        }
        char line[RESOURCE_HDR_NAME_MAX + RESOURCE_HDR_VALUE_MAX + 3];
        snprintf(line, sizeof(line), "%s: %s", set[i].name, set[i].value);
        mpw_str(pk, line);
    }
}

static void pack_names(msgpack_packer *pk, const char *key, const char (*v)[NODECFG_NAME_MAX + 1],
                       unsigned n)
{
    mpw_str(pk, key);
    msgpack_pack_array(pk, n);
    for (unsigned i = 0; i < n; i++)
        mpw_str(pk, v[i]);
}

void resource_pack(msgpack_packer *pk, const resource_t *r)
{
    char health[RESOURCE_HEALTH_MAX + 1], status[RESOURCE_HC_STATUS_STR];
    resource_health_str(r, health, sizeof(health));
    resource_hc_status_str(r, status, sizeof(status));
    unsigned nhc = (r->hc_interval_ms ? 1 : 0) + (r->hc_timeout_ms ? 1 : 0) + (r->hc_rise ? 1 : 0) +
                   (r->hc_fall ? 1 : 0) + (status[0] ? 1 : 0) + (r->hc_host[0] ? 1 : 0);
    /* targets: those in site; tmeta and xtargets only when used (resource.h). */
    unsigned nown = 0, nx = 0, nlab = !!r->ntransit_labels + !!r->ningress_labels;
    bool meta = false;
    for (unsigned i = 0; i < r->ntargets; i++) {
        if (!resource_target_in(r, i, r->site)) {
            nx++;
            continue;
        }
        nown++;
        meta |= resource_target_priority(r, i) != 1 || resource_target_weight(r, i) != 1;
    }
    msgpack_pack_map(pk,
                     (r->host[0] ? 12 + (r->no_https_redirect ? 1 : 0) + (r->hsts_s ? 1 : 0) : 7) +
                         (r->tls ? 1 : 0) + nhc + (meta ? 1 : 0) + (nx ? 1 : 0) + nlab +
                         (r->access_log ? 1 : 0) + (r->host[0] && r->require_2fa ? 1 : 0) +
                         (r->proxy_protocol ? 1 : 0) +
                         (r->udp_port ? 1 + (r->udp_idle_s ? 1 : 0) + (r->udp_max_flows ? 1 : 0)
                                      : 0) +
                         (r->origin_tls ? 1 : 0) + (r->has_origin_ca ? 1 : 0) +
                         !!r->nreq_set + !!r->nreq_remove + !!r->nresp_set + !!r->nresp_remove +
                         !!r->host_rewrite[0] + !!r->strip_prefix[0]);
    if (r->proxy_protocol) /* only when set, like the fields below */
        mpw_kv_u64(pk, "proxy_protocol", r->proxy_protocol);
    if (r->origin_tls) /* likewise */
        mpw_kv_u64(pk, "origin_tls", r->origin_tls);
    if (r->has_origin_ca) {
        mpw_str(pk, "origin_ca");
        mpw_bin(pk, r->origin_ca, sizeof(r->origin_ca));
    }
    /* Request rules, likewise only when set (HTTP resources only: resource_check). */
    if (r->nreq_set)
        pack_rule_list(pk, "req_set", r->req_set, NULL, r->nreq_set);
    if (r->nreq_remove)
        pack_rule_list(pk, "req_remove", NULL, r->req_remove, r->nreq_remove);
    if (r->nresp_set)
        pack_rule_list(pk, "resp_set", r->resp_set, NULL, r->nresp_set);
    if (r->nresp_remove)
        pack_rule_list(pk, "resp_remove", NULL, r->resp_remove, r->nresp_remove);
    if (r->host_rewrite[0])
        mpw_kv_str(pk, "host_rewrite", r->host_rewrite);
    if (r->strip_prefix[0])
        mpw_kv_str(pk, "strip_prefix", r->strip_prefix);
    if (r->access_log) { /* only when not the default, like the fields below */
        char al[RESOURCE_ACCESS_LOG_STR];
        resource_access_log_str(r->access_log, al, sizeof(al));
        mpw_kv_str(pk, "access_log", al);
    }
    if (r->ntransit_labels)
        pack_names(pk, "transit_labels", r->transit_labels, r->ntransit_labels);
    if (r->ningress_labels)
        pack_names(pk, "ingress_labels", r->ingress_labels, r->ningress_labels);
    mpw_kv_str(pk, "name", r->name);
    mpw_kv_str(pk, "site", r->site);
    mpw_str(pk, "targets");
    msgpack_pack_array(pk, nown);
    for (unsigned i = 0; i < r->ntargets; i++)
        if (resource_target_in(r, i, r->site))
            mpw_str(pk, r->targets[i]);
    if (meta) {
        mpw_str(pk, "tmeta");
        msgpack_pack_array(pk, nown);
        for (unsigned i = 0; i < r->ntargets; i++) {
            if (!resource_target_in(r, i, r->site))
                continue;
            msgpack_pack_array(pk, 2);
            msgpack_pack_uint32(pk, resource_target_priority(r, i));
            msgpack_pack_uint32(pk, resource_target_weight(r, i));
        }
    }
    if (nx) {
        mpw_str(pk, "xtargets");
        msgpack_pack_array(pk, nx);
        for (unsigned i = 0; i < r->ntargets; i++) {
            if (resource_target_in(r, i, r->site))
                continue;
            msgpack_pack_array(pk, 4);
            mpw_str(pk, resource_target_site(r, i));
            mpw_str(pk, r->targets[i]);
            msgpack_pack_uint32(pk, resource_target_priority(r, i));
            msgpack_pack_uint32(pk, resource_target_weight(r, i));
        }
    }
    mpw_kv_u64(pk, "tcp_port", r->tcp_port);
    mpw_kv_str(pk, "health", health);
    mpw_kv_bool(pk, "sticky", r->sticky);
    mpw_kv_u64(pk, "created_ms", r->created_ms);
    if (r->tls) /* only when set: a record without it is what the version before wrote */
        mpw_kv_bool(pk, "tls", true);
    /* Health-check settings, likewise only when set. */
    if (r->hc_interval_ms)
        mpw_kv_u64(pk, "hc_interval_ms", r->hc_interval_ms);
    if (r->hc_timeout_ms)
        mpw_kv_u64(pk, "hc_timeout_ms", r->hc_timeout_ms);
    if (r->hc_rise)
        mpw_kv_u64(pk, "hc_rise", r->hc_rise);
    if (r->hc_fall)
        mpw_kv_u64(pk, "hc_fall", r->hc_fall);
    if (status[0])
        mpw_kv_str(pk, "hc_status", status);
    if (r->hc_host[0])
        mpw_kv_str(pk, "hc_host", r->hc_host);
    if (r->udp_port) { /* likewise */
        mpw_kv_u64(pk, "udp_port", r->udp_port);
        if (r->udp_idle_s)
            mpw_kv_u64(pk, "udp_idle", r->udp_idle_s);
        if (r->udp_max_flows)
            mpw_kv_u64(pk, "udp_max_flows", r->udp_max_flows);
    }
    if (!r->host[0])
        return; /* TCP only: the first version's record, byte for byte */
    mpw_kv_str(pk, "host", r->host);
    mpw_kv_str(pk, "path_prefix", r->path_prefix);
    mpw_kv_str(pk, "auth", resource_auth_str(r->auth));
    pack_names(pk, "allow_users", r->allow_users, r->nallow_users);
    pack_names(pk, "allow_groups", r->allow_groups, r->nallow_groups);
    /* Written only when set: a record without them stays what the version before wrote. */
    if (r->no_https_redirect)
        mpw_kv_bool(pk, "no_https_redirect", true);
    if (r->hsts_s)
        mpw_kv_u64(pk, "hsts", r->hsts_s);
    if (r->require_2fa)
        mpw_kv_bool(pk, "require_2fa", true);
}

/* ---- decoding ---------------------------------------------------------------------------- */

static int read_str(mpr_t *r, char *dst, size_t cap)
{
    const char *s;
    uint32_t sl;
    if (mpr_str(r, &s, &sl) || sl >= cap || memchr(s, '\0', sl))
        return -EBADMSG;
    memcpy(dst, s, sl);
    dst[sl] = '\0';
    return 0;
}

static int read_targets(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    uint32_t n;
    if (mpr_array(r, &n)) {
        *why = "targets is not an array";
        return -EBADMSG;
    }
    if (n == 0 || n > RESOURCE_TARGETS_MAX) {
        *why = "targets must hold 1 to 16 addresses";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (read_str(r, res->targets[i], sizeof(res->targets[i]))) {
            *why = "a target is not a string of at most 255 bytes";
            return -EBADMSG;
        }
    }
    res->ntargets = n;
    return 0;
}

/* tmeta and xtargets are read into this and merged once the whole map is read (the fields
 * may come in any order). */
struct xt_read {
    uint32_t nmeta;
    uint16_t meta[RESOURCE_TARGETS_MAX][2]; /* priority, weight */
    uint32_t nx;
    char xsite[RESOURCE_TARGETS_MAX][NODECFG_NAME_MAX + 1];
    char xaddr[RESOURCE_TARGETS_MAX][NODECFG_ADDR_MAX + 1];
    uint16_t xmeta[RESOURCE_TARGETS_MAX][2];
};

/* A priority and a weight, each in its range (resource_check's message would name the value,
 * but a record out of range is no record this code writes). */
static int read_pw(mpr_t *r, uint16_t out[2], const char **why)
{
    uint64_t p, w;
    if (mpr_uint(r, &p) || mpr_uint(r, &w) || p < 1 || p > RESOURCE_PRIORITY_MAX || w < 1 ||
        w > RESOURCE_WEIGHT_MAX) {
        *why = "a target's priority (1..100) or weight (1..1000) is not a number in its range";
        return -EBADMSG;
    }
    out[0] = (uint16_t)p;
    out[1] = (uint16_t)w;
    return 0;
}

static int read_tmeta(mpr_t *r, void *dst, const char **why)
{
    struct xt_read *x = dst;
    uint32_t n, k;
    if (mpr_array(r, &n) || n > RESOURCE_TARGETS_MAX) {
        *why = "tmeta is not a list of at most 16 [priority, weight]";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (mpr_array(r, &k) || k < 2) {
            *why = "a tmeta entry is not [priority, weight]";
            return -EBADMSG;
        }
        if (read_pw(r, x->meta[i], why))
            return -EBADMSG;
        for (; k > 2; k--) /* room to grow */
            if (mpr_skip(r)) {
                *why = "a tmeta entry is truncated";
                return -EBADMSG;
            }
    }
    x->nmeta = n;
    return 0;
}

static int read_xtargets(mpr_t *r, void *dst, const char **why)
{
    struct xt_read *x = dst;
    uint32_t n, k;
    if (mpr_array(r, &n) || n == 0 || n > RESOURCE_TARGETS_MAX) {
        *why = "xtargets is not a list of 1 to 16 [site, addr, priority, weight]";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (mpr_array(r, &k) || k < 4) {
            *why = "an xtargets entry is not [site, addr, priority, weight]";
            return -EBADMSG;
        }
        if (read_str(r, x->xsite[i], sizeof(x->xsite[i])) ||
            read_str(r, x->xaddr[i], sizeof(x->xaddr[i]))) {
            *why = "an xtargets entry's site or address is not a string of its size";
            return -EBADMSG;
        }
        if (read_pw(r, x->xmeta[i], why))
            return -EBADMSG;
        for (; k > 4; k--)
            if (mpr_skip(r)) {
                *why = "an xtargets entry is truncated";
                return -EBADMSG;
            }
    }
    x->nx = n;
    return 0;
}

static int read_names(mpr_t *r, char (*v)[NODECFG_NAME_MAX + 1], unsigned *n, const char **why)
{
    uint32_t cnt;
    if (mpr_array(r, &cnt) || cnt > RESOURCE_ALLOW_MAX) {
        *why = "allow_users and allow_groups must be lists of at most 32 names";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < cnt; i++) {
        if (read_str(r, v[i], sizeof(v[i]))) {
            *why = "a name in allow_users or allow_groups is not a string of at most 63 bytes";
            return -EBADMSG;
        }
    }
    *n = cnt;
    return 0;
}

static int read_allow_users(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    return read_names(r, res->allow_users, &res->nallow_users, why);
}

static int read_allow_groups(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    return read_names(r, res->allow_groups, &res->nallow_groups, why);
}

static int read_label_list(mpr_t *r, char (*v)[NODECFG_NAME_MAX + 1], unsigned *n,
                           const char **why)
{
    uint32_t cnt;
    if (mpr_array(r, &cnt) || cnt == 0 || cnt > RESOURCE_LABELS_MAX) {
        *why = "transit_labels and ingress_labels must be lists of 1 to 8 labels";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < cnt; i++)
        if (read_str(r, v[i], NODECFG_NAME_MAX + 1)) {
            *why = "a label is not a string of at most 63 bytes";
            return -EBADMSG;
        }
    *n = cnt;
    return 0;
}

static int read_transit(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    return read_label_list(r, res->transit_labels, &res->ntransit_labels, why);
}

static int read_ingress(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    return read_label_list(r, res->ingress_labels, &res->ningress_labels, why);
}

/* A rule list: 1..RESOURCE_RULES_MAX strings, "Name: value" into set, or names into rm. */
static int read_rule_list(mpr_t *r, resource_hdr_t *set, char (*rm)[RESOURCE_HDR_NAME_MAX + 1],
                          unsigned *n, const char **why)
{
    uint32_t cnt;
    if (mpr_array(r, &cnt) || cnt == 0 || cnt > RESOURCE_RULES_MAX) {
        *why = "a header rule list is not a list of 1 to 8 strings";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < cnt; i++) {
        const char *s;
        uint32_t sl;
        if (mpr_str(r, &s, &sl)) {
            *why = "a header rule is not a string";
            return -EBADMSG;
        }
        if (set) {
            if (resource_hdr_parse(s, sl, &set[i], why))
                return -EBADMSG;
        } else if (sl == 0 || sl > RESOURCE_HDR_NAME_MAX || memchr(s, '\0', sl)) {
            *why = "a header name in a rule is empty, longer than 64 bytes or holds a NUL";
            return -EBADMSG;
        } else {
            memcpy(rm[i], s, sl);
            rm[i][sl] = '\0';
        }
    }
    *n = cnt;
    return 0;
}

static int read_req_set(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    return read_rule_list(r, res->req_set, NULL, &res->nreq_set, why);
}

static int read_req_remove(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    return read_rule_list(r, NULL, res->req_remove, &res->nreq_remove, why);
}

static int read_resp_set(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    return read_rule_list(r, res->resp_set, NULL, &res->nresp_set, why);
}

static int read_resp_remove(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    return read_rule_list(r, NULL, res->resp_remove, &res->nresp_remove, why);
}

static int read_origin_ca(mpr_t *r, void *dst, const char **why)
{
    resource_t *res = dst;
    const uint8_t *b;
    uint32_t n;
    if (mpr_bin(r, &b, &n) || n != sizeof(res->origin_ca)) {
        *why = "origin_ca is not a 32-byte id";
        return -EBADMSG;
    }
    memcpy(res->origin_ca, b, n);
    res->has_origin_ca = true;
    return 0;
}

int resource_parse(const uint8_t *buf, size_t len, const char *name, resource_t *res, char *why_buf,
                   size_t why_len, const char **why)
{
    char health[256] = ""; /* roomier than legal, so a long PATH gets its own reason */
    char host[RESOURCE_HOST_MAX + 64] = "", prefix[RESOURCE_PREFIX_MAX + 64] = "", auth[16] = "";
    uint64_t port = 0, hsts = 0, hc_num[4] = {0, 0, 0, 0};
    uint64_t proxy = UINT64_MAX; /* stays so when the record has no proxy_protocol */
    uint64_t origin_tls = UINT64_MAX; /* likewise */
    uint64_t udp[3] = {UINT64_MAX, UINT64_MAX, UINT64_MAX}; /* udp_port, udp_idle, udp_max_flows */
    char hc_status[RESOURCE_HC_STATUS_STR + 64] = "", hc_host[RESOURCE_HC_HOST_MAX + 64] = "";
    char access_log[RESOURCE_ACCESS_LOG_STR + 16] = "";
    memset(res, 0, sizeof(*res));
    struct xt_read xtr, *xt = &xtr; /* on the stack: this runs per connection */
    xtr.nmeta = xtr.nx = 0;
    int rc = -EBADMSG;
    mpf_t fs[] = {
        {"name", MPF_STR, res->name, sizeof(res->name), true, false, NULL},
        {"site", MPF_STR, res->site, sizeof(res->site), true, false, NULL},
        {"targets", MPF_CUSTOM, res, 0, true, false, read_targets},
        {"tcp_port", MPF_U64, &port, 0, false, false, NULL}, /* required without a host */
        {"health", MPF_STR, health, sizeof(health), true, false, NULL},
        {"sticky", MPF_BOOL, &res->sticky, 0, false, false, NULL},
        {"created_ms", MPF_U64, &res->created_ms, 0, false, false, NULL},
        {"host", MPF_STR, host, sizeof(host), false, false, NULL},
        {"path_prefix", MPF_STR, prefix, sizeof(prefix), false, false, NULL},
        {"auth", MPF_STR, auth, sizeof(auth), false, false, NULL},
        {"allow_users", MPF_CUSTOM, res, 0, false, false, read_allow_users},
        {"allow_groups", MPF_CUSTOM, res, 0, false, false, read_allow_groups},
        {"no_https_redirect", MPF_BOOL, &res->no_https_redirect, 0, false, false, NULL},
        {"hsts", MPF_U64, &hsts, 0, false, false, NULL},
        {"tls", MPF_BOOL, &res->tls, 0, false, false, NULL},
        {"hc_interval_ms", MPF_U64, &hc_num[0], 0, false, false, NULL}, /* 15 */
        {"hc_timeout_ms", MPF_U64, &hc_num[1], 0, false, false, NULL},
        {"hc_rise", MPF_U64, &hc_num[2], 0, false, false, NULL},
        {"hc_fall", MPF_U64, &hc_num[3], 0, false, false, NULL},
        {"hc_status", MPF_STR, hc_status, sizeof(hc_status), false, false, NULL},
        {"hc_host", MPF_STR, hc_host, sizeof(hc_host), false, false, NULL},
        {"tmeta", MPF_CUSTOM, xt, 0, false, false, read_tmeta}, /* 21 */
        {"xtargets", MPF_CUSTOM, xt, 0, false, false, read_xtargets},
        {"transit_labels", MPF_CUSTOM, res, 0, false, false, read_transit},
        {"ingress_labels", MPF_CUSTOM, res, 0, false, false, read_ingress},
        {"access_log", MPF_STR, access_log, sizeof(access_log), false, false, NULL}, /* 25 */
        {"require_2fa", MPF_BOOL, &res->require_2fa, 0, false, false, NULL},
        /* Read through its sentinel, not its index: entries may be added before it. */
        {"proxy_protocol", MPF_U64, &proxy, 0, false, false, NULL},
        {"origin_tls", MPF_U64, &origin_tls, 0, false, false, NULL},
        {"origin_ca", MPF_CUSTOM, res, 0, false, false, read_origin_ca},
        {"req_set", MPF_CUSTOM, res, 0, false, false, read_req_set},
        {"req_remove", MPF_CUSTOM, res, 0, false, false, read_req_remove},
        {"resp_set", MPF_CUSTOM, res, 0, false, false, read_resp_set},
        {"resp_remove", MPF_CUSTOM, res, 0, false, false, read_resp_remove},
        {"host_rewrite", MPF_STR, res->host_rewrite, sizeof(res->host_rewrite), false, false, NULL},
        {"strip_prefix", MPF_STR, res->strip_prefix, sizeof(res->strip_prefix), false, false, NULL},
        /* UDP: read through their sentinels too (UINT64_MAX: absent). */
        {"udp_port", MPF_U64, &udp[0], 0, false, false, NULL},
        {"udp_idle", MPF_U64, &udp[1], 0, false, false, NULL},
        {"udp_max_flows", MPF_U64, &udp[2], 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        goto out;
    if (fs[21].seen) {
        if (xt->nmeta != res->ntargets) {
            *why = "tmeta does not have one entry per target";
            goto out;
        }
        for (unsigned i = 0; i < res->ntargets; i++) {
            res->tprio[i] = (uint8_t)xt->meta[i][0];
            res->tweight[i] = xt->meta[i][1];
        }
    }
    if (fs[22].seen) {
        if (res->ntargets + xt->nx > RESOURCE_TARGETS_MAX) {
            *why = "targets and xtargets hold more than 16 targets";
            goto out;
        }
        for (uint32_t i = 0; i < xt->nx; i++) {
            unsigned at = res->ntargets++;
            memcpy(res->tsite[at], xt->xsite[i], sizeof(res->tsite[at]));
            memcpy(res->targets[at], xt->xaddr[i], sizeof(res->targets[at]));
            res->tprio[at] = (uint8_t)xt->xmeta[i][0];
            res->tweight[at] = xt->xmeta[i][1];
            if (!strcmp(res->tsite[at], res->site)) {
                *why = "an xtargets entry is in the resource's own site (it belongs in targets)";
                goto out;
            }
        }
    }
    /* Written only when set: a present 0 or "" is no record this code writes. The ranges
     * themselves are resource_check's, which names the value. */
    uint32_t *hc_dst[4] = {&res->hc_interval_ms, &res->hc_timeout_ms, &res->hc_rise, &res->hc_fall};
    for (int i = 0; i < 4; i++) {
        if (!fs[15 + i].seen)
            continue;
        if (hc_num[i] == 0 || hc_num[i] > UINT32_MAX) {
            *why = "a health-check setting (hc_interval_ms, hc_timeout_ms, hc_rise, hc_fall) is 0 "
                   "or too large";
            goto out;
        }
        *hc_dst[i] = (uint32_t)hc_num[i];
    }
    if (origin_tls != UINT64_MAX) { /* written only when set: 1 or 2 */
        if (origin_tls != RESOURCE_ORIGIN_TLS && origin_tls != RESOURCE_ORIGIN_TLS_INSECURE) {
            *why = "origin_tls is not 1 or 2";
            goto out;
        }
        res->origin_tls = (uint8_t)origin_tls;
    }
    if (proxy != UINT64_MAX) { /* written only when set: 1 or 2 */
        if (proxy != 1 && proxy != 2) {
            *why = "proxy_protocol is not 1 or 2";
            goto out;
        }
        res->proxy_protocol = (uint8_t)proxy;
    }
    if (fs[25].seen &&
        resource_access_log_parse(access_log, strlen(access_log), &res->access_log)) {
        *why = "access_log is not off or sample:N (N from 1 to 1000000)";
        goto out;
    }
    if (fs[19].seen &&
        resource_hc_status_parse(hc_status, strlen(hc_status), res, why_buf, why_len, why))
        goto out;
    if (fs[20].seen) {
        if (!hc_host[0] || strlen(hc_host) > RESOURCE_HC_HOST_MAX) {
            *why = "hc_host is empty or longer than 259 bytes";
            goto out;
        }
        memcpy(res->hc_host, hc_host, strlen(hc_host) + 1);
    }
    if (!fs[3].seen && !fs[7].seen) {
        *why = "missing field: tcp_port (a resource needs a tcp_port, a host, or both)";
        goto out;
    }
    /* Written only when set, like the health-check settings; ranges are resource_check's. */
    for (int i = 0; i < 3; i++)
        if (udp[i] != UINT64_MAX && (udp[i] == 0 || udp[i] > (i ? UINT32_MAX : 65535))) {
            *why = "udp_port is not from 1 to 65535, or udp_idle or udp_max_flows is 0 or too "
                   "large";
            goto out;
        }
    res->udp_port = udp[0] == UINT64_MAX ? 0 : (uint16_t)udp[0];
    res->udp_idle_s = udp[1] == UINT64_MAX ? 0 : (uint32_t)udp[1];
    res->udp_max_flows = udp[2] == UINT64_MAX ? 0 : (uint32_t)udp[2];
    if (port > 65535 || (port == 0 && !fs[7].seen && !res->udp_port)) {
        *why = "tcp_port is not from 1 to 65535";
        goto out;
    }
    res->tcp_port = (uint16_t)port;
    if (hsts > RESOURCE_HSTS_MAX) {
        *why = "hsts is more than two years";
        goto out;
    }
    res->hsts_s = (uint32_t)hsts;
    /* The HTTP fields only mean something with a host; resource_check refuses them without
     * one. They are copied over unchecked in length so that check can name the bad value. */
    if (fs[7].seen) {
        if (strlen(host) > RESOURCE_HOST_MAX) {
            *why = "host is longer than 253 bytes";
            goto out;
        }
        memcpy(res->host, host, strlen(host) + 1);
        if (!host[0]) {
            *why = "host is empty (leave it out for a TCP-only resource)";
            goto out;
        }
    }
    if (fs[8].seen || res->host[0]) {
        if (strlen(prefix) > RESOURCE_PREFIX_MAX) {
            *why = "path_prefix is longer than 200 bytes";
            goto out;
        }
        memcpy(res->path_prefix, fs[8].seen ? prefix : "/", (fs[8].seen ? strlen(prefix) : 1) + 1);
        if (!res->path_prefix[0]) {
            *why = "path_prefix is empty (it must start with '/')";
            goto out;
        }
    }
    if (fs[9].seen && resource_auth_parse(auth, strlen(auth), &res->auth)) {
        *why = "auth must be 'none' or 'login'";
        goto out;
    }
    if (resource_health_parse(health, strlen(health), res, why))
        goto out;
    if (resource_check(res, why_buf, why_len, why))
        goto out;
    if (strcmp(res->name, name) != 0) {
        *why = "the record's name is not the name in its key";
        goto out;
    }
    rc = 0;
out:
    return rc;
}

/* ---- access log -------------------------------------------------------------------------- */

void resource_ca_id(const char *pem, size_t len, uint8_t id[32])
{
    crypto_generichash(id, 32, (const uint8_t *)pem, len, (const uint8_t *)"popmesh originca", 16);
}

void resource_ca_key(const uint8_t id[32], char *out, size_t len)
{
    char hex[65];
    sodium_bin2hex(hex, sizeof(hex), id, 32);
    snprintf(out, len, "%s%s", RESOURCE_CA_PREFIX, hex);
}

int resource_ca_check(const char *pem, size_t len, const char **why)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    if (len == 0 || len > RESOURCE_CA_MAX) {
        *why = "the CA file is empty or larger than 8192 bytes";
        return -EINVAL;
    }
    if (len < sizeof(begin) - 1 || memcmp(pem, begin, sizeof(begin) - 1)) {
        *why = "the CA file does not start with -----BEGIN CERTIFICATE----- (PEM)";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++)
        if ((pem[i] < ' ' || pem[i] > '~') && pem[i] != '\n' && pem[i] != '\r') {
            *why = "the CA file holds bytes that are not PEM text";
            return -EINVAL;
        }
    return 0;
}

void resource_ca_pack(msgpack_packer *pk, const char *pem, size_t len)
{
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "pem");
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, pem, len);
}

int resource_ca_parse(const uint8_t *buf, size_t len, const uint8_t id[32], char *pem, size_t cap,
                      const char **why)
{
    mpf_t fs[] = {{"pem", MPF_STR, pem, cap, true, false, NULL}};
    pem[0] = '\0';
    if (mpf_parse(buf, len, fs, 1, why))
        return -EBADMSG;
    uint8_t got[32];
    size_t n = strlen(pem);
    if (resource_ca_check(pem, n, why))
        return -EBADMSG;
    resource_ca_id(pem, n, got);
    if (sodium_memcmp(got, id, 32)) {
        *why = "originca: the PEM does not hash to the record's key";
        return -EBADMSG;
    }
    return 0;
}

bool resource_rules_set(const resource_t *r)
{
    return r->nreq_set || r->nreq_remove || r->nresp_set || r->nresp_remove ||
           r->host_rewrite[0] || r->strip_prefix[0];
}

int resource_hdr_parse(const char *s, size_t len, resource_hdr_t *out, const char **why)
{
    const char *colon = memchr(s, ':', len);
    memset(out, 0, sizeof(*out));
    if (!colon || colon == s || (size_t)(colon - s) > RESOURCE_HDR_NAME_MAX) {
        *why = "a header rule is 'Name: value', the name 1 to 64 bytes";
        return -EINVAL;
    }
    size_t nl = (size_t)(colon - s);
    const char *v = colon + 1, *end = s + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if ((size_t)(end - v) > RESOURCE_HDR_VALUE_MAX || memchr(s, '\0', len)) {
        *why = "a header rule's value is longer than 256 bytes, or holds a NUL";
        return -EINVAL;
    }
    memcpy(out->name, s, nl);
    memcpy(out->value, v, (size_t)(end - v));
    return 0;
}

int resource_proxy_protocol_parse(const char *s, size_t len, uint8_t *out)
{
    static const char *const names[] = {"off", "v1", "v2"};
    for (uint8_t i = 0; i < 3; i++)
        if (len == strlen(names[i]) && !memcmp(s, names[i], len)) {
            *out = i;
            return 0;
        }
    return -EINVAL;
}

const char *resource_proxy_protocol_str(uint8_t v)
{
    return v == 1 ? "v1" : v == 2 ? "v2" : "off";
}

int resource_access_log_parse(const char *s, size_t len, uint32_t *out)
{
    if (len == 2 && !memcmp(s, "on", 2)) {
        *out = 0;
        return 0;
    }
    if (len == 3 && !memcmp(s, "off", 3)) {
        *out = RESOURCE_ACCESS_LOG_OFF;
        return 0;
    }
    if (len < 8 || len > 14 || memcmp(s, "sample:", 7) || s[7] == '0')
        return -EINVAL;
    uint32_t n = 0;
    for (size_t i = 7; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        n = n * 10 + (uint32_t)(s[i] - '0'); /* 7 digits at most: no overflow */
    }
    if (n < 1 || n > RESOURCE_ACCESS_LOG_MAX)
        return -EINVAL;
    *out = n == 1 ? 0 : n;
    return 0;
}

void resource_access_log_str(uint32_t v, char *out, size_t len)
{
    if (v == 0)
        snprintf(out, len, "on");
    else if (v == RESOURCE_ACCESS_LOG_OFF)
        snprintf(out, len, "off");
    else
        snprintf(out, len, "sample:%u", v);
}

uint32_t resource_access_log_one_in(const resource_t *r)
{
    return r->access_log == 0 ? 1 : r->access_log == RESOURCE_ACCESS_LOG_OFF ? 0 : r->access_log;
}

/* ---- HTTP routing ------------------------------------------------------------------------ */

static bool host_equal(const char *want, const char *host, size_t len)
{
    /* "Host: app.example.com:8443" and "Host: APP.example.com." name app.example.com. */
    const char *colon = memchr(host, ':', len);
    if (colon)
        len = (size_t)(colon - host);
    if (len && host[len - 1] == '.')
        len--;
    if (want[0] == '*' && want[1] == '.') { /* one label, then exactly the rest */
        const char *dot = memchr(host, '.', len);
        if (!dot || dot == host)
            return false;
        size_t rest = len - (size_t)(dot - host);
        return strlen(want + 1) == rest && strncasecmp(want + 1, dot, rest) == 0;
    }
    return strlen(want) == len && strncasecmp(want, host, len) == 0;
}

/* prefix matches path on a segment boundary: prefix is path, or path continues with '/' after
 * it, or prefix already ends with '/'. */
static bool prefix_match(const char *prefix, const char *path, size_t len)
{
    size_t pl = strlen(prefix);
    if (pl > len || memcmp(prefix, path, pl) != 0)
        return false;
    return pl == len || prefix[pl - 1] == '/' || path[pl] == '/';
}

int resource_match_http(const resource_t *v, size_t n, const char *host, size_t host_len,
                        const char *path, size_t path_len)
{
    for (size_t i = 0; i < path_len; i++) {
        if (path[i] == '?' || path[i] == '#') {
            path_len = i;
            break;
        }
    }
    if (path_len == 0) {
        path = "/";
        path_len = 1;
    }
    /* Resources naming the host exactly first; the wildcards that cover it only for a path
     * none of those serves. */
    int best = -1;
    size_t best_len = 0;
    for (int wild = 0; wild < 2 && best < 0; wild++) {
        for (size_t i = 0; i < n; i++) {
            const resource_t *r = &v[i];
            if (!r->host[0] || (r->host[0] == '*') != wild ||
                !host_equal(r->host, host, host_len) ||
                !prefix_match(r->path_prefix, path, path_len))
                continue;
            size_t pl = strlen(r->path_prefix);
            if (best >= 0) {
                const resource_t *b = &v[best];
                if (pl < best_len)
                    continue;
                if (pl == best_len &&
                    (r->created_ms > b->created_ms ||
                     (r->created_ms == b->created_ms && strcmp(r->name, b->name) > 0)))
                    continue;
            }
            best = (int)i;
            best_len = pl;
        }
    }
    return best;
}

/* ---- the store --------------------------------------------------------------------------- */

int resource_get(store_t *store, const char *name, resource_t *r)
{
    char key[RESOURCE_KEY_MAX];
    store_entry_t e;
    if (resource_key(name, key, sizeof(key)))
        return -ENOENT; /* no valid record can be stored under an invalid name */
    int rc = store_get(store, key, strlen(key), &e);
    if (rc)
        return rc;
    char why_buf[160];
    const char *why = "";
    rc = resource_parse(e.value, e.vlen, name, r, why_buf, sizeof(why_buf), &why);
    store_entry_free(&e);
    if (rc)
        log_warn("resource: record %s is unreadable: %s", key, why);
    return rc;
}

struct collect {
    resource_t *v;
    size_t n;
};

static int collect_one(const store_entry_t *e, void *ctx)
{
    struct collect *c = ctx;
    size_t pl = strlen(RESOURCE_PREFIX);
    char name[NODECFG_NAME_MAX + 1], why_buf[160];
    const char *why = "the key's name is too long";
    size_t nl = e->klen - pl;
    resource_t r;
    if (nl <= NODECFG_NAME_MAX) {
        memcpy(name, e->key + pl, nl);
        name[nl] = '\0';
        if (resource_parse(e->value, e->vlen, name, &r, why_buf, sizeof(why_buf), &why) == 0) {
            c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
            c->v[c->n++] = r;
            return 0;
        }
    }
    log_warn("resource: skipping unreadable record %.*s: %s", (int)e->klen, e->key, why);
    return 0;
}

int resource_list(store_t *store, resource_t **out, size_t *n)
{
    struct collect c = {0};
    int rc = store_list(store, RESOURCE_PREFIX, strlen(RESOURCE_PREFIX), collect_one, &c);
    if (rc) {
        free(c.v);
        *out = NULL;
        *n = 0;
        return rc;
    }
    *out = c.v;
    *n = c.n;
    return 0;
}

/* ---- loops into the mesh ------------------------------------------------------------------ */

struct mesh_check {
    const resource_t *r;
    const resource_t *others;
    size_t nothers;
    char *buf;
    size_t len;
    const char **why;
    int rc;
};

/* An address as (IP, port) for comparing; 0.0.0.0 and :: (every address of the machine) count
 * as 127.0.0.1, since a listener on them answers on loopback too. */
static int addr_of(const char *s, struct sockaddr_storage *ss)
{
    unsigned sl;
    if (netaddr_sockaddr(s, ss, &sl))
        return -EINVAL;
    if (ss->ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        if (a->sin_addr.s_addr == htonl(INADDR_ANY))
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (ss->ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
            a->sin6_addr = in6addr_loopback;
    }
    return 0;
}

static uint16_t port_of(const struct sockaddr_storage *ss)
{
    return ntohs(ss->ss_family == AF_INET ? ((const struct sockaddr_in *)ss)->sin_port
                                          : ((const struct sockaddr_in6 *)ss)->sin6_port);
}

static bool same_host(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
    if (a->ss_family != b->ss_family)
        return false;
    if (a->ss_family == AF_INET)
        return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
               ((const struct sockaddr_in *)b)->sin_addr.s_addr;
    return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                   &((const struct sockaddr_in6 *)b)->sin6_addr, sizeof(struct in6_addr));
}

/* What the PoP whose host is at listens on at port, or NULL. */
static const char *mesh_port_use(const struct mesh_check *c, uint16_t port, uint16_t mesh_port,
                                 uint16_t tunnel_port, char *what, size_t wl)
{
    if (port == mesh_port)
        return "mesh port";
    if (port == tunnel_port)
        return "tunnel port";
    if (port == c->r->tcp_port) {
        snprintf(what, wl, "tcp port of resource '%s' itself", c->r->name);
        return what;
    }
    for (size_t i = 0; i < c->nothers; i++)
        if (c->others[i].tcp_port == port && strcmp(c->others[i].name, c->r->name)) {
            snprintf(what, wl, "tcp port of resource '%s'", c->others[i].name);
            return what;
        }
    return NULL;
}

static int check_one_pop(const store_entry_t *e, void *ctx)
{
    struct mesh_check *c = ctx;
    uint64_t id;
    reg_node_t n;
    const char *why;
    struct sockaddr_storage mesh, tun;
    if (c->rc || e->tombstone || reg_node_key_id(e->key, e->klen, &id) ||
        reg_node_parse(e->value, e->vlen, id, &n, &why) || n.removed || n.role != ROLE_POP)
        return 0;
    bool has_mesh = addr_of(n.addr, &mesh) == 0, has_tun = addr_of(n.tunnel_addr, &tun) == 0;
    uint16_t mp = has_mesh ? port_of(&mesh) : 0, tp = has_tun ? port_of(&tun) : 0;
    if (c->r->tcp_port && (c->r->tcp_port == mp || c->r->tcp_port == tp)) {
        c->rc = refuse(c->buf, c->len, c->why,
                       "tcp port %u is PoP %s's %s (%s): a resource port must not clash with a "
                       "port of the mesh; pick another",
                       c->r->tcp_port, n.name, c->r->tcp_port == mp ? "mesh port" : "tunnel port",
                       c->r->tcp_port == mp ? n.addr : n.tunnel_addr);
        return 0;
    }
    for (unsigned i = 0; i < c->r->ntargets; i++) {
        struct sockaddr_storage t;
        if (addr_of(c->r->targets[i], &t))
            continue; /* a name: the site resolves it, nothing to compare here */
        if (!(has_mesh && same_host(&t, &mesh)) && !(has_tun && same_host(&t, &tun)))
            continue;
        char what[NODECFG_NAME_MAX + 64];
        const char *use = mesh_port_use(c, port_of(&t), mp, tp, what, sizeof(what));
        if (use) {
            c->rc = refuse(c->buf, c->len, c->why,
                           "target %s is an ingress of the mesh (PoP %s, %s): connections to it "
                           "would loop through the mesh forever; a target must be a service "
                           "outside the mesh",
                           c->r->targets[i], n.name, use);
            return 0;
        }
    }
    return 0;
}

int resource_check_mesh(store_t *store, const resource_t *r, const resource_t *others,
                        size_t nothers, char *why_buf, size_t why_len, const char **why)
{
    struct mesh_check c = {r, others, nothers, why_buf, why_len, why, 0};
    int rc = store_list(store, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), check_one_pop, &c);
    return c.rc ? c.rc : rc;
}
