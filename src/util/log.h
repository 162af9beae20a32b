/* log: one logfmt line per event on stderr, with time and level.
 * The level is the only mutable global of the daemon. */
#pragma once

#include <stdbool.h>

typedef enum am_log_level {
    AM_LOG_DEBUG = 0,
    AM_LOG_INFO = 1,
    AM_LOG_WARN = 2,
    AM_LOG_ERROR = 3,
} am_log_level_t;

extern am_log_level_t am_log_threshold;

/* Parses debug/info/warn/warning/error in any case; -1 if unknown. */
int am_log_level_parse(const char *s);
const char *am_log_level_name(am_log_level_t level);

static inline bool am_log_enabled(am_log_level_t level)
{
    return level >= am_log_threshold;
}

void am_log_write(am_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Checks the level before any argument is formatted. */
#define am_log(level, ...)                                                                         \
    do {                                                                                           \
        if (am_log_enabled(level))                                                                 \
            am_log_write(level, __VA_ARGS__);                                                      \
    } while (0)
