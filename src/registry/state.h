/* state: a registry's series as bytes and back, for the state file that
 * carries them across a restart (proto/README.md "State file").
 *
 * The encoding holds every family (definition and series: counter totals,
 * histogram buckets, _sum and _count, gauges, set members) behind a header
 * with a format version and CRC-32 checksums of the header and of the
 * body. The decoder reads untrusted bytes: it checks every length, count
 * and number before it uses it, and a file that does not check out changes
 * nothing. No I/O here: the daemon writes and reads the file. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "registry.h"

#define AM_STATE_VERSION    2
#define AM_STATE_HEADER_LEN 32

/* Appends the encoding of r to out (r only read, out the caller's).
 * 0, or -ENOMEM (out marked failed). */
int am_state_encode(const am_registry_t *r, am_buf_t *out) __attribute__((warn_unused_result));

typedef struct am_state_counts {
    size_t families; /* in the file */
    size_t series;   /* in the file */
    size_t restored; /* series now in the registry */
    size_t skipped;  /* series the registry would not take: a family of
                      * another type or labels now, a limit, no auto_create */
} am_state_counts_t;

/* Restores the series of an encoding (p: n bytes, borrowed for the call)
 * into r, which the current config has set up (catalog, config families,
 * limits). A family r lacks is created as it was saved if r may auto-create
 * it (catalogued families come from the config, not the file); a series r
 * would not admit is skipped and counted. Every check runs before anything
 * is restored: on an error r is unchanged. Returns:
 *   0        restored (counts in *c)
 *   -EINVAL  not a state file, truncated, or corrupt (err says which)
 *   -EPROTO  written by another format version (err says which)
 *   -ENOMEM  out of memory (r may hold part of the file)
 * err: a one-line reason, NUL-terminated within errlen. */
int am_state_restore(am_registry_t *r, const void *p, size_t n, am_state_counts_t *c, char *err,
                     size_t errlen) __attribute__((warn_unused_result));
