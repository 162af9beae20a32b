/* Unit tests for src/util/file.c: reading a whole file, never blocking on
 * a FIFO, never reading a device or more than the bound. Files are made
 * in a fresh directory under the build's test output folder. */
#include "file.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check-main.h"

#ifndef AM_TEST_OUTPUT_DIR
#define AM_TEST_OUTPUT_DIR "."
#endif

static char dir[512];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), AM_TEST_OUTPUT_DIR "/test-file-%ld", (long)getpid());
    ck_assert(mkdir(dir, 0700) == 0 || errno == EEXIST);
}

static void path_of(char *out, size_t n, const char *name)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(text, 1, strlen(text), f), strlen(text));
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_regular)
{
    make_dir();
    char p[600], err[256] = "";
    path_of(p, sizeof(p), "a.json");
    write_text(p, "{\"a\": 1}");
    char *data;
    size_t len;
    ck_assert_int_eq(am_file_read(p, 64, &data, &len, err, sizeof(err)), 0);
    ck_assert_uint_eq(len, 8);
    ck_assert_str_eq(data, "{\"a\": 1}"); /* NUL-terminated */
    free(data);
    /* exactly the bound is fine, one byte more is not */
    ck_assert_int_eq(am_file_read(p, 8, &data, &len, err, sizeof(err)), 0);
    free(data);
    ck_assert_int_eq(am_file_read(p, 7, &data, &len, err, sizeof(err)), -EFBIG);
    ck_assert_ptr_null(data);
    char want[700];
    snprintf(want, sizeof(want), "%s: larger than 7 bytes", p);
    ck_assert_str_eq(err, want);
    /* empty */
    write_text(p, "");
    ck_assert_int_eq(am_file_read(p, 8, &data, &len, err, sizeof(err)), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_str_eq(data, "");
    free(data);
    unlink(p);
}
END_TEST

/* A FIFO with no writer: refused at once, not waited on. */
START_TEST(test_fifo)
{
    make_dir();
    char p[600], err[256] = "";
    path_of(p, sizeof(p), "fifo");
    unlink(p);
    ck_assert_int_eq(mkfifo(p, 0600), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char *data;
    size_t len;
    ck_assert_int_eq(am_file_read(p, 1 << 20, &data, &len, err, sizeof(err)), -EINVAL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert(t1.tv_sec - t0.tv_sec < 2);
    ck_assert_ptr_null(data);
    ck_assert_ptr_nonnull(strstr(err, "fifo: not a regular file"));
    unlink(p);
}
END_TEST

/* Devices (endless or empty) and directories. */
START_TEST(test_devices_and_dirs)
{
    char err[256] = "";
    char *data;
    size_t len;
    ck_assert_int_eq(am_file_read("/dev/zero", 1 << 20, &data, &len, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "/dev/zero: not a regular file (a FIFO, socket or device is never read)");
    ck_assert_int_eq(am_file_read("/dev/null", 1 << 20, &data, &len, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(am_file_read("/", 1 << 20, &data, &len, err, sizeof(err)), -EISDIR);
    ck_assert_str_eq(err, "/: is a directory, not a regular file");
    ck_assert_int_eq(am_file_read("/nonexistent/x", 1 << 20, &data, &len, err, sizeof(err)),
                     -ENOENT);
    ck_assert_str_eq(err, "/nonexistent/x: cannot open: No such file or directory");
}
END_TEST

/* A huge (sparse) file is refused by its size, before any read. */
START_TEST(test_huge)
{
    make_dir();
    char p[600], err[256] = "";
    path_of(p, sizeof(p), "huge");
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (off_t)1 << 36), 0); /* 64 GiB of holes */
    close(fd);
    char *data;
    size_t len;
    ck_assert_int_eq(am_file_read(p, 16u << 20, &data, &len, err, sizeof(err)), -EFBIG);
    ck_assert_ptr_nonnull(strstr(err, "huge: larger than 16 MiB"));
    unlink(p);
    rmdir(dir);
}
END_TEST

static Suite *file_suite(void)
{
    Suite *s = suite_create("File");
    TCase *tc = tcase_create("read");
    tcase_add_test(tc, test_regular);
    tcase_add_test(tc, test_fifo);
    tcase_add_test(tc, test_devices_and_dirs);
    tcase_add_test(tc, test_huge);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(file_suite)
