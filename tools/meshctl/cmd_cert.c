/* meshctl's commands for TLS: certificates (import, list, rm) and tls status.
 *
 * Not compiled alone: meshctl.c includes this file where its helpers (usage, take_opt,
 * named_action, query, roundtrip, ...) are defined, as it does cmd_dns.c. The table entries are
 * in meshctl.c's commands[].
 *
 * cert import reads the two PEM files here and sends their text; popd checks everything (the
 * PEM, the key against the certificate, names, expiry) and seals the key before it is stored.
 * The key's bytes are wiped from meshctl's memory once sent. */
#include "node/tls/certstore.h"

/* Reads at most max bytes of path into *out (malloc'd, NUL-terminated). 0, or prints why and
 * returns an exit code. */
static int read_pem_file(const command_t *self, const char *what, const char *path, size_t max,
                         char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "meshctl: cannot read the %s file %s: %s\n", what, path, strerror(errno));
        (void)self;
        return EXIT_USAGE;
    }
    char *buf = xmalloc(max + 2);
    size_t n = fread(buf, 1, max + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || n > max) {
        sodium_memzero(buf, max + 2);
        free(buf);
        fprintf(stderr, "meshctl: the %s file %s %s\n", what, path,
                bad ? "cannot be read" : "is too large for a PEM file of its kind");
        return EXIT_USAGE;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return EXIT_OK;
}

static int cmd_cert_import(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *cert = take_opt(&argc, argv, "--cert", &err);
    const char *key = take_opt(&argc, argv, "--key", &err);
    if (err)
        return usage(self, "an option is missing its value");
    if (argc)
        return usage(self, "unexpected argument '%s'", argv[0]);
    if (!cert || !key)
        return usage(self, "cert import needs --cert FILE and --key FILE");
    char *chain_pem = NULL, *key_pem = NULL;
    size_t chain_len = 0, key_len = 0;
    int rc = read_pem_file(self, "certificate", cert, CERT_CHAIN_MAX, &chain_pem, &chain_len);
    if (rc)
        return rc;
    rc = read_pem_file(self, "key", key, CERT_KEY_MAX, &key_pem, &key_len);
    if (rc) {
        free(chain_pem);
        return rc;
    }
    request_t r;
    request_begin(&r, "cert.import", 2);
    mpw_str(&r.pk, "chain");
    mpw_strn(&r.pk, chain_pem, chain_len);
    mpw_str(&r.pk, "key");
    mpw_strn(&r.pk, key_pem, key_len);
    sodium_memzero(key_pem, key_len);
    free(key_pem);
    free(chain_pem);
    /* roundtrip, but the request (which holds the key) is wiped before it is freed. */
    request_end(&r);
    ctl_response_t resp;
    uint8_t *raw = NULL;
    rc = call(c, &r.buf, &resp, &raw);
    sodium_memzero(r.buf.data, r.buf.size);
    msgpack_sbuffer_destroy(&r.buf);
    if (rc)
        return rc;
    if (resp.status != CTL_OK) {
        rc = report_failure(&resp);
        free(raw);
        return rc;
    }
    json_t *j = mpjson_from(resp.body, resp.body_len);
    free(raw);
    if (!j) {
        fprintf(stderr, "meshctl: popd's answer could not be rendered\n");
        return EXIT_UNREACHABLE;
    }
    if (c->json) {
        print_json(j);
    } else {
        char until[40];
        printf("certificate %s %s: ", json_string_value(json_object_get(j, "id")),
               json_is_true(json_object_get(j, "replaced")) ? "imported, replacing the old one"
                                                            : "imported");
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(j, "names"), i, n)
            printf("%s%s", i ? ", " : "", json_string_value(n));
        printf("; not after %s\n",
               human_time((uint64_t)json_integer_value(json_object_get(j, "not_after_ms")), until,
                          sizeof(until)));
    }
    json_decref(j);
    return EXIT_OK;
}

/* The OCSP column: the state popd reports (what the PoP staples), with the time that matters,
 * UTC and short ("good until 12-08 10:00"); the rest is in --json. */
static const char *ocsp_cell(json_t *o, char *buf, size_t len)
{
    const char *st = json_string_value(json_object_get(o, "state"));
    if (!st)
        return "-";
    const char *word = NULL, *key = NULL;
    if (!strcmp(st, "good"))
        word = "good until", key = "next_update_ms";
    else if (!strcmp(st, "stale"))
        word = "stale since", key = "next_update_ms";
    else if (!strcmp(st, "revoked"))
        word = "revoked", key = "revoked_ms";
    json_int_t ms = key ? json_integer_value(json_object_get(o, key)) : 0;
    if (ms <= 0) {
        snprintf(buf, len, "%s", st);
        return buf;
    }
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    char when[32];
    gmtime_r(&secs, &tm);
    strftime(when, sizeof(when), "%m-%d %H:%M", &tm);
    snprintf(buf, len, "%s %s", word, when);
    return buf;
}

static int cmd_cert_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "cert.list", &j);
    if (rc || !j)
        return rc;
    size_t i;
    json_t *e;
    printf("%-30s %-40s %-20s %-7s %-14s %-10s %-22s %s\n", "ID", "NAMES", "NOT AFTER", "SOURCE",
           "OBTAINED BY", "STATE", "OCSP (UTC)", "ISSUER");
    json_array_foreach(json_object_get(j, "certs"), i, e)
    {
        char names[512] = "", until[40] = "-";
        size_t k, off = 0;
        json_t *n;
        json_array_foreach(json_object_get(e, "names"), k, n)
        {
            int w = snprintf(names + off, sizeof(names) - off, "%s%s", k ? "," : "",
                             json_string_value(n));
            if (w < 0 || (size_t)w >= sizeof(names) - off) {
                snprintf(names + sizeof(names) - 4, 4, "...");
                break;
            }
            off += (size_t)w;
        }
        json_t *na = json_object_get(e, "not_after_ms");
        if (json_integer_value(na) > 0)
            human_time((uint64_t)json_integer_value(na), until, sizeof(until));
        const char *src = json_string_value(json_object_get(e, "source"));
        const char *by = json_string_value(json_object_get(e, "obtained_by"));
        const char *iss = json_string_value(json_object_get(e, "issuer"));
        json_t *ocsp = json_object_get(e, "ocsp");
        char ocell[48];
        printf("%-30s %-40s %-20s %-7s %-14s %-10s %-22s %s\n",
               json_string_value(json_object_get(e, "id")), names[0] ? names : "-", until,
               src ? src : "-", by && by[0] ? by : "-",
               json_string_value(json_object_get(e, "state")),
               ocsp_cell(ocsp, ocell, sizeof(ocell)), iss && iss[0] ? iss : "-");
        const char *error = json_string_value(json_object_get(e, "error"));
        if (error && error[0])
            printf("    error: %s\n", error);
        /* A stored response no PoP will staple: say which check it fails. */
        const char *ost = json_string_value(json_object_get(ocsp, "state"));
        const char *reason = json_string_value(json_object_get(ocsp, "reason"));
        if (ost && !strcmp(ost, "unusable") && reason)
            printf("    ocsp: %s\n", reason);
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_cert_rm(ctx_t *c, const command_t *self, int argc, char **argv)
{
    json_t *j;
    int rc = named_action(c, self, argc, argv, "cert.rm", "cert", &j);
    if (rc || !j)
        return rc;
    printf("certificate %s removed\n", json_string_value(json_object_get(j, "id")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_tls_status(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "tls.status", &j);
    if (rc || !j)
        return rc;
    printf("certificates: %lld (%lld valid)\n",
           (long long)json_integer_value(json_object_get(j, "certs")),
           (long long)json_integer_value(json_object_get(j, "certs_valid")));
    json_t *t = json_object_get(j, "tickets");
    if (!json_is_object(t)) {
        printf("session tickets: off\n");
        json_decref(j);
        return EXIT_OK;
    }
    const char *cur = json_string_value(json_object_get(t, "current"));
    printf("session tickets: period %.0f s, period number %lld, current key %s\n",
           (double)json_integer_value(json_object_get(t, "period_ms")) / 1000,
           (long long)json_integer_value(json_object_get(t, "epoch")),
           cur ? cur : "none yet (no ticket is issued)");
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(t, "keys"), i, k)
    {
        char when[40];
        printf("  period %-12lld key %s  by %-14s %s\n",
               (long long)json_integer_value(json_object_get(k, "epoch")),
               json_string_value(json_object_get(k, "name")),
               json_string_value(json_object_get(k, "created_by")),
               human_time((uint64_t)json_integer_value(json_object_get(k, "created_ms")), when,
                          sizeof(when)));
    }
    printf("written here: %lld (%lld as fallback), old records deleted: %lld, unreadable: %lld\n",
           (long long)json_integer_value(json_object_get(t, "written")),
           (long long)json_integer_value(json_object_get(t, "fallbacks")),
           (long long)json_integer_value(json_object_get(t, "deleted")),
           (long long)json_integer_value(json_object_get(t, "unreadable")));
    json_decref(j);
    return EXIT_OK;
}
