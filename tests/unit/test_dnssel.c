/* node/dns/dnsview + dnssel: the view's builders and lookups, and which PoPs a client gets. */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/clock.h"
#include "node/dns/dnssel.h"

/* Places, degrees. */
#define PARIS     48.8566, 2.3522
#define FRANKFURT 50.1109, 8.6821
#define LONDON    51.5074, -0.1278
#define NEWYORK   40.7128, -74.0060
#define ASHBURN   39.0438, -77.4874
#define SINGAPORE 1.3521, 103.8198
#define TOKYO     35.6762, 139.6503

static dns_pop_t pop_at(uint64_t id, const char *name, const char *region, bool loc, double lat,
                        double lon)
{
    dns_pop_t p;
    memset(&p, 0, sizeof(p));
    p.id = id;
    snprintf(p.name, sizeof(p.name), "%s", name);
    snprintf(p.region, sizeof(p.region), "%s", region);
    p.has_loc = loc;
    p.lat = lat;
    p.lon = lon;
    p.has_v4 = p.has_v6 = true;
    p.v4[0] = 192;
    p.v4[3] = (uint8_t)id;
    p.v6[0] = 0x20;
    p.v6[15] = (uint8_t)id;
    p.serves_dns = true;
    return p;
}

#define POP(v, id, name, region, ...)                                                              \
    do {                                                                                           \
        dns_pop_t p_ = pop_at(id, name, region, true, __VA_ARGS__);                                \
        assert_int_equal(dnsview_add_pop(v, &p_), 0);                                              \
    } while (0)

static dns_zone_t zone(const char *name, unsigned answers)
{
    dns_zone_t z;
    memset(&z, 0, sizeof(z));
    snprintf(z.name, sizeof(z.name), "%s", name);
    z.ttl = 20;
    z.answers = answers;
    z.serial = 1;
    return z;
}

/* "a.b.c.d/plen" or an IPv6 text: parsed by hand into a rule. */
static dns_geo_t geo(const char *cidr, const char *region, bool loc, double lat, double lon)
{
    dns_geo_t g;
    memset(&g, 0, sizeof(g));
    char addr[64];
    unsigned plen;
    assert_int_equal(sscanf(cidr, "%63[^/]/%u", addr, &plen), 2);
    if (strchr(addr, ':')) {
        g.family = 6;
        assert_int_equal(inet_pton(AF_INET6, addr, g.addr), 1);
    } else {
        g.family = 4;
        assert_int_equal(inet_pton(AF_INET, addr, g.addr), 1);
    }
    g.plen = (uint8_t)plen;
    snprintf(g.region, sizeof(g.region), "%s", region);
    g.has_loc = loc;
    g.lat = lat;
    g.lon = lon;
    return g;
}

#define GEO(v, cidr, region)                                                                       \
    do {                                                                                           \
        dns_geo_t g_ = geo(cidr, region, false, 0, 0);                                             \
        assert_int_equal(dnsview_add_geo(v, &g_), 0);                                              \
    } while (0)
#define GEO_AT(v, cidr, region, ...)                                                               \
    do {                                                                                           \
        dns_geo_t g_ = geo(cidr, region, true, __VA_ARGS__);                                       \
        assert_int_equal(dnsview_add_geo(v, &g_), 0);                                              \
    } while (0)

static dns_client_t client(const char *cidr, bool ecs)
{
    dns_geo_t g = geo(cidr, "x", false, 0, 0);
    dns_client_t c;
    memset(&c, 0, sizeof(c));
    c.family = g.family;
    memcpy(c.addr, g.addr, sizeof(c.addr));
    c.plen = g.plen;
    c.ecs = ecs;
    return c;
}

/* The names of the picked PoPs, space-separated, for readable assertions. */
static const char *picked(const dns_view_t *v, const dns_pick_t *pk)
{
    static char buf[600];
    buf[0] = '\0';
    for (size_t i = 0; i < pk->n; i++) {
        if (i)
            strcat(buf, " ");
        strcat(buf, v->pops[pk->pops[i]].name);
    }
    return buf;
}

static const char *order(const dns_view_t *v, const dns_explain_t *ex)
{
    static char buf[2000];
    buf[0] = '\0';
    for (size_t i = 0; i < ex->norder; i++) {
        if (i)
            strcat(buf, " ");
        strcat(buf, v->pops[ex->order[i]].name);
    }
    return buf;
}

static const char *pick_names(const dns_view_t *v, const char *name, uint8_t family,
                              const char *cidr, unsigned answers)
{
    dns_zone_t z = zone("example.test", answers);
    dns_client_t c = client(cidr, false);
    dns_pick_t pk;
    dnssel_pick(v, &z, NULL, name, family, &c, &pk, NULL);
    return picked(v, &pk);
}

/* eu: par, fra; us: nyc, ash; rules: 10/8 eu (no location: the centroid), 20/8 us at New
 * York, 30/8 asia at Tokyo (no PoP there). */
static dns_view_t *world(uint64_t self_id)
{
    dns_view_t *v = dnsview_new();
    POP(v, 1, "par", "eu", PARIS);
    POP(v, 2, "fra", "eu", FRANKFURT);
    POP(v, 3, "nyc", "us", NEWYORK);
    POP(v, 4, "ash", "us", ASHBURN);
    GEO(v, "10.0.0.0/8", "eu");
    GEO_AT(v, "20.0.0.0/8", "us", NEWYORK);
    GEO_AT(v, "30.0.0.0/8", "asia", TOKYO);
    dns_zone_t z = zone("example.test", 2);
    assert_int_equal(dnsview_add_zone(v, &z), 0);
    dnsview_finish(v, self_id);
    return v;
}

/* ---- dnsview ------------------------------------------------------------------------------- */

static void test_distance(void **state)
{
    (void)state;
    assert_true(fabs(dnssel_distance_km(PARIS, LONDON) - 343.5) < 2);
    assert_true(fabs(dnssel_distance_km(NEWYORK, LONDON) - 5570) < 10);
    assert_true(fabs(dnssel_distance_km(0, 0, 0, 180) - M_PI * 6371.0088) < 1);
    assert_true(dnssel_distance_km(TOKYO, TOKYO) == 0);
    assert_true(fabs(dnssel_distance_km(0, 179.5, 0, -179.5) - 111.2) < 0.5);
}

static void test_view_validation(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    static const char *bad_names[] = {"",    "Example.test", "example.test.", "a..b",
                                      ".a",  "-a.b",         "a-.b",          "a b",
                                      "a/b", "é.b",          "a\x01"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
        dns_zone_t z = zone(bad_names[i], 2);
        if (dnsview_add_zone(v, &z) != -EINVAL)
            fail_msg("zone \"%s\" accepted", bad_names[i]);
        if (dnsview_add_host(v, bad_names[i], "site") != -EINVAL)
            fail_msg("host \"%s\" accepted", bad_names[i]);
    }
    /* Label and name lengths: 63 and 253 bytes are the limits. */
    char name[300];
    memset(name, 'a', 64);
    name[64] = '\0';
    assert_int_equal(dnsview_add_host(v, name, "s"), -EINVAL);
    name[63] = '\0';
    assert_int_equal(dnsview_add_host(v, name, "s"), 0);
    memset(name, 0, sizeof(name));
    for (size_t i = 0; i < 253; i++)
        name[i] = i % 2 ? '.' : 'a'; /* a.a.a...a: 253 bytes */
    assert_int_equal(dnsview_add_host(v, name, "s"), 0);
    name[253] = '.';
    name[254] = 'a';
    assert_int_equal(dnsview_add_host(v, name, "s"), -EINVAL);
    assert_int_equal(dnsview_add_host(v, "ok.test", "bad.site"), -EINVAL);
    assert_int_equal(dnsview_add_host(v, "ok.test", ""), -EINVAL);
    /* An unterminated name in a fixed buffer. */
    dns_zone_t z = zone("x", 2);
    memset(z.name, 'a', sizeof(z.name));
    assert_int_equal(dnsview_add_zone(v, &z), -EINVAL);

    /* Zones: answers 0 is the default; above DNS_ANSWERS_MAX is refused; one per name. */
    z = zone("example.test", 0);
    assert_int_equal(dnsview_add_zone(v, &z), 0);
    assert_int_equal(v->zones[0].answers, DNS_ANSWERS_DEFAULT);
    assert_int_equal(dnsview_add_zone(v, &z), -EEXIST);
    z = zone("other.test", DNS_ANSWERS_MAX + 1);
    assert_int_equal(dnsview_add_zone(v, &z), -EINVAL);
    z = zone("under_score.test", DNS_ANSWERS_MAX);
    assert_int_equal(dnsview_add_zone(v, &z), 0);

    /* PoPs: names are labels, locations in range, states not per query, ids and names once. */
    dns_pop_t p = pop_at(1, "par", "eu", true, PARIS);
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    assert_int_equal(dnsview_add_pop(v, &p), -EEXIST);
    p = pop_at(2, "par", "eu", true, PARIS);
    assert_int_equal(dnsview_add_pop(v, &p), -EEXIST);
    p = pop_at(1, "other", "eu", true, PARIS);
    assert_int_equal(dnsview_add_pop(v, &p), -EEXIST);
    struct {
        const char *name, *region;
        double lat, lon;
    } badpops[] = {
        {"a.b", "eu", 0, 0},  {"", "eu", 0, 0},    {"Par", "eu", 0, 0},      {"p", "e.u", 0, 0},
        {"p", "EU", 0, 0},    {"p", "eu", 91, 0},  {"p", "eu", -91, 0},      {"p", "eu", 0, 181},
        {"p", "eu", 0, -181}, {"p", "eu", NAN, 0}, {"p", "eu", 0, INFINITY},
    };
    for (size_t i = 0; i < sizeof(badpops) / sizeof(badpops[0]); i++) {
        p = pop_at(10 + i, badpops[i].name, badpops[i].region, true, badpops[i].lat,
                   badpops[i].lon);
        if (dnsview_add_pop(v, &p) != -EINVAL)
            fail_msg("pop %zu accepted", i);
    }
    p = pop_at(3, "noloc", "", false, 0, 999); /* no location: lat/lon are not read */
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    p = pop_at(4, "routed", "", false, 0, 0);
    p.state = DNS_EXCL_NO_ROUTE;
    assert_int_equal(dnsview_add_pop(v, &p), -EINVAL);
    p.state = DNS_EXCL_NO_ADDRESS;
    assert_int_equal(dnsview_add_pop(v, &p), -EINVAL);
    p.state = (enum dns_excl)99;
    assert_int_equal(dnsview_add_pop(v, &p), -EINVAL);
    p.state = DNS_EXCL_INGRESS_DOWN;
    assert_int_equal(dnsview_add_pop(v, &p), 0);

    /* Geo rules: prefix within the family, a region, a location in range; host bits cleared. */
    dns_geo_t g = geo("10.1.2.3/33", "eu", false, 0, 0);
    assert_int_equal(dnsview_add_geo(v, &g), -EINVAL);
    g = geo("2001:db8::/129", "eu", false, 0, 0);
    assert_int_equal(dnsview_add_geo(v, &g), -EINVAL);
    g = geo("10.0.0.0/8", "eu", false, 0, 0);
    g.family = 5;
    assert_int_equal(dnsview_add_geo(v, &g), -EINVAL);
    g = geo("10.0.0.0/8", "", false, 0, 0);
    assert_int_equal(dnsview_add_geo(v, &g), -EINVAL);
    g = geo("10.0.0.0/8", "eu", true, 95, 0);
    assert_int_equal(dnsview_add_geo(v, &g), -EINVAL);
    g = geo("10.255.2.3/12", "eu", false, 0, 0);
    g.addr[7] = 9; /* junk past an IPv4 address */
    assert_int_equal(dnsview_add_geo(v, &g), 0);
    static const uint8_t want[16] = {10, 240};
    assert_memory_equal(v->geos[v->ngeos - 1].addr, want, 16);
    g = geo("2001:db8:ffff::/33", "eu", false, 0, 0);
    assert_int_equal(dnsview_add_geo(v, &g), 0);
    static const uint8_t want6[16] = {0x20, 0x01, 0x0d, 0xb8, 0x80};
    assert_memory_equal(v->geos[v->ngeos - 1].addr, want6, 16);

    dnsview_finish(v, 1);
    assert_int_equal(v->self, 0);
    /* Nothing is added to a finished view. */
    z = zone("late.test", 2);
    assert_int_equal(dnsview_add_zone(v, &z), -EINVAL);
    p = pop_at(50, "late", "", false, 0, 0);
    assert_int_equal(dnsview_add_pop(v, &p), -EINVAL);
    assert_int_equal(dnsview_add_host(v, "late.test", "s"), -EINVAL);
    g = geo("10.0.0.0/8", "eu", false, 0, 0);
    assert_int_equal(dnsview_add_geo(v, &g), -EINVAL);
    dnsview_free(&v);
    assert_null(v);
    dnsview_free(&v);
    dnsview_free(NULL);
}

static void test_lookups(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    static const char *zones[] = {"sub.example.test", "example.test", "test2", "b.test2"};
    for (size_t i = 0; i < 4; i++) {
        dns_zone_t z = zone(zones[i], 2);
        assert_int_equal(dnsview_add_zone(v, &z), 0);
    }
    assert_int_equal(dnsview_add_host(v, "app.example.test", "site-b"), 0);
    assert_int_equal(dnsview_add_host(v, "api.example.test", "site-a"), 0);
    assert_int_equal(dnsview_add_host(v, "app.example.test", "site-a"), 0); /* duplicate */
    POP(v, 30, "zulu", "", PARIS);
    POP(v, 10, "alpha", "", PARIS);
    POP(v, 20, "mike", "", PARIS);
    dnsview_finish(v, 99);
    assert_int_equal(v->self, DNS_NONE);

    struct {
        const char *q, *zone;
    } cases[] = {
        {"example.test", "example.test"},
        {"a.example.test", "example.test"},
        {"x.y.example.test", "example.test"},
        {"sub.example.test", "sub.example.test"},
        {"a.sub.example.test", "sub.example.test"},
        {"xsub.example.test", "example.test"},
        {"xexample.test", NULL},
        {"example.test2", "test2"},
        {"test", NULL},
        {"", NULL},
        {"test2", "test2"},
        {"a.test2", "test2"},
        {"b.test2", "b.test2"},
        {"ab.test2", "test2"},
        {"a.b.test2", "b.test2"},
        {"com", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const dns_zone_t *z = dnsview_zone_of(v, cases[i].q);
        const char *got = z ? z->name : NULL;
        if ((got == NULL) != (cases[i].zone == NULL) || (got && strcmp(got, cases[i].zone) != 0))
            fail_msg("zone_of(\"%s\") = %s, want %s", cases[i].q, got ? got : "none",
                     cases[i].zone ? cases[i].zone : "none");
    }

    /* Hosts: sorted, the first added of a name wins. */
    assert_int_equal(v->nhosts, 2);
    const dns_host_t *h = dnsview_host(v, "app.example.test");
    assert_non_null(h);
    assert_string_equal(v->sites[h->site], "site-b");
    h = dnsview_host(v, "api.example.test");
    assert_non_null(h);
    assert_string_equal(v->sites[h->site], "site-a");
    assert_null(dnsview_host(v, "apx.example.test"));
    assert_null(dnsview_host(v, "example.test"));

    /* PoPs: sorted by id, found by name. */
    assert_true(v->pops[0].id == 10 && v->pops[1].id == 20 && v->pops[2].id == 30);
    assert_int_equal(dnsview_pop_by_name(v, "alpha"), 0);
    assert_int_equal(dnsview_pop_by_name(v, "mike"), 1);
    assert_int_equal(dnsview_pop_by_name(v, "zulu"), 2);
    assert_int_equal(dnsview_pop_by_name(v, "bravo"), DNS_NONE);
    assert_int_equal(dnsview_pop_by_name(v, ""), DNS_NONE);
    dnsview_free(&v);

    /* An empty view: no zone, no PoP, no answer. */
    v = dnsview_new();
    assert_null(dnsview_zone_of(v, "example.test"));
    dnsview_finish(v, 1);
    assert_null(dnsview_zone_of(v, "example.test"));
    assert_null(dnsview_host(v, "example.test"));
    assert_int_equal(dnsview_pop_by_name(v, "a"), DNS_NONE);
    dnsview_free(&v);
}

static void test_regions(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    POP(v, 1, "par", "eu", PARIS);
    POP(v, 2, "fra", "eu", FRANKFURT);
    dns_pop_t p = pop_at(3, "eu3", "eu", false, 0, 0);
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    p = pop_at(4, "lost", "", false, 0, 0);
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    p = pop_at(5, "dark", "nowhere", false, 0, 0);
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    dnsview_finish(v, 1);
    assert_int_equal(v->nregions, 2);
    assert_string_equal(v->regions[0].name, "eu");
    assert_true(v->regions[0].has_loc);
    assert_true(fabs(v->regions[0].lat - (48.8566 + 50.1109) / 2) < 1e-9);
    assert_true(fabs(v->regions[0].lon - (2.3522 + 8.6821) / 2) < 1e-9);
    assert_string_equal(v->regions[1].name, "nowhere");
    assert_false(v->regions[1].has_loc);
    /* A PoP without a location is at its region's centroid; without either, nowhere. */
    assert_true(v->pop_place[2].has_loc);
    assert_true(fabs(v->pop_place[2].lat - v->regions[0].lat) < 1e-12);
    assert_false(v->pop_place[3].has_loc);
    assert_int_equal(v->pop_place[3].region, DNS_NONE);
    assert_false(v->pop_place[4].has_loc);
    assert_int_equal(v->pop_place[4].region, 1);
    dnsview_free(&v);
}

/* ---- dnssel -------------------------------------------------------------------------------- */

static void test_exclusions(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    static const enum dns_excl states[] = {DNS_OK, DNS_EXCL_DEAD, DNS_EXCL_DRAINING,
                                           DNS_EXCL_NO_HEALTH, DNS_EXCL_INGRESS_DOWN};
    static const char *names[] = {"ok", "dead", "drain", "nohealth", "down"};
    for (size_t i = 0; i < 5; i++) {
        dns_pop_t p = pop_at(i + 1, names[i], "eu", true, PARIS);
        p.state = states[i];
        assert_int_equal(dnsview_add_pop(v, &p), 0);
    }
    dns_pop_t p = pop_at(6, "nov4", "eu", true, PARIS);
    p.has_v4 = false;
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    p = pop_at(7, "noroute", "eu", true, PARIS);
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    p = pop_at(8, "ok2", "us", true, NEWYORK);
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    assert_int_equal(dnsview_add_host(v, "app.example.test", "site"), 0);
    dnsview_finish(v, 1);
    for (size_t i = 0; i < v->npops; i++)
        if (strcmp(v->pops[i].name, "noroute") != 0)
            dnsview_set_reach(v, 0, i, true);
    dnsview_set_reach(v, 5, 0, true); /* out of range: ignored */
    dnsview_set_reach(v, 0, 99, true);

    dns_zone_t z = zone("example.test", 8);
    dns_client_t c = client("10.0.0.1/32", false);
    dns_pick_t pk;
    dns_explain_t ex;
    const dns_host_t *h = dnsview_host(v, "app.example.test");
    dnssel_pick(v, &z, h, "app.example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 2);
    assert_string_equal(picked(v, &pk), "ok ok2");
    static const enum dns_excl want[] = {DNS_OK,
                                         DNS_EXCL_DEAD,
                                         DNS_EXCL_DRAINING,
                                         DNS_EXCL_NO_HEALTH,
                                         DNS_EXCL_INGRESS_DOWN,
                                         DNS_EXCL_NO_ADDRESS,
                                         DNS_EXCL_NO_ROUTE,
                                         DNS_OK};
    for (size_t i = 0; i < 8; i++)
        if (ex.why[i] != want[i])
            fail_msg("%s: %s, want %s", v->pops[i].name, dns_excl_name(ex.why[i]),
                     dns_excl_name(want[i]));
    /* Every PoP in the order, the candidates first. */
    assert_int_equal(ex.norder, 8);
    assert_true(ex.why[ex.order[0]] == DNS_OK && ex.why[ex.order[1]] == DNS_OK);
    for (size_t i = 2; i < 8; i++)
        assert_true(ex.why[ex.order[i]] != DNS_OK);
    assert_string_equal(dns_excl_name(DNS_EXCL_NO_ROUTE), "no-route");
    assert_string_equal(dns_excl_name(DNS_OK), "ok");

    /* Not a host: routes do not matter. Without explain the answer is the same. */
    dns_pick_t pk2;
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk2, NULL);
    assert_string_equal(picked(v, &pk2), "ok ok2 noroute");
    dnssel_pick(v, &z, h, "app.example.test", 4, &c, &pk2, NULL);
    assert_int_equal(pk2.n, pk.n);
    assert_memory_equal(pk2.pops, pk.pops, pk.n * sizeof(pk.pops[0]));
    /* AAAA: nov4 has an IPv6 address. */
    dnssel_pick(v, &z, h, "app.example.test", 6, &c, &pk2, &ex);
    assert_int_equal(pk2.n, 3);
    assert_int_equal(ex.why[5], DNS_OK);
    /* Family 0: nobody. */
    dnssel_pick(v, &z, NULL, "example.test", 0, &c, &pk2, &ex);
    assert_int_equal(pk2.n, 0);
    assert_int_equal(ex.why[0], DNS_EXCL_NO_ADDRESS);
    dnsview_free(&v);
}

static void test_family(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    dns_pop_t p = pop_at(1, "only4", "eu", true, PARIS);
    p.has_v6 = false;
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    p = pop_at(2, "only6", "eu", true, PARIS);
    p.has_v4 = false;
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    p = pop_at(3, "none", "eu", true, PARIS);
    p.has_v4 = p.has_v6 = false;
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    dnsview_finish(v, 3);
    assert_string_equal(pick_names(v, "example.test", 4, "10.0.0.1/32", 8), "only4");
    assert_string_equal(pick_names(v, "example.test", 6, "10.0.0.1/32", 8), "only6");
    /* The client's family has nothing to do with the answer's. */
    assert_string_equal(pick_names(v, "example.test", 4, "2001:db8::1/128", 8), "only4");
    dnsview_free(&v);
}

static void test_region_first(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    POP(v, 1, "par", "eu", PARIS);
    POP(v, 2, "fra", "eu", FRANKFURT);
    POP(v, 3, "nyc", "us", NEWYORK);
    POP(v, 4, "ash", "us", ASHBURN);
    /* A client in region eu that sits in New York: its region still comes first. */
    GEO_AT(v, "10.0.0.0/8", "eu", NEWYORK);
    dnsview_finish(v, 3);
    dns_zone_t z = zone("example.test", 8);
    dns_client_t c = client("10.1.2.3/32", false);
    dns_pick_t pk;
    dns_explain_t ex;
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_string_equal(order(v, &ex), "par fra nyc ash");
    /* The answer: par, the best of the other region, then the rest in order. */
    assert_string_equal(picked(v, &pk), "par nyc fra ash");
    assert_string_equal(ex.region, "eu");
    assert_int_equal(ex.geo, 0);
    assert_true(ex.has_loc);
    assert_true(fabs(ex.lat - 40.7128) < 1e-9);
    assert_true(fabs(ex.dist_km[0] - dnssel_distance_km(NEWYORK, PARIS)) < 0.01);
    assert_true(ex.dist_km[2] < 0.01);
    dnsview_free(&v);
}

static void test_distance_order(void **state)
{
    (void)state;
    dns_view_t *v = world(1);
    /* asia (no PoP there) at Tokyo: Frankfurt 9,300 km, Paris 9,700, New York 10,850,
     * Ashburn 11,000. */
    assert_string_equal(pick_names(v, "example.test", 4, "30.0.0.1/32", 8), "fra nyc par ash");
    dns_zone_t z = zone("example.test", 8);
    dns_client_t c = client("30.0.0.1/32", false);
    dns_pick_t pk;
    dns_explain_t ex;
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_string_equal(order(v, &ex), "fra par nyc ash");
    assert_string_equal(ex.region, "asia");
    for (size_t i = 1; i < ex.norder; i++)
        assert_true(ex.dist_km[ex.order[i - 1]] <= ex.dist_km[ex.order[i]]);
    /* eu (no location in the rule): the client is at the eu centroid (49.48, 5.52), 237.6 km
     * from Frankfurt and 240.4 from Paris; us at New York. */
    assert_string_equal(pick_names(v, "example.test", 4, "10.0.0.1/32", 8), "fra nyc par ash");
    assert_string_equal(pick_names(v, "example.test", 4, "20.0.0.1/32", 8), "nyc par ash fra");
    /* answers = 1 and the zone's default (2): the closest, then one in another region. */
    assert_string_equal(pick_names(v, "example.test", 4, "20.0.0.1/32", 1), "nyc");
    assert_string_equal(pick_names(v, "example.test", 4, "20.0.0.1/32", 0), "nyc par");
    assert_string_equal(pick_names(v, "example.test", 4, "10.0.0.1/32", 2), "fra nyc");
    assert_string_equal(pick_names(v, "example.test", 4, "10.0.0.1/32", 4), "fra nyc par ash");
    dnsview_free(&v);
}

static void test_unknown_distance_last(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    POP(v, 1, "far", "", SINGAPORE);
    dns_pop_t p = pop_at(2, "unknown", "", false, 0, 0);
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    p = pop_at(3, "unknown2", "dark", false, 0, 0);
    assert_int_equal(dnsview_add_pop(v, &p), 0);
    POP(v, 4, "near", "", PARIS);
    GEO_AT(v, "10.0.0.0/8", "eu", LONDON);
    dnsview_finish(v, 2);
    dns_zone_t z = zone("example.test", 8);
    dns_client_t c = client("10.0.0.1/32", false);
    dns_pick_t pk;
    dns_explain_t ex;
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 4);
    assert_int_equal(strncmp(picked(v, &pk), "near far ", 9), 0);
    assert_true(strcmp(order(v, &ex), "near far unknown unknown2") == 0 ||
                strcmp(order(v, &ex), "near far unknown2 unknown") == 0);
    assert_true(ex.dist_km[1] < 0 && ex.dist_km[2] < 0);
    /* No location for the client at all (its region has none): only the hash orders. */
    dns_view_t *w = dnsview_new();
    POP(w, 1, "a", "", PARIS);
    POP(w, 2, "b", "", TOKYO);
    GEO(w, "10.0.0.0/8", "nowhere");
    dnsview_finish(w, 1);
    dnssel_pick(w, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 2);
    assert_false(ex.has_loc);
    assert_true(ex.dist_km[0] < 0 && ex.dist_km[1] < 0);
    dnsview_free(&w);
    dnsview_free(&v);
}

static void test_unmapped(void **state)
{
    (void)state;
    /* Unmapped (40/8 has no rule): the answering PoP first, then by distance from it; the
     * second answer in another region. */
    dns_view_t *v = world(3); /* self: nyc */
    assert_string_equal(pick_names(v, "example.test", 4, "40.0.0.1/32", 2), "nyc par");
    assert_string_equal(pick_names(v, "example.test", 4, "40.0.0.1/32", 8), "nyc par ash fra");
    dns_zone_t z = zone("example.test", 8);
    dns_client_t c = client("40.0.0.1/32", false);
    dns_pick_t pk;
    dns_explain_t ex;
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_string_equal(order(v, &ex), "nyc ash par fra");
    assert_int_equal(ex.geo, DNS_NONE);
    assert_string_equal(ex.region, "");
    assert_false(ex.has_loc);
    dnsview_free(&v);
    v = world(2); /* self: fra */
    assert_string_equal(pick_names(v, "example.test", 4, "40.0.0.1/32", 8), "fra nyc par ash");
    /* No client at all: unmapped. */
    dnssel_pick(v, &z, NULL, "example.test", 4, NULL, &pk, NULL);
    assert_string_equal(picked(v, &pk), "fra nyc par ash");
    /* Self not a candidate (draining): distances still from self's location. */
    dns_view_t *w = dnsview_new();
    dns_pop_t p = pop_at(1, "self", "eu", true, PARIS);
    p.state = DNS_EXCL_DRAINING;
    assert_int_equal(dnsview_add_pop(w, &p), 0);
    POP(w, 2, "ldn", "eu", LONDON);
    POP(w, 3, "tyo", "ap", TOKYO);
    POP(w, 4, "nyc", "us", NEWYORK);
    dnsview_finish(w, 1);
    assert_string_equal(pick_names(w, "example.test", 4, "40.0.0.1/32", 8), "ldn nyc tyo");
    dnsview_free(&w);
    /* A self not in the view: nothing first, no distances; every PoP still answers. */
    w = dnsview_new();
    POP(w, 1, "a", "eu", PARIS);
    POP(w, 2, "b", "us", NEWYORK);
    dnsview_finish(w, 77);
    dnssel_pick(w, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 2);
    assert_true(ex.dist_km[0] < 0);
    dnsview_free(&w);
    dnsview_free(&v);
}

static void test_host_reach(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    POP(v, 1, "par", "eu", PARIS);
    POP(v, 2, "nyc", "us", NEWYORK);
    POP(v, 3, "fra", "eu", FRANKFURT);
    assert_int_equal(dnsview_add_host(v, "none.example.test", "island"), 0);
    assert_int_equal(dnsview_add_host(v, "one.example.test", "site"), 0);
    GEO(v, "10.0.0.0/8", "eu");
    dnsview_finish(v, 1);
    size_t site = dnsview_host(v, "one.example.test")->site;
    dnsview_set_reach(v, site, dnsview_pop_by_name(v, "nyc"), true);
    dnsview_set_reach(v, site, dnsview_pop_by_name(v, "fra"), true);
    dns_zone_t z = zone("example.test", 2);
    dns_client_t c = client("10.0.0.1/32", false);
    dns_pick_t pk;
    dns_explain_t ex;
    dnssel_pick(v, &z, dnsview_host(v, "none.example.test"), "none.example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 0);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(ex.why[i], DNS_EXCL_NO_ROUTE);
    dnssel_pick(v, &z, dnsview_host(v, "one.example.test"), "one.example.test", 4, &c, &pk, &ex);
    assert_string_equal(picked(v, &pk), "fra nyc");
    assert_int_equal(ex.why[0], DNS_EXCL_NO_ROUTE);
    dnsview_set_reach(v, site, dnsview_pop_by_name(v, "fra"), false);
    dnssel_pick(v, &z, dnsview_host(v, "one.example.test"), "one.example.test", 4, &c, &pk, &ex);
    assert_string_equal(picked(v, &pk), "nyc");
    dnsview_free(&v);
}

/* Two views with the same content built in different orders, at different PoPs, give a
 * mapped client the same answer for every name. */
static void test_determinism(void **state)
{
    (void)state;
    dns_view_t *a = dnsview_new(), *b = dnsview_new();
    dns_pop_t pops[] = {
        pop_at(11, "par", "eu", true, PARIS),     pop_at(12, "par2", "eu", true, PARIS),
        pop_at(13, "fra", "eu", true, FRANKFURT), pop_at(14, "ldn", "eu", true, LONDON),
        pop_at(21, "nyc", "us", true, NEWYORK),   pop_at(22, "nyc2", "us", true, NEWYORK),
        pop_at(23, "ash", "us", true, ASHBURN),   pop_at(31, "sin", "ap", true, SINGAPORE),
        pop_at(32, "tyo", "ap", false, 0, 0),     pop_at(41, "x", "", false, 0, 0),
    };
    size_t n = sizeof(pops) / sizeof(pops[0]);
    dns_geo_t geos[] = {
        geo("10.0.0.0/8", "eu", false, 0, 0),    geo("10.1.0.0/16", "us", true, NEWYORK),
        geo("10.1.0.0/16", "ap", false, 0, 0), /* the same prefix twice */
        geo("2001:db8::/32", "ap", true, TOKYO), geo("0.0.0.0/0", "eu", true, LONDON),
    };
    size_t ng = sizeof(geos) / sizeof(geos[0]);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(dnsview_add_pop(a, &pops[i]), 0);
        assert_int_equal(dnsview_add_pop(b, &pops[n - 1 - i]), 0);
    }
    for (size_t i = 0; i < ng; i++) {
        assert_int_equal(dnsview_add_geo(a, &geos[i]), 0);
        assert_int_equal(dnsview_add_geo(b, &geos[ng - 1 - i]), 0);
    }
    dnsview_finish(a, 11);
    dnsview_finish(b, 31);
    static const char *clients[] = {"10.2.0.0/24", "10.1.7.7/32", "1.2.3.4/32", "2001:db8:5::/48",
                                    "::ffff:10.1.2.0/120"};
    for (unsigned answers = 1; answers <= DNS_ANSWERS_MAX; answers++) {
        dns_zone_t z = zone("example.test", answers);
        for (size_t ci = 0; ci < sizeof(clients) / sizeof(clients[0]); ci++) {
            dns_client_t c = client(clients[ci], true);
            for (int k = 0; k < 200; k++) {
                char name[64];
                snprintf(name, sizeof(name), "h%d.example.test", k);
                dns_pick_t pa, pb;
                dnssel_pick(a, &z, NULL, name, 4, &c, &pa, NULL);
                dnssel_pick(b, &z, NULL, name, 4, &c, &pb, NULL);
                assert_int_equal(pa.n, answers < 10 ? answers : 10);
                assert_int_equal(pa.n, pb.n);
                assert_int_equal(pa.scope, pb.scope);
                for (size_t i = 0; i < pa.n; i++)
                    if (a->pops[pa.pops[i]].id != b->pops[pb.pops[i]].id)
                        fail_msg("%s from %s: answer %zu differs", name, clients[ci], i);
            }
        }
    }
    /* Unmapped (no IPv6 rule for 2001:db9::): each PoP puts itself first. */
    dns_zone_t z = zone("example.test", 2);
    dns_client_t c = client("2001:db9::1/128", false);
    dns_pick_t pa, pb;
    dnssel_pick(a, &z, NULL, "example.test", 4, &c, &pa, NULL);
    dnssel_pick(b, &z, NULL, "example.test", 4, &c, &pb, NULL);
    assert_string_equal(a->pops[pa.pops[0]].name, "par");
    assert_string_equal(b->pops[pb.pops[0]].name, "sin");
    dnsview_free(&a);
    dnsview_free(&b);
}

/* Equal PoPs share names, and a PoP leaving moves only the names it held. */
static void test_rendezvous(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new(), *w = dnsview_new();
    POP(v, 1, "a", "eu", PARIS);
    POP(v, 2, "b", "eu", PARIS);
    POP(v, 3, "c", "eu", 48.8600, 2.3500); /* 400 m away: the same, in whole km */
    POP(w, 1, "a", "eu", PARIS);
    POP(w, 2, "b", "eu", PARIS);
    GEO_AT(v, "10.0.0.0/8", "eu", LONDON);
    GEO_AT(w, "10.0.0.0/8", "eu", LONDON);
    dnsview_finish(v, 1);
    dnsview_finish(w, 1);
    dns_zone_t z = zone("example.test", 1);
    dns_client_t c = client("10.0.0.1/32", false);
    unsigned wins[3] = {0}, moved = 0;
    for (int k = 0; k < 3000; k++) {
        char name[64];
        snprintf(name, sizeof(name), "n%d.example.test", k);
        dns_pick_t pv, pw;
        dnssel_pick(v, &z, NULL, name, 4, &c, &pv, NULL);
        dnssel_pick(w, &z, NULL, name, 4, &c, &pw, NULL);
        wins[pv.pops[0]]++;
        if (pv.pops[0] != 2 && pv.pops[0] != pw.pops[0])
            moved++;
    }
    print_message("rendezvous over 3000 names: %u %u %u\n", wins[0], wins[1], wins[2]);
    for (int i = 0; i < 3; i++)
        assert_true(wins[i] > 800 && wins[i] < 1200);
    assert_int_equal(moved, 0);
    dnsview_free(&v);
    dnsview_free(&w);
}

static unsigned scope_of(const dns_view_t *v, const char *cidr, const char **region)
{
    dns_zone_t z = zone("example.test", 2);
    dns_client_t c = client(cidr, true);
    dns_pick_t pk;
    dns_explain_t ex;
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    static char r[DNS_LABEL_MAX + 1];
    strcpy(r, ex.region);
    if (region)
        *region = r;
    return pk.scope;
}

static void test_ecs_scope(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    POP(v, 1, "par", "eu", PARIS);
    POP(v, 2, "nyc", "us", NEWYORK);
    GEO(v, "10.1.0.0/16", "eu");
    GEO(v, "10.1.2.0/24", "us");
    GEO(v, "2001:db8::/32", "eu");
    GEO(v, "2001:db8:ff00::/40", "us");
    dnsview_finish(v, 1);
    const char *r;
    struct {
        const char *client;
        unsigned scope;
        const char *region;
    } cases[] = {
        /* In the /16, outside the /24, sharing 23 bits with it: 24. */
        {"10.1.3.0/24", 24, "eu"},
        {"10.1.3.7/32", 24, "eu"},
        /* Sharing 22 (10.1.0.x): 23; 16 (10.1.128.x): 17. */
        {"10.1.0.0/24", 23, "eu"},
        {"10.1.128.0/24", 17, "eu"},
        /* In the /24: the /24. */
        {"10.1.2.0/24", 24, "us"},
        {"10.1.2.99/32", 24, "us"},
        /* Never longer than the source prefix. */
        {"10.1.3.0/20", 20, "eu"},
        {"10.1.2.0/22", 22, "eu"}, /* 10.1.0.0/22 is the source: the /16 matches */
        {"10.1.0.0/16", 16, "eu"},
        {"10.0.0.0/8", 8, ""},
        /* Unmapped: as long as it takes to leave every rule out. 11/8 shares 7 bits with
         * 10.1/16; 192.168/16 none. */
        {"11.0.0.0/24", 8, ""},
        {"192.168.1.0/24", 1, ""},
        {"0.0.0.0/0", 0, ""},
        /* IPv6, and an IPv4-mapped IPv6 client (IPv4 rules, 96 + the IPv4 scope). */
        {"2001:db8:1::/48", 33, "eu"}, /* 2001:db8:1:: vs 2001:db8:ff00::: 32 bits + 1 */
        {"2001:db8:80::/48", 33, "eu"},
        {"2001:db8:fe00::/48", 40, "eu"},
        {"2001:db8:ff01::/48", 40, "us"},
        {"::ffff:10.1.3.0/120", 120, "eu"},
        {"::ffff:10.1.2.0/120", 120, "us"},
        {"::ffff:10.1.128.0/120", 113, "eu"},
        /* Native IPv6 near ::ffff:0:0/96, where the IPv4 rules are. */
        {"::1/128", 81, ""},
        {"3000::/48", 4, ""}, /* vs 2001:db8::/32 (0010 vs 0011): 3 bits */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned s = scope_of(v, cases[i].client, &r);
        if (s != cases[i].scope || strcmp(r, cases[i].region) != 0)
            fail_msg("%s: scope %u region \"%s\", want %u \"%s\"", cases[i].client, s, r,
                     cases[i].scope, cases[i].region);
    }
    dnsview_free(&v);

    /* No rule of the client's family: 0 (the answer does not depend on the address). */
    v = dnsview_new();
    POP(v, 1, "par", "eu", PARIS);
    GEO(v, "2001:db8::/32", "eu");
    dnsview_finish(v, 1);
    assert_int_equal(scope_of(v, "10.1.3.0/24", NULL), 0);
    assert_int_equal(scope_of(v, "2001:db8::/56", &r), 32);
    assert_string_equal(r, "eu");
    dnsview_free(&v);
    v = dnsview_new();
    POP(v, 1, "par", "eu", PARIS);
    dnsview_finish(v, 1);
    assert_int_equal(scope_of(v, "10.1.3.0/24", NULL), 0);
    assert_int_equal(scope_of(v, "::ffff:10.1.3.0/120", NULL), 0);
    assert_int_equal(scope_of(v, "2001:db8::/56", NULL), 0);
    dnsview_free(&v);

    /* A /0 rule: everyone mapped; the scope only where a longer rule lies near. Longest
     * prefix wins over several lengths. */
    v = dnsview_new();
    POP(v, 1, "par", "eu", PARIS);
    GEO(v, "0.0.0.0/0", "eu");
    GEO(v, "10.0.0.0/8", "us");
    GEO(v, "10.1.0.0/16", "ap");
    GEO(v, "10.1.1.0/24", "eu");
    GEO(v, "10.1.1.128/25", "us");
    GEO(v, "10.1.1.129/32", "ap");
    dnsview_finish(v, 1);
    struct {
        const char *client;
        unsigned scope;
        const char *region;
    } more[] = {
        {"192.0.2.1/32", 1, "eu"},   {"10.9.0.0/24", 13, "us"}, {"10.1.9.0/24", 21, "ap"},
        {"10.1.1.0/24", 24, "eu"},   {"10.1.1.1/32", 25, "eu"}, {"10.1.1.130/32", 31, "us"},
        {"10.1.1.129/32", 32, "ap"},
    };
    for (size_t i = 0; i < sizeof(more) / sizeof(more[0]); i++) {
        unsigned s = scope_of(v, more[i].client, &r);
        if (s != more[i].scope || strcmp(r, more[i].region) != 0)
            fail_msg("%s: scope %u region \"%s\", want %u \"%s\"", more[i].client, s, r,
                     more[i].scope, more[i].region);
    }
    dnsview_free(&v);
}

/* The rule 10.0.(a >> 8).(a & 255) matches. */
static size_t geo_at(const dns_view_t *v, uint32_t a)
{
    dns_zone_t z = zone("example.test", 1);
    dns_client_t c;
    memset(&c, 0, sizeof(c));
    c.family = 4;
    c.addr[0] = 10;
    c.addr[2] = (uint8_t)(a >> 8);
    c.addr[3] = (uint8_t)a;
    c.plen = 32;
    dns_pick_t pk;
    dns_explain_t ex;
    dnssel_pick(v, &z, NULL, "x", 4, &c, &pk, &ex);
    return ex.geo;
}

/* The scope is right: every address in client/scope gets the same rule, and (where the scope
 * is below the source prefix) the prefix one bit longer on the other side gets another. */
static void test_ecs_scope_exhaustive(void **state)
{
    (void)state;
    dns_view_t *v = dnsview_new();
    POP(v, 1, "p", "eu", PARIS);
    /* Rules in 10.0.0.0/16 only, so /32 clients over 10.0.0.0/16 and its neighbours cover all
     * the cases; the rules are pseudo-random. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 40; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char cidr[32];
        unsigned plen = 17 + (unsigned)(x % 16);
        uint32_t a = (uint32_t)(x >> 20) & 0xffff;
        a &= (0xffffu << (32 - plen)) & 0xffff;
        snprintf(cidr, sizeof(cidr), "10.0.%u.%u/%u", a >> 8, a & 0xff, plen);
        char region[16];
        snprintf(region, sizeof(region), "r%d", i % 3);
        GEO(v, cidr, region);
    }
    GEO(v, "10.0.0.0/16", "base");
    dnsview_finish(v, 1);
    dns_zone_t z = zone("example.test", 1);
    for (uint32_t a = 0; a < 65536; a += 97) {
        dns_client_t c;
        memset(&c, 0, sizeof(c));
        c.family = 4;
        c.addr[0] = 10;
        c.addr[2] = (uint8_t)(a >> 8);
        c.addr[3] = (uint8_t)a;
        c.plen = 32;
        c.ecs = true;
        dns_pick_t pk;
        dns_explain_t ex;
        dnssel_pick(v, &z, NULL, "x", 4, &c, &pk, &ex);
        assert_true(pk.scope >= 16 && pk.scope <= 32);
        /* Every address in the scope block (sampled) matches the same rule. */
        uint32_t size = 1u << (32 - pk.scope), base = a & ~(size - 1);
        for (uint32_t off = 0; off<size; off += size> 64 ? size / 64 : 1) {
            if (geo_at(v, base + off) != ex.geo)
                fail_msg("10.0.%u.%u scope %u: 10.0.%u.%u gets another rule", a >> 8, a & 0xff,
                         pk.scope, (base + off) >> 8, (base + off) & 0xff);
        }
        if (geo_at(v, base + size - 1) != ex.geo)
            fail_msg("10.0.%u.%u scope %u: the block's end gets another rule", a >> 8, a & 0xff,
                     pk.scope);
        /* Minimal: the block one bit shorter holds an address with another rule: one of its
         * ends, or where a rule starts. */
        if (pk.scope > 16) {
            uint32_t bsize = size * 2, bbase = a & ~(bsize - 1);
            bool differs = geo_at(v, bbase) != ex.geo || geo_at(v, bbase + bsize - 1) != ex.geo;
            for (size_t i = 0; i < v->ngeos && !differs; i++) {
                uint32_t start = (uint32_t)v->geos[i].addr[2] << 8 | v->geos[i].addr[3];
                if (v->geos[i].family == 4 && start >= bbase && start < bbase + bsize)
                    differs = geo_at(v, start) != ex.geo;
            }
            if (!differs)
                fail_msg("10.0.%u.%u: scope %u is not minimal", a >> 8, a & 0xff, pk.scope);
        }
    }
    dnsview_free(&v);
}

static void test_edges(void **state)
{
    (void)state;
    dns_zone_t z = zone("example.test", 2);
    dns_client_t c = client("10.0.0.1/32", false);
    dns_pick_t pk;
    dns_explain_t ex;
    /* A view with no PoPs. */
    dns_view_t *v = dnsview_new();
    GEO(v, "10.0.0.0/8", "eu");
    dnsview_finish(v, 1);
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 0);
    assert_int_equal(ex.norder, 0);
    assert_int_equal(ex.geo, 0);
    assert_string_equal(ex.region, "eu");
    dnsview_free(&v);
    /* An unfinished view answers nothing. */
    v = dnsview_new();
    POP(v, 1, "a", "eu", PARIS);
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 0);
    dnsview_finish(v, 1);
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 1);
    /* No zone, no name, a client of no family: the defaults. */
    dnssel_pick(v, NULL, NULL, NULL, 4, &c, &pk, NULL);
    assert_int_equal(pk.n, 1);
    c.family = 0;
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 1);
    assert_int_equal(pk.scope, 0);
    dnsview_free(&v);
    /* More than 256 PoPs: the first 256 (by id) are considered. */
    v = dnsview_new();
    for (uint64_t i = 1; i <= 300; i++) {
        char name[16];
        snprintf(name, sizeof(name), "p%u", (unsigned)i);
        dns_pop_t p = pop_at(i, name, i % 2 ? "eu" : "us", true, i * 0.25, -(double)i * 0.5);
        if (i < 290)
            p.state = DNS_EXCL_DEAD;
        assert_int_equal(dnsview_add_pop(v, &p), 0);
    }
    dnsview_finish(v, 1);
    c = client("10.0.0.1/32", false);
    z = zone("example.test", 8);
    dnssel_pick(v, &z, NULL, "example.test", 4, &c, &pk, &ex);
    assert_int_equal(pk.n, 0);
    assert_int_equal(ex.norder, 256);
    dnsview_free(&v);
}

/* ns per pick (not an assertion: the sanitizer build is several times slower). */
static void test_bench(void **state)
{
    (void)state;
    static const unsigned sizes[] = {3, 10, 64, 256};
    for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
        dns_view_t *v = dnsview_new();
        for (unsigned i = 0; i < sizes[si]; i++) {
            char name[16], region[16];
            snprintf(name, sizeof(name), "p%u", i);
            snprintf(region, sizeof(region), "r%u", i % 5);
            dns_pop_t p = pop_at(1000 + i * 7, name, region, true, -60 + (int)(i * 37 % 120),
                                 -170 + (int)(i * 53 % 340));
            assert_int_equal(dnsview_add_pop(v, &p), 0);
        }
        for (unsigned i = 0; i < 200; i++) {
            char cidr[32], region[16];
            snprintf(cidr, sizeof(cidr), "%u.%u.0.0/16", 1 + i % 200, i);
            snprintf(region, sizeof(region), "r%u", i % 7);
            GEO(v, cidr, region);
        }
        dnsview_finish(v, 1000);
        dns_zone_t z = zone("example.test", 2);
        dns_client_t c = client("5.5.3.0/24", true);
        dns_pick_t pk;
        const int rounds = 2000000 / (int)sizes[si];
        double t0 = clock_mono_s();
        size_t sum = 0;
        for (int k = 0; k < rounds; k++) {
            c.addr[1] = (uint8_t)k;
            dnssel_pick(v, &z, NULL, k & 1 ? "www.example.test" : "example.test", 4, &c, &pk, NULL);
            sum += pk.n;
        }
        double t = clock_mono_s() - t0;
        assert_true(sum > 0);
        print_message("dnssel_pick: %3u PoPs, 200 geo rules: %.0f ns per pick\n", sizes[si],
                      t / rounds * 1e9);
        dnsview_free(&v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_distance),
        cmocka_unit_test(test_view_validation),
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_regions),
        cmocka_unit_test(test_exclusions),
        cmocka_unit_test(test_family),
        cmocka_unit_test(test_region_first),
        cmocka_unit_test(test_distance_order),
        cmocka_unit_test(test_unknown_distance_last),
        cmocka_unit_test(test_unmapped),
        cmocka_unit_test(test_host_reach),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_rendezvous),
        cmocka_unit_test(test_ecs_scope),
        cmocka_unit_test(test_ecs_scope_exhaustive),
        cmocka_unit_test(test_edges),
        cmocka_unit_test(test_bench),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
