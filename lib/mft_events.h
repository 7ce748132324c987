/*
 * mft_events — the catalogue of event types (ce_type → topic, protobuf
 * descriptor) and a generic protobuf → JSON rendering, for mftctl, tests and
 * later the admin views. One table: docs/events.md lists the same types.
 */
#ifndef MFT_EVENTS_H
#define MFT_EVENTS_H

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

#endif
