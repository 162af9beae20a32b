/* Unit tests for src/util/table.c: the one hash table. A reference model
 * (a plain array) is held against the table through thousands of random
 * adds and removes with few distinct hashes, so that probe runs are long,
 * wrap around the end and are cut by removals; both entry shapes (hash
 * first, and a pointer with hash_of); growth, reserve, clear, hash 0 and
 * iteration. */
#include "table.h"

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "check-main.h"

typedef struct pair {
    uint64_t hash; /* hash-first entry */
    uint64_t key;
} pair_t;

typedef struct record {
    uint64_t hash;
    uint64_t key;
} record_t;

static uint64_t record_hash(const void *entry)
{
    return (*(record_t *const *)entry)->hash;
}

static unsigned next_rand(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return (*state >> 8) & 0xffffff;
}

/* Hashes from a small set, high bits varied: many share a home slot. */
static uint64_t hash_of_key(uint64_t key, unsigned spread)
{
    return (key % spread) * 0x9e3779b97f4a7c15ULL >> 7 << 7 | (key % spread);
}

static pair_t *find_pair(const am_table_t *t, uint64_t h, uint64_t key)
{
    size_t i;
    for (pair_t *e = am_table_first(t, h, &i); e; e = am_table_next(t, &i))
        if (e->hash == am_table_hash(h) && e->key == key)
            return e;
    return NULL;
}

START_TEST(random_ops_match_a_model)
{
    enum { KEYS = 600, OPS = 40000 };
    static const unsigned spreads[] = {1, 3, 17, 1000};
    for (size_t sp = 0; sp < sizeof(spreads) / sizeof(spreads[0]); sp++) {
        am_table_t t;
        am_table_init(&t, sizeof(pair_t), 75, NULL);
        bool in[KEYS] = {false};
        size_t n = 0;
        unsigned st = 11 + (unsigned)sp;
        for (int op = 0; op < OPS; op++) {
            uint64_t key = next_rand(&st) % KEYS;
            uint64_t h = hash_of_key(key, spreads[sp]);
            pair_t *e = find_pair(&t, h, key);
            ck_assert_int_eq(e != NULL, in[key]);
            if (next_rand(&st) % 3 && !e) {
                e = am_table_add(&t, h);
                ck_assert_ptr_nonnull(e);
                ck_assert_uint_eq(e->hash, am_table_hash(h));
                e->key = key;
                in[key] = true;
                n++;
            } else if (e) {
                am_table_remove(&t, e);
                in[key] = false;
                n--;
            }
            ck_assert_uint_eq(t.n, n);
            ck_assert_uint_le(t.n * 100, t.cap * 75);
        }
        /* every key the model holds is found, and iteration sees each once */
        size_t seen = 0, i = 0;
        for (pair_t *e; (e = am_table_each(&t, &i));) {
            ck_assert(in[e->key]);
            seen++;
        }
        ck_assert_uint_eq(seen, n);
        for (uint64_t k = 0; k < KEYS; k++)
            ck_assert_int_eq(find_pair(&t, hash_of_key(k, spreads[sp]), k) != NULL, in[k]);
        am_table_free(&t);
        ck_assert_uint_eq(t.n, 0);
        ck_assert_uint_eq(t.cap, 0);
    }
}
END_TEST

START_TEST(pointer_entries_move_by_hash_of)
{
    enum { N = 3000 };
    record_t *recs = calloc(N, sizeof(*recs));
    ck_assert_ptr_nonnull(recs);
    am_table_t t;
    am_table_init(&t, sizeof(record_t *), 50, record_hash);
    for (uint64_t k = 0; k < N; k++) {
        recs[k] = (record_t){hash_of_key(k, 257), k};
        record_t **slot = am_table_add(&t, recs[k].hash);
        ck_assert_ptr_nonnull(slot);
        *slot = &recs[k];
    }
    ck_assert_uint_le(t.n * 100, t.cap * 50);
    /* remove every third, then find all */
    for (uint64_t k = 0; k < N; k += 3) {
        size_t i;
        record_t **e = am_table_first(&t, recs[k].hash, &i);
        while (e && *e != &recs[k])
            e = am_table_next(&t, &i);
        ck_assert_ptr_nonnull(e);
        am_table_remove(&t, e);
    }
    for (uint64_t k = 0; k < N; k++) {
        size_t i;
        record_t **e = am_table_first(&t, recs[k].hash, &i);
        while (e && *e != &recs[k])
            e = am_table_next(&t, &i);
        ck_assert_int_eq(e != NULL, k % 3 != 0);
    }
    am_table_free(&t);
    free(recs);
}
END_TEST

START_TEST(hash_zero_is_stored_as_one)
{
    am_table_t t;
    am_table_init(&t, sizeof(pair_t), 75, NULL);
    pair_t *e = am_table_add(&t, 0);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->hash, 1);
    e->key = 42;
    ck_assert_ptr_nonnull(find_pair(&t, 0, 42));
    ck_assert_ptr_nonnull(find_pair(&t, 1, 42));
    am_table_free(&t);
}
END_TEST

START_TEST(reserve_then_add_never_grows)
{
    am_table_t t;
    am_table_init(&t, sizeof(pair_t), 75, NULL);
    ck_assert_int_eq(am_table_reserve(&t, 1000), 0);
    size_t cap = t.cap;
    ck_assert_uint_ge(cap * 75, 1000 * 100);
    for (uint64_t k = 0; k < 1000; k++) {
        pair_t *e = am_table_add(&t, k * 7919);
        ck_assert_ptr_nonnull(e);
        e->key = k;
    }
    ck_assert_uint_eq(t.cap, cap);
    /* an impossible reservation fails and changes nothing */
    ck_assert_int_eq(am_table_reserve(&t, SIZE_MAX / 2), -ENOMEM);
    ck_assert_uint_eq(t.cap, cap);
    ck_assert_uint_eq(t.n, 1000);
    am_table_clear(&t);
    ck_assert_uint_eq(t.n, 0);
    ck_assert_uint_eq(t.cap, cap);
    ck_assert_ptr_null(find_pair(&t, 7919, 1));
    am_table_free(&t);
}
END_TEST

START_TEST(empty_table_lookups)
{
    am_table_t t;
    am_table_init(&t, sizeof(pair_t), 50, NULL);
    size_t i = 0;
    ck_assert_ptr_null(am_table_first(&t, 5, &i));
    ck_assert_ptr_null(am_table_each(&t, &i));
    am_table_prefetch(&t, 5);
    am_table_free(&t);
}
END_TEST

static Suite *table_suite(void)
{
    Suite *s = suite_create("Table");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, random_ops_match_a_model);
    tcase_add_test(tc, pointer_entries_move_by_hash_of);
    tcase_add_test(tc, hash_zero_is_stored_as_one);
    tcase_add_test(tc, reserve_then_add_never_grows);
    tcase_add_test(tc, empty_table_lookups);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(table_suite)
