/* senders: who sends on the Unix socket (see senders.h). */
#include "senders.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hash.h"

/* An index entry: the key's hash (first: the table's free marker) and the
 * row it names. */
typedef struct slot {
    uint64_t hash;
    uint64_t row;
} slot_t;

static uint64_t key_hash(uint32_t pid, uint32_t uid)
{
    uint32_t k[2] = {pid, uid};
    return am_table_hash(am_hash(k, sizeof(k)));
}

int am_senders_init(am_senders_t *s, size_t cap, const char *proc)
{
    memset(s, 0, sizeof(*s));
    if (cap == 0)
        return -EINVAL;
    am_table_init(&s->index, sizeof(slot_t), 75, NULL);
    s->rows = calloc(cap, sizeof(*s->rows));
    if (!s->rows || am_table_reserve(&s->index, cap) != 0) {
        am_senders_free(s);
        return -ENOMEM;
    }
    s->cap = cap;
    s->proc = proc ? proc : "/proc";
    return 0;
}

void am_senders_free(am_senders_t *s)
{
    am_table_free(&s->index);
    free(s->rows);
    memset(s, 0, sizeof(*s));
}

/* The index entry of (pid, uid), or NULL. */
static slot_t *find(const am_senders_t *s, uint32_t pid, uint32_t uid, uint64_t h)
{
    size_t i;
    for (slot_t *e = am_table_first(&s->index, h, &i); e; e = am_table_next(&s->index, &i)) {
        const am_sender_t *r = &s->rows[e->row];
        if (e->hash == h && r->pid == pid && r->uid == uid)
            return e;
    }
    return NULL;
}

/* /proc/<pid>/comm into out (16 bytes): the name the process gave itself,
 * bytes outside printable ASCII as '?'; "" when it cannot be read. */
static void read_comm(const char *proc, uint32_t pid, char out[16])
{
    out[0] = '\0';
    char path[256];
    int n = snprintf(path, sizeof(path), "%s/%u/comm", proc, pid);
    if (n < 0 || (size_t)n >= sizeof(path))
        return;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return;
    char buf[16];
    ssize_t got = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (got <= 0)
        return;
    size_t len = (size_t)got;
    if (buf[len - 1] == '\n')
        len--;
    for (size_t i = 0; i < len; i++)
        out[i] = buf[i] >= 0x20 && buf[i] < 0x7f ? buf[i] : '?';
    out[len] = '\0';
}

/* A row for a new sender: a free one, or the least recently seen one's
 * (its index entry removed). */
static am_sender_t *take_row(am_senders_t *s)
{
    if (s->n < s->cap)
        return &s->rows[s->n++];
    am_sender_t *old = &s->rows[0];
    for (size_t i = 1; i < s->n; i++)
        if (s->rows[i].last_ms < old->last_ms)
            old = &s->rows[i];
    slot_t *e = find(s, old->pid, old->uid, key_hash(old->pid, old->uid));
    if (e)
        am_table_remove(&s->index, e);
    s->evicted++;
    return old;
}

am_sender_t *am_senders_get(am_senders_t *s, uint32_t pid, uint32_t uid, uint64_t now_ms)
{
    am_sender_t *r = s->last;
    if (!r || r->pid != pid || r->uid != uid) {
        uint64_t h = key_hash(pid, uid);
        slot_t *e = find(s, pid, uid, h);
        if (e) {
            r = &s->rows[e->row];
        } else {
            r = take_row(s);
            memset(r, 0, sizeof(*r));
            r->pid = pid;
            r->uid = uid;
            r->first_ms = now_ms;
            if (pid)
                read_comm(s->proc, pid, r->process);
            /* Room for cap entries was reserved at init: cannot fail. */
            slot_t *ne = am_table_add(&s->index, h);
            ne->row = (uint64_t)(r - s->rows);
        }
        s->last = r;
    }
    r->last_ms = now_ms;
    return r;
}

size_t am_senders_copy(const am_senders_t *s, am_sender_t *out, size_t cap)
{
    size_t n = s->n < cap ? s->n : cap;
    if (n) /* no rows yet may mean no row array yet: memcpy wants a pointer */
        memcpy(out, s->rows, n * sizeof(*out));
    return n;
}
