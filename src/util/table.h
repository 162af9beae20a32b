/* table: the one hash table of the daemon and libalice. Open addressing,
 * linear probing, a power-of-two number of slots.
 *
 * An entry is the caller's: esize bytes stored in the slot itself (a
 * pointer to the caller's record, or a small struct). A slot whose first 8
 * bytes are zero is free, so an entry's first 8 bytes never are: either a
 * non-NULL pointer, or a hash stored through am_table_add (which maps a
 * hash of 0 to 1, see am_table_hash).
 *
 * Lookups compare nothing: the caller walks the entries of one probe run
 * (am_table_first, am_table_next) and compares its own keys, so no callback
 * sits on the lookup path and the loop inlines. The table needs an entry's
 * hash only to move it (growth, removal): hash_of(entry) when the entry
 * holds a pointer to a record that knows its hash, or, with hash_of NULL,
 * the entry's first 8 bytes.
 *
 * Cost: the table grows (doubles, moving every entry by its stored hash, no
 * key hashed again) before a new entry would take it past max_load_pct
 * percent full. A lookup reads the slots from the hash's home to the first
 * free one: on average about 1.5 slots for a hit and 2.5 for a miss at 50%
 * full, 2.5 and 8.5 at 75% (Knuth, linear probing). Removal shifts the rest
 * of the probe run back into the gap (no tombstones), so a table that
 * churns does not degrade. Not thread-safe: the owner serialises calls. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The hash of the entry a slot holds (hash_of tables only). */
typedef uint64_t (*am_table_hash_fn)(const void *entry);

typedef struct am_table {
    unsigned char *slots;     /* owned: cap * esize bytes, zeroed when free */
    size_t cap;               /* slots: a power of two, or 0 before the first add */
    size_t n;                 /* entries held */
    size_t esize;             /* bytes per entry, at least 8 */
    unsigned max_load_pct;    /* grow past this fill, 1..90 */
    am_table_hash_fn hash_of; /* static function, or NULL: the first 8 bytes */
} am_table_t;

/* An empty table (allocates nothing). */
void am_table_init(am_table_t *t, size_t esize, unsigned max_load_pct, am_table_hash_fn hash_of);
/* Frees the slots, not what entries point to; t is empty and reusable. */
void am_table_free(am_table_t *t);
/* Forgets every entry, keeps the slots. */
void am_table_clear(am_table_t *t);

/* Room for n entries in all without growing: 0, or -ENOMEM (t unchanged).
 * After it, am_table_add cannot fail until t holds n entries. */
int am_table_reserve(am_table_t *t, size_t n) __attribute__((warn_unused_result));

/* A free slot of h's probe run, counted as an entry, for the caller to
 * fill; NULL when growing ran out of memory. A hash-first table (hash_of
 * NULL) gets am_table_hash(h) in the entry's first 8 bytes; a hash_of
 * table must get a non-NULL pointer whose hash_of is h. It does not look
 * for an entry with the same key: find first. The pointer is valid until
 * the next am_table_add or am_table_remove. */
void *am_table_add(am_table_t *t, uint64_t h);

/* Removes the entry at e (a pointer returned by a lookup or am_table_add,
 * since no other add or remove). */
void am_table_remove(am_table_t *t, void *e);

/* A hash as a hash-first table stores it: 0 is the free marker. */
static inline uint64_t am_table_hash(uint64_t h)
{
    return h ? h : 1;
}

static inline void *am_table_slot(const am_table_t *t, size_t i)
{
    return t->slots + i * t->esize;
}

static inline void *am_table_occupied(const am_table_t *t, size_t i)
{
    void *e = am_table_slot(t, i);
    uint64_t first;
    memcpy(&first, e, sizeof(first));
    return first ? e : NULL;
}

/* The entries of h's probe run, which hold every entry of hash h, in slot
 * order:
 *     size_t i;
 *     for (e = am_table_first(t, h, &i); e; e = am_table_next(t, &i))
 *         if (its key matches) ...
 * *i is the walk's position. */
static inline void *am_table_first(const am_table_t *t, uint64_t h, size_t *i)
{
    if (!t->cap)
        return NULL;
    *i = am_table_hash(h) & (t->cap - 1);
    return am_table_occupied(t, *i);
}

static inline void *am_table_next(const am_table_t *t, size_t *i)
{
    *i = (*i + 1) & (t->cap - 1);
    return am_table_occupied(t, *i);
}

/* Every entry, in slot order: start with *i = 0; NULL after the last. */
void *am_table_each(const am_table_t *t, size_t *i);

/* Brings h's home slot into the cache ahead of a lookup. */
static inline void am_table_prefetch(const am_table_t *t, uint64_t h)
{
    if (t->cap)
        __builtin_prefetch(am_table_slot(t, am_table_hash(h) & (t->cap - 1)));
}
