/* client-driver ADDR SCENARIO [N]: libalice scenarios for test_client.py,
 * which reads the results back from the daemon's /metrics. Prints the
 * client's statistics after alice_close() as key=value pairs. */
#include <alice/metrics.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static alice_stats final;

static int finish(alice_client *c)
{
    (void)alice_flush(c);
    (void)alice_get_stats(c, &final);
    int rc = alice_close(c);
    printf("calls=%llu invalid=%llu datagrams_sent=%llu datagrams_dropped=%llu lines_sent=%llu "
           "lines_dropped=%llu close=%d\n",
           (unsigned long long)final.calls, (unsigned long long)final.invalid,
           (unsigned long long)final.datagrams_sent, (unsigned long long)final.datagrams_dropped,
           (unsigned long long)final.lines_sent, (unsigned long long)final.lines_dropped, rc);
    return 0;
}

static int basic(alice_client *c)
{
    for (int i = 0; i < 5; i++)
        alice_counter(c, "alice_lib_jobs", 1, ALICE_LABELS({"queue", "a"}, {"status", "success"}));
    alice_counter(c, "alice_api_requests_total", 2,
                  ALICE_LABELS({"provider", "openai"}, {"model", "gpt-4"}, {"operation", "text"},
                               {"status", "error"}));
    alice_histogram(c, "alice_api_request_duration_seconds", 0.3,
                    ALICE_LABELS({"provider", "openai"}, {"model", "gpt-4"},
                                 {"operation", "text"}));
    alice_timer_ms(c, "alice_api_request_duration_seconds", 7000,
                   ALICE_LABELS({"provider", "openai"}, {"model", "gpt-4"},
                                {"operation", "text"}));
    alice_gauge(c, "alice_db_connections_active", 7, NULL, 0);
    alice_gauge_add(c, "alice_db_connections_active", -2, NULL, 0);
    alice_gauge(c, "alice_lib_temperature", -5, ALICE_LABELS({"room", "lab"}));
    alice_set(c, "alice_lib_users", "u1", NULL, 0);
    alice_set(c, "alice_lib_users", "u2", NULL, 0);
    alice_set(c, "alice_lib_users", "u1", NULL, 0);
    /* refused locally, never sent */
    alice_counter(c, "alice lib bad", 1, NULL, 0);
    alice_counter(c, "alice_lib_jobs", 1, ALICE_LABELS({"queue", "a,b"}));
    return finish(c);
}

static int bulk(alice_client *c, long n)
{
    for (long i = 0; i < n; i++)
        alice_counter(c, "alice_lib_bulk", 1, ALICE_LABELS({"shard", (i & 1) ? "odd" : "even"}));
    return finish(c);
}

static int aggregate(alice_client *c, long n)
{
    for (long i = 0; i < n; i++) {
        alice_counter(c, "alice_lib_agg", 1, NULL, 0);
        alice_gauge_add(c, "alice_lib_inflight", 1, NULL, 0);
        alice_gauge_add(c, "alice_lib_inflight", -1, NULL, 0);
    }
    alice_gauge(c, "alice_lib_level", -3, NULL, 0);
    return finish(c);
}

typedef struct job {
    alice_client *c;
    long n;
} job_t;

static void *thread_main(void *arg)
{
    job_t *j = arg;
    for (long i = 0; i < j->n; i++)
        alice_counter(j->c, "alice_lib_threads", 1, NULL, 0);
    return NULL;
}

static int threads(alice_client *c, long n)
{
    pthread_t t[4];
    job_t j = {c, n / 4};
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, thread_main, &j);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    return finish(c);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: client-driver ADDR basic|bulk|aggregate|threads [N]\n");
        return 2;
    }
    const char *addr = strcmp(argv[1], "-") == 0 ? NULL : argv[1];
    const char *scenario = argv[2];
    long n = argc > 3 ? atol(argv[3]) : 10000;
    unsigned flags = strcmp(scenario, "aggregate") == 0 ? ALICE_AGGREGATE : 0;
    alice_client *c;
    int rc = alice_open(&c, addr, flags);
    if (rc != 0) {
        fprintf(stderr, "client-driver: %s\n", alice_strerror(rc));
        return 1;
    }
    if (strcmp(scenario, "basic") == 0)
        return basic(c);
    if (strcmp(scenario, "bulk") == 0)
        return bulk(c, n);
    if (strcmp(scenario, "aggregate") == 0)
        return aggregate(c, n);
    if (strcmp(scenario, "threads") == 0)
        return threads(c, n);
    fprintf(stderr, "client-driver: unknown scenario %s\n", scenario);
    alice_close(c);
    return 2;
}
