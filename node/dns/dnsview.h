/* dnsview: everything a DNS answer is computed from, as one immutable snapshot.
 *
 * The server (node/dns/dnsserver.c) builds a view from replicated state (zones, geo rules,
 * member records, resource hosts) and live state (SWIM liveness, health vectors, routes)
 * whenever one of them changes, and swaps it in; the pure parts below (dnssel: which PoPs,
 * dnsanswer: the wire) read only the view, so they are loop-free, deterministic and fuzzed.
 * Two PoPs holding the same view give the same answer to the same client, with one
 * exception that is the point of it: with no geo mapping for a client, the answering PoP
 * (view.self) comes first.
 *
 * Names are lowercase, without the trailing dot ("example.test"). Arrays are owned by
 * whoever built the view (dnsview_free releases one built by dnsview_new/dnsview_add_*). */
#ifndef POPMESH_NODE_DNS_DNSVIEW_H
#define POPMESH_NODE_DNS_DNSVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX    253 /* bytes of a name, without the trailing dot */
#define DNS_LABEL_MAX   63
#define DNS_ANSWERS_MAX 8   /* PoP addresses in one answer */
#define DNS_ANSWERS_DEFAULT 2
#define DNS_NONE        SIZE_MAX

/* Why a PoP gets no place in answers (DNS_OK: it is a candidate). In the order they are
 * checked; the first that holds is reported (meshctl dns explain). */
enum dns_excl {
    DNS_OK = 0,
    DNS_EXCL_DEAD,         /* not alive in SWIM: suspect, dead or left (a suspect is left out
                            * at once: the others can take its users while SWIM decides) */
    DNS_EXCL_DRAINING,     /* the operator drains it (meshctl node drain) */
    DNS_EXCL_NO_HEALTH,    /* no health vector received yet */
    DNS_EXCL_INGRESS_DOWN, /* its health vector says a listener is not bound or accepting */
    DNS_EXCL_NO_ADDRESS,   /* no public address of the family asked for (per query) */
    DNS_EXCL_NO_ROUTE,     /* no route to the resource's site (per query) */
};
const char *dns_excl_name(enum dns_excl e); /* "ok", "dead", "draining", ... */

typedef struct dns_pop {
    uint64_t id;
    char name[DNS_LABEL_MAX + 1];   /* its node name: NAME.pop.ZONE */
    char region[DNS_LABEL_MAX + 1]; /* "" = none */
    bool has_loc;                   /* --location LAT,LON given */
    double lat, lon;                /* degrees */
    bool has_v4, has_v6;            /* public addresses (--public-address) */
    uint8_t v4[4], v6[16];
    bool serves_dns;                /* runs a DNS listener: in the zone's NS set */
    enum dns_excl state;            /* DNS_OK, or DEAD / DRAINING / NO_HEALTH / INGRESS_DOWN */
} dns_pop_t;

typedef struct dns_zone {
    char name[DNS_NAME_MAX + 1];
    uint32_t ttl;     /* of every answer, and the SOA minimum (negative caching) */
    unsigned answers; /* PoP addresses per answer, 1 .. DNS_ANSWERS_MAX (default 2) */
    uint32_t serial;  /* SOA serial: changes when the zone's data does */
} dns_zone_t;

/* An HTTP resource's host: answered only with PoPs that have a route to its site. */
typedef struct dns_host {
    char name[DNS_NAME_MAX + 1];
    size_t site; /* index into view.sites */
} dns_host_t;

/* A TXT record (the DNS-01 answers of ACME, node/acme): name and one character-string. */
#define DNS_TXT_MAX 255 /* bytes of one TXT character-string */
typedef struct dns_txt {
    char name[DNS_NAME_MAX + 1];
    char value[DNS_TXT_MAX + 1];
} dns_txt_t;

/* A geo rule: clients in addr/plen are in region (and at lat,lon if given). */
typedef struct dns_geo {
    uint8_t family; /* 4 or 6 */
    uint8_t addr[16];
    uint8_t plen;
    char region[DNS_LABEL_MAX + 1];
    bool has_loc;
    double lat, lon;
} dns_geo_t;

/* A region as dnsview_finish sees it from the PoPs: where it is, for clients and PoPs that
 * have a region but no location of their own. */
typedef struct dns_region {
    char name[DNS_LABEL_MAX + 1];
    bool has_loc;    /* one of its PoPs has a location */
    double lat, lon; /* degrees: the mean of its PoPs' locations (see dnsview.c) */
} dns_region_t;

/* A place distances are measured from or to, computed once by dnsview_finish. */
typedef struct dns_place {
    size_t region;   /* index into view.regions, or DNS_NONE */
    bool has_loc;    /* its own location, else its region's centroid */
    double lat, lon; /* degrees */
    double xyz[3];   /* the same point on the unit sphere (distances without trigonometry) */
} dns_place_t;

/* The geo rules of one family and prefix length: a sorted run of view.geos. */
typedef struct dns_geo_group {
    uint8_t family, plen;
    size_t first, n; /* view.geos[first .. first + n) */
} dns_geo_group_t;

typedef struct dns_view {
    dns_zone_t *zones; /* sorted by name */
    size_t nzones;
    dns_pop_t *pops; /* sorted by id */
    size_t npops;
    dns_host_t *hosts; /* sorted by name; one per name (the resource that wins the host) */
    size_t nhosts;
    char (*sites)[DNS_LABEL_MAX + 1]; /* site names the hosts refer to */
    size_t nsites;
    /* reach[s * npops + p]: PoP p has a route to site s (the site is attached to a PoP that p
     * can reach in the link-state graph). nsites * npops entries. */
    bool *reach;
    dns_geo_t *geos; /* added in any order; dnsview_finish sorts them (family, longest prefix
                      * first, address) so that identical rules resolve the same everywhere */
    size_t ngeos;
    dns_txt_t *txts; /* sorted by name (dnsview_finish) */
    size_t ntxts;
    size_t self;         /* index of the answering PoP in pops, or DNS_NONE */
    uint64_t generation; /* bumps with every new view: answer caches key on it */

    /* Computed by dnsview_finish from the above; dnssel_pick needs them (an unfinished view
     * answers nothing). Owned by the view. */
    bool finished;
    size_t *pops_by_name;       /* npops indexes into pops, sorted by name */
    dns_region_t *regions;      /* every PoP region, sorted by name */
    size_t nregions;
    dns_place_t *pop_place;     /* per PoP: its region and the location distances go to */
    dns_place_t *geo_place;     /* per geo rule: its region (DNS_NONE if no PoP is there) and the
                                 * client's location (the rule's, else the region's centroid) */
    dns_geo_group_t *geo_groups; /* families ascending, then longest prefix first */
    size_t ngeo_groups;
} dns_view_t;

/* An empty view (no zones: every query is REFUSED). */
dns_view_t *dnsview_new(void);
void dnsview_free(dns_view_t **vp);
/* Builders (the server, tests, fuzzers): append one entry, copying it. Sort with
 * dnsview_finish once everything is in. 0, or -EINVAL for a bad entry (a name not lowercase
 * labels of a-z 0-9 '-' '_', too long, a geo prefix longer than its family, a location out of
 * range, a PoP state that is per query, a zone's answers above DNS_ANSWERS_MAX; answers 0
 * means the default, 2), -EEXIST for a second zone of a name or PoP of an id or name, -EINVAL
 * after dnsview_finish. A geo rule's bits past plen are cleared; its region must be a name. */
int dnsview_add_zone(dns_view_t *v, const dns_zone_t *z);
int dnsview_add_pop(dns_view_t *v, const dns_pop_t *p);
/* Adds host name for site (by name; the site is added to view.sites if new). name may be a
 * wildcard, "*." and a name of two labels or more. */
int dnsview_add_host(dns_view_t *v, const char *name, const char *site);
int dnsview_add_geo(dns_view_t *v, const dns_geo_t *g);
/* A TXT record of name (a name the view accepts; '_' allowed) with value (1..255 bytes). */
int dnsview_add_txt(dns_view_t *v, const char *name, const char *value);
/* Sorts, drops duplicate hosts (first added wins), sizes reach (all false) and sets self to
 * the PoP with id self_id (DNS_NONE if absent). Call before set_reach and before use. */
void dnsview_finish(dns_view_t *v, uint64_t self_id);
void dnsview_set_reach(dns_view_t *v, size_t site, size_t pop, bool r);

/* Lookups on a finished view. */
/* The longest zone that is qname or a parent of it; NULL if none. qname lowercase. */
const dns_zone_t *dnsview_zone_of(const dns_view_t *v, const char *qname);
/* The host of name: exact, else the wildcard "*.rest" when name is "label.rest". */
const dns_host_t *dnsview_host(const dns_view_t *v, const char *name);
size_t dnsview_pop_by_name(const dns_view_t *v, const char *name); /* or DNS_NONE */
/* The TXT records of name: their count, the first at v->txts[*first]. */
size_t dnsview_txt(const dns_view_t *v, const char *name, size_t *first);

#endif
