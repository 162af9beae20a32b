#include "names.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

/* An entry of the index's table (hash-first: the hash is stored as
 * am_table_hash gives it). */
typedef struct namedex_entry {
    uint64_t hash;
    const am_family_def_t *def; /* borrowed: indexed until removed */
    uint64_t kind;              /* which of def's owned names */
} namedex_entry_t;

static bool has_suffix(const char *p, size_t n, const char *sfx)
{
    size_t k = strlen(sfx);
    return n >= k && memcmp(p + n - k, sfx, k) == 0;
}

size_t am_owned_names(const am_family_def_t *def, char out[][AM_OWNED_NAME_MAX])
{
    const char *n = def->name;
    size_t len = strlen(n);
    size_t k = 0;
    snprintf(out[k++], AM_OWNED_NAME_MAX, "%s", n);
    /* OpenMetrics reserves NAME_created for counters, histograms and
     * summaries even though we never write it: a gauge of that name would
     * make the OpenMetrics parser reject the scrape. */
    if (def->type == AM_FAMILY_COUNTER && has_suffix(n, len, "_total")) {
        snprintf(out[k++], AM_OWNED_NAME_MAX, "%.*s", (int)(len - 6), n);
        snprintf(out[k++], AM_OWNED_NAME_MAX, "%.*s_created", (int)(len - 6), n);
    } else if (def->type != AM_FAMILY_GAUGE) {
        snprintf(out[k++], AM_OWNED_NAME_MAX, "%s_created", n);
    }
    if (def->type == AM_FAMILY_HISTOGRAM)
        snprintf(out[k++], AM_OWNED_NAME_MAX, "%s_bucket", n);
    if (def->type == AM_FAMILY_HISTOGRAM || def->type == AM_FAMILY_SUMMARY) {
        snprintf(out[k++], AM_OWNED_NAME_MAX, "%s_sum", n);
        snprintf(out[k++], AM_OWNED_NAME_MAX, "%s_count", n);
    }
    return k;
}

void am_namedex_free(am_namedex_t *x)
{
    am_table_free(&x->table);
}

int am_namedex_reserve(am_namedex_t *x, size_t extra)
{
    if (!x->table.esize) /* a zeroed index: first use */
        am_table_init(&x->table, sizeof(namedex_entry_t), 50, NULL);
    return am_table_reserve(&x->table, x->table.n + extra * AM_OWNED_NAMES);
}

/* def's owned names and their hashes as the table stores them; how many. */
static size_t owned_hashed(const am_family_def_t *def, char names[][AM_OWNED_NAME_MAX],
                           uint64_t hashes[AM_OWNED_NAMES])
{
    size_t k = am_owned_names(def, names);
    for (size_t i = 0; i < k; i++)
        hashes[i] = am_table_hash(am_hash(names[i], strlen(names[i])));
    return k;
}

int am_namedex_add(am_namedex_t *x, const am_family_def_t *def)
{
    if (am_namedex_reserve(x, 1) != 0)
        return -ENOMEM;
    char names[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
    uint64_t hashes[AM_OWNED_NAMES];
    size_t k = owned_hashed(def, names, hashes);
    for (size_t i = 0; i < k; i++) {
        namedex_entry_t *e = am_table_add(&x->table, hashes[i]); /* room reserved */
        e->def = def;
        e->kind = i;
    }
    return 0;
}

void am_namedex_remove(am_namedex_t *x, const am_family_def_t *def)
{
    char names[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
    uint64_t hashes[AM_OWNED_NAMES];
    size_t k = owned_hashed(def, names, hashes);
    for (size_t i = 0; i < k; i++) {
        size_t j;
        for (namedex_entry_t *e = am_table_first(&x->table, hashes[i], &j); e;
             e = am_table_next(&x->table, &j)) {
            if (e->def == def && e->kind == i) {
                am_table_remove(&x->table, e);
                break;
            }
        }
    }
}

const am_family_def_t *am_namedex_clash(const am_namedex_t *x, const am_family_def_t *def,
                                        const am_family_def_t *except)
{
    if (!x->table.n)
        return NULL;
    char names[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
    uint64_t hashes[AM_OWNED_NAMES];
    size_t k = owned_hashed(def, names, hashes);
    for (size_t i = 0; i < k; i++) {
        size_t j;
        for (const namedex_entry_t *e = am_table_first(&x->table, hashes[i], &j); e;
             e = am_table_next(&x->table, &j)) {
            if (e->hash != hashes[i] || e->def == except)
                continue;
            /* A hash match: confirm with the owner's name itself. */
            char theirs[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
            am_owned_names(e->def, theirs);
            if (strcmp(theirs[e->kind], names[i]) == 0)
                return e->def;
        }
    }
    return NULL;
}
