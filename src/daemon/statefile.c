#include "statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "file.h"
#include "log.h"
#include "state.h"

#define MAX_STATE_BYTES ((size_t)1 << 34) /* 16 GiB: far past any registry's limits */
#define STEP_NS         1000000           /* a copy step's share of a loop turn, 1 ms */
#define SERIES_PER_PART 256               /* series copied between looks at the clock */

/* ---- reading ---- */

int am_statefile_load(const char *path, am_registry_t *r, bool discard_bad, char *err,
                      size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    int rc = am_file_read(path, MAX_STATE_BYTES, &data, &len, err, errlen);
    if (rc == -ENOENT) {
        err[0] = '\0';
        am_log(AM_LOG_INFO, "event=state_absent path=%s (a first start: nothing restored)", path);
        return 0;
    }
    if (rc < 0)
        return rc;
    char why[200];
    am_state_counts_t c;
    rc = am_state_restore(r, data, len, &c, why, sizeof(why));
    free(data);
    if (rc == 0) {
        am_log(AM_LOG_INFO,
               "event=state_restored path=%s families=%zu series=%zu restored=%zu skipped=%zu",
               path, c.families, c.series, c.restored, c.skipped);
        if (c.skipped)
            am_log(AM_LOG_WARN,
                   "event=state_series_skipped path=%s count=%zu reason=\"the config no longer "
                   "admits them (type or labels changed, a limit, auto_create off)\"",
                   path, c.skipped);
        return 0;
    }
    snprintf(err, errlen, "%s: %s", path, why);
    if (rc == -ENOMEM || !discard_bad)
        return rc;
    char aside[4096];
    snprintf(aside, sizeof(aside), "%s.bad-%lld", path, (long long)time(NULL));
    if (rename(path, aside) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s; cannot rename it aside: %s", path, why, strerror(e));
        return -e;
    }
    am_log(AM_LOG_WARN, "event=state_discarded path=%s moved_to=%s reason=\"%s\"", path, aside,
           why);
    return 0;
}

/* ---- writing ---- */

static int write_fully(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int am_statefile_write(const char *path, const void *data, size_t len, char *err, size_t errlen)
{
    char tmp[4096], dirbuf[4096];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -ENAMETOOLONG;
    }
    /* O_NONBLOCK: a FIFO left at this name fails (ENXIO) instead of waiting
     * for a reader; a regular file is unaffected. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(e));
        return -e;
    }
    int rc = write_fully(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot write: %s", path, strerror(-rc));
        unlink(tmp);
        return rc;
    }
    /* The rename is durable once the directory is. */
    snprintf(dirbuf, sizeof(dirbuf), "%s", path);
    int dfd = open(dirname(dirbuf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0)
            rc = -errno;
        close(dfd);
    }
    if (rc != 0)
        snprintf(err, errlen, "%s: cannot sync its directory: %s", path, strerror(-rc));
    return rc;
}

/* Every worker's series into one new registry (the caller owns it), at
 * once: the workers have stopped. NULL when out of memory. */
static am_registry_t *copy_all(am_workers_t *ws)
{
    am_registry_t *copy = am_registry_new(NULL);
    if (!copy)
        return NULL;
    am_registry_enable_gauge_stamps(copy);
    int rc = 0;
    for (unsigned i = 0; i < am_workers_count(ws) && rc == 0; i++)
        rc = am_registry_merge(copy, am_workers_registry(ws, i));
    if (rc != 0) {
        am_registry_free(copy);
        return NULL;
    }
    return copy;
}

/* Encodes copy and writes it; the reason of a failure into err. */
static int encode_and_write(const am_registry_t *copy, const char *path, char *err, size_t errlen)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    int rc = am_state_encode(copy, &b);
    if (rc != 0)
        snprintf(err, errlen, "%s: out of memory encoding the state", path);
    else
        rc = am_statefile_write(path, b.data, b.len, err, errlen);
    am_buf_free(&b);
    return rc;
}

static void on_work(uv_work_t *w)
{
    am_statefile_t *sf = w->data;
    sf->result = encode_and_write(sf->copy, sf->path, sf->err, sizeof(sf->err));
}

static void after_work(uv_work_t *w, int status)
{
    am_statefile_t *sf = w->data;
    am_registry_free(sf->copy);
    sf->copy = NULL;
    sf->busy = false;
    if (status == 0 && sf->result == 0) {
        sf->writes_ok++;
        return;
    }
    sf->writes_failed++;
    am_log(AM_LOG_ERROR, "event=state_write_failed error=\"%s\"",
           status == 0 ? sf->err : uv_strerror(status));
}

static void copy_failed(am_statefile_t *sf)
{
    am_registry_free(sf->copy);
    sf->copy = NULL;
    sf->busy = sf->copying = false;
    sf->writes_failed++;
    am_log(AM_LOG_ERROR, "event=state_write_failed error=\"out of memory copying\"");
}

/* Copies families until budget_ns has passed (at least one family), every
 * worker held. True when the copy is complete. */
static bool copy_step(am_statefile_t *sf, uint64_t budget_ns, int *rc)
{
    unsigned n = am_workers_count(sf->workers);
    if (sf->copy_worker >= n)
        return true;
    /* One worker held per step, the others ingesting: the file needs each
     * worker's series, not one instant of all of them (what a worker adds
     * after its copy goes into the next write), and a step then never
     * waits for another worker's batch. */
    unsigned w = sf->copy_worker;
    am_workers_hold(sf->workers, w);
    uint64_t t0 = uv_hrtime();
    const am_registry_t *src = am_workers_registry(sf->workers, w);
    const am_family_t *f = sf->cursor ? sf->cursor : am_registry_first(src);
    while (f && *rc == 0) {
        /* SERIES_PER_PART series, then a look at the clock */
        int part = am_registry_merge_family_part(sf->copy, f, &sf->series, SERIES_PER_PART);
        if (part < 0)
            *rc = part;
        else if (part == 1)
            f = am_family_next(f);
        if (uv_hrtime() - t0 >= budget_ns)
            break;
    }
    sf->cursor = f;
    if (!f && *rc == 0) {
        sf->copy_worker++;
        sf->cursor = NULL;
    }
    uint64_t held = uv_hrtime() - t0;
    am_workers_release(sf->workers, w);
    if (held > sf->copy_longest_ns)
        sf->copy_longest_ns = held;
    return sf->copy_worker >= n;
}

/* The copy is complete: encode and write it on a thread. */
static void queue_write(am_statefile_t *sf)
{
    sf->copying = false;
    sf->last_longest_pause = (double)sf->copy_longest_ns / 1e9;
    sf->work.data = sf;
    int rc = uv_queue_work(sf->loop, &sf->work, on_work, after_work);
    if (rc != 0)
        after_work(&sf->work, rc);
}

static void on_tick(uv_timer_t *t);

static void on_copy_step(uv_timer_t *t)
{
    am_statefile_t *sf = t->data;
    int rc = 0;
    bool done = copy_step(sf, STEP_NS, &rc);
    if (rc != 0)
        copy_failed(sf);
    else if (done)
        queue_write(sf);
    else
        uv_timer_start(t, on_copy_step, 0, 0); /* the next loop turn, after I/O */
    if (!sf->copying)
        uv_timer_start(t, on_tick, sf->interval_ms, 0);
}

static void on_tick(uv_timer_t *t)
{
    am_statefile_t *sf = t->data;
    if (sf->busy) { /* the disk is slower than the interval: skip this one */
        uv_timer_start(t, on_tick, sf->interval_ms, 0);
        return;
    }
    sf->copy = am_registry_new(NULL);
    if (!sf->copy) {
        sf->writes_failed++;
        uv_timer_start(t, on_tick, sf->interval_ms, 0);
        return;
    }
    am_registry_enable_gauge_stamps(sf->copy);
    sf->busy = sf->copying = true;
    sf->copy_worker = 0;
    sf->cursor = NULL;
    sf->series = NULL;
    sf->copy_longest_ns = 0;
    on_copy_step(t);
}

bool am_statefile_copying(const am_statefile_t *sf)
{
    return sf->copying;
}

void am_statefile_finish_copy(am_statefile_t *sf)
{
    if (!sf->copying)
        return;
    int rc = 0;
    while (!copy_step(sf, UINT64_MAX, &rc) && rc == 0)
        ;
    if (rc != 0)
        copy_failed(sf);
    else
        queue_write(sf);
    uv_timer_start(&sf->timer, on_tick, sf->interval_ms, 0);
}

int am_statefile_start(uv_loop_t *loop, am_workers_t *ws, const char *path, unsigned interval_s,
                       am_statefile_t *sf)
{
    *sf = (am_statefile_t){.loop = loop, .path = path, .workers = ws};
    int rc = uv_timer_init(loop, &sf->timer);
    if (rc != 0)
        return rc;
    sf->timer.data = sf;
    sf->interval_ms = (uint64_t)interval_s * 1000;
    return uv_timer_start(&sf->timer, on_tick, sf->interval_ms, 0);
}

void am_statefile_close(am_statefile_t *sf)
{
    uv_timer_stop(&sf->timer);
    uv_close((uv_handle_t *)&sf->timer, NULL);
    if (sf->copying) { /* the final write at the stop supersedes it */
        am_registry_free(sf->copy);
        sf->copy = NULL;
        sf->busy = sf->copying = false;
    }
}

int am_statefile_write_now(am_workers_t *ws, const char *path)
{
    char err[256];
    am_registry_t *copy = copy_all(ws);
    int rc = copy ? encode_and_write(copy, path, err, sizeof(err)) : -ENOMEM;
    if (!copy)
        snprintf(err, sizeof(err), "%s: out of memory copying the state", path);
    am_registry_free(copy);
    if (rc != 0)
        am_log(AM_LOG_ERROR, "event=state_write_failed error=\"%s\"", err);
    else
        am_log(AM_LOG_INFO, "event=state_written path=%s", path);
    return rc;
}
