/*
 * test_x509 — certificate and key loading against the real interop files in
 * MFT_SHARED_DIR/interop/as2 (PKCS#12 from pyas2, Mendelson, ph-as2-lib with
 * RC2-40; OpenAS2's three-alias keystore; pyas2's encrypted PEM) and against
 * files the openssl CLI makes in a temporary directory (DER, PKCS#1, SEC1,
 * encrypted DER). Certificate facts are compared with what `openssl x509`
 * prints for the same file. What makes a certificate too weak for a security
 * level is checked on an RSA-1024 and a SHA-1 signed certificate.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "mft_secret.h"
#include "mft_x509.h"

#define AS2 MFT_SHARED_DIR "/interop/as2/"

static char tmpdir[64];

/* Runs a shell command and returns its first output line (trimmed) in out. */
static int run(char *out, size_t outlen, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    FILE *p;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    p = popen(cmd, "r");
    if (!p)
        return -1;
    if (out) {
        out[0] = '\0';
        if (fgets(out, (int)outlen, p))
            out[strcspn(out, "\r\n")] = '\0';
        while (fgetc(p) != EOF)
            ;
    }
    return pclose(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_x509.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    /* Independent inputs made by the openssl CLI. */
    const char *cmds[] = {
        "openssl pkey -in " AS2 "node-libas2/libas2community.key -outform DER -out k.der",
        "openssl pkcs8 -topk8 -in " AS2 "node-libas2/libas2community.key -outform DER "
        "-v2 aes-256-cbc -passout pass:s3cret -out kenc.der",
        "openssl rsa -in " AS2 "node-libas2/libas2community.key -traditional -out k1.pem "
        "2>/dev/null",
        "openssl rsa -in " AS2 "node-libas2/libas2community.key -traditional -aes128 "
        "-passout pass:s3cret -out k1enc.pem 2>/dev/null",
        "openssl x509 -in " AS2 "node-libas2/libas2community.cer -outform DER -out c.der",
        "openssl ecparam -genkey -name prime256v1 -noout -out ec.pem",
        "openssl req -utf8 -x509 -new -key ec.pem -subj '/CN=t\xc3\xa9st EC/O=Ex, Inc.' -days 2 "
        "-set_serial 0x00ab01 -out ec.crt",
        "echo 'not a certificate' > junk.txt",
        /* below security level 2: a self-signed RSA-1024 (its SHA-1 self-signature
         * not judged), an EC certificate that ec.crt's key signed with SHA-1 */
        "openssl req -x509 -new -newkey rsa:1024 -nodes -keyout r1024.key -subj /CN=weak -sha1 "
        "-days 2 -out r1024.crt 2>/dev/null",
        "openssl ecparam -genkey -name prime256v1 -noout -out ec2.pem",
        "openssl req -new -key ec2.pem -subj /CN=sha1 -out ec2.csr",
        "openssl x509 -req -sha1 -in ec2.csr -CA ec.crt -CAkey ec.pem -days 2 -set_serial 2 "
        "-out ecsha1.crt 2>/dev/null",
        "openssl pkcs12 -export -inkey " AS2 "node-libas2/libas2community.key -in " AS2
        "node-libas2/libas2community.cer -passout pass: -out empty.p12",
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        if (run(NULL, 0, "cd %s && %s", tmpdir, cmds[i]) != 0) {
            fprintf(stderr, "setup failed: %s\n", cmds[i]);
            return -1;
        }
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    run(NULL, 0, "rm -rf %s", tmpdir);
    return 0;
}

static char *tmp(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
    return buf[k];
}

/* openssl's colon-separated uppercase SHA-256 → our lowercase hex */
static void openssl_fingerprint(const char *path, const char *inform, char out[65])
{
    char line[256];
    size_t o = 0;
    assert_int_equal(run(line, sizeof(line),
                         "openssl x509 -inform %s -in %s -noout -fingerprint -sha256", inform,
                         path),
                     0);
    const char *p = strchr(line, '=');
    assert_non_null(p);
    for (p++; *p && o < 64; p++)
        if (*p != ':')
            out[o++] = (char)tolower((unsigned char)*p);
    out[o] = '\0';
    assert_int_equal(o, 64);
}

static void assert_pkcs12(const char *path, const char *pw, const char *subject_part)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    STACK_OF(X509) *chain = NULL;
    struct mft_err err;
    char subj[512];

    mft_err_clear(&err);
    if (mft_x509_load_pkcs12(path, pw, &key, &cert, &chain, &err) != 0)
        fail_msg("%s: %s | %s", path, err.message, err.detail);
    assert_non_null(key);
    assert_non_null(cert);
    assert_non_null(chain);
    assert_true(mft_x509_key_matches_cert(cert, key));
    assert_int_equal(mft_x509_subject(cert, subj, sizeof(subj)), 0);
    if (!strstr(subj, subject_part))
        fail_msg("%s: subject %s lacks %s", path, subj, subject_part);
    /* the key alone through the generic loader, too */
    EVP_PKEY *k2 = NULL;
    assert_int_equal(mft_x509_load_key(path, pw, &k2, &err), 0);
    assert_true(mft_x509_key_matches_cert(cert, k2));
    EVP_PKEY_free(k2);
    EVP_PKEY_free(key);
    X509_free(cert);
    sk_X509_pop_free(chain, X509_free);
}

static void test_pkcs12_legacy_rc2(void **state)
{
    (void)state;
    /* RC2-40 encrypted certificate bags: need the legacy provider */
    assert_pkcs12(AS2 "pyas2-lib/cert_test.p12", "test", "CN=pyas2lib");
    assert_pkcs12(AS2 "as2-lib/mendelson/key3.pfx", "test", "CN=mendelson test key 3");
    assert_pkcs12(AS2 "as2-lib/localhost/certs.p12", "test", "CN=OpenAS2A");
    /* modern AES-256 / PBKDF2 */
    assert_pkcs12(AS2 "OpenAs2App/as2_certs.p12", "testas2", "O=MyCompany");
    /* the p12 key is the same key as the pyas2 PEM certificate */
    X509 *pem = NULL;
    EVP_PKEY *key = NULL;
    struct mft_err err;
    assert_int_equal(mft_x509_load_cert(AS2 "pyas2-lib/cert_test_public.pem", &pem, &err), 0);
    assert_int_equal(mft_x509_load_key(AS2 "pyas2-lib/cert_test.p12", "test", &key, &err), 0);
    assert_true(mft_x509_key_matches_cert(pem, key));
    X509_free(pem);
    EVP_PKEY_free(key);
}

static void test_pkcs12_aliases(void **state)
{
    unsigned char *buf = NULL;
    size_t len = 0, n = 0;
    char **aliases = NULL;
    struct mft_err err;
    (void)state;
    assert_int_equal(mft_x509_read_file(AS2 "OpenAs2App/as2_certs.p12", &buf, &len, &err), 0);
    assert_int_equal(mft_x509_is_pkcs12(buf, len), 1);
    assert_int_equal(mft_x509_pkcs12_aliases(buf, len, "testas2", &aliases, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(aliases[0], "mycompany");
    assert_string_equal(aliases[1], "partnera");
    assert_string_equal(aliases[2], "partnerb");
    mft_x509_free_list(aliases, n);

    const char *want[][2] = {
        {"mycompany", "O=MyCompany"}, {"partnera", "O=PartnerA"}, {"partnerb", "O=PartnerB"}};
    for (size_t i = 0; i < 3; i++) {
        EVP_PKEY *key = NULL;
        X509 *cert = NULL;
        STACK_OF(X509) *chain = NULL;
        char subj[512];
        assert_int_equal(
            mft_x509_load_pkcs12_mem(buf, len, "testas2", want[i][0], &key, &cert, &chain, &err),
            0);
        assert_true(mft_x509_key_matches_cert(cert, key));
        mft_x509_subject(cert, subj, sizeof(subj));
        assert_non_null(strstr(subj, want[i][1]));
        assert_int_equal(sk_X509_num(chain), 2); /* the other two certificates */
        EVP_PKEY_free(key);
        X509_free(cert);
        sk_X509_pop_free(chain, X509_free);
    }
    EVP_PKEY *key = NULL;
    assert_int_equal(
        mft_x509_load_pkcs12_mem(buf, len, "testas2", "nobody", &key, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.message, "nobody"));
    assert_null(key);
    /* RC2 file aliases */
    free(buf);
    assert_int_equal(mft_x509_read_file(AS2 "as2-lib/localhost/certs.p12", &buf, &len, &err), 0);
    assert_int_equal(mft_x509_pkcs12_aliases(buf, len, "test", &aliases, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(aliases[0], "openas2a_alias");
    assert_string_equal(aliases[1], "openas2b_alias");
    mft_x509_free_list(aliases, n);
    free(buf);
}

static void test_pkcs12_wrong_password(void **state)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    struct mft_err err;
    (void)state;
    assert_int_equal(
        mft_x509_load_pkcs12(AS2 "pyas2-lib/cert_test.p12", "nope", &key, &cert, NULL, &err), -1);
    assert_null(key);
    assert_null(cert);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_non_null(strstr(err.message, "wrong PKCS#12 password"));
    assert_non_null(strstr(err.message, "cert_test.p12"));
    assert_int_equal(
        mft_x509_load_pkcs12(AS2 "OpenAs2App/as2_certs.p12", NULL, &key, &cert, NULL, &err), -1);
    assert_non_null(strstr(err.message, "password required"));
    /* empty password p12 made by openssl: NULL and "" both open it */
    assert_int_equal(mft_x509_load_pkcs12(tmp("empty.p12"), NULL, &key, &cert, NULL, &err), 0);
    assert_true(mft_x509_key_matches_cert(cert, key));
    EVP_PKEY_free(key);
    X509_free(cert);
    assert_int_equal(mft_x509_load_pkcs12(tmp("empty.p12"), "", &key, NULL, NULL, &err), 0);
    EVP_PKEY_free(key);
}

static void test_pem_encrypted_key_and_cert(void **state)
{
    const char *files[] = {AS2 "pyas2-old/as2client.pem", AS2 "pyas2-old/as2server.pem"};
    struct mft_err err;
    (void)state;
    for (size_t i = 0; i < 2; i++) {
        EVP_PKEY *key = NULL;
        STACK_OF(X509) *certs = NULL;
        /* the file holds ENCRYPTED PRIVATE KEY then CERTIFICATE */
        assert_int_equal(mft_x509_load_key(files[i], "password", &key, &err), 0);
        assert_int_equal(mft_x509_load_certs(files[i], &certs, &err), 0);
        assert_int_equal(sk_X509_num(certs), 1);
        assert_true(mft_x509_key_matches_cert(sk_X509_value(certs, 0), key));
        EVP_PKEY_free(key);
        sk_X509_pop_free(certs, X509_free);

        assert_int_equal(mft_x509_load_key(files[i], "wrong", &key, &err), -1);
        assert_null(key);
        assert_non_null(strstr(err.message, "wrong password"));
        assert_int_equal(mft_x509_load_key(files[i], NULL, &key, &err), -1);
        assert_non_null(strstr(err.message, "password required"));
    }
    /* as2client's key does not match as2server's certificate */
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(mft_x509_load_key(files[0], "password", &key, &err), 0);
    assert_int_equal(mft_x509_load_cert(AS2 "pyas2-old/as2server.crt", &cert, &err), 0);
    assert_false(mft_x509_key_matches_cert(cert, key));
    assert_false(mft_x509_key_matches_cert(NULL, key));
    assert_false(mft_x509_key_matches_cert(cert, NULL));
    EVP_PKEY_free(key);
    X509_free(cert);
}

static void test_der_and_other_key_forms(void **state)
{
    struct mft_err err;
    X509 *cert = NULL, *der = NULL;
    char fp1[65], fp2[65], fpo[65], desc[32];
    (void)state;
    assert_int_equal(mft_x509_load_cert(AS2 "node-libas2/libas2community.cer", &cert, &err), 0);
    assert_int_equal(mft_x509_load_cert(tmp("c.der"), &der, &err), 0);
    assert_int_equal(mft_x509_fingerprint_sha256(cert, fp1), 0);
    assert_int_equal(mft_x509_fingerprint_sha256(der, fp2), 0);
    assert_string_equal(fp1, fp2);
    openssl_fingerprint(tmp("c.der"), "DER", fpo);
    assert_string_equal(fp1, fpo);

    const char *keys[][2] = {{AS2 "node-libas2/libas2community.key", NULL},
                             {"k.der", NULL},
                             {"kenc.der", "s3cret"},
                             {"k1.pem", NULL},
                             {"k1enc.pem", "s3cret"}};
    for (size_t i = 0; i < 5; i++) {
        EVP_PKEY *key = NULL;
        const char *path = keys[i][0][0] == '/' ? keys[i][0] : tmp(keys[i][0]);
        if (mft_x509_load_key(path, keys[i][1], &key, &err) != 0)
            fail_msg("%s: %s | %s", path, err.message, err.detail);
        assert_true(mft_x509_key_matches_cert(cert, key));
        assert_int_equal(mft_x509_key_desc(key, desc, sizeof(desc)), 0);
        assert_string_equal(desc, "RSA-2048");
        EVP_PKEY_free(key);
    }
    /* encrypted DER: wrong and missing password */
    EVP_PKEY *key = NULL;
    assert_int_equal(mft_x509_load_key(tmp("kenc.der"), "bad", &key, &err), -1);
    assert_non_null(strstr(err.message, "wrong password"));
    assert_int_equal(mft_x509_load_key(tmp("kenc.der"), NULL, &key, &err), -1);
    assert_non_null(strstr(err.message, "password required"));
    assert_int_equal(mft_x509_load_key(tmp("k1enc.pem"), "bad", &key, &err), -1);
    assert_non_null(strstr(err.message, "wrong password"));

    /* pyas2's DER .cer */
    X509 *c2 = NULL;
    assert_int_equal(mft_x509_load_cert(AS2 "pyas2-lib/cert_extract_public.cer", &c2, &err), 0);
    openssl_fingerprint(AS2 "pyas2-lib/cert_extract_public.cer", "DER", fpo);
    assert_int_equal(mft_x509_fingerprint_sha256(c2, fp1), 0);
    assert_string_equal(fp1, fpo);
    X509_free(c2);
    X509_free(cert);
    X509_free(der);
}

static void test_ec_and_facts(void **state)
{
    struct mft_err err;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    char buf[512], want[512], desc[32];
    (void)state;
    assert_int_equal(mft_x509_load_cert(tmp("ec.crt"), &cert, &err), 0);
    assert_int_equal(mft_x509_load_key(tmp("ec.pem"), NULL, &key, &err), 0);
    assert_true(mft_x509_key_matches_cert(cert, key));
    assert_int_equal(mft_x509_key_desc(key, desc, sizeof(desc)), 0);
    assert_string_equal(desc, "EC-P-256");
    assert_int_equal(mft_x509_subject(cert, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "O=Ex\\, Inc.,CN=t\xc3\xa9st EC");
    assert_int_equal(mft_x509_serial_hex(cert, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "ab01");

    /* against openssl x509 for a real partner certificate */
    const char *pem = AS2 "pyas2-lib/cert_test_public.pem";
    X509 *c = NULL;
    assert_int_equal(mft_x509_load_cert(pem, &c, &err), 0);
    assert_int_equal(
        run(want, sizeof(want), "openssl x509 -in %s -noout -subject -nameopt RFC2253", pem), 0);
    mft_x509_subject(c, buf, sizeof(buf));
    assert_string_equal(buf, want + strlen("subject="));
    assert_int_equal(
        run(want, sizeof(want), "openssl x509 -in %s -noout -issuer -nameopt RFC2253", pem), 0);
    mft_x509_issuer(c, buf, sizeof(buf));
    assert_string_equal(buf, want + strlen("issuer="));
    mft_x509_serial_hex(c, buf, sizeof(buf));
    assert_string_equal(buf, "d009b23e5ffe6697");
    assert_int_equal(mft_x509_not_before(c, buf), 0);
    assert_string_equal(buf, "2022-01-03T16:07:27Z");
    assert_int_equal(mft_x509_not_after(c, buf), 0);
    assert_string_equal(buf, "2032-01-01T16:07:27Z");
    time_t nb, na;
    assert_int_equal(mft_x509_validity(c, &nb, &na), 0);
    assert_int_equal((long long)nb, 1641226047LL);
    assert_int_equal((long long)na, 1956586047LL);
    char fp[65], fpo[65];
    mft_x509_fingerprint_sha256(c, fp);
    openssl_fingerprint(pem, "PEM", fpo);
    assert_string_equal(fp, fpo);
    assert_string_equal(fp, "0bc22c317a28a67bc6a59434a0a9556b3c0bfaea3b79a5b7437af1372dac2cc4");

    /* PEM round trips: key as unencrypted PKCS#8, certificate + chain */
    char *kp = NULL, *cp = NULL;
    EVP_PKEY *k2 = NULL;
    STACK_OF(X509) *certs = NULL;
    assert_int_equal(mft_x509_key_to_pem(key, &kp, &err), 0);
    assert_memory_equal(kp, "-----BEGIN PRIVATE KEY-----\n", 28);
    assert_int_equal(mft_x509_load_key_mem(kp, strlen(kp), NULL, &k2, &err), 0);
    assert_true(mft_x509_key_matches_cert(cert, k2));
    mft_secret_free_str(kp);
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509_up_ref(c);
    sk_X509_push(chain, c);
    assert_int_equal(mft_x509_certs_to_pem(cert, chain, &cp, &err), 0);
    assert_int_equal(mft_x509_load_certs_mem(cp, strlen(cp), &certs, &err), 0);
    assert_int_equal(sk_X509_num(certs), 2);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), cert), 0);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 1), c), 0);
    free(cp);
    sk_X509_pop_free(certs, X509_free);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(k2);
    EVP_PKEY_free(key);
    X509_free(cert);
    X509_free(c);
}

/* What a security level refuses, in words: the key's size, and the
 * signature's digest unless the certificate is self-signed (as OpenSSL). */
static void test_weakness(void **state)
{
    static const struct {
        const char *file;
        int level;
        const char *words; /* NULL: not too weak */
    } cases[] = {
        {"ec.crt", 2, NULL},
        {"r1024.crt", 2,
         "uses a 1024-bit RSA key (80 bits of security), below the minimum of security level 2 "
         "(112 bits)"},
        {"r1024.crt", 1, NULL},
        {"r1024.crt", 0, NULL},
        {"ecsha1.crt", 2,
         "is signed with SHA1 (ecdsa-with-SHA1, 63 bits of security), below the minimum of "
         "security level 2 (112 bits)"},
    };
    struct mft_err err;
    char buf[320];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        X509 *c = NULL;
        assert_int_equal(mft_x509_load_cert(tmp(cases[i].file), &c, &err), 0);
        assert_int_equal(mft_x509_weakness(c, cases[i].level, buf, sizeof(buf)),
                         cases[i].words != NULL);
        assert_string_equal(buf, cases[i].words ? cases[i].words : "");
        X509_free(c);
    }
    assert_int_equal(mft_x509_weakness(NULL, 2, buf, sizeof(buf)), 0);
    assert_int_equal(mft_x509_level_bits(0), 0);
    assert_int_equal(mft_x509_level_bits(MFT_X509_SECURITY_LEVEL), 112);
    assert_int_equal(mft_x509_level_bits(9), 256);
}

static void test_bad_inputs(void **state)
{
    struct mft_err err;
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *certs = NULL;
    (void)state;
    assert_int_equal(mft_x509_load_cert("/nonexistent/x.pem", &cert, &err), -1);
    assert_string_equal(err.message, "file not found: /nonexistent/x.pem");
    assert_int_equal(mft_x509_load_certs(tmp("junk.txt"), &certs, &err), -1);
    assert_null(certs);
    assert_non_null(strstr(err.message, "no certificate in"));
    /* a key file is not a certificate, a certificate is not a key */
    assert_int_equal(mft_x509_load_certs(AS2 "node-libas2/libas2community.key", &certs, &err), -1);
    assert_int_equal(mft_x509_load_key(AS2 "node-libas2/libas2community.cer", NULL, &key, &err),
                     -1);
    assert_non_null(strstr(err.message, "no private key"));
    assert_int_equal(mft_x509_load_key(tmp("c.der"), NULL, &key, &err), -1);
    assert_null(key);
    assert_int_equal(mft_x509_load_pkcs12(tmp("c.der"), "x", &key, NULL, NULL, &err), -1);
    assert_non_null(strstr(err.message, "not a PKCS#12"));
    assert_int_equal(mft_x509_read_file("/tmp", (unsigned char **)&cert, (size_t[]){0}, &err), -1);
    assert_non_null(strstr(err.message, "not a regular file"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pkcs12_legacy_rc2),
        cmocka_unit_test(test_pkcs12_aliases),
        cmocka_unit_test(test_pkcs12_wrong_password),
        cmocka_unit_test(test_pem_encrypted_key_and_cert),
        cmocka_unit_test(test_der_and_other_key_forms),
        cmocka_unit_test(test_ec_and_facts),
        cmocka_unit_test(test_weakness),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
