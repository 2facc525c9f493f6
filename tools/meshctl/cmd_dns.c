/* meshctl's commands for DNS steering's configuration: zones, geo rules and draining a PoP.
 *
 * Not compiled alone: meshctl.c includes this file where its helpers (usage, take_opt,
 * named_action, roundtrip, ...) are defined, so these commands share them without the helpers
 * leaving meshctl.c's file scope, and work on them does not collide with work on meshctl.c.
 * The table entries are in meshctl.c's commands[].
 *
 * Values are checked by popd (zone names, TTL and answers ranges, CIDRs, locations), the same
 * checks every PoP applies to the records; meshctl only checks that numbers are numbers. */

/* A whole decimal number in [0, UINT64_MAX] (no sign, no suffix); 0 or -1. */
static int parse_whole(const char *s, uint64_t *out)
{
    char *end;
    if (!*s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

static int cmd_zone_add(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *ttl = take_opt(&argc, argv, "--ttl", &err);
    const char *answers = take_opt(&argc, argv, "--answers", &err);
    uint64_t ttl_s = 0, nanswers = 0;
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 1)
        return usage(self, argc ? "unexpected argument '%s'" : "zone add takes one ZONE%s",
                     argc ? argv[1] : "");
    if (ttl && parse_whole(ttl, &ttl_s))
        return usage(self, "--ttl '%s' is not a whole number of seconds (1 to 86400)", ttl);
    if (answers && parse_whole(answers, &nanswers))
        return usage(self, "--answers '%s' is not a whole number (1 to 8)", answers);
    request_t r;
    json_t *j;
    request_begin(&r, "zone.add", 1 + !!ttl + !!answers);
    mpw_str(&r.pk, "zone");
    mpw_str(&r.pk, argv[0]);
    if (ttl) {
        mpw_str(&r.pk, "ttl");
        msgpack_pack_uint64(&r.pk, ttl_s);
    }
    if (answers) {
        mpw_str(&r.pk, "answers");
        msgpack_pack_uint64(&r.pk, nanswers);
    }
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json)
        print_json(j);
    else
        printf("zone %s added: ttl %llds, %lld address(es) per answer\n",
               json_string_value(json_object_get(j, "name")),
               (long long)json_integer_value(json_object_get(j, "ttl")),
               (long long)json_integer_value(json_object_get(j, "answers")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_zone_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "zone.list", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *z;
    printf("%-40s %6s %7s %s\n", "ZONE", "TTL", "ANSWERS", "CREATED");
    json_array_foreach(json_object_get(j, "zones"), i, z)
    {
        char when[40];
        printf("%-40s %5llds %7lld %s\n", json_string_value(json_object_get(z, "name")),
               (long long)json_integer_value(json_object_get(z, "ttl")),
               (long long)json_integer_value(json_object_get(z, "answers")),
               human_time((uint64_t)json_integer_value(json_object_get(z, "created_ms")), when,
                          sizeof(when)));
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_zone_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "zone.rm", "zone", &j);
    if (rc || !j)
        return rc;
    printf("zone %s removed\n", json_string_value(json_object_get(j, "zone")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_geo_add(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *loc = take_opt(&argc, argv, "--location", &err);
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 2)
        return usage(self, argc > 2 ? "unexpected argument '%s'" : "geo add takes CIDR and %s",
                     argc > 2 ? argv[2] : "REGION");
    request_t r;
    json_t *j;
    request_begin(&r, "geo.add", 2 + !!loc);
    mpw_str(&r.pk, "cidr");
    mpw_str(&r.pk, argv[0]);
    mpw_str(&r.pk, "region");
    mpw_str(&r.pk, argv[1]);
    if (loc) {
        mpw_str(&r.pk, "location");
        mpw_str(&r.pk, loc);
    }
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        const char *l = json_string_value(json_object_get(j, "location"));
        printf("geo rule %s -> region %s%s%s added\n",
               json_string_value(json_object_get(j, "cidr")),
               json_string_value(json_object_get(j, "region")), l ? ", location " : "", l ? l : "");
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_geo_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "geo.list", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *g;
    printf("%-44s %-20s %-24s %s\n", "CIDR", "REGION", "LOCATION", "CREATED");
    json_array_foreach(json_object_get(j, "geos"), i, g)
    {
        char when[40];
        const char *l = json_string_value(json_object_get(g, "location"));
        printf("%-44s %-20s %-24s %s\n", json_string_value(json_object_get(g, "cidr")),
               json_string_value(json_object_get(g, "region")), l ? l : "-",
               human_time((uint64_t)json_integer_value(json_object_get(g, "created_ms")), when,
                          sizeof(when)));
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_geo_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "geo.rm", "cidr", &j);
    if (rc || !j)
        return rc;
    printf("geo rule %s removed\n", json_string_value(json_object_get(j, "cidr")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_node_drain(ctx_t *c, const command_t *self, int argc, char **argv)
{
    bool undo = take_flag(&argc, argv, "--undo");
    if (argc != 1)
        return usage(self, argc ? "unexpected argument '%s'" : "node drain takes one NAME%s",
                     argc ? argv[1] : "");
    request_t r;
    json_t *j;
    request_begin(&r, "node.drain", 2);
    mpw_str(&r.pk, "name");
    mpw_str(&r.pk, argv[0]);
    mpw_str(&r.pk, "undo");
    if (undo)
        msgpack_pack_true(&r.pk);
    else
        msgpack_pack_false(&r.pk);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        bool draining = json_is_true(json_object_get(j, "draining"));
        bool changed = json_is_true(json_object_get(j, "changed"));
        printf("PoP %s %s%s\n", json_string_value(json_object_get(j, "name")),
               changed ? "" : "already ",
               draining ? "draining: DNS answers leave it out" : "not draining");
    }
    json_decref(j);
    return EXIT_OK;
}
