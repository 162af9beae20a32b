/* liveview: GET /api/v1/families and the table of GET / (see liveview.h). */
#include "liveview.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "health.h"
#include "registry.h"
#include "table.h"

#define WINDOW_S 60
#define SAMPLES  (WINDOW_S + 1) /* now and 60 s ago */

/* One family's accepted-line totals, sampled once a second, by name. */
typedef struct rate {
    uint64_t hash;          /* of name */
    uint64_t tick;          /* the last tick that saw the family */
    uint32_t nsamples;      /* valid samples, at most SAMPLES */
    uint64_t ring[SAMPLES]; /* ring[tick % SAMPLES]: the total at that tick */
    uint64_t row_epoch;     /* a render's row index below is valid in that epoch */
    size_t row;
    char name[];
} rate_t;

struct am_liveview {
    uv_timer_t timer;
    am_workers_t *ws;   /* borrowed */
    am_table_t rates;   /* rate_t *, by name hash; owned */
    uint64_t tick;      /* samples taken */
    uint64_t epoch;     /* gathers begun */
    bool out_of_memory; /* the last gather lost a family */
    /* Several workers: a render's summed label values (gather_t), kept
     * from one render to the next so that their memory is not faulted in
     * afresh every time (megabytes at 100,000 values). */
    am_buf_t arena;
    am_table_t summed;
    struct label_top *tops;
    size_t tops_cap;
};

static uint64_t rate_hash(const void *entry)
{
    return (*(rate_t *const *)entry)->hash;
}

/* The rate entry of this family name, created with no samples; NULL when
 * out of memory. */
static rate_t *rate_for(am_liveview_t *lv, const char *name)
{
    size_t len = strlen(name);
    uint64_t h = am_hash(name, len);
    size_t i;
    for (rate_t **e = am_table_first(&lv->rates, h, &i); e; e = am_table_next(&lv->rates, &i))
        if ((*e)->hash == h && strcmp((*e)->name, name) == 0)
            return *e;
    if (am_table_reserve(&lv->rates, lv->rates.n + 1) != 0)
        return NULL;
    rate_t *r = calloc(1, sizeof(*r) + len + 1);
    if (!r)
        return NULL;
    r->hash = h;
    r->tick = lv->tick;
    memcpy(r->name, name, len + 1);
    *(rate_t **)am_table_add(&lv->rates, h) = r; /* room reserved */
    return r;
}

/* Lines per second over the last minute, with total the count now. */
static double rate_of(const am_liveview_t *lv, const rate_t *r, uint64_t total)
{
    uint64_t base = 0;
    if (r->nsamples >= SAMPLES) /* the sample of 60 ticks ago is the next to be overwritten */
        base = r->ring[(lv->tick + 1) % SAMPLES];
    if (total < base)
        base = 0; /* the family started afresh (redefined) */
    /* to the thousandth: 0.033, not 0.033333333333333333 */
    return round((double)(total - base) / WINDOW_S * 1000) / 1000;
}

/* ---- gathering the workers' counts ---- */

typedef struct row {
    rate_t *rate; /* borrowed from lv->rates: the name */
    const char *type;
    uint64_t series, lines, rejects_total;
    uint64_t rejects[AM_REASON_COUNT];
    double per_second;
    json_t *tops; /* owned: {"label": [{"value": v, "series": n}, ...]}, the top ones */
} row_t;

/* Several workers: one label value of one row, its series summed over the
 * workers. A worker is held only while its values are copied into the
 * arena as records: row (uint32_t), label and value lengths (uint16_t
 * each), series (uint64_t), then the label and value bytes; they are
 * summed once every worker is released (sum_records). */
typedef struct summed {
    uint64_t hash; /* of the record's key: all but its series */
    size_t off;    /* of its first record in the arena */
    uint64_t series;
} summed_t;

#define REC_KEY  (sizeof(uint32_t) + 2 * sizeof(uint16_t))
#define REC_HEAD (REC_KEY + sizeof(uint64_t))

typedef struct gather {
    am_liveview_t *lv;
    bool with_values;
    bool single; /* one registry: tops ranked straight from its counts */
    row_t *rows; /* owned */
    size_t nrows, cap;
    uint64_t nofamily[AM_REASON_COUNT];
    am_buf_t *arena;    /* several workers: the records of `summed` (lv's) */
    am_table_t *summed; /* summed_t, by record hash (lv's) */
} gather_t;

static row_t *row_for(gather_t *g, const char *name)
{
    rate_t *r = rate_for(g->lv, name);
    if (!r)
        return NULL;
    if (r->row_epoch == g->lv->epoch)
        return &g->rows[r->row];
    if (g->nrows == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        row_t *rows = realloc(g->rows, cap * sizeof(*rows));
        if (!rows)
            return NULL;
        g->rows = rows;
        g->cap = cap;
    }
    row_t *row = &g->rows[g->nrows];
    memset(row, 0, sizeof(*row));
    row->rate = r;
    r->row_epoch = g->lv->epoch;
    r->row = g->nrows++;
    return row;
}

/* top[0..n) as [{"value": v, "series": n}, ...] set as label's entry of
 * *tops (made on first use); false when out of memory. */
static bool set_top(json_t **tops, const char *label, size_t len, const am_label_value_t *top,
                    size_t n)
{
    json_t *arr = json_array();
    if (!arr || (!*tops && !(*tops = json_object())) ||
        json_object_setn_new(*tops, label, len, arr) != 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(arr, json_pack("{s:s%, s:I}", "value", top[i].value, top[i].len,
                                                 "series", (json_int_t)top[i].series)) != 0)
            return false;
    return true;
}

/* Copies one value of a row's label into the arena. */
static bool copy_value(gather_t *g, uint32_t row, const char *label, const am_label_value_t *v)
{
    char head[REC_HEAD];
    uint16_t ll = (uint16_t)strlen(label), vl = (uint16_t)v->len;
    uint64_t series = v->series;
    memcpy(head, &row, sizeof(row));
    memcpy(head + 4, &ll, sizeof(ll));
    memcpy(head + 6, &vl, sizeof(vl));
    memcpy(head + REC_KEY, &series, sizeof(series));
    am_buf_append(g->arena, head, sizeof(head));
    am_buf_append(g->arena, label, ll);
    am_buf_append(g->arena, v->value, vl);
    return !am_buf_failed(g->arena);
}

/* The same (row, label, value) 's records summed into g->summed. */
static bool sum_records(gather_t *g)
{
    for (size_t off = 0; off < g->arena->len;) {
        const char *rec = g->arena->data + off;
        uint16_t ll, vl;
        uint64_t series;
        memcpy(&ll, rec + 4, sizeof(ll));
        memcpy(&vl, rec + 6, sizeof(vl));
        memcpy(&series, rec + REC_KEY, sizeof(series));
        size_t n = REC_HEAD + ll + vl;
        /* the key: row and lengths, then the bytes after the series */
        uint64_t h = am_table_hash(am_hash(rec, REC_KEY) ^ am_hash(rec + REC_HEAD, ll + vl));
        size_t i;
        summed_t *e = am_table_first(g->summed, h, &i);
        for (; e; e = am_table_next(g->summed, &i)) {
            const char *o = g->arena->data + e->off;
            if (e->hash == h && memcmp(o, rec, REC_KEY) == 0 &&
                memcmp(o + REC_HEAD, rec + REC_HEAD, ll + vl) == 0)
                break;
        }
        if (!e) {
            if (!(e = am_table_add(g->summed, h)))
                return false;
            e->off = off;
            e->series = 0;
        }
        e->series += series;
        off += n;
    }
    return true;
}

/* f's tracked label values: ranked into row->tops (one registry: no copy
 * of the values but the top ones), or summed (several, ranked once all
 * are read: values no worker ranks high may add up to the top). */
static bool gather_values(gather_t *g, row_t *row, const am_family_t *f)
{
    const am_family_def_t *def = am_family_def(f);
    for (size_t k = 0; k < def->nlabels; k++) {
        size_t pos = 0, n = 0;
        am_label_value_t v, top[AM_LIVEVIEW_TOP];
        while (am_family_label_value_next(f, k, &pos, &v)) {
            if (g->single)
                am_label_value_rank(top, &n, AM_LIVEVIEW_TOP, &v);
            else if (!copy_value(g, (uint32_t)(row - g->rows), def->labels[k], &v))
                return false;
        }
        if (n && !set_top(&row->tops, def->labels[k], strlen(def->labels[k]), top, n))
            return false;
    }
    return true;
}

/* One row's label with its top values so far (rank_summed). */
typedef struct label_top {
    const char *label; /* in the arena */
    size_t len, n;
    am_label_value_t top[AM_LIVEVIEW_TOP];
} label_top_t;

/* The top values of the summed counts (several workers), into each row's
 * tops. */
static bool rank_summed(gather_t *g)
{
    size_t need = g->nrows * AM_MAX_LABELS;
    if (need > g->lv->tops_cap) {
        free(g->lv->tops);
        g->lv->tops_cap = 0;
        if (!(g->lv->tops = malloc(need * sizeof(*g->lv->tops))))
            return false;
        g->lv->tops_cap = need;
    }
    label_top_t *lt = g->lv->tops;
    if (need)
        memset(lt, 0, need * sizeof(*lt));
    size_t i = 0;
    for (const summed_t *e; (e = am_table_each(g->summed, &i));) {
        const char *rec = g->arena->data + e->off;
        uint32_t row;
        uint16_t ll, vl;
        memcpy(&row, rec, sizeof(row));
        memcpy(&ll, rec + 4, sizeof(ll));
        memcpy(&vl, rec + 6, sizeof(vl));
        label_top_t *t = &lt[(size_t)row * AM_MAX_LABELS];
        size_t k = 0;
        while (k < AM_MAX_LABELS && t[k].label &&
               !(t[k].len == ll && memcmp(t[k].label, rec + REC_HEAD, ll) == 0))
            k++;
        if (k == AM_MAX_LABELS)
            continue; /* more label names than a family has: cannot be */
        t[k].label = rec + REC_HEAD;
        t[k].len = ll;
        am_label_value_t v = {rec + REC_HEAD + ll, vl, (size_t)e->series};
        am_label_value_rank(t[k].top, &t[k].n, AM_LIVEVIEW_TOP, &v);
    }
    bool ok = true;
    for (size_t r = 0; ok && r < g->nrows; r++)
        for (size_t k = 0; ok && k < AM_MAX_LABELS && lt[r * AM_MAX_LABELS + k].label; k++) {
            const label_top_t *t = &lt[r * AM_MAX_LABELS + k];
            ok = set_top(&g->rows[r].tops, t->label, t->len, t->top, t->n);
        }
    return ok;
}

static void gather_registry(void *ctx, const am_registry_t *r)
{
    gather_t *g = ctx;
    for (int i = 1; i < AM_REASON_COUNT; i++)
        g->nofamily[i] += am_registry_rejects_without_family(r, (am_reason_t)i);
    for (const am_family_t *f = am_registry_first(r); f; f = am_family_next(f)) {
        const am_family_def_t *def = am_family_def(f);
        row_t *row = row_for(g, def->name);
        if (!row) {
            g->lv->out_of_memory = true;
            continue;
        }
        row->type = am_family_type_name(def->type);
        row->series += am_family_series_count(f);
        row->lines += am_family_lines(f);
        for (int i = 1; i < AM_REASON_COUNT; i++) {
            uint64_t n = am_family_rejects(f, (am_reason_t)i);
            row->rejects[i] += n;
            row->rejects_total += n;
        }
        if (g->with_values && !gather_values(g, row, f))
            g->lv->out_of_memory = true;
    }
}

static void gather_free(gather_t *g)
{
    for (size_t i = 0; i < g->nrows; i++)
        json_decref(g->rows[i].tops);
    free(g->rows);
    am_buf_reset(g->arena);
    am_table_clear(g->summed);
}

static void gather(am_liveview_t *lv, gather_t *g, bool with_values)
{
    memset(g, 0, sizeof(*g));
    g->lv = lv;
    g->with_values = with_values;
    g->single = am_workers_count(lv->ws) == 1;
    g->arena = &lv->arena;
    g->summed = &lv->summed;
    lv->epoch++;
    lv->out_of_memory = false;
    am_workers_each(lv->ws, gather_registry, g);
}

/* ---- the sampling timer ---- */

static void on_tick(uv_timer_t *t)
{
    am_liveview_t *lv = t->data;
    gather_t g;
    lv->tick++;
    gather(lv, &g, false);
    for (size_t i = 0; i < g.nrows; i++) {
        rate_t *r = g.rows[i].rate;
        r->ring[lv->tick % SAMPLES] = g.rows[i].lines;
        if (r->nsamples < SAMPLES)
            r->nsamples++;
        r->tick = lv->tick;
    }
    gather_free(&g);
    /* Families gone (a reload removed them) leave; removal shifts entries
     * back into the slot, so the slot is looked at again. */
    size_t i = 0;
    for (rate_t **e; (e = am_table_each(&lv->rates, &i));) {
        if ((*e)->tick == lv->tick || lv->out_of_memory)
            continue;
        free(*e);
        am_table_remove(&lv->rates, e);
        i--;
    }
}

int am_liveview_start(uv_loop_t *loop, am_workers_t *ws, am_liveview_t **out)
{
    am_liveview_t *lv = calloc(1, sizeof(*lv));
    if (!lv)
        return -ENOMEM;
    lv->ws = ws;
    am_table_init(&lv->rates, sizeof(rate_t *), 75, rate_hash);
    am_buf_init(&lv->arena, 0);
    am_table_init(&lv->summed, sizeof(summed_t), 75, NULL);
    int rc = uv_timer_init(loop, &lv->timer);
    if (rc != 0) {
        free(lv);
        return rc;
    }
    lv->timer.data = lv;
    rc = uv_timer_start(&lv->timer, on_tick, 1000, 1000);
    if (rc != 0) {
        am_liveview_close(lv);
        return rc;
    }
    *out = lv;
    return 0;
}

static void on_closed(uv_handle_t *h)
{
    am_liveview_t *lv = h->data;
    size_t i = 0;
    for (rate_t **e; (e = am_table_each(&lv->rates, &i));)
        free(*e);
    am_table_free(&lv->rates);
    am_buf_free(&lv->arena);
    am_table_free(&lv->summed);
    free(lv->tops);
    free(lv);
}

void am_liveview_close(am_liveview_t *lv)
{
    uv_timer_stop(&lv->timer);
    uv_close((uv_handle_t *)&lv->timer, on_closed);
}

/* ---- rendering ---- */

static int cmp_rows(const void *pa, const void *pb)
{
    const row_t *a = pa, *b = pb;
    if (a->per_second != b->per_second)
        return a->per_second > b->per_second ? -1 : 1;
    if (a->series != b->series)
        return a->series > b->series ? -1 : 1;
    if (a->rejects_total != b->rejects_total)
        return a->rejects_total > b->rejects_total ? -1 : 1;
    return strcmp(a->rate->name, b->rate->name);
}

static json_t *reasons_json(const uint64_t *counts)
{
    json_t *o = json_object();
    for (int i = 1; o && i < AM_REASON_COUNT; i++)
        if (counts[i] && json_object_set_new(o, am_reason_label((am_reason_t)i),
                                             json_integer((json_int_t)counts[i])) != 0) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static json_t *row_json(const row_t *row)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:f, s:I, s:I, s:o*}", "name", row->rate->name, "type",
                          row->type, "series", (json_int_t)row->series, "lines_per_second",
                          row->per_second, "lines_total", (json_int_t)row->lines, "rejects_total",
                          (json_int_t)row->rejects_total, "rejects", reasons_json(row->rejects));
    json_t *tops = row->tops ? json_incref(row->tops) : json_object();
    if (!o || json_object_set_new(o, "top_label_values", tops) != 0 ||
        !json_object_get(o, "rejects")) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static void render_json(const gather_t *g, am_buf_t *body)
{
    json_t *fams = json_array();
    json_t *o = json_pack("{s:i, s:o*, s:o*}", "window_seconds", WINDOW_S, "families", fams,
                          "rejects_without_family", reasons_json(g->nofamily));
    bool ok = o && json_object_get(o, "families") && json_object_get(o, "rejects_without_family");
    for (size_t i = 0; ok && i < g->nrows; i++)
        ok = json_array_append_new(fams, row_json(&g->rows[i])) == 0;
    if (!ok) {
        json_decref(o);
        o = NULL;
    }
    am_health_put_json(body, o, JSON_COMPACT | JSON_REAL_PRECISION(15));
}

static void html_text(am_buf_t *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        switch (p[i]) {
            case '<':
                am_buf_puts(b, "&lt;");
                break;
            case '>':
                am_buf_puts(b, "&gt;");
                break;
            case '&':
                am_buf_puts(b, "&amp;");
                break;
            case '"':
                am_buf_puts(b, "&quot;");
                break;
            default:
                am_buf_putc(b, p[i]);
                break;
        }
    }
}

static void html_reasons(am_buf_t *b, const uint64_t *counts)
{
    const char *sep = "";
    for (int i = 1; i < AM_REASON_COUNT; i++)
        if (counts[i]) {
            am_buf_printf(b, "%s%s&nbsp;%llu", sep, am_reason_label((am_reason_t)i),
                          (unsigned long long)counts[i]);
            sep = ", ";
        }
}

static void render_html(const gather_t *g, am_buf_t *b)
{
    am_buf_puts(b, "<h2>Families</h2>\n<table>\n<tr><th>family</th><th>type</th>"
                   "<th>series</th><th>lines/s (1 min)</th><th>rejects</th>"
                   "<th>top label values (series)</th></tr>\n");
    for (size_t i = 0; i < g->nrows; i++) {
        const row_t *row = &g->rows[i];
        am_buf_puts(b, "<tr><td>");
        html_text(b, row->rate->name, strlen(row->rate->name));
        am_buf_printf(b,
                      "</td><td>%s</td><td class=\"n\">%llu</td><td class=\"n\">%.2f</td>"
                      "<td>",
                      row->type, (unsigned long long)row->series, row->per_second);
        html_reasons(b, row->rejects);
        am_buf_puts(b, "</td><td>");
        const char *label;
        json_t *top;
        json_object_foreach(row->tops, label, top)
        {
            am_buf_puts(b, "<div>");
            html_text(b, label, strlen(label));
            am_buf_puts(b, ": ");
            for (size_t k = 0; k < json_array_size(top) && k < AM_LIVEVIEW_HTML_TOP; k++) {
                json_t *value = json_object_get(json_array_get(top, k), "value");
                am_buf_puts(b, k ? ", " : "");
                html_text(b, json_string_value(value), json_string_length(value));
                am_buf_printf(b, "&nbsp;(%lld)",
                              (long long)json_integer_value(
                                  json_object_get(json_array_get(top, k), "series")));
            }
            am_buf_puts(b, "</div>");
        }
        am_buf_puts(b, "</td></tr>\n");
    }
    am_buf_puts(b, "</table>\n<p>Rejected lines without a family: ");
    size_t before = b->len;
    html_reasons(b, g->nofamily);
    if (b->len == before)
        am_buf_puts(b, "none");
    am_buf_puts(b, ".</p>\n");
}

void am_liveview_render(am_liveview_t *lv, am_buf_t *body, bool html)
{
    gather_t g;
    am_workers_read_now(lv->ws);
    gather(lv, &g, true);
    if (!g.single && (!sum_records(&g) || !rank_summed(&g)))
        lv->out_of_memory = true;
    for (size_t i = 0; i < g.nrows; i++)
        g.rows[i].per_second = rate_of(lv, g.rows[i].rate, g.rows[i].lines);
    if (g.nrows)
        qsort(g.rows, g.nrows, sizeof(g.rows[0]), cmp_rows);
    if (lv->out_of_memory)
        body->failed = true;
    else if (html)
        render_html(&g, body);
    else
        render_json(&g, body);
    gather_free(&g);
}
