/* gzip: response bodies compressed with zlib (gzip wrapper, level 1), in one
 * call or a slice at a time, so that a large scrape body can be compressed
 * between loop turns. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <zlib.h>

#include "buf.h"

typedef struct am_gzip {
    z_stream zs;
    am_buf_t *out; /* borrowed: the compressed bytes are appended here */
    bool ready;    /* deflateInit2 succeeded: am_gzip_end must run deflateEnd */
} am_gzip_t;

/* Starts a stream into out, reserving room for about total_len input bytes
 * (more is reserved when needed). false when zlib or memory failed (then
 * am_gzip_end is still safe). */
bool am_gzip_begin(am_gzip_t *g, size_t total_len, am_buf_t *out);
/* Compresses in[0, n); last ends the stream. false when zlib or memory
 * failed: the output is then unusable. */
bool am_gzip_feed(am_gzip_t *g, const void *in, size_t n, bool last);
void am_gzip_end(am_gzip_t *g);
