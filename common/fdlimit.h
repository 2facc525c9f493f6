/* fdlimit: raise this process's open-file limit to the hard limit.
 *
 * A PoP holds two descriptors per proxied connection (client and tunnel stream share one
 * tunnel socket, but a site holds one per target connection), so the usual soft limit of
 * 1024 would cap a PoP at a few hundred connections. Daemons raise it at start; the hard
 * limit stays the operator's choice (systemd LimitNOFILE=). */
#ifndef POPMESH_COMMON_FDLIMIT_H
#define POPMESH_COMMON_FDLIMIT_H

#include <sys/resource.h>

/* Returns the new soft limit (or the old one if raising failed). */
static inline unsigned long fdlimit_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = {rl.rlim_max, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            return (unsigned long)want.rlim_cur;
    }
    return (unsigned long)rl.rlim_cur;
}

#endif
