/* popd.conf and node.key parsing, sizes and durations, names, identity save/load. */
#include "node/records/identity.h"
#include "node/nodecfg.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

static void test_parse_ok(void **state)
{
    static const char text[] = "# comment\n\n  name = pop-a \nregion=eu-west-1\r\n"
                               "log-level = debug\nstore-map-size = 64M\ntombstone-grace = 12h\n";
    nodecfg_t c;
    char err[256];
    nodecfg_defaults(&c);
    assert_int_equal(nodecfg_parse(text, strlen(text), &c, err, sizeof(err)), 0);
    assert_string_equal(c.name, "pop-a");
    assert_string_equal(c.region, "eu-west-1");
    assert_string_equal(c.log_level, "debug");
    assert_int_equal(c.store_map_size, 64ull << 20);
    assert_int_equal(c.tombstone_grace, 12ull * 3600 * 1000);
}

static void expect_error(const char *text, const char *needle)
{
    nodecfg_t c;
    char err[256] = "";
    nodecfg_defaults(&c);
    assert_int_equal(nodecfg_parse(text, strlen(text), &c, err, sizeof(err)), -EINVAL);
    if (!strstr(err, needle))
        fail_msg("error '%s' does not mention '%s'", err, needle);
}

static void test_parse_errors(void **state)
{
    expect_error("region = x\n", "no 'name'");
    expect_error("name = Pop_A\n", "line 1: name must be");
    expect_error("name = a\nbogus = 1\n", "line 2: unknown setting 'bogus'");
    expect_error("name = a\njust words\n", "line 2: expected 'name = value'");
    expect_error("name = a\n= 3\n", "line 2: empty name");
    expect_error("name = a\nstore-map-size = 12Q\n", "store-map-size");
    expect_error("name = a\nstore-map-size = 1k\n", "at least 1M");
    expect_error("name = a\ntombstone-grace = soon\n", "tombstone-grace");
    expect_error("name = a\nlog-level = loud\n", "log-level");
    expect_error("name = -a\n", "name must be");
    char longline[2100];
    memset(longline, 'x', sizeof(longline));
    memcpy(longline, "name = ", 7);
    longline[sizeof(longline) - 1] = '\0';
    expect_error(longline, "longer than");
    nodecfg_t c;
    char err[256];
    static const char nul[] = "name = a\0b\n";
    assert_int_equal(nodecfg_parse(nul, sizeof(nul) - 1, &c, err, sizeof(err)), -EINVAL);
}

static void test_sizes_durations(void **state)
{
    uint64_t v;
    assert_int_equal(nodecfg_parse_size("1G", 2, &v), 0);
    assert_int_equal(v, 1ull << 30);
    assert_int_equal(nodecfg_parse_size("", 0, &v), -EINVAL);
    assert_int_equal(nodecfg_parse_size("99999999999999999999", 20, &v), -EINVAL);
    assert_int_equal(nodecfg_parse_size("18446744073709551615T", 21, &v), -EINVAL);
    assert_int_equal(nodecfg_parse_duration("500ms", 5, &v), 0);
    assert_int_equal(v, 500);
    assert_int_equal(nodecfg_parse_duration("7d", 2, &v), 0);
    assert_int_equal(v, 7ull * 24 * 3600 * 1000);
    assert_int_equal(nodecfg_parse_duration("5x", 2, &v), -EINVAL);
    assert_int_equal(nodecfg_parse_duration("-5s", 3, &v), -EINVAL);
}

static void test_names(void **state)
{
    assert_int_equal(nodecfg_check_name("pop-1"), 0);
    assert_int_equal(nodecfg_check_name(""), -EINVAL);
    assert_int_equal(nodecfg_check_name("a-"), -EINVAL);
    assert_int_equal(nodecfg_check_name("A"), -EINVAL);
    assert_int_equal(nodecfg_check_name("a b"), -EINVAL);
    char big[80];
    memset(big, 'a', sizeof(big));
    big[64] = '\0';
    assert_int_equal(nodecfg_check_name(big), -EINVAL);
    big[63] = '\0';
    assert_int_equal(nodecfg_check_name(big), 0);
}

static void test_dns_settings(void **state)
{
    (void)state;
    static const char text[] = "name = pop-a\ndns-listen = 0.0.0.0:53\n"
                               "public-address = 2001:db8::7,203.0.113.7\n"
                               "location = -33.86882, 151.209296\ndns-rrl = 0\n";
    nodecfg_t c, back;
    char err[300], v4[NODECFG_PUBLIC4_MAX + 1], v6[NODECFG_PUBLIC6_MAX + 1];
    nodecfg_defaults(&c);
    assert_int_equal(c.dns_rrl, NODECFG_DEFAULT_DNS_RRL);
    assert_string_equal(c.dns_listen, "");
    assert_int_equal(nodecfg_parse(text, strlen(text), &c, err, sizeof(err)), 0);
    assert_string_equal(c.dns_listen, "0.0.0.0:53");
    assert_string_equal(c.public4, "203.0.113.7");
    assert_string_equal(c.public6, "2001:db8::7");
    assert_true(c.has_location && c.lat_udeg == -33868820 && c.lon_udeg == 151209296);
    assert_int_equal(c.dns_rrl, 0);
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 2);
    assert_string_equal(v4, "203.0.113.7");
    assert_string_equal(v6, "2001:db8::7");

    /* Saved and loaded back: the same settings. */
    char dir[] = "/tmp/test_nodecfg_dns_XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(nodecfg_save(dir, &c, err, sizeof(err)), 0);
    assert_int_equal(nodecfg_load(dir, &back, err, sizeof(err)), 0);
    assert_string_equal(back.dns_listen, c.dns_listen);
    assert_string_equal(back.public4, c.public4);
    assert_string_equal(back.public6, c.public6);
    assert_true(back.has_location && back.lat_udeg == c.lat_udeg && back.lon_udeg == c.lon_udeg);
    assert_int_equal(back.dns_rrl, 0);
    /* Defaults are not written: a file without DNS settings stays as it was. */
    nodecfg_defaults(&c);
    strcpy(c.name, "pop-b");
    assert_int_equal(nodecfg_save(dir, &c, err, sizeof(err)), 0);
    char path[512], buf[4096];
    snprintf(path, sizeof(path), "%s/popd.conf", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    assert_null(strstr(buf, "dns"));
    assert_null(strstr(buf, "public"));
    assert_null(strstr(buf, "location"));
    unlink(path);
    rmdir(dir);

    /* One family only; either order; empty = back to the default. */
    assert_int_equal(nodecfg_set(&c, "public-address", "198.51.100.1", err, sizeof(err)), 0);
    assert_string_equal(c.public4, "198.51.100.1");
    assert_string_equal(c.public6, "");
    assert_int_equal(nodecfg_set(&c, "public-address", "fd00::1", err, sizeof(err)), 0);
    assert_string_equal(c.public4, "");
    assert_string_equal(c.public6, "fd00::1");
    assert_int_equal(nodecfg_set(&c, "public-address", "", err, sizeof(err)), 0);
    assert_string_equal(c.public6, "");
    assert_int_equal(nodecfg_set(&c, "dns-listen", "[::1]:5353", err, sizeof(err)), 0);
    assert_int_equal(nodecfg_set(&c, "dns-rrl", "1000000", err, sizeof(err)), 0);
    assert_int_equal(c.dns_rrl, 1000000);

    struct {
        const char *name, *value, *needle;
    } bad[] = {
        {"dns-listen", "0.0.0.0", "dns-listen must be HOST:PORT"},
        {"dns-listen", "0.0.0.0:0", "dns-listen must be HOST:PORT"},
        {"dns-listen", "::1:53", "dns-listen must be HOST:PORT"},
        {"public-address", "0.0.0.0", "public-address must be"},
        {"public-address", "::", "public-address must be"},
        {"public-address", "::ffff:10.0.0.1", "public-address must be"},
        {"public-address", "10.0.0.1,10.0.0.2", "public-address must be"},
        {"public-address", "fd00::1,fd00::2", "public-address must be"},
        {"public-address", "10.0.0.1,fd00::1,10.0.0.3", "public-address must be"},
        {"public-address", "10.0.0.1,", "public-address must be"},
        {"public-address", ",10.0.0.1", "public-address must be"},
        {"public-address", "pop.example.com", "public-address must be"},
        {"public-address", "10.0.0.1:80", "public-address must be"},
        {"public-address", "10.0.0.0/8", "public-address must be"},
        {"location", "91,0", "location must be LAT,LON"},
        {"location", "0,181", "location must be LAT,LON"},
        {"location", "48.8", "location must be LAT,LON"},
        {"location", "nan,1", "location must be LAT,LON"},
        {"location", "", "location must be LAT,LON"},
        {"dns-rrl", "-1", "dns-rrl must be"},
        {"dns-rrl", "1000001", "dns-rrl must be"},
        {"dns-rrl", "10/s", "dns-rrl must be"},
        {"dns-rrl", "", "dns-rrl must be"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        nodecfg_defaults(&c);
        err[0] = '\0';
        if (nodecfg_set(&c, bad[i].name, bad[i].value, err, sizeof(err)) != -EINVAL)
            fail_msg("%s = '%s' was accepted", bad[i].name, bad[i].value);
        if (!strstr(err, bad[i].needle))
            fail_msg("error '%s' does not mention '%s'", err, bad[i].needle);
        /* A refused value leaves the setting as it was. */
        assert_string_equal(c.dns_listen, "");
        assert_string_equal(c.public4, "");
        assert_false(c.has_location);
        assert_int_equal(c.dns_rrl, NODECFG_DEFAULT_DNS_RRL);
    }
}

static void test_public_addrs_default(void **state)
{
    (void)state;
    nodecfg_t c;
    char v4[NODECFG_PUBLIC4_MAX + 1], v6[NODECFG_PUBLIC6_MAX + 1];
    nodecfg_defaults(&c); /* mesh-listen 127.0.0.1:7946 */
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 1);
    assert_string_equal(v4, "127.0.0.1");
    assert_string_equal(v6, "");
    /* The advertised address beats mesh-listen; a name is no address. */
    strcpy(c.mesh_listen, "0.0.0.0:7946");
    strcpy(c.advertise, "[2001:db8::1]:7946");
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 1);
    assert_string_equal(v4, "");
    assert_string_equal(v6, "2001:db8::1");
    strcpy(c.advertise, "pop-a.example.com:7946");
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 0);
    assert_string_equal(v4, "");
    assert_string_equal(v6, "");
    /* The HTTP listener's host beats the mesh's, unless it is a wildcard. */
    strcpy(c.advertise, "10.0.0.9:7946");
    strcpy(c.http_listen, "0.0.0.0:80");
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 1);
    assert_string_equal(v4, "10.0.0.9");
    strcpy(c.http_listen, "198.51.100.2:80");
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 1);
    assert_string_equal(v4, "198.51.100.2");
    /* The ingress address beats both, unless it is a wildcard. */
    strcpy(c.ingress_address, "::");
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 1);
    assert_string_equal(v4, "198.51.100.2");
    strcpy(c.ingress_address, "198.51.100.3");
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 1);
    assert_string_equal(v4, "198.51.100.3");
    /* An explicit public address replaces the rule entirely. */
    strcpy(c.public6, "2001:db8::5");
    assert_int_equal(nodecfg_public_addrs(&c, v4, sizeof(v4), v6, sizeof(v6)), 1);
    assert_string_equal(v4, "");
    assert_string_equal(v6, "2001:db8::5");
}

static void test_identity_files(void **state)
{
    char dir[] = "/tmp/popmesh-test-id-XXXXXX", err[256], path[512];
    assert_non_null(mkdtemp(dir));
    identity_t a, b;
    assert_int_equal(identity_generate(&a), 0);
    assert_int_not_equal(a.node_id, 0);
    assert_int_equal(identity_save(dir, &a, err, sizeof(err)), 0);
    /* refuses to overwrite */
    assert_int_equal(identity_save(dir, &a, err, sizeof(err)), -EEXIST);
    assert_int_equal(identity_load(dir, &b, err, sizeof(err)), 0);
    assert_memory_equal(a.curve_pk, b.curve_pk, 32);
    assert_memory_equal(a.sign_pk, b.sign_pk, 32);
    assert_true(a.node_id == b.node_id);
    snprintf(path, sizeof(path), "%s/%s", dir, IDENTITY_KEY_FILE);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* a key file others can read is refused */
    chmod(path, 0644);
    assert_int_equal(identity_load(dir, &b, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s", dir, IDENTITY_PUB_FILE);
    unlink(path);
    rmdir(dir);
}

/* mesh.key's bytes are a format (existing data directories must load): pinned for a fixed key. */
static void test_meshkey_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/popmesh-test-mk-XXXXXX", err[400], path[512], text[512];
    assert_non_null(mkdtemp(dir));
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    meshkey_t k, back;
    crypto_sign_seed_keypair(k.pk, k.sk, seed);
    assert_int_equal(meshkey_save(dir, &k, err, sizeof(err)), 0);
    assert_int_equal(meshkey_save(dir, &k, err, sizeof(err)), -EEXIST);
    snprintf(path, sizeof(path), "%s/%s", dir, MESHKEY_FILE);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_string_equal(
        text,
        "# popmesh mesh signing key: every PoP holds it; keep private (mode 0600)\n"
        "mesh-sign-seed = 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(meshkey_load(dir, &back, err, sizeof(err)), 0);
    assert_memory_equal(&back, &k, sizeof(k));
    chmod(path, 0640);
    assert_int_equal(meshkey_load(dir, &back, err, sizeof(err)), -EPERM);
    assert_non_null(strstr(err, "chmod 600"));
    unlink(path);
    snprintf(path, sizeof(path), "%s/%s", dir, MESHKEY_PUB_FILE);
    f = fopen(path, "r");
    assert_non_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_string_equal(
        text, "# popmesh mesh public key\nmesh-id = 40bca4eaf9d2b097ff8dbaa4d61767ed\n"
              "mesh-public = 03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8\n");
    unlink(path);
    rmdir(dir);
}

static void test_identity_parse_errors(void **state)
{
    identity_t id;
    char err[256];
    static const char *bad[] = {
        "curve-secret = 00\nsign-seed = 00\n",
        ("curve-secret = "
         "zz00000000000000000000000000000000000000000000000000000000000000\n"),
        "sign-seed = 0000000000000000000000000000000000000000000000000000000000000000\n",
        "other = 1\n",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(identity_parse(bad[i], strlen(bad[i]), &id, err, sizeof(err)), -EINVAL);
}

/* The tunnel endpoints derived from the mesh's, IPv6 and wildcards included. */
static void test_tunnel_addrs(void **state)
{
    (void)state;
    static const struct {
        const char *conf, *listen, *publish;
    } cases[] = {
        {"name = a\nmesh-listen = [::1]:7946\n", "[::1]:7947", "[::1]:7947"},
        {"name = a\nmesh-listen = 10.0.0.1:7946\n", "10.0.0.1:7947", "10.0.0.1:7947"},
        /* a wildcard is published as the advertised mesh host, never as itself */
        {"name = a\nmesh-listen = [::]:7946\nadvertise = 127.0.0.1:7946\n", "[::]:7947",
         "127.0.0.1:7947"},
        {"name = a\nmesh-listen = 0.0.0.0:7946\nadvertise = [2001:db8::1]:7946\n", "0.0.0.0:7947",
         "[2001:db8::1]:7947"},
        {"name = a\nmesh-listen = [::1]:7946\ntunnel-listen = [::]:9000\nadvertise = "
         "[fd00::1]:7946\n",
         "[::]:9000", "[fd00::1]:9000"},
        {"name = a\nmesh-listen = [::]:7946\nadvertise = [fd00::1]:7946\ntunnel-advertise = "
         "tun.example:443\n",
         "[::]:7947", "tun.example:443"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        nodecfg_t c;
        char err[256], out[NODECFG_ADDR_MAX + 1];
        nodecfg_defaults(&c);
        if (nodecfg_parse(cases[i].conf, strlen(cases[i].conf), &c, err, sizeof(err)) != 0)
            fail_msg("case %zu: %s", i, err);
        nodecfg_tunnel_listen(&c, out, sizeof(out));
        assert_string_equal(out, cases[i].listen);
        nodecfg_tunnel_addr(&c, out, sizeof(out));
        assert_string_equal(out, cases[i].publish);
    }
}

/* access-log: an absolute path, stdout, or off; kept through save and load. */
static void test_access_log(void **state)
{
    (void)state;
    nodecfg_t c, back;
    char err[300], dir[] = "/tmp/popmesh-test-al-XXXXXX", path[512];
    nodecfg_defaults(&c);
    assert_string_equal(c.access_log, "");
    assert_int_equal(nodecfg_set(&c, "access-log", "stdout", err, sizeof(err)), 0);
    assert_string_equal(c.access_log, "stdout");
    assert_int_equal(nodecfg_set(&c, "access-log", "off", err, sizeof(err)), 0);
    assert_string_equal(c.access_log, "");
    static const char *const bad[] = {"access.log", "./a.log", "STDOUT", "on"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(nodecfg_set(&c, "access-log", bad[i], err, sizeof(err)), -EINVAL);
        assert_non_null(strstr(err, "access-log must be"));
    }
    assert_int_equal(nodecfg_set(&c, "access-log", "/var/log/popd/access.log", err, sizeof(err)),
                     0);
    snprintf(c.name, sizeof(c.name), "pop-a");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(nodecfg_save(dir, &c, err, sizeof(err)), 0);
    assert_int_equal(nodecfg_load(dir, &back, err, sizeof(err)), 0);
    assert_string_equal(back.access_log, "/var/log/popd/access.log");
    snprintf(path, sizeof(path), "%s/%s", dir, NODECFG_FILE);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_sizes_durations), cmocka_unit_test(test_names),
        cmocka_unit_test(test_identity_files),  cmocka_unit_test(test_identity_parse_errors),
        cmocka_unit_test(test_meshkey_file),
        cmocka_unit_test(test_dns_settings),    cmocka_unit_test(test_public_addrs_default),
        cmocka_unit_test(test_tunnel_addrs),
        cmocka_unit_test(test_access_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
