/* cli: the `alice` command line: subcommand table, flags, environment. */
#pragma once

/* Returns the process exit code. */
int am_cli_main(int argc, char **argv);
