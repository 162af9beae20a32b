/* merge: the workers' registries merged into one for a scrape. */
#include "registry-internal.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

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
                    if (am__set_contains(d->set, *m))
                        continue;
                    if (am__set_count(d->set) >= AM_MAX_SET_MEMBERS)
                        break;
                    if (!am__set_insert(d->set, *m))
                        return -ENOMEM;
                    dst->nset_members++; /* counted, not limited: a copy */
                }
                d->v[0] = (double)am__set_count(d->set);
            } else if (df->nvalues >= GAUGE_STAMPED_VALUES && sf->nvalues >= GAUGE_STAMPED_VALUES) {
                merge_stamped_gauge(d->v, s->v);
            } else {
                d->v[0] = s->v[0]; /* unstamped: the later source wins */
            }
            break;
        default: {
            size_t n = am__values_per_series(&df->def, false);
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
    const am_series_t *cursor = NULL;
    int rc = am_registry_merge_family_part(dst, sf, &cursor, SIZE_MAX);
    return rc < 0 ? rc : 0;
}

int am_registry_merge_family_part(am_registry_t *dst, const am_family_t *sf,
                                  const am_series_t **cursor, size_t max)
{
    dst->no_live_counts = true; /* a scrape's copy: the live view reads the workers' */
    am_family_t *df = am__family_find(dst, sf->def.name, strlen(sf->def.name));
    if (!df) {
        am_family_def_t copy;
        if (am_family_def_copy(&copy, &sf->def) != 0)
            return -ENOMEM;
        df = am__family_add(dst, &copy, sf->catalogued);
        if (!df) {
            am_family_def_clear(&copy);
            return -ENOMEM;
        }
    } else if (!am_family_def_same_shape(&df->def, &sf->def)) {
        /* An open family one worker saw with more labels than another:
         * the copy takes the longer list (keys leave trailing empty labels
         * out, so they stay comparable). Any other difference cannot
         * happen between workers sharing a family directory; never add
         * values of another shape. */
        if (!df->def.open_labels || !am_family_def_same_but_grown(&df->def, &sf->def)) {
            *cursor = NULL;
            return 1;
        }
        if (am_family_def_take_labels(&df->def, &sf->def) != 0)
            return -ENOMEM;
    }
    if (!*cursor && !series_reserve(df, df->nseries + sf->nseries))
        return -ENOMEM;
    const am_series_t *s = *cursor ? *cursor : am_family_first_series(sf);
    for (; s && max; s = am_series_next(s), max--) {
        const char *key = am__series_key(sf, s);
        am_series_t *d = am__series_find(df, s->hash, key, s->key_len);
        if (!d) {
            d = am__series_new(dst, df, s->hash, key, s->key_len);
            if (!d)
                return -ENOMEM;
            am__series_bytes_add(dst, am__series_cost(df->nvalues, s->key_len)); /* a copy */
            d->created = s->created;
        } else if (s->created < d->created) {
            d->created = s->created; /* the series began with its first worker */
        }
        if (merge_series(dst, df, d, sf, s) != 0)
            return -ENOMEM;
    }
    *cursor = s;
    return s ? 0 : 1;
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
    while (sf && src->snap_fn && !am__snap_pending(sf))
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
