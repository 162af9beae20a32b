/* buf: a growable byte buffer for everything we write out (exposition,
 * /health JSON, HTTP responses, emitter datagrams).
 *
 * Appends never truncate silently: when growth fails (or would pass the
 * buffer's limit) the buffer is marked failed, later appends are no-ops and
 * the caller checks am_buf_failed() once at the end. That keeps the hot
 * rendering loops free of per-call error branches.
 *
 * Who calls: every module that writes output, from any thread: a buffer
 * belongs to one thread at a time. The am_buf_t itself is caller-allocated
 * (stack or struct); the buffer owns data. Appends copy their input (p, s,
 * fmt's arguments are borrowed for the call). */
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct am_buf {
    char *data; /* owned (malloc): freed by am_buf_free, handed over by am_buf_steal;
                   NUL-terminated while !failed (for debugging only) */
    size_t len;
    size_t cap;
    size_t limit; /* 0 = unlimited; growth past it marks the buffer failed */
    bool failed;
} am_buf_t;

/* An empty buffer: nothing allocated until the first append. */
void am_buf_init(am_buf_t *b, size_t limit);
/* Frees data (not b) and leaves b empty and usable; safe twice. */
void am_buf_free(am_buf_t *b);
/* Keeps the allocation: a reused buffer stops allocating after warm-up. */
void am_buf_reset(am_buf_t *b);
/* am_buf_reserve's slow path: grows the allocation (or marks the buffer
 * failed). */
bool am_buf_grow(am_buf_t *b, size_t n);

/* Ensures room for n more bytes (and the trailing NUL); false (and failed)
 * when it cannot. Inline with the appends below: a scrape calls them for
 * every label of every series. */
static inline bool am_buf_reserve(am_buf_t *b, size_t n)
{
    if (!b->failed && b->cap - b->len > n)
        return true;
    return am_buf_grow(b, n);
}

static inline void am_buf_append(am_buf_t *b, const void *p, size_t n)
{
    if (!am_buf_reserve(b, n))
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static inline void am_buf_putc(am_buf_t *b, char c)
{
    if (!am_buf_reserve(b, 1))
        return;
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void am_buf_puts(am_buf_t *b, const char *s);
void am_buf_printf(am_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void am_buf_vprintf(am_buf_t *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* Takes ownership of the bytes away from the buffer (which becomes empty):
 * the caller owns the result (free(); NULL when nothing was allocated) and
 * *len (when len is not NULL) gets their length. */
char *am_buf_steal(am_buf_t *b, size_t *len);

static inline bool am_buf_failed(const am_buf_t *b)
{
    return b->failed;
}
