/* Fuzzes the TLS record decoders (node/tls/certstore.h): cert/ records and tlsticket/ records,
 * which arrive from other nodes. Any bytes must be refused cleanly (-EBADMSG with a reason,
 * nothing allocated left behind) or decode to a record that passes the checks an import
 * applies (names, id of the first name, source, sizes) and re-encodes to the same fields.
 * Every input goes through both decoders, each with the id or epoch the record itself claims
 * (found with the bounded reader), so the fuzzer gets past the key check, and with a fixed
 * one. */
#include "common/mp.h"
#include "node/tls/certstore.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The value of field name of a map, when it is a string (*s) or an unsigned integer (*u). */
static bool find_field(const uint8_t *data, size_t size, const char *name, char *s, size_t cap,
                       uint64_t *u)
{
    mpr_t r;
    uint32_t n;
    mpr_init(&r, data, size);
    if (mpr_map(&r, &n))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (mpr_str(&r, &k, &kl))
            return false;
        if (kl == strlen(name) && !memcmp(k, name, kl)) {
            const char *v;
            uint32_t vl;
            if (s && mpr_peek(&r) == MP_STR && mpr_str(&r, &v, &vl) == 0 && vl < cap) {
                memcpy(s, v, vl);
                s[vl] = '\0';
                return true;
            }
            return u && mpr_uint(&r, u) == 0;
        }
        if (mpr_skip(&r))
            return false;
    }
    return false;
}

static void check_cert(const uint8_t *data, size_t size, const char *id)
{
    cert_rec_t c, back;
    const char *why = NULL;
    int rc = cert_parse(data, size, id, &c, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why || c.names || c.chain_pem || c.key_sealed)
            abort();
        return;
    }
    char want[CERT_ID_MAX + 1], key[300];
    if (strcmp(c.id, id) || c.nnames < 1 || c.nnames > CERT_NAMES_MAX ||
        cert_id_for(c.names[0], want, sizeof(want)) || strcmp(want, id) ||
        cert_key(id, key, sizeof(key)) || strlen(c.chain_pem) > CERT_CHAIN_MAX ||
        c.key_sealed_len > CERT_KEY_MAX + STORESEAL_OVERHEAD)
        abort();
    for (size_t i = 0; i < c.nnames; i++)
        if (cert_check_name(c.names[i], &why) || !cert_name_matches(c.names[i], c.names[i]))
            abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    cert_pack(&pk, &c);
    if (cert_parse((const uint8_t *)sb.data, sb.size, id, &back, &why) != 0 ||
        back.nnames != c.nnames || strcmp(back.chain_pem, c.chain_pem) ||
        back.key_sealed_len != c.key_sealed_len ||
        (c.key_sealed_len && memcmp(back.key_sealed, c.key_sealed, c.key_sealed_len)) ||
        back.not_after_ms != c.not_after_ms || strcmp(back.state, c.state) ||
        strcmp(back.error, c.error) || back.renew_after_ms != c.renew_after_ms)
        abort();
    for (size_t i = 0; i < c.nnames; i++)
        if (strcmp(back.names[i], c.names[i]))
            abort();
    cert_rec_free(&back);
    msgpack_sbuffer_destroy(&sb);
    cert_rec_free(&c);
}

static void check_ticket(const uint8_t *data, size_t size, uint64_t epoch)
{
    tlsticket_rec_t t, back;
    const char *why = NULL;
    int rc = tlsticket_parse(data, size, epoch, &t, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    if (t.epoch != epoch || (t.key_sealed_len != TLSTICKET_KEY_LEN + STORESEAL_OVERHEAD &&
                             t.key_sealed_len != TLSTICKET_KEY_LEN + STORESEAL_LEGACY_OVERHEAD))
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    tlsticket_pack(&pk, &t);
    if (tlsticket_parse((const uint8_t *)sb.data, sb.size, epoch, &back, &why) != 0 ||
        back.key_sealed_len != t.key_sealed_len ||
        memcmp(back.key_sealed, t.key_sealed, t.key_sealed_len) ||
        back.created_ms != t.created_ms || strcmp(back.created_by, t.created_by))
        abort();
    msgpack_sbuffer_destroy(&sb);
    char key[64];
    uint64_t e2;
    if (tlsticket_key(epoch, key, sizeof(key)) || tlsticket_key_epoch(key, strlen(key), &e2) ||
        e2 != epoch)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char id[CERT_ID_MAX + 1];
    uint64_t epoch;
    check_cert(data, size, "www.example.test");
    if (find_field(data, size, "id", id, sizeof(id), NULL))
        check_cert(data, size, id);
    check_ticket(data, size, 7);
    if (find_field(data, size, "epoch", NULL, 0, &epoch))
        check_ticket(data, size, epoch);
    /* The key and name helpers read operator and peer text too. */
    if (size < 300) {
        char s[300];
        memcpy(s, data, size);
        s[size] = '\0';
        const char *why;
        char out[CERT_ID_MAX + 1];
        char key[300], back[CERT_ID_MAX + 1];
        if (cert_check_name(s, &why) == 0 && cert_id_for(s, out, sizeof(out)) == 0 &&
            (cert_key(out, key, sizeof(key)) || cert_key_id(key, strlen(key), back, sizeof(back)) ||
             strcmp(back, out)))
            abort(); /* name -> id -> key -> id round trip */
        (void)cert_key_id(s, size, out, sizeof(out));
        (void)tlsticket_key_epoch(s, size, &epoch);
        (void)cert_name_matches(s, "www.example.test");
    }
    return 0;
}
