/* reasons: why a StatsD line was dropped. One table generates the enum, the
 * `reason` label of alice_metricsd_samples_rejected_total and the message
 * that debug logs and alice-emit print. proto/README.md documents each. */
#pragma once

/* clang-format off */
#define AM_REASON_MAP(XX)                                                                          \
    XX(SYNTAX, "syntax", "malformed line: no ':' or '|', empty name, or NUL byte")               \
    XX(BAD_NAME, "bad_name", "metric name has a character outside [a-zA-Z0-9_.-] or a reserved prefix") \
    XX(BAD_VALUE, "bad_value", "value is not a finite decimal number")                            \
    XX(BAD_TYPE, "bad_type", "type is not one of c g ms h d s")                                   \
    XX(BAD_SAMPLE_RATE, "bad_sample_rate", "sample rate is not a number in (0,1]")                \
    XX(BAD_LABEL, "bad_label", "bad label name, duplicate label, too long, or value not UTF-8")  \
    XX(UNDECLARED_LABEL, "undeclared_label", "label not declared by the family")                  \
    XX(TYPE_CONFLICT, "type_conflict", "line type does not fit the family's type")                \
    XX(NEGATIVE_COUNTER, "negative_counter", "counter increment is negative")                     \
    XX(CARDINALITY, "cardinality", "series, family or set limit reached")                         \
    XX(UNKNOWN_FAMILY, "unknown_family", "unknown family and auto-creation is off")
/* clang-format on */

typedef enum am_reason {
    AM_OK = 0,
#define XX(id, label, msg) AM_REJECT_##id,
    AM_REASON_MAP(XX)
#undef XX
        AM_REASON_COUNT
} am_reason_t;

/* Outcomes past the rejects: lines accepted that are not metrics (DogStatsD
 * events and service checks), counted apart. */
#define AM_EVENT         ((am_reason_t)(AM_REASON_COUNT + 1))
#define AM_SERVICE_CHECK ((am_reason_t)(AM_REASON_COUNT + 2))
/* A line a mapping's `action: drop` matched (mapping.h): counted apart. */
#define AM_MAPPING_DROPPED ((am_reason_t)(AM_REASON_COUNT + 3))
#define AM_IS_REJECT(r)  ((r) > AM_OK && (r) < AM_REASON_COUNT)

/* The `reason` label value ("syntax", ...); "ok" for AM_OK. Static. */
const char *am_reason_label(am_reason_t r);
/* A human sentence for logs and alice-emit. Static. */
const char *am_reason_message(am_reason_t r);
