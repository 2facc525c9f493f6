#include "node/nodecfg.h"

#include "common/geoloc.h"
#include "common/kvfile.h"
#include "common/log.h"
#include "common/netaddr.h"
#include "node/records/cidr.h"
#include "storage/store.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void nodecfg_defaults(nodecfg_t *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->log_level, sizeof(c->log_level), "info");
    c->store_map_size = STORE_DEFAULT_MAP;
    c->tombstone_grace = STORE_DEFAULT_GRACE;
    c->http_max_body = NODECFG_DEFAULT_MAX_BODY;
    c->dns_rrl = NODECFG_DEFAULT_DNS_RRL;
    snprintf(c->mesh_listen, sizeof(c->mesh_listen), "127.0.0.1:%d", NODECFG_DEFAULT_MESH_PORT);
}

const char *nodecfg_mesh_addr(const nodecfg_t *c)
{
    return c->advertise[0] ? c->advertise : c->mesh_listen;
}

int nodecfg_check_addr(const char *s, int allow_zero)
{
    return netaddr_parse(s, NULL, allow_zero != 0);
}

/* "host:port CURVEKEYHEX" */
static int parse_seed(const char *v, size_t vl, nodecfg_seed_t *seed)
{
    const char *sp = memchr(v, ' ', vl);
    if (!sp || (size_t)(sp - v) > NODECFG_ADDR_MAX)
        return -EINVAL;
    size_t al = (size_t)(sp - v);
    memcpy(seed->addr, v, al);
    seed->addr[al] = '\0';
    if (nodecfg_check_addr(seed->addr, 0))
        return -EINVAL;
    const char *k = sp + 1;
    size_t kl = vl - al - 1;
    while (kl && *k == ' ')
        k++, kl--;
    if (kl != 64)
        return -EINVAL;
    for (size_t i = 0; i < 32; i++) {
        unsigned hi, lo;
        char a = k[2 * i], b = k[2 * i + 1];
        hi = a >= '0' && a <= '9'   ? (unsigned)(a - '0')
             : a >= 'a' && a <= 'f' ? (unsigned)(a - 'a' + 10)
                                    : 99;
        lo = b >= '0' && b <= '9'   ? (unsigned)(b - '0')
             : b >= 'a' && b <= 'f' ? (unsigned)(b - 'a' + 10)
                                    : 99;
        if (hi > 15 || lo > 15)
            return -EINVAL;
        seed->curve_pk[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int check_label(const char *s, size_t n)
{
    if (n == 0 || n > NODECFG_NAME_MAX || s[0] == '-' || s[n - 1] == '-')
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
            return -EINVAL;
    }
    return 0;
}

int nodecfg_check_name(const char *s)
{
    return check_label(s, strlen(s));
}

/* Shared by sizes and durations: a decimal number then an optional unit from a table. */
struct unit {
    const char *suffix;
    uint64_t mult;
};

static int parse_scaled(const char *s, size_t len, const struct unit *units, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    if (len == 0 || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    const char *suf = s + i;
    size_t sl = len - i;
    for (const struct unit *u = units; u->suffix; u++) {
        if (strlen(u->suffix) == sl && memcmp(suf, u->suffix, sl) == 0) {
            if (u->mult && v > UINT64_MAX / u->mult)
                return -EINVAL;
            *out = v * u->mult;
            return 0;
        }
    }
    return -EINVAL;
}

int nodecfg_parse_size(const char *s, size_t len, uint64_t *out)
{
    static const struct unit units[] = {{"", 1},           {"k", 1ull << 10}, {"K", 1ull << 10},
                                        {"M", 1ull << 20}, {"G", 1ull << 30}, {"T", 1ull << 40},
                                        {NULL, 0}};
    return parse_scaled(s, len, units, out);
}

int nodecfg_parse_duration(const char *s, size_t len, uint64_t *out_ms)
{
    static const struct unit units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60 * 1000}, {"h", 3600 * 1000}, {"d", 24ull * 3600 * 1000},
        {NULL, 0}};
    return parse_scaled(s, len, units, out_ms);
}

static int copy_label(char *dst, const char *v, size_t vl, int allow_empty, char *err,
                      size_t errlen, const char *what)
{
    if ((vl == 0 && allow_empty) || check_label(v, vl) == 0) {
        memcpy(dst, v, vl);
        dst[vl] = '\0';
        return 0;
    }
    snprintf(err, errlen, "%s must be 1-63 of a-z, 0-9 and '-' (not at either end)", what);
    return -EINVAL;
}

/* An address clients can be sent to: an IP of its family, not the wildcard. */
static bool public_ip(const char *s, int family)
{
    uint8_t a[16];
    static const uint8_t zero[16];
    if (inet_pton(family, s, a) != 1 || !memcmp(a, zero, family == AF_INET ? 4 : 16))
        return false;
    /* An IPv4-mapped IPv6 address is an IPv4 address in disguise: answered as AAAA it
     * reaches nobody. */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return family == AF_INET || memcmp(a, mapped, 12) != 0;
}

#define PUBLIC_RULE                                                                                \
    "public-address must be one IPv4 address, one IPv6 address, or both as IPV4,IPV6 (not a "      \
    "wildcard such as 0.0.0.0)"

/* "IP" or "IP,IP" (one of each family, either order) into public4/public6. */
static int set_public(nodecfg_t *c, const char *v, size_t vl, char *err, size_t errlen)
{
    char v4[NODECFG_PUBLIC4_MAX + 1] = "", v6[NODECFG_PUBLIC6_MAX + 1] = "";
    const char *p = v, *end = v + vl;
    if (vl == 0) { /* back to the default rule */
        c->public4[0] = c->public6[0] = '\0';
        return 0;
    }
    for (int part = 0; p < end || part == 0; part++) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        size_t pl = comma ? (size_t)(comma - p) : (size_t)(end - p);
        char ip[NODECFG_PUBLIC6_MAX + 2];
        if (part == 2 || pl == 0 || pl >= sizeof(ip))
            goto bad;
        memcpy(ip, p, pl);
        ip[pl] = '\0';
        if (!v4[0] && public_ip(ip, AF_INET))
            memcpy(v4, ip, pl + 1);
        else if (!v6[0] && pl <= NODECFG_PUBLIC6_MAX && public_ip(ip, AF_INET6))
            memcpy(v6, ip, pl + 1);
        else
            goto bad;
        p += pl;
        if (comma) {
            p++;
            if (p == end)
                goto bad; /* "IP," */
        }
    }
    memcpy(c->public4, v4, sizeof(v4));
    memcpy(c->public6, v6, sizeof(v6));
    return 0;
bad:
    snprintf(err, errlen, PUBLIC_RULE);
    return -EINVAL;
}

/* "CIDR,CIDR,..." (each as auth_cidr_parse reads it: host bits zero) into metrics_allow;
 * "" = the default (127.0.0.0/8 and ::1). */
static int set_metrics_allow(nodecfg_t *c, const char *v, size_t vl, char *err, size_t errlen)
{
    char tmp[NODECFG_METRICS_ALLOW_MAX * (NODECFG_CIDR_MAX + 1) + 1];
    if (vl >= sizeof(tmp)) {
        snprintf(err, errlen, "metrics-allow is too long (at most %d networks)",
                 NODECFG_METRICS_ALLOW_MAX);
        return -EINVAL;
    }
    memcpy(tmp, v, vl);
    tmp[vl] = '\0';
    unsigned n = 0;
    char nets[NODECFG_METRICS_ALLOW_MAX][NODECFG_CIDR_MAX + 1];
    for (char *save = NULL, *t = strtok_r(tmp, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        auth_cidr_t net;
        const char *why = "";
        if (strlen(t) > NODECFG_CIDR_MAX || auth_cidr_parse(t, &net, &why)) {
            snprintf(err, errlen, "metrics-allow '%.60s' is not a network (%s); e.g. 10.0.0.0/8",
                     t, why);
            return -EINVAL;
        }
        if (n == NODECFG_METRICS_ALLOW_MAX) {
            snprintf(err, errlen, "metrics-allow: at most %d networks", NODECFG_METRICS_ALLOW_MAX);
            return -EINVAL;
        }
        snprintf(nets[n++], sizeof(nets[0]), "%s", t);
    }
    memcpy(c->metrics_allow, nets, sizeof(nets));
    c->nmetrics_allow = n;
    return 0;
}

static int setting(const char *name, size_t nlen, const char *v, size_t vl, void *ctx, char *err,
                   size_t errlen)
{
    nodecfg_t *c = ctx;
    if (kvfile_is(name, nlen, "dns-listen")) {
        if (vl > NODECFG_ADDR_MAX) {
            snprintf(err, errlen, "dns-listen is too long");
            return -EINVAL;
        }
        memcpy(c->dns_listen, v, vl);
        c->dns_listen[vl] = '\0';
        if (vl && nodecfg_check_addr(c->dns_listen, 0)) {
            c->dns_listen[0] = '\0';
            snprintf(err, errlen,
                     "dns-listen must be HOST:PORT (IPv6 in brackets), e.g. "
                     "0.0.0.0:53, or empty for no DNS");
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "public-address"))
        return set_public(c, v, vl, err, errlen);
    if (kvfile_is(name, nlen, "access-log")) {
        /* PATH (absolute: popd may run from anywhere), "stdout", or "off" / "" */
        if (vl > NODECFG_ACCESS_LOG_MAX || memchr(v, '\0', vl) ||
            !(vl == 0 || v[0] == '/' || (vl == 6 && !memcmp(v, "stdout", 6)) ||
              (vl == 3 && !memcmp(v, "off", 3)))) {
            snprintf(err, errlen,
                     "access-log must be an absolute file path (at most %d bytes), stdout or off",
                     NODECFG_ACCESS_LOG_MAX);
            return -EINVAL;
        }
        bool off = vl == 3 && !memcmp(v, "off", 3);
        memcpy(c->access_log, v, off ? 0 : vl);
        c->access_log[off ? 0 : vl] = '\0';
        return 0;
    }
    if (kvfile_is(name, nlen, "location")) {
        char tmp[64] = "";
        if (vl < sizeof(tmp))
            memcpy(tmp, v, vl);
        if (vl >= sizeof(tmp) || geoloc_parse(tmp, &c->lat_udeg, &c->lon_udeg)) {
            snprintf(err, errlen,
                     "location must be LAT,LON in decimal degrees, latitude -90 to 90 and "
                     "longitude -180 to 180 (e.g. 48.8566,2.3522)");
            return -EINVAL;
        }
        c->has_location = true;
        return 0;
    }
    if (kvfile_is(name, nlen, "dns-rrl")) {
        uint64_t n;
        static const struct unit none[] = {{"", 1}, {NULL, 0}};
        if (parse_scaled(v, vl, none, &n) || n > NODECFG_DNS_RRL_MAX) {
            snprintf(err, errlen,
                     "dns-rrl must be a number of responses per second per client network, "
                     "0 (no limit) to %d",
                     NODECFG_DNS_RRL_MAX);
            return -EINVAL;
        }
        c->dns_rrl = (uint32_t)n;
        return 0;
    }
    if (kvfile_is(name, nlen, "labels")) {
        /* "a,b,c": names, distinct, at most NODECFG_LABELS_MAX; "" clears them */
        char tmp[NODECFG_LABELS_MAX * (NODECFG_NAME_MAX + 1) + 1];
        if (vl >= sizeof(tmp)) {
            snprintf(err, errlen, "labels is too long (at most %d names)", NODECFG_LABELS_MAX);
            return -EINVAL;
        }
        memcpy(tmp, v, vl);
        tmp[vl] = '\0';
        c->nlabels = 0;
        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (nodecfg_check_name(t)) {
                snprintf(err, errlen,
                         "label '%.63s' must be 1-63 of a-z, 0-9 and '-', not starting or ending "
                         "with '-'",
                         t);
                return -EINVAL;
            }
            bool dup = false;
            for (unsigned i = 0; i < c->nlabels && !dup; i++)
                dup = !strcmp(c->labels[i], t);
            if (dup)
                continue;
            if (c->nlabels == NODECFG_LABELS_MAX) {
                snprintf(err, errlen, "at most %d labels", NODECFG_LABELS_MAX);
                return -EINVAL;
            }
            snprintf(c->labels[c->nlabels++], sizeof(c->labels[0]), "%s", t);
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "seal-streams")) {
        if ((vl == 3 && !memcmp(v, "yes", 3)) || (vl == 4 && !memcmp(v, "true", 4)))
            c->no_seal = false;
        else if ((vl == 2 && !memcmp(v, "no", 2)) || (vl == 5 && !memcmp(v, "false", 5)))
            c->no_seal = true;
        else {
            snprintf(err, errlen, "seal-streams must be yes or no");
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "no-inbound")) {
        if ((vl == 3 && !memcmp(v, "yes", 3)) || (vl == 4 && !memcmp(v, "true", 4)))
            c->no_inbound = true;
        else if ((vl == 2 && !memcmp(v, "no", 2)) || (vl == 5 && !memcmp(v, "false", 5)))
            c->no_inbound = false;
        else {
            snprintf(err, errlen, "no-inbound must be yes or no");
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "name"))
        return copy_label(c->name, v, vl, 0, err, errlen, "name");
    if (kvfile_is(name, nlen, "region"))
        return copy_label(c->region, v, vl, 1, err, errlen, "region");
    if (kvfile_is(name, nlen, "log-level")) {
        char tmp[8];
        if (vl >= sizeof(tmp)) {
            snprintf(err, errlen, "log-level must be debug, info, warn or error");
            return -EINVAL;
        }
        memcpy(tmp, v, vl);
        tmp[vl] = '\0';
        if (log_level_parse(tmp) < 0) {
            snprintf(err, errlen, "log-level must be debug, info, warn or error");
            return -EINVAL;
        }
        memcpy(c->log_level, tmp, vl + 1);
        return 0;
    }
    if (kvfile_is(name, nlen, "store-map-size")) {
        /* LMDB needs a few pages; below 1 MiB nothing useful fits. */
        if (nodecfg_parse_size(v, vl, &c->store_map_size) || c->store_map_size < (1u << 20)) {
            snprintf(err, errlen, "store-map-size must be a size of at least 1M (e.g. 1G)");
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "http-max-body")) {
        if (nodecfg_parse_size(v, vl, &c->http_max_body) || c->http_max_body == 0) {
            snprintf(err, errlen, "http-max-body must be a size such as 64M or 1G");
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "tombstone-grace")) {
        if (nodecfg_parse_duration(v, vl, &c->tombstone_grace) || c->tombstone_grace == 0) {
            snprintf(err, errlen, "tombstone-grace must be a duration such as 7d or 12h");
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "mesh-listen") || kvfile_is(name, nlen, "advertise")) {
        char *dst = name[0] == 'm' ? c->mesh_listen : c->advertise;
        if (vl > NODECFG_ADDR_MAX) {
            snprintf(err, errlen, "%.*s is too long", (int)nlen, name);
            return -EINVAL;
        }
        memcpy(dst, v, vl);
        dst[vl] = '\0';
        if (nodecfg_check_addr(dst, name[0] == 'm')) {
            snprintf(err, errlen, "%.*s must be HOST:PORT (IPv6 in brackets)", (int)nlen, name);
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "tunnel-listen") || kvfile_is(name, nlen, "tunnel-advertise") ||
        kvfile_is(name, nlen, "ingress-address") || kvfile_is(name, nlen, "http-listen") ||
        kvfile_is(name, nlen, "https-listen")) {
        char *dst = name[0] == 'i'                           ? c->ingress_address
                    : kvfile_is(name, nlen, "https-listen")  ? c->https_listen
                    : name[0] == 'h'                         ? c->http_listen
                    : kvfile_is(name, nlen, "tunnel-listen") ? c->tunnel_listen
                                                             : c->tunnel_advertise;
        if (vl > NODECFG_ADDR_MAX) {
            snprintf(err, errlen, "%.*s is too long", (int)nlen, name);
            return -EINVAL;
        }
        memcpy(dst, v, vl);
        dst[vl] = '\0';
        if (name[0] == 'i' ? nodecfg_check_ip(dst) : nodecfg_check_addr(dst, 0)) {
            snprintf(err, errlen, "%.*s must be %s", (int)nlen, name,
                     name[0] == 'i' ? "an IP address" : "HOST:PORT (IPv6 in brackets)");
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "admin-listen")) {
        if (vl > NODECFG_ADDR_MAX) {
            snprintf(err, errlen, "admin-listen is too long");
            return -EINVAL;
        }
        memcpy(c->admin_listen, v, vl);
        c->admin_listen[vl] = '\0';
        if (vl && nodecfg_check_addr(c->admin_listen, 0)) {
            c->admin_listen[0] = '\0';
            snprintf(err, errlen,
                     "admin-listen must be HOST:PORT (IPv6 in brackets), e.g. 127.0.0.1:9090, "
                     "or empty for none");
            return -EINVAL;
        }
        return 0;
    }
    if (kvfile_is(name, nlen, "metrics-allow"))
        return set_metrics_allow(c, v, vl, err, errlen);
    if (kvfile_is(name, nlen, "seed")) {
        if (c->nseeds == NODECFG_MAX_SEEDS) {
            snprintf(err, errlen, "more than %d seeds", NODECFG_MAX_SEEDS);
            return -EINVAL;
        }
        if (parse_seed(v, vl, &c->seeds[c->nseeds])) {
            snprintf(err, errlen, "seed must be 'HOST:PORT CURVE-KEY-HEX' (64 hex digits)");
            return -EINVAL;
        }
        c->nseeds++;
        return 0;
    }
    snprintf(err, errlen, "unknown setting '%.*s'", (int)(nlen > 40 ? 40 : nlen), name);
    return -EINVAL;
}

int nodecfg_set(nodecfg_t *c, const char *name, const char *value, char *err, size_t errlen)
{
    return setting(name, strlen(name), value, strlen(value), c, err, errlen);
}

int nodecfg_parse(const char *text, size_t len, nodecfg_t *c, char *err, size_t errlen)
{
    int rc = kvfile_parse(text, len, setting, c, err, errlen);
    if (rc == 0 && c->name[0] == '\0') {
        snprintf(err, errlen, "no 'name' setting");
        rc = -EINVAL;
    }
    if (rc == 0)
        rc = nodecfg_check_admin(c, err, errlen);
    return rc;
}

/* Whether two "host:port" could be the same socket: same port, and the same host or either a
 * wildcard. */
static bool same_socket(const char *a, const char *b)
{
    netaddr_t x, y;
    if (!a[0] || !b[0] || netaddr_parse(a, &x, true) || netaddr_parse(b, &y, true))
        return false;
    if (x.port != y.port)
        return false;
    bool wx = !strcmp(x.host, "0.0.0.0") || !strcmp(x.host, "::");
    bool wy = !strcmp(y.host, "0.0.0.0") || !strcmp(y.host, "::");
    return wx || wy || !strcmp(x.host, y.host);
}

int nodecfg_check_admin(const nodecfg_t *c, char *err, size_t errlen)
{
    if (!c->admin_listen[0])
        return 0;
    char tunnel[NODECFG_ADDR_MAX + 1];
    nodecfg_tunnel_listen(c, tunnel, sizeof(tunnel));
    const struct {
        const char *name, *addr;
    } others[] = {{"http-listen", c->http_listen},
                  {"https-listen", c->https_listen},
                  {"dns-listen", c->dns_listen},
                  {"mesh-listen", c->mesh_listen},
                  {"tunnel-listen", tunnel}};
    for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++)
        if (same_socket(c->admin_listen, others[i].addr)) {
            snprintf(err, errlen,
                     "admin-listen %s is the same address as %s %s: the admin listener never "
                     "shares the public ingress or another listener; give it its own port",
                     c->admin_listen, others[i].name, others[i].addr);
            return -EINVAL;
        }
    return 0;
}

int nodecfg_load(const char *dir, nodecfg_t *c, char *err, size_t errlen)
{
    char path[4096], text[64 * 1024], why[300];
    snprintf(path, sizeof(path), "%s/%s", dir, NODECFG_FILE);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT)
            snprintf(err, errlen,
                     "%s is not a popd data directory (no %s); create one with "
                     "'popd init --data %s --name NAME'",
                     dir, NODECFG_FILE, dir);
        else
            snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    ssize_t n = read(fd, text, sizeof(text));
    close(fd);
    if (n < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        return -e;
    }
    if ((size_t)n == sizeof(text)) {
        snprintf(err, errlen, "%s is larger than %zu bytes", path, sizeof(text) - 1);
        return -EFBIG;
    }
    nodecfg_defaults(c);
    int rc = nodecfg_parse(text, (size_t)n, c, why, sizeof(why));
    if (rc)
        snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

int nodecfg_save(const char *dir, const nodecfg_t *c, char *err, size_t errlen)
{
    char path[4096], tmp[4200], text[8192];
    snprintf(path, sizeof(path), "%s/%s", dir, NODECFG_FILE);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int n =
        snprintf(text, sizeof(text),
                 "# popd node settings (local to this machine; the mesh's shared\n"
                 "# configuration lives in the replicated store: see meshctl config)\n"
                 "name = %s\n"
                 "region = %s\n"
                 "log-level = %s\n"
                 "store-map-size = %llu\n"
                 "tombstone-grace = %llums\n"
                 "mesh-listen = %s\n"
                 "%s%s%s",
                 c->name, c->region, c->log_level, (unsigned long long)c->store_map_size,
                 (unsigned long long)c->tombstone_grace, c->mesh_listen,
                 c->advertise[0] ? "advertise = " : "", c->advertise, c->advertise[0] ? "\n" : "");
    const struct {
        const char *k, *v;
    } opt[] = {{"tunnel-listen", c->tunnel_listen},
               {"tunnel-advertise", c->tunnel_advertise},
               {"ingress-address", c->ingress_address},
               {"http-listen", c->http_listen},
               {"https-listen", c->https_listen}};
    for (size_t i = 0; i < sizeof(opt) / sizeof(opt[0]) && n > 0 && (size_t)n < sizeof(text);
         i++)
        if (opt[i].v[0])
            n += snprintf(text + n, sizeof(text) - (size_t)n, "%s = %s\n", opt[i].k, opt[i].v);
    if (c->dns_listen[0] && n > 0 && (size_t)n < sizeof(text))
        n += snprintf(text + n, sizeof(text) - (size_t)n, "dns-listen = %s\n", c->dns_listen);
    if ((c->public4[0] || c->public6[0]) && n > 0 && (size_t)n < sizeof(text))
        n += snprintf(text + n, sizeof(text) - (size_t)n, "public-address = %s%s%s\n", c->public4,
                      c->public4[0] && c->public6[0] ? "," : "", c->public6);
    if (c->has_location && n > 0 && (size_t)n < sizeof(text)) {
        char loc[32];
        geoloc_format(c->lat_udeg, c->lon_udeg, loc, sizeof(loc));
        n += snprintf(text + n, sizeof(text) - (size_t)n, "location = %s\n", loc);
    }
    if (c->dns_rrl != NODECFG_DEFAULT_DNS_RRL && n > 0 && (size_t)n < sizeof(text))
        n += snprintf(text + n, sizeof(text) - (size_t)n, "dns-rrl = %u\n", c->dns_rrl);
    if (c->no_seal && n > 0 && (size_t)n < sizeof(text))
        n += snprintf(text + n, sizeof(text) - (size_t)n, "seal-streams = no\n");
    if (c->no_inbound && n > 0 && (size_t)n < sizeof(text))
        n += snprintf(text + n, sizeof(text) - (size_t)n, "no-inbound = yes\n");
    if (c->access_log[0] && n > 0 && (size_t)n < sizeof(text))
        n += snprintf(text + n, sizeof(text) - (size_t)n, "access-log = %s\n", c->access_log);
    for (unsigned i = 0; i < c->nlabels && n > 0 && (size_t)n < sizeof(text); i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%s%s%s", i ? "," : "labels = ",
                      c->labels[i], i + 1 == c->nlabels ? "\n" : "");
    if (c->http_max_body != NODECFG_DEFAULT_MAX_BODY && n > 0 && (size_t)n < sizeof(text))
        n += snprintf(text + n, sizeof(text) - (size_t)n, "http-max-body = %llu\n",
                      (unsigned long long)c->http_max_body);
    if (c->admin_listen[0] && n > 0 && (size_t)n < sizeof(text))
        n += snprintf(text + n, sizeof(text) - (size_t)n, "admin-listen = %s\n", c->admin_listen);
    for (unsigned i = 0; i < c->nmetrics_allow && n > 0 && (size_t)n < sizeof(text); i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "%s%s%s", i ? "," : "metrics-allow = ",
                      c->metrics_allow[i], i + 1 == c->nmetrics_allow ? "\n" : "");
    for (unsigned i = 0; i < c->nseeds && n > 0 && (size_t)n < sizeof(text); i++) {
        char hex[65];
        for (int k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", c->seeds[i].curve_pk[k]);
        n += snprintf(text + n, sizeof(text) - (size_t)n, "seed = %s %s\n", c->seeds[i].addr, hex);
    }
    if (n < 0 || (size_t)n >= sizeof(text)) {
        snprintf(err, errlen, "settings too long to write");
        return -E2BIG;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(e));
        return -e;
    }
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0) {
        int e = errno ? errno : EIO;
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(e));
        close(fd);
        unlink(tmp);
        return -e;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        snprintf(err, errlen, "cannot rename %s to %s: %s", tmp, path, strerror(e));
        unlink(tmp);
        return -e;
    }
    return 0;
}

void nodecfg_tunnel_listen(const nodecfg_t *c, char *out, size_t len)
{
    if (c->tunnel_listen[0]) {
        snprintf(out, len, "%s", c->tunnel_listen);
        return;
    }
    netaddr_t a;
    if (netaddr_parse(c->mesh_listen, &a, true) != 0) {
        snprintf(out, len, "%s", c->mesh_listen); /* refused later, with the reason */
        return;
    }
    unsigned port = a.port > 0 && a.port < 65535 ? a.port + 1u : 0;
    snprintf(out, len, a.ipv6 ? "[%s]:%u" : "%s:%u", a.host, port);
}

void nodecfg_tunnel_addr(const nodecfg_t *c, char *out, size_t len)
{
    if (c->tunnel_advertise[0]) {
        snprintf(out, len, "%s", c->tunnel_advertise);
        return;
    }
    nodecfg_tunnel_listen(c, out, len);
    /* A wildcard ("0.0.0.0", "::") cannot be dialled: the advertised mesh host instead. */
    netaddr_t t, m;
    if (netaddr_parse(out, &t, true) == 0 &&
        (!strcmp(t.host, "0.0.0.0") || !strcmp(t.host, "::")) && c->advertise[0] &&
        netaddr_parse(c->advertise, &m, false) == 0)
        snprintf(out, len, m.ipv6 ? "[%s]:%u" : "%s:%u", m.host, t.port);
}

int nodecfg_check_ip(const char *s)
{
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, s, &a4) == 1 || inet_pton(AF_INET6, s, &a6) == 1)
        return 0;
    return -EINVAL;
}

/* The host of addr when it is an IP address other than a wildcard, into the buffer of its
 * family. true when one was taken. */
static bool take_ip(const char *host, char *v4, size_t v4len, char *v6, size_t v6len)
{
    if (!host[0])
        return false;
    if (public_ip(host, AF_INET)) {
        snprintf(v4, v4len, "%s", host);
        return true;
    }
    if (public_ip(host, AF_INET6)) {
        snprintf(v6, v6len, "%s", host);
        return true;
    }
    return false;
}

int nodecfg_public_addrs(const nodecfg_t *c, char *v4, size_t v4len, char *v6, size_t v6len)
{
    v4[0] = v6[0] = '\0';
    if (c->public4[0] || c->public6[0]) {
        snprintf(v4, v4len, "%s", c->public4);
        snprintf(v6, v6len, "%s", c->public6);
        return !!c->public4[0] + !!c->public6[0];
    }
    /* Where clients already reach this PoP, most specific first. A name is skipped: answers
     * need an address, and popd never blocks on a resolver. */
    netaddr_t a;
    if (take_ip(c->ingress_address, v4, v4len, v6, v6len))
        return 1;
    if (c->http_listen[0] && netaddr_parse(c->http_listen, &a, false) == 0 &&
        take_ip(a.host, v4, v4len, v6, v6len))
        return 1;
    if (netaddr_parse(nodecfg_mesh_addr(c), &a, true) == 0 && take_ip(a.host, v4, v4len, v6, v6len))
        return 1;
    return 0;
}
