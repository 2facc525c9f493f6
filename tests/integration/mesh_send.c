/* mesh_send: sends one raw message to a popd's mesh port as a member, for tests that need a
 * message no popd would send (a version from the future).
 *
 * Usage: mesh_send FROM_DATA TO_DATA HOST:PORT VERSION TYPE
 *        mesh_send FROM_DATA TO_DATA HOST:PORT hex MESSAGE_HEX
 *
 * Connects with FROM_DATA's identity (a member: the receiver's ZAP admits its key), to the node
 * whose identity is in TO_DATA, and sends [VERSION, TYPE, 0], or the message given in hex (a
 * forged PUSH made by trust_forge.py, say). Exits 0 once the message was handed to a
 * connected socket, 1 if that did not happen within 5 s. */
#include "node/records/identity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: mesh_send FROM_DATA TO_DATA HOST:PORT (VERSION TYPE | hex MESSAGE_HEX)\n");
        return 2;
    }
    identity_t from, to;
    char err[256];
    if (identity_load(argv[1], &from, err, sizeof(err)) ||
        identity_load(argv[2], &to, err, sizeof(err))) {
        fprintf(stderr, "mesh_send: %s\n", err);
        return 1;
    }
    static uint8_t msg[65536];
    size_t msglen = 0;
    if (!strcmp(argv[4], "hex")) {
        size_t hl = strlen(argv[5]);
        if (hl % 2 || hl / 2 > sizeof(msg)) {
            fprintf(stderr, "mesh_send: MESSAGE_HEX must be an even number of hex digits, at most 128 KiB\n");
            return 2;
        }
        for (size_t i = 0; i < hl / 2; i++) {
            unsigned b;
            if (sscanf(argv[5] + 2 * i, "%2x", &b) != 1) {
                fprintf(stderr, "mesh_send: MESSAGE_HEX is not hex at offset %zu\n", 2 * i);
                return 2;
            }
            msg[i] = (uint8_t)b;
        }
        msglen = hl / 2;
    } else {
        unsigned version = (unsigned)strtoul(argv[4], NULL, 10);
        unsigned type = (unsigned)strtoul(argv[5], NULL, 10);
        /* msgpack [version, type, 0] with positive fixints (both < 128 in every use). */
        if (version > 127 || type > 127) {
            fprintf(stderr, "mesh_send: VERSION and TYPE must be below 128\n");
            return 2;
        }
        uint8_t small[4] = {0x93, (uint8_t)version, (uint8_t)type, 0x00};
        memcpy(msg, small, sizeof(small));
        msglen = sizeof(small);
    }

    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int one = 1, linger = 2000;
    zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, to.curve_pk, 32);
    zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, from.curve_pk, 32);
    zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, from.curve_sk, 32);
    zmq_setsockopt(s, ZMQ_IMMEDIATE, &one, sizeof(one));
    zmq_setsockopt(s, ZMQ_IPV6, &one, sizeof(one)); /* a "[::1]:PORT" member too */
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof(linger));
    char ep[300];
    snprintf(ep, sizeof(ep), "tcp://%s", argv[3]);
    int rc = 1;
    if (zmq_connect(s, ep) == 0) {
        /* IMMEDIATE: a send fails with EAGAIN until the handshake is done; retry for 5 s. */
        for (int i = 0; i < 100 && rc; i++) {
            if (zmq_send(s, msg, msglen, ZMQ_DONTWAIT) == (int)msglen)
                rc = 0;
            else
                usleep(50 * 1000);
        }
    }
    if (rc)
        fprintf(stderr, "mesh_send: could not send to %s within 5 s\n", argv[3]);
    zmq_close(s);
    zmq_ctx_term(ctx);
    identity_wipe(&from);
    identity_wipe(&to);
    return rc;
}
