#include "names.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

struct am_namedex_slot {
    uint64_t hash;
    const am_family_def_t *def; /* NULL: empty */
    uint32_t kind;              /* which of def's owned names */
};

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
    free(x->slots);
    memset(x, 0, sizeof(*x));
}

int am_namedex_reserve(am_namedex_t *x, size_t extra)
{
    /* At most half full: probes stay short. */
    size_t want = (x->n + extra * AM_OWNED_NAMES) * 2;
    if (want <= x->cap)
        return 0;
    size_t cap = x->cap ? x->cap : 64;
    while (cap < want)
        cap *= 2;
    am_namedex_slot_t *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    for (size_t i = 0; i < x->cap; i++) {
        if (!x->slots[i].def)
            continue;
        size_t j = x->slots[i].hash & (cap - 1);
        while (slots[j].def)
            j = (j + 1) & (cap - 1);
        slots[j] = x->slots[i];
    }
    free(x->slots);
    x->slots = slots;
    x->cap = cap;
    return 0;
}

/* def's owned names and their hashes; how many. */
static size_t owned_hashed(const am_family_def_t *def, char names[][AM_OWNED_NAME_MAX],
                           uint64_t hashes[AM_OWNED_NAMES])
{
    size_t k = am_owned_names(def, names);
    for (size_t i = 0; i < k; i++)
        hashes[i] = am_hash(names[i], strlen(names[i]));
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
        uint64_t h = hashes[i];
        size_t j = h & (x->cap - 1);
        while (x->slots[j].def)
            j = (j + 1) & (x->cap - 1);
        x->slots[j] = (am_namedex_slot_t){h, def, (uint32_t)i};
        x->n++;
    }
    return 0;
}

/* Empties slot i and moves later slots of its probe run back into the gap,
 * so that every remaining entry is still reachable from its home slot. */
static void delete_at(am_namedex_t *x, size_t i)
{
    size_t mask = x->cap - 1;
    for (size_t j = (i + 1) & mask; x->slots[j].def; j = (j + 1) & mask) {
        size_t home = x->slots[j].hash & mask;
        /* Slot j may fill the gap at i unless its home lies cyclically in
         * (i, j]: then the gap is before where its probe starts. */
        bool home_after_gap = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!home_after_gap) {
            x->slots[i] = x->slots[j];
            i = j;
        }
    }
    x->slots[i].def = NULL;
    x->n--;
}

void am_namedex_remove(am_namedex_t *x, const am_family_def_t *def)
{
    if (!x->cap)
        return;
    char names[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
    uint64_t hashes[AM_OWNED_NAMES];
    size_t k = owned_hashed(def, names, hashes);
    size_t mask = x->cap - 1;
    for (size_t i = 0; i < k; i++) {
        size_t j = hashes[i] & mask;
        while (x->slots[j].def && !(x->slots[j].def == def && x->slots[j].kind == i))
            j = (j + 1) & mask;
        if (x->slots[j].def)
            delete_at(x, j);
    }
}

const am_family_def_t *am_namedex_clash(const am_namedex_t *x, const am_family_def_t *def,
                                        const am_family_def_t *except)
{
    if (!x->cap)
        return NULL;
    char names[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
    uint64_t hashes[AM_OWNED_NAMES];
    size_t k = owned_hashed(def, names, hashes);
    size_t mask = x->cap - 1;
    for (size_t i = 0; i < k; i++) {
        for (size_t j = hashes[i] & mask; x->slots[j].def; j = (j + 1) & mask) {
            const am_namedex_slot_t *s = &x->slots[j];
            if (s->hash != hashes[i] || s->def == except)
                continue;
            /* A hash match: confirm with the owner's name itself. */
            char theirs[AM_OWNED_NAMES][AM_OWNED_NAME_MAX];
            am_owned_names(s->def, theirs);
            if (strcmp(theirs[s->kind], names[i]) == 0)
                return s->def;
        }
    }
    return NULL;
}
