/* recvbatch: a batch of datagrams read with one recvmmsg, laid out for the
 * cache.
 *
 * Each of the AM_RECV_BATCH messages has two buffers: a head of
 * AM_RECV_HEAD_BYTES in one dense array, and the rest of the 64 KiB in a
 * tail array that only a large datagram ever touches. The kernel fills the
 * head first, so a typical datagram (a few hundred bytes to 8 KiB) lands in
 * 512 KiB of contiguous memory instead of at the start of 64 scattered
 * 64 KiB slots, and the copy in and the parse after it stay in cache. A
 * datagram that spills into its tail is joined into one scratch buffer
 * before anyone reads it. Shared by the daemon and tests/bench/nullrecv so
 * that the benchmark's floor receives exactly as the daemon does.
 *
 * A Unix socket with SO_PASSCRED also gets each datagram's sender
 * (SCM_CREDENTIALS) in a control buffer per message, preallocated in the
 * batch (am_recvbatch_want_creds).
 *
 * Who calls: ingest.c, on the loop of the socket it reads. One batch per
 * socket, used by one thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define AM_RECV_BATCH 64
/* The largest datagram taken whole (proto/README.md: Unix datagrams up to
 * 64 KiB); MSG_TRUNC reports anything longer. */
#define AM_RECV_MAX_BYTES  65536
#define AM_RECV_HEAD_BYTES 8192

typedef struct am_recvbatch {
    struct mmsghdr msgs[AM_RECV_BATCH];
    struct iovec iov[AM_RECV_BATCH][2];
    char *heads;  /* AM_RECV_BATCH * AM_RECV_HEAD_BYTES, owned */
    char *tails;  /* AM_RECV_BATCH * (AM_RECV_MAX_BYTES - AM_RECV_HEAD_BYTES), owned */
    char *joined; /* AM_RECV_MAX_BYTES: a datagram larger than its head, owned */
    bool creds;   /* msgs carry ctl[i] (am_recvbatch_want_creds) */
    /* One control buffer per message; CMSG_SPACE rounds each to the
     * alignment a cmsghdr needs. */
    _Alignas(size_t) char ctl[AM_RECV_BATCH][CMSG_SPACE(sizeof(struct ucred))];
} am_recvbatch_t;

/* Allocates b's buffers (b is caller-allocated; free them with
 * am_recvbatch_free, also after a failure). 0, or -ENOMEM. */
int am_recvbatch_init(am_recvbatch_t *b) __attribute__((warn_unused_result));
/* Frees the buffers (b itself is the caller's); safe twice. */
void am_recvbatch_free(am_recvbatch_t *b);

/* Receives each datagram's SCM_CREDENTIALS (the socket must have
 * SO_PASSCRED on) into the batch's control buffers from the next receive
 * on: am_recvbatch_creds reads them. */
void am_recvbatch_want_creds(am_recvbatch_t *b);

/* One non-blocking recvmmsg: the number of datagrams (0..AM_RECV_BATCH), or
 * -errno (EAGAIN when there is nothing to read). */
int am_recvbatch_recv(am_recvbatch_t *b, int fd) __attribute__((warn_unused_result));

/* Datagram i (0 <= i < the count the last receive returned) in one piece:
 * borrowed from b until the next am_recvbatch_get or am_recvbatch_recv;
 * its length (at most AM_RECV_MAX_BYTES) and whether the kernel cut it. */
const char *am_recvbatch_get(am_recvbatch_t *b, int i, size_t *len, bool *truncated);

/* The sender of datagram i (as am_recvbatch_get) when the batch wants
 * credentials and the kernel gave them: true with *pid (0 when the sender
 * is in a PID namespace the receiver cannot see) and *uid; else false. */
bool am_recvbatch_creds(const am_recvbatch_t *b, int i, uint32_t *pid, uint32_t *uid);
