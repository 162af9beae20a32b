#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
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

const char *am_log_escape(char *out, size_t size, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        char esc[4];
        size_t n = 0;
        if (ch == '\\' || ch == '"') {
            esc[n++] = '\\';
            esc[n++] = (char)ch;
        } else if (ch == '\n' || ch == '\r' || ch == '\t') {
            esc[n++] = '\\';
            esc[n++] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
        } else if (ch < 0x20 || ch == 0x7f) {
            esc[n++] = '\\';
            esc[n++] = 'x';
            esc[n++] = hex[ch >> 4];
            esc[n++] = hex[ch & 15];
        } else {
            esc[n++] = (char)ch;
        }
        if (o + n >= size)
            break;
        memcpy(out + o, esc, n);
        o += n;
    }
    out[o] = '\0';
    return out;
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
