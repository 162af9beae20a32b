/* conn: one TCP connection of the HTTP server (see http-internal.h):
 * reading into its buffer, queueing responses with uv_write (whose queue
 * keeps them in request order), shared bodies and the bytes they count
 * against the server's budget, the one timer that enforces every timeout,
 * and closing: FIN after the last response, then a lingering drain so
 * that unread client bytes do not turn into an RST that destroys the
 * response. */
#include "http-internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "log.h"

/* After the last response and our FIN, unread client bytes are drained for
 * at most this long (the "lingering close" of nginx and Apache). */
#define LINGER_MS 2000

#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"

/* Unsent bytes the kernel holds per connection (see am_http__conn_accept). */
#define NOTSENT_LOWAT (128 * 1024)

/* Reason phrases of the statuses we produce. */
#define AM_HTTP_STATUS_MAP(XX)                                                                     \
    XX(200, "OK")                                                                                  \
    XX(400, "Bad Request")                                                                         \
    XX(401, "Unauthorized")                                                                        \
    XX(404, "Not Found")                                                                           \
    XX(405, "Method Not Allowed")                                                                  \
    XX(408, "Request Timeout")                                                                     \
    XX(413, "Content Too Large")                                                                   \
    XX(431, "Request Header Fields Too Large")                                                     \
    XX(500, "Internal Server Error")                                                               \
    XX(503, "Service Unavailable")

typedef am_http_wreq_t wreq_t;

static void on_timer(uv_timer_t *t);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_finish(am_http_conn_t *c);

static const char *reason_phrase(int status)
{
    switch (status) {
#define XX(code, text)                                                                             \
    case code:                                                                                     \
        return text;
        AM_HTTP_STATUS_MAP(XX)
#undef XX
        default:
            break;
    }
    const char *s = http_status_str((enum http_status)status);
    return strcmp(s, "<unknown>") == 0 ? "Unknown" : s;
}

/* ---- shared bodies and the queued-bytes budget ---- */

am_http_body_t *am_http_body_new(am_http_server_t *srv, am_buf_t *buf)
{
    am_http_body_t *b = am_buf_failed(buf) ? NULL : calloc(1, sizeof(*b));
    if (!b) {
        am_buf_free(buf);
        return NULL;
    }
    b->srv = srv;
    b->data = am_buf_steal(buf, &b->len);
    b->refs = 1;
    b->gen = ++srv->bodies_made;
    am_http_body_t *old = srv->newest;
    srv->newest = b;
    if (old) {
        old->superseded = true;
        if (old->holders > 0) {
            srv->queued_old += old->len;
            am_http__enforce_queue_cap(srv);
        }
    }
    return b;
}

am_http_body_t *am_http__chunk_new(am_http_server_t *srv, const char *data, size_t len,
                                   uint64_t gen)
{
    assert(len > 0 && len <= AM_HTTP_CHUNK_MAX);
    /* A chunk has a mapping of its own, taken warm from the server's pool
     * when one is there: freed, it goes back to the pool or the kernel at
     * once, where chunks interleaved with small blocks on the heap would
     * leave it fragmented, and RSS with it. */
    void *p = srv->chunk_pool_len ? srv->chunk_pool[--srv->chunk_pool_len]
                                  : mmap(NULL, AM_HTTP_CHUNK_MAX, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    am_http_body_t *b = p == MAP_FAILED ? NULL : calloc(1, sizeof(*b));
    if (!b) {
        if (p != MAP_FAILED)
            munmap(p, AM_HTTP_CHUNK_MAX);
        return NULL;
    }
    memcpy(p, data, len);
    b->srv = srv;
    b->data = p;
    b->len = len;
    b->mapped = true;
    b->refs = 1;
    b->gen = gen;
    b->superseded = true; /* never the newest: counted while a write holds it */
    return b;
}

void am_http__chunk_pool_free(am_http_server_t *srv)
{
    while (srv->chunk_pool_len)
        munmap(srv->chunk_pool[--srv->chunk_pool_len], AM_HTTP_CHUNK_MAX);
}

static void body_retain(am_http_body_t *b)
{
    b->refs++;
}

void am_http_body_release(am_http_body_t *b)
{
    if (!b)
        return;
    assert(b->refs > 0);
    if (--b->refs > 0)
        return;
    assert(b->holders == 0); /* every holder also holds a reference */
    if (b->srv->newest == b)
        b->srv->newest = NULL;
    am_http_server_t *srv = b->srv;
    if (b->mapped && srv->chunk_pool_len < AM_HTTP_CHUNK_POOL)
        srv->chunk_pool[srv->chunk_pool_len++] = b->data;
    else if (b->mapped)
        munmap(b->data, AM_HTTP_CHUNK_MAX);
    else
        free(b->data);
    free(b);
}

/* w's shared body gains or loses a holder for the server's budget. */
static void count_write(am_http_server_t *srv, wreq_t *w, bool in)
{
    am_http_body_t *b = w->shared;
    assert(b && w->counted != in);
    w->counted = in;
    if (in ? b->holders++ == 0 : --b->holders == 0) {
        if (b->superseded) {
            if (in)
                srv->queued_old += b->len;
            else
                srv->queued_old -= b->len;
        }
    }
}

uint64_t am_http__conn_oldest_counted(const am_http_conn_t *c)
{
    /* The list is in queue order, so bodies come oldest first; a stream
     * answers after them. */
    for (const wreq_t *w = c->wq; w; w = w->next)
        if (w->counted && w->shared->superseded)
            return w->shared->gen;
    return c->deferred ? am_http__stream_counted_gen(c->deferred) : 0;
}

const char *am_http__conn_peer(am_http_conn_t *c, char *buf, size_t n)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    char ip[64];
    snprintf(buf, n, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return buf;
    int port;
    if (ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
        if (uv_ip6_name(a, ip, sizeof(ip)) != 0)
            return buf;
        port = ntohs(a->sin6_port);
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
        if (uv_ip4_name(a, ip, sizeof(ip)) != 0)
            return buf;
        port = ntohs(a->sin_port);
    }
    snprintf(buf, n, "%s:%d", ip, port);
    return buf;
}

size_t am_http__conn_unsent(am_http_conn_t *c)
{
    size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    return c->tls ? q + am_http__tls_pending(c) : q;
}

/* The write queue shrank since the last look: the client is reading. */
static void note_progress(am_http_conn_t *c, uint64_t now)
{
    size_t q = am_http__conn_unsent(c);
    if (q < c->write_queue_seen) {
        c->write_queue_seen = q;
        c->write_since = now;
    }
}

uint64_t am_http__conn_stalled_ms(am_http_conn_t *c, uint64_t now)
{
    if (c->writes == 0)
        return 0;
    note_progress(c, now);
    if (c->write_queue_seen == 0)
        return 0; /* all taken by the kernel: on_write is on its way */
    return now > c->write_since ? now - c->write_since : 0;
}

/* When the answers queued since send_start must be out (min_send_rate), or
 * UINT64_MAX. */
static uint64_t send_deadline(const am_http_conn_t *c)
{
    const am_http_limits_t *l = &c->srv->limits;
    if (l->min_send_rate == 0 || c->writes == 0)
        return UINT64_MAX;
    uint64_t allow = l->send_grace_ms + c->send_bytes / l->min_send_rate * 1000 +
                     c->send_bytes % l->min_send_rate * 1000 / l->min_send_rate;
    return c->send_start + allow < c->send_start ? UINT64_MAX : c->send_start + allow;
}

/* ---- timers ---- */

/* (Re)arms the one timer from the connection's state; deadlines are stored,
 * so calling it on any state change is idempotent. 0 disables a timeout. */
void am_http__arm_timer(am_http_conn_t *c)
{
    if (c->closing)
        return;
    const am_http_limits_t *l = &c->srv->limits;
    uint64_t start, limit;
    if (c->lingering) {
        c->tmode = AM_HTTP_TM_LINGER;
        start = c->linger_start;
        limit = LINGER_MS;
    } else if (c->writes > 0 || c->shutting) {
        c->tmode = AM_HTTP_TM_WRITE;
        start = c->write_since;
        limit = l->write_timeout_ms;
        uint64_t rate_due = send_deadline(c);
        if (rate_due != UINT64_MAX) {
            uint64_t now = uv_now(c->srv->loop);
            uint64_t due = limit && start + limit >= start ? start + limit : UINT64_MAX;
            if (rate_due < due)
                due = rate_due;
            uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
            return;
        }
    } else if (c->deferred || c->auth_wait) {
        /* The server owes the answer and bounds its own work. */
        uv_timer_stop(&c->timer);
        return;
    } else if (c->in_request) {
        c->tmode = AM_HTTP_TM_REQUEST;
        start = c->request_start;
        limit = l->request_timeout_ms;
    } else {
        c->tmode = AM_HTTP_TM_IDLE;
        start = c->idle_since;
        limit = l->idle_timeout_ms;
    }
    if (limit == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    uint64_t now = uv_now(c->srv->loop);
    uint64_t due = start + limit < start ? UINT64_MAX : start + limit;
    uv_timer_start(&c->timer, on_timer, due > now ? due - now : 0, 0);
}

static void on_timer(uv_timer_t *t)
{
    am_http_conn_t *c = t->data;
    am_http_server_t *srv = c->srv;
    switch (c->tmode) {
        case AM_HTTP_TM_LINGER:
            am_http__conn_close(c);
            return;
        case AM_HTTP_TM_WRITE: {
            uint64_t now = uv_now(srv->loop);
            if (now >= send_deadline(c)) {
                /* Slower than min_send_rate: a slow reader holding a body. */
                srv->stats.timeouts++;
                am_log(AM_LOG_DEBUG, "event=http_timeout kind=send_rate bytes=%" PRIu64,
                       c->send_bytes);
                am_http__conn_close(c);
                return;
            }
            /* Otherwise only a write that makes no progress times out: a big
             * body to a slow but live reader is fine. */
            uint64_t seen = c->write_since;
            if (c->writes > 0)
                note_progress(c, now);
            const am_http_limits_t *l = &srv->limits;
            if (c->write_since != seen || l->write_timeout_ms == 0 ||
                now < c->write_since + l->write_timeout_ms) {
                am_http__arm_timer(c);
                return;
            }
            break;
        }
        case AM_HTTP_TM_REQUEST:
            srv->stats.timeouts++;
            am_log(AM_LOG_DEBUG, "event=http_timeout kind=request");
            /* A client that sent nothing just goes; a partial request gets
             * told why. */
            if (c->request_begun && !c->final) {
                c->in_request = false;
                c->roff = c->rlen;
                am_http__send_simple(c, 408, NULL, false);
            } else {
                am_http__conn_close(c);
            }
            return;
        case AM_HTTP_TM_IDLE:
            break;
    }
    srv->stats.timeouts++;
    am_log(AM_LOG_DEBUG, "event=http_timeout kind=%s",
           c->tmode == AM_HTTP_TM_IDLE ? "idle" : "write");
    am_http__conn_close(c);
}

/* ---- writing ---- */

static const char *http_date(am_http_server_t *srv)
{
    static const char wdays[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now != srv->date_sec || !srv->date[0]) {
        struct tm tm;
        /* Names by hand: strftime's %a/%b follow the locale. */
        if (!gmtime_r(&now, &tm) || tm.tm_wday < 0 || tm.tm_wday > 6 || tm.tm_mon < 0 ||
            tm.tm_mon > 11)
            return "Thu, 01 Jan 1970 00:00:00 GMT";
        int n = snprintf(srv->date, sizeof(srv->date), "%s, %02d %s %04d %02d:%02d:%02d GMT",
                         wdays[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
                         tm.tm_hour, tm.tm_min, tm.tm_sec);
        if (n < 0 || (size_t)n >= sizeof(srv->date)) {
            srv->date[0] = '\0';
            return "Thu, 01 Jan 1970 00:00:00 GMT";
        }
        srv->date_sec = now;
    }
    return srv->date;
}

void am_http__wreq_free(wreq_t *w)
{
    free(w->head);
    free(w->body);
    am_http_body_release(w->shared);
    free(w);
}

void am_http__write_done(am_http_conn_t *c, wreq_t *w, int status)
{
    wreq_t **pp = &c->wq;
    while (*pp != w) {
        assert(*pp); /* every write in flight is on the list */
        pp = &(*pp)->next;
    }
    *pp = w->next;
    if (w->counted)
        count_write(c->srv, w, false);
    struct am_http_deferred *reader = w->reader;
    size_t streamed = w->body_len;
    am_http__wreq_free(w);
    assert(c->writes > 0);
    c->writes--;
    if (c->closing)
        return; /* UV_ECANCELED from uv_close */
    if (status < 0) {
        am_log(AM_LOG_DEBUG, "event=http_write_error error=%s", uv_err_name(status));
        am_http__conn_close(c);
        return;
    }
    uint64_t now = uv_now(c->srv->loop);
    c->write_since = now;
    c->write_queue_seen = am_http__conn_unsent(c);
    if (c->writes == 0)
        c->idle_since = now;
    if (reader) { /* a streamed answer: more of it, or its end */
        am_http__stream_written(reader, streamed);
        if (c->closing || c->deferred || c->shutting)
            return; /* still streaming, or ended (am_http__conn_end) */
    }
    if (c->final) {
        if (c->writes == 0)
            conn_finish(c);
        else
            am_http__arm_timer(c);
        return;
    }
    /* A pipelined request may have been waiting for room in the queue. */
    am_http__conn_feed(c);
    am_http__arm_timer(c);
}

static void on_write(uv_write_t *req, int status)
{
    am_http__write_done(req->data, (wreq_t *)req, status);
}

/* The status line and headers of r into head. */
static void build_head(am_http_conn_t *c, const am_http_reply_t *r, size_t body_len, am_buf_t *head)
{
    am_http_server_t *srv = c->srv;
    bool bodyless = r->status < 200 || r->status == 204 || r->status == 304;
    am_buf_printf(head, "HTTP/1.1 %d %s\r\n", r->status, reason_phrase(r->status));
    if (!bodyless) {
        am_buf_printf(head, "Content-Type: %s\r\n",
                      r->content_type ? r->content_type : DEFAULT_CONTENT_TYPE);
        if (r->streamed) { /* HTTP/1.0: the body ends with the connection */
            if (r->chunked)
                am_buf_puts(head, "Transfer-Encoding: chunked\r\n");
        } else {
            am_buf_printf(head, "Content-Length: %zu\r\n", body_len);
        }
        if (r->gzip)
            am_buf_puts(head, "Content-Encoding: gzip\r\n");
    }
    if (r->vary)
        am_buf_puts(head, "Vary: Accept-Encoding\r\n");
    if (r->allow)
        am_buf_printf(head, "Allow: %s\r\n", r->allow);
    if (r->challenge)
        am_buf_puts(head, "WWW-Authenticate: Basic realm=\"alice-metrics\"\r\n");
    if (srv->sec && srv->sec->headers)
        am_buf_puts(head, srv->sec->headers);
    am_buf_printf(head, "Date: %s\r\nConnection: %s\r\n\r\n", http_date(srv),
                  r->keep_alive ? "keep-alive" : "close");
}

/* Queues head's bytes (stolen) and a body: private (stolen), a shared
 * body's (a reference is taken), or none. reader: a streamed answer whose
 * bytes these are (credited when written). last: the connection ends after
 * it. false when the connection had to be closed (everything given is
 * freed). */
static bool queue_write(am_http_conn_t *c, am_buf_t *head, am_buf_t *body, am_http_body_t *shared,
                        struct am_http_deferred *reader, bool last)
{
    am_http_server_t *srv = c->srv;
    bool failed = am_buf_failed(head) || (body && am_buf_failed(body));
    wreq_t *w = failed ? NULL : calloc(1, sizeof(*w));
    if (!w) {
        am_log(AM_LOG_WARN, "event=http_oom where=response");
        am_buf_free(head);
        if (body)
            am_buf_free(body);
        am_http__conn_close(c);
        return false;
    }
    uv_buf_t bufs[2];
    unsigned nbufs = 0;
    if (head->len > 0)
        bufs[nbufs++] = uv_buf_init(head->data, (unsigned)head->len);
    w->head = am_buf_steal(head, &w->head_len);
    if (shared) {
        body_retain(shared);
        w->shared = shared;
        w->body_len = shared->len;
        bufs[nbufs++] = uv_buf_init(shared->data, (unsigned)shared->len);
    } else if (body && body->len > 0) {
        bufs[nbufs++] = uv_buf_init(body->data, (unsigned)body->len);
        w->body = am_buf_steal(body, &w->body_len);
    } else if (body) {
        am_buf_free(body);
    }
    w->reader = reader;
    w->req.data = c;
    /* TLS encrypts from the queue as the socket drains (am_http__tls_pump). */
    int err = c->tls ? 0 : uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (err < 0) {
        am_log(AM_LOG_DEBUG, "event=http_write_error error=%s", uv_err_name(err));
        am_http__wreq_free(w);
        am_http__conn_close(c);
        return false;
    }
    /* Append: on_write finds it; a close takes its bytes off the budget. */
    wreq_t **pp = &c->wq;
    while (*pp)
        pp = &(*pp)->next;
    *pp = w;
    if (w->shared)
        count_write(srv, w, true);
    uint64_t now = uv_now(srv->loop);
    if (c->writes++ == 0) {
        c->write_since = now;
        c->send_start = now;
        c->send_bytes = 0;
    }
    c->send_bytes += (uint64_t)w->head_len + w->body_len;
    if (last)
        c->final = true;
    if (c->tls)
        am_http__tls_pump(c);
    if (c->closing)
        return false;
    c->write_queue_seen = am_http__conn_unsent(c);
    am_http__arm_timer(c);
    if (srv->queued_cap && srv->queued_old > srv->queued_cap)
        am_http__enforce_queue_cap(srv);
    return !c->closing;
}

/* Queues one response. false when the connection had to be closed. */
bool am_http__conn_send(am_http_conn_t *c, const am_http_reply_t *r)
{
    bool bodyless = r->status < 200 || r->status == 204 || r->status == 304;
    size_t body_len = r->shared ? r->shared->len : r->body ? r->body->len : 0;
    am_buf_t head;
    am_buf_init(&head, 0);
    build_head(c, r, body_len, &head);
    bool send_body = !r->head && !bodyless && body_len > 0 && !r->streamed;
    if (r->shared || !r->body) /* HEAD holds nothing of a shared body */
        return queue_write(c, &head, NULL, send_body ? r->shared : NULL, NULL, !r->keep_alive);
    if (!send_body)
        am_buf_free(r->body); /* HEAD, or nothing to send */
    return queue_write(c, &head, r->body, NULL, NULL, !r->keep_alive);
}

bool am_http__conn_write(am_http_conn_t *c, am_buf_t *head, am_http_body_t *shared,
                         struct am_http_deferred *reader, bool last)
{
    return queue_write(c, head, NULL, shared, reader, last);
}

void am_http__conn_end(am_http_conn_t *c)
{
    c->final = true;
    if (c->writes == 0 && !c->shutting)
        conn_finish(c);
}

/* A response the module writes itself: the reason phrase as the body. */
bool am_http__send_simple(am_http_conn_t *c, int status, const char *allow, bool keep_alive)
{
    am_buf_t body;
    am_buf_init(&body, 0);
    am_buf_printf(&body, "%s\n", reason_phrase(status));
    am_http_reply_t r = {
        .status = status,
        .content_type = DEFAULT_CONTENT_TYPE,
        .allow = allow,
        .keep_alive = keep_alive,
        .body = &body,
    };
    return am_http__conn_send(c, &r);
}

/* 400/413/431: answer, then close once the answer is out. */
void am_http__conn_reject(am_http_conn_t *c, int status)
{
    c->srv->stats.bad_requests++;
    am_log(AM_LOG_DEBUG, "event=http_reject status=%d parser=%s", status,
           http_errno_name(HTTP_PARSER_ERRNO(&c->parser)));
    c->in_request = false;
    c->roff = c->rlen;
    am_http__send_simple(c, status, NULL, false);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    am_http_conn_t *c = h->data;
    /* Reading only runs while rbuf holds nothing unparsed, so it is free.
     * TLS records go to the server's buffer, which each read callback
     * empties into the connection's TLS state. */
    if (c->tls)
        *buf = uv_buf_init(c->srv->tls_rbuf, sizeof(c->srv->tls_rbuf));
    else
        *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

void am_http__start_reading(am_http_conn_t *c)
{
    if (c->reading || c->closing || c->peer_eof)
        return;
    int err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (err < 0) {
        am_http__conn_close(c);
        return;
    }
    c->reading = true;
    if (c->tls)
        am_http__tls_resume(c);
}

void am_http__stop_reading(am_http_conn_t *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    am_http_conn_t *c = s->data;
    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF || c->lingering || (c->writes == 0 && !c->shutting)) {
            am_http__conn_close(c);
            return;
        }
        am_http__conn_eof(c);
        return;
    }
    if (c->final)
        return; /* draining after the last response */
    if (c->tls) {
        am_http__tls_on_read(c, buf->base, (size_t)nread);
        return;
    }
    c->roff = 0;
    c->rlen = (size_t)nread;
    am_http__conn_feed(c);
}

/* Half-closed client: finish what is queued, answer nothing new. */
void am_http__conn_eof(am_http_conn_t *c)
{
    c->peer_eof = true;
    c->final = true;
    am_http__stop_reading(c);
}

/* ---- closing ---- */

static void on_conn_closed(uv_handle_t *h)
{
    am_http_conn_t *c = h->data;
    assert(c->open_handles > 0); /* each of the two handles closes once */
    if (--c->open_handles > 0)
        return;
    am_http_server_t *srv = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    srv->stats.connections_open--;
    /* The writes were cancelled before the close callbacks; on TLS, the
     * responses not yet handed to libuv are still queued. */
    assert(!c->wq || c->tls);
    while (c->wq) {
        wreq_t *w = c->wq;
        c->wq = w->next;
        am_http__wreq_free(w);
    }
    if (c->tls)
        am_http__tls_free(c);
    am_buf_free(&c->authorization);
    am_buf_free(&c->url);
    am_buf_free(&c->accept);
    am_buf_free(&c->accept_encoding);
    am_buf_free(&c->expect);
    free(c);
    am_http__maybe_finish(srv);
}

/* Closes now; queued writes are cancelled (their callbacks free them). */
void am_http__conn_close(am_http_conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    assert(c->srv->live > 0);
    c->srv->live--;
    /* The cancelled writes free their memory in their callbacks, but no
     * longer hold the budget from now on. */
    for (wreq_t *w = c->wq; w; w = w->next)
        if (w->counted)
            count_write(c->srv, w, false);
    for (wreq_t *w = c->wq; w; w = w->next)
        w->reader = NULL; /* the stream lets go of the reader below */
    if (c->deferred) {
        struct am_http_deferred *d = c->deferred;
        c->deferred = NULL;
        d->conn = NULL;
        if (d->stream)
            am_http__stream_detach(d); /* the stream owns it, and frees it */
    }
    am_http__auth_detach(c);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    am_http_conn_t *c = req->data;
    c->shutting = false;
    if (c->closing)
        return;
    if (status < 0 || c->peer_eof || c->srv->stopping) {
        am_http__conn_close(c);
        return;
    }
    c->lingering = true;
    c->linger_start = uv_now(c->srv->loop);
    am_http__start_reading(c);
    am_http__arm_timer(c);
}

/* The last response is out: FIN, then drain until the client closes. */
static void conn_finish(am_http_conn_t *c)
{
    if (c->srv->stopping || c->peer_eof) {
        am_http__conn_close(c);
        return;
    }
    if (c->tls)
        am_http__tls_shutdown(c);
    if (c->closing)
        return;
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        am_http__conn_close(c);
        return;
    }
    c->shutting = true;
    c->write_since = uv_now(c->srv->loop);
    am_http__arm_timer(c);
}

/* ---- accepting ---- */

int am_http__conn_accept(am_http_server_t *srv)
{
    am_http_conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        am_log(AM_LOG_WARN, "event=http_oom where=accept");
        return -ENOMEM;
    }
    c->srv = srv;
    int rc = uv_tcp_init(srv->loop, &c->tcp);
    if (rc < 0) {
        free(c);
        return rc;
    }
    uv_timer_init(srv->loop, &c->timer); /* cannot fail */
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    am_buf_init(&c->url, 0);
    am_buf_init(&c->accept, 0);
    am_buf_init(&c->accept_encoding, 0);
    am_buf_init(&c->expect, 0);
    am_buf_init(&c->authorization, 0);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->stats.connections_open++;
    srv->live++;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->tcp) < 0) {
        am_http__conn_close(c);
        return 0;
    }
    srv->stats.connections_accepted++;
    /* Each response is one write; Nagle would hold back a pipelined
     * response until the client's delayed ACK. */
    uv_tcp_nodelay(&c->tcp, 1);
    /* The kernel keeps at most NOTSENT_LOWAT bytes of a response that the
     * client has not taken (its window): a reader that keeps up is fed as
     * fast as it reads, while a slow or stalled one costs 128 KiB of
     * kernel buffer and of copying, not the megabytes of an autotuned send
     * buffer per answer (what made a flood of slow readers cost the loop
     * most of its time). Best effort: an old kernel lacks it. */
    uv_os_fd_t fd;
    int lowat = NOTSENT_LOWAT;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof(lowat));
    if (srv->sec && srv->sec->tls && am_http__tls_accept(c, srv->sec->tls) < 0) {
        am_log(AM_LOG_WARN, "event=http_oom where=tls_accept");
        am_http__conn_close(c);
        return 0;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    /* A fresh connection owes its first request within request_timeout. */
    c->in_request = true;
    c->request_start = uv_now(srv->loop);
    am_http__start_reading(c);
    am_http__arm_timer(c);
    return 0;
}
