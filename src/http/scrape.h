/* scrape: one /metrics body, rendered a piece at a time between loop
 * turns so that ingest is held for one piece (or, when it changes the
 * family being rendered, the rest of that family), and still one
 * consistent snapshot: a family that ingest is about to
 * change is rendered first, as it was (am_registry_snapshot_begin). A large
 * family is rendered in parts, and a gzip body compressed as it renders, so
 * the output can be taken (and sent) while the rest is still to come.
 *
 * Who calls: server.c, on the main loop: one scrape at a time per registry.
 * With one worker the registry is the worker's, fed on the same loop
 * between steps; with several it is a private merged copy. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "expose.h"
#include "registry.h"
#include "selfstats.h"

typedef struct am_scrape am_scrape_t;

/* Begins a scrape of r as it is now: the self-metrics (st, borrowed for
 * the call, with r's series counts) are rendered here. r is borrowed until
 * am_scrape_free, or, when owned, stolen: a private merged copy that the
 * scrape frees when it is freed (on NULL the caller keeps it). One scrape
 * per registry at a time. The scrape is owned by the caller
 * (am_scrape_free). NULL when out of memory. */
am_scrape_t *am_scrape_begin(am_registry_t *r, bool owned, am_format_t fmt, bool gzip,
                             const am_selfstats_t *st) __attribute__((warn_unused_result));

/* Renders (and compresses) until budget_ns has passed, at least one
 * piece: a family, or a part of a large one. true when the body is
 * complete. */
bool am_scrape_step(am_scrape_t *sc, uint64_t budget_ns);

/* The output so far: the body's bytes (gzip bytes when *gzipped, decided at
 * begin) rendered and not yet taken. Borrowed from sc until am_scrape_free;
 * the caller may steal its bytes between steps (a body sent in chunks
 * while it renders) or once complete (am_buf_steal, or
 * am_http_deferred_finish). A failed buffer means out of memory: the
 * output has a hole. */
am_buf_t *am_scrape_output(am_scrape_t *sc, bool *gzipped);

/* The longest time ingest waited on this scrape, in ns: a step, or a family
 * rendered early because a line was about to change it. */
uint64_t am_scrape_longest_pause_ns(const am_scrape_t *sc);

/* Ends the snapshot (if still open) and frees everything sc owns (an owned
 * registry too). NULL is ignored. */
void am_scrape_free(am_scrape_t *sc);
