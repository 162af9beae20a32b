#include "table.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#define MIN_CAP 8

void am_table_init(am_table_t *t, size_t esize, unsigned max_load_pct, am_table_hash_fn hash_of)
{
    assert(esize >= 8 && esize % 8 == 0);
    assert(max_load_pct >= 1 && max_load_pct <= 90);
    *t = (am_table_t){.esize = esize, .max_load_pct = max_load_pct, .hash_of = hash_of};
}

void am_table_free(am_table_t *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = 0;
    t->n = 0;
}

void am_table_clear(am_table_t *t)
{
    if (t->slots)
        memset(t->slots, 0, t->cap * t->esize);
    t->n = 0;
}

static uint64_t entry_hash(const am_table_t *t, const void *e)
{
    uint64_t h;
    if (t->hash_of)
        return am_table_hash(t->hash_of(e));
    memcpy(&h, e, sizeof(h));
    return h;
}

static bool fits(const am_table_t *t, size_t n, size_t cap)
{
    return n <= cap / 100 * t->max_load_pct + cap % 100 * t->max_load_pct / 100;
}

/* The first free slot of the run starting at h's home. */
static void *free_slot(const am_table_t *t, uint64_t h)
{
    size_t mask = t->cap - 1;
    size_t i = h & mask;
    while (am_table_occupied(t, i))
        i = (i + 1) & mask;
    return am_table_slot(t, i);
}

int am_table_reserve(am_table_t *t, size_t n)
{
    size_t cap = t->cap ? t->cap : MIN_CAP;
    while (!fits(t, n, cap)) {
        if (cap > SIZE_MAX / 2 / t->esize)
            return -ENOMEM;
        cap *= 2;
    }
    if (cap == t->cap)
        return 0;
    am_table_t grown = *t;
    grown.slots = calloc(cap, t->esize);
    if (!grown.slots)
        return -ENOMEM;
    grown.cap = cap;
    for (size_t i = 0; i < t->cap; i++) {
        const void *e = am_table_occupied(t, i);
        if (e)
            memcpy(free_slot(&grown, entry_hash(t, e)), e, t->esize);
    }
    free(t->slots);
    *t = grown;
    return 0;
}

void *am_table_add(am_table_t *t, uint64_t h)
{
    if (am_table_reserve(t, t->n + 1) != 0)
        return NULL;
    h = am_table_hash(h);
    void *e = free_slot(t, h);
    if (!t->hash_of)
        memcpy(e, &h, sizeof(h));
    t->n++;
    return e;
}

void am_table_remove(am_table_t *t, void *e)
{
    size_t mask = t->cap - 1;
    size_t gap = (size_t)((unsigned char *)e - t->slots) / t->esize;
    assert(gap < t->cap && am_table_occupied(t, gap));
    /* Move later entries of the run back into the gap unless their home
     * lies cyclically in (gap, j]: then their probe starts after the gap. */
    for (size_t j = (gap + 1) & mask; am_table_occupied(t, j); j = (j + 1) & mask) {
        size_t home = entry_hash(t, am_table_slot(t, j)) & mask;
        bool home_after_gap = gap <= j ? (home > gap && home <= j) : (home > gap || home <= j);
        if (!home_after_gap) {
            memcpy(am_table_slot(t, gap), am_table_slot(t, j), t->esize);
            gap = j;
        }
    }
    memset(am_table_slot(t, gap), 0, t->esize);
    t->n--;
}

void *am_table_each(const am_table_t *t, size_t *i)
{
    while (*i < t->cap) {
        void *e = am_table_occupied(t, (*i)++);
        if (e)
            return e;
    }
    return NULL;
}
