#include "linecache.h"

#include <string.h>

void am_linecache_init(am_linecache_t *c, size_t max_entries)
{
    memset(c, 0, sizeof(*c));
    am_table_init(&c->table, sizeof(am_linecache_entry_t), 75, NULL);
    c->max_entries = max_entries;
}

void am_linecache_free(am_linecache_t *c)
{
    am_table_free(&c->table);
}

void am_linecache_clear(am_linecache_t *c)
{
    am_table_clear(&c->table);
}

void am_linecache_insert(am_linecache_t *c, const uint64_t h[2], void *family, void *series)
{
    am_linecache_entry_t *e = am_linecache_find(c, h);
    if (!e) {
        if (c->table.n >= c->max_entries)
            am_linecache_clear(c); /* churn: start over rather than fill with dead keys */
        /* The first insert sizes the cache for a typical sender population. */
        if (!c->table.cap && am_table_reserve(&c->table, 768) != 0)
            return;
        e = am_table_add(&c->table, h[0]);
        if (!e)
            return;
    }
    e->h[1] = h[1];
    e->family = family;
    e->series = series;
}
