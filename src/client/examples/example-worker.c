/* example-worker: libalice used the way a worker process uses it.
 *
 *   example-worker [--addr ADDR] [--jobs N] [--aggregate] [--fail-every K]
 *
 * Runs N fake "API calls" (default 20) and reports each one as the guide's
 * track_api_metrics does: alice_api_requests_total{provider,model,operation,
 * status} and alice_api_request_duration_seconds{provider,model,operation},
 * plus an in-flight gauge and a per-queue job counter. ADDR defaults to
 * $ALICE_METRICS_ADDR, then udp://127.0.0.1:8125. Prints the client's
 * statistics at the end. Build: cc example-worker.c $(pkg-config --cflags
 * --libs alice). */
#include <alice/metrics.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Pretends to call a provider: sleeps 1-3 ms, fails every fail_every-th call. */
static int fake_api_call(int i, int fail_every)
{
    struct timespec d = {0, (long)(1000000 + (i % 3) * 1000000)};
    nanosleep(&d, NULL);
    return fail_every > 0 && (i + 1) % fail_every == 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    const char *addr = NULL;
    int jobs = 20;
    int fail_every = 5;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--addr") == 0 && i + 1 < argc) {
            addr = argv[++i];
        } else if (strcmp(argv[i], "--jobs") == 0 && i + 1 < argc) {
            jobs = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--fail-every") == 0 && i + 1 < argc) {
            fail_every = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--aggregate") == 0) {
            flags |= ALICE_AGGREGATE;
        } else {
            fprintf(stderr,
                    "usage: example-worker [--addr ADDR] [--jobs N] [--aggregate] "
                    "[--fail-every K]\n");
            return 2;
        }
    }

    alice_client *c;
    int rc = alice_open(&c, addr, flags);
    if (rc != 0) {
        /* Metrics must never stop the work: carry on without them (every
         * call accepts a NULL client). */
        fprintf(stderr, "example-worker: metrics off: %s\n", alice_strerror(rc));
        c = NULL;
    }

    static const char *const models[] = {"gpt-4", "claude-3"};
    for (int i = 0; i < jobs; i++) {
        const char *model = models[i % 2];
        alice_gauge_add(c, "alice_worker_jobs_in_flight", 1, ALICE_LABELS({"queue", "api"}));
        double t0 = now();
        int err = fake_api_call(i, fail_every);
        double seconds = now() - t0;
        alice_gauge_add(c, "alice_worker_jobs_in_flight", -1, ALICE_LABELS({"queue", "api"}));

        alice_histogram(c, "alice_api_request_duration_seconds", seconds,
                        ALICE_LABELS({"provider", "openai"}, {"model", model},
                                     {"operation", "text"}));
        alice_counter(c, "alice_api_requests_total", 1,
                      ALICE_LABELS({"provider", "openai"}, {"model", model}, {"operation", "text"},
                                   {"status", err ? "error" : "success"}));
        alice_counter(c, "alice_worker_jobs_total", 1,
                      ALICE_LABELS({"queue", "api"}, {"status", err ? "error" : "success"}));
    }

    alice_stats st = {0};
    (void)alice_get_stats(c, &st);
    rc = alice_close(c); /* sends what is left */
    printf("calls=%llu invalid=%llu datagrams_sent=%llu datagrams_dropped=%llu "
           "lines_sent=%llu close=%s\n",
           (unsigned long long)st.calls, (unsigned long long)st.invalid,
           (unsigned long long)st.datagrams_sent, (unsigned long long)st.datagrams_dropped,
           (unsigned long long)st.lines_sent, alice_strerror(rc));
    return 0;
}
