/*
 * mft_as2_send — building an outgoing AS2 message (RFC 4130) from a payload:
 * MIME entity → [compress] → [sign] → [compress] → [encrypt], per the
 * partner's settings, with the MIC we will expect back in the MDN. Also wraps
 * any MIME entity in multipart/signed (MDNs use that too).
 *
 * Protocol code: buffers in, buffers out; nothing of HTTP, Redis or Kafka.
 * Keys and certificates are borrowed. Thread-safe.
 */
#ifndef MFT_AS2_SEND_H
#define MFT_AS2_SEND_H

#include "mft_buf.h"
#include "mft_err.h"
#include "mft_registry.h"

enum mft_as2_compress {
    MFT_AS2_COMPRESS_NONE = 0,
    MFT_AS2_COMPRESS_BEFORE_SIGNING, /* MIC over the compressed entity */
    MFT_AS2_COMPRESS_AFTER_SIGNING,
};

struct mft_as2_send_opts {
    const char *sign_md; /* any spelling ("sha256", "SHA-256"); NULL or "" = unsigned */
    const char *cipher;  /* "aes-128-cbc", "aes-192-cbc", "aes-256-cbc", "des-ede3-cbc",
                            "aes-128-gcm", "aes-256-gcm"; NULL or "" = unencrypted */
    int rsa_oaep;        /* RSAES-OAEP (SHA-256) key transport instead of PKCS#1 v1.5 */
    enum mft_as2_compress compress;
    int base64;            /* Content-Transfer-Encoding base64 (payload, signature, body) */
    int old_micalg_names;  /* write micalg as "sha256" (RFC 3851) instead of "sha-256" */
    int no_alg_protection; /* leave out the RFC 6211 CMSAlgorithmProtection signed
                              attribute (for partners whose software rejects it) */
    const char *mic_md;    /* MIC digest of an unsigned message: the one asked for in
                              Disposition-Notification-Options, or "sha1" when none is
                              asked (RFC 4130's default); NULL = "sha-256" */
};

struct mft_as2_message {
    char *content_type;            /* HTTP Content-Type; malloc'd */
    char *content_disposition;     /* HTTP Content-Disposition; malloc'd */
    const char *transfer_encoding; /* "binary" or "base64" (static) */
    unsigned char *body;           /* HTTP body; malloc'd */
    size_t len;
    char mic_b64[100]; /* the MIC the partner's MDN must return */
    char mic_alg[16];  /* its algorithm as we write it ("sha-256") */
};

/*
 * Builds the message for payload (len bytes, file name and MIME type as the
 * partner will see them), signed with signer (when opts->sign_md) and
 * encrypted for recipient (when opts->cipher). Returns 0 and fills *out (free
 * with mft_as2_message_free), or -1 with err set (MFT_E_ALGORITHM_REFUSED for
 * an unknown digest or cipher, MFT_E_CONFIG for a missing key or certificate).
 */
int mft_as2_build(const unsigned char *payload, size_t len, const char *filename,
                  const char *payload_type, const struct mft_keypair *signer, X509 *recipient,
                  const struct mft_as2_send_opts *opts, struct mft_as2_message *out,
                  struct mft_err *err);

/* One document of a message with several (EDIINT multiple-attachments). */
struct mft_as2_part {
    const unsigned char *data;
    size_t len;
    const char *filename;     /* as the partner will see it; NULL = "payload.bin" */
    const char *content_type; /* NULL = application/octet-stream */
};

#define MFT_AS2_MAX_PARTS 16

/*
 * The same for 1..MFT_AS2_MAX_PARTS documents: several travel as one
 * multipart/related entity (RFC 2387; its type is the first document's), signed
 * and encrypted as a whole, each document with its own type and file name —
 * only for a partner that announces EDIINT-Features: multiple-attachments.
 */
int mft_as2_build_parts(const struct mft_as2_part *parts, size_t n_parts,
                        const struct mft_keypair *signer, X509 *recipient,
                        const struct mft_as2_send_opts *opts, struct mft_as2_message *out,
                        struct mft_err *err);

/* Frees what *m owns; accepts NULL or a zeroed struct. */
void mft_as2_message_free(struct mft_as2_message *m);

/*
 * Wraps a MIME entity (its headers, blank line and body: the exact bytes that
 * are signed) in multipart/signed with a detached, base64 CMS signature by
 * signer with digest md_any. On success *content_type is the malloc'd value
 * of the new Content-Type and *body receives the multipart body. Returns 0
 * or -1.
 */
#define MFT_AS2_SIGN_OLD_MICALG 1u  /* micalg=sha256 (RFC 3851) instead of sha-256 */
#define MFT_AS2_SIGN_ALG_PROTECT 2u /* add the RFC 6211 CMSAlgorithmProtection attribute */
int mft_as2_sign_entity(const unsigned char *entity, size_t len, const struct mft_keypair *signer,
                        const char *md_any, unsigned flags, char **content_type,
                        struct mft_buf *body, struct mft_err *err);

/* Makes a random MIME boundary ("----=_Part_mft_<32 hex>"). Returns 0 or -1. */
int mft_as2_boundary(char *out, size_t outlen, struct mft_err *err);

#endif
