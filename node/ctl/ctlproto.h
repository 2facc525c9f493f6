/* ctlproto: the control socket protocol between meshctl and popd.
 *
 * Transport: a Unix stream socket (DIR/control.sock, mode 0600). Each message is a frame:
 *
 *     +----------------------+-------------------------------+
 *     | length: u32 big-end. | body: one msgpack object       |
 *     +----------------------+-------------------------------+
 *
 *   request  = [CTL_VERSION, command: str, args: map(str -> any)]
 *   response = [CTL_VERSION, status: uint, body: any]
 *
 * A client may send several requests on one connection; responses come back in order.
 * A request frame longer than CTL_MAX_REQUEST is refused (the connection is then closed,
 * since the rest of the stream can no longer be trusted to be framed); a malformed body gets
 * a CTL_BAD_REQUEST response and the connection stays usable.
 * Version: a server answers a request whose version it does not speak with CTL_BAD_VERSION
 * and its own version in the body, so an old meshctl against a new popd says so clearly. */
#ifndef POPMESH_NODE_CTL_CTLPROTO_H
#define POPMESH_NODE_CTL_CTLPROTO_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define CTL_VERSION         1
#define CONTROL_SOCKET_FILE "control.sock"    /* in the node's data directory, mode 0600 */
#define CTL_MAX_REQUEST     (256 * 1024)      /* bytes of one request body */
#define CTL_MAX_RESPONSE    (8 * 1024 * 1024) /* bytes of one response body */
#define CTL_MAX_COMMAND     64                /* bytes of a command name */
#define CTL_HEADER          4                 /* bytes of the length prefix */

enum ctl_status {
    CTL_OK = 0,
    CTL_NOT_FOUND = 1,   /* the thing asked for does not exist */
    CTL_BAD_REQUEST = 2, /* malformed, unknown command, bad argument: the caller's fault */
    CTL_REFUSED = 3,     /* well-formed but refused (limits, state) */
    CTL_FAILED = 4,      /* the node could not do it (storage error, map full) */
    CTL_BAD_VERSION = 5, /* protocol version not spoken */
};

const char *ctl_status_name(int status);

/* A decoded request. command and args point into the frame body: borrowed as long as it. */
typedef struct ctl_request {
    uint32_t version;
    const char *command; /* not NUL-terminated */
    uint32_t command_len;
    const uint8_t *args; /* the msgpack map, validated */
    size_t args_len;
} ctl_request_t;

typedef struct ctl_response {
    uint32_t version;
    int status;
    const uint8_t *body; /* one msgpack object, validated */
    size_t body_len;
} ctl_response_t;

/* Looks at buffered stream bytes. Returns 1 and sets body, body_len and frame_len when a whole
 * frame is there, 0 when more bytes are needed, -EMSGSIZE when the announced length exceeds
 * max (the stream must be dropped). */
int ctl_frame_peek(const uint8_t *buf, size_t len, size_t max, const uint8_t **body,
                   size_t *body_len, size_t *frame_len);

/* Decoders: 0, or -EBADMSG with a reason in *why (a static string). */
int ctl_request_decode(const uint8_t *body, size_t len, ctl_request_t *req, const char **why);
int ctl_response_decode(const uint8_t *body, size_t len, ctl_response_t *resp, const char **why);

/* Finds argument name in a request's args map. Returns 1 found, 0 absent, -EBADMSG if the map
 * is malformed. val, val_len: the value's msgpack bytes (borrowed). */
int ctl_arg(const ctl_request_t *req, const char *name, const uint8_t **val, size_t *val_len);
/* Typed lookups: 1 found, 0 absent, -EINVAL present with the wrong type. */
int ctl_arg_str(const ctl_request_t *req, const char *name, const char **s, uint32_t *len);
int ctl_arg_uint(const ctl_request_t *req, const char *name, uint64_t *v);
/* A string argument copied into buf (cap bytes with the NUL). 1 found, 0 absent, -EINVAL for
 * a wrong type, NUL bytes or a value too long. */
int ctl_arg_copy(const ctl_request_t *req, const char *name, char *buf, size_t cap);

/* Framing for writers: reserve the header in sbuf before packing, then fix it up.
 * Usage: ctl_frame_begin(&sbuf); pack the body; ctl_frame_end(&sbuf). */
void ctl_frame_begin(msgpack_sbuffer *sbuf);
void ctl_frame_end(msgpack_sbuffer *sbuf);

#endif
