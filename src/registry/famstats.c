/* famstats: the counts the live view reads (GET /api/v1/families), kept as
 * lines come so that a read scans no series: lines accepted and rejected
 * per family, and per label the series each value has. */
#include "registry-internal.h"

#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* One tracked value of one label: a hash-first table entry. */
typedef struct valcount {
    uint64_t hash; /* am_table_hash of the value's hash */
    char *value;   /* owned, len bytes (+ NUL) */
    uint32_t len;  /* at most AM_VALUE_MAX_LEN */
    uint32_t series;
} valcount_t;

/* Per label of a family: value -> series (tables empty until used). */
struct am_valcounts {
    am_table_t label[AM_MAX_LABELS];
};

uint64_t am_family_lines(const am_family_t *f)
{
    return f->lines;
}

uint64_t am_family_rejects(const am_family_t *f, am_reason_t reason)
{
    return AM_IS_REJECT(reason) ? f->rejects[reason] : 0;
}

uint64_t am_registry_rejects_without_family(const am_registry_t *r, am_reason_t reason)
{
    return AM_IS_REJECT(reason) ? r->rejects_nofamily[reason] : 0;
}

void am_registry_count_reject(am_registry_t *r, am_reason_t reason, const char *line, size_t len)
{
    if (!AM_IS_REJECT(reason))
        return;
    am_family_t *f = NULL;
    const char *colon = line ? memchr(line, ':', len) : NULL;
    if (colon && reason != AM_REJECT_SYNTAX && reason != AM_REJECT_BAD_NAME) {
        char name[AM_MAX_NAME_LEN + 8];
        size_t n = am_map_name(line, (size_t)(colon - line), name, AM_MAX_NAME_LEN + 1);
        if (n > 0) {
            f = am__family_find(r, name, n);
            if (!f) { /* a counter's name as sent lacks the _total it gets */
                memcpy(name + n, "_total", 6);
                f = am__family_find(r, name, n + 6);
            }
        }
    }
    if (f)
        f->rejects[reason]++;
    else
        r->rejects_nofamily[reason]++;
}

/* The entry of this value in t, or NULL. */
static valcount_t *value_find(const am_table_t *t, uint64_t h, const char *v, size_t n)
{
    uint64_t th = am_table_hash(h);
    size_t i;
    for (valcount_t *e = am_table_first(t, h, &i); e; e = am_table_next(t, &i))
        if (e->hash == th && e->len == n && memcmp(e->value, v, n) == 0)
            return e;
    return NULL;
}

/* One series more (delta 1) or fewer (-1) for value v of table t;
 * *tracked counts the values of every table of the registry (or
 * directory). */
static void value_count(size_t *tracked, am_table_t *t, const char *v, size_t n, int delta)
{
    if (n == 0 || n > AM_VALUE_MAX_LEN)
        return; /* absent label, or too long to track */
    uint64_t h = am_hash(v, n);
    valcount_t *e = value_find(t, h, v, n);
    if (delta < 0) {
        if (e && --e->series == 0) {
            free(e->value);
            am_table_remove(t, e);
            (*tracked)--;
        }
        return;
    }
    if (e) {
        e->series++;
        return;
    }
    if (t->n >= AM_VALUES_PER_LABEL || *tracked >= AM_VALUES_PER_REGISTRY)
        return;
    char *copy = malloc(n + 1);
    if (!copy)
        return; /* a count, not data: out of memory leaves it uncounted */
    memcpy(copy, v, n);
    copy[n] = '\0';
    e = am_table_add(t, h);
    if (!e) {
        free(copy);
        return;
    }
    e->value = copy;
    e->len = (uint32_t)n;
    e->series = 1;
    (*tracked)++;
}

/* Each label value of key (values joined by '\0' in label order) into
 * *vcp (made on first use). */
static void values_update(size_t *tracked, struct am_valcounts **vcp, const char *key, size_t klen,
                          int delta)
{
    if (!*vcp) {
        if (delta < 0 || !(*vcp = malloc(sizeof(**vcp))))
            return;
        for (size_t i = 0; i < AM_MAX_LABELS; i++)
            am_table_init(&(*vcp)->label[i], sizeof(valcount_t), 75, NULL);
    }
    size_t start = 0;
    for (size_t k = 0; k < AM_MAX_LABELS && start < klen; k++) {
        const char *end = memchr(key + start, '\0', klen - start);
        size_t n = end ? (size_t)(end - (key + start)) : klen - start;
        value_count(tracked, &(*vcp)->label[k], key + start, n, delta);
        start += n + 1;
    }
}

static void valcounts_free(size_t *tracked, struct am_valcounts **vcp)
{
    if (!*vcp)
        return;
    for (size_t k = 0; k < AM_MAX_LABELS; k++) {
        am_table_t *t = &(*vcp)->label[k];
        size_t i = 0;
        for (valcount_t *e; (e = am_table_each(t, &i));)
            free(e->value);
        *tracked -= t->n;
        am_table_free(t);
    }
    free(*vcp);
    *vcp = NULL;
}

/* ---- several workers: distinct series over them ----
 *
 * The directory counts each series of an entry once, however many workers
 * hold it: holders maps (entry, series key hash) to the number of workers
 * holding it, and the entry's nlive and value counts change only when
 * that number leaves or reaches 0. Series hashes are the same in every
 * worker (one process, one seed); two series of an entry whose 64-bit
 * mixes collide would count once (odds ~n^2/2^65). */
typedef struct holder {
    uint64_t key; /* am_table_hash of the mix: the entry first */
    uint64_t refs;
} holder_t;

int am__dir_live_init(am_famdir_t *d)
{
    return -pthread_mutex_init(&d->live_mu, NULL);
}

void am__dir_live_free(am_famdir_t *d)
{
    for (famdir_entry_t *e = d->all; e; e = e->next_all) {
        valcounts_free(&d->values_tracked, &e->valcounts);
        am_table_free(&e->holders); /* a zeroed, unused table frees nothing */
    }
    pthread_mutex_destroy(&d->live_mu);
}

/* e's holders table, set up on first use. */
static am_table_t *holders_of(famdir_entry_t *e)
{
    if (!e->holders.esize)
        am_table_init(&e->holders, sizeof(holder_t), 75, NULL);
    return &e->holders;
}

/* A worker's copy of series s (of f, whose entry is e) came (delta 1) or
 * went (-1). The caller holds d->live_mu. */
static void holder_update(am_famdir_t *d, famdir_entry_t *e, const am_family_t *f,
                          const am_series_t *s, int delta)
{
    /* the entry's address: an entry lives as long as the directory, and a
     * redefinition's new entry is another family for these counts */
    uint64_t h = am_table_hash(s->hash ^ ((uint64_t)(uintptr_t)e * 0x9e3779b97f4a7c15ULL));
    am_table_t *holders = holders_of(e);
    size_t i;
    holder_t *ho = am_table_first(holders, h, &i);
    while (ho && ho->key != h)
        ho = am_table_next(holders, &i);
    if (delta > 0 && ho) {
        ho->refs++;
        return;
    }
    if (delta > 0) {
        if (!(ho = am_table_add(holders, h)))
            return; /* out of memory: this series is not counted */
        ho->refs = 1;
    } else if (!ho || --ho->refs > 0) {
        return;
    } else {
        am_table_remove(holders, ho);
    }
    e->nlive += (size_t)delta; /* -1 wraps as intended */
    values_update(&d->values_tracked, &e->valcounts, am__series_key(f, s), s->key_len, delta);
}

void am__values_add(am_registry_t *r, am_family_t *f, const am_series_t *s)
{
    if (r->no_live_counts)
        return;
    if (r->dir && f->shared) {
        pthread_mutex_lock(&r->dir->live_mu);
        holder_update(r->dir, f->shared, f, s, 1);
        pthread_mutex_unlock(&r->dir->live_mu);
        return;
    }
    values_update(&r->values_tracked, &f->valcounts, am__series_key(f, s), s->key_len, 1);
}

void am__values_remove(am_registry_t *r, am_family_t *f, const am_series_t *s)
{
    if (r->no_live_counts)
        return;
    if (r->dir && f->shared) {
        pthread_mutex_lock(&r->dir->live_mu);
        holder_update(r->dir, f->shared, f, s, -1);
        pthread_mutex_unlock(&r->dir->live_mu);
        return;
    }
    values_update(&r->values_tracked, &f->valcounts, am__series_key(f, s), s->key_len, -1);
}

void am__values_move(am_registry_t *r, am_family_t *f, famdir_entry_t *to)
{
    if (!r->dir || r->no_live_counts || f->shared == to)
        return;
    pthread_mutex_lock(&r->dir->live_mu);
    for (const am_series_t *s = f->first; s; s = s->next) {
        if (s->seen == AM_SEEN_DEAD)
            continue;
        if (f->shared)
            holder_update(r->dir, f->shared, f, s, -1);
        if (to)
            holder_update(r->dir, to, f, s, 1);
    }
    pthread_mutex_unlock(&r->dir->live_mu);
}

void am__values_reserve(am_registry_t *r, am_family_t *f, size_t n)
{
    if (!r->dir || !f->shared || r->no_live_counts)
        return;
    pthread_mutex_lock(&r->dir->live_mu);
    am_table_t *holders = holders_of(f->shared);
    if (am_table_reserve(holders, holders->n + n) != 0) {
        /* out of memory now: the table grows as it goes instead */
    }
    pthread_mutex_unlock(&r->dir->live_mu);
}

void am__values_free(am_registry_t *r, am_family_t *f)
{
    if (r->dir && f->shared && !r->no_live_counts) {
        pthread_mutex_lock(&r->dir->live_mu);
        for (const am_series_t *s = f->first; s; s = s->next)
            if (s->seen != AM_SEEN_DEAD) /* an expired one left at its expiry */
                holder_update(r->dir, f->shared, f, s, -1);
        pthread_mutex_unlock(&r->dir->live_mu);
    }
    valcounts_free(&r->values_tracked, &f->valcounts);
}

bool am_valcounts_next(const am_valcounts_t *vc, size_t label, size_t *pos, am_label_value_t *out)
{
    if (!vc || label >= AM_MAX_LABELS)
        return false;
    const valcount_t *e = am_table_each(&vc->label[label], pos);
    if (!e)
        return false;
    out->value = e->value;
    out->len = e->len;
    out->series = e->series;
    return true;
}

bool am_family_label_value_next(const am_family_t *f, size_t label, size_t *pos,
                                am_label_value_t *out)
{
    return am_valcounts_next(f->valcounts, label, pos, out);
}

const am_valcounts_t *am_family_valcounts(const am_family_t *f)
{
    return f->valcounts;
}

void am_famdir_each_live(am_famdir_t *d, am_famdir_live_fn fn, void *ctx)
{
    pthread_mutex_lock(&d->mu);
    pthread_mutex_lock(&d->live_mu);
    size_t i = 0;
    for (famdir_entry_t **e; (e = am_table_each(&d->live, &i));)
        fn(ctx, &(*e)->def, (*e)->nlive, (*e)->valcounts);
    pthread_mutex_unlock(&d->live_mu);
    pthread_mutex_unlock(&d->mu);
}

/* Whether a ranks before b: more series, then smaller bytes. */
static bool ranks_before(const am_label_value_t *a, const am_label_value_t *b)
{
    if (a->series != b->series)
        return a->series > b->series;
    /* Ties are the rule (values of one label often have the same series
     * count) and values are short: a byte loop, no call per candidate. */
    size_t n = a->len < b->len ? a->len : b->len;
    const unsigned char *x = (const unsigned char *)a->value, *y = (const unsigned char *)b->value;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i])
            return x[i] < y[i];
    return a->len < b->len;
}

void am_label_value_rank(am_label_value_t *top, size_t *n, size_t k, const am_label_value_t *v)
{
    if (k == 0 || (*n == k && !ranks_before(v, &top[k - 1])))
        return;
    size_t i = *n < k ? (*n)++ : k - 1; /* the slot that frees up */
    while (i > 0 && ranks_before(v, &top[i - 1])) {
        top[i] = top[i - 1];
        i--;
    }
    top[i] = *v;
}
