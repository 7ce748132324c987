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
#include <strings.h>

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

/* RC2, RC4 and single DES: refused by default (insufficient-message-security,
 * naming the partner switch), read when the partner allows legacy encryption. */
static void test_legacy_ciphers(void **state)
{
    static const struct {
        const char *flag, *name;
    } legacy[] = {
        {"-rc2-40", "rc2-cbc"}, {"-rc2-128", "rc2-cbc"}, {"-des", "des-cbc"}, {"-rc4", "rc4"}};
    char in[300], der[300];
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    (void)state;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    path(in, sizeof(in), "legacy.txt");
    path(der, sizeof(der), "legacy.der");
    tk_write(in, "Content-Type: text/plain\r\n\r\nhello\r\n", 35);
    for (size_t i = 0; i < sizeof(legacy) / sizeof(legacy[0]); i++) {
        struct built b = {0};
        /* these need the legacy provider in the openssl CLI too */
        tk_run("openssl", "cms", "-encrypt", "-provider", "legacy", "-provider", "default",
               "-binary", legacy[i].flag, "-in", in, "-outform", "DER", "-out", der, s_crt, NULL);
        built_from_der(&b, der, 1);
        p.allow_legacy_encryption = 0;
        mft_err_clear(&err);
        assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
        assert_int_equal(err.kind, MFT_E_ALGORITHM_REFUSED);
        assert_non_null(strstr(err.message, legacy[i].name));
        assert_non_null(strstr(err.remedy, "allow_legacy_encryption"));
        assert_string_equal(mft_as2_disposition_modifier(err.kind),
                            "insufficient-message-security");
        mft_as2_result_free(&res);

        p.allow_legacy_encryption = 1;
        mft_err_clear(&err);
        if (mft_as2_receive(&b.req, &st, &p, &res, &err) != 0)
            fail_msg("%s allowed: %s (%s)", legacy[i].flag, err.message, err.detail);
        assert_string_equal(res.cipher, legacy[i].name);
        assert_int_equal(res.n_payloads, 1);
        assert_int_equal(res.payloads[0].len, 7);
        assert_memory_equal(res.payloads[0].data, "hello\r\n", 7);
        mft_as2_result_free(&res);
        free(b.buf);
    }
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

/*
 * compress(compress(x)): each layer under the 1000:1 ratio (about 290:1 and
 * 40:1 here), 4 MB from a few hundred bytes overall: refused as a bomb, since
 * the budget and the ratio hold for the whole message, not per layer.
 */
static void test_nested_compression(void **state)
{
    (void)state;
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    const char *hdr = "Content-Type: application/octet-stream\r\n\r\n";
    size_t n = (size_t)4 << 20, hl = strlen(hdr);
    unsigned char block[100], *plain = malloc(hl + n), *c1, *c2;
    assert_non_null(plain);
    for (size_t i = 0; i < sizeof(block); i++)
        block[i] = (unsigned char)(i * 151 + 17);
    memcpy(plain, hdr, hl);
    for (size_t i = 0; i < n; i++)
        plain[hl + i] = block[i % sizeof(block)];
    size_t l1 = compressed_entity(&c1, plain, hl + n, 0);
    size_t l2 = compressed_entity(&c2, c1, l1, 0);
    assert_true(n / l1 < 1000 && n / l2 > 1000); /* each layer passes alone, the whole does not */
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    p.require_signature = p.require_encryption = 0;
    char file[300];
    struct built b = {0};
    path(file, sizeof(file), "nested-bomb.bin");
    tk_write(file, c2, l2);
    built_from_mime(&b, file);
    b.req.max_inflated = (size_t)1 << 30;
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
    assert_non_null(strstr(err.message, "whole message"));
    mft_as2_result_free(&res);

    /* the inner layer alone is accepted: the guard is about nesting */
    free(b.buf);
    memset(&b, 0, sizeof(b));
    tk_write(file, c1, l1);
    built_from_mime(&b, file);
    b.req.max_inflated = (size_t)1 << 30;
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&b.req, &st, &p, &res, &err), 0);
    assert_int_equal(res.payloads[0].len, n);
    mft_as2_result_free(&res);
    free(b.buf);
    free(c1);
    free(c2);
    free(plain);
}

/*
 * A layer that cannot be spilled (the temporary directory is unusable) is our
 * outage, MFT_E_STORAGE — which ingress answers with HTTP 503, not a negative
 * MDN — and leaves nothing behind in the result.
 */
static void test_spill_failure(void **state)
{
    (void)state;
    struct mft_station st;
    struct mft_partner p;
    struct mft_as2_result res;
    struct mft_err err;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    p.require_signature = p.require_encryption = 0;
    const char *b64 = "SVNBKjAwKiAgICAgICAgICAqMDAqfg==\r\n"; /* transfer-decoded: a layer */
    struct mft_as2_request req = {.content_type = "application/edi-x12",
                                  .content_transfer_encoding = "base64",
                                  .body = (const unsigned char *)b64,
                                  .body_len = strlen(b64)};
    const char *saved = spill_dir;
    spill_dir = "/nonexistent/mft-spill"; /* as2_receive: threshold 1 byte */
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&req, &st, &p, &res, &err), -1);
    spill_dir = saved;
    assert_int_equal(err.kind, MFT_E_STORAGE);
    assert_true(mft_err_local_outage(err.kind));
    assert_int_equal(res.n_payloads, 0);
    mft_as2_result_free(&res);
    /* the same request with a usable directory is received */
    mft_err_clear(&err);
    assert_int_equal(mft_as2_receive(&req, &st, &p, &res, &err), 0);
    assert_int_equal(res.payloads[0].len, 22);
    mft_as2_result_free(&res);
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

/* ---- fault classes of issue 4, built by hand around `openssl cms` ------------ */

/* A detached DER SignedData over ent (openssl cms -sign -binary -outform DER). */
static unsigned char *detached_sig(const unsigned char *ent, size_t elen, const char *md,
                                   size_t *sig_len)
{
    char in[300], out[300];
    path(in, sizeof(in), "hand_entity.bin");
    path(out, sizeof(out), "hand_sig.der");
    tk_write(in, ent, elen);
    tk_run("openssl", "cms", "-sign", "-binary", "-md", md, "-in", in, "-signer", p_crt, "-inkey",
           p_key, "-outform", "DER", "-out", out, NULL);
    return tk_read(out, sig_len);
}

/* How a hand-made multipart/signed is written on the wire. */
struct hand {
    const char *eol;      /* line end of delimiters and signature headers: "\r\n" or "\n" */
    const char *boundary; /* as it appears on delimiter lines */
    const char *ctype;    /* the HTTP Content-Type (with the boundary parameter) */
    const char *sig_cte;  /* "base64", "binary", "BASE64"... NULL: no CTE header, base64 body */
    const char *md;       /* signing digest for openssl */
    const char *preamble; /* NULL: none */
};

/* multipart/signed around ent, assembled byte by byte; b owns the body. */
static void hand_signed(struct built *b, const struct hand *h, const unsigned char *ent,
                        size_t elen)
{
    size_t sl;
    unsigned char *sig = detached_sig(ent, elen, h->md ? h->md : "sha256", &sl);
    struct tk_buf o = {0};
    const char *eol = h->eol;
    int b64 = !h->sig_cte || strcasecmp(h->sig_cte, "binary") != 0;
    if (h->preamble) {
        tk_put(&o, h->preamble, strlen(h->preamble));
        tk_put(&o, eol, strlen(eol));
    }
    tk_put(&o, "--", 2);
    tk_put(&o, h->boundary, strlen(h->boundary));
    tk_put(&o, eol, strlen(eol));
    tk_put(&o, ent, elen);
    tk_put(&o, eol, strlen(eol));
    tk_put(&o, "--", 2);
    tk_put(&o, h->boundary, strlen(h->boundary));
    tk_put(&o, eol, strlen(eol));
    const char *sh = "Content-Type: application/pkcs7-signature; name=smime.p7s";
    tk_put(&o, sh, strlen(sh));
    tk_put(&o, eol, strlen(eol));
    if (h->sig_cte) {
        tk_put(&o, "Content-Transfer-Encoding: ", 27);
        tk_put(&o, h->sig_cte, strlen(h->sig_cte));
        tk_put(&o, eol, strlen(eol));
    }
    tk_put(&o, eol, strlen(eol));
    if (b64) {
        for (size_t i = 0; i < sl; i += 48) {
            unsigned char line[80];
            int n = EVP_EncodeBlock(line, sig + i, (int)(sl - i < 48 ? sl - i : 48));
            tk_put(&o, line, (size_t)n);
            tk_put(&o, eol, strlen(eol));
        }
    } else {
        tk_put(&o, sig, sl);
        tk_put(&o, eol, strlen(eol));
    }
    tk_put(&o, "--", 2);
    tk_put(&o, h->boundary, strlen(h->boundary));
    tk_put(&o, "--", 2);
    tk_put(&o, eol, strlen(eol));
    free(sig);
    memset(b, 0, sizeof(*b));
    snprintf(b->ctype, sizeof(b->ctype), "%s", h->ctype);
    b->buf = o.p;
    b->len = o.len;
    b->req.content_type = b->ctype;
    b->req.body = b->buf;
    b->req.body_len = b->len;
}

/* base64(<md>(data)) by `openssl dgst`, the independent MIC. */
static void mic_of(const char *md, const void *data, size_t len, char *out, size_t outlen)
{
    char f[300];
    path(f, sizeof(f), "mic_input.bin");
    tk_write(f, data, len);
    openssl_mic(md, f, out, outlen);
}

/* Receives req, failing the test with name and the error when it is refused. */
static void receive_ok(const char *name, const struct mft_as2_request *req,
                       const struct mft_station *st, const struct mft_partner *p,
                       struct mft_as2_result *res)
{
    struct mft_err err;
    mft_err_clear(&err);
    if (mft_as2_receive(req, st, p, res, &err) != 0)
        fail_msg("%s: %s: %s / %s", name, mft_err_kind_name(err.kind), err.message, err.detail);
}

/* Receives b for the default pair; asserts success and the MIC over ent. */
static void expect_signed_ok(const char *name, struct built *b, const unsigned char *ent,
                             size_t elen, const char *md, const char *mic_alg,
                             struct mft_as2_result *res)
{
    struct mft_station st;
    struct mft_partner p;
    char mic[128];
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    receive_ok(name, &b->req, &st, &p, res);
    assert_true(res->is_signed);
    mic_of(md, ent, elen, mic, sizeof(mic));
    if (strcmp(res->mic_b64, mic) != 0 || strcmp(res->mic_alg, mic_alg) != 0)
        fail_msg("%s: MIC %s, %s; expected %s, %s", name, res->mic_b64, res->mic_alg, mic, mic_alg);
}

/*
 * Class 1, signed bytes are sacred: the signature and the MIC are over the
 * exact bytes of the first part whatever they look like — LF-only lines
 * everywhere, no Content-Transfer-Encoding, TAB-folded and lower-case header
 * names, bare CR and NUL in a binary body, a multipart/related first part.
 */
static void test_signed_bytes_sacred(void **state)
{
    static const struct {
        const char *name, *eol, *entity;
        size_t n_payloads;
        const char *first, *filename, *content_type;
    } cases[] = {
        {"LF-only, no CTE", "\n",
         "content-type: application/EDIFACT\nContent-Disposition: attachment;\n\tfilename="
         "\"lf.edi\"\n\nUNB+UNOA:2+SENDER+RECEIVER'\nUNH+1+ORDERS:D:96A:UN'\nUNZ+1+1'\n",
         1, "UNB+UNOA:2+SENDER+RECEIVER'\nUNH+1+ORDERS:D:96A:UN'\nUNZ+1+1'\n", "lf.edi",
         "application/EDIFACT"},
        {"TAB-folded lower-case headers, CRLF", "\r\n",
         "content-type:\tapplication/edi-x12;\r\n\tcharset=us-ascii\r\n"
         "CONTENT-DISPOSITION: attachment;\r\n  filename=folded.x12\r\n"
         "content-transfer-encoding: BINARY\r\n\r\nISA*00*\rbare CR\r\n",
         1, "ISA*00*\rbare CR\r\n", "folded.x12", "application/edi-x12;\tcharset=us-ascii"},
        {"multipart/related with two documents", "\r\n",
         "Content-Type: multipart/related; type=\"application/xml\";\r\n"
         "\tboundary=\"--rel/=+1\"\r\n\r\n"
         "----rel/=+1\r\nContent-Type: application/xml\r\nContent-ID: <a@x>\r\n"
         "Content-Disposition: attachment; filename=a.xml\r\n\r\n<a/>\r\n"
         "----rel/=+1\r\ncontent-type: application/pdf\r\ncontent-id: <b@x>\r\n"
         "content-transfer-encoding: base64\r\n\r\nJVBERi0=\r\n----rel/=+1--\r\n",
         2, "<a/>", "a.xml", "application/xml"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const unsigned char *ent = (const unsigned char *)cases[i].entity;
        size_t elen = strlen(cases[i].entity);
        struct hand h = {.eol = cases[i].eol,
                         .boundary = "sig_B",
                         .ctype = "multipart/signed; protocol=\"application/pkcs7-signature\"; "
                                  "micalg=sha-256; boundary=\"sig_B\""};
        struct built b;
        struct mft_as2_result res;
        hand_signed(&b, &h, ent, elen);
        expect_signed_ok(cases[i].name, &b, ent, elen, "sha256", "sha-256", &res);
        assert_int_equal(res.n_payloads, cases[i].n_payloads);
        assert_int_equal(res.payloads[0].len, strlen(cases[i].first));
        assert_memory_equal(res.payloads[0].data, cases[i].first, strlen(cases[i].first));
        assert_string_equal(res.payloads[0].filename, cases[i].filename);
        assert_string_equal(res.payloads[0].content_type, cases[i].content_type);
        if (cases[i].n_payloads == 2) {
            assert_int_equal(res.payloads[1].len, 5);
            assert_memory_equal(res.payloads[1].data, "%PDF-", 5);
        }
        mft_as2_result_free(&res);

        /* re-canonicalising (LF -> CRLF, or the reverse) would change the bytes: refused */
        size_t at = tk_find(b.buf, b.len, "\n\n", 0);
        if (strcmp(cases[i].eol, "\n") == 0 && at != (size_t)-1) {
            struct built c = b;
            struct tk_buf o = {0};
            tk_put(&o, b.buf, at);
            tk_put(&o, "\r\n\n", 3);
            tk_put(&o, b.buf + at + 2, b.len - at - 2);
            c.buf = o.p;
            c.req.body = o.p;
            c.req.body_len = o.len;
            struct mft_station st;
            struct mft_partner p;
            struct mft_err err;
            make_pair(&st, &p, station_cert, station_key, partner_cert);
            mft_err_clear(&err);
            assert_int_equal(mft_as2_receive(&c.req, &st, &p, &res, &err), -1);
            assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
            mft_as2_result_free(&res);
            free(o.p);
        }
        free(b.buf);
    }
}

/*
 * Class 2, transfer encodings: quoted-printable, 8bit, binary, base64 (any
 * case) in the signed part; the signature part as binary DER, as base64 with
 * or without a Content-Transfer-Encoding header; the outer entity's encoding
 * given only as an HTTP header.
 */
static void test_transfer_encodings(void **state)
{
    static const struct {
        const char *cte, *body, *want, *sig_cte;
    } cases[] = {
        {"quoted-printable", "caf=C3=A9 =3D ok=\r\n soft\r\nend  \r\n",
         "caf\xc3\xa9 = ok soft\r\nend\r\n", "base64"},
        {"Quoted-Printable", "x=0D=0Ay", "x\r\ny", "binary"},
        {"8bit", "caf\xc3\xa9\r\n", "caf\xc3\xa9\r\n", NULL},
        {"Base64", "Y2Fmw6k=\r\n", "caf\xc3\xa9", "BASE64"},
        {"7bit", "plain\r\n", "plain\r\n", "Binary"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char ent[512];
        int n = snprintf(ent, sizeof(ent),
                         "Content-Type: text/plain; charset=utf-8\r\n"
                         "Content-Transfer-Encoding: %s\r\n\r\n%s",
                         cases[i].cte, cases[i].body);
        struct hand h = {.eol = "\r\n",
                         .boundary = "=_te",
                         .ctype = "multipart/signed; micalg=sha-256; boundary=\"=_te\"",
                         .sig_cte = cases[i].sig_cte};
        struct built b;
        struct mft_as2_result res;
        char name[64];
        snprintf(name, sizeof(name), "CTE %s, signature %s", cases[i].cte,
                 cases[i].sig_cte ? cases[i].sig_cte : "(none)");
        hand_signed(&b, &h, (const unsigned char *)ent, (size_t)n);
        expect_signed_ok(name, &b, (const unsigned char *)ent, (size_t)n, "sha256", "sha-256",
                         &res);
        assert_int_equal(res.payloads[0].len, strlen(cases[i].want));
        assert_memory_equal(res.payloads[0].data, cases[i].want, strlen(cases[i].want));
        mft_as2_result_free(&res);
        free(b.buf);
    }

    /* unsigned, the encoding only in the HTTP header; the MIC over the content as sent */
    static const struct {
        const char *cte, *body, *want;
    } outer[] = {
        {"quoted-printable", "ISA*00*=3D~=\r\nIEA~\r\n", "ISA*00*=~IEA~\r\n"},
        {"base64", "SVNBKjAwKn4=", "ISA*00*~"},
        {"8bit", "UNB+\xc3\xa9'", "UNB+\xc3\xa9'"},
        {NULL, "no header at all", "no header at all"},
    };
    struct mft_station st;
    struct mft_partner p;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    for (size_t i = 0; i < sizeof(outer) / sizeof(outer[0]); i++) {
        struct mft_as2_request req = {.content_type = "application/edi-x12",
                                      .content_transfer_encoding = outer[i].cte,
                                      .content_disposition = "attachment; filename=\"o.x12\"",
                                      .body = (const unsigned char *)outer[i].body,
                                      .body_len = strlen(outer[i].body)};
        struct mft_as2_result res;
        char mic[128];
        receive_ok(outer[i].cte ? outer[i].cte : "no CTE", &req, &st, &p, &res);
        assert_int_equal(res.payloads[0].len, strlen(outer[i].want));
        assert_memory_equal(res.payloads[0].data, outer[i].want, strlen(outer[i].want));
        assert_string_equal(res.payloads[0].filename, "o.x12");
        mic_of("sha1", outer[i].body, strlen(outer[i].body), mic, sizeof(mic));
        assert_string_equal(res.mic_b64, mic);
        mft_as2_result_free(&res);
    }
}

/*
 * Class 3, algorithm names: the MIC digest is the one the partner asked for
 * (answered in its spelling), else the one the signature really uses — read
 * from the SignerInfo's OID, not from a micalg label that may be wrong or
 * spelt any way.
 */
static void test_micalg_names(void **state)
{
    static const struct {
        const char *label, *sign_md, *dno, *mic_md, *mic_alg, *sign_digest;
    } cases[] = {
        /* the label lies: the signature is SHA-256 */
        {"sha1", "sha256", NULL, "sha256", "sha-256", "SHA256"},
        {"SHA1", "sha512", NULL, "sha512", "sha-512", "SHA512"},
        {"md5", "sha384", NULL, "sha384", "sha-384", "SHA384"},
        {"unknown-alg", "sha1", NULL, "sha1", "sha-1", "SHA1"},
        {"sha-256", "sha256", NULL, "sha256", "sha-256", "SHA256"},
        /* the partner asks: its first supported digest, in its spelling */
        {"sha-256", "sha256",
         "signed-receipt-protocol=optional,pkcs7-signature;"
         "signed-receipt-micalg=optional,sha_256",
         "sha256", "sha_256", "SHA256"},
        {"sha256", "sha256",
         "signed-receipt-micalg = required , SHA-384 , sha1 ; "
         "signed-receipt-protocol = required , pkcs7-signature",
         "sha384", "SHA-384", "SHA256"},
        {"sha1", "sha1", "Signed-Receipt-MicAlg=optional, md5, SHA1", "sha1", "SHA1", "SHA1"},
        {"sha1", "sha256", "signed-receipt-micalg=optional, pkcs7-signature, sha-1", "sha1",
         "sha-1", "SHA256"},
    };
    const char *ent = "Content-Type: application/edi-x12\r\n\r\nISA*00*micalg~\r\n";
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char ctype[200], name[200];
        snprintf(ctype, sizeof(ctype),
                 "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=%s; "
                 "boundary=mb",
                 cases[i].label);
        snprintf(name, sizeof(name), "micalg=%s signed with %s, options [%s]", cases[i].label,
                 cases[i].sign_md, cases[i].dno ? cases[i].dno : "");
        struct hand h = {.eol = "\r\n", .boundary = "mb", .ctype = ctype, .md = cases[i].sign_md};
        struct built b;
        struct mft_as2_result res;
        hand_signed(&b, &h, (const unsigned char *)ent, strlen(ent));
        b.req.disposition_notification_options = cases[i].dno;
        expect_signed_ok(name, &b, (const unsigned char *)ent, strlen(ent), cases[i].mic_md,
                         cases[i].mic_alg, &res);
        assert_string_equal(res.sign_digest, cases[i].sign_digest);
        mft_as2_result_free(&res);
        free(b.buf);
    }
}

/*
 * Class 4, header syntax: boundaries made of every character class RFC 2046
 * allows (digits, letters, ' ( ) + _ , - . / : = ? and inner spaces, leading
 * dashes, 70 characters), quoted or not where the grammar allows it, with a
 * preamble, parameters separated by ';' with spaces, TABs or nothing, folded,
 * and a whole value a broken sender wrapped in quotes.
 */
static void test_header_syntax(void **state)
{
    static const char *boundaries[] = {
        "simple",
        "----=_Part_0_1234.5678",
        "a/b=c+d",
        "'()+_,-./:=?",
        "with inner spaces",
        "--leading-dashes--",
        "0123456789",
        "1234567890123456789012345678901234567890123456789012345678901234567890",
    };
    static const char *forms[] = {
        "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; "
        "boundary=\"%s\"",
        "multipart/signed;boundary=\"%s\";micalg=sha256",
        "Multipart/Signed;\tmicalg=\"sha-256\";\tBoundary=\"%s\"",
        "multipart/signed;\r\n\tprotocol=\"application/pkcs7-signature\";\r\n boundary=\"%s\"",
        "\"multipart/signed; micalg=sha-256; boundary=\"%s\"\"",
        "multipart/signed ; boundary = %s ; micalg = sha-256",
    };
    const char *ent = "Content-Type: application/xml\r\n\r\n<order/>";
    for (size_t i = 0; i < sizeof(boundaries) / sizeof(boundaries[0]); i++)
        for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
            int needs_quotes = strpbrk(boundaries[i], "'()+,/:=? ") != NULL;
            if (f == sizeof(forms) / sizeof(forms[0]) - 1 && strchr(boundaries[i], ' '))
                continue; /* an unquoted boundary cannot hold a space */
            char ctype[400], name[500];
            const char *at = strstr(forms[f], "%s"); /* the boundary's place */
            snprintf(ctype, sizeof(ctype), "%.*s%s%s", (int)(at - forms[f]), forms[f],
                     boundaries[i], at + 2);
            snprintf(name, sizeof(name), "Content-Type [%s]%s", ctype,
                     needs_quotes && f == 5 ? " (tspecials unquoted, as senders do)" : "");
            struct hand h = {.eol = (i % 2) ? "\n" : "\r\n",
                             .boundary = boundaries[i],
                             .ctype = ctype,
                             .preamble = (f % 2) ? "This is an S/MIME signed message" : NULL};
            struct built b;
            struct mft_as2_result res;
            hand_signed(&b, &h, (const unsigned char *)ent, strlen(ent));
            expect_signed_ok(name, &b, (const unsigned char *)ent, strlen(ent), "sha256", "sha-256",
                             &res);
            assert_int_equal(res.payloads[0].len, 8);
            assert_memory_equal(res.payloads[0].data, "<order/>", 8);
            mft_as2_result_free(&res);
            free(b.buf);
        }
}

/*
 * Class 6, both orders of compression: sign-then-compress (the MIC over the
 * signed entity inside the CompressedData) next to test_compressed's
 * compress-then-sign, each also inside encryption.
 */
static void test_sign_then_compress(void **state)
{
    unsigned char data[PAYLOAD_LEN], ent[PAYLOAD_LEN * 2 + 512], *cent;
    char sig_path[300], enc_in[300], enc_der[300], mic[128];
    size_t elen, sl;
    struct mft_station st;
    struct mft_partner p;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    make_payload(data, 11);
    make_entity(ent, &elen, data, 0);
    mic_of("sha256", ent, elen, mic, sizeof(mic));

    /* the signed entity as openssl writes it (its headers included) goes into the compression */
    struct built s;
    sign_entity(&s, ent, elen, p_crt, p_key);
    path(sig_path, sizeof(sig_path), "neg_signed.eml");
    unsigned char *signed_mime = tk_read(sig_path, &sl);
    size_t cl = compressed_entity(&cent, signed_mime, sl, 0);
    free(signed_mime);
    free(s.buf);
    for (int enc = 0; enc < 2; enc++) {
        struct built b = {0};
        if (enc) {
            path(enc_in, sizeof(enc_in), "stc.bin");
            path(enc_der, sizeof(enc_der), "stc.der");
            tk_write(enc_in, cent, cl);
            tk_run("openssl", "cms", "-encrypt", "-binary", "-aes-256-cbc", "-in", enc_in,
                   "-outform", "DER", "-out", enc_der, s_crt, NULL);
            built_from_der(&b, enc_der, 0);
        } else {
            path(enc_in, sizeof(enc_in), "stc.bin");
            tk_write(enc_in, cent, cl);
            built_from_mime(&b, enc_in);
        }
        b.req.max_inflated = 1 << 20;
        struct mft_as2_result res;
        receive_ok(enc ? "sign-then-compress in encryption" : "sign-then-compress", &b.req, &st, &p,
                   &res);
        assert_true(res.is_compressed);
        assert_true(res.is_signed);
        assert_int_equal(res.is_encrypted, enc);
        assert_string_equal(res.mic_b64, mic);
        assert_string_equal(res.mic_alg, "sha-256");
        assert_int_equal(res.payloads[0].len, PAYLOAD_LEN);
        assert_memory_equal(res.payloads[0].data, data, PAYLOAD_LEN);
        mft_as2_result_free(&res);
        free(b.buf);
    }
    free(cent);
}

/*
 * Class 7, content without MIME headers: the bare payload encrypted (and
 * compressed), the file name from the HTTP Content-Disposition. Content that
 * merely looks like header lines stays content.
 */
static void test_headerless_content(void **state)
{
#define BYTES(s)                                                                                   \
    {                                                                                              \
        s, sizeof(s) - 1                                                                           \
    }
    static const struct {
        const char *p;
        size_t n;
    } payloads[] = {
        BYTES("UNA:+.? 'UNB+UNOA:2+SENDER:ZZ+RECEIVER:ZZ+200101:1200+1'UNZ+1+1'"),
        BYTES("ISA*00*          *00*          *ZZ*A*ZZ*B~GS*PO~IEA*1~"),
        BYTES("Date: 2024-01-01\r\nTotal: 12\r\n\r\nrows that look like a MIME entity\r\n"),
        BYTES("\x30\x82\x01\x00 binary \x00\xff"),
    };
#undef BYTES
    char in[300], der[300];
    struct mft_station st;
    struct mft_partner p;
    make_pair(&st, &p, station_cert, station_key, partner_cert);
    path(in, sizeof(in), "bare.bin");
    path(der, sizeof(der), "bare.der");
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++)
        for (int compress = 0; compress < 2; compress++) {
            size_t n = payloads[i].n;
            if (compress) { /* compressed bare content, then encrypted */
                uLongf zl = compressBound(n);
                unsigned char *z = malloc(zl);
                assert_int_equal(compress2(z, &zl, (const unsigned char *)payloads[i].p, n, 6),
                                 Z_OK);
                struct tk_buf c = tk_compressed_ber(z, zl);
                const char *hdr = "Content-Type: application/pkcs7-mime; "
                                  "smime-type=compressed-data\r\n\r\n";
                struct tk_buf e = {0};
                tk_put(&e, hdr, strlen(hdr));
                tk_put(&e, c.p, c.len);
                tk_write(in, e.p, e.len);
                free(z);
                free(c.p);
                free(e.p);
            } else {
                tk_write(in, payloads[i].p, n);
            }
            tk_run("openssl", "cms", "-encrypt", "-binary", "-aes-128-cbc", "-in", in, "-outform",
                   "DER", "-out", der, s_crt, NULL);
            struct built b = {0};
            built_from_der(&b, der, (int)i % 2);
            b.req.content_disposition = "attachment; filename=\"bare-file.edi\"";
            b.req.max_inflated = 1 << 20;
            struct mft_as2_result res;
            char name[64];
            snprintf(name, sizeof(name), "bare payload %zu%s", i, compress ? " compressed" : "");
            receive_ok(name, &b.req, &st, &p, &res);
            assert_int_equal(res.n_payloads, 1);
            assert_int_equal(res.payloads[0].len, n);
            assert_memory_equal(res.payloads[0].data, payloads[i].p, n);
            assert_string_equal(res.payloads[0].filename, "bare-file.edi");
            assert_string_equal(res.payloads[0].content_type, "");
            assert_int_equal(res.is_compressed, compress);
            mft_as2_result_free(&res);
            free(b.buf);
        }
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
        cmocka_unit_test(test_legacy_ciphers),
        cmocka_unit_test(test_compressed),
        cmocka_unit_test(test_nested_compression),
        cmocka_unit_test(test_spill_failure),
        cmocka_unit_test(test_too_many_layers),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_multipart_payloads),
        cmocka_unit_test(test_signed_bytes_sacred),
        cmocka_unit_test(test_transfer_encodings),
        cmocka_unit_test(test_micalg_names),
        cmocka_unit_test(test_header_syntax),
        cmocka_unit_test(test_sign_then_compress),
        cmocka_unit_test(test_headerless_content),
        cmocka_unit_test(test_modifiers),
    };
    int failed = cmocka_run_group_tests_name("in memory", tests, setup, teardown);
    spill_dir = "/tmp";
    failed += cmocka_run_group_tests_name("spilled to temporary files", tests, setup, teardown);
    return failed;
}
