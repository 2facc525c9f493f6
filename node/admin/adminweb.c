/* adminweb: see adminweb.h. */
#include "node/admin/adminweb.h"

#include "common/xmalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const adminweb_api_t adminweb_apis[] = {
    {"/api/status", "status", "meshctl --json status", NULL, NULL},
    {"/api/members", "members", "meshctl --json members", NULL, NULL},
    {"/api/sites", "sites", "meshctl --json sites", NULL, NULL},
    {"/api/routes", "routes", "meshctl --json routes", "resource.routes", "resources"},
    {"/api/tunnels", "dataplane", "meshctl --json tunnels", NULL, NULL},
    {"/api/resources", "resource.list", "meshctl --json resource list", NULL, NULL},
    {"/api/targets", "targets", "meshctl --json targets", NULL, NULL},
    {"/api/httpstats", "http.stats", "meshctl --json http-stats", NULL, NULL},
    {"/api/certs", "cert.list", "meshctl --json cert list", NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

const adminweb_api_t *adminweb_api_find(const char *path)
{
    for (const adminweb_api_t *a = adminweb_apis; a->path; a++)
        if (!strcmp(a->path, path))
            return a;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes n bytes of a form value into out (cap bytes); false on a bad escape, a NUL, or no
 * room. Every index is checked against n before it is read. */
static bool url_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (n - i < 3)
                return false;
            int h = hexval(s[i + 1]), l = hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return false;
            c = h * 16 + l;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap)
            return false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return true;
}

bool adminweb_form_get(const char *body, size_t len, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && !memcmp(p, name, nl) && p[nl] == '=')
            return url_decode(p + nl + 1, (size_t)(e - p) - nl - 1, out, cap);
        p = e + 1;
    }
    return false;
}

bool adminweb_bearer(const char *v, size_t n, char *out, size_t cap)
{
    size_t sl = strlen(ADMINWEB_BEARER);
    if (n <= sl || strncasecmp(v, ADMINWEB_BEARER, sl) != 0)
        return false;
    size_t tl = n - sl;
    if (tl + 1 > cap)
        return false;
    for (size_t i = 0; i < tl; i++) {
        unsigned char c = (unsigned char)v[sl + i];
        if (c <= ' ' || c >= 0x7f)
            return false;
    }
    memcpy(out, v + sl, tl);
    out[tl] = '\0';
    return true;
}

void adminweb_html_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return;
    for (; s && *s; s++) {
        const char *r = *s == '<'    ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '&'  ? "&amp;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&#39;"
                                     : NULL;
        size_t rl = r ? strlen(r) : 1;
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            continue;
        if (o + rl + 1 > cap)
            break;
        if (r)
            memcpy(out + o, r, rl);
        else
            out[o] = *s;
        o += rl;
    }
    out[o] = '\0';
}

/* ---- the pages ------------------------------------------------------------------------------ */

static const char page_css[] =
    "body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1d2228; background: #f4f5f7; }\n"
    "header { background: #1d2228; color: #fff; padding: .6em 1.2em; display: flex; gap: 1em; align-items: baseline; }\n"
    "header h1 { font-size: 1.1em; margin: 0; }\n"
    "header form { margin-left: auto; }\n"
    "header button { font: inherit; }\n"
    "main { padding: 0 1.2em 2em; }\n"
    "h2 { font-size: 1em; margin: 1.4em 0 .4em; text-transform: uppercase; letter-spacing: .05em; color: #555; }\n"
    "h3 { font-size: .95em; margin: .8em 0 .3em; }\n"
    "table { border-collapse: collapse; background: #fff; min-width: 40em; }\n"
    "th, td { text-align: left; padding: .25em .7em; border-bottom: 1px solid #e2e4e8; vertical-align: top; }\n"
    "th { background: #eceef1; font-weight: 600; }\n"
    ".st { font-weight: 600; }\n"
    ".st-alive, .st-online, .st-up { color: #17803d; }\n"
    ".st-suspect { color: #b26a00; }\n"
    ".st-dead, .st-offline, .st-left, .st-down, .st-unreachable { color: #c0262d; }\n"
    ".none { color: #888; }\n"
    "#updated { font-size: .85em; color: #9aa3ad; }\n"
    "#updated.err { color: #ff8a80; }\n"
    ".box { max-width: 22em; margin: 4em auto; background: #fff; padding: 1.5em 2em; border: 1px solid #e2e4e8; }\n"
    ".box label { display: block; margin: .6em 0 .2em; }\n"
    ".box input { width: 100%; box-sizing: border-box; font: inherit; padding: .3em; }\n"
    ".box button { margin-top: 1em; font: inherit; padding: .3em 1em; }\n"
    ".msg { color: #c0262d; }\n";

/* The status page's script: polls /api/ and rebuilds each table with textContent only. */
static const char page_js[] =
    "(function () {\n"
    "  'use strict';\n"
    "  var POLL = @@POLL@@;\n"
    "  var prevStats = null, prevAt = 0;\n"
    "  function el(tag, cls, text) {\n"
    "    var e = document.createElement(tag);\n"
    "    if (cls) e.className = cls;\n"
    "    if (text !== undefined && text !== null) e.textContent = String(text);\n"
    "    return e;\n"
    "  }\n"
    "  function ms(v) { return typeof v === 'number' ? v.toFixed(1) + ' ms' : '-'; }\n"
    "  function when(v) { return v ? new Date(v).toISOString().replace('T', ' ').slice(0, 16) + ' UTC' : '-'; }\n"
    "  /* cols: [header, function(row) -> text | {text, cls, attr}] */\n"
    "  function table(cols, rows, rowAttr) {\n"
    "    var t = el('table'), h = el('tr');\n"
    "    cols.forEach(function (c) { h.appendChild(el('th', null, c[0])); });\n"
    "    t.appendChild(h);\n"
    "    rows.forEach(function (r) {\n"
    "      var tr = el('tr');\n"
    "      if (rowAttr) rowAttr(tr, r);\n"
    "      cols.forEach(function (c) {\n"
    "        var v = c[1](r), td;\n"
    "        if (v !== null && typeof v === 'object') {\n"
    "          td = el('td', v.cls, v.text);\n"
    "          if (v.state) td.setAttribute('data-state', v.state);\n"
    "        } else {\n"
    "          td = el('td', null, v === undefined || v === null || v === '' ? '-' : v);\n"
    "        }\n"
    "        tr.appendChild(td);\n"
    "      });\n"
    "      t.appendChild(tr);\n"
    "    });\n"
    "    if (!rows.length) {\n"
    "      var tr = el('tr'), td = el('td', 'none', 'none');\n"
    "      td.colSpan = cols.length;\n"
    "      tr.appendChild(td);\n"
    "      t.appendChild(tr);\n"
    "    }\n"
    "    return t;\n"
    "  }\n"
    "  function put(id, node) { document.getElementById(id).replaceChildren(node); }\n"
    "  function state(s) { return {text: s, cls: 'st st-' + s, state: s}; }\n"
    "  function get(name) {\n"
    "    return fetch('/api/' + name, {credentials: 'same-origin', cache: 'no-store'}).then(function (r) {\n"
    "      if (r.status === 401 || r.status === 403) { location.reload(); throw new Error('signed out'); }\n"
    "      if (!r.ok) throw new Error('/api/' + name + ': HTTP ' + r.status);\n"
    "      return r.json();\n"
    "    });\n"
    "  }\n"
    "  function members(list) {\n"
    "    var regions = {}, box = el('div');\n"
    "    list.forEach(function (m) { (regions[m.region || '(no region)'] = regions[m.region || '(no region)'] || []).push(m); });\n"
    "    Object.keys(regions).sort().forEach(function (reg) {\n"
    "      var sec = el('section', 'region');\n"
    "      sec.appendChild(el('h3', null, 'region ' + reg));\n"
    "      sec.appendChild(table([\n"
    "        ['PoP', function (m) { return m.name + (m.self ? ' (this PoP)' : ''); }],\n"
    "        ['state', function (m) { return state(m.state); }],\n"
    "        ['RTT', function (m) { return m.self || m.state !== 'alive' && m.state !== 'suspect' ? '-' : ms(m.rtt_ms); }],\n"
    "        ['address', function (m) { return m.addr; }],\n"
    "        ['load', function (m) { return m.health && typeof m.health.load_pct === 'number' ? m.health.load_pct + '%' : '-'; }],\n"
    "        ['ingress', function (m) { return m.health ? (m.health.ingress_up ? 'up' : 'DOWN') : '-'; }]\n"
    "      ], regions[reg].sort(function (a, b) { return a.name < b.name ? -1 : 1; }),\n"
    "      function (tr, m) { tr.setAttribute('data-member', m.name); tr.setAttribute('data-state', m.state); }));\n"
    "      box.appendChild(sec);\n"
    "    });\n"
    "    return box;\n"
    "  }\n"
    "  function sites(j) {\n"
    "    return table([\n"
    "      ['site', function (s) { return s.name; }],\n"
    "      ['replica', function (s) { return s.replica + (s.host ? ' on ' + s.host : ''); }],\n"
    "      ['state', function (s) { return state(s.state); }],\n"
    "      ['tunnels', function (s) {\n"
    "        return (s.pops || []).map(function (p) { return p.name + ' ' + p.role + ' ' + ms(p.rtt_ms); }).join(', ') || 'none';\n"
    "      }],\n"
    "      ['targets', function (s) {\n"
    "        return (s.targets || []).map(function (t) { return t.addr + ' ' + (t.healthy ? 'up' : 'down'); }).join(', ');\n"
    "      }]\n"
    "    ], j.sites || [], function (tr, s) { tr.setAttribute('data-site', s.name); tr.setAttribute('data-replica', s.replica); });\n"
    "  }\n"
    "  function routes(j) {\n"
    "    return table([\n"
    "      ['site', function (r) { return r.site; }],\n"
    "      ['reachable', function (r) { return r.reachable ? 'yes' : 'no'; }],\n"
    "      ['egress', function (r) { return r.egress; }],\n"
    "      ['path', function (r) { return (r.path || []).join(' > '); }],\n"
    "      ['cost', function (r) { return ms(r.cost_ms); }],\n"
    "      ['backup', function (r) { return r.backup && r.backup.egress ? r.backup.egress + ' (' + ms(r.backup.cost_ms) + ')' : '-'; }]\n"
    "    ], j.sites || []);\n"
    "  }\n"
    "  function resources(res, tg, hs) {\n"
    "    var health = {}, rate = {}, now = Date.now();\n"
    "    (tg.resources || []).forEach(function (r) {\n"
    "      health[r.name] = (r.targets || []).map(function (t) { return t.addr + '@' + t.site + ' ' + t.state; }).join(', ');\n"
    "    });\n"
    "    var cur = {};\n"
    "    (hs.resources || []).forEach(function (r) { cur[r.name] = r; });\n"
    "    if (prevStats) {\n"
    "      var dt = (now - prevAt) / 1000;\n"
    "      Object.keys(cur).forEach(function (n) {\n"
    "        var p = prevStats[n];\n"
    "        rate[n] = dt > 0 ? ((cur[n].requests - (p ? p.requests : 0)) / dt) : 0;\n"
    "      });\n"
    "    }\n"
    "    prevStats = cur; prevAt = now;\n"
    "    return table([\n"
    "      ['resource', function (r) { return r.name; }],\n"
    "      ['site', function (r) { return r.site; }],\n"
    "      ['entry', function (r) { return r.host ? 'http ' + r.host : (r.port ? 'tcp :' + r.port : '-'); }],\n"
    "      ['targets and health', function (r) { return health[r.name] || '-'; }],\n"
    "      ['requests', function (r) { return cur[r.name] ? cur[r.name].requests : 0; }],\n"
    "      ['req/s', function (r) { return r.name in rate ? rate[r.name].toFixed(2) : '-'; }],\n"
    "      ['5xx', function (r) { return cur[r.name] ? cur[r.name].responses_5xx : 0; }]\n"
    "    ], res.resources || [], function (tr, r) { tr.setAttribute('data-resource', r.name); });\n"
    "  }\n"
    "  function certs(j) {\n"
    "    return table([\n"
    "      ['certificate', function (c) { return c.id; }],\n"
    "      ['names', function (c) { return (c.names || []).join(', '); }],\n"
    "      ['expires', function (c) { return when(c.not_after_ms); }],\n"
    "      ['in', function (c) {\n"
    "        if (!c.not_after_ms) return '-';\n"
    "        var d = (c.not_after_ms - Date.now()) / 86400000;\n"
    "        return {text: d.toFixed(1) + ' days', cls: d < 14 ? 'st st-suspect' : null};\n"
    "      }],\n"
    "      ['state', function (c) { return c.state; }],\n"
    "      ['issuer', function (c) { return c.issuer; }]\n"
    "    ], j.certs || []);\n"
    "  }\n"
    "  function poll() {\n"
    "    Promise.all([get('status'), get('members'), get('sites'), get('routes'), get('resources'),\n"
    "                 get('targets'), get('httpstats'), get('certs')]).then(function (a) {\n"
    "      var st = a[0];\n"
    "      document.getElementById('node').textContent = st.name + ' (' + (st.region || 'no region') + '), mesh ' + st.mesh_id;\n"
    "      put('members', members(a[1]));\n"
    "      put('sites', sites(a[2]));\n"
    "      put('routes', routes(a[3]));\n"
    "      put('resources', resources(a[4], a[5], a[6]));\n"
    "      put('certs', certs(a[7]));\n"
    "      var u = document.getElementById('updated');\n"
    "      u.textContent = 'updated ' + new Date().toISOString().slice(11, 19) + ' UTC';\n"
    "      u.className = '';\n"
    "    }).catch(function (e) {\n"
    "      var u = document.getElementById('updated');\n"
    "      u.textContent = 'update failed: ' + e.message;\n"
    "      u.className = 'err';\n"
    "    }).then(function () { setTimeout(poll, POLL); });\n"
    "  }\n"
    "  poll();\n"
    "})();\n";

/* tmpl with each "@@KEY@@" replaced by its value (values are inserted as given: escape them
 * first). Caller owns the result. */
static char *fill(const char *tmpl, const char *const *kv)
{
    size_t cap = strlen(tmpl) + 1, len = 0;
    for (const char *const *p = kv; *p; p += 2)
        cap += 4 * strlen(p[1]); /* a key may appear a few times; grown below if not enough */
    char *out = xmalloc(cap);
    const char *s = tmpl;
    while (*s) {
        const char *val = NULL;
        size_t skip = 0;
        if (s[0] == '@' && s[1] == '@') {
            for (const char *const *p = kv; *p; p += 2) {
                size_t kl = strlen(p[0]);
                if (!strncmp(s + 2, p[0], kl) && s[2 + kl] == '@' && s[3 + kl] == '@') {
                    val = p[1];
                    skip = kl + 4;
                    break;
                }
            }
        }
        const char *add = val ? val : s;
        size_t al = val ? strlen(val) : 1;
        if (len + al + 1 > cap) {
            cap = 2 * (len + al + 1);
            out = xrealloc(out, cap);
        }
        memcpy(out + len, add, al);
        len += al;
        s += val ? skip : 1;
    }
    out[len] = '\0';
    return out;
}

#define PAGE_HEAD                                                                                 \
    "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"                        \
    "<meta name=\"viewport\" content=\"width=device-width\">"                                   \
    "<meta name=\"referrer\" content=\"no-referrer\">"                                          \
    "<title>@@TITLE@@ - popmesh</title><style nonce=\"@@NONCE@@\">@@CSS@@</style></head>\n"

char *adminweb_status_page(const char *nonce, const char *user)
{
    char euser[6 * 64 + 1], poll[16];
    adminweb_html_escape(user ? user : "", euser, sizeof(euser));
    snprintf(poll, sizeof(poll), "%u", ADMINWEB_POLL_MS);
    char *js = fill(page_js, (const char *[]){"POLL", poll, NULL});
    const char *kv[] = {"TITLE", "mesh status", "NONCE", nonce, "CSS", page_css,
                        "USER",  euser,         "JS",    js,    NULL};
    char *out = fill(PAGE_HEAD
                     "<body><header><h1>popmesh</h1><span id=\"node\"></span>"
                     "<span id=\"updated\">loading</span>"
                     "<form method=\"post\" action=\"/logout\"><span>@@USER@@</span> "
                     "<button type=\"submit\">sign out</button></form></header>\n<main>"
                     "<h2>PoPs by region</h2><div id=\"members\"></div>"
                     "<h2>Sites, their tunnels and targets</h2><div id=\"sites\"></div>"
                     "<h2>Routes to sites</h2><div id=\"routes\"></div>"
                     "<h2>Resources</h2><div id=\"resources\"></div>"
                     "<h2>Certificates</h2><div id=\"certs\"></div></main>\n"
                     "<script nonce=\"@@NONCE@@\">@@JS@@</script></body></html>\n",
                     kv);
    free(js);
    return out;
}

char *adminweb_login_page(const char *nonce, const char *message)
{
    char emsg[1024];
    adminweb_html_escape(message ? message : "", emsg, sizeof(emsg));
    const char *kv[] = {"TITLE", "sign in", "NONCE", nonce, "CSS", page_css, "MSG", emsg, NULL};
    return fill(PAGE_HEAD "<body><div class=\"box\"><h1>popmesh admin</h1>"
                          "<p class=\"msg\">@@MSG@@</p>"
                          "<form method=\"post\" action=\"/login\">"
                          "<label for=\"username\">user</label>"
                          "<input id=\"username\" name=\"username\" autocomplete=\"username\" "
                          "required autofocus>"
                          "<label for=\"password\">password</label>"
                          "<input id=\"password\" name=\"password\" type=\"password\" "
                          "autocomplete=\"current-password\" required>"
                          "<button type=\"submit\">sign in</button></form></div></body></html>\n",
                kv);
}

char *adminweb_forbidden_page(const char *nonce, const char *user)
{
    char euser[6 * 64 + 1];
    adminweb_html_escape(user ? user : "", euser, sizeof(euser));
    const char *kv[] = {"TITLE", "not an admin", "NONCE", nonce, "CSS", page_css, "USER", euser,
                        NULL};
    return fill(PAGE_HEAD "<body><div class=\"box\"><h1>Not an admin</h1>"
                          "<p id=\"forbidden\">You are signed in as <b>@@USER@@</b>, who is not "
                          "an admin of this mesh. The status page is for admins only: an "
                          "operator can grant it with <code>meshctl user set @@USER@@ --admin "
                          "on</code>.</p><form method=\"post\" action=\"/logout\"><button "
                          "type=\"submit\">sign in as someone else</button></form></div>"
                          "</body></html>\n",
                kv);
}
