#include "hash.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* A mum/wyhash-style mixer: 8 bytes per multiply, good avalanche, no tables.
 * Written from the published construction, not copied. */
static uint64_t seed = 0x9e3779b97f4a7c15ULL;

void am_hash_seed_init(void)
{
    uint64_t s;
    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s))
        s = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    seed = s | 1;
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
    uint64_t tail = 0;
    if (n)
        memcpy(&tail, p, n); /* little tail, zero padded */
    h = mix(h ^ tail ^ ((uint64_t)n << 56), k2);
    return h;
}

uint64_t am_hash(const void *p, size_t n)
{
    return am_hash_more(0x243f6a8885a308d3ULL, p, n);
}

void am_hash2_more(uint64_t h[2], const void *data, size_t n)
{
    const unsigned char *p = data;
    const uint64_t k1 = 0xa0761d6478bd642fULL, k2 = 0xe7037ed1a0b428dbULL;
    const uint64_t k3 = 0x8ebc6af09c88c6e3ULL, k4 = 0x589965cc75374cc3ULL;
    uint64_t a = h[0] ^ seed, b = h[1] ^ (seed * k4);
    while (n >= 8) {
        uint64_t v = load64(p);
        a = mix(a ^ v, k1);
        b = mix(b ^ v, k3);
        p += 8;
        n -= 8;
    }
    uint64_t tail = 0;
    if (n)
        memcpy(&tail, p, n);
    a = mix(a ^ tail ^ ((uint64_t)n << 56), k2);
    b = mix(b ^ tail ^ ((uint64_t)n << 56), k4);
    h[0] = a;
    h[1] = b;
}
