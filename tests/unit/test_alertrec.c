/* Webhook alert records (node/records/alertrec.h) and the pure parts of delivery
 * (node/alert/alertpost.h): URLs accepted and refused (each with its reason), event lists,
 * records round trip and refuse what alert.add refuses or a record under another key, the
 * sender rule (exactly one PoP ranks first, whatever the order of the list; a PoP not in the
 * list never does), stable event ids, the log-safe origin of a URL, and the retry backoff. */
#include "common/mp.h"
#include "node/alert/alertpost.h"
#include "node/records/alertrec.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_urls(void **state)
{
    (void)state;
    static const char *const good[] = {
        "http://127.0.0.1:8080/hook",
        "https://hooks.example.com/services/T0/B0?token=abc",
        "http://[::1]:9/",
        "http://localhost",
        "https://a-b.example_x.test:65535/p?q=1&r=%20",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        const char *why = NULL;
        if (alert_check_url(good[i], &why))
            fail_msg("refused '%s': %s", good[i], why);
    }
    static const char *const bad[] = {
        "",
        "ftp://example.com/",
        "HTTP://example.com/",
        "http://",
        "http:///path",
        "http://:80/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://user:pw@example.com/",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:/",
        "http://example.com:8x/",
        "http://example.com/#frag",
        "http://[::1/",
        "http://[::1]x/",
        "http://[zz]/",
        "http://exa$mple.com/",
        "http://example.com/\x7f",
        "javascript:alert(1)",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        if (alert_check_url(bad[i], &why) != -EINVAL)
            fail_msg("accepted '%s'", bad[i]);
        assert_non_null(why);
    }
    char longurl[ALERT_URL_MAX + 10];
    memcpy(longurl, "http://x/", 9);
    memset(longurl + 9, 'a', sizeof(longurl) - 10);
    longurl[sizeof(longurl) - 1] = '\0';
    const char *why;
    assert_int_equal(alert_check_url(longurl, &why), -EINVAL);
    /* logs get scheme://host[:port] only: the path and query may be the secret */
    char o[ALERT_URL_MAX + 1];
    alert_url_origin("https://hooks.example.com/services/SECRET?token=SECRET2", o, sizeof(o));
    assert_string_equal(o, "https://hooks.example.com");
    alert_url_origin("http://[::1]:8080/x", o, sizeof(o));
    assert_string_equal(o, "http://[::1]:8080");
    alert_url_origin("ftp://x/SECRET", o, sizeof(o));
    assert_string_equal(o, "(bad url)");
}

static void test_events(void **state)
{
    (void)state;
    unsigned m;
    const char *why;
    assert_int_equal(alert_events_parse("all", &m, &why), 0);
    assert_int_equal(m, ALERT_EVENTS_ALL);
    assert_int_equal(alert_events_parse("site,pop", &m, &why), 0);
    assert_int_equal(m, (1u << ALERT_POP) | (1u << ALERT_SITE));
    char s[64];
    alert_events_str(m, s, sizeof(s));
    assert_string_equal(s, "pop,site");
    static const char *const bad[] = {"",        "disk", "pop,",     ",pop",   "pop,,site",
                                      "pop,pop", "Pop",  "pop site", "all,pop"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        if (alert_events_parse(bad[i], &m, &why) != -EINVAL)
            fail_msg("accepted events '%s'", bad[i]);
        assert_non_null(why);
    }
    assert_int_equal(alert_events_parse("disk", &m, &why), -EINVAL);
    assert_non_null(strstr(why, "pop, site, target and cert"));
}

static void pack_alert(msgpack_sbuffer *sb, const alert_rec_t *a)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    alert_pack(&pk, a);
}

static void test_alert_record(void **state)
{
    (void)state;
    alert_rec_t a = {.name = "ops",
                     .url = "http://127.0.0.1:9/hook",
                     .events = (1u << ALERT_POP) | (1u << ALERT_CERT),
                     .created_ms = 1765000000000};
    alert_rec_t b;
    const char *why;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    pack_alert(&sb, &a);
    assert_int_equal(alert_parse((const uint8_t *)sb.data, sb.size, "ops", &b, &why), 0);
    assert_string_equal(b.url, a.url);
    assert_int_equal(b.events, a.events);
    assert_true(b.created_ms == a.created_ms);
    /* under another key */
    assert_int_equal(alert_parse((const uint8_t *)sb.data, sb.size, "other", &b, &why), -EBADMSG);
    /* what alert.add refuses, a record refuses */
    alert_rec_t bad = a;
    snprintf(bad.url, sizeof(bad.url), "ftp://x/");
    pack_alert(&sb, &bad);
    assert_int_equal(alert_parse((const uint8_t *)sb.data, sb.size, "ops", &b, &why), -EBADMSG);
    bad = a;
    bad.events = 0;
    pack_alert(&sb, &bad);
    assert_int_equal(alert_parse((const uint8_t *)sb.data, sb.size, "ops", &b, &why), -EBADMSG);
    bad = a;
    snprintf(bad.name, sizeof(bad.name), "Ops!");
    pack_alert(&sb, &bad);
    assert_int_equal(alert_parse((const uint8_t *)sb.data, sb.size, "Ops!", &b, &why), -EBADMSG);
    /* an unknown kind or a kind twice in a record */
    msgpack_packer pk;
    for (int v = 0; v < 2; v++) {
        msgpack_sbuffer_clear(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 3);
        mpw_kv_str(&pk, "name", "ops");
        mpw_kv_str(&pk, "url", "http://x/");
        mpw_str(&pk, "events");
        msgpack_pack_array(&pk, 2);
        mpw_str(&pk, "pop");
        mpw_str(&pk, v ? "pop" : "disk");
        assert_int_equal(alert_parse((const uint8_t *)sb.data, sb.size, "ops", &b, &why), -EBADMSG);
    }
    /* truncations never read past the end */
    pack_alert(&sb, &a);
    for (size_t n = 0; n < sb.size; n++)
        assert_int_equal(alert_parse((const uint8_t *)sb.data, n, "ops", &b, &why), -EBADMSG);
    char key[ALERT_KEY_MAX + 1];
    assert_int_equal(alert_key("ops", key, sizeof(key)), 0);
    assert_string_equal(key, "alert/ops");
    assert_int_equal(alert_key("a/b", key, sizeof(key)), -EINVAL);
    msgpack_sbuffer_destroy(&sb);
}

static void test_state_record(void **state)
{
    (void)state;
    alertstate_rec_t s = {.kind = ALERT_TARGET,
                          .subject = "web/127.0.0.1:8080",
                          .state = "down",
                          .since_ms = 42,
                          .by = "pop-a"};
    alert_event_id(s.kind, s.subject, s.state, s.since_ms, 7, s.event);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    alertstate_pack(&pk, &s);
    alertstate_rec_t b;
    const char *why;
    assert_int_equal(alertstate_parse((const uint8_t *)sb.data, sb.size, ALERT_TARGET,
                                      "web/127.0.0.1:8080", &b, &why),
                     0);
    assert_string_equal(b.state, "down");
    assert_string_equal(b.event, s.event);
    assert_string_equal(b.by, "pop-a");
    /* another kind or subject than the key's */
    assert_int_equal(alertstate_parse((const uint8_t *)sb.data, sb.size, ALERT_SITE,
                                      "web/127.0.0.1:8080", &b, &why),
                     -EBADMSG);
    assert_int_equal(
        alertstate_parse((const uint8_t *)sb.data, sb.size, ALERT_TARGET, "web/x", &b, &why),
        -EBADMSG);
    for (size_t n = 0; n < sb.size; n++)
        assert_int_equal(alertstate_parse((const uint8_t *)sb.data, n, ALERT_TARGET,
                                          "web/127.0.0.1:8080", &b, &why),
                         -EBADMSG);
    /* a bad event id, a bad state */
    alertstate_rec_t bad = s;
    snprintf(bad.event, sizeof(bad.event), "XYZ");
    msgpack_sbuffer_clear(&sb);
    alertstate_pack(&pk, &bad);
    assert_int_equal(alertstate_parse((const uint8_t *)sb.data, sb.size, ALERT_TARGET,
                                      "web/127.0.0.1:8080", &b, &why),
                     -EBADMSG);
    bad = s;
    snprintf(bad.state, sizeof(bad.state), "Down!");
    msgpack_sbuffer_clear(&sb);
    alertstate_pack(&pk, &bad);
    assert_int_equal(alertstate_parse((const uint8_t *)sb.data, sb.size, ALERT_TARGET,
                                      "web/127.0.0.1:8080", &b, &why),
                     -EBADMSG);
    char key[ALERT_KEY_MAX + 1];
    assert_int_equal(alertstate_key(ALERT_POP, "pop-b", key, sizeof(key)), 0);
    assert_string_equal(key, "alertstate/pop/pop-b");
    assert_int_equal(alertstate_key(ALERT_POP, "has space", key, sizeof(key)), -EINVAL);
    assert_int_equal(alertstate_key(ALERT_KINDS, "x", key, sizeof(key)), -EINVAL);
    msgpack_sbuffer_destroy(&sb);
}

static void test_rank(void **state)
{
    (void)state;
    const uint64_t pops[5] = {0x1111, 0x2222, 0x3333, 0x4444, 0x5555};
    const uint64_t rev[5] = {0x5555, 0x4444, 0x3333, 0x2222, 0x1111};
    unsigned firsts[5] = {0};
    for (int k = 0; k < 200; k++) {
        char key[64];
        snprintf(key, sizeof(key), "alertstate/site/s%d", k);
        unsigned zero = 0, seen[5] = {0};
        for (int i = 0; i < 5; i++) {
            unsigned r = alert_rank(pops[i], pops, 5, key);
            assert_true(r < 5);
            assert_int_equal(r, alert_rank(pops[i], rev, 5, key)); /* order does not matter */
            seen[r]++;
            if (r == 0) {
                zero++;
                firsts[i]++;
            }
        }
        assert_int_equal(zero, 1); /* exactly one sender */
        for (int r = 0; r < 5; r++)
            assert_int_equal(seen[r], 1);
        /* the sender leaves: the next one takes its place, the rest keep their order */
        assert_int_equal(alert_rank(0x9999, pops, 5, key), 5);
    }
    for (int i = 0; i < 5; i++) /* spread: each PoP sends some share */
        assert_true(firsts[i] > 10);
    char a[ALERT_EVENT_ID_LEN + 1], b[ALERT_EVENT_ID_LEN + 1], c[ALERT_EVENT_ID_LEN + 1];
    alert_event_id(ALERT_POP, "pop-b", "down", 1000, 1, a);
    alert_event_id(ALERT_POP, "pop-b", "down", 1000, 1, b);
    alert_event_id(ALERT_POP, "pop-b", "up", 1000, 1, c);
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_int_equal(strlen(a), ALERT_EVENT_ID_LEN);
}

static void test_backoff(void **state)
{
    (void)state;
    assert_int_equal(alertpost_backoff_ms(1, 1000, 60000), 1000);
    assert_int_equal(alertpost_backoff_ms(2, 1000, 60000), 2000);
    assert_int_equal(alertpost_backoff_ms(4, 1000, 60000), 8000);
    assert_int_equal(alertpost_backoff_ms(7, 1000, 60000), 60000);
    assert_int_equal(alertpost_backoff_ms(1000, 1000, 60000), 60000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),         cmocka_unit_test(test_events),
        cmocka_unit_test(test_alert_record), cmocka_unit_test(test_state_record),
        cmocka_unit_test(test_rank),         cmocka_unit_test(test_backoff),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
