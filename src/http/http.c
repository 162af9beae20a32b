/* http: the scrape endpoint's HTTP/1.1 server (see http.h): the listener,
 * accepting, start and graceful stop, and the limits that span
 * connections: which connection goes when max_connections are open, and
 * the budget of unsent bytes. Connections are conn.c's, requests
 * request.c's (http-internal.h maps the files).
 *
 * Every attacker of a sidecar comes from the same loopback address as the
 * good scraper, so a connection is judged by what it does, as nginx,
 * envoy and Go's http.Server judge it by their deadlines: a request head
 * that takes long, an answer its client does not read. The deadlines
 * (conn.c) free such connections in the end; these rules free them at
 * once when a new connection or memory needs the room. */
#include "http.h"
#include "http-internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
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
    limits->min_send_rate = 65536;
    limits->send_grace_ms = 10000;
    limits->max_connections = 1024;
    limits->shed_grace_ms = 1000;
    limits->hold_grace_ms = 20;
    limits->max_pending_responses = 16;
    limits->max_conn_queued_bytes = 16384;
    limits->max_queued_bytes = 0;
}

/* ---- the limits across connections ---- */

/* What a connection is doing, for the choice of which one to shed: the
 * higher the worse. */
/* Waiting on its client for less than this, a connection is never shed:
 * the connections that arrive together (one loop turn accepts them all) do
 * not push each other out before any could send its request, and a reader
 * that keeps up takes some of its answer every loop turn. */
#define YOUNG_MIN_MS 10

/* At the cap with no connection to shed, a new one waits at most this long
 * for a slot before it is closed. */
#define ACCEPT_WAIT_MS 500

typedef enum shed_rank {
    RANK_KEEP = 0,     /* waiting on us, or on its client for under YOUNG_MIN_MS */
    RANK_YOUNG = 1,    /* waiting on its client for less than shed_grace_ms */
    RANK_IDLE = 2,     /* kept alive between requests */
    RANK_WAITING = 3,  /* waiting on its client for shed_grace_ms or longer */
    RANK_FINISHED = 4, /* answered; only draining the client before the close */
} shed_rank_t;

static shed_rank_t shed_rank(am_http_conn_t *c, uint64_t now, uint64_t *wait)
{
    uint64_t grace = c->srv->limits.shed_grace_ms;
    *wait = 0;
    /* A streamed answer with writes in flight waits on its client. */
    bool streaming = c->deferred && c->deferred->stream && c->writes > 0;
    if (c->closing || (c->deferred && !streaming) || c->auth_wait)
        return RANK_KEEP;
    if (c->lingering || (c->shutting && c->writes == 0))
        return RANK_FINISHED;
    if (c->writes > 0) {
        *wait = am_http__conn_stalled_ms(c, now);
    } else if (c->in_request) {
        *wait = now > c->request_start ? now - c->request_start : 0;
    } else {
        *wait = now > c->idle_since ? now - c->idle_since : 0;
        return RANK_IDLE;
    }
    if (*wait >= grace)
        return RANK_WAITING;
    return *wait >= YOUNG_MIN_MS ? RANK_YOUNG : RANK_KEEP;
}

/* The connection to close so that a new one can be served, or NULL when
 * every open one is better kept (then the new one is closed). In order:
 * one already answered and draining; the one that has waited longest on
 * its client (a request head still incomplete, an answer not progressing),
 * once it has waited shed_grace_ms; the longest idle keep-alive one; then
 * again the one waiting longest on its client, however briefly (a flood
 * that reconnects faster than the grace: each newcomer pushes out the
 * oldest, so a good client has as many arrivals' time to send its head or
 * read). Never one that waits on us (a deferred answer), nor one waiting
 * on its client for under YOUNG_MIN_MS: a reader that keeps up takes some
 * of its answer every loop turn. O(open connections), only at the cap. */
static am_http_conn_t *pick_shed_victim(am_http_server_t *srv, uint64_t now)
{
    am_http_conn_t *best = NULL;
    shed_rank_t best_rank = RANK_YOUNG; /* RANK_KEEP never goes */
    uint64_t best_wait = 0;
    for (am_http_conn_t *c = srv->conns; c; c = c->next) {
        uint64_t wait;
        shed_rank_t r = shed_rank(c, now, &wait);
        if (r < best_rank || (best && r == best_rank && wait <= best_wait))
            continue;
        best = c;
        best_rank = r;
        best_wait = wait;
    }
    return best;
}

typedef struct holder {
    am_http_conn_t *c;
    uint64_t gen;   /* of the oldest counted body it holds */
    uint64_t stall; /* ms without progress */
} holder_t;

/* The longest stalled first, then the oldest body. */
static int holder_cmp(const void *a, const void *b)
{
    const holder_t *x = a, *y = b;
    if (x->stall != y->stall)
        return x->stall > y->stall ? -1 : 1;
    return x->gen < y->gen ? -1 : x->gen > y->gen;
}

/* While unsent answers hold more superseded bodies than the budget, their
 * holders that made no progress for hold_grace_ms are closed, the longest
 * stalled first (of the oldest body on a tie), until the bodies freed
 * bring the total under. A reader that keeps up is not one of them,
 * however many bodies are made while it reads: it takes some of its answer
 * whenever the loop writes to it, while a slow one has taken nothing since
 * it got its body. The budget may be passed for as long as the readers
 * that keep up take, and by the bodies of the last hold_grace_ms. (Private answers are not counted:
 * the daemon's are small, /health and errors, and each connection holds at most
 * max_pending_responses of them.) One sort per call, only when over. */
void am_http__enforce_queue_cap(am_http_server_t *srv)
{
    if (!srv->queued_cap || srv->queued_old <= srv->queued_cap || srv->enforce_held)
        return;
    uint64_t now = uv_now(srv->loop);
    size_t n = 0;
    for (am_http_conn_t *c = srv->conns; c; c = c->next)
        n += !c->closing && am_http__conn_oldest_counted(c) != 0;
    holder_t *h = malloc((n ? n : 1) * sizeof(*h));
    if (!h) {
        am_log(AM_LOG_WARN, "event=http_oom where=queue_cap");
        return; /* over the budget until the next try */
    }
    size_t k = 0;
    for (am_http_conn_t *c = srv->conns; c && k < n; c = c->next) {
        uint64_t gen = c->closing ? 0 : am_http__conn_oldest_counted(c);
        uint64_t stall = gen ? am_http__conn_stalled_ms(c, now) : 0;
        if (gen && stall >= srv->limits.hold_grace_ms)
            h[k++] = (holder_t){c, gen, stall};
    }
    qsort(h, k, sizeof(*h), holder_cmp);
    for (size_t i = 0; i < k && srv->queued_old > srv->queued_cap; i++) {
        srv->stats.connections_shed++;
        char peer[80];
        am_log(AM_LOG_DEBUG,
               "event=http_shed reason=queued_bytes queued=%zu body=%" PRIu64 " stalled_ms=%" PRIu64
               " peer=%s",
               srv->queued_old, h[i].gen, h[i].stall,
               am_http__conn_peer(h[i].c, peer, sizeof(peer)));
        am_http__conn_close(h[i].c);
    }
    free(h);
}

void am_http__maybe_finish(am_http_server_t *srv)
{
    if (!srv->stopping || !srv->listener_closed || !srv->accept_timer_closed || srv->conns ||
        srv->rejects_closing || srv->spare_busy || srv->auth_jobs)
        return;
    am_http_security_free(srv->sec);
    am_http__chunk_pool_free(srv);
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

static void on_accept_timer(uv_timer_t *t)
{
    am_http_server_t *srv = t->data;
    if (srv->accept_waiting && !srv->stopping)
        accept_one(srv);
}

/* Accepts the connection libuv holds: at the cap, after shedding the worst
 * open one. When none may go, the new one waits in libuv's hands (which
 * stops polling the listener meanwhile; the kernel's backlog holds the
 * next ones) and is tried again every YOUNG_MIN_MS: a burst of connections
 * is young only that long. After ACCEPT_WAIT_MS it is closed. */
static void accept_one(am_http_server_t *srv)
{
    const am_http_limits_t *l = &srv->limits;
    if (l->max_connections && srv->live >= l->max_connections) {
        uint64_t now = uv_now(srv->loop);
        am_http_conn_t *victim = pick_shed_victim(srv, now);
        if (!victim) {
            if (!srv->accept_waiting) {
                srv->accept_waiting = true;
                srv->accept_wait_since = now;
            }
            if (now - srv->accept_wait_since < ACCEPT_WAIT_MS) {
                uv_timer_start(&srv->accept_timer, on_accept_timer, YOUNG_MIN_MS, 0);
                return;
            }
            srv->accept_waiting = false;
            srv->stats.connections_rejected++;
            am_log(AM_LOG_DEBUG, "event=http_reject_connection open=%u", srv->live);
            accept_and_close(srv);
            return;
        }
        uint64_t wait;
        shed_rank_t r = shed_rank(victim, now, &wait);
        static const char *const why[] = {"keep", "young", "idle", "waiting", "finished"};
        srv->stats.connections_shed++;
        char peer[80];
        am_log(AM_LOG_DEBUG, "event=http_shed reason=%s waited_ms=%" PRIu64 " open=%u peer=%s",
               why[r], wait, srv->live, am_http__conn_peer(victim, peer, sizeof(peer)));
        am_http__conn_close(victim);
    }
    srv->accept_waiting = false;
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

static void on_accept_timer_closed(uv_handle_t *h)
{
    am_http_server_t *srv = h->data;
    srv->accept_timer_closed = true;
    am_http__maybe_finish(srv);
}

static void on_listener_closed(uv_handle_t *h)
{
    am_http_server_t *srv = h->data;
    srv->listener_closed = true;
    if (srv->start_failed) {
        am_http_security_free(srv->sec);
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
    srv->queued_cap = limits->max_queued_bytes ? limits->max_queued_bytes
                                               : (size_t)limits->max_connections * 16384;
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
    uv_timer_init(loop, &srv->accept_timer); /* cannot fail */
    srv->accept_timer.data = srv;
    *out = srv;
    return 0;
}

int am_http_security_new(const am_webconfig_t *wc, am_http_security_t **out, char *err, size_t n)
{
    am_http_security_t *sec = calloc(1, sizeof(*sec));
    if (!sec) {
        snprintf(err, n, "out of memory");
        return -ENOMEM;
    }
    int rc = 0;
    if (wc->tls)
        rc = am_https_new(wc, &sec->tls, err, n);
    if (rc == 0 && wc->nusers && !(sec->auth = am_auth_new(wc->users, wc->nusers))) {
        snprintf(err, n, "out of memory (or no randomness) for basic_auth_users");
        rc = -ENOMEM;
    }
    if (rc == 0 && wc->headers && !(sec->headers = strdup(wc->headers))) {
        snprintf(err, n, "out of memory");
        rc = -ENOMEM;
    }
    if (rc < 0) {
        am_http_security_free(sec);
        return rc;
    }
    *out = sec;
    return 0;
}

void am_http_security_free(am_http_security_t *sec)
{
    if (!sec)
        return;
    am_https_unref(sec->tls);
    am_auth_unref(sec->auth);
    free(sec->headers);
    free(sec);
}

void am_http_server_set_security(am_http_server_t *srv, am_http_security_t *sec)
{
    am_http_security_free(srv->sec);
    srv->sec = sec;
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
    uv_close((uv_handle_t *)&srv->accept_timer, on_accept_timer_closed);
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
