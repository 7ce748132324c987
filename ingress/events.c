/*
 * events — the ingress service's events: MessageReceived on mft.inbound.v1
 * (published and acknowledged before a positive MDN goes out) and
 * ConnectionRejected on mft.status.v1 (every refused request or failed TLS
 * handshake, with the structured error). Each is also one JSON log line and a
 * metric, with the same error kind name. Called from connection threads.
 */
#include "ingress.h"
#include "mft_log.h"
#include "mft_ops.h"
#include "mft_events.h"
#include "mft_smime.h"
#include "mft_time.h"
#include "mft/v1/events.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *s(const char *v)
{
    return (char *)(v ? v : "");
}

/* Fills a TlsPeer from the certificate and the session facts. */
static void tls_peer_fill(Mft__V1__TlsPeer *tp, struct mft_x509_facts *f, X509 *cert,
                          const struct mft_tls_facts *tls)
{
    mft_x509_facts(cert, f);
    tp->subject = f->subject;
    tp->issuer = f->issuer;
    tp->serial = f->serial;
    tp->sha256_fingerprint = f->sha256;
    tp->not_before = f->not_before;
    tp->not_after = f->not_after;
    tp->protocol = s(tls ? tls->version : NULL);
    tp->cipher = s(tls ? tls->cipher : NULL);
}

static void digest_rfc(const char *ossl, char *out, size_t outlen)
{
    const char *o = NULL, *rfc = NULL;
    if (ossl && *ossl && mft_smime_digest_name(ossl, &o, &rfc) == 0)
        snprintf(out, outlen, "%s", rfc);
    else
        snprintf(out, outlen, "%s", ossl ? ossl : "");
}

int events_received(struct ingress *in, const struct received *m, struct mft_err *err)
{
    Mft__V1__MessageReceived ev = MFT__V1__MESSAGE_RECEIVED__INIT;
    Mft__V1__TlsPeer tp = MFT__V1__TLS_PEER__INIT;
    Mft__V1__PayloadRef refs[MFT_AS2_MAX_PAYLOADS];
    Mft__V1__PayloadRef *ref_ptrs[MFT_AS2_MAX_PAYLOADS];
    struct mft_x509_facts facts;
    char mid[1000], when[40], sign_alg[32];
    const struct mft_as2_result *res = m->res;

    mft_as2_bare_message_id(m->as2_message_id, mid, sizeof(mid));
    mft_rfc3339_ms(m->received_ms, when, sizeof(when));
    digest_rfc(res->sign_digest, sign_alg, sizeof(sign_alg));
    ev.message_id = (char *)m->uuid;
    ev.as2_message_id = mid;
    ev.as2_from = s(m->as2_from);
    ev.as2_to = s(m->as2_to);
    ev.station_id = (char *)m->station->id;
    ev.partner_id = (char *)m->partner->id;
    ev.protocol = "as2";
    for (size_t i = 0; i < res->n_payloads; i++) {
        mft__v1__payload_ref__init(&refs[i]);
        refs[i].uri = (char *)m->refs[i].uri;
        refs[i].size = m->refs[i].size;
        refs[i].sha256 = (char *)m->refs[i].sha256;
        refs[i].filename = (char *)res->payloads[i].filename;
        refs[i].content_type = (char *)res->payloads[i].content_type;
        ref_ptrs[i] = &refs[i];
    }
    ev.n_payloads = res->n_payloads;
    ev.payloads = ref_ptrs;
    ev.mic = (char *)res->mic_b64;
    ev.mic_alg = (char *)res->mic_alg;
    ev.signed_ = res->is_signed;
    ev.sign_alg = sign_alg;
    ev.encrypted = res->is_encrypted;
    ev.encryption_alg = (char *)res->cipher;
    ev.compressed = res->is_compressed;
    ev.compression_alg = res->is_compressed ? "zlib" : "";
    ev.mdn_mode = s(m->mdn_mode);
    char disp[200] = "";
    if (m->mdn_disposition && *m->mdn_disposition)
        snprintf(disp, sizeof(disp), "automatic-action/MDN-sent-automatically; %s",
                 m->mdn_disposition);
    ev.mdn_disposition = disp;
    ev.mdn_signed = m->mdn_signed;
    if (m->peer_cert) {
        tls_peer_fill(&tp, &facts, m->peer_cert, m->tls);
        ev.tls_peer = &tp;
    }
    ev.peer_address = s(m->peer_address);
    ev.received_time = when;

    size_t len = mft__v1__message_received__get_packed_size(&ev);
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    mft__v1__message_received__pack(&ev, buf);
    int rc = mft_bus_publish(in->bus, MFT_TOPIC_INBOUND, m->partner->id, MFT_CE_MESSAGE_RECEIVED,
                             NULL, buf, len, in->bus_timeout_ms, NULL, err);
    free(buf);
    return rc;
}

void events_rejected(struct ingress *in, const struct rejection *r, const struct mft_err *err)
{
    Mft__V1__ConnectionRejected ev = MFT__V1__CONNECTION_REJECTED__INIT;
    Mft__V1__Error e = MFT__V1__ERROR__INIT;
    Mft__V1__TlsPeer tp = MFT__V1__TLS_PEER__INIT;
    struct mft_x509_facts facts;
    char when[40], mid[1000];
    char *sent[MFT_TLS_MAX_ALERTS], *received[MFT_TLS_MAX_ALERTS];
    struct mft_events_tls hs;
    const char *kind = mft_err_kind_name(err->kind);

    mft_rfc3339_ms(mft_now_ms(), when, sizeof(when));
    mft_as2_bare_message_id(s(r->as2_message_id), mid, sizeof(mid));
    e.kind = (char *)kind;
    e.message = (char *)err->message;
    e.detail = (char *)err->detail;
    e.remedy = (char *)err->remedy;
    ev.direction = "inbound";
    ev.stage = s(r->stage);
    ev.peer_address = s(r->peer_address);
    ev.sni = s(r->sni);
    ev.station_id = s(r->station_id);
    ev.partner_id = s(r->partner_id);
    ev.as2_from = s(r->as2_from);
    ev.as2_to = s(r->as2_to);
    ev.as2_message_id = mid;
    ev.http_status = r->http_status;
    ev.mdn_disposition = s(r->mdn_disposition);
    ev.error = &e;
    if (r->peer_cert) {
        tls_peer_fill(&tp, &facts, r->peer_cert, r->tls);
        ev.tls_peer = &tp;
    }
    if (r->tls) {
        /* the older flat fields, kept for consumers written before .tls */
        const char *top = strstr(r->tls->versions_offered, "..");
        ev.tls_version_offered = (char *)(top ? top + 2 : r->tls->versions_offered);
        for (unsigned i = 0; i < r->tls->n_alerts; i++) {
            const struct mft_tls_alert *a = &r->tls->alerts[i];
            if (a->sent)
                sent[ev.n_alerts_sent++] = (char *)mft_tls_alert_name(a->code);
            else
                received[ev.n_alerts_received++] = (char *)mft_tls_alert_name(a->code);
        }
        ev.alerts_sent = ev.n_alerts_sent ? sent : NULL;
        ev.alerts_received = ev.n_alerts_received ? received : NULL;
        if (r->tls_failed)
            ev.tls = mft_events_tls_fill(&hs, r->tls);
    }
    ev.time = when;

    char labels[128], status[16];
    snprintf(labels, sizeof(labels), "kind=\"%s\",stage=\"%s\"", kind, s(r->stage));
    snprintf(status, sizeof(status), "%u", r->http_status);
    mft_metric_inc("mft_ingress_rejected_total", labels);
    mft_warn("connection.rejected", err->message, "stage", s(r->stage), "error_kind", kind,
             "detail", err->detail, "peer", s(r->peer_address), "partner", s(r->partner_id),
             "as2_from", s(r->as2_from), "as2_message_id", mid, "http_status", status);

    size_t len = mft__v1__connection_rejected__get_packed_size(&ev);
    unsigned char *buf = malloc(len ? len : 1);
    if (!buf)
        return;
    mft__v1__connection_rejected__pack(&ev, buf);
    const char *key = r->partner_id && *r->partner_id ? r->partner_id : s(r->peer_address);
    struct mft_err perr;
    mft_err_clear(&perr);
    if (mft_bus_publish(in->bus, MFT_TOPIC_STATUS, key, MFT_CE_CONNECTION_REJECTED, NULL, buf, len,
                        in->bus_timeout_ms, NULL, &perr) < 0)
        mft_error("event.publish_failed", "the rejection event was not published", "error_kind",
                  mft_err_kind_name(perr.kind), "detail", perr.detail);
    free(buf);
}
