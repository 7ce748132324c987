/*
 * mft_as2 — receiving one AS2 message (RFC 4130), from the HTTP headers and
 * body bytes to the payload(s), the MIC and the disposition, with files alone:
 * no HTTP server, Redis or Kafka here.
 *
 * Order of work: outer entity = HTTP Content-Type / Content-Transfer-Encoding +
 * body; undo layers (EnvelopedData -> multipart/signed -> CompressedData, in
 * whatever order they come, at most MFT_AS2_MAX_LAYERS); the MIC is computed
 * over the exact received bytes of the signed entity (first part of
 * multipart/signed, headers included) or, for an unsigned message, over the
 * innermost MIME entity as received (RFC 4130 §7.3.1), with the first digest of
 * the partner's signed-receipt-micalg we support, else the digest the
 * signature uses (its CMS OID, not the micalg label), else SHA-1; then the
 * partner's policy (signature / encryption required) is checked.
 */
#ifndef MFT_AS2_H
#define MFT_AS2_H

#include "mft_err.h"
#include "mft_registry.h"

#include <stddef.h>

struct mft_as2_spills;

#define MFT_AS2_MAX_LAYERS 6
#define MFT_AS2_MAX_PAYLOADS 16
#define MFT_AS2_MAX_MESSAGE_ID 998 /* an MDN repeats it in one header field (RFC 5322) */

struct mft_as2_request {
    const char *content_type;              /* HTTP Content-Type (required) */
    const char *content_transfer_encoding; /* HTTP header, may be NULL */
    const char *content_disposition;       /* HTTP header, may be NULL (file name fallback) */
    const char *disposition_notification_options; /* may be NULL */
    const unsigned char *body;
    size_t body_len;
    size_t max_inflated; /* bound on decompressed size */
    /* Large intermediate layers (decrypted, inflated, transfer-decoded) go to
     * unlinked temporary files in spill_dir once they pass spill_threshold
     * bytes (0 = MFT_AS2_SPILL_DEFAULT), so memory stays bounded whatever the
     * message size; NULL keeps everything in memory. */
    const char *spill_dir;
    size_t spill_threshold;
};

#define MFT_AS2_SPILL_DEFAULT ((size_t)4 << 20)

struct mft_as2_payload {
    const unsigned char *data; /* decoded bytes as the partner sent them, owned by the
                                  result (the request body, memory or a mapped file) */
    size_t len;
    char filename[256];     /* from the part's Content-Disposition, else the HTTP one, else "" */
    char content_type[256]; /* the payload's Content-Type, as given */
};

struct mft_as2_result {
    int is_signed, is_encrypted, is_compressed;
    char sign_digest[16]; /* OpenSSL name from the CMS OID ("SHA256"), "" if unsigned */
    char cipher[32];      /* "aes-256-cbc" ..., "" if not encrypted */
    char mic_b64[128];    /* base64 MIC */
    char mic_alg[16];     /* as to be written in the MDN: "sha-256" (or the partner's spelling) */
    int signed_receipt;   /* the partner asked for a signed MDN */
    char receipt_micalg[16]; /* OpenSSL digest name for signing the MDN ("SHA256") */
    struct mft_as2_payload payloads[MFT_AS2_MAX_PAYLOADS];
    size_t n_payloads;
    struct mft_as2_spills *spills; /* what the layers and payloads live in */
};

/*
 * Processes one message for station st from partner p (both borrowed).
 * On success returns 0 and fills *res (free with mft_as2_result_free). On
 * failure returns -1 with err->kind one of MFT_E_MALFORMED_MESSAGE,
 * MFT_E_DECRYPT_FAILED, MFT_E_SIGNATURE_INVALID, MFT_E_SIGNATURE_REQUIRED,
 * MFT_E_ENCRYPTION_REQUIRED, MFT_E_DECOMPRESS_FAILED, MFT_E_ALGORITHM_REFUSED;
 * *res still holds what was learnt (MIC, flags, receipt options) for the
 * negative MDN, and must still be freed.
 */
int mft_as2_receive(const struct mft_as2_request *req, const struct mft_station *st,
                    const struct mft_partner *p, struct mft_as2_result *res, struct mft_err *err);

/* Frees what *res owns; accepts a zeroed or NULL res. */
void mft_as2_result_free(struct mft_as2_result *res);

/*
 * Maps an error kind to the RFC 4130 disposition modifier:
 * "decryption-failed", "authentication-failed", "integrity-check-failed",
 * "insufficient-message-security", "unknown-trading-partner",
 * "decompression-failed" (RFC 5402), "unexpected-processing-error". Static string.
 */
const char *mft_as2_disposition_modifier(enum mft_err_kind kind);

/*
 * The same from a whole error: a SIGNATURE_INVALID whose detail carries
 * MFT_SMIME_DIGEST_MISMATCH (right signer, altered content) is
 * "integrity-check-failed"; other kinds as mft_as2_disposition_modifier.
 * Accepts NULL. Static string.
 */
const char *mft_as2_disposition_modifier_err(const struct mft_err *err);

/* Writes an AS2 id as an AS2-From / AS2-To header value: quoted when it
 * holds a space, a TAB or a quote (RFC 4130 §6.2), as is otherwise. */
void mft_as2_id_header(const char *id, char *out, size_t outlen);

/* Copies a Message-ID without its angle brackets ("<a@b>" -> "a@b"). */
void mft_as2_bare_message_id(const char *in, char *out, size_t outlen);

#endif
