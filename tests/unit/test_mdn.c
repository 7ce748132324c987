/*
 * test_mdn — unit tests of lib/mft_mdn: Disposition-Notification-Options in
 * many spellings (a table), real MDNs from Mendelson and ph-OpenAS2 read in
 * place from MFT_SHARED_DIR, build -> parse round trips, and signed MDNs
 * checked by the independent `openssl cms -verify` command line.
 */
#include "mft_mdn.h"
#include "mft_outbox.h"

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "mft_testkeys.h"

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

/* ------------------------------------------------------------- options */

static const struct {
    const char *dno;
    int rc, requested, required, micalg_required;
    const char *micalgs; /* '|'-joined, in order */
} option_cases[] = {
    {"signed-receipt-protocol=optional, pkcs7-signature; signed-receipt-micalg=optional, "
     "sha-256, sha1",
     0, 1, 0, 0, "sha-256|sha1"},
    {"signed-receipt-micalg=required, SHA256; signed-receipt-protocol=required, "
     "pkcs7-signature",
     0, 1, 1, 1, "SHA256"},
    {"Signed-Receipt-Protocol = Optional , PKCS7-Signature ;Signed-Receipt-MicAlg = Optional "
     ", SHA1,MD5",
     0, 1, 0, 0, "SHA1|MD5"},
    {"signed-receipt-protocol=\"optional\", \"pkcs7-signature\"; "
     "signed-receipt-micalg=\"optional\", \"sha-256\"",
     0, 1, 0, 0, "sha-256"},
    {"signed-receipt-protocol=optional,pkcs7-signature;signed-receipt-micalg=optional,sha1;", 0, 1,
     0, 0, "sha1"},
    {"\tsigned-receipt-protocol = required , pkcs7-signature ;\r\n signed-receipt-micalg = "
     "required , sha-512 , sha-384",
     0, 1, 1, 1, "sha-512|sha-384"},
    {"signed-receipt-micalg=optional, sha-256", 0, 0, 0, 0, "sha-256"},
    {"signed-receipt-protocol=pkcs7-signature; signed-receipt-micalg=sha1", 0, 1, 0, 0, "sha1"},
    {"signed-receipt-micalg=optional, pkcs7-signature, sha-256", 0, 0, 0, 0, "sha-256"},
    {"signed-receipt-protocol=optional, pkcs7-signature, signed-receipt-micalg=optional, sha1", 0,
     1, 0, 0, ""},
    {"signed-receipt-protocol=required, x-other", 0, 0, 0, 0, ""},
    {"foo=bar; signed-receipt-protocol=required,pkcs7-signature", 0, 1, 1, 0, ""},
    {"signed-receipt-micalg=optional, a1, a2, a3, a4, a5, a6, a7, a8, a9", 0, 0, 0, 0,
     "a1|a2|a3|a4|a5|a6|a7|a8"},
    {"SIGNED-RECEIPT-PROTOCOL=REQUIRED, PKCS7-SIGNATURE; SIGNED-RECEIPT-MICALG=REQUIRED, SHA-1", 0,
     1, 1, 1, "SHA-1"},
    {"", 0, 0, 0, 0, ""},
    {" ; ; ", 0, 0, 0, 0, ""},
    {"garbage", -1, 0, 0, 0, ""},
    {"signed-receipt-protocol=optional, pkcs7-signature; oops", -1, 1, 0, 0, ""},
    {"signed-receipt-micalg=optional, "
     "this-digest-name-is-far-too-long-to-be-real",
     -1, 0, 0, 0, ""},
};

static void test_options_table(void **state)
{
    for (size_t i = 0; i < sizeof(option_cases) / sizeof(option_cases[0]); i++) {
        struct mft_mdn_options o;
        struct mft_err err = {0};
        char joined[512] = "";
        int rc = mft_mdn_parse_options(option_cases[i].dno, &o, &err);
        for (size_t k = 0; k < o.n_micalgs; k++) {
            size_t l = strlen(joined);
            snprintf(joined + l, sizeof(joined) - l, "%s%s", k ? "|" : "", o.micalgs[k]);
        }
        if (rc != option_cases[i].rc || o.signed_requested != option_cases[i].requested ||
            o.signed_required != option_cases[i].required ||
            (rc == 0 && o.micalg_required != option_cases[i].micalg_required) ||
            (rc == 0 && strcmp(joined, option_cases[i].micalgs) != 0))
            fail_msg("case %zu \"%s\": rc=%d requested=%d required=%d micalg_required=%d "
                     "micalgs=\"%s\"",
                     i, option_cases[i].dno, rc, o.signed_requested, o.signed_required,
                     o.micalg_required, joined);
        if (rc < 0)
            assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    }
    struct mft_mdn_options o;
    struct mft_err err = {0};
    assert_int_equal(mft_mdn_parse_options(NULL, &o, &err), 0);
    assert_int_equal(o.signed_requested, 0);
    char big[MFT_MDN_MAX_OPTIONS_LEN + 2];
    memset(big, ' ', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(mft_mdn_parse_options(big, &o, &err), -1);
}

/* ------------------------------------------------------------- real MDNs */

/* The first certificate carried in the MDN's signature. */
static X509 *carried_cert(const struct mft_mdn *m)
{
    struct mft_err err = {0};
    unsigned char *der = NULL;
    size_t der_len = 0;
    assert_int_equal(mft_mime_decode(m->signature_cte, &m->signature, &der, &der_len, &err), 0);
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)der_len);
    assert_non_null(cms);
    STACK_OF(X509) *certs = CMS_get1_certs(cms);
    assert_non_null(certs);
    assert_true(sk_X509_num(certs) >= 1);
    X509 *c = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    CMS_ContentInfo_free(cms);
    free(der);
    return c;
}

static X509 *pem_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *c = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(c);
    return c;
}

static void test_mecas2_signed(void **state)
{
    size_t len;
    unsigned char *buf = read_file(AS2_DIR "/pyas2-lib/mecas2_signed.mdn", &len);
    struct mft_mdn m;
    struct mft_err err = {0};

    /* The file carries its HTTP headers on top: read it as a whole entity. */
    if (mft_mdn_parse(NULL, buf, len, &m, &err) != 0)
        fail_msg("%s (%s)", err.message, err.detail);
    assert_true(m.is_signed);
    assert_string_equal(m.micalg, "sha1");
    assert_string_equal(m.reporting_ua, "mendelson opensource AS2");
    assert_string_equal(m.original_recipient, "mecas2");
    assert_string_equal(m.original_recipient_type, "rfc822");
    assert_string_equal(m.final_recipient, "mecas2");
    assert_string_equal(m.original_message_id, "<20161230102456.10748.40759@imac.local>");
    assert_string_equal(m.disposition_raw, "automatic-action/MDN-sent-automatically; processed");
    assert_string_equal(m.disposition_mode, "automatic-action/mdn-sent-automatically");
    assert_string_equal(m.disposition_type, "processed");
    assert_string_equal(m.disposition_modifier, "");
    assert_string_equal(m.mic_b64, "O4bvrm5t2YunRfwvZicNdEUmPaPZ9vUslX8loVLDck0=");
    assert_string_equal(m.mic_alg, "sha-256");
    assert_non_null(strstr(m.text, "The AS2 message has been received."));
    assert_int_equal(m.text_truncated, 0);
    assert_int_equal(mft_mdn_classify(&m), MFT_MDN_POSITIVE);
    assert_string_equal(m.signature_cte, "base64");
    const char *head = "Content-Type: multipart/report; report-type=disposition-notification; "
                       "\r\n\tboundary=";
    assert_memory_equal(m.signed_entity.p, head, strlen(head));
    const char *tail = "------=_Part_5_2083852873.1483093497175--\r\n";
    assert_memory_equal(m.signed_entity.p + m.signed_entity.len - strlen(tail), tail, strlen(tail));

    /* Signature verifies with the certificate it carries... */
    X509 *cert = carried_cert(&m);
    struct mft_smime_verified vi;
    if (mft_mdn_verify(&m, cert, &vi, &err) != 0)
        fail_msg("verify: %s (%s)", err.message, err.detail);
    assert_string_equal(vi.digest, "SHA1");

    /* ... and not once one byte of the report changed. */
    unsigned char *copy = malloc(len);
    memcpy(copy, buf, len);
    unsigned char *dispo = memmem(copy, len, "; processed", 11);
    assert_non_null(dispo);
    dispo[2] = 'P';
    struct mft_mdn m2;
    assert_int_equal(mft_mdn_parse(NULL, copy, len, &m2, &err), 0);
    assert_string_equal(m2.disposition_type, "processed");
    assert_int_equal(mft_mdn_verify(&m2, cert, NULL, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);

    /* Same MDN with the HTTP Content-Type given separately. */
    struct mft_mime_entity e;
    char ct[512];
    assert_int_equal(mft_mime_parse(buf, len, 0, &e, &err), 0);
    assert_true(mft_mime_header(&e, "Content-Type", ct, sizeof(ct)) > 0);
    assert_int_equal(mft_mdn_parse(ct, e.body.p, e.body.len, &m2, &err), 0);
    assert_int_equal(m2.signed_entity.len, m.signed_entity.len);
    assert_string_equal(m2.mic_b64, m.mic_b64);

    X509_free(cert);
    free(copy);
    free(buf);
}

static void test_mecas2_unsigned(void **state)
{
    size_t len;
    unsigned char *buf = read_file(AS2_DIR "/pyas2-lib/mecas2_unsigned.mdn", &len);
    struct mft_mdn m;
    struct mft_err err = {0};
    if (mft_mdn_parse(NULL, buf, len, &m, &err) != 0)
        fail_msg("%s (%s)", err.message, err.detail);
    assert_false(m.is_signed);
    assert_int_equal(m.signed_entity.len, 0);
    assert_string_equal(m.original_message_id, "<20161230102316.10728.85252@imac.local>");
    assert_string_equal(m.disposition_type, "processed");
    assert_string_equal(m.disposition_modifier, "error: authentication-failed");
    assert_string_equal(m.disposition_modifier_kind, "error");
    assert_string_equal(m.disposition_modifier_text, "authentication-failed");
    assert_string_equal(m.mic_b64, "");
    assert_non_null(strstr(m.text, "Verification failed"));
    assert_int_equal(mft_mdn_classify(&m), MFT_MDN_NEGATIVE);
    assert_int_equal(mft_mdn_verify(&m, (X509 *)1, NULL, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_REQUIRED);
    free(buf);
}

static void check_david(const struct mft_mdn *m)
{
    assert_true(m->is_signed);
    assert_string_equal(m->micalg, "sha-1");
    assert_string_equal(m->reporting_ua, "ph-OpenAS2 4.2.1@172.18.112.4:443");
    assert_string_equal(m->original_recipient, "PDK000270");
    assert_string_equal(m->final_recipient, "PDK000270");
    assert_string_equal(m->original_message_id,
                        "<54a4867b-77ff-4edd-9fdb-a1e8e5b63860@1569357558959>");
    assert_non_null(strstr(m->disposition_raw, "processed/Error:unexpected-processing-error"));
    assert_string_equal(m->disposition_type, "processed");
    assert_string_equal(m->disposition_modifier, "error: unexpected-processing-error");
    assert_string_equal(m->mic_b64, "rjNsE2kpJPol7lf4jVDSkxbqT40=");
    assert_string_equal(m->mic_alg, "sha1");
    assert_non_null(strstr(m->text, "An error occured while storing the data"));
    assert_int_equal(mft_mdn_classify(m), MFT_MDN_NEGATIVE);
}

static void test_ph_openas2_david(void **state)
{
    size_t len, hlen, plen;
    struct mft_mdn m;
    struct mft_err err = {0};
    struct mft_mime_entity e;
    char ct[512];
    X509 *cert = pem_cert(AS2_DIR "/as2-lib/mdn/20190925-david.pem");

    /* Wire bytes: HTTP header block + body. */
    unsigned char *buf = read_file(AS2_DIR "/derived/ph-openas2_20190925-david.wire.mdn", &len);
    assert_int_equal(mft_mime_parse(buf, len, 0, &e, &err), 0);
    assert_true(mft_mime_header(&e, "content-type", ct, sizeof(ct)) > 0);
    if (mft_mdn_parse(ct, e.body.p, e.body.len, &m, &err) != 0)
        fail_msg("%s (%s)", err.message, err.detail);
    check_david(&m);
    struct mft_smime_verified vi;
    if (mft_mdn_verify(&m, cert, &vi, &err) != 0)
        fail_msg("verify over the wire bytes: %s (%s)", err.message, err.detail);
    assert_string_equal(vi.digest, "SHA1");

    /* The repository's copy: headers in .header, LF-only .payload. */
    unsigned char *hdr = read_file(AS2_DIR "/as2-lib/mdn/20190925-david.header", &hlen);
    unsigned char *payload = read_file(AS2_DIR "/as2-lib/mdn/20190925-david.payload", &plen);
    assert_int_equal(mft_mime_parse(hdr, hlen, 0, &e, &err), 0);
    assert_true(mft_mime_header(&e, "Content-Type", ct, sizeof(ct)) > 0);
    if (mft_mdn_parse(ct, payload, plen, &m, &err) != 0)
        fail_msg("%s (%s)", err.message, err.detail);
    check_david(&m);
    /* Line ends rewritten: the signature can no longer verify. */
    assert_int_equal(mft_mdn_verify(&m, cert, NULL, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);

    X509_free(cert);
    free(buf);
    free(hdr);
    free(payload);
}

/* Judging a partner's MDN for a message we sent, on real MDNs from
 * Mendelson and ph-OpenAS2. */
static void test_evaluate(void **state)
{
    size_t len, ulen, dlen;
    struct mft_mdn m, u, d;
    struct mft_err err = {0};
    struct mft_mime_entity e;
    char ct[512];
    int verified = -1;
    unsigned char *buf = read_file(AS2_DIR "/pyas2-lib/mecas2_signed.mdn", &len);
    unsigned char *ubuf = read_file(AS2_DIR "/pyas2-lib/mecas2_unsigned.mdn", &ulen);
    unsigned char *dbuf = read_file(AS2_DIR "/derived/ph-openas2_20190925-david.wire.mdn", &dlen);
    assert_int_equal(mft_mdn_parse(NULL, buf, len, &m, &err), 0);
    assert_int_equal(mft_mdn_parse(NULL, ubuf, ulen, &u, &err), 0);
    assert_int_equal(mft_mime_parse(dbuf, dlen, 0, &e, &err), 0);
    assert_true(mft_mime_header(&e, "content-type", ct, sizeof(ct)) > 0);
    assert_int_equal(mft_mdn_parse(ct, e.body.p, e.body.len, &d, &err), 0);
    X509 *cert = carried_cert(&m);
    X509 *david = pem_cert(AS2_DIR "/as2-lib/mdn/20190925-david.pem");
    const char *mic = "O4bvrm5t2YunRfwvZicNdEUmPaPZ9vUslX8loVLDck0=";

    /* positive, signed, MIC equal under another spelling of its algorithm */
    assert_int_equal(mft_mdn_evaluate(&m, cert, 1, mic, "SHA256", &verified, &err), 0);
    assert_int_equal(verified, 1);
    assert_int_equal(mft_mdn_evaluate(&m, cert, 1, mic, "sha-256", NULL, &err), 0);
    /* the MIC value, then the algorithm, differ */
    assert_int_equal(mft_mdn_evaluate(&m, cert, 1, "AAAA", "sha-256", NULL, &err), -1);
    assert_int_equal(err.kind, MFT_E_MIC_MISMATCH);
    assert_non_null(strstr(err.detail, mic));
    assert_int_equal(mft_mdn_evaluate(&m, cert, 1, mic, "sha1", NULL, &err), -1);
    assert_int_equal(err.kind, MFT_E_MIC_MISMATCH);
    /* signature: no certificate registered, or another one */
    assert_int_equal(mft_mdn_evaluate(&m, NULL, 0, mic, "sha-256", NULL, &err), -1);
    assert_int_equal(err.kind, MFT_E_MDN_SIGNATURE_INVALID);
    assert_int_equal(mft_mdn_evaluate(&m, david, 0, mic, "sha-256", &verified, &err), -1);
    assert_int_equal(err.kind, MFT_E_MDN_SIGNATURE_INVALID);
    assert_int_equal(verified, 0);
    /* unsigned and negative: refused when a signed MDN was asked for, else negative */
    assert_int_equal(mft_mdn_evaluate(&u, cert, 1, NULL, NULL, NULL, &err), -1);
    assert_int_equal(err.kind, MFT_E_MDN_SIGNATURE_INVALID);
    assert_int_equal(mft_mdn_evaluate(&u, cert, 0, NULL, NULL, NULL, &err), -1);
    assert_int_equal(err.kind, MFT_E_MDN_NEGATIVE);
    assert_non_null(strstr(err.message, "authentication-failed"));
    assert_non_null(strstr(err.detail, "Verification failed"));
    /* an expired signer's negative MDN: verified, reported as negative */
    assert_int_equal(
        mft_mdn_evaluate(&d, david, 1, "rjNsE2kpJPol7lf4jVDSkxbqT40=", "sha1", &verified, &err),
        -1);
    assert_int_equal(err.kind, MFT_E_MDN_NEGATIVE);
    assert_int_equal(verified, 1);
    assert_non_null(strstr(err.message, "unexpected-processing-error"));

    assert_int_equal(mft_mdn_same_digest("sha-256", "SHA256"), 1);
    assert_int_equal(mft_mdn_same_digest("sha1", "SHA-1"), 1);
    assert_int_equal(mft_mdn_same_digest("sha1", "sha-256"), 0);
    assert_int_equal(mft_mdn_same_digest(NULL, "sha1"), 0);

    /* what ingress takes for an MDN, by content */
    assert_int_equal(mft_outbox_looks_like_mdn(ct, e.body.p, e.body.len), 1);
    assert_int_equal(mft_outbox_looks_like_mdn("multipart/report; report-type=disposition-"
                                               "notification; boundary=x",
                                               NULL, 0),
                     1);
    const char *msg = "--b\r\nContent-Type: application/edi-x12\r\n\r\nISA*\r\n--b\r\n"
                      "Content-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--b--\r\n";
    assert_int_equal(mft_outbox_looks_like_mdn("multipart/signed; boundary=b",
                                               (const unsigned char *)msg, strlen(msg)),
                     0);
    assert_int_equal(mft_outbox_looks_like_mdn("application/pkcs7-mime", NULL, 0), 0);
    assert_int_equal(mft_outbox_looks_like_mdn(NULL, NULL, 0), 0);

    X509_free(cert);
    X509_free(david);
    free(buf);
    free(ubuf);
    free(dbuf);
}

static void test_not_an_mdn(void **state)
{
    struct mft_mdn m;
    struct mft_err err = {0};
    const char *html = "<html><body>502 Bad Gateway</body></html>";
    assert_int_equal(mft_mdn_parse("text/html; charset=utf-8", (const unsigned char *)html,
                                   strlen(html), &m, &err),
                     -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    assert_non_null(strstr(err.message, "not an MDN"));
    assert_non_null(strstr(err.message, "text/html"));
    assert_non_null(strstr(err.detail, "502 Bad Gateway"));

    /* A multipart/report without a disposition-notification part. */
    const char *rep = "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n";
    err.kind = MFT_E_OK;
    assert_int_equal(mft_mdn_parse("multipart/report; report-type=disposition-notification; "
                                   "boundary=b",
                                   (const unsigned char *)rep, strlen(rep), &m, &err),
                     -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    assert_non_null(strstr(err.message, "disposition-notification"));
    /* Another report type. */
    assert_int_equal(mft_mdn_parse("multipart/report; report-type=delivery-status; boundary=b",
                                   (const unsigned char *)rep, strlen(rep), &m, &err),
                     -1);
    /* Truncated. */
    assert_int_equal(
        mft_mdn_parse("multipart/report; boundary=b", (const unsigned char *)rep, 20, &m, &err),
        -1);
    /* No Disposition field. */
    const char *nod = "--b\r\nContent-Type: message/disposition-notification\r\n\r\n"
                      "Reporting-UA: x\r\n\r\n--b--\r\n";
    assert_int_equal(mft_mdn_parse("multipart/report; boundary=b", (const unsigned char *)nod,
                                   strlen(nod), &m, &err),
                     -1);
    assert_non_null(strstr(err.message, "Disposition"));
    /* multipart/signed around something that is not a report. */
    const char *sig = "--s\r\nContent-Type: text/plain\r\n\r\nx\r\n--s\r\nContent-Type: "
                      "application/pkcs7-signature\r\n\r\nAAAA\r\n--s--\r\n";
    assert_int_equal(mft_mdn_parse("multipart/signed; boundary=s", (const unsigned char *)sig,
                                   strlen(sig), &m, &err),
                     -1);
    assert_non_null(strstr(err.message, "multipart/report"));
    /* Empty body, no content type. */
    assert_int_equal(mft_mdn_parse(NULL, (const unsigned char *)"", 0, &m, &err), -1);
}

/* Spellings seen in the field: no address type, no space after the MIC's
 * comma, folded fields, a base64 notification part, a quoted-printable text. */
static void test_parse_variants(void **state)
{
    const char *body = "preamble\n--v\nContent-Type: text/plain\nContent-Transfer-Encoding: "
                       "quoted-printable\n\nDuplicate =3D kept, soft=\n break\n--v\n"
                       "Content-Type: message/disposition-notification\n"
                       "Content-Transfer-Encoding: base64\n\nB64\n--v--\n";
    char buf[2048];
    const char *mark = strstr(body, "B64");
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(mark - body), body,
             "UmVwb3J0aW5nLVVBOiBBUzIgU2VydmVyDQpGaW5h\r\nbC1SZWNpcGllbnQ6IFBESzENCk9yaWdpbmFsLU1lc"
             "3NhZ2UtSUQ6DQogPHhAeT4NCkRpc3Bvc2l0aW9uOiBBdXRvbWF0aWMtQWN0aW9uL01ETi1TZW50LUF1dG9tYX"
             "RpY2FsbHk7DQoJUFJPQ0VTU0VEL1dhcm5pbmc6IER1cGxpY2F0ZS1Eb2N1bWVudA0KUmVjZWl2ZWQtQ29udGV"
             "udC1NSUM6IGFiYz0sc2hhMQ0K",
             mark + 3);
    struct mft_mdn m;
    struct mft_err err = {0};
    if (mft_mdn_parse("Multipart/Report; Report-Type=\"disposition-notification\"; boundary=v",
                      (const unsigned char *)buf, strlen(buf), &m, &err) != 0)
        fail_msg("%s (%s)", err.message, err.detail);
    assert_false(m.is_signed);
    assert_string_equal(m.reporting_ua, "AS2 Server");
    assert_string_equal(m.final_recipient, "PDK1");
    assert_string_equal(m.original_recipient, "PDK1");
    assert_string_equal(m.original_recipient_type, "");
    assert_string_equal(m.original_message_id, "<x@y>");
    assert_string_equal(m.disposition_raw,
                        "Automatic-Action/MDN-Sent-Automatically;\tPROCESSED/Warning: "
                        "Duplicate-Document");
    assert_string_equal(m.disposition_mode, "automatic-action/mdn-sent-automatically");
    assert_string_equal(m.disposition_type, "processed");
    assert_string_equal(m.disposition_modifier, "warning: duplicate-document");
    assert_int_equal(mft_mdn_classify(&m), MFT_MDN_POSITIVE_WARNING);
    assert_string_equal(m.mic_b64, "abc=");
    assert_string_equal(m.mic_alg, "sha1");
    assert_string_equal(m.text, "Duplicate = kept, soft break");
}

/*
 * Issue 4 class 9, field variants seen in the wild, all in one report: a
 * first part without Content-Type (text/plain by default), an extra
 * text/rfc822-headers part, capitalised field names and disposition words,
 * no Original-Recipient and no address type, no space before the MIC's
 * algorithm.
 */
static void test_parse_field_variants(void **state)
{
    static const struct {
        const char *mic_line, *mic, *alg;
    } mics[] = {
        {"Received-Content-MIC: abc=,sha-256", "abc=", "sha-256"},
        {"received-content-mic:abc= , SHA256", "abc=", "SHA256"},
        {"RECEIVED-CONTENT-MIC: \"abc=\", sha_256", "abc=", "sha_256"},
        {"Received-Content-MIC: abc=", "abc=", ""},
    };
    for (size_t i = 0; i < sizeof(mics) / sizeof(mics[0]); i++) {
        char body[1500];
        snprintf(body, sizeof(body),
                 "--r\r\n\r\nThe message was received.\r\n"
                 "--r\r\nContent-Type: Message/Disposition-Notification\r\n\r\n"
                 "REPORTING-UA: Some AS2 Server\r\nfinal-recipient: RECV 1\r\n"
                 "original-message-id: <m@x>\r\n"
                 "DISPOSITION: Automatic-Action/MDN-Sent-Automatically; PROCESSED\r\n%s\r\n\r\n"
                 "--r\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <m@x>\r\n"
                 "--r--\r\n",
                 mics[i].mic_line);
        struct mft_mdn m;
        struct mft_err err = {0};
        if (mft_mdn_parse("multipart/report; report-type=disposition-notification; boundary=r",
                          (const unsigned char *)body, strlen(body), &m, &err) != 0)
            fail_msg("case %zu: %s (%s)", i, err.message, err.detail);
        assert_string_equal(m.text, "The message was received.");
        assert_string_equal(m.reporting_ua, "Some AS2 Server");
        assert_string_equal(m.final_recipient, "RECV 1");
        assert_string_equal(m.original_recipient, "RECV 1");
        assert_string_equal(m.original_message_id, "<m@x>");
        assert_string_equal(m.disposition_type, "processed");
        assert_int_equal(mft_mdn_classify(&m), MFT_MDN_POSITIVE);
        assert_string_equal(m.mic_b64, mics[i].mic);
        assert_string_equal(m.mic_alg, mics[i].alg);
    }
}

/*
 * Class 3 on the sending side: the partner's Received-Content-MIC is compared
 * with ours by value (decoded) under a normalised algorithm name, however it
 * is written: folded, with blanks, without padding, any digest spelling.
 */
static void test_mic_by_value(void **state)
{
    const char *ours = "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=";
    static const struct {
        const char *field;
        int rc;
    } cases[] = {
        {"G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=, sha-256", 0},
        {"G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=,SHA256", 0},
        {"G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo, sha_256", 0},
        {"G6PhshLOERWJEIfypIh6\r\n Q3sno6cBUWJBDky1igJvDMo=, SHA-256", 0},
        {"G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=", 0},
        {"G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMA=, sha-256", -1},
        {"G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=, sha-1", -1},
        {"G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=*, sha-256", -1},
        {", sha-256", -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char body[1200];
        snprintf(body, sizeof(body),
                 "--r\r\nContent-Type: message/disposition-notification\r\n\r\n"
                 "Final-Recipient: rfc822; x\r\nDisposition: automatic-action/"
                 "MDN-sent-automatically; processed\r\nReceived-Content-MIC: %s\r\n\r\n--r--\r\n",
                 cases[i].field);
        struct mft_mdn m;
        struct mft_err err = {0};
        assert_int_equal(mft_mdn_parse("multipart/report; boundary=r", (const unsigned char *)body,
                                       strlen(body), &m, &err),
                         0);
        int rc = mft_mdn_evaluate(&m, NULL, 0, ours, "sha-256", NULL, &err);
        if (rc != cases[i].rc)
            fail_msg("case %zu [%s]: rc %d (%s %s)", i, cases[i].field, rc, err.message,
                     err.detail);
        if (rc < 0)
            assert_int_equal(err.kind, MFT_E_MIC_MISMATCH);
    }
}

/*
 * Class 9, a corrupted signature: the real Mendelson MDN with bytes of its
 * signature value changed, the signature cut short, or not base64 at all —
 * each a clean MDN_SIGNATURE_INVALID, never a crash or a pass.
 */
static void test_corrupted_signature(void **state)
{
    size_t len;
    unsigned char *buf = read_file(AS2_DIR "/pyas2-lib/mecas2_signed.mdn", &len);
    struct mft_mdn m;
    struct mft_err err = {0};
    const char *mic = "O4bvrm5t2YunRfwvZicNdEUmPaPZ9vUslX8loVLDck0=";
    assert_int_equal(mft_mdn_parse(NULL, buf, len, &m, &err), 0);
    X509 *cert = carried_cert(&m);
    assert_int_equal(mft_mdn_evaluate(&m, cert, 1, mic, "sha-256", NULL, &err), 0);
    /* where the base64 signature is in buf, without its trailing line break */
    size_t s0 = (size_t)(m.signature.p - buf), s1 = s0 + m.signature.len;
    while (s1 > s0 && (buf[s1 - 1] == '\r' || buf[s1 - 1] == '\n' || buf[s1 - 1] == '='))
        s1--;
    for (int k = 0; k < 5; k++) {
        unsigned char *copy = malloc(len);
        assert_non_null(copy);
        memcpy(copy, buf, len);
        size_t cut = len;
        if (k < 3) { /* one character of the signature value (the DER's last bytes) */
            size_t at = s1 - 4 - (size_t)k * 60;
            while (copy[at] == '\r' || copy[at] == '\n')
                at--;
            copy[at] = copy[at] == 'A' ? 'B' : 'A';
        } else if (k == 3) { /* not base64 */
            memset(copy + s0 + 10, '!', 8);
        } else { /* half the signature gone */
            memmove(copy + s0 + (s1 - s0) / 2, copy + s1, len - s1);
            cut = len - (s1 - s0 - (s1 - s0) / 2);
        }
        struct mft_mdn c;
        int verified = -1;
        if (mft_mdn_parse(NULL, copy, cut, &c, &err) == 0) {
            assert_int_equal(mft_mdn_evaluate(&c, cert, 1, mic, "sha-256", &verified, &err), -1);
            if (err.kind != MFT_E_MDN_SIGNATURE_INVALID)
                fail_msg("corruption %d: %s", k, mft_err_kind_name(err.kind));
            assert_int_equal(verified, 0);
        } else {
            assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
        }
        free(copy);
    }
    X509_free(cert);
    free(buf);
}

/* ------------------------------------------------------------- build */

static void assert_crlf_only(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
            fail_msg("bare LF at offset %zu", i);
}

static const struct {
    const char *disposition;
    enum mft_mdn_status status;
    const char *type, *modifier;
} build_cases[] = {
    {"processed", MFT_MDN_POSITIVE, "processed", ""},
    {"processed/warning: duplicate-document", MFT_MDN_POSITIVE_WARNING, "processed",
     "warning: duplicate-document"},
    {"processed/error: decryption-failed", MFT_MDN_NEGATIVE, "processed",
     "error: decryption-failed"},
    {"processed/Error: authentication-failed", MFT_MDN_NEGATIVE, "processed",
     "error: authentication-failed"},
    {"failed/Failure: unsupported format", MFT_MDN_NEGATIVE, "failed",
     "failure: unsupported format"},
    {"Processed", MFT_MDN_POSITIVE, "processed", ""},
};

static void test_build_parse_unsigned(void **state)
{
    for (size_t i = 0; i < sizeof(build_cases) / sizeof(build_cases[0]); i++) {
        /* an AS2 name with a space travels quoted (RFC 4130 6.2) */
        const char *rcpt = (i % 2) ? "ACME CORP" : "station-1";
        struct mft_mdn_info info = {
            .reporting_ua = "mft",
            .original_recipient = (i % 2) ? NULL : rcpt,
            .final_recipient = rcpt,
            .original_message_id = "<abc-123@partner.example>",
            .disposition = build_cases[i].disposition,
            .mic_b64 = (i % 3) ? "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=" : NULL,
            .mic_alg = "sha-256",
            .text = "Line one\nline two\r\nline three",
        };
        char *ct = NULL;
        unsigned char *body = NULL;
        size_t len = 0;
        struct mft_err err = {0};
        if (mft_mdn_build(&info, NULL, NULL, &ct, &body, &len, &err) != 0)
            fail_msg("build: %s", err.message);
        assert_non_null(strstr(ct, "multipart/report; report-type=disposition-notification; "
                                   "boundary=\""));
        assert_crlf_only(body, len);
        assert_non_null(memmem(body, len, "line two\r\nline three\r\n", 22));
        struct mft_mdn m;
        if (mft_mdn_parse(ct, body, len, &m, &err) != 0)
            fail_msg("parse of our own MDN: %s (%s)", err.message, err.detail);
        assert_false(m.is_signed);
        assert_string_equal(m.reporting_ua, "mft");
        assert_string_equal(m.original_recipient, rcpt);
        assert_string_equal(m.original_recipient_type, (i % 2) ? "" : "rfc822");
        assert_string_equal(m.final_recipient, rcpt);
        if (i % 2) {
            const char *quoted = "\r\nFinal-Recipient: rfc822; \"ACME CORP\"\r\n";
            assert_non_null(memmem(body, len, quoted, strlen(quoted)));
        }
        assert_string_equal(m.original_message_id, "<abc-123@partner.example>");
        assert_string_equal(m.disposition_mode, "automatic-action/mdn-sent-automatically");
        assert_string_equal(m.disposition_type, build_cases[i].type);
        assert_string_equal(m.disposition_modifier, build_cases[i].modifier);
        assert_int_equal(mft_mdn_classify(&m), build_cases[i].status);
        assert_string_equal(m.mic_b64, info.mic_b64 ? info.mic_b64 : "");
        assert_string_equal(m.mic_alg, info.mic_b64 ? "sha-256" : "");
        const char *micline = "\r\nReceived-Content-MIC: "
                              "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=, sha-256\r\n";
        if (info.mic_b64)
            assert_non_null(memmem(body, len, micline, strlen(micline)));
        assert_string_equal(m.text, "Line one\r\nline two\r\nline three\r\n");
        free(ct);
        free(body);
    }
}

static void test_build_errors(void **state)
{
    struct mft_mdn_info ok = {
        .reporting_ua = "mft", .final_recipient = "st", .disposition = "processed"};
    char *ct = (char *)1;
    unsigned char *body = (unsigned char *)1;
    size_t len = 5;
    struct mft_err err = {0};
    struct mft_mdn_info bad = ok;
    bad.final_recipient = NULL;
    assert_int_equal(mft_mdn_build(&bad, NULL, NULL, &ct, &body, &len, &err), -1);
    assert_null(ct);
    assert_null(body);
    assert_int_equal(len, 0);
    bad = ok;
    bad.original_message_id = "<a@b>\r\nBcc: injected";
    assert_int_equal(mft_mdn_build(&bad, NULL, NULL, &ct, &body, &len, &err), -1);
    bad = ok;
    bad.mic_b64 = "AAAA";
    assert_int_equal(mft_mdn_build(&bad, NULL, NULL, &ct, &body, &len, &err), -1);

    /* Defaults: no text, no MIC, two builds get two boundaries. */
    char *ct2 = NULL;
    unsigned char *body2 = NULL;
    size_t len2 = 0;
    assert_int_equal(mft_mdn_build(&ok, NULL, NULL, &ct, &body, &len, &err), 0);
    assert_int_equal(mft_mdn_build(&ok, NULL, NULL, &ct2, &body2, &len2, &err), 0);
    assert_string_not_equal(ct, ct2);
    struct mft_mdn m;
    assert_int_equal(mft_mdn_parse(ct, body, len, &m, &err), 0);
    assert_string_equal(m.original_recipient, "st"); /* falls back to Final-Recipient */
    assert_string_equal(m.original_message_id, "");
    assert_true(strlen(m.text) > 0);
    assert_int_equal(mft_mdn_classify(&m), MFT_MDN_POSITIVE);
    free(ct);
    free(body);
    free(ct2);
    free(body2);
}

/* A key and a self-signed certificate made here. */
static void make_signer(int rsa, struct mft_keypair *kp)
{
    EVP_PKEY *key = rsa ? EVP_RSA_gen(2048) : EVP_EC_gen("P-256");
    assert_non_null(key);
    kp->cert = tk_make_cert(key, 42, "mft mdn test", NULL, NULL, -3600, 86400, 0, NULL);
    kp->key = key;
    kp->chain = NULL;
}

static char *write_temp(const char *tmpl, const void *a, size_t alen, const void *b, size_t blen)
{
    char *path = strdup(tmpl);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    assert_non_null(f);
    fwrite(a, 1, alen, f);
    if (b)
        fwrite(b, 1, blen, f);
    fclose(f);
    return path;
}

static int expect_failure; /* the tamper checks: no output for a failure we want */

static int run_openssl(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "openssl cms -verify -noverify %s -out /dev/null 2>&1", args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[1024];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    int ok = st == 0 && strstr(out, "Verification successful") != NULL;
    if (!ok && !expect_failure)
        print_message("openssl cms %s said: %s\n", args, out);
    return ok ? 0 : -1;
}

/*
 * Checks our signed MDN with the openssl command line, without our parser:
 * (1) the signed entity and the base64 signature are cut out with plain
 * string searches for the boundary and verified detached in -binary mode;
 * (2) the whole HTTP entity is given to openssl's own S/MIME reader (text
 * mode: its -binary reader keeps the CR of the CRLF that RFC 2046 gives to
 * the delimiter, so it cannot read CRLF multiparts made by any AS2 product).
 */
static int openssl_verify(const char *ct, const unsigned char *body, size_t len, X509 *cert)
{
    int rc = -1;
    const char *b = strstr(ct, "boundary=\"");
    assert_non_null(b);
    b += 10;
    char bnd[128];
    size_t bl = (size_t)(strchr(b, '"') - b);
    assert_true(bl + 3 < sizeof(bnd));
    bnd[0] = '-';
    bnd[1] = '-';
    memcpy(bnd + 2, b, bl);
    bnd[bl + 2] = '\0';
    bl += 2;
    /* body = "--S\r\n" entity "\r\n--S\r\n" sigheaders "\r\n\r\n" base64 "\r\n--S--\r\n" */
    assert_memory_equal(body, bnd, bl);
    const unsigned char *ent = body + bl + 2;
    const unsigned char *d2 = memmem(ent, len - (size_t)(ent - body), bnd, bl);
    assert_non_null(d2);
    size_t ent_len = (size_t)(d2 - 2 - ent);
    const unsigned char *sig = memmem(d2, len - (size_t)(d2 - body), "\r\n\r\n", 4);
    assert_non_null(sig);
    sig += 4;
    const unsigned char *d3 = memmem(sig, len - (size_t)(sig - body), bnd, bl);
    assert_non_null(d3);
    assert_memory_equal(d3 + bl, "--\r\n", 4);

    char *entf = write_temp("/tmp/mft_mdn_ent_XXXXXX", ent, ent_len, NULL, 0);
    const char *pem_head = "-----BEGIN CMS-----\n", *pem_tail = "-----END CMS-----\n";
    size_t sig_len = (size_t)(d3 - sig);
    while (sig_len > 0 && (sig[sig_len - 1] == '\r' || sig[sig_len - 1] == '\n'))
        sig_len--;
    char *sigtxt = malloc(strlen(pem_head) + sig_len + strlen(pem_tail) + 2);
    memcpy(sigtxt, pem_head, strlen(pem_head));
    memcpy(sigtxt + strlen(pem_head), sig, sig_len);
    sigtxt[strlen(pem_head) + sig_len] = '\n';
    memcpy(sigtxt + strlen(pem_head) + sig_len + 1, pem_tail, strlen(pem_tail) + 1);
    char *sigf = write_temp("/tmp/mft_mdn_sig_XXXXXX", sigtxt, strlen(sigtxt), NULL, 0);
    char hdr[512];
    snprintf(hdr, sizeof(hdr), "MIME-Version: 1.0\r\nContent-Type: %s\r\n\r\n", ct);
    char *msgf = write_temp("/tmp/mft_mdn_msg_XXXXXX", hdr, strlen(hdr), body, len);
    BIO *cb = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(cb, cert);
    char *cpem = NULL;
    long cl = BIO_get_mem_data(cb, &cpem);
    char *certf = write_temp("/tmp/mft_mdn_crt_XXXXXX", cpem, (size_t)cl, NULL, 0);
    BIO_free(cb);

    char args[512];
    snprintf(args, sizeof(args), "-binary -inform PEM -in %s -content %s -certfile %s", sigf, entf,
             certf);
    int r1 = run_openssl(args);
    snprintf(args, sizeof(args), "-in %s -certfile %s", msgf, certf);
    int r2 = run_openssl(args);
    rc = (r1 == 0 && r2 == 0) ? 0 : -1;
    unlink(entf);
    unlink(sigf);
    unlink(msgf);
    unlink(certf);
    free(entf);
    free(sigf);
    free(msgf);
    free(certf);
    free(sigtxt);
    return rc;
}

static void check_signed(int rsa, const char *md_in, const char *micalg, const char *ossl)
{
    struct mft_keypair kp;
    make_signer(rsa, &kp);
    struct mft_mdn_info info = {
        .reporting_ua = "mft",
        .original_recipient = "station-1",
        .final_recipient = "station-1",
        .original_message_id = "<m1@partner>",
        .disposition = "processed",
        .mic_b64 = "bIwxkbRLLtHWlniKxMReISQ/GvEve0LV/hxdl9OD0E8=",
        .mic_alg = "sha-256",
        .text = "Received.",
    };
    char *ct = NULL;
    unsigned char *body = NULL;
    size_t len = 0;
    struct mft_err err = {0};
    if (mft_mdn_build(&info, &kp, md_in, &ct, &body, &len, &err) != 0)
        fail_msg("signed build: %s (%s)", err.message, err.detail);
    assert_crlf_only(body, len);
    assert_non_null(strstr(ct, "multipart/signed; protocol=\"application/pkcs7-signature\""));
    char want[64];
    snprintf(want, sizeof(want), "micalg=%s;", micalg);
    assert_non_null(strstr(ct, want));
    const char *sigct = "\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n";
    assert_non_null(memmem(body, len, sigct, strlen(sigct)));

    struct mft_mdn m;
    if (mft_mdn_parse(ct, body, len, &m, &err) != 0)
        fail_msg("parse of our signed MDN: %s (%s)", err.message, err.detail);
    assert_true(m.is_signed);
    assert_string_equal(m.micalg, micalg);
    assert_string_equal(m.mic_b64, info.mic_b64);
    assert_int_equal(mft_mdn_classify(&m), MFT_MDN_POSITIVE);
    const char *head = "Content-Type: multipart/report; report-type=disposition-notification;";
    assert_memory_equal(m.signed_entity.p, head, strlen(head));
    struct mft_smime_verified vi;
    if (mft_mdn_verify(&m, kp.cert, &vi, &err) != 0)
        fail_msg("verify own MDN: %s (%s)", err.message, err.detail);
    assert_string_equal(vi.digest, ossl);

    /* The independent check: openssl cms on the HTTP entity. */
    assert_int_equal(openssl_verify(ct, body, len, kp.cert), 0);
    /* ... which does fail on one changed byte. */
    unsigned char *dispo = memmem(body, len, "; processed", 11);
    assert_non_null(dispo);
    dispo[2] = 'P';
    expect_failure = 1;
    assert_int_equal(openssl_verify(ct, body, len, kp.cert), -1);
    expect_failure = 0;

    free(ct);
    free(body);
    X509_free(kp.cert);
    EVP_PKEY_free(kp.key);
}

static void test_build_signed_ec(void **state)
{
    check_signed(0, "sha256", "sha-256", "SHA256");
}

static void test_build_signed_rsa_sha1(void **state)
{
    check_signed(1, "SHA1", "sha-1", "SHA1");
}

static void test_build_signed_bad_digest(void **state)
{
    struct mft_keypair kp;
    make_signer(0, &kp);
    struct mft_mdn_info info = {
        .reporting_ua = "mft", .final_recipient = "st", .disposition = "processed"};
    char *ct = NULL;
    unsigned char *body = NULL;
    size_t len = 0;
    struct mft_err err = {0};
    assert_int_equal(mft_mdn_build(&info, &kp, "whirlpool-9", &ct, &body, &len, &err), -1);
    assert_int_equal(err.kind, MFT_E_ALGORITHM_REFUSED);
    assert_null(ct);
    assert_null(body);
    X509_free(kp.cert);
    EVP_PKEY_free(kp.key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_options_table),
        cmocka_unit_test(test_mecas2_signed),
        cmocka_unit_test(test_mecas2_unsigned),
        cmocka_unit_test(test_ph_openas2_david),
        cmocka_unit_test(test_evaluate),
        cmocka_unit_test(test_not_an_mdn),
        cmocka_unit_test(test_parse_variants),
        cmocka_unit_test(test_parse_field_variants),
        cmocka_unit_test(test_mic_by_value),
        cmocka_unit_test(test_corrupted_signature),
        cmocka_unit_test(test_build_parse_unsigned),
        cmocka_unit_test(test_build_errors),
        cmocka_unit_test(test_build_signed_ec),
        cmocka_unit_test(test_build_signed_rsa_sha1),
        cmocka_unit_test(test_build_signed_bad_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
