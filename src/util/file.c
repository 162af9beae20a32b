#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* max as a short size for messages: "16 GiB", "16 MiB", "4 KiB", "100 bytes". */
static void size_text(char *out, size_t n, size_t max)
{
    if (max >= (1u << 30) && max % (1u << 30) == 0)
        snprintf(out, n, "%zu GiB", max >> 30);
    else if (max >= (1u << 20) && max % (1u << 20) == 0)
        snprintf(out, n, "%zu MiB", max >> 20);
    else if (max >= 1024 && max % 1024 == 0)
        snprintf(out, n, "%zu KiB", max >> 10);
    else
        snprintf(out, n, "%zu bytes", max);
}

int am_file_read(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    /* O_NONBLOCK: opening a FIFO for reading returns at once instead of
     * waiting for a writer; on a regular file it changes nothing. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(e));
        close(fd);
        return -e;
    }
    if (!S_ISREG(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        snprintf(err, errlen, "%s: %s", path,
                 e == EISDIR ? "is a directory, not a regular file"
                             : "not a regular file (a FIFO, socket or device is never read)");
        close(fd);
        return -e;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > max) {
        char limit[32];
        size_text(limit, sizeof(limit), max);
        snprintf(err, errlen, "%s: larger than %s", path, limit);
        close(fd);
        return -EFBIG;
    }
    size_t size = (size_t)st.st_size;
    char *buf = malloc(size + 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory", path);
        close(fd);
        return -ENOMEM;
    }
    /* Up to the size fstat saw: a file that grows meanwhile is read as it
     * was, one that shrinks ends early. */
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            snprintf(err, errlen, "%s: read error: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    *len = got;
    return 0;
}
