/*
 * fuzz_compressed — libFuzzer harness for mft_smime_uncompress: the input is
 * a (BER or DER) CMS CompressedData. On success the output must be within
 * the 1 MiB bound; on failure the error kind must be DECOMPRESS_FAILED and no
 * output is returned. Seeds: tests/fuzz/corpus/compressed/ (the Mendelson
 * sample's compressed entity, hand-made DER/BER envelopes, truncations).
 */
#include "mft_smime.h"

#include <stdint.h>
#include <stdlib.h>

#define MAX_OUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *out = (unsigned char *)"untouched";
    size_t out_len = 12345;
    struct mft_err err;

    mft_err_clear(&err);
    if (mft_smime_uncompress(data, size, MAX_OUT, &out, &out_len, &err) == 0) {
        if (out_len > MAX_OUT || (out_len > 0 && !out))
            abort();
        if (out_len > 0) { /* both ends must be readable */
            volatile unsigned char sink = out[0] ^ out[out_len - 1];
            (void)sink;
        }
        free(out);
    } else if (err.kind != MFT_E_DECOMPRESS_FAILED && err.kind != MFT_E_NO_MEMORY) {
        abort();
    }
    return 0;
}
