/*
 * Unit tests for mft_as2_receive: the real AS2 messages in
 * ../shared/interop/as2 (Mendelson, libas2), a matrix of messages built at
 * test time by the openssl CLI ({signed, unsigned} x {AES-128/192/256-CBC,
 * 3DES, none} x {SHA-1/256/384/512} x {binary, base64}) with the MIC checked
 * against `openssl dgst`, and the negative cases with their MDN modifiers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mft_as2.h"
#include "mft_smime.h"
#include "mft_testkeys.h"

static char dir[256];
static char p_crt[300], p_key[300], s_crt[300], s_key[300], o_crt[300], o_key[300];
static X509 *partner_cert, *station_cert, *other_cert;
static EVP_PKEY *partner_key, *station_key, *other_key;

/*
 * Every case runs twice: with every layer in memory, then with every layer
 * spilled to a temporary file (threshold 1 byte), the path large messages take.
 */
static const char *spill_dir;

static int as2_receive(const struct mft_as2_request *req, const struct mft_station *st,
                       const struct mft_partner *p, struct mft_as2_result *res, struct mft_err *err)
{
    struct mft_as2_request r = *req;
    r.spill_dir = spill_dir;
    r.spill_threshold = spill_dir ? 1 : 0;
    return mft_as2_receive(&r, st, p, res, err);
}
#define mft_as2_receive as2_receive

static void path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static int setup(void **state)
{
    tk_providers();
    tk_tmpdir(dir, sizeof(dir));
    path(p_crt, sizeof(p_crt), "p.crt");
    path(p_key, sizeof(p_key), "p.key");
    path(s_crt, sizeof(s_crt), "s.crt");
    path(s_key, sizeof(s_key), "s.key");
    path(o_crt, sizeof(o_crt), "o.crt");
    path(o_key, sizeof(o_key), "o.key");
    const char *subj[] = {"/CN=partner", "/CN=station", "/CN=other"};
    const char *crt[] = {p_crt, s_crt, o_crt}, *key[] = {p_key, s_key, o_key};
    for (int i = 0; i < 3; i++)
        assert_int_equal(tk_run_rc("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                                   "-keyout", key[i], "-out", crt[i], "-subj", subj[i], "-days",
                                   "2", NULL),
                         0);
    partner_cert = tk_cert(p_crt);
    partner_key = tk_key(p_key, NULL);
    station_cert = tk_cert(s_crt);
    station_key = tk_key(s_key, NULL);
    other_cert = tk_cert(o_crt);
    other_key = tk_key(o_key, NULL);
    return 0;
}

static int teardown(void **state)
{
    X509_free(partner_cert);
    X509_free(station_cert);
    X509_free(other_cert);
    EVP_PKEY_free(partner_key);
    EVP_PKEY_free(station_key);
    EVP_PKEY_free(other_key);
    tk_rmdir(dir);
    tk_unload();
    return 0;
}

/* A station holding one encryption keypair, a partner with one signing cert. */
static void make_pair(struct mft_station *st, struct mft_partner *p, X509 *enc_cert,
                      EVP_PKEY *enc_key, X509 *sign_cert)
{
    memset(st, 0, sizeof(*st));
    memset(p, 0, sizeof(*p));
    snprintf(st->id, sizeof(st->id), "st1");
    snprintf(st->as2_id, sizeof(st->as2_id), "station");
    st->encryption[0].cert = enc_cert;
    st->encryption[0].key = enc_key;
    st->n_encryption = enc_cert ? 1 : 0;
    snprintf(p->id, sizeof(p->id), "p1");
    snprintf(p->as2_id, sizeof(p->as2_id), "partner");
    p->signing_cert = sign_cert;
    p->station = st;
}

/* A stored HTTP request (headers, blank line, body) through mft_as2_receive. */
struct stored {
    unsigned char *buf;
    size_t len;
    char ctype[600], cte[64], cdisp[300], dno[300];
    struct mft_as2_request req;
};

static void stored_load(struct stored *s, const char *file, const char *dno)
{
    size_t hl, off;
    memset(s, 0, sizeof(*s));
    s->buf = tk_read(file, &s->len);
    tk_split(s->buf, s->len, &hl, &off);
    assert_int_equal(tk_header(s->buf, hl, "Content-Type", s->ctype, sizeof(s->ctype)), 0);
    s->req.content_type = s->ctype;
    if (tk_header(s->buf, hl, "Content-Transfer-Encoding", s->cte, sizeof(s->cte)) == 0)
        s->req.content_transfer_encoding = s->cte;
    if (tk_header(s->buf, hl, "Content-Disposition", s->cdisp, sizeof(s->cdisp)) == 0)
        s->req.content_disposition = s->cdisp;
    if (dno)
        snprintf(s->dno, sizeof(s->dno), "%s", dno);
    else if (tk_header(s->buf, hl, "Disposition-Notification-Options", s->dno, sizeof(s->dno)))
        s->dno[0] = '\0';
    s->req.disposition_notification_options = s->dno[0] ? s->dno : NULL;
    s->req.body = s->buf + off;
    s->req.body_len = s->len - off;
    s->req.max_inflated = 10 << 20;
}

static void assert_payload_file(const struct mft_as2_result *res, size_t i, const char *file)
{
    size_t len;
    unsigned char *want = tk_read(file, &len);
    assert_true(res->n_payloads > i);
    assert_int_equal(res->payloads[i].len, len);
    assert_memory_equal(res->payloads[i].data, want, len);
    free(want);
}

static int receive(struct stored *s, const struct mft_station *st, const struct mft_partner *p,
                   struct mft_as2_result *res, struct mft_err *err)
{
    mft_err_clear(err);
    int rc = mft_as2_receive(&s->req, st, p, res, err);
    if (rc)
        fprintf(stderr, "  -> %s: %s / %s\n", mft_err_kind_name(err->kind), err->message,
                err->detail);
    return rc;
}

/* ---- the real interop files -------------------------------------------- */

struct mecas2_keys {
    X509 *test_cert, *mend;
    EVP_PKEY *test_key;
    struct mft_station st;
    struct mft_partner p;
};

static void mecas2_keys(struct mecas2_keys *k)
{
    tk_p12(AS2_DIR "/pyas2-lib/cert_test.p12", "test", &k->test_cert, &k->test_key);
    k->mend = tk_cert(AS2_DIR "/pyas2-lib/cert_mecas2_public.pem");
    make_pair(&k->st, &k->p, k->test_cert, k->test_key, k->mend);
}

static void mecas2_free(struct mecas2_keys *k)
{
    X509_free(k->test_cert);
    X509_free(k->mend);
    EVP_PKEY_free(k->test_key);
}

static void test_mecas2_signed(void **state)
{
    struct mecas2_keys k;
    struct stored s;
    struct mft_as2_result res;
    struct mft_err err;
    mecas2_keys(&k);
    stored_load(&s, AS2_DIR "/derived/mecas2_signed.wire.as2", NULL);
    assert_int_equal(receive(&s, &k.st, &k.p, &res, &err), 0);
    assert_true(res.is_signed);
    assert_false(res.is_encrypted);
    assert_false(res.is_compressed);
    assert_string_equal(res.sign_digest, "SHA256");
    assert_string_equal(res.mic_b64, "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=");
    assert_string_equal(res.mic_alg, "sha-256");
    assert_string_equal(res.receipt_micalg, "SHA256");
    assert_int_equal(res.n_payloads, 1);
    assert_payload_file(&res, 0, AS2_DIR "/pyas2-lib/payload.txt");
    assert_string_equal(res.payloads[0].filename, "payload.txt");
    assert_string_equal(res.payloads[0].content_type, "application/EDI-Consent");
    mft_as2_result_free(&res);
    free(s.buf);

    /* the partner asks for another MIC algorithm: its first one we support, its spelling */
    stored_load(&s, AS2_DIR "/derived/mecas2_signed.wire.as2",
                "signed-receipt-protocol=optional, pkcs7-signature; "
                "signed-receipt-micalg=optional, md5, SHA256, sha1");
    assert_int_equal(receive(&s, &k.st, &k.p, &res, &err), 0);
    assert_true(res.signed_receipt);
    assert_string_equal(res.mic_b64, "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=");
    assert_string_equal(res.mic_alg, "SHA256");
    assert_string_equal(res.receipt_micalg, "SHA256");
    mft_as2_result_free(&res);
    free(s.buf);

    /* SHA-1 asked for: the MIC is SHA-1 over the first part's exact bytes */
    stored_load(
        &s, AS2_DIR "/derived/mecas2_signed.wire.as2",
        "signed-receipt-protocol=required,pkcs7-signature;signed-receipt-micalg=required,sha1");
    assert_int_equal(receive(&s, &k.st, &k.p, &res, &err), 0);
    assert_string_equal(res.mic_alg, "sha1");
    assert_string_equal(res.receipt_micalg, "SHA1");
    {
        const char *b = "------=_Part_211_306083396.1641304626706\r\n";
        size_t st = tk_find(s.req.body, s.req.body_len, b, 0) + strlen(b);
        size_t en = tk_find(s.req.body, s.req.body_len, "\r\n------=_Part_211", st);
        char mic[64];
        assert_int_equal(
            mft_smime_digest_b64("SHA1", s.req.body + st, en - st, mic, sizeof(mic), &err), 0);
        assert_string_equal(res.mic_b64, mic);
    }
    mft_as2_result_free(&res);
    free(s.buf);

    /* the stored copy with rewritten line ends must not verify */
    stored_load(&s, AS2_DIR "/pyas2-lib/mecas2_signed.as2", NULL);
    assert_int_equal(receive(&s, &k.st, &k.p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
    assert_int_equal(res.n_payloads, 0);
    assert_true(res.is_signed);
    assert_true(res.mic_b64[0] != '\0'); /* still reported for the negative MDN */
    mft_as2_result_free(&res);
    free(s.buf);
    mecas2_free(&k);
}

static void test_mecas2_encrypted_layers(void **state)
{
    static const struct {
        const char *file;
        int is_signed, is_compressed;
        const char *mic, *filename;
    } cases[] = {
        {"mecas2_signed_encrypted.as2", 1, 0,
         "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=", "payload.txt"},
        {"mecas2_compressed.as2", 1, 1, "14SZThwSYUH4aPdkglDwdRFnKUFmgjKsJFZWcSXBTww=", NULL},
        {"mecas2_compressed_signed_encrypted.as2", 1, 1, NULL, NULL},
        {"mecas2_encrypted.as2", 0, 0, NULL, "payload.txt"},
    };
    struct mecas2_keys k;
    mecas2_keys(&k);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char file[512];
        struct stored s;
        struct mft_as2_result res;
        struct mft_err err;
        snprintf(file, sizeof(file), "%s/pyas2-lib/%s", AS2_DIR, cases[i].file);
        stored_load(&s, file, NULL);
        fprintf(stderr, "  %s\n", cases[i].file);
        assert_int_equal(receive(&s, &k.st, &k.p, &res, &err), 0);
        int enc = strstr(cases[i].file, "encrypted") != NULL;
        assert_int_equal(res.is_encrypted, enc);
        assert_int_equal(res.is_signed, cases[i].is_signed);
        assert_int_equal(res.is_compressed, cases[i].is_compressed);
        if (enc)
            assert_string_equal(res.cipher, "des-ede3-cbc");
        if (cases[i].mic)
            assert_string_equal(res.mic_b64, cases[i].mic);
        assert_int_equal(res.n_payloads, 1);
        assert_payload_file(&res, 0, AS2_DIR "/pyas2-lib/payload.txt");
        if (cases[i].filename)
            assert_string_equal(res.payloads[0].filename, cases[i].filename);
        if (!cases[i].is_signed) {
            /* headerless content: the MIC (SHA-1 by default) is over the decrypted bytes */
            char mic[64];
            assert_int_equal(mft_smime_digest_b64("SHA1", res.payloads[0].data, res.payloads[0].len,
                                                  mic, sizeof(mic), &err),
                             0);
            assert_string_equal(res.mic_b64, mic);
            assert_string_equal(res.mic_alg, "sha-1");
            assert_string_equal(res.payloads[0].content_type, "");
        }
        mft_as2_result_free(&res);

        /* the partner requires encryption and signature: all of these pass or fail by flag */
        k.p.require_signature = 1;
        k.p.require_encryption = 1;
        int rc = receive(&s, &k.st, &k.p, &res, &err);
        if (enc && cases[i].is_signed) {
            assert_int_equal(rc, 0);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(err.kind, cases[i].is_signed ? MFT_E_ENCRYPTION_REQUIRED
                                                          : MFT_E_SIGNATURE_REQUIRED);
            assert_string_equal(mft_as2_disposition_modifier(err.kind),
                                "insufficient-message-security");
            assert_int_equal(res.n_payloads, 0);
        }
        k.p.require_signature = 0;
        k.p.require_encryption = 0;
        mft_as2_result_free(&res);
        free(s.buf);
    }
    mecas2_free(&k);
}

static void test_libas2(void **state)
{
    struct mft_station st;
    struct mft_partner p;
    struct stored s;
    struct mft_as2_result res;
    struct mft_err err;
    X509 *cert = tk_cert(AS2_DIR "/node-libas2/libas2community.cer");
    EVP_PKEY *key = tk_key(AS2_DIR "/node-libas2/libas2community.key", NULL);
    make_pair(&st, &p, cert, key, cert);

    /* a full MIME entity: its top headers play the HTTP headers */
    stored_load(&s, AS2_DIR "/derived/libas2_content.signed.wire.txt", NULL);
    assert_int_equal(receive(&s, &st, &p, &res, &err), 0);
    assert_true(res.is_signed);
    assert_string_equal(res.mic_b64, "bIwxkbRLLtHWlniKxMReISQ/GvEve0LV/hxdl9OD0E8=");
    assert_string_equal(res.mic_alg, "sha-256");
    assert_payload_file(&res, 0, AS2_DIR "/node-libas2/sample_edi.edi");
    assert_string_equal(res.payloads[0].filename, "message.edi");
    mft_as2_result_free(&res);
    free(s.buf);

    /* OAEP (SHA-512) + AES-128-CBC, base64 */
    stored_load(&s, AS2_DIR "/node-libas2/content.encrypted.txt", NULL);
    assert_int_equal(receive(&s, &st, &p, &res, &err), 0);
    assert_true(res.is_encrypted);
    assert_false(res.is_signed);
    assert_string_equal(res.cipher, "aes-128-cbc");
    assert_payload_file(&res, 0, AS2_DIR "/node-libas2/sample_edi.edi");
    assert_string_equal(res.payloads[0].filename, "message.edi");
    mft_as2_result_free(&res);

    /* the wrong station key; the receipt options are still read for the negative MDN */
    st.encryption[0].cert = other_cert;
    st.encryption[0].key = other_key;
    s.req.disposition_notification_options = "signed-receipt-protocol=optional, pkcs7-signature; "
                                             "signed-receipt-micalg=optional, sha-512";
    assert_int_equal(receive(&s, &st, &p, &res, &err), -1);
    assert_true(res.signed_receipt);
    assert_string_equal(res.receipt_micalg, "SHA512");
    assert_int_equal(err.kind, MFT_E_DECRYPT_FAILED);
    assert_string_equal(mft_as2_disposition_modifier(err.kind), "decryption-failed");
    assert_non_null(strstr(err.detail, "libas2community"));
    assert_true(res.is_encrypted);
    assert_int_equal(res.n_payloads, 0);
    mft_as2_result_free(&res);
    free(s.buf);
    X509_free(cert);
    EVP_PKEY_free(key);
}

/* ---- messages built by the openssl CLI ------------------------------------- */

#define PAYLOAD_LEN 3000

static void make_payload(unsigned char *data, unsigned seed)
{
    for (size_t i = 0; i < PAYLOAD_LEN; i++)
        data[i] = (unsigned char)((i * 131 + seed * 7) ^ (i >> 5)); /* CR, LF, NUL included */
    memcpy(data + 10, "\n\r\n.\r\nFrom \r\n", 13);
}

static size_t b64_lines(const unsigned char *in, size_t len, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 57) {
        size_t n = len - i < 57 ? len - i : 57;
        o += (size_t)EVP_EncodeBlock(out + o, in + i, (int)n);
        out[o++] = '\r';
        out[o++] = '\n';
    }
    return o;
}

/* Writes the payload entity; returns its length into *elen (bytes in ent). */
static void make_entity(unsigned char *ent, size_t *elen, const unsigned char *data, int b64)
{
    size_t n = (size_t)snprintf((char *)ent, 400,
                                "Content-Type: application/edi-x12\r\n"
                                "Content-Disposition: attachment; filename=\"case.edi\"\r\n"
                                "Content-Transfer-Encoding: %s\r\n\r\n",
                                b64 ? "base64" : "binary");
    if (b64)
        n += b64_lines(data, PAYLOAD_LEN, ent + n);
    else {
        memcpy(ent + n, data, PAYLOAD_LEN);
        n += PAYLOAD_LEN;
    }
    *elen = n;
}

/* base64(openssl dgst -<md> -binary file) */
static void openssl_mic(const char *md, const char *file, char *out, size_t outlen)
{
    char dg[300], opt[32];
    path(dg, sizeof(dg), "dgst.bin");
    snprintf(opt, sizeof(opt), "-%s", md);
    tk_run("openssl", "dgst", opt, "-binary", "-out", dg, file, NULL);
    size_t n;
    unsigned char *d = tk_read(dg, &n);
    assert_true(4 * ((n + 2) / 3) + 1 <= outlen);
    EVP_EncodeBlock((unsigned char *)out, d, (int)n);
    free(d);
}

struct built {
    unsigned char *buf; /* the body bytes (file contents) */
    size_t len;
    size_t body_off;
    char ctype[600], cte[32];
    struct mft_as2_request req;
};

/* signed.eml (openssl S/MIME output) -> HTTP headers + body */
static void built_from_mime(struct built *b, const char *file)
{
    size_t hl;
    b->buf = tk_read(file, &b->len);
    tk_split(b->buf, b->len, &hl, &b->body_off);
    assert_int_equal(tk_header(b->buf, hl, "Content-Type", b->ctype, sizeof(b->ctype)), 0);
    b->req.content_type = b->ctype;
    b->req.body = b->buf + b->body_off;
    b->req.body_len = b->len - b->body_off;
}

/* enc.der -> application/pkcs7-mime body, binary or base64 */
static void built_from_der(struct built *b, const char *file, int b64)
{
    size_t n;
    unsigned char *der = tk_read(file, &n);
    snprintf(b->ctype, sizeof(b->ctype),
             "application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"");
    b->req.content_type = b->ctype;
    if (b64) {
        b->buf = malloc(n * 2 + 100);
        assert_non_null(b->buf);
        b->len = b64_lines(der, n, b->buf);
        free(der);
        snprintf(b->cte, sizeof(b->cte), "base64");
    } else {
        b->buf = der;
        b->len = n;
        snprintf(b->cte, sizeof(b->cte), "binary");
    }
    b->req.content_transfer_encoding = b->cte;
    b->req.body = b->buf;
    b->req.body_len = b->len;
}

static void test_openssl_matrix(void **state)
{
    static const char *ciphers[] = {"aes-128-cbc", "aes-192-cbc", "aes-256-cbc", "des-ede3-cbc",
                                    NULL};
    static const char *mds[] = {"sha1", "sha256", "sha384", "sha512"};
    static const char *rfc[] = {"sha-1", "sha-256", "sha-384", "sha-512"};
    static const char *ossl[] = {"SHA1", "SHA256", "SHA384", "SHA512"};
    char ent_path[300], signed_path[300], enc_path[300];
    unsigned char data[PAYLOAD_LEN], ent[PAYLOAD_LEN * 2 + 512];
    struct mft_station st;
    struct mft_partner p;
    unsigned seed = 0;
    int cases = 0;
    path(ent_path, sizeof(ent_path), "entity.bin");
    path(signed_path, sizeof(signed_path), "signed.eml");
    path(enc_path, sizeof(enc_path), "enc.der");
    make_pair(&st, &p, station_cert, station_key, partner_cert);

    for (int sign = 0; sign < 2; sign++)
        for (size_t c = 0; c < sizeof(ciphers) / sizeof(ciphers[0]); c++)
            for (size_t m = 0; m < 4; m++)
                for (int b64 = 0; b64 < 2; b64++) {
                    size_t elen;
                    make_payload(data, ++seed);
                    make_entity(ent, &elen, data, b64);
                    tk_write(ent_path, ent, elen);
                    char mic[128], dno[200];
                    openssl_mic(mds[m], ent_path, mic, sizeof(mic));

                    const char *mime_in = ent_path;
                    if (sign) {
                        char md_opt[16];
                        snprintf(md_opt, sizeof(md_opt), "%s", mds[m]);
                        tk_run("openssl", "cms", "-sign", "-binary", "-crlfeol", "-md", md_opt,
                               "-in", ent_path, "-signer", p_crt, "-inkey", p_key, "-out",
                               signed_path, NULL);
                        mime_in = signed_path;
                        /* openssl wrote the entity's exact bytes as the first part */
                        size_t sl;
                        unsigned char *sm = tk_read(signed_path, &sl);
                        size_t at = tk_find(sm, sl, "\r\n\r\n------", 0);
                        assert_true(at != (size_t)-1);
                        assert_true(sl > elen);
                        size_t first = tk_find(sm, sl, "Content-Type: application/edi-x12", 0);
                        assert_true(first != (size_t)-1);
                        assert_memory_equal(sm + first, ent, elen);
                        assert_memory_equal(sm + first + elen, "\r\n------", 8);
                        free(sm);
                    }
                    struct built b = {0};
                    if (ciphers[c]) {
                        char copt[32];
                        snprintf(copt, sizeof(copt), "-%s", ciphers[c]);
                        tk_run("openssl", "cms", "-encrypt", "-binary", copt, "-in", mime_in,
                               "-outform", "DER", "-out", enc_path, s_crt, NULL);
                        built_from_der(&b, enc_path, b64);
                    } else if (sign) {
                        built_from_mime(&b, signed_path);
                    } else {
                        /* plain: the payload entity's headers are the HTTP headers */
                        built_from_mime(&b, ent_path);
                        snprintf(b.cte, sizeof(b.cte), "%s", b64 ? "base64" : "binary");
                        b.req.content_transfer_encoding = b.cte;
                        b.req.content_disposition = "attachment; filename=\"case.edi\"";
                    }
                    if (!sign) { /* the MIC algorithm comes from the partner's options */
                        snprintf(dno, sizeof(dno),
                                 "signed-receipt-protocol=optional, pkcs7-signature; "
                                 "signed-receipt-micalg=optional, %s",
                                 rfc[m]);
                        b.req.disposition_notification_options = dno;
                    }
                    b.req.max_inflated = 1 << 20;

                    struct mft_as2_result res;
                    struct mft_err err;
                    mft_err_clear(&err);
                    int rc = mft_as2_receive(&b.req, &st, &p, &res, &err);
                    if (rc)
                        fprintf(stderr, "case sign=%d %s %s b64=%d: %s / %s\n", sign,
                                ciphers[c] ? ciphers[c] : "none", mds[m], b64, err.message,
                                err.detail);
                    assert_int_equal(rc, 0);
                    assert_int_equal(res.is_signed, sign);
                    assert_int_equal(res.is_encrypted, ciphers[c] != NULL);
                    assert_string_equal(res.cipher, ciphers[c] ? ciphers[c] : "");
                    assert_string_equal(res.sign_digest, sign ? ossl[m] : "");
                    assert_string_equal(res.mic_alg, rfc[m]);
                    assert_string_equal(res.receipt_micalg, ossl[m]);
                    if (sign || ciphers[c]) {
                        /* the independent MIC over the entity's exact bytes */
                        assert_string_equal(res.mic_b64, mic);
                    } else {
                        /* neither signed nor encrypted: RFC 4130 7.3.1, the MIC is
                         * over the content alone (the HTTP body), no headers */
                        size_t hl, off;
                        char want[128];
                        tk_split(ent, elen, &hl, &off);
                        assert_int_equal(mft_smime_digest_b64(ossl[m], ent + off, elen - off, want,
                                                              sizeof(want), &err),
                                         0);
                        assert_string_equal(res.mic_b64, want);
                    }
                    assert_int_equal(res.n_payloads, 1);
                    assert_int_equal(res.payloads[0].len, PAYLOAD_LEN);
                    assert_memory_equal(res.payloads[0].data, data, PAYLOAD_LEN);
                    assert_string_equal(res.payloads[0].filename, "case.edi");
                    assert_string_equal(res.payloads[0].content_type, "application/edi-x12");
                    mft_as2_result_free(&res);
                    free(b.buf);
                    cases++;
                }
    assert_int_equal(cases, 80);
}

/* ---- negatives --------------------------------------------------------------- */

/* Signs `ent` (as an entity file) with crt/key and returns the S/MIME file's request. */
static void sign_entity(struct built *b, const unsigned char *ent, size_t elen, const char *crt,
                        const char *key)
{
    char ent_path[300], signed_path[300];
    path(ent_path, sizeof(ent_path), "neg_entity.bin");
    path(signed_path, sizeof(signed_path), "neg_signed.eml");
    tk_write(ent_path, ent, elen);
    tk_run("openssl", "cms", "-sign", "-binary", "-crlfeol", "-md", "sha256", "-in", ent_path,
           "-signer", crt, "-inkey", key, "-out", signed_path, NULL);
    memset(b, 0, sizeof(*b));
    built_from_mime(b, signed_path);
}

static void test_signature_negatives(void **state)
{
    unsigned char data[PAYLOAD_LEN], ent[PAYLOAD_LEN * 2 + 512];
    size_t elen;
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    struct built b;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    make_payload(data, 99);
    make_entity(ent, &elen, data, 0);

    /* one payload byte changed in transit */
    sign_entity(&b, ent, elen, p_crt, p_key);
    size_t at = tk_find(b.buf, b.len, "Content-Type: application/edi-x12", b.body_off);
    assert_true(at != (size_t)-1);
    b.buf[at + elen - 100] ^= 0x20;
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
    assert_string_equal(mft_as2_disposition_modifier(err.kind), "authentication-failed");
    assert_string_equal(mft_as2_disposition_modifier_err(&err), "integrity-check-failed");
    assert_true(res.is_signed);
    assert_true(res.mic_b64[0]);
    assert_int_equal(res.n_payloads, 0);
    mft_as2_result_free(&res);
    free(b.buf);

    /* signed by another key (its own certificate embedded) */
    sign_entity(&b, ent, elen, o_crt, o_key);
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
    assert_string_equal(mft_as2_disposition_modifier_err(&err), "authentication-failed");
    assert_non_null(strstr(err.detail, "CN=other"));
    mft_as2_result_free(&res);

    /* no signing certificate registered for the partner */
    p.signing_cert = NULL;
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
    mft_as2_result_free(&res);
    p.signing_cert = partner_cert;
    free(b.buf);

    /* unsigned, unencrypted while required */
    b = (struct built){0};
    char ent_path[300];
    path(ent_path, sizeof(ent_path), "neg_plain.bin");
    tk_write(ent_path, ent, elen);
    built_from_mime(&b, ent_path);
    p.require_signature = 1;
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_REQUIRED);
    assert_string_equal(mft_as2_disposition_modifier(err.kind), "insufficient-message-security");
    assert_string_equal(res.mic_alg, "sha-1"); /* the MIC is still reported */
    mft_as2_result_free(&res);
    p.require_signature = 0;
    p.require_encryption = 1;
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_ENCRYPTION_REQUIRED);
    mft_as2_result_free(&res);
    p.require_encryption = 0;
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), 0);
    mft_as2_result_free(&res);
    /* a broken option list does not reject the message */
    b.req.disposition_notification_options = "signed-receipt-protocol; ;;=";
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), 0);
    assert_int_equal(res.n_payloads, 1);
    mft_as2_result_free(&res);
    free(b.buf);
}

static void test_malformed(void **state)
{
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    static const struct {
        const char *ctype, *body;
    } cases[] = {
        {"application/pkcs7-mime; smime-type=enveloped-data", "this is not CMS at all"},
        {"application/pkcs7-mime; smime-type=enveloped-data", ""},
        {"application/pkcs7-mime; smime-type=compressed-data", "\x30\x03\x06\x01\x00"},
        {"multipart/signed; boundary=\"xyz\"", "garbage without any delimiter\r\n"},
        {"multipart/signed; boundary=\"xyz\"",
         "--xyz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz--\r\n"},
        {"multipart/signed; boundary=\"xyz\"",
         "--xyz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz\r\n"
         "Content-Type: text/plain\r\n\r\nnot a signature\r\n--xyz--\r\n"},
        {"multipart/signed; boundary=\"xyz\"",
         "--xyz\r\nContent-Type: text/plain\r\n\r\nhello\r\n--xyz\r\n"
         "Content-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         "MIIBAAAA\r\n--xyz--\r\n"},
        {"multipart/signed", "--xyz\r\n\r\n--xyz--\r\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mft_as2_request req = {.content_type = cases[i].ctype,
                                      .body = (const unsigned char *)cases[i].body,
                                      .body_len = strlen(cases[i].body)};
        mft_err_clear(&err);
        assert_int_equal(mft_as2_receive(&req, &st, &p, &res, &err), -1);
        assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
        assert_string_equal(mft_as2_disposition_modifier(err.kind), "unexpected-processing-error");
        assert_int_equal(res.n_payloads, 0);
        mft_as2_result_free(&res);
    }
    /* no Content-Type */
    struct mft_as2_request req = {.body = (const unsigned char *)"x", .body_len = 1};
    assert_int_equal(mft_as2_receive(&req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    mft_as2_result_free(&res);
    mft_as2_result_free(NULL);
}

static void test_rc2_refused(void **state)
{
    char in[300], der[300];
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    struct built b = {0};
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    path(in, sizeof(in), "rc2.txt");
    path(der, sizeof(der), "rc2.der");
    tk_write(in, "Content-Type: text/plain\r\n\r\nhello\r\n", 35);
    /* RC2-40 needs the legacy provider in the openssl CLI */
    tk_run("openssl", "cms", "-encrypt", "-provider", "legacy", "-provider", "default", "-binary",
           "-rc2-40", "-in", in, "-outform", "DER", "-out", der, s_crt, NULL);
    built_from_der(&b, der, 1);
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_ALGORITHM_REFUSED);
    assert_string_equal(mft_as2_disposition_modifier(err.kind), "insufficient-message-security");
    mft_as2_result_free(&res);
    free(b.buf);
}

/* A compressed-data entity (built by hand: openssl has no zlib here). */
static size_t compressed_entity(unsigned char **out, const unsigned char *inner, size_t len,
                                int bomb)
{
    struct tk_buf z = {0};
    if (bomb) {
        z = tk_zeros_zlib((size_t)50 << 20);
    } else {
        uLongf zl = compressBound(len);
        z.p = malloc(zl);
        assert_int_equal(compress2(z.p, &zl, inner, len, 6), Z_OK);
        z.len = zl;
    }
    struct tk_buf der = tk_compressed_ber(z.p, z.len);
    const char *hdr = "Content-Type: application/pkcs7-mime; smime-type=compressed-data; "
                      "name=smime.p7z\r\nContent-Transfer-Encoding: binary\r\n\r\n";
    size_t hl = strlen(hdr);
    *out = malloc(hl + der.len);
    memcpy(*out, hdr, hl);
    memcpy(*out + hl, der.p, der.len);
    free(der.p);
    free(z.p);
    return hl + der.len;
}

static void test_compressed(void **state)
{
    unsigned char data[PAYLOAD_LEN], ent[PAYLOAD_LEN * 2 + 512], *cent;
    size_t elen;
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    struct built b;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    make_payload(data, 7);
    make_entity(ent, &elen, data, 1);

    /* compressed, then signed: the MIC is over the compressed entity */
    size_t cl = compressed_entity(&cent, ent, elen, 0);
    sign_entity(&b, cent, cl, p_crt, p_key);
    char cpath[300], mic[128];
    path(cpath, sizeof(cpath), "neg_entity.bin"); /* what sign_entity signed */
    openssl_mic("sha256", cpath, mic, sizeof(mic));
    b.req.max_inflated = 1 << 20;
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), 0);
    assert_true(res.is_compressed);
    assert_true(res.is_signed);
    assert_string_equal(res.mic_b64, mic);
    assert_int_equal(res.payloads[0].len, PAYLOAD_LEN);
    assert_memory_equal(res.payloads[0].data, data, PAYLOAD_LEN);
    mft_as2_result_free(&res);
    free(b.buf);
    free(cent);

    /* a bomb: 50 MB of zeros against a 1 MB limit, and against the ratio limit */
    cl = compressed_entity(&cent, NULL, 0, 1);
    sign_entity(&b, cent, cl, p_crt, p_key);
    b.req.max_inflated = 1 << 20;
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
    assert_string_equal(mft_as2_disposition_modifier(err.kind), "decompression-failed");
    assert_true(res.is_signed); /* signature checked before inflating */
    mft_as2_result_free(&res);
    b.req.max_inflated = (size_t)1 << 30;
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
    assert_non_null(strstr(err.message, "ratio"));
    mft_as2_result_free(&res);
    free(b.buf);
    free(cent);
}

static void test_too_many_layers(void **state)
{
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    const char *plain = "Content-Type: text/plain\r\n\r\ninnermost\r\n";
    unsigned char *cur = (unsigned char *)strdup(plain), *next;
    size_t len = strlen(plain);
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    for (int depth = 1; depth <= MFT_AS2_MAX_LAYERS + 2; depth++) {
        len = compressed_entity(&next, cur, len, 0);
        free(cur);
        cur = next;
        char file[300];
        struct built b = {0};
        path(file, sizeof(file), "nested.bin");
        tk_write(file, cur, len);
        built_from_mime(&b, file);
        b.req.max_inflated = 1 << 20;
        mft_err_clear(&err);
        int rc = mft_as2_receive(&b.req, &st, &p, &res, &err);
        if (depth <= MFT_AS2_MAX_LAYERS) {
            assert_int_equal(rc, 0);
            assert_int_equal(res.payloads[0].len, 11);
            assert_memory_equal(res.payloads[0].data, "innermost\r\n", 11);
        } else {
            assert_int_equal(rc, -1);
            assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
        }
        mft_as2_result_free(&res);
        free(b.buf);
    }
    free(cur);
}

/* Every interop message cut short at many lengths: an error, never a crash. */
static void test_truncated(void **state)
{
    static const char *files[] = {
        "/derived/mecas2_signed.wire.as2",         "/pyas2-lib/mecas2_signed_encrypted.as2",
        "/pyas2-lib/mecas2_compressed.as2",        "/pyas2-lib/mecas2_encrypted.as2",
        "/derived/libas2_content.signed.wire.txt",
    };
    struct mecas2_keys k;
    mecas2_keys(&k);
    for (size_t f = 0; f < sizeof(files) / sizeof(files[0]); f++) {
        char file[512];
        struct stored s;
        snprintf(file, sizeof(file), "%s%s", AS2_DIR, files[f]);
        stored_load(&s, file, NULL);
        size_t full = s.req.body_len;
        for (size_t cut = 0; cut < full; cut += 41) {
            struct mft_as2_result res;
            struct mft_err err;
            s.req.body_len = cut;
            mft_err_clear(&err);
            if (mft_as2_receive(&s.req, &k.st, &k.p, &res, &err) < 0)
                assert_true(
                    err.kind == MFT_E_MALFORMED_MESSAGE || err.kind == MFT_E_DECRYPT_FAILED ||
                    err.kind == MFT_E_SIGNATURE_INVALID || err.kind == MFT_E_DECOMPRESS_FAILED);
            mft_as2_result_free(&res);
        }
        free(s.buf);
    }
    mecas2_free(&k);
}

static void test_multipart_payloads(void **state)
{
    const char *ent = "Content-Type: multipart/mixed; boundary=\"=_mix\"\r\n\r\n"
                      "preamble\r\n--=_mix\r\n"
                      "Content-Type: application/edi-x12\r\n"
                      "Content-Disposition: attachment; filename=\"one.edi\"\r\n\r\n"
                      "ISA*one~\r\n"
                      "--=_mix\r\n"
                      "Content-Type: application/xml\r\n"
                      "Content-Transfer-Encoding: base64\r\n"
                      "Content-Disposition: attachment; filename=two.xml\r\n\r\n"
                      "PHR3by8+\r\n"
                      "--=_mix--\r\n";
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    struct built b;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    sign_entity(&b, (const unsigned char *)ent, strlen(ent), p_crt, p_key);
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), 0);
    assert_int_equal(res.n_payloads, 2);
    assert_string_equal(res.payloads[0].filename, "one.edi");
    assert_int_equal(res.payloads[0].len, 8);
    assert_memory_equal(res.payloads[0].data, "ISA*one~", 8);
    assert_string_equal(res.payloads[1].filename, "two.xml");
    assert_string_equal(res.payloads[1].content_type, "application/xml");
    assert_int_equal(res.payloads[1].len, 6);
    assert_memory_equal(res.payloads[1].data, "<two/>", 6);
    mft_as2_result_free(&res);
    free(b.buf);
}

static void test_modifiers(void **state)
{
    assert_string_equal(mft_as2_disposition_modifier(MFT_E_DECRYPT_FAILED), "decryption-failed");
    assert_string_equal(mft_as2_disposition_modifier(MFT_E_SIGNATURE_INVALID),
                        "authentication-failed");
    assert_string_equal(mft_as2_disposition_modifier(MFT_E_ALGORITHM_REFUSED),
                        "insufficient-message-security");
    assert_string_equal(mft_as2_disposition_modifier(MFT_E_UNKNOWN_PARTNER),
                        "unknown-trading-partner");
    assert_string_equal(mft_as2_disposition_modifier(MFT_E_UNKNOWN_STATION),
                        "unknown-trading-partner");
    assert_string_equal(mft_as2_disposition_modifier(MFT_E_DECOMPRESS_FAILED),
                        "decompression-failed");
    assert_string_equal(mft_as2_disposition_modifier(MFT_E_STORAGE), "unexpected-processing-error");
    assert_string_equal(mft_as2_disposition_modifier_err(NULL), "unexpected-processing-error");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mecas2_signed),
        cmocka_unit_test(test_mecas2_encrypted_layers),
        cmocka_unit_test(test_libas2),
        cmocka_unit_test(test_openssl_matrix),
        cmocka_unit_test(test_signature_negatives),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_rc2_refused),
        cmocka_unit_test(test_compressed),
        cmocka_unit_test(test_too_many_layers),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_multipart_payloads),
        cmocka_unit_test(test_modifiers),
    };
    int failed = cmocka_run_group_tests_name("in memory", tests, setup, teardown);
    spill_dir = "/tmp";
    failed += cmocka_run_group_tests_name("spilled to temporary files", tests, setup, teardown);
    return failed;
}
