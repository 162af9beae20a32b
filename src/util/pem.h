/* pem: certificates, keys and CAs into an OpenSSL context from PEM text.
 *
 * Files are read with am_file_read, never opened by OpenSSL itself: a
 * FIFO or a device at a certificate path must not hang a SIGHUP reload
 * (OpenSSL's BIO_new_file blocks in open). Inline PEM (the web config's
 * cert, key, client_ca) takes the same path.
 *
 * Who calls: http/https.c (the server's TLS) and remote/tls.c (remote
 * write's client), on the loop's thread. No state. */
#pragma once

#include <openssl/ssl.h>
#include <stddef.h>

/* The PEM text of path (borrowed) into *out (owned by the caller: free),
 * at most 1 MiB. 0, or a negative errno with "PATH: why" in err. */
int am_pem_read(const char *path, char **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Frees text read by am_pem_read that holds a private key, wiped first
 * (NULL is fine). */
void am_pem_free_secret(char *pem);

/* The first certificate of pem as ctx's own, the rest as its chain. */
int am_pem_use_chain(SSL_CTX *ctx, const char *pem) __attribute__((warn_unused_result));
/* The first private key of pem as ctx's. */
int am_pem_use_key(SSL_CTX *ctx, const char *pem) __attribute__((warn_unused_result));
/* Every certificate of pem (at least one) trusted by ctx; with names, their
 * subjects are also pushed there (a server's list of acceptable client
 * CAs). 0 or -EINVAL (the OpenSSL error queue says why). */
int am_pem_add_cas(SSL_CTX *ctx, const char *pem, STACK_OF(X509_NAME) * names)
    __attribute__((warn_unused_result));
