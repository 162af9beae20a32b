/* webconfig: the web configuration file of Prometheus exporters (the
 * exporter-toolkit format: YAML with tls_server_config,
 * http_server_config and basic_auth_users), read into plain data. It
 * checks keys and values and resolves relative file names against the
 * file's folder; it does not read certificates (https.c builds the TLS
 * context from this) nor check passwords (auth.c).
 *
 * Keys of the format that the daemon does not implement are accepted and
 * named in `ignored` so that the caller can warn; keys not in the format
 * are errors with file:line.
 *
 * Who calls: server.c at start and on SIGHUP, on the main thread. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* client_auth_type: Go's tls.ClientAuthType names. */
typedef enum am_client_auth {
    AM_CLIENT_AUTH_NONE = 0,           /* NoClientCert */
    AM_CLIENT_AUTH_REQUEST,            /* RequestClientCert: asked, never checked */
    AM_CLIENT_AUTH_REQUIRE_ANY,        /* RequireAnyClientCert: required, never checked */
    AM_CLIENT_AUTH_VERIFY_IF_GIVEN,    /* VerifyClientCertIfGiven */
    AM_CLIENT_AUTH_REQUIRE_AND_VERIFY, /* RequireAndVerifyClientCert */
} am_client_auth_t;

/* TLS protocol versions as on the wire (OpenSSL's TLS1_x_VERSION). */
enum {
    AM_TLS10 = 0x0301,
    AM_TLS11 = 0x0302,
    AM_TLS12 = 0x0303,
    AM_TLS13 = 0x0304,
};

typedef struct am_web_user {
    char *name; /* owned */
    char *hash; /* owned: a bcrypt hash ($2a$, $2b$ or $2y$) */
} am_web_user_t;

typedef struct am_webconfig {
    bool tls; /* tls_server_config names a certificate: the port speaks only TLS */
    /* Files, resolved against the config file's folder; owned; NULL unset. */
    char *cert_file, *key_file, *client_ca_file;
    /* The same as inline PEM text; owned; NULL unset. */
    char *cert, *key, *client_ca;
    am_client_auth_t client_auth;
    int min_version, max_version; /* AM_TLS1x; default TLS 1.2 .. TLS 1.3 */
    char **cipher_suites;         /* owned: Go/IANA names, in order */
    size_t ncipher_suites;
    bool prefer_server_cipher_suites; /* default true */
    char *groups;                     /* owned: curve_preferences as an OpenSSL groups list
                                         ("P-256:X25519"), NULL unset */
    char **allowed_sans;              /* owned: client_allowed_sans */
    size_t nallowed_sans;
    char *headers;        /* owned: http_server_config.headers as "Name: value\r\n" lines,
                             NULL when none */
    am_web_user_t *users; /* owned: basic_auth_users, in file order */
    size_t nusers;
    char *ignored; /* owned: the keys read but not implemented, comma-separated, or NULL */
} am_webconfig_t;

/* An empty config (no TLS, no users). */
void am_webconfig_init(am_webconfig_t *wc);
/* Frees what wc owns and leaves it empty. */
void am_webconfig_free(am_webconfig_t *wc);

/* Reads path (borrowed for the call) into *wc (the caller's; initialized
 * here). Returns 0, or -EINVAL (bad content), -ENOMEM or -errno (cannot
 * read) with "path:line: problem" in err (n bytes, the caller's); wc is
 * then empty. */
int am_webconfig_load(const char *path, am_webconfig_t *wc, char *err, size_t n)
    __attribute__((warn_unused_result));

/* The same from text (len bytes, borrowed for the call), as if read from
 * path (borrowed for the call: messages and relative names). */
int am_webconfig_parse(const char *text, size_t len, const char *path, am_webconfig_t *wc,
                       char *err, size_t n) __attribute__((warn_unused_result));

/* The name of a client auth type as the format spells it (static). */
const char *am_webconfig_client_auth_name(am_client_auth_t t);
