#include "buf.h"

#include <assert.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void am_buf_init(am_buf_t *b, size_t limit)
{
    memset(b, 0, sizeof(*b));
    b->limit = limit;
}

void am_buf_free(am_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

void am_buf_reset(am_buf_t *b)
{
    b->len = 0;
    b->failed = false;
    if (b->data)
        b->data[0] = '\0';
}

bool am_buf_grow(am_buf_t *b, size_t n)
{
    /* Length within capacity, with room for the NUL once allocated. */
    assert(b->cap == 0 ? b->len == 0 && !b->data : b->len < b->cap);
    if (b->failed)
        return false;
    /* +1 keeps room for the trailing NUL. */
    if (b->cap - b->len > n)
        return true;
    if (n > SIZE_MAX / 2 - b->len - 1)
        goto fail;
    size_t need = b->len + n + 1;
    if (b->limit && need > b->limit + 1)
        goto fail;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    if (b->limit && cap > b->limit + 1)
        cap = b->limit + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        goto fail;
    b->data = p;
    b->cap = cap;
    return true;
fail:
    b->failed = true;
    return false;
}

void am_buf_puts(am_buf_t *b, const char *s)
{
    am_buf_append(b, s, strlen(s));
}

void am_buf_vprintf(am_buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, cp);
    va_end(cp);
    if (n < 0) {
        b->failed = true;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        am_buf_append(b, small, (size_t)n);
        return;
    }
    if (!am_buf_reserve(b, (size_t)n))
        return;
    int m = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (m != n) {
        b->failed = true;
        return;
    }
    b->len += (size_t)n;
}

void am_buf_printf(am_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    am_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

char *am_buf_steal(am_buf_t *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}
