/* splice (node/dataplane/splice.h) with a byte layer on its TCP leg, the way TLS sits there at
 * a PoP's ingress: a TCP <-> TCP splice over two socketpairs, leg 0 through a fake layer that
 * behaves as awkwardly as TLS may. It XORs every byte (so a byte that bypassed it shows), reads
 * the socket ahead into a buffer of its own and hands out at most a "record" per call (bytes
 * the socket will no longer signal), writes at most a record per call, and now and then says
 * WANT_WRITE to a read (a read that must write first) and WANT_READ to a write when the socket
 * has bytes to read. Threads play the client and an echo server with blocking sockets; the
 * loop runs the splice. Checks: megabytes each way byte-exact, then the client's EOF becomes
 * the server's, the server's the client's (through the layer's shutdown), and the splice ends
 * cleanly with the byte counts; a layer error aborts the splice. */
#include "node/dataplane/splice.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#define KEY        0x5a
#define RECORD_IN  97   /* bytes a layered read hands out at most */
#define RECORD_OUT 61   /* bytes a layered write takes at most */
#define AHEAD      4096 /* bytes the layer reads from the socket at once */

struct fake {
    int fd;
    uint8_t ahead[AHEAD];
    size_t off, len;
    uint32_t rng;
    bool eof, fail_reads, shut;
    unsigned want_write_reads, want_read_writes; /* spurious WANTs given */
};

static uint32_t next_rand(struct fake *f)
{
    f->rng = f->rng * 1103515245u + 12345u;
    return f->rng >> 16;
}

static ssize_t fake_read(void *io, void *buf, size_t len)
{
    struct fake *f = io;
    if (f->fail_reads)
        return SPLICE_IO_ERROR;
    if (next_rand(f) % 16 == 0) {
        f->want_write_reads++;
        return SPLICE_IO_WANT_WRITE;
    }
    if (f->off == f->len) {
        if (f->eof)
            return SPLICE_IO_CLOSED;
        ssize_t n = recv(f->fd, f->ahead, sizeof(f->ahead), 0);
        if (n < 0)
            return errno == EAGAIN ? SPLICE_IO_WANT_READ : SPLICE_IO_ERROR;
        if (n == 0) {
            f->eof = true;
            return SPLICE_IO_CLOSED;
        }
        f->off = 0;
        f->len = (size_t)n;
    }
    size_t k = f->len - f->off;
    if (k > len)
        k = len;
    if (k > RECORD_IN)
        k = RECORD_IN;
    for (size_t i = 0; i < k; i++)
        ((uint8_t *)buf)[i] = f->ahead[f->off + i] ^ KEY;
    f->off += k;
    return (ssize_t)k;
}

static ssize_t fake_write(void *io, const void *buf, size_t len)
{
    struct fake *f = io;
    if (f->shut)
        return SPLICE_IO_ERROR;
    struct pollfd p = {.fd = f->fd, .events = POLLIN};
    if (next_rand(f) % 16 == 0 && poll(&p, 1, 0) == 1 && (p.revents & POLLIN)) {
        f->want_read_writes++;
        return SPLICE_IO_WANT_READ; /* readable now: the splice comes back at once */
    }
    uint8_t rec[RECORD_OUT];
    size_t k = len < RECORD_OUT ? len : RECORD_OUT;
    for (size_t i = 0; i < k; i++)
        rec[i] = ((const uint8_t *)buf)[i] ^ KEY;
    ssize_t n = send(f->fd, rec, k, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN ? SPLICE_IO_WANT_WRITE : SPLICE_IO_ERROR;
    return n; /* a short send of a "record" is fine here: these bytes are not sealed */
}

static void fake_shutdown(void *io)
{
    ((struct fake *)io)->shut = true;
}

static int destroyed;
static void fake_destroy(void *io)
{
    (void)io;
    destroyed++;
}

static const splice_io_ops_t fake_ops = {
    .name = "fake",
    .read = fake_read,
    .write = fake_write,
    .shutdown = fake_shutdown,
    .destroy = fake_destroy,
};

/* ---- the client and the echo server (threads, blocking sockets) --------------------------- */

struct peer_args {
    int fd;
    size_t n;
    uint8_t *sent, *got; /* the client's */
    size_t ngot;
};

static void *client_writer(void *arg)
{
    struct peer_args *a = arg;
    size_t off = 0;
    uint32_t r = 7;
    while (off < a->n) {
        r = r * 1103515245u + 12345u;
        size_t k = 1 + (r >> 16) % 20000;
        if (k > a->n - off)
            k = a->n - off;
        uint8_t wire[20000];
        for (size_t i = 0; i < k; i++)
            wire[i] = a->sent[off + i] ^ KEY; /* as a TLS client would seal it */
        size_t w = 0;
        while (w < k) {
            ssize_t m = send(a->fd, wire + w, k - w, MSG_NOSIGNAL);
            if (m <= 0)
                return NULL;
            w += (size_t)m;
        }
        off += k;
    }
    shutdown(a->fd, SHUT_WR);
    return NULL;
}

static void *client_reader(void *arg)
{
    struct peer_args *a = arg;
    uint8_t buf[65536];
    for (;;) {
        ssize_t m = recv(a->fd, buf, sizeof(buf), 0);
        if (m <= 0)
            return NULL;
        if (a->ngot + (size_t)m > a->n)
            m = (ssize_t)(a->n - a->ngot); /* more than was sent: counted short, test fails */
        for (ssize_t i = 0; i < m; i++)
            a->got[a->ngot + (size_t)i] = buf[i] ^ KEY;
        a->ngot += (size_t)m;
        if (m == 0)
            return NULL;
    }
}

static void *echo_server(void *arg)
{
    int fd = *(int *)arg;
    uint8_t buf[32768];
    for (;;) {
        ssize_t m = recv(fd, buf, sizeof(buf), 0);
        if (m <= 0)
            break;
        ssize_t w = 0;
        while (w < m) {
            ssize_t k = send(fd, buf + w, (size_t)(m - w), MSG_NOSIGNAL);
            if (k <= 0)
                return NULL;
            w += k;
        }
    }
    shutdown(fd, SHUT_WR);
    return NULL;
}

/* ---- the splice ---------------------------------------------------------------------------- */

struct result {
    bool done, ok;
    char why[200];
    uint64_t bytes[2];
    struct ev_loop *loop;
};

static void on_done(void *ctx, splice_t *s, bool ok, const char *why, const uint64_t b[2])
{
    (void)s;
    struct result *r = ctx;
    r->done = true;
    r->ok = ok;
    snprintf(r->why, sizeof(r->why), "%s", why);
    r->bytes[0] = b[0];
    r->bytes[1] = b[1];
    ev_break(r->loop, EVBREAK_ALL);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static void nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void test_layer_both_ways(void **state)
{
    (void)state;
    int c[2], s[2]; /* c[0] client, c[1] splice leg 0; s[0] splice leg 1, s[1] echo server */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
    nonblock(c[1]);
    nonblock(s[0]);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    splice_ctx_t *x = splice_ctx_new(loop);
    struct fake *f = calloc(1, sizeof(*f));
    f->fd = c[1];
    f->rng = 12345;
    struct result r = {.loop = loop};
    destroyed = 0;
    splice_t *sp = splice_new_tcp_io(x, c[1], &fake_ops, f, on_done, &r);
    splice_attach_tcp(sp, s[0]);

    struct peer_args a = {.fd = c[0], .n = 6u << 20};
    a.sent = malloc(a.n);
    a.got = calloc(1, a.n);
    for (size_t i = 0; i < a.n; i++)
        a.sent[i] = (uint8_t)(i * 31 + (i >> 11));
    pthread_t tw, tr, te;
    pthread_create(&te, NULL, echo_server, &s[1]);
    pthread_create(&tr, NULL, client_reader, &a);
    pthread_create(&tw, NULL, client_writer, &a);
    ev_timer deadline;
    ev_timer_init(&deadline, on_deadline, 30., 0.);
    ev_timer_start(loop, &deadline);
    ev_run(loop, 0);
    ev_timer_stop(loop, &deadline);
    if (!r.done) { /* unblock the threads before failing */
        shutdown(c[0], SHUT_RDWR);
        shutdown(s[1], SHUT_RDWR);
    }
    pthread_join(tw, NULL);
    pthread_join(tr, NULL);
    pthread_join(te, NULL);
    if (!r.done)
        fail_msg("the splice did not end within 30 s: %zu of %zu bytes back", a.ngot, a.n);
    if (!r.ok)
        fail_msg("the splice was aborted: %s", r.why);
    assert_int_equal(a.ngot, a.n);
    assert_memory_equal(a.got, a.sent, a.n);
    assert_int_equal(r.bytes[0], a.n);
    assert_int_equal(r.bytes[1], a.n);
    assert_true(f->shut); /* our end went out through the layer (close_notify) */
    assert_int_equal(destroyed, 1);
    print_message("6 MiB each way; spurious WANT_WRITE on reads %u, WANT_READ on writes %u\n",
                  f->want_write_reads, f->want_read_writes);
    assert_true(f->want_write_reads > 0);
    free(a.sent);
    free(a.got);
    free(f);
    splice_ctx_destroy(&x);
    ev_loop_destroy(loop);
    close(c[0]);
    close(s[1]);
}

static void test_layer_error_aborts(void **state)
{
    (void)state;
    int c[2], s[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s), 0);
    nonblock(c[1]);
    nonblock(s[0]);
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    splice_ctx_t *x = splice_ctx_new(loop);
    struct fake *f = calloc(1, sizeof(*f));
    f->fd = c[1];
    f->fail_reads = true; /* a bad record MAC, say; the socket itself is fine */
    struct result r = {.loop = loop};
    destroyed = 0;
    assert_int_equal(send(c[0], "x", 1, MSG_NOSIGNAL), 1);
    splice_t *sp = splice_new_tcp_io(x, c[1], &fake_ops, f, on_done, &r);
    splice_attach_tcp(sp, s[0]);
    ev_timer deadline;
    ev_timer_init(&deadline, on_deadline, 10., 0.);
    ev_timer_start(loop, &deadline);
    if (!r.done)
        ev_run(loop, 0);
    ev_timer_stop(loop, &deadline);
    assert_true(r.done);
    assert_false(r.ok);
    assert_non_null(strstr(r.why, "fake: read failed"));
    assert_int_equal(destroyed, 1);
    char b;
    assert_true(recv(s[1], &b, 1, 0) <= 0); /* the other side was closed, nothing passed */
    free(f);
    splice_ctx_destroy(&x);
    ev_loop_destroy(loop);
    close(c[0]);
    close(s[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_both_ways),
        cmocka_unit_test(test_layer_error_aborts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
