/*
 * test_err — the error taxonomy: every kind has a unique, well-formed name
 * that maps back to the kind; mft_err_set fills the default message and
 * remedy (or a formatted message); details are appended with "; " and stay
 * bounded; mft_err_openssl moves OpenSSL's error queue into the detail and
 * leaves the queue empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "mft_err.h"

/* The list again, independently of mft_err.c, to compare against. */
static const struct {
    const char *name, *message, *remedy;
} expected[] = {
#define ROW_(name, msg, remedy) {#name, msg, remedy},
    MFT_ERR_KINDS(ROW_)
#undef ROW_
};

static void test_names(void **state)
{
    (void)state;
    assert_int_equal(sizeof(expected) / sizeof(expected[0]), MFT_E__COUNT);
    for (int i = 0; i < MFT_E__COUNT; i++) {
        const char *n = mft_err_kind_name((enum mft_err_kind)i);
        assert_non_null(n);
        assert_string_equal(n, expected[i].name);
        assert_true(strlen(n) > 0);
        for (const char *p = n; *p; p++)
            if (!((*p >= 'A' && *p <= 'Z') || *p == '_' || (*p >= '0' && *p <= '9')))
                fail_msg("kind %d name \"%s\" is not UPPER_SNAKE", i, n);
        for (int j = 0; j < i; j++)
            if (strcmp(n, mft_err_kind_name((enum mft_err_kind)j)) == 0)
                fail_msg("kinds %d and %d share the name %s", j, i, n);
        assert_int_equal(mft_err_kind_from_name(n), i);
    }
    /* a few fixed spellings that events and docs rely on */
    assert_string_equal(mft_err_kind_name(MFT_E_OK), "OK");
    assert_string_equal(mft_err_kind_name(MFT_E_DECRYPT_FAILED), "DECRYPT_FAILED");
    assert_string_equal(mft_err_kind_name(MFT_E_TLS_CLIENT_CERT_MISSING),
                        "TLS_CLIENT_CERT_MISSING");
    assert_string_equal(mft_err_kind_name(MFT_E_STORAGE), "STORAGE");
    assert_int_equal(mft_err_kind_from_name("SIGNATURE_INVALID"), MFT_E_SIGNATURE_INVALID);
    /* out of range and unknown */
    assert_string_equal(mft_err_kind_name(MFT_E__COUNT), "INTERNAL");
    assert_string_equal(mft_err_kind_name((enum mft_err_kind) - 1), "INTERNAL");
    assert_int_equal(mft_err_kind_from_name("NO_SUCH_KIND"), -1);
    assert_int_equal(mft_err_kind_from_name(""), -1);
    assert_int_equal(mft_err_kind_from_name(NULL), -1);
    assert_int_equal(mft_err_kind_from_name("DECRYPT_FAILED "), -1);
    assert_int_equal(mft_err_kind_from_name("DECRYPT"), -1);
}

static void test_set_defaults(void **state)
{
    struct mft_err err;
    (void)state;
    for (int i = 0; i < MFT_E__COUNT; i++) {
        memset(&err, 0x55, sizeof(err));
        err.detail[0] = '\0';
        assert_int_equal(mft_err_set(&err, (enum mft_err_kind)i, NULL), -1);
        assert_int_equal(err.kind, i);
        assert_string_equal(err.message, expected[i].message);
        assert_string_equal(err.remedy, expected[i].remedy);
        assert_true(strlen(err.message) > 0);
        if (i != MFT_E_OK && strlen(err.remedy) == 0)
            fail_msg("kind %s has no remedy", expected[i].name);
    }
    mft_err_set(&err, MFT_E_CONFIG, "bad %s=%d", "MFT_X", 7);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_string_equal(err.message, "bad MFT_X=7");
    assert_string_equal(err.remedy, "fix the named setting and restart");
    /* out-of-range kind becomes INTERNAL */
    mft_err_set(&err, (enum mft_err_kind)(MFT_E__COUNT + 3), NULL);
    assert_int_equal(err.kind, MFT_E_INTERNAL);
    assert_string_equal(err.message, "unexpected internal error");
    /* a long message is truncated, still terminated */
    char big[600];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    mft_err_set(&err, MFT_E_TIMEOUT, "%s", big);
    assert_int_equal(strlen(err.message), sizeof(err.message) - 1);
    assert_int_equal(err.message[0], 'm');
    /* NULL err is allowed */
    assert_int_equal(mft_err_set(NULL, MFT_E_CONFIG, NULL), -1);
    assert_int_equal(mft_err_detail(NULL, "x"), -1);
    assert_int_equal(mft_err_openssl(NULL), -1);
    mft_err_clear(NULL);
}

static void test_clear_and_detail(void **state)
{
    struct mft_err err;
    (void)state;
    memset(&err, 0x41, sizeof(err));
    mft_err_clear(&err);
    assert_int_equal(err.kind, MFT_E_OK);
    assert_string_equal(err.message, "");
    assert_string_equal(err.detail, "");
    assert_string_equal(err.remedy, "");

    assert_int_equal(mft_err_detail(&err, "first %d", 1), -1);
    assert_string_equal(err.detail, "first 1");
    mft_err_detail(&err, "second");
    assert_string_equal(err.detail, "first 1; second");
    mft_err_detail(&err, "%s", "third");
    assert_string_equal(err.detail, "first 1; second; third");
    /* set starts a new error: a stale detail (or uninitialised bytes) never
     * leaks into it */
    mft_err_set(&err, MFT_E_DECRYPT_FAILED, NULL);
    assert_string_equal(err.detail, "");
    memset(err.detail, 0x41, sizeof(err.detail));
    mft_err_set(&err, MFT_E_DECRYPT_FAILED, NULL);
    assert_string_equal(err.detail, "");
    mft_err_detail(&err, "first %d", 1);
    mft_err_detail(&err, "second");
    mft_err_detail(&err, "%s", "third");
    assert_string_equal(err.detail, "first 1; second; third");

    /* bound: a huge detail is truncated and terminated, later appends do not overflow */
    char chunk[300];
    memset(chunk, 'd', sizeof(chunk) - 1);
    chunk[sizeof(chunk) - 1] = '\0';
    for (size_t i = 0; i < 2 * sizeof(err.detail) / sizeof(chunk); i++) {
        mft_err_detail(&err, "%s", chunk);
        assert_true(strlen(err.detail) < sizeof(err.detail));
    }
    assert_int_equal(strlen(err.detail), sizeof(err.detail) - 1);
    assert_memory_equal(err.detail, "first 1; second; third; ddd", 27);
    char before[sizeof(err.detail)];
    memcpy(before, err.detail, sizeof(before));
    mft_err_detail(&err, "more");
    assert_memory_equal(before, err.detail, sizeof(before));
    /* the struct after detail is untouched */
    assert_string_equal(err.remedy,
                        "the partner must encrypt with our current encryption certificate");

    /* nearly full: size-4 chars leave room for "; " + 1 char */
    const size_t cap = sizeof(err.detail);
    mft_err_clear(&err);
    memset(err.detail, 'x', cap - 4);
    err.detail[cap - 4] = '\0';
    mft_err_detail(&err, "YZ");
    assert_int_equal(strlen(err.detail), cap - 1);
    assert_memory_equal(err.detail + cap - 4, "; Y", 3);
    /* size-3 chars: no room for the separator and a byte, nothing appended */
    mft_err_clear(&err);
    memset(err.detail, 'x', cap - 3);
    err.detail[cap - 3] = '\0';
    mft_err_detail(&err, "YZ");
    assert_int_equal(strlen(err.detail), cap - 3);
}

static void test_openssl(void **state)
{
    struct mft_err err;
    (void)state;
    ERR_clear_error();
    mft_err_clear(&err);
    /* an empty queue adds nothing */
    assert_int_equal(mft_err_openssl(&err), -1);
    assert_string_equal(err.detail, "");

    /* a real failure: parsing garbage as a PEM certificate */
    BIO *b = BIO_new_mem_buf(
        "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n", -1);
    assert_non_null(b);
    assert_null(PEM_read_bio_X509(b, NULL, NULL, NULL));
    BIO_free(b);
    /* plus one with attached text data */
    ERR_raise_data(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE, "marker %d", 4711);
    unsigned long first = ERR_peek_error();
    assert_true(first != 0);
    char want[256];
    ERR_error_string_n(first, want, sizeof(want));

    mft_err_detail(&err, "context");
    assert_int_equal(mft_err_openssl(&err), -1);
    assert_true(ERR_peek_error() == 0); /* drained */
    assert_memory_equal(err.detail, "context; ", 9);
    if (!strstr(err.detail, want))
        fail_msg("detail lacks the first queued error \"%s\": %s", want, err.detail);
    assert_non_null(strstr(err.detail, "error:"));
    assert_non_null(strstr(err.detail, "(marker 4711)"));
    assert_non_null(strstr(err.detail, "cert already in hash table"));
    /* several errors are separated */
    const char *p = strstr(err.detail, "error:");
    assert_non_null(p);
    assert_non_null(strstr(p + 1, "; error:"));

    /* with NULL err the queue is still drained */
    ERR_raise(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE);
    assert_true(ERR_peek_error() != 0);
    mft_err_openssl(NULL);
    assert_true(ERR_peek_error() == 0);

    /* a flood of errors stays within the bound */
    mft_err_clear(&err);
    for (int i = 0; i < 200; i++)
        ERR_raise_data(ERR_LIB_X509, X509_R_CERT_ALREADY_IN_HASH_TABLE, "n%d", i);
    mft_err_openssl(&err);
    assert_true(strlen(err.detail) < sizeof(err.detail));
    assert_true(strlen(err.detail) > 900);
    assert_true(ERR_peek_error() == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_set_defaults),
        cmocka_unit_test(test_clear_and_detail),
        cmocka_unit_test(test_openssl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
