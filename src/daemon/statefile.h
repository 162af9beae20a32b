/* statefile: the state file on disk (--state-file): read once at start,
 * written every --state-interval seconds and at a clean stop.
 *
 * A write never leaves a torn file: the bytes go to a temporary file in
 * the same directory, which is fsync'd, renamed over the path, and the
 * directory fsync'd; a crash at any moment leaves the old file or the new
 * one. The periodic write copies the workers' series on the main loop in
 * steps of about 1 ms (one worker held during a step, the others go on
 * ingesting; a family may be copied over several steps), then encodes and writes the copy on a libuv
 * worker thread, so the loop never waits on the disk. A series is copied as
 * it is when its step comes: every series is exact at some moment of the
 * copy, and the final write at a stop is one moment for all. No TTL sweep
 * runs while a copy is in progress (it would unlink series under the
 * cursor): am_statefile_copying tells the sweep to wait.
 *
 * Who calls: server.c, on the main thread. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "workers.h"

/* Reads path and restores it into r. A missing file is a first start (0,
 * nothing restored). Returns 0, or a negative errno with a one-line reason
 * naming the file in err: the file cannot be read (not a regular file, no
 * permission), or its contents are refused (-EINVAL corrupt, -EPROTO
 * another format version). With discard_bad, a file whose contents are
 * refused is renamed aside (path.bad-<unix time>, logged as a warning) and
 * 0 is returned with r empty. */
int am_statefile_load(const char *path, am_registry_t *r, bool discard_bad, char *err,
                      size_t errlen) __attribute__((warn_unused_result));

/* Writes len bytes to path atomically (see above); blocking. 0, or a
 * negative errno with a reason in err. */
int am_statefile_write(const char *path, const void *data, size_t len, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The periodic writer. The struct is the caller's and holds libuv handles:
 * close it with am_statefile_close and keep it until the loop has run. */
typedef struct am_statefile {
    uv_loop_t *loop;
    uv_timer_t timer;
    uv_work_t work;
    bool busy;                 /* a write is on a thread */
    const char *path;          /* borrowed: the server's options */
    am_workers_t *workers;     /* borrowed: outlives the writer */
    am_registry_t *copy;       /* owned while busy: being copied, then encoded */
    bool copying;              /* busy, the copy not complete yet */
    unsigned copy_worker;      /* whose families are being copied */
    const am_family_t *cursor; /* borrowed: that worker's next family */
    const am_series_t *series; /* borrowed: the cursor family's next series */
    uint64_t copy_longest_ns;  /* the longest step of the copy in progress */
    int result;                /* of the last write: 0 or a negative errno */
    char err[256];             /* its reason */
    uint64_t interval_ms;
    uint64_t writes_ok, writes_failed;
    double last_longest_pause; /* seconds: the longest copy step of the last write */
} am_statefile_t;

/* Starts writing every interval_s seconds. 0 or a libuv error. */
int am_statefile_start(uv_loop_t *loop, am_workers_t *ws, const char *path, unsigned interval_s,
                       am_statefile_t *sf) __attribute__((warn_unused_result));
/* Stops the timer and closes it (a write on a thread finishes on its own;
 * the loop runs until it has). */
void am_statefile_close(am_statefile_t *sf);
/* Before a reload changes families: a copy in progress is finished at once
 * (its cursor points into a worker's family list). */
void am_statefile_finish_copy(am_statefile_t *sf);
/* Whether a copy is in progress (the TTL sweep waits meanwhile). */
bool am_statefile_copying(const am_statefile_t *sf);
/* The final write, after the workers stopped: copies, encodes and writes
 * at once, blocking. 0 or a negative errno (logged). */
int am_statefile_write_now(am_workers_t *ws, const char *path);
