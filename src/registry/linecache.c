#include "linecache.h"

#include <stdlib.h>
#include <string.h>

void am_linecache_init(am_linecache_t *c, size_t max_entries)
{
    memset(c, 0, sizeof(*c));
    c->max_entries = max_entries;
}

void am_linecache_free(am_linecache_t *c)
{
    free(c->slots);
    memset(c, 0, sizeof(*c));
}

void am_linecache_clear(am_linecache_t *c)
{
    if (c->slots)
        memset(c->slots, 0, c->cap * sizeof(*c->slots));
    c->n = 0;
}

static void put(am_linecache_entry_t *slots, size_t cap, const am_linecache_entry_t *e)
{
    size_t mask = cap - 1;
    size_t i = e->h[0] & mask;
    while (slots[i].h[0] || slots[i].h[1])
        i = (i + 1) & mask;
    slots[i] = *e;
}

void am_linecache_insert(am_linecache_t *c, const uint64_t h[2], void *family, void *series)
{
    if (!h[0] && !h[1])
        return; /* the free marker; odds 2^-128 */
    if (c->n >= c->max_entries)
        am_linecache_clear(c); /* churn: start over rather than fill with dead keys */
    if ((c->n + 1) * 4 > c->cap * 3) {
        size_t ncap = c->cap ? c->cap * 2 : 1024;
        am_linecache_entry_t *ns = calloc(ncap, sizeof(*ns));
        if (!ns)
            return;
        for (size_t i = 0; i < c->cap; i++)
            if (c->slots[i].h[0] || c->slots[i].h[1])
                put(ns, ncap, &c->slots[i]);
        free(c->slots);
        c->slots = ns;
        c->cap = ncap;
    }
    am_linecache_entry_t e = {{h[0], h[1]}, family, series};
    am_linecache_entry_t *old = am_linecache_find(c, h);
    if (old) {
        *old = e;
        return;
    }
    put(c->slots, c->cap, &e);
    c->n++;
}
