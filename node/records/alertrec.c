/* alertrec: see alertrec.h. Decoding checks shapes (common/mpfields); the checks alert.add
 * applies then run again, so a replicated alert is never held to less. */
#include "node/records/alertrec.h"

#include "common/log.h"
#include "common/mp.h"
#include "common/mpfields.h"
#include "common/xmalloc.h"
#include "node/nodecfg.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[ALERT_KINDS] = {"pop", "site", "target", "cert"};

const char *alert_kind_name(enum alert_kind k)
{
    return (unsigned)k < ALERT_KINDS ? kind_names[k] : NULL;
}

int alert_kind_parse(const char *s, size_t len, enum alert_kind *k)
{
    for (unsigned i = 0; i < ALERT_KINDS; i++)
        if (strlen(kind_names[i]) == len && !memcmp(s, kind_names[i], len)) {
            *k = (enum alert_kind)i;
            return 0;
        }
    return -EINVAL;
}

int alert_events_parse(const char *s, unsigned *mask, const char **why)
{
    *mask = 0;
    if (!strcmp(s, "all")) {
        *mask = ALERT_EVENTS_ALL;
        return 0;
    }
    const char *p = s;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        enum alert_kind k;
        if (len == 0) {
            *why = "the list of events has an empty item (write pop,site,target,cert or all)";
            return -EINVAL;
        }
        if (alert_kind_parse(p, len, &k)) {
            *why = "unknown event kind: the kinds are pop, site, target and cert (or all)";
            return -EINVAL;
        }
        if (*mask & (1u << k)) {
            *why = "an event kind is listed twice";
            return -EINVAL;
        }
        *mask |= 1u << k;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

void alert_events_str(unsigned mask, char *out, size_t len)
{
    size_t off = 0;
    if (len)
        out[0] = '\0';
    for (unsigned i = 0; i < ALERT_KINDS; i++)
        if (mask & (1u << i)) {
            int n = snprintf(out + off, len > off ? len - off : 0, "%s%s", off ? "," : "",
                             kind_names[i]);
            if (n > 0)
                off += (size_t)n;
        }
}

int alert_check_name(const char *name, const char **why)
{
    if (nodecfg_check_name(name)) {
        *why = "an alert name is 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'";
        return -EINVAL;
    }
    return 0;
}

/* Where the host of url starts and ends (after "scheme://"), or -EINVAL with *why. */
static int url_authority(const char *url, size_t *host_at, size_t *end, const char **why)
{
    size_t skip;
    if (!strncmp(url, "http://", 7))
        skip = 7;
    else if (!strncmp(url, "https://", 8))
        skip = 8;
    else {
        *why = "a webhook URL starts with http:// or https://";
        return -EINVAL;
    }
    size_t e = skip + strcspn(url + skip, "/?#");
    *host_at = skip;
    *end = e;
    return 0;
}

int alert_check_url(const char *url, const char **why)
{
    size_t len = strnlen(url, ALERT_URL_MAX + 1);
    if (len > ALERT_URL_MAX) {
        *why = "a webhook URL is longer than 1024 bytes";
        return -EINVAL;
    }
    for (size_t i = 0; i < len; i++)
        if (url[i] <= 0x20 || url[i] >= 0x7f) {
            *why = "a webhook URL holds a space or a byte that is not printable ASCII "
                   "(percent-encode it)";
            return -EINVAL;
        }
    size_t h, e;
    if (url_authority(url, &h, &e, why))
        return -EINVAL;
    if (memchr(url + h, '@', e - h)) {
        *why = "a webhook URL with user:password@ is not supported (put a token in the path "
               "or query)";
        return -EINVAL;
    }
    if (strchr(url, '#')) {
        *why = "a webhook URL has no #fragment";
        return -EINVAL;
    }
    /* host [":" port]; an IPv6 literal in brackets */
    size_t host_end = e;
    const char *colon = NULL;
    if (url[h] == '[') {
        const char *rb = memchr(url + h, ']', e - h);
        if (!rb || rb == url + h + 1) {
            *why = "a webhook URL's IPv6 address is not closed by ']'";
            return -EINVAL;
        }
        for (const char *q = url + h + 1; q < rb; q++)
            if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f') ||
                  (*q >= 'A' && *q <= 'F') || *q == ':' || *q == '.')) {
                *why = "a webhook URL's IPv6 address holds a character other than hex digits, "
                       "':' and '.'";
                return -EINVAL;
            }
        if ((size_t)(rb + 1 - url) < e) {
            if (rb[1] != ':') {
                *why = "a webhook URL has something other than :PORT after its IPv6 address";
                return -EINVAL;
            }
            colon = rb + 1;
        }
        host_end = (size_t)(rb + 1 - url);
    } else {
        colon = memchr(url + h, ':', e - h);
        if (colon)
            host_end = (size_t)(colon - url);
        if (host_end == h) {
            *why = "a webhook URL has no host";
            return -EINVAL;
        }
        for (size_t i = h; i < host_end; i++) {
            char c = url[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '.' || c == '_')) {
                *why = "a webhook URL's host holds a character other than letters, digits, '-', "
                       "'.' and '_'";
                return -EINVAL;
            }
        }
    }
    if (colon) {
        size_t pl = e - (size_t)(colon + 1 - url);
        unsigned long port = 0;
        if (pl == 0 || pl > 5) {
            *why = "a webhook URL's port is not a number from 1 to 65535";
            return -EINVAL;
        }
        for (size_t i = 0; i < pl; i++) {
            char c = colon[1 + i];
            if (c < '0' || c > '9') {
                *why = "a webhook URL's port is not a number from 1 to 65535";
                return -EINVAL;
            }
            port = port * 10 + (unsigned long)(c - '0');
        }
        if (port < 1 || port > 65535) {
            *why = "a webhook URL's port is not a number from 1 to 65535";
            return -EINVAL;
        }
    }
    return 0;
}

void alert_url_origin(const char *url, char *out, size_t len)
{
    size_t h, e;
    const char *why;
    if (alert_check_url(url, &why) || url_authority(url, &h, &e, &why)) {
        snprintf(out, len, "(bad url)");
        return;
    }
    snprintf(out, len, "%.*s", (int)e, url);
}

int alert_check(const alert_rec_t *a, const char **why)
{
    if (alert_check_name(a->name, why) || alert_check_url(a->url, why))
        return -EINVAL;
    if (a->events == 0 || (a->events & ~ALERT_EVENTS_ALL)) {
        *why = "an alert's events are one or more of pop, site, target and cert";
        return -EINVAL;
    }
    return 0;
}

int alert_key(const char *name, char *out, size_t len)
{
    const char *why;
    if (alert_check_name(name, &why))
        return -EINVAL;
    int n = snprintf(out, len, ALERT_PREFIX "%s", name);
    return n < 0 || (size_t)n >= len ? -EINVAL : 0;
}

void alert_pack(msgpack_packer *pk, const alert_rec_t *a)
{
    unsigned n = 0;
    for (unsigned i = 0; i < ALERT_KINDS; i++)
        n += !!(a->events & (1u << i));
    msgpack_pack_map(pk, 4);
    mpw_kv_str(pk, "name", a->name);
    mpw_kv_str(pk, "url", a->url);
    mpw_str(pk, "events");
    msgpack_pack_array(pk, n);
    for (unsigned i = 0; i < ALERT_KINDS; i++)
        if (a->events & (1u << i))
            mpw_str(pk, kind_names[i]);
    mpw_kv_u64(pk, "created_ms", a->created_ms);
}

static int read_events(mpr_t *r, void *dst, const char **why)
{
    unsigned *mask = dst;
    uint32_t n;
    if (mpr_array(r, &n)) {
        *why = "events is not an array";
        return -EBADMSG;
    }
    if (n == 0 || n > ALERT_KINDS) {
        *why = "events holds no kind or more kinds than there are";
        return -EBADMSG;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *s;
        uint32_t l;
        enum alert_kind k;
        if (mpr_str(r, &s, &l)) {
            *why = "an event kind is not a string";
            return -EBADMSG;
        }
        if (alert_kind_parse(s, l, &k)) {
            *why = "unknown event kind";
            return -EBADMSG;
        }
        if (*mask & (1u << k)) {
            *why = "an event kind is listed twice";
            return -EBADMSG;
        }
        *mask |= 1u << k;
    }
    return 0;
}

int alert_parse(const uint8_t *buf, size_t len, const char *name, alert_rec_t *a, const char **why)
{
    memset(a, 0, sizeof(*a));
    mpf_t fs[] = {
        {"name", MPF_STR, a->name, sizeof(a->name), true, false, NULL},
        {"url", MPF_STR, a->url, sizeof(a->url), true, false, NULL},
        {"events", MPF_CUSTOM, &a->events, 0, true, false, read_events},
        {"created_ms", MPF_U64, &a->created_ms, 0, false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    if (alert_check(a, why))
        return -EBADMSG;
    if (strcmp(a->name, name) != 0) {
        *why = "the record's name is not the name in its key";
        return -EBADMSG;
    }
    return 0;
}

struct collect {
    alert_rec_t *v;
    size_t n;
};

static int collect_one(const store_entry_t *e, void *ctx)
{
    struct collect *c = ctx;
    size_t pl = strlen(ALERT_PREFIX), nl = e->klen - pl;
    char name[ALERT_NAME_MAX + 1];
    const char *why = "the key is too long";
    alert_rec_t r;
    if (nl <= ALERT_NAME_MAX) {
        memcpy(name, e->key + pl, nl);
        name[nl] = '\0';
        if (alert_parse(e->value, e->vlen, name, &r, &why) == 0) {
            c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
            c->v[c->n++] = r;
            return 0;
        }
    }
    log_warn("alert: skipping unreadable record %.*s: %s", (int)e->klen, e->key, why);
    return 0;
}

int alert_list(store_t *store, alert_rec_t **out, size_t *n)
{
    struct collect c = {0};
    int rc = store_list(store, ALERT_PREFIX, strlen(ALERT_PREFIX), collect_one, &c);
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

/* ---- alertstate/ ----------------------------------------------------------------------------- */

bool alert_subject_ok(const char *s)
{
    size_t len = strnlen(s, ALERT_SUBJECT_MAX + 1);
    if (len == 0 || len > ALERT_SUBJECT_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return false;
    return true;
}

int alertstate_key(enum alert_kind k, const char *subject, char *out, size_t len)
{
    if (!alert_kind_name(k) || !alert_subject_ok(subject))
        return -EINVAL;
    int n = snprintf(out, len, ALERTSTATE_PREFIX "%s/%s", alert_kind_name(k), subject);
    return n < 0 || (size_t)n >= len || n > STORE_KEY_MAX ? -EINVAL : 0;
}

void alertstate_pack(msgpack_packer *pk, const alertstate_rec_t *s)
{
    msgpack_pack_map(pk, 6);
    mpw_kv_str(pk, "kind", alert_kind_name(s->kind));
    mpw_kv_str(pk, "subject", s->subject);
    mpw_kv_str(pk, "state", s->state);
    mpw_kv_str(pk, "event", s->event);
    mpw_kv_u64(pk, "since_ms", s->since_ms);
    mpw_kv_str(pk, "by", s->by);
}

int alertstate_parse(const uint8_t *buf, size_t len, enum alert_kind kind, const char *subject,
                     alertstate_rec_t *s, const char **why)
{
    char kname[16];
    memset(s, 0, sizeof(*s));
    mpf_t fs[] = {
        {"kind", MPF_STR, kname, sizeof(kname), true, false, NULL},
        {"subject", MPF_STR, s->subject, sizeof(s->subject), true, false, NULL},
        {"state", MPF_STR, s->state, sizeof(s->state), true, false, NULL},
        {"event", MPF_STR, s->event, sizeof(s->event), true, false, NULL},
        {"since_ms", MPF_U64, &s->since_ms, 0, true, false, NULL},
        {"by", MPF_STR, s->by, sizeof(s->by), false, false, NULL},
    };
    if (mpf_parse(buf, len, fs, sizeof(fs) / sizeof(fs[0]), why))
        return -EBADMSG;
    if (alert_kind_parse(kname, strlen(kname), &s->kind) || s->kind != kind) {
        *why = "the record's kind is not the kind in its key";
        return -EBADMSG;
    }
    if (!alert_subject_ok(s->subject) || strcmp(s->subject, subject)) {
        *why = "the record's subject is not the subject in its key";
        return -EBADMSG;
    }
    if (!s->state[0]) {
        *why = "the state is empty";
        return -EBADMSG;
    }
    for (const char *p = s->state; *p; p++)
        if (*p < 'a' || *p > 'z') {
            *why = "the state holds a character other than a-z";
            return -EBADMSG;
        }
    if (strlen(s->event) != ALERT_EVENT_ID_LEN) {
        *why = "the event id is not 16 hex digits";
        return -EBADMSG;
    }
    for (const char *p = s->event; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
            *why = "the event id is not 16 lowercase hex digits";
            return -EBADMSG;
        }
    if (s->by[0] && nodecfg_check_name(s->by)) {
        *why = "by is not a node name";
        return -EBADMSG;
    }
    return 0;
}

/* ---- the sender rule ---------------------------------------------------------------------- */

static uint64_t weight(uint64_t id, const char *key)
{
    crypto_generichash_state st;
    uint8_t be[8], h[8];
    for (int i = 0; i < 8; i++)
        be[i] = (uint8_t)(id >> (56 - 8 * i));
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, be, sizeof(be));
    crypto_generichash_update(&st, (const uint8_t *)key, strlen(key));
    crypto_generichash_final(&st, h, sizeof(h));
    uint64_t w = 0;
    for (int i = 0; i < 8; i++)
        w = w << 8 | h[i];
    return w;
}

unsigned alert_rank(uint64_t self, const uint64_t *pops, size_t n, const char *key)
{
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= pops[i] == self;
    if (!found)
        return (unsigned)n;
    uint64_t mine = weight(self, key);
    unsigned rank = 0;
    for (size_t i = 0; i < n; i++) {
        if (pops[i] == self)
            continue;
        uint64_t w = weight(pops[i], key);
        /* ties (never in practice) broken by the lower id */
        rank += w > mine || (w == mine && pops[i] < self);
    }
    return rank;
}

void alert_event_id(enum alert_kind k, const char *subject, const char *state, uint64_t since_ms,
                    uint64_t writer, char out[ALERT_EVENT_ID_LEN + 1])
{
    crypto_generichash_state st;
    uint8_t h[8], nul = 0, be[16];
    for (int i = 0; i < 8; i++) {
        be[i] = (uint8_t)(since_ms >> (56 - 8 * i));
        be[8 + i] = (uint8_t)(writer >> (56 - 8 * i));
    }
    const char *kn = alert_kind_name(k) ? alert_kind_name(k) : "";
    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const uint8_t *)kn, strlen(kn) + 1);
    crypto_generichash_update(&st, (const uint8_t *)subject, strlen(subject));
    crypto_generichash_update(&st, &nul, 1);
    crypto_generichash_update(&st, (const uint8_t *)state, strlen(state));
    crypto_generichash_update(&st, &nul, 1);
    crypto_generichash_update(&st, be, sizeof(be));
    crypto_generichash_final(&st, h, sizeof(h));
    sodium_bin2hex(out, ALERT_EVENT_ID_LEN + 1, h, sizeof(h));
}
