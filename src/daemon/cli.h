/* cli: the `alice` command line: subcommand table, flags, environment.
 * The one module that speaks in exit codes: it maps what the modules
 * below it return (0, -errno, documented positives) to 0 / 1 / 2.
 *
 * Who calls: main.c, once, on the main thread. */
#pragma once

/* Runs the command in argv (borrowed: argv and the environment outlive
 * the call, so options may point into them). Returns the process exit
 * code. */
int am_cli_main(int argc, char **argv);
