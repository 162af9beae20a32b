/* Fuzz harness: one input is one mapping file's bytes (the daemon reads it
 * at start and at every SIGHUP; check-config reads what users give it).
 *
 * A refused file must come with a "fuzz.yml:" error and no mapping. An
 * accepted one is matched against a few names of every line type, and
 * lines go through a registry with it (mapped names and labels, drops, the
 * line cache twice). Every result must point into the caller's buffer or
 * the mapping, with label names that are label names. A violated check
 * calls abort(). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "mapping.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const names[] = {
    "a",         "a.b",
    "a.b.c",     "api.openai.gpt-4.chat.success",
    "x.debug.y", "test.dispatcher.P.send.ok",
    "0.1-2._",   "a.b.c.d.e.f.g.h",
};

static void check_result(const am_mapping_result_t *r, const char *buf, size_t cap)
{
    if (r->name.n > cap || (r->name.n && (r->name.p < buf || r->name.p + r->name.n > buf + cap)))
        abort();
    for (size_t i = 0; i < r->nlabels; i++) {
        if (!am_valid_label_name(r->label_name[i].p, r->label_name[i].n))
            abort();
        const am_slice_t *v = &r->label_value[i];
        if (v->n && (v->p < buf || v->p + v->n > buf + cap))
            abort();
    }
    if (r->nbuckets > AM_MAX_BUCKETS)
        abort();
}

static void ingest(am_registry_t *r, const char *line)
{
    static am_sample_t s;
    (void)am_registry_ingest_line(r, line, strlen(line), &s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    am_mapping_t *m = NULL;
    char err[512];
    int rc = am_mapping_load_buffer((const char *)data, size, "fuzz.yml", &m, err, sizeof(err),
                                    NULL, NULL);
    if (rc != 0) {
        if (m || strncmp(err, "fuzz.yml", 8) != 0)
            abort();
        return 0;
    }
    static const am_type_t types[] = {AM_TYPE_COUNTER,   AM_TYPE_GAUGE,        AM_TYPE_TIMER,
                                      AM_TYPE_HISTOGRAM, AM_TYPE_DISTRIBUTION, AM_TYPE_SET};
    char buf[512];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
            am_mapping_result_t res;
            int k =
                am_mapping_match(m, names[i], strlen(names[i]), types[t], buf, sizeof(buf), &res);
            if (k == AM_MAPPING_MAPPED)
                check_result(&res, buf, sizeof(buf));
            else if (k != AM_MAPPING_NO_MATCH && k != AM_MAPPING_DROP && k != -ENOSPC)
                abort();
        }
    am_limits_t l;
    am_limits_default(&l);
    l.max_series = 2000;
    l.max_families = 100;
    am_registry_t *r = am_registry_new(&l);
    if (!r || am_catalog_install(r) != 0)
        abort();
    am_registry_set_mapping(r, m);
    for (int pass = 0; pass < 2; pass++) {
        ingest(r, "api.openai.gpt-4.chat.success:1|c");
        ingest(r, "a.b.c:250|ms|#env:dev");
        ingest(r, "a.b:3|g");
        ingest(r, "x.debug.y:1|c");
        ingest(r, "a:1.5|h|#a:b");
        ingest(r, "a.b.c:u1|s");
    }
    am_registry_free(r);
    am_mapping_free(m);
    return 0;
}
