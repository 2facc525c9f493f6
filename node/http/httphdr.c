/* httphdr: see httphdr.h.
 *
 * Each function decides one question about bytes a client or an application chose, with
 * the strictest reading that real browsers and servers still satisfy: a proxy that is more
 * lenient than the parser behind it (or the browser in front) is how a value means one thing
 * to popmesh and another to the application. */
#include "node/http/httphdr.h"
#include "node/http/httppath.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static bool ieq(const char *s, size_t n, const char *lit)
{
    size_t m = strlen(lit);
    return n == m && strncasecmp(s, lit, m) == 0;
}

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* ---- header names -------------------------------------------------------------------------- */

/* Compares the first m bytes of name with canon the CGI way. */
static bool name_prefix(const char *name, size_t n, const char *canon, size_t m)
{
    if (n < m)
        return false;
    for (size_t i = 0; i < m; i++) {
        int a = lower((unsigned char)name[i]), b = lower((unsigned char)canon[i]);
        if (a == '_')
            a = '-';
        if (b == '_')
            b = '-';
        if (a != b)
            return false;
    }
    return true;
}

bool httphdr_name_is(const char *name, size_t n, const char *canon)
{
    size_t m = strlen(canon);
    return n == m && name_prefix(name, n, canon, m);
}

bool httphdr_reserved_request_name(const char *name, size_t n)
{
    static const char *const names[] = {"forwarded",      "x-real-ip",      "x-client-ip",
                                        "true-client-ip", "x-original-url", "x-rewrite-url"};
    /* x-popmesh-: X-Popmesh-Identity and whatever popmesh says to applications later */
    static const char *const prefixes[] = {"remote-", "x-forwarded-", "x-popmesh-"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (httphdr_name_is(name, n, names[i]))
            return true;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (name_prefix(name, n, prefixes[i], strlen(prefixes[i])))
            return true;
    return false;
}

/* ---- Host ---------------------------------------------------------------------------------- */

bool httphdr_host_valid(const char *s, size_t n)
{
    size_t i = 0;

    if (n == 0)
        return true;
    if (s[0] == '[') {
        for (i = 1; i < n && s[i] != ']'; i++)
            if (httppath_hexval((unsigned char)s[i]) < 0 && s[i] != ':' && s[i] != '.')
                return false;
        if (i >= n || i == 1)
            return false;
        i++; /* past ']' */
    } else {
        for (; i < n && s[i] != ':'; i++) {
            unsigned char c = (unsigned char)s[i];
            if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
                continue;
            if (c == '%') {
                if (i + 2 >= n || httppath_hexval((unsigned char)s[i + 1]) < 0 ||
                    httppath_hexval((unsigned char)s[i + 2]) < 0)
                    return false;
                i += 2;
                continue;
            }
            /* sub-delims but the comma: two Hosts folded into one would have one */
            if (c == 0 || strchr("-._~!$&'()*+;=", c) == NULL)
                return false;
        }
        if (i == 0)
            return false; /* ":80" */
    }
    if (i == n)
        return true;
    if (s[i] != ':')
        return false;
    i++;
    size_t digits = n - i;
    if (digits == 0 || digits > 5)
        return false;
    unsigned port = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        port = port * 10 + (unsigned)(s[i] - '0');
    }
    return port <= 65535;
}

/* ---- the redirect after sign-in ------------------------------------------------------------ */

int httphdr_redirect_target(const char *rd, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    bool in_path = true;

    if (n == 0 || rd[0] != '/' || (n > 1 && rd[1] == '/'))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)rd[i];
        if (c < 0x20 || c == 0x7f || c == '\\')
            return -EINVAL;
        if (c == '?' || c == '#')
            in_path = false;
        if (c == '%') {
            if (i + 2 >= n)
                return -EINVAL;
            int h = httppath_hexval((unsigned char)rd[i + 1]),
                l = httppath_hexval((unsigned char)rd[i + 2]);
            if (h < 0 || l < 0)
                return -EINVAL;
            int d = h * 16 + l;
            /* What the application may decode: no control byte anywhere, and in the path no
             * backslash and no "//" at its start ("/%2F/evil", "/%5C/evil"). */
            if (d < 0x20 || d == 0x7f)
                return -EINVAL;
            if (in_path && (d == '\\' || (d == '/' && o == 1)))
                return -EINVAL;
            if (o + 3 >= cap)
                return -ENOSPC;
            out[o++] = '%';
            out[o++] = hex[h];
            out[o++] = hex[l];
            i += 2;
            continue;
        }
        bool keep = c > 0x20 && c < 0x7f && !strchr("\"<>`{}|^", c);
        if (keep) {
            if (o + 1 >= cap)
                return -ENOSPC;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= cap)
                return -ENOSPC;
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

/* ---- cross-site requests ------------------------------------------------------------------- */

static const http_header_t *find(const http_head_t *h, const char *name, int *count)
{
    const http_header_t *first = NULL;

    *count = 0;
    for (size_t i = 0; i < h->nheaders; i++)
        if (ieq(h->headers[i].name, h->headers[i].name_len, name)) {
            if (!first)
                first = &h->headers[i];
            (*count)++;
        }
    return first;
}

/* An Origin is "scheme://host[:port]": its host[:port] must be Host, compared without case. A
 * default port written on one side only (":80" for http, ":443" for https) still matches. */
static bool origin_is_host(const char *o, size_t on, const char *host, size_t hn)
{
    const char *sep = NULL;
    for (size_t i = 0; i + 2 < on; i++)
        if (o[i] == ':' && o[i + 1] == '/' && o[i + 2] == '/') {
            sep = o + i;
            break;
        }
    if (!sep)
        return false;
    size_t slen = (size_t)(sep - o);
    const char *a = sep + 3;
    size_t an = on - slen - 3;
    if (ieq(a, an, "") || memchr(a, '/', an))
        return false;
    if (an == hn && strncasecmp(a, host, hn) == 0)
        return true;
    const char *dflt = ieq(o, slen, "http") ? ":80" : ieq(o, slen, "https") ? ":443" : NULL;
    if (!dflt)
        return false;
    size_t dl = strlen(dflt);
    if (an == hn + dl && strncasecmp(a, host, hn) == 0 && strncasecmp(a + hn, dflt, dl) == 0)
        return true;
    if (hn == an + dl && strncasecmp(a, host, an) == 0 && strncasecmp(host + an, dflt, dl) == 0)
        return true;
    return false;
}

bool httphdr_cross_site(const http_head_t *h)
{
    int n;
    const http_header_t *sfs = find(h, "sec-fetch-site", &n);
    if (n > 1)
        return true;
    /* The browser's own verdict, which no page can forge, wins when it is there: a
     * same-origin form can carry "Origin: null" (under Referrer-Policy: no-referrer). */
    if (sfs)
        return !ieq(sfs->value, sfs->value_len, "same-origin") &&
               !ieq(sfs->value, sfs->value_len, "none");
    const http_header_t *org = find(h, "origin", &n);
    if (n > 1)
        return true;
    if (org && !origin_is_host(org->value, org->value_len, h->host ? h->host : "",
                               h->host ? h->host_len : 0))
        return true;
    return false;
}

/* ---- cookies ------------------------------------------------------------------------------- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

bool httphdr_set_cookie_is(const char *v, size_t n, const char *name)
{
    size_t e = 0;
    while (e < n && v[e] != ';')
        e++;
    const char *eq = memchr(v, '=', e);
    size_t a = 0, b = eq ? (size_t)(eq - v) : e;
    while (a < b && is_ows(v[a]))
        a++;
    while (b > a && is_ows(v[b - 1]))
        b--;
    return ieq(v + a, b - a, name);
}

/* Calls fn for each "name=value" pair of the Cookie headers (split on ';', spaces trimmed);
 * stops when fn returns false. */
typedef bool (*cookie_fn)(void *ctx, const char *pair, size_t n, size_t namelen);

static void cookie_each(const http_head_t *h, cookie_fn fn, void *ctx)
{
    for (size_t i = 0; i < h->nheaders; i++) {
        const http_header_t *x = &h->headers[i];
        if (!ieq(x->name, x->name_len, "cookie"))
            continue;
        const char *v = x->value;
        size_t off = 0, n = x->value_len;
        while (off < n) {
            while (off < n && (v[off] == ' ' || v[off] == '\t' || v[off] == ';'))
                off++;
            if (off == n)
                break;
            const char *p = v + off, *end = v + n;
            const char *semi = memchr(p, ';', n - off);
            const char *e = semi ? semi : end;
            while (e > p && is_ows(e[-1]))
                e--;
            if (e > p) {
                const char *eq = memchr(p, '=', (size_t)(e - p));
                size_t nl = eq ? (size_t)(eq - p) : (size_t)(e - p);
                while (nl > 0 && is_ows(p[nl - 1]))
                    nl--;
                if (!fn(ctx, p, (size_t)(e - p), nl))
                    return;
            }
            off = semi ? (size_t)(semi - v) + 1 : n;
        }
    }
}

struct find_ctx {
    const char *name;
    int count;
    const char *v;
    size_t vl;
};

static bool find_one(void *ctx, const char *pair, size_t n, size_t nl)
{
    struct find_ctx *f = ctx;
    if (!ieq(pair, nl, f->name) || nl == n)
        return true;
    const char *v = memchr(pair, '=', n) + 1;
    size_t vl = n - (size_t)(v - pair);
    while (vl > 0 && is_ows(*v)) {
        v++;
        vl--;
    }
    if (f->count == 0) {
        f->v = v;
        f->vl = vl;
        f->count = 1;
    } else if (vl != f->vl || memcmp(v, f->v, vl) != 0) {
        f->count = 2;
        return false;
    }
    return true;
}

int httphdr_cookie_find(const http_head_t *h, const char *name, const char **v, size_t *vl)
{
    struct find_ctx f = {.name = name};
    cookie_each(h, find_one, &f);
    *v = f.v;
    *vl = f.vl;
    return f.count;
}

struct without_ctx {
    const char *name;
    char *out;
    size_t cap, len;
    bool full;
};

static bool keep_one(void *ctx, const char *pair, size_t n, size_t nl)
{
    struct without_ctx *w = ctx;
    if (ieq(pair, nl, w->name))
        return true;
    size_t need = n + (w->len ? 2 : 0);
    if (need > w->cap - w->len) {
        w->full = true;
        return false;
    }
    if (w->len) {
        memcpy(w->out + w->len, "; ", 2);
        w->len += 2;
    }
    memcpy(w->out + w->len, pair, n);
    w->len += n;
    return true;
}

ssize_t httphdr_cookie_without(const http_head_t *h, const char *name, char *out, size_t cap)
{
    struct without_ctx w = {.name = name, .out = out, .cap = cap};
    cookie_each(h, keep_one, &w);
    return w.full ? -ENOSPC : (ssize_t)w.len;
}

bool httphdr_is_apikey_auth(const char *v, size_t n)
{
    size_t i = 0;
    while (i < n && is_ows(v[i]))
        i++;
    if (n - i < 6 || strncasecmp(v + i, "bearer", 6) != 0)
        return false;
    i += 6;
    size_t sp = i;
    while (i < n && is_ows(v[i]))
        i++;
    return i > sp && n - i >= 5 && strncmp(v + i, "pmk1.", 5) == 0;
}

/* ---- WebSocket handshake ------------------------------------------------------------------- */

static uint32_t rol(uint32_t x, int k)
{
    return (x << k) | (x >> (32 - k));
}

static void sha1_block(uint32_t st[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) {
            f = (b & c) | (~b & d);
            k = 0x5A827999;
        } else if (i < 40) {
            f = b ^ c ^ d;
            k = 0x6ED9EBA1;
        } else if (i < 60) {
            f = (b & c) | (b & d) | (c & d);
            k = 0x8F1BBCDC;
        } else {
            f = b ^ c ^ d;
            k = 0xCA62C1D6;
        }
        uint32_t t = rol(a, 5) + f + e + k + w[i];
        e = d;
        d = c;
        c = rol(b, 30);
        b = a;
        a = t;
    }
    st[0] += a;
    st[1] += b;
    st[2] += c;
    st[3] += d;
    st[4] += e;
}

void httphdr_sha1(const void *data, size_t n, unsigned char out[20])
{
    uint32_t st[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    const unsigned char *p = data;
    unsigned char tail[128];
    size_t full = n / 64 * 64, rest = n - full;

    for (size_t i = 0; i < full; i += 64)
        sha1_block(st, p + i);
    memset(tail, 0, sizeof(tail));
    if (rest)
        memcpy(tail, p + full, rest);
    tail[rest] = 0x80;
    size_t tl = rest < 56 ? 64 : 128;
    uint64_t bits = (uint64_t)n * 8;
    for (int i = 0; i < 8; i++)
        tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t i = 0; i < tl; i += 64)
        sha1_block(st, tail + i);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(st[i] >> 24);
        out[4 * i + 1] = (unsigned char)(st[i] >> 16);
        out[4 * i + 2] = (unsigned char)(st[i] >> 8);
        out[4 * i + 3] = (unsigned char)st[i];
    }
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

bool httphdr_ws_key_valid(const char *key, size_t n)
{
    if (n != 24 || key[22] != '=' || key[23] != '=')
        return false;
    for (size_t i = 0; i < 22; i++)
        if (!key[i] || !strchr(b64, key[i]))
            return false;
    /* 16 bytes end on 4 bits of the 22nd character: the other 2 must be zero (canonical). */
    return (strchr(b64, key[21]) - b64) % 16 == 0;
}

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void httphdr_ws_accept(const char *key, size_t n, char out[HTTPHDR_WS_ACCEPT_LEN + 1])
{
    unsigned char buf[128], d[21] = {0};
    size_t gl = sizeof(WS_GUID) - 1;

    if (n > sizeof(buf) - gl)
        n = sizeof(buf) - gl; /* a valid key is 24 bytes; callers check it first */
    memcpy(buf, key, n);
    memcpy(buf + n, WS_GUID, gl);
    httphdr_sha1(buf, n + gl, d);
    size_t o = 0;
    for (size_t i = 0; i < 21; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        out[o++] = b64[(v >> 18) & 63];
        out[o++] = b64[(v >> 12) & 63];
        out[o++] = b64[(v >> 6) & 63];
        out[o++] = b64[v & 63];
    }
    out[27] = '='; /* 20 bytes: the last group holds 2, so one pad character */
    out[28] = '\0';
}

/* Whether a comma-separated header value lists token (case-insensitive). */
static bool lists(const char *v, size_t n, const char *token)
{
    size_t a = 0;
    while (a <= n) {
        size_t b = a;
        while (b < n && v[b] != ',')
            b++;
        size_t s = a, e = b;
        while (s < e && is_ows(v[s]))
            s++;
        while (e > s && is_ows(v[e - 1]))
            e--;
        if (ieq(v + s, e - s, token))
            return true;
        a = b + 1;
    }
    return false;
}

const char *httphdr_ws_check_101(const http_head_t *resp, const char *key, size_t n)
{
    bool conn_upgrade = false;
    int nupg, nacc;

    if (resp->status != 101)
        return "not a 101";
    const http_header_t *upg = find(resp, "upgrade", &nupg);
    if (nupg != 1 || !ieq(upg->value, upg->value_len, "websocket"))
        return "the 101 does not switch to websocket";
    for (size_t i = 0; i < resp->nheaders; i++) {
        const http_header_t *x = &resp->headers[i];
        if (ieq(x->name, x->name_len, "connection") && lists(x->value, x->value_len, "upgrade"))
            conn_upgrade = true;
    }
    if (!conn_upgrade)
        return "the 101 has no Connection: upgrade";
    const http_header_t *acc = find(resp, "sec-websocket-accept", &nacc);
    if (nacc != 1)
        return "the 101 needs exactly one Sec-WebSocket-Accept";
    char want[HTTPHDR_WS_ACCEPT_LEN + 1];
    httphdr_ws_accept(key, n, want);
    if (acc->value_len != HTTPHDR_WS_ACCEPT_LEN || memcmp(acc->value, want, acc->value_len) != 0)
        return "Sec-WebSocket-Accept does not match the request's key";
    return NULL;
}
