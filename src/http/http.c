/* http: the scrape endpoint's HTTP/1.1 server (see http.h): the listener,
 * accepting (and refusing past max_connections or out of memory), start
 * and graceful stop. Connections are conn.c's, requests request.c's
 * (http-internal.h maps the files). */
#include "http.h"
#include "http-internal.h"

#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"

#define LISTEN_BACKLOG 511

void am_http_limits_default(am_http_limits_t *limits)
{
    limits->max_header_bytes = 16384;
    limits->max_body_bytes = 65536;
    limits->idle_timeout_ms = 60000;
    limits->request_timeout_ms = 10000;
    limits->write_timeout_ms = 60000;
    limits->max_connections = 512;
    limits->max_pending_responses = 16;
}

void am_http__maybe_finish(am_http_server_t *srv)
{
    if (!srv->stopping || !srv->listener_closed || srv->conns || srv->rejects_closing ||
        srv->spare_busy)
        return;
    void (*done)(void *) = srv->done;
    void *ctx = srv->done_ctx;
    free(srv);
    if (done)
        done(ctx);
}

/* ---- accepting ---- */

static void on_reject_closed(uv_handle_t *h)
{
    am_http_server_t *srv = h->data;
    free(h);
    assert(srv->rejects_closing > 0);
    srv->rejects_closing--;
    am_http__maybe_finish(srv);
}

static void accept_one(am_http_server_t *srv);

static void on_spare_closed(uv_handle_t *h)
{
    am_http_server_t *srv = h->data;
    srv->spare_busy = false;
    if (srv->accept_stalled && !srv->stopping) {
        srv->accept_stalled = false;
        accept_one(srv);
    }
    am_http__maybe_finish(srv);
}

/* Accepts one pending connection and closes it at once: over the
 * connection cap, or out of memory. */
static void accept_and_close(am_http_server_t *srv)
{
    uv_tcp_t *t = malloc(sizeof(*t));
    uv_close_cb cb = on_reject_closed;
    if (!t) {
        /* Without accepting, libuv stops polling the listener: use the
         * preallocated handle, or retry when it is free again. */
        if (srv->spare_busy) {
            srv->accept_stalled = true;
            return;
        }
        t = &srv->spare;
        cb = on_spare_closed;
        srv->spare_busy = true;
    } else {
        srv->rejects_closing++;
    }
    t->data = srv;
    if (uv_tcp_init(srv->loop, t) < 0) {
        /* Not a handle yet: undo by hand. */
        if (cb == on_reject_closed) {
            srv->rejects_closing--;
            free(t);
        } else {
            srv->spare_busy = false;
        }
        return;
    }
    t->data = srv;
    (void)uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, cb);
}

static void accept_one(am_http_server_t *srv)
{
    const am_http_limits_t *l = &srv->limits;
    if (l->max_connections && srv->stats.connections_open >= l->max_connections) {
        srv->stats.connections_rejected++;
        am_log(AM_LOG_DEBUG, "event=http_reject_connection open=%u", srv->stats.connections_open);
        accept_and_close(srv);
        return;
    }
    if (am_http__conn_accept(srv) < 0)
        accept_and_close(srv);
}

static void on_connection(uv_stream_t *listener, int status)
{
    am_http_server_t *srv = listener->data;
    if (status < 0) {
        am_log(AM_LOG_WARN, "event=http_accept_error error=%s", uv_err_name(status));
        return;
    }
    accept_one(srv);
}

/* ---- start, stop ---- */

static void on_listener_closed(uv_handle_t *h)
{
    am_http_server_t *srv = h->data;
    srv->listener_closed = true;
    if (srv->start_failed) {
        free(srv);
        return;
    }
    am_http__maybe_finish(srv);
}

/* Binds with our own syscalls so every likely failure (bad address, port in
 * use) happens before a libuv handle exists: start then fails synchronously
 * and the loop holds nothing to close. */
static int bind_listen(const char *host, int port, int *fd_out, int *port_out)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sslen;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&ss) == 0) {
        sslen = sizeof(struct sockaddr_in);
    } else if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&ss) == 0) {
        sslen = sizeof(struct sockaddr_in6);
    } else {
        return UV_EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    /* As libuv does: a restarted daemon rebinds despite TIME_WAIT. */
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof(bound);
    if (getsockname(fd, (struct sockaddr *)&bound, &blen) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *port_out = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    *fd_out = fd;
    return 0;
}

int am_http_server_start(uv_loop_t *loop, const char *host, int port,
                         const am_http_limits_t *limits, am_http_handler_fn handler, void *ctx,
                         am_http_server_t **out)
{
    if (!loop || !host || !limits || !handler || !out || port < 0 || port > 65535)
        return UV_EINVAL;
    int fd, bound_port;
    int err = bind_listen(host, port, &fd, &bound_port);
    if (err < 0)
        return err;
    am_http_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv) {
        close(fd);
        return UV_ENOMEM;
    }
    srv->loop = loop;
    srv->limits = *limits;
    srv->handler = handler;
    srv->ctx = ctx;
    srv->port = bound_port;
    am_http__parser_settings(&srv->settings);
    err = uv_tcp_init(loop, &srv->listener);
    if (err < 0) {
        close(fd);
        free(srv);
        return err;
    }
    srv->listener.data = srv;
    err = uv_tcp_open(&srv->listener, fd);
    if (err < 0)
        close(fd); /* not adopted: uv_close will not close it */
    else
        err = uv_listen((uv_stream_t *)&srv->listener, LISTEN_BACKLOG, on_connection);
    if (err < 0) {
        /* Unlikely (fd bookkeeping): the handle exists, so the memory goes in
         * its close callback on the next loop turn. */
        srv->start_failed = true;
        uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
        return err;
    }
    *out = srv;
    return 0;
}

int am_http_server_port(const am_http_server_t *srv)
{
    return srv->port;
}

const am_http_stats_t *am_http_server_stats(const am_http_server_t *srv)
{
    return &srv->stats;
}

void am_http_server_stop(am_http_server_t *srv, void (*done)(void *ctx), void *ctx)
{
    if (srv->stopping)
        return;
    srv->stopping = true;
    srv->done = done;
    srv->done_ctx = ctx;
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    for (am_http_conn_t *c = srv->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (c->writes > 0) {
            /* Let the response finish; on_write then closes. */
            c->final = true;
            c->roff = c->rlen;
            continue;
        }
        am_http__conn_close(c);
    }
}
