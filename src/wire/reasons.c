#include "reasons.h"

static const char *const labels[] = {"ok",
#define XX(id, label, msg) label,
                                     AM_REASON_MAP(XX)
#undef XX
};

static const char *const messages[] = {"accepted",
#define XX(id, label, msg) msg,
                                       AM_REASON_MAP(XX)
#undef XX
};

const char *am_reason_label(am_reason_t r)
{
    return (unsigned)r < AM_REASON_COUNT ? labels[r] : "unknown";
}

const char *am_reason_message(am_reason_t r)
{
    return (unsigned)r < AM_REASON_COUNT ? messages[r] : "unknown";
}
