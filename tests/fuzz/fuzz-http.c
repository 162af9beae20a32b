/* Fuzz harness: one input is what one client sends on one connection to
 * the real HTTP server (src/http: http.c accepting, conn.c reading and
 * writing, request.c's http-parser callbacks, pipelining, bodies, Expect,
 * deferred and shared answers; negotiate.c on every /metrics request's
 * Accept and Accept-Encoding), over a real loopback TCP socket: the server
 * is driven exactly as the daemon drives it, with no seam in its code.
 *
 * Input: byte 0 chooses how the rest is sent (bits 0-1: in one piece, or
 * in pieces of 1, 7 or 61 bytes with loop turns between them, so the
 * server reads it split; bit 2: the client half-closes after sending, else
 * it reads for a while and then closes, with a reset; bit 3: deferred /metrics answers
 * are finished with shared bodies). The rest is the byte stream.
 *
 * Checks (abort() when violated): what the server sends starts with an
 * HTTP/1.1 status line; a handler sees a path that starts with '/' and a
 * negotiated type that is one of the two; after a half-close the server
 * closes the connection, and in every case it frees it (the open count
 * returns to zero) within a bounded number of loop turns: no connection is
 * leaked or left waiting. The server lives for the whole process (one per
 * process, port 0 on 127.0.0.1), as the daemon's does. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "buf.h"
#include "http.h"
#include "expose.h"
#include "negotiate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum {
    MAX_TURNS = 20000, /* loop turns allowed for the server to finish a connection */
    MAX_PENDING = 8,   /* deferred answers held at once (one per connection is the rule) */
};

static uv_loop_t loop;
static am_http_server_t *srv;
static uv_timer_t finisher;
static am_http_deferred_t *pending[MAX_PENDING];
static size_t npending;
static bool use_shared;

static void fill_metrics(am_buf_t *b)
{
    am_buf_puts(b, "# HELP fuzz_gauge A gauge.\n# TYPE fuzz_gauge gauge\nfuzz_gauge 1\n");
}

/* The deferred answers, a loop turn after they were deferred (as a scrape
 * rendered between turns). */
static void on_finish(uv_timer_t *t)
{
    (void)t;
    for (size_t i = 0; i < npending; i++) {
        am_buf_t b;
        am_buf_init(&b, 0);
        fill_metrics(&b);
        if (use_shared) {
            am_http_body_t *body = am_http_body_new(srv, &b);
            if (body) {
                am_http_deferred_finish_shared(pending[i], body, false);
                am_http_body_release(body);
            } else {
                am_http_deferred_finish(pending[i], &b, false);
            }
        } else {
            am_http_deferred_finish(pending[i], &b, false);
        }
        am_buf_free(&b);
    }
    npending = 0;
}

static bool path_is(const am_http_request_t *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

/* As the daemon's handler (server.c): /metrics negotiated and deferred,
 * /health and / at once, 404 otherwise. */
static void handler(void *ctx, const am_http_request_t *req, am_http_response_t *resp)
{
    (void)ctx;
    if (!req->path || req->path_len == 0 || req->path[0] != '/' ||
        strlen(req->path) != req->path_len)
        abort();
    if (path_is(req, "/metrics")) {
        am_negotiated_t n;
        am_negotiate(req->accept, req->accept_encoding, &n);
        if (!n.content_type || (strcmp(n.content_type, AM_CONTENT_TYPE_TEXT) != 0 &&
                                strcmp(n.content_type, AM_CONTENT_TYPE_OPENMETRICS) != 0))
            abort();
        resp->content_type = n.content_type;
        resp->vary_encoding = true;
        if (npending < MAX_PENDING) {
            am_http_deferred_t *d = am_http_defer(resp);
            if (d) {
                pending[npending++] = d;
                uv_timer_start(&finisher, on_finish, 0, 0);
                return;
            }
        }
        fill_metrics(resp->body);
    } else if (path_is(req, "/health")) {
        resp->content_type = "application/json";
        am_buf_puts(resp->body, "{\"status\":\"ok\"}\n");
    } else if (!path_is(req, "/")) {
        resp->status = 404;
        am_buf_puts(resp->body, "404 not found\n");
    }
}

static void start_server(void)
{
    signal(SIGPIPE, SIG_IGN); /* the server writes with write(2) */
    if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &finisher) != 0)
        abort();
    am_http_limits_t l;
    am_http_limits_default(&l);
    /* small enough for fuzz inputs (at most 4 KiB) to reach every limit */
    l.max_header_bytes = 1024;
    l.max_body_bytes = 64;
    l.max_pending_responses = 2;
    l.max_conn_queued_bytes = 256;
    if (am_http_server_start(&loop, "127.0.0.1", 0, &l, handler, NULL, &srv) != 0)
        abort();
}

static int connect_client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        abort();
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)am_http_server_port(srv)),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* close() resets instead of leaving the port in TIME_WAIT: a run of
     * millions of connections would exhaust the ephemeral ports */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    /* a blocking connect completes from the kernel's backlog, before the
     * server's loop accepts it */
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        abort();
    return fd;
}

/* What the client has received so far: the first bytes kept for checks. */
typedef struct received {
    char head[16];
    size_t n;
    bool eof;
} received_t;

static void drain(int fd, received_t *rx)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            for (ssize_t i = 0; i < n && rx->n + (size_t)i < sizeof(rx->head); i++)
                rx->head[rx->n + (size_t)i] = buf[i];
            rx->n += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            rx->eof = true; /* EOF, or reset by the server */
        return;
    }
}

static void turns(int fd, received_t *rx, int k)
{
    for (int i = 0; i < k; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        if (fd >= 0)
            drain(fd, rx);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv)
        start_server();
    if (size == 0)
        return 0;
    static const size_t pieces[4] = {SIZE_MAX, 1, 7, 61};
    uint8_t mode = data[0];
    size_t piece = pieces[mode & 3];
    bool half_close = mode & 4;
    use_shared = mode & 8;
    data++;
    size--;

    const am_http_stats_t *st = am_http_server_stats(srv);
    uint64_t accepted = st->connections_accepted;
    int fd = connect_client();
    received_t rx = {{0}, 0, false};
    for (int i = 0; i < MAX_TURNS && st->connections_accepted == accepted; i++)
        turns(-1, &rx, 1);
    if (st->connections_accepted == accepted)
        abort(); /* never accepted */

    for (size_t off = 0; off < size && !rx.eof;) {
        size_t n = size - off < piece ? size - off : piece;
        ssize_t w = send(fd, data + off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break; /* the server closed: what is left is never read */
        if (w > 0)
            off += (size_t)w;
        turns(fd, &rx, 2);
    }
    if (half_close) {
        shutdown(fd, SHUT_WR);
        for (int i = 0; i < MAX_TURNS && !rx.eof; i++)
            turns(fd, &rx, 1);
        if (!rx.eof)
            abort(); /* a half-closed client left waiting */
    } else {
        turns(fd, &rx, 8);
    }
    close(fd);
    for (int i = 0; i < MAX_TURNS && st->connections_open > 0; i++)
        turns(-1, &rx, 1);
    if (st->connections_open > 0)
        abort(); /* the server kept a connection whose client has gone */
    if (rx.n > 0 && memcmp(rx.head, "HTTP/1.1 ", rx.n < 9 ? rx.n : 9) != 0)
        abort();
    return 0;
}
