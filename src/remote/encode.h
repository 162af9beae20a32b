/* encode: a /metrics text body (0.0.4, as http/expose.c and
 * http/selfstats.c write it) into Prometheus remote write 1.0 requests:
 * WriteRequest protobuf (proto/remote.proto), snappy block compressed, at
 * most AM_REMOTE_MAX_SAMPLES samples each.
 *
 * Reading the exposition the daemon already writes keeps one truth for
 * sample names and label values: `x_total` counters, `_bucket{le}`, `_sum`,
 * `_count`, the self-metrics and process_* series, exactly as a scrape sees
 * them. Each series becomes one time series: `__name__` and its labels
 * (empty values dropped, as a scrape drops them), the external labels a
 * series lacks added, all sorted by name, and one sample at the push's
 * timestamp.
 *
 * Stale markers: the encoder keeps the previous body and an index of its
 * series. A series of the previous push that the current one lacks (it
 * expired, or its family went away on reload) gets a sample with the
 * StaleNaN bit pattern (AM_REMOTE_STALE_NAN) at the current timestamp;
 * am_remote_enc_stale_all marks every series of the last push (shutdown).
 * Memory: the last body plus 16 bytes a series.
 *
 * Work is done in steps (am_remote_enc_step) bounded by a time budget, so
 * that the loop that calls it keeps receiving; no step blocks. A push
 * counts the body's lines first (its index is sized once: no rehash of a
 * million series in one go), parses, marks the series gone, then gives
 * the previous push's body and index back to the system in 2 MB slices
 * (unmapping 100 MB at once takes 10 ms). Nothing walks every series in
 * one step.
 *
 * Who calls: remote/push.c and server.c's push, on the main loop; the tests.
 * Not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Samples per request: what Prometheus' own remote write sends at most
 * (max_samples_per_send: 2000), which every receiver accepts. */
#define AM_REMOTE_MAX_SAMPLES 2000

/* The stale marker, a NaN that Prometheus reads as "series ended". */
#define AM_REMOTE_STALE_NAN 0x7ff0000000000002ULL

typedef struct am_remote_enc am_remote_enc_t;

/* One finished request: bytes (snappy-compressed WriteRequest, len bytes,
 * malloc'ed) are stolen by the callee; nsamples samples inside. */
typedef void (*am_remote_emit_fn)(void *ctx, char *bytes, size_t len, size_t nsamples);

/* A new encoder with no external labels and no previous push. NULL when
 * out of memory. Owned by the caller (am_remote_enc_free). */
am_remote_enc_t *am_remote_enc_new(void) __attribute__((warn_unused_result));
void am_remote_enc_free(am_remote_enc_t *e);

/* Sets the external labels: n (name, value) pairs, copied. Names must be
 * valid label names, distinct, not starting with "__" (config.c checks);
 * empty values are ignored. 0 or -ENOMEM (the old ones kept). */
int am_remote_enc_set_external(am_remote_enc_t *e, const char *const *pairs, size_t n)
    __attribute__((warn_unused_result));

/* Begins encoding body (its bytes stolen: body is left empty) as the
 * samples at ts_ms (milliseconds since the epoch; at least 1 ms after the
 * last push). 0, or -EBUSY (the previous body is not done: step it to the
 * end first), -ENOMEM, -EFBIG (over 4 GiB); body is freed on error.
 * On error nothing is encoded and the previous push's series are kept. */
int am_remote_enc_begin(am_remote_enc_t *e, am_buf_t *body, int64_t ts_ms)
    __attribute__((warn_unused_result));

/* Encodes for about budget_ns, handing each finished request to
 * emit(ctx, ...); always makes progress. Packing and compressing a full
 * request (about 1 ms) is the largest unit: it opens a step, or follows
 * less than half the budget. true when the body is done and its memory
 * given back (then the next am_remote_enc_begin may come), also when idle. */
bool am_remote_enc_step(am_remote_enc_t *e, uint64_t budget_ns, am_remote_emit_fn emit, void *ctx);

/* Whether a body is being encoded. */
bool am_remote_enc_busy(const am_remote_enc_t *e);

/* Finishes the body in progress, then emits a stale marker at ts_ms (at
 * least 1 ms after the last push) for every series of the last push and
 * forgets them: the shutdown push, or external labels about to change. */
void am_remote_enc_stale_all(am_remote_enc_t *e, int64_t ts_ms, am_remote_emit_fn emit, void *ctx);

/* Series in the last completed push; the longest step, in ns, since the
 * last call (then reset); samples refused from the body (unparsable lines,
 * out of memory: 0 for a body the daemon wrote). */
size_t am_remote_enc_series(const am_remote_enc_t *e);
uint64_t am_remote_enc_take_longest_ns(am_remote_enc_t *e);
uint64_t am_remote_enc_bad_lines(const am_remote_enc_t *e);
