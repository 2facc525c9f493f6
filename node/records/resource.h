/* resource: a service at a site, published on every PoP, as stored in the replicated store:
 * raw TCP, HTTP, or both.
 *
 *   resource/<name>   {name, site, targets: [str], tcp_port, health, sticky, created_ms,
 *                      host?, path_prefix?, auth?, allow_users?: [str], allow_groups?: [str],
 *                      no_https_redirect?: true, hsts?: uint (s), tls?: true, require_2fa?: true}
 *
 * A PoP listens on tcp_port (0 = none) and carries each accepted connection through the
 * site's tunnel to one of the targets ("host:port" as the site connector resolves it); health
 * says how the site checks a target: "tcp" (a connect succeeds) or "http:/PATH" (GET PATH
 * answers 2xx or 3xx); sticky keeps a client address on the same target while it stays healthy.
 *
 * With a host, the PoPs' HTTP ingress also serves the resource: a request whose Host is host
 * and whose path starts with path_prefix (default "/") goes to the targets
 * (resource_match_http picks the resource). auth "login" asks for a user session first and,
 * when allow_users or allow_groups is not empty, a user named there or in one of the groups
 * named there; auth "none" (the default) lets anyone through. A resource has a tcp_port, a
 * host, or both; the HTTP fields are written only when host is set, so a TCP-only record is
 * byte for byte what the first version wrote. With a host, plain HTTP requests are redirected
 * (308) to HTTPS when a certificate covers the host, unless no_https_redirect; hsts (seconds,
 * 0 = none) adds Strict-Transport-Security to answers over TLS. Both are written only when set,
 * so a record without them is byte for byte what the version before them wrote. tls (with a
 * tcp_port only) makes each PoP terminate TLS on tcp_port, the certificate chosen by SNI as
 * for HTTPS, and carry the plain stream to the target; written only when set, like them.
 *
 * HEALTH-CHECK SETTINGS, each optional and written only when set (so a record without them is
 * byte for byte what the version before wrote, and older readers skip them):
 *   hc_interval_ms? uint  ms between checks of a target, 100..86400000 (site default 1000)
 *   hc_timeout_ms?  uint  ms a check may take, 50..600000 (site default 800)
 *   hc_rise?, hc_fall? uint  consecutive successes / failures to flip, 1..1000 (2 / 1)
 *   hc_status?      str   http health only: the statuses that count as up, codes and
 *                         classes and ranges, "200,204,3xx,500-503" (default 200..399)
 *   hc_host?        str   http health only: the Host header sent (default the target)
 *
 * TARGETS IN SEVERAL SITES, each optional and written only when used (so a record of one site
 * with default priorities is byte for byte what the version before wrote):
 *   tmeta?    [[priority, weight], ...]   parallel to targets (the targets in `site`), written
 *                                         when one of them has a priority or weight not 1
 *   xtargets? [[site, addr, priority, weight], ...]  targets in other sites
 * A target is (site, addr): the same address may be a target in two sites (two private
 * networks). priority 1..RESOURCE_PRIORITY_MAX, lower first (an on-prem site 1, a cloud
 * standby 2); weight 1..RESOURCE_WEIGHT_MAX shares connections among the targets of one
 * priority. `site` is the site of the first target given and keeps its targets in `targets`,
 * so an older reader serves those (without failover) and never sends another site's
 * addresses to this one. In memory, targets[] holds every target, `site`'s first.
 *
 * WHERE ITS TRAFFIC MAY GO, each optional and written only when set (popd --label gives a
 * PoP labels; its region counts as one):
 *   transit_labels? [str]  the PoPs that may carry it at all: take the user's connection,
 *                          relay it, or be the egress to the site, must carry one of these
 *                          labels. Routes to its site avoid the others; with no allowed path
 *                          it is unreachable rather than carried elsewhere.
 *   ingress_labels? [str]  of those, the PoPs that may take users' connections (DNS answers,
 *                          listeners, the HTTP ingress): one of these labels.
 *
 * UDP, each written only when udp_port is set (the record of a TCP or HTTP resource is byte for
 * byte what the version before wrote):
 *   udp_port?      uint  every PoP listens on this UDP port and carries each client's datagrams
 *                        (one flow per client address and port) to a target over the tunnels
 *                        (docs/dataplane.md, "UDP resources"). A UDP resource has no tcp_port
 *                        (written as 0), no host and no tls; its targets are not health-checked.
 *                        An older reader refuses the record (tcp_port 0 without a host) and so
 *                        skips the resource rather than serve it as TCP.
 *   udp_idle?      uint  s a flow lives without a datagram either way, 1..RESOURCE_UDP_IDLE_MAX
 *                        (absent: RESOURCE_UDP_IDLE_DEFAULT)
 *   udp_max_flows? uint  flows of this resource one PoP carries at once, 1..RESOURCE_UDP_FLOWS_MAX
 *                        (absent: RESOURCE_UDP_FLOWS_DEFAULT)
 *
 * ACCESS LOG, optional and written only when not the default (older readers skip it):
 *   access_log? str  "off" or "sample:N" (N 2..1000000): which of the resource's requests and
 *                    connections the PoPs' access logs record (popd.conf access-log turns a
 *                    PoP's log on): none, or a random one in N; absent = every one.
 *
 * PROXY PROTOCOL, optional and written only when set (older readers skip it):
 *   proxy_protocol? uint  1 or 2: the site writes a PROXY protocol header of that version to
 *                         the target right after connecting, naming the client's address
 *                         and port as the ingress PoP saw it (node/site/proxyproto.h). TCP
 *                         only: it needs a tcp_port and no host (the HTTP ingress says who
 *                         the client is in X-Forwarded-For), and no tls origin.
 *
 * HTTPS ORIGINS, optional and written only when set (older readers skip them):
 *   origin_tls? uint     1: the site speaks TLS to the targets (resource add --target
 *                        https://HOST:PORT), SNI the target's host, the certificate checked
 *                        against the system store and origin_ca; 2: TLS without any
 *                        certificate check (--insecure-skip-verify, explicit and listed).
 *                        Not with an http: health check (it speaks plain HTTP).
 *   origin_ca?  bin 32   with origin_tls 1: the id (resource_ca_id) of a CA the targets'
 *                        certificates may chain to, stored apart as originca/<id hex>
 *                        {pem: str} so the resource stays small (it is copied per
 *                        connection) and INFO carries each CA once (node/site/origintls.h).
 *
 * REQUEST RULES, HTTP only (with a host), each optional and written only when set (older
 * readers skip them, and serve the resource without the rules):
 *   req_set?      [str]  "Name: value": the request header Name (every copy the client sent
 *                        is dropped) is sent with this value
 *   req_remove?   [str]  request header names dropped
 *   host_rewrite? str    the Host the application gets: a DNS name or IPv4 address, ":port"
 *                        optional
 *   strip_prefix? str    a path prefix ("/api") taken off the request's path when the path
 *                        starts with it on a segment boundary ("/api/x" -> "/x", "/api" -> "/")
 *   resp_set?     [str]  "Name: value" set on the responses (the application's copies dropped)
 *   resp_remove?  [str]  response header names dropped
 * At most RESOURCE_RULES_MAX of each list. Names are tokens of at most RESOURCE_HDR_NAME_MAX
 * bytes, values printable ASCII (tab allowed, no CR, LF or other control byte) of at most
 * RESOURCE_HDR_VALUE_MAX bytes, so a rule cannot inject a header or split a message. Refused
 * names (resource_check), compared without case and with '_' as '-': in requests Host (use
 * host_rewrite; it cannot be removed), Cookie and Authorization (the proxy handles them),
 * what only the proxy says (Remote-*, X-Popmesh-*, X-Forwarded-*, Forwarded, X-Real-IP); in
 * both directions the hop-by-hop and framing headers (Connection, Keep-Alive, Proxy-*, TE,
 * Trailer, Transfer-Encoding, Upgrade, Content-Length), which would let a rule smuggle; in
 * responses Set-Cookie may be removed but not set. A name is in one list of a direction at
 * most once. node/http/httprules applies them at the ingress PoP.
 *
 * Records come from other nodes through replication, so resource_parse treats them as
 * untrusted bytes: every field is bounds-checked and resource_check's rules are applied, so a
 * record that decodes is one resource.add would have accepted. Unknown fields are skipped, a
 * record missing a required field is refused.
 *
 * tcp_port, and the pair (host, path_prefix), are unique among resources as far as one node
 * can enforce it (resource.add refuses one in use). Two resources added on two nodes at the
 * same moment can still share one once both replicate; whoever serves them resolves that the
 * same way everywhere: the resource with the smaller created_ms, then the smaller name, wins. */
#ifndef POPMESH_NODE_RECORDS_RESOURCE_H
#define POPMESH_NODE_RECORDS_RESOURCE_H

#include "node/nodecfg.h"
#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESOURCE_PREFIX        "resource/"
#define RESOURCE_RULES_MAX     8   /* entries in each of req_set, req_remove, resp_set, resp_remove */
#define RESOURCE_HDR_NAME_MAX  64  /* bytes of a header name in a rule */
#define RESOURCE_HDR_VALUE_MAX 256 /* bytes of a header value in a rule */
#define RESOURCE_CA_PREFIX     "originca/"
#define RESOURCE_CA_MAX        8192 /* bytes of an origin CA (PEM) */
#define RESOURCE_CA_KEY_MAX    (sizeof(RESOURCE_CA_PREFIX) + 64) /* with the NUL */
#define RESOURCE_TARGETS_MAX   16
#define RESOURCE_HTTP_PATH_MAX 200                          /* bytes of the PATH in "http:/PATH" */
#define RESOURCE_HEALTH_MAX    (5 + RESOURCE_HTTP_PATH_MAX) /* bytes of "http:" + PATH */
#define RESOURCE_KEY_MAX       (sizeof(RESOURCE_PREFIX) + NODECFG_NAME_MAX) /* with the NUL */
#define RESOURCE_HOST_MAX      253 /* bytes of a DNS name */
#define RESOURCE_PREFIX_MAX    200 /* bytes of path_prefix */
#define RESOURCE_ALLOW_MAX     32  /* names in allow_users, and in allow_groups */
#define RESOURCE_HSTS_MAX      63072000 /* s: two years, the longest max-age worth asking for */

/* Health-check settings; the ranges are node/site/healthcheck.h's, with floors. */
#define RESOURCE_HC_STATUS_MAX    16  /* items (codes, classes, ranges) in hc_status */
#define RESOURCE_HC_STATUS_STR    128 /* bytes of hc_status as text, with the NUL */
#define RESOURCE_HC_HOST_MAX      (RESOURCE_HOST_MAX + 6) /* bytes of hc_host: name and ":port" */
#define RESOURCE_HC_INTERVAL_MIN  100u                    /* ms */
#define RESOURCE_HC_INTERVAL_MAX  86400000u               /* ms */
#define RESOURCE_HC_TIMEOUT_MIN   50u                     /* ms */
#define RESOURCE_HC_TIMEOUT_MAX   600000u                 /* ms */
#define RESOURCE_HC_RISE_FALL_MAX 1000u
#define RESOURCE_PRIORITY_MAX     100u  /* priorities are 1..100, 1 first */
#define RESOURCE_WEIGHT_MAX       1000u /* weights are 1..1000 */
#define RESOURCE_LABELS_MAX       8     /* labels in transit_labels */
#define RESOURCE_ACCESS_LOG_OFF   UINT32_MAX /* access_log: none of its events */
#define RESOURCE_ACCESS_LOG_MAX   1000000u   /* access_log: the largest N of sample:N */
#define RESOURCE_ACCESS_LOG_STR   24 /* bytes of "sample:N" with the NUL, N any uint32 (the compiler checks) */
#define RESOURCE_UDP_IDLE_DEFAULT  30u    /* s: a UDP flow's idle timeout when udp_idle is absent */
#define RESOURCE_UDP_IDLE_MAX      3600u  /* s */
#define RESOURCE_UDP_FLOWS_DEFAULT 4096u  /* UDP flows per resource and PoP when absent */
#define RESOURCE_UDP_FLOWS_MAX     65536u /* the data plane's stream limit per tunnel */
/* The scheme a UDP resource's targets carry in the data plane's OPEN and INFO ("udp://HOST:PORT",
 * node/dataplane/sitemsg.h); the record stores them without it. */
#define RESOURCE_UDP_SCHEME     "udp://"
#define RESOURCE_UDP_SCHEME_LEN 6

enum resource_health {
    RESOURCE_HEALTH_TCP = 0, /* "tcp": connecting is enough */
    RESOURCE_HEALTH_HTTP,    /* "http:/PATH": GET PATH must answer 2xx or 3xx */
};

enum resource_origin_tls {
    RESOURCE_ORIGIN_PLAIN = 0,        /* plain TCP to the targets */
    RESOURCE_ORIGIN_TLS = 1,          /* TLS, certificate checked */
    RESOURCE_ORIGIN_TLS_INSECURE = 2, /* TLS, no certificate check (--insecure-skip-verify) */
};

enum resource_auth {
    RESOURCE_AUTH_NONE = 0, /* "none": anyone */
    RESOURCE_AUTH_LOGIN,    /* "login": a user session, limited by allow_users/allow_groups */
};

/* A header a rule sets. */
typedef struct resource_hdr {
    char name[RESOURCE_HDR_NAME_MAX + 1];
    char value[RESOURCE_HDR_VALUE_MAX + 1];
} resource_hdr_t;

/* HTTP statuses lo..hi (both included, 100 <= lo <= hi <= 599). */
typedef struct resource_code_range {
    uint16_t lo, hi;
} resource_code_range_t;

typedef struct resource {
    char name[NODECFG_NAME_MAX + 1];                          /* unique in the mesh */
    char site[NODECFG_NAME_MAX + 1]; /* the site of the first target (the one serving it
                                      * when it has one site) */
    char targets[RESOURCE_TARGETS_MAX][NODECFG_ADDR_MAX + 1]; /* "host:port", port != 0 */
    unsigned ntargets;                                        /* 1..RESOURCE_TARGETS_MAX */
    /* Per target; read them through resource_target_site/_priority/_weight. */
    char tsite[RESOURCE_TARGETS_MAX][NODECFG_NAME_MAX + 1]; /* "" = site */
    uint8_t tprio[RESOURCE_TARGETS_MAX];                    /* 0 = 1 */
    uint16_t tweight[RESOURCE_TARGETS_MAX];                 /* 0 = 1 */
    uint16_t tcp_port;                                        /* on every PoP; 0 = none */
    enum resource_health health;
    char http_path[RESOURCE_HTTP_PATH_MAX + 1]; /* RESOURCE_HEALTH_HTTP: "/..."; else "" */
    bool sticky;                                /* same client address, same target */
    uint64_t created_ms;                        /* Unix ms */
    /* HTTP; all empty/zero when host is "". */
    char host[RESOURCE_HOST_MAX + 1];          /* lowercase DNS name; "" = no HTTP */
    char path_prefix[RESOURCE_PREFIX_MAX + 1]; /* "/..." ("/" by default) with a host, else "" */
    enum resource_auth auth;
    char allow_users[RESOURCE_ALLOW_MAX][NODECFG_NAME_MAX + 1];  /* auth login only */
    unsigned nallow_users;                                       /* 0..RESOURCE_ALLOW_MAX */
    char allow_groups[RESOURCE_ALLOW_MAX][NODECFG_NAME_MAX + 1]; /* auth login only */
    unsigned nallow_groups;                                      /* 0..RESOURCE_ALLOW_MAX */
    bool no_https_redirect; /* plain HTTP is served, not redirected to HTTPS */
    uint32_t hsts_s;        /* s: Strict-Transport-Security max-age; 0 = none */
    bool tls;               /* TLS is terminated on tcp_port (which it needs) */
    /* Health-check settings; 0 / empty = the site's default. */
    uint32_t hc_interval_ms; /* ms: 0 or RESOURCE_HC_INTERVAL_MIN..MAX */
    uint32_t hc_timeout_ms;  /* ms: 0 or RESOURCE_HC_TIMEOUT_MIN..MAX */
    uint32_t hc_rise;        /* 0 or 1..RESOURCE_HC_RISE_FALL_MAX */
    uint32_t hc_fall;        /* 0 or 1..RESOURCE_HC_RISE_FALL_MAX */
    resource_code_range_t hc_status[RESOURCE_HC_STATUS_MAX]; /* http health only */
    unsigned nhc_status;                                     /* 0 = 200..399 */
    char hc_host[RESOURCE_HC_HOST_MAX + 1]; /* http health only: "name[:port]"; "" = target */
    /* PoPs its traffic may enter or cross: one of these labels; none = any PoP. */
    char transit_labels[RESOURCE_LABELS_MAX][NODECFG_NAME_MAX + 1];
    unsigned ntransit_labels;
    /* PoPs users may connect to for it: one of these labels (and a transit one); none = any. */
    char ingress_labels[RESOURCE_LABELS_MAX][NODECFG_NAME_MAX + 1];
    unsigned ningress_labels;
    /* Access log: 0 = every request and connection (the default), RESOURCE_ACCESS_LOG_OFF =
     * none, else N (2..RESOURCE_ACCESS_LOG_MAX): a random one in N. */
    uint32_t access_log;
    /* require_2fa?: true (with host and auth login; written only when set): users sign in with
     * a second factor (node/auth/totp.h); a user without one is refused, and so are API keys. */
    bool require_2fa;
    /* proxy_protocol?: the PROXY protocol version the site writes to the target (1 or 2), 0 =
     * none. */
    uint8_t proxy_protocol;
    /* UDP (see above); all 0 for a TCP or HTTP resource. */
    uint16_t udp_port;      /* on every PoP; 0 = not a UDP resource */
    uint32_t udp_idle_s;    /* s: 0 = RESOURCE_UDP_IDLE_DEFAULT, else 1..RESOURCE_UDP_IDLE_MAX */
    uint32_t udp_max_flows; /* 0 = RESOURCE_UDP_FLOWS_DEFAULT, else 1..RESOURCE_UDP_FLOWS_MAX */
    /* origin_tls?, origin_ca?: how the site reaches the targets (enum resource_origin_tls),
     * and the id of their CA (originca/), has_origin_ca saying whether there is one. */
    uint8_t origin_tls;
    bool has_origin_ca;
    uint8_t origin_ca[32];
    /* Request rules (HTTP only; see REQUEST RULES above). */
    resource_hdr_t req_set[RESOURCE_RULES_MAX];
    unsigned nreq_set;
    char req_remove[RESOURCE_RULES_MAX][RESOURCE_HDR_NAME_MAX + 1];
    unsigned nreq_remove;
    resource_hdr_t resp_set[RESOURCE_RULES_MAX];
    unsigned nresp_set;
    char resp_remove[RESOURCE_RULES_MAX][RESOURCE_HDR_NAME_MAX + 1];
    unsigned nresp_remove;
    char host_rewrite[RESOURCE_HOST_MAX + 7]; /* "" = the client's Host */
    char strip_prefix[RESOURCE_PREFIX_MAX + 1]; /* "" = none */
} resource_t;

/* "resource/<name>" into out (RESOURCE_KEY_MAX bytes suffice); 0, or -EINVAL if name is
 * not a valid name or the key does not fit in len. */
int resource_key(const char *name, char *out, size_t len);

/* Parses a health spec ("tcp" or "http:/PATH", PATH printable ASCII without spaces, starting
 * with '/', at most RESOURCE_HTTP_PATH_MAX bytes) into r->health and r->http_path.
 * 0 or -EINVAL with a reason in *why (a static string). */
int resource_health_parse(const char *s, size_t len, resource_t *r, const char **why);
/* The health spec as text ("tcp", "http:/PATH"); out should hold RESOURCE_HEALTH_MAX + 1. */
void resource_health_str(const resource_t *r, char *out, size_t len);

/* Parses an hc_status list: comma-separated items, each a code ("204"), a class ("3xx") or a
 * range ("500-503"), codes from 100 to 599, at most RESOURCE_HC_STATUS_MAX items, no spaces.
 * Into r->hc_status / r->nhc_status. 0 or -EINVAL with a reason in *why (why_buf). */
int resource_hc_status_parse(const char *s, size_t len, resource_t *r, char *why_buf,
                             size_t why_len, const char **why);
/* The list as text in the form the parser reads ("200,3xx,500-503"), "" when empty; out should
 * hold RESOURCE_HC_STATUS_STR. */
void resource_hc_status_str(const resource_t *r, char *out, size_t len);
/* True when the resource sets any health-check setting. */
bool resource_hc_set(const resource_t *r);

/* Target i's site (its tsite, or site), priority (1 when unset) and weight (1 when unset). */
const char *resource_target_site(const resource_t *r, unsigned i);
unsigned resource_target_priority(const resource_t *r, unsigned i);
unsigned resource_target_weight(const resource_t *r, unsigned i);
/* True when some target is in another site than r->site. */
bool resource_multisite(const resource_t *r);
/* True when target i is in site. */
bool resource_target_in(const resource_t *r, unsigned i, const char *site);

/* True when a PoP with node record n may carry r's traffic (transit_labels), and, with
 * ingress, take its users' connections too (ingress_labels). */
struct reg_node;
bool resource_pop_allowed(const resource_t *r, const struct reg_node *n, bool ingress);

/* "on", "off" or "sample:N" (N 1..RESOURCE_ACCESS_LOG_MAX; sample:1 is on) into *out (the
 * access_log field's value); 0 or -EINVAL. */
int resource_access_log_parse(const char *s, size_t len, uint32_t *out);
/* The access_log value as that text ("on", "off", "sample:N"); out holds
 * RESOURCE_ACCESS_LOG_STR. */
void resource_access_log_str(uint32_t v, char *out, size_t len);
/* One in how many of r's events the access log records: 0 = none, 1 = every one, N. */
uint32_t resource_access_log_one_in(const resource_t *r);

/* "off", "v1" or "v2" into *out (the proxy_protocol field: 0, 1, 2); 0 or -EINVAL. */
int resource_proxy_protocol_parse(const char *s, size_t len, uint8_t *out);
/* "off", "v1" or "v2". */
const char *resource_proxy_protocol_str(uint8_t v);

/* An origin CA's id: a 32-byte BLAKE2b hash of its PEM text. */
void resource_ca_id(const char *pem, size_t len, uint8_t id[32]);
/* "originca/<id as 64 hex digits>" into out (RESOURCE_CA_KEY_MAX bytes). */
void resource_ca_key(const uint8_t id[32], char *out, size_t len);
/* Checks an origin CA's text: 1..RESOURCE_CA_MAX bytes of printable ASCII and line ends,
 * starting with a PEM certificate ("-----BEGIN CERTIFICATE-----"). 0 or -EINVAL with why. */
int resource_ca_check(const char *pem, size_t len, const char **why);
/* The originca/ record: {pem: str}. */
void resource_ca_pack(msgpack_packer *pk, const char *pem, size_t len);
/* Decodes an originca/ record into pem (cap bytes, NUL-terminated), checked as above and
 * against id (the key's). 0 or -EBADMSG with why. */
int resource_ca_parse(const uint8_t *buf, size_t len, const uint8_t id[32], char *pem, size_t cap,
                      const char **why);

/* "Name: value" (spaces and tabs around the value dropped) into *out. 0 or -EINVAL with why;
 * the name and value rules are resource_check's. */
int resource_hdr_parse(const char *s, size_t len, resource_hdr_t *out, const char **why);
/* True when r has any request rule. */
bool resource_rules_set(const resource_t *r);

/* "none" or "login" into *auth; 0 or -EINVAL. */
int resource_auth_parse(const char *s, size_t len, enum resource_auth *auth);
/* "none" or "login". */
const char *resource_auth_str(enum resource_auth auth);

/* Checks every field against the rules above (names, 1..16 targets that
 * nodecfg_check_addr accepts with a nonzero port, distinct as (site, address), each target's
 * site a valid name and at least one target in `site`, priorities 1..100, weights 1..1000, a tcp_port or a host or both, health; with
 * a host: 1..253 bytes of dot-separated labels of 1..63 of a-z, 0-9 and '-' not starting or
 * ending with '-' (or "*." and such a name of two labels or more: a wildcard host, which
 * resource_match_http matches one label deep, for paths no exact host's resource serves), a
 * path_prefix of printable ASCII starting with '/' without spaces, '?' or
 * '#' of at most 200 bytes, auth, and allow_users/allow_groups of distinct valid names only
 * with auth login; without a host, none of those; the health-check settings in their ranges,
 * hc_status and hc_host only with an http health, hc_host a DNS name or IPv4 address with an
 * optional ":port"). 0 or -EINVAL with a reason in why,
 * formatted into why_buf (which it points to) so it can name the bad value. */
int resource_check(const resource_t *r, char *why_buf, size_t why_len, const char **why);
/* The checks that need the mesh (resource.add): r's tcp_port is no PoP's mesh or tunnel port
 * (from the registry), and no target is an ingress of the mesh: the host of a PoP's mesh or
 * tunnel address (0.0.0.0 and :: count as loopback) with a port the mesh listens on there
 * (that PoP's mesh or tunnel port, r's own tcp_port or another resource's, from others). A
 * stream to such a target re-enters the mesh and loops. Addresses the registry does not know
 * (a PoP's ingress_address, its HTTP port, another name for the same machine) cannot be
 * checked here: the data plane cuts those loops at run time. 0, -EINVAL with the reason in
 * *why (why_buf), or the store's error. */
int resource_check_mesh(store_t *store, const resource_t *r, const resource_t *others,
                        size_t nothers, char *why_buf, size_t why_len, const char **why);

/* The record as a msgpack map (also the shape of one resource in control answers). */
void resource_pack(msgpack_packer *pk, const resource_t *r);
/* Decodes a record stored under resource/<name>: 0 or -EBADMSG with a reason in *why (a
 * static string, or why_buf). The record's name must equal name (the key's). */
int resource_parse(const uint8_t *buf, size_t len, const char *name, resource_t *r, char *why_buf,
                   size_t why_len, const char **why);

/* The resource of v[0..n) that serves an HTTP request for host (the Host header, compared
 * without case and without a ":port" suffix or a trailing '.') and path (the request target's
 * path; a '?' or '#' ends it, "" counts as "/"): among the resources with that host, the one
 * whose path_prefix is the longest that is a prefix of path on a segment boundary ("/app"
 * matches "/app", "/app/" and "/app/x" but not "/apple"; "/" matches every path). Two
 * resources with the same host and path_prefix (added at once on two nodes): the smaller
 * created_ms, then the smaller name. Its index, or -1. */
int resource_match_http(const resource_t *v, size_t n, const char *host, size_t host_len,
                        const char *path, size_t path_len);

/* Reads resource/<name>: 0, -ENOENT (absent or deleted), -EBADMSG (unreadable, logged) or
 * another -errno from the store. */
int resource_get(store_t *store, const char *name, resource_t *r);
/* Every readable resource, in name order; records that do not decode are skipped with a log
 * line. 0 or -errno from the store (*out is then NULL). Caller owns *out (free()). */
int resource_list(store_t *store, resource_t **out, size_t *n);

#endif
