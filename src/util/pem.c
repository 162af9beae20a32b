#include "pem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>

#include "file.h"

#define PEM_MAX (1u << 20) /* a certificate chain or a CA bundle */

int am_pem_read(const char *path, char **out, char *err, size_t errlen)
{
    size_t len;
    return am_file_read(path, PEM_MAX, out, &len, err, errlen);
}

void am_pem_free_secret(char *pem)
{
    if (pem)
        OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
}

int am_pem_use_chain(SSL_CTX *ctx, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b ? PEM_read_bio_X509_AUX(b, NULL, NULL, NULL) : NULL;
    int ok = x && SSL_CTX_use_certificate(ctx, x) == 1;
    X509_free(x);
    while (ok) {
        X509 *ca = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!ca) {
            ERR_clear_error(); /* the end of the chain */
            break;
        }
        if (SSL_CTX_add0_chain_cert(ctx, ca) != 1) {
            X509_free(ca);
            ok = 0;
        }
    }
    BIO_free(b);
    return ok ? 0 : -EINVAL;
}

int am_pem_use_key(SSL_CTX *ctx, const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    int ok = k && SSL_CTX_use_PrivateKey(ctx, k) == 1;
    EVP_PKEY_free(k);
    BIO_free(b);
    return ok ? 0 : -EINVAL;
}

int am_pem_add_cas(SSL_CTX *ctx, const char *pem, STACK_OF(X509_NAME) * names)
{
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    BIO *b = BIO_new_mem_buf(pem, -1);
    int count = 0, ok = b != NULL;
    while (ok) {
        X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
        if (!x) {
            unsigned long e = ERR_peek_last_error();
            if (count > 0 && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
                ERR_clear_error(); /* the end of the bundle */
            else
                ok = 0;
            break;
        }
        X509_NAME *nm = names ? X509_NAME_dup(X509_get_subject_name(x)) : NULL;
        if (X509_STORE_add_cert(store, x) != 1 ||
            (names && (!nm || !sk_X509_NAME_push(names, nm)))) {
            X509_NAME_free(nm);
            ok = 0;
        }
        X509_free(x);
        count++;
    }
    BIO_free(b);
    return ok ? 0 : -EINVAL;
}
