/* meshclock: this node's clock against the mesh's.
 *
 * A node refuses store versions more than HLC_MAX_AHEAD_MS ahead of its own clock (hlc.h),
 * so a node whose clock runs ahead has all its writes dropped by everyone else, and a node
 * whose clock runs behind drops everyone else's. SWIM estimates each member's clock offset
 * from its probes (swim.c, "CLOCKS"); this node's offset against the mesh is the median
 * over alive members (swim_clock_offset), so one peer with a bad clock does not make a
 * healthy node look wrong. What is done with it:
 *   - writes through the control socket are refused while this node is more than
 *     MESHNODE_CLOCK_WRITE_LIMIT_MS ahead: they would be acknowledged here and dropped
 *     everywhere else. The margin under HLC_MAX_AHEAD_MS covers the estimate's error (half
 *     a round trip) and a clock still drifting. A node behind still writes (the others
 *     accept its versions, which only lose last-writer-wins races); it is logged.
 *   - both ends log: the receiver names the origin of refused versions and by how much they
 *     were ahead (from the store), the skewed node logs its own offset; at most one line per
 *     MESHNODE_CLOCK_LOG_S each.
 * With two nodes the median cannot tell which clock is wrong: each sees the other off by the
 * same amount. Refusing only "ahead" keeps the right one writable: the one behind is the one
 * whose writes still reach the other. */
#include "node/membership/meshnode_int.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "storage/hlc.h"

#include <stdio.h>
#include <string.h>

_Static_assert(MESHNODE_CLOCK_WRITE_LIMIT_MS < HLC_MAX_AHEAD_MS,
               "writes must stop before the mesh drops them");

int meshclock_offset(meshnode_t *m, int64_t *off, unsigned *peers)
{
    return swim_clock_offset(m->swim, off, peers);
}

void meshclock_note_skew(meshnode_t *m)
{
    store_stats_t st;
    if (store_stats(m->o.store, &st) || st.skew_rejected == m->skew_seen)
        return;
    uint64_t fresh = st.skew_rejected - m->skew_seen;
    m->skew_seen = st.skew_rejected;
    double now = ev_now(m->o.loop);
    if (now - m->skew_log_at < MESHNODE_CLOCK_LOG_S && m->skew_log_at > 0) {
        m->skew_quiet += fresh;
        return;
    }
    const reg_node_t *r = meshnode_reg_find(m, st.skew_last_origin);
    log_warn("store: refused %llu entries written by %s (%016llx): their versions are %.1f s "
             "ahead of this node's clock (limit %d s); that node's clock is wrong, or this "
             "one's: check NTP on both",
             (unsigned long long)(fresh + m->skew_quiet), r ? r->name : "an unknown node",
             (unsigned long long)st.skew_last_origin, st.skew_last_ahead_ms / 1000.0,
             HLC_MAX_AHEAD_MS / 1000);
    m->skew_log_at = now;
    m->skew_quiet = 0;
}

/* The skewed node's own view, checked with every health vector (about every 2 s). */
void meshclock_check(meshnode_t *m)
{
    int64_t off;
    unsigned peers;
    double now = ev_now(m->o.loop);
    bool off_now = meshclock_offset(m, &off, &peers) == 0 &&
                   (off > MESHNODE_CLOCK_WRITE_LIMIT_MS || off < -MESHNODE_CLOCK_WRITE_LIMIT_MS);
    if (!off_now) {
        if (m->clock_off)
            log_info("clock: this node's clock agrees with the mesh again; writes are accepted");
        m->clock_off = false;
        return;
    }
    if (m->clock_off && now - m->clock_log_at < MESHNODE_CLOCK_LOG_S)
        return;
    if (off > 0)
        log_warn("clock: this node's clock is %.1f s ahead of the mesh (median of %u peer(s)); "
                 "other nodes refuse its writes (versions more than %d s ahead), so writes "
                 "here are refused; fix its time (NTP)",
                 off / 1000.0, peers, HLC_MAX_AHEAD_MS / 1000);
    else
        log_warn("clock: this node's clock is %.1f s behind the mesh (median of %u peer(s)); "
                 "it refuses other nodes' writes (versions more than %d s ahead of it); fix its "
                 "time (NTP)",
                 -off / 1000.0, peers, HLC_MAX_AHEAD_MS / 1000);
    m->clock_off = true;
    m->clock_log_at = now;
}

/* Commands that write the replicated store: refused while this node's clock is too far
 * ahead (control_set_guard). Reads, status and token-free commands are never refused. */
static const char *const store_writers[] = {
    "config.set",    "config.del",    "site.add",   "site.rm",     "resource.add",
    "resource.rm",   "user.add",      "user.rm",    "user.passwd", "session.revoke",
    "apikey.create", "apikey.revoke", "rule.add",   "rule.rm",     "token.create",
    "token.revoke",  "node.remove",   "node.drain", "zone.add",    "zone.rm",
    "geo.add",       "geo.rm",        "cert.import", "cert.rm",     "site.token",
    NULL,
};

/* Commands that change the mesh's policy (users, resources, rules, API keys, settings):
 * only a PoP whose certificate holds admin may run them (node/trust, nodecert.h). */
static const char *const policy_writers[] = {
    "config.set",    "config.del",    "resource.add", "resource.rm", "user.add",
    "user.rm",       "user.passwd",   "user.set",     "session.revoke", "apikey.create",
    "apikey.revoke", "rule.add",      "rule.rm",      NULL,
};

int meshclock_guard(void *ctx, const char *cmd, size_t len, msgpack_packer *body)
{
    meshnode_t *m = ctx;
    bool writes = false, policy = false;
    for (const char *const *w = policy_writers; *w && !policy; w++)
        policy = strlen(*w) == len && memcmp(*w, cmd, len) == 0;
    char err[400];
    if (policy && m->trust.self_may && m->trust.self_may(m->trust.ctx, 1u << 3, err, sizeof(err))) {
        log_warn("control: refused %.*s: this PoP's certificate lacks admin", (int)len, cmd);
        return control_error(body, CTL_REFUSED, "%s", err);
    }
    for (const char *const *w = store_writers; *w && !writes; w++)
        writes = strlen(*w) == len && memcmp(*w, cmd, len) == 0;
    int64_t off;
    unsigned peers;
    if (!writes || meshclock_offset(m, &off, &peers) || off <= MESHNODE_CLOCK_WRITE_LIMIT_MS)
        return -1;
    m->writes_refused++;
    log_warn("control: refused %.*s: this node's clock is %.1f s ahead of the mesh", (int)len, cmd,
             off / 1000.0);
    return control_error(body, CTL_REFUSED,
                         "this node's clock is %.1f s ahead of the mesh (median of %u "
                         "peer(s); writes stop at %d s, the mesh drops versions more than %d s "
                         "ahead); fix its time (NTP) and retry",
                         off / 1000.0, peers, MESHNODE_CLOCK_WRITE_LIMIT_MS / 1000,
                         HLC_MAX_AHEAD_MS / 1000);
}
