#include "recvbatch.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TAIL_BYTES (AM_RECV_MAX_BYTES - AM_RECV_HEAD_BYTES)

int am_recvbatch_init(am_recvbatch_t *b)
{
    memset(b, 0, sizeof(*b));
    b->heads = malloc((size_t)AM_RECV_BATCH * AM_RECV_HEAD_BYTES);
    b->tails = malloc((size_t)AM_RECV_BATCH * TAIL_BYTES);
    b->joined = malloc(AM_RECV_MAX_BYTES);
    if (!b->heads || !b->tails || !b->joined) {
        am_recvbatch_free(b);
        return -ENOMEM;
    }
    for (int i = 0; i < AM_RECV_BATCH; i++) {
        b->iov[i][0] =
            (struct iovec){b->heads + (size_t)i * AM_RECV_HEAD_BYTES, AM_RECV_HEAD_BYTES};
        b->iov[i][1] = (struct iovec){b->tails + (size_t)i * TAIL_BYTES, TAIL_BYTES};
        b->msgs[i].msg_hdr.msg_iov = b->iov[i];
        b->msgs[i].msg_hdr.msg_iovlen = 2;
    }
    return 0;
}

void am_recvbatch_free(am_recvbatch_t *b)
{
    free(b->heads);
    free(b->tails);
    free(b->joined);
    b->heads = b->tails = b->joined = NULL;
}

void am_recvbatch_want_creds(am_recvbatch_t *b)
{
    b->creds = true;
    for (int i = 0; i < AM_RECV_BATCH; i++)
        b->msgs[i].msg_hdr.msg_control = b->ctl[i];
}

int am_recvbatch_recv(am_recvbatch_t *b, int fd)
{
    /* No reset of the 64 headers first: the kernel writes msg_len and
     * msg_flags of every message it fills, and only those are read. But
     * for msg_controllen, which it shrinks to what it wrote: given back
     * its room (64 stores, no more). */
    if (b->creds)
        for (int i = 0; i < AM_RECV_BATCH; i++)
            b->msgs[i].msg_hdr.msg_controllen = sizeof(b->ctl[i]);
    int n = recvmmsg(fd, b->msgs, AM_RECV_BATCH, MSG_DONTWAIT, NULL);
    return n < 0 ? -errno : n;
}

const char *am_recvbatch_get(am_recvbatch_t *b, int i, size_t *len, bool *truncated)
{
    assert(i >= 0 && i < AM_RECV_BATCH);
    size_t n = b->msgs[i].msg_len;
    if (n > AM_RECV_MAX_BYTES)
        n = AM_RECV_MAX_BYTES;
    *len = n;
    *truncated = (b->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0;
    if (n <= AM_RECV_HEAD_BYTES)
        return b->iov[i][0].iov_base;
    /* Rare: join head and tail (the parser wants one piece). */
    memcpy(b->joined, b->iov[i][0].iov_base, AM_RECV_HEAD_BYTES);
    memcpy(b->joined + AM_RECV_HEAD_BYTES, b->iov[i][1].iov_base, n - AM_RECV_HEAD_BYTES);
    return b->joined;
}

bool am_recvbatch_creds(const am_recvbatch_t *b, int i, uint32_t *pid, uint32_t *uid)
{
    assert(i >= 0 && i < AM_RECV_BATCH);
    if (!b->creds)
        return false;
    const struct msghdr *h = &b->msgs[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR((struct msghdr *)h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cr;
            memcpy(&cr, CMSG_DATA(c), sizeof(cr));
            *pid = (uint32_t)cr.pid;
            *uid = (uint32_t)cr.uid;
            return true;
        }
    }
    return false;
}
