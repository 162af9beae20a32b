/* Replay driver for LLVMFuzzerTestOneInput when libFuzzer is not linked in
 * (gcc builds, `meson test`):
 *
 *   fuzz-parse [CORPUS_DIR | FILE]...
 *
 * (a) runs every file of the corpus directories (default: FUZZ_CORPUS_DIR,
 *     tests/fuzz/corpus/) and files given, then
 * (b) runs a deterministic mutation loop seeded with FUZZ_SEED (default
 *     20240611) over the corpus: byte flips, inserts of StatsD separators
 *     and awkward bytes (':', '|', '#', ',', '@', '\n', '\r', '\0', 0xff,
 *     0xc3), truncations, duplications and splices of two entries. It stops
 *     after FUZZ_ITERATIONS inputs (default 200000) or FUZZ_SECONDS seconds
 *     (default 10), whichever comes first, so it fits a test timeout on a
 *     slow or sanitized build.
 *
 * When a check aborts (or the harness crashes without ASan), the input is
 * written to FUZZ_OUTPUT_DIR/fuzz-crash-<seed>-<iteration> (the build
 * directory of tests/fuzz) by a signal handler, ready to be replayed with
 * `fuzz-parse FILE` and added to the corpus. Under ASan (whose
 * reports exit without a signal) rerun the same seed with
 * FUZZ_ITERATIONS=<iteration + 1> and ASAN_OPTIONS=abort_on_error=1. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef FUZZ_CORPUS_DIR
#define FUZZ_CORPUS_DIR "tests/fuzz/corpus"
#endif
#ifndef FUZZ_OUTPUT_DIR
#error "FUZZ_OUTPUT_DIR must name the build directory (tests/fuzz/meson.build defines it)"
#endif

#define FUZZ_MAX_INPUT 8192  /* mutated inputs stay small: speed over size */
#define MAX_ENTRIES 512

typedef struct entry {
    uint8_t *p;
    size_t n;
} entry_t;

static entry_t corpus[MAX_ENTRIES];
static size_t ncorpus;

static uint64_t rng_state;

static uint64_t rng(void)
{
    /* splitmix64: tiny, deterministic, good enough to pick mutations. */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static size_t below(size_t n)
{
    return n ? (size_t)(rng() % n) : 0;
}

static int read_file(const char *path, entry_t *e)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    uint8_t *buf = malloc(65536 + 1);
    if (!buf) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, 65536 + 1, f);
    fclose(f);
    e->p = buf;
    e->n = n;
    return 0;
}

static void add_path(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "fuzz-main: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    if (!S_ISDIR(st.st_mode)) {
        if (ncorpus < MAX_ENTRIES && read_file(path, &corpus[ncorpus]) == 0)
            ncorpus++;
        return;
    }
    DIR *d = opendir(path);
    if (!d) {
        fprintf(stderr, "fuzz-main: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    /* readdir order is not stable across file systems: sort by name so the
     * mutation loop is deterministic. */
    char *names[MAX_ENTRIES];
    size_t nn = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL && nn < MAX_ENTRIES) {
        if (de->d_name[0] == '.')
            continue;
        names[nn] = strdup(de->d_name);
        if (names[nn])
            nn++;
    }
    closedir(d);
    for (size_t i = 1; i < nn; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    for (size_t i = 0; i < nn; i++) {
        char full[4096];
        snprintf(full, sizeof(full), "%s/%s", path, names[i]);
        if (ncorpus < MAX_ENTRIES && stat(full, &st) == 0 && S_ISREG(st.st_mode) &&
            read_file(full, &corpus[ncorpus]) == 0)
            ncorpus++;
        free(names[i]);
    }
}

static const uint8_t interesting[] = {':', '|', '#', ',', '@', '\n', '\r', '\0', 0xff, 0xc3,
                                      '.', '-', '_', '0', '9', 'e', '+', 's', 'c', 'g'};

static const char *const tokens[] = {"|c", "|g", "|ms", "|h", "|d", "|s", "|@0.5", "|@0",
                                     "|#", "|#le:1", ",k:v", ":1", ":-1", ":+1", "1e308",
                                     "1e-320", "|@1e-320", "alice_api_requests_total",
                                     "alice_api_request_duration_seconds", "_total", "_count",
                                     "\xf0\x9f\x98\x80", "\xed\xa0\x80", "\r\n"};

/* One mutation of buf[0..*n) (capacity FUZZ_MAX_INPUT). */
static void mutate(uint8_t *buf, size_t *n)
{
    switch (below(8)) {
        case 0: /* flip a bit */
            if (*n)
                buf[below(*n)] ^= (uint8_t)(1u << below(8));
            break;
        case 1: /* overwrite with an interesting byte */
            if (*n)
                buf[below(*n)] = interesting[below(sizeof(interesting))];
            break;
        case 2: /* insert an interesting byte */
            if (*n < FUZZ_MAX_INPUT) {
                size_t at = below(*n + 1);
                memmove(buf + at + 1, buf + at, *n - at);
                buf[at] = interesting[below(sizeof(interesting))];
                (*n)++;
            }
            break;
        case 3: { /* insert a token */
            const char *t = tokens[below(sizeof(tokens) / sizeof(tokens[0]))];
            size_t tn = strlen(t);
            if (*n + tn <= FUZZ_MAX_INPUT) {
                size_t at = below(*n + 1);
                memmove(buf + at + tn, buf + at, *n - at);
                memcpy(buf + at, t, tn);
                *n += tn;
            }
            break;
        }
        case 4: /* truncate */
            *n = below(*n + 1);
            break;
        case 5: { /* delete a range */
            if (*n) {
                size_t at = below(*n);
                size_t len = 1 + below(*n - at);
                memmove(buf + at, buf + at + len, *n - at - len);
                *n -= len;
            }
            break;
        }
        case 6: { /* duplicate a range */
            if (*n) {
                size_t at = below(*n);
                size_t len = 1 + below(*n - at);
                if (*n + len <= FUZZ_MAX_INPUT) {
                    size_t to = below(*n + 1);
                    uint8_t tmp[FUZZ_MAX_INPUT];
                    memcpy(tmp, buf + at, len);
                    memmove(buf + to + len, buf + to, *n - to);
                    memcpy(buf + to, tmp, len);
                    *n += len;
                }
            }
            break;
        }
        default: { /* splice another corpus entry after a newline */
            const entry_t *o = &corpus[below(ncorpus)];
            size_t take = o->n < FUZZ_MAX_INPUT - *n ? o->n : FUZZ_MAX_INPUT - *n;
            if (take > 0 && *n < FUZZ_MAX_INPUT) {
                buf[(*n)++] = '\n';
                take = take < FUZZ_MAX_INPUT - *n ? take : FUZZ_MAX_INPUT - *n;
                memcpy(buf + *n, o->p, take);
                *n += take;
            }
            break;
        }
    }
}

static unsigned long env_ulong(const char *name, unsigned long def)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    unsigned long x = strtoul(v, &end, 10);
    return *end ? def : x;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The input under test, for the crash handler. */
static const uint8_t *cur_p;
static volatile size_t cur_n;
static char crash_path[1024];

static void on_crash(int sig)
{
    /* Only async-signal-safe calls: open, write, close. */
    if (cur_p && crash_path[0]) {
        int fd = open(crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            size_t off = 0;
            while (off < cur_n) {
                ssize_t w = write(fd, cur_p + off, cur_n - off);
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
            close(fd);
            static const char msg[] = "fuzz-main: failing input saved to ";
            (void)!write(2, msg, sizeof(msg) - 1);
            (void)!write(2, crash_path, strlen(crash_path));
            (void)!write(2, "\n", 1);
        }
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv)
{
    if (argc > 1)
        for (int i = 1; i < argc; i++)
            add_path(argv[i]);
    else
        add_path(FUZZ_CORPUS_DIR);
    if (ncorpus == 0) {
        fprintf(stderr, "fuzz-main: empty corpus\n");
        return 2;
    }

    signal(SIGABRT, on_crash);
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);

    /* (a) replay */
    for (size_t i = 0; i < ncorpus; i++)
        LLVMFuzzerTestOneInput(corpus[i].p, corpus[i].n);
    printf("replayed %zu corpus entries\n", ncorpus);

    /* (b) bounded mutation loop */
    unsigned long seed = env_ulong("FUZZ_SEED", 20240611);
    rng_state = seed;
    unsigned long iterations = env_ulong("FUZZ_ITERATIONS", 200000);
    double deadline = now() + (double)env_ulong("FUZZ_SECONDS", 10);
    static uint8_t buf[FUZZ_MAX_INPUT];
    unsigned long it = 0;
    for (; it < iterations; it++) {
        if ((it & 255) == 0 && now() > deadline)
            break;
        const entry_t *e = &corpus[below(ncorpus)];
        size_t n = e->n < FUZZ_MAX_INPUT ? e->n : FUZZ_MAX_INPUT;
        memcpy(buf, e->p, n);
        size_t rounds = 1 + below(4);
        for (size_t r = 0; r < rounds; r++)
            mutate(buf, &n);
        cur_p = buf;
        cur_n = n;
        snprintf(crash_path, sizeof(crash_path), FUZZ_OUTPUT_DIR "/fuzz-crash-%lu-%lu", seed, it);
        LLVMFuzzerTestOneInput(buf, n);
    }
    printf("ran %lu mutated inputs (seed %lu)\n", it, seed);
    for (size_t i = 0; i < ncorpus; i++)
        free(corpus[i].p);
    return 0;
}
