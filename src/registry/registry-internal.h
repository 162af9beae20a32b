/* registry-internal: what the registry's own files share, and nobody else
 * includes. The registry is one module cut into files by concern:
 *
 *   registry.c  families (table, list, definitions, define, remove), the
 *               registry itself and the read side
 *   series.c    series storage (per-family table, creation, freeing) and
 *               set members with their budget
 *   famdir.c    the family directory shared by the workers' registries, and
 *               the series budgets they share
 *   apply.c     a line into its series: the full path (auto-creation, keys,
 *               limits) and the line-cache hot path
 *   snapshot.c  scrape snapshots while ingest goes on
 *   merge.c     the workers' registries merged into a scrape snapshot
 *
 * Functions named am__* are the registry's internals, called across these
 * files only. Ownership: a registry owns its families, a family its series
 * and definition strings, a series its set; the tables hold borrowed
 * pointers to them (freeing goes through the lists). */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "linecache.h"
#include "names.h"
#include "registry.h"
#include "table.h"

struct am_series {
    am_series_t *next; /* creation order, for rendering */
    uint64_t hash;
    struct am_set *set; /* set gauges only */
    uint32_t key_len;
    uint32_t seen;  /* r->now when a line last updated it; AM_SEEN_DEAD: expired */
    double created; /* unix seconds: OpenMetrics' _created, kept in the state file;
                     * set by whoever makes the series (a line, a merge, a restore) */
    double v[];     /* family->nvalues doubles, then key_len key bytes */
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
    /* famstats.c, under the directory's live_mu: series some worker holds
     * (one held by two workers counts once) and their label values */
    size_t nlive;
    struct am_valcounts *valcounts; /* owned; NULL: none yet */
    /* holder_t: this entry's series -> workers holding them. One table per
     * family, not one for the directory: it grows (rehashes) with the
     * family, never with every series of the process at once (a 1M-entry
     * rehash held a worker for 200 ms). esize 0: not used yet. */
    am_table_t holders;
} famdir_entry_t;

struct am_famdir {
    pthread_mutex_t mu; /* guards everything but the atomics */
    am_table_t live;    /* famdir_entry_t *: the live entries, by name hash */
    size_t nauto; /* live auto-created entries: limits.max_families */
    famdir_entry_t *all;
    am_namedex_t names;         /* sample names of the live entries */
    atomic_size_t nseries;      /* summed over families and workers */
    atomic_size_t nset_members; /* summed over set series and workers */
    atomic_size_t nbytes;       /* series bytes (am__series_cost), summed over workers */
    /* famstats.c: the live view's distinct series over the workers. A leaf
     * lock (nothing is locked while it is held), after mu when both are. */
    pthread_mutex_t live_mu;
    size_t values_tracked; /* over every entry's valcounts */
};

struct am_family {
    /* What apply_cached's shortcuts test: def.type, or FAST_PENDING while
     * the family is part of a scrape snapshot not yet rendered (the
     * snapshot callback runs before its first change). The hot path pays no
     * test of its own: the shortcuts fail over to apply_cached_values,
     * which checks (am__snap_pending). Next to def.type: both are read. */
    uint8_t fast_type;
    uint32_t snap_index; /* the family's place in that snapshot */
    uint64_t lines;      /* lines accepted (the hot path adds one): the live view's rate */
    am_family_def_t def;
    bool catalogued;
    famdir_entry_t *shared; /* directory entry (multi-worker registries), else NULL */
    uint64_t name_hash;
    am_family_t *next;
    am_family_t *prev; /* the list is doubly linked: removing a family costs O(1), not a
                        * walk (a reload replacing thousands of families) */
    am_table_t series; /* am_series_t *, by key hash; owns nothing */
    size_t nseries;
    am_series_t *first, *last;
    size_t nvalues;
    /* famstats.c: the live view's counts, kept as lines come */
    uint64_t rejects[AM_REASON_COUNT]; /* lines of this family rejected, by reason */
    struct am_valcounts *valcounts;    /* owned: per label, value -> series; NULL: none yet */
};

struct am_registry {
    am_limits_t limits;
    am_table_t families; /* am_family_t *, by name hash; owns nothing */
    size_t nfamilies;
    size_t nauto;
    size_t nseries;
    size_t nset_members; /* over every set series: limits.max_set_members */
    size_t nbytes;       /* am__series_cost of every live series: limits.max_series_bytes */
    am_family_t *first, *last;
    am_namedex_t names;  /* sample names the families own */
    uint64_t generation; /* bumped whenever series or families may be freed */
    am_linecache_t cache;
    am_dgram_index_t *dgram_index; /* am_registry_ingest_datagram's, made on first use */
    am_famdir_t *dir;              /* borrowed: shared by the workers; NULL with one loop */
    const am_mapping_t *mapping;   /* borrowed (am_registry_set_mapping); NULL: none */
    bool stamped;                  /* gauges carry set/delta stamps (GAUGE_* below) */
    double clock;                  /* stamp for gauge updates, set per batch */
    am_snapshot_fn snap_fn;        /* the scrape snapshot in progress, or NULL */
    void *snap_ctx;
    bool snap_flushed; /* every family of that snapshot taken: am__snapshot_flush_all
                        * has nothing to do (it runs at every define of a reload) */
    uint32_t now; /* the TTL clock (deciseconds), stamped on series a line updates */
    /* Expired series out of every list and table, not yet freed: the line
     * cache may still point at them (a hit tests AM_SEEN_DEAD) until a
     * scrub of the whole cache has pointed its entries elsewhere (expire.c).
     * Linked through next; all owned. */
    am_series_t *grave_new;   /* expired since the scrub in progress began */
    am_series_t *grave_scrub; /* expired before it: free once it ends */
    am_series_t *grave_free;  /* unreachable: freed a few per step */
    bool scrubbing;
    size_t scrub_pos;      /* the next cache slot to scrub */
    size_t scrub_cap;      /* the cache's size when the scrub began */
    uint64_t scrub_gen;    /* the registry generation then */
    /* famstats.c: rejected lines no family of this registry owns (by
     * reason), label values tracked over every family, and whether this
     * registry keeps them (not a scrape's merged copy) */
    uint64_t rejects_nofamily[AM_REASON_COUNT];
    size_t values_tracked;
    bool no_live_counts;
};

/* am_series_t.seen of an expired series: out of its family's table and
 * counts, still in its family's list until a sweep unlinks it. */
#define AM_SEEN_DEAD UINT32_MAX

/* am_family_t.fast_type of a family in a scrape snapshot, not yet taken. */
enum { FAST_PENDING = 0xff };

static inline bool am__snap_pending(const am_family_t *f)
{
    return f->fast_type == FAST_PENDING;
}

/* A gauge series of a stamped registry holds 3 more doubles after its value,
 * so that am_registry_merge can combine the same gauge fed by several
 * workers: sets are ordered by the batch clock, deltas are summed. */
enum { GAUGE_DELTA = 1, GAUGE_SET_AT = 2, GAUGE_DELTA_AT = 3, GAUGE_STAMPED_VALUES = 4 };

/* The key bytes of s, a series of f: after its values. */
static inline char *am__series_key(const am_family_t *f, const am_series_t *s)
{
    return (char *)(s->v + f->nvalues);
}


/* ---- registry.c ---- */

/* Doubles per series of def's family (the stamped form with stamps). */
size_t am__values_per_series(const am_family_def_t *def, bool stamped);
/* The family of this name (len bytes, not NUL-terminated), or NULL. */
am_family_t *am__family_find(const am_registry_t *r, const char *name, size_t len);
/* Appends a family; steals def's strings on success (def is zeroed).
 * NULL when out of memory (def untouched). */
am_family_t *am__family_add(am_registry_t *r, am_family_def_t *def, bool catalogued);

/* ---- series.c ---- */

am_set_t *am__set_new(void); /* owned by the caller: am__set_free; NULL when out of memory */
void am__set_free(am_set_t *set);
size_t am__set_count(const am_set_t *set);
/* Adds member hash h (a no-op when present); false when out of memory. */
bool am__set_insert(am_set_t *set, uint64_t h) __attribute__((warn_unused_result));
bool am__set_contains(const am_set_t *set, uint64_t h);
/* One more set member within limits.max_set_members (over every worker
 * with a directory): false when the limit is reached. */
bool am__set_member_take(am_registry_t *r) __attribute__((warn_unused_result));
/* Gives back n set members to that limit. */
void am__set_members_give(am_registry_t *r, size_t n);

/* hash_of for a family's series table (entries: am_series_t *). */
uint64_t am__series_hash(const void *entry);
/* The series of f with this key (hash h), or NULL. */
am_series_t *am__series_find(const am_family_t *f, uint64_t h, const char *key, size_t len);
/* What a series of a family with nvalues doubles and a key of klen bytes
 * counts against limits.max_series_bytes: its allocation (header, values,
 * key) plus AM_SERIES_OVERHEAD for the allocator's header and its slot in
 * the family's table. Set members are not in it (max_set_members). */
enum { AM_SERIES_OVERHEAD = 32 };
static inline size_t am__series_cost(size_t nvalues, size_t klen)
{
    return sizeof(am_series_t) + nvalues * sizeof(double) + klen + 1 + AM_SERIES_OVERHEAD;
}
/* Takes cost bytes from limits.max_series_bytes (counted over every
 * worker with a directory, atomically); false, nothing taken, when they
 * do not fit. */
bool am__series_bytes_take(am_registry_t *r, size_t cost) __attribute__((warn_unused_result));
/* Counts cost bytes whatever the limit (a merged copy), or gives them back. */
void am__series_bytes_add(am_registry_t *r, size_t cost);
void am__series_bytes_give(am_registry_t *r, size_t cost);
/* The unix time in seconds, to the millisecond: a new series' created. */
double am__wall_clock(void);
/* A new zeroed series of f with this key (copied), counted in r; NULL when
 * out of memory. Limits are the caller's business, its bytes too (taken
 * before: am__series_bytes_take; given back when it is retired or freed). */
am_series_t *am__series_new(am_registry_t *r, am_family_t *f, uint64_t h, const char *key,
                            size_t klen);
/* Frees every series of f and gives back what they took from the limits. */
void am__family_free_series(am_registry_t *r, am_family_t *f);
/* Expires s, a live series of f: out of f's table, its set freed, its
 * place under every limit given back, marked AM_SEEN_DEAD. It stays in f's
 * list (readers skip it) until a sweep of r unlinks it. */
void am__series_retire(am_registry_t *r, am_family_t *f, am_series_t *s);

/* ---- famstats.c (the live view's counts) ---- */

/* A series of f with this key was created: its label values count one
 * more series each (within the caps). */
void am__values_add(am_registry_t *r, am_family_t *f, const am_series_t *s);
/* A series of f with this key left (expired): one series fewer each. */
void am__values_remove(am_registry_t *r, am_family_t *f, const am_series_t *s);
/* Every series of f is about to be freed: forgets its value counts (with a
 * directory, f's live series leave the directory's counts). */
void am__values_free(am_registry_t *r, am_family_t *f);
/* f's directory entry becomes to (a redefinition): its live series move
 * from the old entry's counts to to's. */
void am__values_move(am_registry_t *r, am_family_t *f, famdir_entry_t *to);
/* Room for n more series of f in the directory's table of which of its
 * series some worker holds (a restore then never grows it step by step);
 * a no-op without a directory or on failure (it grows as it goes). */
void am__values_reserve(am_registry_t *r, am_family_t *f, size_t n);
/* The directory's side (famdir.c calls them): set up, free. */
int am__dir_live_init(am_famdir_t *d);
void am__dir_live_free(am_famdir_t *d);

/* ---- expire.c ---- */

/* Frees every expired series r still holds (only with r itself). */
void am__graves_free(am_registry_t *r);

/* ---- famdir.c (the caller holds d->mu unless said) ---- */

famdir_entry_t *am__dir_find(const am_famdir_t *d, const char *name, size_t len);
/* A live entry with a copy of def; NULL when out of memory. */
famdir_entry_t *am__dir_add(am_famdir_t *d, const am_family_def_t *def, bool catalogued);
/* The directory side of am_registry_define; NULL when out of memory. */
famdir_entry_t *am__dir_define(am_famdir_t *d, const am_family_def_t *def);
/* One series from the budgets the workers share (e's family, NULL for a
 * family about to be created, and the total); false when either is spent.
 * Lock-free (atomics). */
bool am__shared_take(am_famdir_t *d, famdir_entry_t *e, size_t limit, size_t total)
    __attribute__((warn_unused_result));
void am__shared_give(am_famdir_t *d, famdir_entry_t *e, size_t n);

/* ---- snapshot.c ---- */

/* f is about to change: the open snapshot takes it as it is now. */
void am__snapshot_flush(am_registry_t *r, am_family_t *f);
/* Every family still pending, before a change that touches them all. */
void am__snapshot_flush_all(am_registry_t *r);
