/* queue: the requests waiting to be sent, bounded in bytes, and the
 * backoff between attempts. No I/O: push.c drives it.
 *
 * The queue is a FIFO of compressed requests. Adding one that would pass
 * max_bytes drops the oldest requests that are not being sent (their
 * samples counted as dropped) until it fits; a request larger than the
 * whole bound is dropped itself. A request being sent (the head, marked
 * busy) is never dropped under it, so the queue may pass its bound by that
 * one request.
 *
 * Backoff: 30 ms after the first failure, doubling to at most 5 s (as
 * Prometheus' remote write does); each wait is drawn in [3/4, 1] of the
 * step, so that many senders do not retry in step. A success resets it.
 *
 * Who calls: push.c on the main loop; the tests. Not thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AM_RWQ_BACKOFF_MIN_MS 30
#define AM_RWQ_BACKOFF_MAX_MS 5000

typedef struct am_rwq_item {
    struct am_rwq_item *next;
    char *bytes; /* owned (malloc) */
    size_t len;
    size_t nsamples;
} am_rwq_item_t;

typedef struct am_rwq {
    am_rwq_item_t *head, *tail; /* owned */
    size_t bytes;               /* queued, the busy head's too */
    size_t max_bytes;
    size_t n;
    bool head_busy;           /* the head is being sent */
    uint64_t dropped_samples; /* given up for room, ever */
    unsigned backoff_ms;      /* the next wait's step; 0 after a success */
    uint64_t rng;             /* jitter state */
} am_rwq_t;

void am_rwq_init(am_rwq_t *q, size_t max_bytes);
/* Frees every queued request; their samples count as dropped. */
void am_rwq_clear(am_rwq_t *q);

/* Adds a request (bytes stolen, len bytes, nsamples samples), making room
 * as described above. Returns the samples dropped to make room (also added
 * to dropped_samples). */
size_t am_rwq_push(am_rwq_t *q, char *bytes, size_t len, size_t nsamples);

/* The oldest request, or NULL; valid until am_rwq_pop or a push that drops
 * it (never while head_busy). */
am_rwq_item_t *am_rwq_head(am_rwq_t *q);
/* Frees the head (sent, or refused by the receiver); clears head_busy. */
void am_rwq_pop(am_rwq_t *q);

/* After a failed attempt: the wait in ms before the next one (the step
 * grows for the time after). */
unsigned am_rwq_backoff(am_rwq_t *q);
/* After a success: the next failure waits the minimum again. */
void am_rwq_backoff_reset(am_rwq_t *q);
