/* addr: the metrics target, shared by alice-emit and libalice.
 *
 * am_addr_parse() reads the forms of ALICE_METRICS_ADDR; am_dgram_*() own
 * one datagram socket to the parsed target (UDP or a Unix datagram socket),
 * resolve it once and reconnect when the daemon comes and goes. Neither
 * prints nor aborts: both link into the client library. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define AM_ADDR_DEFAULT "udp://127.0.0.1:8125"
#define AM_ADDR_DEFAULT_PORT 8125
#define AM_ADDR_HOST_MAX 255      /* bytes of a host name or literal, no brackets */
#define AM_ADDR_PATH_MAX 107      /* sizeof(sun_path) - 1 */
#define AM_ADDR_MAX_RESOLVED 8    /* getaddrinfo results kept */
#define AM_ADDR_UDP_MAX 65507     /* largest UDP payload over IPv4 */
#define AM_ADDR_UNIX_MAX 65536    /* largest datagram the daemon reads from its socket */
#define AM_DGRAM_UNIX_SNDBUF (1 << 20) /* bytes in flight to a busy daemon (Unix socket) */

typedef enum am_addr_kind {
    AM_ADDR_UDP,
    AM_ADDR_UNIX,
} am_addr_kind_t;

typedef struct am_addr {
    am_addr_kind_t kind;
    uint16_t port;                    /* UDP */
    char host[AM_ADDR_HOST_MAX + 1];  /* UDP: name or literal, IPv6 without brackets */
    char path[AM_ADDR_PATH_MAX + 1];  /* UNIX */
} am_addr_t;

/* Parses, into *out (caller-allocated):
 *   host:port, udp://host:port       IPv6 in brackets: [::1]:8125
 *   host, udp://host, [::1], ::1     port 8125 (a bare IPv6 literal takes no port)
 *   unix:///path/to.sock, /path      Unix datagram socket
 * spec is borrowed for the call. Returns 0, or -EINVAL (with *out
 * unspecified) for anything else: empty host, port outside 1..65535, another
 * scheme, a path longer than sun_path. */
int am_addr_parse(const char *spec, am_addr_t *out) __attribute__((warn_unused_result));

/* Writes the canonical form ("udp://[::1]:8125", "unix:///x.sock") to out,
 * NUL-terminated and truncated to cap. Returns the untruncated length. */
size_t am_addr_format(const am_addr_t *a, char *out, size_t cap);

/* The socket side: one socket, connected to the current address. */
typedef struct am_dgram {
    int fd;                /* -1 until the first connect */
    int family;            /* of fd */
    am_addr_kind_t kind;
    bool nonblock;         /* MSG_DONTWAIT sends (the library); else blocking with a timeout */
    bool connected;
    unsigned timeout_ms;   /* blocking sends give up after this (SO_SNDTIMEO) */
    size_t naddrs;
    size_t cur;            /* index of the address in use */
    struct sockaddr_storage addrs[AM_ADDR_MAX_RESOLVED];
    socklen_t lens[AM_ADDR_MAX_RESOLVED];
} am_dgram_t;

/* Resolves a (getaddrinfo for UDP; may block on DNS for a host name) and
 * prepares *d (caller-allocated). Connecting is lazy: a daemon that is not
 * there yet is no error here. a is borrowed for the call.
 * Returns 0; -EADDRNOTAVAIL when the host does not resolve; -ENOMEM. */
int am_dgram_open(am_dgram_t *d, const am_addr_t *a, bool nonblock, unsigned timeout_ms)
    __attribute__((warn_unused_result));

/* Sends one datagram (p borrowed for the call). Returns 0 when the kernel
 * took it, else the negative errno why it was not delivered: -EAGAIN (socket
 * buffer full), -ECONNREFUSED / -ENOENT (daemon absent), -EMSGSIZE, ...
 * A Unix socket whose daemon went away is reconnected and the send retried
 * once; a refused UDP send moves to the next resolved address. */
int am_dgram_send(am_dgram_t *d, const void *p, size_t n) __attribute__((warn_unused_result));

/* True for the errors that mean "no daemon listening there". */
bool am_dgram_absent(int err);

/* Closes the socket; *d may be opened again. */
void am_dgram_close(am_dgram_t *d);
