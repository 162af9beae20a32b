#include "server.h"

#include <errno.h>
#include <signal.h>
#include <jansson.h>
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
#include "selfstats.h"

/* Debug logging of rejected lines is rate-limited: a flood of bad lines
 * must not turn into a flood of log writes. */
#define REJECT_LOG_PER_SEC 20

typedef struct server {
    uv_loop_t loop;
    const am_server_opts_t *opts;
    am_registry_t *registry;
    am_selfstats_t stats;
    am_http_server_t *http;
    am_ingest_t *udp;
    am_ingest_t *unix_in;
    uv_signal_t sig_term, sig_int, sig_hup;
    bool stopping;
    am_sample_t sample; /* big (tags, values): one per server, not on the stack */
    int transport;      /* of the datagram being applied */
    uint64_t log_window_ms;
    unsigned log_in_window;
    uint64_t log_suppressed;
} server_t;

static double now_seconds(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* ---- ingest path ---- */

static void log_reject(server_t *s, am_reason_t rc, const char *line, size_t len)
{
    uint64_t now = uv_now(&s->loop);
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

static void on_line(void *ctx, const char *line, size_t len)
{
    server_t *s = ctx;
    am_reason_t rc = am_registry_ingest_line(s->registry, line, len, &s->sample);
    if (rc == AM_OK) {
        s->stats.samples++;
        return;
    }
    s->stats.rejected[rc]++;
    if (am_log_enabled(AM_LOG_DEBUG))
        log_reject(s, rc, line, len);
}

static void on_datagram(void *ctx, int transport, const char *p, size_t n, bool truncated)
{
    server_t *s = ctx;
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
        const char *nl = NULL;
        for (size_t i = n; i > 0; i--) {
            if (p[i - 1] == '\n') {
                nl = p + i - 1;
                break;
            }
        }
        s->stats.rejected[AM_REJECT_SYNTAX]++;
        n = nl ? (size_t)(nl - p) : 0;
    }
    am_parse_datagram(p, n, on_line, s);
}

/* ---- HTTP ---- */

static void render_metrics(server_t *s, am_format_t fmt, am_buf_t *body)
{
    uint64_t t0 = uv_hrtime();
    const am_http_stats_t *hs = am_http_server_stats(s->http);
    s->stats.http_requests = hs->requests;
    s->stats.http_bad_requests = hs->bad_requests;
    s->stats.http_connections_rejected = hs->connections_rejected;
    s->stats.http_connections_open = hs->connections_open;
    s->stats.scrapes++;
    am_expose_registry(body, s->registry, fmt);
    am_selfstats_render(body, &s->stats, s->registry, fmt);
    am_selfstats_render_process(body, fmt);
    am_expose_finish(body, fmt);
    s->stats.last_scrape_seconds = (double)(uv_hrtime() - t0) / 1e9;
}

static void render_health(server_t *s, am_buf_t *body)
{
    uint64_t rejected = 0;
    for (int i = 1; i < AM_REASON_COUNT; i++)
        rejected += s->stats.rejected[i];
    json_t *o = json_pack(
        "{s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:{s:I, s:I}}", "status", "ok", "version",
        AM_VERSION, "uptime_seconds", now_seconds() - s->stats.start_time, "families",
        (json_int_t)am_registry_family_count(s->registry), "series",
        (json_int_t)am_registry_series_count(s->registry), "samples_total",
        (json_int_t)s->stats.samples, "samples_rejected_total", (json_int_t)rejected,
        "datagrams_received_total", "udp", (json_int_t)s->stats.datagrams[AM_TRANSPORT_UDP],
        "unix", (json_int_t)s->stats.datagrams[AM_TRANSPORT_UNIX]);
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
        bool om = am_http_wants_openmetrics(req->accept);
        resp->content_type = om ? AM_CONTENT_TYPE_OPENMETRICS : AM_CONTENT_TYPE_TEXT;
        resp->compressible = true;
        render_metrics(s, om ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT, resp->body);
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

/* Applies a loaded config's catalog and limits to the registry. */
static int apply_config(server_t *s, const am_config_t *cfg)
{
    am_limits_t limits;
    am_limits_default(&limits);
    am_config_apply_limits(cfg, &limits);
    am_registry_set_limits(s->registry, &limits);
    for (size_t i = 0; i < cfg->nfamilies; i++) {
        int rc = am_registry_define(s->registry, &cfg->families[i]);
        if (rc < 0)
            return rc;
        if (rc > 0)
            am_log(AM_LOG_WARN,
                   "event=families_replaced family=%s count=%d reason=\"their sample names clash "
                   "with the configured family\"",
                   cfg->families[i].name, rc);
    }
    if (!s->opts->log_level_fixed && cfg->log_level >= 0)
        am_log_threshold = (am_log_level_t)cfg->log_level;
    return 0;
}

static void reload(server_t *s)
{
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
    if (s->udp) {
        am_ingest_close(s->udp);
        s->udp = NULL;
    }
    if (s->unix_in) {
        am_ingest_close(s->unix_in);
        s->unix_in = NULL;
    }
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
    if (o->statsd_port > 0) {
        int rc = am_ingest_open_udp(&s->loop, o->statsd_host, o->statsd_port,
                                    o->receive_buffer_bytes, on_datagram, s, &s->udp);
        if (rc < 0) {
            am_log(AM_LOG_ERROR, "event=bind_failed transport=udp addr=%s port=%d error=\"%s\"",
                   o->statsd_host, o->statsd_port, strerror(-rc));
            return -1;
        }
        am_log(AM_LOG_INFO, "event=listening transport=udp addr=%s port=%d receive_buffer=%d",
               o->statsd_host, am_ingest_port(s->udp), am_ingest_rcvbuf(s->udp));
    }
    if (o->unix_path) {
        int rc = am_ingest_open_unix(&s->loop, o->unix_path, o->receive_buffer_bytes,
                                     on_datagram, s, &s->unix_in);
        if (rc < 0) {
            am_log(AM_LOG_ERROR, "event=bind_failed transport=unix path=%s error=\"%s\"",
                   o->unix_path,
                   rc == -EEXIST ? "a file that is not a socket is in the way; not removing it"
                                 : strerror(-rc));
            return -1;
        }
        am_log(AM_LOG_INFO, "event=listening transport=unix path=%s receive_buffer=%d",
               o->unix_path, am_ingest_rcvbuf(s->unix_in));
    }
    if (o->statsd_port <= 0 && !o->unix_path)
        am_log(AM_LOG_WARN, "event=no_ingest msg=\"UDP is off and no --unix socket: nothing "
                            "will be received\"");
    return 0;
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
    s->registry = am_registry_new(NULL);
    if (!s->registry || am_catalog_install(s->registry) != 0 || apply_config(s, &cfg) != 0) {
        am_log(AM_LOG_ERROR, "event=startup_failed error=\"out of memory\"");
        am_config_free(&cfg);
        am_registry_free(s->registry);
        free(s);
        return 1;
    }
    am_config_free(&cfg);

    if (uv_loop_init(&s->loop) != 0) {
        am_registry_free(s->registry);
        free(s);
        return 1;
    }
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
        if (open_ingest(s) != 0)
            exit_code = 1;
    }
    if (exit_code == 0)
        am_log(AM_LOG_INFO, "event=started version=%s families=%zu", AM_VERSION,
               am_registry_family_count(s->registry));
    else
        begin_stop(s, "startup_failure");

    uv_run(&s->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&s->loop) != 0)
        am_log(AM_LOG_WARN, "event=loop_not_empty_at_exit");
    if (exit_code == 0)
        am_log(AM_LOG_INFO, "event=stopped");
    am_registry_free(s->registry);
    free(s);
    return exit_code;
}
