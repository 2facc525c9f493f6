/* dnsserver: see dnsserver.h. */
#include "node/dns/dnsserver.h"
#include "node/dns/dnsanswer.h"
#include "node/dns/dnsrrl.h"
#include "node/dns/dnssel.h"
#include "node/dns/dnsview.h"

#include "common/clock.h"
#include "common/conncap.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/netaddr.h"
#include "common/xmalloc.h"
#include "mesh/linkstate.h"
#include "node/acme/acmerec.h"
#include "node/records/cidr.h"
#include "node/records/geo.h"
#include "node/records/registry.h"
#include "node/records/resource.h"
#include "node/records/zone.h"
#include "storage/hlc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DNS_MSG_MAX 65535
#define MAX_POPS    256 /* PoPs a view holds (dnssel considers 256) */

/* ---- the configuration part of the view: parsed records, kept between rebuilds ------------ */

struct cfg_pop {
    reg_node_t n;
};

/* A host's site is its resource's; a resource with targets in several sites gets a label of
 * its own, "_" and a hash of its name (no site name starts with '_'), standing for all of
 * them: a PoP reaches the host when it reaches any (compute_reach). */
struct cfg_host {
    char name[DNS_NAME_MAX + 1];
    char site[NODECFG_NAME_MAX + 1];
    char sites[RESOURCE_TARGETS_MAX][NODECFG_NAME_MAX + 1]; /* with a "_" site: its sites */
    unsigned nsites;
    resource_t *labels; /* with a "_" site: the resource when it has transit or ingress labels
                         * (only those fields are read), else NULL */
    bool root_prefix; /* path_prefix "/": the resource that owns the whole host */
    uint64_t created_ms;
    char resource[NODECFG_NAME_MAX + 1];
};

struct cfg_site_node {
    uint64_t id;
    char site[NODECFG_NAME_MAX + 1];
};

struct stats {
    uint64_t udp_queries, tcp_queries;
    uint64_t kinds[DNSA_KINDS];
    uint64_t truncated, ecs;
    uint64_t rrl_dropped, rrl_slipped;
    uint64_t tcp_accepted, tcp_refused, tcp_closed_idle, tcp_closed_slow;
    uint64_t rebuilds;
    uint64_t send_errors;
};

struct tcpconn {
    dnsserver_t *s;
    int fd;
    ev_io rio, wio;
    ev_timer idle;
    conncap_slot_t *slot;
    struct sockaddr_storage peer;
    uint8_t hdr[2];
    size_t hdr_have;
    uint8_t *msg; /* the query being read, msg_len bytes */
    size_t msg_len, msg_have;
    uint8_t *out; /* answers not yet written */
    size_t out_len, out_off, out_cap;
    struct tcpconn *prev, *next;
};

struct dnsserver {
    dnsserver_opts_t o;
    /* configuration, reparsed when its records change */
    dns_zone_t *zones;
    size_t nzones;
    dns_geo_t *geos;
    size_t ngeos;
    struct cfg_pop *pops;
    size_t npops;
    struct cfg_host *hosts;
    size_t nhosts;
    struct cfg_site_node *site_nodes;
    size_t nsite_nodes;
    dns_txt_t *txts; /* ACME's DNS-01 answers: _acme-challenge.NAME from acmedns/NAME */
    size_t ntxts;
    uint64_t cfg_version_ms; /* newest write seen under the watched prefixes (SOA serial) */
    bool cfg_dirty;
    int watches[6];
    /* the view answers come from */
    dns_view_t *view;
    uint64_t generation;
    ev_timer rebuild; /* zero-delay: once per loop iteration */
    /* listeners */
    int ufd, tfd;
    ev_io uio, tio;
    dnsrrl_t *rrl;
    conncap_t *cap;
    struct tcpconn *conns;
    unsigned nconns;
    struct stats st;
    /* UDP batch buffers */
    uint8_t (*ubuf)[DNS_MSG_MAX + 1];
    uint8_t (*obuf)[DNS_MSG_MAX + 1];
};

/* ---- reading the configuration ------------------------------------------------------------ */

static void note_version(dnsserver_t *s, uint64_t version)
{
    uint64_t ms = hlc_ms(version);
    if (ms > s->cfg_version_ms)
        s->cfg_version_ms = ms;
}

static int load_zone(const store_entry_t *e, void *ctx)
{
    dnsserver_t *s = ctx;
    zone_rec_t z;
    const char *why = "?";
    const char *name = e->key + strlen(ZONE_PREFIX);
    char nb[DNS_NAME_MAX + 1];
    size_t nl = e->klen - strlen(ZONE_PREFIX);
    if (nl >= sizeof(nb))
        return 0;
    memcpy(nb, name, nl);
    nb[nl] = '\0';
    note_version(s, e->version);
    if (zone_parse(e->value, e->vlen, nb, &z, &why)) {
        log_warn("dns: zone record '%s' is unreadable (%s): not served", nb, why);
        return 0;
    }
    s->zones = xrealloc(s->zones, (s->nzones + 1) * sizeof(*s->zones));
    dns_zone_t *dz = &s->zones[s->nzones++];
    memset(dz, 0, sizeof(*dz));
    snprintf(dz->name, sizeof(dz->name), "%s", z.name);
    dz->ttl = z.ttl;
    dz->answers = z.answers;
    return 0;
}

static int load_geo(const store_entry_t *e, void *ctx)
{
    dnsserver_t *s = ctx;
    geo_rec_t g;
    const char *why = "?";
    char cidr[AUTH_CIDR_MAX + 1];
    size_t cl = e->klen - strlen(GEO_PREFIX);
    if (cl >= sizeof(cidr))
        return 0;
    memcpy(cidr, e->key + strlen(GEO_PREFIX), cl);
    cidr[cl] = '\0';
    note_version(s, e->version);
    if (geo_parse(e->value, e->vlen, cidr, &g, &why)) {
        log_warn("dns: geo record '%s' is unreadable (%s): not used", cidr, why);
        return 0;
    }
    s->geos = xrealloc(s->geos, (s->ngeos + 1) * sizeof(*s->geos));
    dns_geo_t *dg = &s->geos[s->ngeos++];
    memset(dg, 0, sizeof(*dg));
    dg->family = g.net.net.family == AF_INET6 ? 6 : 4;
    memcpy(dg->addr, g.net.net.a, 16);
    dg->plen = (uint8_t)g.net.prefix;
    snprintf(dg->region, sizeof(dg->region), "%s", g.region);
    dg->has_loc = g.has_loc;
    dg->lat = g.lat;
    dg->lon = g.lon;
    return 0;
}

static int load_node(const store_entry_t *e, void *ctx)
{
    dnsserver_t *s = ctx;
    uint64_t id;
    reg_node_t n;
    const char *why = "?";
    note_version(s, e->version);
    if (reg_node_key_id(e->key, e->klen, &id) ||
        reg_node_parse(e->value, e->vlen, id, &n, &why) || n.removed)
        return 0;
    if (n.role == ROLE_SITE) {
        s->site_nodes = xrealloc(s->site_nodes, (s->nsite_nodes + 1) * sizeof(*s->site_nodes));
        s->site_nodes[s->nsite_nodes].id = n.id;
        snprintf(s->site_nodes[s->nsite_nodes].site, sizeof(s->site_nodes[0].site), "%s",
                 reg_node_site(&n)); /* every replica of the site */
        s->nsite_nodes++;
        return 0;
    }
    if (s->npops >= MAX_POPS)
        return 0;
    s->pops = xrealloc(s->pops, (s->npops + 1) * sizeof(*s->pops));
    s->pops[s->npops++].n = n;
    return 0;
}

static int load_resource(const store_entry_t *e, void *ctx)
{
    dnsserver_t *s = ctx;
    resource_t *r = xmalloc(sizeof(*r));
    char name[NODECFG_NAME_MAX + 1], whyb[128];
    const char *why = "?";
    size_t nl = e->klen - strlen(RESOURCE_PREFIX);
    note_version(s, e->version);
    if (nl < sizeof(name)) {
        memcpy(name, e->key + strlen(RESOURCE_PREFIX), nl);
        name[nl] = '\0';
        if (resource_parse(e->value, e->vlen, name, r, whyb, sizeof(whyb), &why) == 0 &&
            r->host[0]) {
            s->hosts = xrealloc(s->hosts, (s->nhosts + 1) * sizeof(*s->hosts));
            struct cfg_host *h = &s->hosts[s->nhosts++];
            snprintf(h->name, sizeof(h->name), "%s", r->host);
            snprintf(h->site, sizeof(h->site), "%s", r->site);
            h->nsites = 0;
            h->labels = NULL;
            if (resource_multisite(r) || r->ntransit_labels || r->ningress_labels) {
                uint64_t hv = 1469598103934665603ull; /* FNV-1a: a label, not a secret */
                for (const char *c = r->name; *c; c++)
                    hv = (hv ^ (uint8_t)*c) * 1099511628211ull;
                snprintf(h->site, sizeof(h->site), "_%016llx", (unsigned long long)hv);
                for (unsigned k = 0; k < r->ntargets; k++) {
                    const char *ts = resource_target_site(r, k);
                    bool seen = false;
                    for (unsigned j = 0; j < h->nsites && !seen; j++)
                        seen = !strcmp(h->sites[j], ts);
                    if (!seen)
                        snprintf(h->sites[h->nsites++], sizeof(h->sites[0]), "%s", ts);
                }
            }
            snprintf(h->resource, sizeof(h->resource), "%s", r->name);
            h->root_prefix = !strcmp(r->path_prefix, "/");
            h->created_ms = r->created_ms;
            if (r->ntransit_labels || r->ningress_labels) {
                h->labels = r; /* kept: freed with the hosts (free_hosts) */
                r = NULL;
            }
        }
    }
    free(r);
    return 0;
}

static void free_hosts(dnsserver_t *s)
{
    for (size_t i = 0; i < s->nhosts; i++)
        free(s->hosts[i].labels);
    free(s->hosts);
    s->hosts = NULL;
    s->nhosts = 0;
}

/* The resource that speaks for a host: the one serving "/", then the oldest, then by name,
 * the same order everywhere. */
static int host_cmp(const void *a, const void *b)
{
    const struct cfg_host *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    if (x->root_prefix != y->root_prefix)
        return x->root_prefix ? -1 : 1;
    if (x->created_ms != y->created_ms)
        return x->created_ms < y->created_ms ? -1 : 1;
    return strcmp(x->resource, y->resource);
}

/* acmedns/<name>: TXT of _acme-challenge.<name> until it expires (node/acme/acmerec.h). An
 * expired record is left out at the next rebuild; the PoP that wrote it deletes it anyway. */
static int load_acmedns(const store_entry_t *e, void *ctx)
{
    dnsserver_t *s = ctx;
    const size_t pl = strlen(ACMEDNS_PREFIX);
    static const char label[] = "_acme-challenge.";
    acmedns_rec_t d;
    const char *why = "?";
    size_t nl = e->klen - pl;
    if (!acme_name_ok(e->key + pl, nl) || nl + sizeof(label) - 1 > DNS_NAME_MAX ||
        acmedns_parse(e->value, e->vlen, &d, &why) || d.expires_ms <= clock_wall_ms())
        return 0;
    for (size_t i = 0; i < d.nvalues; i++) {
        s->txts = xrealloc(s->txts, (s->ntxts + 1) * sizeof(*s->txts));
        dns_txt_t *t = &s->txts[s->ntxts++];
        snprintf(t->name, sizeof(t->name), "%s%.*s", label, (int)nl, e->key + pl);
        snprintf(t->value, sizeof(t->value), "%s", d.values[i]);
    }
    return 0;
}

static void load_config(dnsserver_t *s)
{
    free(s->zones), s->zones = NULL, s->nzones = 0;
    free(s->geos), s->geos = NULL, s->ngeos = 0;
    free(s->pops), s->pops = NULL, s->npops = 0;
    free_hosts(s);
    free(s->site_nodes), s->site_nodes = NULL, s->nsite_nodes = 0;
    free(s->txts), s->txts = NULL, s->ntxts = 0;
    store_t *st = s->o.store;
    if (store_list(st, ZONE_PREFIX, strlen(ZONE_PREFIX), load_zone, s) ||
        store_list(st, GEO_PREFIX, strlen(GEO_PREFIX), load_geo, s) ||
        store_list(st, REG_NODE_PREFIX, strlen(REG_NODE_PREFIX), load_node, s) ||
        store_list(st, RESOURCE_PREFIX, strlen(RESOURCE_PREFIX), load_resource, s) ||
        store_list(st, ACMEDNS_PREFIX, strlen(ACMEDNS_PREFIX), load_acmedns, s))
        log_warn("dns: cannot read the configuration: %s (answers may be stale)",
                 store_last_error(st));
    if (s->nhosts)
        qsort(s->hosts, s->nhosts, sizeof(*s->hosts), host_cmp);
    uint32_t serial = (uint32_t)(s->cfg_version_ms / 1000);
    for (size_t i = 0; i < s->nzones; i++)
        s->zones[i].serial = serial;
    s->cfg_dirty = false;
}

/* ---- the live part: who is up, and who can reach which site ------------------------------ */

static bool parse_ip(const char *text, int family, uint8_t *out)
{
    return text[0] && inet_pton(family, text, out) == 1;
}

static const lsdb_entry_t *ls_find(const lsdb_t *db, uint64_t origin, lsdb_entry_t *tmp)
{
    return db && lsdb_get(db, origin, tmp) == 0 ? tmp : NULL;
}

/* Which PoPs (by index in v->pops) can reach each site: a PoP reaches the sites attached to
 * the PoPs it can reach over links between alive PoPs, in the link-state records it holds. */
/* The resource behind a view site label that stands for a labelled resource ("_..." with
 * transit or ingress labels), else NULL. */
static const resource_t *labelled_host(const dnsserver_t *s, const char *label)
{
    if (label[0] != '_')
        return NULL;
    for (size_t i = 0; i < s->nhosts; i++)
        if (!strcmp(s->hosts[i].site, label))
            return s->hosts[i].labels;
    return NULL;
}

/* True when PoP id may carry res (and, with ingress, take its users). */
static bool pop_labels_allow(const dnsserver_t *s, uint64_t id, const resource_t *res,
                             bool ingress)
{
    for (size_t i = 0; i < s->npops; i++)
        if (s->pops[i].n.id == id)
            return resource_pop_allowed(res, &s->pops[i].n, ingress);
    return false;
}

/* True when the view's site label stands for site: the site itself, or a multi-site
 * resource's label (cfg_host) whose sites include it. */
static bool site_covers(const dnsserver_t *s, const char *label, const char *site)
{
    if (label[0] != '_')
        return !strcmp(label, site);
    for (size_t i = 0; i < s->nhosts; i++) {
        if (strcmp(s->hosts[i].site, label))
            continue;
        for (unsigned k = 0; k < s->hosts[i].nsites; k++)
            if (!strcmp(s->hosts[i].sites[k], site))
                return true;
        return false;
    }
    return false;
}

/* True when a site node of the site(s) label stands for is ONLINE or DEGRADED at the PoP
 * whose link-state record is e. */
static bool attached_at(const dnsserver_t *s, const lsdb_entry_t *e, const char *label)
{
    for (uint32_t k = 0; k < e->n_sites; k++) {
        const ls_site_t *ls = &e->sites[k];
        if (ls->state != LS_SITE_ONLINE && ls->state != LS_SITE_DEGRADED)
            continue;
        for (size_t n = 0; n < s->nsite_nodes; n++)
            if (s->site_nodes[n].id == ls->site && site_covers(s, label, s->site_nodes[n].site))
                return true;
    }
    return false;
}

static void compute_reach(dnsserver_t *s, dns_view_t *v)
{
    const lsdb_t *db = meshnode_lsdb(s->o.mesh);
    size_t np = v->npops;
    if (!db || !np || !v->nsites)
        return;
    /* adjacency over alive PoPs, as an index matrix */
    bool *adj = xcalloc(np * np, sizeof(bool));
    bool *up = xcalloc(np, sizeof(bool));
    for (size_t i = 0; i < np; i++)
        up[i] = v->pops[i].state != DNS_EXCL_DEAD;
    lsdb_entry_t tmp;
    for (size_t i = 0; i < np; i++) {
        const lsdb_entry_t *e = ls_find(db, v->pops[i].id, &tmp);
        if (!e || !up[i])
            continue;
        for (uint32_t k = 0; k < e->n_links; k++) {
            if (e->links[k].loss_permille >= LS_LOSS_MAX)
                continue;
            for (size_t j = 0; j < np; j++)
                if (v->pops[j].id == e->links[k].peer && up[j])
                    adj[i * np + j] = adj[j * np + i] = true;
        }
    }
    /* attached[i * nsites + site]: a site node of the site is ONLINE or DEGRADED at PoP i */
    bool *attached = xcalloc(np * v->nsites, sizeof(bool));
    for (size_t i = 0; i < np; i++) {
        const lsdb_entry_t *e = ls_find(db, v->pops[i].id, &tmp);
        if (!e || !up[i])
            continue;
        for (size_t si = 0; si < v->nsites; si++)
            attached[i * v->nsites + si] = attached_at(s, e, v->sites[si]);
    }
    /* components: a PoP reaches what its component reaches */
    size_t *comp = xmalloc(np * sizeof(size_t)), *stack = xmalloc(np * sizeof(size_t));
    for (size_t i = 0; i < np; i++)
        comp[i] = SIZE_MAX;
    for (size_t r = 0; r < np; r++) {
        if (comp[r] != SIZE_MAX)
            continue;
        size_t sp = 0;
        stack[sp++] = r;
        comp[r] = r;
        while (sp) {
            size_t i = stack[--sp];
            for (size_t j = 0; j < np; j++)
                if (adj[i * np + j] && comp[j] == SIZE_MAX) {
                    comp[j] = r;
                    stack[sp++] = j;
                }
        }
    }
    bool *ok = xcalloc(np, sizeof(bool)), *seen = xcalloc(np, sizeof(bool));
    for (size_t si = 0; si < v->nsites; si++) {
        const resource_t *res = labelled_host(s, v->sites[si]);
        if (res) {
            /* A resource that may cross only PoPs with some labels: a PoP answers for it when
             * it may take its users (ingress) and reaches an attached PoP through allowed PoPs
             * only (the data plane's filtered routes, docs/dns.md). */
            for (size_t i = 0; i < np; i++)
                ok[i] = up[i] && pop_labels_allow(s, v->pops[i].id, res, false);
            for (size_t i = 0; i < np; i++) {
                if (!up[i])
                    continue;
                bool r = false;
                if (ok[i] && pop_labels_allow(s, v->pops[i].id, res, true)) {
                    memset(seen, 0, np * sizeof(bool));
                    size_t sp = 0;
                    stack[sp++] = i;
                    seen[i] = true;
                    while (sp && !r) {
                        size_t a = stack[--sp];
                        r = attached[a * v->nsites + si];
                        for (size_t j = 0; j < np; j++)
                            if (adj[a * np + j] && ok[j] && !seen[j]) {
                                seen[j] = true;
                                stack[sp++] = j;
                            }
                    }
                }
                dnsview_set_reach(v, si, i, r);
            }
            continue;
        }
        for (size_t i = 0; i < np; i++) {
            if (!up[i])
                continue;
            bool r = false;
            for (size_t j = 0; j < np && !r; j++)
                r = comp[j] == comp[i] && up[j] && attached[j * v->nsites + si];
            dnsview_set_reach(v, si, i, r);
        }
    }
    free(ok), free(seen);
    free(adj), free(up), free(attached), free(comp), free(stack);
}

static void rebuild(dnsserver_t *s)
{
    if (s->cfg_dirty)
        load_config(s);
    dns_view_t *v = dnsview_new();
    for (size_t i = 0; i < s->nzones; i++)
        if (dnsview_add_zone(v, &s->zones[i]))
            log_warn("dns: zone '%s' refused by the view", s->zones[i].name);
    for (size_t i = 0; i < s->ngeos; i++)
        dnsview_add_geo(v, &s->geos[i]);
    for (size_t i = 0; i < s->npops; i++) {
        const reg_node_t *n = &s->pops[i].n;
        dns_pop_t p;
        memset(&p, 0, sizeof(p));
        p.id = n->id;
        snprintf(p.name, sizeof(p.name), "%s", n->name);
        snprintf(p.region, sizeof(p.region), "%s", n->region);
        p.has_loc = n->has_loc;
        p.lat = n->lat;
        p.lon = n->lon;
        p.has_v4 = parse_ip(n->public4, AF_INET, p.v4);
        p.has_v6 = parse_ip(n->public6, AF_INET6, p.v6);
        p.serves_dns = n->dns_addr[0] != '\0';
        bool ingress_up = false;
        if (!meshnode_is_alive(s->o.mesh, n->id))
            p.state = DNS_EXCL_DEAD;
        else if (n->draining)
            p.state = DNS_EXCL_DRAINING;
        else if (!meshnode_pop_health(s->o.mesh, n->id, &ingress_up, NULL))
            p.state = DNS_EXCL_NO_HEALTH;
        else if (!ingress_up)
            p.state = DNS_EXCL_INGRESS_DOWN;
        else
            p.state = DNS_OK;
        if (dnsview_add_pop(v, &p))
            log_warn("dns: PoP '%s' refused by the view", p.name);
    }
    /* hosts inside a zone only: a name outside every zone is never answered */
    for (size_t i = 0; i < s->nhosts; i++) {
        const char *h = s->hosts[i].name;
        bool in_zone = false;
        for (size_t z = 0; z < s->nzones && !in_zone; z++) {
            size_t hl = strlen(h), zl = strlen(s->zones[z].name);
            in_zone = hl == zl ? !strcmp(h, s->zones[z].name)
                               : hl > zl && h[hl - zl - 1] == '.' &&
                                     !strcmp(h + hl - zl, s->zones[z].name);
        }
        if (in_zone)
            dnsview_add_host(v, h, s->hosts[i].site); /* sorted: the first of a name wins */
    }
    for (size_t i = 0; i < s->ntxts; i++)
        dnsview_add_txt(v, s->txts[i].name, s->txts[i].value);
    dnsview_finish(v, s->o.self_id);
    compute_reach(s, v);
    v->generation = ++s->generation;
    dnsview_free(&s->view);
    s->view = v;
    s->st.rebuilds++;
}

static void on_rebuild(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    rebuild(t->data);
}

static void mark_dirty(dnsserver_t *s)
{
    if (!ev_is_active(&s->rebuild)) {
        ev_timer_set(&s->rebuild, 0.0, 0.0);
        ev_timer_start(s->o.loop, &s->rebuild);
    }
}

static void on_config_change(void *ctx, const store_entry_t *changes, size_t n)
{
    dnsserver_t *s = ctx;
    for (size_t i = 0; i < n; i++)
        note_version(s, changes[i].version); /* tombstones too: a deletion changes the zone */
    s->cfg_dirty = true;
    mark_dirty(s);
}

static void on_mesh_change(void *ctx)
{
    mark_dirty(ctx);
}

/* ---- UDP ---------------------------------------------------------------------------------- */

static void count_answer(dnsserver_t *s, const dnsanswer_info_t *info)
{
    if (info->kind < DNSA_KINDS)
        s->st.kinds[info->kind]++;
    if (info->truncated)
        s->st.truncated++;
    if (info->ecs)
        s->st.ecs++;
}

union ctlbuf {
    char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
    struct cmsghdr align;
};

/* Turns the received control data (the query's destination address) into what sendmsg needs
 * to answer from that address. Returns the control length to use (0: none). */
static size_t reply_control(struct msghdr *in, union ctlbuf *out)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(in); c; c = CMSG_NXTHDR(in, c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            pi.ipi_spec_dst = pi.ipi_addr;
            pi.ipi_ifindex = 0;
            memset(out, 0, sizeof(*out));
            struct cmsghdr *o = (struct cmsghdr *)out->buf;
            o->cmsg_level = IPPROTO_IP;
            o->cmsg_type = IP_PKTINFO;
            o->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(o), &pi, sizeof(pi));
            return CMSG_SPACE(sizeof(pi));
        }
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof(pi));
            pi.ipi6_ifindex = 0;
            memset(out, 0, sizeof(*out));
            struct cmsghdr *o = (struct cmsghdr *)out->buf;
            o->cmsg_level = IPPROTO_IPV6;
            o->cmsg_type = IPV6_PKTINFO;
            o->cmsg_len = CMSG_LEN(sizeof(pi));
            memcpy(CMSG_DATA(o), &pi, sizeof(pi));
            return CMSG_SPACE(sizeof(pi));
        }
    }
    return 0;
}

static void on_udp(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    dnsserver_t *s = w->data;
    struct mmsghdr in[DNSSERVER_UDP_BATCH], out[DNSSERVER_UDP_BATCH];
    struct iovec iov[DNSSERVER_UDP_BATCH], oiov[DNSSERVER_UDP_BATCH];
    struct sockaddr_storage from[DNSSERVER_UDP_BATCH];
    union ctlbuf ctl[DNSSERVER_UDP_BATCH], octl[DNSSERVER_UDP_BATCH];
    uint64_t now_ms = s->rrl ? clock_mono_ms() : 0;
    for (unsigned round = 0; round < DNSSERVER_UDP_BUDGET / DNSSERVER_UDP_BATCH; round++) {
        for (unsigned i = 0; i < DNSSERVER_UDP_BATCH; i++) {
            iov[i] = (struct iovec){s->ubuf[i], DNS_MSG_MAX};
            in[i].msg_hdr = (struct msghdr){.msg_name = &from[i],
                                            .msg_namelen = sizeof(from[i]),
                                            .msg_iov = &iov[i],
                                            .msg_iovlen = 1,
                                            .msg_control = ctl[i].buf,
                                            .msg_controllen = sizeof(ctl[i].buf)};
            in[i].msg_len = 0;
        }
        int n = recvmmsg(s->ufd, in, DNSSERVER_UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0)
            return; /* EAGAIN, or an ICMP error reported on the socket: nothing to do */
        unsigned nout = 0;
        for (int i = 0; i < n; i++) {
            s->st.udp_queries++;
            if (in[i].msg_hdr.msg_flags & MSG_TRUNC)
                continue; /* longer than any query can be: not worth an answer */
            dnsanswer_info_t info;
            size_t len = dnsanswer(s->view, s->ubuf[i], in[i].msg_len,
                                   (const struct sockaddr *)&from[i], false, s->obuf[nout],
                                   DNS_MSG_MAX, &info);
            count_answer(s, &info);
            if (!len)
                continue;
            if (s->rrl) {
                enum dnsrrl_verdict vd =
                    dnsrrl_check(s->rrl, (const struct sockaddr *)&from[i], now_ms);
                if (vd == DNSRRL_DROP) {
                    s->st.rrl_dropped++;
                    continue;
                }
                if (vd == DNSRRL_SLIP) {
                    s->st.rrl_slipped++;
                    len = dnsanswer_slip(s->obuf[nout], len);
                }
            }
            oiov[nout] = (struct iovec){s->obuf[nout], len};
            size_t cl = reply_control(&in[i].msg_hdr, &octl[nout]);
            out[nout].msg_hdr = (struct msghdr){.msg_name = &from[i],
                                                .msg_namelen = in[i].msg_hdr.msg_namelen,
                                                .msg_iov = &oiov[nout],
                                                .msg_iovlen = 1,
                                                .msg_control = cl ? octl[nout].buf : NULL,
                                                .msg_controllen = cl};
            out[nout].msg_len = 0;
            nout++;
        }
        for (unsigned sent = 0; sent < nout;) {
            int k = sendmmsg(s->ufd, out + sent, nout - sent, MSG_DONTWAIT);
            if (k <= 0) {
                /* a full socket buffer or an unreachable resolver: UDP answers may be lost,
                 * the resolver asks again */
                s->st.send_errors += nout - sent;
                break;
            }
            sent += (unsigned)k;
        }
        if (n < DNSSERVER_UDP_BATCH)
            return;
    }
}

/* ---- TCP ---------------------------------------------------------------------------------- */

static void tcp_close(struct tcpconn *c)
{
    dnsserver_t *s = c->s;
    ev_io_stop(s->o.loop, &c->rio);
    ev_io_stop(s->o.loop, &c->wio);
    ev_timer_stop(s->o.loop, &c->idle);
    close(c->fd);
    conncap_release(s->cap, c->slot);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    free(c->msg);
    free(c->out);
    free(c);
}

static void tcp_flush(struct tcpconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            tcp_close(c);
            return;
        }
        c->out_off += (size_t)w;
    }
    if (c->out_off == c->out_len) {
        c->out_off = c->out_len = 0;
        ev_io_stop(c->s->o.loop, &c->wio);
        if (!ev_is_active(&c->rio))
            ev_io_start(c->s->o.loop, &c->rio);
    } else {
        ev_io_start(c->s->o.loop, &c->wio);
        /* a client that asks without reading: stop reading until it catches up */
        if (c->out_len - c->out_off > DNSSERVER_TCP_OUT_MAX / 2)
            ev_io_stop(c->s->o.loop, &c->rio);
    }
}

/* Answers the query read; false if the connection was closed (c is gone). */
static bool tcp_answer(struct tcpconn *c)
{
    dnsserver_t *s = c->s;
    static uint8_t resp[DNS_MSG_MAX];
    dnsanswer_info_t info;
    s->st.tcp_queries++;
    size_t len = dnsanswer(s->view, c->msg, c->msg_len, (const struct sockaddr *)&c->peer, true,
                           resp, sizeof(resp), &info);
    count_answer(s, &info);
    if (!len)
        return true;
    if (c->out_len - c->out_off + len + 2 > DNSSERVER_TCP_OUT_MAX) {
        s->st.tcp_closed_slow++;
        tcp_close(c);
        return false;
    }
    if (c->out_off) { /* compact */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
    }
    if (c->out_len + len + 2 > c->out_cap) {
        c->out_cap = c->out_len + len + 2;
        c->out = xrealloc(c->out, c->out_cap);
    }
    c->out[c->out_len] = (uint8_t)(len >> 8);
    c->out[c->out_len + 1] = (uint8_t)len;
    memcpy(c->out + c->out_len + 2, resp, len);
    c->out_len += len + 2;
    return true;
}

static void on_tcp_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct tcpconn *c = w->data;
    uint8_t buf[16384];
    ssize_t r = recv(c->fd, buf, sizeof(buf), 0);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        tcp_close(c);
        return;
    }
    if (r < 0)
        return;
    ev_timer_again(loop, &c->idle);
    size_t off = 0, n = (size_t)r;
    while (off < n) {
        if (c->hdr_have < 2) {
            c->hdr[c->hdr_have++] = buf[off++];
            if (c->hdr_have == 2) {
                c->msg_len = (size_t)c->hdr[0] << 8 | c->hdr[1];
                c->msg_have = 0;
                if (c->msg_len < 12) { /* shorter than a header: nothing to answer */
                    tcp_close(c);
                    return;
                }
                c->msg = xrealloc(c->msg, c->msg_len);
            }
            continue;
        }
        size_t take = c->msg_len - c->msg_have;
        if (take > n - off)
            take = n - off;
        memcpy(c->msg + c->msg_have, buf + off, take);
        c->msg_have += take;
        off += take;
        if (c->msg_have == c->msg_len) {
            if (!tcp_answer(c))
                return;
            c->hdr_have = 0;
        }
    }
    tcp_flush(c);
}

static void on_tcp_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop, (void)revents;
    tcp_flush(w->data);
}

static void on_tcp_idle(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop, (void)revents;
    struct tcpconn *c = t->data;
    c->s->st.tcp_closed_idle++;
    tcp_close(c);
}

static void on_tcp_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    dnsserver_t *s = w->data;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->tfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                log_warn("dns: cannot accept a TCP client: %s", strerror(errno));
            return;
        }
        const char *why = NULL;
        conncap_slot_t *slot = conncap_admit(s->cap, (struct sockaddr *)&ss, &why);
        if (!slot) {
            s->st.tcp_refused++;
            close(fd);
            continue;
        }
        struct tcpconn *c = xcalloc(1, sizeof(*c));
        c->s = s;
        c->fd = fd;
        c->slot = slot;
        c->peer = ss;
        ev_io_init(&c->rio, on_tcp_read, fd, EV_READ);
        ev_io_init(&c->wio, on_tcp_write, fd, EV_WRITE);
        c->rio.data = c->wio.data = c;
        ev_init(&c->idle, on_tcp_idle);
        c->idle.repeat = DNSSERVER_TCP_IDLE_S;
        c->idle.data = c;
        ev_timer_again(loop, &c->idle);
        ev_io_start(loop, &c->rio);
        c->next = s->conns;
        if (s->conns)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        s->st.tcp_accepted++;
    }
}

/* ---- listeners ---------------------------------------------------------------------------- */

static int udp_bind(const char *addr, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (netaddr_sockaddr(addr, &ss, &sl)) {
        snprintf(err, errlen, "dns-listen '%s' is not a numeric host:port", addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open a UDP socket: %s", strerror(errno));
        return -1;
    }
    int one = 1, zero = 0, rcvbuf = 4 << 20;
    if (ss.ss_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero)); /* [::] is dual stack */
        setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof(one));
    }
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)); /* bursts from resolvers */
    if (bind(fd, (struct sockaddr *)&ss, sl)) {
        snprintf(err, errlen, "cannot listen on %s (UDP) for DNS: %s", addr, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

dnsserver_t *dnsserver_new(const dnsserver_opts_t *o, char *err, size_t errlen)
{
    dnsserver_t *s = xcalloc(1, sizeof(*s));
    s->o = *o;
    s->ufd = s->tfd = -1;
    for (size_t i = 0; i < sizeof(s->watches) / sizeof(s->watches[0]); i++)
        s->watches[i] = -1;
    ev_init(&s->rebuild, on_rebuild);
    s->rebuild.data = s;
    s->cfg_dirty = true;
    rebuild(s);
    const char *prefixes[] = {ZONE_PREFIX,     GEO_PREFIX,      REG_NODE_PREFIX,
                              RESOURCE_PREFIX, REG_SITE_PREFIX, ACMEDNS_PREFIX};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        s->watches[i] = store_watch(o->store, prefixes[i], strlen(prefixes[i]), on_config_change, s);
        if (s->watches[i] < 0) {
            snprintf(err, errlen, "cannot watch %s records: %s", prefixes[i],
                     strerror(-s->watches[i]));
            goto fail;
        }
    }
    if (meshnode_add_change_hook(o->mesh, on_mesh_change, s)) {
        snprintf(err, errlen, "cannot follow the mesh's changes: too many hooks");
        goto fail;
    }

    const char *addr = o->cfg->dns_listen;
    if (addr[0]) {
        s->ufd = udp_bind(addr, err, errlen);
        if (s->ufd < 0)
            goto fail;
        s->tfd = netaddr_listen(addr, 128, err, errlen);
        if (s->tfd < 0) {
            char e2[256];
            snprintf(e2, sizeof(e2), "%s", err);
            snprintf(err, errlen, "cannot listen on %s (TCP) for DNS: %s", addr, e2);
            goto fail;
        }
        s->ubuf = xmalloc(DNSSERVER_UDP_BATCH * sizeof(*s->ubuf));
        s->obuf = xmalloc(DNSSERVER_UDP_BATCH * sizeof(*s->obuf));
        if (o->cfg->dns_rrl)
            s->rrl = dnsrrl_new((unsigned)o->cfg->dns_rrl, 2);
        s->cap = conncap_new(DNSSERVER_TCP_MAX, DNSSERVER_TCP_PER_ADDR);
        ev_io_init(&s->uio, on_udp, s->ufd, EV_READ);
        s->uio.data = s;
        ev_io_start(o->loop, &s->uio);
        ev_io_init(&s->tio, on_tcp_accept, s->tfd, EV_READ);
        s->tio.data = s;
        ev_io_start(o->loop, &s->tio);
        log_info("dns: answering on %s (UDP and TCP); rate limit %s", addr,
                 o->cfg->dns_rrl ? "on" : "off");
    }
    return s;
fail:
    dnsserver_destroy(&s);
    return NULL;
}

void dnsserver_destroy(dnsserver_t **sp)
{
    dnsserver_t *s = sp ? *sp : NULL;
    if (!s)
        return;
    meshnode_remove_change_hook(s->o.mesh, on_mesh_change, s);
    for (size_t i = 0; i < sizeof(s->watches) / sizeof(s->watches[0]); i++)
        if (s->watches[i] > 0)
            store_unwatch(s->o.store, s->watches[i]);
    ev_timer_stop(s->o.loop, &s->rebuild);
    while (s->conns)
        tcp_close(s->conns);
    if (s->ufd >= 0) {
        ev_io_stop(s->o.loop, &s->uio);
        close(s->ufd);
    }
    if (s->tfd >= 0) {
        ev_io_stop(s->o.loop, &s->tio);
        close(s->tfd);
    }
    dnsrrl_free(&s->rrl);
    conncap_destroy(&s->cap);
    dnsview_free(&s->view);
    free_hosts(s);
    free(s->zones), free(s->geos), free(s->pops), free(s->site_nodes);
    free(s->txts);
    free(s->ubuf), free(s->obuf);
    free(s);
    *sp = NULL;
}

/* ---- control: dns.explain, dns.status ----------------------------------------------------- */

static void lower_name(const char *in, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len && n + 1 < cap; i++)
        out[n++] = (char)tolower((unsigned char)in[i]);
    if (n && out[n - 1] == '.')
        n--;
    out[n] = '\0';
}

static void pack_addr(msgpack_packer *pk, const dns_pop_t *p, uint8_t family)
{
    char t[INET6_ADDRSTRLEN] = "";
    if (family == 6 && p->has_v6)
        inet_ntop(AF_INET6, p->v6, t, sizeof(t));
    else if (family == 4 && p->has_v4)
        inet_ntop(AF_INET, p->v4, t, sizeof(t));
    mpw_str(pk, t);
}

/* A resource restricted to labelled PoPs (--transit-labels, --ingress-labels) is answered only
 * with PoPs that may take its users and reach its site through labelled PoPs (compute_reach).
 * When none may, the answer is NODATA like any unreachable host, and every PoP would show
 * "no-route": explain instead, in the operator's terms (the labels), why it has no allowed
 * path. It is not carried any other way: the data plane refuses it too (resource.routes). */

/* The configuration entry behind a view site label; NULL when none. */
static const struct cfg_host *cfg_host_of(const dnsserver_t *s, const char *label)
{
    for (size_t i = 0; i < s->nhosts; i++)
        if (!strcmp(s->hosts[i].site, label))
            return &s->hosts[i];
    return NULL;
}

/* Appends printf output to out (cap bytes, *off used so far), truncating with "..." once full:
 * lists of PoPs in a reason are bounded by the buffer, not by the mesh's size. */
__attribute__((format(printf, 4, 5))) static void text_add(char *out, size_t cap, size_t *off,
                                                           const char *fmt, ...)
{
    if (*off + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *off, cap - *off, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= cap - *off) {
        *off = cap - 1;
        if (cap > 4)
            memcpy(out + cap - 4, "...", 4);
        return;
    }
    *off += (size_t)n;
}

/* "the label onprem" or "one of the labels onprem, eu". */
static void labels_text(const char (*l)[NODECFG_NAME_MAX + 1], unsigned n, char *out, size_t cap)
{
    size_t off = 0;
    out[0] = '\0';
    text_add(out, cap, &off, n == 1 ? "the label " : "one of the labels ");
    for (unsigned i = 0; i < n; i++)
        text_add(out, cap, &off, "%s%s", i ? ", " : "", l[i]);
}

/* A PoP's state for this host: "no-label" where it lacks the transit labels, "no-ingress-label"
 * where it may carry the traffic but not take the users; the view's state otherwise. */
static const char *explain_state(const dnsserver_t *s, const dns_view_t *v, const resource_t *res,
                                 size_t idx, enum dns_excl why)
{
    if (res && why == DNS_EXCL_NO_ROUTE) {
        if (!pop_labels_allow(s, v->pops[idx].id, res, false))
            return "no-label";
        if (!pop_labels_allow(s, v->pops[idx].id, res, true))
            return "no-ingress-label";
    }
    return dns_excl_name(why);
}

static void pack_labels(msgpack_packer *pk, const char *key, const char (*l)[NODECFG_NAME_MAX + 1],
                        unsigned n)
{
    mpw_str(pk, key);
    msgpack_pack_array(pk, n);
    for (unsigned i = 0; i < n; i++)
        mpw_str(pk, l[i]);
}

/* The "transit" entry of dns.explain for a host whose resource res carries labels. */
static void pack_transit(const dnsserver_t *s, const dns_view_t *v, const dns_host_t *host,
                         const resource_t *res, const char *sites, msgpack_packer *pk)
{
    const char *label = v->sites[host->site];
    const lsdb_t *db = meshnode_lsdb(s->o.mesh);
    const bool *reach =
        v->reach && host->site < v->nsites ? v->reach + host->site * v->npops : NULL;
    char carriers[512] = "", live[512] = "", elsewhere[512] = "";
    size_t oc = 0, ol = 0, oe = 0;
    unsigned ncarry = 0, nlive = 0, ningress = 0, nattached = 0;
    bool any_reach = false;
    for (size_t p = 0; p < v->npops; p++) {
        const dns_pop_t *pop = &v->pops[p];
        bool alive = pop->state != DNS_EXCL_DEAD;
        any_reach |= reach && reach[p];
        lsdb_entry_t tmp;
        const lsdb_entry_t *e = alive ? ls_find(db, pop->id, &tmp) : NULL;
        bool attached = e && attached_at(s, e, label);
        if (!pop_labels_allow(s, pop->id, res, false)) {
            if (attached)
                text_add(elsewhere, sizeof(elsewhere), &oe, "%s%s", oe ? ", " : "", pop->name);
            continue;
        }
        text_add(carriers, sizeof(carriers), &oc, "%s%s %s", ncarry ? ", " : "", pop->name,
                 dns_excl_name(pop->state));
        ncarry++;
        if (!alive)
            continue;
        text_add(live, sizeof(live), &ol, "%s%s", nlive ? ", " : "", pop->name);
        nlive++;
        ningress += pop_labels_allow(s, pop->id, res, true);
        nattached += attached;
    }
    char tl[256], il[256], with[272] = "", why[1024] = "";
    labels_text((const char(*)[NODECFG_NAME_MAX + 1]) res->transit_labels, res->ntransit_labels, tl,
                sizeof(tl));
    labels_text((const char(*)[NODECFG_NAME_MAX + 1]) res->ingress_labels, res->ningress_labels, il,
                sizeof(il));
    if (res->ntransit_labels) /* with only ingress labels, every PoP may carry it */
        snprintf(with, sizeof(with), " with %s", tl);
    /* With an allowed path, the answer (or the PoPs' states) says the rest: why stays "".
     * Without one, the first of these that holds, from the labels outwards. */
    size_t ow = 0;
    if (any_reach)
        why[0] = '\0';
    else if (!ncarry)
        text_add(why, sizeof(why), &ow, "no PoP in the mesh%s", with);
    else if (!nlive)
        text_add(why, sizeof(why), &ow, "no live PoP%s (%s)", with, carriers);
    else if (!ningress)
        text_add(why, sizeof(why), &ow, "of the live PoPs%s (%s), none has %s for users to enter",
                 with, live, il);
    else if (!nattached)
        text_add(why, sizeof(why), &ow, "site %s has no tunnel up at a live PoP%s (%s); %s%s",
                 sites, with, live,
                 oe ? "its tunnels are at " : "it has no tunnel up at any live PoP", elsewhere);
    else
        text_add(why, sizeof(why), &ow,
                 "the live PoPs%s (%s) reach no PoP holding site %s's tunnels without crossing "
                 "a PoP that lacks the labels",
                 with, live, sites);
    msgpack_pack_map(pk, 7);
    mpw_kv_str(pk, "resource", res->name);
    pack_labels(pk, "transit_labels", (const char(*)[NODECFG_NAME_MAX + 1]) res->transit_labels,
                res->ntransit_labels);
    pack_labels(pk, "ingress_labels", (const char(*)[NODECFG_NAME_MAX + 1]) res->ingress_labels,
                res->ningress_labels);
    mpw_kv_u64(pk, "carriers", ncarry);
    mpw_kv_u64(pk, "carriers_alive", nlive);
    mpw_kv_bool(pk, "no_allowed_path", !any_reach);
    mpw_kv_str(pk, "why", why);
}

static int cmd_explain(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    dnsserver_t *s = ctx;
    const dns_view_t *v = s->view;
    char name[DNS_NAME_MAX + 2], client_text[AUTH_CIDR_MAX + 1] = "", type[8] = "A";
    const char *raw;
    uint32_t rl;
    if (ctl_arg_str(req, "name", &raw, &rl) != 1 || rl == 0 || rl > DNS_NAME_MAX + 1)
        return control_error(pk, CTL_BAD_REQUEST, "missing or bad argument 'name' (a DNS name)");
    lower_name(raw, rl, name, sizeof(name));
    if (ctl_arg_copy(req, "client", client_text, sizeof(client_text)) < 0)
        return control_error(pk, CTL_BAD_REQUEST, "client must be an IP address or a CIDR");
    if (ctl_arg_copy(req, "type", type, sizeof(type)) < 0 ||
        (strcasecmp(type, "A") && strcasecmp(type, "AAAA")))
        return control_error(pk, CTL_BAD_REQUEST, "type must be A or AAAA");
    uint8_t family = strcasecmp(type, "AAAA") ? 4 : 6;

    dns_client_t cl;
    memset(&cl, 0, sizeof(cl));
    bool have_client = client_text[0] != '\0';
    if (have_client) {
        auth_cidr_t c;
        const char *why = NULL;
        if (auth_cidr_parse(client_text, &c, &why))
            return control_error(pk, CTL_BAD_REQUEST,
                                 "client '%s' is not an IP address or a network: %s", client_text,
                                 why ? why : "?");
        cl.family = c.net.family == AF_INET6 ? 6 : 4;
        memcpy(cl.addr, c.net.a, 16);
        cl.plen = (uint8_t)c.prefix;
        cl.ecs = c.prefix != (cl.family == 4 ? 32u : 128u);
    }

    const dns_zone_t *z = dnsview_zone_of(v, name);
    const char *kind = "refused";
    const dns_host_t *host = NULL;
    size_t pop_name = DNS_NONE;
    bool pick = false;
    if (z) {
        host = dnsview_host(v, name);
        size_t nl = strlen(name), zl = strlen(z->name);
        if (host || nl == zl) {
            pick = true;
            kind = host ? "resource host" : "zone apex";
        } else {
            /* NAME.pop.ZONE */
            char suffix[DNS_NAME_MAX + 8];
            snprintf(suffix, sizeof(suffix), ".pop.%s", z->name);
            size_t sl = strlen(suffix);
            if (nl > sl && !strcmp(name + nl - sl, suffix) && !memchr(name, '.', nl - sl)) {
                char label[DNS_LABEL_MAX + 1];
                snprintf(label, sizeof(label), "%.*s", (int)(nl - sl), name);
                pop_name = dnsview_pop_by_name(v, label);
            }
            kind = pop_name != DNS_NONE ? "PoP name" : "no such name";
        }
    }
    static dns_explain_t ex;
    dns_pick_t pk_out;
    memset(&pk_out, 0, sizeof(pk_out));
    if (pick) {
        dnssel_pick(v, z, host, name, family, have_client ? &cl : NULL, &pk_out, &ex);
    }

    /* A host of a resource with its own view label ("_" and a hash) is served by the sites
     * behind that label: name them rather than the label. */
    const resource_t *res = host ? labelled_host(s, v->sites[host->site]) : NULL;
    char sites[256] = "";
    if (host) {
        const struct cfg_host *h = cfg_host_of(s, v->sites[host->site]);
        size_t off = 0;
        if (h && h->nsites)
            for (unsigned k = 0; k < h->nsites; k++)
                text_add(sites, sizeof(sites), &off, "%s%s", k ? "," : "", h->sites[k]);
        else
            snprintf(sites, sizeof(sites), "%s", v->sites[host->site]);
    }

    msgpack_pack_map(pk, 12);
    mpw_kv_str(pk, "name", name);
    mpw_kv_str(pk, "zone", z ? z->name : "");
    mpw_kv_str(pk, "kind", kind);
    mpw_kv_str(pk, "type", family == 6 ? "AAAA" : "A");
    mpw_kv_str(pk, "client", have_client ? client_text : "");
    mpw_kv_str(pk, "site", sites);
    mpw_str(pk, "transit");
    if (res && pick)
        pack_transit(s, v, host, res, sites, pk);
    else
        msgpack_pack_nil(pk);
    mpw_str(pk, "mapping");
    if (pick && ex.geo != DNS_NONE) {
        const dns_geo_t *g = &v->geos[ex.geo];
        char a[INET6_ADDRSTRLEN], t[AUTH_CIDR_MAX + 1];
        inet_ntop(g->family == 6 ? AF_INET6 : AF_INET, g->addr, a, sizeof(a));
        snprintf(t, sizeof(t), "%s/%u", a, g->plen);
        msgpack_pack_map(pk, 4);
        mpw_kv_str(pk, "geo", t);
        mpw_kv_str(pk, "region", ex.region);
        mpw_kv_bool(pk, "located", ex.has_loc);
        mpw_str(pk, "location");
        msgpack_pack_array(pk, ex.has_loc ? 2 : 0);
        if (ex.has_loc) {
            msgpack_pack_double(pk, ex.lat);
            msgpack_pack_double(pk, ex.lon);
        }
    } else {
        msgpack_pack_nil(pk);
    }
    mpw_kv_u64(pk, "scope", pk_out.scope);
    mpw_kv_u64(pk, "ttl", z ? z->ttl : 0);
    mpw_str(pk, "answer");
    if (pop_name != DNS_NONE) {
        msgpack_pack_array(pk, 1);
        const dns_pop_t *p = &v->pops[pop_name];
        msgpack_pack_map(pk, 4);
        mpw_kv_str(pk, "pop", p->name);
        mpw_kv_str(pk, "region", p->region);
        mpw_str(pk, "address");
        pack_addr(pk, p, family);
        mpw_str(pk, "distance_km");
        msgpack_pack_nil(pk);
    } else {
        msgpack_pack_array(pk, (uint32_t)pk_out.n);
        for (size_t i = 0; i < pk_out.n; i++) {
            const dns_pop_t *p = &v->pops[pk_out.pops[i]];
            msgpack_pack_map(pk, 4);
            mpw_kv_str(pk, "pop", p->name);
            mpw_kv_str(pk, "region", p->region);
            mpw_str(pk, "address");
            pack_addr(pk, p, family);
            mpw_str(pk, "distance_km");
            double d = ex.dist_km[pk_out.pops[i]];
            if (d >= 0)
                msgpack_pack_double(pk, d);
            else
                msgpack_pack_nil(pk);
        }
    }
    mpw_str(pk, "pops");
    size_t np = pick ? ex.norder : 0;
    msgpack_pack_array(pk, (uint32_t)np);
    for (size_t i = 0; i < np; i++) {
        size_t idx = ex.order[i];
        const dns_pop_t *p = &v->pops[idx];
        bool in_answer = false;
        for (size_t k = 0; k < pk_out.n; k++)
            in_answer |= pk_out.pops[k] == idx;
        msgpack_pack_map(pk, 6);
        mpw_kv_str(pk, "pop", p->name);
        mpw_kv_str(pk, "region", p->region);
        mpw_kv_u64(pk, "rank", i + 1);
        mpw_kv_str(pk, "state", explain_state(s, v, res, idx, ex.why[idx]));
        mpw_kv_bool(pk, "answered", in_answer);
        mpw_str(pk, "distance_km");
        if (ex.dist_km[idx] >= 0)
            msgpack_pack_double(pk, ex.dist_km[idx]);
        else
            msgpack_pack_nil(pk);
    }
    return CTL_OK;
}

static int cmd_status(void *ctx, const ctl_request_t *req, msgpack_packer *pk)
{
    (void)req;
    dnsserver_t *s = ctx;
    const dns_view_t *v = s->view;
    size_t ok = 0;
    for (size_t i = 0; i < v->npops; i++)
        ok += v->pops[i].state == DNS_OK;
    msgpack_pack_map(pk, 8);
    mpw_kv_str(pk, "listen", s->o.cfg->dns_listen);
    mpw_kv_u64(pk, "zones", v->nzones);
    mpw_kv_u64(pk, "hosts", v->nhosts);
    mpw_kv_u64(pk, "pops", v->npops);
    mpw_kv_u64(pk, "pops_answerable", ok);
    mpw_kv_u64(pk, "view_generation", v->generation);
    mpw_str(pk, "queries");
    msgpack_pack_map(pk, 2);
    mpw_kv_u64(pk, "udp", s->st.udp_queries);
    mpw_kv_u64(pk, "tcp", s->st.tcp_queries);
    mpw_str(pk, "counters");
    msgpack_pack_map(pk, DNSA_KINDS + 10);
    for (int k = 0; k < DNSA_KINDS; k++)
        mpw_kv_u64(pk, dnsanswer_kind_name((enum dnsanswer_kind)k), s->st.kinds[k]);
    mpw_kv_u64(pk, "truncated", s->st.truncated);
    mpw_kv_u64(pk, "ecs", s->st.ecs);
    mpw_kv_u64(pk, "rrl_dropped", s->st.rrl_dropped);
    mpw_kv_u64(pk, "rrl_slipped", s->st.rrl_slipped);
    mpw_kv_u64(pk, "tcp_accepted", s->st.tcp_accepted);
    mpw_kv_u64(pk, "tcp_refused", s->st.tcp_refused);
    mpw_kv_u64(pk, "tcp_closed_idle", s->st.tcp_closed_idle);
    mpw_kv_u64(pk, "tcp_closed_slow", s->st.tcp_closed_slow);
    mpw_kv_u64(pk, "view_rebuilds", s->st.rebuilds);
    mpw_kv_u64(pk, "send_errors", s->st.send_errors);
    return CTL_OK;
}

static const control_command_t dns_commands[] = {
    {"dns.explain", cmd_explain,
     "{name, client?, type?}: the answer a client would get for name, and why"},
    {"dns.status", cmd_status, "the name server: listener, view, query counters"},
    {NULL, NULL, NULL},
};

int dnsserver_register_commands(dnsserver_t *s, control_t *ctl)
{
    return control_add_commands(ctl, dns_commands, s);
}
