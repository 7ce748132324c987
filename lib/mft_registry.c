/*
 * mft_registry — builds the immutable snapshot of stations and partners from
 * the JSON records that mftctl (later certd) writes to Redis through
 * mft_store. The record format ("stored form") is documented in docs/mftctl.md.
 *
 * Load parses every certificate, unwraps every private key with the master
 * key (mft_secret, AAD = station id), checks each key against its certificate
 * and resolves each partner's station. It also normalises each partner's
 * send settings (digest and cipher names as mft_as2_build takes them, every
 * default filled in, also when there is no "send" object) and refuses the
 * combinations egress could not honour: an https URL with nothing to
 * authenticate the server, encryption without the partner's certificate, an
 * async MDN without the station's async_mdn_url. A station's TLS client
 * identity is its "tls_client" keypair, or else its "tls" keypair shared (one
 * more reference; PEM copies). The snapshot is then never written
 * again: any number of threads may read it while they hold a reference; the
 * reference count uses atomic builtins and the last unref frees everything,
 * wiping the in-memory PEM of the TLS keys. Lookups are linear scans: a
 * gateway has tens of partners, not millions.
 */
#include "mft_registry.h"
#include "mft_log.h"
#include "mft_secret.h"
#include "mft_store.h"
#include "mft_tls.h"
#include "mft_x509.h"

#include <ctype.h>
#include <stdatomic.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>

#define MAX_ENCRYPTION (sizeof(((struct mft_station *)0)->encryption) / sizeof(struct mft_keypair))

/* ---- freeing ---------------------------------------------------------------- */

static void keypair_clear(struct mft_keypair *kp)
{
    X509_free(kp->cert);
    EVP_PKEY_free(kp->key);
    sk_X509_pop_free(kp->chain, X509_free);
    memset(kp, 0, sizeof(*kp));
}

static void station_clear(struct mft_station *st)
{
    keypair_clear(&st->signing);
    for (size_t i = 0; i < st->n_encryption && i < MAX_ENCRYPTION; i++)
        keypair_clear(&st->encryption[i]);
    keypair_clear(&st->tls);
    free(st->tls_cert_pem);
    mft_secret_free_str(st->tls_key_pem);
    keypair_clear(&st->tls_client);
    free(st->tls_client_cert_pem);
    mft_secret_free_str(st->tls_client_key_pem);
    memset(st, 0, sizeof(*st));
}

static void partner_clear(struct mft_partner *p)
{
    X509_free(p->signing_cert);
    X509_free(p->encryption_cert);
    sk_X509_pop_free(p->tls_certs, X509_free);
    sk_X509_pop_free(p->tls_cas, X509_free);
    sk_X509_pop_free(p->send.tls_server_certs, X509_free);
    sk_X509_pop_free(p->send.tls_server_cas, X509_free);
    memset(p, 0, sizeof(*p));
}

static void registry_free(struct mft_registry *reg)
{
    if (!reg)
        return;
    for (size_t i = 0; i < reg->n_stations; i++)
        station_clear(&reg->stations[i]);
    for (size_t i = 0; i < reg->n_partners; i++)
        partner_clear(&reg->partners[i]);
    free(reg->stations);
    free(reg->partners);
    free(reg);
}

struct mft_registry *mft_registry_ref(struct mft_registry *reg)
{
    if (reg)
        __atomic_add_fetch(&reg->refs_, 1, __ATOMIC_RELAXED);
    return reg;
}

void mft_registry_unref(struct mft_registry *reg)
{
    if (reg && __atomic_sub_fetch(&reg->refs_, 1, __ATOMIC_ACQ_REL) == 0)
        registry_free(reg);
}

/* ---- parsing ---------------------------------------------------------------- */

/* Copies a required string member into a fixed buffer. */
static int get_str(const json_t *obj, const char *name, char *buf, size_t len, const char *rec,
                   struct mft_err *err)
{
    const char *s = json_string_value(json_object_get(obj, name));
    if (!s || !*s || strlen(s) >= len) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: \"%s\" missing or too long", rec, name);
        return -1;
    }
    memcpy(buf, s, strlen(s) + 1);
    return 0;
}

static int parse_cert(const json_t *v, X509 **out, STACK_OF(X509) * *rest, const char *rec,
                      const char *field, struct mft_err *err)
{
    STACK_OF(X509) *certs = NULL;
    const char *pem = json_string_value(v);

    *out = NULL;
    if (!pem) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: %s is not a PEM string", rec, field);
        return -1;
    }
    if (mft_x509_load_certs_mem(pem, strlen(pem), &certs, err) != 0) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: %s is not a certificate", rec, field);
        return -1;
    }
    *out = sk_X509_shift(certs);
    if (rest && sk_X509_num(certs) > 0) {
        *rest = certs;
        return 0;
    }
    sk_X509_pop_free(certs, X509_free);
    return 0;
}

static int parse_cert_list(const json_t *arr, STACK_OF(X509) * *out, const char *rec,
                           const char *field, struct mft_err *err)
{
    size_t i;
    const json_t *v;

    *out = sk_X509_new_null();
    if (!*out)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    if (!arr)
        return 0;
    if (!json_is_array(arr)) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: %s is not a list", rec, field);
        return -1;
    }
    json_array_foreach(arr, i, v)
    {
        STACK_OF(X509) *certs = NULL;
        const char *pem = json_string_value(v);
        if (!pem || mft_x509_load_certs_mem(pem, strlen(pem), &certs, err) != 0) {
            mft_err_set(err, MFT_E_CONFIG, "record %s: %s[%zu] is not a certificate", rec, field,
                        i);
            return -1;
        }
        X509 *x;
        while ((x = sk_X509_shift(certs)) != NULL)
            if (!sk_X509_push(*out, x)) {
                X509_free(x);
                sk_X509_pop_free(certs, X509_free);
                return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            }
        sk_X509_free(certs);
    }
    return 0;
}

/* {"cert": PEM, "chain": PEM (optional), "key": "v1:..."} */
static int parse_keypair(const json_t *obj, const unsigned char mk[32], const char *id,
                         const char *field, struct mft_keypair *kp, char **key_pem,
                         struct mft_err *err)
{
    int rc = -1;
    char *plain = NULL;
    size_t plen = 0;
    const char *wrapped;
    const json_t *chain;

    if (!json_is_object(obj)) {
        mft_err_set(err, MFT_E_CONFIG, "record station:%s: %s missing", id, field);
        goto out;
    }
    if (parse_cert(json_object_get(obj, "cert"), &kp->cert, NULL, id, field, err) != 0)
        goto out;
    chain = json_object_get(obj, "chain");
    if (chain && !json_is_null(chain)) {
        const char *pem = json_string_value(chain);
        if (!pem || mft_x509_load_certs_mem(pem, strlen(pem), &kp->chain, err) != 0) {
            mft_err_set(err, MFT_E_CONFIG, "record station:%s: %s.chain is not PEM", id, field);
            goto out;
        }
    }
    wrapped = json_string_value(json_object_get(obj, "key"));
    if (!wrapped) {
        mft_err_set(err, MFT_E_CONFIG, "record station:%s: %s.key missing", id, field);
        goto out;
    }
    if (mft_secret_unwrap(mk, id, wrapped, &plain, &plen, err) != 0) {
        char msg[sizeof(err->message)];
        snprintf(msg, sizeof(msg), "%s", err->message);
        mft_err_set(err, MFT_E_CONFIG, "record station:%s: %s.key: %s", id, field, msg);
        goto out;
    }
    if (mft_x509_load_key_mem(plain, plen, NULL, &kp->key, err) != 0) {
        mft_err_set(err, MFT_E_CONFIG, "record station:%s: %s.key is not a private key", id, field);
        goto out;
    }
    if (!mft_x509_key_matches_cert(kp->cert, kp->key)) {
        mft_err_set(err, MFT_E_CONFIG, "record station:%s: %s.key does not belong to %s.cert", id,
                    field, field);
        goto out;
    }
    if (key_pem) {
        *key_pem = plain;
        plain = NULL;
    }
    rc = 0;
out:
    mft_secret_free(plain, plen);
    return rc;
}

/* 1 for an https:// URL, 0 for http:// (scheme in any case), -1 for anything
 * else: a host must follow and every character must be printable ASCII. */
static int url_scheme(const char *url)
{
    size_t skip;
    int https;
    if (strncasecmp(url, "https://", 8) == 0) {
        https = 1;
        skip = 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        https = 0;
        skip = 7;
    } else {
        return -1;
    }
    if (url[skip] == '\0' || url[skip] == '/')
        return -1;
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return -1;
    return https;
}

/* dst = another reference to every object of src (the same certificate, key
 * and chain certificates). Returns 0, or -1 with err; dst is then cleared by
 * the caller's keypair_clear as usual. */
static int keypair_share(struct mft_keypair *dst, const struct mft_keypair *src,
                         struct mft_err *err)
{
    if (src->cert && X509_up_ref(src->cert))
        dst->cert = src->cert;
    if (src->key && EVP_PKEY_up_ref(src->key))
        dst->key = src->key;
    if (src->chain)
        dst->chain = X509_chain_up_ref(src->chain);
    if (dst->cert != src->cert || dst->key != src->key || (src->chain && !dst->chain))
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    return 0;
}

static char *str_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static int parse_station(const char *json, const unsigned char mk[32], struct mft_station *st,
                         struct mft_err *err)
{
    int rc = -1;
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    const json_t *enc, *tls, *url;
    char rec[80];

    snprintf(rec, sizeof(rec), "station:%s", st->id);
    if (!json_is_object(root)) {
        mft_err_set(err, MFT_E_CONFIG, "record %s is not valid JSON", rec);
        mft_err_detail(err, "line %d: %s", jerr.line, jerr.text);
        goto out;
    }
    if (get_str(root, "as2_id", st->as2_id, sizeof(st->as2_id), rec, err) != 0 ||
        parse_keypair(json_object_get(root, "signing"), mk, st->id, "signing", &st->signing, NULL,
                      err) != 0)
        goto out;
    enc = json_object_get(root, "encryption");
    if (!json_is_array(enc) || json_array_size(enc) == 0 || json_array_size(enc) > MAX_ENCRYPTION) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: \"encryption\" must list 1..%zu keypairs", rec,
                    MAX_ENCRYPTION);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(enc); i++) {
        char field[32];
        snprintf(field, sizeof(field), "encryption[%zu]", i);
        st->n_encryption = i + 1;
        if (parse_keypair(json_array_get(enc, i), mk, st->id, field, &st->encryption[i], NULL,
                          err) != 0)
            goto out;
    }
    tls = json_object_get(root, "tls");
    if (tls && !json_is_null(tls)) {
        if (parse_keypair(tls, mk, st->id, "tls", &st->tls, &st->tls_key_pem, err) != 0 ||
            mft_x509_certs_to_pem(st->tls.cert, st->tls.chain, &st->tls_cert_pem, err) != 0)
            goto out;
    }
    /* the client identity egress presents: its own keypair, or else tls */
    tls = json_object_get(root, "tls_client");
    if (tls && !json_is_null(tls)) {
        if (parse_keypair(tls, mk, st->id, "tls_client", &st->tls_client, &st->tls_client_key_pem,
                          err) != 0 ||
            mft_x509_certs_to_pem(st->tls_client.cert, st->tls_client.chain,
                                  &st->tls_client_cert_pem, err) != 0)
            goto out;
    } else if (st->tls.cert) {
        if (keypair_share(&st->tls_client, &st->tls, err) != 0)
            goto out;
        st->tls_client_cert_pem = str_dup(st->tls_cert_pem);
        st->tls_client_key_pem = str_dup(st->tls_key_pem);
        if (!st->tls_client_cert_pem || !st->tls_client_key_pem) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
    }
    url = json_object_get(root, "async_mdn_url");
    if (url && !json_is_null(url)) {
        const char *u = json_string_value(url);
        if (!u || strlen(u) >= sizeof(st->async_mdn_url) || url_scheme(u) < 0) {
            mft_err_set(err, MFT_E_CONFIG,
                        "record %s: async_mdn_url is not an http:// or https:// URL", rec);
            goto out;
        }
        memcpy(st->async_mdn_url, u, strlen(u) + 1);
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

static const struct {
    const char *name;
    enum mft_mdn_signing value;
} mdn_signing_names[] = {
    {"if-requested", MFT_MDN_SIGN_IF_REQUESTED},
    {"always", MFT_MDN_SIGN_ALWAYS},
    {"never", MFT_MDN_SIGN_NEVER},
};

static int get_bool(const json_t *root, const char *name, int def, int *out, const char *rec,
                    struct mft_err *err)
{
    const json_t *v = json_object_get(root, name);
    if (!v) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v))
        return mft_err_set(err, MFT_E_CONFIG, "record %s: %s is not true/false", rec, name);
    *out = json_is_true(v);
    return 0;
}

/* ---- partner TLS policy ----------------------------------------------------- */

static const struct {
    const char *name;
    unsigned version;
} tls_versions[] = {{"TLSv1.2", 0x0303}, {"TLSv1.3", 0x0304}};

static const char *const tls_trust_names[] = {"any", "certificate", "ca", "pin", NULL};

static int tls_version_parse(const json_t *obj, const char *name, unsigned def, unsigned *out,
                             struct mft_err *err)
{
    const json_t *v = json_object_get(obj, name);
    *out = def;
    if (!v || json_is_null(v))
        return 0;
    for (size_t i = 0; json_is_string(v) && i < sizeof(tls_versions) / sizeof(tls_versions[0]);
         i++) {
        if (strcmp(json_string_value(v), tls_versions[i].name) == 0) {
            *out = tls_versions[i].version;
            return 0;
        }
    }
    return mft_err_set(err, MFT_E_CONFIG, "tls_policy.%s must be \"TLSv1.2\" or \"TLSv1.3\"", name);
}

int mft_tls_policy_parse(const json_t *obj, struct mft_tls_policy *out, struct mft_err *err)
{
    static const char *const members[] = {"min_version",  "max_version",        "ciphers",
                                          "server_trust", "client_certificate", NULL};
    const char *key;
    const json_t *v;

    memset(out, 0, sizeof(*out));
    out->min_version = 0x0303;
    out->max_version = 0x0304;
    if (!obj || json_is_null(obj))
        return 0;
    if (!json_is_object(obj))
        return mft_err_set(err, MFT_E_CONFIG, "tls_policy must be an object");
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i = 0;
        while (members[i] && strcmp(members[i], key) != 0)
            i++;
        if (!members[i])
            return mft_err_set(err, MFT_E_CONFIG,
                               "tls_policy.%s is not a setting (known: min_version, max_version, "
                               "ciphers, server_trust, client_certificate)",
                               key);
    }
    if (tls_version_parse(obj, "min_version", 0x0303, &out->min_version, err) != 0 ||
        tls_version_parse(obj, "max_version", 0x0304, &out->max_version, err) != 0)
        return -1;
    if (out->min_version > out->max_version)
        return mft_err_set(err, MFT_E_CONFIG, "tls_policy.min_version is above max_version");
    v = json_object_get(obj, "ciphers");
    if (v && !json_is_null(v)) {
        if (!json_is_array(v) || json_array_size(v) == 0 ||
            json_array_size(v) > MFT_TLS_POLICY_MAX_CIPHERS)
            return mft_err_set(err, MFT_E_CONFIG,
                               "tls_policy.ciphers must be a list of 1..%d IANA cipher suite names",
                               MFT_TLS_POLICY_MAX_CIPHERS);
        for (size_t i = 0; i < json_array_size(v); i++) {
            const char *c = json_string_value(json_array_get(v, i));
            int id = c ? mft_tls_suite_id(c) : -1;
            if (!c || strlen(c) >= sizeof(out->ciphers[0]) || id < 0)
                return mft_err_set(err, MFT_E_CONFIG,
                                   "tls_policy.ciphers[%zu] is not a cipher suite this gateway "
                                   "knows (IANA names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "
                                   "TLS_AES_256_GCM_SHA384)",
                                   i);
            out->cipher_ids[out->n_ciphers] = (unsigned short)id;
            memcpy(out->ciphers[out->n_ciphers++], c, strlen(c) + 1);
        }
    }
    v = json_object_get(obj, "server_trust");
    if (v && !json_is_null(v)) {
        size_t i = 0;
        while (json_is_string(v) && tls_trust_names[i] &&
               strcmp(tls_trust_names[i], json_string_value(v)) != 0)
            i++;
        if (!json_is_string(v) || !tls_trust_names[i])
            return mft_err_set(err, MFT_E_CONFIG,
                               "tls_policy.server_trust must be \"any\", \"certificate\", \"ca\" "
                               "or \"pin\"");
        out->trust = (enum mft_tls_trust)i;
    }
    v = json_object_get(obj, "client_certificate");
    if (v && !json_is_null(v)) {
        const char *c = json_string_value(v);
        if (!c || (strcmp(c, "required") != 0 && strcmp(c, "optional") != 0))
            return mft_err_set(
                err, MFT_E_CONFIG,
                "tls_policy.client_certificate must be \"required\" or \"optional\"");
        out->client_cert_optional = strcmp(c, "optional") == 0;
    }
    return 0;
}

void mft_tls_policy_versions(const struct mft_tls_policy *p, char *buf, size_t len)
{
    const char *lo = p->min_version == 0x0304 ? "TLSv1.3" : "TLSv1.2";
    const char *hi = p->max_version == 0x0303 ? "TLSv1.2" : "TLSv1.3";
    if (strcmp(lo, hi) == 0)
        snprintf(buf, len, "%s", lo);
    else
        snprintf(buf, len, "%s..%s", lo, hi);
}

int mft_tls_policy_allows_suite(const struct mft_tls_policy *p, unsigned suite_id)
{
    if (p->n_ciphers == 0)
        return 1;
    for (size_t i = 0; i < p->n_ciphers; i++)
        if (p->cipher_ids[i] == suite_id)
            return 1;
    return 0;
}

/* ---- partner send settings ------------------------------------------------- */

#define SEND_TIMEOUT_MAX 86400L      /* one day */
#define SEND_MDN_TIMEOUT_MAX 604800L /* one week */
#define SEND_MAX_ATTEMPTS 100L

static const char *const send_digests[] = {"sha1", "sha224", "sha256", "sha384", "sha512", NULL};
static const char *const send_ciphers[] = {
    "aes-128-cbc", "aes-192-cbc", "aes-256-cbc", "des-ede3-cbc",
    "aes-128-gcm", "aes-256-gcm", NULL};

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* "SHA-256", "sha256" ... → "sha256"; "none" → "". Returns 0, or -1 for a
 * digest AS2 does not use. */
static int norm_digest(const char *in, char *out, size_t len)
{
    size_t k = 0;
    for (const char *c = in; *c; c++) {
        if (*c == '-')
            continue;
        if (k + 1 >= len) {
            out[k] = '\0';
            return -1;
        }
        out[k++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    }
    out[k] = '\0';
    if (strcmp(out, "none") == 0)
        out[0] = '\0';
    return out[0] == '\0' || in_list(out, send_digests) ? 0 : -1;
}

/* "AES-256-CBC", "3des" ... → "aes-256-cbc", "des-ede3-cbc"; "none" → "". */
static int norm_cipher(const char *in, char *out, size_t len)
{
    size_t k = 0;
    for (const char *c = in; *c; c++) {
        if (k + 1 >= len) {
            out[k] = '\0';
            return -1;
        }
        out[k++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    }
    out[k] = '\0';
    if (strcmp(out, "none") == 0)
        out[0] = '\0';
    else if (strcmp(out, "3des") == 0 && len > sizeof("des-ede3-cbc"))
        memcpy(out, "des-ede3-cbc", sizeof("des-ede3-cbc"));
    return out[0] == '\0' || in_list(out, send_ciphers) ? 0 : -1;
}

/* 43 base64 characters and "=": exactly 32 bytes (a SHA-256). */
static int valid_pin(const char *s)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (strlen(s) != 44 || s[43] != '=')
        return 0;
    for (size_t i = 0; i < 43; i++)
        if (!strchr(b64, s[i]))
            return 0;
    /* 43 characters carry 258 bits: the last 2 must be zero */
    return ((strchr(b64, s[42]) - b64) & 3) == 0;
}

struct send_word {
    const char *name;
    int value;
};

/* A word out of words (the first one is the default when the member is absent). */
static int send_word(const json_t *obj, const char *name, const struct send_word *words, int *out,
                     const char *rec, struct mft_err *err)
{
    const json_t *v = json_object_get(obj, name);
    const char *w = json_string_value(v);
    *out = words[0].value;
    if (!v || json_is_null(v))
        return 0;
    for (size_t i = 0; w && words[i].name; i++)
        if (strcmp(w, words[i].name) == 0) {
            *out = words[i].value;
            return 0;
        }
    return mft_err_set(err, MFT_E_CONFIG, "record %s: send.%s: unknown value", rec, name);
}

static int send_bool(const json_t *obj, const char *name, int def, int *out, const char *rec,
                     struct mft_err *err)
{
    const json_t *v = json_object_get(obj, name);
    *out = def;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return mft_err_set(err, MFT_E_CONFIG, "record %s: send.%s is not true/false", rec, name);
    *out = json_is_true(v);
    return 0;
}

static int send_long(const json_t *obj, const char *name, long def, long max, long *out,
                     const char *rec, struct mft_err *err)
{
    const json_t *v = json_object_get(obj, name);
    *out = def;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
        return mft_err_set(err, MFT_E_CONFIG, "record %s: send.%s is not an integer in 1..%ld", rec,
                           name, max);
    *out = (long)json_integer_value(v);
    return 0;
}

static const struct send_word key_transport_words[] = {{"rsa-pkcs1", 0}, {"rsa-oaep", 1}, {0}};
static const struct send_word compress_words[] = {{"none", MFT_COMPRESS_NONE},
                                                  {"before-signing", MFT_COMPRESS_BEFORE_SIGNING},
                                                  {"after-signing", MFT_COMPRESS_AFTER_SIGNING},
                                                  {0}};
static const struct send_word cte_words[] = {{"binary", 0}, {"base64", 1}, {0}};
static const struct send_word mdn_words[] = {{"sync", MFT_MDN_REQUEST_SYNC},
                                             {"async", MFT_MDN_REQUEST_ASYNC},
                                             {"none", MFT_MDN_REQUEST_NONE},
                                             {0}};

/*
 * The "send" object of a partner record (may be absent: every setting then
 * still holds its default, and enabled is 0). The station checks (signing
 * key, async MDN URL) are made by the caller once the station is resolved.
 */
static int parse_send(const json_t *send, struct mft_partner *p, const char *rec,
                      struct mft_err *err)
{
    struct mft_partner_send *s = &p->send;
    json_t *empty = NULL;
    const json_t *obj = send, *v;
    const char *str;
    int rc = -1, https = 0, word;
    size_t i;

    if (!send || json_is_null(send))
        obj = empty = json_object();
    else if (!json_is_object(send)) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: send is not an object", rec);
        goto out;
    } else
        s->enabled = 1;
    if (!obj) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (s->enabled) {
        str = json_string_value(json_object_get(obj, "url"));
        if (!str || strlen(str) >= sizeof(s->url) || (https = url_scheme(str)) < 0) {
            mft_err_set(err, MFT_E_CONFIG, "record %s: send.url is not an http:// or https:// URL",
                        rec);
            goto out;
        }
        memcpy(s->url, str, strlen(str) + 1);
    }
    if (parse_cert_list(json_object_get(obj, "tls_server_certs"), &s->tls_server_certs, rec,
                        "send.tls_server_certs", err) != 0 ||
        parse_cert_list(json_object_get(obj, "tls_server_cas"), &s->tls_server_cas, rec,
                        "send.tls_server_cas", err) != 0)
        goto out;
    v = json_object_get(obj, "tls_server_pins");
    if (v && !json_is_null(v) && (!json_is_array(v) || json_array_size(v) > 4)) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: send.tls_server_pins is not a list of 0..4",
                    rec);
        goto out;
    }
    for (i = 0; i < json_array_size(v); i++) {
        str = json_string_value(json_array_get(v, i));
        if (str && strncmp(str, "sha256//", 8) == 0)
            str += 8;
        if (!str || !valid_pin(str)) {
            mft_err_set(err, MFT_E_CONFIG,
                        "record %s: send.tls_server_pins[%zu] is not a base64 SHA-256", rec, i);
            goto out;
        }
        memcpy(s->tls_server_pins[s->n_pins++], str, strlen(str) + 1);
    }
    str = json_string_value(json_object_get(obj, "sign"));
    if (norm_digest(str ? str : "sha256", s->sign_md, sizeof(s->sign_md)) != 0) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: send.sign: unknown digest", rec);
        goto out;
    }
    str = json_string_value(json_object_get(obj, "encrypt"));
    if (norm_cipher(str ? str : "aes-256-cbc", s->cipher, sizeof(s->cipher)) != 0) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: send.encrypt: unknown cipher", rec);
        goto out;
    }
    if (send_word(obj, "key_transport", key_transport_words, &s->rsa_oaep, rec, err) != 0 ||
        send_word(obj, "compress", compress_words, &word, rec, err) != 0)
        goto out;
    s->compress = (enum mft_compress_order)word;
    if (send_word(obj, "transfer_encoding", cte_words, &s->base64, rec, err) != 0 ||
        send_word(obj, "mdn", mdn_words, &word, rec, err) != 0)
        goto out;
    s->mdn = (enum mft_mdn_request)word;
    if (send_bool(obj, "old_micalg_names", 0, &s->old_micalg_names, rec, err) != 0 ||
        send_bool(obj, "cms_algorithm_protection", 1, &s->alg_protection, rec, err) != 0 ||
        send_bool(obj, "content_length", 0, &s->content_length, rec, err) != 0 ||
        send_bool(obj, "multiple_attachments", 0, &s->multiple_attachments, rec, err) != 0 ||
        send_bool(obj, "mdn_signed", 1, &s->mdn_signed, rec, err) != 0 ||
        send_long(obj, "mdn_timeout_s", 3600, SEND_MDN_TIMEOUT_MAX, &s->mdn_timeout_s, rec, err) !=
            0 ||
        send_long(obj, "timeout_s", 120, SEND_TIMEOUT_MAX, &s->timeout_s, rec, err) != 0 ||
        send_long(obj, "max_attempts", 10, SEND_MAX_ATTEMPTS, &s->max_attempts, rec, err) != 0 ||
        send_long(obj, "retry_base_s", 30, SEND_TIMEOUT_MAX, &s->retry_base_s, rec, err) != 0 ||
        send_long(obj, "retry_max_s", 3600, SEND_MDN_TIMEOUT_MAX, &s->retry_max_s, rec, err) != 0)
        goto out;
    if (s->retry_max_s < s->retry_base_s) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: send.retry_max_s is below send.retry_base_s",
                    rec);
        goto out;
    }
    if (s->enabled && https && sk_X509_num(s->tls_server_certs) == 0 &&
        sk_X509_num(s->tls_server_cas) == 0 && s->n_pins == 0) {
        mft_err_set(err, MFT_E_CONFIG,
                    "record %s: send.url is https but no tls_server_certs, tls_server_cas or "
                    "tls_server_pins: the partner's server cannot be authenticated",
                    rec);
        goto out;
    }
    if (s->enabled && s->cipher[0] && !p->encryption_cert) {
        mft_err_set(err, MFT_E_CONFIG,
                    "record %s: send.encrypt is %s but there is no "
                    "encryption_cert",
                    rec, s->cipher);
        goto out;
    }
    rc = 0;
out:
    json_decref(empty);
    return rc;
}

/* A server_trust mode that names a kind of registration the partner has none
 * of would refuse every https connection: say so at load. */
static int tls_trust_unusable(const struct mft_partner *p, const char *rec, struct mft_err *err)
{
    const struct mft_partner_send *s = &p->send;
    int n = 0;
    if (strncmp(s->url, "https://", 8) != 0)
        return 0;
    switch (p->tls_policy.trust) {
    case MFT_TLS_TRUST_ANY:
        return 0;
    case MFT_TLS_TRUST_CERTIFICATE:
        n = s->tls_server_certs ? sk_X509_num(s->tls_server_certs) : 0;
        break;
    case MFT_TLS_TRUST_CA:
        n = s->tls_server_cas ? sk_X509_num(s->tls_server_cas) : 0;
        break;
    case MFT_TLS_TRUST_PIN:
        n = (int)s->n_pins;
        break;
    }
    if (n > 0)
        return 0;
    mft_err_set(err, MFT_E_CONFIG,
                "record %s: tls_policy.server_trust \"%s\" but no such registration in send "
                "(tls_server_certs, tls_server_cas, tls_server_pins)",
                rec, tls_trust_names[p->tls_policy.trust]);
    return 1;
}

static int parse_partner(const char *json, struct mft_partner *p, struct mft_err *err)
{
    int rc = -1;
    json_error_t jerr;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    const json_t *v;
    const char *mdn;
    char rec[80];

    snprintf(rec, sizeof(rec), "partner:%s", p->id);
    if (!json_is_object(root)) {
        mft_err_set(err, MFT_E_CONFIG, "record %s is not valid JSON", rec);
        mft_err_detail(err, "line %d: %s", jerr.line, jerr.text);
        goto out;
    }
    if (get_str(root, "station", p->station_id, sizeof(p->station_id), rec, err) != 0 ||
        get_str(root, "as2_id", p->as2_id, sizeof(p->as2_id), rec, err) != 0)
        goto out;
    v = json_object_get(root, "signing_cert");
    if (v && !json_is_null(v) && parse_cert(v, &p->signing_cert, NULL, rec, "signing_cert", err))
        goto out;
    v = json_object_get(root, "encryption_cert");
    if (v && !json_is_null(v) &&
        parse_cert(v, &p->encryption_cert, NULL, rec, "encryption_cert", err))
        goto out;
    if (parse_cert_list(json_object_get(root, "tls_client_certs"), &p->tls_certs, rec,
                        "tls_client_certs", err) != 0 ||
        parse_cert_list(json_object_get(root, "tls_client_cas"), &p->tls_cas, rec, "tls_client_cas",
                        err) != 0 ||
        get_bool(root, "require_signature", 1, &p->require_signature, rec, err) != 0 ||
        get_bool(root, "require_encryption", 1, &p->require_encryption, rec, err) != 0 ||
        get_bool(root, "allow_legacy_encryption", 0, &p->allow_legacy_encryption, rec, err) != 0)
        goto out;
    mdn = json_string_value(json_object_get(root, "mdn_signing"));
    p->mdn_signing = MFT_MDN_SIGN_IF_REQUESTED;
    if (mdn) {
        size_t i;
        for (i = 0; i < sizeof(mdn_signing_names) / sizeof(mdn_signing_names[0]); i++)
            if (strcmp(mdn, mdn_signing_names[i].name) == 0)
                break;
        if (i == sizeof(mdn_signing_names) / sizeof(mdn_signing_names[0])) {
            mft_err_set(err, MFT_E_CONFIG, "record %s: unknown mdn_signing \"%s\"", rec, mdn);
            goto out;
        }
        p->mdn_signing = mdn_signing_names[i].value;
    }
    if (p->require_signature && !p->signing_cert) {
        mft_err_set(err, MFT_E_CONFIG, "record %s: require_signature without a signing_cert", rec);
        goto out;
    }
    if (parse_send(json_object_get(root, "send"), p, rec, err) != 0)
        goto out;
    if (mft_tls_policy_parse(json_object_get(root, "tls_policy"), &p->tls_policy, err) != 0) {
        mft_err_detail(err, "record %s", rec);
        goto out;
    }
    if (p->send.enabled && tls_trust_unusable(p, rec, err))
        goto out;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ---- load ------------------------------------------------------------------- */

static int copy_id(char *dst, size_t len, const char *id, const char *what, struct mft_err *err)
{
    if (strlen(id) >= len)
        return mft_err_set(err, MFT_E_CONFIG, "%s id too long: %.80s", what, id);
    memcpy(dst, id, strlen(id) + 1);
    return 0;
}

int mft_registry_poll(struct mft_store *store, long long *seen, long long *now, struct mft_err *err)
{
    if (mft_store_config_version(store, now, err) < 0)
        return -1;
    if (*now == *seen)
        return 0;
    if (*now == 0) {
        char v[32];
        snprintf(v, sizeof(v), "%lld", *seen);
        mft_warn("config.missing",
                 "Redis holds no configuration (restarted without persistence or flushed?): "
                 "the one in force stays until a configuration is applied",
                 "version", v);
        *seen = 0;
        return 0;
    }
    return 1;
}

int mft_registry_load(struct mft_store *store, const unsigned char master_key[32],
                      struct mft_registry **out, struct mft_err *err)
{
    int rc = -1;
    struct mft_registry *reg = NULL;
    char **ids = NULL, *json = NULL;
    size_t n = 0;

    *out = NULL;
    reg = calloc(1, sizeof(*reg));
    if (!reg) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    reg->refs_ = 1;
    static atomic_ullong loads;
    reg->load_seq = atomic_fetch_add(&loads, 1) + 1;
    /* version first: a write during the load shows up as a newer version */
    if (mft_store_config_version(store, &reg->version, err) != 0)
        goto out;

    if (mft_store_list_stations(store, &ids, &n, err) != 0)
        goto out;
    reg->stations = calloc(n ? n : 1, sizeof(*reg->stations));
    if (!reg->stations) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct mft_station *st = &reg->stations[reg->n_stations];
        int r = mft_store_get_station(store, ids[i], &json, err);
        if (r < 0)
            goto out;
        if (r == 1)
            continue; /* listed but deleted meanwhile */
        reg->n_stations++;
        if (copy_id(st->id, sizeof(st->id), ids[i], "station", err) != 0 ||
            parse_station(json, master_key, st, err) != 0)
            goto out;
        free(json);
        json = NULL;
    }
    mft_store_free_list(ids, n);
    ids = NULL;

    if (mft_store_list_partners(store, &ids, &n, err) != 0)
        goto out;
    reg->partners = calloc(n ? n : 1, sizeof(*reg->partners));
    if (!reg->partners) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        struct mft_partner *p = &reg->partners[reg->n_partners];
        int r = mft_store_get_partner(store, ids[i], &json, err);
        if (r < 0)
            goto out;
        if (r == 1)
            continue;
        reg->n_partners++;
        if (copy_id(p->id, sizeof(p->id), ids[i], "partner", err) != 0 ||
            parse_partner(json, p, err) != 0)
            goto out;
        free(json);
        json = NULL;
        for (size_t s = 0; s < reg->n_stations && !p->station; s++)
            if (strcmp(reg->stations[s].id, p->station_id) == 0)
                p->station = &reg->stations[s];
        if (!p->station) {
            mft_err_set(err, MFT_E_CONFIG, "record partner:%s: station \"%s\" does not exist",
                        p->id, p->station_id);
            goto out;
        }
        if (p->send.enabled && p->send.sign_md[0] && !p->station->signing.key) {
            mft_err_set(err, MFT_E_CONFIG,
                        "record partner:%s: send.sign needs station \"%s\"'s signing key", p->id,
                        p->station_id);
            goto out;
        }
        if (p->send.enabled && p->send.mdn == MFT_MDN_REQUEST_ASYNC &&
            !p->station->async_mdn_url[0]) {
            mft_err_set(err, MFT_E_CONFIG,
                        "record partner:%s: send.mdn is async but station \"%s\" has no "
                        "async_mdn_url",
                        p->id, p->station_id);
            goto out;
        }
    }
    *out = reg;
    reg = NULL;
    rc = 0;
out:
    if (rc != 0 && err && err->detail[0] == '\0' && ERR_peek_error())
        mft_err_openssl(err);
    ERR_clear_error();
    free(json);
    mft_store_free_list(ids, n);
    registry_free(reg);
    return rc;
}

/* ---- lookups ---------------------------------------------------------------- */

const struct mft_station *mft_registry_station_by_as2(const struct mft_registry *reg,
                                                      const char *as2_id)
{
    if (!reg || !as2_id)
        return NULL;
    for (size_t i = 0; i < reg->n_stations; i++)
        if (strcmp(reg->stations[i].as2_id, as2_id) == 0)
            return &reg->stations[i];
    return NULL;
}

const struct mft_partner *mft_registry_partner_by_as2(const struct mft_registry *reg,
                                                      const struct mft_station *st,
                                                      const char *as2_id)
{
    if (!reg || !as2_id)
        return NULL;
    for (size_t i = 0; i < reg->n_partners; i++) {
        const struct mft_partner *p = &reg->partners[i];
        if ((!st || p->station == st) && strcmp(p->as2_id, as2_id) == 0)
            return p;
    }
    return NULL;
}

const struct mft_partner *mft_registry_partner(const struct mft_registry *reg, const char *id)
{
    if (!reg || !id)
        return NULL;
    for (size_t i = 0; i < reg->n_partners; i++)
        if (strcmp(reg->partners[i].id, id) == 0)
            return &reg->partners[i];
    return NULL;
}
