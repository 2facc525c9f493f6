#include "node/daemon.h"

#include "common/accesslog.h"
#include "common/clock.h"

#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/auth/authadmin.h"
#include "node/auth/idjwt.h"
#include "node/auth/totpadmin.h"
#include "node/trust/trust.h"
#include "node/ctl/control.h"
#include "node/records/identity.h"
#include "common/fdlimit.h"
#include "node/dataplane/dataplane.h"
#include "node/http/httpproxy.h"
#include "node/dns/dnsadmin.h"
#include "node/dns/dnsserver.h"
#include "node/acme/acme.h"
#include "node/oidc/oidc.h"
#include "node/admin/admin.h"
#include "node/alert/alert.h"
#include "node/http/httpstats.h"
#include "node/tls/certadmin.h"
#include "node/tls/certstore.h"
#include "node/tls/ocspfetch.h"
#include "node/tls/reseal.h"
#include "node/tls/ticketkeys.h"
#include "node/tls/tlsctx.h"
#include "node/membership/meshnode.h"
#include "node/nodecfg.h"
#include "storage/hlc.h"
#include "storage/store.h"

#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>
#include <zmq.h>

#define LIST_DEFAULT_LIMIT 1000
#define LIST_MAX_LIMIT     10000
#define LIST_MAX_BYTES     (4 * 1024 * 1024) /* bytes of entries per page */

typedef struct node {
    struct ev_loop *loop;
    const char *dir;
    nodecfg_t cfg;
    identity_t id;
    meshkey_t meshkey;
    char id_hex[17];
    store_t *store;
    control_t *control;
    void *zctx;
    meshnode_t *mesh;
    trust_t *trust; /* the key hierarchy: pinned roots, the certifier, key.* */
    dataplane_t *dataplane;
    httpproxy_t *http; /* NULL unless http-listen or https-listen is set */
    tlsctx_t *tls;     /* the certificates served (HTTPS listener, TCP resources with tls) */
    dnsserver_t *dns;  /* always: answers queries only when dns-listen is set */
    acme_t *acme;      /* certificates from an ACME CA once acme/config is set */
    storekey_t storekey;       /* DIR/store.key (or derived from mesh.key: storekey_from_mesh) */
    certstore_seal_key_t seal; /* seals certificate, ticket and ACME keys (storeseal.h) */
    reseal_stats_t reseal;     /* what the start-up pass over sealed secrets found */
    ticketkeys_t *tickets;     /* the mesh-wide TLS session-ticket keys */
    ocspfetch_t *ocsp;         /* OCSP responses fetched (one PoP per certificate), stapled */
    httpstats_t *http_stats;   /* per-resource HTTP counters (/metrics); with n->http */
    idjwt_t *idjwt;            /* signs X-Popmesh-Identity (DIR/identity-jwt.key) */
    oidc_t *oidc;              /* sign-in with OpenID providers (the ingress's), idp.* */
    admin_t *admin;            /* the admin listener; NULL unless admin-listen is set */
    alert_t *alert;            /* webhook alerts (alert.h) */
    bool running;              /* every part started and the loop runs (/readyz) */
    bool removed;      /* this node learned it was removed from the mesh */
    bool stopping;
    int lock_fd;
    double started; /* ev_now at start, s */
    ev_signal sigint, sigterm;
    ev_signal sighup; /* reopens the access log (logrotate) */
    accesslog_t *alog; /* NULL unless access-log is set */
    ev_timer gc;
} node_t;

/* ---- control commands ---------------------------------------------------------------- */

/* Operator keys are printable ASCII without spaces: they show up in tables, logs and shell
 * commands, where anything else would be ambiguous. The store itself accepts any bytes. */
static int check_key(msgpack_packer *body, const char *k, uint32_t kl)
{
    if (kl == 0)
        return control_error(body, CTL_BAD_REQUEST, "key is empty");
    if (kl > STORE_KEY_MAX)
        return control_error(body, CTL_REFUSED, "key is %u bytes; the limit is %d", kl,
                             STORE_KEY_MAX);
    for (uint32_t i = 0; i < kl; i++)
        if (k[i] < 0x21 || k[i] > 0x7e)
            return control_error(body, CTL_BAD_REQUEST,
                                 "key has a byte 0x%02x at offset %u; keys are printable ASCII "
                                 "without spaces",
                                 (unsigned char)k[i], i);
    return CTL_OK;
}

static int require_key(const ctl_request_t *req, msgpack_packer *body, const char **k, uint32_t *kl)
{
    int rc = ctl_arg_str(req, "key", k, kl);
    if (rc == 0)
        return control_error(body, CTL_BAD_REQUEST, "missing argument 'key'");
    if (rc < 0)
        return control_error(body, CTL_BAD_REQUEST, "argument 'key' must be a string");
    return check_key(body, *k, *kl);
}

static int store_failure(node_t *n, msgpack_packer *body, int rc)
{
    switch (rc) {
    case -ENOSPC:
        return control_error(body, CTL_FAILED,
                             "store is full (%s); raise store-map-size in %s/%s and restart, "
                             "or delete entries",
                             store_last_error(n->store), n->dir, NODECFG_FILE);
    case -E2BIG:
        return control_error(body, CTL_REFUSED, "value is larger than %d bytes", STORE_VALUE_MAX);
    case -EINVAL:
        return control_error(body, CTL_BAD_REQUEST, "value is not one msgpack object");
    default:
        log_error("store: %s", store_last_error(n->store));
        return control_error(body, CTL_FAILED, "storage error: %s", store_last_error(n->store));
    }
}

static void pack_entry(msgpack_packer *pk, const store_entry_t *e)
{
    char origin[17];
    identity_id_hex(e->origin, origin);
    msgpack_pack_map(pk, 5);
    mpw_str(pk, "key");
    mpw_strn(pk, e->key, e->klen);
    mpw_str(pk, "value");
    if (e->value)
        mpw_raw(pk, e->value, e->vlen);
    else
        msgpack_pack_nil(pk);
    mpw_kv_u64(pk, "version", e->version);
    mpw_kv_str(pk, "origin", origin);
    mpw_kv_bool(pk, "signed", e->has_sig); /* by its origin (docs/security.md) */
}

static int cmd_status(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    node_t *n = ctx;
    store_stats_t st;
    if (store_stats(n->store, &st) != 0)
        return control_error(pk, CTL_FAILED, "storage error: %s", store_last_error(n->store));
    control_stats_t cs;
    control_get_stats(n->control, &cs);
    msgpack_pack_map(pk, 9 + MESHNODE_STATUS_PAIRS + (n->dataplane ? DATAPLANE_STATUS_PAIRS : 0) +
                             (n->http ? HTTPPROXY_STATUS_PAIRS : 0) +
                             (n->alert ? ALERT_STATUS_PAIRS : 0));
    meshnode_pack_status(n->mesh, pk);
    if (n->dataplane)
        dataplane_pack_status(n->dataplane, pk);
    if (n->http)
        httpproxy_pack_status(n->http, pk);
    if (n->alert)
        alert_pack_status(n->alert, pk);
    mpw_kv_str(pk, "name", n->cfg.name);
    mpw_kv_str(pk, "id", n->id_hex);
    mpw_kv_str(pk, "region", n->cfg.region);
    mpw_kv_str(pk, "version", POPMESH_VERSION);
    mpw_str(pk, "pid");
    msgpack_pack_int(pk, (int)getpid());
    mpw_str(pk, "uptime_s");
    msgpack_pack_double(pk, ev_now(n->loop) - n->started);
    mpw_kv_str(pk, "data_dir", n->dir);
    /* One short fingerprint of all bucket digests: equal on two nodes means equal stores
     * (up to hash collisions), which is what tests and operators compare. */
    uint64_t digests[STORE_BUCKETS];
    uint8_t be[STORE_BUCKETS * 8], fp[8];
    char fphex[17];
    store_digests(n->store, digests);
    for (int b = 0; b < STORE_BUCKETS; b++)
        for (int i = 0; i < 8; i++)
            be[b * 8 + i] = (uint8_t)(digests[b] >> (56 - 8 * i));
    crypto_generichash(fp, sizeof(fp), be, sizeof(be), NULL, 0);
    sodium_bin2hex(fphex, sizeof(fphex), fp, sizeof(fp));
    mpw_str(pk, "store");
    msgpack_pack_map(pk, 9);
    mpw_kv_str(pk, "digest", fphex);
    mpw_kv_u64(pk, "entries", st.entries);
    mpw_kv_u64(pk, "tombstones", st.tombstones);
    mpw_kv_u64(pk, "map_used", st.map_used);
    mpw_kv_u64(pk, "map_size", st.map_size);
    mpw_kv_u64(pk, "merges_applied", st.merges_applied);
    mpw_kv_u64(pk, "merges_ignored", st.merges_ignored);
    mpw_kv_u64(pk, "skew_rejected", st.skew_rejected);
    /* The start-up pass over sealed secrets (node/tls/reseal.h): counts, never a secret. */
    mpw_str(pk, "sealed");
    msgpack_pack_map(pk, 5);
    mpw_kv_u64(pk, "key_id", n->seal.have_key ? n->seal.key_id : 0);
    mpw_kv_u64(pk, "current", n->reseal.current);
    mpw_kv_u64(pk, "legacy", n->reseal.legacy);
    mpw_kv_u64(pk, "rewritten", n->reseal.rewritten);
    mpw_kv_u64(pk, "unreadable", n->reseal.unreadable);
    mpw_str(pk, "control");
    msgpack_pack_map(pk, 3);
    mpw_kv_u64(pk, "requests", cs.requests);
    mpw_kv_u64(pk, "bad_requests", cs.bad_requests);
    mpw_str(pk, "connections");
    msgpack_pack_uint32(pk, cs.connections);
    return CTL_OK;
}

static int cmd_config_set(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    node_t *n = ctx;
    const char *k;
    uint32_t kl;
    const uint8_t *v;
    size_t vl;
    int rc = require_key(req, pk, &k, &kl);
    if (rc != CTL_OK)
        return rc;
    if (ctl_arg(req, "value", &v, &vl) != 1)
        return control_error(pk, CTL_BAD_REQUEST, "missing argument 'value'");
    store_entry_t out = {0};
    /* Acknowledged only once this returns: store_put returned after the commit reached the
     * disk. */
    rc = meshnode_put_value(n->mesh, k, kl, v, vl, &out);
    if (rc != 0)
        return store_failure(n, pk, rc);
    pack_entry(pk, &out);
    return CTL_OK;
}

static int cmd_config_get(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    node_t *n = ctx;
    const char *k;
    uint32_t kl;
    int rc = require_key(req, pk, &k, &kl);
    if (rc != CTL_OK)
        return rc;
    store_entry_t e = {0};
    rc = store_get(n->store, k, kl, &e);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "no key '%.*s'", (int)kl, k);
    if (rc != 0)
        return store_failure(n, pk, rc);
    pack_entry(pk, &e);
    store_entry_free(&e);
    return CTL_OK;
}

static int cmd_config_del(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    node_t *n = ctx;
    const char *k;
    uint32_t kl;
    int rc = require_key(req, pk, &k, &kl);
    if (rc != CTL_OK)
        return rc;
    store_entry_t out = {0};
    rc = meshnode_del_record(n->mesh, k, kl, &out);
    if (rc == -ENOENT)
        return control_error(pk, CTL_NOT_FOUND, "no key '%.*s'", (int)kl, k);
    if (rc != 0)
        return store_failure(n, pk, rc);
    pack_entry(pk, &out);
    return CTL_OK;
}

struct list_page {
    msgpack_sbuffer buf; /* packed entries */
    msgpack_packer pk;
    const char *after; /* resume strictly after this key, or NULL */
    uint32_t after_len;
    uint64_t limit;
    uint64_t count;
    int more;
};

static int list_one(const store_entry_t *e, void *ctx)
{
    struct list_page *p = ctx;
    if (p->after) {
        size_t m = e->klen < p->after_len ? e->klen : p->after_len;
        int c = memcmp(e->key, p->after, m);
        if (c < 0 || (c == 0 && e->klen <= p->after_len))
            return 0;
    }
    if (p->count == p->limit || p->buf.size > LIST_MAX_BYTES) {
        p->more = 1;
        return 1;
    }
    pack_entry(&p->pk, e);
    p->count++;
    return 0;
}

static int cmd_config_list(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    node_t *n = ctx;
    const char *prefix = "";
    uint32_t plen = 0;
    struct list_page p = {.limit = LIST_DEFAULT_LIMIT};
    if (ctl_arg_str(req, "prefix", &prefix, &plen) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "argument 'prefix' must be a string");
    if (ctl_arg_str(req, "after", &p.after, &p.after_len) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "argument 'after' must be a string");
    if (ctl_arg_uint(req, "limit", &p.limit) < 0 || p.limit == 0 || p.limit > LIST_MAX_LIMIT)
        return control_error(pk, CTL_BAD_REQUEST, "argument 'limit' must be 1..%d", LIST_MAX_LIMIT);
    msgpack_sbuffer_init(&p.buf);
    msgpack_packer_init(&p.pk, &p.buf, msgpack_sbuffer_write);
    int rc = store_list(n->store, prefix, plen, list_one, &p);
    if (rc < 0) {
        msgpack_sbuffer_destroy(&p.buf);
        return store_failure(n, pk, rc);
    }
    msgpack_pack_map(pk, 2);
    mpw_str(pk, "entries");
    msgpack_pack_array(pk, p.count);
    mpw_raw(pk, p.buf.data, p.buf.size);
    mpw_str(pk, "more");
    if (p.more)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_sbuffer_destroy(&p.buf);
    return CTL_OK;
}

static const control_command_t commands[] = {
    {"status", cmd_status, "node name, id, uptime and store counters"},
    {"config.set", cmd_config_set, "key: str, value: any msgpack -> the stored entry"},
    {"config.get", cmd_config_get, "key: str -> {key, value, version, origin, signed}"},
    {"config.del", cmd_config_del, "key: str -> the tombstone's {key, version, origin}"},
    {"config.list", cmd_config_list,
     "[prefix: str] [after: str] [limit: uint] -> {entries: [...], more: bool}"},
    {NULL, NULL, NULL},
};

/* ---- readiness (/readyz) --------------------------------------------------------------- */

/* Ready: the loop runs with every part started, the store is open, this PoP sees itself alive
 * in the mesh and is not leaving it, and every ingress listener (the tunnel port, TCP resource
 * ports, HTTP, HTTPS) is bound and accepting. The HTTP, HTTPS, DNS and mesh listeners are bound
 * at start or popd does not start; resource ports are bound as resources appear, and retried
 * while their port is taken. */
static bool node_ready(void *ctx, char *r, size_t len)
{
    node_t *n = ctx;
    size_t off = 0;
#define REASON(...)                                                                                \
    do {                                                                                           \
        if (off < len)                                                                             \
            off += (size_t)snprintf(r + off, len - off, __VA_ARGS__);                              \
    } while (0)
    if (!n->running)
        REASON("starting: not every listener is bound yet\n");
    if (n->stopping)
        REASON("stopping: leaving the mesh\n");
    store_stats_t st;
    if (!n->store || store_stats(n->store, &st) != 0)
        REASON("store: not open\n");
    if (!n->mesh || !meshnode_is_alive(n->mesh, n->id.node_id))
        REASON("mesh: this PoP does not see itself alive (not joined)\n");
    meshnode_health_t h = {0};
    if (n->dataplane)
        dataplane_health(n->dataplane, &h);
    if (n->http)
        httpproxy_health(n->http, &h);
    if (h.listeners_up < h.listeners)
        REASON("listeners: %u of %u ingress listeners (tunnel, TCP resource ports, HTTP, HTTPS) "
               "not bound or not accepting: a port taken, or out of descriptors (the log says "
               "which)\n",
               h.listeners - h.listeners_up, h.listeners);
    if (n->cfg.dns_listen[0] && !n->dns)
        REASON("dns: %s not bound\n", n->cfg.dns_listen);
#undef REASON
    return off == 0;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

static void leave_done(void *ctx)
{
    node_t *n = ctx;
    ev_break(n->loop, EVBREAK_ALL);
}

/* SIGTERM/SIGINT: tell the mesh we are leaving (so nobody counts us as a failure), give the
 * news a moment to spread, then stop. A second signal stops at once. */
static void on_stop_signal(struct ev_loop *loop, ev_signal *w, int revents)
{
    node_t *n = w->data;
    if (n->stopping) {
        log_info("received %s again; stopping now", strsignal(w->signum));
        ev_break(loop, EVBREAK_ALL);
        return;
    }
    n->stopping = true;
    log_info("received %s; leaving the mesh and shutting down", strsignal(w->signum));
    meshnode_leave(n->mesh, leave_done, n);
}

/* SIGHUP: logrotate moved the access log; the next line goes to a new file at its path. */
static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    node_t *n = w->data;
    char err[1200];
    if (!n->alog)
        return;
    if (accesslog_reopen(n->alog, err, sizeof(err)))
        log_warn("received SIGHUP: %s; still writing to the file opened before", err);
    else
        log_info("received SIGHUP: access log %s reopened", n->cfg.access_log);
}

static void on_removed(void *ctx)
{
    node_t *n = ctx;
    n->removed = true;
    ev_break(n->loop, EVBREAK_ALL);
}

static void on_gc(struct ev_loop *loop, ev_timer *w, int revents)
{
    node_t *n = w->data;
    int rc = store_gc(n->store, clock_wall_ms());
    if (rc > 0)
        log_info("store: collected %d tombstones older than the grace period", rc);
    else if (rc < 0)
        log_warn("store: tombstone collection failed: %s", store_last_error(n->store));
}

/* One popd per data directory: two would each think their writes are the only ones, and LMDB
 * would be fine with it, which is exactly the problem. flock is released by the kernel when
 * the process dies, however it dies, so a crash never leaves a stale lock. */
static int take_lock(node_t *n, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", n->dir, DAEMON_LOCK_FILE);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        char pid[32] = "";
        ssize_t r = pread(fd, pid, sizeof(pid) - 1, 0);
        if (r > 0)
            pid[r] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        close(fd);
        if (e == EWOULDBLOCK) {
            snprintf(err, errlen, "another popd (pid %s) is already running on %s",
                     pid[0] ? pid : "unknown", n->dir);
            return -EBUSY;
        }
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        return -e;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        log_warn("cannot record pid in %s: %s", path, strerror(errno));
    n->lock_fd = fd;
    return 0;
}

static int check_dir(const char *dir, char *err, size_t errlen)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        int e = errno;
        snprintf(err, errlen, "data directory %s: %s%s", dir, strerror(e),
                 e == ENOENT ? "; create it with 'popd init'" : "");
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data directory %s is not a directory", dir);
        return -ENOTDIR;
    }
    if (access(dir, R_OK | W_OK | X_OK) != 0) {
        int e = errno;
        snprintf(err, errlen, "data directory %s is not writable: %s", dir, strerror(e));
        return -e;
    }
    return 0;
}

int daemon_run(const daemon_opts_t *opts, char *err, size_t errlen)
{
    node_t n = {.dir = opts->data_dir, .lock_fd = -1};
    char path[4096];
    int rc;

    if ((rc = check_dir(n.dir, err, errlen)) != 0)
        return rc;
    if ((rc = nodecfg_load(n.dir, &n.cfg, err, errlen)) != 0)
        return rc;
    if (opts->overrides) {
        const nodecfg_t *ov = opts->overrides;
        if (ov->tunnel_listen[0])
            memcpy(n.cfg.tunnel_listen, ov->tunnel_listen, sizeof(n.cfg.tunnel_listen));
        if (ov->tunnel_advertise[0])
            memcpy(n.cfg.tunnel_advertise, ov->tunnel_advertise, sizeof(n.cfg.tunnel_advertise));
        if (ov->ingress_address[0])
            memcpy(n.cfg.ingress_address, ov->ingress_address, sizeof(n.cfg.ingress_address));
        if (ov->http_listen[0])
            memcpy(n.cfg.http_listen, ov->http_listen, sizeof(n.cfg.http_listen));
        if (ov->https_listen[0])
            memcpy(n.cfg.https_listen, ov->https_listen, sizeof(n.cfg.https_listen));
        if (ov->dns_listen[0])
            memcpy(n.cfg.dns_listen, ov->dns_listen, sizeof(n.cfg.dns_listen));
        if (ov->public4[0] || ov->public6[0]) {
            memcpy(n.cfg.public4, ov->public4, sizeof(n.cfg.public4));
            memcpy(n.cfg.public6, ov->public6, sizeof(n.cfg.public6));
        }
        if (ov->has_location) {
            n.cfg.has_location = true;
            n.cfg.lat_udeg = ov->lat_udeg;
            n.cfg.lon_udeg = ov->lon_udeg;
        }
        if (ov->dns_rrl != NODECFG_DNS_RRL_UNSET)
            n.cfg.dns_rrl = ov->dns_rrl;
        if (ov->no_inbound)
            n.cfg.no_inbound = true;
        if (ov->nlabels) {
            memcpy(n.cfg.labels, ov->labels, sizeof(n.cfg.labels));
            n.cfg.nlabels = ov->nlabels;
        }
        if (ov->admin_listen[0])
            memcpy(n.cfg.admin_listen, ov->admin_listen, sizeof(n.cfg.admin_listen));
        if (ov->nmetrics_allow) {
            memcpy(n.cfg.metrics_allow, ov->metrics_allow, sizeof(n.cfg.metrics_allow));
            n.cfg.nmetrics_allow = ov->nmetrics_allow;
        }
        if (ov->access_log[0]) /* "off" from the command line turns popd.conf's off */
            snprintf(n.cfg.access_log, sizeof(n.cfg.access_log), "%s",
                     strcmp(ov->access_log, "off") ? ov->access_log : "");
    }
    if ((rc = nodecfg_check_admin(&n.cfg, err, errlen)) != 0)
        return rc;
    const char *level = opts->log_level ? opts->log_level : n.cfg.log_level;
    if (log_level_parse(level) < 0) {
        snprintf(err, errlen, "log level '%s' is not debug, info, warn or error", level);
        return -EINVAL;
    }
    log_init("popd", (enum log_level)log_level_parse(level));
    if ((rc = take_lock(&n, err, errlen)) != 0)
        return rc;
    if ((rc = identity_load(n.dir, &n.id, err, errlen)) != 0)
        goto out;
    identity_id_hex(n.id.node_id, n.id_hex);
    if ((rc = meshkey_load(n.dir, &n.meshkey, err, errlen)) != 0)
        goto out;
    /* The store key. A PoP of a mesh made before store keys has none: every such PoP derives
     * the same one from mesh.key, and writes it once the start-up pass below shows it opens
     * what the store holds (docs/security.md, "Secrets in the store"). */
    bool derived_storekey = false;
    rc = storekey_load(n.dir, &n.storekey, err, errlen);
    if (rc == -ENOENT) {
        storekey_from_mesh(&n.storekey, &n.meshkey);
        derived_storekey = true;
    } else if (rc) {
        goto out;
    }
    storeseal_init(&n.seal, &n.storekey, &n.meshkey);
    if (getenv("POPMESH_TEST_LEGACY_SEAL")) {
        /* Tests of the upgrade path: seal as a popd from before the store key did. */
        n.seal.write_legacy = true;
        log_warn("TEST KNOB: POPMESH_TEST_LEGACY_SEAL: secrets are sealed in the legacy format");
    }

    snprintf(path, sizeof(path), "%s/%s", n.dir, DAEMON_STORE_DIR);
    store_opts_t so = {.node_id = n.id.node_id,
                       .map_size = n.cfg.store_map_size,
                       .grace_ms = n.cfg.tombstone_grace};
    if ((rc = store_open(path, &so, &n.store)) != 0) {
        snprintf(err, errlen, "cannot open the store in %s: %s", path, strerror(-rc));
        goto out;
    }

    n.loop = ev_default_loop(EVFLAG_AUTO);
    if (!n.loop) {
        snprintf(err, errlen, "cannot initialise the event loop");
        rc = -ENOMEM;
        goto out;
    }
    /* on the loop, batched: lines are written together once 32 KiB are held or the oldest is
     * 200 ms old (a write(2) per loop iteration was most of the log's cost at load) */
    if (n.cfg.access_log[0] &&
        !(n.alog = accesslog_new(n.loop, n.cfg.access_log, err, errlen))) {
        rc = -EIO;
        goto out;
    }
    accesslog_set_batch(n.alog, ACCESSLOG_BATCH_BYTES, ACCESSLOG_BATCH_MS);
    if (n.alog)
        log_info("access log: %s (SIGHUP reopens it)", n.cfg.access_log);
    signal(SIGPIPE, SIG_IGN);
    fdlimit_raise();
    n.zctx = zmq_ctx_new();
    if (!n.zctx) {
        snprintf(err, errlen, "cannot create a ZeroMQ context: %s", zmq_strerror(zmq_errno()));
        rc = -ENOMEM;
        goto out;
    }
    meshnode_opts_t mo = {.loop = n.loop,
                          .zctx = n.zctx,
                          .store = n.store,
                          .cfg = &n.cfg,
                          .id = &n.id,
                          .meshkey = &n.meshkey,
                          .storekey = &n.storekey,
                          .on_removed = on_removed,
                          .ctx = &n};
    n.mesh = meshnode_new(&mo, err, errlen);
    if (!n.mesh) {
        rc = -EIO;
        goto out;
    }
    snprintf(path, sizeof(path), "%s/%s", n.dir, CONTROL_SOCKET_FILE);
    n.control = control_new(n.loop, path, commands, &n, err, errlen);
    if (!n.control) {
        rc = -EADDRINUSE;
        goto out;
    }
    meshnode_register_commands(n.mesh, n.control);
    trust_opts_t tro = {.loop = n.loop,
                        .store = n.store,
                        .mesh = n.mesh,
                        .dir = n.dir,
                        .id = &n.id,
                        .meshkey = &n.meshkey};
    if (!(n.trust = trust_new(&tro, err, errlen))) {
        rc = -EIO;
        goto out;
    }
    trust_register_commands(n.trust, n.control);
    /* lives until the loop ends */
    authadmin_t auth = {.mesh = n.mesh,
                        .meshkey = &n.meshkey,
                        .keys = trust_auth_keys(n.trust),
                        .http_listen = n.cfg.http_listen};
    authadmin_register_commands(&auth, n.control);
    /* user.totp.*: the second factor's secret sealed like the other secrets (totpadmin.h) */
    totpadmin_t totpadmin = {.mesh = n.mesh, .seal = &n.seal};
    totpadmin_register_commands(&totpadmin, n.control);
    /* This PoP's identity JWT key: made on the first start, its public half published as
     * jwk/<node id> so every PoP's /.popmesh/jwks.json lists it (idjwt.h). */
    {
        idjwt_key_t jk;
        bool created;
        char mid[33];
        if ((rc = idjwt_key_load_or_create(n.dir, &jk, &created, err, errlen)) != 0)
            goto out;
        if (created)
            log_info("identity JWT key %s/%s created", n.dir, IDJWT_KEY_FILE);
        totpadmin_publish_jwk(n.mesh, n.id.node_id, jk.pk);
        meshkey_id_hex(n.meshkey.pk, mid);
        n.idjwt = idjwt_new(&jk, n.id.node_id, mid, n.cfg.name);
        sodium_memzero(&jk, sizeof(jk));
    }
    /* zone.* and geo.*; and this PoP's DNS settings (public addresses, location, DNS listener)
     * in its node record, now that the mesh can spread the write. Lives until the loop ends. */
    dnsadmin_t dnsadmin = {.mesh = n.mesh};
    dnsadmin_register_commands(&dnsadmin, n.control);
    dnsadmin_publish_self(n.store, n.mesh, &n.cfg, n.id.node_id);
    /* Every sealed secret in the store opened once: counted, the unreadable ones logged by
     * record, those sealed before the store key written back under it (reseal.h). */
    if ((rc = reseal_run(n.store, n.mesh, &n.seal, n.id.node_id, !n.seal.write_legacy,
                         &n.reseal)) != 0) {
        snprintf(err, errlen, "cannot read the sealed records: %s", store_last_error(n.store));
        goto out;
    }
    if (n.reseal.legacy || n.reseal.unreadable)
        log_info("store: sealed secrets: %u under the store key, %u in the older format (%u "
                 "written back), %u unreadable",
                 n.reseal.current, n.reseal.legacy, n.reseal.rewritten, n.reseal.unreadable);
    if (derived_storekey) {
        if (n.reseal.bad_current && !n.reseal.current) {
            /* This mesh has a random store key, and this PoP lost its copy. */
            snprintf(err, errlen,
                     "%s/%s is missing, and the key derived from mesh.key does not open the "
                     "store's sealed records: copy store.key from another PoP of this mesh "
                     "(mode 0600) or from the backup of this one",
                     n.dir, STOREKEY_FILE);
            rc = -ENOKEY;
            goto out;
        }
        if (!n.seal.write_legacy) {
            if ((rc = storekey_save(n.dir, &n.storekey, err, errlen)) != 0)
                goto out;
            log_info("store key: %s/%s written (derived from mesh.key: this mesh was made "
                     "before store keys); back it up with mesh.key",
                     n.dir, STOREKEY_FILE);
        }
    }
    /* The ticket keys are made ahead by one PoP per period (ticketkeys.h). */
    ticketkeys_opts_t tko = {.loop = n.loop,
                             .store = n.store,
                             .mesh = n.mesh,
                             .seal = &n.seal,
                             .node_name = n.cfg.name,
                             .self_id = n.id.node_id};
    n.tickets = ticketkeys_new(&tko, err, errlen);
    if (!n.tickets) {
        rc = -EIO;
        goto out;
    }
    certadmin_t certadmin = {
        .mesh = n.mesh, .seal = &n.seal, .node_name = n.cfg.name, .tickets = n.tickets};
    certadmin_register_commands(&certadmin, n.control);
    /* The certificates served: by the HTTPS listener and by TCP resources with tls, so always
     * (with no certificate it holds nothing); before the data plane, which borrows it. */
    tlsctx_opts_t to = {.store = n.store, .seal = &n.seal, .tickets = n.tickets};
    n.tls = tlsctx_new(&to, err, errlen);
    if (!n.tls) {
        rc = -EIO;
        goto out;
    }
    dataplane_opts_t dpo = {.loop = n.loop,
                            .store = n.store,
                            .cfg = &n.cfg,
                            .id = &n.id,
                            .mesh = n.mesh,
                            .tls = n.tls,
                            .alog = n.alog};
    n.dataplane = dataplane_new(&dpo, err, errlen);
    if (!n.dataplane) {
        rc = -EADDRINUSE;
        goto out;
    }
    dataplane_register_commands(n.dataplane, n.control);
    /* What this PoP's health vector reports: streams, tunnels, listeners (meshnode.h). */
    meshnode_add_health_source(n.mesh, dataplane_health, n.dataplane);
    /* OpenID Connect sign-in: idp.* on every PoP, the flows for the ingress (oidc.h). */
    oidc_opts_t oio = {.loop = n.loop, .store = n.store, .mesh = n.mesh, .seal = &n.seal};
    n.oidc = oidc_new(&oio, err, errlen);
    if (!n.oidc) {
        rc = -EIO;
        goto out;
    }
    oidc_register_commands(n.oidc, n.control);
    if (n.cfg.http_listen[0] || n.cfg.https_listen[0]) {
        httpproxy_opts_t ho = {.loop = n.loop,
                               .store = n.store,
                               .listen = n.cfg.http_listen,
                               .https_listen = n.cfg.https_listen,
                               .tls = n.cfg.https_listen[0] ? n.tls : NULL,
                               .meshkey = &n.meshkey,
                               .keys = trust_auth_keys(n.trust),
                               .dp = n.dataplane,
                               .mesh = n.mesh,
                               .self_id = n.id.node_id,
                               .max_body = n.cfg.http_max_body,
                               .alog = n.alog,
                               .node_name = n.cfg.name,
                               .seal = &n.seal,
                               .idjwt = n.idjwt};
        n.http_stats = httpstats_new(0);
        ho.stats = n.http_stats;
        ho.oidc = n.oidc;
        n.http = httpproxy_new(&ho, err, errlen);
        if (!n.http) {
            rc = -EADDRINUSE;
            goto out;
        }
        meshnode_add_health_source(n.mesh, httpproxy_health, n.http);
    }
    /* The name server reads every other part's state, so it starts last. */
    dnsserver_opts_t dso = {
        .loop = n.loop, .store = n.store, .mesh = n.mesh, .cfg = &n.cfg, .self_id = n.id.node_id};
    n.dns = dnsserver_new(&dso, err, errlen);
    if (!n.dns) {
        rc = -EADDRINUSE;
        goto out;
    }
    dnsserver_register_commands(n.dns, n.control);
    acme_opts_t ao = {.loop = n.loop,
                      .store = n.store,
                      .mesh = n.mesh,
                      .seal = &n.seal,
                      .node_name = n.cfg.name,
                      .node_id = n.id.node_id};
    n.acme = acme_new(&ao, err, errlen);
    if (!n.acme) {
        rc = -EIO;
        goto out;
    }
    acme_register_commands(n.acme, n.control);
    /* OCSP stapling: one PoP per certificate asks its responder, every PoP staples the
     * checked response (ocspfetch.h). */
    ocspfetch_opts_t oo = {.loop = n.loop,
                           .store = n.store,
                           .mesh = n.mesh,
                           .tls = n.tls,
                           .node_name = n.cfg.name,
                           .self_id = n.id.node_id};
    n.ocsp = ocspfetch_new(&oo, err, errlen);
    if (!n.ocsp) {
        rc = -EIO;
        goto out;
    }
    /* Webhook alerts: one PoP sends each (alert.h); reads the answers above through control. */
    alert_opts_t alo = {.loop = n.loop,
                        .store = n.store,
                        .mesh = n.mesh,
                        .control = n.control,
                        .node_name = n.cfg.name,
                        .self_id = n.id.node_id};
    n.alert = alert_new(&alo, err, errlen);
    if (!n.alert) {
        rc = -EIO;
        goto out;
    }
    alert_register_commands(n.alert, n.control);
    if (n.cfg.admin_listen[0]) {
        auth_cidr_t allow[NODECFG_METRICS_ALLOW_MAX];
        for (unsigned i = 0; i < n.cfg.nmetrics_allow; i++) {
            const char *why;
            auth_cidr_parse(n.cfg.metrics_allow[i], &allow[i], &why); /* checked by nodecfg */
        }
        admin_opts_t ado = {.loop = n.loop,
                            .listen = n.cfg.admin_listen,
                            .allow = allow,
                            .nallow = n.cfg.nmetrics_allow,
                            .control = n.control,
                            .http = n.http_stats,
                            .ready = node_ready,
                            .ctx = &n,
                            .store = n.store,
                            .meshkey = &n.meshkey,
                            .keys = trust_auth_keys(n.trust),
                            .tls = n.tls};
        n.admin = admin_new(&ado, err, errlen);
        if (!n.admin) {
            rc = -EADDRINUSE;
            goto out;
        }
    }
    ev_signal_init(&n.sigint, on_stop_signal, SIGINT);
    ev_signal_init(&n.sigterm, on_stop_signal, SIGTERM);
    n.sigint.data = n.sigterm.data = &n;
    ev_signal_start(n.loop, &n.sigint);
    ev_signal_start(n.loop, &n.sigterm);
    ev_signal_init(&n.sighup, on_hup, SIGHUP);
    n.sighup.data = &n;
    ev_signal_start(n.loop, &n.sighup);
    ev_timer_init(&n.gc, on_gc, 1.0, DAEMON_GC_PERIOD);
    n.gc.data = &n;
    ev_timer_start(n.loop, &n.gc);
    n.started = ev_now(n.loop);
    n.running = true;

    store_stats_t st = {0};
    store_stats(n.store, &st);
    log_info("popd %s (id %s%s%s) ready: control socket %s, %llu entries", n.cfg.name, n.id_hex,
             n.cfg.region[0] ? ", region " : "", n.cfg.region, path,
             (unsigned long long)st.entries);

    ev_run(n.loop, 0);

    if (n.removed) {
        snprintf(err, errlen, "stopped: this node was removed from the mesh");
        rc = -EPERM;
    } else {
        log_info("stopped cleanly");
        rc = 0;
    }
out:
    admin_destroy(&n.admin); /* reads every other part */
    alert_destroy(&n.alert); /* reads answers through control; before the mesh and store */
    control_destroy(&n.control);
    ocspfetch_destroy(&n.ocsp); /* before the TLS context it feeds */
    acme_destroy(&n.acme);
    dnsserver_destroy(&n.dns);
    ticketkeys_destroy(&n.tickets);
    storeseal_wipe(&n.seal);
    sodium_memzero(&n.storekey, sizeof(n.storekey));
    httpproxy_destroy(&n.http);
    oidc_destroy(&n.oidc); /* after the proxy whose connections hold its jobs */
    httpstats_destroy(&n.http_stats); /* after the proxy that counts into it */
    idjwt_destroy(&n.idjwt);          /* after the proxy that signs with it */
    dataplane_destroy(&n.dataplane); /* its TLS connections before their context */
    accesslog_destroy(&n.alog);      /* after the two that write to it; writes its buffer */
    tlsctx_destroy(&n.tls);
    trust_destroy(&n.trust);
    meshnode_destroy(&n.mesh);
    if (n.zctx)
        zmq_ctx_term(n.zctx);
    sodium_memzero(&n.meshkey, sizeof(n.meshkey));
    store_close(&n.store);
    identity_wipe(&n.id);
    if (n.lock_fd >= 0)
        close(n.lock_fd);
    if (n.loop)
        ev_loop_destroy(n.loop);
    return rc;
}
