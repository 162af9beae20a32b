/* snapshot: a scrape renders one family at a time while ingest goes on,
 * and still sees the registry as it was when the scrape began (registry.h
 * "scrape snapshots"). */
#include "registry-internal.h"

#include <assert.h>

/* ---- scrape snapshots ---- */

size_t am_registry_snapshot_begin(am_registry_t *r, am_snapshot_fn fn, void *ctx)
{
    assert(!r->snap_fn && fn); /* one snapshot at a time */
    size_t i = 0;
    for (am_family_t *f = r->first; f; f = f->next, i++) {
        f->fast_type = FAST_PENDING;
        f->snap_index = (uint32_t)i;
    }
    r->snap_fn = fn;
    r->snap_ctx = ctx;
    r->snap_flushed = false;
    return i;
}

void am_registry_snapshot_taken(am_registry_t *r, const am_family_t *f)
{
    (void)r;
    am_family_t *mf = (am_family_t *)f;
    mf->fast_type = (uint8_t)mf->def.type;
}

void am_registry_snapshot_end(am_registry_t *r)
{
    for (am_family_t *f = r->first; f; f = f->next)
        am_registry_snapshot_taken(r, f);
    r->snap_fn = NULL;
    r->snap_ctx = NULL;
}

/* f is about to change: the snapshot takes it as it is now. Out of line:
 * the hot path only tests the flag. */
__attribute__((noinline)) void am__snapshot_flush(am_registry_t *r, am_family_t *f)
{
    am_registry_snapshot_taken(r, f);
    r->snap_fn(r->snap_ctx, f, f->snap_index);
}

void am__snapshot_flush_all(am_registry_t *r)
{
    if (!r->snap_fn || r->snap_flushed)
        return;
    for (am_family_t *f = r->first; f; f = f->next)
        if (am__snap_pending(f))
            am__snapshot_flush(r, f);
    /* Families made from now on are not in this snapshot: none is pending
     * until the next one begins, so the next call (the next define of a
     * reload) need not walk them all again. */
    r->snap_flushed = true;
}
