/* alert: see alert.h for the rule. This file: what this PoP sees (observations), the decision,
 * the JSON of an event, and the operator commands. */
#include "node/alert/alert.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/alert/alertpost.h"
#include "node/records/alertrec.h"
#include "node/tls/certstore.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* One subject as this PoP sees it now. */
struct obs {
    enum alert_kind kind;
    char subject[ALERT_SUBJECT_MAX + 1];
    char state[ALERT_STATE_MAX + 1];
    uint64_t seen_ms;               /* monotonic ms: since when this state is seen */
    uint64_t pop_id;                /* kind pop: the subject PoP (left out of the ranking) */
    json_t *detail;                 /* owned: what the event says beyond kind, subject and state */
    bool present;                   /* seen in the current evaluation */
    char told[ALERT_STATE_MAX + 1]; /* POPMESH_TEST_ALERT_NO_GUARD only: last announced here */
};

struct alert {
    alert_opts_t o;
    alertpost_t *post;
    struct obs *obs;
    size_t nobs;
    ev_timer tick;
    int watch_ids[4];
    bool dirty;         /* something changed since the last evaluation */
    bool pending;       /* a subject differs from its record: look again next tick */
    double last_full;   /* ev_now of the last evaluation */
    uint64_t start_ms;  /* monotonic */
    bool no_guard;      /* test knob */
    uint64_t events;    /* events this PoP announced */
    uint64_t baselines; /* first states recorded without an alert */
};

/* ---- reading our own answers ---------------------------------------------------------------- */

static const msgpack_object *obj_get(const msgpack_object *m, const char *key)
{
    if (!m || m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == kl &&
            !memcmp(kv->key.via.str.ptr, key, kl))
            return &kv->val;
    }
    return NULL;
}

/* The string at key into out ("" when absent or not a string). */
static const char *obj_str(const msgpack_object *m, const char *key, char *out, size_t len)
{
    const msgpack_object *v = obj_get(m, key);
    if (v && v->type == MSGPACK_OBJECT_STR)
        snprintf(out, len, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    else if (len)
        out[0] = '\0';
    return out;
}

static const msgpack_object *call(alert_t *a, const char *command, msgpack_sbuffer *sb,
                                  msgpack_unpacked *up)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (control_call(a->o.control, command, &pk) != CTL_OK || !sb->size)
        return NULL;
    size_t off = 0;
    if (msgpack_unpack_next(up, sb->data, sb->size, &off) != MSGPACK_UNPACK_SUCCESS)
        return NULL;
    return &up->data;
}

/* ---- observations ------------------------------------------------------------------------- */

static struct obs *obs_find(alert_t *a, enum alert_kind k, const char *subject)
{
    for (size_t i = 0; i < a->nobs; i++)
        if (a->obs[i].kind == k && !strcmp(a->obs[i].subject, subject))
            return &a->obs[i];
    return NULL;
}

/* Records that this PoP sees subject in state now; takes ownership of detail. */
static void observe(alert_t *a, enum alert_kind k, const char *subject, const char *state,
                    json_t *detail, uint64_t now)
{
    if (!alert_subject_ok(subject)) {
        json_decref(detail);
        return;
    }
    struct obs *o = obs_find(a, k, subject);
    if (!o) {
        a->obs = xrealloc(a->obs, (a->nobs + 1) * sizeof(*a->obs));
        o = &a->obs[a->nobs++];
        memset(o, 0, sizeof(*o));
        o->kind = k;
        snprintf(o->subject, sizeof(o->subject), "%s", subject);
    }
    if (strcmp(o->state, state)) {
        snprintf(o->state, sizeof(o->state), "%s", state);
        o->seen_ms = now;
    }
    json_decref(o->detail);
    o->detail = detail;
    o->present = true;
}

static void observe_pops(alert_t *a, uint64_t now, uint64_t **alive, size_t *nalive)
{
    msgpack_sbuffer sb;
    msgpack_unpacked up;
    msgpack_sbuffer_init(&sb);
    msgpack_unpacked_init(&up);
    const msgpack_object *m = call(a, "members", &sb, &up);
    *alive = NULL;
    *nalive = 0;
    if (m && m->type == MSGPACK_OBJECT_ARRAY) {
        *alive = xmalloc((m->via.array.size + 1) * sizeof(**alive));
        for (uint32_t i = 0; i < m->via.array.size; i++) {
            const msgpack_object *e = &m->via.array.ptr[i];
            char name[64], idhex[17], state[16];
            obj_str(e, "name", name, sizeof(name));
            obj_str(e, "id", idhex, sizeof(idhex));
            obj_str(e, "state", state, sizeof(state));
            char *end;
            uint64_t id = strtoull(idhex, &end, 16);
            if (!name[0] || strlen(idhex) != 16 || *end)
                continue;
            if (!strcmp(state, "alive"))
                (*alive)[(*nalive)++] = id;
            const char *s = !strcmp(state, "alive")                            ? "up"
                            : !strcmp(state, "dead") || !strcmp(state, "left") ? "down"
                                                                               : NULL;
            if (!s) { /* suspect: keep what was seen */
                struct obs *o = obs_find(a, ALERT_POP, name);
                if (o)
                    o->present = true;
                continue;
            }
            json_t *d = json_pack("{s:s, s:s}", "id", idhex, "swim_state", state);
            observe(a, ALERT_POP, name, s, d, now);
            struct obs *o = obs_find(a, ALERT_POP, name);
            if (o)
                o->pop_id = id;
        }
    }
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

static void observe_sites(alert_t *a, uint64_t now)
{
    msgpack_sbuffer sb;
    msgpack_unpacked up;
    msgpack_sbuffer_init(&sb);
    msgpack_unpacked_init(&up);
    const msgpack_object *m = call(a, "sites", &sb, &up);
    const msgpack_object *v = obj_get(m, "sites");
    if (v && v->type == MSGPACK_OBJECT_ARRAY) {
        /* one entry per replica, sorted by site: merge consecutive entries of a site */
        for (uint32_t i = 0; i < v->via.array.size;) {
            char site[64], other[64], st[16];
            obj_str(&v->via.array.ptr[i], "name", site, sizeof(site));
            unsigned online = 0, replicas = 0;
            uint32_t j = i;
            for (; j < v->via.array.size; j++) {
                obj_str(&v->via.array.ptr[j], "name", other, sizeof(other));
                if (strcmp(other, site))
                    break;
                replicas++;
                online += !strcmp(obj_str(&v->via.array.ptr[j], "state", st, sizeof(st)), "online");
            }
            i = j;
            if (!site[0])
                continue;
            json_t *d = json_pack("{s:I, s:I}", "replicas", (json_int_t)replicas, "replicas_online",
                                  (json_int_t)online);
            observe(a, ALERT_SITE, site, online ? "up" : "down", d, now);
        }
    }
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

static void observe_targets(alert_t *a, uint64_t now)
{
    msgpack_sbuffer sb;
    msgpack_unpacked up;
    msgpack_sbuffer_init(&sb);
    msgpack_unpacked_init(&up);
    const msgpack_object *m = call(a, "targets", &sb, &up);
    const msgpack_object *v = obj_get(m, "resources");
    for (uint32_t i = 0; v && v->type == MSGPACK_OBJECT_ARRAY && i < v->via.array.size; i++) {
        char res[64];
        obj_str(&v->via.array.ptr[i], "name", res, sizeof(res));
        const msgpack_object *t = obj_get(&v->via.array.ptr[i], "targets");
        for (uint32_t k = 0; t && t->type == MSGPACK_OBJECT_ARRAY && k < t->via.array.size; k++) {
            const msgpack_object *e = &t->via.array.ptr[k];
            char site[64], addr[256], state[16], why[256], subject[ALERT_SUBJECT_MAX + 2];
            obj_str(e, "site", site, sizeof(site));
            obj_str(e, "addr", addr, sizeof(addr));
            obj_str(e, "state", state, sizeof(state));
            obj_str(e, "why", why, sizeof(why));
            int n = snprintf(subject, sizeof(subject), "%s/%s", res, addr);
            if (n < 0 || (size_t)n > ALERT_SUBJECT_MAX)
                continue;
            if (strcmp(state, "up") && strcmp(state, "down")) {
                /* unknown, unreachable: nothing new about the target itself */
                struct obs *o = obs_find(a, ALERT_TARGET, subject);
                if (o)
                    o->present = true;
                continue;
            }
            json_t *d = json_pack("{s:s, s:s, s:s, s:s}", "resource", res, "site", site, "addr",
                                  addr, "why", why);
            observe(a, ALERT_TARGET, subject, state, d, now);
        }
    }
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sb);
}

static void iso_time(uint64_t ms, char *out, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, len, "%s.%03uZ", base, (unsigned)(ms % 1000));
}

struct cert_walk {
    alert_t *a;
    uint64_t now, wall;
};

static int cert_one(const store_entry_t *e, void *ctx)
{
    struct cert_walk *w = ctx;
    char id[CERT_ID_MAX + 1];
    if (cert_key_id(e->key, e->klen, id, sizeof(id)))
        return 0;
    cert_rec_t c;
    const char *why;
    if (cert_parse(e->value, e->vlen, id, &c, &why))
        return 0; /* certstore's own readers log unreadable records */
    const uint64_t window = (uint64_t)ALERT_CERT_DAYS * 86400000ull;
    const char *state = c.not_after_ms <= w->wall           ? "expired"
                        : c.not_after_ms - w->wall < window ? "expiring"
                                                            : "ok";
    char na[40];
    iso_time(c.not_after_ms, na, sizeof(na));
    double days = ((double)c.not_after_ms - (double)w->wall) / 86400000.0;
    json_t *names = json_array();
    for (size_t i = 0; i < c.nnames && i < 8; i++)
        json_array_append_new(names, json_string(c.names[i]));
    json_t *d =
        json_pack("{s:s, s:f, s:I, s:o, s:s}", "not_after", na, "days_left", days, "window_days",
                  (json_int_t)ALERT_CERT_DAYS, "names", names, "source", c.source);
    observe(w->a, ALERT_CERT, id, state, d, w->now);
    cert_rec_free(&c);
    return 0;
}

static void observe_certs(alert_t *a, uint64_t now)
{
    struct cert_walk w = {.a = a, .now = now, .wall = clock_wall_ms()};
    store_list(a->o.store, CERT_PREFIX, strlen(CERT_PREFIX), cert_one, &w);
}

/* ---- the decision ------------------------------------------------------------------------- */

static const char *implied_state(enum alert_kind k)
{
    return k == ALERT_POP ? "up" : k == ALERT_CERT ? "ok" : NULL;
}

static void announce(alert_t *a, const struct obs *o, const char *prev, const char *event,
                     uint64_t wall, unsigned rank, size_t npops, const alert_rec_t *alerts,
                     size_t nalerts)
{
    /* since: when this PoP first saw the state (the settle time and a takeover's wait before) */
    char when[40], since[40];
    uint64_t held = clock_mono_ms() - o->seen_ms;
    iso_time(wall, when, sizeof(when));
    iso_time(wall > held ? wall - held : wall, since, sizeof(since));
    unsigned n = 0;
    for (size_t i = 0; i < nalerts; i++) {
        if (!(alerts[i].events & (1u << o->kind)))
            continue;
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:O}", "id",
                              event, "kind", alert_kind_name(o->kind), "subject", o->subject,
                              "state", o->state, "previous", prev, "time", when, "time_ms",
                              (json_int_t)wall, "since", since, "sender", a->o.node_name, "alert",
                              alerts[i].name, "detail", o->detail ? o->detail : json_null());
        char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        if (!body || strlen(body) > ALERTPOST_BODY_MAX) {
            log_warn("alert %s: event %s could not be written as JSON", alerts[i].name, event);
            free(body);
            continue;
        }
        alertpost_submit(a->post, alerts[i].name, alerts[i].url, event, body);
        free(body);
        n++;
    }
    a->events++;
    log_info("alert: %s %s is %s (was %s): event %s, %u webhook(s); this PoP is rank %u of %zu",
             alert_kind_name(o->kind), o->subject, o->state, prev, event, n, rank, npops);
}

/* Returns true while o differs from what the mesh last announced (look again later). */
static bool decide(alert_t *a, struct obs *o, const uint64_t *alive, size_t nalive, uint64_t now,
                   const alert_rec_t *alerts, size_t nalerts)
{
    char key[ALERT_KEY_MAX + 1];
    if (alertstate_key(o->kind, o->subject, key, sizeof(key)))
        return false;
    uint64_t wall = clock_wall_ms();
    if (a->no_guard) {
        const char *prev = o->told[0] ? o->told : implied_state(o->kind);
        if (prev && !strcmp(prev, o->state))
            return false;
        if (now - o->seen_ms < ALERT_SETTLE_MS || now - a->start_ms < ALERT_STARTUP_GRACE_MS)
            return true;
        if (prev) {
            char event[ALERT_EVENT_ID_LEN + 1];
            alert_event_id(o->kind, o->subject, o->state, wall, a->o.self_id, event);
            announce(a, o, prev, event, wall, 0, 0, alerts, nalerts);
        }
        snprintf(o->told, sizeof(o->told), "%s", o->state);
        return false;
    }
    alertstate_rec_t rec;
    bool have = false;
    store_entry_t e = {0};
    if (store_get(a->o.store, key, strlen(key), &e) == 0) {
        const char *why;
        have = alertstate_parse(e.value, e.vlen, o->kind, o->subject, &rec, &why) == 0;
        if (!have)
            log_warn("alert: %s is unreadable (%s): treated as absent", key, why);
        store_entry_free(&e);
    }
    const char *prev = have ? rec.state : implied_state(o->kind);
    if (prev && !strcmp(prev, o->state))
        return false;
    if (now - a->start_ms < ALERT_STARTUP_GRACE_MS)
        return true;
    /* the ranking: alive PoPs of this view, the subject PoP left out */
    uint64_t *pops = xmalloc((nalive + 1) * sizeof(*pops));
    size_t np = 0;
    for (size_t i = 0; i < nalive; i++)
        if (!(o->kind == ALERT_POP && alive[i] == o->pop_id))
            pops[np++] = alive[i];
    unsigned rank = alert_rank(a->o.self_id, pops, np, key);
    free(pops);
    log_debug("alert: %s is %s here, %s in the record; rank %u of %zu", key, o->state,
              prev ? prev : "(none)", rank, np);
    if (rank >= np || now - o->seen_ms < ALERT_SETTLE_MS + (uint64_t)rank * ALERT_TAKEOVER_MS)
        return true;
    /* The guard first: once this record spreads, no other PoP announces this change. */
    alertstate_rec_t nr = {.kind = o->kind, .since_ms = wall};
    snprintf(nr.subject, sizeof(nr.subject), "%s", o->subject);
    snprintf(nr.state, sizeof(nr.state), "%s", o->state);
    snprintf(nr.by, sizeof(nr.by), "%s", a->o.node_name);
    alert_event_id(o->kind, o->subject, o->state, wall, a->o.self_id, nr.event);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    alertstate_pack(&pk, &nr);
    int rc = meshnode_put_record(a->o.mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        log_warn("alert: cannot write %s (%s): %s %s not announced yet", key,
                 store_last_error(a->o.store), alert_kind_name(o->kind), o->subject);
        return true;
    }
    if (!prev) {
        a->baselines++;
        log_info("alert: %s %s first seen %s (recorded, not announced)", alert_kind_name(o->kind),
                 o->subject, o->state);
        return false;
    }
    announce(a, o, prev, nr.event, wall, rank, np, alerts, nalerts);
    return false;
}

static void evaluate(alert_t *a)
{
    alert_rec_t *alerts = NULL;
    size_t nalerts = 0;
    a->dirty = false;
    a->pending = false;
    a->last_full = ev_now(a->o.loop);
    if (alert_list(a->o.store, &alerts, &nalerts) || nalerts == 0) {
        /* nothing to send to: watch nothing, write nothing */
        for (size_t i = 0; i < a->nobs; i++)
            json_decref(a->obs[i].detail);
        free(a->obs);
        a->obs = NULL;
        a->nobs = 0;
        free(alerts);
        return;
    }
    uint64_t now = clock_mono_ms();
    for (size_t i = 0; i < a->nobs; i++)
        a->obs[i].present = false;
    uint64_t *alive;
    size_t nalive;
    observe_pops(a, now, &alive, &nalive);
    observe_sites(a, now);
    observe_targets(a, now);
    observe_certs(a, now);
    /* subjects gone (a site or resource removed): forget them */
    for (size_t i = 0; i < a->nobs;) {
        if (!a->obs[i].present) {
            json_decref(a->obs[i].detail);
            a->obs[i] = a->obs[--a->nobs];
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < a->nobs; i++)
        a->pending |= decide(a, &a->obs[i], alive, nalive, now, alerts, nalerts);
    free(alive);
    free(alerts);
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    alert_t *a = w->data;
    if (a->dirty || a->pending || ev_now(loop) - a->last_full >= ALERT_CERT_RECHECK_S)
        evaluate(a);
}

static void on_mesh_change(void *ctx)
{
    ((alert_t *)ctx)->dirty = true;
}

static void on_store_change(void *ctx, const store_entry_t *v, size_t n)
{
    (void)v, (void)n;
    ((alert_t *)ctx)->dirty = true;
}

/* ---- commands ------------------------------------------------------------------------------ */

static int arg_name(const ctl_request_t *req, msgpack_packer *pk, char *name)
{
    int rc = ctl_arg_copy(req, "name", name, ALERT_NAME_MAX + 1);
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'name'");
    const char *why = "an alert name is at most 63 bytes";
    if (rc < 0 || alert_check_name(name, &why))
        return control_error(pk, CTL_BAD_REQUEST, "%s", why);
    return CTL_OK;
}

static void pack_answer(msgpack_packer *pk, const alert_rec_t *r)
{
    /* the URL whole: the operator who reads this may change it; logs get its origin only */
    alert_pack(pk, r);
}

static int cmd_alert_add(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    alert_t *a = ctx;
    alert_rec_t r = {.events = ALERT_EVENTS_ALL};
    int rc = arg_name(req, pk, r.name);
    if (rc != CTL_OK)
        return rc;
    rc = ctl_arg_copy(req, "url", r.url, sizeof(r.url));
    if (rc == 0)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'url' (--webhook URL)");
    if (rc < 0)
        return control_error(pk, CTL_BAD_REQUEST, "the webhook URL is longer than %d bytes",
                             ALERT_URL_MAX);
    const char *why = "";
    if (alert_check_url(r.url, &why))
        return control_error(pk, CTL_BAD_REQUEST, "%s", why);
    char events[64];
    rc = ctl_arg_copy(req, "events", events, sizeof(events));
    if (rc < 0)
        return control_error(pk, CTL_BAD_REQUEST,
                             "events must be a list such as pop,site,target,cert");
    if (rc == 1 && alert_events_parse(events, &r.events, &why))
        return control_error(pk, CTL_BAD_REQUEST, "%s", why);
    if (alert_check(&r, &why))
        return control_error(pk, CTL_BAD_REQUEST, "%s", why);
    char key[ALERT_KEY_MAX + 1];
    alert_key(r.name, key, sizeof(key));
    store_entry_t e = {0};
    if (store_get(a->o.store, key, strlen(key), &e) == 0) {
        store_entry_free(&e);
        return control_error(pk, CTL_REFUSED,
                             "alert %s already exists (meshctl alert list shows it; meshctl "
                             "alert rm %s first to change it)",
                             r.name, r.name);
    }
    r.created_ms = clock_wall_ms();
    msgpack_sbuffer sb;
    msgpack_packer vpk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&vpk, &sb, msgpack_sbuffer_write);
    alert_pack(&vpk, &r);
    rc = meshnode_put_record(a->o.mesh, key, &sb);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot store alert %s: %s", r.name,
                             store_last_error(a->o.store));
    char origin[ALERT_URL_MAX + 1], ev[64];
    alert_url_origin(r.url, origin, sizeof(origin));
    alert_events_str(r.events, ev, sizeof(ev));
    log_info("alert %s added: %s events to %s", r.name, ev, origin);
    pack_answer(pk, &r);
    return CTL_OK;
}

static int cmd_alert_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    alert_t *a = ctx;
    alert_rec_t *v;
    size_t n;
    if (alert_list(a->o.store, &v, &n))
        return control_error(pk, CTL_FAILED, "cannot list alerts: %s",
                             store_last_error(a->o.store));
    msgpack_pack_map(pk, 1);
    mpw_str(pk, "alerts");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        pack_answer(pk, &v[i]);
    free(v);
    return CTL_OK;
}

static int cmd_alert_rm(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    alert_t *a = ctx;
    char name[ALERT_NAME_MAX + 1], key[ALERT_KEY_MAX + 1];
    int rc = arg_name(req, pk, name);
    if (rc != CTL_OK)
        return rc;
    alert_key(name, key, sizeof(key));
    rc = meshnode_del_record(a->o.mesh, key, strlen(key), NULL);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "no alert %s (meshctl alert list shows them)",
                             name);
    if (rc)
        return control_error(pk, CTL_FAILED, "cannot remove alert %s: %s", name,
                             store_last_error(a->o.store));
    msgpack_pack_map(pk, 1);
    mpw_kv_str(pk, "name", name);
    log_info("alert %s removed", name);
    return CTL_OK;
}

static const control_command_t alert_commands[] = {
    {"alert.add", cmd_alert_add,
     "name: str, url: str (http:// or https://) [events: \"pop,site,target,cert\" or \"all\", "
     "default all] -> the alert"},
    {"alert.list", cmd_alert_list, "-> {alerts: [{name, url, events, created_ms}]}"},
    {"alert.rm", cmd_alert_rm, "name: str -> {name}"},
    {NULL, NULL, NULL},
};

int alert_register_commands(alert_t *a, control_t *ctl)
{
    return control_add_commands(ctl, alert_commands, a);
}

void alert_pack_status(const alert_t *a, msgpack_packer *pk)
{
    alertpost_stats_t st;
    alertpost_stats(a->post, &st);
    mpw_str(pk, "alerts");
    msgpack_pack_map(pk, 8);
    mpw_kv_u64(pk, "events", a->events);
    mpw_kv_u64(pk, "baselines", a->baselines);
    mpw_kv_u64(pk, "queued", st.queued_total);
    mpw_kv_u64(pk, "sent", st.sent);
    mpw_kv_u64(pk, "attempts_failed", st.attempts_failed);
    mpw_kv_u64(pk, "failed", st.failed);
    mpw_kv_u64(pk, "dropped", st.dropped);
    mpw_kv_u64(pk, "pending", st.pending);
}

/* ---- life ---------------------------------------------------------------------------------- */

alert_t *alert_new(const alert_opts_t *o, char *err, size_t errlen)
{
    alert_t *a = xcalloc(1, sizeof(*a));
    a->o = *o;
    alertpost_opts_t po = {.loop = o->loop};
    const char *knob = getenv("POPMESH_TEST_ALERT_TIMEOUT_MS");
    if (knob && atoi(knob) >= 100) {
        /* tests of a receiver that never answers: short attempts and backoff */
        po.timeout_ms = (uint32_t)atoi(knob);
        po.backoff_min_ms = po.timeout_ms / 2;
        po.backoff_max_ms = po.timeout_ms * 2;
        log_warn("TEST KNOB: POPMESH_TEST_ALERT_TIMEOUT_MS: webhook attempts time out after %u "
                 "ms, retries after %u..%u ms",
                 po.timeout_ms, po.backoff_min_ms, po.backoff_max_ms);
    }
    if (getenv("POPMESH_TEST_ALERT_NO_GUARD")) {
        a->no_guard = true;
        log_warn("TEST KNOB: POPMESH_TEST_ALERT_NO_GUARD: this PoP announces every change it "
                 "sees, with no sender rule and no alertstate/ record");
    }
    a->post = alertpost_new(&po);
    if (!a->post) {
        snprintf(err, errlen, "alerts: cannot start the delivery thread: %s", strerror(errno));
        free(a);
        return NULL;
    }
    a->start_ms = clock_mono_ms();
    a->dirty = true;
    static const char *const prefixes[4] = {ALERT_PREFIX, ALERTSTATE_PREFIX, CERT_PREFIX,
                                            "sitehealth/"};
    for (int i = 0; i < 4; i++) {
        a->watch_ids[i] =
            store_watch(o->store, prefixes[i], strlen(prefixes[i]), on_store_change, a);
        if (a->watch_ids[i] < 0) {
            snprintf(err, errlen, "alerts: cannot watch the store: %s", strerror(-a->watch_ids[i]));
            alert_destroy(&a);
            return NULL;
        }
    }
    if (meshnode_add_change_hook(o->mesh, on_mesh_change, a)) {
        snprintf(err, errlen, "alerts: no room for another mesh change hook");
        alert_destroy(&a);
        return NULL;
    }
    ev_timer_init(&a->tick, on_tick, ALERT_TICK_S, ALERT_TICK_S);
    a->tick.data = a;
    ev_timer_start(o->loop, &a->tick);
    return a;
}

void alert_destroy(alert_t **ap)
{
    alert_t *a = *ap;
    if (!a)
        return;
    ev_timer_stop(a->o.loop, &a->tick);
    meshnode_remove_change_hook(a->o.mesh, on_mesh_change, a);
    for (int i = 0; i < 4; i++)
        if (a->watch_ids[i] > 0)
            store_unwatch(a->o.store, a->watch_ids[i]);
    alertpost_destroy(&a->post);
    for (size_t i = 0; i < a->nobs; i++)
        json_decref(a->obs[i].detail);
    free(a->obs);
    free(a);
    *ap = NULL;
}
