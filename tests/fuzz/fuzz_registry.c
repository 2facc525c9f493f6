/* Fuzzes the registry record decoders (node/records/registry.h), which read records replicated from
 * other nodes. reg_node_parse runs with a fixed id and, so the fuzzer can get past the key/id
 * check, with the id of every 32-byte bin it finds in the input (a curve_pk candidate). Any
 * record that decodes must re-encode and decode to the same fields. Keys go through
 * reg_node_key_id, whose successes must format back to the same key. */
#include "node/records/geo.h"
#include "node/records/identity.h"
#include "node/records/registry.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIXED_ID 0x0123456789abcdefull

static void check_node(const uint8_t *data, size_t size, uint64_t id)
{
    reg_node_t n, back;
    const char *why = NULL;
    int rc = reg_node_parse(data, size, id, &n, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    if (n.id != id || identity_node_id_of(n.curve_pk) != id)
        abort();
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_node_pack(&pk, &n);
    if (reg_node_parse((const uint8_t *)sb.data, sb.size, id, &back, &why) != 0 ||
        strcmp(n.name, back.name) || strcmp(n.region, back.region) || strcmp(n.addr, back.addr) ||
        memcmp(n.curve_pk, back.curve_pk, 32) || memcmp(n.sign_pk, back.sign_pk, 32) ||
        n.role != back.role || n.joined_ms != back.joined_ms || n.removed != back.removed ||
        strcmp(n.tunnel_addr, back.tunnel_addr) || strcmp(n.public4, back.public4) ||
        strcmp(n.public6, back.public6) || n.has_loc != back.has_loc || n.lat != back.lat ||
        n.lon != back.lon || strcmp(n.dns_addr, back.dns_addr) || n.draining != back.draining ||
        strcmp(n.site, back.site))
        abort();
    if (n.has_loc && !geo_location_ok(n.lat, n.lon))
        abort();
    msgpack_sbuffer_destroy(&sb);
}

static void check_token(const uint8_t *data, size_t size)
{
    reg_token_t t, back;
    const char *why = NULL;
    int rc = reg_token_parse(data, size, FIXED_ID, &t, &why);
    if (rc != 0) {
        if (rc != -EBADMSG || !why)
            abort();
        return;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    reg_token_pack(&pk, &t);
    if (reg_token_parse((const uint8_t *)sb.data, sb.size, FIXED_ID, &back, &why) != 0 ||
        back.id != FIXED_ID || t.role != back.role || t.expires_ms != back.expires_ms ||
        t.uses_max != back.uses_max || t.created_ms != back.created_ms ||
        strcmp(t.created_by, back.created_by) || memcmp(t.join_pk, back.join_pk, 32) ||
        t.revoked != back.revoked || strcmp(t.site, back.site) || t.site_token != back.site_token)
        abort();
    msgpack_sbuffer_destroy(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_node(data, size, FIXED_ID);
    /* bin8 of 32 bytes: c4 20 <32 bytes> */
    int tried = 0;
    for (size_t i = 0; i + 34 <= size && tried < 8; i++) {
        if (data[i] == 0xc4 && data[i + 1] == 0x20) {
            check_node(data, size, identity_node_id_of(data + i + 2));
            tried++;
        }
    }
    check_token(data, size);

    uint64_t id;
    if (reg_node_key_id((const char *)data, size, &id) == 0) {
        char key[64];
        reg_node_key(id, key, sizeof(key));
        if (strlen(key) != size || memcmp(key, data, size) != 0)
            abort();
    }
    return 0;
}
