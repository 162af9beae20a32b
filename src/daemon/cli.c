#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "am_config.h"
#include "catalog.h"
#include "config.h"
#include "hash.h"
#include "log.h"
#include "mapping.h"
#include "server.h"
#include "emit.h"
#include "query.h"

#define EXIT_USAGE 2

static const char usage_top[] =
    "usage: alice [--log-level LEVEL] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  metrics-server     run the StatsD -> Prometheus aggregating daemon\n"
    "  check-config FILE  validate a JSON config file (exit 0 valid, 1 invalid)\n"
    "  check-config --mapping FILE\n"
    "                     validate a statsd_exporter mapping file (exit 0 valid, 1 invalid)\n"
    "  emit ...           send a metric (same as alice-emit; see alice emit --help)\n"
    "  health [--url URL] exit 0 when the daemon answers GET /health, else 1\n"
    "  top [--url URL]    live table of families: series, lines/s, rejects, top values;\n"
    "                     and of the Unix socket's senders (pid, uid, process)\n"
    "  version            print the version\n"
    "  help               this text\n"
    "\n"
    "  --log-level LEVEL  debug, info, warn or error (any case; env ALICE_LOG_LEVEL;\n"
    "                     default info); also accepted after the command\n"
    "\n"
    "Run 'alice metrics-server --help' for the daemon's options.\n";

static const char usage_server[] =
    "usage: alice [--log-level LEVEL] metrics-server [options]\n"
    "\n"
    "Aggregates StatsD/DogStatsD datagrams (UDP and a Unix datagram socket) into\n"
    "Prometheus metric families and serves them over HTTP.\n"
    "\n"
    "options (a flag beats its environment variable, which beats the config file,\n"
    "which beats the default):\n"
    "  --host ADDR               HTTP listen address, IPv4 or IPv6\n"
    "                            [env ALICE_METRICS_HOST, default 127.0.0.1]\n"
    "  --port N                  HTTP port, 0 = any free port\n"
    "                            [env ALICE_METRICS_PORT, default 9090]\n"
    "  --statsd-host ADDR        UDP ingest address, IPv4 or IPv6\n"
    "                            [env ALICE_STATSD_HOST, default 127.0.0.1]\n"
    "  --statsd-port N           UDP ingest port, 0 = UDP off\n"
    "                            [env ALICE_STATSD_PORT, default 8125]\n"
    "  --unix PATH               also ingest from a Unix datagram socket at PATH\n"
    "                            (a stale socket file there is replaced; any other\n"
    "                            file is never touched) [env ALICE_STATSD_SOCKET, default off]\n"
    "  --unix-mode MODE          the socket file's mode, octal: 0666 lets any local user\n"
    "                            send (as the loopback UDP port does); 0660 only the\n"
    "                            group. Set as the file is created (no window); a\n"
    "                            symlink at the path is never followed, and a socket\n"
    "                            another process serves is never taken over (exit 1)\n"
    "                            [env ALICE_STATSD_SOCKET_MODE, default 0666]\n"
    "  --config FILE             JSON config: families, buckets, limits; SIGHUP rereads it\n"
    "                            [env ALICE_METRICS_CONFIG, default none]\n"
    "  --receive-buffer-bytes N  socket receive buffer for ingest, 4096..1073741824;\n"
    "                            without root (CAP_NET_ADMIN) the kernel caps it at\n"
    "                            net.core.rmem_max (logged); 4 MiB or more granted lets\n"
    "                            UDP be read every 1 ms under load rather than per datagram\n"
    "                            [env ALICE_STATSD_RECEIVE_BUFFER, default 8388608]\n"
    "  --workers N               ingest threads, 1..64, each with its own UDP socket\n"
    "                            (SO_REUSEPORT: the kernel spreads senders over them)\n"
    "                            and series, merged at scrape; 1 = one loop, no threads\n"
    "                            [env ALICE_METRICS_WORKERS, default 1]\n"
    "  --ttl SECONDS             a series no line updated for this long disappears\n"
    "                            (and frees its place under the limits); a later line\n"
    "                            starts it from zero; 0 = never. A family's own \"ttl\"\n"
    "                            in the config beats it [env ALICE_METRICS_TTL, config\n"
    "                            \"ttl\", default 0]\n"
    "  --state-file PATH         keep every series in PATH across restarts: restored at\n"
    "                            start before any socket is read, written atomically\n"
    "                            every --state-interval and at SIGTERM/SIGINT; an\n"
    "                            unreadable or corrupt file exits 2 (a missing one is a\n"
    "                            first start) [env ALICE_STATE_FILE, config\n"
    "                            server.state_file, default none]\n"
    "  --state-interval SECONDS  seconds between state writes, 1..86400\n"
    "                            [env ALICE_STATE_INTERVAL, config\n"
    "                            server.state_interval, default 15]\n"
    "  --state-discard-bad       a corrupt state file is renamed PATH.bad-<unix time>\n"
    "                            and the daemon starts empty, with a warning\n"
    "                            [env ALICE_STATE_DISCARD_BAD=1]\n"
    "  --max-connections N       HTTP connections open at once, 1..1000000; at the cap a\n"
    "                            new connection sheds the worst open one (a request head\n"
    "                            or answer stalled over 1 s, else the longest idle), or is\n"
    "                            closed when every open one is busy; the soft open-file\n"
    "                            limit is raised to the hard one at start\n"
    "                            [env ALICE_MAX_CONNECTIONS, default 1024]\n"
    "  --mapping-config FILE     statsd_exporter mapping file (YAML: glob and regex\n"
    "                            matches, $1 captures into name and labels, action: drop,\n"
    "                            ttl...); dotted names become labelled families. A bad\n"
    "                            file exits 2; SIGHUP rereads it (a bad one is logged and\n"
    "                            the old kept) [env ALICE_MAPPING_CONFIG, config\n"
    "                            server.mapping_config, default none]\n"
    "  --remote-write-url URL    push every series (self-metrics too) to a Prometheus\n"
    "                            remote write 1.0 receiver (http:// or https://) every\n"
    "                            15 s; more settings (interval, auth, TLS, external\n"
    "                            labels, queue) in the config's \"remote_write\"\n"
    "                            [env ALICE_REMOTE_WRITE_URL, config remote_write.url,\n"
    "                            default none]\n"
    "  --web-config FILE         TLS and basic auth, in the Prometheus exporter web\n"
    "                            config format (YAML: tls_server_config, basic_auth_users\n"
    "                            with bcrypt hashes, http_server_config.headers); with\n"
    "                            TLS the port speaks only TLS; with users every path\n"
    "                            but /health needs one (401 otherwise). Relative file\n"
    "                            names are relative to FILE; a bad file exits 2; SIGHUP\n"
    "                            rereads it and the certificates [env ALICE_WEB_CONFIG,\n"
    "                            config server.web_config, default none]\n"
    "  --log-level LEVEL         debug, info, warn, error; debug logs every rejected\n"
    "                            line with its reason (rate-limited)\n"
    "                            [env ALICE_LOG_LEVEL, default info]\n"
    "  -h, --help                this text\n"
    "\n"
    "endpoints: GET /metrics (text 0.0.4, OpenMetrics by Accept, gzip by\n"
    "Accept-Encoding), GET /health (JSON), GET /api/v1/families (JSON: per family\n"
    "series, lines/s, rejects, top label values; the Unix socket's senders), GET /\n"
    "(links and those tables).\n"
    "signals: SIGTERM/SIGINT stop gracefully (exit 0); SIGHUP reloads --config,\n"
    "--mapping-config and --web-config.\n"
    "exit codes: 0 clean stop, 1 cannot bind a socket, 2 bad flags or config.\n"
    "\n"
    "example:\n"
    "  alice metrics-server --host 0.0.0.0 --port 8080\n"
    "  echo 'alice_events_published_total:1|c|#event_type:demo' | nc -u -w0 127.0.0.1 8125\n";

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "alice: %s %s (see 'alice metrics-server --help')\n", what, arg);
    return EXIT_USAGE;
}

/* Strict integer parse: the whole string, in [lo, hi]. */
static bool parse_int(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool valid_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* "localhost" is what people type; the sockets need a literal. */
static const char *normalize_host(const char *s)
{
    return strcmp(s, "localhost") == 0 ? "127.0.0.1" : s;
}

/* A setting and where it came from, for clear errors. */
typedef struct setting {
    const char *value;
    const char *source; /* "--port" or "ALICE_METRICS_PORT" */
} setting_t;

typedef struct server_flags {
    setting_t host, port, statsd_host, statsd_port, unix_path, config, rcvbuf, log_level, workers,
        ttl, state_file, state_interval, max_connections, unix_mode, mapping, remote_write_url,
        web_config;
} server_flags_t;

typedef struct flag_def {
    const char *name;
    const char *env;
    size_t offset;
} flag_def_t;

static const flag_def_t server_flag_defs[] = {
    {"--host", "ALICE_METRICS_HOST", offsetof(server_flags_t, host)},
    {"--port", "ALICE_METRICS_PORT", offsetof(server_flags_t, port)},
    {"--statsd-host", "ALICE_STATSD_HOST", offsetof(server_flags_t, statsd_host)},
    {"--statsd-port", "ALICE_STATSD_PORT", offsetof(server_flags_t, statsd_port)},
    {"--unix", "ALICE_STATSD_SOCKET", offsetof(server_flags_t, unix_path)},
    {"--config", "ALICE_METRICS_CONFIG", offsetof(server_flags_t, config)},
    {"--receive-buffer-bytes", "ALICE_STATSD_RECEIVE_BUFFER", offsetof(server_flags_t, rcvbuf)},
    {"--log-level", "ALICE_LOG_LEVEL", offsetof(server_flags_t, log_level)},
    {"--workers", "ALICE_METRICS_WORKERS", offsetof(server_flags_t, workers)},
    {"--ttl", "ALICE_METRICS_TTL", offsetof(server_flags_t, ttl)},
    {"--state-file", "ALICE_STATE_FILE", offsetof(server_flags_t, state_file)},
    {"--state-interval", "ALICE_STATE_INTERVAL", offsetof(server_flags_t, state_interval)},
    {"--max-connections", "ALICE_MAX_CONNECTIONS", offsetof(server_flags_t, max_connections)},
    {"--unix-mode", "ALICE_STATSD_SOCKET_MODE", offsetof(server_flags_t, unix_mode)},
    {"--mapping-config", "ALICE_MAPPING_CONFIG", offsetof(server_flags_t, mapping)},
    {"--remote-write-url", "ALICE_REMOTE_WRITE_URL", offsetof(server_flags_t, remote_write_url)},
    {"--web-config", "ALICE_WEB_CONFIG", offsetof(server_flags_t, web_config)},
};
#define N_SERVER_FLAGS (sizeof(server_flag_defs) / sizeof(server_flag_defs[0]))

/* Matches "--name value" or "--name=value"; advances *i past the value. */
static int take_flag(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *value = argv[++*i];
    return 1;
}

static setting_t *flag_slot(server_flags_t *f, size_t k)
{
    return (setting_t *)((char *)f + server_flag_defs[k].offset);
}

static int resolve_port(const setting_t *s, int from_file, int def, int *out)
{
    long v;
    if (s->value) {
        if (!parse_int(s->value, 0, 65535, &v)) {
            fprintf(stderr, "alice: %s: \"%s\" is not a port number (0-65535)\n", s->source,
                    s->value);
            return -1;
        }
        *out = (int)v;
    } else {
        *out = from_file >= 0 ? from_file : def;
    }
    return 0;
}

static int resolve_host(const setting_t *s, const char *from_file, const char *def,
                        const char **out)
{
    if (s->value) {
        const char *h = normalize_host(s->value);
        if (!valid_ip(h)) {
            fprintf(stderr, "alice: %s: \"%s\" is not an IPv4 or IPv6 address\n", s->source,
                    s->value);
            return -1;
        }
        *out = h;
    } else {
        *out = from_file ? from_file : def;
    }
    return 0;
}

/* am_server_run's status as the exit code --help promises: 0 clean stop,
 * 1 a socket could not be bound (or the daemon could not start), 2 bad
 * config. */
static int server_exit_code(int rc)
{
    if (rc == 0)
        return 0;
    return rc == AM_SERVER_BAD_CONFIG || rc == AM_SERVER_BAD_STATE || rc == AM_SERVER_BAD_WEB_CONFIG
               ? EXIT_USAGE
               : 1;
}

static int cmd_metrics_server(int argc, char **argv, bool log_level_given)
{
    server_flags_t f;
    memset(&f, 0, sizeof(f));
    bool discard_bad = false; /* --state-discard-bad: a flag without a value */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_server, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--state-discard-bad") == 0) {
            discard_bad = true;
            continue;
        }
        bool matched = false;
        for (size_t k = 0; k < N_SERVER_FLAGS && !matched; k++) {
            const char *v;
            int rc = take_flag(argc, argv, &i, server_flag_defs[k].name, &v);
            if (rc < 0)
                return usage_error("missing value for", server_flag_defs[k].name);
            if (rc > 0) {
                setting_t *slot = flag_slot(&f, k);
                slot->value = v;
                slot->source = server_flag_defs[k].name;
                matched = true;
            }
        }
        if (!matched)
            return usage_error(argv[i][0] == '-' ? "unknown option" : "unexpected argument",
                               argv[i]);
    }
    /* The environment fills what no flag set; ALICE_LOG_LEVEL is already
     * resolved by am_cli_main, where a --log-level before the command beats
     * it. */
    for (size_t k = 0; k < N_SERVER_FLAGS; k++) {
        setting_t *slot = flag_slot(&f, k);
        if (slot == &f.log_level)
            continue;
        const char *e = getenv(server_flag_defs[k].env);
        if (!slot->value && e && *e) {
            slot->value = e;
            slot->source = server_flag_defs[k].env;
        }
    }
    if (f.log_level.value) {
        int lvl = am_log_level_parse(f.log_level.value);
        if (lvl < 0) {
            fprintf(stderr, "alice: %s: \"%s\" is not debug, info, warn or error\n",
                    f.log_level.source, f.log_level.value);
            return EXIT_USAGE;
        }
        am_log_threshold = (am_log_level_t)lvl;
        log_level_given = true;
    }

    am_config_t cfg;
    am_config_init(&cfg);
    if (f.config.value) {
        char err[512];
        if (am_config_load(f.config.value, &cfg, err, sizeof(err)) != 0) {
            fprintf(stderr, "alice: config: %s\n", err);
            return EXIT_USAGE;
        }
        if (!log_level_given && cfg.log_level >= 0)
            am_log_threshold = (am_log_level_t)cfg.log_level;
    }

    am_server_opts_t o;
    memset(&o, 0, sizeof(o));
    int rc = EXIT_USAGE;
    long rcv = cfg.receive_buffer_bytes > 0 ? cfg.receive_buffer_bytes : 8 * 1024 * 1024;
    if (resolve_host(&f.host, cfg.host, "127.0.0.1", &o.http_host) ||
        resolve_port(&f.port, cfg.port, 9090, &o.http_port) ||
        resolve_host(&f.statsd_host, cfg.statsd_host, "127.0.0.1", &o.statsd_host) ||
        resolve_port(&f.statsd_port, cfg.statsd_port, 8125, &o.statsd_port))
        goto out;
    o.unix_path = f.unix_path.value ? f.unix_path.value : cfg.unix_path;
    if (o.unix_path && strlen(o.unix_path) >= 108) {
        fprintf(stderr, "alice: %s: socket path longer than 107 bytes\n",
                f.unix_path.value ? f.unix_path.source : "config server.unix");
        goto out;
    }
    if (o.unix_path && !*o.unix_path)
        o.unix_path = NULL;
    int mode = cfg.unix_mode >= 0 ? cfg.unix_mode : 0666;
    if (f.unix_mode.value && (mode = am_config_parse_mode(f.unix_mode.value)) < 0) {
        fprintf(stderr, "alice: %s: \"%s\" is not an octal file mode in 0..0777 (e.g. 0660)\n",
                f.unix_mode.source, f.unix_mode.value);
        goto out;
    }
    o.unix_mode = (unsigned)mode;
    if (f.rcvbuf.value && !parse_int(f.rcvbuf.value, 4096, 1L << 30, &rcv)) {
        fprintf(stderr, "alice: %s: \"%s\" is not a byte count in 4096..1073741824\n",
                f.rcvbuf.source, f.rcvbuf.value);
        goto out;
    }
    o.receive_buffer_bytes = (int)rcv;
    long workers = cfg.workers > 0 ? cfg.workers : 1;
    if (f.workers.value && !parse_int(f.workers.value, 1, AM_SERVER_MAX_WORKERS, &workers)) {
        fprintf(stderr, "alice: %s: \"%s\" is not a worker count in 1..%d\n", f.workers.source,
                f.workers.value, AM_SERVER_MAX_WORKERS);
        goto out;
    }
    o.workers = (int)workers;
    o.ttl = -1;
    if (f.ttl.value && !parse_int(f.ttl.value, 0, 2147483647, &o.ttl)) {
        fprintf(stderr, "alice: %s: \"%s\" is not a number of seconds in 0..2147483647\n",
                f.ttl.source, f.ttl.value);
        goto out;
    }
    o.state_path = f.state_file.value ? f.state_file.value : cfg.state_file;
    if (o.state_path && !*o.state_path)
        o.state_path = NULL;
    long interval = cfg.state_interval > 0 ? cfg.state_interval : 15;
    if (f.state_interval.value && !parse_int(f.state_interval.value, 1, 86400, &interval)) {
        fprintf(stderr, "alice: %s: \"%s\" is not a number of seconds in 1..86400\n",
                f.state_interval.source, f.state_interval.value);
        goto out;
    }
    o.state_interval = (unsigned)interval;
    const char *discard = getenv("ALICE_STATE_DISCARD_BAD");
    o.state_discard_bad = discard_bad || (discard && strcmp(discard, "1") == 0);
    long max_conns = cfg.max_connections > 0 ? cfg.max_connections : 1024;
    if (f.max_connections.value &&
        !parse_int(f.max_connections.value, 1, AM_SERVER_MAX_CONNECTIONS, &max_conns)) {
        fprintf(stderr, "alice: %s: \"%s\" is not a connection count in 1..%d\n",
                f.max_connections.source, f.max_connections.value, AM_SERVER_MAX_CONNECTIONS);
        goto out;
    }
    o.max_connections = (int)max_conns;
    o.remote_write_url = f.remote_write_url.value;
    if (o.remote_write_url) {
        char why[128];
        am_remote_url_t u;
        if (!*o.remote_write_url) {
            o.remote_write_url = NULL; /* empty: the config's, if any */
        } else if (am_remote_url_parse(o.remote_write_url, &u, why, sizeof(why)) != 0) {
            fprintf(stderr, "alice: %s: \"%s\": %s\n", f.remote_write_url.source,
                    o.remote_write_url, why);
            goto out;
        }
    }
    o.web_config = f.web_config.value ? f.web_config.value : cfg.web_config;
    if (o.web_config && !*o.web_config)
        o.web_config = NULL;
    o.config_path = f.config.value;
    o.mapping_path = f.mapping.value ? f.mapping.value : cfg.mapping_config;
    if (o.mapping_path && !*o.mapping_path)
        o.mapping_path = NULL;
    o.log_level_fixed = log_level_given;
    /* o borrows host and socket strings from cfg: cfg lives until the server
     * returns (the server loads the file again for the registry, one code
     * path for start and SIGHUP). */
    am_hash_seed_init();
    rc = server_exit_code(am_server_run(&o));
out:
    am_config_free(&cfg);
    return rc;
}

static void print_mapping_warning(void *ctx, const char *msg)
{
    (void)ctx;
    fprintf(stderr, "alice: warning: %s\n", msg);
}

/* check-config --mapping FILE: a statsd_exporter mapping file. */
static int check_mapping(const char *path)
{
    am_mapping_t *m;
    char err[512];
    if (am_mapping_load(path, &m, err, sizeof(err), print_mapping_warning, NULL) != 0) {
        fprintf(stderr, "alice: mapping invalid: %s\n", err);
        return 1;
    }
    printf("%s: ok (%zu mappings)\n", path, am_mapping_count(m));
    am_mapping_free(m);
    return 0;
}

static int cmd_check_config(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        puts("usage: alice check-config FILE\n"
             "       alice check-config --mapping FILE\n"
             "Validates a JSON config file, or with --mapping a statsd_exporter mapping file.\n"
             "Exit 0 when valid, 1 when not (the error names the file, line:column and key\n"
             "path; for a mapping file FILE:LINE), 2 on usage errors. Keys of the mapping\n"
             "format that alice-metrics does not use are warned about, not errors.");
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--mapping") == 0)
        return check_mapping(argv[2]);
    if (argc == 2 && strncmp(argv[1], "--mapping=", 10) == 0)
        return check_mapping(argv[1] + 10);
    if (argc != 2 || strcmp(argv[1], "--mapping") == 0) {
        fprintf(stderr, "usage: alice check-config FILE | check-config --mapping FILE\n");
        return EXIT_USAGE;
    }
    am_config_t cfg;
    char err[512];
    if (am_config_load(argv[1], &cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "alice: config invalid: %s\n", err);
        return 1;
    }
    printf("%s: ok (%zu families defined, %zu built in, auto_create %s)\n", argv[1], cfg.nfamilies,
           am_catalog_count(), (cfg.has_auto_create && !cfg.limits.auto_create) ? "off" : "on");
    am_config_free(&cfg);
    return 0;
}

int am_cli_main(int argc, char **argv)
{
    bool log_level_given = false;
    const char *env_level = getenv("ALICE_LOG_LEVEL");
    int i = 1;
    /* Global options before the command. */
    while (i < argc && argv[i][0] == '-') {
        const char *v;
        int rc = take_flag(argc, argv, &i, "--log-level", &v);
        if (rc < 0) {
            fprintf(stderr, "alice: --log-level needs a value\n");
            return EXIT_USAGE;
        }
        if (rc > 0) {
            int lvl = am_log_level_parse(v);
            if (lvl < 0) {
                fprintf(stderr, "alice: --log-level: \"%s\" is not debug, info, warn or error\n",
                        v);
                return EXIT_USAGE;
            }
            am_log_threshold = (am_log_level_t)lvl;
            log_level_given = true;
            i++;
            continue;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(usage_top, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("alice %s\n", AM_VERSION);
            return 0;
        }
        fprintf(stderr, "alice: unknown option %s\n%s", argv[i], usage_top);
        return EXIT_USAGE;
    }
    if (i >= argc) {
        fputs(usage_top, stderr);
        return EXIT_USAGE;
    }
    if (!log_level_given && env_level && *env_level) {
        int lvl = am_log_level_parse(env_level);
        if (lvl < 0) {
            fprintf(stderr, "alice: ALICE_LOG_LEVEL: \"%s\" is not debug, info, warn or error\n",
                    env_level);
            return EXIT_USAGE;
        }
        am_log_threshold = (am_log_level_t)lvl;
        log_level_given = true;
    }
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    if (strcmp(cmd, "metrics-server") == 0)
        return cmd_metrics_server(sub_argc, sub_argv, log_level_given);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("alice %s\n", AM_VERSION);
        return 0;
    }
    if (strcmp(cmd, "check-config") == 0)
        return cmd_check_config(sub_argc, sub_argv);
    if (strcmp(cmd, "help") == 0) {
        fputs(usage_top, stdout);
        return 0;
    }
    if (strcmp(cmd, "emit") == 0)
        return am_emit_main(sub_argc, sub_argv);
    if (strcmp(cmd, "health") == 0)
        return am_query_health_main(sub_argc, sub_argv);
    if (strcmp(cmd, "top") == 0)
        return am_query_top_main(sub_argc, sub_argv);
    fprintf(stderr, "alice: unknown command '%s'\n%s", cmd, usage_top);
    return EXIT_USAGE;
}
