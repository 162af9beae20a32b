#include "server.h"

#include <errno.h>
#include <signal.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <uv.h>

#include "am_config.h"
#include "buf.h"
#include "catalog.h"
#include "config.h"
#include "expose.h"
#include "http.h"
#include "ingest.h"
#include "log.h"
#include "parse.h"
#include "registry.h"
#include "scrape.h"
#include "selfstats.h"

/* Debug logging of rejected lines is rate-limited: a flood of bad lines
 * must not turn into a flood of log writes. */
#define REJECT_LOG_PER_SEC 20

/* A scrape renders for at most this long (or one family) per loop turn,
 * then lets ingest run: 1 ms is ~1,000 datagrams at 1M lines/s, far below
 * what the receive buffer holds. */
#define SCRAPE_STEP_NS 1000000

typedef struct server server_t;

/* One ingest loop and what it owns. With one worker it runs on the server's
 * loop and nothing is locked. With several, each runs its own loop on its own
 * thread and holds mu while it applies one recvmmsg batch; the main thread
 * takes mu to read or change the registry and stats (scrape, /health,
 * SIGHUP), never while holding the directory's lock. */
typedef struct worker {
    server_t *srv;
    unsigned id;
    uv_loop_t *loop; /* the server's loop, or &own_loop */
    bool threaded;
    bool own_loop_ready, async_ready, thread_started;
    uv_loop_t own_loop;
    uv_async_t stop_async;
    pthread_t thread;
    pthread_mutex_t mu;
    am_registry_t *registry;
    am_selfstats_t stats; /* the ingest counters only */
    am_ingest_t *udp;
    am_ingest_t *unix_in; /* worker 0 only */
    am_sample_t sample;   /* big (tags, values): one per worker, not on the stack */
    int transport;        /* of the datagram being applied */
    uint64_t log_window_ms;
    unsigned log_in_window;
    uint64_t log_suppressed;
} worker_t;

/* Several workers: the scrape's merged copy, built a few families per step
 * with one worker held at a time (am_registry_merge_step), so that no
 * worker waits longer than one step (about 1 ms, or one family). Still one
 * consistent snapshot: every worker's registry opens a snapshot at the same
 * moment (all held), and a worker about to change a family not yet merged
 * merges it first (merge_early, on the worker's thread). */
typedef struct merge {
    pthread_mutex_t mu; /* snap and failed: the main thread and merge_early */
    bool mu_ready;
    am_registry_t *snap; /* NULL: no merge in progress */
    bool failed;         /* out of memory in merge_early */
    unsigned worker;     /* being merged; its snapshot and later ones open */
    const am_family_t *cursor;
    uint64_t longest_ns; /* the longest a worker was held */
} merge_t;

struct server {
    uv_loop_t loop;
    const am_server_opts_t *opts;
    am_selfstats_t stats; /* HTTP, scrapes, reloads; ingest counters are the workers' */
    am_http_server_t *http;
    uv_signal_t sig_term, sig_int, sig_hup;
    bool stopping;
    unsigned nworkers;
    worker_t *workers;
    am_famdir_t *dir;           /* several workers only */
    uint64_t *worker_datagrams; /* scrape and /health scratch, one per worker */
    /* /metrics answers, rendered by the idle handle one at a time, in
     * arrival order: the one rendering and the ones waiting. */
    uv_idle_t scrape_idle;
    bool scrape_idle_ready;
    struct pending_scrape *scrape_active; /* merging (several workers), then rendering */
    merge_t merge;
    am_scrape_t *scrape;
    struct pending_scrape *queue_head, *queue_tail;
};

typedef struct pending_scrape {
    struct pending_scrape *next;
    am_http_deferred_t *answer;
    am_format_t fmt;
    bool gzip;
    uint64_t begun;         /* uv_hrtime when its turn came */
    uint64_t merge_held_ns; /* several workers: the longest a worker was held */
} pending_scrape_t;

static double now_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---- ingest path ---- */

static void log_reject(worker_t *s, am_reason_t rc, const char *line, size_t len)
{
    uint64_t now = uv_now(s->loop);
    if (now - s->log_window_ms >= 1000) {
        if (s->log_suppressed)
            am_log(AM_LOG_DEBUG, "event=rejects_suppressed count=%llu",
                   (unsigned long long)s->log_suppressed);
        s->log_window_ms = now;
        s->log_in_window = 0;
        s->log_suppressed = 0;
    }
    if (s->log_in_window >= REJECT_LOG_PER_SEC) {
        s->log_suppressed++;
        return;
    }
    s->log_in_window++;
    /* Quote the line with non-printable bytes escaped, cut at 200 bytes. */
    char q[200 * 4 + 1];
    size_t o = 0;
    for (size_t i = 0; i < len && i < 200; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            q[o++] = (char)c;
        else
            o += (size_t)snprintf(q + o, sizeof(q) - o, "\\x%02x", c);
    }
    q[o] = '\0';
    am_log_write(AM_LOG_DEBUG, "event=line_rejected reason=%s transport=%s line=\"%s%s\"",
                 am_reason_label(rc), s->transport == AM_TRANSPORT_UDP ? "udp" : "unix", q,
                 len > 200 ? "..." : "");
}

static void on_reject(void *ctx, am_reason_t rc, const char *line, size_t len)
{
    worker_t *s = ctx;
    s->stats.rejected[rc]++;
    if (am_log_enabled(AM_LOG_DEBUG))
        log_reject(s, rc, line, len);
}

static void on_datagram(void *ctx, int transport, const char *p, size_t n, bool truncated)
{
    worker_t *s = ctx;
    if (!p) {
        s->stats.receive_errors[transport]++;
        return;
    }
    s->stats.datagrams[transport]++;
    s->stats.bytes[transport] += n;
    s->transport = transport;
    if (truncated) {
        /* The cut last line is not a line the sender wrote: drop it (as
         * syntax) and keep the complete lines before it. */
        s->stats.truncated[transport]++;
        const char *nl = memrchr(p, '\n', n);
        s->stats.rejected[AM_REJECT_SYNTAX]++;
        n = nl ? (size_t)(nl - p) : 0;
    }
    s->stats.samples += am_registry_ingest_datagram(s->registry, p, n, &s->sample, on_reject, s);
}

/* Several workers: the registry and stats are the worker's while it applies
 * a batch (at most 64 datagrams), the scrape's in between. The batch's
 * receive time stamps its gauge updates (am_registry_merge orders sets by
 * it). */
static void on_batch(void *ctx, bool begin)
{
    worker_t *w = ctx;
    if (begin) {
        pthread_mutex_lock(&w->mu);
        am_registry_set_clock(w->registry, (double)uv_hrtime());
    } else {
        pthread_mutex_unlock(&w->mu);
    }
}

static void lock_worker(worker_t *w)
{
    if (w->threaded)
        pthread_mutex_lock(&w->mu);
}

static void unlock_worker(worker_t *w)
{
    if (w->threaded)
        pthread_mutex_unlock(&w->mu);
}

/* The main thread takes every worker's mutex, in order (a consistent
 * snapshot: every worker paused between two batches). */
static void lock_workers(server_t *s)
{
    for (unsigned i = 0; i < s->nworkers; i++)
        lock_worker(&s->workers[i]);
}

static void unlock_workers(server_t *s)
{
    for (unsigned i = s->nworkers; i-- > 0;)
        unlock_worker(&s->workers[i]);
}

/* Adds every worker's ingest counters into st (each worker held in turn)
 * and notes each one's datagrams in s->worker_datagrams. */
static void add_worker_ingest(server_t *s, am_selfstats_t *st)
{
    for (unsigned i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        lock_worker(w);
        am_selfstats_add_ingest(st, &w->stats);
        s->worker_datagrams[i] =
            w->stats.datagrams[AM_TRANSPORT_UDP] + w->stats.datagrams[AM_TRANSPORT_UNIX];
        unlock_worker(w);
    }
}

/* ---- HTTP ---- */

/* One loop: what the kernel holds now is read before a scrape or /health
 * answers (UDP under load is read every millisecond, not at every
 * arrival), so a client that sent and then asks sees what it sent. Several
 * workers read on their own threads. */
static void read_queued_datagrams(worker_t *w)
{
    if (w->udp)
        am_ingest_read_now(w->udp);
    if (w->unix_in)
        am_ingest_read_now(w->unix_in);
}

/* A family a worker is about to change, merged as it is (worker thread,
 * which holds its mutex: the lock order is worker, then merge). */
static void merge_early(void *ctx, const am_family_t *f, size_t index)
{
    (void)index;
    merge_t *m = ctx;
    pthread_mutex_lock(&m->mu);
    if (!m->failed && am_registry_merge_family(m->snap, f) != 0)
        m->failed = true;
    pthread_mutex_unlock(&m->mu);
}

/* Opens the snapshot on every worker at one moment (all held). 0, or
 * -ENOMEM. */
static int merge_begin(server_t *s, merge_t *m)
{
    am_registry_t *snap = am_registry_new(NULL);
    if (!snap)
        return -ENOMEM;
    am_registry_enable_gauge_stamps(snap);
    m->snap = snap;
    m->failed = false;
    m->worker = 0;
    m->cursor = NULL;
    m->longest_ns = 0;
    lock_workers(s);
    for (unsigned i = 0; i < s->nworkers; i++)
        am_registry_snapshot_begin(s->workers[i].registry, merge_early, m);
    unlock_workers(s);
    return 0;
}

/* Out of memory: closes the snapshots still open, frees the copy. */
static void merge_abort(server_t *s, merge_t *m)
{
    for (unsigned i = m->worker; i < s->nworkers; i++) {
        lock_worker(&s->workers[i]);
        am_registry_snapshot_end(s->workers[i].registry);
        unlock_worker(&s->workers[i]);
    }
    am_registry_free(m->snap);
    m->snap = NULL;
}

/* One step: the current worker's next families for up to budget_ns (at
 * least one), that worker alone held. 1 when every worker is merged
 * (m->snap complete), 0 when more remain, -ENOMEM (the merge is abandoned,
 * m->snap freed). */
static int merge_step(server_t *s, merge_t *m, uint64_t budget_ns)
{
    worker_t *w = &s->workers[m->worker];
    uint64_t t0 = uv_hrtime();
    lock_worker(w);
    pthread_mutex_lock(&m->mu);
    int rc;
    do
        rc = am_registry_merge_step(m->snap, w->registry, &m->cursor);
    while (rc == 0 && uv_hrtime() - t0 < budget_ns);
    if (m->failed && rc >= 0)
        rc = -ENOMEM;
    pthread_mutex_unlock(&m->mu);
    if (rc == 1)
        am_registry_snapshot_end(w->registry);
    unlock_worker(w);
    uint64_t held = uv_hrtime() - t0;
    if (held > m->longest_ns)
        m->longest_ns = held;
    if (rc < 0)
        merge_abort(s, m);
    else if (rc == 1 && ++m->worker < s->nworkers)
        rc = 0; /* the next worker, from its first family */
    return rc;
}

/* The counters a scrape reports: the server's own and every worker's (each
 * worker held in turn). */
static void scrape_selfstats(server_t *s, am_selfstats_t *st)
{
    const am_http_stats_t *hs = am_http_server_stats(s->http);
    s->stats.http_requests = hs->requests;
    s->stats.http_bad_requests = hs->bad_requests;
    s->stats.http_connections_rejected = hs->connections_rejected;
    s->stats.http_connections_open = hs->connections_open;
    *st = s->stats;
    add_worker_ingest(s, st);
    /* With workers, the directory's atomic: no worker need be held. */
    st->set_members = am_registry_set_member_count(s->workers[0].registry);
    if (s->nworkers > 1) {
        st->worker_datagrams = s->worker_datagrams;
        st->nworkers = s->nworkers;
    }
}

/* Begins rendering: one worker's registry as a snapshot it keeps feeding,
 * or a finished merge (m->snap, taken over even on failure). NULL when out
 * of memory. */
static am_scrape_t *begin_render(server_t *s, merge_t *m, am_format_t fmt, bool gzip)
{
    am_selfstats_t st;
    if (s->nworkers == 1) {
        read_queued_datagrams(&s->workers[0]);
        scrape_selfstats(s, &st);
        return am_scrape_begin(s->workers[0].registry, false, fmt, gzip, &st);
    }
    scrape_selfstats(s, &st);
    am_scrape_t *sc = am_scrape_begin(m->snap, true, fmt, gzip, &st);
    if (!sc)
        am_registry_free(m->snap);
    m->snap = NULL;
    return sc;
}

static void finish_merge_now(server_t *s);

/* The whole scrape at once, into body (uncompressed: the HTTP module may
 * gzip it): while stopping, or when a deferred answer could not be set up. */
static void render_metrics_now(server_t *s, am_format_t fmt, am_buf_t *body)
{
    uint64_t t0 = uv_hrtime();
    am_scrape_t *sc = NULL;
    if (s->nworkers == 1) {
        sc = begin_render(s, NULL, fmt, false);
    } else {
        finish_merge_now(s); /* one merge at a time: the active scrape's first */
        int rc = merge_begin(s, &s->merge);
        while (rc == 0)
            rc = merge_step(s, &s->merge, UINT64_MAX);
        if (rc > 0)
            sc = begin_render(s, &s->merge, fmt, false);
    }
    if (!sc) {
        body->failed = true; /* answered 500 */
        return;
    }
    am_scrape_step(sc, UINT64_MAX);
    bool gzipped;
    am_buf_t *out = am_scrape_body(sc, &gzipped);
    am_buf_append(body, out->data, out->len);
    if (am_buf_failed(out))
        body->failed = true;
    am_scrape_free(sc);
    s->stats.last_scrape_seconds = (double)(uv_hrtime() - t0) / 1e9;
    s->stats.last_scrape_longest_pause_seconds = s->stats.last_scrape_seconds;
}

static void on_scrape_idle(uv_idle_t *h);

/* The active scrape failed (out of memory): answered 500. */
static void fail_active_scrape(server_t *s)
{
    pending_scrape_t *p = s->scrape_active;
    s->scrape_active = NULL;
    am_buf_t failed;
    am_buf_init(&failed, 0);
    failed.failed = true; /* answered 500 */
    am_log(AM_LOG_ERROR, "event=render_failed path=/metrics error=\"out of memory\"");
    am_http_deferred_finish(p->answer, &failed, false);
    free(p);
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
        if (s->nworkers > 1 ? merge_begin(s, &s->merge) == 0
                            : (s->scrape = begin_render(s, NULL, p->fmt, p->gzip)) != NULL) {
            uv_idle_start(&s->scrape_idle, on_scrape_idle);
            return;
        }
        fail_active_scrape(s);
    }
    if (!s->scrape_active)
        uv_idle_stop(&s->scrape_idle);
}

/* One step of the active scrape: merging, then rendering; a finished one
 * is answered and the next begins. */
static void run_scrape(server_t *s, uint64_t budget_ns)
{
    pending_scrape_t *p = s->scrape_active;
    if (!p)
        return;
    if (s->merge.snap) {
        int rc = merge_step(s, &s->merge, budget_ns);
        if (rc == 0)
            return;
        p->merge_held_ns = s->merge.longest_ns;
        if (rc > 0)
            s->scrape = begin_render(s, &s->merge, p->fmt, p->gzip);
        if (!s->scrape) {
            fail_active_scrape(s);
            start_next_scrape(s);
        }
        return; /* rendering starts on the next turn */
    }
    am_scrape_t *sc = s->scrape;
    if (!am_scrape_step(sc, budget_ns))
        return;
    s->scrape = NULL;
    s->scrape_active = NULL;
    s->stats.last_scrape_seconds = (double)(uv_hrtime() - p->begun) / 1e9;
    /* What held up ingest: render steps on the one loop; with several
     * workers only the merge held them (rendering runs on a copy). */
    uint64_t held = s->nworkers > 1 ? p->merge_held_ns : am_scrape_longest_pause_ns(sc);
    s->stats.last_scrape_longest_pause_seconds = (double)held / 1e9;
    am_log(AM_LOG_DEBUG, "event=scrape seconds=%.6f longest_pause_seconds=%.6f",
           s->stats.last_scrape_seconds, s->stats.last_scrape_longest_pause_seconds);
    bool gzipped;
    am_buf_t *body = am_scrape_body(sc, &gzipped);
    if (am_buf_failed(body))
        am_log(AM_LOG_ERROR, "event=render_failed path=/metrics error=\"out of memory\"");
    /* May dispatch pipelined requests, which queue more scrapes. */
    am_http_deferred_finish(p->answer, body, gzipped);
    free(p);
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
    while (s->merge.snap)
        run_scrape(s, UINT64_MAX);
}

/* /metrics: answered once rendered between loop turns (or at once while
 * stopping). */
static void serve_metrics(server_t *s, const am_http_request_t *req, am_http_response_t *resp)
{
    bool om = am_http_wants_openmetrics(req->accept);
    am_format_t fmt = om ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT;
    resp->content_type = om ? AM_CONTENT_TYPE_OPENMETRICS : AM_CONTENT_TYPE_TEXT;
    resp->compressible = true;
    s->stats.scrapes++;
    pending_scrape_t *p = s->stopping ? NULL : calloc(1, sizeof(*p));
    if (p)
        p->answer = am_http_defer(resp);
    if (!p || !p->answer) {
        free(p);
        render_metrics_now(s, fmt, resp->body);
        return;
    }
    p->fmt = fmt;
    p->gzip = am_http_accepts_gzip(req->accept_encoding);
    if (s->queue_tail)
        s->queue_tail->next = p;
    else
        s->queue_head = p;
    s->queue_tail = p;
    start_next_scrape(s);
}

static void render_health(server_t *s, am_buf_t *body)
{
    /* Several workers: counters summed one worker at a time (no snapshot:
     * probes are frequent); families are the directory's distinct ones,
     * series are summed over workers (one fed by two workers counts twice). */
    am_selfstats_t st;
    memset(&st, 0, sizeof(st));
    json_int_t families, series;
    if (s->nworkers == 1)
        read_queued_datagrams(&s->workers[0]);
    add_worker_ingest(s, &st);
    if (s->dir) {
        families = (json_int_t)am_famdir_family_count(s->dir);
        series = (json_int_t)am_famdir_series_count(s->dir);
    } else {
        families = (json_int_t)am_registry_family_count(s->workers[0].registry);
        series = (json_int_t)am_registry_series_count(s->workers[0].registry);
    }
    uint64_t rejected = 0;
    for (int i = 1; i < AM_REASON_COUNT; i++)
        rejected += st.rejected[i];
    json_t *o =
        json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:{s:I, s:I}}", "status", "ok", "version",
                  AM_VERSION, "uptime_seconds", now_seconds() - s->stats.start_time, "families",
                  families, "series", series, "samples_total", (json_int_t)st.samples,
                  "samples_rejected_total", (json_int_t)rejected, "datagrams_received_total", "udp",
                  (json_int_t)st.datagrams[AM_TRANSPORT_UDP], "unix",
                  (json_int_t)st.datagrams[AM_TRANSPORT_UNIX]);
    if (o && s->nworkers > 1) {
        json_t *per = json_array();
        for (unsigned i = 0; per && i < s->nworkers; i++)
            json_array_append_new(per, json_integer((json_int_t)s->worker_datagrams[i]));
        json_object_set_new(o, "workers", json_integer((json_int_t)s->nworkers));
        json_object_set_new(o, "worker_datagrams_received_total", per ? per : json_null());
    }
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    if (text) {
        am_buf_puts(body, text);
        am_buf_putc(body, '\n');
    } else {
        body->failed = true;
    }
    free(text);
    json_decref(o);
}

static const char landing_page[] =
    "<!DOCTYPE html>\n"
    "<html><head><meta charset=\"utf-8\"><title>alice-metrics</title></head>\n"
    "<body><h1>alice-metrics</h1>\n"
    "<p>StatsD to Prometheus aggregator, version " AM_VERSION ".</p>\n"
    "<ul><li><a href=\"/metrics\">/metrics</a> (Prometheus text; OpenMetrics by Accept)</li>\n"
    "<li><a href=\"/health\">/health</a> (JSON status)</li></ul>\n"
    "</body></html>\n";

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
    } else {
        resp->status = 404;
        resp->content_type = "text/plain; charset=utf-8";
        am_buf_puts(resp->body, "404 not found: try /metrics, /health or /\n");
    }
    if (am_buf_failed(resp->body)) {
        am_buf_reset(resp->body);
        resp->status = 500;
        resp->compressible = false;
        resp->content_type = "text/plain; charset=utf-8";
        am_buf_puts(resp->body, "500 out of memory while rendering\n");
        am_log(AM_LOG_ERROR, "event=render_failed path=%.*s", (int)req->path_len, req->path);
    }
}

/* ---- config ---- */

/* Applies a loaded config's catalog and limits to one registry; log: warn
 * about replaced families (once, not once per worker). */
static int apply_config_to(am_registry_t *r, const am_config_t *cfg, bool log)
{
    am_limits_t limits;
    am_limits_default(&limits);
    am_config_apply_limits(cfg, &limits);
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
    lock_workers(s);
    for (unsigned i = 0; i < s->nworkers && rc == 0; i++)
        rc = apply_config_to(s->workers[i].registry, cfg, i == 0);
    if (rc == 0 && !s->opts->log_level_fixed && cfg->log_level >= 0)
        am_log_threshold = (am_log_level_t)cfg->log_level;
    unlock_workers(s);
    return rc;
}

static void reload(server_t *s)
{
    finish_merge_now(s);
    if (!s->opts->config_path) {
        am_log(AM_LOG_INFO, "event=reload_skipped reason=\"no config file\"");
        return;
    }
    am_config_t cfg;
    char err[512];
    if (am_config_load(s->opts->config_path, &cfg, err, sizeof(err)) != 0) {
        s->stats.reloads_failed++;
        am_log(AM_LOG_ERROR, "event=reload_failed error=\"%s\" action=\"kept the old config\"",
               err);
        return;
    }
    if (apply_config(s, &cfg) != 0) {
        s->stats.reloads_failed++;
        am_log(AM_LOG_ERROR, "event=reload_failed error=\"out of memory\"");
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
    uv_close((uv_handle_t *)&s->sig_term, NULL);
    uv_close((uv_handle_t *)&s->sig_int, NULL);
    uv_close((uv_handle_t *)&s->sig_hup, NULL);
}

/* Closes a worker's handles on its own loop (its thread, or the main thread
 * when the thread never started or there is only one worker). */
static void close_worker_handles(worker_t *w)
{
    if (w->udp) {
        am_ingest_close(w->udp);
        w->udp = NULL;
    }
    if (w->unix_in) {
        am_ingest_close(w->unix_in);
        w->unix_in = NULL;
    }
    if (w->async_ready) {
        uv_close((uv_handle_t *)&w->stop_async, NULL);
        w->async_ready = false;
    }
}

static void on_worker_stop(uv_async_t *h)
{
    close_worker_handles(h->data); /* the loop then has nothing left: uv_run returns */
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    uv_run(w->loop, UV_RUN_DEFAULT);
    return NULL;
}

static void begin_stop(server_t *s, const char *why)
{
    if (s->stopping)
        return;
    s->stopping = true;
    am_log(AM_LOG_INFO, "event=stopping signal=%s", why);
    for (unsigned i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        if (w->thread_started)
            uv_async_send(&w->stop_async); /* joined after the main loop ends */
        else if (!w->threaded)
            close_worker_handles(w);
        /* a thread never started: its handles are closed at teardown */
    }
    finish_scrapes_now(s);
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

static int open_ingest(server_t *s)
{
    const am_server_opts_t *o = s->opts;
    worker_t *w0 = &s->workers[0];
    if (o->statsd_port > 0) {
        /* Every worker binds the same port: SO_REUSEPORT groups them. */
        unsigned flags = s->nworkers > 1 ? AM_INGEST_REUSEPORT : 0;
        for (unsigned i = 0; i < s->nworkers; i++) {
            worker_t *w = &s->workers[i];
            int rc = am_ingest_open_udp(w->loop, o->statsd_host, o->statsd_port,
                                        o->receive_buffer_bytes, flags, on_datagram, w, &w->udp);
            if (rc < 0) {
                am_log(AM_LOG_ERROR,
                       "event=bind_failed transport=udp addr=%s port=%d worker=%u error=\"%s\"",
                       o->statsd_host, o->statsd_port, i, strerror(-rc));
                return -1;
            }
            am_ingest_count_wakeups(w->udp, &w->stats.wakeups[AM_TRANSPORT_UDP]);
            if (w->threaded)
                am_ingest_set_batch_fn(w->udp, on_batch);
        }
        am_log(AM_LOG_INFO,
               "event=listening transport=udp addr=%s port=%d receive_buffer=%d workers=%u "
               "coalesce_ms=%u",
               o->statsd_host, am_ingest_port(w0->udp), am_ingest_rcvbuf(w0->udp), s->nworkers,
               am_ingest_coalesce_ms(w0->udp));
        /* The kernel reports twice what it grants; without CAP_NET_ADMIN it
         * grants at most net.core.rmem_max (212992 bytes by default), which
         * a burst at full speed fills in well under a millisecond. */
        if (o->receive_buffer_bytes > 0 && am_ingest_rcvbuf(w0->udp) / 2 < o->receive_buffer_bytes)
            am_log(AM_LOG_WARN,
                   "event=receive_buffer_capped transport=udp requested=%d granted=%d "
                   "msg=\"the kernel capped the UDP receive buffer at net.core.rmem_max: bursts "
                   "may be dropped (alice_metricsd_receive_errors_total does not see them; the "
                   "kernel's RcvbufErrors does) and wake-ups are not coalesced; raise "
                   "net.core.rmem_max (sysctl) or grant the daemon CAP_NET_ADMIN\"",
                   o->receive_buffer_bytes, am_ingest_rcvbuf(w0->udp) / 2);
    }
    if (o->unix_path) {
        /* One socket, read by worker 0 (Unix senders are few and local). */
        int rc = am_ingest_open_unix(w0->loop, o->unix_path, o->receive_buffer_bytes, on_datagram,
                                     w0, &w0->unix_in);
        if (rc < 0) {
            am_log(AM_LOG_ERROR, "event=bind_failed transport=unix path=%s error=\"%s\"",
                   o->unix_path,
                   rc == -EEXIST ? "a file that is not a socket is in the way; not removing it"
                                 : strerror(-rc));
            return -1;
        }
        am_ingest_count_wakeups(w0->unix_in, &w0->stats.wakeups[AM_TRANSPORT_UNIX]);
        if (w0->threaded)
            am_ingest_set_batch_fn(w0->unix_in, on_batch);
        am_log(AM_LOG_INFO, "event=listening transport=unix path=%s receive_buffer=%d",
               o->unix_path, am_ingest_rcvbuf(w0->unix_in));
    }
    if (o->statsd_port <= 0 && !o->unix_path)
        am_log(AM_LOG_WARN, "event=no_ingest msg=\"UDP is off and no --unix socket: nothing "
                            "will be received\"");
    return 0;
}

/* Sets up worker i: its registry (sharing the directory when there are
 * several) and, for a threaded worker, its mutex, loop and stop handle. 0,
 * or -1 with what was set up left for free_worker. */
static int init_worker(server_t *s, unsigned i)
{
    worker_t *w = &s->workers[i];
    w->srv = s;
    w->id = i;
    w->threaded = s->nworkers > 1;
    w->loop = &s->loop;
    w->registry = am_registry_new(NULL);
    if (!w->registry)
        return -1;
    if (s->dir) {
        am_registry_use_directory(w->registry, s->dir);
        am_registry_enable_gauge_stamps(w->registry);
    }
    if (am_catalog_install(w->registry) != 0)
        return -1;
    if (!w->threaded)
        return 0;
    /* threaded implies mutex: initialised before anything can fail below */
    if (pthread_mutex_init(&w->mu, NULL) != 0) {
        w->threaded = false;
        return -1;
    }
    if (uv_loop_init(&w->own_loop) != 0)
        return -1;
    w->own_loop_ready = true;
    w->loop = &w->own_loop;
    if (uv_async_init(&w->own_loop, &w->stop_async, on_worker_stop) != 0)
        return -1;
    w->stop_async.data = w;
    w->async_ready = true;
    return 0;
}

/* Starts the threads of a multi-worker server, signals blocked in them (the
 * main loop handles every signal). 0 or -1. */
static int start_workers(server_t *s)
{
    if (s->nworkers == 1)
        return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (unsigned i = 0; i < s->nworkers && rc == 0; i++) {
        worker_t *w = &s->workers[i];
        rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc == 0)
            w->thread_started = true;
        else
            am_log(AM_LOG_ERROR, "event=startup_failed worker=%u error=\"%s\"", i, strerror(rc));
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0 ? 0 : -1;
}

/* After the main loop has ended: joins the thread (stopped by begin_stop),
 * or closes the handles of a thread that never ran, then frees. */
static void free_worker(worker_t *w)
{
    if (w->thread_started) {
        pthread_join(w->thread, NULL);
    } else if (w->own_loop_ready) {
        close_worker_handles(w);
        uv_run(&w->own_loop, UV_RUN_DEFAULT);
    }
    if (w->own_loop_ready && uv_loop_close(&w->own_loop) != 0)
        am_log(AM_LOG_WARN, "event=loop_not_empty_at_exit worker=%u", w->id);
    if (w->threaded)
        pthread_mutex_destroy(&w->mu);
    am_registry_free(w->registry);
}

static void free_server(server_t *s)
{
    for (unsigned i = 0; s->workers && i < s->nworkers; i++)
        free_worker(&s->workers[i]);
    am_famdir_free(s->dir); /* after every registry that used it */
    am_registry_free(s->merge.snap);
    if (s->merge.mu_ready)
        pthread_mutex_destroy(&s->merge.mu);
    free(s->workers);
    free(s->worker_datagrams);
    free(s);
}

int am_server_run(const am_server_opts_t *opts)
{
    int exit_code = 0;
    server_t *s = calloc(1, sizeof(*s));
    if (!s) {
        am_log(AM_LOG_ERROR, "event=startup_failed error=\"out of memory\"");
        return 1;
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

    am_config_t cfg;
    am_config_init(&cfg);
    if (opts->config_path) {
        char err[512];
        if (am_config_load(opts->config_path, &cfg, err, sizeof(err)) != 0) {
            am_log(AM_LOG_ERROR, "event=config_invalid error=\"%s\"", err);
            free(s);
            return 2;
        }
    }
    s->nworkers = opts->workers > 1 ? (unsigned)opts->workers : 1;
    s->workers = calloc(s->nworkers, sizeof(*s->workers));
    s->worker_datagrams = calloc(s->nworkers, sizeof(*s->worker_datagrams));
    bool ok = s->workers && s->worker_datagrams;
    if (ok && s->nworkers > 1) {
        s->dir = am_famdir_new();
        ok = s->dir != NULL;
    }
    for (unsigned i = 0; ok && i < s->nworkers; i++)
        ok = init_worker(s, i) == 0;
    if (!ok || apply_config(s, &cfg) != 0) {
        am_log(AM_LOG_ERROR, "event=startup_failed error=\"out of memory\"");
        am_config_free(&cfg);
        free_server(s);
        return 1;
    }
    am_config_free(&cfg);
    /* read now: once the threads run, the registries are theirs */
    size_t nfamilies = am_registry_family_count(s->workers[0].registry);

    if (uv_loop_init(&s->loop) != 0) {
        free_server(s);
        return 1;
    }
    if (pthread_mutex_init(&s->merge.mu, NULL) != 0) {
        uv_loop_close(&s->loop);
        free_server(s);
        return 1;
    }
    s->merge.mu_ready = true;
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

    am_http_limits_t limits;
    am_http_limits_default(&limits);
    int rc = am_http_server_start(&s->loop, opts->http_host, opts->http_port, &limits, on_request,
                                  s, &s->http);
    if (rc < 0) {
        am_log(AM_LOG_ERROR, "event=bind_failed transport=http addr=%s port=%d error=\"%s\"%s",
               opts->http_host, opts->http_port, uv_strerror(rc),
               rc == UV_EADDRINUSE ? " hint=\"another process listens there: pick --port\"" : "");
        s->http = NULL;
        exit_code = 1;
    } else {
        am_log(AM_LOG_INFO, "event=listening transport=http addr=%s port=%d", opts->http_host,
               am_http_server_port(s->http));
        if (open_ingest(s) != 0 || start_workers(s) != 0)
            exit_code = 1;
    }
    if (exit_code == 0)
        am_log(AM_LOG_INFO, "event=started version=%s families=%zu workers=%u", AM_VERSION,
               nfamilies, s->nworkers);
    else
        begin_stop(s, "startup_failure");

    uv_run(&s->loop, UV_RUN_DEFAULT);
    for (unsigned i = 0; i < s->nworkers; i++) {
        worker_t *w = &s->workers[i];
        if (w->thread_started) {
            pthread_join(w->thread, NULL);
            w->thread_started = false;
        }
    }
    if (uv_loop_close(&s->loop) != 0)
        am_log(AM_LOG_WARN, "event=loop_not_empty_at_exit");
    if (exit_code == 0)
        am_log(AM_LOG_INFO, "event=stopped");
    free_server(s);
    return exit_code;
}
