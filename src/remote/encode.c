#include "encode.h"

#include <errno.h>
#include <snappy-c.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "hash.h"
#include "remote.pb-c.h"
#include "table.h"

/* A label string: an offset into the batch arena, or (FIXED set) into the
 * fixed strings (__name__ and the external labels), which never move. */
#define FIXED       0x80000000u
#define NAME_REF    (FIXED | 0u) /* "__name__" at the fixed strings' start */
#define SEEN        0x80000000u  /* key_ent_t.len: the mark bit (see seen_mark) */
#define CLOCK_PER   64           /* series between looks at the clock */
#define COUNT_PER   (64 * 1024)  /* body bytes counted per unit of work */
#define SWEEP_PER   256          /* previous push's slots looked at per unit */
#define RELEASE_PER (2u << 20)   /* bytes given back per unit (about 0.2 ms) */

typedef struct lref {
    uint32_t name, value;
} lref_t;

typedef struct pseries {
    size_t lab0; /* its first label in labs */
    uint32_t nlab;
    double v;
} pseries_t;

/* One series of a body: its key (`name{labels}`) at off, len bytes. */
typedef struct key_ent {
    uint64_t hash; /* as am_table_add stores it */
    uint32_t off;
    uint32_t len; /* | SEEN */
} key_ent_t;

/* A push: count the body's lines (to size its index at once: growing an
 * index of a million series would hold the loop for 100 ms), parse them,
 * then mark what the previous push had and this one lacks. Each phase
 * works in units of bounded cost between looks at the clock. */
typedef enum phase { PHASE_IDLE, PHASE_COUNT, PHASE_PARSE, PHASE_STALE, PHASE_RELEASE } phase_t;

/* A block of the previous push (its text, its index) once the current
 * one has replaced it, given back in slices: freeing 100 MB at once holds
 * the loop for 10 ms while the kernel unmaps it. */
typedef struct retired {
    char *p; /* owned (malloc) */
    size_t size;
    size_t done; /* bytes from p already given back */
} retired_t;

/* One push's body and the index of its series. */
typedef struct body {
    am_buf_t text;
    am_table_t keys; /* key_ent_t */
} body_t;

struct am_remote_enc {
    am_buf_t fixed; /* "__name__\0" then each external label's name\0value\0 */
    lref_t *ext;    /* owned: external labels, sorted by name */
    size_t next;
    body_t prev, cur;
    retired_t retired[2];
    phase_t phase;
    size_t pos;   /* count or parse position in cur.text */
    size_t lines; /* lines counted so far */
    /* key_ent_t.len & SEEN == seen_mark: the current push has that series
     * (entries are added with it, and it flips at each push's begin, so
     * that no walk over the previous push's index is needed to clear it) */
    uint32_t seen_mark;
    size_t stale_i; /* slot walk in prev.keys */
    int64_t ts, last_ts;
    /* the batch */
    am_buf_t arena;
    lref_t *labs; /* owned */
    size_t nlabs, caplabs;
    pseries_t ser[AM_REMOTE_MAX_SAMPLES];
    size_t nser;
    bool batch_failed; /* out of memory: the batch is dropped */
    /* protobuf scratch, filled at pack time */
    Prometheus__TimeSeries ts_pb[AM_REMOTE_MAX_SAMPLES];
    Prometheus__TimeSeries *ts_ptr[AM_REMOTE_MAX_SAMPLES];
    Prometheus__Sample smp[AM_REMOTE_MAX_SAMPLES];
    Prometheus__Sample *smp_ptr[AM_REMOTE_MAX_SAMPLES];
    Prometheus__Label *pl;   /* owned, caplabs */
    Prometheus__Label **plp; /* owned, caplabs */
    am_buf_t packed;
    size_t series_last; /* series in the last completed push */
    uint64_t longest_ns, bad_lines;
};

static uint64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void body_init(body_t *b)
{
    am_buf_init(&b->text, 0);
    am_table_init(&b->keys, sizeof(key_ent_t), 50, NULL);
}

static void body_free(body_t *b)
{
    am_buf_free(&b->text);
    am_table_free(&b->keys);
}

am_remote_enc_t *am_remote_enc_new(void)
{
    am_remote_enc_t *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    am_buf_init(&e->fixed, 0);
    am_buf_init(&e->arena, 0);
    am_buf_init(&e->packed, 0);
    body_init(&e->prev);
    body_init(&e->cur);
    am_buf_append(&e->fixed, "__name__", 9);
    if (am_buf_failed(&e->fixed)) {
        am_remote_enc_free(e);
        return NULL;
    }
    return e;
}

void am_remote_enc_free(am_remote_enc_t *e)
{
    if (!e)
        return;
    am_buf_free(&e->fixed);
    am_buf_free(&e->arena);
    am_buf_free(&e->packed);
    body_free(&e->prev);
    body_free(&e->cur);
    free(e->retired[0].p);
    free(e->retired[1].p);
    free(e->ext);
    free(e->labs);
    free(e->pl);
    free(e->plp);
    free(e);
}

static const char *str(const am_remote_enc_t *e, uint32_t ref)
{
    return ref & FIXED ? e->fixed.data + (ref & ~FIXED) : e->arena.data + ref;
}

/* Sorts refs[0..n) by name: a series has a handful of labels. */
static void sort_labels(const am_remote_enc_t *e, lref_t *refs, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        lref_t x = refs[i];
        const char *xn = str(e, x.name);
        size_t j = i;
        while (j > 0 && strcmp(str(e, refs[j - 1].name), xn) > 0) {
            refs[j] = refs[j - 1];
            j--;
        }
        refs[j] = x;
    }
}

int am_remote_enc_set_external(am_remote_enc_t *e, const char *const *pairs, size_t n)
{
    am_buf_t fixed;
    am_buf_init(&fixed, 0);
    am_buf_append(&fixed, "__name__", 9);
    lref_t *ext = calloc(n ? n : 1, sizeof(*ext));
    size_t next = 0;
    for (size_t i = 0; ext && i < n; i++) {
        if (!pairs[2 * i + 1][0])
            continue;
        ext[next].name = FIXED | (uint32_t)fixed.len;
        am_buf_append(&fixed, pairs[2 * i], strlen(pairs[2 * i]) + 1);
        ext[next].value = FIXED | (uint32_t)fixed.len;
        am_buf_append(&fixed, pairs[2 * i + 1], strlen(pairs[2 * i + 1]) + 1);
        next++;
    }
    if (!ext || am_buf_failed(&fixed) || fixed.len >= FIXED) {
        free(ext);
        am_buf_free(&fixed);
        return -ENOMEM;
    }
    am_buf_free(&e->fixed);
    free(e->ext);
    e->fixed = fixed;
    e->ext = ext;
    e->next = next;
    sort_labels(e, e->ext, e->next);
    return 0;
}

/* ---- the batch ---- */

static lref_t *new_label(am_remote_enc_t *e)
{
    if (e->nlabs == e->caplabs) {
        size_t cap = e->caplabs ? 2 * e->caplabs : 4096;
        lref_t *l = realloc(e->labs, cap * sizeof(*l));
        if (!l)
            return NULL;
        e->labs = l;
        e->caplabs = cap;
    }
    return &e->labs[e->nlabs++];
}

/* Copies n bytes and a NUL into the arena; its offset, or FIXED (failed). */
static uint32_t arena_str(am_remote_enc_t *e, const char *p, size_t n)
{
    size_t off = e->arena.len;
    am_buf_append(&e->arena, p, n);
    am_buf_putc(&e->arena, '\0');
    if (am_buf_failed(&e->arena) || e->arena.len >= FIXED)
        return FIXED;
    return (uint32_t)off;
}

/* An escaped label value of the exposition (`\\`, `\"`, `\n`) up to its
 * closing quote into the arena: *ref set (FIXED when empty or out of
 * memory), the position after the quote returned; NULL when unterminated. */
static const char *value_str(am_remote_enc_t *e, const char *p, const char *end, uint32_t *ref)
{
    size_t off = e->arena.len;
    const char *q = p;
    while (q < end && *q != '"')
        q += *q == '\\' ? 2 : 1;
    if (q >= end || !am_buf_reserve(&e->arena, (size_t)(q - p) + 1))
        return NULL;
    char *o = e->arena.data + off;
    while (p < q) {
        if (*p == '\\') {
            *o++ = p[1] == 'n' ? '\n' : p[1];
            p += 2;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    size_t n = (size_t)(o - (e->arena.data + off));
    e->arena.len = off + n + 1;
    *ref = n && e->arena.len < FIXED ? (uint32_t)off : FIXED;
    if (!n)
        e->arena.len = off; /* an empty label is an absent one */
    return q + 1;
}

/* `name{k="v",...}` into the batch as one series (its value set by the
 * caller). The position after the key, or NULL (malformed: the batch is
 * left as it was). */
static const char *parse_key(am_remote_enc_t *e, const char *p, const char *end)
{
    size_t lab0 = e->nlabs, arena0 = e->arena.len;
    const char *n0 = p;
    while (p < end && *p != '{' && *p != ' ' && *p != '\n')
        p++;
    uint32_t name = p > n0 ? arena_str(e, n0, (size_t)(p - n0)) : FIXED;
    lref_t *l = name != FIXED ? new_label(e) : NULL;
    if (!l)
        goto bad;
    *l = (lref_t){NAME_REF, name};
    if (p < end && *p == '{') {
        p++;
        while (p < end && *p != '}') {
            const char *k0 = p;
            while (p < end && *p != '=' && *p != '}')
                p++;
            if (p + 1 >= end || *p != '=' || p == k0 || p[1] != '"')
                goto bad;
            uint32_t k = arena_str(e, k0, (size_t)(p - k0)), v;
            p = value_str(e, p + 2, end, &v);
            if (!p || k == FIXED)
                goto bad;
            if (v != FIXED) {
                if (!(l = new_label(e)))
                    goto bad;
                *l = (lref_t){k, v};
            }
            if (p < end && *p == ',')
                p++;
        }
        if (p >= end)
            goto bad;
        p++;
    }
    /* the external labels the series lacks */
    size_t own = e->nlabs - lab0;
    for (size_t i = 0; i < e->next; i++) {
        const char *xn = str(e, e->ext[i].name);
        bool has = false;
        for (size_t j = lab0 + 1; j < lab0 + own && !has; j++)
            has = strcmp(str(e, e->labs[j].name), xn) == 0;
        if (has)
            continue;
        if (!(l = new_label(e)))
            goto bad;
        *l = e->ext[i];
    }
    sort_labels(e, e->labs + lab0, e->nlabs - lab0);
    e->ser[e->nser] = (pseries_t){lab0, (uint32_t)(e->nlabs - lab0), 0};
    return p;
bad:
    e->nlabs = lab0;
    e->arena.len = arena0;
    return NULL;
}

/* The batch into one request, handed to emit; the batch is emptied. */
static void flush(am_remote_enc_t *e, am_remote_emit_fn emit, void *ctx)
{
    if (!e->nser)
        return;
    size_t n = e->nser;
    bool ok = !e->batch_failed && !am_buf_failed(&e->arena);
    if (ok && e->nlabs > 0) {
        Prometheus__Label *pl = realloc(e->pl, e->caplabs * sizeof(*pl));
        if (pl)
            e->pl = pl;
        Prometheus__Label **plp = pl ? realloc(e->plp, e->caplabs * sizeof(*plp)) : NULL;
        if (plp)
            e->plp = plp;
        ok = pl && plp;
    }
    if (ok) {
        for (size_t j = 0; j < e->nlabs; j++) {
            prometheus__label__init(&e->pl[j]);
            e->pl[j].name = (char *)str(e, e->labs[j].name);
            e->pl[j].value = (char *)str(e, e->labs[j].value);
            e->plp[j] = &e->pl[j];
        }
        for (size_t i = 0; i < n; i++) {
            prometheus__sample__init(&e->smp[i]);
            e->smp[i].value = e->ser[i].v;
            e->smp[i].timestamp = e->ts;
            e->smp_ptr[i] = &e->smp[i];
            prometheus__time_series__init(&e->ts_pb[i]);
            e->ts_pb[i].n_labels = e->ser[i].nlab;
            e->ts_pb[i].labels = e->plp + e->ser[i].lab0;
            e->ts_pb[i].n_samples = 1;
            e->ts_pb[i].samples = &e->smp_ptr[i];
            e->ts_ptr[i] = &e->ts_pb[i];
        }
        Prometheus__WriteRequest wr;
        prometheus__write_request__init(&wr);
        wr.n_timeseries = n;
        wr.timeseries = e->ts_ptr;
        size_t size = prometheus__write_request__get_packed_size(&wr);
        am_buf_reset(&e->packed);
        char *out = NULL;
        size_t clen = snappy_max_compressed_length(size);
        if (am_buf_reserve(&e->packed, size) && (out = malloc(clen))) {
            prometheus__write_request__pack(&wr, (uint8_t *)e->packed.data);
            if (snappy_compress(e->packed.data, size, out, &clen) == SNAPPY_OK) {
                char *shrunk = realloc(out, clen ? clen : 1);
                emit(ctx, shrunk ? shrunk : out, clen, n);
                out = NULL;
            } else {
                ok = false;
            }
        } else {
            ok = false;
        }
        free(out);
        /* one 100 MB request once must not pin its size forever */
        if (e->packed.cap > (8u << 20))
            am_buf_free(&e->packed);
    }
    if (!ok)
        e->bad_lines += n;
    e->nser = 0;
    e->nlabs = 0;
    e->batch_failed = false;
    am_buf_reset(&e->arena);
}

/* Adds one series to the batch, flushing it when full. */
static void commit_series(am_remote_enc_t *e, double v)
{
    e->ser[e->nser++].v = v; /* a full batch is flushed by the step */
}

/* ---- a push ---- */

static key_ent_t *find_key(const body_t *b, uint64_t h, const char *k, size_t n)
{
    size_t i;
    uint64_t hh = am_table_hash(h);
    for (key_ent_t *x = am_table_first(&b->keys, h, &i); x; x = am_table_next(&b->keys, &i))
        if (x->hash == hh && (x->len & ~SEEN) == n && memcmp(b->text.data + x->off, k, n) == 0)
            return x;
    return NULL;
}

/* One line of the current body at e->pos. */
static void parse_line(am_remote_enc_t *e, am_remote_emit_fn emit, void *ctx)
{
    const char *base = e->cur.text.data, *end = base + e->cur.text.len;
    const char *p = base + e->pos;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl)
        nl = end;
    e->pos = (size_t)(nl - base) + (nl < end);
    if (p == nl || *p == '#')
        return;
    const char *k = parse_key(e, p, nl);
    char *vend;
    double v = 0;
    if (k && k < nl && *k == ' ')
        v = strtod(k + 1, &vend);
    if (!k || k >= nl || *k != ' ' || vend == k + 1 || vend != nl) {
        if (k) { /* its labels are in the batch: take them back */
            e->nlabs = e->ser[e->nser].lab0;
        }
        e->bad_lines++;
        return;
    }
    size_t klen = (size_t)(k - p);
    uint64_t h = am_hash(p, klen);
    if (find_key(&e->cur, h, p, klen)) { /* the same series twice: the first counts */
        e->nlabs = e->ser[e->nser].lab0;
        e->bad_lines++;
        return;
    }
    key_ent_t *seen = find_key(&e->prev, h, p, klen);
    if (seen)
        seen->len = (seen->len & ~SEEN) | e->seen_mark;
    key_ent_t *x = am_table_add(&e->cur.keys, h);
    if (x) {
        x->off = (uint32_t)(p - base);
        x->len = (uint32_t)klen | e->seen_mark;
    }
    commit_series(e, v);
}

/* Counts the lines of the next COUNT_PER bytes of the body; once all are
 * counted, sizes the index for them and parsing begins. */
static void count_lines(am_remote_enc_t *e)
{
    const char *p = e->cur.text.data + e->pos;
    size_t n = e->cur.text.len - e->pos;
    if (n > COUNT_PER)
        n = COUNT_PER;
    for (const char *q = p, *end = p + n; (q = memchr(q, '\n', (size_t)(end - q))); q++)
        e->lines++;
    e->pos += n;
    if (e->pos < e->cur.text.len)
        return;
    /* on failure the index grows as it goes (slower, still correct) */
    (void)!am_table_reserve(&e->cur.keys, e->lines + 1);
    e->pos = 0;
    e->phase = PHASE_PARSE;
}

/* The next series of the previous push that the current one lacks gets a
 * stale marker, looking at SWEEP_PER slots at most; false when there are
 * no more. */
static bool stale_next(am_remote_enc_t *e, am_remote_emit_fn emit, void *ctx)
{
    key_ent_t *x;
    size_t stop = e->stale_i + SWEEP_PER;
    while ((x = am_table_each(&e->prev.keys, &e->stale_i))) {
        if ((x->len & SEEN) == e->seen_mark) {
            if (e->stale_i >= stop)
                return true; /* more next time */
            continue;
        }
        const char *k = e->prev.text.data + x->off;
        double stale;
        uint64_t bits = AM_REMOTE_STALE_NAN;
        memcpy(&stale, &bits, sizeof(stale));
        if (parse_key(e, k, k + (x->len & ~SEEN)))
            commit_series(e, stale);
        else
            e->bad_lines++;
        return true;
    }
    return false;
}

static void retire(retired_t *r, void *p, size_t size)
{
    free(r->p);
    r->p = p;
    r->size = size;
    r->done = 0;
}

/* The push is encoded: its series become the previous push's, whose
 * memory is given back (PHASE_RELEASE). */
static void end_push(am_remote_enc_t *e, am_remote_emit_fn emit, void *ctx)
{
    flush(e, emit, ctx);
    retire(&e->retired[0], e->prev.text.data, e->prev.text.cap);
    am_buf_init(&e->prev.text, 0);
    retire(&e->retired[1], e->prev.keys.slots, e->prev.keys.cap * e->prev.keys.esize);
    e->prev.keys.slots = NULL;
    body_free(&e->prev);
    e->prev = e->cur;
    body_init(&e->cur);
    e->series_last = e->prev.keys.n;
    e->last_ts = e->ts;
    e->phase = PHASE_RELEASE;
}

/* Gives RELEASE_PER bytes of a retired block back: its whole pages are
 * discarded (MADV_DONTNEED: the kernel takes them now, a slice at a time),
 * then free() unmaps what is left, which costs little. The pages are ours
 * until free: the allocator's own header lies before p, outside them. (A
 * shrinking realloc would do the same with glibc, but copies the block
 * with other allocators and under ASan.) */
static void release_some(am_remote_enc_t *e)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < 2; i++) {
        retired_t *r = &e->retired[i];
        if (!r->p)
            continue;
        uintptr_t lo = ((uintptr_t)r->p + r->done + page - 1) & ~(page - 1);
        uintptr_t hi = ((uintptr_t)r->p + r->size) & ~(page - 1);
        if (hi > lo && hi - lo > RELEASE_PER) {
            (void)madvise((void *)lo, RELEASE_PER, MADV_DONTNEED);
            r->done = lo + RELEASE_PER - (uintptr_t)r->p;
            return;
        }
        free(r->p);
        r->p = NULL;
        return;
    }
    e->phase = PHASE_IDLE;
}

bool am_remote_enc_step(am_remote_enc_t *e, uint64_t budget_ns, am_remote_emit_fn emit, void *ctx)
{
    uint64_t t0 = mono_ns(), t = t0;
    unsigned since_clock = 0;
    bool worked = false;
    while (e->phase != PHASE_IDLE) {
        if (e->nser == AM_REMOTE_MAX_SAMPLES) {
            /* packing and compressing a full batch is the largest unit
             * (about 1 ms): it begins a step or follows little work */
            if (worked && mono_ns() - t0 >= budget_ns / 2)
                break;
            flush(e, emit, ctx);
            since_clock = CLOCK_PER - 1;
        } else if (e->phase == PHASE_COUNT) {
            count_lines(e);
            since_clock = CLOCK_PER - 1; /* a slice is a unit of its own */
        } else if (e->phase == PHASE_PARSE) {
            if (e->pos < e->cur.text.len) {
                parse_line(e, emit, ctx);
            } else {
                e->phase = PHASE_STALE;
                e->stale_i = 0;
            }
        } else if (e->phase == PHASE_STALE) {
            if (!stale_next(e, emit, ctx))
                end_push(e, emit, ctx);
        } else {
            release_some(e);
            since_clock = CLOCK_PER - 1; /* a slice is a unit of its own */
        }
        worked = true;
        if (++since_clock == CLOCK_PER) {
            since_clock = 0;
            t = mono_ns();
            if (t - t0 >= budget_ns)
                break;
        }
    }
    t = mono_ns();
    if (t - t0 > e->longest_ns)
        e->longest_ns = t - t0;
    return e->phase == PHASE_IDLE;
}

bool am_remote_enc_busy(const am_remote_enc_t *e)
{
    return e->phase != PHASE_IDLE;
}

int am_remote_enc_begin(am_remote_enc_t *e, am_buf_t *body, int64_t ts_ms)
{
    if (e->phase != PHASE_IDLE) {
        am_buf_free(body);
        return -EBUSY;
    }
    if (am_buf_failed(body) || body->len >= UINT32_MAX) {
        int rc = am_buf_failed(body) ? -ENOMEM : -EFBIG;
        am_buf_free(body);
        return rc;
    }
    body_free(&e->cur);
    body_init(&e->cur);
    e->cur.text = *body;
    am_buf_init(body, 0);
    e->seen_mark ^= SEEN; /* every series of the previous push: not seen */
    e->ts = ts_ms > e->last_ts ? ts_ms : e->last_ts + 1;
    e->pos = 0;
    e->lines = 0;
    e->phase = PHASE_COUNT;
    return 0;
}

void am_remote_enc_stale_all(am_remote_enc_t *e, int64_t ts_ms, am_remote_emit_fn emit, void *ctx)
{
    if (e->phase != PHASE_IDLE)
        (void)am_remote_enc_step(e, UINT64_MAX, emit, ctx);
    am_buf_t empty;
    am_buf_init(&empty, 0);
    am_buf_putc(&empty, '\n');
    if (am_remote_enc_begin(e, &empty, ts_ms) == 0)
        (void)am_remote_enc_step(e, UINT64_MAX, emit, ctx);
}

size_t am_remote_enc_series(const am_remote_enc_t *e)
{
    return e->series_last;
}

uint64_t am_remote_enc_take_longest_ns(am_remote_enc_t *e)
{
    uint64_t n = e->longest_ns;
    e->longest_ns = 0;
    return n;
}

uint64_t am_remote_enc_bad_lines(const am_remote_enc_t *e)
{
    return e->bad_lines;
}
