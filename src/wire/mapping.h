/* mapping: statsd_exporter's metric mapping file (YAML, read with libyaml)
 * and the matcher that turns a dotted StatsD name into a Prometheus name
 * and labels (proto/README.md, "Mapping").
 *
 * A loaded mapping is immutable: every ingest worker reads the same one
 * without locks (regexec on a compiled regex_t is thread-safe). The server
 * owns it and swaps it at SIGHUP with the workers paused.
 *
 * Matching runs on the full path of a line only (registry/apply.c): the
 * line cache then maps the line's bytes straight to the mapped series.
 * Globs are compiled into per-component patterns matched without regexec;
 * regex mappings use POSIX regexec. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "parse.h"

typedef struct am_mapping am_mapping_t;

/* Warnings the loader meets (an unused key of the format, a deprecated
 * one): msg is "FILE:LINE: text", borrowed for the call. */
typedef void (*am_mapping_warn_fn)(void *ctx, const char *msg);

/* Reads and compiles the mapping file at path. On success returns 0 and
 * *out (owned by the caller: am_mapping_free). On failure returns a
 * negative errno (-ENOENT..., -ENOMEM) or -EINVAL for a file that is not a
 * valid mapping file, with "FILE:LINE: problem" in err (errcap bytes, the
 * caller's, always NUL-terminated). warn may be NULL. */
int am_mapping_load(const char *path, am_mapping_t **out, char *err, size_t errcap,
                    am_mapping_warn_fn warn, void *ctx) __attribute__((warn_unused_result));
/* The same from n bytes of YAML (data borrowed for the call); name is
 * what errors call the file. */
int am_mapping_load_buffer(const char *data, size_t n, const char *name, am_mapping_t **out,
                           char *err, size_t errcap, am_mapping_warn_fn warn, void *ctx)
    __attribute__((warn_unused_result));
void am_mapping_free(am_mapping_t *m); /* NULL is fine */
size_t am_mapping_count(const am_mapping_t *m);

enum { AM_MAPPING_HISTOGRAM = 0, AM_MAPPING_SUMMARY = 1 };

/* What a matched mapping gives a line. Slices point into the caller's
 * buffer (captures filled in) or into m (borrowed while m lives). */
typedef struct am_mapping_result {
    am_slice_t name; /* the metric name, captures filled in, not yet escaped */
    size_t nlabels;
    am_slice_t label_name[AM_MAX_TAGS];  /* valid label names */
    am_slice_t label_value[AM_MAX_TAGS]; /* valid UTF-8, possibly empty */
    const char *help;                    /* NUL-terminated; NULL: the default help */
    double scale;                        /* multiplies observed values; 1.0: none */
    bool honor_labels;                   /* a line's tag beats a mapping label */
    int observer_type;                   /* AM_MAPPING_HISTOGRAM or _SUMMARY */
    size_t nbuckets;                     /* 0: the default buckets */
    const double *buckets;
    uint32_t ttl;  /* series TTL in seconds for a family it creates; 0: none */
    unsigned line; /* the mapping's line in its file */
} am_mapping_result_t;

enum {
    AM_MAPPING_NO_MATCH = 0, /* the usual rules apply */
    AM_MAPPING_MAPPED = 1,   /* *out filled */
    AM_MAPPING_DROP = 2,     /* action: drop */
};

/* Matches a raw StatsD name (n bytes, borrowed for the call) of a line of
 * type t against m: globs first, then regexes, each in file order (with
 * glob_disable_ordering the most specific glob wins). Fills *out with
 * strings built in buf (cap bytes, the caller's). Returns one of the
 * AM_MAPPING_* values, or -ENOSPC when the result does not fit in buf.
 * Allocates nothing. */
int am_mapping_match(const am_mapping_t *m, const char *name, size_t n, am_type_t t, char *buf,
                     size_t cap, am_mapping_result_t *out);

/* Parses a Go duration ("10m", "1h30m", "500ms", "0") into nanoseconds
 * (s: n bytes, borrowed). 0 or -EINVAL. */
int am_mapping_parse_duration(const char *s, size_t n, uint64_t *ns)
    __attribute__((warn_unused_result));
