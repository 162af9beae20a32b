#include "hash.h"

#include <stdbool.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* A mum/wyhash-style mixer: 8 bytes per multiply, good avalanche, no tables.
 * Written from the published construction, not copied. */
static uint64_t seed = 0x9e3779b97f4a7c15ULL;
/* Per-process keys of am_hash2_more, drawn from the seed (odd: a multiply
 * by them is a bijection). */
static uint64_t secret[5] = {0x8ebc6af09c88c6e3ULL, 0xa0761d6478bd642fULL, 0xe7037ed1a0b428dbULL,
                             0x589965cc75374cc3ULL, 0x1d8e4e27c47d124fULL};

/* The AES-NI form of am_hash2_pair (x86-64 CPUs that have it, checked at
 * am_hash_seed_init): four 128-bit round keys drawn from the seed. */
#if defined(__x86_64__) && defined(__GNUC__)
#define AM_HASH_AES 1
#include <immintrin.h>
#endif
static bool use_aes;
static uint64_t aes_key[8] = {0x452821e638d01377ULL, 0xbe5466cf34e90c6cULL, 0xc0ac29b7c97c50ddULL,
                              0x3f84d5b5b5470917ULL, 0x9216d5d98979fb1bULL, 0xd1310ba698dfb5acULL,
                              0x2ffd72dbd01adfb7ULL, 0xb8e1afed6a267e96ULL};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void am_hash_seed_init(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
        s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    seed = s | 1;
    uint64_t x = s;
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        secret[i] = splitmix64(&x) | 1;
    for (size_t i = 0; i < sizeof(aes_key) / sizeof(aes_key[0]); i++)
        aes_key[i] = splitmix64(&x);
    am_hash_use_aes(true);
}

bool am_hash_use_aes(bool on)
{
#ifdef AM_HASH_AES
    use_aes = on && __builtin_cpu_supports("aes");
#else
    (void)on;
    use_aes = false;
#endif
    return use_aes;
}

__extension__ typedef unsigned __int128 u128;

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    u128 r = (u128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t load32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The last 0..16 bytes as two words, without a variable-length memcpy
 * (a libc call per line in the ingest path): overlapping fixed loads, as
 * wyhash does. Different (n, bytes) give different words; n is mixed in
 * by the caller. */
static inline void load_tail(const unsigned char *p, size_t n, uint64_t *t1, uint64_t *t2)
{
    if (n > 8) {
        *t1 = load64(p);
        *t2 = load64(p + n - 8);
    } else if (n >= 4) {
        *t1 = (load32(p) << 32) | load32(p + n - 4);
        *t2 = 0;
    } else if (n) {
        *t1 = ((uint64_t)p[0] << 16) | ((uint64_t)p[n >> 1] << 8) | p[n - 1];
        *t2 = 0;
    } else {
        *t1 = *t2 = 0;
    }
}

uint64_t am_hash_more(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    const uint64_t k1 = 0xa0761d6478bd642fULL, k2 = 0xe7037ed1a0b428dbULL;
    h ^= seed;
    while (n >= 8) {
        h = mix(h ^ load64(p), k1);
        p += 8;
        n -= 8;
    }
    uint64_t tail, unused;
    load_tail(p, n, &tail, &unused); /* n < 8 here: one word */
    h = mix(h ^ tail ^ ((uint64_t)n << 56), k2);
    return h;
}

uint64_t am_hash(const void *p, size_t n)
{
    return am_hash_more(0x243f6a8885a308d3ULL, p, n);
}

/* One piece into both lanes (k: the secrets, loaded once per key). */
static inline void hash2_piece(uint64_t *a, uint64_t *b, const unsigned char *p, size_t n,
                               const uint64_t *k)
{
    uint64_t x = *a, y = *b;
    while (n >= 16) {
        uint64_t v1 = load64(p), v2 = load64(p + 8);
        x = mix(v1 ^ x ^ k[1], v2 ^ k[2]);
        y = mix(v2 ^ y ^ k[3], v1 ^ k[4]);
        p += 16;
        n -= 16;
    }
    uint64_t t1, t2;
    load_tail(p, n, &t1, &t2);
    uint64_t len = (uint64_t)n << 56;
    *a = mix(t1 ^ x ^ k[1], t2 ^ k[2] ^ len);
    *b = mix(t2 ^ y ^ k[3], t1 ^ k[4] ^ len);
}

void am_hash2_more(uint64_t h[2], const void *data, size_t n)
{
    /* Two lanes, each one 128-bit multiply per 16 bytes, with no data
     * dependency between them so the CPU runs them side by side (this runs
     * for every ingested line). Each lane's second factor carries a secret
     * drawn from the seed: a sender who could zero a factor would erase
     * everything hashed before it, and without the secret it cannot. */
    uint64_t k[5] = {secret[0], secret[1], secret[2], secret[3], secret[4]};
    uint64_t a = h[0] ^ seed, b = h[1] ^ k[0];
    hash2_piece(&a, &b, data, n, k);
    h[0] = a;
    h[1] = b;
}

void am_hash2_pair_portable(uint64_t h[2], const void *p1, size_t n1, const void *p2, size_t n2)
{
    uint64_t k[5] = {secret[0], secret[1], secret[2], secret[3], secret[4]};
    uint64_t a = h[0] ^ seed, b = h[1] ^ k[0];
    hash2_piece(&a, &b, p1, n1, k);
    /* What am_hash2_more does between two calls. */
    a ^= seed;
    b ^= k[0];
    hash2_piece(&a, &b, p2, n2, k);
    h[0] = a;
    h[1] = b;
}

#ifdef AM_HASH_AES
#define AES_TARGET __attribute__((target("aes")))

/* One block into the state: two AES rounds under secret round keys. Two
 * rounds spread every input byte over the whole state. A sender who wants
 * two lines to meet must guess a differential through two rounds, which
 * holds with odds near 2^-28 at best (the published bound for two AES
 * rounds), and never sees a key or a hash to learn from. */
AES_TARGET static inline __m128i aes_absorb(__m128i a, __m128i m, __m128i k1, __m128i k2)
{
    return _mm_aesenc_si128(_mm_aesenc_si128(_mm_xor_si128(a, m), k1), k2);
}

/* A piece of n bytes: its 16-byte blocks, then the last 1..16 bytes as one
 * block (overlapping the one before when n >= 16; zero-padded words below
 * that). Every byte lands in some block, and nothing is read outside the
 * piece; the caller mixes n in. */
AES_TARGET static inline __m128i aes_piece(__m128i a, const unsigned char *p, size_t n, __m128i k1,
                                           __m128i k2)
{
    if (n >= 16) {
        const unsigned char *end = p + n;
        while (end - p > 16) {
            a = aes_absorb(a, _mm_loadu_si128((const __m128i *)(const void *)p), k1, k2);
            p += 16;
        }
        return aes_absorb(a, _mm_loadu_si128((const __m128i *)(const void *)(end - 16)), k1, k2);
    }
    uint64_t t1, t2;
    load_tail(p, n, &t1, &t2);
    return aes_absorb(a, _mm_set_epi64x((long long)t2, (long long)t1), k1, k2);
}

AES_TARGET static void hash2_pair_aes(uint64_t h[2], const unsigned char *p1, size_t n1,
                                      const unsigned char *p2, size_t n2)
{
    const __m128i k0 = _mm_loadu_si128((const __m128i *)(const void *)&aes_key[0]);
    const __m128i k1 = _mm_loadu_si128((const __m128i *)(const void *)&aes_key[2]);
    const __m128i k2 = _mm_loadu_si128((const __m128i *)(const void *)&aes_key[4]);
    const __m128i k3 = _mm_loadu_si128((const __m128i *)(const void *)&aes_key[6]);
    const __m128i hv = _mm_loadu_si128((const __m128i *)(const void *)h);
    /* One chain per piece, from two different keyed states, so that the
     * CPU runs them side by side: a chain of AES rounds is latency bound,
     * and this runs for every line. */
    __m128i a = aes_piece(_mm_xor_si128(hv, k0), p1, n1, k1, k2);
    __m128i b = aes_piece(_mm_xor_si128(hv, k3), p2, n2, k1, k2);
    /* The join: the first chain through one more round (no linear relation
     * between the two), the lengths (the same blocks can come from pieces
     * of other lengths: "ab" and "abab" load alike), then two rounds so
     * every bit of both chains reaches every bit of the key. */
    __m128i c = _mm_xor_si128(_mm_aesenc_si128(a, k3), b);
    c = _mm_xor_si128(c, _mm_set_epi64x((long long)n2, (long long)n1));
    c = _mm_aesenc_si128(_mm_aesenc_si128(c, k1), k2);
    _mm_storeu_si128((__m128i *)(void *)h, c);
}
#endif

void am_hash2_pair(uint64_t h[2], const void *p1, size_t n1, const void *p2, size_t n2)
{
#ifdef AM_HASH_AES
    if (use_aes) {
        hash2_pair_aes(h, p1, n1, p2, n2);
        return;
    }
#endif
    am_hash2_pair_portable(h, p1, n1, p2, n2);
}
