/* Fuzz harness: one input is one state file's bytes (the loader reads
 * untrusted bytes at every start).
 *
 * The input is restored into a fresh registry with the catalog and small
 * limits. A refused file must leave the registry empty; an accepted one
 * must render in both formats, encode again, and that encoding must
 * restore to the same exposition (what is restored is saved exactly).
 * A violated check calls abort(). Inputs whose checksums do not check out
 * are refused before the body is read, so the harness also fuzzes the body
 * behind a repaired header: the first byte of the input chooses. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "buf.h"
#include "catalog.h"
#include "expose.h"
#include "registry.h"
#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static am_registry_t *fresh(void)
{
    am_limits_t l;
    am_limits_default(&l);
    l.max_series = 20000;
    l.max_series_per_family = 5000;
    l.max_families = 200;
    l.max_set_members = 50000;
    am_registry_t *r = am_registry_new(&l);
    if (!r || am_catalog_install(r) != 0)
        abort();
    return r;
}

static void render(const am_registry_t *r, am_buf_t *out)
{
    am_buf_init(out, 0);
    am_expose_registry(out, r, AM_FORMAT_TEXT);
    am_expose_registry(out, r, AM_FORMAT_OPENMETRICS);
}

/* The header a body of n bytes would carry, written over p[0..31]. */
static void repair_header(uint8_t *p, size_t n)
{
    static const char magic[8] = {'A', 'L', 'I', 'C', 'E', 'S', 'T', '\n'};
    memcpy(p, magic, 8);
    uint64_t fields[3] = {AM_STATE_VERSION, AM_STATE_HEADER_LEN, n - AM_STATE_HEADER_LEN};
    for (int i = 0; i < 4; i++) {
        p[8 + i] = (uint8_t)(fields[0] >> (8 * i));
        p[12 + i] = (uint8_t)(fields[1] >> (8 * i));
    }
    for (int i = 0; i < 8; i++)
        p[16 + i] = (uint8_t)(fields[2] >> (8 * i));
    uint32_t b = (uint32_t)crc32(0, p + AM_STATE_HEADER_LEN, (uInt)(n - AM_STATE_HEADER_LEN));
    for (int i = 0; i < 4; i++)
        p[24 + i] = (uint8_t)(b >> (8 * i));
    uint32_t h = (uint32_t)crc32(0, p, 28);
    for (int i = 0; i < 4; i++)
        p[28 + i] = (uint8_t)(h >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (!p)
        return 0;
    if (size)
        memcpy(p, data, size);
    if (size > AM_STATE_HEADER_LEN && (data[0] & 1))
        repair_header(p, size);
    am_registry_t *r = fresh();
    char err[256];
    am_state_counts_t c;
    int rc = am_state_restore(r, p, size, &c, err, sizeof(err));
    if (rc != 0) {
        if ((rc != -EINVAL && rc != -EPROTO) || !err[0] || am_registry_series_count(r) != 0)
            abort();
    } else {
        if (c.restored + c.skipped != c.series || c.restored != am_registry_series_count(r))
            abort();
        am_buf_t first, file, second;
        render(r, &first);
        am_buf_init(&file, 0);
        if (am_state_encode(r, &file) != 0)
            abort();
        am_registry_t *again = fresh();
        if (am_state_restore(again, file.data, file.len, &c, err, sizeof(err)) != 0 || c.skipped)
            abort();
        render(again, &second);
        if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0)
            abort();
        am_buf_free(&first);
        am_buf_free(&second);
        am_buf_free(&file);
        am_registry_free(again);
    }
    am_registry_free(r);
    free(p);
    return 0;
}
