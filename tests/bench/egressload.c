/*
 * mft-egressload — the load generator of `./mft bench egress`. Publishes N
 * SendRequested events (inline payload, key = partner id) on mft.outbound.v1,
 * exactly as tools/ctl_send.c builds them, from several threads sharing one
 * producer (mft_bus_publish waits for the broker's acknowledgement, so one
 * thread alone would be limited by the ack latency). Either as fast as the
 * threads go (a burst) or paced at --rate messages per second (message i is
 * due at start + i / rate). Request ids are "<prefix>-<i>"; each one's
 * publish time (just before mft_bus_publish, CLOCK_REALTIME, microseconds)
 * is remembered.
 *
 * A consumer thread reads mft.status.v1 from the beginning in a fresh group
 * and, for this run's request ids, keeps the time of `queued`, of the first
 * `sending` and of the final `delivered` / `failed` (DeliveryUpdated.time,
 * set by egress from the same clock, milliseconds), and when the consumer
 * saw the final record. It stops once every published request has a final
 * state, or --timeout seconds after the last publish.
 *
 * Prints one JSON object: sent, publish_failed, delivered, failed, missing,
 * mdn_signed and resent (of the delivered: a signed MDN; more than one attempt),
 * seconds (first publish -> last final state), rate (delivered / seconds),
 * publish_seconds and publish_rate, latency percentiles publish -> delivered
 * (p50_ms p90_ms p99_ms max_ms, from the event times; obs_p50_ms obs_p99_ms
 * from when the consumer saw the record), the split publish -> queued ->
 * sending -> delivered (p50 / p99 of each), the publish ack latency, and the
 * first error of a failed request.
 *
 * --window W keeps at most W requests published but not yet accepted
 * (`queued`) by egress: the embedded broker (librdkafka's mock cluster)
 * keeps only ~5 MB per partition, i.e. ~500 SendRequested of 10 KB on the one
 * partition a partner's requests go to, so an unbounded burst would lose the
 * oldest records before egress reads them.
 */
#include "mft_bus.h"
#include "mft_events.h"
#include "mft_log.h"
#include "mft_time.h"
#include "mft/v1/events.pb-c.h"

#include "loadstat.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_THREADS 64

struct opts {
    const char *brokers, *partner, *station, *payload_file, *prefix;
    long count, threads, window;
    double rate, timeout_s;
};

struct req {
    double pub_ms, ack_ms;                          /* realtime, ms with fractions */
    double queued_ms, sending_ms, final_ms, obs_ms; /* 0 = not seen */
    int published, final;                           /* final: 1 delivered, 2 failed */
};

static struct opts o;
static struct req *reqs;
static unsigned char *payload;
static size_t payload_len;
static struct mft_bus *bus;
static atomic_long next_index, n_published, n_publish_failed, n_accepted;
static atomic_int publishing_done;
static double start_ms;
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[400];

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_until(double t_ms)
{
    for (;;) {
        double d = t_ms - now_ms();
        if (d <= 0)
            return;
        struct timespec ts = {(time_t)(d / 1000),
                              (long)((d - (double)(long)(d / 1000) * 1000) * 1e6)};
        nanosleep(&ts, NULL);
    }
}

static void note_error(const char *what, const char *a, const char *b)
{
    pthread_mutex_lock(&err_lock);
    if (!first_error[0])
        snprintf(first_error, sizeof(first_error), "%s: %s %s", what, a, b);
    pthread_mutex_unlock(&err_lock);
}

/* "2024-05-01T12:34:56.789Z" -> ms since the epoch; 0 when it does not parse. */
static double parse_time(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int ms = 0;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) * 1000.0 + ms;
}

static void *publisher(void *arg)
{
    (void)arg;
    char rid[200], when[40];
    for (;;) {
        long i = atomic_fetch_add(&next_index, 1);
        if (i >= o.count)
            break;
        if (o.rate > 0)
            sleep_until(start_ms + (double)i * 1000.0 / o.rate);
        /* at most --window requests published and not yet accepted by egress */
        while (o.window > 0 && i - atomic_load(&n_accepted) >= o.window) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        snprintf(rid, sizeof(rid), "%s-%ld", o.prefix, i);
        Mft__V1__SendRequested ev = MFT__V1__SEND_REQUESTED__INIT;
        ev.request_id = rid;
        ev.station_id = (char *)o.station;
        ev.partner_id = (char *)o.partner;
        ev.filename = "bench-10k.bin";
        ev.content_type = "";
        ev.correlation_id = "bench";
        ev.inline_payload.data = payload;
        ev.inline_payload.len = payload_len;
        double t = now_ms();
        mft_rfc3339_ms((long long)t, when, sizeof(when));
        ev.time = when;
        size_t len = mft__v1__send_requested__get_packed_size(&ev);
        unsigned char *buf = malloc(len ? len : 1);
        if (!buf) {
            atomic_fetch_add(&n_publish_failed, 1);
            continue;
        }
        mft__v1__send_requested__pack(&ev, buf);
        struct mft_err err;
        mft_err_clear(&err);
        reqs[i].pub_ms = t;
        if (mft_bus_publish(bus, MFT_TOPIC_OUTBOUND, o.partner, MFT_CE_SEND_REQUESTED, NULL, buf,
                            len, 10000, NULL, &err) == 0) {
            reqs[i].ack_ms = now_ms();
            reqs[i].published = 1;
            atomic_fetch_add(&n_published, 1);
        } else {
            atomic_fetch_add(&n_publish_failed, 1);
            note_error("publish", err.message, err.detail);
        }
        free(buf);
    }
    return NULL;
}

static long index_of(const char *rid, size_t plen)
{
    if (strncmp(rid, o.prefix, plen) != 0 || rid[plen] != '-')
        return -1;
    char *end = NULL;
    errno = 0;
    long i = strtol(rid + plen + 1, &end, 10);
    if (errno || !end || *end || i < 0 || i >= o.count)
        return -1;
    return i;
}

struct consumer_result {
    long delivered, failed;
    long mdn_signed, resent; /* of the delivered: with a signed MDN, after attempt 1 */
    int error;
};

static void *consumer_main(void *arg)
{
    struct consumer_result *res = arg;
    struct mft_bus_consumer *c = NULL;
    struct mft_err err;
    mft_err_clear(&err);
    if (mft_bus_consumer_open(o.brokers, MFT_TOPIC_STATUS, NULL, &c, &err) < 0) {
        note_error("status consumer", err.message, err.detail);
        res->error = 1;
        return NULL;
    }
    size_t plen = strlen(o.prefix);
    double done_at = 0;
    for (;;) {
        long finals = res->delivered + res->failed;
        if (atomic_load(&publishing_done)) {
            if (finals >= atomic_load(&n_published))
                break;
            if (!done_at)
                done_at = now_ms();
            if (now_ms() - done_at > o.timeout_s * 1000)
                break;
        }
        struct mft_bus_record rec;
        int got = mft_bus_consumer_poll(c, 100, &rec, &err);
        if (got <= 0)
            continue;
        double seen = now_ms();
        const char *type = mft_bus_record_header(&rec, "ce_type");
        if (type && strcmp(type, MFT_CE_DELIVERY_UPDATED) == 0) {
            Mft__V1__DeliveryUpdated *ev =
                mft__v1__delivery_updated__unpack(NULL, rec.value_len, rec.value);
            long i = ev ? index_of(ev->request_id, plen) : -1;
            if (i >= 0 && !reqs[i].final) {
                struct req *r = &reqs[i];
                double t = parse_time(ev->time);
                if (!r->queued_ms && !r->sending_ms)
                    atomic_fetch_add(&n_accepted, 1);
                if (strcmp(ev->state, "queued") == 0) {
                    r->queued_ms = t ? t : 1;
                } else if (strcmp(ev->state, "sending") == 0) {
                    if (!r->sending_ms)
                        r->sending_ms = t;
                } else if (strcmp(ev->state, "delivered") == 0) {
                    r->final = 1, r->final_ms = t, r->obs_ms = seen;
                    res->delivered++;
                    res->mdn_signed += ev->mdn_signed ? 1 : 0;
                    res->resent += ev->attempt > 1 ? 1 : 0;
                } else if (strcmp(ev->state, "failed") == 0) {
                    r->final = 2, r->final_ms = t, r->obs_ms = seen;
                    res->failed++;
                    note_error("failed", ev->error ? ev->error->kind : "?",
                               ev->error ? ev->error->detail : "");
                }
            }
            if (ev)
                mft__v1__delivery_updated__free_unpacked(ev, NULL);
        }
        mft_bus_record_free(&rec);
    }
    mft_bus_consumer_close(c);
    return NULL;
}

/* Prints "name_p50_ms":..,"name_p99_ms":.. for the values that pick() gives (>= 0). */
static void print_split(const char *name, double (*pick)(const struct req *), int with_max)
{
    double *v = malloc(sizeof(double) * (size_t)(o.count ? o.count : 1));
    size_t n = 0;
    for (long i = 0; v && i < o.count; i++) {
        double x = pick(&reqs[i]);
        if (x >= 0)
            v[n++] = x;
    }
    if (v)
        bench_sort(v, n);
    printf(",\"%s_p50_ms\":%.1f,\"%s_p99_ms\":%.1f", name, v ? bench_percentile(v, n, 0.50) : 0,
           name, v ? bench_percentile(v, n, 0.99) : 0);
    if (with_max)
        printf(",\"%s_max_ms\":%.1f", name, n ? v[n - 1] : 0);
    free(v);
}

static int delivered(const struct req *r)
{
    return r->published && r->final == 1;
}
static double pick_e2e(const struct req *r)
{
    return delivered(r) ? r->final_ms - r->pub_ms : -1;
}
static double pick_obs(const struct req *r)
{
    return delivered(r) ? r->obs_ms - r->pub_ms : -1;
}
static double pick_ack(const struct req *r)
{
    return r->published ? r->ack_ms - r->pub_ms : -1;
}
static double pick_queued(const struct req *r)
{
    return delivered(r) && r->queued_ms ? r->queued_ms - r->pub_ms : -1;
}
static double pick_wait(const struct req *r)
{
    return delivered(r) && r->queued_ms && r->sending_ms ? r->sending_ms - r->queued_ms : -1;
}
static double pick_attempt(const struct req *r)
{
    return delivered(r) && r->sending_ms ? r->final_ms - r->sending_ms : -1;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: mft-egressload --partner ID --payload FILE [--station ID] [--count N]\n"
               "         [--rate MSGS_PER_S (0 = burst)] [--threads N] [--timeout S] [--prefix P]\n"
               "         [--window N (most requests published but not yet queued; 0 = no limit)]\n"
               "         [--brokers HOST:PORT (default $MFT_KAFKA_BROKERS)]\n");
}

static int parse_args(int argc, char **argv)
{
    o.brokers = getenv("MFT_KAFKA_BROKERS");
    o.station = "";
    o.count = 1000;
    o.threads = 8;
    o.timeout_s = 60;
    o.prefix = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "mft-egressload: %s needs a value\n", a);
            return -1;
        }
        i++;
        char *end = NULL;
        int ok = 1;
        if (strcmp(a, "--brokers") == 0)
            o.brokers = v;
        else if (strcmp(a, "--partner") == 0)
            o.partner = v;
        else if (strcmp(a, "--station") == 0)
            o.station = v;
        else if (strcmp(a, "--payload") == 0)
            o.payload_file = v;
        else if (strcmp(a, "--prefix") == 0)
            o.prefix = v;
        else if (strcmp(a, "--count") == 0)
            o.count = strtol(v, &end, 10), ok = !*end && o.count >= 1 && o.count <= 10000000;
        else if (strcmp(a, "--threads") == 0)
            o.threads = strtol(v, &end, 10),
            ok = !*end && o.threads >= 1 && o.threads <= MAX_THREADS;
        else if (strcmp(a, "--window") == 0)
            o.window = strtol(v, &end, 10), ok = !*end && o.window >= 0;
        else if (strcmp(a, "--rate") == 0)
            o.rate = strtod(v, &end), ok = !*end && o.rate >= 0;
        else if (strcmp(a, "--timeout") == 0)
            o.timeout_s = strtod(v, &end), ok = !*end && o.timeout_s > 0;
        else {
            fprintf(stderr, "mft-egressload: unknown option %s\n", a);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "mft-egressload: invalid value for %s: %s\n", a, v);
            return -1;
        }
    }
    if (!o.brokers || !*o.brokers || !o.partner || !o.payload_file) {
        usage(stderr);
        return -1;
    }
    return 0;
}

static int read_payload(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 1 << 16;
    payload = malloc(cap);
    size_t n;
    while (payload && (n = fread(payload + payload_len, 1, cap - payload_len, f)) > 0) {
        payload_len += n;
        if (payload_len == cap && !(payload = realloc(payload, cap *= 2)))
            break;
    }
    int bad = ferror(f) || !payload;
    fclose(f);
    return bad ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (parse_args(argc, argv) < 0)
        return 2;
    mft_log_init("egressload"); /* MFT_LOG_LEVEL=debug with MFT_KAFKA_DEBUG: librdkafka's view */
    if (read_payload(o.payload_file) < 0) {
        fprintf(stderr, "mft-egressload: cannot read %s\n", o.payload_file);
        return 1;
    }
    char uuid[37], prefix[64];
    if (!o.prefix) {
        mft_uuid4(uuid);
        snprintf(prefix, sizeof(prefix), "bench-%.8s", uuid);
        o.prefix = prefix;
    }
    if (!(reqs = calloc((size_t)o.count, sizeof(*reqs)))) {
        fprintf(stderr, "mft-egressload: out of memory\n");
        return 1;
    }
    struct mft_err err;
    mft_err_clear(&err);
    if (mft_bus_open(o.brokers, "/mft/bench/egressload", &bus, &err) < 0) {
        fprintf(stderr, "mft-egressload: %s %s\n", err.message, err.detail);
        return 1;
    }
    struct consumer_result cres = {0, 0, 0, 0, 0};
    pthread_t ct, pt[MAX_THREADS];
    if (pthread_create(&ct, NULL, consumer_main, &cres) != 0)
        return 1;
    start_ms = now_ms() + 20; /* a little ahead, so paced thread 0 is not already late */
    sleep_until(start_ms);
    long started = 0;
    for (; started < o.threads; started++)
        if (pthread_create(&pt[started], NULL, publisher, NULL) != 0)
            break;
    for (long i = 0; i < started; i++)
        pthread_join(pt[i], NULL);
    double pub_end = now_ms();
    atomic_store(&publishing_done, 1);
    pthread_join(ct, NULL);
    mft_bus_close(bus, 5000);

    double first = 0, last_pub = 0, last_final = 0;
    for (long i = 0; i < o.count; i++) {
        struct req *r = &reqs[i];
        if (!r->published)
            continue;
        if (!first || r->pub_ms < first)
            first = r->pub_ms;
        if (r->ack_ms > last_pub)
            last_pub = r->ack_ms;
        if (r->final && r->final_ms > last_final)
            last_final = r->final_ms;
    }
    long sent = atomic_load(&n_published);
    long missing = sent - cres.delivered - cres.failed;
    double secs = first && last_final > first ? (last_final - first) / 1000.0 : 0;
    double pub_secs = first && last_pub > first ? (last_pub - first) / 1000.0 : 0;
    (void)pub_end;
    printf("{\"prefix\":\"%s\",\"sent\":%ld,\"publish_failed\":%ld,\"delivered\":%ld,"
           "\"failed\":%ld,\"missing\":%ld,\"mdn_signed\":%ld,\"resent\":%ld,"
           "\"seconds\":%.3f,\"rate\":%.1f,"
           "\"publish_seconds\":%.3f,\"publish_rate\":%.1f,\"target_rate\":%.1f",
           o.prefix, sent, atomic_load(&n_publish_failed), cres.delivered, cres.failed, missing,
           cres.mdn_signed, cres.resent, secs, secs > 0 ? (double)cres.delivered / secs : 0,
           pub_secs, pub_secs > 0 ? (double)sent / pub_secs : 0, o.rate);
    {
        double *v = malloc(sizeof(double) * (size_t)o.count);
        size_t n = 0;
        for (long i = 0; v && i < o.count; i++)
            if (pick_e2e(&reqs[i]) >= 0)
                v[n++] = pick_e2e(&reqs[i]);
        if (v)
            bench_sort(v, n);
        printf(",\"p50_ms\":%.1f,\"p90_ms\":%.1f,\"p99_ms\":%.1f,\"max_ms\":%.1f",
               v ? bench_percentile(v, n, 0.50) : 0, v ? bench_percentile(v, n, 0.90) : 0,
               v ? bench_percentile(v, n, 0.99) : 0, n ? v[n - 1] : 0);
        free(v);
    }
    print_split("obs", pick_obs, 0);
    print_split("ack", pick_ack, 1);
    print_split("to_queued", pick_queued, 0);
    print_split("queued_to_sending", pick_wait, 0);
    print_split("sending_to_delivered", pick_attempt, 0);
    /* first_error: JSON-escape the few characters that matter */
    printf(",\"first_error\":\"");
    for (const char *p = first_error; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if ((unsigned char)*p < 0x20)
            putchar(' ');
        else
            putchar(*p);
    }
    printf("\"}\n");
    free(reqs);
    free(payload);
    return cres.error || missing || cres.failed || atomic_load(&n_publish_failed) ? 1 : 0;
}
