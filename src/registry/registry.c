#include "registry.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "hash.h"
#include "linecache.h"
#include "names.h"
#include "table.h"

struct am_series {
    am_series_t *next; /* creation order, for rendering */
    uint64_t hash;
    struct am_set *set; /* set gauges only */
    uint32_t key_len;
    uint32_t unused;
    double v[]; /* family->nvalues doubles, then key_len key bytes */
};

/* Distinct members of a set gauge, as 64-bit hashes in a hash-first table
 * (the entry is the hash) at most 75% full. A collision between two
 * members needs ~2^32 members: far past the cap. */
typedef struct am_set {
    am_table_t members;
} am_set_t;

/* One family of the directory shared by the workers' registries (see
 * am_famdir_t in registry.h). Entries are freed only with the directory:
 * a worker's family may point at an entry a reload took out of the table
 * until that worker's own copy of the family is removed too. */
typedef struct famdir_entry {
    struct famdir_entry *next_all; /* every entry, live or removed */
    am_family_def_t def;
    bool catalogued;
    bool removed;
    uint64_t name_hash;
    atomic_size_t nseries; /* summed over the workers */
} famdir_entry_t;

struct am_famdir {
    pthread_mutex_t mu; /* guards everything but the atomics */
    am_table_t live;    /* famdir_entry_t *: the live entries, by name hash */
    size_t nauto; /* live auto-created entries: limits.max_families */
    famdir_entry_t *all;
    am_namedex_t names;         /* sample names of the live entries */
    atomic_size_t nseries;      /* summed over families and workers */
    atomic_size_t nset_members; /* summed over set series and workers */
};

struct am_family {
    /* What apply_cached's shortcuts test: def.type, or FAST_PENDING while
     * the family is part of a scrape snapshot not yet rendered (the
     * snapshot callback runs before its first change). The hot path pays no
     * test of its own: the shortcuts fail over to apply_cached_values,
     * which checks (snap_pending). Next to def.type: both are read. */
    uint8_t fast_type;
    uint32_t snap_index; /* the family's place in that snapshot */
    am_family_def_t def;
    bool catalogued;
    famdir_entry_t *shared; /* directory entry (multi-worker registries), else NULL */
    uint64_t name_hash;
    am_family_t *next;
    am_table_t series; /* am_series_t *, by key hash; owns nothing */
    size_t nseries;
    am_series_t *first, *last;
    size_t nvalues;
};

struct am_registry {
    am_limits_t limits;
    am_table_t families; /* am_family_t *, by name hash; owns nothing */
    size_t nfamilies;
    size_t nauto;
    size_t nseries;
    size_t nset_members; /* over every set series: limits.max_set_members */
    am_family_t *first, *last;
    am_namedex_t names;  /* sample names the families own */
    uint64_t generation; /* bumped whenever series or families may be freed */
    am_linecache_t cache;
    am_dgram_index_t *dgram_index; /* am_registry_ingest_datagram's, made on first use */
    am_famdir_t *dir;              /* borrowed: shared by the workers; NULL with one loop */
    bool stamped;                  /* gauges carry set/delta stamps (GAUGE_* below) */
    double clock;                  /* stamp for gauge updates, set per batch */
    am_snapshot_fn snap_fn;        /* the scrape snapshot in progress, or NULL */
    void *snap_ctx;
};

/* A gauge series of a stamped registry holds 3 more doubles after its value,
 * so that am_registry_merge can combine the same gauge fed by several
 * workers: sets are ordered by the batch clock, deltas are summed. */
enum { FAST_PENDING = 0xff };

static bool snap_pending(const am_family_t *f)
{
    return f->fast_type == FAST_PENDING;
}

enum { GAUGE_DELTA = 1, GAUGE_SET_AT = 2, GAUGE_DELTA_AT = 3, GAUGE_STAMPED_VALUES = 4 };

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
    l->auto_create = true;
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

bool am_family_def_same_shape(const am_family_def_t *a, const am_family_def_t *b)
{
    if (a->type != b->type || a->is_set != b->is_set || a->nlabels != b->nlabels ||
        a->nbuckets != b->nbuckets)
        return false;
    for (size_t i = 0; i < a->nlabels; i++)
        if (strcmp(a->labels[i], b->labels[i]) != 0)
            return false;
    for (size_t i = 0; i < a->nbuckets; i++)
        if (a->buckets[i] != b->buckets[i])
            return false;
    return true;
}

static size_t values_per_series(const am_family_def_t *def, bool stamped)
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

/* ---- series ---- */

static char *series_key_ptr(const am_family_t *f, const am_series_t *s)
{
    return (char *)(s->v + f->nvalues);
}

static void set_free(am_set_t *set)
{
    if (set) {
        am_table_free(&set->members);
        free(set);
    }
}

static am_set_t *set_new(void)
{
    am_set_t *set = malloc(sizeof(*set));
    if (set)
        am_table_init(&set->members, sizeof(uint64_t), 75, NULL);
    return set;
}

static size_t set_count(const am_set_t *set)
{
    return set->members.n;
}

/* Gives back n set members to the limit. */
static void give_set_members(am_registry_t *r, size_t n)
{
    r->nset_members -= n;
    if (r->dir)
        atomic_fetch_sub_explicit(&r->dir->nset_members, n, memory_order_relaxed);
}

/* One more set member, within limits.max_set_members (counted over every
 * worker with a directory); false when the limit is reached. */
static bool take_set_member(am_registry_t *r)
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

static void family_free_series(am_registry_t *r, am_family_t *f)
{
    am_series_t *s = f->first;
    size_t members = 0;
    while (s) {
        am_series_t *next = s->next;
        if (s->set)
            members += set_count(s->set);
        set_free(s->set);
        free(s);
        s = next;
    }
    give_set_members(r, members);
    r->nseries -= f->nseries;
    if (f->shared) {
        atomic_fetch_sub_explicit(&f->shared->nseries, f->nseries, memory_order_relaxed);
        atomic_fetch_sub_explicit(&r->dir->nseries, f->nseries, memory_order_relaxed);
    }
    am_table_free(&f->series);
    f->nseries = 0;
    f->first = f->last = NULL;
}

static uint64_t series_hash(const void *entry)
{
    return (*(am_series_t *const *)entry)->hash;
}

/* The series with this key (hash h), or NULL. */
static am_series_t *find_series(const am_family_t *f, uint64_t h, const char *key, size_t len)
{
    size_t i;
    for (am_series_t **e = am_table_first(&f->series, h, &i); e; e = am_table_next(&f->series, &i)) {
        am_series_t *s = *e;
        if (s->hash == h && s->key_len == len && memcmp(series_key_ptr(f, s), key, len) == 0)
            return s;
    }
    return NULL;
}

/* ---- families ---- */

static void family_free(am_registry_t *r, am_family_t *f)
{
    family_free_series(r, f);
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

static am_family_t *find_family(const am_registry_t *r, const char *name, size_t len)
{
    am_family_t **e = family_slot(r, name, len);
    return e ? *e : NULL;
}

const am_family_t *am_registry_find(const am_registry_t *r, const char *name)
{
    return find_family(r, name, strlen(name));
}

/* Steals def's strings on success. */
static am_family_t *add_family(am_registry_t *r, am_family_def_t *def, bool catalogued)
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
    f->nvalues = values_per_series(&f->def, r->stamped);
    am_table_init(&f->series, sizeof(am_series_t *), 75, series_hash);
    f->name_hash = am_hash(f->def.name, strlen(f->def.name));
    *(am_family_t **)am_table_add(&r->families, f->name_hash) = f; /* room reserved */
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
    am_table_free(&r->families);
    am_namedex_free(&r->names);
    am_linecache_free(&r->cache);
    free(r->dgram_index);
    free(r);
}

void am_registry_set_limits(am_registry_t *r, const am_limits_t *limits)
{
    r->limits = *limits;
    r->cache.max_entries = 2 * limits->max_series;
}

static bool has_suffix(const char *p, size_t n, const char *sfx)
{
    size_t k = strlen(sfx);
    return n >= k && memcmp(p + n - k, sfx, k) == 0;
}

static bool has_prefix(const char *p, size_t n, const char *pfx)
{
    size_t k = strlen(pfx);
    return n >= k && memcmp(p, pfx, k) == 0;
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
    am_family_t **pp = &r->first;
    am_family_t *prev = NULL;
    while (*pp != f) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = f->next;
    if (r->last == f)
        r->last = prev;
    r->nfamilies--;
    if (!f->catalogued)
        r->nauto--;
    am_namedex_remove(&r->names, &f->def);
    am_table_remove(&r->families, family_slot(r, f->def.name, strlen(f->def.name)));
    family_free(r, f);
}

/* ---- the family directory (several workers) ---- */

static int define_locked(am_registry_t *r, am_family_def_t *copy_in, famdir_entry_t *e);

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
    atomic_init(&d->nseries, 0);
    atomic_init(&d->nset_members, 0);
    return d;
}

void am_famdir_free(am_famdir_t *d)
{
    if (!d)
        return;
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
static famdir_entry_t *dir_find(const am_famdir_t *d, const char *name, size_t len)
{
    famdir_entry_t **s = dir_slot(d, name, len);
    return s ? *s : NULL;
}

/* Adds a copy of def as a live entry; NULL when out of memory. Caller holds
 * d->mu. */
static famdir_entry_t *dir_add(am_famdir_t *d, const am_family_def_t *def, bool catalogued)
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
    am_table_remove(&d->live, dir_slot(d, e->def.name, strlen(e->def.name)));
}

/* The directory side of am_registry_define: the same replacement rules.
 * Idempotent, so every worker's registry may apply the same def in turn.
 * Caller holds d->mu. NULL when out of memory. */
static famdir_entry_t *dir_define(am_famdir_t *d, const am_family_def_t *def)
{
    famdir_entry_t *e = dir_find(d, def->name, strlen(def->name));
    am_family_def_t copy;
    if (am_namedex_reserve(&d->names, 1) != 0 || (e && am_family_def_copy(&copy, def) != 0))
        return NULL;
    const am_family_def_t *other;
    while ((other = am_namedex_clash(&d->names, def, e ? &e->def : NULL)))
        dir_remove(d, (famdir_entry_t *)((const char *)other - offsetof(famdir_entry_t, def)));
    if (!e)
        return dir_add(d, def, true);
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

void am_registry_use_directory(am_registry_t *r, am_famdir_t *d)
{
    r->dir = d;
}

void am_registry_enable_gauge_stamps(am_registry_t *r)
{
    r->stamped = true;
    for (am_family_t *f = r->first; f; f = f->next)
        if (!f->nseries)
            f->nvalues = values_per_series(&f->def, true);
}

void am_registry_set_clock(am_registry_t *r, double now)
{
    r->clock = now;
}

/* ---- scrape snapshots ---- */

size_t am_registry_snapshot_begin(am_registry_t *r, am_snapshot_fn fn, void *ctx)
{
    size_t i = 0;
    for (am_family_t *f = r->first; f; f = f->next, i++) {
        f->fast_type = FAST_PENDING;
        f->snap_index = (uint32_t)i;
    }
    r->snap_fn = fn;
    r->snap_ctx = ctx;
    return i;
}

void am_registry_snapshot_taken(am_registry_t *r, const am_family_t *f)
{
    (void)r;
    am_family_t *mf = (am_family_t *)f;
    mf->fast_type = (uint8_t)mf->def.type;
}

void am_registry_snapshot_end(am_registry_t *r)
{
    for (am_family_t *f = r->first; f; f = f->next)
        am_registry_snapshot_taken(r, f);
    r->snap_fn = NULL;
    r->snap_ctx = NULL;
}

/* f is about to change: the snapshot takes it as it is now. Out of line:
 * the hot path only tests the flag. */
static __attribute__((noinline)) void snapshot_flush(am_registry_t *r, am_family_t *f)
{
    am_registry_snapshot_taken(r, f);
    r->snap_fn(r->snap_ctx, f, f->snap_index);
}

static void snapshot_flush_all(am_registry_t *r)
{
    if (!r->snap_fn)
        return;
    for (am_family_t *f = r->first; f; f = f->next)
        if (snap_pending(f))
            snapshot_flush(r, f);
}

int am_registry_define(am_registry_t *r, const am_family_def_t *def)
{
    am_family_def_t copy;
    if (am_family_def_copy(&copy, def) != 0)
        return -ENOMEM;
    famdir_entry_t *e = NULL;
    if (r->dir) {
        pthread_mutex_lock(&r->dir->mu);
        e = dir_define(r->dir, def);
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
    snapshot_flush_all(r); /* help, series or the family itself may change */
    r->generation++;       /* series may be freed below: the line cache must forget them */
    /* The catalog wins over families whose sample names it would repeat
     * (an auto-created gauge x_count before a configured histogram x). */
    am_family_t *f = find_family(r, def->name, strlen(def->name));
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
            family_free_series(r, f);
        }
        am_namedex_remove(&r->names, &f->def); /* its names may change */
        am_family_def_clear(&f->def);
        f->def = copy;
        (void)am_namedex_add(&r->names, &f->def); /* room reserved: cannot fail */
        f->fast_type = (uint8_t)copy.type;
        f->nvalues = values_per_series(&f->def, r->stamped);
        if (!f->catalogued)
            r->nauto--;
        f->catalogued = true;
        f->shared = e;
        return removed;
    }
    f = add_family(r, &copy, true);
    if (!f) {
        am_family_def_clear(&copy);
        return -ENOMEM;
    }
    f->shared = e;
    return removed;
}

/* ---- ingest ---- */

static bool type_fits(const am_family_def_t *def, am_type_t t)
{
    switch (def->type) {
        case AM_FAMILY_COUNTER:
            return t == AM_TYPE_COUNTER;
        case AM_FAMILY_GAUGE:
            return def->is_set ? t == AM_TYPE_SET : t == AM_TYPE_GAUGE;
        case AM_FAMILY_HISTOGRAM:
        case AM_FAMILY_SUMMARY:
            return t == AM_TYPE_TIMER || t == AM_TYPE_HISTOGRAM || t == AM_TYPE_DISTRIBUTION;
    }
    return false;
}

static const char *auto_help(am_type_t t)
{
    switch (t) {
        case AM_TYPE_COUNTER:
            return "Created by alice-metrics from StatsD counter (c) lines.";
        case AM_TYPE_GAUGE:
            return "Created by alice-metrics from StatsD gauge (g) lines.";
        case AM_TYPE_TIMER:
            return "Created by alice-metrics from StatsD timer (ms) lines, in seconds.";
        case AM_TYPE_HISTOGRAM:
            return "Created by alice-metrics from StatsD histogram (h) lines.";
        case AM_TYPE_DISTRIBUTION:
            return "Created by alice-metrics from StatsD distribution (d) lines.";
        case AM_TYPE_SET:
            return "Created by alice-metrics from StatsD set (s) lines: distinct values seen.";
    }
    return "";
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Maps a raw tag key as names are mapped; 0 if invalid after mapping. */
static size_t map_label(const am_slice_t *raw, char *out, size_t cap)
{
    size_t n = am_map_name(raw->p, raw->n, out, cap);
    if (n == 0 || !am_valid_label_name(out, n))
        return 0;
    return n;
}

static bool reserved_label(am_family_type_t t, const char *p, size_t n)
{
    if (t == AM_FAMILY_HISTOGRAM)
        return n == 2 && memcmp(p, "le", 2) == 0;
    if (t == AM_FAMILY_SUMMARY)
        return n == 8 && memcmp(p, "quantile", 8) == 0;
    return false;
}

/* The definition a first line gives an unknown name. Nothing is added to
 * the registry here: the line may still be rejected further right. */
static am_reason_t auto_def(am_registry_t *r, const char *name, size_t len, const am_sample_t *s,
                            am_family_def_t *def)
{
    if (!r->limits.auto_create)
        return AM_REJECT_UNKNOWN_FAMILY;
    memset(def, 0, sizeof(*def));
    switch (s->type) {
        case AM_TYPE_COUNTER:
            def->type = AM_FAMILY_COUNTER;
            break;
        case AM_TYPE_GAUGE:
            def->type = AM_FAMILY_GAUGE;
            break;
        case AM_TYPE_SET:
            def->type = AM_FAMILY_GAUGE;
            def->is_set = true;
            break;
        default:
            def->type = AM_FAMILY_HISTOGRAM;
            def->nbuckets = sizeof(am_default_buckets) / sizeof(am_default_buckets[0]);
            memcpy(def->buckets, am_default_buckets, sizeof(am_default_buckets));
            break;
    }
    def->name = strndup(name, len);
    def->help = strdup(auto_help(s->type));
    if (!def->name || !def->help) {
        am_family_def_clear(def);
        return AM_REJECT_CARDINALITY;
    }
    /* The name clash is a fault of the name and type: met before the tags. */
    if (am_namedex_clash(r->dir ? &r->dir->names : &r->names, def, NULL)) {
        am_family_def_clear(def);
        return AM_REJECT_TYPE_CONFLICT;
    }
    char lname[AM_MAX_LABEL_NAME_LEN + 2];
    for (size_t i = 0; i < s->ntags; i++) {
        size_t n = map_label(&s->tag_key[i], lname, sizeof(lname));
        if (n == 0 || reserved_label(def->type, lname, n)) {
            am_family_def_clear(def);
            return AM_REJECT_BAD_LABEL;
        }
        def->labels[def->nlabels] = strndup(lname, n);
        if (!def->labels[def->nlabels]) {
            am_family_def_clear(def);
            return AM_REJECT_CARDINALITY;
        }
        def->nlabels++;
    }
    qsort(def->labels, def->nlabels, sizeof(def->labels[0]), cmp_str);
    return AM_OK;
}

/* Builds the series key: label values in def's label order, joined by '\0';
 * a declared label the line lacks is empty. */
static am_reason_t build_key(const am_family_def_t *def, const am_sample_t *s, char *key,
                             size_t cap, size_t *klen_out)
{
    const am_slice_t *val_at[AM_MAX_LABELS] = {0};
    char lname[AM_MAX_LABEL_NAME_LEN + 2];
    for (size_t i = 0; i < s->ntags; i++) {
        size_t n = map_label(&s->tag_key[i], lname, sizeof(lname));
        if (n == 0 || reserved_label(def->type, lname, n))
            return AM_REJECT_BAD_LABEL;
        size_t k = 0;
        while (k < def->nlabels &&
               !(strncmp(def->labels[k], lname, n) == 0 && def->labels[k][n] == '\0'))
            k++;
        if (k == def->nlabels)
            return AM_REJECT_UNDECLARED_LABEL;
        if (val_at[k]) /* "a.b" and "a_b" in one line */
            return AM_REJECT_BAD_LABEL;
        val_at[k] = &s->tag_value[i];
    }
    size_t klen = 0;
    for (size_t k = 0; k < def->nlabels; k++) {
        size_t vn = val_at[k] ? val_at[k]->n : 0;
        if (klen + vn + 1 > cap)
            return AM_REJECT_BAD_LABEL;
        if (k > 0)
            key[klen++] = '\0';
        if (vn)
            memcpy(key + klen, val_at[k]->p, vn);
        klen += vn;
    }
    *klen_out = klen;
    return AM_OK;
}

/* Checks that applying s to values v (zeros for a new series) keeps every
 * total finite: a huge value or a tiny rate must not turn a series into
 * Inf or NaN, which no exposition may carry. */
/* What value i of a counter line adds: value / rate. Most lines have rate 1,
 * and v / 1.0 is v: no division for them. */
static inline double counter_increment(const am_sample_t *s, size_t i)
{
    return s->rate == 1.0 ? s->values[i] : s->values[i] / s->rate;
}

/* What a timer, histogram or distribution value observes: milliseconds
 * become seconds. Divide (not multiply by 0.001): 9 ms must be exactly
 * 0.009 s. */
static inline double observed_value(am_type_t type, double x)
{
    return type == AM_TYPE_TIMER ? x / 1000.0 : x;
}

static am_reason_t check_finite(const am_family_def_t *def, const double *v, const am_sample_t *s)
{
    switch (def->type) {
        case AM_FAMILY_COUNTER: {
            double t = v[0];
            for (size_t i = 0; i < s->nvalues; i++)
                t += counter_increment(s, i);
            return isfinite(t) ? AM_OK : AM_REJECT_BAD_VALUE;
        }
        case AM_FAMILY_GAUGE: {
            if (def->is_set)
                return AM_OK;
            double t = v[0];
            for (size_t i = 0; i < s->nvalues; i++)
                t = s->delta[i] ? t + s->values[i] : s->values[i];
            return isfinite(t) ? AM_OK : AM_REJECT_BAD_VALUE;
        }
        case AM_FAMILY_HISTOGRAM:
        case AM_FAMILY_SUMMARY: {
            double w = 1.0 / s->rate;
            if (!isfinite(w))
                return AM_REJECT_BAD_SAMPLE_RATE;
            double count = v[0] + w * (double)s->nvalues, sum = v[1];
            for (size_t i = 0; i < s->nvalues; i++)
                sum += observed_value(s->type, s->values[i]) * w;
            return isfinite(count) && isfinite(sum) ? AM_OK : AM_REJECT_BAD_VALUE;
        }
    }
    return AM_OK;
}

/* Adds member hash h (an add that finds it there is a no-op); false when
 * out of memory. */
static bool set_insert(am_set_t *set, uint64_t h)
{
    h = am_table_hash(h);
    size_t i;
    for (uint64_t *e = am_table_first(&set->members, h, &i); e; e = am_table_next(&set->members, &i))
        if (*e == h)
            return true;
    return am_table_add(&set->members, h) != NULL;
}

static bool set_contains(const am_set_t *set, uint64_t h)
{
    h = am_table_hash(h);
    size_t i;
    for (const uint64_t *e = am_table_first(&set->members, h, &i); e;
         e = am_table_next(&set->members, &i))
        if (*e == h)
            return true;
    return false;
}

static void observe(am_family_t *f, am_series_t *s, double x, double w)
{
    s->v[0] += w;
    s->v[1] += x * w;
    if (f->def.type != AM_FAMILY_HISTOGRAM)
        return;
    size_t nb = f->def.nbuckets;
    size_t i = 0;
    /* Buckets are few (15-25): a linear scan beats a binary search here. */
    while (i < nb && x > f->def.buckets[i])
        i++;
    s->v[2 + i] += w;
}

static am_series_t *new_series(am_registry_t *r, am_family_t *f, uint64_t h, const char *key,
                               size_t klen)
{
    if (am_table_reserve(&f->series, f->series.n + 1) != 0)
        return NULL;
    am_series_t *se = calloc(1, sizeof(*se) + f->nvalues * sizeof(double) + klen + 1);
    if (!se)
        return NULL;
    se->hash = h;
    se->key_len = (uint32_t)klen;
    memcpy(series_key_ptr(f, se), key, klen);
    if (f->def.is_set) {
        se->set = set_new();
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
    return se;
}

static am_reason_t update_series(am_registry_t *r, am_family_t *f, am_series_t *se,
                                 const am_sample_t *s);

/* Takes one series from the budgets the workers share: the family's (e; NULL
 * for a family about to be created) and the total. Nothing is taken when
 * either is spent. */
static bool shared_take(am_famdir_t *d, famdir_entry_t *e, size_t limit, size_t total)
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

static void shared_give(am_famdir_t *d, famdir_entry_t *e, size_t n)
{
    if (e)
        atomic_fetch_sub_explicit(&e->nseries, n, memory_order_relaxed);
    atomic_fetch_sub_explicit(&d->nseries, n, memory_order_relaxed);
}

static am_reason_t apply_full(am_registry_t *r, const am_sample_t *s, am_family_t **f_out,
                              am_series_t **se_out)
{
    /* Name: mapped, counters with _total appended. */
    char name[AM_MAX_NAME_LEN + 8];
    size_t len = am_map_name(s->name.p, s->name.n, name, AM_MAX_NAME_LEN + 1);
    if (len == 0)
        return AM_REJECT_BAD_NAME;
    /* Our own families: a sender must not be able to forge them. */
    if (has_prefix(name, len, "alice_metricsd_") || has_prefix(name, len, "process_"))
        return AM_REJECT_BAD_NAME;
    if (s->type == AM_TYPE_COUNTER && !has_suffix(name, len, "_total")) {
        memcpy(name + len, "_total", 6);
        len += 6;
    }
    name[len] = '\0';

    /* Every check runs before anything is added: a rejected line leaves no
     * family and no series behind. */
    am_family_t *f = find_family(r, name, len);
    famdir_entry_t *e = NULL; /* directory entry of a family new to this registry */
    bool dir_locked = false;
    am_family_def_t fresh;
    const am_family_def_t *def;
    am_reason_t rc;
    if (f) {
        if (!type_fits(&f->def, s->type))
            return AM_REJECT_TYPE_CONFLICT;
        if (snap_pending(f))
            snapshot_flush(r, f);
        def = &f->def;
    } else {
        if (r->dir) {
            /* Slow path of a worker: a name its registry does not have. The
             * first worker to create a family decides its definition, the
             * others copy it; the lock is held until the family is added or
             * the line rejected, so two workers cannot both create it. */
            pthread_mutex_lock(&r->dir->mu);
            dir_locked = true;
            e = dir_find(r->dir, name, len);
        }
        if (e) {
            if (!type_fits(&e->def, s->type))
                rc = AM_REJECT_TYPE_CONFLICT;
            else if (am_family_def_copy(&fresh, &e->def) != 0)
                rc = AM_REJECT_CARDINALITY;
            else
                rc = AM_OK;
        } else {
            rc = auto_def(r, name, len, s, &fresh);
        }
        if (rc != AM_OK)
            goto out; /* fresh holds nothing */
        def = &fresh;
    }

    char key[AM_MAX_KEY_LEN];
    size_t klen = 0;
    rc = build_key(def, s, key, sizeof(key), &klen);
    uint64_t h = am_hash(key, klen);
    am_series_t *se = NULL;
    if (rc == AM_OK && f)
        se = find_series(f, h, key, klen);
    if (rc == AM_OK) {
        double zeros[2] = {0, 0};
        rc = check_finite(def, se ? se->v : zeros, s);
    }
    bool taken = false;
    if (rc == AM_OK && !se) {
        size_t limit = def->max_series ? def->max_series : r->limits.max_series_per_family;
        if (r->dir) {
            /* Limits count the series of every worker (one seen by two
             * workers counts twice). */
            if (!f && !e && r->dir->nauto >= r->limits.max_families)
                rc = AM_REJECT_CARDINALITY;
            else if (!shared_take(r->dir, f ? f->shared : e, limit, r->limits.max_series))
                rc = AM_REJECT_CARDINALITY;
            else
                taken = true;
        } else if ((f ? f->nseries : 0) >= limit || r->nseries >= r->limits.max_series ||
                   (!f && r->nauto >= r->limits.max_families)) {
            rc = AM_REJECT_CARDINALITY;
        }
    }
    if (rc != AM_OK) {
        if (!f)
            am_family_def_clear(&fresh);
        goto out;
    }
    if (!f) {
        rc = AM_REJECT_CARDINALITY; /* out of memory below: counted, not fatal */
        if (r->dir && !e) {
            e = dir_add(r->dir, &fresh, false);
            if (!e) {
                am_family_def_clear(&fresh);
                goto give_back;
            }
            atomic_fetch_add_explicit(&e->nseries, 1, memory_order_relaxed);
        }
        f = add_family(r, &fresh, e ? e->catalogued : false);
        if (!f) {
            am_family_def_clear(&fresh);
            goto give_back;
        }
        f->shared = e;
    }
    if (dir_locked) {
        pthread_mutex_unlock(&r->dir->mu);
        dir_locked = false;
    }
    if (!se) {
        se = new_series(r, f, h, key, klen);
        if (!se) {
            rc = AM_REJECT_CARDINALITY;
            goto give_back;
        }
    }
    *f_out = f;
    *se_out = se;
    return update_series(r, f, se, s);

give_back:
    if (taken)
        shared_give(r->dir, f ? f->shared : e, 1);
out:
    if (dir_locked)
        pthread_mutex_unlock(&r->dir->mu);
    return rc;
}

/* Applies an accepted line's values to its series. Cannot fail but for a
 * set over its member limit. */
/* A stamped gauge's bookkeeping for am_registry_merge, after its values
 * were applied: when it was last set, what was added since, and when. */
static void stamp_gauge(const am_registry_t *r, am_series_t *se, const am_sample_t *s)
{
    for (size_t i = 0; i < s->nvalues; i++) {
        if (s->delta[i]) {
            se->v[GAUGE_DELTA] += s->values[i];
            se->v[GAUGE_DELTA_AT] = r->clock;
        } else {
            se->v[GAUGE_DELTA] = 0;
            se->v[GAUGE_SET_AT] = r->clock;
        }
    }
}

static am_reason_t update_series(am_registry_t *r, am_family_t *f, am_series_t *se,
                                 const am_sample_t *s)
{
    switch (f->def.type) {
        case AM_FAMILY_COUNTER:
            for (size_t i = 0; i < s->nvalues; i++)
                se->v[0] += counter_increment(s, i);
            break;
        case AM_FAMILY_GAUGE:
            if (f->def.is_set) {
                uint64_t mh = am_hash(s->set_value.p, s->set_value.n);
                if (!set_contains(se->set, mh)) {
                    if (set_count(se->set) >= AM_MAX_SET_MEMBERS || !take_set_member(r))
                        return AM_REJECT_CARDINALITY;
                    if (!set_insert(se->set, mh)) {
                        give_set_members(r, 1);
                        return AM_REJECT_CARDINALITY;
                    }
                }
                se->v[0] = (double)set_count(se->set);
                break;
            }
            for (size_t i = 0; i < s->nvalues; i++)
                se->v[0] = s->delta[i] ? se->v[0] + s->values[i] : s->values[i];
            if (f->nvalues > 1) /* several workers only */
                stamp_gauge(r, se, s);
            break;
        case AM_FAMILY_HISTOGRAM:
        case AM_FAMILY_SUMMARY: {
            double w = 1.0 / s->rate;
            for (size_t i = 0; i < s->nvalues; i++)
                observe(f, se, observed_value(s->type, s->values[i]), w);
            break;
        }
    }
    return AM_OK;
}

am_reason_t am_registry_apply(am_registry_t *r, const am_sample_t *s)
{
    am_family_t *f;
    am_series_t *se;
    return apply_full(r, s, &f, &se);
}

/* The values of a line whose name, type and tags the cache vouches for,
 * beyond the shortcut in apply_cached. Anything unusual returns non-OK and
 * the caller takes the full path, which finds and counts the exact reason. */
static __attribute__((noinline)) am_reason_t apply_cached_values(am_registry_t *r, am_family_t *f,
                                                                 am_series_t *se,
                                                                 const am_skeleton_t *sk,
                                                                 am_sample_t *s)
{
    if (snap_pending(f))
        snapshot_flush(r, f); /* the shortcuts left it to us (fast_type) */
    const char *v = sk->values.p, *end = sk->values.p + sk->values.n;
    s->type = sk->type_id;
    s->rate = sk->rate;
    s->nvalues = 0;
    for (;;) {
        const char *sep = v;
        while (sep < end && *sep != ':')
            sep++;
        const char *vend = sep;
        if (sep == end)
            sep = NULL;
        size_t k = s->nvalues;
        size_t vn = (size_t)(vend - v);
        if (k == AM_MAX_VALUES)
            return AM_REJECT_BAD_VALUE;
        /* "1".."999", what counters send, without a call. */
        if (vn >= 1 && vn <= 3 && v[0] >= '0' && v[0] <= '9' &&
            (vn < 2 || (v[1] >= '0' && v[1] <= '9')) && (vn < 3 || (v[2] >= '0' && v[2] <= '9')))
            s->values[k] = vn == 1   ? v[0] - '0'
                           : vn == 2 ? (v[0] - '0') * 10 + (v[1] - '0')
                                     : (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
        else if (!am_parse_number(v, vn, &s->values[k]))
            return AM_REJECT_BAD_VALUE;
        if (s->type == AM_TYPE_COUNTER && s->values[k] < 0)
            return AM_REJECT_NEGATIVE_COUNTER;
        s->delta[k] = v[0] == '+' || v[0] == '-';
        s->nvalues++;
        if (!sep)
            break;
        v = sep + 1;
    }
    am_reason_t rc = check_finite(&f->def, se->v, s);
    if (rc != AM_OK)
        return rc;
    return update_series(r, f, se, s);
}

/* The values of a line whose name, type and tags the cache vouches for.
 * Inlined into the hot loop for its first case; the rest is out of line. */
static inline __attribute__((always_inline)) am_reason_t
apply_cached(am_registry_t *r, am_family_t *f, am_series_t *se, const am_skeleton_t *sk,
             am_sample_t *s)
{
    const char *v = sk->values.p;
    /* The commonest line of all: a counter incremented by 1..999 at rate 1
     * (exactly what apply_cached_values and update_series would do). */
    if (sk->type_id == AM_TYPE_COUNTER && f->fast_type == AM_FAMILY_COUNTER && sk->rate == 1.0 &&
        sk->values.n >= 1 && sk->values.n <= 3) {
        unsigned d0 = (unsigned)(v[0] - '0'), d1 = sk->values.n > 1 ? (unsigned)(v[1] - '0') : 0,
                 d2 = sk->values.n > 2 ? (unsigned)(v[2] - '0') : 0;
        if (d0 <= 9 && d1 <= 9 && d2 <= 9) {
            unsigned x = sk->values.n == 1   ? d0
                         : sk->values.n == 2 ? d0 * 10 + d1
                                             : d0 * 100 + d1 * 10 + d2;
            double t = se->v[0] + x;
            if (!isfinite(t))
                return AM_REJECT_BAD_VALUE;
            se->v[0] = t;
            return AM_OK;
        }
    }
    /* A timer, histogram or distribution line with one value at rate 1 (a
     * latency, the next commonest): one number, one observation, no
     * division for the rate (what apply_cached_values and update_series
     * would do). Several values do not parse as one number. */
    double x;
    if (sk->rate == 1.0 && sk->type_id >= AM_TYPE_TIMER && sk->type_id <= AM_TYPE_DISTRIBUTION &&
        (f->fast_type == AM_FAMILY_HISTOGRAM || f->fast_type == AM_FAMILY_SUMMARY) &&
        am_parse_number(v, sk->values.n, &x)) {
        double y = observed_value(sk->type_id, x);
        if (!isfinite(se->v[0] + 1.0) || !isfinite(se->v[1] + y))
            return AM_REJECT_BAD_VALUE;
        observe(f, se, y, 1.0);
        return AM_OK;
    }
    return apply_cached_values(r, f, se, sk, s);
}

/* The line cache key: name, type and tags as sent. Each piece's length is
 * mixed in. The usual "type|#tags" layout is one contiguous piece; other
 * layouts hash type and tags apart, from another starting point, so the two
 * never meet. */
static void line_key(const am_skeleton_t *sk, uint64_t h[2])
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

/* A line the cache could not take: the full parse and apply, and the
 * cache learns the line when it was accepted (cacheable: sk describes it).
 * Out of line: the hot loop stays small. */
static __attribute__((noinline)) am_reason_t ingest_slow(am_registry_t *r, const char *p, size_t n,
                                                         bool cacheable, const uint64_t h[2],
                                                         am_sample_t *s)
{
    am_reason_t rc = am_parse_line(p, n, s);
    if (rc != AM_OK)
        return rc;
    am_family_t *f;
    am_series_t *se;
    rc = apply_full(r, s, &f, &se);
    if (rc == AM_OK && cacheable)
        am_linecache_insert(&r->cache, h, f, se);
    return rc;
}

/* One line whose skeleton and key are known (sk NULL: no skeleton, or not
 * one the cache keeps): the cache first, else the full parse and apply.
 * Inlined into both callers: this runs for every line. */
static inline __attribute__((always_inline)) am_reason_t
ingest_keyed(am_registry_t *r, const char *p, size_t n, const am_skeleton_t *sk,
             const uint64_t h[2], am_sample_t *s)
{
    if (sk) {
        if (r->cache.generation != r->generation) {
            am_linecache_clear(&r->cache);
            r->cache.generation = r->generation;
        }
        am_linecache_entry_t *e = am_linecache_find(&r->cache, h);
        if (e && apply_cached(r, e->family, e->series, sk, s) == AM_OK)
            return AM_OK;
    }
    return ingest_slow(r, p, n, sk != NULL, h, s);
}

am_reason_t am_registry_ingest_line(am_registry_t *r, const char *p, size_t n, am_sample_t *s)
{
    am_skeleton_t sk;
    uint64_t h[2] = {0, 0};
    bool cacheable = am_parse_skeleton(p, n, &sk) && sk.type_id != AM_TYPE_SET;
    if (cacheable)
        line_key(&sk, h);
    return ingest_keyed(r, p, n, cacheable ? &sk : NULL, h, s);
}

/* A line of a datagram, scanned and keyed, not yet applied. */
typedef struct line_ahead {
    const char *line; /* NULL: no more lines */
    size_t len;
    bool cacheable;
    am_skeleton_t sk;
    uint64_t h[2];
} line_ahead_t;

/* Scans the first non-empty line at or after pos into out, computes its key
 * and prefetches its cache slot; returns where the line after it starts. */
static inline __attribute__((always_inline)) size_t
scan_ahead(const am_registry_t *r, const char *p, size_t n, size_t pos, line_ahead_t *out)
{
    while (pos < n) {
        size_t lend;
        if (am_scan_line(r->dgram_index, p, n, pos, &out->sk, &lend)) {
            out->cacheable = out->sk.type_id != AM_TYPE_SET;
        } else {
            size_t len = lend - pos;
            if (len == 0 || (len == 1 && p[pos] == '\r')) {
                pos = lend + 1;
                continue;
            }
            out->cacheable =
                am_parse_skeleton(p + pos, len, &out->sk) && out->sk.type_id != AM_TYPE_SET;
        }
        out->line = p + pos;
        out->len = lend - pos;
        if (out->cacheable) {
            line_key(&out->sk, out->h);
            am_linecache_prefetch(&r->cache, out->h);
        }
        return lend + 1;
    }
    out->line = NULL;
    return n;
}

/* am_registry_ingest_datagram's fallback: am_parse_datagram's lines, one
 * am_registry_ingest_line each. */
typedef struct by_line {
    am_registry_t *r;
    am_sample_t *s;
    am_reject_fn on_reject;
    void *ctx;
    size_t accepted;
} by_line_t;

static void ingest_by_line(void *ctx, const char *line, size_t len)
{
    by_line_t *bl = ctx;
    am_reason_t rc = am_registry_ingest_line(bl->r, line, len, bl->s);
    if (rc == AM_OK)
        bl->accepted++;
    else
        bl->on_reject(bl->ctx, rc, line, len);
}

size_t am_registry_ingest_datagram(am_registry_t *r, const char *p, size_t n, am_sample_t *s,
                                   am_reject_fn on_reject, void *ctx)
{
    if (!r->dgram_index)
        r->dgram_index = malloc(sizeof(*r->dgram_index));
    if (n > AM_DGRAM_INDEX_MAX || !r->dgram_index) {
        /* Larger than any socket delivers, or out of memory: line by line. */
        by_line_t bl = {r, s, on_reject, ctx, 0};
        am_parse_datagram(p, n, ingest_by_line, &bl);
        return bl.accepted;
    }
    am_index_datagram(r->dgram_index, p, n);
    /* One line of lookahead: the next line is scanned and hashed, and its
     * cache slot prefetched, before this one is applied, so the slot is in
     * cache by the time it is probed. Scanning has no side effects: lines
     * are still applied strictly in order. */
    size_t accepted = 0;
    line_ahead_t buf[2], *cur = &buf[0], *next = &buf[1];
    size_t pos = scan_ahead(r, p, n, 0, cur);
    while (cur->line) {
        pos = scan_ahead(r, p, n, pos, next);
        am_reason_t rc =
            ingest_keyed(r, cur->line, cur->len, cur->cacheable ? &cur->sk : NULL, cur->h, s);
        if (rc == AM_OK)
            accepted++;
        else
            on_reject(ctx, rc, cur->line, cur->len);
        line_ahead_t *t = cur;
        cur = next;
        next = t;
    }
    return accepted;
}

/* ---- merging workers' registries (scrape snapshot) ---- */

/* Finite sums only: exposition never carries Inf. */
static double clamp_finite(double x)
{
    return isfinite(x) ? x : copysign(DBL_MAX, x);
}

/* Gauge d (the snapshot so far) combined with the same gauge of another
 * worker, both stamped: the newest set wins, plus the deltas of the other
 * side when it received deltas after that set (all of its deltas since its
 * own last set: the split around the newer set is not known). No set on
 * either side: the deltas add up. */
static void merge_stamped_gauge(double *d, const double *s)
{
    if (d[GAUGE_SET_AT] == 0 && s[GAUGE_SET_AT] == 0) {
        d[0] = clamp_finite(d[0] + s[0]);
        d[GAUGE_DELTA] = clamp_finite(d[GAUGE_DELTA] + s[GAUGE_DELTA]);
    } else {
        bool src_newer = s[GAUGE_SET_AT] > d[GAUGE_SET_AT];
        const double *l = src_newer ? s : d, *o = src_newer ? d : s;
        double add = o[GAUGE_DELTA_AT] > l[GAUGE_SET_AT] ? o[GAUGE_DELTA] : 0;
        double v = clamp_finite(l[0] + add), dl = clamp_finite(l[GAUGE_DELTA] + add);
        d[GAUGE_SET_AT] = l[GAUGE_SET_AT];
        d[0] = v;
        d[GAUGE_DELTA] = dl;
    }
    if (s[GAUGE_DELTA_AT] > d[GAUGE_DELTA_AT])
        d[GAUGE_DELTA_AT] = s[GAUGE_DELTA_AT];
}

static int merge_series(am_registry_t *dst, am_family_t *df, am_series_t *d, const am_family_t *sf,
                        const am_series_t *s)
{
    switch (df->def.type) {
        case AM_FAMILY_GAUGE:
            if (df->def.is_set) {
                const uint64_t *m;
                size_t i = 0;
                while (s->set && (m = am_table_each(&s->set->members, &i))) {
                    if (set_contains(d->set, *m))
                        continue;
                    if (set_count(d->set) >= AM_MAX_SET_MEMBERS)
                        break;
                    if (!set_insert(d->set, *m))
                        return -ENOMEM;
                    dst->nset_members++; /* counted, not limited: a copy */
                }
                d->v[0] = (double)set_count(d->set);
            } else if (df->nvalues >= GAUGE_STAMPED_VALUES && sf->nvalues >= GAUGE_STAMPED_VALUES) {
                merge_stamped_gauge(d->v, s->v);
            } else {
                d->v[0] = s->v[0]; /* unstamped: the later source wins */
            }
            break;
        default: {
            size_t n = values_per_series(&df->def, false);
            for (size_t i = 0; i < n; i++)
                d->v[i] = clamp_finite(d->v[i] + s->v[i]);
            break;
        }
    }
    return 0;
}

/* Sizes f's table for n series at once (merging a big family into an empty
 * one would otherwise rehash it a dozen times). */
static bool series_reserve(am_family_t *f, size_t n)
{
    return am_table_reserve(&f->series, n) == 0;
}

int am_registry_merge_family(am_registry_t *dst, const am_family_t *sf)
{
    am_family_t *df = find_family(dst, sf->def.name, strlen(sf->def.name));
    if (!df) {
        am_family_def_t copy;
        if (am_family_def_copy(&copy, &sf->def) != 0)
            return -ENOMEM;
        df = add_family(dst, &copy, sf->catalogued);
        if (!df) {
            am_family_def_clear(&copy);
            return -ENOMEM;
        }
    } else if (!am_family_def_same_shape(&df->def, &sf->def)) {
        /* Cannot happen between workers sharing a family directory;
         * never add values of another shape. */
        return 0;
    }
    if (!series_reserve(df, df->nseries + sf->nseries))
        return -ENOMEM;
    for (const am_series_t *s = sf->first; s; s = s->next) {
        const char *key = series_key_ptr(sf, s);
        am_series_t *d = find_series(df, s->hash, key, s->key_len);
        if (!d) {
            d = new_series(dst, df, s->hash, key, s->key_len);
            if (!d)
                return -ENOMEM;
        }
        if (merge_series(dst, df, d, sf, s) != 0)
            return -ENOMEM;
    }
    return 0;
}

int am_registry_merge_step(am_registry_t *dst, const am_registry_t *src, const am_family_t **cursor)
{
    const am_family_t *sf = *cursor;
    if (!sf) {
        dst->generation++;
        sf = src->first;
    }
    /* With a snapshot open on src, only the families still pending: the
     * others were merged early or are newer than the snapshot. */
    while (sf && src->snap_fn && !snap_pending(sf))
        sf = sf->next;
    if (sf) {
        int rc = am_registry_merge_family(dst, sf);
        if (rc != 0)
            return rc;
        if (src->snap_fn)
            am_registry_snapshot_taken((am_registry_t *)src, sf);
        sf = sf->next;
    }
    *cursor = sf;
    return sf ? 0 : 1;
}

int am_registry_merge(am_registry_t *dst, const am_registry_t *src)
{
    const am_family_t *cursor = NULL;
    int rc;
    while ((rc = am_registry_merge_step(dst, src, &cursor)) == 0)
        ;
    return rc < 0 ? rc : 0;
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

const am_series_t *am_family_first_series(const am_family_t *f)
{
    return f->first;
}

const am_series_t *am_series_next(const am_series_t *s)
{
    return s->next;
}

const char *am_series_key(const am_family_t *f, const am_series_t *s, size_t *len)
{
    *len = s->key_len;
    return series_key_ptr(f, s);
}

const double *am_series_values(const am_series_t *s)
{
    return s->v;
}
