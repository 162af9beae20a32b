#include "registry.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "registry-internal.h"

static const char *const family_type_names[] = {"counter", "gauge", "histogram", "summary"};

const char *am_family_type_name(am_family_type_t t)
{
    return (unsigned)t < 4 ? family_type_names[t] : "untyped";
}

void am_limits_default(am_limits_t *l)
{
    l->max_series_per_family = 10000;
    l->max_series = 1000000;
    l->max_families = 1000;
    /* A member is an 8-byte hash in a table 3/8 to 3/4 full: about 11-22 MB
     * for a full budget in large sets, whatever a sender makes up. */
    l->max_set_members = 1u << 20;
    l->max_series_bytes = (size_t)128 << 20;
    l->auto_create = true;
    l->tag_dialects = AM_DIALECTS_ALL;
    l->ttl = 0; /* never expire, unless --ttl or the config says */
}

/* ---- definitions ---- */

void am_family_def_clear(am_family_def_t *def)
{
    free(def->name);
    free(def->help);
    for (size_t i = 0; i < def->nlabels; i++)
        free(def->labels[i]);
    memset(def, 0, sizeof(*def));
}

int am_family_def_copy(am_family_def_t *dst, const am_family_def_t *src)
{
    *dst = *src;
    dst->name = strdup(src->name);
    dst->help = strdup(src->help ? src->help : "");
    size_t ok = 0;
    for (; ok < src->nlabels; ok++) {
        dst->labels[ok] = strdup(src->labels[ok]);
        if (!dst->labels[ok])
            break;
    }
    if (!dst->name || !dst->help || ok < src->nlabels) {
        dst->nlabels = ok;
        am_family_def_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

bool am_family_def_same_but_grown(const am_family_def_t *a, const am_family_def_t *b)
{
    if (a->type != b->type || a->is_set != b->is_set || a->nbuckets != b->nbuckets)
        return false;
    size_t n = a->nlabels < b->nlabels ? a->nlabels : b->nlabels;
    for (size_t i = 0; i < n; i++)
        if (strcmp(a->labels[i], b->labels[i]) != 0)
            return false;
    for (size_t i = 0; i < a->nbuckets; i++)
        if (a->buckets[i] != b->buckets[i])
            return false;
    return true;
}

int am_family_def_take_labels(am_family_def_t *dst, const am_family_def_t *src)
{
    while (dst->nlabels < src->nlabels) {
        char *copy = strdup(src->labels[dst->nlabels]);
        if (!copy)
            return -ENOMEM;
        dst->labels[dst->nlabels++] = copy;
    }
    return 0;
}

bool am_family_def_same_shape(const am_family_def_t *a, const am_family_def_t *b)
{
    return a->nlabels == b->nlabels && am_family_def_same_but_grown(a, b);
}

size_t am__values_per_series(const am_family_def_t *def, bool stamped)
{
    switch (def->type) {
        case AM_FAMILY_GAUGE:
            return stamped && !def->is_set ? GAUGE_STAMPED_VALUES : 1;
        case AM_FAMILY_HISTOGRAM:
            return 2 + def->nbuckets + 1;
        case AM_FAMILY_SUMMARY:
            return 2;
        default:
            return 1;
    }
}

/* ---- families ---- */

static void family_free(am_registry_t *r, am_family_t *f)
{
    am__family_free_series(r, f);
    am_family_def_clear(&f->def);
    free(f);
}

static uint64_t family_hash(const void *entry)
{
    return (*(am_family_t *const *)entry)->name_hash;
}

/* The slot holding the family of this name, or NULL. */
static am_family_t **family_slot(const am_registry_t *r, const char *name, size_t len)
{
    uint64_t h = am_hash(name, len);
    size_t i;
    for (am_family_t **e = am_table_first(&r->families, h, &i); e;
         e = am_table_next(&r->families, &i)) {
        const am_family_t *f = *e;
        if (f->name_hash == h && strncmp(f->def.name, name, len) == 0 && f->def.name[len] == '\0')
            return e;
    }
    return NULL;
}

am_family_t *am__family_find(const am_registry_t *r, const char *name, size_t len)
{
    am_family_t **e = family_slot(r, name, len);
    return e ? *e : NULL;
}

const am_family_t *am_registry_find(const am_registry_t *r, const char *name)
{
    return am__family_find(r, name, strlen(name));
}

/* Steals def's strings on success. */
am_family_t *am__family_add(am_registry_t *r, am_family_def_t *def, bool catalogued)
{
    if (am_table_reserve(&r->families, r->families.n + 1) != 0 ||
        am_namedex_reserve(&r->names, 1) != 0)
        return NULL;
    am_family_t *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->def = *def;
    (void)am_namedex_add(&r->names, &f->def); /* room reserved: cannot fail */
    f->fast_type = (uint8_t)def->type;
    memset(def, 0, sizeof(*def));
    f->catalogued = catalogued;
    f->nvalues = am__values_per_series(&f->def, r->stamped);
    am_table_init(&f->series, sizeof(am_series_t *), 75, am__series_hash);
    f->name_hash = am_hash(f->def.name, strlen(f->def.name));
    *(am_family_t **)am_table_add(&r->families, f->name_hash) = f; /* room reserved */
    f->prev = r->last;
    if (r->last)
        r->last->next = f;
    else
        r->first = f;
    r->last = f;
    r->nfamilies++;
    if (!catalogued)
        r->nauto++;
    return f;
}

am_registry_t *am_registry_new(const am_limits_t *limits)
{
    am_registry_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (limits)
        r->limits = *limits;
    else
        am_limits_default(&r->limits);
    am_table_init(&r->families, sizeof(am_family_t *), 75, family_hash);
    /* Room for every series of a full registry in two spellings (tags in
     * another order, say); churn past that clears it. */
    am_linecache_init(&r->cache, 2 * r->limits.max_series);
    return r;
}

void am_registry_free(am_registry_t *r)
{
    if (!r)
        return;
    am_family_t *f = r->first;
    while (f) {
        am_family_t *next = f->next;
        family_free(r, f);
        f = next;
    }
    am__graves_free(r);
    am_table_free(&r->families);
    am_namedex_free(&r->names);
    am_linecache_free(&r->cache);
    free(r->dgram_index);
    free(r);
}

void am_registry_set_limits(am_registry_t *r, const am_limits_t *limits)
{
    if (limits->tag_dialects != r->limits.tag_dialects)
        r->generation++; /* cached lines were read with the old dialects */
    r->limits = *limits;
    r->cache.max_entries = 2 * limits->max_series;
}

void am_registry_set_mapping(am_registry_t *r, const am_mapping_t *m)
{
    if (m != r->mapping)
        r->generation++; /* cached lines were mapped by the old one */
    r->mapping = m;
}

bool am_family_defs_clash(const am_family_def_t *a, const am_family_def_t *b)
{
    char an[AM_OWNED_NAMES][AM_OWNED_NAME_MAX], bn[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
    size_t na = am_owned_names(a, an), nb = am_owned_names(b, bn);
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (strcmp(an[i], bn[j]) == 0)
                return true;
    return false;
}

static am_family_t *family_of(const am_family_def_t *def)
{
    return (am_family_t *)((const char *)def - offsetof(am_family_t, def));
}

/* Unlinks and frees f. */
static void remove_family(am_registry_t *r, am_family_t *f)
{
    if (f->prev)
        f->prev->next = f->next;
    else
        r->first = f->next;
    if (f->next)
        f->next->prev = f->prev;
    else
        r->last = f->prev;
    r->nfamilies--;
    if (!f->catalogued)
        r->nauto--;
    am_namedex_remove(&r->names, &f->def);
    am_family_t **slot = family_slot(r, f->def.name, strlen(f->def.name));
    assert(slot && *slot == f);
    am_table_remove(&r->families, slot);
    family_free(r, f);
}

void am_registry_use_directory(am_registry_t *r, am_famdir_t *d)
{
    assert(!r->first && !r->dir); /* a new registry, before any define */
    r->dir = d;
}

void am_registry_enable_gauge_stamps(am_registry_t *r)
{
    r->stamped = true;
    for (am_family_t *f = r->first; f; f = f->next)
        if (!f->nseries)
            f->nvalues = am__values_per_series(&f->def, true);
}

void am_registry_set_clock(am_registry_t *r, double now)
{
    r->clock = now;
}

static int define_locked(am_registry_t *r, am_family_def_t *copy_in, famdir_entry_t *e);

int am_registry_define(am_registry_t *r, const am_family_def_t *def)
{
    am_family_def_t copy;
    if (am_family_def_copy(&copy, def) != 0)
        return -ENOMEM;
    famdir_entry_t *e = NULL;
    if (r->dir) {
        pthread_mutex_lock(&r->dir->mu);
        e = am__dir_define(r->dir, def);
        if (!e) {
            pthread_mutex_unlock(&r->dir->mu);
            am_family_def_clear(&copy);
            return -ENOMEM;
        }
    }
    int rc = define_locked(r, &copy, e);
    if (r->dir)
        pthread_mutex_unlock(&r->dir->mu);
    return rc;
}

/* am_registry_define with the directory entry (if any) already settled.
 * Steals copy. */
static int define_locked(am_registry_t *r, am_family_def_t *copy_in, famdir_entry_t *e)
{
    am_family_def_t copy = *copy_in;
    const am_family_def_t *def = &copy;
    am__snapshot_flush_all(r); /* help, series or the family itself may change */
    r->generation++;           /* series may be freed below: the line cache must forget them */
    /* The catalog wins over families whose sample names it would repeat
     * (an auto-created gauge x_count before a configured histogram x). */
    am_family_t *f = am__family_find(r, def->name, strlen(def->name));
    if (am_namedex_reserve(&r->names, 1) != 0) {
        am_family_def_clear(&copy);
        return -ENOMEM;
    }
    int removed = 0;
    const am_family_def_t *other;
    while ((other = am_namedex_clash(&r->names, def, f ? &f->def : NULL))) {
        remove_family(r, family_of(other));
        removed++;
    }
    if (f) {
        if (!am_family_def_same_shape(&f->def, &copy)) {
            /* Type, labels or buckets changed: the old series no longer fit. */
            am__family_free_series(r, f);
        }
        am_namedex_remove(&r->names, &f->def); /* its names may change */
        am_family_def_clear(&f->def);
        f->def = copy;
        (void)am_namedex_add(&r->names, &f->def); /* room reserved: cannot fail */
        f->fast_type = (uint8_t)copy.type;
        f->nvalues = am__values_per_series(&f->def, r->stamped);
        if (!f->catalogued)
            r->nauto--;
        f->catalogued = true;
        am__values_move(r, f, e); /* the live view's counts follow the series */
        f->shared = e;
        return removed;
    }
    f = am__family_add(r, &copy, true);
    if (!f) {
        am_family_def_clear(&copy);
        return -ENOMEM;
    }
    f->shared = e;
    return removed;
}

/* ---- read side ---- */

size_t am_registry_family_count(const am_registry_t *r)
{
    return r->nfamilies;
}

size_t am_registry_set_member_count(const am_registry_t *r)
{
    return r->dir ? atomic_load_explicit(&r->dir->nset_members, memory_order_relaxed)
                  : r->nset_members;
}

size_t am_registry_series_bytes(const am_registry_t *r)
{
    return r->dir ? atomic_load_explicit(&r->dir->nbytes, memory_order_relaxed) : r->nbytes;
}

size_t am_registry_series_count(const am_registry_t *r)
{
    return r->nseries;
}

const am_family_t *am_registry_first(const am_registry_t *r)
{
    return r->first;
}

const am_family_t *am_family_next(const am_family_t *f)
{
    return f->next;
}

const am_family_def_t *am_family_def(const am_family_t *f)
{
    return &f->def;
}

size_t am_family_series_count(const am_family_t *f)
{
    return f->nseries;
}

/* Expired series wait in the list for a sweep: readers skip them. */
static const am_series_t *live_from(const am_series_t *s)
{
    while (s && s->seen == AM_SEEN_DEAD)
        s = s->next;
    return s;
}

const am_series_t *am_family_first_series(const am_family_t *f)
{
    return live_from(f->first);
}

const am_series_t *am_series_next(const am_series_t *s)
{
    return live_from(s->next);
}

const char *am_series_key(const am_family_t *f, const am_series_t *s, size_t *len)
{
    *len = s->key_len;
    return am__series_key(f, s);
}

double am_series_created(const am_series_t *s)
{
    return s->created;
}

const double *am_series_values(const am_series_t *s)
{
    return s->v;
}
