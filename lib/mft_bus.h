/*
 * mft_bus — the only module that talks to Kafka (librdkafka).
 *
 * Producer: idempotent, acks=all; every record carries the CloudEvents
 * binary-mode headers (ce_specversion "1.0", ce_id, ce_type, ce_source,
 * ce_time RFC 3339, content-type "application/protobuf"); key = partner id;
 * value = the protobuf bytes. mft_bus_publish() returns only once the broker
 * has acknowledged the record (or failed / timed out): a message counts as
 * received only then. Thread-safe: one producer shared by all threads.
 *
 * Consumer (tests, mftctl events): reads records with their headers.
 */
#ifndef MFT_BUS_H
#define MFT_BUS_H

#include "mft_err.h"

#include <stddef.h>

#define MFT_TOPIC_INBOUND "mft.inbound.v1"
#define MFT_TOPIC_OUTBOUND "mft.outbound.v1"
#define MFT_TOPIC_STATUS "mft.status.v1"
#define MFT_TOPIC_CERTS "mft.certs.v1"

struct mft_bus;

/* Creates a producer for brokers ("host:port,..."); source is the ce_source
 * ("/mft/ingress/<hostname>"). Returns 0 or -1 with MFT_E_BUS_UNAVAILABLE/CONFIG. */
int mft_bus_open(const char *brokers, const char *source, struct mft_bus **out,
                 struct mft_err *err);

/* Flushes (up to timeout_ms) and destroys; accepts NULL. */
void mft_bus_close(struct mft_bus *bus, int timeout_ms);

/*
 * Publishes one event and waits for the broker's acknowledgement, at most
 * timeout_ms. ce_id is generated (UUIDv4) when NULL; the id used is copied to
 * ce_id_out (37 bytes) when not NULL. Returns 0 when acknowledged, -1 with
 * MFT_E_BUS_UNAVAILABLE (detail = librdkafka error) otherwise.
 */
int mft_bus_publish(struct mft_bus *bus, const char *topic, const char *key, const char *ce_type,
                    const char *ce_id, const void *value, size_t len, int timeout_ms,
                    char *ce_id_out, struct mft_err *err);

/* Returns 0 when the cluster answers a metadata request within timeout_ms. */
int mft_bus_ping(struct mft_bus *bus, int timeout_ms, struct mft_err *err);

/* Fills out[37] with a random UUIDv4 string. */
void mft_uuid4(char out[37]);

/* --- consumer ------------------------------------------------------------ */

struct mft_bus_record {
    char *topic, *key;    /* malloc'd */
    unsigned char *value; /* malloc'd */
    size_t value_len;
    char *headers[16][2]; /* malloc'd name/value pairs */
    size_t n_headers;
    int partition;
    long long offset;
    long long timestamp_ms; /* the record's Kafka timestamp (producer's create time), 0 if none */
    long long polled_ms;    /* when mft_bus_consumer_poll returned it (mft_now_ms) */
};

struct mft_bus_consumer;

/* Subscribes to topic from the beginning (group_id NULL = a fresh random
 * group, auto.offset.reset=earliest). Returns 0 or -1. With a named group
 * (a service's), offsets advance only past records given to
 * mft_bus_consumer_done, so a crash re-delivers unfinished ones
 * (at-least-once); with a random group they advance as records are read. */
int mft_bus_consumer_open(const char *brokers, const char *topic, const char *group_id,
                          struct mft_bus_consumer **out, struct mft_err *err);

/* Reads every partition of topic from the beginning without joining a
 * group (no rebalance wait); poll then returns 0 once all partitions are at
 * their end. For tools and tests. Returns 0 or -1. */
int mft_bus_consumer_open_all(const char *brokers, const char *topic, struct mft_bus_consumer **out,
                              struct mft_err *err);

/* Waits up to timeout_ms for one record. Returns 1 and fills *rec (free with
 * mft_bus_record_free), 0 on timeout, -1 on error. */
int mft_bus_consumer_poll(struct mft_bus_consumer *c, int timeout_ms, struct mft_bus_record *rec,
                          struct mft_err *err);
/* Marks rec as finished: its group's committed offset may move past it
 * (committed within a second). Records of one partition must be finished in
 * order. Returns 0 or -1 (BUS_UNAVAILABLE). */
int mft_bus_consumer_done(struct mft_bus_consumer *c, const struct mft_bus_record *rec,
                          struct mft_err *err);
void mft_bus_record_free(struct mft_bus_record *rec);
const char *mft_bus_record_header(const struct mft_bus_record *rec, const char *name);
void mft_bus_consumer_close(struct mft_bus_consumer *c);

#endif
