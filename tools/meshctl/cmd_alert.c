/* meshctl's commands for webhook alerts: alert add, list, rm.
 *
 * Not compiled alone: meshctl.c includes this file where its helpers (usage, take_opt,
 * named_action, roundtrip, ...) are defined. The table entries are in meshctl.c's commands[].
 * popd checks the URL and the event kinds (the checks every PoP applies to the records);
 * meshctl only passes them on. */

static int cmd_alert_add(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *url = take_opt(&argc, argv, "--webhook", &err);
    const char *events = take_opt(&argc, argv, "--events", &err);
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 1)
        return usage(self, argc ? "unexpected argument '%s'" : "alert add takes one NAME%s",
                     argc ? argv[1] : "");
    if (!url)
        return usage(self, "alert add needs --webhook URL (http:// or https://)");
    request_t r;
    json_t *j;
    request_begin(&r, "alert.add", 2 + !!events);
    mpw_str(&r.pk, "name");
    mpw_str(&r.pk, argv[0]);
    mpw_str(&r.pk, "url");
    mpw_str(&r.pk, url);
    if (events) {
        mpw_str(&r.pk, "events");
        mpw_str(&r.pk, events);
    }
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        size_t i;
        json_t *e;
        printf("alert %s added: ", json_string_value(json_object_get(j, "name")));
        json_array_foreach(json_object_get(j, "events"), i, e)
            printf("%s%s", i ? "," : "", json_string_value(e));
        printf(" events to %s\n", json_string_value(json_object_get(j, "url")));
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_alert_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "alert.list", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *a;
    printf("%-24s %-24s %-20s %s\n", "NAME", "EVENTS", "CREATED", "WEBHOOK");
    json_array_foreach(json_object_get(j, "alerts"), i, a)
    {
        char ev[64] = "", when[40];
        size_t k;
        json_t *e;
        json_array_foreach(json_object_get(a, "events"), k, e)
        {
            size_t l = strlen(ev);
            snprintf(ev + l, sizeof(ev) - l, "%s%s", k ? "," : "", json_string_value(e));
        }
        printf("%-24s %-24s %-20s %s\n", json_string_value(json_object_get(a, "name")), ev,
               human_time((uint64_t)json_integer_value(json_object_get(a, "created_ms")), when,
                          sizeof(when)),
               json_string_value(json_object_get(a, "url")));
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_alert_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "alert.rm", "name", &j);
    if (rc || !j)
        return rc;
    printf("alert %s removed\n", json_string_value(json_object_get(j, "name")));
    json_decref(j);
    return EXIT_OK;
}
