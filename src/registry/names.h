/* names: which family owns a sample name.
 *
 * A family's samples go out under several names (x, x_bucket, x_sum,
 * x_count, x_created; a counter x_total also owns x and x_created, which
 * OpenMetrics derives from it). A new family may not own a name another
 * family owns, or the exposition would repeat a sample name. Comparing a
 * new family with every existing one costs O(families) formatted names per
 * new family: 1,000 auto-created families took 150 ms of the loop, and
 * past max_families every line with yet another name paid that scan before
 * being refused. This index answers from hashes instead: each owned name's
 * hash and the definition that owns it; a hash match is confirmed by
 * formatting that one definition's names.
 *
 * Definitions are borrowed: one must stay at its address while indexed
 * (remove it before changing or freeing it). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "registry.h"
#include "table.h"

#define AM_OWNED_NAMES    6
#define AM_OWNED_NAME_MAX 256 /* names are at most 207 bytes: '_' + 200 + "_total" */

/* The sample names def's family owns, into out; how many. */
size_t am_owned_names(const am_family_def_t *def, char out[][AM_OWNED_NAME_MAX]);

typedef struct am_namedex {
    am_table_t table; /* owned: (hash, definition, which name), at most half full */
} am_namedex_t;

/* A zeroed am_namedex_t is an empty index. */
void am_namedex_free(am_namedex_t *x);

/* Makes room for extra more definitions: 0, or -ENOMEM (index unchanged).
 * After it, that many am_namedex_add calls cannot fail. */
int am_namedex_reserve(am_namedex_t *x, size_t extra);

/* Indexes def's names: 0, or -ENOMEM (nothing added). */
int am_namedex_add(am_namedex_t *x, const am_family_def_t *def);

/* Takes def's names out (those def owns; nothing if it was never added). */
void am_namedex_remove(am_namedex_t *x, const am_family_def_t *def);

/* An indexed definition other than except that owns one of def's names, or
 * NULL when none does. */
const am_family_def_t *am_namedex_clash(const am_namedex_t *x, const am_family_def_t *def,
                                        const am_family_def_t *except);
