/*
 * test_tlssrv — the parts of the mutual-TLS module that need no network.
 * Certificates are made at test time with the openssl CLI: two CAs, an
 * intermediate, client certificates with and without the clientAuth EKU, a
 * self-signed client certificate. Checks mft_tlssrv_cert_is_partners for an
 * exact registration, a CA registration (direct, through an intermediate, with
 * an intermediate registered as the CA), another CA's certificate and a
 * certificate without clientAuth; mft_x509_facts (the facts events and
 * refusals carry, formerly mft_cert_facts_of) against
 * `openssl x509 -noout -subject -issuer -serial -fingerprint -sha256 -dates`;
 * mft_tlssrv_update with a hand-built registry, mft_tlssrv_ready, and that a
 * failed update keeps the previous snapshot (also for a station whose key is
 * not its certificate's). Then real handshakes in-process: a GnuTLS server
 * session set up as libmicrohttpd does (socket transport, certificate
 * callback, mft_tlssrv_conn_begin) against an OpenSSL client on a thread,
 * over a socketpair; each failure's kind, message and facts, and the alert
 * the OpenSSL client read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mft_testkeys.h"
#include "mft_tlssrv.h"
#include "mft_x509.h"

static char dir[128];

/* A new P-256 key: <name>.key (PKCS#8 PEM). */
static void make_key(const char *name)
{
    char key[256];
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    assert_int_equal(tk_run_rc("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                               "ec_paramgen_curve:P-256", "-out", key, NULL),
                     0);
}

/* A self-signed certificate <name>.pem with the extensions in ext (lines). */
static void make_self_signed(const char *name, const char *subj, const char *ext)
{
    char key[256], pem[256], extf[256];
    make_key(name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    snprintf(pem, sizeof(pem), "%s/%s.pem", dir, name);
    snprintf(extf, sizeof(extf), "%s/%s.ext", dir, name);
    tk_write(extf, ext, strlen(ext));
    char csr[256];
    snprintf(csr, sizeof(csr), "%s/%s.csr", dir, name);
    assert_int_equal(
        tk_run_rc("openssl", "req", "-new", "-utf8", "-key", key, "-subj", subj, "-out", csr, NULL),
        0);
    assert_int_equal(tk_run_rc("openssl", "x509", "-req", "-in", csr, "-key", key, "-days", "30",
                               "-set_serial", "1", "-extfile", extf, "-out", pem, NULL),
                     0);
}

/* <name>.pem issued by <ca> with the extensions in ext, the given serial and
 * signature digest ("-sha256"). */
static void make_issued_md(const char *name, const char *ca, const char *subj, const char *serial,
                           const char *ext, const char *md)
{
    char key[256], pem[256], extf[256], csr[256], cakey[256], capem[256];
    make_key(name);
    snprintf(key, sizeof(key), "%s/%s.key", dir, name);
    snprintf(pem, sizeof(pem), "%s/%s.pem", dir, name);
    snprintf(extf, sizeof(extf), "%s/%s.ext", dir, name);
    snprintf(csr, sizeof(csr), "%s/%s.csr", dir, name);
    snprintf(cakey, sizeof(cakey), "%s/%s.key", dir, ca);
    snprintf(capem, sizeof(capem), "%s/%s.pem", dir, ca);
    tk_write(extf, ext, strlen(ext));
    assert_int_equal(
        tk_run_rc("openssl", "req", "-new", "-utf8", "-key", key, "-subj", subj, "-out", csr, NULL),
        0);
    assert_int_equal(tk_run_rc("openssl", "x509", "-req", "-in", csr, "-CA", capem, "-CAkey", cakey,
                               "-days", "30", "-set_serial", serial, "-extfile", extf, md, "-out",
                               pem, NULL),
                     0);
}

static void make_issued(const char *name, const char *ca, const char *subj, const char *serial,
                        const char *ext)
{
    make_issued_md(name, ca, subj, serial, ext, "-sha256");
}

#define EXT_CA "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
#define EXT_CLIENT "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
#define EXT_SERVER "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
#define EXT_NONE "basicConstraints=CA:FALSE\n"

static int setup(void **state)
{
    (void)state;
    tk_tmpdir(dir, sizeof(dir));
    make_self_signed("caA", "/O=Partner A/CN=Partner A Root", EXT_CA);
    make_self_signed("caB", "/O=Other/CN=Other Root", EXT_CA);
    make_issued("interA", "caA", "/O=Partner A/CN=Partner A Issuing", "0x10", EXT_CA);
    make_issued("leafA", "caA", "/C=DE/O=Partner A, Inc./CN=as2.partner-a.example", "0x0A1B2C",
                EXT_CLIENT);
    make_issued("leafA_server", "caA", "/CN=server only", "7", EXT_SERVER);
    make_issued("leafA_noeku", "caA", "/CN=no eku", "8", EXT_NONE);
    make_issued("leafI", "interA", "/CN=Grüße über Intermediate", "0x8F00000000000000000000000001",
                EXT_CLIENT);
    make_issued("leafB", "caB", "/CN=as2.partner-a.example", "0x0A1B2C", EXT_CLIENT);
    make_issued("leafA_ku", "caA", "/CN=key encipherment only", "9",
                "basicConstraints=CA:FALSE\nkeyUsage=critical,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n");
    make_issued_md("leafA_sha1", "caA", "/CN=signed with SHA-1", "10", EXT_CLIENT, "-sha1");
    make_self_signed("selfA", "/CN=Partner A self-signed", EXT_CLIENT);
    make_self_signed("selfA2", "/CN=Partner A self-signed", EXT_CLIENT); /* same name, new key */
    make_self_signed("station", "/CN=as2.gateway.example",
                     "subjectAltName=DNS:as2.gateway.example\n"
                     "extendedKeyUsage=serverAuth\n");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tk_rmdir(dir);
    return 0;
}

static X509 *load(const char *name)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s.pem", dir, name);
    return tk_cert(p);
}

static STACK_OF(X509) * stack_of(const char *a, const char *b)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    assert_non_null(sk);
    if (a)
        sk_X509_push(sk, load(a));
    if (b)
        sk_X509_push(sk, load(b));
    return sk;
}

static void test_cert_is_partners(void **state)
{
    (void)state;
    struct mft_partner exact, by_ca, by_inter, none;
    memset(&exact, 0, sizeof(exact));
    memset(&by_ca, 0, sizeof(by_ca));
    memset(&by_inter, 0, sizeof(by_inter));
    memset(&none, 0, sizeof(none));
    exact.tls_certs = stack_of("selfA", "leafB");
    by_ca.tls_cas = stack_of("caA", NULL);
    by_inter.tls_cas = stack_of("interA", NULL);
    none.tls_certs = sk_X509_new_null();
    none.tls_cas = sk_X509_new_null();

    X509 *selfA = load("selfA"), *selfA2 = load("selfA2"), *leafA = load("leafA"),
         *leafB = load("leafB"), *leafI = load("leafI"), *srv = load("leafA_server"),
         *noeku = load("leafA_noeku"), *caA = load("caA");
    STACK_OF(X509) *chainI = stack_of("interA", NULL);

    /* exact registration: equal certificates only */
    assert_int_equal(mft_tlssrv_cert_is_partners(selfA, NULL, &exact), 1);
    assert_int_equal(mft_tlssrv_cert_is_partners(leafB, NULL, &exact), 1);
    assert_int_equal(mft_tlssrv_cert_is_partners(selfA2, NULL, &exact), 0); /* same DN, new key */
    assert_int_equal(mft_tlssrv_cert_is_partners(leafA, NULL, &exact), 0);

    /* CA registration */
    assert_int_equal(mft_tlssrv_cert_is_partners(leafA, NULL, &by_ca), 1);
    assert_int_equal(mft_tlssrv_cert_is_partners(noeku, NULL, &by_ca), 1); /* no EKU: any use */
    assert_int_equal(mft_tlssrv_cert_is_partners(srv, NULL, &by_ca), 0);   /* serverAuth only */
    assert_int_equal(mft_tlssrv_cert_is_partners(leafB, NULL, &by_ca), 0); /* another CA */
    assert_int_equal(mft_tlssrv_cert_is_partners(selfA, NULL, &by_ca), 0);
    /* same subject and serial as leafA but from CA B */
    assert_int_equal(mft_tlssrv_cert_is_partners(leafB, chainI, &by_ca), 0);
    /* through an intermediate the client sends */
    assert_int_equal(mft_tlssrv_cert_is_partners(leafI, chainI, &by_ca), 1);
    assert_int_equal(mft_tlssrv_cert_is_partners(leafI, NULL, &by_ca), 0);
    /* the intermediate registered as the partner's CA (GnuTLS's handshake
     * verification accepts that too, so both checks must agree) */
    assert_int_equal(mft_tlssrv_cert_is_partners(leafI, NULL, &by_inter), 1);
    assert_int_equal(mft_tlssrv_cert_is_partners(leafA, NULL, &by_inter), 0);

    /* nothing registered, NULLs */
    assert_int_equal(mft_tlssrv_cert_is_partners(leafA, NULL, &none), 0);
    assert_int_equal(mft_tlssrv_cert_is_partners(NULL, NULL, &by_ca), 0);
    assert_int_equal(mft_tlssrv_cert_is_partners(leafA, NULL, NULL), 0);
    /* the CA itself is no client certificate of the partner */
    assert_int_equal(mft_tlssrv_cert_is_partners(caA, NULL, &exact), 0);

    X509_free(selfA);
    X509_free(selfA2);
    X509_free(leafA);
    X509_free(leafB);
    X509_free(leafI);
    X509_free(srv);
    X509_free(noeku);
    X509_free(caA);
    sk_X509_pop_free(chainI, X509_free);
    sk_X509_pop_free(exact.tls_certs, X509_free);
    sk_X509_pop_free(by_ca.tls_cas, X509_free);
    sk_X509_pop_free(by_inter.tls_cas, X509_free);
    sk_X509_pop_free(none.tls_certs, X509_free);
    sk_X509_pop_free(none.tls_cas, X509_free);
}

/* "Dec  3 20:21:52 2026 GMT" -> "2026-12-03T20:21:52Z" */
static void cli_date(const char *in, char *out, size_t len)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(in, "%b %d %H:%M:%S %Y GMT", &tm);
    if (!end || *end)
        fail_msg("cannot parse date \"%s\"", in);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void check_facts(const char *name, const char *want_subject, const char *want_serial)
{
    char pem[256], out[256];
    snprintf(pem, sizeof(pem), "%s/%s.pem", dir, name);
    snprintf(out, sizeof(out), "%s/%s.facts", dir, name);
    char *argv[] = {"openssl",          "x509",    "-in",          pem,       "-noout", "-subject",
                    "-issuer",          "-serial", "-fingerprint", "-sha256", "-dates", "-nameopt",
                    "RFC2253,-esc_msb", NULL};
    assert_int_equal(tk_run_io(NULL, out, 0, argv), 0);
    char *text = (char *)tk_read(out, NULL);

    X509 *x = load(name);
    struct mft_x509_facts f;
    memset(&f, 'z', sizeof(f));
    mft_x509_facts(x, &f);
    X509_free(x);

    int seen = 0;
    for (char *line = text, *next; *line; line = next) {
        next = strchr(line, '\n');
        assert_non_null(next);
        *next++ = '\0';
        char *eq = strchr(line, '=');
        assert_non_null(eq);
        *eq = '\0';
        const char *v = eq + 1;
        if (strcmp(line, "subject") == 0) {
            assert_string_equal(f.subject, v);
            seen |= 1;
        } else if (strcmp(line, "issuer") == 0) {
            assert_string_equal(f.issuer, v);
            seen |= 2;
        } else if (strcmp(line, "serial") == 0) {
            /* the CLI prints uppercase with whole bytes; ours is lowercase
             * without leading zeros */
            char want[128];
            size_t n = 0;
            while (v[0] == '0' && v[1])
                v++;
            for (; *v && n + 1 < sizeof(want); v++)
                want[n++] = (char)tolower((unsigned char)*v);
            want[n] = '\0';
            assert_string_equal(f.serial, want);
            seen |= 4;
        } else if (strcmp(line, "sha256 Fingerprint") == 0) {
            char hex[65];
            size_t n = 0;
            for (const char *p = v; *p && n < 64; p++)
                if (*p != ':')
                    hex[n++] = (char)tolower((unsigned char)*p);
            hex[n] = '\0';
            assert_int_equal(n, 64);
            assert_string_equal(f.sha256, hex);
            seen |= 8;
        } else if (strcmp(line, "notBefore") == 0) {
            char d[40];
            cli_date(v, d, sizeof(d));
            assert_string_equal(f.not_before, d);
            seen |= 16;
        } else if (strcmp(line, "notAfter") == 0) {
            char d[40];
            cli_date(v, d, sizeof(d));
            assert_string_equal(f.not_after, d);
            seen |= 32;
        } else {
            fail_msg("unexpected CLI line %s", line);
        }
    }
    assert_int_equal(seen, 63);
    free(text);
    if (want_subject)
        assert_string_equal(f.subject, want_subject);
    if (want_serial)
        assert_string_equal(f.serial, want_serial);
    /* RFC 3339 shape, and a 30-day certificate made a moment ago */
    assert_int_equal(strlen(f.not_before), 20);
    assert_int_equal(f.not_before[10], 'T');
    assert_int_equal(f.not_before[19], 'Z');
    struct tm tb, ta;
    memset(&tb, 0, sizeof(tb));
    memset(&ta, 0, sizeof(ta));
    assert_non_null(strptime(f.not_before, "%Y-%m-%dT%H:%M:%SZ", &tb));
    assert_non_null(strptime(f.not_after, "%Y-%m-%dT%H:%M:%SZ", &ta));
    time_t b = timegm(&tb), a = timegm(&ta), now = time(NULL);
    assert_true(b <= now + 5 && b > now - 3600);
    assert_true(a - b == 30 * 86400);
}

static void test_cert_facts(void **state)
{
    (void)state;
    check_facts("leafA", "CN=as2.partner-a.example,O=Partner A\\, Inc.,C=DE", "a1b2c");
    check_facts("leafI", "CN=Grüße über Intermediate", "8f00000000000000000000000001");
    check_facts("caA", "CN=Partner A Root,O=Partner A", "1");
    check_facts("interA", NULL, "10");
    check_facts("station", "CN=as2.gateway.example", NULL);

    struct mft_x509_facts f;
    memset(&f, 'z', sizeof(f));
    mft_x509_facts(NULL, &f);
    assert_string_equal(f.subject, "");
    assert_string_equal(f.issuer, "");
    assert_string_equal(f.serial, "");
    assert_string_equal(f.sha256, "");
    assert_string_equal(f.not_before, "");
    assert_string_equal(f.not_after, "");
}

/* ---- mft_tlssrv_update with a hand-built registry ---- */

static char *read_pem(const char *name, const char *ext)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s.%s", dir, name, ext);
    return (char *)tk_read(p, NULL);
}

static void station_init(struct mft_station *st, const char *id, const char *name)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->id, sizeof(st->id), "%s", id);
    st->tls.cert = load(name);
    st->tls_cert_pem = read_pem(name, "pem");
    st->tls_key_pem = read_pem(name, "key");
}

static void station_free(struct mft_station *st)
{
    X509_free(st->tls.cert);
    free(st->tls_cert_pem);
    free(st->tls_key_pem);
}

static void test_update(void **state)
{
    (void)state;
    struct mft_tlssrv *srv = NULL;
    struct mft_err err;
    struct mft_station st[2];
    struct mft_partner pa[2];
    struct mft_registry reg;

    mft_err_clear(&err);
    assert_int_equal(mft_tlssrv_create(&srv, &err), 0);
    assert_non_null(srv);
    assert_int_equal(mft_tlssrv_ready(srv), 0); /* no snapshot yet */
    assert_non_null(mft_tlssrv_cert_callback());

    station_init(&st[0], "st1", "station");
    memset(&st[1], 0, sizeof(st[1])); /* a station without TLS */
    snprintf(st[1].id, sizeof(st[1].id), "st2");
    memset(pa, 0, sizeof(pa));
    snprintf(pa[0].id, sizeof(pa[0].id), "p-exact");
    pa[0].tls_certs = stack_of("selfA", "leafB");
    snprintf(pa[1].id, sizeof(pa[1].id), "p-ca");
    pa[1].tls_cas = stack_of("caA", "interA");
    memset(&reg, 0, sizeof(reg));
    reg.version = 7;
    reg.stations = st;
    reg.n_stations = 2;
    reg.partners = pa;
    reg.n_partners = 2;

    assert_int_equal(mft_tlssrv_update(srv, &reg, &err), 0);
    assert_int_equal(mft_tlssrv_ready(srv), 1);

    /* only the TLS-less station left: a successful update that is not ready */
    reg.stations = &st[1];
    reg.n_stations = 1;
    assert_int_equal(mft_tlssrv_update(srv, &reg, &err), 0);
    assert_int_equal(mft_tlssrv_ready(srv), 0);
    reg.stations = st;
    reg.n_stations = 2;
    assert_int_equal(mft_tlssrv_update(srv, &reg, &err), 0);
    assert_int_equal(mft_tlssrv_ready(srv), 1);

    /* an unusable key: the update fails, names the station, the old snapshot stays */
    char *good_key = st[0].tls_key_pem;
    st[0].tls_key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    mft_err_clear(&err);
    assert_int_equal(mft_tlssrv_update(srv, &reg, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_non_null(strstr(err.message, "st1"));
    assert_non_null(strstr(err.message, "key"));
    assert_int_equal(mft_tlssrv_ready(srv), 1);
    st[0].tls_key_pem = good_key;

    /* an unusable certificate PEM */
    char *good_cert = st[0].tls_cert_pem;
    st[0].tls_cert_pem = "not a certificate";
    mft_err_clear(&err);
    assert_int_equal(mft_tlssrv_update(srv, &reg, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_non_null(strstr(err.message, "certificate"));
    assert_non_null(strstr(err.detail, "gnutls"));
    st[0].tls_cert_pem = good_cert;
    /* the same refusal when the previous snapshot was not ready */
    reg.stations = &st[1];
    reg.n_stations = 1;
    assert_int_equal(mft_tlssrv_update(srv, &reg, &err), 0);
    assert_int_equal(mft_tlssrv_ready(srv), 0);
    reg.stations = st;
    reg.n_stations = 2;
    st[0].tls_key_pem = "garbage";
    assert_int_equal(mft_tlssrv_update(srv, &reg, &err), -1);
    assert_int_equal(mft_tlssrv_ready(srv), 0);
    st[0].tls_key_pem = good_key;
    assert_int_equal(mft_tlssrv_update(srv, &reg, &err), 0);
    assert_int_equal(mft_tlssrv_ready(srv), 1);

    /* an empty registry is valid and not ready */
    struct mft_registry empty;
    memset(&empty, 0, sizeof(empty));
    assert_int_equal(mft_tlssrv_update(srv, &empty, &err), 0);
    assert_int_equal(mft_tlssrv_ready(srv), 0);

    mft_tlssrv_destroy(srv);
    mft_tlssrv_destroy(NULL);
    mft_tlssrv_conn_end(NULL);
    station_free(&st[0]);
    sk_X509_pop_free(pa[0].tls_certs, X509_free);
    sk_X509_pop_free(pa[1].tls_cas, X509_free);
}

/* ---- handshakes in-process ---- */

struct client {
    int fd;
    int gnutls; /* a GnuTLS client that sends cert with key even when they do not match */
    int min_version, max_version;
    const char *cert, *key, *chain; /* names in dir, or NULL */
    const char *ciphers, *suites;   /* TLS 1.2 list / TLS 1.3 suites, or NULL */
    const char *raw;                /* bytes to send instead of TLS */
    char alert[64];                 /* the alert the client read (RFC name) */
    char answer[256];               /* raw: what came back */
};

static void info_cb(const SSL *ssl, int where, int ret)
{
    struct client *cl = SSL_get_app_data(ssl);
    if ((where & SSL_CB_READ_ALERT) && !cl->alert[0])
        snprintf(cl->alert, sizeof(cl->alert), "%s", mft_tls_alert_name(ret & 0xff));
}

/* The GnuTLS client: its credentials skip the key/certificate match check, so
 * it can prove a certificate with another key. */
static void gnutls_client(struct client *cl)
{
    gnutls_certificate_credentials_t cred;
    gnutls_session_t s;
    char pem[256], key[256], b[16];
    snprintf(pem, sizeof(pem), "%s/%s.pem", dir, cl->cert);
    snprintf(key, sizeof(key), "%s/%s.key", dir, cl->key);
    assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
    gnutls_certificate_set_flags(cred, GNUTLS_CERTIFICATE_SKIP_KEY_CERT_MATCH);
    assert_true(gnutls_certificate_set_x509_key_file(cred, pem, key, GNUTLS_X509_FMT_PEM) >= 0);
    assert_int_equal(gnutls_init(&s, GNUTLS_CLIENT), 0);
    gnutls_priority_set_direct(s,
                               cl->max_version == TLS1_3_VERSION ? "NORMAL:-VERS-ALL:+VERS-TLS1.3"
                                                                 : "NORMAL:-VERS-ALL:+VERS-TLS1.2",
                               NULL);
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_transport_set_int(s, cl->fd);
    int r;
    do
        r = gnutls_handshake(s);
    while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
    if (r == 0)
        gnutls_record_recv(s, b, sizeof(b)); /* TLS 1.3: the verdict comes after */
    gnutls_deinit(s);
    gnutls_certificate_free_credentials(cred);
}

static void *client_main(void *arg)
{
    struct client *cl = arg;
    char p[256];
    if (cl->gnutls) {
        gnutls_client(cl);
        close(cl->fd);
        return NULL;
    }
    if (cl->raw) {
        ssize_t w = write(cl->fd, cl->raw, strlen(cl->raw));
        ssize_t n = w > 0 ? read(cl->fd, cl->answer, sizeof(cl->answer) - 1) : -1;
        if (n > 0)
            cl->answer[n] = '\0';
        close(cl->fd);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(ctx, 0);
    SSL_CTX_set_min_proto_version(ctx, cl->min_version);
    SSL_CTX_set_max_proto_version(ctx, cl->max_version);
    if (cl->ciphers)
        SSL_CTX_set_cipher_list(ctx, cl->ciphers);
    if (cl->suites)
        SSL_CTX_set_ciphersuites(ctx, cl->suites);
    if (cl->cert) {
        snprintf(p, sizeof(p), "%s/%s.pem", dir, cl->cert);
        SSL_CTX_use_certificate_file(ctx, p, SSL_FILETYPE_PEM);
        snprintf(p, sizeof(p), "%s/%s.key", dir, cl->key);
        SSL_CTX_use_PrivateKey_file(ctx, p, SSL_FILETYPE_PEM);
    }
    if (cl->chain) {
        X509 *x = load(cl->chain);
        SSL_CTX_add0_chain_cert(ctx, x);
    }
    SSL *ssl = SSL_new(ctx);
    SSL_set_app_data(ssl, cl);
    SSL_set_info_callback(ssl, info_cb);
    SSL_set_fd(ssl, cl->fd);
    SSL_set_tlsext_host_name(ssl, "as2.gateway.example");
    char buf[16];
    if (SSL_connect(ssl) == 1)
        SSL_read(ssl, buf, sizeof(buf)); /* TLS 1.3: the verdict comes after */
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    close(cl->fd);
    return NULL;
}

static struct mft_tlssrv *hs_srv;
static const struct mft_partner *hs_as2_from; /* a request's partner, checked once established */
static struct mft_err hs_policy_err;          /* mft_tlssrv_conn_policy's verdict on it */
static unsigned long hs_hits;                 /* handshakes that took a remembered verdict */

/* Runs one handshake; returns mft_tlssrv_conn_failure's result (2 when the
 * handshake succeeded) with err and the client's view filled. */
static int handshake(struct client *cl, struct mft_err *err, struct mft_tls_facts *facts)
{
    int sv[2];
    pthread_t th;
    gnutls_session_t session;
    gnutls_certificate_credentials_t cred;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cl->fd = sv[1];
    assert_int_equal(gnutls_certificate_allocate_credentials(&cred), 0);
    gnutls_certificate_set_retrieve_function2(cred, mft_tlssrv_cert_callback());
    assert_int_equal(gnutls_init(&session, GNUTLS_SERVER), 0);
    assert_int_equal(gnutls_priority_set_direct(session, MFT_TLSSRV_DEFAULT_PRIORITIES, NULL), 0);
    gnutls_credentials_set(session, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_transport_set_int(session, sv[0]);
    struct mft_tlssrv_conn *c = mft_tlssrv_conn_begin(hs_srv, session, "127.0.0.1:4711");
    assert_non_null(c);
    assert_int_equal(pthread_create(&th, NULL, client_main, cl), 0);
    int r;
    do
        r = gnutls_handshake(session);
    while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
    if (r == 0)
        gnutls_bye(session, GNUTLS_SHUT_WR);
    /* as libmicrohttpd: the session goes before the closed notification */
    gnutls_deinit(session);
    close(sv[0]);
    pthread_join(th, NULL);
    gnutls_certificate_free_credentials(cred);
    mft_err_clear(err);
    int rc = mft_tlssrv_conn_established(c) ? 2 : mft_tlssrv_conn_failure(c, err);
    mft_err_clear(&hs_policy_err);
    if (rc == 2 && hs_as2_from)
        mft_tlssrv_conn_policy(c, &hs_as2_from->tls_policy, hs_as2_from->id, &hs_policy_err);
    *facts = *mft_tlssrv_conn_facts(c);
    hs_hits += (unsigned long)mft_tlssrv_conn_verified_from_memory(c);
    mft_tlssrv_conn_end(c);
    return rc;
}

static void test_handshakes(void **state)
{
    (void)state;
    struct mft_err err;
    struct mft_station st;
    struct mft_partner pa[2];
    struct mft_registry reg;
    static struct mft_tls_facts f;

    mft_err_clear(&err);
    assert_int_equal(mft_tlssrv_create(&hs_srv, &err), 0);
    hs_hits = 0;
    station_init(&st, "st1", "station");
    memset(pa, 0, sizeof(pa));
    snprintf(pa[0].id, sizeof(pa[0].id), "p-ca");
    pa[0].tls_cas = stack_of("caA", NULL);
    pa[0].tls_policy.min_version = 0x0303;
    pa[0].tls_policy.max_version = 0x0304;
    snprintf(pa[1].id, sizeof(pa[1].id), "p-13");
    pa[1].tls_certs = stack_of("selfA", NULL);
    pa[1].tls_policy.min_version = pa[1].tls_policy.max_version = 0x0304;
    memset(&reg, 0, sizeof(reg));
    reg.stations = &st;
    reg.n_stations = 1;
    reg.partners = pa;
    reg.n_partners = 2;
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);

    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        const char *vn = v == TLS1_3_VERSION ? "TLSv1.3" : "TLSv1.2";
        /* a good certificate */
        struct client ok = {.min_version = v, .max_version = v, .cert = "leafA", .key = "leafA"};
        assert_int_equal(handshake(&ok, &err, &f), 2);
        assert_string_equal(f.version, vn);
        assert_true(strncmp(f.cipher, "TLS_", 4) == 0);
        /* issued by the intermediate, sent alone; then with it */
        struct client inc = {.min_version = v, .max_version = v, .cert = "leafI", .key = "leafI"};
        assert_int_equal(handshake(&inc, &err, &f), 0);
        assert_int_equal(err.kind, MFT_E_TLS_CLIENT_CHAIN_INCOMPLETE);
        assert_non_null(strstr(err.message, "CN=Partner A Issuing"));
        assert_string_equal(inc.alert, "unknown_ca");
        assert_true(f.verify_code & GNUTLS_CERT_SIGNER_NOT_FOUND);
        assert_string_equal(f.alerts[0].sent ? "sent" : "received", "sent");
        assert_int_equal(f.alerts[0].code, 48);
        assert_true(f.peer_cert.present);
        assert_string_equal(f.station_id, "st1");
        assert_true(f.local_cert.present);
        struct client full = {
            .min_version = v, .max_version = v, .cert = "leafI", .key = "leafI", .chain = "interA"};
        assert_int_equal(handshake(&full, &err, &f), 2);
        /* serverAuth only */
        struct client srv = {
            .min_version = v, .max_version = v, .cert = "leafA_server", .key = "leafA_server"};
        assert_int_equal(handshake(&srv, &err, &f), 0);
        assert_int_equal(err.kind, MFT_E_TLS_CLIENT_CERT_NO_CLIENT_AUTH);
        assert_string_equal(srv.alert, "unsupported_certificate");
        /* another organization's CA, leaf sent alone: unknown CA, not a missing intermediate */
        struct client other = {.min_version = v, .max_version = v, .cert = "leafB", .key = "leafB"};
        assert_int_equal(handshake(&other, &err, &f), 0);
        assert_int_equal(err.kind, MFT_E_TLS_CLIENT_CERT_UNTRUSTED);
        assert_non_null(strstr(err.message, "CN=Other Root"));
        assert_string_equal(other.alert, "unknown_ca");
        /* no certificate */
        struct client none = {.min_version = v, .max_version = v};
        assert_int_equal(handshake(&none, &err, &f), 0);
        assert_int_equal(err.kind, MFT_E_TLS_CLIENT_CERT_MISSING);
        assert_string_equal(none.alert,
                            v == TLS1_3_VERSION ? "certificate_required" : "handshake_failure");
        /* the partner's policy: TLS 1.3 only */
        struct client p13 = {.min_version = v, .max_version = v, .cert = "selfA", .key = "selfA"};
        assert_int_equal(handshake(&p13, &err, &f), v == TLS1_3_VERSION ? 2 : 0);
        if (v == TLS1_2_VERSION) {
            assert_int_equal(err.kind, MFT_E_TLS_NO_COMMON_PROTOCOL);
            assert_non_null(strstr(err.message, "partner p-13's TLS policy accepts TLSv1.3"));
            assert_string_equal(p13.alert, "protocol_version");
            assert_string_equal(f.partner_id, "p-13");
        }
    }
    /* the second good handshakes (TLS 1.3 after 1.2) took the verdicts the
     * first ones left: leafA, leafI with its intermediate; exact registrations
     * and refusals are never remembered */
    assert_int_equal(hs_hits, 2);
    /* no shared suite */
    struct client ccm8 = {.min_version = TLS1_3_VERSION,
                          .max_version = TLS1_3_VERSION,
                          .suites = "TLS_AES_128_CCM_8_SHA256"};
    assert_int_equal(handshake(&ccm8, &err, &f), 0);
    assert_int_equal(err.kind, MFT_E_TLS_NO_SHARED_CIPHER);
    assert_non_null(strstr(err.detail, "client suites: TLS_AES_128_CCM_8_SHA256"));
    assert_string_equal(ccm8.alert, "handshake_failure");
    struct client cbc = {
        .min_version = TLS1_2_VERSION, .max_version = TLS1_2_VERSION, .ciphers = "AES128-SHA256"};
    assert_int_equal(handshake(&cbc, &err, &f), 0);
    assert_int_equal(err.kind, MFT_E_TLS_NO_SHARED_CIPHER);
    /* no common version */
    struct client old = {.min_version = TLS1_VERSION,
                         .max_version = TLS1_1_VERSION,
                         .ciphers = "DEFAULT@SECLEVEL=0"};
    assert_int_equal(handshake(&old, &err, &f), 0);
    assert_int_equal(err.kind, MFT_E_TLS_NO_COMMON_PROTOCOL);
    assert_non_null(strstr(err.message, "offered TLSv1.1, this gateway accepts TLSv1.2..TLSv1.3"));
    assert_string_equal(old.alert, "protocol_version");
    assert_string_equal(f.versions_offered, "TLSv1.1");
    /* plain HTTP: answered in HTTP, reported with its first bytes */
    struct client http = {.raw = "GET /as2 HTTP/1.1\r\nHost: x\r\n\r\n"};
    assert_int_equal(handshake(&http, &err, &f), 0);
    assert_int_equal(err.kind, MFT_E_TLS_NOT_TLS);
    assert_non_null(strstr(err.message, "\"GET /as2 HTTP/1.1"));
    assert_non_null(strstr(http.answer, "400 Bad Request"));
    /* a probe: nothing sent, nothing reported */
    struct client probe = {.raw = ""};
    assert_int_equal(handshake(&probe, &err, &f), 1);

    /* a station key that is not its certificate's: the update is refused */
    char *good_key = st.tls_key_pem;
    st.tls_key_pem = read_pem("leafA", "key");
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), -1);
    assert_int_equal(err.kind, MFT_E_TLS_OWN_KEY_MISMATCH);
    assert_non_null(strstr(err.message, "st1"));
    free(st.tls_key_pem);
    st.tls_key_pem = good_key;

    mft_tlssrv_destroy(hs_srv);
    station_free(&st);
    sk_X509_pop_free(pa[0].tls_cas, X509_free);
    sk_X509_pop_free(pa[1].tls_certs, X509_free);
}

/* A policy for TLS versions lo..hi with the given suites (NULL-terminated). */
static void policy_set(struct mft_tls_policy *pol, unsigned lo, unsigned hi,
                       const char *const *suites)
{
    memset(pol, 0, sizeof(*pol));
    pol->min_version = lo;
    pol->max_version = hi;
    for (; suites && *suites; suites++) {
        snprintf(pol->ciphers[pol->n_ciphers], sizeof(pol->ciphers[0]), "%s", *suites);
        assert_true(mft_tls_suite_id(*suites) > 0);
        pol->cipher_ids[pol->n_ciphers++] = (unsigned short)mft_tls_suite_id(*suites);
    }
}

/*
 * Policies where partners share a CA, and what only the handshake's later
 * messages show: the TLS 1.2 suite is known before the client's certificate
 * is verified (from our ServerHello); the partner a request names is held to
 * its own policy (mft_tlssrv_conn_policy); more partners on one CA than the
 * handshake tracks leave the decision to that; a certificate proven with
 * another key, a key usage without digitalSignature and a SHA-1 signature are
 * named as such; a usable suite after 64 others is found.
 */
static void test_policies_and_proof(void **state)
{
    (void)state;
    struct mft_err err;
    struct mft_station st;
    struct mft_partner pa[6];
    struct mft_registry reg;
    static struct mft_tls_facts f;
    static const char *const gcm128[] = {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                                         "TLS_AES_128_GCM_SHA256", NULL};
    const unsigned v12 = 0x0303, v13 = 0x0304;

    mft_err_clear(&err);
    assert_int_equal(mft_tlssrv_create(&hs_srv, &err), 0);
    station_init(&st, "st1", "station");
    memset(pa, 0, sizeof(pa));
    for (int i = 0; i < 6; i++) {
        snprintf(pa[i].id, sizeof(pa[i].id), "shared-%d", i);
        pa[i].tls_cas = stack_of("caA", NULL);
        policy_set(&pa[i].tls_policy, v13, v13, NULL);
    }
    policy_set(&pa[0].tls_policy, v12, v13, gcm128); /* shared-0: AES-128-GCM only */
    memset(&reg, 0, sizeof(reg));
    reg.stations = &st;
    reg.n_stations = 1;
    reg.partners = pa;
    reg.n_partners = 2; /* shared-0 and shared-1 (TLS 1.3 only) */
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);

    /* TLS 1.2 with the suite shared-0 allows: accepted, named in IANA form */
    struct client c128 = {.min_version = TLS1_2_VERSION,
                          .max_version = TLS1_2_VERSION,
                          .cert = "leafA",
                          .key = "leafA",
                          .ciphers = "ECDHE-ECDSA-AES128-GCM-SHA256"};
    hs_as2_from = &pa[0];
    assert_int_equal(handshake(&c128, &err, &f), 2);
    assert_string_equal(f.cipher, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    assert_int_equal(hs_policy_err.kind, MFT_E_OK);
    /* the same connection, for shared-1 (same CA, TLS 1.3 only): refused at the AS2 stage */
    hs_as2_from = &pa[1];
    assert_int_equal(handshake(&c128, &err, &f), 2);
    assert_int_equal(hs_policy_err.kind, MFT_E_TLS_NO_COMMON_PROTOCOL);
    assert_non_null(strstr(hs_policy_err.message, "partner shared-1's TLS policy accepts TLSv1.3"));
    hs_as2_from = NULL;
    /* a suite neither permits: refused in the handshake, with the suite's name */
    struct client c256 = {.min_version = TLS1_2_VERSION,
                          .max_version = TLS1_2_VERSION,
                          .cert = "leafA",
                          .key = "leafA",
                          .ciphers = "ECDHE-ECDSA-AES256-GCM-SHA384"};
    assert_int_equal(handshake(&c256, &err, &f), 0);
    assert_int_equal(err.kind, MFT_E_TLS_NO_SHARED_CIPHER);
    assert_non_null(strstr(err.message, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"));
    assert_string_equal(c256.alert, "handshake_failure");
    /* TLS 1.3: the suite is known too */
    struct client t13 = {.min_version = TLS1_3_VERSION,
                         .max_version = TLS1_3_VERSION,
                         .cert = "leafA",
                         .key = "leafA",
                         .suites = "TLS_CHACHA20_POLY1305_SHA256"};
    hs_as2_from = &pa[0];
    assert_int_equal(handshake(&t13, &err, &f), 2); /* shared-1 permits it */
    assert_string_equal(f.cipher, "TLS_CHACHA20_POLY1305_SHA256");
    assert_int_equal(hs_policy_err.kind, MFT_E_TLS_NO_SHARED_CIPHER);
    hs_as2_from = NULL;

    /* six partners on one CA, only shared-0 allows TLS 1.2: not refused in the
     * handshake (the AS2 stage holds each to its policy) */
    reg.n_partners = 6;
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);
    hs_as2_from = &pa[5];
    assert_int_equal(handshake(&c128, &err, &f), 2);
    assert_int_equal(hs_policy_err.kind, MFT_E_TLS_NO_COMMON_PROTOCOL);
    hs_as2_from = NULL;
    reg.n_partners = 2;
    policy_set(&pa[0].tls_policy, v12, v13, NULL);
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);

    for (int v = TLS1_2_VERSION; v <= TLS1_3_VERSION; v++) {
        /* a registered CA's certificate proven with another key */
        struct client wrong = {
            .gnutls = 1, .min_version = v, .max_version = v, .cert = "leafA", .key = "leafB"};
        assert_int_equal(handshake(&wrong, &err, &f), 0);
        assert_int_equal(err.kind, MFT_E_TLS_CLIENT_KEY_MISMATCH);
        assert_true(f.peer_cert.present);
        assert_non_null(strstr(f.peer_cert.x.subject, "as2.partner-a.example"));
        /* key usage without digitalSignature */
        struct client ku = {
            .min_version = v, .max_version = v, .cert = "leafA_ku", .key = "leafA_ku"};
        assert_int_equal(handshake(&ku, &err, &f), 0);
        assert_int_equal(err.kind, MFT_E_TLS_CLIENT_CERT_NO_CLIENT_AUTH);
        assert_non_null(strstr(err.message, "digitalSignature"));
        assert_string_equal(ku.alert, "unsupported_certificate");
        /* signed with SHA-1 by the registered CA */
        struct client sha1 = {
            .min_version = v, .max_version = v, .cert = "leafA_sha1", .key = "leafA_sha1"};
        assert_int_equal(handshake(&sha1, &err, &f), 0);
        assert_int_equal(err.kind, MFT_E_TLS_CLIENT_CERT_UNTRUSTED);
        assert_non_null(strstr(err.message, "too weak"));
        assert_non_null(strstr(err.remedy, "SHA-256"));
        assert_string_equal(sha1.alert, "bad_certificate");
    }
    /* the one suite the station's EC key can serve, after more than 64 others */
    struct client many = {.min_version = TLS1_2_VERSION,
                          .max_version = TLS1_2_VERSION,
                          .cert = "leafA",
                          .key = "leafA",
                          .ciphers = "ALL:-aECDSA:ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0"};
    assert_int_equal(handshake(&many, &err, &f), 2);
    assert_string_equal(f.cipher, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");

    mft_tlssrv_destroy(hs_srv);
    station_free(&st);
    for (int i = 0; i < 6; i++)
        sk_X509_pop_free(pa[i].tls_cas, X509_free);
}

/* <name>.pem and .key: a clientAuth certificate (a CA certificate when
 * is_ca) issued by ca that expires in seconds (the openssl CLI of Debian 12
 * counts validity in days). */
static void make_short_lived(const char *name, const char *ca, long seconds, int is_ca)
{
    char p[256];
    FILE *f;
    snprintf(p, sizeof(p), "%s/%s.key", dir, ca);
    EVP_PKEY *cakey = tk_key(p, NULL);
    X509 *cacert = load(ca);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = tk_make_cert(key, 4242, "short-lived", cacert, cakey, -60, seconds,
                           is_ca ? NID_basic_constraints : NID_ext_key_usage,
                           is_ca ? "critical,CA:TRUE" : "clientAuth");
    snprintf(p, sizeof(p), "%s/%s.pem", dir, name);
    assert_non_null(f = fopen(p, "w"));
    PEM_write_X509(f, x);
    fclose(f);
    snprintf(p, sizeof(p), "%s/%s.key", dir, name);
    assert_non_null(f = fopen(p, "w"));
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    X509_free(cacert);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
}

/*
 * The memory of verified client chains: a chain that verified is not checked
 * again by the same snapshot, but the verdict never outlives the trust it came
 * from (a registry update), the chain's validity, or the partner's policy.
 */
static void test_verified_memory(void **state)
{
    (void)state;
    struct mft_err err;
    struct mft_station st;
    struct mft_partner pa;
    struct mft_registry reg;
    static struct mft_tls_facts f;
    const int v12 = TLS1_2_VERSION, v13 = TLS1_3_VERSION;

    mft_err_clear(&err);
    assert_int_equal(mft_tlssrv_create(&hs_srv, &err), 0);
    hs_hits = 0;
    station_init(&st, "st1", "station");
    memset(&pa, 0, sizeof(pa));
    snprintf(pa.id, sizeof(pa.id), "p-ca");
    pa.tls_cas = stack_of("caA", NULL);
    pa.tls_policy.min_version = 0x0303;
    pa.tls_policy.max_version = 0x0304;
    memset(&reg, 0, sizeof(reg));
    reg.stations = &st;
    reg.n_stations = 1;
    reg.partners = &pa;
    reg.n_partners = 1;
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);

    /* a client that has the certificate but not its key: its chain verifies,
     * its proof fails, and nothing is remembered */
    for (int v = v12; v <= v13; v++) {
        struct client thief = {
            .gnutls = 1, .min_version = v, .max_version = v, .cert = "leafA", .key = "leafB"};
        assert_int_equal(handshake(&thief, &err, &f), 0);
        assert_int_equal(err.kind, MFT_E_TLS_CLIENT_KEY_MISMATCH);
    }
    struct client owner = {.min_version = v12, .max_version = v12, .cert = "leafA", .key = "leafA"};
    assert_int_equal(handshake(&owner, &err, &f), 2);
    assert_int_equal(hs_hits, 0);       /* not taken from memory */
    pa.tls_policy.min_version = 0x0304; /* TLS 1.3 only from now on */
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);
    struct client a13 = {.min_version = v13, .max_version = v13, .cert = "leafA", .key = "leafA"};
    assert_int_equal(handshake(&a13, &err, &f), 2);
    assert_int_equal(hs_hits, 0);
    assert_int_equal(handshake(&a13, &err, &f), 2);
    assert_int_equal(hs_hits, 1);
    /* remembered, and still held to the partner's policy (a refused
     * handshake is not counted) */
    struct client a12 = {.min_version = v12, .max_version = v12, .cert = "leafA", .key = "leafA"};
    assert_int_equal(handshake(&a12, &err, &f), 0);
    assert_int_equal(err.kind, MFT_E_TLS_NO_COMMON_PROTOCOL);
    assert_int_equal(hs_hits, 1);

    /* the partner now registers another CA: the new snapshot remembers nothing */
    sk_X509_pop_free(pa.tls_cas, X509_free);
    pa.tls_cas = stack_of("caB", NULL);
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);
    a13.alert[0] = '\0';
    assert_int_equal(handshake(&a13, &err, &f), 0);
    assert_int_equal(err.kind, MFT_E_TLS_CLIENT_CERT_UNTRUSTED);
    assert_string_equal(a13.alert, "unknown_ca");
    assert_int_equal(hs_hits, 1);

    /* a certificate, and a registered CA, that expire while remembered: both
     * chains are refused, though the second client sends an unrelated
     * certificate after its leaf */
    make_short_lived("leafShort", "caA", 3, 0);
    make_short_lived("interShort", "caA", 3, 1);
    make_issued("leafS", "interShort", "/CN=under a short-lived CA", "0x77", EXT_CLIENT);
    sk_X509_pop_free(pa.tls_cas, X509_free);
    pa.tls_cas = stack_of("caA", "interShort");
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);
    struct client sh = {
        .min_version = v13, .max_version = v13, .cert = "leafShort", .key = "leafShort"};
    struct client ls = {
        .min_version = v13, .max_version = v13, .cert = "leafS", .key = "leafS", .chain = "caB"};
    assert_int_equal(handshake(&sh, &err, &f), 2);
    assert_int_equal(handshake(&sh, &err, &f), 2);
    assert_int_equal(handshake(&ls, &err, &f), 2);
    assert_int_equal(handshake(&ls, &err, &f), 2);
    assert_int_equal(hs_hits, 3);
    sleep(5);
    sh.alert[0] = '\0';
    assert_int_equal(handshake(&sh, &err, &f), 0);
    assert_int_equal(err.kind, MFT_E_TLS_CLIENT_CERT_EXPIRED);
    assert_string_equal(sh.alert, "certificate_expired");
    assert_int_equal(handshake(&ls, &err, &f), 0);
    assert_true(err.kind != MFT_E_OK);
    assert_int_equal(hs_hits, 3);

    /* MFT_INGRESS_TLS_VERIFIED_CHAINS: 0..64, and 0 takes nothing from
     * memory, even what the snapshot remembered before */
    assert_int_equal(handshake(&a13, &err, &f), 2);
    assert_int_equal(handshake(&a13, &err, &f), 2);
    assert_int_equal(hs_hits, 4);
    assert_int_equal(mft_tlssrv_set_verified_chains(hs_srv, 65, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    mft_err_clear(&err);
    assert_int_equal(mft_tlssrv_set_verified_chains(hs_srv, -1, &err), -1);
    assert_int_equal(mft_tlssrv_set_verified_chains(hs_srv, 0, &err), 0);
    assert_int_equal(handshake(&a13, &err, &f), 2);
    assert_int_equal(mft_tlssrv_update(hs_srv, &reg, &err), 0);
    assert_int_equal(handshake(&a13, &err, &f), 2);
    assert_int_equal(handshake(&a13, &err, &f), 2);
    assert_int_equal(hs_hits, 4);

    mft_tlssrv_destroy(hs_srv);
    station_free(&st);
    sk_X509_pop_free(pa.tls_cas, X509_free);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_is_partners),
        cmocka_unit_test(test_cert_facts),
        cmocka_unit_test(test_update),
        cmocka_unit_test(test_handshakes),
        cmocka_unit_test(test_policies_and_proof),
        cmocka_unit_test(test_verified_memory),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
