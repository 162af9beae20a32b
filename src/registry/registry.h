/* registry: metric families and their label-keyed series.
 *
 * family name -> am_family_t (hash table of families)
 * family      -> open-addressing table of series keyed by label values
 *
 * Each family's series table is a shard: one ingest loop owns it. With
 * several ingest workers (server --workers N) every worker has its own
 * registry; they share a family directory (am_famdir_t) so that a family has
 * one definition and the limits count every worker's series, and the scrape
 * merges them into a snapshot (am_registry_merge). A registry is not
 * thread-safe: its owner serialises every call (the server holds the
 * worker's mutex); only the directory is shared.
 *
 * Ingest of a line for an existing series does no allocation: the name is
 * mapped into a stack buffer, the key is built into a stack buffer, one hash,
 * one probe sequence. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mapping.h"
#include "parse.h"
#include "reasons.h"

#define AM_MAX_LABELS      AM_MAX_TAGS
#define AM_MAX_BUCKETS     64
#define AM_MAX_KEY_LEN     8192 /* all label values of one series, joined */
#define AM_MAX_SET_MEMBERS (1u << 20)
#define AM_MAX_AUTO_LABELS 16 /* label names of an auto-created family */

typedef enum am_family_type {
    AM_FAMILY_COUNTER,
    AM_FAMILY_GAUGE,
    AM_FAMILY_HISTOGRAM,
    AM_FAMILY_SUMMARY,
} am_family_type_t;

const char *am_family_type_name(am_family_type_t t); /* "counter", ...: static */

/* A family's definition: from the built-in catalog, the config file, or
 * created from a first line. Its strings are owned by whoever holds the
 * def and freed by am_family_def_clear (config's and the registry's are
 * malloc'd), except a catalog def, which borrows static strings and is never
 * cleared. The registry keeps copies (am_registry_define copies). */
typedef struct am_family_def {
    char *name; /* owned (see above); exposition name; counters end in _total */
    char *help; /* owned */
    am_family_type_t type;
    bool is_set;      /* a gauge fed by `s` lines */
    bool open_labels; /* auto-created: a line may add label names (at most
                       * AM_MAX_AUTO_LABELS), appended after the others; an
                       * empty value is an absent label */
    size_t nlabels;
    char *labels[AM_MAX_LABELS]; /* owned; sorted for auto-created families */
    size_t nbuckets; /* upper bounds, +Inf implied */
    double buckets[AM_MAX_BUCKETS];
    size_t max_series; /* 0 = the registry's per-family default */
    uint32_t ttl;      /* seconds without an update before a series expires;
                        * 0: the registry's default (limits.ttl);
                        * AM_TTL_NEVER: never, whatever the default */
} am_family_def_t;

typedef struct am_series am_series_t;
typedef struct am_family am_family_t;

typedef struct am_limits {
    size_t max_series_per_family; /* default 10,000 */
    size_t max_series;            /* total, default 1,000,000 */
    size_t max_families;          /* auto-created, default 1,000 */
    size_t max_set_members;       /* over every set series, default 1,048,576 */
    size_t max_series_bytes;      /* series memory (am_registry_series_bytes), default 128 MiB */
    uint32_t ttl;                 /* default series TTL, seconds; 0: none (the default) */
    unsigned tag_dialects;        /* AM_DIALECT_* mask, default all */
    bool auto_create;
} am_limits_t;

void am_limits_default(am_limits_t *l);

typedef struct am_registry am_registry_t;

/* A new empty registry, owned by the caller (am_registry_free); NULL when
 * out of memory. limits is copied (NULL: the defaults). */
am_registry_t *am_registry_new(const am_limits_t *limits);
/* Frees r and everything it owns: families, series, sets. NULL is fine. */
void am_registry_free(am_registry_t *r);

/* Adds or replaces a catalogued family; the registry copies def. A family
 * that exists with the same type, labels and buckets keeps its series (help
 * and limit are updated); otherwise it starts afresh. Other families whose
 * sample names def would repeat are removed. Returns how many were removed
 * (>= 0) or -ENOMEM. */
int am_registry_define(am_registry_t *r, const am_family_def_t *def)
    __attribute__((warn_unused_result));
/* New limits (copied) for series created from now on. */
void am_registry_set_limits(am_registry_t *r, const am_limits_t *limits);

/* The mapping file lines are mapped by from now on (borrowed: the caller
 * keeps m alive, unchanged, until it sets another or frees r; NULL: none).
 * The line cache forgets what the old one mapped. */
void am_registry_set_mapping(am_registry_t *r, const am_mapping_t *m);

/* Applies one parsed line (s and the bytes its slices point into are
 * borrowed for the call). Returns AM_OK or the reject reason. */
am_reason_t am_registry_apply(am_registry_t *r, const am_sample_t *s);

/* Parses and applies one raw line (the ingest hot path). A line whose name,
 * type and tags bytes were accepted before takes the line cache: values
 * parsed, series updated, nothing else. Any other line takes the full parse
 * (am_parse_line + am_registry_apply), so both paths give the same result
 * and the same reject reason. scratch is the caller's (it is large); p is
 * borrowed for the call. */
am_reason_t am_registry_ingest_line(am_registry_t *r, const char *p, size_t n,
                                    am_sample_t *scratch);

/* Every line of a datagram (lines end at '\n'; empty ones are skipped), as
 * am_registry_ingest_line would take them one by one, in one pass: the
 * usual layouts find their line end, fields and cache key without a second
 * scan. Calls on_reject(ctx, reason, line, len) for each line not applied
 * (line borrowed for that call): a reject reason, or AM_EVENT /
 * AM_SERVICE_CHECK for a DogStatsD event or service check (reasons.h: not
 * rejects). Returns how many were accepted as metrics. p is borrowed for
 * the call, scratch is the caller's. */
typedef void (*am_reject_fn)(void *ctx, am_reason_t reason, const char *line, size_t len);
size_t am_registry_ingest_datagram(am_registry_t *r, const char *p, size_t n, am_sample_t *scratch,
                                   am_reject_fn on_reject, void *ctx);

/* Read side, for rendering. Families in creation order; series in creation
 * order within a family. Every pointer returned is borrowed from r: valid
 * until r next changes (a line applied, a define, a merge into it, free),
 * so a renderer reads between two changes (on the loop that owns r). */
size_t am_registry_family_count(const am_registry_t *r);
size_t am_registry_series_count(const am_registry_t *r);
/* Set members counted against limits.max_set_members: this registry's, or
 * with a directory every worker's. */
size_t am_registry_set_member_count(const am_registry_t *r);
/* Bytes of series and their label text counted against
 * limits.max_series_bytes: this registry's, or with a directory every
 * worker's. */
size_t am_registry_series_bytes(const am_registry_t *r);
const am_family_t *am_registry_first(const am_registry_t *r);
const am_family_t *am_family_next(const am_family_t *f);
const am_family_def_t *am_family_def(const am_family_t *f);
size_t am_family_series_count(const am_family_t *f);
const am_series_t *am_family_first_series(const am_family_t *f);
const am_series_t *am_series_next(const am_series_t *s);
/* Label values, joined by '\0' in the family's label order (not
 * NUL-terminated: *len bytes). */
const char *am_series_key(const am_family_t *f, const am_series_t *s, size_t *len);
/* counter/gauge: v[0]. histogram: v[0]=count, v[1]=sum, v[2+i]=observations
 * in bucket i (not cumulative, i = nbuckets is +Inf). summary: count, sum.
 * Set gauges: v[0] = distinct members. */
const double *am_series_values(const am_series_t *s);
/* When s was created (unix seconds, millisecond resolution): its first
 * line, or as restored from a state file; OpenMetrics' _created. */
double am_series_created(const am_series_t *s);

/* ---- scrape snapshots while ingest goes on (one loop) ----
 *
 * A scrape renders one family at a time and lets ingest run in between; the
 * output is still the registry as it was when the scrape began. begin marks
 * every family pending (index = its place in creation order) and returns
 * how many there are. The scrape renders a family and calls taken, in any
 * order. Before anything changes a family still pending (a line for one of
 * its series, a new series, a redefinition or removal), the registry calls
 * fn(ctx, f, index) with f as it was, then counts f as taken: fn must render
 * it there and then. Families created after begin are not part of the
 * snapshot. end forgets the snapshot (families not taken stay unrendered).
 * One snapshot at a time. fn runs on the thread that changes r, under
 * whatever serialises r (one loop; a worker's mutex for the merge of
 * several, see am_registry_merge_step). */
typedef void (*am_snapshot_fn)(void *ctx, const am_family_t *f, size_t index); /* f: for the call */
size_t am_registry_snapshot_begin(am_registry_t *r, am_snapshot_fn fn, void *ctx);
void am_registry_snapshot_taken(am_registry_t *r, const am_family_t *f);
void am_registry_snapshot_end(am_registry_t *r);

/* ---- series lifecycle: TTL ----
 *
 * A series not updated for its family's TTL expires: it leaves the
 * exposition, gives back its place under every limit, and a later line
 * starts it afresh. The clock is the registry's own, in deciseconds of
 * any increasing clock: the ingest loop sets it per receive batch, and a
 * sweep sets it too (so that an idle registry still expires). Sweeps run
 * in steps: a step examines at most budget series from where the last one
 * stopped. */
#define AM_TTL_NEVER UINT32_MAX

void am_registry_set_now(am_registry_t *r, uint32_t now_ds);
/* Whether any family of r can expire (a default TTL, or a family's own). */
bool am_registry_has_ttl(const am_registry_t *r);

/* With several workers a series expires only when no worker updated it
 * for the TTL (else the merged counter would drop, which Prometheus reads
 * as a reset): the sweep of one worker's registry asks this callback about
 * a series that is stale there (f and s borrowed for the call); it returns
 * true to keep it, or false when the other workers' copies are stale too
 * (having expired them with am_registry_expire_copy). */
typedef bool (*am_expire_fn)(void *ctx, const am_family_t *f, const am_series_t *s);

typedef struct am_expire_cursor {
    am_family_t *family;  /* borrowed: the family the sweep is in; NULL: start */
    am_series_t *prev;    /* borrowed: the series before the next one; NULL: first */
    uint64_t generation;  /* of the registry when the cursor was left */
    am_expire_fn others;  /* NULL with one registry */
    void *others_ctx;
} am_expire_cursor_t;

/* One step of the sweep at time now_ds: examines at most budget series
 * after the cursor, expires those past their TTL (adding their count to
 * *expired) and leaves the cursor after the last one examined. Returns
 * true when the sweep reached the end of the registry (the cursor then
 * starts over). A zeroed cursor starts at the first family; a cursor left
 * before the registry changed shape starts over by itself. */
bool am_registry_expire_step(am_registry_t *r, am_expire_cursor_t *c, uint32_t now_ds,
                             size_t budget, size_t *expired);

/* For an am_expire_fn: whether r has a copy of series s of family f
 * (another registry's) that a line updated within its TTL, at now_ds. */
bool am_registry_copy_fresh(const am_registry_t *r, const am_family_t *f, const am_series_t *s,
                            uint32_t now_ds);
/* Expires r's copy of series s of family f (another registry's), if any. */
void am_registry_expire_copy(am_registry_t *r, const am_family_t *f, const am_series_t *s);

/* Looks a family up by exposition name (borrowed for the call); NULL if
 * absent. The family is borrowed as the read side's pointers are. */
const am_family_t *am_registry_find(const am_registry_t *r, const char *name);

/* ---- several ingest workers ----
 *
 * The family directory records every family's definition once for all the
 * workers' registries: the built-in and configured families (each
 * am_registry_define on a registry using the directory also defines them
 * there; defining the same def again is a no-op) and the auto-created ones,
 * whose first creator, in any worker, decides the definition (labels from
 * its first line) that the other workers then copy. It counts
 * limits.max_families over all workers and the series of every family and
 * in total over all workers (a series fed by two workers counts twice).
 * It is consulted only when a worker meets a family its registry lacks. */
typedef struct am_famdir am_famdir_t;

/* A new empty directory, owned by the caller (am_famdir_free); NULL when
 * out of memory. */
am_famdir_t *am_famdir_new(void);
/* Only after every registry using d has been freed. */
void am_famdir_free(am_famdir_t *d);
size_t am_famdir_family_count(am_famdir_t *d);       /* distinct families (locks) */
size_t am_famdir_series_count(const am_famdir_t *d); /* series summed over workers */

/* Makes r a worker registry sharing d (borrowed; must outlive r). Call on a
 * new registry, before any family is defined. */
void am_registry_use_directory(am_registry_t *r, am_famdir_t *d);

/* Gauges of r remember when they were last set and the deltas since (three
 * more doubles per gauge series), so that am_registry_merge can combine one
 * gauge fed by several workers. Call on a new registry. */
void am_registry_enable_gauge_stamps(am_registry_t *r);
/* The time (any increasing clock > 0) stamped on gauge updates from now on;
 * the server sets it once per receive batch. */
void am_registry_set_clock(am_registry_t *r, double now);

/* Adds src's families and series into dst (the scrape snapshot); src is only
 * read. Same-key series merge: counters and histogram/summary values add up;
 * set gauges hold the union of members; gauges with stamps (both registries)
 * take the most recent set plus the deltas received after it, or the sum of
 * deltas when neither side was set; without stamps src's value wins.
 * Families and series new to dst are appended in src's order; limits do not
 * apply. 0, or -ENOMEM with dst holding part of src (free it). */
int am_registry_merge(am_registry_t *dst, const am_registry_t *src)
    __attribute__((warn_unused_result));

/* One family of another registry into dst, as am_registry_merge does:
 * what a snapshot callback (below) does with a family about to change. */
int am_registry_merge_family(am_registry_t *dst, const am_family_t *sf)
    __attribute__((warn_unused_result));

/* am_registry_merge_family in parts: at most max series of sf, from
 * *cursor (NULL: its first), into dst; *cursor is left at the next series
 * (borrowed from sf). Returns 1 when sf is done (*cursor NULL), 0 when
 * series remain, -ENOMEM. Between calls sf may gain series (at its end) but
 * must lose none: no expiry sweep or define on its registry meanwhile. */
int am_registry_merge_family_part(am_registry_t *dst, const am_family_t *sf,
                                  const am_series_t **cursor, size_t max)
    __attribute__((warn_unused_result));

/* am_registry_merge one family at a time, so that a worker need be held
 * for a few families, not the whole merge (the caller decides how many per
 * hold). *cursor is NULL at the start (the first family) and is left at the
 * next family to merge. Merges one family: 0 when more remain, 1 when src
 * has none left, -ENOMEM as above. Between calls src may gain families
 * (those appended before the cursor passes the end are merged) but must
 * lose none: no am_registry_define on src mid-merge.
 * For a consistent copy, open a snapshot on src first
 * (am_registry_snapshot_begin, with a callback that merges the family it is
 * given with am_registry_merge_family): a step then merges only the next
 * family still pending and marks it taken, so every family is copied as it
 * was at the begin, whether by a step or early by the callback, and
 * families created after the begin wait for the next copy. */
int am_registry_merge_step(am_registry_t *dst, const am_registry_t *src, const am_family_t **cursor)
    __attribute__((warn_unused_result));

/* Frees a definition's strings (never on a catalog def: its strings are
 * static) and zeroes it. */
void am_family_def_clear(am_family_def_t *def);
/* Deep copy: dst owns new strings (free with am_family_def_clear); 0, or
 * -ENOMEM with dst holding nothing. */
int am_family_def_copy(am_family_def_t *dst, const am_family_def_t *src)
    __attribute__((warn_unused_result));
bool am_family_def_same_shape(const am_family_def_t *a, const am_family_def_t *b);
/* True when a and b have the same shape but for labels, and the labels of
 * one are the first labels of the other (an open family as two workers
 * saw it at different times). */
bool am_family_def_same_but_grown(const am_family_def_t *a, const am_family_def_t *b);
/* Appends copies of src's labels past dst's (dst's labels being the first
 * of src's): 0, or -ENOMEM with dst grown by part of them. */
int am_family_def_take_labels(am_family_def_t *dst, const am_family_def_t *src)
    __attribute__((warn_unused_result));
/* True when the two families would write a sample name in common (in either
 * format: x_total/x, x_bucket/_sum/_count, x_created). */
bool am_family_defs_clash(const am_family_def_t *a, const am_family_def_t *b);

/* ---- the live view's counts (famstats.c) ----
 *
 * Kept as lines come, so that reading them costs no scan of the series:
 * per family the lines accepted (one add on the hot path), the lines
 * rejected by reason, and for each label the series per value. A
 * rejected line counts against the family its name maps to when this
 * registry has one, else in the registry's own bucket (a line with no
 * name: syntax, bad_name; a family not created). Value counts are kept
 * for at most AM_VALUES_PER_LABEL distinct values per label and
 * AM_VALUES_PER_REGISTRY over all families, of at most AM_VALUE_MAX_LEN
 * bytes each: past a cap a new value is not counted until a tracked one
 * has no series left, so counts are exact until then and a lower bound
 * after. A scrape's merged copy (am_registry_merge into it) keeps none. */
#define AM_VALUES_PER_LABEL    1000
#define AM_VALUES_PER_REGISTRY 100000
#define AM_VALUE_MAX_LEN       128

uint64_t am_family_lines(const am_family_t *f);
uint64_t am_family_rejects(const am_family_t *f, am_reason_t reason);
uint64_t am_registry_rejects_without_family(const am_registry_t *r, am_reason_t reason);

/* Counts a rejected line (reason a reject, line the raw StatsD line,
 * borrowed for the call; NULL: a line without a name) against the family
 * its name maps to (as is, or with _total), else the registry's bucket.
 * Costs a name mapping and a lookup: rejects only. */
void am_registry_count_reject(am_registry_t *r, am_reason_t reason, const char *line, size_t len);

/* One tracked value of a label and its series. value borrowed until r
 * next changes (or, in a ranking the caller keeps, as its source says). */
typedef struct am_label_value {
    const char *value; /* not NUL-terminated: len bytes */
    size_t len;
    size_t series;
} am_label_value_t;

/* The tracked values of label i of f (i < its def's nlabels), in no order:
 * *pos = 0 first; false after the last. */
bool am_family_label_value_next(const am_family_t *f, size_t label, size_t *pos,
                                am_label_value_t *out);

/* The same for any set of value counts (a family's, or the directory's
 * below). */
typedef struct am_valcounts am_valcounts_t;
bool am_valcounts_next(const am_valcounts_t *vc, size_t label, size_t *pos, am_label_value_t *out);
const am_valcounts_t *am_family_valcounts(const am_family_t *f); /* borrowed as f; NULL: none */

/* Several workers: the series of each family counted once however many
 * workers hold it (the directory keeps which series some worker holds),
 * and their label values. fn(ctx, def, series, vc) for each live family
 * of d, under the directory's locks: def and vc are borrowed for the call
 * (vc NULL: no values); fn must not call into d or a registry using it.
 * Costs 33-42 bytes per series with several workers (the holders
 * table). */
typedef void (*am_famdir_live_fn)(void *ctx, const am_family_def_t *def, size_t series,
                                  const am_valcounts_t *vc);
void am_famdir_each_live(am_famdir_t *d, am_famdir_live_fn fn, void *ctx);

/* Ranks v into top[0..*n) (at most k entries, most series first, then by
 * value bytes): kept when it beats the last. */
void am_label_value_rank(am_label_value_t *top, size_t *n, size_t k, const am_label_value_t *v);
