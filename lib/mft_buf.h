/*
 * mft_buf — a growable byte buffer for building messages (MDNs, outgoing AS2
 * entities). An allocation failure sets `oom` and turns later appends into
 * no-ops, so a builder appends freely and checks once at the end.
 */
#ifndef MFT_BUF_H
#define MFT_BUF_H

#include <stddef.h>

struct mft_buf {
    unsigned char *p; /* malloc'd; the caller frees (or takes it) */
    size_t len, cap;
    int oom;
};

/* Appends n bytes / a C string. */
void mft_buf_add(struct mft_buf *b, const void *data, size_t n);
void mft_buf_str(struct mft_buf *b, const char *s);

/* Appends base64 of data in lines of 76 characters, each ending in CRLF. */
void mft_buf_base64_lines(struct mft_buf *b, const unsigned char *data, size_t len);

/* Frees the bytes and resets the buffer; accepts NULL. */
void mft_buf_free(struct mft_buf *b);

#endif
