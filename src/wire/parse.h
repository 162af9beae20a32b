/* parse: the StatsD / DogStatsD line grammar (proto/README.md).
 *
 * am_parse_line() reads one line in place: it fills slices that point into
 * the caller's buffer, never writes the buffer, never reads past n, never
 * allocates and never logs. Shared by the daemon and alice-emit so that both
 * agree on what a valid line is. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reasons.h"

#define AM_MAX_NAME_LEN        200 /* metric name bytes, before mapping */
#define AM_MAX_TAGS            32  /* tags per line */
#define AM_MAX_LABEL_NAME_LEN  100
#define AM_MAX_LABEL_VALUE_LEN 1024
#define AM_MAX_VALUES          128 /* DogStatsD packed values per line */
#define AM_MAX_NUMBER_LEN      63  /* characters of one number */
#define AM_MAX_SET_VALUE_LEN   1024

typedef enum am_type {
    AM_TYPE_COUNTER,      /* c */
    AM_TYPE_GAUGE,        /* g */
    AM_TYPE_TIMER,        /* ms: milliseconds, observed as seconds */
    AM_TYPE_HISTOGRAM,    /* h */
    AM_TYPE_DISTRIBUTION, /* d */
    AM_TYPE_SET,          /* s */
} am_type_t;

typedef struct am_slice {
    const char *p; /* borrowed from the parsed line */
    size_t n;
} am_slice_t;

typedef struct am_sample {
    am_slice_t name; /* raw: '.' and '-' not yet mapped (am_map_name does it) */
    am_type_t type;
    double rate;    /* 1.0 unless |@rate was given */
    size_t nvalues; /* >= 1 except for sets */
    double values[AM_MAX_VALUES];
    bool delta[AM_MAX_VALUES]; /* gauge value had a leading sign */
    am_slice_t set_value;      /* type s: the member, as sent */
    size_t ntags;
    am_slice_t tag_key[AM_MAX_TAGS];   /* raw: mapping as for names */
    am_slice_t tag_value[AM_MAX_TAGS]; /* valid UTF-8, possibly empty */
} am_sample_t;

/* Tag dialects: where a line's tags are written. */
enum {
    AM_DIALECT_DOGSTATSD = 1, /* name:1|c|#k:v,k2:v2 */
    AM_DIALECT_INFLUXDB = 2,  /* name,k=v,k2=v2:1|c */
    AM_DIALECT_LIBRATO = 4,   /* name#k=v,k2=v2:1|c */
    AM_DIALECT_SIGNALFX = 8,  /* name[k=v,k2=v2]:1|c */
    AM_DIALECTS_ALL = 15,
};

/* Parses one line (no '\n'; a trailing '\r' is allowed and ignored) with
 * the tag dialects in the mask dialects (a mark of a dialect that is off is
 * just a character the name may not hold: bad_name; DogStatsD tags off:
 * bad_label). Returns AM_OK and fills *out; AM_EVENT or AM_SERVICE_CHECK
 * for a DogStatsD event or service check (accepted, not a metric: *out
 * untouched); or the reject reason of the first fault met reading left to
 * right (*out is garbage then). */
am_reason_t am_parse_line_in(const char *p, size_t n, unsigned dialects, am_sample_t *out);
/* am_parse_line_in with every dialect. */
am_reason_t am_parse_line(const char *p, size_t n, am_sample_t *out);

/* The hot path's structural read of a line: where the name, values, type
 * and tags are, and the sample rate. It checks no name or tag characters,
 * so a caller may only trust a line whose name, type and tags bytes equal
 * those of a line that passed am_parse_line (the line cache). Returns false
 * for anything but the plain shapes (no ':' or '|', a second @rate or #tags
 * section, a bad rate, a NUL in an ignored extension, an unknown type):
 * those take the full parse, which finds the reason. */
typedef struct am_skeleton {
    am_slice_t name;
    am_slice_t values; /* between ':' and the first '|' */
    am_slice_t type;   /* the type code as sent */
    am_slice_t tags;   /* after "|#", or empty */
    am_slice_t rest;   /* from the type to the end of the line */
    bool plain;        /* rest is just "type" or "type|#tags": one piece to hash */
    am_type_t type_id;
    double rate;
} am_skeleton_t;

bool am_parse_skeleton(const char *p, size_t n, am_skeleton_t *out);

/* The datagram fast scan. am_index_datagram marks every '\n', '|' and ':'
 * of a datagram of at most AM_DGRAM_INDEX_MAX bytes in bit masks (SSE2: 16
 * bytes per step); am_scan_line then takes one line from offset pos with a
 * few bit scans instead of byte loops. */
#define AM_DGRAM_INDEX_MAX 65536
typedef struct am_dgram_index {
    uint64_t nl[AM_DGRAM_INDEX_MAX / 64 + 1]; /* bit n is set: a sentinel line end */
    uint64_t pipe[AM_DGRAM_INDEX_MAX / 64 + 1];
    uint64_t colon[AM_DGRAM_INDEX_MAX / 64 + 1];
} am_dgram_index_t;

void am_index_datagram(am_dgram_index_t *ix, const char *p, size_t n);
/* am_index_datagram uses AVX2 where the CPU has it (on, the default) or
 * SSE2; returns whether AVX2 is now in use. For tests and benchmarks: both
 * give the same masks. */
bool am_index_use_avx2(bool on);
/* The same masks one byte at a time: the definition, for tests. */
void am_index_datagram_bytewise(am_dgram_index_t *ix, const char *p, size_t n);

/* Sets *line_end to the offset of the line's '\n' (or n). For the usual
 * layouts, name:values|type or name:values|type|#tags (no sample rate, no
 * other extension, no '\r'), fills out exactly as am_parse_skeleton would on
 * the line and returns true; anything else returns false and the caller
 * asks am_parse_skeleton. */
bool am_scan_line(const am_dgram_index_t *ix, const char *dg, size_t n, size_t pos,
                  am_skeleton_t *out, size_t *line_end);

/* One line of an indexed datagram, as am_next_line finds it. */
typedef struct am_dgram_line {
    const char *p; /* borrowed from the datagram; NULL: no line left */
    size_t n;
    bool has_skeleton; /* sk holds what am_parse_skeleton gives the line */
    am_skeleton_t sk;
} am_dgram_line_t;

/* The first non-empty line at or after offset pos of a datagram of n bytes
 * indexed by am_index_datagram (ix), with its skeleton when it has one (the
 * usual layouts from the index, others from am_parse_skeleton). Returns
 * where the next line starts (n or past it when none is left); line->p is
 * NULL when there is no line left. Inline: it runs for every line, in the
 * registry's hot loop. */
static inline size_t am_next_line(const am_dgram_index_t *ix, const char *p, size_t n,
                                  size_t pos, am_dgram_line_t *line)
{
    while (pos < n) {
        size_t lend;
        if (am_scan_line(ix, p, n, pos, &line->sk, &lend)) {
            line->has_skeleton = true;
        } else {
            size_t len = lend - pos;
            if (len == 0 || (len == 1 && p[pos] == '\r')) { /* empty lines are fine */
                pos = lend + 1;
                continue;
            }
            line->has_skeleton = am_parse_skeleton(p + pos, len, &line->sk);
        }
        line->p = p + pos;
        line->n = lend - pos;
        return lend + 1;
    }
    line->p = NULL;
    return n;
}


/* Calls fn(ctx, line, len) for every non-empty line of a datagram (a lone
 * "\r" is empty too). The reference split: am_registry_ingest_datagram
 * finds the same lines its own way, and the tests and the fuzz harness
 * hold it to this. */
typedef void (*am_line_fn)(void *ctx, const char *line, size_t len); /* line: for the call */
void am_parse_datagram(const char *p, size_t n, am_line_fn fn, void *ctx);

/* Maps a raw name to its Prometheus form: '.' and '-' become '_', a leading
 * digit gets a '_' prefix. Writes at most cap bytes to out (not
 * NUL-terminated) and returns the length, or 0 if it does not fit. The input
 * must have passed am_parse_line (only [a-zA-Z0-9_.-]). */
size_t am_map_name(const char *raw, size_t n, char *out, size_t cap);

/* True for [a-zA-Z_][a-zA-Z0-9_]*, not starting with "__". */
bool am_valid_label_name(const char *p, size_t n);
/* True for [a-zA-Z_][a-zA-Z0-9_]*. */
bool am_valid_metric_name(const char *p, size_t n);
bool am_valid_utf8(const char *p, size_t n);

/* Parses a whole decimal number ([+-]digits[.digits][e[+-]digits]); rejects
 * hex, inf, nan and anything strtod would take beyond that. */
bool am_parse_number(const char *p, size_t n, double *out);

/* "0".."999", what counters send, read without a call: true with *out set,
 * false for anything else (which am_parse_number then reads). */
static inline bool am_parse_small_count(const char *p, size_t n, unsigned *out)
{
    if (n < 1 || n > 3)
        return false;
    unsigned d0 = (unsigned)(p[0] - '0'), d1 = n > 1 ? (unsigned)(p[1] - '0') : 0,
             d2 = n > 2 ? (unsigned)(p[2] - '0') : 0;
    if (d0 > 9 || d1 > 9 || d2 > 9)
        return false;
    *out = n == 1 ? d0 : n == 2 ? d0 * 10 + d1 : d0 * 100 + d1 * 10 + d2;
    return true;
}

/* The values field of a line ("1", "0.5:2:+3": DogStatsD packs several),
 * p borrowed for the call, into out->values, out->delta (a leading sign)
 * and out->nvalues. AM_OK, or AM_REJECT_BAD_VALUE for an empty or bad
 * number or more than AM_MAX_VALUES of them. Signs are the caller's
 * business (a counter's negative value, a gauge's delta). */
am_reason_t am_parse_values(const char *p, size_t n, am_sample_t *out);

const char *am_type_code(am_type_t t); /* "c", "g", "ms", "h", "d", "s": static */
