/* Fuzzes every reader of peer bytes in the secure channel (tunnel/secchan.h). The first input
 * byte picks the target (modulo 7), the rest is what the peer sent:
 *
 *   0  a record header and body: sc_parse_header, whose answer must respect the per-type
 *      limits, then (when it says DATA or REKEY) sc_open or sc_open_rekey of an established
 *      pair
 *   1  a HELLO body: sc_accept of a responder with a fixed key; when it accepts, sc_respond
 *   2  a WELCOME body: sc_initiator_finish of an initiator that sent a fixed HELLO; success
 *      must give the keys of the responder that really answered it
 *   3  a DATA record (header + body): sc_open of an established AES-256-GCM pair (ChaCha20 on
 *      a machine without AES-NI)
 *   4  the same, on a ChaCha20-Poly1305 pair
 *   5  a REKEY record (header + body): sc_open_rekey of an established AES-256-GCM pair (as 3);
 *      success must switch to the sender's next key: the fixture's record sealed with it then
 *      opens, and one sealed with the old key does not
 *   6  the same, on a ChaCha20-Poly1305 pair
 *
 * Everything is deterministic, so a crash reproduces: static keys come from fixed seeds, and
 * libsodium's random generator is replaced by a ChaCha20 stream from a fixed seed (restarted
 * at each input), so the fixtures' ephemeral keys, hence the valid HELLO, WELCOME and records
 * below, are the same in every run. Every state is copied by value from a fixture built once.
 *
 * With SC_CORPUS_DIR set, the first call writes one valid input per target there: that is
 * how tests/fuzz/corpus/fuzz_secchan/ was made. */
#include "tunnel/secchan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- deterministic randombytes ------------------------------------------------------------ */

static uint64_t rng_calls; /* restarted per input */

static void det_buf(void *const buf, const size_t size)
{
    uint8_t seed[randombytes_SEEDBYTES] = "popmesh fuzz_secchan rng";
    memcpy(seed + 24, &rng_calls, sizeof(rng_calls));
    rng_calls++;
    randombytes_buf_deterministic(buf, size, seed);
}

static uint32_t det_random(void)
{
    uint32_t r;
    det_buf(&r, sizeof(r));
    return r;
}

static const char *det_name(void)
{
    return "fuzz_secchan deterministic";
}

static struct randombytes_implementation det_rng = {
    .implementation_name = det_name,
    .random = det_random,
    .buf = det_buf,
};

/* ---- fixtures ----------------------------------------------------------------------------- */

struct pair {
    sc_t i, r;                       /* established */
    uint8_t rec[64 + SC_OVERHEAD];   /* record 0 from i to r */
    uint8_t rekey[SC_REKEY_LEN];     /* also record 0 from i to r (another timeline): a REKEY */
    uint8_t after[64 + SC_OVERHEAD]; /* record 1 after that REKEY, with i's next key */
    uint8_t stale[64 + SC_OVERHEAD]; /* record 1 sealed with the old key instead */
};

static struct {
    uint8_t i_pk[32], i_sk[32], r_pk[32], r_sk[32];
    sc_t hello_sent;             /* initiator waiting for WELCOME */
    sc_t welcomed;               /* the responder that answered it, established */
    uint8_t hello[SC_HELLO_MAX]; /* what hello_sent sent */
    int hello_len;
    uint8_t welcome[SC_WELCOME_MAX]; /* what welcomed answered */
    int welcome_len;
    struct pair aes, chacha;
} fx;

static void check(bool ok)
{
    if (!ok)
        abort();
}

static void make_pair(struct pair *pr)
{
    uint8_t hello[SC_HELLO_MAX], welcome[SC_WELCOME_MAX];
    const uint8_t *p;
    size_t plen;
    int n = sc_initiate(&pr->i, fx.i_pk, fx.i_sk, fx.r_pk, NULL, 0, 1, hello);
    check(n > 0);
    check(sc_accept(&pr->r, fx.r_pk, fx.r_sk, hello + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p,
                    &plen) == 0);
    n = sc_respond(&pr->r, NULL, 0, welcome);
    check(n > 0);
    check(sc_initiator_finish(&pr->i, welcome + SC_HDR_LEN, (size_t)n - SC_HDR_LEN, &p, &plen) ==
          0);
    uint8_t plain[64];
    memset(plain, 'd', sizeof(plain));
    sc_piece_t piece = {plain, sizeof(plain)};
    sc_t i = pr->i; /* the fixture stays at record 0 */
    check(sc_seal(&i, &piece, 1, pr->rec) == (ssize_t)sizeof(pr->rec));
    check(sc_seal(&i, &piece, 1, pr->stale) == (ssize_t)sizeof(pr->stale));
    i = pr->i;
    check(sc_seal_rekey(&i, 1, pr->rekey) == SC_REKEY_LEN);
    check(sc_seal(&i, &piece, 1, pr->after) == (ssize_t)sizeof(pr->after));
}

static void write_seed(const char *dir, const char *name, uint8_t sel, const uint8_t *b, size_t len)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    check(f != NULL);
    check(fwrite(&sel, 1, 1, f) == 1 && fwrite(b, 1, len, f) == len);
    check(fclose(f) == 0);
}

static void setup(void)
{
    check(randombytes_set_implementation(&det_rng) == 0); /* before sodium_init */
    check(sodium_init() >= 0);
    uint8_t seed[32];
    memset(seed, 0x11, sizeof(seed));
    crypto_box_seed_keypair(fx.i_pk, fx.i_sk, seed);
    memset(seed, 0x22, sizeof(seed));
    crypto_box_seed_keypair(fx.r_pk, fx.r_sk, seed);

    static const uint8_t hp[] = "fuzz hello", wp[] = "fuzz welcome";
    fx.hello_len =
        sc_initiate(&fx.hello_sent, fx.i_pk, fx.i_sk, fx.r_pk, hp, sizeof(hp), 1, fx.hello);
    check(fx.hello_len > 0);
    uint8_t body[SC_HELLO_MAX];
    memcpy(body, fx.hello + SC_HDR_LEN, (size_t)fx.hello_len - SC_HDR_LEN);
    const uint8_t *p;
    size_t plen;
    check(sc_accept(&fx.welcomed, fx.r_pk, fx.r_sk, body, (size_t)fx.hello_len - SC_HDR_LEN, &p,
                    &plen) == 0);
    fx.welcome_len = sc_respond(&fx.welcomed, wp, sizeof(wp), fx.welcome);
    check(fx.welcome_len > 0);

    make_pair(&fx.aes);
    sc_force_suites(1u << SC_SUITE_CHACHA20POLY1305);
    make_pair(&fx.chacha);
    sc_force_suites(0);
    check(fx.chacha.i.suite == SC_SUITE_CHACHA20POLY1305);

    const char *dir = getenv("SC_CORPUS_DIR");
    if (dir) {
        write_seed(dir, "header", 0, fx.aes.rec, sizeof(fx.aes.rec));
        write_seed(dir, "hello", 1, fx.hello + SC_HDR_LEN, (size_t)fx.hello_len - SC_HDR_LEN);
        write_seed(dir, "welcome", 2, fx.welcome + SC_HDR_LEN, (size_t)fx.welcome_len - SC_HDR_LEN);
        write_seed(dir, "data_aes", 3, fx.aes.rec, sizeof(fx.aes.rec));
        write_seed(dir, "data_chacha", 4, fx.chacha.rec, sizeof(fx.chacha.rec));
        write_seed(dir, "rekey_aes", 5, fx.aes.rekey, sizeof(fx.aes.rekey));
        write_seed(dir, "rekey_chacha", 6, fx.chacha.rekey, sizeof(fx.chacha.rekey));
        write_seed(dir, "header_rekey", 0, fx.aes.rekey, sizeof(fx.aes.rekey));
    }
}

/* ---- targets ------------------------------------------------------------------------------ */

static uint64_t sink; /* every byte handed back is read, so ASan checks it */

static void touch(const uint8_t *p, size_t n)
{
    for (size_t k = 0; k < n; k++)
        sink += p[k];
}

static void check_failed(const sc_t *s)
{
    check(s->state == SC_FAILED);
    check(sodium_is_zero(s->local_sk, 32) && sodium_is_zero(s->e_sk, 32));
    check(sodium_is_zero(s->ck, 32) && sodium_is_zero(s->h, 32));
    check(sodium_is_zero(s->tx_key, 32) && sodium_is_zero(s->rx_key, 32));
}

static void open_record(const struct pair *pr, const uint8_t *rec, size_t size)
{
    if (size < SC_HDR_LEN)
        return;
    sc_t r = pr->r;
    uint8_t hdr[SC_HDR_LEN];
    memcpy(hdr, rec, SC_HDR_LEN);
    size_t len = size - SC_HDR_LEN;
    uint8_t *body = malloc(len ? len : 1); /* exact size: ASan sees any overread */
    check(body != NULL);
    memcpy(body, rec + SC_HDR_LEN, len);
    size_t plen = 0;
    int rc = sc_open(&r, hdr, body, len, &plen);
    if (rc == 0) {
        check(r.state == SC_ESTABLISHED && r.rx_seq == 1 && plen == len - SC_TAG_LEN);
        touch(body, plen);
    } else {
        check(rc == -EBADMSG);
        check_failed(&r);
    }
    free(body);
}

/* Opens the fixture record rec (a copy) at r: 0 or the error. */
static int open_fixture(sc_t *r, const uint8_t *rec, size_t size)
{
    uint8_t copy[64 + SC_OVERHEAD];
    check(size == sizeof(copy));
    memcpy(copy, rec, size);
    size_t plen;
    return sc_open(r, copy, copy + SC_HDR_LEN, size - SC_HDR_LEN, &plen);
}

static void open_rekey(const struct pair *pr, const uint8_t *rec, size_t size)
{
    if (size < SC_HDR_LEN)
        return;
    sc_t r = pr->r;
    uint8_t hdr[SC_HDR_LEN];
    memcpy(hdr, rec, SC_HDR_LEN);
    size_t len = size - SC_HDR_LEN;
    uint8_t *body = malloc(len ? len : 1); /* exact size: ASan sees any overread */
    check(body != NULL);
    memcpy(body, rec + SC_HDR_LEN, len);
    int rc = sc_open_rekey(&r, hdr, body, len);
    if (rc == 0) {
        /* Only the fixture's REKEY can pass: the receiver now holds i's next key. */
        check(r.state == SC_ESTABLISHED && r.rx_seq == 1 && r.rx_rekeys == 1);
        check(memcmp(r.rx_key, pr->r.rx_key, 32) != 0);
        sc_t r2 = r;
        check(open_fixture(&r2, pr->after, sizeof(pr->after)) == 0);
        check(open_fixture(&r, pr->stale, sizeof(pr->stale)) == -EBADMSG);
        check_failed(&r);
    } else {
        check(rc == -EBADMSG);
        check_failed(&r);
    }
    free(body);
}

static void parse(const uint8_t *b, size_t size)
{
    if (size < SC_HDR_LEN)
        return;
    uint8_t type = 0;
    uint32_t len = 0;
    int rc = sc_parse_header(b, &type, &len);
    if (rc != 0) {
        check(rc == -EBADMSG);
        return;
    }
    switch (type) {
    case SC_REC_HELLO:
        check(len >= SC_HELLO_BODY_MIN && len <= SC_HELLO_BODY_MAX);
        break;
    case SC_REC_WELCOME:
        check(len >= SC_WELCOME_BODY_MIN && len <= SC_WELCOME_BODY_MAX);
        break;
    case SC_REC_DATA:
        check(len > SC_TAG_LEN && len <= SC_RECORD_MAX);
        if (len == size - SC_HDR_LEN)
            open_record(&fx.aes, b, size);
        break;
    case SC_REC_SPLIT:
        check(len >= SC_SPLIT_BODY_MIN && len <= SC_RECORD_MAX + 1);
        break;
    case SC_REC_REKEY:
        check(len == SC_REKEY_BODY_LEN);
        if (len == size - SC_HDR_LEN)
            open_rekey(&fx.aes, b, size);
        break;
    default:
        abort();
    }
}

static void accept_hello(const uint8_t *b, size_t size)
{
    uint8_t *body = malloc(size ? size : 1);
    check(body != NULL);
    memcpy(body, b, size);
    sc_t r;
    const uint8_t *p = NULL;
    size_t plen = 0;
    int rc = sc_accept(&r, fx.r_pk, fx.r_sk, body, size, &p, &plen);
    if (rc == 0) {
        check(r.state == SC_HELLO_RECEIVED && size >= SC_HELLO_BODY_MIN);
        check(p >= body && plen == size - SC_HELLO_BODY_MIN &&
              p + plen + SC_TAG_LEN == body + size);
        touch(p, plen);
        uint8_t welcome[SC_WELCOME_MAX];
        int n = sc_respond(&r, p, plen < 16 ? plen : 16, welcome);
        uint8_t type;
        uint32_t len;
        check(n > 0 && sc_parse_header(welcome, &type, &len) == 0 && type == SC_REC_WELCOME &&
              len == (uint32_t)n - SC_HDR_LEN);
        check(r.state == SC_ESTABLISHED);
    } else {
        check(rc == -EBADMSG || rc == -ENOTSUP);
        check_failed(&r);
    }
    free(body);
}

static void finish_welcome(const uint8_t *b, size_t size)
{
    uint8_t *body = malloc(size ? size : 1);
    check(body != NULL);
    memcpy(body, b, size);
    sc_t i = fx.hello_sent;
    const uint8_t *p = NULL;
    size_t plen = 0;
    int rc = sc_initiator_finish(&i, body, size, &p, &plen);
    if (rc == 0) {
        /* Only the real responder's WELCOME can pass: same keys as it. */
        check(i.state == SC_ESTABLISHED);
        check(memcmp(i.tx_key, fx.welcomed.rx_key, 32) == 0);
        check(memcmp(i.rx_key, fx.welcomed.tx_key, 32) == 0);
        check(p >= body && p + plen + SC_TAG_LEN == body + size);
        touch(p, plen);
    } else {
        check(rc == -EBADMSG);
        check_failed(&i);
    }
    free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    rng_calls = 1ull << 32; /* the same stream for every input, apart from setup's */
    if (size < 1)
        return 0;
    const uint8_t *b = data + 1;
    size_t n = size - 1;
    switch (data[0] % 7) {
    case 0:
        parse(b, n);
        break;
    case 1:
        accept_hello(b, n);
        break;
    case 2:
        finish_welcome(b, n);
        break;
    case 3:
        open_record(&fx.aes, b, n);
        break;
    case 4:
        open_record(&fx.chacha, b, n);
        break;
    case 5:
        open_rekey(&fx.aes, b, n);
        break;
    case 6:
        open_rekey(&fx.chacha, b, n);
        break;
    }
    return 0;
}
