#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

am_log_level_t am_log_threshold = AM_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int am_log_level_parse(const char *s)
{
    if (!s)
        return -EINVAL;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return AM_LOG_WARN;
    return -EINVAL;
}

const char *am_log_level_name(am_log_level_t level)
{
    return (unsigned)level < 4 ? level_names[level] : "?";
}

void am_log_write(am_log_level_t level, const char *fmt, ...)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[2048];
    int n = snprintf(line, sizeof(line), "time=%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), am_log_level_name(level));
    if (n < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* truncated: still one line */
    line[len++] = '\n';
    /* One write per line so concurrent writers never interleave mid-line. */
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}
