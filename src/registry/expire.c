/* expire: series that outlive their TTL (registry.h "series lifecycle").
 *
 * Expiry never frees a series the line cache may point at, and never
 * clears the whole cache (at a million series that is a 64 MB memset: a
 * long pause, then every line through the slow path). A sweep step expires
 * a stale series in place (am__series_retire: out of its table and counts,
 * marked dead, which a cache hit tests), unlinks dead series from their
 * family's list as it walks past them, and buries them. A scrub then walks
 * the cache a slice per step and points every entry of a dead series at a
 * static dead series instead; when it has passed over the whole cache, the
 * series buried before it began are unreachable and are freed, a bounded
 * number per step. */
#include "registry-internal.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* Per step at most: series freed, cache slots scrubbed. */
enum { FREE_PER_STEP = 4096, SCRUB_PER_STEP = 16384 };

/* What a scrubbed cache entry points at: a hit reads "dead" and takes the
 * full path, which finds or makes the live series and caches it. */
static const am_series_t scrubbed = {.seen = AM_SEEN_DEAD};

void am_registry_set_now(am_registry_t *r, uint32_t now_ds)
{
    r->now = now_ds;
}

/* f's TTL in deciseconds; 0: never. */
static uint64_t family_ttl_ds(const am_registry_t *r, const am_family_t *f)
{
    uint32_t ttl = f->def.ttl ? f->def.ttl : r->limits.ttl;
    return ttl == AM_TTL_NEVER ? 0 : (uint64_t)ttl * 10;
}

bool am_registry_has_ttl(const am_registry_t *r)
{
    if (r->limits.ttl)
        return true;
    for (const am_family_t *f = r->first; f; f = f->next)
        if (f->def.ttl && f->def.ttl != AM_TTL_NEVER)
            return true;
    return false;
}

static void free_series_list(am_series_t *s)
{
    while (s) {
        am_series_t *next = s->next;
        free(s); /* sets were freed when it expired */
        s = next;
    }
}

void am__graves_free(am_registry_t *r)
{
    free_series_list(r->grave_new);
    free_series_list(r->grave_scrub);
    free_series_list(r->grave_free);
    r->grave_new = r->grave_scrub = r->grave_free = NULL;
    r->scrubbing = false;
}

/* Frees up to n series that the line cache can no longer reach. */
static void free_some(am_registry_t *r, size_t n)
{
    while (r->grave_free && n--) {
        am_series_t *s = r->grave_free;
        r->grave_free = s->next;
        free(s);
    }
}

static void append(am_series_t **to, am_series_t *list)
{
    if (!list)
        return;
    am_series_t *tail = list;
    while (tail->next)
        tail = tail->next;
    tail->next = *to;
    *to = list;
}

/* A slice of the cache scrub: begins one when series wait for it, ends it
 * (their memory free to free) after the last slot. A cache cleared or
 * resized since the scrub began starts it over (entries moved). */
static void scrub_some(am_registry_t *r, size_t n)
{
    am_table_t *t = &r->cache.table;
    if (!r->scrubbing) {
        if (!r->grave_new)
            return;
        r->grave_scrub = r->grave_new;
        r->grave_new = NULL;
        r->scrubbing = true;
        r->scrub_pos = 0;
        r->scrub_cap = t->cap;
        r->scrub_gen = r->generation;
    }
    if (r->scrub_gen != r->generation) {
        r->scrub_pos = SIZE_MAX; /* the cache clears itself before its next use */
    } else if (r->scrub_cap != t->cap) {
        r->scrub_pos = 0;
        r->scrub_cap = t->cap;
    }
    for (; r->scrub_pos < t->cap && n--; r->scrub_pos++) {
        am_linecache_entry_t *e = am_table_occupied(t, r->scrub_pos);
        if (e && ((am_series_t *)e->series)->seen == AM_SEEN_DEAD)
            e->series = (void *)&scrubbed; /* only ever read */
    }
    if (r->scrub_pos < t->cap)
        return;
    append(&r->grave_free, r->grave_scrub);
    r->grave_scrub = NULL;
    r->scrubbing = false;
}

/* Unlinks s, dead, from f's list (prev: the one before it, or NULL). */
static void unlink_dead(am_family_t *f, am_series_t *prev, am_series_t *s)
{
    if (prev)
        prev->next = s->next;
    else
        f->first = s->next;
    if (f->last == s)
        f->last = prev;
}

bool am_registry_expire_step(am_registry_t *r, am_expire_cursor_t *c, uint32_t now_ds,
                             size_t budget, size_t *expired)
{
    r->now = now_ds;
    free_some(r, FREE_PER_STEP);
    scrub_some(r, SCRUB_PER_STEP);
    if (!c->family || c->generation != r->generation) {
        c->family = r->first;
        c->prev = NULL;
    }
    size_t examined = 0;
    while (c->family && examined < budget) {
        am_family_t *f = c->family;
        uint64_t ttl = family_ttl_ds(r, f);
        am_series_t *s = c->prev ? c->prev->next : f->first;
        while (s && examined < budget) {
            examined++;
            am_series_t *next = s->next;
            if (s->seen != AM_SEEN_DEAD && ttl && (uint32_t)(now_ds - s->seen) > ttl &&
                !(c->others && c->others(c->others_ctx, f, s))) {
                am__series_retire(r, f, s);
                (*expired)++;
            }
            if (s->seen == AM_SEEN_DEAD) {
                unlink_dead(f, c->prev, s);
                s->next = r->grave_new;
                r->grave_new = s;
            } else {
                c->prev = s;
            }
            s = next;
        }
        if (!s) {
            c->family = f->next;
            c->prev = NULL;
        }
        examined++; /* a family costs a step too, with or without series */
    }
    c->generation = r->generation;
    return c->family == NULL;
}

/* r's live copy of series s of family f (another registry's), or NULL. */
static am_series_t *copy_of(const am_registry_t *r, const am_family_t *f, const am_series_t *s,
                            am_family_t **rf)
{
    *rf = am__family_find(r, f->def.name, strlen(f->def.name));
    if (!*rf)
        return NULL;
    return am__series_find(*rf, s->hash, am__series_key(f, s), s->key_len);
}

bool am_registry_copy_fresh(const am_registry_t *r, const am_family_t *f, const am_series_t *s,
                            uint32_t now_ds)
{
    am_family_t *rf;
    const am_series_t *mine = copy_of(r, f, s, &rf);
    if (!mine)
        return false;
    uint64_t ttl = family_ttl_ds(r, rf);
    return !ttl || (uint32_t)(now_ds - mine->seen) <= ttl;
}

void am_registry_expire_copy(am_registry_t *r, const am_family_t *f, const am_series_t *s)
{
    am_family_t *rf;
    am_series_t *mine = copy_of(r, f, s, &rf);
    if (mine)
        am__series_retire(r, rf, mine);
}
