/* tls: the client side of TLS over memory BIOs, for remote write's HTTP
 * client. The caller moves bytes: what arrives from the socket goes in
 * with am_tlsc_feed, what must go to the socket comes out of
 * am_tlsc_take_out. No sockets, no loop.
 *
 * Who calls: push.c on the main loop. Not thread-safe per object. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct ssl_ctx_st am_tlsc_ctx_t; /* OpenSSL's SSL_CTX */
typedef struct am_tlsc am_tlsc_t;

/* A client context: peers verified against ca_file (NULL: the system's
 * CAs) unless insecure; cert/key (both or neither) for client
 * certificates. Paths are read now (borrowed for the call). NULL on
 * failure, with a message in why (whylen bytes, the caller's). Freed by
 * am_tlsc_ctx_free. */
am_tlsc_ctx_t *am_tlsc_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                               bool insecure, char *why, size_t whylen);
void am_tlsc_ctx_free(am_tlsc_ctx_t *ctx);

/* A connection to host (SNI, and the name or IP address its certificate
 * must match unless the context is insecure); the handshake starts with
 * the first am_tlsc_handshake. ctx borrowed until am_tlsc_free. NULL when
 * out of memory. */
am_tlsc_t *am_tlsc_new(am_tlsc_ctx_t *ctx, const char *host);
void am_tlsc_free(am_tlsc_t *t);

/* Bytes from the socket: 0 or -ENOMEM. */
int am_tlsc_feed(am_tlsc_t *t, const void *p, size_t n);
/* Advances the handshake: 0 done, 1 needs more input, -EPROTO failed
 * (why filled: the verification error or OpenSSL's). */
int am_tlsc_handshake(am_tlsc_t *t, char *why, size_t whylen);
/* Encrypts n plaintext bytes (after the handshake): 0 or -EPROTO. */
int am_tlsc_write(am_tlsc_t *t, const void *p, size_t n);
/* Decrypted bytes into buf: their count, 0 when more input is needed,
 * -EPIPE after the peer's close_notify, -EPROTO on an error. */
ssize_t am_tlsc_read(am_tlsc_t *t, void *buf, size_t cap);
/* Ciphertext for the socket: a malloc'ed block of *n bytes the caller
 * owns, or NULL (nothing pending, or out of memory: then *n is 1). */
char *am_tlsc_take_out(am_tlsc_t *t, size_t *n);
