/* file: reading a whole file the daemon was pointed at (the config, the
 * state file), on the loop's thread.
 *
 * A path may name anything: a FIFO, whose blocking open would wait for a
 * writer and hang the loop (a SIGHUP reload, /health with it); a device
 * such as /dev/zero, which never ends; a file far larger than any config.
 * So the file is opened with O_NONBLOCK (an open that cannot block), must
 * be a regular file (fstat), and is read only up to its size at the fstat,
 * which must not exceed the caller's bound. Cost: one open, one fstat and
 * reads of the file's size; nothing else is done to it.
 *
 * Who calls: config.c, statefile.c, mapping.c (the mapping file), yamldoc.c
 * (the web config), push.c (remote write's secret files). No state. */
#pragma once

#include <stddef.h>

/* Reads path (borrowed for the call) into *out: a buffer of *len + 1 bytes
 * with a NUL at out[*len], owned by the caller (free). Returns 0, or with
 * "PATH: what went wrong" in err (errlen bytes, the caller's):
 *   -EISDIR  path is a directory
 *   -EINVAL  path is not a regular file (a FIFO, a socket, a device)
 *   -EFBIG   the file is larger than max bytes
 *   -ENOMEM  out of memory
 *   -errno   of the open (-ENOENT, -EACCES, -ELOOP...) or of a read
 * On failure *out is NULL. */
int am_file_read(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
    __attribute__((warn_unused_result));
