/*
 * mft_x509 — loading certificates and private keys from the files real
 * partners send (PEM, DER, PKCS#12 including the old RC2-40 encryption), and
 * the one-line descriptions of a certificate that the CLI, the API and error
 * details print (subject, issuer, serial, SHA-256 fingerprint, validity).
 *
 * Every loader takes a file path or a memory buffer; input is bounded by
 * MFT_X509_MAX_INPUT. Failures fill struct mft_err with MFT_E_CONFIG and a
 * message that says what is wrong with which file (not found, not a
 * certificate, wrong password ...), plus OpenSSL's queue in the detail.
 */
#ifndef MFT_X509_H
#define MFT_X509_H

#include "mft_err.h"

#include <stddef.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Largest certificate / key / PKCS#12 file accepted (bytes). */
#define MFT_X509_MAX_INPUT (4u << 20)

/* Loads OpenSSL's "legacy" and "default" providers into the default library
 * context, once per process (pthread_once). The loaders call it by themselves
 * when an RC2-40 / 3DES PKCS#12 needs it. Returns 0, or -1 when the legacy
 * provider is not installed. */
int mft_x509_load_legacy(void);

/* Reads a whole file (at most MFT_X509_MAX_INPUT bytes). Returns 0 and a
 * malloc'd buffer (NUL-terminated, *len excludes the NUL), or -1 with err
 * ("file not found: PATH" ...). The caller frees (wipes first for keys). */
int mft_x509_read_file(const char *path, unsigned char **buf, size_t *len, struct mft_err *err);

/*
 * Loads every certificate of a PEM file (several CERTIFICATE blocks, other
 * blocks such as private keys skipped) or one DER certificate. Returns 0 and a
 * new stack with at least one certificate that the caller frees with
 * sk_X509_pop_free(*out, X509_free), or -1 with err.
 */
int mft_x509_load_certs(const char *path, STACK_OF(X509) * *out, struct mft_err *err);
int mft_x509_load_certs_mem(const void *buf, size_t len, STACK_OF(X509) * *out,
                            struct mft_err *err);

/* Loads the first certificate of a file as above. *out is the caller's (X509_free). */
int mft_x509_load_cert(const char *path, X509 **out, struct mft_err *err);

/*
 * Loads a private key: PEM (PKCS#8, encrypted PKCS#8, PKCS#1 RSA, SEC1 EC,
 * traditional encrypted; a PEM that also holds certificates is fine), DER
 * (PKCS#8, encrypted PKCS#8, PKCS#1, SEC1) or PKCS#12 (first key).
 * password may be NULL for an unencrypted key. Returns 0 and *out (the
 * caller's, EVP_PKEY_free), or -1 with err: "wrong password", "password
 * required", "no private key in ..." are told apart.
 */
int mft_x509_load_key(const char *path, const char *password, EVP_PKEY **out, struct mft_err *err);
int mft_x509_load_key_mem(const void *buf, size_t len, const char *password, EVP_PKEY **out,
                          struct mft_err *err);

/*
 * Loads a PKCS#12 file: the key whose friendlyName is `alias` (NULL = the
 * first key), the certificate that belongs to it (same localKeyID, else the
 * one whose public key matches), and every other certificate in *chain.
 * Encrypted bags with RC2-40 / 3DES make it load the legacy provider and retry.
 * Any of key, cert, chain may be NULL when not wanted. Returns 0 and the
 * caller's objects (*chain may be an empty stack), or -1 with err ("wrong
 * password for PATH", "no key with alias ...").
 */
int mft_x509_load_pkcs12(const char *path, const char *password, EVP_PKEY **key, X509 **cert,
                         STACK_OF(X509) * *chain, struct mft_err *err);
int mft_x509_load_pkcs12_mem(const void *buf, size_t len, const char *password, const char *alias,
                             EVP_PKEY **key, X509 **cert, STACK_OF(X509) * *chain,
                             struct mft_err *err);

/* Lists the friendlyNames of the private keys in a PKCS#12 buffer, in file
 * order. Returns 0 and a malloc'd array of malloc'd strings (a key without a
 * name is ""), free with mft_x509_free_list; or -1 with err. */
int mft_x509_pkcs12_aliases(const void *buf, size_t len, const char *password, char ***aliases,
                            size_t *n, struct mft_err *err);
void mft_x509_free_list(char **list, size_t n);

/* Returns 1 when the raw bytes look like PKCS#12 (DER PFX with version 3), else 0. */
int mft_x509_is_pkcs12(const void *buf, size_t len);

/* Returns 1 when key is the private half of cert's public key, 0 otherwise
 * (also when either is NULL). */
int mft_x509_key_matches_cert(const X509 *cert, const EVP_PKEY *key);

/* PEM of cert followed by every certificate of chain (chain may be NULL).
 * Returns 0 and a malloc'd NUL-terminated string, or -1 with err. */
int mft_x509_certs_to_pem(const X509 *cert, const STACK_OF(X509) * chain, char **pem,
                          struct mft_err *err);

/* The key as unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"). Returns 0 and a
 * malloc'd NUL-terminated string that is secret: free it with
 * mft_secret_free_str (which wipes it). Or -1 with err. */
int mft_x509_key_to_pem(const EVP_PKEY *key, char **pem, struct mft_err *err);

/* Lowercase hex SHA-256 of the DER certificate, no colons. Returns 0 or -1. */
int mft_x509_fingerprint_sha256(const X509 *cert, char hex[65]);

/* Subject / issuer as one RFC 2253 line ("CN=x,O=y"); truncated to len.
 * Return 0 or -1. */
int mft_x509_subject(const X509 *cert, char *buf, size_t len);
int mft_x509_issuer(const X509 *cert, char *buf, size_t len);

/* The serial number as lowercase hex without colons or leading zeros ("0" for
 * zero, "-" prefix for a negative serial). Returns 0 or -1. */
int mft_x509_serial_hex(const X509 *cert, char *buf, size_t len);

/* notBefore / notAfter as RFC 3339 UTC ("2024-05-01T12:00:00Z"), and as
 * time_t. Return 0 or -1. */
int mft_x509_not_before(const X509 *cert, char buf[21]);
int mft_x509_not_after(const X509 *cert, char buf[21]);
int mft_x509_validity(const X509 *cert, time_t *not_before, time_t *not_after);

/* Everything a log line, an event or an operator needs to identify a
 * certificate (empty strings for a NULL cert). */
struct mft_x509_facts {
    char subject[512], issuer[512], serial[128], sha256[65], not_before[21], not_after[21];
};
void mft_x509_facts(const X509 *cert, struct mft_x509_facts *out);

/* The certificate's DNS and IP subjectAltNames as "DNS:a, IP:1.2.3.4", or
 * "no DNS/IP names, CN x" when it has none. */
void mft_x509_names(const X509 *cert, char *buf, size_t len);

/* The public key as a short text: "RSA-2048", "EC-P-256", "ED25519" ... */
int mft_x509_key_desc(const EVP_PKEY *key, char *buf, size_t len);

/* ---- strength --------------------------------------------------------------- */

/* The OpenSSL security level TLS certificates are held to: Debian's default,
 * which every SSL_CTX applies to the certificates we install and which
 * mft_x509_verify_run applies to the peer's chain. Level 2 = keys and
 * signatures of at least 112 bits of security: RSA 2048 bits, EC 224 bits,
 * no SHA-1 or MD5 signature. No setting lowers it. */
#define MFT_X509_SECURITY_LEVEL 2

/* The bits of security a level (OpenSSL's 1..5) requires: 80, 112, 128, 192,
 * 256; 0 for level 0 (anything goes). */
int mft_x509_level_bits(int level);

/*
 * Why OpenSSL's security level `level` refuses cert, in words for a message:
 * "uses a 1024-bit RSA key (80 bits of security)" and / or "is signed with
 * SHA1 (sha1WithRSAEncryption, 63 bits of security)", then ", below the
 * minimum of security level 2 (112 bits)". The signature of a self-signed
 * certificate is not judged, as OpenSSL does not judge it. Returns 1 with
 * buf filled when cert falls below the level, 0 with buf "" when it does not
 * (or cert is NULL).
 */
int mft_x509_weakness(X509 *cert, int level, char *buf, size_t len);

/* ---- path validation ------------------------------------------------------ */

/* What the peer's certificate must be good for: a TLS server (serverAuth, we
 * are the client) or a TLS client (clientAuth, we are the server). */
enum mft_x509_purpose { MFT_X509_SERVER, MFT_X509_CLIENT };

/*
 * The inputs of one path validation, the same for both engines (OpenSSL here,
 * GnuTLS in mft_tlssrv_verify). Everything is borrowed.
 */
struct mft_x509_verify_args {
    STACK_OF(X509) * roots;         /* trust anchors; a registered intermediate is one too */
    STACK_OF(X509) * intermediates; /* untrusted certificates the peer sent; may be NULL */
    X509 *leaf;                     /* the peer's certificate */
    time_t at;                      /* validation time; production passes time(NULL) */
    enum mft_x509_purpose purpose;
    const char *peer_name; /* DNS name or IP literal the leaf must name; NULL = no check */
};

/*
 * OpenSSL path validation (X509_verify_cert, RFC 5280 strict) of a->leaf with
 * a->intermediates up to one of a->roots at time a->at for a->purpose, then
 * the peer name (DNS without partial wildcards, or IP). Returns 0 when
 * accepted; -1 with err: the kind says who and why (TLS_SERVER_EXPIRED,
 * TLS_CLIENT_CERT_UNTRUSTED, TLS_SERVER_NAME_MISMATCH, NO_MEMORY ...; expired
 * only when the time is the one fault), the detail names the X.509 verify code
 * and depth and the certificate at that depth.
 */
int mft_x509_verify(const struct mft_x509_verify_args *a, struct mft_err *err);

/*
 * The path validation inside mft_x509_verify, for callers that classify the
 * refusal themselves: one X509_verify_cert run (no name check) with the given
 * extra X509_V_FLAG_* flags, keys and signatures held to security level
 * `level` (MFT_X509_SECURITY_LEVEL; 0 = any strength, to learn whether the
 * strength is a refusal's only fault). Returns 1 (verified), 0 (refused:
 * *code, *depth and a reference to the certificate concerned in *bad, or
 * NULL; free it) or -1 (out of memory).
 */
int mft_x509_verify_run(const struct mft_x509_verify_args *a, unsigned long flags, int level,
                        int *code, int *depth, X509 **bad);

/* 1 when the leaf names peer: a DNS name without partial wildcards, or an IP
 * literal against its IP addresses; else 0. */
int mft_x509_name_matches(X509 *leaf, const char *peer);

/* Why a path was refused, independent of the engine. */
enum mft_x509_fault {
    MFT_X509_UNTRUSTED,
    MFT_X509_EXPIRED,
    MFT_X509_NOT_YET_VALID,
    MFT_X509_WRONG_PURPOSE,
    MFT_X509_NAME_MISMATCH
};

/*
 * Starts err for a refusal: the kind and message for the purpose's side
 * (server / client) and the fault. depth is the certificate concerned (0 the
 * peer's, > 0 a CA, < 0 unknown: "a certificate in the chain"); peer_name is
 * named by a NAME_MISMATCH. Returns -1.
 */
int mft_x509_refuse(struct mft_err *err, enum mft_x509_purpose purpose, enum mft_x509_fault fault,
                    int depth, const char *peer_name);

#endif
