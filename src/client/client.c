/* client: libalice, the C client of include/alice/metrics.h.
 *
 * One mutex per client guards everything below (buffer, aggregation table,
 * stats, socket). The lock is held while one line is formatted into the
 * datagram buffer and, when the buffer is full or the interval is due, for
 * one non-blocking send(): never for I/O that can wait. */
#include "alice/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "addr.h"
#include "am_config.h"
#include "line.h"
#include "table.h"

#define DEFAULT_INTERVAL_MS   1000u
#define DEFAULT_UDP_DATAGRAM  8192u  /* DogStatsD's advice for loopback UDP */
#define DEFAULT_UNIX_DATAGRAM 32768u /* fewer syscalls; the daemon reads 64 KiB */
#define MIN_DATAGRAM          512u
#define DEFAULT_MAX_KEYS      10000u
#define KEY_MAX               4096u /* longer series keys are parsed on every call */
#define ALL_FLAGS             (ALICE_AGGREGATE | ALICE_NO_THREAD | ALICE_MANUAL_FLUSH | ALICE_UNLOCKED)

/* One series seen by this client: its line with an empty value,
 * "name:|c|#k:v", checked once by the daemon's parser and then reused, so
 * that a call on a known series skips the parser (half the cost of a call)
 * and only splices its value in. With ALICE_AGGREGATE, counter and gauge
 * series also hold the values folded since the last flush. */
typedef struct series {
    uint64_t hash;
    struct series *next_dirty; /* the table's dirty list */
    double value;              /* counter: sum; gauge: value set (has_set) */
    double delta;              /* gauge: sum of deltas while !has_set */
    bool aggregated;           /* ALICE_AGGREGATE and a counter or gauge */
    bool is_gauge;
    bool dirty;
    bool has_set;
    size_t name_len; /* key[name_len] is the ':' */
    size_t nlabels;
    size_t key_len;
    char key[];
} series_t;

typedef struct series_table {
    am_table_t table; /* series_t *, owned with the entries; at most half full */
    size_t max;       /* entries never pass it: further series are checked per call */
    series_t *dirty;
} series_table_t;

struct alice_client {
    pthread_mutex_t lock;
    pthread_cond_t wake; /* the flusher sleeps on it; alice_close signals it */
    pthread_t thread;
    bool locking;
    bool has_thread;
    bool stopping;
    bool aggregate;
    uint64_t interval_ns; /* 0: no interval (ALICE_MANUAL_FLUSH) */
    uint64_t next_flush_ns;
    am_dgram_t dg;
    char *buf; /* owned, max bytes: the datagram being filled */
    size_t len;
    size_t max;
    size_t nlines; /* lines in buf */
    series_table_t series;
    alice_stats st;
};

static inline void lock(alice_client *c)
{
    if (c->locking)
        pthread_mutex_lock(&c->lock);
}

static inline void unlock(alice_client *c)
{
    if (c->locking)
        pthread_mutex_unlock(&c->lock);
}

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The calls check the interval themselves only without a flusher thread;
 * the coarse clock is a vDSO read of a few nanoseconds. */
#ifdef CLOCK_MONOTONIC_COARSE
#define LAZY_CLOCK CLOCK_MONOTONIC_COARSE
#else
#define LAZY_CLOCK CLOCK_MONOTONIC
#endif

/* Sends the pending datagram; a refusal drops it and is counted. */
static int send_buffer(alice_client *c)
{
    if (c->len == 0)
        return 0;
    int rc = am_dgram_send(&c->dg, c->buf, c->len);
    if (rc == 0) {
        c->st.datagrams_sent++;
        c->st.lines_sent += c->nlines;
        c->st.bytes_sent += c->len;
    } else {
        c->st.datagrams_dropped++;
        c->st.lines_dropped += c->nlines;
        c->st.last_error = -rc;
    }
    c->len = 0;
    c->nlines = 0;
    return rc == 0 ? 0 : ALICE_DROPPED;
}

static int refuse(alice_client *c, int rc)
{
    c->st.invalid++;
    return rc;
}

/* The slow path, for sets and for series keys too long to cache: appends
 * k lines (one call's worth) to the buffer, all in one datagram, each one
 * checked by the daemon's parser. A full buffer is sent first. */
static int put_lines(alice_client *c, const am_line_t *lines, size_t k)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t pos = c->len;
        bool nospace = false;
        for (size_t i = 0; i < k; i++) {
            size_t off = pos ? pos + 1 : 0;
            size_t cap = c->max > off ? c->max - off : 0;
            size_t n;
            int rc = am_line_write(&lines[i], c->buf + off, cap, &n, NULL);
            if (rc == -ENOSPC) {
                nospace = true;
                break;
            }
            if (rc != 0 || am_line_validate(c->buf + off, n, lines[i].nlabels) != AM_OK)
                return refuse(c, -EINVAL);
            if (pos)
                c->buf[pos] = '\n';
            pos = off + n;
        }
        if (!nospace) {
            c->len = pos;
            c->nlines += k;
            c->st.calls++;
            return 0;
        }
        if (c->len == 0)
            break;
        (void)send_buffer(c);
    }
    return refuse(c, -EMSGSIZE);
}

/* 64-bit multiply-xorshift over 8-byte words, chained over the parts of a
 * series: a few cycles per word where byte-at-a-time FNV costs a
 * nanosecond per byte. Keys come from the program itself, so no seed
 * against flooding is needed. */
/* The last n < 8 bytes as one word, without a variable-length memcpy
 * (which costs a call): two overlapping loads, or three bytes. Every byte
 * is read, so equal-length tails that differ give different words. */
static inline uint64_t read_tail(const char *p, size_t n)
{
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        return ((uint64_t)a << 32) | b;
    }
    if (n > 0)
        return ((uint64_t)(unsigned char)p[0] << 16) | ((uint64_t)(unsigned char)p[n / 2] << 8) |
               (uint64_t)(unsigned char)p[n - 1];
    return 0;
}

static inline uint64_t hash_more(uint64_t h, const char *p, size_t n)
{
    h ^= n * 0x9e3779b97f4a7c15u;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9u;
        h ^= h >> 31;
        p += 8;
        n -= 8;
    }
    h = (h ^ read_tail(p, n)) * 0x94d049bb133111ebu;
    h ^= h >> 29;
    return h;
}

/* The parts of a call, measured once. */
typedef struct parts {
    const char *name;
    const char *type;
    const alice_label *labels;
    size_t nlabels;
    size_t name_n;
    size_t type_n;
    size_t key_n[AM_MAX_TAGS];
    size_t val_n[AM_MAX_TAGS];
    uint64_t hash;
} parts_t;

/* Measures and hashes the parts; false for NULL pointers or too many
 * labels (the slow path then refuses the call with the right reason). */
static bool parts_measure(parts_t *pt, const char *name, const char *type,
                          const alice_label *labels, size_t nlabels)
{
    if (!name || nlabels > AM_MAX_TAGS || (nlabels && !labels))
        return false;
    pt->name = name;
    pt->type = type;
    pt->labels = labels;
    pt->nlabels = nlabels;
    pt->name_n = strlen(name);
    pt->type_n = strlen(type);
    uint64_t h = hash_more(nlabels, name, pt->name_n);
    h = hash_more(h, type, pt->type_n);
    for (size_t i = 0; i < nlabels; i++) {
        if (!labels[i].key || !labels[i].value)
            return false;
        pt->key_n[i] = strlen(labels[i].key);
        pt->val_n[i] = strlen(labels[i].value);
        h = hash_more(h, labels[i].key, pt->key_n[i]);
        h = hash_more(h, labels[i].value, pt->val_n[i]);
    }
    pt->hash = h;
    return true;
}

/* True when the parts write exactly e's key. The stored parts hold no
 * reserved character (am_line_write checked them), so requiring each
 * separator right after each part, and the same label count, makes the
 * match exact: {k:"a,b:c"} cannot match the key of {k:"a", b:"c"}. */
static bool series_match(const series_t *e, const parts_t *pt)
{
    const char *k = e->key;
    size_t len = e->key_len;
    if (e->nlabels != pt->nlabels || pt->name_n + 2 + pt->type_n > len)
        return false;
    if (memcmp(k, pt->name, pt->name_n) != 0 || k[pt->name_n] != ':' || k[pt->name_n + 1] != '|' ||
        memcmp(k + pt->name_n + 2, pt->type, pt->type_n) != 0)
        return false;
    size_t pos = pt->name_n + 2 + pt->type_n;
    if (pt->nlabels == 0)
        return pos == len;
    if (pos + 2 > len || k[pos] != '|' || k[pos + 1] != '#')
        return false;
    pos += 2;
    for (size_t i = 0; i < pt->nlabels; i++) {
        size_t kn = pt->key_n[i], vn = pt->val_n[i];
        if (pos + kn + 1 + vn > len || memcmp(k + pos, pt->labels[i].key, kn) != 0 ||
            k[pos + kn] != ':')
            return false;
        pos += kn + 1;
        if (memcmp(k + pos, pt->labels[i].value, vn) != 0)
            return false;
        pos += vn;
        if (i + 1 < pt->nlabels) {
            if (pos >= len || k[pos] != ',')
                return false;
            pos++;
        }
    }
    return pos == len;
}

static series_t *series_find(const series_table_t *t, const parts_t *pt)
{
    size_t i;
    for (series_t **e = am_table_first(&t->table, pt->hash, &i); e;
         e = am_table_next(&t->table, &i))
        if ((*e)->hash == pt->hash && series_match(*e, pt))
            return *e;
    return NULL;
}

static uint64_t series_hash(const void *entry)
{
    return (*(series_t *const *)entry)->hash;
}

/* Returns the new entry, or NULL when memory ran out (the series then
 * goes through the parser on every call: slower, nothing lost). */
static series_t *series_insert(series_table_t *t, uint64_t h, const char *key, size_t n,
                               size_t name_len, size_t nlabels)
{
    if (am_table_reserve(&t->table, t->table.n + 1) != 0)
        return NULL;
    series_t *e = malloc(sizeof(*e) + n);
    if (!e)
        return NULL;
    memset(e, 0, sizeof(*e));
    e->hash = h;
    e->name_len = name_len;
    e->nlabels = nlabels;
    e->key_len = n;
    memcpy(e->key, key, n);
    *(series_t **)am_table_add(&t->table, h) = e; /* room reserved */
    return e;
}

static void series_free(series_table_t *t)
{
    size_t i = 0;
    series_t **e;
    while ((e = am_table_each(&t->table, &i)))
        free(*e);
    am_table_free(&t->table);
}

/* A number line's series, as its key: "name:|type|#k:v,...". */
typedef struct key {
    const char *text; /* the series' key, or scratch */
    size_t len;
    size_t name_len;
    series_t *series; /* NULL: valid, but not in the table (full, no memory) */
    char scratch[KEY_MAX];
} key_t_;

#define KEY_TOO_LONG 1 /* take the slow path */

/* Finds or checks the series of (name, type, labels). Returns 0 (k filled),
 * -EINVAL (refused, counted), or KEY_TOO_LONG. A known series costs a
 * strlen, a hash and a compare per part; only a new one is written out
 * and parsed. */
static int series_get(alice_client *c, const char *name, const char *type,
                      const alice_label *labels, size_t nlabels, key_t_ *k)
{
    parts_t pt;
    bool measured = parts_measure(&pt, name, type, labels, nlabels);
    if (measured) {
        k->series = series_find(&c->series, &pt);
        if (k->series) {
            k->text = k->series->key;
            k->len = k->series->key_len;
            k->name_len = k->series->name_len;
            return 0;
        }
    }
    am_line_t l = {name, "", type, labels, nlabels};
    int rc = am_line_write(&l, k->scratch, sizeof(k->scratch), &k->len, NULL);
    if (rc == -ENOSPC)
        return KEY_TOO_LONG;
    if (rc != 0 || !measured)
        return refuse(c, -EINVAL);
    k->text = k->scratch;
    k->series = NULL;
    /* New series: the parser sees it once, with a value of 0 (the values
     * themselves are ours, finite and checked for sign by the callers). */
    const char *colon = memchr(k->scratch, ':', k->len); /* the name holds none */
    k->name_len = (size_t)(colon - k->scratch);
    char line[KEY_MAX + 1];
    memcpy(line, k->scratch, k->name_len + 1);
    line[k->name_len + 1] = '0';
    memcpy(line + k->name_len + 2, colon + 1, k->len - k->name_len - 1);
    if (am_line_validate(line, k->len + 1, nlabels) != AM_OK)
        return refuse(c, -EINVAL);
    /* An aggregated series must fit a datagram with two values spliced in. */
    if (c->series.table.n < c->series.max && k->len + 2 * AM_LINE_NUM_MAX + 2 <= c->max) {
        k->series = series_insert(&c->series, pt.hash, k->scratch, k->len, k->name_len, nlabels);
        if (k->series) {
            k->series->is_gauge = type[0] == 'g';
            k->series->aggregated = c->aggregate && (type[0] == 'c' || type[0] == 'g');
        }
    }
    return 0;
}

/* Writes the key with each value spliced in, as consecutive lines of one
 * datagram, sending the buffer first when they do not fit. Returns 0,
 * ALICE_DROPPED (a full buffer sent on the way was dropped) or -EMSGSIZE. */
static int put_spliced(alice_client *c, const char *key, size_t key_len, size_t name_len,
                       char vals[][AM_LINE_NUM_MAX], const size_t *vlen, size_t k)
{
    int result = 0;
    size_t need = 0;
    for (size_t i = 0; i < k; i++)
        need += key_len + vlen[i] + 1;
    if (c->len + need > c->max) {
        if (need - 1 > c->max)
            return -EMSGSIZE;
        result = send_buffer(c);
    }
    for (size_t i = 0; i < k; i++) {
        if (c->len)
            c->buf[c->len++] = '\n';
        char *p = c->buf + c->len;
        memcpy(p, key, name_len + 1);
        p += name_len + 1;
        memcpy(p, vals[i], vlen[i]);
        p += vlen[i];
        memcpy(p, key + name_len + 1, key_len - name_len - 1);
        p += key_len - name_len - 1;
        c->len = (size_t)(p - c->buf);
        c->nlines++;
    }
    return result;
}

static int agg_flush(alice_client *c)
{
    int result = 0;
    series_t *e = c->series.dirty;
    c->series.dirty = NULL;
    while (e) {
        series_t *next = e->next_dirty;
        char vals[2][AM_LINE_NUM_MAX];
        size_t vlen[2];
        size_t k = 1;
        if (!e->is_gauge) {
            vlen[0] = am_line_double(e->value, vals[0]);
        } else if (e->has_set && e->value < 0) {
            vals[0][0] = '0';
            vlen[0] = 1;
            vlen[1] = am_line_double(e->value, vals[1]);
            k = 2;
        } else if (e->has_set) {
            vlen[0] = am_line_double(e->value, vals[0]);
        } else {
            vlen[0] = am_line_delta(e->delta, vals[0]);
        }
        /* A sum can overflow to Inf: such a line would be refused. The key
         * fit the datagram when it was inserted, so -EMSGSIZE cannot come. */
        if (vlen[0] && (k == 1 || vlen[1]))
            result |= put_spliced(c, e->key, e->key_len, e->name_len, vals, vlen, k) > 0;
        e->value = 0;
        e->delta = 0;
        e->has_set = false;
        e->dirty = false;
        e->next_dirty = NULL;
        e = next;
    }
    return result;
}

static int flush_locked(alice_client *c)
{
    int result = 0;
    if (c->aggregate)
        result |= agg_flush(c);
    result |= send_buffer(c);
    return result ? ALICE_DROPPED : 0;
}

/* Without a flusher thread the calls keep the interval. */
static void lazy_tick(alice_client *c)
{
    if (!c->interval_ns || c->has_thread)
        return;
    uint64_t now = clock_ns(LAZY_CLOCK);
    if (now >= c->next_flush_ns) {
        (void)flush_locked(c);
        c->next_flush_ns = now + c->interval_ns;
    }
}

static void *flusher_main(void *arg)
{
    alice_client *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->stopping) {
        struct timespec ts = {
            .tv_sec = (time_t)(c->next_flush_ns / 1000000000u),
            .tv_nsec = (long)(c->next_flush_ns % 1000000000u),
        };
        (void)pthread_cond_timedwait(&c->wake, &c->lock, &ts);
        if (c->stopping)
            break;
        uint64_t now = clock_ns(CLOCK_MONOTONIC);
        if (now >= c->next_flush_ns) {
            (void)flush_locked(c);
            c->next_flush_ns = now + c->interval_ns;
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void client_free(alice_client *c)
{
    am_dgram_close(&c->dg);
    series_free(&c->series);
    free(c->buf);
    pthread_cond_destroy(&c->wake);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int alice_open_opts(alice_client **out, const char *addr, const alice_options *opts)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    alice_options o = ALICE_OPTIONS_INIT;
    if (opts) {
        if (opts->struct_size < sizeof(alice_options))
            return -EINVAL;
        o.flags = opts->flags;
        o.flush_interval_ms = opts->flush_interval_ms;
        o.max_datagram = opts->max_datagram;
        o.max_keys = opts->max_keys;
    }
    if (o.flags & ~(unsigned)ALL_FLAGS)
        return -EINVAL;
    if (!addr || !*addr) {
        addr = getenv("ALICE_METRICS_ADDR");
        if (!addr || !*addr)
            addr = AM_ADDR_DEFAULT;
    }
    am_addr_t a;
    if (am_addr_parse(addr, &a) != 0)
        return -EINVAL;
    size_t max = o.max_datagram;
    if (!max)
        max = a.kind == AM_ADDR_UDP ? DEFAULT_UDP_DATAGRAM : DEFAULT_UNIX_DATAGRAM;
    if (max < MIN_DATAGRAM || max > (a.kind == AM_ADDR_UDP ? AM_ADDR_UDP_MAX : AM_ADDR_UNIX_MAX))
        return -EINVAL;

    alice_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->buf = malloc(max);
    if (!c->buf) {
        free(c);
        return -ENOMEM;
    }
    c->max = max;
    int rc = am_dgram_open(&c->dg, &a, true, 0);
    if (rc < 0) {
        free(c->buf);
        free(c);
        return rc;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->wake, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&c->lock, NULL);

    bool manual = o.flags & ALICE_MANUAL_FLUSH;
    c->locking = !(o.flags & ALICE_UNLOCKED);
    c->aggregate = o.flags & ALICE_AGGREGATE;
    am_table_init(&c->series.table, sizeof(series_t *), 50, series_hash);
    c->series.max = o.max_keys ? o.max_keys : DEFAULT_MAX_KEYS;
    unsigned ms = o.flush_interval_ms ? o.flush_interval_ms : DEFAULT_INTERVAL_MS;
    c->interval_ns = manual ? 0 : (uint64_t)ms * 1000000u;
    c->has_thread = !manual && c->locking && !(o.flags & ALICE_NO_THREAD);
    c->next_flush_ns = clock_ns(c->has_thread ? CLOCK_MONOTONIC : LAZY_CLOCK) + c->interval_ns;

    if (c->has_thread) {
        /* The flusher takes no signals: they stay with the application's
         * threads, whatever handlers it installs later. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = pthread_create(&c->thread, NULL, flusher_main, c);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            c->has_thread = false;
            client_free(c);
            return -rc;
        }
    }
    *out = c;
    return 0;
}

int alice_open(alice_client **out, const char *addr, unsigned flags)
{
    alice_options o = ALICE_OPTIONS_INIT;
    o.flags = flags;
    return alice_open_opts(out, addr, &o);
}

int alice_close(alice_client *c)
{
    if (!c)
        return 0;
    if (c->has_thread) {
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
    }
    int rc = flush_locked(c); /* no other thread may use c any more */
    client_free(c);
    return rc;
}

int alice_flush(alice_client *c)
{
    if (!c)
        return -EBADF;
    lock(c);
    int rc = flush_locked(c);
    unlock(c);
    return rc;
}

typedef enum op {
    OP_ADD,   /* counter increment */
    OP_SET,   /* gauge set */
    OP_DELTA, /* gauge delta */
    OP_OBSERVE,
} op_t;

/* Every number call: check the value, find the series, then fold the value
 * into it (aggregated counter or gauge) or write its line(s). */
static int number_call(alice_client *c, const char *name, const char *type, op_t op, double v,
                       const alice_label *labels, size_t nlabels)
{
    if (!c)
        return -EBADF;
    lock(c);
    int rc;
    key_t_ k;
    char vals[2][AM_LINE_NUM_MAX];
    size_t vlen[2];
    size_t nvals = 1;
    if (!isfinite(v) || (op == OP_ADD && v < 0)) {
        rc = refuse(c, -EINVAL);
        goto out;
    }
    rc = series_get(c, name, type, labels, nlabels, &k);
    if (rc < 0)
        goto out;
    series_t *e = rc == 0 ? k.series : NULL;
    if (e && e->aggregated) {
        if (op == OP_SET) {
            e->has_set = true;
            e->value = v;
            e->delta = 0;
        } else if (op == OP_DELTA && !e->has_set) {
            e->delta += v;
        } else {
            e->value += v;
        }
        if (!e->dirty) {
            e->dirty = true;
            e->next_dirty = c->series.dirty;
            c->series.dirty = e;
        }
        c->st.calls++;
        goto out;
    }
    if (op == OP_DELTA) {
        vlen[0] = am_line_delta(v, vals[0]);
    } else if (op == OP_SET && v < 0) {
        /* A gauge cannot be set negative on the StatsD wire: 0, then the
         * negative delta, in one datagram. */
        vals[0][0] = '0';
        vals[0][1] = '\0';
        vlen[0] = 1;
        vlen[1] = am_line_double(v, vals[1]);
        nvals = 2;
    } else {
        vlen[0] = am_line_double(v, vals[0]);
    }
    if (rc == KEY_TOO_LONG) {
        am_line_t lines[2] = {{name, vals[0], type, labels, nlabels},
                              {name, vals[1], type, labels, nlabels}};
        rc = put_lines(c, lines, nvals);
        goto out;
    }
    rc = put_spliced(c, k.text, k.len, k.name_len, vals, vlen, nvals);
    if (rc < 0) {
        rc = refuse(c, rc);
    } else {
        rc = 0;
        c->st.calls++;
    }
out:
    lazy_tick(c);
    unlock(c);
    return rc;
}

int alice_counter(alice_client *c, const char *name, double value, const alice_label *labels,
                  size_t nlabels)
{
    return number_call(c, name, "c", OP_ADD, value, labels, nlabels);
}

int alice_gauge(alice_client *c, const char *name, double value, const alice_label *labels,
                size_t nlabels)
{
    return number_call(c, name, "g", OP_SET, value, labels, nlabels);
}

int alice_gauge_add(alice_client *c, const char *name, double delta, const alice_label *labels,
                    size_t nlabels)
{
    return number_call(c, name, "g", OP_DELTA, delta, labels, nlabels);
}

int alice_histogram(alice_client *c, const char *name, double value, const alice_label *labels,
                    size_t nlabels)
{
    return number_call(c, name, "h", OP_OBSERVE, value, labels, nlabels);
}

int alice_timer_ms(alice_client *c, const char *name, double ms, const alice_label *labels,
                   size_t nlabels)
{
    return number_call(c, name, "ms", OP_OBSERVE, ms, labels, nlabels);
}

/* Sets take the slow path: the member is the caller's text, so the parser
 * sees every line. */
int alice_set(alice_client *c, const char *name, const char *member, const alice_label *labels,
              size_t nlabels)
{
    if (!c)
        return -EBADF;
    lock(c);
    int rc;
    if (!member) {
        rc = refuse(c, -EINVAL);
    } else {
        am_line_t l = {name, member, "s", labels, nlabels};
        rc = put_lines(c, &l, 1);
    }
    lazy_tick(c);
    unlock(c);
    return rc;
}

int alice_get_stats(alice_client *c, alice_stats *out)
{
    if (!c || !out)
        return -EBADF;
    lock(c);
    *out = c->st;
    unlock(c);
    return 0;
}

const char *alice_strerror(int status)
{
    switch (status) {
        case 0:
            return "success";
        case ALICE_DROPPED:
            return "datagram dropped: daemon absent or socket buffer full";
        case -EINVAL:
            return "invalid argument: the daemon would reject this name, label, value or address";
        case -EMSGSIZE:
            return "line longer than a datagram";
        case -EBADF:
            return "no client (NULL)";
        case -ENOMEM:
            return "out of memory";
        case -EADDRNOTAVAIL:
            return "metrics host does not resolve";
        default:
            break;
    }
    if (status < 0) {
        const char *s = strerrordesc_np(-status);
        if (s)
            return s;
    }
    return "unknown status";
}

const char *alice_version(void)
{
    return AM_VERSION;
}
