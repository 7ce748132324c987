/*
 * accept.c — several SendRequested records accepted at once.
 *
 * Accepting one record costs a Redis claim, the payload's fsyncs, the queued
 * record and the wait for Kafka's acknowledgement of `queued`: about 7 ms,
 * mostly waiting. One record at a time capped egress near 120 requests/s and
 * made requests queue behind each other. Here the consumer thread hands the
 * records it polls to MFT_EGRESS_ACCEPTORS threads (send_accept is
 * thread-safe) and keeps them in a ring in poll order; a record's offset is
 * given to the consumer only when it and every record polled before it are
 * accepted, so the committed offset never passes unfinished work
 * (at-least-once: a record accepted but not yet committed when egress stops
 * is delivered again, and its request id makes the repeat a no-op).
 *
 * A record whose acceptance fails because Redis, Kafka or the payload store is
 * down is retried by its thread every half second, as before; on stop, what is
 * unfinished is left uncommitted.
 */
#include "egress.h"

#include "mft_log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RING 64 /* records in flight at most */

enum slot_state { SLOT_WAITING, SLOT_RUNNING, SLOT_DONE };

struct accept_pool {
    struct egress *eg;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a record to take, or stopping */
    pthread_cond_t done; /* a record finished */
    struct mft_bus_record recs[RING];
    enum slot_state state[RING];
    unsigned long long head, next, tail; /* in flight: [head, tail); next to take: next */
    atomic_int stopping;
    pthread_t *threads;
    size_t n_threads;
};

static void *acceptor(void *arg)
{
    struct accept_pool *ap = arg;
    for (;;) {
        pthread_mutex_lock(&ap->mu);
        while (!ap->stopping && ap->next == ap->tail)
            pthread_cond_wait(&ap->work, &ap->mu);
        if (ap->stopping) {
            pthread_mutex_unlock(&ap->mu);
            return NULL;
        }
        size_t i = (size_t)(ap->next++ % RING);
        ap->state[i] = SLOT_RUNNING;
        pthread_mutex_unlock(&ap->mu);

        int ok = 0;
        while (!(ok = send_accept(ap->eg, &ap->recs[i]) == 0) && !atomic_load(&ap->stopping))
            usleep(500 * 1000); /* Redis, Kafka or the payload store down: same record again */

        pthread_mutex_lock(&ap->mu);
        if (ok)
            ap->state[i] = SLOT_DONE;
        pthread_cond_broadcast(&ap->done);
        pthread_mutex_unlock(&ap->mu);
    }
}

int accept_pool_start(struct egress *eg, size_t n_threads, struct accept_pool **out)
{
    struct accept_pool *ap = calloc(1, sizeof(*ap));
    if (!ap || !(ap->threads = calloc(n_threads, sizeof(*ap->threads)))) {
        free(ap);
        return -1;
    }
    ap->eg = eg;
    pthread_mutex_init(&ap->mu, NULL);
    pthread_cond_init(&ap->work, NULL);
    pthread_cond_init(&ap->done, NULL);
    for (; ap->n_threads < n_threads; ap->n_threads++)
        if (pthread_create(&ap->threads[ap->n_threads], NULL, acceptor, ap) != 0)
            break;
    *out = ap;
    return ap->n_threads == n_threads ? 0 : -1;
}

int accept_pool_full(struct accept_pool *ap)
{
    pthread_mutex_lock(&ap->mu);
    int full = ap->tail - ap->head >= RING;
    pthread_mutex_unlock(&ap->mu);
    return full;
}

void accept_pool_push(struct accept_pool *ap, struct mft_bus_record *rec)
{
    pthread_mutex_lock(&ap->mu);
    size_t i = (size_t)(ap->tail % RING);
    ap->recs[i] = *rec; /* the pool owns it now */
    ap->state[i] = SLOT_WAITING;
    ap->tail++;
    pthread_cond_signal(&ap->work);
    pthread_mutex_unlock(&ap->mu);
    memset(rec, 0, sizeof(*rec));
}

size_t accept_pool_commit(struct accept_pool *ap, struct mft_bus_consumer *c, int wait_ms)
{
    pthread_mutex_lock(&ap->mu);
    if (wait_ms > 0 && ap->head < ap->tail && ap->state[ap->head % RING] != SLOT_DONE) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
        ts.tv_sec += wait_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&ap->done, &ap->mu, &ts);
    }
    while (ap->head < ap->tail && ap->state[ap->head % RING] == SLOT_DONE) {
        struct mft_bus_record *rec = &ap->recs[ap->head % RING];
        struct mft_err err;
        mft_err_clear(&err);
        if (mft_bus_consumer_done(c, rec, &err) < 0)
            mft_error("bus.commit_failed", err.message, "detail", err.detail);
        mft_bus_record_free(rec);
        ap->head++;
    }
    size_t n = (size_t)(ap->tail - ap->head);
    pthread_mutex_unlock(&ap->mu);
    return n;
}

void accept_pool_stop(struct accept_pool *ap, struct mft_bus_consumer *c)
{
    if (!ap)
        return;
    pthread_mutex_lock(&ap->mu);
    ap->stopping = 1;
    pthread_cond_broadcast(&ap->work);
    pthread_mutex_unlock(&ap->mu);
    for (size_t i = 0; i < ap->n_threads; i++) /* records being accepted are finished first */
        pthread_join(ap->threads[i], NULL);
    if (c)
        accept_pool_commit(ap, c, 0);
    for (unsigned long long k = ap->head; k < ap->tail; k++) /* unfinished: redelivered later */
        mft_bus_record_free(&ap->recs[k % RING]);
    pthread_cond_destroy(&ap->work);
    pthread_cond_destroy(&ap->done);
    pthread_mutex_destroy(&ap->mu);
    free(ap->threads);
    free(ap);
}
