/*
 * fuzz_mdn — libFuzzer harness for lib/mft_mdn's MDN parser: the bytes up to
 * the first NUL are the HTTP Content-Type, the rest the body; without a NUL
 * the whole input is a MIME entity (content_type NULL). A parsed MDN is
 * classified and its signature part decoded. Seeds: tests/fuzz/corpus/mdn/.
 */
#include "mft_mdn.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mft_mdn m;
    struct mft_err err;
    char *ct = NULL;
    const uint8_t *body = data;
    size_t len = size;
    const uint8_t *nul = memchr(data, 0, size);

    if (nul) {
        size_t cl = (size_t)(nul - data);
        ct = malloc(cl + 1);
        if (!ct)
            return 0;
        memcpy(ct, data, cl);
        ct[cl] = '\0';
        body = nul + 1;
        len = size - cl - 1;
    }
    if (mft_mdn_parse(ct, body, len, &m, &err) == 0) {
        (void)mft_mdn_classify(&m);
        if (m.is_signed) {
            if (m.signed_entity.p < body || m.signed_entity.p + m.signed_entity.len > body + len)
                abort();
            unsigned char *der = NULL;
            size_t der_len = 0;
            if (mft_mime_decode(m.signature_cte, &m.signature, &der, &der_len, &err) == 0)
                free(der);
        }
        if (!memchr(m.disposition_type, 0, sizeof(m.disposition_type)) ||
            !memchr(m.text, 0, sizeof(m.text)))
            abort();
    }
    free(ct);
    return 0;
}
