/*
 * mft_as2 — receiving one AS2 message (RFC 4130): from the HTTP Content-Type /
 * Content-Transfer-Encoding / Content-Disposition and the body bytes to the
 * payload(s), the MIC, the security flags and what the partner asked for in
 * its Disposition-Notification-Options.
 *
 * The message is undone layer by layer (at most MFT_AS2_MAX_LAYERS): a
 * pkcs7-mime layer is dispatched on the CMS content type it really holds
 * (EnvelopedData / AuthEnvelopedData -> mft_smime_decrypt, CompressedData ->
 * mft_smime_uncompress), multipart/signed is split with mft_mime and verified
 * with mft_smime_verify_detached against the partner's certificate, anything
 * else is the payload (each part of a multipart/mixed or related one).
 * Nothing is rewritten: the MIC is computed over the exact received bytes.
 *
 * Memory stays bounded whatever the size: each decrypted, inflated or
 * transfer-decoded layer is written to a spill (memory while small, an unlinked
 * temporary file in req->spill_dir past req->spill_threshold), the ciphertext
 * and compressed bytes are read in place, and every sequential pass releases
 * the pages it has passed (mft_spill.h). A 100 MB message peaks near 10 MB.
 *
 * Called by ingress per request. Station and partner are borrowed; the layers
 * and payloads are owned by the result (mft_as2_result_free). No shared state:
 * thread-safe.
 */
#include "mft_as2.h"

#include "mft_mdn.h"
#include "mft_mime.h"
#include "mft_smime.h"
#include "mft_spill.h"

#include <openssl/evp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define AS2_DEFAULT_MAX_INFLATED ((size_t)512 << 20)
#define AS2_MAX_OWNED (3 * MFT_AS2_MAX_LAYERS + 4)

/* One layer of the message: the HTTP level (outer), a MIME entity, or raw bytes. */
struct layer {
    int outer; /* headers are the HTTP request's */
    int raw;   /* decrypted / inflated content without MIME headers */
    struct mft_mime_entity e;
};

struct as2_ctx {
    const struct mft_as2_request *req;
    const struct mft_station *st;
    const struct mft_partner *p;
    struct mft_as2_result *res;
    struct mft_err *err;
    /* MIC algorithm the partner asked for in signed-receipt-micalg, if any we support */
    size_t inflated; /* bytes inflated so far, over all compression layers */
    const char *dno_ossl;
    char dno_spelling[32];
    int mic_done;
};

/* ---- small helpers ------------------------------------------------------- */

struct mft_as2_spills {
    struct mft_spill s[AS2_MAX_OWNED];
    size_t n;
};

/* A new spill owned by the result: the layers' and payloads' bytes outlive the call. */
static struct mft_spill *new_spill(struct as2_ctx *c)
{
    struct mft_as2_result *res = c->res;
    if (!res->spills && !(res->spills = calloc(1, sizeof(*res->spills)))) {
        mft_err_set(c->err, MFT_E_NO_MEMORY, NULL);
        return NULL;
    }
    if (res->spills->n >= AS2_MAX_OWNED) {
        mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE, "too many nested layers");
        return NULL;
    }
    struct mft_spill *sp = &res->spills->s[res->spills->n++];
    mft_spill_init(sp, c->req->spill_dir,
                   c->req->spill_threshold ? c->req->spill_threshold : MFT_AS2_SPILL_DEFAULT);
    return sp;
}

/* Decodes a span by its Content-Transfer-Encoding into a new spill; *out spans the result. */
static int decode_span(struct as2_ctx *c, const char *cte, const struct mft_span *in,
                       struct mft_span *out)
{
    struct mft_spill *sp = new_spill(c);
    if (!sp || mft_mime_decode_to(cte, in, sp, c->err) < 0 ||
        mft_spill_finish(sp, &out->p, &out->len, c->err) < 0)
        return -1;
    return 0;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* Header value of a layer into out; returns its length or -1 when absent. */
static int layer_header(const struct as2_ctx *c, const struct layer *l, const char *name, char *out,
                        size_t outlen)
{
    if (l->raw)
        return -1;
    if (l->outer) {
        const char *v = NULL;
        if (strcasecmp(name, "content-type") == 0)
            v = c->req->content_type;
        else if (strcasecmp(name, "content-transfer-encoding") == 0)
            v = c->req->content_transfer_encoding;
        else if (strcasecmp(name, "content-disposition") == 0)
            v = c->req->content_disposition;
        if (!v)
            return -1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t n = strlen(v);
        while (n > 0 &&
               (v[n - 1] == ' ' || v[n - 1] == '\t' || v[n - 1] == '\r' || v[n - 1] == '\n'))
            n--;
        if (n + 1 > outlen)
            return -1;
        memcpy(out, v, n);
        out[n] = '\0';
        return (int)n;
    }
    return mft_mime_header(&l->e, name, out, outlen);
}

static int is_identity_cte(const char *cte)
{
    static const char *const ids[] = {"", "7bit", "8bit", "binary"};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
        if (strcasecmp(cte, ids[i]) == 0)
            return 1;
    return 0;
}

/* The decoded body of a layer: a span into the message or into an owned buffer. */
static int layer_body(struct as2_ctx *c, const struct layer *l, struct mft_span *out)
{
    char cte[64] = "";
    if (layer_header(c, l, "content-transfer-encoding", cte, sizeof(cte)) < 0)
        cte[0] = '\0';
    if (is_identity_cte(cte)) {
        *out = l->e.body;
        return 0;
    }
    return decode_span(c, cte, &l->e.body, out);
}

/* Some senders send base64 DER without saying so: DER starts 0x30, base64 of it "MI". */
static int maybe_base64_der(struct as2_ctx *c, struct mft_span *der)
{
    if (der->len < 4 || der->p[0] != 'M' || der->p[1] != 'I')
        return 0;
    struct mft_span in = *der;
    return decode_span(c, "base64", &in, der);
}

enum cms_kind { CMS_UNKNOWN, CMS_ENVELOPED, CMS_AUTH_ENVELOPED, CMS_COMPRESSED, CMS_SIGNED };

/* Reads the content type OID of a BER ContentInfo without parsing the rest. */
static enum cms_kind cms_sniff(const unsigned char *p, size_t n)
{
    static const struct {
        enum cms_kind kind;
        unsigned char len;
        unsigned char oid[11];
    } oids[] = {
        {CMS_ENVELOPED, 9, {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03}},
        {CMS_SIGNED, 9, {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}},
        {CMS_COMPRESSED, 11, {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x09}},
        {CMS_AUTH_ENVELOPED,
         11,
         {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x10, 0x01, 0x17}},
    };
    size_t h;
    if (n < 4 || p[0] != 0x30)
        return CMS_UNKNOWN;
    if (p[1] <= 0x80)
        h = 2;
    else
        h = 2 + (size_t)(p[1] & 0x7f);
    if (h + 2 > n || p[h] != 0x06)
        return CMS_UNKNOWN;
    size_t olen = p[h + 1];
    if (h + 2 + olen > n)
        return CMS_UNKNOWN;
    for (size_t i = 0; i < sizeof(oids) / sizeof(oids[0]); i++)
        if (olen == oids[i].len && memcmp(p + h + 2, oids[i].oid, olen) == 0)
            return oids[i].kind;
    return CMS_UNKNOWN;
}

/* ---- MIC ----------------------------------------------------------------- */

/*
 * Chooses the MIC algorithm: the partner's signed-receipt-micalg, else the
 * digest the signature really uses (from the SignerInfo's OID, never from the
 * micalg label, which some senders get wrong), else the micalg label, else SHA-1.
 */
static void mic_choose(struct as2_ctx *c, const char *oid_digest, const char *micalg,
                       const char **ossl, const char **spelling)
{
    const char *o = NULL, *r = NULL;
    if (c->dno_ossl) {
        *ossl = c->dno_ossl;
        *spelling = c->dno_spelling;
        return;
    }
    const char *names[] = {oid_digest, micalg};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (names[i] && mft_smime_digest_name(names[i], &o, &r) == 0 && strcmp(o, "MD5") != 0) {
            *ossl = o;
            *spelling = r;
            return;
        }
    *ossl = "SHA1";
    *spelling = "sha-1";
}

static int mic_set(struct as2_ctx *c, const char *oid_digest, const char *micalg,
                   const unsigned char *data, size_t len)
{
    const char *ossl, *spelling;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *mctx = NULL;
    EVP_MD *alg = NULL;
    int rc = -1;

    mic_choose(c, oid_digest, micalg, &ossl, &spelling);
    int ok = (alg = EVP_MD_fetch(NULL, ossl, NULL)) && (mctx = EVP_MD_CTX_new()) &&
             EVP_DigestInit_ex(mctx, alg, NULL);
    for (size_t off = 0; ok && off < len; off += MFT_RELEASE_STEP) { /* pages released behind */
        size_t n = len - off < MFT_RELEASE_STEP ? len - off : MFT_RELEASE_STEP;
        ok = EVP_DigestUpdate(mctx, data + off, n);
        mft_release(data + off, n);
    }
    if (!ok || !EVP_DigestFinal_ex(mctx, md, &mdlen)) {
        mft_err_set(c->err, MFT_E_INTERNAL, "cannot compute the MIC with %s", ossl);
        mft_err_openssl(c->err);
        goto out;
    }
    EVP_EncodeBlock((unsigned char *)c->res->mic_b64, md, (int)mdlen);
    copy_str(c->res->mic_alg, sizeof(c->res->mic_alg), spelling);
    copy_str(c->res->receipt_micalg, sizeof(c->res->receipt_micalg), ossl);
    c->mic_done = 1;
    rc = 0;
out:
    EVP_MD_CTX_free(mctx);
    EVP_MD_free(alg);
    return rc;
}

/*
 * MIC of an unsigned message (RFC 4130 §7.3.1): for an encrypted one, over the
 * decrypted MIME entity (headers and content) as received; for one neither
 * signed nor encrypted, over the message content alone, without any header,
 * since intermediaries may alter or reorder headers.
 */
static int mic_unsigned(struct as2_ctx *c, const struct layer *l)
{
    if (!l->outer)
        return mic_set(c, NULL, NULL, l->e.whole.p, l->e.whole.len);
    return mic_set(c, NULL, NULL, l->e.body.p, l->e.body.len);
}

/* Reads Disposition-Notification-Options into the result and the MIC choice. */
static int read_options(struct as2_ctx *c)
{
    struct mft_mdn_options o;
    struct mft_err ignored;
    /* Lenient: a malformed option list does not reject the message; what was read
     * before the fault is used, the rest falls back to the defaults. */
    memset(&o, 0, sizeof(o));
    mft_mdn_parse_options(c->req->disposition_notification_options, &o, &ignored);
    c->res->signed_receipt = o.signed_requested;
    for (size_t i = 0; i < o.n_micalgs; i++) {
        const char *ossl = NULL, *rfc = NULL;
        if (mft_smime_digest_name(o.micalgs[i], &ossl, &rfc) < 0 || strcmp(ossl, "MD5") == 0)
            continue;
        c->dno_ossl = ossl;
        /* the partner's spelling, if it fits the result field */
        if (strlen(o.micalgs[i]) < sizeof(c->res->mic_alg))
            copy_str(c->dno_spelling, sizeof(c->dno_spelling), o.micalgs[i]);
        else
            copy_str(c->dno_spelling, sizeof(c->dno_spelling), rfc);
        copy_str(c->res->receipt_micalg, sizeof(c->res->receipt_micalg), ossl);
        break;
    }
    return 0;
}

/* ---- payloads ----------------------------------------------------------- */

static void param_of(struct as2_ctx *c, const char *value, const char *param, char *out,
                     size_t outlen)
{
    struct mft_mime_value v;
    struct mft_err ignored;
    out[0] = '\0';
    if (!value || !*value || mft_mime_parse_value(value, &v, &ignored) < 0)
        return;
    const char *p = mft_mime_param(&v, param);
    if (p)
        copy_str(out, outlen, p);
}

static int add_payload(struct as2_ctx *c, const struct layer *l)
{
    struct mft_as2_result *res = c->res;
    struct mft_span body;
    char cd[1024];

    if (res->n_payloads >= MFT_AS2_MAX_PAYLOADS)
        return mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE, "the message has more than %d payloads",
                           MFT_AS2_MAX_PAYLOADS);
    if (layer_body(c, l, &body) < 0)
        return -1;
    struct mft_as2_payload *pl = &res->payloads[res->n_payloads];
    memset(pl, 0, sizeof(*pl));
    pl->data = body.p ? body.p : (const unsigned char *)""; /* owned by the result */
    pl->len = body.len;
    res->n_payloads++;
    if (layer_header(c, l, "content-disposition", cd, sizeof(cd)) >= 0)
        param_of(c, cd, "filename", pl->filename, sizeof(pl->filename));
    if (!pl->filename[0] && c->req->content_disposition)
        param_of(c, c->req->content_disposition, "filename", pl->filename, sizeof(pl->filename));
    if (layer_header(c, l, "content-type", pl->content_type, sizeof(pl->content_type)) < 0)
        pl->content_type[0] = '\0';
    return 0;
}

/* The payload layer: one payload, or one per part of a multipart/mixed or related. */
static int take_payloads(struct as2_ctx *c, const struct layer *l, const struct mft_mime_value *ct)
{
    if (ct && (strcmp(ct->token, "multipart/mixed") == 0 ||
               strcmp(ct->token, "multipart/related") == 0)) {
        const char *boundary = mft_mime_param(ct, "boundary");
        struct mft_span parts[MFT_AS2_MAX_PAYLOADS];
        size_t n = 0;
        if (!boundary)
            return mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE, "%s without a boundary", ct->token);
        if (mft_mime_split(&l->e.body, boundary, parts, MFT_AS2_MAX_PAYLOADS, &n, c->err) < 0)
            return -1;
        for (size_t i = 0; i < n; i++) {
            struct layer part = {0};
            if (mft_mime_parse(parts[i].p, parts[i].len, 0, &part.e, c->err) < 0)
                return mft_err_detail(c->err, "in part %zu of the %s payload", i + 1, ct->token);
            if (add_payload(c, &part) < 0)
                return -1;
        }
        return 0;
    }
    return add_payload(c, l);
}

/* ---- layers --------------------------------------------------------------- */

/* Parses decrypted / inflated content as the next layer (MIME entity or raw bytes). */
static int next_entity(struct as2_ctx *c, const unsigned char *buf, size_t len, struct layer *next)
{
    memset(next, 0, sizeof(*next));
    if (mft_mime_parse(buf, len, 1, &next->e, c->err) < 0)
        return -1;
    if (next->e.n_headers == 0)
        next->raw = 1;
    return 0;
}

static int do_pkcs7_mime(struct as2_ctx *c, const struct layer *l, const struct mft_mime_value *ct,
                         struct layer *next)
{
    struct mft_span der, out;
    struct mft_spill *sp;

    if (layer_body(c, l, &der) < 0 || maybe_base64_der(c, &der) < 0)
        return -1;
    enum cms_kind kind = cms_sniff(der.p, der.len);
    if (kind == CMS_ENVELOPED || kind == CMS_AUTH_ENVELOPED) {
        struct mft_smime_decrypted d;
        c->res->is_encrypted = 1;
        if (!(sp = new_spill(c)) ||
            mft_smime_decrypt_to(der.p, der.len, c->st ? c->st->encryption : NULL,
                                 c->st ? c->st->n_encryption : 0,
                                 c->p ? c->p->allow_legacy_encryption : 0, sp, &d, c->err) < 0)
            return -1;
        if (!c->res->cipher[0])
            copy_str(c->res->cipher, sizeof(c->res->cipher), d.cipher);
    } else if (kind == CMS_COMPRESSED) {
        size_t max = c->req->max_inflated ? c->req->max_inflated : AS2_DEFAULT_MAX_INFLATED;
        c->res->is_compressed = 1;
        /* one budget for all compression layers: nesting must not multiply it */
        if (!(sp = new_spill(c)) ||
            mft_smime_uncompress_to(der.p, der.len, max > c->inflated ? max - c->inflated : 0, sp,
                                    c->err) < 0)
            return -1;
        c->inflated += sp->size;
        if (c->inflated > MFT_SMIME_INFLATE_FREE_BYTES &&
            c->inflated / MFT_SMIME_INFLATE_MAX_RATIO > c->req->body_len)
            return mft_err_set(c->err, MFT_E_DECOMPRESS_FAILED,
                               "the compression ratio exceeds %u:1 over the whole message "
                               "(nested compression: decompression bomb?)",
                               MFT_SMIME_INFLATE_MAX_RATIO);
    } else if (kind == CMS_SIGNED) {
        const char *st = mft_mime_param(ct, "smime-type");
        return mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE,
                           "opaque signed-data (application/pkcs7-mime; smime-type=%s) is not "
                           "supported: AS2 signs with multipart/signed",
                           st ? st : "signed-data");
    } else {
        const char *st = mft_mime_param(ct, "smime-type");
        return mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE,
                           "the %s body (smime-type=%s) is not a CMS EnvelopedData, "
                           "AuthEnvelopedData or CompressedData",
                           ct->token, st ? st : "none");
    }
    if (mft_spill_finish(sp, &out.p, &out.len, c->err) < 0)
        return -1;
    return next_entity(c, out.p, out.len, next);
}

/* Checks the signature part of multipart/signed and verifies it over parts[0]. */
static int verify_signed(struct as2_ctx *c, const struct mft_span *parts,
                         struct mft_smime_verified *v)
{
    struct layer sigpart = {0};
    struct mft_mime_value sct;
    struct mft_span sig;
    char sctype[512];

    if (mft_mime_parse(parts[1].p, parts[1].len, 0, &sigpart.e, c->err) < 0)
        return mft_err_detail(c->err, "in the signature part of multipart/signed");
    if (layer_header(c, &sigpart, "content-type", sctype, sizeof(sctype)) < 0 ||
        mft_mime_parse_value(sctype, &sct, c->err) < 0)
        return mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE,
                           "the signature part of multipart/signed has no valid Content-Type");
    if (strcmp(sct.token, "application/pkcs7-signature") != 0 &&
        strcmp(sct.token, "application/x-pkcs7-signature") != 0)
        return mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE,
                           "the signature part of multipart/signed is %s, not "
                           "application/pkcs7-signature",
                           sct.token);
    if (layer_body(c, &sigpart, &sig) < 0 || maybe_base64_der(c, &sig) < 0)
        return -1;
    int rc = mft_smime_verify_detached(parts[0].p, parts[0].len, sig.p, sig.len,
                                       c->p ? c->p->signing_cert : NULL, v, c->err);
    if (!c->res->sign_digest[0])
        copy_str(c->res->sign_digest, sizeof(c->res->sign_digest), v->digest);
    return rc;
}

static int do_signed(struct as2_ctx *c, const struct layer *l, const struct mft_mime_value *ct,
                     struct layer *next)
{
    const char *boundary = mft_mime_param(ct, "boundary");
    struct mft_span parts[2];
    struct mft_smime_verified v;
    size_t n = 0;

    if (!boundary)
        return mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE, "multipart/signed without a boundary");
    if (mft_mime_split(&l->e.body, boundary, parts, 2, &n, c->err) < 0)
        return mft_err_detail(c->err, "in multipart/signed");
    if (n != 2)
        return mft_err_set(c->err, MFT_E_MALFORMED_MESSAGE,
                           "multipart/signed has %zu part(s) instead of 2", n);
    c->res->is_signed = 1;
    memset(&v, 0, sizeof(v));
    int rc = verify_signed(c, parts, &v);
    /* The MIC whatever the outcome: a negative MDN still reports it. Over the
     * exact received bytes of the first part, with the digest the signature
     * uses (its OID) unless the partner asked for another one. */
    if (!c->mic_done && mic_set(c, v.digest[0] ? v.digest : NULL, mft_mime_param(ct, "micalg"),
                                parts[0].p, parts[0].len) < 0)
        return -1;
    if (rc < 0)
        return -1;

    memset(next, 0, sizeof(*next));
    if (mft_mime_parse(parts[0].p, parts[0].len, 0, &next->e, c->err) < 0)
        return mft_err_detail(c->err, "in the signed part of multipart/signed");
    return 0;
}

static int check_policy(struct as2_ctx *c)
{
    if (!c->p)
        return 0;
    if (c->p->require_signature && !c->res->is_signed)
        return mft_err_set(c->err, MFT_E_SIGNATURE_REQUIRED, NULL);
    if (c->p->require_encryption && !c->res->is_encrypted)
        return mft_err_set(c->err, MFT_E_ENCRYPTION_REQUIRED, NULL);
    return 0;
}

int mft_as2_receive(const struct mft_as2_request *req, const struct mft_station *st,
                    const struct mft_partner *p, struct mft_as2_result *res, struct mft_err *err)
{
    struct as2_ctx c = {.req = req, .st = st, .p = p, .res = res, .err = err};
    struct layer cur = {0}, next;
    int rc = -1, depth;

    memset(res, 0, sizeof(*res));
    if (!req || !req->content_type || !*req->content_type) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the request has no Content-Type");
        goto out;
    }
    if (!req->body && req->body_len) {
        mft_err_set(err, MFT_E_INTERNAL, "mft_as2_receive: no body");
        goto out;
    }
    if (read_options(&c) < 0)
        goto out;
    cur.outer = 1;
    cur.e.body.p = req->body ? req->body : (const unsigned char *)"";
    cur.e.body.len = req->body_len;
    cur.e.whole = cur.e.body;

    for (depth = 0;; depth++) {
        struct mft_mime_value ct;
        char ctype[1024];
        int have_ct = 0;

        if (depth > MFT_AS2_MAX_LAYERS) {
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the message has more than %d S/MIME layers",
                        MFT_AS2_MAX_LAYERS);
            goto out;
        }
        if (!cur.raw && layer_header(&c, &cur, "content-type", ctype, sizeof(ctype)) >= 0) {
            if (mft_mime_parse_value(ctype, &ct, err) < 0)
                goto out;
            have_ct = 1;
        } else if (cur.outer) {
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the Content-Type is too long");
            goto out;
        }
        if (have_ct && (strcmp(ct.token, "application/pkcs7-mime") == 0 ||
                        strcmp(ct.token, "application/x-pkcs7-mime") == 0)) {
            if (do_pkcs7_mime(&c, &cur, &ct, &next) < 0)
                goto out;
        } else if (have_ct && strcmp(ct.token, "multipart/signed") == 0) {
            if (do_signed(&c, &cur, &ct, &next) < 0)
                goto out;
        } else {
            if (!c.mic_done && mic_unsigned(&c, &cur) < 0)
                goto out;
            if (check_policy(&c) < 0)
                goto out;
            if (take_payloads(&c, &cur, have_ct ? &ct : NULL) < 0)
                goto out;
            break;
        }
        cur = next;
    }
    rc = 0;
out:
    if (rc < 0) { /* nothing unverified leaves this function */
        memset(res->payloads, 0, sizeof(res->payloads));
        res->n_payloads = 0;
    }
    return rc;
}

void mft_as2_result_free(struct mft_as2_result *res)
{
    if (!res)
        return;
    if (res->spills) {
        for (size_t i = 0; i < res->spills->n; i++)
            mft_spill_free(&res->spills->s[i]);
        free(res->spills);
    }
    memset(res, 0, sizeof(*res));
}

static const struct {
    enum mft_err_kind kind;
    const char *modifier;
} modifiers[] = {
    {MFT_E_DECRYPT_FAILED, "decryption-failed"},
    {MFT_E_SIGNATURE_INVALID, "authentication-failed"},
    {MFT_E_SIGNATURE_REQUIRED, "insufficient-message-security"},
    {MFT_E_ENCRYPTION_REQUIRED, "insufficient-message-security"},
    {MFT_E_ALGORITHM_REFUSED, "insufficient-message-security"},
    {MFT_E_UNKNOWN_PARTNER, "unknown-trading-partner"},
    {MFT_E_UNKNOWN_STATION, "unknown-trading-partner"},
    {MFT_E_DECOMPRESS_FAILED, "decompression-failed"},
};

const char *mft_as2_disposition_modifier(enum mft_err_kind kind)
{
    for (size_t i = 0; i < sizeof(modifiers) / sizeof(modifiers[0]); i++)
        if (modifiers[i].kind == kind)
            return modifiers[i].modifier;
    return "unexpected-processing-error";
}

const char *mft_as2_disposition_modifier_err(const struct mft_err *err)
{
    if (!err)
        return "unexpected-processing-error";
    if (err->kind == MFT_E_SIGNATURE_INVALID && strstr(err->detail, MFT_SMIME_DIGEST_MISMATCH))
        return "integrity-check-failed";
    return mft_as2_disposition_modifier(err->kind);
}

void mft_as2_id_header(const char *id, char *out, size_t outlen)
{
    if (strpbrk(id, " \t\""))
        snprintf(out, outlen, "\"%s\"", id);
    else
        snprintf(out, outlen, "%s", id);
}

void mft_as2_bare_message_id(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (n >= 2 && in[0] == '<' && in[n - 1] == '>') {
        in++;
        n -= 2;
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, in, n);
    out[n] = '\0';
}
