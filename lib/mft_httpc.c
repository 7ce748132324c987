/*
 * mft_httpc — one HTTP(S) POST with libcurl's easy interface and the answer.
 *
 * Called by egress to send an AS2 message and read the synchronous MDN (and
 * by anything else that must POST to a partner). Each call builds its own
 * curl handle; libcurl's OpenSSL backend hands us each new SSL_CTX through
 * CURLOPT_SSL_CTX_FUNCTION, where we install the station's client
 * certificate and our own certificate verification (the partner's registered
 * certificates, pins and CAs; never the system store). The TLS callbacks
 * record what they saw (the server's certificate, why it was refused, the
 * alert the server sent, protocol and cipher) in the call's context, so that
 * a failure is reported with a precise error kind instead of curl's text.
 *
 * Threading: no shared state besides curl_global_init and one SSL_CTX ex_data
 * index, both set up once (pthread_once). Any number of threads may call.
 * Owns nothing between calls: no connection reuse, no TLS session cache.
 * Takes references on a client identity the caller has already parsed.
 */
#include "mft_httpc.h"
#include "mft_tls.h"
#include "mft_x509.h"

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_HEADERS 256              /* header lines of one answer */
#define MAX_HEADER_BYTES (64u << 10) /* all header lines of one answer */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_rc = -1;
static int ctx_index = -1; /* SSL_CTX ex_data slot holding the struct link */

struct call;

/*
 * What the TLS callbacks reach: the call being made. A connection kept for
 * reuse outlives the call that opened it, so its callbacks go through this
 * link, which each call points at itself before it starts.
 */
struct link {
    struct call *cur;
};

/* A kept connection (mft_httpc.h): a curl handle whose connection cache holds
 * at most the one connection, and what its handshake showed. */
struct mft_httpc_conn {
    CURL *h;
    struct link link;
    char key[512];
    X509 *leaf; /* the server certificate accepted at the handshake */
    char protocol[16], cipher[64];
};

/* Everything one call owns, and what the callbacks observed. */
struct call {
    const struct mft_httpc_request *rq;
    int https;
    char host[256];     /* the URL's host; an IPv6 literal without brackets */
    char hostport[300]; /* "host:port" for messages */
    /* the station's client certificate, parsed before the transfer */
    X509 *client_cert;
    STACK_OF(X509) * client_chain;
    EVP_PKEY *client_key;
    int client_failed;
    /* TLS observations */
    X509 *leaf; /* the server's certificate (a reference) */
    int verify_failed;
    struct mft_err vfail; /* why it was refused */
    int alert_in;         /* fatal alert received from the server (description), or 0 */
    char protocol[16], cipher[64];
    /* chunked request body */
    size_t sent;
    /* the answer */
    unsigned char *body;
    size_t len, cap, max;
    char **headers;
    size_t n_headers, cap_headers, header_bytes;
    int too_large, headers_too_large, oom;
};

static void global_init(void)
{
    const curl_version_info_data *v;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return;
    /* our trust rules run inside OpenSSL: another TLS backend would skip them */
    v = curl_version_info(CURLVERSION_NOW);
    if (!v || !v->ssl_version || strncmp(v->ssl_version, "OpenSSL/", 8) != 0)
        return;
    ctx_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    if (ctx_index >= 0)
        init_rc = 0;
}

/* ---- server certificate verification ------------------------------------- */

/* base64 SHA-256 of the certificate's SubjectPublicKeyInfo (44 characters). */
static int spki_pin(X509 *cert, char out[64])
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
    int rc = -1;

    out[0] = '\0';
    if (n > 0 && EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32) {
        EVP_EncodeBlock((unsigned char *)out, md, 32);
        rc = 0;
    }
    OPENSSL_free(der);
    return rc;
}

/* A registered pin ("sha256//" prefix and surrounding blanks allowed) equals ours. */
static int pin_equal(const char reg[64], const char *ours)
{
    size_t i = 0, n = strlen(ours);
    while (i < 64 && (reg[i] == ' ' || reg[i] == '\t'))
        i++;
    if (i + 8 <= 64 && strncmp(reg + i, "sha256//", 8) == 0)
        i += 8;
    if (i + n > 64 || memcmp(reg + i, ours, n) != 0)
        return 0;
    i += n;
    return i == 64 || reg[i] == '\0' || reg[i] == ' ' || reg[i] == '\t' || reg[i] == '\n';
}

/* Appends the identifying facts of the certificate presented to e's detail. */
static void detail_presented(struct mft_err *e, X509 *leaf)
{
    struct mft_x509_facts f;
    mft_x509_facts(leaf, &f);
    mft_err_detail(e,
                   "server certificate subject=%s, issuer=%s, sha256=%s, serial=%s, valid %s to %s",
                   f.subject, f.issuer, f.sha256, f.serial, f.not_before, f.not_after);
}

/* Our rules (see mft_httpc.h). Returns 1 to accept; 0 with c->vfail filled. */
static int trust_decide(struct call *c, X509 *leaf, STACK_OF(X509) * chain)
{
    const struct mft_httpc_trust *t = c->rq->trust;
    int n_certs = t->certs ? sk_X509_num(t->certs) : 0;
    int n_cas = t->cas ? sk_X509_num(t->cas) : 0;
    struct mft_err verr;
    char pin[64];

    for (int i = 0; i < n_certs; i++)
        if (X509_cmp(leaf, sk_X509_value(t->certs, i)) == 0)
            return 1;
    if (spki_pin(leaf, pin) != 0) {
        mft_err_set(&c->vfail, MFT_E_INTERNAL, "cannot hash the server's public key");
        return 0;
    }
    for (size_t i = 0; t->pins && i < t->n_pins; i++)
        if (pin_equal(t->pins[i], pin))
            return 1;
    if (n_cas > 0) {
        struct mft_x509_verify_args va = {t->cas,     chain,           leaf,
                                          time(NULL), MFT_X509_SERVER, c->host};
        if (mft_x509_verify(&va, &verr) == 0)
            return 1;
        if (verr.kind != MFT_E_TLS_SERVER_UNTRUSTED) {
            c->vfail = verr;
            if (verr.kind != MFT_E_NO_MEMORY)
                detail_presented(&c->vfail, leaf);
            return 0;
        }
    }
    mft_err_set(&c->vfail, MFT_E_TLS_SERVER_UNTRUSTED, NULL);
    detail_presented(&c->vfail, leaf);
    mft_err_detail(&c->vfail, "its key pin is %s", pin);
    if (n_certs)
        mft_err_detail(&c->vfail, "not one of the %d registered certificates", n_certs);
    if (t->n_pins)
        mft_err_detail(&c->vfail, "matches none of the %zu registered pins", t->n_pins);
    if (n_cas)
        mft_err_detail(&c->vfail, "no chain to the %d registered CAs: %s", n_cas, verr.detail);
    return 0;
}

/* SSL_CTX_set_cert_verify_callback: replaces OpenSSL's (and curl's) verification. */
static int verify_cb(X509_STORE_CTX *sctx, void *arg)
{
    struct call *c = ((struct link *)arg)->cur;
    X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
    int ok = 0;

    ERR_set_mark(); /* keep our checks' errors out of what curl reports */
    if (!leaf) {
        mft_err_set(&c->vfail, MFT_E_TLS_HANDSHAKE, "the server sent no TLS certificate");
    } else {
        if (c->leaf != leaf && X509_up_ref(leaf)) {
            X509_free(c->leaf);
            c->leaf = leaf;
        }
        ok = trust_decide(c, leaf, X509_STORE_CTX_get0_untrusted(sctx));
    }
    ERR_pop_to_mark();
    if (!ok) {
        c->verify_failed = 1;
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    X509_STORE_CTX_set_error(sctx, X509_V_OK);
    return 1;
}

/* SSL_CTX_set_info_callback: the server's fatal alert, the negotiated session. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    struct link *l = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
    struct call *c = l ? l->cur : NULL;
    if (!c)
        return;
    if ((where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT && (ret >> 8) == SSL3_AL_FATAL &&
        !c->alert_in)
        c->alert_in = ret & 0xff;
    if (where & SSL_CB_HANDSHAKE_DONE) {
        const SSL_CIPHER *ciph = SSL_get_current_cipher(ssl);
        snprintf(c->protocol, sizeof(c->protocol), "%s", SSL_get_version(ssl));
        snprintf(c->cipher, sizeof(c->cipher), "%s", ciph ? SSL_CIPHER_get_name(ciph) : "");
    }
}

/* CURLOPT_SSL_CTX_FUNCTION: called for each new TLS connection, after curl's own set-up. */
static CURLcode sslctx_cb(CURL *h, void *sslctx, void *userptr)
{
    SSL_CTX *ctx = sslctx;
    struct link *l = userptr;
    struct call *c = l->cur;

    (void)h;
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_ex_data(ctx, ctx_index, l))
        return CURLE_SSL_CONNECT_ERROR;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, verify_cb, l);
    SSL_CTX_set_info_callback(ctx, info_cb);
    if (c->client_cert) {
        if (SSL_CTX_use_certificate(ctx, c->client_cert) != 1 ||
            SSL_CTX_use_PrivateKey(ctx, c->client_key) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1 || SSL_CTX_clear_chain_certs(ctx) != 1) {
            c->client_failed = 1;
            return CURLE_SSL_CERTPROBLEM;
        }
        for (int i = 0; c->client_chain && i < sk_X509_num(c->client_chain); i++)
            if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(c->client_chain, i)) != 1) {
                c->client_failed = 1;
                return CURLE_SSL_CERTPROBLEM;
            }
    }
    return CURLE_OK;
}

/* ---- request and answer ------------------------------------------------------ */

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct call *c = ud;
    size_t room = size * nitems, left = c->rq->len - c->sent;
    size_t k = left < room ? left : room;
    if (k)
        memcpy(buf, c->rq->body + c->sent, k);
    c->sent += k;
    return k;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct call *c = ud;
    size_t k = size * nmemb;
    if (k > c->max - c->len) {
        c->too_large = 1;
        return 0;
    }
    if (c->len + k + 1 > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 16384;
        unsigned char *nb;
        if (ncap < c->len + k + 1)
            ncap = c->len + k + 1;
        if (ncap > c->max + 1)
            ncap = c->max + 1;
        if (!(nb = realloc(c->body, ncap))) {
            c->oom = 1;
            return 0;
        }
        c->body = nb;
        c->cap = ncap;
    }
    memcpy(c->body + c->len, p, k);
    c->len += k;
    return k;
}

static void free_headers(char **h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(h[i]);
    free(h);
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct call *c = ud;
    size_t k = size * nmemb, l = k;

    while (l > 0 && (p[l - 1] == '\n' || p[l - 1] == '\r'))
        l--;
    if (l >= 5 && memcmp(p, "HTTP/", 5) == 0) { /* a new answer (after a 1xx): start over */
        free_headers(c->headers, c->n_headers);
        c->headers = NULL;
        c->n_headers = c->cap_headers = c->header_bytes = 0;
        return k;
    }
    if (l == 0)
        return k;
    c->header_bytes += k;
    if (c->header_bytes > MAX_HEADER_BYTES) {
        c->headers_too_large = 1;
        return 0;
    }
    if ((p[0] == ' ' || p[0] == '\t') && c->n_headers > 0) { /* obsolete line folding */
        char *last = c->headers[c->n_headers - 1], *nl;
        size_t ll = strlen(last), s = 0;
        while (s < l && (p[s] == ' ' || p[s] == '\t'))
            s++;
        if (!(nl = realloc(last, ll + 1 + (l - s) + 1))) {
            c->oom = 1;
            return 0;
        }
        nl[ll] = ' ';
        memcpy(nl + ll + 1, p + s, l - s);
        nl[ll + 1 + (l - s)] = '\0';
        c->headers[c->n_headers - 1] = nl;
        return k;
    }
    if (c->n_headers == MAX_HEADERS) {
        c->headers_too_large = 1;
        return 0;
    }
    if (c->n_headers == c->cap_headers) {
        size_t ncap = c->cap_headers ? c->cap_headers * 2 : 16;
        char **nh = realloc(c->headers, ncap * sizeof(*nh));
        if (!nh) {
            c->oom = 1;
            return 0;
        }
        c->headers = nh;
        c->cap_headers = ncap;
    }
    if (!(c->headers[c->n_headers] = strndup(p, l))) {
        c->oom = 1;
        return 0;
    }
    c->n_headers++;
    return k;
}

static int header_is(const char *h, size_t namelen, const char *name)
{
    return strlen(name) == namelen && strncasecmp(h, name, namelen) == 0;
}

/* The caller's header lines, checked, plus ours. Returns 0 or -1 with err. */
static int build_headers(const struct mft_httpc_request *rq, struct curl_slist **out,
                         struct mft_err *err)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    struct curl_slist *list = NULL, *n;
    int has_type = 0;

    for (const char *const *h = rq->headers; h && *h; h++) {
        size_t nl = strcspn(*h, ":");
        int bad = nl == 0 || (*h)[nl] != ':' || strpbrk(*h, "\r\n") != NULL;
        for (size_t i = 0; !bad && i < nl; i++)
            bad = !((*h)[i] >= 'a' && (*h)[i] <= 'z') && !((*h)[i] >= 'A' && (*h)[i] <= 'Z') &&
                  !((*h)[i] >= '0' && (*h)[i] <= '9') && !strchr(tchar, (*h)[i]);
        if (bad || header_is(*h, nl, "Content-Length") || header_is(*h, nl, "Transfer-Encoding") ||
            header_is(*h, nl, "Expect")) {
            curl_slist_free_all(list);
            mft_err_set(err, MFT_E_CONFIG, "invalid or reserved request header");
            return mft_err_detail(err, "header: %.80s", *h);
        }
        has_type |= header_is(*h, nl, "Content-Type");
        if (!(n = curl_slist_append(list, *h)))
            goto oom;
        list = n;
    }
    if (!has_type) {
        if (!(n = curl_slist_append(list, "Content-Type: application/octet-stream")))
            goto oom;
        list = n;
    }
    if (!(n = curl_slist_append(list, "Expect:")))
        goto oom;
    list = n;
    if (!rq->content_length) {
        if (!(n = curl_slist_append(list, "Transfer-Encoding: chunked")))
            goto oom;
        list = n;
    }
    *out = list;
    return 0;
oom:
    curl_slist_free_all(list);
    return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
}

/* Scheme, host and port of the URL into c. Returns 0 or -1 with err (CONFIG). */
static int parse_url(struct call *c, const char *url, struct mft_err *err)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -1;

    if (!u)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    if (!url || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK) {
        mft_err_set(err, MFT_E_CONFIG, "invalid URL: %.200s", url ? url : "(none)");
        goto out;
    }
    if (strcasecmp(scheme, "https") == 0) {
        c->https = 1;
    } else if (strcasecmp(scheme, "http") != 0) {
        mft_err_set(err, MFT_E_CONFIG, "the URL must be http:// or https://: %.200s", url);
        goto out;
    }
    if (host[0] == '[') {
        size_t hl = strcspn(host + 1, "]%");
        snprintf(c->host, sizeof(c->host), "%.*s", (int)hl, host + 1);
    } else {
        snprintf(c->host, sizeof(c->host), "%s", host);
    }
    snprintf(c->hostport, sizeof(c->hostport), "%s:%s", host, port);
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

/* The identity the caller parsed: references on it, checked. Returns 0 or -1
 * (what was taken is in c, freed by the caller either way). */
static int take_client(struct call *c, const struct mft_httpc_client_keys *k, struct mft_err *err)
{
    if (!k->cert || !k->key)
        return mft_err_set(err, MFT_E_CONFIG,
                           "the TLS client certificate needs both the certificate and the key");
    if (X509_up_ref(k->cert) != 1)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    c->client_cert = k->cert;
    if (EVP_PKEY_up_ref(k->key) != 1)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    c->client_key = k->key;
    if (k->chain && !(c->client_chain = X509_chain_up_ref(k->chain)))
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    if (!mft_x509_key_matches_cert(c->client_cert, c->client_key))
        return mft_err_set(err, MFT_E_CONFIG, "the TLS client key does not match its certificate");
    return 0;
}

/* The station's client certificate (+chain) and key, checked: rq->client_keys
 * when given, else parsed from rq->client. Returns 0 or -1. */
static int load_client(struct call *c, const struct mft_httpc_request *rq, struct mft_err *err)
{
    const struct mft_httpc_client_id *id = rq->client;
    STACK_OF(X509) *certs = NULL;

    if (rq->client_keys)
        return take_client(c, rq->client_keys, err);
    if (!id || (!id->cert_pem && !id->key_pem))
        return 0;
    if (!id->cert_pem || !id->key_pem)
        return mft_err_set(err, MFT_E_CONFIG,
                           "the TLS client certificate needs both the certificate and the key");
    if (mft_x509_load_certs_mem(id->cert_pem, strlen(id->cert_pem), &certs, err) != 0 ||
        mft_x509_load_key_mem(id->key_pem, strlen(id->key_pem), NULL, &c->client_key, err) != 0) {
        sk_X509_pop_free(certs, X509_free);
        return mft_err_detail(err, "while loading the TLS client certificate");
    }
    c->client_cert = sk_X509_shift(certs);
    c->client_chain = certs;
    if (!mft_x509_key_matches_cert(c->client_cert, c->client_key))
        return mft_err_set(err, MFT_E_CONFIG, "the TLS client key does not match its certificate");
    return 0;
}

/* Parses the first "error:XXXXXXXX:" OpenSSL code in curl's message (0 if none). */
static unsigned long openssl_code(const char *msg)
{
    const char *p = strstr(msg, "error:");
    char *end;
    unsigned long e;
    if (!p)
        return 0;
    e = strtoul(p + 6, &end, 16);
    return end == p + 14 && *end == ':' ? e : 0;
}

/* Alerts that mean "your client certificate is missing or not accepted". */
static int alert_about_client_cert(int code)
{
    return code == 40 || code == 42 || code == 43 || code == 44 || code == 45 || code == 46 ||
           code == 48 || code == 49 || code == 116;
}

/* A failed TLS set-up that our verification did not refuse. */
static int tls_failure(const struct call *c, const char *msg, struct mft_err *err)
{
    unsigned long e = openssl_code(msg);
    int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;

    if (c->client_failed) {
        mft_err_set(err, MFT_E_CONFIG, "the TLS client certificate cannot be used");
    } else if (reason == SSL_R_WRONG_VERSION_NUMBER) {
        mft_err_set(err, MFT_E_TLS_NOT_TLS, "%s does not answer in TLS", c->hostport);
    } else if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE ||
               reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION) {
        mft_err_set(err, MFT_E_TLS_NO_COMMON_PROTOCOL, "%s offers no TLS 1.2 or 1.3", c->hostport);
    } else if (c->alert_in == 70) {
        mft_err_set(err, MFT_E_TLS_NO_COMMON_PROTOCOL, "%s accepts no TLS version we offer",
                    c->hostport);
    } else if (alert_about_client_cert(c->alert_in) && !c->client_cert) {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE,
                    "%s requires a TLS client certificate and none is configured (alert %d %s)",
                    c->hostport, c->alert_in, mft_tls_alert_name(c->alert_in));
        if (err)
            snprintf(err->remedy, sizeof(err->remedy),
                     "configure the station's TLS client certificate, and have the partner "
                     "register it");
    } else if (alert_about_client_cert(c->alert_in)) {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE,
                    "%s refused the TLS handshake, probably our client certificate (alert %d %s)",
                    c->hostport, c->alert_in, mft_tls_alert_name(c->alert_in));
        if (err)
            snprintf(err->remedy, sizeof(err->remedy),
                     "check that the partner registered the station's TLS client certificate or "
                     "its CA (named in the detail)");
    } else if (c->alert_in) {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE, "%s refused the TLS handshake (alert %d %s)",
                    c->hostport, c->alert_in, mft_tls_alert_name(c->alert_in));
    } else {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE, "the TLS handshake with %s failed", c->hostport);
    }
    mft_err_detail(err, "%s", msg);
    if (c->client_cert) {
        struct mft_x509_facts f;
        mft_x509_facts(c->client_cert, &f);
        mft_err_detail(err, "our client certificate subject=%s, sha256=%s", f.subject, f.sha256);
    }
    return mft_err_openssl(err);
}

/* Turns a failed transfer into an error kind. Returns -1. */
static int classify(CURL *h, const struct call *c, CURLcode cc, const char *errbuf,
                    struct mft_err *err)
{
    const char *msg = errbuf[0] ? errbuf : curl_easy_strerror(cc);
    long os_errno = 0;

    if (c->verify_failed) {
        if (err)
            *err = c->vfail;
        return -1;
    }
    if (c->too_large || cc == CURLE_FILESIZE_EXCEEDED)
        return mft_err_set(err, MFT_E_HTTP_RESPONSE_TOO_LARGE,
                           "the answer from %s is larger than %zu bytes", c->hostport, c->max);
    if (c->headers_too_large)
        return mft_err_set(
            err, MFT_E_HTTP_RESPONSE_TOO_LARGE,
            "the answer from %s has more than %d header lines or %u bytes of headers", c->hostport,
            MAX_HEADERS, MAX_HEADER_BYTES);
    if (c->oom || cc == CURLE_OUT_OF_MEMORY)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
    switch (cc) {
    case CURLE_COULDNT_RESOLVE_HOST:
        mft_err_set(err, MFT_E_DNS, "cannot resolve %s", c->host);
        return mft_err_detail(err, "%s", msg);
    case CURLE_COULDNT_CONNECT:
        mft_err_set(err, MFT_E_CONNECT, "cannot connect to %s", c->hostport);
        mft_err_detail(err, "%s", msg);
        if (os_errno && strerrordesc_np((int)os_errno))
            mft_err_detail(err, "%s", strerrordesc_np((int)os_errno));
        return -1;
    case CURLE_OPERATION_TIMEDOUT:
        mft_err_set(err, MFT_E_TIMEOUT, "%s did not answer in time", c->hostport);
        return mft_err_detail(err, "%s", msg);
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_USE_SSL_FAILED:
        return tls_failure(c, msg, err);
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        if (c->alert_in)
            return tls_failure(c, msg, err);
        mft_err_set(err, MFT_E_CONNECT, "the connection to %s was lost before the whole answer",
                    c->hostport);
        mft_err_detail(err, "%s", msg);
        if (os_errno && strerrordesc_np((int)os_errno))
            mft_err_detail(err, "%s", strerrordesc_np((int)os_errno));
        return mft_err_openssl(err);
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_TOO_MANY_REDIRECTS:
        mft_err_set(err, MFT_E_HTTP_RESPONSE_INVALID, "the answer from %s is not valid HTTP",
                    c->hostport);
        return mft_err_detail(err, "%s", msg);
    case CURLE_URL_MALFORMAT:
        mft_err_set(err, MFT_E_CONFIG, "invalid URL");
        return mft_err_detail(err, "%s", msg);
    default:
        mft_err_set(err, MFT_E_INTERNAL, "the HTTP exchange with %s failed", c->hostport);
        return mft_err_detail(err, "curl error %d: %s", (int)cc, msg);
    }
}

#define SETOPT(opt, val)                                                                           \
    do {                                                                                           \
        if (curl_easy_setopt(h, opt, val) != CURLE_OK) {                                           \
            mft_err_set(err, MFT_E_INTERNAL, "libcurl refused option %s", #opt);                   \
            goto out;                                                                              \
        }                                                                                          \
    } while (0)

int mft_httpc_post(const struct mft_httpc_request *rq, struct mft_httpc_response *out,
                   struct mft_err *err)
{
    return mft_httpc_post_on(NULL, NULL, rq, out, err);
}

struct mft_httpc_conn *mft_httpc_conn_new(void)
{
    return calloc(1, sizeof(struct mft_httpc_conn));
}

/* Closes the kept connection, if any (the next call opens a new one). */
static void conn_drop(struct mft_httpc_conn *k)
{
    if (k->h)
        curl_easy_cleanup(k->h);
    k->h = NULL;
    X509_free(k->leaf);
    k->leaf = NULL;
    k->key[0] = '\0';
}

void mft_httpc_conn_free(struct mft_httpc_conn *k)
{
    if (!k)
        return;
    conn_drop(k);
    free(k);
}

int mft_httpc_post_on(struct mft_httpc_conn *k, const char *key, const struct mft_httpc_request *rq,
                      struct mft_httpc_response *out, struct mft_err *err)
{
    struct call c;
    struct link own = {&c}, *l = &own;
    CURL *h = NULL;
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    CURLcode cc;
    int rc = -1;

    memset(&c, 0, sizeof(c));
    if (out)
        memset(out, 0, sizeof(*out));
    if (!rq || !out)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_httpc_post: no request or response");
    c.rq = rq;
    c.max = rq->max_response ? rq->max_response : MFT_HTTPC_DEFAULT_MAX_RESPONSE;
    pthread_once(&init_once, global_init);
    if (init_rc != 0)
        return mft_err_set(err, MFT_E_INTERNAL, "libcurl cannot be initialised with OpenSSL");
    if (!rq->body && rq->len > 0)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_httpc_post: a length without a body");
    if (parse_url(&c, rq->url, err) != 0)
        return -1;
    if (c.https) {
        const struct mft_httpc_trust *t = rq->trust;
        if (!t || ((!t->certs || sk_X509_num(t->certs) == 0) &&
                   (!t->cas || sk_X509_num(t->cas) == 0) && (!t->pins || t->n_pins == 0))) {
            mft_err_set(err, MFT_E_CONFIG, "no TLS server certificate, CA or pin is registered");
            mft_err_detail(err, "an https URL needs at least one: %.200s", rq->url);
            goto out;
        }
        if (load_client(&c, rq, err) != 0)
            goto out;
    }
    if (build_headers(rq, &hdrs, err) != 0)
        goto out;
    if (k) { /* reuse the kept connection when it was opened for the same key */
        if (k->h && (!key || strcmp(k->key, key) != 0))
            conn_drop(k);
        if (k->h) {
            curl_easy_reset(k->h); /* options go; the live connection stays */
        } else if ((k->h = curl_easy_init())) {
            snprintf(k->key, sizeof(k->key), "%s", key ? key : "");
        }
        h = k->h;
        l = &k->link;
        l->cur = &c;
    } else {
        h = curl_easy_init();
    }
    if (!h) {
        mft_err_set(err, MFT_E_NO_MEMORY, "curl_easy_init failed");
        goto out;
    }
    SETOPT(CURLOPT_URL, rq->url);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_PROXY, ""); /* no proxy from the environment */
    SETOPT(CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(CURLOPT_FORBID_REUSE, k ? 0L : 1L);
    SETOPT(CURLOPT_MAXCONNECTS, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, errbuf);
    SETOPT(CURLOPT_TIMEOUT, rq->timeout_s > 0 ? rq->timeout_s : MFT_HTTPC_DEFAULT_TIMEOUT_S);
    SETOPT(CURLOPT_CONNECTTIMEOUT,
           rq->connect_timeout_s > 0 ? rq->connect_timeout_s : MFT_HTTPC_DEFAULT_CONNECT_TIMEOUT_S);
    SETOPT(CURLOPT_POST, 1L);
    SETOPT(CURLOPT_HTTPHEADER, hdrs);
    SETOPT(CURLOPT_USERAGENT, "mft");
    if (rq->content_length) {
        SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->len);
        SETOPT(CURLOPT_POSTFIELDS, rq->body ? (const char *)rq->body : "");
    } else {
        SETOPT(CURLOPT_READFUNCTION, on_read);
        SETOPT(CURLOPT_READDATA, &c);
    }
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, &c);
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, &c);
    SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c.max);
    if (c.https) {
        SETOPT(CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
        SETOPT(CURLOPT_SSL_VERIFYPEER, 1L); /* verify_cb decides */
        SETOPT(CURLOPT_SSL_VERIFYHOST, 0L); /* verify_cb checks the host on the CA path */
        SETOPT(CURLOPT_CAINFO, (char *)NULL);
        SETOPT(CURLOPT_CAPATH, (char *)NULL);
        SETOPT(CURLOPT_SSL_SESSIONID_CACHE, 0L);
        SETOPT(CURLOPT_SSL_CTX_FUNCTION, sslctx_cb);
        SETOPT(CURLOPT_SSL_CTX_DATA, l);
    }
    cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        classify(h, &c, cc, errbuf, err);
        goto out;
    }
    if (k && c.https) {
        if (c.leaf) { /* a new connection: keep what its handshake showed */
            X509_free(k->leaf);
            k->leaf = c.leaf;
            X509_up_ref(k->leaf);
            snprintf(k->protocol, sizeof(k->protocol), "%s", c.protocol);
            snprintf(k->cipher, sizeof(k->cipher), "%s", c.cipher);
        } else if (k->leaf) { /* the kept connection: its handshake's facts */
            c.leaf = k->leaf;
            X509_up_ref(c.leaf);
            snprintf(c.protocol, sizeof(c.protocol), "%s", k->protocol);
            snprintf(c.cipher, sizeof(c.cipher), "%s", k->cipher);
        }
    }
    if (c.https && !c.leaf) { /* fail closed: our verification must have run */
        mft_err_set(err, MFT_E_INTERNAL, "the TLS server certificate of %s was not checked",
                    c.hostport);
        goto out;
    }
    {
        const char *ctype = NULL;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
        if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ctype) == CURLE_OK && ctype &&
            !(out->content_type = strdup(ctype))) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
    }
    if (!c.body && !(c.body = malloc(1))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    c.body[c.len] = '\0';
    out->body = c.body;
    out->len = c.len;
    out->headers = c.headers;
    out->n_headers = c.n_headers;
    c.body = NULL;
    c.headers = NULL;
    c.n_headers = 0;
    if (c.https) {
        struct mft_x509_facts f;
        mft_x509_facts(c.leaf, &f);
        snprintf(out->tls_subject, sizeof(out->tls_subject), "%s", f.subject);
        snprintf(out->tls_issuer, sizeof(out->tls_issuer), "%s", f.issuer);
        snprintf(out->tls_serial, sizeof(out->tls_serial), "%s", f.serial);
        snprintf(out->tls_sha256, sizeof(out->tls_sha256), "%s", f.sha256);
        snprintf(out->tls_not_before, sizeof(out->tls_not_before), "%s", f.not_before);
        snprintf(out->tls_not_after, sizeof(out->tls_not_after), "%s", f.not_after);
        snprintf(out->tls_protocol, sizeof(out->tls_protocol), "%s", c.protocol);
        snprintf(out->tls_cipher, sizeof(out->tls_cipher), "%s", c.cipher);
        out->has_tls = 1;
    }
    rc = 0;
out:
    if (rc != 0)
        mft_httpc_response_free(out);
    if (k) {
        k->link.cur = NULL;
        if (rc != 0) /* after any failure, start afresh */
            conn_drop(k);
    } else {
        curl_easy_cleanup(h);
    }
    curl_slist_free_all(hdrs);
    free(c.body);
    free_headers(c.headers, c.n_headers);
    X509_free(c.leaf);
    X509_free(c.client_cert);
    sk_X509_pop_free(c.client_chain, X509_free);
    EVP_PKEY_free(c.client_key);
    ERR_clear_error(); /* leave this thread's OpenSSL queue empty */
    return rc;
}

void mft_httpc_response_free(struct mft_httpc_response *r)
{
    if (!r)
        return;
    free(r->content_type);
    free(r->body);
    free_headers(r->headers, r->n_headers);
    memset(r, 0, sizeof(*r));
}

int mft_httpc_err_transient(const struct mft_err *err)
{
    if (!err)
        return 0;
    switch (err->kind) {
    case MFT_E_DNS:
    case MFT_E_CONNECT:
    case MFT_E_TIMEOUT:
    case MFT_E_TLS_HANDSHAKE:
    case MFT_E_HTTP_RESPONSE_INVALID:
    case MFT_E_NO_MEMORY:
    case MFT_E_INTERNAL:
        return 1;
    default:
        return 0;
    }
}

int mft_httpc_status_transient(long status)
{
    return (status >= 500 && status <= 599) || status == 408 || status == 429;
}
