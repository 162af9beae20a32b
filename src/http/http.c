/* http: the scrape endpoint's HTTP/1.1 server (see http.h).
 *
 * One conn_t per TCP connection holds the http-parser state, a reusable read
 * buffer, the request being parsed and one timer. Requests are parsed in the
 * read callback; each complete GET/HEAD request is answered synchronously by
 * the handler and queued with uv_write, whose queue keeps responses in
 * request order. The parser is paused at the end of every message (and at the
 * end of every header block, so header bytes can be counted exactly); when the
 * connection already has max_pending_responses writes in flight, the rest of
 * the read buffer is kept and reading stops until a write completes. */
#include "http.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "ascii.h"
#include "log.h"

enum {
    /* One read fills at most this much; also bounds the header bytes parsed
     * past the limit before we notice. */
    READ_BUF_SIZE = 16 * 1024,
    LISTEN_BACKLOG = 511,
    /* Longer header names are never one we care about (Accept-Encoding is 15). */
    HEADER_NAME_MAX = 32,
    /* After the last response and our FIN, unread client bytes are drained for
     * at most this long, so closing does not turn into an RST that destroys
     * the response (the "lingering close" of nginx and Apache). */
    LINGER_MS = 2000,
};

#define DEFAULT_CONTENT_TYPE "text/plain; charset=utf-8"

/* Reason phrases of the statuses we produce. */
#define AM_HTTP_STATUS_MAP(XX)                                                                     \
    XX(200, "OK")                                                                                  \
    XX(400, "Bad Request")                                                                         \
    XX(404, "Not Found")                                                                           \
    XX(405, "Method Not Allowed")                                                                  \
    XX(408, "Request Timeout")                                                                     \
    XX(413, "Content Too Large")                                                                   \
    XX(431, "Request Header Fields Too Large")                                                     \
    XX(500, "Internal Server Error")                                                               \
    XX(503, "Service Unavailable")

typedef enum timer_mode {
    TM_REQUEST, /* waiting for (the rest of) a request */
    TM_IDLE,    /* kept alive, nothing in flight */
    TM_WRITE,   /* a write or our shutdown has not completed */
    TM_LINGER,  /* FIN sent, draining the client before close */
} timer_mode_t;

typedef struct conn conn_t;

struct am_http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    uv_tcp_t spare; /* accepts-and-closes a connection when malloc fails */
    bool spare_busy;
    bool accept_stalled; /* a connection waits for uv_accept (see accept_one) */
    http_parser_settings settings;
    am_http_limits_t limits;
    am_http_handler_fn handler;
    void *ctx;
    am_http_stats_t stats;
    int port;
    conn_t *conns; /* every conn not yet freed, closing ones included */
    unsigned rejects_closing;
    bool start_failed;
    bool stopping;
    bool listener_closed;
    void (*done)(void *ctx);
    void *done_ctx;
    time_t date_sec; /* Date header cache: formatted once per second */
    char date[64];
};

struct conn {
    uv_tcp_t tcp; /* handle memory lives until both close callbacks ran */
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    http_parser parser;
    am_http_server_t *srv;
    conn_t *prev, *next;
    int open_handles;

    /* The request being parsed; buffers are reused across requests. */
    am_buf_t url;
    am_buf_t accept;
    am_buf_t accept_encoding;
    bool has_accept;
    bool has_accept_encoding;
    char hname[HEADER_NAME_MAX];
    size_t hname_len; /* may exceed sizeof(hname): such a name matches nothing */
    am_buf_t *hvalue; /* where the current header value goes; NULL drops it */
    bool in_field;    /* the last header callback was on_header_field */
    size_t header_bytes;
    uint64_t body_bytes;
    int reject;   /* status set by a callback that stopped the parser */
    bool oom;     /* a callback ran out of memory */
    bool in_body; /* between on_headers_complete and on_message_complete */
    bool message_done;
    bool in_request; /* a request is expected or partly read (request timer) */
    bool request_begun;
    uint64_t request_start;

    /* rbuf[roff, rlen) is read but not parsed yet (parser paused). */
    size_t roff, rlen;
    bool reading;
    bool peer_eof;

    size_t writes; /* uv_write requests in flight */
    size_t write_queue_seen;
    uint64_t write_since;
    uint64_t idle_since;
    bool final; /* the last response is queued: parse nothing more */
    bool shutting;
    bool lingering;
    uint64_t linger_start;
    bool closing;
    timer_mode_t tmode;
    struct am_http_deferred *deferred; /* the answer the handler owes, or NULL */

    char rbuf[READ_BUF_SIZE];
};

/* An answer owed by the handler (am_http_defer). */
struct am_http_deferred {
    conn_t *conn; /* NULL once the connection is gone */
    const char *content_type;
    bool vary;
    bool head;
    bool keep_alive;
};

typedef struct wreq {
    uv_write_t req;
    char *head; /* owned until on_write */
    char *body; /* owned until on_write */
} wreq_t;

/* What goes on the wire for one response. */
typedef struct reply {
    int status;
    const char *content_type;
    const char *allow;
    bool vary;       /* caches must key on Accept-Encoding */
    bool gzip;       /* body holds gzip bytes */
    bool head;       /* HEAD: headers only */
    bool keep_alive; /* false: last response of the connection */
    am_buf_t *body;  /* its bytes are stolen */
} reply_t;

static void conn_close(conn_t *c);
static void conn_feed(conn_t *c);

/* ------------------------------------------------------------------------ */
/* Limits, small helpers                                                     */

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

/* ------------------------------------------------------------------------ */
/* Timers                                                                    */

static void on_timer(uv_timer_t *t);

/* (Re)arms the one timer from the connection's state; deadlines are stored,
 * so calling it on any state change is idempotent. 0 disables a timeout. */
static void arm_timer(conn_t *c)
{
    if (c->closing)
        return;
    const am_http_limits_t *l = &c->srv->limits;
    uint64_t start, limit;
    if (c->lingering) {
        c->tmode = TM_LINGER;
        start = c->linger_start;
        limit = LINGER_MS;
    } else if (c->writes > 0 || c->shutting) {
        c->tmode = TM_WRITE;
        start = c->write_since;
        limit = l->write_timeout_ms;
    } else if (c->deferred) {
        /* The server owes the answer and bounds its own work. */
        uv_timer_stop(&c->timer);
        return;
    } else if (c->in_request) {
        c->tmode = TM_REQUEST;
        start = c->request_start;
        limit = l->request_timeout_ms;
    } else {
        c->tmode = TM_IDLE;
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

/* ------------------------------------------------------------------------ */
/* Writing                                                                   */

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

static void conn_finish(conn_t *c);

static void on_write(uv_write_t *req, int status)
{
    wreq_t *w = (wreq_t *)req;
    conn_t *c = req->data;
    free(w->head);
    free(w->body);
    free(w);
    c->writes--;
    if (c->closing)
        return; /* UV_ECANCELED from uv_close */
    if (status < 0) {
        am_log(AM_LOG_DEBUG, "event=http_write_error error=%s", uv_err_name(status));
        conn_close(c);
        return;
    }
    uint64_t now = uv_now(c->srv->loop);
    c->write_since = now;
    c->write_queue_seen = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (c->writes == 0)
        c->idle_since = now;
    if (c->final) {
        if (c->writes == 0)
            conn_finish(c);
        else
            arm_timer(c);
        return;
    }
    /* A pipelined request may have been waiting for room in the queue. */
    conn_feed(c);
    arm_timer(c);
}

/* Queues one response. false when the connection had to be closed. */
static bool conn_send(conn_t *c, const reply_t *r)
{
    am_http_server_t *srv = c->srv;
    bool bodyless = r->status < 200 || r->status == 204 || r->status == 304;
    am_buf_t head;
    am_buf_init(&head, 0);
    am_buf_printf(&head, "HTTP/1.1 %d %s\r\n", r->status, reason_phrase(r->status));
    if (!bodyless) {
        am_buf_printf(&head, "Content-Type: %s\r\nContent-Length: %zu\r\n",
                      r->content_type ? r->content_type : DEFAULT_CONTENT_TYPE, r->body->len);
        if (r->gzip)
            am_buf_puts(&head, "Content-Encoding: gzip\r\n");
    }
    if (r->vary)
        am_buf_puts(&head, "Vary: Accept-Encoding\r\n");
    if (r->allow)
        am_buf_printf(&head, "Allow: %s\r\n", r->allow);
    am_buf_printf(&head, "Date: %s\r\nConnection: %s\r\n\r\n", http_date(srv),
                  r->keep_alive ? "keep-alive" : "close");

    wreq_t *w = am_buf_failed(&head) || am_buf_failed(r->body) ? NULL : malloc(sizeof(*w));
    if (!w) {
        am_log(AM_LOG_WARN, "event=http_oom where=response");
        am_buf_free(&head);
        am_buf_free(r->body);
        conn_close(c);
        return false;
    }
    uv_buf_t bufs[2];
    unsigned nbufs = 1;
    bufs[0] = uv_buf_init(head.data, (unsigned)head.len);
    if (!r->head && !bodyless && r->body->len > 0)
        bufs[nbufs++] = uv_buf_init(r->body->data, (unsigned)r->body->len);
    w->head = am_buf_steal(&head, NULL);
    w->body = am_buf_steal(r->body, NULL);
    w->req.data = c;
    int err = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, nbufs, on_write);
    if (err < 0) {
        am_log(AM_LOG_DEBUG, "event=http_write_error error=%s", uv_err_name(err));
        free(w->head);
        free(w->body);
        free(w);
        conn_close(c);
        return false;
    }
    if (c->writes++ == 0)
        c->write_since = uv_now(srv->loop);
    c->write_queue_seen = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
    if (!r->keep_alive)
        c->final = true;
    arm_timer(c);
    return true;
}

/* A response the module writes itself: the reason phrase as the body. */
static bool send_simple(conn_t *c, int status, const char *allow, bool keep_alive)
{
    am_buf_t body;
    am_buf_init(&body, 0);
    am_buf_printf(&body, "%s\n", reason_phrase(status));
    reply_t r = {
        .status = status,
        .content_type = DEFAULT_CONTENT_TYPE,
        .allow = allow,
        .keep_alive = keep_alive,
        .body = &body,
    };
    return conn_send(c, &r);
}

/* 400/413/431: answer, then close once the answer is out. */
static void conn_reject(conn_t *c, int status)
{
    c->srv->stats.bad_requests++;
    am_log(AM_LOG_DEBUG, "event=http_reject status=%d parser=%s", status,
           http_errno_name(HTTP_PARSER_ERRNO(&c->parser)));
    c->in_request = false;
    c->roff = c->rlen;
    send_simple(c, status, NULL, false);
}

/* ------------------------------------------------------------------------ */
/* Closing                                                                   */

static void maybe_finish(am_http_server_t *srv)
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

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
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
    am_buf_free(&c->url);
    am_buf_free(&c->accept);
    am_buf_free(&c->accept_encoding);
    free(c);
    maybe_finish(srv);
}

/* Closes now; queued writes are cancelled (their callbacks free them). */
static void conn_close(conn_t *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->deferred) {
        c->deferred->conn = NULL;
        c->deferred = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    /* Reading only runs while rbuf holds nothing unparsed, so it is free. */
    *buf = uv_buf_init(c->rbuf, sizeof(c->rbuf));
}

static void start_reading(conn_t *c)
{
    if (c->reading || c->closing || c->peer_eof)
        return;
    int err = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (err < 0) {
        conn_close(c);
        return;
    }
    c->reading = true;
}

static void stop_reading(conn_t *c)
{
    if (!c->reading)
        return;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn_t *c = req->data;
    c->shutting = false;
    if (c->closing)
        return;
    if (status < 0 || c->peer_eof || c->srv->stopping) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    c->linger_start = uv_now(c->srv->loop);
    start_reading(c);
    arm_timer(c);
}

/* The last response is out: FIN, then drain until the client closes. */
static void conn_finish(conn_t *c)
{
    if (c->srv->stopping || c->peer_eof) {
        conn_close(c);
        return;
    }
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    c->shutting = true;
    c->write_since = uv_now(c->srv->loop);
    arm_timer(c);
}

static void on_timer(uv_timer_t *t)
{
    conn_t *c = t->data;
    am_http_server_t *srv = c->srv;
    switch (c->tmode) {
        case TM_LINGER:
            conn_close(c);
            return;
        case TM_WRITE: {
            /* Only a write that makes no progress times out: a big body to a
             * slow but live reader is fine. */
            size_t q = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp);
            if (c->writes > 0 && q < c->write_queue_seen) {
                c->write_queue_seen = q;
                c->write_since = uv_now(srv->loop);
                arm_timer(c);
                return;
            }
            break;
        }
        case TM_REQUEST:
            srv->stats.timeouts++;
            am_log(AM_LOG_DEBUG, "event=http_timeout kind=request");
            /* A client that sent nothing just goes; a partial request gets
             * told why. */
            if (c->request_begun && !c->final) {
                c->in_request = false;
                c->roff = c->rlen;
                send_simple(c, 408, NULL, false);
            } else {
                conn_close(c);
            }
            return;
        case TM_IDLE:
            break;
    }
    srv->stats.timeouts++;
    am_log(AM_LOG_DEBUG, "event=http_timeout kind=%s", c->tmode == TM_IDLE ? "idle" : "write");
    conn_close(c);
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                   */

static int on_message_begin(http_parser *p)
{
    conn_t *c = p->data;
    am_buf_reset(&c->url);
    am_buf_reset(&c->accept);
    am_buf_reset(&c->accept_encoding);
    c->has_accept = c->has_accept_encoding = false;
    c->hname_len = 0;
    c->hvalue = NULL;
    c->in_field = false;
    c->body_bytes = 0;
    c->reject = 0;
    c->request_begun = true;
    if (!c->in_request) {
        c->in_request = true;
        c->request_start = uv_now(c->srv->loop);
        arm_timer(c);
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    am_buf_append(&c->url, at, len);
    if (am_buf_failed(&c->url)) {
        c->oom = true;
        return -1;
    }
    return 0;
}

/* The header name is complete: pick where its value goes. */
static void header_name_done(conn_t *c)
{
    c->in_field = false;
    c->hvalue = NULL;
    if (c->hname_len > sizeof(c->hname))
        return;
    bool *seen;
    if (am_ascii_caseeq(c->hname, c->hname_len, "accept")) {
        c->hvalue = &c->accept;
        seen = &c->has_accept;
    } else if (am_ascii_caseeq(c->hname, c->hname_len, "accept-encoding")) {
        c->hvalue = &c->accept_encoding;
        seen = &c->has_accept_encoding;
    } else {
        return;
    }
    /* A repeated header is one comma list (RFC 9110 5.3). */
    if (*seen)
        am_buf_puts(c->hvalue, ", ");
    *seen = true;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (!c->in_field) {
        c->in_field = true;
        c->hname_len = 0;
    }
    /* A name may arrive in pieces (split reads). */
    if (c->hname_len <= sizeof(c->hname) && len <= sizeof(c->hname) - c->hname_len)
        memcpy(c->hname + c->hname_len, at, len);
    c->hname_len = c->hname_len + len < c->hname_len ? SIZE_MAX : c->hname_len + len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    if (c->in_field)
        header_name_done(c);
    if (c->hvalue) {
        am_buf_append(c->hvalue, at, len);
        if (am_buf_failed(c->hvalue)) {
            c->oom = true;
            return -1;
        }
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    conn_t *c = p->data;
    if (c->in_field)
        header_name_done(c);
    if (am_buf_failed(&c->accept) || am_buf_failed(&c->accept_encoding)) {
        c->oom = true;
        return -1;
    }
    /* Refuse a declared oversized body before reading any of it. */
    if (p->content_length != ULLONG_MAX && p->content_length > c->srv->limits.max_body_bytes) {
        c->reject = 413;
        return -1;
    }
    c->in_body = true;
    /* Stop here so conn_feed knows exactly where the header block ended. */
    http_parser_pause(p, 1);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    conn_t *c = p->data;
    c->body_bytes += len;
    if (c->body_bytes > c->srv->limits.max_body_bytes) {
        c->reject = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    conn_t *c = p->data;
    c->in_body = false;
    c->message_done = true;
    /* One message per http_parser_execute: conn_feed answers it before the
     * parser may overwrite the request state with the next one. */
    http_parser_pause(p, 1);
    return 0;
}

/* The path of an origin-form ("/a?b") or absolute-form ("http://h/a")
 * request target, without query or fragment. NUL-terminates it in place
 * (the url buffer is ours). false when there is no path. */
static bool url_path(am_buf_t *url, const char **path, size_t *len)
{
    if (!url->data || url->len == 0)
        return false;
    char *s = url->data, *end = url->data + url->len;
    if (*s != '/') {
        char *scheme = memchr(s, ':', url->len);
        if (!scheme || end - scheme < 3 || scheme[1] != '/' || scheme[2] != '/')
            return false;
        s = memchr(scheme + 3, '/', (size_t)(end - scheme - 3));
        if (!s) {
            /* "http://host" names the root. */
            *path = "/";
            *len = 1;
            return true;
        }
    }
    char *e = s;
    while (e < end && *e != '?' && *e != '#')
        e++;
    if (e < end)
        *e = '\0';
    *path = s;
    *len = (size_t)(e - s);
    return true;
}

static void dispatch(conn_t *c)
{
    am_http_server_t *srv = c->srv;
    http_parser *p = &c->parser;
    bool keep = http_should_keep_alive(p) && !p->upgrade && !srv->stopping;
    srv->stats.requests++;
    c->in_request = false;
    c->request_begun = false;
    c->header_bytes = 0;
    if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
        send_simple(c, 405, "GET, HEAD", keep);
        return;
    }
    am_http_request_t req = {.head = p->method == HTTP_HEAD};
    if (!url_path(&c->url, &req.path, &req.path_len)) {
        srv->stats.bad_requests++;
        send_simple(c, 400, NULL, false);
        return;
    }
    if (c->has_accept)
        req.accept = c->accept.data ? c->accept.data : "";
    if (c->has_accept_encoding)
        req.accept_encoding = c->accept_encoding.data ? c->accept_encoding.data : "";

    am_buf_t body;
    am_buf_init(&body, 0);
    am_http_response_t resp = {
        .status = 200,
        .content_type = NULL,
        .allow = NULL,
        .body = &body,
    };
    srv->handler(srv->ctx, &req, &resp);
    if (resp.deferred) {
        am_buf_free(&body);
        if (c->closing) /* the handler stopped the server: nobody to answer */
            return;
        am_http_deferred_t *d = resp.deferred;
        d->conn = c;
        d->content_type = resp.content_type;
        d->vary = resp.vary_encoding;
        d->head = req.head;
        d->keep_alive = keep;
        c->deferred = d;
        stop_reading(c); /* rbuf may hold pipelined requests: keep them */
        arm_timer(c);
        return;
    }
    if (c->closing) { /* the handler stopped the server */
        am_buf_free(&body);
        return;
    }
    if (am_buf_failed(&body) || resp.status < 100 || resp.status > 999) {
        am_log(AM_LOG_WARN, "event=http_handler_failed status=%d body_failed=%d", resp.status,
               (int)am_buf_failed(&body));
        am_buf_free(&body);
        send_simple(c, 500, NULL, keep);
        return;
    }
    reply_t r = {
        .status = resp.status,
        .content_type = resp.content_type,
        .allow = resp.allow,
        .vary = resp.vary_encoding,
        .gzip = resp.gzipped,
        .head = req.head,
        .keep_alive = keep,
        .body = &body,
    };
    conn_send(c, &r);
}

/* Parses rbuf[roff, rlen), answering each complete request. Stops reading
 * while the write queue is full and resumes from on_write. */
static void conn_feed(conn_t *c)
{
    am_http_server_t *srv = c->srv;
    const am_http_limits_t *l = &srv->limits;
    size_t max_pending = l->max_pending_responses ? l->max_pending_responses : 1;
    while (c->roff < c->rlen) {
        if (c->closing || c->deferred)
            return;
        if (c->final) {
            c->roff = c->rlen; /* nothing after the last response is answered */
            break;
        }
        if (c->writes >= max_pending) {
            stop_reading(c);
            return;
        }
        bool was_body = c->in_body;
        size_t avail = c->rlen - c->roff;
        size_t n = http_parser_execute(&c->parser, &srv->settings, c->rbuf + c->roff, avail);
        c->roff += n;
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        /* Pauses split every execute at the end of a header block, so a run
         * that started outside a body only read header bytes. */
        if (!was_body) {
            /* A pause in on_headers_complete leaves the block's final LF for
             * the next run: count it here, where it belongs. */
            c->header_bytes += n + (c->in_body ? 1 : 0);
            if (l->max_header_bytes && c->header_bytes > l->max_header_bytes) {
                conn_reject(c, 431);
                break;
            }
        }
        if (err == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (c->message_done) {
                c->message_done = false;
                dispatch(c);
            }
            continue;
        }
        if (err != HPE_OK) {
            if (c->oom) {
                am_log(AM_LOG_WARN, "event=http_oom where=request");
                conn_close(c);
                return;
            }
            conn_reject(c, c->reject ? c->reject : err == HPE_HEADER_OVERFLOW ? 431 : 400);
            break;
        }
        if (n < avail) { /* cannot happen without an error or pause; do not spin */
            conn_reject(c, 400);
            break;
        }
    }
    if (c->roff >= c->rlen && !c->deferred)
        start_reading(c);
}

am_http_deferred_t *am_http_defer(am_http_response_t *resp)
{
    am_http_deferred_t *d = calloc(1, sizeof(*d));
    resp->deferred = d;
    return d;
}

void am_http_deferred_finish(am_http_deferred_t *d, am_buf_t *body, bool gzipped)
{
    conn_t *c = d->conn;
    bool head = d->head, keep = d->keep_alive, vary = d->vary;
    const char *type = d->content_type;
    free(d);
    if (!c) {
        am_buf_free(body);
        return;
    }
    c->deferred = NULL;
    if (am_buf_failed(body)) {
        am_log(AM_LOG_WARN, "event=http_handler_failed status=200 body_failed=1");
        am_buf_free(body);
        send_simple(c, 500, NULL, keep);
    } else {
        reply_t r = {
            .status = 200,
            .content_type = type,
            .vary = vary,
            .gzip = gzipped,
            .head = head,
            .keep_alive = keep,
            .body = body,
        };
        conn_send(c, &r);
    }
    if (!c->closing)
        conn_feed(c); /* the requests that waited behind this one */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        if (nread != UV_EOF || c->lingering || (c->writes == 0 && !c->shutting)) {
            conn_close(c);
            return;
        }
        /* Half-closed client: finish what is queued, answer nothing new. */
        c->peer_eof = true;
        c->final = true;
        stop_reading(c);
        return;
    }
    if (c->final)
        return; /* draining after the last response */
    c->roff = 0;
    c->rlen = (size_t)nread;
    conn_feed(c);
}

/* ------------------------------------------------------------------------ */
/* Accepting                                                                 */

static void on_reject_closed(uv_handle_t *h)
{
    am_http_server_t *srv = h->data;
    free(h);
    srv->rejects_closing--;
    maybe_finish(srv);
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
    maybe_finish(srv);
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
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        am_log(AM_LOG_WARN, "event=http_oom where=accept");
        accept_and_close(srv);
        return;
    }
    c->srv = srv;
    if (uv_tcp_init(srv->loop, &c->tcp) < 0) {
        free(c);
        accept_and_close(srv);
        return;
    }
    uv_timer_init(srv->loop, &c->timer); /* cannot fail */
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    am_buf_init(&c->url, 0);
    am_buf_init(&c->accept, 0);
    am_buf_init(&c->accept_encoding, 0);
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->stats.connections_open++;
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    srv->stats.connections_accepted++;
    /* Each response is one write; Nagle would hold back a pipelined
     * response until the client's delayed ACK. */
    uv_tcp_nodelay(&c->tcp, 1);
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    /* A fresh connection owes its first request within request_timeout. */
    c->in_request = true;
    c->request_start = uv_now(srv->loop);
    start_reading(c);
    arm_timer(c);
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

/* ------------------------------------------------------------------------ */
/* Start, stop                                                               */

static void on_listener_closed(uv_handle_t *h)
{
    am_http_server_t *srv = h->data;
    srv->listener_closed = true;
    if (srv->start_failed) {
        free(srv);
        return;
    }
    maybe_finish(srv);
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
    http_parser_settings_init(&srv->settings);
    srv->settings.on_message_begin = on_message_begin;
    srv->settings.on_url = on_url;
    srv->settings.on_header_field = on_header_field;
    srv->settings.on_header_value = on_header_value;
    srv->settings.on_headers_complete = on_headers_complete;
    srv->settings.on_body = on_body;
    srv->settings.on_message_complete = on_message_complete;
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
    for (conn_t *c = srv->conns; c; c = c->next) {
        if (c->closing)
            continue;
        if (c->writes > 0) {
            /* Let the response finish; on_write then closes. */
            c->final = true;
            c->roff = c->rlen;
            continue;
        }
        conn_close(c);
    }
}
