/* hash: a fast seeded 64-bit hash for series and family keys.
 * The seed is random per process so that a sender cannot aim lines at one
 * bucket chain (hash flooding). */
#pragma once

#include <stddef.h>
#include <stdint.h>

void am_hash_seed_init(void);
uint64_t am_hash(const void *p, size_t n);
/* Continues a hash over another piece (for keys built of several slices). */
uint64_t am_hash_more(uint64_t h, const void *p, size_t n);

/* Two independent 64-bit lanes in one pass: a 128-bit identity for keys
 * that are matched by hash alone (the line cache), where a false match
 * between two of a million keys has odds near 2^-88. */
void am_hash2_more(uint64_t h[2], const void *p, size_t n);
/* am_hash2_more over p1 then p2, in one call (the line cache key). */
void am_hash2_pair(uint64_t h[2], const void *p1, size_t n1, const void *p2, size_t n2);
