/* Webhook delivery (node/alert/alertpost.h) against a local HTTP server on a thread: a POST
 * carries the body with Content-Type application/json and counts as sent on a 2xx; a 500 is
 * retried with backoff and given up after the attempts; a full queue drops the oldest waiting
 * deliveries and counts them; destroying it while a receiver never answers returns at once (the
 * attempt under way is aborted), not after the attempt's timeout. */
#include "node/alert/alertpost.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

enum mode { ANSWER_204, ANSWER_500, NEVER_ANSWER };

struct server {
    int fd;
    int port;
    enum mode mode;
    pthread_t thread;
    pthread_mutex_t mu;
    int requests;    /* requests read (a request with its body) */
    char last[4096]; /* the last request, headers and body */
    int held[16];    /* NEVER_ANSWER: connections kept open */
    int nheld;
};

static void *serve(void *arg)
{
    struct server *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        if (s->mode == NEVER_ANSWER) {
            pthread_mutex_lock(&s->mu);
            if (s->nheld < 16)
                s->held[s->nheld++] = c;
            s->requests++;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        char buf[4096];
        size_t len = 0;
        for (;;) { /* headers, then Content-Length bytes of body */
            ssize_t n = read(c, buf + len, sizeof(buf) - 1 - len);
            if (n <= 0)
                break;
            len += (size_t)n;
            buf[len] = '\0';
            char *end = strstr(buf, "\r\n\r\n");
            const char *cl = strstr(buf, "Content-Length: ");
            if (end && cl && len >= (size_t)(end + 4 - buf) + (size_t)atoi(cl + 16))
                break;
        }
        pthread_mutex_lock(&s->mu);
        memcpy(s->last, buf, len + 1);
        s->requests++;
        pthread_mutex_unlock(&s->mu);
        const char *a = s->mode == ANSWER_204
                            ? "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
                            : "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        if (write(c, a, strlen(a)) < 0)
            perror("write");
        close(c);
    }
}

static void server_start(struct server *s, enum mode mode)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    pthread_mutex_init(&s->mu, NULL);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    socklen_t sl = sizeof(sa);
    getsockname(s->fd, (struct sockaddr *)&sa, &sl);
    s->port = ntohs(sa.sin_port);
    pthread_create(&s->thread, NULL, serve, s);
}

static void server_stop(struct server *s)
{
    shutdown(s->fd, SHUT_RDWR);
    close(s->fd);
    pthread_join(s->thread, NULL);
    for (int i = 0; i < s->nheld; i++)
        close(s->held[i]);
    pthread_mutex_destroy(&s->mu);
}

static int server_requests(struct server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->requests;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Runs the loop until done(p) or timeout_s. */
struct wait {
    alertpost_t *p;
    bool (*done)(alertpost_t *p);
};

static void on_check(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct wait *wt = w->data;
    if (wt->done(wt->p))
        ev_break(loop, EVBREAK_ALL);
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)w, (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

static bool run_until(struct ev_loop *loop, alertpost_t *p, bool (*done)(alertpost_t *), double s)
{
    struct wait wt = {p, done};
    ev_timer check, deadline;
    ev_timer_init(&check, on_check, 0.01, 0.01);
    check.data = &wt;
    ev_timer_init(&deadline, on_deadline, s, 0.);
    ev_timer_start(loop, &check);
    ev_timer_start(loop, &deadline);
    ev_run(loop, 0);
    ev_timer_stop(loop, &check);
    ev_timer_stop(loop, &deadline);
    return done(p);
}

static bool idle(alertpost_t *p)
{
    alertpost_stats_t st;
    alertpost_stats(p, &st);
    return st.pending == 0;
}

static void test_sent(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    struct server s;
    server_start(&s, ANSWER_204);
    alertpost_opts_t o = {.loop = loop};
    alertpost_t *p = alertpost_new(&o);
    assert_non_null(p);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook?token=x", s.port);
    alertpost_submit(p, "ops", url, "0123456789abcdef", "{\"kind\":\"pop\"}");
    assert_true(run_until(loop, p, idle, 5));
    alertpost_stats_t st;
    alertpost_stats(p, &st);
    assert_int_equal(st.sent, 1);
    assert_int_equal(st.attempts_failed, 0);
    assert_non_null(strstr(s.last, "POST /hook?token=x HTTP/1.1\r\n"));
    assert_non_null(strstr(s.last, "Content-Type: application/json\r\n"));
    assert_non_null(strstr(s.last, "\r\n\r\n{\"kind\":\"pop\"}"));
    alertpost_destroy(&p);
    assert_null(p);
    server_stop(&s);
    ev_loop_destroy(loop);
}

static void test_retries_bounded(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    struct server s;
    server_start(&s, ANSWER_500);
    alertpost_opts_t o = {.loop = loop, .attempts = 3, .backoff_min_ms = 50, .backoff_max_ms = 100};
    alertpost_t *p = alertpost_new(&o);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    alertpost_submit(p, "ops", url, "0123456789abcdef", "{}");
    assert_true(run_until(loop, p, idle, 5));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    alertpost_stats_t st;
    alertpost_stats(p, &st);
    assert_int_equal(st.sent, 0);
    assert_int_equal(st.attempts_failed, 3);
    assert_int_equal(st.failed, 1);
    assert_int_equal(server_requests(&s), 3);
    assert_true(ms >= 150); /* 50 + 100 ms of backoff between the three */
    alertpost_destroy(&p);
    server_stop(&s);
    ev_loop_destroy(loop);
}

static void test_drop_oldest(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    struct server s;
    server_start(&s, ANSWER_204);
    alertpost_opts_t o = {.loop = loop, .queue_max = 3};
    alertpost_t *p = alertpost_new(&o);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
    for (int i = 0; i < 10; i++) /* the loop does not turn: the worker takes the first only */
        alertpost_submit(p, "ops", url, "0123456789abcdef", "{}");
    alertpost_stats_t st;
    alertpost_stats(p, &st);
    assert_int_equal(st.queued_total, 10);
    assert_int_equal(st.pending, 3);
    assert_int_equal(st.dropped, 7);
    assert_true(run_until(loop, p, idle, 5));
    alertpost_stats(p, &st);
    assert_int_equal(st.sent, 3);
    alertpost_destroy(&p);
    server_stop(&s);
    ev_loop_destroy(loop);
}

static void test_destroy_while_hanging(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new(0);
    struct server s;
    server_start(&s, NEVER_ANSWER);
    alertpost_opts_t o = {.loop = loop, .timeout_ms = 30000};
    alertpost_t *p = alertpost_new(&o);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
    alertpost_submit(p, "ops", url, "0123456789abcdef", "{}");
    for (int i = 0; i < 200 && server_requests(&s) == 0; i++)
        usleep(10000);
    assert_int_equal(server_requests(&s), 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    alertpost_destroy(&p);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    print_message("destroy with an attempt hanging: %.0f ms\n", ms);
    assert_true(ms < 3000); /* not the 30 s timeout */
    server_stop(&s);
    ev_loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sent),
        cmocka_unit_test(test_retries_bounded),
        cmocka_unit_test(test_drop_oldest),
        cmocka_unit_test(test_destroy_while_hanging),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
