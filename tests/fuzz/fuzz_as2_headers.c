/*
 * fuzz_as2_headers — libFuzzer harness for the structured AS2 header readers:
 * the input, as a NUL-terminated string, goes to mft_mime_parse_value
 * (Content-Type, Content-Disposition) and mft_mdn_parse_options
 * (Disposition-Notification-Options). Seeds: tests/fuzz/corpus/as2_headers/.
 */
#include "mft_mdn.h"
#include "mft_mime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct mft_mime_value v;
    struct mft_mdn_options o;
    struct mft_err err;
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    if (mft_mime_parse_value(s, &v, &err) == 0) {
        if (v.n_params > MFT_MIME_MAX_PARAMS || !memchr(v.token, 0, sizeof(v.token)))
            abort();
        for (size_t i = 0; i < v.n_params; i++)
            if (mft_mime_param(&v, v.params[i].name) == NULL)
                abort();
    }
    (void)mft_mdn_parse_options(s, &o, &err);
    if (o.n_micalgs > MFT_MDN_MAX_MICALGS)
        abort();
    for (size_t i = 0; i < o.n_micalgs; i++)
        if (strcasecmp(o.micalgs[i], "pkcs7-signature") == 0)
            abort();
    free(s);
    return 0;
}
