/*
 * mft_ber — bounded, streaming BER walking for large CMS structures
 * (see mft_ber.h).
 */
#include "mft_ber.h"

#include "mft_err.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

int mft_ber_head(const unsigned char *buf, size_t buflen, size_t off, struct mft_ber_head *h)
{
    if (!buf || off >= buflen || buflen - off < 2)
        return -1;
    const unsigned char *p = buf + off;
    size_t n = buflen - off, i = 1;
    h->id = p[0];
    if ((p[0] & 0x1f) == 0x1f) { /* high tag number form */
        int k = 0;
        while (i < n && (p[i] & 0x80)) {
            if (++k > 4)
                return -1;
            i++;
        }
        i++;
    }
    if (i >= n)
        return -1;
    unsigned char l = p[i++];
    if (l == 0x80) { /* indefinite: constructed values only */
        if (!(h->id & 0x20))
            return -1;
        h->len = MFT_BER_INDEFINITE;
    } else if (l < 0x80) {
        h->len = l;
    } else {
        size_t k = l & 0x7f, v = 0;
        if (k == 0 || k > sizeof(size_t) || n - i < k)
            return -1;
        for (size_t j = 0; j < k; j++) {
            if (v >> (8 * (sizeof(size_t) - 1)))
                return -1;
            v = (v << 8) | p[i++];
        }
        h->len = v;
    }
    h->hdr = i;
    /* a definite length must fit what is left (this also keeps it from ever
     * equalling MFT_BER_INDEFINITE) */
    if (l != 0x80 && h->len > n - i)
        return -1;
    return 0;
}

int mft_ber_open(struct mft_ber_cursor *c, const unsigned char *buf, size_t buflen, size_t off,
                 unsigned char id)
{
    struct mft_ber_head h;
    if (!(id & 0x20) || mft_ber_head(buf, buflen, off, &h) < 0 || h.id != id)
        return -1;
    c->buf = buf;
    c->buflen = buflen;
    c->off = off + h.hdr;
    c->end = h.len == MFT_BER_INDEFINITE ? MFT_BER_INDEFINITE : c->off + h.len;
    return 0;
}

int mft_ber_more(struct mft_ber_cursor *c, struct mft_ber_head *h)
{
    if (c->end != MFT_BER_INDEFINITE) {
        if (c->off == c->end)
            return 0;
        if (c->off > c->end)
            return -1;
    } else if (c->buflen - c->off >= 2 && c->buf[c->off] == 0 && c->buf[c->off + 1] == 0) {
        c->off += 2;
        c->end = c->off; /* ended: further calls say so again */
        return 0;
    }
    size_t lim = c->end != MFT_BER_INDEFINITE ? c->end : c->buflen;
    if (mft_ber_head(c->buf, lim, c->off, h) < 0 || h->id == 0)
        return -1;
    return 1;
}

/* Total size of the value at off (header h), walking an indefinite one. */
static int value_size(const unsigned char *buf, size_t lim, size_t off,
                      const struct mft_ber_head *h, int depth, size_t *total)
{
    if (h->len != MFT_BER_INDEFINITE) {
        *total = h->hdr + h->len;
        return 0;
    }
    if (depth >= MFT_BER_MAX_DEPTH)
        return -1;
    struct mft_ber_cursor sub = {buf, lim, off + h->hdr, MFT_BER_INDEFINITE};
    struct mft_ber_head ch;
    int r;
    while ((r = mft_ber_more(&sub, &ch)) == 1) {
        size_t t;
        if (value_size(buf, lim, sub.off, &ch, depth + 1, &t) < 0)
            return -1;
        sub.off += t;
    }
    if (r < 0)
        return -1;
    *total = sub.off - off;
    return 0;
}

int mft_ber_skip(struct mft_ber_cursor *c, const struct mft_ber_head *h, const unsigned char **raw,
                 size_t *raw_len)
{
    size_t lim = c->end != MFT_BER_INDEFINITE ? c->end : c->buflen, total;
    if (value_size(c->buf, lim, c->off, h, 0, &total) < 0)
        return -1;
    if (raw)
        *raw = c->buf + c->off;
    if (raw_len)
        *raw_len = total;
    c->off += total;
    return 0;
}

/* ---- OCTET STRING contents ------------------------------------------------ */

int mft_ber_octets_begin(struct mft_ber_octets *o, const unsigned char *buf, size_t buflen,
                         size_t off)
{
    struct mft_ber_head h;
    memset(o, 0, sizeof(*o));
    o->buf = buf;
    o->buflen = buflen;
    o->released = off;
    if (mft_ber_head(buf, buflen, off, &h) < 0) {
        o->failed = 1;
        return -1;
    }
    o->off = off + h.hdr;
    if (h.id & 0x20) {
        o->depth = 1;
        o->ends[0] = h.len == MFT_BER_INDEFINITE ? MFT_BER_INDEFINITE : o->off + h.len;
    } else {
        o->left = h.len;
    }
    return 0;
}

void mft_ber_octets_raw(struct mft_ber_octets *o, const unsigned char *p, size_t len)
{
    memset(o, 0, sizeof(*o));
    o->buf = p;
    o->buflen = len;
    o->left = len;
}

long mft_ber_octets_next(struct mft_ber_octets *o, const unsigned char **p, size_t max)
{
    if (o->failed)
        return -1;
    while (o->left == 0) {
        if (o->depth == 0)
            return 0;
        size_t end = o->ends[o->depth - 1];
        if (end == MFT_BER_INDEFINITE) {
            if (o->buflen - o->off >= 2 && o->buf[o->off] == 0 && o->buf[o->off + 1] == 0) {
                o->off += 2;
                o->depth--;
                continue;
            }
        } else if (o->off == end) {
            o->depth--;
            continue;
        }
        struct mft_ber_head h;
        if (mft_ber_head(o->buf, end == MFT_BER_INDEFINITE ? o->buflen : end, o->off, &h) < 0 ||
            (h.id & 0xdf) != 0x04) /* chunks are OCTET STRINGs, primitive or constructed */
            goto bad;
        o->off += h.hdr;
        if (h.id & 0x20) {
            if (o->depth == MFT_BER_MAX_DEPTH)
                goto bad;
            o->ends[o->depth++] = h.len == MFT_BER_INDEFINITE ? MFT_BER_INDEFINITE : o->off + h.len;
        } else {
            o->left = h.len;
        }
    }
    size_t n = o->left < max ? o->left : max;
    if (n > (size_t)1 << 30)
        n = (size_t)1 << 30;
    /* release what lies behind the bytes handed out now (the caller still reads these) */
    if (o->off - o->released >= MFT_RELEASE_STEP) {
        mft_release(o->buf + o->released, o->off - o->released);
        o->released = o->off;
    }
    *p = o->buf + o->off;
    o->off += n;
    o->left -= n;
    return (long)n;
bad:
    o->failed = 1;
    return -1;
}

/* ---- BIOs ------------------------------------------------------------------- */

struct spill_sink {
    struct mft_spill *s;
    struct mft_err *err;
};

static int octets_read(BIO *b, char *out, size_t outl, size_t *readbytes)
{
    struct mft_ber_octets *o = BIO_get_data(b);
    size_t got = 0;
    while (got < outl) {
        const unsigned char *p;
        long n = mft_ber_octets_next(o, &p, outl - got);
        if (n <= 0)
            break;
        memcpy(out + got, p, (size_t)n);
        got += (size_t)n;
    }
    *readbytes = got;
    return got > 0;
}

static long octets_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct mft_ber_octets *o = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_EOF:
        return o->left == 0 && o->depth == 0;
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        return 0;
    }
}

static int spill_bio_write(BIO *b, const char *in, size_t inl, size_t *written)
{
    struct spill_sink *k = BIO_get_data(b);
    if (mft_spill_write(k->s, in, inl, k->err) < 0)
        return 0;
    *written = inl;
    return 1;
}

static long spill_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH;
}

static int spill_destroy(BIO *b)
{
    free(BIO_get_data(b));
    BIO_set_data(b, NULL);
    return 1;
}

static BIO_METHOD *octets_method, *spill_method;
static pthread_once_t methods_once = PTHREAD_ONCE_INIT;

static void methods_init(void)
{
    octets_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mft BER octets");
    if (octets_method) {
        BIO_meth_set_read_ex(octets_method, octets_read);
        BIO_meth_set_ctrl(octets_method, octets_ctrl);
    }
    spill_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "mft spill");
    if (spill_method) {
        BIO_meth_set_write_ex(spill_method, spill_bio_write);
        BIO_meth_set_ctrl(spill_method, spill_ctrl);
        BIO_meth_set_destroy(spill_method, spill_destroy);
    }
}

BIO *mft_ber_octets_bio(struct mft_ber_octets *o)
{
    pthread_once(&methods_once, methods_init);
    BIO *b = octets_method ? BIO_new(octets_method) : NULL;
    if (b) {
        BIO_set_data(b, o);
        BIO_set_init(b, 1);
    }
    return b;
}

BIO *mft_ber_spill_bio(struct mft_spill *s, struct mft_err *err)
{
    pthread_once(&methods_once, methods_init);
    struct spill_sink *k = malloc(sizeof(*k));
    BIO *b = k && spill_method ? BIO_new(spill_method) : NULL;
    if (!b) {
        free(k);
        return NULL;
    }
    k->s = s;
    k->err = err;
    BIO_set_data(b, k);
    BIO_set_init(b, 1);
    return b;
}

size_t mft_ber_der_header(unsigned char id, size_t len, unsigned char out[10])
{
    size_t n = 0;
    out[n++] = id;
    if (len < 128) {
        out[n++] = (unsigned char)len;
        return n;
    }
    int k = 0;
    for (size_t v = len; v; v >>= 8)
        k++;
    out[n++] = (unsigned char)(0x80 | k);
    for (int i = k - 1; i >= 0; i--)
        out[n++] = (unsigned char)(len >> (8 * i));
    return n;
}
