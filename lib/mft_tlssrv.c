/*
 * mft_tlssrv — GnuTLS server-side mutual TLS behind libmicrohttpd.
 *
 * MHD owns the GnuTLS sessions; this module attaches a per-connection context
 * to each (through the session's db pointer, which MHD leaves unused since it
 * installs no session cache) from the connection-started notification, and
 * from then on GnuTLS calls back here: the handshake hooks (ClientHello:
 * offered versions and suites, refused here with an alert when nothing is
 * shared; client Certificate; Finished), the alert hook, a wrapper on the
 * transport read (first bytes, plaintext alerts GnuTLS cannot read, EOF), the
 * certificate callback (station certificate by SNI) and the verify function
 * (client certificate against the trust snapshot, then the partner's policy).
 *
 * libmicrohttpd 0.9.75 logs every failed handshake with one fixed string,
 * sends no alert and frees the session before the closed notification, so
 * everything is captured into the connection's struct mft_tls_facts while the
 * handshake runs, and every refusal sends its own alert, then half-closes the
 * socket so the client reads the alert before the connection goes.
 *
 * Threading: callbacks run on the connection's thread; the current snapshot
 * pointer is swapped under a mutex and reference-counted, so an update never
 * frees what a handshake in flight uses. Never logs or keeps private key bytes
 * beyond GnuTLS's own key objects. Per-handshake work stays small (no file
 * I/O, no extra public-key operations; a chain that verified against the
 * snapshot is not path-checked again while its verdict holds, struct
 * verified); the self-check of our certificate runs on failures only.
 */
#include "mft_tlssrv.h"
#include "mft_log.h"
#include "mft_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define OID_CLIENT_AUTH "1.3.6.1.5.5.7.3.2"
#define OID_ANY_EKU "2.5.29.37.0"
#define CHAIN_MAX 16 /* certificates of a peer's chain that are looked at */

#define MAX_HELLO_SUITES 64
#define MAX_CANDIDATES 4
#define VERIFIED_MAX 64      /* client chains whose verification is remembered */
#define VERIFIED_SECONDS 300 /* for at most this long */

/* What a cipher suite needs from our certificate (srv->suites[id]). */
enum suite_use { SUITE_NO = 0, SUITE_TLS13, SUITE_RSA, SUITE_ECDSA };
#define CERT_RSA 1u
#define CERT_EC 2u

struct station_cred {
    gnutls_pcert_st *pcerts;
    unsigned n_pcerts;
    gnutls_privkey_t key;
    gnutls_x509_crt_t leaf; /* for SNI matching */
    unsigned type;          /* CERT_RSA or CERT_EC: the TLS 1.2 suites it can serve */
    char id[64];
    X509 *cert;             /* OpenSSL copies for the facts and the self-check */
    STACK_OF(X509) * chain; /* may be NULL */
};

/* A partner as the handshake needs it: its id and TLS policy. */
struct snap_partner {
    char id[64];
    struct mft_tls_policy policy;
};

/* A registered client certificate or CA: its SHA-256 and whose it is. */
struct snap_fp {
    unsigned char sha256[32];
    gnutls_x509_crt_t crt; /* CAs: as held by the trust list (owned by it) */
    size_t partner;
    char org[128]; /* CAs: the organization (O) of the subject, "" when none */
};

/* A client chain that verified against this snapshot's trust list: the
 * SHA-256 of its certificates as sent, until when the verdict holds (the
 * earliest notAfter of the chain's certificates and of the trust-list
 * certificates that issued them, at most VERIFIED_SECONDS after the check)
 * and the partners its anchor identified. Remembered only once the client
 * proved its key and finished the handshake. A partner reconnecting with the
 * same certificates skips the path check (the same bytes: the same dates,
 * purposes and signatures); its TLS policy is still checked and GnuTLS still
 * checks its CertificateVerify. */
struct verified {
    unsigned char key[32];
    time_t from, until;
    size_t candidates[MAX_CANDIDATES];
    unsigned n_candidates;
    int overflow;
};

struct snap {
    atomic_int refs;
    gnutls_x509_trust_list_t cas;
    unsigned char (*exact)[32];
    size_t n_exact;
    size_t *exact_partner; /* exact[i] is partners[exact_partner[i]]'s */
    struct snap_fp *ca_fps;
    size_t n_ca_fps;
    struct snap_partner *partners;
    size_t n_partners;
    int any_optional; /* a partner may connect without a certificate */
    unsigned cert_types;
    struct station_cred *creds;
    size_t n_creds;
    pthread_mutex_t vlock; /* guards verified[] */
    struct verified verified[VERIFIED_MAX];
    unsigned n_verified, next_verified;
};

struct mft_tlssrv {
    pthread_mutex_t lock;
    struct snap *cur;
    unsigned min_version, max_version; /* of the listener's priority string */
    unsigned char suites[65536];       /* enum suite_use by IANA suite id */
    atomic_uint verified_max;          /* chains a snapshot remembers, 0..VERIFIED_MAX */
};

/* What arrived on the socket before the handshake ended (the read wrapper). */
struct rawin {
    unsigned long long bytes;
    unsigned char first[24];
    unsigned n_first;
    int not_tls, eof, reset;
    unsigned char hdr[5];
    unsigned n_hdr;
    size_t left, rec_len;
    unsigned char body[2];
    unsigned n_body;
    int pending_alert;  /* index + 1 of an alert taken from a plaintext record */
    int short_app_data; /* an encrypted record the size of an alert */
};

struct mft_tlssrv_conn {
    struct mft_tlssrv *srv;
    struct snap *snap;
    int fd;
    long long start_ms;
    struct mft_tls_facts f;
    struct rawin raw;
    unsigned offered_max, offered_min, legacy;
    uint16_t suites[MAX_HELLO_SUITES]; /* the first ones offered, for messages */
    unsigned n_suites, n_suites_total;
    unsigned offered_uses; /* 1 << enum suite_use of every suite offered */
    unsigned suite;        /* the suite we chose (IANA id, from our ServerHello) */
    unsigned version;      /* the version negotiated (0x0303, 0x0304) */
    int hello_seen, hello_v2, our_cert_sent, cert_msg_seen, verify_ran, established, closed_write;
    int cv_seen, fin_seen;   /* the client's CertificateVerify, Finished arrived */
    const char *abort_where; /* our callback that ended the handshake */
    int abort_code;          /* the GnuTLS error it returned */
    struct mft_err fail;     /* kind OK unless our code refused the handshake */
    int fail_alert;          /* the alert for it when not the kind's (refusal_alerts) */
    const struct station_cred *cred;
    size_t candidates[MAX_CANDIDATES]; /* partners the certificate identified */
    size_t n_candidates;
    int candidates_overflow; /* more than MAX_CANDIDATES: the AS2 stage decides */
    /* The client's certificates as sent (DER), and parsed: GnuTLS form for
     * the leaf at once; OpenSSL form only when asked for (peer_parse):
     * OpenSSL 3's d2i_X509 cost about as much as the rest of a handshake. */
    unsigned char *der[CHAIN_MAX];
    unsigned der_len[CHAIN_MAX], n_der;
    gnutls_x509_crt_t leaf;
    int parsed;
    X509 *peer;
    STACK_OF(X509) * peer_chain;
    struct verified pending; /* to remember once the handshake is finished */
    int pending_set, from_memory;
};

/* Keeps a copy of certificate i of the client's chain (DER). */
static void keep_der(struct mft_tlssrv_conn *c, unsigned i, const unsigned char *p, size_t len)
{
    if (i >= CHAIN_MAX || len == 0 || len > 1u << 20)
        return;
    free(c->der[i]);
    c->der_len[i] = 0;
    if ((c->der[i] = malloc(len))) {
        memcpy(c->der[i], p, len);
        c->der_len[i] = (unsigned)len;
    }
    if (i + 1 > c->n_der)
        c->n_der = i + 1;
}

/* The OpenSSL forms of the kept certificates, made on the first need. */
static void peer_parse(struct mft_tlssrv_conn *c)
{
    if (c->parsed)
        return;
    c->parsed = 1;
    c->peer_chain = sk_X509_new_null();
    for (unsigned i = 0; i < c->n_der && c->der[i]; i++) {
        const unsigned char *p = c->der[i];
        X509 *x = d2i_X509(NULL, &p, c->der_len[i]);
        if (!x)
            break;
        if (i == 0)
            c->peer = x;
        else if (!c->peer_chain || !sk_X509_push(c->peer_chain, x))
            X509_free(x);
    }
}

static void snap_unref(struct snap *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    if (s->cas)
        gnutls_x509_trust_list_deinit(s->cas, 1);
    for (size_t i = 0; i < s->n_creds; i++) {
        for (unsigned j = 0; j < s->creds[i].n_pcerts; j++)
            gnutls_pcert_deinit(&s->creds[i].pcerts[j]);
        free(s->creds[i].pcerts);
        gnutls_privkey_deinit(s->creds[i].key);
        gnutls_x509_crt_deinit(s->creds[i].leaf);
        X509_free(s->creds[i].cert);
        sk_X509_pop_free(s->creds[i].chain, X509_free);
    }
    free(s->creds);
    free(s->exact);
    free(s->exact_partner);
    free(s->ca_fps);
    free(s->partners);
    pthread_mutex_destroy(&s->vlock);
    free(s);
}

static struct snap *snap_get(struct mft_tlssrv *srv)
{
    pthread_mutex_lock(&srv->lock);
    struct snap *s = srv->cur;
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&srv->lock);
    return s;
}

int mft_tlssrv_create(struct mft_tlssrv **out, struct mft_err *err)
{
    struct mft_tlssrv *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    pthread_mutex_init(&srv->lock, NULL);
    atomic_init(&srv->verified_max, VERIFIED_MAX);
    if (mft_tlssrv_set_priorities(srv, MFT_TLSSRV_DEFAULT_PRIORITIES, err) < 0) {
        mft_tlssrv_destroy(srv);
        return -1;
    }
    *out = srv;
    return 0;
}

void mft_tlssrv_destroy(struct mft_tlssrv *srv)
{
    if (!srv)
        return;
    snap_unref(srv->cur);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
}

static unsigned protocol_wire(gnutls_protocol_t p)
{
    switch (p) {
    case GNUTLS_TLS1_0:
        return 0x0301;
    case GNUTLS_TLS1_1:
        return 0x0302;
    case GNUTLS_TLS1_2:
        return 0x0303;
    case GNUTLS_TLS1_3:
        return 0x0304;
    default:
        return 0;
    }
}

int mft_tlssrv_set_priorities(struct mft_tlssrv *srv, const char *priorities, struct mft_err *err)
{
    gnutls_priority_t p = NULL;
    const char *errpos = NULL;
    const unsigned int *list = NULL;
    int rc = gnutls_priority_init2(&p, priorities, &errpos, 0);
    if (rc < 0) {
        mft_err_set(err, MFT_E_CONFIG, "invalid GnuTLS priority string");
        return mft_err_detail(err, "gnutls: %s at \"%.40s\"", gnutls_strerror(rc),
                              errpos ? errpos : "");
    }
    srv->min_version = srv->max_version = 0;
    int n = gnutls_priority_protocol_list(p, &list);
    for (int i = 0; i < n; i++) {
        unsigned v = protocol_wire((gnutls_protocol_t)list[i]);
        if (v && (!srv->min_version || v < srv->min_version))
            srv->min_version = v;
        if (v > srv->max_version)
            srv->max_version = v;
    }
    memset(srv->suites, SUITE_NO, sizeof(srv->suites));
    for (unsigned i = 0;; i++) {
        unsigned idx;
        unsigned char id[2];
        gnutls_kx_algorithm_t kx;
        rc = gnutls_priority_get_cipher_suite_index(p, i, &idx);
        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (rc < 0 || !gnutls_cipher_suite_info(idx, id, &kx, NULL, NULL, NULL))
            continue;
        unsigned sid = (unsigned)id[0] << 8 | id[1];
        if (id[0] == 0x13)
            srv->suites[sid] = SUITE_TLS13;
        else if (kx == GNUTLS_KX_ECDHE_RSA || kx == GNUTLS_KX_DHE_RSA || kx == GNUTLS_KX_RSA)
            srv->suites[sid] = SUITE_RSA;
        else if (kx == GNUTLS_KX_ECDHE_ECDSA)
            srv->suites[sid] = SUITE_ECDSA;
    }
    gnutls_priority_deinit(p);
    return 0;
}

/* Converts an OpenSSL certificate to a GnuTLS one. Returns NULL on failure. */
static gnutls_x509_crt_t to_gnutls(X509 *x)
{
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    gnutls_x509_crt_t crt = NULL;
    if (len <= 0)
        return NULL;
    gnutls_datum_t d = {der, (unsigned)len};
    if (gnutls_x509_crt_init(&crt) < 0 ||
        gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) < 0) {
        gnutls_x509_crt_deinit(crt);
        crt = NULL;
    }
    OPENSSL_free(der);
    return crt;
}

/* Returns 1 when the private key belongs to the certificate's public key
 * (compares the public halves: no private-key operation). */
static int key_matches(gnutls_pcert_st *pcert, gnutls_privkey_t key)
{
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t a = {NULL, 0}, b = {NULL, 0};
    int same = 0;
    if (gnutls_pubkey_init(&pub) == 0 && gnutls_pubkey_import_privkey(pub, key, 0, 0) == 0 &&
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &a) == 0 &&
        gnutls_pubkey_export2(pcert->pubkey, GNUTLS_X509_FMT_DER, &b) == 0)
        same = a.size == b.size && memcmp(a.data, b.data, a.size) == 0;
    gnutls_free(a.data);
    gnutls_free(b.data);
    gnutls_pubkey_deinit(pub);
    return same;
}

static int load_station_cred(const struct mft_station *st, struct station_cred *cred,
                             struct mft_err *err)
{
    gnutls_datum_t cert = {(unsigned char *)st->tls_cert_pem, (unsigned)strlen(st->tls_cert_pem)};
    gnutls_datum_t key = {(unsigned char *)st->tls_key_pem, (unsigned)strlen(st->tls_key_pem)};
    unsigned n = 16;
    int rc;
    snprintf(cred->id, sizeof(cred->id), "%s", st->id);
    cred->pcerts = calloc(n, sizeof(*cred->pcerts));
    if (!cred->pcerts)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    rc = gnutls_pcert_list_import_x509_raw(cred->pcerts, &n, &cert, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0) {
        mft_err_set(err, MFT_E_CONFIG, "station %s: TLS certificate unusable", st->id);
        return mft_err_detail(err, "gnutls: %s", gnutls_strerror(rc));
    }
    cred->n_pcerts = n;
    if ((rc = gnutls_privkey_init(&cred->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(cred->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        mft_err_set(err, MFT_E_CONFIG, "station %s: TLS key unusable", st->id);
        return mft_err_detail(err, "gnutls: %s", gnutls_strerror(rc));
    }
    cred->leaf = to_gnutls(st->tls.cert);
    cred->cert = st->tls.cert;
    X509_up_ref(cred->cert);
    if (st->tls.chain && !(cred->chain = X509_chain_up_ref(st->tls.chain)))
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    /* A key that is not the certificate's fails every handshake with an error
     * the partner cannot explain: refuse the whole snapshot instead. */
    if (!key_matches(&cred->pcerts[0], cred->key)) {
        char fp[65] = "";
        mft_x509_fingerprint_sha256(cred->cert, fp);
        mft_err_set(err, MFT_E_TLS_OWN_KEY_MISMATCH,
                    "station %s: the TLS private key does not belong to the TLS certificate",
                    st->id);
        return mft_err_detail(err, "certificate sha256=%s", fp);
    }
    return 0;
}

/* The partners' registered client certificates and CAs into the snapshot. */
static int load_partners(struct snap *s, const struct mft_registry *reg, struct mft_err *err)
{
    size_t n_exact = 0, n_cas = 0;
    for (size_t i = 0; i < reg->n_partners; i++) {
        n_exact += reg->partners[i].tls_certs ? sk_X509_num(reg->partners[i].tls_certs) : 0;
        n_cas += reg->partners[i].tls_cas ? sk_X509_num(reg->partners[i].tls_cas) : 0;
    }
    s->exact = calloc(n_exact + 1, sizeof(*s->exact));
    s->exact_partner = calloc(n_exact + 1, sizeof(*s->exact_partner));
    s->ca_fps = calloc(n_cas + 1, sizeof(*s->ca_fps));
    s->partners = calloc(reg->n_partners + 1, sizeof(*s->partners));
    if (!s->exact || !s->exact_partner || !s->ca_fps || !s->partners)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    for (size_t i = 0; i < reg->n_partners; i++) {
        const struct mft_partner *p = &reg->partners[i];
        snprintf(s->partners[i].id, sizeof(s->partners[i].id), "%s", p->id);
        s->partners[i].policy = p->tls_policy;
        s->any_optional |= p->tls_policy.client_cert_optional;
        for (int j = 0; p->tls_certs && j < sk_X509_num(p->tls_certs); j++) {
            unsigned int len = 32;
            X509_digest(sk_X509_value(p->tls_certs, j), EVP_sha256(), s->exact[s->n_exact], &len);
            s->exact_partner[s->n_exact++] = i;
        }
        for (int j = 0; p->tls_cas && j < sk_X509_num(p->tls_cas); j++) {
            unsigned int len = 32;
            X509 *ca = sk_X509_value(p->tls_cas, j);
            gnutls_x509_crt_t crt = to_gnutls(ca);
            if (!crt || gnutls_x509_trust_list_add_cas(s->cas, &crt, 1, 0) != 1) {
                gnutls_x509_crt_deinit(crt);
                return mft_err_set(err, MFT_E_CONFIG, "partner %s: TLS CA unusable", p->id);
            }
            struct snap_fp *fp = &s->ca_fps[s->n_ca_fps++];
            fp->crt = crt;
            X509_digest(ca, EVP_sha256(), fp->sha256, &len);
            fp->partner = i;
            if (X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_organizationName, fp->org,
                                          sizeof(fp->org)) < 0)
                fp->org[0] = '\0';
        }
    }
    s->n_partners = reg->n_partners;
    return 0;
}

int mft_tlssrv_update(struct mft_tlssrv *srv, const struct mft_registry *reg, struct mft_err *err)
{
    int rc = -1;
    struct snap *s = calloc(1, sizeof(*s));
    if (!s)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    atomic_init(&s->refs, 1);
    pthread_mutex_init(&s->vlock, NULL);
    if (gnutls_x509_trust_list_init(&s->cas, 0) < 0) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    s->creds = calloc(reg->n_stations + 1, sizeof(*s->creds));
    if (!s->creds) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (load_partners(s, reg, err) < 0)
        goto out;
    for (size_t i = 0; i < reg->n_stations; i++) {
        const struct mft_station *st = &reg->stations[i];
        if (!st->tls_cert_pem || !st->tls_key_pem || !st->tls.cert)
            continue;
        struct station_cred *cred = &s->creds[s->n_creds++]; /* counted: freed on failure */
        if (load_station_cred(st, cred, err) < 0)
            goto out;
        int pk = gnutls_privkey_get_pk_algorithm(cred->key, NULL);
        cred->type = pk == GNUTLS_PK_RSA || pk == GNUTLS_PK_RSA_PSS ? CERT_RSA : CERT_EC;
        s->cert_types |= cred->type;
    }
    pthread_mutex_lock(&srv->lock);
    struct snap *old = srv->cur;
    srv->cur = s;
    pthread_mutex_unlock(&srv->lock);
    snap_unref(old);
    s = NULL;
    rc = 0;
out:
    snap_unref(s);
    return rc;
}

int mft_tlssrv_ready(struct mft_tlssrv *srv)
{
    struct snap *s = snap_get(srv);
    int ready = s && s->n_creds > 0;
    snap_unref(s);
    return ready;
}

/* ---- facts ------------------------------------------------------------------ */

static void versions_range(char *buf, size_t len, unsigned lo, unsigned hi)
{
    if (!hi)
        snprintf(buf, len, "%s", "");
    else if (!lo || lo == hi)
        snprintf(buf, len, "%s", mft_tls_version_name(hi));
    else
        snprintf(buf, len, "%s..%s", mft_tls_version_name(lo), mft_tls_version_name(hi));
}

/* The negotiated version, and the suite by its IANA name (OpenSSL's table,
 * so that both directions name suites alike). */
static void note_negotiated(struct mft_tlssrv_conn *c, gnutls_session_t session)
{
    c->version = protocol_wire(gnutls_protocol_get_version(session));
    snprintf(c->f.version, sizeof(c->f.version), "%s", mft_tls_version_name(c->version));
    const char *name = c->suite ? mft_tls_suite_name(c->suite) : NULL;
    if (name)
        snprintf(c->f.cipher, sizeof(c->f.cipher), "%s", name);
    else if (c->suite)
        snprintf(c->f.cipher, sizeof(c->f.cipher), "0x%04x", c->suite);
}

/* The suite we chose, from the ServerHello we sent: until the new keys are in
 * use GnuTLS reports the null cipher (TLS 1.2 verifies the client's
 * certificate before that). */
static void note_server_hello(struct mft_tlssrv_conn *c, const gnutls_datum_t *msg)
{
    size_t off = 2 + 32; /* legacy_version, random */
    if (!msg || !msg->data || msg->size < off + 1)
        return;
    off += 1 + (size_t)msg->data[off]; /* session id */
    if (off + 2 > msg->size)
        return;
    c->suite = (unsigned)msg->data[off] << 8 | msg->data[off + 1];
}

static int alert_read(gnutls_session_t session, gnutls_record_encryption_level_t level,
                      gnutls_alert_level_t alert_level, gnutls_alert_description_t desc);

/* Shuts the socket's write side (what we wrote goes out with a FIN) and
 * reads away what the client already sent. */
static void close_write(struct mft_tlssrv_conn *c)
{
    unsigned char sink[4096];
    if (c->fd < 0)
        return;
    shutdown(c->fd, SHUT_WR);
    for (int i = 0; i < 64 && recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT) > 0; i++)
        ;
    c->closed_write = 1;
}

/*
 * Ends the handshake with a fatal alert, recorded in the facts. The socket's
 * write side is then shut (the alert goes out with a FIN) and what the client
 * already sent is read away: libmicrohttpd closes the socket next, and a close
 * with unread bytes makes the kernel send a reset that can overtake the alert
 * on the client's side.
 */
static void send_alert(struct mft_tlssrv_conn *c, gnutls_session_t session, int code)
{
    int r;
    mft_tls_facts_alert(&c->f, 1, 1, code);
    /* With an alert read function installed, gnutls_alert_send hands the
     * alert to that function instead of sending it (GnuTLS's QUIC interface):
     * it is taken away for the time of the send. */
    gnutls_alert_set_read_function(session, NULL);
    do
        r = gnutls_alert_send(session, GNUTLS_AL_FATAL, (gnutls_alert_description_t)code);
    while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
    gnutls_alert_set_read_function(session, alert_read);
    close_write(c);
}

/* Refuses the handshake from one of our callbacks: kind, alert, GnuTLS code. */
static int refuse(struct mft_tlssrv_conn *c, gnutls_session_t session, const char *where, int alert,
                  int code)
{
    send_alert(c, session, alert);
    c->abort_where = where;
    c->abort_code = code;
    return code;
}

/* ---- the transport read wrapper ------------------------------------------- */

static void record_end(struct mft_tlssrv_conn *c)
{
    struct rawin *r = &c->raw;
    if (r->hdr[0] == 21 && r->rec_len == 2 && r->n_body == 2) {
        /* a plaintext alert: GnuTLS reports it through alert_read unless it
         * expected encrypted records by then (TLS 1.3) */
        mft_tls_facts_alert(&c->f, 0, r->body[0] == GNUTLS_AL_FATAL, r->body[1]);
        r->pending_alert = (int)c->f.n_alerts;
    } else if (r->hdr[0] == 23 && r->rec_len >= 19 && r->rec_len <= 24 && !c->cert_msg_seen) {
        r->short_app_data = 1; /* TLS 1.3: 2 alert bytes + type + 16-byte tag */
    }
}

/* Follows the record framing of what the client sent during the handshake. */
static void raw_track(struct mft_tlssrv_conn *c, const unsigned char *p, size_t n)
{
    struct rawin *r = &c->raw;
    if (r->bytes == 0 && n > 0)
        r->not_tls = p[0] != 22 && p[0] != 21 && !(p[0] & 0x80); /* 0x80: SSLv2 hello */
    for (size_t i = 0; i < n && r->n_first < sizeof(r->first); i++)
        r->first[r->n_first++] = p[i];
    r->bytes += n;
    if (r->not_tls)
        return;
    for (size_t i = 0; i < n;) {
        if (r->left == 0 && r->n_hdr < 5) {
            r->hdr[r->n_hdr++] = p[i++];
            if (r->n_hdr == 5) {
                r->rec_len = r->left = (size_t)r->hdr[3] << 8 | r->hdr[4];
                r->n_body = 0;
                if (r->left == 0) {
                    record_end(c);
                    r->n_hdr = 0;
                }
            }
            continue;
        }
        size_t take = n - i < r->left ? n - i : r->left;
        for (size_t k = 0; k < take && r->n_body < 2; k++)
            r->body[r->n_body++] = p[i + k];
        i += take;
        r->left -= take;
        if (r->left == 0) {
            record_end(c);
            r->n_hdr = 0;
        }
    }
}

/* Plain HTTP on the TLS port: answer in HTTP so the sender sees why. */
static void answer_plain_http(struct mft_tlssrv_conn *c)
{
    static const char answer[] = "HTTP/1.1 400 Bad Request\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Connection: close\r\n"
                                 "Content-Length: 58\r\n\r\n"
                                 "This port speaks HTTPS: plain HTTP was sent to a TLS port\n";
    const unsigned char *f = c->raw.first;
    unsigned i = 0;
    while (i < c->raw.n_first && f[i] >= 'A' && f[i] <= 'Z')
        i++;
    if (i < 3 || i >= c->raw.n_first || f[i] != ' ')
        return;
    if (send(c->fd, answer, sizeof(answer) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
        close_write(c);
}

static ssize_t pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
    struct mft_tlssrv_conn *c = ptr;
    ssize_t n = recv(c->fd, data, len, 0);
    if (c->established)
        return n;
    if (n > 0) {
        raw_track(c, data, (size_t)n);
        if (c->raw.not_tls) {
            unsigned char more[sizeof(c->raw.first)];
            ssize_t m = recv(c->fd, more, sizeof(c->raw.first) - c->raw.n_first, MSG_DONTWAIT);
            for (ssize_t i = 0; i < m; i++)
                c->raw.first[c->raw.n_first++] = more[i];
            answer_plain_http(c);
            errno = ECONNRESET;
            return -1;
        }
    } else if (n == 0) {
        c->raw.eof = 1;
    } else if (errno == ECONNRESET) {
        c->raw.reset = 1;
    }
    return n;
}

static int pull_timeout(gnutls_transport_ptr_t ptr, unsigned int ms)
{
    struct mft_tlssrv_conn *c = ptr;
    return gnutls_system_recv_timeout((gnutls_transport_ptr_t)(intptr_t)c->fd, ms);
}

/* ---- the ClientHello ----------------------------------------------------------- */

/* Reads the offered versions and suites and the SNI of a ClientHello body. */
static void parse_client_hello(struct mft_tlssrv_conn *c, const unsigned char *p, size_t len)
{
    if (len < 2 + 32 + 1)
        return;
    c->legacy = (unsigned)p[0] << 8 | p[1];
    size_t off = 34;
    off += 1 + p[off]; /* session id */
    if (off + 2 > len)
        return;
    size_t slen = (size_t)p[off] << 8 | p[off + 1];
    off += 2;
    for (size_t i = 0; i + 1 < slen && off + i + 1 < len; i += 2) {
        uint16_t id = (uint16_t)(p[off + i] << 8 | p[off + i + 1]);
        if ((id & 0x0f0f) == 0x0a0a || id == 0x00ff) /* GREASE, renegotiation SCSV */
            continue;
        if (c->n_suites < MAX_HELLO_SUITES)
            c->suites[c->n_suites++] = id;
        c->n_suites_total++;
        c->offered_uses |= 1u << c->srv->suites[id];
    }
    off += slen;
    if (off + 1 > len)
        return;
    off += 1 + p[off]; /* compression methods */
    if (off + 2 > len)
        return;
    size_t end = off + 2 + ((size_t)p[off] << 8 | p[off + 1]);
    off += 2;
    if (end > len)
        end = len;
    while (off + 4 <= end) {
        unsigned type = (unsigned)p[off] << 8 | p[off + 1];
        size_t elen = (size_t)p[off + 2] << 8 | p[off + 3];
        off += 4;
        if (off + elen > end)
            break;
        if (type == 43 && elen >= 1) { /* supported_versions */
            for (size_t i = 1; i + 1 < elen && i + 1 <= p[off]; i += 2) {
                unsigned v = (unsigned)p[off + i] << 8 | p[off + i + 1];
                if ((v & 0x0f0f) == 0x0a0a) /* GREASE */
                    continue;
                if (v > c->offered_max)
                    c->offered_max = v;
                if (!c->offered_min || v < c->offered_min)
                    c->offered_min = v;
            }
        } else if (type == 0 && elen > 5 && p[off + 2] == 0) { /* server_name, host_name */
            size_t nl = (size_t)p[off + 3] << 8 | p[off + 4];
            if (5 + nl <= elen && nl < sizeof(c->f.sni)) {
                memcpy(c->f.sni, p + off + 5, nl);
                c->f.sni[nl] = '\0';
            }
        }
        off += elen;
    }
    if (!c->offered_max) /* no supported_versions: the legacy field is the max */
        c->offered_max = c->legacy;
    versions_range(c->f.versions_offered, sizeof(c->f.versions_offered), c->offered_min,
                   c->offered_max);
}

/* The highest version both sides accept, or 0. */
static unsigned common_version(const struct mft_tlssrv_conn *c, unsigned lo, unsigned hi)
{
    unsigned cmin = c->offered_min ? c->offered_min : 0x0300;
    unsigned top = c->offered_max < hi ? c->offered_max : hi;
    return top >= lo && top >= cmin ? top : 0;
}

/* The station whose certificate answers a client that asked for this server
 * name: the first whose certificate names it, else the first. */
static const struct station_cred *pick_cred(const struct snap *s, const char *sni)
{
    if (!s || s->n_creds == 0)
        return NULL;
    for (size_t i = 0; sni && *sni && i < s->n_creds; i++)
        if (s->creds[i].leaf && gnutls_x509_crt_check_hostname(s->creds[i].leaf, sni))
            return &s->creds[i];
    return &s->creds[0];
}

/* Returns 1 when the client offered a suite usable at version v with the
 * certificate of the station it asked for. */
static int suite_shared(const struct mft_tlssrv_conn *c, unsigned v)
{
    const struct station_cred *cred = pick_cred(c->snap, c->f.sni);
    unsigned types = cred ? cred->type : 0;
    if (v == 0x0304)
        return (c->offered_uses & 1u << SUITE_TLS13) != 0;
    return ((c->offered_uses & 1u << SUITE_RSA) && (types & CERT_RSA)) ||
           ((c->offered_uses & 1u << SUITE_ECDSA) && (types & CERT_EC));
}

static int on_client_hello(struct mft_tlssrv_conn *c, gnutls_session_t session,
                           const gnutls_datum_t *msg)
{
    c->hello_seen = 1;
    c->offered_min = c->offered_max = 0;
    c->n_suites = c->n_suites_total = c->offered_uses = 0;
    parse_client_hello(c, msg->data, msg->size);
    unsigned v = common_version(c, c->srv->min_version, c->srv->max_version);
    if (!v) {
        mft_err_set(&c->fail, MFT_E_TLS_NO_COMMON_PROTOCOL,
                    "no common TLS version: the client offered %s, this gateway accepts %s",
                    c->f.versions_offered, c->f.versions_accepted);
        return refuse(c, session, "the ClientHello hook", GNUTLS_A_PROTOCOL_VERSION,
                      GNUTLS_E_UNSUPPORTED_VERSION_PACKET);
    }
    if (!suite_shared(c, v)) {
        mft_err_set(&c->fail, MFT_E_TLS_NO_SHARED_CIPHER,
                    "no shared TLS cipher suite: the client offered %u suites for %s, none of "
                    "which this gateway accepts",
                    c->n_suites_total, mft_tls_version_name(v));
        return refuse(c, session, "the ClientHello hook", GNUTLS_A_HANDSHAKE_FAILURE,
                      GNUTLS_E_NO_CIPHER_SUITES);
    }
    return 0;
}

/* The client's Certificate message: an empty list is refused here with the
 * alert the version defines (GnuTLS itself would close without one). */
/*
 * A Certificate message's layout: the list (after TLS 1.3's request context)
 * and its first entry, the leaf. Returns -1 when the message is too short for
 * a list, 0 for an empty list, 1 with the leaf's DER in *leaf (which may be
 * empty when the entry's length does not fit).
 */
static int cert_msg_leaf(const gnutls_datum_t *msg, int tls13, gnutls_datum_t *leaf)
{
    size_t off = tls13 ? 1u + (msg->size ? msg->data[0] : 0u) : 0u; /* request context */
    leaf->data = NULL;
    leaf->size = 0;
    if (off + 3 > msg->size)
        return -1;
    if ((msg->data[off] | msg->data[off + 1] | msg->data[off + 2]) == 0)
        return 0;
    size_t first = off + 6;
    if (first <= msg->size) {
        size_t len =
            (size_t)msg->data[off + 3] << 16 | (size_t)msg->data[off + 4] << 8 | msg->data[off + 5];
        if (len > 0 && len <= msg->size - first) {
            leaf->data = msg->data + first;
            leaf->size = (unsigned)len;
        }
    }
    return 1;
}

static int on_client_certificate(struct mft_tlssrv_conn *c, gnutls_session_t session,
                                 const gnutls_datum_t *msg)
{
    int tls13 = gnutls_protocol_get_version(session) == GNUTLS_TLS1_3;
    gnutls_datum_t d;
    c->cert_msg_seen = 1;
    note_negotiated(c, session);
    int listed = cert_msg_leaf(msg, tls13, &d);
    if (listed < 0)
        return 0;
    /* the leaf now: a failure before the verify function (TLS 1.3 checks the
     * CertificateVerify first) still names the certificate */
    if (!c->leaf && d.size) {
        keep_der(c, 0, d.data, d.size); /* the facts name it even if GnuTLS cannot read it */
        if (gnutls_x509_crt_init(&c->leaf) == 0 &&
            gnutls_x509_crt_import(c->leaf, &d, GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crt_deinit(c->leaf);
            c->leaf = NULL;
        }
    }
    unsigned ku = 0;
    if (c->leaf && gnutls_x509_crt_get_key_usage(c->leaf, &ku, NULL) >= 0 &&
        !(ku & GNUTLS_KEY_DIGITAL_SIGNATURE)) {
        /* GnuTLS would refuse the CertificateVerify without a word */
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_NO_CLIENT_AUTH,
                    "the client's TLS certificate's key usage does not include "
                    "digitalSignature, which TLS client authentication needs");
        mft_err_detail(&c->fail, "keyUsage bits 0x%x", ku);
        snprintf(c->fail.remedy, sizeof(c->fail.remedy),
                 "the partner needs a TLS client certificate whose key usage includes "
                 "digitalSignature");
        return refuse(c, session, "the Certificate hook", GNUTLS_A_UNSUPPORTED_CERTIFICATE,
                      GNUTLS_E_CERTIFICATE_ERROR);
    }
    if (listed > 0 || (c->snap && c->snap->any_optional))
        return 0;
    mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_MISSING, NULL);
    mft_err_detail(&c->fail, "the client's Certificate message was empty (%s)", c->f.version);
    /* RFC 8446 4.4.2.4: certificate_required; RFC 5246 7.4.6: handshake_failure */
    return refuse(c, session, "the Certificate hook",
                  tls13 ? GNUTLS_A_CERTIFICATE_REQUIRED : GNUTLS_A_HANDSHAKE_FAILURE,
                  GNUTLS_E_NO_CERTIFICATE_FOUND);
}

static void verified_commit(struct mft_tlssrv_conn *c);

static int hook(gnutls_session_t session, unsigned int htype, unsigned when, unsigned int incoming,
                const gnutls_datum_t *msg)
{
    struct mft_tlssrv_conn *c = gnutls_db_get_ptr(session);
    if (!c)
        return 0;
    if (!incoming) {
        if (htype == GNUTLS_HANDSHAKE_SERVER_HELLO && when == GNUTLS_HOOK_POST)
            note_server_hello(c, msg);
        if (htype == GNUTLS_HANDSHAKE_CERTIFICATE_PKT && when == GNUTLS_HOOK_POST)
            c->our_cert_sent = 1;
        return 0;
    }
    if (htype == GNUTLS_HANDSHAKE_CLIENT_HELLO && when == GNUTLS_HOOK_PRE)
        return on_client_hello(c, session, msg);
    if (htype == GNUTLS_HANDSHAKE_CLIENT_HELLO_V2 && when == GNUTLS_HOOK_PRE) {
        c->hello_seen = c->hello_v2 = 1; /* an SSLv2-format hello: GnuTLS decides alone */
        return 0;
    }
    /* both hooks of an incoming message run before GnuTLS checks it: a
     * CertificateVerify that fails is known by the Finished never reached */
    if (htype == GNUTLS_HANDSHAKE_CERTIFICATE_VERIFY && when == GNUTLS_HOOK_PRE)
        c->cv_seen = 1;
    if (htype == GNUTLS_HANDSHAKE_FINISHED && when == GNUTLS_HOOK_PRE)
        c->fin_seen = 1;
    if (htype == GNUTLS_HANDSHAKE_CERTIFICATE_PKT && when == GNUTLS_HOOK_PRE)
        return on_client_certificate(c, session, msg);
    if (htype == GNUTLS_HANDSHAKE_FINISHED && when == GNUTLS_HOOK_POST) {
        /* the facts are read now, while the session is certainly alive */
        note_negotiated(c, session);
        c->established = 1;
        verified_commit(c);
        /* from now on alerts are sent again (MHD's close_notify at the end):
         * while a read function is installed GnuTLS hands it every alert
         * instead of sending it */
        gnutls_alert_set_read_function(session, NULL);
    }
    return 0;
}

static int alert_read(gnutls_session_t session, gnutls_record_encryption_level_t level,
                      gnutls_alert_level_t alert_level, gnutls_alert_description_t desc)
{
    struct mft_tlssrv_conn *c = gnutls_db_get_ptr(session);
    (void)level;
    /* GnuTLS also calls this for the alerts sent on the session instead of
     * sending them: MHD's close_notify after a failed handshake is not the
     * client's (a plaintext close_notify of the client's is taken from the
     * record by the read wrapper) */
    if (!c || c->abort_where || desc == GNUTLS_A_CLOSE_NOTIFY)
        return 0;
    int p = c->raw.pending_alert;
    c->raw.pending_alert = 0;
    if (p > 0 && c->f.alerts[p - 1].code == (int)desc) /* already taken from the record */
        return 0;
    mft_tls_facts_alert(&c->f, 0, alert_level == GNUTLS_AL_FATAL, (int)desc);
    return 0;
}

/* ---- verification ------------------------------------------------------------ */

/* Returns 1 when the certificate's EKU allows the purpose OID (or it has no EKU). */
static int allows_purpose(gnutls_x509_crt_t crt, const char *purpose_oid)
{
    char oid[128];
    int found_any = 0;
    for (unsigned i = 0;; i++) {
        size_t sz = sizeof(oid);
        int rc = gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &sz, NULL);
        if (rc == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (rc < 0)
            return 0;
        found_any = 1;
        if (strcmp(oid, purpose_oid) == 0 || strcmp(oid, OID_ANY_EKU) == 0)
            return 1;
    }
    return !found_any;
}

static void describe_verify_status(struct mft_tlssrv_conn *c, unsigned status)
{
    gnutls_datum_t out = {NULL, 0};
    c->f.verify_code = status;
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
        snprintf(c->f.verify_result, sizeof(c->f.verify_result), "%s", (char *)out.data);
        gnutls_free(out.data);
    }
}

/*
 * GnuTLS takes certificate times from its global clock only (and decides
 * with them which path to build: an expired intermediate next to a trusted
 * root with its name and key is skipped). So its clock is, installed once per
 * process, this function: the validation time of the verification running on
 * this thread, else the system time like GnuTLS's own.
 */
static _Thread_local const time_t *verify_at;
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;

static time_t verify_clock(time_t *t)
{
    time_t now = verify_at ? *verify_at : time(NULL);
    if (t)
        *t = now;
    return now;
}

static void clock_install(void)
{
    gnutls_global_set_time_function(verify_clock);
}

/* Keys and signatures of at least 112 bits of security (what the OpenSSL
 * engine's auth level 2 requires too). */
#define VERIFY_FLAGS GNUTLS_PROFILE_TO_VFLAGS(GNUTLS_PROFILE_MEDIUM)

/* GnuTLS's verdict on the path from chain to cas for the purpose OID at time
 * at: < 0 an error, else 0 with *status (0 = trusted, else GNUTLS_CERT_* bits). */
static int path_status(gnutls_x509_trust_list_t cas, gnutls_x509_crt_t *chain, unsigned n_chain,
                       time_t at, const char *oid, unsigned *status)
{
    gnutls_typed_vdata_st vdata = {GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)oid, 0};
    pthread_once(&clock_once, clock_install);
    verify_at = &at;
    int vr = gnutls_x509_trust_list_verify_crt2(cas, chain, n_chain, &vdata, 1, VERIFY_FLAGS,
                                                status, NULL);
    verify_at = NULL;
    return vr;
}

/* Appends GnuTLS's words for the status bits to err's detail. Returns -1. */
static int status_detail(struct mft_err *err, unsigned status)
{
    gnutls_datum_t out = {NULL, 0};
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
        mft_err_detail(err, "verify: %s", (char *)out.data);
        gnutls_free(out.data);
    }
    return -1;
}

/* The peer name against the leaf: an IP literal against its IP names, else DNS. */
static int name_matches(gnutls_x509_crt_t leaf, const char *name)
{
    unsigned char ip[16];
    if (inet_pton(AF_INET, name, ip) == 1)
        return gnutls_x509_crt_check_ip(leaf, ip, 4, 0) != 0;
    if (inet_pton(AF_INET6, name, ip) == 1)
        return gnutls_x509_crt_check_ip(leaf, ip, 16, 0) != 0;
    return gnutls_x509_crt_check_hostname2(leaf, name, 0) != 0;
}

/*
 * The GnuTLS validation of a peer certificate, shared by the handshake
 * (verify) and mft_tlssrv_verify: chain[0] is the peer's, the rest what it
 * sent. The leaf's own time and EKU first (their refusals are the clearest),
 * then, unless the leaf is registered as such (pinned), the path to cas for
 * the purpose at time at, then the name. Returns 0, or -1 with err.
 */
static int chain_check(gnutls_x509_trust_list_t cas, gnutls_x509_crt_t *chain, unsigned n_chain,
                       time_t at, enum mft_x509_purpose purpose, const char *peer_name, int pinned,
                       struct mft_err *err)
{
    const char *oid = purpose == MFT_X509_SERVER ? GNUTLS_KP_TLS_WWW_SERVER : OID_CLIENT_AUTH;
    unsigned status = 0;
    int vr;

    if (gnutls_x509_crt_get_expiration_time(chain[0]) < at)
        return mft_x509_refuse(err, purpose, MFT_X509_EXPIRED, 0, NULL);
    if (gnutls_x509_crt_get_activation_time(chain[0]) > at)
        return mft_x509_refuse(err, purpose, MFT_X509_NOT_YET_VALID, 0, NULL);
    if (!allows_purpose(chain[0], oid))
        return mft_x509_refuse(err, purpose, MFT_X509_WRONG_PURPOSE, 0, NULL);
    if (!pinned) {
        vr = path_status(cas, chain, n_chain, at, oid, &status);
        if (vr < 0) {
            mft_x509_refuse(err, purpose, MFT_X509_UNTRUSTED, -1, NULL);
            return mft_err_detail(err, "gnutls: %s", gnutls_strerror(vr));
        }
        if (status != 0) {
            if (status & GNUTLS_CERT_EXPIRED)
                mft_x509_refuse(err, purpose, MFT_X509_EXPIRED, -1, NULL);
            else if (status & GNUTLS_CERT_NOT_ACTIVATED)
                mft_x509_refuse(err, purpose, MFT_X509_NOT_YET_VALID, -1, NULL);
            else if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
                mft_x509_refuse(err, purpose, MFT_X509_WRONG_PURPOSE, -1, NULL);
            else
                mft_x509_refuse(err, purpose, MFT_X509_UNTRUSTED, -1, NULL);
            return status_detail(err, status);
        }
    }
    if (peer_name && !name_matches(chain[0], peer_name))
        return mft_x509_refuse(err, purpose, MFT_X509_NAME_MISMATCH, 0, peer_name);
    return 0;
}

/* The TLS alert that tells the client why its certificate was refused. */
static const struct {
    enum mft_err_kind kind;
    int alert;
} refusal_alerts[] = {
    {MFT_E_TLS_CLIENT_CERT_MISSING, GNUTLS_A_CERTIFICATE_REQUIRED},
    {MFT_E_TLS_CLIENT_CERT_EXPIRED, GNUTLS_A_CERTIFICATE_EXPIRED},
    {MFT_E_TLS_CLIENT_CERT_NOT_YET_VALID, GNUTLS_A_CERTIFICATE_EXPIRED},
    {MFT_E_TLS_CLIENT_CERT_NO_CLIENT_AUTH, GNUTLS_A_UNSUPPORTED_CERTIFICATE},
    {MFT_E_TLS_CLIENT_CERT_UNTRUSTED, GNUTLS_A_UNKNOWN_CA},
    {MFT_E_TLS_CLIENT_CHAIN_INCOMPLETE, GNUTLS_A_UNKNOWN_CA},
    {MFT_E_TLS_NO_COMMON_PROTOCOL, GNUTLS_A_PROTOCOL_VERSION},
    {MFT_E_TLS_NO_SHARED_CIPHER, GNUTLS_A_HANDSHAKE_FAILURE},
    {MFT_E_OK, GNUTLS_A_BAD_CERTIFICATE}, /* anything else */
};

static int verify_refuse(struct mft_tlssrv_conn *c, gnutls_session_t session)
{
    size_t i = 0;
    while (refusal_alerts[i].kind != MFT_E_OK && refusal_alerts[i].kind != c->fail.kind)
        i++;
    return refuse(c, session, "the verify function",
                  c->fail_alert ? c->fail_alert : refusal_alerts[i].alert,
                  GNUTLS_E_CERTIFICATE_ERROR);
}

static void add_candidate(struct mft_tlssrv_conn *c, size_t partner)
{
    for (size_t i = 0; i < c->n_candidates; i++)
        if (c->candidates[i] == partner)
            return;
    if (c->n_candidates < MAX_CANDIDATES)
        c->candidates[c->n_candidates++] = partner;
    else
        c->candidates_overflow = 1;
}

/* The partners that registered the client's certificate itself. */
static void identify_exact(struct mft_tlssrv_conn *c)
{
    unsigned char fp[32];
    if (!c->n_der || !c->der[0] ||
        gnutls_hash_fast(GNUTLS_DIG_SHA256, c->der[0], c->der_len[0], fp) < 0)
        return;
    for (size_t i = 0; i < c->snap->n_exact; i++)
        if (memcmp(c->snap->exact[i], fp, 32) == 0)
            add_candidate(c, c->snap->exact_partner[i]);
}

/* The SHA-256 of a trust-list anchor. The trust list hands back the very
 * certificates load_partners gave it, each recorded with its fingerprint: no
 * re-encoding and hashing per handshake. */
static const unsigned char *anchor_sha256(const struct snap *s, gnutls_x509_crt_t anchor)
{
    for (size_t k = 0; k < s->n_ca_fps; k++)
        if (s->ca_fps[k].crt == anchor)
            return s->ca_fps[k].sha256;
    return NULL;
}

/* The partners whose registered CA anchors the verified chain: the first
 * certificate of the chain that is itself registered, or whose issuer is. */
static void identify_by_ca(struct mft_tlssrv_conn *c, gnutls_x509_crt_t *chain, unsigned n)
{
    for (unsigned i = 0; i < n && !c->n_candidates; i++) {
        gnutls_x509_crt_t anchor = NULL;
        const unsigned char *fp = NULL;
        if (gnutls_x509_trust_list_get_issuer(c->snap->cas, chain[i], &anchor, 0) < 0 ||
            !(fp = anchor_sha256(c->snap, anchor)))
            continue;
        for (size_t k = 0; k < c->snap->n_ca_fps; k++)
            if (memcmp(c->snap->ca_fps[k].sha256, fp, 32) == 0)
                add_candidate(c, c->snap->ca_fps[k].partner);
    }
}

static int policy_permits(const struct mft_tls_policy *pol, unsigned version, unsigned suite)
{
    return version >= pol->min_version && version <= pol->max_version &&
           mft_tls_policy_allows_suite(pol, suite);
}

/* The refusal of a handshake partner_id's policy does not permit, into err. */
static int policy_refusal(const struct mft_tls_policy *pol, const char *partner_id,
                          unsigned version, const struct mft_tls_facts *f, struct mft_err *err)
{
    char range[32];
    mft_tls_policy_versions(pol, range, sizeof(range));
    if (version < pol->min_version || version > pol->max_version) {
        mft_err_set(err, MFT_E_TLS_NO_COMMON_PROTOCOL,
                    "partner %s's TLS policy accepts %s; the client negotiated %s (offered %s)",
                    partner_id, range, f->version, f->versions_offered);
    } else {
        mft_err_set(err, MFT_E_TLS_NO_SHARED_CIPHER,
                    "partner %s's TLS policy does not allow the cipher suite %s", partner_id,
                    f->cipher);
        for (size_t k = 0; k < pol->n_ciphers && k < 4; k++)
            mft_err_detail(err, "policy allows %s%s", pol->ciphers[k],
                           k == 3 && pol->n_ciphers > 4 ? " ..." : "");
    }
    snprintf(err->remedy, sizeof(err->remedy),
             "the partner must connect with TLS %s and a suite its policy lists, or change the "
             "policy (tls_policy in the apply file)",
             range);
    return -1;
}

/* At the handshake: refused when no partner the certificate identified
 * permits what was negotiated. The AS2 stage then holds the partner AS2-From
 * names to its own policy (mft_tlssrv_conn_policy). */
static int policy_allows(struct mft_tlssrv_conn *c)
{
    if (!c->n_candidates || c->candidates_overflow)
        return 1;
    for (size_t i = 0; i < c->n_candidates; i++)
        if (policy_permits(&c->snap->partners[c->candidates[i]].policy, c->version, c->suite))
            return 1;
    const struct snap_partner *p = &c->snap->partners[c->candidates[0]];
    policy_refusal(&p->policy, p->id, c->version, &c->f, &c->fail);
    return 0;
}

int mft_tlssrv_conn_policy(const struct mft_tlssrv_conn *c, const struct mft_tls_policy *pol,
                           const char *partner_id, struct mft_err *err)
{
    if (!c || policy_permits(pol, c->version, c->suite))
        return 0;
    return policy_refusal(pol, partner_id, c->version, &c->f, err);
}

/* Returns 1 when the certificate's issuer name equals its subject name. */
static int self_issued(gnutls_x509_crt_t crt)
{
    gnutls_datum_t s = {NULL, 0}, i = {NULL, 0};
    int same = gnutls_x509_crt_get_raw_dn(crt, &s) == 0 &&
               gnutls_x509_crt_get_raw_issuer_dn(crt, &i) == 0 && s.size == i.size &&
               memcmp(s.data, i.data, s.size) == 0;
    gnutls_free(s.data);
    gnutls_free(i.data);
    return same;
}

/* Returns 1 when the certificate's issuer has the organization (O) of one of
 * the registered CAs. */
static int issuer_org_registered(const struct snap *s, gnutls_x509_crt_t crt)
{
    char org[128];
    size_t len = sizeof(org);
    if (gnutls_x509_crt_get_issuer_dn_by_oid(crt, GNUTLS_OID_X520_ORGANIZATION_NAME, 0, 0, org,
                                             &len) < 0 ||
        !org[0])
        return 0;
    for (size_t i = 0; i < s->n_ca_fps; i++)
        if (strcmp(s->ca_fps[i].org, org) == 0)
            return 1;
    return 0;
}

/*
 * The kind of a chain GnuTLS could not verify. CHAIN_INCOMPLETE when the
 * issuer was not found, the client sent its leaf alone, the leaf is not
 * self-issued, its issuer is the subject of no registered CA but has the
 * organization (O) of one: most likely the intermediate between them is
 * missing. An issuer of another organization is an unknown CA (UNTRUSTED).
 * Without the missing certificate the two cannot be told apart for sure; the
 * message names the issuer either way.
 */
static void classify_status(struct mft_tlssrv_conn *c, gnutls_x509_crt_t *chain, unsigned n,
                            unsigned status)
{
    gnutls_x509_crt_t top = chain[n - 1];
    if (status & GNUTLS_CERT_EXPIRED)
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_EXPIRED,
                    "a certificate in the client's TLS chain has expired");
    else if (status & GNUTLS_CERT_NOT_ACTIVATED)
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_NOT_YET_VALID,
                    "a certificate in the client's TLS chain is not yet valid");
    else if (status & GNUTLS_CERT_PURPOSE_MISMATCH)
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_NO_CLIENT_AUTH, NULL);
    else if (status & GNUTLS_CERT_INSECURE_ALGORITHM) {
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_UNTRUSTED,
                    "a certificate in the client's TLS chain is signed with an algorithm too weak "
                    "to trust (such as SHA-1 or MD5)");
        snprintf(c->fail.remedy, sizeof(c->fail.remedy),
                 "the partner must have the certificate reissued with SHA-256 or stronger");
        c->fail_alert = GNUTLS_A_BAD_CERTIFICATE;
    } else if ((status & GNUTLS_CERT_SIGNER_NOT_FOUND) && n == 1 && !self_issued(top) &&
               issuer_org_registered(c->snap, top)) {
        gnutls_x509_crt_t issuer = NULL;
        char dn[512] = "";
        size_t len = sizeof(dn);
        if (gnutls_x509_crt_get_issuer_dn(top, dn, &len) < 0)
            dn[0] = '\0';
        if (gnutls_x509_trust_list_get_issuer(c->snap->cas, top, &issuer, 0) == 0) {
            mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_UNTRUSTED,
                        "the client's TLS certificate names the issuer %s, a registered CA, "
                        "but its signature does not verify with that CA's key",
                        dn);
        } else {
            mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CHAIN_INCOMPLETE,
                        "the client sent its TLS certificate alone; its issuer %s was not sent "
                        "and is not registered",
                        dn);
        }
    } else if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
        char dn[512] = "";
        size_t len = sizeof(dn);
        if (gnutls_x509_crt_get_issuer_dn(top, dn, &len) < 0)
            dn[0] = '\0';
        if (self_issued(top))
            mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_UNTRUSTED,
                        "the client's TLS certificate chain ends in a self-signed certificate "
                        "that is not registered");
        else
            mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_UNTRUSTED,
                        "the client's TLS certificate chain leads to %s, which is neither "
                        "registered nor sent",
                        dn);
    } else {
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_UNTRUSTED, NULL);
    }
}

/* The leaf's own faults: outside its validity, or not for clientAuth.
 * Returns 1 with c->fail set, or 0. */
static int leaf_refusal(struct mft_tlssrv_conn *c, gnutls_x509_crt_t leaf, time_t now)
{
    if (gnutls_x509_crt_get_expiration_time(leaf) < now)
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_EXPIRED, NULL);
    else if (gnutls_x509_crt_get_activation_time(leaf) > now)
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_NOT_YET_VALID, NULL);
    else if (!allows_purpose(leaf, OID_CLIENT_AUTH))
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_NO_CLIENT_AUTH, NULL);
    return c->fail.kind != MFT_E_OK;
}

/* The key of a chain as sent: SHA-256 over each certificate's length and DER. */
static int chain_key(const gnutls_datum_t *certs, unsigned n, unsigned char key[32])
{
    gnutls_hash_hd_t h;
    if (gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
        return -1;
    for (unsigned i = 0; i < n && i < CHAIN_MAX; i++) {
        unsigned char len[4] = {(unsigned char)(certs[i].size >> 24),
                                (unsigned char)(certs[i].size >> 16),
                                (unsigned char)(certs[i].size >> 8), (unsigned char)certs[i].size};
        gnutls_hash(h, len, sizeof(len));
        gnutls_hash(h, certs[i].data, certs[i].size);
    }
    gnutls_hash_deinit(h, key);
    return 0;
}

/* 1 with c's candidates set when the chain verified against this snapshot
 * earlier and the verdict still holds at now, else 0. */
static int verified_get(struct mft_tlssrv_conn *c, const unsigned char key[32], time_t now)
{
    struct snap *s = c->snap;
    int hit = 0;
    pthread_mutex_lock(&s->vlock);
    for (unsigned i = 0; i < s->n_verified && !hit; i++) {
        const struct verified *v = &s->verified[i];
        if (memcmp(v->key, key, 32) != 0 || now < v->from || now > v->until)
            continue;
        for (unsigned k = 0; k < v->n_candidates; k++)
            add_candidate(c, v->candidates[k]);
        c->candidates_overflow |= v->overflow;
        hit = 1;
    }
    pthread_mutex_unlock(&s->vlock);
    c->from_memory = hit;
    return hit;
}

/* Notes that the chain verified at now with c's candidates, to be
 * remembered when the handshake finishes (verified_commit). Not when no
 * trust-list certificate issued any of the chain's: nothing bounds the
 * verdict by its anchor's validity then. */
static void verified_note(struct mft_tlssrv_conn *c, const unsigned char key[32],
                          gnutls_x509_crt_t *chain, unsigned n, time_t now)
{
    struct verified v = {.from = now, .until = now + VERIFIED_SECONDS};
    unsigned anchors = 0;
    memcpy(v.key, key, 32);
    for (unsigned i = 0; i < n; i++) {
        gnutls_x509_crt_t issuer = NULL; /* the trust list's own copy: not freed here */
        time_t end = gnutls_x509_crt_get_expiration_time(chain[i]);
        if (end == (time_t)-1)
            return;
        if (end < v.until)
            v.until = end;
        if (gnutls_x509_trust_list_get_issuer(c->snap->cas, chain[i], &issuer, 0) < 0)
            continue;
        end = gnutls_x509_crt_get_expiration_time(issuer);
        if (end == (time_t)-1)
            return;
        if (end < v.until)
            v.until = end;
        anchors++;
    }
    if (!anchors)
        return;
    for (size_t i = 0; i < c->n_candidates; i++)
        v.candidates[v.n_candidates++] = c->candidates[i];
    v.overflow = c->candidates_overflow;
    c->pending = v;
    c->pending_set = 1;
}

/* The handshake finished (the client proved its key): remembers the chain
 * noted by verify. */
static void verified_commit(struct mft_tlssrv_conn *c)
{
    unsigned max = atomic_load(&c->srv->verified_max);
    if (!c->pending_set || max == 0)
        return;
    c->pending_set = 0;
    struct snap *s = c->snap;
    const struct verified *v = &c->pending;
    pthread_mutex_lock(&s->vlock);
    unsigned slot = 0;
    while (slot < s->n_verified && memcmp(s->verified[slot].key, v->key, 32) != 0)
        slot++;
    if (slot == s->n_verified) { /* not there: a free slot, an expired one, the oldest */
        if (s->n_verified < max) {
            s->n_verified++;
        } else {
            for (slot = 0; slot < s->n_verified && s->verified[slot].until >= v->from; slot++)
                ;
            if (slot == s->n_verified) {
                slot = s->next_verified % max;
                s->next_verified = (slot + 1) % max;
            }
        }
    }
    s->verified[slot] = *v;
    pthread_mutex_unlock(&s->vlock);
}

int mft_tlssrv_conn_verified_from_memory(const struct mft_tlssrv_conn *c)
{
    return c && c->established && c->from_memory;
}

int mft_tlssrv_set_verified_chains(struct mft_tlssrv *srv, long n, struct mft_err *err)
{
    if (n < 0 || n > VERIFIED_MAX)
        return mft_err_set(err, MFT_E_CONFIG,
                           "MFT_INGRESS_TLS_VERIFIED_CHAINS must be 0..64 (0: every handshake "
                           "checks the client's chain)");
    atomic_store(&srv->verified_max, (unsigned)n);
    return 0;
}

static int verify(gnutls_session_t session)
{
    struct mft_tlssrv_conn *c = gnutls_db_get_ptr(session);
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(session, &n);
    gnutls_x509_crt_t chain[CHAIN_MAX];
    unsigned n_chain = 0;
    int rc = -1;
    if (!c)
        return -1;
    c->verify_ran = 1;
    note_negotiated(c, session);
    if (!certs || n == 0) {
        if (c->snap->any_optional)
            return 0; /* the AS2 stage checks the partner's policy */
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_MISSING, NULL);
        return verify_refuse(c, session);
    }
    /* keep the peer's certificates for facts and partner checks; the leaf
     * was imported by the Certificate hook, from the same message */
    for (unsigned i = 0; i < n && i < CHAIN_MAX; i++) {
        if (i > 0 || !c->der[0]) /* the Certificate hook kept the leaf */
            keep_der(c, i, certs[i].data, certs[i].size);
        if (i == 0 && c->leaf) {
            chain[n_chain++] = c->leaf;
            continue;
        }
        if (gnutls_x509_crt_init(&chain[n_chain]) < 0)
            break;
        if (gnutls_x509_crt_import(chain[n_chain], &certs[i], GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crt_deinit(chain[n_chain]);
            break;
        }
        n_chain++;
    }
    if (n_chain == 0) {
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_UNTRUSTED,
                    "the client's TLS certificate cannot be parsed");
        goto out;
    }
    time_t now = time(NULL);
    identify_exact(c);
    if (c->n_candidates) { /* registered itself: its own dates and purpose */
        rc = leaf_refusal(c, chain[0], now) ? -1 : 0;
        goto out;
    }
    unsigned char key[32]; /* with the memory off: no key, no lookup, nothing noted */
    int keyed = atomic_load(&c->srv->verified_max) > 0 && chain_key(certs, n, key) == 0;
    if (keyed && verified_get(c, key, now)) {
        rc = 0;
        goto out;
    }
    unsigned status = 0;
    int vr = path_status(c->snap->cas, chain, n_chain, now, OID_CLIENT_AUTH, &status);
    if (vr < 0) {
        mft_err_set(&c->fail, MFT_E_TLS_CLIENT_CERT_UNTRUSTED, NULL);
        mft_err_detail(&c->fail, "gnutls: %s", gnutls_strerror(vr));
        goto out;
    }
    if (status == 0) { /* the path check covered the leaf's dates and purpose */
        identify_by_ca(c, chain, n_chain);
        if (keyed)
            verified_note(c, key, chain, n_chain, now);
        rc = 0;
        goto out;
    }
    if (leaf_refusal(c, chain[0], now)) /* the leaf's own fault named first */
        goto out;
    classify_status(c, chain, n_chain, status);
    describe_verify_status(c, status);
out:
    for (unsigned i = 0; i < n_chain; i++)
        if (chain[i] != c->leaf)
            gnutls_x509_crt_deinit(chain[i]);
    if (rc == 0 && !policy_allows(c))
        rc = -1;
    if (rc == 0)
        return 0;
    return verify_refuse(c, session);
}

static int cert_callback(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                         const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length,
                         gnutls_pcert_st **pcert, unsigned int *pcert_length,
                         gnutls_privkey_t *pkey)
{
    struct mft_tlssrv_conn *c = gnutls_db_get_ptr(session);
    if (!c || !c->snap || c->snap->n_creds == 0)
        return -1;
    char name[256];
    size_t len = sizeof(name);
    unsigned type;
    if (gnutls_server_name_get(session, name, &len, &type, 0) == 0 && type == GNUTLS_NAME_DNS)
        snprintf(c->f.sni, sizeof(c->f.sni), "%s", name);
    const struct station_cred *cred = pick_cred(c->snap, c->f.sni);
    c->cred = cred;
    *pcert = cred->pcerts;
    *pcert_length = cred->n_pcerts;
    *pkey = cred->key;
    return 0;
}

gnutls_certificate_retrieve_function2 *mft_tlssrv_cert_callback(void)
{
    return cert_callback;
}

struct mft_tlssrv_conn *mft_tlssrv_conn_begin(struct mft_tlssrv *srv, gnutls_session_t session,
                                              const char *peer_address)
{
    struct mft_tlssrv_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->srv = srv;
    c->snap = snap_get(srv);
    c->start_ms = mft_now_ms();
    snprintf(c->f.direction, sizeof(c->f.direction), "%s", "inbound");
    snprintf(c->f.peer_address, sizeof(c->f.peer_address), "%s", peer_address ? peer_address : "");
    versions_range(c->f.versions_accepted, sizeof(c->f.versions_accepted), srv->min_version,
                   srv->max_version);
    gnutls_db_set_ptr(session, c);
    gnutls_certificate_server_set_request(
        session, c->snap && c->snap->any_optional ? GNUTLS_CERT_REQUEST : GNUTLS_CERT_REQUIRE);
    gnutls_session_set_verify_function(session, verify);
    gnutls_handshake_set_hook_function(session, GNUTLS_HANDSHAKE_ANY, GNUTLS_HOOK_BOTH, hook);
    gnutls_alert_set_read_function(session, alert_read);
    /* MHD gives GnuTLS the socket (gnutls_transport_set_int); reads now pass
     * through pull(), writes stay GnuTLS's own */
    c->fd = gnutls_transport_get_int(session);
    if (c->fd >= 0) {
        gnutls_transport_set_ptr2(session, c, (gnutls_transport_ptr_t)(intptr_t)c->fd);
        gnutls_transport_set_pull_function(session, pull);
        gnutls_transport_set_pull_timeout_function(session, pull_timeout);
    }
    return c;
}

int mft_tlssrv_conn_established(const struct mft_tlssrv_conn *c)
{
    /* only once the client's Finished arrived: the verify function runs
     * before GnuTLS checks the CertificateVerify. (GnuTLS checks the
     * Finished itself just after our hook; one handshake per connection:
     * libmicrohttpd 0.9.75 closes on a renegotiation request.) */
    return c && c->fail.kind == MFT_E_OK && c->established;
}

/* ---- failure ------------------------------------------------------------------ */

/* The alerts a client sends when it refuses our certificate. */
static int cert_alert(int code)
{
    return code == GNUTLS_A_BAD_CERTIFICATE || code == GNUTLS_A_UNSUPPORTED_CERTIFICATE ||
           code == GNUTLS_A_CERTIFICATE_REVOKED || code == GNUTLS_A_CERTIFICATE_EXPIRED ||
           code == GNUTLS_A_CERTIFICATE_UNKNOWN || code == GNUTLS_A_UNKNOWN_CA;
}

/*
 * The self-check of the certificate we served: validity, the chain we send
 * (each certificate issued by the next; where it ends), the names against the
 * SNI the client asked for. Appends the findings to err->detail and returns
 * how many problems it found.
 */
static int self_check(const struct mft_tlssrv_conn *c, struct mft_err *err)
{
    const struct station_cred *cred = c->cred;
    int problems = 0;
    if (!cred)
        return 0;
    time_t nb = 0, na = 0, now = time(NULL);
    if (mft_x509_validity(cred->cert, &nb, &na) == 0 && (now < nb || now > na)) {
        mft_err_detail(err, "self-check: our certificate is %s",
                       now > na ? "expired" : "not yet valid");
        problems++;
    }
    X509 *cur = cred->cert;
    int n = cred->chain ? sk_X509_num(cred->chain) : 0;
    for (int i = 0; i < n; i++) {
        X509 *next = sk_X509_value(cred->chain, i);
        if (X509_check_issued(next, cur) != X509_V_OK) {
            mft_err_detail(err,
                           "self-check: certificate %d of the chain we send is not the "
                           "issuer of the one before it",
                           i + 1);
            problems++;
        }
        cur = next;
    }
    char issuer[512] = "";
    mft_x509_issuer(cur, issuer, sizeof(issuer));
    if (X509_check_issued(cur, cur) == X509_V_OK)
        mft_err_detail(err, "self-check: the chain we send ends in a self-signed certificate");
    else
        mft_err_detail(err,
                       "self-check: the chain we send (%d certificate%s) ends at issuer %s, which "
                       "the partner must trust",
                       n + 1, n ? "s" : "", issuer);
    if (c->f.sni[0] && X509_check_host(cred->cert, c->f.sni, 0, 0, NULL) != 1) {
        mft_err_detail(err,
                       "self-check: our certificate does not name %s, the host the client "
                       "asked for",
                       c->f.sni);
        problems++;
    } else if (!c->f.sni[0]) {
        mft_err_detail(err, "self-check: the client sent no server name (SNI)");
    }
    return problems;
}

/* The registered partner a certificate that failed verification most likely
 * belongs to: its exact registration, or a CA with the issuer's name. */
static void guess_partner(struct mft_tlssrv_conn *c)
{
    if (c->f.partner_id[0] || !c->n_der || !c->snap)
        return;
    if (!c->n_candidates)
        identify_exact(c);
    if (c->n_candidates) {
        snprintf(c->f.partner_id, sizeof(c->f.partner_id), "%s",
                 c->snap->partners[c->candidates[0]].id);
        snprintf(c->f.partner_basis, sizeof(c->f.partner_basis), "certificate");
    }
}

/* A few of the suites the client offered, by name, into buf. */
static void offered_suites(const struct mft_tlssrv_conn *c, char *buf, size_t len)
{
    size_t o = 0;
    buf[0] = '\0';
    for (unsigned i = 0; i < c->n_suites && i < 6 && o + 1 < len; i++) {
        const char *name = mft_tls_suite_name(c->suites[i]);
        int w = name ? snprintf(buf + o, len - o, "%s%s", o ? ", " : "", name)
                     : snprintf(buf + o, len - o, "%s0x%04x", o ? ", " : "", c->suites[i]);
        if (w > 0)
            o = (size_t)w < len - o ? o + (size_t)w : len - 1;
    }
    if (c->n_suites_total > 6 && o + 8 < len)
        snprintf(buf + o, len - o, ", ...");
}

/* The kind when none of our callbacks refused: what the client did. */
static void classify_peer(struct mft_tlssrv_conn *c, struct mft_err *err)
{
    const struct mft_tls_alert *a = mft_tls_facts_fatal(&c->f, 0);
    int tls13 = strcmp(c->f.version, "TLSv1.3") == 0 || c->offered_max == 0x0304;
    if (a && !c->cert_msg_seen && cert_alert(a->code)) {
        mft_err_set(err, MFT_E_TLS_OUR_CERT_REJECTED,
                    "the client rejected our TLS certificate (station %s) with the alert %s",
                    c->cred ? c->cred->id : "?", mft_tls_alert_name(a->code));
        self_check(c, err);
    } else if (a && a->code == GNUTLS_A_PROTOCOL_VERSION) {
        mft_err_set(err, MFT_E_TLS_NO_COMMON_PROTOCOL,
                    "the client refused the TLS version: it offered %s, this gateway accepts %s",
                    c->f.versions_offered, c->f.versions_accepted);
    } else if (a &&
               (a->code == GNUTLS_A_HANDSHAKE_FAILURE ||
                a->code == GNUTLS_A_INSUFFICIENT_SECURITY) &&
               !c->our_cert_sent) {
        mft_err_set(err, MFT_E_TLS_NO_SHARED_CIPHER,
                    "the client ended the TLS handshake with %s before our certificate",
                    mft_tls_alert_name(a->code));
    } else if (a) {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE,
                    "the client ended the TLS handshake with the alert %s",
                    mft_tls_alert_name(a->code));
    } else if (tls13 && c->our_cert_sent && !c->cert_msg_seen &&
               (c->raw.short_app_data || c->raw.eof || c->raw.reset)) {
        /* TLS 1.3: an OpenSSL client encrypts its alert about our certificate
         * with keys GnuTLS no longer reads with; what remains is an
         * alert-sized record, or the close, before its Certificate */
        struct mft_err probe;
        mft_err_clear(&probe);
        int problems = self_check(c, &probe);
        mft_err_set(err, MFT_E_TLS_OUR_CERT_REJECTED,
                    "the client %s after our TLS certificate (station %s) and before its own: "
                    "most likely it rejected ours%s",
                    c->raw.short_app_data ? "sent an unreadable alert-sized record"
                                          : "closed the connection",
                    c->cred ? c->cred->id : "?",
                    problems ? " (the self-check found problems)" : "");
        mft_err_detail(err, "%s", probe.detail);
    } else if (c->cv_seen && !c->fin_seen && c->n_der && !c->raw.eof && !c->raw.reset) {
        /* inferred: GnuTLS refused what came after the CertificateVerify, the
         * client neither alerted nor left */
        mft_err_set(err, MFT_E_TLS_CLIENT_KEY_MISMATCH,
                    "the handshake ended at the client's CertificateVerify: most likely its "
                    "signature does not verify with the key of the certificate it sent (its TLS "
                    "private key is not its certificate's)");
    } else if (!c->cert_msg_seen) {
        struct mft_err probe;
        mft_err_clear(&probe);
        int problems = self_check(c, &probe);
        mft_err_set(err, problems ? MFT_E_TLS_OUR_CERT_REJECTED : MFT_E_TLS_HANDSHAKE,
                    "the client ended the TLS handshake before sending its certificate");
        mft_err_detail(err, "%s", probe.detail);
    } else {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE, NULL);
    }
}

int mft_tlssrv_conn_failure(struct mft_tlssrv_conn *c, struct mft_err *err)
{
    if (c->raw.bytes == 0 && !c->hello_seen)
        return 1; /* a probe: connected and left without a word */
    mft_rfc3339_ms(c->start_ms, c->f.time, sizeof(c->f.time));
    if (c->cred) {
        snprintf(c->f.station_id, sizeof(c->f.station_id), "%s", c->cred->id);
        mft_tls_cert_fill(&c->f.local_cert, c->cred->cert);
    }
    peer_parse(c);
    mft_tls_cert_fill(&c->f.peer_cert, c->peer);
    guess_partner(c);
    if (c->abort_where)
        snprintf(c->f.library_error, sizeof(c->f.library_error),
                 "gnutls %d %s, returned by %s (libmicrohttpd does not report "
                 "gnutls_handshake's result)",
                 c->abort_code, gnutls_strerror_name(c->abort_code), c->abort_where);
    else
        snprintf(c->f.library_error, sizeof(c->f.library_error),
                 "not reported: libmicrohttpd 0.9.75 logs a fixed string and drops "
                 "gnutls_handshake's return value%s",
                 c->raw.reset ? "; the client reset the connection"
                 : c->raw.eof ? "; the client closed the connection"
                              : "");

    if (c->raw.not_tls) {
        char shown[sizeof(c->raw.first) + 1];
        for (unsigned i = 0; i < c->raw.n_first; i++)
            shown[i] =
                c->raw.first[i] >= 0x20 && c->raw.first[i] < 0x7f ? (char)c->raw.first[i] : '.';
        shown[c->raw.n_first] = '\0';
        mft_err_set(err, MFT_E_TLS_NOT_TLS,
                    "the client does not speak TLS: its first bytes are \"%s\"", shown);
        mft_err_detail(err, "first byte 0x%02x where a TLS record starts with 0x16",
                       c->raw.first[0]);
        if (c->closed_write)
            mft_err_detail(err, "answered with HTTP 400 (plain HTTP on the TLS port)");
    } else if (c->fail.kind != MFT_E_OK) {
        *err = c->fail;
        if (err->kind == MFT_E_TLS_NO_SHARED_CIPHER && !c->verify_ran) {
            char names[400];
            offered_suites(c, names, sizeof(names));
            mft_err_detail(err, "client suites: %s", names);
        }
    } else if (!c->hello_seen) {
        mft_err_set(err, MFT_E_TLS_HANDSHAKE,
                    "the client sent %llu bytes but no complete TLS ClientHello", c->raw.bytes);
    } else {
        classify_peer(c, err);
    }
    if (c->hello_v2)
        mft_err_detail(err, "the client sent an SSLv2-format ClientHello (a very old client)");
    mft_tls_facts_detail(&c->f, err);
    return 0;
}

const struct mft_tls_facts *mft_tlssrv_conn_facts(const struct mft_tlssrv_conn *c)
{
    return &c->f;
}

int mft_tlssrv_conn_has_cert(const struct mft_tlssrv_conn *c)
{
    return c && c->n_der > 0;
}

X509 *mft_tlssrv_conn_peer(struct mft_tlssrv_conn *c)
{
    if (!c)
        return NULL;
    peer_parse(c);
    return c->peer;
}

STACK_OF(X509) * mft_tlssrv_conn_peer_chain(struct mft_tlssrv_conn *c)
{
    if (!c)
        return NULL;
    peer_parse(c);
    return c->peer_chain;
}

void mft_tlssrv_conn_end(struct mft_tlssrv_conn *c)
{
    if (!c)
        return;
    /* The session may already be gone (MHD closes it before this
     * notification): it is not touched here. */
    snap_unref(c->snap);
    X509_free(c->peer);
    sk_X509_pop_free(c->peer_chain, X509_free);
    for (unsigned i = 0; i < c->n_der; i++)
        free(c->der[i]);
    if (c->leaf)
        gnutls_x509_crt_deinit(c->leaf);
    free(c);
}

int mft_tlssrv_verify(const struct mft_x509_verify_args *a, struct mft_err *err)
{
    gnutls_x509_trust_list_t cas = NULL;
    gnutls_x509_crt_t chain[CHAIN_MAX];
    unsigned n_chain = 0;
    int n_inter = a->intermediates ? sk_X509_num(a->intermediates) : 0;
    int rc = -1;

    if (gnutls_x509_trust_list_init(&cas, 0) < 0) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    for (int i = 0; a->roots && i < sk_X509_num(a->roots); i++) {
        gnutls_x509_crt_t crt = to_gnutls(sk_X509_value(a->roots, i));
        if (!crt || gnutls_x509_trust_list_add_cas(cas, &crt, 1, 0) != 1) {
            gnutls_x509_crt_deinit(crt);
            mft_err_set(err, MFT_E_CONFIG, "a trusted certificate is unusable by GnuTLS");
            goto out;
        }
    }
    for (int i = -1; i < n_inter && n_chain < CHAIN_MAX; i++) {
        chain[n_chain] = to_gnutls(i < 0 ? a->leaf : sk_X509_value(a->intermediates, i));
        if (!chain[n_chain]) {
            mft_x509_refuse(err, a->purpose, MFT_X509_UNTRUSTED, i + 1, NULL);
            mft_err_detail(err, "GnuTLS cannot parse the certificate at depth %d", i + 1);
            goto out;
        }
        n_chain++;
    }
    rc = chain_check(cas, chain, n_chain, a->at, a->purpose, a->peer_name, 0, err);
out:
    for (unsigned i = 0; i < n_chain; i++)
        gnutls_x509_crt_deinit(chain[i]);
    if (cas)
        gnutls_x509_trust_list_deinit(cas, 1);
    return rc;
}

int mft_tlssrv_cert_is_partners(X509 *cert, STACK_OF(X509) * chain, const struct mft_partner *p)
{
    if (!cert || !p)
        return 0;
    for (int i = 0; p->tls_certs && i < sk_X509_num(p->tls_certs); i++)
        if (X509_cmp(cert, sk_X509_value(p->tls_certs, i)) == 0)
            return 1;
    if (!p->tls_cas || sk_X509_num(p->tls_cas) == 0)
        return 0;
    struct mft_x509_verify_args va = {p->tls_cas, chain, cert, time(NULL), MFT_X509_CLIENT, NULL};
    struct mft_err e;
    return mft_x509_verify(&va, &e) == 0;
}

void mft_tlssrv_fuzz_input(const unsigned char *data, size_t len)
{
    static struct mft_tlssrv srv; /* no suites enabled: the parsers only */
    struct mft_tlssrv_conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = &srv;
    c->fd = -1;
    /* the record tracker, fed in chunks whose sizes the input's first byte sets */
    size_t step = len ? (size_t)data[0] % 7 + 1 : 1;
    for (size_t i = 0; i < len; i += step)
        raw_track(c, data + i, len - i < step ? len - i : step);
    /* a ClientHello body after a record and a handshake header, as GnuTLS
     * hands it to the hook */
    if (len > 9)
        parse_client_hello(c, data + 9, len - 9);
    /* the same bytes as a Certificate message, both layouts */
    gnutls_datum_t msg = {(unsigned char *)data, (unsigned)len}, leaf;
    for (int tls13 = 0; tls13 <= 1; tls13++)
        if (cert_msg_leaf(&msg, tls13, &leaf) > 0 && leaf.size) {
            keep_der(c, 0, leaf.data, leaf.size);
            peer_parse(c);
        }
    mft_tlssrv_conn_end(c);
}
