/* fake_pop: a PoP that misbehaves on purpose, to test what popsite does with hostile or broken
 * requests from a PoP (site_badinput.sh).
 *
 *   fake_pop --listen HOST:PORT --cache FILE --site-id HEX --target HOST:PORT
 *
 * It makes a key, writes FILE (a popsite pops.cache naming only itself), waits for the site's
 * tunnel, tells it (INFO) that its one resource target is --target, and then:
 *   - opens streams the site must refuse: a target that is not one of its resources', a path
 *     that asks the site to relay, another site's id, an undecodable descriptor;
 *   - sends a control message that is not msgpack;
 *   - opens a valid stream to --target and checks an echo through it.
 * Prints one "ok NAME" or "FAIL NAME: why" per check and exits 0 when all passed (10 s max). */
#include "common/netaddr.h"
#include "common/clock.h"
#include "common/log.h"
#include "node/records/identity.h"
#include "node/dataplane/sitemsg.h"
#include "node/dataplane/tconn.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { C_TARGET, C_RELAY, C_SITE, C_GARBAGE, C_VALID, C_N };
static const char *names[C_N] = {"unknown-target", "relay-path", "other-site", "bad-descriptor",
                                 "valid-echo"};
static const char *want_msg[C_N] = {"not a target", "relays nothing", "another site",
                                    "open:", NULL};

struct fake {
    struct ev_loop *loop;
    identity_t id;
    tconn_t *c;        /* the site's tunnel, once its HELLO said it is not a probe */
    tconn_t *conns[8]; /* every accepted connection */
    int nconns;
    uint64_t site;
    char target[NODECFG_ADDR_MAX + 1];
    int done[C_N]; /* 0 pending, 1 ok, -1 failed */
    char echo[16];
    size_t echo_len;
    int tag[C_N];
};

static void result(struct fake *f, int k, bool ok, const char *why)
{
    if (f->done[k])
        return;
    f->done[k] = ok ? 1 : -1;
    if (ok)
        printf("ok %s\n", names[k]);
    else
        printf("FAIL %s: %s\n", names[k], why);
    fflush(stdout);
    for (int i = 0; i < C_N; i++)
        if (!f->done[i])
            return;
    ev_break(f->loop, EVBREAK_ALL);
}

static void open_case(struct fake *f, int k)
{
    sm_open_t o = {0};
    snprintf(o.resource, sizeof(o.resource), "web");
    o.site = k == C_SITE ? f->site ^ 1 : f->site;
    snprintf(o.client, sizeof(o.client), "198.51.100.7:40000");
    o.ntargets = 1;
    snprintf(o.targets[0], sizeof(o.targets[0]), "%s", k == C_TARGET ? "10.9.9.9:22" : f->target);
    if (k == C_RELAY) {
        o.npath = 1;
        o.path[0] = 42;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (k == C_GARBAGE)
        msgpack_sbuffer_write(&sb, "\x93\x01\xc1junk", 7);
    else
        sm_pack_open(&pk, &o);
    uint64_t sid;
    int rc = tun_open(tconn_tun(f->c), (const uint8_t *)sb.data, sb.size, &f->tag[k],
                      clock_mono_ms(), &sid);
    msgpack_sbuffer_destroy(&sb);
    if (rc)
        result(f, k, false, "tun_open failed");
    tconn_kick(f->c);
}

static int fp_admit(void *ctx, tconn_t *c, const uint8_t pk[32], const uint8_t *payload,
                    size_t plen, uint8_t *reply, size_t *reply_len)
{
    (void)pk;
    struct fake *f = ctx;
    sm_hello_t h;
    const char *why;
    if (sm_decode_hello(payload, plen, &h, &why) == 0 && !h.probe && !f->c)
        f->c = c; /* the site's tunnel (its RTT probes are answered and otherwise ignored) */
    sm_welcome_t w = {.id = f->id.node_id};
    snprintf(w.name, sizeof(w.name), "fake");
    msgpack_sbuffer sb;
    msgpack_packer mp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&mp, &sb, msgpack_sbuffer_write);
    sm_pack_welcome(&mp, &w);
    memcpy(reply, sb.data, sb.size);
    *reply_len = sb.size;
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

static void fp_up(void *ctx, tconn_t *c, const uint8_t *payload, size_t plen)
{
    (void)payload, (void)plen;
    struct fake *f = ctx;
    if (c != f->c)
        return;
    sm_info_t *in = calloc(1, sizeof(*in));
    in->nchecks = 1;
    snprintf(in->checks[0].target, sizeof(in->checks[0].target), "%s", f->target);
    snprintf(in->checks[0].health, sizeof(in->checks[0].health), "tcp");
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_pack_info(&pk, in);
    tconn_send_ctl(c, (const uint8_t *)sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    free(in);
    /* Junk the site must shrug off: a control message that is not msgpack. */
    tconn_send_ctl(c, (const uint8_t *)"\xc1\xc1\xc1", 3);
    for (int k = 0; k < C_N; k++)
        open_case(f, k);
}

static void fp_on_open_ok(void *ctx, tconn_t *c, uint64_t sid, void *user)
{
    struct fake *f = ctx;
    int k = (int)((int *)user - f->tag);
    if (k != C_VALID) {
        result(f, k, false, "the site accepted it");
        tun_reset(tconn_tun(c), sid, TUN_ERR_NONE);
        return;
    }
    tun_send(tconn_tun(c), sid, "ping-site", 9);
    tun_fin(tconn_tun(c), sid);
}

static void fp_on_data(void *ctx, tconn_t *c, uint64_t sid, void *user, const uint8_t *d,
                       size_t len)
{
    struct fake *f = ctx;
    (void)user;
    if (f->echo_len + len <= sizeof(f->echo)) {
        memcpy(f->echo + f->echo_len, d, len);
        f->echo_len += len;
    }
    tun_consumed(tconn_tun(c), sid, len);
    if (f->echo_len == 9)
        result(f, C_VALID, memcmp(f->echo, "ping-site", 9) == 0, "echo differs");
}

static void fp_on_reset(void *ctx, tconn_t *c, uint64_t sid, void *user, uint32_t code, bool remote,
                        const char *msg, size_t ml)
{
    (void)c, (void)sid, (void)remote;
    struct fake *f = ctx;
    int k = (int)((int *)user - f->tag);
    if (k < 0 || k >= C_N)
        return;
    char why[300];
    snprintf(why, sizeof(why), "%s: %.*s", tun_code_name(code), (int)ml, msg ? msg : "");
    if (k == C_VALID) {
        result(f, k, false, why);
        return;
    }
    bool ok = code == TUN_ERR_REFUSED && msg && memmem(msg, ml, want_msg[k], strlen(want_msg[k]));
    result(f, k, ok, why);
    if (ok)
        printf("   (refused with %s)\n", why);
}

static void fp_down(void *ctx, tconn_t *c, const char *why)
{
    struct fake *f = ctx;
    if (c != f->c)
        return; /* a probe, closed by the site */
    printf("FAIL tunnel: the site's tunnel went down: %s\n", why);
    ev_break(f->loop, EVBREAK_ALL);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct fake *f = w->data;
    int fd = accept(w->fd, NULL, NULL);
    if (fd < 0 || f->nconns == 8)
        return;
    tconn_keys_t keys = {0};
    memcpy(keys.pk, f->id.curve_pk, 32);
    memcpy(keys.sk, f->id.curve_sk, 32);
    tun_config_t tc;
    tun_config_defaults(&tc);
    tconn_cbs_t cbs = {.ctx = f,
                       .admit = fp_admit,
                       .on_up = fp_up,
                       .on_down = fp_down,
                       .on_open_ok = fp_on_open_ok,
                       .on_data = fp_on_data,
                       .on_reset = fp_on_reset};
    f->conns[f->nconns++] = tconn_accept(loop, fd, &keys, &tc, &cbs);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    printf("FAIL timeout: not every check finished in 10 s\n");
    ev_break(loop, EVBREAK_ALL);
}

int main(int argc, char **argv)
{
    const char *listen_at = NULL, *cache = NULL, *site = NULL, *target = NULL;
    static const struct option opts[] = {{"listen", 1, NULL, 'l'},
                                         {"cache", 1, NULL, 'c'},
                                         {"site-id", 1, NULL, 's'},
                                         {"target", 1, NULL, 't'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (o == 'l')
            listen_at = optarg;
        else if (o == 'c')
            cache = optarg;
        else if (o == 's')
            site = optarg;
        else if (o == 't')
            target = optarg;
        else
            return 2;
    }
    if (!listen_at || !cache || !site || !target) {
        fprintf(stderr, "usage: fake_pop --listen H:P --cache FILE --site-id HEX --target H:P\n");
        return 2;
    }
    log_init("fake_pop", LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    struct fake f = {.site = strtoull(site, NULL, 16)};
    snprintf(f.target, sizeof(f.target), "%s", target);
    identity_generate(&f.id);

    sm_info_t *in = calloc(1, sizeof(*in));
    in->npops = 1;
    in->pops[0].id = f.id.node_id;
    snprintf(in->pops[0].name, sizeof(in->pops[0].name), "fake");
    snprintf(in->pops[0].tunnel_addr, sizeof(in->pops[0].tunnel_addr), "%s", listen_at);
    memcpy(in->pops[0].curve_pk, f.id.curve_pk, 32);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    sm_pack_info(&pk, in);
    FILE *cf = fopen(cache, "wb");
    if (!cf || fwrite(sb.data, 1, sb.size, cf) != sb.size || fclose(cf)) {
        perror(cache);
        return 1;
    }
    msgpack_sbuffer_destroy(&sb);
    free(in);

    struct sockaddr_storage ss;
    unsigned sl;
    if (netaddr_sockaddr(listen_at, &ss, &sl))
        return 2;
    int lfd = socket(ss.ss_family, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&ss, sl) || listen(lfd, 8)) {
        perror("listen");
        return 1;
    }
    f.loop = ev_default_loop(0);
    ev_io aio;
    ev_io_init(&aio, on_accept, lfd, EV_READ);
    aio.data = &f;
    ev_io_start(f.loop, &aio);
    ev_timer to;
    ev_timer_init(&to, on_timeout, 10., 0.);
    ev_timer_start(f.loop, &to);
    printf("fake_pop: listening on %s\n", listen_at);
    fflush(stdout);
    ev_run(f.loop, 0);
    int failed = 0;
    for (int k = 0; k < C_N; k++)
        failed += f.done[k] != 1;
    for (int i = 0; i < f.nconns; i++)
        tconn_destroy(&f.conns[i]);
    return failed ? 1 : 0;
}
