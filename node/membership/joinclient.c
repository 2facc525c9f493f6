#include "node/membership/joinclient.h"

#include "common/clock.h"

#include "common/mp.h"
#include "common/netaddr.h"
#include "common/xmalloc.h"
#include "node/membership/meshnet.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

/* Reads one monitor event: [u16 event, u32 value][endpoint]. */
static int read_event(void *mon, uint16_t *event, uint32_t *value)
{
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&m);
        return -1;
    }
    int ok = zmq_msg_size(&m) == 6;
    if (ok) {
        const uint8_t *d = zmq_msg_data(&m);
        memcpy(event, d, 2);
        memcpy(value, d + 2, 4);
    }
    int more = zmq_msg_more(&m);
    zmq_msg_close(&m);
    while (more) {
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        zmq_msg_close(&m);
    }
    return ok ? 0 : -1;
}

/* One seed. 1: reply received; 0: failed, reason in why. */
static int try_seed(void *zctx, const token_seed_t *seed, const uint8_t join_pk[32],
                    const uint8_t join_sk[32], const msgpack_sbuffer *req, unsigned timeout_ms,
                    uint8_t **reply, size_t *reply_len, char *why, size_t wl, int idx)
{
    void *s = zmq_socket(zctx, ZMQ_DEALER);
    void *mon = zmq_socket(zctx, ZMQ_PAIR);
    char endpoint[300], monep[64];
    int linger = 0, got = 0;
    snprintf(monep, sizeof(monep), "inproc://join-monitor-%d", idx);
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    int ipv6 = 1; /* or libzmq refuses a seed's IPv6 address ("No such device") */
    zmq_setsockopt(s, ZMQ_IPV6, &ipv6, sizeof(ipv6));
    zmq_setsockopt(mon, ZMQ_LINGER, &linger, sizeof(linger));
    /* A JOIN_OK is bounded like every mesh message (the seed keeps to it), so the seed, or
     * whoever answers at its address, cannot make the joiner allocate more. */
    int64_t maxmsg = MESHNET_MSG_MAX; /* an int64_t option */
    int hs = MESHNET_HANDSHAKE_MS;
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
    zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &hs, sizeof(hs));
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, seed->curve_pk, 32);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, join_pk, 32);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, join_sk, 32);
    zmq_socket_monitor(s, monep,
                       ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL);
    zmq_connect(mon, monep);
    if (netaddr_zmq_endpoint(seed->addr, endpoint, sizeof(endpoint)) != 0) {
        snprintf(why, wl, "%s: bad address (not a HOST:PORT)", seed->addr);
        goto out;
    }
    if (zmq_connect(s, endpoint) != 0) {
        snprintf(why, wl, "%s: bad address (%s)", seed->addr, zmq_strerror(zmq_errno()));
        goto out;
    }
    /* Queued until the handshake completes; dropped with the socket if it never does. */
    zmq_send(s, req->data, req->size, ZMQ_DONTWAIT);
    snprintf(why, wl, "%s: no answer within %u ms (is it up and reachable?)", seed->addr,
             timeout_ms);
    uint64_t deadline = clock_mono_ms() + timeout_ms;
    while (!got) {
        uint64_t now = clock_mono_ms();
        if (now >= deadline)
            break;
        zmq_pollitem_t items[2] = {{s, 0, ZMQ_POLLIN, 0}, {mon, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, 2, (long)(deadline - now)) < 0 && zmq_errno() != EINTR)
            break;
        if (items[1].revents & ZMQ_POLLIN) {
            uint16_t ev = 0;
            uint32_t val = 0;
            if (read_event(mon, &ev, &val) == 0) {
                if (ev == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
                    snprintf(why, wl,
                             "%s refused the token: its mesh does not know it (a "
                             "token of another mesh, or deleted)",
                             seed->addr);
                    break;
                }
                snprintf(why, wl,
                         "%s failed the secure handshake: its key is not the one in "
                         "the token",
                         seed->addr);
                break;
            }
        }
        if (items[0].revents & ZMQ_POLLIN) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, s, ZMQ_DONTWAIT) >= 0 && zmq_msg_size(&m) <= 16 << 20) {
                *reply_len = zmq_msg_size(&m);
                *reply = xmemdup(zmq_msg_data(&m), *reply_len);
                got = 1;
            }
            zmq_msg_close(&m);
        }
    }
out:
    zmq_socket_monitor(s, NULL, 0);
    zmq_close(mon);
    zmq_close(s);
    return got;
}

int join_request(const token_t *t, const reg_node_t *me, unsigned timeout_ms, joinmsg_reply_t *out,
                 uint8_t **reply, char *err, size_t errlen)
{
    uint8_t jpk[32], jsk[32];
    token_join_keypair(t->secret, jpk, jsk);
    msgpack_sbuffer req;
    msgpack_packer pk;
    msgpack_sbuffer_init(&req);
    msgpack_packer_init(&pk, &req, msgpack_sbuffer_write);
    joinmsg_pack_join(&pk, me);
    size_t rlen = 0;

    void *zctx = zmq_ctx_new();
    char reasons[2048] = "";
    size_t rl = 0;
    int rc = -EHOSTUNREACH;
    /* Test knob (integration tests only): POPMESH_TEST_JOIN_SEED=HOST:PORT tries only the
     * token's seed at that address, so a test can aim concurrent joins of one token at
     * different seeds. It can only narrow the token's own list. */
    const char *only = getenv("POPMESH_TEST_JOIN_SEED");
    for (unsigned i = 0; i < t->nseeds; i++) {
        char why[400];
        if (only && *only && strcmp(only, t->seeds[i].addr) != 0)
            continue;
        if (try_seed(zctx, &t->seeds[i], jpk, jsk, &req, timeout_ms, reply, &rlen, why, sizeof(why),
                     (int)i)) {
            rc = 0;
            break;
        }
        rl += (size_t)snprintf(reasons + rl, rl < sizeof(reasons) ? sizeof(reasons) - rl : 0,
                               "\n  %s", why);
        if (rl >= sizeof(reasons))
            rl = sizeof(reasons) - 1;
    }
    zmq_ctx_term(zctx);
    sodium_memzero(jsk, sizeof(jsk));
    msgpack_sbuffer_destroy(&req);
    if (rc) {
        snprintf(err, errlen, "no seed accepted the join:%s", reasons);
        return rc;
    }
    const char *why = "";
    if (joinmsg_decode_reply(*reply, rlen, out, &why) != 0) {
        snprintf(err, errlen, "the seed sent a malformed answer: %s", why);
        free(*reply);
        *reply = NULL;
        return -EBADMSG;
    }
    if (out->type == MESH_MSG_JOIN_ERR) {
        snprintf(err, errlen, "the mesh refused to admit this node: %s (%s)", out->message,
                 out->code);
        free(*reply);
        *reply = NULL;
        return -EACCES;
    }
    return 0;
}
