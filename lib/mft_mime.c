/*
 * mft_mime — zero-copy MIME reader for AS2 messages and MDNs.
 *
 * mft_mime_parse() cuts one entity into header and body spans that point into
 * the caller's buffer; mft_mime_split() cuts a multipart body at its delimiter
 * lines (RFC 2046 §5.1.1: the line break before a delimiter belongs to the
 * delimiter, so a part ends before it); mft_mime_parse_value() reads
 * structured header values into small fixed-size records; mft_mime_decode_to()
 * undoes a Content-Transfer-Encoding into a spill (memory, or a temporary file
 * for a large body), chunk by chunk; mft_mime_decode() into a malloc'd buffer.
 *
 * Every function is linear in its input and bounded by the MFT_MIME_MAX_*
 * limits of mft_mime.h: input beyond a limit is an error, never a silent cut.
 * No shared state: thread-safe. Nothing here rewrites or copies the received
 * bytes, so MICs and signatures computed over spans see the exact wire bytes.
 */
#include "mft_mime.h"

#include "mft_spill.h"

#include <stdint.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#define MIME_MAX_BOUNDARY 256 /* RFC 2046 says 70; some senders exceed it */
#define MIME_MAX_HEADER_LINE ((size_t)64 << 10)

static int is_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

int mft_span_ieq(const struct mft_span *s, const char *str)
{
    size_t n = strlen(str);
    if (s->len != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(s->p[i]) != lower((unsigned char)str[i]))
            return 0;
    return 1;
}

/* End of the line starting at pos: index of its LF, or len when there is none. */
static size_t line_end(const unsigned char *buf, size_t len, size_t pos)
{
    const unsigned char *lf = memchr(buf + pos, '\n', len - pos);
    return lf ? (size_t)(lf - buf) : len;
}

/* The same for a header line, looking no further than MIME_MAX_HEADER_LINE:
 * SIZE_MAX when the line is longer (then it is not a header, and a gigabyte
 * of content without line breaks is not scanned for one). */
static size_t header_line_end(const unsigned char *buf, size_t len, size_t pos)
{
    size_t n = len - pos > MIME_MAX_HEADER_LINE ? MIME_MAX_HEADER_LINE : len - pos;
    const unsigned char *lf = memchr(buf + pos, '\n', n);
    if (lf)
        return (size_t)(lf - buf);
    return n < len - pos ? SIZE_MAX : len;
}

/* Length of the line content [pos, eol) without a trailing CR. */
static size_t line_content_len(const unsigned char *buf, size_t pos, size_t eol)
{
    size_t n = eol - pos;
    if (n > 0 && buf[eol - 1] == '\r')
        n--;
    return n;
}

/* Returns the length of "name" when the line is "name:" ..., else 0. */
static size_t header_name_len(const unsigned char *line, size_t n)
{
    size_t i = 0;
    while (i < n && line[i] > 32 && line[i] < 127 && line[i] != ':')
        i++;
    if (i == 0 || i >= n || line[i] != ':')
        return 0;
    return i;
}

/* Raw content that merely looks like "name: value" lines (EDIFACT segments do)
 * is told from a MIME header block by its Content-Type field. */
static int has_content_type(const struct mft_mime_entity *e)
{
    for (size_t i = 0; i < e->n_headers; i++)
        if (mft_span_ieq(&e->headers[i].name, "content-type"))
            return 1;
    return 0;
}

/* Does buf start with a MIME header field (Content-..., MIME-Version)? */
static int starts_as_mime(const unsigned char *buf, size_t len)
{
    static const char *const prefixes[] = {"content-", "mime-version:"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t n = strlen(prefixes[i]), k = 0;
        while (k < n && k < len && lower(buf[k]) == (unsigned char)prefixes[i][k])
            k++;
        if (k == n)
            return 1;
    }
    return 0;
}

/*
 * Does content that failed as a header block still hold one a line or more
 * down (a Content-Type field before the first blank line)? That is a MIME
 * entity whose first bytes were damaged (e.g. a flipped CBC block), not raw
 * content: raw EDI, XML or flat files do not carry MIME fields at line starts.
 */
static int damaged_mime(const unsigned char *buf, size_t len)
{
    size_t pos = 0, line = 0;
    while (pos < len && pos < MIME_MAX_HEADER_LINE) {
        size_t eol = header_line_end(buf, len, pos);
        if (eol == SIZE_MAX || line_content_len(buf, pos, eol) == 0)
            return 0;
        if (line > 0 && eol - pos >= 13 &&
            strncasecmp((const char *)buf + pos, "content-type:", 13) == 0)
            return 1;
        pos = eol < len ? eol + 1 : len;
        line++;
    }
    return 0;
}

int mft_mime_parse(const unsigned char *buf, size_t len, int allow_headerless,
                   struct mft_mime_entity *out, struct mft_err *err)
{
    if (!out)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mime_parse: no output");
    memset(out, 0, sizeof(*out));
    if (!buf && len > 0)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mime_parse: no input");
    out->whole.p = buf;
    out->whole.len = len;

    size_t pos = 0;
    struct mft_mime_header *cur = NULL;
    /* Content that starts with a MIME field (Content-*, MIME-Version) is a MIME
     * entity: if its header block then breaks, that is an error, never raw
     * content (a damaged decrypted entity must not pass as an unsigned payload).
     * Only content whose first line is not such a field may be headerless. */
    int mime_start = starts_as_mime(buf, len);
    if (mime_start)
        allow_headerless = 0;
    while (pos < len) {
        size_t eol = header_line_end(buf, len, pos);
        if (eol == SIZE_MAX)
            goto not_header;
        size_t n = line_content_len(buf, pos, eol);
        size_t next = eol < len ? eol + 1 : len;
        const unsigned char *line = buf + pos;

        if (n == 0) { /* blank line (or a lone CR at the end): end of the header block */
            if (allow_headerless && pos > 0 && !has_content_type(out))
                goto headerless; /* name: value lines of raw content (EDIFACT) */
            out->body.p = buf + next;
            out->body.len = len - next;
            return 0;
        }
        if (is_blank(line[0]) && n > 0) { /* folded continuation */
            if (!cur)
                goto not_header;
            cur->value.len = (size_t)(line + n - cur->value.p);
            pos = next;
            continue;
        }
        size_t nl = header_name_len(line, n);
        if (nl == 0)
            goto not_header;
        if (out->n_headers >= MFT_MIME_MAX_HEADERS) {
            if (allow_headerless)
                goto headerless;
            return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                               "MIME entity has more than %d header fields", MFT_MIME_MAX_HEADERS);
        }
        cur = &out->headers[out->n_headers++];
        cur->name.p = line;
        cur->name.len = nl;
        size_t v = nl + 1;
        while (v < n && is_blank(line[v]))
            v++;
        cur->value.p = line + v;
        cur->value.len = n - v;
        pos = next;
    }
    /* Headers up to the end of the buffer, no blank line: empty body. */
    if (allow_headerless)
        goto headerless;
    out->body.p = buf + len;
    out->body.len = 0;
    return 0;

not_header:
    if (allow_headerless)
        goto headerless;
    if (pos == 0)
        return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                           "MIME entity does not start with a header field");
    memset(out, 0, sizeof(*out));
    mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                "MIME header block has a line that is not a header "
                "field");
    return mft_err_detail(err, "at byte %zu", pos);

headerless: /* raw content without MIME headers: all of it is the body */
    memset(out, 0, sizeof(*out));
    if (damaged_mime(buf, len)) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                    "the content is a MIME entity whose header block is damaged");
        return mft_err_detail(err, "a Content-Type field follows lines that are not header fields");
    }
    out->whole.p = buf;
    out->whole.len = len;
    out->body.p = buf;
    out->body.len = len;
    return 0;
}

int mft_mime_header(const struct mft_mime_entity *e, const char *name, char *out, size_t outlen)
{
    if (!e || !name || !out || outlen == 0)
        return -1;
    for (size_t i = 0; i < e->n_headers; i++) {
        const struct mft_mime_header *h = &e->headers[i];
        if (!mft_span_ieq(&h->name, name))
            continue;
        size_t o = 0;
        for (size_t k = 0; k < h->value.len; k++) {
            unsigned char c = h->value.p[k];
            if (c == '\r' || c == '\n')
                continue;
            if (c == '\0' || o + 1 >= outlen)
                return -1;
            if (o == 0 && is_blank(c))
                continue;
            out[o++] = (char)c;
        }
        while (o > 0 && is_blank((unsigned char)out[o - 1]))
            o--;
        out[o] = '\0';
        return (int)o;
    }
    return -1;
}

/* Copies [s, s+n) lower-cased into dst[cap]; -1 when it does not fit. */
static int copy_lower(char *dst, size_t cap, const char *s, size_t n)
{
    if (n + 1 > cap)
        return -1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)lower((unsigned char)s[i]);
    dst[n] = '\0';
    return 0;
}

int mft_mime_parse_value(const char *value, struct mft_mime_value *out, struct mft_err *err)
{
    if (!out)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mime_parse_value: no output");
    memset(out, 0, sizeof(*out));
    if (!value)
        return mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "header value is missing");

    const char *p = value;
    const char *end = value + strlen(value);
    while (p < end && is_space((unsigned char)*p))
        p++;
    while (end > p && is_space((unsigned char)end[-1]))
        end--;

    /* A quoted first word: either the whole value wrapped in quotes by a
     * broken sender ("multipart/signed; boundary=x") or a quoted token. */
    const char *tok_s, *tok_e;
    if (p < end && *p == '"') {
        const char *q = memchr(p + 1, '"', (size_t)(end - p - 1));
        const char *semi = memchr(p + 1, ';', (size_t)((q ? q : end) - p - 1));
        if (semi || !q) { /* wrapped as a whole: drop the outer quotes */
            p++;
            if (end > p && end[-1] == '"')
                end--;
        } else { /* quoted token alone */
            tok_s = p + 1;
            tok_e = q;
            p = q + 1;
            goto have_token;
        }
    }
    tok_s = p;
    while (p < end && *p != ';')
        p++;
    tok_e = p;
have_token:
    while (tok_s < tok_e && is_space((unsigned char)*tok_s))
        tok_s++;
    while (tok_e > tok_s && is_space((unsigned char)tok_e[-1]))
        tok_e--;
    if (copy_lower(out->token, sizeof(out->token), tok_s, (size_t)(tok_e - tok_s)) < 0)
        return mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "header value is too long (%zu bytes)",
                           (size_t)(tok_e - tok_s));
    while (p < end && *p != ';') /* garbage after a quoted token */
        p++;

    while (p < end) {
        p++; /* the ';' */
        while (p < end && is_space((unsigned char)*p))
            p++;
        if (p >= end)
            break;
        if (*p == ';')
            continue;
        const char *ns = p;
        while (p < end && *p != '=' && *p != ';')
            p++;
        const char *ne = p;
        while (ne > ns && is_space((unsigned char)ne[-1]))
            ne--;
        if (out->n_params >= MFT_MIME_MAX_PARAMS)
            return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                               "header value has more than %d parameters", MFT_MIME_MAX_PARAMS);
        struct mft_mime_param *prm = &out->params[out->n_params];
        if (ne == ns)
            return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                               "header value has a parameter without a name");
        if (copy_lower(prm->name, sizeof(prm->name), ns, (size_t)(ne - ns)) < 0)
            return mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "parameter name is too long");
        size_t vo = 0;
        if (p < end && *p == '=') {
            p++;
            while (p < end && is_space((unsigned char)*p))
                p++;
            if (p < end && *p == '"') {
                p++;
                int closed = 0;
                while (p < end) {
                    char c = *p++;
                    if (c == '"') {
                        closed = 1;
                        break;
                    }
                    if (c == '\\' && p < end)
                        c = *p++;
                    if (c == '\r' || c == '\n') /* folding inside a quoted string */
                        continue;
                    if (vo + 1 >= sizeof(prm->value))
                        return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                                           "value of parameter '%s' is too long", prm->name);
                    prm->value[vo++] = c;
                }
                if (!closed)
                    return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                                       "value of parameter '%s' has no closing quote", prm->name);
                while (p < end && *p != ';') /* ignore junk after the closing quote */
                    p++;
            } else {
                const char *vs = p;
                while (p < end && *p != ';')
                    p++;
                const char *ve = p;
                while (ve > vs && is_space((unsigned char)ve[-1]))
                    ve--;
                if ((size_t)(ve - vs) + 1 > sizeof(prm->value))
                    return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                                       "value of parameter '%s' is too long", prm->name);
                memcpy(prm->value, vs, (size_t)(ve - vs));
                vo = (size_t)(ve - vs);
            }
        }
        prm->value[vo] = '\0';
        out->n_params++;
    }
    return 0;
}

const char *mft_mime_param(const struct mft_mime_value *v, const char *name)
{
    if (!v || !name)
        return NULL;
    for (size_t i = 0; i < v->n_params; i++)
        if (strcasecmp(v->params[i].name, name) == 0)
            return v->params[i].value;
    return NULL;
}

/*
 * Is there a delimiter line "--boundary" at d (already known to start with
 * "--" + boundary)? Sets *is_close and *after (first byte after the line).
 */
static int delimiter_at(const unsigned char *buf, size_t len, size_t d, size_t blen, int *is_close,
                        size_t *after)
{
    size_t i = d + 2 + blen;
    *is_close = 0;
    if (i + 1 < len && buf[i] == '-' && buf[i + 1] == '-') {
        *is_close = 1;
        size_t eol = line_end(buf, len, i);
        *after = eol < len ? eol + 1 : len;
        return 1;
    }
    while (i < len && is_blank(buf[i])) /* transport padding */
        i++;
    if (i == len) {
        *after = len;
        return 1;
    }
    if (buf[i] == '\n') {
        *after = i + 1;
        return 1;
    }
    if (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n') {
        *after = i + 2;
        return 1;
    }
    return 0;
}

/*
 * Next delimiter line at or after `from` (at a line start); -1 when none.
 * Searches a window at a time and releases the pages it has passed (a part
 * may be gigabytes long; see mft_spill.h).
 */
static int find_delimiter(const unsigned char *buf, size_t len, size_t from, const char *dash,
                          size_t blen, size_t *d, int *is_close, size_t *after)
{
    size_t dlen = blen + 2;
    size_t pos = from, released = from;
    while (pos < len) {
        if (len - pos < dlen)
            return -1;
        size_t win = len - pos > MFT_RELEASE_STEP + dlen ? MFT_RELEASE_STEP + dlen : len - pos;
        const unsigned char *hit = memmem(buf + pos, win, dash, dlen);
        if (!hit) {
            if (win < MFT_RELEASE_STEP + dlen)
                return -1;
            pos += MFT_RELEASE_STEP + 1; /* a match may still start in the last dlen - 1 bytes */
            mft_release(buf + released, pos - released);
            released = pos;
            continue;
        }
        size_t h = (size_t)(hit - buf);
        if ((h == 0 || buf[h - 1] == '\n') && delimiter_at(buf, len, h, blen, is_close, after)) {
            *d = h;
            return 0;
        }
        pos = h + 1;
    }
    return -1;
}

int mft_mime_split(const struct mft_span *body, const char *boundary, struct mft_span *parts,
                   size_t max, size_t *n_parts, struct mft_err *err)
{
    char dash[MIME_MAX_BOUNDARY + 3];
    if (n_parts)
        *n_parts = 0;
    if (!body || !boundary || !n_parts || (!parts && max > 0))
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mime_split: bad arguments");
    size_t blen = strlen(boundary);
    if (blen == 0 || blen > MIME_MAX_BOUNDARY)
        return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                           "multipart boundary is empty or longer than %d bytes",
                           MIME_MAX_BOUNDARY);
    dash[0] = '-';
    dash[1] = '-';
    memcpy(dash + 2, boundary, blen + 1);

    const unsigned char *buf = body->p;
    size_t len = body->len;
    size_t d, after;
    int is_close;
    if (!buf || find_delimiter(buf, len, 0, dash, blen, &d, &is_close, &after) < 0) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "multipart body has no delimiter line");
        return mft_err_detail(err, "boundary \"%s\"", boundary);
    }
    size_t n = 0;
    while (!is_close) {
        size_t start = after;
        if (find_delimiter(buf, len, start, dash, blen, &d, &is_close, &after) < 0) {
            *n_parts = 0;
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                        "multipart body has no closing delimiter (truncated message?)");
            return mft_err_detail(err, "boundary \"%s\", %zu part(s) before the end", boundary,
                                  n + 1);
        }
        /* The line break before the delimiter belongs to the delimiter. */
        size_t end = d;
        if (end > start && buf[end - 1] == '\n') {
            end--;
            if (end > start && buf[end - 1] == '\r')
                end--;
        }
        if (n >= max) {
            *n_parts = 0;
            return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                               "multipart body has more than %zu parts", max);
        }
        parts[n].p = buf + start;
        parts[n].len = end - start;
        n++;
    }
    if (n == 0)
        return mft_err_set(err, MFT_E_MALFORMED_MESSAGE,
                           "multipart body has a closing delimiter but no part");
    *n_parts = n;
    return 0;
}

/* base64 alphabet value, or -1. */
static int b64_val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* base64 decoder state, kept across chunks of input */
struct b64 {
    uint32_t acc;
    int nbits, quad, padded;
    size_t seen; /* input bytes consumed so far (for error offsets) */
};

static int decode_base64(struct b64 *st, const unsigned char *in, size_t len, unsigned char *out,
                         size_t *out_len, struct mft_err *err)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = in[i];
        if (is_space(c))
            continue;
        if (c == '=') {
            st->padded = 1;
            continue;
        }
        int v = b64_val(c);
        if (v < 0 || st->padded) {
            mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "base64 body has an invalid character");
            return mft_err_detail(err, "byte 0x%02x at offset %zu", c, st->seen + i);
        }
        st->acc = (st->acc << 6) | (uint32_t)v;
        st->nbits += 6;
        st->quad = (st->quad + 1) & 3;
        if (st->nbits >= 8) {
            st->nbits -= 8;
            out[o++] = (unsigned char)(st->acc >> st->nbits);
            st->acc &= (1u << st->nbits) - 1;
        }
    }
    st->seen += len;
    *out_len = o;
    return 0;
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Quoted-printable (RFC 2045 §6.7): soft line breaks, =XX, trailing blanks dropped. */
static void decode_qp(const unsigned char *p, size_t n, unsigned char *out, size_t *out_len)
{
    size_t o = 0, keep = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = p[i];
        if (c == '=') {
            size_t j = i + 1;
            while (j < n && is_blank(p[j]))
                j++;
            if (j < n && p[j] == '\n') { /* soft line break */
                i = j;
                continue;
            }
            if (j + 1 < n && p[j] == '\r' && p[j + 1] == '\n') {
                i = j + 1;
                continue;
            }
            if (j == n) { /* "=" at the very end: soft break without line break */
                i = j;
                continue;
            }
            if (i + 2 < n && hex_val(p[i + 1]) >= 0 && hex_val(p[i + 2]) >= 0) {
                out[o++] = (unsigned char)(hex_val(p[i + 1]) * 16 + hex_val(p[i + 2]));
                keep = o;
                i += 2;
                continue;
            }
            out[o++] = c; /* not an escape: keep it literally (RFC 2045 note 1) */
            keep = o;
            continue;
        }
        if (c == '\n' || (c == '\r' && i + 1 < n && p[i + 1] == '\n')) {
            while (o > keep && is_blank(out[o - 1])) /* trailing blanks were padding */
                o--;
            if (c == '\r')
                out[o++] = p[i++];
            out[o++] = p[i];
            keep = o;
            continue;
        }
        out[o++] = c;
        if (!is_blank(c))
            keep = o;
    }
    while (o > keep && is_blank(out[o - 1]))
        o--;
    *out_len = o;
}

/* Input is decoded in chunks of this size (quoted-printable: up to a line end). */
#define DECODE_CHUNK ((size_t)64 << 10)
#define QP_MAX_LINE ((size_t)1 << 20)

enum cte { CTE_IDENTITY, CTE_BASE64, CTE_QP };

static int cte_of(const char *cte, enum cte *out, struct mft_err *err)
{
    char name[32];
    const char *s = cte ? cte : "";
    while (is_space((unsigned char)*s))
        s++;
    size_t sl = strlen(s);
    while (sl > 0 && is_space((unsigned char)s[sl - 1]))
        sl--;
    if (copy_lower(name, sizeof(name), s, sl) < 0) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "unknown Content-Transfer-Encoding");
        return mft_err_detail(err, "value of %zu bytes", sl);
    }
    if (name[0] == '\0' || strcmp(name, "7bit") == 0 || strcmp(name, "8bit") == 0 ||
        strcmp(name, "binary") == 0)
        *out = CTE_IDENTITY;
    else if (strcmp(name, "base64") == 0)
        *out = CTE_BASE64;
    else if (strcmp(name, "quoted-printable") == 0)
        *out = CTE_QP;
    else
        return mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "unknown Content-Transfer-Encoding \"%s\"",
                           name);
    return 0;
}

/* End of the next quoted-printable chunk from pos: just after a line end, so
 * each chunk decodes alone exactly as the whole would (QP is line-oriented). */
static size_t qp_chunk_end(const unsigned char *p, size_t n, size_t pos)
{
    if (n - pos <= DECODE_CHUNK)
        return n;
    size_t lim = n - pos > QP_MAX_LINE ? pos + QP_MAX_LINE : n;
    const unsigned char *nl = memchr(p + pos + DECODE_CHUNK, '\n', lim - pos - DECODE_CHUNK);
    return nl ? (size_t)(nl - p) + 1 : lim; /* a longer "line" is not QP anyway */
}

int mft_mime_decode_to(const char *cte, const struct mft_span *in, struct mft_spill *out,
                       struct mft_err *err)
{
    enum cte kind = CTE_IDENTITY;
    struct b64 st = {0};
    unsigned char *buf = NULL;
    size_t pos = 0, released = 0;
    int rc = -1;

    if (!out || !in || (!in->p && in->len > 0))
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mime_decode: bad arguments");
    if (cte_of(cte, &kind, err) < 0)
        return -1;
    if (kind == CTE_IDENTITY)
        return mft_spill_write(out, in->p, in->len, err);
    /* decoded output is never longer than its input chunk */
    if (!(buf = malloc(in->len < QP_MAX_LINE + DECODE_CHUNK ? in->len + 1
                                                            : QP_MAX_LINE + DECODE_CHUNK)))
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    while (pos < in->len) {
        size_t end = kind == CTE_QP ? qp_chunk_end(in->p, in->len, pos)
                                    : (in->len - pos > DECODE_CHUNK ? pos + DECODE_CHUNK : in->len);
        size_t n = 0;
        if (kind == CTE_BASE64) {
            if (decode_base64(&st, in->p + pos, end - pos, buf, &n, err) < 0)
                goto out;
        } else {
            decode_qp(in->p + pos, end - pos, buf, &n);
        }
        if (mft_spill_write(out, buf, n, err) < 0)
            goto out;
        pos = end;
        if (pos - released >= MFT_RELEASE_STEP) {
            mft_release(in->p + released, pos - released);
            released = pos;
        }
    }
    if (kind == CTE_BASE64 && st.quad == 1) {
        mft_err_set(err, MFT_E_MALFORMED_MESSAGE, "base64 body is truncated");
        goto out;
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

int mft_mime_decode(const char *cte, const struct mft_span *in, unsigned char **out,
                    size_t *out_len, struct mft_err *err)
{
    struct mft_spill sp;
    if (!out || !out_len)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_mime_decode: bad arguments");
    *out = NULL;
    *out_len = 0;
    mft_spill_init(&sp, NULL, 0);
    if (mft_mime_decode_to(cte, in, &sp, err) < 0) {
        mft_spill_free(&sp);
        return -1;
    }
    if (!(*out = mft_spill_take(&sp, out_len))) {
        mft_spill_free(&sp);
        return mft_err_set(err, MFT_E_NO_MEMORY, "cannot allocate a decoded body");
    }
    return 0;
}
