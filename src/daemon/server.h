/* server: the metrics-server daemon. Owns the loop, the signals, the
 * registry and the wiring between ingest, parse/registry and http.
 *
 * One worker (the default): everything on one loop, no threads, no locks.
 * N workers: N ingest threads, each with its own loop, SO_REUSEPORT UDP
 * socket and registry; the main loop keeps HTTP and signals and merges the
 * workers' registries at scrape time (see README "Multi-core"). */
#pragma once

#include <stdbool.h>

typedef struct am_server_opts {
    const char *http_host;
    int http_port;
    const char *statsd_host;
    int statsd_port;          /* 0: UDP off */
    const char *unix_path;    /* NULL: off */
    const char *config_path;  /* NULL: none */
    int receive_buffer_bytes; /* 0: kernel default */
    bool log_level_fixed;     /* from flag/env: the config must not change it on reload */
    int workers;              /* ingest loops, 1..AM_SERVER_MAX_WORKERS; 0 counts as 1 */
} am_server_opts_t;

#define AM_SERVER_MAX_WORKERS 64

/* Runs until SIGTERM/SIGINT. Returns the process exit code: 0 after a clean
 * stop, 1 when a socket cannot be bound, 2 for an unusable config. */
int am_server_run(const am_server_opts_t *opts);
