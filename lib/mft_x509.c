/*
 * mft_x509 — certificate and key loading, and one-line certificate facts.
 *
 * Used by mftctl (import), the registry (records from Redis) and every
 * service that prints a certificate in an error detail. Stateless except for
 * the once-only load of OpenSSL's legacy provider (pthread_once), so any
 * thread may call anything here. All returned objects belong to the caller.
 *
 * PKCS#12 is walked bag by bag rather than with PKCS12_parse so that a file
 * with several keys (OpenAS2 keystores) can be opened by alias, and so that a
 * wrong password (MAC check) is told apart from an algorithm that needs the
 * legacy provider (RC2-40 encrypted certificate bags, the Java default for
 * years). Key material read from files is wiped before it is freed.
 */
#include "mft_x509.h"
#include "mft_secret.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#define P12_MAX_ITEMS 64
#define P12_MAX_DEPTH 4

/* ---- legacy provider ---------------------------------------------------- */

static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;
static int legacy_loaded; /* written once under pthread_once, read after it */
/* Kept for the life of the process (never unloaded: other threads may be using
 * them); static so leak checkers see them as reachable. */
static OSSL_PROVIDER *legacy_prov, *default_prov;

static void legacy_init(void)
{
    legacy_prov = OSSL_PROVIDER_load(NULL, "legacy");
    default_prov = OSSL_PROVIDER_load(NULL, "default");
    legacy_loaded = legacy_prov && default_prov;
    ERR_clear_error();
}

int mft_x509_load_legacy(void)
{
    pthread_once(&legacy_once, legacy_init);
    return legacy_loaded ? 0 : -1;
}

/* ---- files ---------------------------------------------------------------- */

int mft_x509_read_file(const char *path, unsigned char **buf, size_t *len, struct mft_err *err)
{
    int rc = -1, fd = -1;
    unsigned char *data = NULL;
    struct stat sb;
    size_t got = 0;

    *buf = NULL;
    *len = 0;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            mft_err_set(err, MFT_E_CONFIG, "file not found: %s", path);
        else
            mft_err_set(err, MFT_E_CONFIG, "cannot open %s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        mft_err_set(err, MFT_E_CONFIG, "not a regular file: %s", path);
        goto out;
    }
    if ((unsigned long long)sb.st_size > MFT_X509_MAX_INPUT) {
        mft_err_set(err, MFT_E_CONFIG, "file too large (over %u bytes): %s", MFT_X509_MAX_INPUT,
                    path);
        goto out;
    }
    data = malloc((size_t)sb.st_size + 1);
    if (!data) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    while (got < (size_t)sb.st_size) {
        ssize_t n = read(fd, data + got, (size_t)sb.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            mft_err_set(err, MFT_E_CONFIG, "cannot read %s: %s", path,
                        n < 0 ? strerror(errno) : "short read");
            goto out;
        }
        got += (size_t)n;
    }
    data[got] = '\0';
    *buf = data;
    *len = got;
    data = NULL;
    rc = 0;
out:
    if (data) {
        OPENSSL_cleanse(data, (size_t)sb.st_size);
        free(data);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

static void wipe_free(unsigned char *buf, size_t len)
{
    if (buf) {
        OPENSSL_cleanse(buf, len);
        free(buf);
    }
}

static int looks_pem(const void *buf, size_t len)
{
    return memmem(buf, len, "-----BEGIN ", 11) != NULL;
}

/* ---- certificates --------------------------------------------------------- */

int mft_x509_load_certs_mem(const void *buf, size_t len, STACK_OF(X509) * *out, struct mft_err *err)
{
    int rc = -1;
    BIO *bio = NULL;
    STACK_OF(X509) *certs = NULL;
    X509 *x = NULL;

    *out = NULL;
    if (len > MFT_X509_MAX_INPUT)
        return mft_err_set(err, MFT_E_CONFIG, "certificate input too large");
    certs = sk_X509_new_null();
    if (!certs) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (looks_pem(buf, len)) {
        bio = BIO_new_mem_buf(buf, (int)len);
        if (!bio) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
        /* PEM_read_bio_X509_AUX also accepts TRUSTED CERTIFICATE and skips
         * blocks of other types (keys) on its way. */
        while ((x = PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) != NULL) {
            if (sk_X509_num(certs) >= P12_MAX_ITEMS || !sk_X509_push(certs, x)) {
                mft_err_set(err, MFT_E_CONFIG, "too many certificates (max %d)", P12_MAX_ITEMS);
                goto out;
            }
            x = NULL;
        }
        ERR_clear_error(); /* the final "no start line" */
    } else {
        const unsigned char *p = buf;
        x = d2i_X509(NULL, &p, (long)len);
        if (x) {
            if (!sk_X509_push(certs, x)) {
                mft_err_set(err, MFT_E_NO_MEMORY, NULL);
                goto out;
            }
            x = NULL;
        } else {
            /* A DER PKCS#7 certificate bundle (.p7b) */
            PKCS7 *p7;
            p = buf;
            ERR_clear_error();
            p7 = d2i_PKCS7(NULL, &p, (long)len);
            if (p7 && PKCS7_type_is_signed(p7) && p7->d.sign && p7->d.sign->cert) {
                for (int i = 0; i < sk_X509_num(p7->d.sign->cert); i++) {
                    X509 *c = sk_X509_value(p7->d.sign->cert, i);
                    if (!X509_up_ref(c) || !sk_X509_push(certs, c)) {
                        X509_free(c);
                        break;
                    }
                }
            }
            PKCS7_free(p7);
        }
    }
    if (sk_X509_num(certs) == 0) {
        mft_err_set(err, MFT_E_CONFIG, "no certificate found (expected PEM or DER X.509)");
        mft_err_openssl(err);
        goto out;
    }
    *out = certs;
    certs = NULL;
    rc = 0;
out:
    X509_free(x);
    BIO_free(bio);
    sk_X509_pop_free(certs, X509_free);
    return rc;
}

int mft_x509_load_certs(const char *path, STACK_OF(X509) * *out, struct mft_err *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = -1;

    *out = NULL;
    if (mft_x509_read_file(path, &buf, &len, err) != 0)
        goto out;
    if (mft_x509_load_certs_mem(buf, len, out, err) != 0) {
        mft_err_set(err, MFT_E_CONFIG, "no certificate in %s (expected PEM or DER X.509)", path);
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

int mft_x509_load_cert(const char *path, X509 **out, struct mft_err *err)
{
    STACK_OF(X509) *certs = NULL;

    *out = NULL;
    if (mft_x509_load_certs(path, &certs, err) != 0)
        return -1;
    *out = sk_X509_shift(certs);
    sk_X509_pop_free(certs, X509_free);
    return 0;
}

/* ---- PKCS#12 ---------------------------------------------------------------- */

struct p12_key {
    EVP_PKEY *key;
    char *name;              /* friendlyName, OPENSSL_malloc'd, may be NULL */
    unsigned char keyid[64]; /* localKeyID */
    int keyid_len;
};

struct p12_content {
    struct p12_key keys[P12_MAX_ITEMS];
    size_t n_keys;
    STACK_OF(X509) * certs; /* localKeyID kept with X509_keyid_set1 */
};

static void p12_content_clear(struct p12_content *c)
{
    for (size_t i = 0; i < c->n_keys; i++) {
        EVP_PKEY_free(c->keys[i].key);
        OPENSSL_free(c->keys[i].name);
    }
    c->n_keys = 0;
    sk_X509_pop_free(c->certs, X509_free);
    c->certs = NULL;
}

static const ASN1_OCTET_STRING *bag_keyid(const PKCS12_SAFEBAG *bag)
{
    const ASN1_TYPE *t = PKCS12_SAFEBAG_get0_attr(bag, NID_localKeyID);
    if (!t || t->type != V_ASN1_OCTET_STRING)
        return NULL;
    return t->value.octet_string;
}

static int p12_walk_bags(const STACK_OF(PKCS12_SAFEBAG) * bags, const char *pw, int pwlen,
                         struct p12_content *c, int depth)
{
    if (depth > P12_MAX_DEPTH)
        return -1;
    for (int i = 0; i < sk_PKCS12_SAFEBAG_num(bags); i++) {
        const PKCS12_SAFEBAG *bag = sk_PKCS12_SAFEBAG_value(bags, i);
        const ASN1_OCTET_STRING *kid = bag_keyid(bag);
        EVP_PKEY *pkey = NULL;

        switch (PKCS12_SAFEBAG_get_nid(bag)) {
        case NID_keyBag: {
            const PKCS8_PRIV_KEY_INFO *p8 = PKCS12_SAFEBAG_get0_p8inf(bag);
            pkey = p8 ? EVP_PKCS82PKEY(p8) : NULL;
            if (!pkey)
                return -1;
            break;
        }
        case NID_pkcs8ShroudedKeyBag: {
            PKCS8_PRIV_KEY_INFO *p8 = PKCS12_decrypt_skey(bag, pw, pwlen);
            pkey = p8 ? EVP_PKCS82PKEY(p8) : NULL;
            PKCS8_PRIV_KEY_INFO_free(p8);
            if (!pkey)
                return -1;
            break;
        }
        case NID_certBag: {
            X509 *x;
            if (PKCS12_SAFEBAG_get_bag_nid(bag) != NID_x509Certificate)
                continue;
            x = PKCS12_SAFEBAG_get1_cert(bag);
            if (!x)
                return -1;
            if ((kid && !X509_keyid_set1(x, kid->data, kid->length)) ||
                sk_X509_num(c->certs) >= P12_MAX_ITEMS || !sk_X509_push(c->certs, x)) {
                X509_free(x);
                return -1;
            }
            continue;
        }
        case NID_safeContentsBag:
            if (p12_walk_bags(PKCS12_SAFEBAG_get0_safes(bag), pw, pwlen, c, depth + 1) != 0)
                return -1;
            continue;
        default:
            continue; /* CRL and secret bags: not ours */
        }
        /* a key */
        if (c->n_keys >= P12_MAX_ITEMS) {
            EVP_PKEY_free(pkey);
            return -1;
        }
        struct p12_key *k = &c->keys[c->n_keys++];
        k->key = pkey;
        k->name = PKCS12_get_friendlyname((PKCS12_SAFEBAG *)bag);
        k->keyid_len = 0;
        if (kid && kid->length > 0 && (size_t)kid->length <= sizeof(k->keyid)) {
            memcpy(k->keyid, kid->data, (size_t)kid->length);
            k->keyid_len = kid->length;
        }
    }
    return 0;
}

static int p12_walk(PKCS12 *p12, const char *pw, int pwlen, struct p12_content *c)
{
    int rc = -1;
    STACK_OF(PKCS7) *safes = PKCS12_unpack_authsafes(p12);

    c->certs = sk_X509_new_null();
    if (!safes || !c->certs)
        goto out;
    for (int i = 0; i < sk_PKCS7_num(safes); i++) {
        PKCS7 *p7 = sk_PKCS7_value(safes, i);
        STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
        int bad;
        if (PKCS7_type_is_data(p7))
            bags = PKCS12_unpack_p7data(p7);
        else if (PKCS7_type_is_encrypted(p7))
            bags = PKCS12_unpack_p7encdata(p7, pw, pwlen);
        else
            continue;
        bad = !bags || p12_walk_bags(bags, pw, pwlen, c, 0) != 0;
        sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
        if (bad)
            goto out;
    }
    rc = 0;
out:
    sk_PKCS7_pop_free(safes, PKCS7_free);
    if (rc != 0)
        p12_content_clear(c);
    return rc;
}

/* Parses the PFX, checks the MAC (that is where a wrong password shows) and
 * walks the bags, loading the legacy provider and retrying when a bag needs it. */
static int p12_open(const void *buf, size_t len, const char *password, struct p12_content *c,
                    struct mft_err *err)
{
    int rc = -1;
    const unsigned char *p = buf;
    PKCS12 *p12 = NULL;
    const char *pw = password ? password : "";
    int pwlen = (int)strlen(pw);

    memset(c, 0, sizeof(*c));
    if (len > MFT_X509_MAX_INPUT) {
        mft_err_set(err, MFT_E_CONFIG, "PKCS#12 input too large");
        goto out;
    }
    p12 = d2i_PKCS12(NULL, &p, (long)len);
    if (!p12) {
        mft_err_set(err, MFT_E_CONFIG, "not a PKCS#12 file");
        mft_err_openssl(err);
        goto out;
    }
    if (PKCS12_mac_present(p12)) {
        if (!PKCS12_verify_mac(p12, pw, pwlen)) {
            ERR_clear_error();
            /* An empty password is encoded either as "" or as no password. */
            if (pwlen == 0 && PKCS12_verify_mac(p12, NULL, 0)) {
                pw = NULL;
            } else {
                mft_err_set(err, MFT_E_CONFIG, "%s",
                            password && *password ? "wrong PKCS#12 password (MAC check failed)"
                                                  : "PKCS#12 password required");
                mft_err_openssl(err);
                goto out;
            }
        }
    }
    if (p12_walk(p12, pw, pw ? pwlen : 0, c) != 0) {
        ERR_clear_error();
        if (mft_x509_load_legacy() != 0 || p12_walk(p12, pw, pw ? pwlen : 0, c) != 0) {
            mft_err_set(err, MFT_E_CONFIG, "cannot decrypt PKCS#12 contents%s",
                        PKCS12_mac_present(p12) ? " (unsupported algorithm?)"
                                                : " (wrong password?)");
            mft_err_openssl(err);
            goto out;
        }
    }
    rc = 0;
out:
    PKCS12_free(p12);
    return rc;
}

int mft_x509_is_pkcs12(const void *buf, size_t len)
{
    const unsigned char *p = buf;
    PKCS12 *p12;
    if (len == 0 || len > MFT_X509_MAX_INPUT || looks_pem(buf, len))
        return 0;
    p12 = d2i_PKCS12(NULL, &p, (long)len);
    ERR_clear_error();
    if (!p12)
        return 0;
    PKCS12_free(p12);
    return 1;
}

int mft_x509_load_pkcs12_mem(const void *buf, size_t len, const char *password, const char *alias,
                             EVP_PKEY **key, X509 **cert, STACK_OF(X509) * *chain,
                             struct mft_err *err)
{
    int rc = -1;
    struct p12_content c;
    struct p12_key *k = NULL;
    int ci = -1;
    STACK_OF(X509) *rest = NULL;

    if (key)
        *key = NULL;
    if (cert)
        *cert = NULL;
    if (chain)
        *chain = NULL;
    if (p12_open(buf, len, password, &c, err) != 0)
        return -1;

    for (size_t i = 0; i < c.n_keys; i++) {
        if (!alias || (c.keys[i].name && strcmp(c.keys[i].name, alias) == 0)) {
            k = &c.keys[i];
            break;
        }
    }
    if (alias && !k) {
        mft_err_set(err, MFT_E_CONFIG, "no private key with alias \"%s\" in the PKCS#12 file",
                    alias);
        goto out;
    }
    if (key && !k) {
        mft_err_set(err, MFT_E_CONFIG, "no private key in the PKCS#12 file");
        goto out;
    }
    /* The key's certificate: same localKeyID, else the matching public key. */
    for (int i = 0; k && ci < 0 && k->keyid_len > 0 && i < sk_X509_num(c.certs); i++) {
        int idlen = 0;
        const unsigned char *id = X509_keyid_get0(sk_X509_value(c.certs, i), &idlen);
        if (id && idlen == k->keyid_len && memcmp(id, k->keyid, (size_t)idlen) == 0)
            ci = i;
    }
    for (int i = 0; k && ci < 0 && i < sk_X509_num(c.certs); i++)
        if (mft_x509_key_matches_cert(sk_X509_value(c.certs, i), k->key))
            ci = i;
    if (!k && sk_X509_num(c.certs) > 0)
        ci = 0;
    if (cert && ci < 0) {
        mft_err_set(err, MFT_E_CONFIG, "no certificate for the private key in the PKCS#12 file");
        goto out;
    }
    rest = sk_X509_new_null();
    if (!rest) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (cert) {
        *cert = sk_X509_value(c.certs, ci);
        X509_up_ref(*cert);
    }
    for (int i = 0; i < sk_X509_num(c.certs); i++) {
        X509 *x = sk_X509_value(c.certs, i);
        if (i == ci)
            continue;
        if (!X509_up_ref(x))
            goto out;
        if (!sk_X509_push(rest, x)) {
            X509_free(x);
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
    }
    if (key) {
        *key = k->key;
        k->key = NULL;
    }
    if (chain) {
        *chain = rest;
        rest = NULL;
    }
    rc = 0;
out:
    if (rc != 0 && cert) {
        X509_free(*cert);
        *cert = NULL;
    }
    sk_X509_pop_free(rest, X509_free);
    p12_content_clear(&c);
    return rc;
}

int mft_x509_load_pkcs12(const char *path, const char *password, EVP_PKEY **key, X509 **cert,
                         STACK_OF(X509) * *chain, struct mft_err *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = -1;

    if (mft_x509_read_file(path, &buf, &len, err) != 0)
        goto out;
    if (mft_x509_load_pkcs12_mem(buf, len, password, NULL, key, cert, chain, err) != 0) {
        char msg[sizeof(err->message)];
        snprintf(msg, sizeof(msg), "%s", err->message);
        mft_err_set(err, MFT_E_CONFIG, "%s: %s", path, msg);
        goto out;
    }
    rc = 0;
out:
    wipe_free(buf, len);
    return rc;
}

int mft_x509_pkcs12_aliases(const void *buf, size_t len, const char *password, char ***aliases,
                            size_t *n, struct mft_err *err)
{
    int rc = -1;
    struct p12_content c;
    char **list = NULL;

    *aliases = NULL;
    *n = 0;
    if (p12_open(buf, len, password, &c, err) != 0)
        return -1;
    list = calloc(c.n_keys + 1, sizeof(*list));
    if (!list) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    for (size_t i = 0; i < c.n_keys; i++) {
        list[i] = strdup(c.keys[i].name ? c.keys[i].name : "");
        if (!list[i]) {
            mft_x509_free_list(list, i);
            list = NULL;
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
    }
    *aliases = list;
    *n = c.n_keys;
    rc = 0;
out:
    p12_content_clear(&c);
    return rc;
}

void mft_x509_free_list(char **list, size_t n)
{
    if (!list)
        return;
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

/* ---- private keys --------------------------------------------------------- */

struct pw_state {
    const char *password;
    int asked;
};

static int pw_cb(char *buf, int size, int rwflag, void *u)
{
    struct pw_state *st = u;
    size_t n;
    (void)rwflag;
    st->asked = 1;
    if (!st->password || size <= 0)
        return -1;
    n = strlen(st->password);
    if (n > (size_t)size)
        return -1;
    memcpy(buf, st->password, n);
    return (int)n;
}

int mft_x509_load_key_mem(const void *buf, size_t len, const char *password, EVP_PKEY **out,
                          struct mft_err *err)
{
    int rc = -1;
    BIO *bio = NULL;
    EVP_PKEY *pkey = NULL;
    OSSL_DECODER_CTX *dctx = NULL;
    struct pw_state pw = {password, 0};

    *out = NULL;
    if (len > MFT_X509_MAX_INPUT)
        return mft_err_set(err, MFT_E_CONFIG, "key input too large");
    if (looks_pem(buf, len)) {
        bio = BIO_new_mem_buf(buf, (int)len);
        if (!bio) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
        pkey = PEM_read_bio_PrivateKey_ex(bio, NULL, pw_cb, &pw, NULL, NULL);
    } else if (mft_x509_is_pkcs12(buf, len)) {
        rc = mft_x509_load_pkcs12_mem(buf, len, password, NULL, out, NULL, NULL, err);
        goto out;
    } else {
        const unsigned char *p = buf;
        size_t left = len;
        dctx =
            OSSL_DECODER_CTX_new_for_pkey(&pkey, "DER", NULL, NULL, EVP_PKEY_KEYPAIR, NULL, NULL);
        if (!dctx || !OSSL_DECODER_CTX_set_pem_password_cb(dctx, pw_cb, &pw)) {
            mft_err_set(err, MFT_E_INTERNAL, "cannot create a key decoder");
            mft_err_openssl(err);
            goto out;
        }
        if (!OSSL_DECODER_from_data(dctx, &p, &left)) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
    }
    if (!pkey) {
        if (pw.asked && !password)
            mft_err_set(err, MFT_E_CONFIG, "the private key is encrypted: password required");
        else if (pw.asked)
            mft_err_set(err, MFT_E_CONFIG, "wrong password for the encrypted private key");
        else
            mft_err_set(err, MFT_E_CONFIG, "no private key found (expected PEM, DER or PKCS#12)");
        mft_err_openssl(err);
        goto out;
    }
    ERR_clear_error();
    *out = pkey;
    pkey = NULL;
    rc = 0;
out:
    EVP_PKEY_free(pkey);
    OSSL_DECODER_CTX_free(dctx);
    BIO_free(bio);
    return rc;
}

int mft_x509_load_key(const char *path, const char *password, EVP_PKEY **out, struct mft_err *err)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = -1;

    *out = NULL;
    if (mft_x509_read_file(path, &buf, &len, err) != 0)
        goto out;
    if (mft_x509_load_key_mem(buf, len, password, out, err) != 0) {
        char msg[sizeof(err->message)];
        snprintf(msg, sizeof(msg), "%s", err->message);
        mft_err_set(err, MFT_E_CONFIG, "%s: %s", path, msg);
        goto out;
    }
    rc = 0;
out:
    wipe_free(buf, len);
    return rc;
}

int mft_x509_key_matches_cert(const X509 *cert, const EVP_PKEY *key)
{
    const EVP_PKEY *pub;
    int r;
    if (!cert || !key)
        return 0;
    pub = X509_get0_pubkey(cert);
    r = pub ? EVP_PKEY_eq(pub, key) : 0;
    ERR_clear_error();
    return r == 1;
}

/* ---- serialisation -------------------------------------------------------- */

static int bio_to_string(BIO *bio, char **out, int secret, struct mft_err *err)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    char *s;
    if (n < 0 || !data)
        return mft_err_set(err, MFT_E_INTERNAL, "empty PEM output");
    s = malloc((size_t)n + 1);
    if (!s)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    memcpy(s, data, (size_t)n);
    s[n] = '\0';
    if (secret)
        OPENSSL_cleanse(data, (size_t)n);
    *out = s;
    return 0;
}

int mft_x509_certs_to_pem(const X509 *cert, const STACK_OF(X509) * chain, char **pem,
                          struct mft_err *err)
{
    int rc = -1;
    BIO *bio = BIO_new(BIO_s_mem());

    *pem = NULL;
    if (!bio) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (cert && !PEM_write_bio_X509(bio, cert))
        goto fail;
    for (int i = 0; chain && i < sk_X509_num(chain); i++)
        if (!PEM_write_bio_X509(bio, sk_X509_value(chain, i)))
            goto fail;
    rc = bio_to_string(bio, pem, 0, err);
    goto out;
fail:
    mft_err_set(err, MFT_E_INTERNAL, "cannot write a certificate as PEM");
    mft_err_openssl(err);
out:
    BIO_free(bio);
    return rc;
}

int mft_x509_key_to_pem(const EVP_PKEY *key, char **pem, struct mft_err *err)
{
    int rc = -1;
    /* secmem: the BIO's buffer is cleansed when freed */
    BIO *bio = BIO_new(BIO_s_secmem());

    *pem = NULL;
    if (!bio) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (!key || !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
        mft_err_set(err, MFT_E_INTERNAL, "cannot write the private key as PKCS#8 PEM");
        mft_err_openssl(err);
        goto out;
    }
    rc = bio_to_string(bio, pem, 1, err);
out:
    BIO_free(bio);
    return rc;
}

/* ---- certificate facts ---------------------------------------------------- */

int mft_x509_fingerprint_sha256(const X509 *cert, char hex[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const char digits[] = "0123456789abcdef";

    hex[0] = '\0';
    if (!cert || !X509_digest(cert, EVP_sha256(), md, &n) || n != 32)
        return -1;
    for (unsigned int i = 0; i < n; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    return 0;
}

static int name_line(const X509_NAME *name, char *buf, size_t len)
{
    BIO *bio;
    char *data = NULL;
    long n;
    int rc = -1;

    if (len == 0)
        return -1;
    buf[0] = '\0';
    if (!name || !(bio = BIO_new(BIO_s_mem())))
        return -1;
    /* RFC 2253, but keep UTF-8 readable instead of \XX escapes */
    if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        n = BIO_get_mem_data(bio, &data);
        if (n >= 0) {
            size_t k = (size_t)n < len - 1 ? (size_t)n : len - 1;
            if (k > 0) /* an empty name leaves data NULL */
                memcpy(buf, data, k);
            buf[k] = '\0';
            rc = 0;
        }
    }
    BIO_free(bio);
    return rc;
}

int mft_x509_subject(const X509 *cert, char *buf, size_t len)
{
    return cert ? name_line(X509_get_subject_name(cert), buf, len) : -1;
}

int mft_x509_issuer(const X509 *cert, char *buf, size_t len)
{
    return cert ? name_line(X509_get_issuer_name(cert), buf, len) : -1;
}

int mft_x509_serial_hex(const X509 *cert, char *buf, size_t len)
{
    BIGNUM *bn = NULL;
    char *hex = NULL;
    int rc = -1;
    size_t o = 0;

    if (len == 0)
        return -1;
    buf[0] = '\0';
    if (!cert || !(bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL)) ||
        !(hex = BN_bn2hex(bn)))
        goto out;
    {
        const char *p = hex;
        if (*p == '-' && o + 1 < len)
            buf[o++] = *p++;
        while (*p == '0' && p[1])
            p++;
        for (; *p && o + 1 < len; p++)
            buf[o++] = (char)((*p >= 'A' && *p <= 'F') ? *p - 'A' + 'a' : *p);
        buf[o] = '\0';
        rc = *p ? -1 : 0;
    }
out:
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

static int asn1_time_rfc3339(const ASN1_TIME *t, char buf[21], time_t *out)
{
    struct tm tm;
    buf[0] = '\0';
    if (!t || !ASN1_TIME_to_tm(t, &tm))
        return -1;
    if (strftime(buf, 21, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return -1;
    if (out)
        *out = timegm(&tm);
    return 0;
}

int mft_x509_not_before(const X509 *cert, char buf[21])
{
    return cert ? asn1_time_rfc3339(X509_get0_notBefore(cert), buf, NULL) : -1;
}

int mft_x509_not_after(const X509 *cert, char buf[21])
{
    return cert ? asn1_time_rfc3339(X509_get0_notAfter(cert), buf, NULL) : -1;
}

int mft_x509_validity(const X509 *cert, time_t *not_before, time_t *not_after)
{
    char tmp[21];
    if (!cert || asn1_time_rfc3339(X509_get0_notBefore(cert), tmp, not_before) != 0 ||
        asn1_time_rfc3339(X509_get0_notAfter(cert), tmp, not_after) != 0)
        return -1;
    return 0;
}

void mft_x509_facts(const X509 *cert, struct mft_x509_facts *f)
{
    memset(f, 0, sizeof(*f));
    if (!cert)
        return;
    mft_x509_subject(cert, f->subject, sizeof(f->subject));
    mft_x509_issuer(cert, f->issuer, sizeof(f->issuer));
    mft_x509_serial_hex(cert, f->serial, sizeof(f->serial));
    mft_x509_fingerprint_sha256(cert, f->sha256);
    mft_x509_not_before(cert, f->not_before);
    mft_x509_not_after(cert, f->not_after);
}

/* The certificate's DNS and IP names as "DNS:a, IP:1.2.3.4" ("none" if it has none). */
void mft_x509_names(const X509 *cert, char *buf, size_t len)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    size_t o = 0;

    buf[0] = '\0';
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && o + 1 < len; i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
        char ip[INET6_ADDRSTRLEN] = "";
        int w = 0;
        if (gn->type == GEN_DNS) {
            w = snprintf(buf + o, len - o, "%sDNS:%.*s", o ? ", " : "",
                         ASN1_STRING_length(gn->d.dNSName),
                         (const char *)ASN1_STRING_get0_data(gn->d.dNSName));
        } else if (gn->type == GEN_IPADD) {
            int l = ASN1_STRING_length(gn->d.iPAddress);
            const unsigned char *p = ASN1_STRING_get0_data(gn->d.iPAddress);
            if (l == 4 || l == 16)
                inet_ntop(l == 4 ? AF_INET : AF_INET6, p, ip, sizeof(ip));
            w = snprintf(buf + o, len - o, "%sIP:%s", o ? ", " : "", ip[0] ? ip : "?");
        }
        if (w > 0)
            o = (size_t)w < len - o ? o + (size_t)w : len - 1;
    }
    GENERAL_NAMES_free(names);
    if (!buf[0]) {
        char cn[256] = "";
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
        snprintf(buf, len, "%s%s", cn[0] ? "no DNS/IP names, CN " : "no DNS/IP names", cn);
    }
}

int mft_x509_key_desc(const EVP_PKEY *key, char *buf, size_t len)
{
    if (!key || len == 0)
        return -1;
    switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
        snprintf(buf, len, "RSA-%d", EVP_PKEY_get_bits(key));
        return 0;
    case EVP_PKEY_EC: {
        char group[64] = "";
        size_t glen = 0;
        const char *nist = NULL;
        if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                           &glen))
            nist = EC_curve_nid2nist(OBJ_sn2nid(group));
        snprintf(buf, len, "EC-%s", nist ? nist : (group[0] ? group : "unknown"));
        return 0;
    }
    default: {
        const char *name = EVP_PKEY_get0_type_name(key);
        snprintf(buf, len, "%s", name ? name : "unknown");
        return 0;
    }
    }
}

/* ---- strength ----------------------------------------------------------------- */

/* OpenSSL's minimum bits of security for levels 1..5 (ssl_cert.c, x509_vfy.c). */
static const int level_bits[] = {80, 112, 128, 192, 256};

int mft_x509_level_bits(int level)
{
    int n = (int)(sizeof(level_bits) / sizeof(level_bits[0]));
    if (level <= 0)
        return 0;
    return level_bits[(level > n ? n : level) - 1];
}

int mft_x509_weakness(X509 *cert, int level, char *buf, size_t len)
{
    int min = mft_x509_level_bits(level), bits, mdnid = NID_undef;
    EVP_PKEY *key = cert ? X509_get0_pubkey(cert) : NULL;
    char key_why[96] = "", sig_why[160] = "";

    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (!cert || min == 0)
        return 0;
    if (key && (bits = EVP_PKEY_get_security_bits(key)) > 0 && bits < min) {
        const char *type = EVP_PKEY_get0_type_name(key);
        snprintf(key_why, sizeof(key_why), "uses a %d-bit %s key (%d bits of security)",
                 EVP_PKEY_get_bits(key), type ? type : "unknown", bits);
    }
    /* as OpenSSL: the signature of a self-signed certificate is not judged */
    if (!(X509_get_extension_flags(cert) & EXFLAG_SS) &&
        X509_get_signature_info(cert, &mdnid, NULL, &bits, NULL) == 1 && bits < min)
        snprintf(sig_why, sizeof(sig_why), "is signed with %s (%s, %d bits of security)",
                 mdnid != NID_undef ? OBJ_nid2sn(mdnid) : "an unknown digest",
                 OBJ_nid2ln(X509_get_signature_nid(cert)), bits);
    if (!key_why[0] && !sig_why[0])
        return 0;
    snprintf(buf, len, "%s%s%s, below the minimum of security level %d (%d bits)", key_why,
             key_why[0] && sig_why[0] ? " and " : "", sig_why, level, min);
    return 1;
}

/* ---- path validation ------------------------------------------------------ */

/* The kinds of a refusal, per side ([purpose]) and fault ([fault]). */
static const struct {
    const char *who, *eku;
    enum mft_err_kind kinds[5];
} refusal[] = {
    [MFT_X509_SERVER] = {"server",
                         "serverAuth",
                         {MFT_E_TLS_SERVER_UNTRUSTED, MFT_E_TLS_SERVER_EXPIRED,
                          MFT_E_TLS_SERVER_EXPIRED, MFT_E_TLS_SERVER_UNTRUSTED,
                          MFT_E_TLS_SERVER_NAME_MISMATCH}},
    [MFT_X509_CLIENT] = {"client",
                         "clientAuth",
                         {MFT_E_TLS_CLIENT_CERT_UNTRUSTED, MFT_E_TLS_CLIENT_CERT_EXPIRED,
                          MFT_E_TLS_CLIENT_CERT_NOT_YET_VALID, MFT_E_TLS_CLIENT_CERT_NO_CLIENT_AUTH,
                          MFT_E_TLS_CLIENT_CERT_NOT_PARTNERS}},
};

int mft_x509_refuse(struct mft_err *err, enum mft_x509_purpose purpose, enum mft_x509_fault fault,
                    int depth, const char *peer_name)
{
    const char *who = refusal[purpose].who;
    enum mft_err_kind kind = refusal[purpose].kinds[fault];
    const char *when = fault == MFT_X509_EXPIRED ? "has expired" : "is not yet valid";

    switch (fault) {
    case MFT_X509_EXPIRED:
    case MFT_X509_NOT_YET_VALID:
        if (depth < 0)
            return mft_err_set(err, kind, "a certificate in the %s's TLS chain %s", who, when);
        return mft_err_set(err, kind, "the %s's TLS %s %s", who,
                           depth > 0 ? "CA certificate" : "certificate", when);
    case MFT_X509_WRONG_PURPOSE:
        return mft_err_set(err, kind, "the %s's TLS certificate is not allowed for %s", who,
                           refusal[purpose].eku);
    case MFT_X509_NAME_MISMATCH:
        return mft_err_set(err, kind, "the %s's TLS certificate is not issued for %s", who,
                           peer_name ? peer_name : "");
    case MFT_X509_UNTRUSTED:
        break;
    }
    return mft_err_set(err, kind, NULL);
}

int mft_x509_verify_run(const struct mft_x509_verify_args *a, unsigned long flags, int level,
                        int *code, int *depth, X509 **bad)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int rc = -1;

    *bad = NULL;
    if (!store || !ctx)
        goto out;
    for (int i = 0; a->roots && i < sk_X509_num(a->roots); i++)
        X509_STORE_add_cert(store, sk_X509_value(a->roots, i));
    /* A registered intermediate is an anchor, as in GnuTLS's trust list.
     * Not X509_V_FLAG_X509_STRICT: it refuses what partners' private CAs made
     * with older tools commonly carry (a non-critical CA basicConstraints, no
     * key identifiers), and GnuTLS, which checks inbound handshakes, accepts
     * them: both engines must agree, or a partner passes the handshake and is
     * then refused per request (docs/x509-limbo.md lists these cases). */
    X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN | flags);
    if (X509_STORE_CTX_init(ctx, store, a->leaf, a->intermediates) != 1)
        goto out;
    /* keys and signatures as strong as Debian's default TLS security level
     * would require: our callback replaces the verification that applies it */
    X509_VERIFY_PARAM_set_auth_level(X509_STORE_CTX_get0_param(ctx), level);
    if (!(flags & X509_V_FLAG_NO_CHECK_TIME)) /* a set time would override NO_CHECK_TIME */
        X509_STORE_CTX_set_time(ctx, 0, a->at);
    X509_STORE_CTX_set_purpose(ctx, a->purpose == MFT_X509_SERVER ? X509_PURPOSE_SSL_SERVER
                                                                  : X509_PURPOSE_SSL_CLIENT);
    rc = X509_verify_cert(ctx) == 1;
    *code = X509_STORE_CTX_get_error(ctx);
    *depth = X509_STORE_CTX_get_error_depth(ctx);
    if (rc == 0) {
        X509 *x = X509_STORE_CTX_get_current_cert(ctx);
        if (x && X509_up_ref(x))
            *bad = x;
    }
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

int mft_x509_name_matches(X509 *leaf, const char *peer)
{
    unsigned char ip[16];
    if (inet_pton(AF_INET, peer, ip) == 1 || inet_pton(AF_INET6, peer, ip) == 1)
        return X509_check_ip_asc(leaf, peer, 0) == 1;
    return X509_check_host(leaf, peer, strlen(peer), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) ==
           1;
}

int mft_x509_verify(const struct mft_x509_verify_args *a, struct mft_err *err)
{
    int code = X509_V_OK, depth = 0, code2 = X509_V_OK, depth2 = 0, r;
    enum mft_x509_fault fault = MFT_X509_UNTRUSTED;
    X509 *bad = NULL, *bad2 = NULL;
    struct mft_x509_facts f;

    r = mft_x509_verify_run(a, 0, MFT_X509_SECURITY_LEVEL, &code, &depth, &bad);
    if (r < 0)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    if (r == 1) {
        char names[512];
        if (!a->peer_name || mft_x509_name_matches(a->leaf, a->peer_name))
            return 0;
        mft_x509_refuse(err, a->purpose, MFT_X509_NAME_MISMATCH, 0, a->peer_name);
        mft_x509_names(a->leaf, names, sizeof(names));
        return mft_err_detail(err, "the certificate names %s", names);
    }
    if (code == X509_V_ERR_CERT_HAS_EXPIRED || code == X509_V_ERR_CERT_NOT_YET_VALID) {
        /* expired only when the time is the one fault; else say what else is */
        r = mft_x509_verify_run(a, X509_V_FLAG_NO_CHECK_TIME, MFT_X509_SECURITY_LEVEL, &code2,
                                &depth2, &bad2);
        if (r == 1) {
            fault = code == X509_V_ERR_CERT_HAS_EXPIRED ? MFT_X509_EXPIRED : MFT_X509_NOT_YET_VALID;
        } else if (r == 0) {
            X509_free(bad);
            bad = bad2;
            code = code2;
            depth = depth2;
        } else {
            X509_free(bad);
            return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        }
    } else if (code == X509_V_ERR_INVALID_PURPOSE) {
        fault = MFT_X509_WRONG_PURPOSE;
    }
    mft_x509_refuse(err, a->purpose, fault, depth, NULL);
    mft_x509_facts(bad ? bad : a->leaf, &f);
    mft_err_detail(err, "X.509 verify error %d at depth %d: %s", code, depth,
                   X509_verify_cert_error_string(code));
    mft_err_detail(err, "%s is valid from %s to %s", f.subject, f.not_before, f.not_after);
    X509_free(bad);
    return -1;
}
