/* query: the subcommands that ask a running daemon over HTTP.
 *
 *   alice health [--url URL] [TLS and auth flags]
 *       GET /health: exit 0 on a 200, 1 otherwise (message on stderr)
 *   alice top [--url URL] [--interval S] [TLS and auth flags]
 *       GET /api/v1/families as a table: redrawn every S seconds while
 *       stdout is a terminal (until SIGINT/SIGTERM, exit 0), printed once
 *       otherwise; exit 1 with the URL and the error when the daemon does
 *       not answer.
 *
 * Like `alice emit`, each is a whole command: cli.c hands it argv (the
 * subcommand's, argv[0] its name, borrowed) and returns its exit code:
 * 0, 1 (no answer, or not the answer wanted) or 2 (usage).
 *
 * Who calls: src/daemon/cli.c, once, on the main thread. */
#pragma once

#include <stddef.h>

int am_query_health_main(int argc, char **argv);
int am_query_top_main(int argc, char **argv);

/* The default base URL (for tests too): http://HOST:PORT from
 * ALICE_METRICS_HOST and ALICE_METRICS_PORT when set (a wildcard listen
 * address becomes loopback), else http://127.0.0.1:9090. Writes out (cap
 * bytes). */
void am_query_default_url(char *out, size_t cap);
