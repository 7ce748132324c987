/*
 * mft_tls — the raw facts of one TLS handshake, the same for both directions.
 *
 * A failed handshake is explained from facts, never from a single library
 * error code: the server side (mft_tlssrv, GnuTLS) and the client side
 * (mft_httpc, OpenSSL) each fill a struct mft_tls_facts while the handshake
 * runs — versions offered and accepted, alerts with their direction, the
 * X.509 verification result, both sides' certificates — and derive the error
 * kind, message and remedy from it. The facts travel unchanged in events
 * (TlsHandshake in events.proto) and in the error's detail, so an operator
 * can check the verdict against what was seen.
 *
 * Library-neutral: no GnuTLS or OpenSSL SSL types here (X509 only, for the
 * certificate facts).
 */
#ifndef MFT_TLS_H
#define MFT_TLS_H

#include "mft_err.h"
#include "mft_x509.h"

#include <openssl/x509.h>

#define MFT_TLS_MAX_ALERTS 8

/* One TLS alert: who sent it, its level and its RFC 8446 description code. */
struct mft_tls_alert {
    int sent;  /* 1 = we sent it, 0 = the peer sent it */
    int fatal; /* 1 = fatal, 0 = warning */
    int code;  /* AlertDescription, e.g. 48 unknown_ca */
};

/* A certificate's identifying facts plus its DNS / IP names. */
struct mft_tls_cert {
    int present;
    struct mft_x509_facts x;
    char names[512]; /* "DNS:a, IP:1.2.3.4" or "no DNS/IP names, CN x" */
    char key[32];    /* "RSA-2048", "EC-P-256" ... */
};

struct mft_tls_facts {
    char direction[9];      /* "inbound" (a partner dialled us) | "outbound" (we dialled) */
    char time[32];          /* RFC 3339 UTC with milliseconds, when the handshake started */
    char peer_address[80];  /* "ip:port" of the other side */
    char sni[256];          /* inbound: the name the client asked for; outbound: the name we sent */
    char url_host[256];     /* outbound: the URL's host */
    char partner_id[128];   /* the partner: known, or the best guess */
    char partner_basis[16]; /* how partner_id was found: "url", "sni", "certificate", "" */
    char station_id[128];   /* our station whose certificate was in use */
    char versions_offered[32];  /* by the client: "TLSv1.2..TLSv1.3" or "TLSv1.1" (its max) */
    char versions_accepted[32]; /* by us (our policy): "TLSv1.2..TLSv1.3" */
    char version[16];           /* negotiated; "" when the handshake did not get there */
    char cipher[64];            /* negotiated */
    char library_error[256]; /* "gnutls -110 GNUTLS_E_...", "openssl error:0A000418:...", curl's */
    long verify_code;        /* X.509 result: OpenSSL X509_V_ERR_* (outbound) or GnuTLS status
                                bits (inbound); 0 = verified or not verified at all */
    char verify_result[256]; /* the same in words; "" when verification did not run */
    struct mft_tls_alert alerts[MFT_TLS_MAX_ALERTS];
    unsigned n_alerts;
    struct mft_tls_cert peer_cert;  /* what the other side presented (leaf) */
    struct mft_tls_cert local_cert; /* our certificate in use for this handshake */
};

/* Resets f and sets its direction ("inbound" / "outbound") and start time. */
void mft_tls_facts_init(struct mft_tls_facts *f, const char *direction);

/* Records an alert (ignored once MFT_TLS_MAX_ALERTS are kept). */
void mft_tls_facts_alert(struct mft_tls_facts *f, int sent, int fatal, int code);

/* Fills a certificate's facts (present = 0 for NULL). */
void mft_tls_cert_fill(struct mft_tls_cert *out, const X509 *cert);

/* Returns the first fatal alert in the given direction (sent = 1: ours), or
 * NULL. */
const struct mft_tls_alert *mft_tls_facts_fatal(const struct mft_tls_facts *f, int sent);

/* The RFC 8446 / RFC 5246 name of an alert description ("unknown_ca"), or
 * "unknown". OpenSSL 3.0's and GnuTLS's own tables differ and lack some. */
const char *mft_tls_alert_name(int code);

/* A protocol version number (0x0303) as "TLSv1.2"; "" for 0, "unknown" else. */
const char *mft_tls_version_name(unsigned version);

/* The IANA id of a cipher suite named by its IANA name (TLS 1.2 names with or
 * without "_WITH_", any case), or -1 when OpenSSL does not know it. */
int mft_tls_suite_id(const char *iana_name);

/* The IANA name of a cipher suite id (0x1301 -> "TLS_AES_128_GCM_SHA256"), or
 * NULL. One table for both directions, so facts and policies use one naming. */
const char *mft_tls_suite_name(unsigned id);

/*
 * Appends the raw facts to err->detail as one "tls: key=value; ..." run
 * (direction, peer, SNI, versions, alerts with direction, verify result,
 * library error, both certificates), so that a log line alone tells the whole
 * story. Returns -1 like the other mft_err helpers.
 */
int mft_tls_facts_detail(const struct mft_tls_facts *f, struct mft_err *err);

#endif
