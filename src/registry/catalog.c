#include "catalog.h"

#include <string.h>

const double am_default_buckets[14] = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                       0.5,   0.75, 1.0,   2.5,  5.0,   7.5, 10.0};

/* Scores arrive on a 0-1 or a 0-100 scale; one bucket list serves both. The
 * literals are written out (not computed as i * 0.1) so that 0.3 is the
 * double nearest 0.3 and renders as le="0.3". */
static const double quality_buckets[] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
                                         10,  20,  30,  40,  50,  60,  70,  80,  90,  100};

typedef struct builtin {
    const char *name;
    const char *help;
    am_family_type_t type;
    const char *labels[5];
    const double *buckets;
    size_t nbuckets;
} builtin_t;

#define DURATION am_default_buckets, 14

/* One row per family reads better than wrapped fields. */
/* clang-format off */
static const builtin_t builtins[] = {
    {"alice_api_requests_total", "Total number of API requests", AM_FAMILY_COUNTER,
     {"provider", "model", "operation", "status"}, NULL, 0},
    {"alice_api_request_duration_seconds", "API request duration histogram",
     AM_FAMILY_HISTOGRAM, {"provider", "model", "operation"}, DURATION},
    {"alice_api_request_cost_dollars", "API request cost summary", AM_FAMILY_SUMMARY,
     {"provider", "model"}, NULL, 0},
    {"alice_provider_health_status", "Provider health status gauge (1=healthy, 0=unhealthy)",
     AM_FAMILY_GAUGE, {"provider"}, NULL, 0},
    {"alice_provider_circuit_breaker_state",
     "Circuit breaker state (0=closed, 1=open, 2=half-open)", AM_FAMILY_GAUGE, {"provider"},
     NULL, 0},
    {"alice_provider_error_rate", "Provider error rate ratio", AM_FAMILY_GAUGE, {"provider"},
     NULL, 0},
    {"alice_db_connections_active", "Active database connections gauge", AM_FAMILY_GAUGE,
     {NULL}, NULL, 0},
    {"alice_db_query_duration_seconds", "Database query duration histogram",
     AM_FAMILY_HISTOGRAM, {"query_type"}, DURATION},
    {"alice_assets_processed_total", "Total assets processed", AM_FAMILY_COUNTER,
     {"media_type", "source", "status"}, NULL, 0},
    {"alice_asset_quality_score", "Asset quality score distribution histogram",
     AM_FAMILY_HISTOGRAM, {"media_type", "quality_type"}, quality_buckets,
     sizeof(quality_buckets) / sizeof(quality_buckets[0])},
    {"alice_events_published_total", "Total events published", AM_FAMILY_COUNTER,
     {"event_type"}, NULL, 0},
};
/* clang-format on */

size_t am_catalog_count(void)
{
    return sizeof(builtins) / sizeof(builtins[0]);
}

void am_catalog_get(size_t i, am_family_def_t *def)
{
    const builtin_t *b = &builtins[i];
    memset(def, 0, sizeof(*def));
    def->name = (char *)b->name;
    def->help = (char *)b->help;
    def->type = b->type;
    while (def->nlabels < 5 && b->labels[def->nlabels]) {
        def->labels[def->nlabels] = (char *)b->labels[def->nlabels];
        def->nlabels++;
    }
    def->nbuckets = b->nbuckets;
    if (b->nbuckets)
        memcpy(def->buckets, b->buckets, b->nbuckets * sizeof(double));
}

int am_catalog_install(am_registry_t *r)
{
    for (size_t i = 0; i < am_catalog_count(); i++) {
        am_family_def_t def;
        am_catalog_get(i, &def);
        int rc = am_registry_define(r, &def);
        if (rc < 0)
            return rc;
    }
    return 0;
}
