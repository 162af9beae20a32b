#include "parse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static inline bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* Raw StatsD name characters: Prometheus' plus '.' and '-', which map to '_'. */
static inline bool is_raw_name_char(char c)
{
    return is_alpha_(c) || is_digit(c) || c == '.' || c == '-';
}

bool am_valid_metric_name(const char *p, size_t n)
{
    if (n == 0 || !is_alpha_(p[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!is_alpha_(p[i]) && !is_digit(p[i]))
            return false;
    return true;
}

bool am_valid_label_name(const char *p, size_t n)
{
    if (!am_valid_metric_name(p, n))
        return false;
    return !(n >= 2 && p[0] == '_' && p[1] == '_');
}

bool am_valid_utf8(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF. */
        if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

bool am_parse_number(const char *p, size_t n, double *out)
{
    if (n == 0 || n > AM_MAX_NUMBER_LEN)
        return false;
    size_t i = 0;
    bool neg = false;
    if (p[i] == '+' || p[i] == '-') {
        neg = p[i] == '-';
        i++;
    }
    size_t int_start = i;
    uint64_t ival = 0;
    while (i < n && is_digit(p[i])) {
        ival = ival * 10 + (uint64_t)(p[i] - '0');
        i++;
    }
    size_t int_digits = i - int_start;
    /* Fast path: a plain integer of up to 15 digits is exact in a double. */
    if (i == n && int_digits > 0 && int_digits <= 15) {
        *out = neg ? -(double)ival : (double)ival;
        return true;
    }
    size_t frac_digits = 0;
    if (i < n && p[i] == '.') {
        i++;
        while (i < n && is_digit(p[i])) {
            if (int_digits + frac_digits < 19)
                ival = ival * 10 + (uint64_t)(p[i] - '0');
            i++;
            frac_digits++;
        }
    }
    if (int_digits + frac_digits == 0)
        return false;
    /* Fast path: "12.5" is 125 / 10. With at most 15 significant digits both
     * operands are exact doubles and IEEE division rounds correctly, so this
     * equals strtod's result; it is several times cheaper. */
    if (i == n && int_digits + frac_digits <= 15) {
        static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
        double v = (double)ival / pow10[frac_digits];
        *out = neg ? -v : v;
        return true;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        size_t exp_digits = 0;
        while (i < n && is_digit(p[i])) {
            i++;
            exp_digits++;
        }
        if (exp_digits == 0)
            return false;
    }
    if (i != n)
        return false;
    /* strtod needs a terminator; the receive buffer is never written. */
    char tmp[AM_MAX_NUMBER_LEN + 1];
    memcpy(tmp, p, n);
    tmp[n] = '\0';
    char *end;
    double v = strtod(tmp, &end);
    if (end != tmp + n || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool parse_type(const char *p, size_t n, am_type_t *out)
{
    if (n == 1) {
        switch (p[0]) {
            case 'c':
                *out = AM_TYPE_COUNTER;
                return true;
            case 'g':
                *out = AM_TYPE_GAUGE;
                return true;
            case 'h':
                *out = AM_TYPE_HISTOGRAM;
                return true;
            case 'd':
                *out = AM_TYPE_DISTRIBUTION;
                return true;
            case 's':
                *out = AM_TYPE_SET;
                return true;
            default:
                return false;
        }
    }
    if (n == 2 && p[0] == 'm' && p[1] == 's') {
        *out = AM_TYPE_TIMER;
        return true;
    }
    return false;
}

const char *am_type_code(am_type_t t)
{
    static const char *const codes[] = {"c", "g", "ms", "h", "d", "s"};
    return (unsigned)t < 6 ? codes[t] : "?";
}

/* Tag key characters follow metric names: '.' and '-' map to '_'. */
static bool valid_raw_tag_key(const char *p, size_t n)
{
    if (n == 0 || n > AM_MAX_LABEL_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!is_raw_name_char(p[i]))
            return false;
    /* "__" prefixes are reserved by Prometheus; the mapped form counts. */
    bool u0 = p[0] == '_' || p[0] == '.' || p[0] == '-';
    bool u1 = n > 1 && (p[1] == '_' || p[1] == '.' || p[1] == '-');
    return !(u0 && u1);
}

static bool same_mapped(am_slice_t a, am_slice_t b)
{
    if (a.n != b.n)
        return false;
    for (size_t i = 0; i < a.n; i++) {
        char x = a.p[i] == '.' || a.p[i] == '-' ? '_' : a.p[i];
        char y = b.p[i] == '.' || b.p[i] == '-' ? '_' : b.p[i];
        if (x != y)
            return false;
    }
    return true;
}

/* #k:v,k2:v2 (the leading '#' already skipped; kv ':'), or the k=v,k2=v2
 * of the dialects that write tags into the name (kv '='). A tag without kv
 * gets an empty value; the value runs to the next ',' and may itself hold
 * kv. */
static am_reason_t parse_tags(const char *p, size_t n, char kv, am_sample_t *out)
{
    size_t i = 0;
    while (i < n) {
        const char *comma = memchr(p + i, ',', n - i);
        size_t end = comma ? (size_t)(comma - p) : n;
        if (end > i) { /* empty tags between commas are skipped */
            const char *tag = p + i;
            size_t len = end - i;
            const char *colon = memchr(tag, kv, len);
            am_slice_t key = {tag, colon ? (size_t)(colon - tag) : len};
            am_slice_t val = {colon ? colon + 1 : tag + len, colon ? len - key.n - 1 : 0};
            if (!valid_raw_tag_key(key.p, key.n))
                return AM_REJECT_BAD_LABEL;
            if (val.n > AM_MAX_LABEL_VALUE_LEN || !am_valid_utf8(val.p, val.n))
                return AM_REJECT_BAD_LABEL;
            if (out->ntags == AM_MAX_TAGS)
                return AM_REJECT_BAD_LABEL;
            for (size_t k = 0; k < out->ntags; k++)
                if (same_mapped(out->tag_key[k], key))
                    return AM_REJECT_BAD_LABEL;
            out->tag_key[out->ntags] = key;
            out->tag_value[out->ntags] = val;
            out->ntags++;
        }
        i = end + 1;
    }
    return AM_OK;
}

/*
 * api.latency:12.5:7|ms|@0.5|#provider:openai,model:gpt-4|c:abc
 * ^name      ^values ^type ^rate ^tags                     ^ignored extension
 */
/* A plain loop: the fields of a StatsD line are a few bytes long, where
 * memchr's call and setup cost more than the scan. */
static inline const char *scan_for(const char *p, const char *end, char c)
{
    while (p < end && *p != c)
        p++;
    return p < end ? p : NULL;
}

am_reason_t am_parse_values(const char *p, size_t n, am_sample_t *out)
{
    const char *v = p, *end = p + n;
    out->nvalues = 0;
    for (;;) {
        const char *sep = scan_for(v, end, ':');
        size_t vn = (size_t)((sep ? sep : end) - v);
        size_t k = out->nvalues;
        if (k == AM_MAX_VALUES)
            return AM_REJECT_BAD_VALUE;
        unsigned small;
        if (am_parse_small_count(v, vn, &small))
            out->values[k] = small;
        else if (!am_parse_number(v, vn, &out->values[k]))
            return AM_REJECT_BAD_VALUE;
        out->delta[k] = v[0] == '+' || v[0] == '-';
        out->nvalues++;
        if (!sep)
            return AM_OK;
        v = sep + 1;
    }
}

/* DogStatsD events and service checks: accepted, counted, not metrics.
 *   _e{<title length>,<text length>}:<title>|<text>[|...]
 *   _sc|<name>|<status 0-3>[|...] */
static am_reason_t parse_event(const char *p, size_t n)
{
    const char *end = p + n;
    if (p[1] == 'e') {
        const char *close = memchr(p, '}', n);
        return close && close + 1 < end && close[1] == ':' &&
                       memchr(close, '|', (size_t)(end - close))
                   ? AM_EVENT
                   : AM_REJECT_SYNTAX;
    }
    const char *bar = memchr(p + 4, '|', n - 4);
    if (!bar || bar == p + 4)
        return AM_REJECT_SYNTAX;
    const char *st = bar + 1;
    return st < end && *st >= '0' && *st <= '3' && (st + 1 == end || st[1] == '|')
               ? AM_SERVICE_CHECK
               : AM_REJECT_SYNTAX;
}

am_reason_t am_parse_line(const char *p, size_t n, am_sample_t *out)
{
    return am_parse_line_in(p, n, AM_DIALECTS_ALL, out);
}

am_reason_t am_parse_line_in(const char *p, size_t n, unsigned dialects, am_sample_t *out)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n >= 3 && p[0] == '_' &&
        ((p[1] == 'e' && p[2] == '{') || (n >= 4 && p[1] == 's' && p[2] == 'c' && p[3] == '|')))
        return memchr(p, '\0', n) ? AM_REJECT_SYNTAX : parse_event(p, n);
    /* Structure first: a line without the name:value|type skeleton is
     * "syntax" whatever else is wrong with it. */
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p || memchr(p, '\0', n))
        return AM_REJECT_SYNTAX;
    const char *vstart = colon + 1;
    const char *end = p + n;
    const char *pipe = memchr(vstart, '|', (size_t)(end - vstart));
    if (!pipe)
        return AM_REJECT_SYNTAX;

    out->name.p = p;
    out->name.n = (size_t)(colon - p);
    out->ntags = 0;
    /* Tags in the name: InfluxDB name,k=v  Librato name#k=v  SignalFx
     * name[k=v]. The first mark of a dialect that is on ends the name; a
     * second dialect in the same line (another mark in the tags, or |# tags
     * too) is bad_label. One pass checks the name's characters and finds
     * the mark. */
    const char *mark = NULL;
    unsigned dialect = 0;
    size_t i = 0;
    for (; i < out->name.n; i++) {
        char c = p[i];
        if (is_raw_name_char(c))
            continue;
        dialect = c == ','   ? AM_DIALECT_INFLUXDB
                  : c == '#' ? AM_DIALECT_LIBRATO
                  : c == '[' ? AM_DIALECT_SIGNALFX
                             : 0;
        if (!(dialect & dialects))
            return AM_REJECT_BAD_NAME;
        mark = p + i;
        break;
    }
    out->name.n = i;
    if (i == 0)
        return AM_REJECT_SYNTAX; /* tags with no name before them */
    if (i > AM_MAX_NAME_LEN)
        return AM_REJECT_BAD_NAME;
    if (mark) {
        const char *tags = mark + 1, *tags_end = colon;
        if (dialect == AM_DIALECT_SIGNALFX) {
            if (colon[-1] != ']' || tags_end - 1 < tags)
                return AM_REJECT_BAD_LABEL;
            tags_end--;
        }
        for (const char *c = tags; c < tags_end; c++)
            if (*c == '#' || *c == '[' || *c == ']')
                return AM_REJECT_BAD_LABEL;
        am_reason_t rc = parse_tags(tags, (size_t)(tags_end - tags), '=', out);
        if (rc != AM_OK)
            return rc;
    }

    /* The type decides how to read the value, but a bad value is met first
     * reading left to right, so values are checked as numbers unless the
     * type is s (whose members are arbitrary tokens). */
    const char *tstart = pipe + 1;
    const char *tend = memchr(tstart, '|', (size_t)(end - tstart));
    if (!tend)
        tend = end;
    am_type_t type;
    bool type_ok = parse_type(tstart, (size_t)(tend - tstart), &type);

    out->nvalues = 0;
    out->set_value.p = NULL;
    out->set_value.n = 0;
    size_t vlen = (size_t)(pipe - vstart);
    if (type_ok && type == AM_TYPE_SET) {
        if (vlen == 0 || vlen > AM_MAX_SET_VALUE_LEN)
            return AM_REJECT_BAD_VALUE;
        out->set_value.p = vstart;
        out->set_value.n = vlen;
    } else {
        am_reason_t rc = am_parse_values(vstart, vlen, out);
        if (rc != AM_OK)
            return rc;
    }
    if (!type_ok)
        return AM_REJECT_BAD_TYPE;
    out->type = type;
    if (type == AM_TYPE_COUNTER)
        for (size_t k = 0; k < out->nvalues; k++)
            if (out->values[k] < 0)
                return AM_REJECT_NEGATIVE_COUNTER;

    out->rate = 1.0;
    const char *ext = tend;
    while (ext < end) {
        /* ext points at a '|' */
        const char *estart = ext + 1;
        const char *eend = memchr(estart, '|', (size_t)(end - estart));
        if (!eend)
            eend = end;
        size_t elen = (size_t)(eend - estart);
        if (elen > 0 && estart[0] == '@') {
            double r;
            if (!am_parse_number(estart + 1, elen - 1, &r) || !(r > 0.0 && r <= 1.0))
                return AM_REJECT_BAD_SAMPLE_RATE;
            out->rate = r;
        } else if (elen > 0 && estart[0] == '#') {
            if (mark || !(dialects & AM_DIALECT_DOGSTATSD))
                return AM_REJECT_BAD_LABEL; /* two dialects, or DogStatsD tags off */
            am_reason_t rc = parse_tags(estart + 1, elen - 1, ':', out);
            if (rc != AM_OK)
                return rc;
        }
        /* Anything else (|c:container, |T<ts>, |e:, |card:) is ignored. */
        ext = eend;
    }
    return AM_OK;
}

bool am_parse_skeleton(const char *p, size_t n, am_skeleton_t *out)
{
    if (n > 0 && p[n - 1] == '\r')
        n--;
    const char *end = p + n;
    const char *colon = scan_for(p, end, ':');
    if (!colon || colon == p)
        return false;
    const char *pipe = scan_for(colon + 1, end, '|');
    if (!pipe)
        return false;
    const char *tstart = pipe + 1;
    const char *tend = scan_for(tstart, end, '|');
    if (!tend)
        tend = end;
    if (!parse_type(tstart, (size_t)(tend - tstart), &out->type_id))
        return false;
    out->name = (am_slice_t){p, (size_t)(colon - p)};
    out->values = (am_slice_t){colon + 1, (size_t)(pipe - colon - 1)};
    out->type = (am_slice_t){tstart, (size_t)(tend - tstart)};
    out->tags = (am_slice_t){end, 0};
    out->rest = (am_slice_t){tstart, (size_t)(end - tstart)};
    out->rate = 1.0;
    bool have_rate = false, have_tags = false, other = false;
    const char *ext = tend;
    while (ext < end) {
        const char *estart = ext + 1;
        const char *eend = memchr(estart, '|', (size_t)(end - estart));
        if (!eend)
            eend = end;
        size_t elen = (size_t)(eend - estart);
        if (elen > 0 && estart[0] == '@') {
            if (have_rate || !am_parse_number(estart + 1, elen - 1, &out->rate) ||
                !(out->rate > 0.0 && out->rate <= 1.0))
                return false;
            have_rate = true;
        } else if (elen > 0 && estart[0] == '#') {
            if (have_tags)
                return false;
            out->tags = (am_slice_t){estart + 1, elen - 1};
            have_tags = true;
        } else {
            if (memchr(estart, '\0', elen))
                return false; /* the full parse calls this line "syntax" */
            other = true;
        }
        ext = eend;
    }
    out->plain = !have_rate && !other && (!have_tags || out->tags.p == tend + 2);
    return true;
}

/* ---- the datagram fast scan ---- */

/* One 64-byte block: bit i of each mask says byte b[i] is '\n', '|' or ':'.
 * The byte loop is the definition; SSE2 (every x86-64) does 16 at a time. */
static void index_block_bytes(const unsigned char *b, uint64_t *nl, uint64_t *pipe, uint64_t *colon)
{
    uint64_t n = 0, pi = 0, c = 0;
    for (unsigned i = 0; i < 64; i++) {
        n |= (uint64_t)(b[i] == '\n') << i;
        pi |= (uint64_t)(b[i] == '|') << i;
        c |= (uint64_t)(b[i] == ':') << i;
    }
    *nl = n;
    *pipe = pi;
    *colon = c;
}

#if defined(__SSE2__)
/* The three masks of 16 bytes, in the low 16 bits of each. */
static inline void index16(__m128i x, uint64_t *nl, uint64_t *pipe, uint64_t *colon)
{
    *nl = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('\n')));
    *pipe = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8('|')));
    *colon = (uint32_t)_mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_set1_epi8(':')));
}

/* One whole 64-byte block: four steps with constant shifts. */
static inline void index_block_sse2(const unsigned char *b, uint64_t *nl, uint64_t *pipe,
                                    uint64_t *colon)
{
    uint64_t mn = 0, mp = 0, mc = 0, xn, xp, xc;
    for (unsigned k = 0; k < 4; k++) {
        index16(_mm_loadu_si128((const __m128i *)(const void *)(b + 16 * k)), &xn, &xp, &xc);
        mn |= xn << (16 * k);
        mp |= xp << (16 * k);
        mc |= xc << (16 * k);
    }
    *nl = mn;
    *pipe = mp;
    *colon = mc;
}

/* The last block of a datagram of n bytes: b[0..len), len < 64, 16 bytes at
 * a time. A last piece shorter than 16 is read as the 16 bytes that end
 * it, shifted down (never past n, never a copy); only a datagram shorter
 * than 16 bytes goes byte by byte. */
static void index_tail_sse2(size_t n, const unsigned char *b, size_t len, uint64_t *nl,
                            uint64_t *pipe, uint64_t *colon)
{
    uint64_t mn = 0, mp = 0, mc = 0, xn, xp, xc;
    unsigned at = 0;
    for (; at + 16 <= len; at += 16) {
        index16(_mm_loadu_si128((const __m128i *)(const void *)(b + at)), &xn, &xp, &xc);
        mn |= xn << at;
        mp |= xp << at;
        mc |= xc << at;
    }
    unsigned r = (unsigned)len - at;
    if (r && n >= 16) {
        index16(_mm_loadu_si128((const __m128i *)(const void *)(b + len - 16)), &xn, &xp, &xc);
        mn |= (xn >> (16 - r)) << at;
        mp |= (xp >> (16 - r)) << at;
        mc |= (xc >> (16 - r)) << at;
    } else if (r) {
        for (unsigned i = 0; i < r; i++) {
            mn |= (uint64_t)(b[at + i] == '\n') << (at + i);
            mp |= (uint64_t)(b[at + i] == '|') << (at + i);
            mc |= (uint64_t)(b[at + i] == ':') << (at + i);
        }
    }
    *nl = mn;
    *pipe = mp;
    *colon = mc;
}
#endif

/* Block k of a datagram is its bytes 64k.. (the last one partial, or, when
 * n is a multiple of 64, the empty one after the data): am_index_datagram
 * then sets bit n, the sentinel line end. */
static void index_datagram_bytewise(am_dgram_index_t *ix, const char *p, size_t n)
{
    for (size_t k = 0; k <= n / 64; k++) {
        unsigned char block[64] = {0}; /* padded with NULs: none of the three */
        memcpy(block, p + 64 * k, k < n / 64 ? 64 : n % 64);
        index_block_bytes(block, &ix->nl[k], &ix->pipe[k], &ix->colon[k]);
    }
}

static void index_datagram(am_dgram_index_t *ix, const char *p, size_t n)
{
#if defined(__SSE2__)
    const unsigned char *dg = (const unsigned char *)p;
    size_t full = n / 64;
    for (size_t k = 0; k < full; k++)
        index_block_sse2(dg + 64 * k, &ix->nl[k], &ix->pipe[k], &ix->colon[k]);
    index_tail_sse2(n, dg + 64 * full, n % 64, &ix->nl[full], &ix->pipe[full], &ix->colon[full]);
#else
    index_datagram_bytewise(ix, p, n);
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
#define AM_INDEX_AVX2 1
#define AVX2_TARGET   __attribute__((target("avx2")))

/* AVX2 (every x86-64 CPU since 2013-2015, Intel and AMD): 32 bytes per
 * compare, half the work of SSE2 on whole blocks; the last partial block
 * as SSE2 does it. 256-bit only: no AVX-512 frequency drop on the CPUs that
 * have one. */
AVX2_TARGET static void index_datagram_avx2(am_dgram_index_t *ix, const char *p, size_t n)
{
    const __m256i vn = _mm256_set1_epi8('\n'), vp = _mm256_set1_epi8('|'),
                  vc = _mm256_set1_epi8(':');
    size_t full = n / 64;
    for (size_t k = 0; k < full; k++) {
        __m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)(p + 64 * k));
        __m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(p + 64 * k + 32));
        ix->nl[k] = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, vn)) |
                    (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, vn)) << 32;
        ix->pipe[k] = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, vp)) |
                      (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, vp)) << 32;
        ix->colon[k] = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, vc)) |
                       (uint64_t)(uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, vc)) << 32;
    }
    /* Clean upper halves before any SSE code runs again (the tail here, the
     * AES-NI key after): left dirty, they slow every SSE instruction that
     * follows (30 -> 45 ns/line in bench-ingest; the compiler left it out
     * of its own tail call). */
    _mm256_zeroupper();
    index_tail_sse2(n, (const unsigned char *)p + 64 * full, n % 64, &ix->nl[full], &ix->pipe[full],
                    &ix->colon[full]);
}
#endif

/* Whether am_index_datagram uses AVX2: decided once, before main (so no
 * thread ever writes it while workers read it), and changed only by
 * am_index_use_avx2, which tests and benchmarks call before any thread. */
static bool use_avx2;

__attribute__((constructor)) static void pick_index_kernel(void)
{
    (void)am_index_use_avx2(true);
}

bool am_index_use_avx2(bool on)
{
#ifdef AM_INDEX_AVX2
    __builtin_cpu_init(); /* a constructor may run before libgcc's */
    use_avx2 = on && __builtin_cpu_supports("avx2");
#else
    (void)on;
    use_avx2 = false;
#endif
    return use_avx2;
}

void am_index_datagram(am_dgram_index_t *ix, const char *p, size_t n)
{
#ifdef AM_INDEX_AVX2
    if (use_avx2)
        index_datagram_avx2(ix, p, n);
    else
#endif
        index_datagram(ix, p, n);
    ix->nl[n >> 6] |= 1ULL << (n & 63);
}

void am_index_datagram_bytewise(am_dgram_index_t *ix, const char *p, size_t n)
{
    index_datagram_bytewise(ix, p, n);
    ix->nl[n >> 6] |= 1ULL << (n & 63);
}

/* The first set bit at or after pos, searching no further than block
 * (stop >> 6); SIZE_MAX if none. The result may lie past stop within that
 * block: callers compare it with stop. */
static inline size_t next_bit(const uint64_t *m, size_t pos, size_t stop)
{
    size_t b = pos >> 6, last = stop >> 6;
    uint64_t w = m[b] & (~0ULL << (pos & 63));
    while (!w && b < last)
        w = m[++b];
    return w ? (b << 6) + (size_t)__builtin_ctzll(w) : SIZE_MAX;
}

/* Successive set bits of one mask array, from pos on, looking no further
 * than block (stop >> 6): each next costs a ctz and a clear, not a new
 * search. */
typedef struct bit_cursor {
    const uint64_t *m;
    size_t b, last;
    uint64_t w;
} bit_cursor_t;

static inline void cursor_start(bit_cursor_t *c, const uint64_t *m, size_t pos, size_t stop)
{
    c->m = m;
    c->b = pos >> 6;
    c->last = stop >> 6;
    c->w = m[c->b] & (~0ULL << (pos & 63));
}

static inline size_t cursor_next(bit_cursor_t *c)
{
    while (!c->w) {
        if (c->b >= c->last)
            return SIZE_MAX;
        c->w = c->m[++c->b];
    }
    size_t r = (c->b << 6) + (size_t)__builtin_ctzll(c->w);
    c->w &= c->w - 1;
    return r;
}

bool am_scan_line(const am_dgram_index_t *ix, const char *dg, size_t n, size_t pos,
                  am_skeleton_t *out, size_t *line_end)
{
    size_t lend = next_bit(ix->nl, pos, n); /* the sentinel at n stops it */
    *line_end = lend;
    size_t colon = next_bit(ix->colon, pos, lend);
    if (colon >= lend || colon == pos)
        return false;
    bit_cursor_t pipes;
    cursor_start(&pipes, ix->pipe, colon + 1, lend);
    size_t pipe = cursor_next(&pipes);
    if (pipe >= lend)
        return false;
    size_t tstart = pipe + 1;
    size_t tend = cursor_next(&pipes);
    out->tags = (am_slice_t){dg + lend, 0};
    if (tend < lend) {
        /* Only "|#tags", and nothing after it. */
        if (tend + 1 >= lend || dg[tend + 1] != '#' || cursor_next(&pipes) < lend)
            return false;
        out->tags = (am_slice_t){dg + tend + 2, lend - tend - 2};
    } else {
        tend = lend;
    }
    if (dg[lend - 1] == '\r') /* lend > pipe */
        return false;
    if (!parse_type(dg + tstart, tend - tstart, &out->type_id))
        return false;
    out->name = (am_slice_t){dg + pos, colon - pos};
    out->values = (am_slice_t){dg + colon + 1, pipe - colon - 1};
    out->type = (am_slice_t){dg + tstart, tend - tstart};
    out->rest = (am_slice_t){dg + tstart, lend - tstart};
    out->rate = 1.0;
    out->plain = true;
    return true;
}

void am_parse_datagram(const char *p, size_t n, am_line_fn fn, void *ctx)
{
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *lend = nl ? nl : end;
        size_t len = (size_t)(lend - p);
        if (len > 0 && !(len == 1 && p[0] == '\r'))
            fn(ctx, p, len);
        p = lend + 1;
    }
}

size_t am_map_name(const char *raw, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    if (n > 0 && is_digit(raw[0])) {
        if (cap < 1)
            return 0;
        out[o++] = '_';
    }
    if (n > cap - o)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = raw[i];
        out[o++] = (c == '.' || c == '-') ? '_' : c;
    }
    return o;
}
