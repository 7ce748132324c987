/*
 * test_limbo — partner certificate validation over the x509-limbo suite.
 *
 * Reads the 117 cases of MFT_SHARED_DIR/interop/x509-limbo (trusted roots,
 * untrusted intermediates, the peer's certificate, a validation time, an
 * expected peer name, SUCCESS or FAILURE) and runs each through both engines
 * of the product: mft_x509_verify (OpenSSL, the outbound client) and
 * mft_tlssrv_verify (GnuTLS, the inbound handshake), which are the functions
 * those callers run. The cases where an engine knowingly differs from the
 * expected result are listed, with the reason, in
 * tests/data/limbo/known-differences.txt (and docs/x509-limbo.md); the test
 * fails when the differences seen are not exactly that list: a new
 * difference and a fixed one both fail, each named with its case.
 *
 * Mapping: validation_kind CLIENT, or an extended_key_usage naming only
 * clientAuth, is the client purpose, anything else the server purpose; a DNS
 * or IP expected_peer_name is the peer name (RFC822 names are not checked:
 * the product never matches an e-mail address). max_chain_depth, key_usage
 * and signature_algorithms have no counterpart in the product and are not
 * applied; the list of differences says where that matters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "mft_tlssrv.h"
#include "mft_x509.h"

#define LIMBO MFT_SHARED_DIR "/interop/x509-limbo/limbo_2023-11-22.json"
#define KNOWN MFT_TEST_DATA "/limbo/known-differences.txt"

/* The engines, as named in the known-differences file. */
static const struct {
    const char *name;
    int (*verify)(const struct mft_x509_verify_args *, struct mft_err *);
} engines[] = {
    {"openssl", mft_x509_verify},
    {"gnutls", mft_tlssrv_verify},
};
#define N_ENGINES (sizeof(engines) / sizeof(engines[0]))

/* One line of the known-differences file: "ENGINE CASE-ID REASON". */
struct known {
    char engine[16];
    char id[160];
    int seen;
};

static struct known *known;
static size_t n_known;

static void load_known(void)
{
    FILE *f = fopen(KNOWN, "r");
    char line[1024];
    size_t cap = 0;

    if (!f)
        fail_msg("cannot open %s", KNOWN);
    while (fgets(line, sizeof(line), f)) {
        struct known k = {0};
        if (line[0] == '#' || line[strspn(line, " \t\r\n")] == '\0')
            continue;
        if (sscanf(line, "%15s %159s", k.engine, k.id) != 2 || !strchr(line, ' '))
            fail_msg("%s: malformed line: %s", KNOWN, line);
        if (n_known == cap) {
            cap = cap ? 2 * cap : 64;
            known = realloc(known, cap * sizeof(*known));
            assert_non_null(known);
        }
        known[n_known++] = k;
    }
    fclose(f);
}

static struct known *find_known(const char *engine, const char *id)
{
    for (size_t i = 0; i < n_known; i++)
        if (strcmp(known[i].engine, engine) == 0 && strcmp(known[i].id, id) == 0)
            return &known[i];
    return NULL;
}

/* Certificates of a JSON array of PEM strings (NULL or empty: an empty stack). */
static STACK_OF(X509) * pem_list(json_t *arr)
{
    STACK_OF(X509) *out = sk_X509_new_null();
    size_t i;
    json_t *v;
    assert_non_null(out);
    json_array_foreach(arr, i, v)
    {
        const char *pem = json_string_value(v);
        STACK_OF(X509) *one = NULL;
        struct mft_err err;
        assert_non_null(pem);
        if (mft_x509_load_certs_mem(pem, strlen(pem), &one, &err) != 0)
            fail_msg("unreadable certificate: %s", err.message);
        while (sk_X509_num(one) > 0)
            sk_X509_push(out, sk_X509_shift(one));
        sk_X509_free(one);
    }
    return out;
}

/* "2023-07-10T00:00:00+00:00" (UTC only, as in the suite); null = now. */
static time_t validation_time(json_t *v)
{
    const char *s = json_string_value(v);
    struct tm tm = {0};
    const char *rest;
    if (!s)
        return time(NULL);
    rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest || (strcmp(rest, "+00:00") != 0 && strcmp(rest, "Z") != 0))
        fail_msg("validation_time not in UTC: %s", s);
    return timegm(&tm);
}

static enum mft_x509_purpose purpose(json_t *tc)
{
    json_t *eku = json_object_get(tc, "extended_key_usage");
    const char *kind = json_string_value(json_object_get(tc, "validation_kind"));
    int server = 0, client = 0;
    size_t i;
    json_t *v;
    json_array_foreach(eku, i, v)
    {
        server |= json_is_string(v) && strcmp(json_string_value(v), "serverAuth") == 0;
        client |= json_is_string(v) && strcmp(json_string_value(v), "clientAuth") == 0;
    }
    if ((kind && strcmp(kind, "CLIENT") == 0) || (client && !server))
        return MFT_X509_CLIENT;
    return MFT_X509_SERVER;
}

/* The DNS or IP name to match, or NULL. */
static const char *peer_name(json_t *tc)
{
    json_t *pn = json_object_get(tc, "expected_peer_name");
    const char *kind = json_string_value(json_object_get(pn, "kind"));
    if (kind && (strcmp(kind, "DNS") == 0 || strcmp(kind, "IP") == 0))
        return json_string_value(json_object_get(pn, "value"));
    return NULL;
}

static void test_limbo(void **state)
{
    (void)state;
    json_error_t jerr;
    json_t *root = json_load_file(LIMBO, 0, &jerr), *tc;
    json_t *cases = json_object_get(root, "testcases");
    size_t i, n_cases, unexpected = 0;
    size_t agree[N_ENGINES] = {0};

    if (!root)
        fail_msg("%s: %s (line %d)", LIMBO, jerr.text, jerr.line);
    assert_true(json_is_array(cases));
    n_cases = json_array_size(cases);
    assert_int_equal(n_cases, 117);
    load_known();
    json_array_foreach(cases, i, tc)
    {
        const char *id = json_string_value(json_object_get(tc, "id"));
        const char *expected = json_string_value(json_object_get(tc, "expected_result"));
        const char *leaf_pem = json_string_value(json_object_get(tc, "peer_certificate"));
        STACK_OF(X509) *roots = pem_list(json_object_get(tc, "trusted_certs"));
        STACK_OF(X509) *inter = pem_list(json_object_get(tc, "untrusted_intermediates"));
        X509 *leaf = NULL;
        struct mft_err err;

        assert_non_null(id);
        assert_non_null(expected);
        assert_non_null(leaf_pem);
        {
            STACK_OF(X509) *one = NULL;
            if (mft_x509_load_certs_mem(leaf_pem, strlen(leaf_pem), &one, &err) != 0)
                fail_msg("%s: unreadable peer certificate: %s", id, err.message);
            leaf = sk_X509_shift(one);
            sk_X509_pop_free(one, X509_free);
        }
        struct mft_x509_verify_args a = {
            roots,       inter,
            leaf,        validation_time(json_object_get(tc, "validation_time")),
            purpose(tc), peer_name(tc)};
        for (size_t e = 0; e < N_ENGINES; e++) {
            int ok = engines[e].verify(&a, &err) == 0;
            int differs = ok != (strcmp(expected, "SUCCESS") == 0);
            struct known *k = find_known(engines[e].name, id);
            agree[e] += !differs;
            if (k)
                k->seen = 1;
            if (differs && !k) {
                unexpected++;
                print_message("NEW DIFFERENCE %s %s: expected %s, got %s%s%s%s%s\n",
                              engines[e].name, id, expected, ok ? "SUCCESS" : "FAILURE",
                              ok ? "" : " (", ok ? "" : err.message, ok ? "" : "; ",
                              ok ? "" : err.detail);
                if (!ok)
                    print_message(")\n");
            } else if (!differs && k) {
                unexpected++;
                print_message("FIXED %s %s: now %s as expected; remove it from %s\n",
                              engines[e].name, id, expected, KNOWN);
            }
        }
        X509_free(leaf);
        sk_X509_pop_free(roots, X509_free);
        sk_X509_pop_free(inter, X509_free);
    }
    for (size_t k = 0; k < n_known; k++) {
        if (!known[k].seen) {
            unexpected++;
            print_message("UNKNOWN %s %s: listed in %s but no such case\n", known[k].engine,
                          known[k].id, KNOWN);
        }
    }
    for (size_t e = 0; e < N_ENGINES; e++)
        print_message("%s engine: %zu/%zu as expected\n", engines[e].name, agree[e], n_cases);
    free(known);
    json_decref(root);
    if (unexpected)
        fail_msg("%zu differences from %s", unexpected, KNOWN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_limbo),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
