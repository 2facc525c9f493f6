/* Fuzzes the local file parsers: popd.conf (kvfile + nodecfg) and node.key (identity). */
#include "node/records/identity.h"
#include "node/nodecfg.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    nodecfg_t c;
    identity_t id;
    char err[256];
    nodecfg_defaults(&c);
    nodecfg_parse((const char *)data, size, &c, err, sizeof(err));
    identity_parse((const char *)data, size, &id, err, sizeof(err));
    uint64_t v;
    nodecfg_parse_size((const char *)data, size, &v);
    nodecfg_parse_duration((const char *)data, size, &v);
    return 0;
}
