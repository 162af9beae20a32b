#include "emit.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "am_config.h"
#include "line.h"

static const char help_text[] =
    "usage:\n"
    "  alice-emit [options] TYPE NAME [VALUE] [key=value ...]\n"
    "  alice-emit [options] time NAME [key=value ...] [--count COUNTER] -- COMMAND [ARGS...]\n"
    "  alice-emit [options] -\n"
    "  alice-emit --help | --version\n"
    "(`alice emit ...` is the same command.)\n"
    "\n"
    "Sends StatsD lines to the alice-metrics daemon, fire and forget: a daemon that\n"
    "is not running is not an error. Every line is first checked with the daemon's\n"
    "own parser; one it would reject is refused here (exit 2) and nothing is sent.\n"
    "\n"
    "TYPE NAME [VALUE] [key=value ...]: one sample.\n"
    "  counter, c        VALUE optional (default 1), >= 0\n"
    "  gauge, g          VALUE required; a leading + or - makes it a delta, as on the\n"
    "                    wire (see --set)\n"
    "  histogram, h      VALUE required, observed as is (seconds for *_seconds)\n"
    "  distribution, d   same as histogram\n"
    "  timer, ms         VALUE required, in milliseconds (the daemon observes seconds)\n"
    "  set, s            VALUE required: a member; the gauge counts distinct members\n"
    "  NAME: [a-zA-Z0-9_.-]+ ('.' and '-' become '_'; counters get _total).\n"
    "  key=value: key of letters, digits, '_', '.' or '-' ('.' and '-' become '_';\n"
    "  no leading '__'), value UTF-8 without ',', '|', CR or LF; at most 32 labels.\n"
    "\n"
    "time NAME [key=value ...] [--count COUNTER] -- COMMAND [ARGS...]\n"
    "  Runs COMMAND, observes its wall time in seconds into histogram NAME with the\n"
    "  labels and, with --count, increments COUNTER with the same labels plus\n"
    "  status=success (exit status 0) or status=error. Exits with COMMAND's status\n"
    "  (128+N when killed by signal N; 127 when it cannot be run). SIGINT, SIGTERM,\n"
    "  SIGHUP and SIGQUIT sent to alice-emit are passed on to COMMAND (a terminal's\n"
    "  ^C already reaches both). Arguments are checked before COMMAND runs.\n"
    "\n"
    "- : StatsD lines (name:value|type[|@rate][|#k:v,...]) from stdin, for bulk\n"
    "  emission. Each line is checked with the daemon's parser; a bad one is\n"
    "  reported on stderr with its line number and skipped, the good ones are still\n"
    "  sent, packed into datagrams of up to 8192 bytes (UDP) or 32768 bytes (Unix\n"
    "  socket) and sent as input arrives. Exit status 2 at the end if any line was\n"
    "  refused.\n"
    "\n"
    "options (anywhere before TYPE, or before -- with time):\n"
    "  --host H         daemon host name or address (IPv6 with or without brackets)\n"
    "  --port N         daemon UDP port\n"
    "  --unix PATH      send to the daemon's Unix datagram socket instead of UDP\n"
    "  --strict         exit 1 when a datagram is not delivered (daemon absent, ...)\n"
    "  --set            gauge: VALUE is a plain set even when negative (sends\n"
    "                   name:0|g and name:-5|g in one datagram)\n"
    "  --count COUNTER  time: also increment COUNTER with status=success|error\n"
    "  -h, --help       this text\n"
    "  --version        print the version\n"
    "\n"
    "target: --unix PATH, or --host/--port (missing parts from ALICE_METRICS_ADDR\n"
    "when it is UDP, else 127.0.0.1 and 8125), else ALICE_METRICS_ADDR\n"
    "(127.0.0.1:8125, udp://host:port, udp://[::1]:8125, unix:///path/to.sock),\n"
    "else udp://127.0.0.1:8125.\n"
    "\n"
    "exit status: 0 sent (or daemon absent); 1 with --strict, not delivered;\n"
    "2 usage error or a line the daemon would reject (nothing sent);\n"
    "time: COMMAND's status (1 with --strict when it was 0 but sending failed).\n"
    "\n"
    "examples:\n"
    "  alice-emit counter alice_jobs_total queue=default status=success\n"
    "  alice-emit c alice_events_published_total 3 event_type=asset_created\n"
    "  alice-emit gauge alice_db_connections_active 7\n"
    "  alice-emit gauge alice_db_connections_active -1      # delta: one fewer\n"
    "  alice-emit --set gauge alice_room_temperature_celsius -5\n"
    "  alice-emit histogram alice_asset_quality_score 0.82 media_type=image quality_type=brisque\n"
    "  alice-emit timer alice_db_query_duration_seconds 12.5 query_type=select\n"
    "  alice-emit set alice_active_users user42\n"
    "  alice-emit --unix /run/alice/metrics.sock counter alice_jobs_total\n"
    "  ALICE_METRICS_ADDR=udp://[::1]:8125 alice-emit --strict counter alice_jobs_total\n"
    "  alice-emit time alice_api_request_duration_seconds provider=openai model=gpt-4 \\\n"
    "      operation=text --count alice_api_requests_total -- ./call-api.sh --fast\n"
    "  printf 'alice_jobs:1|c|#queue:a\\nalice_job_seconds:2.5|h\\n' | alice-emit -\n";

static const struct {
    const char *name;
    const char *code;
} type_names[] = {
    {"counter", "c"},   {"c", "c"},   {"gauge", "g"},        {"g", "g"},
    {"histogram", "h"}, {"h", "h"},   {"distribution", "d"}, {"d", "d"},
    {"timer", "ms"},    {"ms", "ms"}, {"set", "s"},          {"s", "s"},
};

static const char *type_code(const char *name)
{
    for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
        if (strcmp(type_names[i].name, name) == 0)
            return type_names[i].code;
    return NULL;
}

__attribute__((format(printf, 2, 3))) static int usage(am_buf_t *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    am_buf_vprintf(err, fmt, ap);
    va_end(ap);
    return AM_EMIT_EXIT_USAGE;
}

static int add_label(am_emit_cmd_t *cmd, const char *arg, am_buf_t *err)
{
    const char *eq = strchr(arg, '=');
    if (!eq)
        return usage(err, "expected key=value, got '%s'", arg);
    size_t kn = (size_t)(eq - arg);
    if (kn == 0)
        return usage(err, "empty label key in '%s'", arg);
    if (cmd->nlabels == AM_MAX_TAGS)
        return usage(err, "too many labels at '%s' (at most 32)", arg);
    if (kn > AM_MAX_LABEL_NAME_LEN)
        return usage(err, "label key longer than 100 bytes in '%s'", arg);
    char *key = cmd->key_buf[cmd->nlabels];
    memcpy(key, arg, kn);
    key[kn] = '\0';
    cmd->labels[cmd->nlabels].key = key;
    cmd->labels[cmd->nlabels].value = eq + 1;
    cmd->nlabels++;
    return 0;
}

static bool needs_value(const char *code)
{
    return strcmp(code, "c") != 0;
}

/* The target: --unix, or --host/--port over the UDP parts of the
 * environment's address, or the environment's address, or the default. */
static int resolve_target(am_emit_cmd_t *cmd, const char *env_addr, const char *host,
                          const char *port, const char *unix_path, am_buf_t *err)
{
    if (unix_path) {
        if (host || port)
            return usage(err, "%s", "--unix excludes --host and --port");
        if (!*unix_path || strlen(unix_path) > AM_ADDR_PATH_MAX)
            return usage(err, "--unix: bad socket path '%s' (1 to 107 bytes)", unix_path);
        memset(&cmd->addr, 0, sizeof(cmd->addr));
        cmd->addr.kind = AM_ADDR_UNIX;
        memcpy(cmd->addr.path, unix_path, strlen(unix_path) + 1);
        return 0;
    }
    const char *spec = env_addr && *env_addr ? env_addr : AM_ADDR_DEFAULT;
    if (am_addr_parse(spec, &cmd->addr) != 0) {
        if (spec == env_addr && !host && !port)
            return usage(err,
                         "ALICE_METRICS_ADDR: malformed address '%s' (use host:port, "
                         "udp://host:port, [::1]:port or unix:///path)",
                         spec);
        /* --host/--port replace a broken environment value entirely. */
        int rc = am_addr_parse(AM_ADDR_DEFAULT, &cmd->addr);
        (void)rc;
    }
    if (!host && !port)
        return 0;
    if (cmd->addr.kind == AM_ADDR_UNIX) {
        int rc = am_addr_parse(AM_ADDR_DEFAULT, &cmd->addr);
        (void)rc;
    }
    if (port) {
        char spec_port[32];
        am_addr_t tmp;
        if (strlen(port) > 5 || snprintf(spec_port, sizeof(spec_port), "x:%s", port) < 0 ||
            am_addr_parse(spec_port, &tmp) != 0)
            return usage(err, "--port: expected 1..65535, got '%s'", port);
        cmd->addr.port = tmp.port;
    }
    if (host) {
        /* Accept [v6] and a bare v6 literal alike. */
        char spec_host[AM_ADDR_HOST_MAX + 16];
        am_addr_t tmp;
        size_t n = strlen(host);
        int len;
        if (host[0] == '[' || !strchr(host, ':'))
            len = snprintf(spec_host, sizeof(spec_host), "%s", host);
        else
            len = snprintf(spec_host, sizeof(spec_host), "[%s]", host);
        if (n == 0 || len < 0 || (size_t)len >= sizeof(spec_host) ||
            am_addr_parse(spec_host, &tmp) != 0 || tmp.kind != AM_ADDR_UDP ||
            tmp.port != AM_ADDR_DEFAULT_PORT)
            return usage(err, "--host: bad host '%s'", host);
        memcpy(cmd->addr.host, tmp.host, sizeof(tmp.host));
    }
    return 0;
}

int am_emit_parse(int argc, char **argv, const char *env_addr, am_emit_cmd_t *cmd, am_buf_t *err)
{
    memset(cmd, 0, sizeof(*cmd));
    const char *host = NULL, *port = NULL, *unix_path = NULL;
    bool have_type = false;
    bool have_value = false;
    bool have_dashdash = false;
    bool opts_done = false;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!opts_done && strcmp(a, "--") == 0) {
            if (have_type && cmd->mode == AM_EMIT_TIME) {
                cmd->command = &argv[i + 1];
                have_dashdash = true;
                break;
            }
            opts_done = true; /* the rest is positional, e.g. a NAME starting with "--" */
            continue;
        }
        if (!opts_done && a[0] == '-' && a[1] == '-') {
            const char *opt = a + 2;
            const char *eq = strchr(opt, '=');
            size_t on = eq ? (size_t)(eq - opt) : strlen(opt);
#define IS(s) (on == strlen(s) && strncmp(opt, s, on) == 0)
            if (IS("help")) {
                cmd->mode = AM_EMIT_HELP;
                return 0;
            }
            if (IS("version")) {
                cmd->mode = AM_EMIT_VERSION;
                return 0;
            }
            if (IS("strict") || IS("set")) {
                if (eq)
                    return usage(err, "option '%s' takes no value", a);
                if (IS("strict"))
                    cmd->strict = true;
                else
                    cmd->set = true;
                continue;
            }
            const char **slot = IS("host")    ? &host
                                : IS("port")  ? &port
                                : IS("unix")  ? &unix_path
                                : IS("count") ? &cmd->count
                                              : NULL;
#undef IS
            if (!slot)
                return usage(err, "unknown option '%s'", a);
            if (eq) {
                *slot = eq + 1;
            } else {
                if (i + 1 >= argc)
                    return usage(err, "option '%s' needs a value", a);
                *slot = argv[++i];
            }
            continue;
        }
        if (!have_type) {
            /* Before TYPE a single dash is "-h", stdin, or a mistake;
             * after it "-5" is a value. */
            if (!opts_done && strcmp(a, "-h") == 0) {
                cmd->mode = AM_EMIT_HELP;
                return 0;
            }
            have_type = true;
            if (strcmp(a, "-") == 0) {
                cmd->mode = AM_EMIT_STDIN;
            } else if (strcmp(a, "time") == 0) {
                cmd->mode = AM_EMIT_TIME;
                cmd->type = "h";
            } else if (a[0] == '-' && !opts_done) {
                return usage(err, "unknown option '%s'", a);
            } else {
                cmd->mode = AM_EMIT_METRIC;
                cmd->type = type_code(a);
                if (!cmd->type)
                    return usage(err,
                                 "unknown TYPE '%s' (counter gauge histogram timer set "
                                 "distribution, c g h ms s d, time, or - for stdin)",
                                 a);
            }
            continue;
        }
        if (cmd->mode == AM_EMIT_STDIN)
            return usage(err, "unexpected argument '%s' after '-' (lines come from stdin)", a);
        if (!cmd->name) {
            cmd->name = a;
            continue;
        }
        if (cmd->mode == AM_EMIT_METRIC && !have_value && strchr(a, '=') &&
            needs_value(cmd->type) && strcmp(cmd->type, "s") != 0)
            return usage(err, "missing VALUE for type %s before label '%s'", cmd->type, a);
        if (cmd->mode == AM_EMIT_METRIC && !have_value &&
            (needs_value(cmd->type) || !strchr(a, '='))) {
            cmd->value = a;
            have_value = true;
            continue;
        }
        int rc = add_label(cmd, a, err);
        if (rc)
            return rc;
    }

    if (!have_type)
        return usage(err, "%s", "missing TYPE (or time, or - for stdin)");
    if (cmd->mode != AM_EMIT_STDIN && !cmd->name)
        return usage(err, "missing NAME after %s", cmd->mode == AM_EMIT_TIME ? "time" : "TYPE");
    if (cmd->mode == AM_EMIT_METRIC && !have_value) {
        if (needs_value(cmd->type))
            return usage(err, "missing VALUE for type %s", cmd->type);
        cmd->value = "1";
    }
    if (cmd->set && !(cmd->mode == AM_EMIT_METRIC && strcmp(cmd->type, "g") == 0))
        return usage(err, "%s", "--set applies to gauges only");
    if (cmd->count && cmd->mode != AM_EMIT_TIME)
        return usage(err, "%s", "--count applies to time only");
    if (cmd->mode == AM_EMIT_TIME && (!have_dashdash || !cmd->command[0]))
        return usage(err, "%s", "time needs '-- COMMAND [ARGS...]'");
    return resolve_target(cmd, env_addr, host, port, unix_path, err);
}

/* Writes one line after the ones already in out, and runs the parser on it. */
static int add_line(am_buf_t *out, const am_line_t *l, am_buf_t *err)
{
    size_t sep = out->len ? 1 : 0;
    if (!am_buf_reserve(out, sep + AM_ADDR_UNIX_MAX + 1))
        return usage(err, "%s", "out of memory");
    char *dst = out->data + out->len + sep;
    size_t n;
    am_line_fault_t fault;
    int rc = am_line_write(l, dst, AM_ADDR_UNIX_MAX, &n, &fault);
    if (rc == -ENOSPC)
        return usage(err, "line for '%s' is longer than a datagram", l->name);
    if (rc > 0) {
        const char *what = "";
        switch (fault.part) {
            case AM_LINE_PART_NAME:
                what = l->name;
                break;
            case AM_LINE_PART_VALUE:
                what = l->value;
                break;
            case AM_LINE_PART_LABEL_KEY:
                what = fault.index < l->nlabels ? l->labels[fault.index].key : "(too many)";
                break;
            case AM_LINE_PART_LABEL_VALUE:
                what = l->labels[fault.index].value;
                break;
            case AM_LINE_PART_NONE:
                break;
        }
        am_buf_printf(err, "refused (%s): %s: '%s'", am_reason_label((am_reason_t)rc),
                      am_line_fault_message(fault.part), what ? what : "(null)");
        return AM_EMIT_EXIT_USAGE;
    }
    am_reason_t r = am_line_validate(dst, n, l->nlabels);
    if (r != AM_OK) {
        am_buf_printf(err, "refused, the daemon would reject '%.*s' (%s): %s", (int)n, dst,
                      am_reason_label(r), am_reason_message(r));
        return AM_EMIT_EXIT_USAGE;
    }
    if (sep)
        out->data[out->len] = '\n';
    out->len += sep + n;
    out->data[out->len] = '\0';
    return 0;
}

int am_emit_build(const am_emit_cmd_t *cmd, double seconds, bool success, am_buf_t *out,
                  am_buf_t *err)
{
    if (cmd->mode == AM_EMIT_TIME) {
        char num[AM_LINE_NUM_MAX];
        if (!am_line_double(seconds, num))
            return usage(err, "%s", "bad duration");
        am_line_t h = {cmd->name, num, "h", cmd->labels, cmd->nlabels};
        int rc = add_line(out, &h, err);
        if (rc || !cmd->count)
            return rc;
        alice_label labels[AM_MAX_TAGS + 1];
        memcpy(labels, cmd->labels, cmd->nlabels * sizeof(labels[0]));
        labels[cmd->nlabels].key = "status";
        labels[cmd->nlabels].value = success ? "success" : "error";
        am_line_t c = {cmd->count, "1", "c", labels, cmd->nlabels + 1};
        return add_line(out, &c, err);
    }
    if (cmd->mode != AM_EMIT_METRIC)
        return usage(err, "%s", "nothing to build");
    const char *value = cmd->value;
    if (cmd->set && value[0] == '+')
        value++;
    if (cmd->set && value[0] == '-') {
        double v;
        if (!am_parse_number(value, strlen(value), &v))
            return usage(err, "refused (bad_value): value is not a finite decimal number: '%s'",
                         cmd->value);
        if (v != 0) {
            /* A gauge cannot be set negative on the StatsD wire: set 0, then
             * add the negative value, in one datagram. */
            am_line_t zero = {cmd->name, "0", "g", cmd->labels, cmd->nlabels};
            int rc = add_line(out, &zero, err);
            if (rc)
                return rc;
        } else {
            value = "0";
        }
    }
    am_line_t l = {cmd->name, value, cmd->type, cmd->labels, cmd->nlabels};
    return add_line(out, &l, err);
}

/* ---- sending ---- */

static const char *prog_name(const char *argv0)
{
    if (!argv0 || !*argv0)
        return "alice-emit";
    const char *slash = strrchr(argv0, '/');
    const char *base = slash ? slash + 1 : argv0;
    return strcmp(base, "emit") == 0 ? "alice emit" : base;
}

typedef struct sender {
    const char *prog;
    const am_emit_cmd_t *cmd;
    am_dgram_t dg;
    int open_rc; /* am_dgram_open's result */
    int first_error;
    bool warned;
    size_t sent;
    size_t failed;
} sender_t;

static void sender_open(sender_t *s, const char *prog, const am_emit_cmd_t *cmd)
{
    memset(s, 0, sizeof(*s));
    s->prog = prog;
    s->cmd = cmd;
    /* Blocking, with a timeout: a full Unix socket queue holds us back a
     * little (backpressure for bulk input) instead of dropping. */
    s->open_rc = am_dgram_open(&s->dg, &cmd->addr, false, 2000);
}

static void sender_send(sender_t *s, const char *p, size_t n)
{
    int rc = s->open_rc < 0 ? s->open_rc : am_dgram_send(&s->dg, p, n);
    if (rc == 0) {
        s->sent++;
        return;
    }
    s->failed++;
    if (!s->first_error)
        s->first_error = rc;
    /* Fire and forget: an absent daemon is silent. Anything else (a name
     * that does not resolve, a datagram too large) is worth one line. */
    if (!s->warned && (s->cmd->strict || !am_dgram_absent(rc))) {
        char where[AM_ADDR_HOST_MAX + AM_ADDR_PATH_MAX + 32];
        am_addr_format(&s->cmd->addr, where, sizeof(where));
        const char *why = rc == -EADDRNOTAVAIL ? "host does not resolve" : strerror(-rc);
        fprintf(stderr, "%s: %s%s %s: %s\n", s->prog, s->cmd->strict ? "" : "warning: ",
                am_dgram_absent(rc) ? "no daemon at" : "cannot send to", where, why);
        s->warned = true;
    }
}

static void sender_close(sender_t *s)
{
    am_dgram_close(&s->dg);
}

/* ---- time ---- */

/* The signal handler needs the child's pid and a handler has no context
 * pointer: this is the one mutable global of alice-emit. */
static volatile sig_atomic_t forward_pid;

static void forward_signal(int sig, siginfo_t *si, void *uctx)
{
    (void)uctx;
    pid_t pid = (pid_t)forward_pid;
    if (pid <= 0)
        return;
    /* A terminal's ^C, ^\ or hangup (SI_KERNEL) went to the whole
     * foreground process group, the child included: passing it on would
     * deliver it twice. */
    if (si && si->si_code == SI_KERNEL)
        return;
    int saved = errno;
    kill(pid, sig);
    errno = saved;
}

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define NFORWARDED (sizeof(forwarded) / sizeof(forwarded[0]))

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs the command; returns its exit status for us to exit with. */
static int run_command(const char *prog, char *const *command, double *seconds)
{
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaddset(&block, forwarded[i]);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigaction sa, saved[NFORWARDED];
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = forward_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaction(forwarded[i], &sa, &saved[i]);

    double t0 = now_seconds();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        for (size_t i = 0; i < NFORWARDED; i++)
            sigaction(forwarded[i], &saved[i], NULL);
        sigprocmask(SIG_SETMASK, &old, NULL);
        execvp(command[0], command);
        int e = errno;
        fprintf(stderr, "%s: cannot run '%s': %s\n", prog, command[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    int status;
    if (pid < 0) {
        fprintf(stderr, "%s: cannot start '%s': %s\n", prog, command[0], strerror(errno));
        status = 126;
    } else {
        forward_pid = pid;
        sigprocmask(SIG_SETMASK, &old, NULL);
        int ws;
        pid_t r;
        do {
            r = waitpid(pid, &ws, 0);
        } while (r < 0 && errno == EINTR);
        if (r < 0)
            status = 1;
        else if (WIFEXITED(ws))
            status = WEXITSTATUS(ws);
        else if (WIFSIGNALED(ws))
            status = 128 + WTERMSIG(ws);
        else
            status = 1;
        sigprocmask(SIG_BLOCK, &block, NULL);
        forward_pid = 0;
    }
    *seconds = now_seconds() - t0;
    for (size_t i = 0; i < NFORWARDED; i++)
        sigaction(forwarded[i], &saved[i], NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return status;
}

/* ---- stdin ---- */

#define STDIN_CHUNK       65536
#define STDIN_BUF         (4 * STDIN_CHUNK)
#define STDIN_MAX_REPORTS 100

typedef struct bulk {
    sender_t *s;
    const char *prog;
    am_buf_t dgram;
    size_t max;     /* datagram size */
    size_t abs_max; /* the transport's limit, for one long line */
    size_t lineno;
    size_t refused;
    size_t reported;
} bulk_t;

static void bulk_send(bulk_t *b)
{
    if (b->dgram.len == 0)
        return;
    sender_send(b->s, b->dgram.data, b->dgram.len);
    am_buf_reset(&b->dgram);
}

static void bulk_refuse(bulk_t *b, const char *why, const char *detail)
{
    b->refused++;
    if (b->reported < STDIN_MAX_REPORTS)
        fprintf(stderr, "%s: stdin line %zu: %s%s%s\n", b->prog, b->lineno, why, detail ? ": " : "",
                detail ? detail : "");
    else if (b->reported == STDIN_MAX_REPORTS)
        fprintf(stderr, "%s: further refused lines are not reported one by one\n", b->prog);
    b->reported++;
}

static void bulk_line(bulk_t *b, const char *p, size_t n)
{
    b->lineno++;
    if (n > 0 && p[n - 1] == '\r')
        n--;
    if (n == 0)
        return;
    am_sample_t sample;
    am_reason_t r = am_parse_line(p, n, &sample);
    if (r != AM_OK) {
        char why[256];
        snprintf(why, sizeof(why), "refused (%s)", am_reason_label(r));
        bulk_refuse(b, why, am_reason_message(r));
        return;
    }
    if (n > b->abs_max) {
        bulk_refuse(b, "refused", "line longer than a datagram");
        return;
    }
    if (b->dgram.len && b->dgram.len + 1 + n > b->max)
        bulk_send(b);
    if (b->dgram.len)
        am_buf_putc(&b->dgram, '\n');
    am_buf_append(&b->dgram, p, n);
    if (b->dgram.len >= b->max)
        bulk_send(b); /* a long line alone, or exactly full */
}

static int run_stdin(sender_t *s, const char *prog, const am_emit_cmd_t *cmd)
{
    bulk_t b;
    memset(&b, 0, sizeof(b));
    b.s = s;
    b.prog = prog;
    bool unix_sock = cmd->addr.kind == AM_ADDR_UNIX;
    b.max = unix_sock ? AM_EMIT_UNIX_DATAGRAM : AM_EMIT_UDP_DATAGRAM;
    b.abs_max = unix_sock ? AM_ADDR_UNIX_MAX : AM_ADDR_UDP_MAX;
    am_buf_init(&b.dgram, 0);
    char *in = malloc(STDIN_BUF);
    if (!in) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return AM_EMIT_EXIT_SEND;
    }
    size_t have = 0;
    bool skipping = false; /* inside a line too long for the buffer */
    int status = AM_EMIT_EXIT_OK;
    for (;;) {
        ssize_t r = read(STDIN_FILENO, in + have, STDIN_BUF - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "%s: reading stdin: %s\n", prog, strerror(errno));
            status = AM_EMIT_EXIT_SEND;
            break;
        }
        if (r == 0)
            break;
        have += (size_t)r;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(in + start, '\n', have - start);
            if (!nl)
                break;
            size_t end = (size_t)(nl - in);
            if (skipping) {
                skipping = false;
                b.lineno++;
            } else {
                bulk_line(&b, in + start, end - start);
            }
            start = end + 1;
        }
        memmove(in, in + start, have - start);
        have -= start;
        if (have == STDIN_BUF) {
            /* No newline in STDIN_BUF bytes: far past any datagram. */
            if (!skipping)
                bulk_refuse(&b, "refused", "line longer than a datagram");
            skipping = true;
            have = 0;
        }
        /* Send what this read brought: bulk input still fills datagrams,
         * a trickle (tail -f | alice-emit -) is not held back. */
        bulk_send(&b);
    }
    if (have && !skipping)
        bulk_line(&b, in, have);
    bulk_send(&b);
    free(in);
    am_buf_free(&b.dgram);
    if (b.refused) {
        fprintf(stderr, "%s: %zu of %zu lines refused, the others were sent\n", prog, b.refused,
                b.lineno);
        return AM_EMIT_EXIT_USAGE;
    }
    if (status == AM_EMIT_EXIT_OK && cmd->strict && s->failed)
        status = AM_EMIT_EXIT_SEND;
    return status;
}

/* ---- main ---- */

int am_emit_main(int argc, char **argv)
{
    const char *prog = prog_name(argc > 0 ? argv[0] : NULL);
    am_emit_cmd_t *cmd = malloc(sizeof(*cmd));
    am_buf_t err, out;
    am_buf_init(&err, 0);
    am_buf_init(&out, 0);
    int status;
    if (!cmd) {
        fprintf(stderr, "%s: out of memory\n", prog);
        return AM_EMIT_EXIT_SEND;
    }
    status = am_emit_parse(argc, argv, getenv("ALICE_METRICS_ADDR"), cmd, &err);
    if (status) {
        fprintf(stderr, "%s: %s\nTry '%s --help'.\n", prog, err.data ? err.data : "usage error",
                prog);
        goto done;
    }
    if (cmd->mode == AM_EMIT_HELP) {
        fputs(help_text, stdout);
        goto done;
    }
    if (cmd->mode == AM_EMIT_VERSION) {
        printf("alice-emit %s\n", AM_VERSION);
        goto done;
    }

    sender_t s;
    if (cmd->mode == AM_EMIT_STDIN) {
        sender_open(&s, prog, cmd);
        status = run_stdin(&s, prog, cmd);
        sender_close(&s);
        goto done;
    }
    if (cmd->mode == AM_EMIT_TIME) {
        /* Check the lines before running anything: a typo must not cost a
         * run of the command. */
        if (am_emit_build(cmd, 0, true, &out, &err) ||
            (am_buf_reset(&out), am_emit_build(cmd, 0, false, &out, &err))) {
            fprintf(stderr, "%s: %s\n", prog, err.data ? err.data : "refused");
            status = AM_EMIT_EXIT_USAGE;
            goto done;
        }
        am_buf_reset(&out);
        double seconds;
        status = run_command(prog, cmd->command, &seconds);
        if (seconds < 0)
            seconds = 0;
        if (am_emit_build(cmd, seconds, status == 0, &out, &err)) {
            fprintf(stderr, "%s: %s\n", prog, err.data ? err.data : "refused");
            goto done;
        }
        sender_open(&s, prog, cmd);
        sender_send(&s, out.data, out.len);
        sender_close(&s);
        if (cmd->strict && s.failed && status == 0)
            status = AM_EMIT_EXIT_SEND;
        goto done;
    }
    status = am_emit_build(cmd, 0, true, &out, &err);
    if (status) {
        fprintf(stderr, "%s: %s\n", prog, err.data ? err.data : "refused");
        goto done;
    }
    sender_open(&s, prog, cmd);
    sender_send(&s, out.data, out.len);
    sender_close(&s);
    if (cmd->strict && s.failed)
        status = AM_EMIT_EXIT_SEND;
done:
    fflush(stdout);
    am_buf_free(&err);
    am_buf_free(&out);
    free(cmd);
    return status;
}
