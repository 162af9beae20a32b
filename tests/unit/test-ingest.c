/* Unit tests for src/daemon/ingest.c on a real libuv loop and real loopback
 * sockets: under load a UDP socket is read on a timer instead of at every
 * arrival (wake-up coalescing), a trickle goes back to arrival wake-ups, a
 * backlog is read on at once, am_ingest_read_now reads whatever waits, and
 * the Unix socket and small receive buffers never coalesce. The Unix
 * socket's file: its mode from the start, never a symlink followed or a
 * served socket taken over; a UDP port held by another socket is seen
 * before a SO_REUSEPORT bind would join it.
 *
 * The tests set a long wait (1 s) so that "not read yet" is not a race
 * against the clock: everything the test does between two reads takes far
 * less. */
#include "ingest.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "recvbatch.h"

#include "check-main.h"

#define LONG_WAIT_MS 1000
#define BIG_RCVBUF   (8 << 20)

typedef struct seen {
    unsigned datagrams;
    unsigned errors;
    size_t bytes;
} seen_t;

static void on_datagram(void *ctx, int transport, const char *p, size_t n, bool truncated)
{
    (void)transport;
    (void)truncated;
    seen_t *s = ctx;
    if (!p) {
        s->errors++;
        return;
    }
    s->datagrams++;
    s->bytes += n;
}

typedef struct rig {
    uv_loop_t loop;
    am_ingest_t *in;
    seen_t seen;
    uint64_t wakeups;
    int tx; /* the sender */
    struct sockaddr_in to;
} rig_t;

static void rig_open_udp(rig_t *r, int rcvbuf)
{
    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(uv_loop_init(&r->loop), 0);
    ck_assert_int_eq(
        am_ingest_open_udp(&r->loop, "127.0.0.1", 0, rcvbuf, 0, on_datagram, &r->seen, &r->in), 0);
    am_ingest_count_wakeups(r->in, &r->wakeups);
    r->tx = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(r->tx, 0);
    r->to.sin_family = AF_INET;
    r->to.sin_port = htons((uint16_t)am_ingest_port(r->in));
    r->to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
}

static void rig_close(rig_t *r)
{
    am_ingest_close(r->in);
    ck_assert_int_eq(uv_run(&r->loop, UV_RUN_DEFAULT), 0); /* nothing left on the loop */
    ck_assert_int_eq(uv_loop_close(&r->loop), 0);
    close(r->tx);
}

static void send_n(rig_t *r, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        ck_assert_int_eq(sendto(r->tx, "c:1|c", 5, 0, (struct sockaddr *)&r->to, sizeof(r->to)), 5);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {0, (long)ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Runs the loop without blocking until want datagrams were read, at most
 * tries times 1 ms apart; the count at the end. */
static unsigned run_until(rig_t *r, unsigned want, unsigned tries)
{
    for (unsigned i = 0; i < tries && r->seen.datagrams < want; i++) {
        uv_run(&r->loop, UV_RUN_NOWAIT);
        if (r->seen.datagrams < want)
            sleep_ms(1);
    }
    return r->seen.datagrams;
}

/* A UDP rig already waiting: first (>= 2) datagrams were found in one
 * wake-up, so the next read is LONG_WAIT_MS away. */
static void rig_open_waiting(rig_t *r, unsigned first)
{
    rig_open_udp(r, BIG_RCVBUF);
    am_ingest_set_coalesce_ms(r->in, LONG_WAIT_MS);
    send_n(r, first);
    ck_assert_uint_eq(run_until(r, first, 1000), first);
    ck_assert_uint_eq(r->wakeups, 1);
}

static bool big_buffers_allowed(const rig_t *r)
{
    /* SO_RCVBUFFORCE needs root (CAP_NET_ADMIN); without it the kernel caps
     * the buffer at net.core.rmem_max and the default wait is off. */
    return am_ingest_rcvbuf(r->in) >= 2 * BIG_RCVBUF;
}

START_TEST(test_default_wait_by_buffer_and_transport)
{
    rig_t r;
    rig_open_udp(&r, BIG_RCVBUF);
    if (big_buffers_allowed(&r))
        ck_assert_uint_eq(am_ingest_coalesce_ms(r.in), 1);
    else
        ck_assert_uint_eq(am_ingest_coalesce_ms(r.in), 0);
    rig_close(&r);

    rig_open_udp(&r, 65536); /* holds well under 2 ms of a flood: never wait */
    ck_assert_uint_eq(am_ingest_coalesce_ms(r.in), 0);
    rig_close(&r);
}
END_TEST

START_TEST(test_load_reads_on_timer_then_trickle_wakes_at_arrival)
{
    rig_t r;
    rig_open_waiting(&r, 3); /* three found in one wake-up: load */
    send_n(&r, 4);
    ck_assert_uint_eq(run_until(&r, 7, 20), 3); /* not read at arrival */

    /* The timer reads all four in one go, and keeps waiting (4 >= 2). */
    uv_run(&r.loop, UV_RUN_ONCE);
    ck_assert_uint_eq(r.seen.datagrams, 7);
    ck_assert_uint_eq(r.wakeups, 2);

    /* A read that finds one datagram: a trickle, back to arrival wake-ups. */
    send_n(&r, 1);
    uv_run(&r.loop, UV_RUN_ONCE);
    ck_assert_uint_eq(r.seen.datagrams, 8);
    send_n(&r, 1);
    ck_assert_uint_eq(run_until(&r, 9, 100), 9); /* well before the 1 s wait */
    ck_assert_uint_eq(r.wakeups, 4);
    ck_assert_uint_eq(r.seen.errors, 0);
    ck_assert_uint_eq(r.seen.bytes, 9 * 5);
    rig_close(&r);
}
END_TEST

START_TEST(test_read_now_reads_while_waiting)
{
    rig_t r;
    rig_open_waiting(&r, 2);
    send_n(&r, 5);
    ck_assert_uint_eq(run_until(&r, 7, 20), 2);
    am_ingest_read_now(r.in); /* what a scrape does first */
    ck_assert_uint_eq(r.seen.datagrams, 7);
    ck_assert_uint_eq(r.wakeups, 2);
    am_ingest_read_now(r.in); /* nothing waiting: no wake-up counted */
    ck_assert_uint_eq(r.wakeups, 2);
    rig_close(&r);
}
END_TEST

START_TEST(test_backlog_is_read_on_at_once)
{
    rig_t r;
    rig_open_udp(&r, BIG_RCVBUF);
    if (!big_buffers_allowed(&r)) {
        rig_close(&r);
        return; /* 1,100 datagrams would overflow a capped buffer */
    }
    am_ingest_set_coalesce_ms(r.in, LONG_WAIT_MS);
    /* More than one wake-up reads (16 batches of 64): the first read stops at
     * its cap and the rest must follow on the next loop turn, not after a
     * wait. */
    const unsigned n = 16 * AM_RECV_BATCH + 76;
    send_n(&r, n);
    uv_run(&r.loop, UV_RUN_NOWAIT);
    ck_assert_uint_eq(r.seen.datagrams, 16 * AM_RECV_BATCH);
    uv_run(&r.loop, UV_RUN_NOWAIT);
    ck_assert_uint_eq(r.seen.datagrams, n); /* and now it waits (76 >= 2) */

    /* The same when the timer's read stops at the cap. */
    send_n(&r, n);
    uv_run(&r.loop, UV_RUN_ONCE);
    ck_assert_uint_eq(r.seen.datagrams, n + 16 * AM_RECV_BATCH);
    uv_run(&r.loop, UV_RUN_NOWAIT);
    ck_assert_uint_eq(r.seen.datagrams, 2 * n);
    rig_close(&r);
}
END_TEST

START_TEST(test_close_while_waiting)
{
    rig_t r;
    rig_open_waiting(&r, 3);
    send_n(&r, 3);
    rig_close(&r); /* the timer and the poll handle both closed, nothing leaks */
}
END_TEST

START_TEST(test_unix_socket_never_waits)
{
    char path[64];
    snprintf(path, sizeof(path), "/tmp/am-test-ingest-%d.sock", (int)getpid());
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    seen_t seen = {0};
    am_ingest_t *in;
    ck_assert_int_eq(am_ingest_open_unix(&loop, path, BIG_RCVBUF, 0666, on_datagram, &seen, &in),
                     0);
    ck_assert_uint_eq(am_ingest_coalesce_ms(in), 0);
    int tx = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    for (int round = 1; round <= 3; round++) {
        for (int i = 0; i < 3; i++)
            ck_assert_int_eq(sendto(tx, "u:1|c", 5, 0, (struct sockaddr *)&sa, sizeof(sa)), 5);
        for (int i = 0; i < 100 && seen.datagrams < (unsigned)round * 3; i++) {
            uv_run(&loop, UV_RUN_NOWAIT);
            sleep_ms(1);
        }
        ck_assert_uint_eq(seen.datagrams, (unsigned)round * 3);
    }
    close(tx);
    am_ingest_close(in);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    ck_assert_int_ne(access(path, F_OK), 0); /* unlinked at close */
}
END_TEST

/* The path of a test file in /tmp, unique to this process. */
static void tmp_path(char *buf, size_t n, const char *what)
{
    snprintf(buf, n, "/tmp/am-test-ingest-%d-%s", (int)getpid(), what);
    unlink(buf);
}

/* Opens the Unix socket on a loop of its own and closes it again; the
 * result of the open. */
static int open_close_unix(const char *path, unsigned mode, mode_t *seen_mode)
{
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    seen_t seen = {0};
    am_ingest_t *in = NULL;
    int rc = am_ingest_open_unix(&loop, path, 0, mode, on_datagram, &seen, &in);
    if (rc == 0) {
        struct stat st;
        ck_assert_int_eq(lstat(path, &st), 0);
        ck_assert(S_ISSOCK(st.st_mode));
        if (seen_mode)
            *seen_mode = st.st_mode & 07777;
        am_ingest_close(in);
    }
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    return rc;
}

/* The file has the mode asked for, whatever the process umask, and the
 * umask is put back. */
START_TEST(test_unix_mode)
{
    char path[96];
    tmp_path(path, sizeof(path), "mode.sock");
    mode_t old = umask(0077); /* would make 0600 of a plain bind */
    static const unsigned modes[] = {0666, 0660, 0600, 0777, 0};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        mode_t got = 01000;
        ck_assert_int_eq(open_close_unix(path, modes[i], &got), 0);
        ck_assert_uint_eq(got, modes[i]);
    }
    ck_assert_uint_eq(umask(old), 0077);
    ck_assert_int_eq(open_close_unix(path, 01777, NULL), -EINVAL);
    ck_assert_int_ne(access(path, F_OK), 0);
}
END_TEST

/* A symlink at the path is neither followed nor removed, dangling or not;
 * a regular file is left alone. */
START_TEST(test_unix_never_follows_or_removes)
{
    char path[96], target[96];
    tmp_path(path, sizeof(path), "link.sock");
    tmp_path(target, sizeof(target), "target");
    ck_assert_int_eq(symlink(target, path), 0); /* dangling */
    ck_assert_int_eq(open_close_unix(path, 0666, NULL), -ELOOP);
    ck_assert_int_ne(access(target, F_OK), 0); /* nothing made through the link */
    FILE *f = fopen(target, "w");
    ck_assert_ptr_nonnull(f);
    fputs("keep", f);
    fclose(f);
    ck_assert_int_eq(open_close_unix(path, 0666, NULL), -ELOOP);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISLNK(st.st_mode));
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert(S_ISREG(st.st_mode) && st.st_size == 4);
    unlink(path);
    ck_assert_int_eq(open_close_unix(target, 0666, NULL), -EEXIST);
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    unlink(target);
}
END_TEST

/* A socket another process serves is not taken over; a stale one (nobody
 * bound) is replaced; a socket replaced under us is not unlinked at
 * close. */
START_TEST(test_unix_served_stale_and_replaced)
{
    char path[96];
    tmp_path(path, sizeof(path), "served.sock");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int other = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_eq(bind(other, (struct sockaddr *)&sa, sizeof(sa)), 0);
    ck_assert_int_eq(open_close_unix(path, 0666, NULL), -EADDRINUSE);
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);        /* still the other's */
    int stream = socket(AF_UNIX, SOCK_STREAM, 0); /* a served socket of another type */
    char spath[96];
    tmp_path(spath, sizeof(spath), "stream.sock");
    struct sockaddr_un ss = {.sun_family = AF_UNIX};
    memcpy(ss.sun_path, spath, strlen(spath) + 1);
    ck_assert_int_eq(bind(stream, (struct sockaddr *)&ss, sizeof(ss)), 0);
    ck_assert_int_eq(listen(stream, 1), 0);
    ck_assert_int_eq(open_close_unix(spath, 0666, NULL), -EADDRINUSE);
    close(stream);
    unlink(spath);

    close(other); /* now stale: the file stays, nobody holds it */
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_int_eq(open_close_unix(path, 0666, NULL), 0);
    ck_assert_int_ne(access(path, F_OK), 0);

    /* Replaced while open: the new file is not ours to unlink. */
    uv_loop_t loop;
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    seen_t seen = {0};
    am_ingest_t *in;
    ck_assert_int_eq(am_ingest_open_unix(&loop, path, 0, 0666, on_datagram, &seen, &in), 0);
    ck_assert_int_eq(unlink(path), 0);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    am_ingest_close(in);
    ck_assert_int_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
    ck_assert_int_eq(access(path, F_OK), 0);
    unlink(path);
}
END_TEST

/* The probe sees a UDP port held by any socket, SO_REUSEPORT or not (a
 * SO_REUSEPORT bind of ours would quietly join that one). */
START_TEST(test_udp_port_free)
{
    int one = 1;
    int held = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_eq(setsockopt(held, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(held, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t sl = sizeof(sa);
    ck_assert_int_eq(getsockname(held, (struct sockaddr *)&sa, &sl), 0);
    int port = ntohs(sa.sin_port);
    ck_assert_int_eq(am_ingest_udp_port_free("127.0.0.1", port), -EADDRINUSE);
    /* That is what the probe prevents: a reuseport bind would succeed. */
    int joiner = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_eq(setsockopt(joiner, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
    ck_assert_int_eq(bind(joiner, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(joiner);
    close(held);
    ck_assert_int_eq(am_ingest_udp_port_free("127.0.0.1", port), 0);
    ck_assert_int_eq(am_ingest_udp_port_free("not-an-ip", port), -EINVAL);
}
END_TEST

static Suite *ingest_suite(void)
{
    Suite *s = suite_create("Ingest");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_default_wait_by_buffer_and_transport);
    tcase_add_test(tc, test_load_reads_on_timer_then_trickle_wakes_at_arrival);
    tcase_add_test(tc, test_read_now_reads_while_waiting);
    tcase_add_test(tc, test_backlog_is_read_on_at_once);
    tcase_add_test(tc, test_close_while_waiting);
    tcase_add_test(tc, test_unix_socket_never_waits);
    tcase_add_test(tc, test_unix_mode);
    tcase_add_test(tc, test_unix_never_follows_or_removes);
    tcase_add_test(tc, test_unix_served_stale_and_replaced);
    tcase_add_test(tc, test_udp_port_free);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(ingest_suite)
