/*
 * mft_bus — Kafka producer and consumer (librdkafka), CloudEvents binary mode.
 *
 * Producer: one rd_kafka_t (idempotent, acks=all, linger.ms=5) shared by all
 * threads, plus one background thread that calls rd_kafka_poll() so delivery
 * reports are served while publishers wait. Each mft_bus_publish() allocates a
 * small reference-counted `struct pending` passed as the record's msg_opaque;
 * the delivery-report callback (poll thread) stores the result and signals its
 * condition variable; the publisher waits on it with a deadline. Two references
 * (publisher, delivery report) so a publisher that times out can leave while
 * the record is still in flight: whoever drops the last reference frees it.
 * mft_bus_close() flushes, purges what is left (their reports free the pending
 * structs), stops the poll thread, then destroys the handle.
 *
 * Consumer: a plain high-level consumer for tests and tools. Not thread-safe;
 * one consumer per thread. librdkafka's logs and errors go to mft_log.
 */
#include "mft_bus.h"
#include "mft_cfg.h"
#include "mft_log.h"
#include "mft_time.h"

#include <librdkafka/rdkafka.h>
#include <openssl/rand.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

struct mft_bus {
    rd_kafka_t *rk;
    char *source;
    pthread_t poller;
    int poller_started;
    atomic_int stop;
    rd_kafka_topic_t *topics[4]; /* the mft topics, known from the start (poll_main) */
};

static const char *const mft_topics[] = {MFT_TOPIC_INBOUND, MFT_TOPIC_OUTBOUND, MFT_TOPIC_STATUS,
                                         MFT_TOPIC_CERTS};
_Static_assert(sizeof(mft_topics) / sizeof(mft_topics[0]) ==
                   sizeof(((struct mft_bus *)0)->topics) / sizeof(rd_kafka_topic_t *),
               "one topic handle per mft topic");

struct mft_bus_consumer {
    rd_kafka_t *rk;
    int n_partitions; /* read-all mode: partitions assigned */
    int n_eof;        /* read-all mode: partitions at their end */
};

/* One in-flight record; see the file comment for the reference rule. */
struct pending {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    rd_kafka_resp_err_t err;
    atomic_int refs;
};

static void pending_unref(struct pending *p)
{
    if (!p)
        return;
    if (atomic_fetch_sub(&p->refs, 1) == 1) {
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        free(p);
    }
}

static struct pending *pending_new(void)
{
    struct pending *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&p->mu, NULL);
    atomic_init(&p->refs, 2);
    return p;
}

void mft_uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        size_t got = 0;
        while (got < sizeof(b)) {
            ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
            if (n > 0)
                got += (size_t)n;
            else if (errno != EINTR)
                mft_fatal("uuid.random", "no source of random bytes");
        }
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 0x0f];
    }
    out[o] = '\0';
}

/* --- librdkafka callbacks (librdkafka's threads) ------------------------ */

static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    /* Errors and warnings also reach on_error(): log them once, there. */
    enum mft_log_level lv = level <= 2 ? MFT_LOG_ERROR : MFT_LOG_DEBUG;
    MFT_LOG_(lv, "bus.librdkafka", buf, "facility", fac);
}

static void on_error(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
    (void)opaque;
    char fatal[512] = "";
    if (e == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        mft_error("bus.fatal", "Kafka producer fatal error", "detail", fatal, "error_kind",
                  "BUS_UNAVAILABLE");
        return;
    }
    mft_warn("bus.error", reason, "error", rd_kafka_err2name((rd_kafka_resp_err_t)e));
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    struct pending *p = m->_private;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->err = m->err;
    p->done = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pending_unref(p);
}

static void *poll_main(void *arg)
{
    struct mft_bus *bus = arg;
    /* librdkafka learns a topic's partitions when it is first produced to,
     * on its one-second topic scan: the first event of each kind a service
     * published waited up to a second (seen as a 980 ms stall in the egress
     * benchmark). Asking for the metadata of the known topics now avoids
     * it; with the broker down this delays the first delivery reports (and
     * a close right after the open) by at most half a second. */
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(bus->rk, 0, NULL, &md, 500) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_metadata_destroy(md);
    while (!atomic_load(&bus->stop))
        rd_kafka_poll(bus->rk, 50);
    return NULL;
}

/* Sets the common options (brokers, logging) on conf. Returns 0 or -1. */
static const struct mft_cfg_var bus_vars[] = {
    {"MFT_KAFKA_LINGER_MS", "1", "how long the producer waits to batch events (ms)"},
    {"MFT_KAFKA_FETCH_WAIT_MS", "10", "how long a consumer's fetch waits for new records (ms)"},
    {"MFT_KAFKA_DEBUG", "",
     "librdkafka debug contexts (e.g. broker,protocol,msg), logged at debug"},
    {NULL, NULL, NULL},
};

static int conf_common(rd_kafka_conf_t *conf, const char *brokers, struct mft_err *err)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "mft", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        mft_err_set(err, MFT_E_CONFIG, "invalid Kafka configuration (MFT_KAFKA_BROKERS)");
        return mft_err_detail(err, "%s", errstr);
    }
    const char *debug = mft_cfg_get(bus_vars, "MFT_KAFKA_DEBUG");
    if (debug && *debug &&
        rd_kafka_conf_set(conf, "debug", debug, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        mft_err_set(err, MFT_E_CONFIG, "invalid MFT_KAFKA_DEBUG");
        return mft_err_detail(err, "%s", errstr);
    }
    rd_kafka_conf_set_log_cb(conf, on_log);
    rd_kafka_conf_set_error_cb(conf, on_error);
    return 0;
}

int mft_bus_open(const char *brokers, const char *source, struct mft_bus **out, struct mft_err *err)
{
    struct mft_bus *bus = NULL;
    rd_kafka_conf_t *conf = NULL;
    char errstr[512];
    int rc = -1;

    *out = NULL;
    if (!brokers || !*brokers || !source || !*source) {
        mft_err_set(err, MFT_E_CONFIG, "Kafka brokers and event source are required");
        goto out;
    }
    bus = calloc(1, sizeof(*bus));
    if (!bus || !(bus->source = strdup(source))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    atomic_init(&bus->stop, 0);
    conf = rd_kafka_conf_new();
    if (conf_common(conf, brokers, err) != 0)
        goto out;
    /* Every publisher waits for its acknowledgement, so linger is latency on
     * every event; concurrent publishers still share batches at 1 ms. */
    long linger = 1;
    if (mft_cfg_long(bus_vars, "MFT_KAFKA_LINGER_MS", &linger) != 0 || linger < 0 ||
        linger > 1000) {
        mft_err_set(err, MFT_E_CONFIG, "MFT_KAFKA_LINGER_MS must be 0..1000");
        goto out;
    }
    char linger_s[16];
    snprintf(linger_s, sizeof(linger_s), "%ld", linger);
    const char *const opts[][2] = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"linger.ms", linger_s},
        {"message.timeout.ms", "60000"},
    };
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        if (rd_kafka_conf_set(conf, opts[i][0], opts[i][1], errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
            mft_err_set(err, MFT_E_CONFIG, "invalid Kafka producer setting %s", opts[i][0]);
            mft_err_detail(err, "%s", errstr);
            goto out;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    bus->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!bus->rk) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, "cannot create the Kafka producer");
        mft_err_detail(err, "%s", errstr);
        goto out;
    }
    conf = NULL; /* owned by rk now */
    for (size_t i = 0; i < sizeof(mft_topics) / sizeof(mft_topics[0]); i++)
        bus->topics[i] = rd_kafka_topic_new(bus->rk, mft_topics[i], NULL);
    if (pthread_create(&bus->poller, NULL, poll_main, bus) != 0) {
        mft_err_set(err, MFT_E_INTERNAL, "cannot start the Kafka poll thread");
        goto out;
    }
    bus->poller_started = 1;
    *out = bus;
    bus = NULL;
    rc = 0;
out:
    if (conf)
        rd_kafka_conf_destroy(conf);
    mft_bus_close(bus, 0);
    return rc;
}

void mft_bus_close(struct mft_bus *bus, int timeout_ms)
{
    if (!bus)
        return;
    if (bus->rk) {
        rd_kafka_resp_err_t e = rd_kafka_flush(bus->rk, timeout_ms > 0 ? timeout_ms : 0);
        if (e) {
            int left = rd_kafka_outq_len(bus->rk);
            char n[32];
            snprintf(n, sizeof(n), "%d", left);
            mft_warn("bus.close", "records not acknowledged at shutdown are dropped", "records", n,
                     "error_kind", "BUS_UNAVAILABLE");
            /* Their delivery reports (ERR__PURGE_*) release the pending structs. */
            rd_kafka_purge(bus->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
            rd_kafka_flush(bus->rk, 1000);
        }
    }
    if (bus->poller_started) {
        atomic_store(&bus->stop, 1);
        pthread_join(bus->poller, NULL);
    }
    for (size_t i = 0; i < sizeof(bus->topics) / sizeof(bus->topics[0]); i++)
        if (bus->topics[i])
            rd_kafka_topic_destroy(bus->topics[i]);
    if (bus->rk) {
        rd_kafka_poll(bus->rk, 0);
        rd_kafka_destroy(bus->rk);
    }
    free(bus->source);
    free(bus);
}

/* Adds the CloudEvents headers. Returns the list or NULL on failure. */
static rd_kafka_headers_t *ce_headers(const struct mft_bus *bus, const char *ce_type,
                                      const char *id)
{
    char now[32];
    mft_rfc3339_ms(mft_now_ms(), now, sizeof(now));
    const char *const h[][2] = {
        {"ce_specversion", "1.0"},  {"ce_id", id},    {"ce_type", ce_type},
        {"ce_source", bus->source}, {"ce_time", now}, {"content-type", "application/protobuf"},
    };
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(8);
    for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++) {
        if (rd_kafka_header_add(hdrs, h[i][0], -1, h[i][1], (ssize_t)strlen(h[i][1]))) {
            rd_kafka_headers_destroy(hdrs);
            return NULL;
        }
    }
    return hdrs;
}

static struct timespec deadline_after(int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static int past(const struct timespec *dl)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > dl->tv_sec || (now.tv_sec == dl->tv_sec && now.tv_nsec >= dl->tv_nsec);
}

int mft_bus_publish(struct mft_bus *bus, const char *topic, const char *key, const char *ce_type,
                    const char *ce_id, const void *value, size_t len, int timeout_ms,
                    char *ce_id_out, struct mft_err *err)
{
    struct pending *p = NULL;
    rd_kafka_headers_t *hdrs = NULL;
    char id[37];
    int rc = -1;

    if (!bus || !topic || !ce_type || (!value && len > 0)) {
        mft_err_set(err, MFT_E_INTERNAL, "mft_bus_publish: missing argument");
        goto out;
    }
    if (ce_id) {
        if (!*ce_id || strlen(ce_id) >= sizeof(id)) {
            mft_err_set(err, MFT_E_INTERNAL, "mft_bus_publish: ce_id must be 1..36 characters");
            goto out;
        }
        memcpy(id, ce_id, strlen(ce_id) + 1);
    } else {
        mft_uuid4(id);
    }
    if (ce_id_out)
        memcpy(ce_id_out, id, strlen(id) + 1);
    struct timespec dl = deadline_after(timeout_ms > 0 ? timeout_ms : 0);

    if (!(p = pending_new()) || !(hdrs = ce_headers(bus, ce_type, id))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    for (;;) {
        rd_kafka_resp_err_t e = rd_kafka_producev(
            bus->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(key, key ? strlen(key) : 0), RD_KAFKA_V_VALUE((void *)value, len),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(p), RD_KAFKA_V_END);
        if (!e) {
            hdrs = NULL; /* owned by the record now */
            break;
        }
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || past(&dl)) {
            mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
            mft_err_detail(err, "produce to %s: %s", topic, rd_kafka_err2str(e));
            if (e == RD_KAFKA_RESP_ERR__FATAL) {
                char fatal[512];
                rd_kafka_fatal_error(bus->rk, fatal, sizeof(fatal));
                mft_err_detail(err, "%s", fatal);
            }
            /* The record was not queued: no delivery report will drop its ref. */
            pending_unref(p);
            goto out;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    pthread_mutex_lock(&p->mu);
    int w = 0;
    while (!p->done && w != ETIMEDOUT)
        w = pthread_cond_timedwait(&p->cv, &p->mu, &dl);
    int done = p->done;
    rd_kafka_resp_err_t derr = p->err;
    pthread_mutex_unlock(&p->mu);

    if (!done) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
        mft_err_detail(err, "no acknowledgement from Kafka for %s within %d ms", topic, timeout_ms);
        goto out;
    }
    if (derr) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
        mft_err_detail(err, "delivery to %s failed: %s (%s)", topic, rd_kafka_err2str(derr),
                       rd_kafka_err2name(derr));
        goto out;
    }
    rc = 0;
out:
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    pending_unref(p);
    return rc;
}

int mft_bus_ping(struct mft_bus *bus, int timeout_ms, struct mft_err *err)
{
    const struct rd_kafka_metadata *md = NULL;
    if (!bus)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_bus_ping: no bus");
    rd_kafka_resp_err_t e = rd_kafka_metadata(bus->rk, 0, NULL, &md, timeout_ms);
    int rc = -1;
    if (e) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
        mft_err_detail(err, "metadata request: %s", rd_kafka_err2str(e));
    } else if (md->broker_cnt < 1) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
        mft_err_detail(err, "metadata lists no broker");
    } else {
        rc = 0;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    return rc;
}

/* --- consumer ------------------------------------------------------------ */

int mft_bus_consumer_open(const char *brokers, const char *topic, const char *group_id,
                          struct mft_bus_consumer **out, struct mft_err *err)
{
    struct mft_bus_consumer *c = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *tl = NULL;
    char errstr[512], group[64];
    int rc = -1;

    *out = NULL;
    if (!brokers || !*brokers || !topic || !*topic) {
        mft_err_set(err, MFT_E_CONFIG, "Kafka brokers and topic are required");
        goto out;
    }
    int named = group_id != NULL;
    if (!group_id) {
        char u[37];
        mft_uuid4(u);
        snprintf(group, sizeof(group), "mft-%s", u);
        group_id = group;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    conf = rd_kafka_conf_new();
    if (conf_common(conf, brokers, err) != 0)
        goto out;
    /* A named group is a service's: its offsets advance only past records
     * it has finished (mft_bus_consumer_done), committed every second. */
    int manual = named;
    /* A fetch that finds nothing waits this long; librdkafka's 500 ms default
     * became latency on every request a service consumes (the embedded broker
     * does not answer a waiting fetch early when a record arrives). */
    long fetch_wait = 10;
    char fetch_s[16];
    if (mft_cfg_long(bus_vars, "MFT_KAFKA_FETCH_WAIT_MS", &fetch_wait) != 0 || fetch_wait < 1 ||
        fetch_wait > 10000) {
        mft_err_set(err, MFT_E_CONFIG, "MFT_KAFKA_FETCH_WAIT_MS must be 1..10000");
        goto out;
    }
    snprintf(fetch_s, sizeof(fetch_s), "%ld", fetch_wait);
    if (rd_kafka_conf_set(conf, "fetch.wait.max.ms", fetch_s, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "group.id", group_id, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr)) ||
        (manual &&
         (rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", errstr, sizeof(errstr)) ||
          rd_kafka_conf_set(conf, "auto.commit.interval.ms", "1000", errstr, sizeof(errstr))))) {
        mft_err_set(err, MFT_E_CONFIG, "invalid Kafka consumer setting");
        mft_err_detail(err, "%s", errstr);
        goto out;
    }
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!c->rk) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, "cannot create the Kafka consumer");
        mft_err_detail(err, "%s", errstr);
        goto out;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(c->rk);
    tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, tl);
    if (e) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
        mft_err_detail(err, "subscribe %s: %s", topic, rd_kafka_err2str(e));
        goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    if (tl)
        rd_kafka_topic_partition_list_destroy(tl);
    if (conf)
        rd_kafka_conf_destroy(conf);
    mft_bus_consumer_close(c);
    return rc;
}

int mft_bus_consumer_open_all(const char *brokers, const char *topic, struct mft_bus_consumer **out,
                              struct mft_err *err)
{
    struct mft_bus_consumer *c = NULL;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_partition_list_t *tl = NULL;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = NULL;
    char errstr[512], group[64], u[37];
    int rc = -1;

    *out = NULL;
    if (!brokers || !*brokers || !topic || !*topic) {
        mft_err_set(err, MFT_E_CONFIG, "Kafka brokers and topic are required");
        goto out;
    }
    if (!(c = calloc(1, sizeof(*c)))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    mft_uuid4(u);
    snprintf(group, sizeof(group), "mft-read-%s", u); /* never joined: offsets are assigned */
    conf = rd_kafka_conf_new();
    if (conf_common(conf, brokers, err) != 0)
        goto out;
    if (rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr)) ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr))) {
        mft_err_set(err, MFT_E_CONFIG, "invalid Kafka consumer setting");
        mft_err_detail(err, "%s", errstr);
        goto out;
    }
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!c->rk) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, "cannot create the Kafka consumer");
        mft_err_detail(err, "%s", errstr);
        goto out;
    }
    conf = NULL;
    rd_kafka_poll_set_consumer(c->rk);
    rkt = rd_kafka_topic_new(c->rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(c->rk, 0, rkt, &md, 5000);
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
        mft_err_detail(err, "metadata for %s: %s", topic,
                       rd_kafka_err2str(e ? e : md->topics[0].err));
        goto out;
    }
    tl = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(tl, topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_BEGINNING;
    c->n_partitions = md->topics[0].partition_cnt;
    if ((e = rd_kafka_assign(c->rk, tl)) != 0) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
        mft_err_detail(err, "assign %s: %s", topic, rd_kafka_err2str(e));
        goto out;
    }
    *out = c;
    c = NULL;
    rc = 0;
out:
    if (md)
        rd_kafka_metadata_destroy(md);
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (tl)
        rd_kafka_topic_partition_list_destroy(tl);
    if (conf)
        rd_kafka_conf_destroy(conf);
    mft_bus_consumer_close(c);
    return rc;
}

static char *dup_bytes(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* Copies m into rec. Returns 0 or -1 (out of memory; rec partly filled). */
static int record_fill(const rd_kafka_message_t *m, struct mft_bus_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->partition = m->partition;
    rec->offset = m->offset;
    rd_kafka_timestamp_type_t tt;
    long long ts = rd_kafka_message_timestamp(m, &tt);
    rec->timestamp_ms = ts > 0 ? ts : 0;
    rec->polled_ms = mft_now_ms();
    rec->topic = strdup(rd_kafka_topic_name(m->rkt));
    rec->key = m->key ? dup_bytes(m->key, m->key_len) : NULL;
    rec->value = (unsigned char *)dup_bytes(m->payload, m->payload ? m->len : 0);
    rec->value_len = m->payload ? m->len : 0;
    if (!rec->topic || (m->key && !rec->key) || !rec->value)
        return -1;
    rd_kafka_headers_t *hdrs = NULL;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *name;
        const void *val;
        size_t size;
        for (size_t i = 0;
             rec->n_headers < 16 && rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == 0;
             i++) {
            char *n = strdup(name), *v = dup_bytes(val, val ? size : 0);
            if (!n || !v) {
                free(n);
                free(v);
                return -1;
            }
            rec->headers[rec->n_headers][0] = n;
            rec->headers[rec->n_headers][1] = v;
            rec->n_headers++;
        }
    }
    return 0;
}

int mft_bus_consumer_poll(struct mft_bus_consumer *c, int timeout_ms, struct mft_bus_record *rec,
                          struct mft_err *err)
{
    if (!c || !rec)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_bus_consumer_poll: missing argument");
    memset(rec, 0, sizeof(*rec));
    struct timespec dl = deadline_after(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = (long)(dl.tv_sec - now.tv_sec) * 1000L + (dl.tv_nsec - now.tv_nsec) / 1000000L;
        if (left < 0)
            left = 0;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, (int)left);
        if (!m)
            return 0;
        if (!m->err) {
            int r = record_fill(m, rec);
            rd_kafka_message_destroy(m);
            if (r != 0) {
                mft_bus_record_free(rec);
                return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            }
            return 1;
        }
        rd_kafka_resp_err_t e = m->err;
        char what[512];
        snprintf(what, sizeof(what), "%s", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
        if (e == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (c->n_partitions > 0 && ++c->n_eof >= c->n_partitions)
                return 0; /* read-all mode: every partition is at its end */
        } else if (e == RD_KAFKA_RESP_ERR__FATAL || e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                   e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
                   e == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED) {
            mft_err_set(err, MFT_E_BUS_UNAVAILABLE, NULL);
            return mft_err_detail(err, "consume: %s (%s)", what, rd_kafka_err2name(e));
        } else {
            mft_debug("bus.consume", what, "error", rd_kafka_err2name(e));
        }
        if (past(&dl))
            return 0;
    }
}

int mft_bus_consumer_done(struct mft_bus_consumer *c, const struct mft_bus_record *rec,
                          struct mft_err *err)
{
    if (!c || !rec || !rec->topic)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_bus_consumer_done: missing argument");
    rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(tl, rec->topic, rec->partition)->offset = rec->offset + 1;
    rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, tl);
    rd_kafka_topic_partition_list_destroy(tl);
    if (e) {
        mft_err_set(err, MFT_E_BUS_UNAVAILABLE, "cannot store the consumer offset");
        return mft_err_detail(err, "%s [%d] @%lld: %s", rec->topic, rec->partition, rec->offset + 1,
                              rd_kafka_err2str(e));
    }
    return 0;
}

void mft_bus_record_free(struct mft_bus_record *rec)
{
    if (!rec)
        return;
    free(rec->topic);
    free(rec->key);
    free(rec->value);
    for (size_t i = 0; i < rec->n_headers && i < 16; i++) {
        free(rec->headers[i][0]);
        free(rec->headers[i][1]);
    }
    memset(rec, 0, sizeof(*rec));
}

const char *mft_bus_record_header(const struct mft_bus_record *rec, const char *name)
{
    if (!rec || !name)
        return NULL;
    for (size_t i = 0; i < rec->n_headers && i < 16; i++)
        if (rec->headers[i][0] && strcmp(rec->headers[i][0], name) == 0)
            return rec->headers[i][1];
    return NULL;
}

void mft_bus_consumer_close(struct mft_bus_consumer *c)
{
    if (!c)
        return;
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    free(c);
}
