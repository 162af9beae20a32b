#include "addr.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* "1".."65535", digits only (no sign, no spaces, no leading "+"). */
static bool parse_port(const char *p, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5)
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (unsigned)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

static bool set_host(am_addr_t *out, const char *p, size_t n)
{
    if (n == 0 || n > AM_ADDR_HOST_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        /* Whitespace, '/' or '@' mean a URL we do not speak; a '[' or ']'
         * left here means unbalanced brackets. */
        if (c <= ' ' || c == '/' || c == '@' || c == '[' || c == ']' || c >= 0x7f)
            return false;
    }
    memcpy(out->host, p, n);
    out->host[n] = '\0';
    return true;
}

int am_addr_parse(const char *spec, am_addr_t *out)
{
    if (!spec || !*spec)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    const char *path = NULL;
    if (has_prefix(spec, "unix://"))
        path = spec + 7;
    else if (spec[0] == '/')
        path = spec;
    if (path) {
        size_t n = strlen(path);
        if (n == 0 || n > AM_ADDR_PATH_MAX)
            return -EINVAL;
        out->kind = AM_ADDR_UNIX;
        memcpy(out->path, path, n + 1);
        return 0;
    }

    const char *rest = spec;
    if (has_prefix(rest, "udp://"))
        rest += 6;
    else if (strstr(rest, "://"))
        return -EINVAL; /* tcp://, http://: not a StatsD datagram target */
    out->kind = AM_ADDR_UDP;
    out->port = AM_ADDR_DEFAULT_PORT;
    size_t n = strlen(rest);

    if (rest[0] == '[') {
        /* [v6]  or  [v6]:port */
        const char *close = memchr(rest, ']', n);
        if (!close)
            return -EINVAL;
        if (!set_host(out, rest + 1, (size_t)(close - rest - 1)))
            return -EINVAL;
        const char *after = close + 1;
        if (*after == '\0')
            return 0;
        if (*after != ':' || !parse_port(after + 1, strlen(after + 1), &out->port))
            return -EINVAL;
        return 0;
    }

    const char *colon = strchr(rest, ':');
    if (colon && strchr(colon + 1, ':')) {
        /* Two or more colons and no brackets: a bare IPv6 literal, default
         * port (an IPv6 address with a port needs the brackets). */
        return set_host(out, rest, n) ? 0 : -EINVAL;
    }
    if (!colon)
        return set_host(out, rest, n) ? 0 : -EINVAL;
    if (!set_host(out, rest, (size_t)(colon - rest)))
        return -EINVAL;
    if (!parse_port(colon + 1, strlen(colon + 1), &out->port))
        return -EINVAL;
    return 0;
}

size_t am_addr_format(const am_addr_t *a, char *out, size_t cap)
{
    int n;
    if (a->kind == AM_ADDR_UNIX)
        n = snprintf(out, cap, "unix://%s", a->path);
    else if (strchr(a->host, ':'))
        n = snprintf(out, cap, "udp://[%s]:%u", a->host, (unsigned)a->port);
    else
        n = snprintf(out, cap, "udp://%s:%u", a->host, (unsigned)a->port);
    return n < 0 ? 0 : (size_t)n;
}

int am_dgram_open(am_dgram_t *d, const am_addr_t *a, bool nonblock, unsigned timeout_ms)
{
    memset(d, 0, sizeof(*d));
    d->fd = -1;
    d->kind = a->kind;
    d->nonblock = nonblock;
    d->timeout_ms = timeout_ms;
    if (a->kind == AM_ADDR_UNIX) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&d->addrs[0];
        sun->sun_family = AF_UNIX;
        size_t n = strlen(a->path);
        if (n >= sizeof(sun->sun_path))
            return -EINVAL;
        memcpy(sun->sun_path, a->path, n + 1);
        d->lens[0] = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
        d->naddrs = 1;
        return 0;
    }

    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)a->port);
    /* No AI_ADDRCONFIG: it hides 127.0.0.1 on hosts whose only IPv4
     * interface is loopback (containers), which is exactly our case. */
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_DGRAM,
        .ai_protocol = IPPROTO_UDP,
        .ai_flags = AI_NUMERICSERV,
    };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(a->host, port, &hints, &res);
    if (rc != 0) {
        if (rc == EAI_MEMORY)
            return -ENOMEM;
        if (rc == EAI_SYSTEM && errno == ENOMEM)
            return -ENOMEM;
        return -EADDRNOTAVAIL;
    }
    for (struct addrinfo *ai = res; ai && d->naddrs < AM_ADDR_MAX_RESOLVED; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof(d->addrs[0]))
            continue;
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        memcpy(&d->addrs[d->naddrs], ai->ai_addr, ai->ai_addrlen);
        d->lens[d->naddrs] = ai->ai_addrlen;
        d->naddrs++;
    }
    freeaddrinfo(res);
    return d->naddrs ? 0 : -EADDRNOTAVAIL;
}

/* Opens (if needed) a socket of the current address' family and connects
 * it. A connected socket makes send() cheap and lets the kernel report an
 * absent daemon (ECONNREFUSED) instead of dropping silently. */
static int dgram_connect(am_dgram_t *d)
{
    const struct sockaddr *sa = (const struct sockaddr *)&d->addrs[d->cur];
    if (d->fd >= 0 && (d->family != sa->sa_family || d->kind == AM_ADDR_UNIX)) {
        /* A Unix datagram socket that was connected to a peer that died
         * cannot always be reconnected in place; a new one is cheap. */
        close(d->fd);
        d->fd = -1;
    }
    if (d->fd < 0) {
        int type = SOCK_DGRAM | SOCK_CLOEXEC | (d->nonblock ? SOCK_NONBLOCK : 0);
        d->fd = socket(sa->sa_family, type, 0);
        if (d->fd < 0)
            return -errno;
        d->family = sa->sa_family;
        if (d->kind == AM_ADDR_UNIX) {
            /* A Unix datagram stays charged to the sender until the daemon
             * reads it: the default 208 KiB holds only six 32 KiB
             * datagrams of a burst. Best effort (capped by wmem_max). */
            int sndbuf = AM_DGRAM_UNIX_SNDBUF;
            (void)setsockopt(d->fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        }
        if (!d->nonblock && d->timeout_ms) {
            struct timeval tv = {
                .tv_sec = (time_t)(d->timeout_ms / 1000),
                .tv_usec = (suseconds_t)(d->timeout_ms % 1000) * 1000,
            };
            /* Best effort: without it a blocking send could wait longer. */
            (void)setsockopt(d->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        }
    }
    d->connected = false;
    if (connect(d->fd, sa, d->lens[d->cur]) < 0)
        return -errno;
    d->connected = true;
    return 0;
}

bool am_dgram_absent(int err)
{
    if (err < 0)
        err = -err;
    return err == ECONNREFUSED || err == ENOENT || err == ENOTCONN || err == EDESTADDRREQ ||
           err == ECONNRESET;
}

static int send_once(am_dgram_t *d, const void *p, size_t n)
{
    if (!d->connected) {
        int rc = dgram_connect(d);
        if (rc < 0)
            return rc;
    }
    ssize_t r = send(d->fd, p, n, MSG_NOSIGNAL | (d->nonblock ? MSG_DONTWAIT : 0));
    if (r < 0) {
        int e = errno;
        if (e == EINTR)
            return -EAGAIN;
        return -e;
    }
    if (d->kind == AM_ADDR_UDP) {
        /* On loopback the "port unreachable" answer is processed before
         * send() returns: reading it now charges the refusal to this
         * datagram instead of failing the next one. One cheap syscall per
         * datagram, not per line. */
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0)
            return -err;
    }
    return 0;
}

int am_dgram_send(am_dgram_t *d, const void *p, size_t n)
{
    if (d->naddrs == 0)
        return -EDESTADDRREQ;
    int rc = send_once(d, p, n);
    if (rc == 0 || !am_dgram_absent(rc))
        return rc;
    if (d->kind == AM_ADDR_UNIX) {
        /* The daemon restarted (a new socket at the path) or is gone. */
        d->connected = false;
        return send_once(d, p, n);
    }
    /* UDP, refused: try the other resolved addresses ("localhost" is ::1
     * and 127.0.0.1; the daemon may listen on only one of them). */
    for (size_t i = 1; i < d->naddrs; i++) {
        d->cur = (d->cur + 1) % d->naddrs;
        d->connected = false;
        rc = send_once(d, p, n);
        if (rc == 0 || !am_dgram_absent(rc))
            return rc;
    }
    return rc;
}

void am_dgram_close(am_dgram_t *d)
{
    if (d->fd >= 0)
        close(d->fd);
    d->fd = -1;
    d->connected = false;
}
