/* Fuzzes what a second factor and the identity keys decode from others: the code and the
 * recovery code a client types (totp.h), the totp/, totpuse/ and jwk/ records another node
 * wrote (totprec.h, idjwt.h). Anything either fails cleanly or decodes to values within their
 * bounds, and a decoded record re-encodes and decodes to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "node/auth/idjwt.h"
#include "node/auth/totp.h"
#include "node/records/totprec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *why;
    uint32_t code;
    char canon[TOTP_RECOVERY_CHARS + 1];
    if (totp_code_parse(s, size, &code) == 0 && code > 999999)
        abort();
    if (totp_recovery_parse(s, size, canon) == 0 && strlen(canon) != TOTP_RECOVERY_CHARS)
        abort();
    (void)totp_is_recovery(s, size);

    totp_rec_t t, back;
    if (totprec_parse(data, size, "alice", &t, &why) == 0) {
        if (t.nrecovery > TOTPREC_RECOVERY || t.sealed_len > sizeof(t.sealed) ||
            strcmp(t.name, "alice"))
            abort();
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        totprec_pack(&pk, &t);
        if (totprec_parse((uint8_t *)sb.data, sb.size, "alice", &back, &why) ||
            back.enrolled_ms != t.enrolled_ms || back.nrecovery != t.nrecovery ||
            back.sealed_len != t.sealed_len || memcmp(back.sealed, t.sealed, t.sealed_len))
            abort();
        msgpack_sbuffer_destroy(&sb);
    }
    totp_use_t u;
    if (totpuse_parse(data, size, &u, &why) == 0 && (u.recovery_used >> TOTPREC_RECOVERY))
        abort();
    uint8_t pub[32];
    (void)idjwt_jwk_parse(data, size, 42, pub, &why);
    return 0;
}
