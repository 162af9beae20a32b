/* server: the metrics-server daemon. Owns the loop, the signals, the
 * workers (workers.h) and the wiring between ingest, the registries and
 * HTTP; answers /metrics, /health and /; rereads the config on SIGHUP.
 *
 * One worker (the default): everything on one loop, no threads, no locks.
 * N workers: N ingest threads, each with its own loop, SO_REUSEPORT UDP
 * socket and registry; the main loop keeps HTTP and signals and merges the
 * workers' registries at scrape time (src/README.md, "Threads").
 *
 * Who calls: cli.c, once, on the main thread, which then runs the loop. */
#pragma once

#include <stdbool.h>

/* Every string is borrowed from the caller until am_server_run returns.
 * cli.c points the host and socket strings into its parsed config file (or
 * argv and the environment) and keeps that config alive until the server
 * has returned: freeing it before am_server_run was a use-after-free, now
 * fixed (a config file setting server.host, statsd_host or unix started
 * the daemon on a garbage address). The config path is read again on
 * every SIGHUP. */
typedef struct am_server_opts {
    const char *http_host;        /* borrowed (see above) */
    int http_port;                /* 0: any free port */
    const char *statsd_host;      /* borrowed */
    int statsd_port;              /* 0: UDP off */
    const char *unix_path;        /* borrowed; NULL: off */
    unsigned unix_mode;           /* its file mode, 0..0777 (cli.c's default: 0666) */
    const char *config_path;      /* borrowed; NULL: none */
    int receive_buffer_bytes;     /* 0: kernel default */
    bool log_level_fixed;         /* from flag/env: the config must not change it on reload */
    int workers;                  /* ingest loops, 1..AM_SERVER_MAX_WORKERS; 0 counts as 1 */
    long ttl;                     /* default series TTL, seconds, from a flag or the
                                   * environment (beats the config's); -1: unset */
    const char *state_path;       /* borrowed; NULL: no state file */
    unsigned state_interval;      /* seconds between state writes, >= 1 */
    bool state_discard_bad;       /* a refused state file is moved aside, not fatal */
    int max_connections;          /* HTTP connections, 1..AM_SERVER_MAX_CONNECTIONS; 0: 1024 */
    const char *remote_write_url; /* borrowed; --remote-write-url or its env (beats the
                                   * config's remote_write.url); NULL: unset */
    const char *mapping_path;     /* borrowed; NULL: no mapping file (read again at SIGHUP) */
    const char *web_config;       /* borrowed; the TLS and basic auth file (exporter-toolkit
                                   * format), read again on every SIGHUP; NULL: none */
} am_server_opts_t;

#define AM_SERVER_MAX_WORKERS     64
#define AM_SERVER_MAX_CONNECTIONS 1000000

enum {
    /* am_server_run: the config file or the mapping file could not be
     * loaded, or the remote write settings could not be applied (logged
     * with the error); nothing was opened. */
    AM_SERVER_BAD_CONFIG = 1,
    /* am_server_run: the state file could not be read or was refused
     * (logged, naming the file); nothing was opened. */
    AM_SERVER_BAD_STATE = 2,
    /* am_server_run: the web config (or a certificate or key it names) could
     * not be loaded (logged, naming the file); nothing was opened. */
    AM_SERVER_BAD_WEB_CONFIG = 3,
};

/* Runs until SIGTERM/SIGINT (opts borrowed until it returns). Returns:
 *   0                     after a clean stop
 *   AM_SERVER_BAD_CONFIG  an unusable config file
 *   AM_SERVER_BAD_STATE   an unreadable or refused state file
 *   AM_SERVER_BAD_WEB_CONFIG  an unusable web config, certificate or key
 *   a negative errno      a socket could not be opened (bind, listen: libuv
 *                         and our own syscalls' codes, logged), or the
 *                         daemon could not start (-ENOMEM, a loop, thread
 *                         or mutex error)
 * cli.c alone turns these into exit codes. */
int am_server_run(const am_server_opts_t *opts) __attribute__((warn_unused_result));
