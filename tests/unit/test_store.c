/*
 * Unit tests for mft_store against a real redis-server on a free loopback
 * port (started by mft_testenv.h). Every assertion on what was written is
 * checked again with raw hiredis commands, independently of mft_store.
 */
#include "mft_store.h"
#include "mft_testenv.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>

static struct mft_test_redis redis;

/* The message id below and its SHA-256, computed with
 * printf %s '20240501-123456-42@partner.example' | openssl dgst -sha256 */
#define MSGID "20240501-123456-42@partner.example"
#define MSGID_SHA256 "3c564384e37fc4265cefce69dc8e404558fe186890190f40756ddfb9d61b7f41"

static redisContext *raw_connect(void)
{
    redisContext *c = redisConnect("127.0.0.1", redis.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    return c;
}

/* Runs a raw command and returns the reply (caller frees). */
static redisReply *raw(const char *fmt, ...)
{
    redisContext *c = raw_connect();
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    assert_non_null(r);
    return r;
}

static void raw_flush(void)
{
    freeReplyObject(raw("FLUSHALL"));
}

static int group_setup(void **state)
{
    (void)state;
    memset(&redis, 0, sizeof(redis));
    return mft_test_redis_start(&redis);
}

static int group_teardown(void **state)
{
    (void)state;
    mft_test_redis_stop(&redis, 0);
    return 0;
}

static struct mft_store *open_store(void)
{
    struct mft_store *st = NULL;
    struct mft_err err;
    mft_err_clear(&err);
    int rc = mft_store_open(redis.url, &st, &err);
    if (rc != 0)
        fprintf(stderr, "open: %s %s\n", err.message, err.detail);
    assert_int_equal(rc, 0);
    assert_non_null(st);
    return st;
}

static void test_open_ping_and_bad_urls(void **state)
{
    (void)state;
    struct mft_store *st = open_store();
    struct mft_err err;
    assert_int_equal(mft_store_ping(st, &err), 0);
    mft_store_close(st);
    mft_store_close(NULL);

    static const char *const bad[] = {"http://127.0.0.1:6379",
                                      "redis://",
                                      "redis://:pw@",
                                      "redis://127.0.0.1:0/0",
                                      "redis://127.0.0.1:99999",
                                      "redis://127.0.0.1:6379/x",
                                      NULL};
    for (size_t i = 0; bad[i]; i++) {
        st = (struct mft_store *)1;
        mft_err_clear(&err);
        assert_int_equal(mft_store_open(bad[i], &st, &err), -1);
        assert_null(st);
        assert_int_equal(err.kind, MFT_E_CONFIG);
    }

    /* A password in the URL is sent with AUTH: this server has none, so Redis
     * refuses and open fails as unavailable (proves the AUTH path runs). */
    char url[160];
    snprintf(url, sizeof(url), "redis://:s%%65cret@127.0.0.1:%d/0", redis.port);
    mft_err_clear(&err);
    assert_int_equal(mft_store_open(url, &st, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORE_UNAVAILABLE);
    assert_non_null(strstr(err.detail, "AUTH"));
}

static void test_db_number_selects_database(void **state)
{
    (void)state;
    raw_flush();
    char url[128];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/3", redis.port);
    struct mft_store *st = NULL;
    struct mft_err err;
    assert_int_equal(mft_store_open(url, &st, &err), 0);
    assert_int_equal(mft_store_put_station(st, "s3", "AS2-S3", "{}", &err), 0);
    mft_store_close(st);

    redisReply *r = raw("EXISTS mft:station:s3");
    assert_int_equal(r->integer, 0); /* not in db 0 */
    freeReplyObject(r);
    redisContext *c = raw_connect();
    freeReplyObject(redisCommand(c, "SELECT 3"));
    r = redisCommand(c, "GET mft:station:s3");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "{}");
    freeReplyObject(r);
    redisFree(c);
}

static void test_stations(void **state)
{
    (void)state;
    raw_flush();
    struct mft_store *st = open_store();
    struct mft_err err;
    long long v = -1;
    assert_int_equal(mft_store_config_version(st, &v, &err), 0);
    assert_int_equal(v, 0);

    const char *json_b = "{\"id\":\"beta\",\"as2_id\":\"BETA CORP\"}";
    assert_int_equal(mft_store_put_station(st, "beta", "BETA CORP", json_b, &err), 0);
    assert_int_equal(mft_store_put_station(st, "alpha", "ALPHA", "{\"id\":\"alpha\"}", &err), 0);
    assert_int_equal(mft_store_config_version(st, &v, &err), 0);
    assert_int_equal(v, 2);

    char *json = NULL;
    assert_int_equal(mft_store_get_station(st, "beta", &json, &err), 0);
    assert_string_equal(json, json_b);
    free(json);
    assert_int_equal(mft_store_get_station(st, "nope", &json, &err), 1);
    assert_null(json);

    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(mft_store_list_stations(st, &ids, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "alpha");
    assert_string_equal(ids[1], "beta");
    mft_store_free_list(ids, n);

    /* Raw checks: the record, the AS2 index (AS2 ids may contain spaces), the version. */
    redisReply *r = raw("GET %s", "mft:idx:station-as2:BETA CORP");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "beta");
    freeReplyObject(r);
    r = raw("GET mft:config:version");
    assert_string_equal(r->str, "2");
    freeReplyObject(r);
    r = raw("TYPE mft:station:alpha");
    assert_string_equal(r->str, "string");
    freeReplyObject(r);

    /* Ids that would break the key layout are refused. */
    assert_int_equal(mft_store_put_station(st, "a:b", "X", "{}", &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_int_equal(mft_store_put_station(st, "", "X", "{}", &err), -1);
    assert_int_equal(mft_store_put_station(st, "ok", "", "{}", &err), -1);
    assert_int_equal(mft_store_config_version(st, &v, &err), 0);
    assert_int_equal(v, 2);
    mft_store_close(st);
}

static void test_partners(void **state)
{
    (void)state;
    raw_flush();
    struct mft_store *st = open_store();
    struct mft_err err;
    assert_int_equal(mft_store_put_station(st, "acme", "ACME", "{}", &err), 0);
    assert_int_equal(mft_store_put_partner(st, "zeta", "acme", "ZETA:AS2", "{\"p\":1}", &err), 0);
    assert_int_equal(
        mft_store_put_partner(st, "mendelson", "acme", "mendelsontestAS2", "{\"p\":2}", &err), 0);
    long long v = 0;
    assert_int_equal(mft_store_config_version(st, &v, &err), 0);
    assert_int_equal(v, 3);

    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(mft_store_list_partners(st, &ids, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ids[0], "mendelson");
    assert_string_equal(ids[1], "zeta");
    mft_store_free_list(ids, n);

    char *json = NULL;
    assert_int_equal(mft_store_get_partner(st, "zeta", &json, &err), 0);
    assert_string_equal(json, "{\"p\":1}");
    free(json);
    assert_int_equal(mft_store_get_partner(st, "ghost", &json, &err), 1);

    redisReply *r = raw("GET %s", "mft:idx:partner-as2:acme:ZETA:AS2");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "zeta");
    freeReplyObject(r);
    r = raw("SMEMBERS mft:station:acme:partners");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    freeReplyObject(r);
    r = raw("SCARD mft:partners");
    assert_int_equal(r->integer, 2);
    freeReplyObject(r);

    assert_int_equal(mft_store_put_partner(st, "p1", "no:colons", "X", "{}", &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    mft_store_close(st);
}

static void test_messages(void **state)
{
    (void)state;
    raw_flush();
    struct mft_store *st = open_store();
    struct mft_err err;
    const char *f1[] = {"status", "received", "as2_message_id", "<m1@x>", "size", "42", NULL};
    const char *f2[] = {"status", "received", NULL};
    assert_int_equal(mft_store_message_put(st, "u1", "acme", "zeta", "m1", 1000, 0, f1, &err), 0);
    assert_int_equal(mft_store_message_put(st, "u2", "other", "zeta", "m2", 3000, 0, f2, &err), 0);
    assert_int_equal(mft_store_message_put(st, "u3", "acme", "zeta", "m3", 2000, 0, f2, &err), 0);

    char *val = NULL;
    assert_int_equal(mft_store_message_field(st, "u1", "as2_message_id", &val, &err), 0);
    assert_string_equal(val, "<m1@x>");
    free(val);
    assert_int_equal(mft_store_message_field(st, "u1", "missing", &val, &err), 1);
    assert_int_equal(mft_store_message_field(st, "u9", "status", &val, &err), 1);

    char **kv = NULL;
    size_t cnt = 0;
    assert_int_equal(mft_store_message_get(st, "u1", &kv, &cnt, &err), 0);
    assert_int_equal(cnt, 6);
    assert_null(kv[cnt]);
    int seen = 0;
    for (size_t i = 0; i + 1 < cnt; i += 2)
        if (strcmp(kv[i], "size") == 0 && strcmp(kv[i + 1], "42") == 0)
            seen = 1;
    assert_true(seen);
    mft_store_free_list(kv, cnt);
    assert_int_equal(mft_store_message_get(st, "u9", &kv, &cnt, &err), 1);

    char **ids = NULL;
    size_t n = 0;
    assert_int_equal(mft_store_list_messages(st, NULL, 10, &ids, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_string_equal(ids[0], "u2"); /* newest first */
    assert_string_equal(ids[1], "u3");
    assert_string_equal(ids[2], "u1");
    mft_store_free_list(ids, n);
    assert_int_equal(mft_store_list_messages(st, "acme", 1, &ids, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], "u3");
    mft_store_free_list(ids, n);
    assert_int_equal(mft_store_list_messages(st, "acme", 0, &ids, &n, &err), 0);
    assert_int_equal(n, 0);
    mft_store_free_list(ids, n);

    redisReply *r = raw("ZSCORE mft:msgs:acme u3");
    assert_string_equal(r->str, "2000");
    freeReplyObject(r);
    r = raw("TYPE mft:msg:u1");
    assert_string_equal(r->str, "hash");
    freeReplyObject(r);
    /* No dup key was written with dup_ttl_s 0. */
    r = raw("KEYS mft:dup:*");
    assert_int_equal(r->elements, 0);
    freeReplyObject(r);

    /* Odd field lists are refused and nothing is written. */
    const char *odd[] = {"status", NULL};
    assert_int_equal(mft_store_message_put(st, "u4", "acme", "zeta", "m4", 1, 0, odd, &err), -1);
    r = raw("EXISTS mft:msg:u4");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    mft_store_close(st);
}

static void test_dup_ttl(void **state)
{
    (void)state;
    raw_flush();
    struct mft_store *st = open_store();
    struct mft_err err;
    char out[64];
    assert_int_equal(mft_store_dup_get(st, "zeta", MSGID, out, sizeof(out), &err), 0);
    const char *f[] = {"status", "received", NULL};
    assert_int_equal(mft_store_message_put(st, "uuid-1", "acme", "zeta", MSGID, 5, 1, f, &err), 0);
    assert_int_equal(mft_store_dup_get(st, "zeta", MSGID, out, sizeof(out), &err), 1);
    assert_string_equal(out, "uuid-1");
    /* Another partner with the same Message-ID is not a duplicate. */
    assert_int_equal(mft_store_dup_get(st, "other", MSGID, out, sizeof(out), &err), 0);
    /* Buffer too small is an error, not a silent truncation. */
    assert_int_equal(mft_store_dup_get(st, "zeta", MSGID, out, 4, &err), -1);

    /* The key name uses the SHA-256 computed independently by openssl. */
    redisReply *r = raw("TTL mft:dup:zeta:" MSGID_SHA256);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_in_range(r->integer, 0, 1);
    freeReplyObject(r);
    r = raw("PTTL mft:dup:zeta:" MSGID_SHA256);
    assert_in_range(r->integer, 1, 1000);
    freeReplyObject(r);

    mft_test_sleep_ms(1300);
    assert_int_equal(mft_store_dup_get(st, "zeta", MSGID, out, sizeof(out), &err), 0);
    r = raw("EXISTS mft:dup:zeta:" MSGID_SHA256);
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    /* The message itself has no TTL. */
    r = raw("TTL mft:msg:uuid-1");
    assert_int_equal(r->integer, -1);
    freeReplyObject(r);
    mft_store_close(st);
}

struct worker {
    struct mft_store *st;
    int id, failures;
};

static void *put_many(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < 100; i++) {
        char uuid[32], mid[32];
        snprintf(uuid, sizeof(uuid), "t%d-%d", w->id, i);
        snprintf(mid, sizeof(mid), "m%d-%d", w->id, i);
        const char *f[] = {"status", "received", NULL};
        struct mft_err err;
        if (mft_store_message_put(w->st, uuid, "acme", "zeta", mid, i, 60, f, &err) != 0)
            w->failures++;
    }
    return NULL;
}

static void test_threads_share_one_store(void **state)
{
    (void)state;
    raw_flush();
    struct mft_store *st = open_store();
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){st, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, put_many, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    redisReply *r = raw("ZCARD mft:msgs");
    assert_int_equal(r->integer, 400);
    freeReplyObject(r);
    r = raw("EVAL %s 0", "return #redis.call('KEYS','mft:dup:zeta:*')");
    assert_int_equal(r->integer, 400);
    freeReplyObject(r);
    mft_store_close(st);
}

/* Connected clients as Redis counts them (raw()'s own included). */
static long long redis_clients(void)
{
    redisReply *r = raw("INFO clients");
    const char *p = strstr(r->str, "connected_clients:");
    long long n = p ? strtoll(p + 18, NULL, 10) : -1;
    freeReplyObject(r);
    return n;
}

static void test_connection_pool(void **state)
{
    (void)state;
    struct mft_err err;
    /* a pool of 2 for 4 threads: every call done, never more than 2 connections */
    raw_flush();
    long long before = redis_clients();
    setenv("MFT_REDIS_CONNECTIONS", "2", 1);
    struct mft_store *st = open_store();
    unsetenv("MFT_REDIS_CONNECTIONS");
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){st, i, 0};
        assert_int_equal(pthread_create(&t[i], NULL, put_many, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].failures, 0);
    }
    long long during = redis_clients();
    assert_true(during >= before + 1 && during <= before + 2);
    redisReply *r = raw("ZCARD mft:msgs");
    assert_int_equal(r->integer, 400);
    freeReplyObject(r);
    mft_store_close(st);
    /* closing closes them all */
    for (int i = 0; i < 50 && redis_clients() != before; i++)
        usleep(10000);
    assert_int_equal(redis_clients(), before);

    /* sizes outside 1..256 are a configuration error */
    const char *bad[] = {"0", "257", "x", NULL};
    for (int i = 0; bad[i]; i++) {
        setenv("MFT_REDIS_CONNECTIONS", bad[i], 1);
        st = (struct mft_store *)1;
        mft_err_clear(&err);
        assert_int_equal(mft_store_open(redis.url, &st, &err), -1);
        assert_null(st);
        assert_int_equal(err.kind, MFT_E_CONFIG);
        assert_non_null(strstr(err.message, "MFT_REDIS_CONNECTIONS"));
    }
    unsetenv("MFT_REDIS_CONNECTIONS");
}

static void test_unavailable_and_reconnect(void **state)
{
    (void)state;
    struct mft_store *st = open_store();
    struct mft_err err;
    assert_int_equal(mft_store_ping(st, &err), 0);

    mft_test_redis_stop(&redis, 1); /* keep port and dir for the restart */
    long long t0 = mft_test_now_ms();
    mft_err_clear(&err);
    assert_int_equal(mft_store_ping(st, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORE_UNAVAILABLE);
    assert_string_equal(mft_err_kind_name(err.kind), "STORE_UNAVAILABLE");
    assert_true(err.detail[0] != '\0');
    char out[64];
    assert_int_equal(mft_store_dup_get(st, "zeta", MSGID, out, sizeof(out), &err), -1);
    assert_int_equal(err.kind, MFT_E_STORE_UNAVAILABLE);
    const char *f[] = {"a", "b", NULL};
    assert_int_equal(mft_store_message_put(st, "x", "acme", "zeta", "m", 1, 10, f, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORE_UNAVAILABLE);
    assert_true(mft_test_now_ms() - t0 < 5000);

    /* Opening while Redis is down fails as unavailable too. */
    struct mft_store *st2 = (struct mft_store *)1;
    mft_err_clear(&err);
    assert_int_equal(mft_store_open(redis.url, &st2, &err), -1);
    assert_null(st2);
    assert_int_equal(err.kind, MFT_E_STORE_UNAVAILABLE);

    /* Same port again: the old handle reconnects on its next command. */
    assert_int_equal(mft_test_redis_start(&redis), 0);
    assert_int_equal(mft_store_ping(st, &err), 0);
    assert_int_equal(mft_store_put_station(st, "back", "BACK", "{}", &err), 0);
    mft_store_close(st);

    /* And a handle whose server restarted between two commands (stale socket)
     * recovers within the same call. */
    st = open_store();
    assert_int_equal(mft_store_ping(st, &err), 0);
    mft_test_redis_stop(&redis, 1);
    assert_int_equal(mft_test_redis_start(&redis), 0);
    char *json = NULL;
    assert_int_equal(mft_store_get_station(st, "back", &json, &err), 1); /* no persistence */
    assert_int_equal(mft_store_put_station(st, "again", "AGAIN", "{\"v\":1}", &err), 0);
    assert_int_equal(mft_store_get_station(st, "again", &json, &err), 0);
    assert_string_equal(json, "{\"v\":1}");
    free(json);
    mft_store_close(st);
}

static void test_command_timeout(void **state)
{
    (void)state;
    setenv("MFT_REDIS_TIMEOUT_MS", "300", 1);
    struct mft_store *st = open_store();
    unsetenv("MFT_REDIS_TIMEOUT_MS");
    struct mft_err err;
    assert_int_equal(mft_store_ping(st, &err), 0);

    /* A hung server (stopped, socket still accepting) must not hang us. */
    assert_int_equal(kill(redis.pid, SIGSTOP), 0);
    long long t0 = mft_test_now_ms();
    mft_err_clear(&err);
    int rc = mft_store_ping(st, &err);
    long long dt = mft_test_now_ms() - t0;
    kill(redis.pid, SIGCONT);
    assert_int_equal(rc, -1);
    assert_int_equal(err.kind, MFT_E_STORE_UNAVAILABLE);
    assert_true(dt >= 250 && dt < 2000); /* one timeout, a reconnect, a second timeout */

    /* The timed-out connection was dropped: no stale reply is read later. */
    assert_int_equal(mft_store_ping(st, &err), 0);
    assert_int_equal(mft_store_put_station(st, "t", "T", "{\"after\":1}", &err), 0);
    char *json = NULL;
    assert_int_equal(mft_store_get_station(st, "t", &json, &err), 0);
    assert_string_equal(json, "{\"after\":1}");
    free(json);
    mft_store_close(st);

    /* Out-of-range timeouts are a configuration error. */
    setenv("MFT_REDIS_TIMEOUT_MS", "abc", 1);
    st = (struct mft_store *)1;
    assert_int_equal(mft_store_open(redis.url, &st, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    unsetenv("MFT_REDIS_TIMEOUT_MS");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_ping_and_bad_urls),
        cmocka_unit_test(test_db_number_selects_database),
        cmocka_unit_test(test_stations),
        cmocka_unit_test(test_partners),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_dup_ttl),
        cmocka_unit_test(test_threads_share_one_store),
        cmocka_unit_test(test_connection_pool),
        cmocka_unit_test(test_command_timeout),
        cmocka_unit_test(test_unavailable_and_reconnect),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
