/* Unit tests for src/util/log.c: levels, the logfmt line, and escaping of
 * quoted values (an error text holding a quote once broke the line for
 * logfmt parsers). */
#include "log.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check-main.h"

typedef struct escape_case {
    const char *in;
    const char *want;
} escape_case_t;

static const escape_case_t escape_cases[] = {
    {"", ""},
    {"plain text", "plain text"},
    {"unknown key \"x\"", "unknown key \\\"x\\\""},
    {"C:\\dir\\file", "C:\\\\dir\\\\file"},
    {"\\\"", "\\\\\\\""},
    {"two\nlines\r\tend", "two\\nlines\\r\\tend"},
    {"bell\a del\x7f", "bell\\x07 del\\x7f"},
    {"utf-8 \xc3\xa9 stays", "utf-8 \xc3\xa9 stays"},
};

START_TEST(test_escape_table)
{
    for (size_t i = 0; i < sizeof(escape_cases) / sizeof(escape_cases[0]); i++) {
        char out[128];
        const char *r = am_log_escape(out, sizeof(out), escape_cases[i].in);
        ck_assert_ptr_eq(r, out);
        ck_assert_str_eq(out, escape_cases[i].want);
    }
    char out[8];
    ck_assert_str_eq(am_log_escape(out, sizeof(out), NULL), "");
}
END_TEST

/* A value that does not fit is cut between escapes, never inside one, and
 * always terminated. */
START_TEST(test_escape_cut)
{
    char out[6];
    ck_assert_str_eq(am_log_escape(out, sizeof(out), "abcdefgh"), "abcde");
    ck_assert_str_eq(am_log_escape(out, sizeof(out), "abcd\"x"), "abcd");
    ck_assert_str_eq(am_log_escape(out, sizeof(out), "ab\"\"x"), "ab\\\"");
    ck_assert_str_eq(am_log_escape(out, sizeof(out), "a\x01z"), "a\\x01");
    char one[1];
    ck_assert_str_eq(am_log_escape(one, sizeof(one), "abc"), "");
}
END_TEST

START_TEST(test_level_parse)
{
    ck_assert_int_eq(am_log_level_parse("DEBUG"), AM_LOG_DEBUG);
    ck_assert_int_eq(am_log_level_parse("Info"), AM_LOG_INFO);
    ck_assert_int_eq(am_log_level_parse("warning"), AM_LOG_WARN);
    ck_assert_int_eq(am_log_level_parse("error"), AM_LOG_ERROR);
    ck_assert_int_lt(am_log_level_parse("loud"), 0);
    ck_assert_int_lt(am_log_level_parse(NULL), 0);
}
END_TEST

/* Reads back what am_log wrote to stderr (redirected to a file). */
static char *capture(void (*fn)(void))
{
    char path[] = "/tmp/alice-test-log-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    ck_assert_int_ge(saved, 0);
    ck_assert_int_ge(dup2(fd, STDERR_FILENO), 0);
    fn();
    fflush(stderr);
    ck_assert_int_ge(dup2(saved, STDERR_FILENO), 0);
    close(saved);
    off_t n = lseek(fd, 0, SEEK_END);
    ck_assert_int_ge(n, 0);
    char *text = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(text);
    ck_assert_int_eq(pread(fd, text, (size_t)n, 0), n);
    close(fd);
    return text;
}

static void log_quoted_error(void)
{
    char e[64];
    am_log(AM_LOG_ERROR, "event=reload_failed error=\"%s\" action=\"kept\"",
           am_log_escape(e, sizeof(e), "f.json:1:2: unknown key \"x\\y\""));
    am_log(AM_LOG_DEBUG, "event=hidden"); /* below the threshold */
}

/* One logfmt line whose quoted value holds the escaped text: a parser that
 * reads \" and \\ as escapes gets the original back. */
START_TEST(test_line_with_quoted_error)
{
    am_log_threshold = AM_LOG_INFO;
    char *text = capture(log_quoted_error);
    ck_assert_msg(strncmp(text, "time=", 5) == 0, "%s", text);
    ck_assert_ptr_nonnull(strstr(text, " level=error event=reload_failed error=\"f.json:1:2: "
                                       "unknown key \\\"x\\\\y\\\"\" action=\"kept\"\n"));
    ck_assert_ptr_null(strstr(text, "hidden"));
    ck_assert_ptr_eq(strchr(text, '\n'), text + strlen(text) - 1); /* one line */

    /* The value, unescaped as logfmt parsers do, is the original text. */
    const char *v = strstr(text, "error=\"") + 7;
    char back[128];
    size_t n = 0;
    for (; *v != '"' && n + 1 < sizeof(back); v++)
        back[n++] = *v == '\\' ? *++v : *v;
    back[n] = '\0';
    ck_assert_str_eq(back, "f.json:1:2: unknown key \"x\\y\"");
    free(text);
}
END_TEST

static Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("log");
    tcase_add_test(tc, test_escape_table);
    tcase_add_test(tc, test_escape_cut);
    tcase_add_test(tc, test_level_parse);
    tcase_add_test(tc, test_line_with_quoted_error);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(log_suite)
