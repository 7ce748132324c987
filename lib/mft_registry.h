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
};

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
    enum mft_mdn_signing mdn_signing;
    const struct mft_station *station; /* resolved at load */
};

struct mft_registry {
    long long version; /* mft:config:version at load */
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
