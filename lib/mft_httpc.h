/*
 * mft_httpc — the outbound HTTP(S) client: one POST to a partner and its
 * answer (for AS2: the message out, the synchronous MDN back). libcurl with
 * the OpenSSL backend, HTTP/1.1 only, no redirects, no proxies.
 *
 * The server is authenticated by the partner's registration, never by the
 * system CA store: its certificate is accepted when it is one of the
 * registered certificates, or its public key matches a registered pin, or it
 * chains (purpose TLS server) to a registered CA and names the URL's host.
 * A refusal says which rule failed and names the certificate presented.
 * The station's client certificate comes from memory (PEM).
 *
 * Protocol-agnostic: knows nothing of AS2, Kafka or Redis. Thread-safe: each
 * mft_httpc_post has its own curl handle and TLS context (no connection or
 * session reuse). mft_httpc_post_on keeps the connection in a
 * struct mft_httpc_conn for the next call with the same key: the caller makes
 * the key change whenever the trust or the client identity changes (e.g. the
 * partner id and the configuration version), so a trust change still applies
 * to the next call — the server is verified at every new handshake, and a
 * kept connection was verified with the same trust.
 */
#ifndef MFT_HTTPC_H
#define MFT_HTTPC_H

#include "mft_err.h"

#include <stddef.h>

#include <openssl/x509.h>

/* Defaults used when a request leaves the field 0. */
#define MFT_HTTPC_DEFAULT_TIMEOUT_S 300L
#define MFT_HTTPC_DEFAULT_CONNECT_TIMEOUT_S 30L
#define MFT_HTTPC_DEFAULT_MAX_RESPONSE (1u << 20)

/* How the server is authenticated; any rule that matches is enough. An exact
 * certificate or a pin is accepted whatever its dates and names (the
 * registration is the trust); the CA rule checks dates, purpose and host.
 * All borrowed for the duration of the call. */
struct mft_httpc_trust {
    STACK_OF(X509) * certs; /* exact leaf certificates (several during a rollover); may be NULL */
    STACK_OF(X509) * cas;   /* CAs: chain to one of these + host name / IP match; may be NULL */
    const char (*pins)[64]; /* base64 SHA-256 of the leaf's SubjectPublicKeyInfo */
    size_t n_pins;
};

/* The station's TLS client certificate: cert_pem is the certificate followed
 * by its chain, key_pem the unencrypted private key (PKCS#8 or traditional
 * PEM). Both borrowed; both NULL = no client certificate. */
struct mft_httpc_client_id {
    const char *cert_pem;
    const char *key_pem;
};

/* The same identity already parsed by the caller: cert and key required,
 * chain (intermediates) may be NULL. Borrowed; the call only takes references.
 * Saves parsing the PEM on every call: decoding an RSA key's PEM costs about
 * as much CPU as an RSA-2048 signature. */
struct mft_httpc_client_keys {
    X509 *cert;
    STACK_OF(X509) * chain;
    EVP_PKEY *key;
};

struct mft_httpc_request {
    const char *url;            /* http:// or https:// */
    const char *const *headers; /* "Name: value", NULL-terminated; may be NULL. No CR/LF, no
                                   Content-Length / Transfer-Encoding / Expect (ours); no
                                   Content-Type = application/octet-stream */
    const unsigned char *body;  /* borrowed */
    size_t len;
    int content_length;                  /* 1 = Content-Length, 0 = Transfer-Encoding: chunked */
    long timeout_s;                      /* whole exchange; 0 = MFT_HTTPC_DEFAULT_TIMEOUT_S */
    long connect_timeout_s;              /* TCP + TLS set-up; 0 = default */
    size_t max_response;                 /* larger answers are refused; 0 = default */
    const struct mft_httpc_trust *trust; /* required for https, ignored for http */
    const struct mft_httpc_client_id *client;        /* may be NULL */
    const struct mft_httpc_client_keys *client_keys; /* may be NULL; used instead of client */
};

struct mft_httpc_response {
    long status;
    char *content_type;  /* NULL when the answer has none */
    unsigned char *body; /* NUL-terminated (not counted in len), never NULL after success */
    size_t len;
    char **headers; /* the final answer's header lines "Name: value", unfolded */
    size_t n_headers;
    /* the server's TLS certificate and session, for events (when has_tls) */
    char tls_subject[512], tls_issuer[512], tls_serial[80], tls_sha256[65];
    char tls_not_before[32], tls_not_after[32], tls_protocol[16], tls_cipher[64];
    int has_tls;
};

/*
 * POSTs rq->body to rq->url and reads the whole answer into *out (zeroed
 * first). Returns 0 for ANY HTTP answer, whatever its status (the caller
 * classifies it, see mft_httpc_status_transient); free *out with
 * mft_httpc_response_free. Returns -1 with err and *out empty when no answer
 * was obtained: CONFIG (bad URL / header, https without trust, client
 * certificate or key that does not load or match), DNS, CONNECT, TIMEOUT,
 * TLS_SERVER_UNTRUSTED / _EXPIRED / _NAME_MISMATCH, TLS_HANDSHAKE,
 * TLS_NOT_TLS, TLS_NO_COMMON_PROTOCOL, HTTP_RESPONSE_TOO_LARGE,
 * HTTP_RESPONSE_INVALID, NO_MEMORY, INTERNAL.
 */
int mft_httpc_post(const struct mft_httpc_request *rq, struct mft_httpc_response *out,
                   struct mft_err *err);

/* Frees what a response holds and zeroes it; accepts NULL and a zeroed one. */
void mft_httpc_response_free(struct mft_httpc_response *r);

/*
 * Connection reuse. A conn belongs to one thread at a time. mft_httpc_post_on
 * behaves as mft_httpc_post, but keeps the connection open in conn after a
 * successful call and sends the next call with the same key (a string naming
 * the URL's trust and client identity) over it: no new TCP or TLS handshake.
 * A different key, or any failure, closes the kept connection first. The TLS
 * facts of the answer are those of the handshake that opened the connection.
 */
struct mft_httpc_conn;
struct mft_httpc_conn *mft_httpc_conn_new(void);
void mft_httpc_conn_free(struct mft_httpc_conn *conn);
int mft_httpc_post_on(struct mft_httpc_conn *conn, const char *key,
                      const struct mft_httpc_request *rq, struct mft_httpc_response *out,
                      struct mft_err *err);

/* Returns 1 when a failure of mft_httpc_post is worth retrying later
 * (DNS, CONNECT, TIMEOUT, TLS_HANDSHAKE, HTTP_RESPONSE_INVALID, NO_MEMORY,
 * INTERNAL), 0 when it needs a configuration change (TLS_SERVER_*, CONFIG,
 * TLS_NOT_TLS, ...) or err is NULL. */
int mft_httpc_err_transient(const struct mft_err *err);

/* Returns 1 for the HTTP statuses worth retrying (5xx, 408, 429), else 0. */
int mft_httpc_status_transient(long status);

#endif
