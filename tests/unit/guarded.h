/* Bytes at the very end of a readable mapping, right before a PROT_NONE
 * page: a read past the end faults even without ASan. Shared by the Check
 * suites that test scanners and hashes for over-reads. */
#pragma once

#include <check.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct guarded {
    char *map;
    size_t maplen;
    const char *p;
} guarded_t;

static inline guarded_t guarded_copy(const char *p, size_t n)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (n + pg - 1) / pg;
    if (data_pages == 0)
        data_pages = 1;
    guarded_t g;
    g.maplen = (data_pages + 1) * pg;
    g.map = mmap(NULL, g.maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert(g.map != MAP_FAILED);
    char *start = g.map + data_pages * pg - n;
    if (n)
        memcpy(start, p, n);
    ck_assert_int_eq(mprotect(g.map, data_pages * pg, PROT_READ), 0);
    ck_assert_int_eq(mprotect(g.map + data_pages * pg, pg, PROT_NONE), 0);
    g.p = start;
    return g;
}

static inline void guarded_free(guarded_t *g)
{
    munmap(g->map, g->maplen);
}
