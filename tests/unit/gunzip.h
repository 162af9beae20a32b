/* Inflates a gzip stream in a test (test-http.c, test-scrape.c). */
#pragma once

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Into a fresh 1 MiB buffer (owned by the caller); the stream must end. */
static inline char *gunzip(const void *in, size_t len, size_t *out_len)
{
    size_t cap = 1 << 20;
    char *out = malloc(cap);
    ck_assert_ptr_nonnull(out);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    ck_assert_int_eq(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    ck_assert_int_eq(inflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    inflateEnd(&zs);
    return out;
}
