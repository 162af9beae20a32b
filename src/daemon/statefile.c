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
#include "log.h"
#include "state.h"

#define MAX_STATE_BYTES (1ULL << 34) /* 16 GiB: far past any registry's limits */

/* ---- reading ---- */

static int read_all(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block */
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > MAX_STATE_BYTES) {
        int e = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
        snprintf(err, errlen, "%s: %s", path,
                 e == EFBIG ? "larger than 16 GiB" : "not a regular file");
        close(fd);
        return -e;
    }
    char *buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            snprintf(err, errlen, "%s: read error: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        got += (size_t)n;
    }
    close(fd);
    *out = buf;
    *len = got;
    return 0;
}

int am_statefile_load(const char *path, am_registry_t *r, bool discard_bad, char *err,
                      size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    int rc = read_all(path, &data, &len, err, errlen);
    if (rc == -ENOENT) {
        am_log(AM_LOG_INFO, "event=state_absent path=%s (a first start: nothing restored)", path);
        return 0;
    }
    if (rc < 0) {
        if (!err[0])
            snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
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
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
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

/* Every worker's series into one new registry (the caller owns it), every
 * worker held meanwhile: one consistent copy. NULL when out of memory. */
static am_registry_t *copy_all(am_workers_t *ws, bool hold)
{
    am_registry_t *copy = am_registry_new(NULL);
    if (!copy)
        return NULL;
    am_registry_enable_gauge_stamps(copy);
    if (hold)
        am_workers_pause(ws);
    int rc = 0;
    for (unsigned i = 0; i < am_workers_count(ws) && rc == 0; i++)
        rc = am_registry_merge(copy, am_workers_registry(ws, i));
    if (hold)
        am_workers_resume(ws);
    if (rc != 0) {
        am_registry_free(copy);
        return NULL;
    }
    return copy;
}

/* Encodes copy and writes it; the reason of a failure into err. */
static int encode_and_write(const am_registry_t *copy, const char *path, char *err,
                            size_t errlen)
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

static void on_tick(uv_timer_t *t)
{
    am_statefile_t *sf = t->data;
    if (sf->busy)
        return; /* the disk is slower than the interval: skip this one */
    uint64_t t0 = uv_hrtime();
    sf->copy = copy_all(sf->workers, true);
    sf->last_copy_seconds = (double)(uv_hrtime() - t0) / 1e9;
    if (!sf->copy) {
        sf->writes_failed++;
        am_log(AM_LOG_ERROR, "event=state_write_failed error=\"out of memory copying\"");
        return;
    }
    sf->busy = true;
    sf->work.data = sf;
    int rc = uv_queue_work(sf->loop, &sf->work, on_work, after_work);
    if (rc != 0) {
        after_work(&sf->work, rc);
    }
}

int am_statefile_start(uv_loop_t *loop, am_workers_t *ws, const char *path, unsigned interval_s,
                       am_statefile_t *sf)
{
    *sf = (am_statefile_t){.loop = loop, .path = path, .workers = ws};
    int rc = uv_timer_init(loop, &sf->timer);
    if (rc != 0)
        return rc;
    sf->timer.data = sf;
    uint64_t ms = (uint64_t)interval_s * 1000;
    return uv_timer_start(&sf->timer, on_tick, ms, ms);
}

void am_statefile_close(am_statefile_t *sf)
{
    uv_timer_stop(&sf->timer);
    uv_close((uv_handle_t *)&sf->timer, NULL);
}

int am_statefile_write_now(am_workers_t *ws, const char *path)
{
    char err[256];
    am_registry_t *copy = copy_all(ws, false);
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
