/* https: the TLS side of the HTTP server. This header is the context: the
 * certificate, key, client CAs, versions and ciphers of a web config
 * (webconfig.h), built into one OpenSSL SSL_CTX. A context is
 * reference-counted: every connection accepted with it keeps it, so a
 * SIGHUP that builds a new one leaves the open connections alone. The
 * per-connection record layer lives in https.c too and is declared in
 * http-internal.h (it drives conn.c's connections).
 *
 * Who calls: server.c (build, on the main thread), http.c and conn.c. */
#pragma once

#include <stddef.h>

#include "webconfig.h"

typedef struct am_https am_https_t;

/* Builds the context of wc (borrowed for the call): reads the certificate
 * and key (files or inline PEM) and the client CAs, checks that the key
 * matches the certificate. *out gets one reference, the caller's. Returns
 * 0, or -EINVAL / -ENOMEM with a message naming the file in err (n bytes,
 * the caller's). wc->tls must be set. */
int am_https_new(const am_webconfig_t *wc, am_https_t **out, char *err, size_t n)
    __attribute__((warn_unused_result));
void am_https_ref(am_https_t *t);
/* Drops a reference; the last frees (NULL is ignored). */
void am_https_unref(am_https_t *t);
