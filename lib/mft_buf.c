/*
 * mft_buf — growable byte buffer with sticky out-of-memory (see mft_buf.h).
 * No shared state; one buffer belongs to one thread.
 */
#include "mft_buf.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

void mft_buf_add(struct mft_buf *b, const void *data, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (b->len + n < b->len) {
        b->oom = 1;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n) {
            if (cap > ((size_t)-1) / 2) {
                b->oom = 1;
                return;
            }
            cap *= 2;
        }
        unsigned char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

void mft_buf_str(struct mft_buf *b, const char *s)
{
    mft_buf_add(b, s, strlen(s));
}

void mft_buf_base64_lines(struct mft_buf *b, const unsigned char *data, size_t len)
{
    unsigned char line[80];
    for (size_t off = 0; off < len; off += 57) {
        size_t n = len - off < 57 ? len - off : 57;
        int w = EVP_EncodeBlock(line, data + off, (int)n);
        mft_buf_add(b, line, (size_t)w);
        mft_buf_str(b, "\r\n");
    }
}

void mft_buf_free(struct mft_buf *b)
{
    if (!b)
        return;
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->oom = 0;
}
