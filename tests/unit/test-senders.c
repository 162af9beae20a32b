/* Unit tests for src/daemon/senders.c: the Unix socket's sender table.
 * Rows by (pid, uid) with the process name read from a /proc made here
 * (once, at first sight: a name changed later is not read again), pid 0
 * keyed by uid alone and never read, names cleaned to printable ASCII, and
 * the bound: a table of 4 rows fed 1,000 senders keeps 4, the least
 * recently seen ones replaced and counted. */
#include "senders.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check-main.h"
#include "hash.h"

static char proc[64];

/* proc/<pid>/comm holding text (as the kernel writes it: a newline after). */
static void put_comm(unsigned pid, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%u", proc, pid);
    (void)mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/%u/comm", proc, pid);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", text);
    fclose(f);
}

static void setup(void)
{
    am_hash_seed_init();
    snprintf(proc, sizeof(proc), "/tmp/am-senders-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(proc));
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", proc);
    ck_assert_int_eq(system(cmd), 0);
}

static const am_sender_t *row_of(const am_sender_t *rows, size_t n, uint32_t pid, uint32_t uid)
{
    for (size_t i = 0; i < n; i++)
        if (rows[i].pid == pid && rows[i].uid == uid)
            return &rows[i];
    return NULL;
}

START_TEST(test_rows_and_names)
{
    am_senders_t s;
    ck_assert_int_eq(am_senders_init(&s, 8, proc), 0);
    put_comm(100, "python3");
    put_comm(200, "we\x01ird\xff");
    am_sender_t *a = am_senders_get(&s, 100, 1000, 5);
    a->datagrams++;
    a->lines += 3;
    ck_assert_str_eq(a->process, "python3");
    ck_assert_uint_eq(a->first_ms, 5);
    /* read once: a new name later is not seen, the row is the same */
    put_comm(100, "renamed");
    am_sender_t *b = am_senders_get(&s, 200, 1000, 6); /* another pid between */
    ck_assert_str_eq(b->process, "we?ird?");
    a = am_senders_get(&s, 100, 1000, 9);
    a->datagrams++;
    ck_assert_str_eq(a->process, "python3");
    ck_assert_uint_eq(a->datagrams, 2);
    ck_assert_uint_eq(a->lines, 3);
    ck_assert_uint_eq(a->first_ms, 5);
    ck_assert_uint_eq(a->last_ms, 9);
    /* the same pid under another uid is another sender; no comm: "" */
    ck_assert_ptr_ne(am_senders_get(&s, 100, 0, 10), a);
    ck_assert_str_eq(am_senders_get(&s, 300, 0, 10)->process, "");
    /* pid 0: by uid alone, /proc/0 never read */
    put_comm(0, "never");
    am_sender_t *z = am_senders_get(&s, 0, 65534, 11);
    ck_assert_str_eq(z->process, "");
    z->datagrams++;
    am_senders_get(&s, 100, 1000, 12);
    ck_assert_ptr_eq(am_senders_get(&s, 0, 65534, 13), z);
    ck_assert_uint_eq(z->datagrams, 1);

    am_sender_t out[8];
    ck_assert_uint_eq(am_senders_copy(&s, out, 8), 5);
    ck_assert_uint_eq(am_senders_copy(&s, out, 2), 2);
    ck_assert_uint_eq(s.evicted, 0);
    am_senders_free(&s);
    am_senders_free(&s); /* twice is safe */
    ck_assert_int_eq(am_senders_init(&s, 0, NULL), -EINVAL);
}
END_TEST

START_TEST(test_bounded)
{
    am_senders_t s;
    ck_assert_int_eq(am_senders_init(&s, 4, proc), 0);
    /* a busy sender that keeps sending, and 1,000 passing ones */
    for (uint32_t i = 0; i < 1000; i++) {
        am_senders_get(&s, 1, 0, 2 * i)->datagrams++;
        am_senders_get(&s, 1000 + i, 0, 2 * i + 1)->datagrams++;
        ck_assert_uint_le(s.n, 4);
        ck_assert_uint_le(s.index.n, 4);
    }
    ck_assert_uint_eq(s.evicted, 1000 - 3);
    am_sender_t out[4];
    size_t n = am_senders_copy(&s, out, 4);
    ck_assert_uint_eq(n, 4);
    /* the busy one stays with every datagram; the 3 most recent others too */
    const am_sender_t *busy = row_of(out, n, 1, 0);
    ck_assert_ptr_nonnull(busy);
    ck_assert_uint_eq(busy->datagrams, 1000);
    for (uint32_t pid = 1997; pid < 2000; pid++) {
        const am_sender_t *r = row_of(out, n, pid, 0);
        ck_assert_ptr_nonnull(r);
        ck_assert_uint_eq(r->datagrams, 1); /* a fresh row, not an old one's counts */
    }
    /* an evicted sender comes back as new, found again after */
    am_sender_t *back = am_senders_get(&s, 1000, 0, 5000);
    ck_assert_uint_eq(back->datagrams, 0);
    ck_assert_uint_eq(back->first_ms, 5000);
    back->datagrams++;
    am_senders_get(&s, 1, 0, 5001);
    ck_assert_ptr_eq(am_senders_get(&s, 1000, 0, 5002), back);
    ck_assert_uint_eq(back->datagrams, 1);
    am_senders_free(&s);
}
END_TEST

static Suite *senders_suite(void)
{
    Suite *s = suite_create("senders");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_rows_and_names);
    tcase_add_test(tc, test_bounded);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(senders_suite)
