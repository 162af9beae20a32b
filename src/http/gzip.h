/* gzip: response bodies compressed with zlib (gzip wrapper, level 1), a
 * slice at a time, so that a large scrape body can be compressed between
 * loop turns (or all at once: one feed with last set).
 *
 * Who calls: scrape.c, on the loop that renders the scrape. No shared
 * state: one am_gzip_t per stream, used by one thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <zlib.h>

#include "buf.h"

/* One stream; caller-allocated (on the stack or in the scrape), begun with
 * am_gzip_begin and always ended with am_gzip_end. */
typedef struct am_gzip {
    z_stream zs;   /* zlib's state, owned (deflateEnd in am_gzip_end) */
    am_buf_t *out; /* borrowed until am_gzip_end: the compressed bytes are appended here */
    bool ready;    /* deflateInit2 succeeded: am_gzip_end must run deflateEnd */
} am_gzip_t;

/* Starts a stream into out (borrowed until am_gzip_end), reserving room for
 * about total_len input bytes (more is reserved when needed). 0, or
 * -ENOMEM (zlib's state, or room in out: its memory or its limit) or
 * -EINVAL (zlib refused the parameters); am_gzip_end is safe after either. */
int am_gzip_begin(am_gzip_t *g, size_t total_len, am_buf_t *out)
    __attribute__((warn_unused_result));

/* Compresses in[0, n) (borrowed for the call); last ends the stream. 0, or
 * -ENOMEM (out could not grow) or -EIO (zlib failed, or a stream that did
 * not begin): the output is then unusable. */
int am_gzip_feed(am_gzip_t *g, const void *in, size_t n, bool last)
    __attribute__((warn_unused_result));

/* Frees zlib's state (out keeps what was written). Safe twice. */
void am_gzip_end(am_gzip_t *g);
