/*
 * test_tls — the raw facts of a TLS handshake (lib/mft_tls.h): alert names
 * and directions, certificate facts with names and key, the detail text, and
 * the TlsHandshake event built from the facts, read back through the JSON
 * rendering every consumer uses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include "mft/v1/events.pb-c.h"
#include "mft_events.h"
#include "mft_registry.h"
#include "mft_testkeys.h"
#include "mft_tls.h"

/* A self-signed EC P-256 certificate for host.example and 192.0.2.7. */
static X509 *make_cert(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = tk_make_cert(key, 0x1234, "tls test", NULL, NULL, 0, 3600, NID_subject_alt_name,
                           "DNS:host.example,IP:192.0.2.7");
    EVP_PKEY_free(key);
    return x;
}

static void test_alert_names(void **state)
{
    (void)state;
    assert_string_equal(mft_tls_alert_name(48), "unknown_ca");
    assert_string_equal(mft_tls_alert_name(116), "certificate_required");
    assert_string_equal(mft_tls_alert_name(70), "protocol_version");
    assert_string_equal(mft_tls_alert_name(0), "close_notify");
    assert_string_equal(mft_tls_alert_name(250), "unknown");
    assert_string_equal(mft_tls_version_name(0x0304), "TLSv1.3");
    assert_string_equal(mft_tls_version_name(0x0301), "TLSv1");
    assert_string_equal(mft_tls_version_name(0), "");
    assert_string_equal(mft_tls_version_name(0x7f1c), "unknown");
}

static void test_alerts_keep_direction(void **state)
{
    (void)state;
    struct mft_tls_facts f;
    mft_tls_facts_init(&f, "outbound");
    assert_string_equal(f.direction, "outbound");
    assert_int_equal(strlen(f.time), 24);
    assert_null(mft_tls_facts_fatal(&f, 1));
    mft_tls_facts_alert(&f, 0, 0, 0);  /* peer's warning close_notify */
    mft_tls_facts_alert(&f, 0, 1, 45); /* peer: certificate_expired */
    mft_tls_facts_alert(&f, 1, 1, 48); /* ours: unknown_ca */
    const struct mft_tls_alert *in = mft_tls_facts_fatal(&f, 0), *out = mft_tls_facts_fatal(&f, 1);
    assert_non_null(in);
    assert_non_null(out);
    assert_int_equal(in->code, 45);
    assert_int_equal(out->code, 48);
    for (int i = 0; i < 20; i++)
        mft_tls_facts_alert(&f, 1, 1, 80);
    assert_int_equal(f.n_alerts, MFT_TLS_MAX_ALERTS);
}

static void test_cert_and_detail(void **state)
{
    (void)state;
    X509 *x = make_cert();
    struct mft_tls_facts f;
    mft_tls_facts_init(&f, "inbound");
    snprintf(f.peer_address, sizeof(f.peer_address), "127.0.0.1:5555");
    snprintf(f.versions_offered, sizeof(f.versions_offered), "TLSv1.1");
    snprintf(f.versions_accepted, sizeof(f.versions_accepted), "TLSv1.2..TLSv1.3");
    mft_tls_facts_alert(&f, 1, 1, 70);
    mft_tls_cert_fill(&f.peer_cert, x);
    mft_tls_cert_fill(&f.local_cert, NULL);
    assert_true(f.peer_cert.present);
    assert_false(f.local_cert.present);
    assert_string_equal(f.peer_cert.names, "DNS:host.example, IP:192.0.2.7");
    assert_string_equal(f.peer_cert.key, "EC-P-256");
    assert_string_equal(f.peer_cert.x.serial, "1234");

    struct mft_err e;
    mft_err_set(&e, MFT_E_TLS_NO_COMMON_PROTOCOL, NULL);
    assert_int_equal(mft_tls_facts_detail(&f, &e), -1);
    assert_non_null(strstr(e.detail, "tls inbound"));
    assert_non_null(strstr(e.detail, "peer 127.0.0.1:5555"));
    assert_non_null(strstr(e.detail, "offered TLSv1.1, accepted TLSv1.2..TLSv1.3"));
    assert_non_null(strstr(e.detail, "alerts sent fatal protocol_version(70)"));
    assert_non_null(strstr(e.detail, "peer certificate: subject=CN=tls test"));
    assert_non_null(strstr(e.detail, "names DNS:host.example, IP:192.0.2.7, key EC-P-256"));
    X509_free(x);
}

/* The facts become a TlsHandshake in ConnectionRejected; the JSON rendering
 * shows every fact, alerts in order with their directions. */
static void test_event_fill(void **state)
{
    (void)state;
    X509 *x = make_cert();
    struct mft_tls_facts f;
    mft_tls_facts_init(&f, "inbound");
    snprintf(f.sni, sizeof(f.sni), "as2.example");
    snprintf(f.verify_result, sizeof(f.verify_result), "signer not found");
    f.verify_code = 64;
    mft_tls_facts_alert(&f, 0, 0, 90);
    mft_tls_facts_alert(&f, 1, 1, 48);
    mft_tls_cert_fill(&f.local_cert, x);

    struct mft_events_tls b;
    Mft__V1__ConnectionRejected ev = MFT__V1__CONNECTION_REJECTED__INIT;
    ev.direction = "inbound";
    ev.tls = mft_events_tls_fill(&b, &f);
    size_t len = mft__v1__connection_rejected__get_packed_size(&ev);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    mft__v1__connection_rejected__pack(&ev, buf);
    json_t *j = mft_event_to_json(MFT_CE_CONNECTION_REJECTED, buf, len);
    free(buf);
    assert_non_null(j);
    json_t *tls = json_object_get(j, "tls");
    assert_non_null(tls);
    assert_string_equal(json_string_value(json_object_get(tls, "direction")), "inbound");
    assert_string_equal(json_string_value(json_object_get(tls, "sni")), "as2.example");
    assert_string_equal(json_string_value(json_object_get(tls, "verify_result")),
                        "signer not found");
    json_t *alerts = json_object_get(tls, "alerts");
    assert_int_equal(json_array_size(alerts), 2);
    json_t *a0 = json_array_get(alerts, 0), *a1 = json_array_get(alerts, 1);
    assert_string_equal(json_string_value(json_object_get(a0, "direction")), "received");
    assert_string_equal(json_string_value(json_object_get(a0, "name")), "user_canceled");
    assert_string_equal(json_string_value(json_object_get(a0, "level")), "warning");
    assert_string_equal(json_string_value(json_object_get(a1, "direction")), "sent");
    assert_string_equal(json_string_value(json_object_get(a1, "name")), "unknown_ca");
    json_t *local = json_object_get(tls, "local_certificate");
    assert_string_equal(json_string_value(json_object_get(local, "names")),
                        "DNS:host.example, IP:192.0.2.7");
    assert_string_equal(json_string_value(json_object_get(local, "key")), "EC-P-256");
    json_decref(j);
    X509_free(x);
}

static int policy(const char *json, struct mft_tls_policy *p, struct mft_err *e)
{
    json_error_t jerr;
    json_t *o = json ? json_loads(json, 0, &jerr) : NULL;
    if (json)
        assert_non_null(o);
    mft_err_clear(e);
    int rc = mft_tls_policy_parse(o, p, e);
    json_decref(o);
    return rc;
}

static void test_policy(void **state)
{
    (void)state;
    struct mft_tls_policy p;
    struct mft_err e;
    char v[32];

    assert_int_equal(policy(NULL, &p, &e), 0);
    assert_int_equal(p.min_version, 0x0303);
    assert_int_equal(p.max_version, 0x0304);
    assert_int_equal(p.trust, MFT_TLS_TRUST_ANY);
    assert_false(p.client_cert_optional);
    mft_tls_policy_versions(&p, v, sizeof(v));
    assert_string_equal(v, "TLSv1.2..TLSv1.3");
    assert_true(mft_tls_policy_allows_suite(&p, 0x1301));

    assert_int_equal(
        policy("{\"min_version\":\"TLSv1.3\",\"server_trust\":\"pin\","
               "\"client_certificate\":\"optional\",\"ciphers\":"
               "[\"TLS_AES_256_GCM_SHA384\",\"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\"]}",
               &p, &e),
        0);
    assert_int_equal(p.min_version, 0x0304);
    assert_int_equal(p.trust, MFT_TLS_TRUST_PIN);
    assert_true(p.client_cert_optional);
    assert_int_equal(p.n_ciphers, 2);
    mft_tls_policy_versions(&p, v, sizeof(v));
    assert_string_equal(v, "TLSv1.3");
    /* suites are compared by IANA id: 0xc02f is ECDHE-RSA-AES128-GCM-SHA256 */
    assert_int_equal(p.cipher_ids[1], 0xc02f);
    assert_true(mft_tls_policy_allows_suite(&p, 0xc02f));
    assert_true(mft_tls_policy_allows_suite(&p, 0x1302));
    assert_false(mft_tls_policy_allows_suite(&p, 0xc030));
    assert_false(mft_tls_policy_allows_suite(&p, 0x1301));
    /* one naming for both directions: GnuTLS's spellings map to the same ids */
    assert_int_equal(mft_tls_suite_id("TLS_ECDHE_RSA_AES_128_GCM_SHA256"), 0xc02f);
    assert_int_equal(mft_tls_suite_id("tls_ecdhe_rsa_with_aes_128_gcm_sha256"), 0xc02f);
    assert_int_equal(mft_tls_suite_id("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"), 0xc013);
    assert_int_equal(mft_tls_suite_id("TLS_NOT_A_SUITE"), -1);
    assert_string_equal(mft_tls_suite_name(0xc013), "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA");
    assert_string_equal(mft_tls_suite_name(0x1303), "TLS_CHACHA20_POLY1305_SHA256");
    assert_null(mft_tls_suite_name(0xfefe));

    static const char *const bad[] = {
        "{\"min_version\":\"TLSv1.1\"}",
        "{\"min_version\":\"TLSv1.3\",\"max_version\":\"TLSv1.2\"}",
        "{\"ciphers\":[\"RC4-MD5-NOT-A-SUITE\"]}",
        "{\"ciphers\":[]}",
        "{\"ciphers\":\"TLS_AES_128_GCM_SHA256\"}",
        "{\"server_trust\":\"system\"}",
        "{\"client_certificate\":true}",
        "{\"min_versoin\":\"TLSv1.2\"}",
        "[1]",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (policy(bad[i], &p, &e) != -1)
            fail_msg("accepted %s", bad[i]);
        assert_int_equal(e.kind, MFT_E_CONFIG);
        assert_non_null(strstr(e.message, "tls_policy"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alert_names),     cmocka_unit_test(test_alerts_keep_direction),
        cmocka_unit_test(test_cert_and_detail), cmocka_unit_test(test_event_fill),
        cmocka_unit_test(test_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
