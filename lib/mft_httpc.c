/*
 * mft_httpc — one HTTP(S) POST with libcurl's easy interface and the answer.
 *
 * Called by egress to send an AS2 message and read the synchronous MDN (and
 * by anything else that must POST to a partner). Each call builds its own
 * curl handle; libcurl's OpenSSL backend hands us each new SSL_CTX through
 * CURLOPT_SSL_CTX_FUNCTION, where we install the station's client
 * certificate, the partner's TLS policy (versions, cipher suites) and our own
 * certificate verification (the partner's registered certificates, pins and
 * CAs; never the system store). The TLS callbacks record the handshake's raw
 * facts (struct mft_tls_facts: alerts with their direction, ServerHello
 * version, CertificateRequest, our verification's result, both certificates,
 * protocol and cipher) in the call's context; a failure's kind, message and
 * remedy are derived from all of them together (tls_failure), never from
 * curl's code or text alone.
 *
 * Threading: no shared state besides curl_global_init and one SSL_CTX ex_data
 * index, both set up once (pthread_once). Any number of threads may call.
 * A call owns nothing after it returns unless the caller passes a kept
 * connection (struct mft_httpc_conn, one per thread): that is reused while it
 * was opened for the same key (URL, identity, trust, policy). No TLS session
 * cache. Takes references on a client identity the caller has already parsed.
 */
#include "mft_httpc.h"
#include "mft_tls.h"
#include "mft_x509.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
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
    X509 *leaf;                 /* the server certificate accepted at the handshake */
    struct mft_tls_facts facts; /* that handshake's facts */
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
    /* what OpenSSL refused to install (install_client): the certificate (ours or
     * one of its chain, borrowed), its error code, the context's security level */
    X509 *client_refused;
    unsigned long client_error;
    int client_level;
    /* TLS observations */
    struct mft_tls_facts facts;
    X509 *leaf; /* the server's certificate (a reference) */
    int verify_failed;
    struct mft_err vfail;  /* why it was refused */
    int server_hello;      /* a ServerHello arrived */
    int cert_requested;    /* the server asked for our certificate (CertificateRequest) */
    int hello_sent;        /* our ClientHello went out */
    int handshake_done;    /* OpenSSL finished the handshake */
    char our_ciphers[512]; /* what the policy lets us offer, for messages */
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

/*
 * The CA rule's path validation (mft_x509_verify_run: the one used for every
 * partner certificate): leaf + the chain the server sent against the
 * registered CAs, purpose TLS server, now, keys and signatures held to
 * security level `level`. Returns 1 (verified), 0 (refused: *verr, *depth
 * and, when bad is given, a reference to the failing certificate) or -1 (out
 * of memory).
 */
static int chain_verify(STACK_OF(X509) * cas, X509 *leaf, STACK_OF(X509) * chain,
                        unsigned long flags, int level, int *verr, int *depth, X509 **bad)
{
    struct mft_x509_verify_args a = {cas, chain, leaf, time(NULL), MFT_X509_SERVER, NULL};
    X509 *b = NULL;
    int rc = mft_x509_verify_run(&a, flags, level, verr, depth, &b);
    if (bad)
        *bad = b;
    else
        X509_free(b);
    return rc;
}

static int host_is_ip(const char *host)
{
    unsigned char ip[16];
    return inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
}

/* The facts' X.509 verdict: the code (curl's CURLINFO_SSL_VERIFYRESULT sees
 * the same) and, in words, the code's text and which rule decided. */
static void verdict(struct call *c, long code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void verdict(struct call *c, long code, const char *fmt, ...)
{
    va_list ap;
    size_t o;
    c->facts.verify_code = code;
    snprintf(c->facts.verify_result, sizeof(c->facts.verify_result),
             "%s: ", code ? X509_verify_cert_error_string(code) : "ok");
    o = strlen(c->facts.verify_result);
    va_start(ap, fmt);
    vsnprintf(c->facts.verify_result + o, sizeof(c->facts.verify_result) - o, fmt, ap);
    va_end(ap);
}

/* Returns 1 when cert is self-signed (its own issuer, signature verified). */
static int self_signed(X509 *cert)
{
    return X509_self_signed(cert, 1) == 1;
}

/* Returns the registered CA named name, or NULL. */
static X509 *ca_named(STACK_OF(X509) * cas, const X509_NAME *name)
{
    for (int i = 0; cas && i < sk_X509_num(cas); i++)
        if (X509_NAME_cmp(X509_get_subject_name(sk_X509_value(cas, i)), name) == 0)
            return sk_X509_value(cas, i);
    return NULL;
}

/* Returns 1 when cert names where its issuer's certificate is published
 * (Authority Information Access caIssuers): what CAs that issue from an
 * intermediate put in their certificates, the sign that the missing issuer
 * is an intermediate the server should have sent. */
static int has_ca_issuers(X509 *cert)
{
    AUTHORITY_INFO_ACCESS *aia = X509_get_ext_d2i(cert, NID_info_access, NULL, NULL);
    int found = 0;
    for (int i = 0; aia && i < sk_ACCESS_DESCRIPTION_num(aia); i++)
        found |= OBJ_obj2nid(sk_ACCESS_DESCRIPTION_value(aia, i)->method) == NID_ad_ca_issuers;
    AUTHORITY_INFO_ACCESS_free(aia);
    return found;
}

/* The CA rule failed with verr on bad (may be NULL), checked at security
 * level `level`: the most precise kind. Returns 1 when it set c->vfail (an
 * expiry, a missing intermediate), else 0. */
static int ca_refusal(struct call *c, STACK_OF(X509) * cas, X509 *leaf, STACK_OF(X509) * chain,
                      int level, int verr, int depth, X509 *bad)
{
    char issuer[512];
    if (verr == X509_V_ERR_CERT_HAS_EXPIRED || verr == X509_V_ERR_CERT_NOT_YET_VALID) {
        int verr2 = X509_V_OK, depth2 = 0;
        if (chain_verify(cas, leaf, chain, X509_V_FLAG_NO_CHECK_TIME, level, &verr2, &depth2,
                         NULL) != 1)
            return 0; /* the dates are not the only fault */
        struct mft_x509_facts f;
        int expired = verr == X509_V_ERR_CERT_HAS_EXPIRED;
        mft_x509_facts(bad ? bad : leaf, &f);
        mft_err_set(&c->vfail, expired ? MFT_E_TLS_SERVER_EXPIRED : MFT_E_TLS_SERVER_NOT_YET_VALID,
                    "the server's TLS %s %s (valid %s to %s)",
                    depth > 0 ? "CA certificate" : "certificate",
                    expired ? "has expired" : "is not yet valid", f.not_before, f.not_after);
        mft_err_detail(&c->vfail, "%s is valid from %s to %s; check the clock of this host",
                       f.subject, f.not_before, f.not_after);
        verdict(c, verr, "%s at depth %d", f.subject, depth);
        return 1;
    }
    if ((verr != X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY &&
         verr != X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT) ||
        !bad || self_signed(bad))
        return 0;
    mft_x509_issuer(bad, issuer, sizeof(issuer));
    int same_name = ca_named(cas, X509_get_issuer_name(bad)) != NULL;
    if (same_name || !has_ca_issuers(bad)) { /* no sign that the issuer is an intermediate */
        mft_err_set(&c->vfail, MFT_E_TLS_SERVER_UNTRUSTED,
                    same_name ? "the server's TLS certificate names the registered CA \"%.200s\" "
                                "as its issuer, but that CA did not sign it (another key)"
                              : "the server's TLS certificate is issued by \"%.200s\", which it "
                                "did not send and which is not a registered CA",
                    issuer);
        verdict(c, verr, "issuer %s %s", issuer,
                same_name ? "has a registered CA's name, another key" : "not sent, not registered");
        return 1;
    }
    mft_err_set(&c->vfail, MFT_E_TLS_SERVER_CHAIN_INCOMPLETE,
                "the server did not send the intermediate CA certificate \"%.200s\" that issued "
                "its TLS certificate, and it is not registered",
                issuer);
    verdict(c, verr,
            "issuer %s (an intermediate: the certificate names where to fetch it) "
            "not sent and not registered",
            issuer);
    return 1;
}

/* The verify codes of a refusal for strength (OpenSSL's security level): a
 * key too small, a signature digest too weak. */
static int too_weak(int verr)
{
    return verr == X509_V_ERR_EE_KEY_TOO_SMALL || verr == X509_V_ERR_CA_KEY_TOO_SMALL ||
           verr == X509_V_ERR_CA_MD_TOO_WEAK;
}

/* Why OpenSSL's security level refuses x, in words (mft_x509_weakness), or
 * else OpenSSL's reason. */
static void weak_words(X509 *x, int level, const char *reason, char *why, size_t len)
{
    if (!mft_x509_weakness(x, level, why, len))
        snprintf(why, len, "is refused at security level %d (%s)", level, reason);
}

/* The chain to a registered CA fails on strength alone: bad (at depth; NULL =
 * the leaf) has a key or a signature below MFT_X509_SECURITY_LEVEL. */
static void weak_refusal(struct call *c, X509 *leaf, int verr, int depth, X509 *bad)
{
    char subject[512], why[320];
    X509 *x = bad ? bad : leaf;

    mft_x509_subject(x, subject, sizeof(subject));
    weak_words(x, MFT_X509_SECURITY_LEVEL, X509_verify_cert_error_string(verr), why, sizeof(why));
    mft_err_set(&c->vfail, MFT_E_TLS_SERVER_UNTRUSTED, "the server's TLS %s \"%.100s\" %s",
                depth > 0 ? "CA certificate" : "certificate", subject, why);
    snprintf(c->vfail.remedy, sizeof(c->vfail.remedy),
             "the partner must renew the named certificate: an RSA key of 2048 bits or more "
             "(or an EC key), signed with SHA-256 or better; this gateway's security level "
             "cannot be lowered");
    verdict(c, verr, "%s at depth %d %s", subject, depth, why);
}

/* Our rules (see mft_httpc.h), restricted by the request's trust mode.
 * Returns 1 to accept; 0 with c->vfail and the facts' verdict filled. */
static int trust_decide(struct call *c, X509 *leaf, STACK_OF(X509) * chain)
{
    const struct mft_httpc_trust *t = c->rq->trust;
    enum mft_httpc_trust_mode m = c->rq->tls_trust;
    int n_certs = (m == MFT_HTTPC_TRUST_ANY || m == MFT_HTTPC_TRUST_CERTS) && t->certs
                      ? sk_X509_num(t->certs)
                      : 0;
    int n_cas =
        (m == MFT_HTTPC_TRUST_ANY || m == MFT_HTTPC_TRUST_CAS) && t->cas ? sk_X509_num(t->cas) : 0;
    size_t n_pins =
        (m == MFT_HTTPC_TRUST_ANY || m == MFT_HTTPC_TRUST_PINS) && t->pins ? t->n_pins : 0;
    int verr = X509_V_OK, depth = 0, ok, decided = 0;
    char pin[64];
    X509 *bad = NULL;

    for (int i = 0; i < n_certs; i++)
        if (X509_cmp(leaf, sk_X509_value(t->certs, i)) == 0) {
            verdict(c, 0, "registered certificate %d", i + 1);
            return 1;
        }
    if (spki_pin(leaf, pin) != 0) {
        mft_err_set(&c->vfail, MFT_E_INTERNAL, "cannot hash the server's public key");
        return 0;
    }
    for (size_t i = 0; t->pins && i < n_pins; i++)
        if (pin_equal(t->pins[i], pin)) {
            verdict(c, 0, "registered pin %zu", i + 1);
            return 1;
        }
    if (n_cas > 0) {
        int level = MFT_X509_SECURITY_LEVEL, wverr = X509_V_OK, wdepth = 0;
        X509 *wbad = NULL;
        ok = chain_verify(t->cas, leaf, chain, 0, level, &verr, &depth, &bad);
        if (ok == 0 && too_weak(verr)) { /* the strength: the only fault, or one of several? */
            wverr = verr;
            wdepth = depth;
            wbad = bad;
            bad = NULL;
            level = 0;
            ok = chain_verify(t->cas, leaf, chain, 0, level, &verr, &depth, &bad);
        }
        if (ok < 0) {
            X509_free(wbad);
            mft_err_set(&c->vfail, MFT_E_NO_MEMORY, NULL);
            return 0;
        }
        if (ok == 1 && wverr) {
            weak_refusal(c, leaf, wverr, wdepth, wbad);
            verr = wverr;
            depth = wdepth;
            decided = 1;
        } else if (ok == 1) {
            char names[512];
            if (mft_x509_name_matches(leaf, c->host)) {
                verdict(c, 0, "chain to a registered CA, host %s matches", c->host);
                return 1;
            }
            mft_x509_names(leaf, names, sizeof(names));
            mft_err_set(&c->vfail, MFT_E_TLS_SERVER_NAME_MISMATCH,
                        "the server's TLS certificate is for %.200s, not for %s (the URL's host)",
                        names, c->host);
            verdict(c,
                    host_is_ip(c->host) ? X509_V_ERR_IP_ADDRESS_MISMATCH
                                        : X509_V_ERR_HOSTNAME_MISMATCH,
                    "URL host %s; the certificate names %s", c->host, names);
            decided = 1;
        } else {
            decided = ca_refusal(c, t->cas, leaf, chain, level, verr, depth, bad);
        }
        X509_free(wbad);
    }
    if (decided) {
    } else if (n_pins && !n_cas) { /* pinned: the key is what the registration names */
        mft_err_set(&c->vfail, MFT_E_TLS_PIN_CHANGED,
                    "the server's TLS key is not the pinned key: its pin is %s", pin);
        verdict(c, X509_V_ERR_APPLICATION_VERIFICATION, "key pin %s matches none of the %zu pins",
                pin, n_pins);
    } else if (self_signed(leaf)) {
        mft_err_set(&c->vfail, MFT_E_TLS_SERVER_SELF_SIGNED, NULL);
        verdict(c, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT,
                "not one of the registered certificates");
    } else {
        mft_err_set(&c->vfail, MFT_E_TLS_SERVER_UNTRUSTED, NULL);
        if (n_cas)
            verdict(c, verr, "no chain to the %d registered CAs (depth %d)", n_cas, depth);
        else
            verdict(c, X509_V_ERR_APPLICATION_VERIFICATION, "no registered rule matches");
    }
    X509_free(bad);
    detail_presented(&c->vfail, leaf);
    mft_err_detail(&c->vfail, "its key pin is %s", pin);
    if (n_certs)
        mft_err_detail(&c->vfail, "not one of the %d registered certificates", n_certs);
    if (n_pins)
        mft_err_detail(&c->vfail, "matches none of the %zu registered pins", n_pins);
    if (n_cas)
        mft_err_detail(&c->vfail, "no chain to the %d registered CAs: %s (depth %d)", n_cas,
                       X509_verify_cert_error_string(verr), depth);
    if (m != MFT_HTTPC_TRUST_ANY)
        mft_err_detail(&c->vfail, "the partner's server_trust allows only its registered %s",
                       m == MFT_HTTPC_TRUST_CERTS ? "certificates"
                       : m == MFT_HTTPC_TRUST_CAS ? "CAs"
                                                  : "pins");
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
        mft_tls_cert_fill(&c->facts.peer_cert, leaf);
        ok = trust_decide(c, leaf, X509_STORE_CTX_get0_untrusted(sctx));
    }
    ERR_pop_to_mark();
    if (!ok) {
        c->verify_failed = 1;
        X509_STORE_CTX_set_error(sctx, c->facts.verify_code ? (int)c->facts.verify_code
                                                            : X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    X509_STORE_CTX_set_error(sctx, X509_V_OK);
    return 1;
}

/* SSL_CTX_set_info_callback: the negotiated session. */
static void info_cb(const SSL *ssl, int where, int ret)
{
    struct link *l = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ctx_index);
    struct call *c = l ? l->cur : NULL;
    (void)ret;
    if (!c || !(where & SSL_CB_HANDSHAKE_DONE))
        return;
    const SSL_CIPHER *ciph = SSL_get_current_cipher(ssl);
    c->handshake_done = 1;
    snprintf(c->facts.version, sizeof(c->facts.version), "%s", SSL_get_version(ssl));
    snprintf(c->facts.cipher, sizeof(c->facts.cipher), "%s",
             ciph ? SSL_CIPHER_standard_name(ciph) : "");
}

/* The version a ServerHello chose: its supported_versions extension (TLS
 * 1.3) or else its legacy_version. 0 when it does not parse. */
static unsigned hello_version(const unsigned char *b, size_t len)
{
    size_t o = 4 + 2 + 32, end; /* type, length, legacy_version, random */
    unsigned legacy = len >= 6 ? (unsigned)(b[4] << 8 | b[5]) : 0;
    if (len < o + 1)
        return legacy;
    o += 1 + b[o] + 2 + 1; /* session id, cipher suite, compression */
    if (len < o + 2)
        return legacy;
    end = o + 2 + (size_t)(b[o] << 8 | b[o + 1]);
    for (o += 2; o + 4 <= end && o + 4 <= len;) {
        unsigned type = (unsigned)(b[o] << 8 | b[o + 1]), n = (unsigned)(b[o + 2] << 8 | b[o + 3]);
        if (type == 43 && n == 2 && o + 6 <= len)
            return (unsigned)(b[o + 4] << 8 | b[o + 5]);
        o += 4 + n;
    }
    return legacy;
}

/* SSL_CTX_set_msg_callback: every alert with its direction (write_p = 1:
 * ours), and the handshake messages that matter for the verdict. */
static void msg_cb(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    struct call *c = arg ? ((struct link *)arg)->cur : NULL;
    const unsigned char *b = buf;
    (void)version;
    if (!c || len < 1)
        return;
    if (content_type == SSL3_RT_ALERT && len >= 2) {
        mft_tls_facts_alert(&c->facts, write_p, b[0] == SSL3_AL_FATAL, b[1]);
    } else if (content_type == SSL3_RT_HANDSHAKE && write_p && b[0] == SSL3_MT_CLIENT_HELLO) {
        const char *sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        c->hello_sent = 1;
        snprintf(c->facts.sni, sizeof(c->facts.sni), "%s", sni ? sni : "");
    } else if (content_type == SSL3_RT_HANDSHAKE && !write_p && b[0] == SSL3_MT_SERVER_HELLO) {
        c->server_hello = 1;
        snprintf(c->facts.versions_accepted, sizeof(c->facts.versions_accepted), "%s",
                 mft_tls_version_name(hello_version(b, len)));
    } else if (content_type == SSL3_RT_HANDSHAKE && !write_p &&
               b[0] == SSL3_MT_CERTIFICATE_REQUEST) {
        c->cert_requested = 1;
    }
}

static void list_add(char *list, size_t len, const char *name)
{
    size_t o = strlen(list);
    snprintf(list + o, len - o, "%s%s", o ? ":" : "", name);
}

/* The policy's cipher suites (IANA names) as OpenSSL's TLS 1.2 cipher list
 * and TLS 1.3 ciphersuites; a version without a suite is switched off.
 * Returns 0, or -1 when nothing is left to offer. */
static int apply_ciphers(SSL_CTX *ctx, struct call *c, unsigned *min, unsigned *max)
{
    const struct mft_httpc_request *rq = c->rq;
    char l12[2048] = "", l13[512] = "";
    STACK_OF(SSL_CIPHER) * all;

    if (!rq->tls_ciphers || rq->n_tls_ciphers == 0)
        return 0;
    if (SSL_CTX_set_cipher_list(ctx, "ALL:COMPLEMENTOFALL") != 1 ||
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                      "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256:"
                                      "TLS_AES_128_CCM_8_SHA256") != 1)
        return -1;
    all = SSL_CTX_get_ciphers(ctx);
    for (size_t i = 0; i < rq->n_tls_ciphers; i++) {
        int id = mft_tls_suite_id(rq->tls_ciphers[i]); /* one naming for both directions */
        list_add(c->our_ciphers, sizeof(c->our_ciphers), rq->tls_ciphers[i]);
        for (int k = 0; id >= 0 && k < sk_SSL_CIPHER_num(all); k++) {
            const SSL_CIPHER *ci = sk_SSL_CIPHER_value(all, k);
            if (SSL_CIPHER_get_protocol_id(ci) != (uint16_t)id)
                continue;
            if (strcmp(SSL_CIPHER_get_version(ci), "TLSv1.3") == 0)
                list_add(l13, sizeof(l13), SSL_CIPHER_get_name(ci));
            else
                list_add(l12, sizeof(l12), SSL_CIPHER_get_name(ci));
            break;
        }
    }
    if (!l12[0] && *min < TLS1_3_VERSION)
        *min = TLS1_3_VERSION; /* no TLS 1.2 suite allowed: no TLS 1.2 */
    if (!l13[0] && *max > TLS1_2_VERSION)
        *max = TLS1_2_VERSION;
    if (*min > *max)
        return -1;
    if (l12[0] && SSL_CTX_set_cipher_list(ctx, l12) != 1)
        return -1;
    return SSL_CTX_set_ciphersuites(ctx, l13) == 1 ? 0 : -1;
}

/* The policy's version range (OpenSSL constants; TLS 1.2 at the least). */
static unsigned policy_min(const struct mft_httpc_request *rq)
{
    return rq->tls_min_version >= TLS1_3_VERSION ? TLS1_3_VERSION : TLS1_2_VERSION;
}

static unsigned policy_max(const struct mft_httpc_request *rq)
{
    return rq->tls_max_version == TLS1_2_VERSION ? TLS1_2_VERSION : TLS1_3_VERSION;
}

/* Installs the station's certificate, key and chain in ctx. Returns 0, or -1
 * with what OpenSSL refused in c (client_refused, client_error,
 * client_level): the security level refuses a weak certificate here. */
static int install_client(SSL_CTX *ctx, struct call *c)
{
    X509 *x = c->client_cert;
    int ok = SSL_CTX_use_certificate(ctx, x) == 1 &&
             SSL_CTX_use_PrivateKey(ctx, c->client_key) == 1 &&
             SSL_CTX_check_private_key(ctx) == 1 && SSL_CTX_clear_chain_certs(ctx) == 1;
    for (int i = 0; ok && c->client_chain && i < sk_X509_num(c->client_chain); i++) {
        x = sk_X509_value(c->client_chain, i);
        ok = SSL_CTX_add1_chain_cert(ctx, x) == 1;
    }
    if (ok)
        return 0;
    c->client_refused = x;
    c->client_error = ERR_peek_last_error();
    c->client_level = SSL_CTX_get_security_level(ctx);
    return -1;
}

/* CURLOPT_SSL_CTX_FUNCTION: called for each new TLS connection, after curl's own set-up. */
static CURLcode sslctx_cb(CURL *h, void *sslctx, void *userptr)
{
    SSL_CTX *ctx = sslctx;
    struct link *l = userptr;
    struct call *c = l->cur;

    unsigned min = policy_min(c->rq), max = policy_max(c->rq);

    (void)h;
    if (apply_ciphers(ctx, c, &min, &max) != 0) {
        c->client_failed = 2;
        return CURLE_SSL_CIPHER;
    }
    if (!SSL_CTX_set_min_proto_version(ctx, (int)min) ||
        !SSL_CTX_set_max_proto_version(ctx, (int)max) || !SSL_CTX_set_ex_data(ctx, ctx_index, l))
        return CURLE_SSL_CONNECT_ERROR;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, verify_cb, l);
    SSL_CTX_set_info_callback(ctx, info_cb);
    SSL_CTX_set_msg_callback(ctx, msg_cb);
    SSL_CTX_set_msg_callback_arg(ctx, l);
    if (c->client_cert && install_client(ctx, c) != 0) {
        c->client_failed = 1;
        return CURLE_SSL_CERTPROBLEM;
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

/* Our client certificate and key do not belong together: TLS_OWN_KEY_MISMATCH
 * naming both. Returns -1. */
static int own_key_mismatch(const struct call *c, struct mft_err *err)
{
    char key[32] = "?";
    mft_x509_key_desc(c->client_key, key, sizeof(key));
    mft_err_set(err, MFT_E_TLS_OWN_KEY_MISMATCH,
                "our TLS client certificate (%s key) and private key (%s) do not match",
                c->facts.local_cert.key[0] ? c->facts.local_cert.key : "no", key);
    mft_err_detail(err, "certificate subject=%s, sha256=%s", c->facts.local_cert.x.subject,
                   c->facts.local_cert.x.sha256);
    return -1;
}

/* Our client certificate must be the key's. Returns 0 or -1 (TLS_OWN_KEY_MISMATCH). */
static int own_key_check(struct call *c, struct mft_err *err)
{
    mft_tls_cert_fill(&c->facts.local_cert, c->client_cert);
    if (c->client_cert && mft_x509_key_matches_cert(c->client_cert, c->client_key))
        return 0;
    return own_key_mismatch(c, err);
}

/*
 * OpenSSL refused to install our client certificate or a certificate of its
 * chain (install_client). Below the context's security level (a key too
 * small, a signature digest too weak): TLS_OWN_CERT_TOO_WEAK naming the
 * certificate and why; the key not the certificate's: TLS_OWN_KEY_MISMATCH;
 * anything else: CONFIG with OpenSSL's reason. Returns -1.
 */
static int own_cert_refused(const struct call *c, struct mft_err *err)
{
    unsigned long e = c->client_error;
    int lib = ERR_GET_LIB(e), reason = ERR_GET_REASON(e),
        ours = c->client_refused == c->client_cert;
    const char *text = ERR_reason_error_string(e);
    char subject[512] = "", why[320], code[256];
    struct mft_x509_facts f;

    ERR_error_string_n(e, code, sizeof(code));
    if ((lib == ERR_LIB_X509 &&
         (reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH)) ||
        (lib == ERR_LIB_SSL && reason == SSL_R_NO_PRIVATE_KEY_ASSIGNED)) {
        own_key_mismatch(c, err);
        return mft_err_detail(err, "openssl %s", code);
    }
    mft_x509_subject(c->client_refused, subject, sizeof(subject));
    if (lib == ERR_LIB_SSL &&
        (reason == SSL_R_EE_KEY_TOO_SMALL || reason == SSL_R_CA_KEY_TOO_SMALL ||
         reason == SSL_R_CA_MD_TOO_WEAK)) {
        weak_words(c->client_refused, c->client_level, text ? text : code, why, sizeof(why));
        mft_err_set(err, MFT_E_TLS_OWN_CERT_TOO_WEAK,
                    ours ? "our TLS client certificate \"%.100s\" %s"
                         : "the CA certificate \"%.100s\" in our TLS client chain %s",
                    subject, why);
        if (err && !ours)
            snprintf(err->remedy, sizeof(err->remedy),
                     "import the station's certificate with a current chain from its CA (RSA keys "
                     "of 2048 bits or more or EC keys, SHA-256 or better signatures), or one from "
                     "another CA, with mftctl apply; the security level cannot be lowered");
    } else {
        mft_err_set(err, MFT_E_CONFIG,
                    ours ? "OpenSSL refused our TLS client certificate \"%.100s\": %s"
                         : "OpenSSL refused the CA certificate \"%.100s\" in our TLS client "
                           "chain: %s",
                    subject, text ? text : code);
    }
    mft_x509_facts(c->client_refused, &f);
    mft_err_detail(err, "refused certificate subject=%s, issuer=%s, sha256=%s, valid %s to %s",
                   f.subject, f.issuer, f.sha256, f.not_before, f.not_after);
    return mft_err_detail(err, "openssl %s", code);
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
    return own_key_check(c, err);
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
    return own_key_check(c, err);
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
    return code == 40 || code == 41 || code == 42 || code == 43 || code == 44 || code == 45 ||
           code == 46 || code == 48 || code == 49 || code == 116;
}

/* What a certificate alert says about our certificate, in words. */
static const char *cert_alert_words(int code)
{
    switch (code) {
    case 42:
        return "it finds our certificate bad";
    case 43:
        return "it does not support our certificate (often: not allowed for TLS client "
               "authentication)";
    case 44:
        return "it says our certificate is revoked";
    case 45:
        return "it says our certificate has expired or is not yet valid";
    case 46:
        return "it does not accept our certificate";
    case 48:
        return "it does not know the CA that issued our certificate";
    case 49:
        return "it refuses access to our certificate";
    case 116:
        return "it requires a certificate and got none";
    default:
        return "it refused the handshake after asking for our certificate";
    }
}

/* Our own client certificate, checked as the partner would: dates and the
 * clientAuth purpose. Appends what is wrong to err's message. */
static void own_cert_selfcheck(const struct call *c, struct mft_err *err)
{
    time_t nb = 0, na = 0, now = time(NULL);
    if (!err || !c->client_cert)
        return;
    size_t o = strlen(err->message);
    if (mft_x509_validity(c->client_cert, &nb, &na) == 0 && (now < nb || now > na))
        snprintf(err->message + o, sizeof(err->message) - o, "; our certificate %s",
                 now > na ? "HAS EXPIRED" : "IS NOT YET VALID");
    else if (X509_check_purpose(c->client_cert, X509_PURPOSE_SSL_CLIENT, 0) != 1)
        snprintf(err->message + o, sizeof(err->message) - o,
                 "; our certificate is not allowed for TLS client authentication (extended key "
                 "usage)");
}

/* The partner rejected (or missed) our client certificate, as alert a says. */
static int our_cert_rejected(const struct call *c, const struct mft_tls_alert *a,
                             struct mft_err *err)
{
    if (!c->client_cert) {
        mft_err_set(err, MFT_E_TLS_OUR_CERT_REJECTED,
                    "%s requires a TLS client certificate and none is configured (alert %s "
                    "received)",
                    c->hostport, mft_tls_alert_name(a->code));
        if (err)
            snprintf(err->remedy, sizeof(err->remedy),
                     "configure the station's TLS client certificate (tls_client), and have the "
                     "partner register it");
        return -1;
    }
    mft_err_set(err, MFT_E_TLS_OUR_CERT_REJECTED,
                "%s rejected our TLS client certificate: %s (alert %s received)", c->hostport,
                cert_alert_words(a->code), mft_tls_alert_name(a->code));
    own_cert_selfcheck(c, err);
    return -1;
}

/*
 * A failed TLS set-up, from all the facts together: our own verification's
 * verdict first (it is the most precise), then the alerts and where in the
 * handshake they came (before or after the ServerHello, after a
 * CertificateRequest), then OpenSSL's reason. Returns -1.
 */
static int tls_failure(const struct call *c, const char *msg, struct mft_err *err)
{
    unsigned long e = openssl_code(msg);
    int reason = ERR_GET_LIB(e) == ERR_LIB_SSL ? ERR_GET_REASON(e) : 0;
    const struct mft_tls_alert *in = mft_tls_facts_fatal(&c->facts, 0);
    const struct mft_tls_alert *out = mft_tls_facts_fatal(&c->facts, 1);
    char ours[40];

    snprintf(ours, sizeof(ours), "%s", c->facts.versions_offered);
    if (c->client_failed == 2) {
        mft_err_set(err, MFT_E_CONFIG,
                    "the partner's TLS policy leaves no cipher suite for the versions it allows");
        mft_err_detail(err, "versions %s, ciphers %s", ours, c->our_ciphers);
    } else if (c->client_failed) {
        own_cert_refused(c, err);
    } else if (c->verify_failed) {
        if (err)
            *err = c->vfail;
    } else if (in && in->code == 70) {
        mft_err_set(err, MFT_E_TLS_NO_COMMON_PROTOCOL,
                    "%s accepts none of the TLS versions we offer (%s)%s%s", c->hostport, ours,
                    c->facts.versions_accepted[0] ? "; it answered " : "",
                    c->facts.versions_accepted);
    } else if (reason == SSL_R_UNSUPPORTED_PROTOCOL || reason == SSL_R_NO_PROTOCOLS_AVAILABLE ||
               reason == SSL_R_TLSV1_ALERT_PROTOCOL_VERSION || (out && out->code == 70)) {
        mft_err_set(err, MFT_E_TLS_NO_COMMON_PROTOCOL, "%s answered with %s; we accept %s",
                    c->hostport,
                    c->facts.versions_accepted[0] ? c->facts.versions_accepted
                                                  : "a version we do not accept",
                    ours);
    } else if (in && !c->server_hello && (in->code == 40 || in->code == 71)) {
        mft_err_set(err, MFT_E_TLS_NO_SHARED_CIPHER,
                    "%s refused our ClientHello (alert %s): no cipher suite in common with ours "
                    "(%s)",
                    c->hostport, mft_tls_alert_name(in->code),
                    c->our_ciphers[0] ? c->our_ciphers : "OpenSSL's defaults");
        if (c->our_ciphers[0] && err)
            snprintf(err->remedy, sizeof(err->remedy),
                     "the partner must enable one of the cipher suites in its tls_policy, or "
                     "widen tls_policy.ciphers");
    } else if (in && c->server_hello && c->cert_requested && alert_about_client_cert(in->code)) {
        our_cert_rejected(c, in, err);
    } else if (in && in->code == 45) {
        /* libcurl reports a received certificate_expired as "peer failed
         * verification": it is about OUR certificate, the only one sent */
        our_cert_rejected(c, in, err);
    } else if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
               reason == SSL_R_RECORD_LENGTH_MISMATCH ||
               (c->hello_sent && !c->server_hello && !in && reason == SSL_R_UNEXPECTED_RECORD)) {
        mft_err_set(err, MFT_E_TLS_NOT_TLS, "%s does not answer in TLS", c->hostport);
    } else if (in) {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE, "%s refused the TLS handshake (alert %s received)",
                    c->hostport, mft_tls_alert_name(in->code));
    } else if (out) {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE,
                    "we ended the TLS handshake with %s (alert %s sent): %s", c->hostport,
                    mft_tls_alert_name(out->code), msg);
    } else if (c->hello_sent && !c->server_hello) {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE,
                    "%s closed the connection without answering our TLS ClientHello", c->hostport);
    } else {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE, "the TLS handshake with %s failed", c->hostport);
    }
    return -1;
}

/* Turns a failed transfer into an error kind. Returns -1. */
static int classify(CURL *h, const struct call *c, CURLcode cc, const char *errbuf,
                    struct mft_err *err)
{
    const char *msg = errbuf[0] ? errbuf : curl_easy_strerror(cc);
    long os_errno = 0;

    if (c->verify_failed || c->client_failed)
        return tls_failure(c, msg, err);
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
        if (c->https && c->hello_sent && !c->server_hello)
            mft_err_set(err, MFT_E_TIMEOUT,
                        "%s did not answer our TLS ClientHello in time (is it a TLS port?)",
                        c->hostport);
        else
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
        /* TLS 1.3: a refusal of our certificate comes after curl considers
         * the handshake done, on the first write or read, with an alert */
        if (mft_tls_facts_fatal(&c->facts, 0))
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

/* An https answer that is a TLS refusal of our certificate in HTTP clothing:
 * nginx completes the handshake without (or with a refused) client
 * certificate and answers 400 with one of these texts. Returns -1 with err
 * when it is one, else 0. */
static int http_cert_refusal(const struct call *c, long status, struct mft_err *err)
{
    static const char *const texts[] = {"No required SSL certificate was sent",
                                        "The SSL certificate error", NULL};
    for (size_t i = 0; c->https && status == 400 && c->body && texts[i]; i++) {
        if (!strstr((const char *)c->body, texts[i]))
            continue;
        if (i == 0)
            mft_err_set(err, MFT_E_TLS_OUR_CERT_REJECTED,
                        "%s requires a TLS client certificate and %s (HTTP 400 \"%s\")",
                        c->hostport, c->client_cert ? "did not take ours" : "none is configured",
                        texts[i]);
        else
            mft_err_set(err, MFT_E_TLS_OUR_CERT_REJECTED,
                        "%s rejected our TLS client certificate (HTTP 400 \"%s\")", c->hostport,
                        texts[i]);
        if (!c->client_cert && err)
            snprintf(err->remedy, sizeof(err->remedy),
                     "configure the station's TLS client certificate (tls_client), and have the "
                     "partner register it");
        own_cert_selfcheck(c, err);
        mft_err_detail(err, "the server %s a client certificate in the handshake",
                       c->cert_requested ? "asked for" : "did not ask for");
        return -1;
    }
    return 0;
}

/* After a TLS 1.3 handshake in which the server asked for our certificate,
 * its verdict on it may still be on the way: read (nothing is sent) until
 * MFT_HTTPC_SETTLE_MS pass, an alert arrives, or the server closes. Returns
 * a curl error when the read failed (a fatal alert), else CURLE_OK (session
 * tickets, a clean close_notify, or data). */
static CURLcode settle(CURL *h, const struct call *c)
{
    curl_socket_t fd = CURL_SOCKET_BAD;
    struct timespec t0, t;
    char buf[256];
    size_t n;

    if (strcmp(c->facts.version, "TLSv1.3") != 0 || !c->cert_requested ||
        curl_easy_getinfo(h, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK || fd == CURL_SOCKET_BAD)
        return CURLE_OK;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        long ms;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        CURLcode rc;
        clock_gettime(CLOCK_MONOTONIC, &t);
        ms = MFT_HTTPC_SETTLE_MS -
             ((t.tv_sec - t0.tv_sec) * 1000L + (t.tv_nsec - t0.tv_nsec) / 1000000L);
        if (ms <= 0 || poll(&p, 1, (int)ms) <= 0)
            return CURLE_OK;
        rc = curl_easy_recv(h, buf, sizeof(buf), &n);
        if (rc == CURLE_AGAIN)
            continue; /* a session ticket, no data */
        if (rc != CURLE_OK)
            return rc;
        return CURLE_OK; /* data, or a clean close (close_notify): no refusal */
    }
}

/* The facts known after the transfer: peer address, library error and, when
 * curl's own verification spoke, its result. */
static void facts_finish(CURL *h, struct call *c, CURLcode cc, const char *errbuf)
{
    char *ip = NULL;
    long port = 0, vr = 0;
    if (h && curl_easy_getinfo(h, CURLINFO_PRIMARY_IP, &ip) == CURLE_OK && ip && *ip &&
        curl_easy_getinfo(h, CURLINFO_PRIMARY_PORT, &port) == CURLE_OK)
        snprintf(c->facts.peer_address, sizeof(c->facts.peer_address),
                 strchr(ip, ':') ? "[%s]:%ld" : "%s:%ld", ip, port);
    if (cc != CURLE_OK)
        snprintf(c->facts.library_error, sizeof(c->facts.library_error), "curl %d %s: %s", (int)cc,
                 curl_easy_strerror(cc), errbuf[0] ? errbuf : "-");
    /* meaningful only then (and our own verdict, when it ran, is finer) */
    if (h && cc == CURLE_PEER_FAILED_VERIFICATION && !c->facts.verify_result[0] &&
        curl_easy_getinfo(h, CURLINFO_SSL_VERIFYRESULT, &vr) == CURLE_OK) {
        c->facts.verify_code = vr;
        snprintf(c->facts.verify_result, sizeof(c->facts.verify_result), "%s",
                 X509_verify_cert_error_string(vr));
    }
}

/* One exchange: a POST (out != NULL) or, connect_only, the TLS handshake
 * alone. Shared by mft_httpc_post_on and mft_httpc_handshake. */
static int run(struct mft_httpc_conn *k, const char *key, const struct mft_httpc_request *rq,
               struct mft_httpc_response *out, int connect_only, struct mft_err *err)
{
    struct call c;
    struct link own = {&c}, *l = &own;
    CURL *h = NULL;
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    CURLcode cc = CURLE_OK;
    int rc = -1;

    memset(&c, 0, sizeof(c));
    mft_tls_facts_init(&c.facts, "outbound");
    if (out)
        memset(out, 0, sizeof(*out));
    if (!rq || (!out && !connect_only))
        return mft_err_set(err, MFT_E_INTERNAL, "mft_httpc_post: no request or response");
    if (rq->facts_out)
        mft_tls_facts_init(rq->facts_out, "outbound");
    c.rq = rq;
    c.max = rq->max_response ? rq->max_response : MFT_HTTPC_DEFAULT_MAX_RESPONSE;
    snprintf(c.facts.partner_id, sizeof(c.facts.partner_id), "%s",
             rq->partner_id ? rq->partner_id : "");
    snprintf(c.facts.station_id, sizeof(c.facts.station_id), "%s",
             rq->station_id ? rq->station_id : "");
    if (policy_min(rq) == policy_max(rq))
        snprintf(c.facts.versions_offered, sizeof(c.facts.versions_offered), "%s",
                 mft_tls_version_name(policy_min(rq)));
    else
        snprintf(c.facts.versions_offered, sizeof(c.facts.versions_offered), "%s..%s",
                 mft_tls_version_name(policy_min(rq)), mft_tls_version_name(policy_max(rq)));
    pthread_once(&init_once, global_init);
    if (init_rc != 0)
        return mft_err_set(err, MFT_E_INTERNAL, "libcurl cannot be initialised with OpenSSL");
    if (!rq->body && rq->len > 0 && !connect_only)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_httpc_post: a length without a body");
    if (parse_url(&c, rq->url, err) != 0)
        return -1;
    snprintf(c.facts.url_host, sizeof(c.facts.url_host), "%s", c.host);
    if (connect_only && !c.https)
        return mft_err_set(err, MFT_E_CONFIG, "not an https URL: %.200s", rq->url);
    if (c.https) {
        const struct mft_httpc_trust *t = rq->trust;
        if (!t || ((!t->certs || sk_X509_num(t->certs) == 0) &&
                   (!t->cas || sk_X509_num(t->cas) == 0) && (!t->pins || t->n_pins == 0))) {
            mft_err_set(err, MFT_E_CONFIG, "no TLS server certificate, CA or pin is registered");
            mft_err_detail(err, "an https URL needs at least one: %.200s", rq->url);
            goto out;
        }
        if (load_client(&c, rq, err) != 0) {
            if (err && err->kind == MFT_E_TLS_OWN_KEY_MISMATCH)
                mft_tls_facts_detail(&c.facts, err);
            goto out;
        }
    }
    if (!connect_only && build_headers(rq, &hdrs, err) != 0)
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
    /* a connect-only transfer keeps its connection for settle(); the handle
     * and the connection go together at the end either way */
    SETOPT(CURLOPT_FORBID_REUSE, k || connect_only ? 0L : 1L);
    SETOPT(CURLOPT_MAXCONNECTS, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, errbuf);
    SETOPT(CURLOPT_TIMEOUT, rq->timeout_s > 0 ? rq->timeout_s : MFT_HTTPC_DEFAULT_TIMEOUT_S);
    SETOPT(CURLOPT_CONNECTTIMEOUT,
           rq->connect_timeout_s > 0 ? rq->connect_timeout_s : MFT_HTTPC_DEFAULT_CONNECT_TIMEOUT_S);
    if (connect_only) {
        SETOPT(CURLOPT_CONNECT_ONLY, 1L);
    } else {
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
    }
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
    if (cc == CURLE_OK && connect_only)
        cc = settle(h, &c);
    facts_finish(h, &c, cc, errbuf);
    if (cc != CURLE_OK) {
        classify(h, &c, cc, errbuf, err);
        if (c.https && (c.hello_sent || c.verify_failed || c.client_failed == 1))
            mft_tls_facts_detail(&c.facts, err);
        goto out;
    }
    if (k && c.https) {
        if (c.leaf) { /* a new connection: keep what its handshake showed */
            X509_free(k->leaf);
            k->leaf = c.leaf;
            X509_up_ref(k->leaf);
            k->facts = c.facts;
        } else if (k->leaf) { /* the kept connection: its handshake's facts */
            c.leaf = k->leaf;
            X509_up_ref(c.leaf);
            c.facts = k->facts;
        }
    }
    if (c.https && !c.leaf) { /* fail closed: our verification must have run */
        mft_err_set(err, MFT_E_INTERNAL, "the TLS server certificate of %s was not checked",
                    c.hostport);
        goto out;
    }
    if (connect_only) {
        rc = 0;
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
    if (http_cert_refusal(&c, out->status, err) != 0) {
        mft_err_detail(err, "HTTP %ld: %.300s", out->status, (const char *)c.body);
        mft_tls_facts_detail(&c.facts, err);
        goto out;
    }
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
        snprintf(out->tls_protocol, sizeof(out->tls_protocol), "%s", c.facts.version);
        snprintf(out->tls_cipher, sizeof(out->tls_cipher), "%s", c.facts.cipher);
        out->has_tls = 1;
    }
    rc = 0;
out:
    if (rc != 0)
        mft_httpc_response_free(out);
    if (rq->facts_out && c.https)
        *rq->facts_out = c.facts;
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

int mft_httpc_post_on(struct mft_httpc_conn *k, const char *key, const struct mft_httpc_request *rq,
                      struct mft_httpc_response *out, struct mft_err *err)
{
    return run(k, key, rq, out, 0, err);
}

int mft_httpc_handshake(const struct mft_httpc_request *rq, struct mft_err *err)
{
    return run(NULL, NULL, rq, NULL, 1, err);
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
    case MFT_E_TLS_OUR_CERT_REJECTED:
    case MFT_E_TLS_SERVER_NOT_YET_VALID:
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
