/* Unit tests for src/daemon/recvbatch.c: datagrams of every size around the head
 * buffer come back whole and exact, over a real Unix datagram socket pair. */
#include "recvbatch.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "check-main.h"

static int pair[2];

static void open_pair(void)
{
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, pair), 0);
    int big = 4 << 20;
    (void)setsockopt(pair[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    (void)setsockopt(pair[1], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
}

static void close_pair(void)
{
    close(pair[0]);
    close(pair[1]);
}

/* Bytes that differ at every offset, so a misplaced piece shows. */
static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)((i * 131 + seed * 7 + (i >> 8)) & 0xff);
}

static const size_t sizes[] = {
    1,
    100,
    AM_RECV_HEAD_BYTES - 1,
    AM_RECV_HEAD_BYTES,
    AM_RECV_HEAD_BYTES + 1,
    2 * AM_RECV_HEAD_BYTES + 17,
    AM_RECV_MAX_BYTES - 1,
    AM_RECV_MAX_BYTES,
};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

START_TEST(test_sizes_round_trip)
{
    open_pair();
    am_recvbatch_t b;
    ck_assert_int_eq(am_recvbatch_init(&b), 0);
    char *want = malloc(AM_RECV_MAX_BYTES);
    ck_assert_ptr_nonnull(want);
    /* All sizes in one batch: joins must not overwrite each other's data
     * before they are read (each get is read before the next). */
    for (size_t k = 0; k < NSIZES; k++) {
        fill(want, sizes[k], (unsigned)k);
        ck_assert_int_eq(send(pair[0], want, sizes[k], 0), (ssize_t)sizes[k]);
    }
    int n = am_recvbatch_recv(&b, pair[1]);
    ck_assert_int_eq(n, (int)NSIZES);
    for (int i = 0; i < n; i++) {
        size_t len;
        bool trunc;
        const char *p = am_recvbatch_get(&b, i, &len, &trunc);
        ck_assert_uint_eq(len, sizes[i]);
        ck_assert(!trunc);
        fill(want, sizes[i], (unsigned)i);
        ck_assert_msg(memcmp(p, want, len) == 0, "datagram of %zu bytes differs", sizes[i]);
    }
    ck_assert_int_eq(am_recvbatch_recv(&b, pair[1]), -EAGAIN);
    free(want);
    am_recvbatch_free(&b);
    close_pair();
}
END_TEST

/* Longer than AM_RECV_MAX_BYTES: the start comes back, marked truncated;
 * the next datagram in the same slot is not. */
START_TEST(test_truncated)
{
    open_pair();
    am_recvbatch_t b;
    ck_assert_int_eq(am_recvbatch_init(&b), 0);
    size_t n = AM_RECV_MAX_BYTES + 1000;
    char *want = malloc(n);
    ck_assert_ptr_nonnull(want);
    fill(want, n, 3);
    ck_assert_int_eq(send(pair[0], want, n, 0), (ssize_t)n);
    ck_assert_int_eq(am_recvbatch_recv(&b, pair[1]), 1);
    size_t len;
    bool trunc;
    const char *p = am_recvbatch_get(&b, 0, &len, &trunc);
    ck_assert(trunc);
    ck_assert_uint_eq(len, AM_RECV_MAX_BYTES);
    ck_assert(memcmp(p, want, len) == 0);
    /* The same slot next time, whole: the kernel clears the mark (the
     * headers are not reset between receives). */
    ck_assert_int_eq(send(pair[0], "a:1|c", 5, 0), 5);
    ck_assert_int_eq(am_recvbatch_recv(&b, pair[1]), 1);
    p = am_recvbatch_get(&b, 0, &len, &trunc);
    ck_assert(!trunc && len == 5 && memcmp(p, "a:1|c", 5) == 0);
    free(want);
    am_recvbatch_free(&b);
    close_pair();
}
END_TEST

/* More datagrams than a batch: the first AM_RECV_BATCH, then the rest. */
START_TEST(test_batches)
{
    open_pair();
    am_recvbatch_t b;
    ck_assert_int_eq(am_recvbatch_init(&b), 0);
    char msg[32];
    int total = AM_RECV_BATCH + 5;
    for (int i = 0; i < total; i++) {
        int m = snprintf(msg, sizeof(msg), "m:%d|c", i);
        ck_assert_int_eq(send(pair[0], msg, (size_t)m, 0), m);
    }
    int got = 0;
    for (int round = 0; round < 2; round++) {
        int n = am_recvbatch_recv(&b, pair[1]);
        ck_assert_int_eq(n, round == 0 ? AM_RECV_BATCH : 5);
        for (int i = 0; i < n; i++, got++) {
            size_t len;
            bool trunc;
            const char *p = am_recvbatch_get(&b, i, &len, &trunc);
            int m = snprintf(msg, sizeof(msg), "m:%d|c", got);
            ck_assert_uint_eq(len, (size_t)m);
            ck_assert(memcmp(p, msg, len) == 0);
        }
    }
    ck_assert_int_eq(got, total);
    am_recvbatch_free(&b);
    close_pair();
}
END_TEST

/* With SO_PASSCRED and am_recvbatch_want_creds every datagram of a batch
 * carries its sender (this process); without, none does. */
START_TEST(test_creds)
{
    open_pair();
    am_recvbatch_t b;
    ck_assert_int_eq(am_recvbatch_init(&b), 0);
    uint32_t pid, uid;
    ck_assert_int_eq(send(pair[0], "a:1|c", 5, 0), 5);
    ck_assert_int_eq(am_recvbatch_recv(&b, pair[1]), 1);
    ck_assert(!am_recvbatch_creds(&b, 0, &pid, &uid));

    int one = 1;
    ck_assert_int_eq(setsockopt(pair[1], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)), 0);
    am_recvbatch_want_creds(&b);
    for (int round = 0; round < 2; round++) { /* the control room is given back each time */
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(send(pair[0], "a:1|c", 5, 0), 5);
        ck_assert_int_eq(am_recvbatch_recv(&b, pair[1]), 3);
        for (int i = 0; i < 3; i++) {
            pid = uid = 12345;
            ck_assert(am_recvbatch_creds(&b, i, &pid, &uid));
            ck_assert_uint_eq(pid, (uint32_t)getpid());
            ck_assert_uint_eq(uid, (uint32_t)getuid());
        }
    }
    am_recvbatch_free(&b);
    close_pair();
}
END_TEST

static Suite *recvbatch_suite(void)
{
    Suite *s = suite_create("recvbatch");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sizes_round_trip);
    tcase_add_test(tc, test_truncated);
    tcase_add_test(tc, test_batches);
    tcase_add_test(tc, test_creds);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(recvbatch_suite)
