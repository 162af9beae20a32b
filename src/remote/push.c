#include "push.h"

#include <errno.h>
#include <http_parser.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <uv.h>

#include "am_config.h"
#include "encode.h"
#include "file.h"
#include "log.h"
#include "queue.h"
#include "tls.h"

/* Encoding runs for at most this long per loop turn (as a scrape renders). */
#define ENCODE_STEP_NS 1000000
#define READ_BUF       (64 * 1024)
#define SECRET_MAX     4096

/* One connection to the receiver. Memory lives until its handle's close
 * callback; p is NULL once the push let go of it. */
typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    am_push_t *p;
    am_tlsc_t *tls; /* owned; NULL for plain http */
    bool connected, handshaken;
    bool reused;    /* a request went through it already */
    bool in_flight; /* a request is out, its answer not complete */
    bool complete, keep_alive;
    bool retire; /* settings changed: close after this answer */
    size_t got;  /* answer bytes */
    int status;
    http_parser parser;
} conn_t;

typedef struct wblock {
    uv_write_t req;
    size_t len;
    char data[];
} wblock_t;

struct am_push {
    uv_loop_t *loop;
    am_push_want_fn want;
    void *want_ctx;
    bool on;
    am_remote_url_t url;
    char *auth;          /* owned: "Authorization: ...\r\n" or NULL */
    am_tlsc_ctx_t *tctx; /* owned; https only */
    unsigned interval_ms, timeout_ms;
    char **ext; /* owned copy of the external labels (2 * next) */
    size_t next;
    am_remote_enc_t *enc; /* owned */
    am_rwq_t q;
    uv_timer_t tick, retry, timeout;
    uv_idle_t idle;
    uv_getaddrinfo_t gai;
    bool resolving, resolve_stale;
    conn_t *conn;
    bool waiting_body, retry_wait, stopping, closing;
    int open_handles;
    uint64_t sent, failed;
    uint64_t hold_ns;
    bool enc_holds;
    double last_pause;
    /* this push so far, for its debug line (the cost figures) */
    uint64_t push_begun_ns, push_enc_ns, push_bytes;
    size_t push_requests;
    char rbuf[READ_BUF];
    char plain[READ_BUF];
};

static void kick(am_push_t *p);
static void close_all(am_push_t *p);
static void peer_closed(am_push_t *p, conn_t *c, int err, const char *why);

/* ---- connections ---- */

static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    am_tlsc_free(c->tls);
    free(c);
}

static void drop_conn(am_push_t *p)
{
    conn_t *c = p->conn;
    if (!c)
        return;
    p->conn = NULL;
    c->p = NULL;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_retry(uv_timer_t *h)
{
    am_push_t *p = h->data;
    p->retry_wait = false;
    kick(p);
}

static void start_retry(am_push_t *p)
{
    p->retry_wait = true;
    uv_timer_start(&p->retry, on_retry, am_rwq_backoff(&p->q), 0);
}

/* The attempt in flight failed (network, timeout, TLS, 5xx, 429). */
static void attempt_failed(am_push_t *p, const char *why, bool close_conn)
{
    uv_timer_stop(&p->timeout);
    am_rwq_item_t *it = am_rwq_head(&p->q);
    if (close_conn)
        drop_conn(p);
    if (!it || !p->q.head_busy)
        return;
    p->q.head_busy = false;
    p->failed += it->nsamples;
    am_log(AM_LOG_WARN, "event=remote_write_failed url=%s samples=%zu error=\"%s\"",
           p->url.hostport, it->nsamples, why);
    start_retry(p);
}

static void on_written(uv_write_t *req, int status)
{
    wblock_t *w = (wblock_t *)req;
    conn_t *c = req->data;
    free(w);
    if (status < 0 && c->p && c->p->conn == c)
        peer_closed(c->p, c, status, NULL);
}

/* Sends len bytes (stolen: a wblock_t's data, or NULL for out of memory). */
static void send_block(conn_t *c, wblock_t *w)
{
    if (!w) {
        attempt_failed(c->p, "out of memory", true);
        return;
    }
    w->req.data = c;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0) {
        free(w);
        attempt_failed(c->p, uv_strerror(rc), true);
    }
}

/* Whatever TLS has for the socket goes out. */
static void flush_tls(conn_t *c)
{
    size_t n;
    char *bytes;
    while (c->p && (bytes = am_tlsc_take_out(c->tls, &n))) {
        wblock_t *w = malloc(sizeof(*w) + n);
        if (w) {
            memcpy(w->data, bytes, n);
            w->len = n;
        }
        free(bytes);
        send_block(c, w);
    }
}

static void write_request(am_push_t *p, conn_t *c)
{
    am_rwq_item_t *it = am_rwq_head(&p->q);
    char head[4096 + SECRET_MAX];
    int hn = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: alice-metrics/" AM_VERSION
                      "\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\n"
                      "X-Prometheus-Remote-Write-Version: 0.1.0\r\nContent-Length: %zu\r\n%s\r\n",
                      p->url.path, p->url.hostport, it->len, p->auth ? p->auth : "");
    if (hn < 0 || (size_t)hn >= sizeof(head)) {
        attempt_failed(p, "request head too long", true);
        return;
    }
    c->in_flight = true;
    c->complete = false;
    c->got = 0;
    c->status = 0;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    wblock_t *w = malloc(sizeof(*w) + (size_t)hn + it->len);
    if (w) {
        memcpy(w->data, head, (size_t)hn);
        memcpy(w->data + hn, it->bytes, it->len);
        w->len = (size_t)hn + it->len;
    }
    if (!c->tls) {
        send_block(c, w);
        return;
    }
    int rc = w ? am_tlsc_write(c->tls, w->data, w->len) : -ENOMEM;
    free(w);
    if (rc < 0) {
        attempt_failed(p, "TLS write failed", true);
        return;
    }
    flush_tls(c);
}

static int on_headers_complete(http_parser *hp)
{
    conn_t *c = hp->data;
    c->status = (int)hp->status_code;
    return 0;
}

static int on_message_complete(http_parser *hp)
{
    conn_t *c = hp->data;
    c->complete = true;
    c->keep_alive = http_should_keep_alive(hp) != 0;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

/* A complete answer to the head request. */
static void answered(am_push_t *p, conn_t *c)
{
    uv_timer_stop(&p->timeout);
    c->in_flight = false;
    c->reused = true;
    am_rwq_item_t *it = am_rwq_head(&p->q);
    int st = c->status;
    if (!c->keep_alive || c->retire)
        drop_conn(p);
    if (!it || !p->q.head_busy)
        return;
    if (st >= 200 && st < 300) {
        p->sent += it->nsamples;
        am_rwq_pop(&p->q);
        am_rwq_backoff_reset(&p->q);
    } else if (st >= 500 || st == 429) {
        char why[32];
        snprintf(why, sizeof(why), "HTTP %d", st);
        attempt_failed(p, why, false);
        return;
    } else {
        am_log(AM_LOG_WARN,
               "event=remote_write_dropped url=%s samples=%zu status=%d reason=\"the receiver "
               "refused the request; it is not retried\"",
               p->url.hostport, it->nsamples, st);
        p->q.dropped_samples += it->nsamples;
        am_rwq_pop(&p->q);
        am_rwq_backoff_reset(&p->q);
    }
    kick(p);
}

/* Plaintext from the receiver. */
static void parse(am_push_t *p, conn_t *c, const char *d, size_t n)
{
    if (!c->in_flight) {
        drop_conn(p); /* nothing was asked: a confused peer */
        return;
    }
    c->got += n;
    size_t used = http_parser_execute(&c->parser, &parser_settings, d, n);
    if (c->complete) {
        answered(p, c);
        return;
    }
    if (used != n || HTTP_PARSER_ERRNO(&c->parser) != HPE_OK)
        attempt_failed(p, "bad HTTP answer", true);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)hint;
    static char sink[64];
    *buf = c->p ? uv_buf_init(c->p->rbuf, READ_BUF) : uv_buf_init(sink, sizeof(sink));
}

/* The receiver closed the connection, or it broke: err is UV_EOF (also a
 * TLS close_notify) or a libuv error; why, when not NULL, says it better. */
static void peer_closed(am_push_t *p, conn_t *c, int err, const char *why)
{
    if (!p->q.head_busy) {
        drop_conn(p); /* idle: the next request opens another */
        return;
    }
    if (c->in_flight && c->reused && c->got == 0 &&
        (err == UV_EOF || err == UV_ECONNRESET || err == UV_EPIPE)) {
        /* a kept-alive connection the receiver closed as the request went
         * (its idle timeout): again at once on a new one, not counted, as
         * HTTP clients do. A new connection never comes back here. */
        uv_timer_stop(&p->timeout);
        drop_conn(p);
        p->q.head_busy = false;
        kick(p);
        return;
    }
    if (c->in_flight && c->got && err == UV_EOF) /* an answer the close ends */
        http_parser_execute(&c->parser, &parser_settings, NULL, 0);
    if (c->complete)
        answered(p, c);
    else
        attempt_failed(p, why ? why : err == UV_EOF ? "connection closed" : uv_strerror(err), true);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    am_push_t *p = c->p;
    if (!p || nread == 0)
        return;
    if (nread < 0) {
        peer_closed(p, c, (int)nread, NULL);
        return;
    }
    if (!c->tls) {
        parse(p, c, buf->base, (size_t)nread);
        return;
    }
    if (am_tlsc_feed(c->tls, buf->base, (size_t)nread) < 0) {
        attempt_failed(p, "out of memory", true);
        return;
    }
    if (!c->handshaken) {
        char why[256];
        int rc = am_tlsc_handshake(c->tls, why, sizeof(why));
        flush_tls(c);
        if (rc < 0) {
            attempt_failed(p, why, true);
            return;
        }
        if (rc > 0 || !c->p)
            return;
        c->handshaken = true;
        if (p->q.head_busy)
            write_request(p, c);
    }
    while (c->p == p && p->conn == c) {
        ssize_t r = am_tlsc_read(c->tls, p->plain, sizeof(p->plain));
        if (r == 0)
            break;
        if (r < 0) {
            peer_closed(p, c, r == -EPIPE ? UV_EOF : UV_EPROTO, r == -EPIPE ? NULL : "TLS error");
            return;
        }
        parse(p, c, p->plain, (size_t)r);
    }
    if (c->p == p && p->conn == c)
        flush_tls(c); /* what reading made TLS answer (a key update) */
}

static void on_connected(uv_connect_t *req, int status)
{
    conn_t *c = req->data;
    am_push_t *p = c->p;
    if (!p)
        return;
    if (status < 0) {
        attempt_failed(p, uv_strerror(status), true);
        return;
    }
    c->connected = true;
    uv_tcp_nodelay(&c->tcp, 1);
    int rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc < 0) {
        attempt_failed(p, uv_strerror(rc), true);
        return;
    }
    if (!c->tls) {
        write_request(p, c);
        return;
    }
    char why[256];
    if (am_tlsc_handshake(c->tls, why, sizeof(why)) < 0) {
        attempt_failed(p, why, true);
        return;
    }
    flush_tls(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    am_push_t *p = req->data;
    p->resolving = false;
    bool stale = p->resolve_stale;
    p->resolve_stale = false;
    if (p->closing) {
        uv_freeaddrinfo(res);
        close_all(p);
        return;
    }
    if (stale || !p->q.head_busy) {
        uv_freeaddrinfo(res);
        kick(p);
        return;
    }
    if (status < 0 || !res) {
        uv_freeaddrinfo(res);
        attempt_failed(p, status < 0 ? uv_strerror(status) : "no address", false);
        return;
    }
    conn_t *c = calloc(1, sizeof(*c));
    if (!c) {
        uv_freeaddrinfo(res);
        attempt_failed(p, "out of memory", false);
        return;
    }
    c->p = p;
    uv_tcp_init(p->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    p->conn = c;
    if (p->url.tls && !(c->tls = am_tlsc_new(p->tctx, p->url.host))) {
        uv_freeaddrinfo(res);
        attempt_failed(p, "out of memory", true);
        return;
    }
    int rc = uv_tcp_connect(&c->creq, &c->tcp, res->ai_addr, on_connected);
    uv_freeaddrinfo(res);
    if (rc < 0)
        attempt_failed(p, uv_strerror(rc), true);
}

static void on_timeout(uv_timer_t *h)
{
    am_push_t *p = h->data;
    if (p->resolving)
        p->resolve_stale = true;
    attempt_failed(p, "timeout", true);
}

/* Sends the head of the queue if nothing is in flight. */
static void kick(am_push_t *p)
{
    if (p->closing)
        return;
    if (p->stopping && !am_rwq_head(&p->q)) {
        close_all(p);
        return;
    }
    if (!p->on || p->retry_wait || p->q.head_busy || p->resolving || !am_rwq_head(&p->q))
        return;
    p->q.head_busy = true;
    uv_timer_start(&p->timeout, on_timeout, p->timeout_ms, 0);
    conn_t *c = p->conn;
    if (c && c->connected && !c->in_flight && (!c->tls || c->handshaken)) {
        write_request(p, c);
        return;
    }
    drop_conn(p);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    p->gai.data = p;
    int rc = uv_getaddrinfo(p->loop, &p->gai, on_resolved, p->url.host, p->url.port, &hints);
    if (rc < 0)
        attempt_failed(p, uv_strerror(rc), false);
    else
        p->resolving = true;
}

/* ---- encoding ---- */

static void on_request_encoded(void *ctx, char *bytes, size_t len, size_t nsamples)
{
    am_push_t *p = ctx;
    p->push_bytes += len;
    p->push_requests++;
    size_t dropped = am_rwq_push(&p->q, bytes, len, nsamples);
    if (dropped)
        am_log(AM_LOG_WARN,
               "event=remote_write_dropped samples=%zu reason=\"queue full (max_queue_bytes)\"",
               dropped);
    kick(p);
}

static uint64_t thread_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void on_idle(uv_idle_t *h)
{
    am_push_t *p = h->data;
    uint64_t t0 = thread_cpu_ns();
    bool done = am_remote_enc_step(p->enc, ENCODE_STEP_NS, on_request_encoded, p);
    p->push_enc_ns += thread_cpu_ns() - t0;
    if (!done)
        return;
    uv_idle_stop(&p->idle);
    uint64_t held = p->hold_ns;
    uint64_t enc = am_remote_enc_take_longest_ns(p->enc);
    if (p->enc_holds && enc > held)
        held = enc;
    p->last_pause = (double)held / 1e9;
    /* encode_cpu_seconds: the encoder's steps (parse, protobuf, snappy,
     * queue) in this thread's CPU time (a busy machine's preemption left out);
     * seconds: from asking for the body (its render included) to here */
    am_log(AM_LOG_DEBUG,
           "event=remote_write_encoded series=%zu requests=%zu bytes=%" PRIu64
           " encode_cpu_seconds=%.6f seconds=%.6f longest_pause_seconds=%.6f"
           " render_longest_seconds=%.6f encode_longest_seconds=%.6f",
           am_remote_enc_series(p->enc), p->push_requests, p->push_bytes,
           (double)p->push_enc_ns / 1e9, (double)(uv_hrtime() - p->push_begun_ns) / 1e9,
           p->last_pause, (double)p->hold_ns / 1e9, (double)enc / 1e9);
}

static void on_tick(uv_timer_t *h)
{
    am_push_t *p = h->data;
    if (!p->on || p->stopping || p->waiting_body || am_remote_enc_busy(p->enc))
        return;
    p->waiting_body = true;
    p->push_begun_ns = uv_hrtime();
    p->push_enc_ns = p->push_bytes = 0;
    p->push_requests = 0;
    p->want(p->want_ctx);
}

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

void am_push_deliver(am_push_t *p, am_buf_t *body, uint64_t held_ns, bool encoding_holds_ingest)
{
    p->waiting_body = false;
    if (!p->on || p->stopping || p->closing || am_buf_failed(body)) {
        if (am_buf_failed(body))
            am_log(AM_LOG_ERROR, "event=remote_write_render_failed error=\"out of memory\"");
        am_buf_free(body);
        return;
    }
    p->hold_ns = held_ns;
    p->enc_holds = encoding_holds_ingest;
    (void)am_remote_enc_take_longest_ns(p->enc);
    int rc = am_remote_enc_begin(p->enc, body, now_ms());
    if (rc < 0) {
        am_log(AM_LOG_ERROR, "event=remote_write_encode_failed error=\"%s\"", strerror(-rc));
        return;
    }
    uv_idle_start(&p->idle, on_idle);
}

/* ---- settings ---- */

/* A secret file's first line, into a malloc'ed string; NULL with why.
 * Read on the loop (at start and SIGHUP): a FIFO or a device is refused,
 * never waited on (file.h). */
static char *read_secret(const char *path, char *why, size_t whylen)
{
    char *s;
    size_t n;
    if (am_file_read(path, SECRET_MAX, &s, &n, why, whylen) != 0)
        return NULL;
    s[strcspn(s, "\r\n")] = '\0';
    return s;
}

/* "Authorization: ...\r\n" for o, or NULL (none); false with why. */
static bool make_auth(const am_remote_opts_t *o, char **out, char *why, size_t whylen)
{
    *out = NULL;
    if (o->bearer_token_file) {
        char *tok = read_secret(o->bearer_token_file, why, whylen);
        if (!tok)
            return false;
        size_t n = strlen(tok) + 32;
        *out = malloc(n);
        if (*out)
            snprintf(*out, n, "Authorization: Bearer %s\r\n", tok);
        free(tok);
    } else if (o->username) {
        char *pw = o->password_file ? read_secret(o->password_file, why, whylen) : strdup("");
        if (!pw)
            return false;
        size_t rawn = strlen(o->username) + 1 + strlen(pw);
        char *raw = malloc(rawn + 1);
        unsigned char *b64 = malloc(4 * (rawn / 3 + 1) + 1);
        if (raw && b64) {
            snprintf(raw, rawn + 1, "%s:%s", o->username, pw);
            EVP_EncodeBlock(b64, (unsigned char *)raw, (int)rawn);
            size_t n = strlen((char *)b64) + 32;
            if ((*out = malloc(n)))
                snprintf(*out, n, "Authorization: Basic %s\r\n", b64);
        }
        free(raw);
        free(b64);
        free(pw);
    } else {
        return true;
    }
    if (!*out)
        snprintf(why, whylen, "out of memory");
    return *out != NULL;
}

static void free_ext(char **ext, size_t n)
{
    for (size_t i = 0; ext && i < 2 * n; i++)
        free(ext[i]);
    free(ext);
}

static bool same_ext(const am_push_t *p, const am_remote_opts_t *o)
{
    if (p->next != o->nexternal)
        return false;
    for (size_t i = 0; i < 2 * p->next; i++)
        if (strcmp(p->ext[i], o->external_labels[i]) != 0)
            return false;
    return true;
}

int am_push_configure(am_push_t *p, const am_remote_opts_t *o, char *why, size_t whylen)
{
    if (!o || !o->url) {
        if (p->on) {
            p->on = false;
            uv_timer_stop(&p->tick);
            uv_timer_stop(&p->retry);
            uv_timer_stop(&p->timeout);
            p->retry_wait = false;
            drop_conn(p);
            am_rwq_clear(&p->q);
            am_log(AM_LOG_INFO, "event=remote_write_off");
        }
        return 0;
    }
    am_remote_url_t url;
    if (am_remote_url_parse(o->url, &url, why, whylen) != 0)
        return -EINVAL;
    char *auth;
    if (!make_auth(o, &auth, why, whylen))
        return -EINVAL;
    am_tlsc_ctx_t *tctx = NULL;
    if (url.tls && !(tctx = am_tlsc_ctx_new(o->ca_file, o->cert_file, o->key_file,
                                            o->insecure_skip_verify, why, whylen))) {
        free(auth);
        return -EINVAL;
    }
    char **ext = calloc(2 * o->nexternal + 1, sizeof(*ext));
    bool ok = ext != NULL;
    for (size_t i = 0; ok && i < 2 * o->nexternal; i++)
        ok = (ext[i] = strdup(o->external_labels[i])) != NULL;
    if (!ok) {
        free_ext(ext, o->nexternal);
        free(auth);
        am_tlsc_ctx_free(tctx);
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    if (p->on && !same_ext(p, o)) {
        /* the old series end: they will come back under new labels */
        if (am_remote_enc_busy(p->enc))
            (void)am_remote_enc_step(p->enc, UINT64_MAX, on_request_encoded, p);
        uv_idle_stop(&p->idle);
        am_remote_enc_stale_all(p->enc, now_ms(), on_request_encoded, p);
    }
    if (am_remote_enc_set_external(p->enc, (const char *const *)ext, o->nexternal) != 0) {
        free_ext(ext, o->nexternal);
        free(auth);
        am_tlsc_ctx_free(tctx);
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    free_ext(p->ext, p->next);
    p->ext = ext;
    p->next = o->nexternal;
    free(p->auth);
    p->auth = auth;
    am_tlsc_ctx_free(p->tctx);
    p->tctx = tctx;
    p->url = url;
    p->timeout_ms = o->timeout_ms;
    p->q.max_bytes = o->max_queue_bytes;
    /* the next request goes out on a connection with the new settings */
    if (p->conn) {
        if (p->conn->in_flight && !p->conn->tls)
            p->conn->retire = true;
        else if (p->conn->in_flight)
            attempt_failed(p, "settings changed", true); /* its TLS context is gone */
        else
            drop_conn(p);
    }
    bool was_on = p->on;
    p->on = true;
    if (!was_on || p->interval_ms != o->interval_ms) {
        p->interval_ms = o->interval_ms;
        uv_timer_start(&p->tick, on_tick, p->interval_ms, p->interval_ms);
    }
    am_log(AM_LOG_INFO, "event=remote_write url=%s%s%s interval_ms=%u",
           url.tls ? "https://" : "http://", url.hostport, url.path, p->interval_ms);
    kick(p);
    return 0;
}

/* ---- lifecycle ---- */

am_push_t *am_push_new(struct uv_loop_s *loop, am_push_want_fn want, void *ctx)
{
    am_push_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (!(p->enc = am_remote_enc_new())) {
        free(p);
        return NULL;
    }
    p->loop = loop;
    p->want = want;
    p->want_ctx = ctx;
    am_rwq_init(&p->q, AM_REMOTE_DEFAULT_QUEUE_BYTES);
    uv_timer_init(loop, &p->tick);
    uv_timer_init(loop, &p->retry);
    uv_timer_init(loop, &p->timeout);
    uv_idle_init(loop, &p->idle);
    p->tick.data = p->retry.data = p->timeout.data = p->idle.data = p;
    p->open_handles = 4;
    return p;
}

void am_push_get_stats(const am_push_t *p, am_push_stats_t *st)
{
    st->enabled = p->on;
    st->sent = p->sent;
    st->failed = p->failed;
    st->dropped = p->q.dropped_samples;
    st->queue_bytes = p->q.bytes;
    st->last_longest_pause_seconds = p->last_pause;
}

static void free_push(am_push_t *p)
{
    am_rwq_clear(&p->q);
    am_remote_enc_free(p->enc);
    free_ext(p->ext, p->next);
    free(p->auth);
    am_tlsc_ctx_free(p->tctx);
    free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    am_push_t *p = h->data;
    if (--p->open_handles == 0 && !p->resolving)
        free_push(p);
}

/* Closes every handle; p is freed when the last one (and a resolution in
 * progress) is done. */
static void close_all(am_push_t *p)
{
    if (p->resolving) {
        p->closing = true;
        uv_cancel((uv_req_t *)&p->gai); /* on_resolved comes back here */
        return;
    }
    if (p->open_handles == 0) {
        free_push(p);
        return;
    }
    if (p->closing && uv_is_closing((uv_handle_t *)&p->tick))
        return;
    p->closing = true;
    if (am_rwq_head(&p->q))
        am_log(AM_LOG_WARN, "event=remote_write_unsent samples_queued=%zu bytes=%zu", p->q.n,
               p->q.bytes);
    drop_conn(p);
    uv_close((uv_handle_t *)&p->tick, on_handle_closed);
    uv_close((uv_handle_t *)&p->retry, on_handle_closed);
    uv_close((uv_handle_t *)&p->timeout, on_handle_closed);
    uv_close((uv_handle_t *)&p->idle, on_handle_closed);
}

static void on_final_deadline(uv_timer_t *h)
{
    close_all(h->data);
}

void am_push_stop(am_push_t *p)
{
    if (!p)
        return;
    p->stopping = true;
    uv_timer_stop(&p->tick);
    if (!p->on) {
        close_all(p);
        return;
    }
    if (am_remote_enc_busy(p->enc))
        (void)am_remote_enc_step(p->enc, UINT64_MAX, on_request_encoded, p);
    uv_idle_stop(&p->idle);
    am_remote_enc_stale_all(p->enc, now_ms(), on_request_encoded, p);
    /* the tick timer bounds the final push: the last request goes out, or
     * the timeout passes */
    uv_timer_start(&p->tick, on_final_deadline, p->timeout_ms, 0);
    kick(p);
}
