/*
 * mft_testkeys — helpers shared by the S/MIME and AS2 unit tests (header-only,
 * static functions): read files, load certificates and keys (PEM, PKCS#12
 * with the legacy provider), make a certificate in code, run the openssl CLI
 * without a shell, split a stored HTTP request into headers and body, and
 * read a header value.
 * Test code only: failures abort the test through cmocka's assertions.
 */
#ifndef MFT_TESTKEYS_H
#define MFT_TESTKEYS_H

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <zlib.h>

#include <ctype.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define TK_FN static __attribute__((unused))
#define AS2_DIR MFT_SHARED_DIR "/interop/as2"

/* Reads a whole file (NUL-terminated, malloc'd); aborts the test on failure. */
TK_FN unsigned char *tk_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t cap = 0, n = 0;
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        fail();
    }
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = (n + 65536 + 1) * 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

TK_FN void tk_write(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A certificate for key: the serial, subject CN=cn, issued by issuer with
 * issuer_key (self-signed when issuer is NULL), valid from not_before to
 * not_after seconds from now, with one extension nid = value (openssl
 * configuration syntax; none when nid is 0), signed with SHA-256. For what
 * the openssl CLI of Debian 12 cannot make, such as a validity in seconds. */
TK_FN X509 *tk_make_cert(EVP_PKEY *key, long serial, const char *cn, X509 *issuer,
                         EVP_PKEY *issuer_key, long not_before, long not_after, int nid,
                         const char *value)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), not_before);
    X509_gmtime_adj(X509_getm_notAfter(x), not_after);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(issuer ? issuer : x));
    X509_set_pubkey(x, key);
    if (nid) {
        X509V3_CTX ctx;
        X509V3_set_ctx(&ctx, issuer ? issuer : x, x, NULL, NULL, 0);
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, issuer ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

TK_FN X509 *tk_cert(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    if (!x) { /* DER */
        rewind(f);
        x = d2i_X509_fp(f, NULL);
    }
    fclose(f);
    assert_non_null(x);
    return x;
}

TK_FN EVP_PKEY *tk_key(const char *path, const char *pass)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, (void *)pass);
    fclose(f);
    assert_non_null(k);
    return k;
}

/* Loads the providers the old RC2-40 PKCS#12 files need (once); tk_unload() at the end. */
static OSSL_PROVIDER *tk_legacy_, *tk_default_;

TK_FN void tk_providers(void)
{
    if (tk_legacy_)
        return;
    tk_legacy_ = OSSL_PROVIDER_load(NULL, "legacy");
    tk_default_ = OSSL_PROVIDER_load(NULL, "default");
    assert_non_null(tk_legacy_);
    assert_non_null(tk_default_);
}

TK_FN void tk_unload(void)
{
    if (tk_legacy_)
        OSSL_PROVIDER_unload(tk_legacy_);
    if (tk_default_)
        OSSL_PROVIDER_unload(tk_default_);
    tk_legacy_ = tk_default_ = NULL;
}

TK_FN void tk_p12(const char *path, const char *pass, X509 **cert, EVP_PKEY **key)
{
    tk_providers();
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    PKCS12 *p12 = d2i_PKCS12_fp(f, NULL);
    fclose(f);
    assert_non_null(p12);
    *cert = NULL;
    *key = NULL;
    if (!PKCS12_parse(p12, pass, key, cert, NULL)) {
        ERR_print_errors_fp(stderr);
        fail();
    }
    PKCS12_free(p12);
    assert_non_null(*cert);
    assert_non_null(*key);
}

/*
 * Runs argv[0] (searched in PATH) with stdout to out_path (NULL = inherited)
 * and stdin from in_path (NULL = inherited), stderr to /dev/null when quiet.
 * Returns the exit status.
 */
TK_FN int tk_run_io(const char *in_path, const char *out_path, int quiet, char *const argv[])
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (in_path) {
            int fd = open(in_path, O_RDONLY);
            if (fd < 0 || dup2(fd, 0) < 0)
                _exit(126);
            close(fd);
        }
        if (out_path) {
            int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0 || dup2(fd, 1) < 0)
                _exit(126);
            close(fd);
        }
        if (quiet) {
            int fd = open("/dev/null", O_WRONLY);
            if (fd < 0 || dup2(fd, 2) < 0)
                _exit(126);
            close(fd);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    int st = 0;
    assert_true(waitpid(pid, &st, 0) == pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* tk_run("openssl", "cms", ..., NULL): must succeed (exit 0). */
TK_FN void tk_run(const char *arg0, ...)
{
    char *argv[64];
    int n = 0;
    va_list ap;
    argv[n++] = (char *)arg0;
    va_start(ap, arg0);
    while (n < 63 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    int rc = tk_run_io(NULL, NULL, 0, argv);
    if (rc != 0) {
        fprintf(stderr, "command failed (%d):", rc);
        for (int i = 0; i < n; i++)
            fprintf(stderr, " %s", argv[i]);
        fprintf(stderr, "\n");
    }
    assert_int_equal(rc, 0);
}

/* Same, quiet (stdout and stderr to /dev/null), returning the exit status. */
TK_FN int tk_run_rc(const char *arg0, ...)
{
    char *argv[64];
    int n = 0;
    va_list ap;
    argv[n++] = (char *)arg0;
    va_start(ap, arg0);
    while (n < 63 && (argv[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    argv[n] = NULL;
    return tk_run_io(NULL, "/dev/null", 1, argv);
}

/* Creates a fresh temporary directory; path written into dir (>= 64 bytes). */
TK_FN void tk_tmpdir(char *dir, size_t len)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, len, "%s/mfttest.XXXXXX", t && *t ? t : "/tmp");
    assert_non_null(mkdtemp(dir));
}

TK_FN void tk_rmdir(const char *dir)
{
    tk_run("rm", "-rf", dir, NULL);
}

/*
 * Splits a stored HTTP request / MIME entity at its first empty line (a line
 * that is empty or holds only CR). *hdr_len = length of the header block
 * (without the blank line), *body_off = offset of the body.
 */
TK_FN void tk_split(const unsigned char *buf, size_t len, size_t *hdr_len, size_t *body_off)
{
    size_t line = 0;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        size_t l = i - line;
        if (l == 0 || (l == 1 && buf[line] == '\r')) {
            *hdr_len = line;
            *body_off = i + 1;
            return;
        }
        line = i + 1;
    }
    fail_msg("no blank line in the stored request");
}

/* Copies the unfolded value of header `name` from a header block; returns 0 or -1. */
TK_FN int tk_header(const unsigned char *hdr, size_t hdr_len, const char *name, char *out,
                    size_t outlen)
{
    size_t nl = strlen(name), i = 0;
    while (i < hdr_len) {
        size_t e = i;
        while (e < hdr_len && hdr[e] != '\n')
            e++;
        if (e - i > nl && hdr[i + nl] == ':' && strncasecmp((const char *)hdr + i, name, nl) == 0) {
            size_t o = 0, p = i + nl + 1;
            for (;;) {
                for (; p < e; p++) {
                    if (hdr[p] == '\r')
                        continue;
                    if (o == 0 && (hdr[p] == ' ' || hdr[p] == '\t'))
                        continue;
                    if (o + 1 < outlen)
                        out[o++] = (char)hdr[p];
                }
                /* folded continuation? */
                if (e + 1 < hdr_len && (hdr[e + 1] == ' ' || hdr[e + 1] == '\t')) {
                    p = e + 1;
                    e = p;
                    while (e < hdr_len && hdr[e] != '\n')
                        e++;
                    continue;
                }
                break;
            }
            while (o > 0 && (out[o - 1] == ' ' || out[o - 1] == '\t'))
                o--;
            out[o] = '\0';
            return 0;
        }
        i = e + 1;
    }
    return -1;
}

/* Finds needle in haystack; returns the offset or (size_t)-1. */
TK_FN size_t tk_find(const unsigned char *h, size_t hl, const char *needle, size_t from)
{
    size_t nl = strlen(needle);
    for (size_t i = from; nl <= hl && i + nl <= hl; i++)
        if (memcmp(h + i, needle, nl) == 0)
            return i;
    return (size_t)-1;
}

/* Base64-decodes (ignoring whitespace) with OpenSSL; malloc'd result. */
TK_FN unsigned char *tk_unbase64(const unsigned char *in, size_t len, size_t *out_len)
{
    unsigned char *clean = malloc(len + 1), *out = malloc(len + 1);
    size_t n = 0;
    assert_non_null(clean);
    assert_non_null(out);
    for (size_t i = 0; i < len; i++)
        if (!isspace(in[i]))
            clean[n++] = in[i];
    int r = EVP_DecodeBlock(out, clean, (int)n);
    assert_true(r >= 0);
    size_t pad = 0;
    if (n >= 1 && clean[n - 1] == '=')
        pad++;
    if (n >= 2 && clean[n - 2] == '=')
        pad++;
    *out_len = (size_t)r - pad;
    free(clean);
    return out;
}

/* ---- CompressedData (RFC 3274) built by hand ---- */

struct tk_buf {
    unsigned char *p;
    size_t len, cap;
};

TK_FN void tk_put(struct tk_buf *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

TK_FN void tk_put_hdr(struct tk_buf *b, unsigned char tag, size_t n)
{
    unsigned char h[6] = {tag};
    if (n < 0x80) {
        h[1] = (unsigned char)n;
        tk_put(b, h, 2);
    } else {
        h[1] = 0x84;
        h[2] = (unsigned char)(n >> 24);
        h[3] = (unsigned char)(n >> 16);
        h[4] = (unsigned char)(n >> 8);
        h[5] = (unsigned char)n;
        tk_put(b, h, 6);
    }
}

static const unsigned char TK_OID_COMPRESSED[] = {0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                                  0x0d, 0x01, 0x09, 0x10, 0x01, 0x09};
static const unsigned char TK_ALG_ZLIB[] = {0x30, 0x0d, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86,
                                            0xf7, 0x0d, 0x01, 0x09, 0x10, 0x03, 0x08};
static const unsigned char TK_OID_DATA[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                            0xf7, 0x0d, 0x01, 0x07, 0x01};

/* DER CompressedData around z (definite lengths). */
TK_FN struct tk_buf tk_compressed_der(const unsigned char *z, size_t zl)
{
    struct tk_buf b = {0};
    size_t os = (zl < 0x80 ? 2 : 6) + zl;
    size_t ex = (os < 0x80 ? 2 : 6) + os;
    size_t eci = sizeof(TK_OID_DATA) + ex;
    size_t ecis = (eci < 0x80 ? 2 : 6) + eci;
    size_t cd = 3 + sizeof(TK_ALG_ZLIB) + ecis;
    size_t cds = (cd < 0x80 ? 2 : 6) + cd;
    size_t ci = sizeof(TK_OID_COMPRESSED) + (cds < 0x80 ? 2 : 6) + cds;
    tk_put_hdr(&b, 0x30, ci);
    tk_put(&b, TK_OID_COMPRESSED, sizeof(TK_OID_COMPRESSED));
    tk_put_hdr(&b, 0xa0, cds);
    tk_put_hdr(&b, 0x30, cd);
    tk_put(&b, "\x02\x01\x00", 3);
    tk_put(&b, TK_ALG_ZLIB, sizeof(TK_ALG_ZLIB));
    tk_put_hdr(&b, 0x30, eci);
    tk_put(&b, TK_OID_DATA, sizeof(TK_OID_DATA));
    tk_put_hdr(&b, 0xa0, os);
    tk_put_hdr(&b, 0x04, zl);
    tk_put(&b, z, zl);
    return b;
}

/* BER CompressedData: indefinite lengths, constructed OCTET STRING in 7-byte chunks. */
TK_FN struct tk_buf tk_compressed_ber(const unsigned char *z, size_t zl)
{
    struct tk_buf b = {0};
    tk_put(&b, "\x30\x80", 2);
    tk_put(&b, TK_OID_COMPRESSED, sizeof(TK_OID_COMPRESSED));
    tk_put(&b, "\xa0\x80\x30\x80\x02\x01\x00", 7);
    tk_put(&b, TK_ALG_ZLIB, sizeof(TK_ALG_ZLIB));
    tk_put(&b, "\x30\x80", 2);
    tk_put(&b, TK_OID_DATA, sizeof(TK_OID_DATA));
    tk_put(&b, "\xa0\x80\x24\x80", 4);
    for (size_t i = 0; i < zl; i += 7) {
        size_t n = zl - i < 7 ? zl - i : 7;
        tk_put_hdr(&b, 0x04, n);
        tk_put(&b, z + i, n);
    }
    tk_put(&b, "\0\0\0\0\0\0\0\0\0\0\0\0", 12); /* six EOCs */
    return b;
}

/* zlib stream of n zero bytes, built in 1 MB steps. */
TK_FN struct tk_buf tk_zeros_zlib(size_t n)
{
    static unsigned char zero[1 << 20];
    struct tk_buf b = {0};
    z_stream zs = {0};
    unsigned char out[1 << 16];
    assert_int_equal(deflateInit(&zs, 9), Z_OK);
    size_t left = n;
    int flush;
    do {
        size_t chunk = left < sizeof(zero) ? left : sizeof(zero);
        left -= chunk;
        flush = left ? Z_NO_FLUSH : Z_FINISH;
        zs.next_in = zero;
        zs.avail_in = (uInt)chunk;
        do {
            zs.next_out = out;
            zs.avail_out = sizeof(out);
            deflate(&zs, flush);
            tk_put(&b, out, sizeof(out) - zs.avail_out);
        } while (zs.avail_out == 0);
    } while (flush != Z_FINISH);
    deflateEnd(&zs);
    return b;
}

#endif
