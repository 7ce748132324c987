/*
 * Unit tests for mft_bus against the real embedded broker ($MFT_BIN/
 * mft-devbroker, librdkafka's mock cluster on loopback): publish, consume
 * back with every CloudEvents header, protobuf round trip, concurrent
 * publishers, a broker that goes away, and kcat as an independent client.
 */
#include "mft_bus.h"
#include "mft_testenv.h"
#include "mft/v1/events.pb-c.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>

static struct mft_test_broker broker;

static int group_setup(void **state)
{
    (void)state;
    return mft_test_broker_start(&broker);
}

static int group_teardown(void **state)
{
    (void)state;
    int st = mft_test_broker_stop(&broker);
    /* The devbroker exits 0 on SIGTERM. */
    return (st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) ? 0 : -1;
}

static struct mft_bus *open_bus(const char *addr)
{
    struct mft_bus *bus = NULL;
    struct mft_err err;
    mft_err_clear(&err);
    int rc = mft_bus_open(addr, "/mft/test/unit", &bus, &err);
    if (rc != 0)
        fprintf(stderr, "bus open: %s %s\n", err.message, err.detail);
    assert_int_equal(rc, 0);
    return bus;
}

/* Polls c until a record whose ce_id is `id` arrives (others are skipped).
 * Returns 1 and fills rec, or 0 after timeout_ms. */
static int consume_id(struct mft_bus_consumer *c, const char *id, int timeout_ms,
                      struct mft_bus_record *rec)
{
    long long dl = mft_test_now_ms() + timeout_ms;
    struct mft_err err;
    while (mft_test_now_ms() < dl) {
        int r = mft_bus_consumer_poll(c, 500, rec, &err);
        assert_int_not_equal(r, -1);
        if (r == 1) {
            const char *h = mft_bus_record_header(rec, "ce_id");
            if (h && strcmp(h, id) == 0)
                return 1;
            mft_bus_record_free(rec);
        }
    }
    return 0;
}

static int is_uuid4(const char *s)
{
    if (strlen(s) != 36)
        return 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return 0;
        } else if (!strchr("0123456789abcdef", s[i])) {
            return 0;
        }
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

/* "YYYY-MM-DDTHH:MM:SS.mmmZ", within 60 s of now. */
static void assert_ce_time(const char *t)
{
    assert_non_null(t);
    assert_int_equal(strlen(t), 24);
    assert_int_equal(t[19], '.');
    assert_int_equal(t[23], 'Z');
    for (int i = 20; i < 23; i++)
        assert_true(t[i] >= '0' && t[i] <= '9');
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(t, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(end);
    assert_ptr_equal(end, t + 19);
    time_t when = timegm(&tm);
    time_t now = time(NULL);
    assert_true(when > now - 60 && when < now + 60);
}

static void test_uuid4(void **state)
{
    (void)state;
    char a[37], b[37];
    mft_uuid4(a);
    mft_uuid4(b);
    assert_true(is_uuid4(a));
    assert_true(is_uuid4(b));
    assert_string_not_equal(a, b);
}

static void test_open_errors_and_ping(void **state)
{
    (void)state;
    struct mft_bus *bus = (struct mft_bus *)1;
    struct mft_err err;
    assert_int_equal(mft_bus_open("", "/src", &bus, &err), -1);
    assert_null(bus);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_int_equal(mft_bus_open(broker.addr, NULL, &bus, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    mft_bus_close(NULL, 0);
    /* librdkafka's debug contexts are checked when the bus opens */
    setenv("MFT_KAFKA_DEBUG", "no-such-context", 1);
    assert_int_equal(mft_bus_open(broker.addr, "/src", &bus, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_non_null(strstr(err.message, "MFT_KAFKA_DEBUG"));
    unsetenv("MFT_KAFKA_DEBUG");
    /* nobody listening: the topic metadata asked for at open does not hold up
     * a close right after it */
    long long t0 = mft_test_now_ms();
    bus = open_bus("127.0.0.1:1");
    mft_bus_close(bus, 0);
    assert_true(mft_test_now_ms() - t0 < 5000);

    /* The mock cluster listens on loopback only. */
    assert_memory_equal(broker.addr, "127.0.0.1:", 10);
    bus = open_bus(broker.addr);
    mft_err_clear(&err);
    assert_int_equal(mft_bus_ping(bus, 5000, &err), 0);
    mft_bus_close(bus, 1000);
}

static Mft__V1__PayloadRef *payload_ref(Mft__V1__PayloadRef *p, const char *uri, uint64_t size,
                                        const char *sha, const char *name)
{
    mft__v1__payload_ref__init(p);
    p->uri = (char *)uri;
    p->size = size;
    p->sha256 = (char *)sha;
    p->filename = (char *)name;
    p->content_type = "application/edifact";
    return p;
}

static void test_publish_consume_roundtrip(void **state)
{
    (void)state;
    Mft__V1__PayloadRef p0, p1;
    Mft__V1__PayloadRef *ps[] = {
        payload_ref(&p0, "file:///var/lib/mft/payloads/u/0", 1234,
                    "4c16c33b14f08bc1bbd4f4f4cb9d2fbd3e9e8a01be5d09b3fe2d0b8ea2c0d52e",
                    "order.edi"),
        payload_ref(&p1, "file:///var/lib/mft/payloads/u/1", 0,
                    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", ""),
    };
    Mft__V1__TlsPeer tls = MFT__V1__TLS_PEER__INIT;
    tls.subject = "CN=partner.example,O=Zeta";
    tls.issuer = "CN=Zeta CA";
    tls.serial = "0A1B";
    tls.sha256_fingerprint = "ab";
    tls.not_before = "2024-01-01T00:00:00Z";
    tls.not_after = "2026-01-01T00:00:00Z";
    tls.protocol = "TLSv1.3";
    tls.cipher = "TLS_AES_256_GCM_SHA384";
    Mft__V1__MessageReceived m = MFT__V1__MESSAGE_RECEIVED__INIT;
    m.message_id = "6f1c7d8e-0000-4000-8000-000000000001";
    m.as2_message_id = "20240501-123456-42@partner.example";
    m.as2_from = "mendelsontestAS2";
    m.as2_to = "ACME";
    m.station_id = "acme";
    m.partner_id = "zeta";
    m.protocol = "as2";
    m.n_payloads = 2;
    m.payloads = ps;
    m.mic = "G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=";
    m.mic_alg = "sha-256";
    m.signed_ = 1;
    m.sign_alg = "sha-256";
    m.encrypted = 1;
    m.encryption_alg = "des-ede3-cbc";
    m.compressed = 0;
    m.compression_alg = "";
    m.mdn_mode = "sync";
    m.mdn_disposition = "automatic-action/MDN-sent-automatically; processed";
    m.mdn_signed = 1;
    m.tls_peer = &tls;
    m.peer_address = "127.0.0.1:50000";
    m.received_time = "2024-05-01T12:34:56.789Z";

    size_t len = mft__v1__message_received__get_packed_size(&m);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(mft__v1__message_received__pack(&m, buf), len);

    struct mft_bus *bus = open_bus(broker.addr);
    struct mft_err err;
    char id[37];
    mft_err_clear(&err);
    assert_int_equal(mft_bus_publish(bus, MFT_TOPIC_INBOUND, "zeta", "mft.message.received.v1",
                                     NULL, buf, len, 10000, id, &err),
                     0);
    assert_true(is_uuid4(id));
    /* A caller-chosen ce_id is used as given. */
    char id2[37];
    assert_int_equal(mft_bus_publish(bus, MFT_TOPIC_INBOUND, "zeta", "mft.message.received.v1",
                                     "fixed-id-1", buf, len, 10000, id2, &err),
                     0);
    assert_string_equal(id2, "fixed-id-1");
    mft_bus_close(bus, 1000);

    struct mft_bus_consumer *c = NULL;
    assert_int_equal(mft_bus_consumer_open(broker.addr, MFT_TOPIC_INBOUND, NULL, &c, &err), 0);
    struct mft_bus_record rec;
    assert_int_equal(consume_id(c, id, 30000, &rec), 1);

    assert_string_equal(rec.topic, MFT_TOPIC_INBOUND);
    assert_string_equal(rec.key, "zeta");
    assert_int_equal(rec.n_headers, 6);
    assert_string_equal(mft_bus_record_header(&rec, "ce_specversion"), "1.0");
    assert_string_equal(mft_bus_record_header(&rec, "ce_id"), id);
    assert_string_equal(mft_bus_record_header(&rec, "ce_type"), "mft.message.received.v1");
    assert_string_equal(mft_bus_record_header(&rec, "ce_source"), "/mft/test/unit");
    assert_string_equal(mft_bus_record_header(&rec, "content-type"), "application/protobuf");
    assert_ce_time(mft_bus_record_header(&rec, "ce_time"));
    assert_null(mft_bus_record_header(&rec, "ce_missing"));
    assert_int_equal(rec.value_len, len);
    assert_memory_equal(rec.value, buf, len);
    /* the producer's create time and the poll time, for consumer lag */
    assert_true(rec.timestamp_ms > 0 && rec.polled_ms > 0);
    assert_true(rec.polled_ms - rec.timestamp_ms > -60000 &&
                rec.polled_ms - rec.timestamp_ms < 60000);

    Mft__V1__MessageReceived *u = mft__v1__message_received__unpack(NULL, rec.value_len, rec.value);
    assert_non_null(u);
    assert_string_equal(u->message_id, m.message_id);
    assert_string_equal(u->as2_message_id, m.as2_message_id);
    assert_string_equal(u->as2_from, m.as2_from);
    assert_string_equal(u->as2_to, m.as2_to);
    assert_string_equal(u->station_id, "acme");
    assert_string_equal(u->partner_id, "zeta");
    assert_string_equal(u->protocol, "as2");
    assert_int_equal(u->n_payloads, 2);
    assert_string_equal(u->payloads[0]->uri, p0.uri);
    assert_int_equal(u->payloads[0]->size, 1234);
    assert_string_equal(u->payloads[0]->sha256, p0.sha256);
    assert_string_equal(u->payloads[0]->filename, "order.edi");
    assert_string_equal(u->payloads[1]->sha256, p1.sha256);
    assert_string_equal(u->mic, m.mic);
    assert_true(u->signed_);
    assert_true(u->encrypted);
    assert_false(u->compressed);
    assert_string_equal(u->encryption_alg, "des-ede3-cbc");
    assert_string_equal(u->mdn_mode, "sync");
    assert_string_equal(u->mdn_disposition, m.mdn_disposition);
    assert_true(u->mdn_signed);
    assert_non_null(u->tls_peer);
    assert_string_equal(u->tls_peer->subject, tls.subject);
    assert_string_equal(u->tls_peer->cipher, tls.cipher);
    assert_string_equal(u->peer_address, m.peer_address);
    assert_string_equal(u->received_time, m.received_time);
    mft__v1__message_received__free_unpacked(u, NULL);
    mft_bus_record_free(&rec);

    assert_int_equal(consume_id(c, "fixed-id-1", 10000, &rec), 1);
    mft_bus_record_free(&rec);
    mft_bus_consumer_close(c);
    free(buf);
}

/* --- concurrent publishers ------------------------------------------------ */

#define N_THREADS 4
#define N_PER_THREAD 200

struct pub_worker {
    struct mft_bus *bus;
    int t, failures;
};

static void *publish_many(void *arg)
{
    struct pub_worker *w = arg;
    char key[16];
    snprintf(key, sizeof(key), "p%d", w->t);
    for (int i = 0; i < N_PER_THREAD; i++) {
        char id[37], val[32];
        snprintf(id, sizeof(id), "c-%d-%d", w->t, i);
        int n = snprintf(val, sizeof(val), "%d:%d", w->t, i);
        struct mft_err err;
        if (mft_bus_publish(w->bus, MFT_TOPIC_OUTBOUND, key, "mft.test.v1", id, val, (size_t)n,
                            10000, NULL, &err) != 0) {
            fprintf(stderr, "publish %s: %s\n", id, err.detail);
            w->failures++;
        }
    }
    return NULL;
}

static void test_concurrent_publishers(void **state)
{
    (void)state;
    struct mft_bus *bus = open_bus(broker.addr);
    pthread_t th[N_THREADS];
    struct pub_worker w[N_THREADS];
    long long t0 = mft_test_now_ms();
    for (int t = 0; t < N_THREADS; t++) {
        w[t] = (struct pub_worker){bus, t, 0};
        assert_int_equal(pthread_create(&th[t], NULL, publish_many, &w[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].failures, 0);
    }
    fprintf(stderr, "# %d acknowledged publishes in %lld ms\n", N_THREADS * N_PER_THREAD,
            mft_test_now_ms() - t0);
    mft_bus_close(bus, 1000);

    /* Every record arrives exactly once, and per key in publishing order. */
    static unsigned char seen[N_THREADS][N_PER_THREAD];
    int last[N_THREADS];
    memset(seen, 0, sizeof(seen));
    for (int t = 0; t < N_THREADS; t++)
        last[t] = -1;
    struct mft_bus_consumer *c = NULL;
    struct mft_err err;
    assert_int_equal(mft_bus_consumer_open(broker.addr, MFT_TOPIC_OUTBOUND, NULL, &c, &err), 0);
    int total = 0;
    long long dl = mft_test_now_ms() + 60000;
    while (total < N_THREADS * N_PER_THREAD && mft_test_now_ms() < dl) {
        struct mft_bus_record rec;
        int r = mft_bus_consumer_poll(c, 500, &rec, &err);
        assert_int_not_equal(r, -1);
        if (r == 0)
            continue;
        int t = -1, i = -1;
        char v[32];
        assert_true(rec.value_len < sizeof(v));
        memcpy(v, rec.value, rec.value_len);
        v[rec.value_len] = '\0';
        assert_int_equal(sscanf(v, "%d:%d", &t, &i), 2);
        assert_in_range(t, 0, N_THREADS - 1);
        assert_in_range(i, 0, N_PER_THREAD - 1);
        char key[16], id[37];
        snprintf(key, sizeof(key), "p%d", t);
        snprintf(id, sizeof(id), "c-%d-%d", t, i);
        assert_string_equal(rec.key, key);
        assert_string_equal(mft_bus_record_header(&rec, "ce_id"), id);
        assert_int_equal(seen[t][i], 0);
        seen[t][i] = 1;
        assert_true(i > last[t]);
        last[t] = i;
        total++;
        mft_bus_record_free(&rec);
    }
    assert_int_equal(total, N_THREADS * N_PER_THREAD);
    mft_bus_consumer_close(c);
}

/* --- kcat, an independent client ------------------------------------------ */

static void test_kcat_lists_topics_and_reads_record(void **state)
{
    (void)state;
    char *out = NULL;
    char *list[] = {"kcat", "-b", broker.addr, "-L", "-J", NULL};
    int st = mft_test_run(list, &out, NULL, 20000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    json_error_t jerr;
    json_t *md = json_loads(out, 0, &jerr);
    assert_non_null(md);
    free(out);
    const char *want[] = {MFT_TOPIC_INBOUND, MFT_TOPIC_OUTBOUND, MFT_TOPIC_STATUS, MFT_TOPIC_CERTS};
    int found = 0;
    size_t i;
    json_t *topic;
    json_array_foreach(json_object_get(md, "topics"), i, topic)
    {
        const char *name = json_string_value(json_object_get(topic, "topic"));
        for (size_t k = 0; k < 4; k++)
            if (name && strcmp(name, want[k]) == 0) {
                found++;
                assert_int_equal(json_array_size(json_object_get(topic, "partitions")), 3);
            }
    }
    assert_int_equal(found, 4);
    json_decref(md);

    /* A ConnectionRejected record, read back by kcat. */
    Mft__V1__Error e = MFT__V1__ERROR__INIT;
    e.kind = "TLS_CLIENT_CERT_MISSING";
    e.message = "the client presented no TLS certificate";
    e.detail = "alert certificate_required";
    e.remedy = "configure the partner's AS2 client to send its TLS client certificate";
    Mft__V1__ConnectionRejected cr = MFT__V1__CONNECTION_REJECTED__INIT;
    char *sent[] = {"certificate_required"};
    cr.direction = "inbound";
    cr.stage = "tls_handshake";
    cr.peer_address = "127.0.0.1:40000";
    cr.partner_id = "kcat-partner";
    cr.error = &e;
    cr.n_alerts_sent = 1;
    cr.alerts_sent = sent;
    cr.time = "2024-05-01T12:34:56.789Z";
    size_t len = mft__v1__connection_rejected__get_packed_size(&cr);
    unsigned char *buf = malloc(len);
    assert_non_null(buf);
    mft__v1__connection_rejected__pack(&cr, buf);
    struct mft_bus *bus = open_bus(broker.addr);
    struct mft_err err;
    char id[37];
    assert_int_equal(mft_bus_publish(bus, MFT_TOPIC_INBOUND, "kcat-partner",
                                     "mft.connection.rejected.v1", NULL, buf, len, 10000, id, &err),
                     0);
    mft_bus_close(bus, 1000);
    free(buf);

    char *cons[] = {"kcat", "-C", "-b", broker.addr, "-t", MFT_TOPIC_INBOUND,
                    "-e",   "-J", "-o", "beginning", NULL};
    size_t outlen = 0;
    st = mft_test_run(cons, &out, &outlen, 30000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* A plain substring check on the raw output, independent of parsing. */
    assert_non_null(strstr(out, "\"ce_type\",\"mft.connection.rejected.v1\""));
    int matched = 0;
    for (char *line = out, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        /* kcat escapes control bytes but copies bytes >= 0x80 of the binary
         * payload as they are (not UTF-8): mask them so the JSON parses. */
        for (unsigned char *q = (unsigned char *)line; *q; q++)
            if (*q >= 0x80)
                *q = '?';
        json_t *j = json_loads(line, JSON_ALLOW_NUL, &jerr);
        assert_non_null(j);
        json_t *h = json_object_get(j, "headers");
        const char *ce_id = NULL, *ce_type = NULL;
        for (size_t k = 0; k + 1 < json_array_size(h); k += 2) {
            const char *n = json_string_value(json_array_get(h, k));
            const char *v = json_string_value(json_array_get(h, k + 1));
            if (n && strcmp(n, "ce_id") == 0)
                ce_id = v;
            if (n && strcmp(n, "ce_type") == 0)
                ce_type = v;
        }
        if (ce_id && strcmp(ce_id, id) == 0) {
            matched++;
            assert_non_null(ce_type);
            assert_string_equal(ce_type, "mft.connection.rejected.v1");
            assert_string_equal(json_string_value(json_object_get(j, "key")), "kcat-partner");
            assert_string_equal(json_string_value(json_object_get(j, "topic")), MFT_TOPIC_INBOUND);
        }
        json_decref(j);
    }
    assert_int_equal(matched, 1);
    free(out);
}

/* --- the broker goes away --------------------------------------------------- */

static void test_broker_gone(void **state)
{
    (void)state;
    struct mft_test_broker b2;
    assert_int_equal(mft_test_broker_start(&b2), 0);
    struct mft_bus *bus = open_bus(b2.addr);
    struct mft_err err;
    assert_int_equal(
        mft_bus_publish(bus, MFT_TOPIC_STATUS, "p", "mft.test.v1", NULL, "x", 1, 10000, NULL, &err),
        0);
    int st = mft_test_broker_stop(&b2);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

    long long t0 = mft_test_now_ms();
    mft_err_clear(&err);
    assert_int_equal(
        mft_bus_publish(bus, MFT_TOPIC_STATUS, "p", "mft.test.v1", NULL, "y", 1, 2000, NULL, &err),
        -1);
    long long dt = mft_test_now_ms() - t0;
    assert_int_equal(err.kind, MFT_E_BUS_UNAVAILABLE);
    assert_string_equal(mft_err_kind_name(err.kind), "BUS_UNAVAILABLE");
    assert_true(err.detail[0] != '\0');
    assert_true(dt >= 1900 && dt < 6000);

    mft_err_clear(&err);
    assert_int_equal(mft_bus_ping(bus, 1000, &err), -1);
    assert_int_equal(err.kind, MFT_E_BUS_UNAVAILABLE);

    t0 = mft_test_now_ms();
    mft_bus_close(bus, 500); /* drops the unacknowledged record, frees its state */
    assert_true(mft_test_now_ms() - t0 < 5000);
}

static void test_devbroker_help(void **state)
{
    (void)state;
    char exe[512];
    const char *bin = getenv("MFT_BIN");
    snprintf(exe, sizeof(exe), "%s/mft-devbroker", bin ? bin : ".");
    char *argv[] = {exe, "--help", NULL};
    char *out = NULL;
    int st = mft_test_run(argv, &out, NULL, 5000);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_non_null(strstr(out, "MFT_DEVBROKER_FILE"));
    assert_non_null(strstr(out, "./.run/devbroker.addr"));
    free(out);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uuid4),
        cmocka_unit_test(test_open_errors_and_ping),
        cmocka_unit_test(test_publish_consume_roundtrip),
        cmocka_unit_test(test_concurrent_publishers),
        cmocka_unit_test(test_kcat_lists_topics_and_reads_record),
        cmocka_unit_test(test_broker_gone),
        cmocka_unit_test(test_devbroker_help),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
