/* meshctl's commands for OpenID Connect providers: idp add, idp list, idp rm.
 *
 * Not compiled alone: meshctl.c includes this file after cmd_cert.c (it uses read_pem_file)
 * where its helpers (usage, take_opt, roundtrip, ...) are defined. The table entries are in
 * meshctl.c's commands[].
 *
 * The client secret is read from stdin (one line), never from the command line where ps and
 * shell history would show it; it goes over the local control socket and popd seals it under
 * the store key before it is stored. idp list never shows it, only whether there is one. */

#define IDPCTL_SECRET_MAX 512       /* bytes (idprec.h IDP_SECRET_MAX) */
#define IDPCTL_CA_MAX     (32 << 10) /* bytes of a CA bundle (IDP_CA_PEM_MAX) */

static int cmd_idp_add(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *issuer = take_opt(&argc, argv, "--issuer", &err);
    const char *cid = take_opt(&argc, argv, "--client-id", &err);
    const char *scopes = take_opt(&argc, argv, "--scopes", &err);
    const char *gclaim = take_opt(&argc, argv, "--groups-claim", &err);
    const char *domains = take_opt(&argc, argv, "--allowed-domains", &err);
    const char *ca = take_opt(&argc, argv, "--ca", &err);
    bool auto_create = take_flag(&argc, argv, "--auto-create");
    bool no_secret = take_flag(&argc, argv, "--no-secret");
    bool http = take_flag(&argc, argv, "--insecure-http-loopback");
    if (err)
        return usage(self, "an option is missing its value");
    if (argc != 1)
        return usage(self, "idp add takes one NAME");
    if (!issuer || !cid)
        return usage(self, "idp add needs --issuer URL and --client-id ID");
    char secret[IDPCTL_SECRET_MAX + 2] = "";
    size_t sl = 0;
    if (!no_secret) {
        if (isatty(STDIN_FILENO))
            fprintf(stderr, "client secret: ");
        if (!fgets(secret, sizeof(secret), stdin)) {
            fprintf(stderr, "meshctl: no client secret on stdin (pipe it: printf '%%s\\n' "
                            "\"$SECRET\" | meshctl idp add ...; --no-secret for a public "
                            "client)\n");
            return EXIT_USAGE;
        }
        sl = strlen(secret);
        if (sl == sizeof(secret) - 1 && secret[sl - 1] != '\n') {
            sodium_memzero(secret, sizeof(secret));
            return usage(self, "the client secret is longer than %d bytes", IDPCTL_SECRET_MAX);
        }
        while (sl && (secret[sl - 1] == '\n' || secret[sl - 1] == '\r'))
            secret[--sl] = '\0';
        if (!sl)
            return usage(self, "the client secret is empty (--no-secret for a public client)");
    }
    char *ca_pem = NULL;
    size_t ca_len = 0;
    if (ca) {
        int rc = read_pem_file(self, "CA bundle", ca, IDPCTL_CA_MAX, &ca_pem, &ca_len);
        if (rc) {
            sodium_memzero(secret, sizeof(secret));
            return rc;
        }
    }
    request_t r;
    json_t *j;
    request_begin(&r, "idp.add",
                  5 + !!sl + !!scopes + !!gclaim + !!domains + !!ca);
    mpw_kv_str(&r.pk, "name", argv[0]);
    mpw_kv_str(&r.pk, "issuer", issuer);
    mpw_kv_str(&r.pk, "client_id", cid);
    mpw_str(&r.pk, "auto_create");
    msgpack_pack_uint64(&r.pk, auto_create);
    mpw_str(&r.pk, "allow_http");
    msgpack_pack_uint64(&r.pk, http);
    if (sl)
        mpw_kv_str(&r.pk, "client_secret", secret);
    sodium_memzero(secret, sizeof(secret));
    if (scopes)
        mpw_kv_str(&r.pk, "scopes", scopes);
    if (gclaim)
        mpw_kv_str(&r.pk, "groups_claim", gclaim);
    if (domains)
        mpw_kv_str(&r.pk, "allowed_domains", domains);
    if (ca) {
        mpw_str(&r.pk, "ca_pem");
        mpw_strn(&r.pk, ca_pem, ca_len);
    }
    free(ca_pem);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json)
        print_json(j);
    else
        printf("identity provider %s added (%s); register https://HOST%s as a redirect URI "
               "for every HOST users sign in at\n",
               json_string_value(json_object_get(j, "name")),
               json_string_value(json_object_get(j, "issuer")),
               json_string_value(json_object_get(j, "callback_path")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_idp_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "idp.list", &j);
    if (rc || !j)
        return rc;
    printf("%-16s %-40s %-20s %-7s %-12s %-6s %s\n", "NAME", "ISSUER", "CLIENT ID", "SECRET",
           "GROUPS", "AUTO", "ALLOWED DOMAINS");
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(j, "providers"), i, p)
    {
        char doms[512] = "";
        size_t k, o = 0;
        json_t *d;
        json_array_foreach(json_object_get(p, "allowed_domains"), k, d)
            o += (size_t)snprintf(doms + o, o < sizeof(doms) ? sizeof(doms) - o : 0, "%s%s",
                                  k ? "," : "", json_string_value(d));
        const char *g = json_string_value(json_object_get(p, "groups_claim"));
        printf("%-16s %-40s %-20s %-7s %-12s %-6s %s%s\n",
               json_string_value(json_object_get(p, "name")),
               json_string_value(json_object_get(p, "issuer")),
               json_string_value(json_object_get(p, "client_id")),
               json_is_true(json_object_get(p, "client_secret")) ? "sealed" : "none",
               g && g[0] ? g : "-", json_is_true(json_object_get(p, "auto_create")) ? "yes" : "no",
               doms[0] ? doms : "-",
               json_is_true(json_object_get(p, "insecure_http")) ? "  (plain http: tests only)"
                                                                 : "");
    }
    json_t *st = json_object_get(j, "stats");
    printf("\nthis PoP: %lld started, %lld signed in, %lld refused, %lld failed\n",
           (long long)json_integer_value(json_object_get(st, "started")),
           (long long)json_integer_value(json_object_get(st, "signed_in")),
           (long long)json_integer_value(json_object_get(st, "refused")),
           (long long)json_integer_value(json_object_get(st, "failed")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_idp_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "idp.rm", "name", &j);
    if (rc || !j)
        return rc;
    printf("identity provider %s removed; its users' sessions keep working until they expire "
           "(meshctl user rm IDP:SUBJECT ends one)\n",
           argv[0]);
    json_decref(j);
    return EXIT_OK;
}
