/* senders: who sends on the Unix socket, by process (SO_PASSCRED).
 *
 * What: per sender (pid, uid) the datagrams, lines accepted and rejected,
 * bytes, when it was first and last seen, and its process name, read from
 * /proc/<pid>/comm once, when the sender is first seen (never per
 * datagram; empty for pid 0 or when it cannot be read). A pid is reused by
 * the kernel: a new process with an old sender's pid and uid continues its
 * row (under the old name) while the row lasts.
 *
 * pid 0: the kernel could not translate the sender's pid into the
 * daemon's PID namespace (the sender is in another one, e.g. a neighbour
 * container of a pod while the daemon runs in its own): such senders are
 * told apart by uid alone, one row per uid.
 *
 * Bounded: at most cap rows, allocated at init. A new sender when all are
 * taken replaces the least recently seen one (its counts are dropped and
 * counted in evicted). A table lookup per datagram (none when it comes
 * from the same sender as the one before), nothing allocated after init.
 *
 * Who calls: workers.c, on worker 0's loop (the Unix socket's reader),
 * under the lock that guards that worker's counters; the main thread
 * copies rows out (am_senders_copy) under the same lock. Not thread-safe
 * by itself. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "table.h"

#define AM_SENDERS_CAP 256 /* rows of the daemon's table */

typedef struct am_sender {
    uint32_t pid; /* 0: not visible (another PID namespace) */
    uint32_t uid;
    uint64_t datagrams;
    uint64_t lines;    /* accepted */
    uint64_t rejected; /* lines */
    uint64_t bytes;
    uint64_t first_ms, last_ms; /* the caller's monotonic clock, in ms */
    char process[16];           /* comm: printable ASCII, NUL-terminated; "" unknown */
} am_sender_t;

typedef struct am_senders {
    am_table_t index;  /* {hash, row}: by (pid, uid); owned */
    am_sender_t *rows; /* cap, owned */
    size_t n, cap;
    am_sender_t *last; /* the row of the previous datagram, or NULL */
    uint64_t evicted;  /* senders whose row was given to a newer one */
    const char *proc;  /* where /proc is (borrowed): "/proc", or a test's */
} am_senders_t;

/* An empty table of at most cap rows (cap >= 1), allocated now. proc:
 * the /proc directory to read comm from (borrowed for s's life; NULL for
 * "/proc"). 0, -EINVAL (cap 0), or -ENOMEM (nothing left allocated). */
int am_senders_init(am_senders_t *s, size_t cap, const char *proc)
    __attribute__((warn_unused_result));
/* Frees the rows and index; s is zeroed. Safe twice, and after a failed
 * init. */
void am_senders_free(am_senders_t *s);

/* The row of (pid, uid), made when new (its name read, first_ms set, the
 * least recently seen row replaced when all cap are taken); its last_ms
 * set to now_ms. Borrowed until the next call: the caller adds its
 * counts. Never NULL once init succeeded. */
am_sender_t *am_senders_get(am_senders_t *s, uint32_t pid, uint32_t uid, uint64_t now_ms);

/* Copies up to cap rows into out (in no order); how many. */
size_t am_senders_copy(const am_senders_t *s, am_sender_t *out, size_t cap);
