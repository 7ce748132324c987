/*
 * egress — the AS2 sender service. main.c wires configuration, Redis, Kafka,
 * the payload store, the registry (reloaded when the configuration version
 * changes) and signals; send.c accepts SendRequested events and makes the
 * attempts: build the AS2 message, POST it with mutual TLS, read the MDN,
 * record the outcome through mft_outbox, schedule retries.
 */
#ifndef EGRESS_H
#define EGRESS_H

#include "mft_bus.h"
#include "mft_outbox.h"
#include "mft_payload.h"
#include "mft_registry.h"
#include "mft_store.h"

#include <pthread.h>
#include <stdatomic.h>

struct egress {
    struct mft_store *store;
    struct mft_bus *bus;
    struct mft_payload_store *payloads;
    struct mft_outbox outbox;
    pthread_mutex_t reg_lock;
    struct mft_registry *reg; /* current snapshot; take with egress_registry() */
    char hostname[128];
    char payload_dir[4096];
    unsigned long long max_inline;   /* largest inline payload accepted */
    unsigned long long max_response; /* largest HTTP answer read */
    long lease_extra_ms;             /* lease on an attempt beyond its HTTP timeout */
    long poll_ms;                    /* how often the schedules are read without a wake-up */
    int keepalive;                   /* keep connections to partners open between messages */
    pthread_mutex_t wake_lock;
    pthread_cond_t wake;
    unsigned long wake_gen; /* bumped by every egress_wake (under wake_lock) */
    atomic_int stopping;
    atomic_int inflight;
};

/* Returns a reference on the current registry snapshot (unref when done), or NULL. */
struct mft_registry *egress_registry(struct egress *eg);

/* Wakes one idle worker: a message became due. */
void egress_wake(struct egress *eg);

/* --- send.c -------------------------------------------------------------- */

/*
 * Accepts one record of mft.outbound.v1: decodes SendRequested, claims its
 * request id (a repeat is ignored), keeps the payload, writes the queued
 * record and publishes `queued` (or `failed` with the reason for a request
 * that can never be sent: unknown station or partner, payload missing).
 * Returns 0 when the record is finished (its offset may be committed), -1
 * when Redis, Kafka or the payload store failed (retry the same record).
 */
int send_accept(struct egress *eg, const struct mft_bus_record *rec);

/* Worker thread body: takes due attempts from the retry schedule until stopping. */
void *send_worker(void *arg);

/* Fails messages whose async MDN deadline has passed; returns how many. */
int send_expire_mdns(struct egress *eg);

/* --- accept.c: several records accepted at once, committed in poll order -- */

struct accept_pool;

/* Starts n_threads acceptors. Returns 0 or -1. */
int accept_pool_start(struct egress *eg, size_t n_threads, struct accept_pool **out);
/* Whether the pool holds as many records as it can (poll no more for now). */
int accept_pool_full(struct accept_pool *ap);
/* Hands a polled record to the pool, which owns it from now on (*rec is zeroed). */
void accept_pool_push(struct accept_pool *ap, struct mft_bus_record *rec);
/* Gives the consumer the offsets of the accepted records at the front, in poll
 * order, after waiting up to wait_ms for the first one. Returns how many
 * records are still in flight. */
size_t accept_pool_commit(struct accept_pool *ap, struct mft_bus_consumer *c, int wait_ms);
/* Stops the acceptors (a record being accepted is finished first), commits
 * what is done and drops the rest uncommitted: Kafka delivers it again. */
void accept_pool_stop(struct accept_pool *ap, struct mft_bus_consumer *c);

#endif
