/* Unit tests for src/http/http.c, the server end to end, with a handler
 * that negotiates and gzips as the daemon's does: a real uv loop runs the
 * server in a second thread while the test body talks to it with plain
 * blocking sockets (every recv bounded by SO_RCVTIMEO, every wait by a
 * deadline). The loop thread only runs the server; results it records are
 * read after the join. */
#include "http.h"

#include <arpa/inet.h>
#include <check.h>
#include <crypt.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "gunzip.h"
#include "gzip.h"
#include "negotiate.h"

#define METRICS_TYPE       "text/plain; version=0.0.4; charset=utf-8"
#define BIG_BODY_BYTES     (16u * 1024 * 1024)
#define CLIENT_RCVTIMEO_MS 3000

/* ------------------------------------------------------------------------ */
/* Server side: harness and handler                                          */

typedef struct harness {
    uv_loop_t loop;
    uv_async_t stop_async;
    am_http_server_t *srv;
    am_http_limits_t limits;
    pthread_t thread;
    int port;
    /* Deferred answers (/later), sent by the timer on a later loop turn. */
    uv_timer_t later_timer;
    am_http_deferred_t *later[8];
    int nlater;
    int later_sent;
    /* /hold: answered only when the stop begins. */
    am_http_deferred_t *held[8];
    int nheld;
    /* /shared: each timer tick answers the waiting ones with one new shared
     * body of shared_len bytes ('a' + generation), released at once. */
    am_http_deferred_t *shared[16];
    int nshared;
    int shared_made;
    size_t shared_len;
    /* Written on the loop thread, read after the join. */
    bool done;
    int handler_calls;
    am_http_stats_t stats; /* snapshot taken when the stop starts */
} harness_t;

static void metrics_body(am_buf_t *b)
{
    for (int i = 0; i < 150; i++)
        am_buf_printf(b, "alice_test_metric{index=\"%d\",label=\"value\"} %d\n", i, i * 7);
}

/* in[0, len) gzipped into out (appended). false when zlib or memory
 * failed. */
static bool gzip_all(const void *in, size_t len, am_buf_t *out)
{
    am_gzip_t g;
    bool ok = am_gzip_begin(&g, len, out) == 0 && am_gzip_feed(&g, in, len, true) == 0;
    am_gzip_end(&g);
    return ok;
}

/* The body gzipped in place when the client accepts gzip, as the daemon's
 * /metrics answer is. */
static void negotiate_gzip(const am_http_request_t *req, am_http_response_t *resp)
{
    am_negotiated_t n;
    am_negotiate(req->accept, req->accept_encoding, &n);
    resp->vary_encoding = true;
    if (!n.gzip || resp->body->len == 0)
        return;
    am_buf_t z;
    am_buf_init(&z, 0);
    ck_assert(gzip_all(resp->body->data, resp->body->len, &z));
    am_buf_free(resp->body);
    *resp->body = z;
    resp->gzipped = true;
}

static bool path_is(const am_http_request_t *req, const char *p)
{
    return req->path_len == strlen(p) && memcmp(req->path, p, req->path_len) == 0;
}

static void test_handler(void *ctx, const am_http_request_t *req, am_http_response_t *resp)
{
    harness_t *h = ctx;
    h->handler_calls++;
    if (path_is(req, "/metrics")) {
        resp->content_type = METRICS_TYPE;
        metrics_body(resp->body);
        negotiate_gzip(req, resp);
    } else if (path_is(req, "/later")) {
        resp->content_type = METRICS_TYPE;
        resp->vary_encoding = true;
        am_http_deferred_t *d = h->nlater < 8 ? am_http_defer(resp) : NULL;
        if (d)
            h->later[h->nlater++] = d;
        else
            resp->status = 503;
    } else if (path_is(req, "/hold") || path_is(req, "/shared")) {
        resp->content_type = METRICS_TYPE;
        bool hold = path_is(req, "/hold");
        int *n = hold ? &h->nheld : &h->nshared;
        int cap = hold ? 8 : 16;
        am_http_deferred_t *d = *n < cap ? am_http_defer(resp) : NULL;
        if (d)
            (hold ? h->held : h->shared)[(*n)++] = d;
        else
            resp->status = 503;
    } else if (path_is(req, "/small")) {
        am_buf_puts(resp->body, "small\n");
    } else if (req->path_len >= 5 && memcmp(req->path, "/echo", 5) == 0) {
        am_buf_printf(resp->body, "path=%.*s\naccept=%s\naccept-encoding=%s\nhead=%d\n",
                      (int)req->path_len, req->path, req->accept ? req->accept : "(null)",
                      req->accept_encoding ? req->accept_encoding : "(null)", (int)req->head);
    } else if (path_is(req, "/big")) {
        if (am_buf_reserve(resp->body, BIG_BODY_BYTES)) {
            memset(resp->body->data, 'x', BIG_BODY_BYTES);
            resp->body->len = BIG_BODY_BYTES;
            resp->body->data[BIG_BODY_BYTES] = '\0';
        }
    } else {
        resp->status = 404;
        am_buf_puts(resp->body, "not found\n");
    }
}

/* Answers every deferred /later request: "later N", gzipped for odd N. */
static void send_later(harness_t *h)
{
    for (int i = 0; i < h->nlater; i++) {
        am_buf_t b;
        am_buf_init(&b, 0);
        am_buf_printf(&b, "later %d\n", h->later_sent);
        bool gz = h->later_sent % 2 == 1;
        if (gz) {
            am_buf_t z;
            am_buf_init(&z, 0);
            ck_assert(gzip_all(b.data, b.len, &z));
            am_buf_free(&b);
            b = z;
        }
        h->later_sent++;
        am_http_deferred_finish(h->later[i], &b, gz);
        am_buf_free(&b); /* emptied by finish */
    }
    h->nlater = 0;
}

/* Answers every waiting /shared request with one new shared body. */
static void send_shared(harness_t *h)
{
    if (h->nshared == 0)
        return;
    am_buf_t b;
    am_buf_init(&b, 0);
    ck_assert(am_buf_reserve(&b, h->shared_len));
    memset(b.data, 'a' + h->shared_made % 26, h->shared_len);
    b.len = h->shared_len;
    b.data[b.len] = '\0';
    h->shared_made++;
    am_http_body_t *body = am_http_body_new(h->srv, &b);
    ck_assert_ptr_nonnull(body);
    for (int i = 0; i < h->nshared; i++)
        am_http_deferred_finish_shared(h->shared[i], body, false);
    h->nshared = 0;
    am_http_body_release(body);
}

static void on_later_timer(uv_timer_t *t)
{
    send_later(t->data);
    send_shared(t->data);
}

static void *loop_main(void *arg)
{
    harness_t *h = arg;
    uv_run(&h->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void on_done(void *ctx)
{
    harness_t *h = ctx;
    h->done = true;
}

static void on_stop_async(uv_async_t *a)
{
    harness_t *h = a->data;
    h->stats = *am_http_server_stats(h->srv);
    send_later(h); /* owed answers come before the stop */
    send_shared(h);
    for (int i = 0; i < h->nheld; i++) {
        am_buf_t b;
        am_buf_init(&b, 0);
        am_buf_puts(&b, "held\n");
        am_http_deferred_finish(h->held[i], &b, false);
    }
    h->nheld = 0;
    uv_close((uv_handle_t *)&h->later_timer, NULL);
    am_http_server_stop(h->srv, on_done, h);
    uv_close((uv_handle_t *)a, NULL);
}

/* sec: given to the server before its loop runs (stolen), or NULL. */
static void harness_start_secure(harness_t *h, const am_http_limits_t *limits,
                                 am_http_security_t *sec)
{
    memset(h, 0, sizeof(*h));
    if (limits)
        h->limits = *limits;
    else
        am_http_limits_default(&h->limits);
    h->shared_len = 2u * 1024 * 1024;
    ck_assert_int_eq(uv_loop_init(&h->loop), 0);
    ck_assert_int_eq(
        am_http_server_start(&h->loop, "127.0.0.1", 0, &h->limits, test_handler, h, &h->srv), 0);
    h->port = am_http_server_port(h->srv);
    ck_assert_int_gt(h->port, 0);
    if (sec)
        am_http_server_set_security(h->srv, sec);
    ck_assert_int_eq(uv_async_init(&h->loop, &h->stop_async, on_stop_async), 0);
    h->stop_async.data = h;
    ck_assert_int_eq(uv_timer_init(&h->loop, &h->later_timer), 0);
    h->later_timer.data = h;
    ck_assert_int_eq(uv_timer_start(&h->later_timer, on_later_timer, 20, 20), 0);
    ck_assert_int_eq(pthread_create(&h->thread, NULL, loop_main, h), 0);
}

static void harness_start(harness_t *h, const am_http_limits_t *limits)
{
    harness_start_secure(h, limits, NULL);
}

static void harness_request_stop(harness_t *h)
{
    ck_assert_int_eq(uv_async_send(&h->stop_async), 0);
}

/* Waits (bounded) for the loop to run dry after the stop. */
static void harness_join(harness_t *h)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 5;
    ck_assert_int_eq(pthread_timedjoin_np(h->thread, NULL, &ts), 0);
    ck_assert(h->done);
    ck_assert_int_eq(uv_loop_close(&h->loop), 0);
}

static void harness_stop(harness_t *h)
{
    harness_request_stop(h);
    harness_join(h);
}

/* ------------------------------------------------------------------------ */
/* Client side: blocking sockets                                             */

typedef struct client {
    int fd;
    size_t dropped; /* bytes wait_closed threw away */
    size_t len;
    char buf[64 * 1024];
} client_t;

typedef struct response {
    int status;
    char head[4096]; /* status line and headers, NUL-terminated */
    char *body;      /* malloc'd, NUL-terminated */
    size_t body_len;
} response_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int connect_port(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    int one = 1;
    ck_assert_int_eq(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    struct timeval tv = {.tv_sec = CLIENT_RCVTIMEO_MS / 1000,
                         .tv_usec = (CLIENT_RCVTIMEO_MS % 1000) * 1000};
    ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
    if (rcvbuf > 0)
        ck_assert_int_eq(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static client_t *client_open(int port)
{
    client_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->fd = connect_port(port, 0);
    return c;
}

static void client_close(client_t *c)
{
    close(c->fd);
    free(c);
}

static void send_bytes(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        ck_assert_int_gt(w, 0);
        s += w;
        n -= (size_t)w;
    }
}

static void send_str(client_t *c, const char *s)
{
    send_bytes(c->fd, s, strlen(s));
}

static bool fill(client_t *c)
{
    if (c->len == sizeof(c->buf))
        return false;
    ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
    if (n <= 0)
        return false;
    c->len += (size_t)n;
    return true;
}

static void consume(client_t *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Value of header name (case-insensitive) into out; false when absent. */
static bool header_get(const response_t *r, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    const char *line = strstr(r->head, "\r\n");
    while (line && line[2] != '\r') {
        line += 2;
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            size_t vlen = (size_t)(e - v);
            if (vlen >= outsz)
                return false;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
        line = strstr(line, "\r\n");
    }
    return false;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool has_header(const response_t *r, const char *name)
{
    char v[256];
    return header_get(r, name, v, sizeof(v));
}

static void header_expect(const response_t *r, const char *name, const char *want)
{
    char v[256];
    ck_assert_msg(header_get(r, name, v, sizeof(v)), "missing %s in:\n%s", name, r->head);
    ck_assert_str_eq(v, want);
}

/* Reads one response (no body for HEAD). false on EOF or timeout. */
static bool read_response(client_t *c, response_t *r, bool head)
{
    memset(r, 0, sizeof(*r));
    char *end;
    while (!(end = memmem(c->buf, c->len, "\r\n\r\n", 4))) {
        if (!fill(c))
            return false;
    }
    size_t hlen = (size_t)(end + 4 - c->buf);
    ck_assert_uint_lt(hlen, sizeof(r->head));
    memcpy(r->head, c->buf, hlen);
    r->head[hlen] = '\0';
    consume(c, hlen);
    ck_assert_msg(strncmp(r->head, "HTTP/1.1 ", 9) == 0, "bad status line: %s", r->head);
    r->status = atoi(r->head + 9);
    char v[64];
    size_t cl = 0;
    if (!head && header_get(r, "Content-Length", v, sizeof(v)))
        cl = strtoull(v, NULL, 10);
    r->body = malloc(cl + 1);
    ck_assert_ptr_nonnull(r->body);
    size_t got = c->len < cl ? c->len : cl;
    memcpy(r->body, c->buf, got);
    consume(c, got);
    while (got < cl) {
        ssize_t n = recv(c->fd, r->body + got, cl - got, 0);
        if (n <= 0) {
            free(r->body);
            r->body = NULL;
            return false;
        }
        got += (size_t)n;
    }
    r->body[cl] = '\0';
    r->body_len = cl;
    return true;
}

static void response_free(response_t *r)
{
    free(r->body);
    r->body = NULL;
}

/* Sends one request and reads its answer; the test fails if none comes. */
static void roundtrip(client_t *c, const char *req, response_t *r, bool head)
{
    send_str(c, req);
    ck_assert_msg(read_response(c, r, head), "no response to %s", req);
}

/* true when the server closes the connection within timeout_ms; bytes that
 * arrive meanwhile are dropped. */
static bool wait_closed(client_t *c, unsigned timeout_ms)
{
    c->dropped = c->len;
    c->len = 0;
    uint64_t deadline = now_ms() + timeout_ms;
    char scratch[65536];
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline)
            return false;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            return false;
        ssize_t n = recv(c->fd, scratch, sizeof(scratch), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            return true;
        if (n > 0)
            c->dropped += (size_t)n;
    }
}

/* ------------------------------------------------------------------------ */
/* Gzip, as handlers use it                                                  */

START_TEST(test_gzip_all)
{
    am_buf_t in, gz;
    am_buf_init(&in, 0);
    am_buf_init(&gz, 0);
    metrics_body(&in);
    ck_assert(!am_buf_failed(&in));
    ck_assert(gzip_all(in.data, in.len, &gz));
    ck_assert_uint_lt(gz.len, in.len / 2);
    ck_assert_uint_eq((unsigned char)gz.data[0], 0x1f); /* gzip magic */
    ck_assert_uint_eq((unsigned char)gz.data[1], 0x8b);
    size_t n;
    char *back = gunzip(gz.data, gz.len, &n);
    ck_assert_uint_eq(n, in.len);
    ck_assert_mem_eq(back, in.data, n);
    free(back);

    /* Empty input is still a valid gzip stream; appends after what is there. */
    am_buf_reset(&gz);
    am_buf_puts(&gz, "prefix");
    ck_assert(gzip_all("", 0, &gz));
    ck_assert_mem_eq(gz.data, "prefix", 6);
    back = gunzip(gz.data + 6, gz.len - 6, &n);
    ck_assert_uint_eq(n, 0);
    free(back);

    /* A buffer that cannot grow enough reports failure. */
    am_buf_t tiny;
    am_buf_init(&tiny, 8);
    ck_assert(!gzip_all(in.data, in.len, &tiny));
    am_buf_free(&tiny);
    am_buf_free(&in);
    am_buf_free(&gz);
}
END_TEST

START_TEST(test_limits_default)
{
    am_http_limits_t l;
    memset(&l, 0xff, sizeof(l));
    am_http_limits_default(&l);
    ck_assert_uint_eq(l.max_header_bytes, 16384);
    ck_assert_uint_eq(l.max_body_bytes, 65536);
    ck_assert_uint_eq(l.idle_timeout_ms, 60000);
    ck_assert_uint_eq(l.request_timeout_ms, 10000);
    ck_assert_uint_eq(l.write_timeout_ms, 60000);
    ck_assert_uint_eq(l.min_send_rate, 65536);
    ck_assert_uint_eq(l.send_grace_ms, 10000);
    ck_assert_uint_eq(l.max_connections, 1024);
    ck_assert_uint_eq(l.shed_grace_ms, 1000);
    ck_assert_uint_eq(l.max_pending_responses, 16);
    ck_assert_uint_eq(l.max_conn_queued_bytes, 16384);
    ck_assert_uint_eq(l.max_queued_bytes, 0);
    ck_assert_uint_eq(l.hold_grace_ms, 20);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Server                                                                    */

/* Replaces the Date value (its format checked) with X so heads compare. */
static void mask_date(char *head)
{
    char *d = strstr(head, "\r\nDate: ");
    ck_assert_ptr_nonnull(d);
    d += 8;
    char *e = strstr(d, "\r\n");
    ck_assert_int_eq((int)(e - d), 29); /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    ck_assert_mem_eq(d + 25, " GMT", 4);
    memset(d, 'X', 29);
}

START_TEST(test_get_exact_headers)
{
    harness_t h;
    harness_start(&h, NULL);
    am_buf_t want;
    am_buf_init(&want, 0);
    metrics_body(&want);

    client_t *c = client_open(h.port);
    response_t r;
    roundtrip(c, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", &r, false);
    mask_date(r.head);
    char expect[512];
    snprintf(expect, sizeof(expect),
             "HTTP/1.1 200 OK\r\n"
             "Content-Type: " METRICS_TYPE "\r\n"
             "Content-Length: %zu\r\n"
             "Vary: Accept-Encoding\r\n"
             "Date: XXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n"
             "Connection: keep-alive\r\n"
             "\r\n",
             want.len);
    ck_assert_str_eq(r.head, expect);
    ck_assert_uint_eq(r.body_len, want.len);
    ck_assert_mem_eq(r.body, want.data, want.len);
    response_free(&r);

    /* Not compressible: no Vary, no encoding even when gzip is offered. */
    roundtrip(c, "GET /small HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n", &r, false);
    mask_date(r.head);
    ck_assert_str_eq(r.head, "HTTP/1.1 200 OK\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Length: 6\r\n"
                             "Date: XXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n"
                             "Connection: keep-alive\r\n"
                             "\r\n");
    ck_assert_str_eq(r.body, "small\n");
    response_free(&r);
    client_close(c);
    am_buf_free(&want);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.requests, 2);
    ck_assert_int_eq(h.handler_calls, 2);
}
END_TEST

/* Basic auth: 401 with the challenge (and the configured headers) for every
 * path but /health, until a valid user comes; the bcrypt check runs off the
 * loop and pipelined requests wait behind it. */
START_TEST(test_basic_auth)
{
    char setting[64];
    ck_assert_ptr_nonnull(crypt_gensalt_rn("$2b$", 4, NULL, 0, setting, sizeof(setting)));
    struct crypt_data cd;
    memset(&cd, 0, sizeof(cd));
    char *hash = crypt_r("secret", setting, &cd);
    ck_assert_ptr_nonnull(hash);
    char name[] = "alice", headers[] = "X-Frame-Options: deny\r\n";
    am_web_user_t user = {name, hash};
    am_webconfig_t wc;
    am_webconfig_init(&wc);
    wc.users = &user;
    wc.nusers = 1;
    wc.headers = headers;
    am_http_security_t *sec;
    char err[256];
    ck_assert_int_eq(am_http_security_new(&wc, &sec, err, sizeof(err)), 0);
    harness_t h;
    harness_start_secure(&h, NULL, sec);

    client_t *c = client_open(h.port);
    response_t r;
    roundtrip(c, "GET /metrics HTTP/1.1\r\n\r\n", &r, false);
    mask_date(r.head);
    ck_assert_str_eq(r.head, "HTTP/1.1 401 Unauthorized\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Length: 13\r\n"
                             "WWW-Authenticate: Basic realm=\"alice-metrics\"\r\n"
                             "X-Frame-Options: deny\r\n"
                             "Date: XXXXXXXXXXXXXXXXXXXXXXXXXXXXX\r\n"
                             "Connection: keep-alive\r\n"
                             "\r\n");
    response_free(&r);
    roundtrip(c, "HEAD /small HTTP/1.1\r\nAuthorization: Basic YWxpY2U6d3Jvbmc=\r\n\r\n", &r, true);
    ck_assert_int_eq(r.status, 401);
    response_free(&r);
    roundtrip(c, "GET /health HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 404); /* open: the test handler knows no /health */
    response_free(&r);
    /* alice:secret twice, pipelined: bcrypt once, then the cache */
    send_str(c, "GET /small HTTP/1.1\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n"
                "GET /small HTTP/1.1\r\nAuthorization: basic YWxpY2U6c2VjcmV0\r\n\r\n");
    for (int i = 0; i < 2; i++) {
        ck_assert(read_response(c, &r, false));
        ck_assert_int_eq(r.status, 200);
        ck_assert_str_eq(r.body, "small\n");
        response_free(&r);
    }
    client_close(c);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.auth_denied, 2);
    ck_assert_int_eq(h.handler_calls, 3);
}
END_TEST

START_TEST(test_head)
{
    harness_t h;
    harness_start(&h, NULL);
    client_t *c = client_open(h.port);
    response_t get, head;
    roundtrip(c, "GET /metrics HTTP/1.1\r\n\r\n", &get, false);
    roundtrip(c, "HEAD /metrics HTTP/1.1\r\n\r\n", &head, true);
    ck_assert_int_eq(head.status, 200);
    char a[64], b[64];
    ck_assert(header_get(&get, "Content-Length", a, sizeof(a)));
    ck_assert(header_get(&head, "Content-Length", b, sizeof(b)));
    ck_assert_str_eq(a, b);
    header_expect(&head, "Content-Type", METRICS_TYPE);
    header_expect(&head, "Vary", "Accept-Encoding");
    response_free(&get);
    response_free(&head);

    /* Same with gzip: the length is the compressed one. */
    roundtrip(c, "GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n", &get, false);
    roundtrip(c, "HEAD /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n", &head, true);
    ck_assert(header_get(&get, "Content-Length", a, sizeof(a)));
    ck_assert(header_get(&head, "Content-Length", b, sizeof(b)));
    ck_assert_str_eq(a, b);
    header_expect(&head, "Content-Encoding", "gzip");
    response_free(&get);
    response_free(&head);

    /* No body bytes leaked after the HEAD: the next answer parses cleanly. */
    roundtrip(c, "GET /echo HTTP/1.1\r\n\r\n", &get, false);
    ck_assert_int_eq(get.status, 200);
    ck_assert_ptr_nonnull(strstr(get.body, "head=0\n"));
    response_free(&get);
    roundtrip(c, "HEAD /echo HTTP/1.1\r\n\r\n", &head, true);
    roundtrip(c, "GET /small HTTP/1.1\r\n\r\n", &get, false);
    ck_assert_str_eq(get.body, "small\n");
    response_free(&head);
    response_free(&get);
    client_close(c);
    harness_stop(&h);
}
END_TEST

START_TEST(test_method_not_allowed)
{
    static const char *reqs[] = {
        "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\na=1",
        "PUT /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "DELETE /metrics HTTP/1.1\r\n\r\n",
        "OPTIONS * HTTP/1.1\r\n\r\n",
        "POST /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    };
    harness_t h;
    harness_start(&h, NULL);
    client_t *c = client_open(h.port);
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        response_t r;
        roundtrip(c, reqs[i], &r, false);
        ck_assert_int_eq(r.status, 405);
        ck_assert_msg(starts_with(r.head, "HTTP/1.1 405 Method Not Allowed\r\n"), "%s", r.head);
        header_expect(&r, "Allow", "GET, HEAD");
        header_expect(&r, "Connection", "keep-alive");
        response_free(&r);
    }
    /* The bodies were consumed: the connection still works. */
    response_t r;
    roundtrip(c, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    client_close(c);
    harness_stop(&h);
    ck_assert_int_eq(h.handler_calls, 1);
    ck_assert_uint_eq(h.stats.requests, 6);
    ck_assert_uint_eq(h.stats.bad_requests, 0);
}
END_TEST

START_TEST(test_not_found_and_query)
{
    harness_t h;
    harness_start(&h, NULL);
    client_t *c = client_open(h.port);
    response_t r;
    roundtrip(c, "GET /nope HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 404);
    ck_assert_msg(starts_with(r.head, "HTTP/1.1 404 Not Found\r\n"), "%s", r.head);
    ck_assert_str_eq(r.body, "not found\n");
    response_free(&r);
    /* Query and fragment are not part of the path; absolute-form works. */
    roundtrip(c, "GET /echo/q?x=1&y=2 HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_str_eq(r.body, "path=/echo/q\naccept=(null)\naccept-encoding=(null)\nhead=0\n");
    response_free(&r);
    roundtrip(c, "GET http://localhost:9090/echo/abs?x HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_ptr_nonnull(strstr(r.body, "path=/echo/abs\n"));
    response_free(&r);
    /* Empty and repeated headers. */
    roundtrip(c,
              "GET /echo HTTP/1.1\r\nAccept:\r\nAccept-Encoding: gzip\r\n"
              "accept-encoding: br\r\n\r\n",
              &r, false);
    ck_assert_str_eq(r.body, "path=/echo\naccept=\naccept-encoding=gzip, br\nhead=0\n");
    response_free(&r);
    client_close(c);
    harness_stop(&h);
}
END_TEST

START_TEST(test_malformed)
{
    static const char *reqs[] = {
        "GARBAGE / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "GET / HTTP/9.x\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", /* a TLS ClientHello */
    };
    harness_t h;
    harness_start(&h, NULL);
    size_t n = sizeof(reqs) / sizeof(reqs[0]);
    for (size_t i = 0; i < n; i++) {
        client_t *c = client_open(h.port);
        response_t r;
        roundtrip(c, reqs[i], &r, false);
        ck_assert_msg(r.status == 400, "case %zu: %s", i, r.head);
        header_expect(&r, "Connection", "close");
        response_free(&r);
        ck_assert_msg(wait_closed(c, 2000), "case %zu: still open", i);
        client_close(c);
    }
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.bad_requests, n);
    ck_assert_int_eq(h.handler_calls, 0);
}
END_TEST

static const char split_req[] =
    "GET /echo/split?q=1 HTTP/1.1\r\n"
    "Host: localhost\r\n"
    "Accept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate\r\n"
    "User-Agent: check\r\n"
    "\r\n";
static const char split_want[] =
    "path=/echo/split\n"
    "accept=application/openmetrics-text;version=1.0.0,text/plain;q=0.5\n"
    "accept-encoding=gzip, deflate\n"
    "head=0\n";

/* http-parser test_scan: the request cut at every offset, both parts sent
 * apart (TCP_NODELAY + a pause) so the server sees two reads. */
START_TEST(test_split_every_offset)
{
    harness_t h;
    harness_start(&h, NULL);
    client_t *c = client_open(h.port);
    size_t len = strlen(split_req);
    for (size_t i = 1; i < len; i++) {
        send_bytes(c->fd, split_req, i);
        sleep_ms(1);
        send_bytes(c->fd, split_req + i, len - i);
        response_t r;
        ck_assert_msg(read_response(c, &r, false), "offset %zu: no response", i);
        ck_assert_msg(r.status == 200, "offset %zu: %d", i, r.status);
        ck_assert_msg(strcmp(r.body, split_want) == 0, "offset %zu: %s", i, r.body);
        response_free(&r);
    }
    /* And one byte per write. */
    for (size_t i = 0; i < len; i++) {
        send_bytes(c->fd, split_req + i, 1);
        if (i % 8 == 0)
            sleep_ms(1);
    }
    response_t r;
    ck_assert(read_response(c, &r, false));
    ck_assert_str_eq(r.body, split_want);
    response_free(&r);
    client_close(c);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.requests, len);
    ck_assert_uint_eq(h.stats.connections_accepted, 1);
}
END_TEST

START_TEST(test_keepalive_sequential)
{
    harness_t h;
    harness_start(&h, NULL);
    client_t *c = client_open(h.port);
    static const char *paths[] = {"/small", "/metrics", "/nope"};
    static const int status[] = {200, 200, 404};
    for (int i = 0; i < 3; i++) {
        char req[128];
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", paths[i]);
        response_t r;
        roundtrip(c, req, &r, false);
        ck_assert_int_eq(r.status, status[i]);
        header_expect(&r, "Connection", "keep-alive");
        response_free(&r);
    }
    client_close(c);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.connections_accepted, 1);
    ck_assert_uint_eq(h.stats.requests, 3);
}
END_TEST

START_TEST(test_pipelined)
{
    harness_t h;
    harness_start(&h, NULL);
    client_t *c = client_open(h.port);
    send_str(c, "GET /small HTTP/1.1\r\n\r\n"
                "GET /metrics HTTP/1.1\r\n\r\n"
                "GET /nope HTTP/1.1\r\n\r\n");
    am_buf_t want;
    am_buf_init(&want, 0);
    metrics_body(&want);
    response_t r;
    ck_assert(read_response(c, &r, false));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "small\n");
    response_free(&r);
    ck_assert(read_response(c, &r, false));
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, want.data);
    response_free(&r);
    ck_assert(read_response(c, &r, false));
    ck_assert_int_eq(r.status, 404);
    response_free(&r);

    /* More than max_pending_responses in one write: all answered, in order. */
    am_buf_t many;
    am_buf_init(&many, 0);
    for (int i = 0; i < 40; i++)
        am_buf_printf(&many, "GET /echo/%d HTTP/1.1\r\n\r\n", i);
    send_bytes(c->fd, many.data, many.len);
    for (int i = 0; i < 40; i++) {
        ck_assert_msg(read_response(c, &r, false), "response %d missing", i);
        char want_path[64];
        snprintf(want_path, sizeof(want_path), "path=/echo/%d\n", i);
        ck_assert_msg(strncmp(r.body, want_path, strlen(want_path)) == 0, "%d: %s", i, r.body);
        response_free(&r);
    }
    am_buf_free(&many);
    am_buf_free(&want);
    client_close(c);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.requests, 43);
}
END_TEST

/* A deferred answer holds back the pipelined requests behind it, keeps
 * order, takes a gzip body as it is, works with HEAD, and one owed to a
 * client that left is only freed. */
START_TEST(test_deferred)
{
    harness_t h;
    harness_start(&h, NULL);
    client_t *c = client_open(h.port);
    send_str(c, "GET /later HTTP/1.1\r\n\r\n"
                "GET /small HTTP/1.1\r\n\r\n"
                "GET /later HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n"
                "HEAD /later HTTP/1.1\r\n\r\n");
    response_t r;
    ck_assert(read_response(c, &r, false));
    ck_assert_int_eq(r.status, 200);
    header_expect(&r, "Content-Type", METRICS_TYPE);
    header_expect(&r, "Vary", "Accept-Encoding");
    ck_assert(!has_header(&r, "Content-Encoding"));
    ck_assert_str_eq(r.body, "later 0\n");
    response_free(&r);
    ck_assert(read_response(c, &r, false));
    ck_assert_str_eq(r.body, "small\n");
    response_free(&r);
    ck_assert(read_response(c, &r, false));
    header_expect(&r, "Content-Encoding", "gzip");
    size_t n;
    char *plain = gunzip(r.body, r.body_len, &n);
    ck_assert_uint_eq(n, 8);
    ck_assert_mem_eq(plain, "later 1\n", 8);
    free(plain);
    response_free(&r);
    ck_assert(read_response(c, &r, true));
    ck_assert_int_eq(r.status, 200);
    header_expect(&r, "Content-Length", "8");
    response_free(&r);
    /* The connection goes on as usual afterwards. */
    roundtrip(c, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_str_eq(r.body, "small\n");
    response_free(&r);
    client_close(c);

    /* The client leaves before its answer: the answer is dropped (ASan
     * checks it is freed once) and the server carries on. */
    c = client_open(h.port);
    send_str(c, "GET /later HTTP/1.1\r\n\r\n");
    client_close(c);
    sleep_ms(80);
    c = client_open(h.port);
    roundtrip(c, "GET /later HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "later 4\n");
    response_free(&r);
    client_close(c);
    harness_stop(&h);
    ck_assert_int_eq(h.later_sent, 5);
}
END_TEST

START_TEST(test_connection_close)
{
    harness_t h;
    harness_start(&h, NULL);
    response_t r;

    /* HTTP/1.0 without keep-alive: answered, then closed. */
    client_t *c = client_open(h.port);
    roundtrip(c, "GET /small HTTP/1.0\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    header_expect(&r, "Connection", "close");
    response_free(&r);
    ck_assert(wait_closed(c, 2000));
    client_close(c);

    /* HTTP/1.0 keep-alive stays open. */
    c = client_open(h.port);
    for (int i = 0; i < 2; i++) {
        roundtrip(c, "GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", &r, false);
        header_expect(&r, "Connection", "keep-alive");
        response_free(&r);
    }
    client_close(c);

    /* HTTP/1.1 Connection: close; what follows it is not answered. */
    c = client_open(h.port);
    roundtrip(c, "GET /small HTTP/1.1\r\nConnection: close\r\n\r\nGET /metrics HTTP/1.1\r\n\r\n",
              &r, false);
    header_expect(&r, "Connection", "close");
    ck_assert_str_eq(r.body, "small\n");
    response_free(&r);
    ck_assert(!read_response(c, &r, false));
    client_close(c);

    /* A client that half-closes after its request still gets the answer. */
    c = client_open(h.port);
    send_str(c, "GET /small HTTP/1.1\r\n\r\n");
    shutdown(c->fd, SHUT_WR);
    ck_assert(read_response(c, &r, false));
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    ck_assert(wait_closed(c, 2000));
    client_close(c);

    harness_stop(&h);
    ck_assert_uint_eq(h.stats.requests, 5);
}
END_TEST

/* A request of exactly total bytes (request line + headers + blank line). */
static char *sized_request(size_t total)
{
    const char *pre = "GET /small HTTP/1.1\r\nX-Pad: ";
    const char *post = "\r\n\r\n";
    size_t fixed = strlen(pre) + strlen(post);
    ck_assert_uint_gt(total, fixed);
    char *s = malloc(total + 1);
    ck_assert_ptr_nonnull(s);
    strcpy(s, pre);
    memset(s + strlen(pre), 'a', total - fixed);
    strcpy(s + total - strlen(post), post);
    return s;
}

START_TEST(test_header_limit)
{
    harness_t h;
    harness_start(&h, NULL);
    response_t r;

    char *ok = sized_request(16384);
    client_t *c = client_open(h.port);
    roundtrip(c, ok, &r, false);
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    client_close(c);
    free(ok);

    char *over = sized_request(16385);
    c = client_open(h.port);
    roundtrip(c, over, &r, false);
    ck_assert_int_eq(r.status, 431);
    ck_assert_msg(starts_with(r.head, "HTTP/1.1 431 Request Header Fields Too Large\r\n"), "%s",
                  r.head);
    header_expect(&r, "Connection", "close");
    response_free(&r);
    ck_assert(wait_closed(c, 2000));
    client_close(c);
    free(over);

    /* Far over (and more than one read buffer): still a clean 431. */
    char *huge = sized_request(200000);
    c = client_open(h.port);
    roundtrip(c, huge, &r, false);
    ck_assert_int_eq(r.status, 431);
    response_free(&r);
    ck_assert(wait_closed(c, 3000));
    client_close(c);
    free(huge);

    harness_stop(&h);
    ck_assert_uint_eq(h.stats.bad_requests, 2);
    ck_assert_int_eq(h.handler_calls, 1);
}
END_TEST

START_TEST(test_body_limit)
{
    harness_t h;
    harness_start(&h, NULL);
    response_t r;

    /* A small body is read and ignored; the connection goes on. */
    client_t *c = client_open(h.port);
    roundtrip(c, "GET /small HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", &r, false);
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    roundtrip(c, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    client_close(c);

    /* A declared oversized body: refused before it is read. */
    c = client_open(h.port);
    roundtrip(c, "GET /small HTTP/1.1\r\nContent-Length: 70000\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 413);
    header_expect(&r, "Connection", "close");
    response_free(&r);
    ck_assert(wait_closed(c, 2000));
    client_close(c);

    /* A chunked body that grows past the limit. */
    c = client_open(h.port);
    send_str(c, "POST /small HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    char chunk[8200];
    int hl = snprintf(chunk, sizeof(chunk), "%x\r\n", 8000);
    memset(chunk + hl, 'b', 8000);
    memcpy(chunk + hl + 8000, "\r\n", 2);
    for (int i = 0; i < 10; i++)
        send_bytes(c->fd, chunk, (size_t)hl + 8002);
    ck_assert(read_response(c, &r, false));
    ck_assert_int_eq(r.status, 413);
    response_free(&r);
    ck_assert(wait_closed(c, 3000));
    client_close(c);

    harness_stop(&h);
    ck_assert_uint_eq(h.stats.bad_requests, 2);
}
END_TEST

START_TEST(test_gzip_response)
{
    harness_t h;
    harness_start(&h, NULL);
    am_buf_t want;
    am_buf_init(&want, 0);
    metrics_body(&want);
    client_t *c = client_open(h.port);
    static const char *aes[] = {"gzip", "deflate, gzip;q=0.8", "*", "x-gzip"};
    for (size_t i = 0; i < sizeof(aes) / sizeof(aes[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET /metrics HTTP/1.1\r\nAccept-Encoding: %s\r\n\r\n", aes[i]);
        response_t r;
        roundtrip(c, req, &r, false);
        ck_assert_int_eq(r.status, 200);
        header_expect(&r, "Content-Encoding", "gzip");
        header_expect(&r, "Vary", "Accept-Encoding");
        ck_assert_uint_lt(r.body_len, want.len);
        size_t n;
        char *plain = gunzip(r.body, r.body_len, &n);
        ck_assert_uint_eq(n, want.len);
        ck_assert_mem_eq(plain, want.data, n);
        free(plain);
        response_free(&r);
    }
    /* Refused gzip: plain body. */
    response_t r;
    roundtrip(c, "GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip;q=0, identity\r\n\r\n", &r, false);
    ck_assert(!has_header(&r, "Content-Encoding"));
    header_expect(&r, "Vary", "Accept-Encoding");
    ck_assert_str_eq(r.body, want.data);
    response_free(&r);
    client_close(c);
    am_buf_free(&want);
    harness_stop(&h);
}
END_TEST

START_TEST(test_stuck_client)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    l.request_timeout_ms = 300;
    harness_t h;
    harness_start(&h, &l);

    uint64_t t0 = now_ms();
    client_t *stuck = client_open(h.port);
    send_str(stuck, "GET /metrics HTTP/1.1\r\nHost: loc");
    client_t *silent = client_open(h.port);

    /* Others are served at once. */
    for (int i = 0; i < 3; i++) {
        uint64_t t1 = now_ms();
        client_t *c = client_open(h.port);
        response_t r;
        roundtrip(c, "GET /metrics HTTP/1.1\r\n\r\n", &r, false);
        ck_assert_int_eq(r.status, 200);
        ck_assert_uint_lt(now_ms() - t1, 200);
        response_free(&r);
        client_close(c);
    }

    /* The half request gets a 408 and the connection goes. */
    response_t r;
    ck_assert(read_response(stuck, &r, false));
    uint64_t waited = now_ms() - t0;
    ck_assert_int_eq(r.status, 408);
    header_expect(&r, "Connection", "close");
    response_free(&r);
    ck_assert_uint_ge(waited, 250);
    ck_assert_uint_lt(waited, 2000);
    ck_assert(wait_closed(stuck, 2000));
    client_close(stuck);

    /* A connection that never sends a byte is closed without a word. */
    ck_assert(wait_closed(silent, 2000));
    ck_assert_uint_eq(silent->dropped, 0);
    client_close(silent);

    harness_stop(&h);
    ck_assert_uint_eq(h.stats.timeouts, 2);
}
END_TEST

START_TEST(test_idle_timeout)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    l.idle_timeout_ms = 200;
    harness_t h;
    harness_start(&h, &l);
    client_t *c = client_open(h.port);
    response_t r;
    roundtrip(c, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    response_free(&r);
    uint64_t t0 = now_ms();
    ck_assert(wait_closed(c, 2000));
    ck_assert_uint_ge(now_ms() - t0, 150);
    client_close(c);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.timeouts, 1);
}
END_TEST

/* A client that never reads a big response is dropped after write_timeout;
 * meanwhile others are served. */
START_TEST(test_write_timeout)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    /* Far apart, so that a loaded machine cannot blur the two: the other
     * client is served well before the slow one's timeout. */
    l.write_timeout_ms = 1500;
    harness_t h;
    harness_start(&h, &l);
    client_t *slow = calloc(1, sizeof(*slow));
    ck_assert_ptr_nonnull(slow);
    slow->fd = connect_port(h.port, 4096);
    send_str(slow, "GET /big HTTP/1.1\r\n\r\n");
    sleep_ms(50);

    uint64_t t1 = now_ms();
    client_t *c = client_open(h.port);
    response_t r;
    roundtrip(c, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_uint_lt(now_ms() - t1, 1000);
    response_free(&r);
    client_close(c);

    sleep_ms(1500);
    ck_assert(wait_closed(slow, 3000));
    client_close(slow);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.timeouts, 1);
}
END_TEST

/* At the cap with every open connection waiting on the server (a deferred
 * answer), nothing is shed: the new connection is closed at once. */
START_TEST(test_max_connections)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    l.max_connections = 2;
    harness_t h;
    harness_start(&h, &l);
    client_t *a = client_open(h.port);
    client_t *b = client_open(h.port);
    send_str(a, "GET /hold HTTP/1.1\r\n\r\n");
    send_str(b, "GET /hold HTTP/1.1\r\n\r\n");
    sleep_ms(50);

    client_t *over = client_open(h.port);
    ck_assert(wait_closed(over, 2000));
    ck_assert_uint_eq(over->dropped, 0);
    client_close(over);

    /* Both are answered when the stop begins. */
    response_t r;
    harness_request_stop(&h);
    for (int i = 0; i < 2; i++) {
        ck_assert(read_response(i ? b : a, &r, false));
        ck_assert_str_eq(r.body, "held\n");
        response_free(&r);
    }
    client_close(a);
    client_close(b);
    harness_join(&h);
    ck_assert_uint_eq(h.stats.connections_rejected, 1);
    ck_assert_uint_eq(h.stats.connections_shed, 0);
    ck_assert_uint_eq(h.stats.connections_accepted, 2);
}
END_TEST

/* The connection that has waited longest on its client goes first: a
 * request head that is still incomplete past the grace, before an idle
 * keep-alive one; then the longest idle one. The new ones are served. */
START_TEST(test_shed_slow_head_then_idle)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    l.max_connections = 2;
    l.shed_grace_ms = 100;
    harness_t h;
    harness_start(&h, &l);
    response_t r;
    client_t *slow = client_open(h.port);
    send_str(slow, "GET /small HTTP/1.1\r\nHo");
    client_t *idle = client_open(h.port);
    roundtrip(idle, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    response_free(&r);
    sleep_ms(200);

    /* The slow head goes (silently: it is shed, not timed out). */
    client_t *n1 = client_open(h.port);
    roundtrip(n1, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    ck_assert(wait_closed(slow, 2000));
    ck_assert_uint_eq(slow->dropped, 0);
    client_close(slow);

    /* Two idle ones now: the one idle longest goes, the other stays. */
    sleep_ms(20);
    client_t *n2 = client_open(h.port);
    roundtrip(n2, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    response_free(&r);
    ck_assert(wait_closed(idle, 2000));
    client_close(idle);
    roundtrip(n1, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    client_close(n1);
    client_close(n2);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.connections_shed, 2);
    ck_assert_uint_eq(h.stats.connections_rejected, 0);
    ck_assert_uint_eq(h.stats.timeouts, 0);
}
END_TEST

/* A response its client does not read, stalled past the grace, goes
 * before an idle keep-alive connection. */
START_TEST(test_shed_stalled_writer)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    l.max_connections = 2;
    l.shed_grace_ms = 100;
    harness_t h;
    harness_start(&h, &l);
    response_t r;
    client_t *stuck = calloc(1, sizeof(*stuck));
    ck_assert_ptr_nonnull(stuck);
    stuck->fd = connect_port(h.port, 4096);
    send_str(stuck, "GET /big HTTP/1.1\r\n\r\n");
    client_t *idle = client_open(h.port);
    roundtrip(idle, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    response_free(&r);
    sleep_ms(300);

    client_t *n = client_open(h.port);
    roundtrip(n, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    ck_assert(wait_closed(stuck, 2000));
    ck_assert_uint_lt(stuck->dropped, BIG_BODY_BYTES);
    client_close(stuck);
    roundtrip(idle, "GET /small HTTP/1.1\r\n\r\n", &r, false); /* still open */
    response_free(&r);
    client_close(idle);
    client_close(n);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.connections_shed, 1);
}
END_TEST

/* Connections that send nothing, faster than the grace: each newcomer
 * pushes out the oldest head (one a few ms old at least), so a client that
 * does send its request is served; a head that just arrived is kept. */
START_TEST(test_shed_oldest_young_head)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    l.max_connections = 2;
    l.shed_grace_ms = 5000;
    harness_t h;
    harness_start(&h, &l);
    response_t r;
    client_t *a = client_open(h.port);
    send_str(a, "GET /sma");
    sleep_ms(50);
    client_t *b = client_open(h.port);
    send_str(b, "GET /sma");
    sleep_ms(50);
    client_t *c = client_open(h.port); /* a goes: the oldest head */
    ck_assert(wait_closed(a, 2000));
    client_close(a);
    send_str(b, "ll HTTP/1.1\r\n\r\n"); /* b was kept */
    ck_assert(read_response(b, &r, false));
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    roundtrip(c, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    response_free(&r);
    client_close(b);
    client_close(c);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.connections_shed, 1);
    ck_assert_uint_eq(h.stats.connections_rejected, 0);
}
END_TEST

/* A client that pipelines requests for big answers and never reads holds
 * one answer: no request is read while more than max_conn_queued_bytes
 * are unsent. */
START_TEST(test_conn_queue_cap)
{
    harness_t h;
    harness_start(&h, NULL);
    client_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    c->fd = connect_port(h.port, 4096);
    for (int i = 0; i < 8; i++)
        send_str(c, "GET /big HTTP/1.1\r\n\r\n");
    sleep_ms(300);
    client_close(c);
    harness_stop(&h);
    ck_assert_int_eq(h.handler_calls, 1);
}
END_TEST

/* Shared bodies: one body, many answers; once newer bodies exist, older
 * ones held by readers that stall count against max_queued_bytes and
 * their holders go, the oldest body first; a reader that keeps up is not
 * touched, however many bodies are made meanwhile. */
START_TEST(test_queue_budget)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    l.max_queued_bytes = 1024 * 1024; /* less than one 2 MiB body */
    l.hold_grace_ms = 50;
    harness_t h;
    harness_start(&h, &l);
    response_t r;

    /* Two readers of the same body: one copy, both get it whole. */
    client_t *f1 = client_open(h.port);
    client_t *f2 = client_open(h.port);
    send_str(f1, "GET /shared HTTP/1.1\r\n\r\n");
    send_str(f2, "GET /shared HTTP/1.1\r\n\r\n");
    for (int i = 0; i < 2; i++) {
        ck_assert(read_response(i ? f2 : f1, &r, false));
        ck_assert_int_eq(r.status, 200);
        ck_assert_uint_eq(r.body_len, h.shared_len);
        ck_assert(r.body[0] == r.body[h.shared_len - 1]);
        response_free(&r);
    }

    /* Two stalled readers of two different bodies. */
    client_t *s1 = calloc(1, sizeof(*s1)), *s2 = calloc(1, sizeof(*s2));
    ck_assert(s1 && s2);
    s1->fd = connect_port(h.port, 4096);
    send_str(s1, "GET /shared HTTP/1.1\r\n\r\n");
    sleep_ms(150);
    s2->fd = connect_port(h.port, 4096);
    send_str(s2, "GET /shared HTTP/1.1\r\n\r\n");
    sleep_ms(150);

    /* A new body: the two old ones (4 MiB) are over the budget; both
     * holders go, and the reader of the new one gets it whole. */
    roundtrip(f1, "GET /shared HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_uint_eq(r.body_len, h.shared_len);
    response_free(&r);
    ck_assert(wait_closed(s1, 2000));
    ck_assert(wait_closed(s2, 2000));
    ck_assert_uint_lt(s1->dropped, h.shared_len);
    client_close(s1);
    client_close(s2);

    /* Readers that keep up are never shed, even with a new body every
     * tick and a budget smaller than one. */
    for (int i = 0; i < 5; i++) {
        send_str(f1, "GET /shared HTTP/1.1\r\n\r\n");
        sleep_ms(25);
        send_str(f2, "GET /shared HTTP/1.1\r\n\r\n");
        for (int k = 0; k < 2; k++) {
            ck_assert(read_response(k ? f2 : f1, &r, false));
            ck_assert_uint_eq(r.body_len, h.shared_len);
            response_free(&r);
        }
    }
    client_close(f1);
    client_close(f2);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.connections_shed, 2);
    ck_assert_int_ge(h.shared_made, 4);
}
END_TEST

/* A reader that takes its answer, but slower than min_send_rate, is closed
 * once the grace plus the bytes at that rate have passed; one that keeps
 * up gets the whole body. */
START_TEST(test_send_rate)
{
    am_http_limits_t l;
    am_http_limits_default(&l);
    l.min_send_rate = 64u * 1024 * 1024; /* 16 MiB: due 250 ms after the grace */
    l.send_grace_ms = 250;
    harness_t h;
    harness_start(&h, &l);
    response_t r;
    client_t *fast = client_open(h.port);
    roundtrip(fast, "GET /big HTTP/1.1\r\n\r\n", &r, false);
    ck_assert_uint_eq(r.body_len, BIG_BODY_BYTES);
    response_free(&r);
    client_close(fast);

    client_t *slow = calloc(1, sizeof(*slow));
    ck_assert_ptr_nonnull(slow);
    slow->fd = connect_port(h.port, 4096);
    send_str(slow, "GET /big HTTP/1.1\r\n\r\n");
    uint64_t t0 = now_ms();
    size_t got = 0;
    bool closed = false;
    char buf[16384];
    while (!closed && now_ms() - t0 < 3000) { /* about 1 MB/s: reading, slowly */
        ssize_t n = recv(slow->fd, buf, sizeof(buf), 0);
        if (n <= 0)
            closed = true;
        else
            got += (size_t)n;
        sleep_ms(15);
    }
    ck_assert(closed);
    ck_assert_uint_gt(got, 0);
    ck_assert_uint_lt(got, BIG_BODY_BYTES);
    ck_assert_uint_ge(now_ms() - t0, 400);
    client_close(slow);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.timeouts, 1);
}
END_TEST

/* Expect: 100-continue on a method we refuse: 405 at once (not a wait for
 * a body the client holds back), then the connection ends. A GET with it,
 * or a POST without a body, is answered as usual. */
START_TEST(test_expect_continue)
{
    harness_t h;
    harness_start(&h, NULL);
    response_t r;
    static const char *const heads[] = {
        "POST /metrics HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n",
        "PUT /x HTTP/1.1\r\nexpect: 100-Continue\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (size_t i = 0; i < 2; i++) {
        client_t *c = client_open(h.port);
        uint64_t t0 = now_ms();
        roundtrip(c, heads[i], &r, false);
        ck_assert_uint_lt(now_ms() - t0, 1000);
        ck_assert_int_eq(r.status, 405);
        header_expect(&r, "Allow", "GET, HEAD");
        header_expect(&r, "Connection", "close");
        response_free(&r);
        ck_assert(wait_closed(c, 2000));
        client_close(c);
    }
    client_t *c = client_open(h.port);
    roundtrip(c, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 405);
    header_expect(&r, "Connection", "keep-alive");
    response_free(&r);
    roundtrip(c, "GET /small HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", &r, false);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "small\n");
    response_free(&r);
    client_close(c);
    harness_stop(&h);
    ck_assert_uint_eq(h.stats.requests, 4);
}
END_TEST

static void count_done(void *ctx)
{
    (*(int *)ctx)++;
}

static void never_called(void *ctx, const am_http_request_t *req, am_http_response_t *resp)
{
    ck_abort_msg("handler called");
}

START_TEST(test_start_stop)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    am_http_limits_t l;
    am_http_limits_default(&l);
    am_http_server_t *srv = NULL, *other = NULL;
    ck_assert_int_eq(am_http_server_start(&loop, "127.0.0.1", 0, &l, never_called, NULL, &srv), 0);
    int port = am_http_server_port(srv);
    ck_assert_int_gt(port, 0);
    const am_http_stats_t *st = am_http_server_stats(srv);
    ck_assert_uint_eq(st->connections_open, 0);

    /* Failures are synchronous and leave nothing on the loop. */
    ck_assert_int_eq(am_http_server_start(&loop, "127.0.0.1", port, &l, never_called, NULL, &other),
                     UV_EADDRINUSE);
    ck_assert_int_eq(am_http_server_start(&loop, "not-an-ip", 0, &l, never_called, NULL, &other),
                     UV_EINVAL);
    ck_assert_int_eq(am_http_server_start(&loop, "localhost", 0, &l, never_called, NULL, &other),
                     UV_EINVAL);
    ck_assert_int_eq(
        am_http_server_start(&loop, "127.0.0.1", 70000, &l, never_called, NULL, &other), UV_EINVAL);
    ck_assert_ptr_null(other);

    int done = 0;
    am_http_server_stop(srv, count_done, &done);
    ck_assert_int_eq(done, 0); /* done comes from the loop, never from stop */
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(done, 1);

    /* The port is free again; IPv6 when the host has it. */
    ck_assert_int_eq(am_http_server_start(&loop, "127.0.0.1", port, &l, never_called, NULL, &srv),
                     0);
    am_http_server_stop(srv, count_done, &done);
    int err = am_http_server_start(&loop, "::1", 0, &l, never_called, NULL, &other);
    ck_assert_msg(err == 0 || err == UV_EADDRNOTAVAIL || err == UV_EAFNOSUPPORT, "%s",
                  uv_strerror(err));
    if (err == 0) {
        ck_assert_int_gt(am_http_server_port(other), 0);
        am_http_server_stop(other, count_done, &done);
    }
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(done, err == 0 ? 3 : 2);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

/* Stop with an idle keep-alive client and a big response half written: the
 * idle one is closed at once, the response is finished, then done. */
START_TEST(test_stop_graceful)
{
    harness_t h;
    harness_start(&h, NULL);
    client_t *idle = client_open(h.port);
    response_t r;
    roundtrip(idle, "GET /small HTTP/1.1\r\n\r\n", &r, false);
    response_free(&r);

    client_t *busy = client_open(h.port);
    send_str(busy, "GET /big HTTP/1.1\r\n\r\n");
    ck_assert(fill(busy)); /* the response has started */
    harness_request_stop(&h);
    ck_assert(wait_closed(idle, 2000));
    client_close(idle);

    ck_assert(read_response(busy, &r, false));
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, BIG_BODY_BYTES);
    ck_assert(r.body[0] == 'x' && r.body[BIG_BODY_BYTES - 1] == 'x');
    response_free(&r);
    ck_assert(wait_closed(busy, 2000));
    client_close(busy);
    harness_join(&h);
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *neg = tcase_create("helpers");
    tcase_add_test(neg, test_gzip_all);
    tcase_add_test(neg, test_limits_default);
    suite_add_tcase(s, neg);

    TCase *srv = tcase_create("server");
    tcase_set_timeout(srv, 20);
    tcase_add_test(srv, test_get_exact_headers);
    tcase_add_test(srv, test_head);
    tcase_add_test(srv, test_basic_auth);
    tcase_add_test(srv, test_method_not_allowed);
    tcase_add_test(srv, test_not_found_and_query);
    tcase_add_test(srv, test_malformed);
    tcase_add_test(srv, test_split_every_offset);
    tcase_add_test(srv, test_keepalive_sequential);
    tcase_add_test(srv, test_pipelined);
    tcase_add_test(srv, test_deferred);
    tcase_add_test(srv, test_connection_close);
    tcase_add_test(srv, test_header_limit);
    tcase_add_test(srv, test_body_limit);
    tcase_add_test(srv, test_gzip_response);
    tcase_add_test(srv, test_stuck_client);
    tcase_add_test(srv, test_idle_timeout);
    tcase_add_test(srv, test_write_timeout);
    tcase_add_test(srv, test_max_connections);
    tcase_add_test(srv, test_shed_slow_head_then_idle);
    tcase_add_test(srv, test_shed_stalled_writer);
    tcase_add_test(srv, test_shed_oldest_young_head);
    tcase_add_test(srv, test_conn_queue_cap);
    tcase_add_test(srv, test_queue_budget);
    tcase_add_test(srv, test_send_rate);
    tcase_add_test(srv, test_expect_continue);
    tcase_add_test(srv, test_start_stop);
    tcase_add_test(srv, test_stop_graceful);
    suite_add_tcase(s, srv);
    return s;
}

int main(void)
{
    /* libuv writes with write(2): a peer gone mid-response must be an
     * EPIPE, not a signal (the daemon ignores SIGPIPE the same way). */
    signal(SIGPIPE, SIG_IGN);
    SRunner *sr = srunner_create(http_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
