/* alert: webhook alerts about the mesh, sent by exactly one PoP per event.
 *
 * WHAT IS WATCHED. Four kinds of subject, each as this PoP's own answers show it (the same
 * answers meshctl prints, read in-process through control_call):
 *   pop     a PoP of the mesh (`members`): down when SWIM holds it dead or left, up when
 *           alive; suspect changes nothing (a suspicion is refuted or becomes a death).
 *   site    a site (`sites`, replicas merged): up while some live PoP's link state holds a
 *           tunnel to one of its connectors, down when none does.
 *   target  a resource's target (`targets`, merged across the site's replicas as the sites
 *           report it): up or down; unknown (not checked yet) and unreachable (its site is down:
 *           the site alert says so) change nothing. Subject "<resource>/<host:port>".
 *   cert    a certificate of the cert/ records: expiring once fewer than ALERT_CERT_DAYS days
 *           are left, expired past its notAfter, ok otherwise.
 *
 * WHO SENDS. Every PoP evaluates every subject; the one that sends is chosen by a rule on
 * replicated state, with no leader:
 *   1. The change must have been seen steadily for ALERT_SETTLE_MS (a SWIM death reaches every
 *      PoP within a few gossip rounds; a tunnel redialled within the settle time is no event),
 *      and this PoP must have run ALERT_STARTUP_GRACE_MS (a restarted PoP first catches up on
 *      SWIM and the store).
 *   2. The mesh's memory of the subject is the record alertstate/<kind>/<subject> (alertrec.h):
 *      the state last announced. No record means "up" for a PoP and "ok" for a certificate; for
 *      a site or a target the first state seen is written without an alert (a site just added
 *      and not yet connected is no outage). Equal to what this PoP sees: nothing to do.
 *   3. Otherwise the PoPs alive in this PoP's SWIM view (the subject PoP itself left out)
 *      are ranked by rendezvous hashing of the record's key (alert_rank). Rank 0 acts once
 *      the change has settled; rank k only k * ALERT_TAKEOVER_MS later, so a sender that is
 *      alive but cannot act (in its start-up grace, its store behind) is covered.
 *   4. The sender writes the new alertstate/ record (the event's id is derived from it and
 *      kept in it), and only then queues one POST per alert/ record that asks for the kind.
 *      Every other PoP finds the record equal to what it sees and stays silent, whatever its
 *      rank; so does the sender itself on its next evaluation and after a restart.
 *
 * BOUNDS. An event is announced twice only when two PoPs both decide before either has the
 * other's record: their SWIM views differ about who is alive (rank 0 in two views) within
 * the settle time, or a takeover PoP decides during the write's spread (milliseconds against
 * ALERT_TAKEOVER_MS), or a PoP just restarted ranks first and still lacks the latest record
 * after its grace and the settle time (anti-entropy repairs within about a second). In a
 * partition each side has a rank 0 and announces what it sees: a PoP
 * cut off alone reports every other PoP down (the others, between them, report it down once);
 * after the partition heals the records converge (last writer wins) and a subject whose
 * merged record disagrees with what the PoPs see is announced once more. An event is lost
 * when its sender dies between writing the record and delivering (the queue is in memory), when
 * the state flips back within the settle time, or when every delivery attempt fails (counted,
 * logged). The receiver can drop duplicates by the event id, which is the same for retries.
 *
 * Delivery (queue, retries, timeouts) is alertpost.h's. The test knob
 * POPMESH_TEST_ALERT_NO_GUARD (logged) makes every PoP announce what it sees, from its own
 * memory, with neither the rank nor the record: the integration test shows duplicates then. */
#ifndef POPMESH_NODE_ALERT_ALERT_H
#define POPMESH_NODE_ALERT_ALERT_H

#include "node/ctl/control.h"
#include "node/membership/meshnode.h"
#include "storage/store.h"

#include <ev.h>
#include <msgpack.h>
#include <stdint.h>

#define ALERT_CERT_DAYS        14    /* days: a certificate closer to its notAfter is expiring */
#define ALERT_SETTLE_MS        2000  /* ms a changed state must hold before it is announced */
#define ALERT_TAKEOVER_MS      10000 /* ms between two ranks' turns */
#define ALERT_STARTUP_GRACE_MS 5000  /* ms after start before this PoP announces anything */
#define ALERT_TICK_S           1.0   /* s: evaluation when something changed or is settling */
#define ALERT_CERT_RECHECK_S   60.0  /* s: certificates age without a change to say so */

typedef struct alert alert_t;

typedef struct alert_opts {
    struct ev_loop *loop;
    store_t *store;     /* borrowed: alert/, alertstate/, cert/ and sitehealth/ are read */
    meshnode_t *mesh;   /* borrowed: writes, and the change hook */
    control_t *control; /* borrowed: members, sites, targets answers (control_call) */
    const char *node_name;
    uint64_t self_id;
} alert_opts_t;

/* NULL with a reason in err. */
alert_t *alert_new(const alert_opts_t *o, char *err, size_t errlen);
/* Stops the delivery worker (an attempt under way is aborted). Accepts NULL. */
void alert_destroy(alert_t **ap);
/* alert.add, alert.list, alert.rm. */
int alert_register_commands(alert_t *a, control_t *ctl);

/* Adds {"alerts": {...counters}} to a status answer: the map gets this many pairs. */
#define ALERT_STATUS_PAIRS 1
void alert_pack_status(const alert_t *a, msgpack_packer *pk);

#endif
