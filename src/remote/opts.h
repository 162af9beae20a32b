/* opts: what remote write is told to do (the config's remote_write object,
 * --remote-write-url): a plain value struct, no behaviour.
 *
 * Who calls: config.c fills it (owning every string, freed by
 * am_remote_opts_free); cli.c may point url elsewhere; push.c copies what
 * it keeps. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define AM_REMOTE_DEFAULT_INTERVAL_MS 15000
#define AM_REMOTE_DEFAULT_TIMEOUT_MS  10000
#define AM_REMOTE_DEFAULT_QUEUE_BYTES (64u << 20)

typedef struct am_remote_opts {
    char *url; /* owned; http://HOST[:PORT]/PATH or https://...; NULL: off */
    unsigned interval_ms;
    unsigned timeout_ms;     /* one request: connect, send, answer; also the shutdown push */
    char *username;          /* owned; NULL: no basic auth */
    char *password_file;     /* owned; NULL: empty password */
    char *bearer_token_file; /* owned; NULL: none */
    char *ca_file, *cert_file, *key_file; /* owned; NULL: system CAs, no client cert */
    bool insecure_skip_verify;
    char **external_labels; /* owned: 2 * nexternal strings, name then value */
    size_t nexternal;
    size_t max_queue_bytes;
} am_remote_opts_t;

/* The defaults, nothing owned. */
void am_remote_opts_init(am_remote_opts_t *o);
/* Frees every string o owns and resets it to the defaults. */
void am_remote_opts_free(am_remote_opts_t *o);
/* Whether a and b ask for the same pushes (every field). */
bool am_remote_opts_equal(const am_remote_opts_t *a, const am_remote_opts_t *b);

/* A remote write URL taken apart. */
typedef struct am_remote_url {
    bool tls;           /* https */
    char host[256];     /* as written, without [] around IPv6 */
    char port[8];       /* decimal; 80 / 443 when the URL has none */
    char hostport[272]; /* the Host header: host[:port] as written */
    char path[2048];    /* path and query; "/" when empty */
} am_remote_url_t;

/* Parses url (http:// or https://, a host, an optional port, path and
 * query; no user info, no fragment) into *out: 0, or -EINVAL with the
 * reason in why (whylen bytes, the caller's). */
int am_remote_url_parse(const char *url, am_remote_url_t *out, char *why, size_t whylen)
    __attribute__((warn_unused_result));
