/* popd: the PoP node daemon. Subcommands come from one table; help is generated from it. */
#include "common/log.h"
#include "node/daemon.h"
#include "node/identity.h"
#include "node/nodecfg.h"
#include "storage/store.h"

#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_USAGE = 2 };

typedef struct subcommand {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
    const char *help;
} subcommand_t;

static const subcommand_t *find_subcommand(const char *name);

static int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

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
        snprintf(err, errlen, "%s is already a popd data directory; run it with 'popd run "
                 "--data %s'", dir, dir);
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

static int cmd_init(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"name", required_argument, NULL, 'n'},
        {"region", required_argument, NULL, 'r'},
        {"store-map-size", required_argument, NULL, 'm'},
        {"tombstone-grace", required_argument, NULL, 'g'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *dir = NULL, *name = NULL, *region = "";
    nodecfg_t cfg;
    nodecfg_defaults(&cfg);
    int c;
    while ((c = getopt_long(argc, argv, "d:n:r:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            dir = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'r':
            region = optarg;
            break;
        case 'm':
            if (nodecfg_parse_size(optarg, strlen(optarg), &cfg.store_map_size) ||
                cfg.store_map_size < (1u << 20))
                return usage_error("init", "--store-map-size '%s' is not a size of at least "
                                   "1M (e.g. 1G)", optarg);
            break;
        case 'g':
            if (nodecfg_parse_duration(optarg, strlen(optarg), &cfg.tombstone_grace) ||
                cfg.tombstone_grace == 0)
                return usage_error("init", "--tombstone-grace '%s' is not a duration (e.g. 7d)",
                                   optarg);
            break;
        case 'h':
            print_sub_help(find_subcommand("init"));
            return 0;
        default:
            return usage_error("init", "unknown option");
        }
    }
    if (optind < argc)
        return usage_error("init", "unexpected argument '%s'", argv[optind]);
    if (!dir)
        return usage_error("init", "--data DIR is required");
    if (!name)
        return usage_error("init", "--name NAME is required");
    if (nodecfg_check_name(name))
        return usage_error("init", "name '%s' must be 1-63 of a-z, 0-9 and '-' (not at either "
                           "end)", name);
    if (region[0] && nodecfg_check_name(region))
        return usage_error("init", "region '%s' must be 1-63 of a-z, 0-9 and '-'", region);
    snprintf(cfg.name, sizeof(cfg.name), "%s", name);
    snprintf(cfg.region, sizeof(cfg.region), "%s", region);

    char err[4600], path[4096];
    identity_t id;
    int rc = prepare_dir(dir, err, sizeof(err));
    if (rc == 0 && (rc = identity_generate(&id)) != 0)
        snprintf(err, sizeof(err), "cannot generate keys: %s", strerror(-rc));
    if (rc == 0)
        rc = identity_save(dir, &id, err, sizeof(err));
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/%s", dir, DAEMON_STORE_DIR);
        if (mkdir(path, 0700) != 0) {
            rc = -errno;
            snprintf(err, sizeof(err), "cannot create %s: %s", path, strerror(errno));
        }
    }
    if (rc == 0) {
        store_t *s = NULL;
        store_opts_t so = {.node_id = id.node_id, .map_size = cfg.store_map_size};
        rc = store_open(path, &so, &s);
        if (rc)
            snprintf(err, sizeof(err), "cannot create the store in %s: %s", path,
                     strerror(-rc));
        store_close(&s);
    }
    /* popd.conf last: its presence is what marks the directory as a finished node. */
    if (rc == 0)
        rc = nodecfg_save(dir, &cfg, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "popd init: %s\n", err);
        return 1;
    }
    char idhex[17];
    identity_id_hex(id.node_id, idhex);
    identity_wipe(&id);
    printf("initialised node %s (id %s) in %s\nstart it with: popd run --data %s\n", name, idhex,
           dir, dir);
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    daemon_opts_t o = {0};
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
     "--data DIR --name NAME [--region REGION] [--store-map-size SIZE] [--tombstone-grace DUR]",
     "Creates a node in DIR (new or empty): its keys (node.key, mode 0600), its settings\n"
     "(popd.conf) and its store. NAME and REGION are 1-63 of a-z, 0-9 and '-'."},
    {"run", cmd_run, "--data DIR [--log-level debug|info|warn|error]",
     "Runs the node in the foreground, logging to stderr. SIGINT or SIGTERM stop it\n"
     "cleanly. The control socket is DIR/control.sock (mode 0600): use meshctl -d DIR."},
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
