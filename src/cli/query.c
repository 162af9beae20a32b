/* query: alice health and alice top (see query.h). */
#include "query.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "fetch.h"

#define EXIT_USAGE 2
#define TIMEOUT_MS 5000

static const char usage_common[] =
    "  --url URL             the daemon's base URL, http[s]://host[:port][/prefix]\n"
    "                        [default http://127.0.0.1:9090; ALICE_METRICS_HOST and\n"
    "                        ALICE_METRICS_PORT, when set, give its host and port]\n"
    "  --cacert FILE         https: trust the CA certificates in FILE (PEM) instead of\n"
    "                        the system's\n"
    "  --insecure            https: do not verify the daemon's certificate\n"
    "  --user USER           basic auth user (with --password-file)\n"
    "  --password-file FILE  basic auth password: the first line of FILE\n"
    "  -h, --help            this text\n"
    "Each request times out after 5 s.\n";

static const char usage_health[] =
    "usage: alice health [--url URL] [--cacert FILE] [--insecure] [--user USER\n"
    "                    --password-file FILE]\n"
    "Asks the daemon's GET /health: prints its JSON and exits 0 on a 200, else\n"
    "exits 1 with the URL and the error on stderr (2: usage error).\n";

static const char usage_top[] =
    "usage: alice top [--url URL] [--interval S] [--cacert FILE] [--insecure]\n"
    "                 [--user USER --password-file FILE]\n"
    "A live table of the daemon's families (GET /api/v1/families): type, series,\n"
    "lines accepted per second over the last minute, rejects by reason and the\n"
    "top label values by series; under it the Unix socket's senders (pid, uid,\n"
    "process; their lines, rejects, datagrams, bytes). On a terminal it redraws\n"
    "every S seconds until Ctrl-C (exit 0); otherwise it prints the table once.\n"
    "A daemon that does not answer: exit 1 with the URL and the error (2: usage\n"
    "error).\n"
    "  --interval S          seconds between redraws, 0.1..86400 [default 2]\n";

typedef struct query_opts {
    char url_text[1200];
    am_url_t url;
    am_fetch_opts_t fetch;
    char password[512];
    double interval;
} query_opts_t;

void am_query_default_url(char *out, size_t cap)
{
    const char *host = getenv("ALICE_METRICS_HOST");
    const char *port = getenv("ALICE_METRICS_PORT");
    if (!host || !*host || strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0)
        host = "::1";
    if (!port || !*port)
        port = "9090";
    bool v6 = strchr(host, ':') && host[0] != '[';
    snprintf(out, cap, "http://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
}

/* Parses the flags; 0, or the exit code to return (help: 0 after
 * printing, usage errors: 2). */
static int parse_flags(int argc, char **argv, bool top, query_opts_t *q, int *exit_code)
{
    const char *usage = top ? usage_top : usage_health;
    const char *url = NULL, *password_file = NULL;
    memset(q, 0, sizeof(*q));
    q->interval = 2.0;
    q->fetch.timeout_ms = TIMEOUT_MS;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            fputs(usage_common, stdout);
            *exit_code = 0;
            return 1;
        }
        if (strcmp(a, "--insecure") == 0) {
            q->fetch.insecure = true;
            continue;
        }
        static const char *const with_value[] = {"--url", "--cacert", "--user", "--password-file",
                                                 "--interval"};
        size_t k = 0, nk = sizeof(with_value) / sizeof(with_value[0]) - (top ? 0 : 1);
        size_t alen = strcspn(a, "=");
        while (k < nk && !(strlen(with_value[k]) == alen && strncmp(a, with_value[k], alen) == 0))
            k++;
        if (k == nk) {
            fprintf(stderr, "alice %s: unknown option %s\n%s", argv[0], a, usage);
            *exit_code = EXIT_USAGE;
            return 1;
        }
        if (a[alen] == '=') {
            v = a + alen + 1;
        } else if (i + 1 < argc) {
            v = argv[++i];
        } else {
            fprintf(stderr, "alice %s: %s needs a value\n", argv[0], with_value[k]);
            *exit_code = EXIT_USAGE;
            return 1;
        }
        switch (k) {
            case 0:
                url = v;
                break;
            case 1:
                q->fetch.cacert = v;
                break;
            case 2:
                q->fetch.user = v;
                break;
            case 3:
                password_file = v;
                break;
            default: {
                char *end;
                q->interval = strtod(v, &end);
                if (end == v || *end || !(q->interval >= 0.1 && q->interval <= 86400)) {
                    fprintf(stderr,
                            "alice top: --interval: \"%s\" is not a number of seconds "
                            "in 0.1..86400\n",
                            v);
                    *exit_code = EXIT_USAGE;
                    return 1;
                }
            }
        }
    }
    if (!!q->fetch.user != !!password_file) {
        fprintf(stderr, "alice %s: --user and --password-file go together\n", argv[0]);
        *exit_code = EXIT_USAGE;
        return 1;
    }
    char err[512];
    if (password_file) {
        if (am_fetch_read_secret(password_file, q->password, sizeof(q->password), err,
                                 sizeof(err)) != 0) {
            fprintf(stderr, "alice %s: --password-file: %s\n", argv[0], err);
            *exit_code = EXIT_USAGE;
            return 1;
        }
        q->fetch.password = q->password;
    }
    if (url)
        snprintf(q->url_text, sizeof(q->url_text), "%s", url);
    else
        am_query_default_url(q->url_text, sizeof(q->url_text));
    size_t n = strlen(q->url_text);
    while (n > 0 && q->url_text[n - 1] == '/')
        q->url_text[--n] = '\0'; /* messages append the path */
    if (am_url_parse(q->url_text, &q->url, err, sizeof(err)) != 0) {
        fprintf(stderr, "alice %s: --url: %s\n", argv[0], err);
        *exit_code = EXIT_USAGE;
        return 1;
    }
    return 0;
}

/* GETs path: 0 with res filled on a 200; 1 with the error said on
 * stderr. */
static int get_ok(const query_opts_t *q, const char *cmd, const char *path, am_fetch_result_t *res)
{
    char err[512];
    int rc = am_fetch_get(&q->url, path, &q->fetch, res, err, sizeof(err));
    if (rc == -EINTR)
        return 1;
    if (rc != 0) {
        fprintf(stderr, "alice %s: %s%s: daemon not reachable: %s\n", cmd, q->url_text, path, err);
        return 1;
    }
    if (res->status != 200) {
        size_t n = strcspn(res->body, "\r\n");
        fprintf(stderr, "alice %s: %s%s: HTTP %d%s%.*s\n", cmd, q->url_text, path, res->status,
                n ? ": " : "", (int)(n > 200 ? 200 : n), res->body);
        free(res->body);
        res->body = NULL;
        return 1;
    }
    return 0;
}

int am_query_health_main(int argc, char **argv)
{
    query_opts_t q;
    int code;
    if (parse_flags(argc, argv, false, &q, &code))
        return code;
    am_fetch_result_t res;
    if (get_ok(&q, "health", "/health", &res) != 0)
        return 1;
    fwrite(res.body, 1, res.len, stdout);
    free(res.body);
    return 0;
}

/* ---- alice top ---- */

static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* One row of the table, its cells as text (owned). */
typedef struct cells {
    char *c[6];
} cells_t;

enum { C_NAME, C_TYPE, C_SERIES, C_RATE, C_REJECTS, C_TOP, NCOLS };

static const char *const col_title[NCOLS] = {"FAMILY",  "TYPE",    "SERIES",
                                             "LINES/S", "REJECTS", "TOP LABEL VALUES (SERIES)"};

/* A cell from a JSON object (a string to free, NULL when out of memory):
 * rejects {"reason": n} as "reason:n,reason:n", top label values
 * {"label": [{"value", "series"}]} as "label=v(n),v(n) label=...", an
 * empty object as "-". */
static char *object_text(json_t *o, bool top)
{
    char *s = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&s, &n);
    if (!m)
        return NULL;
    const char *key;
    json_t *v;
    const char *sep = "";
    json_object_foreach(o, key, v)
    {
        if (!top) {
            fprintf(m, "%s%s:%lld", sep, key, (long long)json_integer_value(v));
            sep = ",";
            continue;
        }
        fprintf(m, "%s%s=", sep, key);
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            fprintf(m, "%s%s(%lld)", i ? "," : "", json_string_value(json_object_get(e, "value")),
                    (long long)json_integer_value(json_object_get(e, "series")));
        }
        sep = " ";
    }
    if (!*sep)
        fputs("-", m);
    fclose(m);
    return s;
}

static char *dup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *dup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* Writes a cell padded or cut to w columns (w 0: as it is). */
static void put_cell(FILE *m, const char *s, size_t w, bool right, bool last)
{
    size_t n = strlen(s);
    if (w && n > w) {
        fprintf(m, "%.*s%s", (int)(w > 3 ? w - 3 : w), s, w > 3 ? "..." : "");
        n = w;
    } else if (right) {
        fprintf(m, "%*s", (int)w, s);
        n = w;
    } else {
        fputs(s, m);
    }
    if (!last)
        fprintf(m, "%*s", (int)((w > n ? w - n : 0) + 2), "");
}

/* The senders of the Unix socket (the JSON's "senders"), under the
 * families: at most max rows (0: all), each line cut to the terminal by the
 * caller. */
enum { S_WHO, S_LINES, S_REJECTED, S_DATAGRAMS, S_BYTES, S_SEEN, S_PROCESS, NSCOLS };

static const char *const scol_title[NSCOLS] = {"SENDER", "LINES", "REJECTED", "DATAGRAMS",
                                               "BYTES",  "SEEN",  "PROCESS"};

static int render_senders(FILE *m, json_t *doc, size_t max)
{
    json_t *senders = json_object_get(doc, "senders");
    size_t n = json_array_size(senders);
    if (!n)
        return 0;
    char *cells[NSCOLS * 2];
    size_t w[NSCOLS];
    for (int c = 0; c < NSCOLS; c++)
        w[c] = strlen(scol_title[c]);
    size_t shown = max && n > max ? max : n;
    /* Two passes over the rows: widths, then the lines. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1) {
            fprintf(m, "\nsenders (Unix socket): %zu, %lld evicted to bound the table\n", n,
                    (long long)json_integer_value(json_object_get(doc, "senders_evicted")));
            for (int c = 0; c < NSCOLS; c++)
                put_cell(m, scol_title[c], c == S_PROCESS ? 0 : w[c], c != S_WHO && c != S_PROCESS,
                         c == S_PROCESS);
            fputc('\n', m);
        }
        for (size_t i = 0; i < shown; i++) {
            json_t *e = json_array_get(senders, i);
#define NUM(k) (long long)json_integer_value(json_object_get(e, k))
            cells[S_WHO] =
                json_is_false(json_object_get(e, "pid_visible"))
                    ? dup_printf("uid %lld (pid not visible: another PID namespace)", NUM("uid"))
                    : dup_printf("pid %lld uid %lld", NUM("pid"), NUM("uid"));
            cells[S_LINES] = dup_printf("%lld", NUM("lines"));
            cells[S_REJECTED] = dup_printf("%lld", NUM("rejected"));
            cells[S_DATAGRAMS] = dup_printf("%lld", NUM("datagrams"));
            cells[S_BYTES] = dup_printf("%lld", NUM("bytes"));
            cells[S_SEEN] = dup_printf("%llds ago", NUM("last_seen_seconds_ago"));
#undef NUM
            const char *proc = json_string_value(json_object_get(e, "process"));
            cells[S_PROCESS] = strdup(proc && *proc ? proc : "-");
            bool ok = true;
            for (int c = 0; c < NSCOLS; c++) {
                if (!cells[c])
                    ok = false;
                else if (pass == 0 && strlen(cells[c]) > w[c])
                    w[c] = strlen(cells[c]);
                else if (pass == 1)
                    put_cell(m, cells[c], c == S_PROCESS ? 0 : w[c], c != S_WHO && c != S_PROCESS,
                             c == S_PROCESS);
            }
            if (pass == 1)
                fputc('\n', m);
            for (int c = 0; c < NSCOLS; c++)
                free(cells[c]);
            if (!ok)
                return -ENOMEM;
        }
    }
    if (shown < n)
        fprintf(m, "... %zu more senders (a taller terminal shows them)\n", n - shown);
    return 0;
}

/* Renders the families JSON as the table into m; -EPROTO when it is not
 * the expected shape. width 0: no limit (not a terminal). */
static int render_table(FILE *m, json_t *doc, const char *url, size_t width, size_t height)
{
    json_t *fams = json_object_get(doc, "families");
    if (!json_is_array(fams))
        return -EPROTO;
    size_t nrows = json_array_size(fams);
    cells_t *rows = calloc(nrows ? nrows : 1, sizeof(*rows));
    if (!rows)
        return -ENOMEM;
    size_t w[NCOLS];
    for (int c = 0; c < NCOLS; c++)
        w[c] = strlen(col_title[c]);
    long long total_series = 0;
    int rc = 0;
    for (size_t i = 0; i < nrows && rc == 0; i++) {
        json_t *f = json_array_get(fams, i);
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *type = json_string_value(json_object_get(f, "type"));
        if (!name || !type) {
            rc = -EPROTO;
            break;
        }
        long long series = (long long)json_integer_value(json_object_get(f, "series"));
        total_series += series;
        rows[i].c[C_NAME] = strdup(name);
        rows[i].c[C_TYPE] = strdup(type);
        rows[i].c[C_SERIES] = dup_printf("%lld", series);
        rows[i].c[C_RATE] =
            dup_printf("%.2f", json_number_value(json_object_get(f, "lines_per_second")));
        rows[i].c[C_REJECTS] = object_text(json_object_get(f, "rejects"), false);
        rows[i].c[C_TOP] = object_text(json_object_get(f, "top_label_values"), true);
        for (int c = 0; c < NCOLS; c++) {
            if (!rows[i].c[c]) {
                rc = -ENOMEM;
                break;
            }
            if (strlen(rows[i].c[c]) > w[c])
                w[c] = strlen(rows[i].c[c]);
        }
    }
    if (rc == 0) {
        char *nofam = object_text(json_object_get(doc, "rejects_without_family"), false);
        fprintf(m, "alice-metrics %s: %zu families, %lld series; rejects without a family: %s\n\n",
                url, nrows, total_series, nofam ? nofam : "?");
        free(nofam);
        if (width) {
            /* A terminal: the family name gets at most half, the top
             * values what is left (at least 10 columns). */
            if (w[C_NAME] > width / 2)
                w[C_NAME] = width / 2;
            size_t used = 0;
            for (int c = 0; c < C_TOP; c++)
                used += w[c] + 2;
            w[C_TOP] = width > used + 10 ? width - used : 10;
        } else {
            w[C_TOP] = 0;
        }
        for (int c = 0; c < NCOLS; c++)
            put_cell(m, col_title[c], c == C_TOP ? 0 : w[c], c == C_SERIES || c == C_RATE,
                     c == C_TOP);
        fputc('\n', m);
        /* A terminal keeps room for up to 5 senders under the families. */
        size_t nsenders = json_array_size(json_object_get(doc, "senders"));
        size_t sender_lines = nsenders ? 3 + (nsenders > 5 ? 6 : nsenders) : 0;
        size_t shown = nrows;
        if (height && shown + 4 + sender_lines > height)
            shown = height > 5 + sender_lines ? height - 5 - sender_lines : 1;
        for (size_t i = 0; i < shown; i++) {
            for (int c = 0; c < NCOLS; c++)
                put_cell(m, rows[i].c[c], w[c], c == C_SERIES || c == C_RATE, c == C_TOP);
            fputc('\n', m);
        }
        if (shown < nrows)
            fprintf(m, "... %zu more (a taller terminal shows them)\n", nrows - shown);
        rc = render_senders(m, doc, height ? 5 : 0);
    }
    for (size_t i = 0; i < nrows; i++)
        for (int c = 0; c < NCOLS; c++)
            free(rows[i].c[c]);
    free(rows);
    return rc;
}

/* Writes text (n bytes) to stdout, each line cut at width columns (0: as
 * it is; a UTF-8 character is not split; the lines are ASCII but for
 * label values). */
static void write_clipped(const char *text, size_t n, size_t width)
{
    const char *p = text, *end = text + n;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        size_t len = eol ? (size_t)(eol - p) : (size_t)(end - p);
        size_t cut = len, cols = 0;
        for (size_t i = 0; width && i < len; i++) {
            if (((unsigned char)p[i] & 0xC0) != 0x80 && p[i] != '\x1b' && cols++ == width) {
                cut = i;
                break;
            }
        }
        fwrite(p, 1, cut, stdout);
        if (eol)
            fputc('\n', stdout);
        p += len + (eol ? 1 : 0);
    }
}

/* Fetches and prints one table: 0, or 1 (said on stderr). */
static int show_once(const query_opts_t *q, bool tty)
{
    am_fetch_result_t res;
    if (get_ok(q, "top", "/api/v1/families", &res) != 0)
        return 1;
    json_error_t jerr;
    json_t *doc = json_loadb(res.body, res.len, 0, &jerr);
    free(res.body);
    if (!doc) {
        fprintf(stderr, "alice top: %s/api/v1/families: not JSON: %s\n", q->url_text, jerr.text);
        return 1;
    }
    size_t width = 0, height = 0;
    struct winsize ws;
    if (tty) {
        width = 80;
        height = 24;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
            width = ws.ws_col;
            height = ws.ws_row;
        }
    }
    char *text = NULL;
    size_t n = 0;
    FILE *m = open_memstream(&text, &n);
    int rc = m ? 0 : -ENOMEM;
    if (m) {
        if (tty)
            fputs("\x1b[H\x1b[2J", m); /* home, clear: one write, no flicker */
        rc = render_table(m, doc, q->url_text, width, height);
        fclose(m);
    }
    json_decref(doc);
    if (rc == 0)
        write_clipped(text, n, width);
    else
        fprintf(stderr, "alice top: %s/api/v1/families: %s\n", q->url_text,
                rc == -EPROTO ? "not the families JSON" : "out of memory");
    free(text);
    fflush(stdout);
    return rc == 0 ? 0 : 1;
}

int am_query_top_main(int argc, char **argv)
{
    query_opts_t q;
    int code;
    if (parse_flags(argc, argv, true, &q, &code))
        return code;
    bool tty = isatty(STDOUT_FILENO);
    if (!tty)
        return show_once(&q, false);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_stop_signal; /* no SA_RESTART: waits return EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    while (!stop_requested) {
        if (show_once(&q, true) != 0)
            return stop_requested ? 0 : 1;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)q.interval;
        until.tv_nsec += (long)((q.interval - (double)(time_t)q.interval) * 1e9);
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        while (!stop_requested &&
               clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
            ;
    }
    fputc('\n', stdout);
    return 0;
}
