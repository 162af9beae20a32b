#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pem.h"

struct am_tlsc {
    SSL *ssl;
    BIO *in, *out; /* owned by ssl */
};

static void ssl_error(char *why, size_t whylen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(why, whylen, "%s: %s", what, e ? buf : "unknown error");
    ERR_clear_error();
}

am_tlsc_ctx_t *am_tlsc_ctx_new(const char *ca_file, const char *cert_file, const char *key_file,
                               bool insecure, char *why, size_t whylen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_error(why, whylen, "TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, NULL);
    /* The files are read with am_file_read (pem.h): a FIFO there must not
     * hang the loop at a reload. */
    char *ca = NULL, *cert = NULL, *key = NULL;
    char err[512];
    err[0] = '\0';
    bool ok = true;
    if (ca_file) {
        ok = am_pem_read(ca_file, &ca, err, sizeof(err)) == 0 && am_pem_add_cas(ctx, ca, NULL) == 0;
    } else {
        ok = SSL_CTX_set_default_verify_paths(ctx) == 1;
    }
    if (!ok) {
        if (err[0])
            snprintf(why, whylen, "%s", err);
        else
            ssl_error(why, whylen, ca_file ? ca_file : "system CAs");
    } else if (cert_file) {
        ok = am_pem_read(cert_file, &cert, err, sizeof(err)) == 0 &&
             am_pem_read(key_file, &key, err, sizeof(err)) == 0;
        if (!ok) {
            snprintf(why, whylen, "%s", err);
        } else if (am_pem_use_chain(ctx, cert) != 0 || am_pem_use_key(ctx, key) != 0 ||
                   SSL_CTX_check_private_key(ctx) != 1) {
            ssl_error(why, whylen, cert_file);
            ok = false;
        }
    }
    free(ca);
    free(cert);
    am_pem_free_secret(key);
    if (!ok) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void am_tlsc_ctx_free(am_tlsc_ctx_t *ctx)
{
    SSL_CTX_free(ctx);
}

am_tlsc_t *am_tlsc_new(am_tlsc_ctx_t *ctx, const char *host)
{
    am_tlsc_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ssl = SSL_new(ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        BIO_free(t->in);
        BIO_free(t->out);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    SSL_set_bio(t->ssl, t->in, t->out);
    SSL_set_connect_state(t->ssl);
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(t->ssl, host);
    X509_VERIFY_PARAM *param = SSL_get0_param(t->ssl);
    if (is_ip)
        X509_VERIFY_PARAM_set1_ip_asc(param, host);
    else
        X509_VERIFY_PARAM_set1_host(param, host, 0);
    return t;
}

void am_tlsc_free(am_tlsc_t *t)
{
    if (!t)
        return;
    SSL_free(t->ssl);
    free(t);
}

int am_tlsc_feed(am_tlsc_t *t, const void *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int w = BIO_write(t->in, p, chunk);
        if (w <= 0)
            return -ENOMEM;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

int am_tlsc_handshake(am_tlsc_t *t, char *why, size_t whylen)
{
    int r = SSL_do_handshake(t->ssl);
    if (r == 1)
        return 0;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 1;
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK)
        snprintf(why, whylen, "receiver certificate: %s", X509_verify_cert_error_string(v));
    else
        ssl_error(why, whylen, "handshake");
    return -EPROTO;
}

int am_tlsc_write(am_tlsc_t *t, const void *p, size_t n)
{
    while (n > 0) {
        int chunk = n > (1u << 30) ? (1 << 30) : (int)n;
        int w = SSL_write(t->ssl, p, chunk);
        if (w <= 0) {
            ERR_clear_error();
            return -EPROTO;
        }
        p = (const char *)p + w;
        n -= (size_t)w;
    }
    return 0;
}

ssize_t am_tlsc_read(am_tlsc_t *t, void *buf, size_t cap)
{
    int r = SSL_read(t->ssl, buf, cap > (1u << 30) ? (1 << 30) : (int)cap);
    if (r > 0)
        return r;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    ERR_clear_error();
    return e == SSL_ERROR_ZERO_RETURN ? -EPIPE : -EPROTO;
}

char *am_tlsc_take_out(am_tlsc_t *t, size_t *n)
{
    size_t pending = BIO_ctrl_pending(t->out);
    *n = 0;
    if (!pending)
        return NULL;
    char *p = malloc(pending);
    if (!p) {
        *n = 1;
        return NULL;
    }
    int r = BIO_read(t->out, p, (int)pending);
    if (r <= 0) {
        free(p);
        return NULL;
    }
    *n = (size_t)r;
    return p;
}
