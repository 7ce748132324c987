/*
 * mft-tlsplain — the "plain libmicrohttpd + GnuTLS" baseline of `./mft bench
 * tls`: the smallest HTTPS server with client certificates that libmicrohttpd
 * offers, with nothing of mft's own TLS code. libmicrohttpd requests a client
 * certificate when given a trust list (MHD_OPTION_HTTPS_MEM_TRUST) but never
 * checks it, so the handler verifies it (chain to the CA, purpose clientAuth)
 * with gnutls_certificate_verify_peers() and answers 200, or 403 when the
 * client sent none or one the CA did not issue.
 *
 * Set up as mft-ingress is (ingress/main.c): a thread per connection with an
 * internal polling thread, suspend/resume allowed, the same GnuTLS priority
 * string (MFT_INGRESS_TLS_PRIORITIES when set, as ingress reads it, else
 * MFT_TLSSRV_DEFAULT_PRIORITIES), connection limit and timeout. Runs until
 * SIGTERM or SIGINT.
 */
#include "mft_tlssrv.h"

#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* Reads a whole PEM file into a NUL-terminated buffer (free it), or NULL. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *p = NULL;
    long n;
    if (!f)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (p = malloc((size_t)n + 1)) && fread(p, 1, (size_t)n, f) == (size_t)n) {
        p[n] = '\0';
    } else {
        free(p);
        p = NULL;
    }
    fclose(f);
    return p;
}

/* 1 when the connection's client certificate chains to the CA for clientAuth. */
static int peer_verified(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    gnutls_typed_vdata_st purpose = {GNUTLS_DT_KEY_PURPOSE_OID,
                                     (unsigned char *)GNUTLS_KP_TLS_WWW_CLIENT, 0};
    unsigned status = 1;
    if (!ci || !ci->tls_session)
        return 0;
    return gnutls_certificate_verify_peers(ci->tls_session, &purpose, 1, &status) == 0 &&
           status == 0;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *conn, const char *url,
                               const char *method, const char *version, const char *upload_data,
                               size_t *upload_data_size, void **con_cls)
{
    static const char ok[] = "ok\n", refused[] = "client certificate refused\n";
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)upload_data;
    (void)con_cls;
    *upload_data_size = 0;
    int good = peer_verified(conn);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(good ? sizeof(ok) - 1 : sizeof(refused) - 1,
                                        (void *)(good ? ok : refused), MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, good ? 200 : 403, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv)
{
    char *cert = NULL, *key = NULL, *ca = NULL;
    struct MHD_Daemon *d = NULL;
    char *end = NULL;
    long port = argc == 5 ? strtol(argv[1], &end, 10) : 0;
    int rc = 1;

    if (argc != 5 || !end || *end || port < 1 || port > 65535) {
        fprintf(stderr, "usage: mft-tlsplain PORT CERT.pem KEY.pem CLIENT-CA.pem\n"
                        "  HTTPS on 127.0.0.1:PORT; 200 for a client certificate issued by\n"
                        "  CLIENT-CA for clientAuth, 403 otherwise\n");
        return 2;
    }
    if (!(cert = slurp(argv[2])) || !(key = slurp(argv[3])) || !(ca = slurp(argv[4]))) {
        fprintf(stderr, "mft-tlsplain: cannot read the certificate, key or CA\n");
        goto out;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *prio = getenv("MFT_INGRESS_TLS_PRIORITIES");
    if (!prio || !*prio)
        prio = MFT_TLSSRV_DEFAULT_PRIORITIES;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                             MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TLS,
                         0, NULL, NULL, handler, NULL, MHD_OPTION_SOCK_ADDR, &addr,
                         MHD_OPTION_HTTPS_MEM_CERT, cert, MHD_OPTION_HTTPS_MEM_KEY, key,
                         MHD_OPTION_HTTPS_MEM_TRUST, ca, MHD_OPTION_HTTPS_PRIORITIES, prio,
                         MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_CONNECTION_TIMEOUT, 300u,
                         MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "mft-tlsplain: cannot start the HTTPS listener on port %ld\n", port);
        goto out;
    }
    while (!stop_flag)
        pause();
    rc = 0;
out:
    if (d)
        MHD_stop_daemon(d);
    free(cert);
    if (key) {
        memset(key, 0, strlen(key));
        free(key);
    }
    free(ca);
    return rc;
}
