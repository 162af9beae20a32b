/* ClientUnit: libalice through its public header only, against datagram
 * sockets of the test's own (no daemon): exact lines, packing, refusals,
 * drops, aggregation, intervals and threads. */
#include <alice/metrics.h>

#include <check.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "../unit/check-main.h"

#define MANUAL ALICE_MANUAL_FLUSH

/* A bound UDP socket on 127.0.0.1; addr gets "127.0.0.1:PORT". */
static int udp_sink(char *addr, size_t cap)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, cap, "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    return fd;
}

static void unix_path(char *path, size_t cap, const char *tag)
{
    snprintf(path, cap, "/tmp/alice-client-test-%ld-%s.sock", (long)getpid(), tag);
}

static int unix_sink(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    unlink(path);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* One datagram as a NUL-terminated string, or -1 after timeout_ms. */
static int recv_str(int fd, char *buf, size_t cap, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    ssize_t n = recv(fd, buf, cap - 1, 0);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    return (int)n;
}

static char buf[70000];

START_TEST(test_open_errors)
{
    alice_client *c = (alice_client *)1;
    ck_assert_int_eq(alice_open(&c, "tcp://127.0.0.1:1", 0), -EINVAL);
    ck_assert_ptr_null(c);
    ck_assert_int_eq(alice_open(&c, "127.0.0.1:0", 0), -EINVAL);
    ck_assert_int_eq(alice_open(&c, "127.0.0.1:1", 1u << 20), -EINVAL);
    ck_assert_int_eq(alice_open(NULL, "127.0.0.1:1", 0), -EINVAL);
    ck_assert_int_eq(alice_open(&c, "no-such-host.invalid:8125", 0), -EADDRNOTAVAIL);
    alice_options o = ALICE_OPTIONS_INIT;
    o.max_datagram = 100;
    ck_assert_int_eq(alice_open_opts(&c, "127.0.0.1:1", &o), -EINVAL);
    o.max_datagram = 65508;
    ck_assert_int_eq(alice_open_opts(&c, "127.0.0.1:1", &o), -EINVAL);
    ck_assert_int_eq(alice_open_opts(&c, "unix:///tmp/x.sock", &o), 0);
    alice_close(c);
    o.max_datagram = 0;
    o.struct_size = 4;
    ck_assert_int_eq(alice_open_opts(&c, "127.0.0.1:1", &o), -EINVAL);
    ck_assert_int_eq(alice_open_opts(&c, "127.0.0.1:1", NULL), 0);
    alice_close(c);
}
END_TEST

START_TEST(test_null_client)
{
    alice_stats st;
    ck_assert_int_eq(alice_counter(NULL, "x", 1, NULL, 0), -EBADF);
    ck_assert_int_eq(alice_gauge(NULL, "x", 1, NULL, 0), -EBADF);
    ck_assert_int_eq(alice_gauge_add(NULL, "x", 1, NULL, 0), -EBADF);
    ck_assert_int_eq(alice_histogram(NULL, "x", 1, NULL, 0), -EBADF);
    ck_assert_int_eq(alice_timer_ms(NULL, "x", 1, NULL, 0), -EBADF);
    ck_assert_int_eq(alice_set(NULL, "x", "m", NULL, 0), -EBADF);
    ck_assert_int_eq(alice_flush(NULL), -EBADF);
    ck_assert_int_eq(alice_get_stats(NULL, &st), -EBADF);
    ck_assert_int_eq(alice_close(NULL), 0);
    int codes[] = {0, ALICE_DROPPED, -EINVAL, -EMSGSIZE, -EBADF, -ENOMEM, -EADDRNOTAVAIL,
                   -ECONNREFUSED, -99999, 77};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        ck_assert_ptr_nonnull(alice_strerror(codes[i]));
    ck_assert_str_eq(alice_version(), "0.1.0");
}
END_TEST

START_TEST(test_lines)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, addr, MANUAL), 0);
    ck_assert_int_eq(alice_counter(c, "alice_jobs", 1, NULL, 0), 0);
    ck_assert_int_eq(alice_counter(c, "alice_jobs", 2.5,
                                   ALICE_LABELS({"queue", "default"}, {"status", "success"})),
                     0);
    ck_assert_int_eq(alice_gauge(c, "conns", 7, NULL, 0), 0);
    ck_assert_int_eq(alice_gauge(c, "temp", -5, ALICE_LABELS({"room", "a"})), 0);
    ck_assert_int_eq(alice_gauge_add(c, "conns", 3, NULL, 0), 0);
    ck_assert_int_eq(alice_gauge_add(c, "conns", -2, NULL, 0), 0);
    ck_assert_int_eq(alice_histogram(c, "alice_api_request_duration_seconds", 0.25,
                                     ALICE_LABELS({"provider", "openai"}, {"model", "gpt-4"},
                                                  {"operation", "text"})),
                     0);
    ck_assert_int_eq(alice_timer_ms(c, "db.query", 12.5, NULL, 0), 0);
    ck_assert_int_eq(alice_set(c, "users", "user:42", NULL, 0), 0);
    ck_assert_int_eq(alice_counter(c, "alice_jobs", 1, NULL, 0), 0); /* cached series */
    ck_assert_int_eq(recv_str(fd, buf, sizeof(buf), 0), -1);      /* nothing before flush */
    ck_assert_int_eq(alice_flush(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "alice_jobs:1|c\n"
                          "alice_jobs:2.5|c|#queue:default,status:success\n"
                          "conns:7|g\n"
                          "temp:0|g|#room:a\n"
                          "temp:-5|g|#room:a\n"
                          "conns:+3|g\n"
                          "conns:-2|g\n"
                          "alice_api_request_duration_seconds:0.25|h|#provider:openai,"
                          "model:gpt-4,operation:text\n"
                          "db.query:12.5|ms\n"
                          "users:user:42|s\n"
                          "alice_jobs:1|c");
    alice_stats st;
    ck_assert_int_eq(alice_get_stats(c, &st), 0);
    ck_assert_uint_eq(st.calls, 10);
    ck_assert_uint_eq(st.invalid, 0);
    ck_assert_uint_eq(st.datagrams_sent, 1);
    ck_assert_uint_eq(st.lines_sent, 11);
    ck_assert_uint_eq(st.bytes_sent, strlen(buf));
    ck_assert_int_eq(alice_flush(c), 0); /* nothing pending: nothing sent */
    ck_assert_int_eq(recv_str(fd, buf, sizeof(buf), 50), -1);
    ck_assert_int_eq(alice_close(c), 0);
    close(fd);
}
END_TEST

START_TEST(test_invalid)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, addr, MANUAL), 0);
    char long_value[2000];
    memset(long_value, 'v', sizeof(long_value) - 1);
    long_value[sizeof(long_value) - 1] = '\0';
    for (int round = 0; round < 2; round++) { /* the second time, cached paths */
        ck_assert_int_eq(alice_counter(c, "bad name", 1, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "a:5", 1, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "", 1, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_counter(c, NULL, 1, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", -1, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", NAN, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_gauge(c, "x", INFINITY, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_gauge_add(c, "x", -INFINITY, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_histogram(c, "x", NAN, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", "a,b"})), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", "a|b"})), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", "a\nb"})), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"__k", "v"})), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", "\xc3"})), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", "1"}, {"k", "2"})),
                         -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", 1, NULL, 1), -EINVAL);
        ck_assert_int_eq(alice_set(c, "x", NULL, NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_set(c, "x", "a|b", NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_set(c, "x", "", NULL, 0), -EINVAL);
        ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", long_value})), -EINVAL);
    }
    /* A valid series must not vouch for a different call that writes the
     * same bytes: k="a",b="c" is fine, k="a,b:c" is not. */
    ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", "a"}, {"b", "c"})), 0);
    ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", "a,b:c"})), -EINVAL);
    alice_stats st;
    alice_get_stats(c, &st);
    ck_assert_uint_eq(st.invalid, 41);
    ck_assert_uint_eq(st.calls, 1);
    ck_assert_int_eq(alice_flush(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "x:1|c|#k:a,b:c");
    alice_close(c);
    close(fd);
}
END_TEST

/* Lines are packed up to max_datagram and never split. */
START_TEST(test_packing)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    int rcvbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    alice_options o = ALICE_OPTIONS_INIT;
    o.flags = MANUAL;
    o.max_datagram = 512;
    alice_client *c;
    ck_assert_int_eq(alice_open_opts(&c, addr, &o), 0);
    char name[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "c_%d", i % 300);
        ck_assert_int_eq(alice_counter(c, name, i, NULL, 0), 0);
        if (i % 97 == 0)
            ck_assert_int_eq(alice_gauge(c, "g", -5, ALICE_LABELS({"k", "v"})), 0);
    }
    ck_assert_int_eq(alice_flush(c), 0);
    int next = 0, datagrams = 0, pairs = 0;
    while (recv_str(fd, buf, sizeof(buf), 200) >= 0) {
        datagrams++;
        ck_assert_uint_le(strlen(buf), 512);
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            if (strcmp(line, "g:0|g|#k:v") == 0) {
                /* the pair is never split across datagrams */
                char *second = strtok_r(NULL, "\n", &save);
                ck_assert_ptr_nonnull(second);
                ck_assert_str_eq(second, "g:-5|g|#k:v");
                pairs++;
                continue;
            }
            char want[64];
            snprintf(want, sizeof(want), "c_%d:%d|c", next % 300, next);
            ck_assert_str_eq(line, want);
            next++;
        }
    }
    ck_assert_int_eq(next, 1000);
    ck_assert_int_eq(pairs, 11);
    alice_stats st;
    alice_get_stats(c, &st);
    ck_assert_uint_eq(st.datagrams_sent, (uint64_t)datagrams);
    ck_assert_uint_eq(st.lines_sent, 1000 + 22);
    ck_assert_uint_eq(st.datagrams_dropped, 0);

    /* A line that cannot fit any datagram. */
    char big[600];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(alice_counter(c, "x", 1, ALICE_LABELS({"k", big})), -EMSGSIZE);
    ck_assert_int_eq(alice_set(c, "x", big, NULL, 0), -EMSGSIZE);
    alice_close(c);
    close(fd);
}
END_TEST

static bool has_line(const char *dgram, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = dgram; (p = strstr(p, line)); p++)
        if ((p == dgram || p[-1] == '\n') && (p[n] == '\0' || p[n] == '\n'))
            return true;
    return false;
}

static int count_lines(const char *dgram)
{
    int n = *dgram ? 1 : 0;
    for (; *dgram; dgram++)
        n += *dgram == '\n';
    return n;
}

START_TEST(test_aggregate)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, addr, ALICE_AGGREGATE | MANUAL), 0);
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(alice_counter(c, "hits", 1, NULL, 0), 0);
    alice_counter(c, "hits", 0.5, ALICE_LABELS({"k", "v"}));
    alice_gauge(c, "g", 5, NULL, 0);
    alice_gauge_add(c, "g", 2, NULL, 0);
    alice_gauge_add(c, "g", -1, NULL, 0);
    alice_gauge_add(c, "d", 3, NULL, 0);
    alice_gauge_add(c, "d", -1, NULL, 0);
    alice_gauge(c, "n", 8, NULL, 0);
    alice_gauge(c, "n", -4, NULL, 0);
    alice_histogram(c, "h", 1, NULL, 0); /* not aggregated: one line each */
    alice_histogram(c, "h", 2, NULL, 0);
    alice_set(c, "s", "a", NULL, 0);
    ck_assert_int_eq(alice_flush(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_msg(has_line(buf, "hits:1000|c"), "%s", buf);
    ck_assert(has_line(buf, "hits:0.5|c|#k:v"));
    ck_assert(has_line(buf, "g:6|g"));
    ck_assert(has_line(buf, "d:+2|g"));
    ck_assert(strstr(buf, "n:0|g\nn:-4|g"));
    ck_assert(has_line(buf, "h:1|h"));
    ck_assert(has_line(buf, "h:2|h"));
    ck_assert(has_line(buf, "s:a|s"));
    ck_assert_int_eq(count_lines(buf), 9);

    /* Nothing new: nothing sent. Then each interval starts from zero. */
    ck_assert_int_eq(alice_flush(c), 0);
    ck_assert_int_eq(recv_str(fd, buf, sizeof(buf), 50), -1);
    alice_counter(c, "hits", 1, NULL, 0);
    alice_gauge_add(c, "g", 1, NULL, 0);
    ck_assert_int_eq(alice_flush(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert(has_line(buf, "hits:1|c"));
    ck_assert(has_line(buf, "g:+1|g"));
    ck_assert_int_eq(count_lines(buf), 2);
    alice_stats st;
    alice_get_stats(c, &st);
    ck_assert_uint_eq(st.calls, 1000 + 1 + 7 + 3 + 2);
    alice_close(c);
    close(fd);
}
END_TEST

/* Past max_keys, series are still sent, as plain lines. */
START_TEST(test_aggregate_full)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    alice_options o = ALICE_OPTIONS_INIT;
    o.flags = ALICE_AGGREGATE | MANUAL;
    o.max_keys = 2;
    alice_client *c;
    ck_assert_int_eq(alice_open_opts(&c, addr, &o), 0);
    for (int i = 0; i < 3; i++) {
        alice_counter(c, "a", 1, NULL, 0);
        alice_counter(c, "b", 1, NULL, 0);
        alice_counter(c, "c", 1, NULL, 0);
    }
    ck_assert_int_eq(alice_flush(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "c:1|c\nc:1|c\nc:1|c\nb:3|c\na:3|c");
    alice_close(c);
    close(fd);
}
END_TEST

START_TEST(test_drop_unix)
{
    char path[108];
    unix_path(path, sizeof(path), "drop");
    unlink(path);
    char addr[128];
    snprintf(addr, sizeof(addr), "unix://%s", path);
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, addr, MANUAL), 0);
    ck_assert_int_eq(alice_counter(c, "x", 1, NULL, 0), 0);
    ck_assert_int_eq(alice_flush(c), ALICE_DROPPED);
    alice_stats st;
    alice_get_stats(c, &st);
    ck_assert_uint_eq(st.datagrams_dropped, 1);
    ck_assert_uint_eq(st.lines_dropped, 1);
    ck_assert_int_eq(st.last_error, ENOENT);

    /* The daemon appears: the next flush connects. */
    int fd = unix_sink(path);
    ck_assert_int_eq(alice_counter(c, "x", 2, NULL, 0), 0);
    ck_assert_int_eq(alice_flush(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "x:2|c");

    /* It restarts (a new socket at the same path): reconnected. */
    close(fd);
    fd = unix_sink(path);
    ck_assert_int_eq(alice_counter(c, "x", 3, NULL, 0), 0);
    ck_assert_int_eq(alice_flush(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "x:3|c");
    alice_close(c);
    close(fd);
    unlink(path);
}
END_TEST

START_TEST(test_drop_udp)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    close(fd); /* nobody listens on that port now */
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, addr, MANUAL), 0);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(alice_counter(c, "x", 1, NULL, 0), 0);
        ck_assert_int_eq(alice_flush(c), ALICE_DROPPED);
    }
    alice_stats st;
    alice_get_stats(c, &st);
    ck_assert_uint_eq(st.datagrams_dropped, 3);
    ck_assert_int_eq(st.last_error, ECONNREFUSED);
    ck_assert_int_eq(alice_counter(c, "x", 1, NULL, 0), 0);
    ck_assert_int_eq(alice_close(c), ALICE_DROPPED);
}
END_TEST

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A reader that never reads: the socket buffer fills, datagrams are
 * dropped and counted, and no call waits. */
START_TEST(test_full_socket_never_blocks)
{
    char path[108];
    unix_path(path, sizeof(path), "full");
    int fd = unix_sink(path);
    char addr[128];
    snprintf(addr, sizeof(addr), "unix://%s", path);
    alice_options o = ALICE_OPTIONS_INIT;
    o.flags = MANUAL;
    o.max_datagram = 8192;
    alice_client *c;
    ck_assert_int_eq(alice_open_opts(&c, addr, &o), 0);
    double t0 = now_s();
    double worst = 0;
    for (int i = 0; i < 200000; i++) {
        double t = now_s();
        ck_assert_int_eq(alice_counter(c, "alice_flood_total", i,
                                       ALICE_LABELS({"worker", "w1"}, {"queue", "default"})),
                         0);
        t = now_s() - t;
        if (t > worst)
            worst = t;
    }
    double total = now_s() - t0;
    alice_stats st;
    alice_get_stats(c, &st);
    ck_assert_uint_gt(st.datagrams_dropped, 0);
    ck_assert_int_eq(st.last_error, EAGAIN);
    ck_assert_uint_eq(st.calls, 200000);
    ck_assert_msg(total < 5.0, "200000 calls took %.3f s", total);
    ck_assert_msg(worst < 0.5, "one call took %.3f s", worst);
    alice_close(c);
    close(fd);
    unlink(path);
}
END_TEST

typedef struct worker {
    alice_client *c;
    int id;
    int n;
} worker_t;

static void *count_worker(void *arg)
{
    worker_t *w = arg;
    char id[16];
    snprintf(id, sizeof(id), "%d", w->id);
    for (int i = 0; i < w->n; i++) {
        alice_counter(w->c, "shared", 1, NULL, 0);
        alice_counter(w->c, "mine", 1, ALICE_LABELS({"thread", id}));
        alice_gauge_add(w->c, "level", (i & 1) ? -1 : 1, NULL, 0);
        if (i % 1000 == 0)
            alice_flush(w->c);
    }
    return NULL;
}

/* Aggregated sums from 4 threads add up exactly. */
START_TEST(test_threads_aggregate)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    int rcvbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, addr, ALICE_AGGREGATE | MANUAL), 0);
    pthread_t t[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){c, i, 20000};
        pthread_create(&t[i], NULL, count_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    ck_assert_int_eq(alice_flush(c), 0);
    double shared = 0, mine[4] = {0}, level = 0;
    while (recv_str(fd, buf, sizeof(buf), 200) >= 0) {
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            double v;
            int id;
            if (sscanf(line, "shared:%lf|c", &v) == 1)
                shared += v;
            else if (sscanf(line, "mine:%lf|c|#thread:%d", &v, &id) == 2 && id >= 0 && id < 4)
                mine[id] += v;
            else if (sscanf(line, "level:%lf|g", &v) == 1)
                level += v;
            else
                ck_abort_msg("unexpected line '%s'", line);
        }
    }
    ck_assert_double_eq(shared, 80000);
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq(mine[i], 20000);
    ck_assert_double_eq(level, 0);
    alice_stats st;
    alice_get_stats(c, &st);
    ck_assert_uint_eq(st.datagrams_dropped, 0);
    alice_close(c);
    close(fd);
}
END_TEST

typedef struct reader {
    int fd;
    int lines;
    int bad;
    volatile int stop;
} reader_t;

static void *read_lines(void *arg)
{
    reader_t *r = arg;
    static char rbuf[70000];
    for (;;) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1) {
            if (r->stop)
                return NULL;
            continue;
        }
        ssize_t n = recv(r->fd, rbuf, sizeof(rbuf) - 1, 0);
        if (n <= 0)
            continue;
        rbuf[n] = '\0';
        char *save = NULL;
        for (char *line = strtok_r(rbuf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            int id, k;
            char tail;
            if (sscanf(line, "t:%d|c|#thread:%d%c", &k, &id, &tail) == 2 && k == 1)
                r->lines++;
            else
                r->bad++;
        }
    }
}

static void *line_worker(void *arg)
{
    worker_t *w = arg;
    char id[16];
    snprintf(id, sizeof(id), "%d", w->id);
    for (int i = 0; i < w->n; i++)
        alice_counter(w->c, "t", 1, ALICE_LABELS({"thread", id}));
    return NULL;
}

/* Buffered lines from 4 threads arrive whole: every line sent or counted
 * as dropped, none torn. */
START_TEST(test_threads_lines)
{
    char path[108];
    unix_path(path, sizeof(path), "thrl");
    int fd = unix_sink(path);
    char addr[128];
    snprintf(addr, sizeof(addr), "unix://%s", path);
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, addr, 0), 0);
    reader_t r = {.fd = fd};
    pthread_t rt;
    pthread_create(&rt, NULL, read_lines, &r);
    pthread_t t[4];
    worker_t w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (worker_t){c, i, 20000};
        pthread_create(&t[i], NULL, line_worker, &w[i]);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    alice_flush(c);
    alice_stats st;
    alice_get_stats(c, &st);
    /* give the reader time to drain what was sent */
    double deadline = now_s() + 5;
    while ((uint64_t)r.lines < st.lines_sent && now_s() < deadline)
        usleep(10000);
    r.stop = 1;
    pthread_join(rt, NULL);
    ck_assert_int_eq(r.bad, 0);
    ck_assert_uint_eq(st.calls, 80000);
    ck_assert_uint_eq((uint64_t)r.lines, st.lines_sent);
    ck_assert_uint_eq(st.lines_sent + st.lines_dropped, 80000);
    alice_close(c);
    close(fd);
    unlink(path);
}
END_TEST

/* The flusher thread sends a lone line without any further call. */
START_TEST(test_interval_thread)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    alice_options o = ALICE_OPTIONS_INIT;
    o.flush_interval_ms = 50;
    alice_client *c;
    ck_assert_int_eq(alice_open_opts(&c, addr, &o), 0);
    ck_assert_int_eq(alice_counter(c, "lone", 1, NULL, 0), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 3000), 0);
    ck_assert_str_eq(buf, "lone:1|c");
    alice_close(c);
    close(fd);
}
END_TEST

/* Aggregated values go out every interval too. */
START_TEST(test_interval_aggregate)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    alice_options o = ALICE_OPTIONS_INIT;
    o.flags = ALICE_AGGREGATE;
    o.flush_interval_ms = 50;
    alice_client *c;
    ck_assert_int_eq(alice_open_opts(&c, addr, &o), 0);
    for (int i = 0; i < 10; i++)
        alice_counter(c, "agg", 1, NULL, 0);
    double total = 0;
    double deadline = now_s() + 3;
    while (total < 10 && now_s() < deadline) {
        if (recv_str(fd, buf, sizeof(buf), 100) >= 0) {
            double v;
            ck_assert_int_eq(sscanf(buf, "agg:%lf|c", &v), 1);
            total += v;
        }
    }
    ck_assert_double_eq(total, 10);
    alice_close(c);
    close(fd);
}
END_TEST

/* Without the thread, a later call keeps the interval. */
START_TEST(test_interval_lazy)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    alice_options o = ALICE_OPTIONS_INIT;
    o.flags = ALICE_NO_THREAD;
    o.flush_interval_ms = 50;
    alice_client *c;
    ck_assert_int_eq(alice_open_opts(&c, addr, &o), 0);
    ck_assert_int_eq(alice_counter(c, "a", 1, NULL, 0), 0);
    usleep(150000);
    ck_assert_int_eq(recv_str(fd, buf, sizeof(buf), 0), -1);
    ck_assert_int_eq(alice_counter(c, "b", 1, NULL, 0), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "a:1|c\nb:1|c");
    alice_close(c);
    close(fd);
}
END_TEST

START_TEST(test_unlocked)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, addr, ALICE_UNLOCKED | ALICE_AGGREGATE), 0);
    for (int i = 0; i < 100; i++)
        alice_counter(c, "u", 1, NULL, 0);
    ck_assert_int_eq(alice_close(c), 0); /* close flushes */
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "u:100|c");
    close(fd);
}
END_TEST

START_TEST(test_env_addr)
{
    char addr[64];
    int fd = udp_sink(addr, sizeof(addr));
    setenv("ALICE_METRICS_ADDR", addr, 1);
    alice_client *c;
    ck_assert_int_eq(alice_open(&c, NULL, MANUAL), 0);
    alice_counter(c, "env", 1, NULL, 0);
    ck_assert_int_eq(alice_close(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "env:1|c");
    char udp[80];
    snprintf(udp, sizeof(udp), "udp://%s", addr);
    setenv("ALICE_METRICS_ADDR", udp, 1);
    ck_assert_int_eq(alice_open(&c, "", MANUAL), 0);
    alice_gauge(c, "env", 2, NULL, 0);
    ck_assert_int_eq(alice_close(c), 0);
    ck_assert_int_ge(recv_str(fd, buf, sizeof(buf), 2000), 0);
    ck_assert_str_eq(buf, "env:2|g");
    setenv("ALICE_METRICS_ADDR", "tcp://nope", 1);
    ck_assert_int_eq(alice_open(&c, NULL, MANUAL), -EINVAL);
    unsetenv("ALICE_METRICS_ADDR");
    close(fd);
}
END_TEST

static Suite *client_suite(void)
{
    Suite *s = suite_create("Client");
    TCase *tc = tcase_create("api");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_null_client);
    tcase_add_test(tc, test_lines);
    tcase_add_test(tc, test_invalid);
    tcase_add_test(tc, test_packing);
    tcase_add_test(tc, test_aggregate);
    tcase_add_test(tc, test_aggregate_full);
    tcase_add_test(tc, test_drop_unix);
    tcase_add_test(tc, test_drop_udp);
    tcase_add_test(tc, test_full_socket_never_blocks);
    tcase_add_test(tc, test_threads_aggregate);
    tcase_add_test(tc, test_threads_lines);
    tcase_add_test(tc, test_interval_thread);
    tcase_add_test(tc, test_interval_aggregate);
    tcase_add_test(tc, test_interval_lazy);
    tcase_add_test(tc, test_unlocked);
    tcase_add_test(tc, test_env_addr);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(client_suite)
