/* fetch: one blocking HTTP/1.1 GET, for the client subcommands (alice
 * health, alice top): URL parsing, a connect and a total timeout, HTTPS
 * (OpenSSL: the peer verified against the system's CAs or a given file,
 * with its name or IP address checked), basic auth.
 *
 * Who calls: the subcommands in top.c, on the main thread; nothing here
 * keeps state between calls (each GET opens and closes its connection). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define AM_FETCH_MAX_BODY (64u << 20) /* a longer answer is an error */

/* A base URL: http[s]://host[:port][/prefix]. host is an IPv6 address
 * without its brackets when the URL had them. */
typedef struct am_url {
    bool https;
    char host[256];
    char port[6];    /* decimal; 80 or 443 when the URL gives none */
    char path[1024]; /* the prefix without a trailing '/': "" or "/x/y" */
    bool ipv6;       /* host was in brackets */
} am_url_t;

/* Parses s (borrowed for the call) into out: 0, or -EINVAL with a reason
 * in err (errlen bytes, NUL-terminated). No query, fragment or user info. */
int am_url_parse(const char *s, am_url_t *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

typedef struct am_fetch_opts {
    const char *cacert;   /* borrowed: a PEM file of CAs to trust, NULL: the system's */
    bool insecure;        /* https: no verification at all */
    const char *user;     /* borrowed: basic auth user, NULL: none */
    const char *password; /* borrowed: with user */
    int timeout_ms;       /* for the connect, and for the whole exchange */
} am_fetch_opts_t;

typedef struct am_fetch_result {
    int status; /* the HTTP status */
    char *body; /* owned by the caller (free): len bytes, NUL-terminated */
    size_t len;
} am_fetch_result_t;

/* GET base's prefix + path (path starts with '/'); an answer of any status
 * fills res. 0, or a negative errno with a sentence in err: -ECONNREFUSED
 * and the like from the connection, -ETIMEDOUT, -EPROTO for TLS and a
 * malformed answer, -EMSGSIZE past AM_FETCH_MAX_BODY, -EINTR when a signal
 * interrupted the wait, -ENOMEM. */
int am_fetch_get(const am_url_t *base, const char *path, const am_fetch_opts_t *o,
                 am_fetch_result_t *res, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* am_fetch_get's reading of a raw answer: buf (len bytes, buf[len] a
 * NUL; the caller's, decoded in place when chunked) into res; complete:
 * the connection ended after it (an answer without a length runs to the
 * end). 0, or -EPROTO (malformed, cut short) or -ENOMEM with err said.
 * Apart for tests/fuzz/fuzz-answer.c: these bytes come from the network. */
int am_fetch_parse_answer(char *buf, size_t len, bool complete, am_fetch_result_t *res, char *err,
                          size_t errlen) __attribute__((warn_unused_result));

/* Reads the first line of file (borrowed), trailing "\n" or "\r\n" cut,
 * into out (cap bytes): 0, a negative errno (err says), or -E2BIG. */
int am_fetch_read_secret(const char *file, char *out, size_t cap, char *err, size_t errlen)
    __attribute__((warn_unused_result));
