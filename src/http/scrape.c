#include "scrape.h"

#include <assert.h>
#include <stdlib.h>
#include <uv.h>

#include "gzip.h"

/* Output rendered per piece of a family between checks of the clock (and,
 * with gzip, per feed to zlib): a family of a million series is rendered
 * in parts, not in one pause. */
#define PART_BYTES (64 * 1024)

typedef struct family_slot {
    const am_family_t *f; /* valid until rendered (see am_registry_snapshot_begin) */
    am_buf_t early;       /* rendered before its turn: ingest was about to change it */
    bool taken_early;
} family_slot_t;

struct am_scrape {
    am_registry_t *reg;
    bool owned;
    am_format_t fmt;
    bool rendering; /* the registry's snapshot is open */
    bool done;
    family_slot_t *slots;
    size_t nslots;
    size_t next;            /* the next slot to go into the output */
    am_expose_cursor_t cur; /* how far slot `next` is rendered */
    am_buf_t body;          /* rendered text: the output, or zlib's input with gzip */
    am_buf_t tail;          /* self-metrics and the end marker, rendered at begin */
    am_buf_t lb;            /* label scratch for am_expose_family */
    am_gzip_t gz;
    bool gzipped; /* gz_out is the output */
    am_buf_t gz_out;
    uint64_t longest_pause_ns;
};

static void note_pause(am_scrape_t *sc, uint64_t t0)
{
    uint64_t d = uv_hrtime() - t0;
    if (d > sc->longest_pause_ns)
        sc->longest_pause_ns = d;
}

/* The registry's snapshot callback: family `index` is about to change.
 * The one being rendered in parts is finished from where it stopped. */
static void render_early(void *ctx, const am_family_t *f, size_t index)
{
    am_scrape_t *sc = ctx;
    uint64_t t0 = uv_hrtime();
    assert(index < sc->nslots && index >= sc->next); /* numbered by the snapshot, not taken */
    family_slot_t *slot = &sc->slots[index];
    if (index == sc->next)
        am_expose_family_part(&slot->early, &sc->lb, f, sc->fmt, &sc->cur, SIZE_MAX);
    else
        am_expose_family(&slot->early, &sc->lb, f, sc->fmt);
    slot->taken_early = true;
    note_pause(sc, t0);
}

am_scrape_t *am_scrape_begin(am_registry_t *r, bool owned, am_format_t fmt, bool gzip,
                             const am_selfstats_t *st)
{
    am_scrape_t *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return NULL;
    sc->reg = r;
    sc->fmt = fmt;
    am_buf_init(&sc->body, 0);
    am_buf_init(&sc->tail, 0);
    am_buf_init(&sc->lb, 0);
    am_buf_init(&sc->gz_out, 0);
    size_t n = am_registry_family_count(r);
    sc->slots = calloc(n ? n : 1, sizeof(*sc->slots));
    if (!sc->slots) {
        free(sc);
        return NULL;
    }
    sc->owned = owned;
    for (size_t i = 0; i < n; i++)
        am_buf_init(&sc->slots[i].early, 0);
    /* Without zlib's state the plain body is still a correct answer. */
    sc->gzipped = gzip && am_gzip_begin(&sc->gz, 0, &sc->gz_out) == 0;
    if (gzip && !sc->gzipped)
        am_gzip_end(&sc->gz);
    am_selfstats_render(&sc->tail, st, r, fmt);
    am_selfstats_render_process(&sc->tail, fmt);
    am_expose_finish(&sc->tail, fmt);
    sc->nslots = am_registry_snapshot_begin(r, render_early, sc);
    sc->rendering = true;
    size_t i = 0;
    for (const am_family_t *f = am_registry_first(r); f; f = am_family_next(f))
        sc->slots[i++].f = f;
    return sc;
}

/* Moves src's bytes to the end of dst; a failed src fails dst. */
static void move_into(am_buf_t *dst, am_buf_t *src)
{
    am_buf_append(dst, src->data, src->len);
    if (am_buf_failed(src))
        dst->failed = true;
    am_buf_free(src);
}

/* With gzip: what body holds goes through zlib into gz_out. */
static void compress_body(am_scrape_t *sc, bool last)
{
    if (!sc->gzipped || (sc->body.len == 0 && !last))
        return;
    if (am_buf_failed(&sc->body) || am_gzip_feed(&sc->gz, sc->body.data, sc->body.len, last) != 0)
        sc->gz_out.failed = true; /* a body with a hole is no answer */
    am_buf_reset(&sc->body);
    if (last)
        am_gzip_end(&sc->gz);
}

/* The next piece of the output: part of the family in turn (whole when
 * ingest took it early), or, after the last, the tail. */
static void render_piece(am_scrape_t *sc)
{
    if (sc->next == sc->nslots) {
        move_into(&sc->body, &sc->tail);
        am_registry_snapshot_end(sc->reg);
        sc->rendering = false;
        compress_body(sc, true);
        sc->done = true;
        return;
    }
    family_slot_t *slot = &sc->slots[sc->next];
    bool complete = true;
    if (slot->taken_early)
        move_into(&sc->body, &slot->early);
    else if ((complete = am_expose_family_part(&sc->body, &sc->lb, slot->f, sc->fmt, &sc->cur,
                                               PART_BYTES)))
        am_registry_snapshot_taken(sc->reg, slot->f);
    if (complete) {
        sc->next++;
        sc->cur = (am_expose_cursor_t){0};
    }
    compress_body(sc, false);
}

bool am_scrape_step(am_scrape_t *sc, uint64_t budget_ns)
{
    uint64_t t0 = uv_hrtime();
    while (!sc->done) {
        render_piece(sc);
        if (uv_hrtime() - t0 >= budget_ns)
            break;
    }
    note_pause(sc, t0);
    return sc->done;
}

am_buf_t *am_scrape_output(am_scrape_t *sc, bool *gzipped)
{
    *gzipped = sc->gzipped;
    return sc->gzipped ? &sc->gz_out : &sc->body;
}

uint64_t am_scrape_longest_pause_ns(const am_scrape_t *sc)
{
    return sc->longest_pause_ns;
}

void am_scrape_free(am_scrape_t *sc)
{
    if (!sc)
        return;
    if (sc->rendering)
        am_registry_snapshot_end(sc->reg);
    for (size_t i = 0; i < sc->nslots; i++)
        am_buf_free(&sc->slots[i].early);
    free(sc->slots);
    am_gzip_end(&sc->gz);
    am_buf_free(&sc->body);
    am_buf_free(&sc->tail);
    am_buf_free(&sc->lb);
    am_buf_free(&sc->gz_out);
    if (sc->owned)
        am_registry_free(sc->reg);
    free(sc);
}
