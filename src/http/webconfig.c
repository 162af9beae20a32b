/* webconfig: see webconfig.h. The keys and values follow the
 * exporter-toolkit documentation (docs/web-configuration.md). */
#include "webconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "yamldoc.h"

typedef struct ctx {
    const char *path;
    yaml_document_t *doc;
    am_webconfig_t *wc;
    char *err;
    size_t n;
    am_buf_t ignored;
} ctx_t;

void am_webconfig_init(am_webconfig_t *wc)
{
    memset(wc, 0, sizeof(*wc));
    wc->min_version = AM_TLS12;
    wc->max_version = AM_TLS13;
    wc->prefer_server_cipher_suites = true;
}

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void am_webconfig_free(am_webconfig_t *wc)
{
    free(wc->cert_file);
    free(wc->key_file);
    free(wc->client_ca_file);
    free(wc->cert);
    free(wc->key);
    free(wc->client_ca);
    free_list(wc->cipher_suites, wc->ncipher_suites);
    free_list(wc->allowed_sans, wc->nallowed_sans);
    free(wc->groups);
    free(wc->headers);
    for (size_t i = 0; i < wc->nusers; i++) {
        free(wc->users[i].name);
        free(wc->users[i].hash);
    }
    free(wc->users);
    free(wc->ignored);
    am_webconfig_init(wc);
}

const char *am_webconfig_client_auth_name(am_client_auth_t t)
{
    switch (t) {
        case AM_CLIENT_AUTH_NONE:
            return "NoClientCert";
        case AM_CLIENT_AUTH_REQUEST:
            return "RequestClientCert";
        case AM_CLIENT_AUTH_REQUIRE_ANY:
            return "RequireAnyClientCert";
        case AM_CLIENT_AUTH_VERIFY_IF_GIVEN:
            return "VerifyClientCertIfGiven";
        case AM_CLIENT_AUTH_REQUIRE_AND_VERIFY:
            return "RequireAndVerifyClientCert";
    }
    return "?";
}

/* Sets the error "path:line: ..." and returns -EINVAL. */
__attribute__((format(printf, 3, 4))) static int fail(ctx_t *c, const yaml_node_t *at,
                                                      const char *fmt, ...)
{
    int k = at ? snprintf(c->err, c->n, "%s:%lu: ", c->path, am_yaml_line(at))
               : snprintf(c->err, c->n, "%s: ", c->path);
    if (k >= 0 && (size_t)k < c->n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + k, c->n - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

static int oom(ctx_t *c)
{
    snprintf(c->err, c->n, "%s: out of memory", c->path);
    return -ENOMEM;
}

/* A string value (a scalar; null reads as unset: *out stays NULL). */
static int get_string(ctx_t *c, const char *key, const yaml_node_t *v, char **out)
{
    bool is_null;
    const char *s = am_yaml_scalar(v, &is_null);
    if (!s)
        return fail(c, v, "%s: expected a string", key);
    if (is_null || !*s)
        return 0; /* unset, as Go reads an empty string */
    free(*out);
    *out = strdup(s);
    return *out ? 0 : oom(c);
}

/* A file name: relative ones are relative to the config file's folder. */
static int get_file(ctx_t *c, const char *key, const yaml_node_t *v, char **out)
{
    int rc = get_string(c, key, v, out);
    if (rc < 0 || !*out || (*out)[0] == '/')
        return rc;
    const char *slash = strrchr(c->path, '/');
    if (!slash)
        return 0; /* the file is in the working directory */
    size_t dl = (size_t)(slash - c->path) + 1, fl = strlen(*out);
    char *p = malloc(dl + fl + 1);
    if (!p)
        return oom(c);
    memcpy(p, c->path, dl);
    memcpy(p + dl, *out, fl + 1);
    free(*out);
    *out = p;
    return 0;
}

static int get_bool(ctx_t *c, const char *key, const yaml_node_t *v, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off"};
    const char *s = am_yaml_scalar(v, NULL);
    for (size_t i = 0; s && i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return fail(c, v, "%s: expected true or false", key);
}

/* A list of strings (a null value is an empty list). */
static int get_list(ctx_t *c, const char *key, const yaml_node_t *v, char ***out, size_t *nout)
{
    bool is_null;
    if (am_yaml_scalar(v, &is_null) && is_null)
        return 0;
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(c, v, "%s: expected a list of strings", key);
    size_t n = am_yaml_seq_len(v);
    char **list = calloc(n ? n : 1, sizeof(*list));
    if (!list)
        return oom(c);
    free_list(*out, *nout);
    *out = list;
    *nout = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = am_yaml_seq_item(c->doc, v, i);
        const char *s = am_yaml_scalar(it, NULL);
        if (!s || !*s)
            return fail(c, it ? it : v, "%s: expected a list of strings", key);
        if (!(list[i] = strdup(s)))
            return oom(c);
        *nout = i + 1;
    }
    return 0;
}

static int get_version(ctx_t *c, const char *key, const yaml_node_t *v, int *out)
{
    static const struct {
        const char *name;
        int v;
    } names[] = {
        {"TLS10", AM_TLS10}, {"TLS11", AM_TLS11}, {"TLS12", AM_TLS12}, {"TLS13", AM_TLS13}};
    const char *s = am_yaml_scalar(v, NULL);
    for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(s, names[i].name) == 0) {
            *out = names[i].v;
            return 0;
        }
    }
    return fail(c, v, "%s: \"%s\" is not TLS10, TLS11, TLS12 or TLS13", key, s ? s : "");
}

static int get_client_auth(ctx_t *c, const yaml_node_t *v)
{
    bool is_null;
    const char *s = am_yaml_scalar(v, &is_null);
    if (s && is_null)
        return 0;
    for (int t = AM_CLIENT_AUTH_NONE; s && t <= AM_CLIENT_AUTH_REQUIRE_AND_VERIFY; t++) {
        if (strcmp(s, am_webconfig_client_auth_name((am_client_auth_t)t)) == 0) {
            c->wc->client_auth = (am_client_auth_t)t;
            return 0;
        }
    }
    return fail(c, v,
                "client_auth_type: \"%s\" is not NoClientCert, RequestClientCert, "
                "RequireAnyClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert",
                s ? s : "");
}

/* curve_preferences: Go's tls.CurveID names, as an OpenSSL groups list. */
static int get_curves(ctx_t *c, const yaml_node_t *v)
{
    static const struct {
        const char *go, *ossl;
    } map[] = {{"CurveP256", "P-256"},
               {"CurveP384", "P-384"},
               {"CurveP521", "P-521"},
               {"X25519", "X25519"}};
    char **names = NULL;
    size_t n = 0;
    int rc = get_list(c, "curve_preferences", v, &names, &n);
    am_buf_t b;
    am_buf_init(&b, 0);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t k = 0;
        while (k < sizeof(map) / sizeof(map[0]) && strcmp(names[i], map[k].go) != 0)
            k++;
        if (k == sizeof(map) / sizeof(map[0])) {
            rc = fail(c, am_yaml_seq_item(c->doc, v, i),
                      "curve_preferences: \"%s\" is not CurveP256, CurveP384, CurveP521 or X25519",
                      names[i]);
            break;
        }
        am_buf_printf(&b, "%s%s", i ? ":" : "", map[k].ossl);
    }
    free_list(names, n);
    if (rc == 0 && n > 0) {
        am_buf_putc(&b, '\0');
        if (am_buf_failed(&b))
            rc = oom(c);
        free(c->wc->groups);
        c->wc->groups = rc == 0 ? am_buf_steal(&b, NULL) : NULL;
    }
    am_buf_free(&b);
    return rc;
}

/* A key of the format that we accept without acting on it. */
static void ignore(ctx_t *c, const char *section, const char *key)
{
    am_buf_printf(&c->ignored, "%s%s%s%s", c->ignored.len ? "," : "", section ? section : "",
                  section ? "." : "", key);
}

static int check_mapping(ctx_t *c, const char *what, const yaml_node_t *v)
{
    if (v->type != YAML_MAPPING_NODE)
        return fail(c, v, "%s: expected a mapping", what);
    yaml_node_t *dup = am_yaml_duplicate_key(c->doc, v);
    if (dup) {
        const char *k = am_yaml_scalar(dup, NULL);
        return fail(c, dup, "%s: duplicate key \"%s\"", what, k ? k : "?");
    }
    return 0;
}

/* A section whose value may be null (present but empty). */
static bool is_empty(const yaml_node_t *v)
{
    bool is_null;
    return am_yaml_scalar(v, &is_null) && is_null;
}

static int parse_tls(ctx_t *c, const yaml_node_t *map)
{
    if (is_empty(map))
        return 0;
    int rc = check_mapping(c, "tls_server_config", map);
    am_webconfig_t *wc = c->wc;
    yaml_node_t *k, *v;
    for (size_t i = 0; rc == 0 && am_yaml_pair(c->doc, map, i, &k, &v); i++) {
        const char *key = am_yaml_scalar(k, NULL);
        if (strcmp(key, "cert_file") == 0)
            rc = get_file(c, key, v, &wc->cert_file);
        else if (strcmp(key, "key_file") == 0)
            rc = get_file(c, key, v, &wc->key_file);
        else if (strcmp(key, "client_ca_file") == 0)
            rc = get_file(c, key, v, &wc->client_ca_file);
        else if (strcmp(key, "cert") == 0)
            rc = get_string(c, key, v, &wc->cert);
        else if (strcmp(key, "key") == 0)
            rc = get_string(c, key, v, &wc->key);
        else if (strcmp(key, "client_ca") == 0)
            rc = get_string(c, key, v, &wc->client_ca);
        else if (strcmp(key, "client_auth_type") == 0)
            rc = get_client_auth(c, v);
        else if (strcmp(key, "min_version") == 0)
            rc = get_version(c, key, v, &wc->min_version);
        else if (strcmp(key, "max_version") == 0)
            rc = get_version(c, key, v, &wc->max_version);
        else if (strcmp(key, "cipher_suites") == 0)
            rc = get_list(c, key, v, &wc->cipher_suites, &wc->ncipher_suites);
        else if (strcmp(key, "prefer_server_cipher_suites") == 0)
            rc = get_bool(c, key, v, &wc->prefer_server_cipher_suites);
        else if (strcmp(key, "curve_preferences") == 0)
            rc = get_curves(c, v);
        else if (strcmp(key, "client_allowed_sans") == 0)
            rc = get_list(c, key, v, &wc->allowed_sans, &wc->nallowed_sans);
        else
            rc = fail(c, k, "tls_server_config: unknown key \"%s\"", key);
    }
    if (rc < 0)
        return rc;
    if (wc->cert_file && wc->cert)
        return fail(c, map, "tls_server_config: cert and cert_file are exclusive");
    if (wc->key_file && wc->key)
        return fail(c, map, "tls_server_config: key and key_file are exclusive");
    if (wc->client_ca_file && wc->client_ca)
        return fail(c, map, "tls_server_config: client_ca and client_ca_file are exclusive");
    bool has_cert = wc->cert_file || wc->cert, has_key = wc->key_file || wc->key;
    if (has_cert != has_key)
        return fail(c, map, "tls_server_config: %s",
                    has_cert ? "missing key_file" : "missing cert_file");
    wc->tls = has_cert;
    bool has_ca = wc->client_ca_file || wc->client_ca;
    if (!wc->tls && (has_ca || wc->client_auth != AM_CLIENT_AUTH_NONE))
        return fail(c, map, "tls_server_config: client certificates need cert_file and key_file");
    if ((wc->client_auth == AM_CLIENT_AUTH_VERIFY_IF_GIVEN ||
         wc->client_auth == AM_CLIENT_AUTH_REQUIRE_AND_VERIFY) &&
        !has_ca)
        return fail(c, map, "tls_server_config: client_auth_type %s needs client_ca_file",
                    am_webconfig_client_auth_name(wc->client_auth));
    if (wc->nallowed_sans && wc->client_auth != AM_CLIENT_AUTH_REQUIRE_ANY &&
        wc->client_auth != AM_CLIENT_AUTH_REQUIRE_AND_VERIFY)
        return fail(c, map,
                    "tls_server_config: client_allowed_sans needs client_auth_type "
                    "RequireAnyClientCert or RequireAndVerifyClientCert");
    if (wc->min_version > wc->max_version)
        return fail(c, map, "tls_server_config: min_version is above max_version");
    return 0;
}

/* The response headers the format allows, and the values some of them take. */
static int parse_headers(ctx_t *c, const yaml_node_t *map, am_buf_t *out)
{
    static const char *const names[] = {"Content-Security-Policy", "X-Frame-Options",
                                        "X-Content-Type-Options", "X-XSS-Protection",
                                        "Strict-Transport-Security"};
    if (is_empty(map))
        return 0;
    int rc = check_mapping(c, "http_server_config.headers", map);
    yaml_node_t *k, *v;
    for (size_t i = 0; rc == 0 && am_yaml_pair(c->doc, map, i, &k, &v); i++) {
        const char *key = am_yaml_scalar(k, NULL);
        size_t h = 0;
        while (h < sizeof(names) / sizeof(names[0]) && strcmp(key, names[h]) != 0)
            h++;
        if (h == sizeof(names) / sizeof(names[0]))
            return fail(c, k, "http_server_config.headers: \"%s\" is not a header it may set", key);
        bool is_null;
        const char *val = am_yaml_scalar(v, &is_null);
        if (!val)
            return fail(c, v, "%s: expected a string", key);
        if (is_null || !*val)
            continue; /* unset if blank */
        for (const char *p = val; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                return fail(c, v, "%s: control characters are not allowed", key);
        if (h == 1 && strcasecmp(val, "deny") != 0 && strcasecmp(val, "sameorigin") != 0)
            return fail(c, v, "X-Frame-Options: \"%s\" is not deny or sameorigin", val);
        if (h == 2 && strcasecmp(val, "nosniff") != 0)
            return fail(c, v, "X-Content-Type-Options: \"%s\" is not nosniff", val);
        am_buf_printf(out, "%s: %s\r\n", key, val);
    }
    return rc;
}

static int parse_http(ctx_t *c, const yaml_node_t *map)
{
    if (is_empty(map))
        return 0;
    int rc = check_mapping(c, "http_server_config", map);
    am_buf_t hdr;
    am_buf_init(&hdr, 0);
    yaml_node_t *k, *v;
    for (size_t i = 0; rc == 0 && am_yaml_pair(c->doc, map, i, &k, &v); i++) {
        const char *key = am_yaml_scalar(k, NULL);
        if (strcmp(key, "headers") == 0) {
            rc = parse_headers(c, v, &hdr);
        } else if (strcmp(key, "http2") == 0) {
            bool on = true;
            rc = get_bool(c, key, v, &on);
            if (rc == 0 && on)
                ignore(c, "http_server_config", key); /* we speak HTTP/1.1 */
        } else {
            rc = fail(c, k, "http_server_config: unknown key \"%s\"", key);
        }
    }
    if (rc == 0 && hdr.len) {
        am_buf_putc(&hdr, '\0');
        if (am_buf_failed(&hdr)) {
            rc = oom(c);
        } else {
            free(c->wc->headers);
            c->wc->headers = am_buf_steal(&hdr, NULL);
        }
    }
    am_buf_free(&hdr);
    return rc;
}

static int parse_users(ctx_t *c, const yaml_node_t *map)
{
    if (is_empty(map))
        return 0;
    int rc = check_mapping(c, "basic_auth_users", map);
    if (rc < 0)
        return rc;
    size_t n = (size_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
    am_webconfig_t *wc = c->wc;
    wc->users = calloc(n ? n : 1, sizeof(*wc->users));
    if (!wc->users)
        return oom(c);
    yaml_node_t *k, *v;
    for (size_t i = 0; am_yaml_pair(c->doc, map, i, &k, &v); i++) {
        const char *user = am_yaml_scalar(k, NULL);
        const char *hash = am_yaml_scalar(v, NULL);
        if (!*user)
            return fail(c, k, "basic_auth_users: empty user name");
        if (strchr(user, ':'))
            return fail(c, k, "basic_auth_users: user \"%s\": a name cannot hold ':'", user);
        if (!hash ||
            (strncmp(hash, "$2a$", 4) != 0 && strncmp(hash, "$2b$", 4) != 0 &&
             strncmp(hash, "$2y$", 4) != 0) ||
            strlen(hash) != 60)
            return fail(c, v, "basic_auth_users: user \"%s\": expected a bcrypt hash ($2y$...)",
                        user);
        wc->users[i].name = strdup(user);
        wc->users[i].hash = strdup(hash);
        wc->nusers = i + 1;
        if (!wc->users[i].name || !wc->users[i].hash)
            return oom(c);
    }
    return 0;
}

static int parse_root(ctx_t *c, const yaml_node_t *root)
{
    if (!root || is_empty(root))
        return 0;
    int rc = check_mapping(c, "the file", root);
    yaml_node_t *k, *v;
    for (size_t i = 0; rc == 0 && am_yaml_pair(c->doc, root, i, &k, &v); i++) {
        const char *key = am_yaml_scalar(k, NULL);
        if (strcmp(key, "tls_server_config") == 0)
            rc = parse_tls(c, v);
        else if (strcmp(key, "http_server_config") == 0)
            rc = parse_http(c, v);
        else if (strcmp(key, "basic_auth_users") == 0)
            rc = parse_users(c, v);
        else if (strcmp(key, "rate_limit") == 0)
            ignore(c, NULL, key);
        else
            rc = fail(c, k, "unknown key \"%s\"", key);
    }
    return rc;
}

/* Reads a loaded document (rc: its load's status) into wc. */
static int from_document(int rc, yaml_document_t *doc, const char *path, am_webconfig_t *wc,
                         char *err, size_t n)
{
    if (rc < 0)
        return rc;
    ctx_t c = {.path = path, .doc = doc, .wc = wc, .err = err, .n = n};
    am_buf_init(&c.ignored, 0);
    rc = parse_root(&c, am_yaml_root(doc));
    if (rc == 0 && c.ignored.len) {
        am_buf_putc(&c.ignored, '\0');
        if (am_buf_failed(&c.ignored))
            rc = oom(&c);
        else
            wc->ignored = am_buf_steal(&c.ignored, NULL);
    }
    am_buf_free(&c.ignored);
    yaml_document_delete(doc);
    if (rc < 0)
        am_webconfig_free(wc);
    return rc;
}

int am_webconfig_load(const char *path, am_webconfig_t *wc, char *err, size_t n)
{
    am_webconfig_init(wc);
    yaml_document_t doc;
    return from_document(am_yaml_load(path, &doc, err, n), &doc, path, wc, err, n);
}

int am_webconfig_parse(const char *text, size_t len, const char *path, am_webconfig_t *wc,
                       char *err, size_t n)
{
    am_webconfig_init(wc);
    yaml_document_t doc;
    return from_document(am_yaml_load_string(text, len, path, &doc, err, n), &doc, path, wc, err,
                         n);
}
