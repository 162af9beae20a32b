/* server: the metrics-server daemon (see server.h): the loop, the signals,
 * the wiring of ingest (workers.c), HTTP (http.c) and the registries, the
 * /metrics queue and SIGHUP reload. */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <uv.h>

#include "am_config.h"
#include "buf.h"
#include "config.h"
#include "expose.h"
#include "health.h"
#include "http.h"
#include "liveview.h"
#include "log.h"
#include "mapping.h"
#include "negotiate.h"
#include "push.h"
#include "registry.h"
#include "scrape.h"
#include "expiry.h"
#include "statefile.h"
#include "selfstats.h"
#include "workers.h"

/* A scrape renders for at most this long (or one family) per loop turn,
 * then lets ingest run: 1 ms is ~1,000 datagrams at 1M lines/s, far below
 * what the receive buffer holds. */
#define SCRAPE_STEP_NS 1000000

/* A /metrics body still rendering with this much output is sent as it
 * renders, in chunks (am_http_stream_t), instead of held whole: what a
 * scrape costs in memory is then this plus the stream's window, not its
 * body. A smaller body keeps its Content-Length, and a scrape that comes
 * while it renders joins it (a stream too, until its first 4 MiB are
 * out: AM_HTTP_STREAM_REPLAY). */
#define STREAM_MIN_BYTES (2 * 1024 * 1024)

typedef struct server {
    uv_loop_t loop;
    const am_server_opts_t *opts; /* borrowed until am_server_run returns */
    am_selfstats_t stats;         /* HTTP, scrapes, reloads; ingest counters are the workers' */
    am_http_security_t *sec;      /* the web config's, until the HTTP server takes it; NULL */
    am_http_server_t *http;       /* frees itself after am_http_server_stop; NULL then */
    uv_signal_t sig_term, sig_int, sig_hup;
    bool stopping;
    am_workers_t *workers; /* owned */
    am_mapping_t *mapping; /* owned; every worker's registry borrows it; NULL: none */
    am_expiry_t expiry;    /* the TTL sweep's timer */
    bool expiry_ready;
    am_liveview_t *liveview; /* /api/v1/families and GET /; closes (frees) itself */
    am_statefile_t state;    /* the periodic state writer (--state-file) */
    bool state_ready;
    /* /metrics bodies, rendered by the idle handle one at a time, in
     * arrival order: the one rendering and the ones waiting. Each answers
     * every request for its format and encoding that arrived before it
     * finished: one body, shared, however many scrapers ask at once. */
    uv_idle_t scrape_idle;
    bool scrape_idle_ready;
    struct pending_scrape *scrape_active;           /* owned; merging (several), then rendering */
    am_scrape_t *scrape;                            /* owned; the active one's, once rendering */
    struct pending_scrape *queue_head, *queue_tail; /* owned */
    am_push_t *push;                                /* owned until am_push_stop; NULL: stopped */
} server_t;

/* One request waiting for a /metrics body. */
typedef struct scrape_answer {
    struct scrape_answer *next;
    am_http_deferred_t *d; /* owned until am_http_deferred_finish(_shared) */
} scrape_answer_t;

typedef struct pending_scrape {
    struct pending_scrape *next;
    scrape_answer_t *answers; /* owned: the requests this body answers, in arrival order */
    scrape_answer_t **answers_tail;
    am_format_t fmt;
    bool gzip;
    bool push;              /* remote write's body (no answers): text, no gzip */
    uint64_t begun;         /* uv_hrtime when its turn came */
    uint64_t merge_held_ns; /* several workers: the longest a worker was held */
    am_http_stream_t *stream; /* a reference once the body is sent as it renders (the
                                 answers are then the stream's), or NULL */
} pending_scrape_t;

static double now_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static bool several(const server_t *s)
{
    return am_workers_count(s->workers) > 1;
}

/* ---- /metrics ---- */

/* The counters a scrape reports: the server's own and every worker's (each
 * worker held in turn). */
static void scrape_selfstats(server_t *s, am_selfstats_t *st)
{
    const am_http_stats_t *hs = am_http_server_stats(s->http);
    s->stats.http_requests = hs->requests;
    s->stats.http_bad_requests = hs->bad_requests;
    s->stats.http_connections_rejected = hs->connections_rejected;
    s->stats.http_connections_shed = hs->connections_shed;
    s->stats.http_connections_open = hs->connections_open;
    s->stats.series_expired = s->expiry.expired;
    s->stats.state_writes_ok = s->state.writes_ok;
    s->stats.state_writes_failed = s->state.writes_failed;
    s->stats.last_state_longest_pause_seconds = s->state.last_longest_pause;
    s->stats.last_expiry_longest_pause_seconds = s->expiry.last_longest_pause;
    if (s->push) {
        am_push_stats_t ps;
        am_push_get_stats(s->push, &ps);
        s->stats.rw_enabled = ps.enabled;
        s->stats.rw_sent = ps.sent;
        s->stats.rw_failed = ps.failed;
        s->stats.rw_dropped = ps.dropped;
        s->stats.rw_queue_bytes = ps.queue_bytes;
        s->stats.last_rw_longest_pause_seconds = ps.last_longest_pause_seconds;
    }
    *st = s->stats;
    am_workers_add_ingest(s->workers, st);
    st->set_members = am_workers_set_members(s->workers);
    st->series_bytes = am_workers_series_bytes(s->workers);
}

/* Begins rendering: one worker's registry as a snapshot it keeps feeding,
 * or a finished merge (taken over even on failure). NULL when out of
 * memory. */
static am_scrape_t *begin_render(server_t *s, am_format_t fmt, bool gzip)
{
    am_selfstats_t st;
    if (!several(s)) {
        am_workers_read_now(s->workers);
        scrape_selfstats(s, &st);
        return am_scrape_begin(am_workers_registry(s->workers, 0), false, fmt, gzip, &st);
    }
    scrape_selfstats(s, &st);
    am_registry_t *snap = am_workers_merge_take(s->workers);
    am_scrape_t *sc = am_scrape_begin(snap, true, fmt, gzip, &st);
    if (!sc)
        am_registry_free(snap);
    return sc;
}

static void finish_merge_now(server_t *s);

/* The whole scrape at once, into resp's body (gzipped when the client
 * accepts it): while stopping, or when a deferred answer could not be set
 * up. */
static void render_metrics_now(server_t *s, const am_negotiated_t *n, am_http_response_t *resp)
{
    uint64_t t0 = uv_hrtime();
    am_buf_t *body = resp->body;
    am_scrape_t *sc = NULL;
    if (!several(s)) {
        sc = begin_render(s, n->format, n->gzip);
    } else {
        finish_merge_now(s); /* one merge at a time: the active scrape's first */
        int rc = am_workers_merge_begin(s->workers);
        while (rc == 0)
            rc = am_workers_merge_step(s->workers, UINT64_MAX);
        if (rc == AM_WORKERS_MERGED)
            sc = begin_render(s, n->format, n->gzip);
    }
    if (!sc) {
        body->failed = true; /* answered 500 */
        return;
    }
    am_scrape_step(sc, UINT64_MAX);
    am_buf_t *out = am_scrape_output(sc, &resp->gzipped);
    if (n->gzip && !resp->gzipped && out->len > 0 && !am_buf_failed(out))
        am_log(AM_LOG_DEBUG, "event=http_gzip_failed len=%zu", out->len); /* sent plain */
    am_buf_append(body, out->data, out->len);
    if (am_buf_failed(out))
        body->failed = true;
    am_scrape_free(sc);
    s->stats.last_scrape_seconds = (double)(uv_hrtime() - t0) / 1e9;
    s->stats.last_scrape_longest_pause_seconds = s->stats.last_scrape_seconds;
}

static void on_scrape_idle(uv_idle_t *h);

/* Sends body (its bytes taken) to every request p answers, then frees p;
 * a failed body (out of memory) answers 500. Finishing an answer may
 * dispatch pipelined requests, which queue or join other scrapes: p is no
 * longer reachable by then. */
static void answer_scrape(server_t *s, pending_scrape_t *p, am_buf_t *body, bool gzipped)
{
    am_http_body_t *shared = NULL;
    if (am_buf_failed(body))
        am_log(AM_LOG_ERROR, "event=render_failed path=/metrics error=\"out of memory\"");
    else if (!(shared = am_http_body_new(s->http, body)))
        am_log(AM_LOG_ERROR, "event=render_failed path=/metrics error=\"out of memory\"");
    scrape_answer_t *a = p->answers;
    free(p);
    while (a) {
        scrape_answer_t *next = a->next;
        if (shared) {
            am_http_deferred_finish_shared(a->d, shared, gzipped);
        } else {
            am_buf_t failed;
            am_buf_init(&failed, 0);
            failed.failed = true; /* answered 500 */
            am_http_deferred_finish(a->d, &failed, false);
        }
        free(a);
        a = next;
    }
    am_http_body_release(shared);
}

/* The active scrape failed (out of memory): answered 500. */
static void fail_active_scrape(server_t *s)
{
    pending_scrape_t *p = s->scrape_active;
    assert(p && !s->scrape);
    s->scrape_active = NULL;
    am_buf_t failed;
    am_buf_init(&failed, 0);
    failed.failed = true;
    if (p->push) {
        if (s->push)
            am_push_deliver(s->push, &failed, 0, false);
        free(p);
        return;
    }
    answer_scrape(s, p, &failed, false);
}

/* Takes the next queued /metrics request, if none is active: one worker's
 * registry begins rendering at once; several workers' are merged first. */
static void start_next_scrape(server_t *s)
{
    while (!s->scrape_active && s->queue_head) {
        pending_scrape_t *p = s->queue_head;
        s->queue_head = p->next;
        if (!s->queue_head)
            s->queue_tail = NULL;
        p->begun = uv_hrtime();
        s->scrape_active = p;
        if (several(s) ? am_workers_merge_begin(s->workers) == 0
                       : (s->scrape = begin_render(s, p->fmt, p->gzip)) != NULL) {
            uv_idle_start(&s->scrape_idle, on_scrape_idle);
            return;
        }
        fail_active_scrape(s);
    }
    if (!s->scrape_active)
        uv_idle_stop(&s->scrape_idle);
    else
        uv_idle_start(&s->scrape_idle, on_scrape_idle); /* a paused stream sees the queue */
}

/* The stream's readers caught up (or left): the active scrape goes on. */
static void wake_scrape(void *ctx)
{
    server_t *s = ctx;
    if (s->scrape_active)
        uv_idle_start(&s->scrape_idle, on_scrape_idle);
}

/* p's answers become its stream's readers: at its start, or, joined
 * since (the stream still holds its first bytes), on its next turn. */
static void attach_answers(pending_scrape_t *p)
{
    scrape_answer_t *a = p->answers;
    p->answers = NULL;
    p->answers_tail = &p->answers;
    while (a) {
        scrape_answer_t *next = a->next;
        am_http_stream_attach(p->stream, a->d);
        free(a);
        a = next;
    }
}

/* The active scrape's output has grown past STREAM_MIN_BYTES: its answers
 * become a stream's readers. Out of memory, it goes on held whole. */
static void begin_stream(server_t *s, pending_scrape_t *p, bool gzipped)
{
    p->stream = am_http_stream_new(s->http, gzipped, wake_scrape, s);
    if (p->stream)
        attach_answers(p);
}

/* The active streamed scrape is over: complete, failed, or abandoned by
 * every reader. Ending the stream may dispatch pipelined requests, which
 * queue other scrapes: p is gone by then. */
static void end_streamed_scrape(server_t *s, bool failed)
{
    pending_scrape_t *p = s->scrape_active;
    am_http_stream_t *st = p->stream;
    assert(!p->answers); /* attached at the top of its last turn */
    am_scrape_free(s->scrape);
    s->scrape = NULL;
    s->scrape_active = NULL;
    free(p);
    if (failed && am_http_stream_readers(st) > 0)
        am_log(AM_LOG_ERROR, "event=render_failed path=/metrics error=\"out of memory\"");
    am_http_stream_end(st, failed);
    am_http_stream_release(st);
    start_next_scrape(s);
}

/* Whether the active streamed scrape renders its next step: not while its
 * readers are all a window behind (the wake resumes it), unless another
 * body waits or the server stops: then the rest is rendered and held for
 * them. Nobody left to read it: it ends. */
static bool stream_may_render(server_t *s, pending_scrape_t *p)
{
    attach_answers(p); /* joined since its last turn: it is still joinable */
    if (am_http_stream_readers(p->stream) == 0) {
        am_log(AM_LOG_DEBUG, "event=scrape_abandoned");
        end_streamed_scrape(s, true);
        return false;
    }
    if (am_http_stream_ready(p->stream))
        return true;
    if (s->queue_head || s->stopping) {
        am_http_stream_unpace(p->stream);
        return true;
    }
    uv_idle_stop(&s->scrape_idle);
    return false;
}

/* One step of the active scrape: merging, then rendering; a finished one
 * is answered and the next begins. */
static void run_scrape(server_t *s, uint64_t budget_ns)
{
    pending_scrape_t *p = s->scrape_active;
    if (!p)
        return;
    if (am_workers_merging(s->workers)) {
        int rc = am_workers_merge_step(s->workers, budget_ns);
        if (rc == 0)
            return;
        p->merge_held_ns = am_workers_merge_longest_ns(s->workers);
        if (rc == AM_WORKERS_MERGED)
            s->scrape = begin_render(s, p->fmt, p->gzip);
        if (!s->scrape) {
            fail_active_scrape(s);
            start_next_scrape(s);
        }
        return; /* rendering starts on the next turn */
    }
    am_scrape_t *sc = s->scrape;
    assert(sc); /* the active scrape is merging or rendering */
    if (p->stream && !stream_may_render(s, p))
        return;
    bool done = am_scrape_step(sc, budget_ns);
    if (!p->push) {
        bool gzipped;
        am_buf_t *out = am_scrape_output(sc, &gzipped);
        if (!p->stream && !done && out->len >= STREAM_MIN_BYTES)
            begin_stream(s, p, gzipped);
        if (p->stream) {
            /* Copied out: the buffer keeps its warm pages for the next step,
             * unless it grew to hold the body's start. */
            bool failed =
                am_buf_failed(out) || am_http_stream_push(p->stream, out->data, out->len) != 0;
            if (out->cap > STREAM_MIN_BYTES / 2)
                am_buf_free(out);
            else
                am_buf_reset(out);
            if (done || failed) {
                s->stats.last_scrape_seconds = (double)(uv_hrtime() - p->begun) / 1e9;
                uint64_t held = several(s) ? p->merge_held_ns : am_scrape_longest_pause_ns(sc);
                s->stats.last_scrape_longest_pause_seconds = (double)held / 1e9;
                end_streamed_scrape(s, failed);
            }
            return;
        }
    }
    if (!done)
        return;
    s->scrape = NULL;
    s->scrape_active = NULL;
    if (p->push) {
        /* remote write's snapshot: what held ingest is the push's pause */
        uint64_t held = several(s) ? p->merge_held_ns : am_scrape_longest_pause_ns(sc);
        bool gz;
        am_buf_t *body = am_scrape_output(sc, &gz);
        if (s->push)
            am_push_deliver(s->push, body, held, !several(s));
        am_scrape_free(sc);
        free(p);
        start_next_scrape(s);
        return;
    }
    s->stats.last_scrape_seconds = (double)(uv_hrtime() - p->begun) / 1e9;
    /* What held up ingest: render steps on the one loop; with several
     * workers only the merge held them (rendering runs on a copy). */
    uint64_t held = several(s) ? p->merge_held_ns : am_scrape_longest_pause_ns(sc);
    s->stats.last_scrape_longest_pause_seconds = (double)held / 1e9;
    am_log(AM_LOG_DEBUG, "event=scrape seconds=%.6f longest_pause_seconds=%.6f",
           s->stats.last_scrape_seconds, s->stats.last_scrape_longest_pause_seconds);
    bool gzipped;
    am_buf_t *body = am_scrape_output(sc, &gzipped);
    answer_scrape(s, p, body, gzipped); /* may queue more scrapes */
    am_scrape_free(sc);
    start_next_scrape(s);
}

static void on_scrape_idle(uv_idle_t *h)
{
    run_scrape(h->data, SCRAPE_STEP_NS);
}

/* Stopping: every owed /metrics answer is rendered and sent now. */
static void finish_scrapes_now(server_t *s)
{
    while (s->scrape_active)
        run_scrape(s, UINT64_MAX);
}

/* A reload may remove families: a merge in progress is finished first (its
 * cursor points into a worker's family list). */
static void finish_merge_now(server_t *s)
{
    while (am_workers_merging(s->workers)) {
        assert(s->scrape_active); /* a merge is always some scrape's */
        run_scrape(s, UINT64_MAX);
    }
}

/* The scrape a request for fmt/gzip joins: the one rendering (its
 * snapshot began before the request came, as if the request had come a
 * moment earlier) or one waiting its turn; NULL when there is none. */
static pending_scrape_t *scrape_to_join(server_t *s, am_format_t fmt, bool gzip)
{
    pending_scrape_t *p = s->scrape_active;
    if (p && !p->push && p->fmt == fmt && p->gzip == gzip &&
        (!p->stream || am_http_stream_joinable(p->stream)))
        return p;
    for (p = s->queue_head; p; p = p->next)
        if (!p->push && p->fmt == fmt && p->gzip == gzip)
            return p;
    return NULL;
}

static void enqueue_scrape(server_t *s, pending_scrape_t *p)
{
    if (s->queue_tail)
        s->queue_tail->next = p;
    else
        s->queue_head = p;
    s->queue_tail = p;
    start_next_scrape(s);
}

/* /metrics: answered once rendered between loop turns (or at once while
 * stopping), with the body of every request for the same format that
 * arrives meanwhile. */
static void serve_metrics(server_t *s, const am_http_request_t *req, am_http_response_t *resp)
{
    am_negotiated_t n;
    am_negotiate(req->accept, req->accept_encoding, &n);
    resp->content_type = n.content_type;
    resp->vary_encoding = true;
    s->stats.scrapes++;
    pending_scrape_t *p = s->stopping ? NULL : scrape_to_join(s, n.format, n.gzip);
    bool fresh = !p && !s->stopping;
    if (fresh && (p = calloc(1, sizeof(*p))))
        p->answers_tail = &p->answers;
    scrape_answer_t *a = p ? calloc(1, sizeof(*a)) : NULL;
    if (a)
        a->d = am_http_defer(resp);
    if (!a || !a->d) {
        free(a);
        if (fresh)
            free(p);
        render_metrics_now(s, &n, resp);
        return;
    }
    *p->answers_tail = a;
    p->answers_tail = &a->next;
    if (p->stream) /* a stream takes its late readers on its next turn */
        uv_idle_start(&s->scrape_idle, on_scrape_idle);
    if (!fresh)
        return;
    p->fmt = n.format;
    p->gzip = n.gzip;
    enqueue_scrape(s, p);
}

/* Remote write wants a body: a scrape of its own, queued like the others
 * (one merge, one render at a time), answered with am_push_deliver. */
static void want_push_body(void *ctx)
{
    server_t *s = ctx;
    pending_scrape_t *p = s->stopping ? NULL : calloc(1, sizeof(*p));
    if (!p) {
        am_buf_t failed;
        am_buf_init(&failed, 0);
        failed.failed = true;
        am_push_deliver(s->push, &failed, 0, false);
        return;
    }
    p->answers_tail = &p->answers;
    p->fmt = AM_FORMAT_TEXT;
    p->push = true;
    enqueue_scrape(s, p);
}

/* /health: counters summed one worker at a time (no snapshot: probes are
 * frequent). */
static void render_health(server_t *s, am_buf_t *body)
{
    am_selfstats_t st;
    memset(&st, 0, sizeof(st));
    am_workers_read_now(s->workers);
    am_workers_add_ingest(s->workers, &st);
    am_health_t h = {.ingest = &st};
    am_workers_counts(s->workers, &h.families, &h.series);
    h.uptime_seconds = now_seconds() - s->stats.start_time;
    am_health_render(body, &h);
}

/* GET /: the links, then the live view's table (liveview.c). */
static const char landing_page[] =
    "<!DOCTYPE html>\n"
    "<html><head><meta charset=\"utf-8\"><title>alice-metrics</title>\n"
    "<meta http-equiv=\"refresh\" content=\"5\">\n"
    "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}"
    "td.n{text-align:right}th{background:#eee}</style></head>\n"
    "<body><h1>alice-metrics</h1>\n"
    "<p>StatsD to Prometheus aggregator, version " AM_VERSION ".</p>\n"
    "<ul><li><a href=\"/metrics\">/metrics</a> (Prometheus text; OpenMetrics by Accept)</li>\n"
    "<li><a href=\"/health\">/health</a> (JSON status)</li>\n"
    "<li><a href=\"/api/v1/families\">/api/v1/families</a> (JSON: the table below)</li></ul>\n";

static bool path_is(const am_http_request_t *req, const char *p)
{
    size_t n = strlen(p);
    return req->path_len == n && memcmp(req->path, p, n) == 0;
}

static void on_request(void *ctx, const am_http_request_t *req, am_http_response_t *resp)
{
    server_t *s = ctx;
    if (path_is(req, "/metrics")) {
        serve_metrics(s, req, resp);
    } else if (path_is(req, "/health")) {
        resp->content_type = "application/json";
        render_health(s, resp->body);
    } else if (path_is(req, "/")) {
        resp->content_type = "text/html; charset=utf-8";
        am_buf_append(resp->body, landing_page, sizeof(landing_page) - 1);
        am_liveview_render(s->liveview, resp->body, true);
        am_buf_puts(resp->body, "</body></html>\n");
    } else if (path_is(req, "/api/v1/families")) {
        resp->content_type = "application/json";
        am_liveview_render(s->liveview, resp->body, false);
    } else {
        resp->status = 404;
        resp->content_type = "text/plain; charset=utf-8";
        am_buf_puts(resp->body, "404 not found: try /metrics, /health, /api/v1/families or /\n");
    }
    if (am_buf_failed(resp->body)) {
        am_buf_reset(resp->body);
        resp->status = 500;
        resp->vary_encoding = false;
        resp->gzipped = false;
        resp->content_type = "text/plain; charset=utf-8";
        am_buf_puts(resp->body, "500 out of memory while rendering\n");
        am_log(AM_LOG_ERROR, "event=render_failed path=%.*s", (int)req->path_len, req->path);
    }
}

/* ---- config ---- */

/* Applies a loaded config's catalog and limits to one registry; log: warn
 * about replaced families (once, not once per worker). */
static int apply_config_to(am_registry_t *r, const am_config_t *cfg, long ttl, bool log)
{
    am_limits_t limits;
    am_limits_default(&limits);
    am_config_apply_limits(cfg, &limits);
    if (ttl >= 0) /* --ttl or ALICE_METRICS_TTL beat the file */
        limits.ttl = (uint32_t)ttl;
    am_registry_set_limits(r, &limits);
    for (size_t i = 0; i < cfg->nfamilies; i++) {
        int rc = am_registry_define(r, &cfg->families[i]);
        if (rc < 0)
            return rc;
        if (rc > 0 && log)
            am_log(AM_LOG_WARN,
                   "event=families_replaced family=%s count=%d reason=\"their sample names clash "
                   "with the configured family\"",
                   cfg->families[i].name, rc);
    }
    return 0;
}

/* Applies a config to every worker's registry (and so to the family
 * directory), the workers paused. */
static int apply_config(server_t *s, const am_config_t *cfg)
{
    int rc = 0;
    unsigned n = am_workers_count(s->workers);
    am_workers_pause(s->workers);
    for (unsigned i = 0; i < n && rc == 0; i++)
        rc = apply_config_to(am_workers_registry(s->workers, i), cfg, s->opts->ttl, i == 0);
    if (rc == 0 && !s->opts->log_level_fixed && cfg->log_level >= 0)
        am_log_threshold = (am_log_level_t)cfg->log_level;
    am_workers_resume(s->workers);
    return rc;
}

/* ---- the mapping file ---- */

static void log_mapping_warning(void *ctx, const char *msg)
{
    (void)ctx;
    char esc[1024];
    am_log(AM_LOG_WARN, "event=mapping_warning warning=\"%s\"",
           am_log_escape(esc, sizeof(esc), msg));
}

/* Loads opts->mapping_path into *out; the error is logged (event). */
static int load_mapping(const server_t *s, const char *event, am_mapping_t **out)
{
    char err[512];
    if (am_mapping_load(s->opts->mapping_path, out, err, sizeof(err), log_mapping_warning, NULL) ==
        0)
        return 0;
    char esc[1024];
    am_log(AM_LOG_ERROR, "event=%s error=\"%s\"%s", event, am_log_escape(esc, sizeof(esc), err),
           s->mapping ? " action=\"kept the old mapping\"" : "");
    return -1;
}

/* Every worker's registry maps lines with m from now on (the workers
 * paused: each forgets the lines its cache mapped with the old one); the
 * old mapping is freed once none uses it. */
static void use_mapping(server_t *s, am_mapping_t *m)
{
    unsigned n = am_workers_count(s->workers);
    am_workers_pause(s->workers);
    for (unsigned i = 0; i < n; i++)
        am_registry_set_mapping(am_workers_registry(s->workers, i), m);
    am_workers_resume(s->workers);
    am_mapping_free(s->mapping);
    s->mapping = m;
}

/* SIGHUP: the mapping file read again; false when it is bad (the old one
 * stays). */
static bool reload_mapping(server_t *s)
{
    am_mapping_t *m;
    if (load_mapping(s, "reload_failed", &m) != 0)
        return false;
    use_mapping(s, m);
    am_log(AM_LOG_INFO, "event=mapping_reloaded file=%s mappings=%zu", s->opts->mapping_path,
           am_mapping_count(m));
    return true;
}

/* The config's remote_write, with --remote-write-url (or its variable)
 * beating its url, applied to the push. 0 or -errno with why. */
static int configure_push(server_t *s, am_config_t *cfg, char *why, size_t whylen)
{
    if (!s->push)
        return 0;
    am_remote_opts_t *o = &cfg->remote_write;
    char *file_url = o->url;
    if (s->opts->remote_write_url)
        o->url = (char *)s->opts->remote_write_url;
    int rc = am_push_configure(s->push, o, why, whylen);
    o->url = file_url;
    return rc;
}

static bool state_copying(const void *ctx)
{
    return am_statefile_copying(ctx);
}

/* Reads the web config into HTTP security; the error is logged (as an
 * error at start, as a failed reload on SIGHUP). NULL *out on failure. */
static int load_web_config(const char *path, am_http_security_t **out, bool at_start)
{
    am_webconfig_t wc;
    char err[512], esc[1024];
    *out = NULL;
    int rc = am_webconfig_load(path, &wc, err, sizeof(err));
    if (rc == 0) {
        rc = am_http_security_new(&wc, out, err, sizeof(err));
        if (rc == 0 && wc.ignored)
            am_log(AM_LOG_WARN,
                   "event=web_config_ignored file=%s keys=%s reason=\"not implemented\"", path,
                   wc.ignored);
        if (rc == 0)
            am_log(AM_LOG_INFO, "event=web_config_loaded file=%s tls=%s users=%zu client_auth=%s",
                   path, wc.tls ? "on" : "off", wc.nusers,
                   am_webconfig_client_auth_name(wc.client_auth));
        am_webconfig_free(&wc);
    }
    if (rc != 0)
        am_log(AM_LOG_ERROR, "event=%s error=\"%s\"%s",
               at_start ? "web_config_invalid" : "reload_failed",
               am_log_escape(esc, sizeof(esc), err),
               at_start ? "" : " action=\"kept the old web config\"");
    return rc;
}

static void reload(server_t *s)
{
    bool web_ok = true;
    if (s->opts->web_config && s->http) {
        am_http_security_t *sec;
        web_ok = load_web_config(s->opts->web_config, &sec, false) == 0;
        if (web_ok)
            am_http_server_set_security(s->http, sec);
    }
    finish_merge_now(s);
    if (s->state_ready)
        am_statefile_finish_copy(&s->state);
    /* The mapping and web config files: a bad one is logged and kept, and
     * the reload counts as failed. */
    bool files_ok = (!s->opts->mapping_path || reload_mapping(s)) && web_ok;
    if (!s->opts->config_path) {
        if (!s->opts->mapping_path && !s->opts->web_config)
            am_log(AM_LOG_INFO, "event=reload_skipped reason=\"no config file\"");
        else if (files_ok)
            s->stats.reloads_ok++;
        else
            s->stats.reloads_failed++;
        return;
    }
    am_config_t cfg;
    char err[512];
    if (am_config_load(s->opts->config_path, &cfg, err, sizeof(err)) != 0) {
        s->stats.reloads_failed++;
        char esc[1024];
        am_log(AM_LOG_ERROR, "event=reload_failed error=\"%s\" action=\"kept the old config\"",
               am_log_escape(esc, sizeof(esc), err));
        return;
    }
    char why[512];
    if (apply_config(s, &cfg) != 0) {
        s->stats.reloads_failed++;
        am_log(AM_LOG_ERROR, "event=reload_failed error=\"out of memory\"");
    } else if (!files_ok) {
        s->stats.reloads_failed++; /* the config was applied, a bad side file kept */
    } else if (configure_push(s, &cfg, why, sizeof(why)) != 0) {
        s->stats.reloads_failed++;
        char esc[1024];
        am_log(AM_LOG_ERROR,
               "event=reload_failed error=\"remote_write: %s\" action=\"kept the old remote "
               "write settings\"",
               am_log_escape(esc, sizeof(esc), why));
    } else {
        s->stats.reloads_ok++;
        am_log(AM_LOG_INFO, "event=reloaded config=%s families=%zu", s->opts->config_path,
               cfg.nfamilies);
    }
    am_config_free(&cfg);
}

/* ---- lifecycle ---- */

static void on_http_stopped(void *ctx)
{
    server_t *s = ctx;
    s->http = NULL;
    if (s->scrape_idle_ready)
        uv_close((uv_handle_t *)&s->scrape_idle, NULL);
    if (s->expiry_ready)
        am_expiry_close(&s->expiry);
    if (s->liveview)
        am_liveview_close(s->liveview);
    s->liveview = NULL;
    if (s->state_ready)
        am_statefile_close(&s->state);
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
}

static void begin_stop(server_t *s, const char *why)
{
    if (s->stopping)
        return;
    s->stopping = true;
    am_log(AM_LOG_INFO, "event=stopping signal=%s", why);
    am_workers_stop(s->workers);
    finish_scrapes_now(s);
    am_push_stop(s->push); /* stale markers, a last push bounded by its timeout */
    s->push = NULL;
    if (s->http)
        am_http_server_stop(s->http, on_http_stopped, s);
    else
        on_http_stopped(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    server_t *s = h->data;
    if (signum == SIGHUP)
        reload(s);
    else
        begin_stop(s, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* The workers with the config applied; the error is logged. */
static int make_workers(server_t *s, const am_config_t *cfg)
{
    unsigned n = s->opts->workers > 1 ? (unsigned)s->opts->workers : 1;
    int rc = am_workers_new(&s->loop, n, &s->workers);
    if (rc == 0)
        rc = apply_config(s, cfg);
    if (rc != 0)
        am_log(AM_LOG_ERROR, "event=startup_failed error=\"out of memory\"");
    return rc;
}

/* The soft open-file limit up to the hard one: every HTTP connection is a
 * descriptor, and at the usual soft limit of 1024 the connection cap could
 * not be reached (accept would fail instead of shedding). */
static void raise_fd_limit(unsigned max_connections)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            rl.rlim_cur = was;
    }
    /* Sockets, the loop's own descriptors, the config and /proc reads. */
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max_connections + 64)
        am_log(AM_LOG_WARN,
               "event=fd_limit_low limit=%llu max_connections=%u hint=\"raise the hard "
               "RLIMIT_NOFILE (ulimit -Hn) or lower --max-connections\"",
               (unsigned long long)rl.rlim_cur, max_connections);
}

/* The sockets: HTTP, then ingest; then the worker threads. The error is
 * logged. */
static int open_sockets(server_t *s)
{
    const am_server_opts_t *opts = s->opts;
    am_http_limits_t limits;
    am_http_limits_default(&limits);
    if (opts->max_connections > 0)
        limits.max_connections = (unsigned)opts->max_connections;
    raise_fd_limit(limits.max_connections);
    int rc = am_http_server_start(&s->loop, opts->http_host, opts->http_port, &limits, on_request,
                                  s, &s->http);
    if (rc == 0) { /* before the loop runs: no connection is ever served without it */
        am_http_server_set_security(s->http, s->sec);
        s->sec = NULL;
    }
    if (rc < 0) {
        am_log(AM_LOG_ERROR, "event=bind_failed transport=http addr=%s port=%d error=\"%s\"%s",
               opts->http_host, opts->http_port, uv_strerror(rc),
               rc == UV_EADDRINUSE ? " hint=\"another process listens there: pick --port\"" : "");
        s->http = NULL;
        return rc;
    }
    am_log(AM_LOG_INFO, "event=listening transport=http addr=%s port=%d max_connections=%u",
           opts->http_host, am_http_server_port(s->http), limits.max_connections);
    am_workers_ingest_t in = {
        .statsd_host = opts->statsd_host,
        .statsd_port = opts->statsd_port,
        .unix_path = opts->unix_path,
        .unix_mode = opts->unix_mode,
        .receive_buffer_bytes = opts->receive_buffer_bytes,
    };
    rc = am_workers_open_ingest(s->workers, &in);
    if (rc == 0)
        rc = am_workers_start(s->workers);
    return rc;
}

static void free_server(server_t *s)
{
    am_http_security_free(s->sec);
    am_workers_free(s->workers);
    am_mapping_free(s->mapping); /* after the registries that borrow it */
    free(s);
}

int am_server_run(const am_server_opts_t *opts)
{
    server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        am_log(AM_LOG_ERROR, "event=startup_failed error=\"out of memory\"");
        return -ENOMEM;
    }
    s->opts = opts;
    /* Blocks of 1 MiB and more (scrape bodies, series tables) come from
     * mmap, so that growing one is an mremap, not a copy. glibc would
     * otherwise raise this threshold to 32 MiB after the first big free, and
     * a growing 60 MB scrape body then held ingest for 10 ms in one copy. */
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    /* libuv writes with write(2): a scraper that hangs up mid-response must
     * cost an EPIPE, not the process. */
    signal(SIGPIPE, SIG_IGN);
    s->stats.version = AM_VERSION;
    s->stats.start_time = am_process_start_time();
    if (s->stats.start_time <= 0)
        s->stats.start_time = now_seconds();

    if (opts->web_config && load_web_config(opts->web_config, &s->sec, true) != 0) {
        free(s);
        return AM_SERVER_BAD_WEB_CONFIG;
    }
    am_config_t cfg;
    am_config_init(&cfg);
    if (opts->config_path) {
        char err[512];
        if (am_config_load(opts->config_path, &cfg, err, sizeof(err)) != 0) {
            char esc[1024];
            am_log(AM_LOG_ERROR, "event=config_invalid error=\"%s\"",
                   am_log_escape(esc, sizeof(esc), err));
            am_http_security_free(s->sec);
            free(s);
            return AM_SERVER_BAD_CONFIG;
        }
    }
    am_mapping_t *mapping = NULL;
    if (opts->mapping_path && load_mapping(s, "mapping_invalid", &mapping) != 0) {
        am_config_free(&cfg);
        am_http_security_free(s->sec);
        free(s);
        return AM_SERVER_BAD_CONFIG;
    }
    int rc = make_workers(s, &cfg);
    if (rc != 0) {
        am_mapping_free(mapping);
        am_config_free(&cfg);
        free_server(s);
        return rc;
    }
    if (mapping) {
        use_mapping(s, mapping);
        am_log(AM_LOG_INFO, "event=mapping_loaded file=%s mappings=%zu", opts->mapping_path,
               am_mapping_count(mapping));
    }
    if (opts->state_path) {
        /* Before any socket is read; restored series start their TTL now
         * (the TTL clock is uv_now / 100: monotonic milliseconds). */
        am_registry_t *r0 = am_workers_registry(s->workers, 0);
        am_registry_set_now(r0, (uint32_t)(uv_hrtime() / 100000000));
        char err[512];
        err[0] = '\0';
        rc = am_statefile_load(opts->state_path, r0, opts->state_discard_bad, err, sizeof(err));
        if (rc != 0) {
            am_log(AM_LOG_ERROR, "event=state_invalid error=\"%s\"", err);
            am_config_free(&cfg);
            free_server(s);
            return AM_SERVER_BAD_STATE;
        }
    }
    /* read now: once the threads run, the registries are theirs */
    size_t nfamilies = am_registry_family_count(am_workers_registry(s->workers, 0));

    rc = uv_loop_init(&s->loop);
    if (rc != 0) {
        am_config_free(&cfg);
        free_server(s);
        return rc;
    }
    uv_idle_init(&s->loop, &s->scrape_idle);
    s->scrape_idle.data = s;
    s->scrape_idle_ready = true;
    uv_signal_init(&s->loop, &s->sig_term);
    uv_signal_init(&s->loop, &s->sig_int);
    uv_signal_init(&s->loop, &s->sig_hup);
    s->sig_term.data = s->sig_int.data = s->sig_hup.data = s;
    uv_signal_start(&s->sig_term, on_signal, SIGTERM);
    uv_signal_start(&s->sig_int, on_signal, SIGINT);
    uv_signal_start(&s->sig_hup, on_signal, SIGHUP);

    char why[512];
    if (!(s->push = am_push_new(&s->loop, want_push_body, s))) {
        am_log(AM_LOG_ERROR, "event=startup_failed error=\"out of memory\"");
        rc = -ENOMEM;
    } else if (configure_push(s, &cfg, why, sizeof(why)) != 0) {
        char esc[1024];
        am_log(AM_LOG_ERROR, "event=config_invalid error=\"remote_write: %s\"",
               am_log_escape(esc, sizeof(esc), why));
        rc = AM_SERVER_BAD_CONFIG;
    }
    am_config_free(&cfg);
    if (rc == 0)
        rc = open_sockets(s);
    if (rc == 0) {
        rc = am_expiry_start(&s->loop, s->workers, &s->expiry);
        s->expiry_ready = rc == 0;
    }
    if (rc == 0)
        rc = am_liveview_start(&s->loop, s->workers, &s->liveview);
    if (rc == 0 && opts->state_path) {
        rc = am_statefile_start(&s->loop, s->workers, opts->state_path, opts->state_interval,
                                &s->state);
        s->state_ready = rc == 0;
        s->expiry.hold = state_copying;
        s->expiry.hold_ctx = &s->state;
    }
    if (rc == 0)
        am_log(AM_LOG_INFO, "event=started version=%s families=%zu workers=%u", AM_VERSION,
               nfamilies, am_workers_count(s->workers));
    else
        begin_stop(s, "startup_failure");

    uv_run(&s->loop, UV_RUN_DEFAULT);
    am_workers_join(s->workers);
    /* Every line accepted before the stop is in the registries now. */
    if (rc == 0 && opts->state_path)
        (void)am_statefile_write_now(s->workers, opts->state_path);
    if (uv_loop_close(&s->loop) != 0)
        am_log(AM_LOG_WARN, "event=loop_not_empty_at_exit");
    if (rc == 0)
        am_log(AM_LOG_INFO, "event=stopped");
    free_server(s);
    return rc;
}
