/* mapping: statsd_exporter's mapping file and its matcher (mapping.h).
 *
 * The file is loaded with libyaml's document API, so that every node keeps
 * its line (yaml marks) for errors and warnings. Each mapping compiles to a
 * rule: a glob split into dot-separated components (each a literal or a
 * pattern with '*'s, none of which crosses a dot) or a POSIX extended
 * regex, and templates for the name and label values ("$1", "${1}"). */
#include "mapping.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "file.h"
#include "registry.h" /* AM_MAX_BUCKETS */

#define MAX_MAPPINGS   100000
#define MAX_COMPONENTS 64 /* dot-separated components of a glob */
#define MAX_CAPTURES   32

/* A template: literal pieces and captures, in order. */
typedef struct seg {
    int cap;   /* capture index; -1: literal */
    char *lit; /* owned (literal) */
    size_t len;
} seg_t;

typedef struct tmpl {
    size_t nseg;
    seg_t *seg; /* owned */
} tmpl_t;

typedef struct component {
    char *text; /* owned: the component with its '*'s */
    size_t len;
    unsigned rank; /* 2 literal, 1 some '*', 0 a lone '*': specificity */
    unsigned stars;
} component_t;

enum { MT_ANY = -1, MT_COUNTER = 0, MT_GAUGE = 1, MT_OBSERVER = 2 };

typedef struct rule {
    unsigned line;
    bool is_regex;
    regex_t re; /* is_regex */
    size_t ncomp;
    component_t *comp; /* owned (glob) */
    unsigned ncaptures;
    int mtype;
    bool drop;
    tmpl_t name;
    size_t nlabels;
    char *label_name[AM_MAX_TAGS]; /* owned */
    tmpl_t label_value[AM_MAX_TAGS];
    char *help; /* owned; NULL: none */
    double scale;
    bool honor_labels;
    int observer_type;
    size_t nbuckets;
    double *buckets; /* owned */
    uint32_t ttl;
} rule_t;

struct am_mapping {
    size_t nrules;
    rule_t *rules; /* owned; globs and regexes in file order */
    bool has_glob, has_regex;
    bool glob_disable_ordering;
};

/* ---- loading ---- */

typedef struct loader {
    yaml_document_t *doc;
    const char *file;
    char *err;
    size_t errcap;
    bool failed;
    am_mapping_warn_fn warn;
    void *ctx;
} loader_t;

static unsigned line_of(const yaml_node_t *node)
{
    return (unsigned)node->start_mark.line + 1;
}

__attribute__((format(printf, 3, 4))) static int fail(loader_t *l, const yaml_node_t *at,
                                                      const char *fmt, ...)
{
    if (l->failed)
        return -EINVAL;
    l->failed = true;
    int k = snprintf(l->err, l->errcap, "%s:%u: ", l->file, at ? line_of(at) : 1u);
    if (k >= 0 && (size_t)k < l->errcap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->err + k, l->errcap - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

__attribute__((format(printf, 3, 4))) static void warn(loader_t *l, const yaml_node_t *at,
                                                       const char *fmt, ...)
{
    if (!l->warn)
        return;
    char msg[512];
    int k = snprintf(msg, sizeof(msg), "%s:%u: ", l->file, line_of(at));
    if (k < 0 || (size_t)k >= sizeof(msg))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + k, sizeof(msg) - (size_t)k, fmt, ap);
    va_end(ap);
    l->warn(l->ctx, msg);
}

static const char *scalar(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool is_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE;
}

/* A scalar's text, or an error naming key. */
static int need_scalar(loader_t *l, const yaml_node_t *v, const char *key, const char **out)
{
    if (!is_scalar(v))
        return fail(l, v, "%s: expected a single value", key);
    *out = scalar(v);
    return 0;
}

static int parse_bool(loader_t *l, const yaml_node_t *v, const char *key, bool *out)
{
    const char *s = NULL;
    if (need_scalar(l, v, key, &s) != 0)
        return -EINVAL;
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No",
                                     "NO",    "off",   "Off",   "OFF"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (strcmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return fail(l, v, "%s: expected true or false, not \"%s\"", key, s);
}

static int parse_double(loader_t *l, const yaml_node_t *v, const char *key, double *out)
{
    const char *s = NULL;
    if (need_scalar(l, v, key, &s) != 0)
        return -EINVAL;
    if (!am_parse_number(s, strlen(s), out))
        return fail(l, v, "%s: \"%s\" is not a finite number", key, s);
    return 0;
}

int am_mapping_parse_duration(const char *s, size_t n, uint64_t *ns)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1},   {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"\xce\xbcs", 1e3},
                 {"ms", 1e6}, {"s", 1e9},  {"m", 60e9},        {"h", 3600e9}};
    if (n == 1 && s[0] == '0') {
        *ns = 0;
        return 0;
    }
    if (n == 0)
        return -EINVAL;
    double total = 0;
    size_t i = 0;
    if (s[0] == '+')
        i++;
    if (i == n)
        return -EINVAL;
    while (i < n) {
        size_t start = i;
        bool digits = false;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            digits = true;
        }
        if (i < n && s[i] == '.') {
            i++;
            while (i < n && s[i] >= '0' && s[i] <= '9') {
                i++;
                digits = true;
            }
        }
        if (!digits || i - start > 40)
            return -EINVAL;
        char num[48];
        memcpy(num, s + start, i - start);
        num[i - start] = '\0';
        double v = strtod(num, NULL);
        size_t best = 0, which = 0;
        for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
            size_t k = strlen(units[u].unit);
            if (k > best && i + k <= n && memcmp(s + i, units[u].unit, k) == 0) {
                best = k;
                which = u;
            }
        }
        if (best == 0)
            return -EINVAL; /* a number needs a unit */
        total += v * units[which].ns;
        i += best;
    }
    if (!(total <= 9.2e18))
        return -EINVAL;
    *ns = (uint64_t)total;
    return 0;
}

/* A template ("$1", "${1}", "$$" for '$') into t; captures above maxcap are
 * an error. */
static int parse_template(loader_t *l, const yaml_node_t *at, const char *key, const char *s,
                          unsigned maxcap, tmpl_t *t)
{
    size_t n = strlen(s);
    t->seg = calloc(n + 1, sizeof(seg_t));
    if (!t->seg)
        return -ENOMEM;
    t->nseg = 0;
    size_t i = 0, lit_start = 0;
    while (i <= n) {
        bool end = i == n;
        if (!end && s[i] != '$') {
            i++;
            continue;
        }
        /* close the literal before i */
        size_t lit_end = i;
        int cap = -1;
        size_t next = i + 1;
        bool dollar = false;
        if (!end) {
            if (i + 1 < n && s[i + 1] == '$') {
                dollar = true;
                lit_end = i + 1; /* keep one '$' */
                next = i + 2;
            } else {
                size_t j = i + 1;
                bool brace = j < n && s[j] == '{';
                if (brace)
                    j++;
                size_t d0 = j;
                unsigned v = 0;
                while (j < n && s[j] >= '0' && s[j] <= '9' && j - d0 < 4)
                    v = v * 10 + (unsigned)(s[j++] - '0');
                if (j == d0 || (brace && (j >= n || s[j] != '}')))
                    return fail(l, at,
                                "%s: \"%s\": '$' must be followed by a capture number "
                                "($1, ${1}) or '$'",
                                key, s);
                if (brace)
                    j++;
                if (v > maxcap)
                    return fail(l, at, "%s: \"%s\": capture $%u, the match has %u", key, s, v,
                                maxcap);
                cap = (int)v;
                next = j;
            }
        }
        if (lit_end > lit_start) {
            seg_t *g = &t->seg[t->nseg++];
            g->cap = -1;
            g->len = lit_end - lit_start;
            g->lit = strndup(s + lit_start, g->len);
            if (!g->lit)
                return -ENOMEM;
        }
        if (cap >= 0)
            t->seg[t->nseg++] = (seg_t){.cap = cap};
        (void)dollar;
        if (end)
            break;
        i = next;
        lit_start = next;
    }
    return 0;
}

static void tmpl_free(tmpl_t *t)
{
    for (size_t i = 0; i < t->nseg; i++)
        free(t->seg[i].lit);
    free(t->seg);
    t->seg = NULL;
    t->nseg = 0;
}

/* A template's text may only hold name characters besides captures. */
static bool name_template_ok(const tmpl_t *t)
{
    for (size_t i = 0; i < t->nseg; i++) {
        if (t->seg[i].cap >= 0)
            continue;
        for (size_t k = 0; k < t->seg[i].len; k++) {
            char c = t->seg[i].lit[k];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_'))
                return false;
        }
    }
    return true;
}

/* Compiles a glob: components of [a-zA-Z0-9_-] and '*'. */
static int compile_glob(loader_t *l, const yaml_node_t *at, const char *s, rule_t *r)
{
    size_t n = strlen(s);
    if (n == 0)
        return fail(l, at, "match: empty");
    size_t ncomp = 1;
    for (size_t i = 0; i < n; i++)
        ncomp += s[i] == '.';
    if (ncomp > MAX_COMPONENTS)
        return fail(l, at, "match: \"%s\": more than %d components", s, MAX_COMPONENTS);
    r->comp = calloc(ncomp, sizeof(component_t));
    if (!r->comp)
        return -ENOMEM;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            char c = s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '-' || c == '*'))
                return fail(l, at,
                            "match: \"%s\": '%c' is not allowed in a glob (letters, "
                            "digits, '_', '-', '.' and '*')",
                            s, c);
            continue;
        }
        component_t *c = &r->comp[r->ncomp++];
        c->len = i - start;
        if (c->len == 0)
            return fail(l, at, "match: \"%s\": empty component", s);
        c->text = strndup(s + start, c->len);
        if (!c->text)
            return -ENOMEM;
        for (size_t k = 0; k < c->len; k++)
            c->stars += c->text[k] == '*';
        c->rank = c->stars == 0 ? 2 : (c->len == 1 ? 0 : 1);
        r->ncaptures += c->stars;
        start = i + 1;
    }
    if (r->ncaptures > MAX_CAPTURES)
        return fail(l, at, "match: \"%s\": more than %d '*'", s, MAX_CAPTURES);
    return 0;
}

static int compile_regex(loader_t *l, const yaml_node_t *at, const char *s, rule_t *r)
{
    int rc = regcomp(&r->re, s, REG_EXTENDED);
    if (rc != 0) {
        char msg[256];
        regerror(rc, &r->re, msg, sizeof(msg));
        return fail(l, at, "match: regex \"%s\": %s", s, msg);
    }
    r->is_regex = true;
    if (r->re.re_nsub >= MAX_CAPTURES)
        return fail(l, at, "match: regex \"%s\": more than %d groups", s, MAX_CAPTURES - 1);
    r->ncaptures = (unsigned)r->re.re_nsub;
    return 0;
}

static void rule_free(rule_t *r)
{
    if (r->is_regex)
        regfree(&r->re);
    for (size_t i = 0; i < r->ncomp; i++)
        free(r->comp[i].text);
    free(r->comp);
    tmpl_free(&r->name);
    for (size_t i = 0; i < r->nlabels; i++) {
        free(r->label_name[i]);
        tmpl_free(&r->label_value[i]);
    }
    free(r->help);
    free(r->buckets);
}

/* What a mapping (or defaults) says, before it is compiled: node pointers
 * into the document, NULL when absent. */
typedef struct raw_rule {
    const yaml_node_t *at;
    const yaml_node_t *match, *match_type, *name, *labels, *match_metric_type, *action, *ttl, *help,
        *scale, *observer_type, *timer_type, *buckets, *hist_buckets, *honor_labels;
} raw_rule_t;

/* Keys statsd_exporter reads that alice-metrics does not use: accepted with
 * a warning that says why. */
static const struct {
    const char *key;
    const char *why;
} unused_keys[] = {
    {"summary_options", "summaries here have _sum and _count, no quantiles"},
    {"quantiles", "summaries here have _sum and _count, no quantiles"},
    {"distribution", "not used"},
    {"match_labels", "not used"},
    {"native_histogram_bucket_factor", "native histograms are not exposed"},
    {"native_histogram_max_buckets", "native histograms are not exposed"},
};

static void warn_unused(loader_t *l, const yaml_node_t *key, const char *where)
{
    const char *k = scalar(key);
    for (size_t i = 0; i < sizeof(unused_keys) / sizeof(unused_keys[0]); i++)
        if (strcmp(k, unused_keys[i].key) == 0) {
            warn(l, key, "%s%s: accepted, not used (%s)", where, k, unused_keys[i].why);
            return;
        }
    warn(l, key, "%s%s: unknown key, ignored", where, k);
}

/* The keys of a mapping node into raw (defaults: glob_disable_ordering
 * too). Duplicate keys are an error, as in statsd_exporter. */
static int read_rule_keys(loader_t *l, const yaml_node_t *node, raw_rule_t *raw, bool defaults,
                          bool *glob_disable_ordering)
{
    memset(raw, 0, sizeof(*raw));
    raw->at = node;
    if (node->type != YAML_MAPPING_NODE)
        return fail(l, node, "%s: expected a mapping of keys", defaults ? "defaults" : "mappings");
    const char *where = defaults ? "defaults." : "";
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        if (!is_scalar(k))
            return fail(l, k, "keys must be plain words");
        const char *key = scalar(k);
        const yaml_node_t **slot = NULL;
        if (strcmp(key, "match") == 0)
            slot = &raw->match;
        else if (strcmp(key, "match_type") == 0)
            slot = &raw->match_type;
        else if (strcmp(key, "name") == 0)
            slot = &raw->name;
        else if (strcmp(key, "labels") == 0)
            slot = &raw->labels;
        else if (strcmp(key, "match_metric_type") == 0)
            slot = &raw->match_metric_type;
        else if (strcmp(key, "action") == 0)
            slot = &raw->action;
        else if (strcmp(key, "ttl") == 0)
            slot = &raw->ttl;
        else if (strcmp(key, "help") == 0)
            slot = &raw->help;
        else if (strcmp(key, "scale") == 0)
            slot = &raw->scale;
        else if (strcmp(key, "observer_type") == 0)
            slot = &raw->observer_type;
        else if (strcmp(key, "timer_type") == 0) {
            warn(l, k, "%stimer_type: deprecated, read as observer_type", where);
            slot = &raw->timer_type;
        } else if (strcmp(key, "buckets") == 0)
            slot = &raw->buckets;
        else if (strcmp(key, "honor_labels") == 0)
            slot = &raw->honor_labels;
        else if (strcmp(key, "histogram_options") == 0) {
            if (v->type != YAML_MAPPING_NODE)
                return fail(l, v, "%shistogram_options: expected a mapping", where);
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
                 q++) {
                yaml_node_t *hk = yaml_document_get_node(l->doc, q->key);
                if (!is_scalar(hk))
                    return fail(l, hk, "keys must be plain words");
                if (strcmp(scalar(hk), "buckets") == 0)
                    raw->hist_buckets = yaml_document_get_node(l->doc, q->value);
                else
                    warn_unused(l, hk,
                                defaults ? "defaults.histogram_options." : "histogram_options.");
            }
            continue;
        } else if (defaults && strcmp(key, "glob_disable_ordering") == 0) {
            if (parse_bool(l, v, "glob_disable_ordering", glob_disable_ordering) != 0)
                return -EINVAL;
            continue;
        } else {
            warn_unused(l, k, where);
            continue;
        }
        if (*slot)
            return fail(l, k, "%s%s: given twice", where, key);
        *slot = v;
    }
    if (defaults) {
        const yaml_node_t *unused[] = {raw->match,  raw->name, raw->labels,
                                       raw->action, raw->help, raw->match_metric_type,
                                       raw->scale};
        for (size_t i = 0; i < sizeof(unused) / sizeof(unused[0]); i++)
            if (unused[i])
                warn(l, unused[i], "defaults: a per-mapping key, not used as a default");
    }
    return 0;
}

static int parse_buckets(loader_t *l, const yaml_node_t *v, rule_t *r)
{
    if (v->type != YAML_SEQUENCE_NODE)
        return fail(l, v, "buckets: expected a list of numbers");
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    if (n == 0)
        return 0; /* statsd_exporter: empty means the defaults */
    if (n > AM_MAX_BUCKETS)
        return fail(l, v, "buckets: more than %d", AM_MAX_BUCKETS);
    r->buckets = malloc(n * sizeof(double));
    if (!r->buckets)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *e = yaml_document_get_node(l->doc, v->data.sequence.items.start[i]);
        if (parse_double(l, e, "buckets", &r->buckets[i]) != 0)
            return -EINVAL;
        if (i > 0 && !(r->buckets[i] > r->buckets[i - 1]))
            return fail(l, e, "buckets: must be strictly increasing");
    }
    r->nbuckets = n;
    return 0;
}

/* The settings a mapping takes from defaults when it lacks them. */
static const yaml_node_t *or_default(const yaml_node_t *mine, const yaml_node_t *dflt)
{
    return mine ? mine : dflt;
}

static int compile_rule(loader_t *l, const raw_rule_t *raw, const raw_rule_t *dflt, rule_t *r)
{
    r->line = line_of(raw->at);
    r->scale = 1.0;
    r->mtype = MT_ANY;
    const char *s = NULL;
    int rc;
    /* action */
    if (raw->action) {
        if (need_scalar(l, raw->action, "action", &s) != 0)
            return -EINVAL;
        if (strcmp(s, "drop") == 0)
            r->drop = true;
        else if (strcmp(s, "map") != 0)
            return fail(l, raw->action, "action: \"%s\" (map or drop)", s);
    }
    /* match and match_type */
    if (!raw->match)
        return fail(l, raw->at, "mapping without match");
    const char *match = NULL;
    if (need_scalar(l, raw->match, "match", &match) != 0)
        return -EINVAL;
    bool regex = false;
    const yaml_node_t *mt = or_default(raw->match_type, dflt->match_type);
    if (mt) {
        if (need_scalar(l, mt, "match_type", &s) != 0)
            return -EINVAL;
        if (strcmp(s, "regex") == 0)
            regex = true;
        else if (strcmp(s, "glob") != 0 && s[0] != '\0')
            return fail(l, mt, "match_type: \"%s\" (glob or regex)", s);
    }
    rc = regex ? compile_regex(l, raw->match, match, r) : compile_glob(l, raw->match, match, r);
    if (rc != 0)
        return rc;
    /* match_metric_type */
    if (raw->match_metric_type) {
        if (need_scalar(l, raw->match_metric_type, "match_metric_type", &s) != 0)
            return -EINVAL;
        if (strcmp(s, "counter") == 0)
            r->mtype = MT_COUNTER;
        else if (strcmp(s, "gauge") == 0)
            r->mtype = MT_GAUGE;
        else if (strcmp(s, "observer") == 0 || strcmp(s, "timer") == 0)
            r->mtype = MT_OBSERVER;
        else if (s[0] != '\0')
            return fail(l, raw->match_metric_type,
                        "match_metric_type: \"%s\" (counter, gauge or observer)", s);
    }
    /* name */
    if (!raw->name) {
        if (!r->drop)
            return fail(l, raw->at, "mapping for \"%s\" without name", match);
    } else {
        if (need_scalar(l, raw->name, "name", &s) != 0)
            return -EINVAL;
        if (s[0] == '\0' && !r->drop)
            return fail(l, raw->name, "name: empty");
        rc = parse_template(l, raw->name, "name", s, r->ncaptures, &r->name);
        if (rc != 0)
            return rc;
        if (!name_template_ok(&r->name) ||
            (r->name.nseg && r->name.seg[0].cap < 0 && r->name.seg[0].lit[0] >= '0' &&
             r->name.seg[0].lit[0] <= '9'))
            return fail(l, raw->name,
                        "name: \"%s\" is not a metric name ([a-zA-Z_][a-zA-Z0-9_]* and "
                        "captures)",
                        s);
    }
    /* labels */
    if (raw->labels) {
        const yaml_node_t *v = raw->labels;
        if (v->type != YAML_MAPPING_NODE)
            return fail(l, v, "labels: expected a mapping of label names to values");
        for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
            yaml_node_t *val = yaml_document_get_node(l->doc, p->value);
            if (!is_scalar(k))
                return fail(l, k, "labels: names must be plain words");
            const char *ln = scalar(k);
            if (!am_valid_label_name(ln, strlen(ln)))
                return fail(l, k,
                            "labels: \"%s\" is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, "
                            "no leading __)",
                            ln);
            for (size_t i = 0; i < r->nlabels; i++)
                if (strcmp(r->label_name[i], ln) == 0)
                    return fail(l, k, "labels: \"%s\" given twice", ln);
            if (r->nlabels == AM_MAX_TAGS)
                return fail(l, k, "labels: more than %d", AM_MAX_TAGS);
            const char *lv = NULL;
            if (need_scalar(l, val, "labels", &lv) != 0)
                return -EINVAL;
            if (!am_valid_utf8(lv, strlen(lv)) || strlen(lv) > AM_MAX_LABEL_VALUE_LEN)
                return fail(l, val, "labels: value of \"%s\" is not UTF-8 or too long", ln);
            r->label_name[r->nlabels] = strdup(ln);
            if (!r->label_name[r->nlabels])
                return -ENOMEM;
            r->nlabels++;
            rc =
                parse_template(l, val, "labels", lv, r->ncaptures, &r->label_value[r->nlabels - 1]);
            if (rc != 0)
                return rc;
        }
    }
    /* help */
    if (raw->help) {
        if (need_scalar(l, raw->help, "help", &s) != 0)
            return -EINVAL;
        if (!am_valid_utf8(s, strlen(s)))
            return fail(l, raw->help, "help: not UTF-8");
        if (s[0] && !(r->help = strdup(s)))
            return -ENOMEM;
    }
    /* scale */
    if (raw->scale && parse_double(l, raw->scale, "scale", &r->scale) != 0)
        return -EINVAL;
    /* ttl */
    const yaml_node_t *ttl = or_default(raw->ttl, dflt->ttl);
    if (ttl) {
        uint64_t ns;
        if (need_scalar(l, ttl, "ttl", &s) != 0)
            return -EINVAL;
        if (am_mapping_parse_duration(s, strlen(s), &ns) != 0)
            return fail(l, ttl, "ttl: \"%s\" is not a Go duration (10m, 1h30m, 500ms)", s);
        uint64_t secs = (ns + 999999999u) / 1000000000u; /* whole seconds, rounded up */
        if (secs >= UINT32_MAX)
            return fail(l, ttl, "ttl: \"%s\" is too long", s);
        r->ttl = (uint32_t)secs;
    }
    /* observer_type (timer_type: its deprecated name) */
    const yaml_node_t *ot = raw->observer_type ? raw->observer_type : raw->timer_type;
    if (!ot)
        ot = dflt->observer_type ? dflt->observer_type : dflt->timer_type;
    if (ot) {
        if (need_scalar(l, ot, "observer_type", &s) != 0)
            return -EINVAL;
        if (strcmp(s, "summary") == 0)
            r->observer_type = AM_MAPPING_SUMMARY;
        else if (strcmp(s, "histogram") != 0 && s[0] != '\0')
            return fail(l, ot, "observer_type: \"%s\" (histogram or summary)", s);
    }
    /* buckets: histogram_options.buckets, else buckets (older form) */
    if (raw->hist_buckets && raw->buckets)
        return fail(l, raw->buckets,
                    "buckets: given both here and in histogram_options, as statsd_exporter "
                    "refuses");
    const yaml_node_t *b = raw->hist_buckets ? raw->hist_buckets : raw->buckets;
    if (b && (rc = parse_buckets(l, b, r)) != 0)
        return rc;
    if (!r->nbuckets) {
        b = dflt->hist_buckets ? dflt->hist_buckets : dflt->buckets;
        if (b && (rc = parse_buckets(l, b, r)) != 0)
            return rc;
    }
    /* honor_labels */
    const yaml_node_t *hl = or_default(raw->honor_labels, dflt->honor_labels);
    if (hl && parse_bool(l, hl, "honor_labels", &r->honor_labels) != 0)
        return -EINVAL;
    return 0;
}

static int load_document(loader_t *l, am_mapping_t *m)
{
    yaml_node_t *root = yaml_document_get_root_node(l->doc);
    if (!root)
        return 0; /* an empty file: no mappings */
    if (root->type == YAML_SCALAR_NODE && scalar(root)[0] == '\0')
        return 0;
    if (root->type != YAML_MAPPING_NODE)
        return fail(l, root, "expected a mapping with the keys \"mappings\" and \"defaults\"");
    const yaml_node_t *mappings = NULL, *defaults = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(l->doc, p->value);
        if (!is_scalar(k))
            return fail(l, k, "keys must be plain words");
        const yaml_node_t **slot = NULL;
        if (strcmp(scalar(k), "mappings") == 0)
            slot = &mappings;
        else if (strcmp(scalar(k), "defaults") == 0)
            slot = &defaults;
        else {
            warn(l, k, "%s: unknown key, ignored", scalar(k));
            continue;
        }
        if (*slot)
            return fail(l, k, "%s: given twice", scalar(k));
        *slot = v;
    }
    raw_rule_t dflt;
    memset(&dflt, 0, sizeof(dflt));
    if (defaults && !(is_scalar(defaults) && scalar(defaults)[0] == '\0') &&
        read_rule_keys(l, defaults, &dflt, true, &m->glob_disable_ordering) != 0)
        return -EINVAL;
    if (!mappings || (is_scalar(mappings) && scalar(mappings)[0] == '\0'))
        return 0;
    if (mappings->type != YAML_SEQUENCE_NODE)
        return fail(l, mappings, "mappings: expected a list");
    size_t n = (size_t)(mappings->data.sequence.items.top - mappings->data.sequence.items.start);
    if (n > MAX_MAPPINGS)
        return fail(l, mappings, "mappings: more than %d", MAX_MAPPINGS);
    m->rules = calloc(n ? n : 1, sizeof(rule_t));
    if (!m->rules)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *node = yaml_document_get_node(l->doc, mappings->data.sequence.items.start[i]);
        raw_rule_t raw;
        if (read_rule_keys(l, node, &raw, false, NULL) != 0)
            return -EINVAL;
        rule_t *r = &m->rules[m->nrules++];
        int rc = compile_rule(l, &raw, &dflt, r);
        if (rc != 0)
            return rc;
        if (r->is_regex)
            m->has_regex = true;
        else
            m->has_glob = true;
    }
    return 0;
}

int am_mapping_load_buffer(const char *data, size_t n, const char *name, am_mapping_t **out,
                           char *err, size_t errcap, am_mapping_warn_fn warnfn, void *ctx)
{
    if (errcap)
        err[0] = '\0';
    loader_t l = {.file = name, .err = err, .errcap = errcap, .warn = warnfn, .ctx = ctx};
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, n);
    yaml_document_t doc;
    if (!yaml_parser_load(&parser, &doc)) {
        if (parser.error == YAML_MEMORY_ERROR) {
            yaml_parser_delete(&parser);
            return -ENOMEM;
        }
        snprintf(err, errcap, "%s:%u: YAML: %s%s%s", name, (unsigned)(parser.problem_mark.line + 1),
                 parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return -EINVAL;
    }
    l.doc = &doc;
    am_mapping_t *m = calloc(1, sizeof(*m));
    int rc = m ? load_document(&l, m) : -ENOMEM;
    /* A second document in the stream is ignored by statsd_exporter too. */
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc != 0) {
        if (rc == -ENOMEM && !l.failed)
            snprintf(err, errcap, "%s: out of memory", name);
        am_mapping_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int am_mapping_load(const char *path, am_mapping_t **out, char *err, size_t errcap,
                    am_mapping_warn_fn warnfn, void *ctx)
{
    /* Mapping files are small; 16 MiB is far past any real one. Read at
     * SIGHUP on the loop: a FIFO or a device is refused, never waited on
     * (file.h). */
    char *data;
    size_t n;
    int rc = am_file_read(path, 16u << 20, &data, &n, err, errcap);
    if (rc != 0)
        return rc;
    rc = am_mapping_load_buffer(data, n, path, out, err, errcap, warnfn, ctx);
    free(data);
    return rc;
}

void am_mapping_free(am_mapping_t *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->nrules; i++)
        rule_free(&m->rules[i]);
    free(m->rules);
    free(m);
}

size_t am_mapping_count(const am_mapping_t *m)
{
    return m ? m->nrules : 0;
}

/* ---- matching ---- */

/* Matches one component pattern p (with '*'s) against text t, neither
 * holding a dot; each '*' takes a run of t, recorded in caps. The classic
 * two-pointer wildcard match: O(|p| * |t|), no recursion. */
static bool match_component(const char *p, size_t pn, const char *t, size_t tn, am_slice_t *caps)
{
    size_t pi = 0, ti = 0, star_p = SIZE_MAX, star_t = 0;
    unsigned k = 0, star_k = 0;
    while (ti < tn) {
        if (pi < pn && p[pi] == '*') {
            star_p = pi++;
            star_k = k;
            caps[k] = (am_slice_t){t + ti, 0};
            k++;
            star_t = ti;
        } else if (pi < pn && p[pi] == t[ti]) {
            pi++;
            ti++;
        } else if (star_p != SIZE_MAX) {
            /* the last '*' takes one more byte; later ones start over */
            pi = star_p + 1;
            k = star_k + 1;
            caps[star_k].n++;
            ti = ++star_t;
        } else {
            return false;
        }
    }
    while (pi < pn && p[pi] == '*') {
        caps[k++] = (am_slice_t){t + tn, 0};
        pi++;
    }
    return pi == pn;
}

static bool type_fits(int mtype, am_type_t t)
{
    switch (mtype) {
        case MT_ANY:
            return true;
        case MT_COUNTER:
            return t == AM_TYPE_COUNTER;
        case MT_GAUGE:
            return t == AM_TYPE_GAUGE;
        default:
            return t == AM_TYPE_TIMER || t == AM_TYPE_HISTOGRAM || t == AM_TYPE_DISTRIBUTION;
    }
}

static bool match_glob(const rule_t *r, const am_slice_t *comp, size_t ncomp, am_slice_t *caps)
{
    if (ncomp != r->ncomp)
        return false;
    unsigned k = 0;
    for (size_t i = 0; i < ncomp; i++) {
        const component_t *c = &r->comp[i];
        if (c->stars == 0) {
            if (c->len != comp[i].n || memcmp(c->text, comp[i].p, c->len) != 0)
                return false;
        } else if (!match_component(c->text, c->len, comp[i].p, comp[i].n, caps + k)) {
            return false;
        }
        k += c->stars;
    }
    return true;
}

/* Whether glob a is more specific than b, component by component from the
 * left (literal, then a partial '*', then a lone '*'). */
static bool more_specific(const rule_t *a, const rule_t *b)
{
    for (size_t i = 0; i < a->ncomp; i++)
        if (a->comp[i].rank != b->comp[i].rank)
            return a->comp[i].rank > b->comp[i].rank;
    return false;
}

/* Expands t with caps (ncaps of them, caps[0] the whole match) into
 * buf at *used. */
static int expand(const tmpl_t *t, const am_slice_t *caps, unsigned ncaps, char *buf, size_t cap,
                  size_t *used, am_slice_t *out)
{
    size_t start = *used;
    for (size_t i = 0; i < t->nseg; i++) {
        const char *p;
        size_t n;
        if (t->seg[i].cap < 0) {
            p = t->seg[i].lit;
            n = t->seg[i].len;
        } else if ((unsigned)t->seg[i].cap <= ncaps) {
            p = caps[t->seg[i].cap].p;
            n = caps[t->seg[i].cap].n;
        } else {
            continue;
        }
        if (n > cap - *used)
            return -ENOSPC;
        if (n)
            memcpy(buf + *used, p, n);
        *used += n;
    }
    *out = (am_slice_t){buf + start, *used - start};
    return 0;
}

static int fill(const rule_t *r, const am_slice_t *caps, char *buf, size_t cap,
                am_mapping_result_t *out)
{
    if (r->drop)
        return AM_MAPPING_DROP;
    size_t used = 0;
    int rc = expand(&r->name, caps, r->ncaptures, buf, cap, &used, &out->name);
    for (size_t i = 0; rc == 0 && i < r->nlabels; i++) {
        out->label_name[i] = (am_slice_t){r->label_name[i], strlen(r->label_name[i])};
        rc = expand(&r->label_value[i], caps, r->ncaptures, buf, cap, &used, &out->label_value[i]);
    }
    if (rc != 0)
        return rc;
    out->nlabels = r->nlabels;
    out->help = r->help;
    out->scale = r->scale;
    out->honor_labels = r->honor_labels;
    out->observer_type = r->observer_type;
    out->nbuckets = r->nbuckets;
    out->buckets = r->buckets;
    out->ttl = r->ttl;
    out->line = r->line;
    return AM_MAPPING_MAPPED;
}

int am_mapping_match(const am_mapping_t *m, const char *name, size_t n, am_type_t t, char *buf,
                     size_t cap, am_mapping_result_t *out)
{
    am_slice_t caps[MAX_CAPTURES + 1];
    caps[0] = (am_slice_t){name, n};
    if (m->has_glob) {
        am_slice_t comp[MAX_COMPONENTS];
        size_t ncomp = 0, start = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i < n && name[i] != '.')
                continue;
            if (ncomp == MAX_COMPONENTS) {
                ncomp = 0; /* no glob has this many components */
                break;
            }
            comp[ncomp++] = (am_slice_t){name + start, i - start};
            start = i + 1;
        }
        const rule_t *best = NULL;
        am_slice_t best_caps[MAX_CAPTURES + 1], cur[MAX_CAPTURES + 1];
        for (size_t i = 0; ncomp && i < m->nrules; i++) {
            const rule_t *r = &m->rules[i];
            if (r->is_regex || !type_fits(r->mtype, t) || !match_glob(r, comp, ncomp, cur + 1))
                continue;
            if (!m->glob_disable_ordering)
                return (cur[0] = caps[0], fill(r, cur, buf, cap, out));
            if (!best || more_specific(r, best)) {
                best = r;
                memcpy(best_caps, cur, sizeof(cur));
            }
        }
        if (best) {
            best_caps[0] = caps[0];
            return fill(best, best_caps, buf, cap, out);
        }
    }
    if (m->has_regex) {
        /* regexec wants a NUL-terminated string */
        char s[AM_MAX_NAME_LEN + 1];
        if (n > AM_MAX_NAME_LEN)
            return AM_MAPPING_NO_MATCH;
        memcpy(s, name, n);
        s[n] = '\0';
        regmatch_t pm[MAX_CAPTURES];
        for (size_t i = 0; i < m->nrules; i++) {
            const rule_t *r = &m->rules[i];
            if (!r->is_regex || !type_fits(r->mtype, t))
                continue;
            if (regexec(&r->re, s, r->ncaptures + 1, pm, 0) != 0)
                continue;
            for (unsigned k = 0; k <= r->ncaptures; k++)
                caps[k] = pm[k].rm_so < 0 ? (am_slice_t){name, 0}
                                          : (am_slice_t){name + pm[k].rm_so,
                                                         (size_t)(pm[k].rm_eo - pm[k].rm_so)};
            return fill(r, caps, buf, cap, out);
        }
    }
    return AM_MAPPING_NO_MATCH;
}
