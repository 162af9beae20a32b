/* Helpers shared by the Check suites that drive the registry with StatsD
 * lines (test-registry.c, test-merge.c, test-expose.c). */
#pragma once

#include <check.h>
#include <string.h>

#include "parse.h"
#include "reasons.h"
#include "registry.h"

#define NELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* am_family_def_t holds char *: literals cast for -Wwrite-strings. */
#define S(x) ((char *)(x))

/* Parses n bytes of one line and applies it: the plain (uncached) path. */
static inline am_reason_t apply_line_n(am_registry_t *r, const char *line, size_t n)
{
    am_sample_t s;
    am_reason_t rc = am_parse_line(line, n, &s);
    if (rc != AM_OK)
        return rc;
    return am_registry_apply(r, &s);
}

static inline am_reason_t apply_line(am_registry_t *r, const char *line)
{
    return apply_line_n(r, line, strlen(line));
}

#define ck_line(r, l, want)                                                                        \
    do {                                                                                           \
        const char *l_ = (l);                                                                      \
        am_reason_t got_ = apply_line((r), l_);                                                    \
        am_reason_t want_ = (want);                                                                \
        ck_assert_msg(got_ == want_, "line \"%s\": got %s, want %s", l_, am_reason_label(got_),    \
                      am_reason_label(want_));                                                     \
    } while (0)

/* Two worker registries sharing a new family directory (returned: free it
 * after both registries), limits the defaults but ttl, clocks at 0. */
static inline am_famdir_t *two_workers(uint32_t ttl, am_registry_t *w[2])
{
    am_limits_t l;
    am_limits_default(&l);
    l.ttl = ttl;
    am_famdir_t *d = am_famdir_new();
    ck_assert_ptr_nonnull(d);
    for (int i = 0; i < 2; i++) {
        w[i] = am_registry_new(&l);
        ck_assert_ptr_nonnull(w[i]);
        am_registry_use_directory(w[i], d);
        am_registry_set_now(w[i], 0);
    }
    return d;
}
