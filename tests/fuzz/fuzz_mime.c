/*
 * fuzz_mime — libFuzzer harness for lib/mft_mime: parses the input as one
 * entity (headerless allowed when the first byte is odd), reads its
 * Content-Type, and for every multipart found splits it and recurses into the
 * parts (depth-bounded), decoding each leaf body by its
 * Content-Transfer-Encoding. Seeds: tests/fuzz/corpus/mime/.
 */
#include "mft_mime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void walk(const unsigned char *p, size_t n, int allow_headerless, int depth)
{
    struct mft_mime_entity e;
    struct mft_mime_value v;
    struct mft_span parts[MFT_MIME_MAX_PARTS];
    struct mft_err err;
    char ct[1024], cte[64];
    size_t n_parts = 0;

    if (mft_mime_parse(p, n, allow_headerless, &e, &err) < 0)
        return;
    if (e.body.p && (e.body.p < p || e.body.p + e.body.len > p + n))
        abort();
    if (mft_mime_header(&e, "Content-Type", ct, sizeof(ct)) < 0)
        memcpy(ct, "text/plain", 11);
    if (mft_mime_parse_value(ct, &v, &err) < 0)
        return;
    const char *b = mft_mime_param(&v, "boundary");
    if (strncmp(v.token, "multipart/", 10) == 0 && b && depth < 4) {
        if (mft_mime_split(&e.body, b, parts, MFT_MIME_MAX_PARTS, &n_parts, &err) < 0)
            return;
        for (size_t i = 0; i < n_parts; i++) {
            if (parts[i].p < e.body.p || parts[i].p + parts[i].len > e.body.p + e.body.len)
                abort();
            walk(parts[i].p, parts[i].len, 0, depth + 1);
        }
        return;
    }
    if (mft_mime_header(&e, "Content-Transfer-Encoding", cte, sizeof(cte)) < 0)
        cte[0] = '\0';
    unsigned char *out = NULL;
    size_t out_len = 0;
    if (mft_mime_decode(cte, &e.body, &out, &out_len, &err) == 0 && out_len > e.body.len)
        abort(); /* decoding never grows */
    free(out);
    /* All encodings on the same bytes, to reach the decoders more often. */
    static const char *const ctes[] = {"base64", "quoted-printable", "binary"};
    for (size_t i = 0; i < 3; i++) {
        out = NULL;
        if (mft_mime_decode(ctes[i], &e.body, &out, &out_len, &err) == 0 && out_len > e.body.len)
            abort();
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int allow = size > 0 && (data[0] & 1);
    walk(data, size, allow, 0);
    return 0;
}
