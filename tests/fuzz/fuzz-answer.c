/* Fuzz harness: one input is one raw HTTP answer as `alice health` and
 * `alice top` read it from the network (src/cli/fetch.c): status line,
 * headers, a body by Content-Length, chunked or up to the close. The last
 * byte of the input says whether the connection ended after it.
 *
 * Checks: a parsed answer's body lies within what was read and is
 * NUL-terminated; nothing reads past the input (the sanitizers watch). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fetch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    bool complete = data[size - 1] & 1;
    size--;
    char *buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    am_fetch_result_t res;
    char err[256];
    if (am_fetch_parse_answer(buf, size, complete, &res, err, sizeof(err)) == 0) {
        if (res.len > size || res.body[res.len] != '\0' || res.status < 100)
            abort();
        free(res.body);
    } else if (err[0] == '\0') {
        abort(); /* every refusal says why */
    }
    free(buf);
    return 0;
}
