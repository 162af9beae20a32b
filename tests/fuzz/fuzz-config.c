/* Fuzz harness: one input is one JSON config file's bytes, loaded from a
 * file as the daemon loads it at start, at SIGHUP and in check-config
 * (am_config_load: the file read, jansson, every section: server, limits,
 * tag_dialects, ttl, auto_create, families, and the clash check).
 *
 * A refused file must come back as -EINVAL (or -ENOMEM) with a message
 * naming the file, and leave nothing to free. An accepted one must keep its
 * promise: every family it defines can be defined, in file order, into a
 * registry holding the built-ins, and each is there afterwards with its type
 * (no family of the file repeats another's sample names, so none removes
 * another); the registry then renders in both formats. A violated check
 * calls abort(). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "catalog.h"
#include "config.h"
#include "expose.h"
#include "registry.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The file the inputs are written to: one per process, removed at exit. */
static char path[64];
static int fd = -1;

static void remove_file(void)
{
    if (path[0])
        unlink(path);
}

static void open_file(void)
{
    snprintf(path, sizeof(path), "/tmp/fuzz-config-%ld-XXXXXX", (long)getpid());
    fd = mkstemp(path);
    if (fd < 0)
        abort();
    atexit(remove_file);
}

static void check_accepted(const am_config_t *cfg)
{
    am_limits_t l;
    am_limits_default(&l);
    am_config_apply_limits(cfg, &l);
    am_registry_t *r = am_registry_new(&l);
    if (!r || am_catalog_install(r) != 0)
        abort();
    for (size_t i = 0; i < cfg->nfamilies; i++)
        if (am_registry_define(r, &cfg->families[i]) < 0)
            abort();
    for (size_t i = 0; i < cfg->nfamilies; i++) {
        const am_family_t *f = am_registry_find(r, cfg->families[i].name);
        if (!f || am_family_def(f)->type != cfg->families[i].type)
            abort(); /* removed by a later family of the same file: a clash missed */
    }
    am_buf_t out;
    am_buf_init(&out, 0);
    am_expose_registry(&out, r, AM_FORMAT_TEXT);
    am_expose_registry(&out, r, AM_FORMAT_OPENMETRICS);
    if (am_buf_failed(&out))
        abort();
    am_buf_free(&out);
    am_registry_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (fd < 0)
        open_file();
    if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    am_config_t cfg;
    char err[512];
    err[0] = '\0';
    int rc = am_config_load(path, &cfg, err, sizeof(err));
    if (rc == 0) {
        check_accepted(&cfg);
        am_config_free(&cfg);
        return 0;
    }
    if ((rc != -EINVAL && rc != -ENOMEM) || strncmp(err, path, strlen(path)) != 0)
        abort();
    /* nothing is left to free after a failure: the config is as new */
    if (cfg.nfamilies || cfg.families || cfg.host || cfg.statsd_host || cfg.unix_path ||
        cfg.state_file)
        abort();
    return 0;
}
