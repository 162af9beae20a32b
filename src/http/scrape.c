#include "scrape.h"

#include <assert.h>
#include <stdlib.h>
#include <uv.h>

#include "gzip.h"

/* Input fed to zlib per check of the clock: about 1-2 ms at level 1. */
#define GZIP_SLICE (256 * 1024)

typedef struct family_slot {
    const am_family_t *f; /* valid until rendered (see am_registry_snapshot_begin) */
    am_buf_t early;       /* rendered before its turn: ingest was about to change it */
    bool taken_early;
} family_slot_t;

/* The registry's snapshot is open exactly while rendering. */
typedef enum phase { PHASE_RENDER, PHASE_COMPRESS, PHASE_DONE } phase_t;

struct am_scrape {
    am_registry_t *reg;
    bool owned;
    am_format_t fmt;
    bool want_gzip;
    phase_t phase;
    family_slot_t *slots;
    size_t nslots;
    size_t next; /* the next slot to go into body */
    am_buf_t body;
    am_buf_t tail; /* self-metrics and the end marker, rendered at begin */
    am_buf_t lb;   /* label scratch for am_expose_family */
    am_gzip_t gz;
    bool gzipped; /* gz_body is the answer */
    am_buf_t gz_body;
    size_t gz_off; /* body bytes compressed so far */
    uint64_t longest_pause_ns;
};

static void note_pause(am_scrape_t *sc, uint64_t t0)
{
    uint64_t d = uv_hrtime() - t0;
    if (d > sc->longest_pause_ns)
        sc->longest_pause_ns = d;
}

/* The registry's snapshot callback: family `index` is about to change. */
static void render_early(void *ctx, const am_family_t *f, size_t index)
{
    am_scrape_t *sc = ctx;
    uint64_t t0 = uv_hrtime();
    assert(index < sc->nslots); /* the registry numbers the families it snapshot */
    family_slot_t *slot = &sc->slots[index];
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
    sc->want_gzip = gzip;
    am_buf_init(&sc->body, 0);
    am_buf_init(&sc->tail, 0);
    am_buf_init(&sc->lb, 0);
    am_buf_init(&sc->gz_body, 0);
    size_t n = am_registry_family_count(r);
    sc->slots = calloc(n ? n : 1, sizeof(*sc->slots));
    if (!sc->slots) {
        free(sc);
        return NULL;
    }
    sc->owned = owned;
    for (size_t i = 0; i < n; i++)
        am_buf_init(&sc->slots[i].early, 0);
    am_selfstats_render(&sc->tail, st, r, fmt);
    am_selfstats_render_process(&sc->tail, fmt);
    am_expose_finish(&sc->tail, fmt);
    sc->nslots = am_registry_snapshot_begin(r, render_early, sc);
    size_t i = 0;
    for (const am_family_t *f = am_registry_first(r); f; f = am_family_next(f))
        sc->slots[i++].f = f;
    return sc;
}

/* One family into the body, in creation order. */
static void render_next(am_scrape_t *sc)
{
    assert(sc->next < sc->nslots);
    family_slot_t *slot = &sc->slots[sc->next++];
    if (slot->taken_early) {
        am_buf_append(&sc->body, slot->early.data, slot->early.len);
        if (am_buf_failed(&slot->early))
            sc->body.failed = true;
        am_buf_free(&slot->early);
        return;
    }
    am_expose_family(&sc->body, &sc->lb, slot->f, sc->fmt);
    am_registry_snapshot_taken(sc->reg, slot->f);
}

/* The body is complete: the snapshot ends, compression (if wanted) begins. */
static void end_render(am_scrape_t *sc)
{
    am_buf_append(&sc->body, sc->tail.data, sc->tail.len);
    if (am_buf_failed(&sc->tail))
        sc->body.failed = true;
    am_registry_snapshot_end(sc->reg);
    bool compress = sc->want_gzip && sc->body.len > 0 && !am_buf_failed(&sc->body) &&
                    am_gzip_begin(&sc->gz, sc->body.len, &sc->gz_body) == 0;
    sc->phase = compress ? PHASE_COMPRESS : PHASE_DONE;
}

/* A slice of the body into gz_body; false when done (or gzip gave up:
 * the plain body is still a correct answer). */
static bool compress_slice(am_scrape_t *sc)
{
    size_t left = sc->body.len - sc->gz_off;
    size_t take = left > GZIP_SLICE ? GZIP_SLICE : left;
    bool last = take == left;
    if (am_gzip_feed(&sc->gz, sc->body.data + sc->gz_off, take, last) != 0)
        return false;
    sc->gz_off += take;
    if (last)
        sc->gzipped = true;
    return !last;
}

bool am_scrape_step(am_scrape_t *sc, uint64_t budget_ns)
{
    uint64_t t0 = uv_hrtime();
    while (sc->phase != PHASE_DONE) {
        if (sc->phase == PHASE_RENDER) {
            if (sc->next < sc->nslots)
                render_next(sc);
            else
                end_render(sc);
        } else if (!compress_slice(sc)) {
            am_gzip_end(&sc->gz);
            am_buf_free(sc->gzipped ? &sc->body : &sc->gz_body);
            sc->phase = PHASE_DONE;
        }
        if (uv_hrtime() - t0 >= budget_ns)
            break;
    }
    note_pause(sc, t0);
    return sc->phase == PHASE_DONE;
}

am_buf_t *am_scrape_body(am_scrape_t *sc, bool *gzipped)
{
    assert(sc->phase == PHASE_DONE);
    *gzipped = sc->gzipped;
    return sc->gzipped ? &sc->gz_body : &sc->body;
}

uint64_t am_scrape_longest_pause_ns(const am_scrape_t *sc)
{
    return sc->longest_pause_ns;
}

void am_scrape_free(am_scrape_t *sc)
{
    if (!sc)
        return;
    if (sc->phase == PHASE_RENDER)
        am_registry_snapshot_end(sc->reg);
    for (size_t i = 0; i < sc->nslots; i++)
        am_buf_free(&sc->slots[i].early);
    free(sc->slots);
    am_gzip_end(&sc->gz);
    am_buf_free(&sc->body);
    am_buf_free(&sc->tail);
    am_buf_free(&sc->lb);
    am_buf_free(&sc->gz_body);
    if (sc->owned)
        am_registry_free(sc->reg);
    free(sc);
}
