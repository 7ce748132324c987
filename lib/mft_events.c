/*
 * mft_events — event catalogue and protobuf-to-JSON rendering. The renderer
 * walks protobuf-c descriptors, so a new field or message needs no code here:
 * only a row in the table. Pure functions; thread-safe.
 */
#include "mft_events.h"
#include "mft_bus.h"
#include "mft/v1/events.pb-c.h"

#include <stdlib.h>
#include <openssl/evp.h>
#include <string.h>

static const struct mft_event_type types[] = {
    {MFT_CE_MESSAGE_RECEIVED, MFT_TOPIC_INBOUND, &mft__v1__message_received__descriptor},
    {MFT_CE_CONNECTION_REJECTED, MFT_TOPIC_STATUS, &mft__v1__connection_rejected__descriptor},
    {MFT_CE_SEND_REQUESTED, MFT_TOPIC_OUTBOUND, &mft__v1__send_requested__descriptor},
    {MFT_CE_DELIVERY_UPDATED, MFT_TOPIC_STATUS, &mft__v1__delivery_updated__descriptor},
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

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s)
{
    unsigned c = s[0], cp, min;
    size_t n;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
        min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* A JSON string; bytes that are not UTF-8 (protobuf-c does not check) become
 * U+FFFD, so the field is never dropped (json_string refuses them). */
static json_t *string_json(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t len = strlen(s), o = 0;
    char *clean = malloc(len * 3 + 1);
    if (!clean)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_seq(p);
        if (n) {
            memcpy(clean + o, p, n);
            o += n;
            p += n;
        } else {
            memcpy(clean + o, "\xef\xbf\xbd", 3);
            o += 3;
            p++;
        }
    }
    clean[o] = '\0';
    j = json_string(clean);
    free(clean);
    return j;
}

static json_t *value_json(const ProtobufCFieldDescriptor *f, const void *p)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        return string_json(s ? s : "");
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
    case PROTOBUF_C_TYPE_BYTES: { /* base64, as in the proto3 JSON mapping */
        const ProtobufCBinaryData *b = p;
        size_t n = 4 * ((b->len + 2) / 3) + 1;
        char *txt = malloc(n);
        if (!txt || b->len > 0x7fffffff)
            return free(txt), json_null();
        EVP_EncodeBlock((unsigned char *)txt, b->data ? b->data : (const unsigned char *)"",
                        (int)b->len);
        json_t *j = json_string(txt);
        free(txt);
        return j;
    }
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

static Mft__V1__TlsCertificate *tls_cert(Mft__V1__TlsCertificate *pb, const struct mft_tls_cert *c)
{
    if (!c->present)
        return NULL;
    mft__v1__tls_certificate__init(pb);
    pb->subject = (char *)c->x.subject;
    pb->issuer = (char *)c->x.issuer;
    pb->serial = (char *)c->x.serial;
    pb->sha256_fingerprint = (char *)c->x.sha256;
    pb->not_before = (char *)c->x.not_before;
    pb->not_after = (char *)c->x.not_after;
    pb->names = (char *)c->names;
    pb->key = (char *)c->key;
    return pb;
}

Mft__V1__TlsHandshake *mft_events_tls_fill(struct mft_events_tls *b, const struct mft_tls_facts *f)
{
    Mft__V1__TlsHandshake *hs = &b->hs;
    mft__v1__tls_handshake__init(hs);
    hs->direction = (char *)f->direction;
    hs->time = (char *)f->time;
    hs->peer_address = (char *)f->peer_address;
    hs->sni = (char *)f->sni;
    hs->url_host = (char *)f->url_host;
    hs->partner_id = (char *)f->partner_id;
    hs->partner_basis = (char *)f->partner_basis;
    hs->station_id = (char *)f->station_id;
    hs->versions_offered = (char *)f->versions_offered;
    hs->versions_accepted = (char *)f->versions_accepted;
    hs->version = (char *)f->version;
    hs->cipher = (char *)f->cipher;
    hs->library_error = (char *)f->library_error;
    hs->verify_code = f->verify_code;
    hs->verify_result = (char *)f->verify_result;
    for (unsigned i = 0; i < f->n_alerts && i < MFT_TLS_MAX_ALERTS; i++) {
        Mft__V1__TlsAlert *a = &b->alerts[i];
        mft__v1__tls_alert__init(a);
        a->direction = f->alerts[i].sent ? "sent" : "received";
        a->level = f->alerts[i].fatal ? "fatal" : "warning";
        a->code = (uint32_t)f->alerts[i].code;
        a->name = (char *)mft_tls_alert_name(f->alerts[i].code);
        b->alert_ptrs[i] = a;
    }
    hs->n_alerts = f->n_alerts < MFT_TLS_MAX_ALERTS ? f->n_alerts : MFT_TLS_MAX_ALERTS;
    hs->alerts = hs->n_alerts ? b->alert_ptrs : NULL;
    hs->peer_certificate = tls_cert(&b->peer, &f->peer_cert);
    hs->local_certificate = tls_cert(&b->local, &f->local_cert);
    return hs;
}
