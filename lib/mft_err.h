/*
 * mft_err — the one error taxonomy of the product.
 *
 * Every failure anywhere is described by a struct mft_err: a kind (one of the
 * X-macro list below), a one-line message a person understands, the raw detail
 * (library error, TLS alert, X.509 verify result, HTTP status ...) and a remedy.
 * The kind's name (e.g. "TLS_CLIENT_CERT_MISSING") is the same string in events,
 * API answers, logs and metrics. Functions across lib/ return 0 on success or a
 * negative value on failure and fill a caller-provided struct mft_err.
 */
#ifndef MFT_ERR_H
#define MFT_ERR_H

#include <stddef.h>

/* X(NAME, default one-line message, default remedy) */
#define MFT_ERR_KINDS(X)                                                                           \
    X(OK, "no error", "")                                                                          \
    X(INTERNAL, "unexpected internal error", "report this to the gateway operators with the log")  \
    X(CONFIG, "invalid configuration", "fix the named setting and restart")                        \
    X(NO_MEMORY, "out of memory", "give the service more memory")                                  \
    X(TLS_CLIENT_CERT_MISSING, "the client presented no TLS certificate",                          \
      "configure the partner's AS2 client to send its TLS client certificate")                     \
    X(TLS_CLIENT_CERT_UNTRUSTED, "the client's TLS certificate is not issued by a trusted CA",     \
      "register the partner's TLS certificate or its CA with mftctl apply")                        \
    X(TLS_CLIENT_CERT_NOT_PARTNERS, "the TLS client certificate belongs to another partner",       \
      "the partner must connect with the certificate registered for it, or register the new one")  \
    X(TLS_CLIENT_CERT_EXPIRED, "the client's TLS certificate has expired",                         \
      "the partner must renew its TLS client certificate and send us the new one")                 \
    X(TLS_CLIENT_CERT_NOT_YET_VALID, "the client's TLS certificate is not yet valid",              \
      "check the clock of both sides, or wait until the certificate's start date")                 \
    X(TLS_CLIENT_CERT_NO_CLIENT_AUTH,                                                              \
      "the client's TLS certificate is not allowed for clientAuth",                                \
      "the partner needs a certificate with the TLS Web Client Authentication extended key usage") \
    X(TLS_CLIENT_CHAIN_INCOMPLETE,                                                                 \
      "the client sent its TLS certificate without the intermediate CA certificate that issued "   \
      "it",                                                                                        \
      "the partner must configure its AS2 client to send the full chain, or register the "         \
      "intermediate CA")                                                                           \
    X(TLS_CLIENT_KEY_MISMATCH,                                                                     \
      "the client's TLS signature does not verify with its certificate's key",                     \
      "the partner must configure the private key that belongs to its TLS client certificate")     \
    X(TLS_OUR_CERT_REJECTED, "the partner rejected our TLS certificate",                           \
      "send the partner the station's current TLS certificate and its CA; check its validity")     \
    X(TLS_OWN_KEY_MISMATCH, "our TLS certificate and private key do not match",                    \
      "re-import the station's TLS keypair: the key must belong to the certificate")               \
    X(TLS_OWN_CERT_TOO_WEAK,                                                                       \
      "our TLS certificate or a CA certificate of its chain is below OpenSSL's security level",    \
      "issue the station a new TLS certificate with an RSA key of 2048 bits or more (or an EC "    \
      "key), signed with SHA-256 or better, and import it; the security level cannot be lowered")  \
    X(TLS_NO_COMMON_PROTOCOL, "no common TLS protocol version",                                    \
      "the partner must enable TLS 1.2 or TLS 1.3")                                                \
    X(TLS_NO_SHARED_CIPHER, "no shared TLS cipher suite",                                          \
      "the partner must enable a modern AES-GCM or ChaCha20 cipher suite")                         \
    X(TLS_NOT_TLS, "the peer does not speak TLS", "check the URL scheme and port")                 \
    X(TLS_HANDSHAKE, "the TLS handshake failed", "see the detail for the alert and library error") \
    X(HTTP_BAD_REQUEST, "the HTTP request is not a valid AS2 request",                             \
      "the partner must send the required AS2 headers")                                            \
    X(HTTP_TOO_LARGE, "the message is larger than the configured limit",                           \
      "raise MFT_INGRESS_MAX_BODY or ask the partner to split the file")                           \
    X(UNKNOWN_STATION, "AS2-To names no station of this gateway",                                  \
      "check the partner's AS2-To setting, or declare the station with mftctl apply")              \
    X(UNKNOWN_PARTNER, "AS2-From names no partner of this station",                                \
      "declare the partner with mftctl apply, or check its AS2-From setting")                      \
    X(MALFORMED_MESSAGE, "the message is not well-formed MIME / S/MIME",                           \
      "ask the partner to check its AS2 software's output; the detail names the fault")            \
    X(DECRYPT_FAILED, "the message could not be decrypted",                                        \
      "the partner must encrypt with our current encryption certificate")                          \
    X(SIGNATURE_INVALID, "the message signature does not verify",                                  \
      "the partner's signing certificate may have changed, or the content was altered in transit") \
    X(SIGNATURE_REQUIRED, "the message is not signed but the partner's policy requires it",        \
      "the partner must sign its messages, or relax the policy")                                   \
    X(ENCRYPTION_REQUIRED, "the message is not encrypted but the partner's policy requires it",    \
      "the partner must encrypt its messages, or relax the policy")                                \
    X(DECOMPRESS_FAILED, "the message could not be decompressed",                                  \
      "ask the partner to check its compression setting")                                          \
    X(ALGORITHM_REFUSED, "the message uses an algorithm this gateway refuses",                     \
      "the partner must use AES or 3DES and SHA-1 or SHA-2")                                       \
    X(DUPLICATE, "a message with this Message-ID was already received from this partner",          \
      "nothing to do: the first copy was kept and acknowledged")                                   \
    X(STORAGE, "the payload store cannot take the message",                                        \
      "check the payload volume (space, permissions)")                                             \
    X(STORE_UNAVAILABLE, "Redis is unreachable", "check MFT_REDIS_URL and the Redis server")       \
    X(BUS_UNAVAILABLE, "Kafka did not acknowledge the event",                                      \
      "check MFT_KAFKA_BROKERS and the Kafka cluster")                                             \
    X(CONNECT, "connection failed", "check that the peer is up and reachable")                     \
    X(TIMEOUT, "the operation timed out", "check the peer and the network")                        \
    X(DNS, "the host name does not resolve", "check the host name in the URL and the DNS service") \
    X(TLS_SERVER_UNTRUSTED,                                                                        \
      "the server's TLS certificate matches no registered certificate, CA or key pin",             \
      "register the partner's TLS server certificate (named in the detail), its CA or its pin")    \
    X(TLS_SERVER_EXPIRED, "the server's TLS certificate has expired or is not yet valid",          \
      "the partner must renew its TLS server certificate; check the clocks of both sides")         \
    X(TLS_SERVER_NOT_YET_VALID, "the server's TLS certificate is not yet valid",                   \
      "check the clocks of both sides; the partner may have installed its new certificate early")  \
    X(TLS_SERVER_SELF_SIGNED, "the server's TLS certificate is self-signed and not registered",    \
      "register the partner's self-signed TLS server certificate (the detail names it), or its "   \
      "pin")                                                                                       \
    X(TLS_SERVER_CHAIN_INCOMPLETE,                                                                 \
      "the server sent its TLS certificate without the intermediate CA certificate that issued "   \
      "it",                                                                                        \
      "the partner must configure its server to send the full chain, or register the "             \
      "intermediate CA")                                                                           \
    X(TLS_PIN_CHANGED, "the server's TLS key is not the pinned key",                               \
      "the partner changed its TLS key: confirm it with the partner, then register the new pin")   \
    X(TLS_SERVER_NAME_MISMATCH, "the server's TLS certificate is not for the host of the URL",     \
      "check the host in the partner's URL, or register the server certificate itself")            \
    X(HTTP_STATUS, "the peer answered with an HTTP error status",                                  \
      "see the detail for the status; 5xx, 408 and 429 are retried, other statuses are not")       \
    X(HTTP_RESPONSE_TOO_LARGE, "the peer's HTTP answer is larger than the configured limit",       \
      "check that the URL is the partner's AS2 endpoint, or raise the response limit")             \
    X(HTTP_RESPONSE_INVALID, "the peer's answer is not valid HTTP",                                \
      "check the scheme, host and port of the partner's URL")                                      \
    X(MDN_NEGATIVE, "the partner's MDN reports that it did not process the message",               \
      "read the disposition and the partner's explanation in the detail, fix, then resend")        \
    X(MIC_MISMATCH, "the MIC in the partner's MDN is not the MIC of what we sent",                 \
      "the message was altered in transit or the partner computes its MIC differently; resend")    \
    X(MDN_SIGNATURE_INVALID, "the partner's MDN is unsigned or its signature does not verify",     \
      "register the partner's current signing certificate, or ask for unsigned MDNs")              \
    X(MDN_INVALID, "the partner's answer is not an MDN",                                           \
      "check the partner's URL; the raw answer is kept in the message's record")                   \
    X(MDN_TIMEOUT, "the partner's asynchronous MDN did not arrive in time",                        \
      "check that the partner can reach our async MDN URL, then resend")

enum mft_err_kind {
#define MFT_ERR_ENUM_(name, msg, remedy) MFT_E_##name,
    MFT_ERR_KINDS(MFT_ERR_ENUM_)
#undef MFT_ERR_ENUM_
        MFT_E__COUNT
};

struct mft_err {
    enum mft_err_kind kind;
    char message[256];
    char detail[3072];
    char remedy[256];
};

/* Returns the kind's stable name ("DECRYPT_FAILED"); never NULL. */
const char *mft_err_kind_name(enum mft_err_kind kind);

/* Returns the kind for a name, or -1 when the name is unknown. */
int mft_err_kind_from_name(const char *name);

/*
 * Starts a new error in *err: kind, the message (printf-style; NULL = the
 * kind's default), the kind's default remedy, and an empty detail (add detail
 * with mft_err_detail / mft_err_openssl after this call). Returns -1 so callers can `return
 * mft_err_set(...)`. err may be NULL (then nothing is written).
 */
int mft_err_set(struct mft_err *err, enum mft_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Appends printf-style text to err->detail (separated by "; "). Returns -1. */
int mft_err_detail(struct mft_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends OpenSSL's error queue (and clears it) to err->detail. Returns -1. */
int mft_err_openssl(struct mft_err *err);

/* Whether the kind is our own side unable to take the work right now (Redis,
 * Kafka, the payload volume, memory): the sender should try again later — an
 * HTTP 503 or a record kept for retry, never a verdict on the message. */
int mft_err_local_outage(enum mft_err_kind kind);

/* Resets *err to OK with empty strings. */
void mft_err_clear(struct mft_err *err);

#endif
