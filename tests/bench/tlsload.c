/*
 * mft-tlsload — the TLS handshake load generator of `./mft bench tls`. N
 * threads, each in a loop: connect to HOST:PORT, a full TLS 1.3 handshake
 * (OpenSSL; no session cache, no tickets, nothing resumed) presenting the
 * client certificate, one minimal HTTP request, read the server's first
 * answer line, close. Under TLS 1.3 the client's handshake is complete before
 * the server has checked the client certificate, so only an answer proves the
 * server accepted it: a connection counts as a success when the first status
 * line is 100 (Continue) or 2xx. The request is
 *
 *   POST / HTTP/1.1 with Content-Length: 1 and Expect: 100-continue
 *
 * and its body is never sent: nginx (`return 200`) and a plain libmicrohttpd
 * server answer 200 at once; mft-ingress answers 100 Continue after its
 * handler has seen the headers, without recording anything (it would record a
 * request it refuses as a ConnectionRejected event, which is not handshake
 * work).
 *
 * Threads share the read-only SSL_CTX and an atomic counter; each keeps its
 * counts and latencies (connect to answer), merged after join. Prints one JSON
 * object: connections, successes, failures, handshakes_per_s, latency
 * percentiles, resumed (always 0), and what the first connection negotiated.
 */
#include "loadstat.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256

struct opts {
    const char *host, *servername, *cacert, *cert, *key, *groups;
    long port, threads, max_count;
    double seconds;
};

struct worker {
    pthread_t tid;
    int index;
    const struct opts *o;
    SSL_CTX *ctx;
    double *lat_ms; /* one per success, grown by doubling */
    size_t n_lat, cap_lat;
    long attempts, successes, resumed;
    char first_error[300];
    char negotiated[160]; /* thread 0, first success: group, cipher, HelloRetryRequest */
};

static atomic_long issued;
static double deadline;
static const char request[] = "POST / HTTP/1.1\r\n"
                              "Host: localhost\r\n"
                              "Content-Type: application/octet-stream\r\n"
                              "Content-Length: 1\r\n"
                              "Expect: 100-continue\r\n"
                              "Connection: close\r\n"
                              "\r\n";

static void usage(FILE *f)
{
    fprintf(f, "usage: mft-tlsload --port PORT --cacert FILE [options]\n"
               "  --host IP          server address (default 127.0.0.1)\n"
               "  --servername NAME  SNI and the name the server certificate must carry\n"
               "                     (default localhost)\n"
               "  --cert FILE --key FILE   client certificate and key (PEM); without them\n"
               "                     the handshakes go on without a client certificate\n"
               "  --groups LIST      key-exchange groups offered, the first with a key share\n"
               "                     (default: OpenSSL's, X25519 first)\n"
               "  --threads N        concurrent connections (default 1)\n"
               "  --seconds S        stop after S seconds (default 10)\n"
               "  --count N          stop after N connections (default 100000000)\n"
               "Prints one JSON object: connections, successes, failures, seconds,\n"
               "handshakes_per_s, p50_ms, p90_ms, p99_ms, max_ms, resumed, negotiated,\n"
               "first_error.\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->host = "127.0.0.1";
    o->servername = "localhost";
    o->threads = 1;
    o->seconds = 10;
    o->max_count = 100000000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "mft-tlsload: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--host") == 0)
            o->host = v;
        else if (strcmp(a, "--servername") == 0)
            o->servername = v;
        else if (strcmp(a, "--cacert") == 0)
            o->cacert = v;
        else if (strcmp(a, "--cert") == 0)
            o->cert = v;
        else if (strcmp(a, "--key") == 0)
            o->key = v;
        else if (strcmp(a, "--groups") == 0)
            o->groups = v;
        else if (strcmp(a, "--port") == 0)
            ok = bench_parse_long(v, &o->port) == 0 && o->port >= 1 && o->port <= 65535;
        else if (strcmp(a, "--threads") == 0)
            ok = bench_parse_long(v, &o->threads) == 0 && o->threads >= 1 &&
                 o->threads <= MAX_THREADS;
        else if (strcmp(a, "--count") == 0)
            ok = bench_parse_long(v, &o->max_count) == 0 && o->max_count >= 1;
        else if (strcmp(a, "--seconds") == 0) {
            char *end = NULL;
            o->seconds = strtod(v, &end);
            ok = end && !*end && o->seconds > 0 && o->seconds <= 3600;
        } else {
            fprintf(stderr, "mft-tlsload: unknown option %s\n", a);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "mft-tlsload: invalid value for %s: %s\n", a, v);
            return -1;
        }
    }
    if (!o->port || !o->cacert || !o->cert != !o->key) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* Keeps the first failure of a thread: WHAT, then OpenSSL's reason if any. */
static void note_error(struct worker *w, const char *what)
{
    char ssl[200] = "";
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, ssl, sizeof(ssl));
    ERR_clear_error();
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof(w->first_error), "%s%s%s", what, ssl[0] ? ": " : "", ssl);
}

/* Counts the ServerHello messages of a handshake: two = a HelloRetryRequest. */
static void on_msg(int write_p, int version, int content_type, const void *buf, size_t len,
                   SSL *ssl, void *arg)
{
    (void)version;
    (void)ssl;
    if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
        ((const unsigned char *)buf)[0] == SSL3_MT_SERVER_HELLO)
        (*(int *)arg)++;
}

/* Reads until the first line of the answer is complete; returns its status
 * code, or -1 when the connection ends first. */
static int read_status(SSL *ssl)
{
    char buf[512];
    size_t len = 0;
    while (len < sizeof(buf) - 1) {
        int n = SSL_read(ssl, buf + len, (int)(sizeof(buf) - 1 - len));
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "\r\n")) {
            int code = 0;
            if (sscanf(buf, "HTTP/1.%*1[01] %3d", &code) == 1)
                return code;
            return -1;
        }
    }
    return -1;
}

/* One connection. Returns 0 when the server answered 100 or 2xx. */
static int one(struct worker *w, int trace)
{
    const struct opts *o = w->o;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    SSL *ssl = NULL;
    int fd = -1, rc = -1, one_flag = 1, hellos = 0;
    char what[80];

    if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1) {
        note_error(w, "--host is not an IPv4 address");
        return -1;
    }
    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(what, sizeof(what), "connect: %s", strerror(errno));
        note_error(w, what);
        goto out;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one_flag, sizeof(one_flag));
    if (!(ssl = SSL_new(w->ctx)) || SSL_set_fd(ssl, fd) != 1 ||
        SSL_set_tlsext_host_name(ssl, o->servername) != 1 ||
        SSL_set1_host(ssl, o->servername) != 1) {
        note_error(w, "SSL_new");
        goto out;
    }
    if (trace) {
        SSL_set_msg_callback(ssl, on_msg);
        SSL_set_msg_callback_arg(ssl, &hellos);
    }
    if (SSL_connect(ssl) != 1) {
        note_error(w, "handshake");
        goto out;
    }
    if (SSL_session_reused(ssl))
        w->resumed++;
    if (SSL_write(ssl, request, (int)sizeof(request) - 1) != (int)sizeof(request) - 1) {
        note_error(w, "write (the server refused the client certificate?)");
        goto out;
    }
    int code = read_status(ssl);
    if (code != 100 && (code < 200 || code > 299)) {
        if (code < 0)
            note_error(w, "no answer (the server refused the client certificate?)");
        else {
            snprintf(what, sizeof(what), "HTTP status %d", code);
            note_error(w, what);
        }
        goto out;
    }
    if (trace) {
        const char *group = OBJ_nid2sn(SSL_get_negotiated_group(ssl) & ~TLSEXT_nid_unknown);
        snprintf(w->negotiated, sizeof(w->negotiated), "%s %s, group %s, HelloRetryRequest %s",
                 SSL_get_version(ssl), SSL_get_cipher_name(ssl), group ? group : "?",
                 hellos > 1 ? "yes" : "no");
    }
    SSL_shutdown(ssl); /* close_notify, without waiting for the server's */
    rc = 0;
out:
    ERR_clear_error();
    SSL_free(ssl);
    if (fd >= 0)
        close(fd);
    return rc;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    while (bench_now_s() < deadline && atomic_fetch_add(&issued, 1) < w->o->max_count) {
        double t0 = bench_now_s();
        int trace = w->index == 0 && w->successes == 0;
        w->attempts++;
        if (one(w, trace) < 0)
            continue;
        w->successes++;
        if (w->n_lat == w->cap_lat) {
            size_t cap = w->cap_lat ? 2 * w->cap_lat : 4096;
            double *p = realloc(w->lat_ms, cap * sizeof(double));
            if (!p)
                continue;
            w->lat_ms = p;
            w->cap_lat = cap;
        }
        w->lat_ms[w->n_lat++] = (bench_now_s() - t0) * 1000.0;
    }
    return NULL;
}

/* The client context: TLS 1.3 only, the server verified against --cacert,
 * no session cache and no tickets, so every handshake is a full one. */
static SSL_CTX *make_ctx(const struct opts *o)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        return NULL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(ctx, o->cacert, NULL) != 1 ||
        (o->groups && SSL_CTX_set1_groups_list(ctx, o->groups) != 1) ||
        (o->cert && (SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1 ||
                     SSL_CTX_use_PrivateKey_file(ctx, o->key, SSL_FILETYPE_PEM) != 1 ||
                     SSL_CTX_check_private_key(ctx) != 1))) {
        ERR_print_errors_fp(stderr);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct worker *ws = NULL;
    SSL_CTX *ctx = NULL;
    double *all = NULL;
    int rc = 1;

    if (parse_args(argc, argv, &o) < 0)
        return 2;
    if (!(ctx = make_ctx(&o))) {
        fprintf(stderr, "mft-tlsload: cannot load the CA, certificate or key\n");
        return 1;
    }
    if (!(ws = calloc((size_t)o.threads, sizeof(*ws))))
        goto out;
    for (long i = 0; i < o.threads; i++) {
        ws[i].index = (int)i;
        ws[i].o = &o;
        ws[i].ctx = ctx;
    }
    double t0 = bench_now_s();
    deadline = t0 + o.seconds;
    long started = 0;
    for (; started < o.threads; started++)
        if (pthread_create(&ws[started].tid, NULL, work, &ws[started]) != 0) {
            fprintf(stderr, "mft-tlsload: pthread_create failed\n");
            break;
        }
    for (long i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    double secs = bench_now_s() - t0;

    long att = 0, succ = 0, resumed = 0;
    size_t n = 0;
    const char *first_error = "";
    for (long i = 0; i < started; i++) {
        att += ws[i].attempts;
        succ += ws[i].successes;
        resumed += ws[i].resumed;
        n += ws[i].n_lat;
        if (!first_error[0] && ws[i].first_error[0])
            first_error = ws[i].first_error;
    }
    if (!(all = malloc((n ? n : 1) * sizeof(double))))
        goto out;
    size_t k = 0;
    for (long i = 0; i < started; i++) {
        memcpy(all + k, ws[i].lat_ms, ws[i].n_lat * sizeof(double));
        k += ws[i].n_lat;
    }
    bench_sort(all, n);

    /* the first error as a JSON string: printable ASCII, quotes and backslashes dropped */
    char err_json[300];
    size_t j = 0;
    for (const char *p = first_error; *p && j < sizeof(err_json) - 1; p++)
        err_json[j++] = (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') ? *p : ' ';
    err_json[j] = '\0';

    printf("{\"threads\": %ld, \"connections\": %ld, \"successes\": %ld, \"failures\": %ld, "
           "\"seconds\": %.3f, \"handshakes_per_s\": %.1f, \"p50_ms\": %.2f, \"p90_ms\": %.2f, "
           "\"p99_ms\": %.2f, \"max_ms\": %.2f, \"resumed\": %ld, \"negotiated\": \"%s\", "
           "\"first_error\": \"%s\"}\n",
           (long)started, att, succ, att - succ, secs, secs > 0 ? (double)succ / secs : 0,
           bench_percentile(all, n, 0.50), bench_percentile(all, n, 0.90),
           bench_percentile(all, n, 0.99), n ? all[n - 1] : 0, resumed, ws[0].negotiated, err_json);
    rc = started == o.threads ? 0 : 1;
out:
    if (ws)
        for (long i = 0; i < o.threads; i++)
            free(ws[i].lat_ms);
    free(ws);
    free(all);
    SSL_CTX_free(ctx);
    return rc;
}
