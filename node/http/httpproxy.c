/* httpproxy: see httpproxy.h.
 *
 * One client connection handles one request at a time: its head is parsed (httpmsg), routed,
 * authorised, re-serialised for the upstream (hop-by-hop and identity headers dropped, the
 * X-Forwarded-* and Remote-* headers set by us), and sent on the connection's stream to the
 * resource; the body follows as it arrives (re-chunked when it came chunked). The response is
 * relayed byte for byte while a response reader watches where it ends, so the next request
 * can reuse both the client connection and the stream. Pipelined requests wait in the input
 * buffer until the response before them is complete.
 *
 * Backpressure: the client is not read while the upstream has more than PEND_HIGH bytes
 * waiting for stream credit; stream bytes are reported consumed only once the client socket
 * took them (or the output buffer is small), so a slow client stops the backend.
 *
 * Bounds on what an unauthenticated client can hold. Connections: an overall cap and one per
 * client address (IPv4, or IPv6 /64), counted in a chained hash table keyed by SipHash with a
 * random key (a client choosing addresses cannot make chains long) that holds only addresses
 * with a live connection, so it is never larger than the overall cap. A connection past a cap
 * is accepted, answered a fixed 503 and closed in the same loop pass: leaving it in the backlog
 * would only make the listener look dead to everyone else. Time: every state of a connection
 * has a deadline (httpproxy.h lists them), checked by one ev_timer per connection in the lazy
 * way of libev's "be smart about timeouts": moving bytes only stamps hc->active (a memory
 * write), and when the timer fires it recomputes the deadline from the state and the stamps,
 * acting if it passed and re-arming for the rest otherwise. The timer is re-set only on state
 * changes (once or twice per request), never per read.
 *
 * TLS. A connection from the HTTPS listener starts in H_TLS (the handshake, under its own
 * deadline) and then runs through the same states as a plain one: client_recv and client_send
 * are the only places that touch its bytes, and they go through the tlsconn wrapper. Two
 * wrinkles of TLS over a level-triggered loop are handled there: a read may need the socket
 * writable (and a write readable), and decrypted bytes left inside OpenSSL do not make the
 * socket readable, so resuming the reader feeds it an event when some wait (rio_resume). */
#include "node/http/httpproxy.h"

#include "common/netaddr.h"
#include "common/clock.h"
#include "common/conncap.h"
#include "common/log.h"
#include "common/logesc.h"
#include "common/mp.h"
#include "common/xmalloc.h"
#include "node/acme/acmechal.h"
#include "node/auth/auth.h"
#include "node/auth/loginshare.h"
#include "node/http/httphdr.h"
#include "node/http/httprules.h"
#include "node/http/httpmsg.h"
#include "node/http/httppath.h"
#include "node/auth/totp.h"
#include "node/records/totprec.h"
#include "node/oidc/oidc.h"
#include "node/records/resource.h"
#include "common/accesslog.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pthread.h>
#include <sanitizer/asan_interface.h>
#include <sodium.h>

#define IN_CAP        65536       /* bytes of unparsed client input */
#define PEND_HIGH     (256 << 10) /* bytes waiting for the stream: stop reading the client */
#define OUT_HIGH      (1u << 20)  /* bytes waiting for the client: stop consuming the stream */
#define LOCAL_BODY    8192        /* bytes of a login form */
#define HEAD_MAX      32768       /* bytes of a re-serialised request head */
#define RESP_HEAD_MAX 65536       /* bytes of a response head from the application */
/* bytes of a re-serialised response head: RESP_HEAD_MAX plus the CRs added to bare-LF lines
 * and our Connection header */
#define RESP_OUT_MAX (2 * RESP_HEAD_MAX)

struct hconn;

/* A password to check: argon2id costs ~75 ms and 64 MiB, so it runs on worker threads, never
 * on the loop (a burst of logins would otherwise stall every tunnel's heartbeats). */
struct pwjob {
    struct pwjob *next;
    struct hconn *hc; /* loop thread only; NULL once the client is gone */
    char pwhash[AUTH_PWHASH_MAX + 1];
    char pw[AUTH_PASSWORD_MAX + 1];
    size_t pwlen;
    bool ok;      /* the worker's verdict */
    bool user_ok; /* the user exists and is not removed */
    auth_user_t u;
    char rd[1024];
    char code[48]; /* the second factor as typed ("" = none); checked on the loop */
};

struct upstream {
    dp_stream_handler_t h; /* first: the stream's user pointer is this struct */
    struct hconn *hc;      /* NULL once the client is gone (orphan until the data plane
                            * calls back) */
    tconn_t *c;
    uint64_t sid;
    bool open, gone;
    char resource[NODECFG_NAME_MAX + 1];
    http_reader_t *resp;
    uint8_t *pend;
    size_t pend_len, pend_cap;
    uint64_t owed; /* stream bytes delivered, not yet reported consumed */
    /* The response is re-serialised (its head rewritten, its body re-framed) from the reader's
     * callbacks, never relayed as received: bytes that are not part of the one response to
     * the one outstanding request never reach the client. */
    bool expecting;    /* a request was sent and its final response has not ended */
    bool saw_response; /* bytes of the current response went to the client's output */
    bool head_staged;  /* this feed staged the response head (not yet committed) */
    bool chunked_out;  /* the body goes to the client re-chunked */
    char ws_key[25];   /* the WebSocket request's Sec-WebSocket-Key; "" = no upgrade asked */
    const char *why;   /* static: why the response was refused by us (not by the reader) */
    uint8_t *stage;    /* output of the current feed until the head is known to be good */
    size_t stage_len, stage_cap;
};

enum hstate {
    H_TLS = 1,  /* the TLS handshake (HTTPS listener only) */
    H_HEAD,     /* reading a request */
    H_BODY,     /* request head sent upstream, body streaming */
    H_WAIT,     /* request complete, waiting for the response to end */
    H_LOCAL,    /* a /.popmesh/ request: body collected, answered here */
    H_RAW,      /* after 101 Switching Protocols: bytes both ways */
    H_CLOSING,  /* flushing, then close */
};

struct listener;

struct hconn {
    httpproxy_t *px;
    int fd;
    tlsconn_t *tls;         /* NULL on the plain listener */
    bool tls_read_wants_write, tls_write_wants_read; /* a TLS call waits on the other side */
    uint32_t hsts_s;        /* s: Strict-Transport-Security of the current request; 0 = none */
    ev_io rio, wio;
    ev_timer timer;
    /* The client's address as accept gave it, and as text once something needs it (hc_client):
     * formatting it costs ~3,000 instructions (callgrind; a whole resumed TLS 1.2 handshake
     * costs the server ~400,000), and most short connections never log it. */
    struct sockaddr_storage peer;
    char client[64];                      /* "ip:port" of the client, "" until hc_client */
    char client_ip[NETADDR_HOST_MAX + 1]; /* its address alone (IPv6 without brackets) */
    bool client_v6;                       /* client_ip is an IPv6 address */
    char ingress[64]; /* "ip:port" it connected to: with client, how a site spots a loop */
    auth_addr_t caddr;
    enum hstate state;
    http_reader_t *req;
    size_t in_len; /* bytes of in[] */
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    struct upstream *up;
    bool keep_alive, head_req, chunked_up, resp_done, resp_keep_alive, client_eof;
    bool lingering;  /* answered and half-closed: discarding what the client still sends */
    size_t lingered; /* bytes discarded so far */
    bool partial;    /* bytes of a request head have arrived, the head is not complete */
    bool http10;     /* the current request is HTTP/1.0 (no chunked answers) */
    bool cross_site; /* a /.popmesh/ request made from another site's page */
    /* Referrer-Policy of our answers: "same-origin" (the login form's POST keeps its Origin),
     * "no-referrer" after a share link (its token must not reach the app as a Referer). */
    const char *referrer_policy;
    /* the current request, for local handling and logs */
    char method[16];
    char target[1024];
    char host[256];
    size_t local_len; /* bytes of local_body[] */
    bool local_too_big;
    char user[NODECFG_NAME_MAX + 1];
    struct pwjob *pw_job; /* a login being checked: the connection waits for it */
    oidc_job_t *oidc_job; /* a provider sign-in step under way: the connection waits for it */
    size_t oidc_cookie_len; /* bytes of oidc_cookie[] (a /.popmesh/ request's state cookie) */
    httpstats_res_t *rs;  /* the current request's resource counters; NULL = not routed */
    bool rs_answered;     /* its response was counted */
    ev_tstamp req_t0;     /* loop time its head was read (the latency histogram) */
    conncap_slot_t *slot; /* its place under the connection caps */
    ev_tstamp phase;      /* loop time the current state's fixed deadline counts from */
    ev_tstamp active;     /* loop time a byte last moved, client or upstream, either way */
    /* The current request's access log line (see "access log" below); only with a log. */
    bool req_open;      /* a request began and its line is not written yet */
    bool req_head;      /* its head was read (method, host and target are its own) */
    bool req_pending;   /* it ended inside a feed: written once the feed's bytes are counted */
    bool req_counting;  /* a request began: its decision is counted when it ends (st.decided) */
    bool feeding;       /* process_input is inside http_reader_feed */
    uint64_t req_t0_us; /* monotonic us it began */
    uint64_t req_in;    /* bytes of it from the client (head and body as received) */
    uint64_t req_out;   /* bytes of its answer to the client */
    int req_status;     /* the status answered; 0 = none yet */
    enum accesslog_decision req_decision;
    const char *req_reason; /* static: why refused */
    uint32_t req_one_in;    /* its resource's sampling (1 until routed) */
    char req_resource[NODECFG_NAME_MAX + 1];
    dp_path_t req_path; /* the path of the stream that carried it */
    struct hconn *prev, *next;
    /* The buffers last: a connection reused from the pool clears everything above them and
     * leaves their 72 KiB alone (their lengths say what is valid), which spares every new
     * connection zeroing (and often faulting in) memory it may never touch. */
    uint8_t in[IN_CAP];
    char local_body[LOCAL_BODY];
    char oidc_cookie[OIDC_COOKIE_MAX];
};

/* Closed connections kept for reuse (see the end of struct hconn). A pooled one is poisoned
 * for AddressSanitizer, which then reports a use after close as it would a use after free. */
#define HC_POOL_MAX 64

/* One listening socket: plain HTTP, or HTTPS. */
struct listener {
    httpproxy_t *px;
    int fd;
    bool tls;        /* connections start with a TLS handshake */
    const char *addr; /* "host:port" (the options' string) */
    ev_io io;
    /* accept() failed for lack of descriptors or memory: io is stopped until this fires */
    ev_timer accept_retry;
    bool accept_backoff;           /* io stopped by such a failure (health: not accepting) */
    ev_tstamp accept_fail_logged;  /* loop time of the last such log line */
    uint64_t accept_fail_unlogged; /* such failures since that line */
};

struct httpproxy {
    httpproxy_opts_t o;
    struct listener lis[2]; /* HTTP, HTTPS: those with fd >= 0 are open */
    uint16_t https_port;    /* port of the HTTPS listener (redirects); 0 = none */
    double tls_timeout;     /* s: TLS handshake timeout (a test knob may change it) */
    int watch_res, watch_rules;    /* store_watch ids of resource/ and rule/ (0 = none) */
    resource_t *res;               /* the routes: every readable resource (see routes_load_all) */
    size_t nres, cap_res;          /* entries used and allocated, of res, rules and nrules */
    auth_rule_t **rules;           /* per resource of res: its rules, sorted (auth_rules_load) */
    /* Verified session cookies: direct-mapped by a keyed hash of the cookie. A hit skips the
     * signature check only; expiry, scope and the user record are checked every time. */
    struct {
        char cookie[AUTH_TOKEN_MAX + 1]; /* the verified cookie itself */
        size_t len;
        bool used;
        auth_session_t claims;
        auth_user_t user;    /* the user record as last checked */
        uint64_t checked_ms; /* monotonic ms of that check; 0 = never */
    } scache[HTTPPROXY_SESSION_CACHE];
    uint8_t scache_key[crypto_shorthash_KEYBYTES]; /* SipHash key of the slot index */
    size_t *nrules;
    auth_ratelimit_t *rl_ip;   /* login attempts per client address (NATs share one: generous) */
    auth_ratelimit_t *rl_user; /* login attempts per user name (guessing one password: strict) */
    loginshare_t *logins;      /* both limiters' attempts, shared with the mesh (NULL = alone) */
    ev_timer logins_timer;     /* loginshare_tick's next deadline */
    struct hconn *conns;
    struct hconn *hc_pool; /* closed connections for reuse, linked by next */
    unsigned hc_pooled;
    /* password checks (struct pwjob) */
    pthread_t workers[HTTPPROXY_PW_WORKERS];
    unsigned nworkers;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct pwjob *todo, *todo_tail, *done;
    unsigned queued;
    bool stopping;
    ev_async done_async;
    char dummy_hash[AUTH_PWHASH_MAX + 1]; /* checked for unknown users: same time either way */
    /* caps and timeouts, fixed at start (httpproxy.h; test knobs may change them) */
    conncap_t *cap; /* connections in all and per client address */
    double tscale;  /* multiplies every timeout: 1 except under POPMESH_TEST_HTTP_TIMEOUT_SCALE */
    ev_tstamp refused_logged;  /* loop time of the last refusal log line */
    uint64_t refused_unlogged; /* refusals since that line */
    struct {
        uint64_t requests, local, denied, unauthenticated, errors;
        uint64_t timeout_head, timeout_idle, timeout_body, timeout_response, timeout_resp_idle,
            timeout_ws, timeout_closing, timeout_tls, redirects_https, misdirected;
        uint64_t login_limited; /* sign-ins refused by a rate limit (429) */
        uint64_t totp_accepted; /* second factors accepted (codes and recovery codes) */
        uint64_t totp_refused;  /* second factors missing, malformed or wrong */
        uint64_t totp_replayed; /* codes and recovery codes used before: refused */
        uint64_t logins_failed; /* sign-ins refused: wrong user name or password */
        uint64_t decided[ACCESSLOG_PROVIDER + 1]; /* requests ended, by their decision */
    } st;
};

static void hc_close(struct hconn *hc);
static void hc_arm(struct hconn *hc);
static void process_input(struct hconn *hc);

/* "ip:port" of the client (and client_ip, client_v6), formatted at the first call. */
static const char *hc_client(struct hconn *hc)
{
    if (hc->client[0])
        return hc->client;
    netaddr_format((const struct sockaddr *)&hc->peer, hc->client, sizeof(hc->client));
    netaddr_t na;
    if (netaddr_parse(hc->client, &na, true) == 0) {
        snprintf(hc->client_ip, sizeof(hc->client_ip), "%s", na.host);
        hc->client_v6 = na.ipv6;
    } else {
        /* not an IPv4 or IPv6 peer: RFC 7239's word for an address not known */
        snprintf(hc->client_ip, sizeof(hc->client_ip), "unknown");
    }
    return hc->client;
}
static void flush_up(struct upstream *up);

/* ---- bytes to and from the client (plain, or through TLS) ------------------------------- */

/* recv() on the client connection: bytes, 0 at EOF, or -1 with errno (EAGAIN: not now). */
static ssize_t client_recv(struct hconn *hc, void *buf, size_t len)
{
    if (!hc->tls)
        return recv(hc->fd, buf, len, 0);
    ssize_t n = tlsconn_read(hc->tls, buf, len);
    if (n > 0)
        return n;
    switch (n) {
    case TLS_WANT_WRITE: /* on_client_write reads again */
        hc->tls_read_wants_write = true;
        ev_io_start(hc->px->o.loop, &hc->wio);
        /* fall through */
    case TLS_WANT_READ:
        errno = EAGAIN;
        return -1;
    case TLS_CLOSED:
        return 0;
    default:
        errno = EPROTO;
        return -1;
    }
}

/* send() on the client connection: bytes, or -1 with errno (EAGAIN: not now; with
 * hc->tls_write_wants_read set, the retry waits for the socket to be readable). */
static ssize_t client_send(struct hconn *hc, const void *buf, size_t len)
{
    if (!hc->tls)
        return send(hc->fd, buf, len, MSG_NOSIGNAL);
    ssize_t n = tlsconn_write(hc->tls, buf, len);
    if (n > 0)
        return n;
    if (n == TLS_WANT_WRITE || n == TLS_WANT_READ) {
        hc->tls_write_wants_read = n == TLS_WANT_READ;
        errno = EAGAIN;
        return -1;
    }
    errno = EPIPE;
    return -1;
}

/* Our half of the connection ends: close_notify first under TLS. */
static void client_shutdown_wr(struct hconn *hc)
{
    if (hc->tls)
        tlsconn_shutdown(hc->tls);
    shutdown(hc->fd, SHUT_WR);
}

/* Reads from the client again. Bytes OpenSSL already decrypted do not make the socket
 * readable: an event is fed for them. */
static void rio_resume(struct hconn *hc)
{
    ev_io_start(hc->px->o.loop, &hc->rio);
    if (hc->tls && tlsconn_pending(hc->tls))
        ev_feed_event(hc->px->o.loop, &hc->rio, EV_READ);
}

/* ---- output to the client --------------------------------------------------------------- */

static void out_append(struct hconn *hc, const void *p, size_t n)
{
    hc->req_out += n;
    if (hc->out_off && hc->out_off == hc->out_len)
        hc->out_off = hc->out_len = 0;
    if (hc->out_cap - hc->out_len < n) {
        if (hc->out_off) {
            memmove(hc->out, hc->out + hc->out_off, hc->out_len - hc->out_off);
            hc->out_len -= hc->out_off;
            hc->out_off = 0;
        }
        size_t cap = hc->out_cap ? hc->out_cap : 16384;
        while (cap - hc->out_len < n)
            cap *= 2;
        if (cap != hc->out_cap) {
            hc->out = xrealloc(hc->out, cap);
            hc->out_cap = cap;
        }
    }
    memcpy(hc->out + hc->out_len, p, n);
    hc->out_len += n;
}

static void out_printf(struct hconn *hc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void out_printf(struct hconn *hc, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > 0)
        out_append(hc, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* Writes what the client takes; returns false if the connection was closed. */
static bool out_flush(struct hconn *hc)
{
    while (hc->out_off < hc->out_len) {
        ssize_t n = client_send(hc, hc->out + hc->out_off, hc->out_len - hc->out_off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (hc->tls_write_wants_read) /* on_client_read flushes again */
                    rio_resume(hc);
                else
                    ev_io_start(hc->px->o.loop, &hc->wio);
                return true;
            }
            hc_close(hc);
            return false;
        }
        hc->out_off += (size_t)n;
        hc->active = ev_now(hc->px->o.loop);
    }
    ev_io_stop(hc->px->o.loop, &hc->wio);
    hc->out_off = hc->out_len = 0;
    if (hc->out_cap > 65536) {
        free(hc->out);
        hc->out = NULL;
        hc->out_cap = 0;
    }
    /* The client took the relayed bytes: credit goes back to the backend. */
    struct upstream *up = hc->up;
    if (up && up->owed && up->open && !up->gone) {
        tun_t *t = tconn_tun(up->c);
        if (t && tun_consumed(t, up->sid, up->owed) == TUN_CLOSED)
            up->gone = true;
        up->owed = 0;
    }
    if (hc->state == H_CLOSING) {
        if (hc->client_eof || hc->lingering) {
            if (!hc->lingering)
                hc_close(hc);
            return false;
        }
        /* Our last answer is written, but the client may still be sending (a request refused
         * mid-way: a 431 for a huge head, a 413). Closing with its bytes unread makes the
         * kernel answer with RST, which can destroy the answer in the client's receive buffer
         * before it is read. So: FIN, then read and discard for a moment (at most
         * HTTPPROXY_LINGER_S and HTTPPROXY_LINGER_MAX bytes), closing at its EOF. */
        client_shutdown_wr(hc);
        hc->lingering = true;
        hc->in_len = 0;
        hc->phase = ev_now(hc->px->o.loop);
        ev_io_start(hc->px->o.loop, &hc->rio);
        ev_timer_stop(hc->px->o.loop, &hc->timer);
        hc_arm(hc);
        return false;
    }
    return true;
}

/* ---- access log ----------------------------------------------------------------------------
 *
 * One line per request (common/accesslog.h), written when it ends: its answer made here
 * (respond), its response relayed whole (request_finished), or its connection closed first
 * (hc_close; a WebSocket's line comes then, with the bytes of the whole conversation). The
 * bytes in are what the request reader consumed for it, counted after each feed (a feed
 * stops at the end of a request, so every byte of a feed is the current request's); a request
 * answered inside a feed is therefore written when the feed returns (req_pending). The URL is
 * logged without its query string: share links and applications carry tokens there. With the
 * log off nothing here runs but a few counter additions; a request its resource does not
 * sample costs one PRNG draw at its end. */

static void req_log_write(struct hconn *hc)
{
    httpproxy_t *px = hc->px;
    hc->req_open = hc->req_pending = false;
    if (!accesslog_want(px->o.alog, hc->req_one_in))
        return;
    char path[sizeof(hc->target)], names[DP_PATH_MAX + 1][NODECFG_NAME_MAX + 1];
    snprintf(path, sizeof(path), "%.*s", (int)strcspn(hc->target, "?"), hc->target);
    uint64_t dur = clock_mono_us() - hc->req_t0_us;
    accesslog_event_t ev = {.kind = ACCESSLOG_HTTP,
                            .start_ms = clock_wall_ms() - dur / 1000,
                            .duration_us = dur,
                            .pop = px->o.node_name,
                            .client = hc_client(hc),
                            .user = hc->user,
                            .resource = hc->req_resource,
                            .decision = hc->req_decision,
                            .reason = hc->req_reason,
                            .status = hc->req_status,
                            .method = hc->req_head ? hc->method : NULL,
                            .host = hc->req_head ? hc->host : NULL,
                            .path = hc->req_head ? path : NULL,
                            .bytes_in = hc->req_in,
                            .bytes_out = hc->req_out};
    if (hc->req_path.n_hops)
        dataplane_path_names(px->o.dp, &hc->req_path, &ev, names);
    else
        ev.ingress = px->o.node_name; /* answered here */
    accesslog_write(px->o.alog, &ev);
}

/* A request begins (head true: its head was read; false: an answer to bytes that never made
 * one, a malformed head or one that did not arrive in time). */
static void req_log_begin(struct hconn *hc, bool head)
{
    /* counted at the end (/metrics: auth decisions by method), with or without a log */
    hc->req_decision = ACCESSLOG_NO_DECISION;
    hc->req_counting = true;
    if (!hc->px->o.alog)
        return;
    if (hc->req_open) /* the one before ended unseen (it should not): its line now */
        req_log_write(hc);
    hc->req_open = true;
    hc->req_head = head;
    hc->req_t0_us = clock_mono_us();
    hc->req_status = 0;
    hc->req_decision = ACCESSLOG_NO_DECISION;
    hc->req_reason = NULL;
    hc->req_one_in = 1;
    hc->req_resource[0] = '\0';
    hc->req_path.n_hops = 0;
    if (!head)
        hc->user[0] = '\0';
    hc->req_in = 0; /* a feed under way adds its bytes when it returns */
    hc->req_out = 0;
}

/* The request ended (its status in req_status, 0 if none): its line, now or once the feed
 * returns. */
static void req_log_end(struct hconn *hc)
{
    if (hc->req_counting) {
        hc->req_counting = false;
        if ((unsigned)hc->req_decision <= ACCESSLOG_PROVIDER)
            hc->px->st.decided[hc->req_decision]++;
    }
    if (!hc->req_open)
        return;
    if (hc->feeding)
        hc->req_pending = true;
    else
        req_log_write(hc);
}

static void req_log_deny(struct hconn *hc, const char *why)
{
    hc->req_decision = ACCESSLOG_DENIED;
    hc->req_reason = why;
}

/* The resource the request is for (routing, or the host's root for /.popmesh/ pages). */
static void req_log_resource(struct hconn *hc, const resource_t *r)
{
    if (!hc->req_open)
        return;
    snprintf(hc->req_resource, sizeof(hc->req_resource), "%s", r->name);
    hc->req_one_in = resource_access_log_one_in(r);
}

static const char *status_text(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 302:
        return "Found";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 414:
        return "URI Too Long";
    case 421:
        return "Misdirected Request";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Error";
    }
}

/* HTML-escapes s into out (for error pages that echo a reason). */
static void html_escape(const char *s, char *out, size_t len)
{
    size_t o = 0;
    for (; *s && o + 7 < len; s++) {
        const char *r = *s == '<'   ? "&lt;"
                        : *s == '>' ? "&gt;"
                        : *s == '&' ? "&amp;"
                        : *s == '"' ? "&quot;"
                                    : NULL;
        if (r) {
            size_t rl = strlen(r);
            memcpy(out + o, r, rl);
            o += rl;
        } else if ((unsigned char)*s >= 0x20) {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

/* The current request's response of status, in its resource's counters (once). */
static void count_response(struct hconn *hc, int status)
{
    if (!hc->rs || hc->rs_answered)
        return;
    hc->rs_answered = true;
    httpstats_response(hc->rs, status, ev_now(hc->px->o.loop) - hc->req_t0);
}

/* An answer made here. close: the connection closes after it. */
static void respond(struct hconn *hc, int code, const char *extra_headers, const char *body_html,
                    bool close)
{
    char body[6144];
    if (hc->px->o.alog && !hc->req_open) /* an answer to bytes that never made a request */
        req_log_begin(hc, false);
    if (!body_html) {
        snprintf(body, sizeof(body),
                 "<!doctype html><html><head><title>%d %s</title></head><body "
                 "style=\"font-family:sans-serif;margin:3em\"><h1>%d %s</h1><p>popmesh</p>"
                 "</body></html>\n",
                 code, status_text(code), code, status_text(code));
        body_html = body;
    }
    size_t bl = strlen(body_html);
    char sts[64] = "";
    if (hc->tls && hc->hsts_s)
        snprintf(sts, sizeof(sts), "Strict-Transport-Security: max-age=%u\r\n", hc->hsts_s);
    out_printf(hc,
               "HTTP/1.1 %d %s\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: %zu\r\n"
               "Cache-Control: no-store\r\nReferrer-Policy: %s\r\n%s%s%s\r\n",
               code, status_text(code), hc->head_req ? 0 : bl, hc->referrer_policy, sts,
               extra_headers ? extra_headers : "",
               close || !hc->keep_alive ? "Connection: close\r\n" : "");
    if (!hc->head_req)
        out_append(hc, body_html, bl);
    hc->active = ev_now(hc->px->o.loop); /* the client gets its full time to read this */
    if (close || !hc->keep_alive)
        hc->state = H_CLOSING;
    if (code >= 400)
        hc->px->st.errors++;
    hc->req_status = code;
    req_log_end(hc);
    count_response(hc, code);
}

static void error_page(struct hconn *hc, int code, const char *why)
{
    char esc[512], body[2048];
    html_escape(why ? why : "", esc, sizeof(esc));
    snprintf(body, sizeof(body),
             "<!doctype html><html><head><title>%d %s</title></head><body "
             "style=\"font-family:sans-serif;margin:3em\"><h1>%d %s</h1><p>%s</p>"
             "<p><small>popmesh</small></p></body></html>\n",
             code, status_text(code), code, status_text(code), esc);
    respond(hc, code, NULL, body,
            code >= 500 || code == 400 || code == 408 || code == 413 || code == 414 || code == 431);
}

/* ---- helpers ---------------------------------------------------------------------------- */

/* Decodes application/x-www-form-urlencoded value bytes into out; false on bad escapes, NUL or
 * overflow. */
static bool url_decode(const char *s, size_t n, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (i + 2 >= n)
                return false;
            int h = httppath_hexval(s[i + 1]), l = httppath_hexval(s[i + 2]);
            if (h < 0 || l < 0)
                return false;
            c = h * 16 + l;
            i += 2;
        }
        if (c == 0 || o + 1 >= len)
            return false;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return true;
}

/* Finds name=value in a form or query string; decodes it into out. */
static bool form_get(const char *q, size_t qlen, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    const char *p = q, *end = q + qlen;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nl && !memcmp(p, name, nl) && p[nl] == '=')
            return url_decode(p + nl + 1, (size_t)(e - p - nl - 1), out, len);
        p = e + 1;
    }
    return false;
}

static void url_encode(const char *s, char *out, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *s && o + 4 < len; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("-_.~/", c)) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
}

static const http_header_t *header(const http_head_t *h, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < h->nheaders; i++)
        if (h->headers[i].name_len == nl && !strncasecmp(h->headers[i].name, name, nl))
            return &h->headers[i];
    return NULL;
}

/* ---- upstream --------------------------------------------------------------------------- */

static void pend_append(struct upstream *up, const void *p, size_t n)
{
    if (up->pend_cap - up->pend_len < n) {
        size_t cap = up->pend_cap ? up->pend_cap : 16384;
        while (cap - up->pend_len < n)
            cap *= 2;
        up->pend = xrealloc(up->pend, cap);
        up->pend_cap = cap;
    }
    memcpy(up->pend + up->pend_len, p, n);
    up->pend_len += n;
}

static void up_free(struct upstream *up)
{
    http_reader_destroy(&up->resp);
    free(up->pend);
    free(up->stage);
    free(up);
}

/* Detaches the upstream from its client: resets the stream if open; frees it unless the data
 * plane still owes a callback (an open in flight). */
static void up_release(struct upstream *up)
{
    up->hc = NULL;
    if (up->open) {
        if (!up->gone) {
            tun_t *t = tconn_tun(up->c);
            if (t)
                tun_reset(t, up->sid, TUN_ERR_NONE);
        }
        up_free(up);
    }
    /* else: on_open or on_fail frees it */
}

static void flush_up(struct upstream *up)
{
    if (!up->open || up->gone || !up->pend_len)
        return;
    tun_t *t = tconn_tun(up->c);
    if (!t)
        return;
    ssize_t n = tun_send(t, up->sid, up->pend, up->pend_len);
    struct hconn *hc = up->hc;
    if (n > 0) {
        memmove(up->pend, up->pend + n, up->pend_len - (size_t)n);
        up->pend_len -= (size_t)n;
        if (hc)
            hc->active = ev_now(hc->px->o.loop); /* the application is taking the body */
    }
    if (hc && up->pend_len < PEND_HIGH && !ev_is_active(&hc->rio) && hc->state != H_CLOSING &&
        !hc->client_eof)
        rio_resume(hc);
}

/* Response bytes for the client: staged until the head of the response is known to be good
 * (a head that fails, or a bad chunk in the same read, must leave nothing but a 502), then
 * straight to the client's output. */
static void resp_out(struct upstream *up, const void *p, size_t n)
{
    if (up->saw_response) {
        out_append(up->hc, p, n);
        return;
    }
    if (up->stage_cap - up->stage_len < n) {
        size_t cap = up->stage_cap ? up->stage_cap : 16384;
        while (cap - up->stage_len < n)
            cap *= 2;
        up->stage = xrealloc(up->stage, cap);
        up->stage_cap = cap;
    }
    memcpy(up->stage + up->stage_len, p, n);
    up->stage_len += n;
}

/* Set-Cookie for popmesh's own cookie: an application (or anything behind it) must not be
 * able to plant a session in the browser (on a parent domain, where it would shadow ours). */
static bool resp_drop(const http_header_t *x)
{
    return httphdr_name_is(x->name, x->name_len, "set-cookie") &&
           httphdr_set_cookie_is(x->value, x->value_len, HTTPPROXY_COOKIE);
}

static int resp_on_head(void *ctx, const http_head_t *h)
{
    struct upstream *up = ctx;
    struct hconn *hc = up->hc;
    if (!hc)
        return 0;
    /* A 101 switches the client connection to raw bytes: only as the WebSocket handshake the
     * client asked for, proved by the key (otherwise a backend could turn the connection into
     * a pipe that skips every rule for the requests that follow). */
    if (h->status == 101) {
        if (!up->ws_key[0]) {
            up->why = "a 101 to a request that asked for no WebSocket";
            return -1;
        }
        up->why = httphdr_ws_check_101(h, up->ws_key, strlen(up->ws_key));
        if (up->why)
            return -1;
    }
    bool interim = h->status < 200 && h->status != 101;
    if (!interim)
        hc->req_status = h->status;
    if (!interim)
        count_response(hc, h->status);
    http_head_rewrite_t rw = {.content_length = -1, .drop_if = resp_drop};
    http_header_t extra[3 + HTTPRULES_EXTRA_MAX];
    /* The resource's response rules (httprules.h), as the routes hold it now. */
    httprules_out_t rules = {.ndrop = 0, .nextra = 0};
    for (size_t i = 0; i < hc->px->nres && h->status != 101; i++)
        if (!strcmp(hc->px->res[i].name, up->resource)) {
            httprules_response(&hc->px->res[i], &rules);
            break;
        }
    rw.drop = rules.drop;
    rw.ndrop = rules.ndrop;
    char sts[48];
    up->chunked_out = false;
    if (h->status == 101) {
        rw.keep_upgrade = true;
    } else if (!interim) {
        hc->resp_keep_alive = h->keep_alive;
        bool bodyless = hc->head_req || h->status == 204 || h->status == 304;
        if (bodyless) {
            /* Framing headers of a bodiless answer describe the resource: kept as told. */
            rw.content_length = h->content_length;
            rw.chunked = h->chunked && h->content_length < 0 && !hc->http10;
        } else if (h->content_length >= 0) {
            rw.content_length = h->content_length;
        } else if (h->chunked && !hc->http10) {
            rw.chunked = up->chunked_out = true;
        } else {
            hc->resp_keep_alive = false; /* up to EOF (or chunked to a 1.0 client): close */
        }
        if (!hc->keep_alive || !hc->resp_keep_alive)
            extra[rw.nextra++] = (http_header_t){"Connection", 10, "close", 5};
        else if (hc->http10)
            extra[rw.nextra++] = (http_header_t){"Connection", 10, "keep-alive", 10};
        if (hc->tls && hc->hsts_s) {
            int sl = snprintf(sts, sizeof(sts), "max-age=%u", hc->hsts_s);
            extra[rw.nextra++] =
                (http_header_t){"Strict-Transport-Security", 25, sts, (size_t)sl};
        }
        for (size_t i = 0; i < rules.nextra; i++)
            extra[rw.nextra++] = rules.extra[i];
        rw.extra = extra;
    }
    char *buf = xmalloc(RESP_OUT_MAX);
    ssize_t n = http_head_serialize(h, &rw, buf, RESP_OUT_MAX);
    if (n < 0) {
        free(buf);
        up->why = "the response head cannot be forwarded";
        return -1;
    }
    resp_out(up, buf, (size_t)n);
    free(buf);
    up->head_staged = true;
    if (h->status == 101)
        hc->state = H_RAW; /* WebSocket: bytes both ways from here */
    return 0;
}

static int resp_on_body(void *ctx, const uint8_t *d, size_t n)
{
    struct upstream *up = ctx;
    if (!up->hc)
        return 0;
    if (up->hc->rs)
        up->hc->rs->bytes_out += n;
    if (up->chunked_out) {
        char sz[24];
        int l = snprintf(sz, sizeof(sz), "%zx\r\n", n);
        resp_out(up, sz, (size_t)l);
        resp_out(up, d, n);
        resp_out(up, "\r\n", 2);
    } else {
        resp_out(up, d, n);
    }
    return 0;
}

static int resp_on_done(void *ctx)
{
    struct upstream *up = ctx;
    if (up->hc && up->chunked_out)
        resp_out(up, "0\r\n\r\n", 5);
    up->expecting = false;
    if (up->hc)
        up->hc->resp_done = true;
    /* One response per request: feed stops here, so bytes after it are seen as extra. */
    return 1;
}

static void request_finished(struct hconn *hc)
{
    req_log_end(hc);
    /* The response is complete: next request, or close. */
    if (!hc->keep_alive || !hc->resp_keep_alive || hc->client_eof) {
        hc->state = H_CLOSING;
        out_flush(hc);
        return;
    }
    hc->state = H_HEAD;
    hc->resp_done = false;
    hc_arm(hc);
    if (hc->in_len)
        process_input(hc); /* a pipelined request already waiting */
}

static void up_on_open(dp_stream_handler_t *h, tconn_t *c, uint64_t sid)
{
    struct upstream *up = (struct upstream *)h;
    up->c = c;
    up->sid = sid;
    up->open = true;
    if (up->hc && up->hc->req_open) /* the request it was opened for */
        up->hc->req_path = h->path;
    if (!up->hc) { /* the client left meanwhile */
        tun_reset(tconn_tun(c), sid, TUN_ERR_NONE);
        up_free(up);
        return;
    }
    flush_up(up);
}

static void up_on_fail(dp_stream_handler_t *h, uint32_t code, const char *why)
{
    (void)code;
    struct upstream *up = (struct upstream *)h;
    struct hconn *hc = up->hc;
    if (!hc) {
        up_free(up);
        return;
    }
    hc->up = NULL;
    up_free(up);
    /* No site to send it to (offline, or no route from here): the service is unavailable,
     * 503; a site that was tried and failed is a bad gateway, 502. */
    error_page(hc,
               strstr(why, "offline") || strstr(why, "no route") || strstr(why, "not reachable") ||
                       strstr(why, "is reachable")
                   ? 503
                   : 502,
               why);
    out_flush(hc);
}

/* The application broke HTTP (a malformed or extra response, bytes nobody asked for): its
 * stream is closed, so nothing more from it can be taken for the answer to a later request.
 * The client gets a 502 if no byte of the response reached it, else its connection closes. */
static void up_broken(struct hconn *hc, const char *why)
{
    struct upstream *up = hc->up;
    char et[LOG_ESC_MAX];
    log_warn("http: %s %s: resource %s: %s", hc->method, log_escs(et, sizeof(et), hc->target),
             up->resource, why);
    bool answered = up->saw_response, pending = up->expecting;
    hc->up = NULL;
    up_release(up);
    if (!pending) {
        /* Between requests: the client connection itself is fine. */
        return;
    }
    if (!answered && hc->state != H_CLOSING)
        error_page(hc, 502, "the application sent a malformed response");
    else
        hc->state = H_CLOSING;
}

static void up_on_data(dp_stream_handler_t *h, tconn_t *c, uint64_t sid, const uint8_t *d, size_t n)
{
    struct upstream *up = (struct upstream *)h;
    struct hconn *hc = up->hc;
    if (!hc) {
        tun_consumed(tconn_tun(c), sid, n);
        return;
    }
    hc->active = ev_now(hc->px->o.loop);
    if (hc->state != H_RAW) {
        if (!up->expecting) {
            tun_consumed(tconn_tun(c), sid, n);
            up_broken(hc, "bytes from the application with no request outstanding");
            out_flush(hc);
            return;
        }
        up->stage_len = 0;
        up->head_staged = false;
        up->why = NULL;
        ssize_t used = http_reader_feed(up->resp, d, n);
        if (used < 0) {
            const char *why;
            int st = http_reader_error(up->resp, &why);
            char m[200];
            snprintf(m, sizeof(m), "bad response: %s (%d)", up->why ? up->why : why, st);
            up->stage_len = 0; /* nothing of a refused response is relayed */
            tun_consumed(tconn_tun(c), sid, n);
            up_broken(hc, m);
            out_flush(hc);
            return;
        }
        if (up->stage_len)
            out_append(hc, up->stage, up->stage_len);
        up->stage_len = 0;
        if (up->head_staged)
            up->saw_response = true;
        if ((size_t)used < n && hc->state == H_RAW) {
            out_append(hc, d + used, n - (size_t)used); /* the new protocol's first bytes */
        } else if ((size_t)used < n) {
            tun_consumed(tconn_tun(c), sid, n);
            bool finished = hc->resp_done && hc->state == H_WAIT;
            up_broken(hc, "bytes from the application after its complete response");
            if (out_flush(hc) && finished)
                request_finished(hc);
            return;
        }
    } else {
        out_append(hc, d, n);
    }
    up->owed += n;
    if (hc->out_len - hc->out_off < OUT_HIGH) {
        if (tun_consumed(tconn_tun(c), sid, up->owed) == TUN_CLOSED)
            up->gone = true;
        up->owed = 0;
    }
    if (!out_flush(hc))
        return;
    if (hc->resp_done && hc->state == H_WAIT)
        request_finished(hc);
}

static void up_on_fin(dp_stream_handler_t *h, tconn_t *c, uint64_t sid)
{
    (void)c, (void)sid;
    struct upstream *up = (struct upstream *)h;
    struct hconn *hc = up->hc;
    if (!hc)
        return;
    if (!up->expecting && hc->state != H_RAW) {
        /* The application closed an idle keep-alive connection: the next request opens a new
         * stream; the client's connection is not affected. */
        tun_t *t = tconn_tun(up->c);
        if (t && !up->gone && tun_fin(t, up->sid) == TUN_CLOSED)
            up->gone = true;
        hc->up = NULL;
        up_release(up);
        return;
    }
    if (up->resp && hc->state != H_RAW)
        http_reader_eof(up->resp); /* completes a body that runs to EOF, straight to output */
    if (!up->saw_response && hc->state == H_WAIT) {
        error_page(hc, 502, "the application closed the connection without a response");
    } else {
        if (hc->state == H_RAW)
            client_shutdown_wr(hc);
        hc->state = H_CLOSING; /* the backend closed: so does the client connection */
    }
    /* Our side of the stream ends too. */
    tun_t *t = tconn_tun(up->c);
    if (t && !up->gone && tun_fin(t, up->sid) == TUN_CLOSED)
        up->gone = true;
    out_flush(hc);
}

static void up_on_writable(dp_stream_handler_t *h, tconn_t *c, uint64_t sid)
{
    (void)c, (void)sid;
    struct upstream *up = (struct upstream *)h;
    flush_up(up);
    if (up->hc && up->pend_len < PEND_HIGH && up->hc->in_len && up->hc->state == H_BODY)
        process_input(up->hc);
}

static void up_on_reset(dp_stream_handler_t *h, tconn_t *c, uint64_t sid, uint32_t code,
                        const char *msg, size_t ml)
{
    (void)c, (void)sid;
    struct upstream *up = (struct upstream *)h;
    up->gone = true;
    struct hconn *hc = up->hc;
    if (!hc) {
        up_free(up);
        return;
    }
    hc->up = NULL;
    char why[300];
    snprintf(why, sizeof(why), "%s%s%.*s", tun_code_name(code), ml ? ": " : "", (int)ml,
             msg ? msg : "");
    bool answered = up->saw_response;
    up_free(up);
    if (!answered && (hc->state == H_BODY || hc->state == H_WAIT)) {
        error_page(hc, code == TUN_ERR_UNREACHABLE || code == TUN_ERR_REFUSED ? 502 : 504, why);
        out_flush(hc);
    } else {
        hc->state = H_CLOSING;
        out_flush(hc);
    }
}

static void up_on_closed(dp_stream_handler_t *h, tconn_t *c, uint64_t sid)
{
    (void)c, (void)sid;
    struct upstream *up = (struct upstream *)h;
    up->gone = true;
    if (!up->hc)
        up_free(up);
}

static struct upstream *up_new(struct hconn *hc, const resource_t *res)
{
    struct upstream *up = xcalloc(1, sizeof(*up));
    up->hc = hc;
    snprintf(up->resource, sizeof(up->resource), "%s", res->name);
    up->h.on_open = up_on_open;
    up->h.on_fail = up_on_fail;
    up->h.on_data = up_on_data;
    up->h.on_fin = up_on_fin;
    up->h.on_writable = up_on_writable;
    up->h.on_reset = up_on_reset;
    up->h.on_closed = up_on_closed;
    http_limits_t lim;
    http_limits_defaults(&lim);
    lim.max_header_bytes = RESP_HEAD_MAX;
    http_reader_cbs_t cbs = {
        .ctx = up, .on_head = resp_on_head, .on_body = resp_on_body, .on_done = resp_on_done};
    up->resp = http_reader_new(HTTP_RESPONSE, &lim, &cbs);
    if (!hc->ingress[0]) {
        /* Only a connection that goes upstream needs its local address: a handshake or a
         * redirect alone does not pay the syscall. */
        struct sockaddr_storage local;
        socklen_t ll = sizeof(local);
        if (getsockname(hc->fd, (struct sockaddr *)&local, &ll) == 0)
            netaddr_format((const struct sockaddr *)&local, hc->ingress, sizeof(hc->ingress));
    }
    if (dataplane_open_stream(hc->px->o.dp, res, hc_client(hc), hc->ingress, &up->h)) {
        up_free(up);
        return NULL;
    }
    return up;
}

/* ---- local pages ------------------------------------------------------------------------ */

static const char *LOGIN_FORM =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>Sign in</title>"
    "<meta name=\"viewport\" content=\"width=device-width\"></head>"
    "<body style=\"font-family:sans-serif;max-width:22em;margin:4em auto\">"
    "<h1>Sign in</h1>%s"
    "<form method=\"post\" action=\"/.popmesh/login\">"
    "<input type=\"hidden\" name=\"rd\" value=\"%s\">"
    "<p><label>User<br><input name=\"username\" autocomplete=\"username\" autofocus></label></p>"
    "<p><label>Password<br><input name=\"password\" type=\"password\" "
    "autocomplete=\"current-password\"></label></p>"
    "<p><label>Code (two-factor accounts)<br><input name=\"code\" "
    "autocomplete=\"one-time-code\"></label></p>"
    "<p><button type=\"submit\">Sign in</button></p></form>%s"
    "<p><small>popmesh</small></p></body></html>\n";

/* A redirect target is followed only to a path on the same host (httphdr_redirect_target);
 * anything else goes to "/". out: RD_MAX bytes. */
#define RD_MAX 3200 /* a 1023-byte rd, every byte percent-encoded */
static const char *safe_rd(const char *rd, char *out)
{
    if (httphdr_redirect_target(rd, strlen(rd), out, RD_MAX) < 0)
        snprintf(out, RD_MAX, "/");
    return out;
}

static void login_page(struct hconn *hc, int code, const char *msg, const char *rd)
{
    char esc_rd[RD_MAX * 2], to[RD_MAX], note[300], links[8192];
    char body[4096 + RD_MAX * 2 + sizeof(links)];
    html_escape(safe_rd(rd, to), esc_rd, sizeof(esc_rd));
    snprintf(note, sizeof(note), msg ? "<p style=\"color:#a00\">%s</p>" : "%s", msg ? msg : "");
    /* "Sign in with NAME" per OpenID provider (node/oidc) */
    oidc_login_links(hc->px->o.oidc, to, links, sizeof(links));
    snprintf(body, sizeof(body), LOGIN_FORM, note, esc_rd, links);
    /* The form is not to be framed by another site (clickjacking the password field). */
    respond(hc, code,
            "X-Frame-Options: DENY\r\nContent-Security-Policy: frame-ancestors 'none'\r\n", body,
            false);
}

static void set_session(struct hconn *hc, const char *cookie, uint64_t ttl_ms, const char *to)
{
    char hdr[AUTH_TOKEN_MAX + RD_MAX + 200], loc[RD_MAX];
    snprintf(hdr, sizeof(hdr),
             "Set-Cookie: " HTTPPROXY_COOKIE "=%s; Path=/; HttpOnly; SameSite=Lax; "
             "Max-Age=%llu%s\r\nLocation: %s\r\n",
             cookie, (unsigned long long)(ttl_ms / 1000), hc->tls ? "; Secure" : "",
             safe_rd(to, loc));
    respond(hc, 302, hdr, "", false);
}

/* ---- login attempts, counted mesh-wide (node/auth/loginshare.h) ---------------------------- */

static auth_ratelimit_t *limiter(httpproxy_t *px, enum loginshare_kind kind)
{
    return kind == LOGINSHARE_USER ? px->rl_user : px->rl_ip;
}

/* Takes one attempt from key's bucket; an admitted one is told to the mesh. */
static bool login_attempt(httpproxy_t *px, enum loginshare_kind kind, const char *key)
{
    auth_ratelimit_t *rl = limiter(px, kind);
    uint64_t h = auth_ratelimit_hash(rl, key), now = clock_mono_ms();
    if (!auth_ratelimit_take(rl, h, now))
        return false;
    if (px->logins) {
        uint64_t due = loginshare_note(px->logins, kind, h, now);
        double in = due > now ? (double)(due - now) / 1000.0 : 0.0;
        /* sooner than the timer would: a repeat or the forgetting can wait, this cannot */
        if (!ev_is_active(&px->logins_timer) ||
            ev_timer_remaining(px->o.loop, &px->logins_timer) > in) {
            ev_timer_stop(px->o.loop, &px->logins_timer); /* an active timer cannot be set */
            ev_timer_set(&px->logins_timer, in, 0.0);
            ev_timer_start(px->o.loop, &px->logins_timer);
        }
    }
    return true;
}

static void on_logins_timer(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    httpproxy_t *px = t->data;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint64_t now = clock_mono_ms(), next;
    if (loginshare_tick(px->logins, now, &pk, &next) == 1) {
        int rc = meshnode_broadcast_logins(px->o.mesh, (const uint8_t *)sb.data, sb.size);
        if (rc)
            log_warn("http: cannot share login attempt counts with the mesh: %s", strerror(-rc));
    }
    msgpack_sbuffer_destroy(&sb);
    ev_timer_stop(loop, t);
    if (next != UINT64_MAX) {
        ev_timer_set(t, (double)(next - now) / 1000.0, 0.0);
        ev_timer_start(loop, t);
    }
}

static void charge_login(void *ctx, enum loginshare_kind kind, uint64_t key, uint64_t n)
{
    httpproxy_t *px = ctx;
    auth_ratelimit_charge(limiter(px, kind), key, n, clock_mono_ms());
}

/* Another PoP's summary: its admitted attempts are charged here (meshnode_logins_fn). */
static int on_logins(void *ctx, const uint8_t *body, size_t len)
{
    httpproxy_t *px = ctx;
    int rc = loginshare_receive(px->logins, body, len, clock_mono_ms(), charge_login, px);
    if (rc == 1 && !ev_is_active(&px->logins_timer)) { /* to forget the counters in time */
        ev_timer_set(&px->logins_timer, LOGINSHARE_RESEND_MS / 1000.0, 0.0);
        ev_timer_start(px->o.loop, &px->logins_timer);
    }
    return rc;
}

/* Sessions, share links: with the key hierarchy (opts.keys) signed by this PoP's own key
 * and checked against the signer's certificate; without, by the mesh key. */
static int make_cookie(httpproxy_t *px, const char *user, uint64_t epoch, uint64_t now,
                       uint64_t ttl, const char *scope, char *out, size_t outlen, const char **why)
{
    *why = "cannot make a session";
    if (px->o.keys)
        return auth_cookie_make(px->o.keys, user, epoch, now, ttl, scope, out, outlen, why);
    return auth_session_make(px->o.meshkey, user, epoch, now, ttl, scope, out, outlen);
}

/* The page for a session this PoP could not make: -EPERM means its certificate does not
 * let it sign sessions (a verify-only PoP). */
static void cookie_error(struct hconn *hc, int rc, const char *why)
{
    if (rc == -EPERM) {
        log_info("http: cannot sign a session here: %s", why);
        error_page(hc, 403,
                   "This PoP does not sign sessions; sign in through another PoP of the mesh.");
        return;
    }
    error_page(hc, 500, "cannot make a session");
}

/* The limiters hash keys under a key derived from the mesh secret: the same hash names the same
 * user or address at every PoP, and none but the mesh's PoPs can compute it. */
#define LOGINS_KDF_CONTEXT "popmlgrl"
#define LOGINS_KDF_SUBKEY  1
_Static_assert(sizeof(LOGINS_KDF_CONTEXT) - 1 == crypto_kdf_CONTEXTBYTES, "KDF context is 8 bytes");

static void logins_start(httpproxy_t *px)
{
    uint8_t k[AUTH_RL_HASH_KEY_BYTES];
    _Static_assert(AUTH_RL_HASH_KEY_BYTES >= crypto_kdf_BYTES_MIN, "a KDF subkey is >= 16 bytes");
    /* The first 32 bytes of libsodium's Ed25519 secret key are the seed: the mesh's secret. */
    crypto_kdf_derive_from_key(k, sizeof(k), LOGINS_KDF_SUBKEY, LOGINS_KDF_CONTEXT,
                               px->o.meshkey->sk);
    auth_ratelimit_set_hash_key(px->rl_ip, k);
    auth_ratelimit_set_hash_key(px->rl_user, k);
    sodium_memzero(k, sizeof(k));
    if (!px->o.mesh)
        return;
    px->logins = loginshare_new(px->o.self_id, clock_wall_ms());
    ev_init(&px->logins_timer, on_logins_timer);
    px->logins_timer.data = px;
    meshnode_set_logins_sink(px->o.mesh, on_logins, px);
}

static void logins_stop(httpproxy_t *px)
{
    if (!px->logins)
        return;
    meshnode_set_logins_sink(px->o.mesh, NULL, NULL);
    ev_timer_stop(px->o.loop, &px->logins_timer);
    loginshare_destroy(&px->logins);
}

/* ---- sign-in with an OpenID provider (node/oidc/oidc.h) ------------------------------------ */

#define OIDC_COOKIE_ATTRS "; Path=/.popmesh/oidc/; HttpOnly; SameSite=Lax"

static void on_oidc_done(void *ctx, const oidc_result_t *r)
{
    struct hconn *hc = ctx;
    httpproxy_t *px = hc->px;
    hc->oidc_job = NULL;
    const char *sec = hc->tls ? "; Secure" : "";
    if (r->status != 302) {
        req_log_deny(hc, r->error);
        error_page(hc, r->status, r->error);
    } else if (r->cookie[0]) { /* started: to the provider, with the sealed state */
        char *hdr = xmalloc(OIDC_COOKIE_MAX + OIDC_LOCATION_MAX + 256);
        snprintf(hdr, OIDC_COOKIE_MAX + OIDC_LOCATION_MAX + 256,
                 "Set-Cookie: " OIDC_STATE_COOKIE "=%s" OIDC_COOKIE_ATTRS "; Max-Age=%llu%s\r\n"
                 "Location: %s\r\n",
                 r->cookie, (unsigned long long)(OIDC_STATE_TTL_MS / 1000), sec, r->location);
        respond(hc, 302, hdr, "", false);
        free(hdr);
    } else { /* finished: the same session a password sign-in makes */
        char cookie[AUTH_TOKEN_MAX + 1], loc[RD_MAX];
        char hdr[AUTH_TOKEN_MAX + RD_MAX + 400];
        const char *why;
        int mrc = make_cookie(px, r->user.name, r->user.session_epoch, clock_wall_ms(),
                              HTTPPROXY_SESSION_TTL_MS, "", cookie, sizeof(cookie), &why);
        if (mrc) {
            cookie_error(hc, mrc, why);
        } else {
            snprintf(hc->user, sizeof(hc->user), "%s", r->user.name);
            hc->req_decision = ACCESSLOG_PROVIDER;
            snprintf(hdr, sizeof(hdr),
                     "Set-Cookie: " OIDC_STATE_COOKIE "=" OIDC_COOKIE_ATTRS "; Max-Age=0%s\r\n"
                     "Set-Cookie: " HTTPPROXY_COOKIE "=%s; Path=/; HttpOnly; SameSite=Lax; "
                     "Max-Age=%llu%s\r\nLocation: %s\r\n",
                     sec, cookie, (unsigned long long)(HTTPPROXY_SESSION_TTL_MS / 1000), sec,
                     safe_rd(r->location, loc));
            respond(hc, 302, hdr, "", false);
            sodium_memzero(cookie, sizeof(cookie));
        }
    }
    if (hc->state == H_LOCAL)
        hc->state = H_HEAD;
    if (out_flush(hc) && hc->state == H_HEAD && hc->in_len)
        process_input(hc);
}

/* /.popmesh/oidc/start?idp=NAME&rd=PATH and /.popmesh/oidc/callback?code=..&state=..: each
 * answered when its job comes back from the worker (on_oidc_done). */
static void oidc_local(struct hconn *hc, const char *what, size_t wl, const char *query)
{
    httpproxy_t *px = hc->px;
    const char *why = "sign-in with an identity provider is not set up here";
    if (strcmp(hc->method, "GET")) {
        error_page(hc, 405, "use GET");
        return;
    }
    if (wl == 5 && !strncmp(what, "start", 5)) {
        char idp[NODECFG_NAME_MAX + 1] = "", rd[1024] = "/", to[RD_MAX], uri[600];
        form_get(query, strlen(query), "idp", idp, sizeof(idp));
        form_get(query, strlen(query), "rd", rd, sizeof(rd));
        /* The provider sends the browser back to this host: any PoP serving it can finish. */
        snprintf(uri, sizeof(uri), "%s://%s/.popmesh/oidc/callback", hc->tls ? "https" : "http",
                 hc->host);
        if (px->o.oidc && idp[0])
            hc->oidc_job = oidc_start(px->o.oidc, idp, safe_rd(rd, to), uri, on_oidc_done, hc,
                                      &why);
        if (!hc->oidc_job)
            error_page(hc, px->o.oidc ? 404 : 503, why);
        return;
    }
    if (wl == 8 && !strncmp(what, "callback", 8)) {
        if (px->o.oidc)
            hc->oidc_job = oidc_finish(px->o.oidc, query, strlen(query),
                                       hc->oidc_cookie_len ? hc->oidc_cookie : NULL,
                                       hc->oidc_cookie_len, on_oidc_done, hc, &why);
        if (!hc->oidc_job) {
            char ec[LOG_ESC_MAX];
            log_info("http: sign-in callback from %s refused: %s", hc_client(hc),
                     log_escs(ec, sizeof(ec), why));
            req_log_deny(hc, "provider sign-in refused");
            error_page(hc, 403, why);
        }
        return;
    }
    error_page(hc, 404, "no such sign-in page");
}

static void handle_local(struct hconn *hc)
{
    httpproxy_t *px = hc->px;
    px->st.local++;
    const char *q = strchr(hc->target, '?');
    size_t plen = q ? (size_t)(q - hc->target) : strlen(hc->target);
    const char *query = q ? q + 1 : "";
    uint64_t now = clock_wall_ms();
    if (plen == 15 && !strncmp(hc->target, "/.popmesh/login", 15)) {
        char rd[1024] = "/";
        if (!strcmp(hc->method, "GET") || !strcmp(hc->method, "HEAD")) {
            form_get(query, strlen(query), "rd", rd, sizeof(rd));
            login_page(hc, 200, NULL, rd);
            return;
        }
        if (strcmp(hc->method, "POST")) {
            error_page(hc, 405, "use GET or POST");
            return;
        }
        if (hc->local_too_big) {
            error_page(hc, 413, "the login form is too large");
            return;
        }
        /* A form posted from another site's page (login CSRF: signing the victim in as the
         * attacker) is refused; so is one framed by it, by the page's own headers. */
        if (hc->cross_site) {
            req_log_deny(hc, "cross-site sign-in");
            log_info("http: cross-site sign-in from %s refused", hc_client(hc));
            error_page(hc, 403, "sign in from this site's own login page");
            return;
        }
        char user[NODECFG_NAME_MAX + 1] = "", pw[AUTH_PASSWORD_MAX + 1] = "";
        form_get(hc->local_body, hc->local_len, "rd", rd, sizeof(rd));
        bool parsed = form_get(hc->local_body, hc->local_len, "username", user, sizeof(user)) &&
                      form_get(hc->local_body, hc->local_len, "password", pw, sizeof(pw));
        char k1[NETADDR_HOST_MAX + 8], k2[128];
        hc_client(hc);
        snprintf(k1, sizeof(k1), "ip:%s", hc->client_ip);
        snprintf(k2, sizeof(k2), "user:%s", user);
        if (!login_attempt(px, LOGINSHARE_ADDR, k1) ||
            (parsed && !login_attempt(px, LOGINSHARE_USER, k2))) {
            char eu[LOG_ESC_MAX];
            px->st.login_limited++;
            snprintf(hc->user, sizeof(hc->user), "%s", user);
            req_log_deny(hc, "sign-in rate-limited");
            log_warn("http: login from %s for '%s' rate-limited", hc_client(hc),
                     log_escs(eu, sizeof(eu), user));
            login_page(hc, 429, "Too many attempts: wait a little and try again.", rd);
            sodium_memzero(pw, sizeof(pw));
            return;
        }
        if (px->queued >= HTTPPROXY_PW_QUEUE) {
            sodium_memzero(pw, sizeof(pw));
            error_page(hc, 503, "too many sign-ins in progress: try again in a moment");
            return;
        }
        /* The check runs on a worker; an unknown user is checked against a dummy hash, so
         * the answer takes as long whether the user exists or not. */
        struct pwjob *job = xcalloc(1, sizeof(*job));
        job->hc = hc;
        job->user_ok = parsed && auth_user_get(px->o.store, user, &job->u) == 0 && !job->u.removed;
        snprintf(job->pwhash, sizeof(job->pwhash), "%s",
                 job->user_ok ? job->u.pwhash : px->dummy_hash);
        job->pwlen = strlen(pw);
        memcpy(job->pw, pw, job->pwlen);
        sodium_memzero(pw, sizeof(pw));
        snprintf(job->rd, sizeof(job->rd), "%s", rd);
        form_get(hc->local_body, hc->local_len, "code", job->code, sizeof(job->code));
        snprintf(hc->user, sizeof(hc->user), "%s", user);
        hc->pw_job = job;
        pthread_mutex_lock(&px->mu);
        if (px->todo_tail)
            px->todo_tail->next = job;
        else
            px->todo = job;
        px->todo_tail = job;
        px->queued++;
        pthread_cond_signal(&px->cv);
        pthread_mutex_unlock(&px->mu);
        return;
    }
    if (plen > 14 && !strncmp(hc->target, "/.popmesh/oidc/", 15)) {
        oidc_local(hc, hc->target + 15, plen - 15, query);
        return;
    }
    if (plen == 16 && !strncmp(hc->target, "/.popmesh/logout", 16)) {
        if (hc->cross_site) {
            error_page(hc, 403, "sign out from this site's own pages");
            return;
        }
        respond(hc, 302,
                hc->tls ? "Set-Cookie: " HTTPPROXY_COOKIE
                          "=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure\r\n"
                          "Location: /.popmesh/login\r\n"
                        : "Set-Cookie: " HTTPPROXY_COOKIE
                          "=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0\r\n"
                          "Location: /.popmesh/login\r\n",
                "", false);
        return;
    }
    if (plen == 15 && !strncmp(hc->target, "/.popmesh/share", 15)) {
        char tok[AUTH_TOKEN_MAX + 1];
        auth_share_t sh;
        const char *why = "no token";
        if (!form_get(query, strlen(query), "t", tok, sizeof(tok)) ||
            (px->o.keys ? auth_link_verify(px->o.keys, tok, strlen(tok), now, &sh, &why)
                        : auth_share_verify(px->o.meshkey->pk, tok, strlen(tok), now, &sh, &why))) {
            req_log_deny(hc, why);
            error_page(hc, 403, why);
            return;
        }
        char cookie[AUTH_TOKEN_MAX + 1];
        uint64_t ttl = sh.expires_ms > now ? sh.expires_ms - now : 0;
        int mrc = px->o.keys ? auth_cookie_from_share(px->o.keys, &sh, now, ttl, cookie,
                                                      sizeof(cookie), &why)
                             : auth_session_from_share(px->o.meshkey, &sh, now, ttl, cookie,
                                                       sizeof(cookie));
        if (mrc) {
            cookie_error(hc, mrc, why);
            return;
        }
        hc->referrer_policy = "no-referrer";
        hc->req_decision = ACCESSLOG_SHARE;
        snprintf(hc->req_resource, sizeof(hc->req_resource), "%s", sh.resource);
        set_session(hc, cookie, ttl, "/");
        return;
    }
    if (plen == 19 && !strncmp(hc->target, "/.popmesh/jwks.json", 19)) {
        /* The keys that verify X-Popmesh-Identity at every PoP (idjwt.h): public, cacheable
         * briefly (a new PoP's key appears, a removed one's goes). */
        char *doc;
        size_t dl;
        if (idjwt_jwks(px->o.store, &doc, &dl)) {
            error_page(hc, 503, "the key set cannot be read here");
            return;
        }
        out_printf(hc,
                   "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                   "Cache-Control: max-age=60\r\n\r\n",
                   dl);
        if (strcmp(hc->method, "HEAD"))
            out_append(hc, doc, dl);
        free(doc);
        count_response(hc, 200);
        return;
    }
    error_page(hc, 404, "no such popmesh page");
}

/* ---- requests --------------------------------------------------------------------------- */

/* auth_session_check with a cache of verified signatures. */
static int session_check(httpproxy_t *px, const char *cookie, size_t len, const char *resource,
                         auth_user_t *u, const char **why)
{
    uint8_t h[crypto_shorthash_BYTES];
    crypto_shorthash(h, (const uint8_t *)cookie, len, px->scache_key);
    uint32_t slot;
    memcpy(&slot, h, sizeof(slot));
    slot %= HTTPPROXY_SESSION_CACHE;
    uint64_t now = clock_wall_ms();
    if (!px->scache[slot].used || px->scache[slot].len != len ||
        memcmp(px->scache[slot].cookie, cookie, len)) {
        auth_session_t c;
        if (len > AUTH_TOKEN_MAX ||
            (px->o.keys ? auth_cookie_verify(px->o.keys, cookie, len, now, &c, why)
                        : auth_session_verify(px->o.meshkey->pk, cookie, len, now, &c, why)))
            return -EACCES;
        memcpy(px->scache[slot].cookie, cookie, len);
        px->scache[slot].len = len;
        px->scache[slot].claims = c;
        px->scache[slot].used = true;
        px->scache[slot].checked_ms = 0;
    }
    /* The user record (removal, session epoch) is re-read at most every
     * HTTPPROXY_USER_RECHECK_MS per cookie; expiry and scope every time. */
    uint64_t mono = clock_mono_ms();
    const auth_session_t *c = &px->scache[slot].claims;
    if (px->scache[slot].checked_ms &&
        mono - px->scache[slot].checked_ms < HTTPPROXY_USER_RECHECK_MS && now < c->expires_ms &&
        (!c->scope[0] || !strcmp(c->scope, resource))) {
        *u = px->scache[slot].user;
        return 0;
    }
    /* With the user record, the signer: a removed PoP's sessions stop within a recheck. */
    int rc = px->o.keys ? auth_cookie_signer_check(px->o.keys, c, now, why) : 0;
    if (rc == 0)
        rc = auth_session_claims_check(px->o.store, c, now, resource, u, why);
    px->scache[slot].checked_ms = 0;
    if (rc == 0) {
        px->scache[slot].user = *u;
        px->scache[slot].checked_ms = mono ? mono : 1;
    }
    return rc;
}

static bool user_allowed(const resource_t *r, const auth_user_t *u)
{
    if (!r->nallow_users && !r->nallow_groups)
        return true;
    for (unsigned i = 0; i < r->nallow_users; i++)
        if (!strcmp(r->allow_users[i], u->name))
            return true;
    for (unsigned i = 0; i < r->nallow_groups; i++)
        for (unsigned k = 0; k < u->ngroups; k++)
            if (!strcmp(r->allow_groups[i], u->groups[k]))
                return true;
    return false;
}

/* Request headers the application must not get from the client: what popmesh says on the
 * client's behalf (identity, address, the original request, in every spelling CGI and WSGI
 * read the same way) and the API key popmesh consumed (the application could replay it
 * against every other resource). */
static bool req_drop(const http_header_t *x)
{
    if (httphdr_reserved_request_name(x->name, x->name_len))
        return true;
    return httphdr_name_is(x->name, x->name_len, "authorization") &&
           httphdr_is_apikey_auth(x->value, x->value_len);
}

/* Whether the request asks for a WebSocket: one Upgrade header, "websocket". */
static bool wants_websocket(const http_head_t *h)
{
    int n = 0;
    for (size_t i = 0; i < h->nheaders; i++)
        if (httphdr_name_is(h->headers[i].name, h->headers[i].name_len, "upgrade"))
            n++;
    return h->upgrade && n == 1 && h->upgrade_proto_len == 9 &&
           !strncasecmp(h->upgrade_proto, "websocket", 9);
}

/* ---- one request head: each step decides one thing, or answers the client ----------------
 *
 * req_on_head runs them in order: request_begin (the request's own state; targets and Host
 * headers too long to keep), local_request (/.popmesh/ is answered here), route_to_resource
 * (which resource, by Host and canonical path), authorize (the resource's rules, then who the
 * user is and whether they may), websocket_key (whether this is a WebSocket handshake),
 * rewrite_request_head (what the application gets) and choose_upstream (which stream carries
 * it). A step that answers the client returns a value saying so, and the request ends there. */

/* Resets the connection's per-request state and keeps what answers and logs need. 0 to go on;
 * -1 (414: the connection closes, its body unread) or 1 (400) once answered. */
static int request_begin(struct hconn *hc, const http_head_t *h)
{
    hc->px->st.requests++;
    req_log_begin(hc, true);
    hc->rs = NULL;
    hc->rs_answered = false;
    hc->req_t0 = ev_now(hc->px->o.loop);
    hc->partial = false;
    hc->keep_alive = h->keep_alive;
    hc->head_req = h->method == HTTP_HEAD;
    hc->http10 = h->http_minor == 0;
    hc->local_len = 0;
    hc->local_too_big = false;
    hc->cross_site = false;
    hc->referrer_policy = "same-origin";
    hc->user[0] = '\0';
    hc->hsts_s = 0;
    snprintf(hc->method, sizeof(hc->method), "%s", h->method_name);
    snprintf(hc->target, sizeof(hc->target), "%.*s", (int)h->target_len, h->target);
    snprintf(hc->host, sizeof(hc->host), "%.*s", h->host ? (int)h->host_len : 0,
             h->host ? h->host : "");
    if (h->target_len >= sizeof(hc->target)) {
        /* The body (if any) is not read: the connection closes after the answer. */
        error_page(hc, 414, "the request target is too long");
        return -1;
    }
    if (h->host_len >= sizeof(hc->host)) {
        error_page(hc, 400, "the Host header is too long");
        return 1;
    }
    return 0;
}

/* Whether the request is for the PoP itself (/.popmesh/ on any host): its body is collected
 * and handle_local answers it. */
static bool local_request(struct hconn *hc, const http_head_t *h)
{
    const char *q = memchr(h->target, '?', h->target_len);
    size_t plen = q ? (size_t)(q - h->target) : h->target_len;
    if (plen < 10 || memcmp(h->target, "/.popmesh/", 10))
        return false;
    hc->state = H_LOCAL;
    hc->cross_site = httphdr_cross_site(h);
    /* A provider's callback carries the sign-in's state cookie (node/oidc); one value only. */
    const char *ov;
    size_t ol;
    hc->oidc_cookie_len = 0;
    if (httphdr_cookie_find(h, OIDC_STATE_COOKIE, &ov, &ol) == 1 && ol <= OIDC_COOKIE_MAX) {
        memcpy(hc->oidc_cookie, ov, ol);
        hc->oidc_cookie_len = ol;
    }
    if (hc->cross_site) {
        const http_header_t *o = header(h, "Origin"), *f = header(h, "Sec-Fetch-Site");
        char eh[LOG_ESC_MAX], et[LOG_ESC_MAX], eo[LOG_ESC_MAX], ef[LOG_ESC_MAX];
        log_debug("http: %s %s%s from %s: cross-site (Origin '%s', Sec-Fetch-Site '%s')",
                  hc->method, log_escs(eh, sizeof(eh), hc->host),
                  log_escs(et, sizeof(et), hc->target), hc_client(hc),
                  o ? log_esc(eo, sizeof(eo), o->value, o->value_len) : "",
                  f ? log_esc(ef, sizeof(ef), f->value, f->value_len) : "");
    }
    return true;
}

/* The resource that serves the request (its index in px->res), by Host and the canonical path
 * (httppath.h), which is left in path for the rules. -1 once answered (400, 404). */
static int route_to_resource(struct hconn *hc, const http_head_t *h, char *path, size_t cap)
{
    httpproxy_t *px = hc->px;
    if (httppath_normalize(h->target, h->target_len, path, cap) < 0) {
        error_page(hc, 400, "the request path is not a valid absolute path");
        return -1;
    }
    int idx =
        resource_match_http(px->res, px->nres, hc->host, strlen(hc->host), path, strlen(path));
    if (idx < 0)
        error_page(hc, 404, "no application is published at this address");
    return idx;
}

enum authz {
    AUTHZ_ANSWERED,  /* refused (403, 401, a redirect to the login page): the request ends */
    AUTHZ_ANONYMOUS, /* goes on without a user: an open resource, or an allow rule matched */
    AUTHZ_USER,      /* goes on as *u */
};

/* What the user record says of the person: an email ("" = none) and a display name (the user
 * name when it has none). */
static const char *user_email(const auth_user_t *u)
{
    return u->email;
}

static const char *user_display_name(const auth_user_t *u)
{
    return u->display_name[0] ? u->display_name : u->name;
}

/* A resource with require_2fa, for a local user (a provider's users, IDP:SUBJECT, are the
 * provider's to check): a session of a user who has a second factor (enabling it revoked every
 * earlier session, so a live session of such a user passed a code), never an API key. false
 * once answered. */
static bool second_factor_session(struct hconn *hc, const auth_user_t *u)
{
    totp_rec_t t;
    if (auth_user_is_external(u->name))
        return true;
    snprintf(hc->user, sizeof(hc->user), "%s", u->name);
    if (hc->req_decision == ACCESSLOG_APIKEY) {
        hc->px->st.denied++;
        req_log_deny(hc, "an API key on a resource that requires a second factor");
        error_page(hc, 403,
                   "this application requires a two-factor sign-in: API keys are not accepted");
        return false;
    }
    int rc = totprec_get(hc->px->o.store, u->name, &t);
    if (rc == 0)
        return true;
    if (rc != -ENOENT) {
        error_page(hc, 503, "your account's second factor cannot be checked here: try again");
        return false;
    }
    hc->px->st.denied++;
    req_log_deny(hc, "no second factor, and the resource requires one");
    error_page(hc, 403,
               "this application requires two-factor sign-in and your account has no second "
               "factor: ask an administrator to enrol one (meshctl user totp enable)");
    return false;
}

/* Who may make this request: the resource's rules first (deny: 403; allow: no login), then,
 * for `auth login`, a session cookie or an API key, and the resource's allowed users and
 * groups. */
static enum authz authorize(struct hconn *hc, const http_head_t *h, int idx, const char *path,
                            auth_user_t *u)
{
    httpproxy_t *px = hc->px;
    const resource_t *res = &px->res[idx];
    char eh[LOG_ESC_MAX], et[LOG_ESC_MAX];
    enum auth_decision dec =
        auth_rules_match(px->rules[idx], px->nrules[idx], &hc->caddr, path, NULL);
    if (dec == AUTH_DECISION_DENY) {
        px->st.denied++;
        req_log_deny(hc, "a deny rule matched");
        error_page(hc, 403, "access to this application is denied from here");
        return AUTHZ_ANSWERED;
    }
    if (res->auth != RESOURCE_AUTH_LOGIN || dec == AUTH_DECISION_ALLOW) {
        hc->req_decision = dec == AUTH_DECISION_ALLOW ? ACCESSLOG_RULE : ACCESSLOG_OPEN;
        return AUTHZ_ANONYMOUS;
    }
    const char *v, *why = "no session";
    size_t vl;
    const http_header_t *az = header(h, "Authorization");
    /* Which session counts when several popmesh_session cookies arrive: none. popd sets one
     * host-only cookie, so a second one was set by someone else (another site on a parent
     * domain): taking "the first" or "any valid one" would let that site choose who the user
     * is here. */
    int ncookie = httphdr_cookie_find(h, HTTPPROXY_COOKIE, &v, &vl);
    if (ncookie > 1) {
        log_warn("http: %s %s%s from %s: more than one " HTTPPROXY_COOKIE " cookie: refused",
                 hc->method, log_escs(eh, sizeof(eh), hc->host),
                 log_escs(et, sizeof(et), hc->target), hc_client(hc));
        req_log_deny(hc, "more than one session cookie");
        error_page(hc, 400,
                   "more than one popmesh session cookie was sent (another site on a parent "
                   "domain may have set one): clear this site's cookies and sign in again");
        return AUTHZ_ANSWERED;
    }
    bool have_user = ncookie == 1 && session_check(px, v, vl, res->name, u, &why) == 0;
    hc->req_decision = !have_user ? ACCESSLOG_NO_DECISION
                       : u->name[0] ? ACCESSLOG_SESSION
                                    : ACCESSLOG_SHARE; /* a share session has no user */
    if (!have_user && az && az->value_len > 7 && !strncasecmp(az->value, "Bearer ", 7)) {
        have_user = auth_apikey_check(px->o.store, az->value + 7, az->value_len - 7,
                                      clock_wall_ms(), u, &why) == 0;
        hc->req_decision = ACCESSLOG_APIKEY;
    }
    if (!have_user) {
        px->st.unauthenticated++;
        req_log_deny(hc, why);
        log_debug("http: %s %s%s from %s: not authenticated: %s", hc->method,
                  log_escs(eh, sizeof(eh), hc->host), log_escs(et, sizeof(et), hc->target),
                  hc_client(hc), why);
        /* Browsers go to the login page; API clients (they sent credentials, or did not GET)
         * get 401. */
        if ((h->method == HTTP_GET || h->method == HTTP_HEAD) && !az) {
            char rd[1100], loc[1300];
            url_encode(hc->target, rd, sizeof(rd));
            snprintf(loc, sizeof(loc), "Location: /.popmesh/login?rd=%s\r\n", rd);
            respond(hc, 302, loc, "", false);
        } else {
            error_page(hc, 401, "sign in first (a session cookie or an API key)");
        }
        return AUTHZ_ANSWERED;
    }
    if (u->name[0] && !user_allowed(res, u)) {
        px->st.denied++;
        snprintf(hc->user, sizeof(hc->user), "%s", u->name);
        req_log_deny(hc, "the user may not use this resource");
        error_page(hc, 403, "your account may not use this application");
        return AUTHZ_ANSWERED;
    }
    if (res->require_2fa && u->name[0] && !second_factor_session(hc, u))
        return AUTHZ_ANSWERED;
    snprintf(hc->user, sizeof(hc->user), "%s", u->name);
    return AUTHZ_USER;
}

/* Whether the request is a WebSocket handshake, and its Sec-WebSocket-Key in *key (NULL if
 * not). Only WebSocket may switch protocols, and only as a well-formed handshake: the 101 is
 * checked against its key (resp_on_head). Another Upgrade (h2c...) is dropped with the
 * Connection header, so the request goes on as plain HTTP. -1 once answered (400). */
static int websocket_key(struct hconn *hc, const http_head_t *h, const http_header_t **key)
{
    *key = NULL;
    if (!wants_websocket(h))
        return 0;
    int nkey = 0;
    for (size_t i = 0; i < h->nheaders; i++)
        if (httphdr_name_is(h->headers[i].name, h->headers[i].name_len, "sec-websocket-key")) {
            *key = &h->headers[i];
            nkey++;
        }
    if (h->method != HTTP_GET || nkey != 1 ||
        !httphdr_ws_key_valid((*key)->value, (*key)->value_len)) {
        error_page(hc, 400, "a WebSocket request needs GET and one valid Sec-WebSocket-Key");
        return -1;
    }
    return 0;
}

/* Remote-Name, Remote-Email (when the account has one) and X-Popmesh-Identity, the signed
 * form of them all (idjwt.h), for resource (its audience). The token is borrowed from
 * the signer's cache until its next call, which comes after this head is serialised. */
static void identity_headers(struct hconn *hc, const auth_user_t *u, const char *resource,
                             http_header_t *extra, size_t *nextra)
{
    const char *email = user_email(u), *name = user_display_name(u);
    extra[(*nextra)++] = (http_header_t){"Remote-Name", 11, name, strlen(name)};
    if (email[0])
        extra[(*nextra)++] = (http_header_t){"Remote-Email", 12, email, strlen(email)};
    if (!hc->px->o.idjwt)
        return;
    const char *groups[AUTH_GROUPS_MAX];
    for (unsigned i = 0; i < u->ngroups && i < AUTH_GROUPS_MAX; i++)
        groups[i] = u->groups[i];
    idjwt_claims_t c = {.user = u->name,
                        .groups = groups,
                        .ngroups = u->ngroups,
                        .email = email,
                        .name = name,
                        .resource = resource};
    const char *tok;
    size_t tl;
    if (idjwt_token(hc->px->o.idjwt, &c, clock_wall_ms() / 1000, &tok, &tl) == 0)
        extra[(*nextra)++] = (http_header_t){"X-Popmesh-Identity", 18, tok, tl};
}

/* The request head as the application gets it, into head (cap bytes): hop-by-hop and
 * identity headers dropped; X-Forwarded-*, Forwarded and X-Real-IP set by us; Remote-User and
 * Remote-Groups for a user (u, or NULL), with the rest of its identity for resource (the
 * JWT's audience); the client's cookies but our session token. Its length, or -1 once answered
 * (431, 400). */
static ssize_t rewrite_request_head(struct hconn *hc, const http_head_t *h, const auth_user_t *u,
                                    const resource_t *res, bool ws, char *head, size_t cap)
{
    const char *resource = res->name;
    /* The resource's request rules (httprules.h): after the proxy's own drops and headers,
     * which no rule may name (resource_check). */
    httprules_out_t rules;
    httprules_request(res, &rules);
    const char *drop[1 + HTTPRULES_DROP_MAX] = {"Cookie"};
    size_t ndrop = 1;
    for (size_t i = 0; i < rules.ndrop; i++)
        drop[ndrop++] = rules.drop[i];
    http_head_t stripped;
    char target[sizeof(hc->target)];
    if (res->strip_prefix[0]) {
        ssize_t tl = httprules_strip_prefix(h->target, h->target_len, res->strip_prefix, target,
                                            sizeof(target));
        if (tl < 0) { /* one byte more than the target: request_begin bounds it below that */
            error_page(hc, 414, "the request target is too long");
            return -1;
        }
        stripped = *h;
        stripped.target = target;
        stripped.target_len = (size_t)tl;
        h = &stripped;
    }
    char groups[AUTH_GROUPS_MAX * (NODECFG_NAME_MAX + 1)], fwd[400];
    hc_client(hc);
    const char *ipv = hc->client_ip;
    /* RFC 7239: an IPv6 address is quoted and bracketed; the host is always quoted. */
    const char *proto = hc->tls ? "https" : "http";
    int fl = snprintf(fwd, sizeof(fwd), "for=%s%s%s;host=\"%s\";proto=%s",
                      hc->client_v6 ? "\"[" : "", ipv, hc->client_v6 ? "]\"" : "", hc->host, proto);
    http_header_t extra[12 + HTTPRULES_EXTRA_MAX] = {
        {"X-Forwarded-For", 15, ipv, strlen(ipv)},
        {"X-Forwarded-Proto", 17, proto, strlen(proto)},
        {"X-Forwarded-Host", 16, hc->host, strlen(hc->host)},
        {"X-Real-IP", 9, ipv, strlen(ipv)},
        {"Forwarded", 9, fwd, fl > 0 && (size_t)fl < sizeof(fwd) ? (size_t)fl : 0},
    };
    size_t nextra = 5;
    /* The app's own cookies go on, whole; the PoP's session token does not (the app has no
     * use for it, and must not be able to replay it). They cannot outgrow the head they came
     * in, so this buffer always holds them. */
    char cookies[HTTP_DEFAULT_MAX_HEADER_BYTES];
    ssize_t cl = httphdr_cookie_without(h, HTTPPROXY_COOKIE, cookies, sizeof(cookies));
    if (cl < 0) {
        error_page(hc, 431, "the request's cookies are too large to forward");
        return -1;
    }
    if (u && u->name[0]) {
        extra[nextra++] = (http_header_t){"Remote-User", 11, u->name, strlen(u->name)};
        size_t gl = 0;
        groups[0] = '\0';
        for (unsigned i = 0; i < u->ngroups; i++)
            gl += (size_t)snprintf(groups + gl, sizeof(groups) - gl, "%s%s", i ? "," : "",
                                   u->groups[i]);
        if (u->ngroups)
            extra[nextra++] = (http_header_t){"Remote-Groups", 13, groups, gl};
        identity_headers(hc, u, resource, extra, &nextra);
    }
    if (cl > 0)
        extra[nextra++] = (http_header_t){"Cookie", 6, cookies, (size_t)cl};
    for (size_t i = 0; i < rules.nextra; i++)
        extra[nextra++] = rules.extra[i];
    http_head_rewrite_t rw = {.drop = drop,
                              .ndrop = ndrop,
                              .extra = extra,
                              .nextra = nextra,
                              .content_length = h->chunked ? -1 : h->content_length,
                              .chunked = h->chunked,
                              .keep_upgrade = ws,
                              .drop_if = req_drop};
    ssize_t o = http_head_serialize(h, &rw, head, cap);
    if (o < 0) {
        error_page(hc, o == -ENOSPC ? 431 : 400, "the request head cannot be forwarded");
        return -1;
    }
    return o;
}

/* The stream that carries the request: the connection's stream when it goes to the same
 * resource and still works, else a new one. false once answered (503). */
static bool choose_upstream(struct hconn *hc, const resource_t *res)
{
    if (hc->up && (strcmp(hc->up->resource, res->name) || hc->up->gone)) {
        up_release(hc->up);
        hc->up = NULL;
    }
    if (!hc->up && !dataplane_serves(hc->px->o.dp, res)) {
        /* DNS sends its users to the PoPs its labels allow; this one is not among them. */
        error_page(hc, 421,
                   "this application is not served at this PoP (it may cross only PoPs with "
                   "its transit labels)");
        return false;
    }
    if (!hc->up)
        hc->up = up_new(hc, res);
    else if (hc->up->open && hc->req_open) /* the stream carries it on its path */
        hc->req_path = hc->up->h.path;
    if (!hc->up) {
        error_page(hc, 503, "the application's site is not known here");
        return false;
    }
    return true;
}

/* Sends the rewritten head on the chosen stream; the body follows (H_BODY). */
static void send_request_head(struct hconn *hc, const char *head, size_t len,
                              const http_header_t *wskey)
{
    struct upstream *up = hc->up;
    if (up->resp)
        http_reader_expect_head(up->resp, hc->head_req);
    up->saw_response = false;
    up->expecting = true;
    snprintf(up->ws_key, sizeof(up->ws_key), "%.*s", wskey ? (int)wskey->value_len : 0,
             wskey ? wskey->value : "");
    /* After a WebSocket request the request reader has stopped: if the application does not
     * switch, the connection closes after its answer. */
    if (wskey)
        hc->keep_alive = false;
    hc->resp_done = false;
    pend_append(up, head, len);
    hc->state = H_BODY;
    hc->active = ev_now(hc->px->o.loop);
    hc_arm(hc);
    flush_up(up);
}

/* Under TLS, whether the connection may carry a request for its Host: the certificate it was
 * served must cover that name (a client reusing a connection for another name, or asking
 * for one the handshake did not, gets 421 and may retry on a connection of its own). A
 * request without Host (HTTP/1.0) is taken as one for the SNI name. false once answered. */
static bool tls_host_ok(struct hconn *hc)
{
    if (!hc->tls)
        return true;
    if (!hc->host[0])
        snprintf(hc->host, sizeof(hc->host), "%s", tlsconn_sni(hc->tls));
    if (tlsconn_covers(hc->tls, hc->host))
        return true;
    hc->px->st.misdirected++;
    char eh[LOG_ESC_MAX], es[LOG_ESC_MAX];
    log_debug("https: %s asked for host %s on a connection for %s: 421", hc_client(hc),
              log_escs(eh, sizeof(eh), hc->host), log_escs(es, sizeof(es), tlsconn_sni(hc->tls)));
    error_page(hc, 421, "this connection's certificate does not cover that host");
    return false;
}

/* Over plain HTTP, a request for res (canonical path) goes to HTTPS (308, same method and
 * body) when this PoP has an HTTPS listener and a certificate covering the host, unless the
 * resource opted out or the path is an ACME HTTP-01 challenge. true once answered. */
static bool redirect_to_https(struct hconn *hc, const resource_t *res, const char *path)
{
    httpproxy_t *px = hc->px;
    if (hc->tls || !px->https_port || res->no_https_redirect ||
        !strncmp(path, HTTPPROXY_ACME_PREFIX, strlen(HTTPPROXY_ACME_PREFIX)))
        return false;
    char host[TLSCTX_HOST_MAX + 1];
    if (tlsctx_host_name(hc->host, strlen(hc->host), host, sizeof(host)) ||
        !tlsctx_covers(px->o.tls, host))
        return false;
    char port[8] = "", loc[TLSCTX_HOST_MAX + sizeof(hc->target) + 64];
    if (px->https_port != 443)
        snprintf(port, sizeof(port), ":%u", px->https_port);
    /* An absolute-form target (a proxy's request) is replaced by its canonical path. */
    snprintf(loc, sizeof(loc), "Location: https://%s%s%s\r\n", host, port,
             hc->target[0] == '/' ? hc->target : path);
    px->st.redirects_https++;
    respond(hc, 308, loc, "", false);
    return true;
}

/* Whether the target's path is under /.popmesh/ (the PoP's own pages). */
static bool is_local_target(const http_head_t *h)
{
    const char *q = memchr(h->target, '?', h->target_len);
    size_t plen = q ? (size_t)(q - h->target) : h->target_len;
    return plen >= 10 && !memcmp(h->target, "/.popmesh/", 10);
}

/* One request head: answered here, or sent to its application. 0, or -1 when the connection
 * must close after the answer. */
/* GET /.well-known/acme-challenge/<token> on any host: ACME's HTTP-01 answer from the
 * replicated records (node/acme/acmechal.h), before redirects, routing and authentication. */
static bool acme_challenge(struct hconn *hc, const http_head_t *h)
{
    char ka[256];
    int rc = h->method == HTTP_GET || h->method == HTTP_HEAD
                 ? acmechal_answer(hc->px->o.store, h->target, h->target_len, clock_wall_ms(), ka,
                                   sizeof(ka))
                 : 0;
    if (rc < 0)
        error_page(hc, 404, "no such ACME challenge here");
    else if (rc > 0)
        out_printf(hc, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                       "Cache-Control: no-store\r\nConnection: close\r\n\r\n%s",
                   strlen(ka), hc->head_req ? "" : ka);
    if (rc > 0) {
        hc->state = H_CLOSING;
        hc->req_status = 200;
        req_log_end(hc);
    }
    return rc != 0;
}

static int handle_request_head(struct hconn *hc, const http_head_t *h)
{
    httpproxy_t *px = hc->px;
    int rc = request_begin(hc, h);
    if (rc)
        return rc < 0 ? -1 : 0;
    if (acme_challenge(hc, h))
        return 0;
    if (!tls_host_ok(hc))
        return 0;
    if (is_local_target(h)) {
        /* The PoP's pages follow the host's root resource: to HTTPS with it (a password
         * never goes over plain HTTP when it need not), with its HSTS. */
        int ridx = resource_match_http(px->res, px->nres, hc->host, strlen(hc->host), "/", 1);
        if (ridx >= 0)
            req_log_resource(hc, &px->res[ridx]);
        if (ridx >= 0 && redirect_to_https(hc, &px->res[ridx], "/"))
            return 0;
        if (ridx >= 0)
            hc->hsts_s = px->res[ridx].hsts_s;
    }
    if (local_request(hc, h))
        return 0;
    char path[1024]; /* the target is shorter (request_begin): its path fits */
    int idx = route_to_resource(hc, h, path, sizeof(path));
    if (idx < 0)
        return 0;
    req_log_resource(hc, &px->res[idx]);
    if (px->o.stats && (hc->rs = httpstats_get(px->o.stats, px->res[idx].name)))
        hc->rs->requests++;
    if (redirect_to_https(hc, &px->res[idx], path))
        return 0;
    hc->hsts_s = px->res[idx].hsts_s;
    auth_user_t u;
    enum authz az = authorize(hc, h, idx, path, &u);
    if (az == AUTHZ_ANSWERED)
        return 0;
    const http_header_t *wskey;
    if (websocket_key(hc, h, &wskey) < 0)
        return 0;
    char head[HEAD_MAX];
    ssize_t len = rewrite_request_head(hc, h, az == AUTHZ_USER ? &u : NULL, &px->res[idx],
                                       wskey != NULL, head, sizeof(head));
    if (len < 0)
        return 0;
    hc->chunked_up = h->chunked;
    if (!choose_upstream(hc, &hc->px->res[idx]))
        return 0;
    send_request_head(hc, head, (size_t)len, wskey);
    return 0;
}

static int req_on_head(void *ctx, const http_head_t *h)
{
    struct hconn *hc = ctx;
    int rc = handle_request_head(hc, h);
    /* An Upgrade not forwarded as a WebSocket (h2c, or answered here) leaves the connection
     * in HTTP: the reader must go on parsing requests after this one. */
    if (rc == 0 && h->upgrade && !(hc->state == H_BODY && hc->up && hc->up->ws_key[0]))
        return 1;
    return rc;
}

static int req_on_body(void *ctx, const uint8_t *d, size_t n)
{
    struct hconn *hc = ctx;
    if (hc->state == H_LOCAL) {
        if (hc->local_len + n > sizeof(hc->local_body)) {
            hc->local_too_big = true;
            return 0;
        }
        memcpy(hc->local_body + hc->local_len, d, n);
        hc->local_len += n;
        return 0;
    }
    if (hc->state != H_BODY || !hc->up)
        return 0; /* an error answer is on its way; the body is dropped */
    if (hc->rs)
        hc->rs->bytes_in += n;
    if (hc->chunked_up) {
        char sz[24];
        int l = snprintf(sz, sizeof(sz), "%zx\r\n", n);
        pend_append(hc->up, sz, (size_t)l);
        pend_append(hc->up, d, n);
        pend_append(hc->up, "\r\n", 2);
    } else {
        pend_append(hc->up, d, n);
    }
    flush_up(hc->up);
    return 0;
}

static int req_on_done(void *ctx)
{
    struct hconn *hc = ctx;
    if (hc->state == H_LOCAL) {
        handle_local(hc);
        if (hc->state == H_LOCAL && !hc->pw_job && !hc->oidc_job)
            hc->state = H_HEAD;
        return 1;
    }
    if (hc->state == H_BODY) {
        if (hc->up) {
            if (hc->chunked_up)
                pend_append(hc->up, "0\r\n\r\n", 5);
            flush_up(hc->up);
        }
        hc->state = H_WAIT;
        hc->phase = ev_now(hc->px->o.loop); /* the application's time to answer starts */
        hc_arm(hc);
        if (hc->resp_done) /* the application answered before the body ended */
            request_finished(hc);
    }
    return 1; /* one request at a time */
}

/* Feeds buffered client bytes to the request reader as far as the state allows. */
static void process_input(struct hconn *hc)
{
    while (hc->in_len && (hc->state == H_HEAD || hc->state == H_BODY || hc->state == H_LOCAL)) {
        if (hc->up && hc->up->pend_len >= PEND_HIGH)
            return;                                /* the stream is behind: resume on_writable */
        if (hc->state == H_HEAD && !hc->partial) { /* a new request: its head's deadline */
            hc->partial = true;
            hc->phase = ev_now(hc->px->o.loop);
            hc_arm(hc);
        }
        if (!hc->req) {
            /* At the first request byte, not at accept: a connection that closes after its
             * handshake (a browser's preconnect, a probe) never pays the reader's ~5,000
             * instructions and four allocations (callgrind), as in nginx. */
            http_limits_t lim;
            http_limits_defaults(&lim);
            lim.max_body_bytes = hc->px->o.max_body;
            http_reader_cbs_t cbs = {
                .ctx = hc, .on_head = req_on_head, .on_body = req_on_body, .on_done = req_on_done};
            hc->req = http_reader_new(HTTP_REQUEST, &lim, &cbs);
        }
        hc->feeding = true;
        ssize_t n = http_reader_feed(hc->req, hc->in, hc->in_len);
        hc->feeding = false;
        hc->req_in += n > 0 ? (uint64_t)n : hc->in_len; /* a refused head: all of it */
        if (hc->req_pending)
            req_log_write(hc);
        if (n < 0) {
            const char *why;
            int code = http_reader_error(hc->req, &why);
            if (hc->state != H_CLOSING)
                error_page(hc, code >= 400 ? code : 400, why);
            hc->state = H_CLOSING;
            hc->in_len = 0;
            out_flush(hc);
            return;
        }
        memmove(hc->in, hc->in + n, hc->in_len - (size_t)n);
        hc->in_len -= (size_t)n;
        if (hc->state == H_CLOSING) {
            out_flush(hc);
            return;
        }
        if (n == 0)
            break;
    }
    if (hc->state == H_RAW && hc->in_len && hc->up) {
        hc->req_in += hc->in_len;
        pend_append(hc->up, hc->in, hc->in_len);
        hc->in_len = 0;
        flush_up(hc->up);
    }
    if (hc->out_len)
        out_flush(hc);
}

/* ---- client connection ------------------------------------------------------------------ */

static void on_client_read(struct ev_loop *loop, ev_io *w, int revents);

/* The TLS handshake, as far as the socket allows. Done: the connection reads its first
 * request (H_HEAD, with the idle deadline). A failure (a bad hello, an unknown name, a client
 * gone) closes it: the alert, if any, is already on its way. */
static void tls_handshake_step(struct hconn *hc)
{
    struct ev_loop *loop = hc->px->o.loop;
    const char *why = NULL;
    int rc = tlsconn_handshake(hc->tls, &why);
    if (rc == TLS_WANT_READ || rc == TLS_WANT_WRITE) {
        ev_io_start(loop, rc == TLS_WANT_READ ? &hc->rio : &hc->wio);
        ev_io_stop(loop, rc == TLS_WANT_READ ? &hc->wio : &hc->rio);
        hc->active = ev_now(loop);
        return;
    }
    if (rc != TLS_OK) {
        /* Scanners and port probes fail handshakes all day: debug, and counted (status). */
        log_debug("https: handshake with %s failed: %s", hc_client(hc), why);
        hc_close(hc);
        return;
    }
    if (log_enabled(LOG_DEBUG)) { /* its arguments cost more than the line is worth off */
        char es[LOG_ESC_MAX];
        log_debug("https: %s: %s%s for %s, ALPN %s", hc_client(hc), tlsconn_version(hc->tls),
                  tlsconn_resumed(hc->tls) ? " resumed" : "",
                  log_escs(es, sizeof(es), tlsconn_sni(hc->tls)),
                  tlsconn_alpn(hc->tls)[0] ? tlsconn_alpn(hc->tls) : "none");
    }
    ev_io_stop(loop, &hc->wio);
    hc->state = H_HEAD;
    hc->phase = hc->active = ev_now(loop);
    ev_timer_stop(loop, &hc->timer);
    hc_arm(hc);
    rio_resume(hc);
}

static void on_client_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct hconn *hc = w->data;
    if (hc->state == H_TLS) {
        tls_handshake_step(hc);
        return;
    }
    if (hc->tls_write_wants_read) { /* a TLS write waited for this */
        hc->tls_write_wants_read = false;
        if (!out_flush(hc))
            return;
    }
    if (hc->in_len == IN_CAP || (hc->up && hc->up->pend_len >= PEND_HIGH)) {
        ev_io_stop(loop, w); /* resumed when the reader or the stream catch up */
        return;
    }
    if (hc->lingering) { /* see out_flush: discard until EOF, a limit, or the deadline */
        ssize_t n = recv(hc->fd, hc->in, IN_CAP, 0); /* raw: TLS or not, it is discarded */
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        hc->lingered += n > 0 ? (size_t)n : 0;
        if (n <= 0 || hc->lingered > HTTPPROXY_LINGER_MAX)
            hc_close(hc);
        return;
    }
    ssize_t n = client_recv(hc, hc->in + hc->in_len, IN_CAP - hc->in_len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        hc_close(hc);
        return;
    }
    if (n == 0) {
        hc->client_eof = true;
        ev_io_stop(loop, w);
        if (hc->state == H_RAW && hc->up && hc->up->open && !hc->up->gone) {
            tun_t *t = tconn_tun(hc->up->c);
            if (t && tun_fin(t, hc->up->sid) == TUN_CLOSED)
                hc->up->gone = true;
            return;
        }
        if (hc->state == H_HEAD || hc->state == H_CLOSING)
            hc_close(hc);
        return;
    }
    hc->active = ev_now(loop);
    hc->in_len += (size_t)n;
    /* Decrypted bytes still inside OpenSSL: the socket will not say so. Fed before the input
     * is processed, as hc may be gone after; stopping rio (closing, backpressure) drops the
     * fed event again. */
    if (hc->tls && tlsconn_pending(hc->tls))
        ev_feed_event(loop, w, EV_READ);
    process_input(hc);
}

static void on_client_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct hconn *hc = w->data;
    if (hc->state == H_TLS) {
        tls_handshake_step(hc);
        return;
    }
    if (hc->tls_read_wants_write) { /* a TLS read waited for this */
        hc->tls_read_wants_write = false;
        if (hc->out_off == hc->out_len)
            ev_io_stop(loop, w);
        on_client_read(loop, &hc->rio, EV_READ);
        return;
    }
    if (!out_flush(hc))
        return;
    if (hc->resp_done && hc->state == H_WAIT)
        request_finished(hc);
}

/* ---- deadlines (see the top of the file) ------------------------------------------------ */

enum hdeadline {
    DL_TLS,       /* the TLS handshake: the handshake timeout from the connection's start */
    DL_HEAD,      /* a request head is arriving: HEADER_TIMEOUT from its first byte */
    DL_IDLE,      /* between requests: IDLE_TIMEOUT from the last byte */
    DL_BODY,      /* the request body is arriving: BODY_TIMEOUT from the last byte */
    DL_RESPONSE,  /* the request is complete: RESPONSE_TIMEOUT from its end to the response */
    DL_RESP_IDLE, /* the response is under way: RESP_IDLE from the last byte either way */
    DL_WS,        /* a WebSocket: WS_IDLE from the last byte either way */
    DL_CLOSING,   /* our last answer is being read: CLOSING_TIMEOUT from the last byte */
};

/* The deadline (loop time) of the connection in its current state, and which one it is. */
static ev_tstamp hc_deadline(const struct hconn *hc, enum hdeadline *kind)
{
    double k = hc->px->tscale;
    bool answering = hc->up && hc->up->saw_response;
    enum hdeadline d;
    switch (hc->state) {
    case H_TLS:
        d = DL_TLS;
        break;
    case H_HEAD:
        d = hc->in_len || hc->partial ? DL_HEAD : DL_IDLE;
        break;
    case H_BODY:
        d = answering ? DL_RESP_IDLE : DL_BODY;
        break;
    case H_LOCAL: /* a login form arriving, or its password being checked (seconds at most) */
        d = DL_BODY;
        break;
    case H_WAIT:
        d = answering ? DL_RESP_IDLE : DL_RESPONSE;
        break;
    case H_RAW:
        d = DL_WS;
        break;
    case H_CLOSING:
    default:
        d = DL_CLOSING;
        break;
    }
    if (kind)
        *kind = d;
    switch (d) {
    case DL_TLS:
        return hc->phase + hc->px->tls_timeout;
    case DL_HEAD:
        return hc->phase + k * HTTPPROXY_HEADER_TIMEOUT_S;
    case DL_IDLE:
        return hc->active + k * HTTPPROXY_IDLE_TIMEOUT_S;
    case DL_BODY:
        return hc->active + k * HTTPPROXY_BODY_TIMEOUT_S;
    case DL_RESPONSE:
        return hc->phase + k * HTTPPROXY_RESPONSE_TIMEOUT_S;
    case DL_RESP_IDLE:
        return hc->active + k * HTTPPROXY_RESP_IDLE_S;
    case DL_WS:
        return hc->active + k * HTTPPROXY_WS_IDLE_S;
    case DL_CLOSING:
    default:
        if (hc->lingering)
            return hc->phase + k * HTTPPROXY_LINGER_S;
        return hc->active + k * HTTPPROXY_CLOSING_TIMEOUT_S;
    }
}

/* Makes the timer fire no later than the current deadline. A timer already due earlier is
 * left alone: it re-checks when it fires. Called on state changes, never per byte. */
static void hc_arm(struct hconn *hc)
{
    struct ev_loop *loop = hc->px->o.loop;
    ev_tstamp left = hc_deadline(hc, NULL) - ev_now(loop);
    if (left < 0.001)
        left = 0.001;
    if (ev_is_active(&hc->timer) && ev_timer_remaining(loop, &hc->timer) <= left)
        return;
    ev_timer_stop(loop, &hc->timer);
    ev_timer_set(&hc->timer, left, 0.);
    ev_timer_start(loop, &hc->timer);
}

/* Gives up the upstream stream of a request that timed out: reset, so the application stops
 * waiting too, and nothing it sends later can be taken for another answer. */
static void hc_drop_upstream(struct hconn *hc)
{
    if (hc->up) {
        up_release(hc->up);
        hc->up = NULL;
    }
}

static void on_client_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct hconn *hc = w->data;
    httpproxy_t *px = hc->px;
    enum hdeadline kind;
    ev_tstamp left = hc_deadline(hc, &kind) - ev_now(loop);
    if (left > 0) { /* bytes moved since the timer was set: not yet */
        ev_timer_set(w, left, 0.);
        ev_timer_start(loop, w);
        return;
    }
    char et[LOG_ESC_MAX];
    const char *target = log_escs(et, sizeof(et), hc->target);
    double k = px->tscale;
    switch (kind) {
    case DL_TLS:
        px->st.timeout_tls++;
        log_debug("https: %s did not finish its TLS handshake in %.1f s: closed", hc_client(hc),
                  px->tls_timeout);
        hc_close(hc);
        return;
    case DL_HEAD:
        px->st.timeout_head++;
        log_info("http: %s sent no complete request head in %.0f s: closed", hc_client(hc),
                 k * HTTPPROXY_HEADER_TIMEOUT_S);
        error_page(hc, 408, "the request took too long to arrive");
        break;
    case DL_BODY:
        px->st.timeout_body++;
        if (hc->state == H_LOCAL && (hc->pw_job || hc->oidc_job)) { /* stuck: give up */
            hc_close(hc);
            return;
        }
        if (hc->up && hc->up->pend_len >= PEND_HIGH) {
            /* The client is not read because the application stopped taking the body: its
             * stall, not the client's (flush_up stamps every byte it takes). */
            log_warn("http: %s %s %s: resource %s took no body byte in %.0f s: 504", hc_client(hc),
                     hc->method, target, hc->up->resource, k * HTTPPROXY_BODY_TIMEOUT_S);
            hc_drop_upstream(hc);
            error_page(hc, 504, "the application stopped reading the request");
            break;
        }
        hc_drop_upstream(hc);
        log_info("http: %s %s %s: no request body byte in %.0f s: 408", hc_client(hc), hc->method,
                 target, k * HTTPPROXY_BODY_TIMEOUT_S);
        error_page(hc, 408, "the request body stopped arriving");
        break;
    case DL_RESPONSE:
        px->st.timeout_response++;
        log_warn("http: %s %s %s: resource %s did not answer in %.0f s: 504", hc_client(hc),
                 hc->method, target, hc->up ? hc->up->resource : "?",
                 k * HTTPPROXY_RESPONSE_TIMEOUT_S);
        hc_drop_upstream(hc);
        error_page(hc, 504, "the application did not answer in time");
        break;
    case DL_IDLE:
        px->st.timeout_idle++;
        hc_close(hc);
        return;
    case DL_RESP_IDLE:
        px->st.timeout_resp_idle++;
        log_info("http: %s %s %s: no byte either way in %.0f s during the response: closed",
                 hc_client(hc), hc->method, target, k * HTTPPROXY_RESP_IDLE_S);
        hc_close(hc);
        return;
    case DL_WS:
        px->st.timeout_ws++;
        log_info("http: %s: WebSocket idle for %.0f s: closed", hc_client(hc),
                 k * HTTPPROXY_WS_IDLE_S);
        hc_close(hc);
        return;
    case DL_CLOSING:
        if (!hc->lingering) /* a client that did not read our answer; lingering just ends */
            px->st.timeout_closing++;
        hc_close(hc);
        return;
    }
    if (out_flush(hc))
        hc_arm(hc);
}

static void hc_close(struct hconn *hc)
{
    httpproxy_t *px = hc->px;
    if (hc->req_open) { /* closed before its answer ended (or a WebSocket's end) */
        if (!hc->req_status && !hc->req_reason)
            hc->req_reason = "the connection closed before an answer";
        hc->feeding = false;
        req_log_write(hc);
    }
    ev_io_stop(px->o.loop, &hc->rio);
    ev_io_stop(px->o.loop, &hc->wio);
    ev_timer_stop(px->o.loop, &hc->timer);
    if (hc->tls) {
        tlsconn_shutdown(hc->tls); /* close_notify, best effort, after a completed handshake */
        tlsconn_destroy(&hc->tls);
    }
    close(hc->fd);
    conncap_release(px->cap, hc->slot);
    if (hc->up)
        up_release(hc->up);
    if (hc->pw_job)
        hc->pw_job->hc = NULL; /* the worker's verdict is dropped when it comes */
    if (hc->oidc_job)
        oidc_cancel(hc->oidc_job);
    http_reader_destroy(&hc->req);
    free(hc->out);
    if (hc->prev)
        hc->prev->next = hc->next;
    else
        px->conns = hc->next;
    if (hc->next)
        hc->next->prev = hc->prev;
    if (hc->local_len)
        sodium_memzero(hc->local_body, hc->local_len); /* a login form: a password */
    if (px->hc_pooled < HC_POOL_MAX) {
        hc->next = px->hc_pool;
        px->hc_pool = hc;
        px->hc_pooled++;
        ASAN_POISON_MEMORY_REGION(hc, offsetof(struct hconn, next));
        ASAN_POISON_MEMORY_REGION((char *)hc + offsetof(struct hconn, in),
                                  sizeof(*hc) - offsetof(struct hconn, in)); /* all but next */
    } else {
        free(hc);
    }
}

/* A connection with every field zero, from the pool when it has one. */
static struct hconn *hc_alloc(httpproxy_t *px)
{
    struct hconn *hc = px->hc_pool;
    if (!hc)
        return xcalloc(1, sizeof(*hc));
    ASAN_UNPOISON_MEMORY_REGION(hc, sizeof(*hc));
    px->hc_pool = hc->next;
    px->hc_pooled--;
    memset(hc, 0, offsetof(struct hconn, in));
    return hc;
}

static void *pw_worker(void *arg)
{
    httpproxy_t *px = arg;
    for (;;) {
        pthread_mutex_lock(&px->mu);
        while (!px->todo && !px->stopping)
            pthread_cond_wait(&px->cv, &px->mu);
        if (px->stopping) {
            pthread_mutex_unlock(&px->mu);
            return NULL;
        }
        struct pwjob *job = px->todo;
        px->todo = job->next;
        if (!px->todo)
            px->todo_tail = NULL;
        pthread_mutex_unlock(&px->mu);
        job->ok = auth_password_verify(job->pwhash, job->pw, job->pwlen);
        sodium_memzero(job->pw, sizeof(job->pw));
        pthread_mutex_lock(&px->mu);
        job->next = px->done;
        px->done = job;
        pthread_mutex_unlock(&px->mu);
        ev_async_send(px->o.loop, &px->done_async);
    }
}

/* The second factor of a sign-in whose password was right. None is needed without a totp/
 * record; else a code of a step after the last one the account accepted (RFC 6238, +-1 step)
 * or one of its unused recovery codes, and the use is written to totpuse/ (where every PoP
 * it reaches refuses the same code) before the session is made: a PoP that cannot write it
 * refuses the sign-in. The code is never logged. false once answered. */
static bool second_factor_ok(httpproxy_t *px, struct hconn *hc, struct pwjob *job)
{
    totp_rec_t t;
    totp_use_t use;
    char eu[LOG_ESC_MAX], key[TOTPREC_KEY_MAX];
    const char *why = NULL;
    int rc = totprec_get(px->o.store, job->u.name, &t);
    if (rc == -ENOENT)
        return true;
    log_escs(eu, sizeof(eu), job->u.name);
    if (rc || totpuse_get(px->o.store, job->u.name, t.enrolled_ms, &use)) {
        log_warn("http: the second factor of '%s' cannot be read here: sign-in refused", eu);
        error_page(hc, 503, "this account's second factor cannot be checked here: try again");
        return false;
    }
    size_t cl = strlen(job->code);
    if (!cl) {
        px->st.totp_refused++;
        req_log_deny(hc, "second factor missing");
        login_page(hc, 401,
                   "This account uses two-factor sign-in: enter the code from your "
                   "authenticator app (or a recovery code) with your password.",
                   job->rd);
        return false;
    }
    if (totp_is_recovery(job->code, cl)) {
        char canon[TOTP_RECOVERY_CHARS + 1];
        uint8_t h[TOTP_RECOVERY_HASH];
        int hit = -1, used = 0;
        if (totp_recovery_parse(job->code, cl, canon)) {
            why = "a malformed recovery code";
        } else {
            totp_recovery_hash(t.salt, canon, h);
            for (unsigned i = 0; i < t.nrecovery; i++) /* every one compared: constant time */
                if (sodium_memcmp(h, t.recovery[i], sizeof(h)) == 0) {
                    if (use.recovery_used >> i & 1)
                        used = 1;
                    else
                        hit = (int)i;
                }
            if (hit >= 0)
                use.recovery_used |= 1ull << hit;
            else
                why = used ? "a recovery code used before (replay)" : "a wrong recovery code";
            sodium_memzero(canon, sizeof(canon));
        }
    } else {
        uint32_t code;
        uint8_t secret[TOTPREC_SECRET];
        uint64_t step;
        if (totp_code_parse(job->code, cl, &code)) {
            why = "a malformed code";
        } else if (!px->o.seal || totprec_open(px->o.seal, &t, secret)) {
            log_warn("http: the TOTP secret of '%s' does not open here (store key?): sign-in "
                     "refused",
                     eu);
            error_page(hc, 503, "this account's second factor cannot be checked here");
            return false;
        } else {
            int vr = totp_verify(secret, sizeof(secret), code, totp_step(clock_wall_ms() / 1000),
                                 use.last_step, &step);
            sodium_memzero(secret, sizeof(secret));
            if (vr == 0)
                use.last_step = step;
            else
                why = vr == -EALREADY ? "a code used before (replay)" : "a wrong code";
        }
    }
    if (why) {
        if (strstr(why, "(replay)"))
            px->st.totp_replayed++;
        else
            px->st.totp_refused++;
        req_log_deny(hc, why);
        log_info("http: second factor of '%s' from %s refused: %s", eu, hc_client(hc), why);
        login_page(hc, 401, "Wrong code: enter the current code of your authenticator app.",
                   job->rd);
        return false;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    totpuse_pack(&pk, &use);
    totpuse_key(job->u.name, key, sizeof(key));
    rc = px->o.mesh ? meshnode_put_record(px->o.mesh, key, &sb)
                    : store_put(px->o.store, key, strlen(key), sb.data, sb.size, clock_wall_ms(),
                                NULL);
    msgpack_sbuffer_destroy(&sb);
    if (rc) {
        log_warn("http: cannot note the second factor of '%s' (%s): sign-in refused", eu,
                 store_last_error(px->o.store));
        error_page(hc, 503, "the sign-in cannot be recorded here: try again");
        return false;
    }
    px->st.totp_accepted++;
    return true;
}

/* Verdicts back on the loop: answer the waiting connections. */
static void on_pw_done(struct ev_loop *loop, ev_async *w, int revents)
{
    (void)loop, (void)revents;
    httpproxy_t *px = w->data;
    pthread_mutex_lock(&px->mu);
    struct pwjob *list = px->done;
    px->done = NULL;
    pthread_mutex_unlock(&px->mu);
    while (list) {
        struct pwjob *job = list;
        list = job->next;
        px->queued--;
        struct hconn *hc = job->hc;
        if (hc) {
            hc->pw_job = NULL;
            if (!job->ok || !job->user_ok) {
                req_log_deny(hc, "wrong user name or password");
                px->st.logins_failed++;
                char eu[LOG_ESC_MAX];
                log_info("http: failed login from %s for '%s'", hc_client(hc),
                         log_escs(eu, sizeof(eu), hc->user));
                login_page(hc, 401, "Wrong user or password.", job->rd);
            } else if (!second_factor_ok(px, hc, job)) {
                /* answered: a code wanted, wrong, replayed, or not recordable */
            } else {
                char cookie[AUTH_TOKEN_MAX + 1];
                const char *why;
                int mrc = make_cookie(px, job->u.name, job->u.session_epoch, clock_wall_ms(),
                                      HTTPPROXY_SESSION_TTL_MS, "", cookie, sizeof(cookie), &why);
                if (mrc) {
                    cookie_error(hc, mrc, why);
                } else {
                    char eu[LOG_ESC_MAX];
                    log_info("http: %s signed in from %s", log_escs(eu, sizeof(eu), job->u.name),
                             hc_client(hc));
                    hc->req_decision = ACCESSLOG_PASSWORD;
                    set_session(hc, cookie, HTTPPROXY_SESSION_TTL_MS, job->rd);
                }
            }
            if (hc->state == H_LOCAL)
                hc->state = H_HEAD;
            if (out_flush(hc) && hc->state == H_HEAD && hc->in_len)
                process_input(hc);
        }
        sodium_memzero(job, sizeof(*job));
        free(job);
    }
}

/* ---- connection caps ---------------------------------------------------------------------- */

/* A connection past a cap: a fixed 503 (a fresh socket's send buffer always takes it) and
 * close, in this loop pass; on the HTTPS listener just the close (a 503 would cost a whole
 * handshake first). Logged at most once a second, with how many went unlogged. */
static void refuse(httpproxy_t *px, int fd, bool tls, const struct sockaddr_storage *ss,
                   const char *which)
{
    static const char answer[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                 "Retry-After: 1\r\nConnection: close\r\n\r\n";
    if (!tls) {
        ssize_t n = send(fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)n; /* best effort: the close says the rest */
    }
    close(fd);
    ev_tstamp now = ev_now(px->o.loop);
    if (now - px->refused_logged < 1.0) {
        px->refused_unlogged++;
        return;
    }
    char addr[64];
    netaddr_format((const struct sockaddr *)ss, addr, sizeof(addr));
    conncap_stats_t st;
    conncap_stats(px->cap, &st);
    log_warn("http: refused a connection from %s: %s is reached (%u open, at most %u, %u per "
             "address); %llu more refused since the last such line",
             addr, which, st.open, conncap_max_total(px->cap), conncap_max_per_addr(px->cap),
             (unsigned long long)px->refused_unlogged);
    px->refused_logged = now;
    px->refused_unlogged = 0;
}

/* accept() failed for want of a resource that a closing connection will give back: the
 * pending connection stays in the backlog and the listener stays readable, so watching it
 * would spin the loop. Stop watching for HTTPPROXY_ACCEPT_RETRY_S; logged at most once a
 * second. */
static void accept_back_off(struct listener *l, int err)
{
    httpproxy_t *px = l->px;
    ev_tstamp now = ev_now(px->o.loop);
    l->accept_fail_unlogged++;
    if (now - l->accept_fail_logged >= 1.0) {
        log_warn("http: cannot accept connections on %s: %s; retrying every %.0f ms (%llu "
                 "failures since the last such line); raise the descriptor limit (ulimit -n) "
                 "if this persists",
                 l->addr, strerror(err), HTTPPROXY_ACCEPT_RETRY_S * 1000,
                 (unsigned long long)l->accept_fail_unlogged);
        l->accept_fail_logged = now;
        l->accept_fail_unlogged = 0;
    }
    l->accept_backoff = true;
    ev_io_stop(px->o.loop, &l->io);
    ev_timer_stop(px->o.loop, &l->accept_retry);
    ev_timer_set(&l->accept_retry, HTTPPROXY_ACCEPT_RETRY_S, 0.);
    ev_timer_start(px->o.loop, &l->accept_retry);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents);

/* The back-off is over: watch the listener again and try at once (a connection may have been
 * waiting all along). Back in backoff at once if the resource is still short. */
static void on_accept_retry(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct listener *l = w->data;
    l->accept_backoff = false;
    ev_io_start(loop, &l->io);
    on_accept(loop, &l->io, EV_READ);
}

void httpproxy_health(void *ctx, meshnode_health_t *h)
{
    const httpproxy_t *px = ctx;
    for (size_t i = 0; i < 2; i++) {
        if (!px->lis[i].addr)
            continue; /* not configured */
        h->listeners += 1;
        if (px->lis[i].fd >= 0 && !px->lis[i].accept_backoff)
            h->listeners_up += 1;
    }
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct listener *l = w->data;
    httpproxy_t *px = l->px;
    /* One connection per readiness event, as nginx without multi_accept: the listener stays
     * ready (level-triggered) while more wait, and the loop comes back to it after serving the
     * others, so a burst is still taken at once. Accepting until EAGAIN costs every wakeup a
     * failing accept4, a few percent of a resumed TLS handshake. */
    for (int i = 0; i < 1; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_back_off(l, errno);
            return;
        }
        const char *which;
        conncap_slot_t *slot = conncap_admit(px->cap, (struct sockaddr *)&ss, &which);
        if (!slot) {
            refuse(px, fd, l->tls, &ss, which);
            continue;
        }
        tlsconn_t *tls = NULL;
        if (l->tls && !(tls = tlsconn_new(px->o.tls, fd))) {
            log_warn("https: cannot start a TLS connection: out of memory");
            conncap_release(px->cap, slot);
            close(fd);
            continue;
        }
        auth_addr_t caddr;
        auth_addr_from_sockaddr((struct sockaddr *)&ss, &caddr);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct hconn *hc = hc_alloc(px);
        hc->px = px;
        hc->fd = fd;
        hc->slot = slot;
        hc->tls = tls;
        hc->state = tls ? H_TLS : H_HEAD;
        hc->referrer_policy = "same-origin";
        hc->phase = hc->active = ev_now(loop);
        memcpy(&hc->peer, &ss, sl < sizeof(ss) ? sl : sizeof(ss)); /* hc_client formats it */
        hc->caddr = caddr; /* hc->ingress: at the first stream (up_open), not per connection */
        ev_io_init(&hc->rio, on_client_read, fd, EV_READ);
        ev_io_init(&hc->wio, on_client_write, fd, EV_WRITE);
        ev_init(&hc->timer, on_client_timer);
        hc->rio.data = hc->wio.data = hc->timer.data = hc;
        hc_arm(hc);
        hc->next = px->conns;
        if (px->conns)
            px->conns->prev = hc;
        px->conns = hc;
        /* The HTTPS listener accepts a connection once its first bytes are in (deferred
         * accept, listeners_open): the handshake starts now rather than after a round through
         * the loop. It may close hc (a bad hello): nothing touches hc after it. */
        if (tls)
            tls_handshake_step(hc);
        else
            ev_io_start(loop, &hc->rio);
    }
}

/* ---- routes: the resources and their rules, kept current by the store's change feed ----
 *
 * px->res holds every readable resource, in no particular order (resource_match_http breaks
 * ties by created_ms and name, not by position), and px->rules[i] the rules of px->res[i]
 * (only for a resource with a host: the others are not HTTP). They are loaded in full once, by
 * httpproxy_new; after that, each committed transaction touching resource/ or rule/ (a local
 * write or a merge from a peer) updates only the resources it names, so a change takes effect
 * here as soon as it reaches this PoP, and no request pays for reading the store. */

static void route_free_rules(httpproxy_t *px, size_t i)
{
    free(px->rules[i]);
    px->rules[i] = NULL;
    px->nrules[i] = 0;
}

/* Loads the rules of px->res[i] afresh. A store error leaves it without rules (as before any
 * load): the next change under rule/<name>/ retries. */
static void route_load_rules(httpproxy_t *px, size_t i)
{
    route_free_rules(px, i);
    if (px->res[i].host[0] &&
        auth_rules_load(px->o.store, px->res[i].name, &px->rules[i], &px->nrules[i])) {
        log_warn("http: cannot read the rules of resource %s: %s", px->res[i].name,
                 store_last_error(px->o.store));
        px->rules[i] = NULL;
        px->nrules[i] = 0;
    }
}

/* The index of resource name (n bytes) in px->res, or -1. */
static ssize_t route_find(const httpproxy_t *px, const char *name, size_t n)
{
    for (size_t i = 0; i < px->nres; i++)
        if (strlen(px->res[i].name) == n && memcmp(px->res[i].name, name, n) == 0)
            return (ssize_t)i;
    return -1;
}

/* Every resource and its rules, read in full: at start only. 0 or -errno from the store. */
static int routes_load_all(httpproxy_t *px)
{
    resource_t *v = NULL;
    size_t n = 0;
    int rc = resource_list(px->o.store, &v, &n);
    if (rc)
        return rc;
    px->res = v;
    px->nres = px->cap_res = n;
    px->rules = xcalloc(n ? n : 1, sizeof(*px->rules));
    px->nrules = xcalloc(n ? n : 1, sizeof(*px->nrules));
    for (size_t i = 0; i < n; i++)
        route_load_rules(px, i);
    return 0;
}

static void routes_free(httpproxy_t *px)
{
    for (size_t i = 0; px->rules && i < px->nres; i++)
        free(px->rules[i]);
    free(px->rules);
    free(px->nrules);
    free(px->res);
    px->rules = NULL;
    px->nrules = NULL;
    px->res = NULL;
    px->nres = px->cap_res = 0;
}

/* resource/<name> changed: its entry is replaced, added or (deleted, unreadable) removed. */
static void on_resource_change(void *ctx, const store_entry_t *changes, size_t n)
{
    httpproxy_t *px = ctx;
    const size_t pl = strlen(RESOURCE_PREFIX);
    for (size_t k = 0; k < n; k++) {
        const store_entry_t *e = &changes[k];
        const char *name = e->key + pl;
        size_t nl = e->klen - pl;
        if (nl == 0 || nl > NODECFG_NAME_MAX)
            continue; /* no resource can live there; resource_list skips it too */
        char nm[NODECFG_NAME_MAX + 1], why_buf[160];
        memcpy(nm, name, nl);
        nm[nl] = '\0';
        ssize_t i = route_find(px, nm, nl);
        resource_t r;
        const char *why = "";
        bool live = !e->tombstone &&
                    resource_parse(e->value, e->vlen, nm, &r, why_buf, sizeof(why_buf), &why) == 0;
        if (!e->tombstone && !live)
            log_warn("resource: skipping unreadable record %s%s: %s", RESOURCE_PREFIX, nm, why);
        if (!live) {
            if (i < 0)
                continue;
            /* the last entry takes the removed one's place (order does not matter) */
            route_free_rules(px, (size_t)i);
            size_t last = px->nres - 1;
            px->res[i] = px->res[last];
            px->rules[i] = px->rules[last];
            px->nrules[i] = px->nrules[last];
            px->rules[last] = NULL;
            px->nrules[last] = 0;
            px->nres--;
            log_info("http: resource %s removed from the routes", nm);
            continue;
        }
        if (i < 0) {
            if (px->nres == px->cap_res) {
                size_t cap = px->cap_res ? 2 * px->cap_res : 8;
                px->res = xrealloc(px->res, cap * sizeof(*px->res));
                px->rules = xrealloc(px->rules, cap * sizeof(*px->rules));
                px->nrules = xrealloc(px->nrules, cap * sizeof(*px->nrules));
                px->cap_res = cap;
            }
            i = (ssize_t)px->nres++;
            px->rules[i] = NULL;
            px->nrules[i] = 0;
            px->res[i].host[0] = '\0'; /* a new entry: no rules loaded yet */
        }
        /* A resource's rules are records of their own: a new record of the resource changes
         * them only when the resource gains or loses a host (only HTTP resources hold any). */
        bool reload = !px->res[i].host[0] != !r.host[0];
        px->res[i] = r;
        if (reload)
            route_load_rules(px, (size_t)i);
    }
}

/* rule/<resource>/<id> changed: that resource's rules are read again (once per transaction
 * however many of its rules it touched). A rule of a resource not (yet) known is read when
 * the resource arrives. */
static void on_rule_change(void *ctx, const store_entry_t *changes, size_t n)
{
    httpproxy_t *px = ctx;
    const size_t pl = strlen(AUTH_RULE_PREFIX);
    ssize_t done = -1; /* the resource last reloaded in this transaction */
    for (size_t k = 0; k < n; k++) {
        const store_entry_t *e = &changes[k];
        const char *name = e->key + pl;
        const char *slash = memchr(name, '/', e->klen - pl);
        if (!slash)
            continue;
        ssize_t i = route_find(px, name, (size_t)(slash - name));
        if (i < 0 || i == done)
            continue;
        route_load_rules(px, (size_t)i);
        done = i;
    }
}

/* A test knob (httpproxy.h): a positive decimal in the environment, else dflt. Loud when set,
 * so a knob left in a production environment shows in the log. */
static unsigned test_knob_uint(const char *name, unsigned dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    if (*end || x == 0 || x > 1u << 24) {
        log_warn("http: ignoring %s=%s (want a positive number)", name, v);
        return dflt;
    }
    log_warn("http: TEST KNOB: %s=%lu (for tests only)", name, x);
    return (unsigned)x;
}

/* Closes the listeners that were opened. */
static void listeners_close(httpproxy_t *px)
{
    for (size_t i = 0; i < 2; i++) {
        struct listener *l = &px->lis[i];
        ev_io_stop(px->o.loop, &l->io);
        ev_timer_stop(px->o.loop, &l->accept_retry);
        if (l->fd >= 0)
            close(l->fd);
        l->fd = -1;
    }
}

/* Binds the configured listeners (plain first, then TLS). 0, or -errno with err set. */
static int listeners_open(httpproxy_t *px, char *err, size_t errlen)
{
    const char *addr[2] = {px->o.listen, px->o.https_listen};
    for (size_t i = 0; i < 2; i++) {
        struct listener *l = &px->lis[i];
        l->px = px;
        l->fd = -1;
        l->tls = i == 1;
        l->addr = addr[i] && addr[i][0] ? addr[i] : NULL;
        ev_io_init(&l->io, on_accept, -1, EV_READ);
        ev_init(&l->accept_retry, on_accept_retry);
        l->io.data = l->accept_retry.data = l;
    }
    if (!px->lis[0].addr && !px->lis[1].addr) {
        snprintf(err, errlen, "no HTTP or HTTPS listener is configured");
        return -EINVAL;
    }
    if (px->lis[1].addr && !px->o.tls) {
        snprintf(err, errlen, "--https-listen needs the TLS certificates (internal error)");
        return -EINVAL;
    }
    for (size_t i = 0; i < 2; i++) {
        struct listener *l = &px->lis[i];
        if (!l->addr)
            continue;
        char why[NETADDR_MAX + 128];
        int fd = netaddr_listen(l->addr, 1024, why, sizeof(why));
        if (fd < 0) {
            snprintf(err, errlen, "--%s: %s", l->tls ? "https-listen" : "http-listen", why);
            return fd;
        }
        l->fd = fd;
        ev_io_set(&l->io, fd, EV_READ);
        if (l->tls) {
            netaddr_t na;
            if (netaddr_parse(l->addr, &na, true) == 0)
                px->https_port = na.port;
        }
    }
    return 0;
}

httpproxy_t *httpproxy_new(const httpproxy_opts_t *o, char *err, size_t errlen)
{
    httpproxy_t *px = xcalloc(1, sizeof(*px));
    px->o = *o;
    if (px->o.idjwt && getenv("POPMESH_TEST_NO_IDENTITY_JWT")) { /* what the JWT costs */
        log_warn("http: TEST KNOB: POPMESH_TEST_NO_IDENTITY_JWT: no X-Popmesh-Identity (for "
                 "tests and benchmarks only)");
        px->o.idjwt = NULL;
    }
    int rc = listeners_open(px, err, errlen);
    if (rc) {
        listeners_close(px);
        free(px);
        errno = -rc;
        return NULL;
    }
    rc = routes_load_all(px);
    if (rc == 0 && (px->watch_res = store_watch(o->store, RESOURCE_PREFIX, strlen(RESOURCE_PREFIX),
                                                on_resource_change, px)) < 0)
        rc = px->watch_res;
    if (rc == 0 &&
        (px->watch_rules = store_watch(o->store, AUTH_RULE_PREFIX, strlen(AUTH_RULE_PREFIX),
                                       on_rule_change, px)) < 0)
        rc = px->watch_rules;
    if (rc) {
        snprintf(err, errlen, "cannot read the HTTP routes (resources and rules): %s",
                 rc == -ENOSPC ? "too many store watchers" : store_last_error(o->store));
        if (px->watch_res > 0)
            store_unwatch(o->store, px->watch_res);
        routes_free(px);
        listeners_close(px);
        free(px);
        errno = -rc;
        return NULL;
    }
    px->rl_ip =
        auth_ratelimit_new(HTTPPROXY_RL_IP_BURST, HTTPPROXY_RL_IP_REFILL_MS, AUTH_RL_ENTRIES);
    px->rl_user = auth_ratelimit_new(AUTH_RL_BURST, AUTH_RL_REFILL_MS, AUTH_RL_ENTRIES);
    logins_start(px);
    uint8_t junk[24];
    randombytes_buf(junk, sizeof(junk));
    char jpw[49];
    sodium_bin2hex(jpw, sizeof(jpw), junk, sizeof(junk));
    auth_password_hash(jpw, strlen(jpw), px->dummy_hash, sizeof(px->dummy_hash));
    randombytes_buf(px->scache_key, sizeof(px->scache_key));
    px->cap = conncap_new(
        test_knob_uint("POPMESH_TEST_HTTP_MAX_CONNS", conncap_half_nofile(HTTPPROXY_MAX_CONNS_MIN)),
        test_knob_uint("POPMESH_TEST_HTTP_PER_IP", HTTPPROXY_MAX_PER_IP));
    px->tscale = 1.0;
    const char *ts = getenv("POPMESH_TEST_HTTP_TIMEOUT_SCALE");
    if (ts && *ts) {
        char *end;
        double v = strtod(ts, &end);
        if (*end || !(v > 0 && v <= 1))
            log_warn("http: ignoring POPMESH_TEST_HTTP_TIMEOUT_SCALE=%s (want 0 < F <= 1)", ts);
        else {
            px->tscale = v;
            log_warn("http: TEST KNOB: every HTTP timeout scaled by %g "
                     "(POPMESH_TEST_HTTP_TIMEOUT_SCALE is for tests only)",
                     v);
        }
    }
    pthread_mutex_init(&px->mu, NULL);
    pthread_cond_init(&px->cv, NULL);
    ev_async_init(&px->done_async, on_pw_done);
    px->done_async.data = px;
    ev_async_start(o->loop, &px->done_async);
    for (unsigned i = 0; i < HTTPPROXY_PW_WORKERS; i++)
        if (pthread_create(&px->workers[px->nworkers], NULL, pw_worker, px) == 0)
            px->nworkers++;
    px->tls_timeout = test_knob_uint("POPMESH_TEST_TLS_HANDSHAKE_MS",
                                     (unsigned)(TLSCTX_HANDSHAKE_TIMEOUT_S * 1000)) /
                      1000.0;
    for (size_t i = 0; i < 2; i++) {
        struct listener *l = &px->lis[i];
        if (l->fd < 0)
            continue;
        if (l->tls) {
            /* Deferred accept (nginx's "listen ... deferred"): the kernel hands us a
             * connection once its client has sent something, normally its whole ClientHello,
             * so on_accept starts the handshake at once and no wakeup is spent on a connection
             * with nothing to read. After the delay (the handshake timeout, which the kernel
             * rounds up to SYN-ACK retransmissions) a silent connection is accepted anyway and
             * the handshake timeout closes it: nothing is stuck (https_ingress.sh). Without
             * the option the first read just waits for the hello. */
            int defer_s = (int)(px->tls_timeout + 0.999); /* s, at least 1 */
            if (setsockopt(l->fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof(defer_s)))
                log_debug("https: no deferred accept on %s: %s", l->addr, strerror(errno));
        }
        ev_io_start(o->loop, &l->io);
        if (l->tls)
            log_info("https: listening on %s (%zu certificate%s; handshakes within %.1f s)",
                     l->addr, tlsctx_count(o->tls), tlsctx_count(o->tls) == 1 ? "" : "s",
                     px->tls_timeout);
        else
            log_info("http: listening on %s", l->addr);
    }
    log_info("http: at most %u client connections, %u per address%s", conncap_max_total(px->cap),
             conncap_max_per_addr(px->cap),
             px->lis[0].fd >= 0 && px->lis[1].fd >= 0 ? " (HTTP and HTTPS together)" : "");
    return px;
}

void httpproxy_destroy(httpproxy_t **pp)
{
    httpproxy_t *px = pp ? *pp : NULL;
    if (!px)
        return;
    while (px->conns)
        hc_close(px->conns);
    while (px->hc_pool) {
        struct hconn *hc = px->hc_pool;
        ASAN_UNPOISON_MEMORY_REGION(hc, sizeof(*hc));
        px->hc_pool = hc->next;
        free(hc);
    }
    pthread_mutex_lock(&px->mu);
    px->stopping = true;
    pthread_cond_broadcast(&px->cv);
    pthread_mutex_unlock(&px->mu);
    for (unsigned i = 0; i < px->nworkers; i++)
        pthread_join(px->workers[i], NULL);
    for (struct pwjob *lists[2] = {px->todo, px->done}, **l = lists; l < lists + 2; l++)
        while (*l) {
            struct pwjob *job = *l;
            *l = job->next;
            sodium_memzero(job, sizeof(*job));
            free(job);
        }
    ev_async_stop(px->o.loop, &px->done_async);
    pthread_mutex_destroy(&px->mu);
    pthread_cond_destroy(&px->cv);
    listeners_close(px);
    if (px->watch_res > 0)
        store_unwatch(px->o.store, px->watch_res);
    if (px->watch_rules > 0)
        store_unwatch(px->o.store, px->watch_rules);
    routes_free(px);
    logins_stop(px);
    auth_ratelimit_destroy(&px->rl_ip);
    auth_ratelimit_destroy(&px->rl_user);
    conncap_destroy(&px->cap); /* every connection was closed above */
    free(px);
    *pp = NULL;
}

void httpproxy_pack_status(httpproxy_t *px, msgpack_packer *pk)
{
    conncap_stats_t cs;
    conncap_stats(px->cap, &cs);
    loginshare_stats_t ls = px->logins ? loginshare_stats(px->logins) : (loginshare_stats_t){0};
    const struct {
        const char *name;
        uint64_t v;
    } kv[] = {
        {"connections", cs.open},
        {"max_connections", conncap_max_total(px->cap)},
        {"max_connections_per_address", conncap_max_per_addr(px->cap)},
        {"addresses", cs.addresses},
        {"accepted", cs.admitted},
        {"refused_max_connections", cs.refused_total},
        {"refused_per_address", cs.refused_per_addr},
        {"requests", px->st.requests},
        {"local", px->st.local},
        {"denied", px->st.denied},
        {"unauthenticated", px->st.unauthenticated},
        {"errors", px->st.errors},
        {"timeout_head", px->st.timeout_head},
        {"timeout_idle", px->st.timeout_idle},
        {"timeout_body", px->st.timeout_body},
        {"timeout_response", px->st.timeout_response},
        {"timeout_response_idle", px->st.timeout_resp_idle},
        {"timeout_websocket", px->st.timeout_ws},
        {"timeout_closing", px->st.timeout_closing},
        {"redirects_https", px->st.redirects_https},
        {"login_limited", px->st.login_limited},
        {"totp_accepted", px->st.totp_accepted},
        {"totp_refused", px->st.totp_refused},
        {"totp_replayed", px->st.totp_replayed},
        {"logins_failed", px->st.logins_failed},
        /* requests that ended, by how edge authentication let them through */
        {"allowed_open", px->st.decided[ACCESSLOG_OPEN]},
        {"allowed_rule", px->st.decided[ACCESSLOG_RULE]},
        {"allowed_session", px->st.decided[ACCESSLOG_SESSION]},
        {"allowed_api_key", px->st.decided[ACCESSLOG_APIKEY]},
        {"allowed_share_link", px->st.decided[ACCESSLOG_SHARE]},
        {"allowed_password", px->st.decided[ACCESSLOG_PASSWORD]},
        {"allowed_provider", px->st.decided[ACCESSLOG_PROVIDER]},
        {"logins_shared", ls.sent},
        {"logins_heard", ls.received},
        {"logins_charged", ls.charged},
        {"logins_malformed", ls.malformed},
    };
    tlsctx_stats_t ts = {0};
    if (px->o.tls)
        tlsctx_stats(px->o.tls, &ts);
    const struct {
        const char *name;
        uint64_t v;
    } tkv[] = {
        {"tls_certificates", tlsctx_count(px->o.tls)},
        {"tls_handshakes", ts.handshakes},
        {"tls_resumed", ts.resumed},
        {"tls_failed", ts.failed},
        {"tls_unknown_sni", ts.unknown_sni},
        {"tls_ocsp_stapled", ts.ocsp_stapled},
        {"tls_tickets_issued", ts.tickets_new},
        {"tls_tickets_stale", ts.tickets_stale},
        {"timeout_tls_handshake", px->st.timeout_tls},
        {"misdirected", px->st.misdirected},
    };
    size_t nk = sizeof(kv) / sizeof(kv[0]), ntk = px->o.tls ? sizeof(tkv) / sizeof(tkv[0]) : 0;
    mpw_str(pk, "http");
    msgpack_pack_map(pk, (uint32_t)(nk + ntk));
    for (size_t i = 0; i < nk; i++)
        mpw_kv_u64(pk, kv[i].name, kv[i].v);
    for (size_t i = 0; i < ntk; i++)
        mpw_kv_u64(pk, tkv[i].name, tkv[i].v);
}
