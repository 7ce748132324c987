/*
 * test_as2_send — outgoing AS2 messages (lib/mft_as2_send): every combination
 * of signing digest × cipher × compression order × transfer encoding is
 * built, then
 *   - checked by an independent implementation: the `openssl cms` command line
 *     decrypts it and verifies the signature, and the content it yields is the
 *     payload entity we meant to send (cases without compression: Debian's
 *     openssl has no zlib);
 *   - received by our own receiver (mft_as2_receive): same payload bytes, same
 *     MIC as the one the builder says the MDN must return.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mft_as2.h"
#include "mft_as2_send.h"
#include "mft_testkeys.h"

static char dir[256];
static struct mft_keypair signer, recipient;

static void keypair(const char *name, struct mft_keypair *kp)
{
    char key[300], crt[300], subj[64];
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    snprintf(crt, sizeof(crt), "%s/%s.crt", dir, name);
    snprintf(subj, sizeof(subj), "/CN=%s", name);
    tk_run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subj,
           "-keyout", key, "-out", crt, NULL);
    kp->cert = tk_cert(crt);
    kp->key = tk_key(key, NULL);
}

static int setup(void **state)
{
    (void)state;
    tk_tmpdir(dir, sizeof(dir));
    keypair("sender", &signer);
    keypair("receiver", &recipient);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    X509_free(signer.cert);
    EVP_PKEY_free(signer.key);
    X509_free(recipient.cert);
    EVP_PKEY_free(recipient.key);
    tk_rmdir(dir);
    return 0;
}

/* A text payload with CRLF lines (openssl's S/MIME reader is text-mode for
 * multipart/signed) and a binary one for our own round trip. */
static const char TEXT[] = "ISA*00*          *00*          *ZZ*SENDER*ZZ*RECEIVER~\r\n"
                           "GS*PO*SENDER*RECEIVER*20261203*1200*1*X*004010~\r\n"
                           "ST*850*0001~\r\nSE*2*0001~\r\nGE*1*1~\r\nIEA*1*000000001~\r\n";

/* Receives msg with our receiver; checks payload and MIC. */
static void receive_back(const struct mft_as2_message *msg, const unsigned char *payload,
                         size_t len, const char *mic_md, int check_mic)
{
    struct mft_station st = {0};
    struct mft_partner p = {0};
    struct mft_as2_result res = {0};
    struct mft_err err = {0};
    char dno[128];
    snprintf(
        dno, sizeof(dno),
        "signed-receipt-protocol=optional, pkcs7-signature; signed-receipt-micalg=optional, %s",
        mic_md);
    snprintf(st.id, sizeof(st.id), "receiver");
    st.encryption[0] = recipient;
    st.n_encryption = 1;
    snprintf(p.id, sizeof(p.id), "sender");
    p.signing_cert = signer.cert;
    struct mft_as2_request req = {
        .content_type = msg->content_type,
        .content_transfer_encoding = msg->transfer_encoding,
        .content_disposition = msg->content_disposition,
        .disposition_notification_options = dno,
        .body = msg->body,
        .body_len = msg->len,
        .max_inflated = 1 << 24,
    };
    int rc = mft_as2_receive(&req, &st, &p, &res, &err);
    if (rc)
        fprintf(stderr, "receive: %s: %s / %s\n", mft_err_kind_name(err.kind), err.message,
                err.detail);
    assert_int_equal(rc, 0);
    assert_int_equal(res.n_payloads, 1);
    assert_int_equal(res.payloads[0].len, len);
    assert_memory_equal(res.payloads[0].data, payload, len);
    assert_string_equal(res.payloads[0].filename, "order.edi");
    if (check_mic)
        assert_string_equal(res.mic_b64, msg->mic_b64);
    mft_as2_result_free(&res);
}

/* Decrypts / verifies msg with the openssl CLI; the result must be the payload
 * entity, whose body is the payload (binary CTE) or its base64. */
static void openssl_check(const struct mft_as2_message *msg, int sign, int encrypt,
                          const unsigned char *payload, size_t len)
{
    char in[300], mid[300], out[300], sc[300], sk[300], rc_[300], rk[300];
    snprintf(in, sizeof(in), "%s/msg", dir);
    snprintf(mid, sizeof(mid), "%s/mid", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    snprintf(sc, sizeof(sc), "%s/sender.crt", dir);
    snprintf(sk, sizeof(sk), "%s/sender.key", dir);
    snprintf(rc_, sizeof(rc_), "%s/receiver.crt", dir);
    snprintf(rk, sizeof(rk), "%s/receiver.key", dir);
    if (encrypt) {
        /* the HTTP body is the DER (or its base64) */
        unsigned char *der = msg->body;
        size_t der_len = msg->len;
        unsigned char *tmp = NULL;
        if (strcmp(msg->transfer_encoding, "base64") == 0)
            der = tmp = tk_unbase64(msg->body, msg->len, &der_len);
        tk_write(in, der, der_len);
        free(tmp);
        tk_run("openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", in, "-recip", rc_,
               "-inkey", rk, "-out", mid, NULL);
    } else {
        FILE *f = fopen(mid, "wb");
        assert_non_null(f);
        fprintf(f, "Content-Type: %s\r\nContent-Transfer-Encoding: %s\r\n\r\n", msg->content_type,
                msg->transfer_encoding);
        fwrite(msg->body, 1, msg->len, f);
        fclose(f);
    }
    if (sign)
        tk_run("openssl", "cms", "-verify", "-in", mid, "-CAfile", sc, "-purpose", "any", "-out",
               out, NULL);
    else
        tk_run("cp", mid, out, NULL);
    size_t n;
    unsigned char *ent = tk_read(out, &n);
    size_t hl = 0, off = 0;
    tk_split(ent, n, &hl, &off);
    char cte[32] = "";
    tk_header(ent, hl, "Content-Transfer-Encoding", cte, sizeof(cte));
    size_t body_len = n - off;
    unsigned char *body = ent + off, *dec = NULL;
    if (strcasecmp(cte, "base64") == 0)
        body = dec = tk_unbase64(ent + off, n - off, &body_len);
    assert_int_equal(body_len, len);
    assert_memory_equal(body, payload, len);
    free(dec);
    free(ent);
}

static void test_matrix(void **state)
{
    (void)state;
    static const char *mds[] = {NULL, "sha1", "sha256", "sha512"};
    static const char *ciphers[] = {NULL, "aes-128-cbc", "aes-256-cbc", "des-ede3-cbc",
                                    "aes-256-gcm"};
    unsigned char bin[4096];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i * 7 + (i >> 8));
    int n = 0;
    for (size_t m = 0; m < 4; m++)
        for (size_t c = 0; c < 5; c++)
            for (int z = 0; z <= 2; z++)
                for (int b64 = 0; b64 <= 1; b64++) {
                    struct mft_as2_send_opts o = {
                        .sign_md = mds[m],
                        .cipher = ciphers[c],
                        .rsa_oaep = (n % 3) == 1,
                        .compress = (enum mft_as2_compress)z,
                        .base64 = b64,
                        .old_micalg_names = (n % 4) == 3,
                    };
                    if (!mds[m] && z == MFT_AS2_COMPRESS_AFTER_SIGNING)
                        continue;
                    int text = (n % 2) == 0;
                    const unsigned char *pl = text ? (const unsigned char *)TEXT : bin;
                    size_t pl_len = text ? strlen(TEXT) : sizeof(bin);
                    struct mft_as2_message msg;
                    struct mft_err err = {0};
                    int rc = mft_as2_build(pl, pl_len, "order.edi", "application/edi-x12", &signer,
                                           recipient.cert, &o, &msg, &err);
                    if (rc)
                        fprintf(stderr, "build: %s / %s\n", err.message, err.detail);
                    assert_int_equal(rc, 0);
                    if (mds[m])
                        assert_non_null(strstr(msg.content_type,
                                               ciphers[c] || z == MFT_AS2_COMPRESS_AFTER_SIGNING
                                                   ? "application/pkcs7-mime"
                                                   : "multipart/signed"));
                    /* openssl reads multipart/signed in text mode: text payloads only;
                     * it cannot uncompress: uncompressed cases only */
                    if (z == MFT_AS2_COMPRESS_NONE && (text || !mds[m]))
                        openssl_check(&msg, mds[m] != NULL, ciphers[c] != NULL, pl, pl_len);
                    /* compressed and unsigned: RFC 4130 and RFC 5402 leave the MIC's
                     * scope open (the compressed entity vs the decompressed one); not
                     * asserted until both sides settle on one reading (issue 4) */
                    receive_back(&msg, pl, pl_len, mds[m] ? mds[m] : "sha-256",
                                 mds[m] || z == MFT_AS2_COMPRESS_NONE);
                    mft_as2_message_free(&msg);
                    n++;
                }
    assert_true(n >= 100);
}

/* Several documents in one message (EDIINT multiple-attachments): a
 * multipart/related inside the signature and the envelope. Our receiver
 * delivers each with its name, type and bytes; openssl cms decrypts and
 * verifies the whole, and the related parts are where the receiver found them. */
static void test_multiple_attachments(void **state)
{
    (void)state;
    unsigned char bin[3000];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i * 7 + 3);
    const struct mft_as2_part parts[] = {
        {(const unsigned char *)TEXT, strlen(TEXT), "order.edi", "application/edi-x12"},
        {bin, sizeof(bin), "drawing.pdf", "application/pdf"},
        {(const unsigned char *)"<invoice/>\n", 11, NULL, "application/xml; charset=utf-8"},
    };
    for (int b64 = 0; b64 < 2; b64++) {
        for (int compress = 0; compress < 2; compress++) {
            struct mft_as2_send_opts o = {.sign_md = "sha256",
                                          .cipher = "aes-256-cbc",
                                          .base64 = b64,
                                          .compress = compress ? MFT_AS2_COMPRESS_BEFORE_SIGNING
                                                               : MFT_AS2_COMPRESS_NONE};
            struct mft_as2_message msg;
            struct mft_err err = {0};
            if (mft_as2_build_parts(parts, 3, &signer, recipient.cert, &o, &msg, &err) != 0)
                fail_msg("build: %s (%s)", err.message, err.detail);

            struct mft_station st = {0};
            struct mft_partner p = {0};
            struct mft_as2_result res = {0};
            st.encryption[0] = recipient;
            st.n_encryption = 1;
            p.signing_cert = signer.cert;
            struct mft_as2_request req = {.content_type = msg.content_type,
                                          .content_transfer_encoding = msg.transfer_encoding,
                                          .body = msg.body,
                                          .body_len = msg.len,
                                          .max_inflated = 1 << 24};
            if (mft_as2_receive(&req, &st, &p, &res, &err) != 0)
                fail_msg("receive: %s (%s)", err.message, err.detail);
            assert_int_equal(res.n_payloads, 3);
            for (size_t i = 0; i < 3; i++) {
                assert_int_equal(res.payloads[i].len, parts[i].len);
                assert_memory_equal(res.payloads[i].data, parts[i].data, parts[i].len);
                assert_string_equal(res.payloads[i].content_type, parts[i].content_type);
            }
            assert_string_equal(res.payloads[0].filename, "order.edi");
            assert_string_equal(res.payloads[1].filename, "drawing.pdf");
            assert_string_equal(res.payloads[2].filename, "payload.bin");
            assert_string_equal(res.mic_b64, msg.mic_b64);
            mft_as2_result_free(&res);

            /* openssl has no zlib here; and its multipart reader rewrites the
             * bare LFs of a binary part (strip_eol) before verifying, so only
             * the base64 form can be checked by it */
            if (!compress && b64) {
                char in[300], mid[300], out[300], sc[300], rc_[300], rk[300];
                snprintf(in, sizeof(in), "%s/multi", dir);
                snprintf(mid, sizeof(mid), "%s/multi.mid", dir);
                snprintf(out, sizeof(out), "%s/multi.out", dir);
                snprintf(sc, sizeof(sc), "%s/sender.crt", dir);
                snprintf(rc_, sizeof(rc_), "%s/receiver.crt", dir);
                snprintf(rk, sizeof(rk), "%s/receiver.key", dir);
                size_t der_len = msg.len;
                unsigned char *der = b64 ? tk_unbase64(msg.body, msg.len, &der_len) : NULL;
                tk_write(in, der ? der : msg.body, der_len);
                free(der);
                tk_run("openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", in,
                       "-recip", rc_, "-inkey", rk, "-out", mid, NULL);
                tk_run("openssl", "cms", "-verify", "-in", mid, "-CAfile", sc, "-purpose", "any",
                       "-out", out, NULL);
                size_t n;
                unsigned char *ent = tk_read(out, &n);
                static const char *const want[] = {
                    "multipart/related; boundary=", "type=\"application/edi-x12\"",
                    "filename=\"drawing.pdf\""};
                for (size_t w = 0; w < 3; w++)
                    if (!memmem(ent, n, want[w], strlen(want[w])))
                        fail_msg("openssl's output lacks %s", want[w]);
                free(ent);
            }
            mft_as2_message_free(&msg);
        }
    }
    struct mft_as2_send_opts plain = {0};
    struct mft_as2_message msg;
    struct mft_err err = {0};
    assert_int_equal(mft_as2_build_parts(parts, 0, NULL, NULL, &plain, &msg, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
}

static void test_micalg_spelling(void **state)
{
    (void)state;
    struct mft_as2_message msg;
    struct mft_err err = {0};
    struct mft_as2_send_opts o = {.sign_md = "SHA-256", .old_micalg_names = 1};
    assert_int_equal(mft_as2_build((const unsigned char *)TEXT, strlen(TEXT), "a.edi", NULL,
                                   &signer, NULL, &o, &msg, &err),
                     0);
    assert_non_null(strstr(msg.content_type, "micalg=sha256;"));
    assert_string_equal(msg.mic_alg, "sha256");
    mft_as2_message_free(&msg);
    o.old_micalg_names = 0;
    assert_int_equal(mft_as2_build((const unsigned char *)TEXT, strlen(TEXT), "a.edi", NULL,
                                   &signer, NULL, &o, &msg, &err),
                     0);
    assert_non_null(strstr(msg.content_type, "micalg=sha-256;"));
    assert_string_equal(msg.mic_alg, "sha-256");
    mft_as2_message_free(&msg);
}

static void test_refusals(void **state)
{
    (void)state;
    struct mft_as2_message msg;
    struct mft_err err = {0};
    struct mft_as2_send_opts o = {.cipher = "rc2-40-cbc"};
    assert_int_equal(mft_as2_build((const unsigned char *)"x", 1, "a", NULL, &signer,
                                   recipient.cert, &o, &msg, &err),
                     -1);
    assert_int_equal(err.kind, MFT_E_ALGORITHM_REFUSED);
    struct mft_as2_send_opts o2 = {.cipher = "aes-128-cbc"};
    assert_int_equal(
        mft_as2_build((const unsigned char *)"x", 1, "a", NULL, &signer, NULL, &o2, &msg, &err),
        -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    struct mft_as2_send_opts o3 = {.sign_md = "md5"};
    assert_int_equal(
        mft_as2_build((const unsigned char *)"x", 1, "a", NULL, &signer, NULL, &o3, &msg, &err),
        -1);
    assert_int_equal(err.kind, MFT_E_ALGORITHM_REFUSED);
    struct mft_keypair none = {0};
    struct mft_as2_send_opts o4 = {.sign_md = "sha256"};
    assert_int_equal(
        mft_as2_build((const unsigned char *)"x", 1, "a", NULL, &none, NULL, &o4, &msg, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matrix),
        cmocka_unit_test(test_micalg_spelling),
        cmocka_unit_test(test_multiple_attachments),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
