/* Fuzz harness: the web config (YAML) and the Basic authorization header,
 * both read from outside. The first byte chooses: even, the rest is a web
 * config file; odd, an Authorization header value.
 *
 * A refused config must leave the result empty with a message naming the
 * file; an accepted one must hold only what the format allows (a bcrypt
 * hash per user, versions in order, TLS with both a certificate and a
 * key, header lines ending in CRLF). A header must decode into a user and
 * a password inside the buffer, or be refused. A violated check calls
 * abort(). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "webconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_config(const char *text, size_t len)
{
    am_webconfig_t wc;
    char err[256];
    err[0] = '\0';
    int rc = am_webconfig_parse(text, len, "/etc/alice/web.yml", &wc, err, sizeof(err));
    if (rc < 0) {
        if (strncmp(err, "/etc/alice/web.yml", 18) != 0 || wc.tls || wc.nusers || wc.cert_file ||
            wc.headers || wc.ignored)
            abort();
        return;
    }
    if (wc.tls != ((wc.cert_file || wc.cert) && (wc.key_file || wc.key)))
        abort();
    if (wc.min_version > wc.max_version || wc.min_version < AM_TLS10 || wc.max_version > AM_TLS13)
        abort();
    if (wc.cert_file && wc.cert_file[0] != '/')
        abort(); /* resolved against /etc/alice */
    for (size_t i = 0; i < wc.nusers; i++)
        if (strlen(wc.users[i].hash) != 60 || wc.users[i].hash[0] != '$' ||
            strchr(wc.users[i].name, ':'))
            abort();
    if (wc.headers) {
        size_t n = strlen(wc.headers);
        if (n < 2 || wc.headers[n - 2] != '\r' || wc.headers[n - 1] != '\n')
            abort();
    }
    am_webconfig_free(&wc);
}

static void check_header(const char *text, size_t len)
{
    char out[64];
    const char *user, *pass;
    if (!am_auth_parse_basic(text, len, out, sizeof(out), &user, &pass))
        return;
    if (user != out || pass <= user || pass > out + sizeof(out) - 1 ||
        strlen(user) + 1 + strlen(pass) >= sizeof(out) || strchr(user, ':'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    /* A private copy: the harness reads exactly size bytes, never a NUL. */
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    if (data[0] & 1)
        check_header(text, size - 1);
    else
        check_config(text, size - 1);
    free(text);
    return 0;
}
