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

typedef struct gather {
    am_liveview_t *lv;
    am_sender_t *senders; /* owned; NULL: not gathered (the timer's gathers) */
    size_t nsenders;
    uint64_t senders_evicted;
    uint64_t now_ms; /* of the senders' copy, on their clock */
    bool with_values;
    bool single; /* one registry: tops ranked straight from its counts */
    row_t *rows; /* owned */
    size_t nrows, cap;
    uint64_t nofamily[AM_REASON_COUNT];
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

/* The top values of each label of def (counts vc) into row->tops. */
static bool gather_values(row_t *row, const am_family_def_t *def, const am_valcounts_t *vc)
{
    for (size_t k = 0; vc && k < def->nlabels; k++) {
        size_t pos = 0, n = 0;
        am_label_value_t v, top[AM_LIVEVIEW_TOP];
        while (am_valcounts_next(vc, k, &pos, &v))
            am_label_value_rank(top, &n, AM_LIVEVIEW_TOP, &v);
        if (n && !set_top(&row->tops, def->labels[k], strlen(def->labels[k]), top, n))
            return false;
    }
    return true;
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
        row->lines += am_family_lines(f);
        for (int i = 1; i < AM_REASON_COUNT; i++) {
            uint64_t n = am_family_rejects(f, (am_reason_t)i);
            row->rejects[i] += n;
            row->rejects_total += n;
        }
        if (!g->single)
            continue; /* series and values: the directory's (live_family) */
        row->series = am_family_series_count(f);
        if (g->with_values && !gather_values(row, def, am_family_valcounts(f)))
            g->lv->out_of_memory = true;
    }
}

/* Several workers: a family's series and label values, each series counted
 * once however many workers hold it. */
static void live_family(void *ctx, const am_family_def_t *def, size_t series,
                        const am_valcounts_t *vc)
{
    gather_t *g = ctx;
    row_t *row = row_for(g, def->name);
    if (!row || !gather_values(row, def, vc)) {
        g->lv->out_of_memory = true;
        return;
    }
    row->type = am_family_type_name(def->type);
    row->series = series;
}

static void gather_free(gather_t *g)
{
    for (size_t i = 0; i < g->nrows; i++)
        json_decref(g->rows[i].tops);
    free(g->rows);
    free(g->senders);
}

static void gather(am_liveview_t *lv, gather_t *g, bool with_values)
{
    memset(g, 0, sizeof(*g));
    g->lv = lv;
    g->with_values = with_values;
    g->single = am_workers_count(lv->ws) == 1;
    lv->epoch++;
    lv->out_of_memory = false;
    am_workers_each(lv->ws, gather_registry, g);
    if (!g->single && with_values)
        am_famdir_each_live(am_workers_directory(lv->ws), live_family, g);
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
    free(lv);
}

void am_liveview_close(am_liveview_t *lv)
{
    uv_timer_stop(&lv->timer);
    uv_close((uv_handle_t *)&lv->timer, on_closed);
}

/* ---- rendering ---- */

/* Senders: most lines first, then datagrams, then pid and uid. */
static int cmp_senders(const void *pa, const void *pb)
{
    const am_sender_t *a = pa, *b = pb;
    if (a->lines != b->lines)
        return a->lines > b->lines ? -1 : 1;
    if (a->datagrams != b->datagrams)
        return a->datagrams > b->datagrams ? -1 : 1;
    if (a->pid != b->pid)
        return a->pid < b->pid ? -1 : 1;
    return a->uid < b->uid ? -1 : a->uid > b->uid;
}

/* The Unix socket's senders, copied out of worker 0 and sorted. False
 * when out of memory. */
static bool gather_senders(am_liveview_t *lv, gather_t *g)
{
    g->senders = malloc(AM_SENDERS_CAP * sizeof(*g->senders));
    if (!g->senders)
        return false;
    g->nsenders = am_workers_senders(lv->ws, g->senders, AM_SENDERS_CAP, &g->senders_evicted);
    /* uv_now's clock (a worker stamps last_ms with its loop's uv_now). */
    g->now_ms = uv_hrtime() / 1000000;
    if (g->nsenders)
        qsort(g->senders, g->nsenders, sizeof(*g->senders), cmp_senders);
    return true;
}

static json_int_t seconds_ago(const gather_t *g, uint64_t ms)
{
    return (json_int_t)(g->now_ms > ms ? (g->now_ms - ms) / 1000 : 0);
}

static json_t *sender_json(const gather_t *g, const am_sender_t *w)
{
    return json_pack("{s:I, s:b, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I}", "pid",
                     (json_int_t)w->pid, "pid_visible", w->pid != 0, "uid", (json_int_t)w->uid,
                     "process", w->process, "datagrams", (json_int_t)w->datagrams, "lines",
                     (json_int_t)w->lines, "rejected", (json_int_t)w->rejected, "bytes",
                     (json_int_t)w->bytes, "first_seen_seconds_ago", seconds_ago(g, w->first_ms),
                     "last_seen_seconds_ago", seconds_ago(g, w->last_ms));
}

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
    json_t *fams = json_array(), *senders = json_array();
    json_t *o = json_pack("{s:i, s:o*, s:o*, s:o*, s:I}", "window_seconds", WINDOW_S, "families",
                          fams, "rejects_without_family", reasons_json(g->nofamily), "senders",
                          senders, "senders_evicted", (json_int_t)g->senders_evicted);
    bool ok = o && json_object_get(o, "families") && json_object_get(o, "rejects_without_family") &&
              json_object_get(o, "senders");
    for (size_t i = 0; ok && i < g->nrows; i++)
        ok = json_array_append_new(fams, row_json(&g->rows[i])) == 0;
    for (size_t i = 0; ok && i < g->nsenders; i++)
        ok = json_array_append_new(senders, sender_json(g, &g->senders[i])) == 0;
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
    if (!g->nsenders)
        return;
    am_buf_puts(b, "<h2>Senders (Unix socket)</h2>\n<table>\n<tr><th>sender</th>"
                   "<th>process</th><th>lines</th><th>rejected</th><th>datagrams</th>"
                   "<th>bytes</th><th>last seen (s ago)</th></tr>\n");
    for (size_t i = 0; i < g->nsenders; i++) {
        const am_sender_t *w = &g->senders[i];
        if (w->pid)
            am_buf_printf(b, "<tr><td>pid %u, uid %u</td>", w->pid, w->uid);
        else
            am_buf_printf(b, "<tr><td>uid %u (pid not visible: another PID namespace)</td>",
                          w->uid);
        am_buf_puts(b, "<td>");
        html_text(b, w->process, strlen(w->process)); /* any name a process gives itself */
        am_buf_printf(b,
                      "</td><td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
                      "<td class=\"n\">%llu</td><td class=\"n\">%llu</td>"
                      "<td class=\"n\">%lld</td></tr>\n",
                      (unsigned long long)w->lines, (unsigned long long)w->rejected,
                      (unsigned long long)w->datagrams, (unsigned long long)w->bytes,
                      (long long)seconds_ago(g, w->last_ms));
    }
    am_buf_puts(b, "</table>\n");
}

void am_liveview_render(am_liveview_t *lv, am_buf_t *body, bool html)
{
    gather_t g;
    am_workers_read_now(lv->ws);
    gather(lv, &g, true);
    if (!gather_senders(lv, &g))
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
