#include "line.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Reserved characters per part, as one table: a byte scan with a table
 * lookup costs a cycle a byte, where strcspn() with a set builds its own
 * table on every call (a third of a client call, measured). Bit 0 marks
 * the NUL that ends every part. */
enum {
    R_END = 1,
    R_NAME = 2,   /* AM_LINE_NAME_RESERVED */
    R_NUMBER = 4, /* ':' would start a second, packed value; '|' the type */
    R_KEY = 8,    /* AM_LINE_KEY_RESERVED */
    R_VALUE = 16, /* AM_LINE_VALUE_RESERVED */
    R_MEMBER = 32 /* AM_LINE_MEMBER_RESERVED */
};
#define R_ALL (R_NAME | R_NUMBER | R_KEY | R_VALUE | R_MEMBER)

static const unsigned char reserved[256] = {
    ['\0'] = R_END | R_ALL,
    ['\n'] = R_ALL,
    ['\r'] = R_ALL,
    ['|'] = R_ALL,
    [':'] = R_NAME | R_NUMBER | R_KEY,
    [','] = R_KEY | R_VALUE,
    ['#'] = R_KEY,
};

static bool is_set_type(const char *type)
{
    return type[0] == 's' && type[1] == '\0';
}

/* Length of s if it holds none of the reserved characters, else SIZE_MAX. */
static size_t clean_len(const char *s, unsigned mask)
{
    size_t n = 0;
    while (!(reserved[(unsigned char)s[n]] & mask))
        n++;
    return s[n] == '\0' ? n : SIZE_MAX;
}

static int fail(am_line_fault_t *fault, am_line_part_t part, size_t index, am_reason_t r)
{
    if (fault) {
        fault->part = part;
        fault->index = index;
    }
    return (int)r;
}

int am_line_write(const am_line_t *l, char *out, size_t cap, size_t *len, am_line_fault_t *fault)
{
    if (fault) {
        fault->part = AM_LINE_PART_NONE;
        fault->index = 0;
    }
    if (!l->name)
        return fail(fault, AM_LINE_PART_NAME, 0, AM_REJECT_SYNTAX);
    size_t name_n = clean_len(l->name, R_NAME);
    if (name_n == SIZE_MAX)
        return fail(fault, AM_LINE_PART_NAME, 0, AM_REJECT_BAD_NAME);
    if (!l->value)
        return fail(fault, AM_LINE_PART_VALUE, 0, AM_REJECT_BAD_VALUE);
    const char *type = l->type ? l->type : "";
    size_t value_n = clean_len(l->value, is_set_type(type) ? R_MEMBER : R_NUMBER);
    if (value_n == SIZE_MAX)
        return fail(fault, AM_LINE_PART_VALUE, 0, AM_REJECT_BAD_VALUE);
    size_t type_n = strlen(type);

    /* More labels than the parser takes is its bad_label: say so here,
     * before the fixed-size arrays below. */
    if (l->nlabels > AM_MAX_TAGS || (l->nlabels && !l->labels))
        return fail(fault, AM_LINE_PART_LABEL_KEY, AM_MAX_TAGS, AM_REJECT_BAD_LABEL);
    size_t key_n[AM_MAX_TAGS];
    size_t val_n[AM_MAX_TAGS];
    size_t need = name_n + 1 + value_n + 1 + type_n;
    for (size_t i = 0; i < l->nlabels; i++) {
        const alice_label *lb = &l->labels[i];
        if (!lb->key || !lb->key[0])
            return fail(fault, AM_LINE_PART_LABEL_KEY, i, AM_REJECT_BAD_LABEL);
        key_n[i] = clean_len(lb->key, R_KEY);
        if (key_n[i] == SIZE_MAX)
            return fail(fault, AM_LINE_PART_LABEL_KEY, i, AM_REJECT_BAD_LABEL);
        if (!lb->value)
            return fail(fault, AM_LINE_PART_LABEL_VALUE, i, AM_REJECT_BAD_LABEL);
        val_n[i] = clean_len(lb->value, R_VALUE);
        if (val_n[i] == SIZE_MAX)
            return fail(fault, AM_LINE_PART_LABEL_VALUE, i, AM_REJECT_BAD_LABEL);
        need += key_n[i] + 1 + val_n[i] + 1; /* "k:v" plus '#' or ',' */
    }
    if (l->nlabels)
        need += 1; /* the '|' before '#' */
    if (need > cap)
        return -ENOSPC;

    /*
     * name:value|type|#k:v,k2:v2
     *     ^     ^    ^^   ^
     */
    char *p = out;
    memcpy(p, l->name, name_n);
    p += name_n;
    *p++ = ':';
    memcpy(p, l->value, value_n);
    p += value_n;
    *p++ = '|';
    memcpy(p, type, type_n);
    p += type_n;
    for (size_t i = 0; i < l->nlabels; i++) {
        if (i == 0) {
            *p++ = '|';
            *p++ = '#';
        } else {
            *p++ = ',';
        }
        memcpy(p, l->labels[i].key, key_n[i]);
        p += key_n[i];
        *p++ = ':';
        memcpy(p, l->labels[i].value, val_n[i]);
        p += val_n[i];
    }
    *len = (size_t)(p - out);
    return 0;
}

am_reason_t am_line_validate(const char *line, size_t n, size_t nlabels)
{
    am_sample_t s;
    am_reason_t r = am_parse_line(line, n, &s);
    if (r != AM_OK)
        return r;
    /* Empty tags between commas are skipped by the parser: a label that
     * vanished on the way is a bad label, not a silent loss. */
    if (s.ntags != nlabels)
        return AM_REJECT_BAD_LABEL;
    return AM_OK;
}

/* Digits of v, most significant first; returns the count. */
static size_t put_u64(uint64_t v, char *out)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static const double pow10_exact[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* snprintf("%g") costs a few hundred nanoseconds, as much as the rest of a
 * client call; this path costs a few tens. For a value in [1e-5, 1e15):
 * scale by an exact power of ten to a 15-digit integer m (one rounding, at
 * most 0.11 away from the exact product) and place the decimal point. A
 * value typed as a decimal of up to 15 significant digits lands within 0.22
 * of an integer and so comes back exactly. */
size_t am_line_double(double v, char out[AM_LINE_NUM_MAX])
{
    if (!isfinite(v))
        return 0;
    char *p = out;
    if (v == 0) {
        out[0] = '0';
        out[1] = '\0';
        return 1;
    }
    double a = fabs(v);
    if (a < 1e15 && a == (double)(uint64_t)a) {
        if (v < 0)
            *p++ = '-';
        p += put_u64((uint64_t)a, p);
        *p = '\0';
        return (size_t)(p - out);
    }
    if (a >= 1e-5 && a < 1e15) {
        int bexp;
        (void)frexp(a, &bexp);
        /* a is in [2^(bexp-1), 2^bexp): e is floor(log10 a) or one less. */
        int e = (int)floor((bexp - 1) * 0.30102999566398120);
        int k = 14 - e; /* digits after the point; <= 20 */
        uint64_t m = (uint64_t)(a * pow10_exact[k] + 0.5);
        if (m >= 1000000000000000ULL) { /* e was one low, or rounding carried */
            k--;
            if (k < 0)
                goto slow;
            m = (uint64_t)(a * pow10_exact[k] + 0.5);
            if (m >= 1000000000000000ULL)
                goto slow;
        }
        while (k > 0 && m % 10 == 0) {
            m /= 10;
            k--;
        }
        char digits[20];
        size_t nd = put_u64(m, digits);
        if (v < 0)
            *p++ = '-';
        if ((size_t)k >= nd) {
            /* 0.000ddd */
            *p++ = '0';
            *p++ = '.';
            for (size_t i = nd; i < (size_t)k; i++)
                *p++ = '0';
            memcpy(p, digits, nd);
            p += nd;
        } else {
            size_t int_n = nd - (size_t)k;
            memcpy(p, digits, int_n);
            p += int_n;
            if (k > 0) {
                *p++ = '.';
                memcpy(p, digits + int_n, (size_t)k);
                p += k;
            }
        }
        *p = '\0';
        return (size_t)(p - out);
    }
slow:;
    int n = snprintf(out, AM_LINE_NUM_MAX, "%.17g", v);
    if (n <= 0 || n >= AM_LINE_NUM_MAX)
        return 0;
    /* The library runs in the caller's locale: a decimal comma (LC_NUMERIC
     * de_DE) must still go out as a point. */
    for (int i = 0; i < n; i++) {
        char ch = out[i];
        if (!(ch >= '0' && ch <= '9') && ch != '-' && ch != '+' && ch != 'e')
            out[i] = '.';
    }
    return (size_t)n;
}

size_t am_line_delta(double v, char out[AM_LINE_NUM_MAX])
{
    if (!isfinite(v))
        return 0;
    if (v < 0)
        return am_line_double(v, out);
    char tmp[AM_LINE_NUM_MAX];
    size_t n = am_line_double(v, tmp);
    if (n == 0 || n + 2 > AM_LINE_NUM_MAX)
        return 0;
    out[0] = '+';
    memcpy(out + 1, tmp, n + 1);
    return n + 1;
}

const char *am_line_fault_message(am_line_part_t part)
{
    switch (part) {
        case AM_LINE_PART_NAME:
            return "a metric name may not hold ':', '|', CR or LF";
        case AM_LINE_PART_VALUE:
            return "a value may not hold ':', '|', CR or LF";
        case AM_LINE_PART_LABEL_KEY:
            return "a label key must be non-empty, without ':', ',', '|', '#', CR or LF";
        case AM_LINE_PART_LABEL_VALUE:
            return "a label value may not hold ',', '|', CR or LF";
        case AM_LINE_PART_NONE:
            break;
    }
    return "invalid line";
}
