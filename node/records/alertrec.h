/* alertrec: webhook alerts, replicated to every PoP, and the state each alerted subject was
 * last announced in.
 *
 *   alert/<name>                      {name, url, events: [str], created_ms}
 *   alertstate/<kind>/<subject>       {kind, subject, state, event, since_ms, by}
 *
 * An alert/ record is an operator's subscription: POST a JSON object to url for every event of
 * the kinds in events (pop, site, target, cert). An alertstate/ record is written by the one
 * PoP that announces a change of a subject (a PoP, a site, a target, a certificate) just before
 * it posts: it is both the mesh's memory of what was last said about the subject and the guard
 * that keeps the other PoPs from saying it again (node/alert/alert.h has the rule). event is the
 * event's id, stable across retries and the same at every PoP that reads the record.
 *
 * Both records come from other nodes through replication, so the parsers read untrusted bytes:
 * every field is bounds-checked, the rules alert.add applies are applied again, unknown fields
 * are skipped, a missing required field or a field seen twice refuses the record. A webhook URL
 * may carry a secret in its path or query (many services put their token there): logs get
 * alert_url_origin's scheme://host[:port] only. Loop-free; fuzzed (tests/fuzz/fuzz_alertrec.c). */
#ifndef POPMESH_NODE_RECORDS_ALERTREC_H
#define POPMESH_NODE_RECORDS_ALERTREC_H

#include "storage/store.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ALERT_PREFIX       "alert/"
#define ALERTSTATE_PREFIX  "alertstate/"
#define ALERT_NAME_MAX     63   /* a node name's rules (nodecfg_check_name) */
#define ALERT_URL_MAX      1024 /* bytes */
#define ALERT_SUBJECT_MAX  200  /* bytes: "<resource>/<host:port>" fits with the key's prefix */
#define ALERT_STATE_MAX    15
#define ALERT_EVENT_ID_LEN 16  /* hex digits */
#define ALERT_BY_MAX       63  /* a node name */
#define ALERT_KEY_MAX      256 /* STORE_KEY_MAX */

enum alert_kind { ALERT_POP = 0, ALERT_SITE, ALERT_TARGET, ALERT_CERT, ALERT_KINDS };
#define ALERT_EVENTS_ALL ((1u << ALERT_KINDS) - 1)

typedef struct alert_rec {
    char name[ALERT_NAME_MAX + 1];
    char url[ALERT_URL_MAX + 1]; /* http:// or https:// (alert_check_url) */
    unsigned events;             /* bit (1 << enum alert_kind); never 0 */
    uint64_t created_ms;         /* Unix ms */
} alert_rec_t;

typedef struct alertstate_rec {
    enum alert_kind kind;
    char subject[ALERT_SUBJECT_MAX + 1]; /* printable ASCII, no spaces */
    char state[ALERT_STATE_MAX + 1];     /* "up", "down", "expiring", ... (a-z only) */
    char event[ALERT_EVENT_ID_LEN + 1];  /* lowercase hex */
    uint64_t since_ms;                   /* Unix ms: when the writer decided */
    char by[ALERT_BY_MAX + 1];           /* the PoP that announced it */
} alertstate_rec_t;

/* "pop", "site", "target", "cert"; NULL out of range. */
const char *alert_kind_name(enum alert_kind k);
/* 0 with *k, or -EINVAL. */
int alert_kind_parse(const char *s, size_t len, enum alert_kind *k);
/* A comma-separated list of kinds ("pop,site"; "all" is every kind) into a mask. 0, or -EINVAL
 * with *why (static): an unknown kind, an empty item, a kind twice. */
int alert_events_parse(const char *s, unsigned *mask, const char **why);
/* The mask as "pop,site,target,cert" into out. */
void alert_events_str(unsigned mask, char *out, size_t len);

/* An alert's name: nodecfg_check_name's rules. 0 or -EINVAL with *why. */
int alert_check_name(const char *name, const char **why);
/* A webhook URL: http:// or https://, a host (a name, IPv4 or [IPv6]) and an optional
 * port 1..65535, then an optional path and query; printable ASCII without spaces, at most
 * ALERT_URL_MAX bytes, no user:password@ and no fragment. 0 or -EINVAL with *why. */
int alert_check_url(const char *url, const char **why);
/* scheme://host[:port] of a URL alert_check_url accepts (for logs: the path may hold a
 * secret); "(bad url)" otherwise. */
void alert_url_origin(const char *url, char *out, size_t len);
/* Everything alert.add checks. 0 or -EINVAL with *why. */
int alert_check(const alert_rec_t *a, const char **why);
/* "alert/<name>" into out; 0, or -EINVAL (bad name, too long). */
int alert_key(const char *name, char *out, size_t len);
void alert_pack(msgpack_packer *pk, const alert_rec_t *a);
/* A record stored under alert/<name>: 0, or -EBADMSG with *why (static). */
int alert_parse(const uint8_t *buf, size_t len, const char *name, alert_rec_t *a, const char **why);
/* Every readable record in key order; unreadable ones skipped with a log line. 0 or -errno
 * from the store (*out then NULL). Caller owns *out (free()). */
int alert_list(store_t *store, alert_rec_t **out, size_t *n);

/* A subject: 1..ALERT_SUBJECT_MAX bytes of printable ASCII without spaces. */
bool alert_subject_ok(const char *s);
/* "alertstate/<kind>/<subject>" into out; 0 or -EINVAL. */
int alertstate_key(enum alert_kind k, const char *subject, char *out, size_t len);
void alertstate_pack(msgpack_packer *pk, const alertstate_rec_t *s);
/* A record stored under alertstate/<kind>/<subject>: kind and subject must be the key's.
 * 0, or -EBADMSG with *why. */
int alertstate_parse(const uint8_t *buf, size_t len, enum alert_kind kind, const char *subject,
                     alertstate_rec_t *s, const char **why);

/* ---- the sender rule, pure (node/alert/alert.h says why) ---- */

/* self's rank among pops (n ids, self among them or not; 0 = the sender) for the subject key
 * (the alertstate/ key): rendezvous hashing, BLAKE2b-64 of (id, key), highest first. n when
 * self is not in pops. */
unsigned alert_rank(uint64_t self, const uint64_t *pops, size_t n, const char *key);
/* The event id: BLAKE2b-64 of (kind, subject, state, since_ms, writer id) in hex. */
void alert_event_id(enum alert_kind k, const char *subject, const char *state, uint64_t since_ms,
                    uint64_t writer, char out[ALERT_EVENT_ID_LEN + 1]);

#endif
