/* nullrecv: the floor for StatsD ingest benchmarks.
 *
 * Binds a UDP socket and/or a Unix datagram socket, drains them with
 * recvmmsg in batches of 64 datagrams with the daemon's own receive code
 * (recvbatch.c: the same buffers, the same layout), counts datagrams,
 * bytes and lines, and does nothing else.
 * Whatever a real aggregator spends on top of this is parsing, aggregation
 * and bookkeeping: "our lines per CPU-second as a fraction of nullrecv's" is
 * the figure that travels between machines.
 *
 * A line is what the daemon counts as one: every '\n'-terminated run of bytes
 * plus a final unterminated one, empty lines excluded (found with memchr, so
 * the cost is a scan of the bytes, not a parse).
 *
 * --coalesce-ms N reads a UDP socket as the daemon does under load (see
 * ingest.c): after a wake-up that found 2 datagrams or more (and did not
 * stop at its cap), the socket is left alone for N ms and then read again,
 * instead of waking at the next arrival. That is the same wait on the same
 * receive path, without the daemon's work: "alice / coalescing nullrecv" is
 * what the daemon's own per-line work costs; "alice / nullrecv" also counts
 * what coalescing saves.
 *
 * Reports (one logfmt line on stdout): on SIGUSR1 (and keeps running), and on
 * SIGTERM/SIGINT (then exits 0). With --status FILE the same line is also
 * rewritten to FILE about every 100 ms while datagrams arrive. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "recvbatch.h"

typedef struct counts {
    uint64_t datagrams;
    uint64_t lines;
    uint64_t bytes;
    uint64_t truncated;
    uint64_t recv_calls;
    uint64_t wakeups;
} counts_t;

static volatile sig_atomic_t stop_flag;
static volatile sig_atomic_t report_flag;

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        report_flag = 1;
    else
        stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: nullrecv [--udp HOST:PORT] [--unix PATH] [--rcvbuf BYTES] [--status FILE]\n"
               "                [--coalesce-ms N]\n"
               "\n"
               "Receives StatsD datagrams with recvmmsg (64 of up to 64 KiB per call), counts\n"
               "datagrams and lines, and does nothing else: the floor for ingest benchmarks.\n"
               "UDP port 0 binds any free port; the bound port is logged on stderr as\n"
               "  event=listening transport=udp addr=HOST port=N\n"
               "--coalesce-ms N: under load, read UDP every N ms as the daemon does\n"
               "(default 0: wake at every arrival, the plain floor).\n"
               "SIGUSR1 prints the counts on stdout; SIGTERM/SIGINT print them and exit.\n"
               "Default: --udp 127.0.0.1:8125.\n");
}

static double cpu_seconds(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

static void format_report(char *out, size_t cap, const counts_t *c)
{
    double u, s;
    double cpu = cpu_seconds(&u, &s);
    snprintf(out, cap,
             "datagrams=%llu lines=%llu bytes=%llu truncated=%llu recv_calls=%llu "
             "wakeups=%llu cpu_user=%.3f cpu_sys=%.3f cpu=%.3f lines_per_cpu_second=%.0f\n",
             (unsigned long long)c->datagrams, (unsigned long long)c->lines,
             (unsigned long long)c->bytes, (unsigned long long)c->truncated,
             (unsigned long long)c->recv_calls, (unsigned long long)c->wakeups, u, s, cpu,
             cpu > 0 ? (double)c->lines / cpu : 0.0);
}

static void write_status(const char *path, const char *line)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return;
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fputs(line, f);
    if (fclose(f) == 0)
        (void)rename(tmp, path);
}

/* Lines in one datagram, counted as the daemon splits (am_parse_datagram)
 * them: non-empty runs between '\n's (a lone '\r' is empty). */
static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if (le > p && !(le - p == 1 && *p == '\r'))
            lines++;
        p = nl ? nl + 1 : end;
    }
    return lines;
}

/* Up to 16 batches, like a daemon wake-up; the datagrams read, and *full
 * when it stopped at that cap. */
static int drain(am_recvbatch_t *batch, int fd, counts_t *c, bool *full)
{
    int total = 0;
    *full = false;
    for (int b = 0; b < 16; b++) {
        int n = am_recvbatch_recv(batch, fd);
        c->recv_calls++;
        if (n <= 0)
            return total;
        for (int i = 0; i < n; i++) {
            size_t len;
            bool trunc;
            const char *p = am_recvbatch_get(batch, i, &len, &trunc);
            c->truncated += trunc;
            c->datagrams++;
            c->bytes += len;
            c->lines += count_lines(p, len);
        }
        total += n;
        if (n < AM_RECV_BATCH)
            return total;
    }
    *full = true;
    return total;
}

static int split_hostport(const char *arg, char *host, size_t hcap, char *port, size_t pcap)
{
    const char *colon = strrchr(arg, ':');
    if (!colon)
        return -EINVAL;
    const char *h = arg;
    size_t hn = (size_t)(colon - arg);
    if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
        h++;
        hn -= 2;
    }
    if (hn == 0 || hn >= hcap || strlen(colon + 1) == 0 || strlen(colon + 1) >= pcap)
        return -EINVAL;
    memcpy(host, h, hn);
    host[hn] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static void set_rcvbuf(int fd, int want)
{
    if (want > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
}

static int open_udp(const char *arg, int rcvbuf)
{
    char host[256], port[16];
    if (split_hostport(arg, host, sizeof(host), port, sizeof(port)) != 0) {
        fprintf(stderr, "nullrecv: --udp wants HOST:PORT, got '%s'\n", arg);
        return -1;
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "nullrecv: %s: %s\n", arg, gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (set_rcvbuf(fd, rcvbuf), bind(fd, ai->ai_addr, ai->ai_addrlen) != 0)) {
        fprintf(stderr, "nullrecv: bind %s: %s\n", arg, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int bound = 0;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        bound = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                              : ((struct sockaddr_in6 *)&ss)->sin6_port);
    int got = 0;
    sl = sizeof(got);
    (void)getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &sl);
    fprintf(stderr, "event=listening transport=udp addr=%s port=%d receive_buffer=%d\n", host,
            bound, got);
    return fd;
}

static int open_unix(const char *path, int rcvbuf)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "nullrecv: --unix path too long\n");
        return -1;
    }
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            fprintf(stderr, "nullrecv: %s exists and is not a socket\n", path);
            return -1;
        }
        (void)unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || (set_rcvbuf(fd, rcvbuf), bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)) {
        fprintf(stderr, "nullrecv: bind %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int got = 0;
    socklen_t sl = sizeof(got);
    (void)getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &sl);
    fprintf(stderr, "event=listening transport=unix path=%s receive_buffer=%d\n", path, got);
    return fd;
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    const char *udp = NULL, *unix_path = NULL, *status = NULL;
    int rcvbuf = 8 << 20;
    int coalesce_ms = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--udp") == 0 && v) {
            udp = v;
            i++;
        } else if (strcmp(a, "--unix") == 0 && v) {
            unix_path = v;
            i++;
        } else if (strcmp(a, "--rcvbuf") == 0 && v) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 0 || x > INT_MAX) {
                fprintf(stderr, "nullrecv: bad --rcvbuf '%s'\n", v);
                return 2;
            }
            rcvbuf = (int)x;
            i++;
        } else if (strcmp(a, "--coalesce-ms") == 0 && v) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 0 || x > 1000) {
                fprintf(stderr, "nullrecv: bad --coalesce-ms '%s' (0..1000)\n", v);
                return 2;
            }
            coalesce_ms = (int)x;
            i++;
        } else if (strcmp(a, "--status") == 0 && v) {
            status = v;
            i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!udp && !unix_path)
        udp = "127.0.0.1:8125";

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal; /* no SA_RESTART: poll() returns EINTR */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    struct pollfd pfd[2];
    int nfd = 0;
    if (udp) {
        int fd = open_udp(udp, rcvbuf);
        if (fd < 0)
            return 1;
        pfd[nfd++] = (struct pollfd){.fd = fd, .events = POLLIN};
    }
    if (unix_path) {
        int fd = open_unix(unix_path, rcvbuf);
        if (fd < 0)
            return 1;
        pfd[nfd++] = (struct pollfd){.fd = fd, .events = POLLIN};
    }

    static am_recvbatch_t batch;
    if (am_recvbatch_init(&batch) != 0) {
        fprintf(stderr, "nullrecv: out of memory\n");
        return 1;
    }

    counts_t c;
    memset(&c, 0, sizeof(c));
    char line[512];
    double last_status = 0;
    /* Coalescing: the UDP socket (pfd[0]) is left out of poll() while it
     * waits, as the daemon stops its poll handle. */
    int udp_fd = udp ? pfd[0].fd : -1;
    bool waiting = false;
    double wait_until = 0;
    while (!stop_flag) {
        if (report_flag) {
            report_flag = 0;
            format_report(line, sizeof(line), &c);
            fputs(line, stdout);
            fflush(stdout);
        }
        int timeout = status ? 100 : -1;
        if (waiting) {
            double left_ms = (wait_until - now_mono()) * 1e3;
            timeout = left_ms <= 0 ? 0 : (int)left_ms + 1;
        }
        if (udp)
            pfd[0].fd = waiting ? -1 : udp_fd;
        int pr = poll(pfd, (nfds_t)nfd, timeout);
        if (pr < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "nullrecv: poll: %s\n", strerror(errno));
            break;
        }
        c.wakeups++;
        for (int k = 0; k < nfd; k++) {
            bool wait_over = udp && k == 0 && waiting && now_mono() >= wait_until;
            if (!(pfd[k].revents & POLLIN) && !wait_over)
                continue;
            bool full;
            int got = drain(&batch, k == 0 && udp ? udp_fd : pfd[k].fd, &c, &full);
            if (udp && k == 0 && coalesce_ms > 0) {
                waiting = !full && got >= 2;
                wait_until = now_mono() + coalesce_ms / 1e3;
            }
        }
        if (status) {
            double t = now_mono();
            if (t - last_status >= 0.1) {
                last_status = t;
                format_report(line, sizeof(line), &c);
                write_status(status, line);
            }
        }
    }
    format_report(line, sizeof(line), &c);
    fputs(line, stdout);
    fflush(stdout);
    if (status)
        write_status(status, line);
    for (int k = 0; k < nfd; k++)
        close(pfd[k].fd);
    if (unix_path)
        (void)unlink(unix_path);
    am_recvbatch_free(&batch);
    return 0;
}
