/* hash: a fast seeded 64-bit hash for series and family keys.
 * The seed is random per process so that a sender cannot aim lines at one
 * bucket chain (hash flooding).
 *
 * Who calls: the registry, names, line cache and table, from any thread
 * once seeded (the seed and keys are written once, before any thread
 * starts, and only read after). Input bytes are borrowed for the call;
 * h[2] is the caller's. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Draws the per-process seed and keys, and picks the AES-NI line key where
 * the CPU has it. Call once, before any registry exists. */
void am_hash_seed_init(void);
/* Picks am_hash2_pair's form (on: AES-NI if the CPU has it); returns
 * whether AES-NI is now in use. Keys made with one form never match keys
 * of the other: only before any registry exists (tests, benchmarks). */
bool am_hash_use_aes(bool on);
uint64_t am_hash(const void *p, size_t n);
/* Continues a hash over another piece (for keys built of several slices). */
uint64_t am_hash_more(uint64_t h, const void *p, size_t n);

/* Two independent 64-bit lanes in one pass: a 128-bit identity for keys
 * that are matched by hash alone (the line cache), where a false match
 * between two of a million keys has odds near 2^-88. */
void am_hash2_more(uint64_t h[2], const void *p, size_t n);
/* A 128-bit key of two pieces, p1 then p2, with both lengths mixed in (the
 * line cache key). With AES-NI picked (am_hash_use_aes) it takes two AES
 * rounds per 16 bytes; else it is am_hash2_pair_portable, which equals
 * am_hash2_more over p1, then p2. Both are keyed by the per-process seed. */
void am_hash2_pair(uint64_t h[2], const void *p1, size_t n1, const void *p2, size_t n2);
void am_hash2_pair_portable(uint64_t h[2], const void *p1, size_t n1, const void *p2, size_t n2);
