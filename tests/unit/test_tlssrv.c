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
 * failed update keeps the previous snapshot.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
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

/* <name>.pem issued by <ca> with the extensions in ext and the given serial. */
static void make_issued(const char *name, const char *ca, const char *subj, const char *serial,
                        const char *ext)
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
                               "-days", "30", "-set_serial", serial, "-extfile", extf, "-out", pem,
                               NULL),
                     0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_is_partners),
        cmocka_unit_test(test_cert_facts),
        cmocka_unit_test(test_update),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
