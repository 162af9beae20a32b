/* stream: a /metrics body sent while it is rendered (http.h "A body sent
 * while it is still being rendered"). The stream keeps the chunks some
 * reader has not queued yet; each reader (a deferred answer, owned by the
 * stream once attached) queues at most READER_INFLIGHT bytes on its
 * connection and takes more as they are written, so a chunk is held once
 * however many read it, and only until the slowest has queued it. */
#include "http-internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "log.h"

/* What one reader's connection holds unsent (queued, not yet taken by
 * the kernel), at most, before it takes more chunks: a reader that keeps
 * up gets what the kernel takes in one loop turn, a slow one pins this
 * much (and the kernel another NOTSENT_LOWAT, conn.c). */
#define READER_INFLIGHT (512 * 1024)

/* Pushed bytes are cut into chunks of at most AM_HTTP_CHUNK_MAX (256
 * KiB): a reader pins the chunks it has queued until they are written, so
 * what a slow one pins stays close to READER_INFLIGHT. */
#define CHUNK_MAX AM_HTTP_CHUNK_MAX

struct am_http_chunk {
    am_http_chunk_t *next;
    am_http_body_t *body; /* the stream's reference; each queued write holds its own */
    uint64_t end;         /* the stream's length up to and with this chunk */
    unsigned pending;     /* readers that have not queued it yet */
};

struct am_http_stream {
    am_http_server_t *srv; /* borrowed */
    unsigned refs;         /* the producer's and one per reader */
    bool gzipped;
    am_http_deferred_t *readers; /* owned: the attached answers */
    unsigned nreaders;
    am_http_chunk_t *first, *last; /* owned: chunks some reader has not queued, oldest first */
    uint64_t produced;             /* bytes pushed */
    size_t retained;               /* bytes of the chunks held (in the server's queued_old) */
    uint64_t gen;                  /* its place among the server's bodies (the budget's order) */
    bool ended;
    bool unpaced;    /* the producer no longer waits for readers */
    bool replayable; /* every chunk since the first is kept: a late reader may join */
    bool waiting; /* the producer found it not ready and waits for wake */
    void (*wake)(void *ctx);
    void *wake_ctx; /* borrowed */
};

am_http_stream_t *am_http_stream_new(am_http_server_t *srv, bool gzipped, void (*wake)(void *ctx),
                                     void *ctx)
{
    am_http_stream_t *st = calloc(1, sizeof(*st));
    if (!st)
        return NULL;
    st->srv = srv;
    st->refs = 1;
    st->gzipped = gzipped;
    st->gen = ++srv->bodies_made;
    st->replayable = true;
    st->wake = wake;
    st->wake_ctx = ctx;
    return st;
}

/* Frees the chunks every reader has queued (their writes hold their own
 * references). */
static void drop_queued_chunks(am_http_stream_t *st)
{
    while (st->first && st->first->pending == 0 && !st->replayable) {
        am_http_chunk_t *ch = st->first;
        st->first = ch->next;
        if (!st->first)
            st->last = NULL;
        st->retained -= ch->body->len;
        st->srv->queued_old -= ch->body->len;
        am_http_body_release(ch->body);
        free(ch);
    }
}

static void unref(am_http_stream_t *st)
{
    assert(st->refs > 0);
    if (--st->refs > 0)
        return;
    assert(!st->readers); /* each holds a reference */
    for (am_http_chunk_t *ch = st->first; ch; ch = ch->next)
        ch->pending = 0;
    st->replayable = false;
    drop_queued_chunks(st);
    free(st);
}

static bool ready_now(const am_http_stream_t *st)
{
    if (st->ended || st->nreaders == 0)
        return false;
    if (st->unpaced)
        return true;
    for (const am_http_deferred_t *d = st->readers; d; d = d->s_next)
        if (st->produced - d->s_written < AM_HTTP_STREAM_WINDOW)
            return true;
    return false;
}

/* A reader moved or left: the waiting producer goes on (or gives up). */
static void maybe_wake(am_http_stream_t *st)
{
    if (st->waiting && !st->ended && (st->nreaders == 0 || ready_now(st))) {
        st->waiting = false;
        st->wake(st->wake_ctx);
    }
}

/* Takes d off st's readers and frees it; st may be freed too. */
static void remove_reader(am_http_deferred_t *d)
{
    am_http_stream_t *st = d->stream;
    if (d->s_prev)
        d->s_prev->s_next = d->s_next;
    else
        st->readers = d->s_next;
    if (d->s_next)
        d->s_next->s_prev = d->s_prev;
    st->nreaders--;
    for (am_http_chunk_t *ch = d->s_next_chunk; ch; ch = ch->next)
        ch->pending--;
    free(d);
    drop_queued_chunks(st);
    maybe_wake(st);
    unref(st);
}

void am_http__stream_detach(am_http_deferred_t *d)
{
    assert(d->stream && !d->conn); /* am_http__conn_close unlinked it */
    remove_reader(d);
}

/* d's answer is complete on its connection: the chunked encoding's end
 * (or, HTTP/1.0, the connection's), then the requests that waited. */
static void finish(am_http_deferred_t *d)
{
    am_http_conn_t *c = d->conn;
    bool keep = d->keep_alive && !d->http10;
    bool terminator = !d->head && !d->http10;
    bool sent_chunk = d->s_sent_chunk;
    for (am_http_wreq_t *w = c->wq; w; w = w->next)
        if (w->reader == d)
            w->reader = NULL; /* the rest of it is written for nobody's count */
    c->deferred = NULL;
    remove_reader(d);
    if (terminator) {
        am_buf_t end;
        am_buf_init(&end, 0);
        am_buf_puts(&end, sent_chunk ? "\r\n0\r\n\r\n" : "0\r\n\r\n");
        if (!am_http__conn_write(c, &end, NULL, NULL, !keep))
            return;
    } else if (!keep) {
        am_http__conn_end(c);
        return;
    }
    if (!c->closing)
        am_http__conn_feed(c); /* the requests that waited behind this one */
}

/* Queues what d may take of the chunks: its response head first. */
static void pump(am_http_deferred_t *d)
{
    am_http_stream_t *st = d->stream;
    am_http_conn_t *c = d->conn;
    if (!d->s_started && (d->s_next_chunk || st->ended || d->head)) {
        d->s_started = true;
        am_http_reply_t r = {
            .status = 200,
            .content_type = d->content_type,
            .vary = d->vary,
            .gzip = st->gzipped,
            .head = d->head,
            .keep_alive = d->keep_alive && !d->http10,
            .streamed = true,
            .chunked = !d->http10,
        };
        if (!am_http__conn_send(c, &r))
            return; /* closed: d is gone */
        if (d->head) {
            finish(d);
            return;
        }
    }
    while (d->s_next_chunk && am_http__conn_unsent(c) < READER_INFLIGHT) {
        am_http_chunk_t *ch = d->s_next_chunk;
        am_buf_t head;
        am_buf_init(&head, 0);
        if (!d->http10)
            am_buf_printf(&head, "%s%zx\r\n", d->s_sent_chunk ? "\r\n" : "", ch->body->len);
        d->s_sent_chunk = true;
        d->s_next_chunk = ch->next;
        ch->pending--;
        if (!am_http__conn_write(c, &head, ch->body, d, false))
            return; /* closed: d is gone */
    }
    drop_queued_chunks(st);
    if (st->ended && !d->s_next_chunk)
        finish(d);
}

void am_http__stream_written(am_http_deferred_t *d, size_t n)
{
    d->s_written += n;
    maybe_wake(d->stream);
    pump(d);
}

uint64_t am_http__stream_counted_gen(const am_http_deferred_t *d)
{
    const am_http_stream_t *st = d->stream;
    return st && d->s_written < st->produced ? st->gen : 0;
}

bool am_http_stream_joinable(const am_http_stream_t *st)
{
    return st->replayable && !st->ended;
}

void am_http_stream_attach(am_http_stream_t *st, am_http_deferred_t *d)
{
    assert(am_http_stream_joinable(st)); /* a reader starts at the first chunk */
    /* The client left meanwhile: nothing to answer. */
    if (!d->conn) {
        free(d);
        return;
    }
    d->stream = st;
    st->refs++;
    d->s_next = st->readers;
    if (st->readers)
        st->readers->s_prev = d;
    st->readers = d;
    st->nreaders++;
    /* A late reader takes every chunk from the first. */
    d->s_next_chunk = st->first;
    for (am_http_chunk_t *ch = st->first; ch; ch = ch->next)
        ch->pending++;
    if (d->head || d->s_next_chunk)
        pump(d); /* the head alone, or what is there so far */
}

/* Appends data[0, len) as one chunk. 0 or -ENOMEM. */
static int append_chunk(am_http_stream_t *st, const char *data, size_t len)
{
    am_http_chunk_t *ch = calloc(1, sizeof(*ch));
    if (!ch || !(ch->body = am_http__chunk_new(st->srv, data, len, st->gen))) {
        free(ch);
        return -ENOMEM;
    }
    st->produced += len;
    ch->end = st->produced;
    ch->pending = st->nreaders;
    if (st->last)
        st->last->next = ch;
    else
        st->first = ch;
    st->last = ch;
    st->retained += len;
    st->srv->queued_old += len;
    if (st->produced > AM_HTTP_STREAM_REPLAY)
        st->replayable = false; /* its first chunks go once every reader took them */
    for (am_http_deferred_t *d = st->readers; d; d = d->s_next)
        if (!d->s_next_chunk)
            d->s_next_chunk = ch;
    return 0;
}

int am_http_stream_push(am_http_stream_t *st, const char *data, size_t len)
{
    int rc = st->ended ? -EINVAL : 0;
    for (size_t off = 0; rc == 0 && off < len; off += CHUNK_MAX)
        rc = append_chunk(st, data + off, len - off < CHUNK_MAX ? len - off : CHUNK_MAX);
    if (rc < 0)
        return rc;
    am_http_server_t *srv = st->srv;
    uint64_t fastest = 0;
    for (const am_http_deferred_t *d = st->readers; d; d = d->s_next)
        if (d->s_written > fastest)
            fastest = d->s_written;
    am_http_deferred_t *next;
    bool held = srv->enforce_held;
    srv->enforce_held = true; /* below, only d itself may go */
    for (am_http_deferred_t *d = st->readers; d; d = next) {
        next = d->s_next; /* closing d, or pumping it, removes only d */
        if (!st->unpaced && fastest - d->s_written > AM_HTTP_STREAM_LAG_MAX) {
            srv->stats.connections_shed++;
            char peer[80];
            am_log(AM_LOG_DEBUG, "event=http_shed reason=stream_lag lag=%" PRIu64 " peer=%s",
                   fastest - d->s_written, am_http__conn_peer(d->conn, peer, sizeof(peer)));
            am_http__conn_close(d->conn);
            continue;
        }
        pump(d);
    }
    srv->enforce_held = held;
    drop_queued_chunks(st); /* when no reader is left */
    am_http__enforce_queue_cap(srv);
    return 0;
}

bool am_http_stream_ready(am_http_stream_t *st)
{
    bool ready = ready_now(st);
    st->waiting = !ready && !st->ended && st->nreaders > 0;
    return ready;
}

unsigned am_http_stream_readers(const am_http_stream_t *st)
{
    return st->nreaders;
}

void am_http_stream_unpace(am_http_stream_t *st)
{
    st->unpaced = true;
}

void am_http_stream_end(am_http_stream_t *st, bool failed)
{
    assert(!st->ended); /* once */
    st->ended = true;
    st->waiting = false;
    am_http_server_t *srv = st->srv;
    bool held = srv->enforce_held;
    srv->enforce_held = true; /* below, only d itself may go */
    am_http_deferred_t *next;
    for (am_http_deferred_t *d = st->readers; d; d = next) {
        next = d->s_next;
        if (!failed) {
            pump(d);
        } else if (d->s_started) {
            am_http__conn_close(d->conn); /* the client sees the body cut short */
        } else {
            /* nothing sent yet: a whole answer still fits */
            am_http_conn_t *c = d->conn;
            bool keep = d->keep_alive;
            c->deferred = NULL;
            remove_reader(d);
            if (am_http__send_simple(c, 500, NULL, keep))
                am_http__conn_feed(c);
        }
    }
    srv->enforce_held = held;
    am_http__enforce_queue_cap(srv);
}

void am_http_stream_release(am_http_stream_t *st)
{
    if (!st)
        return;
    if (!st->ended)
        am_http_stream_end(st, true);
    unref(st);
}
