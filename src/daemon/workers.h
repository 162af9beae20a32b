/* workers: the ingest workers of the metrics server (--workers N) and the
 * scrape's merge of their registries.
 *
 * What: each worker owns a registry, its ingest sockets (a UDP socket per
 * worker, SO_REUSEPORT when there are several; the Unix socket on worker
 * 0), the ingest counters and the per-line work (apply, count, log
 * rejects). With several workers each one also owns a thread, a loop and a
 * mutex, and the registries share one family directory; a scrape then
 * copies them into one snapshot a few families per step
 * (am_workers_merge_*), one worker held at a time.
 *
 * Who calls: server.c, on the main thread (the thread that runs the
 * server's loop), for every function below. A worker's thread runs only
 * its own loop: the ingest callbacks and, during a merge, merge_early.
 *
 * Threads and locks. One worker (the default): it runs on the server's
 * loop, nothing is locked and nothing is merged (the scrape reads
 * am_workers_registry(ws, 0) directly). Several: a worker holds its mutex
 * while it applies one recvmmsg batch (at most 64 datagrams); the main
 * thread takes it to read or change that worker's registry or counters
 * (never while holding the family directory's lock). Lock order: worker,
 * then merge. src/README.md ("Threads") tells the design, tests/bench/
 * README.md the measurements. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "registry.h"
#include "selfstats.h"
#include "senders.h"

typedef struct am_workers am_workers_t;

/* Sets up n workers (0 counts as 1; the command line caps n): registries with
 * the built-in catalog, and for several workers the family directory,
 * mutexes, loops and stop handles (threads start in am_workers_start).
 * main_loop is borrowed until am_workers_free: the loop of the one worker,
 * and where its handles are closed (it is only stored here, it need not be
 * initialised yet). *out is owned by the caller (am_workers_free).
 * Returns 0; -ENOMEM; or the libuv/pthread error that stopped it (nothing
 * is left behind then). */
int am_workers_new(uv_loop_t *main_loop, unsigned n, am_workers_t **out)
    __attribute__((warn_unused_result));

unsigned am_workers_count(const am_workers_t *ws);

/* Worker i's registry (i < am_workers_count), owned by the workers. One
 * worker: borrowed until am_workers_free, used on the main loop. Several:
 * only while paused (am_workers_pause) or it is held (am_workers_hold), or
 * before am_workers_start. */
am_registry_t *am_workers_registry(am_workers_t *ws, unsigned i);

/* Every worker between two batches, until am_workers_resume (one worker:
 * nothing to do). For changes to every registry at one moment (a config). */
void am_workers_pause(am_workers_t *ws);
void am_workers_resume(am_workers_t *ws);
/* Worker i alone between two batches, until am_workers_release (the
 * others go on ingesting): for work that reads one worker at a time. */
void am_workers_hold(am_workers_t *ws, unsigned i);
void am_workers_release(am_workers_t *ws, unsigned i);

/* Where ingest listens; the strings are borrowed for the call (the Unix
 * path is copied by ingest). */
typedef struct am_workers_ingest {
    const char *statsd_host;
    int statsd_port;          /* 0: UDP off */
    const char *unix_path;    /* NULL: off */
    unsigned unix_mode;       /* the socket file's mode, 0..0777 */
    int receive_buffer_bytes; /* 0: the kernel's default */
} am_workers_ingest_t;

/* Opens the ingest sockets on the workers' loops (UDP on every worker,
 * Unix on worker 0) and logs where it listens (bind failures too). With
 * several workers the UDP port is first checked free (a process of the
 * same user holding it with SO_REUSEPORT would otherwise share the
 * traffic): -EADDRINUSE. 0, or the negative errno of the socket that could
 * not be opened (the sockets already open stay, for am_workers_stop).
 * Before am_workers_start. */
int am_workers_open_ingest(am_workers_t *ws, const am_workers_ingest_t *in)
    __attribute__((warn_unused_result));

/* Several workers: starts their threads, with every signal blocked in
 * them (the main loop handles signals). 0, or the negative errno of the
 * pthread_create that failed (logged; the threads started run until
 * am_workers_stop). One worker: 0, nothing to start. */
int am_workers_start(am_workers_t *ws) __attribute__((warn_unused_result));

/* Stopping: closes every worker's handles (a threaded worker closes its
 * own, asked through its stop handle; its thread then ends). Once. */
void am_workers_stop(am_workers_t *ws);

/* After the main loop has ended: joins the threads (am_workers_stop must
 * have run). am_workers_free joins too; this lets the caller join before
 * it closes its own loop. */
void am_workers_join(am_workers_t *ws);

/* Joins what is still running, closes the handles of threads that never
 * ran, frees the registries, the directory, a merge in progress and ws.
 * NULL is ignored. */
void am_workers_free(am_workers_t *ws);

/* One worker: reads what its sockets hold now, so that a client that sent
 * and then asks sees what it sent (UDP under load is read every
 * millisecond, not at every arrival). Several: nothing (they read on their
 * own threads). */
void am_workers_read_now(am_workers_t *ws);

/* Adds every worker's ingest counters into st, each worker held in turn.
 * Several workers: also sets st->worker_datagrams (borrowed: owned by ws,
 * valid until the next call) and st->nworkers. */
void am_workers_add_ingest(am_workers_t *ws, am_selfstats_t *st);

/* Copies up to cap rows of the Unix socket's sender table (worker 0's,
 * held for the copy; see senders.h) into out (the caller's), in no order;
 * how many, and *evicted: senders dropped to make room. 0 rows without a
 * Unix socket. */
size_t am_workers_senders(am_workers_t *ws, am_sender_t *out, size_t cap, uint64_t *evicted);

/* Set members held over every worker (no worker held: the directory's
 * count is atomic). */
size_t am_workers_set_members(am_workers_t *ws);
/* Series bytes held against limits.max_series_bytes, over every worker. */
size_t am_workers_series_bytes(am_workers_t *ws);

/* Calls fn(ctx, r) with every worker's registry, each worker held in turn
 * (r borrowed for the call: read it, change nothing). */
typedef void (*am_workers_each_fn)(void *ctx, const am_registry_t *r);
void am_workers_each(am_workers_t *ws, am_workers_each_fn fn, void *ctx);

/* Several workers: the family directory they share (borrowed until
 * am_workers_free; its own locks guard it); one worker: NULL. */
am_famdir_t *am_workers_directory(am_workers_t *ws);

/* Families (with several workers: distinct over them, from the directory)
 * and series (summed over workers: one series fed by two counts twice). */
void am_workers_counts(am_workers_t *ws, size_t *families, size_t *series);

/* The stepped merge (several workers only). am_workers_merge_begin opens a
 * snapshot on every worker at one moment (all held briefly): 0, or -ENOMEM
 * (nothing open). One merge at a time. */
int am_workers_merge_begin(am_workers_t *ws) __attribute__((warn_unused_result));

enum {
    /* am_workers_merge_step: every worker is merged; take the copy. */
    AM_WORKERS_MERGED = 1,
};

/* One step: the current worker's next families for up to budget_ns (at
 * least one), that worker alone held. 0 when more remain,
 * AM_WORKERS_MERGED, or -ENOMEM (the merge is abandoned, its copy freed).
 * Only while am_workers_merging. */
int am_workers_merge_step(am_workers_t *ws, uint64_t budget_ns) __attribute__((warn_unused_result));

/* A merge is open (begun, neither taken nor abandoned). */
bool am_workers_merging(const am_workers_t *ws);

/* ---- series TTL (main thread) ---- */

/* Whether any family can expire (the config's TTL or a family's own). */
bool am_workers_has_ttl(am_workers_t *ws);

enum {
    /* am_workers_expire_step: the sweep went through every registry. */
    AM_WORKERS_SWEPT = 1,
};

/* One step of the TTL sweep at time now_ds (deciseconds, uv_now / 100):
 * at most budget series of one worker's registry examined, every worker
 * held meanwhile; with several workers a series expires only when no
 * worker updated it for its TTL. Adds the series expired to *expired.
 * Returns 0 (more to sweep), AM_WORKERS_SWEPT, or -EBUSY while a scrape's
 * merge is in progress (nothing done: try again later). */
int am_workers_expire_step(am_workers_t *ws, uint32_t now_ds, size_t budget, size_t *expired)
    __attribute__((warn_unused_result));

/* The longest a worker was held by the current (or last) merge, in ns. */
uint64_t am_workers_merge_longest_ns(const am_workers_t *ws);

/* After AM_WORKERS_MERGED: the merged copy, owned by the caller from now on
 * (am_registry_free, or hand it to am_scrape_begin as owned). The merge is
 * then closed. */
am_registry_t *am_workers_merge_take(am_workers_t *ws) __attribute__((warn_unused_result));
