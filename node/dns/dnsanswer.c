/* dnsanswer: the authoritative answer to one query (the contract and the name space are in
 * dnsanswer.h).
 *
 * BACKGROUND
 * A PoP's name server answers resolvers, not stub clients: they randomise qname case, send
 * EDNS with Client Subnet, retry over TCP on TC=1, and cache negative answers for the SOA
 * minimum. A name server on the open Internet is also a reflection amplifier for whoever can
 * spoof a source address: the answers here stay minimal (no authority section on positive
 * answers, RFC 8482 for ANY, one HINFO), the UDP size is capped at 1232 bytes, and the server
 * rate-limits per client network (dnsrrl.h).
 *
 * HOW
 * ldns parses the whole query into an ldns_pkt (it bounds-checks every length and pointer)
 * and writes the response from another ldns_pkt, with name compression. Between them, one
 * decision: classify the name (apex, host, PoP name, empty non-terminal, nothing), then the
 * type. The A/AAAA choice is dnssel_pick's; this file only turns its indexes into records.
 * Cost (test_dnsanswer's bench, Release build): 2.5 us per A query without ECS, 2.9 us with
 * (parse, pick, build, compress; mostly ldns's allocations and name compression). The target
 * is half of NSD's ~140k queries/s with the socket calls, i.e. about 14 us per query, so
 * there is no response cache: it would be a second way to get an answer wrong (stale view,
 * wrong scope) for a saving the server does not need.
 *
 * INVARIANTS
 *  - A response is at most the limit (UDP: 512, or the EDNS payload capped at 1232; TCP:
 *    65535) and at most outmax; over the limit it is the TC=1 form (question + OPT), never a
 *    cut packet.
 *  - Every response parses with ldns, has QR=1, the query's id and opcode, RA=0, and echoes
 *    the question as received when there was exactly one.
 *  - An ECS scope never exceeds the query's source prefix; it is 0 when the answer does not
 *    depend on the client. */
#include "node/dns/dnsanswer.h"

#include "node/dns/dnssel.h"

#include <ldns/ldns.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ECS_FAMILY_IPV4 1 /* RFC 7871 / IANA address family numbers */
#define ECS_FAMILY_IPV6 2
#define ECS_HEADER_LEN  4 /* family (2), source prefix (1), scope prefix (1) */
#define RCODE_BADVERS_HI 1 /* BADVERS = 16: extended rcode 1, header rcode 0 */

const char *dnsanswer_kind_name(enum dnsanswer_kind k)
{
    static const char *const names[DNSA_KINDS] = {
        [DNSA_DROP] = "drop",         [DNSA_ANSWER] = "answer",     [DNSA_NODATA] = "nodata",
        [DNSA_NXDOMAIN] = "nxdomain", [DNSA_REFUSED] = "refused",   [DNSA_FORMERR] = "formerr",
        [DNSA_NOTIMP] = "notimp",     [DNSA_BADVERS] = "badvers",
    };
    return (unsigned)k < DNSA_KINDS ? names[k] : "?";
}

/* ldns reports allocation failure as NULL; like xmalloc, we do not limp on without memory. */
static void *must(void *p)
{
    if (!p) {
        fputs("dnsanswer: out of memory in ldns\n", stderr);
        abort();
    }
    return p;
}

/* What one query is, once parsed, and the response being built. */
typedef struct qctx {
    const dns_view_t *v;
    ldns_pkt *q;           /* the parsed query (owned) */
    ldns_pkt *r;           /* the response (owned) */
    const ldns_rdf *qname; /* the question's name as received (borrowed from q) */
    uint16_t qtype;
    char name[LDNS_MAX_DOMAINLEN + 1]; /* qname lowercased, no trailing dot ("" = root) */
    size_t namelen;
    const dns_zone_t *zone;
    /* EDNS */
    bool edns;        /* exactly one OPT: the response carries OPT */
    uint16_t payload; /* bytes: the UDP limit we announce and respect */
    /* Client Subnet */
    bool ecs;
    uint16_t ecs_family; /* ECS_FAMILY_* */
    uint8_t ecs_source;  /* source prefix length */
    uint8_t ecs_addr[16];
    uint8_t ecs_addrlen; /* bytes: ceil(source / 8) */
    uint8_t scope;       /* the scope we echo */
    dns_client_t client; /* who dnssel sees */
} qctx_t;

/* ---- names ---------------------------------------------------------------------------- */

/* The question's name as a lowercase dotted string. A byte that cannot be part of a view's
 * name (NUL, or a '.' inside a label, which would read as a label boundary) becomes 0x01, so
 * "a\.b.zone" can never match host "a.b.zone" yet still lies inside "zone". ldns has already
 * checked the name's structure; the loop rechecks its bounds anyway. */
static bool name_to_str(const ldns_rdf *d, char *out, size_t outsz, size_t *outlen)
{
    const uint8_t *p = ldns_rdf_data(d);
    size_t n = ldns_rdf_size(d), pos = 0, o = 0;
    while (pos < n && p[pos] != 0) {
        size_t len = p[pos];
        if (len > DNS_LABEL_MAX || pos + 1 + len > n || o + len + 2 > outsz)
            return false;
        if (o > 0)
            out[o++] = '.';
        for (size_t i = 0; i < len; i++) {
            uint8_t c = p[pos + 1 + i];
            if (c >= 'A' && c <= 'Z')
                c = (uint8_t)(c - 'A' + 'a');
            else if (c == '.' || c == 0)
                c = 0x01;
            out[o++] = (char)c;
        }
        pos += 1 + len;
    }
    out[o] = '\0';
    *outlen = o;
    return true;
}

/* ldns dname from "LABEL.LABEL...": NULL when the result would be too long (the caller
 * skips the record; view names are checked when the view is built, so this is an edge). */
static ldns_rdf *dname(const char *s)
{
    return ldns_dname_new_frm_str(s);
}

static ldns_rdf *dname_join(const char *a, const char *b, const char *c)
{
    char buf[3 * (DNS_NAME_MAX + 2)];
    int n = snprintf(buf, sizeof(buf), "%s.%s%s%s", a, b, c ? "." : "", c ? c : "");
    if (n < 0 || (size_t)n >= sizeof(buf) || n > DNS_NAME_MAX)
        return NULL;
    return dname(buf);
}

/* s ends with "." suffix (strictly below it). */
static bool below(const char *s, size_t slen, const char *suffix, size_t sufflen)
{
    return slen > sufflen + 1 && s[slen - sufflen - 1] == '.' &&
           memcmp(s + slen - sufflen, suffix, sufflen) == 0;
}

/* ---- records -------------------------------------------------------------------------- */

static ldns_rr *rr_new(ldns_rr_type type, ldns_rdf *owner, uint32_t ttl)
{
    ldns_rr *rr = must(ldns_rr_new());
    ldns_rr_set_owner(rr, owner);
    ldns_rr_set_type(rr, type);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
    ldns_rr_set_ttl(rr, ttl);
    return rr;
}

static void push(qctx_t *c, ldns_pkt_section sec, ldns_rr *rr)
{
    if (!ldns_pkt_push_rr(c->r, sec, rr))
        must(NULL);
}

static ldns_rr *addr_rr(ldns_rdf *owner, uint8_t family, const dns_pop_t *p, uint32_t ttl)
{
    ldns_rr *rr = rr_new(family == 4 ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA, owner, ttl);
    ldns_rr_push_rdf(rr, must(family == 4 ? ldns_rdf_new_frm_data(LDNS_RDF_TYPE_A, 4, p->v4)
                                          : ldns_rdf_new_frm_data(LDNS_RDF_TYPE_AAAA, 16, p->v6)));
    return rr;
}

static ldns_rdf *pop_dname(const dns_pop_t *p, const dns_zone_t *z)
{
    return dname_join(p->name, "pop", z->name);
}

/* The SOA of zone z: see dnsanswer.h for MNAME. NULL only if the zone's name cannot be made
 * into a dname (a view the builder should have refused). */
static ldns_rr *soa_rr(const dns_view_t *v, const dns_zone_t *z)
{
    ldns_rdf *apex = dname(z->name);
    if (!apex)
        return NULL;
    ldns_rdf *mname = NULL;
    for (size_t i = 0; i < v->npops && !mname; i++) /* sorted by id: the first is the lowest */
        if (v->pops[i].serves_dns)
            mname = pop_dname(&v->pops[i], z);
    if (!mname)
        mname = must(ldns_rdf_clone(apex));
    ldns_rdf *rname = dname_join("hostmaster", z->name, NULL);
    if (!rname)
        rname = must(ldns_rdf_clone(apex));
    ldns_rr *rr = rr_new(LDNS_RR_TYPE_SOA, apex, z->ttl);
    ldns_rr_push_rdf(rr, mname);
    ldns_rr_push_rdf(rr, rname);
    ldns_rr_push_rdf(rr, must(ldns_native2rdf_int32(LDNS_RDF_TYPE_INT32, z->serial)));
    ldns_rr_push_rdf(rr, must(ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, DNSANSWER_SOA_REFRESH)));
    ldns_rr_push_rdf(rr, must(ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, DNSANSWER_SOA_RETRY)));
    ldns_rr_push_rdf(rr, must(ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, DNSANSWER_SOA_EXPIRE)));
    ldns_rr_push_rdf(rr, must(ldns_native2rdf_int32(LDNS_RDF_TYPE_PERIOD, z->ttl)));
    return rr;
}

/* ---- the answer ----------------------------------------------------------------------- */

/* What the question's name is inside its zone. */
enum node_kind { NODE_NONE, NODE_ENT, NODE_APEX, NODE_HOST, NODE_POP };

static enum node_kind classify(const qctx_t *c, const dns_host_t **host, size_t *pop)
{
    const dns_view_t *v = c->v;
    const char *zn = c->zone->name;
    size_t zlen = strlen(zn);
    *host = NULL;
    *pop = DNS_NONE;

    if (c->namelen > zlen) { /* below the apex: NAME.pop.ZONE? */
        size_t rel = c->namelen - zlen - 1; /* bytes before ".ZONE" */
        static const char pop_label[] = "pop";
        size_t pl = sizeof(pop_label) - 1;
        if (rel > pl + 1 && memcmp(c->name + rel - pl, pop_label, pl) == 0 &&
            c->name[rel - pl - 1] == '.') {
            size_t nl = rel - pl - 1;
            char pname[DNS_LABEL_MAX + 1];
            if (nl <= DNS_LABEL_MAX && !memchr(c->name, '.', nl)) {
                memcpy(pname, c->name, nl);
                pname[nl] = '\0';
                *pop = dnsview_pop_by_name(v, pname);
                if (*pop != DNS_NONE)
                    return NODE_POP;
            }
        }
        if (rel == pl && memcmp(c->name, pop_label, pl) == 0 && v->npops > 0)
            return NODE_ENT;
    }
    *host = dnsview_host(v, c->name);
    if (c->namelen == zlen)
        return NODE_APEX; /* and *host when the apex is also a resource host */
    if (*host)
        return NODE_HOST;
    /* An empty non-terminal: a host lies below the name. A linear scan, on the negative path
     * only; views hold one host per resource, not millions. */
    for (size_t i = 0; i < v->nhosts; i++)
        if (below(v->hosts[i].name, strlen(v->hosts[i].name), c->name, c->namelen))
            return NODE_ENT;
    for (size_t i = 0; i < v->ntxts; i++)
        if (below(v->txts[i].name, strlen(v->txts[i].name), c->name, c->namelen))
            return NODE_ENT;
    return NODE_NONE;
}

/* A/AAAA for the mesh (host NULL) or a resource host, chosen by dnssel. */
static enum dnsanswer_kind answer_pick(qctx_t *c, const dns_host_t *host, uint8_t family)
{
    dns_pick_t pick;
    memset(&pick, 0, sizeof(pick));
    dnssel_pick(c->v, c->zone, host, c->name, family, &c->client, &pick, NULL);
    if (c->ecs)
        c->scope = pick.scope < c->ecs_source ? pick.scope : c->ecs_source;
    size_t n = pick.n < DNS_ANSWERS_MAX ? pick.n : DNS_ANSWERS_MAX;
    for (size_t i = 0; i < n; i++) {
        if (pick.pops[i] >= c->v->npops)
            continue;
        push(c, LDNS_SECTION_ANSWER,
             addr_rr(must(ldns_rdf_clone(c->qname)), family, &c->v->pops[pick.pops[i]],
                     c->zone->ttl));
    }
    return ldns_pkt_ancount(c->r) > 0 ? DNSA_ANSWER : DNSA_NODATA;
}

static enum dnsanswer_kind answer_ns(qctx_t *c)
{
    const dns_view_t *v = c->v;
    for (size_t i = 0; i < v->npops; i++) {
        const dns_pop_t *p = &v->pops[i];
        if (!p->serves_dns)
            continue;
        ldns_rdf *target = pop_dname(p, c->zone);
        if (!target)
            continue;
        ldns_rr *ns = rr_new(LDNS_RR_TYPE_NS, must(ldns_rdf_clone(c->qname)), c->zone->ttl);
        ldns_rr_push_rdf(ns, target);
        push(c, LDNS_SECTION_ANSWER, ns);
        if (p->has_v4)
            push(c, LDNS_SECTION_ADDITIONAL,
                 addr_rr(must(ldns_rdf_clone(target)), 4, p, c->zone->ttl));
        if (p->has_v6)
            push(c, LDNS_SECTION_ADDITIONAL,
                 addr_rr(must(ldns_rdf_clone(target)), 6, p, c->zone->ttl));
    }
    return ldns_pkt_ancount(c->r) > 0 ? DNSA_ANSWER : DNSA_NODATA;
}

/* RFC 8482 section 4.2: a synthesised HINFO instead of every record of the name. */
static enum dnsanswer_kind answer_any(qctx_t *c)
{
    static const uint8_t cpu[] = "\007RFC8482", os[] = "\000";
    ldns_rr *rr = rr_new(LDNS_RR_TYPE_HINFO, must(ldns_rdf_clone(c->qname)), c->zone->ttl);
    ldns_rr_push_rdf(rr, must(ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, sizeof(cpu) - 1, cpu)));
    ldns_rr_push_rdf(rr, must(ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, sizeof(os) - 1, os)));
    push(c, LDNS_SECTION_ANSWER, rr);
    return DNSA_ANSWER;
}

/* The kind of answer for a query inside c->zone; fills the answer/additional sections (the
 * SOA of negative answers is added by the caller). */
/* The TXT records of a name that has them (ACME's DNS-01 answers): TXT, or NODATA. */
static enum dnsanswer_kind answer_txt(qctx_t *c, size_t first, size_t n)
{
    if (c->qtype == LDNS_RR_TYPE_ANY)
        return answer_any(c);
    if (c->qtype != LDNS_RR_TYPE_TXT)
        return DNSA_NODATA;
    for (size_t i = first; i < first + n; i++) {
        const char *val = c->v->txts[i].value;
        uint8_t str[DNS_TXT_MAX + 1];
        size_t vl = strlen(val);
        str[0] = (uint8_t)vl; /* dnsview_add_txt: 1..255 bytes */
        memcpy(str + 1, val, vl);
        ldns_rr *rr = rr_new(LDNS_RR_TYPE_TXT, must(ldns_rdf_clone(c->qname)), c->zone->ttl);
        ldns_rr_push_rdf(rr, must(ldns_rdf_new_frm_data(LDNS_RDF_TYPE_STR, vl + 1, str)));
        push(c, LDNS_SECTION_ANSWER, rr);
    }
    return DNSA_ANSWER;
}

static enum dnsanswer_kind answer_in_zone(qctx_t *c)
{
    const dns_host_t *host;
    size_t pop, tfirst;
    size_t ntxt = dnsview_txt(c->v, c->name, &tfirst);
    if (ntxt)
        return answer_txt(c, tfirst, ntxt);
    enum node_kind node = classify(c, &host, &pop);
    uint16_t t = c->qtype;

    if (node == NODE_NONE)
        return DNSA_NXDOMAIN;
    if (node == NODE_ENT)
        return DNSA_NODATA;
    if (t == LDNS_RR_TYPE_ANY)
        return answer_any(c);
    switch (node) {
    case NODE_APEX:
        if (t == LDNS_RR_TYPE_SOA) {
            ldns_rr *soa = soa_rr(c->v, c->zone);
            if (!soa)
                return DNSA_NODATA;
            push(c, LDNS_SECTION_ANSWER, soa);
            return DNSA_ANSWER;
        }
        if (t == LDNS_RR_TYPE_NS)
            return answer_ns(c);
        /* A/AAAA of the apex are the mesh's (or its host's) PoPs, as for a host */
        __attribute__((fallthrough));
    case NODE_HOST:
        if (t == LDNS_RR_TYPE_A)
            return answer_pick(c, host, 4);
        if (t == LDNS_RR_TYPE_AAAA)
            return answer_pick(c, host, 6);
        return DNSA_NODATA;
    case NODE_POP: {
        const dns_pop_t *p = &c->v->pops[pop];
        if ((t == LDNS_RR_TYPE_A && p->has_v4) || (t == LDNS_RR_TYPE_AAAA && p->has_v6)) {
            push(c, LDNS_SECTION_ANSWER,
                 addr_rr(must(ldns_rdf_clone(c->qname)), t == LDNS_RR_TYPE_A ? 4 : 6, p,
                         c->zone->ttl));
            return DNSA_ANSWER;
        }
        return DNSA_NODATA;
    }
    default:
        return DNSA_NXDOMAIN;
    }
}

/* ---- EDNS ----------------------------------------------------------------------------- */

/* The Client Subnet option's payload (RFC 7871 section 6). false: malformed (FORMERR). */
static bool ecs_parse(qctx_t *c, const uint8_t *d, size_t n)
{
    if (c->ecs || n < ECS_HEADER_LEN) /* RFC 7871: two ECS options are FORMERR too */
        return false;
    uint16_t family = (uint16_t)(d[0] << 8 | d[1]);
    uint8_t source = d[2];
    unsigned maxbits = family == ECS_FAMILY_IPV4 ? 32 : family == ECS_FAMILY_IPV6 ? 128 : 0;
    if (maxbits == 0 || source > maxbits)
        return false;
    size_t alen = (source + 7u) / 8u;
    if (n != ECS_HEADER_LEN + alen)
        return false;
    const uint8_t *a = d + ECS_HEADER_LEN;
    if (source % 8 && (a[alen - 1] & (0xffu >> (source % 8))))
        return false; /* bits past the prefix must be zero */
    c->ecs = true;
    c->ecs_family = family;
    c->ecs_source = source;
    c->ecs_addrlen = (uint8_t)alen;
    memcpy(c->ecs_addr, a, alen);
    memset(&c->client, 0, sizeof(c->client));
    c->client.family = family == ECS_FAMILY_IPV4 ? 4 : 6;
    memcpy(c->client.addr, a, alen);
    c->client.plen = source;
    c->client.ecs = true;
    return true;
}

/* Reads the query's OPT. Returns the kind to answer with right away (FORMERR, BADVERS), or
 * DNSA_ANSWER to go on. */
static enum dnsanswer_kind edns_read(qctx_t *c)
{
    /* ldns folds every OPT into the packet's EDNS fields and counts them in _edns_present
     * (no accessor); RFC 6891 section 6.1.1: more than one is FORMERR, answered without OPT. */
    c->payload = DNSANSWER_UDP_MIN;
    if (c->q->_edns_present > 1)
        return DNSA_FORMERR;
    if (c->q->_edns_present == 0)
        return DNSA_ANSWER;
    c->edns = true;
    uint16_t asked = ldns_pkt_edns_udp_size(c->q);
    c->payload = asked < DNSANSWER_UDP_MIN   ? DNSANSWER_UDP_MIN
                 : asked > DNSANSWER_UDP_MAX ? DNSANSWER_UDP_MAX
                                             : asked;
    if (ldns_pkt_edns_version(c->q) > 0)
        return DNSA_BADVERS;
    if (!ldns_pkt_edns_data(c->q))
        return DNSA_ANSWER;
    ldns_edns_option_list *opts = ldns_pkt_edns_get_option_list(c->q);
    if (!opts)
        return DNSA_FORMERR; /* an option overruns the RDATA */
    size_t n = ldns_edns_option_list_get_count(opts);
    for (size_t i = 0; i < n; i++) {
        ldns_edns_option *o = ldns_edns_option_list_get_option(opts, i);
        if (o && ldns_edns_get_code(o) == LDNS_EDNS_CLIENT_SUBNET &&
            !ecs_parse(c, ldns_edns_get_data(o), ldns_edns_get_size(o)))
            return DNSA_FORMERR;
    }
    return DNSA_ANSWER;
}

static void edns_write(qctx_t *c, enum dnsanswer_kind kind)
{
    ldns_pkt_set_edns_udp_size(c->r, c->payload);
    ldns_pkt_set_edns_version(c->r, 0);
    ldns_pkt_set_edns_z(c->r, 0); /* DO clear: no DNSSEC here */
    if (kind == DNSA_BADVERS)
        ldns_pkt_set_edns_extended_rcode(c->r, RCODE_BADVERS_HI);
    if (c->ecs && kind != DNSA_FORMERR && kind != DNSA_BADVERS) {
        uint8_t d[ECS_HEADER_LEN + 16];
        d[0] = (uint8_t)(c->ecs_family >> 8);
        d[1] = (uint8_t)c->ecs_family;
        d[2] = c->ecs_source;
        d[3] = c->scope;
        memcpy(d + ECS_HEADER_LEN, c->ecs_addr, c->ecs_addrlen);
        ldns_edns_option_list *l = must(ldns_edns_option_list_new());
        if (!ldns_edns_option_list_push(
                l, must(ldns_edns_new_from_data(LDNS_EDNS_CLIENT_SUBNET,
                                                ECS_HEADER_LEN + c->ecs_addrlen, d))))
            must(NULL);
        ldns_pkt_set_edns_option_list(c->r, l);
    }
    /* ldns writes OPT when any EDNS field is set; the payload (>= 512) always is. */
}

/* ---- writing -------------------------------------------------------------------------- */

static size_t write_out(const ldns_pkt *p, ldns_buffer *b, uint8_t *out, size_t limit)
{
    ldns_buffer_clear(b);
    if (ldns_pkt2buffer_wire(b, p) != LDNS_STATUS_OK || ldns_buffer_status(b) != LDNS_STATUS_OK)
        return 0;
    size_t n = ldns_buffer_position(b);
    if (n > limit)
        return 0;
    memcpy(out, ldns_buffer_begin(b), n);
    return n;
}

static void clear_section(ldns_pkt *p, ldns_pkt_section s)
{
    switch (s) {
    case LDNS_SECTION_ANSWER:
        ldns_rr_list_deep_free(ldns_pkt_answer(p));
        ldns_pkt_set_answer(p, must(ldns_rr_list_new()));
        break;
    case LDNS_SECTION_AUTHORITY:
        ldns_rr_list_deep_free(ldns_pkt_authority(p));
        ldns_pkt_set_authority(p, must(ldns_rr_list_new()));
        break;
    default:
        ldns_rr_list_deep_free(ldns_pkt_additional(p));
        ldns_pkt_set_additional(p, must(ldns_rr_list_new()));
        break;
    }
    ldns_pkt_set_section_count(p, s, 0);
}

/* Writes p within limit, or its TC=1 form (question and OPT only). 0: not even that fits. */
static size_t write_limited(ldns_pkt *p, uint8_t *out, size_t limit, bool *truncated)
{
    ldns_buffer *b = must(ldns_buffer_new(limit < 4096 ? limit + 64 : 4096));
    size_t n = write_out(p, b, out, limit);
    if (n == 0) {
        clear_section(p, LDNS_SECTION_ANSWER);
        clear_section(p, LDNS_SECTION_AUTHORITY);
        clear_section(p, LDNS_SECTION_ADDITIONAL);
        ldns_pkt_set_tc(p, true);
        *truncated = true;
        n = write_out(p, b, out, limit);
    }
    ldns_buffer_free(b);
    return n;
}

static uint8_t rcode_of(enum dnsanswer_kind k)
{
    switch (k) {
    case DNSA_NXDOMAIN: return LDNS_RCODE_NXDOMAIN;
    case DNSA_REFUSED: return LDNS_RCODE_REFUSED;
    case DNSA_FORMERR: return LDNS_RCODE_FORMERR;
    case DNSA_NOTIMP: return LDNS_RCODE_NOTIMPL;
    default: return LDNS_RCODE_NOERROR; /* ANSWER, NODATA, BADVERS (in the OPT) */
    }
}

/* Header-only FORMERR / NOTIMP for a query ldns could not parse: its id, opcode, RD and CD,
 * read from the 12-byte header with ldns's own accessors. */
static size_t answer_unparsable(const uint8_t *q, enum dnsanswer_kind kind, uint8_t *out,
                                size_t limit)
{
    ldns_pkt *r = must(ldns_pkt_new());
    ldns_pkt_set_id(r, LDNS_ID_WIRE(q));
    ldns_pkt_set_qr(r, true);
    ldns_pkt_set_opcode(r, (ldns_pkt_opcode)LDNS_OPCODE_WIRE(q));
    ldns_pkt_set_rd(r, LDNS_RD_WIRE(q) != 0);
    ldns_pkt_set_cd(r, LDNS_CD_WIRE(q) != 0);
    ldns_pkt_set_rcode(r, rcode_of(kind));
    bool tc = false;
    size_t n = write_limited(r, out, limit, &tc);
    ldns_pkt_free(r);
    return n;
}

size_t dnsanswer(const dns_view_t *v, const uint8_t *q, size_t qlen, const struct sockaddr *src,
                 bool tcp, uint8_t *out, size_t outmax, dnsanswer_info_t *info)
{
    dnsanswer_info_t dummy;
    if (!info)
        info = &dummy;
    memset(info, 0, sizeof(*info));
    info->kind = DNSA_DROP;
    if (!q || qlen < LDNS_HEADER_SIZE || LDNS_QR_WIRE(q))
        return 0; /* not a query: answering responses makes loops */

    qctx_t c;
    memset(&c, 0, sizeof(c));
    c.v = v;
    if (ldns_wire2pkt(&c.q, q, qlen) != LDNS_STATUS_OK) {
        enum dnsanswer_kind k =
            LDNS_OPCODE_WIRE(q) == LDNS_PACKET_QUERY ? DNSA_FORMERR : DNSA_NOTIMP;
        size_t lim = tcp ? DNSANSWER_TCP_MAX : DNSANSWER_UDP_MIN;
        size_t n = answer_unparsable(q, k, out, lim < outmax ? lim : outmax);
        info->kind = n ? k : DNSA_DROP;
        return n;
    }

    c.r = must(ldns_pkt_new());
    ldns_pkt_set_id(c.r, ldns_pkt_id(c.q));
    ldns_pkt_set_qr(c.r, true);
    ldns_pkt_set_opcode(c.r, ldns_pkt_get_opcode(c.q));
    ldns_pkt_set_rd(c.r, ldns_pkt_rd(c.q));
    ldns_pkt_set_cd(c.r, ldns_pkt_cd(c.q));

    /* The client dnssel sees unless ECS says otherwise: the resolver's own address. */
    if (src && src->sa_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)src;
        c.client.family = 4;
        memcpy(c.client.addr, &s4->sin_addr, 4);
        c.client.plen = 32;
    } else if (src && src->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)src;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) { /* a dual-stack listener's IPv4 client */
            c.client.family = 4;
            memcpy(c.client.addr, s6->sin6_addr.s6_addr + 12, 4);
            c.client.plen = 32;
        } else {
            c.client.family = 6;
            memcpy(c.client.addr, &s6->sin6_addr, 16);
            c.client.plen = 128;
        }
    } else {
        c.client.family = 4; /* no address: /0, which only a /0 geo rule maps */
    }

    enum dnsanswer_kind kind = DNSA_ANSWER;
    ldns_rr *question = NULL;
    if (ldns_pkt_qdcount(c.q) == 1 && ldns_rr_list_rr_count(ldns_pkt_question(c.q)) == 1) {
        question = ldns_rr_list_rr(ldns_pkt_question(c.q), 0);
        push(&c, LDNS_SECTION_QUESTION, must(ldns_rr_clone(question)));
        c.qname = ldns_rr_owner(question);
        c.qtype = (uint16_t)ldns_rr_get_type(question);
        info->qtype = c.qtype;
    }

    /* In order of precedence: the opcode, the question, then EDNS (which also sets the
     * payload every response, an error included, is limited to). */
    enum dnsanswer_kind ek = edns_read(&c);
    if (ldns_pkt_get_opcode(c.q) != LDNS_PACKET_QUERY)
        kind = DNSA_NOTIMP;
    else if (!question)
        kind = DNSA_FORMERR;
    else
        kind = ek;
    if (kind == DNSA_ANSWER) {
        uint16_t cls = (uint16_t)ldns_rr_get_class(question);
        if (c.qtype == LDNS_RR_TYPE_OPT)
            kind = DNSA_FORMERR; /* a pseudo-type cannot be asked for */
        else if (cls != LDNS_RR_CLASS_IN && cls != LDNS_RR_CLASS_ANY)
            kind = DNSA_REFUSED;
        else if (!name_to_str(c.qname, c.name, sizeof(c.name), &c.namelen) ||
                 !(c.zone = dnsview_zone_of(v, c.name)))
            kind = DNSA_REFUSED; /* not ours: never recursion */
        else if (c.qtype == LDNS_RR_TYPE_AXFR || c.qtype == LDNS_RR_TYPE_IXFR)
            kind = DNSA_REFUSED; /* the zones travel by gossip, not by zone transfer */
        else {
            ldns_pkt_set_aa(c.r, true);
            kind = answer_in_zone(&c);
            if (kind == DNSA_NXDOMAIN || kind == DNSA_NODATA) {
                ldns_rr *soa = soa_rr(v, c.zone);
                if (soa)
                    push(&c, LDNS_SECTION_AUTHORITY, soa);
            }
        }
    }

    ldns_pkt_set_rcode(c.r, rcode_of(kind));
    /* Multiple OPTs are FORMERR without OPT; any other answer to an OPT query carries one. */
    if (c.edns)
        edns_write(&c, kind);

    size_t limit = tcp ? DNSANSWER_TCP_MAX : c.payload;
    if (limit > outmax)
        limit = outmax;
    size_t n = write_limited(c.r, out, limit, &info->truncated);
    ldns_pkt_free(c.r);
    ldns_pkt_free(c.q);
    if (n == 0) {
        info->truncated = false;
        return 0;
    }
    info->kind = kind;
    info->ecs = c.ecs && kind != DNSA_FORMERR && kind != DNSA_BADVERS;
    info->scope = info->ecs ? c.scope : 0;
    return n;
}

size_t dnsanswer_slip(uint8_t *resp, size_t len)
{
    ldns_pkt *p = NULL;
    if (!resp || len < LDNS_HEADER_SIZE || ldns_wire2pkt(&p, resp, len) != LDNS_STATUS_OK)
        return 0;
    clear_section(p, LDNS_SECTION_ANSWER);
    clear_section(p, LDNS_SECTION_AUTHORITY);
    clear_section(p, LDNS_SECTION_ADDITIONAL);
    ldns_pkt_set_tc(p, true);
    ldns_pkt_set_aa(p, false);
    ldns_pkt_set_rcode(p, LDNS_RCODE_NOERROR); /* "retry over TCP", not a cacheable verdict */
    ldns_buffer *b = must(ldns_buffer_new(len + 64));
    size_t n = write_out(p, b, resp, len);
    ldns_buffer_free(b);
    ldns_pkt_free(p);
    return n;
}
