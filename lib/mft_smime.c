/*
 * mft_smime — the CMS operations AS2 needs, over byte buffers, with OpenSSL 3:
 * decrypt EnvelopedData / AuthEnvelopedData with the recipient chosen by its
 * RecipientInfo, verify a detached SignedData over exact bytes against one
 * trusted signer certificate, sign detached (MDNs), and unwrap RFC 3274
 * CompressedData with zlib (Debian's OpenSSL is built without zlib).
 *
 * The content-encryption and compression algorithms are read with the bounded
 * BER walker of mft_ber (OpenSSL has no public accessor for them), so refused
 * algorithms (RC2, RC4, DES...) are named before any key is used.
 *
 * Large messages: decryption and decompression read their input in place,
 * chunk by chunk (mft_ber), and write into a spill (mft_spill), so neither
 * the ciphertext nor the plaintext is ever held whole; OpenSSL parses only a
 * small skeleton of the EnvelopedData (everything but the encrypted content,
 * which it reads as detached content). Verification reads the signed bytes
 * through the same in-place BIO.
 *
 * Callers: mft_as2 (receive), the MDN code (sign / verify). Keys and
 * certificates are borrowed; outputs are malloc'd (or a caller's spill).
 * No shared state: thread-safe as OpenSSL 3 itself.
 */
#include "mft_smime.h"
#include "mft_x509.h"

#include "mft_ber.h"
#include "mft_buf.h"
#include "mft_spill.h"

#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <zlib.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

/* ---- digest names ------------------------------------------------------- */

static const struct {
    const char *key; /* lower-cased, without '-' and '_' */
    const char *ossl;
    const char *rfc;
} digest_names[] = {
    {"sha1", "SHA1", "sha-1"},        {"sha224", "SHA224", "sha-224"},
    {"sha256", "SHA256", "sha-256"},  {"sha384", "SHA384", "sha-384"},
    {"sha512", "SHA512", "sha-512"},  {"md5", "MD5", "md5"},
    {"sha2256", "SHA256", "sha-256"}, {"sha2384", "SHA384", "sha-384"},
    {"sha2512", "SHA512", "sha-512"},
};

int mft_smime_digest_name(const char *any, const char **ossl, const char **rfc)
{
    char key[16];
    size_t n = 0;

    if (!any)
        return -1;
    while (*any == ' ' || *any == '\t' || *any == '"')
        any++;
    for (; *any && *any != '"' && *any != ' ' && *any != '\t'; any++) {
        if (*any == '-' || *any == '_')
            continue;
        if (n + 1 >= sizeof(key))
            return -1;
        key[n++] = (char)tolower((unsigned char)*any);
    }
    key[n] = '\0';
    for (size_t i = 0; i < sizeof(digest_names) / sizeof(digest_names[0]); i++) {
        if (strcmp(digest_names[i].key, key) == 0) {
            if (ossl)
                *ossl = digest_names[i].ossl;
            if (rfc)
                *rfc = digest_names[i].rfc;
            return 0;
        }
    }
    return -1;
}

int mft_smime_digest_b64(const char *ossl_md, const unsigned char *data, size_t len, char *out,
                         size_t outlen, struct mft_err *err)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD *alg = NULL;
    int rc = -1;

    alg = ossl_md ? EVP_MD_fetch(NULL, ossl_md, NULL) : NULL;
    if (!alg) {
        mft_err_set(err, MFT_E_ALGORITHM_REFUSED, "unknown digest algorithm %s",
                    ossl_md ? ossl_md : "(none)");
        mft_err_openssl(err);
        goto out;
    }
    if (!EVP_Digest(data, len, md, &mdlen, alg, NULL)) {
        mft_err_set(err, MFT_E_INTERNAL, "digest %s failed", ossl_md);
        mft_err_openssl(err);
        goto out;
    }
    if (outlen < 4 * ((mdlen + 2) / 3) + 1) {
        mft_err_set(err, MFT_E_INTERNAL, "digest output buffer too small");
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
    rc = 0;
out:
    EVP_MD_free(alg);
    return rc;
}

/* ---- OIDs ------------------------------------------------------------------- */

/* Decodes the OID TLV raw/rl (caller frees), or NULL. */
static ASN1_OBJECT *oid_of(const unsigned char *raw, size_t rl)
{
    return raw ? d2i_ASN1_OBJECT(NULL, &raw, (long)rl) : NULL;
}

/* The NID of the OID TLV raw/rl, NID_undef when it is not one. */
static int oid_nid(const unsigned char *raw, size_t rl)
{
    ASN1_OBJECT *o = oid_of(raw, rl);
    int nid = o ? OBJ_obj2nid(o) : NID_undef;
    ASN1_OBJECT_free(o);
    return nid;
}

static void name_str(const X509_NAME *name, char *out, size_t outlen)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *p = NULL;
    long n;

    out[0] = '\0';
    if (!b)
        return;
    if (name && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        n = BIO_get_mem_data(b, &p);
        if (n > 0 && p) {
            size_t k = (size_t)n < outlen - 1 ? (size_t)n : outlen - 1;
            memcpy(out, p, k);
            out[k] = '\0';
        }
    }
    BIO_free(b);
}

static void serial_str(const ASN1_INTEGER *sn, char *out, size_t outlen)
{
    BIGNUM *bn = sn ? ASN1_INTEGER_to_BN(sn, NULL) : NULL;
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    snprintf(out, outlen, "%s", hex ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
}

static void hex_str(const ASN1_OCTET_STRING *os, char *out, size_t outlen)
{
    size_t k = 0;
    out[0] = '\0';
    if (!os)
        return;
    for (int i = 0; i < ASN1_STRING_length(os) && k + 3 < outlen; i++)
        k += (size_t)snprintf(out + k, outlen - k, "%02X", ASN1_STRING_get0_data(os)[i]);
}

/* "issuer=... serial=..." or "subjectKeyIdentifier=..." of a CMS signer/recipient id. */
static void id_str(const ASN1_OCTET_STRING *keyid, const X509_NAME *issuer, const ASN1_INTEGER *sno,
                   char *out, size_t outlen)
{
    char a[300], b[80];
    if (keyid) {
        hex_str(keyid, b, sizeof(b));
        snprintf(out, outlen, "subjectKeyIdentifier=%s", b);
        return;
    }
    name_str(issuer, a, sizeof(a));
    serial_str(sno, b, sizeof(b));
    snprintf(out, outlen, "issuer=\"%s\" serial=%s", a, b);
}

static void cert_str(X509 *x, char *out, size_t outlen)
{
    char s[300], i[300], sn[80];
    if (!x) {
        snprintf(out, outlen, "(none)");
        return;
    }
    name_str(X509_get_subject_name(x), s, sizeof(s));
    name_str(X509_get_issuer_name(x), i, sizeof(i));
    serial_str(X509_get0_serialNumber(x), sn, sizeof(sn));
    snprintf(out, outlen, "subject=\"%s\" issuer=\"%s\" serial=%s", s, i, sn);
}

/* Like mft_err_openssl, and reports whether a CMS content-digest error was seen. */
static void openssl_detail(struct mft_err *err, int *content_mismatch)
{
    unsigned long e;
    const char *file, *func, *data;
    int line, flags;
    while ((e = ERR_get_error_all(&file, &line, &func, &data, &flags)) != 0) {
        char buf[256];
        if (content_mismatch && ERR_GET_LIB(e) == ERR_LIB_CMS &&
            ERR_GET_REASON(e) == CMS_R_CONTENT_VERIFY_ERROR)
            *content_mismatch = 1;
        ERR_error_string_n(e, buf, sizeof(buf));
        if ((flags & ERR_TXT_STRING) && data && *data)
            mft_err_detail(err, "%s (%s)", buf, data);
        else
            mft_err_detail(err, "%s", buf);
    }
}

static CMS_ContentInfo *cms_parse(const unsigned char *der, size_t len, struct mft_err *err)
{
    const unsigned char *p = der;
    CMS_ContentInfo *cms;
    if (!der || len == 0 || len > 0x7fffffff) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the CMS structure is empty or too large");
        return NULL;
    }
    cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    if (!cms) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the S/MIME content is not a valid CMS structure");
        mft_err_openssl(err);
    }
    return cms;
}

/* ---- decrypt -------------------------------------------------------------- */

static const struct {
    int nid;
    const char *name;
    int legacy; /* broken or weak: only for a partner that explicitly allows it */
} ciphers[] = {
    {NID_aes_128_cbc, "aes-128-cbc", 0},
    {NID_aes_192_cbc, "aes-192-cbc", 0},
    {NID_aes_256_cbc, "aes-256-cbc", 0},
    {NID_des_ede3_cbc, "des-ede3-cbc", 0},
    {NID_aes_128_gcm, "aes-128-gcm", 0},
    {NID_aes_192_gcm, "aes-192-gcm", 0},
    {NID_aes_256_gcm, "aes-256-gcm", 0},
    {NID_rc2_cbc, "rc2-cbc", 1},
    {NID_rc4, "rc4", 1},
    {NID_des_cbc, "des-cbc", 1},
};

/*
 * Splits a large (Auth)EnvelopedData: everything but the encryptedContent is
 * copied into a small DER skeleton (*skel) for OpenSSL to parse (recipients,
 * algorithms, the GCM tag), and *ec_off is where the encryptedContent starts,
 * to be read in place. The encryptedContent is walked once here (releasing
 * its pages) to reach what follows it.
 */
static int envelope_split(const unsigned char *der, size_t len, struct mft_buf *skel,
                          size_t *ec_off, ASN1_OBJECT **calg, struct mft_err *err)
{
    struct mft_ber_cursor ci, c0, env, eci;
    struct mft_ber_head h;
    struct mft_buf env_body = {0}, eci_body = {0};
    const unsigned char *raw, *oid_raw = NULL;
    size_t rl, oid_len = 0;
    unsigned char hb[10];
    int r, seen_set = 0, found = 0, rc = -1;

    *ec_off = 0;
    *calg = NULL;
    if (mft_ber_open(&ci, der, len, 0, 0x30) < 0 || mft_ber_more(&ci, &h) != 1 || h.id != 0x06 ||
        mft_ber_skip(&ci, &h, &oid_raw, &oid_len) < 0)
        goto bad;
    int nid = oid_nid(oid_raw, oid_len);
    if (nid != NID_pkcs7_enveloped && nid != NID_id_smime_ct_authEnvelopedData) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the encrypted part is a CMS %s, not EnvelopedData",
                    nid == NID_undef ? "structure of unknown type" : OBJ_nid2sn(nid));
        goto out;
    }
    if (mft_ber_more(&ci, &h) != 1 || mft_ber_open(&c0, der, len, ci.off, 0xa0) < 0 ||
        mft_ber_more(&c0, &h) != 1 || mft_ber_open(&env, der, len, c0.off, 0x30) < 0)
        goto bad;
    while ((r = mft_ber_more(&env, &h)) == 1) {
        if (found || h.id != 0x30 || !seen_set) { /* version, originatorInfo, attrs, mac */
            seen_set |= h.id == 0x31;             /* recipientInfos */
            if (mft_ber_skip(&env, &h, &raw, &rl) < 0)
                goto bad;
            if (env_body.len + rl > MFT_SMIME_MAX_ENVELOPE) {
                mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                            "the EnvelopedData carries more than %zu bytes besides its content",
                            MFT_SMIME_MAX_ENVELOPE);
                goto out;
            }
            mft_buf_add(&env_body, raw, rl);
            continue;
        }
        /* (auth)encryptedContentInfo: contentType, contentEncryptionAlgorithm, [0] content */
        if (mft_ber_open(&eci, der, len, env.off, 0x30) < 0)
            goto bad;
        for (int i = 0; i < 2; i++) {
            if (mft_ber_more(&eci, &h) != 1 || h.id != (i == 0 ? 0x06 : 0x30) ||
                mft_ber_skip(&eci, &h, &raw, &rl) < 0)
                goto bad;
            mft_buf_add(&eci_body, raw, rl);
        }
        /* contentEncryptionAlgorithm SEQ { OID, params }: named before any key is used */
        struct mft_ber_cursor alg;
        const unsigned char *araw;
        size_t arl;
        if (mft_ber_open(&alg, raw, rl, 0, 0x30) < 0 || mft_ber_more(&alg, &h) != 1 ||
            h.id != 0x06 || mft_ber_skip(&alg, &h, &araw, &arl) < 0 || !(*calg = oid_of(araw, arl)))
            goto bad;
        if ((r = mft_ber_more(&eci, &h)) < 0)
            goto bad;
        if (r == 0 || (h.id != 0x80 && h.id != 0xa0)) {
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                        "the EnvelopedData carries no encrypted content (detached content is "
                        "not used by AS2)");
            goto out;
        }
        *ec_off = eci.off;
        struct mft_ber_octets o;
        const unsigned char *p;
        long n;
        if (mft_ber_octets_begin(&o, der, len, eci.off) < 0)
            goto bad;
        while ((n = mft_ber_octets_next(&o, &p, (size_t)-1)) > 0)
            ;
        eci.off = o.off;
        if (n < 0 || mft_ber_more(&eci, &h) != 0)
            goto bad;
        env.off = eci.off;
        mft_buf_add(&env_body, hb, mft_ber_der_header(0x30, eci_body.len, hb));
        mft_buf_add(&env_body, eci_body.p, eci_body.len);
        found = 1;
    }
    if (r < 0 || !found || !env_body.p)
        goto bad;
    /* ContentInfo { contentType, [0] { (Auth)EnvelopedData } }, in DER lengths */
    size_t env_len = mft_ber_der_header(0x30, env_body.len, hb) + env_body.len;
    size_t c0_len = mft_ber_der_header(0xa0, env_len, hb) + env_len;
    mft_buf_add(skel, hb, mft_ber_der_header(0x30, oid_len + c0_len, hb));
    mft_buf_add(skel, oid_raw, oid_len);
    mft_buf_add(skel, hb, mft_ber_der_header(0xa0, env_len, hb));
    mft_buf_add(skel, hb, mft_ber_der_header(0x30, env_body.len, hb));
    mft_buf_add(skel, env_body.p, env_body.len);
    if (!skel->p || skel->oom) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (skel->len > MFT_SMIME_MAX_ENVELOPE) { /* parsed whole by OpenSSL: bounded */
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the EnvelopedData carries more than %zu bytes besides its content",
                    MFT_SMIME_MAX_ENVELOPE);
        mft_err_detail(err, "%zu bytes of recipients and attributes", skel->len);
        goto out;
    }
    rc = 0;
    goto out;
bad:
    mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the S/MIME content is not a valid CMS structure");
    mft_err_detail(err, "malformed or truncated (Auth)EnvelopedData");
out:
    if (rc < 0) {
        ASN1_OBJECT_free(*calg);
        *calg = NULL;
    }
    mft_buf_free(&env_body);
    mft_buf_free(&eci_body);
    return rc;
}

int mft_smime_decrypt(const unsigned char *der, size_t len, const struct mft_keypair *keys,
                      size_t n_keys, struct mft_smime_decrypted *out, struct mft_err *err)
{
    struct mft_spill sp;
    mft_spill_init(&sp, NULL, 0);
    int rc = mft_smime_decrypt_to(der, len, keys, n_keys, 0, &sp, out, err);
    if (rc == 0 && !(out->data = mft_spill_take(&sp, &out->len)))
        rc = mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    mft_spill_free(&sp);
    return rc;
}

int mft_smime_decrypt_to(const unsigned char *der, size_t len, const struct mft_keypair *keys,
                         size_t n_keys, int allow_legacy, struct mft_spill *plain,
                         struct mft_smime_decrypted *out, struct mft_err *err)
{
    CMS_ContentInfo *cms = NULL;
    ASN1_OBJECT *calg = NULL;
    BIO *bout = NULL, *dcont = NULL;
    struct mft_buf skel = {0};
    struct mft_ber_octets o;
    size_t ec_off;
    char recips[640] = "", ours[640] = "", tmp[400];
    const char *cname = NULL;
    int known = 0, legacy = 0, matched = 0, tried = 0, rc = -1;

    memset(out, 0, sizeof(*out));
    if (!der || len == 0 || envelope_split(der, len, &skel, &ec_off, &calg, err) < 0) {
        if (!der || len == 0)
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the CMS structure is empty");
        goto out;
    }
    if (!(cms = cms_parse(skel.p, skel.len, err)))
        goto out;
    int cnid = OBJ_obj2nid(calg);
    for (size_t i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++)
        if (ciphers[i].nid == cnid) {
            cname = ciphers[i].name;
            known = 1;
            legacy = ciphers[i].legacy;
        }
    if (known && legacy && allow_legacy && mft_x509_load_legacy() != 0) {
        mft_err_set(err, MFT_E_ALGORITHM_REFUSED,
                    "the message is encrypted with %s, and OpenSSL's legacy provider (needed "
                    "for it) cannot be loaded",
                    cname);
        goto out;
    }
    if (!known || (legacy && !allow_legacy)) {
        char oid[80];
        OBJ_obj2txt(oid, sizeof(oid), calg, 1);
        mft_err_set(err, MFT_E_ALGORITHM_REFUSED,
                    "the message is encrypted with %s, which is refused",
                    cname ? cname : (cnid != NID_undef ? OBJ_nid2sn(cnid) : oid));
        mft_err_detail(err, "content-encryption algorithm %s (%s)",
                       cnid != NID_undef ? OBJ_nid2ln(cnid) : "unknown", oid);
        if (legacy && err)
            snprintf(err->remedy, sizeof(err->remedy),
                     "the partner should encrypt with AES or 3DES; if its product cannot, set "
                     "allow_legacy_encryption for this partner");
        goto out;
    }
    snprintf(out->cipher, sizeof(out->cipher), "%s", cname);

    STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(cms);
    for (int i = 0; i < sk_CMS_RecipientInfo_num(ris) && !matched; i++) {
        CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
        ASN1_OCTET_STRING *keyid = NULL;
        X509_NAME *issuer = NULL;
        ASN1_INTEGER *sno = NULL;
        if (CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_TRANS) {
            snprintf(tmp, sizeof(tmp), "(recipient of type %d, not key transport)",
                     CMS_RecipientInfo_type(ri));
        } else {
            CMS_RecipientInfo_ktri_get0_signer_id(ri, &keyid, &issuer, &sno);
            id_str(keyid, issuer, sno, tmp, sizeof(tmp));
        }
        size_t rl = strlen(recips);
        snprintf(recips + rl, sizeof(recips) - rl, "%s%s", rl ? ", " : "", tmp);
        if (CMS_RecipientInfo_type(ri) != CMS_RECIPINFO_TRANS)
            continue;
        for (size_t k = 0; k < n_keys && !matched; k++) {
            if (!keys[k].cert || !keys[k].key || CMS_RecipientInfo_ktri_cert_cmp(ri, keys[k].cert))
                continue;
            X509_ALGOR *palg = NULL;
            CMS_RecipientInfo_ktri_get0_algs(ri, NULL, NULL, &palg);
            int knid = palg ? OBJ_obj2nid(palg->algorithm) : NID_undef;
            snprintf(out->key_transport, sizeof(out->key_transport), "%s",
                     knid == NID_rsaEncryption ? "rsaes-pkcs1-v1_5"
                     : knid == NID_rsaesOaep   ? "rsaes-oaep"
                                               : OBJ_nid2sn(knid));
            tried++;
            EVP_PKEY_up_ref(keys[k].key);
            CMS_RecipientInfo_set0_pkey(ri, keys[k].key);
            if (CMS_RecipientInfo_decrypt(cms, ri) > 0)
                matched = 1;
            CMS_RecipientInfo_set0_pkey(ri, NULL); /* drops our reference */
        }
    }
    if (!matched) {
        for (size_t k = 0; k < n_keys; k++) {
            size_t ol = strlen(ours);
            cert_str(keys[k].cert, tmp, sizeof(tmp));
            snprintf(ours + ol, sizeof(ours) - ol, "%s%s", ol ? ", " : "", tmp);
        }
        if (tried)
            mft_err_set(err, MFT_E_DECRYPT_FAILED,
                        "the content-encryption key could not be decrypted with our private key");
        else
            mft_err_set(err, MFT_E_DECRYPT_FAILED,
                        "the message is encrypted for a certificate this station does not hold");
        mft_err_detail(err, "encrypted for: %s", recips[0] ? recips : "(no recipient)");
        mft_err_detail(err, "our encryption certificates: %s", ours[0] ? ours : "(none)");
        mft_err_openssl(err);
        goto out;
    }
    /* The ciphertext is read in place, the plaintext written to the spill:
     * memory stays bounded whatever the size. */
    struct mft_err werr;
    mft_err_clear(&werr);
    if (mft_ber_octets_begin(&o, der, len, ec_off) < 0 || !(dcont = mft_ber_octets_bio(&o)) ||
        !(bout = mft_ber_spill_bio(plain, &werr)))
        goto nomem;
    if (!CMS_decrypt(cms, NULL, NULL, dcont, bout, 0) || o.failed) {
        if (werr.kind != MFT_E_OK) {
            *err = werr;
            goto out;
        }
        mft_err_set(err, MFT_E_DECRYPT_FAILED,
                    "the content could not be decrypted (%s): wrong key or corrupted message",
                    out->cipher);
        mft_err_openssl(err);
        goto out;
    }
    rc = 0;
    goto out;
nomem:
    mft_err_set(err, MFT_E_NO_MEMORY, NULL);
out:
    ERR_clear_error();
    BIO_free(bout);
    BIO_free(dcont);
    mft_buf_free(&skel);
    ASN1_OBJECT_free(calg);
    CMS_ContentInfo_free(cms);
    return rc;
}

/* ---- verify / sign -------------------------------------------------------- */

int mft_smime_verify_detached(const unsigned char *data, size_t len, const unsigned char *sig,
                              size_t sig_len, X509 *signer, struct mft_smime_verified *out,
                              struct mft_err *err)
{
    CMS_ContentInfo *cms = NULL;
    STACK_OF(X509) *certs = NULL;
    BIO *dbio = NULL;
    struct mft_ber_octets content;
    char a[400], b[400];
    int rc = -1;

    if (out)
        memset(out, 0, sizeof(*out));
    if (!signer) {
        mft_err_set(
            err, MFT_E_SIGNATURE_INVALID,
            "the message is signed but no signing certificate is registered for the partner");
        goto out;
    }
    if (sig_len > MFT_SMIME_MAX_SIGNATURE) { /* it is parsed whole: bounded */
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the signature part is larger than %zu bytes",
                    MFT_SMIME_MAX_SIGNATURE);
        mft_err_detail(err, "%zu bytes", sig_len);
        goto out;
    }
    if (!(cms = cms_parse(sig, sig_len, err)))
        goto out;
    if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the signature part is a CMS %s, not SignedData",
                    OBJ_nid2sn(OBJ_obj2nid(CMS_get0_type(cms))));
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    if (sk_CMS_SignerInfo_num(sis) <= 0) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the SignedData has no SignerInfo");
        goto out;
    }
    for (int i = 0; i < sk_CMS_SignerInfo_num(sis); i++) {
        CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, i);
        X509_ALGOR *dig = NULL, *salg = NULL;
        CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &salg);
        int dnid = dig ? OBJ_obj2nid(dig->algorithm) : NID_undef;
        int snid = salg ? OBJ_obj2nid(salg->algorithm) : NID_undef;
        if (dnid == NID_md5 || dnid == NID_undef) {
            mft_err_set(err, MFT_E_ALGORITHM_REFUSED,
                        "the signature uses digest %s, which is refused",
                        dnid == NID_undef ? "(unknown)" : "md5");
            goto out;
        }
        if (out && i == 0) {
            snprintf(out->digest, sizeof(out->digest), "%s", OBJ_nid2sn(dnid));
            const char *sn = OBJ_nid2sn(snid);
            int hnid = NID_undef, pknid = snid;
            if (snid != NID_rsassaPss)
                OBJ_find_sigid_algs(snid, &hnid, &pknid); /* sha256WithRSAEncryption ... */
            if (pknid == NID_rsaEncryption)
                sn = "rsaEncryption";
            else if (pknid == NID_rsassaPss)
                sn = "RSASSA-PSS";
            else if (pknid == NID_X9_62_id_ecPublicKey)
                sn = "ecdsa";
            snprintf(out->sig_alg, sizeof(out->sig_alg), "%s", sn ? sn : "unknown");
        }
        if (CMS_SignerInfo_cert_cmp(si, signer) != 0) {
            ASN1_OCTET_STRING *keyid = NULL;
            X509_NAME *issuer = NULL;
            ASN1_INTEGER *sno = NULL;
            CMS_SignerInfo_get0_signer_id(si, &keyid, &issuer, &sno);
            id_str(keyid, issuer, sno, a, sizeof(a));
            cert_str(signer, b, sizeof(b));
            mft_err_set(err, MFT_E_SIGNATURE_INVALID,
                        "the message is signed by a certificate other than the partner's");
            mft_err_detail(err, "signed by: %s", a);
            mft_err_detail(err, "partner signing certificate: %s", b);
            goto out;
        }
    }
    if (!(certs = sk_X509_new_null()) || !sk_X509_push(certs, signer))
        goto nomem;
    /* the content is read in place, its pages released as the digest passes */
    mft_ber_octets_raw(&content, data ? data : (const unsigned char *)"", len);
    if (!(dbio = mft_ber_octets_bio(&content)))
        goto nomem;
    ERR_clear_error();
    if (CMS_verify(cms, certs, NULL, dbio, NULL,
                   CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY | CMS_NOINTERN) <= 0) {
        int mismatch = 0;
        mft_err_set(err, MFT_E_SIGNATURE_INVALID, "the message signature does not verify");
        openssl_detail(err, &mismatch);
        if (mismatch && err) {
            snprintf(err->message, sizeof(err->message), "%s",
                     "the signed content does not match the signature's digest");
            mft_err_detail(err, "%s", MFT_SMIME_DIGEST_MISMATCH);
        }
        cert_str(signer, b, sizeof(b));
        mft_err_detail(err, "partner signing certificate: %s", b);
        goto out;
    }
    rc = 0;
    goto out;
nomem:
    mft_err_set(err, MFT_E_NO_MEMORY, NULL);
out:
    ERR_clear_error();
    BIO_free(dbio);
    sk_X509_free(certs); /* signer is borrowed */
    CMS_ContentInfo_free(cms);
    return rc;
}

/*
 * Adds the RFC 6211 CMSAlgorithmProtection signed attribute to si: SEQUENCE {
 * digestAlgorithm, [1] IMPLICIT signatureAlgorithm }, copied from the
 * SignerInfo itself so they can never disagree. OpenSSL 3.0 has no NID for it.
 */
static int add_alg_protection(CMS_SignerInfo *si)
{
    X509_ALGOR *dig = NULL, *sig = NULL;
    unsigned char *d = NULL, *g = NULL, *v = NULL;
    ASN1_OBJECT *oid = OBJ_txt2obj("1.2.840.113549.1.9.52", 1);
    int rc = 0, dl, gl;
    CMS_SignerInfo_get0_algs(si, NULL, NULL, &dig, &sig);
    if (!oid || !dig || !sig || (dl = i2d_X509_ALGOR(dig, &d)) <= 0 ||
        (gl = i2d_X509_ALGOR(sig, &g)) <= 0 || dl + gl > 60000)
        goto out;
    size_t body = (size_t)dl + (size_t)gl, n = 0;
    if (!(v = malloc(body + 8)))
        goto out;
    v[n++] = 0x30; /* SEQUENCE, definite length */
    if (body < 128) {
        v[n++] = (unsigned char)body;
    } else if (body < 256) {
        v[n++] = 0x81;
        v[n++] = (unsigned char)body;
    } else {
        v[n++] = 0x82;
        v[n++] = (unsigned char)(body >> 8);
        v[n++] = (unsigned char)body;
    }
    memcpy(v + n, d, (size_t)dl);
    n += (size_t)dl;
    memcpy(v + n, g, (size_t)gl);
    v[n] = 0xa1; /* [1] IMPLICIT, constructed: replaces the AlgorithmIdentifier's SEQUENCE tag */
    n += (size_t)gl;
    rc = CMS_signed_add1_attr_by_OBJ(si, oid, V_ASN1_SEQUENCE, v, (int)n);
out:
    OPENSSL_free(d);
    OPENSSL_free(g);
    free(v);
    ASN1_OBJECT_free(oid);
    return rc;
}

int mft_smime_sign_detached(const unsigned char *data, size_t len, const struct mft_keypair *kp,
                            const char *ossl_md, unsigned flags, unsigned char **der,
                            size_t *der_len, struct mft_err *err)
{
    CMS_ContentInfo *cms = NULL;
    EVP_MD *md = NULL;
    BIO *dbio = NULL;
    unsigned char *buf = NULL, *p;
    int rc = -1, n;
    const unsigned int cflags = CMS_DETACHED | CMS_BINARY | CMS_PARTIAL;

    *der = NULL;
    *der_len = 0;
    if (len > 0x7fffffff) {
        mft_err_set(err, MFT_E_INTERNAL, "the content to sign is too large");
        goto out;
    }
    if (!kp || !kp->cert || !kp->key) {
        mft_err_set(err, MFT_E_CONFIG, "no signing certificate and key to sign with");
        goto out;
    }
    if (!(md = EVP_MD_fetch(NULL, ossl_md ? ossl_md : "SHA256", NULL))) {
        mft_err_set(err, MFT_E_ALGORITHM_REFUSED, "unknown digest %s", ossl_md);
        mft_err_openssl(err);
        goto out;
    }
    CMS_SignerInfo *si = NULL;
    if (!(cms = CMS_sign(NULL, NULL, NULL, NULL, cflags)) ||
        !(si = CMS_add1_signer(cms, kp->cert, kp->key, md, CMS_BINARY)) ||
        ((flags & MFT_SMIME_ALG_PROTECT) && !add_alg_protection(si))) {
        mft_err_set(err, MFT_E_INTERNAL, "cannot create the CMS signature");
        mft_err_openssl(err);
        goto out;
    }
    for (int i = 0; kp->chain && i < sk_X509_num(kp->chain); i++)
        if (!CMS_add1_cert(cms, sk_X509_value(kp->chain, i))) {
            mft_err_set(err, MFT_E_INTERNAL, "cannot add the chain to the signature");
            mft_err_openssl(err);
            goto out;
        }
    if (!(dbio = BIO_new_mem_buf(data ? (const void *)data : "", (int)len)))
        goto nomem;
    if (!CMS_final(cms, dbio, NULL, CMS_DETACHED | CMS_BINARY)) {
        mft_err_set(err, MFT_E_INTERNAL, "signing failed");
        mft_err_openssl(err);
        goto out;
    }
    if ((n = i2d_CMS_ContentInfo(cms, NULL)) <= 0 || !(buf = malloc((size_t)n)))
        goto nomem;
    p = buf;
    if (i2d_CMS_ContentInfo(cms, &p) != n)
        goto nomem;
    *der = buf;
    *der_len = (size_t)n;
    buf = NULL;
    rc = 0;
    goto out;
nomem:
    mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    mft_err_openssl(err);
out:
    ERR_clear_error();
    free(buf);
    BIO_free(dbio);
    CMS_ContentInfo_free(cms);
    EVP_MD_free(md);
    return rc;
}

/* ---- uncompress ----------------------------------------------------------- */

#define INFLATE_FREE_BYTES MFT_SMIME_INFLATE_FREE_BYTES /* below this, no ratio check */
#define INFLATE_MAX_RATIO MFT_SMIME_INFLATE_MAX_RATIO

static int zlib_header(const unsigned char *p, size_t n)
{
    return n >= 2 && (p[0] & 0x0f) == 8 && (p[0] >> 4) <= 7 && ((p[0] << 8) | p[1]) % 31 == 0;
}

/*
 * Inflates the octets o into the spill, bounded by max_out and by a ratio
 * limit against decompression bombs. The input is read in place.
 */
static int inflate_bounded(struct mft_ber_octets *o, size_t max_out, struct mft_spill *out,
                           struct mft_err *err)
{
    z_stream zs;
    unsigned char *buf = NULL;
    const size_t cap = (size_t)64 << 10;
    size_t used = 0, consumed = 0;
    int zrc = Z_OK, rc = -1, inited = 0;
    const unsigned char *in = NULL;
    long n = 0;

    memset(&zs, 0, sizeof(zs));
    if (!(buf = malloc(cap)))
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    if ((n = mft_ber_octets_next(o, &in, (size_t)1 << 30)) < 0)
        goto malformed;
    if (inflateInit2(&zs, zlib_header(in, (size_t)n) ? 15 : -15) != Z_OK) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    inited = 1;
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)n;
    while (zrc != Z_STREAM_END) {
        if (zs.avail_in == 0) {
            if ((n = mft_ber_octets_next(o, &in, (size_t)1 << 30)) < 0)
                goto malformed;
            zs.next_in = (unsigned char *)in;
            zs.avail_in = (uInt)n;
        }
        uInt avail_before = zs.avail_in;
        zs.next_out = buf;
        zs.avail_out = (uInt)cap;
        zrc = inflate(&zs, Z_NO_FLUSH);
        size_t got = cap - zs.avail_out;
        consumed += avail_before - zs.avail_in;
        if (zrc == Z_BUF_ERROR && zs.avail_in == 0 && n == 0) {
            mft_err_set(err, MFT_E_DECOMPRESS_FAILED, "the compressed stream is truncated");
            goto out;
        }
        if (zrc != Z_OK && zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) {
            mft_err_set(err, MFT_E_DECOMPRESS_FAILED, "the compressed stream is corrupt");
            mft_err_detail(err, "zlib: %s", zs.msg ? zs.msg : zError(zrc));
            goto out;
        }
        if (got > max_out - used) {
            mft_err_set(err, MFT_E_DECOMPRESS_FAILED,
                        "the decompressed content exceeds the limit of %zu bytes", max_out);
            goto out;
        }
        used += got;
        if (used > INFLATE_FREE_BYTES && used / INFLATE_MAX_RATIO > consumed) {
            mft_err_set(err, MFT_E_DECOMPRESS_FAILED,
                        "the compression ratio exceeds %u:1 (decompression bomb?)",
                        INFLATE_MAX_RATIO);
            mft_err_detail(err, "%zu bytes inflated from %zu", used, consumed);
            goto out;
        }
        if (got && mft_spill_write(out, buf, got, err) < 0)
            goto out;
    }
    rc = 0;
    goto out;
malformed:
    mft_err_set(err, MFT_E_DECOMPRESS_FAILED, "the compressed content is malformed");
    mft_err_detail(err, "bad OCTET STRING encoding in the CompressedData");
out:
    if (inited)
        inflateEnd(&zs);
    free(buf);
    return rc;
}

/*
 * Finds the content of a CompressedData: ContentInfo { id-ct-compressedData,
 * [0] { version, compressionAlgorithm, encapContentInfo { eContentType,
 * [0] { OCTET STRING } } } }, walking only the headers. Sets *alg_oid to the
 * compression algorithm (caller frees) and *content_off to the OCTET STRING.
 */
static int compressed_locate(const unsigned char *der, size_t len, ASN1_OBJECT **alg_oid,
                             size_t *content_off, struct mft_err *err)
{
    struct mft_ber_cursor ci, c0, cd, alg, enc, e0;
    struct mft_ber_head h;
    const unsigned char *raw;
    size_t rl;

    *alg_oid = NULL;
    if (mft_ber_open(&ci, der, len, 0, 0x30) < 0 || mft_ber_more(&ci, &h) != 1 || h.id != 0x06 ||
        mft_ber_skip(&ci, &h, &raw, &rl) < 0)
        goto bad;
    int nid = oid_nid(raw, rl);
    if (nid != NID_id_smime_ct_compressedData) {
        mft_err_set(err, MFT_E_DECOMPRESS_FAILED,
                    "the compressed part is a CMS %s, not CompressedData",
                    nid == NID_undef ? "structure of unknown type" : OBJ_nid2sn(nid));
        return -1;
    }
    if (mft_ber_more(&ci, &h) != 1 || mft_ber_open(&c0, der, len, ci.off, 0xa0) < 0 ||
        mft_ber_more(&c0, &h) != 1 || mft_ber_open(&cd, der, len, c0.off, 0x30) < 0 ||
        mft_ber_more(&cd, &h) != 1 || h.id != 0x02 || mft_ber_skip(&cd, &h, NULL, NULL) < 0 ||
        mft_ber_more(&cd, &h) != 1 || mft_ber_open(&alg, der, len, cd.off, 0x30) < 0 ||
        mft_ber_more(&alg, &h) != 1 || h.id != 0x06 || mft_ber_skip(&alg, &h, &raw, &rl) < 0)
        goto bad;
    if (!(*alg_oid = oid_of(raw, rl)))
        goto bad;
    if (mft_ber_more(&cd, &h) != 1 || mft_ber_skip(&cd, &h, NULL, NULL) < 0 || /* the algorithm */
        mft_ber_more(&cd, &h) != 1 || mft_ber_open(&enc, der, len, cd.off, 0x30) < 0 ||
        mft_ber_more(&enc, &h) != 1 || h.id != 0x06 || mft_ber_skip(&enc, &h, NULL, NULL) < 0)
        goto bad;
    int r = mft_ber_more(&enc, &h);
    if (r == 0 || (r == 1 && h.id != 0xa0)) {
        mft_err_set(err, MFT_E_DECOMPRESS_FAILED, "the CompressedData has no content");
        return -1;
    }
    if (r < 0 || mft_ber_open(&e0, der, len, enc.off, 0xa0) < 0 || mft_ber_more(&e0, &h) != 1 ||
        (h.id & 0xdf) != 0x04)
        goto bad;
    *content_off = e0.off;
    return 0;
bad:
    ASN1_OBJECT_free(*alg_oid);
    *alg_oid = NULL;
    mft_err_set(err, MFT_E_DECOMPRESS_FAILED, "the S/MIME content is not a valid CMS structure");
    return mft_err_detail(err, "malformed or truncated CompressedData");
}

int mft_smime_uncompress_to(const unsigned char *der, size_t len, size_t max_out,
                            struct mft_spill *out, struct mft_err *err)
{
    ASN1_OBJECT *alg = NULL;
    size_t off = 0;
    struct mft_ber_octets o;
    int rc = -1;

    if (!der || len == 0) {
        mft_err_set(err, MFT_E_DECOMPRESS_FAILED, "the CompressedData is empty");
        goto out;
    }
    if (compressed_locate(der, len, &alg, &off, err) < 0)
        goto out;
    if (OBJ_obj2nid(alg) != NID_zlib_compression) {
        char oid[80];
        OBJ_obj2txt(oid, sizeof(oid), alg, 1);
        mft_err_set(err, MFT_E_DECOMPRESS_FAILED, "unsupported compression algorithm %s", oid);
        goto out;
    }
    if (mft_ber_octets_begin(&o, der, len, off) < 0) {
        mft_err_set(err, MFT_E_DECOMPRESS_FAILED, "the compressed content is malformed");
        goto out;
    }
    rc = inflate_bounded(&o, max_out, out, err);
out:
    ERR_clear_error();
    ASN1_OBJECT_free(alg);
    return rc;
}

int mft_smime_uncompress(const unsigned char *der, size_t len, size_t max_out, unsigned char **out,
                         size_t *out_len, struct mft_err *err)
{
    struct mft_spill sp;
    *out = NULL;
    *out_len = 0;
    mft_spill_init(&sp, NULL, 0);
    int rc = mft_smime_uncompress_to(der, len, max_out, &sp, err);
    if (rc == 0 && !(*out = mft_spill_take(&sp, out_len)))
        rc = mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    mft_spill_free(&sp);
    return rc;
}
