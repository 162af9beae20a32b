/* Unit tests for src/wire/parse.c: tables for the helpers (numbers, names,
 * UTF-8, datagram splitting), then the machine-readable vectors of
 * proto/vectors.json (parser) and proto/registry_vectors.json (parser +
 * registry + catalog). The vector file format, including the `repeat` and
 * `encoding` helpers, is documented in proto/README.md.
 *
 * Over-reads: every vector line is also parsed from a buffer of exactly its
 * length that ends at a PROT_NONE guard page, so a read past n faults even
 * without ASan (and ASan's exact-size malloc check runs too). */
#include "parse.h"

#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "buf.h"
#include "catalog.h"
#include "expose.h"
#include "hash.h"
#include "guarded.h"
#include "reasons.h"
#include "registry.h"

#ifndef AM_SOURCE_ROOT
#error "AM_SOURCE_ROOT must name the source tree (tests/unit/meson.build defines it)"
#endif

#define VECTORS_PATH          AM_SOURCE_ROOT "/proto/vectors.json"
#define REGISTRY_VECTORS_PATH AM_SOURCE_ROOT "/proto/registry_vectors.json"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */

typedef struct bytes {
    char *p; /* owned, NUL-terminated for printing (n excludes it) */
    size_t n;
} bytes_t;

static void bytes_free(bytes_t *b)
{
    free(b->p);
    b->p = NULL;
    b->n = 0;
}

static void bytes_append(bytes_t *b, const char *p, size_t n)
{
    char *np = realloc(b->p, b->n + n + 1);
    ck_assert_ptr_nonnull(np);
    if (n)
        memcpy(np + b->n, p, n);
    b->p = np;
    b->n += n;
    b->p[b->n] = '\0';
}

/* Expands every ${KEY} of s whose KEY is in `repeat` ({"KEY": [text, count]})
 * and then applies the vector's encoding: "utf8" (default: the string's UTF-8
 * bytes) or "latin1" (every code point U+0000..U+00FF is one byte). */
static bytes_t vec_string(const json_t *vec, const char *s, size_t n)
{
    const json_t *repeat = json_object_get(vec, "repeat");
    bytes_t ex = {NULL, 0};
    bytes_append(&ex, "", 0);
    size_t i = 0;
    while (i < n) {
        if (repeat && s[i] == '$' && i + 1 < n && s[i + 1] == '{') {
            const char *close = memchr(s + i + 2, '}', n - i - 2);
            if (close) {
                char key[64];
                size_t kn = (size_t)(close - (s + i + 2));
                ck_assert_uint_lt(kn, sizeof(key));
                memcpy(key, s + i + 2, kn);
                key[kn] = '\0';
                const json_t *spec = json_object_get(repeat, key);
                ck_assert_msg(json_is_array(spec) && json_array_size(spec) == 2,
                              "repeat key %s must be [text, count]", key);
                const json_t *text = json_array_get(spec, 0);
                json_int_t count = json_integer_value(json_array_get(spec, 1));
                ck_assert(json_is_string(text) && count >= 0);
                for (json_int_t k = 0; k < count; k++)
                    bytes_append(&ex, json_string_value(text), json_string_length(text));
                i = (size_t)(close - s) + 1;
                continue;
            }
        }
        bytes_append(&ex, s + i, 1);
        i++;
    }
    const char *enc = json_string_value(json_object_get(vec, "encoding"));
    if (!enc || strcmp(enc, "utf8") == 0)
        return ex;
    ck_assert_str_eq(enc, "latin1");
    bytes_t out = {NULL, 0};
    bytes_append(&out, "", 0);
    const unsigned char *u = (const unsigned char *)ex.p;
    for (size_t k = 0; k < ex.n;) {
        unsigned cp;
        if (u[k] < 0x80) {
            cp = u[k++];
        } else {
            /* jansson only hands out valid UTF-8; latin1 needs <= U+00FF. */
            ck_assert_msg(u[k] == 0xc2 || u[k] == 0xc3, "latin1 string has a code point > U+00FF");
            cp = ((u[k] & 0x1fu) << 6) | (u[k + 1] & 0x3fu);
            k += 2;
        }
        char c = (char)(unsigned char)cp;
        bytes_append(&out, &c, 1);
    }
    bytes_free(&ex);
    return out;
}

static bytes_t vec_json_string(const json_t *vec, const json_t *str)
{
    ck_assert(json_is_string(str));
    return vec_string(vec, json_string_value(str), json_string_length(str));
}

static json_t *load_vectors(const char *path)
{
    json_error_t err;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &err);
    ck_assert_msg(root != NULL, "%s:%d: %s", path, err.line, err.text);
    json_t *vectors = json_object_get(root, "vectors");
    ck_assert(json_is_array(vectors));
    json_incref(vectors);
    json_decref(root);
    return vectors;
}

static am_reason_t reason_by_label(const char *label)
{
    for (int r = 0; r < AM_REASON_COUNT; r++)
        if (strcmp(am_reason_label((am_reason_t)r), label) == 0)
            return (am_reason_t)r;
    ck_abort_msg("unknown reason label '%s'", label);
    return AM_OK;
}

/* Lines of a datagram, as am_parse_datagram hands them out. */
#define MAX_LINES 64
typedef struct lines {
    size_t n;
    const char *p[MAX_LINES];
    size_t len[MAX_LINES];
} lines_t;

static void collect_line(void *ctx, const char *line, size_t len)
{
    lines_t *l = ctx;
    ck_assert_uint_lt(l->n, MAX_LINES);
    l->p[l->n] = line;
    l->len[l->n] = len;
    l->n++;
}

static bool same_double(double a, double b)
{
    return a == b && signbit(a) == signbit(b);
}

/* The family name a line feeds: mapped, counters with _total appended. */
static size_t family_name(const am_sample_t *s, char *out, size_t cap)
{
    size_t n = am_map_name(s->name.p, s->name.n, out, cap - 7);
    ck_assert_uint_gt(n, 0);
    if (s->type == AM_TYPE_COUNTER && !(n >= 6 && memcmp(out + n - 6, "_total", 6) == 0)) {
        memcpy(out + n, "_total", 6);
        n += 6;
    }
    out[n] = '\0';
    return n;
}

static bool slice_eq(am_slice_t s, const bytes_t *b)
{
    return s.n == b->n && (s.n == 0 || memcmp(s.p, b->p, s.n) == 0);
}

/* Checks one accepted sample against {"accept": {...}}. */
static void check_accept(const json_t *vec, const char *vname, size_t line, const am_sample_t *s,
                         const json_t *acc)
{
    char name[AM_MAX_NAME_LEN + 16];
    size_t nn = family_name(s, name, sizeof(name));
    bytes_t want = vec_json_string(vec, json_object_get(acc, "name"));
    ck_assert_msg(nn == want.n && memcmp(name, want.p, nn) == 0,
                  "%s line %zu: name '%s', want '%s'", vname, line, name, want.p);
    bytes_free(&want);

    const char *want_type = json_string_value(json_object_get(acc, "type"));
    ck_assert_msg(want_type && strcmp(am_type_code(s->type), want_type) == 0,
                  "%s line %zu: type %s", vname, line, am_type_code(s->type));

    const json_t *values = json_object_get(acc, "values");
    ck_assert(json_is_array(values));
    ck_assert_msg(s->nvalues == json_array_size(values), "%s line %zu: %zu values, want %zu", vname,
                  line, s->nvalues, json_array_size(values));
    for (size_t i = 0; i < s->nvalues; i++) {
        double w = json_number_value(json_array_get(values, i));
        ck_assert_msg(same_double(s->values[i], w), "%s line %zu: value %zu is %.17g, want %.17g",
                      vname, line, i, s->values[i], w);
    }
    const json_t *delta = json_object_get(acc, "delta");
    if (delta) {
        ck_assert_uint_eq(json_array_size(delta), s->nvalues);
        for (size_t i = 0; i < s->nvalues; i++)
            ck_assert_msg(s->delta[i] == json_is_true(json_array_get(delta, i)),
                          "%s line %zu: delta %zu", vname, line, i);
    }
    const json_t *rate = json_object_get(acc, "rate");
    if (rate)
        ck_assert_msg(s->rate == json_number_value(rate), "%s line %zu: rate %.17g", vname, line,
                      s->rate);

    const json_t *tags = json_object_get(acc, "tags");
    size_t want_tags = tags ? json_object_size(tags) : 0;
    ck_assert_msg(s->ntags == want_tags, "%s line %zu: %zu tags, want %zu", vname, line, s->ntags,
                  want_tags);
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)tags, key, val)
    {
        bytes_t k = vec_string(vec, key, strlen(key));
        bytes_t v = vec_json_string(vec, val);
        size_t i = 0;
        while (i < s->ntags && !slice_eq(s->tag_key[i], &k))
            i++;
        ck_assert_msg(i < s->ntags, "%s line %zu: tag '%s' missing", vname, line, k.p);
        ck_assert_msg(slice_eq(s->tag_value[i], &v), "%s line %zu: tag '%s' value '%.*s'", vname,
                      line, k.p, (int)s->tag_value[i].n, s->tag_value[i].p);
        bytes_free(&k);
        bytes_free(&v);
    }

    const json_t *set = json_object_get(acc, "set_value");
    if (s->type == AM_TYPE_SET) {
        ck_assert_msg(set != NULL, "%s line %zu: set vector without set_value", vname, line);
        bytes_t v = vec_json_string(vec, set);
        ck_assert_msg(slice_eq(s->set_value, &v), "%s line %zu: set_value '%.*s'", vname, line,
                      (int)s->set_value.n, s->set_value.p);
        bytes_free(&v);
    } else {
        ck_assert_msg(set == NULL, "%s line %zu: set_value on a non-set line", vname, line);
    }
}

/* ------------------------------------------------------------------------ */
/* am_parse_number                                                           */

static const struct {
    const char *in;
    bool ok;
    double v;
} numbers[] = {
    {"0", true, 0},
    {"1", true, 1},
    {"-1", true, -1},
    {"+1", true, 1},
    {"-0", true, -0.0},
    {"+0", true, 0},
    {"1e3", true, 1000},
    {"1E3", true, 1000},
    {"1e+3", true, 1000},
    {"1e-3", true, 0.001},
    {".5", true, 0.5},
    {"5.", true, 5},
    {"-.5", true, -0.5},
    {"+.5e1", true, 5},
    {"0.1", true, 0.1},
    {"00012", true, 12},
    {"123456789012345", true, 123456789012345.0},           /* 15 digits: fast path */
    {"1234567890123456", true, 1234567890123456.0},         /* 16 digits: strtod */
    {"9007199254740993", true, 9007199254740992.0},         /* 2^53 + 1 rounds */
    {"18446744073709551616", true, 18446744073709551616.0}, /* past uint64 */
    {"1.7976931348623157e308", true, 1.7976931348623157e308},
    {"4.9e-324", true, 4.9e-324},
    {"1e-400", true, 0},
    {"000000000000000000000000000000000000000000000000000000000000001", true, 1}, /* 63 */
    {"", false, 0},
    {"+", false, 0},
    {"-", false, 0},
    {".", false, 0},
    {"-.", false, 0},
    {"e3", false, 0},
    {".e3", false, 0},
    {"1e", false, 0},
    {"1e+", false, 0},
    {"1e-", false, 0},
    {"1e3.5", false, 0},
    {"1.2.3", false, 0},
    {"0x10", false, 0},
    {"0X10", false, 0},
    {"0x1p3", false, 0},
    {"inf", false, 0},
    {"-inf", false, 0},
    {"Infinity", false, 0},
    {"nan", false, 0},
    {"NaN", false, 0},
    {"1e999", false, 0},
    {"-1e999", false, 0},
    {" 1", false, 0},
    {"1 ", false, 0},
    {"1,5", false, 0},
    {"1_000", false, 0},
    {"--1", false, 0},
    {"+-1", false, 0},
    {"1d", false, 0},
    {"1f", false, 0},
    {"0000000000000000000000000000000000000000000000000000000000000001", false, 0}, /* 64 */
};

START_TEST(test_parse_number)
{
    for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
        double v = 12345;
        size_t n = strlen(numbers[i].in);
        guarded_t g = guarded_copy(numbers[i].in, n);
        bool ok = am_parse_number(g.p, n, &v);
        guarded_free(&g);
        ck_assert_msg(ok == numbers[i].ok, "'%s': ok=%d", numbers[i].in, ok);
        if (ok)
            ck_assert_msg(same_double(v, numbers[i].v), "'%s': %.17g, want %.17g", numbers[i].in, v,
                          numbers[i].v);
    }
}
END_TEST

/* The length is honoured: a valid prefix of a longer buffer parses alone. */
START_TEST(test_parse_number_uses_n)
{
    double v;
    ck_assert(am_parse_number("12|c", 2, &v));
    ck_assert(v == 12);
    ck_assert(am_parse_number("1.5e3xyz", 5, &v));
    ck_assert(v == 1.5e3);
    ck_assert(!am_parse_number("1.5e3xyz", 4, &v)); /* "1.5e" */
    ck_assert(!am_parse_number("7", 0, &v));
}
END_TEST

/* ------------------------------------------------------------------------ */
/* am_map_name and the name validators                                       */

static const struct {
    const char *in;
    size_t cap;
    const char *out; /* NULL: does not fit (returns 0) */
} maps[] = {
    {"abc", 16, "abc"},
    {"a.b-c_d", 16, "a_b_c_d"},
    {"9lives", 16, "_9lives"},
    {"0", 16, "_0"},
    {".x", 16, "_x"},
    {"-", 16, "_"},
    {"_total", 16, "_total"},
    {"abc", 3, "abc"},
    {"abc", 2, NULL},
    {"9ab", 4, "_9ab"},
    {"9ab", 3, NULL},
    {"9", 1, NULL},
    {"a", 0, NULL},
    {"", 16, NULL},
};

START_TEST(test_map_name)
{
    for (size_t i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
        char out[32];
        memset(out, '#', sizeof(out));
        size_t n = am_map_name(maps[i].in, strlen(maps[i].in), out, maps[i].cap);
        if (!maps[i].out) {
            ck_assert_msg(n == 0, "'%s' cap %zu: %zu", maps[i].in, maps[i].cap, n);
            continue;
        }
        ck_assert_msg(n == strlen(maps[i].out) && memcmp(out, maps[i].out, n) == 0, "'%s': '%.*s'",
                      maps[i].in, (int)n, out);
        ck_assert_msg(n == sizeof(out) || out[n] == '#', "'%s': wrote past the result", maps[i].in);
    }
}
END_TEST

START_TEST(test_map_name_longest)
{
    /* 200 raw bytes with a leading digit map to 201: the registry's buffer. */
    char raw[AM_MAX_NAME_LEN];
    memset(raw, 'a', sizeof(raw));
    raw[0] = '7';
    char out[AM_MAX_NAME_LEN + 1];
    ck_assert_uint_eq(am_map_name(raw, sizeof(raw), out, sizeof(out)), AM_MAX_NAME_LEN + 1);
    ck_assert_uint_eq(am_map_name(raw, sizeof(raw), out, AM_MAX_NAME_LEN), 0);
    ck_assert(out[0] == '_' && out[1] == '7' && out[AM_MAX_NAME_LEN] == 'a');
}
END_TEST

static const struct {
    const char *in;
    bool metric;
    bool label;
} names[] = {
    {"a", true, true},     {"_", true, true},
    {"_a", true, true},    {"__a", true, false},
    {"__", true, false},   {"a__b", true, true},
    {"A9_z", true, true},  {"9a", false, false},
    {"", false, false},    {"a.b", false, false},
    {"a-b", false, false}, {"a:b", false, false}, /* recording-rule colons are not for senders */
    {"a b", false, false}, {"\xc3\xa9", false, false},
};

START_TEST(test_valid_names)
{
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t n = strlen(names[i].in);
        ck_assert_msg(am_valid_metric_name(names[i].in, n) == names[i].metric, "metric '%s'",
                      names[i].in);
        ck_assert_msg(am_valid_label_name(names[i].in, n) == names[i].label, "label '%s'",
                      names[i].in);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* am_valid_utf8                                                             */

#define U(s)                                                                                       \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
static const struct {
    struct {
        const char *p;
        size_t n;
    } in;
    bool ok;
} utf8[] = {
    {U(""), true},
    {U("plain ascii"), true},
    {U("\x7f"), true},
    {U("a\0b"), true},             /* NUL is valid UTF-8; the parser rejects it earlier */
    {U("\xc2\x80"), true},         /* U+0080 */
    {U("\xdf\xbf"), true},         /* U+07FF */
    {U("\xe0\xa0\x80"), true},     /* U+0800 */
    {U("\xed\x9f\xbf"), true},     /* U+D7FF */
    {U("\xee\x80\x80"), true},     /* U+E000 */
    {U("\xef\xbf\xbe"), true},     /* U+FFFE: noncharacter, still valid */
    {U("\xef\xbf\xbf"), true},     /* U+FFFF */
    {U("\xf0\x90\x80\x80"), true}, /* U+10000 */
    {U("\xf0\x9f\x98\x80"), true}, /* U+1F600 */
    {U("\xf4\x8f\xbf\xbf"), true}, /* U+10FFFF */
    {U("Z\xc3\xbcrich \xe6\x97\xa5\xe6\x9c\xac"), true},
    {U("\x80"), false}, /* lone continuation */
    {U("\xbf"), false},
    {U("\xc0\xaf"), false},                 /* overlong '/' */
    {U("\xc1\xbf"), false},                 /* overlong */
    {U("\xe0\x80\xaf"), false},             /* overlong 3-byte */
    {U("\xe0\x9f\xbf"), false},             /* overlong U+07FF */
    {U("\xf0\x8f\xbf\xbf"), false},         /* overlong U+FFFF */
    {U("\xed\xa0\x80"), false},             /* U+D800 */
    {U("\xed\xbf\xbf"), false},             /* U+DFFF */
    {U("\xed\xa0\x80\xed\xb0\x80"), false}, /* CESU-8 surrogate pair */
    {U("\xf4\x90\x80\x80"), false},         /* U+110000 */
    {U("\xf5\x80\x80\x80"), false},
    {U("\xf8\x88\x80\x80\x80"), false}, /* 5-byte form */
    {U("\xfc\x84\x80\x80\x80\x80"), false},
    {U("\xfe"), false},
    {U("\xff"), false},
    {U("\xc3"), false}, /* truncated at the end */
    {U("\xe6\x97"), false},
    {U("\xf0\x9f\x98"), false},
    {U("\xc3"
       "a"),
     false}, /* bad continuation */
    {U("\xe6\x97"
       "a"),
     false},
    {U("\xf0\x9f\x98"
       "a"),
     false},
};

START_TEST(test_valid_utf8)
{
    for (size_t i = 0; i < sizeof(utf8) / sizeof(utf8[0]); i++) {
        guarded_t g = guarded_copy(utf8[i].in.p, utf8[i].in.n);
        bool ok = am_valid_utf8(g.p, utf8[i].in.n);
        guarded_free(&g);
        ck_assert_msg(ok == utf8[i].ok, "case %zu: %d", i, ok);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* am_parse_line: a few direct cases (the vectors hold the rest)             */

static const struct {
    const char *line;
    am_reason_t rc;
    am_type_t type;
} lines[] = {
    {"a:1|c", AM_OK, AM_TYPE_COUNTER},
    {"a:1|g", AM_OK, AM_TYPE_GAUGE},
    {"a:1|ms", AM_OK, AM_TYPE_TIMER},
    {"a:1|h", AM_OK, AM_TYPE_HISTOGRAM},
    {"a:1|d", AM_OK, AM_TYPE_DISTRIBUTION},
    {"a:x|s", AM_OK, AM_TYPE_SET},
    {"a:1|c\r", AM_OK, AM_TYPE_COUNTER},
    {"", AM_REJECT_SYNTAX, 0},
    {"\r", AM_REJECT_SYNTAX, 0},
    {":", AM_REJECT_SYNTAX, 0},
    {"a:", AM_REJECT_SYNTAX, 0},
    {"a:|", AM_REJECT_BAD_VALUE, 0},
    {"a:1|", AM_REJECT_BAD_TYPE, 0},
    {"a:1|c|", AM_OK, AM_TYPE_COUNTER},
    {"a:1|c\n", AM_REJECT_BAD_TYPE, 0}, /* a line never holds '\n' */
    {"a:-1|c", AM_REJECT_NEGATIVE_COUNTER, 0},
    {"a:1|c|@2", AM_REJECT_BAD_SAMPLE_RATE, 0},
    {"a:1|c|#__k:v", AM_REJECT_BAD_LABEL, 0},
    {"a!:1|c", AM_REJECT_BAD_NAME, 0},
};

START_TEST(test_parse_line_table)
{
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        am_sample_t s;
        size_t n = strlen(lines[i].line);
        guarded_t g = guarded_copy(lines[i].line, n);
        am_reason_t rc = am_parse_line(g.p, n, &s);
        guarded_free(&g);
        ck_assert_msg(rc == lines[i].rc, "'%s': %s, want %s", lines[i].line, am_reason_label(rc),
                      am_reason_label(lines[i].rc));
        if (rc == AM_OK)
            ck_assert_int_eq(s.type, lines[i].type);
    }
}
END_TEST

/* Slices point into the caller's buffer; the rate defaults to 1. */
START_TEST(test_parse_line_slices)
{
    static const char line[] = "api.latency:12.5:7|ms|@0.5|#provider:openai,model:gpt-4|c:abc";
    am_sample_t s;
    ck_assert_int_eq(am_parse_line(line, sizeof(line) - 1, &s), AM_OK);
    ck_assert_ptr_eq(s.name.p, line);
    ck_assert_uint_eq(s.name.n, 11);
    ck_assert_int_eq(s.type, AM_TYPE_TIMER);
    ck_assert_uint_eq(s.nvalues, 2);
    ck_assert(s.values[0] == 12.5 && s.values[1] == 7);
    ck_assert(!s.delta[0] && !s.delta[1]);
    ck_assert(s.rate == 0.5);
    ck_assert_uint_eq(s.ntags, 2);
    ck_assert_ptr_eq(s.tag_key[0].p, strstr(line, "provider"));
    ck_assert_uint_eq(s.tag_key[0].n, 8);
    ck_assert_ptr_eq(s.tag_value[1].p, strstr(line, "gpt-4"));
    ck_assert_uint_eq(s.tag_value[1].n, 5);

    ck_assert_int_eq(am_parse_line("a:1|c", 5, &s), AM_OK);
    ck_assert(s.rate == 1.0);
    ck_assert_uint_eq(s.ntags, 0);
    ck_assert_ptr_null(s.set_value.p);
}
END_TEST

START_TEST(test_type_codes)
{
    static const char *const codes[] = {"c", "g", "ms", "h", "d", "s"};
    for (int t = AM_TYPE_COUNTER; t <= AM_TYPE_SET; t++)
        ck_assert_str_eq(am_type_code((am_type_t)t), codes[t]);
    ck_assert_str_eq(am_type_code((am_type_t)6), "?");
}
END_TEST

START_TEST(test_reason_labels)
{
    static const char *const want[] = {"ok",
                                       "syntax",
                                       "bad_name",
                                       "bad_value",
                                       "bad_type",
                                       "bad_sample_rate",
                                       "bad_label",
                                       "undeclared_label",
                                       "type_conflict",
                                       "negative_counter",
                                       "cardinality",
                                       "unknown_family"};
    ck_assert_int_eq(AM_REASON_COUNT, sizeof(want) / sizeof(want[0]));
    for (int r = 0; r < AM_REASON_COUNT; r++) {
        ck_assert_str_eq(am_reason_label((am_reason_t)r), want[r]);
        ck_assert(strlen(am_reason_message((am_reason_t)r)) > 0);
    }
    ck_assert_str_eq(am_reason_label(AM_REASON_COUNT), "unknown");
}
END_TEST

/* ------------------------------------------------------------------------ */
/* am_parse_datagram                                                         */

static const struct {
    const char *in;
    const char *want[6]; /* NULL-terminated */
} datagrams[] = {
    {"", {NULL}},
    {"\n", {NULL}},
    {"\r\n\n\r\n", {NULL}},
    {"a", {"a", NULL}},
    {"a\n", {"a", NULL}},
    {"a\nb", {"a", "b", NULL}},
    {"a\r\nb\r\n", {"a\r", "b\r", NULL}}, /* the '\r' goes to am_parse_line */
    {"\n\na\n\n\nb\n\n", {"a", "b", NULL}},
    {"a\r\r\n", {"a\r\r", NULL}},
    {"\r", {NULL}},
    {"\r\r", {"\r\r", NULL}},
    {" \n", {" ", NULL}},
};

START_TEST(test_parse_datagram)
{
    for (size_t i = 0; i < sizeof(datagrams) / sizeof(datagrams[0]); i++) {
        size_t n = strlen(datagrams[i].in);
        guarded_t g = guarded_copy(datagrams[i].in, n);
        lines_t l = {0};
        am_parse_datagram(g.p, n, collect_line, &l);
        size_t k = 0;
        for (; datagrams[i].want[k]; k++) {
            ck_assert_msg(k < l.n, "case %zu: only %zu lines", i, l.n);
            ck_assert_msg(l.len[k] == strlen(datagrams[i].want[k]) &&
                              memcmp(l.p[k], datagrams[i].want[k], l.len[k]) == 0,
                          "case %zu line %zu", i, k);
        }
        ck_assert_msg(l.n == k, "case %zu: %zu lines, want %zu", i, l.n, k);
        guarded_free(&g);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* am_scan_line: the datagram fast scan                                      */

static bool same_slice(am_slice_t a, am_slice_t b)
{
    return a.p == b.p && a.n == b.n;
}

/* Walks a datagram the way am_registry_ingest_datagram does. Every line end
 * must be memchr's; wherever the fast scan claims a line, it must agree with
 * am_parse_skeleton on every field. The SSE2 and AVX2 indexes must
 * equal the byte-wise one. Returns how many lines the fast scan claimed. */
static size_t check_scan(const char *dg, size_t n)
{
    static am_dgram_index_t ix, ref_ix;
    am_index_datagram_bytewise(&ref_ix, dg, n);
    size_t words = n / 64 + 1; /* with the sentinel's */
    /* SSE2, then AVX2 where the CPU has it (the daemon's default). */
    for (int avx2 = 0; avx2 < 2; avx2++) {
        if (am_index_use_avx2(avx2) != avx2)
            continue;
        memset(&ix, 0xa5, sizeof(ix));
        am_index_datagram(&ix, dg, n);
        ck_assert(memcmp(ix.nl, ref_ix.nl, words * 8) == 0);
        ck_assert(memcmp(ix.pipe, ref_ix.pipe, words * 8) == 0);
        ck_assert(memcmp(ix.colon, ref_ix.colon, words * 8) == 0);
    }
    size_t claimed = 0;
    for (size_t pos = 0; pos < n;) {
        const char *p = dg + pos;
        const char *nl = memchr(p, '\n', n - pos);
        size_t want_end = nl ? (size_t)(nl - dg) : n;
        am_skeleton_t fast, ref;
        size_t lend = 0;
        bool claims = am_scan_line(&ix, dg, n, pos, &fast, &lend);
        ck_assert_uint_eq(lend, want_end);
        if (claims) {
            ck_assert_msg(am_parse_skeleton(p, lend - pos, &ref), "'%.*s'", (int)(lend - pos), p);
            ck_assert(same_slice(fast.name, ref.name));
            ck_assert(same_slice(fast.values, ref.values));
            ck_assert(same_slice(fast.type, ref.type));
            ck_assert(same_slice(fast.tags, ref.tags));
            ck_assert(same_slice(fast.rest, ref.rest));
            ck_assert(fast.plain && ref.plain);
            ck_assert_int_eq(fast.type_id, ref.type_id);
            ck_assert(fast.rate == 1.0 && ref.rate == 1.0);
            claimed++;
        }
        pos = want_end + 1;
    }
    return claimed;
}

static const struct {
    const char *in;
    size_t claimed; /* lines the fast scan takes; the rest go to the skeleton */
} scans[] = {
    {"a:1|c", 1},
    {"a:1|c\n", 1},
    {"a:1|c|#", 1},
    {"a:1|c|#x:y", 1},
    {"a:1:2:3|ms|#x:y,z:w", 1},
    {"alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:ok", 1},
    {"alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:ok\nb:2|g", 2},
    {"a:1|c\r\nb:1|c\r", 0},          /* '\r': the skeleton strips it */
    {"a:1|c|@0.5\nb:1|c|#x|@0.5", 0}, /* rates: not the usual layout */
    {"a:1|c|c:abc\na:1|c|T123", 0},   /* other extensions */
    {"a:1|c|#x:y|#z:w", 0},           /* two tag sections */
    {"a:1|c|", 0},
    {"a:1|c|x", 0},
    {":1|c\na\na:1\na:|\na:1|", 0},
    {"a:1|zz\na:1|\na:1||#", 0}, /* types the skeleton refuses */
    {"\n\n\na:1|c\n\n", 1},
    {"a|b:1|c", 1}, /* the skeleton's view; the full parse rejects */
    {"a:1|c|#x\ny:1|c", 2},
    {"a.b.c.d.e.f.g.h:12345678|c|#aaaaaaaa:bbbbbbbb,cccccccc:dddddddd", 1},
    {"a:1|s|#x:y", 1},
};

START_TEST(test_scan_line)
{
    for (size_t i = 0; i < sizeof(scans) / sizeof(scans[0]); i++) {
        size_t n = strlen(scans[i].in);
        guarded_t g = guarded_copy(scans[i].in, n); /* ends at a guard page */
        ck_assert_msg(check_scan(g.p, n) == scans[i].claimed, "case %zu: '%s'", i, scans[i].in);
        guarded_free(&g);
    }
}
END_TEST

/* Lines of many lengths at every offset within a 64-byte index block, at
 * the end of an exact-size buffer and in the middle of a datagram: lines
 * that cross blocks must be found as they are. */
START_TEST(test_scan_line_lengths)
{
    char line[256], dg[512];
    for (size_t tags = 0; tags < 150; tags += 1 + tags / 40) {
        int n = snprintf(line, sizeof(line), "n:1|c|#");
        for (size_t k = 0; k < tags; k++)
            line[n++] = (char)('a' + k % 26);
        for (size_t pre = 0; pre < 66; pre++) {
            /* pre bytes of an earlier line, the line, and sometimes another after */
            size_t len = 0;
            if (pre) {
                memset(dg, 'x', pre - 1);
                dg[pre - 1] = '\n';
                len = pre;
            }
            memcpy(dg + len, line, (size_t)n);
            len += (size_t)n;
            guarded_t g = guarded_copy(dg, len);
            ck_assert_uint_eq(check_scan(g.p, len), 1);
            guarded_free(&g);
            memcpy(dg + len, "\nb:2|g|#", 8);
            guarded_t g2 = guarded_copy(dg, len + 8);
            ck_assert_uint_eq(check_scan(g2.p, len + 8), 2);
            guarded_free(&g2);
        }
        /* A '|' or '\n' at every offset of the tags ends them there. */
        for (size_t at = 0; at < tags; at++) {
            char c = line[7 + at];
            line[7 + at] = '|';
            ck_assert_uint_eq(check_scan(line, (size_t)n), 0);
            line[7 + at] = '\n';
            ck_assert_uint_eq(check_scan(line, (size_t)n), 1);
            line[7 + at] = c;
        }
    }
}
END_TEST

/* The fast scan against the skeleton over every vector datagram. */
START_TEST(test_scan_line_vectors)
{
    json_t *vectors = load_vectors(VECTORS_PATH);
    size_t i, claimed = 0;
    json_t *vec;
    json_array_foreach(vectors, i, vec)
    {
        bytes_t dg = vec_json_string(vec, json_object_get(vec, "datagram"));
        guarded_t g = guarded_copy(dg.p, dg.n);
        claimed += check_scan(g.p, dg.n);
        guarded_free(&g);
        bytes_free(&dg);
    }
    ck_assert_uint_ge(claimed, 20);
    json_decref(vectors);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* proto/vectors.json                                                        */

START_TEST(test_vectors)
{
    json_t *vectors = load_vectors(VECTORS_PATH);
    ck_assert_uint_ge(json_array_size(vectors), 80);
    size_t i;
    json_t *vec;
    size_t nlines = 0;
    bool seen[AM_REASON_COUNT] = {false};
    json_array_foreach(vectors, i, vec)
    {
        const char *vname = json_string_value(json_object_get(vec, "name"));
        ck_assert_ptr_nonnull(vname);
        bytes_t dg = vec_json_string(vec, json_object_get(vec, "datagram"));
        const json_t *expect = json_object_get(vec, "expect");
        ck_assert(json_is_array(expect));
        lines_t l = {0};
        am_parse_datagram(dg.p, dg.n, collect_line, &l);
        ck_assert_msg(l.n == json_array_size(expect), "%s: %zu lines, %zu expected", vname, l.n,
                      json_array_size(expect));
        for (size_t k = 0; k < l.n; k++) {
            am_sample_t s;
            am_reason_t rc = am_parse_line(l.p[k], l.len[k], &s);
            const json_t *e = json_array_get(expect, k);
            const json_t *rej = json_object_get(e, "reject");
            const json_t *acc = json_object_get(e, "accept");
            const json_t *ev = json_object_get(e, "event"); /* "event" or "service_check" */
            ck_assert_msg((rej != NULL) + (acc != NULL) + (ev != NULL) == 1,
                          "%s: expect needs accept, reject or event", vname);
            am_reason_t want =
                rej  ? reason_by_label(json_string_value(rej))
                : ev ? (strcmp(json_string_value(ev), "event") == 0 ? AM_EVENT : AM_SERVICE_CHECK)
                     : AM_OK;
            ck_assert_msg(rc == want, "%s line %zu: %d (%s), want %d", vname, k, (int)rc,
                          am_reason_label(rc), (int)want);
            if (rc < AM_REASON_COUNT)
                seen[rc] = true;
            if (acc)
                check_accept(vec, vname, k, &s, acc);
            nlines++;
        }
        bytes_free(&dg);
    }
    /* Every reason the parser alone can give has a vector. */
    static const am_reason_t parser_reasons[] = {AM_OK,
                                                 AM_REJECT_SYNTAX,
                                                 AM_REJECT_BAD_NAME,
                                                 AM_REJECT_BAD_VALUE,
                                                 AM_REJECT_BAD_TYPE,
                                                 AM_REJECT_BAD_SAMPLE_RATE,
                                                 AM_REJECT_BAD_LABEL,
                                                 AM_REJECT_NEGATIVE_COUNTER};
    for (size_t r = 0; r < sizeof(parser_reasons) / sizeof(parser_reasons[0]); r++)
        ck_assert_msg(seen[parser_reasons[r]], "no vector for %s",
                      am_reason_label(parser_reasons[r]));
    ck_assert_uint_ge(nlines, 80);
    json_decref(vectors);
}
END_TEST

/* Never reads past n, never writes: every vector line (and every prefix of
 * the shorter ones) is parsed from an exact-size malloc'd buffer (ASan) and
 * from a read-only copy that ends at a guard page. */
START_TEST(test_vectors_exact_size)
{
    json_t *vectors = load_vectors(VECTORS_PATH);
    size_t i;
    json_t *vec;
    json_array_foreach(vectors, i, vec)
    {
        bytes_t dg = vec_json_string(vec, json_object_get(vec, "datagram"));
        guarded_t gd = guarded_copy(dg.p, dg.n);
        lines_t l = {0};
        am_parse_datagram(gd.p, dg.n, collect_line, &l);
        for (size_t k = 0; k < l.n; k++) {
            am_sample_t s;
            am_reason_t want = am_parse_line(l.p[k], l.len[k], &s);
            char *exact = malloc(l.len[k]);
            ck_assert_ptr_nonnull(exact);
            memcpy(exact, l.p[k], l.len[k]);
            ck_assert_int_eq(am_parse_line(exact, l.len[k], &s), want);
            free(exact);
            guarded_t g = guarded_copy(l.p[k], l.len[k]);
            ck_assert_int_eq(am_parse_line(g.p, l.len[k], &s), want);
            /* Truncations: what a cut datagram's last line looks like. */
            size_t step = l.len[k] <= 300 ? 1 : l.len[k] / 97 + 1;
            for (size_t cut = 0; cut < l.len[k]; cut += step) {
                const char *p = g.p + l.len[k] - cut; /* suffix ends at the guard */
                (void)am_parse_line(p, cut, &s);
                char *pre = malloc(cut ? cut : 1);
                ck_assert_ptr_nonnull(pre);
                memcpy(pre, l.p[k], cut);
                (void)am_parse_line(pre, cut, &s);
                free(pre);
            }
            guarded_free(&g);
        }
        guarded_free(&gd);
        bytes_free(&dg);
    }
    json_decref(vectors);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* proto/registry_vectors.json                                               */

static void limits_from(const json_t *vec, am_limits_t *l)
{
    am_limits_default(l);
    const json_t *lim = json_object_get(vec, "limits");
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)lim, key, val)
    {
        ck_assert(json_is_integer(val));
        size_t v = (size_t)json_integer_value(val);
        if (strcmp(key, "max_series_per_family") == 0)
            l->max_series_per_family = v;
        else if (strcmp(key, "max_series") == 0)
            l->max_series = v;
        else if (strcmp(key, "max_families") == 0)
            l->max_families = v;
        else if (strcmp(key, "max_set_members") == 0)
            l->max_set_members = v;
        else
            ck_abort_msg("unknown limit '%s'", key);
    }
    const json_t *ac = json_object_get(vec, "auto_create");
    if (ac)
        l->auto_create = json_is_true(ac);
}

static bool has_line(const am_buf_t *b, const bytes_t *line)
{
    const char *p = b->data, *end = b->data + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (n == line->n && memcmp(p, line->p, n) == 0)
            return true;
        p += n + 1;
    }
    return false;
}

static void check_exposition_shape(const am_buf_t *b, am_format_t fmt)
{
    ck_assert(!am_buf_failed(b));
    ck_assert_ptr_null(memchr(b->data, '\0', b->len));
    ck_assert(b->len > 0 && b->data[b->len - 1] == '\n');
    if (fmt == AM_FORMAT_OPENMETRICS)
        ck_assert(b->len >= 6 && memcmp(b->data + b->len - 6, "# EOF\n", 6) == 0);
}

/* The daemon's datagram path against the line path: every registry vector's
 * lines, joined into one datagram, must give the same rejects (same reason,
 * same line) and the same exposition byte for byte. */
typedef struct rejects {
    size_t n;
    am_reason_t rc[256];
    const char *line[256];
} rejects_t;

static void collect_reject(void *ctx, am_reason_t rc, const char *line, size_t len)
{
    rejects_t *r = ctx;
    ck_assert(len > 0);
    ck_assert_uint_lt(r->n, 256);
    r->rc[r->n] = rc;
    r->line[r->n++] = line;
}

static void ingest_both_ways(const char *dg, size_t n, const am_limits_t *lim, am_buf_t *by_line,
                             am_buf_t *by_dgram)
{
    am_registry_t *a = am_registry_new(lim), *b = am_registry_new(lim);
    ck_assert(a && b && am_catalog_install(a) == 0 && am_catalog_install(b) == 0);
    static am_sample_t s;
    rejects_t want = {0}, got = {0};
    size_t ok = 0;
    const char *p = dg, *end = dg + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        if (len > 0 && !(len == 1 && p[0] == '\r')) {
            am_reason_t rc = am_registry_ingest_line(a, p, len, &s);
            if (rc == AM_OK)
                ok++;
            else
                collect_reject(&want, rc, p, len);
        }
        p += len + 1;
    }
    ck_assert_uint_eq(am_registry_ingest_datagram(b, dg, n, &s, collect_reject, &got), ok);
    ck_assert_uint_eq(got.n, want.n);
    for (size_t k = 0; k < got.n; k++)
        ck_assert(got.rc[k] == want.rc[k] && got.line[k] == want.line[k]);
    am_expose_registry(by_line, a, AM_FORMAT_TEXT);
    am_expose_registry(by_dgram, b, AM_FORMAT_TEXT);
    am_registry_free(a);
    am_registry_free(b);
}

/* Loop index 0: the portable line cache key; 1: AES-NI where the CPU has
 * it. Each test runs in its own process: the pick ends with it. */
static void pick_hash(int i)
{
    am_hash_seed_init();
    am_hash_use_aes(i == 1);
}

START_TEST(test_registry_vectors_datagram)
{
    pick_hash(_i);
    json_t *vectors = load_vectors(REGISTRY_VECTORS_PATH);
    size_t i;
    json_t *vec;
    json_array_foreach(vectors, i, vec)
    {
        const char *vname = json_string_value(json_object_get(vec, "name"));
        am_limits_t lim;
        limits_from(vec, &lim);
        bytes_t dg = {0};
        size_t k;
        json_t *pair;
        json_array_foreach(json_object_get(vec, "lines"), k, pair)
        {
            bytes_t line = vec_json_string(vec, json_array_get(pair, 0));
            /* Each line twice: the second one takes the line cache. */
            for (int rep = 0; rep < 2; rep++) {
                bytes_append(&dg, line.p, line.n);
                bytes_append(&dg, "\n", 1);
            }
            bytes_free(&line);
        }
        am_buf_t x, y;
        am_buf_init(&x, 0);
        am_buf_init(&y, 0);
        ingest_both_ways(dg.p, dg.n, &lim, &x, &y);
        ck_assert_msg(x.len == y.len && memcmp(x.data, y.data, x.len) == 0, "%s", vname);
        am_buf_free(&x);
        am_buf_free(&y);
        bytes_free(&dg);
    }
    json_decref(vectors);
}
END_TEST

/* Longer than the index holds (no socket delivers that, but the function
 * takes any length): the line-by-line fallback gives the same result. */
START_TEST(test_datagram_longer_than_index)
{
    bytes_t dg = {0};
    size_t nlines = 0;
    while (dg.n <= AM_DGRAM_INDEX_MAX + 100) {
        char line[64];
        int m = snprintf(line, sizeof(line), nlines % 1000 == 7 ? "big:x|c\n" : "big:1|c|#k:%zu\n",
                         nlines % 50);
        bytes_append(&dg, line, (size_t)m);
        nlines++;
    }
    am_limits_t lim;
    am_limits_default(&lim);
    am_buf_t x, y;
    am_buf_init(&x, 0);
    am_buf_init(&y, 0);
    ingest_both_ways(dg.p, dg.n, &lim, &x, &y);
    ck_assert(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
    am_buf_putc(&y, '\0');
    ck_assert_ptr_nonnull(strstr(y.data, "big_total{k=\"0\"}"));
    am_buf_free(&x);
    am_buf_free(&y);
    bytes_free(&dg);
}
END_TEST

/* Lines one byte apart are different series, wherever that byte is. */
START_TEST(test_datagram_near_duplicates)
{
    pick_hash(_i);
    static const char dg[] =
        "alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:ok\n"
        "alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:ko\n"
        "alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:o\n"
        "alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:okk\n"
        "alice.provider.requestz:1|c|#provider:openai,model:gpt-4o,status:ok\n"
        "alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:ok\n"
        "alice.provider.requests:1|c|#provider:openai,model:gpt-4p,status:ok\n"
        "alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:ok\r\n"
        "alice.provider.requests:1|c|#provider:openai,model:gpt-4o,status:ok|@0.5\n";
    am_limits_t lim;
    am_limits_default(&lim);
    am_registry_t *r = am_registry_new(&lim);
    ck_assert_ptr_nonnull(r);
    static am_sample_t s;
    rejects_t rej = {0};
    ck_assert_uint_eq(am_registry_ingest_datagram(r, dg, sizeof(dg) - 1, &s, collect_reject, &rej),
                      9);
    ck_assert_uint_eq(rej.n, 0);
    am_buf_t b;
    am_buf_init(&b, 0);
    am_expose_registry(&b, r, AM_FORMAT_TEXT);
    am_buf_putc(&b, '\0');
    ck_assert_ptr_nonnull(strstr(b.data, "alice_provider_requests_total{model=\"gpt-4o\","
                                         "provider=\"openai\",status=\"ok\"} 5.0\n"));
    for (const char *st = "ko\0o\0okk\0"; *st; st += strlen(st) + 1) {
        char want[160];
        snprintf(want, sizeof(want),
                 "alice_provider_requests_total{model=\"gpt-4o\",provider=\"openai\","
                 "status=\"%s\"} 1.0\n",
                 st);
        ck_assert_msg(strstr(b.data, want), "%s", want);
    }
    ck_assert_ptr_nonnull(strstr(b.data, "alice_provider_requestz_total{"));
    ck_assert_ptr_nonnull(
        strstr(b.data, "{model=\"gpt-4p\",provider=\"openai\",status=\"ok\"} 1.0\n"));
    am_buf_free(&b);
    am_registry_free(r);
}
END_TEST

START_TEST(test_registry_vectors)
{
    json_t *vectors = load_vectors(REGISTRY_VECTORS_PATH);
    bool seen[AM_REASON_COUNT] = {false};
    size_t i;
    json_t *vec;
    json_array_foreach(vectors, i, vec)
    {
        const char *vname = json_string_value(json_object_get(vec, "name"));
        const char *xfail = json_string_value(json_object_get(vec, "xfail"));
        bool all_ok = true;
        char why[512] = "";
        am_limits_t lim;
        limits_from(vec, &lim);
        am_registry_t *r = am_registry_new(&lim);
        ck_assert_ptr_nonnull(r);
        ck_assert_int_eq(am_catalog_install(r), 0);

        size_t k;
        json_t *pair;
        json_array_foreach(json_object_get(vec, "lines"), k, pair)
        {
            bytes_t line = vec_json_string(vec, json_array_get(pair, 0));
            const char *want_label = json_string_value(json_array_get(pair, 1));
            am_reason_t want = reason_by_label(want_label);
            am_sample_t s;
            am_reason_t rc = am_parse_line(line.p, line.n, &s);
            if (rc == AM_OK)
                rc = am_registry_apply(r, &s);
            seen[rc] = true;
            if (rc != want) {
                if (all_ok)
                    snprintf(why, sizeof(why), "line %zu '%.60s': %s, want %s", k, line.p,
                             am_reason_label(rc), want_label);
                all_ok = false;
            }
            bytes_free(&line);
        }

        am_buf_t text, om;
        am_buf_init(&text, 0);
        am_buf_init(&om, 0);
        am_expose_registry(&text, r, AM_FORMAT_TEXT);
        am_expose_registry(&om, r, AM_FORMAT_OPENMETRICS);
        am_expose_finish(&om, AM_FORMAT_OPENMETRICS);
        check_exposition_shape(&text, AM_FORMAT_TEXT);
        check_exposition_shape(&om, AM_FORMAT_OPENMETRICS);
        json_t *want_line;
        json_array_foreach(json_object_get(vec, "exposed"), k, want_line)
        {
            bytes_t wl = vec_json_string(vec, want_line);
            if (!has_line(&text, &wl)) {
                if (all_ok)
                    snprintf(why, sizeof(why), "exposition lacks '%s'", wl.p);
                all_ok = false;
            }
            bytes_free(&wl);
        }
        am_buf_free(&text);
        am_buf_free(&om);
        am_registry_free(r);

        if (xfail) {
            /* Strict: a known bug that got fixed must lose its marker. */
            ck_assert_msg(!all_ok, "%s: passes now, remove its \"xfail\"", vname);
            fprintf(stderr, "xfail: %s: %s (%s)\n", vname, why, xfail);
        } else {
            ck_assert_msg(all_ok, "%s: %s", vname, why);
        }
    }
    static const am_reason_t registry_reasons[] = {
        AM_REJECT_BAD_NAME,      AM_REJECT_BAD_LABEL,   AM_REJECT_UNDECLARED_LABEL,
        AM_REJECT_TYPE_CONFLICT, AM_REJECT_CARDINALITY, AM_REJECT_UNKNOWN_FAMILY};
    for (size_t r = 0; r < sizeof(registry_reasons) / sizeof(registry_reasons[0]); r++)
        ck_assert_msg(seen[registry_reasons[r]], "no registry vector for %s",
                      am_reason_label(registry_reasons[r]));
    json_decref(vectors);
}
END_TEST

/* ------------------------------------------------------------------------ */

static Suite *parse_suite(void)
{
    Suite *s = suite_create("parse");
    TCase *tc = tcase_create("helpers");
    tcase_add_test(tc, test_parse_number);
    tcase_add_test(tc, test_parse_number_uses_n);
    tcase_add_test(tc, test_map_name);
    tcase_add_test(tc, test_map_name_longest);
    tcase_add_test(tc, test_valid_names);
    tcase_add_test(tc, test_valid_utf8);
    tcase_add_test(tc, test_type_codes);
    tcase_add_test(tc, test_reason_labels);
    suite_add_tcase(s, tc);

    tc = tcase_create("lines");
    tcase_add_test(tc, test_parse_line_table);
    tcase_add_test(tc, test_parse_line_slices);
    tcase_add_test(tc, test_parse_datagram);
    tcase_add_test(tc, test_scan_line);
    tcase_add_test(tc, test_scan_line_lengths);
    suite_add_tcase(s, tc);

    tc = tcase_create("vectors");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_vectors);
    tcase_add_test(tc, test_vectors_exact_size);
    tcase_add_test(tc, test_scan_line_vectors);
    tcase_add_test(tc, test_registry_vectors);
    tcase_add_loop_test(tc, test_registry_vectors_datagram, 0, 2);
    tcase_add_loop_test(tc, test_datagram_near_duplicates, 0, 2);
    tcase_add_test(tc, test_datagram_longer_than_index);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(parse_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
