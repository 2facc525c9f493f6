#include "node/admin/adminmetrics.h"

#include "node/ctl/control.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

enum src { S_STATUS, S_DNS };

/* One sample: the field at path ("a.b") of a command's answer. Rows of one family are next
 * to each other (the format needs a family's samples together); help and type are taken from
 * the family's first row. */
struct row {
    enum src src;
    const char *path;
    const char *name;
    const char *type;
    const char *help;
    const char *lname, *lvalue; /* one label, or NULL */
    double scale;               /* 0: the value as is (an integer); else multiplied */
};

#define C "counter"
#define G "gauge"

static const struct row rows[] = {
    /* membership (SWIM) */
    {S_STATUS, "members.alive", "popmesh_members", G, "Members of the mesh this PoP sees, by SWIM state (itself included).", "state", "alive", 0},
    {S_STATUS, "members.suspect", "popmesh_members", G, NULL, "state", "suspect", 0},
    {S_STATUS, "members.dead", "popmesh_members", G, NULL, "state", "dead", 0},
    {S_STATUS, "members.left", "popmesh_members", G, NULL, "state", "left", 0},
    {S_STATUS, "mesh.probes", "popmesh_swim_probes_total", C, "SWIM probes started by this PoP (one per probe interval).", NULL, NULL, 0},
    {S_STATUS, "mesh.probe_failures", "popmesh_swim_probe_failures_total", C, "SWIM probes that got no ACK, direct or relayed.", NULL, NULL, 0},
    {S_STATUS, "mesh.indirect_probes", "popmesh_swim_indirect_probes_total", C, "SWIM indirect probes (PING-REQ) sent.", NULL, NULL, 0},
    {S_STATUS, "mesh.suspicions_raised", "popmesh_swim_suspicions_total", C, "Members this PoP moved to suspect (own probe or gossip).", NULL, NULL, 0},
    {S_STATUS, "mesh.suspicions_refuted", "popmesh_swim_refutations_total", C, "Times this PoP refuted a suspect, dead or left rumour about itself.", NULL, NULL, 0},
    {S_STATUS, "mesh.deaths_declared", "popmesh_swim_deaths_declared_total", C, "Suspicions of this PoP that timed out into dead.", NULL, NULL, 0},
    {S_STATUS, "mesh.local_health", "popmesh_swim_local_health", G, "Lifeguard local health multiplier (0 = healthy).", NULL, NULL, 0},
    {S_STATUS, "mesh.incarnation", "popmesh_swim_incarnation", G, "This PoP's SWIM incarnation number.", NULL, NULL, 0},
    /* the mesh transport */
    {S_STATUS, "mesh.msgs_sent", "popmesh_mesh_messages_sent_total", C, "Messages sent on the mesh socket.", NULL, NULL, 0},
    {S_STATUS, "mesh.msgs_received", "popmesh_mesh_messages_received_total", C, "Messages received on the mesh socket.", NULL, NULL, 0},
    {S_STATUS, "mesh.send_dropped", "popmesh_mesh_messages_dropped_total", C, "Mesh messages dropped on send (peer queue full or unreachable).", NULL, NULL, 0},
    {S_STATUS, "mesh.bad_messages", "popmesh_mesh_bad_messages_total", C, "Mesh messages dropped as malformed.", NULL, NULL, 0},
    {S_STATUS, "mesh.bad_version", "popmesh_mesh_bad_version_total", C, "Mesh messages of a protocol version this PoP does not speak.", NULL, NULL, 0},
    {S_STATUS, "mesh.redials", "popmesh_mesh_redials_total", C, "Mesh connections dialled again.", NULL, NULL, 0},
    {S_STATUS, "mesh.conns", "popmesh_mesh_connections", G, "Inbound connections open on the mesh port.", NULL, NULL, 0},
    {S_STATUS, "mesh.zap_admitted", "popmesh_mesh_handshakes_total", C, "CURVE handshakes on the mesh port, by result.", "result", "admitted", 0},
    {S_STATUS, "mesh.zap_refused", "popmesh_mesh_handshakes_total", C, NULL, "result", "refused", 0},
    {S_STATUS, "mesh.joins_ok", "popmesh_mesh_joins_total", C, "Join requests this PoP answered, by result.", "result", "ok", 0},
    {S_STATUS, "mesh.joins_refused", "popmesh_mesh_joins_total", C, NULL, "result", "refused", 0},
    {S_STATUS, "clock.offset_ms", "popmesh_clock_offset_seconds", G, "This PoP's clock minus the mesh's (median of its peers).", NULL, NULL, 0.001},
    {S_STATUS, "clock.writes_refused", "popmesh_clock_writes_refused_total", C, "Writes refused while this PoP's clock was too far ahead of the mesh.", NULL, NULL, 0},
    /* the replicated store */
    {S_STATUS, "store.entries", "popmesh_store_entries", G, "Live entries in the replicated store.", NULL, NULL, 0},
    {S_STATUS, "store.tombstones", "popmesh_store_tombstones", G, "Deleted entries remembered for the grace period.", NULL, NULL, 0},
    {S_STATUS, "store.map_used", "popmesh_store_used_bytes", G, "Bytes of the store's map in use.", NULL, NULL, 0},
    {S_STATUS, "store.map_size", "popmesh_store_size_bytes", G, "Bytes of the store's map (store-map-size).", NULL, NULL, 0},
    {S_STATUS, "store.merges_applied", "popmesh_store_merges_total", C, "Entries from other PoPs merged into the store, by result.", "result", "applied", 0},
    {S_STATUS, "store.merges_ignored", "popmesh_store_merges_total", C, NULL, "result", "ignored", 0},
    {S_STATUS, "store.skew_rejected", "popmesh_store_skew_rejected_total", C, "Entries refused for a version too far in the future.", NULL, NULL, 0},
    {S_STATUS, "mesh.ae_entries_applied", "popmesh_store_antientropy_repairs_total", C, "Entries repaired by anti-entropy (bucket digest exchanges).", NULL, NULL, 0},
    {S_STATUS, "mesh.pushes_applied", "popmesh_store_pushes_applied_total", C, "Entries applied from pushes (writes spread as they happen).", NULL, NULL, 0},
    /* the data plane: tunnels and streams */
    {S_STATUS, "dataplane.sites_attached", "popmesh_sites_attached", G, "Site connectors with a tunnel up to this PoP.", NULL, NULL, 0},
    {S_STATUS, "dataplane.pop_tunnels", "popmesh_pop_tunnels", G, "Tunnels up to other PoPs.", NULL, NULL, 0},
    {S_STATUS, "dataplane.streams", "popmesh_streams", G, "Streams open through this PoP (ingress and relayed).", NULL, NULL, 0},
    {S_STATUS, "dataplane.tunnels_accepted", "popmesh_tunnels_accepted_total", C, "Tunnel connections accepted.", NULL, NULL, 0},
    {S_STATUS, "dataplane.tunnels_refused", "popmesh_tunnels_refused_total", C, "Tunnel connections refused.", NULL, NULL, 0},
    {S_STATUS, "dataplane.tunnel_refused_cap", "popmesh_tunnels_refused_cap_total", C, "Tunnel connections refused by the connection cap.", NULL, NULL, 0},
    {S_STATUS, "dataplane.handshake_failures", "popmesh_tunnel_handshake_failures_total", C, "Tunnel handshakes that failed.", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_accepted", "popmesh_ingress_connections_total", C, "Client connections accepted on TCP resource ports.", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_refused_cap", "popmesh_ingress_refused_cap_total", C, "Client connections refused by the connection cap.", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_opened", "popmesh_ingress_streams_opened_total", C, "Streams this ingress opened to a site.", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_failed", "popmesh_ingress_streams_failed_total", C, "Streams this ingress could not open (OPEN failures).", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_retries", "popmesh_ingress_open_retries_total", C, "OPENs retried on another path or replica.", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_refused_limit", "popmesh_ingress_refused_limit_total", C, "Streams refused by a stream limit.", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_loops", "popmesh_ingress_loops_total", C, "Connections refused as routing loops.", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_sealed", "popmesh_ingress_streams_sealed_total", C, "Streams sealed end to end for their site at this ingress.", NULL, NULL, 0},
    {S_STATUS, "dataplane.ingress_unsealed", "popmesh_ingress_streams_unsealed_total", C, "Streams this ingress opened without end-to-end sealing.", NULL, NULL, 0},
    {S_STATUS, "dataplane.relayed", "popmesh_streams_relayed_total", C, "Streams relayed through this PoP.", NULL, NULL, 0},
    {S_STATUS, "dataplane.relayed_sealed", "popmesh_streams_relayed_sealed_total", C, "Relayed streams that were sealed (carried whole).", NULL, NULL, 0},
    {S_STATUS, "dataplane.relay_refused", "popmesh_relay_refused_total", C, "Relay requests refused.", NULL, NULL, 0},
    {S_STATUS, "dataplane.bytes_in", "popmesh_stream_received_bytes_total", C, "Stream payload bytes received by the data plane.", NULL, NULL, 0},
    {S_STATUS, "dataplane.bytes_out", "popmesh_stream_sent_bytes_total", C, "Stream payload bytes sent by the data plane.", NULL, NULL, 0},
    {S_STATUS, "dataplane.accept_failures", "popmesh_accept_failures_total", C, "accept() failures on data-plane listeners.", NULL, NULL, 0},
    /* TLS handshakes: TCP resources with tls, the HTTPS listener */
    {S_STATUS, "dataplane.tls_handshakes", "popmesh_tls_handshakes_total", C, "TLS handshakes completed (resumed ones included), by listener.", "listener", "tcp", 0},
    {S_STATUS, "http.tls_handshakes", "popmesh_tls_handshakes_total", C, NULL, "listener", "https", 0},
    {S_STATUS, "dataplane.tls_resumed", "popmesh_tls_resumed_total", C, "TLS handshakes that resumed a session, by listener.", "listener", "tcp", 0},
    {S_STATUS, "http.tls_resumed", "popmesh_tls_resumed_total", C, NULL, "listener", "https", 0},
    {S_STATUS, "dataplane.tls_failed", "popmesh_tls_handshake_failures_total", C, "TLS handshakes that failed, by listener.", "listener", "tcp", 0},
    {S_STATUS, "http.tls_failed", "popmesh_tls_handshake_failures_total", C, NULL, "listener", "https", 0},
    {S_STATUS, "dataplane.tls_timeouts", "popmesh_tls_handshake_timeouts_total", C, "TLS handshakes that timed out, by listener.", "listener", "tcp", 0},
    {S_STATUS, "http.timeout_tls_handshake", "popmesh_tls_handshake_timeouts_total", C, NULL, "listener", "https", 0},
    {S_STATUS, "http.tls_certificates", "popmesh_tls_certificates", G, "Certificates the HTTPS listener serves.", NULL, NULL, 0},
    {S_STATUS, "http.tls_unknown_sni", "popmesh_tls_unknown_sni_total", C, "HTTPS handshakes for a name no certificate covers.", NULL, NULL, 0},
    {S_STATUS, "http.tls_ocsp_stapled", "popmesh_tls_ocsp_stapled_total", C, "HTTPS handshakes with a stapled OCSP response.", NULL, NULL, 0},
    /* the HTTP ingress (all requests; per resource below) */
    {S_STATUS, "http.connections", "popmesh_http_connections", G, "Client connections open on the HTTP and HTTPS listeners.", NULL, NULL, 0},
    {S_STATUS, "http.accepted", "popmesh_http_connections_accepted_total", C, "Client connections accepted on the HTTP and HTTPS listeners.", NULL, NULL, 0},
    {S_STATUS, "http.refused_max_connections", "popmesh_http_connections_refused_total", C, "Client connections refused by a cap, by cap.", "cap", "total", 0},
    {S_STATUS, "http.refused_per_address", "popmesh_http_connections_refused_total", C, NULL, "cap", "per_address", 0},
    {S_STATUS, "http.requests", "popmesh_http_requests_received_total", C, "Requests received, whatever their host (per resource: popmesh_http_requests_total).", NULL, NULL, 0},
    {S_STATUS, "http.local", "popmesh_http_local_requests_total", C, "Requests answered by the PoP itself (/.popmesh/: sign-in, sign-out, share links).", NULL, NULL, 0},
    {S_STATUS, "http.errors", "popmesh_http_error_answers_total", C, "4xx and 5xx answers made by the PoP itself.", NULL, NULL, 0},
    {S_STATUS, "http.redirects_https", "popmesh_http_https_redirects_total", C, "Plain HTTP requests redirected to HTTPS.", NULL, NULL, 0},
    {S_STATUS, "http.misdirected", "popmesh_http_misdirected_total", C, "HTTPS requests for a host the connection's certificate does not cover (421).", NULL, NULL, 0},
    {S_STATUS, "http.timeout_head", "popmesh_http_timeouts_total", C, "Client connections closed by a timeout, by phase.", "phase", "head", 0},
    {S_STATUS, "http.timeout_idle", "popmesh_http_timeouts_total", C, NULL, "phase", "idle", 0},
    {S_STATUS, "http.timeout_body", "popmesh_http_timeouts_total", C, NULL, "phase", "body", 0},
    {S_STATUS, "http.timeout_response", "popmesh_http_timeouts_total", C, NULL, "phase", "response", 0},
    {S_STATUS, "http.timeout_response_idle", "popmesh_http_timeouts_total", C, NULL, "phase", "response_idle", 0},
    {S_STATUS, "http.timeout_websocket", "popmesh_http_timeouts_total", C, NULL, "phase", "websocket", 0},
    {S_STATUS, "http.timeout_closing", "popmesh_http_timeouts_total", C, NULL, "phase", "closing", 0},
    /* edge authentication */
    {S_STATUS, "http.denied", "popmesh_auth_decisions_total", C, "Requests refused by edge authentication, by reason (denied: a rule or the resource's users; unauthenticated: no valid session or API key).", "result", "denied", 0},
    {S_STATUS, "http.unauthenticated", "popmesh_auth_decisions_total", C, NULL, "result", "unauthenticated", 0},
    {S_STATUS, "http.login_limited", "popmesh_login_rate_limited_total", C, "Sign-ins refused by a rate limit (429).", NULL, NULL, 0},
    {S_STATUS, "http.logins_failed", "popmesh_login_failures_total", C, "Sign-ins refused: wrong user name or password.", NULL, NULL, 0},
    {S_STATUS, "http.allowed_open", "popmesh_auth_allowed_total", C, "Requests edge authentication let through, by how (open: the resource asks for nobody).", "method", "open", 0},
    {S_STATUS, "http.allowed_rule", "popmesh_auth_allowed_total", C, NULL, "method", "rule", 0},
    {S_STATUS, "http.allowed_session", "popmesh_auth_allowed_total", C, NULL, "method", "session", 0},
    {S_STATUS, "http.allowed_api_key", "popmesh_auth_allowed_total", C, NULL, "method", "api_key", 0},
    {S_STATUS, "http.allowed_share_link", "popmesh_auth_allowed_total", C, NULL, "method", "share_link", 0},
    {S_STATUS, "http.allowed_password", "popmesh_auth_allowed_total", C, NULL, "method", "password", 0},
    {S_STATUS, "http.allowed_provider", "popmesh_auth_allowed_total", C, NULL, "method", "provider", 0},
    {S_STATUS, "http.totp_accepted", "popmesh_totp_accepted_total", C, "Second factors accepted at sign-in (TOTP and recovery codes).", NULL, NULL, 0},
    {S_STATUS, "http.totp_refused", "popmesh_totp_refused_total", C, "Second factors refused at sign-in: missing, malformed or wrong.", NULL, NULL, 0},
    {S_STATUS, "http.totp_replayed", "popmesh_totp_replayed_total", C, "Codes and recovery codes refused at sign-in as used before (replays).", NULL, NULL, 0},
    {S_STATUS, "http.logins_shared", "popmesh_login_summaries_sent_total", C, "Login attempt summaries this PoP broadcast to the mesh.", NULL, NULL, 0},
    {S_STATUS, "http.logins_heard", "popmesh_login_summaries_received_total", C, "Login attempt summaries received from other PoPs.", NULL, NULL, 0},
    {S_STATUS, "http.logins_charged", "popmesh_login_attempts_charged_total", C, "Login attempts admitted elsewhere and charged to this PoP's limits.", NULL, NULL, 0},
    /* DNS */
    {S_DNS, "queries.udp", "popmesh_dns_queries_total", C, "DNS queries received, by transport.", "transport", "udp", 0},
    {S_DNS, "queries.tcp", "popmesh_dns_queries_total", C, NULL, "transport", "tcp", 0},
    {S_DNS, "counters.answer", "popmesh_dns_responses_total", C, "DNS queries by what they got.", "kind", "answer", 0},
    {S_DNS, "counters.nodata", "popmesh_dns_responses_total", C, NULL, "kind", "nodata", 0},
    {S_DNS, "counters.nxdomain", "popmesh_dns_responses_total", C, NULL, "kind", "nxdomain", 0},
    {S_DNS, "counters.refused", "popmesh_dns_responses_total", C, NULL, "kind", "refused", 0},
    {S_DNS, "counters.formerr", "popmesh_dns_responses_total", C, NULL, "kind", "formerr", 0},
    {S_DNS, "counters.notimp", "popmesh_dns_responses_total", C, NULL, "kind", "notimp", 0},
    {S_DNS, "counters.badvers", "popmesh_dns_responses_total", C, NULL, "kind", "badvers", 0},
    {S_DNS, "counters.drop", "popmesh_dns_responses_total", C, NULL, "kind", "drop", 0},
    {S_DNS, "counters.truncated", "popmesh_dns_truncated_total", C, "DNS responses truncated (TC set).", NULL, NULL, 0},
    {S_DNS, "counters.rrl_dropped", "popmesh_dns_rrl_total", C, "DNS responses held back by response rate limiting, by action.", "action", "dropped", 0},
    {S_DNS, "counters.rrl_slipped", "popmesh_dns_rrl_total", C, NULL, "action", "slipped", 0},
    {S_DNS, "zones", "popmesh_dns_zones", G, "Zones this PoP is authoritative for.", NULL, NULL, 0},
    {S_DNS, "pops_answerable", "popmesh_dns_pops_answerable", G, "PoPs DNS answers may send clients to now.", NULL, NULL, 0},
    /* webhook alerts (node/alert) */
    {S_STATUS, "alerts.events", "popmesh_alert_events_total", C, "Events this PoP announced (it was their sender).", NULL, NULL, 0},
    {S_STATUS, "alerts.sent", "popmesh_alert_deliveries_total", C, "Webhook deliveries, by result: sent (2xx), failed (every attempt failed), dropped (queue full).", "result", "sent", 0},
    {S_STATUS, "alerts.failed", "popmesh_alert_deliveries_total", C, NULL, "result", "failed", 0},
    {S_STATUS, "alerts.dropped", "popmesh_alert_deliveries_total", C, NULL, "result", "dropped", 0},
    {S_STATUS, "alerts.attempts_failed", "popmesh_alert_attempts_failed_total", C, "Webhook attempts that failed (each retry counts).", NULL, NULL, 0},
    {S_STATUS, "alerts.pending", "popmesh_alert_pending", G, "Webhook deliveries held: waiting, in backoff or under way.", NULL, NULL, 0},
    /* the process */
    {S_STATUS, "uptime_s", "popmesh_uptime_seconds", G, "Seconds since popd started.", NULL, NULL, 1},
    {S_STATUS, "control.requests", "popmesh_control_requests_total", C, "Control socket requests answered.", NULL, NULL, 0},
};

/* The value at path in a map tree, or NULL. */
static const msgpack_object *lookup(const msgpack_object *o, const char *path)
{
    while (o && *path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        const msgpack_object *next = NULL;
        if (o->type == MSGPACK_OBJECT_MAP)
            for (uint32_t i = 0; i < o->via.map.size && !next; i++) {
                const msgpack_object *k = &o->via.map.ptr[i].key;
                if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
                    !memcmp(k->via.str.ptr, path, n))
                    next = &o->via.map.ptr[i].val;
            }
        o = next;
        path += n + (dot ? 1 : 0);
    }
    return o;
}

static bool number(const msgpack_object *o, double *d, uint64_t *u, bool *is_u)
{
    if (!o)
        return false;
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *u = o->via.u64;
        *d = (double)o->via.u64;
        *is_u = true;
        return true;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        *d = (double)o->via.i64;
        *is_u = false;
        return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *d = o->via.f64;
        *is_u = false;
        return true;
    default:
        return false;
    }
}

/* A string field of a map as a NUL-terminated copy ("" if absent). */
static void str_field(const msgpack_object *m, const char *key, char *out, size_t len)
{
    const msgpack_object *o = lookup(m, key);
    out[0] = '\0';
    if (o && o->type == MSGPACK_OBJECT_STR)
        snprintf(out, len, "%.*s", (int)o->via.str.size, o->via.str.ptr);
}

static void render_rows(const adminmetrics_src_t *src, promtext_t *out)
{
    const char *announced = NULL;
    const struct row *first = NULL;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        if (!first || strcmp(first->name, r->name))
            first = r;
        const msgpack_object *root = r->src == S_STATUS ? src->status : src->dns;
        double d;
        uint64_t u = 0; /* set when number() says is_u; -O2 cannot see it */
        bool is_u = false;
        if (!root || !number(lookup(root, r->path), &d, &u, &is_u))
            continue;
        if (!announced || strcmp(announced, r->name)) {
            prom_family(out, r->name, first->type, first->help);
            announced = r->name;
        }
        prom_label_t l = {r->lname, r->lvalue};
        if (r->scale == 0 && is_u)
            prom_u64(out, r->name, &l, r->lname ? 1 : 0, u);
        else
            prom_double(out, r->name, &l, r->lname ? 1 : 0, r->scale ? d * r->scale : d);
    }
}

/* Each member's state (one series per state, 1 for the current one) and RTT, as this PoP
 * sees them: an alert can name the PoP that died. */
static void render_members(const msgpack_object *members, promtext_t *out)
{
    static const char *const states[] = {"alive", "suspect", "dead", "left"};
    if (!members || members->type != MSGPACK_OBJECT_ARRAY)
        return;
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0)
            prom_family(out, "popmesh_member_state", G,
                        "Each member's SWIM state as this PoP sees it (1 for its state, 0 for "
                        "the others).");
        else
            prom_family(out, "popmesh_member_rtt_seconds", G,
                        "Round-trip time to each member on the mesh socket.");
        for (uint32_t i = 0; i < members->via.array.size; i++) {
            const msgpack_object *m = &members->via.array.ptr[i];
            char name[80], state[16];
            str_field(m, "name", name, sizeof(name));
            str_field(m, "state", state, sizeof(state));
            if (!name[0])
                continue;
            if (pass == 0) {
                for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++) {
                    prom_label_t l[2] = {{"member", name}, {"state", states[s]}};
                    prom_u64(out, "popmesh_member_state", l, 2, !strcmp(state, states[s]));
                }
            } else {
                double d;
                uint64_t u;
                bool is_u;
                prom_label_t l = {"member", name};
                if (number(lookup(m, "rtt_ms"), &d, &u, &is_u))
                    prom_double(out, "popmesh_member_rtt_seconds", &l, 1, d / 1000.0);
            }
        }
    }
}

static void render_http(const httpstats_t *hs, promtext_t *out)
{
    static const char *const classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    static const char *const le[HTTPSTATS_BUCKETS] = {"0.005", "0.01", "0.025", "0.05",
                                                      "0.1",   "0.25", "0.5",   "1",
                                                      "2.5",   "5",    "10"};
    if (!hs)
        return;
    size_t n = httpstats_count(hs);
    prom_family(out, "popmesh_http_requests_total", C, "HTTP requests routed to each resource.");
    for (size_t i = 0; i < n; i++) {
        const httpstats_res_t *r = httpstats_at(hs, i);
        prom_label_t l = {"resource", r->name};
        prom_u64(out, "popmesh_http_requests_total", &l, 1, r->requests);
    }
    prom_family(out, "popmesh_http_responses_total", C,
                "HTTP responses of each resource by status class (the application's, or the "
                "PoP's own: refusals, redirects to sign in, 502/504).");
    for (size_t i = 0; i < n; i++) {
        const httpstats_res_t *r = httpstats_at(hs, i);
        for (int c = 0; c < 5; c++) {
            prom_label_t l[2] = {{"resource", r->name}, {"class", classes[c]}};
            prom_u64(out, "popmesh_http_responses_total", l, 2, r->responses[c]);
        }
    }
    prom_family(out, "popmesh_http_request_body_bytes_total", C,
                "Bytes of request bodies sent to each resource (decoded).");
    for (size_t i = 0; i < n; i++) {
        const httpstats_res_t *r = httpstats_at(hs, i);
        prom_label_t l = {"resource", r->name};
        prom_u64(out, "popmesh_http_request_body_bytes_total", &l, 1, r->bytes_in);
    }
    prom_family(out, "popmesh_http_response_body_bytes_total", C,
                "Bytes of response bodies from each resource (decoded).");
    for (size_t i = 0; i < n; i++) {
        const httpstats_res_t *r = httpstats_at(hs, i);
        prom_label_t l = {"resource", r->name};
        prom_u64(out, "popmesh_http_response_body_bytes_total", &l, 1, r->bytes_out);
    }
    prom_family(out, "popmesh_http_request_duration_seconds", "histogram",
                "Seconds from a request's head to its response head, per resource.");
    for (size_t i = 0; i < n; i++) {
        const httpstats_res_t *r = httpstats_at(hs, i);
        prom_label_t l = {"resource", r->name};
        prom_histogram(out, "popmesh_http_request_duration_seconds", &l, 1, le,
                       HTTPSTATS_BUCKETS, r->latency, (double)r->latency_sum_us / 1e6);
    }
    prom_family(out, "popmesh_http_resources_overflow_total", C,
                "Requests not counted per resource: the per-resource table was full.");
    prom_u64(out, "popmesh_http_resources_overflow_total", NULL, 0, httpstats_overflow(hs));
}

void adminmetrics_render(const adminmetrics_src_t *src, promtext_t *out)
{
    if (src->status) {
        char name[80], version[40], region[80];
        str_field(src->status, "name", name, sizeof(name));
        str_field(src->status, "version", version, sizeof(version));
        str_field(src->status, "region", region, sizeof(region));
        prom_family(out, "popmesh_node_info", G, "This PoP's name, region and popd version.");
        prom_label_t l[3] = {{"node", name}, {"region", region}, {"version", version}};
        prom_u64(out, "popmesh_node_info", l, 3, 1);
    }
    render_rows(src, out);
    render_members(src->members, out);
    render_http(src->http, out);
}

/* Runs command into *up (unpacked; the caller destroys it): the answer's object, or NULL. */
static const msgpack_object *call(struct control *ctl, const char *command,
                                  msgpack_sbuffer *sb, msgpack_unpacked *up)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    if (control_call(ctl, command, &pk) != CTL_OK || !sb->size)
        return NULL;
    size_t off = 0;
    if (msgpack_unpack_next(up, sb->data, sb->size, &off) != MSGPACK_UNPACK_SUCCESS)
        return NULL;
    return &up->data;
}

void adminmetrics_collect(struct control *ctl, const httpstats_t *http, promtext_t *out)
{
    static const char *const commands[3] = {"status", "dns.status", "members"};
    msgpack_sbuffer sb[3];
    msgpack_unpacked up[3];
    const msgpack_object *o[3];
    for (int i = 0; i < 3; i++) {
        msgpack_sbuffer_init(&sb[i]);
        msgpack_unpacked_init(&up[i]);
        o[i] = ctl ? call(ctl, commands[i], &sb[i], &up[i]) : NULL;
    }
    adminmetrics_src_t src = {.status = o[0], .dns = o[1], .members = o[2], .http = http};
    adminmetrics_render(&src, out);
    for (int i = 0; i < 3; i++) {
        msgpack_unpacked_destroy(&up[i]);
        msgpack_sbuffer_destroy(&sb[i]);
    }
}
