/*
 * test_registry — the registry against a real redis-server, fed by the real
 * mftctl ($MFT_BIN/mftctl apply) with the demo keys that
 * examples/make-demo-keys.sh makes with the openssl CLI. Checks what the
 * snapshot holds (keys unwrapped and matching, TLS PEM for GnuTLS, partner →
 * station), that Redis never holds a plaintext key, that a wrong master key,
 * a wrapped key moved to another record and a dangling partner all fail with
 * the record named, that apply reports bad input with JSON paths and writes
 * nothing, and concurrent ref/unref. Then the send settings and the
 * station's TLS client identity: every field, the defaults, tls_client
 * defaulting to tls, and what apply and the registry refuse.
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
          "  {\"id\":\"Bad Id\",\"station\":\"nosuch\",\"as2_id\":\" leading space\",\n"
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

/* ---- send settings and the TLS client identity (issue 3) ------------------- */

static char *write_file(const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* base64 SHA-256 of the certificate's SubjectPublicKeyInfo, by the openssl CLI */
static void pin_of(const char *file, char out[64])
{
    char *o = NULL;
    assert_int_equal(sh(&o,
                        "openssl x509 -in %s/keys/%s -pubkey -noout | openssl pkey -pubin "
                        "-outform der | openssl dgst -sha256 -binary | base64",
                        dir, file),
                     0);
    assert_true(strlen(o) >= 44);
    memcpy(out, o, 44);
    out[44] = '\0';
    free(o);
}

static struct mft_registry *load_ok(struct mft_store *st)
{
    struct mft_registry *reg = NULL;
    struct mft_err err;
    if (mft_registry_load(st, mk, &reg, &err) != 0)
        fail_msg("%s | %s", err.message, err.detail);
    return reg;
}

/* what examples/acme.json declares */
static void test_send_example(void **state)
{
    struct mft_store *st = store_open();
    struct mft_registry *reg = load_ok(st);
    struct mft_err err;
    char fp[65], want[65];
    EVP_PKEY *k = NULL;
    STACK_OF(X509) *certs = NULL;
    (void)state;

    const struct mft_station *acme = mft_registry_station_by_as2(reg, "ACME");
    assert_non_null(acme);
    assert_string_equal(acme->async_mdn_url, "https://localhost:8443/as2");
    /* tls_client given: its own keypair, not tls */
    assert_non_null(acme->tls_client.cert);
    assert_ptr_not_equal(acme->tls_client.cert, acme->tls.cert);
    mft_x509_fingerprint_sha256(acme->tls_client.cert, fp);
    fingerprint_of("acme-client.crt", want);
    assert_string_equal(fp, want);
    assert_true(mft_x509_key_matches_cert(acme->tls_client.cert, acme->tls_client.key));
    assert_non_null(acme->tls_client_key_pem);
    assert_memory_equal(acme->tls_client_key_pem, "-----BEGIN PRIVATE KEY-----\n", 28);
    assert_int_equal(mft_x509_load_key_mem(acme->tls_client_key_pem,
                                           strlen(acme->tls_client_key_pem), NULL, &k, &err),
                     0);
    assert_true(mft_x509_key_matches_cert(acme->tls_client.cert, k));
    EVP_PKEY_free(k);
    assert_int_equal(mft_x509_load_certs_mem(acme->tls_client_cert_pem,
                                             strlen(acme->tls_client_cert_pem), &certs, &err),
                     0);
    assert_int_equal(X509_cmp(sk_X509_value(certs, 0), acme->tls_client.cert), 0);
    sk_X509_pop_free(certs, X509_free);

    const struct mft_partner *gx = mft_registry_partner(reg, "globex");
    const struct mft_partner_send *s = &gx->send;
    assert_true(s->enabled);
    assert_string_equal(s->url, "https://localhost:4443/as2");
    assert_int_equal(sk_X509_num(s->tls_server_certs), 0);
    assert_int_equal(sk_X509_num(s->tls_server_cas), 1);
    mft_x509_fingerprint_sha256(sk_X509_value(s->tls_server_cas, 0), fp);
    fingerprint_of("ca.crt", want);
    assert_string_equal(fp, want);
    assert_int_equal(s->n_pins, 0);
    assert_string_equal(s->sign_md, "sha256");
    assert_string_equal(s->cipher, "aes-256-cbc");
    assert_int_equal(s->mdn, MFT_MDN_REQUEST_SYNC);

    const struct mft_partner *it = mft_registry_partner(reg, "initech");
    s = &it->send;
    assert_true(s->enabled);
    assert_string_equal(s->url, "http://localhost:4080/as2");
    assert_string_equal(s->sign_md, "sha1");        /* "sha-1" */
    assert_string_equal(s->cipher, "des-ede3-cbc"); /* "3des" */
    assert_true(s->old_micalg_names);
    assert_int_equal(s->mdn, MFT_MDN_REQUEST_ASYNC);
    mft_registry_unref(reg);

    /* the stored form is normalised */
    char *json = NULL;
    assert_int_equal(mft_store_get_partner(st, "initech", &json, &err), 0);
    json_t *rec = json_loads(json, 0, NULL);
    json_t *send = json_object_get(rec, "send");
    assert_string_equal(json_string_value(json_object_get(send, "sign")), "sha1");
    assert_string_equal(json_string_value(json_object_get(send, "encrypt")), "des-ede3-cbc");
    assert_string_equal(json_string_value(json_object_get(send, "mdn")), "async");
    assert_int_equal(json_integer_value(json_object_get(send, "max_attempts")), 10);
    json_decref(rec);
    free(json);
    /* and the tls_client key is wrapped like the others */
    assert_int_equal(mft_store_get_station(st, "acme", &json, &err), 0);
    assert_null(strstr(json, "PRIVATE KEY"));
    rec = json_loads(json, 0, NULL);
    const char *key = json_string_value(json_object_get(json_object_get(rec, "tls_client"), "key"));
    assert_non_null(key);
    assert_memory_equal(key, "v1:", 3);
    json_decref(rec);
    free(json);
    mft_store_close(st);
}

static void test_send_all_fields_and_defaults(void **state)
{
    struct mft_store *st = store_open();
    struct mft_err err;
    char pin1[64], pin2[64], text[4096], *out = NULL, fp[65], want[65];
    (void)state;

    pin_of("globex-tls.crt", pin1);
    pin_of("acme-tls.crt", pin2);
    snprintf(
        text, sizeof(text),
        "{\"stations\":[\n"
        " {\"id\":\"beta\",\"as2_id\":\"BETA\",\n"
        "  \"signing\":{\"cert\":\"keys/acme-signing.crt\",\"key\":\"keys/acme-signing.key\"},\n"
        "  \"encryption\":{\"cert\":\"keys/acme-encryption.crt\","
        "\"key\":\"keys/acme-encryption.key\"},\n"
        "  \"tls\":{\"cert\":\"keys/acme-tls.crt\",\"key\":\"keys/acme-tls.key\","
        "\"chain\":\"keys/ca.crt\"},\n"
        "  \"async_mdn_url\":\"http://beta.example/mdn\"},\n"
        " {\"id\":\"gamma\",\"as2_id\":\"GAMMA\",\n"
        "  \"signing\":{\"cert\":\"keys/acme-signing.crt\",\"key\":\"keys/acme-signing.key\"},\n"
        "  \"encryption\":{\"cert\":\"keys/acme-encryption.crt\","
        "\"key\":\"keys/acme-encryption.key\"},\n"
        "  \"tls_client\":{\"pkcs12\":\"keys/acme-encryption.p12\",\"password\":\"demo\"}}],\n"
        " \"partners\":[\n"
        " {\"id\":\"full\",\"station\":\"beta\",\"as2_id\":\"FULL\",\"require_signature\":false,\n"
        "  \"encryption_cert\":\"keys/globex-encryption.crt\",\n"
        "  \"send\":{\"url\":\"HTTPS://partner.example:8443/as2\",\n"
        "   \"tls_server_certs\":[\"keys/globex-tls.crt\"],\n"
        "   \"tls_server_cas\":[\"keys/ca.crt\",\"keys/unknown-ca.crt\"],\n"
        "   \"tls_server_pins\":[\"sha256//%s\",\"%s\"],\n"
        "   \"sign\":\"SHA-512\",\"encrypt\":\"AES-128-GCM\",\"key_transport\":\"rsa-oaep\",\n"
        "   \"compress\":\"after-signing\",\"transfer_encoding\":\"base64\",\n"
        "   \"old_micalg_names\":true,\"content_length\":true,\"mdn\":\"async\",\n"
        "   \"mdn_signed\":false,\"mdn_timeout_s\":7200,\"timeout_s\":30,\"max_attempts\":3,\n"
        "   \"retry_base_s\":5,\"retry_max_s\":60}},\n"
        " {\"id\":\"minimal\",\"station\":\"beta\",\"as2_id\":\"MINIMAL\","
        "\"require_signature\":false,\n"
        "  \"encryption_cert\":\"keys/globex-encryption.crt\",\n"
        "  \"send\":{\"url\":\"http://127.0.0.1:1/as2\"}},\n"
        " {\"id\":\"plain\",\"station\":\"gamma\",\"as2_id\":\"PLAIN\",\"require_signature\":false,"
        "\n"
        "  \"send\":{\"url\":\"https://plain.example/as2\",\"tls_server_pins\":[\"%s\"],\n"
        "   "
        "\"sign\":\"none\",\"encrypt\":\"none\",\"mdn\":\"none\",\"compress\":\"before-signing\"}},"
        "\n"
        " {\"id\":\"nosend\",\"station\":\"gamma\",\"as2_id\":\"NOSEND\","
        "\"require_signature\":false}]}\n",
        pin1, pin2, pin1);
    const char *path = write_file("send.json", text);
    if (sh(&out, "%s apply -f %s 2>&1", mftctl, path) != 0)
        fail_msg("%s", out);
    free(out);

    struct mft_registry *reg = load_ok(st);
    /* beta: no tls_client → the tls keypair, shared; PEMs copied */
    const struct mft_station *beta = mft_registry_station_by_as2(reg, "BETA");
    assert_non_null(beta);
    assert_ptr_equal(beta->tls_client.cert, beta->tls.cert);
    assert_ptr_equal(beta->tls_client.key, beta->tls.key);
    assert_int_equal(sk_X509_num(beta->tls_client.chain), 1);
    assert_int_equal(
        X509_cmp(sk_X509_value(beta->tls_client.chain, 0), sk_X509_value(beta->tls.chain, 0)), 0);
    assert_ptr_not_equal(beta->tls_client_cert_pem, beta->tls_cert_pem);
    assert_string_equal(beta->tls_client_cert_pem, beta->tls_cert_pem);
    assert_ptr_not_equal(beta->tls_client_key_pem, beta->tls_key_pem);
    assert_string_equal(beta->tls_client_key_pem, beta->tls_key_pem);
    assert_string_equal(beta->async_mdn_url, "http://beta.example/mdn");
    /* gamma: no tls, tls_client from a PKCS#12 */
    const struct mft_station *gamma = mft_registry_station_by_as2(reg, "GAMMA");
    assert_null(gamma->tls.cert);
    assert_null(gamma->tls_cert_pem);
    assert_string_equal(gamma->async_mdn_url, "");
    mft_x509_fingerprint_sha256(gamma->tls_client.cert, fp);
    fingerprint_of("acme-encryption.crt", want);
    assert_string_equal(fp, want);
    assert_true(mft_x509_key_matches_cert(gamma->tls_client.cert, gamma->tls_client.key));
    assert_non_null(gamma->tls_client_cert_pem);
    assert_non_null(gamma->tls_client_key_pem);

    const struct mft_partner_send *s = &mft_registry_partner(reg, "full")->send;
    assert_true(s->enabled);
    assert_string_equal(s->url, "HTTPS://partner.example:8443/as2");
    assert_int_equal(sk_X509_num(s->tls_server_certs), 1);
    mft_x509_fingerprint_sha256(sk_X509_value(s->tls_server_certs, 0), fp);
    fingerprint_of("globex-tls.crt", want);
    assert_string_equal(fp, want);
    assert_int_equal(sk_X509_num(s->tls_server_cas), 2);
    mft_x509_fingerprint_sha256(sk_X509_value(s->tls_server_cas, 1), fp);
    fingerprint_of("unknown-ca.crt", want);
    assert_string_equal(fp, want);
    assert_int_equal(s->n_pins, 2);
    assert_string_equal(s->tls_server_pins[0], pin1); /* "sha256//" dropped */
    assert_string_equal(s->tls_server_pins[1], pin2);
    assert_string_equal(s->sign_md, "sha512");
    assert_string_equal(s->cipher, "aes-128-gcm");
    assert_true(s->rsa_oaep);
    assert_int_equal(s->compress, MFT_COMPRESS_AFTER_SIGNING);
    assert_true(s->base64);
    assert_true(s->old_micalg_names);
    assert_true(s->content_length);
    assert_int_equal(s->mdn, MFT_MDN_REQUEST_ASYNC);
    assert_false(s->mdn_signed);
    assert_int_equal(s->mdn_timeout_s, 7200);
    assert_int_equal(s->timeout_s, 30);
    assert_int_equal(s->max_attempts, 3);
    assert_int_equal(s->retry_base_s, 5);
    assert_int_equal(s->retry_max_s, 60);

    /* a send object with a url only: every default */
    s = &mft_registry_partner(reg, "minimal")->send;
    assert_true(s->enabled);
    assert_string_equal(s->url, "http://127.0.0.1:1/as2");
    assert_int_equal(sk_X509_num(s->tls_server_certs), 0);
    assert_int_equal(sk_X509_num(s->tls_server_cas), 0);
    assert_int_equal(s->n_pins, 0);
    assert_string_equal(s->sign_md, "sha256");
    assert_string_equal(s->cipher, "aes-256-cbc");
    assert_false(s->rsa_oaep);
    assert_int_equal(s->compress, MFT_COMPRESS_NONE);
    assert_false(s->base64);
    assert_false(s->old_micalg_names);
    assert_false(s->content_length);
    assert_int_equal(s->mdn, MFT_MDN_REQUEST_SYNC);
    assert_true(s->mdn_signed);
    assert_int_equal(s->mdn_timeout_s, 3600);
    assert_int_equal(s->timeout_s, 120);
    assert_int_equal(s->max_attempts, 10);
    assert_int_equal(s->retry_base_s, 30);
    assert_int_equal(s->retry_max_s, 3600);

    s = &mft_registry_partner(reg, "plain")->send;
    assert_string_equal(s->sign_md, "");
    assert_string_equal(s->cipher, "");
    assert_int_equal(s->mdn, MFT_MDN_REQUEST_NONE);
    assert_int_equal(s->compress, MFT_COMPRESS_BEFORE_SIGNING);
    assert_int_equal(s->n_pins, 1);

    /* no send object: not enabled, defaults all the same, empty trust lists */
    s = &mft_registry_partner(reg, "nosend")->send;
    assert_false(s->enabled);
    assert_string_equal(s->url, "");
    assert_non_null(s->tls_server_certs);
    assert_int_equal(sk_X509_num(s->tls_server_certs), 0);
    assert_non_null(s->tls_server_cas);
    assert_string_equal(s->sign_md, "sha256");
    assert_string_equal(s->cipher, "aes-256-cbc");
    assert_int_equal(s->max_attempts, 10);
    assert_true(s->mdn_signed);
    mft_registry_unref(reg);

    /* describe / get show the send settings and the server trust */
    assert_int_equal(sh(&out, "%s describe partner full -o json", mftctl), 0);
    json_t *v = json_loads(out, 0, NULL), *send = json_object_get(v, "send");
    assert_non_null(send);
    assert_string_equal(json_string_value(json_object_get(send, "url")),
                        "HTTPS://partner.example:8443/as2");
    assert_string_equal(json_string_value(json_object_get(send, "encrypt")), "aes-128-gcm");
    assert_string_equal(json_string_value(json_object_get(send, "mdn")), "async");
    const json_t *ca0 = json_array_get(json_object_get(send, "tls_server_cas"), 0);
    assert_string_equal(json_string_value(json_object_get(ca0, "subject")),
                        "CN=MFT Demo CA,O=MFT Demo");
    assert_non_null(json_string_value(json_object_get(ca0, "not_after")));
    assert_int_equal(json_array_size(json_object_get(send, "tls_server_pins")), 2);
    json_decref(v);
    free(out);
    assert_int_equal(sh(&out, "%s describe partner nosend -o json", mftctl), 0);
    v = json_loads(out, 0, NULL);
    assert_true(json_is_null(json_object_get(v, "send")));
    json_decref(v);
    free(out);
    assert_int_equal(sh(&out, "%s get partners", mftctl), 0);
    assert_non_null(strstr(out, "SEND URL"));
    assert_non_null(strstr(out, "HTTPS://partner.example:8443/as2"));
    assert_non_null(strstr(out, "1 cert(s), 2 CA(s), 2 pin(s)"));
    assert_non_null(strstr(out, "none (http)"));
    free(out);
    assert_int_equal(sh(&out, "%s describe station beta", mftctl), 0);
    assert_non_null(strstr(out, "tls_client:\n  same_as: tls\n"));
    assert_non_null(strstr(out, "async_mdn_url: http://beta.example/mdn"));
    free(out);
    assert_int_equal(sh(&out, "%s describe station gamma", mftctl), 0);
    assert_non_null(strstr(out, "subject: CN=ACME AS2 encryption,O=ACME Corp"));
    assert_null(strstr(out, "same_as"));
    free(out);
    (void)err;
    mft_store_close(st);
}

static void test_send_apply_refused(void **state)
{
    char *out = NULL, *before = NULL, *after = NULL;
    (void)state;
    const char *path = write_file(
        "badsend.json",
        "{\"stations\":[{\"id\":\"delta\",\"as2_id\":\"DELTA\",\n"
        "  \"signing\":{\"cert\":\"keys/acme-signing.crt\",\"key\":\"keys/acme-signing.key\"},\n"
        "  \"encryption\":{\"cert\":\"keys/acme-encryption.crt\","
        "\"key\":\"keys/acme-encryption.key\"},\n"
        "  \"tls_client\":{\"cert\":\"keys/acme-client.crt\",\"key\":\"keys/globex-client.key\"},\n"
        "  \"async_mdn_url\":\"ftp://delta.example/mdn\"}],\n"
        " \"partners\":[\n"
        "  {\"id\":\"b0\",\"station\":\"gamma\",\"as2_id\":\"B0\",\"require_signature\":false,\n"
        "   \"send\":{\"url\":\"https://b0.example/as2\",\"bogus\":1,\"mdn\":\"async\"}},\n"
        "  {\"id\":\"b1\",\"station\":\"gamma\",\"as2_id\":\"B1\",\"require_signature\":false,\n"
        "   \"encryption_cert\":\"keys/globex-encryption.crt\",\n"
        "   \"send\":{\"url\":\"http://b1.example/as2\",\"sign\":\"md5\",\"encrypt\":\"rc2-40\",\n"
        "    "
        "\"tls_server_pins\":[\"sha256//abc\",\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=\"],\n"
        "    \"max_attempts\":101,\"timeout_s\":0,\"retry_base_s\":100,\"retry_max_s\":50,\n"
        "    \"mdn\":\"later\",\"mdn_signed\":\"yes\",\"compress\":\"always\"}},\n"
        "  {\"id\":\"b2\",\"station\":\"gamma\",\"as2_id\":\"B2\",\"require_signature\":false,\n"
        "   \"send\":{\"url\":\"ftp://b2.example/\",\"encrypt\":\"none\",\n"
        "    \"tls_server_cas\":[\"keys/globex-tls.crt\"],\n"
        "    \"tls_server_pins\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}},\n"
        "  {\"id\":\"b3\",\"station\":\"gamma\",\"as2_id\":\"B3\",\"require_signature\":false,\n"
        "   \"send\":{\"encrypt\":\"none\"}}]}\n");
    assert_int_equal(sh(&before, "redis-cli -p %d GET mft:config:version", redis.port), 0);
    assert_int_equal(sh(&out, "%s apply -f %s 2>&1", mftctl, path), 1);
    assert_non_null(strstr(out, "stations[0].tls_client.key: the private key does not match"));
    assert_non_null(strstr(out, "stations[0].async_mdn_url: must be an http:// or https:// URL"));
    assert_non_null(strstr(out, "partners[0].send: unknown field \"bogus\""));
    assert_non_null(strstr(out, "partners[0].send.url: partner b0: send.url is https but no "
                                "tls_server_certs, tls_server_cas or tls_server_pins: the "
                                "partner's server cannot be authenticated"));
    assert_non_null(strstr(out, "partners[0].send.encrypt: partner b0: send.encrypt is "
                                "aes-256-cbc but the partner has no encryption_cert"));
    assert_non_null(strstr(out, "partners[0].send.mdn: partner b0: send.mdn is async but the "
                                "station has no async_mdn_url"));
    assert_non_null(strstr(out, "partners[1].send.sign: must be"));
    assert_non_null(strstr(out, "partners[1].send.encrypt: must be"));
    assert_non_null(strstr(out, "partners[1].send.tls_server_pins[0]: must be"));
    assert_non_null(strstr(out, "partners[1].send.tls_server_pins[1]: must be")); /* 33 bytes */
    assert_non_null(strstr(out, "partners[1].send.max_attempts: must be an integer from 1 to 100"));
    assert_non_null(strstr(out, "partners[1].send.timeout_s: must be an integer"));
    assert_non_null(strstr(out, "partners[1].send.retry_max_s: 50 is below retry_base_s (100)"));
    assert_non_null(
        strstr(out, "partners[1].send.mdn: must be one of \"sync\", \"async\", \"none\""));
    assert_non_null(strstr(out, "partners[1].send.mdn_signed: must be true or false"));
    assert_non_null(strstr(out, "partners[1].send.compress: must be one of"));
    assert_null(strstr(out, "partners[1].send.url")); /* http: no trust needed */
    assert_non_null(strstr(out, "partners[2].send.url: must be an http:// or https:// URL"));
    assert_non_null(strstr(out, "partners[2].send.tls_server_cas[0]: "));
    assert_non_null(strstr(out, "is not a CA certificate"));
    assert_non_null(strstr(out, "partners[2].send.tls_server_pins: at most 4 pins"));
    assert_non_null(strstr(out, "partners[3].send: \"url\" is required"));
    assert_non_null(strstr(out, "nothing written"));
    free(out);
    assert_int_equal(sh(&after, "redis-cli -p %d GET mft:config:version", redis.port), 0);
    assert_string_equal(before, after);
    free(before);
    free(after);
}

/* records written by something else than mftctl: the registry checks them too */
static void test_send_bad_records(void **state)
{
    struct mft_store *st = store_open();
    struct mft_registry *reg = NULL;
    struct mft_err err;
    char *json = NULL;
    (void)state;
    static const struct {
        const char *field, *value, *expect;
    } cases[] = {
        {"url", "\"https://x.example/\"", "cannot be authenticated"},
        {"url", "\"ftp://x.example/\"", "send.url"},
        {"url", "null", "send.url"},
        {"sign", "\"md5\"", "send.sign"},
        {"encrypt", "\"rc2-40\"", "send.encrypt"},
        {"mdn", "\"later\"", "send.mdn"},
        {"mdn", "\"async\"", "async_mdn_url"},
        {"tls_server_pins", "[\"abc\"]", "send.tls_server_pins[0]"},
        {"tls_server_pins", "\"x\"", "send.tls_server_pins"},
        {"max_attempts", "0", "send.max_attempts"},
        {"max_attempts", "101", "send.max_attempts"},
        {"timeout_s", "\"5\"", "send.timeout_s"},
        {"retry_max_s", "1", "send.retry_max_s"},
        {"content_length", "1", "send.content_length"},
        {"tls_server_cas", "[\"not PEM\"]", "send.tls_server_cas[0]"},
    };
    assert_int_equal(mft_store_get_partner(st, "plain", &json, &err), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *rec = json_loads(json, 0, NULL), *send = json_object_get(rec, "send");
        json_object_set_new(send, "encrypt", json_string("none"));
        if (strcmp(cases[i].field, "url") == 0) /* "plain" is trusted by its pin alone */
            json_object_set_new(send, "tls_server_pins", json_array());
        if (strcmp(cases[i].value, "null") == 0)
            json_object_del(send, cases[i].field);
        else
            json_object_set_new(send, cases[i].field,
                                json_loads(cases[i].value, JSON_DECODE_ANY, NULL));
        char *bad = json_dumps(rec, JSON_COMPACT);
        assert_int_equal(mft_store_put_partner(st, "plain", "gamma", "PLAIN", bad, &err), 0);
        assert_int_equal(mft_registry_load(st, mk, &reg, &err), -1);
        assert_null(reg);
        if (!strstr(err.message, "partner:plain") || !strstr(err.message, cases[i].expect))
            fail_msg("case %zu: %s", i, err.message);
        free(bad);
        json_decref(rec);
    }
    /* encryption without the partner's encryption_cert */
    {
        json_t *rec = json_loads(json, 0, NULL);
        json_object_set_new(json_object_get(rec, "send"), "encrypt", json_string("aes-256-cbc"));
        char *bad = json_dumps(rec, JSON_COMPACT);
        assert_int_equal(mft_store_put_partner(st, "plain", "gamma", "PLAIN", bad, &err), 0);
        assert_int_equal(mft_registry_load(st, mk, &reg, &err), -1);
        assert_non_null(strstr(err.message, "encryption_cert"));
        free(bad);
        json_decref(rec);
    }
    /* a station whose async_mdn_url is not a URL */
    {
        char *sj = NULL;
        assert_int_equal(mft_store_get_station(st, "gamma", &sj, &err), 0);
        json_t *rec = json_loads(sj, 0, NULL);
        json_object_set_new(rec, "async_mdn_url", json_string("mailto:x@y"));
        char *bad = json_dumps(rec, JSON_COMPACT);
        assert_int_equal(mft_store_put_partner(st, "plain", "gamma", "PLAIN", json, &err), 0);
        assert_int_equal(mft_store_put_station(st, "gamma", "GAMMA", bad, &err), 0);
        assert_int_equal(mft_registry_load(st, mk, &reg, &err), -1);
        assert_non_null(strstr(err.message, "station:gamma"));
        assert_non_null(strstr(err.message, "async_mdn_url"));
        assert_int_equal(mft_store_put_station(st, "gamma", "GAMMA", sj, &err), 0);
        free(bad);
        free(sj);
        json_decref(rec);
    }
    /* back to the valid record: loads */
    assert_int_equal(mft_store_put_partner(st, "plain", "gamma", "PLAIN", json, &err), 0);
    reg = load_ok(st);
    mft_registry_unref(reg);
    free(json);
    mft_store_close(st);
}

/* runs last: it takes the configuration version away, as a Redis that lost
 * its data would, then stops Redis */
static void test_config_poll(void **state)
{
    struct mft_store *st = store_open();
    struct mft_err err;
    long long seen = 0, now = -1;
    char *out = NULL;
    (void)state;
    mft_err_clear(&err);
    assert_int_equal(mft_registry_poll(st, &seen, &now, &err), 1); /* a new version: reload */
    assert_true(now >= 3);
    seen = now;
    assert_int_equal(mft_registry_poll(st, &seen, &now, &err), 0); /* nothing new */
    /* the version gone: no reload (the configuration in force stays), and
     * the next version applied is taken whatever its number */
    assert_int_equal(sh(&out, "redis-cli -p %d DEL mft:config:version", redis.port), 0);
    free(out);
    assert_int_equal(mft_registry_poll(st, &seen, &now, &err), 0);
    assert_int_equal(seen, 0);
    assert_int_equal(mft_registry_poll(st, &seen, &now, &err), 0);
    assert_int_equal(sh(&out, "redis-cli -p %d INCR mft:config:version", redis.port), 0);
    free(out);
    assert_int_equal(mft_registry_poll(st, &seen, &now, &err), 1);
    assert_int_equal(now, 1);
    /* two loads of one version are told apart (egress keys kept connections by it) */
    struct mft_registry *a = NULL, *b = NULL;
    assert_int_equal(mft_registry_load(st, mk, &a, &err), 0);
    assert_int_equal(mft_registry_load(st, mk, &b, &err), 0);
    assert_int_equal(a->version, b->version);
    assert_true(a->load_seq != b->load_seq);
    mft_registry_unref(a);
    mft_registry_unref(b);
    /* Redis cannot say (a damaged version, then Redis gone): -1, the error
     * told, and what is in force stays (seen unchanged) */
    seen = 1;
    assert_int_equal(sh(&out, "redis-cli -p %d SET mft:config:version x", redis.port), 0);
    free(out);
    mft_err_clear(&err);
    assert_int_equal(mft_registry_poll(st, &seen, &now, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORE_UNAVAILABLE);
    assert_int_equal(seen, 1);
    mft_test_redis_stop(&redis, 1);
    mft_err_clear(&err);
    assert_int_equal(mft_registry_poll(st, &seen, &now, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORE_UNAVAILABLE);
    assert_int_equal(seen, 1);
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
        cmocka_unit_test(test_send_example),
        cmocka_unit_test(test_send_all_fields_and_defaults),
        cmocka_unit_test(test_send_apply_refused),
        cmocka_unit_test(test_send_bad_records),
        cmocka_unit_test(test_config_poll),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
