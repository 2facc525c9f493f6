/* meshmsg: every message of the mesh protocol, as it travels on the mesh socket (meshnet.h),
 * in one place (docs/protocol.md).
 *
 * A message is one msgpack array [version, type, ...]. The type says which protocol it
 * belongs to and the version is that protocol's own: SWIM has spoken 1 and 2 (swim_wire.h),
 * anti-entropy 1 (antientropy.h), the messages meshnode defines (PUSH, the join handshake)
 * MESH_VERSION. A node checks the version against the type before anything reads the rest:
 * a version it does not speak is dropped and counted (bad_version), never guessed at, so a
 * newer node's messages cannot be misread as older ones.
 *
 *   type    name          version                       what
 *   1..31   SWIM          SWIM_VERSION_MIN..SWIM_VERSION probes, acks, syncs (gossip/swim)
 *   32      AE_DIGEST     AE_VERSION                    anti-entropy digest
 *   33      AE_ENTRIES    AE_VERSION                    anti-entropy entries
 *   34      PUSH          MESH_VERSION                  [1, 34, entry]: a fresh write
 *   48      JOIN          MESH_VERSION                  joinmsg.h; only from a token holder
 *   49      JOIN_OK       MESH_VERSION                  the seed's answer (a reply)
 *   50      JOIN_ERR      MESH_VERSION                  the seed's refusal (a reply)
 *   51      FORWARD       MESH_VERSION                  joinmsg.h; a seed hands a JOIN to the arbiter
 *   52      VERDICT       MESH_VERSION                  joinmsg.h; the arbiter's decision on it
 *
 * Who sent a message is known from the CURVE handshake (the ZAP user id), never from its
 * content: "n:<node id>" for members, "t:<token id>" for a token holder, which may only send
 * JOIN.
 *
 * SWIM's piggyback carries broadcasts of their own shape, [kind, body], chosen by kind:
 * MESH_BCAST_ENTRY (one store entry), MESH_BCAST_HEALTH (a health vector, meshhealth.c),
 * MESH_BCAST_LINKSTATE (a link-state record, mesh/linkstate.h), MESH_BCAST_LOGINS (a PoP's
 * login attempt counts, node/auth/loginshare.h). An unknown kind is counted as a bad message
 * and not gossiped on. */
#ifndef POPMESH_NODE_MEMBERSHIP_MESHMSG_H
#define POPMESH_NODE_MEMBERSHIP_MESHMSG_H

#include "gossip/antientropy.h"
#include "gossip/swim.h"
#include "gossip/swim_wire.h"
#include "node/membership/meshnet.h"
#include "storage/store.h"

#include <stdbool.h>
#include <stdint.h>

#define MESH_VERSION 1 /* of PUSH and the join handshake */

#define MESH_MSG_SWIM_FIRST 1 /* SWIM's types are 1..31 */
#define MESH_MSG_SWIM_LAST  31
#define MESH_MSG_AE_DIGEST  AE_DIGEST
#define MESH_MSG_AE_ENTRIES AE_ENTRIES
#define MESH_MSG_PUSH       34
#define MESH_MSG_JOIN       48
#define MESH_MSG_JOIN_OK    49
#define MESH_MSG_JOIN_ERR   50
#define MESH_MSG_FORWARD    51
#define MESH_MSG_VERDICT    52

#define MESH_BCAST_ENTRY     1
#define MESH_BCAST_HEALTH    2
#define MESH_BCAST_LINKSTATE 3
#define MESH_BCAST_LOGINS    4

_Static_assert(AE_DIGEST == 32 && AE_ENTRIES == 33, "anti-entropy owns types 32 and 33");

/* Every message on the mesh fits the transport's limit, MESHNET_MSG_MAX, which is also what
 * bounds what an unauthenticated connection can make libzmq allocate (meshnet.h). */
_Static_assert(SWIM_MSG_MAX <= MESHNET_MSG_MAX, "SWIM messages must fit the mesh limit");
_Static_assert(AE_MSG_MAX <= MESHNET_MSG_MAX, "ENTRIES messages must fit the mesh limit");
_Static_assert(STORE_KEY_MAX + STORE_VALUE_MAX + 256 <= MESHNET_MSG_MAX,
               "a PUSH of one entry must fit the mesh limit");
_Static_assert(MESHNET_JOIN_OK_BUDGET + 1024 <= MESHNET_MSG_MAX, "JOIN_OK must fit the mesh limit");

/* Whether this node speaks `version` of messages of `type`. An unknown type is not a version
 * question: the caller counts it as a bad message. */
static inline bool meshmsg_version_ok(uint64_t type, uint64_t version)
{
    if (type >= MESH_MSG_SWIM_FIRST && type <= MESH_MSG_SWIM_LAST)
        return version >= SWIM_VERSION_MIN && version <= SWIM_VERSION;
    if (type == MESH_MSG_AE_DIGEST || type == MESH_MSG_AE_ENTRIES)
        return version == AE_VERSION;
    return version == MESH_VERSION;
}

#endif
