/*
 * Unit tests for mft_smime: decrypt / verify / uncompress the real interop
 * files in ../shared/interop/as2, and messages built at test time by the
 * openssl CLI (an independent implementation) in every algorithm we accept or
 * refuse; sign_detached is checked by `openssl cms -verify`.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mft_smime.h"
#include "mft_spill.h"

#include <openssl/cms.h>
#include "mft_testkeys.h"

#include <zlib.h>

static char dir[256];
static char p_crt[300], p_key[300], o_crt[300], o_key[300], e_crt[300], e_key[300];
static X509 *partner_cert, *other_cert, *ec_cert;
static EVP_PKEY *partner_key, *other_key, *ec_key;

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
    path(o_crt, sizeof(o_crt), "o.crt");
    path(o_key, sizeof(o_key), "o.key");
    path(e_crt, sizeof(e_crt), "e.crt");
    path(e_key, sizeof(e_key), "e.key");
    const char *subj[] = {"/CN=partner", "/CN=other", "/CN=ec"};
    const char *crt[] = {p_crt, o_crt, e_crt}, *key[] = {p_key, o_key, e_key};
    for (int i = 0; i < 3; i++) {
        int rc =
            tk_run_rc("openssl", "req", "-x509", "-newkey", i == 2 ? "ec" : "rsa:2048", "-pkeyopt",
                      i == 2 ? "ec_paramgen_curve:P-256" : "rsa_keygen_bits:2048", "-nodes",
                      "-keyout", key[i], "-out", crt[i], "-subj", subj[i], "-days", "2", NULL);
        assert_int_equal(rc, 0);
    }
    partner_cert = tk_cert(p_crt);
    partner_key = tk_key(p_key, NULL);
    other_cert = tk_cert(o_crt);
    other_key = tk_key(o_key, NULL);
    ec_cert = tk_cert(e_crt);
    ec_key = tk_key(e_key, NULL);
    return 0;
}

static int teardown(void **state)
{
    X509_free(partner_cert);
    X509_free(other_cert);
    X509_free(ec_cert);
    EVP_PKEY_free(partner_key);
    EVP_PKEY_free(other_key);
    EVP_PKEY_free(ec_key);
    tk_rmdir(dir);
    tk_unload();
    return 0;
}

/* ---- digests ------------------------------------------------------------ */

static void test_digest_names(void **state)
{
    static const struct {
        const char *in, *ossl, *rfc;
    } cases[] = {
        {"sha1", "SHA1", "sha-1"},
        {"sha-1", "SHA1", "sha-1"},
        {"SHA1", "SHA1", "sha-1"},
        {"sha_1", "SHA1", "sha-1"},
        {"SHA-224", "SHA224", "sha-224"},
        {"sha256", "SHA256", "sha-256"},
        {"sha-256", "SHA256", "sha-256"},
        {"SHA_256", "SHA256", "sha-256"},
        {"sha384", "SHA384", "sha-384"},
        {"Sha-384", "SHA384", "sha-384"},
        {"sha512", "SHA512", "sha-512"},
        {"sha_512", "SHA512", "sha-512"},
        {" sha-512", "SHA512", "sha-512"},
        {"md5", "MD5", "md5"},
        {"MD5", "MD5", "md5"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *o = NULL, *r = NULL;
        assert_int_equal(mft_smime_digest_name(cases[i].in, &o, &r), 0);
        assert_string_equal(o, cases[i].ossl);
        assert_string_equal(r, cases[i].rfc);
    }
    const char *o, *r;
    assert_int_equal(mft_smime_digest_name("sha-3", &o, &r), -1);
    assert_int_equal(mft_smime_digest_name("", &o, &r), -1);
    assert_int_equal(mft_smime_digest_name(NULL, &o, &r), -1);
    assert_int_equal(mft_smime_digest_name("sha256sha256sha256", &o, &r), -1);
}

static void test_digest_b64(void **state)
{
    char out[128];
    struct mft_err err;
    assert_int_equal(
        mft_smime_digest_b64("SHA256", (const unsigned char *)"abc", 3, out, sizeof(out), &err), 0);
    assert_string_equal(out, "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=");
    assert_int_equal(
        mft_smime_digest_b64("SHA1", (const unsigned char *)"abc", 3, out, sizeof(out), &err), 0);
    assert_string_equal(out, "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
    assert_int_equal(mft_smime_digest_b64("SHA256", (const unsigned char *)"abc", 3, out, 20, &err),
                     -1);
    assert_int_equal(
        mft_smime_digest_b64("NOPE", (const unsigned char *)"abc", 3, out, sizeof(out), &err), -1);
}

/* ---- decrypt -------------------------------------------------------------- */

static void test_decrypt_mecas2(void **state)
{
    size_t len, hl, off, plen;
    unsigned char *msg = tk_read(AS2_DIR "/pyas2-lib/mecas2_encrypted.as2", &len);
    unsigned char *payload = tk_read(AS2_DIR "/pyas2-lib/payload.txt", &plen);
    struct mft_keypair kp[2] = {{0}};
    tk_p12(AS2_DIR "/pyas2-lib/cert_test.p12", "test", &kp[1].cert, &kp[1].key);
    kp[0].cert = other_cert; /* a rollover key first: must be skipped */
    kp[0].key = other_key;
    tk_split(msg, len, &hl, &off);

    struct mft_smime_decrypted d;
    struct mft_err err;
    mft_err_clear(&err);
    assert_int_equal(mft_smime_decrypt(msg + off, len - off, kp, 2, &d, &err), 0);
    assert_string_equal(d.cipher, "des-ede3-cbc");
    assert_string_equal(d.key_transport, "rsaes-pkcs1-v1_5");
    assert_int_equal(d.len, plen);
    assert_memory_equal(d.data, payload, plen);
    free(d.data);

    /* only the wrong key: names the recipient and our certificate */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_decrypt(msg + off, len - off, kp, 1, &d, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECRYPT_FAILED);
    assert_null(d.data);
    assert_non_null(strstr(err.detail, "CN=pyas2lib"));
    assert_non_null(strstr(err.detail, "CN=other"));

    /* truncated message */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_decrypt(msg + off, 100, kp, 2, &d, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);

    X509_free(kp[1].cert);
    EVP_PKEY_free(kp[1].key);
    free(msg);
    free(payload);
}

static void test_decrypt_libas2_oaep(void **state)
{
    size_t len, hl, off, dl, el, bl, boff;
    unsigned char *msg = tk_read(AS2_DIR "/node-libas2/content.encrypted.txt", &len);
    unsigned char *edi = tk_read(AS2_DIR "/node-libas2/sample_edi.edi", &el);
    struct mft_keypair kp = {0};
    kp.cert = tk_cert(AS2_DIR "/node-libas2/libas2community.cer");
    kp.key = tk_key(AS2_DIR "/node-libas2/libas2community.key", NULL);
    tk_split(msg, len, &hl, &off);
    unsigned char *der = tk_unbase64(msg + off, len - off, &dl);

    struct mft_smime_decrypted d;
    struct mft_err err;
    mft_err_clear(&err);
    assert_int_equal(mft_smime_decrypt(der, dl, &kp, 1, &d, &err), 0);
    assert_string_equal(d.cipher, "aes-128-cbc");
    assert_string_equal(d.key_transport, "rsaes-oaep");
    /* the plaintext is a MIME entity with a base64 body: sample_edi.edi */
    tk_split(d.data, d.len, &bl, &boff);
    char cte[64];
    assert_int_equal(tk_header(d.data, bl, "Content-Transfer-Encoding", cte, sizeof(cte)), 0);
    assert_string_equal(cte, "base64");
    size_t pl;
    unsigned char *plain = tk_unbase64(d.data + boff, d.len - boff, &pl);
    assert_int_equal(pl, el);
    assert_memory_equal(plain, edi, el);
    free(plain);
    free(d.data);
    X509_free(kp.cert);
    EVP_PKEY_free(kp.key);
    free(der);
    free(msg);
    free(edi);
}

/* Encrypts data with `openssl cms -encrypt` and decrypts it with our code. */
static void roundtrip_encrypt(const char *cipher, const char *padding, const char *expect_cipher,
                              const char *expect_kt)
{
    char in[300], der[300];
    unsigned char data[3000];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 7 + 3); /* binary, with CR/LF/NUL bytes */
    path(in, sizeof(in), "plain.bin");
    path(der, sizeof(der), "enc.der");
    tk_write(in, data, sizeof(data));
    if (padding)
        tk_run("openssl", "cms", "-encrypt", "-binary", cipher, "-in", in, "-outform", "DER",
               "-out", der, "-recip", p_crt, "-keyopt", padding, NULL);
    else
        tk_run("openssl", "cms", "-encrypt", "-binary", cipher, "-in", in, "-outform", "DER",
               "-out", der, p_crt, NULL);
    size_t dl;
    unsigned char *enc = tk_read(der, &dl);
    struct mft_keypair kp = {.cert = partner_cert, .key = partner_key};
    struct mft_smime_decrypted d;
    struct mft_err err;
    mft_err_clear(&err);
    int rc = mft_smime_decrypt(enc, dl, &kp, 1, &d, &err);
    if (rc)
        fprintf(stderr, "%s: %s / %s\n", cipher, err.message, err.detail);
    assert_int_equal(rc, 0);
    assert_string_equal(d.cipher, expect_cipher);
    assert_string_equal(d.key_transport, expect_kt);
    assert_int_equal(d.len, sizeof(data));
    assert_memory_equal(d.data, data, sizeof(data));
    free(d.data);

    /* a flipped ciphertext byte near the end must not decrypt to the same bytes */
    enc[dl - 20] ^= 0x55;
    mft_err_clear(&err);
    rc = mft_smime_decrypt(enc, dl, &kp, 1, &d, &err);
    if (rc == 0) {
        assert_true(d.len != sizeof(data) || memcmp(d.data, data, d.len) != 0);
        free(d.data);
    } else {
        assert_int_equal(err.kind, MFT_E_DECRYPT_FAILED);
    }
    free(enc);
}

static void test_decrypt_openssl_ciphers(void **state)
{
    roundtrip_encrypt("-aes-128-cbc", NULL, "aes-128-cbc", "rsaes-pkcs1-v1_5");
    roundtrip_encrypt("-aes-192-cbc", NULL, "aes-192-cbc", "rsaes-pkcs1-v1_5");
    roundtrip_encrypt("-aes-256-cbc", NULL, "aes-256-cbc", "rsaes-pkcs1-v1_5");
    roundtrip_encrypt("-des-ede3-cbc", NULL, "des-ede3-cbc", "rsaes-pkcs1-v1_5");
    roundtrip_encrypt("-aes-256-cbc", "rsa_padding_mode:oaep", "aes-256-cbc", "rsaes-oaep");
    roundtrip_encrypt("-aes-128-gcm", NULL, "aes-128-gcm", "rsaes-pkcs1-v1_5");
    roundtrip_encrypt("-aes-256-gcm", "rsa_padding_mode:oaep", "aes-256-gcm", "rsaes-oaep");
}

/*
 * Streaming decryption of what `openssl cms -encrypt -stream` writes
 * (indefinite lengths, encryptedContent in many OCTET STRING chunks), into a
 * spill that moves to a temporary file: same bytes as the plaintext; a
 * tampered GCM tag or a truncated message is refused, never half-accepted.
 */
static void streamed_case(const char *cipher, int spill_to_disk)
{
    char in[300], der[300];
    size_t n = 300000;
    unsigned char *data = malloc(n);
    assert_non_null(data);
    for (size_t i = 0; i < n; i++)
        data[i] = (unsigned char)(i * 13 + (i >> 9));
    path(in, sizeof(in), "plain-big.bin");
    path(der, sizeof(der), "enc-stream.ber");
    tk_write(in, data, n);
    tk_run("openssl", "cms", "-encrypt", "-binary", "-stream", cipher, "-in", in, "-outform", "DER",
           "-out", der, p_crt, NULL);
    size_t dl;
    unsigned char *enc = tk_read(der, &dl);
    assert_true(dl > 4 && enc[1] == 0x80); /* indefinite length: really streamed */
    struct mft_keypair kp = {.cert = partner_cert, .key = partner_key};
    struct mft_smime_decrypted d;
    struct mft_spill sp;
    struct mft_err err;
    const unsigned char *out;
    size_t out_len;

    mft_spill_init(&sp, spill_to_disk ? dir : NULL, 4096);
    mft_err_clear(&err);
    int rc = mft_smime_decrypt_to(enc, dl, &kp, 1, 0, &sp, &d, &err);
    if (rc)
        fprintf(stderr, "%s: %s / %s\n", cipher, err.message, err.detail);
    assert_int_equal(rc, 0);
    assert_int_equal(mft_spill_on_disk(&sp), spill_to_disk);
    assert_int_equal(mft_spill_finish(&sp, &out, &out_len, &err), 0);
    assert_int_equal(out_len, n);
    assert_memory_equal(out, data, n);
    mft_release(out, out_len); /* drops the mapping's pages; the bytes stay readable */
    assert_memory_equal(out, data, n);
    mft_spill_free(&sp);

    /* truncated in the middle of the chunks */
    mft_spill_init(&sp, NULL, 0);
    mft_err_clear(&err);
    assert_int_equal(mft_smime_decrypt_to(enc, dl / 2, &kp, 1, 0, &sp, &d, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    mft_spill_free(&sp);

    /* the last content byte (CBC padding) or the GCM tag altered */
    enc[dl - 40] ^= 0x01;
    mft_spill_init(&sp, NULL, 0);
    mft_err_clear(&err);
    rc = mft_smime_decrypt_to(enc, dl, &kp, 1, 0, &sp, &d, &err);
    if (strstr(cipher, "gcm")) {
        assert_int_equal(rc, -1);
        assert_int_equal(err.kind, MFT_E_DECRYPT_FAILED);
    } else if (rc == 0) {
        assert_int_equal(mft_spill_finish(&sp, &out, &out_len, &err), 0);
        assert_true(out_len != n || memcmp(out, data, n) != 0);
    }
    mft_spill_free(&sp);
    free(enc);
    free(data);
}

/* What is parsed whole is bounded: a signature part over 1 MB is refused
 * before OpenSSL sees it. */
static void test_signature_size_cap(void **state)
{
    (void)state;
    size_t n = MFT_SMIME_MAX_SIGNATURE + 1;
    unsigned char *big = calloc(1, n);
    struct mft_smime_verified v;
    struct mft_err err;
    assert_non_null(big);
    mft_err_clear(&err);
    assert_int_equal(
        mft_smime_verify_detached((const unsigned char *)"x", 1, big, n, partner_cert, &v, &err),
        -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    assert_non_null(strstr(err.message, "larger than"));
    free(big);
}

static void test_decrypt_streamed(void **state)
{
    (void)state;
    streamed_case("-aes-256-cbc", 1);
    streamed_case("-aes-128-cbc", 0);
    streamed_case("-aes-256-gcm", 1);
}

static void test_decrypt_refused(void **state)
{
    /* RC2-40 and DES need the legacy provider in the openssl CLI */
    const char *ciphers[] = {"-rc2-40", "-des"};
    char in[300], der[300];
    path(in, sizeof(in), "plain.txt");
    path(der, sizeof(der), "weak.der");
    tk_write(in, "hello\r\n", 7);
    for (size_t i = 0; i < 2; i++) {
        tk_run("openssl", "cms", "-encrypt", "-provider", "legacy", "-provider", "default",
               "-binary", ciphers[i], "-in", in, "-outform", "DER", "-out", der, p_crt, NULL);
        size_t dl;
        unsigned char *enc = tk_read(der, &dl);
        struct mft_keypair kp = {.cert = partner_cert, .key = partner_key};
        struct mft_smime_decrypted d;
        struct mft_err err;
        mft_err_clear(&err);
        assert_int_equal(mft_smime_decrypt(enc, dl, &kp, 1, &d, &err), -1);
        assert_int_equal(err.kind, MFT_E_ALGORITHM_REFUSED);
        assert_non_null(strstr(err.message, i == 0 ? "rc2" : "des-cbc"));
        assert_null(d.data);
        free(enc);
    }
}

static void test_decrypt_not_enveloped(void **state)
{
    char in[300], der[300];
    path(in, sizeof(in), "plain.txt");
    path(der, sizeof(der), "sig.der");
    tk_write(in, "hello\r\n", 7);
    tk_run("openssl", "cms", "-sign", "-binary", "-in", in, "-outform", "DER", "-out", der,
           "-signer", p_crt, "-inkey", p_key, NULL);
    size_t dl;
    unsigned char *sig = tk_read(der, &dl);
    struct mft_keypair kp = {.cert = partner_cert, .key = partner_key};
    struct mft_smime_decrypted d;
    struct mft_err err;
    mft_err_clear(&err);
    assert_int_equal(mft_smime_decrypt(sig, dl, &kp, 1, &d, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    mft_err_clear(&err);
    assert_int_equal(mft_smime_decrypt((const unsigned char *)"garbage", 7, &kp, 1, &d, &err), -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);
    free(sig);
}

/* ---- verify --------------------------------------------------------------- */

/* Extracts part `idx` (0-based) of a multipart body with the given boundary (test-only). */
static void part_of(const unsigned char *body, size_t len, const char *boundary, int idx,
                    size_t *off, size_t *plen)
{
    char delim[200];
    snprintf(delim, sizeof(delim), "--%s", boundary);
    size_t pos = tk_find(body, len, delim, 0);
    assert_true(pos != (size_t)-1);
    for (int i = 0; i <= idx; i++) {
        size_t start = tk_find(body, len, "\n", pos) + 1;
        size_t next = tk_find(body, len, delim, start);
        assert_true(next != (size_t)-1);
        size_t end = next;
        if (end > start && body[end - 1] == '\n')
            end--;
        if (end > start && body[end - 1] == '\r')
            end--;
        *off = start;
        *plen = end - start;
        pos = next;
    }
}

static void test_verify_mecas2(void **state)
{
    size_t len, hl, off, p1, p1l, p2, p2l, sl;
    unsigned char *msg = tk_read(AS2_DIR "/derived/mecas2_signed.wire.as2", &len);
    X509 *mend = tk_cert(AS2_DIR "/pyas2-lib/cert_mecas2_public.pem");
    tk_split(msg, len, &hl, &off);
    const unsigned char *body = msg + off;
    const char *b = "----=_Part_211_306083396.1641304626706";
    part_of(body, len - off, b, 0, &p1, &p1l);
    part_of(body, len - off, b, 1, &p2, &p2l);
    size_t h2, b2;
    tk_split(body + p2, p2l, &h2, &b2);
    unsigned char *sig = tk_unbase64(body + p2 + b2, p2l - b2, &sl);

    struct mft_smime_verified v;
    struct mft_err err;
    mft_err_clear(&err);
    int rc = mft_smime_verify_detached(body + p1, p1l, sig, sl, mend, &v, &err);
    if (rc)
        fprintf(stderr, "%s / %s\n", err.message, err.detail);
    assert_int_equal(rc, 0);
    assert_string_equal(v.digest, "SHA256");
    assert_string_equal(v.sig_alg, "rsaEncryption");
    char mic[128];
    assert_int_equal(mft_smime_digest_b64("SHA256", body + p1, p1l, mic, sizeof(mic), &err), 0);
    assert_string_equal(mic, "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=");

    /* the non-derived copy had its line ends rewritten: it must not verify */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_verify_detached(body + p1, p1l - 1, sig, sl, mend, &v, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
    assert_non_null(strstr(err.detail, MFT_SMIME_DIGEST_MISMATCH));

    /* the right bytes, the wrong certificate */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_verify_detached(body + p1, p1l, sig, sl, partner_cert, &v, &err),
                     -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
    assert_null(strstr(err.detail, MFT_SMIME_DIGEST_MISMATCH));
    assert_non_null(strstr(err.detail, "CN=partner"));

    /* no registered certificate */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_verify_detached(body + p1, p1l, sig, sl, NULL, &v, &err), -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);

    /* garbage signature */
    mft_err_clear(&err);
    assert_int_equal(
        mft_smime_verify_detached(body + p1, p1l, (const unsigned char *)"xx", 2, mend, &v, &err),
        -1);
    assert_int_equal(err.kind, MFT_E_MALFORMED_MESSAGE);

    X509_free(mend);
    free(sig);
    free(msg);
}

static unsigned char *openssl_sign(const char *data_path, const char *crt, const char *key,
                                   const char *md, const char *extra, size_t *sl)
{
    char der[300];
    path(der, sizeof(der), "det.der");
    if (extra && strcmp(extra, "-noattr") == 0)
        tk_run("openssl", "cms", "-sign", "-binary", "-noattr", "-md", md, "-in", data_path,
               "-outform", "DER", "-out", der, "-signer", crt, "-inkey", key, NULL);
    else if (extra)
        tk_run("openssl", "cms", "-sign", "-binary", "-md", md, "-in", data_path, "-outform", "DER",
               "-out", der, "-signer", crt, "-inkey", key, "-keyopt", extra, NULL);
    else
        tk_run("openssl", "cms", "-sign", "-binary", "-md", md, "-in", data_path, "-outform", "DER",
               "-out", der, "-signer", crt, "-inkey", key, NULL);
    return tk_read(der, sl);
}

static void test_verify_openssl_matrix(void **state)
{
    static const struct {
        const char *md, *expect_md;
        int ec;
        const char *extra, *expect_alg;
    } cases[] = {
        {"sha1", "SHA1", 0, NULL, "rsaEncryption"},
        {"sha224", "SHA224", 0, NULL, "rsaEncryption"},
        {"sha256", "SHA256", 0, NULL, "rsaEncryption"},
        {"sha384", "SHA384", 0, NULL, "rsaEncryption"},
        {"sha512", "SHA512", 0, NULL, "rsaEncryption"},
        {"sha256", "SHA256", 0, "rsa_padding_mode:pss", "RSASSA-PSS"},
        {"sha512", "SHA512", 0, "-noattr", "rsaEncryption"},
        {"sha256", "SHA256", 1, NULL, "ecdsa"},
        {"sha384", "SHA384", 1, "-noattr", "ecdsa"},
    };
    char in[300];
    unsigned char data[4096];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)((i * 31) ^ (i >> 3));
    memcpy(data, "Content-Type: text/plain\n\nlf only\n", 34); /* no canonicalisation */
    path(in, sizeof(in), "signed.bin");
    tk_write(in, data, sizeof(data));
    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t sl;
        unsigned char *sig =
            openssl_sign(in, cases[c].ec ? e_crt : p_crt, cases[c].ec ? e_key : p_key, cases[c].md,
                         cases[c].extra, &sl);
        X509 *signer = cases[c].ec ? ec_cert : partner_cert;
        struct mft_smime_verified v;
        struct mft_err err;
        mft_err_clear(&err);
        int rc = mft_smime_verify_detached(data, sizeof(data), sig, sl, signer, &v, &err);
        if (rc)
            fprintf(stderr, "case %zu: %s / %s\n", c, err.message, err.detail);
        assert_int_equal(rc, 0);
        assert_string_equal(v.digest, cases[c].expect_md);
        assert_string_equal(v.sig_alg, cases[c].expect_alg);

        /* one flipped payload byte */
        data[1000] ^= 1;
        mft_err_clear(&err);
        assert_int_equal(mft_smime_verify_detached(data, sizeof(data), sig, sl, signer, &v, &err),
                         -1);
        assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
        if (!cases[c].extra || strcmp(cases[c].extra, "-noattr") != 0)
            assert_non_null(strstr(err.detail, MFT_SMIME_DIGEST_MISMATCH));
        data[1000] ^= 1;

        /* trusting another certificate */
        mft_err_clear(&err);
        assert_int_equal(
            mft_smime_verify_detached(data, sizeof(data), sig, sl, other_cert, &v, &err), -1);
        assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
        free(sig);
    }
}

static void test_verify_other_signer(void **state)
{
    /* signed (and its certificate embedded) by another key than the partner's */
    char in[300];
    path(in, sizeof(in), "o.bin");
    tk_write(in, "payload\r\n", 9);
    size_t sl;
    unsigned char *sig = openssl_sign(in, o_crt, o_key, "sha256", NULL, &sl);
    struct mft_err err;
    mft_err_clear(&err);
    assert_int_equal(mft_smime_verify_detached((const unsigned char *)"payload\r\n", 9, sig, sl,
                                               partner_cert, NULL, &err),
                     -1);
    assert_int_equal(err.kind, MFT_E_SIGNATURE_INVALID);
    assert_non_null(strstr(err.detail, "CN=other"));
    /* and it is fine against its own certificate */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_verify_detached((const unsigned char *)"payload\r\n", 9, sig, sl,
                                               other_cert, NULL, &err),
                     0);
    /* MD5 is refused */
    free(sig);
    sig = openssl_sign(in, o_crt, o_key, "md5", NULL, &sl);
    mft_err_clear(&err);
    assert_int_equal(mft_smime_verify_detached((const unsigned char *)"payload\r\n", 9, sig, sl,
                                               other_cert, NULL, &err),
                     -1);
    assert_int_equal(err.kind, MFT_E_ALGORITHM_REFUSED);
    free(sig);
}

/* ---- sign ------------------------------------------------------------------ */

static void test_sign_detached(void **state)
{
    const unsigned char data[] = "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nreport\r\n";
    struct mft_keypair kp = {.cert = partner_cert, .key = partner_key};
    unsigned char *der = NULL;
    size_t dl = 0;
    struct mft_err err;
    const char *mds[] = {"SHA1", "SHA256", "SHA512", "SHA256"};
    ASN1_OBJECT *protect = OBJ_txt2obj("1.2.840.113549.1.9.52", 1);
    for (size_t i = 0; i < 4; i++) {
        unsigned flags = i == 3 ? 0u : MFT_SMIME_ALG_PROTECT;
        mft_err_clear(&err);
        assert_int_equal(
            mft_smime_sign_detached(data, sizeof(data) - 1, &kp, mds[i], flags, &der, &dl, &err),
            0);
        assert_non_null(der);
        /* RFC 6211 CMSAlgorithmProtection: present exactly when asked for, and
         * naming the SignerInfo's own digest algorithm */
        const unsigned char *pp = der;
        CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &pp, (long)dl);
        assert_non_null(cms);
        CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
        int at = CMS_signed_get_attr_by_OBJ(si, protect, -1);
        if (flags) {
            assert_true(at >= 0);
            ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(CMS_signed_get_attr(si, at), 0);
            assert_non_null(t);
            assert_int_equal(ASN1_TYPE_get(t), V_ASN1_SEQUENCE);
            const unsigned char *q = t->value.sequence->data;
            long qlen = t->value.sequence->length;
            STACK_OF(ASN1_TYPE) *parts = d2i_ASN1_SEQUENCE_ANY(NULL, &q, qlen);
            assert_non_null(parts);
            assert_int_equal(sk_ASN1_TYPE_num(parts), 2);
            sk_ASN1_TYPE_pop_free(parts, ASN1_TYPE_free);
        } else {
            assert_int_equal(at, -1);
        }
        CMS_ContentInfo_free(cms);
        struct mft_smime_verified v;
        assert_int_equal(
            mft_smime_verify_detached(data, sizeof(data) - 1, der, dl, partner_cert, &v, &err), 0);
        assert_string_equal(v.digest, mds[i]);

        /* the independent check: openssl cms -verify over the same bytes */
        char sig[300], content[300], out[300];
        path(sig, sizeof(sig), "ours.der");
        path(content, sizeof(content), "ours.txt");
        path(out, sizeof(out), "ours.out");
        tk_write(sig, der, dl);
        tk_write(content, data, sizeof(data) - 1);
        tk_run("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content",
               content, "-noverify", "-out", out, NULL);
        tk_write(content, "MIME-Version: 1.0\r\n", 19);
        assert_int_not_equal(tk_run_rc("openssl", "cms", "-verify", "-binary", "-inform", "DER",
                                       "-in", sig, "-content", content, "-noverify", "-out", out,
                                       NULL),
                             0);
        free(der);
        der = NULL;
    }
    ASN1_OBJECT_free(protect);
    kp.key = NULL;
    mft_err_clear(&err);
    assert_int_equal(mft_smime_sign_detached(data, 3, &kp, "SHA256", 0, &der, &dl, &err), -1);
    assert_null(der);
}

/* ---- uncompress --------------------------------------------------------------- */

static void test_uncompress_mecas2(void **state)
{
    size_t len, hl, off, p1, p1l, plen;
    unsigned char *msg = tk_read(AS2_DIR "/pyas2-lib/mecas2_compressed.as2", &len);
    unsigned char *payload = tk_read(AS2_DIR "/pyas2-lib/payload.txt", &plen);
    tk_split(msg, len, &hl, &off);
    part_of(msg + off, len - off, "----=_Part_214_58049989.1641304842725", 0, &p1, &p1l);
    size_t h2, b2;
    const unsigned char *part = msg + off + p1;
    tk_split(part, p1l, &h2, &b2);
    unsigned char *out = NULL;
    size_t ol = 0;
    struct mft_err err;
    mft_err_clear(&err);
    int rc = mft_smime_uncompress(part + b2, p1l - b2, 1 << 20, &out, &ol, &err);
    if (rc)
        fprintf(stderr, "%s / %s\n", err.message, err.detail);
    assert_int_equal(rc, 0);
    /* a MIME entity whose body is payload.txt */
    size_t h3, b3;
    tk_split(out, ol, &h3, &b3);
    assert_int_equal(ol - b3, plen);
    assert_memory_equal(out + b3, payload, plen);
    free(out);

    /* too small a limit */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_uncompress(part + b2, p1l - b2, 100, &out, &ol, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
    assert_null(out);
    /* truncated */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_uncompress(part + b2, 300, 1 << 20, &out, &ol, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
    free(msg);
    free(payload);
}

/* ---- CompressedData built by hand (tk_compressed_der / _ber) ------------------------ */

static void test_uncompress_built(void **state)
{
    const char *text =
        "Content-Type: application/edi-x12\r\n\r\nISA*00*hello compressed world~\r\n";
    size_t tl = strlen(text);
    unsigned char z[512];
    uLongf zl = sizeof(z);
    assert_int_equal(compress2(z, &zl, (const Bytef *)text, tl, 9), Z_OK);
    struct tk_buf der = tk_compressed_der(z, zl), ber = tk_compressed_ber(z, zl);
    unsigned char *out = NULL;
    size_t ol;
    struct mft_err err;
    mft_err_clear(&err);
    assert_int_equal(mft_smime_uncompress(der.p, der.len, 1 << 20, &out, &ol, &err), 0);
    assert_int_equal(ol, tl);
    assert_memory_equal(out, text, tl);
    free(out);
    mft_err_clear(&err);
    int rc = mft_smime_uncompress(ber.p, ber.len, 1 << 20, &out, &ol, &err);
    if (rc)
        fprintf(stderr, "%s / %s\n", err.message, err.detail);
    assert_int_equal(rc, 0);
    assert_int_equal(ol, tl);
    assert_memory_equal(out, text, tl);
    free(out);
    free(der.p);
    free(ber.p);

    /* raw deflate (no zlib header) is tolerated */
    z_stream zs = {0};
    unsigned char raw[512];
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)text;
    zs.avail_in = (uInt)tl;
    zs.next_out = raw;
    zs.avail_out = sizeof(raw);
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t rl = sizeof(raw) - zs.avail_out;
    deflateEnd(&zs);
    der = tk_compressed_der(raw, rl);
    mft_err_clear(&err);
    assert_int_equal(mft_smime_uncompress(der.p, der.len, 1 << 20, &out, &ol, &err), 0);
    assert_int_equal(ol, tl);
    assert_memory_equal(out, text, tl);
    free(out);
    free(der.p);

    /* not zlib at all */
    der = tk_compressed_der((const unsigned char *)"\x78\x9c garbage garbage", 18);
    mft_err_clear(&err);
    assert_int_equal(mft_smime_uncompress(der.p, der.len, 1 << 20, &out, &ol, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
    free(der.p);

    /* garbage DER */
    mft_err_clear(&err);
    assert_int_equal(
        mft_smime_uncompress((const unsigned char *)"\x30\x03\x02\x01", 4, 100, &out, &ol, &err),
        -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
}

static void test_uncompress_bomb(void **state)
{
    struct tk_buf z = tk_zeros_zlib((size_t)200 << 20); /* 200 MB of zeros: ~200 KB */
    struct tk_buf der = tk_compressed_der(z.p, z.len);
    unsigned char *out = NULL;
    size_t ol = 0;
    struct mft_err err;
    /* a generous size limit: the ratio limit stops it */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_uncompress(der.p, der.len, (size_t)1 << 30, &out, &ol, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
    assert_non_null(strstr(err.message, "ratio"));
    assert_null(out);
    /* a small size limit */
    mft_err_clear(&err);
    assert_int_equal(mft_smime_uncompress(der.p, der.len, 10 << 20, &out, &ol, &err), -1);
    assert_int_equal(err.kind, MFT_E_DECOMPRESS_FAILED);
    free(der.p);
    free(z.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_digest_names),
        cmocka_unit_test(test_digest_b64),
        cmocka_unit_test(test_decrypt_mecas2),
        cmocka_unit_test(test_decrypt_libas2_oaep),
        cmocka_unit_test(test_decrypt_openssl_ciphers),
        cmocka_unit_test(test_decrypt_streamed),
        cmocka_unit_test(test_signature_size_cap),
        cmocka_unit_test(test_decrypt_refused),
        cmocka_unit_test(test_decrypt_not_enveloped),
        cmocka_unit_test(test_verify_mecas2),
        cmocka_unit_test(test_verify_openssl_matrix),
        cmocka_unit_test(test_verify_other_signer),
        cmocka_unit_test(test_sign_detached),
        cmocka_unit_test(test_uncompress_mecas2),
        cmocka_unit_test(test_uncompress_built),
        cmocka_unit_test(test_uncompress_bomb),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
