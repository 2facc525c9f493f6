/* Fuzzes what node/acme reads from outside: the CA's JSON (directory, order, authorization,
 * problem documents, renewalInfo and its RFC 3339 times) and the replicated records
 * (acme/config, acmechal/, acmedns/, leases). The first byte picks the reader, the rest is its
 * input. Anything must be refused cleanly or give values that hold the readers' promises:
 * https:// URLs without spaces, base64url tokens (they become store keys and URL paths),
 * bounded counts, DNS names, a window that does not end before it starts; and a record that
 * decodes must re-encode and decode to the same fields. */
#include "node/acme/acmeproto.h"
#include "node/acme/acmerec.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void url_ok(const char *u, bool may_be_empty)
{
    if (!u[0] && may_be_empty)
        return;
    if (strncmp(u, "https://", 8) || strlen(u) > ACME_URL_MAX)
        abort();
    for (const char *p = u; *p; p++)
        if (*p <= 0x20 || *p >= 0x7f)
            abort();
}

static void pack_roundtrip_lease(const acme_lease_t *l)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    acme_lease_pack(&pk, l);
    acme_lease_t back;
    const char *why;
    if (acme_lease_parse((const uint8_t *)sb.data, sb.size, &back, &why) ||
        strcmp(back.holder, l->holder) || back.version != l->version ||
        back.expires_ms != l->expires_ms || strcmp(back.error, l->error))
        abort();
    msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *j = (const char *)data + 1;
    size_t n = size - 1;
    char err[256];
    const char *why = NULL;
    switch (data[0] % 9) {
    case 0: {
        acme_directory_t d;
        if (acme_directory_parse(j, n, &d, err, sizeof(err)) == 0) {
            url_ok(d.new_nonce, false);
            url_ok(d.new_account, false);
            url_ok(d.new_order, false);
            url_ok(d.renewal_info, true);
        }
        break;
    }
    case 1: {
        acme_order_t o;
        if (acme_order_parse(j, n, &o, err, sizeof(err)) == 0) {
            if (o.nauthz == 0 || o.nauthz > ACME_AUTHZ_MAX)
                abort();
            for (size_t i = 0; i < o.nauthz; i++)
                url_ok(o.authz[i], false);
            url_ok(o.finalize, false);
            url_ok(o.certificate, true);
        }
        acme_order_free(&o);
        break;
    }
    case 2: {
        acme_authz_t a;
        if (acme_authz_parse(j, n, &a, err, sizeof(err)) == 0) {
            if (!acme_name_ok(a.identifier, strlen(a.identifier)) ||
                a.nchallenges > ACME_CHALLENGES_MAX)
                abort();
            for (size_t i = 0; i < a.nchallenges; i++) {
                url_ok(a.challenges[i].url, false);
                if (!acme_token_ok(a.challenges[i].token, strlen(a.challenges[i].token)))
                    abort();
            }
        }
        break;
    }
    case 3: {
        char out[64];
        acme_problem_str(j, n, out, sizeof(out));
        if (strlen(out) >= sizeof(out))
            abort();
        for (const char *p = out; *p; p++)
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                abort();
        break;
    }
    case 4: {
        acme_config_t c;
        int rc = acme_config_parse((const uint8_t *)j, n, &c, &why);
        if (rc && (rc != -EBADMSG || !why))
            abort();
        if (rc == 0 && strncmp(c.directory, "https://", 8))
            abort();
        acme_config_free(&c);
        break;
    }
    case 5: {
        acmechal_rec_t c;
        if (acmechal_parse((const uint8_t *)j, n, "tok", &c, &why) == 0 &&
            strncmp(c.key_authorization, "tok.", 4))
            abort();
        break;
    }
    case 6: {
        acmedns_rec_t d;
        if (acmedns_parse((const uint8_t *)j, n, &d, &why) == 0) {
            if (d.nvalues == 0 || d.nvalues > ACME_TXT_VALUES_MAX)
                abort();
            for (size_t i = 0; i < d.nvalues; i++)
                if (!d.values[i][0] || strchr(d.values[i], '"') || strchr(d.values[i], '\\'))
                    abort();
        }
        break;
    }
    case 8: { /* renewalInfo answers and the times in them */
        uint64_t st, en;
        if (acme_ari_parse(j, n, &st, &en, err, sizeof(err)) == 0 && st > en)
            abort();
        char t[64];
        size_t tl = n < sizeof(t) - 1 ? n : sizeof(t) - 1;
        memcpy(t, j, tl);
        t[tl] = '\0';
        acme_time_parse(t, &st);
        break;
    }
    case 7: {
        acme_lease_t l;
        if (acme_lease_parse((const uint8_t *)j, n, &l, &why) == 0)
            pack_roundtrip_lease(&l);
        break;
    }
    }
    return 0;
}
