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

/* One series more (delta 1) or fewer (-1) for value v of table t. */
static void value_count(am_registry_t *r, am_table_t *t, const char *v, size_t n, int delta)
{
    if (n == 0 || n > AM_VALUE_MAX_LEN)
        return; /* absent label, or too long to track */
    uint64_t h = am_hash(v, n);
    valcount_t *e = value_find(t, h, v, n);
    if (delta < 0) {
        if (e && --e->series == 0) {
            free(e->value);
            am_table_remove(t, e);
            r->values_tracked--;
        }
        return;
    }
    if (e) {
        e->series++;
        return;
    }
    if (t->n >= AM_VALUES_PER_LABEL || r->values_tracked >= AM_VALUES_PER_REGISTRY)
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
    r->values_tracked++;
}

/* Each label value of key (values joined by '\0' in label order). */
static void values_update(am_registry_t *r, am_family_t *f, const char *key, size_t klen, int delta)
{
    if (r->no_live_counts)
        return;
    if (!f->valcounts) {
        if (delta < 0 || !(f->valcounts = malloc(sizeof(*f->valcounts))))
            return;
        for (size_t i = 0; i < AM_MAX_LABELS; i++)
            am_table_init(&f->valcounts->label[i], sizeof(valcount_t), 75, NULL);
    }
    size_t start = 0;
    for (size_t k = 0; k < AM_MAX_LABELS && start < klen; k++) {
        const char *end = memchr(key + start, '\0', klen - start);
        size_t n = end ? (size_t)(end - (key + start)) : klen - start;
        value_count(r, &f->valcounts->label[k], key + start, n, delta);
        start += n + 1;
    }
}

void am__values_add(am_registry_t *r, am_family_t *f, const char *key, size_t klen)
{
    values_update(r, f, key, klen, 1);
}

void am__values_remove(am_registry_t *r, am_family_t *f, const char *key, size_t klen)
{
    values_update(r, f, key, klen, -1);
}

void am__values_free(am_registry_t *r, am_family_t *f)
{
    if (!f->valcounts)
        return;
    for (size_t k = 0; k < AM_MAX_LABELS; k++) {
        am_table_t *t = &f->valcounts->label[k];
        size_t i = 0;
        for (valcount_t *e; (e = am_table_each(t, &i));)
            free(e->value);
        r->values_tracked -= t->n;
        am_table_free(t);
    }
    free(f->valcounts);
    f->valcounts = NULL;
}

bool am_family_label_value_next(const am_family_t *f, size_t label, size_t *pos,
                                am_label_value_t *out)
{
    if (!f->valcounts || label >= AM_MAX_LABELS)
        return false;
    const valcount_t *e = am_table_each(&f->valcounts->label[label], pos);
    if (!e)
        return false;
    out->value = e->value;
    out->len = e->len;
    out->series = e->series;
    return true;
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
