/* loadgen: a StatsD / DogStatsD load generator for benchmarks.
 *
 * Every datagram of one cycle is rendered once at start-up into one buffer;
 * the send loop only points sendmmsg at slices of it, so the generator costs
 * a few hundred nanoseconds of its own per datagram and the receiver is what
 * gets measured.
 *
 * Series: --series S distinct series, spread over the types of --mix (series
 * i gets the type of slot i % W of a W-slot table built from the weights),
 * then over --families F families per type. Line k of the stream is a line of
 * series k % S, so every series gets the same number of lines (+-1).
 *
 *   dogstatsd: bench.c.f0:1|c|#provider:p17,model:m3,status:ok
 *              ^name      ^v ^t ^tags, as users send them (not sorted)
 *   plain:     bench.c.f0.s417:1|c
 *
 * Counters send 1, so totals are exact. Gauges send a fixed value per series,
 * timers/histograms a fixed observation per series, sets a fixed member: the
 * expected exposition is exact too.
 *
 * --expect FILE writes, after the run, what a scrape must show for every
 * series that was sent at least once, in exposition form:
 *   bench_c_f0_total{model="m3",provider="p17",status="ok"} 1234
 * It is computed from the datagrams that sendmmsg reported sent (a per-cycle-
 * datagram count, so the loop does not count lines), so counted == sent can
 * be checked per series even when sends failed.
 *
 * Sends are blocking by default: on a Unix socket the sender then waits for
 * the receiver (lossless), on UDP loopback the kernel drops what the
 * receiver's buffer cannot hold (RcvbufErrors) and the sender never waits.
 * --nonblock counts EAGAIN instead of waiting and skips that datagram. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_BATCH 1024
#define MAX_SOCKETS 64
#define MAX_DGRAM 65000 /* UDP payload limit on loopback, with headroom */

enum { T_C, T_G, T_MS, T_H, T_S, T_COUNT };
static const char *const type_code[T_COUNT] = {"c", "g", "ms", "h", "s"};

typedef struct opts {
    const char *udp;
    const char *unix_path;
    long lines_per_dgram;
    long series;
    long families;
    int weight[T_COUNT];
    bool plain;
    double rate; /* lines per second, 0 = as fast as possible */
    double duration;
    uint64_t total; /* 0 = no limit */
    const char *expect;
    const char *prefix;
    bool nonblock;
    int nsockets;
    int batch;
    int sndbuf;
    long dump;
} opts_t;

typedef struct series_info {
    uint8_t type;
    uint32_t family;
    uint32_t j; /* index within its family */
} series_info_t;

typedef struct gen {
    const opts_t *o;
    series_info_t *series;
    char *buf;        /* every datagram of one cycle, back to back */
    size_t *off;      /* ndgrams + 1 offsets into buf */
    size_t ndgrams;   /* datagrams per cycle */
    uint64_t *sent;   /* per cycle datagram: times sent whole */
    size_t partial_dgram; /* last datagram of a --total run, sent cut */
    size_t partial_lines; /* lines of it that were sent (0 = none) */
} gen_t;

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen (--udp HOST:PORT | --unix PATH) [options]\n"
            "  --lines-per-datagram N  lines joined by '\\n' in one datagram [20]\n"
            "  --series N              distinct series (label sets) [1000]\n"
            "  --families N            families per type; series are spread over them [1]\n"
            "  --mix SPEC              type weights: c=100 or c=70,g=10,ms=10,h=5,s=5 [c=100]\n"
            "  --tags dogstatsd|plain  |#provider:..,model:..,status:ok tags, or one dotted\n"
            "                          name per series [dogstatsd]\n"
            "  --rate LINES_PER_SEC    paced (token bucket, sendmmsg batches); 0 = flat out [0]\n"
            "  --duration SECONDS      stop after this long [10 unless --total]\n"
            "  --total LINES           stop after this many lines (the last datagram is cut)\n"
            "  --expect FILE           write the expected exposition per series after the run\n"
            "  --prefix NAME           metric name prefix [bench]\n"
            "  --nonblock              non-blocking sends: count EAGAIN and skip the datagram\n"
            "  --sockets N             send from N sockets in turn (spreads SO_REUSEPORT) [1]\n"
            "  --batch N               datagrams per sendmmsg, at most %d [64]\n"
            "  --sndbuf BYTES          SO_SNDBUF of the sending sockets\n"
            "  --dump N                print the first N datagrams of the cycle and exit\n"
            "Prints one logfmt summary line on stdout; SIGTERM/SIGINT stop early.\n",
            MAX_BATCH);
}

static double now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

static bool parse_mix(const char *spec, int weight[T_COUNT])
{
    memset(weight, 0, sizeof(int) * T_COUNT);
    char tmp[256];
    if (strlen(spec) >= sizeof(tmp))
        return false;
    strcpy(tmp, spec);
    int sum = 0;
    for (char *save = NULL, *tok = strtok_r(tmp, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return false;
        *eq = '\0';
        int t = 0;
        while (t < T_COUNT && strcmp(type_code[t], tok) != 0)
            t++;
        long w;
        if (t == T_COUNT || !parse_long(eq + 1, 0, 1000, &w))
            return false;
        weight[t] = (int)w;
        sum += (int)w;
    }
    return sum > 0;
}

/* ---- series and datagrams ---- */

static int assign_series(gen_t *g)
{
    const opts_t *o = g->o;
    /* Smooth weighted round robin: c=70,g=10,... interleaves the types, so
     * even a few series get every type of the mix. */
    int table[T_COUNT * 1000];
    int w = 0, sum = 0, cur[T_COUNT] = {0};
    for (int t = 0; t < T_COUNT; t++)
        sum += o->weight[t];
    for (; w < sum; w++) {
        int best = -1;
        for (int t = 0; t < T_COUNT; t++) {
            cur[t] += o->weight[t];
            if (o->weight[t] && (best < 0 || cur[t] > cur[best]))
                best = t;
        }
        cur[best] -= sum;
        table[w] = best;
    }
    g->series = calloc((size_t)o->series, sizeof(*g->series));
    if (!g->series)
        return -ENOMEM;
    uint64_t rank[T_COUNT] = {0};
    for (long i = 0; i < o->series; i++) {
        int t = table[i % w];
        uint64_t r = rank[t]++;
        g->series[i].type = (uint8_t)t;
        g->series[i].family = (uint32_t)(r % (uint64_t)o->families);
        g->series[i].j = (uint32_t)(r / (uint64_t)o->families);
    }
    return 0;
}

/* Fixed per-series values, so the expected exposition is exact. */
static long gauge_value(uint32_t j)
{
    return (long)(j % 100);
}

static long observation(const series_info_t *s)
{
    return s->type == T_MS ? (long)(s->j % 50) + 1 : (long)(s->j % 10);
}

/* Writes one line (no '\n') into out; returns its length. */
static size_t render_line(const gen_t *g, const series_info_t *s, char *out, size_t cap)
{
    const opts_t *o = g->o;
    char value[32];
    switch (s->type) {
        case T_C:
            strcpy(value, "1");
            break;
        case T_G:
            snprintf(value, sizeof(value), "%ld", gauge_value(s->j));
            break;
        case T_S:
            snprintf(value, sizeof(value), "u%u", s->j % 16);
            break;
        default:
            snprintf(value, sizeof(value), "%ld", observation(s));
            break;
    }
    int n;
    if (o->plain)
        n = snprintf(out, cap, "%s.%s.f%u.s%u:%s|%s", o->prefix, type_code[s->type], s->family,
                     s->j, value, type_code[s->type]);
    else
        n = snprintf(out, cap, "%s.%s.f%u:%s|%s|#provider:p%u,model:m%u,status:ok", o->prefix,
                     type_code[s->type], s->family, value, type_code[s->type], s->j % 20,
                     s->j / 20);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static int build_cycle(gen_t *g)
{
    const opts_t *o = g->o;
    uint64_t s = (uint64_t)o->series, d = (uint64_t)o->lines_per_dgram;
    /* The smallest whole number of datagrams that holds every series the
     * same number of times: lcm(S, D) lines. */
    g->ndgrams = (size_t)(s / gcd_u64(s, d));
    uint64_t nlines = (uint64_t)g->ndgrams * d;
    size_t cap = (size_t)nlines * 96 + 64;
    g->buf = malloc(cap);
    g->off = malloc((g->ndgrams + 1) * sizeof(*g->off));
    g->sent = calloc(g->ndgrams, sizeof(*g->sent));
    if (!g->buf || !g->off || !g->sent)
        return -ENOMEM;
    size_t len = 0;
    uint64_t k = 0;
    for (size_t p = 0; p < g->ndgrams; p++) {
        g->off[p] = len;
        for (uint64_t l = 0; l < d; l++, k++) {
            if (l > 0)
                g->buf[len++] = '\n';
            if (cap - len < 512) {
                cap *= 2;
                char *nb = realloc(g->buf, cap);
                if (!nb)
                    return -ENOMEM;
                g->buf = nb;
            }
            size_t n = render_line(g, &g->series[k % s], g->buf + len, cap - len);
            if (n == 0)
                return -EOVERFLOW;
            len += n;
        }
        if (len - g->off[p] > MAX_DGRAM) {
            fprintf(stderr, "loadgen: a datagram of %zu bytes is too large: fewer lines per "
                            "datagram\n",
                    len - g->off[p]);
            return -EMSGSIZE;
        }
    }
    g->off[g->ndgrams] = len;
    return 0;
}

/* Bytes of label values per series (the registry's key, '\0'-joined) and of
 * the rendered label pairs `model="m3",provider="p17",status="ok"`. */
static void label_bytes(const gen_t *g, uint64_t *values, uint64_t *text)
{
    *values = *text = 0;
    if (g->o->plain)
        return;
    for (long i = 0; i < g->o->series; i++) {
        const series_info_t *s = &g->series[i];
        char a[32], b[32];
        int na = snprintf(a, sizeof(a), "p%u", s->j % 20);
        int nb = snprintf(b, sizeof(b), "m%u", s->j / 20);
        *values += (uint64_t)(na + nb + 2 + 2); /* "ok", two separators */
        *text += (uint64_t)(na + nb + 2) + strlen("model=\"\",provider=\"\",status=\"\"");
    }
}

/* ---- expectations ---- */

static int write_expect(const gen_t *g, const char *path)
{
    const opts_t *o = g->o;
    uint64_t s = (uint64_t)o->series, d = (uint64_t)o->lines_per_dgram;
    uint64_t *n = calloc((size_t)s, sizeof(*n));
    if (!n)
        return -ENOMEM;
    for (size_t p = 0; p < g->ndgrams; p++) {
        bool cut = g->partial_lines && p == g->partial_dgram;
        if (!g->sent[p] && !cut)
            continue;
        for (uint64_t l = 0; l < d; l++)
            n[((uint64_t)p * d + l) % s] += g->sent[p] + (cut && l < g->partial_lines ? 1 : 0);
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        free(n);
        return -errno;
    }
    char name[256], labels[256];
    for (uint64_t i = 0; i < s; i++) {
        if (!n[i])
            continue;
        const series_info_t *se = &g->series[i];
        if (o->plain) {
            snprintf(name, sizeof(name), "%s_%s_f%u_s%u", o->prefix, type_code[se->type],
                     se->family, se->j);
            labels[0] = '\0';
        } else {
            snprintf(name, sizeof(name), "%s_%s_f%u", o->prefix, type_code[se->type], se->family);
            snprintf(labels, sizeof(labels), "{model=\"m%u\",provider=\"p%u\",status=\"ok\"}",
                     se->j / 20, se->j % 20);
        }
        for (char *c = name; *c; c++)
            if (*c == '.' || *c == '-')
                *c = '_';
        switch (se->type) {
            case T_C:
                fprintf(f, "%s_total%s %llu\n", name, labels, (unsigned long long)n[i]);
                break;
            case T_G:
                fprintf(f, "%s%s %ld\n", name, labels, gauge_value(se->j));
                break;
            case T_S:
                fprintf(f, "%s%s 1\n", name, labels);
                break;
            default: {
                double x = (double)observation(se);
                if (se->type == T_MS)
                    x /= 1000.0;
                fprintf(f, "%s_count%s %llu\n", name, labels, (unsigned long long)n[i]);
                fprintf(f, "%s_sum%s %.17g\n", name, labels, x * (double)n[i]);
                break;
            }
        }
    }
    free(n);
    if (fclose(f) != 0)
        return -errno;
    return 0;
}

/* ---- sockets ---- */

static int open_socket(const opts_t *o)
{
    int fd;
    int flags = SOCK_DGRAM | SOCK_CLOEXEC | (o->nonblock ? SOCK_NONBLOCK : 0);
    if (o->unix_path) {
        struct sockaddr_un sa;
        memset(&sa, 0, sizeof(sa));
        if (strlen(o->unix_path) >= sizeof(sa.sun_path))
            return -ENAMETOOLONG;
        sa.sun_family = AF_UNIX;
        memcpy(sa.sun_path, o->unix_path, strlen(o->unix_path));
        fd = socket(AF_UNIX, flags, 0);
        if (fd < 0)
            return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            int e = -errno;
            close(fd);
            return e;
        }
    } else {
        const char *colon = strrchr(o->udp, ':');
        if (!colon)
            return -EINVAL;
        char host[256];
        const char *h = o->udp;
        size_t hn = (size_t)(colon - o->udp);
        if (hn >= 2 && h[0] == '[' && h[hn - 1] == ']') {
            h++;
            hn -= 2;
        }
        if (hn == 0 || hn >= sizeof(host))
            return -EINVAL;
        memcpy(host, h, hn);
        host[hn] = '\0';
        struct addrinfo hints, *ai = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_DGRAM;
        hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
        if (getaddrinfo(host, colon + 1, &hints, &ai) != 0)
            return -EINVAL;
        fd = socket(ai->ai_family, flags, 0);
        if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            int e = -errno;
            if (fd >= 0)
                close(fd);
            freeaddrinfo(ai);
            return e;
        }
        freeaddrinfo(ai);
    }
    if (o->sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &o->sndbuf, sizeof(int)) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &o->sndbuf, sizeof(int));
    if (!o->nonblock) {
        /* Blocking, but never forever: a receiver that stopped reading turns
         * into counted timeouts and the run still ends on time. */
        struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    return fd;
}

static void sleep_until(double t)
{
    struct timespec ts;
    double whole = floor(t);
    ts.tv_sec = (time_t)whole;
    ts.tv_nsec = (long)((t - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !stop_flag)
        ;
}

static void cpu_seconds(double *user, double *sys)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static int parse_args(int argc, char **argv, opts_t *o, bool *have_duration)
{
    memset(o, 0, sizeof(*o));
    o->lines_per_dgram = 20;
    o->series = 1000;
    o->families = 1;
    o->weight[T_C] = 100;
    o->prefix = "bench";
    o->nsockets = 1;
    o->batch = 64;
    o->duration = 10;
    *have_duration = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--nonblock") == 0) {
            o->nonblock = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "loadgen: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--udp") == 0) {
            o->udp = v;
        } else if (strcmp(a, "--unix") == 0) {
            o->unix_path = v;
        } else if (strcmp(a, "--lines-per-datagram") == 0 && parse_long(v, 1, 10000, &x)) {
            o->lines_per_dgram = x;
        } else if (strcmp(a, "--series") == 0 && parse_long(v, 1, 100000000, &x)) {
            o->series = x;
        } else if (strcmp(a, "--families") == 0 && parse_long(v, 1, 1000000, &x)) {
            o->families = x;
        } else if (strcmp(a, "--mix") == 0 && parse_mix(v, o->weight)) {
        } else if (strcmp(a, "--tags") == 0 &&
                   (strcmp(v, "dogstatsd") == 0 || strcmp(v, "plain") == 0)) {
            o->plain = strcmp(v, "plain") == 0;
        } else if (strcmp(a, "--rate") == 0) {
            char *end;
            o->rate = strtod(v, &end);
            if (*end || !(o->rate >= 0) || !isfinite(o->rate))
                goto bad;
        } else if (strcmp(a, "--duration") == 0) {
            char *end;
            o->duration = strtod(v, &end);
            if (*end || !(o->duration > 0) || !isfinite(o->duration))
                goto bad;
            *have_duration = true;
        } else if (strcmp(a, "--total") == 0 && parse_long(v, 1, LONG_MAX, &x)) {
            o->total = (uint64_t)x;
        } else if (strcmp(a, "--expect") == 0) {
            o->expect = v;
        } else if (strcmp(a, "--prefix") == 0 && v[0]) {
            o->prefix = v;
        } else if (strcmp(a, "--sockets") == 0 && parse_long(v, 1, MAX_SOCKETS, &x)) {
            o->nsockets = (int)x;
        } else if (strcmp(a, "--batch") == 0 && parse_long(v, 1, MAX_BATCH, &x)) {
            o->batch = (int)x;
        } else if (strcmp(a, "--sndbuf") == 0 && parse_long(v, 0, INT_MAX, &x)) {
            o->sndbuf = (int)x;
        } else if (strcmp(a, "--dump") == 0 && parse_long(v, 1, LONG_MAX, &x)) {
            o->dump = x;
        } else {
            goto bad;
        }
        continue;
    bad:
        fprintf(stderr, "loadgen: bad %s '%s'\n", a, v);
        return -1;
    }
    if (o->dump)
        return 0;
    if (!o->udp == !o->unix_path) {
        fprintf(stderr, "loadgen: give exactly one of --udp HOST:PORT and --unix PATH\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    opts_t o;
    bool have_duration;
    if (parse_args(argc, argv, &o, &have_duration) != 0) {
        usage(stderr);
        return 2;
    }
    if (o.total && !have_duration)
        o.duration = INFINITY;

    gen_t g;
    memset(&g, 0, sizeof(g));
    g.o = &o;
    int rc = assign_series(&g);
    if (rc == 0)
        rc = build_cycle(&g);
    if (rc != 0) {
        fprintf(stderr, "loadgen: cannot build the datagrams: %s\n", strerror(-rc));
        return 1;
    }
    if (o.dump) {
        for (size_t p = 0; p < g.ndgrams && p < (size_t)o.dump; p++)
            printf("%.*s\n--\n", (int)(g.off[p + 1] - g.off[p]), g.buf + g.off[p]);
        return 0;
    }

    int fds[MAX_SOCKETS];
    for (int k = 0; k < o.nsockets; k++) {
        fds[k] = open_socket(&o);
        if (fds[k] < 0) {
            fprintf(stderr, "loadgen: cannot connect to %s: %s\n", o.udp ? o.udp : o.unix_path,
                    strerror(-fds[k]));
            return 1;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    static struct mmsghdr msgs[MAX_BATCH];
    static struct iovec iov[MAX_BATCH];
    for (int i = 0; i < MAX_BATCH; i++) {
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }

    const uint64_t d = (uint64_t)o.lines_per_dgram;
    uint64_t lines = 0, dgrams = 0, attempted_lines = 0;
    uint64_t eagain = 0, timeouts = 0, refused = 0, nobufs = 0, other = 0, calls = 0;
    size_t cur = 0;
    int sock = 0;
    double t0 = now_mono();
    double deadline = t0 + o.duration;
    double cu0, cs0;
    cpu_seconds(&cu0, &cs0);
    while (!stop_flag) {
        double now = now_mono();
        if (now >= deadline)
            break;
        if (o.total && attempted_lines >= o.total)
            break;
        uint64_t want = (uint64_t)o.batch;
        if (o.rate > 0) {
            /* Token bucket in lines; sends whole datagrams, at most a batch. */
            double due = o.rate * (now - t0) - (double)attempted_lines;
            if (due < (double)d) {
                double t = t0 + ((double)attempted_lines + (double)d) / o.rate;
                sleep_until(t < deadline ? t : deadline);
                continue;
            }
            uint64_t k = (uint64_t)(due / (double)d);
            if (k < want)
                want = k;
        }
        if (want > g.ndgrams - cur)
            want = g.ndgrams - cur;
        size_t cut_lines = 0;
        if (o.total) {
            uint64_t left = o.total - attempted_lines;
            if (want * d > left) {
                want = left / d;
                if (want == 0) {
                    want = 1;
                    cut_lines = (size_t)left;
                }
            }
        }
        for (uint64_t i = 0; i < want; i++) {
            size_t p = cur + i;
            iov[i].iov_base = g.buf + g.off[p];
            iov[i].iov_len = g.off[p + 1] - g.off[p];
        }
        if (cut_lines) {
            /* The first cut_lines lines of the datagram, without the '\n'. */
            const char *b = g.buf + g.off[cur], *e = b;
            for (size_t l = 0; l < cut_lines; l++) {
                const char *nl = memchr(e, '\n', (size_t)(g.buf + g.off[cur + 1] - e));
                e = nl ? nl + 1 : g.buf + g.off[cur + 1];
            }
            if (e > b && e[-1] == '\n')
                e--;
            iov[0].iov_len = (size_t)(e - b);
        }
        calls++;
        int n = sendmmsg(fds[sock], msgs, (unsigned)want, 0);
        sock = (sock + 1) % o.nsockets;
        if (n < 0) {
            int e = errno;
            if (e == EINTR)
                continue;
            if (e == EAGAIN || e == EWOULDBLOCK) {
                if (!o.nonblock) {
                    timeouts++; /* SO_SNDTIMEO: try the same datagram again */
                    continue;
                }
                eagain++;
            } else if (e == ECONNREFUSED) {
                refused++;
            } else if (e == ENOBUFS) {
                nobufs++;
            } else {
                other++;
            }
            /* Skip the datagram that failed; the expectations know. */
            n = 0;
            attempted_lines += cut_lines ? cut_lines : d;
            cur = (cur + 1) % g.ndgrams;
            continue;
        }
        for (int i = 0; i < n; i++) {
            if (cut_lines) {
                g.partial_dgram = cur;
                g.partial_lines = cut_lines;
                lines += cut_lines;
            } else {
                g.sent[cur + (size_t)i]++;
                lines += d;
            }
            dgrams++;
        }
        attempted_lines += cut_lines ? cut_lines : (uint64_t)n * d;
        cur = (cur + (size_t)n) % g.ndgrams;
    }
    double elapsed = now_mono() - t0;
    double cu1, cs1;
    cpu_seconds(&cu1, &cs1);
    for (int k = 0; k < o.nsockets; k++)
        close(fds[k]);

    uint64_t lv, lt;
    label_bytes(&g, &lv, &lt);
    printf("lines_sent=%llu datagrams_sent=%llu send_errors=%llu eagain=%llu timeouts=%llu "
           "refused=%llu nobufs=%llu other_errors=%llu sendmmsg_calls=%llu elapsed=%.3f "
           "lines_per_second=%.0f cpu=%.3f series=%ld cycle_datagrams=%zu "
           "label_value_bytes=%llu label_text_bytes=%llu\n",
           (unsigned long long)lines, (unsigned long long)dgrams,
           (unsigned long long)(eagain + refused + nobufs + other), (unsigned long long)eagain,
           (unsigned long long)timeouts, (unsigned long long)refused, (unsigned long long)nobufs,
           (unsigned long long)other, (unsigned long long)calls, elapsed,
           elapsed > 0 ? (double)lines / elapsed : 0.0, (cu1 - cu0) + (cs1 - cs0), o.series,
           g.ndgrams, (unsigned long long)lv, (unsigned long long)lt);
    fflush(stdout);
    if (o.expect) {
        rc = write_expect(&g, o.expect);
        if (rc != 0) {
            fprintf(stderr, "loadgen: cannot write %s: %s\n", o.expect, strerror(-rc));
            return 1;
        }
    }
    free(g.series);
    free(g.buf);
    free(g.off);
    free(g.sent);
    return 0;
}
