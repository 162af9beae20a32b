/* http: the scrape endpoint's HTTP/1.1 server, http-parser on the daemon's
 * libuv loop.
 *
 * The module owns connections, parsing, limits, timeouts, keep-alive,
 * pipelining order, HEAD and 400/405, the connection cap and which
 * connection it sheds, and the bytes connections may hold unsent (shared
 * bodies); it knows nothing of metrics, formats or encodings (negotiate.h
 * decides those, the handler encodes). The server module routes each
 * complete GET/HEAD request to one handler callback that fills a
 * response.
 *
 * Who calls: server.c, on the main loop; every callback (handler, done)
 * runs on that loop. Not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "buf.h"
#include "webconfig.h"

/* One request, as the handler sees it; every pointer is borrowed from the
 * connection until the handler returns (copy what a deferred answer needs). */
typedef struct am_http_request {
    bool head;        /* HEAD: the module drops the body, keeps the headers */
    const char *path; /* borrowed until the handler returns; no query string */
                      /* (also NUL-terminated; absolute-form targets give their path) */
    size_t path_len;
    const char *accept;          /* borrowed, NUL-terminated, NULL when absent */
    const char *accept_encoding; /* borrowed, NUL-terminated, NULL when absent */
} am_http_request_t;

/* The handler's answer, filled in place. */
typedef struct am_http_response {
    int status;               /* default 200 */
    const char *content_type; /* static string; default "text/plain; charset=utf-8" */
    const char *allow;        /* static string for an Allow header, or NULL */
    bool vary_encoding;       /* the answer depends on Accept-Encoding: Vary is sent */
    bool gzipped;             /* the body holds gzip bytes: Content-Encoding: gzip */
    am_buf_t *body;           /* borrowed until the handler returns: it appends the body here
                                 (the module owns the buffer and sends its bytes) */
    struct am_http_deferred *deferred; /* set by am_http_defer */
} am_http_response_t;

/* Called once per complete GET or HEAD request, in request order, with the
 * ctx given to am_http_server_start; req and resp are borrowed for the
 * call. */
typedef void (*am_http_handler_fn)(void *ctx, const am_http_request_t *req,
                                   am_http_response_t *resp);

/* A response the handler answers later (a scrape rendered between loop
 * turns). In the handler: d = am_http_defer(resp), with content_type and
 * vary_encoding set and the body left empty; NULL when out of memory (then
 * answer now). d is owned by the handler until it gives it back with
 * am_http_deferred_finish or am_http_deferred_finish_shared, which must
 * come from a later loop callback, exactly once per d, before the server is
 * stopped. The connection then answers nothing else, its pipelined requests
 * waiting, and has no timeout until then (nor is it shed: it waits on us,
 * not on its client). */
typedef struct am_http_deferred am_http_deferred_t;
am_http_deferred_t *am_http_defer(am_http_response_t *resp) __attribute__((warn_unused_result));
/* Sends the deferred answer: 200 with body's bytes (stolen: the buffer is
 * left empty, the caller still owns the am_buf_t), or 500 when body failed
 * (out of memory). gzipped: the bytes are gzip (Content-Encoding: gzip), as
 * the handler decided. When the client has gone meanwhile, only frees.
 * Frees d. */
void am_http_deferred_finish(am_http_deferred_t *d, am_buf_t *body, bool gzipped);

typedef struct am_http_server am_http_server_t;

/* One rendered body sent to several answers without a copy (every /metrics
 * request that asked for the same snapshot and format): reference-counted;
 * each queued answer holds a reference until its write completes or is
 * cancelled.
 *
 * The newest body a server made is free; once a newer one exists, an older
 * body still held by unsent answers counts against limits.max_queued_bytes
 * (and the slowest of its readers are closed while the total is over). */
typedef struct am_http_body am_http_body_t;
/* A new body of srv (borrowed: the body must be released before the
 * server's done) with buf's bytes (stolen: buf is left empty, the caller
 * still owns the am_buf_t) and one reference, the caller's. It becomes
 * srv's newest body. NULL when out of memory or when buf failed (buf is
 * then emptied too). May close connections: the slowest holders of older
 * bodies when over max_queued_bytes, never one with a deferred answer. */
am_http_body_t *am_http_body_new(am_http_server_t *srv, am_buf_t *buf)
    __attribute__((warn_unused_result));
/* Drops the caller's reference; the bytes go with the last one. NULL is
 * ignored. */
void am_http_body_release(am_http_body_t *b);
/* Sends the deferred answer with b's bytes (a reference is taken: the
 * caller keeps its own). Otherwise as am_http_deferred_finish. Frees d. */
void am_http_deferred_finish_shared(am_http_deferred_t *d, am_http_body_t *b, bool gzipped);

/* A body sent while it is still being rendered, to every answer attached
 * to it (Transfer-Encoding: chunked; an HTTP/1.0 client gets the bytes
 * and the connection's end). It holds only the chunks its slowest reader
 * has not taken, and is paced by its fastest: the producer renders more
 * only while am_http_stream_ready, unless it is unpaced (it has to finish:
 * another body waits, or the server stops). While paced, a reader more
 * than AM_HTTP_STREAM_LAG_MAX bytes behind the fastest is closed as a
 * slow reader.
 * The chunks a stream holds and those queued answers hold count against
 * limits.max_queued_bytes like an older body's bytes, so the budget also
 * bounds what slow readers of streams pin. Until AM_HTTP_STREAM_REPLAY
 * bytes are pushed the stream keeps every chunk, so a request that comes
 * meanwhile still joins it from the first byte; after that a later request
 * needs a body of its own. */
typedef struct am_http_stream am_http_stream_t;
#define AM_HTTP_STREAM_WINDOW  (1024 * 1024)     /* the fastest reader's lag that pauses */
#define AM_HTTP_STREAM_LAG_MAX (8 * 1024 * 1024) /* a reader behind this is closed */
#define AM_HTTP_STREAM_REPLAY  (4 * 1024 * 1024) /* kept whole for late readers */
/* A stream of srv (borrowed: released before the server's done) with one
 * reference, the producer's. wake(ctx) (borrowed until the release) is
 * called, from a loop callback, when a stream that was not ready becomes
 * ready or loses its last reader. gzipped: the bytes are gzip. NULL when
 * out of memory. */
am_http_stream_t *am_http_stream_new(am_http_server_t *srv, bool gzipped, void (*wake)(void *ctx),
                                     void *ctx) __attribute__((warn_unused_result));
/* Whether a new reader may still attach (nothing pushed is gone yet). */
bool am_http_stream_joinable(const am_http_stream_t *st);
/* Gives the deferred answer d to st (d is the stream's from now on; the
 * response head goes out with the first chunk, at once for HEAD, and a
 * late reader gets what was pushed so far at once). Only while
 * am_http_stream_joinable, and never from inside the handler call that
 * deferred d (its connection is set after the handler returns). */
void am_http_stream_attach(am_http_stream_t *st, am_http_deferred_t *d);
/* Appends a copy of data[0, len) (borrowed for the call; nothing when
 * len is 0), so the producer can reuse its buffer. 0, or -ENOMEM: the
 * caller then ends the stream failed. May close readers that fell
 * AM_HTTP_STREAM_LAG_MAX behind. */
int am_http_stream_push(am_http_stream_t *st, const char *data, size_t len)
    __attribute__((warn_unused_result));
/* The producer may push more now: some reader is within
 * AM_HTTP_STREAM_WINDOW of the end, or the stream is unpaced. */
bool am_http_stream_ready(am_http_stream_t *st);
/* Readers still attached: 0 means nobody wants the rest. */
unsigned am_http_stream_readers(const am_http_stream_t *st);
/* Stops pacing: ready from now on (see above). */
void am_http_stream_unpace(am_http_stream_t *st);
/* The body is complete (readers get the rest and the end), or, failed,
 * broken off: readers are closed, their bodies incomplete. Once. */
void am_http_stream_end(am_http_stream_t *st, bool failed);
/* Drops the producer's reference. NULL is ignored. */
void am_http_stream_release(am_http_stream_t *st);

typedef struct am_http_limits {
    size_t max_header_bytes;      /* request line + headers; over it: 431 and close */
    size_t max_body_bytes;        /* a GET/HEAD body beyond this: 413 and close */
    uint64_t idle_timeout_ms;     /* keep-alive connection with no request in flight */
    uint64_t request_timeout_ms;  /* from first byte to a complete request (slowloris): one
                                     deadline for the whole request, not one per read */
    uint64_t write_timeout_ms;    /* a response that makes no progress for this long */
    uint64_t min_send_rate;       /* bytes/s: what was queued since the connection's queue
                                     was last empty must be out by then + send_grace_ms +
                                     its bytes / this rate; 0 = no such deadline */
    uint64_t send_grace_ms;       /* see min_send_rate */
    unsigned max_connections;     /* at it, a new connection sheds the worst open one
                                     (http.c), or is closed when none is bad enough */
    uint64_t shed_grace_ms;       /* waiting on its client this long (a request head
                                     incomplete, a response not progressing), a connection
                                     may be shed for a new one */
    size_t max_pending_responses; /* pipelined requests queued per connection */
    size_t max_conn_queued_bytes; /* a connection with more unsent bytes than this reads no
                                     further request; 0 = no byte cap */
    size_t max_queued_bytes;      /* shared bodies held by unsent answers, each counted once,
                                     the newest not counted; over it the holders stalled
                                     for hold_grace_ms are closed, oldest body first.
                                     0 = 16 KiB x max_connections */
    uint64_t hold_grace_ms;       /* see max_queued_bytes */
} am_http_limits_t;

/* Fills the caller's limits with the defaults. 0 disables a timeout or
 * max_connections; max_pending_responses 0 counts as 1; max_header_bytes 0
 * leaves only http-parser's own 80 KiB cap. A fresh connection owes its
 * first request within request_timeout_ms (from accept). A request timeout
 * after a partial request answers 408; the other timeouts close silently. */
void am_http_limits_default(am_http_limits_t *limits);

typedef struct am_http_stats {
    uint64_t connections_accepted;
    uint64_t connections_rejected; /* new ones closed at once: at max_connections */
    uint64_t connections_shed;     /* open ones closed for a new one, or over max_queued_bytes */
    uint64_t requests;
    uint64_t bad_requests; /* 400/413/431 */
    uint64_t timeouts;
    uint64_t auth_denied; /* requests answered 401 (no, malformed or wrong credentials) */
    uint64_t auth_busy;   /* answered 503: every password check slot was busy */
    uint64_t tls_failed;  /* TLS connections closed for a failed handshake or record */
    unsigned connections_open;
} am_http_stats_t;

/* Binds host:port (IPv4 or IPv6 literal, borrowed for the call; port 0 =
 * ephemeral) and starts listening on loop. loop, handler and ctx are
 * borrowed until done (am_http_server_stop); limits is copied. *out belongs
 * to the server itself: it frees itself after am_http_server_stop, which
 * the caller must call once. Responses are written with write(2): the
 * process must ignore SIGPIPE.
 * Returns 0, UV_EINVAL for a bad host, port or argument, UV_ENOMEM, or the
 * socket/bind/listen errno (UV_EADDRINUSE, UV_EACCES, UV_EADDRNOTAVAIL...);
 * these failures leave nothing on the loop. */
int am_http_server_start(uv_loop_t *loop, const char *host, int port,
                         const am_http_limits_t *limits, am_http_handler_fn handler, void *ctx,
                         am_http_server_t **out) __attribute__((warn_unused_result));

/* The bound port (useful with port 0). */
int am_http_server_port(const am_http_server_t *srv);

/* The server's counters: borrowed from srv, valid until done. */
const am_http_stats_t *am_http_server_stats(const am_http_server_t *srv);

/* What new connections and requests get: TLS (the port then speaks only
 * TLS) and basic auth (every path but /health needs a valid user; 401 with
 * WWW-Authenticate otherwise), and extra response headers. */
typedef struct am_http_security am_http_security_t;
/* Builds them from a web config (borrowed for the call): 0, or -EINVAL /
 * -ENOMEM with a message naming the file in err (n bytes, the caller's).
 * *out is the caller's until it is given to a server. */
int am_http_security_new(const am_webconfig_t *wc, am_http_security_t **out, char *err, size_t n)
    __attribute__((warn_unused_result));
void am_http_security_free(am_http_security_t *sec);
/* Applies sec (stolen; NULL: plain HTTP, no users) to the connections
 * accepted from now on; open connections keep what they were accepted
 * with (their TLS context is reference-counted), but requests are checked
 * against the newest users. The old security is freed. */
void am_http_server_set_security(am_http_server_t *srv, am_http_security_t *sec);

/* Graceful stop: closes the listener, lets responses already being written
 * finish, closes idle connections, then frees everything and calls
 * done(ctx) (ctx borrowed until then). After done the server pointer is
 * invalid. done is always called from a later loop callback, never from
 * inside stop; a second stop is ignored. Pipelined requests not yet
 * answered are dropped. */
void am_http_server_stop(am_http_server_t *srv, void (*done)(void *ctx), void *ctx);
