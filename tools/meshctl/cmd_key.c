/* meshctl's commands for the key hierarchy: key status, list, certify, export-root,
 * rotate-root (docs/security.md, "The key hierarchy").
 *
 * Not compiled alone: meshctl.c includes this file where its helpers (usage, take_opt,
 * roundtrip, ...) are defined. The table entries are in meshctl.c's commands[].
 * key certify --root FILE signs the certificate here, with a root that never touches popd:
 * popd is asked only for the node's id and key, and checks what it is given against the
 * roots it pinned before storing it. */

#include "node/records/nodecert.h"

static int cmd_key_status(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j;
    int rc = query(c, self, argc, "key.status", &j);
    if (rc || c->json)
        return rc;
    const char *root = json_string_value(json_object_get(j, "root"));
    const char *prev = json_string_value(json_object_get(j, "root_previous"));
    printf("root:          %s%s\n", root && *root ? root : "(none pinned)",
           json_is_true(json_object_get(j, "root_key_here")) ? " (its key is on this PoP)" : "");
    if (prev && *prev) {
        char when[40];
        printf(
            "previous root: %s, accepted until %s\n", prev,
            human_time((uint64_t)json_integer_value(json_object_get(j, "root_previous_until_ms")),
                       when, sizeof(when)));
    }
    printf("this PoP:      %s (certificate: %s)\n", json_string_value(json_object_get(j, "caps")),
           json_string_value(json_object_get(j, "cert")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_key_list(ctx_t *c, const command_t *self, int argc, char **argv)
{
    (void)argv;
    json_t *j, *e;
    size_t i;
    int rc = query(c, self, argc, "key.list", &j);
    if (rc || c->json)
        return rc;
    printf("%-16s  %-36s  %-16s  %s\n", "NODE", "CAPABILITIES", "ISSUER", "STATE");
    json_array_foreach(j, i, e)
    {
        const char *why = json_string_value(json_object_get(e, "why"));
        printf("%-16s  %-36s  %-16s  %s\n", json_string_value(json_object_get(e, "node")),
               json_string_value(json_object_get(e, "caps")),
               json_string_value(json_object_get(e, "issuer")),
               json_is_true(json_object_get(e, "valid")) ? "valid" : why);
    }
    json_decref(j);
    return EXIT_OK;
}

static int cmd_key_certify(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *node = take_opt(&argc, argv, "--node", &err);
    const char *capstr = take_opt(&argc, argv, "--capabilities", &err);
    const char *rootfile = take_opt(&argc, argv, "--root", &err);
    const char *valid = take_opt(&argc, argv, "--valid", &err);
    char why[300];
    uint32_t caps = CAP_ALL;
    uint64_t valid_ms = NODECERT_VALID;
    if (err)
        return usage(self, "an option is missing its value");
    if (argc)
        return usage(self, "unexpected argument '%s'", argv[0]);
    if (!node)
        return usage(self, "key certify needs --node NAME");
    if (capstr && nodecert_caps_parse(capstr, &caps, why, sizeof(why)))
        return usage(self, "--capabilities: %s", why);
    if (valid && (parse_duration_ms(valid, &valid_ms) || !valid_ms))
        return usage(self, "--valid '%s' is not a duration (e.g. 365d)", valid);
    request_t r;
    json_t *j;
    if (!rootfile) {
        request_begin(&r, "key.certify", 2);
        mpw_str(&r.pk, "node");
        mpw_str(&r.pk, node);
        mpw_str(&r.pk, "caps");
        msgpack_pack_uint32(&r.pk, caps);
    } else {
        rootkey_t root;
        if (rootkey_load(rootfile, &root, why, sizeof(why))) {
            fprintf(stderr, "meshctl: %s\n", why);
            return EXIT_REFUSED;
        }
        request_begin(&r, "key.node", 1);
        mpw_str(&r.pk, "node");
        mpw_str(&r.pk, node);
        int rc = roundtrip(c, &r, &j);
        if (rc) {
            sodium_memzero(&root, sizeof(root));
            return rc;
        }
        const char *id = json_string_value(json_object_get(j, "id"));
        const char *spk = json_string_value(json_object_get(j, "sign_pk"));
        nodecert_t cert = {.caps = caps | CAP_VERIFY};
        size_t bl = 0;
        if (!id || !spk || sodium_hex2bin(cert.sign_pk, 32, spk, strlen(spk), NULL, &bl, NULL) ||
            bl != 32) {
            json_decref(j);
            sodium_memzero(&root, sizeof(root));
            fprintf(stderr, "meshctl: popd sent no usable key for %s\n", node);
            return EXIT_REFUSED;
        }
        cert.node_id = strtoull(id, NULL, 16);
        json_decref(j);
        uint64_t now = (uint64_t)time(NULL) * 1000;
        cert.not_before_ms = now - 60000;
        cert.not_after_ms = now + valid_ms;
        nodecert_sign(&cert, &root);
        sodium_memzero(&root, sizeof(root));
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        nodecert_pack(&pk, &cert);
        request_begin(&r, "key.certify", 2);
        mpw_str(&r.pk, "node");
        mpw_str(&r.pk, node);
        mpw_str(&r.pk, "cert");
        mpw_raw(&r.pk, sb.data, sb.size); /* the certificate as a msgpack object */
        msgpack_sbuffer_destroy(&sb);
    }
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json)
        print_json(j);
    else
        printf("certified %s (%s): %s\n", json_string_value(json_object_get(j, "node")),
               json_string_value(json_object_get(j, "id")),
               json_string_value(json_object_get(j, "caps")));
    json_decref(j);
    return EXIT_OK;
}

static int cmd_key_export_root(ctx_t *c, const command_t *self, int argc, char **argv)
{
    if (argc != 1)
        return usage(self, "key export-root takes one FILE");
    request_t r;
    json_t *j;
    request_begin(&r, "key.export-root", 0);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    const char *seed = json_string_value(json_object_get(j, "root_seed"));
    char id[17];
    snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(j, "root")));
    uint8_t s[32];
    size_t bl = 0;
    rootkey_t root;
    char why[4400];
    if (!seed || sodium_hex2bin(s, sizeof(s), seed, strlen(seed), NULL, &bl, NULL) || bl != 32) {
        json_decref(j);
        fprintf(stderr, "meshctl: popd sent no usable root key\n");
        return EXIT_REFUSED;
    }
    crypto_sign_seed_keypair(root.pk, root.sk, s);
    sodium_memzero(s, sizeof(s));
    json_decref(j); /* the seed's text goes with it */
    rc = rootkey_save(argv[0], &root, why, sizeof(why));
    sodium_memzero(&root, sizeof(root));
    if (rc) {
        fprintf(stderr, "meshctl: %s; the root stays on the PoP\n", why);
        return EXIT_REFUSED;
    }
    /* Written and synced: now the PoP may forget it. */
    request_begin(&r, "key.forget-root", 1);
    mpw_str(&r.pk, "root");
    mpw_str(&r.pk, id);
    if ((rc = roundtrip(c, &r, &j)) != 0) {
        fprintf(stderr, "meshctl: the root was written to %s but is still on the PoP\n", argv[0]);
        return rc;
    }
    json_decref(j);
    printf("root %s written to %s (mode 0600) and removed from the PoP; certify PoPs with "
           "meshctl key certify --root %s\n",
           id, argv[0], argv[0]);
    return EXIT_OK;
}

static int cmd_key_rotate_root(ctx_t *c, const command_t *self, int argc, char **argv)
{
    int err = 0;
    const char *roll = take_opt(&argc, argv, "--rollover", &err);
    uint64_t ms = 24ull * 3600 * 1000;
    if (err)
        return usage(self, "an option is missing its value");
    if (argc)
        return usage(self, "unexpected argument '%s'", argv[0]);
    if (roll && parse_duration_ms(roll, &ms))
        return usage(self, "--rollover '%s' is not a duration (e.g. 1d)", roll);
    request_t r;
    json_t *j;
    request_begin(&r, "key.rotate-root", 1);
    mpw_str(&r.pk, "rollover_ms");
    msgpack_pack_uint64(&r.pk, ms);
    int rc = roundtrip(c, &r, &j);
    if (rc)
        return rc;
    if (c->json) {
        print_json(j);
    } else {
        char when[40];
        printf("root rotated to %s; the previous root is accepted until %s\n",
               json_string_value(json_object_get(j, "root")),
               human_time((uint64_t)json_integer_value(json_object_get(j, "previous_until_ms")),
                          when, sizeof(when)));
    }
    json_decref(j);
    return EXIT_OK;
}
