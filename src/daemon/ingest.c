#include "ingest.h"

#include <assert.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "recvbatch.h"

#define MAX_BATCHES_PER_WAKE 16
#define READ_NOW_DRAINS      4

/* UDP wake-up coalescing. A wake-up that finds at least COALESCE_MIN
 * datagrams means they arrive faster than the loop wakes; then the socket is
 * read every COALESCE_MS instead of at every arrival, so one wake-up (and
 * its epoll_wait, context switch and short recvmmsg) serves hundreds of
 * datagrams instead of two or three. A wake-up that finds fewer goes back
 * to waking at arrivals. Never for the Unix socket: its senders block once
 * max_dgram_qlen datagrams wait (and workers must never block). Only with a
 * receive buffer of at least COALESCE_MIN_RCVBUF (the kernel's doubled
 * figure), which holds the 2 ms a wait can last at well over 1M datagrams/s. */
#define COALESCE_MS         1
#define COALESCE_MIN        2
#define COALESCE_MIN_RCVBUF (8 << 20)

struct am_ingest {
    uv_poll_t poll;
    uv_timer_t wait;      /* coalescing: the next read while the poll handle is stopped */
    unsigned coalesce_ms; /* 0: every arrival wakes the loop (Unix, small buffers) */
    int open_handles;     /* freed when both handles are closed */
    int fd;
    int transport;
    int port;
    int rcvbuf;
    char *path; /* unix only, owned */
    dev_t dev;  /* unix: the socket file we made; unlinked at close only if still ours */
    ino_t ino;
    am_ingest_fn fn;
    am_ingest_batch_fn batch_fn; /* NULL: one loop, no lock */
    uint64_t *wakeups;           /* reads that found datagrams; NULL: not counted */
    void *ctx;
    int current; /* the datagram being handed to fn: its index in batch */
    am_recvbatch_t batch;
};

/* Reads up to MAX_BATCHES_PER_WAKE batches and hands every datagram to
 * the callback. Returns how many datagrams were read; *full: it stopped at
 * the cap with more perhaps waiting. */
static int drain(am_ingest_t *in, bool *full)
{
    int total = 0;
    *full = false;
    for (int b = 0; b < MAX_BATCHES_PER_WAKE; b++) {
        int n = am_recvbatch_recv(&in->batch, in->fd);
        if (n < 0) {
            if (n != -EAGAIN && n != -EWOULDBLOCK && n != -EINTR) {
                if (in->batch_fn)
                    in->batch_fn(in->ctx, true);
                in->fn(in->ctx, in->transport, NULL, 0, false); /* counted as an error */
                if (in->batch_fn)
                    in->batch_fn(in->ctx, false);
            }
            return total;
        }
        if (in->batch_fn && n > 0)
            in->batch_fn(in->ctx, true);
        if (total == 0 && n > 0 && in->wakeups)
            (*in->wakeups)++; /* under the batch lock, like the datagram counts */
        /* Only the n messages the kernel filled, never the whole array. */
        assert(n <= AM_RECV_BATCH);
        for (int i = 0; i < n; i++) {
            size_t len;
            bool trunc;
            const char *p = am_recvbatch_get(&in->batch, i, &len, &trunc);
            in->current = i;
            in->fn(in->ctx, in->transport, p, len, trunc);
        }
        if (in->batch_fn && n > 0)
            in->batch_fn(in->ctx, false);
        total += n;
        if (n < AM_RECV_BATCH)
            return total;
    }
    *full = true;
    return total;
}

static void on_readable(uv_poll_t *h, int status, int events);

/* Coalescing: the wait is over. Keeps reading every COALESCE_MS while each
 * read finds COALESCE_MIN datagrams or more; a backlog (a read that stopped
 * at its cap) or a trickle goes back to the poll handle, which wakes at
 * once for a backlog (level-triggered) and at the next arrival otherwise. */
static void on_wait_over(uv_timer_t *t)
{
    am_ingest_t *in = t->data;
    bool full;
    int n = drain(in, &full);
    if (in->coalesce_ms > 0 && !full && n >= COALESCE_MIN)
        uv_timer_start(&in->wait, on_wait_over, in->coalesce_ms, 0);
    else if (uv_poll_start(&in->poll, UV_READABLE, on_readable) != 0)
        uv_timer_start(&in->wait, on_wait_over, COALESCE_MS, 0); /* read on, somehow */
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    (void)events;
    am_ingest_t *in = h->data;
    if (status < 0) {
        am_log(AM_LOG_WARN, "event=ingest_poll_error transport=%s error=%s",
               in->transport == AM_TRANSPORT_UDP ? "udp" : "unix", uv_strerror(status));
        return;
    }
    bool full;
    int n = drain(in, &full);
    if (in->coalesce_ms > 0 && !full && n >= COALESCE_MIN) {
        uv_poll_stop(&in->poll);
        uv_timer_start(&in->wait, on_wait_over, in->coalesce_ms, 0);
    }
}

void am_ingest_read_now(am_ingest_t *in)
{
    /* A few wake-ups' worth (4,096 datagrams, a few ms): everything that a
     * burst left waiting, yet bounded under a flood. */
    bool full = true;
    for (int i = 0; i < READ_NOW_DRAINS && full; i++)
        (void)drain(in, &full);
}

static void set_rcvbuf(am_ingest_t *in, int want)
{
    if (want > 0) {
        if (setsockopt(in->fd, SOL_SOCKET, SO_RCVBUFFORCE, &want, sizeof(want)) != 0)
            (void)setsockopt(in->fd, SOL_SOCKET, SO_RCVBUF, &want, sizeof(want));
    }
    int got = 0;
    socklen_t sl = sizeof(got);
    if (getsockopt(in->fd, SOL_SOCKET, SO_RCVBUF, &got, &sl) == 0)
        in->rcvbuf = got;
}

static am_ingest_t *ingest_new(int transport, am_ingest_fn fn, void *ctx)
{
    am_ingest_t *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    if (am_recvbatch_init(&in->batch) != 0) {
        free(in);
        return NULL;
    }
    in->fd = -1;
    in->transport = transport;
    in->fn = fn;
    in->ctx = ctx;
    return in;
}

static void ingest_free(am_ingest_t *in)
{
    if (in->fd >= 0)
        close(in->fd);
    free(in->path);
    am_recvbatch_free(&in->batch);
    free(in);
}

static void on_closed(uv_handle_t *h)
{
    am_ingest_t *in = h->data;
    assert(in->open_handles > 0);
    if (--in->open_handles == 0)
        ingest_free(in);
}

static void close_handles(am_ingest_t *in)
{
    uv_close((uv_handle_t *)&in->poll, on_closed);
    uv_close((uv_handle_t *)&in->wait, on_closed);
}

/* The file at path is the socket we bound (not one put there since). */
static bool still_ours(const am_ingest_t *in)
{
    struct stat st;
    return lstat(in->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == in->dev &&
           st.st_ino == in->ino;
}

/* On failure in is freed (through libuv once its handle exists). */
static int start_poll(uv_loop_t *loop, am_ingest_t *in)
{
    int rc = uv_poll_init(loop, &in->poll, in->fd);
    if (rc < 0) {
        ingest_free(in);
        return rc;
    }
    in->poll.data = in;
    in->wait.data = in;
    (void)uv_timer_init(loop, &in->wait); /* cannot fail */
    in->open_handles = 2;
    if (in->transport == AM_TRANSPORT_UDP && in->rcvbuf >= COALESCE_MIN_RCVBUF)
        in->coalesce_ms = COALESCE_MS;
    rc = uv_poll_start(&in->poll, UV_READABLE, on_readable);
    if (rc < 0) {
        if (in->path && still_ours(in))
            unlink(in->path);
        close_handles(in);
        return rc;
    }
    return 0;
}

/* host (an IPv4 or IPv6 literal) and port as a socket address: 0, or
 * -EINVAL for anything but a literal. */
static int udp_address(const char *host, int port, struct sockaddr_storage *ss, socklen_t *sl)
{
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        *sl = sizeof(*s4);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *sl = sizeof(*s6);
    } else {
        return -EINVAL;
    }
    return 0;
}

int am_ingest_open_udp(uv_loop_t *loop, const char *host, int port, int rcvbuf, unsigned flags,
                       am_ingest_fn fn, void *ctx, am_ingest_t **out)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (udp_address(host, port, &ss, &sl) != 0)
        return -EINVAL;
    am_ingest_t *in = ingest_new(AM_TRANSPORT_UDP, fn, ctx);
    if (!in)
        return -ENOMEM;
    in->fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (in->fd < 0) {
        int e = -errno;
        ingest_free(in);
        return e;
    }
    set_rcvbuf(in, rcvbuf);
    int one = 1;
    if ((flags & AM_INGEST_REUSEPORT) &&
        setsockopt(in->fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        int e = -errno;
        ingest_free(in);
        return e;
    }
    if (bind(in->fd, (struct sockaddr *)&ss, sl) != 0) {
        int e = -errno;
        ingest_free(in);
        return e;
    }
    sl = sizeof(ss);
    getsockname(in->fd, (struct sockaddr *)&ss, &sl);
    in->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                             : ((struct sockaddr_in6 *)&ss)->sin6_port);
    int rc = start_poll(loop, in);
    if (rc < 0)
        return rc;
    *out = in;
    return 0;
}

/* Whether a process serves the socket file at sa: a datagram connect
 * reaches a bound socket, and is refused at a file that nobody holds.
 * 0: stale (or gone); -EADDRINUSE: served (by a datagram socket, or a
 * socket of another type); another errno when it cannot tell. */
static int socket_served(const struct sockaddr_un *sa)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
    int e = rc == 0 ? 0 : errno;
    close(fd);
    if (rc == 0 || e == EPROTOTYPE)
        return -EADDRINUSE;
    if (e == ECONNREFUSED || e == ENOENT)
        return 0;
    return -e;
}

int am_ingest_open_unix(uv_loop_t *loop, const char *path, int rcvbuf, unsigned mode,
                        am_ingest_fn fn, void *ctx, am_ingest_t **out)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    if (mode > 0777)
        return -EINVAL;
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));

    struct stat st;
    if (lstat(path, &st) == 0) {
        /* Never delete what is not ours to delete: only a socket that no
         * process serves is stale. lstat: a symlink is itself "in the way",
         * never followed (and bind would not follow it either). */
        if (S_ISLNK(st.st_mode))
            return -ELOOP;
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        int rc = socket_served(&sa);
        if (rc < 0)
            return rc;
        if (unlink(path) != 0 && errno != ENOENT)
            return -errno;
    }
    am_ingest_t *in = ingest_new(AM_TRANSPORT_UNIX, fn, ctx);
    if (!in)
        return -ENOMEM;
    in->path = strdup(path);
    in->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!in->path || in->fd < 0) {
        int e = in->path ? -errno : -ENOMEM;
        ingest_free(in);
        return e;
    }
    set_rcvbuf(in, rcvbuf);
    /* Every datagram comes with its sender's pid and uid (am_ingest_sender). */
    int one = 1;
    if (setsockopt(in->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) == 0)
        am_recvbatch_want_creds(&in->batch);
    /* The file is born with its mode: bind creates it with 0777 & ~umask,
     * so the umask is set around the bind (no window in which a chmod has
     * yet to come). The umask is the process's: this runs before the
     * worker threads start, and nothing else creates files meanwhile. */
    mode_t old = umask((mode_t)(~mode & 0777));
    int brc = bind(in->fd, (struct sockaddr *)&sa, sizeof(sa));
    int berr = errno;
    umask(old);
    if (brc != 0) {
        ingest_free(in);
        return -berr;
    }
    if (lstat(path, &st) == 0) {
        in->dev = st.st_dev;
        in->ino = st.st_ino;
    }
    int rc = start_poll(loop, in);
    if (rc < 0)
        return rc;
    *out = in;
    return 0;
}

void am_ingest_set_batch_fn(am_ingest_t *in, am_ingest_batch_fn fn)
{
    in->batch_fn = fn;
}

void am_ingest_count_wakeups(am_ingest_t *in, uint64_t *counter)
{
    in->wakeups = counter;
}

bool am_ingest_sender(const am_ingest_t *in, uint32_t *pid, uint32_t *uid)
{
    return am_recvbatch_creds(&in->batch, in->current, pid, uid);
}

unsigned am_ingest_coalesce_ms(const am_ingest_t *in)
{
    return in->coalesce_ms;
}

void am_ingest_set_coalesce_ms(am_ingest_t *in, unsigned ms)
{
    in->coalesce_ms = ms;
}

int am_ingest_port(const am_ingest_t *in)
{
    return in->port;
}

int am_ingest_rcvbuf(const am_ingest_t *in)
{
    return in->rcvbuf;
}

void am_ingest_close(am_ingest_t *in)
{
    assert(!uv_is_closing((uv_handle_t *)&in->poll)); /* closed once */
    uv_poll_stop(&in->poll);
    uv_timer_stop(&in->wait);
    if (in->path && still_ours(in))
        unlink(in->path);
    close_handles(in);
}

int am_ingest_udp_port_free(const char *host, int port)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (udp_address(host, port, &ss, &sl) != 0)
        return -EINVAL;
    /* Without SO_REUSEPORT: any socket bound there, grouped or not, makes
     * this bind fail. */
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int rc = bind(fd, (struct sockaddr *)&ss, sl) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}
