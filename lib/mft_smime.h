/*
 * mft_smime — the S/MIME (CMS) operations AS2 needs, over byte buffers:
 * decrypt EnvelopedData / AuthEnvelopedData, verify a detached signature over
 * exact bytes, sign detached (for MDNs), unwrap CompressedData with zlib
 * (Debian's OpenSSL has no zlib), and digest names.
 *
 * Protocol code: knows nothing of HTTP, Redis or Kafka. Keys are borrowed.
 * Thread-safe (no shared state). Untrusted input sizes are bounded by callers.
 */
#ifndef MFT_SMIME_H
#define MFT_SMIME_H

#include "mft_err.h"
#include "mft_registry.h"

#include <stddef.h>

/*
 * Normalises a digest name in any spelling AS2 products use ("sha1", "SHA-1",
 * "sha_256", "sha256", "SHA256", "md5") to OpenSSL's name ("SHA1", "SHA256"...)
 * in *ossl and to the RFC 5751 spelling ("sha-1", "sha-256") in *rfc.
 * Returns 0, or -1 when unknown. Both outputs point to static strings.
 */
int mft_smime_digest_name(const char *any, const char **ossl, const char **rfc);

/* Computes base64(digest(data)) into out (NUL-terminated). Returns 0 or -1. */
int mft_smime_digest_b64(const char *ossl_md, const unsigned char *data, size_t len, char *out,
                         size_t outlen, struct mft_err *err);

/* Bounds on what an attacker controls besides the content itself. */
#define MFT_SMIME_MAX_SIGNATURE ((size_t)1 << 20) /* a detached SignedData */
#define MFT_SMIME_MAX_ENVELOPE ((size_t)1 << 20)  /* an EnvelopedData without its content */
#define MFT_SMIME_INFLATE_MAX_RATIO 1000u         /* inflated / compressed, above 1 MB */
#define MFT_SMIME_INFLATE_FREE_BYTES ((size_t)1 << 20)

struct mft_smime_decrypted {
    unsigned char *data; /* malloc'd plaintext; caller frees */
    size_t len;
    char cipher[32];        /* "aes-256-cbc", "des-ede3-cbc", "aes-128-gcm" ... */
    char key_transport[32]; /* "rsaes-pkcs1-v1_5" or "rsaes-oaep" */
};

/*
 * Decrypts a DER CMS EnvelopedData or AuthEnvelopedData. The key is chosen by
 * RecipientInfo among keys[0..n) (cert + key pairs); ciphers other than AES
 * and 3DES are refused with MFT_E_ALGORITHM_REFUSED. Returns 0 or -1 with
 * MFT_E_DECRYPT_FAILED / MFT_E_MALFORMED_MESSAGE / MFT_E_ALGORITHM_REFUSED.
 */
int mft_smime_decrypt(const unsigned char *der, size_t len, const struct mft_keypair *keys,
                      size_t n_keys, struct mft_smime_decrypted *out, struct mft_err *err);

/*
 * The same, streaming, and allow_legacy = 1 also accepts RC2, RC4 and single
 * DES (a partner setting, for old products; through OpenSSL's legacy
 * provider): the ciphertext is read in place (primitive, chunked or
 * indefinite-length encryptedContent alike) and the plaintext appended to
 * `plain` (mft_spill.h), so memory stays bounded whatever the size; out->data
 * stays NULL. Returns 0 or -1 as above (MFT_E_STORAGE when the spill fails).
 */
struct mft_spill;
int mft_smime_decrypt_to(const unsigned char *der, size_t len, const struct mft_keypair *keys,
                         size_t n_keys, int allow_legacy, struct mft_spill *plain,
                         struct mft_smime_decrypted *out, struct mft_err *err);

/*
 * Marker appended to err->detail by mft_smime_verify_detached when the signer
 * is right but the content digest does not match (content altered): AS2 reports
 * that as integrity-check-failed rather than authentication-failed.
 */
#define MFT_SMIME_DIGEST_MISMATCH "content digest mismatch"

struct mft_smime_verified {
    char digest[16];  /* OpenSSL digest name from the SignerInfo OID: "SHA256" */
    char sig_alg[32]; /* "rsaEncryption", "RSASSA-PSS", "ecdsa" ... */
};

/*
 * Verifies a detached CMS SignedData (DER, sig/sig_len) over data/len exactly
 * as given (binary mode: no canonicalisation), against the signer certificate
 * `signer` (the partner's registered certificate; chain is not required). The
 * signer certificate is trusted directly: a signature by any other key fails.
 * Returns 0 or -1 with MFT_E_SIGNATURE_INVALID / MFT_E_MALFORMED_MESSAGE
 * (MFT_E_ALGORITHM_REFUSED for an MD5 signature).
 */
int mft_smime_verify_detached(const unsigned char *data, size_t len, const unsigned char *sig,
                              size_t sig_len, X509 *signer, struct mft_smime_verified *out,
                              struct mft_err *err);

/*
 * Signs data/len detached with kp (cert + key, chain added), digest ossl_md,
 * binary mode, with signing time. Returns 0 and a malloc'd DER SignedData in
 * *der and *der_len (caller frees), or -1.
 */
#define MFT_SMIME_ALG_PROTECT 1u /* add the RFC 6211 CMSAlgorithmProtection attribute */
int mft_smime_sign_detached(const unsigned char *data, size_t len, const struct mft_keypair *kp,
                            const char *ossl_md, unsigned flags, unsigned char **der,
                            size_t *der_len, struct mft_err *err);

/*
 * Unwraps a DER CMS CompressedData (RFC 3274, zlib) with zlib. The inflated
 * size is bounded by max_out and by a ratio limit against decompression bombs.
 * Returns 0 and malloc'd *out and *out_len, or -1 with MFT_E_DECOMPRESS_FAILED.
 */
int mft_smime_uncompress(const unsigned char *der, size_t len, size_t max_out, unsigned char **out,
                         size_t *out_len, struct mft_err *err);

/* The same, streaming into a spill (the input read in place, its pages
 * released behind). */
int mft_smime_uncompress_to(const unsigned char *der, size_t len, size_t max_out,
                            struct mft_spill *out, struct mft_err *err);

#endif
