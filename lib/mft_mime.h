/*
 * mft_mime — a zero-copy MIME reader for AS2: entity = headers + body, exactly
 * as received. Nothing here rewrites bytes: spans point into the caller's
 * buffer, so signatures and MICs are computed over the received bytes.
 *
 * Accepts CRLF and LF-only line ends, folded headers (SP or TAB), any header
 * name case, quoted or unquoted parameters with or without spaces/TABs around
 * ';' and '=', and boundaries containing any bchars (RFC 2046), a preamble and
 * an epilogue. Every count is bounded (see the limits below); input that would
 * exceed them is rejected with MFT_E_MALFORMED_MESSAGE, never truncated silently.
 */
#ifndef MFT_MIME_H
#define MFT_MIME_H

#include "mft_err.h"

#include <stddef.h>

#define MFT_MIME_MAX_HEADERS 64
#define MFT_MIME_MAX_PARAMS 16
#define MFT_MIME_MAX_PARTS 64

struct mft_span {
    const unsigned char *p;
    size_t len;
};

struct mft_mime_header {
    struct mft_span name;  /* e.g. "content-type" as written (any case) */
    struct mft_span value; /* raw value after ':' and leading blanks, folding kept */
};

struct mft_mime_entity {
    struct mft_span whole; /* headers + blank line + body, exact bytes */
    struct mft_span body;  /* exact body bytes */
    struct mft_mime_header headers[MFT_MIME_MAX_HEADERS];
    size_t n_headers;
};

/* Returns 1 when the span equals str, ASCII case-insensitively. */
int mft_span_ieq(const struct mft_span *s, const char *str);

/*
 * Parses buf as one MIME entity. A buffer with no header block at all (it
 * starts with a blank line) has zero headers. A buffer whose first line is not
 * a header ("name: value") is reported as MFT_E_MALFORMED_MESSAGE unless
 * allow_headerless is set, in which case the whole buffer is the body (used for
 * decrypted content that some products send without MIME headers). With
 * allow_headerless, a header block must also end in a blank line and hold a
 * Content-Type field (raw EDIFACT lines look like "name: value" headers);
 * otherwise the whole buffer is the body — except that a buffer starting with
 * a MIME field (Content-*, MIME-Version) is always a MIME entity, and one whose
 * first lines are damaged but which carries a Content-Type field further down
 * its header block is refused (MFT_E_MALFORMED_MESSAGE): a damaged entity
 * must never pass as raw, unsigned content.
 * Returns 0 or -1 with err set. Spans borrow buf.
 */
int mft_mime_parse(const unsigned char *buf, size_t len, int allow_headerless,
                   struct mft_mime_entity *out, struct mft_err *err);

/*
 * Copies the unfolded value of the first header named `name` (case-insensitive)
 * into out (NUL-terminated, CR/LF of folding removed, outer blanks trimmed).
 * Returns the value's length, or -1 when absent or when it does not fit.
 */
int mft_mime_header(const struct mft_mime_entity *e, const char *name, char *out, size_t outlen);

struct mft_mime_param {
    char name[64];   /* lower-cased */
    char value[512]; /* unquoted, escapes resolved */
};

struct mft_mime_value {
    char token[128]; /* lower-cased main value: "multipart/signed", "attachment" */
    struct mft_mime_param params[MFT_MIME_MAX_PARAMS];
    size_t n_params;
};

/*
 * Parses a structured header value (Content-Type, Content-Disposition,
 * Disposition-Notification-Options parts) into a token and parameters.
 * Tolerates a value a broken sender wrapped in quotes as a whole.
 * Returns 0 or -1 with err set.
 */
int mft_mime_parse_value(const char *value, struct mft_mime_value *out, struct mft_err *err);

/* Returns the value of parameter `name` (case-insensitive), or NULL. Borrowed. */
const char *mft_mime_param(const struct mft_mime_value *v, const char *name);

/*
 * Splits a multipart body at `boundary`. parts[i] is the exact bytes of part i
 * (its headers + body), excluding the line break that precedes the next
 * delimiter (RFC 2046: that line break belongs to the delimiter).
 * Returns 0 and *n_parts, or -1 (no opening delimiter, no closing delimiter,
 * more than max parts) with err set.
 */
int mft_mime_split(const struct mft_span *body, const char *boundary, struct mft_span *parts,
                   size_t max, size_t *n_parts, struct mft_err *err);

/*
 * Decodes a body by its Content-Transfer-Encoding (NULL or "" = identity;
 * "7bit", "8bit", "binary" = identity; "base64" tolerating line breaks and
 * whitespace; "quoted-printable"). Any other value is MFT_E_MALFORMED_MESSAGE.
 * *out is malloc'd (caller frees), *out_len set. Returns 0 or -1.
 */
int mft_mime_decode(const char *cte, const struct mft_span *in, unsigned char **out,
                    size_t *out_len, struct mft_err *err);

/*
 * The same, appending the decoded bytes to a spill (mft_spill.h) chunk by
 * chunk, so memory stays bounded whatever the size; releases the input's pages
 * behind it. Returns 0 or -1.
 */
struct mft_spill;
int mft_mime_decode_to(const char *cte, const struct mft_span *in, struct mft_spill *out,
                       struct mft_err *err);

#endif
