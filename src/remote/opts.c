#include "opts.h"

#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void am_remote_opts_init(am_remote_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->interval_ms = AM_REMOTE_DEFAULT_INTERVAL_MS;
    o->timeout_ms = AM_REMOTE_DEFAULT_TIMEOUT_MS;
    o->max_queue_bytes = AM_REMOTE_DEFAULT_QUEUE_BYTES;
}

void am_remote_opts_free(am_remote_opts_t *o)
{
    free(o->url);
    free(o->username);
    free(o->password_file);
    free(o->bearer_token_file);
    free(o->ca_file);
    free(o->cert_file);
    free(o->key_file);
    for (size_t i = 0; o->external_labels && i < 2 * o->nexternal; i++)
        free(o->external_labels[i]);
    free(o->external_labels);
    am_remote_opts_init(o);
}

static bool same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

bool am_remote_opts_equal(const am_remote_opts_t *a, const am_remote_opts_t *b)
{
    if (!same(a->url, b->url) || a->interval_ms != b->interval_ms ||
        a->timeout_ms != b->timeout_ms || !same(a->username, b->username) ||
        !same(a->password_file, b->password_file) ||
        !same(a->bearer_token_file, b->bearer_token_file) || !same(a->ca_file, b->ca_file) ||
        !same(a->cert_file, b->cert_file) || !same(a->key_file, b->key_file) ||
        a->insecure_skip_verify != b->insecure_skip_verify || a->nexternal != b->nexternal ||
        a->max_queue_bytes != b->max_queue_bytes)
        return false;
    for (size_t i = 0; i < 2 * a->nexternal; i++)
        if (!same(a->external_labels[i], b->external_labels[i]))
            return false;
    return true;
}

/* Copies field f of url into out (size bytes): false when it does not fit. */
static bool field(const char *url, const struct http_parser_url *u, int f, char *out, size_t size)
{
    size_t n = u->field_set & (1 << f) ? u->field_data[f].len : 0;
    if (n >= size)
        return false;
    memcpy(out, url + u->field_data[f].off, n);
    out[n] = '\0';
    return true;
}

int am_remote_url_parse(const char *url, am_remote_url_t *out, char *why, size_t whylen)
{
    struct http_parser_url u;
    http_parser_url_init(&u);
    memset(out, 0, sizeof(*out));
    char scheme[8];
    if (http_parser_parse_url(url, strlen(url), 0, &u) != 0 || !(u.field_set & (1 << UF_SCHEMA)) ||
        !(u.field_set & (1 << UF_HOST))) {
        snprintf(why, whylen, "not an absolute http:// or https:// URL");
        return -EINVAL;
    }
    if (!field(url, &u, UF_SCHEMA, scheme, sizeof(scheme)) ||
        (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        snprintf(why, whylen, "the scheme must be http or https");
        return -EINVAL;
    }
    if (u.field_set & ((1 << UF_USERINFO) | (1 << UF_FRAGMENT))) {
        snprintf(why, whylen, "no user info or fragment (use basic_auth)");
        return -EINVAL;
    }
    out->tls = scheme[4] == 's';
    char query[1024];
    if (!field(url, &u, UF_HOST, out->host, sizeof(out->host)) || !out->host[0] ||
        !field(url, &u, UF_PATH, out->path, sizeof(out->path)) ||
        !field(url, &u, UF_QUERY, query, sizeof(query))) {
        snprintf(why, whylen, "host, path or query too long");
        return -EINVAL;
    }
    if (u.field_set & (1 << UF_PORT)) {
        if (u.port == 0) {
            snprintf(why, whylen, "port 0");
            return -EINVAL;
        }
        snprintf(out->port, sizeof(out->port), "%u", (unsigned)u.port);
    } else {
        snprintf(out->port, sizeof(out->port), "%s", out->tls ? "443" : "80");
    }
    if (!out->path[0])
        snprintf(out->path, sizeof(out->path), "/");
    size_t pl = strlen(out->path);
    if (query[0] && snprintf(out->path + pl, sizeof(out->path) - pl, "?%s", query) >=
                        (int)(sizeof(out->path) - pl)) {
        snprintf(why, whylen, "path too long");
        return -EINVAL;
    }
    bool v6 = strchr(out->host, ':') != NULL;
    snprintf(out->hostport, sizeof(out->hostport), "%s%s%s%s%s", v6 ? "[" : "", out->host,
             v6 ? "]" : "", u.field_set & (1 << UF_PORT) ? ":" : "",
             u.field_set & (1 << UF_PORT) ? out->port : "");
    return 0;
}
