/* ingest: the StatsD sockets (UDP and Unix datagram) on the libuv loop.
 *
 * libuv has no Unix datagram handle, and its UDP handle caps recvmmsg
 * batches, so both transports are plain non-blocking sockets watched with
 * uv_poll_t and drained with recvmmsg into one preallocated batch buffer:
 * nothing is allocated per datagram. A wake-up reads a bounded number of
 * batches and then yields, so a flood cannot starve the HTTP side. Under
 * load a UDP socket is read every millisecond rather than at every arrival
 * (wake-up coalescing, see ingest.c).
 *
 * Several ingest workers (server --workers N) each open their own UDP socket
 * on the same address with AM_INGEST_REUSEPORT: the kernel spreads datagrams
 * over the sockets by sender (a hash of the source address and port).
 *
 * Who calls: workers.c. Everything runs on the loop the socket was opened
 * on (a worker's thread, or the main loop with one worker), callbacks
 * included; am_ingest_read_now too. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "selfstats.h"

/* Called for every datagram. p is the receive buffer, borrowed until the
 * callback returns (as libuv's recv buffers end with recv_cb): copy what
 * must outlive it. p is NULL (n 0) for a receive error. truncated: the
 * datagram was larger than the buffer and p holds its start. */
typedef void (*am_ingest_fn)(void *ctx, int transport, const char *p, size_t n, bool truncated);

/* Optional: called with begin = true after a recvmmsg that returned
 * something (datagrams or an error), before the first am_ingest_fn call of
 * that batch, and with begin = false after the last one. A worker holds its
 * registry's mutex in between (at most 64 datagrams), never across the
 * recvmmsg itself. */
typedef void (*am_ingest_batch_fn)(void *ctx, bool begin);

typedef struct am_ingest am_ingest_t;

enum {
    /* SO_REUSEPORT before bind: every worker binds the same host:port. The
     * kernel only groups sockets of one user; a process of that user could
     * join the group (and receive part of the traffic). */
    AM_INGEST_REUSEPORT = 1u << 0,
};

/* Binds UDP host:port (IPv4/IPv6 literal; host borrowed for the call).
 * rcvbuf > 0 sets SO_RCVBUF (with SO_RCVBUFFORCE when allowed). flags:
 * AM_INGEST_*. loop and ctx are borrowed until the socket is closed (its
 * close callbacks have run). *out is owned by the caller, who gives it
 * back with am_ingest_close. 0, or a negative errno (-EINVAL for a bad
 * host, -ENOMEM, the socket/setsockopt/bind errno, or the libuv code of
 * the poll handle); nothing is left open then. */
int am_ingest_open_udp(uv_loop_t *loop, const char *host, int port, int rcvbuf, unsigned flags,
                       am_ingest_fn fn, void *ctx, am_ingest_t **out)
    __attribute__((warn_unused_result));

/* Binds a Unix datagram socket at path (copied), created with mode (0 to
 * 0777; the umask is set around the bind, so the file never has another
 * mode). A socket file there that no process serves (a stale one from a
 * previous run) is replaced; anything else is left alone: -EADDRINUSE when
 * a process serves the socket (a connect reaches it), -ELOOP for a symlink
 * (never followed), -EEXIST for any other kind of file. -ENAMETOOLONG past
 * 107 bytes, -EINVAL for a bad mode; otherwise as am_ingest_open_udp. At
 * close the file is unlinked only while it is still the one bound here. */
int am_ingest_open_unix(uv_loop_t *loop, const char *path, int rcvbuf, unsigned mode,
                        am_ingest_fn fn, void *ctx, am_ingest_t **out)
    __attribute__((warn_unused_result));

/* Whether UDP host:port is free: a probe bound without SO_REUSEPORT and
 * closed at once. Run before binding with AM_INGEST_REUSEPORT, whose bind
 * would join a group another process of the same user holds there (and
 * share its traffic) instead of failing. 0 free; -EADDRINUSE, -EINVAL (bad
 * host) or the socket/bind errno. */
int am_ingest_udp_port_free(const char *host, int port) __attribute__((warn_unused_result));

/* Sets (or, with NULL, clears) in's batch callback; it gets the ctx given
 * at open. */
void am_ingest_set_batch_fn(am_ingest_t *in, am_ingest_batch_fn fn);

/* Counts into *counter (borrowed until am_ingest_close, or until cleared
 * with NULL) every read that found datagrams: the wake-ups that did work.
 * Incremented inside the batch callback's begin/end, so the same lock
 * guards it as the datagrams. */
void am_ingest_count_wakeups(am_ingest_t *in, uint64_t *counter);

/* Inside in's am_ingest_fn call for a datagram of a Unix socket (which
 * has SO_PASSCRED on): true with the sending process's *pid and *uid, as
 * the kernel gives them (pid 0: the sender is in a PID namespace the
 * daemon cannot see into). False for UDP, a receive error, or no
 * credentials. */
bool am_ingest_sender(const am_ingest_t *in, uint32_t *pid, uint32_t *uid);

/* How long a UDP socket under load waits between reads (wake-up
 * coalescing, see ingest.c): 1 ms when the receive buffer is large enough,
 * else 0 (off); always 0 for the Unix socket. */
unsigned am_ingest_coalesce_ms(const am_ingest_t *in);

/* Tests: another wait (0 = off). Takes effect at the next wake-up. */
void am_ingest_set_coalesce_ms(am_ingest_t *in, unsigned ms);

int am_ingest_port(const am_ingest_t *in);   /* bound UDP port */
int am_ingest_rcvbuf(const am_ingest_t *in); /* kernel's receive buffer size */

/* Reads what the socket holds now (up to 4,096 datagrams), whatever the
 * wake-up mode: a scrape calls it first, so that it sees every
 * datagram the kernel had queued when the request was read. */
void am_ingest_read_now(am_ingest_t *in);

/* Stops watching, closes the socket (unlinks the Unix path) and frees in
 * once libuv has closed its handles (handle memory only in close_cb): in
 * is invalid on return, ctx and loop stay borrowed until the loop has run
 * those callbacks. Once per socket. */
void am_ingest_close(am_ingest_t *in);
