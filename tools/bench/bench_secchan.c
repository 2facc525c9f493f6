/* bench_secchan: the secure channel's record path (tunnel/secchan.h) per suite, against the
 * cipher the tunnel would otherwise ride on, in one run on one core.
 *
 *   aes256gcm  sc_seal + sc_open of 64 KiB records, suite forced to AES-256-GCM (skipped on a
 *              CPU without AES-NI/CLMUL)
 *   chacha20   the same with ChaCha20-Poly1305-IETF
 *   +rekey     the same, with a REKEY sealed and opened every --rekey-every records (default
 *              16: every MiB, where a tunnel rekeys after 64 GiB), its cost counted in seal and
 *              open: what rekeying costs the record path at worst; also us per rekey
 *   curve      the peer: what one ZeroMQ CURVE message costs in crypto and copies, done the
 *              way libzmq does it (copy the message behind crypto_box_ZEROBYTES of padding,
 *              crypto_box_afternm = XSalsa20-Poly1305, copy the box out; the reverse to open)
 *
 * Each contender seals a 64 KiB plaintext into a record and opens that record, over and over
 * for --seconds (default 1) per run; seal and open are timed apart. Each figure is the median
 * of --runs (default 5) runs, in Gbit/s of plaintext; "both" is one byte through seal and
 * open, i.e. what one core can push if it did both ends. The ratio is both / curve's both.
 * Every run checks the last record's plaintext round-tripped (a mismatch exits 1).
 *
 * Usage: bench_secchan [--seconds S] [--runs R] [--size BYTES] [--rekey-every N] */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "common/clock.h"
#include "tunnel/secchan.h"

#define RUNS_MAX 99

struct result {
    double seal, open, both; /* Gbit/s */
    double rekey_us;         /* us per rekey (seal + open of a REKEY); 0 without */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_secchan: %s\n", what);
    exit(1);
}

/* A pair established on the given suite (0: whatever the machine picks). */
static void make_pair(sc_t *i, sc_t *r, uint8_t suites)
{
    uint8_t i_pk[32], i_sk[32], r_pk[32], r_sk[32];
    crypto_box_keypair(i_pk, i_sk);
    crypto_box_keypair(r_pk, r_sk);
    uint8_t hello[SC_HELLO_MAX], welcome[SC_WELCOME_MAX];
    const uint8_t *p;
    size_t plen;
    sc_force_suites(suites);
    int n = sc_initiate(i, i_pk, i_sk, r_pk, NULL, 0, 1, hello);
    if (n < 0 ||
        sc_accept(r, r_pk, r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen) != 0)
        die("handshake failed (HELLO)");
    n = sc_respond(r, NULL, 0, welcome);
    if (n < 0 ||
        sc_initiator_finish(i, welcome + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen) != 0)
        die("handshake failed (WELCOME)");
    sc_force_suites(0);
    sodium_memzero(i_sk, sizeof(i_sk));
    sodium_memzero(r_sk, sizeof(r_sk));
}

static struct result run_secchan(sc_t *i, sc_t *r, const uint8_t *plain, size_t size, uint8_t *rec,
                                 double seconds, unsigned rekey_every)
{
    double t_seal = 0, t_open = 0, t_rekey = 0, start = clock_mono_s();
    uint64_t records = 0, rekeys = 0;
    size_t plen = 0;
    sc_piece_t piece = {plain, size};
    do {
        if (rekey_every && records % rekey_every == rekey_every - 1) {
            uint8_t rk[SC_REKEY_LEN];
            double t0 = clock_mono_s();
            ssize_t n = sc_seal_rekey(i, 1, rk);
            double t1 = clock_mono_s();
            if (n != SC_REKEY_LEN || sc_open_rekey(r, rk, rk + SC_HDR_LEN, SC_REKEY_BODY_LEN) != 0)
                die("rekey failed");
            double t2 = clock_mono_s();
            t_seal += t1 - t0;
            t_open += t2 - t1;
            t_rekey += t2 - t0;
            rekeys++;
        }
        double t0 = clock_mono_s();
        ssize_t n = sc_seal(i, &piece, 1, rec);
        double t1 = clock_mono_s();
        if (n != (ssize_t)(size + SC_OVERHEAD) ||
            sc_open(r, rec, rec + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &plen) != 0)
            die("seal/open failed");
        double t2 = clock_mono_s();
        t_seal += t1 - t0;
        t_open += t2 - t1;
        records++;
    } while (clock_mono_s() - start < seconds);
    if (plen != size || memcmp(rec + SC_HDR_LEN, plain, size) != 0)
        die("record did not round-trip");
    double bits = (double)records * (double)size * 8;
    return (struct result){bits / t_seal / 1e9, bits / t_open / 1e9, bits / (t_seal + t_open) / 1e9,
                           rekeys ? t_rekey / (double)rekeys * 1e6 : 0};
}

/* libzmq's curve_mechanism_base_t::encode/decode, minus the framing: the crypto and the
 * copies of one CURVE message. */
static struct result run_curve(const uint8_t *plain, size_t size, double seconds)
{
    uint8_t a_pk[32], a_sk[32], b_pk[32], b_sk[32], ka[crypto_box_BEFORENMBYTES],
        kb[crypto_box_BEFORENMBYTES], nonce[crypto_box_NONCEBYTES] = {0};
    crypto_box_keypair(a_pk, a_sk);
    crypto_box_keypair(b_pk, b_sk);
    if (crypto_box_beforenm(ka, b_pk, a_sk) != 0 || crypto_box_beforenm(kb, a_pk, b_sk) != 0)
        die("crypto_box_beforenm");
    size_t padded = crypto_box_ZEROBYTES + size;
    uint8_t *m = calloc(1, padded), *box = calloc(1, padded), *wire = malloc(padded),
            *out = malloc(size);
    if (!m || !box || !wire || !out)
        die("out of memory");
    size_t wire_len = padded - crypto_box_BOXZEROBYTES;
    double t_seal = 0, t_open = 0, start = clock_mono_s();
    uint64_t records = 0;
    do {
        sodium_increment(nonce, sizeof(nonce));
        double t0 = clock_mono_s();
        memcpy(m + crypto_box_ZEROBYTES, plain, size);
        crypto_box_afternm(box, m, padded, nonce, ka);
        memcpy(wire, box + crypto_box_BOXZEROBYTES, wire_len);
        double t1 = clock_mono_s();
        memset(box, 0, crypto_box_BOXZEROBYTES);
        memcpy(box + crypto_box_BOXZEROBYTES, wire, wire_len);
        if (crypto_box_open_afternm(m, box, padded, nonce, kb) != 0)
            die("crypto_box_open_afternm failed");
        memcpy(out, m + crypto_box_ZEROBYTES, size);
        double t2 = clock_mono_s();
        t_seal += t1 - t0;
        t_open += t2 - t1;
        records++;
    } while (clock_mono_s() - start < seconds);
    if (memcmp(out, plain, size) != 0)
        die("curve message did not round-trip");
    free(m);
    free(box);
    free(wire);
    free(out);
    double bits = (double)records * (double)size * 8;
    return (struct result){bits / t_seal / 1e9, bits / t_open / 1e9,
                           bits / (t_seal + t_open) / 1e9, 0};
}

static struct result median_of(struct result *r, int runs)
{
    double seal[RUNS_MAX], open[RUNS_MAX], both[RUNS_MAX], rekey[RUNS_MAX];
    for (int k = 0; k < runs; k++) {
        seal[k] = r[k].seal;
        open[k] = r[k].open;
        both[k] = r[k].both;
        rekey[k] = r[k].rekey_us;
    }
    return (struct result){median(seal, runs), median(open, runs), median(both, runs),
                           median(rekey, runs)};
}

int main(int argc, char **argv)
{
    double seconds = 1;
    int runs = 5;
    size_t size = 65536;
    unsigned rekey_every = 16;
    for (int k = 1; k < argc; k++) {
        if (!strcmp(argv[k], "--seconds") && k + 1 < argc)
            seconds = atof(argv[++k]);
        else if (!strcmp(argv[k], "--runs") && k + 1 < argc)
            runs = atoi(argv[++k]);
        else if (!strcmp(argv[k], "--size") && k + 1 < argc)
            size = (size_t)strtoul(argv[++k], NULL, 10);
        else if (!strcmp(argv[k], "--rekey-every") && k + 1 < argc)
            rekey_every = (unsigned)strtoul(argv[++k], NULL, 10);
        else {
            fprintf(stderr, "usage: bench_secchan [--seconds S] [--runs R] [--size BYTES] "
                            "[--rekey-every N]\n");
            return 2;
        }
    }
    if (runs < 1 || runs > RUNS_MAX || seconds <= 0 || size < 1 || size > SC_PLAIN_MAX ||
        rekey_every < 1) {
        fprintf(stderr, "bench_secchan: runs 1..%d, seconds > 0, size 1..%d, rekey-every >= 1\n",
                RUNS_MAX, SC_PLAIN_MAX);
        return 2;
    }
    if (sodium_init() < 0)
        die("libsodium failed to initialise");

    uint8_t *plain = malloc(size), *rec = malloc(size + SC_OVERHEAD);
    if (!plain || !rec)
        die("out of memory");
    randombytes_buf(plain, size);

    /* Contenders take turns, run by run, so that a burst of load elsewhere on the machine
     * lands on all of them rather than on one. */
    struct contender {
        const char *name;
        enum sc_suite suite; /* 0: the curve peer */
        bool rekey;          /* a REKEY every rekey_every records */
        bool available;
        sc_t i, r;
        struct result res[RUNS_MAX], median;
    } c[] = {
        {.name = "aes256gcm", .suite = SC_SUITE_AES256GCM},
        {.name = "aes+rekey", .suite = SC_SUITE_AES256GCM, .rekey = true},
        {.name = "chacha20", .suite = SC_SUITE_CHACHA20POLY1305},
        {.name = "cha+rekey", .suite = SC_SUITE_CHACHA20POLY1305, .rekey = true},
        {.name = "curve"},
    };
    const size_t nc = sizeof(c) / sizeof(c[0]);
    for (size_t k = 0; k < nc; k++) {
        uint8_t bit = (uint8_t)(1u << c[k].suite);
        c[k].available = !c[k].suite || (sc_local_suites() & bit);
        if (!c[k].suite || !c[k].available)
            continue;
        make_pair(&c[k].i, &c[k].r, bit);
        if (c[k].i.suite != c[k].suite)
            die("the suite was not the one forced");
    }
    for (int run = 0; run < runs; run++)
        for (size_t k = 0; k < nc; k++)
            if (c[k].available)
                c[k].res[run] = c[k].suite ? run_secchan(&c[k].i, &c[k].r, plain, size, rec,
                                                         seconds, c[k].rekey ? rekey_every : 0)
                                           : run_curve(plain, size, seconds);
    for (size_t k = 0; k < nc; k++)
        if (c[k].available)
            c[k].median = median_of(c[k].res, runs);

    const struct result *curve = &c[nc - 1].median;
    printf("records of %zu bytes, %d runs of %.1f s per contender, median Gbit/s of plaintext\n",
           size, runs, seconds);
    printf("%-10s %8s %8s %8s %9s %10s\n", "suite", "seal", "open", "both", "vs curve", "us/rekey");
    for (size_t k = 0; k < nc; k++) {
        if (!c[k].available) {
            printf("%-10s (not available on this CPU)\n", c[k].name);
            continue;
        }
        const struct result *m = &c[k].median;
        printf("%-10s %8.2f %8.2f %8.2f %8.2fx", c[k].name, m->seal, m->open, m->both,
               m->both / curve->both);
        if (c[k].rekey)
            printf(" %10.2f (every %u records)", m->rekey_us, rekey_every);
        printf("\n");
        sc_wipe(&c[k].i);
        sc_wipe(&c[k].r);
    }
    free(plain);
    free(rec);
    return 0;
}
