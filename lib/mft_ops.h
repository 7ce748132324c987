/*
 * mft_ops — every service's plain-HTTP operations port (kubelet probes carry no
 * client certificate): /livez (alive; never checks dependencies), /readyz
 * (the service's readiness callback: Redis and Kafka reachable, not draining)
 * and /metrics (Prometheus text format of the counters below).
 *
 * Counters are process-wide, declared once with their help text (docs/metrics.md
 * lists every name), and updated from any thread.
 */
#ifndef MFT_OPS_H
#define MFT_OPS_H

#include "mft_err.h"

#include <stddef.h>

struct mft_ops;

/* Returns 0 when ready; otherwise writes the reason into why. */
typedef int (*mft_ops_ready_fn)(void *arg, char *why, size_t whylen);

/* Starts the ops server on addr ("127.0.0.1:9101" or ":9101"). Returns 0 or -1. */
int mft_ops_start(const char *addr, mft_ops_ready_fn ready, void *arg, struct mft_ops **out,
                  struct mft_err *err);
void mft_ops_stop(struct mft_ops *ops); /* accepts NULL */

/* Declares a metric (type "counter" or "gauge"); call at start-up. */
void mft_metric_declare(const char *name, const char *type, const char *help);

/* Adds v to the series name{labels} (labels: `kind="X",partner="p"` or ""). */
void mft_metric_add(const char *name, const char *labels, double v);
#define mft_metric_inc(name, labels) mft_metric_add(name, labels, 1.0)
/* Sets a gauge series. */
void mft_metric_set(const char *name, const char *labels, double v);

/* Writes the Prometheus text of all series into a malloc'd string (caller frees). */
char *mft_metrics_render(void);

/* Parses "host:port" / ":port" into a sockaddr_in. Returns 0 or -1. */
struct sockaddr_in;
int mft_ops_parse_addr(const char *addr, struct sockaddr_in *out);

#endif
