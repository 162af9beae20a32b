/* Unit tests for src/util/buf.c: the growable output buffer. */
#include "buf.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "check-main.h"

START_TEST(test_init_is_empty)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    ck_assert_uint_eq(b.limit, 0);
    ck_assert(!am_buf_failed(&b));
    am_buf_free(&b);
}
END_TEST

/* Appends of every kind land in order, NUL-terminated. */
START_TEST(test_append_kinds)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    am_buf_append(&b, "ab", 2);
    am_buf_puts(&b, "cd");
    am_buf_putc(&b, 'e');
    am_buf_printf(&b, "%d-%s-%.1f", 42, "x", 2.5);
    am_buf_append(&b, "zzz", 0);
    ck_assert_uint_eq(b.len, 13);
    ck_assert_str_eq(b.data, "abcde42-x-2.5");
    ck_assert(!am_buf_failed(&b));
    am_buf_free(&b);
}
END_TEST

/* Embedded NUL bytes are data, not terminators. */
START_TEST(test_append_binary)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    am_buf_append(&b, "a\0b", 3);
    am_buf_putc(&b, '\0');
    ck_assert_uint_eq(b.len, 4);
    ck_assert_mem_eq(b.data, "a\0b\0", 4);
    am_buf_free(&b);
}
END_TEST

/* Growth past the first allocation, byte by byte and in large chunks. */
START_TEST(test_growth)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    for (int i = 0; i < 100000; i++)
        am_buf_putc(&b, (char)('a' + i % 26));
    ck_assert_uint_eq(b.len, 100000);
    ck_assert(b.cap > b.len);
    for (int i = 0; i < 100000; i++)
        ck_assert_int_eq(b.data[i], 'a' + i % 26);
    ck_assert_int_eq(b.data[100000], '\0');

    char big[70000];
    memset(big, 'q', sizeof(big));
    am_buf_append(&b, big, sizeof(big));
    ck_assert_uint_eq(b.len, 170000);
    ck_assert_int_eq(b.data[169999], 'q');
    ck_assert_int_eq(b.data[99999], 'a' + 99999 % 26);
    ck_assert(!am_buf_failed(&b));
    am_buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
}
END_TEST

/* printf output longer than the 256-byte stack buffer takes the second path. */
static const struct {
    size_t n;
} long_printf_cases[] = {{255}, {256}, {257}, {1000}, {5000}, {100000}};

START_TEST(test_printf_long)
{
    size_t n = long_printf_cases[_i].n;
    char *s = malloc(n + 1);
    ck_assert_ptr_nonnull(s);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('A' + i % 23);
    s[n] = '\0';

    am_buf_t b;
    am_buf_init(&b, 0);
    am_buf_puts(&b, "<<");
    am_buf_printf(&b, "[%s|%zu]", s, n);
    char tail[32];
    int tn = snprintf(tail, sizeof(tail), "|%zu]", n);
    ck_assert_uint_eq(b.len, 2 + 1 + n + (size_t)tn);
    ck_assert_mem_eq(b.data, "<<[", 3);
    ck_assert_mem_eq(b.data + 3, s, n);
    ck_assert_str_eq(b.data + 3 + n, tail);
    ck_assert(!am_buf_failed(&b));
    /* The buffer keeps working after the long path. */
    am_buf_printf(&b, "%s", "!");
    ck_assert_uint_eq(b.len, 2 + 1 + n + (size_t)tn + 1);
    ck_assert_int_eq(b.data[b.len - 1], '!');
    ck_assert_int_eq(b.data[b.len], '\0');
    am_buf_free(&b);
    free(s);
}
END_TEST

/* A limit allows exactly `limit` bytes; one more fails the buffer. */
START_TEST(test_limit_exact)
{
    am_buf_t b;
    am_buf_init(&b, 10);
    am_buf_append(&b, "0123456789", 10);
    ck_assert(!am_buf_failed(&b));
    ck_assert_uint_eq(b.len, 10);
    ck_assert_str_eq(b.data, "0123456789");
    am_buf_putc(&b, 'x');
    ck_assert(am_buf_failed(&b));
    ck_assert_uint_eq(b.len, 10);
    am_buf_free(&b);
}
END_TEST

/* Once failed, every kind of append is a no-op and the failure sticks. */
START_TEST(test_failed_sticks)
{
    am_buf_t b;
    am_buf_init(&b, 8);
    am_buf_puts(&b, "abc");
    am_buf_append(&b, "0123456789", 10); /* would pass the limit */
    ck_assert(am_buf_failed(&b));
    ck_assert_uint_eq(b.len, 3);
    am_buf_putc(&b, 'x');
    am_buf_puts(&b, "y");
    am_buf_append(&b, "z", 1);
    am_buf_printf(&b, "%d", 1);
    char longs[400];
    memset(longs, 'L', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    am_buf_printf(&b, "%s", longs);
    ck_assert(!am_buf_reserve(&b, 1));
    ck_assert(am_buf_failed(&b));
    ck_assert_uint_eq(b.len, 3);
    ck_assert_mem_eq(b.data, "abc", 3);
    am_buf_free(&b);
}
END_TEST

/* A long printf that would pass the limit fails instead of truncating. */
START_TEST(test_limit_printf_long)
{
    am_buf_t b;
    am_buf_init(&b, 300);
    char s[301];
    memset(s, 'p', 300);
    s[300] = '\0';
    am_buf_printf(&b, "%s", s); /* exactly 300: fits */
    ck_assert(!am_buf_failed(&b));
    ck_assert_uint_eq(b.len, 300);
    am_buf_reset(&b);
    am_buf_printf(&b, "x%s", s); /* 301: does not */
    ck_assert(am_buf_failed(&b));
    ck_assert_uint_eq(b.len, 0);
    am_buf_free(&b);
}
END_TEST

START_TEST(test_reserve)
{
    am_buf_t b;
    am_buf_init(&b, 100);
    ck_assert(am_buf_reserve(&b, 100));
    ck_assert_uint_ge(b.cap, 101);
    ck_assert_uint_eq(b.len, 0);
    ck_assert(!am_buf_reserve(&b, 101));
    ck_assert(am_buf_failed(&b));
    am_buf_free(&b);

    am_buf_init(&b, 0);
    ck_assert(!am_buf_reserve(&b, (size_t)-1)); /* overflow guard */
    ck_assert(am_buf_failed(&b));
    am_buf_free(&b);
}
END_TEST

/* Reset empties the buffer, keeps its memory and clears a failure. */
START_TEST(test_reset_keeps_capacity)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    for (int i = 0; i < 5000; i++)
        am_buf_putc(&b, 'r');
    char *data = b.data;
    size_t cap = b.cap;
    am_buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, cap);
    ck_assert_ptr_eq(b.data, data);
    ck_assert_str_eq(b.data, "");
    for (int i = 0; i < 4000; i++)
        am_buf_putc(&b, 's');
    ck_assert_ptr_eq(b.data, data); /* no reallocation below the old capacity */
    ck_assert_uint_eq(b.cap, cap);
    ck_assert_uint_eq(b.len, 4000);
    am_buf_free(&b);

    am_buf_init(&b, 4);
    am_buf_puts(&b, "12345");
    ck_assert(am_buf_failed(&b));
    am_buf_reset(&b);
    ck_assert(!am_buf_failed(&b));
    ck_assert_uint_eq(b.limit, 4);
    am_buf_puts(&b, "1234");
    ck_assert(!am_buf_failed(&b));
    ck_assert_str_eq(b.data, "1234");
    am_buf_free(&b);
}
END_TEST

/* Steal hands the bytes over and leaves an empty, reusable buffer. */
START_TEST(test_steal)
{
    am_buf_t b;
    am_buf_init(&b, 0);
    am_buf_puts(&b, "hello, world");
    size_t len = 0;
    char *p = am_buf_steal(&b, &len);
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_eq(len, 12);
    ck_assert_mem_eq(p, "hello, world", 12);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);

    am_buf_puts(&b, "again");
    ck_assert_str_eq(b.data, "again");
    ck_assert(b.data != p);
    char *q = am_buf_steal(&b, NULL); /* len is optional */
    ck_assert_str_eq(q, "again");
    free(p);
    free(q);
    am_buf_free(&b);
}
END_TEST

static Suite *buf_suite(void)
{
    Suite *s = suite_create("Buf");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_init_is_empty);
    tcase_add_test(tc, test_append_kinds);
    tcase_add_test(tc, test_append_binary);
    tcase_add_test(tc, test_growth);
    tcase_add_loop_test(tc, test_printf_long, 0,
                        (int)(sizeof(long_printf_cases) / sizeof(long_printf_cases[0])));
    tcase_add_test(tc, test_limit_exact);
    tcase_add_test(tc, test_failed_sticks);
    tcase_add_test(tc, test_limit_printf_long);
    tcase_add_test(tc, test_reserve);
    tcase_add_test(tc, test_reset_keeps_capacity);
    tcase_add_test(tc, test_steal);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(buf_suite)
