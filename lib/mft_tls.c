/*
 * mft_tls — the raw facts of one TLS handshake (see mft_tls.h).
 */
#include "mft_tls.h"
#include "mft_time.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

void mft_tls_facts_init(struct mft_tls_facts *f, const char *direction)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->direction, sizeof(f->direction), "%s", direction ? direction : "");
    mft_rfc3339_ms(mft_now_ms(), f->time, sizeof(f->time));
}

void mft_tls_facts_alert(struct mft_tls_facts *f, int sent, int fatal, int code)
{
    if (f->n_alerts >= MFT_TLS_MAX_ALERTS)
        return;
    f->alerts[f->n_alerts].sent = sent ? 1 : 0;
    f->alerts[f->n_alerts].fatal = fatal ? 1 : 0;
    f->alerts[f->n_alerts].code = code;
    f->n_alerts++;
}

const struct mft_tls_alert *mft_tls_facts_fatal(const struct mft_tls_facts *f, int sent)
{
    for (unsigned i = 0; i < f->n_alerts; i++)
        if (f->alerts[i].fatal && f->alerts[i].sent == (sent ? 1 : 0))
            return &f->alerts[i];
    return NULL;
}

void mft_tls_cert_fill(struct mft_tls_cert *out, const X509 *cert)
{
    memset(out, 0, sizeof(*out));
    if (!cert)
        return;
    out->present = 1;
    mft_x509_facts(cert, &out->x);
    mft_x509_names(cert, out->names, sizeof(out->names));
    EVP_PKEY *key = X509_get0_pubkey(cert);
    if (key)
        mft_x509_key_desc(key, out->key, sizeof(out->key));
}

/* RFC 8446 6 and RFC 5246 7.2 (the ones still sent by real stacks). */
static const struct {
    int code;
    const char *name;
} alert_names[] = {
    {0, "close_notify"},
    {10, "unexpected_message"},
    {20, "bad_record_mac"},
    {21, "decryption_failed"},
    {22, "record_overflow"},
    {30, "decompression_failure"},
    {40, "handshake_failure"},
    {41, "no_certificate"},
    {42, "bad_certificate"},
    {43, "unsupported_certificate"},
    {44, "certificate_revoked"},
    {45, "certificate_expired"},
    {46, "certificate_unknown"},
    {47, "illegal_parameter"},
    {48, "unknown_ca"},
    {49, "access_denied"},
    {50, "decode_error"},
    {51, "decrypt_error"},
    {60, "export_restriction"},
    {70, "protocol_version"},
    {71, "insufficient_security"},
    {80, "internal_error"},
    {86, "inappropriate_fallback"},
    {90, "user_canceled"},
    {100, "no_renegotiation"},
    {109, "missing_extension"},
    {110, "unsupported_extension"},
    {111, "certificate_unobtainable"},
    {112, "unrecognized_name"},
    {113, "bad_certificate_status_response"},
    {114, "bad_certificate_hash_value"},
    {115, "unknown_psk_identity"},
    {116, "certificate_required"},
    {120, "no_application_protocol"},
};

const char *mft_tls_alert_name(int code)
{
    for (size_t i = 0; i < sizeof(alert_names) / sizeof(alert_names[0]); i++)
        if (alert_names[i].code == code)
            return alert_names[i].name;
    return "unknown";
}

const char *mft_tls_version_name(unsigned version)
{
    switch (version) {
    case 0:
        return "";
    case 0x0300:
        return "SSLv3";
    case 0x0301:
        return "TLSv1";
    case 0x0302:
        return "TLSv1.1";
    case 0x0303:
        return "TLSv1.2";
    case 0x0304:
        return "TLSv1.3";
    default:
        return "unknown";
    }
}

static void cert_detail(struct mft_err *err, const char *whose, const struct mft_tls_cert *c)
{
    if (!c->present) {
        mft_err_detail(err, "%s certificate: none", whose);
        return;
    }
    mft_err_detail(err,
                   "%s certificate: subject=%s, issuer=%s, serial=%s, sha256=%s, valid %s to %s, "
                   "names %s, key %s",
                   whose, c->x.subject, c->x.issuer, c->x.serial, c->x.sha256, c->x.not_before,
                   c->x.not_after, c->names, c->key[0] ? c->key : "?");
}

int mft_tls_facts_detail(const struct mft_tls_facts *f, struct mft_err *err)
{
    char alerts[MFT_TLS_MAX_ALERTS * 48] = "";
    size_t o = 0;
    for (unsigned i = 0; i < f->n_alerts && o + 1 < sizeof(alerts); i++) {
        int w = snprintf(alerts + o, sizeof(alerts) - o, "%s%s %s %s(%d)", o ? ", " : "",
                         f->alerts[i].sent ? "sent" : "received",
                         f->alerts[i].fatal ? "fatal" : "warning",
                         mft_tls_alert_name(f->alerts[i].code), f->alerts[i].code);
        if (w > 0)
            o = (size_t)w < sizeof(alerts) - o ? o + (size_t)w : sizeof(alerts) - 1;
    }
    mft_err_detail(err,
                   "tls %s at %s: peer %s, sni %s%s%s, offered %s, accepted %s, negotiated %s%s%s, "
                   "alerts %s",
                   f->direction, f->time, f->peer_address[0] ? f->peer_address : "?",
                   f->sni[0] ? f->sni : "(none)", f->url_host[0] ? ", url host " : "", f->url_host,
                   f->versions_offered[0] ? f->versions_offered : "?",
                   f->versions_accepted[0] ? f->versions_accepted : "?",
                   f->version[0] ? f->version : "none", f->cipher[0] ? " " : "", f->cipher,
                   o ? alerts : "none");
    if (f->partner_id[0])
        mft_err_detail(err, "partner %s (by %s)", f->partner_id,
                       f->partner_basis[0] ? f->partner_basis : "registration");
    if (f->verify_result[0])
        mft_err_detail(err, "x509 verify %ld: %s", f->verify_code, f->verify_result);
    if (f->library_error[0])
        mft_err_detail(err, "library: %s", f->library_error);
    cert_detail(err, "peer", &f->peer_cert);
    if (f->local_cert.present || f->station_id[0])
        cert_detail(err, f->station_id[0] ? "our (station)" : "our", &f->local_cert);
    return -1;
}

/* ---- cipher suites by IANA id ------------------------------------------------ */

/* Every suite OpenSSL knows (TLS 1.2 and 1.3), by IANA id: its standard name. */
static struct {
    unsigned id;
    char name[64];
} suites[512];
static size_t n_suites;
static pthread_once_t suites_once = PTHREAD_ONCE_INIT;

static void suites_load(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx)
        return;
    SSL_CTX_set_security_level(ctx, 0);
    if (SSL_CTX_set_cipher_list(ctx, "ALL:COMPLEMENTOFALL") == 1 &&
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                      "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:"
                                      "TLS_AES_128_CCM_8_SHA256") == 1) {
        STACK_OF(SSL_CIPHER) *all = SSL_CTX_get_ciphers(ctx);
        for (int i = 0; i < sk_SSL_CIPHER_num(all) && n_suites < sizeof(suites) / sizeof(suites[0]);
             i++) {
            const SSL_CIPHER *ci = sk_SSL_CIPHER_value(all, i);
            const char *std = SSL_CIPHER_standard_name(ci);
            if (!std || strlen(std) >= sizeof(suites[0].name))
                continue;
            suites[n_suites].id = SSL_CIPHER_get_protocol_id(ci);
            memcpy(suites[n_suites].name, std, strlen(std) + 1);
            n_suites++;
        }
    }
    SSL_CTX_free(ctx);
}

/* Upper case, "_WITH_" as "_": RFC 8446 names have no "WITH". */
static void suite_norm(const char *in, char *out, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 1 < len; i++) {
        if (strncasecmp(in + i, "_WITH_", 6) == 0)
            i += 5; /* keep the second '_' */
        out[o++] = (char)toupper((unsigned char)in[i]);
    }
    out[o] = '\0';
}

int mft_tls_suite_id(const char *iana_name)
{
    char want[64], have[64];
    pthread_once(&suites_once, suites_load);
    if (!iana_name || strlen(iana_name) >= sizeof(want))
        return -1;
    suite_norm(iana_name, want, sizeof(want));
    for (size_t i = 0; i < n_suites; i++) {
        suite_norm(suites[i].name, have, sizeof(have));
        if (strcmp(want, have) == 0)
            return (int)suites[i].id;
    }
    return -1;
}

const char *mft_tls_suite_name(unsigned id)
{
    pthread_once(&suites_once, suites_load);
    for (size_t i = 0; i < n_suites; i++)
        if (suites[i].id == id)
            return suites[i].name;
    return NULL;
}
