/*
 * mft_ber — walking large BER structures (CMS EnvelopedData, CompressedData)
 * without loading them: a header reader, a cursor over a constructed value's
 * children (definite or indefinite length), a reader of the bytes of an OCTET
 * STRING however it is chunked (primitive, constructed, nested, indefinite),
 * and OpenSSL BIOs that read such bytes and write into a spill.
 *
 * Everything is bounded by the buffer it is given; every length is checked
 * before use. Sequential readers release the pages they have passed (see
 * mft_spill.h), so a gigabyte of ciphertext is walked in a few megabytes.
 * No shared state: thread-safe.
 */
#ifndef MFT_BER_H
#define MFT_BER_H

#include "mft_spill.h"

#include <openssl/bio.h>

#include <stddef.h>

#define MFT_BER_MAX_DEPTH 32
#define MFT_BER_INDEFINITE ((size_t)-1)

struct mft_ber_head {
    unsigned char id; /* first identifier octet */
    size_t hdr;       /* identifier + length octets */
    size_t len;       /* content length, or MFT_BER_INDEFINITE */
};

/* Reads the identifier and length octets at buf[off]. Returns 0 or -1. */
int mft_ber_head(const unsigned char *buf, size_t buflen, size_t off, struct mft_ber_head *h);

/* The children of one constructed value. */
struct mft_ber_cursor {
    const unsigned char *buf;
    size_t buflen;
    size_t off; /* next child */
    size_t end; /* end of the content (definite), or MFT_BER_INDEFINITE */
};

/*
 * Opens the constructed value at buf[off], whose identifier must be `id`.
 * Returns 0 or -1.
 */
int mft_ber_open(struct mft_ber_cursor *c, const unsigned char *buf, size_t buflen, size_t off,
                 unsigned char id);

/*
 * Is there another child? 1 (its header in *h, at c->off), 0 at the end of
 * the value (an indefinite one's end-of-contents is consumed), -1 malformed.
 */
int mft_ber_more(struct mft_ber_cursor *c, struct mft_ber_head *h);

/*
 * Skips the child at c->off whose header is h (a small one: an indefinite
 * child is walked to its end-of-contents). Sets *raw / *raw_len to its exact
 * bytes. Returns 0 or -1.
 */
int mft_ber_skip(struct mft_ber_cursor *c, const struct mft_ber_head *h, const unsigned char **raw,
                 size_t *raw_len);

/* The content bytes of an OCTET STRING (any tag), chunk by chunk. */
struct mft_ber_octets {
    const unsigned char *buf;
    size_t buflen;
    size_t off;  /* next header or content byte */
    size_t left; /* bytes left in the current primitive chunk */
    int depth;   /* open constructed strings */
    size_t ends[MFT_BER_MAX_DEPTH];
    size_t released;
    int failed;
};

/* Starts reading the string whose TLV begins at buf[off]. Returns 0 or -1. */
int mft_ber_octets_begin(struct mft_ber_octets *o, const unsigned char *buf, size_t buflen,
                         size_t off);

/* Reads plain bytes [p, p + len) the same way (for a BIO over a span). */
void mft_ber_octets_raw(struct mft_ber_octets *o, const unsigned char *p, size_t len);

/*
 * The next up to max bytes: returns their count with *p pointing at them, 0 at
 * the end, -1 when the encoding is malformed (o->failed is then set).
 * After 0, o->off is just past the whole string.
 */
long mft_ber_octets_next(struct mft_ber_octets *o, const unsigned char **p, size_t max);

/*
 * A read-only source BIO over o (borrowed; must outlive the BIO): what a CMS
 * function reads as detached content. Check o->failed after use.
 */
BIO *mft_ber_octets_bio(struct mft_ber_octets *o);

/* A sink BIO appending to a spill (borrowed). Write errors land in *err. */
struct mft_err;
BIO *mft_ber_spill_bio(struct mft_spill *s, struct mft_err *err);

/* Appends the DER identifier and length octets for a value of `len` bytes. */
size_t mft_ber_der_header(unsigned char id, size_t len, unsigned char out[10]);

#endif
