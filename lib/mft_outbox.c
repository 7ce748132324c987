/*
 * mft_outbox — records the state changes of outgoing messages and publishes
 * them (see mft_outbox.h for the state machine). Used by egress for every
 * attempt and by ingress when an asynchronous MDN arrives, so both judge an
 * MDN with the same code (mft_mdn_evaluate) and write the same fields.
 *
 * Record first, event second: Redis is the truth the retry scheduler and the
 * admin views read; the event follows it. Nothing here sends over the
 * network except through mft_store and mft_bus. No state of its own.
 */
#include "mft_outbox.h"
#include "mft_as2.h"
#include "mft_events.h"
#include "mft_log.h"
#include "mft_mdn.h"
#include "mft_mime.h"
#include "mft_ops.h"
#include "mft_time.h"
#include "mft/v1/events.pb-c.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_CHANGE_FIELDS 80
#define MDN_SNIFF_MAX (1u << 20) /* larger bodies are never taken for an MDN */

static char *s(const char *v)
{
    return (char *)(v ? v : "");
}

void mft_outbox_msg_from_kv(struct mft_outbox_msg *m, const char *uuid, char *const *kv, size_t n)
{
    m->uuid = uuid;
    m->request_id = mft_store_kv(kv, n, "request_id");
    m->correlation_id = mft_store_kv(kv, n, "correlation_id");
    m->as2_message_id = mft_store_kv(kv, n, "as2_message_id");
    m->station_id = mft_store_kv(kv, n, "station");
    m->partner_id = mft_store_kv(kv, n, "partner");
}

int mft_outbox_state_final(const char *state)
{
    return state && (strcmp(state, MFT_OUT_DELIVERED) == 0 || strcmp(state, MFT_OUT_FAILED) == 0);
}

/* Packs the DeliveryUpdated of a change; *buf is malloc'd. Returns 0 or -1. */
static int pack(const struct mft_outbox_msg *m, const struct mft_outbox_change *c, long long now,
                unsigned char **buf, size_t *len, struct mft_err *err)
{
    Mft__V1__DeliveryUpdated ev = MFT__V1__DELIVERY_UPDATED__INIT;
    Mft__V1__Error e = MFT__V1__ERROR__INIT;
    Mft__V1__TlsPeer tp = MFT__V1__TLS_PEER__INIT;
    struct mft_events_tls hs;
    char when[40], next[40] = "", mid[1000];

    mft_rfc3339_ms(now, when, sizeof(when));
    if (c->next_ms > 0)
        mft_rfc3339_ms(c->next_ms, next, sizeof(next));
    mft_as2_bare_message_id(s(m->as2_message_id), mid, sizeof(mid));
    ev.message_id = s(m->uuid);
    ev.request_id = s(m->request_id);
    ev.correlation_id = s(m->correlation_id);
    ev.as2_message_id = mid;
    ev.station_id = s(m->station_id);
    ev.partner_id = s(m->partner_id);
    ev.state = (char *)c->state;
    ev.attempt = c->attempt;
    ev.next_attempt_time = next;
    ev.mic = s(c->mic);
    ev.mic_alg = s(c->mic_alg);
    ev.mdn_disposition = s(c->mdn_disposition);
    ev.mdn_signed = c->mdn_signed != 0;
    ev.http_status = c->http_status > 0 ? (uint32_t)c->http_status : 0;
    if (c->error && c->error->kind != MFT_E_OK) {
        e.kind = (char *)mft_err_kind_name(c->error->kind);
        e.message = (char *)c->error->message;
        e.detail = (char *)c->error->detail;
        e.remedy = (char *)c->error->remedy;
        ev.error = &e;
    }
    if (c->server && c->server->has_tls) {
        tp.subject = (char *)c->server->tls_subject;
        tp.issuer = (char *)c->server->tls_issuer;
        tp.serial = (char *)c->server->tls_serial;
        tp.sha256_fingerprint = (char *)c->server->tls_sha256;
        tp.not_before = (char *)c->server->tls_not_before;
        tp.not_after = (char *)c->server->tls_not_after;
        tp.protocol = (char *)c->server->tls_protocol;
        tp.cipher = (char *)c->server->tls_cipher;
        ev.tls_server = &tp;
    }
    if (c->tls)
        ev.tls = mft_events_tls_fill(&hs, c->tls);
    ev.time = when;

    *len = mft__v1__delivery_updated__get_packed_size(&ev);
    if (!(*buf = malloc(*len ? *len : 1)))
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    mft__v1__delivery_updated__pack(&ev, *buf);
    return 0;
}

/*
 * A pending event as kept in mft:out:events until Kafka acknowledges it:
 * "<ms> <ce_id> <base64 partner id> <base64 value>" (ms: when it was
 * written), text so any Redis client can
 * read it, and with its ce_id so a re-publication is recognisably the same
 * event (consumers deduplicate on ce_id).
 */
static char *entry_make(long long now, const char *ce_id, const char *partner,
                        const unsigned char *v, size_t n)
{
    size_t pl = strlen(partner);
    size_t cap = 64 + 4 * (pl / 3 + 2) + 4 * (n / 3 + 2);
    char *e = malloc(cap);
    if (!e)
        return NULL;
    size_t o = (size_t)snprintf(e, cap, "%lld %s ", now, ce_id);
    o += (size_t)EVP_EncodeBlock((unsigned char *)e + o, (const unsigned char *)partner, (int)pl);
    e[o++] = ' ';
    o += (size_t)EVP_EncodeBlock((unsigned char *)e + o, v, (int)n);
    e[o] = '\0';
    return e;
}

/* Publishes a pending entry. Returns 0 when acknowledged, -1 otherwise. */
static int entry_publish(struct mft_outbox *ob, const char *entry, struct mft_err *err)
{
    char ce_id[64], *partner = NULL;
    unsigned char *value = NULL;
    int rc = -1;
    const char *sp0 = strchr(entry, ' ');
    if (!sp0)
        return -2;
    entry = sp0 + 1;
    const char *sp1 = strchr(entry, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || (size_t)(sp1 - entry) >= sizeof(ce_id)) {
        mft_err_set(err, MFT_E_INTERNAL, "a pending event entry is malformed");
        return -2; /* never publishable: dropped by the caller */
    }
    memcpy(ce_id, entry, (size_t)(sp1 - entry));
    ce_id[sp1 - entry] = '\0';
    size_t pl = (size_t)(sp2 - sp1 - 1), vl = strlen(sp2 + 1);
    partner = malloc(pl / 4 * 3 + 4);
    value = malloc(vl / 4 * 3 + 4);
    if (!partner || !value) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    int pn = EVP_DecodeBlock((unsigned char *)partner, (const unsigned char *)sp1 + 1, (int)pl);
    int vn = EVP_DecodeBlock(value, (const unsigned char *)sp2 + 1, (int)vl);
    if (pn < 0 || vn < 0) {
        mft_err_set(err, MFT_E_INTERNAL, "a pending event entry is malformed");
        rc = -2;
        goto out;
    }
    /* EVP_DecodeBlock counts the padding: take it off */
    for (const char *q = sp2 - 1; q > sp1 && *q == '='; q--)
        pn--;
    for (const char *q = entry + strlen(entry) - 1; q > sp2 && *q == '='; q--)
        vn--;
    partner[pn] = '\0';
    rc = mft_bus_publish(ob->bus, MFT_TOPIC_STATUS, partner, MFT_CE_DELIVERY_UPDATED, ce_id, value,
                         (size_t)vn, ob->bus_timeout_ms, NULL, err);
out:
    free(partner);
    free(value);
    return rc;
}

int mft_outbox_flush(struct mft_outbox *ob, size_t limit)
{
    char **entries = NULL;
    size_t n = 0;
    int done = 0;
    struct mft_err err;
    mft_err_clear(&err);
    if (mft_store_out_events(ob->store, limit ? limit : 100, &entries, &n, &err) < 0)
        return 0;
    long long now = mft_now_ms();
    for (size_t i = 0; i < n; i++) {
        /* a young entry may still be on its way through mft_outbox_change's own
         * publication: leave it (and those after it) for the next flush */
        long long at = strtoll(entries[i], NULL, 10);
        if (at > now - ob->bus_timeout_ms - 2000)
            break;
        int p = entry_publish(ob, entries[i], &err);
        if (p == -1)
            break; /* Kafka still down: keep the order, try again later */
        if (p == -2)
            mft_error("event.dropped", err.message, "entry", entries[i]);
        if (mft_store_out_event_done(ob->store, entries[i], &err) < 0)
            break;
        done++;
    }
    if (done) {
        char cnt[16];
        snprintf(cnt, sizeof(cnt), "%d", done);
        mft_info("event.flushed", "pending events published", "count", cnt);
    }
    mft_store_free_list(entries, n);
    return done;
}

int mft_outbox_change(struct mft_outbox *ob, const struct mft_outbox_msg *m,
                      const struct mft_outbox_change *c, struct mft_err *err)
{
    const char *f[MAX_CHANGE_FIELDS + 1];
    char now_s[32], attempt[16], next[32], status[16];
    size_t n = 0;
#define PUT(k, v)                                                                                  \
    do {                                                                                           \
        if (n + 2 <= MAX_CHANGE_FIELDS) {                                                          \
            f[n++] = (k);                                                                          \
            f[n++] = (v);                                                                          \
        }                                                                                          \
    } while (0)

    if (!ob || !m || !m->uuid || !c || !c->state)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_outbox_change: missing argument");
    long long now = mft_now_ms();
    snprintf(now_s, sizeof(now_s), "%lld", now);
    PUT("state", c->state);
    PUT("updated_ms", now_s);
    if (c->attempt) {
        snprintf(attempt, sizeof(attempt), "%u", c->attempt);
        PUT("attempt", attempt);
    }
    snprintf(next, sizeof(next), "%lld", c->next_ms > 0 ? c->next_ms : 0);
    PUT("next_ms", next);
    if (c->mic) {
        PUT("mic", c->mic);
        PUT("mic_alg", s(c->mic_alg));
    }
    if (c->mdn_disposition) {
        PUT("mdn_disposition", c->mdn_disposition);
        PUT("mdn_signed", c->mdn_signed ? "1" : "0");
    }
    if (c->http_status > 0) {
        snprintf(status, sizeof(status), "%ld", c->http_status);
        PUT("http_status", status);
    }
    if (c->error && c->error->kind != MFT_E_OK) {
        PUT("error_kind", mft_err_kind_name(c->error->kind));
        PUT("error_message", c->error->message);
        PUT("error_detail", c->error->detail);
        PUT("error_remedy", c->error->remedy);
    } else if (strcmp(c->state, MFT_OUT_RETRYING) != 0 && strcmp(c->state, MFT_OUT_FAILED) != 0) {
        PUT("error_kind", "");
        PUT("error_message", "");
        PUT("error_detail", "");
        PUT("error_remedy", "");
    }
    if (c->server && c->server->has_tls) {
        PUT("tls_subject", c->server->tls_subject);
        PUT("tls_issuer", c->server->tls_issuer);
        PUT("tls_serial", c->server->tls_serial);
        PUT("tls_sha256", c->server->tls_sha256);
        PUT("tls_not_after", c->server->tls_not_after);
        PUT("tls_protocol", c->server->tls_protocol);
        PUT("tls_cipher", c->server->tls_cipher);
    }
    for (size_t i = 0; c->extra && c->extra[i] && c->extra[i + 1]; i += 2)
        PUT(c->extra[i], c->extra[i + 1]);
#undef PUT
    f[n] = NULL;
    /* The event goes into Redis with the change (mft:out:events) and is taken
     * out once Kafka acknowledged it: a change is never recorded without its
     * event eventually reaching the bus (mft_outbox_flush re-publishes). */
    unsigned char *value = NULL;
    size_t vlen = 0;
    char ce_id[37];
    mft_uuid4(ce_id);
    if (pack(m, c, now, &value, &vlen, err) < 0)
        return -1;
    char *entry = entry_make(now, ce_id, s(m->partner_id), value, vlen);
    free(value);
    if (!entry)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    /* Only the first write creates; every later one is guarded, so an ended
     * message is never moved back (e.g. "sent" recorded after the async MDN). */
    struct mft_store_out_op op = c->op;
    op.unless_final = op.created_ms == 0;
    op.pending_event = entry;
    int put = mft_store_out_put(ob->store, m->uuid, f, &op, err);
    if (put != 0) {
        free(entry);
        if (put == 1)
            mft_debug("outbound.skipped", "the message has ended; change not applied", "message_id",
                      m->uuid, "state", c->state);
        return put;
    }
    struct mft_err perr;
    mft_err_clear(&perr);
    if (entry_publish(ob, entry, &perr) == 0)
        mft_store_out_event_done(ob->store, entry, &perr);
    else
        mft_warn("event.deferred",
                 "the state is recorded; its event will be published when "
                 "Kafka answers",
                 "message_id", m->uuid, "state", c->state, "detail", perr.detail);
    free(entry);
    char labels[64];
    snprintf(labels, sizeof(labels), "state=\"%s\"", c->state);
    mft_metric_inc("mft_outbound_transitions_total", labels);
    return 0;
}

int mft_outbox_looks_like_mdn(const char *ctype, const unsigned char *body, size_t len)
{
    struct mft_mime_value v;
    struct mft_err e;
    if (!ctype || len > MDN_SNIFF_MAX || mft_mime_parse_value(ctype, &v, &e) < 0)
        return 0;
    if (strcmp(v.token, "multipart/report") == 0)
        return 1;
    if (strcmp(v.token, "multipart/signed") != 0 || !body)
        return 0;
    const char *b = mft_mime_param(&v, "boundary");
    struct mft_span whole = {body, len}, parts[2];
    size_t np = 0;
    struct mft_mime_entity *ent = malloc(sizeof(*ent));
    int rc = 0;
    char inner[600];
    if (!ent || !b || mft_mime_split(&whole, b, parts, 2, &np, &e) < 0 || np < 1)
        goto out;
    if (mft_mime_parse(parts[0].p, parts[0].len, 0, ent, &e) < 0)
        goto out;
    if (mft_mime_header(ent, "content-type", inner, sizeof(inner)) < 0 ||
        mft_mime_parse_value(inner, &v, &e) < 0)
        goto out;
    rc = strcmp(v.token, "multipart/report") == 0;
out:
    free(ent);
    return rc;
}

/* The raw MDN as the record keeps it (mdn_raw): base64 of the bytes received,
 * so a binary signature survives a text field. An MDN is small (egress reads
 * at most MFT_EGRESS_MAX_RESPONSE); a file of its own with its fsyncs cost
 * egress more CPU than signing the message. Returns a malloc'd string or NULL. */
static char *raw_b64(const unsigned char *body, size_t len)
{
    char *b = malloc(4 * (len / 3 + 1) + 1);
    if (b)
        b[EVP_EncodeBlock((unsigned char *)b, body ? body : (const unsigned char *)"", (int)len)] =
            '\0';
    return b;
}

int mft_outbox_take_mdn(struct mft_outbox *ob, const struct mft_registry *reg, const char *uuid,
                        const char *from_partner, const char *ctype, const unsigned char *body,
                        size_t len, const struct mft_httpc_response *server, long http_status,
                        struct mft_outbox_mdn_result *res, struct mft_err *err)
{
    struct mft_mdn *mdn = calloc(1, sizeof(*mdn));
    struct mft_err perr, verdict;
    char **kv = NULL;
    size_t nkv = 0;
    int rc = -1, parsed;
    char *raw = NULL;

    memset(res, 0, sizeof(*res));
    mft_err_clear(&res->outcome);
    mft_err_clear(&perr);
    mft_err_clear(&verdict);
    if (!mdn) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    parsed = mft_mdn_parse(ctype, body, len, mdn, &perr) == 0;
    if (!uuid) {
        if (!parsed) {
            mft_err_set(err, MFT_E_MDN_INVALID, "%s", perr.message);
            mft_err_detail(err, "%s", perr.detail);
            rc = 2;
            goto out;
        }
        int f = mft_store_out_by_mid(ob->store, mdn->original_message_id, res->uuid,
                                     sizeof(res->uuid), err);
        if (f < 0)
            goto out;
        if (f == 0) {
            mft_err_set(err, MFT_E_MDN_INVALID,
                        "the MDN's Original-Message-ID names no message this gateway sent");
            mft_err_detail(err, "Original-Message-ID: %s", mdn->original_message_id);
            rc = 1;
            goto out;
        }
    } else {
        snprintf(res->uuid, sizeof(res->uuid), "%s", uuid);
    }
    int g = mft_store_out_get(ob->store, res->uuid, &kv, &nkv, err);
    if (g < 0)
        goto out;
    if (g == 1) {
        mft_err_set(err, MFT_E_MDN_INVALID, "the message this MDN answers has no record");
        rc = 1;
        goto out;
    }
    struct mft_outbox_msg m;
    mft_outbox_msg_from_kv(&m, res->uuid, kv, nkv);
    const char *state = mft_store_kv(kv, nkv, "state");
    /* An async MDN can overtake its own message: a fast partner posts it
     * before egress has recorded the HTTP answer ("sent"). Give egress up to
     * 2 s, so the events keep their natural order (sent, then delivered). */
    for (int i = 0; !uuid && i < 200 && strcmp(state, MFT_OUT_SENDING) == 0; i++) {
        usleep(10 * 1000);
        mft_store_free_list(kv, nkv);
        kv = NULL;
        nkv = 0;
        if ((g = mft_store_out_get(ob->store, res->uuid, &kv, &nkv, err)) != 0) {
            if (g == 1) {
                mft_err_set(err, MFT_E_MDN_INVALID, "the message this MDN answers has no record");
                rc = 1;
            }
            goto out;
        }
        mft_outbox_msg_from_kv(&m, res->uuid, kv, nkv);
        state = mft_store_kv(kv, nkv, "state");
    }
    if (mft_outbox_state_final(state)) {
        res->already_final = 1;
        snprintf(res->state, sizeof(res->state), "%s", state);
        rc = 0;
        goto out;
    }
    if (parsed && uuid == NULL) {
        /* async: the MDN must answer the Message-ID we sent (the index is by
         * hash; this guards against a collision or a stale index entry) */
        char a[1000], b[1000];
        mft_as2_bare_message_id(mdn->original_message_id, a, sizeof(a));
        mft_as2_bare_message_id(m.as2_message_id, b, sizeof(b));
        if (strcmp(a, b) != 0) {
            mft_err_set(err, MFT_E_MDN_INVALID, "the MDN answers another message");
            rc = 1;
            goto out;
        }
    }
    if (from_partner && strcmp(from_partner, m.partner_id) != 0) {
        mft_err_set(err, MFT_E_MDN_INVALID,
                    "the MDN comes from partner \"%s\" but the message was sent to \"%s\"",
                    from_partner, m.partner_id);
        res->uuid[0] = '\0';
        rc = 1;
        goto out;
    }
    if (len > MDN_SNIFF_MAX) /* not an MDN a partner's product writes: not kept whole */
        mft_warn("mdn.not_kept", "the MDN is too large to keep in the record", "message_id",
                 res->uuid);
    else if (!(raw = raw_b64(body, len))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }

    const struct mft_partner *p = reg ? mft_registry_partner(reg, m.partner_id) : NULL;
    const char *mic = mft_store_kv(kv, nkv, "mic"), *mic_alg = mft_store_kv(kv, nkv, "mic_alg");
    int require_signed = strcmp(mft_store_kv(kv, nkv, "mdn_signed_requested"), "1") == 0;
    int verified = 0;
    if (!parsed) {
        mft_err_set(&verdict, MFT_E_MDN_INVALID, "%s", perr.message);
        mft_err_detail(&verdict, "%s", perr.detail);
    } else if (!p) {
        mft_err_set(&verdict, MFT_E_UNKNOWN_PARTNER, "partner \"%s\" is no longer registered",
                    m.partner_id);
    } else {
        mft_mdn_evaluate(mdn, p->signing_cert, require_signed, mic, mic_alg, &verified, &verdict);
    }
    const char *final = verdict.kind == MFT_E_OK ? MFT_OUT_DELIVERED : MFT_OUT_FAILED;
    const char *extra[] = {"mdn_raw",  raw ? raw : "",          "mdn_content_type",
                           s(ctype),   "mdn_mode_received",     uuid ? "sync" : "async",
                           "mdn_text", parsed ? mdn->text : "", NULL};
    struct mft_outbox_change c = {
        .state = final,
        .mic = mic,
        .mic_alg = mic_alg,
        .mdn_disposition = parsed ? mdn->disposition_raw : "",
        .mdn_signed = verified,
        .http_status = http_status,
        .error = &verdict,
        .server = server,
        .extra = extra,
        .op = {.unschedule = {MFT_STORE_OUT_RETRY, MFT_STORE_OUT_MDN}},
    };
    unsigned long attempt = strtoul(mft_store_kv(kv, nkv, "attempt"), NULL, 10);
    c.attempt = (unsigned)attempt;
    int changed = mft_outbox_change(ob, &m, &c, err);
    if (changed < 0)
        goto out;
    if (changed == 1) { /* it ended meanwhile (a repeat of this MDN, or a timeout) */
        res->already_final = 1;
        rc = 0;
        goto out;
    }
    snprintf(res->state, sizeof(res->state), "%s", final);
    snprintf(res->disposition, sizeof(res->disposition), "%s", parsed ? mdn->disposition_raw : "");
    res->outcome = verdict;
    rc = 0;
out:
    mft_store_free_list(kv, nkv);
    free(mdn);
    free(raw);
    return rc;
}
