/*
 * mft_events — event catalogue and protobuf-to-JSON rendering. The renderer
 * walks protobuf-c descriptors, so a new field or message needs no code here:
 * only a row in the table. Pure functions; thread-safe.
 */
#include "mft_events.h"
#include "mft_bus.h"
#include "mft/v1/events.pb-c.h"

#include <string.h>

static const struct mft_event_type types[] = {
    {MFT_CE_MESSAGE_RECEIVED, MFT_TOPIC_INBOUND, &mft__v1__message_received__descriptor},
    {MFT_CE_CONNECTION_REJECTED, MFT_TOPIC_STATUS, &mft__v1__connection_rejected__descriptor},
    {NULL, NULL, NULL},
};

const struct mft_event_type *mft_event_types(void)
{
    return types;
}

const struct mft_event_type *mft_event_type_find(const char *ce_type)
{
    for (const struct mft_event_type *t = types; ce_type && t->ce_type; t++)
        if (strcmp(t->ce_type, ce_type) == 0)
            return t;
    return NULL;
}

static json_t *message_json(const ProtobufCMessage *msg);

static json_t *value_json(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return json_string(s ? s : "");
    }
    case PROTOBUF_C_TYPE_BOOL:
        return json_boolean(*(const protobuf_c_boolean *)p);
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
        return json_integer(*(const uint32_t *)p);
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_ENUM:
        return json_integer(*(const int32_t *)p);
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
        return json_integer((json_int_t) * (const uint64_t *)p);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return json_integer(*(const int64_t *)p);
    case PROTOBUF_C_TYPE_DOUBLE:
        return json_real(*(const double *)p);
    case PROTOBUF_C_TYPE_FLOAT:
        return json_real(*(const float *)p);
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
        return m ? message_json(m) : json_null();
    }
    case PROTOBUF_C_TYPE_BYTES:
    default:
        return json_null();
    }
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(void *);
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    default:
        return 4;
    }
}

static json_t *message_json(const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *d = msg->descriptor;
    json_t *obj = json_object();
    for (unsigned i = 0; obj && i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)msg;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            json_t *list = json_array();
            for (size_t j = 0; j < n && arr; j++)
                json_array_append_new(list, value_json(f, arr + j * elem_size(f)));
            json_object_set_new(obj, f->name, list);
        } else {
            json_object_set_new(obj, f->name, value_json(f, base + f->offset));
        }
    }
    return obj;
}

json_t *mft_event_to_json(const char *ce_type, const void *value, size_t len)
{
    const struct mft_event_type *t = mft_event_type_find(ce_type);
    if (!t)
        return NULL;
    ProtobufCMessage *msg = protobuf_c_message_unpack(t->descriptor, NULL, len, value);
    if (!msg)
        return NULL;
    json_t *j = message_json(msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    return j;
}
