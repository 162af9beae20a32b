/* auth: see auth.h. The cache keeps the SHA-256 of a per-checker secret,
 * the user and the password of the last AUTH_CACHE_SIZE successful checks
 * (as exporter-toolkit caches its bcrypt results): a scraper that comes
 * back every few seconds costs one hash, not one bcrypt. The cache dies
 * with the checker, so a reload that changes the users forgets it. */
#include "auth.h"

#include <crypt.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ascii.h"

#define AUTH_CACHE_SIZE 64
/* A user name and password longer than this (decoded) are refused. */
#define AUTH_MAX_CREDENTIALS 1024

typedef struct cache_entry {
    unsigned char key[SHA256_DIGEST_LENGTH];
    bool used;
} cache_entry_t;

struct am_auth {
    unsigned refs;
    am_web_user_t *users; /* owned copies */
    size_t nusers;
    char dummy[64]; /* a bcrypt setting of cost 10: what an unknown user is checked against */
    unsigned char secret[32];
    cache_entry_t cache[AUTH_CACHE_SIZE];
    size_t next; /* the cache slot replaced next */
};

struct am_auth_job {
    am_auth_t *auth; /* a reference */
    bool known;      /* the user exists (else checked against the dummy) */
    bool match;      /* set by am_auth_job_run */
    char *hash;      /* owned copy */
    char *user;      /* owned copy */
    char *pass;      /* owned copy, wiped before it is freed */
    unsigned char key[SHA256_DIGEST_LENGTH];
};

am_auth_t *am_auth_new(const am_web_user_t *users, size_t n)
{
    if (n == 0)
        return NULL;
    am_auth_t *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->refs = 1;
    a->users = calloc(n, sizeof(*a->users));
    if (!a->users)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        a->users[i].name = strdup(users[i].name);
        a->users[i].hash = strdup(users[i].hash);
        a->nusers = i + 1;
        if (!a->users[i].name || !a->users[i].hash)
            goto fail;
    }
    if (RAND_bytes(a->secret, sizeof(a->secret)) != 1 ||
        !crypt_gensalt_rn("$2b$", 10, NULL, 0, a->dummy, sizeof(a->dummy)))
        goto fail;
    return a;
fail:
    am_auth_unref(a);
    return NULL;
}

void am_auth_ref(am_auth_t *a)
{
    a->refs++;
}

void am_auth_unref(am_auth_t *a)
{
    if (!a || --a->refs > 0)
        return;
    for (size_t i = 0; i < a->nusers; i++) {
        free(a->users[i].name);
        free(a->users[i].hash);
    }
    free(a->users);
    OPENSSL_cleanse(a, sizeof(*a));
    free(a);
}

static int b64val(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

bool am_auth_parse_basic(const char *hdr, size_t len, char *out, size_t n, const char **user,
                         const char **pass)
{
    if (!hdr || len < 6 || !am_ascii_caseeq(hdr, 5, "basic") || hdr[5] != ' ')
        return false;
    size_t i = 6;
    while (i < len && hdr[i] == ' ')
        i++;
    while (len > i && (hdr[len - 1] == ' ' || hdr[len - 1] == '\t'))
        len--;
    size_t k = 0;
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    for (; i < len; i++) {
        unsigned char ch = (unsigned char)hdr[i];
        if (ch == '=') {
            pad++;
            continue;
        }
        int v = b64val(ch);
        if (v < 0 || pad)
            return false;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (k + 1 >= n)
                return false;
            out[k++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2 || k == 0)
        return false;
    out[k] = '\0';
    if (memchr(out, '\0', k))
        return false; /* a NUL inside would cut the name or password */
    char *colon = memchr(out, ':', k);
    if (!colon)
        return false;
    *colon = '\0';
    *user = out;
    *pass = colon + 1;
    return true;
}

static void cache_key(const am_auth_t *a, const char *user, const char *pass,
                      unsigned char key[SHA256_DIGEST_LENGTH])
{
    /* user and pass come from one decoded header of at most
     * AUTH_MAX_CREDENTIALS bytes; the NUL separates them. */
    unsigned char in[sizeof(a->secret) + AUTH_MAX_CREDENTIALS + 1];
    size_t ul = strlen(user), pl = strlen(pass);
    memcpy(in, a->secret, sizeof(a->secret));
    memcpy(in + sizeof(a->secret), user, ul + 1);
    memcpy(in + sizeof(a->secret) + ul + 1, pass, pl);
    SHA256(in, sizeof(a->secret) + ul + 1 + pl, key);
    OPENSSL_cleanse(in, sizeof(in));
}

/* Every slot is compared, in constant time: a hit and a miss take as long. */
static bool cache_has(const am_auth_t *a, const unsigned char key[SHA256_DIGEST_LENGTH])
{
    int hit = 0;
    for (size_t i = 0; i < AUTH_CACHE_SIZE; i++)
        hit |= a->cache[i].used & (CRYPTO_memcmp(a->cache[i].key, key, SHA256_DIGEST_LENGTH) == 0);
    return hit != 0;
}

int am_auth_check(am_auth_t *a, const char *hdr, size_t len, am_auth_job_t **job)
{
    char cred[AUTH_MAX_CREDENTIALS + 1];
    const char *user, *pass;
    *job = NULL;
    if (!am_auth_parse_basic(hdr, len, cred, sizeof(cred), &user, &pass))
        return AM_AUTH_DENIED;
    const am_web_user_t *u = NULL;
    for (size_t i = 0; i < a->nusers; i++)
        if (strcmp(a->users[i].name, user) == 0)
            u = &a->users[i];
    unsigned char key[SHA256_DIGEST_LENGTH];
    cache_key(a, user, pass, key);
    if (u && cache_has(a, key)) {
        OPENSSL_cleanse(cred, sizeof(cred));
        return AM_AUTH_OK;
    }
    am_auth_job_t *j = calloc(1, sizeof(*j));
    if (j) {
        j->known = u != NULL;
        j->hash = strdup(u ? u->hash : a->dummy);
        j->user = strdup(user);
        j->pass = strdup(pass);
        memcpy(j->key, key, sizeof(key));
        j->auth = a;
        am_auth_ref(a);
    }
    OPENSSL_cleanse(cred, sizeof(cred));
    if (!j || !j->hash || !j->user || !j->pass) {
        am_auth_job_free(j);
        return -ENOMEM;
    }
    *job = j;
    return AM_AUTH_SLOW;
}

void am_auth_job_run(am_auth_job_t *job)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    job->match = false;
    if (!cd)
        return;
    const char *out = crypt_r(job->pass, job->hash, cd);
    size_t hl = strlen(job->hash);
    /* crypt_r gives "*0"-style failure tokens, never the setting itself. */
    job->match = job->known && out && out[0] == '$' && strlen(out) == hl &&
                 CRYPTO_memcmp(out, job->hash, hl) == 0;
    OPENSSL_cleanse(cd, sizeof(*cd));
    free(cd);
}

int am_auth_job_finish(am_auth_job_t *job)
{
    bool ok = job->match;
    if (ok) {
        am_auth_t *a = job->auth;
        if (!cache_has(a, job->key)) {
            memcpy(a->cache[a->next].key, job->key, sizeof(job->key));
            a->cache[a->next].used = true;
            a->next = (a->next + 1) % AUTH_CACHE_SIZE;
        }
    }
    am_auth_job_free(job);
    return ok ? AM_AUTH_OK : AM_AUTH_DENIED;
}

void am_auth_job_free(am_auth_job_t *job)
{
    if (!job)
        return;
    if (job->pass) {
        OPENSSL_cleanse(job->pass, strlen(job->pass));
        free(job->pass);
    }
    free(job->hash);
    free(job->user);
    am_auth_unref(job->auth);
    free(job);
}

am_auth_t *am_auth_job_auth(const am_auth_job_t *job)
{
    return job->auth;
}

const char *am_auth_job_user(const am_auth_job_t *job)
{
    return job->user;
}
