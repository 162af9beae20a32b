/* linecache: the ingest fast path's memory. Maps the 128-bit hash of a
 * line's name, type and tags (the bytes as sent) to the family and series
 * that line fed the last time, so a repeated line skips tag validation,
 * name mapping and key building.
 *
 * Only lines that passed the full parse and apply are inserted, so a hit
 * means "these exact bytes were valid and fed this series". Entries are
 * matched by hash alone (DogStatsD keys its contexts the same way with 64
 * bits; we use 128 with a per-process seed). The cache is cleared when the
 * registry changes shape (a family defined, replaced or removed) and when it
 * is full, so it can never point at freed series. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "parse.h"
#include "table.h"

typedef struct am_linecache_entry {
    uint64_t h[2]; /* h[0] as am_table_hash stores it */
    void *family;  /* borrowed: valid while the registry generation holds */
    void *series;  /* borrowed, likewise */
} am_linecache_entry_t;

typedef struct am_linecache {
    am_table_t table;    /* of am_linecache_entry_t, at most 75% full */
    size_t max_entries;  /* reaching it clears the cache */
    uint64_t generation; /* registry generation the entries belong to */
} am_linecache_t;

void am_linecache_init(am_linecache_t *c, size_t max_entries);
void am_linecache_free(am_linecache_t *c);
void am_linecache_clear(am_linecache_t *c);

static inline am_linecache_entry_t *am_linecache_find(const am_linecache_t *c, const uint64_t h[2])
{
    uint64_t h0 = am_table_hash(h[0]);
    size_t i;
    for (am_linecache_entry_t *e = am_table_first(&c->table, h0, &i); e;
         e = am_table_next(&c->table, &i))
        if (e->h[0] == h0 && e->h[1] == h[1])
            return e;
    return NULL;
}

/* Brings the slot a lookup of h starts at into the cache. */
static inline void am_linecache_prefetch(const am_linecache_t *c, const uint64_t h[2])
{
    am_table_prefetch(&c->table, h[0]);
}

/* The cache key of a line: its name, type and tags as sent (sk). Each
 * piece's length is mixed in. The usual "type|#tags" layout is one
 * contiguous piece; other layouts hash type and tags apart, from another
 * starting point, so the two never meet. */
static inline void am_linecache_key(const am_skeleton_t *sk, uint64_t h[2])
{
    if (sk->plain) {
        h[0] = 0x243f6a8885a308d3ULL;
        h[1] = 0x13198a2e03707344ULL;
        am_hash2_pair(h, sk->name.p, sk->name.n, sk->rest.p, sk->rest.n);
    } else {
        h[0] = 0xa4093822299f31d0ULL;
        h[1] = 0x082efa98ec4e6c89ULL;
        am_hash2_more(h, sk->name.p, sk->name.n);
        am_hash2_more(h, sk->type.p, sk->type.n);
        am_hash2_more(h, sk->tags.p, sk->tags.n);
    }
}

/* Remembers h -> (family, series). Allocation failure just means no
 * caching; nothing else depends on it. */
void am_linecache_insert(am_linecache_t *c, const uint64_t h[2], void *family, void *series);
