/* line: builds and checks StatsD lines for alice-emit and libalice.
 *
 * The grammar has one home, the daemon's parser (src/wire/parse.c): a line built
 * here is accepted for sending only if am_parse_line() accepts it. What the
 * parser cannot see is a part that changes the line's structure (a ':' in a
 * name starts the values, a ',' in a label value starts another tag), so
 * am_line_write() refuses those characters before anything is parsed.
 * No allocation, no output, no abort: this links into the client library. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "alice/metrics.h"
#include "parse.h"

#define AM_LINE_NUM_MAX 32 /* am_line_double output, with its NUL */

/* What a part of a line may not hold (the wire format reserves them). */
#define AM_LINE_NAME_RESERVED ":|\n\r"
#define AM_LINE_KEY_RESERVED ":,|#\n\r"
#define AM_LINE_VALUE_RESERVED ",|\n\r"
#define AM_LINE_MEMBER_RESERVED "|\n\r"

/* One line: name:value|type[|#k:v,...]. Every pointer is borrowed for the
 * call that receives the struct; strings are NUL-terminated. */
typedef struct am_line {
    const char *name;
    const char *value; /* number text (see am_line_double) or set member */
    const char *type;  /* "c", "g", "ms", "h", "d", "s" */
    const alice_label *labels;
    size_t nlabels;
} am_line_t;

/* Where am_line_write found a reserved character. */
typedef enum am_line_part {
    AM_LINE_PART_NONE,
    AM_LINE_PART_NAME,
    AM_LINE_PART_VALUE,
    AM_LINE_PART_LABEL_KEY,   /* labels[*bad_index].key */
    AM_LINE_PART_LABEL_VALUE, /* labels[*bad_index].value */
} am_line_part_t;

typedef struct am_line_fault {
    am_line_part_t part;
    size_t index; /* label index for the LABEL parts */
} am_line_fault_t;

/* Writes l into out[0..cap) (no '\n', no NUL). Returns 0 and sets *len; a
 * positive am_reason_t (AM_REJECT_BAD_NAME, _BAD_VALUE, _BAD_LABEL) when a
 * part is empty where it may not be or holds a reserved character, with
 * *fault saying which (fault may be NULL); -ENOSPC when it does not fit.
 * Does not run the parser: am_line_validate() does. */
int am_line_write(const am_line_t *l, char *out, size_t cap, size_t *len, am_line_fault_t *fault)
    __attribute__((warn_unused_result));

/* Runs the daemon's parser over a written line and checks that it saw
 * nlabels tags. Returns AM_OK or the parser's reason. */
am_reason_t am_line_validate(const char *line, size_t n, size_t nlabels)
    __attribute__((warn_unused_result));

/* Writes a finite v as an integer ("42", "-3"), or with 15 significant
 * digits, trailing zeros removed ("0.1", "12.345"), or as "%.17g" outside
 * [1e-5, 1e15). Every form reads back through am_parse_number: to v itself
 * for a decimal of up to 15 significant digits (what people type, what
 * timers measure), else to within 1e-14 relative. Returns the length (out
 * gets a NUL), 0 for NaN/Inf. */
size_t am_line_double(double v, char out[AM_LINE_NUM_MAX]);

/* am_line_double with an explicit sign ("+3", "-0.5", "+0"): a gauge delta. */
size_t am_line_delta(double v, char out[AM_LINE_NUM_MAX]);

/* A sentence for a fault found by am_line_write ("label value holds ',', '|', CR or LF"). */
const char *am_line_fault_message(am_line_part_t part);
