/*
 * mft-egress — the AS2 sender. This file is configuration, wiring and
 * shutdown only: it opens Redis, Kafka and the payload store, loads the
 * registry (reloaded when mft:config:version changes), starts the worker
 * threads and the ops port, then consumes mft.outbound.v1 in the consumer
 * group "mft-egress" (MFT_EGRESS_GROUP), handing records to the acceptor
 * threads of accept.c: a record's offset is committed only once send_accept
 * has made it and every record before it durable in Redis and published
 * `queued`.
 * Between records it fails async MDNs past their deadline. On SIGTERM/SIGINT
 * it stops consuming, lets attempts in flight finish (their leases bring back
 * any it cannot), closes the consumer, flushes the producer and exits 0.
 * Sending is in send.c.
 */
#include "egress.h"
#include "mft_cfg.h"
#include "mft_httpc.h"
#include "mft_log.h"
#include "mft_ops.h"
#include "mft_secret.h"
#include "mft_time.h"

#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const struct mft_cfg_var cfg[] = {
    MFT_CFG_COMMON,
    {"MFT_EGRESS_OPS_ADDR", "127.0.0.1:9102", "ops port: /livez /readyz /metrics (plain HTTP)"},
    {"MFT_EGRESS_GROUP", "mft-egress", "Kafka consumer group of the egress replicas"},
    {"MFT_EGRESS_WORKERS", "8", "concurrent attempts (one thread each)"},
    {"MFT_EGRESS_ACCEPTORS", "4", "SendRequested records accepted at once (one thread each)"},
    {"MFT_EGRESS_KEEPALIVE", "1", "keep connections to partners open between messages (1/0)"},
    {"MFT_EGRESS_MAX_INLINE", "1M", "largest inline payload of a SendRequested (bytes, K/M/G)"},
    {"MFT_EGRESS_MAX_RESPONSE", "1M", "largest HTTP answer (MDN) read from a partner"},
    {"MFT_EGRESS_POLL_MS", "200", "how often the retry and MDN schedules are read"},
    {"MFT_EGRESS_LEASE_MS", "30000", "lease on an attempt beyond its HTTP timeout"},
    {"MFT_EGRESS_RELOAD_MS", "1000", "how often the configuration version is polled"},
    {"MFT_KAFKA_TIMEOUT_MS", "10000", "how long to wait for the broker's acknowledgement"},
    {NULL, NULL, NULL},
};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

struct mft_registry *egress_registry(struct egress *eg)
{
    pthread_mutex_lock(&eg->reg_lock);
    struct mft_registry *r = mft_registry_ref(eg->reg);
    pthread_mutex_unlock(&eg->reg_lock);
    return r;
}

static void wake(struct egress *eg, int all)
{
    pthread_mutex_lock(&eg->wake_lock);
    eg->wake_gen++;
    if (all)
        pthread_cond_broadcast(&eg->wake);
    else
        pthread_cond_signal(&eg->wake);
    pthread_mutex_unlock(&eg->wake_lock);
}

/* One message is due: one idle worker is enough. Waking all of them made each
 * read the schedule from Redis for one message (8 reads per message with
 * 8 workers, the most frequent Redis call in the egress benchmark); a busy
 * worker reads the schedule again anyway before it waits. */
void egress_wake(struct egress *eg)
{
    wake(eg, 0);
}

static int reload(struct egress *eg, const unsigned char *mkey, struct mft_err *err)
{
    struct mft_registry *reg = NULL;
    if (mft_registry_load(eg->store, mkey, &reg, err) < 0)
        return -1;
    pthread_mutex_lock(&eg->reg_lock);
    struct mft_registry *old = eg->reg;
    eg->reg = reg;
    pthread_mutex_unlock(&eg->reg_lock);
    mft_registry_unref(old);
    char v[32], np[32];
    snprintf(v, sizeof(v), "%lld", reg->version);
    snprintf(np, sizeof(np), "%zu", reg->n_partners);
    mft_info("config.loaded", "stations and partners loaded", "version", v, "partners", np);
    mft_metric_set("mft_config_version", "", (double)reg->version);
    return 0;
}

static int ready(void *arg, char *why, size_t whylen)
{
    struct egress *eg = arg;
    struct mft_err err;
    mft_err_clear(&err);
    if (atomic_load(&eg->stopping))
        return snprintf(why, whylen, "draining"), -1;
    if (mft_store_ping(eg->store, &err) < 0)
        return snprintf(why, whylen, "redis: %s %s", err.message, err.detail), -1;
    if (mft_bus_ping(eg->bus, 2000, &err) < 0)
        return snprintf(why, whylen, "kafka: %s %s", err.message, err.detail), -1;
    return 0;
}

static void declare_metrics(void)
{
    mft_metric_declare("mft_egress_requests_total", "counter",
                       "SendRequested events accepted, by result");
    mft_metric_declare("mft_egress_attempts_total", "counter", "AS2 POST attempts, by result");
    mft_metric_declare("mft_egress_bytes_total", "counter", "AS2 message bytes sent");
    mft_metric_declare("mft_egress_inflight", "gauge", "attempts in progress");
    mft_metric_declare("mft_outbound_transitions_total", "counter",
                       "state changes of outgoing messages, by state");
    mft_metric_declare("mft_config_version", "gauge", "configuration version in force");
}

int main(int argc, char **argv)
{
    static struct egress eg;
    struct mft_err err;
    struct mft_ops *ops = NULL;
    struct mft_bus_consumer *consumer = NULL;
    pthread_t *workers = NULL;
    long n_workers = 0, n_acceptors = 0, reload_ms = 0, bus_timeout = 0, keepalive = 1;
    struct accept_pool *ap = NULL;
    unsigned char mkey[32];
    int rc = 1;
    size_t started = 0;

    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        mft_cfg_usage(stdout,
                      "usage: mft-egress\n\nThe AS2 sender: consumes SendRequested, sends over "
                      "HTTPS with mutual TLS, reads MDNs, retries; DeliveryUpdated on Kafka.",
                      cfg);
        return 0;
    }
    mft_log_init("egress");
    mft_err_clear(&err);
    pthread_mutex_init(&eg.reg_lock, NULL);
    pthread_mutex_init(&eg.wake_lock, NULL);
    pthread_cond_init(&eg.wake, NULL);
    gethostname(eg.hostname, sizeof(eg.hostname) - 1);
    declare_metrics();

    if (mft_cfg_long(cfg, "MFT_EGRESS_WORKERS", &n_workers) < 0 ||
        mft_cfg_long(cfg, "MFT_EGRESS_ACCEPTORS", &n_acceptors) < 0 ||
        mft_cfg_long(cfg, "MFT_EGRESS_KEEPALIVE", &keepalive) < 0 ||
        mft_cfg_size(cfg, "MFT_EGRESS_MAX_INLINE", &eg.max_inline) < 0 ||
        mft_cfg_size(cfg, "MFT_EGRESS_MAX_RESPONSE", &eg.max_response) < 0 ||
        mft_cfg_long(cfg, "MFT_EGRESS_POLL_MS", &eg.poll_ms) < 0 ||
        mft_cfg_long(cfg, "MFT_EGRESS_LEASE_MS", &eg.lease_extra_ms) < 0 ||
        mft_cfg_long(cfg, "MFT_EGRESS_RELOAD_MS", &reload_ms) < 0 ||
        mft_cfg_long(cfg, "MFT_KAFKA_TIMEOUT_MS", &bus_timeout) < 0)
        mft_fatal("config.invalid", "see the previous line");
    if (n_workers < 1 || n_workers > 256)
        mft_fatal("config.invalid", "MFT_EGRESS_WORKERS must be 1..256");
    eg.keepalive = keepalive != 0;
    if (n_acceptors < 1 || n_acceptors > 64)
        mft_fatal("config.invalid", "MFT_EGRESS_ACCEPTORS must be 1..64");
    if (eg.poll_ms < 10)
        eg.poll_ms = 10;
    if (mft_secret_parse_master_key(mft_cfg_get(cfg, "MFT_MASTER_KEY"), mkey, &err) < 0)
        mft_fatal("config.invalid", err.message);
    snprintf(eg.payload_dir, sizeof(eg.payload_dir), "%s", mft_cfg_get(cfg, "MFT_PAYLOAD_DIR"));

    char source[200];
    snprintf(source, sizeof(source), "/mft/egress/%s", eg.hostname);
    if (mft_store_open(mft_cfg_get(cfg, "MFT_REDIS_URL"), &eg.store, &err) < 0 ||
        mft_bus_open(mft_cfg_get(cfg, "MFT_KAFKA_BROKERS"), source, &eg.bus, &err) < 0 ||
        mft_payload_open(eg.payload_dir, &eg.payloads, &err) < 0 || reload(&eg, mkey, &err) < 0 ||
        mft_bus_consumer_open(mft_cfg_get(cfg, "MFT_KAFKA_BROKERS"), MFT_TOPIC_OUTBOUND,
                              mft_cfg_get(cfg, "MFT_EGRESS_GROUP"), &consumer, &err) < 0) {
        mft_error("startup.failed", err.message, "error_kind", mft_err_kind_name(err.kind),
                  "detail", err.detail);
        goto out;
    }
    eg.outbox = (struct mft_outbox){eg.store, eg.bus, (int)bus_timeout};

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (!(workers = calloc((size_t)n_workers, sizeof(*workers))))
        mft_fatal("startup.failed", "out of memory");
    for (; started < (size_t)n_workers; started++)
        if (pthread_create(&workers[started], NULL, send_worker, &eg) != 0)
            mft_fatal("startup.failed", "cannot start a worker thread");
    if (accept_pool_start(&eg, (size_t)n_acceptors, &ap) < 0)
        mft_fatal("startup.failed", "cannot start the acceptor threads");
    if (mft_ops_start(mft_cfg_get(cfg, "MFT_EGRESS_OPS_ADDR"), ready, &eg, &ops, &err) < 0)
        mft_fatal("startup.failed", err.message);
    char nw[16];
    snprintf(nw, sizeof(nw), "%ld", n_workers);
    mft_info("egress.started", "consuming", "topic", MFT_TOPIC_OUTBOUND, "workers", nw, "ops",
             mft_cfg_get(cfg, "MFT_EGRESS_OPS_ADDR"));

    long long seen = eg.reg ? eg.reg->version : 0, next_reload = 0, next_expiry = 0;
    struct mft_bus_record rec;
    while (!stop_flag) {
        long long now = mft_now_ms();
        if (now >= next_reload) {
            long long v = 0;
            struct mft_err e;
            mft_err_clear(&e);
            if (mft_registry_poll(eg.store, &seen, &v, &e) == 1) {
                if (reload(&eg, mkey, &e) == 0)
                    seen = v;
                else
                    mft_error("config.reload_failed", e.message, "error_kind",
                              mft_err_kind_name(e.kind), "detail", e.detail);
            }
            next_reload = now + reload_ms;
        }
        if (now >= next_expiry) {
            send_expire_mdns(&eg);
            mft_outbox_flush(&eg.outbox, 100); /* events Kafka did not take in time */
            next_expiry = now + 1000;
        }
        /* offsets move past what is accepted, in poll order (accept.c) */
        size_t inflight = accept_pool_commit(ap, consumer, 0);
        if (accept_pool_full(ap)) {
            accept_pool_commit(ap, consumer, 50);
            continue;
        }
        int p = mft_bus_consumer_poll(consumer, inflight ? 20 : (int)eg.poll_ms, &rec, &err);
        if (p < 0) {
            mft_error("bus.consume_failed", err.message, "detail", err.detail);
            usleep(500 * 1000);
            continue;
        }
        if (p == 1)
            accept_pool_push(ap, &rec);
    }

    mft_info("egress.stopping", "draining");
    accept_pool_stop(ap, consumer); /* unfinished records: redelivered to the next consumer */
    ap = NULL;
    rc = 0;
out:
    accept_pool_stop(ap, NULL);
    atomic_store(&eg.stopping, 1);
    wake(&eg, 1);
    for (size_t i = 0; i < started; i++)
        pthread_join(workers[i], NULL);
    free(workers);
    mft_bus_consumer_close(consumer);
    mft_ops_stop(ops);
    mft_bus_close(eg.bus, 10000);
    mft_store_close(eg.store);
    mft_payload_close(eg.payloads);
    mft_registry_unref(eg.reg);
    OPENSSL_cleanse(mkey, sizeof(mkey));
    mft_info("egress.stopped", "bye");
    return rc;
}
