/* Fuzzes the webhook alert records (node/records/alertrec.h), which PoPs read from the
 * replicated store (records from other nodes), and the URL and event-list checks, which read
 * what an operator or a control request typed. Any bytes must be refused cleanly (-EBADMSG /
 * -EINVAL with a reason) or decode to a record that passes the checks alert.add applies and
 * re-encodes to the same fields. alert_parse runs with the corpus's name and with the record's
 * own name (from a first decode), alertstate_parse likewise, so the fuzzer gets past the key
 * check. */
#include "node/records/alertrec.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_alert(const uint8_t *data, size_t size, const char *name)
{
    alert_rec_t a, back;
    const char *why = NULL;
    int rc = alert_parse(data, size, name, &a, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    if (strcmp(a.name, name) || alert_check(&a, &why))
        abort();
    char key[ALERT_KEY_MAX + 1], origin[ALERT_URL_MAX + 1];
    if (alert_key(a.name, key, sizeof(key)))
        abort();
    alert_url_origin(a.url, origin, sizeof(origin));
    if (strncmp(a.url, origin, strlen(origin)))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    alert_pack(&pk, &a);
    if (alert_parse((const uint8_t *)sb.data, sb.size, name, &back, &why) != 0 ||
        strcmp(a.url, back.url) || a.events != back.events || a.created_ms != back.created_ms)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void check_state(const uint8_t *data, size_t size, enum alert_kind k, const char *subject)
{
    alertstate_rec_t s, back;
    const char *why = NULL;
    int rc = alertstate_parse(data, size, k, subject, &s, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    char key[ALERT_KEY_MAX + 1];
    if (s.kind != k || strcmp(s.subject, subject) || alertstate_key(k, subject, key, sizeof(key)))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    alertstate_pack(&pk, &s);
    if (alertstate_parse((const uint8_t *)sb.data, sb.size, k, subject, &back, &why) != 0 ||
        strcmp(s.state, back.state) || strcmp(s.event, back.event) || strcmp(s.by, back.by) ||
        s.since_ms != back.since_ms)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

/* The same bytes as text: a URL and an event list. */
static void check_text(const uint8_t *data, size_t size)
{
    char text[ALERT_URL_MAX + 8];
    if (size >= sizeof(text))
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *why = NULL;
    if (alert_check_url(text, &why) != 0) {
        if (!why)
            abort();
    } else {
        char origin[ALERT_URL_MAX + 1];
        alert_url_origin(text, origin, sizeof(origin));
        if (alert_check_url(origin, &why) != 0 || strncmp(text, origin, strlen(origin)))
            abort();
    }
    unsigned mask;
    why = NULL;
    if (alert_events_parse(text, &mask, &why) != 0) {
        if (!why)
            abort();
    } else {
        char list[64];
        unsigned again;
        if (!mask || (mask & ~ALERT_EVENTS_ALL))
            abort();
        alert_events_str(mask, list, sizeof(list));
        if (alert_events_parse(list, &again, &why) != 0 || again != mask)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_alert(data, size, "ops");
    check_state(data, size, ALERT_POP, "pop-b");
    check_state(data, size, ALERT_TARGET, "web/127.0.0.1:8080");
    /* with the record's own name and subject, when it has them */
    alert_rec_t a;
    const char *why;
    memset(&a, 0, sizeof(a));
    char name[ALERT_NAME_MAX + 1];
    if (alert_parse(data, size, "ops", &a, &why) == -EBADMSG && a.name[0]) {
        memcpy(name, a.name, sizeof(name));
        check_alert(data, size, name);
    }
    alertstate_rec_t s;
    for (int k = 0; k < ALERT_KINDS; k++) {
        memset(&s, 0, sizeof(s));
        if (alertstate_parse(data, size, (enum alert_kind)k, "x", &s, &why) != 0 && s.subject[0] &&
            alert_subject_ok(s.subject)) {
            char subject[ALERT_SUBJECT_MAX + 1];
            memcpy(subject, s.subject, sizeof(subject));
            check_state(data, size, (enum alert_kind)k, subject);
        }
    }
    check_text(data, size);
    return 0;
}
