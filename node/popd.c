/* popd: the PoP node daemon. Subcommands come from one table; help is generated from it. */
#include "common/clock.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/netaddr.h"
#include "common/xmalloc.h"
#include "gossip/antientropy.h"
#include "node/daemon.h"
#include "node/records/identity.h"
#include "node/membership/joinclient.h"
#include "node/membership/meshnode.h"
#include "node/nodecfg.h"
#include "node/trust/trust.h"
#include "node/records/registry.h"
#include "node/records/token.h"
#include "storage/store.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sodium.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_USAGE = 2 };

typedef struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
    const char *help;
} subcommand_t;

static const subcommand_t *find_subcommand(const char *name);

static int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "popd %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    const subcommand_t *sc = find_subcommand(cmd);
    fprintf(stderr, "\nusage: popd %s %s\n", cmd, sc ? sc->usage : "");
    return EXIT_USAGE;
}

static void print_sub_help(const subcommand_t *sc)
{
    printf("usage: popd %s %s\n\n%s\n", sc->name, sc->usage, sc->help);
}

/* A new directory, or an existing empty one: anything else might be someone's data. */
static int prepare_dir(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) == 0)
        return 0;
    if (errno != EEXIST) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(e));
        return -e;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a directory", dir);
        return -ENOTDIR;
    }
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, NODECFG_FILE);
    if (access(path, F_OK) == 0) {
        snprintf(err, errlen,
                 "%s is already a popd data directory; run it with 'popd run "
                 "--data %s'",
                 dir, dir);
        return -EEXIST;
    }
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        snprintf(err, errlen, "cannot read %s: %s", dir, strerror(e));
        return -e;
    }
    struct dirent *de;
    int entries = 0;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            entries++;
    closedir(d);
    if (entries) {
        snprintf(err, errlen, "%s is not empty; popd init needs a new or empty directory", dir);
        return -ENOTEMPTY;
    }
    return 0;
}

/* Options shared by init and join. */
struct node_opts {
    const char *dir, *name, *region;
    const char *root_offline; /* init --root-offline FILE: the root goes there, not to DIR */
    nodecfg_t cfg;
};

static const struct option node_longopts[] = {
    {"data", required_argument, NULL, 'd'},
    {"name", required_argument, NULL, 'n'},
    {"region", required_argument, NULL, 'r'},
    {"mesh-listen", required_argument, NULL, 'L'},
    {"advertise", required_argument, NULL, 'A'},
    {"tunnel-listen", required_argument, NULL, 'T'},
    {"tunnel-advertise", required_argument, NULL, 'V'},
    {"ingress-address", required_argument, NULL, 'I'},
    {"http-listen", required_argument, NULL, 'H'},
    {"https-listen", required_argument, NULL, 'S'},
    {"dns-listen", required_argument, NULL, 'N'},
    {"public-address", required_argument, NULL, 'P'},
    {"location", required_argument, NULL, 'O'},
    {"dns-rrl", required_argument, NULL, 'R'},
    {"store-map-size", required_argument, NULL, 'm'},
    {"tombstone-grace", required_argument, NULL, 'g'},
    {"no-inbound", no_argument, NULL, 'X'},
    {"label", required_argument, NULL, 'B'},
    {"admin-listen", required_argument, NULL, 'D'},
    {"metrics-allow", required_argument, NULL, 'W'},
    {"root-offline", required_argument, NULL, 'o'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* --label L (B), repeatable, shared by init, join and run: through nodecfg_set's "labels", so
 * it refuses what a popd.conf line would, in the same words. -1, or a usage error's code. */
static int add_label(const char *cmd, nodecfg_t *cfg, const char *v)
{
    char joined[NODECFG_LABELS_MAX * (NODECFG_NAME_MAX + 1) + 80] = "", err[300];
    size_t off = 0;
    for (unsigned i = 0; i < cfg->nlabels; i++)
        off += (size_t)snprintf(joined + off, sizeof(joined) - off, "%s,", cfg->labels[i]);
    snprintf(joined + off, sizeof(joined) - off, "%.70s", v);
    if (nodecfg_set(cfg, "labels", joined, err, sizeof(err)))
        return usage_error(cmd, "--label '%s': %s", v, err);
    return -1;
}

/* --admin-listen (D) and --metrics-allow (W, repeatable), shared by init, join and run:
 * through nodecfg_set, so a flag refuses what its popd.conf line would. -1 when set, else the
 * exit code of a usage error. */
static int set_admin_opt(const char *cmd, nodecfg_t *cfg, int opt, const char *v)
{
    char err[300];
    if (opt == 'D') {
        if (nodecfg_set(cfg, "admin-listen", v, err, sizeof(err)))
            return usage_error(cmd, "--admin-listen '%s': %s", v, err);
        return -1;
    }
    char joined[NODECFG_METRICS_ALLOW_MAX * (NODECFG_CIDR_MAX + 1) + 80] = "";
    size_t off = 0;
    for (unsigned i = 0; i < cfg->nmetrics_allow; i++)
        off += (size_t)snprintf(joined + off, sizeof(joined) - off, "%s,", cfg->metrics_allow[i]);
    snprintf(joined + off, sizeof(joined) - off, "%.70s", v);
    if (nodecfg_set(cfg, "metrics-allow", joined, err, sizeof(err)))
        return usage_error(cmd, "--metrics-allow '%s': %s", v, err);
    return -1;
}

/* --tunnel-listen (T), --tunnel-advertise (V), --ingress-address (I), --http-listen (H),
 * --https-listen (S), shared by init, join and run. -1 when set, else the exit code of a usage
 * error. */
static int set_tunnel_opt(const char *cmd, nodecfg_t *cfg, int opt, const char *v)
{
    const char *name = opt == 'T'   ? "tunnel-listen"
                       : opt == 'V' ? "tunnel-advertise"
                       : opt == 'H' ? "http-listen"
                       : opt == 'S' ? "https-listen"
                                    : "ingress-address";
    char *dst = opt == 'T'   ? cfg->tunnel_listen
                : opt == 'V' ? cfg->tunnel_advertise
                : opt == 'H' ? cfg->http_listen
                : opt == 'S' ? cfg->https_listen
                             : cfg->ingress_address;
    if (opt == 'I' ? nodecfg_check_ip(v) : nodecfg_check_addr(v, 0))
        return usage_error(cmd, "--%s '%s' must be %s", name, v,
                           opt == 'I' ? "an IP address" : "HOST:PORT (IPv6 in brackets)");
    snprintf(dst, NODECFG_ADDR_MAX + 1, "%s", v);
    return -1;
}

/* --dns-listen (N), --public-address (P), --location (O), --dns-rrl (R), shared by init, join
 * and run: set through nodecfg_set, so a flag refuses what its popd.conf line would, in the
 * same words. -1 when set, else the exit code of a usage error. */
static int set_dns_opt(const char *cmd, nodecfg_t *cfg, int opt, const char *v)
{
    const char *name = opt == 'N'   ? "dns-listen"
                       : opt == 'P' ? "public-address"
                       : opt == 'O' ? "location"
                                    : "dns-rrl";
    char err[300];
    if (nodecfg_set(cfg, name, v, err, sizeof(err)))
        return usage_error(cmd, "--%s '%s': %s", name, v, err);
    return -1;
}

/* Parses the shared options; returns -1 to go on, else an exit code. */
static int parse_node_opts(const char *cmd, int argc, char **argv, struct node_opts *o,
                           int positional)
{
    memset(o, 0, sizeof(*o));
    o->region = "";
    nodecfg_defaults(&o->cfg);
    int c;
    while ((c = getopt_long(argc, argv, "d:n:r:h", node_longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->dir = optarg;
            break;
        case 'n':
            o->name = optarg;
            break;
        case 'r':
            o->region = optarg;
            break;
        case 'L':
        case 'A':
            if (nodecfg_check_addr(optarg, c == 'L'))
                return usage_error(cmd, "--%s '%s' must be HOST:PORT (IPv6 in brackets)",
                                   c == 'L' ? "mesh-listen" : "advertise", optarg);
            snprintf(c == 'L' ? o->cfg.mesh_listen : o->cfg.advertise, NODECFG_ADDR_MAX + 1, "%s",
                     optarg);
            break;
        case 'T':
        case 'V':
        case 'H':
        case 'S':
        case 'I': {
            int bad = set_tunnel_opt(cmd, &o->cfg, c, optarg);
            if (bad >= 0)
                return bad;
            break;
        }
        case 'N':
        case 'P':
        case 'O':
        case 'R': {
            int bad = set_dns_opt(cmd, &o->cfg, c, optarg);
            if (bad >= 0)
                return bad;
            break;
        }
        case 'm':
            if (nodecfg_parse_size(optarg, strlen(optarg), &o->cfg.store_map_size) ||
                o->cfg.store_map_size < (1u << 20))
                return usage_error(cmd,
                                   "--store-map-size '%s' is not a size of at least "
                                   "1M (e.g. 1G)",
                                   optarg);
            break;
        case 'X':
            o->cfg.no_inbound = true;
            break;
        case 'D':
        case 'W': {
            int bad = set_admin_opt(cmd, &o->cfg, c, optarg);
            if (bad >= 0)
                return bad;
            break;
        }
        case 'B': {
            int bad = add_label(cmd, &o->cfg, optarg);
            if (bad >= 0)
                return bad;
            break;
        }
        case 'g':
            if (nodecfg_parse_duration(optarg, strlen(optarg), &o->cfg.tombstone_grace) ||
                o->cfg.tombstone_grace == 0)
                return usage_error(cmd, "--tombstone-grace '%s' is not a duration (e.g. 7d)",
                                   optarg);
            break;
        case 'o':
            if (strcmp(cmd, "init"))
                return usage_error(cmd, "--root-offline is an option of popd init");
            o->root_offline = optarg;
            break;
        case 'h':
            print_sub_help(find_subcommand(cmd));
            return 0;
        default:
            return usage_error(cmd, "unknown option");
        }
    }
    if (argc - optind > positional)
        return usage_error(cmd, "unexpected argument '%s'", argv[optind + positional]);
    if (argc - optind < positional)
        return usage_error(cmd, "missing TOKEN");
    if (!o->dir)
        return usage_error(cmd, "--data DIR is required");
    if (!o->name)
        return usage_error(cmd, "--name NAME is required");
    if (nodecfg_check_name(o->name))
        return usage_error(cmd,
                           "name '%s' must be 1-63 of a-z, 0-9 and '-' (not at either "
                           "end)",
                           o->name);
    if (o->region[0] && nodecfg_check_name(o->region))
        return usage_error(cmd, "region '%s' must be 1-63 of a-z, 0-9 and '-'", o->region);
    /* Peers dial the advertised address; a wildcard cannot be dialled. */
    netaddr_t dial;
    if (!o->cfg.advertise[0] && netaddr_parse(nodecfg_mesh_addr(&o->cfg), &dial, true) == 0 &&
        (!strcmp(dial.host, "0.0.0.0") || !strcmp(dial.host, "::") || dial.port == 0))
        return usage_error(cmd,
                           "--advertise HOST:PORT is required when --mesh-listen (%s) is "
                           "a wildcard address or port 0",
                           o->cfg.mesh_listen);
    char aerr[400];
    if (nodecfg_check_admin(&o->cfg, aerr, sizeof(aerr)))
        return usage_error(cmd, "%s", aerr);
    snprintf(o->cfg.name, sizeof(o->cfg.name), "%s", o->name);
    snprintf(o->cfg.region, sizeof(o->cfg.region), "%s", o->region);
    return -1;
}

/* Writes a complete node directory: keys, mesh key, store (with initial entries), and last
 * popd.conf, whose presence marks the node as finished. */
static int create_node(const struct node_opts *o, const identity_t *id, const meshkey_t *mk,
                       const storekey_t *sk, const store_entry_t *entries, size_t nentries,
                       bool self_record, char *err, size_t errlen)
{
    char path[4096];
    int rc = prepare_dir(o->dir, err, errlen);
    if (rc == 0)
        rc = identity_save(o->dir, id, err, errlen);
    if (rc == 0)
        rc = meshkey_save(o->dir, mk, err, errlen);
    /* No store key (a seed of a version before store keys): popd run derives it. */
    if (rc == 0 && sk)
        rc = storekey_save(o->dir, sk, err, errlen);
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/%s", o->dir, DAEMON_STORE_DIR);
        if (mkdir(path, 0700) != 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        }
    }
    if (rc == 0) {
        store_t *s = NULL;
        store_opts_t so = {.node_id = id->node_id, .map_size = o->cfg.store_map_size};
        rc = store_open(path, &so, &s);
        if (rc)
            snprintf(err, errlen, "cannot create the store in %s: %s", path, strerror(-rc));
        if (rc == 0 && nentries) {
            int applied = store_merge(s, entries, nentries, clock_wall_ms());
            if (applied < 0) {
                rc = applied;
                snprintf(err, errlen, "cannot store the mesh's registry: %s", store_last_error(s));
            }
        }
        if (rc == 0 && self_record) {
            reg_node_t me = {.id = id->node_id, .joined_ms = clock_wall_ms()};
            snprintf(me.name, sizeof(me.name), "%s", o->cfg.name);
            snprintf(me.region, sizeof(me.region), "%s", o->cfg.region);
            snprintf(me.addr, sizeof(me.addr), "%s", nodecfg_mesh_addr(&o->cfg));
            me.no_inbound = o->cfg.no_inbound;
            memcpy(me.labels, o->cfg.labels, sizeof(me.labels));
            me.nlabels = o->cfg.nlabels;
            me.role = ROLE_POP;
            memcpy(me.curve_pk, id->curve_pk, 32);
            memcpy(me.sign_pk, id->sign_pk, 32);
            msgpack_sbuffer sb;
            msgpack_packer pk;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            reg_node_pack(&pk, &me);
            char key[64];
            reg_node_key(me.id, key, sizeof(key));
            rc = store_put(s, key, strlen(key), sb.data, sb.size, clock_wall_ms(), NULL);
            if (rc)
                snprintf(err, errlen, "cannot register this node: %s", store_last_error(s));
            msgpack_sbuffer_destroy(&sb);
        }
        store_close(&s);
    }
    if (rc == 0)
        rc = nodecfg_save(o->dir, &o->cfg, err, errlen);
    return rc;
}

static int cmd_init(int argc, char **argv)
{
    struct node_opts o;
    int rc = parse_node_opts("init", argc, argv, &o, 0);
    if (rc >= 0)
        return rc;
    char err[4600], idhex[17], meshid[33];
    identity_t id;
    meshkey_t mk;
    storekey_t sk;
    rc = identity_generate(&id);
    if (rc == 0)
        rc = meshkey_generate(&mk);
    if (rc == 0)
        rc = storekey_generate(&sk);
    if (rc) {
        fprintf(stderr, "popd init: cannot generate keys: %s\n", strerror(-rc));
        return 1;
    }
    /* The key hierarchy (node/records/nodecert.h): a root that certifies this first PoP with
     * every capability, kept in DIR/root.key, or with --root-offline in that file only. */
    rootkey_t root;
    store_entry_t trust[2] = {0};
    char rootpath[4096];
    bool wrote_root = false;
    if (o.root_offline)
        snprintf(rootpath, sizeof(rootpath), "%s", o.root_offline);
    else
        snprintf(rootpath, sizeof(rootpath), "%s/%s", o.dir, ROOTKEY_FILE);
    if (rc == 0 && (rc = rootkey_generate(&root)) == 0)
        rc = trust_init_records(&root, &mk, &id, clock_wall_ms(), trust);
    if (rc == 0 && o.root_offline) {
        /* Before the node exists: a root file that cannot be written makes no mesh. */
        rc = rootkey_save(rootpath, &root, err, sizeof(err));
        wrote_root = rc == 0;
    }
    if (rc == 0)
        rc = create_node(&o, &id, &mk, &sk, trust, 2, true, err, sizeof(err));
    if (rc == 0) {
        trustroots_t tr = {0};
        memcpy(tr.cur, root.pk, 32);
        rc = trustroots_save(o.dir, &tr, err, sizeof(err));
    }
    if (rc == 0 && !o.root_offline)
        rc = rootkey_save(rootpath, &root, err, sizeof(err));
    if (rc && wrote_root)
        unlink(rootpath);
    sodium_memzero(&root, sizeof(root));
    for (int i = 0; i < 2; i++) {
        free(trust[i].key);
        free(trust[i].value);
    }
    identity_id_hex(id.node_id, idhex);
    meshkey_id_hex(mk.pk, meshid);
    identity_wipe(&id);
    sodium_memzero(&mk, sizeof(mk));
    sodium_memzero(&sk, sizeof(sk));
    if (rc) {
        fprintf(stderr, "popd init: %s\n", err);
        return 1;
    }
    printf("initialised node %s (id %s) in %s, first member of new mesh %s\n"
           "the mesh's root key is in %s%s\n"
           "start it with: popd run --data %s\n",
           o.name, idhex, o.dir, meshid, rootpath,
           o.root_offline ? " (keep it off-line; certify PoPs with meshctl key certify --root)"
                          : "",
           o.dir);
    return 0;
}

static int cmd_join(int argc, char **argv)
{
    struct node_opts o;
    int rc = parse_node_opts("join", argc, argv, &o, 1);
    if (rc >= 0)
        return rc;
    const char *text = argv[optind];
    token_t t;
    const char *why = "";
    char err[4600];
    if (token_decode(text, strlen(text), &t, &why) != 0) {
        fprintf(stderr, "popd join: the token is %s\n", why);
        return 1;
    }
    uint64_t now = clock_wall_ms();
    if (now >= t.expires_ms) {
        fprintf(stderr,
                "popd join: the token expired %llu s ago; ask for a new one "
                "(meshctl token create)\n",
                (unsigned long long)((now - t.expires_ms) / 1000));
        sodium_memzero(&t, sizeof(t));
        return 1;
    }
    if (t.role != ROLE_POP) {
        fprintf(stderr,
                "popd join: this is a %s token; a PoP needs a pop token "
                "(meshctl token create --role pop)\n",
                node_role_name(t.role));
        sodium_memzero(&t, sizeof(t));
        return 1;
    }
    /* Check the directory before asking the mesh for anything, so a bad path costs no use
     * of the token. */
    if ((rc = prepare_dir(o.dir, err, sizeof(err))) != 0) {
        fprintf(stderr, "popd join: %s\n", err);
        return 1;
    }
    rmdir(o.dir); /* prepare_dir made it or found it empty; create_node makes it again */
    identity_t id;
    if (identity_generate(&id) != 0) {
        fprintf(stderr, "popd join: cannot generate keys\n");
        return 1;
    }
    reg_node_t me = {0};
    snprintf(me.name, sizeof(me.name), "%s", o.cfg.name);
    snprintf(me.region, sizeof(me.region), "%s", o.cfg.region);
    snprintf(me.addr, sizeof(me.addr), "%s", nodecfg_mesh_addr(&o.cfg));
    me.no_inbound = o.cfg.no_inbound;
    memcpy(me.labels, o.cfg.labels, sizeof(me.labels));
    me.nlabels = o.cfg.nlabels;
    me.role = ROLE_POP;
    memcpy(me.curve_pk, id.curve_pk, 32);
    memcpy(me.sign_pk, id.sign_pk, 32);
    joinmsg_reply_t reply;
    uint8_t *raw = NULL;
    rc = join_request(&t, &me, MESH_JOIN_TIMEOUT, &reply, &raw, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "popd join: %s\n", err);
        identity_wipe(&id);
        sodium_memzero(&t, sizeof(t));
        return 1;
    }
    meshkey_t mk;
    if (memcmp(reply.mesh_pk, t.mesh_pk, 32) != 0) {
        rc = -EINVAL;
        snprintf(err, sizeof(err), "the seed belongs to a different mesh than the token");
    } else if (!reply.has_mesh_sk || meshkey_from_sk(&mk, reply.mesh_sk) != 0 ||
               memcmp(mk.pk, reply.mesh_pk, 32) != 0) {
        rc = -EINVAL;
        snprintf(err, sizeof(err), "the seed sent no mesh key, or one that does not match");
    }
    /* Remember every seed of the token: after a restart, they are how we find the mesh. */
    for (unsigned i = 0; rc == 0 && i < t.nseeds && i < NODECFG_MAX_SEEDS; i++) {
        snprintf(o.cfg.seeds[i].addr, sizeof(o.cfg.seeds[i].addr), "%s", t.seeds[i].addr);
        memcpy(o.cfg.seeds[i].curve_pk, t.seeds[i].curve_pk, 32);
        o.cfg.nseeds++;
    }
    if (rc == 0)
        rc = create_node(&o, &id, &mk, reply.has_store_key ? &reply.store_key : NULL,
                         reply.entries, reply.nentries, false, err, sizeof(err));
    /* The root this PoP trusts: the one its seed (authenticated by the token) sent. A seed of
     * a mesh without a root sends none; popd run pins it when the mesh makes one. */
    for (size_t i = 0; rc == 0 && i < reply.nentries; i++) {
        const store_entry_t *e = &reply.entries[i];
        trustroot_rec_t tr;
        const char *rwhy = "";
        if (e->tombstone || e->klen != strlen(TRUST_ROOT_KEY) ||
            memcmp(e->key, TRUST_ROOT_KEY, e->klen))
            continue;
        if (trustroot_parse(e->value, e->vlen, &tr, &rwhy)) {
            rc = -EINVAL;
            snprintf(err, sizeof(err), "the seed sent an unreadable root: %s", rwhy);
            break;
        }
        trustroots_t roots = {.legacy_until_ms = tr.legacy_until_ms};
        memcpy(roots.cur, tr.root_pk, 32);
        rc = trustroots_save(o.dir, &roots, err, sizeof(err));
    }
    char idhex[17], meshid[33];
    identity_id_hex(id.node_id, idhex);
    meshkey_id_hex(t.mesh_pk, meshid);
    sodium_memzero(&reply.mesh_sk, sizeof(reply.mesh_sk));
    sodium_memzero(&reply.store_key, sizeof(reply.store_key));
    free(reply.entries);
    free(raw);
    identity_wipe(&id);
    sodium_memzero(&mk, sizeof(mk));
    sodium_memzero(&t, sizeof(t));
    if (rc) {
        fprintf(stderr, "popd join: %s\n", err);
        return 1;
    }
    printf("joined mesh %s as %s (id %s) in %s\nstart it with: popd run --data %s\n", meshid,
           o.name, idhex, o.dir, o.dir);
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"log-level", required_argument, NULL, 'l'},
        {"tunnel-listen", required_argument, NULL, 'T'},
        {"tunnel-advertise", required_argument, NULL, 'V'},
        {"ingress-address", required_argument, NULL, 'I'},
        {"http-listen", required_argument, NULL, 'H'},
        {"https-listen", required_argument, NULL, 'S'},
        {"dns-listen", required_argument, NULL, 'N'},
        {"public-address", required_argument, NULL, 'P'},
        {"location", required_argument, NULL, 'O'},
        {"dns-rrl", required_argument, NULL, 'R'},
        {"no-inbound", no_argument, NULL, 'X'},
        {"label", required_argument, NULL, 'B'},
        {"admin-listen", required_argument, NULL, 'D'},
        {"metrics-allow", required_argument, NULL, 'W'},
        {"access-log", required_argument, NULL, 'a'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    daemon_opts_t o = {0};
    nodecfg_t over;
    memset(&over, 0, sizeof(over));
    over.dns_rrl = NODECFG_DNS_RRL_UNSET;
    o.overrides = &over;
    int c;
    while ((c = getopt_long(argc, argv, "d:l:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.data_dir = optarg;
            break;
        case 'l':
            if (log_level_parse(optarg) < 0)
                return usage_error("run", "--log-level must be debug, info, warn or error");
            o.log_level = optarg;
            break;
        case 'T':
        case 'V':
        case 'H':
        case 'S':
        case 'I': {
            int bad = set_tunnel_opt("run", &over, c, optarg);
            if (bad >= 0)
                return bad;
            break;
        }
        case 'N':
        case 'P':
        case 'O':
        case 'R': {
            int bad = set_dns_opt("run", &over, c, optarg);
            if (bad >= 0)
                return bad;
            break;
        }
        case 'X':
            over.no_inbound = true;
            break;
        case 'D':
        case 'W': {
            int bad = set_admin_opt("run", &over, c, optarg);
            if (bad >= 0)
                return bad;
            break;
        }
        case 'B': {
            int bad = add_label("run", &over, optarg);
            if (bad >= 0)
                return bad;
            break;
        }
        case 'a': {
            /* checked as popd.conf's line would be; "off" is kept as such, so it can turn
             * off a log popd.conf asks for */
            char err[300];
            if (nodecfg_set(&over, "access-log", optarg, err, sizeof(err)))
                return usage_error("run", "--access-log '%s': %s", optarg, err);
            if (!strcmp(optarg, "off"))
                snprintf(over.access_log, sizeof(over.access_log), "off");
            break;
        }
        case 'h':
            print_sub_help(find_subcommand("run"));
            return 0;
        default:
            return usage_error("run", "unknown option");
        }
    }
    if (optind < argc)
        return usage_error("run", "unexpected argument '%s'", argv[optind]);
    if (!o.data_dir)
        return usage_error("run", "--data DIR is required");
    char err[512];
    int rc = daemon_run(&o, err, sizeof(err));
    if (rc) {
        log_error("%s", err);
        return 1;
    }
    return 0;
}

static int cmd_version(int argc, char **argv)
{
    printf("popd %s\n", POPMESH_VERSION);
    return 0;
}

static int cmd_help(int argc, char **argv);

static const subcommand_t subcommands[] = {
    {"init", cmd_init,
     "--data DIR --name NAME [--region REGION] [--mesh-listen HOST:PORT] [--advertise "
     "HOST:PORT]\n             [--tunnel-listen HOST:PORT] [--tunnel-advertise HOST:PORT] "
     "[--ingress-address IP]\n             [--http-listen HOST:PORT] [--https-listen HOST:PORT] "
     "[--store-map-size SIZE] "
     "[--tombstone-grace DUR]\n             [--dns-listen HOST:PORT] [--public-address "
     "IP[,IP6]] [--location LAT,LON] [--dns-rrl N]\n             [--no-inbound] [--label L ...] "
     "[--admin-listen HOST:PORT] [--metrics-allow CIDR ...]\n             [--root-offline FILE]",
     "Creates a new mesh with this node as its first member, in DIR (new or empty): node\n"
     "keys (node.key, 0600), the mesh signing key (mesh.key, 0600), the store key (store.key,\n"
     "0600), the mesh's root key (root.key, 0600; with --root-offline FILE written to FILE\n"
     "only, for meshctl key certify --root), settings (popd.conf) and the store. NAME and REGION are 1-63 of a-z, 0-9 and '-'. --mesh-listen is where\n"
     "the mesh socket binds (default 127.0.0.1:7946); --advertise is what peers dial\n"
     "(required when --mesh-listen is a wildcard). --tunnel-listen is where sites and other\n"
     "PoPs connect for tunnels (default: the mesh host, mesh port + 1); --tunnel-advertise\n"
     "is what they dial; --ingress-address is the address resource ports bind (default\n"
     "all addresses); --http-listen enables the HTTP ingress there, --https-listen the\n"
     "HTTPS ingress (TLS with the mesh's certificates: meshctl cert import).\n"
     "DNS steering: --dns-listen runs the name server there (UDP and TCP; default off);\n"
     "--public-address is the IPv4 and/or IPv6 address DNS answers give for this PoP\n"
     "(default: the ingress address, else the HTTP listener's host, else the advertised\n"
     "mesh host, when it is an IP address and not a wildcard); --location LAT,LON (decimal\n"
     "degrees) lets clients be sent to the nearest PoP; --dns-rrl caps responses per second\n"
     "per client network (default 200, 0 = no limit).\n"
     "--no-inbound: this machine takes no inbound connections (a firewall that only lets\n"
     "replies in): it dials every PoP itself, and the mesh, its tunnels and routes use\n"
     "those connections both ways (docs/gossip.md, \"PoPs that only dial out\").\n"
     "--label L (repeatable, up to 8): a label resources can require of the PoPs their\n"
     "traffic enters or crosses (meshctl resource add --transit-labels); the region counts\n"
     "as one.\n"
     "--admin-listen serves /metrics (Prometheus), /healthz and /readyz over plain HTTP there\n"
     "(default off; never an ingress address); --metrics-allow CIDR (repeatable) says who may\n"
     "read /metrics (default 127.0.0.0/8 and ::1; docs/operations.md)."},
    {"join", cmd_join,
     "--data DIR --name NAME [--region REGION] [--mesh-listen HOST:PORT] [--advertise "
     "HOST:PORT]\n             [--tunnel-listen HOST:PORT] [--tunnel-advertise HOST:PORT] "
     "[--ingress-address IP]\n             [--http-listen HOST:PORT] [--https-listen HOST:PORT] "
     "[--store-map-size SIZE] "
     "[--tombstone-grace DUR]\n             [--dns-listen HOST:PORT] [--public-address "
     "IP[,IP6]] [--location LAT,LON] [--dns-rrl N] [--no-inbound] [--label L ...]\n"
     "             [--admin-listen HOST:PORT] [--metrics-allow CIDR ...] TOKEN",
     "Joins an existing mesh with a token from 'meshctl token create --role pop', through\n"
     "any seed PoP named in it, and creates the node in DIR. Then: popd run --data DIR."},
    {"run", cmd_run,
     "--data DIR [--log-level debug|info|warn|error] [--tunnel-listen HOST:PORT]\n"
     "             [--tunnel-advertise HOST:PORT] [--ingress-address IP] [--http-listen "
     "HOST:PORT]\n             [--https-listen HOST:PORT] [--dns-listen HOST:PORT] "
     "[--public-address IP[,IP6]]\n             [--location LAT,LON] [--dns-rrl N] [--no-inbound]\n             [--label L ...] [--admin-listen HOST:PORT] [--metrics-allow CIDR ...] [--access-log PATH|stdout|off]",
     "Runs the node in the foreground, logging to stderr. SIGINT or SIGTERM stop it\n"
     "cleanly. The control socket is DIR/control.sock (mode 0600): use meshctl -d DIR.\n"
     "The tunnel, ingress and DNS options override popd.conf for this run; --no-inbound\n"
     "turns no-inbound on for it; --label replaces the labels for it. --access-log\n"
     "writes one JSON line per HTTP request and TCP connection to PATH (reopened on\n"
     "SIGHUP, for logrotate) or stdout, overriding popd.conf's access-log (default off);\n"
     "resources choose on, off or sample:N (meshctl resource set --access-log)."},
    {"version", cmd_version, "", "Prints the version."},
    {"help", cmd_help, "[COMMAND]", "Shows help for all commands or one."},
    {NULL, NULL, NULL, NULL},
};

static const subcommand_t *find_subcommand(const char *name)
{
    for (const subcommand_t *sc = subcommands; sc->name; sc++)
        if (strcmp(sc->name, name) == 0)
            return sc;
    return NULL;
}

static void print_help(FILE *f)
{
    fprintf(f, "usage: popd COMMAND [OPTIONS]\n\npopmesh PoP node daemon.\n\ncommands:\n");
    for (const subcommand_t *sc = subcommands; sc->name; sc++)
        fprintf(f, "  %-8s %s\n", sc->name, sc->usage);
    fprintf(f, "\n'popd COMMAND --help' shows more.\n");
}

static int cmd_help(int argc, char **argv)
{
    if (argc > 1) {
        const subcommand_t *sc = find_subcommand(argv[1]);
        if (!sc) {
            fprintf(stderr, "popd help: no command '%s'\n", argv[1]);
            return EXIT_USAGE;
        }
        print_sub_help(sc);
        return 0;
    }
    print_help(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    log_init("popd", LOG_INFO);
    if (argc < 2) {
        print_help(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return cmd_help(1, argv);
    if (!strcmp(argv[1], "--version"))
        return cmd_version(argc, argv);
    const subcommand_t *sc = find_subcommand(argv[1]);
    if (!sc) {
        fprintf(stderr, "popd: unknown command '%s'\n\n", argv[1]);
        print_help(stderr);
        return EXIT_USAGE;
    }
    return sc->fn(argc - 1, argv + 1);
}
