/* EmitUnit: target parsing (src/client/addr.c), line building and checking
 * (src/client/line.c) and alice-emit's argument handling (src/emit/emit.c).
 * Table-driven; nothing here sends a datagram. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "emit.h"
#include "line.h"
#include "parse.h"
#include "../unit/check-main.h"

/* ---- addresses ---- */

static const struct {
    const char *spec;
    am_addr_kind_t kind;
    const char *host_or_path;
    unsigned port;
    const char *canonical;
} good_addrs[] = {
    {"127.0.0.1:8125", AM_ADDR_UDP, "127.0.0.1", 8125, "udp://127.0.0.1:8125"},
    {"udp://127.0.0.1:9000", AM_ADDR_UDP, "127.0.0.1", 9000, "udp://127.0.0.1:9000"},
    {"localhost:1", AM_ADDR_UDP, "localhost", 1, "udp://localhost:1"},
    {"metrics.internal", AM_ADDR_UDP, "metrics.internal", 8125, "udp://metrics.internal:8125"},
    {"udp://host-1", AM_ADDR_UDP, "host-1", 8125, "udp://host-1:8125"},
    {"[::1]:8125", AM_ADDR_UDP, "::1", 8125, "udp://[::1]:8125"},
    {"udp://[::1]:65535", AM_ADDR_UDP, "::1", 65535, "udp://[::1]:65535"},
    {"[fe80::1%lo]:7", AM_ADDR_UDP, "fe80::1%lo", 7, "udp://[fe80::1%lo]:7"},
    {"[::1]", AM_ADDR_UDP, "::1", 8125, "udp://[::1]:8125"},
    {"::1", AM_ADDR_UDP, "::1", 8125, "udp://[::1]:8125"},
    {"2001:db8::2", AM_ADDR_UDP, "2001:db8::2", 8125, "udp://[2001:db8::2]:8125"},
    {"unix:///run/alice/metrics.sock", AM_ADDR_UNIX, "/run/alice/metrics.sock", 0,
     "unix:///run/alice/metrics.sock"},
    {"unix://relative.sock", AM_ADDR_UNIX, "relative.sock", 0, "unix://relative.sock"},
    {"/tmp/x.sock", AM_ADDR_UNIX, "/tmp/x.sock", 0, "unix:///tmp/x.sock"},
};

static const char *const bad_addrs[] = {
    "",
    ":8125",
    "127.0.0.1:",
    "127.0.0.1:0",
    "127.0.0.1:65536",
    "127.0.0.1:99999999",
    "127.0.0.1:-1",
    "127.0.0.1:+80",
    "127.0.0.1:80x",
    "127.0.0.1:8125/",
    "tcp://127.0.0.1:8125",
    "http://x",
    "udp://",
    "unix://",
    "[::1",
    "[::1]x",
    "[::1]:",
    "[]:8125",
    "::1]:8125",
    "host name:8125",
    "user@host:8125",
    ("unix:///aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock"), /* one string: too long a path */
};

START_TEST(test_addr_good)
{
    am_addr_t a;
    ck_assert_int_eq(am_addr_parse(good_addrs[_i].spec, &a), 0);
    ck_assert_int_eq(a.kind, good_addrs[_i].kind);
    if (a.kind == AM_ADDR_UDP) {
        ck_assert_str_eq(a.host, good_addrs[_i].host_or_path);
        ck_assert_uint_eq(a.port, good_addrs[_i].port);
    } else {
        ck_assert_str_eq(a.path, good_addrs[_i].host_or_path);
    }
    char buf[512];
    size_t n = am_addr_format(&a, buf, sizeof(buf));
    ck_assert_str_eq(buf, good_addrs[_i].canonical);
    ck_assert_uint_eq(n, strlen(good_addrs[_i].canonical));
}
END_TEST

START_TEST(test_addr_bad)
{
    am_addr_t a;
    ck_assert_msg(am_addr_parse(bad_addrs[_i], &a) == -EINVAL, "accepted '%s'", bad_addrs[_i]);
}
END_TEST

START_TEST(test_addr_null)
{
    am_addr_t a;
    ck_assert_int_eq(am_addr_parse(NULL, &a), -EINVAL);
}
END_TEST

START_TEST(test_dgram_resolve)
{
    am_addr_t a;
    am_dgram_t d;
    ck_assert_int_eq(am_addr_parse("127.0.0.1:8125", &a), 0);
    ck_assert_int_eq(am_dgram_open(&d, &a, true, 0), 0);
    ck_assert_uint_eq(d.naddrs, 1);
    am_dgram_close(&d);
    ck_assert_int_eq(am_addr_parse("[::1]:8125", &a), 0);
    ck_assert_int_eq(am_dgram_open(&d, &a, true, 0), 0);
    ck_assert_uint_eq(d.naddrs, 1);
    ck_assert_int_eq(d.addrs[0].ss_family, AF_INET6);
    am_dgram_close(&d);
    ck_assert_int_eq(am_addr_parse("no-such-host.invalid:8125", &a), 0);
    ck_assert_int_eq(am_dgram_open(&d, &a, true, 0), -EADDRNOTAVAIL);
    /* An absent Unix socket is not an error until a send. */
    ck_assert_int_eq(am_addr_parse("unix:///nonexistent/alice.sock", &a), 0);
    ck_assert_int_eq(am_dgram_open(&d, &a, true, 0), 0);
    int rc = am_dgram_send(&d, "x:1|c", 5);
    ck_assert(am_dgram_absent(rc));
    am_dgram_close(&d);
}
END_TEST

/* ---- numbers ---- */

static const struct {
    double v;
    const char *text;
} numbers[] = {
    {0, "0"},
    {-0.0, "0"},
    {1, "1"},
    {-3, "-3"},
    {42, "42"},
    {999999999999999, "999999999999999"},
    {0.1, "0.1"},
    {0.005, "0.005"},
    {2.5, "2.5"},
    {-2.5, "-2.5"},
    {12.345, "12.345"},
    {0.0001, "0.0001"},
    {0.00001, "0.00001"},
    {1.5e-5, "0.000015"},
    {123456.789, "123456.789"},
    {0.30000000000000004, "0.3"},
    {99999999999999.9, "99999999999999.9"},
    {1e15, "1000000000000000"},
    {1e-6, "9.9999999999999995e-07"},
    {1.7976931348623157e308, "1.7976931348623157e+308"},
};

START_TEST(test_double)
{
    char out[AM_LINE_NUM_MAX];
    size_t n = am_line_double(numbers[_i].v, out);
    ck_assert_str_eq(out, numbers[_i].text);
    ck_assert_uint_eq(n, strlen(numbers[_i].text));
    double back;
    ck_assert(am_parse_number(out, n, &back));
}
END_TEST

START_TEST(test_double_special)
{
    char out[AM_LINE_NUM_MAX];
    ck_assert_uint_eq(am_line_double(NAN, out), 0);
    ck_assert_uint_eq(am_line_double(INFINITY, out), 0);
    ck_assert_uint_eq(am_line_double(-INFINITY, out), 0);
    ck_assert_uint_eq(am_line_delta(NAN, out), 0);
    ck_assert_uint_eq(am_line_delta(3, out), 2);
    ck_assert_str_eq(out, "+3");
    am_line_delta(-0.5, out);
    ck_assert_str_eq(out, "-0.5");
    am_line_delta(0, out);
    ck_assert_str_eq(out, "+0");
}
END_TEST

/* Decimals typed with up to 15 significant digits come back exactly;
 * anything else within 1e-14 relative (15 significant digits). */
START_TEST(test_double_roundtrip)
{
    unsigned seed = 12345;
    char out[AM_LINE_NUM_MAX];
    for (int i = 0; i < 200000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned long long mant = ((unsigned long long)seed << 20) % 1000000000000000ULL;
        int scale = (int)(seed >> 27) % 30 - 10;
        char lit[64];
        snprintf(lit, sizeof(lit), "%llue%d", mant, scale);
        double v = strtod(lit, NULL);
        if (i & 1)
            v = -v;
        size_t n = am_line_double(v, out);
        ck_assert_uint_gt(n, 0);
        double back;
        ck_assert_msg(am_parse_number(out, n, &back), "unparsable %s", out);
        ck_assert_msg(back == v, "%s -> %s -> %.17g", lit, out, back);

        /* a full 53-bit mantissa */
        double w = (double)seed / 4294967296.0 * pow(10, (int)(seed % 25) - 8);
        n = am_line_double(w, out);
        ck_assert(am_parse_number(out, n, &back));
        ck_assert_msg(w == 0 || fabs(back - w) / fabs(w) <= 1e-14, "%.17g -> %s", w, out);
    }
}
END_TEST

/* ---- lines ---- */

static const alice_label api_labels[] = {
    {"provider", "openai"},
    {"model", "gpt-4"},
    {"operation", "text"},
};

START_TEST(test_line_write)
{
    char out[256];
    size_t n;
    am_line_t l = {"alice_jobs", "1", "c", NULL, 0};
    ck_assert_int_eq(am_line_write(&l, out, sizeof(out), &n, NULL), 0);
    ck_assert_uint_eq(n, 14);
    ck_assert_int_eq(memcmp(out, "alice_jobs:1|c", 14), 0);

    am_line_t h = {"alice_api_request_duration_seconds", "0.25", "h", api_labels, 3};
    ck_assert_int_eq(am_line_write(&h, out, sizeof(out), &n, NULL), 0);
    const char *want =
        "alice_api_request_duration_seconds:0.25|h|#provider:openai,model:gpt-4,operation:text";
    ck_assert_uint_eq(n, strlen(want));
    ck_assert_int_eq(memcmp(out, want, n), 0);
    ck_assert_int_eq(am_line_validate(out, n, 3), AM_OK);

    /* exactly the size needed fits; one less does not */
    ck_assert_int_eq(am_line_write(&h, out, strlen(want), &n, NULL), 0);
    ck_assert_int_eq(am_line_write(&h, out, strlen(want) - 1, &n, NULL), -ENOSPC);

    alice_label empty_value[] = {{"k", ""}};
    am_line_t e = {"x", "1", "c", empty_value, 1};
    ck_assert_int_eq(am_line_write(&e, out, sizeof(out), &n, NULL), 0);
    ck_assert_int_eq(memcmp(out, "x:1|c|#k:", n), 0);
    ck_assert_int_eq(am_line_validate(out, n, 1), AM_OK);

    am_line_t s = {"users", "user:42", "s", NULL, 0};
    ck_assert_int_eq(am_line_write(&s, out, sizeof(out), &n, NULL), 0);
    ck_assert_int_eq(am_line_validate(out, n, 0), AM_OK);
}
END_TEST

/* Parts that would change the line's structure, refused before parsing. */
static const struct {
    const char *name;
    const char *value;
    const char *type;
    alice_label label;
    int nlabels;
    int reason;
    am_line_part_t part;
} faults[] = {
    {"a:5", "1", "c", {0}, 0, AM_REJECT_BAD_NAME, AM_LINE_PART_NAME},
    {"a\nb", "1", "c", {0}, 0, AM_REJECT_BAD_NAME, AM_LINE_PART_NAME},
    {"a|c", "1", "g", {0}, 0, AM_REJECT_BAD_NAME, AM_LINE_PART_NAME},
    {"a", "1|ms", "c", {0}, 0, AM_REJECT_BAD_VALUE, AM_LINE_PART_VALUE},
    {"a", "1:2", "h", {0}, 0, AM_REJECT_BAD_VALUE, AM_LINE_PART_VALUE},
    {"a", "x|y", "s", {0}, 0, AM_REJECT_BAD_VALUE, AM_LINE_PART_VALUE},
    {"a", "1", "c", {"k,j", "v"}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_KEY},
    {"a", "1", "c", {"k:j", "v"}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_KEY},
    {"a", "1", "c", {"", "v"}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_KEY},
    {"a", "1", "c", {NULL, "v"}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_KEY},
    {"a", "1", "c", {"k", "a,b:c"}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_VALUE},
    {"a", "1", "c", {"k", "a|b"}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_VALUE},
    {"a", "1", "c", {"k", "line\nbreak"}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_VALUE},
    {"a", "1", "c", {"k", "cr\r"}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_VALUE},
    {"a", "1", "c", {"k", NULL}, 1, AM_REJECT_BAD_LABEL, AM_LINE_PART_LABEL_VALUE},
};

START_TEST(test_line_faults)
{
    char out[256];
    size_t n;
    am_line_fault_t f;
    am_line_t l = {faults[_i].name, faults[_i].value, faults[_i].type, &faults[_i].label,
                   (size_t)faults[_i].nlabels};
    ck_assert_int_eq(am_line_write(&l, out, sizeof(out), &n, &f), faults[_i].reason);
    ck_assert_int_eq(f.part, faults[_i].part);
    ck_assert_ptr_nonnull(am_line_fault_message(f.part));
}
END_TEST

START_TEST(test_line_too_many_labels)
{
    alice_label many[AM_MAX_TAGS + 1];
    char keys[AM_MAX_TAGS + 1][8];
    for (int i = 0; i <= AM_MAX_TAGS; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        many[i].key = keys[i];
        many[i].value = "v";
    }
    char out[2048];
    size_t n;
    am_line_t l = {"a", "1", "c", many, AM_MAX_TAGS};
    ck_assert_int_eq(am_line_write(&l, out, sizeof(out), &n, NULL), 0);
    ck_assert_int_eq(am_line_validate(out, n, AM_MAX_TAGS), AM_OK);
    l.nlabels = AM_MAX_TAGS + 1;
    ck_assert_int_eq(am_line_write(&l, out, sizeof(out), &n, NULL), AM_REJECT_BAD_LABEL);
}
END_TEST

/* What the parser refuses, through the same path the emitters use. */
static const struct {
    const char *name;
    const char *value;
    const char *type;
    alice_label label;
    int nlabels;
    am_reason_t reason;
} refused[] = {
    {"", "1", "c", {0}, 0, AM_REJECT_SYNTAX},
    {"bad name", "1", "c", {0}, 0, AM_REJECT_BAD_NAME},
    {"caf\xc3\xa9", "1", "c", {0}, 0, AM_REJECT_BAD_NAME},
    {"a", "abc", "c", {0}, 0, AM_REJECT_BAD_VALUE},
    {"a", "nan", "g", {0}, 0, AM_REJECT_BAD_VALUE},
    {"a", "inf", "h", {0}, 0, AM_REJECT_BAD_VALUE},
    {"a", "0x10", "h", {0}, 0, AM_REJECT_BAD_VALUE},
    {"a", "", "c", {0}, 0, AM_REJECT_BAD_VALUE},
    {"a", "", "s", {0}, 0, AM_REJECT_BAD_VALUE},
    {"a", "-1", "c", {0}, 0, AM_REJECT_NEGATIVE_COUNTER},
    {"a", "1", "x", {0}, 0, AM_REJECT_BAD_TYPE},
    {"a", "1", "c", {"__reserved", "v"}, 1, AM_REJECT_BAD_LABEL},
    {"a", "1", "c", {"bad key", "v"}, 1, AM_REJECT_BAD_LABEL},
    {"a", "1", "c", {"k", "\xff\xfe"}, 1, AM_REJECT_BAD_LABEL},
};

START_TEST(test_line_refused)
{
    char out[256];
    size_t n;
    am_line_t l = {refused[_i].name, refused[_i].value, refused[_i].type, &refused[_i].label,
                   (size_t)refused[_i].nlabels};
    ck_assert_int_eq(am_line_write(&l, out, sizeof(out), &n, NULL), 0);
    ck_assert_int_eq(am_line_validate(out, n, l.nlabels), refused[_i].reason);
}
END_TEST

START_TEST(test_line_duplicate_label)
{
    alice_label dup[] = {{"k", "1"}, {"k", "2"}};
    char out[256];
    size_t n;
    am_line_t l = {"a", "1", "c", dup, 2};
    ck_assert_int_eq(am_line_write(&l, out, sizeof(out), &n, NULL), 0);
    ck_assert_int_eq(am_line_validate(out, n, 2), AM_REJECT_BAD_LABEL);
    /* '.' and '-' map to '_': "a.b" and "a_b" are the same label */
    alice_label mapped[] = {{"a.b", "1"}, {"a_b", "2"}};
    l.labels = mapped;
    ck_assert_int_eq(am_line_write(&l, out, sizeof(out), &n, NULL), 0);
    ck_assert_int_eq(am_line_validate(out, n, 2), AM_REJECT_BAD_LABEL);
}
END_TEST

/* ---- alice-emit arguments ---- */

static int parse(am_emit_cmd_t *cmd, am_buf_t *err, const char *env, const char *const *args)
{
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"alice-emit";
    for (; *args; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    am_buf_reset(err);
    /* argv must outlive cmd: the strings are literals here. */
    static char *keep[64];
    memcpy(keep, argv, sizeof(keep));
    return am_emit_parse(argc, keep, env, cmd, err);
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static am_emit_cmd_t cmd;
static am_buf_t err;
static am_buf_t out;

static void setup(void)
{
    am_buf_init(&err, 0);
    am_buf_init(&out, 0);
}

static void teardown(void)
{
    am_buf_free(&err);
    am_buf_free(&out);
}

static const char *build(double seconds, bool success)
{
    am_buf_reset(&out);
    am_buf_reset(&err);
    int rc = am_emit_build(&cmd, seconds, success, &out, &err);
    ck_assert_msg(rc == 0, "build failed: %s", err.data ? err.data : "");
    return out.data;
}

START_TEST(test_emit_counter)
{
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("counter", "alice_jobs_total")), 0);
    ck_assert_int_eq(cmd.mode, AM_EMIT_METRIC);
    ck_assert_str_eq(build(0, true), "alice_jobs_total:1|c");
    ck_assert_int_eq(cmd.addr.kind, AM_ADDR_UDP);
    ck_assert_str_eq(cmd.addr.host, "127.0.0.1");
    ck_assert_uint_eq(cmd.addr.port, 8125);

    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("c", "jobs", "queue=default", "status=ok")), 0);
    ck_assert_str_eq(build(0, true), "jobs:1|c|#queue:default,status:ok");
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("counter", "jobs", "5", "k=a=b")), 0);
    ck_assert_str_eq(build(0, true), "jobs:5|c|#k:a=b");
}
END_TEST

START_TEST(test_emit_types)
{
    static const struct {
        const char *const args[8];
        const char *line;
    } cases[] = {
        {{"gauge", "conns", "7"}, "conns:7|g"},
        {{"g", "conns", "-1"}, "conns:-1|g"},
        {{"gauge", "conns", "+2.5", "pool=main"}, "conns:+2.5|g|#pool:main"},
        {{"--set", "gauge", "temp", "-5"}, "temp:0|g\ntemp:-5|g"},
        {{"gauge", "--set", "temp", "+5"}, "temp:5|g"},
        {{"gauge", "temp", "-0", "--set"}, "temp:0|g"},
        {{"histogram", "score", "0.82", "media_type=image"}, "score:0.82|h|#media_type:image"},
        {{"h", "score", "1e-3"}, "score:1e-3|h"},
        {{"distribution", "size", "512"}, "size:512|d"},
        {{"timer", "db.query", "12.5", "query_type=select"}, "db.query:12.5|ms|#query_type:select"},
        {{"ms", "t", "3"}, "t:3|ms"},
        {{"set", "users", "user=42"}, "users:user=42|s"},
        {{"s", "users", "u1", "k=v"}, "users:u1|s|#k:v"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[10];
        size_t n = 0;
        while (cases[i].args[n]) {
            args[n] = cases[i].args[n];
            n++;
        }
        args[n] = NULL;
        ck_assert_msg(parse(&cmd, &err, NULL, args) == 0, "case %zu: %s", i, err.data);
        ck_assert_str_eq(build(0, true), cases[i].line);
    }
}
END_TEST

START_TEST(test_emit_target)
{
    ck_assert_int_eq(parse(&cmd, &err, "10.0.0.1:9125", ARGS("c", "x")), 0);
    ck_assert_str_eq(cmd.addr.host, "10.0.0.1");
    ck_assert_uint_eq(cmd.addr.port, 9125);
    ck_assert_int_eq(parse(&cmd, &err, "unix:///run/a.sock", ARGS("c", "x")), 0);
    ck_assert_int_eq(cmd.addr.kind, AM_ADDR_UNIX);
    ck_assert_str_eq(cmd.addr.path, "/run/a.sock");
    ck_assert_int_eq(parse(&cmd, &err, "", ARGS("c", "x")), 0);
    ck_assert_str_eq(cmd.addr.host, "127.0.0.1");
    /* flags beat the environment; --port keeps the environment's host */
    ck_assert_int_eq(parse(&cmd, &err, "10.0.0.1:9125", ARGS("--port", "7000", "c", "x")), 0);
    ck_assert_str_eq(cmd.addr.host, "10.0.0.1");
    ck_assert_uint_eq(cmd.addr.port, 7000);
    ck_assert_int_eq(parse(&cmd, &err, "unix:///a", ARGS("--host=::1", "c", "x")), 0);
    ck_assert_int_eq(cmd.addr.kind, AM_ADDR_UDP);
    ck_assert_str_eq(cmd.addr.host, "::1");
    ck_assert_uint_eq(cmd.addr.port, 8125);
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("--host", "[::1]", "--port=1", "c", "x")), 0);
    ck_assert_str_eq(cmd.addr.host, "::1");
    ck_assert_uint_eq(cmd.addr.port, 1);
    ck_assert_int_eq(parse(&cmd, &err, "1.2.3.4:5", ARGS("--unix", "/tmp/s", "c", "x")), 0);
    ck_assert_int_eq(cmd.addr.kind, AM_ADDR_UNIX);
    ck_assert_str_eq(cmd.addr.path, "/tmp/s");
    /* options after TYPE too */
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("c", "x", "--strict", "k=v")), 0);
    ck_assert(cmd.strict);
    ck_assert_uint_eq(cmd.nlabels, 1);
}
END_TEST

START_TEST(test_emit_usage_errors)
{
    const char *const *const bad[] = {
        ARGS("--nope", "c", "x"),
        ARGS("-x", "c", "x"),
        ARGS("bogus", "x"),
        ARGS("counter"),
        ARGS("gauge", "x"),
        ARGS("histogram", "x", "k=v"),
        ARGS("c", "x", "1", "notalabel"),
        ARGS("c", "x", "=v"),
        ARGS("--set", "c", "x"),
        ARGS("--count", "y", "c", "x"),
        ARGS("--port", "0", "c", "x"),
        ARGS("--port", "65536", "c", "x"),
        ARGS("--port"),
        ARGS("--host", "a b", "c", "x"),
        ARGS("--unix", "/s", "--port", "1", "c", "x"),
        ARGS("--strict=yes", "c", "x"),
        ARGS("time", "x"),
        ARGS("time", "x", "--"),
        ARGS("time", "x", "k=v", "cmd"),
        ARGS("-", "extra"),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = parse(&cmd, &err, NULL, bad[i]);
        ck_assert_msg(rc == AM_EMIT_EXIT_USAGE, "case %zu accepted", i);
        ck_assert_msg(err.len > 0, "case %zu: no message", i);
    }
    ck_assert_int_eq(parse(&cmd, &err, "tcp://x:1", ARGS("c", "x")), AM_EMIT_EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(err.data, "ALICE_METRICS_ADDR"));
}
END_TEST

/* Lines the daemon would reject: exit 2, a message naming the reason. */
START_TEST(test_emit_refused)
{
    static const struct {
        const char *const args[6];
        const char *reason;
    } cases[] = {
        {{"c", "bad name"}, "bad_name"},
        {{"c", "a:5"}, "bad_name"},
        {{"c", "x", "-1"}, "negative_counter"},
        {{"c", "x", "novalue"}, "bad_value"},
        {{"g", "x", "abc"}, "bad_value"},
        {{"g", "x", "nan"}, "bad_value"},
        {{"h", "x", "1|ms"}, "bad_value"},
        {{"c", "x", "k=a,b"}, "bad_label"},
        {{"c", "x", "__k=v"}, "bad_label"},
        {{"c", "x", "k=v", "k=w"}, "bad_label"},
        {{"c", "x", "k=\xff"}, "bad_label"},
        {{"--set", "g", "x", "-abc"}, "bad_value"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *args[8];
        size_t n = 0;
        while (cases[i].args[n]) {
            args[n] = cases[i].args[n];
            n++;
        }
        args[n] = NULL;
        ck_assert_msg(parse(&cmd, &err, NULL, args) == 0, "case %zu: %s", i, err.data);
        am_buf_reset(&out);
        am_buf_reset(&err);
        ck_assert_int_eq(am_emit_build(&cmd, 0, true, &out, &err), AM_EMIT_EXIT_USAGE);
        ck_assert_msg(strstr(err.data, cases[i].reason), "case %zu: %s", i, err.data);
    }
}
END_TEST

START_TEST(test_emit_time)
{
    ck_assert_int_eq(parse(&cmd, &err, NULL,
                           ARGS("time", "alice_api_request_duration_seconds", "provider=openai",
                                "--count", "alice_api_requests_total", "--strict", "--", "sh",
                                "-c", "exit 3")),
                     0);
    ck_assert_int_eq(cmd.mode, AM_EMIT_TIME);
    ck_assert(cmd.strict);
    ck_assert_str_eq(cmd.count, "alice_api_requests_total");
    ck_assert_str_eq(cmd.command[0], "sh");
    ck_assert_str_eq(cmd.command[2], "exit 3");
    ck_assert_ptr_null(cmd.command[3]);
    ck_assert_str_eq(build(1.5, false),
                     "alice_api_request_duration_seconds:1.5|h|#provider:openai\n"
                     "alice_api_requests_total:1|c|#provider:openai,status:error");
    ck_assert_str_eq(build(0.25, true),
                     "alice_api_request_duration_seconds:0.25|h|#provider:openai\n"
                     "alice_api_requests_total:1|c|#provider:openai,status:success");

    /* options of the command itself stay its own */
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("time", "t", "--", "ls", "--strict", "-l")),
                     0);
    ck_assert(!cmd.strict);
    ck_assert_str_eq(cmd.command[1], "--strict");
    ck_assert_str_eq(build(2, true), "t:2|h");

    /* a status label of one's own clashes with --count's */
    ck_assert_int_eq(parse(&cmd, &err, NULL,
                           ARGS("time", "t", "status=x", "--count", "n", "--", "true")),
                     0);
    am_buf_reset(&out);
    ck_assert_int_eq(am_emit_build(&cmd, 1, true, &out, &err), AM_EMIT_EXIT_USAGE);
}
END_TEST

START_TEST(test_emit_modes)
{
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("-")), 0);
    ck_assert_int_eq(cmd.mode, AM_EMIT_STDIN);
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("--unix", "/s", "-")), 0);
    ck_assert_int_eq(cmd.mode, AM_EMIT_STDIN);
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("--help")), 0);
    ck_assert_int_eq(cmd.mode, AM_EMIT_HELP);
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("-h")), 0);
    ck_assert_int_eq(cmd.mode, AM_EMIT_HELP);
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("c", "x", "--help")), 0);
    ck_assert_int_eq(cmd.mode, AM_EMIT_HELP);
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("--version")), 0);
    ck_assert_int_eq(cmd.mode, AM_EMIT_VERSION);
    /* "--" ends the options: a name that looks like one */
    ck_assert_int_eq(parse(&cmd, &err, NULL, ARGS("--", "c", "--x")), 0);
    ck_assert_str_eq(cmd.name, "--x");
}
END_TEST

static Suite *emit_suite(void)
{
    Suite *s = suite_create("Emit");
    TCase *tc = tcase_create("addr");
    tcase_add_loop_test(tc, test_addr_good, 0, (int)(sizeof(good_addrs) / sizeof(good_addrs[0])));
    tcase_add_loop_test(tc, test_addr_bad, 0, (int)(sizeof(bad_addrs) / sizeof(bad_addrs[0])));
    tcase_add_test(tc, test_addr_null);
    tcase_add_test(tc, test_dgram_resolve);
    suite_add_tcase(s, tc);

    tc = tcase_create("line");
    tcase_add_loop_test(tc, test_double, 0, (int)(sizeof(numbers) / sizeof(numbers[0])));
    tcase_add_test(tc, test_double_special);
    tcase_add_test(tc, test_double_roundtrip);
    tcase_add_test(tc, test_line_write);
    tcase_add_loop_test(tc, test_line_faults, 0, (int)(sizeof(faults) / sizeof(faults[0])));
    tcase_add_test(tc, test_line_too_many_labels);
    tcase_add_loop_test(tc, test_line_refused, 0, (int)(sizeof(refused) / sizeof(refused[0])));
    tcase_add_test(tc, test_line_duplicate_label);
    suite_add_tcase(s, tc);

    tc = tcase_create("args");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_emit_counter);
    tcase_add_test(tc, test_emit_types);
    tcase_add_test(tc, test_emit_target);
    tcase_add_test(tc, test_emit_usage_errors);
    tcase_add_test(tc, test_emit_refused);
    tcase_add_test(tc, test_emit_time);
    tcase_add_test(tc, test_emit_modes);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(emit_suite)
