/* meshctl's commands for ACME: acme set and acme show.
 *
 * Not compiled alone: meshctl.c includes this file after cmd_cert.c (it uses read_pem_file)
 * where its helpers (usage, take_opt, roundtrip, ...) are defined. The table entries are in
 * meshctl.c's commands[].
 *
 * acme set reads the CA bundle here and sends its text: the PoPs that order certificates are
 * not this machine. The EAB MAC key is sent as given (base64url) over the local control
 * socket and sealed by popd before it is stored. popd checks the URL, the address and the
 * PEM. */

#define ACMECTL_CA_MAX (32 << 10) /* bytes of a CA bundle (acmerec.h ACME_CA_PEM_MAX) */

static int cmd_acme_set(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *dir = take_opt(&argc, argv, "--directory", &err);
    const char *email = take_opt(&argc, argv, "--email", &err);
    const char *ca = take_opt(&argc, argv, "--ca-bundle", &err);
    const char *eab = take_opt(&argc, argv, "--eab", &err);
    if (err)
        return usage(self, "an option is missing its value");
    if (argc)
        return usage(self, "unexpected argument '%s'", argv[0]);
    if (!dir || !email)
        return usage(self, "acme set needs --directory URL and --email ADDR");
    const char *colon = eab ? strchr(eab, ':') : NULL;
    if (eab && (!colon || colon == eab || !colon[1]))
        return usage(self, "--eab takes KID:HMAC (the HMAC key in base64url, as the CA gives it)");
    char *ca_pem = NULL;
    size_t ca_len = 0;
    if (ca) {
        int rc = read_pem_file(self, "CA bundle", ca, ACMECTL_CA_MAX, &ca_pem, &ca_len);
        if (rc)
            return rc;
    }
    request_t r;
    json_t *j;
    request_begin(&r, "acme.set", 2 + (ca ? 1 : 0) + (eab ? 2 : 0));
    mpw_kv_str(&r.pk, "directory", dir);
    mpw_kv_str(&r.pk, "email", email);
    if (ca) {
        mpw_str(&r.pk, "ca_pem");
        mpw_strn(&r.pk, ca_pem, ca_len);
    }
    if (eab) {
        mpw_str(&r.pk, "eab_kid");
        mpw_strn(&r.pk, eab, (size_t)(colon - eab));
        mpw_kv_str(&r.pk, "eab_hmac", colon + 1);
    }
    free(ca_pem);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json)
        print_json(j);
    else
        printf("ACME set: %s as %s%s; every HTTP host in the mesh's zones gets a certificate\n",
               json_string_value(json_object_get(j, "directory")),
               json_string_value(json_object_get(j, "email")),
               json_is_true(json_object_get(j, "new_account_key")) ? " (new account key)" : "");
    json_decref(j);
    return EXIT_OK;
}

static void print_ms(const char *label, json_int_t ms)
{
    char when[64] = "-";
    if (ms > 0) {
        time_t t = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
    }
    printf("%-20s %s\n", label, when);
}

static int cmd_acme_show(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "acme.show", &j);
    if (rc || !j)
        return rc;
    printf("%-20s %s\n", "directory", json_string_value(json_object_get(j, "directory")));
    printf("%-20s %s\n", "email", json_string_value(json_object_get(j, "email")));
    printf("%-20s %s\n", "ca bundle",
           json_is_true(json_object_get(j, "ca_bundle")) ? "yes" : "no (system roots)");
    const char *eab = json_string_value(json_object_get(j, "eab_kid"));
    printf("%-20s %s\n", "eab kid", eab && eab[0] ? eab : "-");
    printf("%-20s %s\n", "account thumbprint",
           json_string_value(json_object_get(j, "account_thumbprint")));
    const char *acct = json_string_value(json_object_get(j, "account_url"));
    printf("%-20s %s\n", "account url", acct && acct[0] ? acct : "- (not yet registered here)");
    printf("%-20s %s\n", "set by", json_string_value(json_object_get(j, "set_by")));
    print_ms("set at", json_integer_value(json_object_get(j, "created_ms")));
    const char *oc = json_string_value(json_object_get(j, "order_cert"));
    printf("%-20s %s%s%s\n", "order here", oc && oc[0] ? oc : "none",
           oc && oc[0] ? " at step " : "",
           oc && oc[0] ? json_string_value(json_object_get(j, "order_step")) : "");
    json_t *leases = json_object_get(j, "leases");
    if (json_array_size(leases)) {
        printf("\n%-32s %-12s %-20s %8s %-20s %s\n", "CERT", "HOLDER", "LEASE UNTIL", "FAILURES",
               "RETRY AFTER", "LAST ERROR");
        size_t i;
        json_t *l;
        json_array_foreach(leases, i, l)
        {
            char until[32] = "released", retry[32] = "-";
            json_int_t e = json_integer_value(json_object_get(l, "expires_ms"));
            json_int_t ra = json_integer_value(json_object_get(l, "retry_after_ms"));
            struct tm tm;
            time_t t;
            if (e > 0) {
                t = (time_t)(e / 1000);
                gmtime_r(&t, &tm);
                strftime(until, sizeof(until), "%Y-%m-%d %H:%M:%SZ", &tm);
            }
            if (ra > 0) {
                t = (time_t)(ra / 1000);
                gmtime_r(&t, &tm);
                strftime(retry, sizeof(retry), "%Y-%m-%d %H:%M:%SZ", &tm);
            }
            const char *er = json_string_value(json_object_get(l, "error"));
            printf("%-32s %-12s %-20s %8lld %-20s %s\n",
                   json_string_value(json_object_get(l, "cert")),
                   json_string_value(json_object_get(l, "holder")), until,
                   (long long)json_integer_value(json_object_get(l, "failures")), retry,
                   er && er[0] ? er : "-");
        }
    }
    json_t *st = json_object_get(j, "stats");
    printf("\nthis PoP: %lld orders, %lld issued, %lld failed, %lld leases lost\n",
           (long long)json_integer_value(json_object_get(st, "orders")),
           (long long)json_integer_value(json_object_get(st, "issued")),
           (long long)json_integer_value(json_object_get(st, "failed")),
           (long long)json_integer_value(json_object_get(st, "leases_lost")));
    json_decref(j);
    return EXIT_OK;
}
