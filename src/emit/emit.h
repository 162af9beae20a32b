/* emit: alice-emit, the command-line emitter (also `alice emit ...`).
 *
 * am_emit_main() is the whole program. The pieces below it are exposed for
 * the unit tests: argument parsing and line building never send anything,
 * and every line they build has passed the daemon's parser (src/wire/parse.c)
 * through src/client/line.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "addr.h"
#include "alice/metrics.h"
#include "buf.h"
#include "parse.h"

#define AM_EMIT_EXIT_OK 0
#define AM_EMIT_EXIT_SEND 1  /* --strict and the datagram was not delivered */
#define AM_EMIT_EXIT_USAGE 2 /* bad arguments, or a line the daemon would reject */

/* Datagram sizes of the stdin mode (and of the library's defaults). */
#define AM_EMIT_UDP_DATAGRAM 8192
#define AM_EMIT_UNIX_DATAGRAM 32768

typedef enum am_emit_mode {
    AM_EMIT_METRIC,  /* TYPE NAME [VALUE] [key=value ...] */
    AM_EMIT_TIME,    /* time NAME [key=value ...] [--count COUNTER] -- COMMAND ... */
    AM_EMIT_STDIN,   /* - */
    AM_EMIT_HELP,
    AM_EMIT_VERSION,
} am_emit_mode_t;

typedef struct am_emit_cmd {
    am_emit_mode_t mode;
    am_addr_t addr;
    bool strict;
    bool set;          /* --set: a gauge VALUE is a plain set even with a sign */
    const char *type;  /* StatsD code ("c", "ms", ...): static string */
    const char *name;  /* borrowed from argv */
    const char *value; /* borrowed from argv, or the static "1" of a counter */
    const char *count; /* time --count COUNTER: borrowed from argv, or NULL */
    size_t nlabels;
    /* label keys point into key_buf (copied: argv holds "key=value"),
     * values into argv (borrowed). One spare slot for time's status. */
    alice_label labels[AM_MAX_TAGS + 1];
    char key_buf[AM_MAX_TAGS][AM_MAX_LABEL_NAME_LEN + 1];
    char *const *command; /* time: COMMAND and its ARGS, NULL-terminated, borrowed from argv */
} am_emit_cmd_t;

/* Parses argv (argv[0] is the program name; argv[argc] is NULL) into *cmd
 * (caller-allocated; borrows argv for its lifetime). env_addr is the value
 * of ALICE_METRICS_ADDR (borrowed; NULL or "" when unset). Returns 0, or
 * AM_EMIT_EXIT_USAGE with a one-line message appended to err. */
int am_emit_parse(int argc, char **argv, const char *env_addr, am_emit_cmd_t *cmd, am_buf_t *err)
    __attribute__((warn_unused_result));

/* Appends to out the datagram that cmd sends: for AM_EMIT_METRIC its line
 * (two for a negative gauge --set), for AM_EMIT_TIME the histogram line
 * with `seconds` and, with --count, the counter line with status=success
 * (when success) or status=error. Each line is checked by the daemon's
 * parser. Returns 0, or AM_EMIT_EXIT_USAGE with a message appended to err. */
int am_emit_build(const am_emit_cmd_t *cmd, double seconds, bool success, am_buf_t *out,
                  am_buf_t *err) __attribute__((warn_unused_result));

/* The program: returns the exit status. argv[0] names it in messages
 * ("emit" when called as `alice emit`). */
int am_emit_main(int argc, char **argv);
