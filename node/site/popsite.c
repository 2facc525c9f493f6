/* popsite: the site connector. It runs inside a private network, dials out to PoPs (it
 * listens on nothing), and connects the streams PoPs open to the targets of its resources.
 *
 * Choosing PoPs. Every PoP the mesh tells us about (INFO from any attached PoP, cached in
 * DIR/pops.cache so a restart needs no mesh contact first) has a slot in a popsel core
 * (tunnel/popsel.h), the same index as in s->pops. The core decides (tunnels to the K PoPs
 * with the lowest RTT, kept in two regions when PoPs of two are reachable, one of them the
 * primary, replacements past a hysteresis and drained rather than cut, probes, redial
 * backoff: the rules and why are at the top of popsel.c); each PoP's region comes with it in
 * the INFO, and its name is interned here into the id the core compares (set_regions);
 * this file only carries its actions out on real connections and reports back what
 * happened to them. Every tick feeds it the RTT and open streams of each tunnel up and runs
 * one step.
 *
 * Targets: the PoPs say which targets to check (the resources of this site); the results go
 * to every attached PoP in STATUS messages, and the primary PoP stores them for the mesh.
 * An OPEN names the resource's targets; we connect to a healthy one (by client address when
 * the resource is sticky, else round robin) and try the others before refusing.
 *
 * Loops. A target that is itself an ingress of the mesh (a PoP's resource port or HTTP port
 * reached through an address the registry does not know) would carry every stream back into
 * the mesh, which opens another stream to us, and so on until descriptors run out. Every
 * socket we open towards a target (streams and health checks) is in an addrset, by its local
 * address and destination; an OPEN whose client and ingress addresses are one of them (the
 * client alone, against live sockets, when the PoP does not send the ingress) is our own
 * connection coming back, and
 * is refused with a reason starting "loop:" (the PoP then fails that ingress connection at
 * once, which closes ours). A target caught twice within SITE_LOOP_HOLD_S is marked: it leaves
 * the candidates (even as a last resort), the site's STATUS reports it unhealthy, "loops into
 * the mesh", and the mark holds while the health checker's own connections keep coming back.
 * Backstop for loops this cannot see (NAT): at most --max-target-conns connections per
 * target. docs/dataplane.md, "Loops into the mesh". */
#include "common/netaddr.h"
#include "common/clock.h"
#include "common/fdlimit.h"
#include "common/kvfile.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/site/addrset.h"
#include "node/site/healthcheck.h"
#include "node/site/origintls.h"
#include "node/site/proxyproto.h"
#include "node/records/identity.h"
#include "node/membership/joinclient.h"
#include "node/records/registry.h"
#include "node/records/resource.h"
#include "node/dataplane/sitemsg.h"
#include "node/dataplane/splice.h"
#include "node/dataplane/tconn.h"
#include "node/records/token.h"
#include "tunnel/popsel.h"
#include "tunnel/seal.h"
#include "node/site/udpsite.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define SITE_CONF       "site.conf"
#define SITE_CACHE      "pops.cache"
#define SITE_LOCK       "popsite.lock"
#define SITE_TICK_S     0.1 /* s between popsel steps (and reaping dead connections) */
#define SITE_STATUS_S   1.0
#define SITE_WINDOW_MAX (8u << 20) /* bytes: stream windows grow up to this (tunnel.h) */
/* Streams a PoP may open on one of our tunnels: as many as the PoP admits
 * (DATAPLANE_MAX_STREAMS, node/dataplane/dataplane.h), past tunnel.h's default of 4096. */
#define SITE_MAX_STREAMS    65536
#define SITE_DIAL_TIMEOUT_S 3.0
#define SITE_SEAL_KEYS      64 /* sealed streams: K kept per (ingress PoP, ephemeral key) */
#define DIAL_MAGIC          0x4449414cu
/* ms a closed target socket's address stays recognisable: a health check closes its socket
 * as soon as it connects, before the PoP's OPEN for that connection reaches us (one RTT to the
 * PoP and back, and its accept), and a chain of short connections must not slip through. */
#define SITE_LOOP_LINGER_MS 3000
#define SITE_LOOP_HOLD_S    10    /* s a loop mark lasts after the last loop caught */
#define SITE_LOOP_HITS      2     /* loops caught within the hold that mark a target */
#define SITE_TARGET_CONNS   16384 /* default --max-target-conns */

#ifndef POPMESH_VERSION
#define POPMESH_VERSION "dev"
#endif

/* One PoP: its connections. Whether its tunnel is up, primary or draining, its RTT and its
 * backoff are the popsel core's, in the slot of the same index. */
struct pop {
    sm_pop_t info;
    tconn_t *c;     /* the tunnel, dialling or up (a DIAL action's) */
    tconn_t *probe; /* an RTT probe in flight (a PROBE action's) */
    bool known;     /* in the latest PoP list */
};

/* A PoP's index in s->pops is its popsel slot. */
_Static_assert(POPSEL_MAX == SM_POPS_MAX, "popsel has one slot per PoP of an INFO");

typedef struct site {
    struct ev_loop *loop;
    const char *dir;
    char name[NODECFG_NAME_MAX + 1]; /* this connector's node name (HELLO says it) */
    char site[NODECFG_NAME_MAX + 1]; /* the site it serves: name, or a replica's site */
    identity_t id;
    tconn_keys_t keys;
    uint64_t hello_ts_last; /* ns: our last HELLO's timestamp (keys.hello_ts_last) */
    tun_config_t tcfg;
    unsigned k;
    popsel_t *sel; /* which PoPs to hold tunnels to; slot i is pops[i] */
    struct pop pops[SM_POPS_MAX];
    unsigned npops;
    sm_info_t *checks; /* the latest INFO's checks */
    /* TLS client contexts for https:// targets, one per CA (none: the system store alone),
     * built when a stream first needs one; at most SITE_TLS_CTX_MAX, the oldest dropped. */
    struct origin_ctx {
        bool has_ca;
        uint8_t ca[32];
        SSL_CTX *ctx;
    } tls_ctx[8];
    unsigned ntls_ctx;
    /* Per check of checks (same index): its status list parsed, and whether the check is one
     * the health checker takes (a bad entry is left out, and its target counts as unchecked). */
    hc_code_range_t (*check_status)[HC_STATUS_MAX]; /* SM_CHECKS_MAX of them, owned */
    size_t check_nstatus[SM_CHECKS_MAX];
    bool check_ok[SM_CHECKS_MAX];
    hc_t *hc;
    splice_ctx_t *splices;
    udpsite_t *udp; /* UDP flows (udpsite.h) */
    ev_timer tick;
    ev_signal sigint, sigterm, sigusr1;
    uint64_t last_status_ms;
    uint8_t status_hash[16];
    uint32_t rr;
    uint64_t streams, refused;
    addrset_t *mine; /* local addresses of our sockets towards targets (and lingering ones) */
    struct loopmark *marks;
    size_t nmarks;
    uint64_t loops;                      /* OPENs refused because they came back from us */
    uint64_t loop_log_ms, loop_unlogged; /* ms (monotonic) of the last loop line; since */
    struct tload *loads;                 /* targets with connections: how many */
    uint32_t max_target_conns;           /* per target, streams only */
    uint64_t load_log_ms, load_unlogged; /* ms (monotonic) of the last limit line; since */
    tconn_t **dead; /* connections whose on_down ran: destroyed by the next tick */
    size_t ndead;
    /* Sealed streams (tunnel/seal.h): K per ingress PoP and ephemeral key, recently used. */
    struct {
        uint64_t from;
        uint8_t epk[32], ipk[32];
        uint8_t k[SEAL_KEY_LEN];
    } seal_k[SITE_SEAL_KEYS];
    unsigned nseal_k, seal_next;
    uint64_t sealed, seal_refused; /* streams opened sealed; refused for their seal */
} site_t;

/* A target caught looping into the mesh. */
struct loopmark {
    char target[NODECFG_ADDR_MAX + 1];
    char via[NODECFG_NAME_MAX + 1]; /* the resource whose ingress the loop came back through */
    uint32_t hits;                  /* loops caught since first_ms */
    uint64_t first_ms, last_ms;     /* ms (monotonic) */
    bool marked;                    /* SITE_LOOP_HITS reached: out of the candidates */
};

/* Connections open to one target (streams, not health checks). */
struct tload {
    struct tload *next;
    char target[NODECFG_ADDR_MAX + 1];
    uint32_t n;
};

/* One connection we dialled for a stream: its address in s->mine, its count in a tload. */
struct outconn {
    site_t *s;
    addrset_entry_t *e;
    struct tload *load;
};

struct dialer {
    uint32_t magic;
    site_t *s;
    tconn_t *c;
    uint64_t sid;
    int fd;
    ev_io w;
    ev_timer timeout;
    sm_open_t desc;
    uint32_t tried;     /* bitmask of desc.targets already tried */
    struct outconn *oc; /* the connection being dialled, from socket() on */
    char last_err[400];
    uint32_t cur;        /* the index in desc.targets of the target being dialled */
    origintls_t *tls;    /* an https:// target's TLS, during its handshake */
};

static const tconn_cbs_t *site_cbs(void);

/* The keys of a sealed stream, from its OPEN (tunnel/seal.h). 0, or a message for the refusal. */
static const char *seal_keys_of(site_t *s, const sm_open_t *o, seal_keys_t *keys)
{
    if (!(seal_local_suites() & (1u << o->seal_suite)))
        return "this site cannot open the stream's seal suite";
    /* The ingress's static key: the one INFO lists for that PoP, which the OPEN's must match;
     * a PoP INFO does not list (it names at most SM_POPS_MAX, or the list is behind) is taken
     * at its word. That admits nothing new: only PoPs holding this site's tunnels can put an
     * OPEN here, and a PoP may open streams as an ingress anyway; what the seal protects, the
     * stream's bytes from the PoPs between, comes from the ingress's secrets, whoever it
     * claims to be. */
    for (unsigned i = 0; i < s->npops; i++)
        if (s->pops[i].known && s->pops[i].info.id == o->seal_from &&
            memcmp(s->pops[i].info.curve_pk, o->seal_ipk, 32))
            return "the seal names a PoP with another key than the mesh gave it";
    uint8_t k[SEAL_KEY_LEN];
    bool have = false;
    for (unsigned i = 0; i < s->nseal_k && !have; i++)
        if (s->seal_k[i].from == o->seal_from && !memcmp(s->seal_k[i].epk, o->seal_epk, 32) &&
            !memcmp(s->seal_k[i].ipk, o->seal_ipk, 32)) {
            memcpy(k, s->seal_k[i].k, SEAL_KEY_LEN);
            have = true;
        }
    if (!have) {
        if (seal_path_site(k, s->keys.sk, s->keys.pk, o->seal_epk, o->seal_ipk))
            return "the stream's seal key is not usable";
        unsigned slot = s->nseal_k < SITE_SEAL_KEYS ? s->nseal_k++ : s->seal_next++ % SITE_SEAL_KEYS;
        s->seal_k[slot].from = o->seal_from;
        memcpy(s->seal_k[slot].epk, o->seal_epk, 32);
        memcpy(s->seal_k[slot].ipk, o->seal_ipk, 32);
        memcpy(s->seal_k[slot].k, k, SEAL_KEY_LEN);
    }
    uint8_t bind[SEAL_BIND_LEN];
    sm_open_bind(o, bind);
    seal_stream_keys(keys, k, o->seal_salt, bind, o->seal_suite, false);
    sodium_memzero(k, sizeof(k));
    return NULL;
}

/* ---- files -------------------------------------------------------------------------------- */

static int save_file(const char *dir, const char *file, const void *data, size_t len, mode_t mode)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    const uint8_t *p = data;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, p + off, len - off);
        if (n < 0) {
            int e = errno;
            close(fd);
            return -e;
        }
        off += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0)
        return -errno;
    return 0;
}

static int load_file(const char *dir, const char *file, uint8_t **out, size_t *len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    uint8_t *buf = xmalloc(1 << 20);
    size_t n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static int conf_kv(const char *name, size_t nlen, const char *v, size_t vl, void *ctx, char *err,
                   size_t errlen)
{
    site_t *s = ctx;
    if (kvfile_is(name, nlen, "name")) {
        if (vl > NODECFG_NAME_MAX) {
            snprintf(err, errlen, "name too long");
            return -EINVAL;
        }
        memcpy(s->name, v, vl);
        s->name[vl] = '\0';
        if (nodecfg_check_name(s->name)) {
            snprintf(err, errlen, "name '%s' is not a valid site name", s->name);
            return -EINVAL;
        }
    } else if (kvfile_is(name, nlen, "site")) { /* a replica's; absent = name is the site */
        if (vl > NODECFG_NAME_MAX) {
            snprintf(err, errlen, "site too long");
            return -EINVAL;
        }
        memcpy(s->site, v, vl);
        s->site[vl] = '\0';
        if (nodecfg_check_name(s->site)) {
            snprintf(err, errlen, "site '%s' is not a valid site name", s->site);
            return -EINVAL;
        }
    }
    return 0; /* other settings are informational */
}

/* A PoP's region for the log ("region %s"). */
static const char *region_of(const struct pop *p)
{
    return p->info.region[0] ? p->info.region : "none";
}

/* Gives the core each slot's region as an id: equal names, equal ids (numbered afresh over
 * every slot each time, so a table of names never fills up); none is 0. */
static void set_regions(site_t *s)
{
    uint32_t ids[SM_POPS_MAX] = {0}, next = 0;
    for (unsigned i = 0; i < s->npops; i++) {
        const char *r = s->pops[i].info.region;
        if (!r[0])
            continue;
        for (unsigned j = 0; j < i && !ids[i]; j++)
            if (!strcmp(s->pops[j].info.region, r))
                ids[i] = ids[j];
        if (!ids[i])
            ids[i] = ++next;
    }
    for (unsigned i = 0; i < s->npops; i++)
        popsel_set_region(s->sel, i, ids[i]);
}

/* Replaces the PoP list with in's, keeping the state of PoPs still in it. */
/* A PoP the INFO says to avoid (it may not carry some of this site's resources: their
 * transit labels) counts as this much farther in every RTT the core compares, so the tunnels
 * go to PoPs that may carry everything whenever enough of them answer, and to the others only
 * to fill the set. */
#define AVOID_PENALTY_US 10000000u

static uint32_t judged_rtt(const site_t *s, unsigned i, uint32_t rtt_us)
{
    return rtt_us && s->pops[i].info.avoid ? rtt_us + AVOID_PENALTY_US : rtt_us;
}

static void apply_pops(site_t *s, const sm_info_t *in)
{
    for (unsigned i = 0; i < s->npops; i++)
        s->pops[i].known = false;
    for (uint32_t k = 0; k < in->npops; k++) {
        unsigned i;
        for (i = 0; i < s->npops; i++)
            if (s->pops[i].info.id == in->pops[k].id)
                break;
        if (i == s->npops) {
            if (s->npops == SM_POPS_MAX)
                continue;
            memset(&s->pops[i], 0, sizeof(s->pops[i]));
            s->npops++;
            log_info("popsite: learnt PoP %s at %s (region %s)", in->pops[k].name,
                     in->pops[k].tunnel_addr, in->pops[k].region[0] ? in->pops[k].region : "none");
        } else if (strcmp(s->pops[i].info.region, in->pops[k].region)) {
            log_info("popsite: PoP %s moved from region %s to %s", in->pops[k].name,
                     region_of(&s->pops[i]), in->pops[k].region[0] ? in->pops[k].region : "none");
        }
        if (in->pops[k].avoid && !s->pops[i].info.avoid) /* news: the last INFO did not say */
            log_info("popsite: PoP %s may not carry some of this site's resources (their "
                     "transit labels): tunnels go elsewhere when they can",
                     in->pops[k].name);
        s->pops[i].info = in->pops[k];
        s->pops[i].known = true;
    }
    for (unsigned i = 0; i < s->npops; i++)
        popsel_set_known(s->sel, i, s->pops[i].known);
    /* PoPs no longer listed: drop those without a tunnel (a live tunnel stays until it dies:
     * the list is a view of one PoP's, and losing a member briefly is not a reason to cut).
     * The last PoP moves into the freed slot, in the core too. */
    for (unsigned i = 0; i < s->npops;) {
        struct pop *p = &s->pops[i];
        if (!p->known && !p->c && !p->probe) {
            unsigned last = s->npops - 1;
            int rc = popsel_forget(s->sel, i);
            if (rc == 0)
                rc = popsel_move(s->sel, last, i);
            if (rc == 0) {
                s->pops[i] = s->pops[last];
                s->npops--;
                continue;
            }
            /* The core still sees a connection we do not: a bug here; keep the PoP. */
            log_error("popsite: cannot drop PoP %s (slot %u): %s", p->info.name, i, strerror(-rc));
        }
        i++;
    }
    set_regions(s);
}

static void save_cache(site_t *s)
{
    sm_info_t *in = xcalloc(1, sizeof(*in));
    for (unsigned i = 0; i < s->npops && in->npops < SM_POPS_MAX; i++)
        in->pops[in->npops++] = s->pops[i].info;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_pack_info(&pk, in);
    int rc = save_file(s->dir, SITE_CACHE, sb.data, sb.size, 0600);
    if (rc)
        log_warn("popsite: cannot save %s/%s: %s", s->dir, SITE_CACHE, strerror(-rc));
    msgpack_sbuffer_destroy(&sb);
    free(in);
}

/* ---- enrollment ------------------------------------------------------------------------- */

static int enroll(site_t *s, const char *text, char *err, size_t errlen)
{
    token_t t;
    const char *why;
    if (token_decode(text, strlen(text), &t, &why)) {
        snprintf(err, errlen, "the token is not valid: %s", why);
        return -EINVAL;
    }
    if (t.role != ROLE_SITE || !t.site[0]) {
        snprintf(err, errlen,
                 "this is a %s token; a site enrolls with the token 'meshctl site add NAME' "
                 "prints",
                 node_role_name(t.role));
        sodium_memzero(&t, sizeof(t));
        return -EINVAL;
    }
    snprintf(s->name, sizeof(s->name), "%s", t.site);
    snprintf(s->site, sizeof(s->site), "%s", t.site);
    if (identity_generate(&s->id)) {
        snprintf(err, errlen, "cannot generate keys");
        return -EIO;
    }
    reg_node_t me = {0};
    snprintf(me.name, sizeof(me.name), "%s", s->name);
    me.role = ROLE_SITE;
    memcpy(me.curve_pk, s->id.curve_pk, 32);
    memcpy(me.sign_pk, s->id.sign_pk, 32);
    joinmsg_reply_t reply;
    uint8_t *raw = NULL;
    int rc = join_request(&t, &me, 5000, &reply, &raw, err, errlen);
    sodium_memzero(&t, sizeof(t));
    if (rc)
        return rc;
    /* The PoPs from the registry the mesh sent, and our own record, which names us: a replica
     * of a site whose name another connector holds gets a name of its own (meshjoin.c). */
    sm_info_t *in = xcalloc(1, sizeof(*in));
    for (size_t i = 0; i < reply.nentries && in->npops < SM_POPS_MAX; i++) {
        const store_entry_t *e = &reply.entries[i];
        uint64_t nid;
        reg_node_t n;
        if (e->tombstone || reg_node_key_id(e->key, e->klen, &nid) ||
            reg_node_parse(e->value, e->vlen, nid, &n, &why))
            continue;
        if (nid == s->id.node_id && n.role == ROLE_SITE && !strcmp(reg_node_site(&n), s->site)) {
            snprintf(s->name, sizeof(s->name), "%s", n.name);
            continue;
        }
        if (n.removed || n.role != ROLE_POP || !n.tunnel_addr[0])
            continue;
        sm_pop_t *p = &in->pops[in->npops++];
        p->id = nid;
        snprintf(p->name, sizeof(p->name), "%s", n.name);
        snprintf(p->tunnel_addr, sizeof(p->tunnel_addr), "%s", n.tunnel_addr);
        memcpy(p->curve_pk, n.curve_pk, 32);
        snprintf(p->region, sizeof(p->region), "%s", n.region);
    }
    free(reply.entries);
    free(raw);
    if ((rc = identity_save(s->dir, &s->id, err, errlen)) != 0) {
        free(in);
        return rc;
    }
    apply_pops(s, in);
    free(in);
    save_cache(s);
    char conf[256], idhex[17];
    identity_id_hex(s->id.node_id, idhex);
    int n = snprintf(conf, sizeof(conf), "# popsite settings\nname = %s\nsite = %s\nid = %s\n",
                     s->name, s->site, idhex);
    if ((rc = save_file(s->dir, SITE_CONF, conf, (size_t)n, 0600)) != 0) {
        snprintf(err, errlen, "cannot write %s/%s: %s", s->dir, SITE_CONF, strerror(-rc));
        return rc;
    }
    if (strcmp(s->name, s->site))
        log_info("popsite: enrolled as %s, a replica of site %s (id %s), %u PoPs known", s->name,
                 s->site, idhex, s->npops);
    else
        log_info("popsite: enrolled as site %s (id %s), %u PoPs known", s->name, idhex, s->npops);
    return 0;
}

static int load(site_t *s, char *err, size_t errlen)
{
    uint8_t *buf;
    size_t len;
    int rc = load_file(s->dir, SITE_CONF, &buf, &len);
    if (rc) {
        snprintf(err, errlen, "%s/%s: %s (enroll first: popsite run --data %s --token TOKEN)",
                 s->dir, SITE_CONF, strerror(-rc), s->dir);
        return rc;
    }
    char kerr[200];
    rc = kvfile_parse((const char *)buf, len, conf_kv, s, kerr, sizeof(kerr));
    free(buf);
    if (rc || !s->name[0]) {
        snprintf(err, errlen, "%s/%s: %s", s->dir, SITE_CONF, rc ? kerr : "no name");
        return -EINVAL;
    }
    if (!s->site[0]) /* written before replicas: the name is the site */
        snprintf(s->site, sizeof(s->site), "%s", s->name);
    if ((rc = identity_load(s->dir, &s->id, err, errlen)) != 0)
        return rc;
    if (load_file(s->dir, SITE_CACHE, &buf, &len) == 0) {
        sm_info_t *in = xcalloc(1, sizeof(*in));
        int type;
        const char *why;
        if (sm_decode_ctl(buf, len, &type, NULL, in, &why) == 0)
            apply_pops(s, in);
        else
            log_warn("popsite: %s/%s unreadable (%s): waiting for no PoP", s->dir, SITE_CACHE, why);
        free(in);
        free(buf);
    }
    return 0;
}

/* ---- loops into the mesh ---------------------------------------------------------------- */

static struct loopmark *mark_of(site_t *s, const char *target)
{
    for (size_t i = 0; i < s->nmarks; i++)
        if (!strcmp(s->marks[i].target, target))
            return &s->marks[i];
    return NULL;
}

static bool target_loops(site_t *s, const char *target)
{
    struct loopmark *m = mark_of(s, target);
    return m && m->marked;
}

static void send_status(site_t *s, bool force);

/* A stream came back from our own connection to target, through resource via's ingress. */
static void loop_caught(site_t *s, const char *target, const char *via)
{
    uint64_t now = clock_mono_ms();
    struct loopmark *m = mark_of(s, target);
    if (!m) {
        if (s->nmarks >= SM_CHECKS_MAX)
            return; /* the stream is refused all the same */
        s->marks = xrealloc(s->marks, (s->nmarks + 1) * sizeof(*s->marks));
        m = &s->marks[s->nmarks++];
        memset(m, 0, sizeof(*m));
        snprintf(m->target, sizeof(m->target), "%s", target);
        m->first_ms = now;
    }
    snprintf(m->via, sizeof(m->via), "%s", via);
    m->last_ms = now;
    if (m->hits < UINT32_MAX)
        m->hits++;
    if (!m->marked && m->hits >= SITE_LOOP_HITS) {
        m->marked = true;
        log_warn("popsite: target %s is unhealthy: it loops into the mesh (connections to it "
                 "come back as streams of resource %s); no stream is sent to it while it does",
                 target, via);
        send_status(s, true);
    }
}

/* Marks whose loop has not been seen for SITE_LOOP_HOLD_S go. */
static void loops_expire(site_t *s, uint64_t now)
{
    addrset_expire(s->mine, now);
    for (size_t i = 0; i < s->nmarks;) {
        struct loopmark *m = &s->marks[i];
        if (now - m->last_ms < SITE_LOOP_HOLD_S * 1000) {
            i++;
            continue;
        }
        bool was = m->marked;
        if (was)
            log_info("popsite: target %s no longer loops into the mesh (none caught for %d s)",
                     m->target, SITE_LOOP_HOLD_S);
        s->marks[i] = s->marks[--s->nmarks];
        if (was)
            send_status(s, true);
    }
}

/* Registers fd's connection to `to` under target: its local address is what a PoP would
 * report as the client, should the connection come back into the mesh, and `to` what it would
 * report as its ingress. NULL if fd has no local address (never bound). */
static addrset_entry_t *remember_conn(site_t *s, int fd, const struct sockaddr *to, socklen_t tolen,
                                      const char *target)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
        return NULL;
    return addrset_add(s->mine, (const struct sockaddr *)&ss, sl, to, tolen, target);
}

static void on_check_socket(void *ctx, const hc_target_t *check, int fd, const struct sockaddr *to,
                            unsigned tolen, bool open, void **slot)
{
    site_t *s = ctx;
    if (open)
        *slot = remember_conn(s, fd, to, tolen, check->target);
    else
        addrset_release(s->mine, *slot, clock_mono_ms(), SITE_LOOP_LINGER_MS);
}

static struct tload *load_of(site_t *s, const char *target, bool create)
{
    for (struct tload *l = s->loads; l; l = l->next)
        if (!strcmp(l->target, target))
            return l;
    if (!create)
        return NULL;
    struct tload *l = xcalloc(1, sizeof(*l));
    snprintf(l->target, sizeof(l->target), "%s", target);
    l->next = s->loads;
    s->loads = l;
    return l;
}

static void outconn_end(struct outconn *oc)
{
    if (!oc)
        return;
    site_t *s = oc->s;
    addrset_release(s->mine, oc->e, clock_mono_ms(), SITE_LOOP_LINGER_MS);
    if (oc->load && --oc->load->n == 0) {
        for (struct tload **pp = &s->loads; *pp; pp = &(*pp)->next)
            if (*pp == oc->load) {
                *pp = oc->load->next;
                free(oc->load);
                break;
            }
    }
    free(oc);
}

static void on_splice_done(void *ctx, splice_t *sp, bool ok, const char *why,
                           const uint64_t bytes[2])
{
    (void)sp, (void)ok, (void)why, (void)bytes;
    outconn_end(ctx);
}

/* ---- health checks and status ----------------------------------------------------------- */

/* The hc check of INFO entry i (its status list parsed by set_checks). */
static hc_target_t check_of(const site_t *s, uint32_t i)
{
    const sm_check_t *k = &s->checks->checks[i];
    bool http = !strncmp(k->health, "http:", 5);
    return (hc_target_t){
        .target = k->target,
        .kind = http ? HC_HTTP : HC_TCP,
        .path = http ? k->health + 5 : NULL,
        .interval_ms = k->hc.interval_ms,
        .timeout_ms = k->hc.timeout_ms,
        .rise = k->hc.rise,
        .fall = k->hc.fall,
        .status = s->check_nstatus[i] ? s->check_status[i] : NULL,
        .nstatus = s->check_nstatus[i],
        .host = k->hc.host[0] ? k->hc.host : NULL,
    };
}

/* Declares the checks of the latest INFO. A resource's settings are part of its checks'
 * identity in hc, so a changed setting replaces that check now (and a check whose settings
 * did not change keeps its state). */
static void set_checks(site_t *s)
{
    hc_target_t v[SM_CHECKS_MAX];
    size_t n = 0;
    resource_t *scratch = xcalloc(1, sizeof(*scratch));
    if (!s->check_status)
        s->check_status = xcalloc(SM_CHECKS_MAX, sizeof(*s->check_status));
    for (uint32_t i = 0; s->checks && i < s->checks->nchecks; i++) {
        const sm_check_t *k = &s->checks->checks[i];
        char why_buf[200];
        const char *why = "";
        s->check_ok[i] = false;
        s->check_nstatus[i] = 0;
        if (k->hc.status[0]) {
            /* The PoP's resource record was held to resource_check; parse it again anyway:
             * the list comes over the tunnel. */
            if (resource_hc_status_parse(k->hc.status, strlen(k->hc.status), scratch, why_buf,
                                         sizeof(why_buf), &why)) {
                log_warn("popsite: check of %s for %s skipped: %s", k->target, k->resource, why);
                continue;
            }
            for (unsigned j = 0; j < scratch->nhc_status && j < HC_STATUS_MAX; j++)
                s->check_status[i][j] =
                    (hc_code_range_t){scratch->hc_status[j].lo, scratch->hc_status[j].hi};
            s->check_nstatus[i] = scratch->nhc_status;
        }
        v[n] = check_of(s, i);
        if (hc_target_validate(&v[n], &why)) {
            if (sm_check_has_hc(k))
                log_warn("popsite: check of %s for %s skipped: %s", k->target, k->resource, why);
            continue;
        }
        s->check_ok[i] = true;
        n++;
    }
    free(scratch);
    hc_set(s->hc, v, n);
}

/* Whether target is usable for resource: by the check of that resource's entry when it has
 * settings of its own, else by the check of an entry without settings (the default check of
 * that health spec), else by any check of the target. */
static bool target_healthy(site_t *s, const char *resource, const char *target)
{
    int own = -1, plain = -1, any = -1;
    for (uint32_t i = 0; s->checks && i < s->checks->nchecks; i++) {
        const sm_check_t *k = &s->checks->checks[i];
        if (!s->check_ok[i] || strcmp(k->target, target))
            continue;
        if (k->resource[0] && !strcmp(k->resource, resource)) {
            own = (int)i;
            break;
        }
        if (!k->resource[0] && plain < 0)
            plain = (int)i;
        if (any < 0)
            any = (int)i;
    }
    int i = own >= 0 ? own : plain >= 0 ? plain : any;
    if (i < 0)
        return !target_loops(s, target); /* not checked (yet): usable */
    hc_target_t t = check_of(s, (uint32_t)i);
    return !target_loops(s, target) && hc_healthy(s->hc, &t);
}

/* The health spec as STATUS reports it: "tcp", "http:/PATH", then the check's own settings
 * ("http:/ status 200,503 every 200ms rise 1"), so two checks of one target can be told
 * apart. Display only; cut to fit. */
static void describe_check(const hc_target_t *c, char *out, size_t len)
{
    size_t off = 0;
    int w = c->kind == HC_HTTP ? snprintf(out, len, "http:%s", c->path) : snprintf(out, len, "tcp");
    off = w > 0 && (size_t)w < len ? (size_t)w : len - 1;
    for (size_t i = 0; i < c->nstatus && off < len - 1; i++) {
        const hc_code_range_t *r = &c->status[i];
        const char *sep = i ? "," : " status ";
        if (r->lo % 100 == 0 && r->hi == r->lo + 99) /* as the resource writes it: "5xx" */
            w = snprintf(out + off, len - off, "%s%uxx", sep, r->lo / 100u);
        else if (r->lo == r->hi)
            w = snprintf(out + off, len - off, "%s%u", sep, r->lo);
        else
            w = snprintf(out + off, len - off, "%s%u-%u", sep, r->lo, r->hi);
        off = w > 0 && off + (size_t)w < len ? off + (size_t)w : len - 1;
    }
    const struct {
        const char *fmt;
        uint32_t v;
    } nums[] = {{" every %ums", c->interval_ms},
                {" timeout %ums", c->timeout_ms},
                {" rise %u", c->rise},
                {" fall %u", c->fall}};
    for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]) && off < len - 1; i++) {
        if (!nums[i].v)
            continue;
        w = snprintf(out + off, len - off, nums[i].fmt, nums[i].v);
        off = w > 0 && off + (size_t)w < len ? off + (size_t)w : len - 1;
    }
    if (c->host && off < len - 1)
        snprintf(out + off, len - off, " host %s", c->host);
}

static void send_status(site_t *s, bool force)
{
    size_t n = hc_snapshot(s->hc, NULL, 0);
    hc_status_t *v = xcalloc(n ? n : 1, sizeof(*v));
    n = hc_snapshot(s->hc, v, n);
    sm_status_t *st = xcalloc(1, sizeof(*st));
    for (size_t i = 0; i < n && st->n < SM_CHECKS_MAX; i++) {
        sm_check_t *k = &st->checks[st->n++];
        snprintf(k->target, sizeof(k->target), "%s", v[i].check.target);
        describe_check(&v[i].check, k->health, sizeof(k->health));
        struct loopmark *m = mark_of(s, k->target);
        if (m && m->marked) {
            k->healthy = false;
            snprintf(k->why, sizeof(k->why), "loops into the mesh (back through resource %s)",
                     m->via);
            continue;
        }
        k->healthy = v[i].state != HC_UNHEALTHY;
        snprintf(k->why, sizeof(k->why), "%s", v[i].state == HC_UNHEALTHY ? v[i].last_result : "");
    }
    free(v);
    /* The machine this replica runs on, for meshctl sites (replicas of one site tell apart by
     * it); a name that does not fit, or is not plain text, is not sent. */
    char hn[256];
    if (gethostname(hn, sizeof(hn)) == 0 && strnlen(hn, sizeof(hn)) <= SM_HOSTNAME_MAX) {
        bool ok = hn[0] != '\0';
        for (const char *h = hn; *h && ok; h++)
            ok = *h > ' ' && *h <= '~';
        if (ok)
            memcpy(st->host, hn, strlen(hn) + 1); /* fits: checked above */
    }
    st->seal = seal_local_suites(); /* stored in sitehealth/: how far ingresses learn it */
    uint64_t now = clock_mono_ms();
    for (unsigned i = 0; i < s->npops; i++) {
        struct pop *p = &s->pops[i];
        if (!popsel_is_up(s->sel, i))
            continue;
        st->primary = popsel_is_primary(s->sel, i);
        st->draining = popsel_is_draining(s->sel, i);
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        sm_pack_status(&pk, st);
        tconn_send_ctl(p->c, (const uint8_t *)sb.data, sb.size);
        msgpack_sbuffer_destroy(&sb);
    }
    (void)force;
    s->last_status_ms = now;
    free(st);
}

static void on_check_change(void *ctx, const hc_target_t *check, bool healthy, const char *why)
{
    site_t *s = ctx;
    log_info("popsite: target %s is %s (%s)", check->target, healthy ? "healthy" : "unhealthy",
             why);
    send_status(s, true);
}

/* ---- streams: connecting targets -------------------------------------------------------- */

static void dialer_free(struct dialer *d)
{
    origintls_free(d->tls);
    ev_io_stop(d->s->loop, &d->w);
    ev_timer_stop(d->s->loop, &d->timeout);
    if (d->fd >= 0)
        close(d->fd);
    outconn_end(d->oc);
    free(d);
}

static void dial_next(struct dialer *d);

static void dial_failed(struct dialer *d, const char *why)
{
    snprintf(d->last_err, sizeof(d->last_err), "%s", why);
    origintls_free(d->tls);
    d->tls = NULL;
    ev_io_stop(d->s->loop, &d->w);
    ev_timer_stop(d->s->loop, &d->timeout);
    if (d->fd >= 0) {
        close(d->fd);
        d->fd = -1;
    }
    outconn_end(d->oc);
    d->oc = NULL;
    dial_next(d);
}

/* The target is connected (and, for an https:// one, its TLS handshake done): the stream is
 * accepted and spliced to it. */
static void dial_done(struct dialer *d)
{
    tun_t *t = tconn_tun(d->c);
    if (!t || tun_accept(t, d->sid)) {
        dialer_free(d);
        return;
    }
    site_t *s = d->s;
    s->streams++;
    int fd = d->fd;
    d->fd = -1;
    if (d->tls) {
        /* The TLS layer is the splice's leg 0 now; the stream becomes leg 1. */
        splice_t *sp = splice_new_tcp_io(s->splices, fd, &origintls_ops, d->tls, on_splice_done,
                                         d->oc);
        d->tls = NULL;
        d->oc = NULL;
        uint64_t sid = d->sid;
        tconn_t *c = d->c;
        dialer_free(d);
        splice_attach_stream(sp, c, sid);
        return;
    }
    splice_t *sp = splice_new_stream(s->splices, d->c, d->sid, on_splice_done, d->oc);
    d->oc = NULL; /* the splice's now */
    dialer_free(d);
    splice_attach_tcp(sp, fd);
}

/* The TLS client context for an OPEN's https:// targets: the system store, plus the CA it
 * names (from the latest INFO's cas). NULL with a reason in err. */
static SSL_CTX *origin_ctx(site_t *s, const sm_open_t *o, char *err, size_t errlen)
{
    for (unsigned i = 0; i < s->ntls_ctx; i++)
        if (s->tls_ctx[i].has_ca == o->has_ca &&
            (!o->has_ca || !memcmp(s->tls_ctx[i].ca, o->ca, 32)))
            return s->tls_ctx[i].ctx;
    const char *pem = NULL;
    for (uint32_t i = 0; o->has_ca && s->checks && i < s->checks->ncas; i++) {
        uint8_t id[32];
        resource_ca_id(s->checks->cas[i], strlen(s->checks->cas[i]), id);
        if (!memcmp(id, o->ca, 32))
            pem = s->checks->cas[i];
    }
    if (o->has_ca && !pem) {
        snprintf(err, errlen, "TLS: the CA of resource %s has not reached this site yet",
                 o->resource);
        return NULL;
    }
    SSL_CTX *ctx = origintls_ctx_new(pem, pem ? strlen(pem) : 0, err, errlen);
    if (!ctx)
        return NULL;
    unsigned cap = sizeof(s->tls_ctx) / sizeof(s->tls_ctx[0]);
    if (s->ntls_ctx == cap) { /* the oldest goes; connections using it keep it alive */
        SSL_CTX_free(s->tls_ctx[0].ctx);
        memmove(&s->tls_ctx[0], &s->tls_ctx[1], (cap - 1) * sizeof(s->tls_ctx[0]));
        s->ntls_ctx--;
    }
    struct origin_ctx *oc = &s->tls_ctx[s->ntls_ctx++];
    oc->has_ca = o->has_ca;
    memcpy(oc->ca, o->ca, 32);
    oc->ctx = ctx;
    return ctx;
}

static void on_tls(struct ev_loop *loop, ev_io *w, int revents);

/* Advances an https:// target's handshake: done, waiting for the socket, or failed (the next
 * target is tried, and the OPEN's refusal carries the reason). The dial timeout runs on. */
static void dial_tls_step(struct dialer *d)
{
    char err[300];
    int rc = origintls_handshake(d->tls, err, sizeof(err));
    if (rc == 0) {
        ev_io_stop(d->s->loop, &d->w);
        dial_done(d);
        return;
    }
    if (rc == SPLICE_IO_WANT_READ || rc == SPLICE_IO_WANT_WRITE) {
        ev_io_stop(d->s->loop, &d->w);
        ev_io_init(&d->w, on_tls, d->fd, rc == SPLICE_IO_WANT_READ ? EV_READ : EV_WRITE);
        d->w.data = d;
        ev_io_start(d->s->loop, &d->w);
        return;
    }
    char why[400];
    snprintf(why, sizeof(why), "%.60s: %.300s", d->desc.targets[d->cur], err);
    log_warn("popsite: resource %s: target %s", d->desc.resource, why);
    dial_failed(d, why);
}

static void on_tls(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    dial_tls_step(w->data);
}

static void dial_tls_start(struct dialer *d)
{
    char err[300];
    SSL_CTX *ctx = origin_ctx(d->s, &d->desc, err, sizeof(err));
    if (ctx)
        d->tls = origintls_new(ctx, d->fd, d->desc.targets[d->cur],
                               d->desc.tls == RESOURCE_ORIGIN_TLS_INSECURE, err, sizeof(err));
    if (!d->tls) {
        log_warn("popsite: resource %s: %s", d->desc.resource, err);
        dial_failed(d, err);
        return;
    }
    dial_tls_step(d);
}

static void on_dial(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    struct dialer *d = w->data;
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        char why[160];
        snprintf(why, sizeof(why), "connect: %s", strerror(err));
        dial_failed(d, why);
        return;
    }
    if (d->desc.proxy) {
        /* The PROXY header goes first, before any byte of the client's: the socket was just
         * connected, so its empty send buffer takes the header (at most PROXYPROTO_MAX bytes)
         * whole; a short write is a failure like any other. */
        uint8_t hdr[PROXYPROTO_MAX];
        int hl = proxyproto_encode(d->desc.proxy, d->desc.client, d->desc.ingress, hdr,
                                   sizeof(hdr));
        if (hl < 0) {
            char why[200];
            snprintf(why, sizeof(why), "PROXY header: the client address %.64s is not numeric",
                     d->desc.client);
            dial_failed(d, why);
            return;
        }
        ssize_t sent = send(d->fd, hdr, (size_t)hl, MSG_NOSIGNAL);
        if (sent != hl) {
            char why[160];
            snprintf(why, sizeof(why), "PROXY header: %s",
                     sent < 0 ? strerror(errno) : "short write");
            dial_failed(d, why);
            return;
        }
    }
    if (d->desc.tls) {
        dial_tls_start(d);
        return;
    }
    dial_done(d);
}

static void on_udp_done(void *ctx)
{
    outconn_end(ctx);
}

/* A UDP resource's target (taddr, without its scheme): a connected socket and a flow, at once
 * (there is no handshake to wait for). 0, or -1 after dial_failed. */
static int dial_udp(struct dialer *d, const char *target, const char *taddr, struct tload *load)
{
    site_t *s = d->s;
    struct sockaddr_storage ss;
    socklen_t sl;
    char why[400];
    if (netaddr_sockaddr(taddr, &ss, &sl)) {
        snprintf(why, sizeof(why), "%.280s: only numeric addresses and localhost are supported",
                 taddr);
        dial_failed(d, why);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0) {
        snprintf(why, sizeof(why), "udp connect %.280s: %s", taddr, strerror(errno));
        if (fd >= 0)
            close(fd);
        dial_failed(d, why);
        return -1;
    }
    struct outconn *oc = xcalloc(1, sizeof(*oc));
    oc->s = s;
    oc->e = remember_conn(s, fd, (struct sockaddr *)&ss, sl, target);
    oc->load = load ? load : load_of(s, target, true);
    oc->load->n++;
    if (udpsite_start(s->udp, d->c, d->sid, fd, on_udp_done, oc)) {
        outconn_end(oc);
        dialer_free(d);
        return -1;
    }
    s->streams++;
    log_debug("popsite: UDP flow of %s from %s to %s", d->desc.resource, d->desc.client, taddr);
    dialer_free(d);
    return 0;
}

static void on_dial_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    dial_failed(w->data, "connect: timed out");
}

/* The candidate at position v of the weights laid end to end (v taken modulo their sum): each
 * gets its weight's share of a counter or a hash. Without weights (all 1) this is cand[v % nc],
 * what it was before weights. */
static int weighted(const struct dialer *d, const uint32_t *cand, uint32_t nc, uint64_t v)
{
    uint64_t total = 0;
    for (uint32_t i = 0; i < nc; i++)
        total += d->desc.weights[cand[i]] ? d->desc.weights[cand[i]] : 1;
    v %= total;
    for (uint32_t i = 0; i < nc; i++) {
        uint64_t w = d->desc.weights[cand[i]] ? d->desc.weights[cand[i]] : 1;
        if (v < w)
            return (int)cand[i];
        v -= w;
    }
    return (int)cand[nc - 1]; /* not reached */
}

static void dial_next(struct dialer *d)
{
    site_t *s = d->s;
    /* Healthy candidates not tried yet; when none is healthy, the untried unhealthy ones (a
     * check can be wrong, and refusing outright helps nobody). */
    int pick = -1;
    for (int pass = 0; pass < 2 && pick < 0; pass++) {
        uint32_t cand[SM_TARGETS_MAX], nc = 0;
        for (uint32_t i = 0; i < d->desc.ntargets; i++) {
            if (d->tried & (1u << i))
                continue;
            /* Not even as a last resort: a loop is no guess, each try costs a pass through
             * the mesh and a refusal. */
            if (target_loops(s, d->desc.targets[i])) {
                snprintf(d->last_err, sizeof(d->last_err),
                         "loop: the target %.200s leads back into the mesh", d->desc.targets[i]);
                continue;
            }
            if (pass || target_healthy(s, d->desc.resource, d->desc.targets[i]))
                cand[nc++] = i;
        }
        if (!nc)
            continue;
        if (d->desc.sticky) {
            /* The client's address without its port (an IPv6 one in its brackets, as
             * always: the same client keeps its target across versions). */
            char ip[NETADDR_HOST_MAX + 3];
            netaddr_t na;
            if (netaddr_parse(d->desc.client, &na, true))
                snprintf(ip, sizeof(ip), "%.*s", NETADDR_HOST_MAX, d->desc.client);
            else
                snprintf(ip, sizeof(ip), na.ipv6 ? "[%s]" : "%s", na.host);
            uint8_t h[8];
            crypto_generichash(h, sizeof(h), (const uint8_t *)ip, strlen(ip), NULL, 0);
            uint64_t hv;
            memcpy(&hv, h, 8);
            pick = weighted(d, cand, nc, hv);
        } else {
            pick = weighted(d, cand, nc, s->rr++);
        }
    }
    tun_t *t = tconn_tun(d->c);
    if (pick < 0) {
        s->refused++;
        char msg[TUN_MSG_MAX];
        bool loop = !strncmp(d->last_err, "loop:", 5);
        if (loop) /* the PoP recognises the prefix: it fails the connection without retrying */
            snprintf(msg, sizeof(msg), "%.200s", d->last_err);
        else
            snprintf(msg, sizeof(msg), "no target of %s reachable: %.150s", d->desc.resource,
                     d->last_err);
        if (!loop) /* a looping target would log a line per connection: its mark logged once */
            log_warn("popsite: stream for %s from %s refused: %s", d->desc.resource, d->desc.client,
                     msg);
        if (t)
            tun_reject(t, d->sid, loop ? TUN_ERR_REFUSED : TUN_ERR_UNREACHABLE, msg);
        dialer_free(d);
        return;
    }
    d->tried |= 1u << pick;
    struct sockaddr_storage ss;
    unsigned sl;
    const char *target = d->desc.targets[pick];
    d->cur = (uint32_t)pick;
    /* The backstop for loops nothing else catches (NAT, a chain through another mesh): a
     * target's connections are bounded, far above what one target serves. */
    struct tload *load = load_of(s, target, false);
    if (load && load->n >= s->max_target_conns) {
        uint64_t now = clock_mono_ms();
        if (now - s->load_log_ms >= 1000) {
            log_warn("popsite: target %s has %u connections, the limit (--max-target-conns): "
                     "a stream of %s refused (%llu more since the last such line); a target "
                     "that loops into the mesh through NAT looks like this",
                     target, load->n, d->desc.resource, (unsigned long long)s->load_unlogged);
            s->load_log_ms = now;
            s->load_unlogged = 0;
        } else {
            s->load_unlogged++;
        }
        char why[400];
        snprintf(why, sizeof(why), "%.280s: at its connection limit (%u)", target, load->n);
        dial_failed(d, why);
        return;
    }
    bool udp = false;
    const char *taddr = target;
    if (!sm_target_parse(target, &udp, &taddr) && udp) {
        dial_udp(d, target, taddr, load);
        return;
    }
    if (netaddr_sockaddr(target, &ss, &sl)) {
        char why[400];
        snprintf(why, sizeof(why), "%.280s: only numeric addresses and localhost are supported",
                 target);
        dial_failed(d, why);
        return;
    }
    d->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (d->fd < 0 || (connect(d->fd, (struct sockaddr *)&ss, sl) < 0 && errno != EINPROGRESS)) {
        char why[400];
        snprintf(why, sizeof(why), "connect %.280s: %s", target, strerror(errno));
        dial_failed(d, why);
        return;
    }
    /* Bound by connect() before the target can see it: registered before any OPEN it might
     * cause can reach us. */
    d->oc = xcalloc(1, sizeof(*d->oc));
    d->oc->s = s;
    d->oc->e = remember_conn(s, d->fd, (struct sockaddr *)&ss, sl, target);
    d->oc->load = load ? load : load_of(s, target, true);
    d->oc->load->n++;
    int one = 1;
    setsockopt(d->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    ev_io_init(&d->w, on_dial, d->fd, EV_WRITE);
    d->w.data = d;
    ev_io_start(s->loop, &d->w);
    ev_timer_init(&d->timeout, on_dial_timeout, SITE_DIAL_TIMEOUT_S, 0.);
    d->timeout.data = d;
    ev_timer_start(s->loop, &d->timeout);
}

/* ---- tunnel callbacks -------------------------------------------------------------------- */

/* The PoP (its index, which is its popsel slot) whose tunnel or probe c is; -1 if none. */
static int pop_of(site_t *s, tconn_t *c)
{
    for (unsigned i = 0; i < s->npops; i++)
        if (s->pops[i].c == c || s->pops[i].probe == c)
            return (int)i;
    return -1;
}

static void sc_up(void *ctx, tconn_t *c, const uint8_t *payload, size_t plen)
{
    site_t *s = ctx;
    int i = pop_of(s, c);
    sm_welcome_t w;
    const char *why;
    /* Closed: its on_down reports the probe or the tunnel as failed. */
    if (i < 0 || sm_decode_welcome(payload, plen, &w, &why) || w.id != s->pops[i].info.id) {
        tconn_close(c, "unexpected WELCOME");
        return;
    }
    struct pop *p = &s->pops[i];
    tconn_set_split(c, w.seal != 0);
    uint32_t hs = tconn_handshake_rtt_us(c);
    if (p->probe == c) {
        popsel_probe_result(s->sel, (unsigned)i, judged_rtt(s, (unsigned)i, hs ? hs : 1));
        tconn_close(c, "probe done");
        return;
    }
    uint64_t now = clock_mono_ms();
    popsel_tunnel_up(s->sel, (unsigned)i, judged_rtt(s, (unsigned)i, hs), now);
    log_info("popsite: tunnel to PoP %s up (rtt %.2f ms, region %s)", p->info.name,
             popsel_rtt_of(s->sel, (unsigned)i, now) / 1000.0, region_of(p));
    send_status(s, true);
}

static void sc_down(void *ctx, tconn_t *c, const char *why)
{
    site_t *s = ctx;
    int i = pop_of(s, c);
    if (i < 0)
        return;
    struct pop *p = &s->pops[i];
    if (p->probe == c) {
        if (strcmp(why, "probe done")) /* else sc_up reported its RTT */
            popsel_probe_result(s->sel, (unsigned)i, 0);
        p->probe = NULL;
    } else {
        if (popsel_is_up(s->sel, (unsigned)i))
            log_warn("popsite: tunnel to PoP %s down: %s (region %s)", p->info.name, why,
                     region_of(p));
        else
            log_info("popsite: cannot reach PoP %s: %s", p->info.name, why);
        popsel_tunnel_down(s->sel, (unsigned)i, clock_mono_ms());
        p->c = NULL;
    }
    /* tconn_destroy may not run inside its own callback: the tick reaps it. */
    s->dead = xrealloc(s->dead, (s->ndead + 1) * sizeof(*s->dead));
    s->dead[s->ndead++] = c;
}

static void sc_ctl(void *ctx, tconn_t *c, const uint8_t *msg, size_t len)
{
    site_t *s = ctx;
    sm_info_t *in = xcalloc(1, sizeof(*in));
    int type;
    const char *why;
    if (sm_decode_ctl(msg, len, &type, NULL, in, &why)) {
        log_warn("popsite: bad message from PoP %s: %s", tconn_peer_addr(c), why);
        free(in);
        return;
    }
    apply_pops(s, in);
    save_cache(s);
    free(s->checks);
    s->checks = in;
    memset(s->check_ok, 0, sizeof(s->check_ok));
    set_checks(s);
}

static void sc_drain(void *ctx, tconn_t *c)
{
    site_t *s = ctx;
    splice_ctx_tconn_drained(s->splices, c);
}

static void sc_on_open(void *ctx, tconn_t *c, uint64_t sid, const uint8_t *target, size_t len)
{
    site_t *s = ctx;
    struct dialer *d = xcalloc(1, sizeof(*d));
    const char *why;
    if (sm_decode_open(target, len, &d->desc, &why) || d->desc.npath) {
        tun_reject(tconn_tun(c), sid, TUN_ERR_REFUSED,
                   d->desc.npath ? "a site relays nothing" : why);
        free(d);
        return;
    }
    if (d->desc.site != s->id.node_id) {
        tun_reject(tconn_tun(c), sid, TUN_ERR_REFUSED, "stream for another site");
        free(d);
        return;
    }
    /* Our own connection to a target, come back into the mesh: cut it here, at its first
     * return, before it dials again. */
    struct sockaddr_storage cs, is;
    unsigned csl, isl = 0;
    bool lingering = false, has_ingress = !netaddr_sockaddr(d->desc.ingress, &is, &isl);
    const char *looped =
        netaddr_sockaddr(d->desc.client, &cs, &csl)
            ? NULL
            : addrset_find(s->mine, (struct sockaddr *)&cs, csl,
                           has_ingress ? (struct sockaddr *)&is : NULL, isl, &lingering);
    if (looped) {
        char lt[NODECFG_ADDR_MAX + 1], msg[TUN_MSG_MAX];
        snprintf(lt, sizeof(lt), "%s", looped); /* borrowed until the set changes */
        s->loops++;
        s->refused++;
        uint64_t now = clock_mono_ms();
        if (now - s->loop_log_ms >= 1000) {
            log_warn("popsite: loop: a stream of resource %s came from %s, this site's own "
                     "connection to target %s%s: refused (%llu loops cut, %llu since the last "
                     "such line)",
                     d->desc.resource, d->desc.client, lt, lingering ? " (just closed)" : "",
                     (unsigned long long)s->loops, (unsigned long long)s->loop_unlogged);
            s->loop_log_ms = now;
            s->loop_unlogged = 0;
        } else {
            s->loop_unlogged++;
        }
        snprintf(msg, sizeof(msg),
                 "loop: the target %.100s leads back into the mesh (through resource %.60s)", lt,
                 d->desc.resource);
        tun_reject(tconn_tun(c), sid, TUN_ERR_REFUSED, msg);
        loop_caught(s, lt, d->desc.resource);
        free(d);
        return;
    }
    /* Only targets of this site's resources (the PoPs' INFO lists them): a PoP, even a
     * compromised one, cannot make the site connect anywhere else in its network. */
    for (uint32_t i = 0; i < d->desc.ntargets; i++) {
        bool known = false;
        for (uint32_t k = 0; s->checks && k < s->checks->nchecks && !known; k++)
            known = !strcmp(s->checks->checks[k].target, d->desc.targets[i]);
        if (!known) {
            char msg[TUN_MSG_MAX];
            snprintf(msg, sizeof(msg), "%.200s is not a target of this site's resources",
                     d->desc.targets[i]);
            log_warn("popsite: stream for %s refused: %s", d->desc.resource, msg);
            s->refused++;
            tun_reject(tconn_tun(c), sid, TUN_ERR_REFUSED, msg);
            free(d);
            return;
        }
    }
    if (d->desc.sealed) {
        seal_keys_t keys;
        const char *bad = seal_keys_of(s, &d->desc, &keys);
        int rc = bad ? -EINVAL : tun_seal(tconn_tun(c), sid, TUN_SEAL_END, &keys);
        sodium_memzero(&keys, sizeof(keys));
        if (rc) {
            log_warn("popsite: sealed stream for %s refused: %s", d->desc.resource,
                     bad ? bad : strerror(-rc));
            s->refused++;
            s->seal_refused++;
            tun_reject(tconn_tun(c), sid, TUN_ERR_SEAL, bad ? bad : "cannot seal the stream");
            free(d);
            return;
        }
        s->sealed++;
    }
    d->magic = DIAL_MAGIC;
    d->s = s;
    d->c = c;
    d->sid = sid;
    d->fd = -1;
    snprintf(d->last_err, sizeof(d->last_err), "none healthy");
    tun_set_user(tconn_tun(c), sid, d);
    dial_next(d);
}

static void sc_on_reset(void *ctx, tconn_t *c, uint64_t sid, void *user, uint32_t code, bool remote,
                        const char *msg, size_t ml)
{
    (void)ctx, (void)remote;
    if (udpsite_owns(user))
        udpsite_on_end(user, c, sid);
    else if (splice_owns(user))
        splice_on_reset(user, c, sid, code, msg, ml);
    else if (user && *(uint32_t *)user == DIAL_MAGIC)
        dialer_free(user); /* the PoP gave up while we were connecting */
}
/* Stream events: a UDP flow's (udpsite.h), or a splice's as before. */
static void sc_on_data(void *ctx, tconn_t *c, uint64_t sid, void *user, const uint8_t *d,
                       size_t n)
{
    if (udpsite_owns(user))
        udpsite_on_data(user, c, sid, d, n);
    else
        splice_cb_data(ctx, c, sid, user, d, n);
}

static void sc_on_fin(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    if (udpsite_owns(user))
        udpsite_on_end(user, c, sid);
    else
        splice_cb_fin(ctx, c, sid, user);
}

static void sc_on_writable(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    if (udpsite_owns(user))
        udpsite_on_writable(user, c, sid);
    else
        splice_cb_writable(ctx, c, sid, user);
}

static void sc_on_closed(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    if (udpsite_owns(user))
        udpsite_on_end(user, c, sid);
    else
        splice_cb_closed(ctx, c, sid, user);
}

static const tconn_cbs_t *site_cbs(void)
{
    static const tconn_cbs_t cbs = {
        .on_up = sc_up,
        .on_down = sc_down,
        .on_ctl = sc_ctl,
        .on_drain = sc_drain,
        .on_open = sc_on_open,
        .on_data = sc_on_data,
        .on_fin = sc_on_fin,
        .on_writable = sc_on_writable,
        .on_reset = sc_on_reset,
        .on_closed = sc_on_closed,
    };
    return &cbs;
}

/* ---- choosing PoPs ---------------------------------------------------------------------- */

/* Streams open on c now (0 before it is up). */
static uint32_t tunnel_streams(tconn_t *c)
{
    tun_stats_t st = {0};
    tun_t *t = tconn_tun(c);
    if (t)
        tun_get_stats(t, &st);
    return st.streams;
}

static tconn_t *dial_pop(site_t *s, struct pop *p, bool probe)
{
    sm_hello_t h = {.role = "site", .probe = probe, .seal = seal_local_suites()};
    snprintf(h.name, sizeof(h.name), "%s", s->name);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_pack_hello(&pk, &h);
    tconn_cbs_t cbs = *site_cbs();
    cbs.ctx = s;
    tconn_t *c = tconn_dial(s->loop, p->info.tunnel_addr, &s->keys, p->info.curve_pk,
                            (const uint8_t *)sb.data, sb.size, &s->tcfg, &cbs);
    log_debug("popsite: %s PoP %s at %s", probe ? "probing" : "dialling", p->info.name,
              p->info.tunnel_addr);
    msgpack_sbuffer_destroy(&sb);
    if (!c)
        log_warn("popsite: cannot dial PoP %s at %s: %s", p->info.name, p->info.tunnel_addr,
                 strerror(errno));
    return c;
}

/* Feeds the core what it measures on its own (each tunnel's RTT and open streams), runs one
 * step and carries its actions out, in order. A dial or probe that cannot even be started is
 * reported at once as failed. */
static void manage(site_t *s)
{
    uint64_t now = clock_mono_ms();
    for (unsigned i = 0; i < s->npops; i++) {
        if (!popsel_is_up(s->sel, i))
            continue;
        popsel_tunnel_rtt(s->sel, i, judged_rtt(s, i, tconn_rtt_us(s->pops[i].c)));
        popsel_tunnel_streams(s->sel, i, tunnel_streams(s->pops[i].c));
    }
    popsel_action_t acts[POPSEL_ACTIONS_MAX];
    size_t n = popsel_step(s->sel, now, acts, POPSEL_ACTIONS_MAX);
    for (size_t j = 0; j < n; j++) {
        const popsel_action_t *a = &acts[j];
        struct pop *p = &s->pops[a->pop];
        switch (a->kind) {
        case POPSEL_PROBE:
            p->probe = dial_pop(s, p, true);
            if (!p->probe)
                popsel_probe_result(s->sel, a->pop, 0);
            break;
        case POPSEL_DIAL:
            if (a->why == POPSEL_WHY_CLOSER)
                log_info("popsite: PoP %s (%.2f ms, region %s) is closer than %s (%.2f ms, "
                         "region %s): dialling it",
                         p->info.name, a->rtt_us / 1000.0, region_of(p),
                         s->pops[a->other].info.name, a->other_rtt_us / 1000.0,
                         region_of(&s->pops[a->other]));
            else if (a->why == POPSEL_WHY_SPREAD)
                log_info("popsite: every tunnel is in region %s: PoP %s (%.2f ms, region %s) "
                         "is to replace %s (%.2f ms): dialling it",
                         region_of(&s->pops[a->other]), p->info.name, a->rtt_us / 1000.0,
                         region_of(p), s->pops[a->other].info.name, a->other_rtt_us / 1000.0);
            else
                log_info("popsite: fewer than %u tunnels: PoP %s (%s, region %s) fills the set",
                         s->k, p->info.name, a->rtt_us ? "measured" : "not measured yet",
                         region_of(p));
            p->c = dial_pop(s, p, false);
            if (!p->c)
                popsel_tunnel_down(s->sel, a->pop, now);
            break;
        case POPSEL_DRAIN:
            log_info("popsite: moving off PoP %s (%s; region %s): no new streams there, closing "
                     "it once idle",
                     p->info.name, popsel_why_name(a->why), region_of(p));
            send_status(s, true);
            break;
        case POPSEL_CLOSE:
            log_info("popsite: closing the drained tunnel to PoP %s (%u streams left)",
                     p->info.name, tunnel_streams(p->c));
            tconn_close(p->c, "replaced by a closer PoP");
            break;
        case POPSEL_PRIMARY:
            log_info("popsite: primary PoP is now %s (rtt %.2f ms, region %s; the tunnels span %s)",
                     p->info.name, a->rtt_us / 1000.0, region_of(p),
                     popsel_is_spread(s->sel) ? "two regions or more" : "one region");
            send_status(s, true);
            break;
        }
    }
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)revents;
    site_t *s = w->data;
    for (size_t i = 0; i < s->ndead; i++)
        tconn_destroy(&s->dead[i]);
    s->ndead = 0;
    manage(s);
    loops_expire(s, clock_mono_ms());
    if (clock_mono_ms() - s->last_status_ms >= SITE_STATUS_S * 1000)
        send_status(s, false);
}

static void on_dump(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)loop, (void)revents;
    site_t *s = w->data;
    splice_ctx_dump(s->splices);
    udpsite_stats_t u;
    udpsite_stats(s->udp, &u);
    log_info("popsite: UDP flows %llu (%llu opened), datagrams to targets %llu, from targets %llu; "
             "dropped: oversize %llu, queue full %llu, send failed %llu",
             (unsigned long long)u.flows, (unsigned long long)u.flows_opened,
             (unsigned long long)u.dg_to_target, (unsigned long long)u.dg_from_target,
             (unsigned long long)u.dropped_oversize, (unsigned long long)u.dropped_queue,
             (unsigned long long)u.send_failed);
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
    (void)w, (void)revents;
    log_info("popsite: stopping");
    ev_break(loop, EVBREAK_ALL);
}

/* ---- command line ----------------------------------------------------------------------- */

static int usage(const char *fmt, const char *arg)
{
    fprintf(stderr, "popsite: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nusage: popsite run --data DIR [--token TOKEN] [--pops K] "
                    "[--max-target-conns N] [--log-level LEVEL]\n       popsite help | "
                    "version\n");
    return 2;
}

static int lock_dir(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, SITE_LOCK);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return -EBUSY;
    }
    return fd;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data", required_argument, NULL, 'd'},
        {"token", required_argument, NULL, 't'},
        {"pops", required_argument, NULL, 'k'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {"max-target-conns", required_argument, NULL, 'm'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *token = NULL, *level = "info";
    long k = 2, max_target_conns = SITE_TARGET_CONNS;
    int c;
    while ((c = getopt_long(argc, argv, "d:t:k:l:hm:", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 't':
            token = optarg;
            break;
        case 'k': {
            char *end;
            k = strtol(optarg, &end, 10);
            if (*end || k < 1 || k > 8)
                return usage("--pops '%s' must be 1 to 8", optarg);
            break;
        }
        case 'm': {
            char *end;
            max_target_conns = strtol(optarg, &end, 10);
            if (*end || max_target_conns < 1 || max_target_conns > 1000000)
                return usage("--max-target-conns '%s' must be 1 to 1000000", optarg);
            break;
        }
        case 'l':
            if (log_level_parse(optarg) < 0)
                return usage("--log-level '%s' must be debug, info, warn or error", optarg);
            level = optarg;
            break;
        case 'h':
            usage("%s", "help");
            return 0;
        default:
            return usage("%s", "unknown option");
        }
    }
    if (!dir)
        return usage("%s", "--data DIR is required");
    if (optind < argc)
        return usage("unexpected argument '%s'", argv[optind]);
    log_init("popsite", (enum log_level)log_level_parse(level));
    if (sodium_init() < 0)
        return 1;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        log_error("cannot create %s: %s", dir, strerror(errno));
        return 1;
    }
    int lfd = lock_dir(dir);
    if (lfd < 0) {
        log_error("%s: %s", dir,
                  lfd == -EBUSY ? "another popsite runs on this directory" : strerror(-lfd));
        return 1;
    }
    site_t *s = xcalloc(1, sizeof(*s));
    s->dir = dir;
    s->k = (unsigned)k;
    s->max_target_conns = (uint32_t)max_target_conns;
    popsel_config_t pcfg;
    popsel_config_defaults(&pcfg);
    pcfg.k = s->k;
    randombytes_buf(&pcfg.rng_seed, sizeof(pcfg.rng_seed)); /* probe and redial jitter */
    s->sel = popsel_new(&pcfg); /* cannot fail: k is 1 to 8, the rest defaults */
    char err[512];
    char conf[4096];
    snprintf(conf, sizeof(conf), "%s/%s", dir, SITE_CONF);
    int rc;
    if (access(conf, F_OK) == 0) {
        if (token)
            log_info("popsite: %s is already enrolled; --token ignored", dir);
        rc = load(s, err, sizeof(err));
    } else if (!token) {
        snprintf(err, sizeof(err),
                 "%s is not enrolled yet: run popsite run --data %s --token TOKEN (from "
                 "meshctl site add NAME)",
                 dir, dir);
        rc = -EINVAL;
    } else {
        rc = enroll(s, token, err, sizeof(err));
    }
    if (rc) {
        log_error("%s", err);
        close(lfd);
        popsel_destroy(&s->sel);
        free(s);
        return 1;
    }
    memcpy(s->keys.pk, s->id.curve_pk, 32);
    memcpy(s->keys.sk, s->id.curve_sk, 32);
    s->keys.hello_ts_last = &s->hello_ts_last;
    tconn_keys_test_knobs(&s->keys);
    tun_config_defaults(&s->tcfg);
    s->tcfg.max_streams = SITE_MAX_STREAMS;
    /* For tests only: a low stream limit, to check what happens past it without opening
     * thousands of connections (docs/dataplane.md). */
    const char *ms = getenv("POPMESH_TEST_MAX_STREAMS");
    if (ms && strtoul(ms, NULL, 10) > 0) {
        s->tcfg.max_streams = (uint32_t)strtoul(ms, NULL, 10);
        log_warn("popsite: TEST KNOB: POPMESH_TEST_MAX_STREAMS=%u (for tests only)",
                 s->tcfg.max_streams);
    }
    s->tcfg.window_auto_max = SITE_WINDOW_MAX;
    s->tcfg.role = TUN_INITIATOR;
    signal(SIGPIPE, SIG_IGN);
    fdlimit_raise();
    s->loop = ev_default_loop(EVFLAG_AUTO);
    s->splices = splice_ctx_new(s->loop);
    s->udp = udpsite_new(s->loop);
    s->mine = addrset_new();
    s->hc = hc_new(s->loop, NULL, on_check_change, s);
    hc_set_socket_hook(s->hc, on_check_socket, s);
    ev_timer_init(&s->tick, on_tick, 0., SITE_TICK_S);
    s->tick.data = s;
    ev_timer_start(s->loop, &s->tick);
    ev_signal_init(&s->sigint, on_stop, SIGINT);
    ev_signal_init(&s->sigterm, on_stop, SIGTERM);
    ev_signal_start(s->loop, &s->sigint);
    ev_signal_start(s->loop, &s->sigterm);
    ev_signal_init(&s->sigusr1, on_dump, SIGUSR1);
    s->sigusr1.data = s;
    ev_signal_start(s->loop, &s->sigusr1);
    log_info("popsite %s ready (site %s): %u PoPs known, keeping tunnels to %u", s->name, s->site,
             s->npops, s->k);
    if (!s->npops)
        log_warn("popsite: no PoP with a tunnel endpoint is known; nothing to connect to");

    ev_run(s->loop, 0);

    udpsite_destroy(&s->udp);
    splice_ctx_destroy(&s->splices);
    for (unsigned i = 0; i < s->npops; i++) {
        tconn_destroy(&s->pops[i].c);
        tconn_destroy(&s->pops[i].probe);
    }
    for (size_t i = 0; i < s->ndead; i++)
        tconn_destroy(&s->dead[i]);
    free(s->dead);
    popsel_destroy(&s->sel);
    hc_destroy(&s->hc);
    addrset_destroy(&s->mine);
    free(s->marks);
    while (s->loads) {
        struct tload *l = s->loads;
        s->loads = l->next;
        free(l);
    }
    free(s->checks);
    free(s->check_status);
    for (unsigned i = 0; i < s->ntls_ctx; i++)
        SSL_CTX_free(s->tls_ctx[i].ctx);
    identity_wipe(&s->id);
    sodium_memzero(&s->keys, sizeof(s->keys));
    ev_loop_destroy(s->loop);
    free(s);
    close(lfd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage("%s", "missing command");
    if (!strcmp(argv[1], "run"))
        return cmd_run(argc - 1, argv + 1);
    if (!strcmp(argv[1], "version")) {
        printf("popsite %s\n", POPMESH_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
        printf("popsite: the site connector of popmesh.\n\n"
               "  popsite run --data DIR [--token TOKEN] [--pops K] [--log-level LEVEL]\n\n"
               "The first run enrolls with TOKEN (from 'meshctl site add NAME') and stores the\n"
               "site's keys in DIR (mode 0600); later runs need no token. The site dials out to\n"
               "the K closest PoPs (default 2: a primary and a standby) and connects the streams\n"
               "they open to the targets of its resources. --max-target-conns N (default\n"
               "16384) bounds the connections open to one target: a backstop against a target\n"
               "that leads back into the mesh in a way the site cannot recognise.\n");
        return 0;
    }
    return usage("unknown command '%s'", argv[1]);
}
