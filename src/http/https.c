/* https: the TLS context of a web config (https.h) and the record layer of
 * one HTTP connection (http-internal.h). OpenSSL runs over two memory
 * BIOs: ciphertext read from the socket is written into one, ciphertext
 * OpenSSL produces is taken from the other and written with libuv. So the
 * socket stays libuv's and every existing limit (timers, shedding, the
 * connection cap) judges a TLS connection as it judges a plain one: a
 * client that never finishes its handshake is a request head that never
 * completes.
 *
 * Responses, shared bodies included, stay plaintext in the connection's
 * queue and are encrypted TLS_CHUNK bytes at a time into one staging
 * buffer per connection, only as fast as the socket takes them: a 60 MB
 * body sent to many TLS scrapers costs each one chunk of ciphertext, not a
 * private encrypted copy. uv_try_write takes a chunk at once while the
 * kernel has room; otherwise the chunk is queued and the next one waits
 * for its write callback. The chunk that ends a response always goes
 * through uv_write, so a response completes from a loop callback as on a
 * plain connection. */
#include "https.h"
#include "http-internal.h"
#include "pem.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Plaintext encrypted per step: one full TLS record. */
#define TLS_CHUNK (16 * 1024)
/* Ciphertext handed to the kernel synchronously per pump, before the loop
 * gets a turn: a fast reader of a big body does not hold the loop. */
#define TLS_PUMP_BUDGET (256 * 1024)
/* Unsent bytes past which a connection that gets more TLS protocol bytes
 * to send (not answers: key update replies, alerts) is closed: its client
 * sends and does not read. */
#define TLS_RAW_UNSENT_MAX (64 * 1024)
/* An idle connection keeps buffers up to this size (small answers do not
 * reallocate every time). */
#define TLS_TRIM_ABOVE 4096

struct am_https {
    SSL_CTX *ctx;
    char **sans; /* owned: client_allowed_sans */
    size_t nsans;
    unsigned refs;
};

struct am_http_tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    am_https_t *tls;  /* a reference */
    bool handshaken;
    bool in_read; /* am_http__tls_resume trampolines through the running read */
    bool again;
    char *stage; /* owned: ciphertext being written, TLS_CHUNK + overhead */
    size_t stage_cap;
    bool stage_busy; /* a uv_write of stage is in flight */
    uv_write_t stage_req;
    am_http_wreq_t *stage_ends; /* the response the staged write completes, or NULL */
};

/* ---- the context ---- */

/* The last OpenSSL error as text (clears the queue). */
static const char *ssl_error(char *buf, size_t n)
{
    unsigned long e = ERR_peek_last_error();
    if (!e)
        snprintf(buf, n, "unknown error");
    else
        ERR_error_string_n(e, buf, n);
    ERR_clear_error();
    return buf;
}

static int ctx_fail(char *err, size_t n, const char *what, const char *file)
{
    char e[256];
    snprintf(err, n, "%s %s: %s", what, file, ssl_error(e, sizeof(e)));
    return -EINVAL;
}

/* The PEM of a web config entry: its file read (into *buf, the caller's
 * to free) or its inline text; NULL with err set when the file cannot be
 * read. */
static const char *pem_of(const char *file, const char *inline_pem, char **buf, const char *what,
                          char *err, size_t n)
{
    *buf = NULL;
    if (!file)
        return inline_pem;
    char why[512];
    if (am_pem_read(file, buf, why, sizeof(why)) == 0)
        return *buf;
    snprintf(err, n, "cannot load %s %s", what, why); /* why: "PATH: ..." */
    return NULL;
}

/* Client CAs: trusted for verification and named in the request. */
static int use_client_ca(SSL_CTX *ctx, const char *pem)
{
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    if (!names || am_pem_add_cas(ctx, pem, names) < 0) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        return -EINVAL;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    return 0;
}

/* Asked or required, never checked (RequestClientCert, RequireAnyClientCert). */
static int accept_any_cert(int preverify, X509_STORE_CTX *x)
{
    (void)preverify;
    (void)x;
    return 1;
}

/* Go's cipher suite names are IANA's (a few without the _SHA256 suffix);
 * they choose among the TLS 1.2 suites, in the given order. */
static int set_ciphers(SSL_CTX *ctx, const am_webconfig_t *wc, char *err, size_t n)
{
    char list[4096];
    size_t len = 0;
    list[0] = '\0';
    for (size_t i = 0; i < wc->ncipher_suites; i++) {
        const char *name = wc->cipher_suites[i];
        /* TLS 1.3's suites are not configurable (in Go either): skipped. */
        if (strcmp(name, "TLS_AES_128_GCM_SHA256") == 0 ||
            strcmp(name, "TLS_AES_256_GCM_SHA384") == 0 ||
            strcmp(name, "TLS_CHACHA20_POLY1305_SHA256") == 0)
            continue;
        const char *ossl = OPENSSL_cipher_name(name);
        char longer[128];
        if (strcmp(ossl, "(NONE)") == 0 &&
            (size_t)snprintf(longer, sizeof(longer), "%s_SHA256", name) < sizeof(longer))
            ossl = OPENSSL_cipher_name(longer);
        if (strcmp(ossl, "(NONE)") == 0) {
            snprintf(err, n, "tls_server_config: cipher_suites: unknown cipher suite \"%s\"", name);
            return -EINVAL;
        }
        int k = snprintf(list + len, sizeof(list) - len, "%s%s", len ? ":" : "", ossl);
        if (k < 0 || (size_t)k >= sizeof(list) - len) {
            snprintf(err, n, "tls_server_config: cipher_suites: too many");
            return -EINVAL;
        }
        len += (size_t)k;
    }
    if (len && SSL_CTX_set_cipher_list(ctx, list) != 1) {
        char e[256];
        snprintf(err, n, "tls_server_config: cipher_suites: %s", ssl_error(e, sizeof(e)));
        return -EINVAL;
    }
    return 0;
}

static int configure(am_https_t *t, const am_webconfig_t *wc, char *err, size_t n)
{
    SSL_CTX *ctx = t->ctx;
    char e[256];
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                 (wc->prefer_server_cipher_suites ? SSL_OP_CIPHER_SERVER_PREFERENCE : 0));
    /* Idle connections give their record buffers back (tens of KiB each). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* No server-side session cache (its memory grows with clients); resumption
     * by tickets still works. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char sid[] = "alice-metrics";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    if (SSL_CTX_set_min_proto_version(ctx, wc->min_version) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, wc->max_version) != 1) {
        snprintf(err, n, "tls_server_config: min_version/max_version: %s", ssl_error(e, sizeof(e)));
        return -EINVAL;
    }
    if (wc->groups && SSL_CTX_set1_groups_list(ctx, wc->groups) != 1) {
        snprintf(err, n, "tls_server_config: curve_preferences: %s", ssl_error(e, sizeof(e)));
        return -EINVAL;
    }
    int rc = set_ciphers(ctx, wc, err, n);
    if (rc < 0)
        return rc;
    char *buf;
    const char *pem = pem_of(wc->cert_file, wc->cert, &buf, "the certificate", err, n);
    if (!pem)
        return -EINVAL;
    rc = am_pem_use_chain(ctx, pem);
    free(buf);
    if (rc < 0)
        return ctx_fail(err, n, "cannot load the certificate",
                        wc->cert_file ? wc->cert_file : "(tls_server_config.cert)");
    if (!(pem = pem_of(wc->key_file, wc->key, &buf, "the key", err, n)))
        return -EINVAL;
    rc = am_pem_use_key(ctx, pem);
    am_pem_free_secret(buf);
    if (rc < 0)
        return ctx_fail(err, n, "cannot load the key",
                        wc->key_file ? wc->key_file : "(tls_server_config.key)");
    if (SSL_CTX_check_private_key(ctx) != 1)
        return ctx_fail(err, n, "the key does not match the certificate",
                        wc->key_file ? wc->key_file : "(tls_server_config.key)");
    if (wc->client_ca_file || wc->client_ca) {
        if (!(pem = pem_of(wc->client_ca_file, wc->client_ca, &buf, "the client CAs", err, n)))
            return -EINVAL;
        rc = use_client_ca(ctx, pem);
        free(buf);
        if (rc < 0)
            return ctx_fail(err, n, "cannot load the client CAs",
                            wc->client_ca_file ? wc->client_ca_file
                                               : "(tls_server_config.client_ca)");
    }
    switch (wc->client_auth) {
        case AM_CLIENT_AUTH_NONE:
            SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
            break;
        case AM_CLIENT_AUTH_REQUEST:
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_cert);
            break;
        case AM_CLIENT_AUTH_REQUIRE_ANY:
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                               accept_any_cert);
            break;
        case AM_CLIENT_AUTH_VERIFY_IF_GIVEN:
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
            break;
        case AM_CLIENT_AUTH_REQUIRE_AND_VERIFY:
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
            break;
    }
    if (wc->nallowed_sans) {
        t->sans = calloc(wc->nallowed_sans, sizeof(*t->sans));
        if (!t->sans) {
            snprintf(err, n, "out of memory");
            return -ENOMEM;
        }
        for (size_t i = 0; i < wc->nallowed_sans; i++) {
            if (!(t->sans[i] = strdup(wc->allowed_sans[i]))) {
                snprintf(err, n, "out of memory");
                return -ENOMEM;
            }
            t->nsans = i + 1;
        }
    }
    return 0;
}

int am_https_new(const am_webconfig_t *wc, am_https_t **out, char *err, size_t n)
{
    am_https_t *t = calloc(1, sizeof(*t));
    if (!t || !(t->ctx = SSL_CTX_new(TLS_server_method()))) {
        free(t);
        snprintf(err, n, "out of memory");
        return -ENOMEM;
    }
    t->refs = 1;
    ERR_clear_error();
    int rc = configure(t, wc, err, n);
    if (rc < 0) {
        am_https_unref(t);
        return rc;
    }
    *out = t;
    return 0;
}

void am_https_ref(am_https_t *t)
{
    t->refs++;
}

void am_https_unref(am_https_t *t)
{
    if (!t || --t->refs > 0)
        return;
    SSL_CTX_free(t->ctx);
    for (size_t i = 0; i < t->nsans; i++)
        free(t->sans[i]);
    free(t->sans);
    free(t);
}

/* The client certificate names one of client_allowed_sans (DNS, IP, e-mail
 * or URI, matched exactly, as exporter-toolkit matches them). */
static bool san_allowed(const am_https_t *t, SSL *ssl)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (!cert)
        return false;
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    bool ok = false;
    for (int i = 0; names && !ok && i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        char text[INET6_ADDRSTRLEN + 1];
        const char *s = NULL;
        size_t len = 0;
        if (g->type == GEN_DNS || g->type == GEN_EMAIL || g->type == GEN_URI) {
            s = (const char *)ASN1_STRING_get0_data(g->d.ia5);
            len = (size_t)ASN1_STRING_length(g->d.ia5);
        } else if (g->type == GEN_IPADD) {
            int l = ASN1_STRING_length(g->d.ip);
            const unsigned char *ip = ASN1_STRING_get0_data(g->d.ip);
            if ((l == 4 || l == 16) &&
                inet_ntop(l == 4 ? AF_INET : AF_INET6, ip, text, sizeof(text))) {
                s = text;
                len = strlen(text);
            }
        }
        for (size_t k = 0; s && !ok && k < t->nsans; k++)
            ok = strlen(t->sans[k]) == len && memcmp(t->sans[k], s, len) == 0;
    }
    GENERAL_NAMES_free(names);
    return ok;
}

/* ---- one connection ---- */

int am_http__tls_accept(am_http_conn_t *c, am_https_t *tls)
{
    am_http_tls_conn_t *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->ssl = SSL_new(tls->ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        SSL_free(t->ssl);
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        free(t);
        ERR_clear_error();
        return -ENOMEM;
    }
    /* An empty memory BIO means "wait for more", not end of file. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_accept_state(t->ssl);
    am_https_ref(tls);
    t->tls = tls;
    c->tls = t;
    return 0;
}

size_t am_http__tls_pending(const am_http_conn_t *c)
{
    /* At most max_pending_responses entries. */
    size_t n = 0;
    for (const am_http_wreq_t *w = c->wq; w; w = w->next)
        n += w->head_len + w->body_len - w->off;
    return n;
}

void am_http__tls_free(am_http_conn_t *c)
{
    am_http_tls_conn_t *t = c->tls;
    assert(!t->stage_busy); /* write callbacks run before close callbacks */
    SSL_free(t->ssl);
    am_https_unref(t->tls);
    free(t->stage);
    free(t);
    c->tls = NULL;
}

/* A write of bytes that end no response (handshake, alerts, tickets,
 * close_notify): a private copy freed by its callback. */
typedef struct raw_write {
    uv_write_t req;
    char data[];
} raw_write_t;

static void on_raw_write(uv_write_t *req, int status)
{
    am_http_conn_t *c = req->data;
    free(req);
    if (status < 0 && !c->closing)
        am_http__conn_close(c);
}

/* Sends what OpenSSL wrote outside of application data. */
static void flush_raw(am_http_conn_t *c)
{
    am_http_tls_conn_t *t = c->tls;
    size_t n = (size_t)BIO_ctrl_pending(t->wbio);
    if (n == 0 || c->closing)
        return;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > TLS_RAW_UNSENT_MAX) {
        am_log(AM_LOG_DEBUG, "event=tls_failed during=write error=\"the client does not read\"");
        c->srv->stats.tls_failed++;
        am_http__conn_close(c);
        return;
    }
    raw_write_t *w = malloc(sizeof(*w) + n);
    if (!w || BIO_read(t->wbio, w->data, (int)n) != (int)n) {
        free(w);
        am_http__conn_close(c);
        return;
    }
    w->req.data = c;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_raw_write) < 0) {
        free(w);
        am_http__conn_close(c);
    }
}

static void tls_failed(am_http_conn_t *c, const char *what)
{
    char e[256], peer[80];
    c->srv->stats.tls_failed++;
    am_log(AM_LOG_DEBUG, "event=tls_failed during=%s error=\"%s\" peer=%s", what,
           ssl_error(e, sizeof(e)), am_http__conn_peer(c, peer, sizeof(peer)));
    am_http__conn_close(c);
}

/* Handshake, then plaintext into rbuf for the parser while reading is on
 * and rbuf is free. Re-entered calls (from the parser's resume) only ask
 * the running one for another round. */
static void read_records(am_http_conn_t *c)
{
    am_http_tls_conn_t *t = c->tls;
    if (t->in_read) {
        t->again = true;
        return;
    }
    t->in_read = true;
    do {
        t->again = false;
        if (!t->handshaken) {
            int r = SSL_do_handshake(t->ssl);
            flush_raw(c);
            if (c->closing)
                break;
            if (r != 1) {
                if (SSL_get_error(t->ssl, r) != SSL_ERROR_WANT_READ)
                    tls_failed(c, "handshake");
                break;
            }
            if (t->tls->nsans && !san_allowed(t->tls, t->ssl)) {
                c->srv->stats.tls_failed++;
                am_log(AM_LOG_DEBUG, "event=tls_failed during=handshake error=\"client "
                                     "certificate names no allowed SAN\"");
                am_http__conn_close(c);
                break;
            }
            t->handshaken = true;
            am_http__tls_pump(c); /* tickets and anything queued */
        }
        while (c->reading && !c->closing && !c->final && c->roff >= c->rlen) {
            int r = SSL_read(t->ssl, c->rbuf, (int)sizeof(c->rbuf));
            flush_raw(c); /* a key update's answer, tickets */
            if (r > 0) {
                c->roff = 0;
                c->rlen = (size_t)r;
                am_http__conn_feed(c);
                continue;
            }
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ)
                break;
            if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: the client's EOF */
                if (c->lingering || (c->writes == 0 && !c->shutting))
                    am_http__conn_close(c);
                else
                    am_http__conn_eof(c);
                break;
            }
            tls_failed(c, "read");
            break;
        }
    } while (t->again && !c->closing);
    t->in_read = false;
}

void am_http__tls_on_read(am_http_conn_t *c, const char *data, size_t n)
{
    /* The memory BIO copies: at most one socket read's worth (the server's
     * 16 KiB buffer) waits there, since reading stops while rbuf is full. */
    if (BIO_write(c->tls->rbio, data, (int)n) != (int)n) {
        am_log(AM_LOG_WARN, "event=http_oom where=tls_read");
        am_http__conn_close(c);
        return;
    }
    read_records(c);
}

void am_http__tls_resume(am_http_conn_t *c)
{
    am_http_tls_conn_t *t = c->tls;
    if (t->in_read)
        t->again = true;
    else if (SSL_has_pending(t->ssl) || BIO_ctrl_pending(t->rbio) > 0)
        read_records(c);
}

/* Encrypts up to TLS_CHUNK bytes of w into the staging buffer; the
 * ciphertext length, or 0 on failure. */
static size_t encrypt_chunk(am_http_conn_t *c, am_http_wreq_t *w)
{
    am_http_tls_conn_t *t = c->tls;
    size_t total = w->head_len + w->body_len, k = total - w->off;
    if (k > TLS_CHUNK)
        k = TLS_CHUNK;
    size_t done = 0;
    while (done < k) {
        size_t at = w->off + done;
        const char *p;
        size_t avail;
        if (at < w->head_len) {
            p = w->head + at;
            avail = w->head_len - at;
        } else {
            p = (w->shared ? w->shared->data : w->body) + (at - w->head_len);
            avail = total - at;
        }
        if (avail > k - done)
            avail = k - done;
        if (SSL_write(t->ssl, p, (int)avail) != (int)avail)
            return 0;
        done += avail;
    }
    w->off += k;
    size_t n = (size_t)BIO_ctrl_pending(t->wbio);
    if (n > t->stage_cap) {
        char *s = realloc(t->stage, n);
        if (!s)
            return 0;
        t->stage = s;
        t->stage_cap = n;
    }
    if (BIO_read(t->wbio, t->stage, (int)n) != (int)n)
        return 0;
    return n;
}

/* Everything is sent: an idle connection gives back what a big answer
 * grew (the staging buffer and the memory BIO's, a record's worth each),
 * so that a thousand kept-alive scrapers do not each hold 33 KiB. */
static void trim(am_http_conn_t *c)
{
    am_http_tls_conn_t *t = c->tls;
    if (t->stage_cap <= TLS_TRIM_ABOVE || c->closing)
        return;
    free(t->stage);
    t->stage = NULL;
    t->stage_cap = 0;
    BIO *fresh = BIO_new(BIO_s_mem());
    if (fresh && BIO_ctrl_pending(t->wbio) == 0) {
        SSL_set0_wbio(t->ssl, fresh); /* frees the old one */
        t->wbio = fresh;
    } else {
        BIO_free(fresh);
    }
}

static void on_stage_write(uv_write_t *req, int status)
{
    am_http_conn_t *c = req->data;
    am_http_tls_conn_t *t = c->tls;
    am_http_wreq_t *w = t->stage_ends;
    t->stage_busy = false;
    t->stage_ends = NULL;
    if (w)
        am_http__write_done(c, w, status); /* closes on a failed write */
    else if (status < 0 && !c->closing)
        am_http__conn_close(c);
    if (!c->closing)
        am_http__tls_pump(c);
}

void am_http__tls_pump(am_http_conn_t *c)
{
    am_http_tls_conn_t *t = c->tls;
    if (t->stage_busy || c->closing || !t->handshaken)
        return;
    size_t budget = TLS_PUMP_BUDGET;
    for (;;) {
        am_http_wreq_t *w = c->wq;
        if (!w) {
            flush_raw(c);
            trim(c);
            return;
        }
        if (w->off == w->head_len + w->body_len)
            return; /* its last chunk is in flight (cannot happen: stage_busy) */
        size_t n = encrypt_chunk(c, w);
        if (n == 0) {
            am_log(AM_LOG_WARN, "event=tls_failed during=write");
            ERR_clear_error();
            am_http__conn_close(c);
            return;
        }
        bool ends = w->off == w->head_len + w->body_len;
        size_t sent = 0;
        if (!ends && n <= budget) {
            uv_buf_t b = uv_buf_init(t->stage, (unsigned)n);
            int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
            if (r < 0 && r != UV_EAGAIN) {
                am_log(AM_LOG_DEBUG, "event=http_write_error error=%s", uv_err_name(r));
                am_http__conn_close(c);
                return;
            }
            sent = r > 0 ? (size_t)r : 0;
            if (sent == n) {
                budget -= n;
                continue;
            }
        }
        /* The rest of this chunk waits for the socket (or ends a response). */
        uv_buf_t b = uv_buf_init(t->stage + sent, (unsigned)(n - sent));
        t->stage_req.data = c;
        t->stage_ends = ends ? w : NULL;
        int r = uv_write(&t->stage_req, (uv_stream_t *)&c->tcp, &b, 1, on_stage_write);
        if (r < 0) {
            t->stage_ends = NULL;
            am_log(AM_LOG_DEBUG, "event=http_write_error error=%s", uv_err_name(r));
            am_http__conn_close(c);
            return;
        }
        t->stage_busy = true;
        return;
    }
}

void am_http__tls_shutdown(am_http_conn_t *c)
{
    am_http_tls_conn_t *t = c->tls;
    if (!t->handshaken)
        return;
    (void)SSL_shutdown(t->ssl); /* queues close_notify; the client's is not awaited */
    ERR_clear_error();
    flush_raw(c);
}
