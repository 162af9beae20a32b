/* Unit tests for src/http/expose.c: Prometheus text 0.0.4 and OpenMetrics 1.0.0.
 *
 * Golden folders tests/data/expose/<case>/: lines.txt (StatsD lines, one per
 * line; the token <LF> stands for a newline byte inside a line), an optional
 * config.json (families defined before the lines), expected.txt (0.0.4) and
 * expected.om.txt (OpenMetrics), compared byte for byte. The expected files
 * were written against the exposition format rules (prometheus.io), not
 * copied from the program's output. Every rendering is also checked by a
 * structural checker here and, when installed, by prometheus_client's two
 * parsers and `promtool check metrics`.
 *
 * On a golden mismatch the actual output is written to the test's build
 * directory (AM_TEST_OUTPUT_DIR, set by tests/unit/meson.build) as
 * expose-<case>.actual.txt / .actual.om.txt.
 *
 * Tests named regression_* pin defects found and fixed (see their comments). */
#include "expose.h"
#include "registry-test.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "parse.h"
#include "check-main.h"

#ifndef AM_SOURCE_ROOT
#define AM_SOURCE_ROOT "."
#endif
#define EXPOSE_DATA AM_SOURCE_ROOT "/tests/data/expose/"
#ifndef AM_TEST_OUTPUT_DIR
#error "AM_TEST_OUTPUT_DIR must name the build directory (tests/unit/meson.build defines it)"
#endif

#define PYTHON "/usr/bin/python3"


/* ---- helpers ---- */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    am_buf_t b;
    am_buf_init(&b, 0);
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        am_buf_append(&b, tmp, n);
    fclose(f);
    ck_assert(!am_buf_failed(&b));
    am_buf_putc(&b, '\0'); /* an empty file still gets an allocation */
    char *p = am_buf_steal(&b, len);
    (*len)--;
    return p;
}

static void apply_ok(am_registry_t *r, const char *line)
{
    am_reason_t rc = apply_line(r, line);
    ck_assert_msg(rc == AM_OK, "line \"%s\": %s", line, am_reason_label(rc));
}

static char *render(const am_registry_t *r, am_format_t fmt, size_t *len)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    am_expose_registry(&b, r, fmt);
    am_expose_finish(&b, fmt);
    ck_assert(!am_buf_failed(&b));
    am_buf_putc(&b, '\0');
    char *p = am_buf_steal(&b, len);
    (*len)--;
    return p;
}

/* Builds the registry of a golden case. */
static am_registry_t *build_case(const char *name, bool catalog)
{
    char path[1024];
    am_limits_t lim;
    am_limits_default(&lim);
    am_config_t cfg;
    bool have_cfg = false;
    snprintf(path, sizeof(path), EXPOSE_DATA "%s/config.json", name);
    if (access(path, F_OK) == 0) {
        char err[512];
        ck_assert_msg(am_config_load(path, &cfg, err, sizeof(err)) == 0, "%s", err);
        am_config_apply_limits(&cfg, &lim);
        have_cfg = true;
    }
    am_registry_t *r = am_registry_new(&lim);
    ck_assert_ptr_nonnull(r);
    if (catalog)
        ck_assert_int_eq(am_catalog_install(r), 0);
    if (have_cfg) {
        for (size_t i = 0; i < cfg.nfamilies; i++)
            ck_assert_int_eq(am_registry_define(r, &cfg.families[i]), 0);
        am_config_free(&cfg);
    }

    snprintf(path, sizeof(path), EXPOSE_DATA "%s/lines.txt", name);
    size_t len;
    char *text = slurp(path, &len);
    ck_assert_msg(text != NULL, "cannot read %s", path);
    char *p = text, *end = text + len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n > 0) {
            /* <LF> -> '\n' */
            char line[4096];
            ck_assert_uint_lt(n, sizeof(line));
            size_t o = 0;
            for (size_t i = 0; i < n; i++) {
                if (n - i >= 4 && memcmp(p + i, "<LF>", 4) == 0) {
                    line[o++] = '\n';
                    i += 3;
                } else {
                    line[o++] = p[i];
                }
            }
            line[o] = '\0';
            am_reason_t rc = apply_line_n(r, line, o);
            ck_assert_msg(rc == AM_OK, "%s: line \"%.*s\": %s", name, (int)n, p,
                          am_reason_label(rc));
        }
        p += n + 1;
    }
    free(text);
    return r;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static void compare_golden(const char *name, const char *file, const char *got, size_t got_len)
{
    char path[1024];
    snprintf(path, sizeof(path), EXPOSE_DATA "%s/%s", name, file);
    size_t want_len;
    char *want = slurp(path, &want_len);
    ck_assert_msg(want != NULL, "cannot read %s", path);
    if (want_len == got_len && memcmp(want, got, got_len) == 0) {
        free(want);
        return;
    }
    /* Find the first differing line for the message. */
    size_t i = 0, line = 1, bol = 0;
    while (i < want_len && i < got_len && want[i] == got[i]) {
        if (got[i] == '\n') {
            line++;
            bol = i + 1;
        }
        i++;
    }
    const char *we = memchr(want + bol, '\n', want_len > bol ? want_len - bol : 0);
    const char *ge = memchr(got + bol, '\n', got_len > bol ? got_len - bol : 0);
    int wl = bol < want_len ? (int)((we ? we : want + want_len) - (want + bol)) : 0;
    int gl = bol < got_len ? (int)((ge ? ge : got + got_len) - (got + bol)) : 0;
    char actual[1024];
    snprintf(actual, sizeof(actual), AM_TEST_OUTPUT_DIR "/expose-%s.actual%s", name,
             strstr(file, ".om.") ? ".om.txt" : ".txt");
    write_file(actual, got, got_len);
    ck_abort_msg("%s/%s differs at line %zu:\n want: %.*s\n  got: %.*s\n(actual output in %s)",
                 name, file, line, wl, want + bol, gl, got + bol, actual);
    free(want);
}

/* ---- structural checker (no external tools) ---- */

static bool starts_with(const char *p, size_t n, const char *pfx)
{
    size_t k = strlen(pfx);
    return n >= k && memcmp(p, pfx, k) == 0;
}

static double sample_value(const char *line, size_t n)
{
    const char *sp = line + n;
    while (sp > line && sp[-1] != ' ')
        sp--;
    char tmp[64];
    size_t vn = (size_t)(line + n - sp);
    ck_assert_uint_lt(vn, sizeof(tmp));
    memcpy(tmp, sp, vn);
    tmp[vn] = '\0';
    if (strcmp(tmp, "+Inf") == 0)
        return INFINITY;
    if (strcmp(tmp, "-Inf") == 0)
        return -INFINITY;
    if (strcmp(tmp, "NaN") == 0)
        return NAN;
    char *e;
    double v = strtod(tmp, &e);
    ck_assert_msg(*e == '\0' && vn > 0, "bad sample value \"%s\"", tmp);
    return v;
}

/* Checks the framing rules and, per histogram series, cumulative ascending
 * buckets ending in +Inf with _count equal to the +Inf bucket. */
static void check_structure(const char *text, size_t len, am_format_t fmt, size_t nfamilies)
{
    bool om = fmt == AM_FORMAT_OPENMETRICS;
    ck_assert_msg(len > 0 && text[len - 1] == '\n', "output must end with a newline");
    ck_assert_msg(memchr(text, '\r', len) == NULL, "no carriage returns");
    size_t nhelp = 0, ntype = 0, neof = 0;
    char family[256] = "", type[32] = "";
    double last_le = -INFINITY, last_bucket = 0, inf_bucket = NAN;
    bool prev_help = false;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        ck_assert_ptr_nonnull(nl);
        size_t n = (size_t)(nl - p);
        ck_assert_msg(n > 0, "no blank lines");
        ck_assert_msg(neof == 0, "nothing after # EOF");
        if (p[0] == '#') {
            if (starts_with(p, n, "# HELP ")) {
                const char *nm = p + 7;
                const char *sp = memchr(nm, ' ', (size_t)(nl - nm));
                ck_assert_ptr_nonnull(sp);
                ck_assert_uint_lt((size_t)(sp - nm), sizeof(family));
                memcpy(family, nm, (size_t)(sp - nm));
                family[sp - nm] = '\0';
                nhelp++;
                prev_help = true;
                p = nl + 1;
                continue;
            }
            if (starts_with(p, n, "# TYPE ")) {
                ck_assert_msg(prev_help, "TYPE must follow the family's HELP");
                size_t fl = strlen(family);
                ck_assert_msg(n > 7 + fl + 1 && memcmp(p + 7, family, fl) == 0 && p[7 + fl] == ' ',
                              "TYPE names another family than HELP: %.*s", (int)n, p);
                size_t tl = n - 8 - fl;
                ck_assert_uint_lt(tl, sizeof(type));
                memcpy(type, p + 8 + fl, tl);
                type[tl] = '\0';
                ck_assert_msg(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0 ||
                                  strcmp(type, "histogram") == 0 || strcmp(type, "summary") == 0,
                              "bad type %s", type);
                /* 0.0.4 names a counter family by its sample (x_total);
                 * OpenMetrics by the name without _total. */
                if (strcmp(type, "counter") == 0) {
                    bool total = fl > 6 && strcmp(family + fl - 6, "_total") == 0;
                    ck_assert_msg(om ? !total : total, "counter family name %s", family);
                }
                ntype++;
                prev_help = false;
                last_le = -INFINITY;
                last_bucket = 0;
                p = nl + 1;
                continue;
            }
            ck_assert_msg(om && n == 5 && memcmp(p, "# EOF", 5) == 0, "stray comment: %.*s",
                          (int)n, p);
            neof++;
            p = nl + 1;
            continue;
        }
        prev_help = false;
        /* A sample of the current family. */
        ck_assert_msg(family[0] != '\0', "sample before any TYPE");
        size_t fl = strlen(family);
        ck_assert_msg(starts_with(p, n, family), "sample outside its family: %.*s", (int)n, p);
        const char *sfx = p + fl;
        size_t sl = strcspn(sfx, "{ ");
        double v = sample_value(p, n);
        if (om && sl == 8 && memcmp(sfx, "_created", 8) == 0 && strcmp(type, "gauge") != 0) {
            /* OpenMetrics: a unix time, after the series' other samples */
            ck_assert_msg(v > 1.5e9 && v < 1e11, "_created not a unix time: %.*s", (int)n, p);
            ck_assert_msg(isnan(inf_bucket), "_created before _count: %.*s", (int)n, p);
            p = nl + 1;
            continue;
        }
        if (strcmp(type, "counter") == 0) {
            ck_assert_msg(om ? (sl == 6 && memcmp(sfx, "_total", 6) == 0) : sl == 0,
                          "counter sample name: %.*s", (int)n, p);
            ck_assert_msg(v >= 0, "negative counter");
        } else if (strcmp(type, "gauge") == 0) {
            ck_assert_msg(sl == 0, "gauge sample name: %.*s", (int)n, p);
        } else if (strcmp(type, "histogram") == 0) {
            if (sl == 7 && memcmp(sfx, "_bucket", 7) == 0) {
                const char *le = strstr(p, "le=\"");
                ck_assert_msg(le && le < nl, "bucket without le: %.*s", (int)n, p);
                double b = strcmp(le + 4, "+Inf\"") == 0 || strncmp(le + 4, "+Inf\"", 5) == 0
                               ? INFINITY
                               : strtod(le + 4, NULL);
                ck_assert_msg(b > last_le, "le not ascending: %.*s", (int)n, p);
                ck_assert_msg(v >= last_bucket, "buckets not cumulative: %.*s", (int)n, p);
                if (om)
                    ck_assert_msg(v == floor(v), "OpenMetrics bucket not integral: %.*s", (int)n,
                                  p);
                last_le = isinf(b) ? -INFINITY : b;
                last_bucket = isinf(b) ? 0 : v;
                if (isinf(b))
                    inf_bucket = v;
            } else if (sl == 4 && memcmp(sfx, "_sum", 4) == 0) {
                ck_assert_msg(!isnan(inf_bucket), "_sum before the +Inf bucket");
            } else if (sl == 6 && memcmp(sfx, "_count", 6) == 0) {
                ck_assert_msg(v == inf_bucket, "_count %.17g != +Inf bucket %.17g", v, inf_bucket);
                if (om)
                    ck_assert_msg(v == floor(v), "OpenMetrics count not integral");
                inf_bucket = NAN;
            } else {
                ck_abort_msg("histogram sample name: %.*s", (int)n, p);
            }
        } else { /* summary without quantiles */
            bool sum = sl == 4 && memcmp(sfx, "_sum", 4) == 0;
            bool count = sl == 6 && memcmp(sfx, "_count", 6) == 0;
            ck_assert_msg(sum || count, "summary sample name: %.*s", (int)n, p);
            if (count && om)
                ck_assert_msg(v == floor(v), "OpenMetrics count not integral");
        }
        p = nl + 1;
    }
    ck_assert_uint_eq(nhelp, nfamilies);
    ck_assert_uint_eq(ntype, nfamilies);
    ck_assert_uint_eq(neof, om ? 1 : 0);
    if (om)
        ck_assert(len >= 6 && memcmp(text + len - 6, "# EOF\n", 6) == 0);
}

/* ---- external validators ---- */

static const char py_text[] =
    "import sys\n"
    "from prometheus_client.parser import text_string_to_metric_families as p\n"
    "fams = list(p(open(sys.argv[1], encoding='utf-8').read()))\n"
    "print(len(fams), sum(len(f.samples) for f in fams))\n";

static const char py_om[] =
    "import sys\n"
    "from prometheus_client.openmetrics.parser import text_string_to_metric_families as p\n"
    "fams = list(p(open(sys.argv[1], encoding='utf-8').read()))\n"
    "print(len(fams), sum(len(f.samples) for f in fams))\n";

static bool have_python_client(void)
{
    static int have = -1;
    if (have < 0) {
        have = access(PYTHON, X_OK) == 0 &&
               system(PYTHON " -c 'import prometheus_client.openmetrics.parser' 2>/dev/null") == 0;
        if (!have)
            printf("note: %s with prometheus_client not found; parser checks skipped\n", PYTHON);
    }
    return have;
}

static const char *promtool_path(void)
{
    static const char *path;
    static bool looked;
    if (!looked) {
        looked = true;
        if (access("/usr/bin/promtool", X_OK) == 0)
            path = "/usr/bin/promtool";
        else if (system("command -v promtool >/dev/null 2>&1") == 0)
            path = "promtool";
        else
            printf("note: promtool not found; promtool checks skipped\n");
    }
    return path;
}

static void temp_file(const char *data, size_t len, char *path, size_t cap)
{
    snprintf(path, cap, "/tmp/am-expose-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    ck_assert_int_eq(close(fd), 0);
}

/* The last non-empty line of a tool's output (a Python traceback ends with
 * the error). Edits out in place. */
static const char *last_line(char *out)
{
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    char *nl = strrchr(out, '\n');
    return nl ? nl + 1 : out;
}

/* Runs cmd, returns its exit status and its output in out. */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *f = popen(cmd, "r");
    ck_assert_ptr_nonnull(f);
    out[0] = '\0';
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static size_t count_samples(const char *text, size_t len)
{
    size_t n = 0;
    for (const char *p = text; p < text + len;) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl)
            break;
        if (p[0] != '#')
            n++;
        p = nl + 1;
    }
    return n;
}

/* The text parses with prometheus_client (into nfamilies families and all
 * its samples) and, for 0.0.4, passes `promtool check metrics`. */
static void validate_external(const char *text, size_t len, am_format_t fmt, size_t nfamilies)
{
    char path[64], cmd[2048], out[4096];
    temp_file(text, len, path, sizeof(path));
    if (have_python_client()) {
        /* the script goes through a file to avoid shell quoting */
        char script[64];
        const char *src = fmt == AM_FORMAT_OPENMETRICS ? py_om : py_text;
        temp_file(src, strlen(src), script, sizeof(script));
        snprintf(cmd, sizeof(cmd), PYTHON " %s %s 2>&1", script, path);
        int rc = run(cmd, out, sizeof(out));
        unlink(script);
        ck_assert_msg(rc == 0, "prometheus_client %s parser rejects the output: %s",
                      fmt == AM_FORMAT_OPENMETRICS ? "OpenMetrics" : "text", last_line(out));
        unsigned long nf = 0, ns = 0;
        ck_assert_int_eq(sscanf(out, "%lu %lu", &nf, &ns), 2);
        ck_assert_uint_eq(nf, nfamilies);
        ck_assert_uint_eq(ns, count_samples(text, len));
    }
    const char *promtool = promtool_path();
    if (promtool && fmt == AM_FORMAT_TEXT) {
        snprintf(cmd, sizeof(cmd), "%s check metrics < %s 2>&1", promtool, path);
        int rc = run(cmd, out, sizeof(out));
        ck_assert_msg(rc == 0, "promtool check metrics: exit %d: %s", rc, out);
    }
    unlink(path);
}

/* Python OM parser only; returns its exit status, message in out. */
static int om_parser_status(const char *text, size_t len, char *out, size_t cap)
{
    char path[64], script[64], cmd[256];
    temp_file(text, len, path, sizeof(path));
    temp_file(py_om, strlen(py_om), script, sizeof(script));
    snprintf(cmd, sizeof(cmd), PYTHON " %s %s 2>&1", script, path);
    int rc = run(cmd, out, cap);
    unlink(path);
    unlink(script);
    return rc;
}

/* ---- golden cases ---- */

static const struct {
    const char *name;
    bool catalog;
} golden_cases[] = {
    {"catalog-empty", true}, /* HELP/TYPE for every built-in, no samples */
    {"guide", true},         /* the guide's families with samples */
    {"auto", false},         /* auto-created families of every type, rates */
    {"escaping", false},     /* HELP and label value escaping, UTF-8, empty values */
    {"numbers", false},      /* number and le rendering across magnitudes */
};

/* The value of every _created sample (the wall clock at the series' first
 * line) replaced in place by "T", so that the golden files are fixed;
 * check_structure checks the values themselves. Returns the new length. */
static size_t mask_created(char *text, size_t len)
{
    char *o = text;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl + 1 - p) : (size_t)(end - p);
        const char *sp = memrchr(p, ' ', n);
        const char *brace = memchr(p, '{', n);
        const char *name_end = brace && brace < sp ? brace : sp;
        if (p[0] != '#' && sp && name_end - p > 8 && memcmp(name_end - 8, "_created", 8) == 0) {
            size_t keep = (size_t)(sp + 1 - p);
            memmove(o, p, keep);
            o += keep;
            *o++ = 'T';
            *o++ = '\n';
        } else {
            memmove(o, p, n);
            o += n;
        }
        p += n;
    }
    *o = '\0';
    return (size_t)(o - text);
}

START_TEST(test_golden)
{
    const char *name = golden_cases[_i].name;
    am_registry_t *r = build_case(name, golden_cases[_i].catalog);
    size_t len;
    char *text = render(r, AM_FORMAT_TEXT, &len);
    compare_golden(name, "expected.txt", text, len);
    free(text);
    text = render(r, AM_FORMAT_OPENMETRICS, &len);
    len = mask_created(text, len);
    compare_golden(name, "expected.om.txt", text, len);
    free(text);
    am_registry_free(r);
}
END_TEST

START_TEST(test_golden_structure)
{
    am_registry_t *r = build_case(golden_cases[_i].name, golden_cases[_i].catalog);
    size_t nf = am_registry_family_count(r);
    for (int f = 0; f < 2; f++) {
        am_format_t fmt = f ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT;
        size_t len;
        char *text = render(r, fmt, &len);
        check_structure(text, len, fmt, nf);
        free(text);
    }
    am_registry_free(r);
}
END_TEST

START_TEST(test_golden_parsers)
{
    am_registry_t *r = build_case(golden_cases[_i].name, golden_cases[_i].catalog);
    size_t nf = am_registry_family_count(r);
    for (int f = 0; f < 2; f++) {
        am_format_t fmt = f ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT;
        size_t len;
        char *text = render(r, fmt, &len);
        validate_external(text, len, fmt, nf);
        free(text);
    }
    am_registry_free(r);
}
END_TEST

/* ---- primitives ---- */

static const struct {
    const char *name;
    am_family_type_t type;
    const char *text, *om;
} header_cases[] = {
    {"x_total", AM_FAMILY_COUNTER, "# HELP x_total H\n# TYPE x_total counter\n",
     "# HELP x H\n# TYPE x counter\n"},
    /* only a counter loses _total, and only a real suffix */
    {"g_total", AM_FAMILY_GAUGE, "# HELP g_total H\n# TYPE g_total gauge\n",
     "# HELP g_total H\n# TYPE g_total gauge\n"},
    {"_total", AM_FAMILY_COUNTER, "# HELP _total H\n# TYPE _total counter\n",
     "# HELP _total H\n# TYPE _total counter\n"},
    {"h_seconds", AM_FAMILY_HISTOGRAM, "# HELP h_seconds H\n# TYPE h_seconds histogram\n",
     "# HELP h_seconds H\n# TYPE h_seconds histogram\n"},
    {"s_dollars", AM_FAMILY_SUMMARY, "# HELP s_dollars H\n# TYPE s_dollars summary\n",
     "# HELP s_dollars H\n# TYPE s_dollars summary\n"},
};

START_TEST(test_family_header)
{
    for (int f = 0; f < 2; f++) {
        am_format_t fmt = f ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT;
        am_buf_t b;
        am_buf_init(&b, 0);
        am_expose_family_header(&b, header_cases[_i].name, "H", header_cases[_i].type, fmt);
        ck_assert_str_eq(b.data, f ? header_cases[_i].om : header_cases[_i].text);
        am_buf_free(&b);
    }
}
END_TEST

/* HELP: 0.0.4 escapes backslash and newline only; OpenMetrics also `"`. */
static const struct {
    const char *help, *text, *om;
} help_cases[] = {
    {"plain text", "plain text", "plain text"},
    {"say \"hi\"", "say \"hi\"", "say \\\"hi\\\""},
    {"back\\slash", "back\\\\slash", "back\\\\slash"},
    {"two\nlines", "two\\nlines", "two\\nlines"},
    {"\\n is not a newline", "\\\\n is not a newline", "\\\\n is not a newline"},
    {"ünïcödé ✓", "ünïcödé ✓", "ünïcödé ✓"},
    {"", "", ""},
    {"\"\\\n\"", "\"\\\\\\n\"", "\\\"\\\\\\n\\\""},
};

START_TEST(test_help_escaping)
{
    for (int f = 0; f < 2; f++) {
        am_format_t fmt = f ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT;
        am_buf_t b, want;
        am_buf_init(&b, 0);
        am_buf_init(&want, 0);
        am_expose_family_header(&b, "m", help_cases[_i].help, AM_FAMILY_GAUGE, fmt);
        am_buf_printf(&want, "# HELP m %s\n# TYPE m gauge\n",
                      f ? help_cases[_i].om : help_cases[_i].text);
        ck_assert_str_eq(b.data, want.data);
        am_buf_free(&b);
        am_buf_free(&want);
    }
}
END_TEST

/* Label values: exactly \ " and LF escaped, everything else raw. */
static const struct {
    const char *value, *want;
} label_cases[] = {
    {"plain", "plain"},
    {"", ""},
    {"a\\b", "a\\\\b"},
    {"a\"b", "a\\\"b"},
    {"a\nb", "a\\nb"},
    {"\\\"\n", "\\\\\\\"\\n"},
    {"tab\there", "tab\there"},
    {"ünïcödé ✓ 日本", "ünïcödé ✓ 日本"},
    {"{x=\"1\"},", "{x=\\\"1\\\"},"},
};

START_TEST(test_sample_label_escaping)
{
    const char *labels[] = {"k", label_cases[_i].value, "z", ""};
    am_buf_t b, want;
    am_buf_init(&b, 0);
    am_buf_init(&want, 0);
    am_expose_sample(&b, "m_total", labels, 2, 3);
    am_buf_printf(&want, "m_total{k=\"%s\",z=\"\"} 3.0\n", label_cases[_i].want);
    ck_assert_str_eq(b.data, want.data);
    am_buf_free(&b);
    am_buf_free(&want);
}
END_TEST

/* The same escapes on the scrape path (am_expose_registry renders a
 * series' labels into its own buffer), for the values a tag can carry: two
 * label values per series, so a value's escapes cannot spill into the
 * next. */
START_TEST(test_registry_label_escaping)
{
    const char *v = label_cases[_i].value, *want = label_cases[_i].want;
    if (!*v || strpbrk(v, "\n,|#"))
        return; /* not a tag value: the line split or the tag list would cut it */
    am_registry_t *r = am_registry_new(NULL);
    ck_assert_ptr_nonnull(r);
    char line[256], sample[256];
    snprintf(line, sizeof(line), "esc.m:2|c|#k:%s,z:%s", v, v);
    apply_ok(r, line);
    size_t len;
    char *text = render(r, AM_FORMAT_TEXT, &len);
    snprintf(sample, sizeof(sample), "esc_m_total{k=\"%s\",z=\"%s\"} 2.0\n", want, want);
    ck_assert_msg(strstr(text, sample), "want %s in:\n%s", sample, text);
    free(text);
    am_registry_free(r);
}
END_TEST

START_TEST(test_sample_values)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {0, "m 0.0\n"},           {1, "m 1.0\n"},        {-2.5, "m -2.5\n"},
        {0.1, "m 0.1\n"},         {1e6, "m 1e+06\n"},    {INFINITY, "m +Inf\n"},
        {-INFINITY, "m -Inf\n"},  {NAN, "m NaN\n"},      {1e-05, "m 1e-05\n"},
        {123456.0, "m 123456.0\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        am_buf_t b;
        am_buf_init(&b, 0);
        am_expose_sample(&b, "m", NULL, 0, cases[i].v);
        ck_assert_str_eq(b.data, cases[i].want);
        am_buf_free(&b);
    }
}
END_TEST

START_TEST(test_finish)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    am_expose_finish(&b, AM_FORMAT_TEXT);
    ck_assert_uint_eq(b.len, 0);
    am_expose_finish(&b, AM_FORMAT_OPENMETRICS);
    ck_assert_uint_eq(b.len, 6);
    ck_assert_str_eq(b.data, "# EOF\n");
    am_buf_free(&b);
}
END_TEST

START_TEST(test_content_types)
{
    ck_assert_str_eq(AM_CONTENT_TYPE_TEXT, "text/plain; version=0.0.4; charset=utf-8");
    ck_assert_str_eq(AM_CONTENT_TYPE_OPENMETRICS,
                     "application/openmetrics-text; version=1.0.0; charset=utf-8");
}
END_TEST

/* An empty registry: nothing in 0.0.4, only # EOF in OpenMetrics. */
START_TEST(test_empty_registry)
{
    am_registry_t *r = am_registry_new(NULL);
    size_t len;
    char *text = render(r, AM_FORMAT_TEXT, &len);
    ck_assert_uint_eq(len, 0);
    free(text);
    text = render(r, AM_FORMAT_OPENMETRICS, &len);
    ck_assert_str_eq(text, "# EOF\n");
    free(text);
    am_registry_free(r);
}
END_TEST

/* A buffer limit too small for the exposition fails the buffer rather than
 * sending a truncated scrape. */
START_TEST(test_render_limit_fails)
{
    am_registry_t *r = build_case("guide", true);
    am_buf_t b;
    am_buf_init(&b, 1000);
    am_expose_registry(&b, r, AM_FORMAT_TEXT);
    ck_assert(am_buf_failed(&b));
    ck_assert_uint_le(b.len, 1000);
    am_buf_free(&b);
    am_registry_free(r);
}
END_TEST

/* Series render in creation order, families too. */
START_TEST(test_render_order)
{
    am_registry_t *r = am_registry_new(NULL);
    apply_ok(r, "zeta:1|g|#k:z");
    apply_ok(r, "alpha:1|g|#k:b");
    apply_ok(r, "zeta:2|g|#k:a");
    apply_ok(r, "alpha:2|g|#k:a");
    size_t len;
    char *text = render(r, AM_FORMAT_TEXT, &len);
    const char *want = "# HELP zeta Created by alice-metrics from StatsD gauge (g) lines.\n"
                       "# TYPE zeta gauge\n"
                       "zeta{k=\"z\"} 1.0\n"
                       "zeta{k=\"a\"} 2.0\n"
                       "# HELP alpha Created by alice-metrics from StatsD gauge (g) lines.\n"
                       "# TYPE alpha gauge\n"
                       "alpha{k=\"b\"} 1.0\n"
                       "alpha{k=\"a\"} 2.0\n";
    ck_assert_str_eq(text, want);
    free(text);
    am_registry_free(r);
}
END_TEST

/* OpenMetrics counts are integral even with 1/rate weights, and the +Inf
 * bucket equals _count in both formats. */
START_TEST(test_om_weighted_counts)
{
    am_registry_t *r = am_registry_new(NULL);
    apply_ok(r, "w:0.2|h|@0.3");
    apply_ok(r, "w:0.2|h|@0.3");
    apply_ok(r, "w:3|h|@0.7");
    apply_ok(r, "ws:1|c|@0.3");
    for (int f = 0; f < 2; f++) {
        am_format_t fmt = f ? AM_FORMAT_OPENMETRICS : AM_FORMAT_TEXT;
        size_t len;
        char *text = render(r, fmt, &len);
        check_structure(text, len, fmt, 2);
        if (f) {
            /* 2/0.3 + 1/0.7 = 8.095...: rounds to 8 */
            ck_assert_ptr_nonnull(strstr(text, "w_bucket{le=\"+Inf\"} 8.0\n"));
            ck_assert_ptr_nonnull(strstr(text, "w_count 8.0\n"));
            ck_assert_ptr_nonnull(strstr(text, "w_bucket{le=\"0.25\"} 7.0\n"));
            ck_assert_ptr_nonnull(strstr(text, "ws_total 3.3333333333333335\n"));
        } else {
            ck_assert_ptr_nonnull(strstr(text, "w_bucket{le=\"0.25\"} 6.666666666666667\n"));
            ck_assert_ptr_nonnull(strstr(text, "w_bucket{le=\"+Inf\"} 8.095238095238095\n"));
            ck_assert_ptr_nonnull(strstr(text, "w_count 8.095238095238095\n"));
        }
        if (have_python_client())
            validate_external(text, len, fmt, 2);
        free(text);
    }
    am_registry_free(r);
}
END_TEST

/* Regression (fixed): OpenMetrics forbids negative histogram/summary sums ("Sum and
 * buckets values are counters so MUST NOT be NaN or negative"), and
 * prometheus_client's OM parser rejects the whole scrape ("Counter-like
 * samples cannot be negative: x_sum -5.0"). Any sender can trigger it with
 * `x:-5|h`. Suggested fix: in OpenMetrics, leave out `_sum` of a series
 * whose sum is negative (or of every series of a family with a negative
 * bucket bound, see below); 0.0.4 keeps it. */
static const char *const negative_sum_lines[] = {
    "x:-5|h",
    "alice_api_request_cost_dollars:-1|d",
};

START_TEST(test_om_negative_sum)
{
    if (!have_python_client())
        return;
    am_registry_t *r = am_registry_new(NULL);
    ck_assert_int_eq(am_catalog_install(r), 0);
    apply_ok(r, negative_sum_lines[_i]);
    size_t len;
    char *text = render(r, AM_FORMAT_OPENMETRICS, &len);
    char out[4096];
    int rc = om_parser_status(text, len, out, sizeof(out));
    ck_assert_msg(rc == 0, "after \"%s\": OM parser: %s", negative_sum_lines[_i], last_line(out));
    free(text);
    am_registry_free(r);
}
END_TEST

/* A histogram with a negative bucket bound (config.c accepts them) has no
 * `_sum` (nor `_count`) in OpenMetrics, which the spec forbids ("Negative
 * threshold buckets MAY be used, but then the Histogram MetricPoint MUST
 * NOT contain a sum value"). */
START_TEST(test_om_negative_bucket_bound)
{
    if (!have_python_client())
        return;
    am_registry_t *r = am_registry_new(NULL);
    am_family_def_t def = {.name = S("temp_delta_celsius"), .help = S("Temperature change."),
                           .type = AM_FAMILY_HISTOGRAM, .nbuckets = 3, .buckets = {-1, 0, 1}};
    ck_assert_int_eq(am_registry_define(r, &def), 0);
    apply_ok(r, "temp.delta.celsius:0.5|h");
    size_t len;
    char *text = render(r, AM_FORMAT_OPENMETRICS, &len);
    char out[4096];
    int rc = om_parser_status(text, len, out, sizeof(out));
    ck_assert_msg(rc == 0, "OM parser: %s", last_line(out));
    free(text);
    am_registry_free(r);
}
END_TEST

static Suite *expose_suite(void)
{
    Suite *s = suite_create("Expose");

    TCase *tc = tcase_create("golden");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_golden, 0, NELEMS(golden_cases));
    tcase_add_loop_test(tc, test_golden_structure, 0, NELEMS(golden_cases));
    tcase_add_loop_test(tc, test_golden_parsers, 0, NELEMS(golden_cases));
    suite_add_tcase(s, tc);

    tc = tcase_create("primitives");
    tcase_add_loop_test(tc, test_family_header, 0, NELEMS(header_cases));
    tcase_add_loop_test(tc, test_help_escaping, 0, NELEMS(help_cases));
    tcase_add_loop_test(tc, test_sample_label_escaping, 0, NELEMS(label_cases));
    tcase_add_loop_test(tc, test_registry_label_escaping, 0, NELEMS(label_cases));
    tcase_add_test(tc, test_sample_values);
    tcase_add_test(tc, test_finish);
    tcase_add_test(tc, test_content_types);
    suite_add_tcase(s, tc);

    tc = tcase_create("registry");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_empty_registry);
    tcase_add_test(tc, test_render_limit_fails);
    tcase_add_test(tc, test_render_order);
    tcase_add_test(tc, test_om_weighted_counts);
    tcase_add_loop_test(tc, test_om_negative_sum, 0, NELEMS(negative_sum_lines));
    tcase_add_test(tc, test_om_negative_bucket_bound);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(expose_suite)
