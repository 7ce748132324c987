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
#include "mft_tls.h"

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

/* Which registered rules may authenticate the server (the partner's TLS
 * policy "server_trust"); the others are ignored even when they match. */
enum mft_httpc_trust_mode {
    MFT_HTTPC_TRUST_ANY = 0, /* a registered certificate, pin or CA */
    MFT_HTTPC_TRUST_CERTS,   /* only trust->certs */
    MFT_HTTPC_TRUST_CAS,     /* only trust->cas (+ host) */
    MFT_HTTPC_TRUST_PINS,    /* only trust->pins */
};

/* How long mft_httpc_handshake waits, after a TLS 1.3 handshake in which the
 * server asked for our certificate, for the server's verdict on it (TLS 1.3
 * servers send their alert after the client considers the handshake done). */
#define MFT_HTTPC_SETTLE_MS 1000

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
    /* The partner's TLS policy (https only); 0 / NULL = the defaults. */
    unsigned tls_min_version, tls_max_version; /* 0x0303 TLS 1.2 | 0x0304 TLS 1.3; 0 = 1.2 / 1.3 */
    const char (*tls_ciphers)[64]; /* IANA cipher-suite names, TLS 1.2 and 1.3 ones together;
                                      GnuTLS spellings without "_WITH" accepted */
    size_t n_tls_ciphers;          /* 0 = OpenSSL's secure defaults */
    enum mft_httpc_trust_mode tls_trust;
    /* For the handshake facts only (may be NULL): who we dial, as whom. */
    const char *partner_id, *station_id;
    /* When not NULL, filled for every call (zeroed first, then direction
     * "outbound"): the raw facts of the TLS handshake of an https call —
     * success or failure — see mft_tls.h. Outbound, versions_offered is our
     * policy range and versions_accepted the version the server answered
     * with in its ServerHello ("" when it sent none). A reused connection
     * reports the facts of the handshake that opened it. */
    struct mft_tls_facts *facts_out;
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
 * classifies it, see mft_httpc_status_transient) — except an https answer
 * that is a TLS refusal in HTTP clothing (nginx's 400 "No required SSL
 * certificate was sent" / "The SSL certificate error"), which is
 * TLS_OUR_CERT_REJECTED. Free *out with mft_httpc_response_free.
 * Returns -1 with err and *out empty when no answer was obtained: CONFIG
 * (bad URL / header, https without trust, client certificate or key that does
 * not load), TLS_OWN_KEY_MISMATCH, TLS_OWN_CERT_TOO_WEAK (OpenSSL's security
 * level refuses our client certificate or a CA certificate of our chain: the
 * message names it, its key type and bits or its signature algorithm), DNS,
 * CONNECT, TIMEOUT, TLS_SERVER_UNTRUSTED / _SELF_SIGNED / _CHAIN_INCOMPLETE /
 * _EXPIRED / _NOT_YET_VALID / _NAME_MISMATCH, TLS_PIN_CHANGED,
 * TLS_OUR_CERT_REJECTED, TLS_NO_COMMON_PROTOCOL, TLS_NO_SHARED_CIPHER,
 * TLS_NOT_TLS, TLS_HANDSHAKE, HTTP_RESPONSE_TOO_LARGE, HTTP_RESPONSE_INVALID,
 * NO_MEMORY, INTERNAL. A chain to a registered CA refused only for a key or
 * a signature below MFT_X509_SECURITY_LEVEL is TLS_SERVER_UNTRUSTED whose
 * message names that certificate and why. A TLS failure's kind is derived
 * from all the handshake facts together (alerts and their direction, our
 * verification, the library error, versions) and the facts are appended to
 * err->detail (mft_tls_facts_detail).
 */
int mft_httpc_post(const struct mft_httpc_request *rq, struct mft_httpc_response *out,
                   struct mft_err *err);

/*
 * Dials rq->url (https only) and performs the TLS handshake with the same
 * settings as mft_httpc_post — trust, client identity, policy — but sends no
 * HTTP request: a pre-flight check. After a TLS 1.3 handshake in which the
 * server asked for our certificate, waits up to MFT_HTTPC_SETTLE_MS for its
 * verdict. Returns 0 when the handshake succeeded (rq->facts_out, if given,
 * holds the negotiated facts), -1 with err as mft_httpc_post otherwise.
 * rq->body, headers and content_length are ignored.
 */
int mft_httpc_handshake(const struct mft_httpc_request *rq, struct mft_err *err);

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
 * (DNS, CONNECT, TIMEOUT, TLS_HANDSHAKE, TLS_OUR_CERT_REJECTED — the partner
 * may be installing our new certificate —, TLS_SERVER_NOT_YET_VALID — it
 * becomes valid, or the clock is fixed —, HTTP_RESPONSE_INVALID, NO_MEMORY,
 * INTERNAL), 0 when it needs a change on our side (the other TLS_SERVER_*,
 * TLS_PIN_CHANGED, TLS_OWN_KEY_MISMATCH, TLS_OWN_CERT_TOO_WEAK,
 * TLS_NO_COMMON_PROTOCOL, TLS_NO_SHARED_CIPHER, TLS_NOT_TLS, CONFIG, ...) or
 * err is NULL. */
int mft_httpc_err_transient(const struct mft_err *err);

/* Returns 1 for the HTTP statuses worth retrying (5xx, 408, 429), else 0. */
int mft_httpc_status_transient(long status);

#endif
