/* workers: the ingest workers and the scrape's stepped merge (see
 * workers.h). */
#include "workers.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "ingest.h"
#include "log.h"
#include "parse.h"

/* Debug logging of rejected lines is rate-limited: a flood of bad lines
 * must not turn into a flood of log writes. */
#define REJECT_LOG_PER_SEC 20

/* One ingest loop and what it owns. With one worker it runs on the server's
 * loop and nothing is locked. With several, each runs its own loop on its
 * own thread and holds mu while it applies one recvmmsg batch. */
typedef struct worker {
    unsigned id;
    uv_loop_t *loop; /* the server's loop (borrowed), or &own_loop */
    bool threaded;
    bool own_loop_ready, async_ready, thread_started;
    uv_loop_t own_loop;
    uv_async_t stop_async;
    pthread_t thread;
    pthread_mutex_t mu;
    am_registry_t *registry; /* owned */
    am_selfstats_t stats;    /* the ingest counters only */
    am_ingest_t *udp;        /* owned; freed by am_ingest_close */
    am_ingest_t *unix_in;    /* worker 0 only; owned, as udp */
    am_senders_t senders;    /* worker 0 with unix_in: by sender; owned */
    uint64_t dgram_rejected; /* lines rejected in the datagram being applied */
    am_sample_t sample;      /* big (tags, values): one per worker, not on the stack */
    int transport;           /* of the datagram being applied */
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
    am_registry_t *snap; /* owned; NULL: no merge in progress */
    bool failed;         /* out of memory in merge_early */
    unsigned worker;     /* being merged; its snapshot and later ones open */
    const am_family_t *cursor;
    uint64_t longest_ns; /* the longest a worker was held */
} merge_t;

/* The TTL sweep (main thread): one worker's registry at a time, from a
 * cursor, every worker held during a step. */
typedef struct sweep {
    unsigned worker; /* being swept */
    am_expire_cursor_t cursor;
    uint32_t now; /* of the step in progress, for others_fresh */
} sweep_t;

struct am_workers {
    unsigned n;
    worker_t *w;                /* n, owned */
    am_famdir_t *dir;           /* several workers only; owned */
    uint64_t *worker_datagrams; /* n, owned: am_workers_add_ingest's scratch */
    merge_t merge;
    sweep_t sweep;
    bool stopped;
};

/* ---- locking ---- */

static void lock_worker(worker_t *w)
{
    if (!w->threaded)
        return;
    int rc = pthread_mutex_lock(&w->mu);
    assert(rc == 0); /* only a bug (a lock held twice) makes it fail */
    (void)rc;
}

static void unlock_worker(worker_t *w)
{
    if (!w->threaded)
        return;
    int rc = pthread_mutex_unlock(&w->mu);
    assert(rc == 0);
    (void)rc;
}

/* The main thread takes every worker's mutex, in order (a consistent
 * snapshot: every worker paused between two batches). */
void am_workers_pause(am_workers_t *ws)
{
    for (unsigned i = 0; i < ws->n; i++)
        lock_worker(&ws->w[i]);
}

void am_workers_resume(am_workers_t *ws)
{
    for (unsigned i = ws->n; i-- > 0;)
        unlock_worker(&ws->w[i]);
}

void am_workers_hold(am_workers_t *ws, unsigned i)
{
    assert(i < ws->n);
    lock_worker(&ws->w[i]);
}

void am_workers_release(am_workers_t *ws, unsigned i)
{
    assert(i < ws->n);
    unlock_worker(&ws->w[i]);
}

/* ---- the ingest path (the worker's loop) ---- */

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
    if (rc == AM_MAPPING_DROPPED) {
        s->stats.mapping_dropped++;
        return;
    }
    if (!AM_IS_REJECT(rc)) { /* a DogStatsD event or service check */
        s->stats.events[rc == AM_EVENT ? 0 : 1]++;
        return;
    }
    s->stats.rejected[rc]++;
    s->dgram_rejected++;
    am_registry_count_reject(s->registry, rc, line, len);
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
    s->dgram_rejected = 0;
    size_t len = n;
    if (truncated) {
        /* The cut last line is not a line the sender wrote: drop it (as
         * syntax) and keep the complete lines before it. */
        s->stats.truncated[transport]++;
        const char *nl = memrchr(p, '\n', n);
        s->stats.rejected[AM_REJECT_SYNTAX]++;
        am_registry_count_reject(s->registry, AM_REJECT_SYNTAX, NULL, 0);
        s->dgram_rejected = 1;
        len = nl ? (size_t)(nl - p) : 0;
    }
    am_registry_set_now(s->registry, (uint32_t)(uv_now(s->loop) / 100)); /* the TTL clock */
    size_t accepted = am_registry_ingest_datagram(s->registry, p, len, &s->sample, on_reject, s);
    s->stats.samples += accepted;
    uint32_t pid, uid;
    if (transport == AM_TRANSPORT_UNIX && s->senders.rows &&
        am_ingest_sender(s->unix_in, &pid, &uid)) {
        /* One lookup per datagram (none from the sender of the last). */
        am_sender_t *who = am_senders_get(&s->senders, pid, uid, uv_now(s->loop));
        who->datagrams++;
        who->bytes += n;
        who->lines += accepted;
        who->rejected += s->dgram_rejected;
    }
}

/* Several workers: the registry and stats are the worker's while it applies
 * a batch (at most 64 datagrams), the scrape's in between. The batch's
 * receive time stamps its gauge updates (am_registry_merge orders sets by
 * it). */
static void on_batch(void *ctx, bool begin)
{
    worker_t *w = ctx;
    if (begin) {
        lock_worker(w);
        am_registry_set_clock(w->registry, (double)uv_hrtime());
    } else {
        unlock_worker(w);
    }
}

/* Opens worker w's UDP socket; the error is logged. */
static int open_udp(am_workers_t *ws, worker_t *w, const am_workers_ingest_t *o)
{
    /* Every worker binds the same port: SO_REUSEPORT groups them. */
    unsigned flags = ws->n > 1 ? AM_INGEST_REUSEPORT : 0;
    int rc = am_ingest_open_udp(w->loop, o->statsd_host, o->statsd_port, o->receive_buffer_bytes,
                                flags, on_datagram, w, &w->udp);
    if (rc < 0) {
        am_log(AM_LOG_ERROR,
               "event=bind_failed transport=udp addr=%s port=%d worker=%u error=\"%s\"",
               o->statsd_host, o->statsd_port, w->id, strerror(-rc));
        return rc;
    }
    am_ingest_count_wakeups(w->udp, &w->stats.wakeups[AM_TRANSPORT_UDP]);
    if (w->threaded)
        am_ingest_set_batch_fn(w->udp, on_batch);
    return 0;
}

/* Why the Unix socket could not be opened (am_ingest_open_unix). */
static const char *unix_bind_error(int rc)
{
    switch (rc) {
        case -EEXIST:
            return "a file that is not a socket is in the way; not removing it";
        case -ELOOP:
            return "a symlink is at the path; not following or removing it";
        case -EADDRINUSE:
            return "another process serves this socket; not taking it over";
        default:
            return strerror(-rc);
    }
}

int am_workers_open_ingest(am_workers_t *ws, const am_workers_ingest_t *o)
{
    worker_t *w0 = &ws->w[0];
    if (o->statsd_port > 0) {
        int free_rc = ws->n > 1 ? am_ingest_udp_port_free(o->statsd_host, o->statsd_port) : 0;
        if (free_rc < 0) {
            am_log(AM_LOG_ERROR,
                   "event=bind_failed transport=udp addr=%s port=%d error=\"%s\" hint=\"another "
                   "process holds the port (joining it with SO_REUSEPORT would share its "
                   "traffic): pick --statsd-port\"",
                   o->statsd_host, o->statsd_port, strerror(-free_rc));
            return free_rc;
        }
        for (unsigned i = 0; i < ws->n; i++) {
            int rc = open_udp(ws, &ws->w[i], o);
            if (rc < 0)
                return rc;
        }
        am_log(AM_LOG_INFO,
               "event=listening transport=udp addr=%s port=%d receive_buffer=%d workers=%u "
               "coalesce_ms=%u",
               o->statsd_host, am_ingest_port(w0->udp), am_ingest_rcvbuf(w0->udp), ws->n,
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
        if (!w0->senders.rows && am_senders_init(&w0->senders, AM_SENDERS_CAP, NULL) != 0)
            return -ENOMEM;
        int rc = am_ingest_open_unix(w0->loop, o->unix_path, o->receive_buffer_bytes, o->unix_mode,
                                     on_datagram, w0, &w0->unix_in);
        if (rc < 0) {
            char path[512];
            am_log(AM_LOG_ERROR, "event=bind_failed transport=unix path=\"%s\" error=\"%s\"",
                   am_log_escape(path, sizeof(path), o->unix_path), unix_bind_error(rc));
            return rc;
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

/* ---- what the main thread reads ---- */

unsigned am_workers_count(const am_workers_t *ws)
{
    return ws->n;
}

am_registry_t *am_workers_registry(am_workers_t *ws, unsigned i)
{
    assert(i < ws->n);
    return ws->w[i].registry;
}

void am_workers_read_now(am_workers_t *ws)
{
    worker_t *w = &ws->w[0];
    if (ws->n > 1)
        return;
    if (w->udp)
        am_ingest_read_now(w->udp);
    if (w->unix_in)
        am_ingest_read_now(w->unix_in);
}

void am_workers_add_ingest(am_workers_t *ws, am_selfstats_t *st)
{
    for (unsigned i = 0; i < ws->n; i++) {
        worker_t *w = &ws->w[i];
        lock_worker(w);
        am_selfstats_add_ingest(st, &w->stats);
        ws->worker_datagrams[i] =
            w->stats.datagrams[AM_TRANSPORT_UDP] + w->stats.datagrams[AM_TRANSPORT_UNIX];
        unlock_worker(w);
    }
    if (ws->n > 1) {
        st->worker_datagrams = ws->worker_datagrams;
        st->nworkers = ws->n;
    }
}

size_t am_workers_senders(am_workers_t *ws, am_sender_t *out, size_t cap, uint64_t *evicted)
{
    worker_t *w = &ws->w[0];
    lock_worker(w);
    size_t n = am_senders_copy(&w->senders, out, cap);
    *evicted = w->senders.evicted;
    unlock_worker(w);
    return n;
}

size_t am_workers_set_members(am_workers_t *ws)
{
    /* With workers, the directory's atomic: no worker need be held. */
    return am_registry_set_member_count(ws->w[0].registry);
}

am_famdir_t *am_workers_directory(am_workers_t *ws)
{
    return ws->dir;
}

void am_workers_each(am_workers_t *ws, am_workers_each_fn fn, void *ctx)
{
    for (unsigned i = 0; i < ws->n; i++) {
        lock_worker(&ws->w[i]);
        fn(ctx, ws->w[i].registry);
        unlock_worker(&ws->w[i]);
    }
}

size_t am_workers_series_bytes(am_workers_t *ws)
{
    return am_registry_series_bytes(ws->w[0].registry); /* the directory's atomic */
}

void am_workers_counts(am_workers_t *ws, size_t *families, size_t *series)
{
    if (ws->dir) {
        *families = am_famdir_family_count(ws->dir);
        *series = am_famdir_series_count(ws->dir);
    } else {
        *families = am_registry_family_count(ws->w[0].registry);
        *series = am_registry_series_count(ws->w[0].registry);
    }
}

/* ---- the stepped merge ---- */

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

int am_workers_merge_begin(am_workers_t *ws)
{
    merge_t *m = &ws->merge;
    assert(ws->n > 1 && !m->snap);
    am_registry_t *snap = am_registry_new(NULL);
    if (!snap)
        return -ENOMEM;
    am_registry_enable_gauge_stamps(snap);
    m->snap = snap;
    m->failed = false;
    m->worker = 0;
    m->cursor = NULL;
    m->longest_ns = 0;
    am_workers_pause(ws);
    for (unsigned i = 0; i < ws->n; i++)
        am_registry_snapshot_begin(ws->w[i].registry, merge_early, m);
    am_workers_resume(ws);
    return 0;
}

/* Out of memory: closes the snapshots still open, frees the copy. */
static void merge_abort(am_workers_t *ws)
{
    merge_t *m = &ws->merge;
    for (unsigned i = m->worker; i < ws->n; i++) {
        lock_worker(&ws->w[i]);
        am_registry_snapshot_end(ws->w[i].registry);
        unlock_worker(&ws->w[i]);
    }
    am_registry_free(m->snap);
    m->snap = NULL;
}

int am_workers_merge_step(am_workers_t *ws, uint64_t budget_ns)
{
    merge_t *m = &ws->merge;
    assert(m->snap && m->worker < ws->n);
    worker_t *w = &ws->w[m->worker];
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
    if (rc < 0) {
        merge_abort(ws);
        return rc;
    }
    if (rc == 0)
        return 0;
    /* This worker is done: the next one, from its first family. */
    return ++m->worker < ws->n ? 0 : AM_WORKERS_MERGED;
}

/* ---- TTL ---- */

bool am_workers_has_ttl(am_workers_t *ws)
{
    lock_worker(&ws->w[0]);
    bool has = am_registry_has_ttl(ws->w[0].registry);
    unlock_worker(&ws->w[0]);
    return has;
}

/* The sweep of one worker's registry met series s of f, stale there: keep
 * it when another worker's copy is fresh, else expire those copies too
 * (every worker is held). */
static bool others_fresh(void *ctx, const am_family_t *f, const am_series_t *s)
{
    am_workers_t *ws = ctx;
    for (unsigned i = 0; i < ws->n; i++)
        if (i != ws->sweep.worker && am_registry_copy_fresh(ws->w[i].registry, f, s, ws->sweep.now))
            return true;
    for (unsigned i = 0; i < ws->n; i++)
        if (i != ws->sweep.worker)
            am_registry_expire_copy(ws->w[i].registry, f, s);
    return false;
}

int am_workers_expire_step(am_workers_t *ws, uint32_t now_ds, size_t budget, size_t *expired)
{
    if (ws->merge.snap)
        return -EBUSY; /* a scrape's merge holds cursors into the registries */
    sweep_t *sw = &ws->sweep;
    sw->now = now_ds;
    sw->cursor.others = ws->n > 1 ? others_fresh : NULL;
    sw->cursor.others_ctx = ws;
    am_workers_pause(ws);
    bool done =
        am_registry_expire_step(ws->w[sw->worker].registry, &sw->cursor, now_ds, budget, expired);
    am_workers_resume(ws);
    if (!done)
        return 0;
    memset(&sw->cursor, 0, sizeof(sw->cursor));
    if (++sw->worker < ws->n)
        return 0;
    sw->worker = 0;
    return AM_WORKERS_SWEPT;
}

bool am_workers_merging(const am_workers_t *ws)
{
    return ws->merge.snap != NULL;
}

uint64_t am_workers_merge_longest_ns(const am_workers_t *ws)
{
    return ws->merge.longest_ns;
}

am_registry_t *am_workers_merge_take(am_workers_t *ws)
{
    merge_t *m = &ws->merge;
    assert(m->snap && m->worker == ws->n);
    am_registry_t *snap = m->snap;
    m->snap = NULL;
    return snap;
}

/* ---- lifecycle ---- */

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

/* Sets up worker i: its registry (sharing the directory when there are
 * several) and, for a threaded worker, its mutex, loop and stop handle. 0,
 * or a negative errno with what was set up left for free_worker. */
static int init_worker(am_workers_t *ws, unsigned i, uv_loop_t *main_loop)
{
    worker_t *w = &ws->w[i];
    w->id = i;
    w->threaded = ws->n > 1;
    w->loop = main_loop;
    w->registry = am_registry_new(NULL);
    if (!w->registry)
        return -ENOMEM;
    if (ws->dir) {
        am_registry_use_directory(w->registry, ws->dir);
        am_registry_enable_gauge_stamps(w->registry);
    }
    int rc = am_catalog_install(w->registry);
    if (rc != 0)
        return rc;
    if (!w->threaded)
        return 0;
    /* threaded implies mutex: initialised before anything can fail below */
    rc = pthread_mutex_init(&w->mu, NULL);
    if (rc != 0) {
        w->threaded = false;
        return -rc;
    }
    rc = uv_loop_init(&w->own_loop);
    if (rc != 0)
        return rc;
    w->own_loop_ready = true;
    w->loop = &w->own_loop;
    rc = uv_async_init(&w->own_loop, &w->stop_async, on_worker_stop);
    if (rc != 0)
        return rc;
    w->stop_async.data = w;
    w->async_ready = true;
    return 0;
}

int am_workers_new(uv_loop_t *main_loop, unsigned n, am_workers_t **out)
{
    am_workers_t *ws = calloc(1, sizeof(*ws));
    if (!ws)
        return -ENOMEM;
    ws->n = n > 1 ? n : 1;
    ws->w = calloc(ws->n, sizeof(*ws->w));
    ws->worker_datagrams = calloc(ws->n, sizeof(*ws->worker_datagrams));
    int rc = ws->w && ws->worker_datagrams ? 0 : -ENOMEM;
    if (rc == 0 && ws->n > 1) {
        ws->dir = am_famdir_new();
        rc = ws->dir ? 0 : -ENOMEM;
    }
    for (unsigned i = 0; rc == 0 && i < ws->n; i++)
        rc = init_worker(ws, i, main_loop);
    if (rc == 0 && ws->n > 1) {
        rc = -pthread_mutex_init(&ws->merge.mu, NULL);
        ws->merge.mu_ready = rc == 0;
    }
    if (rc != 0) {
        am_workers_free(ws);
        return rc;
    }
    *out = ws;
    return 0;
}

int am_workers_start(am_workers_t *ws)
{
    if (ws->n == 1)
        return 0;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = 0;
    for (unsigned i = 0; i < ws->n && rc == 0; i++) {
        worker_t *w = &ws->w[i];
        rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc == 0)
            w->thread_started = true;
        else
            am_log(AM_LOG_ERROR, "event=startup_failed worker=%u error=\"%s\"", i, strerror(rc));
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

void am_workers_stop(am_workers_t *ws)
{
    assert(!ws->stopped);
    ws->stopped = true;
    for (unsigned i = 0; i < ws->n; i++) {
        worker_t *w = &ws->w[i];
        if (w->thread_started)
            uv_async_send(&w->stop_async); /* joined after the main loop ends */
        else if (!w->threaded)
            close_worker_handles(w);
        /* a thread never started: its handles are closed at teardown */
    }
}

void am_workers_join(am_workers_t *ws)
{
    for (unsigned i = 0; i < ws->n; i++) {
        worker_t *w = &ws->w[i];
        if (w->thread_started) {
            pthread_join(w->thread, NULL);
            w->thread_started = false;
        }
    }
}

/* After the main loop has ended: closes the handles of a thread that never
 * ran (the thread itself was joined), then frees. */
static void free_worker(worker_t *w)
{
    if (w->own_loop_ready) {
        close_worker_handles(w);
        uv_run(&w->own_loop, UV_RUN_DEFAULT);
        if (uv_loop_close(&w->own_loop) != 0)
            am_log(AM_LOG_WARN, "event=loop_not_empty_at_exit worker=%u", w->id);
    }
    if (w->threaded)
        pthread_mutex_destroy(&w->mu);
    am_registry_free(w->registry);
    am_senders_free(&w->senders);
}

void am_workers_free(am_workers_t *ws)
{
    if (!ws)
        return;
    am_workers_join(ws);
    for (unsigned i = 0; ws->w && i < ws->n; i++)
        free_worker(&ws->w[i]);
    am_famdir_free(ws->dir); /* after every registry that used it */
    am_registry_free(ws->merge.snap);
    if (ws->merge.mu_ready)
        pthread_mutex_destroy(&ws->merge.mu);
    free(ws->w);
    free(ws->worker_datagrams);
    free(ws);
}
