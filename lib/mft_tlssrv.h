/*
 * mft_tlssrv — server-side mutual TLS for libmicrohttpd (GnuTLS). All
 * GnuTLS-specific code of the product lives here.
 *
 * libmicrohttpd only *requests* a client certificate and never verifies it, so
 * this module takes over per session: it requires a certificate, verifies it
 * (purpose clientAuth) against an application-owned trust snapshot built from
 * the partners' registered certificates and CAs, serves the station's TLS
 * certificate through the certificate callback (chosen by SNI), and watches
 * the handshake (ClientHello version, client Certificate message, alerts) so
 * that a failed handshake can be explained with a precise error kind.
 *
 * Trust snapshots are immutable and reference-counted: mft_tlssrv_update()
 * swaps in a new one without a restart; a connection keeps the snapshot it
 * started with. Thread-safe.
 */
#ifndef MFT_TLSSRV_H
#define MFT_TLSSRV_H

#include "mft_err.h"
#include "mft_registry.h"
#include "mft_tls.h"
#include "mft_x509.h"

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <openssl/x509.h>

struct mft_tlssrv;
struct mft_tlssrv_conn;

/* Default priority: TLS 1.2 and 1.3 only, secure ciphers, in the client's
 * order of preference (as OpenSSL and nginx by default). Not
 * %SERVER_PRECEDENCE: with it GnuTLS answers a TLS 1.3 key share for any group
 * but its own first choice (P-256) with a HelloRetryRequest, so every OpenSSL
 * or Java client, which sends an X25519 share, paid a round trip, a second key
 * exchange and, with libmicrohttpd's Nagle-enabled sockets, often a 40 ms
 * delayed-ACK stall (./mft bench tls). */
#define MFT_TLSSRV_DEFAULT_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

/* Creates the module with no trust (every client is rejected until the first
 * update) and the default priorities. Returns 0 or -1. */
int mft_tlssrv_create(struct mft_tlssrv **out, struct mft_err *err);

/*
 * Tells the module the GnuTLS priority string the listener uses, so that a
 * ClientHello sharing no version or no cipher suite with it is refused with
 * the right alert and named in the error (GnuTLS itself would close without
 * an alert). Call before the listener starts. Returns 0, or -1 with a CONFIG
 * error when the string does not parse.
 */
int mft_tlssrv_set_priorities(struct mft_tlssrv *srv, const char *priorities, struct mft_err *err);
void mft_tlssrv_destroy(struct mft_tlssrv *srv);

/* Builds a new trust snapshot from the registry (partners' TLS client
 * certificates, CAs and TLS policies; stations' TLS keypairs) and swaps it
 * in. Returns 0 or -1 (the previous snapshot stays in force): CONFIG for an
 * unusable certificate or key, TLS_OWN_KEY_MISMATCH when a station's TLS key
 * is not its certificate's (never served: at start-up ingress refuses to
 * start, on a reload it keeps the previous snapshot). */
int mft_tlssrv_update(struct mft_tlssrv *srv, const struct mft_registry *reg, struct mft_err *err);

/* Returns non-zero when at least one station has a TLS keypair. */
int mft_tlssrv_ready(struct mft_tlssrv *srv);

/* How many verified client chains each trust snapshot remembers (0..64,
 * 64 by default; 0: every handshake path-checks the client's chain). Set
 * before serving. Returns 0, or -1 with CONFIG outside the range. */
int mft_tlssrv_set_verified_chains(struct mft_tlssrv *srv, long n, struct mft_err *err);

/* 1 when c's handshake finished with the client's chain taken as verified
 * from the snapshot's memory of chains verified before (same certificates,
 * same trust, within every certificate's and its issuers' validity, at most
 * 5 minutes old) instead of path-checked again, else 0. */
int mft_tlssrv_conn_verified_from_memory(const struct mft_tlssrv_conn *c);

/* The certificate callback to give to MHD_OPTION_HTTPS_CERT_CALLBACK. */
gnutls_certificate_retrieve_function2 *mft_tlssrv_cert_callback(void);

/*
 * Called from MHD's connection-started notification with the connection's
 * GnuTLS session: takes a reference on the current snapshot, requires the
 * client certificate (only requests it when a partner's policy makes it
 * optional), verifies it, installs the handshake hooks and the transport
 * read wrapper. Returns a per-connection context (free with
 * mft_tlssrv_conn_end), or NULL on OOM.
 */
struct mft_tlssrv_conn *mft_tlssrv_conn_begin(struct mft_tlssrv *srv, gnutls_session_t session,
                                              const char *peer_address);

/* Returns 1 when the handshake completed (a request can be served). */
int mft_tlssrv_conn_established(const struct mft_tlssrv_conn *c);

/* Holds an established connection to partner_id's TLS policy (version and
 * cipher suite negotiated). Returns 0, or -1 with TLS_NO_COMMON_PROTOCOL /
 * TLS_NO_SHARED_CIPHER in err. The handshake already refused what no
 * candidate partner permits; this is for the partner a request names. */
struct mft_tls_policy;
int mft_tlssrv_conn_policy(const struct mft_tlssrv_conn *c, const struct mft_tls_policy *pol,
                           const char *partner_id, struct mft_err *err);

/*
 * For a connection whose handshake did not complete: completes the raw facts
 * (time, certificates, library error, partner guess) and derives the error
 * from them: what our callbacks refused (ClientHello: no common version or
 * suite; empty client Certificate; verification; the partner's policy), bytes
 * that are not TLS, the client's own alerts (about our certificate: with a
 * self-check of it), and the TLS 1.3 case where the client's alert cannot be
 * read. err->detail ends with the facts. Returns 0 when there is something to
 * report, 1 when the peer closed without sending a byte (a probe).
 */
int mft_tlssrv_conn_failure(struct mft_tlssrv_conn *c, struct mft_err *err);

/* The raw facts of the connection's handshake (borrowed from c). The
 * certificates and time are filled by mft_tlssrv_conn_failure only; version,
 * cipher, SNI, offered versions and alerts are always there. */
const struct mft_tls_facts *mft_tlssrv_conn_facts(const struct mft_tlssrv_conn *c);

/* Returns 1 when the client sent a certificate (whatever parsing it gives). */
int mft_tlssrv_conn_has_cert(const struct mft_tlssrv_conn *c);

/* The verified client certificate of an established connection (borrowed, may
 * be NULL), and its chain as sent by the client (borrowed, may be NULL). Made
 * from the kept DER on the first call: the handshake itself needs no OpenSSL
 * form, and OpenSSL 3 parses certificates slowly. */
X509 *mft_tlssrv_conn_peer(struct mft_tlssrv_conn *c);
STACK_OF(X509) * mft_tlssrv_conn_peer_chain(struct mft_tlssrv_conn *c);

/* For the libFuzzer harness (tests/fuzz/fuzz_tls_hello.c): runs the parsers
 * of a client's untrusted handshake bytes — the record tracker, the
 * ClientHello body, a Certificate message's leaf and its OpenSSL parse — on a
 * throwaway connection. */
void mft_tlssrv_fuzz_input(const unsigned char *data, size_t len);

/* Ends the connection context and drops its snapshot reference; accepts NULL. */
void mft_tlssrv_conn_end(struct mft_tlssrv_conn *c);

/*
 * Returns 1 when cert is registered for partner p: equal to one of its
 * tls_certs, or issued (with the client's intermediates) by one of its tls_cas
 * for clientAuth; 0 otherwise.
 */
int mft_tlssrv_cert_is_partners(X509 *cert, STACK_OF(X509) * chain, const struct mft_partner *p);

/*
 * The GnuTLS validation the handshake runs (the same code), on its own inputs:
 * a->roots become a trust list, a->leaf and a->intermediates the peer's chain
 * (at most 16 certificates). The leaf's time and EKU, then the path for
 * a->purpose at a->at, then a->peer_name. Returns 0 when accepted, or -1 with
 * err (kinds as mft_x509_verify; the detail is GnuTLS's status text).
 */
int mft_tlssrv_verify(const struct mft_x509_verify_args *a, struct mft_err *err);

#endif
