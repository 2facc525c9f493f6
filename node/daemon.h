/* daemon: a running popd node: the loop, the store, the control socket, and what the control
 * commands do. popd.c parses the command line and calls in here. */
#ifndef POPMESH_NODE_DAEMON_H
#define POPMESH_NODE_DAEMON_H

#include <stddef.h>

#define DAEMON_LOCK_FILE "popd.lock"
#define DAEMON_STORE_DIR "store"
#define DAEMON_GC_PERIOD 3600.0 /* s between tombstone collections */

typedef struct daemon_opts {
    const char *data_dir;
    const char *log_level; /* overrides popd.conf; NULL keeps it */
    /* Non-empty tunnel_listen, tunnel_advertise, ingress_address override popd.conf for this
     * run; NULL keeps everything. */
    const struct nodecfg *overrides;
} daemon_opts_t;

/* Runs the node in the foreground until SIGINT or SIGTERM. Returns 0 after a clean shutdown,
 * or -errno with a reason in err if it could not start. */
int daemon_run(const daemon_opts_t *opts, char *err, size_t errlen);

#endif
