/*
 * mft_events — the catalogue of event types (ce_type → topic, protobuf
 * descriptor) and a generic protobuf → JSON rendering, for mftctl, tests and
 * later the admin views. One table: docs/events.md lists the same types.
 */
#ifndef MFT_EVENTS_H
#define MFT_EVENTS_H

#include "mft_tls.h"
#include "mft/v1/events.pb-c.h"

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

#define MFT_CE_MESSAGE_RECEIVED "mft.message.received.v1"
#define MFT_CE_CONNECTION_REJECTED "mft.connection.rejected.v1"
#define MFT_CE_SEND_REQUESTED "mft.send.requested.v1"
#define MFT_CE_DELIVERY_UPDATED "mft.delivery.updated.v1"

struct mft_event_type {
    const char *ce_type;
    const char *topic;
    const ProtobufCMessageDescriptor *descriptor;
};

/* Returns the catalogue entry for ce_type, or NULL. */
const struct mft_event_type *mft_event_type_find(const char *ce_type);

/* Returns the NULL-terminated catalogue. */
const struct mft_event_type *mft_event_types(void);

/*
 * Decodes value as the protobuf message of ce_type and renders it as a JSON
 * object (field names as in the .proto; proto3 defaults included). Returns a
 * new reference, or NULL when the type is unknown or the bytes do not decode.
 */
json_t *mft_event_to_json(const char *ce_type, const void *value, size_t len);

/*
 * The TlsHandshake message of the facts f, for ConnectionRejected.tls and
 * DeliveryUpdated.tls. Everything lives in *b and points into f: keep both
 * alive until the event is packed. Returns &b->hs.
 */
struct mft_events_tls {
    Mft__V1__TlsHandshake hs;
    Mft__V1__TlsAlert alerts[MFT_TLS_MAX_ALERTS];
    Mft__V1__TlsAlert *alert_ptrs[MFT_TLS_MAX_ALERTS];
    Mft__V1__TlsCertificate peer, local;
};
Mft__V1__TlsHandshake *mft_events_tls_fill(struct mft_events_tls *b, const struct mft_tls_facts *f);

#endif
