/* state: the state file's encoding (state.h; the layout is in
 * proto/README.md "State file").
 *
 * Little-endian throughout. Header (32 bytes): "ALICEST\n", u32 version,
 * u32 header length, u64 body length, u32 CRC-32 of the body, u32 CRC-32
 * of the 28 bytes before it. Body: u32 family count, then per family its
 * definition and u64 series count, then per series u32 key length, key,
 * u32 value count, f64 values, f64 creation time (unix seconds; not in
 * version 1, which is still read), and for a set u64 member count and u64
 * member hashes. Strings carry their length; nothing is NUL-terminated. */
#include "state.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "hash.h"
#include "parse.h"
#include "registry-internal.h"

static const char magic[8] = {'A', 'L', 'I', 'C', 'E', 'S', 'T', '\n'};

enum {
    FLAG_SET = 1,        /* a set gauge */
    FLAG_OPEN = 2,       /* labels may grow (auto-created) */
    FLAG_CATALOGUED = 4, /* from the catalog or the config */
};

#define MAX_HELP_LEN (1u << 16)

/* ---- encoding ---- */

static void put_u8(am_buf_t *b, uint8_t v)
{
    am_buf_append(b, &v, 1);
}

static void put_u16(am_buf_t *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    am_buf_append(b, x, 2);
}

static void put_u32(am_buf_t *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    am_buf_append(b, x, 4);
}

static void put_u64(am_buf_t *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    am_buf_append(b, x, 8);
}

static void put_f64(am_buf_t *b, double d)
{
    uint64_t v;
    memcpy(&v, &d, 8);
    put_u64(b, v);
}

static void put_str16(am_buf_t *b, const char *s)
{
    size_t n = strlen(s);
    put_u16(b, (uint16_t)n);
    am_buf_append(b, s, n);
}

static void encode_family(am_buf_t *b, const am_family_t *f)
{
    const am_family_def_t *d = &f->def;
    put_str16(b, d->name);
    size_t hn = strlen(d->help);
    hn = hn < MAX_HELP_LEN ? hn : MAX_HELP_LEN;
    put_u32(b, (uint32_t)hn);
    am_buf_append(b, d->help, hn);
    put_u8(b, (uint8_t)d->type);
    put_u8(b, (uint8_t)((d->is_set ? FLAG_SET : 0) | (d->open_labels ? FLAG_OPEN : 0) |
                        (f->catalogued ? FLAG_CATALOGUED : 0)));
    put_u32(b, d->ttl);
    put_u64(b, d->max_series);
    put_u8(b, (uint8_t)d->nlabels);
    for (size_t i = 0; i < d->nlabels; i++)
        put_str16(b, d->labels[i]);
    put_u8(b, (uint8_t)d->nbuckets);
    for (size_t i = 0; i < d->nbuckets; i++)
        put_f64(b, d->buckets[i]);
    put_u64(b, f->nseries);
    size_t nv = am__values_per_series(d, false);
    for (const am_series_t *s = am_family_first_series(f); s; s = am_series_next(s)) {
        put_u32(b, s->key_len);
        am_buf_append(b, am__series_key(f, s), s->key_len);
        put_u32(b, (uint32_t)nv);
        for (size_t i = 0; i < nv; i++)
            put_f64(b, s->v[i]);
        put_f64(b, s->created);
        if (d->is_set) {
            size_t i = 0;
            const uint64_t *m;
            put_u64(b, s->set ? am__set_count(s->set) : 0);
            while (s->set && (m = am_table_each(&s->set->members, &i)))
                put_u64(b, *m);
        }
    }
}

int am_state_encode(const am_registry_t *r, am_buf_t *out)
{
    size_t start = out->len;
    uint8_t header[AM_STATE_HEADER_LEN] = {0};
    am_buf_append(out, header, sizeof(header)); /* filled in below */
    size_t body = out->len;
    put_u32(out, (uint32_t)r->nfamilies);
    for (const am_family_t *f = r->first; f; f = f->next)
        encode_family(out, f);
    if (am_buf_failed(out))
        return -ENOMEM;
    am_buf_t h;
    am_buf_init(&h, 0);
    am_buf_append(&h, magic, 8);
    put_u32(&h, AM_STATE_VERSION);
    put_u32(&h, AM_STATE_HEADER_LEN);
    put_u64(&h, out->len - body);
    put_u32(&h, (uint32_t)crc32(0, (const Bytef *)out->data + body, (uInt)(out->len - body)));
    put_u32(&h, (uint32_t)crc32(0, (const Bytef *)h.data, 28));
    int rc = am_buf_failed(&h) ? -ENOMEM : 0;
    if (rc == 0)
        memcpy(out->data + start, h.data, AM_STATE_HEADER_LEN);
    am_buf_free(&h);
    return rc;
}

/* ---- decoding ---- */

/* A read position in untrusted bytes; a read past the end sets bad. */
typedef struct reader {
    const uint8_t *p, *end;
    uint32_t version; /* of the file: what its series carry */
    bool bad;
    char *err;
    size_t errlen;
} reader_t;

static int fail(reader_t *rd, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(reader_t *rd, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rd->err, rd->errlen, fmt, ap);
    va_end(ap);
    rd->bad = true;
    return rc;
}

static const uint8_t *take(reader_t *rd, size_t n)
{
    if (rd->bad || (size_t)(rd->end - rd->p) < n) {
        rd->bad = true;
        return NULL;
    }
    const uint8_t *at = rd->p;
    rd->p += n;
    return at;
}

static uint64_t get_le(reader_t *rd, size_t n)
{
    const uint8_t *x = take(rd, n);
    uint64_t v = 0;
    for (size_t i = 0; x && i < n; i++)
        v |= (uint64_t)x[i] << (8 * i);
    return v;
}

static double get_f64(reader_t *rd)
{
    uint64_t v = get_le(rd, 8);
    double d;
    memcpy(&d, &v, 8);
    return d;
}

/* A string of n bytes into out (cap bytes, NUL added); false when too long. */
static bool get_str(reader_t *rd, size_t n, char *out, size_t cap)
{
    const uint8_t *x = n < cap ? take(rd, n) : NULL;
    if (!x) {
        rd->bad = true;
        return false;
    }
    memcpy(out, x, n);
    out[n] = '\0';
    return true;
}

/* One family's definition as read (strings in fixed buffers: nothing to
 * free on an error). */
typedef struct saved_family {
    char name[AM_OWNED_NAME_MAX];
    char help[MAX_HELP_LEN + 1];
    char labels[AM_MAX_LABELS][AM_MAX_LABEL_NAME_LEN + 1];
    char *label_ptrs[AM_MAX_LABELS];
    am_family_def_t def; /* pointing into the buffers above */
    bool catalogued;
    uint64_t nseries;
} saved_family_t;

static int read_family(reader_t *rd, saved_family_t *sf)
{
    am_family_def_t *d = &sf->def;
    memset(d, 0, sizeof(*d));
    if (!get_str(rd, get_le(rd, 2), sf->name, sizeof(sf->name)) ||
        !am_valid_metric_name(sf->name, strlen(sf->name)))
        return fail(rd, -EINVAL, "a family name is not a metric name");
    if (!get_str(rd, get_le(rd, 4), sf->help, sizeof(sf->help)))
        return fail(rd, -EINVAL, "family %s: help text cut or too long", sf->name);
    unsigned type = (unsigned)get_le(rd, 1), flags = (unsigned)get_le(rd, 1);
    if (type > AM_FAMILY_SUMMARY || flags > 7 || ((flags & FLAG_SET) && type != AM_FAMILY_GAUGE))
        return fail(rd, -EINVAL, "family %s: bad type or flags", sf->name);
    d->name = sf->name;
    d->help = sf->help;
    d->type = (am_family_type_t)type;
    d->is_set = flags & FLAG_SET;
    d->open_labels = flags & FLAG_OPEN;
    sf->catalogued = flags & FLAG_CATALOGUED;
    d->ttl = (uint32_t)get_le(rd, 4);
    d->max_series = (size_t)get_le(rd, 8);
    size_t nl = (size_t)get_le(rd, 1);
    if (nl > (d->open_labels ? AM_MAX_AUTO_LABELS : AM_MAX_LABELS))
        return fail(rd, -EINVAL, "family %s: %zu labels", sf->name, nl);
    for (size_t i = 0; i < nl; i++) {
        if (!get_str(rd, get_le(rd, 2), sf->labels[i], sizeof(sf->labels[i])) ||
            !am_valid_label_name(sf->labels[i], strlen(sf->labels[i])))
            return fail(rd, -EINVAL, "family %s: bad label name", sf->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(sf->labels[i], sf->labels[j]) == 0)
                return fail(rd, -EINVAL, "family %s: label %s twice", sf->name, sf->labels[i]);
        sf->label_ptrs[i] = sf->labels[i];
        d->labels[i] = sf->label_ptrs[i];
    }
    d->nlabels = nl;
    size_t nb = (size_t)get_le(rd, 1);
    if (nb > AM_MAX_BUCKETS || (nb && type != AM_FAMILY_HISTOGRAM))
        return fail(rd, -EINVAL, "family %s: %zu buckets", sf->name, nb);
    for (size_t i = 0; i < nb; i++) {
        d->buckets[i] = get_f64(rd);
        if (!isfinite(d->buckets[i]) || (i && d->buckets[i] <= d->buckets[i - 1]))
            return fail(rd, -EINVAL, "family %s: buckets not finite and increasing", sf->name);
    }
    d->nbuckets = nb;
    sf->nseries = get_le(rd, 8);
    return rd->bad ? fail(rd, -EINVAL, "cut inside family %s", sf->name) : 0;
}

/* One series as read: key and values point into the file. */
typedef struct saved_series {
    const char *key;
    size_t key_len;
    double v[2 + AM_MAX_BUCKETS + 1];
    double created; /* unix seconds; NaN: not in the file (version 1) */
    size_t nmembers;
    const uint8_t *members; /* nmembers little-endian u64 */
} saved_series_t;

static int read_series(reader_t *rd, const saved_family_t *sf, saved_series_t *ss)
{
    const am_family_def_t *d = &sf->def;
    ss->key_len = (size_t)get_le(rd, 4);
    if (ss->key_len > AM_MAX_KEY_LEN || !(ss->key = (const char *)take(rd, ss->key_len)))
        return fail(rd, -EINVAL, "family %s: a series key cut or too long", sf->name);
    /* label values joined by '\0': at most one per label, valid UTF-8 */
    size_t parts = 1;
    for (size_t i = 0; i < ss->key_len; i++)
        parts += ss->key[i] == '\0';
    if ((ss->key_len && parts > d->nlabels) || !am_valid_utf8(ss->key, ss->key_len))
        return fail(rd, -EINVAL, "family %s: a series key does not fit its labels", sf->name);
    size_t nv = (size_t)get_le(rd, 4);
    if (nv != am__values_per_series(d, false))
        return fail(rd, -EINVAL, "family %s: %zu values in a series", sf->name, nv);
    for (size_t i = 0; i < nv; i++) {
        ss->v[i] = get_f64(rd);
        if (!isfinite(ss->v[i]))
            return fail(rd, -EINVAL, "family %s: a value is not finite", sf->name);
    }
    ss->created = NAN;
    if (rd->version >= 2) {
        ss->created = get_f64(rd);
        if (!(ss->created >= 0 && ss->created < 1e11)) /* NaN fails too */
            return fail(rd, -EINVAL, "family %s: a creation time out of range", sf->name);
    }
    ss->nmembers = 0;
    ss->members = NULL;
    if (d->is_set) {
        uint64_t nm = get_le(rd, 8);
        if (nm > AM_MAX_SET_MEMBERS || !(ss->members = take(rd, (size_t)nm * 8)))
            return fail(rd, -EINVAL, "family %s: set members cut or too many", sf->name);
        ss->nmembers = (size_t)nm;
    }
    return rd->bad ? fail(rd, -EINVAL, "cut inside family %s", sf->name) : 0;
}

/* The family of sf in r, made if r may auto-create it; NULL: its series
 * are skipped. -ENOMEM in *rc when out of memory. */
static am_family_t *family_for(am_registry_t *r, const saved_family_t *sf, int *rc)
{
    const am_family_def_t *d = &sf->def;
    am_family_t *f = am__family_find(r, d->name, strlen(d->name));
    if (f) {
        if (am_family_def_same_shape(&f->def, d))
            return f;
        /* an open family that grew (here or in the file) */
        if (!f->def.open_labels || !d->open_labels || !am_family_def_same_but_grown(&f->def, d))
            return NULL;
        if (am__snap_pending(f))
            am__snapshot_flush(r, f);
        if (am_family_def_take_labels(&f->def, d) != 0)
            *rc = -ENOMEM;
        return *rc ? NULL : f;
    }
    /* families of the catalog or config come from the config, not the file */
    if (sf->catalogued || !d->open_labels || !r->limits.auto_create)
        return NULL;
    if (am_namedex_clash(r->dir ? &r->dir->names : &r->names, d, NULL))
        return NULL;
    famdir_entry_t *e = NULL;
    if (r->dir) {
        pthread_mutex_lock(&r->dir->mu);
        e = am__dir_find(r->dir, d->name, strlen(d->name));
        if (!e && r->dir->nauto < r->limits.max_families)
            e = am__dir_add(r->dir, d, false);
        pthread_mutex_unlock(&r->dir->mu);
        if (!e)
            return NULL;
    } else if (r->nauto >= r->limits.max_families) {
        return NULL;
    }
    am_family_def_t copy;
    if (am_family_def_copy(&copy, e ? &e->def : d) != 0) {
        *rc = -ENOMEM;
        return NULL;
    }
    f = am__family_add(r, &copy, e ? e->catalogued : false);
    if (!f) {
        am_family_def_clear(&copy);
        *rc = -ENOMEM;
        return NULL;
    }
    f->shared = e;
    return f;
}

/* Restores one series into f (NULL: skipped). 1 restored, 0 skipped,
 * -ENOMEM. */
static int restore_series(am_registry_t *r, am_family_t *f, const saved_series_t *ss)
{
    if (!f)
        return 0;
    uint64_t h = am_hash(ss->key, ss->key_len);
    am_series_t *se = am__series_find(f, h, ss->key, ss->key_len);
    if (!se) {
        size_t limit = f->def.max_series ? f->def.max_series : r->limits.max_series_per_family;
        size_t cost = am__series_cost(f->nvalues, ss->key_len);
        if (r->dir) {
            if (!am__shared_take(r->dir, f->shared, limit, r->limits.max_series))
                return 0;
        } else if (f->nseries >= limit || r->nseries >= r->limits.max_series) {
            return 0;
        }
        if (!am__series_bytes_take(r, cost)) {
            if (r->dir)
                am__shared_give(r->dir, f->shared, 1);
            return 0;
        }
        se = am__series_new(r, f, h, ss->key, ss->key_len);
        if (!se) {
            if (r->dir)
                am__shared_give(r->dir, f->shared, 1);
            am__series_bytes_give(r, cost);
            return -ENOMEM;
        }
    }
    size_t nv = am__values_per_series(&f->def, false);
    memcpy(se->v, ss->v, nv * sizeof(double));
    if (f->nvalues > nv) { /* a stamped gauge: restored as set now */
        se->v[GAUGE_DELTA] = 0;
        se->v[GAUGE_SET_AT] = r->clock;
    }
    for (size_t i = 0; i < ss->nmembers && se->set; i++) {
        uint64_t m = 0;
        for (int k = 0; k < 8; k++)
            m |= (uint64_t)ss->members[8 * i + (size_t)k] << (8 * k);
        if (am__set_contains(se->set, m))
            continue;
        if (am__set_count(se->set) >= AM_MAX_SET_MEMBERS || !am__set_member_take(r))
            break;
        if (!am__set_insert(se->set, m)) {
            am__set_members_give(r, 1);
            return -ENOMEM;
        }
    }
    if (se->set)
        se->v[0] = (double)am__set_count(se->set);
    se->seen = r->now;
    se->created = isnan(ss->created) ? am__wall_clock() : ss->created; /* NaN: version 1 */
    return 1;
}

/* Reads the body; with r, restores as it goes (r NULL: checks only). sf is
 * scratch (large: the caller's heap). */
static int read_body(reader_t *rd, am_registry_t *r, am_state_counts_t *c, saved_family_t *sfp)
{
    saved_family_t *const sf = sfp;
    saved_series_t ss;
    uint32_t nf = (uint32_t)get_le(rd, 4);
    if (rd->bad)
        return fail(rd, -EINVAL, "cut before the family count");
    memset(c, 0, sizeof(*c));
    for (uint32_t i = 0; i < nf; i++) {
        int rc = read_family(rd, sf);
        if (rc != 0)
            return rc;
        c->families++;
        am_family_t *f = NULL;
        if (r) {
            f = family_for(r, sf, &rc);
            if (rc != 0)
                return rc;
            if (f) { /* its table of held series grown once, not in steps */
                size_t limit = f->def.max_series ? f->def.max_series
                                                 : r->limits.max_series_per_family;
                am__values_reserve(r, f, sf->nseries < limit ? (size_t)sf->nseries : limit);
            }
        }
        for (uint64_t k = 0; k < sf->nseries; k++) {
            if ((rc = read_series(rd, sf, &ss)) != 0)
                return rc;
            c->series++;
            if (!r)
                continue;
            rc = restore_series(r, f, &ss);
            if (rc < 0)
                return rc;
            if (rc)
                c->restored++;
            else
                c->skipped++;
        }
    }
    if (rd->p != rd->end)
        return fail(rd, -EINVAL, "%zu bytes after the last family", (size_t)(rd->end - rd->p));
    return 0;
}

int am_state_restore(am_registry_t *r, const void *p, size_t n, am_state_counts_t *c, char *err,
                     size_t errlen)
{
    reader_t rd = {p, (const uint8_t *)p + n, 0, false, err, errlen};
    if (errlen)
        err[0] = '\0';
    if (n == 0)
        return fail(&rd, -EINVAL, "empty file");
    if (n < AM_STATE_HEADER_LEN || memcmp(p, magic, 8) != 0)
        return fail(&rd, -EINVAL, "not an alice-metrics state file");
    const uint8_t *hdr = p;
    (void)take(&rd, 8);
    uint32_t version = (uint32_t)get_le(&rd, 4), hlen = (uint32_t)get_le(&rd, 4);
    uint64_t blen = get_le(&rd, 8);
    uint32_t bcrc = (uint32_t)get_le(&rd, 4), hcrc = (uint32_t)get_le(&rd, 4);
    if (hcrc != (uint32_t)crc32(0, hdr, 28))
        return fail(&rd, -EINVAL, "header checksum mismatch");
    if (version < 1 || version > AM_STATE_VERSION)
        return fail(&rd, -EPROTO, "format version %u, this build reads versions 1 to %u", version,
                    AM_STATE_VERSION);
    rd.version = version;
    if (hlen != AM_STATE_HEADER_LEN)
        return fail(&rd, -EINVAL, "header length %u", hlen);
    if (blen != n - AM_STATE_HEADER_LEN)
        return fail(&rd, -EINVAL, "truncated or extended: %zu body bytes, header says %llu",
                    n - AM_STATE_HEADER_LEN, (unsigned long long)blen);
    if (bcrc != (uint32_t)crc32(0, hdr + AM_STATE_HEADER_LEN, (uInt)blen))
        return fail(&rd, -EINVAL, "body checksum mismatch");
    /* Twice: every check first, so that a bad file changes nothing. */
    const uint8_t *body = rd.p;
    am_state_counts_t scratch;
    saved_family_t *sf = malloc(sizeof(*sf));
    if (!sf)
        return fail(&rd, -ENOMEM, "out of memory");
    int rc = read_body(&rd, NULL, c ? c : &scratch, sf);
    if (rc == 0) {
        rd.p = body;
        rc = read_body(&rd, r, c ? c : &scratch, sf);
    }
    free(sf);
    return rc;
}
