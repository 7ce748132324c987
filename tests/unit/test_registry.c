/*
 * test_registry — the registry against a real redis-server, fed by the real
 * mftctl ($MFT_BIN/mftctl apply) with the demo keys that
 * examples/make-demo-keys.sh makes with the openssl CLI. Checks what the
 * snapshot holds (keys unwrapped and matching, TLS PEM for GnuTLS, partner →
 * station), that Redis never holds a plaintext key, that a wrong master key,
 * a wrapped key moved to another record and a dangling partner all fail with
 * the record named, that apply reports bad input with JSON paths and writes
 * nothing, and concurrent ref/unref.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <pthread.h>

#include "mft_testenv.h"

#include "mft_registry.h"
#include "mft_secret.h"
#include "mft_store.h"
#include "mft_x509.h"

#define EXAMPLES MFT_TEST_DATA "/../../examples"
#define MASTER "4d46542d746573742d6d61737465722d6b65792d303132333435363738394142"

static struct mft_test_redis redis;
static char dir[64];
static char mftctl[512];
static unsigned char mk[32];

static int sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(char **out, const char *fmt, ...)
{
    char cmd[4096];
    char *buf = NULL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    char *argv[] = {"sh", "-c", cmd, NULL};
    int st = mft_test_run(argv, &buf, NULL, 120000);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int setup(void **state)
{
    struct mft_err err;
    (void)state;
    const char *bin = getenv("MFT_BIN");
    snprintf(mftctl, sizeof(mftctl), "%s/mftctl", bin ? bin : ".");
    snprintf(dir, sizeof(dir), "/tmp/test_registry.XXXXXX");
    if (!mkdtemp(dir) || mft_test_redis_start(&redis) != 0)
        return -1;
    setenv("MFT_REDIS_URL", redis.url, 1);
    setenv("MFT_MASTER_KEY", MASTER, 1);
    setenv("MFT_LOG_LEVEL", "error", 1);
    if (mft_secret_parse_master_key(MASTER, mk, &err) != 0)
        return -1;
    if (sh(NULL, "cp %s/acme.json %s/ && %s/make-demo-keys.sh %s/keys >/dev/null", EXAMPLES, dir,
           EXAMPLES, dir) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    mft_test_redis_stop(&redis, 0);
    mft_test_rmtree(dir);
    return 0;
}

static struct mft_store *store_open(void)
{
    struct mft_store *st = NULL;
    struct mft_err err;
    assert_int_equal(mft_store_open(redis.url, &st, &err), 0);
    return st;
}

static void fingerprint_of(const char *file, char out[65])
{
    char *o = NULL;
    size_t k = 0;
    assert_int_equal(sh(&o, "openssl x509 -in %s/keys/%s -noout -fingerprint -sha256", dir, file),
                     0);
    for (const char *p = strchr(o, '=') + 1; *p && *p != '\n' && k < 64; p++)
        if (*p != ':')
            out[k++] = (char)(*p >= 'A' && *p <= 'F' ? *p - 'A' + 'a' : *p);
    out[k] = '\0';
    free(o);
}

/* runs first: everything below works on what apply wrote */
static void test_apply_and_load(void **state)
{
    char *out = NULL;
    struct mft_err err;
    struct mft_store *st = store_open();
    struct mft_registry *reg = NULL;
    char fp[65], want[65];
    (void)state;

    assert_int_equal(sh(&out, "%s apply -f %s/acme.json 2>/dev/null", mftctl, dir), 0);
    assert_non_null(strstr(out, "station/acme created"));
    assert_non_null(strstr(out, "partner/globex created"));
    assert_non_null(strstr(out, "partner/initech created"));
    free(out);

    if (mft_registry_load(st, mk, &reg, &err) != 0)
        fail_msg("%s | %s", err.message, err.detail);
    assert_true(reg->version >= 3);
    assert_int_equal(reg->n_stations, 1);
    assert_int_equal(reg->n_partners, 2);

    const struct mft_station *acme = mft_registry_station_by_as2(reg, "ACME");
    assert_non_null(acme);
    assert_string_equal(acme->id, "acme");
    assert_null(mft_registry_station_by_as2(reg, "acme"));
    assert_null(mft_registry_station_by_as2(reg, "GLOBEX"));
    assert_true(mft_x509_key_matches_cert(acme->signing.cert, acme->signing.key));
    assert_int_equal(acme->n_encryption, 1);
    assert_true(mft_x509_key_matches_cert(acme->encryption[0].cert, acme->encryption[0].key));
    assert_true(mft_x509_key_matches_cert(acme->tls.cert, acme->tls.key));
    /* the certificates are the generated files */
    mft_x509_fingerprint_sha256(acme->signing.cert, fp);
    fingerprint_of("acme-signing.crt", want);
    assert_string_equal(fp, want);
    mft_x509_fingerprint_sha256(acme->encryption[0].cert, fp); /* came from the .p12 */
    fingerprint_of("acme-encryption.crt", want);
    assert_string_equal(fp, want);
    mft_x509_fingerprint_sha256(acme->tls.cert, fp);
    fingerprint_of("acme-tls.crt", want);
    assert_string_equal(fp, want);
    /* and the keys are the generated keys */
    EVP_PKEY *k = NULL;
    char path[256];
    snprintf(path, sizeof(path), "%s/keys/acme-signing.key", dir);
    assert_int_equal(mft_x509_load_key(path, NULL, &k, &err), 0);
    assert_int_equal(EVP_PKEY_eq(k, acme->signing.key), 1);
    EVP_PKEY_free(k);

    /* TLS PEM for GnuTLS: unencrypted PKCS#8 that loads back to the same key */
    assert_non_null(acme->tls_key_pem);
    assert_memory_equal(acme->tls_key_pem, "-----BEGIN PRIVATE KEY-----\n", 28);
    assert_int_equal(
        mft_x509_load_key_mem(acme->tls_key_pem, strlen(acme->tls_key_pem), NULL, &k, &err), 0);
    assert_true(mft_x509_key_matches_cert(acme->tls.cert, k));
    EVP_PKEY_free(k);
    STACK_OF(X509) *certs = NULL;
    assert_int_equal(
        mft_x509_load_certs_mem(acme->tls_cert_pem, strlen(acme->tls_cert_pem), &certs, &err), 0);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), acme->tls.cert), 0);
    sk_X509_pop_free(certs, X509_free);

    const struct mft_partner *gx = mft_registry_partner_by_as2(reg, acme, "GLOBEX");
    assert_non_null(gx);
    assert_ptr_equal(gx, mft_registry_partner(reg, "globex"));
    assert_ptr_equal(gx->station, acme);
    assert_string_equal(gx->station_id, "acme");
    assert_non_null(gx->signing_cert);
    assert_non_null(gx->encryption_cert);
    mft_x509_fingerprint_sha256(gx->signing_cert, fp);
    fingerprint_of("globex-signing.crt", want);
    assert_string_equal(fp, want);
    assert_int_equal(sk_X509_num(gx->tls_certs), 2);
    assert_int_equal(sk_X509_num(gx->tls_cas), 0);
    mft_x509_fingerprint_sha256(sk_X509_value(gx->tls_certs, 1), fp);
    fingerprint_of("globex-client-expired.crt", want);
    assert_string_equal(fp, want);
    assert_true(gx->require_signature);
    assert_true(gx->require_encryption);
    assert_int_equal(gx->mdn_signing, MFT_MDN_SIGN_IF_REQUESTED);

    const struct mft_partner *it = mft_registry_partner(reg, "initech");
    assert_non_null(it);
    assert_ptr_equal(it, mft_registry_partner_by_as2(reg, acme, "INITECH"));
    assert_false(it->require_signature);
    assert_false(it->require_encryption);
    assert_int_equal(it->mdn_signing, MFT_MDN_SIGN_ALWAYS);
    assert_int_equal(sk_X509_num(it->tls_certs), 1);
    assert_null(mft_registry_partner_by_as2(reg, acme, "NOBODY"));
    assert_null(mft_registry_partner(reg, "nobody"));
    assert_null(mft_registry_partner(NULL, "globex"));

    mft_registry_unref(reg);
    mft_store_close(st);
}

static void test_redis_never_holds_plaintext_keys(void **state)
{
    struct mft_store *st = store_open();
    struct mft_err err;
    char *json = NULL, *out = NULL;
    (void)state;
    assert_int_equal(mft_store_get_station(st, "acme", &json, &err), 0);
    assert_null(strstr(json, "PRIVATE KEY"));
    json_t *rec = json_loads(json, 0, NULL);
    assert_non_null(rec);
    const char *key = json_string_value(json_object_get(json_object_get(rec, "signing"), "key"));
    assert_non_null(key);
    assert_memory_equal(key, "v1:", 3);
    /* it unwraps only as the record "acme" */
    char *plain = NULL;
    assert_int_equal(mft_secret_unwrap(mk, "acme", key, &plain, NULL, &err), 0);
    assert_non_null(strstr(plain, "-----BEGIN PRIVATE KEY-----"));
    mft_secret_free_str(plain);
    assert_int_equal(mft_secret_unwrap(mk, "globex", key, &plain, NULL, &err), -1);
    json_decref(rec);
    free(json);
    /* the whole database, as text */
    assert_int_equal(sh(&out,
                        "redis-cli -p %d --no-raw MGET mft:station:acme mft:partner:globex "
                        "mft:partner:initech",
                        redis.port),
                     0);
    assert_non_null(strstr(out, "BEGIN CERTIFICATE"));
    assert_null(strstr(out, "PRIVATE KEY"));
    free(out);
    /* describe shows certificate facts, never a key */
    assert_int_equal(sh(&out, "%s describe station acme", mftctl), 0);
    assert_non_null(strstr(out, "sha256: "));
    assert_non_null(strstr(out, "subject: CN=localhost,O=ACME Corp"));
    assert_null(strstr(out, "PRIVATE KEY"));
    assert_null(strstr(out, "v1:"));
    free(out);
    assert_int_equal(sh(&out, "%s describe partner globex -o json", mftctl), 0);
    json_error_t je;
    rec = json_loads(out, 0, &je);
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(json_object_get(rec, "tls_client_certs"), 1), "status")),
                        "expired");
    json_decref(rec);
    free(out);
    assert_int_equal(sh(&out, "%s get partners", mftctl), 0);
    assert_non_null(strstr(out, "GLOBEX"));
    assert_non_null(strstr(out, "INITECH"));
    free(out);
    assert_int_equal(sh(NULL, "%s describe partner nobody 2>/dev/null", mftctl), 1);
    assert_int_equal(sh(NULL, "%s describe gizmo x 2>/dev/null", mftctl), 2);
    mft_store_close(st);
}

static void test_wrong_master_key(void **state)
{
    struct mft_store *st = store_open();
    struct mft_registry *reg = NULL;
    struct mft_err err;
    unsigned char other[32];
    (void)state;
    memcpy(other, mk, 32);
    other[31] ^= 0x80;
    assert_int_equal(mft_registry_load(st, other, &reg, &err), -1);
    assert_null(reg);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_non_null(strstr(err.message, "station:acme"));
    assert_non_null(strstr(err.message, "MFT_MASTER_KEY"));
    mft_store_close(st);
}

static void test_bad_records(void **state)
{
    struct mft_store *st = store_open();
    struct mft_registry *reg = NULL;
    struct mft_err err;
    char *json = NULL;
    (void)state;
    /* acme's record copied as station "evil": the wrapped keys do not move */
    assert_int_equal(mft_store_get_station(st, "acme", &json, &err), 0);
    assert_int_equal(mft_store_put_station(st, "evil", "EVIL", json, &err), 0);
    assert_int_equal(mft_registry_load(st, mk, &reg, &err), -1);
    assert_non_null(strstr(err.message, "station:evil"));
    /* keys swapped between roles of one record: each key must match its cert */
    {
        json_t *r = json_loads(json, 0, NULL);
        json_t *sg = json_object_get(r, "signing");
        json_t *en = json_array_get(json_object_get(r, "encryption"), 0);
        json_t *k1 = json_incref(json_object_get(sg, "key"));
        json_object_set(sg, "key", json_object_get(en, "key"));
        json_object_set_new(en, "key", k1);
        char *swapped = json_dumps(r, JSON_COMPACT);
        assert_int_equal(mft_store_put_station(st, "evil", "EVIL", json, &err), 0);
        assert_int_equal(mft_store_put_station(st, "acme", "ACME", swapped, &err), 0);
        assert_int_equal(mft_registry_load(st, mk, &reg, &err), -1);
        assert_non_null(strstr(err.message, "station:"));
        assert_non_null(strstr(err.message, "does not belong"));
        assert_int_equal(mft_store_put_station(st, "acme", "ACME", json, &err), 0);
        free(swapped);
        json_decref(r);
    }
    /* repaired with a valid record: loads again */
    free(json);
    json = NULL;
    char path[256];
    snprintf(path, sizeof(path), "%s/evil.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"stations\":[{\"id\":\"evil\",\"as2_id\":\"EVIL\",\n"
          " \"signing\":{\"cert\":\"keys/acme-signing.crt\",\"key\":\"keys/acme-signing.key\"},\n"
          " \"encryption\":{\"cert\":\"keys/acme-encryption.crt\",\n"
          "                 \"key\":\"keys/acme-encryption.key\"}}]}\n",
          f);
    fclose(f);
    assert_int_equal(sh(NULL, "%s apply -f %s >/dev/null 2>&1", mftctl, path), 0);
    if (mft_registry_load(st, mk, &reg, &err) != 0)
        fail_msg("%s | %s", err.message, err.detail);
    assert_int_equal(reg->n_stations, 2);
    assert_non_null(mft_registry_station_by_as2(reg, "EVIL"));
    mft_registry_unref(reg);
    reg = NULL;

    /* a partner whose station does not exist */
    assert_int_equal(mft_store_get_partner(st, "initech", &json, &err), 0);
    json_t *rec = json_loads(json, 0, NULL);
    json_object_set_new(rec, "station", json_string("nosuch"));
    char *bad = json_dumps(rec, JSON_COMPACT);
    assert_int_equal(mft_store_put_partner(st, "orphan", "nosuch", "ORPHAN", bad, &err), 0);
    assert_int_equal(mft_registry_load(st, mk, &reg, &err), -1);
    assert_non_null(strstr(err.message, "partner:orphan"));
    assert_non_null(strstr(err.message, "nosuch"));
    free(bad);
    /* not JSON at all */
    assert_int_equal(mft_store_put_partner(st, "orphan", "acme", "ORPHAN", "{not json", &err), 0);
    assert_int_equal(mft_registry_load(st, mk, &reg, &err), -1);
    assert_non_null(strstr(err.message, "partner:orphan"));
    /* a certificate that is not one */
    json_object_set_new(rec, "station", json_string("acme"));
    json_object_set_new(rec, "signing_cert", json_string("-----BEGIN CERTIFICATE-----\nAAAA\n"));
    bad = json_dumps(rec, JSON_COMPACT);
    assert_int_equal(mft_store_put_partner(st, "orphan", "acme", "ORPHAN", bad, &err), 0);
    assert_int_equal(mft_registry_load(st, mk, &reg, &err), -1);
    assert_non_null(strstr(err.message, "signing_cert"));
    free(bad);
    /* fixed: loads, three partners */
    json_object_set_new(rec, "signing_cert", json_null());
    json_object_set_new(rec, "require_signature", json_false());
    bad = json_dumps(rec, JSON_COMPACT);
    assert_int_equal(mft_store_put_partner(st, "orphan", "acme", "ORPHAN", bad, &err), 0);
    assert_int_equal(mft_registry_load(st, mk, &reg, &err), 0);
    assert_int_equal(reg->n_partners, 3);
    assert_null(mft_registry_partner(reg, "orphan")->signing_cert);
    mft_registry_unref(reg);
    free(bad);
    json_decref(rec);
    free(json);
    mft_store_close(st);
}

static void test_apply_reports_paths_and_writes_nothing(void **state)
{
    char *out = NULL, *before = NULL, *after = NULL;
    (void)state;
    FILE *f;
    char path[256];
    snprintf(path, sizeof(path), "%s/bad.json", dir);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"stations\":[{\"id\":\"acme\",\"as2_id\":\"ACME\",\n"
          " \"signing\":{\"cert\":\"keys/acme-signing.crt\",\"key\":\"keys/globex-signing.key\"},\n"
          " \"encryption\":{\"pkcs12\":\"keys/acme-encryption.p12\",\"password\":\"nope\"}}],\n"
          " \"partners\":[{\"id\":\"globex\",\"station\":\"acme\",\"as2_id\":\"GLOBEX\",\n"
          "   \"signing_cert\":\"keys/globex-signing.crt\"},\n"
          "  {\"id\":\"Bad Id\",\"station\":\"nosuch\",\"as2_id\":\"has space\",\n"
          "   \"signing_cert\":\"keys/missing.pem\",\"mdn_signing\":\"sometimes\"}]}\n",
          f);
    fclose(f);
    assert_int_equal(sh(&before, "redis-cli -p %d GET mft:config:version", redis.port), 0);
    assert_int_equal(sh(&out, "%s apply -f %s 2>&1", mftctl, path), 1);
    assert_non_null(strstr(out, "stations[0].signing.key: the private key does not match"));
    assert_non_null(strstr(out, "stations[0].encryption.pkcs12: "));
    assert_non_null(strstr(out, "wrong PKCS#12 password"));
    assert_non_null(strstr(out, "partners[1].id: "));
    assert_non_null(strstr(out, "partners[1].as2_id: "));
    assert_non_null(strstr(out, "partners[1].station: station \"nosuch\" does not exist"));
    assert_non_null(strstr(out, "partners[1].signing_cert: file not found: "));
    assert_non_null(strstr(out, "partners[1].mdn_signing: "));
    assert_non_null(strstr(out, "nothing written"));
    assert_null(strstr(out, "partners[0]."));
    free(out);
    assert_int_equal(sh(&after, "redis-cli -p %d GET mft:config:version", redis.port), 0);
    assert_string_equal(before, after);
    free(before);
    free(after);
    /* no master key: refused before anything is written */
    assert_int_equal(sh(&out, "MFT_MASTER_KEY= %s apply -f %s/acme.json 2>&1", mftctl, dir), 1);
    assert_non_null(strstr(out, "MFT_MASTER_KEY"));
    free(out);
    assert_int_equal(sh(NULL, "%s apply 2>/dev/null", mftctl), 2);
    assert_int_equal(sh(NULL, "%s nosuchcommand 2>/dev/null", mftctl), 2);
    assert_int_equal(sh(&out, "%s --help", mftctl), 0);
    assert_non_null(strstr(out, "MFT_MASTER_KEY"));
    assert_non_null(strstr(out, "describe"));
    free(out);
    /* re-applying the good file updates in place */
    assert_int_equal(sh(&out, "%s apply -f %s/acme.json 2>/dev/null", mftctl, dir), 0);
    assert_non_null(strstr(out, "station/acme configured"));
    free(out);
}

static void test_messages(void **state)
{
    struct mft_store *st = store_open();
    struct mft_err err;
    char *out = NULL;
    (void)state;
    const char *f1[] = {"station",         "acme",        "partner",     "globex",
                        "as2_message_id",  "<m1@globex>", "received_ms", "1700000000000",
                        "filename",        "order1.edi",  "size",        "42",
                        "mdn_disposition", "processed",   NULL};
    const char *f2[] = {
        "station",     "acme",          "partner",  "initech", "as2_message_id", "<m2@initech>",
        "received_ms", "1700000100000", "filename", "inv.xml", "size",           "7",
        NULL};
    assert_int_equal(mft_store_message_put(st, "uuid-1", "acme", "globex", "<m1@globex>",
                                           1700000000000LL, 0, f1, &err),
                     0);
    assert_int_equal(mft_store_message_put(st, "uuid-2", "acme", "initech", "<m2@initech>",
                                           1700000100000LL, 0, f2, &err),
                     0);
    assert_int_equal(sh(&out, "%s get messages", mftctl), 0);
    char *p1 = strstr(out, "uuid-1"), *p2 = strstr(out, "uuid-2");
    assert_non_null(p1);
    assert_non_null(p2);
    assert_true(p2 < p1); /* newest first */
    assert_non_null(strstr(out, "2023-11-14T22:13:20Z"));
    assert_non_null(strstr(out, "order1.edi"));
    assert_non_null(strstr(out, "processed"));
    free(out);
    assert_int_equal(sh(&out, "%s describe message uuid-1 -o json", mftctl), 0);
    json_t *m = json_loads(out, 0, NULL);
    assert_non_null(m);
    assert_string_equal(json_string_value(json_object_get(m, "as2_message_id")), "<m1@globex>");
    assert_string_equal(json_string_value(json_object_get(m, "received_at")),
                        "2023-11-14T22:13:20Z");
    json_decref(m);
    free(out);
    assert_int_equal(sh(NULL, "%s describe message nope 2>/dev/null", mftctl), 1);
    mft_store_close(st);
}

static void *ref_worker(void *arg)
{
    struct mft_registry *reg = arg;
    for (int i = 0; i < 10000; i++) {
        struct mft_registry *r = mft_registry_ref(reg);
        assert_non_null(mft_registry_station_by_as2(r, "ACME"));
        mft_registry_unref(r);
    }
    mft_registry_unref(reg); /* the reference the main thread gave this worker */
    return NULL;
}

static void test_refcount_threads(void **state)
{
    struct mft_store *st = store_open();
    struct mft_registry *reg = NULL;
    struct mft_err err;
    pthread_t th[4];
    (void)state;
    assert_int_equal(mft_registry_load(st, mk, &reg, &err), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, ref_worker, mft_registry_ref(reg)), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(reg->refs_, 1);
    mft_registry_unref(reg); /* frees; ASan reports a leak or a double free */
    mft_registry_unref(NULL);
    assert_null(mft_registry_ref(NULL));
    mft_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_and_load),
        cmocka_unit_test(test_redis_never_holds_plaintext_keys),
        cmocka_unit_test(test_wrong_master_key),
        cmocka_unit_test(test_apply_reports_paths_and_writes_nothing),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_refcount_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
