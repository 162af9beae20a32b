#include "ingest.h"

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

struct am_ingest {
    uv_poll_t poll;
    int fd;
    int transport;
    int port;
    int rcvbuf;
    char *path; /* unix only, owned */
    am_ingest_fn fn;
    am_ingest_batch_fn batch_fn; /* NULL: one loop, no lock */
    void *ctx;
    am_recvbatch_t batch;
};

static void on_readable(uv_poll_t *h, int status, int events)
{
    am_ingest_t *in = h->data;
    if (status < 0) {
        am_log(AM_LOG_WARN, "event=ingest_poll_error transport=%s error=%s",
               in->transport == AM_TRANSPORT_UDP ? "udp" : "unix", uv_strerror(status));
        return;
    }
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
            return;
        }
        if (in->batch_fn && n > 0)
            in->batch_fn(in->ctx, true);
        /* Only the n messages the kernel filled, never the whole array. */
        for (int i = 0; i < n; i++) {
            size_t len;
            bool trunc;
            const char *p = am_recvbatch_get(&in->batch, i, &len, &trunc);
            in->fn(in->ctx, in->transport, p, len, trunc);
        }
        if (in->batch_fn && n > 0)
            in->batch_fn(in->ctx, false);
        if (n < AM_RECV_BATCH)
            return;
    }
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
    ingest_free(h->data);
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
    rc = uv_poll_start(&in->poll, UV_READABLE, on_readable);
    if (rc < 0) {
        if (in->path)
            unlink(in->path);
        uv_close((uv_handle_t *)&in->poll, on_closed);
        return rc;
    }
    return 0;
}

int am_ingest_open_udp(uv_loop_t *loop, const char *host, int port, int rcvbuf, unsigned flags,
                       am_ingest_fn fn, void *ctx, am_ingest_t **out)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t sl;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        sl = sizeof(*s4);
    } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        sl = sizeof(*s6);
    } else {
        return -EINVAL;
    }
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
    in->port = ntohs(ss.ss_family == AF_INET ? s4->sin_port : s6->sin6_port);
    int rc = start_poll(loop, in);
    if (rc < 0)
        return rc;
    *out = in;
    return 0;
}

int am_ingest_open_unix(uv_loop_t *loop, const char *path, int rcvbuf, am_ingest_fn fn, void *ctx,
                        am_ingest_t **out)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path));

    struct stat st;
    if (lstat(path, &st) == 0) {
        /* Never delete what is not ours to delete: only a socket is stale. */
        if (!S_ISSOCK(st.st_mode))
            return -EEXIST;
        if (unlink(path) != 0)
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
    if (bind(in->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = -errno;
        ingest_free(in);
        return e;
    }
    /* Workers often run as other users (sidecar containers): anyone who can
     * reach the directory may send. Restrict access with the directory. */
    (void)chmod(path, 0666);
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
    uv_poll_stop(&in->poll);
    if (in->path)
        unlink(in->path);
    uv_close((uv_handle_t *)&in->poll, on_closed);
}
