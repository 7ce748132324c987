/*
 * mft_as2_send — builds outgoing AS2 messages. Each stage turns the current
 * MIME entity (headers + blank line + body, exact bytes) into the next one:
 * payload entity → CompressedData entity (zlib, RFC 3274; Debian's OpenSSL has
 * no zlib, so the DER is written here) → multipart/signed → CompressedData →
 * EnvelopedData (OpenSSL CMS). The top entity's headers become HTTP headers.
 * The MIC follows RFC 4130 §7.3.1: over the signed entity when signed; when
 * unsigned, over the payload entity (headers and content) as the receiver
 * finds it under the encryption or compression layers, or over the content
 * alone when there is no layer. Whole-buffer for now; no shared state.
 */
#include "mft_as2_send.h"
#include "mft_smime.h"

#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* The current MIME entity of the pipeline. */
struct entity {
    struct mft_buf whole; /* headers + CRLF + body */
    size_t body_off;
    char ctype[600];  /* its Content-Type value */
    const char *cte;  /* its Content-Transfer-Encoding, or NULL */
    const char *disp; /* its Content-Disposition value, or NULL */
};

static void entity_free(struct entity *e)
{
    mft_buf_free(&e->whole);
}

/* Starts an entity with the given headers; the body is appended after. */
static void entity_begin(struct entity *e, const char *ctype, const char *cte, const char *disp)
{
    snprintf(e->ctype, sizeof(e->ctype), "%s", ctype);
    e->cte = cte;
    e->disp = disp;
    mft_buf_str(&e->whole, "Content-Type: ");
    mft_buf_str(&e->whole, ctype);
    mft_buf_str(&e->whole, "\r\n");
    if (cte) {
        mft_buf_str(&e->whole, "Content-Transfer-Encoding: ");
        mft_buf_str(&e->whole, cte);
        mft_buf_str(&e->whole, "\r\n");
    }
    if (disp) {
        mft_buf_str(&e->whole, "Content-Disposition: ");
        mft_buf_str(&e->whole, disp);
        mft_buf_str(&e->whole, "\r\n");
    }
    mft_buf_str(&e->whole, "\r\n");
    e->body_off = e->whole.len;
}

/* Appends binary content in the entity's transfer encoding. */
static void entity_content(struct entity *e, const unsigned char *p, size_t n, int base64)
{
    if (base64)
        mft_buf_base64_lines(&e->whole, p, n);
    else
        mft_buf_add(&e->whole, p, n);
}

int mft_as2_boundary(char *out, size_t outlen, struct mft_err *err)
{
    unsigned char rnd[16];
    if (outlen < 48)
        return mft_err_set(err, MFT_E_INTERNAL, "boundary buffer too small");
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        mft_err_set(err, MFT_E_INTERNAL, "RAND_bytes failed");
        return mft_err_openssl(err);
    }
    int n = snprintf(out, outlen, "----=_Part_mft_");
    for (size_t i = 0; i < sizeof(rnd); i++)
        n += snprintf(out + n, outlen - (size_t)n, "%02x", rnd[i]);
    return 0;
}

int mft_as2_sign_entity(const unsigned char *entity, size_t len, const struct mft_keypair *signer,
                        const char *md_any, unsigned flags, char **content_type,
                        struct mft_buf *body, struct mft_err *err)
{
    int old_micalg_names = (flags & MFT_AS2_SIGN_OLD_MICALG) != 0;
    const char *ossl = NULL, *rfc = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    char bnd[64];
    int rc = -1;

    *content_type = NULL;
    if (mft_smime_digest_name(md_any ? md_any : "sha-256", &ossl, &rfc) < 0 ||
        strcmp(ossl, "MD5") == 0)
        return mft_err_set(err, MFT_E_ALGORITHM_REFUSED, "no signing digest \"%s\"",
                           md_any ? md_any : "");
    if (!signer || !signer->cert || !signer->key)
        return mft_err_set(err, MFT_E_CONFIG, "no signing key and certificate");
    if (mft_as2_boundary(bnd, sizeof(bnd), err) < 0 ||
        mft_smime_sign_detached(entity, len, signer, ossl,
                                (flags & MFT_AS2_SIGN_ALG_PROTECT) ? MFT_SMIME_ALG_PROTECT : 0u,
                                &der, &der_len, err) < 0)
        goto out;
    mft_buf_str(body, "--");
    mft_buf_str(body, bnd);
    mft_buf_str(body, "\r\n");
    mft_buf_add(body, entity, len);
    mft_buf_str(body, "\r\n--");
    mft_buf_str(body, bnd);
    mft_buf_str(body, "\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n"
                      "Content-Transfer-Encoding: base64\r\n"
                      "Content-Disposition: attachment; filename=smime.p7s\r\n\r\n");
    mft_buf_base64_lines(body, der, der_len);
    mft_buf_str(body, "\r\n--");
    mft_buf_str(body, bnd);
    mft_buf_str(body, "--\r\n");
    if (body->oom) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    /* "sha-256" (RFC 5751) or "sha256" (RFC 3851) */
    char micalg[16];
    size_t m = 0;
    for (const char *s = rfc; *s && m + 1 < sizeof(micalg); s++)
        if (!(old_micalg_names && *s == '-'))
            micalg[m++] = *s;
    micalg[m] = '\0';
    size_t ctlen = 160 + strlen(bnd);
    if (!(*content_type = malloc(ctlen))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    snprintf(*content_type, ctlen,
             "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=%s; "
             "boundary=\"%s\"",
             micalg, bnd);
    rc = 0;
out:
    free(der);
    return rc;
}

/* --- CompressedData (RFC 3274), DER --------------------------------------- */

static void der_header(struct mft_buf *b, unsigned char tag, size_t len)
{
    unsigned char h[10];
    size_t n = 0;
    h[n++] = tag;
    if (len < 0x80) {
        h[n++] = (unsigned char)len;
    } else {
        unsigned char tmp[8];
        size_t k = 0;
        for (size_t v = len; v; v >>= 8)
            tmp[k++] = (unsigned char)(v & 0xff);
        h[n++] = (unsigned char)(0x80 | k);
        while (k)
            h[n++] = tmp[--k];
    }
    mft_buf_add(b, h, n);
}

static size_t der_header_len(size_t len)
{
    size_t n = 2;
    for (size_t v = len; len >= 0x80 && v; v >>= 8)
        n++;
    return n;
}

static const unsigned char OID_COMPRESSED[] = {0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                               0x0d, 0x01, 0x09, 0x10, 0x01, 0x09};
static const unsigned char OID_ZLIB[] = {0x30, 0x0d, 0x06, 0x0b, 0x2a, 0x86, 0x48, 0x86,
                                         0xf7, 0x0d, 0x01, 0x09, 0x10, 0x03, 0x08};
static const unsigned char OID_DATA[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86,
                                         0xf7, 0x0d, 0x01, 0x07, 0x01};

/* Deflates data (zlib format) and wraps it in a CMS ContentInfo CompressedData. */
static int compressed_data(const unsigned char *data, size_t len, struct mft_buf *out,
                           struct mft_err *err)
{
    uLongf zlen = compressBound((uLong)len);
    unsigned char *z = malloc(zlen ? zlen : 1);
    if (!z)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    if ((uLong)len != len || compress2(z, &zlen, data, (uLong)len, 6) != Z_OK) {
        free(z);
        return mft_err_set(err, MFT_E_INTERNAL, "zlib compression failed");
    }
    size_t octets = der_header_len(zlen) + zlen;                         /* OCTET STRING */
    size_t explicit0 = der_header_len(octets) + octets;                  /* [0] EXPLICIT */
    size_t encap = sizeof(OID_DATA) + explicit0;                         /* encapContentInfo */
    size_t cdata = 3 + sizeof(OID_ZLIB) + der_header_len(encap) + encap; /* CompressedData */
    size_t content = der_header_len(cdata) + cdata; /* [0] EXPLICIT of ContentInfo */
    size_t ci = sizeof(OID_COMPRESSED) + der_header_len(content) + content;
    der_header(out, 0x30, ci);
    mft_buf_add(out, OID_COMPRESSED, sizeof(OID_COMPRESSED));
    der_header(out, 0xa0, content);
    der_header(out, 0x30, cdata);
    mft_buf_add(out, "\x02\x01\x00", 3); /* version 0 */
    mft_buf_add(out, OID_ZLIB, sizeof(OID_ZLIB));
    der_header(out, 0x30, encap);
    mft_buf_add(out, OID_DATA, sizeof(OID_DATA));
    der_header(out, 0xa0, octets);
    der_header(out, 0x04, zlen);
    mft_buf_add(out, z, zlen);
    free(z);
    return out->oom ? mft_err_set(err, MFT_E_NO_MEMORY, NULL) : 0;
}

/* Replaces *cur by a compressed-data entity holding it. */
static int stage_compress(struct entity *cur, int base64, struct mft_err *err)
{
    struct mft_buf der = {0};
    struct entity next = {0};
    if (compressed_data(cur->whole.p, cur->whole.len, &der, err) < 0) {
        mft_buf_free(&der);
        return -1;
    }
    entity_begin(&next, "application/pkcs7-mime; smime-type=compressed-data; name=smime.p7z",
                 base64 ? "base64" : "binary", "attachment; filename=smime.p7z");
    entity_content(&next, der.p, der.len, base64);
    mft_buf_free(&der);
    entity_free(cur);
    *cur = next;
    return cur->whole.oom ? mft_err_set(err, MFT_E_NO_MEMORY, NULL) : 0;
}

/* Replaces *cur by a multipart/signed entity holding it. */
static int stage_sign(struct entity *cur, const struct mft_keypair *signer,
                      const struct mft_as2_send_opts *o, struct mft_err *err)
{
    struct mft_buf body = {0};
    struct entity next = {0};
    char *ct = NULL;
    if (mft_as2_sign_entity(cur->whole.p, cur->whole.len, signer, o->sign_md,
                            (o->old_micalg_names ? MFT_AS2_SIGN_OLD_MICALG : 0u) |
                                (o->no_alg_protection ? 0u : MFT_AS2_SIGN_ALG_PROTECT),
                            &ct, &body, err) < 0) {
        mft_buf_free(&body);
        return -1;
    }
    entity_begin(&next, ct, NULL, NULL);
    mft_buf_add(&next.whole, body.p, body.len);
    free(ct);
    mft_buf_free(&body);
    entity_free(cur);
    *cur = next;
    return cur->whole.oom ? mft_err_set(err, MFT_E_NO_MEMORY, NULL) : 0;
}

/* Encrypts the whole entity for recipient; DER into *der. */
static int envelope(const struct entity *cur, X509 *recipient, const struct mft_as2_send_opts *o,
                    const EVP_CIPHER *cipher, struct mft_buf *der, struct mft_err *err)
{
    int rc = -1;
    BIO *in = BIO_new_mem_buf(cur->whole.p, (int)cur->whole.len);
    BIO *out = BIO_new(BIO_s_mem());
    CMS_ContentInfo *cms = NULL;
    unsigned flags = CMS_BINARY | CMS_PARTIAL;
    if (!in || !out || cur->whole.len > 0x7fffffff)
        goto fail;
    if (!(cms = CMS_encrypt(NULL, in, cipher, flags)))
        goto fail;
    CMS_RecipientInfo *ri =
        CMS_add1_recipient_cert(cms, recipient, o->rsa_oaep ? CMS_KEY_PARAM : 0);
    if (!ri)
        goto fail;
    if (o->rsa_oaep) {
        EVP_PKEY_CTX *pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
        if (!pctx || EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_rsa_oaep_md(pctx, EVP_sha256()) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0)
            goto fail;
    }
    if (CMS_final(cms, in, NULL, CMS_BINARY) != 1 || i2d_CMS_bio(out, cms) != 1)
        goto fail;
    char *p = NULL;
    long n = BIO_get_mem_data(out, &p);
    mft_buf_add(der, p, (size_t)n);
    rc = der->oom ? mft_err_set(err, MFT_E_NO_MEMORY, NULL) : 0;
    goto out;
fail:
    mft_err_set(err, MFT_E_INTERNAL, "encryption failed");
    mft_err_openssl(err);
out:
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    BIO_free(out);
    return rc;
}

static const struct {
    const char *name;
    const char *ossl;
} ciphers[] = {
    {"aes-128-cbc", "AES-128-CBC"}, {"aes-192-cbc", "AES-192-CBC"},
    {"aes-256-cbc", "AES-256-CBC"}, {"des-ede3-cbc", "DES-EDE3-CBC"},
    {"3des", "DES-EDE3-CBC"},       {"aes-128-gcm", "AES-128-GCM"},
    {"aes-256-gcm", "AES-256-GCM"}, {NULL, NULL},
};

static int set_mic(struct mft_as2_message *out, const char *md_any, int old_names,
                   const unsigned char *p, size_t n, struct mft_err *err)
{
    const char *ossl = NULL, *rfc = NULL;
    if (mft_smime_digest_name(md_any, &ossl, &rfc) < 0)
        return mft_err_set(err, MFT_E_ALGORITHM_REFUSED, "no MIC digest \"%s\"", md_any);
    size_t m = 0;
    for (const char *s = rfc; *s && m + 1 < sizeof(out->mic_alg); s++)
        if (!(old_names && *s == '-'))
            out->mic_alg[m++] = *s;
    out->mic_alg[m] = '\0';
    return mft_smime_digest_b64(ossl, p, n, out->mic_b64, sizeof(out->mic_b64), err);
}

/* A file name safe inside a quoted MIME parameter, or the default. */
static const char *safe_filename(const char *f)
{
    return !f || !*f || strpbrk(f, "\"\r\n\\") ? "payload.bin" : f;
}

static const char *part_type(const struct mft_as2_part *p)
{
    return p->content_type && *p->content_type && !strpbrk(p->content_type, "\r\n")
               ? p->content_type
               : "application/octet-stream";
}

/*
 * The payload entity: the one part itself, or for several a multipart/related
 * (RFC 2387, EDIINT multiple-attachments) whose type is the first part's, each
 * part with its own type, transfer encoding and file name.
 */
static int payload_entity(struct entity *e, const struct mft_as2_part *parts, size_t n, int base64,
                          char *disp, size_t disp_len, struct mft_err *err)
{
    snprintf(disp, disp_len, "attachment; filename=\"%s\"", safe_filename(parts[0].filename));
    if (n == 1) {
        entity_begin(e, part_type(&parts[0]), base64 ? "base64" : "binary", disp);
        entity_content(e, parts[0].data, parts[0].len, base64);
        return 0;
    }
    char bnd[64], ctype[400];
    if (mft_as2_boundary(bnd, sizeof(bnd), err) < 0)
        return -1;
    char first[256];
    snprintf(first, sizeof(first), "%s", part_type(&parts[0]));
    first[strcspn(first, ";")] = '\0'; /* the type parameter is a bare media type */
    snprintf(ctype, sizeof(ctype), "multipart/related; boundary=\"%s\"; type=\"%s\"", bnd, first);
    entity_begin(e, ctype, NULL, NULL);
    for (size_t i = 0; i < n; i++) {
        mft_buf_str(&e->whole, "--");
        mft_buf_str(&e->whole, bnd);
        mft_buf_str(&e->whole, "\r\nContent-Type: ");
        mft_buf_str(&e->whole, part_type(&parts[i]));
        mft_buf_str(&e->whole, base64 ? "\r\nContent-Transfer-Encoding: base64"
                                      : "\r\nContent-Transfer-Encoding: binary");
        mft_buf_str(&e->whole, "\r\nContent-Disposition: attachment; filename=\"");
        mft_buf_str(&e->whole, safe_filename(parts[i].filename));
        mft_buf_str(&e->whole, "\"\r\n\r\n");
        entity_content(e, parts[i].data, parts[i].len, base64);
        mft_buf_str(&e->whole, "\r\n");
    }
    mft_buf_str(&e->whole, "--");
    mft_buf_str(&e->whole, bnd);
    mft_buf_str(&e->whole, "--\r\n");
    return 0;
}

int mft_as2_build(const unsigned char *payload, size_t len, const char *filename,
                  const char *payload_type, const struct mft_keypair *signer, X509 *recipient,
                  const struct mft_as2_send_opts *o, struct mft_as2_message *out,
                  struct mft_err *err)
{
    struct mft_as2_part part = {payload, len, filename, payload_type};
    return mft_as2_build_parts(&part, 1, signer, recipient, o, out, err);
}

int mft_as2_build_parts(const struct mft_as2_part *parts, size_t n_parts,
                        const struct mft_keypair *signer, X509 *recipient,
                        const struct mft_as2_send_opts *o, struct mft_as2_message *out,
                        struct mft_err *err)
{
    struct entity cur = {0};
    struct mft_buf der = {0};
    const EVP_CIPHER *cipher = NULL;
    int sign = o->sign_md && *o->sign_md;
    int encrypt = o->cipher && *o->cipher;
    char disp[400];
    int rc = -1;

    memset(out, 0, sizeof(*out));
    if (encrypt) {
        size_t i = 0;
        while (ciphers[i].name && strcasecmp(ciphers[i].name, o->cipher) != 0)
            i++;
        if (!ciphers[i].name || !(cipher = EVP_get_cipherbyname(ciphers[i].ossl)))
            return mft_err_set(err, MFT_E_ALGORITHM_REFUSED, "no such cipher \"%s\"", o->cipher);
        if (!recipient)
            return mft_err_set(err, MFT_E_CONFIG, "the partner has no encryption certificate");
    }
    if (n_parts == 0 || n_parts > MFT_AS2_MAX_PARTS)
        return mft_err_set(err, MFT_E_CONFIG, "a message carries 1 to %d documents, not %zu",
                           MFT_AS2_MAX_PARTS, n_parts);
    if (payload_entity(&cur, parts, n_parts, o->base64, disp, sizeof(disp), err) < 0)
        goto out;
    if (cur.whole.oom) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    /* An unsigned message's MIC is over the payload entity, as the receiver
     * finds it once every layer is undone (headers and content), or over the
     * content alone when there is no layer at all (RFC 4130 §7.3.1). */
    const char *umd = o->mic_md ? o->mic_md : "sha-256";
    if (!sign && (encrypt || o->compress != MFT_AS2_COMPRESS_NONE) &&
        set_mic(out, umd, o->old_micalg_names, cur.whole.p, cur.whole.len, err) < 0)
        goto out;
    if (!sign && !encrypt && o->compress == MFT_AS2_COMPRESS_NONE &&
        set_mic(out, umd, o->old_micalg_names, cur.whole.p + cur.body_off,
                cur.whole.len - cur.body_off, err) < 0)
        goto out;
    if (o->compress != MFT_AS2_COMPRESS_NONE &&
        (!sign || o->compress == MFT_AS2_COMPRESS_BEFORE_SIGNING) &&
        stage_compress(&cur, o->base64, err) < 0)
        goto out;
    if (sign) {
        if (set_mic(out, o->sign_md, o->old_micalg_names, cur.whole.p, cur.whole.len, err) < 0 ||
            stage_sign(&cur, signer, o, err) < 0)
            goto out;
        if (o->compress == MFT_AS2_COMPRESS_AFTER_SIGNING &&
            stage_compress(&cur, o->base64, err) < 0)
            goto out;
    }

    const char *ctype = cur.ctype;
    const unsigned char *body = cur.whole.p + cur.body_off;
    size_t body_len = cur.whole.len - cur.body_off;
    const char *cte = cur.cte ? cur.cte : "binary";
    int gcm = encrypt && (EVP_CIPHER_get_flags(cipher) & EVP_CIPH_FLAG_AEAD_CIPHER);
    struct mft_buf enc = {0};
    if (encrypt) {
        if (envelope(&cur, recipient, o, cipher, &der, err) < 0)
            goto out;
        if (o->base64)
            mft_buf_base64_lines(&enc, der.p, der.len);
        else
            mft_buf_add(&enc, der.p, der.len);
        mft_buf_free(&der);
        der = enc;
        ctype = gcm ? "application/pkcs7-mime; smime-type=authEnveloped-data; name=\"smime.p7m\""
                    : "application/pkcs7-mime; smime-type=enveloped-data; name=\"smime.p7m\"";
        body = der.p;
        body_len = der.len;
        cte = o->base64 ? "base64" : "binary";
    }
    if (der.oom || !(out->content_type = strdup(ctype)) ||
        !(out->content_disposition = strdup(encrypt    ? "attachment; filename=\"smime.p7m\""
                                            : cur.disp ? cur.disp
                                                       : disp)) ||
        !(out->body = malloc(body_len ? body_len : 1))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    memcpy(out->body, body, body_len);
    out->len = body_len;
    out->transfer_encoding = strcmp(cte, "base64") == 0 ? "base64" : "binary";
    rc = 0;
out:
    if (rc < 0)
        mft_as2_message_free(out);
    entity_free(&cur);
    mft_buf_free(&der);
    return rc;
}

void mft_as2_message_free(struct mft_as2_message *m)
{
    if (!m)
        return;
    free(m->content_type);
    free(m->content_disposition);
    free(m->body);
    memset(m, 0, sizeof(*m));
}
