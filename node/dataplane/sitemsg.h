/* sitemsg: the messages a tunnel carries besides stream frames, shared by popd and popsite.
 *
 * All are msgpack arrays, positional, version first; fields after the last known one are
 * skipped (room to grow without a version bump); strings are NUL-free and fit their
 * buffers, or the message is refused. Every decoder reads untrusted bytes through mpr.
 *
 *   HELLO payload    [1, role: "site"|"pop", name: str, [probe: bool, [seal: uint]]]
 *   WELCOME payload  [1, name: str, id: uint, [seal: uint]]      the responder PoP
 *       seal: the suites of sealed streams this end opens, as a mask of 1 << enum seal_suite
 *       (tunnel/seal.h), 0..255, written only when not 0 (or when a later field follows). Its presence also says the sender
 *       reads SPLIT records (secchan.h), so the hop carries sealed records without sealing
 *       them again (tconn_set_split).
 *   OPEN target      [1, resource: str, site: uint, path: [uint], client: str,
 *                     targets: [str], sticky: bool, ingress: str, [weights: [uint],
 *                     [seal: [ingress id: uint, epk: bin 32, salt: bin 16, suite: uint,
 *                             ingress key: bin 32], [origin: [proxy: uint, [tls: uint,
 *                             ca: bin 32 | nil]]]]]]
 *       seal: the stream is sealed end to end by the ingress PoP for the site (tunnel/seal.h;
 *       weights are then always written, so the seal stays the 10th field; nil there means
 *       not sealed, for a writer with a later field). Relays carry it on unchanged; the site
 *       derives the stream's keys from it.
 *       origin: how the site talks to the target, written (with weights and seal, nil when
 *       not sealed) only when something is set: proxy 1 or 2 is the PROXY protocol version
 *       the site writes to the target before the client's bytes (0 none; client and ingress
 *       are the header's source and destination, node/site/proxyproto.h). Fields after the
 *       known ones are skipped. An older site skips the whole field and connects without
 *       the header, which the target then refuses: the operator sees it in its log.
 *       tls (0..2, enum resource_origin_tls) says the site speaks TLS to the target (1:
 *       certificate checked against the system store and ca; 2: not checked); ca is the id
 *       of a CA (resource_ca_id) from INFO's cas, nil when none. Written only with tls, so
 *       an origin of proxy alone stays [proxy]. An older site skips the whole field and
 *       would speak plain TCP to a TLS port, which the target refuses.
 *       client: where the ingress client connected from, as the ingress PoP saw it;
 *       ingress: where it connected to (the PoP's local address), "" when unknown (a reader that
 *       predates it, expecting 7 fields, skips it as an unknown trailing field). The
 *       site matches both against its own sockets to recognise its connections coming back
 *       into the mesh (docs/dataplane.md, "Loops into the mesh").
 *       path: the PoPs still to cross after the receiver, egress last (empty: the receiver
 *       is the egress, or the receiver is the site); at most SM_PATH_MAX, so a stream crosses
 *       at most SM_PATH_MAX + 1 PoPs and a bad table cannot make it loop forever.
 *       targets: where the site may connect, as the resource says; the site picks a healthy
 *       one (by client address when sticky). A UDP resource's targets are written
 *       "udp://host:port" (SM_UDP_SCHEME): the stream then carries datagrams, each framed as
 *       [u16 length][payload] (node/dataplane/udpframe.h), which the site sends from a
 *       connected UDP socket. A reader that predates them finds no host:port there and
 *       refuses the OPEN, so an older site or relay never carries such a stream as TCP.
 *       INFO's checks name these targets the same way, with health "udp" (not checked).
 *       weights: one per target, 1..SM_WEIGHT_MAX, the share of connections each gets; sent
 *       only when one is not 1 (an older site skips it and shares evenly).
 *   STATUS (ctl)     [1, 1, primary: bool, checks: [[target: str, health: str, healthy: bool,
 *                     why: str], ...], [draining: bool, [host: str, [seal: uint]]]]
 *                                                                     site -> PoP
 *       host: the machine the connector runs on (its host name), for meshctl sites.
 *       seal: the suites of sealed streams the site opens (as HELLO's); stored with the rest of
 *       STATUS in sitehealth/, which is how an ingress PoP without a tunnel to the site knows
 *       it may seal for it.
 *   INFO (ctl)       [1, 2, pops: [[id: uint, name: str, tunnel_addr: str, curve_pk: bin 32,
 *                     region: str], ...], checks: [[target: str, health: str, [resource: str,
 *                     [interval_ms, timeout_ms, rise, fall: uint, status: str, host: str]]],
 *                     ...]]                                           PoP -> site
 *       the PoPs the site may use, and what it should health-check (its resources' targets).
 *       A check of a resource with health-check settings (node/records/resource.h) carries the
 *       resource's name and the settings (0 / "" = the site's default; status as the record
 *       writes hc_status); other checks are [target, health] as before, which an older site
 *       reads as it always did (and which skips the two extra fields of the others).
 *       region: the PoP's region ("" = none; else a node name, nodecfg_check_name), which the
 *       site spreads its tunnels over; a PoP entry of 4 fields (an older PoP) has region "".
 *       A sixth field, avoid: bool, written only when true: the PoP may not carry some of the
 *       site's resources (their transit labels), so the site prefers the others.
 *       A fifth INFO field, cas: [str], written only when not empty: the CAs (PEM, at most
 *       SM_CA_MAX bytes each, SM_CAS_MAX of them) of the site's resources with https://
 *       targets, which OPEN's origin names by id. */
#ifndef POPMESH_NODE_DATAPLANE_SITEMSG_H
#define POPMESH_NODE_DATAPLANE_SITEMSG_H

#include "node/nodecfg.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SM_VERSION       1
#define SM_PATH_MAX      8
#define SM_TARGETS_MAX   16
#define SM_CHECKS_MAX    256
#define SM_POPS_MAX      64
#define SM_HEALTH_MAX    210 /* bytes of a health spec ("tcp", "http:/PATH") */
#define SM_WHY_MAX       127
#define SM_HC_STATUS_MAX 127 /* bytes of a check's status list ("200,3xx,500-503") */
#define SM_HC_HOST_MAX   260 /* bytes of a check's Host ("name:port") */
#define SM_WEIGHT_MAX    1000
#define SM_HOSTNAME_MAX  64 /* bytes of a connector's host name (HOST_NAME_MAX) */
#define SM_CA_MAX        8192 /* bytes of one CA in INFO (RESOURCE_CA_MAX) */
#define SM_CAS_MAX       8    /* CAs in one INFO */

#define SM_UDP_SCHEME    "udp://" /* a UDP resource's target in OPEN and INFO */
#define SM_UDP_HEALTH    "udp"    /* INFO's health of such a target: the site does not check it */

enum sm_ctl { SM_CTL_STATUS = 1, SM_CTL_INFO = 2 };

/* A target as OPEN and INFO carry it: "host:port" (nodecfg_check_addr), or SM_UDP_SCHEME
 * followed by one. 0 or -EINVAL; *udp (may be NULL) says which, *addr (may be NULL) points at
 * the host:port inside t. */
int sm_target_parse(const char *t, bool *udp, const char **addr);

typedef struct sm_hello {
    char role[8];
    char name[NODECFG_NAME_MAX + 1];
    bool probe; /* a site measuring RTT: not an attachment, closed right after the handshake */
    uint8_t seal; /* suites of sealed streams this end opens (1 << enum seal_suite); 0: none,
                   * and it reads no SPLIT records (an older peer) */
} sm_hello_t;

typedef struct sm_welcome {
    char name[NODECFG_NAME_MAX + 1];
    uint64_t id;
    uint8_t seal; /* as sm_hello_t's: the responder PoP reads SPLIT records */
} sm_welcome_t;

typedef struct sm_open {
    char resource[NODECFG_NAME_MAX + 1];
    uint64_t site;
    uint32_t npath;
    uint64_t path[SM_PATH_MAX];
    char client[64];
    char ingress[64]; /* "" when the ingress PoP did not say */
    uint32_t ntargets;
    char targets[SM_TARGETS_MAX][NODECFG_ADDR_MAX + 1];
    bool sticky;
    uint16_t weights[SM_TARGETS_MAX]; /* 0 counts as 1 (the decoder keeps a 1 as 0) */
    /* A sealed stream (tunnel/seal.h): the ingress PoP sealed its payload for the site. */
    bool sealed;
    uint64_t seal_from;    /* the ingress PoP's node id (the site looks up its key) */
    uint8_t seal_epk[32];  /* its ephemeral public key */
    uint8_t seal_salt[16]; /* the stream's salt */
    uint8_t seal_suite;    /* enum seal_suite */
    uint8_t seal_ipk[32];  /* the ingress PoP's static public key (its node record's curve_pk):
                            * for a site that does not know that PoP (INFO lists at most
                            * SM_POPS_MAX) */
    uint8_t proxy;         /* origin: the PROXY protocol version to write (1, 2), 0 = none */
    uint8_t tls;           /* origin: 0 plain, 1 TLS checked, 2 TLS unchecked */
    bool has_ca;           /* origin: ca is set */
    uint8_t ca[32];        /* origin: the id of the targets' CA (INFO's cas) */
} sm_open_t;

/* A resource's health-check settings; all zero / "" = the site's defaults. */
typedef struct sm_hc {
    uint32_t interval_ms; /* ms */
    uint32_t timeout_ms;  /* ms */
    uint32_t rise, fall;
    char status[SM_HC_STATUS_MAX + 1]; /* "" = 200..399 */
    char host[SM_HC_HOST_MAX + 1];     /* "" = the target */
} sm_hc_t;

typedef struct sm_check {
    char target[NODECFG_ADDR_MAX + 1];
    char health[SM_HEALTH_MAX + 1];
    bool healthy;
    char why[SM_WHY_MAX + 1];
    /* INFO only: the resource (a valid name, or "" when the check has no settings, or from an
     * older PoP) and its settings. */
    char resource[NODECFG_NAME_MAX + 1];
    sm_hc_t hc;
} sm_check_t;

/* True when k carries settings (INFO writes its resource and settings for it, as for a check
 * whose resource is set). */
bool sm_check_has_hc(const sm_check_t *k);

typedef struct sm_status {
    bool primary;
    bool draining; /* the site is moving off this PoP: route no new streams here */
    char host[SM_HOSTNAME_MAX + 1]; /* "" when the site did not say */
    uint8_t seal; /* suites of sealed streams the site opens; 0: none (an older site) */
    uint32_t n;
    sm_check_t checks[SM_CHECKS_MAX];
} sm_status_t;

typedef struct sm_pop {
    uint64_t id;
    char name[NODECFG_NAME_MAX + 1];
    char tunnel_addr[NODECFG_ADDR_MAX + 1];
    uint8_t curve_pk[32];
    char region[NODECFG_NAME_MAX + 1]; /* "" when none (or an older PoP did not say) */
    bool avoid; /* it lacks the labels some of the site's resources need (transit_labels):
                 * the site holds its tunnels elsewhere when it can */
} sm_pop_t;

typedef struct sm_info {
    uint32_t npops;
    sm_pop_t pops[SM_POPS_MAX];
    uint32_t nchecks;
    sm_check_t checks[SM_CHECKS_MAX]; /* target and health only */
    uint32_t ncas;
    char cas[SM_CAS_MAX][SM_CA_MAX + 1]; /* PEM, NUL-terminated */
} sm_info_t;

void sm_pack_hello(msgpack_packer *pk, const sm_hello_t *h);
int sm_decode_hello(const uint8_t *buf, size_t len, sm_hello_t *h, const char **why);
void sm_pack_welcome(msgpack_packer *pk, const sm_welcome_t *w);
int sm_decode_welcome(const uint8_t *buf, size_t len, sm_welcome_t *w, const char **why);
void sm_pack_open(msgpack_packer *pk, const sm_open_t *o);
int sm_decode_open(const uint8_t *buf, size_t len, sm_open_t *o, const char **why);
/* What a sealed stream's keys are bound to (tunnel/seal.h): a hash of every field the site acts
 * on and of the seal itself, the path left out (relays consume it). */
void sm_open_bind(const sm_open_t *o, uint8_t out[32]);
void sm_pack_status(msgpack_packer *pk, const sm_status_t *s);
void sm_pack_info(msgpack_packer *pk, const sm_info_t *in);
/* A control message: *type is SM_CTL_STATUS (into *st) or SM_CTL_INFO (into *in); either
 * output may be NULL to refuse that type. 0 or -EBADMSG with why. */
int sm_decode_ctl(const uint8_t *buf, size_t len, int *type, sm_status_t *st, sm_info_t *in,
                  const char **why);

#endif
