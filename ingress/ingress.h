/*
 * ingress — the AS2 receiver service. main.c wires configuration, the
 * dependencies and signals; receive.c handles each HTTP request (AS2 message
 * in, MDN out); events.c builds and publishes the service's events.
 */
#ifndef INGRESS_H
#define INGRESS_H

#include "mft_as2.h"
#include "mft_bus.h"
#include "mft_err.h"
#include "mft_payload.h"
#include "mft_registry.h"
#include "mft_store.h"
#include "mft_tlssrv.h"

#include <pthread.h>
#include <stdatomic.h>

struct ingress {
    struct mft_store *store;
    struct mft_bus *bus;
    struct mft_payload_store *payloads;
    struct mft_tlssrv *tls;
    pthread_mutex_t reg_lock;
    struct mft_registry *reg; /* current snapshot; take with ingress_registry() */
    unsigned long long max_body;
    unsigned long long max_inflated;
    unsigned long long spill_threshold; /* see mft_as2_request.spill_threshold */
    long dup_ttl_s;
    int bus_timeout_ms;
    int keep_raw;
    char hostname[128];
    atomic_int inflight;
    atomic_int draining;
};

/* Returns a reference on the current registry snapshot (unref when done), or NULL. */
struct mft_registry *ingress_registry(struct ingress *in);

/* --- receive.c: libmicrohttpd callbacks ---------------------------------- */

/* MHD access handler for the AS2 endpoint (cls = struct ingress *). */
enum MHD_Result;
struct MHD_Connection;
enum MHD_Result receive_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls);

/* MHD request-completed callback: frees the request context. */
void receive_completed(void *cls, struct MHD_Connection *conn, void **con_cls, int toe);

/* MHD connection notification: sets up mutual TLS and reports failed handshakes. */
void receive_connection(void *cls, struct MHD_Connection *conn, void **socket_context, int toe);

/* --- events.c ------------------------------------------------------------ */

struct rejection {
    const char *stage; /* "tls_handshake" | "http" | "as2" */
    const char *peer_address, *sni, *station_id, *partner_id;
    const char *as2_from, *as2_to, *as2_message_id;
    unsigned http_status;
    const char *mdn_disposition;
    const struct mft_tls_facts *tls; /* the handshake's facts; NULL for plain HTTP */
    int tls_failed;                  /* stage tls_handshake: tls is complete, sent as .tls */
    X509 *peer_cert;
};

/* Publishes a ConnectionRejected event on mft.status.v1, logs it and counts it.
 * Never fails the caller: a bus failure is logged. */
void events_rejected(struct ingress *in, const struct rejection *r, const struct mft_err *err);

struct received {
    const char *uuid, *as2_message_id, *as2_from, *as2_to;
    const struct mft_station *station;
    const struct mft_partner *partner;
    const struct mft_as2_result *res;
    const struct mft_payload_ref *refs; /* one per payload */
    const char *mdn_mode, *mdn_disposition;
    int mdn_signed;
    const char *peer_address;
    const struct mft_tls_facts *tls;
    X509 *peer_cert;
    long long received_ms;
};

/* Publishes MessageReceived on mft.inbound.v1 and waits for the broker's ack.
 * Returns 0 or -1 with MFT_E_BUS_UNAVAILABLE. */
int events_received(struct ingress *in, const struct received *m, struct mft_err *err);

#endif
