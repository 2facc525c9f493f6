/* tls_probe: TLS handshakes per second against one server, for tools/bench/bench_tls.sh.
 *
 *   tls_probe --connect IP:PORT --sni NAME --cafile FILE --tls 1.2|1.3 --mode full|resume|once
 *             [--seconds S (5)] [--procs P (4)]
 *
 * WHY NOT openssl s_time: it sends no SNI, and popd answers a ClientHello without SNI with an
 * unrecognized_name alert (docs/tls.md). h2load keeps its connections open. So this client.
 *
 * P processes each open connections one after another for S seconds. One connection is what a
 * browser's first (or returning) visit does before its request: TCP connect, the handshake
 * (SNI, the certificate verified against FILE and NAME, X25519 (P-256 offered too: TLS 1.2
 * accepts an ECDSA P-256 certificate only from a client that lists P-256), TLS 1.3 with
 * TLS_AES_128_GCM_SHA256 or TLS 1.2 with ECDHE-ECDSA-AES128-GCM-SHA256), then close_notify and
 * reading until the server closes, which also takes in the TLS 1.3 tickets sent after the
 * handshake. No HTTP request: the figure is the server's TLS cost, not its proxying.
 *   full    no session offered (tickets accepted but not used): a full handshake each time;
 *   resume  each connection offers the newest ticket this process got (the one issued by the
 *           previous resumption when the server renews it, else the same one again);
 *           resumed and full handshakes are counted apart.
 *   once    as resume, but a ticket is offered once only, as TLS 1.3 clients are advised to
 *           (RFC 8446 C.4) and as BoringSSL, hence Chrome, does: a connection whose previous
 *           one brought no new ticket makes a full handshake. A server that issues no ticket
 *           after a resumption then alternates full and resumed handshakes.
 * Prints one line: "handshakes N resumed R errors E seconds T rate X" (X = N / T, all
 * processes together). Exit 1 when nothing succeeded. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct opts {
    struct sockaddr_in addr;
    const char *sni, *cafile;
    int tls13;   /* 1: TLS 1.3 only, 0: TLS 1.2 only */
    int resume;  /* 1: offer the newest ticket */
    int once;    /* with resume: each ticket offered once (single-use tickets) */
    double secs; /* s */
    int procs;
};

struct counts {
    long handshakes, resumed, errors;
};

static SSL_SESSION *newest; /* this process's newest ticket (resume mode) */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    if (newest)
        SSL_SESSION_free(newest);
    newest = sess;
    return 1; /* we keep the reference */
}

static SSL_CTX *client_ctx(const struct opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    int v = o->tls13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, v) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, v) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256") != 1 ||
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519:P-256") != 1 ||
        SSL_CTX_load_verify_locations(ctx, o->cafile, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        exit(2);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (o->resume) {
        SSL_CTX_set_session_cache_mode(ctx,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
}

/* One connection; 1 = handshake done (resumed in *reused), 0 = failed. */
static int one(SSL_CTX *ctx, const struct opts *o, int *reused)
{
    int ok = 0, one_i = 1;
    struct timeval tv = {5, 0}; /* a stuck server fails this connection, not the run */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_i, sizeof(one_i));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (const struct sockaddr *)&o->addr, sizeof(o->addr)) != 0) {
        close(fd);
        return 0;
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, o->sni);
    SSL_set1_host(ssl, o->sni);
    if (o->resume && newest) {
        SSL_set_session(ssl, newest);
        if (o->once) { /* used up: the next connection needs a ticket this one brings */
            SSL_SESSION_free(newest);
            newest = NULL;
        }
    }
    if (SSL_connect(ssl) == 1 && SSL_get_verify_result(ssl) == X509_V_OK) {
        ok = 1;
        *reused = SSL_session_reused(ssl);
        char buf[4096];
        SSL_shutdown(ssl); /* our close_notify; then read to the server's close */
        for (int i = 0; i < 64 && SSL_read(ssl, buf, sizeof(buf)) > 0; i++)
            ;
        /* nginx answers our close_notify by closing the socket without its own, and OpenSSL
         * 3.0 then forgets that ours was sent (SSL_IGNORE_UNEXPECTED_EOF sets the shutdown
         * state to "received" only), so SSL_free would mark the session not resumable: a
         * client-side artefact that would make every nginx resumption a full handshake. */
        SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    } else if (getenv("TLS_PROBE_DEBUG")) {
        ERR_print_errors_fp(stderr);
    }
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
    return ok;
}

static void child(const struct opts *o, double until, int wfd)
{
    SSL_CTX *ctx = client_ctx(o);
    struct counts c = {0, 0, 0};
    while (now_s() < until) {
        int reused = 0;
        if (one(ctx, o, &reused)) {
            c.handshakes++;
            c.resumed += reused;
        } else {
            c.errors++;
        }
    }
    if (write(wfd, &c, sizeof(c)) != (ssize_t)sizeof(c))
        _exit(3);
    _exit(0);
}

static void usage(void)
{
    fprintf(stderr, "usage: tls_probe --connect IP:PORT --sni NAME --cafile FILE --tls 1.2|1.3 "
                    "--mode full|resume|once [--seconds S] [--procs P]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct opts o = {.secs = 5, .procs = 4, .tls13 = -1, .resume = -1};
    const char *connect_to = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--connect"))
            connect_to = v;
        else if (!strcmp(k, "--sni"))
            o.sni = v;
        else if (!strcmp(k, "--cafile"))
            o.cafile = v;
        else if (!strcmp(k, "--tls"))
            o.tls13 = !strcmp(v, "1.3") ? 1 : !strcmp(v, "1.2") ? 0 : -1;
        else if (!strcmp(k, "--mode")) {
            o.resume = !strcmp(v, "resume") || !strcmp(v, "once") ? 1 : !strcmp(v, "full") ? 0 : -1;
            o.once = !strcmp(v, "once");
        }
        else if (!strcmp(k, "--seconds"))
            o.secs = atof(v);
        else if (!strcmp(k, "--procs"))
            o.procs = atoi(v);
        else
            usage();
    }
    if (argc % 2 != 1 || !connect_to || !o.sni || !o.cafile || o.tls13 < 0 || o.resume < 0 ||
        !(o.secs > 0) || o.procs < 1 || o.procs > 64)
        usage();
    char host[64];
    const char *colon = strrchr(connect_to, ':');
    if (!colon || (size_t)(colon - connect_to) >= sizeof(host))
        usage();
    memcpy(host, connect_to, (size_t)(colon - connect_to));
    host[colon - connect_to] = '\0';
    o.addr.sin_family = AF_INET;
    o.addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &o.addr.sin_addr) != 1)
        usage();
    signal(SIGPIPE, SIG_IGN);

    int pfd[2];
    if (pipe(pfd) != 0)
        return 2;
    double t0 = now_s(), until = t0 + o.secs;
    for (int i = 0; i < o.procs; i++) {
        pid_t p = fork();
        if (p < 0)
            return 2;
        if (p == 0) {
            close(pfd[0]);
            child(&o, until, pfd[1]);
        }
    }
    close(pfd[1]);
    struct counts sum = {0, 0, 0}, c;
    for (int i = 0; i < o.procs; i++) {
        if (read(pfd[0], &c, sizeof(c)) != (ssize_t)sizeof(c))
            break;
        sum.handshakes += c.handshakes;
        sum.resumed += c.resumed;
        sum.errors += c.errors;
    }
    while (wait(NULL) > 0)
        ;
    double t = now_s() - t0;
    printf("handshakes %ld resumed %ld errors %ld seconds %.2f rate %.1f\n", sum.handshakes,
           sum.resumed, sum.errors, t, sum.handshakes / t);
    return sum.handshakes > 0 ? 0 : 1;
}
