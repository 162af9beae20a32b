#include "selfstats.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static const char *const transport_names[] = {"udp", "unix"};

static void counter_by_transport(am_buf_t *b, const char *name, const char *help, const uint64_t *v,
                                 am_format_t fmt)
{
    am_expose_family_header(b, name, help, AM_FAMILY_COUNTER, fmt);
    for (int t = 0; t < AM_TRANSPORT_COUNT; t++) {
        const char *l[] = {"transport", transport_names[t]};
        am_expose_sample(b, name, l, 1, (double)v[t]);
    }
}

static void single(am_buf_t *b, const char *name, const char *help, am_family_type_t type, double v,
                   am_format_t fmt)
{
    am_expose_family_header(b, name, help, type, fmt);
    am_expose_sample(b, name, NULL, 0, v);
}

void am_selfstats_render(am_buf_t *b, const am_selfstats_t *st, const am_registry_t *r,
                         am_format_t fmt)
{
    counter_by_transport(b, "alice_metricsd_datagrams_received_total",
                         "StatsD datagrams received, by transport.", st->datagrams, fmt);
    counter_by_transport(b, "alice_metricsd_received_bytes_total",
                         "StatsD payload bytes received, by transport.", st->bytes, fmt);
    counter_by_transport(b, "alice_metricsd_datagrams_truncated_total",
                         "Datagrams larger than the receive buffer (their cut last line is "
                         "rejected).",
                         st->truncated, fmt);
    counter_by_transport(b, "alice_metricsd_receive_errors_total",
                         "Socket receive errors, by transport.", st->receive_errors, fmt);
    counter_by_transport(b, "alice_metricsd_ingest_wakeups_total",
                         "Reads of an ingest socket that found datagrams: arrivals, or under "
                         "UDP load one read per millisecond (datagrams per wake-up = "
                         "datagrams_received_total / this).",
                         st->wakeups, fmt);
    if (st->nworkers > 1 && st->worker_datagrams) {
        const char *wname = "alice_metricsd_worker_datagrams_total";
        am_expose_family_header(b, wname,
                                "StatsD datagrams received, by ingest worker (--workers).",
                                AM_FAMILY_COUNTER, fmt);
        for (unsigned i = 0; i < st->nworkers; i++) {
            char id[16];
            snprintf(id, sizeof(id), "%u", i);
            const char *l[] = {"worker", id};
            am_expose_sample(b, wname, l, 1, (double)st->worker_datagrams[i]);
        }
    }
    single(b, "alice_metricsd_samples_total", "StatsD lines accepted.", AM_FAMILY_COUNTER,
           (double)st->samples, fmt);

    const char *name = "alice_metricsd_samples_rejected_total";
    am_expose_family_header(b, name, "StatsD lines dropped, by reason (see proto/README.md).",
                            AM_FAMILY_COUNTER, fmt);
    for (int i = 1; i < AM_REASON_COUNT; i++) {
        const char *l[] = {"reason", am_reason_label((am_reason_t)i)};
        am_expose_sample(b, name, l, 1, (double)st->rejected[i]);
    }

    name = "alice_metricsd_series";
    am_expose_family_header(b, name, "Series currently held, by family.", AM_FAMILY_GAUGE, fmt);
    for (const am_family_t *f = am_registry_first(r); f; f = am_family_next(f)) {
        const char *l[] = {"family", am_family_def(f)->name};
        am_expose_sample(b, name, l, 1, (double)am_family_series_count(f));
    }
    single(b, "alice_metricsd_families", "Metric families currently defined.", AM_FAMILY_GAUGE,
           (double)am_registry_family_count(r), fmt);
    single(b, "alice_metricsd_set_members",
           "Set members held over every set series (with workers, summed over them), against "
           "limits.max_set_members.",
           AM_FAMILY_GAUGE, (double)st->set_members, fmt);
    single(b, "alice_metricsd_series_bytes",
           "Memory of the series held and their label text (with workers, summed over them), "
           "against limits.max_series_bytes.",
           AM_FAMILY_GAUGE, (double)st->series_bytes, fmt);

    name = "alice_metricsd_config_reloads_total";
    am_expose_family_header(b, name, "SIGHUP config reloads, by result.", AM_FAMILY_COUNTER, fmt);
    const char *ok[] = {"result", "success"};
    const char *bad[] = {"result", "failure"};
    am_expose_sample(b, name, ok, 1, (double)st->reloads_ok);
    am_expose_sample(b, name, bad, 1, (double)st->reloads_failed);

    single(b, "alice_metricsd_scrapes_total", "Scrapes of /metrics served.", AM_FAMILY_COUNTER,
           (double)st->scrapes, fmt);
    single(b, "alice_metricsd_last_scrape_duration_seconds",
           "Time from start to end of rendering the previous /metrics response (ingest runs "
           "between its steps).",
           AM_FAMILY_GAUGE, st->last_scrape_seconds, fmt);
    single(b, "alice_metricsd_last_scrape_longest_pause_seconds",
           "Longest time the previous /metrics response held up ingest: one render step, or "
           "one family rendered early because a line was about to change it.",
           AM_FAMILY_GAUGE, st->last_scrape_longest_pause_seconds, fmt);
    am_expose_family_header(b, "alice_metricsd_events_total",
                            "DogStatsD events (_e{...}) and service checks (_sc|...): accepted, "
                            "counted, not metrics.",
                            AM_FAMILY_COUNTER, fmt);
    static const char *const kinds[][2] = {{"kind", "event"}, {"kind", "service_check"}};
    for (size_t i = 0; i < 2; i++)
        am_expose_sample(b, "alice_metricsd_events_total", kinds[i], 1, (double)st->events[i]);
    single(b, "alice_metricsd_mapping_dropped_total",
           "Lines a mapping with action: drop matched (--mapping-config): dropped on purpose, "
           "not rejects.",
           AM_FAMILY_COUNTER, (double)st->mapping_dropped, fmt);
    single(b, "alice_metricsd_series_expired_total",
           "Series removed because no line updated them for their TTL.", AM_FAMILY_COUNTER,
           (double)st->series_expired, fmt);
    am_expose_family_header(b, "alice_metricsd_longest_pause_seconds",
                            "Longest time ingest waited, in one go, on the last run of each "
                            "background task: a scrape's render or merge steps, a TTL sweep "
                            "pass, a state file copy, a remote write push's snapshot and "
                            "encoding.",
                            AM_FAMILY_GAUGE, fmt);
    static const char *const causes[][2] = {{"cause", "scrape"},
                                            {"cause", "expiry"},
                                            {"cause", "state_write"},
                                            {"cause", "remote_write"}};
    const double pauses[] = {
        st->last_scrape_longest_pause_seconds, st->last_expiry_longest_pause_seconds,
        st->last_state_longest_pause_seconds, st->last_rw_longest_pause_seconds};
    for (size_t i = 0; i < 4; i++)
        am_expose_sample(b, "alice_metricsd_longest_pause_seconds", causes[i], 1, pauses[i]);
    if (st->rw_enabled) {
        name = "alice_metricsd_remote_write_samples_total";
        am_expose_family_header(b, name,
                                "Remote write samples: sent (accepted by the receiver), failed "
                                "(in a request that did not succeed, per attempt), dropped "
                                "(given up: refused, or pushed out of a full queue).",
                                AM_FAMILY_COUNTER, fmt);
        static const char *const results[][2] = {
            {"result", "sent"}, {"result", "failed"}, {"result", "dropped"}};
        const uint64_t rw[] = {st->rw_sent, st->rw_failed, st->rw_dropped};
        for (size_t i = 0; i < 3; i++)
            am_expose_sample(b, name, results[i], 1, (double)rw[i]);
        single(b, "alice_metricsd_remote_write_queue_bytes",
               "Compressed remote write requests waiting to be sent (max_queue_bytes bounds it).",
               AM_FAMILY_GAUGE, (double)st->rw_queue_bytes, fmt);
    }
    am_expose_family_header(b, "alice_metricsd_state_writes_total",
                            "Writes of the state file (--state-file), by result.",
                            AM_FAMILY_COUNTER, fmt);
    static const char *const w_ok[] = {"result", "success"}, *const w_failed[] = {"result",
                                                                                  "failure"};
    am_expose_sample(b, "alice_metricsd_state_writes_total", w_ok, 1, (double)st->state_writes_ok);
    am_expose_sample(b, "alice_metricsd_state_writes_total", w_failed, 1,
                     (double)st->state_writes_failed);
    single(b, "alice_metricsd_http_requests_total", "HTTP requests answered.", AM_FAMILY_COUNTER,
           (double)st->http_requests, fmt);
    single(b, "alice_metricsd_http_bad_requests_total",
           "Malformed or oversized HTTP requests (400/413/431).", AM_FAMILY_COUNTER,
           (double)st->http_bad_requests, fmt);
    single(b, "alice_metricsd_http_connections_rejected_total",
           "New HTTP connections closed at once: max_connections were open and none could be "
           "shed.",
           AM_FAMILY_COUNTER, (double)st->http_connections_rejected, fmt);
    single(b, "alice_metricsd_http_connections_shed_total",
           "Open HTTP connections closed to make room for a new one (a slow request or reader, "
           "an idle keep-alive), because slow readers held too many old /metrics bodies, or "
           "for falling far behind a streamed one.",
           AM_FAMILY_COUNTER, (double)st->http_connections_shed, fmt);
    single(b, "alice_metricsd_http_connections", "HTTP connections open.", AM_FAMILY_GAUGE,
           (double)st->http_connections_open, fmt);

    name = "alice_metricsd_build_info";
    am_expose_family_header(b, name, "Build information; the value is always 1.", AM_FAMILY_GAUGE,
                            fmt);
    const char *v[] = {"version", st->version};
    am_expose_sample(b, name, v, 1, 1.0);
}

void am_selfstats_add_ingest(am_selfstats_t *dst, const am_selfstats_t *src)
{
    for (int t = 0; t < AM_TRANSPORT_COUNT; t++) {
        dst->datagrams[t] += src->datagrams[t];
        dst->bytes[t] += src->bytes[t];
        dst->truncated[t] += src->truncated[t];
        dst->receive_errors[t] += src->receive_errors[t];
        dst->wakeups[t] += src->wakeups[t];
    }
    dst->samples += src->samples;
    for (int i = 0; i < AM_REASON_COUNT; i++)
        dst->rejected[i] += src->rejected[i];
    for (size_t i = 0; i < 2; i++)
        dst->events[i] += src->events[i];
    dst->mapping_dropped += src->mapping_dropped;
}

static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "btime ", 6) == 0) {
            bt = strtod(line + 6, NULL);
            break;
        }
    }
    fclose(f);
    return bt;
}

/* Fields 14 (utime), 15 (stime), 22 (starttime), 23 (vsize), 24 (rss) of
 * /proc/self/stat, counted after the ')' that ends the command name. */
static bool read_stat(double *cpu, double *start, double *vsize, double *rss)
{
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return false;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return false;
    p += 2; /* field 3 */
    unsigned long long fld[25] = {0};
    for (int i = 3; i <= 24 && *p; i++) {
        char *end;
        fld[i] = strtoull(p, &end, 10);
        if (end == p) /* field 3 is a letter */
            end = p + 1;
        p = end;
        while (*p == ' ')
            p++;
    }
    double tck = (double)sysconf(_SC_CLK_TCK);
    double page = (double)sysconf(_SC_PAGESIZE);
    if (tck <= 0)
        tck = 100;
    *cpu = (double)(fld[14] + fld[15]) / tck;
    *start = boot_time() + (double)fld[22] / tck;
    *vsize = (double)fld[23];
    *rss = (double)fld[24] * page;
    return true;
}

double am_process_start_time(void)
{
    double cpu, start, vsize, rss;
    return read_stat(&cpu, &start, &vsize, &rss) ? start : 0;
}

/* Open file descriptors (>= 0), or -errno of opendir (no /proc). */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -errno;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own fd */
}

void am_selfstats_render_process(am_buf_t *b, am_format_t fmt)
{
    double cpu, start, vsize, rss;
    if (read_stat(&cpu, &start, &vsize, &rss)) {
        single(b, "process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
               AM_FAMILY_COUNTER, cpu, fmt);
        single(b, "process_resident_memory_bytes", "Resident memory size in bytes.",
               AM_FAMILY_GAUGE, rss, fmt);
        single(b, "process_virtual_memory_bytes", "Virtual memory size in bytes.", AM_FAMILY_GAUGE,
               vsize, fmt);
        single(b, "process_start_time_seconds",
               "Start time of the process since unix epoch in seconds.", AM_FAMILY_GAUGE, start,
               fmt);
    }
    int fds = count_fds();
    if (fds >= 0)
        single(b, "process_open_fds", "Number of open file descriptors.", AM_FAMILY_GAUGE,
               (double)fds, fmt);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        single(b, "process_max_fds", "Maximum number of open file descriptors.", AM_FAMILY_GAUGE,
               (double)rl.rlim_cur, fmt);
}
