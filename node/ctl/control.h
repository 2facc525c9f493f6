/* control: the control socket server of popd (protocol in ctlproto.h).
 *
 * A table of commands drives it: each entry names a command, the handler and a usage line, so
 * the set of commands is visible in one place and "help" is generated from the same table.
 * Handlers run on the loop thread and must not block. */
#ifndef POPMESH_NODE_CTL_CONTROL_H
#define POPMESH_NODE_CTL_CONTROL_H

#include "node/ctl/ctlproto.h"

#include <ev.h>
#include <msgpack.h>
#include <stddef.h>

#define CONTROL_MAX_CONNS 32    /* concurrent clients */
#define CONTROL_IDLE_MS   30000 /* ms a client may stay silent mid-request or idle */

typedef struct control control_t;

/* Packs the response body into body and returns an enum ctl_status. On any status other than
 * CTL_OK, the body should be made with control_error(). */
typedef int (*control_handler_fn)(void *ctx, const ctl_request_t *req, msgpack_packer *body);

typedef struct control_command {
    const char *name;
    control_handler_fn fn;
    const char *usage; /* one line: arguments and what it does */
} control_command_t;

/* Packs {"error": message} and returns status: the one way handlers report failure. */
int control_error(msgpack_packer *body, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Binds the socket at path (mode 0600; a stale socket file is replaced: the caller holds the
 * data directory lock, so nobody else can be serving it). table ends with a {NULL} entry and
 * must outlive the server. NULL on failure with a reason in err. */
control_t *control_new(struct ev_loop *loop, const char *path, const control_command_t *table,
                       void *ctx, char *err, size_t errlen);
/* Adds another table of commands served with its own ctx (up to CONTROL_MAX_TABLES in all):
 * each module registers what it answers without the daemon knowing its handlers. 0 or -ENOSPC. */
#define CONTROL_MAX_TABLES 16 /* popd uses 9: core, mesh (2), auth, dataplane, dns (2), certs, acme */
int control_add_commands(control_t *c, const control_command_t *table, void *ctx);
/* A guard runs before every command but help: it returns -1 to let the command run, or packs
 * an error body (control_error) and returns its status to answer with that instead. One guard
 * per server (a later call replaces it); fn NULL removes it. popd's refuses writes to the
 * replicated store while this node's clock is too far from the mesh's (meshnode.c). */
typedef int (*control_guard_fn)(void *ctx, const char *command, size_t command_len,
                                msgpack_packer *body);
void control_set_guard(control_t *c, control_guard_fn fn, void *ctx);
/* Closes every connection, removes the socket file, frees; accepts NULL; sets *cp = NULL. */
void control_destroy(control_t **cp);

/* Runs a registered command in-process with no arguments (the guard is not asked: this is for
 * the node's own reads, such as the admin listener rendering "status" as metrics). The body
 * is packed into body. Returns the command's enum ctl_status, or -ENOENT if none has that
 * name. Not counted in the stats. */
int control_call(control_t *c, const char *command, msgpack_packer *body);

typedef struct control_stats {
    unsigned long long requests;     /* answered */
    unsigned long long bad_requests; /* malformed bodies, unknown commands */
    unsigned long long dropped;      /* connections closed for oversize frames or idleness */
    unsigned connections;            /* open now */
} control_stats_t;
void control_get_stats(const control_t *c, control_stats_t *st);

#endif
