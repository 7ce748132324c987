/*
 * mftctl — the command-line tool: declares stations and partners from a JSON
 * apply-file, and shows what the gateway holds (stations, partners, messages).
 *
 * One table of subcommands {name, handler, usage, help}; each handler parses
 * its own options and returns an exit code (0 ok, 1 error, 2 usage). `apply`
 * validates the whole file first — every certificate and key is loaded, keys
 * are checked against their certificates, ids and AS2 ids are checked, and
 * every problem is reported with its JSON path — and writes nothing unless
 * everything is valid. A partner's send settings are stored normalised, with
 * every default written out, so that the record says exactly what egress does.
 * Private keys are written only AES-256-GCM wrapped under
 * MFT_MASTER_KEY (mft_secret); plaintext key PEM is wiped after use. `get` and
 * `describe` read records through mft_store and never print a private key.
 * Until certd exists, this tool imports keys itself through lib/ (DESIGN §6).
 * Single-threaded.
 */
#include "mft_cfg.h"
#include "mft_err.h"
#include "mft_log.h"
#include "mft_registry.h"
#include "mft_secret.h"
#include "ctl_events.h"
#include "ctl_send.h"
#include "ctl_tls.h"
#include "mft_store.h"
#include "mft_x509.h"

#include <jansson.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#define EXIT_OK 0
#define EXIT_ERR 1
#define EXIT_USAGE 2

#define MAX_ENCRYPTION 4
#define MAX_AS2_ID 128
#define MAX_CERT_LIST 64
#define DEFAULT_MSG_LIMIT 50
#define MAX_MSG_LIMIT 10000
#define SUBJ_COL 48
#define MAX_URL 512       /* async_mdn_url (mft_station.async_mdn_url) */
#define MAX_SEND_URL 1024 /* send.url (mft_partner_send.url) */
#define MAX_PINS 4
#define SEND_TIMEOUT_MAX 86400L      /* one day */
#define SEND_MDN_TIMEOUT_MAX 604800L /* one week */
#define SEND_MAX_ATTEMPTS 100L

static const struct mft_cfg_var ctl_vars[] = {
    MFT_CFG_COMMON,
    {NULL, NULL, NULL},
};

struct ctl {
    struct mft_store *store;
    int json_out;
};

/* ---- small helpers ---------------------------------------------------------- */

static int open_store(struct ctl *c)
{
    struct mft_err err = {0};
    if (c->store)
        return 0;
    mft_err_clear(&err);
    if (mft_store_open(mft_cfg_get(ctl_vars, "MFT_REDIS_URL"), &c->store, &err) != 0 ||
        mft_store_ping(c->store, &err) != 0) {
        fprintf(stderr, "mftctl: %s: %s%s%s\n", mft_err_kind_name(err.kind), err.message,
                err.detail[0] ? ": " : "", err.detail);
        return -1;
    }
    return 0;
}

static void print_err(const char *what, const struct mft_err *err)
{
    if (err->detail[0])
        fprintf(stderr, "mftctl: %s: %s (%s)\n", what, err->message, err->detail);
    else
        fprintf(stderr, "mftctl: %s: %s\n", what, err->message);
}

/* [a-z0-9._-]{1,63} */
static int valid_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 63)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-'))
            return 0;
    }
    return 1;
}

/* RFC 4130 §6.2: 1..128 printable ASCII. Spaces inside are fine (the name then
 * travels as a quoted string); quotes and backslashes would need escaping that
 * products implement differently, and leading / trailing spaces do not survive
 * header parsing: refused. */
static int valid_as2_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MAX_AS2_ID)
        return 0;
    if (s[0] == ' ' || s[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch > 0x7e || ch == '"' || ch == '\\')
            return 0;
    }
    return 1;
}

/* 1 for an https:// URL, 0 for http:// (scheme in any case), -1 for anything
 * else: a host must follow, only printable ASCII, shorter than max. */
static int url_scheme(const char *url, size_t max)
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
    if (url[skip] == '\0' || url[skip] == '/' || strlen(url) >= max)
        return -1;
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return -1;
    return https;
}

static void rfc3339(time_t t, char buf[21])
{
    struct tm tm;
    buf[0] = '\0';
    if (gmtime_r(&t, &tm))
        strftime(buf, 21, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- certificate views (never keys) ---------------------------------------- */

static json_t *cert_view(const X509 *x)
{
    char subj[512], iss[512], serial[128], fp[65], nb[21], na[21], kd[32] = "";
    time_t tnb = 0, tna = 0, now = time(NULL);
    const char *status = "valid";

    mft_x509_subject(x, subj, sizeof(subj));
    mft_x509_issuer(x, iss, sizeof(iss));
    mft_x509_serial_hex(x, serial, sizeof(serial));
    mft_x509_fingerprint_sha256(x, fp);
    mft_x509_not_before(x, nb);
    mft_x509_not_after(x, na);
    mft_x509_validity(x, &tnb, &tna);
    mft_x509_key_desc(X509_get0_pubkey(x), kd, sizeof(kd));
    if (now > tna)
        status = "expired";
    else if (now < tnb)
        status = "not yet valid";
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "subject", subj, "issuer", iss,
                     "serial", serial, "sha256", fp, "not_before", nb, "not_after", na, "key", kd,
                     "status", status);
}

/* A PEM string (one or more certificates) → view of the first; *earliest
 * tracks the earliest notAfter seen. Returns NULL when the PEM is bad. */
static json_t *pem_view(const char *pem, time_t *earliest, json_t **chain_views)
{
    STACK_OF(X509) *certs = NULL;
    struct mft_err err = {0};
    json_t *v = NULL;

    if (chain_views)
        *chain_views = NULL;
    if (!pem || mft_x509_load_certs_mem(pem, strlen(pem), &certs, &err) != 0)
        return json_pack("{s:s}", "error", "unreadable certificate");
    for (int i = 0; i < sk_X509_num(certs); i++) {
        X509 *x = sk_X509_value(certs, i);
        time_t nb, na;
        if (earliest && mft_x509_validity(x, &nb, &na) == 0 && (*earliest == 0 || na < *earliest))
            *earliest = na;
        if (i == 0)
            v = cert_view(x);
        else if (chain_views) {
            if (!*chain_views)
                *chain_views = json_array();
            json_array_append_new(*chain_views, cert_view(x));
        }
    }
    sk_X509_pop_free(certs, X509_free);
    return v;
}

static json_t *keypair_view(const json_t *kp, time_t *earliest)
{
    json_t *chain = NULL, *v;
    if (!json_is_object(kp))
        return json_null();
    v = json_pack("{s:o}", "certificate",
                  pem_view(json_string_value(json_object_get(kp, "cert")), earliest, NULL));
    const char *chain_pem = json_string_value(json_object_get(kp, "chain"));
    if (chain_pem) {
        json_t *rest = NULL, *first = pem_view(chain_pem, earliest, &rest);
        chain = json_array();
        json_array_append_new(chain, first);
        if (rest)
            json_array_extend(chain, rest);
        json_decref(rest);
        json_object_set_new(v, "chain", chain);
    }
    json_object_set_new(v, "private_key",
                        json_string(json_is_string(json_object_get(kp, "key"))
                                        ? "stored, AES-256-GCM wrapped (never shown)"
                                        : "none"));
    return v;
}

static json_t *station_view(const char *id, const json_t *rec, time_t *earliest)
{
    json_t *enc = json_array(), *tls = json_object_get(rec, "tls");
    json_t *tlsc = json_object_get(rec, "tls_client"), *client;
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(rec, "encryption"), i, e)
        json_array_append_new(enc, keypair_view(e, earliest));
    if (json_is_object(tlsc))
        client = keypair_view(tlsc, earliest);
    else if (json_is_object(tls))
        client = json_pack("{s:s}", "same_as", "tls"); /* the registry's default */
    else
        client = json_null();
    return json_pack("{s:s, s:s?, s:o, s:o, s:o, s:o, s:s?}", "id", id, "as2_id",
                     json_string_value(json_object_get(rec, "as2_id")), "signing",
                     keypair_view(json_object_get(rec, "signing"), earliest), "encryption", enc,
                     "tls", tls ? keypair_view(tls, earliest) : json_null(), "tls_client", client,
                     "async_mdn_url", json_string_value(json_object_get(rec, "async_mdn_url")));
}

static json_t *cert_list_view(const json_t *arr, time_t *earliest)
{
    json_t *out = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v)
    {
        json_t *rest = NULL;
        json_array_append_new(out, pem_view(json_string_value(v), earliest, &rest));
        if (rest)
            json_array_extend(out, rest);
        json_decref(rest);
    }
    return out;
}

/* The send settings as stored (normalised), certificates as views. */
static json_t *send_view(const json_t *send, time_t *earliest)
{
    static const char *const scalars[] = {"url",
                                          "sign",
                                          "encrypt",
                                          "key_transport",
                                          "compress",
                                          "transfer_encoding",
                                          "old_micalg_names",
                                          "cms_algorithm_protection",
                                          "content_length",
                                          "multiple_attachments",
                                          "mdn",
                                          "mdn_signed",
                                          "mdn_timeout_s",
                                          "timeout_s",
                                          "max_attempts",
                                          "retry_base_s",
                                          "retry_max_s",
                                          NULL};
    json_t *v, *pins;
    if (!json_is_object(send))
        return json_null();
    v = json_object();
    for (const char *const *k = scalars; *k; k++) {
        json_t *x = json_object_get(send, *k);
        if (x)
            json_object_set(v, *k, x);
    }
    json_object_set_new(v, "tls_server_certs",
                        cert_list_view(json_object_get(send, "tls_server_certs"), earliest));
    json_object_set_new(v, "tls_server_cas",
                        cert_list_view(json_object_get(send, "tls_server_cas"), earliest));
    pins = json_object_get(send, "tls_server_pins");
    json_object_set_new(v, "tls_server_pins", json_is_array(pins) ? json_copy(pins) : json_array());
    return v;
}

static json_t *partner_view(const char *id, const json_t *rec, time_t *earliest)
{
    const json_t *sc = json_object_get(rec, "signing_cert");
    const json_t *ec = json_object_get(rec, "encryption_cert");
    json_t *v = json_pack(
        "{s:s, s:s?, s:s?, s:o, s:o, s:o, s:o, s:O?, s:O?, s:O?, s:o}", "id", id, "station",
        json_string_value(json_object_get(rec, "station")), "as2_id",
        json_string_value(json_object_get(rec, "as2_id")), "signing_cert",
        json_is_string(sc) ? pem_view(json_string_value(sc), earliest, NULL) : json_null(),
        "encryption_cert",
        json_is_string(ec) ? pem_view(json_string_value(ec), earliest, NULL) : json_null(),
        "tls_client_certs", cert_list_view(json_object_get(rec, "tls_client_certs"), earliest),
        "tls_client_cas", cert_list_view(json_object_get(rec, "tls_client_cas"), earliest),
        "require_signature", json_object_get(rec, "require_signature"), "require_encryption",
        json_object_get(rec, "require_encryption"), "mdn_signing",
        json_object_get(rec, "mdn_signing"), "send",
        send_view(json_object_get(rec, "send"), earliest));
    json_object_set_new(
        v, "allow_legacy_encryption",
        json_boolean(json_is_true(json_object_get(rec, "allow_legacy_encryption"))));
    const json_t *tp = json_object_get(rec, "tls_policy");
    json_object_set_new(v, "tls_policy",
                        json_is_object(tp) ? json_copy((json_t *)tp) : json_object());
    return v;
}

/* ---- output ----------------------------------------------------------------- */

static void print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
}

static void scalar_text(const json_t *v, char *buf, size_t len)
{
    if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_true(v))
        snprintf(buf, len, "true");
    else if (json_is_false(v))
        snprintf(buf, len, "false");
    else if (json_is_null(v))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "?");
}

/* Prints a view as indented "key: value" text. */
static void print_text(const json_t *v, int indent)
{
    char buf[1024];
    const char *k;
    const json_t *val;
    size_t i;

    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, k, val)
        {
            if (json_is_object(val) || (json_is_array(val) && json_array_size(val) > 0)) {
                printf("%*s%s:\n", indent, "", k);
                print_text(val, indent + 2);
            } else {
                if (json_is_array(val))
                    snprintf(buf, sizeof(buf), "(none)");
                else
                    scalar_text(val, buf, sizeof(buf));
                printf("%*s%s: %s\n", indent, "", k, buf);
            }
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, val)
        {
            if (json_is_object(val) || json_is_array(val)) {
                printf("%*s[%zu]\n", indent, "", i);
                print_text(val, indent + 2);
            } else {
                scalar_text(val, buf, sizeof(buf));
                printf("%*s- %s\n", indent, "", buf);
            }
        }
    }
}

/* A table: rows of ncol malloc'd strings, columns sized to their content. */
struct table {
    size_t ncol, nrow, cap;
    char **cells; /* row-major, first row = header */
};

static void table_add(struct table *t, const char *const *cols)
{
    if (t->nrow == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        char **nc = realloc(t->cells, ncap * t->ncol * sizeof(*nc));
        if (!nc)
            return;
        t->cells = nc;
        t->cap = ncap;
    }
    for (size_t c = 0; c < t->ncol; c++) {
        const char *s = cols[c] && *cols[c] ? cols[c] : "-";
        size_t n = strlen(s);
        if (c + 1 < t->ncol && n > SUBJ_COL) { /* shorten long cells, not the last */
            char *cut = malloc(SUBJ_COL + 1);
            if (cut) {
                memcpy(cut, s, SUBJ_COL - 3);
                memcpy(cut + SUBJ_COL - 3, "...", 4);
            }
            t->cells[t->nrow * t->ncol + c] = cut;
        } else {
            t->cells[t->nrow * t->ncol + c] = strdup(s);
        }
    }
    t->nrow++;
}

static void table_print_free(struct table *t)
{
    size_t w[16] = {0};
    for (size_t r = 0; r < t->nrow; r++)
        for (size_t c = 0; c < t->ncol && c < 16; c++) {
            const char *s = t->cells[r * t->ncol + c];
            if (s && strlen(s) > w[c])
                w[c] = strlen(s);
        }
    for (size_t r = 0; r < t->nrow; r++) {
        for (size_t c = 0; c < t->ncol; c++) {
            const char *s = t->cells[r * t->ncol + c];
            if (c + 1 < t->ncol)
                printf("%-*s  ", (int)w[c], s ? s : "");
            else
                printf("%s\n", s ? s : "");
        }
    }
    for (size_t i = 0; i < t->nrow * t->ncol; i++)
        free(t->cells[i]);
    free(t->cells);
    memset(t, 0, sizeof(*t));
}

static const char *view_subject(const json_t *certview)
{
    return json_string_value(json_object_get(certview, "subject"));
}

/* ---- option parsing ---------------------------------------------------------- */

struct opts {
    const char *file;
    const char *station;
    long limit;
    int json;
    int help;
    const char *pos[4];
    int npos;
};

/* Parses -f FILE, -o json|table, --station ID, --limit N, -h/--help and
 * positionals. Returns 0 or -1 (usage error already printed). */
static int parse_opts(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->limit = DEFAULT_MSG_LIMIT;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            o->help = 1;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            if (!val)
                goto missing;
            o->file = val;
            i++;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!val)
                goto missing;
            if (strcmp(val, "json") == 0)
                o->json = 1;
            else if (strcmp(val, "table") != 0 && strcmp(val, "text") != 0) {
                fprintf(stderr, "mftctl: -o takes json, table or text\n");
                return -1;
            }
            i++;
        } else if (strcmp(a, "--station") == 0) {
            if (!val)
                goto missing;
            o->station = val;
            i++;
        } else if (strcmp(a, "--limit") == 0) {
            char *end;
            if (!val)
                goto missing;
            o->limit = strtol(val, &end, 10);
            if (*end || o->limit <= 0 || o->limit > MAX_MSG_LIMIT) {
                fprintf(stderr, "mftctl: --limit takes 1..%d\n", MAX_MSG_LIMIT);
                return -1;
            }
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "mftctl: unknown option %s\n", a);
            return -1;
        } else if (o->npos < 4) {
            o->pos[o->npos++] = a;
        } else {
            fprintf(stderr, "mftctl: too many arguments\n");
            return -1;
        }
    }
    return 0;
missing:
    fprintf(stderr, "mftctl: %s needs a value\n", argv[argc - 1]);
    return -1;
}

/* ======================================================================== */
/* apply                                                                     */
/* ======================================================================== */

struct planned {
    int is_station;
    char id[64], as2_id[MAX_AS2_ID + 1], station[64];
    char *json;
};

struct apply {
    const char *file;
    char dir[PATH_MAX];
    int errors, warnings;
    struct ctl *ctl;
    unsigned char mk[MFT_SECRET_KEY_LEN];
    int have_mk;
    struct planned items[256];
    size_t n_items;
    json_t *stations; /* the file's "stations" (borrowed) */
};

static void aerr(struct apply *a, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void aerr(struct apply *a, const char *path, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "error: %s: ", path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    a->errors++;
}

static void awarn(struct apply *a, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void awarn(struct apply *a, const char *path, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "warning: %s: ", path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    a->warnings++;
}

static void aerr_mft(struct apply *a, const char *path, const struct mft_err *err)
{
    if (err->detail[0])
        aerr(a, path, "%s (%s)", err->message, err->detail);
    else
        aerr(a, path, "%s", err->message);
}

/* Resolves a path relative to the apply-file's directory. */
static int resolve(struct apply *a, const char *path, char *out, size_t len)
{
    int n =
        path[0] == '/' ? snprintf(out, len, "%s", path) : snprintf(out, len, "%s/%s", a->dir, path);
    return (n < 0 || (size_t)n >= len) ? -1 : 0;
}

/* Checks that obj has only the named members. */
static void check_members(struct apply *a, const json_t *obj, const char *path,
                          const char *const *allowed)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)obj, k, v)
    {
        int ok = 0;
        for (const char *const *p = allowed; *p && !ok; p++)
            ok = strcmp(*p, k) == 0;
        if (!ok)
            aerr(a, path, "unknown field \"%s\"", k);
    }
}

/* Reads a string member; NULL with an error when required and missing. */
static const char *member_str(struct apply *a, const json_t *obj, const char *path,
                              const char *name, int required)
{
    const json_t *v = json_object_get(obj, name);
    if (!v || json_is_null(v)) {
        if (required)
            aerr(a, path, "\"%s\" is required", name);
        return NULL;
    }
    if (!json_is_string(v)) {
        aerr(a, path, "\"%s\" must be a string", name);
        return NULL;
    }
    return json_string_value(v);
}

static void check_validity(struct apply *a, const char *path, const X509 *x)
{
    time_t nb, na, now = time(NULL);
    char subj[256], when[21];
    if (mft_x509_validity(x, &nb, &na) != 0)
        return;
    mft_x509_subject(x, subj, sizeof(subj));
    if (now > na) {
        rfc3339(na, when);
        awarn(a, path, "certificate %s expired on %s", subj, when);
    } else if (now < nb) {
        rfc3339(nb, when);
        awarn(a, path, "certificate %s is not valid before %s", subj, when);
    }
}

/* Loads the certificates of a path member; NULL after reporting an error. */
static STACK_OF(X509) * load_certs_at(struct apply *a, const char *jpath, const char *file)
{
    char full[PATH_MAX];
    struct mft_err err = {0};
    STACK_OF(X509) *certs = NULL;
    mft_err_clear(&err);
    if (resolve(a, file, full, sizeof(full)) != 0) {
        aerr(a, jpath, "path too long");
        return NULL;
    }
    if (mft_x509_load_certs(full, &certs, &err) != 0) {
        aerr_mft(a, jpath, &err);
        return NULL;
    }
    for (int i = 0; i < sk_X509_num(certs); i++)
        check_validity(a, jpath, sk_X509_value(certs, i));
    return certs;
}

static int has_eku(const X509 *x, uint32_t want)
{
    uint32_t flags = X509_get_extension_flags((X509 *)x);
    if (!(flags & EXFLAG_XKUSAGE))
        return 1; /* no EKU extension: any usage */
    return (X509_get_extended_key_usage((X509 *)x) & want) != 0;
}

/* Wraps the key as PKCS#8 PEM under the master key with the station id. */
static char *wrap_key(struct apply *a, const char *jpath, const EVP_PKEY *key,
                      const char *station_id)
{
    char *pem = NULL, *wrapped = NULL;
    struct mft_err err = {0};
    mft_err_clear(&err);
    if (!a->have_mk)
        return NULL; /* reported once */
    if (mft_x509_key_to_pem(key, &pem, &err) != 0 ||
        mft_secret_wrap(a->mk, station_id, pem, strlen(pem), &wrapped, &err) != 0)
        aerr_mft(a, jpath, &err);
    mft_secret_free_str(pem);
    return wrapped;
}

/*
 * A keypair spec: {"cert","key","password","chain"} or {"pkcs12","password",
 * "alias","chain"}. Returns the stored form {"cert","chain"?,"key":"v1:..."}
 * or NULL after reporting errors. want_eku is checked as a warning.
 */
static json_t *keypair_record(struct apply *a, const json_t *spec, const char *jpath,
                              const char *station_id, uint32_t want_eku, const char *eku_name)
{
    static const char *const allowed[] = {"cert",  "key",   "password", "pkcs12",
                                          "alias", "chain", NULL};
    char sub[256], full[PATH_MAX];
    struct mft_err err = {0};
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    STACK_OF(X509) *chain = sk_X509_new_null(), *extra = NULL;
    json_t *rec = NULL;
    char *cert_pem = NULL, *chain_pem = NULL, *wrapped = NULL;
    int errors_before = a->errors;

    mft_err_clear(&err);
    if (!json_is_object(spec)) {
        aerr(a, jpath, "must be an object with \"cert\" and \"key\", or \"pkcs12\"");
        goto out;
    }
    check_members(a, spec, jpath, allowed);
    const char *pw = member_str(a, spec, jpath, "password", 0);
    const char *p12 = member_str(a, spec, jpath, "pkcs12", 0);
    const char *alias = member_str(a, spec, jpath, "alias", 0);
    const char *chainf = member_str(a, spec, jpath, "chain", 0);
    if (p12) {
        unsigned char *buf = NULL;
        size_t len = 0;
        snprintf(sub, sizeof(sub), "%s.pkcs12", jpath);
        if (json_object_get(spec, "cert") || json_object_get(spec, "key"))
            aerr(a, jpath, "give either \"pkcs12\" or \"cert\" and \"key\", not both");
        if (resolve(a, p12, full, sizeof(full)) != 0 ||
            mft_x509_read_file(full, &buf, &len, &err) != 0 ||
            mft_x509_load_pkcs12_mem(buf, len, pw, alias, &key, &cert, &extra, &err) != 0) {
            if (strstr(err.message, full) == NULL && buf)
                aerr(a, sub, "%s: %s", full, err.message);
            else
                aerr_mft(a, sub, &err);
        } else {
            /* certificates other than the key's: CA certificates are its chain */
            for (int i = 0; i < sk_X509_num(extra); i++) {
                X509 *x = sk_X509_value(extra, i);
                if (X509_check_ca(x) > 0 && X509_cmp(x, cert) != 0 && X509_up_ref(x))
                    sk_X509_push(chain, x);
            }
            check_validity(a, sub, cert);
        }
        if (buf) {
            OPENSSL_cleanse(buf, len);
            free(buf);
        }
    } else {
        const char *certf = member_str(a, spec, jpath, "cert", 1);
        const char *keyf = member_str(a, spec, jpath, "key", 1);
        if (alias)
            aerr(a, jpath, "\"alias\" only goes with \"pkcs12\"");
        if (certf) {
            snprintf(sub, sizeof(sub), "%s.cert", jpath);
            STACK_OF(X509) *certs = load_certs_at(a, sub, certf);
            if (certs) {
                cert = sk_X509_shift(certs);
                X509 *x; /* a full-chain file: the rest is the chain */
                while ((x = sk_X509_shift(certs)) != NULL)
                    if (!sk_X509_push(chain, x))
                        X509_free(x);
                sk_X509_free(certs);
            }
        }
        if (keyf) {
            snprintf(sub, sizeof(sub), "%s.key", jpath);
            if (resolve(a, keyf, full, sizeof(full)) != 0 ||
                mft_x509_load_key(full, pw, &key, &err) != 0)
                aerr_mft(a, sub, &err);
        }
    }
    if (chainf) {
        snprintf(sub, sizeof(sub), "%s.chain", jpath);
        STACK_OF(X509) *more = load_certs_at(a, sub, chainf);
        X509 *x;
        while (more && (x = sk_X509_shift(more)) != NULL)
            if (!sk_X509_push(chain, x))
                X509_free(x);
        sk_X509_free(more);
    }
    if (cert && key && !mft_x509_key_matches_cert(cert, key)) {
        char subj[256];
        mft_x509_subject(cert, subj, sizeof(subj));
        snprintf(sub, sizeof(sub), "%s.key", jpath);
        aerr(a, sub, "the private key does not match the certificate %s", subj);
    }
    if (cert && want_eku && !has_eku(cert, want_eku))
        awarn(a, jpath, "certificate has no %s extended key usage", eku_name);
    if (a->errors != errors_before || !cert || !key)
        goto out;
    wrapped = wrap_key(a, jpath, key, station_id);
    if (mft_x509_certs_to_pem(cert, NULL, &cert_pem, &err) != 0 ||
        (sk_X509_num(chain) > 0 && mft_x509_certs_to_pem(NULL, chain, &chain_pem, &err) != 0)) {
        aerr_mft(a, jpath, &err);
        goto out;
    }
    if (!wrapped)
        goto out;
    rec = json_pack("{s:s, s:s?, s:s}", "cert", cert_pem, "chain", chain_pem, "key", wrapped);
out:
    free(cert_pem);
    free(chain_pem);
    free(wrapped);
    X509_free(cert);
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    sk_X509_pop_free(extra, X509_free);
    return rec;
}

static struct planned *plan_add(struct apply *a, const char *path)
{
    if (a->n_items >= sizeof(a->items) / sizeof(a->items[0])) {
        aerr(a, path, "too many objects in one file (max %zu)",
             sizeof(a->items) / sizeof(a->items[0]));
        return NULL;
    }
    struct planned *p = &a->items[a->n_items++];
    memset(p, 0, sizeof(*p));
    return p;
}

static void apply_station(struct apply *a, const json_t *st, size_t idx)
{
    static const char *const allowed[] = {"id",  "as2_id",     "signing",       "encryption",
                                          "tls", "tls_client", "async_mdn_url", NULL};
    char path[64], sub[96];
    json_t *rec = NULL, *enc = NULL;
    int errors_before = a->errors;

    snprintf(path, sizeof(path), "stations[%zu]", idx);
    if (!json_is_object(st)) {
        aerr(a, path, "must be an object");
        return;
    }
    check_members(a, st, path, allowed);
    const char *id = member_str(a, st, path, "id", 1);
    const char *as2 = member_str(a, st, path, "as2_id", 1);
    snprintf(sub, sizeof(sub), "%s.id", path);
    if (id && !valid_id(id)) {
        aerr(a, sub, "\"%s\" is not a valid id ([a-z0-9._-], 1..63 characters)", id);
        id = NULL;
    }
    snprintf(sub, sizeof(sub), "%s.as2_id", path);
    if (as2 && !valid_as2_id(as2))
        aerr(a, sub,
             "not a valid AS2 id (1..128 printable ASCII characters, spaces only inside, "
             "no quote or backslash; RFC 4130)");
    const char *aad = id ? id : "";

    snprintf(sub, sizeof(sub), "%s.signing", path);
    const json_t *sg = json_object_get(st, "signing");
    json_t *signing = sg ? keypair_record(a, sg, sub, aad, 0, NULL) : NULL;
    if (!sg)
        aerr(a, path, "\"signing\" is required");

    const json_t *e = json_object_get(st, "encryption");
    enc = json_array();
    if (!e) {
        aerr(a, path, "\"encryption\" is required");
    } else if (json_is_object(e)) {
        snprintf(sub, sizeof(sub), "%s.encryption", path);
        json_t *kp = keypair_record(a, e, sub, aad, 0, NULL);
        if (kp)
            json_array_append_new(enc, kp);
    } else if (json_is_array(e) && json_array_size(e) >= 1 &&
               json_array_size(e) <= MAX_ENCRYPTION) {
        size_t i;
        const json_t *v;
        json_array_foreach(e, i, v)
        {
            snprintf(sub, sizeof(sub), "%s.encryption[%zu]", path, i);
            json_t *kp = keypair_record(a, v, sub, aad, 0, NULL);
            if (kp)
                json_array_append_new(enc, kp);
        }
    } else {
        snprintf(sub, sizeof(sub), "%s.encryption", path);
        aerr(a, sub, "must be a keypair or a list of 1..%d keypairs (first = current)",
             MAX_ENCRYPTION);
    }

    const json_t *t = json_object_get(st, "tls");
    json_t *tls = NULL, *tls_client = NULL;
    if (t && !json_is_null(t)) {
        snprintf(sub, sizeof(sub), "%s.tls", path);
        tls = keypair_record(a, t, sub, aad, XKU_SSL_SERVER, "serverAuth");
    }
    /* the identity egress presents to partners' servers; tls when absent */
    t = json_object_get(st, "tls_client");
    if (t && !json_is_null(t)) {
        snprintf(sub, sizeof(sub), "%s.tls_client", path);
        tls_client = keypair_record(a, t, sub, aad, XKU_SSL_CLIENT, "clientAuth");
    }
    const char *mdn_url = member_str(a, st, path, "async_mdn_url", 0);
    snprintf(sub, sizeof(sub), "%s.async_mdn_url", path);
    if (mdn_url && url_scheme(mdn_url, MAX_URL) < 0)
        aerr(a, sub, "must be an http:// or https:// URL (at most %d characters)", MAX_URL - 1);
    if (a->errors == errors_before && id && as2) {
        rec = json_pack("{s:i, s:s, s:s, s:s, s:o, s:O, s:o*, s:o*, s:s*}", "schema", 1, "kind",
                        "station", "id", id, "as2_id", as2, "signing", signing, "encryption", enc,
                        "tls", tls, "tls_client", tls_client, "async_mdn_url", mdn_url);
        signing = tls = tls_client = NULL;
        struct planned *p = plan_add(a, path);
        if (p && rec) {
            p->is_station = 1;
            snprintf(p->id, sizeof(p->id), "%s", id);
            snprintf(p->as2_id, sizeof(p->as2_id), "%s", as2);
            p->json = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
        }
    }
    json_decref(signing);
    json_decref(tls);
    json_decref(tls_client);
    json_decref(enc);
    json_decref(rec);
}

/* A list of certificate paths → array of PEM strings (one per certificate).
 * want_ca: each must be a CA (error); else want_eku is checked (warning). */
static json_t *cert_list_record(struct apply *a, const json_t *arr, const char *jpath, int want_ca,
                                uint32_t want_eku, const char *eku_name)
{
    json_t *out = json_array();
    size_t i;
    const json_t *v;
    char sub[128];

    if (!arr || json_is_null(arr))
        return out;
    if (!json_is_array(arr)) {
        aerr(a, jpath, "must be a list of file paths");
        return out;
    }
    json_array_foreach(arr, i, v)
    {
        snprintf(sub, sizeof(sub), "%s[%zu]", jpath, i);
        if (!json_is_string(v)) {
            aerr(a, sub, "must be a file path");
            continue;
        }
        STACK_OF(X509) *certs = load_certs_at(a, sub, json_string_value(v));
        for (int k = 0; certs && k < sk_X509_num(certs); k++) {
            X509 *x = sk_X509_value(certs, k);
            char *pem = NULL;
            struct mft_err err = {0};
            if (want_ca && X509_check_ca(x) == 0) {
                char subj[256];
                mft_x509_subject(x, subj, sizeof(subj));
                aerr(a, sub, "%s is not a CA certificate", subj);
            } else if (!want_ca && want_eku && !has_eku(x, want_eku)) {
                awarn(a, sub, "certificate has no %s extended key usage", eku_name);
            }
            if (json_array_size(out) >= MAX_CERT_LIST) {
                aerr(a, jpath, "too many certificates (max %d)", MAX_CERT_LIST);
                break;
            }
            if (mft_x509_certs_to_pem(x, NULL, &pem, &err) == 0)
                json_array_append_new(out, json_string(pem));
            free(pem);
        }
        sk_X509_pop_free(certs, X509_free);
    }
    return out;
}

/* What a partner's send settings need to know of its station. */
struct station_facts {
    int has_signing;
    int has_async_mdn_url;
};

static void station_facts_of(const json_t *st, struct station_facts *f)
{
    const char *u = json_string_value(json_object_get(st, "async_mdn_url"));
    f->has_signing = json_is_object(json_object_get(st, "signing"));
    f->has_async_mdn_url = u && *u;
}

/* Returns 1 when station id is declared in the file (first) or exists in
 * Redis, with *f filled; 0 when it does not exist; -1 when Redis cannot be
 * asked. */
static int station_lookup(struct apply *a, const char *id, struct station_facts *f)
{
    size_t i;
    const json_t *st;
    char *json = NULL;
    struct mft_err err = {0};
    memset(f, 0, sizeof(*f));
    json_array_foreach(a->stations, i, st)
    {
        const char *sid = json_string_value(json_object_get(st, "id"));
        if (sid && strcmp(sid, id) == 0) {
            station_facts_of(st, f);
            return 1;
        }
    }
    if (open_store(a->ctl) != 0)
        return -1;
    int r = mft_store_get_station(a->ctl->store, id, &json, &err);
    if (r == 0) {
        json_t *rec = json_loads(json, 0, NULL);
        station_facts_of(rec, f);
        json_decref(rec);
    }
    free(json);
    return r == 0 ? 1 : r == 1 ? 0 : -1;
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

/* Lowercase copy of in (at most len - 1 characters), without '-' when
 * drop_dash. Returns 0, or -1 when too long. */
static int lower_copy(const char *in, char *out, size_t len, int drop_dash)
{
    size_t k = 0;
    for (const char *c = in; *c; c++) {
        if (drop_dash && *c == '-')
            continue;
        if (k + 1 >= len) {
            out[k] = '\0';
            return -1;
        }
        out[k++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
    }
    out[k] = '\0';
    return 0;
}

static int in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return 1;
    return 0;
}

/* An optional string member that must be one of words; *out keeps its default. */
static void word_member(struct apply *a, const json_t *obj, const char *path, const char *name,
                        const char *const *words, const char **out)
{
    char sub[160], list[160] = "";
    const char *w = member_str(a, obj, path, name, 0);
    if (!w)
        return;
    if (in_list(w, words)) {
        *out = w;
        return;
    }
    for (const char *const *p = words; *p; p++) {
        size_t n = strlen(list);
        snprintf(list + n, sizeof(list) - n, "%s\"%s\"", n ? ", " : "", *p);
    }
    snprintf(sub, sizeof(sub), "%s.%s", path, name);
    aerr(a, sub, "must be one of %s", list);
}

static void bool_member(struct apply *a, const json_t *obj, const char *path, const char *name,
                        int *out)
{
    char sub[160];
    const json_t *b = json_object_get(obj, name);
    if (!b || json_is_null(b))
        return;
    snprintf(sub, sizeof(sub), "%s.%s", path, name);
    if (!json_is_boolean(b))
        aerr(a, sub, "must be true or false");
    else
        *out = json_is_true(b);
}

static void long_member(struct apply *a, const json_t *obj, const char *path, const char *name,
                        long max, long *out)
{
    char sub[160];
    const json_t *n = json_object_get(obj, name);
    if (!n || json_is_null(n))
        return;
    snprintf(sub, sizeof(sub), "%s.%s", path, name);
    if (!json_is_integer(n) || json_integer_value(n) < 1 || json_integer_value(n) > max)
        aerr(a, sub, "must be an integer from 1 to %ld", max);
    else
        *out = (long)json_integer_value(n);
}

/*
 * A partner's "send" object → its stored form, every setting normalised and
 * with its default filled in; NULL after reporting errors. sf is the
 * partner's station (NULL when it does not exist: already reported).
 */
static json_t *send_record(struct apply *a, const json_t *spec, const char *ppath, const char *pid,
                           int have_encryption_cert, const struct station_facts *sf)
{
    static const char *const allowed[] = {"url",
                                          "tls_server_certs",
                                          "tls_server_cas",
                                          "tls_server_pins",
                                          "sign",
                                          "encrypt",
                                          "key_transport",
                                          "compress",
                                          "transfer_encoding",
                                          "old_micalg_names",
                                          "cms_algorithm_protection",
                                          "content_length",
                                          "multiple_attachments",
                                          "mdn",
                                          "mdn_signed",
                                          "mdn_timeout_s",
                                          "timeout_s",
                                          "max_attempts",
                                          "retry_base_s",
                                          "retry_max_s",
                                          NULL};
    static const char *const digests[] = {"sha1", "sha224", "sha256", "sha384", "sha512", NULL};
    static const char *const ciphers[] = {
        "aes-128-cbc", "aes-192-cbc", "aes-256-cbc", "des-ede3-cbc",
        "aes-128-gcm", "aes-256-gcm", NULL};
    static const char *const key_transports[] = {"rsa-pkcs1", "rsa-oaep", NULL};
    static const char *const compressions[] = {"none", "before-signing", "after-signing", NULL};
    static const char *const encodings[] = {"binary", "base64", NULL};
    static const char *const mdn_modes[] = {"sync", "async", "none", NULL};
    char path[128], sub[160];
    char sign[16] = "sha256", cipher[32] = "aes-256-cbc";
    const char *kt = "rsa-pkcs1", *compress = "none", *cte = "binary", *mdn = "sync", *w;
    int errors_before = a->errors, https = -1, old_micalg = 0, clen = 0, multi = 0, mdn_signed = 1,
        alg_protect = 1;
    long mdn_timeout = 3600, timeout = 120, attempts = 10, retry_base = 30, retry_max = 3600;
    json_t *rec = NULL, *certs = NULL, *cas = NULL, *pins = json_array();

    snprintf(path, sizeof(path), "%s.send", ppath);
    if (!json_is_object(spec)) {
        aerr(a, path, "must be an object with at least \"url\"");
        goto out;
    }
    check_members(a, spec, path, allowed);
    const char *url = member_str(a, spec, path, "url", 1);
    snprintf(sub, sizeof(sub), "%s.url", path);
    if (url && (https = url_scheme(url, MAX_SEND_URL)) < 0)
        aerr(a, sub, "must be an http:// or https:// URL with a host (at most %d characters)",
             MAX_SEND_URL - 1);

    int trust_errors = a->errors;
    snprintf(sub, sizeof(sub), "%s.tls_server_certs", path);
    certs = cert_list_record(a, json_object_get(spec, "tls_server_certs"), sub, 0, XKU_SSL_SERVER,
                             "serverAuth");
    snprintf(sub, sizeof(sub), "%s.tls_server_cas", path);
    cas = cert_list_record(a, json_object_get(spec, "tls_server_cas"), sub, 1, 0, NULL);
    const json_t *pv = json_object_get(spec, "tls_server_pins");
    snprintf(sub, sizeof(sub), "%s.tls_server_pins", path);
    if (pv && !json_is_null(pv) && !json_is_array(pv)) {
        aerr(a, sub, "must be a list of \"sha256//BASE64\" strings");
    } else if (json_array_size(pv) > MAX_PINS) {
        aerr(a, sub, "at most %d pins", MAX_PINS);
    } else {
        size_t i;
        const json_t *v;
        json_array_foreach(pv, i, v)
        {
            const char *pin = json_string_value(v);
            snprintf(sub, sizeof(sub), "%s.tls_server_pins[%zu]", path, i);
            if (pin && strncmp(pin, "sha256//", 8) == 0)
                pin += 8;
            if (!pin || !valid_pin(pin))
                aerr(a, sub,
                     "must be \"sha256//\" (optional) and the base64 SHA-256 of the server's "
                     "public key (SubjectPublicKeyInfo): 44 characters ending in \"=\"");
            else
                json_array_append_new(pins, json_string(pin));
        }
    }

    trust_errors = a->errors - trust_errors;

    if ((w = member_str(a, spec, path, "sign", 0)) != NULL) {
        snprintf(sub, sizeof(sub), "%s.sign", path);
        if (lower_copy(w, sign, sizeof(sign), 1) != 0 ||
            (strcmp(sign, "none") != 0 && !in_list(sign, digests))) {
            aerr(a, sub,
                 "must be \"sha1\", \"sha224\", \"sha256\", \"sha384\", \"sha512\" (any case, "
                 "\"sha-256\" too) or \"none\"");
            sign[0] = '\0'; /* reported: no more errors about it */
        } else if (strcmp(sign, "none") == 0)
            sign[0] = '\0';
    }
    if ((w = member_str(a, spec, path, "encrypt", 0)) != NULL) {
        snprintf(sub, sizeof(sub), "%s.encrypt", path);
        int bad = lower_copy(w, cipher, sizeof(cipher), 0) != 0;
        if (!bad && strcmp(cipher, "3des") == 0)
            snprintf(cipher, sizeof(cipher), "des-ede3-cbc");
        if (!bad && strcmp(cipher, "none") == 0)
            cipher[0] = '\0';
        else if (bad || !in_list(cipher, ciphers)) {
            cipher[0] = '\0'; /* reported: no more errors about it */
            aerr(a, sub,
                 "must be \"aes-128-cbc\", \"aes-192-cbc\", \"aes-256-cbc\", \"des-ede3-cbc\" "
                 "(or \"3des\"), \"aes-128-gcm\", \"aes-256-gcm\" or \"none\"");
        }
    }
    word_member(a, spec, path, "key_transport", key_transports, &kt);
    word_member(a, spec, path, "compress", compressions, &compress);
    word_member(a, spec, path, "transfer_encoding", encodings, &cte);
    word_member(a, spec, path, "mdn", mdn_modes, &mdn);
    bool_member(a, spec, path, "old_micalg_names", &old_micalg);
    bool_member(a, spec, path, "cms_algorithm_protection", &alg_protect);
    bool_member(a, spec, path, "content_length", &clen);
    bool_member(a, spec, path, "multiple_attachments", &multi);
    bool_member(a, spec, path, "mdn_signed", &mdn_signed);
    long_member(a, spec, path, "mdn_timeout_s", SEND_MDN_TIMEOUT_MAX, &mdn_timeout);
    long_member(a, spec, path, "timeout_s", SEND_TIMEOUT_MAX, &timeout);
    long_member(a, spec, path, "max_attempts", SEND_MAX_ATTEMPTS, &attempts);
    long_member(a, spec, path, "retry_base_s", SEND_TIMEOUT_MAX, &retry_base);
    long_member(a, spec, path, "retry_max_s", SEND_MDN_TIMEOUT_MAX, &retry_max);
    if (retry_max < retry_base) {
        snprintf(sub, sizeof(sub), "%s.retry_max_s", path);
        aerr(a, sub, "%ld is below retry_base_s (%ld)", retry_max, retry_base);
    }

    size_t trust = json_array_size(certs) + json_array_size(cas) + json_array_size(pins);
    snprintf(sub, sizeof(sub), "%s.url", path);
    if (https == 1 && trust == 0 && trust_errors == 0)
        aerr(a, sub,
             "partner %s: send.url is https but no tls_server_certs, tls_server_cas or "
             "tls_server_pins: the partner's server cannot be authenticated",
             pid);
    else if (https == 0 && trust > 0)
        awarn(a, path,
              "tls_server_certs, tls_server_cas and tls_server_pins are not used with an "
              "http:// URL");
    snprintf(sub, sizeof(sub), "%s.encrypt", path);
    if (cipher[0] && !have_encryption_cert)
        aerr(a, sub,
             "partner %s: send.encrypt is %s but the partner has no encryption_cert (give it, or "
             "set \"encrypt\": \"none\")",
             pid, cipher);
    snprintf(sub, sizeof(sub), "%s.sign", path);
    if (sign[0] && sf && !sf->has_signing)
        aerr(a, sub, "partner %s: send.sign is %s but the station has no signing keypair", pid,
             sign);
    snprintf(sub, sizeof(sub), "%s.mdn", path);
    if (strcmp(mdn, "async") == 0 && sf && !sf->has_async_mdn_url)
        aerr(a, sub,
             "partner %s: send.mdn is async but the station has no async_mdn_url (where the "
             "partner sends the MDN)",
             pid);
    if (a->errors != errors_before || !url)
        goto out;
    rec = json_pack("{s:s, s:O, s:O, s:O, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:b, s:s, s:b, "
                    "s:I, s:I, s:I, s:I, s:I}",
                    "url", url, "tls_server_certs", certs, "tls_server_cas", cas, "tls_server_pins",
                    pins, "sign", sign[0] ? sign : "none", "encrypt", cipher[0] ? cipher : "none",
                    "key_transport", kt, "compress", compress, "transfer_encoding", cte,
                    "old_micalg_names", old_micalg, "cms_algorithm_protection", alg_protect,
                    "content_length", clen, "multiple_attachments", multi, "mdn", mdn, "mdn_signed",
                    mdn_signed, "mdn_timeout_s", (json_int_t)mdn_timeout, "timeout_s",
                    (json_int_t)timeout, "max_attempts", (json_int_t)attempts, "retry_base_s",
                    (json_int_t)retry_base, "retry_max_s", (json_int_t)retry_max);
    if (!rec)
        aerr(a, path, "out of memory");
out:
    json_decref(certs);
    json_decref(cas);
    json_decref(pins);
    return rec;
}

static void apply_partner(struct apply *a, const json_t *pt, size_t idx)
{
    static const char *const allowed[] = {"id",
                                          "station",
                                          "as2_id",
                                          "signing_cert",
                                          "encryption_cert",
                                          "tls_client_certs",
                                          "tls_client_cas",
                                          "require_signature",
                                          "require_encryption",
                                          "allow_legacy_encryption",
                                          "mdn_signing",
                                          "send",
                                          "tls_policy",
                                          NULL};
    static const char *const mdn_modes[] = {"if-requested", "always", "never", NULL};
    char path[64], sub[96];
    int errors_before = a->errors;
    X509 *sign = NULL, *encr = NULL;
    char *sign_pem = NULL, *encr_pem = NULL;
    json_t *tls_certs = NULL, *tls_cas = NULL, *rec = NULL, *send = NULL;
    struct station_facts sf = {0};
    int station_found = 0;
    int req_sig = 1, req_enc = 1, legacy = 0;
    const char *mdn = "if-requested";
    struct mft_err err = {0};

    snprintf(path, sizeof(path), "partners[%zu]", idx);
    if (!json_is_object(pt)) {
        aerr(a, path, "must be an object");
        return;
    }
    check_members(a, pt, path, allowed);
    const char *id = member_str(a, pt, path, "id", 1);
    const char *station = member_str(a, pt, path, "station", 1);
    const char *as2 = member_str(a, pt, path, "as2_id", 1);
    snprintf(sub, sizeof(sub), "%s.id", path);
    if (id && !valid_id(id))
        aerr(a, sub, "\"%s\" is not a valid id ([a-z0-9._-], 1..63 characters)", id);
    snprintf(sub, sizeof(sub), "%s.as2_id", path);
    if (as2 && !valid_as2_id(as2))
        aerr(a, sub,
             "not a valid AS2 id (1..128 printable ASCII characters, spaces only inside, "
             "no quote or backslash; RFC 4130)");
    snprintf(sub, sizeof(sub), "%s.station", path);
    if (station) {
        int k = valid_id(station) ? station_lookup(a, station, &sf) : 0;
        station_found = k == 1;
        if (k == 0)
            aerr(a, sub, "station \"%s\" does not exist (declare it under \"stations\")", station);
        else if (k < 0)
            aerr(a, sub, "cannot check station \"%s\": Redis unreachable", station);
    }
    const char *f;
    snprintf(sub, sizeof(sub), "%s.signing_cert", path);
    if ((f = member_str(a, pt, path, "signing_cert", 0)) != NULL) {
        STACK_OF(X509) *c = load_certs_at(a, sub, f);
        sign = c ? sk_X509_shift(c) : NULL;
        sk_X509_pop_free(c, X509_free);
    }
    snprintf(sub, sizeof(sub), "%s.encryption_cert", path);
    if ((f = member_str(a, pt, path, "encryption_cert", 0)) != NULL) {
        STACK_OF(X509) *c = load_certs_at(a, sub, f);
        encr = c ? sk_X509_shift(c) : NULL;
        sk_X509_pop_free(c, X509_free);
    }
    snprintf(sub, sizeof(sub), "%s.tls_client_certs", path);
    tls_certs = cert_list_record(a, json_object_get(pt, "tls_client_certs"), sub, 0, XKU_SSL_CLIENT,
                                 "clientAuth");
    snprintf(sub, sizeof(sub), "%s.tls_client_cas", path);
    tls_cas = cert_list_record(a, json_object_get(pt, "tls_client_cas"), sub, 1, 0, NULL);

    const char *bools[] = {"require_signature", "require_encryption", "allow_legacy_encryption"};
    int *vals[] = {&req_sig, &req_enc, &legacy};
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        const json_t *b = json_object_get(pt, bools[i]);
        if (!b)
            continue;
        snprintf(sub, sizeof(sub), "%s.%s", path, bools[i]);
        if (!json_is_boolean(b))
            aerr(a, sub, "must be true or false");
        else
            *vals[i] = json_is_true(b);
    }
    const char *m = member_str(a, pt, path, "mdn_signing", 0);
    if (m) {
        int ok = 0;
        for (const char *const *p = mdn_modes; *p && !ok; p++)
            ok = strcmp(*p, m) == 0;
        snprintf(sub, sizeof(sub), "%s.mdn_signing", path);
        if (!ok)
            aerr(a, sub, "must be \"if-requested\", \"always\" or \"never\"");
        else
            mdn = m;
    }
    const json_t *tp = json_object_get(pt, "tls_policy");
    struct mft_tls_policy policy;
    mft_err_clear(&err);
    snprintf(sub, sizeof(sub), "%s.tls_policy", path);
    if (mft_tls_policy_parse(tp, &policy, &err) != 0)
        aerr(a, sub, "%s", err.message);
    const json_t *sp = json_object_get(pt, "send");
    if (sp && !json_is_null(sp))
        send =
            send_record(a, sp, path, id ? id : "?", encr || json_object_get(pt, "encryption_cert"),
                        station_found ? &sf : NULL);
    if (send && policy.trust != MFT_TLS_TRUST_ANY) {
        static const char *const lists[] = {NULL, "tls_server_certs", "tls_server_cas",
                                            "tls_server_pins"};
        const char *u = json_string_value(json_object_get(send, "url"));
        if (u && strncmp(u, "https://", 8) == 0 &&
            json_array_size(json_object_get(send, lists[policy.trust])) == 0) {
            snprintf(sub, sizeof(sub), "%s.tls_policy.server_trust", path);
            aerr(a, sub, "trusts only %s, but send.%s is empty", lists[policy.trust],
                 lists[policy.trust]);
        }
    }
    if (req_sig && !sign && !json_object_get(pt, "signing_cert"))
        aerr(a, path, "require_signature is true but no signing_cert is given");
    if (json_array_size(tls_certs) == 0 && json_array_size(tls_cas) == 0)
        awarn(a, path,
              "no tls_client_certs or tls_client_cas: the partner cannot connect "
              "with mutual TLS");

    if (a->errors != errors_before || !id || !station || !as2)
        goto out;
    mft_err_clear(&err);
    if ((sign && mft_x509_certs_to_pem(sign, NULL, &sign_pem, &err) != 0) ||
        (encr && mft_x509_certs_to_pem(encr, NULL, &encr_pem, &err) != 0)) {
        aerr_mft(a, path, &err);
        goto out;
    }
    if (legacy)
        awarn(a, path,
              "allow_legacy_encryption: messages encrypted with RC2, RC4 or single DES are "
              "accepted from this partner; their encryption can be broken");
    rec = json_pack(
        "{s:i, s:s, s:s, s:s, s:s, s:s?, s:s?, s:O, s:O, s:b, s:b, s:b, s:s, s:O*, s:O*}", "schema",
        1, "kind", "partner", "id", id, "station", station, "as2_id", as2, "signing_cert", sign_pem,
        "encryption_cert", encr_pem, "tls_client_certs", tls_certs, "tls_client_cas", tls_cas,
        "require_signature", req_sig, "require_encryption", req_enc, "allow_legacy_encryption",
        legacy, "mdn_signing", mdn, "send", send, "tls_policy", json_is_object(tp) ? tp : NULL);
    struct planned *p = plan_add(a, path);
    if (p && rec) {
        snprintf(p->id, sizeof(p->id), "%s", id);
        snprintf(p->as2_id, sizeof(p->as2_id), "%s", as2);
        snprintf(p->station, sizeof(p->station), "%s", station);
        p->json = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
out:
    X509_free(sign);
    X509_free(encr);
    free(sign_pem);
    free(encr_pem);
    json_decref(tls_certs);
    json_decref(tls_cas);
    json_decref(send);
    json_decref(rec);
}

/* Duplicates inside the file, and AS2 ids already taken in Redis by another id. */
static void apply_check_unique(struct apply *a)
{
    for (size_t i = 0; i < a->n_items; i++) {
        const struct planned *p = &a->items[i];
        for (size_t j = 0; j < i; j++) {
            const struct planned *q = &a->items[j];
            if (p->is_station != q->is_station)
                continue;
            const char *kind = p->is_station ? "station" : "partner";
            if (strcmp(p->id, q->id) == 0)
                aerr(a, kind, "id \"%s\" is declared twice", p->id);
            else if (strcmp(p->as2_id, q->as2_id) == 0 &&
                     (p->is_station || strcmp(p->station, q->station) == 0))
                aerr(a, kind, "AS2 id \"%s\" is used by both %s and %s", p->as2_id, q->id, p->id);
        }
    }
    if (a->n_items == 0 || open_store(a->ctl) != 0)
        return;
    for (int kind = 0; kind < 2; kind++) {
        char **ids = NULL;
        size_t n = 0;
        struct mft_err err = {0};
        if ((kind ? mft_store_list_partners : mft_store_list_stations)(a->ctl->store, &ids, &n,
                                                                       &err) != 0) {
            aerr_mft(a, "redis", &err);
            return;
        }
        for (size_t i = 0; ids && i < n; i++) {
            char *json = NULL;
            if ((kind ? mft_store_get_partner : mft_store_get_station)(a->ctl->store, ids[i], &json,
                                                                       &err) != 0)
                continue;
            json_t *rec = json_loads(json, 0, NULL);
            const char *as2 = json_string_value(json_object_get(rec, "as2_id"));
            const char *st = json_string_value(json_object_get(rec, "station"));
            for (size_t k = 0; as2 && k < a->n_items; k++) {
                const struct planned *p = &a->items[k];
                if (p->is_station != !kind || strcmp(p->id, ids[i]) == 0 ||
                    strcmp(p->as2_id, as2) != 0)
                    continue;
                if (kind && (!st || strcmp(st, p->station) != 0))
                    continue;
                aerr(a, kind ? "partner" : "station",
                     "AS2 id \"%s\" of %s is already used by %s \"%s\"", as2, p->id,
                     kind ? "partner" : "station", ids[i]);
            }
            json_decref(rec);
            free(json);
        }
        mft_store_free_list(ids, n);
    }
}

static int cmd_apply(struct ctl *c, int argc, char **argv)
{
    struct opts o;
    struct apply *a = NULL;
    unsigned char *buf = NULL;
    size_t len = 0;
    json_t *root = NULL;
    json_error_t jerr;
    struct mft_err err = {0};
    int rc = EXIT_ERR;

    if (parse_opts(argc, argv, &o) != 0)
        return EXIT_USAGE;
    if (!o.file || o.npos > 0) {
        fprintf(stderr, "usage: mftctl apply -f FILE.json\n");
        return EXIT_USAGE;
    }
    a = calloc(1, sizeof(*a));
    if (!a)
        return EXIT_ERR;
    a->ctl = c;
    a->file = o.file;
    mft_err_clear(&err);
    if (mft_x509_read_file(o.file, &buf, &len, &err) != 0) {
        fprintf(stderr, "error: %s\n", err.message);
        goto out;
    }
    root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        fprintf(stderr, "error: %s:%d:%d: %s\n", o.file, jerr.line, jerr.column, jerr.text);
        goto out;
    }
    {
        const char *slash = strrchr(o.file, '/');
        if (!slash)
            snprintf(a->dir, sizeof(a->dir), ".");
        else if (slash == o.file)
            snprintf(a->dir, sizeof(a->dir), "/");
        else
            snprintf(a->dir, sizeof(a->dir), "%.*s", (int)(slash - o.file), o.file);
    }
    static const char *const top[] = {"stations", "partners", NULL};
    if (!json_is_object(root)) {
        aerr(a, "$", "must be an object with \"stations\" and/or \"partners\"");
        goto report;
    }
    check_members(a, root, "$", top);
    a->stations = json_object_get(root, "stations");
    const json_t *partners = json_object_get(root, "partners");
    if (a->stations && !json_is_array(a->stations))
        aerr(a, "stations", "must be a list");
    if (partners && !json_is_array(partners))
        aerr(a, "partners", "must be a list");
    if (!json_is_array(a->stations))
        a->stations = NULL;

    /* the master key is needed only when there is a station (keys) to wrap */
    if (json_array_size(a->stations) > 0) {
        if (mft_secret_parse_master_key(mft_cfg_get(ctl_vars, "MFT_MASTER_KEY"), a->mk, &err) == 0)
            a->have_mk = 1;
        else
            aerr_mft(a, "environment", &err);
    }
    size_t i;
    const json_t *v;
    json_array_foreach(a->stations, i, v) apply_station(a, v, i);
    if (json_is_array(partners))
        json_array_foreach(partners, i, v) apply_partner(a, v, i);
    if (a->errors == 0)
        apply_check_unique(a);

report:
    if (a->errors > 0) {
        fprintf(stderr, "%s: %d error%s, nothing written\n", o.file, a->errors,
                a->errors == 1 ? "" : "s");
        goto out;
    }
    if (open_store(c) != 0)
        goto out;
    for (int pass = 0; pass < 2; pass++) { /* stations first, then partners */
        for (size_t k = 0; k < a->n_items; k++) {
            struct planned *p = &a->items[k];
            char *old = NULL;
            int existed;
            if (p->is_station != (pass == 0))
                continue;
            existed = (p->is_station ? mft_store_get_station
                                     : mft_store_get_partner)(c->store, p->id, &old, &err) == 0;
            free(old);
            if ((p->is_station ? mft_store_put_station(c->store, p->id, p->as2_id, p->json, &err)
                               : mft_store_put_partner(c->store, p->id, p->station, p->as2_id,
                                                       p->json, &err)) != 0) {
                print_err(p->id, &err);
                goto out;
            }
            printf("%s/%s %s\n", p->is_station ? "station" : "partner", p->id,
                   existed ? "configured" : "created");
        }
    }
    rc = EXIT_OK;
out:
    if (a) {
        for (size_t k = 0; k < a->n_items; k++)
            free(a->items[k].json);
        OPENSSL_cleanse(a->mk, sizeof(a->mk));
        free(a);
    }
    json_decref(root);
    free(buf);
    return rc;
}

/* ======================================================================== */
/* get / describe                                                            */
/* ======================================================================== */

static json_t *load_record(struct ctl *c, int station, const char *id, int *absent)
{
    char *json = NULL;
    struct mft_err err = {0};
    json_t *rec;
    *absent = 0;
    int r = (station ? mft_store_get_station : mft_store_get_partner)(c->store, id, &json, &err);
    if (r == 1) {
        *absent = 1;
        return NULL;
    }
    if (r != 0) {
        print_err(id, &err);
        return NULL;
    }
    rec = json_loads(json, 0, NULL);
    free(json);
    if (!rec)
        fprintf(stderr, "mftctl: record %s:%s is not valid JSON\n", station ? "station" : "partner",
                id);
    return rec;
}

static json_t *object_view(struct ctl *c, int station, const char *id, time_t *earliest,
                           int *absent)
{
    json_t *rec = load_record(c, station, id, absent), *v;
    if (!rec)
        return NULL;
    v = station ? station_view(id, rec, earliest) : partner_view(id, rec, earliest);
    json_decref(rec);
    return v;
}

/* "0 cert(s), 1 CA(s), 0 pin(s)": how the server of a send view is
 * authenticated ("none (http)" for a plain-HTTP URL). */
static void trust_summary(const json_t *send, char *buf, size_t len)
{
    const char *url = json_string_value(json_object_get(send, "url"));
    if (url && strncasecmp(url, "http://", 7) == 0)
        snprintf(buf, len, "none (http)");
    else
        snprintf(buf, len, "%zu cert(s), %zu CA(s), %zu pin(s)",
                 json_array_size(json_object_get(send, "tls_server_certs")),
                 json_array_size(json_object_get(send, "tls_server_cas")),
                 json_array_size(json_object_get(send, "tls_server_pins")));
}

static int get_configs(struct ctl *c, int station)
{
    char **ids = NULL;
    size_t n = 0;
    struct mft_err err = {0};
    json_t *all = json_array();
    struct table t = {.ncol = station ? 5 : 8};
    int rc = EXIT_ERR;

    if ((station ? mft_store_list_stations : mft_store_list_partners)(c->store, &ids, &n, &err)) {
        print_err("list", &err);
        goto out;
    }
    if (station) {
        const char *h[] = {"ID", "AS2 ID", "SIGNING CERTIFICATE", "TLS CERTIFICATE", "NEXT EXPIRY"};
        table_add(&t, h);
    } else {
        const char *h[] = {"ID",          "STATION",  "AS2 ID",       "SIGNING CERTIFICATE",
                           "TLS CLIENTS", "SEND URL", "SERVER TRUST", "NEXT EXPIRY"};
        table_add(&t, h);
    }
    for (size_t i = 0; i < n; i++) {
        time_t earliest = 0;
        int absent;
        char exp[32] = "", ntls[48], trust[80] = "";
        json_t *v = object_view(c, station, ids[i], &earliest, &absent);
        if (!v)
            continue;
        if (earliest) {
            rfc3339(earliest, exp);
            if (earliest < time(NULL))
                snprintf(exp + 20, sizeof(exp) - 20, " (expired)");
        }
        if (station) {
            const char *row[] = {
                ids[i], json_string_value(json_object_get(v, "as2_id")),
                view_subject(json_object_get(json_object_get(v, "signing"), "certificate")),
                view_subject(json_object_get(json_object_get(v, "tls"), "certificate")), exp};
            table_add(&t, row);
        } else {
            snprintf(ntls, sizeof(ntls), "%zu cert(s), %zu CA(s)",
                     json_array_size(json_object_get(v, "tls_client_certs")),
                     json_array_size(json_object_get(v, "tls_client_cas")));
            const json_t *send = json_object_get(v, "send");
            const char *url = json_string_value(json_object_get(send, "url"));
            if (url)
                trust_summary(send, trust, sizeof(trust));
            const char *row[] = {ids[i],
                                 json_string_value(json_object_get(v, "station")),
                                 json_string_value(json_object_get(v, "as2_id")),
                                 view_subject(json_object_get(v, "signing_cert")),
                                 ntls,
                                 url,
                                 trust,
                                 exp};
            table_add(&t, row);
        }
        json_array_append_new(all, v);
    }
    if (c->json_out)
        print_json(all);
    else if (n == 0)
        printf("no %s\n", station ? "stations" : "partners");
    else
        table_print_free(&t);
    rc = EXIT_OK;
out:
    for (size_t i = 0; t.cells && i < t.nrow * t.ncol; i++)
        free(t.cells[i]);
    free(t.cells);
    json_decref(all);
    mft_store_free_list(ids, n);
    return rc;
}

/* Message fields, with the names ingress writes (see ingress/receive.c). */
static const char *kv_get(char **kv, size_t n, const char *name)
{
    for (size_t i = 0; i + 1 < n; i += 2)
        if (strcmp(kv[i], name) == 0)
            return kv[i + 1];
    return NULL;
}

static void ms_time(const char *ms, char buf[21])
{
    char *end;
    long long v;
    buf[0] = '\0';
    if (!ms)
        return;
    v = strtoll(ms, &end, 10);
    if (*end == '\0' && end != ms)
        rfc3339((time_t)(v / 1000), buf);
}

static json_t *message_json(const char *uuid, char **kv, size_t n)
{
    json_t *o = json_pack("{s:s}", "uuid", uuid);
    for (size_t i = 0; i + 1 < n; i += 2)
        json_object_set_new(o, kv[i], json_string(kv[i + 1]));
    char t[21];
    ms_time(kv_get(kv, n, "received_ms"), t);
    if (t[0])
        json_object_set_new(o, "received_at", json_string(t));
    return o;
}

/* Lists received messages, or with outbound the messages sent (newest first). */
static int get_messages(struct ctl *c, const struct opts *o, int outbound)
{
    char **uuids = NULL;
    size_t n = 0;
    struct mft_err err = {0};
    json_t *all = json_array();
    struct table t = {.ncol = 8};
    int rc = EXIT_ERR;

    int listed =
        outbound
            ? mft_store_list_out(c->store, o->station, (size_t)o->limit, &uuids, &n, &err)
            : mft_store_list_messages(c->store, o->station, (size_t)o->limit, &uuids, &n, &err);
    if (listed != 0) {
        print_err("messages", &err);
        goto out;
    }
    const char *h[] = {"UUID",           "TIME", "STATION", "PARTNER",
                       "AS2 MESSAGE-ID", "FILE", "SIZE",    outbound ? "STATE" : "DISPOSITION"};
    table_add(&t, h);
    for (size_t i = 0; i < n; i++) {
        char **kv = NULL;
        size_t cnt = 0;
        char when[21];
        char state[128];
        if ((outbound ? mft_store_out_get(c->store, uuids[i], &kv, &cnt, &err)
                      : mft_store_message_get(c->store, uuids[i], &kv, &cnt, &err)) != 0)
            continue;
        ms_time(kv_get(kv, cnt, outbound ? "created_ms" : "received_ms"), when);
        const char *disp = outbound ? "" : kv_get(kv, cnt, "mdn_disposition");
        if (!disp || !*disp)
            disp = kv_get(kv, cnt, "state");
        const char *kind = outbound ? kv_get(kv, cnt, "error_kind") : NULL;
        if (kind && *kind) {
            snprintf(state, sizeof(state), "%s %s", disp, kind);
            disp = state;
        }
        const char *row[] = {uuids[i],
                             when,
                             kv_get(kv, cnt, "station"),
                             kv_get(kv, cnt, "partner"),
                             kv_get(kv, cnt, "as2_message_id"),
                             kv_get(kv, cnt, "filename"),
                             kv_get(kv, cnt, "size"),
                             disp};
        table_add(&t, row);
        json_array_append_new(all, message_json(uuids[i], kv, cnt));
        mft_store_free_list(kv, cnt);
    }
    if (c->json_out)
        print_json(all);
    else if (n == 0)
        printf("no messages\n");
    else
        table_print_free(&t);
    rc = EXIT_OK;
out:
    for (size_t i = 0; t.cells && i < t.nrow * t.ncol; i++)
        free(t.cells[i]);
    free(t.cells);
    json_decref(all);
    mft_store_free_list(uuids, n);
    return rc;
}

static int cmd_get(struct ctl *c, int argc, char **argv)
{
    struct opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return EXIT_USAGE;
    c->json_out = o.json;
    if (o.npos != 1) {
        fprintf(stderr, "usage: mftctl get stations|partners|messages|sent [-o json]\n");
        return EXIT_USAGE;
    }
    const char *what = o.pos[0];
    int kind = (strcmp(what, "stations") == 0 || strcmp(what, "station") == 0)   ? 0
               : (strcmp(what, "partners") == 0 || strcmp(what, "partner") == 0) ? 1
               : (strcmp(what, "messages") == 0 || strcmp(what, "message") == 0) ? 2
               : (strcmp(what, "sent") == 0 || strcmp(what, "outbound") == 0)    ? 3
                                                                                 : -1;
    if (kind < 0) {
        fprintf(stderr, "mftctl get: unknown kind \"%s\" (stations, partners, messages, sent)\n",
                what);
        return EXIT_USAGE;
    }
    if (open_store(c) != 0)
        return EXIT_ERR;
    return kind >= 2 ? get_messages(c, &o, kind == 3) : get_configs(c, kind == 0);
}

static int cmd_describe(struct ctl *c, int argc, char **argv)
{
    struct opts o;
    json_t *v = NULL;
    int absent = 0;

    if (parse_opts(argc, argv, &o) != 0)
        return EXIT_USAGE;
    c->json_out = o.json;
    if (o.npos != 2) {
        fprintf(stderr, "usage: mftctl describe station|partner|message ID [-o json]\n");
        return EXIT_USAGE;
    }
    const char *what = o.pos[0], *id = o.pos[1];
    int kind = strcmp(what, "station") == 0   ? 0
               : strcmp(what, "partner") == 0 ? 1
               : strcmp(what, "message") == 0 ? 2
                                              : -1;
    if (kind < 0) {
        fprintf(stderr, "mftctl describe: unknown kind \"%s\" (station, partner, message)\n", what);
        return EXIT_USAGE;
    }
    if (open_store(c) != 0)
        return EXIT_ERR;
    if (kind == 2) {
        char **kv = NULL;
        size_t cnt = 0;
        struct mft_err err = {0};
        int r = mft_store_message_get(c->store, id, &kv, &cnt, &err);
        if (r < 0) {
            print_err(id, &err);
            return EXIT_ERR;
        }
        absent = r == 1;
        if (!absent)
            v = message_json(id, kv, cnt);
        mft_store_free_list(kv, cnt);
    } else {
        time_t earliest = 0;
        v = object_view(c, kind == 0, id, &earliest, &absent);
    }
    if (absent) {
        fprintf(stderr, "mftctl: %s \"%s\" not found\n", what, id);
        return EXIT_ERR;
    }
    if (!v)
        return EXIT_ERR;
    if (c->json_out)
        print_json(v);
    else
        print_text(v, 0);
    json_decref(v);
    return EXIT_OK;
}

/* ======================================================================== */
/* dispatch                                                                  */
/* ======================================================================== */

static int cmd_help(struct ctl *c, int argc, char **argv);

static int cmd_events(struct ctl *c, int argc, char **argv)
{
    return ctl_events(ctl_vars, argc, argv);
}

static int cmd_send(struct ctl *c, int argc, char **argv)
{
    return ctl_send(ctl_vars, argc, argv);
}

static int cmd_test_connection(struct ctl *c, int argc, char **argv)
{
    json_t *view = NULL;
    int json = 0, rc = ctl_test_connection(ctl_vars, argc, argv, &json, &view);
    (void)c;
    if (view) {
        if (json)
            print_json(view);
        else
            print_text(view, 0);
        json_decref(view);
    }
    return rc;
}

static const struct command {
    const char *name;
    int (*handler)(struct ctl *c, int argc, char **argv);
    const char *args;
    const char *help;
} commands[] = {
    {"apply", cmd_apply, "-f FILE.json",
     "declare stations and partners (validates everything, then writes to Redis)"},
    {"get", cmd_get, "stations|partners|messages|sent [-o json] [--station ID] [--limit N]",
     "list objects (messages received, or sent, newest first)"},
    {"describe", cmd_describe, "station|partner|message ID [-o json]",
     "everything about one object: certificates, fingerprints, validity (never keys)"},
    {"events", cmd_events, "TOPIC [--follow] [--count N] [--timeout-ms MS]",
     "print a topic's events as JSON lines from the beginning (headers + decoded event)"},
    {"send", cmd_send,
     "--partner ID [--station ID] FILE [--wait SECONDS] [--request-id ID] [--as NAME] "
     "[--content-type T] [--sign MD|none] [--encrypt CIPHER|none] [--compress WHEN] "
     "[--mdn sync|async|none] [--subject S]",
     "send a file to a partner (SendRequested on mft.outbound.v1); --wait follows its state"},
    {"test-connection", cmd_test_connection, "PARTNER [-o json] [--timeout S] [--http]",
     "pre-flight: the TLS handshake egress would make with the partner (no message sent); the "
     "verdict, its remedy and every raw fact; exit 0 only when it succeeded"},
    {"help", cmd_help, "", "this help"},
    {NULL, NULL, NULL, NULL},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: mftctl COMMAND [ARGS]\n\nCommands:\n");
    for (const struct command *cmd = commands; cmd->name; cmd++)
        fprintf(f, "  %-9s %s\n            %s\n", cmd->name, cmd->args[0] ? cmd->args : "",
                cmd->help);
    fprintf(f, "\nExit status: 0 ok, 1 error, 2 usage.\n\n");
    mft_cfg_usage(f, "mftctl reads:", ctl_vars);
}

static int cmd_help(struct ctl *c, int argc, char **argv)
{
    usage(stdout);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    struct ctl c = {0};
    int rc = EXIT_USAGE;

    mft_log_init("mftctl");
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    for (const struct command *cmd = commands; cmd->name; cmd++) {
        if (strcmp(cmd->name, argv[1]) != 0)
            continue;
        for (int i = 2; i < argc; i++)
            if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
                printf("usage: mftctl %s %s\n  %s\n", cmd->name, cmd->args, cmd->help);
                return EXIT_OK;
            }
        rc = cmd->handler(&c, argc - 1, argv + 1);
        mft_store_close(c.store);
        return rc;
    }
    fprintf(stderr, "mftctl: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
