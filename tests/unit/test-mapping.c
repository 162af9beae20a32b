/* Unit tests for src/wire/mapping.c: statsd_exporter's mapping file and the
 * matcher, and the registry's use of it (registry/apply.c: mapped names and
 * labels, drops, the line cache).
 *
 * Files are inline YAML named "m.yml"; errors are checked as whole
 * "m.yml:LINE: ..." prefixes. The good files are written the way
 * statsd_exporter's README shows them. */
#include "mapping.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "registry.h"
#include "check-main.h"

#define NELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

typedef struct warnings {
    int n;
    char last[512];
} warnings_t;

static void collect(void *ctx, const char *msg)
{
    warnings_t *w = ctx;
    w->n++;
    snprintf(w->last, sizeof(w->last), "%s", msg);
}

static am_mapping_t *load_ok(const char *yaml, warnings_t *w)
{
    am_mapping_t *m = NULL;
    char err[512];
    int rc = am_mapping_load_buffer(yaml, strlen(yaml), "m.yml", &m, err, sizeof(err), collect, w);
    ck_assert_msg(rc == 0, "load failed: %s", err);
    return m;
}

/* Matches name as type t; returns the AM_MAPPING_* result and the name
 * and labels as "name{a=x,b=y}" in out. */
static int match(const am_mapping_t *m, const char *name, am_type_t t, char *out, size_t cap,
                 am_mapping_result_t *res)
{
    char buf[1024];
    int rc = am_mapping_match(m, name, strlen(name), t, buf, sizeof(buf), res);
    out[0] = '\0';
    if (rc != AM_MAPPING_MAPPED)
        return rc;
    size_t o = (size_t)snprintf(out, cap, "%.*s{", (int)res->name.n, res->name.p);
    for (size_t i = 0; i < res->nlabels; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s%.*s=%.*s", i ? "," : "",
                              (int)res->label_name[i].n, res->label_name[i].p,
                              (int)res->label_value[i].n, res->label_value[i].p);
    snprintf(out + o, cap - o, "}");
    return rc;
}

/* statsd_exporter README, "Glob matching". */
static const char readme_glob[] = "mappings:\n"
                                  "- match: \"test.dispatcher.*.*.*\"\n"
                                  "  name: \"dispatcher_events_total\"\n"
                                  "  labels:\n"
                                  "    processor: \"$1\"\n"
                                  "    action: \"$2\"\n"
                                  "    outcome: \"$3\"\n"
                                  "    job: \"test_dispatcher\"\n"
                                  "- match: \"*.signup.*.*\"\n"
                                  "  name: \"signup_events_total\"\n"
                                  "  labels:\n"
                                  "    provider: \"$2\"\n"
                                  "    outcome: \"$3\"\n"
                                  "    job: \"${1}_server\"\n";

START_TEST(test_readme_glob)
{
    warnings_t w = {0};
    am_mapping_t *m = load_ok(readme_glob, &w);
    ck_assert_int_eq(w.n, 0);
    ck_assert_uint_eq(am_mapping_count(m), 2);
    char out[512];
    am_mapping_result_t r;
    ck_assert_int_eq(match(m, "test.dispatcher.FooProcessor.send.success", AM_TYPE_COUNTER, out,
                           sizeof(out), &r),
                     AM_MAPPING_MAPPED);
    ck_assert_str_eq(out, "dispatcher_events_total{processor=FooProcessor,action=send,"
                          "outcome=success,job=test_dispatcher}");
    ck_assert_int_eq(
        match(m, "foo_product.signup.facebook.failure", AM_TYPE_COUNTER, out, sizeof(out), &r),
        AM_MAPPING_MAPPED);
    ck_assert_str_eq(
        out, "signup_events_total{provider=facebook,outcome=failure,job=foo_product_server}");
    ck_assert_uint_eq(r.line, 9);
    /* '*' is one component: more or fewer components do not match */
    ck_assert_int_eq(match(m, "test.dispatcher.a.b", AM_TYPE_COUNTER, out, sizeof(out), &r),
                     AM_MAPPING_NO_MATCH);
    ck_assert_int_eq(match(m, "test.dispatcher.a.b.c.d", AM_TYPE_COUNTER, out, sizeof(out), &r),
                     AM_MAPPING_NO_MATCH);
    am_mapping_free(m);
}
END_TEST

/* Ordering: the first glob in file order wins; with glob_disable_ordering
 * the most specific (literal before '*', left to right). */
START_TEST(test_glob_ordering)
{
    static const char ordered[] = "mappings:\n"
                                  "- match: a.*.c\n"
                                  "  name: first\n"
                                  "- match: a.b.c\n"
                                  "  name: literal\n";
    static const char unordered[] = "defaults:\n"
                                    "  glob_disable_ordering: true\n"
                                    "mappings:\n"
                                    "- match: a.*.c\n"
                                    "  name: first\n"
                                    "- match: a.b.*\n"
                                    "  name: second\n"
                                    "- match: a.b.c\n"
                                    "  name: literal\n";
    char out[256];
    am_mapping_result_t r;
    am_mapping_t *m = load_ok(ordered, NULL);
    match(m, "a.b.c", AM_TYPE_COUNTER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "first{}");
    am_mapping_free(m);
    m = load_ok(unordered, NULL);
    match(m, "a.b.c", AM_TYPE_COUNTER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "literal{}");
    match(m, "a.b.x", AM_TYPE_COUNTER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "second{}");
    match(m, "a.x.c", AM_TYPE_COUNTER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "first{}");
    am_mapping_free(m);
}
END_TEST

/* Partial wildcards inside a component, and globs before regexes. */
START_TEST(test_partial_and_regex)
{
    static const char yaml[] = "mappings:\n"
                               "- match: 'client.(.*)\\.(.*)'\n"
                               "  match_type: regex\n"
                               "  name: \"regex_${1}\"\n"
                               "  labels:\n"
                               "    rest: \"$2\"\n"
                               "- match: client.req_*_ms.*\n"
                               "  name: \"req_$1\"\n"
                               "  labels:\n"
                               "    host: \"$2\"\n";
    char out[256];
    am_mapping_result_t r;
    am_mapping_t *m = load_ok(yaml, NULL);
    match(m, "client.req_get_ms.web-1", AM_TYPE_TIMER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "req_get{host=web-1}");
    match(m, "client.other.thing", AM_TYPE_TIMER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "regex_other{rest=thing}");
    ck_assert_int_eq(match(m, "server.x", AM_TYPE_TIMER, out, sizeof(out), &r),
                     AM_MAPPING_NO_MATCH);
    am_mapping_free(m);
}
END_TEST

/* Regex search as Go's FindStringSubmatchIndex: unanchored unless the
 * pattern anchors itself; $0 is the matched text. */
START_TEST(test_regex_search)
{
    static const char yaml[] = "mappings:\n"
                               "- match: '^api\\.([a-z]+)$'\n"
                               "  match_type: regex\n"
                               "  name: anchored\n"
                               "  labels: {p: \"$1\"}\n"
                               "- match: 'db\\.([a-z]+)'\n"
                               "  match_type: regex\n"
                               "  name: loose\n"
                               "  labels: {t: \"$1\", all: \"$0\"}\n";
    char out[256];
    am_mapping_result_t r;
    am_mapping_t *m = load_ok(yaml, NULL);
    match(m, "api.openai", AM_TYPE_COUNTER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "anchored{p=openai}");
    ck_assert_int_eq(match(m, "x.api.openai", AM_TYPE_COUNTER, out, sizeof(out), &r),
                     AM_MAPPING_NO_MATCH);
    match(m, "prod.db.select.x", AM_TYPE_COUNTER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "loose{t=select,all=db.select}");
    am_mapping_free(m);
}
END_TEST

/* match_metric_type, action: drop, and every per-mapping setting. */
START_TEST(test_settings)
{
    static const char yaml[] = "defaults:\n"
                               "  ttl: 1h30m\n"
                               "  observer_type: summary\n"
                               "  honor_labels: true\n"
                               "mappings:\n"
                               "- match: x.*\n"
                               "  match_metric_type: counter\n"
                               "  name: x_count\n"
                               "- match: x.*\n"
                               "  match_metric_type: observer\n"
                               "  name: x_seconds\n"
                               "  help: \"X latency.\"\n"
                               "  scale: 0.5\n"
                               "  observer_type: histogram\n"
                               "  histogram_options:\n"
                               "    buckets: [0.1, 1, 10]\n"
                               "  ttl: 500ms\n"
                               "  honor_labels: false\n"
                               "- match: x.*\n"
                               "  action: drop\n"
                               "- match: y.*\n"
                               "  name: y\n"
                               "  buckets: [1, 2]\n";
    char out[256];
    am_mapping_result_t r;
    am_mapping_t *m = load_ok(yaml, NULL);
    match(m, "x.a", AM_TYPE_COUNTER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "x_count{}");
    ck_assert_uint_eq(r.ttl, 5400);
    ck_assert(r.honor_labels);
    ck_assert_int_eq(r.observer_type, AM_MAPPING_SUMMARY);
    ck_assert_ptr_null(r.help);
    match(m, "x.a", AM_TYPE_TIMER, out, sizeof(out), &r);
    ck_assert_str_eq(out, "x_seconds{}");
    ck_assert_str_eq(r.help, "X latency.");
    ck_assert(r.scale == 0.5);
    ck_assert_uint_eq(r.ttl, 1); /* 500ms: whole seconds, rounded up */
    ck_assert(!r.honor_labels);
    ck_assert_int_eq(r.observer_type, AM_MAPPING_HISTOGRAM);
    ck_assert_uint_eq(r.nbuckets, 3);
    ck_assert(r.buckets[2] == 10);
    ck_assert_int_eq(match(m, "x.a", AM_TYPE_GAUGE, out, sizeof(out), &r), AM_MAPPING_DROP);
    match(m, "y.a", AM_TYPE_HISTOGRAM, out, sizeof(out), &r);
    ck_assert_uint_eq(r.nbuckets, 2);
    am_mapping_free(m);
}
END_TEST

START_TEST(test_durations)
{
    static const struct {
        const char *s;
        uint64_t ns;
    } good[] = {{"0", 0},
                {"10m", 600000000000ull},
                {"1h30m", 5400000000000ull},
                {"500ms", 500000000ull},
                {"1.5h", 5400000000000ull},
                {"2s300ms", 2300000000ull},
                {"10us", 10000ull},
                {"7ns", 7}};
    for (int i = 0; i < NELEMS(good); i++) {
        uint64_t ns = 1;
        ck_assert_msg(am_mapping_parse_duration(good[i].s, strlen(good[i].s), &ns) == 0, "%s",
                      good[i].s);
        ck_assert_msg(ns == good[i].ns, "%s", good[i].s);
    }
    static const char *const bad[] = {"", "10", "m", "1x", "-1s", "1h 30m", "1..5s"};
    for (int i = 0; i < NELEMS(bad); i++) {
        uint64_t ns;
        ck_assert_msg(am_mapping_parse_duration(bad[i], strlen(bad[i]), &ns) == -EINVAL, "%s",
                      bad[i]);
    }
}
END_TEST

/* Keys of the format alice-metrics does not use: warnings naming them. */
START_TEST(test_unused_keys_warn)
{
    static const char yaml[] = "defaults:\n"
                               "  summary_options:\n"
                               "    max_age: 30s\n"
                               "mappings:\n"
                               "- match: a.*\n"
                               "  name: a\n"
                               "  timer_type: histogram\n"
                               "  quantiles:\n"
                               "    - quantile: 0.5\n"
                               "      error: 0.05\n"
                               "  distribution: x\n"
                               "  match_labels: {a: b}\n"
                               "  histogram_options:\n"
                               "    native_histogram_bucket_factor: 1.1\n"
                               "  something_new: 1\n"
                               "other_top_level: 1\n";
    warnings_t w = {0};
    am_mapping_t *m = load_ok(yaml, &w);
    ck_assert_int_eq(w.n, 8);
    /* the top level is read first, the mappings after */
    ck_assert_str_eq(w.last, "m.yml:15: something_new: unknown key, ignored");
    am_mapping_free(m);
    /* each named, with its line */
    static const struct {
        const char *yaml;
        const char *warning;
    } one[] = {
        {"mappings:\n- match: a\n  name: a\n  summary_options: {}\n",
         "m.yml:4: summary_options: accepted, not used (summaries here have _sum and _count, no "
         "quantiles)"},
        {"mappings:\n- match: a\n  name: a\n  timer_type: summary\n",
         "m.yml:4: timer_type: deprecated, read as observer_type"},
        {"mappings:\n- match: a\n  name: a\n  match_labels: {}\n",
         "m.yml:4: match_labels: accepted, not used (not used)"},
    };
    for (int i = 0; i < NELEMS(one); i++) {
        warnings_t w1 = {0};
        m = load_ok(one[i].yaml, &w1);
        ck_assert_int_eq(w1.n, 1);
        ck_assert_str_eq(w1.last, one[i].warning);
        am_mapping_free(m);
    }
}
END_TEST

/* Every bad file: an error with its line. */
static const struct {
    const char *yaml;
    const char *error; /* prefix */
} bad_files[] = {
    {"mappings:\n- match: a.b\n  name: [x\n", "m.yml:4: YAML: "},
    {"- a\n- b\n", "m.yml:1: expected a mapping"},
    {"mappings: {a: b}\n", "m.yml:1: mappings: expected a list"},
    {"mappings:\n- match: a.b\n", "m.yml:2: mapping for \"a.b\" without name"},
    {"mappings:\n- name: x\n", "m.yml:2: mapping without match"},
    {"mappings:\n- match: a.b\n  name: \"1x\"\n", "m.yml:3: name: \"1x\" is not a metric name"},
    {"mappings:\n- match: a.b\n  name: \"a-b\"\n", "m.yml:3: name: \"a-b\" is not a metric name"},
    {"mappings:\n- match: a.*\n  name: \"x_$2\"\n", "m.yml:3: name: \"x_$2\": capture $2, the "
                                                    "match has 1"},
    {"mappings:\n- match: a.*\n  name: \"x_${1\"\n", "m.yml:3: name: \"x_${1\": '$' must be"},
    {"mappings:\n- match: a..b\n  name: x\n", "m.yml:2: match: \"a..b\": empty component"},
    {"mappings:\n- match: a.b/c\n  name: x\n", "m.yml:2: match: \"a.b/c\": '/' is not allowed"},
    {"mappings:\n- match: 'a(b'\n  match_type: regex\n  name: x\n",
     "m.yml:2: match: regex \"a(b\": "},
    {"mappings:\n- match: a\n  match_type: fuzzy\n  name: x\n",
     "m.yml:3: match_type: \"fuzzy\" (glob or regex)"},
    {"mappings:\n- match: a\n  name: x\n  match_metric_type: set\n",
     "m.yml:4: match_metric_type: \"set\" (counter, gauge or observer)"},
    {"mappings:\n- match: a\n  name: x\n  action: keep\n", "m.yml:4: action: \"keep\""},
    {"mappings:\n- match: a\n  name: x\n  ttl: 10\n", "m.yml:4: ttl: \"10\" is not a Go duration"},
    {"mappings:\n- match: a\n  name: x\n  scale: lots\n", "m.yml:4: scale: \"lots\" is not a"},
    {"mappings:\n- match: a\n  name: x\n  buckets: [1, 1]\n",
     "m.yml:4: buckets: must be strictly increasing"},
    {"mappings:\n- match: a\n  name: x\n  buckets: 5\n", "m.yml:4: buckets: expected a list"},
    {"mappings:\n- match: a\n  name: x\n  buckets: [1]\n  histogram_options: {buckets: [2]}\n",
     "m.yml:4: buckets: given both"},
    {"mappings:\n- match: a\n  name: x\n  observer_type: gauge\n",
     "m.yml:4: observer_type: \"gauge\" (histogram or summary)"},
    {"mappings:\n- match: a\n  name: x\n  honor_labels: maybe\n",
     "m.yml:4: honor_labels: expected true or false"},
    {"mappings:\n- match: a\n  name: x\n  labels: {\"0a\": v}\n",
     "m.yml:4: labels: \"0a\" is not a label name"},
    {"mappings:\n- match: a\n  name: x\n  labels: {__a: v}\n",
     "m.yml:4: labels: \"__a\" is not a label name"},
    {"mappings:\n- match: a\n  name: x\n  labels: [a]\n", "m.yml:4: labels: expected a mapping"},
    {"mappings:\n- match: a\n  name: x\n  name: y\n", "m.yml:4: name: given twice"},
    {"mappings:\n- match: a\n  name: x\n  histogram_options: 3\n",
     "m.yml:4: histogram_options: expected a mapping"},
    {"defaults:\n  glob_disable_ordering: sometimes\n",
     "m.yml:2: glob_disable_ordering: expected true or false"},
    {"defaults:\n  ttl: forever\nmappings:\n- match: a\n  name: x\n",
     "m.yml:2: ttl: \"forever\" is not a Go duration"},
    {"mappings:\n- match: a\n  name: {x: y}\n", "m.yml:3: name: expected a single value"},
    {"mappings:\n- 3\n", "m.yml:2: mappings: expected a mapping of keys"},
};

START_TEST(test_bad_files)
{
    for (int i = 0; i < NELEMS(bad_files); i++) {
        am_mapping_t *m = NULL;
        char err[512];
        int rc = am_mapping_load_buffer(bad_files[i].yaml, strlen(bad_files[i].yaml), "m.yml", &m,
                                        err, sizeof(err), NULL, NULL);
        ck_assert_msg(rc == -EINVAL, "case %d loaded", i);
        ck_assert_ptr_null(m);
        ck_assert_msg(strncmp(err, bad_files[i].error, strlen(bad_files[i].error)) == 0,
                      "case %d: got \"%s\", want \"%s...\"", i, err, bad_files[i].error);
    }
}
END_TEST

START_TEST(test_empty_and_missing)
{
    am_mapping_t *m = load_ok("", NULL);
    ck_assert_uint_eq(am_mapping_count(m), 0);
    am_mapping_free(m);
    m = load_ok("mappings:\n", NULL);
    ck_assert_uint_eq(am_mapping_count(m), 0);
    am_mapping_free(m);
    char err[256];
    ck_assert_int_eq(am_mapping_load("/nonexistent/m.yml", &m, err, sizeof(err), NULL, NULL),
                     -ENOENT);
    ck_assert_str_eq(err, "/nonexistent/m.yml: cannot open: No such file or directory");
}
END_TEST

/* ---- the registry with a mapping ---- */

static am_reason_t ingest(am_registry_t *r, const char *line)
{
    am_sample_t *s = malloc(sizeof(*s));
    ck_assert_ptr_nonnull(s);
    am_reason_t rc = am_registry_ingest_line(r, line, strlen(line), s);
    free(s);
    return rc;
}

static const am_family_t *family(const am_registry_t *r, const char *name)
{
    for (const am_family_t *f = am_registry_first(r); f; f = am_family_next(f))
        if (strcmp(am_family_def(f)->name, name) == 0)
            return f;
    return NULL;
}

/* The series of family name whose key is key (label values joined by
 * '|' here for readability), or NULL. */
static const double *series(const am_registry_t *r, const char *name, const char *key)
{
    const am_family_t *f = family(r, name);
    if (!f)
        return NULL;
    for (const am_series_t *s = am_family_first_series(f); s; s = am_series_next(s)) {
        size_t n;
        const char *k = am_series_key(f, s, &n);
        char joined[512];
        if (n >= sizeof(joined))
            continue;
        for (size_t i = 0; i < n; i++)
            joined[i] = k[i] ? k[i] : '|';
        joined[n] = '\0';
        if (strcmp(joined, key) == 0)
            return am_series_values(s);
    }
    return NULL;
}

static const char guide_map[] = "mappings:\n"
                                "- match: api.*.*.*.*\n"
                                "  match_metric_type: counter\n"
                                "  name: alice_api_requests\n"
                                "  labels:\n"
                                "    provider: $1\n"
                                "    model: $2\n"
                                "    operation: $3\n"
                                "    status: $4\n"
                                "- match: app.*.latency\n"
                                "  name: app_latency_seconds\n"
                                "  help: App latency.\n"
                                "  scale: 2\n"
                                "  buckets: [0.5, 1]\n"
                                "  ttl: 1m\n"
                                "  labels: {app: $1, env: prod}\n"
                                "- match: sum.*\n"
                                "  observer_type: summary\n"
                                "  name: sum_seconds\n"
                                "- match: tagged.*\n"
                                "  name: tagged\n"
                                "  labels: {env: $1}\n"
                                "- match: honored.*\n"
                                "  honor_labels: true\n"
                                "  name: honored\n"
                                "  labels: {env: $1}\n"
                                "- match: bad.*\n"
                                "  name: $1\n"
                                "- match: noise.*\n"
                                "  action: drop\n";

START_TEST(test_registry_mapped)
{
    am_registry_t *r = am_registry_new(NULL);
    ck_assert_int_eq(am_catalog_install(r), 0);
    am_mapping_t *m = load_ok(guide_map, NULL);
    am_registry_set_mapping(r, m);
    /* into the catalogued family, with its declared labels; twice: the
     * second time through the line cache */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(ingest(r, "api.openai.gpt-4.chat.success:2|c"), AM_OK);
    const double *v = series(r, "alice_api_requests_total", "openai|gpt-4|chat|success");
    ck_assert_ptr_nonnull(v);
    ck_assert(v[0] == 6);
    /* an auto-created family takes help, buckets and ttl; scale applies
     * to observations, cached or not */
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(ingest(r, "app.web.latency:300|ms"), AM_OK);
    const am_family_t *f = family(r, "app_latency_seconds");
    ck_assert_ptr_nonnull(f);
    ck_assert_str_eq(am_family_def(f)->help, "App latency.");
    ck_assert_uint_eq(am_family_def(f)->nbuckets, 2);
    ck_assert_uint_eq(am_family_def(f)->ttl, 60);
    v = series(r, "app_latency_seconds", "web|prod");
    ck_assert_ptr_nonnull(v);
    ck_assert(v[0] == 2);               /* count */
    ck_assert(fabs(v[1] - 1.2) < 1e-9); /* 2 x 0.3 s x 2 */
    ck_assert(v[2] == 0 && v[3] == 2);  /* 0.6 s: in le=1 */
    ck_assert_int_eq(ingest(r, "sum.x:5|h"), AM_OK);
    ck_assert_int_eq(am_family_def(family(r, "sum_seconds"))->type, AM_FAMILY_SUMMARY);
    /* a mapping label beats the line's tag of that name; honor_labels: the tag wins */
    ck_assert_int_eq(ingest(r, "tagged.prod:1|g|#env:dev,zone:a"), AM_OK);
    ck_assert_ptr_nonnull(series(r, "tagged", "prod|a"));
    ck_assert_int_eq(ingest(r, "honored.prod:1|g|#env:dev"), AM_OK);
    ck_assert_ptr_nonnull(series(r, "honored", "dev"));
    /* the mapped name must be a name: a leading digit gets '_', like any */
    ck_assert_int_eq(ingest(r, "bad.9lives:1|g"), AM_OK);
    ck_assert_ptr_nonnull(family(r, "_9lives"));
    /* a catalogued family stays strict: an undeclared label rejects */
    ck_assert_int_eq(ingest(r, "api.openai.gpt-4.chat.success:1|c|#extra:1"),
                     AM_REJECT_UNDECLARED_LABEL);
    /* dropped: not a reject, twice (the cache), and bad values still reject */
    ck_assert_int_eq(ingest(r, "noise.a:1|c"), AM_MAPPING_DROPPED);
    ck_assert_int_eq(ingest(r, "noise.a:1|c"), AM_MAPPING_DROPPED);
    ck_assert_int_eq(ingest(r, "noise.a:x|c"), AM_REJECT_BAD_VALUE);
    ck_assert_ptr_null(family(r, "noise_a_total"));
    /* a line no mapping matches follows the usual rules */
    ck_assert_int_eq(ingest(r, "plain.name:1|c"), AM_OK);
    ck_assert_ptr_nonnull(family(r, "plain_name_total"));
    /* no mapping any more: the cache forgets the mapped lines */
    am_registry_set_mapping(r, NULL);
    ck_assert_int_eq(ingest(r, "noise.a:1|c"), AM_OK);
    ck_assert_int_eq(ingest(r, "api.openai.gpt-4.chat.success:1|c"), AM_OK);
    ck_assert_ptr_nonnull(family(r, "api_openai_gpt_4_chat_success_total"));
    am_registry_free(r);
    am_mapping_free(m);
}
END_TEST

static Suite *mapping_suite(void)
{
    Suite *s = suite_create("Mapping");
    TCase *tc = tcase_create("mapping");
    tcase_add_test(tc, test_readme_glob);
    tcase_add_test(tc, test_glob_ordering);
    tcase_add_test(tc, test_partial_and_regex);
    tcase_add_test(tc, test_regex_search);
    tcase_add_test(tc, test_settings);
    tcase_add_test(tc, test_durations);
    tcase_add_test(tc, test_unused_keys_warn);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_empty_and_missing);
    tcase_add_test(tc, test_registry_mapped);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(mapping_suite)
