/* fetch: one blocking HTTP/1.1 GET over TCP or TLS (see fetch.h). The
 * socket is non-blocking and every wait is a poll bounded by the deadline,
 * so a daemon that accepts and never answers cannot hold the client. */
#include "fetch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "am_config.h"

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- URL ---- */

static bool copy_part(char *dst, size_t cap, const char *p, size_t n)
{
    if (n >= cap)
        return false;
    memcpy(dst, p, n);
    dst[n] = '\0';
    return true;
}

int am_url_parse(const char *s, am_url_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *p;
    if (strncasecmp(s, "http://", 7) == 0) {
        p = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        p = s + 8;
        out->https = true;
    } else {
        return fail(err, errlen, -EINVAL, "\"%s\" does not start with http:// or https://", s);
    }
    size_t alen = strcspn(p, "/?#");
    const char *rest = p + alen;
    if (*rest == '?' || *rest == '#' || strpbrk(rest, "?#"))
        return fail(err, errlen, -EINVAL, "\"%s\": a base URL takes no query or fragment", s);
    if (memchr(p, '@', alen))
        return fail(err, errlen, -EINVAL,
                    "\"%s\": no user in the URL (use --user and --password-file)", s);
    const char *host = p, *port = NULL;
    size_t hlen;
    if (*p == '[') {
        const char *close = memchr(p, ']', alen);
        if (!close)
            return fail(err, errlen, -EINVAL, "\"%s\": '[' without ']'", s);
        host = p + 1;
        hlen = (size_t)(close - host);
        out->ipv6 = true;
        if (close + 1 < rest) {
            if (close[1] != ':')
                return fail(err, errlen, -EINVAL, "\"%s\": junk after ']'", s);
            port = close + 2;
        }
    } else {
        const char *colon = memchr(p, ':', alen);
        hlen = colon ? (size_t)(colon - p) : alen;
        port = colon ? colon + 1 : NULL;
    }
    if (hlen == 0 || !copy_part(out->host, sizeof(out->host), host, hlen))
        return fail(err, errlen, -EINVAL, "\"%s\": empty or too long host", s);
    if (out->ipv6) {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1)
            return fail(err, errlen, -EINVAL, "\"%s\": [%s] is not an IPv6 address", s, out->host);
    }
    if (port) {
        size_t plen = (size_t)(rest - port);
        unsigned long v = 0;
        for (size_t i = 0; i < plen; i++) {
            if (port[i] < '0' || port[i] > '9' ||
                (v = v * 10 + (unsigned long)(port[i] - '0')) > 65535)
                return fail(err, errlen, -EINVAL, "\"%s\": bad port", s);
        }
        if (plen == 0 || v == 0)
            return fail(err, errlen, -EINVAL, "\"%s\": bad port", s);
        snprintf(out->port, sizeof(out->port), "%lu", v);
    } else {
        strcpy(out->port, out->https ? "443" : "80");
    }
    size_t plen = strlen(rest);
    while (plen > 0 && rest[plen - 1] == '/')
        plen--;
    if (!copy_part(out->path, sizeof(out->path), rest, plen))
        return fail(err, errlen, -EINVAL, "\"%s\": path too long", s);
    return 0;
}

/* ---- the connection ---- */

typedef struct conn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    struct timespec deadline;
} conn_t;

static long ms_left(const struct timespec *deadline)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms =
        (long)(deadline->tv_sec - now.tv_sec) * 1000 + (deadline->tv_nsec - now.tv_nsec) / 1000000;
    return ms > 0 ? ms : 0;
}

/* Waits until fd is ready for events: 0, -ETIMEDOUT or -EINTR. */
static int wait_fd(int fd, short events, const struct timespec *deadline)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    long ms = ms_left(deadline);
    if (ms == 0)
        return -ETIMEDOUT;
    int n = poll(&pfd, 1, (int)ms);
    if (n < 0)
        return -errno;
    return n == 0 ? -ETIMEDOUT : 0;
}

static int connect_one(const struct addrinfo *ai, const struct timespec *deadline)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        rc = errno == EINPROGRESS ? wait_fd(fd, POLLOUT, deadline) : -errno;
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr)
            rc = -soerr;
    }
    if (rc != 0) {
        close(fd);
        return rc;
    }
    return fd;
}

static int open_tcp(conn_t *c, const am_url_t *u, int timeout_ms, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(u->host, u->port, &hints, &res);
    if (g != 0)
        return fail(err, errlen, -EHOSTUNREACH, "cannot resolve %s: %s", u->host, gai_strerror(g));
    /* The connect has its own timeout within the total one. */
    struct timespec cdl;
    clock_gettime(CLOCK_MONOTONIC, &cdl);
    cdl.tv_sec += timeout_ms / 1000;
    cdl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (cdl.tv_nsec >= 1000000000) {
        cdl.tv_sec++;
        cdl.tv_nsec -= 1000000000;
    }
    int rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        rc = connect_one(ai, &cdl);
        if (rc >= 0 || rc == -EINTR)
            break;
    }
    freeaddrinfo(res);
    if (rc < 0)
        return fail(err, errlen, rc, "cannot connect: %s",
                    rc == -ETIMEDOUT ? "connect timed out" : strerror(-rc));
    c->fd = rc;
    return 0;
}

static const char *tls_error(void)
{
    unsigned long e = ERR_peek_last_error();
    return e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "unknown" : "closed";
}

/* One SSL_* call's outcome: > 0 done, 0 retry after the wait, < 0 error. */
static int tls_wait(conn_t *c, int n)
{
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        int rc = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, &c->deadline);
        return rc < 0 ? rc : 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN)
        return 1; /* the peer closed */
    return -EPROTO;
}

static int open_tls(conn_t *c, const am_url_t *u, const am_fetch_opts_t *o, char *err,
                    size_t errlen)
{
    c->ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ctx)
        return fail(err, errlen, -ENOMEM, "TLS: out of memory");
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
    if (!o->insecure) {
        SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
        int ok = o->cacert ? SSL_CTX_load_verify_locations(c->ctx, o->cacert, NULL)
                           : SSL_CTX_set_default_verify_paths(c->ctx);
        if (ok != 1)
            return fail(err, errlen, -EPROTO, "TLS: cannot load CA certificates%s%s: %s",
                        o->cacert ? " from " : "", o->cacert ? o->cacert : "", tls_error());
    }
    c->ssl = SSL_new(c->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
        return fail(err, errlen, -ENOMEM, "TLS: out of memory");
    unsigned char addr[16];
    bool is_ip = inet_pton(AF_INET, u->host, addr) == 1 || inet_pton(AF_INET6, u->host, addr) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(c->ssl, u->host);
    if (!o->insecure) {
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        int ok =
            is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) : SSL_set1_host(c->ssl, u->host);
        if (ok != 1)
            return fail(err, errlen, -ENOMEM, "TLS: cannot set the name to verify");
    }
    for (;;) {
        int n = SSL_connect(c->ssl);
        if (n == 1)
            return 0;
        int rc = tls_wait(c, n);
        if (rc == 0)
            continue;
        long v = SSL_get_verify_result(c->ssl);
        if (rc == -EPROTO && v != X509_V_OK)
            return fail(err, errlen, rc, "TLS: certificate not trusted: %s",
                        X509_verify_cert_error_string(v));
        if (rc == -EPROTO)
            return fail(err, errlen, rc, "TLS handshake failed: %s", tls_error());
        return fail(err, errlen, rc, "TLS handshake: %s",
                    rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
    }
}

static void conn_close(conn_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->ctx)
        SSL_CTX_free(c->ctx);
    if (c->fd >= 0)
        close(c->fd);
}

/* Writes n bytes: 0 or a negative errno. */
static int conn_write(conn_t *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w;
        if (c->ssl) {
            int k = SSL_write(c->ssl, p, (int)n);
            if (k <= 0) {
                int rc = tls_wait(c, k);
                if (rc != 0)
                    return rc > 0 ? -EPIPE : rc;
                continue;
            }
            w = k;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno != EAGAIN && errno != EWOULDBLOCK)
                    return -errno;
                int rc = wait_fd(c->fd, POLLOUT, &c->deadline);
                if (rc != 0)
                    return rc;
                continue;
            }
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads what comes: > 0 bytes, 0 at the end, or a negative errno. */
static ssize_t conn_read(conn_t *c, char *p, size_t cap)
{
    for (;;) {
        if (c->ssl) {
            int k = SSL_read(c->ssl, p, (int)cap);
            if (k > 0)
                return k;
            int rc = tls_wait(c, k);
            if (rc > 0)
                return 0;
            if (rc == -EPROTO && ERR_peek_last_error() == 0)
                return 0; /* closed without close_notify: the length decides */
            if (rc < 0)
                return rc;
            continue;
        }
        ssize_t n = recv(c->fd, p, cap, 0);
        if (n >= 0)
            return n;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -errno;
        int rc = wait_fd(c->fd, POLLIN, &c->deadline);
        if (rc != 0)
            return rc;
    }
}

/* ---- the exchange ---- */

static int build_request(char *req, size_t cap, const am_url_t *u, const char *path,
                         const am_fetch_opts_t *o)
{
    char auth[1024] = "";
    if (o->user) {
        char plain[512];
        int n = snprintf(plain, sizeof(plain), "%s:%s", o->user, o->password ? o->password : "");
        if (n < 0 || (size_t)n >= sizeof(plain))
            return -E2BIG;
        char b64[4 * (sizeof(plain) / 3) + 8];
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)plain, n);
        snprintf(auth, sizeof(auth), "Authorization: Basic %s\r\n", b64);
        OPENSSL_cleanse(plain, sizeof(plain));
    }
    bool default_port = strcmp(u->port, u->https ? "443" : "80") == 0;
    int n = snprintf(req, cap,
                     "GET %s%s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nUser-Agent: alice/%s\r\n"
                     "Accept: application/json\r\nConnection: close\r\n%s\r\n",
                     u->path, path, u->ipv6 ? "[" : "", u->host, u->ipv6 ? "]" : "",
                     default_port ? "" : ":", default_port ? "" : u->port, AM_VERSION, auth);
    OPENSSL_cleanse(auth, sizeof(auth));
    return n < 0 || (size_t)n >= cap ? -E2BIG : n;
}

/* The value of header name in the head (head_len bytes), or NULL; *n its
 * length. */
static const char *header(const char *head, size_t head_len, const char *name, size_t *n)
{
    size_t k = strlen(name);
    const char *p = memchr(head, '\n', head_len);
    const char *end = head + head_len;
    while (p && p + 1 < end) {
        p++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > k && strncasecmp(p, name, k) == 0 && p[k] == ':') {
            const char *v = p + k + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *n = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* Decodes a chunked body in place: its new length, or -EPROTO. */
static long dechunk(char *b, size_t n)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        if (in >= n)
            return -EPROTO;
        unsigned long sz = strtoul(b + in, &end, 16);
        const char *eol = memchr(b + in, '\n', n - in);
        if (end == b + in || !eol || sz > n)
            return -EPROTO;
        in = (size_t)(eol - b) + 1;
        if (sz == 0)
            return (long)out;
        if (in + sz > n)
            return -EPROTO;
        memmove(b + out, b + in, sz);
        out += sz;
        in += sz;
        if (in < n && b[in] == '\r')
            in++;
        if (in < n && b[in] == '\n')
            in++;
    }
}

int am_fetch_parse_answer(char *buf, size_t len, bool complete, am_fetch_result_t *res, char *err,
                          size_t errlen)
{
    memset(res, 0, sizeof(*res));
    char *sep = strstr(buf, "\r\n\r\n");
    size_t skip = 4;
    if (!sep && (sep = strstr(buf, "\n\n")))
        skip = 2;
    int major, minor, status;
    if (!sep || sscanf(buf, "HTTP/%d.%d %3d", &major, &minor, &status) != 3 || status < 100)
        return fail(err, errlen, -EPROTO, "not an HTTP answer");
    size_t head_len = (size_t)(sep - buf);
    char *body = sep + skip;
    size_t blen = len - head_len - skip;
    size_t n;
    const char *v = header(buf, head_len, "Transfer-Encoding", &n);
    if (v && n >= 7 && strncasecmp(v + n - 7, "chunked", 7) == 0) {
        long k = dechunk(body, blen);
        if (k < 0)
            return fail(err, errlen, -EPROTO, "malformed chunked answer");
        blen = (size_t)k;
    } else if ((v = header(buf, head_len, "Content-Length", &n))) {
        unsigned long cl = strtoul(v, NULL, 10);
        if (cl > blen)
            return fail(err, errlen, -EPROTO, "answer cut short (%zu of %lu bytes)", blen, cl);
        blen = cl;
    } else if (!complete) {
        return fail(err, errlen, -EPROTO, "answer cut short");
    }
    res->status = status;
    res->len = blen;
    res->body = malloc(blen + 1);
    if (!res->body)
        return fail(err, errlen, -ENOMEM, "out of memory");
    memcpy(res->body, body, blen);
    res->body[blen] = '\0';
    return 0;
}

/* Whether buf holds a whole answer with a Content-Length already. */
static bool have_all(const char *buf, size_t len)
{
    const char *sep = strstr(buf, "\r\n\r\n");
    if (!sep)
        return false;
    size_t n, head_len = (size_t)(sep - buf);
    const char *v = header(buf, head_len, "Content-Length", &n);
    return v && !header(buf, head_len, "Transfer-Encoding", &n) &&
           len - head_len - 4 >= strtoul(v, NULL, 10);
}

int am_fetch_get(const am_url_t *base, const char *path, const am_fetch_opts_t *o,
                 am_fetch_result_t *res, char *err, size_t errlen)
{
    memset(res, 0, sizeof(*res));
    conn_t c = {.fd = -1};
    clock_gettime(CLOCK_MONOTONIC, &c.deadline);
    c.deadline.tv_sec += o->timeout_ms / 1000;
    c.deadline.tv_nsec += (long)(o->timeout_ms % 1000) * 1000000;
    if (c.deadline.tv_nsec >= 1000000000) {
        c.deadline.tv_sec++;
        c.deadline.tv_nsec -= 1000000000;
    }
    char req[4096];
    int rc = build_request(req, sizeof(req), base, path, o);
    if (rc < 0)
        return fail(err, errlen, rc, "request too long");
    size_t reqlen = (size_t)rc;
    rc = open_tcp(&c, base, o->timeout_ms, err, errlen);
    if (rc == 0 && base->https)
        rc = open_tls(&c, base, o, err, errlen);
    if (rc == 0 && (rc = conn_write(&c, req, reqlen)) != 0)
        fail(err, errlen, rc, "cannot send the request: %s", strerror(-rc));
    OPENSSL_cleanse(req, sizeof(req));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    bool complete = false;
    while (rc == 0 && !complete) {
        if (cap - len < 16384) {
            cap = cap ? 2 * cap : 65536;
            char *nb = cap <= AM_FETCH_MAX_BODY + 65536 ? realloc(buf, cap + 1) : NULL;
            if (!nb) {
                rc = fail(err, errlen, cap > AM_FETCH_MAX_BODY ? -EMSGSIZE : -ENOMEM,
                          "answer too large");
                break;
            }
            buf = nb;
        }
        ssize_t n = conn_read(&c, buf + len, cap - len);
        if (n < 0) {
            rc = fail(err, errlen, (int)n, "reading the answer: %s",
                      n == -ETIMEDOUT ? "timed out"
                      : n == -EPROTO  ? tls_error()
                                      : strerror((int)-n));
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
        complete = n == 0;
        if (!complete && have_all(buf, len))
            break;
    }
    if (rc == 0)
        rc = am_fetch_parse_answer(buf, len, complete, res, err, errlen);
    free(buf);
    conn_close(&c);
    return rc;
}

int am_fetch_read_secret(const char *file, char *out, size_t cap, char *err, size_t errlen)
{
    FILE *f = fopen(file, "re");
    if (!f)
        return fail(err, errlen, -errno, "%s: %s", file, strerror(errno));
    bool got = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    if (!got)
        out[0] = '\0';
    size_t n = strlen(out);
    if (n == cap - 1 && out[n - 1] != '\n')
        return fail(err, errlen, -E2BIG, "%s: first line too long", file);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        out[--n] = '\0';
    return 0;
}
