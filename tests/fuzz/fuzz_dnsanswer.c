/* Fuzzes the authoritative answer (node/dns/dnsanswer.h) with arbitrary bytes as the query,
 * against a small fixed view. Beyond "no crash, no out-of-bounds read", it checks what the
 * name server and the Internet rely on:
 *  - a response parses with ldns, has QR=1, RA=0 and the query's id;
 *  - over UDP it is at most 512 bytes without OPT and at most the announced payload (never
 *    above 1232) with OPT; over TCP at most 65535; never more than outmax;
 *  - its slip form (dnsanswer_slip) parses, is no longer, and carries TC=1.
 *
 * Input: byte 0 chooses the transport (bit 0: TCP), the source (bit 1: IPv6, bit 2: no
 * source) and a small outmax (bit 3); the rest is the query. */
#include "node/dns/dnsanswer.h"

#include <ldns/ldns.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static dns_view_t *view;

static void add_pop(uint64_t id, const char *name, const char *region, uint8_t last, bool dns,
                    enum dns_excl state)
{
    dns_pop_t p;
    memset(&p, 0, sizeof(p));
    p.id = id;
    strcpy(p.name, name);
    strcpy(p.region, region);
    p.has_v4 = true;
    p.v4[0] = 192, p.v4[1] = 0, p.v4[2] = 2, p.v4[3] = last;
    p.has_v6 = id % 2 == 1;
    p.v6[0] = 0x20, p.v6[1] = 0x01, p.v6[2] = 0x0d, p.v6[3] = 0xb8, p.v6[15] = last;
    p.has_loc = id != 3;
    p.lat = 10.0 * (double)id;
    p.lon = -5.0 * (double)id;
    p.serves_dns = dns;
    p.state = state;
    if (dnsview_add_pop(view, &p) != 0)
        abort();
}

static void build_view(void)
{
    view = dnsview_new();
    dns_zone_t z = {.name = "example.test", .ttl = 300, .answers = 2, .serial = 7};
    dns_zone_t z2 = {.name = "sub.example.test", .ttl = 60, .answers = 3, .serial = 1};
    if (!view || dnsview_add_zone(view, &z) || dnsview_add_zone(view, &z2))
        abort();
    add_pop(1, "ams", "eu", 1, true, DNS_OK);
    add_pop(2, "nyc", "us", 2, true, DNS_OK);
    add_pop(3, "sin", "ap", 3, false, DNS_EXCL_DEAD);
    add_pop(4, "fra", "eu", 4, true, DNS_EXCL_DRAINING);
    if (dnsview_add_host(view, "app.example.test", "s1") ||
        dnsview_add_host(view, "a.b.example.test", "s2") ||
        dnsview_add_host(view, "www.sub.example.test", "s1"))
        abort();
    dns_geo_t g = {.family = 4, .addr = {198, 51, 100}, .plen = 24, .region = "us"};
    dns_geo_t g6 = {.family = 6, .addr = {0x20, 0x01, 0x0d, 0xb8}, .plen = 32, .region = "eu",
                    .has_loc = true, .lat = 50, .lon = 8};
    if (dnsview_add_geo(view, &g) || dnsview_add_geo(view, &g6))
        abort();
    dnsview_finish(view, 2);
    for (size_t s = 0; s < view->nsites; s++)
        for (size_t p = 0; p < view->npops; p++)
            dnsview_set_reach(view, s, p, (s + p) % 3 != 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t out[DNSANSWER_TCP_MAX];
    if (!view)
        build_view();
    if (size < 1)
        return 0;
    bool tcp = data[0] & 1;
    struct sockaddr_in s4 = {.sin_family = AF_INET, .sin_addr = {htonl(0xc6336409)}};
    struct sockaddr_in6 s6 = {.sin6_family = AF_INET6,
                              .sin6_addr = {{{0x20, 0x01, 0x0d, 0xb8, [15] = 9}}}};
    const struct sockaddr *src = data[0] & 4   ? NULL
                                 : data[0] & 2 ? (const struct sockaddr *)&s6
                                               : (const struct sockaddr *)&s4;
    size_t outmax = data[0] & 8 ? (size_t)64 + data[0] : sizeof(out);
    const uint8_t *q = data + 1;
    size_t qlen = size - 1;

    dnsanswer_info_t info;
    size_t n = dnsanswer(view, q, qlen, src, tcp, out, outmax, &info);
    if (n == 0) {
        if (info.kind != DNSA_DROP)
            abort();
        return 0;
    }
    if (n > outmax || (tcp ? n > DNSANSWER_TCP_MAX : n > DNSANSWER_UDP_MAX) ||
        info.kind == DNSA_DROP || info.kind >= DNSA_KINDS)
        abort();
    ldns_pkt *p = NULL;
    if (ldns_wire2pkt(&p, out, n) != LDNS_STATUS_OK)
        abort();
    if (!ldns_pkt_qr(p) || ldns_pkt_ra(p) || ldns_pkt_id(p) != ((q[0] << 8) | q[1]))
        abort();
    if (!tcp) {
        size_t limit = ldns_pkt_edns(p) ? ldns_pkt_edns_udp_size(p) : DNSANSWER_UDP_MIN;
        if (limit < DNSANSWER_UDP_MIN || limit > DNSANSWER_UDP_MAX || n > limit)
            abort();
    }
    if (info.truncated && !ldns_pkt_tc(p))
        abort();
    if (info.ecs && info.scope > 128)
        abort();
    ldns_pkt_free(p);

    size_t m = dnsanswer_slip(out, n);
    if (m == 0 || m > n)
        abort();
    if (ldns_wire2pkt(&p, out, m) != LDNS_STATUS_OK || !ldns_pkt_tc(p) ||
        ldns_pkt_ancount(p) != 0)
        abort();
    ldns_pkt_free(p);
    return 0;
}
