/*
 * mft_outbox — the state machine of an outgoing message, shared by egress
 * (which sends and reads synchronous MDNs) and ingress (which receives
 * asynchronous MDNs): every change of state is written to the message's
 * Redis record (mft:out:<uuid>, with its schedules) and then published as a
 * DeliveryUpdated event on mft.status.v1, in that order, so the record is
 * never behind the events. The event is written into Redis with the change
 * (mft:out:events, a transactional outbox) and removed once Kafka has
 * acknowledged it; one whose publication failed is published later by
 * mft_outbox_flush, with the same ce_id, so no change is ever without its
 * event (consumers deduplicate on ce_id and order by time).
 *
 *   queued -> sending -> delivered                    (sync MDN positive, or no MDN)
 *                     -> sent -> delivered | failed   (async MDN, or its deadline)
 *                     -> retrying -> sending ...      (transport failures)
 *                     -> failed                       (permanent failures)
 *
 * Thread-safe when the store, bus and payload store are (they are).
 */
#ifndef MFT_OUTBOX_H
#define MFT_OUTBOX_H

#include "mft_bus.h"
#include "mft_err.h"
#include "mft_httpc.h"
#include "mft_payload.h"
#include "mft_registry.h"
#include "mft_store.h"

#define MFT_OUT_QUEUED "queued"
#define MFT_OUT_SENDING "sending"
#define MFT_OUT_SENT "sent" /* awaiting an asynchronous MDN */
#define MFT_OUT_DELIVERED "delivered"
#define MFT_OUT_RETRYING "retrying"
#define MFT_OUT_FAILED "failed"

struct mft_outbox {
    struct mft_store *store; /* borrowed */
    struct mft_bus *bus;     /* borrowed */
    int bus_timeout_ms;
};

/* Who a message is: copied into every event. Strings borrowed. */
struct mft_outbox_msg {
    const char *uuid, *request_id, *correlation_id, *as2_message_id, *station_id, *partner_id;
};

/* Fills *m from a record as returned by mft_store_out_get (borrowing its strings). */
void mft_outbox_msg_from_kv(struct mft_outbox_msg *m, const char *uuid, char *const *kv, size_t n);

/* One change of state. NULL / 0 members leave the record's value unchanged,
 * except the error, which is cleared on queued, sending, sent and delivered. */
struct mft_outbox_change {
    const char *state; /* required: one of MFT_OUT_* */
    unsigned attempt;  /* 1-based attempt number */
    long long next_ms; /* retrying: when the next attempt is due */
    const char *mic, *mic_alg;
    const char *mdn_disposition; /* the partner's Disposition, as written */
    int mdn_signed;              /* the MDN's signature was verified */
    long http_status;
    const struct mft_err *error;             /* retrying, failed */
    const struct mft_httpc_response *server; /* TLS facts of the partner's server */
    const struct mft_tls_facts *tls;         /* retrying / failed: the failed handshake's
                                                raw facts (DeliveryUpdated.tls); may be NULL */
    const char *const *extra;                /* more "field", "value" pairs; NULL-terminated */
    struct mft_store_out_op op;              /* schedule changes, listing, Message-ID index */
};

/* Writes the change to mft:out:<uuid> and publishes DeliveryUpdated (key =
 * partner id). A change that does not create the record (op.created_ms 0)
 * applies only while the message has not ended. Returns 0, 1 when the message
 * had ended (nothing written or published), or -1 with STORE_UNAVAILABLE /
 * BUS_UNAVAILABLE. */
int mft_outbox_change(struct mft_outbox *ob, const struct mft_outbox_msg *m,
                      const struct mft_outbox_change *c, struct mft_err *err);

/* Publishes, oldest first, the events whose publication failed when their
 * change was recorded (kept in mft:out:events with the change), up to limit
 * (0 = 100); stops at the first one Kafka does not acknowledge. A service
 * that records changes calls this periodically. Returns how many went out. */
int mft_outbox_flush(struct mft_outbox *ob, size_t limit);

/* Returns 1 for delivered and failed (nothing more will happen), else 0. */
int mft_outbox_state_final(const char *state);

/* What mft_outbox_take_mdn did. */
struct mft_outbox_mdn_result {
    char uuid[64];          /* the outgoing message the MDN answers ("" when unknown) */
    char state[16];         /* its state after the MDN ("" when unchanged) */
    char disposition[1024]; /* the Disposition as written */
    int already_final;      /* the message had ended before this MDN (a repeat) */
    struct mft_err outcome; /* why the message failed (kind OK when delivered) */
};

/*
 * Applies an MDN (HTTP Content-Type ctype, body) to the outgoing message it
 * answers: uuid when known (a synchronous MDN), otherwise found by its
 * Original-Message-ID (an asynchronous one). Keeps the raw MDN in the
 * message's record (mdn_raw, base64, for non-repudiation), judges it (mft_mdn_evaluate: signature
 * against the partner's signing certificate, disposition, MIC) and records delivered or failed. reg
 * is the registry snapshot (borrowed); server the TLS facts of a synchronous exchange (may be
 * NULL); http_status its status. Returns 0 when applied or a repeat for an ended message
 * (res->already_final), 1 when the MDN names no message we sent (async only), 2 when the body is
 * not an MDN (async only; err says why; a sync answer that is not an MDN
 * fails the message with MDN_INVALID and returns 0), -1 when the record or
 * the event could not be written (retry later; err says why).
 */
int mft_outbox_take_mdn(struct mft_outbox *ob, const struct mft_registry *reg, const char *uuid,
                        const char *from_partner, const char *ctype, const unsigned char *body,
                        size_t len, const struct mft_httpc_response *server, long http_status,
                        struct mft_outbox_mdn_result *res, struct mft_err *err);

/* Returns 1 when ctype (an HTTP Content-Type) can be an MDN: multipart/report,
 * or multipart/signed whose first part is multipart/report (body checked). */
int mft_outbox_looks_like_mdn(const char *ctype, const unsigned char *body, size_t len);

#endif
