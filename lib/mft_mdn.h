/*
 * mft_mdn — AS2 Message Disposition Notifications (RFC 4130 §7, RFC 3798):
 * reading the partner's Disposition-Notification-Options, building our MDN
 * (unsigned multipart/report, or multipart/signed around it), and parsing the
 * MDN a partner sends back (signed or not).
 *
 * Protocol code only: byte buffers in, byte buffers out; nothing here knows
 * HTTP servers, Redis or Kafka. Thread-safe (no shared state); keys borrowed.
 */
#ifndef MFT_MDN_H
#define MFT_MDN_H

#include "mft_err.h"
#include "mft_mime.h"
#include "mft_registry.h"
#include "mft_smime.h"

#include <stddef.h>

#define MFT_MDN_MAX_MICALGS 8
#define MFT_MDN_MAX_OPTIONS_LEN 4096 /* longer Disposition-Notification-Options are refused */

/* What the sender of a message asked for in Disposition-Notification-Options. */
struct mft_mdn_options {
    int signed_requested; /* signed-receipt-protocol lists pkcs7-signature */
    int signed_required;  /* ... with importance "required" */
    int micalg_required;  /* signed-receipt-micalg importance is "required" */
    /* signed-receipt-micalg values in the partner's order and spelling ("sha-256",
     * "SHA1" ...); at most MFT_MDN_MAX_MICALGS, further ones are ignored. */
    char micalgs[MFT_MDN_MAX_MICALGS][32];
    size_t n_micalgs;
};

/*
 * Parses a Disposition-Notification-Options header value, e.g.
 * "signed-receipt-protocol=optional, pkcs7-signature;
 *  signed-receipt-micalg=optional, sha-256, sha1"
 * in any order, spacing or case; values may be quoted; unknown attributes are
 * ignored; an attribute whose importance is missing is read as optional.
 * NULL or an empty value is no option at all (returns 0, *out zeroed).
 * Returns 0, or -1 with MFT_E_MALFORMED_MESSAGE (a parameter without '=', a
 * value too long, the header longer than MFT_MDN_MAX_OPTIONS_LEN); *out then
 * still holds what was read before the fault.
 */
int mft_mdn_parse_options(const char *dno, struct mft_mdn_options *out, struct mft_err *err);

/* What our MDN says. Every string is borrowed and must not contain CR or LF
 * (except text); NULL optional fields are left out. */
struct mft_mdn_info {
    const char *reporting_ua;        /* required, e.g. "mft" */
    const char *original_recipient;  /* our AS2 id as the sender addressed it; optional */
    const char *final_recipient;     /* our AS2 id; required. Written "rfc822; <id>" */
    const char *original_message_id; /* as received, angle brackets kept; optional */
    const char *disposition_mode;    /* NULL = "automatic-action/MDN-sent-automatically" */
    /* type[/modifier], e.g. "processed", "processed/error: decryption-failed",
     * "processed/warning: duplicate-document", "failed/Failure: unsupported format" */
    const char *disposition;
    const char *mic_b64; /* optional: Received-Content-MIC: <mic_b64>, <mic_alg> */
    const char *mic_alg; /* required when mic_b64 is set, e.g. "sha-256" */
    const char *text;    /* human-readable part; LF or CRLF line ends; optional */
};

/*
 * Builds an MDN. The report is a multipart/report;
 * report-type=disposition-notification entity (part 1 text/plain, part 2
 * message/disposition-notification, CRLF line ends, random boundary). When
 * signer is not NULL (cert + key borrowed), the report entity (its MIME
 * headers + body, exact bytes) is signed detached with digest sign_md (any
 * spelling, NULL = sha-256) and wrapped in multipart/signed;
 * protocol="application/pkcs7-signature"; micalg=<rfc spelling>, whose second
 * part is application/pkcs7-signature; name=smime.p7s in base64.
 * *content_type (malloc'd string) is the HTTP Content-Type of the response and
 * *body and *body_len (malloc'd) the HTTP body: the top-level entity's body.
 * Caller frees both. Returns 0, or -1 with err set (MFT_E_INTERNAL for a
 * missing or invalid field, MFT_E_ALGORITHM_REFUSED for an unknown digest,
 * what mft_smime_sign_detached reports); outputs are then NULL.
 */
int mft_mdn_build(const struct mft_mdn_info *info, const struct mft_keypair *signer,
                  const char *sign_md, char **content_type, unsigned char **body, size_t *body_len,
                  struct mft_err *err);

/* A parsed MDN. Strings are NUL-terminated copies; spans borrow the body
 * given to mft_mdn_parse. Values too long for a field are cut (text only) or
 * refused (the others). */
struct mft_mdn {
    int is_signed;                 /* multipart/signed around the report */
    char micalg[32];               /* micalg parameter of multipart/signed, as given */
    struct mft_span signed_entity; /* exact bytes of the signed report entity */
    struct mft_span signature;     /* signature part body, still transfer-encoded */
    char signature_cte[32];        /* its Content-Transfer-Encoding ("" = binary) */

    char reporting_ua[256];
    char original_recipient[256];        /* address only ("mecas2"); Final-Recipient if absent */
    char original_recipient_type[32];    /* "rfc822" as given, "" when absent */
    char final_recipient[256];           /* address only */
    char original_message_id[1000];      /* as written, angle brackets kept */
    char disposition_raw[1024];          /* the Disposition field as written (unfolded) */
    char disposition_mode[128];          /* lowercase "automatic-action/mdn-sent-automatically" */
    char disposition_type[64];           /* lowercase "processed", "failed" ... */
    char disposition_modifier[560];      /* lowercase "error: decryption-failed", "" if none */
    char disposition_modifier_kind[32];  /* lowercase "error", "warning", "failure" ... */
    char disposition_modifier_text[512]; /* lowercase "decryption-failed" ("" if none) */
    char mic_b64[128];                   /* Received-Content-MIC value ("" if absent) */
    char mic_alg[32];                    /* its algorithm in the partner's spelling */
    char text[4096];                     /* human-readable part, decoded, maybe cut */
    int text_truncated;
};

/*
 * Parses an MDN received as an HTTP response (or async POST): content_type is
 * the HTTP Content-Type and body/len the HTTP body. When content_type is NULL,
 * body is read as a whole MIME entity and its own Content-Type is used.
 * Accepts multipart/signed (with multipart/report inside) and unsigned
 * multipart/report. Returns 0 and *out, or -1 with MFT_E_MALFORMED_MESSAGE and
 * a message that says why this is not an MDN (the detail quotes the start of
 * the body, e.g. an HTML error page). The signature is not verified here: see
 * mft_mdn_verify.
 */
int mft_mdn_parse(const char *content_type, const unsigned char *body, size_t len,
                  struct mft_mdn *out, struct mft_err *err);

enum mft_mdn_status {
    MFT_MDN_POSITIVE = 0,     /* processed, no modifier */
    MFT_MDN_POSITIVE_WARNING, /* processed/warning (or another non-error modifier) */
    MFT_MDN_NEGATIVE,         /* processed/error, processed/failure, failed, anything else */
};

/* Classifies a parsed MDN. */
enum mft_mdn_status mft_mdn_classify(const struct mft_mdn *m);

/*
 * Verifies the signature of a parsed signed MDN against the partner's signing
 * certificate (borrowed). `out` may be NULL. Returns 0, or -1 with
 * MFT_E_SIGNATURE_REQUIRED (the MDN is not signed), MFT_E_MALFORMED_MESSAGE or
 * MFT_E_SIGNATURE_INVALID. The MDN's body buffer must still be alive.
 */
int mft_mdn_verify(const struct mft_mdn *m, X509 *signer, struct mft_smime_verified *out,
                   struct mft_err *err);

/*
 * Judges a partner's MDN for a message we sent: expected_mic / expected_alg
 * are what mft_as2_build computed (alg in any spelling: "sha-256" equals
 * "sha256" and "SHA_256"; the MICs compared by value, base64-decoded, so line
 * breaks, blanks or missing padding in the partner's field do not matter). When require_signed is
 * set the MDN must be signed; a signed MDN is always verified against signer (borrowed; NULL with a
 * signed MDN = MDN_SIGNATURE_INVALID). A message sent unsigned has no meaningful MIC check when
 * expected_mic is NULL or "". Returns 0 when the partner processed the message (a warning modifier
 * included) and the MIC matches, or -1 with MDN_NEGATIVE (detail: disposition and text),
 * MIC_MISMATCH (both MICs), MDN_SIGNATURE_INVALID. *verified_out (may be NULL) tells whether the
 * MDN's signature was verified.
 */
int mft_mdn_evaluate(const struct mft_mdn *m, X509 *signer, int require_signed,
                     const char *expected_mic, const char *expected_alg, int *verified_out,
                     struct mft_err *err);

/* Returns 1 when two digest names spell the same algorithm ("sha-256" and
 * "SHA256"), else 0 (also when either is unknown and they differ as text). */
int mft_mdn_same_digest(const char *a, const char *b);

#endif
