/*
 * test_secret — AES-256-GCM key wrapping: round trip, and that a wrong master
 * key, a wrong record id (AAD), altered bytes and malformed strings all fail;
 * the master-key parser.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "mft_secret.h"

static const char *KEY_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
static const char *PEM = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0w"
                         "\n-----END PRIVATE KEY-----\n";

static void load_key(unsigned char key[32])
{
    struct mft_err err;
    mft_err_clear(&err);
    assert_int_equal(mft_secret_parse_master_key(KEY_HEX, key, &err), 0);
}

static void test_parse_master_key(void **state)
{
    unsigned char key[32];
    struct mft_err err;
    (void)state;
    load_key(key);
    for (int i = 0; i < 32; i++)
        assert_int_equal(key[i], i);
    assert_int_equal(
        mft_secret_parse_master_key(
            "  0001020304050607080900010203040506070809000102030405060708090a0b\n", key, &err),
        0);
    assert_int_equal(key[31], 0x0b);
    assert_int_equal(mft_secret_parse_master_key(NULL, key, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_non_null(strstr(err.message, "MFT_MASTER_KEY"));
    assert_int_equal(mft_secret_parse_master_key("0011", key, &err), -1);
    assert_non_null(strstr(err.message, "64 hex digits"));
    assert_int_equal(
        mft_secret_parse_master_key(
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1g", key, &err),
        -1);
    assert_non_null(strstr(err.message, "non-hex"));
    /* the value itself never goes into the error */
    assert_null(strstr(err.message, "1e1g"));
    assert_null(strstr(err.detail, "1e1g"));
}

static void test_round_trip(void **state)
{
    unsigned char key[32];
    struct mft_err err;
    char *w1 = NULL, *w2 = NULL, *plain = NULL;
    size_t len = 0;
    (void)state;
    load_key(key);
    assert_int_equal(mft_secret_wrap(key, "acme", PEM, strlen(PEM), &w1, &err), 0);
    assert_memory_equal(w1, "v1:", 3);
    /* nonce(12) + ciphertext + tag(16), base64 */
    size_t raw = 12 + strlen(PEM) + 16;
    assert_int_equal(strlen(w1), 3 + 4 * ((raw + 2) / 3));
    assert_null(strstr(w1, "PRIVATE"));
    /* independent check: base64 decodes to the expected length */
    unsigned char *dec = malloc(strlen(w1));
    int n = EVP_DecodeBlock(dec, (const unsigned char *)w1 + 3, (int)strlen(w1) - 3);
    assert_true(n >= (int)raw && n <= (int)raw + 2);
    free(dec);

    assert_int_equal(mft_secret_unwrap(key, "acme", w1, &plain, &len, &err), 0);
    assert_int_equal(len, strlen(PEM));
    assert_string_equal(plain, PEM);
    mft_secret_free(plain, len);

    /* fresh nonce each time */
    assert_int_equal(mft_secret_wrap(key, "acme", PEM, strlen(PEM), &w2, &err), 0);
    assert_string_not_equal(w1, w2);
    assert_int_equal(mft_secret_unwrap(key, "acme", w2, &plain, NULL, &err), 0);
    assert_string_equal(plain, PEM);
    mft_secret_free_str(plain);
    free(w1);
    free(w2);

    /* empty plaintext and empty AAD are valid */
    assert_int_equal(mft_secret_wrap(key, "", "", 0, &w1, &err), 0);
    assert_int_equal(mft_secret_unwrap(key, "", w1, &plain, &len, &err), 0);
    assert_int_equal(len, 0);
    assert_string_equal(plain, "");
    mft_secret_free(plain, len);
    free(w1);
}

static void test_wrong_key_fails(void **state)
{
    unsigned char key[32], other[32];
    struct mft_err err;
    char *w = NULL, *plain = NULL;
    (void)state;
    load_key(key);
    memcpy(other, key, 32);
    other[0] ^= 1;
    assert_int_equal(mft_secret_wrap(key, "acme", PEM, strlen(PEM), &w, &err), 0);
    assert_int_equal(mft_secret_unwrap(other, "acme", w, &plain, NULL, &err), -1);
    assert_null(plain);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_non_null(strstr(err.message, "MFT_MASTER_KEY"));
    free(w);
}

static void test_wrong_aad_fails(void **state)
{
    unsigned char key[32];
    struct mft_err err;
    char *w = NULL, *plain = NULL;
    (void)state;
    load_key(key);
    assert_int_equal(mft_secret_wrap(key, "acme", PEM, strlen(PEM), &w, &err), 0);
    assert_int_equal(mft_secret_unwrap(key, "globex", w, &plain, NULL, &err), -1);
    assert_int_equal(mft_secret_unwrap(key, "acme2", w, &plain, NULL, &err), -1);
    assert_int_equal(mft_secret_unwrap(key, "", w, &plain, NULL, &err), -1);
    assert_null(plain);
    free(w);
}

static void test_tampered_fails(void **state)
{
    unsigned char key[32];
    struct mft_err err;
    char *w = NULL, *plain = NULL;
    size_t wl;
    (void)state;
    load_key(key);
    assert_int_equal(mft_secret_wrap(key, "acme", PEM, strlen(PEM), &w, &err), 0);
    wl = strlen(w);
    /* flip one base64 character in the nonce, the ciphertext and the tag */
    size_t positions[] = {4, wl / 2, wl - 4};
    for (size_t i = 0; i < 3; i++) {
        char saved = w[positions[i]];
        w[positions[i]] = saved == 'A' ? 'B' : 'A';
        assert_int_equal(mft_secret_unwrap(key, "acme", w, &plain, NULL, &err), -1);
        assert_null(plain);
        w[positions[i]] = saved;
    }
    assert_int_equal(mft_secret_unwrap(key, "acme", w, &plain, NULL, &err), 0);
    mft_secret_free_str(plain);
    plain = NULL;
    /* truncated, wrong prefix, not base64, too short */
    w[wl - 4] = '\0';
    assert_int_equal(mft_secret_unwrap(key, "acme", w, &plain, NULL, &err), -1);
    assert_int_equal(mft_secret_unwrap(key, "acme", w + 1, &plain, NULL, &err), -1);
    assert_non_null(strstr(err.message, "v1:"));
    assert_int_equal(mft_secret_unwrap(key, "acme", "v1:!!!!", &plain, NULL, &err), -1);
    assert_int_equal(mft_secret_unwrap(key, "acme", "v1:AAAA", &plain, NULL, &err), -1);
    assert_int_equal(mft_secret_unwrap(key, "acme", "v1:", &plain, NULL, &err), -1);
    assert_null(plain);
    free(w);
    mft_secret_free(NULL, 10);
    mft_secret_free_str(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_master_key), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_wrong_key_fails),  cmocka_unit_test(test_wrong_aad_fails),
        cmocka_unit_test(test_tampered_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
