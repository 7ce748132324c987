/*
 * mft_ops — the ops port (libmicrohttpd, plain HTTP, its own internal thread)
 * and a small process-wide metrics registry: a fixed table of series guarded by
 * one mutex, rendered in the Prometheus text format on /metrics.
 */
#include "mft_ops.h"
#include "mft_log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_METRICS 32
#define MAX_SERIES 512

struct metric {
    char name[96], type[16], help[200];
};
struct series {
    int metric;
    char labels[256];
    double value;
};

static pthread_mutex_t mlock = PTHREAD_MUTEX_INITIALIZER;
static struct metric metrics[MAX_METRICS];
static size_t n_metrics;
static struct series series[MAX_SERIES];
static size_t n_series;

struct mft_ops {
    struct MHD_Daemon *d;
    mft_ops_ready_fn ready;
    void *arg;
};

void mft_metric_declare(const char *name, const char *type, const char *help)
{
    pthread_mutex_lock(&mlock);
    for (size_t i = 0; i < n_metrics; i++)
        if (strcmp(metrics[i].name, name) == 0)
            goto out;
    if (n_metrics < MAX_METRICS) {
        snprintf(metrics[n_metrics].name, sizeof(metrics[0].name), "%s", name);
        snprintf(metrics[n_metrics].type, sizeof(metrics[0].type), "%s", type);
        snprintf(metrics[n_metrics].help, sizeof(metrics[0].help), "%s", help);
        n_metrics++;
    }
out:
    pthread_mutex_unlock(&mlock);
}

static void metric_update(const char *name, const char *labels, double v, int set)
{
    pthread_mutex_lock(&mlock);
    int m = -1;
    for (size_t i = 0; i < n_metrics; i++)
        if (strcmp(metrics[i].name, name) == 0)
            m = (int)i;
    if (m < 0)
        goto out;
    for (size_t i = 0; i < n_series; i++) {
        if (series[i].metric == m && strcmp(series[i].labels, labels ? labels : "") == 0) {
            series[i].value = set ? v : series[i].value + v;
            goto out;
        }
    }
    if (n_series < MAX_SERIES) {
        series[n_series].metric = m;
        snprintf(series[n_series].labels, sizeof(series[0].labels), "%s", labels ? labels : "");
        series[n_series].value = v;
        n_series++;
    }
out:
    pthread_mutex_unlock(&mlock);
}

void mft_metric_add(const char *name, const char *labels, double v)
{
    metric_update(name, labels, v, 0);
}

void mft_metric_set(const char *name, const char *labels, double v)
{
    metric_update(name, labels, v, 1);
}

char *mft_metrics_render(void)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return NULL;
    pthread_mutex_lock(&mlock);
    for (size_t m = 0; m < n_metrics; m++) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", metrics[m].name, metrics[m].help,
                metrics[m].name, metrics[m].type);
        for (size_t i = 0; i < n_series; i++) {
            if (series[i].metric != (int)m)
                continue;
            if (series[i].labels[0])
                fprintf(f, "%s{%s} %.17g\n", metrics[m].name, series[i].labels, series[i].value);
            else
                fprintf(f, "%s %.17g\n", metrics[m].name, series[i].value);
        }
    }
    pthread_mutex_unlock(&mlock);
    fclose(f);
    return buf;
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *ctype,
                             char *body, int owned)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", ctype);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **con_cls)
{
    struct mft_ops *ops = cls;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply(conn, 405, "text/plain", "method not allowed\n", 0);
    if (strcmp(url, "/livez") == 0)
        return reply(conn, 200, "text/plain", "ok\n", 0);
    if (strcmp(url, "/readyz") == 0) {
        char why[512] = "";
        if (ops->ready && ops->ready(ops->arg, why, sizeof(why)) != 0) {
            char body[600];
            snprintf(body, sizeof(body), "not ready: %s\n", why);
            return reply(conn, 503, "text/plain", body, 0);
        }
        return reply(conn, 200, "text/plain", "ready\n", 0);
    }
    if (strcmp(url, "/metrics") == 0) {
        char *text = mft_metrics_render();
        if (!text)
            return reply(conn, 500, "text/plain", "out of memory\n", 0);
        return reply(conn, 200, "text/plain; version=0.0.4", text, 1);
    }
    return reply(conn, 404, "text/plain", "not found\n", 0);
}

int mft_ops_parse_addr(const char *addr, struct sockaddr_in *out)
{
    char host[64] = "0.0.0.0";
    const char *colon = strrchr(addr, ':');
    char *end;
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    if (!colon)
        return -1;
    if (colon != addr) {
        size_t n = (size_t)(colon - addr);
        if (n >= sizeof(host))
            return -1;
        memcpy(host, addr, n);
        host[n] = '\0';
        if (strcmp(host, "localhost") == 0)
            snprintf(host, sizeof(host), "127.0.0.1");
    }
    long port = strtol(colon + 1, &end, 10);
    /* strtol alone would take "" (port 0), " 80" and "+80" */
    if (colon[1] < '0' || colon[1] > '9' || *end || port < 0 || port > 65535 ||
        inet_pton(AF_INET, host, &out->sin_addr) != 1)
        return -1;
    out->sin_port = htons((unsigned short)port);
    return 0;
}

int mft_ops_start(const char *addr, mft_ops_ready_fn ready, void *arg, struct mft_ops **out,
                  struct mft_err *err)
{
    struct sockaddr_in sa;
    if (mft_ops_parse_addr(addr, &sa) < 0)
        return mft_err_set(err, MFT_E_CONFIG, "invalid ops address %s", addr);
    struct mft_ops *ops = calloc(1, sizeof(*ops));
    if (!ops)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    ops->ready = ready;
    ops->arg = arg;
    ops->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL_LINUX_ONLY, 0, NULL,
                              NULL, handle, ops, MHD_OPTION_SOCK_ADDR, &sa,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    if (!ops->d) {
        free(ops);
        return mft_err_set(err, MFT_E_CONFIG, "cannot listen on ops address %s", addr);
    }
    *out = ops;
    return 0;
}

void mft_ops_stop(struct mft_ops *ops)
{
    if (!ops)
        return;
    MHD_stop_daemon(ops->d);
    free(ops);
}
