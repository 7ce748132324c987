/*
 * test_outbox — the outgoing state machine against a real redis-server and the
 * embedded Kafka broker (both started by mft_testenv.h): what a change writes
 * to Redis and publishes, the guard that keeps an ended message ended, the
 * transactional outbox (a change recorded while Kafka is down is published
 * later, with the same ce_id), and the refusals of mft_outbox_take_mdn.
 */
#include "mft_testenv.h"

#include "mft_bus.h"
#include "mft_events.h"
#include "mft_outbox.h"
#include "mft_store.h"
#include "mft/v1/events.pb-c.h"

#include <hiredis/hiredis.h>
#include <stdarg.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static struct mft_test_redis redis;
static struct mft_test_broker broker;

static int group_setup(void **state)
{
    (void)state;
    memset(&redis, 0, sizeof(redis));
    memset(&broker, 0, sizeof(broker));
    if (mft_test_redis_start(&redis) != 0)
        return -1;
    return mft_test_broker_start(&broker);
}

static int group_teardown(void **state)
{
    (void)state;
    mft_test_broker_stop(&broker);
    mft_test_redis_stop(&redis, 0);
    return 0;
}

static long long llen_events(void)
{
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "LLEN %s", MFT_STORE_OUT_EVENTS_KEY);
    assert_non_null(r);
    long long n = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Reads mft.status.v1 to its end; returns the DeliveryUpdated events of uuid
 * (states joined by spaces into states, the last ce_id into ce_id). */
static int read_updates(const char *uuid, char *states, size_t slen, char *ce_id)
{
    struct mft_bus_consumer *c = NULL;
    struct mft_err err;
    int n = 0;
    states[0] = '\0';
    assert_int_equal(mft_bus_consumer_open_all(broker.addr, MFT_TOPIC_STATUS, &c, &err), 0);
    struct mft_bus_record rec;
    while (mft_bus_consumer_poll(c, 3000, &rec, &err) == 1) {
        Mft__V1__DeliveryUpdated *ev =
            mft__v1__delivery_updated__unpack(NULL, rec.value_len, rec.value);
        if (ev && strcmp(ev->message_id, uuid) == 0) {
            snprintf(states + strlen(states), slen - strlen(states), "%s%s", n ? " " : "",
                     ev->state);
            snprintf(ce_id, 64, "%s", mft_bus_record_header(&rec, "ce_id"));
            assert_string_equal(rec.key, "p1");
            n++;
        }
        if (ev)
            mft__v1__delivery_updated__free_unpacked(ev, NULL);
        mft_bus_record_free(&rec);
    }
    mft_bus_consumer_close(c);
    return n;
}

static void test_changes_guard_and_deferred_events(void **state)
{
    (void)state;
    struct mft_store *st = NULL;
    struct mft_bus *bus = NULL, *dead = NULL;
    struct mft_err err;
    mft_err_clear(&err);
    assert_int_equal(mft_store_open(redis.url, &st, &err), 0);
    assert_int_equal(mft_bus_open(broker.addr, "/test/outbox", &bus, &err), 0);
    struct mft_outbox ob = {st, bus, 5000};
    const char *uuid = "0b2c8d8e-1111-4222-8333-444455556666";
    struct mft_outbox_msg m = {uuid, "req-1", "corr-1", "<m1@test>", "s1", "p1"};

    /* created: record, listing, schedule, index, event */
    const char *fields[] = {"request_id",     "req-1",     "partner", "p1",
                            "as2_message_id", "<m1@test>", NULL};
    struct mft_outbox_change c = {
        .state = MFT_OUT_QUEUED,
        .extra = fields,
        .op = {.station_id = "s1",
               .created_ms = 1000,
               .index_mid = "<m1@test>",
               .schedule = MFT_STORE_OUT_RETRY,
               .due_ms = 5},
    };
    assert_int_equal(mft_outbox_change(&ob, &m, &c, &err), 0);
    char found[64];
    assert_int_equal(mft_store_out_by_mid(st, "m1@test", found, sizeof(found), &err), 1);
    assert_string_equal(found, uuid);
    char **due = NULL;
    size_t n = 0;
    assert_int_equal(mft_store_out_due(st, MFT_STORE_OUT_RETRY, 10, 10, &due, &n, &err), 0);
    assert_int_equal(n, 1);
    mft_store_free_list(due, n);

    /* delivered, with the error cleared; the schedule emptied */
    struct mft_err none;
    mft_err_clear(&none);
    struct mft_outbox_change d = {.state = MFT_OUT_DELIVERED,
                                  .attempt = 1,
                                  .mic = "abc=",
                                  .mic_alg = "sha-256",
                                  .mdn_disposition = "automatic-action/MDN-sent-automatically; "
                                                     "processed",
                                  .mdn_signed = 1,
                                  .op = {.unschedule = {MFT_STORE_OUT_RETRY, NULL}}};
    assert_int_equal(mft_outbox_change(&ob, &m, &d, &err), 0);
    assert_int_equal(mft_store_out_due(st, MFT_STORE_OUT_RETRY, 10, 10, &due, &n, &err), 0);
    assert_int_equal(n, 0);
    mft_store_free_list(due, n);

    /* an ended message is never moved back: nothing written, nothing published */
    struct mft_outbox_change late = {.state = MFT_OUT_SENT, .attempt = 1};
    assert_int_equal(mft_outbox_change(&ob, &m, &late, &err), 1);
    char **kv = NULL;
    assert_int_equal(mft_store_out_get(st, uuid, &kv, &n, &err), 0);
    assert_string_equal(mft_store_kv(kv, n, "state"), "delivered");
    assert_string_equal(mft_store_kv(kv, n, "mic"), "abc=");
    assert_string_equal(mft_store_kv(kv, n, "mdn_signed"), "1");
    mft_store_free_list(kv, n);

    char states[256], ce_id[64];
    assert_int_equal(read_updates(uuid, states, sizeof(states), ce_id), 2);
    assert_string_equal(states, "queued delivered");
    assert_int_equal(llen_events(), 0);

    /* Kafka unreachable: the change is recorded, its event kept ... */
    int port = mft_test_free_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(mft_bus_open(addr, "/test/outbox", &dead, &err), 0);
    struct mft_outbox down = {st, dead, 1500};
    const char *uuid2 = "0b2c8d8e-1111-4222-8333-777788889999";
    struct mft_outbox_msg m2 = {uuid2, "req-2", "", "<m2@test>", "s1", "p1"};
    struct mft_outbox_change q = {.state = MFT_OUT_QUEUED,
                                  .op = {.station_id = "s1", .created_ms = 2000}};
    assert_int_equal(mft_outbox_change(&down, &m2, &q, &err), 0);
    assert_int_equal(mft_store_out_get(st, uuid2, &kv, &n, &err), 0);
    assert_string_equal(mft_store_kv(kv, n, "state"), "queued");
    mft_store_free_list(kv, n);
    assert_int_equal(llen_events(), 1);
    char **entries = NULL;
    assert_int_equal(mft_store_out_events(st, 10, &entries, &n, &err), 0);
    assert_int_equal(n, 1);
    char kept_id[64];
    snprintf(kept_id, sizeof(kept_id), "%.36s", strchr(entries[0], ' ') + 1);
    mft_store_free_list(entries, n);
    assert_int_equal(read_updates(uuid2, states, sizeof(states), ce_id), 0);
    /* ... a flush while Kafka is still down keeps it ... */
    assert_int_equal(mft_outbox_flush(&down, 10), 0);
    assert_int_equal(llen_events(), 1);
    /* ... a young entry is left alone (its own publication may be under way) ... */
    assert_int_equal(mft_outbox_flush(&ob, 10), 0);
    assert_int_equal(llen_events(), 1);
    /* ... and once it is old enough, it goes out with its original ce_id */
    mft_test_sleep_ms(2500);
    struct mft_outbox quick = {st, bus, 1000}; /* the entry is now > 3 s old */
    assert_int_equal(mft_outbox_flush(&quick, 10), 1);
    assert_int_equal(llen_events(), 0);
    assert_int_equal(read_updates(uuid2, states, sizeof(states), ce_id), 1);
    assert_string_equal(states, "queued");
    assert_string_equal(ce_id, kept_id);

    mft_bus_close(dead, 100);
    mft_bus_close(bus, 1000);
    mft_store_close(st);
}

static void test_take_mdn_refusals(void **state)
{
    (void)state;
    struct mft_store *st = NULL;
    struct mft_bus *bus = NULL;
    struct mft_err err;
    mft_err_clear(&err);
    assert_int_equal(mft_store_open(redis.url, &st, &err), 0);
    assert_int_equal(mft_bus_open(broker.addr, "/test/outbox", &bus, &err), 0);
    struct mft_outbox ob = {st, bus, 5000};
    struct mft_outbox_mdn_result res;

    /* not an MDN at all */
    const char *html = "<html>hello</html>";
    assert_int_equal(mft_outbox_take_mdn(&ob, NULL, NULL, "p1", "text/html",
                                         (const unsigned char *)html, strlen(html), NULL, 0, &res,
                                         &err),
                     2);
    assert_int_equal(err.kind, MFT_E_MDN_INVALID);

    /* an MDN for a Message-ID we never sent, then one for another partner's message */
    char mdn[1024];
#define MDN_FMT                                                                                    \
    "--b\r\nContent-Type: text/plain\r\n\r\nok\r\n--b\r\n"                                         \
    "Content-Type: message/disposition-notification\r\n\r\n"                                       \
    "Original-Message-ID: %s\r\nFinal-Recipient: rfc822; P1\r\n"                                   \
    "Disposition: automatic-action/MDN-sent-automatically; processed\r\n"                          \
    "\r\n--b--\r\n"
    const char *ct = "multipart/report; report-type=disposition-notification; boundary=b";
    snprintf(mdn, sizeof(mdn), MDN_FMT, "<never@sent>");
    assert_int_equal(mft_outbox_take_mdn(&ob, NULL, NULL, "p1", ct, (unsigned char *)mdn,
                                         strlen(mdn), NULL, 0, &res, &err),
                     1);
    assert_int_equal(err.kind, MFT_E_MDN_INVALID);
    assert_non_null(strstr(err.detail, "never@sent"));

    const char *uuid = "9b2c8d8e-1111-4222-8333-444455556666";
    struct mft_outbox_msg m = {uuid, "req-9", "", "<m9@test>", "s1", "p1"};
    const char *fields[] = {"partner", "p1", "as2_message_id", "<m9@test>", NULL};
    struct mft_outbox_change c = {
        .state = MFT_OUT_SENT,
        .extra = fields,
        .op = {.station_id = "s1", .created_ms = 3000, .index_mid = "<m9@test>"}};
    assert_int_equal(mft_outbox_change(&ob, &m, &c, &err), 0);
    snprintf(mdn, sizeof(mdn), MDN_FMT, "<m9@test>");
    assert_int_equal(mft_outbox_take_mdn(&ob, NULL, NULL, "p2", ct, (unsigned char *)mdn,
                                         strlen(mdn), NULL, 0, &res, &err),
                     1);
    assert_non_null(strstr(err.message, "p2"));
    char **kv = NULL;
    size_t n = 0;
    assert_int_equal(mft_store_out_get(st, uuid, &kv, &n, &err), 0);
    assert_string_equal(mft_store_kv(kv, n, "state"), "sent");
    mft_store_free_list(kv, n);

    /* from the right partner, but it is no longer registered (no registry): failed */
    assert_int_equal(mft_outbox_take_mdn(&ob, NULL, NULL, "p1", ct, (unsigned char *)mdn,
                                         strlen(mdn), NULL, 0, &res, &err),
                     0);
    assert_string_equal(res.state, "failed");
    assert_int_equal(res.outcome.kind, MFT_E_UNKNOWN_PARTNER);
    /* a repeat: nothing more happens */
    assert_int_equal(mft_outbox_take_mdn(&ob, NULL, NULL, "p1", ct, (unsigned char *)mdn,
                                         strlen(mdn), NULL, 0, &res, &err),
                     0);
    assert_int_equal(res.already_final, 1);

    mft_bus_close(bus, 1000);
    mft_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_changes_guard_and_deferred_events),
        cmocka_unit_test(test_take_mdn_refusals),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
