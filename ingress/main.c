/*
 * mft-ingress — the AS2 receiver. This file is configuration, wiring and
 * shutdown only: it opens Redis, Kafka and the payload store, loads the
 * registry and the TLS trust snapshot (reloaded when mft:config:version
 * changes, without a restart), starts the HTTPS listener (mutual TLS), the
 * optional plain-HTTP listener and the ops port, and on SIGTERM/SIGINT stops
 * accepting, lets requests in flight finish, flushes the producer and exits 0.
 * Request handling is in receive.c.
 */
#include "ingress.h"
#include "mft_cfg.h"
#include "mft_log.h"
#include "mft_ops.h"
#include "mft_outbox.h"
#include "mft_secret.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct mft_cfg_var cfg[] = {
    MFT_CFG_COMMON,
    {"MFT_INGRESS_HTTPS_ADDR", "127.0.0.1:8443", "AS2 over HTTPS with mutual TLS (host:port)"},
    {"MFT_INGRESS_HTTP_ADDR", NULL, "optional plain-HTTP AS2 listener (host:port); off when unset"},
    {"MFT_INGRESS_OPS_ADDR", "127.0.0.1:9101", "ops port: /livez /readyz /metrics (plain HTTP)"},
    {"MFT_INGRESS_MAX_BODY", "512M", "largest accepted AS2 request body (bytes, K/M/G)"},
    {"MFT_INGRESS_MAX_INFLATED", "2G", "largest decompressed content of one message"},
    {"MFT_INGRESS_SPILL_THRESHOLD", "4M",
     "layers larger than this are processed through temporary files, not memory"},
    {"MFT_INGRESS_MAX_CONNECTIONS", "256", "concurrent connections (one thread each)"},
    {"MFT_INGRESS_TIMEOUT_S", "300", "idle connection timeout in seconds"},
    {"MFT_INGRESS_TLS_PRIORITIES", MFT_TLSSRV_DEFAULT_PRIORITIES,
     "GnuTLS priority string (default: TLS 1.2 and 1.3 only)"},
    {"MFT_INGRESS_DUP_TTL_S", "2592000", "how long a Message-ID is remembered for duplicates"},
    {"MFT_INGRESS_KEEP_RAW", "1", "keep the raw received message beside the payload (1/0)"},
    {"MFT_INGRESS_RELOAD_MS", "1000", "how often the configuration version is polled"},
    {"MFT_INGRESS_TLS_VERIFIED_CHAINS", "64",
     "client chains remembered as verified (0..64; 0: path-check every handshake)"},
    {"MFT_KAFKA_TIMEOUT_MS", "10000", "how long to wait for the broker's acknowledgement"},
    {NULL, NULL, NULL},
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

struct mft_registry *ingress_registry(struct ingress *in)
{
    pthread_mutex_lock(&in->reg_lock);
    struct mft_registry *r = mft_registry_ref(in->reg);
    pthread_mutex_unlock(&in->reg_lock);
    return r;
}

static int reload(struct ingress *in, const unsigned char *mkey, struct mft_err *err)
{
    struct mft_registry *reg = NULL;
    if (mft_registry_load(in->store, mkey, &reg, err) < 0)
        return -1;
    if (mft_tlssrv_update(in->tls, reg, err) < 0) {
        mft_registry_unref(reg);
        return -1;
    }
    pthread_mutex_lock(&in->reg_lock);
    struct mft_registry *old = in->reg;
    in->reg = reg;
    pthread_mutex_unlock(&in->reg_lock);
    mft_registry_unref(old);
    char v[32], ns[32], np[32];
    snprintf(v, sizeof(v), "%lld", reg->version);
    snprintf(ns, sizeof(ns), "%zu", reg->n_stations);
    snprintf(np, sizeof(np), "%zu", reg->n_partners);
    mft_info("config.loaded", "stations and partners loaded", "version", v, "stations", ns,
             "partners", np);
    mft_metric_set("mft_config_version", "", (double)reg->version);
    return 0;
}

static int ready(void *arg, char *why, size_t whylen)
{
    struct ingress *in = arg;
    struct mft_err err;
    mft_err_clear(&err);
    if (atomic_load(&in->draining))
        return snprintf(why, whylen, "draining"), -1;
    if (mft_store_ping(in->store, &err) < 0)
        return snprintf(why, whylen, "redis: %s %s", err.message, err.detail), -1;
    if (mft_bus_ping(in->bus, 2000, &err) < 0)
        return snprintf(why, whylen, "kafka: %s %s", err.message, err.detail), -1;
    if (!mft_tlssrv_ready(in->tls))
        return snprintf(why, whylen, "no station has a TLS certificate"), -1;
    return 0;
}

static void declare_metrics(void)
{
    mft_metric_declare("mft_ingress_requests_total", "counter",
                       "AS2 requests answered, by HTTP status");
    mft_metric_declare("mft_ingress_messages_total", "counter",
                       "messages received and acknowledged with a positive MDN");
    mft_metric_declare("mft_ingress_bytes_total", "counter", "payload bytes received");
    mft_metric_declare("mft_ingress_duplicates_total", "counter",
                       "duplicate messages answered without a new delivery");
    mft_metric_declare("mft_ingress_rejected_total", "counter",
                       "rejected requests and failed TLS handshakes, by error kind");
    mft_metric_declare("mft_ingress_inflight", "gauge", "requests being processed");
    mft_metric_declare("mft_ingress_tls_verify_cache_hits_total", "counter",
                       "client chains whose verdict came from the verified-chain memory");
    mft_metric_declare("mft_ingress_async_mdns_total", "counter",
                       "asynchronous MDNs this gateway sent to partners, by result");
    mft_metric_declare("mft_ingress_mdns_total", "counter",
                       "asynchronous MDNs taken for messages egress sent");
    mft_metric_declare("mft_outbound_transitions_total", "counter",
                       "state changes of outgoing messages, by state");
    mft_metric_declare("mft_config_version", "gauge", "configuration version in force");
}

/* libmicrohttpd's own messages (malformed requests it answers itself, clients
 * gone mid-upload) as JSON log lines, like everything else on stderr. */
static void mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\r\n")] = '\0';
    mft_warn("http.server", msg);
}

static struct MHD_Daemon *start_listener(struct ingress *in, const char *addr, int tls,
                                         const char *priorities, long max_conn, long timeout_s)
{
    struct sockaddr_in sa;
    if (mft_ops_parse_addr(addr, &sa) < 0) {
        mft_error("config.invalid", "invalid listen address", "address", addr);
        return NULL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
    if (tls)
        return MHD_start_daemon(
            flags | MHD_USE_TLS, 0, NULL, NULL, receive_handler, in, MHD_OPTION_SOCK_ADDR, &sa,
            MHD_OPTION_HTTPS_CERT_CALLBACK, mft_tlssrv_cert_callback(), MHD_OPTION_HTTPS_PRIORITIES,
            priorities, MHD_OPTION_NOTIFY_CONNECTION, receive_connection, in,
            MHD_OPTION_NOTIFY_COMPLETED, receive_completed, in, MHD_OPTION_CONNECTION_LIMIT,
            (unsigned)max_conn, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout_s,
            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
    return MHD_start_daemon(flags, 0, NULL, NULL, receive_handler, in, MHD_OPTION_SOCK_ADDR, &sa,
                            MHD_OPTION_NOTIFY_COMPLETED, receive_completed, in,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conn,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout_s,
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL, MHD_OPTION_END);
}

int main(int argc, char **argv)
{
    static struct ingress in;
    struct mft_err err;
    struct mft_ops *ops = NULL;
    struct MHD_Daemon *https = NULL, *http = NULL;
    unsigned char mkey[32];
    long max_conn = 0, timeout_s = 0, reload_ms = 0, keep_raw = 1, bus_timeout = 0, chains = 0;
    int rc = 1;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        mft_cfg_usage(stdout,
                      "usage: mft-ingress\n\nThe AS2 receiver: HTTPS with mutual TLS, "
                      "decrypt, verify, MIC, MDN; events on Kafka.",
                      cfg);
        return 0;
    }
    mft_log_init("ingress");
    mft_err_clear(&err);
    pthread_mutex_init(&in.reg_lock, NULL);
    gethostname(in.hostname, sizeof(in.hostname) - 1);
    declare_metrics();

    if (mft_cfg_size(cfg, "MFT_INGRESS_MAX_BODY", &in.max_body) < 0 ||
        mft_cfg_size(cfg, "MFT_INGRESS_MAX_INFLATED", &in.max_inflated) < 0 ||
        mft_cfg_size(cfg, "MFT_INGRESS_SPILL_THRESHOLD", &in.spill_threshold) < 0 ||
        mft_cfg_long(cfg, "MFT_INGRESS_MAX_CONNECTIONS", &max_conn) < 0 ||
        mft_cfg_long(cfg, "MFT_INGRESS_TIMEOUT_S", &timeout_s) < 0 ||
        mft_cfg_long(cfg, "MFT_INGRESS_DUP_TTL_S", &in.dup_ttl_s) < 0 ||
        mft_cfg_long(cfg, "MFT_INGRESS_KEEP_RAW", &keep_raw) < 0 ||
        mft_cfg_long(cfg, "MFT_INGRESS_RELOAD_MS", &reload_ms) < 0 ||
        mft_cfg_long(cfg, "MFT_INGRESS_TLS_VERIFIED_CHAINS", &chains) < 0 ||
        mft_cfg_long(cfg, "MFT_KAFKA_TIMEOUT_MS", &bus_timeout) < 0)
        mft_fatal("config.invalid", "see the previous line");
    in.keep_raw = keep_raw != 0;
    in.bus_timeout_ms = (int)bus_timeout;
    if (mft_secret_parse_master_key(mft_cfg_get(cfg, "MFT_MASTER_KEY"), mkey, &err) < 0)
        mft_fatal("config.invalid", err.message);

    char source[200];
    snprintf(source, sizeof(source), "/mft/ingress/%s", in.hostname);
    if (mft_store_open(mft_cfg_get(cfg, "MFT_REDIS_URL"), &in.store, &err) < 0 ||
        mft_bus_open(mft_cfg_get(cfg, "MFT_KAFKA_BROKERS"), source, &in.bus, &err) < 0 ||
        mft_payload_open(mft_cfg_get(cfg, "MFT_PAYLOAD_DIR"), &in.payloads, &err) < 0 ||
        mft_tlssrv_create(&in.tls, &err) < 0 ||
        mft_tlssrv_set_priorities(in.tls, mft_cfg_get(cfg, "MFT_INGRESS_TLS_PRIORITIES"), &err) <
            0 ||
        mft_tlssrv_set_verified_chains(in.tls, chains, &err) < 0) {
        mft_error("startup.failed", err.message, "error_kind", mft_err_kind_name(err.kind),
                  "detail", err.detail);
        goto out;
    }
    if (reload(&in, mkey, &err) < 0) {
        mft_error("startup.failed", err.message, "error_kind", mft_err_kind_name(err.kind),
                  "detail", err.detail);
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    const char *https_addr = mft_cfg_get(cfg, "MFT_INGRESS_HTTPS_ADDR");
    const char *http_addr = mft_cfg_get(cfg, "MFT_INGRESS_HTTP_ADDR");
    https = start_listener(&in, https_addr, 1, mft_cfg_get(cfg, "MFT_INGRESS_TLS_PRIORITIES"),
                           max_conn, timeout_s);
    if (!https)
        mft_fatal("startup.failed", "cannot start the HTTPS listener (address or priorities)");
    if (http_addr && !(http = start_listener(&in, http_addr, 0, NULL, max_conn, timeout_s)))
        mft_fatal("startup.failed", "cannot start the plain-HTTP listener");
    if (mft_ops_start(mft_cfg_get(cfg, "MFT_INGRESS_OPS_ADDR"), ready, &in, &ops, &err) < 0)
        mft_fatal("startup.failed", err.message);
    mft_info("ingress.started", "listening", "https", https_addr, "http", http_addr, "ops",
             mft_cfg_get(cfg, "MFT_INGRESS_OPS_ADDR"));

    long long seen = in.reg ? in.reg->version : 0;
    while (!stop_flag) {
        struct timespec ts = {reload_ms / 1000, (reload_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        long long v = 0;
        struct mft_err e;
        mft_err_clear(&e);
        /* events of async-MDN outcomes that Kafka did not take in time */
        struct mft_outbox ob = {in.store, in.bus, in.bus_timeout_ms};
        mft_outbox_flush(&ob, 100);
        if (mft_registry_poll(in.store, &seen, &v, &e) == 1) {
            if (reload(&in, mkey, &e) == 0)
                seen = v;
            else
                mft_error("config.reload_failed", e.message, "error_kind",
                          mft_err_kind_name(e.kind), "detail", e.detail);
        }
    }

    /* Ordered shutdown: stop accepting, finish requests in flight, flush. */
    mft_info("ingress.stopping", "draining");
    atomic_store(&in.draining, 1);
    if (https)
        MHD_quiesce_daemon(https);
    if (http)
        MHD_quiesce_daemon(http);
    for (int i = 0; i < 300 && atomic_load(&in.inflight) > 0; i++)
        usleep(100 * 1000);
    rc = 0;
out:
    if (http)
        MHD_stop_daemon(http);
    if (https)
        MHD_stop_daemon(https);
    mft_ops_stop(ops);
    mft_bus_close(in.bus, 10000);
    mft_store_close(in.store);
    mft_payload_close(in.payloads);
    mft_tlssrv_destroy(in.tls);
    mft_registry_unref(in.reg);
    OPENSSL_cleanse(mkey, sizeof(mkey));
    mft_info("ingress.stopped", "bye");
    return rc;
}
