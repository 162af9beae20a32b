/* Unit tests for src/util/hash.c: the line cache key (am_hash2_pair) in both of
 * its forms, portable and AES-NI. The cache matches lines by this key
 * alone, so: every change of a byte, a length or the split between the two
 * pieces gives another key; nothing outside the pieces is read; the low
 * word (the cache slot) is balanced; the seed changes every key. */
#include "hash.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check-main.h"
#include "guarded.h"

/* Loop index 0: the portable form; 1: AES-NI where the CPU has it (else
 * the portable form again, said on stderr). */
static void pick_form(int i)
{
    am_hash_seed_init();
    bool aes = am_hash_use_aes(i == 1);
    if (i == 1 && !aes)
        fprintf(stderr, "test-hash: no AES-NI here; the portable form runs twice\n");
}

static void key_of(uint64_t h[2], const char *p1, size_t n1, const char *p2, size_t n2)
{
    h[0] = 0x243f6a8885a308d3ULL;
    h[1] = 0x13198a2e03707344ULL;
    am_hash2_pair(h, p1, n1, p2, n2);
}

/* Keys seen so far, to find any two alike. */
typedef struct keyset {
    uint64_t (*k)[2];
    size_t n, cap;
} keyset_t;

static void keyset_add(keyset_t *s, const uint64_t h[2])
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
        s->k = realloc(s->k, s->cap * sizeof(*s->k));
        ck_assert_ptr_nonnull(s->k);
    }
    s->k[s->n][0] = h[0];
    s->k[s->n][1] = h[1];
    s->n++;
}

static int cmp_key(const void *a, const void *b)
{
    const uint64_t *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] < y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static void keyset_assert_distinct(keyset_t *s)
{
    qsort(s->k, s->n, sizeof(*s->k), cmp_key);
    for (size_t i = 1; i < s->n; i++)
        ck_assert_msg(cmp_key(s->k[i - 1], s->k[i]) != 0, "two of %zu keys alike", s->n);
    free(s->k);
}

/* Every single-bit change of every byte, for every pair of lengths up to
 * 40 (all tail shapes of both pieces), gives a key of its own; so does
 * every split of the same bytes between the two pieces, and every pair of
 * lengths of one repeated byte (where only the lengths tell the words of a
 * short tail apart). Each piece sits at the end of its mapping: a read past
 * it faults. */
START_TEST(test_pair_distinct)
{
    pick_form(_i);
    char text[96];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + (i * 7) % 26);
    keyset_t ks = {0};
    uint64_t h[2];
    for (size_t n1 = 0; n1 <= 40; n1++) {
        for (size_t n2 = 0; n2 <= 40; n2 += (n2 < 18 ? 1 : 5)) {
            char a[48], b[48];
            memcpy(a, text, n1);
            memcpy(b, text + n1, n2);
            guarded_t ga = guarded_copy(a, n1), gb = guarded_copy(b, n2);
            key_of(h, ga.p, n1, gb.p, n2);
            keyset_add(&ks, h); /* the split n1 | n2 of the same text */
            guarded_free(&ga);
            guarded_free(&gb);
            char same[48];
            memset(same, 'a', sizeof(same));
            if (n1 + n2 > 1) { /* else the same bytes as text's */
                key_of(h, same, n1, same, n2);
                keyset_add(&ks, h);
            }
            if (n2 > 20)
                continue;
            for (size_t pos = 0; pos < n1 + n2; pos++) {
                for (int bit = 0; bit < 8; bit += 3) {
                    char *c = pos < n1 ? &a[pos] : &b[pos - n1];
                    *c ^= (char)(1 << bit);
                    key_of(h, a, n1, b, n2);
                    keyset_add(&ks, h);
                    *c ^= (char)(1 << bit);
                }
            }
        }
    }
    keyset_assert_distinct(&ks);
}
END_TEST

/* The same bytes give the same key wherever they sit in memory. */
START_TEST(test_pair_position_independent)
{
    pick_form(_i);
    static const char line[] = "alice.provider.requests|c|#provider:openai,model:gpt-4o,status:ok";
    uint64_t want[2], got[2];
    key_of(want, line, 23, line + 24, sizeof(line) - 25);
    char buf[256];
    for (size_t off = 0; off < 64; off++) {
        memset(buf, off & 1 ? 0xff : 0, sizeof(buf));
        memcpy(buf + off, line, sizeof(line) - 1);
        key_of(got, buf + off, 23, buf + off + 24, sizeof(line) - 25);
        ck_assert(got[0] == want[0] && got[1] == want[1]);
    }
}
END_TEST

/* The low word picks the cache slot: each of its bits is set in about half
 * of 65,536 keys of lines that differ only in one tag value. */
START_TEST(test_pair_low_word_balanced)
{
    pick_form(_i);
    unsigned ones[64] = {0};
    const unsigned nkeys = 65536;
    for (unsigned i = 0; i < nkeys; i++) {
        char rest[64];
        int m = snprintf(rest, sizeof(rest), "c|#provider:p%u,model:m0,status:ok", i);
        uint64_t h[2];
        key_of(h, "bench.c.f0", 10, rest, (size_t)m);
        for (int b = 0; b < 64; b++)
            ones[b] += (h[0] >> b) & 1;
    }
    /* Binomial(65536, 1/2): 5 standard deviations is 640. */
    for (int b = 0; b < 64; b++)
        ck_assert_msg(ones[b] > nkeys / 2 - 640 && ones[b] < nkeys / 2 + 640, "bit %d: %u", b,
                      ones[b]);
}
END_TEST

/* A new seed, new keys: a sender cannot precompute them. */
START_TEST(test_pair_seeded)
{
    pick_form(_i);
    uint64_t a[2], b[2];
    key_of(a, "name", 4, "c|#k:v", 6);
    pick_form(_i);
    key_of(b, "name", 4, "c|#k:v", 6);
    ck_assert(a[0] != b[0] && a[1] != b[1]);
}
END_TEST

/* What hash.h says of the portable form. */
START_TEST(test_portable_is_more_twice)
{
    am_hash_seed_init();
    static const char x[] = "alice.provider.requests", y[] = "c|#provider:openai,status:ok";
    for (size_t n1 = 0; n1 < sizeof(x); n1++) {
        uint64_t a[2] = {1, 2}, b[2] = {1, 2};
        am_hash2_pair_portable(a, x, n1, y, sizeof(y) - 1);
        am_hash2_more(b, x, n1);
        am_hash2_more(b, y, sizeof(y) - 1);
        ck_assert(a[0] == b[0] && a[1] == b[1]);
    }
}
END_TEST

static Suite *hash_suite(void)
{
    Suite *s = suite_create("Hash");
    TCase *tc = tcase_create("pair");
    tcase_add_loop_test(tc, test_pair_distinct, 0, 2);
    tcase_add_loop_test(tc, test_pair_position_independent, 0, 2);
    tcase_add_loop_test(tc, test_pair_low_word_balanced, 0, 2);
    tcase_add_loop_test(tc, test_pair_seeded, 0, 2);
    tcase_add_test(tc, test_portable_is_more_twice);
    suite_add_tcase(s, tc);
    return s;
}

AM_CHECK_MAIN(hash_suite)
