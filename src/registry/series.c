/* series: series storage (a family's series table, creation, freeing) and
 * the members of set gauges with the budget they take. */
#include "registry-internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void am__set_free(am_set_t *set)
{
    if (set) {
        am_table_free(&set->members);
        free(set);
    }
}

am_set_t *am__set_new(void)
{
    am_set_t *set = malloc(sizeof(*set));
    if (set)
        am_table_init(&set->members, sizeof(uint64_t), 75, NULL);
    return set;
}

size_t am__set_count(const am_set_t *set)
{
    return set->members.n;
}

/* Gives back n set members to the limit. */
void am__set_members_give(am_registry_t *r, size_t n)
{
    r->nset_members -= n;
    if (r->dir)
        atomic_fetch_sub_explicit(&r->dir->nset_members, n, memory_order_relaxed);
}

/* One more set member, within limits.max_set_members (counted over every
 * worker with a directory); false when the limit is reached. */
bool am__set_member_take(am_registry_t *r)
{
    if (r->dir) {
        if (atomic_fetch_add_explicit(&r->dir->nset_members, 1, memory_order_relaxed) >=
            r->limits.max_set_members) {
            atomic_fetch_sub_explicit(&r->dir->nset_members, 1, memory_order_relaxed);
            return false;
        }
    } else if (r->nset_members >= r->limits.max_set_members) {
        return false;
    }
    r->nset_members++;
    return true;
}

/* Adds member hash h (an add that finds it there is a no-op); false when
 * out of memory. */
bool am__set_insert(am_set_t *set, uint64_t h)
{
    h = am_table_hash(h);
    size_t i;
    for (uint64_t *e = am_table_first(&set->members, h, &i); e; e = am_table_next(&set->members, &i))
        if (*e == h)
            return true;
    return am_table_add(&set->members, h) != NULL;
}

bool am__set_contains(const am_set_t *set, uint64_t h)
{
    h = am_table_hash(h);
    size_t i;
    for (const uint64_t *e = am_table_first(&set->members, h, &i); e;
         e = am_table_next(&set->members, &i))
        if (*e == h)
            return true;
    return false;
}

uint64_t am__series_hash(const void *entry)
{
    return (*(am_series_t *const *)entry)->hash;
}

/* The series with this key (hash h), or NULL. */
am_series_t *am__series_find(const am_family_t *f, uint64_t h, const char *key, size_t len)
{
    size_t i;
    for (am_series_t **e = am_table_first(&f->series, h, &i); e; e = am_table_next(&f->series, &i)) {
        am_series_t *s = *e;
        if (s->hash == h && s->key_len == len && memcmp(am__series_key(f, s), key, len) == 0)
            return s;
    }
    return NULL;
}

void am__series_bytes_add(am_registry_t *r, size_t cost)
{
    r->nbytes += cost;
    if (r->dir)
        atomic_fetch_add_explicit(&r->dir->nbytes, cost, memory_order_relaxed);
}

void am__series_bytes_give(am_registry_t *r, size_t cost)
{
    assert(r->nbytes >= cost);
    r->nbytes -= cost;
    if (r->dir)
        atomic_fetch_sub_explicit(&r->dir->nbytes, cost, memory_order_relaxed);
}

bool am__series_bytes_take(am_registry_t *r, size_t cost)
{
    size_t max = r->limits.max_series_bytes;
    if (!r->dir) {
        if (r->nbytes > max || cost > max - r->nbytes)
            return false;
        r->nbytes += cost;
        return true;
    }
    /* Workers take from one budget: compare and swap, so that two racing
     * for its last bytes cannot both pass. */
    size_t used = atomic_load_explicit(&r->dir->nbytes, memory_order_relaxed);
    do {
        if (used > max || cost > max - used)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(&r->dir->nbytes, &used, used + cost,
                                                    memory_order_relaxed, memory_order_relaxed));
    r->nbytes += cost;
    return true;
}

double am__wall_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1e3;
}

am_series_t *am__series_new(am_registry_t *r, am_family_t *f, uint64_t h, const char *key,
                               size_t klen)
{
    if (am_table_reserve(&f->series, f->series.n + 1) != 0)
        return NULL;
    am_series_t *se = calloc(1, sizeof(*se) + f->nvalues * sizeof(double) + klen + 1);
    if (!se)
        return NULL;
    se->hash = h;
    se->key_len = (uint32_t)klen;
    se->seen = r->now;
    memcpy(am__series_key(f, se), key, klen);
    if (f->def.is_set) {
        se->set = am__set_new();
        if (!se->set) {
            free(se);
            return NULL;
        }
    }
    *(am_series_t **)am_table_add(&f->series, h) = se; /* room reserved */
    if (f->last)
        f->last->next = se;
    else
        f->first = se;
    f->last = se;
    f->nseries++;
    r->nseries++;
    am__values_add(r, f, se);
    return se;
}

void am__series_retire(am_registry_t *r, am_family_t *f, am_series_t *s)
{
    assert(s->seen != AM_SEEN_DEAD);
    if (am__snap_pending(f))
        am__snapshot_flush(r, f); /* the scrape in progress shows it still */
    size_t i;
    am_series_t **e = am_table_first(&f->series, s->hash, &i);
    while (e && *e != s)
        e = am_table_next(&f->series, &i);
    assert(e);
    am_table_remove(&f->series, e);
    if (s->set) {
        am__set_members_give(r, am__set_count(s->set));
        am__set_free(s->set);
        s->set = NULL;
    }
    f->nseries--;
    r->nseries--;
    am__values_remove(r, f, s);
    am__series_bytes_give(r, am__series_cost(f->nvalues, s->key_len));
    if (f->shared)
        am__shared_give(r->dir, f->shared, 1);
    s->seen = AM_SEEN_DEAD;
}

void am__family_free_series(am_registry_t *r, am_family_t *f)
{
    am__values_free(r, f);
    am_series_t *s = f->first;
    size_t members = 0, bytes = 0;
    while (s) {
        am_series_t *next = s->next;
        if (s->seen != AM_SEEN_DEAD) /* an expired one gave its bytes back */
            bytes += am__series_cost(f->nvalues, s->key_len);
        if (s->set)
            members += am__set_count(s->set);
        am__set_free(s->set);
        free(s);
        s = next;
    }
    am__set_members_give(r, members);
    am__series_bytes_give(r, bytes);
    assert(r->nseries >= f->nseries);
    r->nseries -= f->nseries;
    if (f->shared) {
        atomic_fetch_sub_explicit(&f->shared->nseries, f->nseries, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->dir->nseries, f->nseries, memory_order_relaxed);
    }
    am_table_free(&f->series);
    f->nseries = 0;
    f->first = f->last = NULL;
}

