/* famdir: the family directory the workers' registries share (registry.h
 * "several ingest workers"), and the series budgets counted across them. */
#include "registry-internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

static uint64_t dir_entry_hash(const void *entry)
{
    return (*(famdir_entry_t *const *)entry)->name_hash;
}

am_famdir_t *am_famdir_new(void)
{
    am_famdir_t *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    am_table_init(&d->live, sizeof(famdir_entry_t *), 75, dir_entry_hash);
    if (pthread_mutex_init(&d->mu, NULL) != 0) {
        free(d);
        return NULL;
    }
    if (am__dir_live_init(d) != 0) {
        pthread_mutex_destroy(&d->mu);
        free(d);
        return NULL;
    }
    atomic_init(&d->nseries, 0);
    atomic_init(&d->nset_members, 0);
    atomic_init(&d->nbytes, 0);
    return d;
}

void am_famdir_free(am_famdir_t *d)
{
    if (!d)
        return;
    am__dir_live_free(d); /* before the entries: it frees their counts */
    for (famdir_entry_t *e = d->all, *next; e; e = next) {
        next = e->next_all;
        am_family_def_clear(&e->def);
        free(e);
    }
    am_table_free(&d->live);
    am_namedex_free(&d->names);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

size_t am_famdir_family_count(am_famdir_t *d)
{
    pthread_mutex_lock(&d->mu);
    size_t n = d->live.n;
    pthread_mutex_unlock(&d->mu);
    return n;
}

size_t am_famdir_series_count(const am_famdir_t *d)
{
    return atomic_load_explicit(&d->nseries, memory_order_relaxed);
}

/* The slot of the live entry of this name, or NULL. Caller holds d->mu. */
static famdir_entry_t **dir_slot(const am_famdir_t *d, const char *name, size_t len)
{
    uint64_t h = am_hash(name, len);
    size_t i;
    for (famdir_entry_t **s = am_table_first(&d->live, h, &i); s; s = am_table_next(&d->live, &i)) {
        const famdir_entry_t *e = *s;
        if (e->name_hash == h && strncmp(e->def.name, name, len) == 0 && e->def.name[len] == '\0')
            return s;
    }
    return NULL;
}

/* Caller holds d->mu. */
famdir_entry_t *am__dir_find(const am_famdir_t *d, const char *name, size_t len)
{
    famdir_entry_t **s = dir_slot(d, name, len);
    return s ? *s : NULL;
}

/* Adds a copy of def as a live entry; NULL when out of memory. Caller holds
 * d->mu. */
famdir_entry_t *am__dir_add(am_famdir_t *d, const am_family_def_t *def, bool catalogued)
{
    if (am_table_reserve(&d->live, d->live.n + 1) != 0 || am_namedex_reserve(&d->names, 1) != 0)
        return NULL;
    famdir_entry_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    if (am_family_def_copy(&e->def, def) != 0) {
        free(e);
        return NULL;
    }
    (void)am_namedex_add(&d->names, &e->def); /* room reserved: cannot fail */
    e->catalogued = catalogued;
    e->name_hash = am_hash(e->def.name, strlen(e->def.name));
    atomic_init(&e->nseries, 0);
    e->next_all = d->all;
    d->all = e;
    *(famdir_entry_t **)am_table_add(&d->live, e->name_hash) = e; /* room reserved */
    if (!catalogued)
        d->nauto++;
    return e;
}

/* Takes e out of the table (not out of memory: workers may still point at
 * it). Caller holds d->mu. */
static void dir_remove(am_famdir_t *d, famdir_entry_t *e)
{
    e->removed = true;
    if (!e->catalogued)
        d->nauto--;
    am_namedex_remove(&d->names, &e->def);
    famdir_entry_t **slot = dir_slot(d, e->def.name, strlen(e->def.name));
    assert(slot && *slot == e);
    am_table_remove(&d->live, slot);
}

/* The directory side of am_registry_define: the same replacement rules.
 * Idempotent, so every worker's registry may apply the same def in turn.
 * Caller holds d->mu. NULL when out of memory. */
famdir_entry_t *am__dir_define(am_famdir_t *d, const am_family_def_t *def)
{
    famdir_entry_t *e = am__dir_find(d, def->name, strlen(def->name));
    am_family_def_t copy;
    if (am_namedex_reserve(&d->names, 1) != 0 || (e && am_family_def_copy(&copy, def) != 0))
        return NULL;
    const am_family_def_t *other;
    while ((other = am_namedex_clash(&d->names, def, e ? &e->def : NULL)))
        dir_remove(d, (famdir_entry_t *)((const char *)other - offsetof(famdir_entry_t, def)));
    if (!e)
        return am__dir_add(d, def, true);
    if (!e->catalogued) {
        e->catalogued = true;
        d->nauto--;
    }
    am_namedex_remove(&d->names, &e->def); /* its names may change */
    am_family_def_clear(&e->def);
    e->def = copy;
    (void)am_namedex_add(&d->names, &e->def); /* room reserved: cannot fail */
    return e;
}

/* Takes one series from the budgets the workers share: the family's (e; NULL
 * for a family about to be created) and the total. Nothing is taken when
 * either is spent. */
bool am__shared_take(am_famdir_t *d, famdir_entry_t *e, size_t limit, size_t total)
{
    if (e && atomic_fetch_add_explicit(&e->nseries, 1, memory_order_relaxed) >= limit) {
        atomic_fetch_sub_explicit(&e->nseries, 1, memory_order_relaxed);
        return false;
    }
    if (!e && limit == 0)
        return false;
    if (atomic_fetch_add_explicit(&d->nseries, 1, memory_order_relaxed) >= total) {
        atomic_fetch_sub_explicit(&d->nseries, 1, memory_order_relaxed);
        if (e)
            atomic_fetch_sub_explicit(&e->nseries, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

void am__shared_give(am_famdir_t *d, famdir_entry_t *e, size_t n)
{
    if (e)
        atomic_fetch_sub_explicit(&e->nseries, n, memory_order_relaxed);
    atomic_fetch_sub_explicit(&d->nseries, n, memory_order_relaxed);
}

