/*
 * mft_mdn — AS2 MDNs (RFC 4130 §7, RFC 3798): the receiver's side (read the
 * sender's Disposition-Notification-Options, build our multipart/report and
 * sign it through mft_smime) and the sender's side (parse the partner's MDN,
 * signed or not, and verify its signature over the exact received bytes).
 *
 * Called by ingress (build) and egress / async-MDN receipt (parse). Protocol
 * code only: no HTTP server, Redis or Kafka. Thread-safe: no shared state;
 * boundaries come from RAND_bytes. Keys are borrowed, never copied. Parsing
 * borrows the caller's body and copies only small, bounded fields into
 * struct mft_mdn; building returns malloc'd buffers the caller frees.
 */
#include "mft_mdn.h"
#include "mft_as2_send.h"
#include "mft_buf.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MDN_FIELD_MAX 998 /* RFC 5322 line limit for one field we write */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* Trims [*s, *e) of outer whitespace and of one pair of surrounding quotes. */
static void trim_unquote(const char **s, const char **e)
{
    while (*s < *e && is_space((unsigned char)**s))
        (*s)++;
    while (*e > *s && is_space((unsigned char)(*e)[-1]))
        (*e)--;
    if (*e - *s >= 2 && **s == '"' && (*e)[-1] == '"') {
        (*s)++;
        (*e)--;
        while (*s < *e && is_space((unsigned char)**s))
            (*s)++;
        while (*e > *s && is_space((unsigned char)(*e)[-1]))
            (*e)--;
    }
}

static int range_ieq(const char *s, const char *e, const char *lit)
{
    size_t n = strlen(lit);
    return (size_t)(e - s) == n && strncasecmp(s, lit, n) == 0;
}

/* Next separator `sep` outside double quotes in [p, end), or end. */
static const char *next_sep(const char *p, const char *end, char sep)
{
    int q = 0;
    for (; p < end; p++) {
        if (*p == '"')
            q = !q;
        else if (*p == '\\' && q && p + 1 < end)
            p++;
        else if (*p == sep && !q)
            return p;
    }
    return end;
}

/* ------------------------------------------------------------------ options */

int mft_mdn_parse_options(const char *dno, struct mft_mdn_options *out, struct mft_err *err)
{
    if (!out)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mdn_parse_options: no output");
    memset(out, 0, sizeof(*out));
    if (!dno)
        return 0;
    size_t len = strlen(dno);
    if (len > MFT_MDN_MAX_OPTIONS_LEN)
        return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                           "Disposition-Notification-Options is longer than %d bytes",
                           MFT_MDN_MAX_OPTIONS_LEN);
    const char *p = dno, *end = dno + len;
    while (p < end) {
        const char *seg_end = next_sep(p, end, ';');
        const char *s = p, *e = seg_end;
        p = seg_end < end ? seg_end + 1 : end;
        while (s < e && is_space((unsigned char)*s))
            s++;
        while (e > s && is_space((unsigned char)e[-1]))
            e--;
        if (s == e)
            continue;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (!eq) {
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                        "Disposition-Notification-Options has a parameter without '='");
            return mft_err_detail(err, "parameter \"%.*s\"", (int)(e - s > 64 ? 64 : e - s), s);
        }
        const char *ns = s, *ne = eq;
        trim_unquote(&ns, &ne);
        int is_proto = range_ieq(ns, ne, "signed-receipt-protocol");
        int is_micalg = range_ieq(ns, ne, "signed-receipt-micalg");
        if (!is_proto && !is_micalg)
            continue; /* unknown attribute: ignored */

        int first = 1, required = 0;
        const char *v = eq + 1;
        while (v < e) {
            const char *v_end = next_sep(v, e, ',');
            const char *vs = v, *ve = v_end;
            v = v_end < e ? v_end + 1 : e;
            trim_unquote(&vs, &ve);
            if (vs == ve)
                continue;
            if (first) {
                first = 0;
                if (range_ieq(vs, ve, "required")) {
                    required = 1;
                    continue;
                }
                if (range_ieq(vs, ve, "optional"))
                    continue;
                /* no importance given: read as optional, this is a value */
            }
            if (is_proto) {
                if (range_ieq(vs, ve, "pkcs7-signature")) {
                    out->signed_requested = 1;
                    out->signed_required = required;
                }
                continue;
            }
            if (range_ieq(vs, ve, "pkcs7-signature")) /* a protocol, never a digest */
                continue;
            if ((size_t)(ve - vs) >= sizeof(out->micalgs[0]))
                return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                                   "signed-receipt-micalg has a value longer than %zu bytes",
                                   sizeof(out->micalgs[0]) - 1);
            if (out->n_micalgs < MFT_MDN_MAX_MICALGS) {
                memcpy(out->micalgs[out->n_micalgs], vs, (size_t)(ve - vs));
                out->micalgs[out->n_micalgs][ve - vs] = '\0';
                out->n_micalgs++;
            }
        }
        if (is_micalg)
            out->micalg_required = required;
    }
    return 0;
}

/* ------------------------------------------------------------------ build */

/* Adds "Name: value\r\n". */
static void buf_field(struct mft_buf *b, const char *name, const char *prefix, const char *value)
{
    mft_buf_str(b, name);
    mft_buf_str(b, ": ");
    if (prefix)
        mft_buf_str(b, prefix);
    mft_buf_str(b, value);
    mft_buf_str(b, "\r\n");
}

/* An AS2 name after "rfc822; ", quoted when it holds a space (RFC 4130 6.2:
 * AS2 names with spaces travel as quoted strings). */
static void buf_recipient(struct mft_buf *b, const char *name, const char *value)
{
    int quote = strpbrk(value, " \t") != NULL;
    mft_buf_str(b, name);
    mft_buf_str(b, ": rfc822; ");
    mft_buf_str(b, quote ? "\"" : "");
    mft_buf_str(b, value);
    mft_buf_str(b, quote ? "\"\r\n" : "\r\n");
}

static int check_field(const char *name, const char *v, int required, struct mft_err *err)
{
    if (!v || !*v) {
        if (required)
            return mft_err_set(err, MFT_E_INTERNAL, "MDN field %s is missing", name);
        return 0;
    }
    size_t n = strlen(v);
    if (n > MDN_FIELD_MAX)
        return mft_err_set(err, MFT_E_INTERNAL, "MDN field %s is longer than %d bytes", name,
                           MDN_FIELD_MAX);
    if (strpbrk(v, "\r\n"))
        return mft_err_set(err, MFT_E_INTERNAL, "MDN field %s contains a line break", name);
    return 0;
}

/* Appends text with every line end written as CRLF, ending with CRLF. */
static void buf_text_crlf(struct mft_buf *b, const char *text)
{
    const char *p = text;
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\r' || text[i] == '\n') {
            mft_buf_add(b, p, (size_t)(text + i - p));
            mft_buf_str(b, "\r\n");
            if (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n')
                i++;
            p = text + i + 1;
        }
    }
    mft_buf_add(b, p, (size_t)(text + n - p));
    if (n == 0 || (text[n - 1] != '\n' && text[n - 1] != '\r'))
        mft_buf_str(b, "\r\n");
}

/* The multipart/report body (from its first delimiter to the closing one + CRLF). */
static void build_report_body(struct mft_buf *b, const struct mft_mdn_info *info, const char *bnd)
{
    const char *text = info->text;
    char deftext[1200];
    if (!text || !*text) {
        snprintf(deftext, sizeof(deftext),
                 "This is the disposition notification for message %s: %s.",
                 info->original_message_id ? info->original_message_id : "(no Message-ID)",
                 info->disposition);
        text = deftext;
    }
    int eight_bit = 0;
    for (const unsigned char *t = (const unsigned char *)text; *t; t++)
        if (*t >= 0x80)
            eight_bit = 1;

    mft_buf_str(b, "--");
    mft_buf_str(b, bnd);
    mft_buf_str(b, "\r\n");
    mft_buf_str(b, eight_bit ? "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Transfer-Encoding: 8bit\r\n\r\n"
                             : "Content-Type: text/plain; charset=us-ascii\r\n"
                               "Content-Transfer-Encoding: 7bit\r\n\r\n");
    buf_text_crlf(b, text);
    mft_buf_str(b, "\r\n--");
    mft_buf_str(b, bnd);
    mft_buf_str(b, "\r\nContent-Type: message/disposition-notification\r\n"
                   "Content-Transfer-Encoding: 7bit\r\n\r\n");
    buf_field(b, "Reporting-UA", NULL, info->reporting_ua);
    if (info->original_recipient && *info->original_recipient)
        buf_recipient(b, "Original-Recipient", info->original_recipient);
    buf_recipient(b, "Final-Recipient", info->final_recipient);
    if (info->original_message_id && *info->original_message_id)
        buf_field(b, "Original-Message-ID", NULL, info->original_message_id);
    mft_buf_str(b, "Disposition: ");
    mft_buf_str(b, info->disposition_mode && *info->disposition_mode
                       ? info->disposition_mode
                       : "automatic-action/MDN-sent-automatically");
    mft_buf_str(b, "; ");
    mft_buf_str(b, info->disposition);
    mft_buf_str(b, "\r\n");
    if (info->mic_b64 && *info->mic_b64) {
        mft_buf_str(b, "Received-Content-MIC: ");
        mft_buf_str(b, info->mic_b64);
        mft_buf_str(b, ", ");
        mft_buf_str(b, info->mic_alg);
        mft_buf_str(b, "\r\n");
    }
    mft_buf_str(b, "\r\n--");
    mft_buf_str(b, bnd);
    mft_buf_str(b, "--\r\n");
}

int mft_mdn_build(const struct mft_mdn_info *info, const struct mft_keypair *signer,
                  const char *sign_md, char **content_type, unsigned char **body, size_t *body_len,
                  struct mft_err *err)
{
    struct mft_buf report = {0}, outer = {0};
    char *ct = NULL;
    char rb[64];
    int rc = -1;

    if (!content_type || !body || !body_len || !info)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mdn_build: bad arguments");
    *content_type = NULL;
    *body = NULL;
    *body_len = 0;
    if (check_field("Reporting-UA", info->reporting_ua, 1, err) < 0 ||
        check_field("Original-Recipient", info->original_recipient, 0, err) < 0 ||
        check_field("Final-Recipient", info->final_recipient, 1, err) < 0 ||
        check_field("Original-Message-ID", info->original_message_id, 0, err) < 0 ||
        check_field("Disposition mode", info->disposition_mode, 0, err) < 0 ||
        check_field("Disposition", info->disposition, 1, err) < 0 ||
        check_field("Received-Content-MIC", info->mic_b64, 0, err) < 0 ||
        check_field("MIC algorithm", info->mic_alg, info->mic_b64 && *info->mic_b64, err) < 0)
        goto out;
    if (info->text && strlen(info->text) > 65536) {
        mft_err_set(err, MFT_E_INTERNAL, "MDN text is longer than 64 KiB");
        goto out;
    }
    if (mft_as2_boundary(rb, sizeof(rb), err) < 0)
        goto out;

    char report_ct[160];
    snprintf(report_ct, sizeof(report_ct),
             "multipart/report; report-type=disposition-notification; boundary=\"%s\"", rb);

    if (!signer) {
        build_report_body(&report, info, rb);
        if (report.oom)
            goto oom;
        ct = strdup(report_ct);
        if (!ct)
            goto oom;
        *content_type = ct;
        *body = report.p;
        *body_len = report.len;
        report.p = NULL;
        ct = NULL;
        rc = 0;
        goto out;
    }

    const char *ossl = NULL, *rfc = NULL;
    if (mft_smime_digest_name(sign_md ? sign_md : "sha-256", &ossl, &rfc) < 0) {
        mft_err_set(err, MFT_E_ALGORITHM_REFUSED, "unknown digest \"%s\" for signing the MDN",
                    sign_md);
        goto out;
    }
    /* The signed entity: the report's MIME headers + its body. */
    mft_buf_str(&report, "Content-Type: ");
    mft_buf_str(&report, report_ct);
    mft_buf_str(&report, "\r\n\r\n");
    build_report_body(&report, info, rb);
    if (report.oom)
        goto oom;
    if (mft_as2_sign_entity(report.p, report.len, signer, ossl, 0, &ct, &outer, err) < 0)
        goto out;
    *content_type = ct;
    *body = outer.p;
    *body_len = outer.len;
    outer.p = NULL;
    ct = NULL;
    rc = 0;
    goto out;
oom:
    mft_err_set(err, MFT_E_NO_MEMORY, "out of memory building the MDN");
out:
    free(report.p);
    free(outer.p);
    free(ct);
    return rc;
}

/* ------------------------------------------------------------------ parse */

/* Unfolded value of field `name`: its length, -1 when absent, -2 when too long. */
static int field(const struct mft_mime_entity *e, const char *name, char *dst, size_t cap)
{
    int present = 0;
    for (size_t i = 0; i < e->n_headers && !present; i++)
        present = mft_span_ieq(&e->headers[i].name, name);
    if (!present) {
        dst[0] = '\0';
        return -1;
    }
    int n = mft_mime_header(e, name, dst, cap);
    if (n < 0) {
        dst[0] = '\0';
        return -2;
    }
    return n;
}

/* Copies [s, e) into dst[cap]; -1 (dst empty) when it does not fit. */
static int copy_range(char *dst, size_t cap, const char *s, const char *e, int lowercase)
{
    size_t n = (size_t)(e - s);
    if (n + 1 > cap) {
        dst[0] = '\0';
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        dst[i] = lowercase ? (char)lower((unsigned char)s[i]) : s[i];
    dst[n] = '\0';
    return 0;
}

/* "rfc822; mecas2" -> type "rfc822", address "mecas2"; no ';' -> address only. */
static int split_recipient(const char *v, char *type, size_t tcap, char *addr, size_t acap)
{
    const char *end = v + strlen(v);
    const char *semi = strchr(v, ';');
    const char *as = v, *ae = end;
    type[0] = '\0';
    if (semi) {
        const char *ts = v, *te = semi;
        trim_unquote(&ts, &te);
        if (copy_range(type, tcap, ts, te, 0) < 0)
            return -1;
        as = semi + 1;
    }
    trim_unquote(&as, &ae);
    return copy_range(addr, acap, as, ae, 0);
}

/* "mode; type/kind: text" into the lowercase fields of m; -1 when one is too long. */
static int split_disposition(struct mft_mdn *m)
{
    const char *v = m->disposition_raw, *end = v + strlen(v);
    const char *semi = strchr(v, ';');
    const char *ts = v;
    if (semi) {
        const char *ms = v, *me = semi;
        trim_unquote(&ms, &me);
        if (copy_range(m->disposition_mode, sizeof(m->disposition_mode), ms, me, 1) < 0)
            return -1;
        ts = semi + 1;
    }
    const char *slash = memchr(ts, '/', (size_t)(end - ts));
    const char *te = slash ? slash : end;
    const char *s = ts;
    trim_unquote(&s, &te);
    if (copy_range(m->disposition_type, sizeof(m->disposition_type), s, te, 1) < 0)
        return -1;
    if (!slash)
        return 0;
    const char *mod = slash + 1, *mod_end = end;
    const char *colon = memchr(mod, ':', (size_t)(end - mod));
    const char *ks = mod, *ke = colon ? colon : end;
    trim_unquote(&ks, &ke);
    if (copy_range(m->disposition_modifier_kind, sizeof(m->disposition_modifier_kind), ks, ke, 1) <
        0)
        return -1;
    if (colon) {
        const char *xs = colon + 1;
        trim_unquote(&xs, &mod_end);
        if (copy_range(m->disposition_modifier_text, sizeof(m->disposition_modifier_text), xs,
                       mod_end, 1) < 0)
            return -1;
    }
    if (m->disposition_modifier_text[0])
        snprintf(m->disposition_modifier, sizeof(m->disposition_modifier), "%s: %s",
                 m->disposition_modifier_kind, m->disposition_modifier_text);
    else
        snprintf(m->disposition_modifier, sizeof(m->disposition_modifier), "%s",
                 m->disposition_modifier_kind);
    return 0;
}

/* Reads the message/disposition-notification fields (decoded bytes). */
static int parse_fields(const unsigned char *p, size_t len, struct mft_mdn *m, struct mft_err *err)
{
    struct mft_mime_entity *e = NULL;
    char tmp[1024];
    int rc = -1;

    while (len > 0 && (*p == '\r' || *p == '\n')) { /* some senders start with a blank line */
        p++;
        len--;
    }
    e = malloc(sizeof(*e));
    if (!e) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (mft_mime_parse(p, len, 0, e, err) < 0) {
        mft_err_detail(err, "in the message/disposition-notification part");
        goto out;
    }
    static const struct {
        const char *name;
        size_t off, cap;
    } plain[] = {
        {"Reporting-UA", offsetof(struct mft_mdn, reporting_ua), sizeof(m->reporting_ua)},
        {"Original-Message-ID", offsetof(struct mft_mdn, original_message_id),
         sizeof(m->original_message_id)},
        {"Disposition", offsetof(struct mft_mdn, disposition_raw), sizeof(m->disposition_raw)},
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        if (field(e, plain[i].name, (char *)m + plain[i].off, plain[i].cap) == -2) {
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "MDN field %s is too long", plain[i].name);
            goto out;
        }
    }
    if (!m->disposition_raw[0]) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the MDN has no Disposition field");
        goto out;
    }
    if (split_disposition(m) < 0) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "a part of the MDN's Disposition is too long");
        mft_err_detail(err, "Disposition: %.200s", m->disposition_raw);
        goto out;
    }
    if (!m->disposition_type[0]) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the MDN's Disposition field has no type");
        mft_err_detail(err, "Disposition: %.200s", m->disposition_raw);
        goto out;
    }
    char dummy[32];
    int n = field(e, "Final-Recipient", tmp, sizeof(tmp));
    if (n == -2)
        goto too_long;
    if (n >= 0 && split_recipient(tmp, dummy, sizeof(dummy), m->final_recipient,
                                  sizeof(m->final_recipient)) < 0)
        goto too_long;
    n = field(e, "Original-Recipient", tmp, sizeof(tmp));
    if (n == -2)
        goto too_long;
    if (n >= 0) {
        if (split_recipient(tmp, m->original_recipient_type, sizeof(m->original_recipient_type),
                            m->original_recipient, sizeof(m->original_recipient)) < 0)
            goto too_long;
    } else
        snprintf(m->original_recipient, sizeof(m->original_recipient), "%s", m->final_recipient);

    n = field(e, "Received-Content-MIC", tmp, sizeof(tmp));
    if (n == -2)
        goto too_long;
    if (n >= 0) {
        const char *s = tmp, *end = tmp + n;
        const char *comma = strchr(tmp, ',');
        const char *ve = comma ? comma : end;
        trim_unquote(&s, &ve);
        if ((size_t)(ve - s) >= sizeof(m->mic_b64)) {
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "Received-Content-MIC is too long");
            goto out;
        }
        copy_range(m->mic_b64, sizeof(m->mic_b64), s, ve, 0);
        if (comma) {
            const char *as = comma + 1;
            trim_unquote(&as, &end);
            if ((size_t)(end - as) >= sizeof(m->mic_alg)) {
                mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                            "Received-Content-MIC algorithm is too long");
                goto out;
            }
            copy_range(m->mic_alg, sizeof(m->mic_alg), as, end, 0);
        }
    }
    rc = 0;
    goto out;
too_long:
    mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "an MDN recipient or MIC field is too long");
out:
    free(e);
    return rc;
}

/* Content-Type of a part (default text/plain) and its CTE. */
static int part_types(const struct mft_mime_entity *e, struct mft_mime_value *v, char *cte,
                      size_t cte_cap, struct mft_err *err)
{
    char ct[1024];
    int n = mft_mime_header(e, "Content-Type", ct, sizeof(ct));
    if (mft_mime_parse_value(n >= 0 ? ct : "text/plain", v, err) < 0)
        return -1;
    if (mft_mime_header(e, "Content-Transfer-Encoding", cte, cte_cap) < 0)
        cte[0] = '\0';
    return 0;
}

/* The multipart/report entity: content type v, body span. */
static int parse_report(const struct mft_mime_value *v, const struct mft_span *body,
                        struct mft_mdn *m, struct mft_err *err)
{
    struct mft_span parts[MFT_MIME_MAX_PARTS];
    struct mft_mime_entity *e = NULL;
    struct mft_mime_value *pv = NULL;
    unsigned char *dec = NULL;
    size_t n_parts = 0, dec_len = 0;
    int rc = -1, have_dn = 0, have_text = 0;
    char cte[64];

    const char *rt = mft_mime_param(v, "report-type");
    if (rt && strcasecmp(rt, "disposition-notification") != 0) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the response is a report but not a disposition notification");
        mft_err_detail(err, "report-type=%s", rt);
        goto out;
    }
    const char *bnd = mft_mime_param(v, "boundary");
    if (!bnd || !*bnd) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the MDN's multipart/report has no boundary");
        goto out;
    }
    if (mft_mime_split(body, bnd, parts, MFT_MIME_MAX_PARTS, &n_parts, err) < 0) {
        mft_err_detail(err, "in the MDN's multipart/report");
        goto out;
    }
    e = malloc(sizeof(*e));
    pv = malloc(sizeof(*pv));
    if (!e || !pv) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    for (size_t i = 0; i < n_parts; i++) {
        if (mft_mime_parse(parts[i].p, parts[i].len, 0, e, err) < 0) {
            mft_err_detail(err, "in part %zu of the MDN's multipart/report", i + 1);
            goto out;
        }
        if (part_types(e, pv, cte, sizeof(cte), err) < 0)
            goto out;
        int is_dn = strcmp(pv->token, "message/disposition-notification") == 0;
        int is_text = strncmp(pv->token, "text/", 5) == 0;
        if ((is_dn && have_dn) || (is_text && have_text) || (!is_dn && !is_text))
            continue;
        free(dec);
        dec = NULL;
        if (mft_mime_decode(cte, &e->body, &dec, &dec_len, err) < 0) {
            mft_err_detail(err, "in part %zu of the MDN's multipart/report", i + 1);
            goto out;
        }
        if (is_dn) {
            if (parse_fields(dec, dec_len, m, err) < 0)
                goto out;
            have_dn = 1;
        } else {
            size_t n = dec_len;
            if (n >= sizeof(m->text)) {
                n = sizeof(m->text) - 1;
                m->text_truncated = 1;
            }
            memcpy(m->text, dec, n);
            m->text[n] = '\0';
            have_text = 1;
        }
    }
    if (!have_dn) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the multipart/report has no message/disposition-notification part");
        goto out;
    }
    rc = 0;
out:
    free(dec);
    free(e);
    free(pv);
    return rc;
}

/* Detail line that quotes the start of a body that is not an MDN. */
static void detail_body_start(struct mft_err *err, const unsigned char *body, size_t len)
{
    char q[81];
    size_t n = len < 80 ? len : 80;
    for (size_t i = 0; i < n; i++)
        q[i] = (body[i] >= 32 && body[i] < 127) ? (char)body[i] : '.';
    q[n] = '\0';
    mft_err_detail(err, "body starts with \"%s\" (%zu bytes)", q, len);
}

int mft_mdn_parse(const char *content_type, const unsigned char *body, size_t len,
                  struct mft_mdn *out, struct mft_err *err)
{
    struct mft_mime_entity *e = NULL;
    struct mft_mime_value *v = NULL, *iv = NULL;
    struct mft_span parts[MFT_MIME_MAX_PARTS];
    size_t n_parts = 0;
    char ct[1024];
    int rc = -1;

    if (!out || (!body && len > 0))
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mdn_parse: bad arguments");
    memset(out, 0, sizeof(*out));
    e = malloc(sizeof(*e));
    v = malloc(sizeof(*v));
    iv = malloc(sizeof(*iv));
    if (!e || !v || !iv) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    struct mft_span span = {body, len};
    if (!content_type) {
        if (mft_mime_parse(body, len, 0, e, err) < 0) {
            mft_err_detail(err, "the MDN is not a MIME entity");
            detail_body_start(err, body, len);
            goto out;
        }
        if (mft_mime_header(e, "Content-Type", ct, sizeof(ct)) < 0) {
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the MDN has no Content-Type");
            goto out;
        }
        content_type = ct;
        span = e->body;
    }
    if (mft_mime_parse_value(content_type, v, err) < 0) {
        mft_err_detail(err, "in the MDN's Content-Type");
        goto out;
    }
    if (strcmp(v->token, "multipart/report") == 0) {
        if (parse_report(v, &span, out, err) < 0)
            goto out;
        rc = 0;
        goto out;
    }
    if (strcmp(v->token, "multipart/signed") != 0) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the response is not an MDN: Content-Type is \"%.100s\", expected "
                    "multipart/report or multipart/signed",
                    v->token);
        detail_body_start(err, span.p, span.len);
        goto out;
    }
    const char *bnd = mft_mime_param(v, "boundary");
    if (!bnd || !*bnd) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "the MDN's multipart/signed has no boundary");
        goto out;
    }
    const char *micalg = mft_mime_param(v, "micalg");
    snprintf(out->micalg, sizeof(out->micalg), "%s", micalg ? micalg : "");
    if (mft_mime_split(&span, bnd, parts, MFT_MIME_MAX_PARTS, &n_parts, err) < 0) {
        mft_err_detail(err, "in the MDN's multipart/signed");
        goto out;
    }
    if (n_parts != 2) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the MDN's multipart/signed has %zu parts, expected 2", n_parts);
        goto out;
    }
    out->is_signed = 1;
    out->signed_entity = parts[0];
    if (mft_mime_parse(parts[1].p, parts[1].len, 0, e, err) < 0) {
        mft_err_detail(err, "in the signature part of the MDN");
        goto out;
    }
    if (part_types(e, iv, out->signature_cte, sizeof(out->signature_cte), err) < 0)
        goto out;
    if (strcmp(iv->token, "application/pkcs7-signature") != 0 &&
        strcmp(iv->token, "application/x-pkcs7-signature") != 0) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the MDN's second signed part is \"%.100s\", not a PKCS#7 signature",
                    iv->token);
        goto out;
    }
    out->signature = e->body;
    if (mft_mime_parse(parts[0].p, parts[0].len, 0, e, err) < 0) {
        mft_err_detail(err, "in the signed part of the MDN");
        goto out;
    }
    char cte[64];
    if (part_types(e, iv, cte, sizeof(cte), err) < 0)
        goto out;
    if (strcmp(iv->token, "multipart/report") != 0) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the signed MDN holds \"%.100s\", not a multipart/report", iv->token);
        goto out;
    }
    if (parse_report(iv, &e->body, out, err) < 0)
        goto out;
    rc = 0;
out:
    free(e);
    free(v);
    free(iv);
    return rc;
}

enum mft_mdn_status mft_mdn_classify(const struct mft_mdn *m)
{
    if (!m || strcmp(m->disposition_type, "processed") != 0)
        return MFT_MDN_NEGATIVE;
    const char *k = m->disposition_modifier_kind;
    if (!k[0])
        return MFT_MDN_POSITIVE;
    if (strcmp(k, "error") == 0 || strcmp(k, "failure") == 0 || strcmp(k, "failed") == 0)
        return MFT_MDN_NEGATIVE;
    return MFT_MDN_POSITIVE_WARNING;
}

int mft_mdn_verify(const struct mft_mdn *m, X509 *signer, struct mft_smime_verified *out,
                   struct mft_err *err)
{
    unsigned char *der = NULL;
    size_t der_len = 0;
    int rc = -1;

    if (!m || !signer)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mdn_verify: bad arguments");
    if (!m->is_signed)
        return mft_err_set(err, MFT_E_SIGNATURE_REQUIRED, "the MDN is not signed");
    if (mft_mime_decode(m->signature_cte, &m->signature, &der, &der_len, err) < 0) {
        mft_err_detail(err, "in the MDN's signature part");
        goto out;
    }
    struct mft_smime_verified tmp;
    if (mft_smime_verify_detached(m->signed_entity.p, m->signed_entity.len, der, der_len, signer,
                                  out ? out : &tmp, err) < 0)
        goto out;
    rc = 0;
out:
    free(der);
    return rc;
}

int mft_mdn_same_digest(const char *a, const char *b)
{
    const char *oa = NULL, *ob = NULL, *rfc = NULL;
    if (!a || !b)
        return 0;
    if (mft_smime_digest_name(a, &oa, &rfc) == 0 && mft_smime_digest_name(b, &ob, &rfc) == 0)
        return strcmp(oa, ob) == 0;
    return strcasecmp(a, b) == 0;
}

/*
 * Two base64 MICs compared by value: decoded, so that line breaks, blanks or
 * missing padding a partner writes do not matter. Returns 1 when equal.
 */
static int same_mic(const char *a, const char *b)
{
    struct mft_span sa = {(const unsigned char *)a, strlen(a)};
    struct mft_span sb = {(const unsigned char *)b, strlen(b)};
    unsigned char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    struct mft_err ignored;
    int same;
    if (mft_mime_decode("base64", &sa, &da, &la, &ignored) < 0 ||
        mft_mime_decode("base64", &sb, &db, &lb, &ignored) < 0)
        same = strcmp(a, b) == 0; /* not base64: only the same text matches */
    else
        same = la > 0 && la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

int mft_mdn_evaluate(const struct mft_mdn *m, X509 *signer, int require_signed,
                     const char *expected_mic, const char *expected_alg, int *verified_out,
                     struct mft_err *err)
{
    if (verified_out)
        *verified_out = 0;
    if (!m)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mdn_evaluate: no MDN");
    if (m->is_signed) {
        struct mft_err e;
        mft_err_clear(&e);
        if (!signer) {
            mft_err_set(err, MFT_E_MDN_SIGNATURE_INVALID,
                        "the MDN is signed but no signing certificate is registered for the "
                        "partner");
            return -1;
        }
        if (mft_mdn_verify(m, signer, NULL, &e) < 0) {
            mft_err_set(err, MFT_E_MDN_SIGNATURE_INVALID, "the MDN's signature does not verify");
            mft_err_detail(err, "%s; %s", e.message, e.detail);
            return -1;
        }
        if (verified_out)
            *verified_out = 1;
    } else if (require_signed) {
        return mft_err_set(err, MFT_E_MDN_SIGNATURE_INVALID,
                           "a signed MDN was requested but the partner's MDN is unsigned");
    }
    if (mft_mdn_classify(m) == MFT_MDN_NEGATIVE) {
        mft_err_set(err, MFT_E_MDN_NEGATIVE, "the partner answered \"%s%s%s\"", m->disposition_type,
                    m->disposition_modifier[0] ? "/" : "", m->disposition_modifier);
        mft_err_detail(err, "Disposition: %s", m->disposition_raw);
        if (m->text[0])
            mft_err_detail(err, "text: %.400s", m->text);
        return -1;
    }
    if (expected_mic && *expected_mic) {
        if (!m->mic_b64[0])
            return mft_err_set(err, MFT_E_MIC_MISMATCH,
                               "the MDN carries no Received-Content-MIC (expected %s, %s)",
                               expected_mic, expected_alg ? expected_alg : "?");
        if (!same_mic(m->mic_b64, expected_mic) ||
            (m->mic_alg[0] && expected_alg && !mft_mdn_same_digest(m->mic_alg, expected_alg))) {
            mft_err_set(err, MFT_E_MIC_MISMATCH, NULL);
            mft_err_detail(err, "expected %s, %s; the MDN says %s, %s", expected_mic,
                           expected_alg ? expected_alg : "?", m->mic_b64,
                           m->mic_alg[0] ? m->mic_alg : "(no algorithm)");
            return -1;
        }
    }
    return 0;
}
