/*
 * test_ber — the streaming BER walker: the bytes of an OCTET STRING however it
 * is encoded (primitive, constructed definite, indefinite, nested, [0]
 * IMPLICIT), read through mft_ber_octets_next and through the BIO; malformed
 * encodings (truncated, wrong chunk tag, length past the end, nesting too
 * deep) are refused; the cursor walks and skips children of definite and
 * indefinite values; DER headers are minimal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mft_ber.h"

/* Reads all the string's bytes, at most `step` per call; -1 when malformed. */
static long read_all(const unsigned char *buf, size_t len, size_t step, char *out, size_t cap,
                     size_t *end_off)
{
    struct mft_ber_octets o;
    const unsigned char *p;
    long n;
    size_t got = 0;
    if (mft_ber_octets_begin(&o, buf, len, 0) < 0)
        return -1;
    while ((n = mft_ber_octets_next(&o, &p, step)) > 0) {
        if (got + (size_t)n > cap)
            return -1;
        memcpy(out + got, p, (size_t)n);
        got += (size_t)n;
    }
    if (n < 0)
        return -1;
    if (end_off)
        *end_off = o.off;
    return (long)got;
}

static void expect(const char *hex_name, const unsigned char *buf, size_t len, const char *want)
{
    char out[64];
    size_t end = 0;
    for (size_t step = 1; step <= 8; step *= 2) {
        long n = read_all(buf, len, step, out, sizeof(out), &end);
        if (n != (long)strlen(want) || memcmp(out, want, (size_t)n) != 0)
            fail_msg("%s (step %zu): got %ld bytes", hex_name, step, n);
        assert_int_equal(end, len); /* ends just past the whole value */
    }
}

static void test_octets(void **state)
{
    (void)state;
    static const unsigned char prim[] = {0x04, 0x05, 'h', 'e', 'l', 'l', 'o'};
    static const unsigned char cons[] = {0x24, 0x0e, 0x04, 0x03, 'a',  'b',  'c',  0x04,
                                         0x02, 'd',  'e',  0x24, 0x03, 0x04, 0x01, 'f'};
    static const unsigned char indef[] = {0x24, 0x80, 0x04, 0x02, 'a',  'b',  0x24, 0x80, 0x04,
                                          0x01, 'c',  0x00, 0x00, 0x04, 0x01, 'd',  0x00, 0x00};
    static const unsigned char impl_prim[] = {0x80, 0x03, 'x', 'y', 'z'};
    static const unsigned char impl_cons[] = {0xa0, 0x80, 0x04, 0x02, 'x',
                                              'y',  0x04, 0x00, 0x00, 0x00};
    static const unsigned char empty[] = {0x04, 0x00};
    static const unsigned char longform[] = {0x04, 0x81, 0x03, 'l', 'o', 'n'};
    expect("primitive", prim, sizeof(prim), "hello");
    expect("constructed", cons, sizeof(cons), "abcdef");
    expect("indefinite", indef, sizeof(indef), "abcd");
    expect("[0] primitive", impl_prim, sizeof(impl_prim), "xyz");
    expect("[0] constructed", impl_cons, sizeof(impl_cons), "xy");
    expect("empty", empty, sizeof(empty), "");
    expect("long form length", longform, sizeof(longform), "lon");
}

static void test_octets_malformed(void **state)
{
    (void)state;
    char out[64];
    static const unsigned char no_eoc[] = {0x24, 0x80, 0x04, 0x02, 'a', 'b'};
    static const unsigned char bad_tag[] = {0x24, 0x04, 0x02, 0x02, 0x01, 0x01};
    static const unsigned char too_long[] = {0x04, 0x09, 'a', 'b', 'c'};
    static const unsigned char chunk_past_parent[] = {0x24, 0x03, 0x04, 0x03, 'a', 'b', 'c'};
    static const unsigned char prim_indef[] = {0x04, 0x80, 'a', 0x00, 0x00};
    static const unsigned char huge_len[] = {0x04, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(read_all(no_eoc, sizeof(no_eoc), 4, out, sizeof(out), NULL), -1);
    assert_int_equal(read_all(bad_tag, sizeof(bad_tag), 4, out, sizeof(out), NULL), -1);
    assert_int_equal(read_all(too_long, sizeof(too_long), 4, out, sizeof(out), NULL), -1);
    assert_int_equal(
        read_all(chunk_past_parent, sizeof(chunk_past_parent), 4, out, sizeof(out), NULL), -1);
    assert_int_equal(read_all(prim_indef, sizeof(prim_indef), 4, out, sizeof(out), NULL), -1);
    assert_int_equal(read_all(huge_len, sizeof(huge_len), 4, out, sizeof(out), NULL), -1);
    assert_int_equal(read_all(no_eoc, 1, 4, out, sizeof(out), NULL), -1);

    /* nesting deeper than MFT_BER_MAX_DEPTH */
    unsigned char deep[2 * (MFT_BER_MAX_DEPTH + 2) + 3];
    size_t n = 0;
    for (int i = 0; i < MFT_BER_MAX_DEPTH + 2; i++) {
        deep[n++] = 0x24;
        deep[n++] = 0x80;
    }
    deep[n++] = 0x04;
    deep[n++] = 0x01;
    deep[n++] = 'z';
    assert_int_equal(read_all(deep, n, 4, out, sizeof(out), NULL), -1);
}

static void test_bio(void **state)
{
    (void)state;
    static const unsigned char indef[] = {0x24, 0x80, 0x04, 0x02, 'a',  'b', 0x04,
                                          0x03, 'c',  'd',  'e',  0x00, 0x00};
    struct mft_ber_octets o;
    char buf[16];
    assert_int_equal(mft_ber_octets_begin(&o, indef, sizeof(indef), 0), 0);
    BIO *b = mft_ber_octets_bio(&o);
    assert_non_null(b);
    assert_int_equal(BIO_read(b, buf, sizeof(buf)), 5);
    assert_memory_equal(buf, "abcde", 5);
    assert_true(BIO_read(b, buf, sizeof(buf)) <= 0);
    assert_int_equal(o.failed, 0);
    BIO_free(b);

    mft_ber_octets_raw(&o, (const unsigned char *)"plain", 5);
    b = mft_ber_octets_bio(&o);
    assert_int_equal(BIO_read(b, buf, 3), 3);
    assert_int_equal(BIO_read(b, buf + 3, 10), 2);
    assert_memory_equal(buf, "plain", 5);
    BIO_free(b);
}

static void test_cursor(void **state)
{
    (void)state;
    /* SEQ(indef) { INTEGER 5, SET(indef) { OCTET STRING "a" } } */
    static const unsigned char seq[] = {0x30, 0x80, 0x02, 0x01, 0x05, 0x31, 0x80,
                                        0x04, 0x01, 'a',  0x00, 0x00, 0x00, 0x00};
    struct mft_ber_cursor c;
    struct mft_ber_head h;
    const unsigned char *raw;
    size_t rl;
    assert_int_equal(mft_ber_open(&c, seq, sizeof(seq), 0, 0x31), -1); /* wrong tag */
    assert_int_equal(mft_ber_open(&c, seq, sizeof(seq), 0, 0x30), 0);
    assert_int_equal(mft_ber_more(&c, &h), 1);
    assert_int_equal(h.id, 0x02);
    assert_int_equal(mft_ber_skip(&c, &h, &raw, &rl), 0);
    assert_int_equal(rl, 3);
    assert_int_equal(mft_ber_more(&c, &h), 1);
    assert_int_equal(h.id, 0x31);
    assert_int_equal(mft_ber_skip(&c, &h, &raw, &rl), 0);
    assert_int_equal(rl, 7);
    assert_memory_equal(raw, seq + 5, 7);
    assert_int_equal(mft_ber_more(&c, &h), 0);
    assert_int_equal(c.off, sizeof(seq));
    assert_int_equal(mft_ber_more(&c, &h), 0); /* stays ended */

    /* a child longer than its definite parent */
    static const unsigned char bad[] = {0x30, 0x03, 0x04, 0x05, 'a', 'b', 'c', 'd', 'e'};
    assert_int_equal(mft_ber_open(&c, bad, sizeof(bad), 0, 0x30), 0);
    assert_int_equal(mft_ber_more(&c, &h), -1);
}

static void test_der_header(void **state)
{
    (void)state;
    unsigned char h[10];
    assert_int_equal(mft_ber_der_header(0x30, 5, h), 2);
    assert_memory_equal(h, "\x30\x05", 2);
    assert_int_equal(mft_ber_der_header(0x30, 200, h), 3);
    assert_memory_equal(h, "\x30\x81\xc8", 3);
    assert_int_equal(mft_ber_der_header(0x04, 70000, h), 5);
    assert_memory_equal(h, "\x04\x83\x01\x11\x70", 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_octets),     cmocka_unit_test(test_octets_malformed),
        cmocka_unit_test(test_bio),        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_der_header),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
