/* auth: HTTP basic authentication against bcrypt hashes (the
 * basic_auth_users of the web config). bcrypt costs 50-100 ms at cost 10,
 * so a check is split: am_auth_check answers at once from a cache of
 * recent successful checks, or hands back a job whose slow part
 * (am_auth_job_run) runs on a thread-pool thread, never on the loop; the
 * caller then finishes it on the loop (am_auth_job_finish), which fills
 * the cache. Comparisons are constant-time, and an unknown user costs the
 * same bcrypt run as a known one (against a dummy hash), so timing tells
 * nothing about which users exist.
 *
 * Who calls: request.c on the HTTP loop (check, finish, refs); the
 * thread pool (am_auth_job_run only, which touches nothing but the job). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "webconfig.h"

typedef struct am_auth am_auth_t;
typedef struct am_auth_job am_auth_job_t;

/* A checker for users (copied). Returns NULL when out of memory or when
 * n is 0. One reference, the caller's. */
am_auth_t *am_auth_new(const am_web_user_t *users, size_t n) __attribute__((warn_unused_result));
void am_auth_ref(am_auth_t *a);
/* Drops a reference; the last one frees (NULL is ignored). */
void am_auth_unref(am_auth_t *a);

enum {
    AM_AUTH_OK = 0,     /* a valid user (from the cache) */
    AM_AUTH_DENIED = 1, /* no credentials, malformed ones, or (job finished) wrong ones */
    AM_AUTH_SLOW = 2,   /* *job set: run it off the loop, then finish it */
};

/* Checks an Authorization header value (hdr, len bytes, borrowed for the
 * call; NULL when absent). AM_AUTH_OK, AM_AUTH_DENIED, AM_AUTH_SLOW with
 * *job (owned by the caller until am_auth_job_finish; it holds a
 * reference to a), or -ENOMEM. */
int am_auth_check(am_auth_t *a, const char *hdr, size_t len, am_auth_job_t **job)
    __attribute__((warn_unused_result));

/* The slow part: bcrypt. Any thread; touches only the job. */
void am_auth_job_run(am_auth_job_t *job);

/* On the loop, after am_auth_job_run: AM_AUTH_OK (the check is then
 * remembered) or AM_AUTH_DENIED. Frees job. */
int am_auth_job_finish(am_auth_job_t *job);
/* Frees a job without looking at its result (the connection went). */
void am_auth_job_free(am_auth_job_t *job);
/* The checker a job belongs to (borrowed while the job lives). */
am_auth_t *am_auth_job_auth(const am_auth_job_t *job);
/* The user a job checks, for logs (borrowed while the job lives). */
const char *am_auth_job_user(const am_auth_job_t *job);

/* Decodes "Basic base64(user:password)" (scheme in any case) into out
 * (n bytes, the caller's, NUL-terminated), with *user pointing at out and
 * *pass just after the first ':', both NUL-terminated. false when the
 * header is malformed or does not fit. */
bool am_auth_parse_basic(const char *hdr, size_t len, char *out, size_t n, const char **user,
                         const char **pass);
