/*
 * fuzz_ber — libFuzzer harness for the streaming BER walker (mft_ber) and the
 * EnvelopedData splitter in front of decryption: the input is read as an
 * OCTET STRING of any encoding (every byte handed out must lie inside the
 * input, and the walk must end), walked as a constructed value's children,
 * and given to mft_smime_decrypt with no key (it must fail with a
 * message-level error kind, never crash). Seeds: tests/fuzz/corpus/ber/.
 */
#include "mft_ber.h"
#include "mft_smime.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mft_ber_octets o;
    const unsigned char *p;
    long n;
    size_t total = 0;

    if (mft_ber_octets_begin(&o, data, size, 0) == 0) {
        while ((n = mft_ber_octets_next(&o, &p, 7)) > 0) {
            if (p < data || p + n > data + size)
                abort();
            total += (size_t)n;
        }
        if (total > size || (n == 0 && o.off > size))
            abort();
    }

    struct mft_ber_cursor c;
    struct mft_ber_head h;
    if (size > 0 && mft_ber_open(&c, data, size, 0, data[0]) == 0) {
        const unsigned char *raw;
        size_t rl;
        while (mft_ber_more(&c, &h) == 1 && mft_ber_skip(&c, &h, &raw, &rl) == 0)
            if (raw < data || raw + rl > data + size)
                abort();
    }

    struct mft_smime_decrypted d;
    struct mft_err err;
    mft_err_clear(&err);
    if (mft_smime_decrypt(data, size, NULL, 0, &d, &err) == 0)
        abort(); /* no key: nothing can decrypt */
    if (err.kind != MFT_E_MALFORMED_MESSAGE && err.kind != MFT_E_DECRYPT_FAILED &&
        err.kind != MFT_E_ALGORITHM_REFUSED && err.kind != MFT_E_NO_MEMORY)
        abort();
    return 0;
}
