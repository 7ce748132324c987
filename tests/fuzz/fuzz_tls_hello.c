/*
 * fuzz_tls_hello — libFuzzer harness for what lib/mft_tlssrv reads of a
 * client's handshake before GnuTLS judges it: the record tracker of the read
 * wrapper (fed in chunks), the ClientHello body (versions, suites, SNI) and a
 * Certificate message's first entry (both TLS 1.2 and 1.3 layouts, then the
 * OpenSSL parse the AS2 stage does). Seeds: tests/fuzz/corpus/tls_hello/
 * (ClientHellos of openssl s_client and curl, TLS 1.2 and 1.3).
 */
#include "mft_tlssrv.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mft_tlssrv_fuzz_input(data, size);
    return 0;
}
