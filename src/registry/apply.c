/* apply: a line into its series. The full path parses nothing itself: it
 * takes an am_sample_t, finds or creates the family (auto-creation) and
 * the series (key, limits) and applies the values. The hot path takes a
 * line whose name, type and tags bytes the line cache knows and applies its
 * values to the series the cache remembers, with no name or tag work. */
#include "registry-internal.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "hash.h"

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
    size_t n = am_map_name(raw->p, raw->n, out, cap - 1); /* room for the NUL */
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

/* A line's tag keys as label names: mapped, each valid, none twice ("a.b"
 * and "a_b" in one line). */
typedef struct line_labels {
    char name[AM_MAX_TAGS][AM_MAX_LABEL_NAME_LEN + 2];
    size_t len[AM_MAX_TAGS];
} line_labels_t;

/* Maps tag i of s into ll: a valid label name, not one a tag before it
 * mapped to too. */
static am_reason_t map_tag(am_family_type_t type, const am_sample_t *s, size_t i, line_labels_t *ll)
{
    size_t n = map_label(&s->tag_key[i], ll->name[i], sizeof(ll->name[i]));
    if (n == 0 || reserved_label(type, ll->name[i], n))
        return AM_REJECT_BAD_LABEL;
    ll->name[i][n] = '\0';
    ll->len[i] = n;
    for (size_t j = 0; j < i; j++)
        if (ll->len[j] == n && memcmp(ll->name[j], ll->name[i], n) == 0)
            return AM_REJECT_BAD_LABEL;
    return AM_OK;
}

/* The definition a first line gives an unknown name: its labels are the
 * tags with a value (an empty value is an absent label). Nothing is added
 * to the registry here: the line may still be rejected further right. */
static am_reason_t auto_def(am_registry_t *r, const char *name, size_t len, const am_sample_t *s,
                            const am_mapping_result_t *mr, line_labels_t *ll, am_family_def_t *def)
{
    if (!r->limits.auto_create)
        return AM_REJECT_UNKNOWN_FAMILY;
    memset(def, 0, sizeof(*def));
    def->open_labels = true;
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
            if (mr && mr->observer_type == AM_MAPPING_SUMMARY) {
                def->type = AM_FAMILY_SUMMARY;
            } else if (mr && mr->nbuckets) {
                def->type = AM_FAMILY_HISTOGRAM;
                def->nbuckets = mr->nbuckets;
                memcpy(def->buckets, mr->buckets, mr->nbuckets * sizeof(double));
            } else {
                def->type = AM_FAMILY_HISTOGRAM;
                def->nbuckets = sizeof(am_default_buckets) / sizeof(am_default_buckets[0]);
                memcpy(def->buckets, am_default_buckets, sizeof(am_default_buckets));
            }
            break;
    }
    if (mr)
        def->ttl = mr->ttl; /* the mapping's series TTL; 0: the default */
    def->name = strndup(name, len);
    def->help = strdup(mr && mr->help ? mr->help : auto_help(s->type));
    if (!def->name || !def->help) {
        am_family_def_clear(def);
        return AM_REJECT_CARDINALITY;
    }
    /* The name clash is a fault of the name and type: met before the tags. */
    if (am_namedex_clash(r->dir ? &r->dir->names : &r->names, def, NULL)) {
        am_family_def_clear(def);
        return AM_REJECT_TYPE_CONFLICT;
    }
    am_reason_t rc = AM_OK;
    for (size_t i = 0; rc == AM_OK && i < s->ntags; i++) {
        rc = map_tag(def->type, s, i, ll);
        if (rc != AM_OK || s->tag_value[i].n == 0)
            continue;
        if (def->nlabels == AM_MAX_AUTO_LABELS) {
            rc = AM_REJECT_BAD_LABEL;
            break;
        }
        def->labels[def->nlabels] = strndup(ll->name[i], ll->len[i]);
        if (!def->labels[def->nlabels])
            rc = AM_REJECT_CARDINALITY;
        else
            def->nlabels++;
    }
    if (rc != AM_OK) {
        am_family_def_clear(def);
        return rc;
    }
    qsort(def->labels, def->nlabels, sizeof(def->labels[0]), cmp_str);
    return AM_OK;
}

/* Label names a line brings that its open family lacks: indexes into the
 * line's tags, in line order. */
typedef struct new_labels {
    size_t n;
    size_t tag[AM_MAX_AUTO_LABELS];
} new_labels_t;

static size_t find_label(const am_family_def_t *def, const char *name, size_t n)
{
    size_t k = 0;
    while (k < def->nlabels &&
           !(strncmp(def->labels[k], name, n) == 0 && def->labels[k][n] == '\0'))
        k++;
    return k;
}

/* Builds the series key: label values in def's label order, joined by '\0',
 * trailing empty values left out (an absent label and an empty one are the
 * same, and a label set that grows does not change the keys of the series
 * that lack the new labels). A label def does not declare is
 * undeclared_label, except in an open family: there a tag with a value goes
 * into grow (placed after def's labels in the key), an empty one is absent. */
static am_reason_t build_key(const am_family_def_t *def, const am_sample_t *s, line_labels_t *ll,
                             char *key, size_t cap, size_t *klen_out, new_labels_t *grow)
{
    const am_slice_t *val_at[AM_MAX_LABELS] = {0};
    grow->n = 0;
    for (size_t i = 0; i < s->ntags; i++) {
        /* one tag at a time: the first fault from the left is the reason */
        am_reason_t rc = map_tag(def->type, s, i, ll);
        if (rc != AM_OK)
            return rc;
        size_t k = find_label(def, ll->name[i], ll->len[i]);
        if (k == def->nlabels) {
            if (!def->open_labels)
                return AM_REJECT_UNDECLARED_LABEL;
            if (s->tag_value[i].n == 0)
                continue;
            if (def->nlabels + grow->n == AM_MAX_AUTO_LABELS)
                return AM_REJECT_BAD_LABEL;
            k = def->nlabels + grow->n;
            grow->tag[grow->n++] = i;
        }
        val_at[k] = &s->tag_value[i];
    }
    size_t klen = 0, kept = 0;
    for (size_t k = 0; k < def->nlabels + grow->n; k++) {
        size_t vn = val_at[k] ? val_at[k]->n : 0;
        if (klen + vn + 1 > cap)
            return AM_REJECT_BAD_LABEL;
        if (k > 0)
            key[klen++] = '\0';
        if (vn) {
            memcpy(key + klen, val_at[k]->p, vn);
            klen += vn;
            kept = klen;
        }
    }
    *klen_out = kept;
    return AM_OK;
}

/* Adds the labels of grow (tags of s, named in ll) to def, an open family's
 * definition, and with a directory entry e to e's as well, so that every
 * worker places a label at the same position: labels other workers added
 * to e since def was copied come first. Takes the directory lock unless the
 * caller holds it. AM_OK, AM_REJECT_BAD_LABEL past AM_MAX_AUTO_LABELS, or
 * AM_REJECT_CARDINALITY when out of memory (def may then hold part). */
static am_reason_t grow_labels(am_registry_t *r, am_family_def_t *def, famdir_entry_t *e,
                               bool dir_locked, const line_labels_t *ll, const new_labels_t *grow)
{
    am_reason_t rc = AM_OK;
    if (e && !dir_locked)
        pthread_mutex_lock(&r->dir->mu);
    if (e && am_family_def_take_labels(def, &e->def) != 0)
        rc = AM_REJECT_CARDINALITY;
    for (size_t j = 0; rc == AM_OK && j < grow->n; j++) {
        const char *name = ll->name[grow->tag[j]];
        size_t n = ll->len[grow->tag[j]];
        if (find_label(def, name, n) < def->nlabels)
            continue; /* another worker added it meanwhile */
        if (def->nlabels == AM_MAX_AUTO_LABELS) {
            rc = AM_REJECT_BAD_LABEL;
            break;
        }
        char *mine = strndup(name, n), *shared = e ? strndup(name, n) : NULL;
        if (!mine || (e && !shared)) {
            free(mine);
            free(shared);
            rc = AM_REJECT_CARDINALITY;
            break;
        }
        def->labels[def->nlabels++] = mine;
        if (e) {
            assert(e->def.nlabels + 1 == def->nlabels);
            e->def.labels[e->def.nlabels++] = shared;
        }
    }
    if (e && !dir_locked)
        pthread_mutex_unlock(&r->dir->mu);
    return rc;
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

static am_reason_t update_series(am_registry_t *r, am_family_t *f, am_series_t *se,
                                 const am_sample_t *s);

/* mr: the mapping that matched s (what a family it creates takes from
 * it), or NULL. */
static am_reason_t apply_full(am_registry_t *r, const am_sample_t *s, const am_mapping_result_t *mr,
                              am_family_t **f_out, am_series_t **se_out)
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
    am_family_t *f = am__family_find(r, name, len);
    famdir_entry_t *e = NULL; /* directory entry of a family new to this registry */
    bool dir_locked = false;
    am_family_def_t fresh;
    const am_family_def_t *def;
    line_labels_t ll;
    am_reason_t rc;
    if (f) {
        if (!type_fits(&f->def, s->type))
            return AM_REJECT_TYPE_CONFLICT;
        if (am__snap_pending(f))
            am__snapshot_flush(r, f);
        def = &f->def;
    } else {
        if (r->dir) {
            /* Slow path of a worker: a name its registry does not have. The
             * first worker to create a family decides its definition, the
             * others copy it; the lock is held until the family is added or
             * the line rejected, so two workers cannot both create it. */
            pthread_mutex_lock(&r->dir->mu);
            dir_locked = true;
            e = am__dir_find(r->dir, name, len);
        }
        if (e) {
            if (!type_fits(&e->def, s->type))
                rc = AM_REJECT_TYPE_CONFLICT;
            else if (am_family_def_copy(&fresh, &e->def) != 0)
                rc = AM_REJECT_CARDINALITY;
            else
                rc = AM_OK;
        } else {
            rc = auto_def(r, name, len, s, mr, &ll, &fresh);
        }
        if (rc != AM_OK)
            goto out; /* fresh holds nothing */
        def = &fresh;
    }

    char key[AM_MAX_KEY_LEN];
    size_t klen = 0;
    new_labels_t grow;
    rc = build_key(def, s, &ll, key, sizeof(key), &klen, &grow);
    uint64_t h = am_hash(key, klen);
    am_series_t *se = NULL;
    if (rc == AM_OK && f)
        se = am__series_find(f, h, key, klen);
    if (rc == AM_OK) {
        double zeros[2] = {0, 0};
        rc = check_finite(def, se ? se->v : zeros, s);
    }
    bool taken = false;
    size_t nvalues = f ? f->nvalues : am__values_per_series(def, r->stamped);
    size_t bytes = 0; /* taken from limits.max_series_bytes for the new series */
    if (rc == AM_OK && !se) {
        size_t limit = def->max_series ? def->max_series : r->limits.max_series_per_family;
        if (am__series_bytes_take(r, am__series_cost(nvalues, klen)))
            bytes = am__series_cost(nvalues, klen);
        if (!bytes) {
            rc = AM_REJECT_CARDINALITY;
        } else if (r->dir) {
            /* Limits count the series of every worker (one seen by two
             * workers counts twice). */
            if (!f && !e && r->dir->nauto >= r->limits.max_families)
                rc = AM_REJECT_CARDINALITY;
            else if (!am__shared_take(r->dir, f ? f->shared : e, limit, r->limits.max_series))
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
        goto give_back;
    }
    if (grow.n) {
        /* New labels for an open family (no series of it here has them,
         * so the series is new): the label set grows, and the key is
         * built again, as the labels now stand. */
        am_family_def_t *gdef = f ? &f->def : &fresh;
        rc = grow_labels(r, gdef, f ? f->shared : e, dir_locked, &ll, &grow);
        if (rc == AM_OK)
            rc = build_key(gdef, s, &ll, key, sizeof(key), &klen, &grow);
        if (rc != AM_OK) {
            if (!f)
                am_family_def_clear(&fresh);
            goto give_back;
        }
        assert(grow.n == 0);
        h = am_hash(key, klen);
        /* the longer key is charged (its few more bytes may pass the limit) */
        am__series_bytes_add(r, am__series_cost(nvalues, klen));
        am__series_bytes_give(r, bytes);
        bytes = am__series_cost(nvalues, klen);
    }
    if (!f) {
        rc = AM_REJECT_CARDINALITY; /* out of memory below: counted, not fatal */
        if (r->dir && !e) {
            e = am__dir_add(r->dir, &fresh, false);
            if (!e) {
                am_family_def_clear(&fresh);
                goto give_back;
            }
            atomic_fetch_add_explicit(&e->nseries, 1, memory_order_relaxed);
        }
        f = am__family_add(r, &fresh, e ? e->catalogued : false);
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
        se = am__series_new(r, f, h, key, klen);
        if (!se) {
            rc = AM_REJECT_CARDINALITY;
            goto give_back;
        }
        /* the wall clock, not the loop's: _created is a unix time, and a
         * new series is the slow path, where one vDSO call does not show */
        se->created = am__wall_clock();
    }
    *f_out = f;
    *se_out = se;
    return update_series(r, f, se, s);

give_back:
    if (taken)
        am__shared_give(r->dir, f ? f->shared : e, 1);
    if (bytes)
        am__series_bytes_give(r, bytes);
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
    se->seen = r->now;
    switch (f->def.type) {
        case AM_FAMILY_COUNTER:
            for (size_t i = 0; i < s->nvalues; i++)
                se->v[0] += counter_increment(s, i);
            break;
        case AM_FAMILY_GAUGE:
            if (f->def.is_set) {
                uint64_t mh = am_hash(s->set_value.p, s->set_value.n);
                if (!am__set_contains(se->set, mh)) {
                    if (am__set_count(se->set) >= AM_MAX_SET_MEMBERS || !am__set_member_take(r))
                        return AM_REJECT_CARDINALITY;
                    if (!am__set_insert(se->set, mh)) {
                        am__set_members_give(r, 1);
                        return AM_REJECT_CARDINALITY;
                    }
                }
                se->v[0] = (double)am__set_count(se->set);
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
    return apply_full(r, s, NULL, &f, &se);
}

/* The values of a line whose name, type and tags the cache vouches for,
 * beyond the shortcut in apply_cached. Anything unusual returns non-OK and
 * the caller takes the full path, which finds and counts the exact reason. */
static __attribute__((noinline)) am_reason_t apply_cached_values(am_registry_t *r, am_family_t *f,
                                                                 am_series_t *se,
                                                                 const am_skeleton_t *sk,
                                                                 am_sample_t *s)
{
    if (am__snap_pending(f))
        am__snapshot_flush(r, f); /* the shortcuts left it to us (fast_type) */
    s->type = sk->type_id;
    s->rate = sk->rate;
    am_reason_t rc = am_parse_values(sk->values.p, sk->values.n, s);
    if (rc != AM_OK)
        return rc;
    if (s->type == AM_TYPE_COUNTER)
        for (size_t k = 0; k < s->nvalues; k++)
            if (s->values[k] < 0)
                return AM_REJECT_NEGATIVE_COUNTER;
    rc = check_finite(&f->def, se->v, s);
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
    if (se->seen == AM_SEEN_DEAD)
        return AM_REJECT_CARDINALITY; /* expired: the full path starts it afresh */
    const char *v = sk->values.p;
    /* The commonest line of all: a counter incremented by 0..999 at rate 1
     * (exactly what apply_cached_values and update_series would do). */
    unsigned x;
    if (sk->type_id == AM_TYPE_COUNTER && f->fast_type == AM_FAMILY_COUNTER && sk->rate == 1.0 &&
        am_parse_small_count(v, sk->values.n, &x)) {
        double t = se->v[0] + x;
        if (!isfinite(t))
            return AM_REJECT_BAD_VALUE;
        se->v[0] = t;
        se->seen = r->now;
        return AM_OK;
    }
    /* A timer, histogram or distribution line with one value at rate 1 (a
     * latency, the next commonest): one number, one observation, no
     * division for the rate (what apply_cached_values and update_series
     * would do). Several values do not parse as one number. */
    double raw;
    if (sk->rate == 1.0 && sk->type_id >= AM_TYPE_TIMER && sk->type_id <= AM_TYPE_DISTRIBUTION &&
        (f->fast_type == AM_FAMILY_HISTOGRAM || f->fast_type == AM_FAMILY_SUMMARY) &&
        am_parse_number(v, sk->values.n, &raw)) {
        double y = observed_value(sk->type_id, raw);
        if (!isfinite(se->v[0] + 1.0) || !isfinite(se->v[1] + y))
            return AM_REJECT_BAD_VALUE;
        observe(f, se, y, 1.0);
        se->seen = r->now;
        return AM_OK;
    }
    return apply_cached_values(r, f, se, sk, s);
}

/* A line the cache could not take: the full parse and apply, and the
 * cache learns the line when it was accepted (cacheable: sk describes it).
 * Out of line: the hot loop stays small. */
/* What a cache entry of a line a mapping dropped points at: family NULL,
 * and a series that is never dead (expire.c's scrub reads it). */
static const am_series_t dropped = {.seen = 0};

/* Sets the label `name` to value among s's tags: a tag of that name (as
 * mapped) takes the mapping's value, unless honor: then the tag wins. */
static am_reason_t put_label(am_sample_t *s, am_slice_t name, am_slice_t value, bool honor)
{
    char key[AM_MAX_LABEL_NAME_LEN + 2];
    for (size_t i = 0; i < s->ntags; i++) {
        size_t k = map_label(&s->tag_key[i], key, sizeof(key));
        if (k == name.n && memcmp(key, name.p, k) == 0) {
            if (!honor)
                s->tag_value[i] = value;
            return AM_OK;
        }
    }
    if (s->ntags == AM_MAX_TAGS)
        return AM_REJECT_BAD_LABEL;
    s->tag_key[s->ntags] = name;
    s->tag_value[s->ntags] = value;
    s->ntags++;
    return AM_OK;
}

/* Rewrites s, a parsed line, as the mapping m says (mr filled, its strings
 * in buf): the mapped name, the mapping's labels among the line's tags, the
 * scale on observed values. AM_OK when mapped (*mapped set) or not matched;
 * AM_MAPPING_DROPPED; or the reject reason. */
static am_reason_t map_sample(const am_mapping_t *m, am_sample_t *s, char *buf, size_t cap,
                              am_mapping_result_t *mr, bool *mapped)
{
    *mapped = false;
    int rc = am_mapping_match(m, s->name.p, s->name.n, s->type, buf, cap, mr);
    if (rc == AM_MAPPING_NO_MATCH)
        return AM_OK;
    if (rc == AM_MAPPING_DROP)
        return AM_MAPPING_DROPPED;
    if (rc < 0)
        return AM_REJECT_BAD_LABEL; /* the expanded name and labels are too long */
    s->name = mr->name;             /* escaped and checked by apply_full, as any name */
    for (size_t i = 0; i < mr->nlabels; i++) {
        am_reason_t lr = put_label(s, mr->label_name[i], mr->label_value[i], mr->honor_labels);
        if (lr != AM_OK)
            return lr;
    }
    if (mr->scale != 1.0 && s->type >= AM_TYPE_TIMER && s->type <= AM_TYPE_DISTRIBUTION)
        for (size_t i = 0; i < s->nvalues; i++) {
            s->values[i] *= mr->scale;
            if (!isfinite(s->values[i]))
                return AM_REJECT_BAD_VALUE;
        }
    *mapped = true;
    return AM_OK;
}

static __attribute__((noinline)) am_reason_t ingest_slow(am_registry_t *r, const char *p, size_t n,
                                                         bool cacheable, const uint64_t h[2],
                                                         am_sample_t *s)
{
    am_reason_t rc = am_parse_line_in(p, n, r->limits.tag_dialects, s);
    if (rc != AM_OK)
        return rc;
    am_mapping_result_t mr;
    bool mapped = false;
    char buf[2 * AM_MAX_KEY_LEN]; /* the mapped name and label values */
    if (r->mapping) {
        rc = map_sample(r->mapping, s, buf, sizeof(buf), &mr, &mapped);
        if (rc == AM_MAPPING_DROPPED && cacheable)
            am_linecache_insert(&r->cache, h, NULL, (void *)&dropped);
        if (rc != AM_OK)
            return rc;
        /* A scaled observation cannot take the cache: its shortcuts do not
         * scale. */
        if (mapped && mr.scale != 1.0 && s->type >= AM_TYPE_TIMER &&
            s->type <= AM_TYPE_DISTRIBUTION)
            cacheable = false;
    }
    am_family_t *f;
    am_series_t *se;
    rc = apply_full(r, s, mapped ? &mr : NULL, &f, &se);
    if (rc == AM_OK)
        f->lines++; /* the live view's rate */
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
        if (e && !e->family) {
            /* a line a mapping drops: its values must still parse, as on
             * the full path, which finds the reason when they do not */
            if (am_parse_values(sk->values.p, sk->values.n, s) == AM_OK)
                return AM_MAPPING_DROPPED;
        } else if (e && apply_cached(r, e->family, e->series, sk, s) == AM_OK) {
            ((am_family_t *)e->family)->lines++; /* the live view's rate: one add per line */
            return AM_OK;
        }
    }
    return ingest_slow(r, p, n, sk != NULL, h, s);
}

am_reason_t am_registry_ingest_line(am_registry_t *r, const char *p, size_t n, am_sample_t *s)
{
    am_skeleton_t sk;
    uint64_t h[2] = {0, 0};
    bool cacheable = am_parse_skeleton(p, n, &sk) && sk.type_id != AM_TYPE_SET;
    if (cacheable)
        am_linecache_key(&sk, h);
    return ingest_keyed(r, p, n, cacheable ? &sk : NULL, h, s);
}

/* A line of a datagram, scanned and keyed, not yet applied. */
typedef struct line_ahead {
    am_dgram_line_t line; /* line.p NULL: no more lines */
    bool cacheable;
    uint64_t h[2];
} line_ahead_t;

/* The next line at or after pos into out, with its cache key computed and
 * its cache slot prefetched; returns where the line after it starts. */
static inline __attribute__((always_inline)) size_t
scan_ahead(const am_registry_t *r, const char *p, size_t n, size_t pos, line_ahead_t *out)
{
    pos = am_next_line(r->dgram_index, p, n, pos, &out->line);
    out->cacheable = out->line.p && out->line.has_skeleton && out->line.sk.type_id != AM_TYPE_SET;
    if (out->cacheable) {
        am_linecache_key(&out->line.sk, out->h);
        am_linecache_prefetch(&r->cache, out->h);
    }
    return pos;
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
    while (cur->line.p) {
        pos = scan_ahead(r, p, n, pos, next);
        const am_dgram_line_t *l = &cur->line;
        am_reason_t rc = ingest_keyed(r, l->p, l->n, cur->cacheable ? &l->sk : NULL, cur->h, s);
        if (rc == AM_OK)
            accepted++;
        else
            on_reject(ctx, rc, l->p, l->n);
        line_ahead_t *t = cur;
        cur = next;
        next = t;
    }
    return accepted;
}
