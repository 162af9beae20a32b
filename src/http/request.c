/* request: the requests of one connection (see http-internal.h). They are
 * parsed in the read callback; each complete GET/HEAD request is answered
 * synchronously by the handler (or deferred by it) and queued on the
 * connection. The parser is paused at the end of every message (and at
 * the end of every header block, so header bytes can be counted exactly);
 * when the connection already has max_pending_responses writes in flight,
 * or more than max_conn_queued_bytes unsent, the rest of the read buffer
 * is kept and reading stops until a write completes: a client that
 * pipelines and never reads holds one answer, not one per request. */
#include "http-internal.h"

#include <assert.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"
#include "log.h"

static int on_message_begin(http_parser *p)
{
    am_http_conn_t *c = p->data;
    am_buf_reset(&c->url);
    am_buf_reset(&c->accept);
    am_buf_reset(&c->accept_encoding);
    am_buf_reset(&c->expect);
    am_buf_reset(&c->authorization);
    c->has_accept = c->has_accept_encoding = c->has_expect = c->has_authorization = false;
    c->refuse_body = false;
    c->hname_len = 0;
    c->hvalue = NULL;
    c->in_field = false;
    c->body_bytes = 0;
    c->reject = 0;
    c->request_begun = true;
    if (!c->in_request) {
        c->in_request = true;
        c->request_start = uv_now(c->srv->loop);
        am_http__arm_timer(c);
    }
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    am_http_conn_t *c = p->data;
    am_buf_append(&c->url, at, len);
    if (am_buf_failed(&c->url)) {
        c->oom = true;
        return -1;
    }
    return 0;
}

/* The header name is complete: pick where its value goes. */
static void header_name_done(am_http_conn_t *c)
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
    } else if (am_ascii_caseeq(c->hname, c->hname_len, "expect")) {
        c->hvalue = &c->expect;
        seen = &c->has_expect;
    } else if (am_ascii_caseeq(c->hname, c->hname_len, "authorization")) {
        c->hvalue = &c->authorization;
        seen = &c->has_authorization;
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
    am_http_conn_t *c = p->data;
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
    am_http_conn_t *c = p->data;
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

/* The Expect value names 100-continue (any case, in a list). */
static bool expects_continue(const am_buf_t *v)
{
    static const char want[] = "100-continue";
    size_t n = sizeof(want) - 1;
    for (size_t i = 0; v->data && i + n <= v->len; i++)
        if (am_ascii_caseeq(v->data + i, n, want))
            return true;
    return false;
}

static int on_headers_complete(http_parser *p)
{
    am_http_conn_t *c = p->data;
    if (c->in_field)
        header_name_done(c);
    if (am_buf_failed(&c->accept) || am_buf_failed(&c->accept_encoding) ||
        am_buf_failed(&c->expect) || am_buf_failed(&c->authorization)) {
        c->oom = true;
        return -1;
    }
    /* A client that sent Expect: 100-continue waits for our word before
     * it sends the body: a method we refuse gets its 405 now (then the
     * connection closes, since the body may follow anyway), instead of a
     * wait for a body that never comes. */
    bool body_follows =
        (p->flags & F_CHUNKED) || (p->content_length != ULLONG_MAX && p->content_length > 0);
    if (c->has_expect && body_follows && p->method != HTTP_GET && p->method != HTTP_HEAD &&
        expects_continue(&c->expect))
        c->refuse_body = true;
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
    am_http_conn_t *c = p->data;
    c->body_bytes += len;
    if (c->body_bytes > c->srv->limits.max_body_bytes) {
        c->reject = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    am_http_conn_t *c = p->data;
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
    while (e < end && *e != '?' && *e != '#' && *e != '\0') /* NUL: cut by an earlier call */
        e++;
    if (e < end)
        *e = '\0';
    *path = s;
    *len = (size_t)(e - s);
    return true;
}

/* ---- basic auth ---- */

/* A password check on the thread pool for a connection's current request.
 * Owned by the work until its after-work callback; conn is NULL once the
 * connection is gone. */
typedef struct am_http_auth_wait {
    uv_work_t work;
    am_http_server_t *srv; /* borrowed: the server waits for its auth_jobs */
    am_http_conn_t *conn;  /* borrowed; NULL once the connection closed */
    am_auth_job_t *job;    /* owned */
} auth_wait_t;

static void answer(am_http_conn_t *c);

void am_http__auth_detach(am_http_conn_t *c)
{
    if (c->auth_wait) {
        c->auth_wait->conn = NULL;
        c->auth_wait = NULL;
    }
}

/* 401 with the challenge; the connection stays open for the retry. */
static void deny(am_http_conn_t *c, bool keep, const char *why)
{
    am_http_server_t *srv = c->srv;
    srv->stats.auth_denied++;
    char peer[80];
    am_log(AM_LOG_DEBUG, "event=http_auth_denied reason=%s peer=%s", why,
           am_http__conn_peer(c, peer, sizeof(peer)));
    am_buf_t body;
    am_buf_init(&body, 0);
    am_buf_puts(&body, "Unauthorized\n");
    am_http_reply_t r = {
        .status = 401,
        .challenge = true,
        .head = c->parser.method == HTTP_HEAD,
        .keep_alive = keep,
        .body = &body,
    };
    am_http__conn_send(c, &r);
}

static void on_auth_work(uv_work_t *w)
{
    am_auth_job_run(((auth_wait_t *)w)->job);
}

static void on_auth_done(uv_work_t *w, int status)
{
    auth_wait_t *aw = (auth_wait_t *)w;
    am_http_server_t *srv = aw->srv;
    am_http_conn_t *c = aw->conn;
    assert(srv->auth_jobs > 0);
    srv->auth_jobs--;
    if (!c || status < 0) {
        am_auth_job_free(aw->job);
        free(aw);
        if (c) {
            c->auth_wait = NULL;
            am_http__conn_close(c);
        }
        am_http__maybe_finish(srv);
        return;
    }
    c->auth_wait = NULL;
    bool current = srv->sec && srv->sec->auth == am_auth_job_auth(aw->job);
    int rc = am_auth_job_finish(aw->job);
    free(aw);
    if (!current || srv->stopping) {
        /* The users were reloaded meanwhile: check again against the new ones. */
        answer(c);
    } else if (rc == AM_AUTH_OK) {
        answer(c);
    } else {
        deny(c, http_should_keep_alive(&c->parser) && !srv->stopping, "wrong_password");
    }
    if (!c->closing)
        am_http__conn_feed(c); /* the requests that waited behind this one */
}

/* Whether the current request may be answered: true, or false when it was
 * answered 401 or waits for a password check. */
static bool authorized(am_http_conn_t *c, const am_http_request_t *req, bool keep)
{
    am_http_server_t *srv = c->srv;
    am_auth_t *auth = srv->sec ? srv->sec->auth : NULL;
    /* /health stays open for probes. */
    if (!auth || (req->path_len == 7 && memcmp(req->path, "/health", 7) == 0))
        return true;
    if (!c->has_authorization) {
        deny(c, keep, "no_credentials");
        return false;
    }
    am_auth_job_t *job;
    int rc = am_auth_check(auth, c->authorization.data, c->authorization.len, &job);
    if (rc == AM_AUTH_OK)
        return true;
    if (rc == AM_AUTH_DENIED) {
        deny(c, keep, "malformed");
        return false;
    }
    if (rc == AM_AUTH_SLOW && srv->auth_jobs >= AM_HTTP_AUTH_MAX_JOBS) {
        /* Every check slot busy (a flood of new or wrong passwords): no
         * queue that would hold good clients behind bad ones, and no more
         * than two cores' worth of bcrypt. A credential checked before is
         * answered from the cache above and never gets here. */
        am_auth_job_free(job);
        srv->stats.auth_busy++;
        am_log(AM_LOG_DEBUG, "event=http_auth_busy jobs=%u", srv->auth_jobs);
        am_http__send_simple(c, 503, NULL, keep);
        return false;
    }
    auth_wait_t *aw = rc == AM_AUTH_SLOW ? calloc(1, sizeof(*aw)) : NULL;
    if (aw) {
        aw->srv = srv;
        aw->conn = c;
        aw->job = job;
        if (uv_queue_work(srv->loop, &aw->work, on_auth_work, on_auth_done) == 0) {
            srv->auth_jobs++;
            c->auth_wait = aw;
            am_http__stop_reading(c); /* rbuf may hold pipelined requests: keep them */
            am_http__arm_timer(c);
            return false;
        }
        free(aw);
    }
    am_auth_job_free(job);
    am_log(AM_LOG_WARN, "event=http_oom where=auth");
    am_http__send_simple(c, 500, NULL, keep);
    return false;
}

static void dispatch(am_http_conn_t *c)
{
    am_http_server_t *srv = c->srv;
    http_parser *p = &c->parser;
    assert(!c->deferred && !c->closing); /* conn_feed stops before either */
    bool keep = http_should_keep_alive(p) && !p->upgrade && !srv->stopping;
    srv->stats.requests++;
    c->in_request = false;
    c->request_begun = false;
    c->header_bytes = 0;
    if (p->method != HTTP_GET && p->method != HTTP_HEAD) {
        am_http__send_simple(c, 405, "GET, HEAD", keep);
        return;
    }
    answer(c);
}

/* Answers the complete GET/HEAD request the parser holds (once its user is
 * known to be valid). */
static void answer(am_http_conn_t *c)
{
    am_http_server_t *srv = c->srv;
    http_parser *p = &c->parser;
    bool keep = http_should_keep_alive(p) && !p->upgrade && !srv->stopping;
    am_http_request_t req = {.head = p->method == HTTP_HEAD};
    if (!url_path(&c->url, &req.path, &req.path_len)) {
        srv->stats.bad_requests++;
        am_http__send_simple(c, 400, NULL, false);
        return;
    }
    if (!authorized(c, &req, keep))
        return;
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
        d->http10 = p->http_major == 0 || (p->http_major == 1 && p->http_minor == 0);
        c->deferred = d;
        am_http__stop_reading(c); /* rbuf may hold pipelined requests: keep them */
        am_http__arm_timer(c);
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
        am_http__send_simple(c, 500, NULL, keep);
        return;
    }
    am_http_reply_t r = {
        .status = resp.status,
        .content_type = resp.content_type,
        .allow = resp.allow,
        .vary = resp.vary_encoding,
        .gzip = resp.gzipped,
        .head = req.head,
        .keep_alive = keep,
        .body = &body,
    };
    am_http__conn_send(c, &r);
}

/* Expect: 100-continue on a method other than GET/HEAD: 405 at the end of
 * the head, and the connection ends (what follows is drained, unread). */
static void refuse_expected_body(am_http_conn_t *c)
{
    c->refuse_body = false;
    c->srv->stats.requests++;
    c->in_request = false;
    c->request_begun = false;
    c->in_body = false;
    c->header_bytes = 0;
    c->roff = c->rlen;
    am_http__send_simple(c, 405, "GET, HEAD", false);
}

/* Parses rbuf[roff, rlen), answering each complete request. Stops reading
 * while the write queue is full and resumes from on_write. */
void am_http__conn_feed(am_http_conn_t *c)
{
    am_http_server_t *srv = c->srv;
    const am_http_limits_t *l = &srv->limits;
    size_t max_pending = l->max_pending_responses ? l->max_pending_responses : 1;
    while (c->roff < c->rlen) {
        if (c->closing || c->deferred || c->auth_wait)
            return;
        if (c->final) {
            c->roff = c->rlen; /* nothing after the last response is answered */
            break;
        }
        if (c->writes >= max_pending || (l->max_conn_queued_bytes && c->writes > 0 &&
                                         am_http__conn_unsent(c) > l->max_conn_queued_bytes)) {
            am_http__stop_reading(c);
            return;
        }
        bool was_body = c->in_body;
        size_t avail = c->rlen - c->roff;
        size_t n = http_parser_execute(&c->parser, &srv->settings, c->rbuf + c->roff, avail);
        assert(n <= avail);
        c->roff += n;
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        /* Pauses split every execute at the end of a header block, so a run
         * that started outside a body only read header bytes. */
        if (!was_body) {
            /* A pause in on_headers_complete leaves the block's final LF for
             * the next run: count it here, where it belongs. */
            c->header_bytes += n + (c->in_body ? 1 : 0);
            if (l->max_header_bytes && c->header_bytes > l->max_header_bytes) {
                am_http__conn_reject(c, 431);
                break;
            }
        }
        if (err == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (c->refuse_body) {
                refuse_expected_body(c);
                break;
            }
            if (c->message_done) {
                c->message_done = false;
                dispatch(c);
            }
            continue;
        }
        if (err != HPE_OK) {
            if (c->oom) {
                am_log(AM_LOG_WARN, "event=http_oom where=request");
                am_http__conn_close(c);
                return;
            }
            am_http__conn_reject(c, c->reject ? c->reject : err == HPE_HEADER_OVERFLOW ? 431 : 400);
            break;
        }
        if (n < avail) { /* cannot happen without an error or pause; do not spin */
            am_http__conn_reject(c, 400);
            break;
        }
    }
    if (c->roff >= c->rlen && !c->deferred && !c->auth_wait)
        am_http__start_reading(c);
}

am_http_deferred_t *am_http_defer(am_http_response_t *resp)
{
    am_http_deferred_t *d = calloc(1, sizeof(*d));
    resp->deferred = d;
    return d;
}

/* Both finishes: a private body (stolen) or a shared one (a reference). */
static void deferred_finish(am_http_deferred_t *d, am_buf_t *body, am_http_body_t *shared,
                            bool gzipped)
{
    am_http_conn_t *c = d->conn;
    assert(!c || c->deferred == d); /* finished once, on its own connection */
    bool head = d->head, keep = d->keep_alive, vary = d->vary;
    const char *type = d->content_type;
    free(d);
    if (!c) {
        if (body)
            am_buf_free(body);
        return;
    }
    c->deferred = NULL;
    if (body && am_buf_failed(body)) {
        am_log(AM_LOG_WARN, "event=http_handler_failed status=200 body_failed=1");
        am_buf_free(body);
        am_http__send_simple(c, 500, NULL, keep);
    } else {
        am_http_reply_t r = {
            .status = 200,
            .content_type = type,
            .vary = vary,
            .gzip = gzipped,
            .head = head,
            .keep_alive = keep,
            .body = body,
            .shared = shared,
        };
        am_http__conn_send(c, &r);
    }
    if (!c->closing)
        am_http__conn_feed(c); /* the requests that waited behind this one */
}

void am_http_deferred_finish(am_http_deferred_t *d, am_buf_t *body, bool gzipped)
{
    deferred_finish(d, body, NULL, gzipped);
}

void am_http_deferred_finish_shared(am_http_deferred_t *d, am_http_body_t *b, bool gzipped)
{
    deferred_finish(d, NULL, b, gzipped);
}

void am_http__parser_settings(http_parser_settings *settings)
{
    http_parser_settings_init(settings);
    settings->on_message_begin = on_message_begin;
    settings->on_url = on_url;
    settings->on_header_field = on_header_field;
    settings->on_header_value = on_header_value;
    settings->on_headers_complete = on_headers_complete;
    settings->on_body = on_body;
    settings->on_message_complete = on_message_complete;
}
