/* joinclient: the joiner's side of the join handshake (used by popd join, later popsite).
 *
 * It connects to each seed named in the token in turn, as a CURVE client whose key is the
 * token's join key and with the seed's key pinned, sends JOIN and waits for JOIN_OK or
 * JOIN_ERR. A socket monitor turns the silent failures of a CURVE handshake into reasons:
 * a ZAP refusal means the seed's mesh does not know the token; a broken handshake means the
 * seed's key is not the one in the token. */
#ifndef POPMESH_NODE_JOINCLIENT_H
#define POPMESH_NODE_JOINCLIENT_H

#include "node/token.h"

#include <stddef.h>
#include <stdint.h>

typedef struct join_request {
    const char *name;
    const char *region;
    const char *addr; /* where the joiner will be reachable */
    const uint8_t *curve_pk;
    const uint8_t *sign_pk;
    const char *role;
} join_request_t;

/* On success *reply (caller frees) holds the JOIN_OK message. On refusal or failure returns
 * -errno with a message for the operator in err: -EACCES the mesh refused (reason from the
 * seed), -EHOSTUNREACH no seed answered. */
int join_request(const token_t *t, const join_request_t *req, unsigned timeout_ms,
                 uint8_t **reply, size_t *reply_len, char *err, size_t errlen);

#endif
