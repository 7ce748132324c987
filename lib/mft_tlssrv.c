/*
 * mft_tlssrv — GnuTLS server-side mutual TLS behind libmicrohttpd.
 *
 * MHD owns the GnuTLS sessions; this module attaches a per-connection context
 * to each (through the session's db pointer, which MHD leaves unused since it
 * installs no session cache) from the connection-started notification, and
 * from then on GnuTLS calls back here: the ClientHello and Finished hooks, the
 * alert hook, the certificate callback (station certificate by SNI) and the
 * verify function (client certificate against the trust snapshot).
 *
 * Threading: callbacks run on the connection's thread; the current snapshot
 * pointer is swapped under a mutex and reference-counted, so an update never
 * frees what a handshake in flight uses. Never logs or keeps private key bytes
 * beyond GnuTLS's own key objects.
 */
#include "mft_tlssrv.h"
#include "mft_log.h"

#include <arpa/inet.h>
#include <gnutls/x509.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define OID_CLIENT_AUTH "1.3.6.1.5.5.7.3.2"
#define OID_ANY_EKU "2.5.29.37.0"
#define CHAIN_MAX 16 /* certificates of a peer's chain that are looked at */

struct station_cred {
    gnutls_pcert_st *pcerts;
    unsigned n_pcerts;
    gnutls_privkey_t key;
    gnutls_x509_crt_t leaf; /* for SNI matching */
};

struct snap {
    atomic_int refs;
    gnutls_x509_trust_list_t cas;
    unsigned char (*exact)[32];
    size_t n_exact;
    struct station_cred *creds;
    size_t n_creds;
};

struct mft_tlssrv {
    pthread_mutex_t lock;
    struct snap *cur;
};

struct mft_tlssrv_conn {
    struct snap *snap;
    char peer_address[64];
    char sni[256];
    char version_offered[16];
    char protocol[16];
    char cipher[64];
    char alert_received[64];
    char alert_sent[64];
    int hello_seen, cert_msg_seen, verify_ran, established;
    struct mft_err verify_err; /* kind OK when verification passed */
    X509 *peer;
    STACK_OF(X509) * peer_chain;
};

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
    }
    free(s->creds);
    free(s->exact);
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

static int load_station_cred(const struct mft_station *st, struct station_cred *cred,
                             struct mft_err *err)
{
    gnutls_datum_t cert = {(unsigned char *)st->tls_cert_pem, (unsigned)strlen(st->tls_cert_pem)};
    gnutls_datum_t key = {(unsigned char *)st->tls_key_pem, (unsigned)strlen(st->tls_key_pem)};
    unsigned n = 16;
    int rc;
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
    return 0;
}

int mft_tlssrv_update(struct mft_tlssrv *srv, const struct mft_registry *reg, struct mft_err *err)
{
    int rc = -1;
    struct snap *s = calloc(1, sizeof(*s));
    if (!s)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    atomic_init(&s->refs, 1);
    if (gnutls_x509_trust_list_init(&s->cas, 0) < 0) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    size_t n_exact = 0;
    for (size_t i = 0; i < reg->n_partners; i++)
        n_exact += reg->partners[i].tls_certs ? sk_X509_num(reg->partners[i].tls_certs) : 0;
    s->exact = calloc(n_exact + 1, sizeof(*s->exact));
    s->creds = calloc(reg->n_stations + 1, sizeof(*s->creds));
    if (!s->exact || !s->creds) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    for (size_t i = 0; i < reg->n_partners; i++) {
        const struct mft_partner *p = &reg->partners[i];
        for (int j = 0; p->tls_certs && j < sk_X509_num(p->tls_certs); j++) {
            unsigned int len = 32;
            X509_digest(sk_X509_value(p->tls_certs, j), EVP_sha256(), s->exact[s->n_exact], &len);
            s->n_exact++;
        }
        for (int j = 0; p->tls_cas && j < sk_X509_num(p->tls_cas); j++) {
            gnutls_x509_crt_t crt = to_gnutls(sk_X509_value(p->tls_cas, j));
            if (!crt || gnutls_x509_trust_list_add_cas(s->cas, &crt, 1, 0) != 1) {
                gnutls_x509_crt_deinit(crt);
                mft_err_set(err, MFT_E_CONFIG, "partner %s: TLS CA unusable", p->id);
                goto out;
            }
        }
    }
    for (size_t i = 0; i < reg->n_stations; i++) {
        const struct mft_station *st = &reg->stations[i];
        if (!st->tls_cert_pem || !st->tls_key_pem || !st->tls.cert)
            continue;
        if (load_station_cred(st, &s->creds[s->n_creds], err) < 0) {
            s->n_creds++; /* free what was loaded */
            goto out;
        }
        s->n_creds++;
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

static const char *version_name(unsigned v)
{
    switch (v) {
    case 0x0300:
        return "SSL3.0";
    case 0x0301:
        return "TLS1.0";
    case 0x0302:
        return "TLS1.1";
    case 0x0303:
        return "TLS1.2";
    case 0x0304:
        return "TLS1.3";
    default:
        return "unknown";
    }
}

/* Reads the highest version a ClientHello offers (supported_versions wins). */
static unsigned client_hello_max_version(const unsigned char *p, size_t len)
{
    if (len < 2 + 32 + 1)
        return 0;
    unsigned best = (unsigned)p[0] << 8 | p[1];
    size_t off = 34;
    off += 1 + p[off]; /* session id */
    if (off + 2 > len)
        return best;
    off += 2 + ((size_t)p[off] << 8 | p[off + 1]); /* cipher suites */
    if (off + 1 > len)
        return best;
    off += 1 + p[off]; /* compression methods */
    if (off + 2 > len)
        return best;
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
            unsigned top = 0;
            for (size_t i = 1; i + 1 < elen && i + 1 <= p[off]; i += 2) {
                unsigned v = (unsigned)p[off + i] << 8 | p[off + i + 1];
                if ((v & 0x0f0f) != 0x0a0a && v > top) /* skip GREASE */
                    top = v;
            }
            if (top)
                best = top;
        }
        off += elen;
    }
    return best;
}

static int hook(gnutls_session_t session, unsigned int htype, unsigned when, unsigned int incoming,
                const gnutls_datum_t *msg)
{
    struct mft_tlssrv_conn *c = gnutls_db_get_ptr(session);
    if (!c || !incoming)
        return 0;
    if (htype == GNUTLS_HANDSHAKE_CLIENT_HELLO && when == GNUTLS_HOOK_PRE) {
        c->hello_seen = 1;
        snprintf(c->version_offered, sizeof(c->version_offered), "%s",
                 version_name(client_hello_max_version(msg->data, msg->size)));
    } else if (htype == GNUTLS_HANDSHAKE_CERTIFICATE_PKT) {
        c->cert_msg_seen = 1;
    } else if (htype == GNUTLS_HANDSHAKE_FINISHED && when == GNUTLS_HOOK_POST) {
        /* the facts are read now, while the session is certainly alive */
        const char *v = gnutls_protocol_get_name(gnutls_protocol_get_version(session));
        const char *ci = gnutls_cipher_get_name(gnutls_cipher_get(session));
        snprintf(c->protocol, sizeof(c->protocol), "%s", v ? v : "");
        snprintf(c->cipher, sizeof(c->cipher), "%s", ci ? ci : "");
        c->established = 1;
    }
    return 0;
}

static int alert_read(gnutls_session_t session, gnutls_record_encryption_level_t level,
                      gnutls_alert_level_t alert_level, gnutls_alert_description_t desc)
{
    struct mft_tlssrv_conn *c = gnutls_db_get_ptr(session);
    const char *name = gnutls_alert_get_strname(desc);
    if (c)
        snprintf(c->alert_received, sizeof(c->alert_received), "%s", name ? name : "unknown");
    return 0;
}

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

static void describe_verify_status(struct mft_err *err, unsigned status)
{
    gnutls_datum_t out = {NULL, 0};
    if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0) == 0) {
        mft_err_detail(err, "verify: %s", (char *)out.data);
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
    gnutls_typed_vdata_st vdata = {GNUTLS_DT_KEY_PURPOSE_OID, (unsigned char *)oid, 0};
    unsigned status = 0;
    int vr;

    if (gnutls_x509_crt_get_expiration_time(chain[0]) < at)
        return mft_x509_refuse(err, purpose, MFT_X509_EXPIRED, 0, NULL);
    if (gnutls_x509_crt_get_activation_time(chain[0]) > at)
        return mft_x509_refuse(err, purpose, MFT_X509_NOT_YET_VALID, 0, NULL);
    if (!allows_purpose(chain[0], oid))
        return mft_x509_refuse(err, purpose, MFT_X509_WRONG_PURPOSE, 0, NULL);
    if (!pinned) {
        pthread_once(&clock_once, clock_install);
        verify_at = &at;
        vr = gnutls_x509_trust_list_verify_crt2(cas, chain, n_chain, &vdata, 1, VERIFY_FLAGS,
                                                &status, NULL);
        verify_at = NULL;
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
            describe_verify_status(err, status);
            return -1;
        }
    }
    if (peer_name && !name_matches(chain[0], peer_name))
        return mft_x509_refuse(err, purpose, MFT_X509_NAME_MISMATCH, 0, peer_name);
    return 0;
}

/* The TLS alert that tells the client why its certificate was refused, with
 * its RFC 8446 name. */
static const struct {
    enum mft_err_kind kind;
    gnutls_alert_description_t alert;
    const char *name;
} refusal_alerts[] = {
    {MFT_E_TLS_CLIENT_CERT_MISSING, GNUTLS_A_CERTIFICATE_REQUIRED, "certificate_required"},
    {MFT_E_TLS_CLIENT_CERT_EXPIRED, GNUTLS_A_CERTIFICATE_EXPIRED, "certificate_expired"},
    {MFT_E_TLS_CLIENT_CERT_NO_CLIENT_AUTH, GNUTLS_A_UNSUPPORTED_CERTIFICATE,
     "unsupported_certificate"},
    {MFT_E_TLS_CLIENT_CERT_UNTRUSTED, GNUTLS_A_UNKNOWN_CA, "unknown_ca"},
    {MFT_E_OK, GNUTLS_A_BAD_CERTIFICATE, "bad_certificate"}, /* anything else */
};

/*
 * Sends the alert ourselves: libmicrohttpd closes a failed handshake without
 * one. (The client may still see only a reset: MHD closes the socket with the
 * client's unread bytes in it.)
 */
static void send_alert(struct mft_tlssrv_conn *c, gnutls_session_t session)
{
    size_t i = 0;
    while (refusal_alerts[i].kind != MFT_E_OK && refusal_alerts[i].kind != c->verify_err.kind)
        i++;
    snprintf(c->alert_sent, sizeof(c->alert_sent), "%s", refusal_alerts[i].name);
    int r;
    do
        r = gnutls_alert_send(session, GNUTLS_AL_FATAL, refusal_alerts[i].alert);
    while (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED);
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
    if (!certs || n == 0) {
        mft_err_set(&c->verify_err, MFT_E_TLS_CLIENT_CERT_MISSING, NULL);
        send_alert(c, session);
        return GNUTLS_E_CERTIFICATE_ERROR;
    }
    /* keep the peer's certificates (OpenSSL form) for facts and partner checks */
    c->peer_chain = sk_X509_new_null();
    for (unsigned i = 0; i < n && i < CHAIN_MAX; i++) {
        const unsigned char *p = certs[i].data;
        X509 *x = d2i_X509(NULL, &p, certs[i].size);
        if (!x)
            break;
        if (i == 0)
            c->peer = x;
        else
            sk_X509_push(c->peer_chain, x);
        if (gnutls_x509_crt_init(&chain[n_chain]) < 0)
            break;
        if (gnutls_x509_crt_import(chain[n_chain], &certs[i], GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crt_deinit(chain[n_chain]);
            break;
        }
        n_chain++;
    }
    if (!c->peer || n_chain == 0) {
        mft_err_set(&c->verify_err, MFT_E_TLS_CLIENT_CERT_UNTRUSTED,
                    "the client's TLS certificate cannot be parsed");
        goto out;
    }
    unsigned char fp[32];
    unsigned int fplen = sizeof(fp);
    int pinned = 0;
    X509_digest(c->peer, EVP_sha256(), fp, &fplen);
    for (size_t i = 0; i < c->snap->n_exact && !pinned; i++)
        pinned = memcmp(c->snap->exact[i], fp, 32) == 0;
    if (chain_check(c->snap->cas, chain, n_chain, time(NULL), MFT_X509_CLIENT, NULL, pinned,
                    &c->verify_err) == 0)
        rc = 0;
out:
    if (rc < 0 && c->peer) {
        struct mft_x509_facts f;
        mft_x509_facts(c->peer, &f);
        mft_err_detail(&c->verify_err,
                       "client certificate subject=%s issuer=%s serial=%s "
                       "sha256=%s valid %s..%s",
                       f.subject, f.issuer, f.serial, f.sha256, f.not_before, f.not_after);
    }
    for (unsigned i = 0; i < n_chain; i++)
        gnutls_x509_crt_deinit(chain[i]);
    if (rc == 0)
        return 0;
    send_alert(c, session);
    return GNUTLS_E_CERTIFICATE_ERROR;
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
    struct station_cred *cred = &c->snap->creds[0];
    if (gnutls_server_name_get(session, name, &len, &type, 0) == 0 && type == GNUTLS_NAME_DNS) {
        snprintf(c->sni, sizeof(c->sni), "%s", name);
        for (size_t i = 0; i < c->snap->n_creds; i++) {
            if (c->snap->creds[i].leaf &&
                gnutls_x509_crt_check_hostname(c->snap->creds[i].leaf, name)) {
                cred = &c->snap->creds[i];
                break;
            }
        }
    }
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
    c->snap = snap_get(srv);
    snprintf(c->peer_address, sizeof(c->peer_address), "%s", peer_address ? peer_address : "");
    gnutls_db_set_ptr(session, c);
    gnutls_certificate_server_set_request(session, GNUTLS_CERT_REQUIRE);
    gnutls_session_set_verify_function(session, verify);
    gnutls_handshake_set_hook_function(session, GNUTLS_HANDSHAKE_ANY, GNUTLS_HOOK_BOTH, hook);
    gnutls_alert_set_read_function(session, alert_read);
    return c;
}

int mft_tlssrv_conn_established(const struct mft_tlssrv_conn *c)
{
    return c && (c->established || (c->verify_ran && c->verify_err.kind == MFT_E_OK && c->peer));
}

int mft_tlssrv_conn_failure(const struct mft_tlssrv_conn *c, struct mft_err *err)
{
    if (!c->hello_seen)
        return 1;
    if (c->verify_ran && c->verify_err.kind != MFT_E_OK) {
        *err = c->verify_err;
        return 0;
    }
    if (strcmp(c->version_offered, "TLS1.2") != 0 && strcmp(c->version_offered, "TLS1.3") != 0) {
        mft_err_set(err, MFT_E_TLS_NO_COMMON_PROTOCOL,
                    "the client offered at most %s; this gateway accepts TLS 1.2 and TLS 1.3",
                    c->version_offered);
        mft_err_detail(err, "client max version %s; server range TLS1.2..TLS1.3",
                       c->version_offered);
        return 0;
    }
    if (c->cert_msg_seen && !c->verify_ran) {
        mft_err_set(err, MFT_E_TLS_CLIENT_CERT_MISSING, NULL);
        mft_err_detail(err, "the client's Certificate message was empty");
        return 0;
    }
    if (!c->cert_msg_seen && !c->alert_received[0]) {
        /* The handshake stopped before the client sent its Certificate: with a
         * required certificate and no alert this is a client that had none or
         * gave up on our server certificate. */
        mft_err_set(err, MFT_E_TLS_HANDSHAKE,
                    "the client ended the TLS handshake before sending its certificate");
        mft_err_detail(err, "client offered %s", c->version_offered);
        return 0;
    }
    mft_err_set(err, MFT_E_TLS_HANDSHAKE, NULL);
    if (c->alert_received[0])
        mft_err_detail(err, "alert received from the client: %s", c->alert_received);
    return 0;
}

void mft_tlssrv_conn_facts(const struct mft_tlssrv_conn *c, struct mft_tlssrv_facts *out)
{
    out->peer_address = c->peer_address;
    out->sni = c->sni;
    out->version_offered = c->version_offered;
    out->protocol = c->protocol;
    out->cipher = c->cipher;
    out->alert_sent = c->alert_sent;
    out->alert_received = c->alert_received;
}

X509 *mft_tlssrv_conn_peer(const struct mft_tlssrv_conn *c)
{
    return c ? c->peer : NULL;
}

STACK_OF(X509) * mft_tlssrv_conn_peer_chain(const struct mft_tlssrv_conn *c)
{
    return c ? c->peer_chain : NULL;
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
