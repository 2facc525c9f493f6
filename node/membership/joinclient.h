/* joinclient: the joiner's side of the join handshake (used by popd join, later popsite).
 *
 * It connects to each seed named in the token in turn, as a CURVE client whose key is the
 * token's join key and with the seed's key pinned, sends JOIN and waits for JOIN_OK or
 * JOIN_ERR. A socket monitor turns the silent failures of a CURVE handshake into reasons:
 * a ZAP refusal means the seed's mesh does not know the token; a broken handshake means the
 * seed's key is not the one in the token. */
#ifndef POPMESH_NODE_MEMBERSHIP_JOINCLIENT_H
#define POPMESH_NODE_MEMBERSHIP_JOINCLIENT_H

#include "node/membership/joinmsg.h"
#include "node/records/token.h"

#include <stddef.h>
#include <stdint.h>

/* Asks to join with the proposed record me (name, region, addr, keys, role). On success
 * *reply is the decoded JOIN_OK and *raw (caller frees, after reply->entries, which point
 * into it) its bytes. On refusal or failure returns -errno with a message for the operator in
 * err: -EACCES the mesh refused (with the seed's reason), -EHOSTUNREACH no seed answered,
 * -EBADMSG a malformed answer. */
int join_request(const token_t *t, const reg_node_t *me, unsigned timeout_ms,
                 joinmsg_reply_t *reply, uint8_t **raw, char *err, size_t errlen);

#endif
