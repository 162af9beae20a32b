#include "expiry.h"

#include <errno.h>

/* Series examined per step: a step holds every worker, so it stays short
 * (about 0.1-0.3 ms at 100-150 ns a series). */
enum { STEP_BUDGET = 2048, BUSY_RETRY_MS = 10 };

static void on_tick(uv_timer_t *t)
{
    am_expiry_t *e = t->data;
    uv_loop_t *loop = t->loop;
    uint64_t now_ms = uv_now(loop);
    if (e->hold && e->hold(e->hold_ctx)) {
        uv_timer_start(t, on_tick, BUSY_RETRY_MS, 0);
        return;
    }
    if (!e->in_pass) {
        if (!am_workers_has_ttl(e->workers)) {
            uv_timer_start(t, on_tick, AM_EXPIRY_PASS_MS, 0);
            return;
        }
        e->in_pass = true;
        e->pass_started_ms = now_ms;
        e->pass_longest_ns = 0;
    }
    uint32_t now_ds = (uint32_t)(now_ms / 100);
    uint64_t t0 = uv_hrtime(), elapsed = 0;
    size_t expired = 0;
    int rc = 0;
    while (elapsed < AM_EXPIRY_SLICE_NS) {
        rc = am_workers_expire_step(e->workers, now_ds, STEP_BUDGET, &expired);
        elapsed = uv_hrtime() - t0;
        if (rc != 0)
            break;
    }
    e->expired += expired;
    if (elapsed > e->pass_longest_ns)
        e->pass_longest_ns = elapsed;
    if (rc == -EBUSY) {
        uv_timer_start(t, on_tick, BUSY_RETRY_MS, 0);
        return;
    }
    if (rc != AM_WORKERS_SWEPT) {
        uv_timer_start(t, on_tick, 0, 0); /* the next loop turn, after I/O */
        return;
    }
    e->in_pass = false;
    e->last_longest_pause = (double)e->pass_longest_ns / 1e9;
    uint64_t spent = uv_now(loop) - e->pass_started_ms;
    uv_timer_start(t, on_tick, spent < AM_EXPIRY_PASS_MS ? AM_EXPIRY_PASS_MS - spent : 0, 0);
}

int am_expiry_start(uv_loop_t *loop, am_workers_t *ws, am_expiry_t *e)
{
    *e = (am_expiry_t){.workers = ws};
    int rc = uv_timer_init(loop, &e->timer);
    if (rc != 0)
        return rc;
    e->timer.data = e;
    return uv_timer_start(&e->timer, on_tick, AM_EXPIRY_PASS_MS, 0);
}

void am_expiry_close(am_expiry_t *e)
{
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, NULL);
}
