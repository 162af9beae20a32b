/* catalog: the 11 families of the user guide, built in. */
#pragma once

#include "registry.h"

/* Number of built-in families. */
size_t am_catalog_count(void);
/* Fills def (borrowing static strings: do not clear it) for built-in i. */
void am_catalog_get(size_t i, am_family_def_t *def);
/* Defines every built-in family in r. 0 or -ENOMEM. */
int am_catalog_install(am_registry_t *r) __attribute__((warn_unused_result));

/* client_python's default buckets, used by the duration histograms and by
 * auto-created histograms. */
extern const double am_default_buckets[14];
