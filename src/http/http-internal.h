/* http-internal: what the HTTP server's own files share, and nobody else
 * includes. The server is one module (http.h) cut into files by concern:
 *
 *   http.c     the server: listener, accepting, start and graceful stop;
 *              the limits across connections: the connection cap and
 *              which connection it sheds, the queued-bytes budget
 *   conn.c     one TCP connection's I/O: reading, writing responses
 *              (shared bodies included), timers, shutdown, lingering close
 *   request.c  requests: http-parser callbacks, the handler call, deferred
 *              answers, pipelining
 *   stream.c   bodies sent while they are rendered: chunks shared by the
 *              stream's readers, paced by the fastest of them
 *
 * Everything runs on the loop given to am_http_server_start. Functions
 * named am_http__* are called across these files only.
 *
 * Ownership: the server owns its connections (the conns list, closing
 * ones included) and frees itself once the listener and every connection
 * are closed (am_http__maybe_finish). A connection's memory lives until
 * both its handles' close callbacks ran (libuv: handle memory only in
 * close_cb). A deferred answer is owned by the handler until
 * am_http_deferred_finish; the connection only points at it. A shared body
 * is owned by its references: the producer's and one per queued write. */
#pragma once

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "auth.h"
#include "buf.h"
#include "http.h"
#include "https.h"

enum {
    /* One read fills at most this much; also bounds the header bytes parsed
     * past the limit before we notice. Every open connection has one, so it
     * is most of a connection's memory: 4 KiB holds any scraper's request
     * (Prometheus sends about 300 bytes); a longer head takes more reads. */
    AM_HTTP_READ_BUF_SIZE = 4 * 1024,
    /* Longer header names are never one we care about (Accept-Encoding is 15). */
    AM_HTTP_HEADER_NAME_MAX = 32,
};

typedef enum am_http_timer_mode {
    AM_HTTP_TM_REQUEST, /* waiting for (the rest of) a request */
    AM_HTTP_TM_IDLE,    /* kept alive, nothing in flight */
    AM_HTTP_TM_WRITE,   /* a write or our shutdown has not completed */
    AM_HTTP_TM_LINGER,  /* FIN sent, draining the client before close */
} am_http_timer_mode_t;

typedef struct am_http_conn am_http_conn_t;
typedef struct am_http_wreq am_http_wreq_t;
typedef struct am_http_tls_conn am_http_tls_conn_t;
typedef struct am_http_stream am_http_stream_t;

/* One queued response: its buffers live until its write completes
 * (libuv: write buffers end with write_cb). On a TLS connection the
 * plaintext is encrypted a chunk at a time as the socket drains (https.c):
 * off counts the bytes encrypted so far. */
struct am_http_wreq {
    uv_write_t req;
    am_http_wreq_t *next; /* the connection's writes in flight */
    char *head;           /* owned until the write completes */
    size_t head_len;
    char *body;             /* owned until the write completes: a private body, or NULL */
    am_http_body_t *shared; /* a reference until the write completes, or NULL */
    size_t body_len;        /* of body or shared; 0 when no body is sent */
    size_t off;             /* TLS: plaintext bytes of head + body encrypted */
    struct am_http_deferred *reader; /* borrowed: the streamed answer whose chunk this is (its
                                        bytes are credited when written), or NULL */
    bool counted;           /* shared is held for the budget: until completion or the close */
};

/* The security a server applies to new connections (am_http_server_set_security). */
struct am_http_security {
    am_https_t *tls; /* a reference, or NULL: plain HTTP */
    am_auth_t *auth; /* a reference, or NULL: no users */
    char *headers;   /* owned: extra response header lines ("Name: v\r\n"), or NULL */
};

struct am_http_body {
    am_http_server_t *srv; /* borrowed: every body is released before the server is freed */
    char *data;            /* owned: malloc'd, or its own mapping (mapped) */
    size_t len;
    bool mapped;
    unsigned refs;    /* the producer's and one per queued write (memory) */
    unsigned holders; /* accounted writes: of open connections (the budget) */
    uint64_t gen;     /* the server's count of bodies made, this one included */
    bool superseded;  /* a newer body exists: counted in queued_old while held */
};

struct am_http_server {
    uv_loop_t *loop; /* borrowed until done() */
    uv_tcp_t listener;
    uv_tcp_t spare; /* accepts-and-closes a connection when malloc fails */
    bool spare_busy;
    bool accept_stalled;     /* a connection waits for uv_accept (see accept_and_close) */
    uv_timer_t accept_timer; /* retries a connection waiting for a slot (accept_one) */
    bool accept_timer_closed;
    bool accept_waiting; /* libuv holds a connection that waits for a slot */
    uint64_t accept_wait_since;
    http_parser_settings settings;
    am_http_limits_t limits; /* copied at start */
    am_http_handler_fn handler;
    void *ctx; /* the handler's, borrowed */
    am_http_stats_t stats;
    int port;
    am_http_conn_t *conns; /* owned: every conn not yet freed, closing ones included */
    unsigned live;         /* conns not closing: what max_connections counts */
    unsigned rejects_closing;
    /* The queued-bytes budget (limits.max_queued_bytes): every superseded
     * shared body that an open connection still holds, each counted once. */
    size_t queued_old;
    size_t queued_cap;      /* the budget; 0 = none */
    am_http_body_t *newest; /* borrowed: the last body made, NULL once freed */
    uint64_t bodies_made;
    /* A stream is walking its readers: shedding (which may close any of
     * them) waits until it is done (stream.c). */
    bool enforce_held;
    /* Stream chunks' mappings kept for reuse (am_http__chunk_new): a fast
     * reader's chunks are recycled warm instead of faulted in anew. */
#define AM_HTTP_CHUNK_MAX  (256 * 1024)   /* the size of a chunk's mapping */
#define AM_HTTP_CHUNK_POOL 8              /* 2 MiB kept at most */
    char *chunk_pool[AM_HTTP_CHUNK_POOL]; /* owned mappings */
    unsigned chunk_pool_len;
    bool start_failed;
    bool stopping;
    bool listener_closed;
    am_http_security_t *sec;  /* owned: what new connections and requests get, or NULL */
    unsigned auth_jobs;       /* password checks on the thread pool: the server waits for them */
#define AM_HTTP_AUTH_MAX_JOBS 2 /* at most this many at once; past it: 503 */
    char tls_rbuf[16 * 1024]; /* TLS connections' recv buffer: emptied in each read callback */
    void (*done)(void *ctx);
    void *done_ctx;  /* borrowed until done() */
    time_t date_sec; /* Date header cache: formatted once per second */
    char date[64];
};

struct am_http_conn {
    uv_tcp_t tcp; /* handle memory lives until both close callbacks ran */
    uv_timer_t timer;
    uv_shutdown_t shutdown;
    http_parser parser;
    am_http_server_t *srv;       /* borrowed: the server outlives its conns */
    am_http_conn_t *prev, *next; /* the server's list */
    int open_handles;

    /* The request being parsed; buffers (owned) are reused across requests. */
    am_buf_t url;
    am_buf_t accept;
    am_buf_t accept_encoding;
    am_buf_t expect;
    am_buf_t authorization;
    bool has_authorization;
    bool has_accept;
    bool has_accept_encoding;
    bool has_expect;
    bool refuse_body; /* Expect: 100-continue on a method we refuse: 405 at the head */
    char hname[AM_HTTP_HEADER_NAME_MAX];
    size_t hname_len; /* may exceed sizeof(hname): such a name matches nothing */
    am_buf_t *hvalue; /* borrowed: where the current header value goes; NULL drops it */
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

    size_t writes;      /* uv_write requests in flight */
    am_http_wreq_t *wq; /* owned until on_write: the writes in flight, oldest first */
    size_t write_queue_seen;
    uint64_t write_since; /* the last progress seen (or the first write) */
    uint64_t send_start;  /* when the queue last became non-empty */
    uint64_t send_bytes;  /* bytes queued since send_start (the min_send_rate deadline) */
    uint64_t idle_since;
    bool final; /* the last response is queued: parse nothing more */
    bool shutting;
    bool lingering;
    uint64_t linger_start;
    bool closing;
    am_http_timer_mode_t tmode;
    /* The answer the handler owes, or NULL: owned by the handler, which
     * frees it with am_http_deferred_finish; conn_close unlinks it. */
    struct am_http_deferred *deferred;
    /* A password check running on the thread pool for the current request,
     * or NULL: like a deferred answer, the connection waits on us. */
    struct am_http_auth_wait *auth_wait;
    am_http_tls_conn_t *tls; /* owned: the TLS state, NULL on a plain connection */

    char rbuf[AM_HTTP_READ_BUF_SIZE]; /* the recv buffer: on_alloc hands it to libuv */
};

typedef struct am_http_chunk am_http_chunk_t;

/* An answer owed by the handler (am_http_defer); once attached to a stream
 * (am_http_stream_attach), owned by the stream as one of its readers. */
struct am_http_deferred {
    am_http_conn_t *conn;     /* borrowed; NULL once the connection is gone */
    const char *content_type; /* static (see am_http_response_t) */
    bool vary;
    bool head;
    bool keep_alive;
    bool http10; /* the request was HTTP/1.0: no chunked encoding */
    /* A stream's reader: */
    am_http_stream_t *stream;            /* a reference, or NULL */
    am_http_deferred_t *s_prev, *s_next; /* the stream's readers */
    am_http_chunk_t *s_next_chunk;       /* borrowed from the stream: the next to queue, or
                                            NULL when every chunk made so far is queued */
    uint64_t s_written;                  /* stream bytes written to the connection */
    bool s_started;                      /* the response head is queued */
    bool s_sent_chunk;                   /* a chunk is queued: the next size line starts a line */
};

/* What goes on the wire for one response. */
typedef struct am_http_reply {
    int status;
    const char *content_type; /* static */
    const char *allow;        /* static, or NULL */
    bool vary;                /* caches must key on Accept-Encoding */
    bool gzip;                /* body holds gzip bytes */
    bool head;                /* HEAD: headers only */
    bool challenge;           /* 401: WWW-Authenticate: Basic */
    bool keep_alive;          /* false: last response of the connection */
    bool streamed;            /* the body follows in chunks: no Content-Length, no body now */
    bool chunked;             /* streamed with Transfer-Encoding: chunked (not HTTP/1.0) */
    am_buf_t *body;           /* its bytes are stolen (the buffer is left empty); unused
                                 with shared */
    am_http_body_t *shared;   /* or a shared body: a reference is taken */
} am_http_reply_t;

/* ---- http.c ---- */

/* Frees a stopping server once its listener and every connection (and
 * rejected socket) are closed, then calls done. */
void am_http__maybe_finish(am_http_server_t *srv);
/* Closes the slowest holders of counted bytes while the queued totals are
 * over the budget. */
void am_http__enforce_queue_cap(am_http_server_t *srv);

/* ---- stream.c ---- */

/* d's connection wrote n more bytes of its stream: queue more, or end. */
void am_http__stream_written(am_http_deferred_t *d, size_t n);
/* d's connection closed: the stream lets go of d and frees it. */
void am_http__stream_detach(am_http_deferred_t *d);
/* The stream d reads, when its retained bytes count against the queued
 * budget and d still has some to take: its generation; else 0. */
uint64_t am_http__stream_counted_gen(const am_http_deferred_t *d);

/* ---- conn.c ---- */

/* Accepts one pending connection onto srv (reading, timer armed). 0 (also
 * when the accept itself failed: the connection is then closing), or
 * -ENOMEM / a libuv error before a connection existed: the caller must
 * accept-and-close to keep the listener polled. */
int am_http__conn_accept(am_http_server_t *srv) __attribute__((warn_unused_result));
/* Closes now; queued writes are cancelled (their callbacks free them, and
 * their bytes leave the budget at once). A second call is a no-op. */
void am_http__conn_close(am_http_conn_t *c);
/* The generation of the oldest superseded shared body (or counted stream)
 * c's unsent answers hold (what counts against the budget), or 0. */
uint64_t am_http__conn_oldest_counted(const am_http_conn_t *c);
/* A body for one chunk of a stream (of generation gen): a copy of
 * data[0, len) (0 < len <= AM_HTTP_CHUNK_MAX) and one reference; never the newest, so its bytes
 * count against the budget while writes hold it. NULL when out of memory. */
am_http_body_t *am_http__chunk_new(am_http_server_t *srv, const char *data, size_t len,
                                   uint64_t gen) __attribute__((warn_unused_result));
/* Unmaps the pool (the server is being freed). */
void am_http__chunk_pool_free(am_http_server_t *srv);
/* The client's address as "ip:port" into buf (n bytes, the caller's), for
 * debug logs; "?" when unknown. Returns buf. */
const char *am_http__conn_peer(am_http_conn_t *c, char *buf, size_t n);
/* How long c's answers have made no progress, in ms (0 without writes);
 * notes progress seen since the last look. */
uint64_t am_http__conn_stalled_ms(am_http_conn_t *c, uint64_t now);
/* (Re)arms the connection's one timer from its state; idempotent. */
void am_http__arm_timer(am_http_conn_t *c);
void am_http__start_reading(am_http_conn_t *c);
void am_http__stop_reading(am_http_conn_t *c);
/* Queues one response (r->body's bytes stolen). false when the connection
 * had to be closed. */
bool am_http__conn_send(am_http_conn_t *c, const am_http_reply_t *r);
/* Queues raw bytes: head (stolen; may be empty when shared is given) and
 * a reference to shared's bytes (or NULL), credited to reader when written
 * (or NULL). last: nothing follows on this connection. false as
 * am_http__conn_send. */
bool am_http__conn_write(am_http_conn_t *c, am_buf_t *head, am_http_body_t *shared,
                         am_http_deferred_t *reader, bool last);
/* Nothing more will be queued: FIN once the queued writes are out. */
void am_http__conn_end(am_http_conn_t *c);
/* A response the module writes itself: the reason phrase as the body
 * (allow: static, or NULL). false as am_http__conn_send. */
bool am_http__send_simple(am_http_conn_t *c, int status, const char *allow, bool keep_alive);
/* 400/413/431: counted, answered, then closed once the answer is out. */
void am_http__conn_reject(am_http_conn_t *c, int status);

/* Completes one queued response: unlinks and frees it, then goes on with
 * the connection (more requests, or the close after the last answer). */
void am_http__write_done(am_http_conn_t *c, am_http_wreq_t *w, int status);
/* Bytes queued but not yet taken by the kernel: libuv's write queue plus,
 * on TLS, the plaintext not encrypted yet. */
size_t am_http__conn_unsent(am_http_conn_t *c);
/* The client closed its side: finish what is queued, answer nothing new. */
void am_http__conn_eof(am_http_conn_t *c);
/* Frees what a connection still owns once its handles are closed. */
void am_http__wreq_free(am_http_wreq_t *w);

/* ---- https.c: the record layer of one connection ---- */

/* Starts TLS on an accepted connection with the server's context. 0 or
 * -ENOMEM. */
int am_http__tls_accept(am_http_conn_t *c, am_https_t *tls) __attribute__((warn_unused_result));
/* Ciphertext arrived (data borrowed for the call). */
void am_http__tls_on_read(am_http_conn_t *c, const char *data, size_t n);
/* Reading resumed: hands on plaintext TLS already holds. */
void am_http__tls_resume(am_http_conn_t *c);
/* w was appended to c->wq: encrypt and send as the socket drains. */
void am_http__tls_pump(am_http_conn_t *c);
/* Plaintext queued and not encrypted yet. */
size_t am_http__tls_pending(const am_http_conn_t *c);
/* Queues close_notify before our FIN. */
void am_http__tls_shutdown(am_http_conn_t *c);
/* Frees the TLS state (the connection's handles are closed). */
void am_http__tls_free(am_http_conn_t *c);

/* ---- request.c ---- */

/* A closing connection lets go of its password check (which finishes on
 * the thread pool and is then only freed). */
void am_http__auth_detach(am_http_conn_t *c);

/* The http-parser callbacks, into settings. */
void am_http__parser_settings(http_parser_settings *settings);
/* Parses rbuf[roff, rlen), answering each complete request. Stops reading
 * while the write queue is full or an answer is deferred; resumed from
 * on_write and am_http_deferred_finish. */
void am_http__conn_feed(am_http_conn_t *c);
