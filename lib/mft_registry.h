/*
 * mft_registry — the typed, immutable snapshot of stations and partners that
 * the services work from: parsed certificates and decrypted private keys.
 *
 * It is built from the JSON records in Redis (see mft_store and
 * docs/redis-keys.md) by mft_registry_load(), and replaced as a whole when the
 * configuration version changes: readers take a reference (mft_registry_ref)
 * for the duration of one request and drop it after, so a reload never
 * changes what a request in flight sees. A snapshot is never modified after
 * load, so any number of threads may read it.
 */
#ifndef MFT_REGISTRY_H
#define MFT_REGISTRY_H

#include "mft_err.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

struct mft_store;

enum mft_mdn_signing {
    MFT_MDN_SIGN_IF_REQUESTED = 0, /* sign when the partner asks (signed-receipt-protocol) */
    MFT_MDN_SIGN_ALWAYS,
    MFT_MDN_SIGN_NEVER,
};

struct mft_keypair {
    X509 *cert;             /* owned by the snapshot */
    EVP_PKEY *key;          /* owned by the snapshot; NULL for a certificate alone */
    STACK_OF(X509) * chain; /* intermediates, may be NULL */
};

struct mft_station {
    char id[64];
    char as2_id[129];
    struct mft_keypair signing;       /* signs MDNs (and outgoing messages later) */
    struct mft_keypair encryption[4]; /* [0] current; more during a rollover */
    size_t n_encryption;
    struct mft_keypair tls; /* TLS server certificate of ingress */
    char *tls_cert_pem;     /* tls.cert + chain as PEM, for GnuTLS */
    char *tls_key_pem;      /* tls.key as PKCS#8 PEM, for GnuTLS; wiped on free */
    /* TLS client certificate egress presents to partners ("tls_client" in the
     * apply file; defaults to tls when absent). PEM copies for libcurl. */
    struct mft_keypair tls_client;
    char *tls_client_cert_pem; /* cert + chain */
    char *tls_client_key_pem;  /* PKCS#8; wiped on free */
    char async_mdn_url[512];   /* where partners send async MDNs ("" = ingress not public) */
};

enum mft_compress_order {
    MFT_COMPRESS_NONE = 0,
    MFT_COMPRESS_BEFORE_SIGNING,
    MFT_COMPRESS_AFTER_SIGNING,
};

enum mft_mdn_request { MFT_MDN_REQUEST_SYNC = 0, MFT_MDN_REQUEST_ASYNC, MFT_MDN_REQUEST_NONE };

/* How we send to a partner (the "send" object of the apply file). */
struct mft_partner_send {
    int enabled;                       /* a "send" object was given */
    char url[1024];                    /* the partner's AS2 URL (https:// or http://) */
    STACK_OF(X509) * tls_server_certs; /* accepted server certificates (exact) */
    STACK_OF(X509) * tls_server_cas;   /* or CAs that issue the server certificate */
    char tls_server_pins[4][64];       /* or pinned keys: base64 SHA-256 of the SPKI */
    size_t n_pins;
    char sign_md[16]; /* "sha256" ... ; "" = unsigned */
    char cipher[32];  /* "aes-256-cbc" ... ; "" = unencrypted */
    int rsa_oaep;     /* RSAES-OAEP key transport */
    enum mft_compress_order compress;
    int base64;               /* Content-Transfer-Encoding base64 */
    int old_micalg_names;     /* "sha1" instead of "sha-1" (RFC 3851 partners) */
    int alg_protection;       /* RFC 6211 CMSAlgorithmProtection in our signatures (default 1) */
    int content_length;       /* send Content-Length instead of chunked */
    int multiple_attachments; /* the partner takes several documents in one message */
    enum mft_mdn_request mdn; /* sync (default), async, none */
    int mdn_signed;           /* ask for a signed MDN (default 1) */
    long mdn_timeout_s;       /* async MDN deadline (default 3600) */
    long timeout_s;           /* HTTP request timeout (default 120) */
    long max_attempts;        /* transport retries, including the first (default 10) */
    long retry_base_s;        /* first back-off (default 30), doubled each time */
    long retry_max_s;         /* back-off ceiling (default 3600) */
};

/* How the partner's TLS server is authenticated (outbound): any registered
 * rule, or only one kind of registration. */
enum mft_tls_trust {
    MFT_TLS_TRUST_ANY = 0,     /* registered certificate, CA or pin: any that matches */
    MFT_TLS_TRUST_CERTIFICATE, /* only the registered certificates (exact match) */
    MFT_TLS_TRUST_CA,          /* only a chain to a registered CA, with the URL host */
    MFT_TLS_TRUST_PIN,         /* only a registered key pin */
};

#define MFT_TLS_POLICY_MAX_CIPHERS 32

/*
 * The partner's TLS policy ("tls_policy" in the apply file), both directions:
 * versions and cipher suites allowed with this partner, how its server is
 * trusted (outbound) and whether it must present a client certificate
 * (inbound). Defaults: TLS 1.2..1.3, the library's secure suites, any trust
 * rule, certificate required.
 */
struct mft_tls_policy {
    unsigned min_version, max_version;            /* 0x0303 (TLS 1.2) or 0x0304 (TLS 1.3) */
    char ciphers[MFT_TLS_POLICY_MAX_CIPHERS][64]; /* IANA names ("TLS_AES_128_GCM_SHA256",
                                                     "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384");
                                                     none = the default suites */
    unsigned short cipher_ids[MFT_TLS_POLICY_MAX_CIPHERS]; /* their IANA ids, same order */
    size_t n_ciphers;
    enum mft_tls_trust trust;
    int client_cert_optional; /* inbound: the partner may connect without a certificate */
};

/* Parses a "tls_policy" object (NULL or JSON null = the defaults) into *out.
 * Used by the registry and by mftctl apply, so both accept the same files.
 * Returns 0, or -1 with a CONFIG error naming the member. */
struct json_t;
int mft_tls_policy_parse(const struct json_t *obj, struct mft_tls_policy *out, struct mft_err *err);

/* "TLSv1.2..TLSv1.3" (or "TLSv1.3" when min = max) into buf. */
void mft_tls_policy_versions(const struct mft_tls_policy *p, char *buf, size_t len);

/* Returns 1 when the policy allows the cipher suite with this IANA id (always
 * when it names none). Ids, not names: GnuTLS and OpenSSL spell suites
 * differently ("..._CBC_SHA1" / "..._CBC_SHA"). */
int mft_tls_policy_allows_suite(const struct mft_tls_policy *p, unsigned suite_id);

struct mft_partner {
    char id[64];
    char station_id[64];
    char as2_id[129];
    X509 *signing_cert;         /* verifies the partner's signatures; may be NULL */
    X509 *encryption_cert;      /* for sending later; may be NULL */
    STACK_OF(X509) * tls_certs; /* client certificates accepted as this partner */
    STACK_OF(X509) * tls_cas;   /* CAs: any certificate they issue is this partner */
    int require_signature;
    int require_encryption;
    int allow_legacy_encryption; /* accept RC2, RC4 and single DES from this partner */
    enum mft_mdn_signing mdn_signing;
    struct mft_partner_send send;
    struct mft_tls_policy tls_policy;
    const struct mft_station *station; /* resolved at load */
};

struct mft_registry {
    long long version;           /* mft:config:version at load */
    unsigned long long load_seq; /* this process's count of loads: unique per snapshot, even
                                    when Redis lost its data and the version starts again */
    struct mft_station *stations;
    size_t n_stations;
    struct mft_partner *partners;
    size_t n_partners;
    /* private */
    int refs_;
};

/*
 * Loads every station and partner from the store and decrypts private keys with
 * the 32-byte master key. Returns 0 and a snapshot with one reference, or -1 with
 * err set (a record that does not parse names the record in err->detail).
 */
int mft_registry_load(struct mft_store *store, const unsigned char master_key[32],
                      struct mft_registry **out, struct mft_err *err);

/*
 * Polls mft:config:version. Returns 1 when it differs from *seen (the caller
 * reloads and, once that worked, sets *seen to *now), 0 when there is nothing
 * to reload, -1 with err when Redis cannot say. A version back at 0 (the key
 * is gone) while one was in force means Redis lost its data (restarted
 * without persistence, flushed): then 0, *seen becomes 0 and a
 * config.missing warning is logged, so the configuration in force keeps
 * serving until one is applied again, which is then loaded whatever its
 * version number.
 */
int mft_registry_poll(struct mft_store *store, long long *seen, long long *now,
                      struct mft_err *err);

/* Reference counting (thread-safe). unref frees at zero; both accept NULL. */
struct mft_registry *mft_registry_ref(struct mft_registry *reg);
void mft_registry_unref(struct mft_registry *reg);

/* Lookups; return borrowed pointers valid while the reference is held, or NULL. */
const struct mft_station *mft_registry_station_by_as2(const struct mft_registry *reg,
                                                      const char *as2_id);
const struct mft_partner *mft_registry_partner_by_as2(const struct mft_registry *reg,
                                                      const struct mft_station *st,
                                                      const char *as2_id);
const struct mft_partner *mft_registry_partner(const struct mft_registry *reg, const char *id);

#endif
