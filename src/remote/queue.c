#include "queue.h"

#include <stdlib.h>

void am_rwq_init(am_rwq_t *q, size_t max_bytes)
{
    *q = (am_rwq_t){.max_bytes = max_bytes, .rng = 0x9e3779b97f4a7c15ull ^ (uintptr_t)q};
}

static void free_item(am_rwq_item_t *it)
{
    free(it->bytes);
    free(it);
}

/* Unlinks and frees the oldest request that is not being sent, adding its
 * samples to *ns; false when there is none. */
static bool drop_oldest(am_rwq_t *q, size_t *ns)
{
    am_rwq_item_t **pp = q->head_busy ? &q->head->next : &q->head;
    am_rwq_item_t *it = *pp;
    if (!it)
        return false;
    *pp = it->next;
    if (q->tail == it)
        q->tail = q->head_busy ? q->head : NULL;
    q->bytes -= it->len;
    q->n--;
    *ns += it->nsamples;
    q->dropped_samples += it->nsamples;
    free_item(it);
    return true;
}

void am_rwq_clear(am_rwq_t *q)
{
    size_t ns = 0;
    q->head_busy = false;
    while (drop_oldest(q, &ns))
        ;
}

size_t am_rwq_push(am_rwq_t *q, char *bytes, size_t len, size_t nsamples)
{
    am_rwq_item_t *it = malloc(sizeof(*it));
    if (!it || len > q->max_bytes) {
        free(it);
        free(bytes);
        q->dropped_samples += nsamples;
        return nsamples;
    }
    size_t dropped = 0;
    /* when only the busy head is left, it may overshoot once */
    while (q->bytes + len > q->max_bytes && drop_oldest(q, &dropped))
        ;
    *it = (am_rwq_item_t){NULL, bytes, len, nsamples};
    if (q->tail)
        q->tail->next = it;
    else
        q->head = it;
    q->tail = it;
    q->bytes += len;
    q->n++;
    return dropped;
}

am_rwq_item_t *am_rwq_head(am_rwq_t *q)
{
    return q->head;
}

void am_rwq_pop(am_rwq_t *q)
{
    am_rwq_item_t *it = q->head;
    q->head_busy = false;
    if (!it)
        return;
    q->head = it->next;
    if (!q->head)
        q->tail = NULL;
    q->bytes -= it->len;
    q->n--;
    free_item(it);
}

unsigned am_rwq_backoff(am_rwq_t *q)
{
    unsigned step = q->backoff_ms ? q->backoff_ms : AM_RWQ_BACKOFF_MIN_MS;
    q->backoff_ms = step >= AM_RWQ_BACKOFF_MAX_MS / 2 ? AM_RWQ_BACKOFF_MAX_MS : 2 * step;
    /* xorshift64: jitter needs no quality, only spread */
    q->rng ^= q->rng << 13;
    q->rng ^= q->rng >> 7;
    q->rng ^= q->rng << 17;
    unsigned quarter = step / 4;
    return step - (quarter ? (unsigned)(q->rng % (quarter + 1)) : 0);
}

void am_rwq_backoff_reset(am_rwq_t *q)
{
    q->backoff_ms = 0;
}
