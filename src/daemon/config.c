#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "file.h"
#include "log.h"
#include "names.h"
#include "parse.h"

#define MAX_CONFIG_BYTES (16u << 20)

/* get_int and get_str: the key is not in the object (not an error: every
 * key is optional). */
enum { KEY_ABSENT = 1 };

typedef struct ctx {
    const char *name; /* file name for messages */
    const char *text; /* raw text, to find where a key stands */
    size_t len;
    char *err;
    size_t errlen;
} ctx_t;

/* jansson keeps no positions for values, so an error's position is found
 * by walking its key path ("families[1].buckets") through the raw text,
 * which jansson has already validated. When the path ends at a key that is
 * absent (a required key), the deepest part that exists is reported. */
typedef struct scan {
    const char *s;
    size_t n;
    size_t i;
} scan_t;

static void skip_ws(scan_t *sc)
{
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' || sc->s[sc->i] == '\n' ||
                             sc->s[sc->i] == '\r'))
        sc->i++;
}

/* At a '"': moves past the closing quote; out gets the raw contents. */
static bool scan_string(scan_t *sc, const char **p, size_t *len)
{
    if (sc->i >= sc->n || sc->s[sc->i] != '"')
        return false;
    size_t start = ++sc->i;
    while (sc->i < sc->n && sc->s[sc->i] != '"')
        sc->i += sc->s[sc->i] == '\\' ? 2 : 1;
    if (sc->i >= sc->n)
        return false;
    *p = sc->s + start;
    *len = sc->i - start;
    sc->i++;
    return true;
}

static bool skip_value(scan_t *sc, int depth)
{
    skip_ws(sc);
    if (sc->i >= sc->n || depth > 64)
        return false;
    char c = sc->s[sc->i];
    const char *p;
    size_t len;
    if (c == '"')
        return scan_string(sc, &p, &len);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        sc->i++;
        skip_ws(sc);
        if (sc->i < sc->n && sc->s[sc->i] == close) {
            sc->i++;
            return true;
        }
        for (;;) {
            if (c == '{') {
                skip_ws(sc);
                if (!scan_string(sc, &p, &len))
                    return false;
                skip_ws(sc);
                if (sc->i >= sc->n || sc->s[sc->i] != ':')
                    return false;
                sc->i++;
            }
            if (!skip_value(sc, depth + 1))
                return false;
            skip_ws(sc);
            if (sc->i >= sc->n)
                return false;
            if (sc->s[sc->i] == close) {
                sc->i++;
                return true;
            }
            if (sc->s[sc->i] != ',')
                return false;
            sc->i++;
        }
    }
    while (sc->i < sc->n && !strchr(",]} \t\r\n", sc->s[sc->i]))
        sc->i++; /* number, true, false, null */
    return true;
}

/* With sc at an object, finds member key: sc ends at its value, *at at the
 * key's opening quote. */
static bool find_member(scan_t *sc, const char *key, size_t klen, size_t *at)
{
    skip_ws(sc);
    if (sc->i >= sc->n || sc->s[sc->i] != '{')
        return false;
    sc->i++;
    for (;;) {
        skip_ws(sc);
        size_t kpos = sc->i;
        const char *p;
        size_t len;
        if (!scan_string(sc, &p, &len))
            return false;
        skip_ws(sc);
        if (sc->i >= sc->n || sc->s[sc->i] != ':')
            return false;
        sc->i++;
        if (len == klen && memcmp(p, key, klen) == 0) {
            skip_ws(sc);
            *at = kpos;
            return true;
        }
        if (!skip_value(sc, 0))
            return false;
        skip_ws(sc);
        if (sc->i >= sc->n || sc->s[sc->i] != ',')
            return false;
        sc->i++;
    }
}

/* With sc at an array, moves to element idx. */
static bool find_element(scan_t *sc, size_t idx, size_t *at)
{
    skip_ws(sc);
    if (sc->i >= sc->n || sc->s[sc->i] != '[')
        return false;
    sc->i++;
    for (size_t k = 0;; k++) {
        skip_ws(sc);
        if (k == idx) {
            *at = sc->i;
            return true;
        }
        if (!skip_value(sc, 0))
            return false;
        skip_ws(sc);
        if (sc->i >= sc->n || sc->s[sc->i] != ',')
            return false;
        sc->i++;
    }
}

static void path_position(const ctx_t *c, const char *path, int *line, int *col)
{
    *line = 0;
    *col = 0;
    scan_t sc = {c->text, c->len, 0};
    size_t found = SIZE_MAX;
    const char *p = path;
    while (*p) {
        size_t at;
        if (*p == '[') {
            char *end;
            unsigned long idx = strtoul(p + 1, &end, 10);
            if (*end != ']' || !find_element(&sc, idx, &at))
                break;
            p = end + 1;
        } else {
            if (*p == '.')
                p++;
            size_t klen = strcspn(p, ".[");
            if (klen == 0 || !find_member(&sc, p, klen, &at))
                break;
            p += klen;
        }
        found = at;
    }
    if (found == SIZE_MAX)
        return;
    int l = 1, col0 = 1;
    for (size_t k = 0; k < found; k++) {
        if (c->text[k] == '\n') {
            l++;
            col0 = 1;
        } else {
            col0++;
        }
    }
    *line = l;
    *col = col0;
}

/* Writes "FILE:LINE:COL: PATH: MESSAGE" (or without the position when the
 * path is not in the text) into the caller's err; returns -EINVAL, for
 * `return fail(...)`. */
__attribute__((format(printf, 3, 4))) static int fail(const ctx_t *c, const char *path,
                                                      const char *fmt, ...)
{
    int line = 0, col = 0;
    path_position(c, path, &line, &col);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (line)
        snprintf(c->err, c->errlen, "%s:%d:%d: %s: %s", c->name, line, col, path, msg);
    else
        snprintf(c->err, c->errlen, "%s: %s: %s", c->name, path, msg);
    return -EINVAL;
}

/* The same message for an allocation that failed at path; -ENOMEM. */
static int fail_oom(const ctx_t *c, const char *path)
{
    fail(c, path, "out of memory");
    return -ENOMEM;
}

static int check_keys(const ctx_t *c, json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        bool ok = false;
        for (size_t i = 0; allowed[i]; i++)
            if (strcmp(key, allowed[i]) == 0)
                ok = true;
        if (!ok) {
            char p[256];
            snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key);
            return fail(c, p, "unknown key \"%s\"", key);
        }
    }
    return 0;
}

static bool valid_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* obj.key as an integer in [lo, hi] into *out: 0, KEY_ABSENT, or -EINVAL
 * (message written). */
static int get_int(const ctx_t *c, json_t *obj, const char *path, const char *key, long long lo,
                   long long hi, long long *out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return KEY_ABSENT;
    char p[256];
    snprintf(p, sizeof(p), "%s%s%s", path, *path ? "." : "", key); /* "" at the top level */
    if (!json_is_integer(v))
        return fail(c, p, "must be an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return fail(c, p, "must be between %lld and %lld, got %lld", lo, hi, x);
    *out = x;
    return 0;
}

/* obj.key as a non-empty string into *out (a copy the config owns): 0,
 * KEY_ABSENT, -EINVAL or -ENOMEM (message written). */
static int get_str(const ctx_t *c, json_t *obj, const char *path, const char *key, char **out)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return KEY_ABSENT;
    char p[256];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return fail(c, p, "must be a non-empty string");
    if (strlen(json_string_value(v)) != json_string_length(v))
        return fail(c, p, "must not contain NUL");
    *out = strdup(json_string_value(v));
    if (!*out)
        return fail_oom(c, p);
    return 0;
}

int am_config_parse_mode(const char *s)
{
    if (!s || !*s || strlen(s) > 4)
        return -EINVAL;
    int mode = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '7')
            return -EINVAL;
        mode = mode * 8 + (*p - '0');
    }
    return mode <= 0777 ? mode : -EINVAL;
}

static int parse_server(const ctx_t *c, json_t *srv, am_config_t *out)
{
    static const char *const keys[] = {"host",
                                       "port",
                                       "statsd_host",
                                       "statsd_port",
                                       "unix",
                                       "log_level",
                                       "receive_buffer_bytes",
                                       "workers",
                                       "state_file",
                                       "state_interval",
                                       "max_connections",
                                       "unix_mode",
                                       "mapping_config",
                                       "web_config",
                                       NULL};
    if (!json_is_object(srv))
        return fail(c, "server", "must be an object");
    int rc = check_keys(c, srv, "server", keys);
    if (rc < 0)
        return rc;
    long long x = 0; /* set when get_int returns 0 */
    if ((rc = get_str(c, srv, "server", "host", &out->host)) < 0)
        return rc;
    if (rc == 0 && !valid_ip(out->host))
        return fail(c, "server.host", "not an IPv4 or IPv6 address: \"%s\"", out->host);
    if ((rc = get_int(c, srv, "server", "port", 0, 65535, &x)) < 0)
        return rc;
    if (rc == 0)
        out->port = (int)x;
    if ((rc = get_str(c, srv, "server", "statsd_host", &out->statsd_host)) < 0)
        return rc;
    if (rc == 0 && !valid_ip(out->statsd_host))
        return fail(c, "server.statsd_host", "not an IPv4 or IPv6 address: \"%s\"",
                    out->statsd_host);
    if ((rc = get_int(c, srv, "server", "statsd_port", 0, 65535, &x)) < 0)
        return rc;
    if (rc == 0)
        out->statsd_port = (int)x;
    if ((rc = get_str(c, srv, "server", "unix", &out->unix_path)) < 0)
        return rc;
    if (rc == 0 && strlen(out->unix_path) >= 108)
        return fail(c, "server.unix", "socket path longer than 107 bytes");
    if ((rc = get_str(c, srv, "server", "state_file", &out->state_file)) < 0)
        return rc;
    if ((rc = get_str(c, srv, "server", "mapping_config", &out->mapping_config)) < 0)
        return rc;
    if ((rc = get_str(c, srv, "server", "web_config", &out->web_config)) < 0)
        return rc;
    if ((rc = get_int(c, srv, "server", "state_interval", 1, 86400, &x)) < 0)
        return rc;
    if (rc == 0)
        out->state_interval = (long)x;
    char *lvl = NULL;
    if ((rc = get_str(c, srv, "server", "log_level", &lvl)) < 0)
        return rc;
    if (rc == 0) {
        out->log_level = am_log_level_parse(lvl);
        if (out->log_level < 0) {
            rc = fail(c, "server.log_level", "must be debug, info, warn or error, got \"%s\"", lvl);
            free(lvl);
            return rc;
        }
        free(lvl);
    }
    if ((rc = get_int(c, srv, "server", "receive_buffer_bytes", 4096, 1LL << 30, &x)) < 0)
        return rc;
    if (rc == 0)
        out->receive_buffer_bytes = (long)x;
    if ((rc = get_int(c, srv, "server", "workers", 1, 64, &x)) < 0)
        return rc;
    if (rc == 0)
        out->workers = (int)x;
    if ((rc = get_int(c, srv, "server", "max_connections", 1, 1000000, &x)) < 0)
        return rc;
    if (rc == 0)
        out->max_connections = (long)x;
    char *mode = NULL;
    if ((rc = get_str(c, srv, "server", "unix_mode", &mode)) < 0)
        return rc;
    if (rc == 0) {
        out->unix_mode = am_config_parse_mode(mode);
        if (out->unix_mode < 0) {
            rc = fail(c, "server.unix_mode",
                      "must be an octal mode from \"0\" to \"0777\", got "
                      "\"%s\"",
                      mode);
            free(mode);
            return rc;
        }
        free(mode);
    }
    return 0;
}

/* The numeric keys of "limits": where each goes in am_limits_t, its range. */
static const struct limit_key {
    const char *key;
    size_t offset; /* of a size_t in am_limits_t */
    long long min, max;
} limit_keys[AM_CONFIG_NLIMITS] = {
    {"max_series_per_family", offsetof(am_limits_t, max_series_per_family), 1, 100000000},
    {"max_series", offsetof(am_limits_t, max_series), 1, 1000000000},
    {"max_families", offsetof(am_limits_t, max_families), 0, 1000000},
    {"max_set_members", offsetof(am_limits_t, max_set_members), 0, 1000000000},
    /* at least one series' worth; at most 1 TiB */
    {"max_series_bytes", offsetof(am_limits_t, max_series_bytes), 4096, 1LL << 40},
};

static size_t *limit_field(am_limits_t *l, size_t i)
{
    return (size_t *)((char *)l + limit_keys[i].offset);
}

static size_t limit_value(const am_limits_t *l, size_t i)
{
    return *(const size_t *)((const char *)l + limit_keys[i].offset);
}

static int parse_limits(const ctx_t *c, json_t *lim, am_config_t *out)
{
    const char *keys[AM_CONFIG_NLIMITS + 1];
    for (size_t i = 0; i < AM_CONFIG_NLIMITS; i++)
        keys[i] = limit_keys[i].key;
    keys[AM_CONFIG_NLIMITS] = NULL;
    if (!json_is_object(lim))
        return fail(c, "limits", "must be an object");
    int rc = check_keys(c, lim, "limits", keys);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < AM_CONFIG_NLIMITS; i++) {
        long long x = 0; /* set when get_int returns 0 */
        rc = get_int(c, lim, "limits", limit_keys[i].key, limit_keys[i].min, limit_keys[i].max, &x);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            *limit_field(&out->limits, i) = (size_t)x;
            out->has_limits[i] = true;
        }
    }
    return 0;
}

static int parse_family(const ctx_t *c, json_t *fam, size_t idx, am_family_def_t *def)
{
    static const char *const keys[] = {"name",    "type",       "help", "labels",
                                       "buckets", "max_series", "ttl",  NULL};
    char path[64];
    snprintf(path, sizeof(path), "families[%zu]", idx);
    char p[128];
    if (!json_is_object(fam))
        return fail(c, path, "must be an object");
    int rc = check_keys(c, fam, path, keys);
    if (rc < 0)
        return rc;

    json_t *name = json_object_get(fam, "name");
    snprintf(p, sizeof(p), "%s.name", path);
    if (!json_is_string(name))
        return fail(c, p, "required string");
    const char *n = json_string_value(name);
    size_t nlen = json_string_length(name);
    if (!am_valid_metric_name(n, nlen) || nlen > AM_MAX_NAME_LEN)
        return fail(c, p,
                    "\"%s\" is not a valid metric name ([a-zA-Z_][a-zA-Z0-9_]*, at most %d bytes)",
                    n, AM_MAX_NAME_LEN);
    if (strncmp(n, "alice_metricsd_", 15) == 0 || strncmp(n, "process_", 8) == 0)
        return fail(c, p, "\"%s\": the alice_metricsd_ and process_ prefixes are reserved", n);

    json_t *type = json_object_get(fam, "type");
    snprintf(p, sizeof(p), "%s.type", path);
    if (!json_is_string(type))
        return fail(c, p, "required: counter, gauge, histogram or summary");
    const char *t = json_string_value(type);
    if (strcmp(t, "counter") == 0)
        def->type = AM_FAMILY_COUNTER;
    else if (strcmp(t, "gauge") == 0)
        def->type = AM_FAMILY_GAUGE;
    else if (strcmp(t, "histogram") == 0)
        def->type = AM_FAMILY_HISTOGRAM;
    else if (strcmp(t, "summary") == 0)
        def->type = AM_FAMILY_SUMMARY;
    else
        return fail(c, p, "must be counter, gauge, histogram or summary, got \"%s\"", t);

    /* Counters are exposed as NAME_total; lines for NAME and NAME_total
     * both land there. */
    size_t extra =
        (def->type == AM_FAMILY_COUNTER && !(nlen >= 6 && strcmp(n + nlen - 6, "_total") == 0)) ? 6
                                                                                                : 0;
    def->name = malloc(nlen + extra + 1);
    if (!def->name)
        return fail_oom(c, path);
    memcpy(def->name, n, nlen);
    memcpy(def->name + nlen, "_total", extra);
    def->name[nlen + extra] = '\0';

    json_t *help = json_object_get(fam, "help");
    snprintf(p, sizeof(p), "%s.help", path);
    if (help && !json_is_string(help))
        return fail(c, p, "must be a string");
    def->help = strdup(help ? json_string_value(help) : def->name);
    if (!def->help)
        return fail_oom(c, path);

    json_t *labels = json_object_get(fam, "labels");
    snprintf(p, sizeof(p), "%s.labels", path);
    if (labels) {
        if (!json_is_array(labels))
            return fail(c, p, "must be an array of label names");
        if (json_array_size(labels) > AM_MAX_LABELS)
            return fail(c, p, "at most %d labels", AM_MAX_LABELS);
        size_t i;
        json_t *l;
        json_array_foreach(labels, i, l)
        {
            if (!json_is_string(l))
                return fail(c, p, "element %zu is not a string", i);
            const char *ln = json_string_value(l);
            size_t ll = json_string_length(l);
            if (!am_valid_label_name(ln, ll) || ll > AM_MAX_LABEL_NAME_LEN)
                return fail(
                    c, p, "\"%s\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, no __ prefix)",
                    ln);
            if ((def->type == AM_FAMILY_HISTOGRAM && strcmp(ln, "le") == 0) ||
                (def->type == AM_FAMILY_SUMMARY && strcmp(ln, "quantile") == 0))
                return fail(c, p, "\"%s\" is reserved for a %s", ln, t);
            for (size_t k = 0; k < def->nlabels; k++)
                if (strcmp(def->labels[k], ln) == 0)
                    return fail(c, p, "\"%s\" is listed twice", ln);
            def->labels[def->nlabels] = strdup(ln);
            if (!def->labels[def->nlabels])
                return fail_oom(c, p);
            def->nlabels++;
        }
    }

    json_t *buckets = json_object_get(fam, "buckets");
    snprintf(p, sizeof(p), "%s.buckets", path);
    if (buckets) {
        if (def->type != AM_FAMILY_HISTOGRAM)
            return fail(c, p, "only a histogram has buckets");
        if (!json_is_array(buckets) || json_array_size(buckets) == 0)
            return fail(c, p, "must be a non-empty array of numbers");
        if (json_array_size(buckets) > AM_MAX_BUCKETS)
            return fail(c, p, "at most %d buckets (+Inf is implied)", AM_MAX_BUCKETS);
        size_t i;
        json_t *b;
        json_array_foreach(buckets, i, b)
        {
            if (!json_is_number(b))
                return fail(c, p, "element %zu is not a number", i);
            double v = json_number_value(b);
            if (!isfinite(v))
                return fail(c, p, "element %zu is not finite (+Inf is implied)", i);
            if (i > 0 && !(v > def->buckets[i - 1]))
                return fail(c, p, "must be strictly increasing (element %zu)", i);
            def->buckets[i] = v;
            def->nbuckets++;
        }
    } else if (def->type == AM_FAMILY_HISTOGRAM) {
        def->nbuckets = 14;
        memcpy(def->buckets, am_default_buckets, sizeof(am_default_buckets));
    }

    long long x = 0; /* set when get_int returns 0 */
    rc = get_int(c, fam, path, "max_series", 1, 100000000, &x);
    if (rc < 0)
        return rc;
    if (rc == 0)
        def->max_series = (size_t)x;
    /* A family's own TTL beats the default; its 0 means never. */
    rc = get_int(c, fam, path, "ttl", 0, 2147483647, &x);
    if (rc < 0)
        return rc;
    if (rc == 0)
        def->ttl = x ? (uint32_t)x : AM_TTL_NEVER;
    return 0;
}

/* The family in idx owning one of def's sample names with the lowest
 * position in defs (at most one owns each name: what idx holds was checked
 * already), or SIZE_MAX. Each name is looked up alone, through a probe
 * gauge of that name (a gauge owns its name only). */
static size_t first_owner(const am_namedex_t *idx, const am_family_def_t *defs,
                          const am_family_def_t *def)
{
    char names[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
    size_t k = am_owned_names(def, names);
    size_t best = SIZE_MAX;
    for (size_t j = 0; j < k; j++) {
        am_family_def_t probe = {.name = names[j], .type = AM_FAMILY_GAUGE};
        const am_family_def_t *o = am_namedex_clash(idx, &probe, NULL);
        if (o && (size_t)(o - defs) < best)
            best = (size_t)(o - defs);
    }
    return best;
}

/* A family may not repeat another's name or sample names: neither another
 * in the file nor a built-in that the file does not replace. The first
 * family that does is reported, with the earliest one it repeats, another
 * family of the file before a built-in.
 *
 * Through the sample-name index (names.h), each family's names are hashed
 * and looked up once: linear in the families. Comparing each family with
 * every earlier one took 14 s for 8,000 families, and a SIGHUP reload held
 * the loop (and /health) that long. */
static int check_clashes(const ctx_t *c, const am_config_t *cfg)
{
    size_t nb = am_catalog_count();
    am_family_def_t *builtins = calloc(nb ? nb : 1, sizeof(*builtins));
    bool *replaced = calloc(nb ? nb : 1, sizeof(*replaced));
    am_namedex_t kept = {0}, seen = {0}; /* built-ins not replaced; families so far */
    int rc = 0;
    if (!builtins || !replaced || am_namedex_reserve(&kept, nb) != 0 ||
        am_namedex_reserve(&seen, cfg->nfamilies) != 0) {
        rc = fail_oom(c, "families");
        goto out;
    }
    for (size_t b = 0; b < nb; b++)
        am_catalog_get(b, &builtins[b]);
    for (size_t k = 0; k < cfg->nfamilies; k++) /* a dozen built-ins: O(families) */
        for (size_t b = 0; b < nb; b++)
            if (strcmp(cfg->families[k].name, builtins[b].name) == 0)
                replaced[b] = true;
    for (size_t b = 0; b < nb; b++)
        if (!replaced[b])
            (void)am_namedex_add(&kept, &builtins[b]); /* room reserved: cannot fail */
    for (size_t i = 0; i < cfg->nfamilies && rc == 0; i++) {
        const am_family_def_t *d = &cfg->families[i];
        char p[64];
        snprintf(p, sizeof(p), "families[%zu].name", i);
        size_t k = first_owner(&seen, cfg->families, d);
        size_t b = k == SIZE_MAX ? first_owner(&kept, builtins, d) : SIZE_MAX;
        if (k != SIZE_MAX && strcmp(cfg->families[k].name, d->name) == 0)
            rc = fail(c, p, "family \"%s\" is defined twice", d->name);
        else if (k != SIZE_MAX)
            rc = fail(c, p, "\"%s\" would repeat sample names of families[%zu] \"%s\"", d->name, k,
                      cfg->families[k].name);
        else if (b != SIZE_MAX)
            rc = fail(c, p, "\"%s\" would repeat sample names of the built-in family \"%s\"",
                      d->name, builtins[b].name);
        else
            (void)am_namedex_add(&seen, d); /* room reserved: cannot fail */
    }
out:
    am_namedex_free(&kept);
    am_namedex_free(&seen);
    free(builtins); /* their strings are the catalog's */
    free(replaced);
    return rc;
}

/* obj.key as seconds (an integer or a fraction, > 0, at most a day) into
 * *ms: 0, KEY_ABSENT or -EINVAL (message written). */
static int get_seconds(const ctx_t *c, json_t *obj, const char *path, const char *key, unsigned *ms)
{
    json_t *v = json_object_get(obj, key);
    if (!v)
        return KEY_ABSENT;
    char p[256];
    snprintf(p, sizeof(p), "%s.%s", path, key);
    double x = json_number_value(v);
    if (!json_is_number(v) || !(x >= 0.001 && x <= 86400))
        return fail(c, p, "must be a number of seconds from 0.001 to 86400");
    *ms = (unsigned)(x * 1000 + 0.5);
    return 0;
}

/* A label name Prometheus accepts, and not one of its reserved "__" ones. */
static bool valid_label_name(const char *s)
{
    if (!*s || (s[0] == '_' && s[1] == '_'))
        return false;
    for (const char *p = s; *p; p++) {
        char ch = *p;
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
        if (!alpha && !(p > s && ch >= '0' && ch <= '9'))
            return false;
    }
    return true;
}

static int parse_remote_write(const ctx_t *c, json_t *rw, am_remote_opts_t *o)
{
    static const char *const keys[] = {
        "url", "interval",        "timeout",         "basic_auth", "bearer_token_file",
        "tls", "external_labels", "max_queue_bytes", NULL};
    static const char *const auth_keys[] = {"username", "password_file", NULL};
    static const char *const tls_keys[] = {"ca_file", "cert_file", "key_file",
                                           "insecure_skip_verify", NULL};
    if (!json_is_object(rw))
        return fail(c, "remote_write", "must be an object");
    int rc = check_keys(c, rw, "remote_write", keys);
    if (rc < 0)
        return rc;
    if ((rc = get_str(c, rw, "remote_write", "url", &o->url)) < 0)
        return rc;
    if (rc == KEY_ABSENT)
        return fail(c, "remote_write", "needs \"url\"");
    char why[128];
    am_remote_url_t u;
    if (am_remote_url_parse(o->url, &u, why, sizeof(why)) != 0)
        return fail(c, "remote_write.url", "%s", why);
    if ((rc = get_seconds(c, rw, "remote_write", "interval", &o->interval_ms)) < 0 ||
        (rc = get_seconds(c, rw, "remote_write", "timeout", &o->timeout_ms)) < 0)
        return rc;
    long long x;
    if ((rc = get_int(c, rw, "remote_write", "max_queue_bytes", 65536, 1LL << 40, &x)) < 0)
        return rc;
    if (rc == 0)
        o->max_queue_bytes = (size_t)x;
    if ((rc = get_str(c, rw, "remote_write", "bearer_token_file", &o->bearer_token_file)) < 0)
        return rc;
    json_t *v;
    if ((v = json_object_get(rw, "basic_auth"))) {
        if (!json_is_object(v))
            return fail(c, "remote_write.basic_auth", "must be an object");
        if ((rc = check_keys(c, v, "remote_write.basic_auth", auth_keys)) < 0 ||
            (rc = get_str(c, v, "remote_write.basic_auth", "username", &o->username)) < 0 ||
            (rc = get_str(c, v, "remote_write.basic_auth", "password_file", &o->password_file)) < 0)
            return rc;
        if (!o->username)
            return fail(c, "remote_write.basic_auth", "needs \"username\"");
        if (o->bearer_token_file)
            return fail(c, "remote_write.basic_auth",
                        "basic_auth and bearer_token_file exclude each other");
    }
    if ((v = json_object_get(rw, "tls"))) {
        if (!json_is_object(v))
            return fail(c, "remote_write.tls", "must be an object");
        if ((rc = check_keys(c, v, "remote_write.tls", tls_keys)) < 0 ||
            (rc = get_str(c, v, "remote_write.tls", "ca_file", &o->ca_file)) < 0 ||
            (rc = get_str(c, v, "remote_write.tls", "cert_file", &o->cert_file)) < 0 ||
            (rc = get_str(c, v, "remote_write.tls", "key_file", &o->key_file)) < 0)
            return rc;
        json_t *b = json_object_get(v, "insecure_skip_verify");
        if (b && !json_is_boolean(b))
            return fail(c, "remote_write.tls.insecure_skip_verify", "must be true or false");
        o->insecure_skip_verify = b && json_is_true(b);
        if (!o->cert_file != !o->key_file)
            return fail(c, "remote_write.tls", "cert_file and key_file go together");
    }
    if ((v = json_object_get(rw, "external_labels"))) {
        if (!json_is_object(v))
            return fail(c, "remote_write.external_labels", "must be an object of strings");
        size_t n = json_object_size(v);
        o->external_labels = calloc(2 * n + 1, sizeof(char *));
        if (!o->external_labels)
            return fail_oom(c, "remote_write.external_labels");
        const char *k;
        json_t *lv;
        json_object_foreach(v, k, lv)
        {
            char p[256];
            snprintf(p, sizeof(p), "remote_write.external_labels.%s", k);
            if (!valid_label_name(k))
                return fail(c, p, "not a label name ([a-zA-Z_][a-zA-Z0-9_]*, no leading __)");
            if (!json_is_string(lv) || strlen(json_string_value(lv)) != json_string_length(lv))
                return fail(c, p, "must be a string");
            char **slot = &o->external_labels[2 * o->nexternal];
            o->nexternal++;
            if (!(slot[0] = strdup(k)) || !(slot[1] = strdup(json_string_value(lv))))
                return fail_oom(c, p);
        }
    }
    return 0;
}

/* The top-level object into out (left for the caller to free on failure).
 * 0, -EINVAL or -ENOMEM, with the message in c->err. */
static int parse_root(const ctx_t *c, json_t *root, const char *const *keys, am_config_t *out)
{
    if (!json_is_object(root))
        return fail(c, "(top)", "the config must be a JSON object");
    int rc = check_keys(c, root, "", keys);
    if (rc < 0)
        return rc;
    json_t *v;
    if ((v = json_object_get(root, "server")) && (rc = parse_server(c, v, out)) < 0)
        return rc;
    if ((v = json_object_get(root, "limits")) && (rc = parse_limits(c, v, out)) < 0)
        return rc;
    if ((v = json_object_get(root, "remote_write")) &&
        (rc = parse_remote_write(c, v, &out->remote_write)) < 0)
        return rc;
    if ((v = json_object_get(root, "tag_dialects"))) {
        static const char *const names[] = {"dogstatsd", "influxdb", "librato", "signalfx"};
        if (!json_is_array(v))
            return fail(c, "tag_dialects", "must be an array of dialect names");
        out->tag_dialects = 0;
        for (size_t i = 0; i < json_array_size(v); i++) {
            const char *d = json_string_value(json_array_get(v, i));
            size_t k = 0;
            while (d && k < 4 && strcmp(d, names[k]) != 0)
                k++;
            if (!d || k == 4)
                return fail(c, "tag_dialects",
                            "element %zu: must be dogstatsd, influxdb, librato or signalfx", i);
            out->tag_dialects |= 1 << k;
        }
    }
    long long ttl;
    if ((rc = get_int(c, root, "", "ttl", 0, 2147483647, &ttl)) < 0)
        return rc;
    if (rc == 0)
        out->ttl = (long)ttl;
    if ((v = json_object_get(root, "auto_create"))) {
        if (!json_is_boolean(v))
            return fail(c, "auto_create", "must be true or false");
        out->has_auto_create = true;
        out->limits.auto_create = json_is_true(v);
    }
    if ((v = json_object_get(root, "families"))) {
        if (!json_is_array(v))
            return fail(c, "families", "must be an array");
        size_t n = json_array_size(v);
        out->families = calloc(n ? n : 1, sizeof(*out->families));
        if (!out->families)
            return fail_oom(c, "families");
        for (size_t i = 0; i < n; i++) {
            out->nfamilies++;
            rc = parse_family(c, json_array_get(v, i), i, &out->families[i]);
            if (rc < 0)
                return rc;
        }
        rc = check_clashes(c, out);
        if (rc < 0)
            return rc;
    }
    return 0;
}

void am_config_init(am_config_t *c)
{
    memset(c, 0, sizeof(*c));
    c->port = -1;
    c->statsd_port = -1;
    c->log_level = -1;
    c->receive_buffer_bytes = -1;
    c->workers = -1;
    c->ttl = -1;
    c->tag_dialects = -1;
    c->state_interval = -1;
    c->max_connections = -1;
    c->unix_mode = -1;
    am_limits_default(&c->limits);
    am_remote_opts_init(&c->remote_write);
}

void am_config_free(am_config_t *c)
{
    free(c->host);
    free(c->statsd_host);
    free(c->unix_path);
    free(c->state_file);
    free(c->mapping_config);
    free(c->web_config);
    for (size_t i = 0; i < c->nfamilies; i++)
        am_family_def_clear(&c->families[i]);
    free(c->families);
    am_remote_opts_free(&c->remote_write);
    am_config_init(c);
}

int am_config_parse(const char *text, size_t len, const char *name, am_config_t *out, char *err,
                    size_t errlen)
{
    static const char *const keys[] = {"server",   "limits",       "auto_create",  "ttl",
                                       "families", "tag_dialects", "remote_write", NULL};
    ctx_t c = {name, text, len, err, errlen};
    am_config_init(out);
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "%s:%d:%d: %s", name, jerr.line, jerr.column, jerr.text);
        return json_error_code(&jerr) == json_error_out_of_memory ? -ENOMEM : -EINVAL;
    }
    int rc = parse_root(&c, root, keys, out);
    json_decref(root);
    if (rc != 0)
        am_config_free(out);
    return rc;
}

int am_config_load(const char *path, am_config_t *out, char *err, size_t errlen)
{
    am_config_init(out);
    char *text;
    size_t len;
    int rc = am_file_read(path, MAX_CONFIG_BYTES, &text, &len, err, errlen);
    if (rc != 0)
        return rc;
    rc = am_config_parse(text, len, path, out, err, errlen);
    free(text);
    return rc;
}

void am_config_apply_limits(const am_config_t *c, am_limits_t *l)
{
    for (size_t i = 0; i < AM_CONFIG_NLIMITS; i++)
        if (c->has_limits[i])
            *limit_field(l, i) = limit_value(&c->limits, i);
    if (c->has_auto_create)
        l->auto_create = c->limits.auto_create;
    if (c->ttl >= 0)
        l->ttl = (uint32_t)c->ttl;
    if (c->tag_dialects >= 0)
        l->tag_dialects = (unsigned)c->tag_dialects;
}
