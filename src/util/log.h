/* log: one logfmt line per event on stderr, with time and level.
 * The level is the only mutable global of the daemon.
 *
 * Who calls: every module, from any thread: one write(2)-sized fwrite per
 * line keeps concurrent lines whole. am_log_threshold is set by cli.c
 * before the threads start and by a SIGHUP reload on the main thread
 * (the workers paused). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef enum am_log_level {
    AM_LOG_DEBUG = 0,
    AM_LOG_INFO = 1,
    AM_LOG_WARN = 2,
    AM_LOG_ERROR = 3,
} am_log_level_t;

extern am_log_level_t am_log_threshold;

/* Parses debug/info/warn/warning/error in any case (s borrowed for the
 * call; NULL allowed). The level (>= 0), or -EINVAL when unknown. */
int am_log_level_parse(const char *s) __attribute__((warn_unused_result));
/* "debug", "info", "warn", "error" ("?" out of range): static strings. */
const char *am_log_level_name(am_log_level_t level);

static inline bool am_log_enabled(am_log_level_t level)
{
    return level >= am_log_threshold;
}

/* Writes one line: "time=... level=... " and fmt's text, cut at 2 KiB
 * (still one line). fmt and its arguments are borrowed for the call. */
void am_log_write(am_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Escapes s (borrowed for the call; NULL reads as "") for the inside of a
 * quoted logfmt value, error="...": backslash and double quote get a
 * backslash, newline, carriage return and tab become \n, \r and \t, other
 * control bytes \xHH; the rest is copied as is. Written into out (size
 * bytes, the caller's, size >= 1), always NUL-terminated; a value that does
 * not fit is cut before an escape, never inside one. Returns out, so that
 * a call can be an am_log argument:
 *     char e[512];
 *     am_log(AM_LOG_ERROR, "event=x error=\"%s\"", am_log_escape(e, sizeof(e), err)); */
const char *am_log_escape(char *out, size_t size, const char *s);

/* Checks the level before any argument is formatted. */
#define am_log(level, ...)                                                                         \
    do {                                                                                           \
        if (am_log_enabled(level))                                                                 \
            am_log_write(level, __VA_ARGS__);                                                      \
    } while (0)
