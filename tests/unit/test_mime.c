/*
 * test_mime — unit tests of lib/mft_mime: real AS2 files from other products
 * (read in place from MFT_SHARED_DIR), the data-driven split cases of
 * tests/data/mime/<case>/ (input.eml + partN.bin, or an `error` file), and
 * hand-written edge cases (folding, parameters, limits, transfer encodings).
 * Independent checks: MICs with OpenSSL's digest, signatures with CMS_verify.
 */
#include "mft_mime.h"

#include <dirent.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define AS2_DIR MFT_SHARED_DIR "/interop/as2"

static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void mic_b64(const EVP_MD *md, const unsigned char *p, size_t n, char *out)
{
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int dl = 0;
    assert_int_equal(EVP_Digest(p, n, d, &dl, md, NULL), 1);
    EVP_EncodeBlock((unsigned char *)out, d, (int)dl);
}

/* Top-level entity -> its boundary (from Content-Type) -> parts. */
static size_t split_entity(const unsigned char *buf, size_t len, struct mft_mime_entity *e,
                           struct mft_mime_value *v, struct mft_span *parts, size_t max)
{
    struct mft_err err = {0};
    char ct[1024];
    size_t n = 0;
    assert_int_equal(mft_mime_parse(buf, len, 0, e, &err), 0);
    assert_true(mft_mime_header(e, "content-type", ct, sizeof(ct)) > 0);
    assert_int_equal(mft_mime_parse_value(ct, v, &err), 0);
    assert_non_null(mft_mime_param(v, "boundary"));
    if (mft_mime_split(&e->body, mft_mime_param(v, "boundary"), parts, max, &n, &err) < 0)
        fail_msg("split: %s (%s)", err.message, err.detail);
    return n;
}

/* Verifies a detached CMS signature (base64 part body) over data with OpenSSL alone. */
static int cms_verify_b64(const struct mft_span *sig_b64, const unsigned char *data, size_t len,
                          const char *cert_path)
{
    struct mft_err err = {0};
    unsigned char *der = NULL;
    size_t der_len = 0;
    assert_int_equal(mft_mime_decode("base64", sig_b64, &der, &der_len, &err), 0);
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)der_len);
    assert_non_null(cms);
    FILE *f = fopen(cert_path, "r");
    assert_non_null(f);
    X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(cert);
    STACK_OF(X509) *certs = sk_X509_new_null();
    sk_X509_push(certs, cert);
    BIO *in = BIO_new_mem_buf(data, (int)len);
    int ok = CMS_verify(cms, certs, NULL, in, NULL,
                        CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN);
    BIO_free(in);
    sk_X509_pop_free(certs, X509_free);
    CMS_ContentInfo_free(cms);
    free(der);
    return ok == 1 ? 0 : -1;
}

/* Mendelson multipart/signed, HTTP header block on top, preamble, binary LF payload. */
static void test_mecas2_signed_wire(void **state)
{
    size_t len, plen;
    unsigned char *buf = read_file(AS2_DIR "/derived/mecas2_signed.wire.as2", &len);
    unsigned char *payload = read_file(AS2_DIR "/pyas2-lib/payload.txt", &plen);
    struct mft_mime_entity e, pe;
    struct mft_mime_value v;
    struct mft_span parts[4];
    struct mft_err err = {0};
    char tmp[256];

    size_t n = split_entity(buf, len, &e, &v, parts, 4);
    assert_int_equal(e.n_headers, 18);
    assert_int_equal(mft_mime_header(&e, "AS2-FROM", tmp, sizeof(tmp)), 6);
    assert_string_equal(tmp, "mecas2");
    assert_string_equal(v.token, "multipart/signed");
    assert_string_equal(mft_mime_param(&v, "boundary"), "----=_Part_211_306083396.1641304626706");
    assert_string_equal(mft_mime_param(&v, "micalg"), "sha256");
    assert_string_equal(mft_mime_param(&v, "PROTOCOL"), "application/pkcs7-signature");
    assert_int_equal(n, 2);

    /* Independent location of the delimiters. */
    const char *delim = "\r\n------=_Part_211_306083396.1641304626706";
    const unsigned char *d1 = memmem(e.body.p, e.body.len, delim, strlen(delim));
    assert_non_null(d1);
    const unsigned char *d2 =
        memmem(d1 + 1, e.body.len - (size_t)(d1 + 1 - e.body.p), delim, strlen(delim));
    assert_non_null(d2);
    assert_ptr_equal(parts[0].p, d1 + strlen(delim) + 2);
    assert_ptr_equal(parts[0].p + parts[0].len, d2); /* ends right before the CRLF */
    assert_memory_equal(parts[0].p + parts[0].len, "\r\n--", 4);

    char mic[100];
    mic_b64(EVP_sha256(), parts[0].p, parts[0].len, mic);
    assert_string_equal(mic, "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=");

    assert_int_equal(mft_mime_parse(parts[0].p, parts[0].len, 0, &pe, &err), 0);
    assert_int_equal(mft_mime_header(&pe, "content-transfer-encoding", tmp, sizeof(tmp)), 6);
    assert_int_equal(mft_mime_header(&pe, "Content-Disposition", tmp, sizeof(tmp)), 32);
    struct mft_mime_value dv;
    assert_int_equal(mft_mime_parse_value(tmp, &dv, &err), 0);
    assert_string_equal(dv.token, "attachment");
    assert_string_equal(mft_mime_param(&dv, "filename"), "payload.txt");
    unsigned char *dec = NULL;
    size_t dec_len = 0;
    assert_int_equal(mft_mime_decode("binary", &pe.body, &dec, &dec_len, &err), 0);
    assert_int_equal(dec_len, plen);
    assert_memory_equal(dec, payload, plen);
    free(dec);

    /* The signature part verifies over exactly parts[0]. */
    assert_int_equal(mft_mime_parse(parts[1].p, parts[1].len, 0, &pe, &err), 0);
    assert_int_equal(cms_verify_b64(&pe.body, parts[0].p, parts[0].len,
                                    AS2_DIR "/pyas2-lib/cert_mecas2_public.pem"),
                     0);
    /* ... and not over one byte more (the CR of the delimiter). */
    assert_int_equal(cms_verify_b64(&pe.body, parts[0].p, parts[0].len + 1,
                                    AS2_DIR "/pyas2-lib/cert_mecas2_public.pem"),
                     -1);
    free(buf);
    free(payload);
}

/* libas2: folded Content-Type (SP), boundary starting with "--", base64 payload. */
static void check_libas2(const char *path, int crlf)
{
    size_t len, plen;
    unsigned char *buf = read_file(path, &len);
    unsigned char *edi = read_file(AS2_DIR "/node-libas2/sample_edi.edi", &plen);
    struct mft_mime_entity e, pe;
    struct mft_mime_value v;
    struct mft_span parts[4];
    struct mft_err err = {0};
    char cte[64];

    size_t n = split_entity(buf, len, &e, &v, parts, 4);
    assert_int_equal(n, 2);
    assert_string_equal(mft_mime_param(&v, "boundary"), "--LibAs2-0ec23b35d2ec69e0-Part_1");
    assert_string_equal(mft_mime_param(&v, "micalg"), "sha256");
    const char *end = crlf ? "\r\n----LibAs2-0ec23b35d2ec69e0-Part_1\r\nContent-Type: application/"
                             "pkcs7-signature"
                           : "\n----LibAs2-0ec23b35d2ec69e0-Part_1\nContent-Type: application/"
                             "pkcs7-signature";
    assert_memory_equal(parts[0].p + parts[0].len, end, strlen(end));
    assert_int_equal(mft_mime_parse(parts[0].p, parts[0].len, 0, &pe, &err), 0);
    assert_int_equal(mft_mime_header(&pe, "Content-Transfer-Encoding", cte, sizeof(cte)), 6);
    unsigned char *dec = NULL;
    size_t dec_len = 0;
    assert_int_equal(mft_mime_decode(cte, &pe.body, &dec, &dec_len, &err), 0);
    assert_int_equal(dec_len, plen);
    assert_memory_equal(dec, edi, plen);
    free(dec);
    if (crlf) {
        char mic[100];
        mic_b64(EVP_sha256(), parts[0].p, parts[0].len, mic);
        assert_string_equal(mic, "bIwxkbRLLtHWlniKxMReISQ/GvEve0LV/hxdl9OD0E8=");
        assert_int_equal(mft_mime_parse(parts[1].p, parts[1].len, 0, &pe, &err), 0);
        assert_int_equal(cms_verify_b64(&pe.body, parts[0].p, parts[0].len,
                                        AS2_DIR "/node-libas2/libas2community.cer"),
                         0);
    }
    free(buf);
    free(edi);
}

static void test_libas2_signed(void **state)
{
    check_libas2(AS2_DIR "/node-libas2/content.signed.txt", 0);
    check_libas2(AS2_DIR "/derived/libas2_content.signed.wire.txt", 1);
}

/* The MDN files seen as MIME: nested multiparts, folded TAB boundary, LF-only. */
static void test_mdn_files_as_mime(void **state)
{
    size_t len;
    struct mft_mime_entity e, pe;
    struct mft_mime_value v, pv;
    struct mft_span parts[4], inner[4];
    struct mft_err err = {0};
    char ct[512];

    unsigned char *buf = read_file(AS2_DIR "/pyas2-lib/mecas2_unsigned.mdn", &len);
    size_t n = split_entity(buf, len, &e, &v, parts, 4);
    assert_string_equal(v.token, "multipart/report");
    assert_string_equal(mft_mime_param(&v, "report-type"), "disposition-notification");
    assert_string_equal(mft_mime_param(&v, "boundary"), "----=_Part_0_1043598301.1483093396911");
    assert_int_equal(n, 2);
    assert_int_equal(mft_mime_parse(parts[1].p, parts[1].len, 0, &pe, &err), 0);
    assert_true(mft_mime_header(&pe, "Content-Type", ct, sizeof(ct)) > 0);
    assert_string_equal(ct, "message/disposition-notification");
    const char *last = "authentication-failed\n";
    assert_memory_equal(pe.body.p + pe.body.len - strlen(last), last, strlen(last));
    free(buf);

    buf = read_file(AS2_DIR "/pyas2-lib/mecas2_signed.mdn", &len);
    n = split_entity(buf, len, &e, &v, parts, 4);
    assert_int_equal(n, 2);
    assert_int_equal(mft_mime_parse(parts[0].p, parts[0].len, 0, &pe, &err), 0);
    assert_true(mft_mime_header(&pe, "Content-Type", ct, sizeof(ct)) > 0);
    assert_string_equal(ct, "multipart/report; report-type=disposition-notification; "
                            "\tboundary=\"----=_Part_5_2083852873.1483093497175\"");
    assert_int_equal(mft_mime_parse_value(ct, &pv, &err), 0);
    assert_int_equal(mft_mime_split(&pe.body, mft_mime_param(&pv, "boundary"), inner, 4, &n, &err),
                     0);
    assert_int_equal(n, 2);
    /* The signed entity ends with the inner close delimiter and its CRLF. */
    const char *tail = "------=_Part_5_2083852873.1483093497175--\r\n";
    assert_memory_equal(parts[0].p + parts[0].len - strlen(tail), tail, strlen(tail));
    free(buf);
}

/* Data-driven split cases: tests/data/mime/<case>/. */
static void test_data_cases(void **state)
{
    const char *root = MFT_TEST_DATA "/mime";
    DIR *d = opendir(root);
    assert_non_null(d);
    struct dirent *de;
    int cases = 0;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char path[1024];
        size_t len;
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s/input.eml", root, de->d_name);
        if (stat(path, &st) != 0)
            continue;
        unsigned char *in = read_file(path, &len);
        struct mft_mime_entity e;
        struct mft_mime_value v;
        struct mft_span parts[MFT_MIME_MAX_PARTS];
        struct mft_err err = {0};
        char ct[1024];
        size_t n = 0;
        assert_int_equal(mft_mime_parse(in, len, 0, &e, &err), 0);
        assert_true(mft_mime_header(&e, "Content-Type", ct, sizeof(ct)) > 0);
        assert_int_equal(mft_mime_parse_value(ct, &v, &err), 0);
        const char *b = mft_mime_param(&v, "boundary");
        assert_non_null(b);
        int rc = mft_mime_split(&e.body, b, parts, MFT_MIME_MAX_PARTS, &n, &err);
        snprintf(path, sizeof(path), "%s/%s/error", root, de->d_name);
        if (stat(path, &st) == 0) {
            if (rc != -1 || err.kind != MFT_E_MALFORMED_MESSAGE)
                fail_msg("case %s: expected MALFORMED_MESSAGE, got rc=%d", de->d_name, rc);
            assert_int_equal(n, 0);
        } else {
            if (rc != 0)
                fail_msg("case %s: %s (%s)", de->d_name, err.message, err.detail);
            size_t expected = 0;
            for (;;) {
                snprintf(path, sizeof(path), "%s/%s/part%zu.bin", root, de->d_name, expected + 1);
                if (stat(path, &st) != 0)
                    break;
                size_t plen;
                unsigned char *want = read_file(path, &plen);
                if (expected >= n || parts[expected].len != plen ||
                    memcmp(parts[expected].p, want, plen) != 0)
                    fail_msg("case %s: part %zu differs", de->d_name, expected + 1);
                free(want);
                expected++;
            }
            if (expected != n)
                fail_msg("case %s: %zu parts, expected %zu", de->d_name, n, expected);
        }
        free(in);
        cases++;
    }
    closedir(d);
    assert_true(cases >= 8);
}

static void test_parse_headers(void **state)
{
    struct mft_mime_entity e;
    struct mft_err err = {0};
    char out[128];
    const char *m = "Content-Type: multipart/signed;\r\n\tboundary=\"x\";\r\n  micalg=sha1\r\n"
                    "X-Empty:\r\nsubject:   hi there  \r\n\r\nbody\r\n";
    assert_int_equal(mft_mime_parse((const unsigned char *)m, strlen(m), 0, &e, &err), 0);
    assert_int_equal(e.n_headers, 3);
    assert_int_equal(e.headers[0].name.len, 12);
    /* Raw value keeps the folding, excludes the final line break. */
    const char *raw = "multipart/signed;\r\n\tboundary=\"x\";\r\n  micalg=sha1";
    assert_int_equal(e.headers[0].value.len, strlen(raw));
    assert_memory_equal(e.headers[0].value.p, raw, strlen(raw));
    assert_int_equal(mft_mime_header(&e, "CONTENT-TYPE", out, sizeof(out)),
                     (int)strlen("multipart/signed;\tboundary=\"x\";  micalg=sha1"));
    assert_string_equal(out, "multipart/signed;\tboundary=\"x\";  micalg=sha1");
    assert_int_equal(mft_mime_header(&e, "x-empty", out, sizeof(out)), 0);
    assert_int_equal(mft_mime_header(&e, "Subject", out, sizeof(out)), 8);
    assert_string_equal(out, "hi there");
    assert_int_equal(mft_mime_header(&e, "Subject", out, 8), -1); /* does not fit */
    assert_int_equal(mft_mime_header(&e, "absent", out, sizeof(out)), -1);
    assert_int_equal(e.body.len, 6);
    assert_memory_equal(e.body.p, "body\r\n", 6);
    assert_ptr_equal(e.whole.p, m);
    assert_int_equal(e.whole.len, strlen(m));

    /* No header block at all. */
    const char *nh = "\r\nraw";
    assert_int_equal(mft_mime_parse((const unsigned char *)nh, 5, 0, &e, &err), 0);
    assert_int_equal(e.n_headers, 0);
    assert_int_equal(e.body.len, 3);
    /* Headerless content (raw EDIFACT). */
    const char *edi = "UNB+UNOA:2+X:14'\nUNH+1+ORDERS:D'\nBGM+220'\n";
    assert_int_equal(mft_mime_parse((const unsigned char *)edi, strlen(edi), 0, &e, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    assert_int_equal(mft_mime_parse((const unsigned char *)edi, strlen(edi), 1, &e, &err), 0);
    assert_int_equal(e.n_headers, 0);
    assert_int_equal(e.body.len, strlen(edi));
    const char *una = "UNA:+.? 'UNB+UNOA:1+SENDER:14+RECV:14+200101:1200+1'UNZ+1+1'";
    assert_int_equal(mft_mime_parse((const unsigned char *)una, strlen(una), 1, &e, &err), 0);
    assert_int_equal(e.n_headers, 0);
    assert_int_equal(e.body.len, strlen(una));
    const char *looks = "Date: 2020\r\nTime: 10:00\r\n\r\nrows\r\n";
    assert_int_equal(mft_mime_parse((const unsigned char *)looks, strlen(looks), 1, &e, &err), 0);
    assert_int_equal(e.n_headers, 0);
    assert_int_equal(e.body.len, strlen(looks));
    const char *mime = "content-type: text/plain\r\n\r\nrows\r\n";
    assert_int_equal(mft_mime_parse((const unsigned char *)mime, strlen(mime), 1, &e, &err), 0);
    assert_int_equal(e.n_headers, 1);
    assert_int_equal(e.body.len, 6);
    /* A continuation line first is not a header. */
    assert_int_equal(mft_mime_parse((const unsigned char *)" a: b\r\n\r\n", 9, 0, &e, &err), -1);
    /* A non-header line inside the block. */
    const char *bad = "A: b\r\nnot a header\r\n\r\n";
    err.kind = MFT_E_OK;
    assert_int_equal(mft_mime_parse((const unsigned char *)bad, strlen(bad), 0, &e, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    assert_int_equal(mft_mime_parse((const unsigned char *)bad, strlen(bad), 1, &e, &err), 0);
    assert_int_equal(e.body.len, strlen(bad));
    /* Headers up to the end, no blank line: empty body. */
    assert_int_equal(mft_mime_parse((const unsigned char *)"A: b\nC: d", 9, 0, &e, &err), 0);
    assert_int_equal(e.n_headers, 2);
    assert_int_equal(e.body.len, 0);
    assert_int_equal(e.headers[1].value.len, 1);
    /* Empty input. */
    assert_int_equal(mft_mime_parse((const unsigned char *)"", 0, 0, &e, &err), 0);
    assert_int_equal(e.n_headers, 0);
}

static void test_too_many_headers(void **state)
{
    char buf[4096];
    size_t o = 0;
    struct mft_mime_entity e;
    struct mft_err err = {0};
    for (int i = 0; i < MFT_MIME_MAX_HEADERS; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "H%d: v\r\n", i);
    o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\r\nbody");
    assert_int_equal(mft_mime_parse((unsigned char *)buf, o, 0, &e, &err), 0);
    assert_int_equal(e.n_headers, MFT_MIME_MAX_HEADERS);
    o -= 6;
    o += (size_t)snprintf(buf + o, sizeof(buf) - o, "H64: v\r\n\r\nbody");
    assert_int_equal(mft_mime_parse((unsigned char *)buf, o, 0, &e, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
}

/*
 * Decrypted or inflated content (allow_headerless): raw content stays raw, but
 * a MIME entity with a damaged header block is refused, never taken as raw.
 */
static void test_headerless_or_damaged(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;       /* expected return */
        size_t n_hdr; /* headers when rc == 0 (0 = the whole buffer is the body) */
    } cases[] = {
        /* raw EDIFACT whose first segment looks like "name: value" */
        {"UNA:+.? 'UNB+UNOC:3+SENDER+RECEIVER+261204:0830+1'UNZ+1+1'", 0, 0},
        {"ISA*00*          *00*~\nGS*PO*A*B~\n", 0, 0},
        {"<?xml version=\"1.0\"?>\n<order/>\n", 0, 0},
        /* a MIME entity without Content-Type (RFC 2045 default text/plain) */
        {"MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\nQUJD\r\n", 0, 2},
        /* the first block damaged (a flipped CBC block), the header block still there */
        {"MIME-Version; 1.0\r\nContent-Type: multipart/signed; boundary=b\r\n\r\n--b\r\n", -1, 0},
        {"\x93\x11garbage\x02\r\nContent-Type: application/edi-x12\r\n\r\nISA*", -1, 0},
        /* a MIME header block that breaks, or has too many fields */
        {"Content-Type: text/plain\r\nthis is not a header\r\n\r\nbody", -1, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mft_mime_entity e;
        struct mft_err err;
        mft_err_clear(&err);
        int rc =
            mft_mime_parse((const unsigned char *)cases[i].in, strlen(cases[i].in), 1, &e, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu: rc %d, expected %d (%s)", i, rc, cases[i].rc, err.message);
        if (rc == 0) {
            assert_int_equal(e.n_headers, cases[i].n_hdr);
            if (cases[i].n_hdr == 0)
                assert_int_equal(e.body.len, strlen(cases[i].in));
        } else {
            assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
        }
    }
    /* 70 MIME fields: not raw content, an error */
    char many[70 * 24 + 8];
    size_t n = 0;
    for (int i = 0; i < 70; i++)
        n += (size_t)snprintf(many + n, sizeof(many) - n, "Content-X%02d: v\r\n", i);
    snprintf(many + n, sizeof(many) - n, "\r\nb");
    struct mft_mime_entity e;
    struct mft_err err;
    assert_int_equal(mft_mime_parse((const unsigned char *)many, strlen(many), 1, &e, &err), -1);
}

static void test_parse_value(void **state)
{
    struct mft_mime_value v;
    struct mft_err err = {0};

    assert_int_equal(mft_mime_parse_value("Multipart/Signed; protocol=\"application/pkcs7-"
                                          "signature\"; micalg=SHA-256;\r\n\tBoundary=\"--=_a/b+c"
                                          "=d-e\"",
                                          &v, &err),
                     0);
    assert_string_equal(v.token, "multipart/signed");
    assert_int_equal(v.n_params, 3);
    assert_string_equal(v.params[1].value, "SHA-256"); /* values keep their case */
    assert_string_equal(v.params[2].name, "boundary");
    assert_string_equal(mft_mime_param(&v, "boundary"), "--=_a/b+c=d-e");
    assert_null(mft_mime_param(&v, "charset"));

    /* Unquoted boundary with = / + -, TAB and spaces around ; and =. */
    assert_int_equal(mft_mime_parse_value("multipart/report ;\treport-type = disposition-"
                                          "notification ;boundary=----=_Part_5/x+y",
                                          &v, &err),
                     0);
    assert_string_equal(v.token, "multipart/report");
    assert_string_equal(mft_mime_param(&v, "report-type"), "disposition-notification");
    assert_string_equal(mft_mime_param(&v, "boundary"), "----=_Part_5/x+y");

    /* A broken sender wrapped the whole value in quotes. */
    assert_int_equal(mft_mime_parse_value("\"application/pkcs7-mime; smime-type=enveloped-data;"
                                          " name=smime.p7m\"",
                                          &v, &err),
                     0);
    assert_string_equal(v.token, "application/pkcs7-mime");
    assert_string_equal(mft_mime_param(&v, "smime-type"), "enveloped-data");
    assert_string_equal(mft_mime_param(&v, "name"), "smime.p7m");
    /* Only the token quoted. */
    assert_int_equal(mft_mime_parse_value("\"text/plain\"; charset=utf-8", &v, &err), 0);
    assert_string_equal(v.token, "text/plain");
    assert_string_equal(mft_mime_param(&v, "charset"), "utf-8");
    /* Escapes in quoted strings; empty parameters; parameter without a value. */
    assert_int_equal(
        mft_mime_parse_value("attachment;; filename=\"a \\\"b\\\".txt\"; x;", &v, &err), 0);
    assert_string_equal(v.token, "attachment");
    assert_string_equal(mft_mime_param(&v, "filename"), "a \"b\".txt");
    assert_string_equal(mft_mime_param(&v, "x"), "");
    /* Errors. */
    assert_int_equal(mft_mime_parse_value("text/plain; name=\"open", &v, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    assert_int_equal(mft_mime_parse_value(NULL, &v, &err), -1);
    char big[2048];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(mft_mime_parse_value(big, &v, &err), -1);
    memcpy(big, "a/b; x=", 7);
    assert_int_equal(mft_mime_parse_value(big, &v, &err), -1);
    char many[1024] = "a/b";
    for (int i = 0; i <= MFT_MIME_MAX_PARAMS; i++) {
        size_t l = strlen(many);
        snprintf(many + l, sizeof(many) - l, "; p%d=%d", i, i);
    }
    assert_int_equal(mft_mime_parse_value(many, &v, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
}

static void test_split_limits(void **state)
{
    char buf[8192];
    size_t o = 0, n = 99;
    struct mft_span parts[MFT_MIME_MAX_PARTS];
    struct mft_err err = {0};
    for (int i = 0; i < 3; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "--B\r\n\r\np%d\r\n", i);
    o += (size_t)snprintf(buf + o, sizeof(buf) - o, "--B--\r\n");
    struct mft_span body = {(unsigned char *)buf, o};
    assert_int_equal(mft_mime_split(&body, "B", parts, 3, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(parts[2].len, 4);
    assert_memory_equal(parts[2].p, "\r\np2", 4);
    assert_int_equal(mft_mime_split(&body, "B", parts, 2, &n, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    assert_int_equal(n, 0);

    o = 0;
    for (int i = 0; i < MFT_MIME_MAX_PARTS + 1; i++)
        o += (size_t)snprintf(buf + o, sizeof(buf) - o, "--B\n\nx\n");
    o += (size_t)snprintf(buf + o, sizeof(buf) - o, "--B--");
    body.len = o;
    assert_int_equal(mft_mime_split(&body, "B", parts, MFT_MIME_MAX_PARTS, &n, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);

    /* Bad boundaries and closing delimiter without parts. */
    assert_int_equal(mft_mime_split(&body, "", parts, MFT_MIME_MAX_PARTS, &n, &err), -1);
    struct mft_span only_close = {(const unsigned char *)"--B--\r\n", 7};
    assert_int_equal(mft_mime_split(&only_close, "B", parts, MFT_MIME_MAX_PARTS, &n, &err), -1);
    struct mft_span empty = {(const unsigned char *)"", 0};
    assert_int_equal(mft_mime_split(&empty, "B", parts, MFT_MIME_MAX_PARTS, &n, &err), -1);
}

static void decode_ok(const char *cte, const char *in, const char *want, size_t want_len)
{
    struct mft_span s = {(const unsigned char *)in, strlen(in)};
    struct mft_err err = {0};
    unsigned char *out = NULL;
    size_t n = 0;
    if (mft_mime_decode(cte, &s, &out, &n, &err) != 0)
        fail_msg("decode %s: %s", cte ? cte : "(null)", err.message);
    assert_int_equal(n, want_len);
    assert_memory_equal(out, want, want_len);
    free(out);
}

static void decode_err(const char *cte, const char *in)
{
    struct mft_span s = {(const unsigned char *)in, strlen(in)};
    struct mft_err err = {0};
    unsigned char *out = (unsigned char *)"x";
    size_t n = 7;
    assert_int_equal(mft_mime_decode(cte, &s, &out, &n, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    assert_null(out);
    assert_int_equal(n, 0);
}

static void test_decode(void **state)
{
    decode_ok(NULL, "a\r\nb", "a\r\nb", 4);
    decode_ok("", "", "", 0);
    decode_ok(" 7BIT ", "x", "x", 1);
    decode_ok("8bit", "\xc3\xa9", "\xc3\xa9", 2);
    decode_ok("Binary", "a\0b", "a", 1);
    /* base64 with CRLF, LF, spaces and TABs; with and without padding. */
    decode_ok("base64", "SGVs\r\nbG8s\n IHdv\tcmxk\r\nIQ==\r\n", "Hello, world!", 13);
    decode_ok("BASE64", "SGVsbG8", "Hello", 5);
    decode_ok("base64", "AAEC/w==", "\x00\x01\x02\xff", 4);
    decode_ok("base64", "", "", 0);
    decode_err("base64", "SGVs*bG8=");
    decode_err("base64", "SGVsb");     /* one dangling character */
    decode_err("base64", "SGVs=bG8="); /* data after padding */
    /* quoted-printable: soft breaks (CRLF, LF, with padding), =XX, trailing blanks. */
    decode_ok("quoted-printable", "a=3Db=\r\nc=\nd=  \r\ne", "a=bcde", 6);
    decode_ok("Quoted-Printable", "caf=C3=a9 \t\r\nnext=20\r\nx=", "caf\xc3\xa9\r\nnext \r\nx", 15);
    decode_ok("quoted-printable", "50% =ZZ off", "50% =ZZ off", 11);
    decode_err("x-uuencode", "begin 644 f\n");
    decode_err("base-64", "AAAA");
    char longcte[100];
    memset(longcte, 'a', 99);
    longcte[99] = '\0';
    decode_err(longcte, "x");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mecas2_signed_wire),    cmocka_unit_test(test_libas2_signed),
        cmocka_unit_test(test_mdn_files_as_mime),     cmocka_unit_test(test_data_cases),
        cmocka_unit_test(test_parse_headers),         cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_headerless_or_damaged), cmocka_unit_test(test_parse_value),
        cmocka_unit_test(test_split_limits),          cmocka_unit_test(test_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
