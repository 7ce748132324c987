/*
 * mft-devbroker — the embedded Kafka broker for local runs and CI.
 *
 * Starts librdkafka's in-memory mock cluster (one broker, listening on
 * 127.0.0.1 on an ephemeral port), pre-creates the four mft topics, writes the
 * bootstrap address to MFT_DEVBROKER_FILE (temp file + rename, so readers
 * never see half an address) and to stdout, then idles until SIGINT/SIGTERM,
 * when it removes the file and exits 0.
 * Any Kafka client (our mft_bus, kcat) can produce and consume against it;
 * nothing is persisted. Single-threaded apart from librdkafka's own threads;
 * the signal handler only sets a flag.
 */
#include "mft_bus.h"
#include "mft_cfg.h"
#include "mft_log.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const struct mft_cfg_var cfg_vars[] = {
    {"MFT_DEVBROKER_FILE", "./.run/devbroker.addr",
     "file that receives the bootstrap address (host:port)"},
    {"MFT_DEVBROKER_PARTITIONS", "3", "partitions of each pre-created topic"},
    {"MFT_LOG_LEVEL", "info", "debug | info | warn | error"},
    {NULL, NULL, NULL},
};

static const char *const topics[] = {MFT_TOPIC_INBOUND, MFT_TOPIC_OUTBOUND, MFT_TOPIC_STATUS,
                                     MFT_TOPIC_CERTS};

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* Creates the parent directory of path (one level) when it is missing. */
static int ensure_parent_dir(const char *path)
{
    char dir[4096];
    int n = snprintf(dir, sizeof(dir), "%s", path);
    if (n < 0 || (size_t)n >= sizeof(dir))
        return -1;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}

/* Writes "addr\n" to path via path.tmp + rename. Returns 0 or -1. */
static int write_addr_file(const char *path, const char *addr)
{
    char tmp[4096];
    FILE *f = NULL;
    int rc = -1;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        goto out;
    if (ensure_parent_dir(path) != 0)
        goto out;
    f = fopen(tmp, "w");
    if (!f)
        goto out;
    if (fprintf(f, "%s\n", addr) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0)
        goto out;
    if (fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0)
        goto out;
    rc = 0;
out:
    if (f)
        fclose(f);
    if (rc != 0)
        unlink(tmp);
    return rc;
}

int main(int argc, char **argv)
{
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    char errstr[512];
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            mft_cfg_usage(stdout,
                          "usage: mft-devbroker\n\n"
                          "Runs an in-memory Kafka broker (librdkafka mock cluster) on 127.0.0.1\n"
                          "with the topics mft.inbound.v1, mft.outbound.v1, mft.status.v1 and\n"
                          "mft.certs.v1, prints its bootstrap address and writes it to\n"
                          "MFT_DEVBROKER_FILE. Stops on SIGINT or SIGTERM. Nothing is persisted.",
                          cfg_vars);
            return 0;
        }
        fprintf(stderr, "mft-devbroker: unknown argument %s (try --help)\n", argv[i]);
        return 2;
    }
    mft_log_init("devbroker");

    long partitions = 0;
    if (mft_cfg_long(cfg_vars, "MFT_DEVBROKER_PARTITIONS", &partitions) != 0 || partitions < 1 ||
        partitions > 1000)
        mft_fatal("config.invalid", "MFT_DEVBROKER_PARTITIONS must be 1..1000");
    const char *addr_file = mft_cfg_get(cfg_vars, "MFT_DEVBROKER_FILE");

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* A plain producer handle owns the mock cluster; it never produces. */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        mft_error("devbroker.config", errstr);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        mft_error("devbroker.start", errstr);
        goto out;
    }
    mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        mft_error("devbroker.start", "rd_kafka_mock_cluster_new failed");
        goto out;
    }
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, topics[i], (int)partitions, 1);
        if (e) {
            mft_error("devbroker.topic", rd_kafka_err2str(e), "topic", topics[i]);
            goto out;
        }
    }
    const char *addr = rd_kafka_mock_cluster_bootstraps(mc);
    if (!addr || !*addr) {
        mft_error("devbroker.start", "mock cluster has no bootstrap address");
        goto out;
    }
    if (write_addr_file(addr_file, addr) != 0) {
        mft_error("devbroker.addr_file", strerror(errno), "file", addr_file);
        goto out;
    }
    printf("%s\n", addr);
    fflush(stdout);
    mft_info("devbroker.ready", "embedded Kafka broker listening", "brokers", addr, "file",
             addr_file);

    while (!stop_flag) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    mft_info("devbroker.stop", "shutting down");
    unlink(addr_file); /* a stale address would point clients at a closed port */
    rc = 0;
out:
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk)
        rd_kafka_destroy(rk);
    return rc;
}
