/*
 * test_events — the event catalogue and the protobuf → JSON rendering. Events
 * are packed with the generated protobuf-c API, rendered, and every field of
 * the JSON compared with what was packed: scalars, booleans, 64-bit sizes,
 * repeated messages and strings, nested messages, proto3 defaults (every
 * field present even when unset). Garbage, truncated bytes and unknown types
 * give NULL; unknown fields are skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "mft/v1/events.pb-c.h"
#include "mft_bus.h"
#include "mft_events.h"

static unsigned char *pack(const ProtobufCMessage *m, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(m);
    unsigned char *buf = malloc(*len + 16);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(m, buf), *len);
    return buf;
}

static void expect_str(const json_t *o, const char *key, const char *want)
{
    json_t *v = json_object_get(o, key);
    if (!v)
        fail_msg("field %s missing", key);
    if (!json_is_string(v))
        fail_msg("field %s is not a string", key);
    if (strcmp(json_string_value(v), want) != 0)
        fail_msg("field %s = \"%s\", want \"%s\"", key, json_string_value(v), want);
}

static void expect_int(const json_t *o, const char *key, json_int_t want)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("field %s missing or not an integer", key);
    if (json_integer_value(v) != want)
        fail_msg("field %s = %lld, want %lld", key, (long long)json_integer_value(v),
                 (long long)want);
}

static void expect_bool(const json_t *o, const char *key, int want)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        fail_msg("field %s missing or not a boolean", key);
    if (json_is_true(v) != !!want)
        fail_msg("field %s = %d, want %d", key, json_is_true(v), want);
}

/* Every field of the descriptor is a key, and there are no other keys. */
static void expect_keys(const json_t *o, const ProtobufCMessageDescriptor *d)
{
    assert_true(json_is_object(o));
    for (unsigned i = 0; i < d->n_fields; i++)
        if (!json_object_get(o, d->fields[i].name))
            fail_msg("%s: field %s missing", d->name, d->fields[i].name);
    assert_int_equal(json_object_size(o), d->n_fields);
}

/* The JSON serializes and parses back to the same value. */
static void expect_serializable(const json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    assert_non_null(s);
    json_error_t je;
    json_t *back = json_loads(s, 0, &je);
    assert_non_null(back);
    assert_true(json_equal(back, (json_t *)o));
    json_decref(back);
    free(s);
}

static void test_catalogue(void **state)
{
    (void)state;
    const struct mft_event_type *t = mft_event_type_find(MFT_CE_MESSAGE_RECEIVED);
    assert_non_null(t);
    assert_string_equal(t->ce_type, "mft.message.received.v1");
    assert_string_equal(t->topic, MFT_TOPIC_INBOUND);
    assert_string_equal(t->topic, "mft.inbound.v1");
    assert_ptr_equal(t->descriptor, &mft__v1__message_received__descriptor);
    t = mft_event_type_find("mft.connection.rejected.v1");
    assert_non_null(t);
    assert_string_equal(t->ce_type, MFT_CE_CONNECTION_REJECTED);
    assert_string_equal(t->topic, "mft.status.v1");
    assert_ptr_equal(t->descriptor, &mft__v1__connection_rejected__descriptor);
    assert_null(mft_event_type_find("mft.message.received.v2"));
    assert_null(mft_event_type_find("mft.message.received"));
    assert_null(mft_event_type_find(""));
    assert_null(mft_event_type_find(NULL));
    size_t n = 0;
    for (const struct mft_event_type *e = mft_event_types(); e->ce_type; e++, n++) {
        assert_ptr_equal(mft_event_type_find(e->ce_type), e);
        assert_non_null(e->topic);
        assert_non_null(e->descriptor);
    }
    assert_int_equal(n, 4);
    t = mft_event_type_find(MFT_CE_SEND_REQUESTED);
    assert_non_null(t);
    assert_string_equal(t->topic, "mft.outbound.v1");
    assert_ptr_equal(t->descriptor, &mft__v1__send_requested__descriptor);
    t = mft_event_type_find(MFT_CE_DELIVERY_UPDATED);
    assert_non_null(t);
    assert_string_equal(t->topic, "mft.status.v1");
    assert_ptr_equal(t->descriptor, &mft__v1__delivery_updated__descriptor);
}

static void test_message_received(void **state)
{
    (void)state;
    Mft__V1__PayloadRef p0 = MFT__V1__PAYLOAD_REF__INIT, p1 = MFT__V1__PAYLOAD_REF__INIT;
    Mft__V1__PayloadRef *payloads[] = {&p0, &p1};
    Mft__V1__TlsPeer peer = MFT__V1__TLS_PEER__INIT;
    Mft__V1__MessageReceived m = MFT__V1__MESSAGE_RECEIVED__INIT;

    p0.uri = "file:///var/lib/mft/payloads/u1/0";
    p0.size = 5000000000ULL; /* beyond 32 bits */
    p0.sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    p0.filename = "invoice \"march\".edi";
    p0.content_type = "application/EDIFACT";
    p1.uri = "file:///var/lib/mft/payloads/u1/1";
    p1.size = 0;
    p1.sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    p1.filename = "";
    p1.content_type = "text/plain; charset=utf-8";
    peer.subject = "CN=partner.example,O=Partner AG,C=DE";
    peer.issuer = "CN=Partner CA,O=Partner AG,C=DE";
    peer.serial = "0A1B2C";
    peer.sha256_fingerprint = "ab12";
    peer.not_before = "2024-01-01T00:00:00Z";
    peer.not_after = "2026-01-01T00:00:00Z";
    peer.protocol = "TLSv1.3";
    peer.cipher = "TLS_AES_256_GCM_SHA384";
    m.message_id = "0b0e8c4e-8f3f-4e59-a2b5-7e1c3c5d9f01";
    m.as2_message_id = "<abc@partner>";
    m.as2_from = "PARTNER AS2";
    m.as2_to = "MYCOMPANY";
    m.station_id = "st1";
    m.partner_id = "p1";
    m.protocol = "as2";
    m.n_payloads = 2;
    m.payloads = payloads;
    m.mic = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
    m.mic_alg = "sha-256";
    m.signed_ = 1;
    m.sign_alg = "sha-256";
    m.encrypted = 0;
    m.encryption_alg = "";
    m.compressed = 1;
    m.compression_alg = "zlib";
    m.mdn_mode = "sync";
    m.mdn_disposition = "automatic-action/MDN-sent-automatically; processed";
    m.mdn_signed = 1;
    m.tls_peer = &peer;
    m.peer_address = "192.0.2.7:51234";
    m.received_time = "2024-05-01T12:34:56.789Z";

    size_t len;
    unsigned char *buf = pack(&m.base, &len);
    json_t *j = mft_event_to_json(MFT_CE_MESSAGE_RECEIVED, buf, len);
    assert_non_null(j);
    expect_keys(j, &mft__v1__message_received__descriptor);
    expect_str(j, "message_id", "0b0e8c4e-8f3f-4e59-a2b5-7e1c3c5d9f01");
    expect_str(j, "as2_message_id", "<abc@partner>");
    expect_str(j, "as2_from", "PARTNER AS2");
    expect_str(j, "as2_to", "MYCOMPANY");
    expect_str(j, "station_id", "st1");
    expect_str(j, "partner_id", "p1");
    expect_str(j, "protocol", "as2");
    expect_str(j, "mic", "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=");
    expect_str(j, "mic_alg", "sha-256");
    expect_bool(j, "signed", 1); /* the .proto name, not protobuf-c's signed_ */
    assert_null(json_object_get(j, "signed_"));
    expect_str(j, "sign_alg", "sha-256");
    expect_bool(j, "encrypted", 0);
    expect_str(j, "encryption_alg", "");
    expect_bool(j, "compressed", 1);
    expect_str(j, "compression_alg", "zlib");
    expect_str(j, "mdn_mode", "sync");
    expect_str(j, "mdn_disposition", "automatic-action/MDN-sent-automatically; processed");
    expect_bool(j, "mdn_signed", 1);
    expect_str(j, "peer_address", "192.0.2.7:51234");
    expect_str(j, "received_time", "2024-05-01T12:34:56.789Z");

    json_t *arr = json_object_get(j, "payloads");
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 2);
    json_t *j0 = json_array_get(arr, 0), *j1 = json_array_get(arr, 1);
    expect_keys(j0, &mft__v1__payload_ref__descriptor);
    expect_str(j0, "uri", "file:///var/lib/mft/payloads/u1/0");
    expect_int(j0, "size", 5000000000LL);
    expect_str(j0, "sha256", p0.sha256);
    expect_str(j0, "filename", "invoice \"march\".edi");
    expect_str(j0, "content_type", "application/EDIFACT");
    expect_keys(j1, &mft__v1__payload_ref__descriptor);
    expect_str(j1, "uri", "file:///var/lib/mft/payloads/u1/1");
    expect_int(j1, "size", 0);
    expect_str(j1, "sha256", p1.sha256);
    expect_str(j1, "filename", "");
    expect_str(j1, "content_type", "text/plain; charset=utf-8");

    json_t *tp = json_object_get(j, "tls_peer");
    expect_keys(tp, &mft__v1__tls_peer__descriptor);
    expect_str(tp, "subject", "CN=partner.example,O=Partner AG,C=DE");
    expect_str(tp, "issuer", "CN=Partner CA,O=Partner AG,C=DE");
    expect_str(tp, "serial", "0A1B2C");
    expect_str(tp, "sha256_fingerprint", "ab12");
    expect_str(tp, "not_before", "2024-01-01T00:00:00Z");
    expect_str(tp, "not_after", "2026-01-01T00:00:00Z");
    expect_str(tp, "protocol", "TLSv1.3");
    expect_str(tp, "cipher", "TLS_AES_256_GCM_SHA384");
    expect_serializable(j);
    json_decref(j);

    /* unknown fields (a newer producer) are skipped */
    unsigned char *more = realloc(buf, len + 4);
    assert_non_null(more);
    buf = more;
    memcpy(buf + len, "\xf8\x06\x2a", 3); /* field 111, varint 42 */
    j = mft_event_to_json(MFT_CE_MESSAGE_RECEIVED, buf, len + 3);
    assert_non_null(j);
    expect_keys(j, &mft__v1__message_received__descriptor);
    expect_str(j, "received_time", "2024-05-01T12:34:56.789Z");
    json_decref(j);

    /* truncated: every proper prefix that cuts a field is refused */
    size_t refused = 0;
    for (size_t cut = 1; cut < len; cut++) {
        j = mft_event_to_json(MFT_CE_MESSAGE_RECEIVED, buf, cut);
        refused += j == NULL;
        json_decref(j);
    }
    assert_true(refused > len / 2);
    assert_null(mft_event_to_json(MFT_CE_MESSAGE_RECEIVED, buf, len - 1));

    /* the right bytes under an unknown type */
    assert_null(mft_event_to_json("mft.message.received.v9", buf, len));
    assert_null(mft_event_to_json(NULL, buf, len));
    free(buf);
}

static void test_defaults(void **state)
{
    (void)state;
    /* zero bytes are the all-default message: every field present */
    json_t *j = mft_event_to_json(MFT_CE_MESSAGE_RECEIVED, "", 0);
    assert_non_null(j);
    expect_keys(j, &mft__v1__message_received__descriptor);
    expect_str(j, "message_id", "");
    expect_bool(j, "signed", 0);
    expect_bool(j, "mdn_signed", 0);
    assert_true(json_is_array(json_object_get(j, "payloads")));
    assert_int_equal(json_array_size(json_object_get(j, "payloads")), 0);
    assert_true(json_is_null(json_object_get(j, "tls_peer")));
    expect_serializable(j);
    json_decref(j);

    j = mft_event_to_json(MFT_CE_CONNECTION_REJECTED, NULL, 0);
    assert_non_null(j);
    expect_keys(j, &mft__v1__connection_rejected__descriptor);
    expect_int(j, "http_status", 0);
    assert_true(json_is_null(json_object_get(j, "error")));
    assert_int_equal(json_array_size(json_object_get(j, "alerts_sent")), 0);
    json_decref(j);
}

static void test_connection_rejected(void **state)
{
    (void)state;
    Mft__V1__ConnectionRejected m = MFT__V1__CONNECTION_REJECTED__INIT;
    Mft__V1__Error e = MFT__V1__ERROR__INIT;
    Mft__V1__TlsPeer peer = MFT__V1__TLS_PEER__INIT;
    char *sent[] = {"certificate_required"};
    char *recv[] = {"bad_certificate", "unknown_ca", "Grüße ✓"};

    e.kind = "TLS_CLIENT_CERT_UNTRUSTED";
    e.message = "the client's TLS certificate is not issued by a trusted CA";
    e.detail = "verify: The certificate issuer is unknown.";
    e.remedy = "register the partner's TLS certificate or its CA with mftctl apply";
    peer.subject = "CN=intruder";
    peer.serial = "01";
    m.direction = "inbound";
    m.stage = "tls_handshake";
    m.peer_address = "198.51.100.4:40000";
    m.sni = "as2.example.com";
    m.station_id = "st1";
    m.partner_id = "";
    m.as2_from = "FROM";
    m.as2_to = "TO";
    m.as2_message_id = "mid";
    m.http_status = 4000000000u; /* uint32 beyond int32 */
    m.mdn_disposition = "automatic-action/MDN-sent-automatically; failed/Failure: x";
    m.error = &e;
    m.tls_peer = &peer;
    m.tls_version_offered = "TLS1.3";
    m.n_alerts_sent = 1;
    m.alerts_sent = sent;
    m.n_alerts_received = 3;
    m.alerts_received = recv;
    m.time = "2024-05-01T00:00:00.000Z";

    size_t len;
    unsigned char *buf = pack(&m.base, &len);
    json_t *j = mft_event_to_json(MFT_CE_CONNECTION_REJECTED, buf, len);
    assert_non_null(j);
    expect_keys(j, &mft__v1__connection_rejected__descriptor);
    expect_str(j, "direction", "inbound");
    expect_str(j, "stage", "tls_handshake");
    expect_str(j, "peer_address", "198.51.100.4:40000");
    expect_str(j, "sni", "as2.example.com");
    expect_str(j, "station_id", "st1");
    expect_str(j, "partner_id", "");
    expect_str(j, "as2_from", "FROM");
    expect_str(j, "as2_to", "TO");
    expect_str(j, "as2_message_id", "mid");
    expect_int(j, "http_status", 4000000000LL);
    expect_str(j, "mdn_disposition", "automatic-action/MDN-sent-automatically; failed/Failure: x");
    expect_str(j, "tls_version_offered", "TLS1.3");
    expect_str(j, "time", "2024-05-01T00:00:00.000Z");
    json_t *je = json_object_get(j, "error");
    expect_keys(je, &mft__v1__error__descriptor);
    expect_str(je, "kind", "TLS_CLIENT_CERT_UNTRUSTED");
    expect_str(je, "message", e.message);
    expect_str(je, "detail", e.detail);
    expect_str(je, "remedy", e.remedy);
    json_t *tp = json_object_get(j, "tls_peer");
    expect_keys(tp, &mft__v1__tls_peer__descriptor);
    expect_str(tp, "subject", "CN=intruder");
    expect_str(tp, "serial", "01");
    expect_str(tp, "issuer", "");
    json_t *as = json_object_get(j, "alerts_sent"), *ar = json_object_get(j, "alerts_received");
    assert_int_equal(json_array_size(as), 1);
    assert_string_equal(json_string_value(json_array_get(as, 0)), "certificate_required");
    assert_int_equal(json_array_size(ar), 3);
    assert_string_equal(json_string_value(json_array_get(ar, 0)), "bad_certificate");
    assert_string_equal(json_string_value(json_array_get(ar, 1)), "unknown_ca");
    assert_string_equal(json_string_value(json_array_get(ar, 2)), "Grüße ✓");
    expect_serializable(j);
    json_decref(j);
    free(buf);
}

static void test_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\xff\xff\xff\xff", 4},
        {"\x0a\x05"
         "ab",
         4},             /* length beyond the end */
        {"\x08\x01", 2}, /* string field 1 as a varint */
        {"\x0a", 1},     /* tag without length */
        {"\x42\x03\x0a\x0a"
         "x",
         5},             /* payloads[0] whose uri overruns */
        {"\x0f", 1},     /* wire type 7 */
        {"\x00\x01", 2}, /* field number 0 */
        {"\x58\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12}, /* 11-byte varint */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *j = mft_event_to_json(MFT_CE_MESSAGE_RECEIVED, bad[i].bytes, bad[i].len);
        if (j)
            fail_msg("garbage case %zu decoded", i);
    }
    /* a nested Error that does not decode */
    assert_null(mft_event_to_json(MFT_CE_CONNECTION_REJECTED, "\x62\x02\x0a\x05", 4));
    /* random bytes never crash and give an object or NULL */
    unsigned seed = 1;
    unsigned char rnd[64];
    for (int round = 0; round < 2000; round++) {
        size_t n = (size_t)(round % 64);
        for (size_t i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            rnd[i] = (unsigned char)(seed >> 16);
        }
        json_t *j = mft_event_to_json(
            round & 1 ? MFT_CE_MESSAGE_RECEIVED : MFT_CE_CONNECTION_REJECTED, rnd, n);
        assert_true(j == NULL || json_is_object(j));
        json_decref(j);
    }
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    /* a producer that puts non-UTF-8 bytes into a string must not make the
     * field disappear from the rendering */
    static const char *const cases[][2] = {
        {"caf\xe9", "caf\xef\xbf\xbd"},             /* Latin-1 */
        {"\xc3\xa9t\xc3", "\xc3\xa9t\xef\xbf\xbd"}, /* cut sequence */
        {"a\xc0\xaf"
         "b",
         "a\xef\xbf\xbd\xef\xbf\xbd"
         "b"},                                                    /* overlong '/' */
        {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* surrogate */
        {"\xf4\x90\x80\x80!", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!"},
        {"ok \xf0\x9f\x98\x80", "ok \xf0\x9f\x98\x80"}, /* valid 4-byte kept */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Mft__V1__MessageReceived m = MFT__V1__MESSAGE_RECEIVED__INIT;
        m.as2_from = (char *)cases[i][0];
        m.as2_to = "TO";
        size_t len;
        unsigned char *buf = pack(&m.base, &len);
        json_t *j = mft_event_to_json(MFT_CE_MESSAGE_RECEIVED, buf, len);
        assert_non_null(j);
        expect_keys(j, &mft__v1__message_received__descriptor);
        expect_str(j, "as2_to", "TO");
        expect_str(j, "as2_from", cases[i][1]);
        expect_serializable(j);
        json_decref(j);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_catalogue), cmocka_unit_test(test_message_received),
        cmocka_unit_test(test_defaults),  cmocka_unit_test(test_connection_rejected),
        cmocka_unit_test(test_garbage),   cmocka_unit_test(test_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
