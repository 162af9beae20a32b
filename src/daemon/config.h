/* config: the JSON config file (proto/man alice.conf(5)), read with
 * jansson. Every key is optional; unknown keys and bad values are errors
 * that name the key's path and its line:column in the file.
 *
 * Who calls: cli.c (check-config, and the server's flags) and server.c (at
 * start and on SIGHUP), on the main thread. No shared state. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "opts.h"
#include "registry.h"

/* The numeric keys of "limits" (max_series_per_family, max_series,
 * max_families, max_set_members, max_series_bytes). */
#define AM_CONFIG_NLIMITS 5

/* A loaded config: caller-allocated, and owns every string and array in
 * it (am_config_free frees them). Borrowers (am_server_opts_t) must not
 * outlive it. */
typedef struct am_config {
    /* server: NULL / -1 when the file does not set them */
    char *host; /* owned */
    int port;
    char *statsd_host; /* owned */
    int statsd_port;
    char *unix_path;           /* owned */
    char *state_file;          /* owned; NULL unset */
    long state_interval;       /* seconds; -1 unset */
    char *mapping_config;      /* owned; NULL unset: statsd_exporter mapping file */
    char *web_config;          /* owned: server.web_config; NULL unset */
    int log_level;             /* am_log_level_t or -1 */
    long receive_buffer_bytes; /* -1 unset */
    int workers;               /* ingest workers, 1..64; -1 unset */
    long ttl;                  /* top-level "ttl": default series TTL, seconds; -1 unset */
    int tag_dialects;          /* top-level "tag_dialects": AM_DIALECT_* mask; -1 unset */
    long max_connections;      /* HTTP connections, 1..1000000; -1 unset */
    int unix_mode;             /* the Unix socket's mode, 0..0777; -1 unset */

    bool has_limits[AM_CONFIG_NLIMITS]; /* the numeric keys of "limits", in config.c's order */
    am_limits_t limits;
    bool has_auto_create;

    size_t nfamilies;
    am_family_def_t *families; /* owned: nfamilies defs, each owning its strings */

    am_remote_opts_t remote_write; /* "remote_write"; url NULL when the file has none */
} am_config_t;

/* An empty config (nothing set, nothing owned). */
void am_config_init(am_config_t *c);
/* Frees everything c owns (not c itself) and leaves it as am_config_init
 * does; safe on an initialised config. */
void am_config_free(am_config_t *c);

/* Loads and validates path into *out (initialised here: the caller frees
 * it with am_config_free after a 0; after a failure nothing is left to
 * free). Returns 0, or with a one-line message in err (errlen bytes, the
 * caller's; "FILE:LINE:COL: families[1].buckets: must be increasing"):
 *   -EINVAL  not JSON, or a bad key or value
 *   -ENOMEM  out of memory
 *   -EFBIG   the file is larger than 16 MiB
 *   -EINVAL  also: path is not a regular file (a FIFO, a device: never
 *            opened in a way that could block, see file.h)
 *   -errno   of the open or the read (-ENOENT, -EACCES, -EISDIR...) */
int am_config_load(const char *path, am_config_t *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* The same for text[0, len) (borrowed for the call; tests). name is used
 * in messages. 0, -EINVAL or -ENOMEM, as am_config_load. */
int am_config_parse(const char *text, size_t len, const char *name, am_config_t *out, char *err,
                    size_t errlen) __attribute__((warn_unused_result));

/* A file mode written in octal ("0660", "660", "0"), at most 0777: the
 * mode, or -EINVAL. s is borrowed for the call. For server.unix_mode and
 * --unix-mode alike. */
int am_config_parse_mode(const char *s) __attribute__((warn_unused_result));

/* Merges the file's limits/auto_create into l (the caller's; fields the
 * file sets); c is only read. */
void am_config_apply_limits(const am_config_t *c, am_limits_t *l);
