/*
 * receive — one AS2 request, from the first header to the MDN.
 *
 * libmicrohttpd calls receive_handler() several times per request on the
 * connection's own thread: first with the headers (resolve station and partner,
 * check that the TLS client certificate is that partner's, check the size),
 * then with each chunk of body (spooled to the payload store's temporary file,
 * never held whole in memory while receiving), then once more to finish:
 * decrypt / verify / decompress (mft_as2), keep the payloads (fsync'd), publish
 * MessageReceived and wait for the broker, record the message in Redis, and
 * only then answer with a positive MDN. If Redis, the payload store or Kafka
 * cannot take the message the answer is HTTP 503 and no positive MDN; AS2-level
 * failures get a negative MDN; every rejection becomes a ConnectionRejected
 * event (events.c).
 */
#include "ingress.h"
#include "mft_log.h"
#include "mft_mdn.h"
#include "mft_ops.h"
#include "mft_httpc.h"
#include "mft_outbox.h"
#include "mft_time.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <ctype.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

struct request {
    struct ingress *in;
    struct mft_registry *reg;
    const struct mft_station *station;
    const struct mft_partner *partner;
    struct mft_tlssrv_conn *tls;
    struct mft_payload_writer *spool;
    char uuid[37];
    char as2_from[130], as2_to[130], message_id[1000];
    char peer_address[64];
    long long received_ms;
    int started;
    /* an early failure: answered after the body has been read (and discarded) */
    unsigned fail_status;
    struct mft_err fail;
    char async_url[512]; /* Receipt-Delivery-Option: the MDN goes there, not in the answer */
};

/* Copies a header value, trimmed and without the quotes a sender may add.
 * Returns 0, or -1 when the value is longer than out can hold (then cut). */
static int header_copy(struct MHD_Connection *conn, const char *name, char *out, size_t outlen)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
    int rc = 0;
    out[0] = '\0';
    if (!v)
        return 0;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
        v++;
        n -= 2;
    }
    if (n >= outlen) {
        n = outlen - 1;
        rc = -1;
    }
    memcpy(out, v, n);
    out[n] = '\0';
    return rc;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

static void count_status(unsigned status)
{
    char labels[32];
    snprintf(labels, sizeof(labels), "status=\"%u\"", status);
    mft_metric_inc("mft_ingress_requests_total", labels);
}

static enum MHD_Result answer_text(struct MHD_Connection *conn, unsigned status, const char *text)
{
    char body[1500];
    snprintf(body, sizeof(body), "%s\n", text);
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    if (status == 503)
        MHD_add_response_header(r, "Retry-After", "30");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    count_status(status);
    return ret;
}

static enum MHD_Result answer_error(struct MHD_Connection *conn, unsigned status,
                                    const struct mft_err *err)
{
    char text[1400];
    snprintf(text, sizeof(text), "%s: %s\nremedy: %s", mft_err_kind_name(err->kind), err->message,
             err->remedy);
    return answer_text(conn, status, text);
}

/* An asynchronous MDN on its way to the partner (one detached thread each). */
struct async_mdn {
    struct mft_registry *reg; /* holds partner and station alive */
    const struct mft_partner *partner;
    char url[512], message_id[1000];
    char hdr[8][1200];
    unsigned char *body;
    size_t len;
};

/*
 * POSTs the MDN to the partner's Receipt-Delivery-Option URL with the
 * station's TLS client certificate, authenticating the partner's server by
 * its "send" trust settings (an https URL without them cannot be trusted and
 * is refused). Three tries, 2 s and 10 s apart; every failure is logged with
 * its kind and counted.
 */
static void *async_mdn_run(void *arg)
{
    struct async_mdn *am = arg;
    const struct mft_partner_send *ps = &am->partner->send;
    const struct mft_station *st = am->partner->station;
    const char *hdr[9];
    for (int i = 0; i < 8; i++)
        hdr[i] = am->hdr[i][0] ? am->hdr[i] : NULL;
    hdr[8] = NULL;
    struct mft_httpc_trust trust = {ps->tls_server_certs, ps->tls_server_cas, ps->tls_server_pins,
                                    ps->n_pins};
    struct mft_httpc_client_id client = {st->tls_client_cert_pem, st->tls_client_key_pem};
    struct mft_httpc_request rq = {
        .url = am->url,
        .headers = hdr,
        .body = am->body,
        .len = am->len,
        .content_length = 1,
        .timeout_s = 60,
        .trust = &trust,
        .client = client.cert_pem ? &client : NULL,
    };
    static const int waits[] = {0, 2, 10};
    struct mft_err err;
    for (int i = 0; i < 3; i++) {
        sleep((unsigned)waits[i]);
        struct mft_httpc_response resp;
        mft_err_clear(&err);
        if (mft_httpc_post(&rq, &resp, &err) == 0) {
            long status = resp.status;
            mft_httpc_response_free(&resp);
            if (status >= 200 && status <= 299) {
                mft_info("mdn.async_sent", "asynchronous MDN delivered", "as2_message_id",
                         am->message_id, "partner", am->partner->id, "url", am->url);
                mft_metric_inc("mft_ingress_async_mdns_total", "result=\"sent\"");
                goto out;
            }
            mft_err_set(&err, MFT_E_HTTP_STATUS, "the partner answered our MDN with HTTP %ld",
                        status);
            if (!mft_httpc_status_transient(status))
                break;
        } else if (!mft_httpc_err_transient(&err)) {
            break;
        }
    }
    mft_error("mdn.async_failed", err.message, "as2_message_id", am->message_id, "partner",
              am->partner->id, "url", am->url, "error_kind", mft_err_kind_name(err.kind), "detail",
              err.detail);
    mft_metric_inc("mft_ingress_async_mdns_total", "result=\"failed\"");
out:
    mft_registry_unref(am->reg);
    free(am->body);
    free(am);
    return NULL;
}

/* Hands the MDN (body consumed) to a detached sender thread. */
static void async_mdn_post(struct request *rq, const char *from, const char *to, const char *mid,
                           const char *date, const char *ctype, unsigned char *body, size_t len)
{
    struct async_mdn *am = calloc(1, sizeof(*am));
    pthread_t t;
    if (!am) {
        free(body);
        return;
    }
    am->reg = mft_registry_ref(rq->reg);
    am->partner = rq->partner;
    am->body = body;
    am->len = len;
    snprintf(am->url, sizeof(am->url), "%s", rq->async_url);
    snprintf(am->message_id, sizeof(am->message_id), "%s", rq->message_id);
    snprintf(am->hdr[0], sizeof(am->hdr[0]), "AS2-Version: 1.2");
    snprintf(am->hdr[1], sizeof(am->hdr[1]), "AS2-From: %s", from);
    snprintf(am->hdr[2], sizeof(am->hdr[2]), "AS2-To: %s", to);
    snprintf(am->hdr[3], sizeof(am->hdr[3]), "Message-ID: %s", mid);
    snprintf(am->hdr[4], sizeof(am->hdr[4]), "Date: %s", date);
    snprintf(am->hdr[5], sizeof(am->hdr[5]), "MIME-Version: 1.0");
    snprintf(am->hdr[6], sizeof(am->hdr[6]), "Content-Type: %s", ctype);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, async_mdn_run, am) != 0) {
        mft_error("mdn.async_failed", "cannot start the MDN sender thread", "as2_message_id",
                  rq->message_id);
        mft_registry_unref(am->reg);
        free(am->body);
        free(am);
    }
    pthread_attr_destroy(&attr);
}

/*
 * Sends an MDN. disposition is the part after "automatic-action/MDN-sent-
 * automatically; " (e.g. "processed/error: decryption-failed"). Signs it with
 * the station's signing key when the partner's settings say so.
 */
static enum MHD_Result answer_mdn(struct request *rq, struct MHD_Connection *conn,
                                  const char *disposition, const struct mft_as2_result *res,
                                  const char *text, int *signed_out)
{
    struct mft_err err;
    char *ctype = NULL;
    unsigned char *body = NULL;
    size_t body_len = 0;
    const struct mft_keypair *signer = NULL;
    const char *sign_md = "SHA256";
    mft_err_clear(&err);
    if (rq->station && rq->station->signing.key && rq->partner) {
        int want = res ? res->signed_receipt : 0;
        if (rq->partner->mdn_signing == MFT_MDN_SIGN_ALWAYS ||
            (rq->partner->mdn_signing == MFT_MDN_SIGN_IF_REQUESTED && want))
            signer = &rq->station->signing;
        if (res && res->receipt_micalg[0])
            sign_md = res->receipt_micalg;
    }
    struct mft_mdn_info info;
    memset(&info, 0, sizeof(info));
    char ua[200];
    snprintf(ua, sizeof(ua), "mft AS2 gateway (%s)", rq->in->hostname);
    info.reporting_ua = ua;
    info.original_recipient = rq->as2_to;
    info.final_recipient = rq->as2_to;
    info.original_message_id = rq->message_id;
    info.disposition = disposition;
    info.mic_b64 = res && res->mic_b64[0] ? res->mic_b64 : NULL;
    info.mic_alg = res && res->mic_b64[0] ? res->mic_alg : NULL;
    info.text = text;
    if (mft_mdn_build(&info, signer, sign_md, &ctype, &body, &body_len, &err) < 0) {
        mft_error("mdn.build_failed", err.message, "message_id", rq->message_id, "detail",
                  err.detail);
        return answer_error(conn, 500, &err);
    }
    if (signed_out)
        *signed_out = signer != NULL;
    char from[140], to[140], mid[300], date[64];
    mft_as2_id_header(rq->as2_to, from, sizeof(from));
    mft_as2_id_header(rq->as2_from, to, sizeof(to));
    char id[37];
    mft_uuid4(id);
    snprintf(mid, sizeof(mid), "<%s@%s>", id, rq->in->hostname);
    mft_http_date(date, sizeof(date));
    if (rq->async_url[0]) {
        async_mdn_post(rq, from, to, mid, date, ctype, body, body_len);
        free(ctype);
        return answer_text(conn, 200, "received; the MDN follows asynchronously");
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(body_len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "AS2-Version", "1.2");
    MHD_add_response_header(r, "AS2-From", from);
    MHD_add_response_header(r, "AS2-To", to);
    MHD_add_response_header(r, "Message-ID", mid);
    MHD_add_response_header(r, "Date", date);
    MHD_add_response_header(r, "MIME-Version", "1.0");
    /* RFC 6017: we take several documents in one message (one MessageReceived,
     * several payloads) and answer resends by Message-ID (duplicates). */
    MHD_add_response_header(r, "EDIINT-Features", "multiple-attachments, AS2-Reliability");
    MHD_add_response_header(r, "Content-Type", ctype);
    free(ctype);
    enum MHD_Result ret = MHD_queue_response(conn, 200, r);
    MHD_destroy_response(r);
    count_status(200);
    return ret;
}

static void reject(struct request *rq, const char *stage, unsigned status, const char *disposition,
                   const struct mft_err *err)
{
    const struct mft_tls_facts *facts = rq->tls ? mft_tlssrv_conn_facts(rq->tls) : NULL;
    struct rejection r = {
        .stage = stage,
        .peer_address = rq->peer_address,
        .sni = facts ? facts->sni : "",
        .station_id = rq->station ? rq->station->id : "",
        .partner_id = rq->partner ? rq->partner->id : "",
        .as2_from = rq->as2_from,
        .as2_to = rq->as2_to,
        .as2_message_id = rq->message_id,
        .http_status = status,
        .mdn_disposition = disposition,
        .tls = facts,
        .peer_cert = rq->tls ? mft_tlssrv_conn_peer(rq->tls) : NULL,
    };
    events_rejected(rq->in, &r, err);
}

static void peer_address_of(struct MHD_Connection *conn, char *out, size_t outlen)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (ci && ci->client_addr) {
        const struct sockaddr_in *sa = (const struct sockaddr_in *)ci->client_addr;
        char ip[64];
        if (sa->sin_family == AF_INET && inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip)))
            snprintf(out, outlen, "%s:%u", ip, ntohs(sa->sin_port));
    }
}

/*
 * The connection against the partner AS2-From names: the version and suite
 * its TLS policy permits (several partners may share a CA, and a partner
 * without a certificate is known only now), then the TLS client certificate: it must be
 * one registered for that partner. A connection without one (possible only
 * when some partner's policy makes it optional) is that partner's only if its
 * own policy does; it is then identified by AS2-From alone. Returns 0, or -1
 * with the 403 refusal in rq->fail.
 */
static int check_client_cert(struct request *rq)
{
    if (mft_tlssrv_conn_policy(rq->tls, &rq->partner->tls_policy, rq->partner->id, &rq->fail) < 0) {
        rq->fail_status = 403;
        mft_err_detail(&rq->fail, "AS2-From %s", rq->as2_from);
        return -1;
    }
    X509 *peer = mft_tlssrv_conn_peer(rq->tls);
    if (!peer && mft_tlssrv_conn_has_cert(rq->tls)) { /* GnuTLS read it, OpenSSL cannot */
        rq->fail_status = 403;
        mft_err_set(&rq->fail, MFT_E_TLS_CLIENT_CERT_UNTRUSTED,
                    "the client's TLS certificate cannot be parsed (OpenSSL refused its DER)");
        mft_err_detail(&rq->fail, "AS2-From %s", rq->as2_from);
        return -1;
    }
    if (!peer) {
        if (rq->partner->tls_policy.client_cert_optional)
            return 0;
        rq->fail_status = 403;
        mft_err_set(&rq->fail, MFT_E_TLS_CLIENT_CERT_MISSING,
                    "the client presented no TLS certificate, which partner %s's policy requires",
                    rq->partner->id);
        mft_err_detail(&rq->fail, "AS2-From %s; tls_policy.client_certificate is \"required\"",
                       rq->as2_from);
        return -1;
    }
    if (mft_tlssrv_cert_is_partners(peer, mft_tlssrv_conn_peer_chain(rq->tls), rq->partner))
        return 0;
    struct mft_x509_facts f;
    mft_x509_facts(peer, &f);
    rq->fail_status = 403;
    mft_err_set(&rq->fail, MFT_E_TLS_CLIENT_CERT_NOT_PARTNERS,
                "the TLS client certificate is not the one registered for partner %s",
                rq->partner->id);
    mft_err_detail(&rq->fail, "client certificate subject=%s issuer=%s sha256=%s", f.subject,
                   f.issuer, f.sha256);
    return -1;
}

/* First call: headers only. Returns 0 to go on reading the body. */
static void begin(struct request *rq, struct MHD_Connection *conn, const char *url,
                  const char *method)
{
    struct ingress *in = rq->in;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    rq->tls = ci ? ci->socket_context : NULL;
    peer_address_of(conn, rq->peer_address, sizeof(rq->peer_address));
    mft_uuid4(rq->uuid);
    rq->received_ms = mft_now_ms();
    int long_from = header_copy(conn, "AS2-From", rq->as2_from, sizeof(rq->as2_from)) < 0;
    int long_to = header_copy(conn, "AS2-To", rq->as2_to, sizeof(rq->as2_to)) < 0;
    /* the MDN repeats the Message-ID in a field of at most 998 bytes (RFC 5322) */
    int long_mid = header_copy(conn, "Message-ID", rq->message_id, sizeof(rq->message_id)) < 0 ||
                   strlen(rq->message_id) > MFT_AS2_MAX_MESSAGE_ID;

    if (strcmp(method, "POST") != 0) {
        rq->fail_status = 405;
        mft_err_set(&rq->fail, MFT_E_HTTP_BAD_REQUEST, "AS2 messages are sent with POST");
        return;
    }
    if (strcmp(url, "/as2") != 0 && strncmp(url, "/as2/", 5) != 0) {
        rq->fail_status = 404;
        mft_err_set(&rq->fail, MFT_E_HTTP_BAD_REQUEST, "the AS2 endpoint is /as2");
        return;
    }
    if (long_from || long_to || long_mid) { /* refused before anything is kept */
        rq->fail_status = 400;
        mft_err_set(&rq->fail, MFT_E_HTTP_BAD_REQUEST, "AS2 header too long:%s%s%s",
                    long_from ? " AS2-From" : "", long_to ? " AS2-To" : "",
                    long_mid ? " Message-ID" : "");
        mft_err_detail(&rq->fail, "AS2-From and AS2-To: at most %zu bytes, Message-ID: %d",
                       sizeof(rq->as2_from) - 1, MFT_AS2_MAX_MESSAGE_ID);
        snprintf(rq->fail.remedy, sizeof(rq->fail.remedy),
                 "the partner must shorten the header (Message-ID: at most %d bytes, as the MDN "
                 "repeats it in one line)",
                 MFT_AS2_MAX_MESSAGE_ID);
        return;
    }
    const char *cl = header(conn, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > in->max_body) {
        rq->fail_status = 413;
        mft_err_set(&rq->fail, MFT_E_HTTP_TOO_LARGE, NULL);
        mft_err_detail(&rq->fail, "Content-Length %s > limit %llu", cl, in->max_body);
        return;
    }
    if (!rq->as2_from[0] || !rq->as2_to[0] || !rq->message_id[0] || !header(conn, "Content-Type")) {
        rq->fail_status = 400;
        mft_err_set(&rq->fail, MFT_E_HTTP_BAD_REQUEST,
                    "an AS2 request needs AS2-From, AS2-To, Message-ID and Content-Type");
        mft_err_detail(&rq->fail, "missing:%s%s%s%s", rq->as2_from[0] ? "" : " AS2-From",
                       rq->as2_to[0] ? "" : " AS2-To", rq->message_id[0] ? "" : " Message-ID",
                       header(conn, "Content-Type") ? "" : " Content-Type");
        return;
    }
    rq->reg = ingress_registry(in);
    rq->station = rq->reg ? mft_registry_station_by_as2(rq->reg, rq->as2_to) : NULL;
    if (!rq->station) {
        rq->fail_status = 200; /* negative MDN */
        mft_err_set(&rq->fail, MFT_E_UNKNOWN_STATION, "AS2-To \"%s\" names no station", rq->as2_to);
        return;
    }
    rq->partner = mft_registry_partner_by_as2(rq->reg, rq->station, rq->as2_from);
    if (!rq->partner) {
        rq->fail_status = 200;
        mft_err_set(&rq->fail, MFT_E_UNKNOWN_PARTNER,
                    "AS2-From \"%s\" names no partner of station %s", rq->as2_from,
                    rq->station->id);
        return;
    }
    if (rq->tls && check_client_cert(rq) < 0)
        return;
    struct mft_err err;
    mft_err_clear(&err);
    if (mft_payload_begin(in->payloads, rq->uuid, "message.as2", &rq->spool, &err) < 0) {
        rq->fail_status = 503;
        rq->fail = err;
    }
}

/* The host of an http(s) URL into out (lower-cased, IPv6 without brackets). */
static void url_host(const char *url, char *out, size_t outlen)
{
    const char *p = strstr(url, "://");
    size_t n = 0;
    out[0] = '\0';
    if (!p)
        return;
    p += 3;
    const char *at = strpbrk(p, "@/?#");
    if (at && *at == '@')
        p = at + 1;
    if (*p == '[') {
        const char *e = strchr(++p, ']');
        n = e ? (size_t)(e - p) : 0;
    } else {
        n = strcspn(p, ":/?#");
    }
    if (n >= outlen)
        n = 0;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)p[i]);
    out[n] = '\0';
}

/*
 * Where an asynchronous MDN may go: the host of the partner's registered AS2
 * URL (its "send" settings); a partner registered without one may name any
 * host only when it authenticated with its TLS client certificate.
 */
static int async_url_allowed(const struct request *rq)
{
    char want[256], got[256];
    url_host(rq->async_url, got, sizeof(got));
    if (!got[0])
        return 0;
    if (rq->partner->send.enabled && rq->partner->send.url[0]) {
        url_host(rq->partner->send.url, want, sizeof(want));
        return strcmp(want, got) == 0;
    }
    return rq->tls && mft_tlssrv_conn_peer(rq->tls);
}

/* Negative MDN for an AS2-level failure, with the failure event. */
static enum MHD_Result fail_as2(struct request *rq, struct MHD_Connection *conn,
                                const struct mft_as2_result *res, const struct mft_err *err)
{
    char disposition[200];
    snprintf(disposition, sizeof(disposition), "processed/error: %s",
             mft_as2_disposition_modifier_err(err));
    char text[1500];
    snprintf(text, sizeof(text),
             "The AS2 message %s was received but not accepted.\r\n%s: %s\r\nRemedy: %s\r\n",
             rq->message_id, mft_err_kind_name(err->kind), err->message, err->remedy);
    reject(rq, "as2", 200, disposition, err);
    return answer_mdn(rq, conn, disposition, res, text, NULL);
}

static enum MHD_Result fail_unavailable(struct request *rq, struct MHD_Connection *conn,
                                        const struct mft_err *err)
{
    reject(rq, "as2", 503, "", err);
    return answer_error(conn, 503, err);
}

/*
 * An asynchronous MDN from a partner for a message egress sent: recognised by
 * its content whatever the URL, judged and recorded by mft_outbox (the same
 * code egress uses for synchronous MDNs). Answers 200 once the outcome is
 * durable, 400 for an MDN that answers no message of ours or is not an MDN,
 * 503 when Redis or Kafka cannot take it (the partner retries).
 */
static enum MHD_Result take_mdn(struct request *rq, struct MHD_Connection *conn, const char *ctype,
                                const unsigned char *body, size_t len)
{
    struct ingress *in = rq->in;
    struct mft_outbox ob = {in->store, in->bus, in->bus_timeout_ms};
    struct mft_outbox_mdn_result res;
    struct mft_err err;
    mft_err_clear(&err);
    int rc = mft_outbox_take_mdn(&ob, rq->reg, NULL, rq->partner->id, ctype, body, len, NULL, 0,
                                 &res, &err);
    if (rc < 0)
        return fail_unavailable(rq, conn, &err);
    if (rc > 0) {
        reject(rq, "as2", 400, "", &err);
        return answer_error(conn, 400, &err);
    }
    mft_info("mdn.received", "asynchronous MDN taken", "message_id", res.uuid, "partner",
             rq->partner->id, "state", res.state, "disposition", res.disposition, "repeat",
             res.already_final ? "1" : "0");
    mft_metric_inc("mft_ingress_mdns_total", "");
    return answer_text(conn, 200, "MDN received");
}

/* How long a Message-ID stays claimed if the process dies while receiving it. */
#define DUP_CLAIM_MS (15L * 60 * 1000)

static enum MHD_Result finish(struct request *rq, struct MHD_Connection *conn)
{
    struct ingress *in = rq->in;
    struct mft_err err;
    struct mft_as2_result res;
    struct mft_payload_ref refs[MFT_AS2_MAX_PAYLOADS];
    const unsigned char *body = NULL;
    size_t body_len = 0;
    enum MHD_Result ret;
    int kept = 0, claimed = 0;
    char dup_id[sizeof(rq->message_id)];
    memset(&res, 0, sizeof(res));
    mft_err_clear(&err);

    if (rq->fail_status) {
        if (rq->fail_status == 200) { /* unknown station / partner: negative MDN */
            ret = fail_as2(rq, conn, NULL, &rq->fail);
        } else {
            reject(rq, "http", rq->fail_status, "", &rq->fail);
            ret = answer_error(conn, rq->fail_status, &rq->fail);
        }
        goto out;
    }
    if (mft_payload_map(rq->spool, &body, &body_len, &err) < 0) {
        ret = fail_unavailable(rq, conn, &err);
        goto out;
    }
    struct mft_as2_request req = {
        .content_type = header(conn, "Content-Type"),
        .content_transfer_encoding = header(conn, "Content-Transfer-Encoding"),
        .content_disposition = header(conn, "Content-Disposition"),
        .disposition_notification_options = header(conn, "Disposition-Notification-Options"),
        .body = body,
        .body_len = body_len,
        .max_inflated = (size_t)in->max_inflated,
        .spill_dir = mft_payload_tmp_dir(in->payloads),
        .spill_threshold = in->spill_threshold ? (size_t)in->spill_threshold : 1,
    };
    if (mft_outbox_looks_like_mdn(req.content_type, body, body_len)) {
        ret = take_mdn(rq, conn, req.content_type, body, body_len);
        goto out;
    }
    int mdn_wanted = header(conn, "Disposition-Notification-To") != NULL;
    const char *mdn_mode = mdn_wanted ? "sync" : "none";
    if (mdn_wanted && header(conn, "Receipt-Delivery-Option")) {
        int cut =
            header_copy(conn, "Receipt-Delivery-Option", rq->async_url, sizeof(rq->async_url)) < 0;
        if (cut || (strncmp(rq->async_url, "https://", 8) != 0 &&
                    strncmp(rq->async_url, "http://", 7) != 0)) {
            rq->async_url[0] = '\0'; /* mailto: and the like: answered synchronously */
        } else if (!async_url_allowed(rq)) {
            /* never POST to wherever a request names (server-side request
             * forgery): the MDN goes back in this answer instead */
            mft_warn("mdn.async_refused",
                     "the asynchronous MDN URL is not on the partner's registered host; "
                     "answering synchronously",
                     "message_id", rq->message_id, "partner", rq->partner->id, "url",
                     rq->async_url);
            rq->async_url[0] = '\0';
        } else {
            mdn_mode = "async";
        }
    }
    if (mft_as2_receive(&req, rq->station, rq->partner, &res, &err) < 0) {
        /* a temporary file we could not write is our outage, not the message's
         * fault: 503 (the partner retries), never a negative MDN */
        ret = mft_err_local_outage(err.kind) ? fail_unavailable(rq, conn, &err)
                                             : fail_as2(rq, conn, &res, &err);
        goto out;
    }

    /* A duplicate: same partner, same Message-ID (with or without its angle
     * brackets), already processed successfully; a failed one is not recorded.
     * The Message-ID is claimed first, so that copies arriving together are not
     * all kept: a copy that finds it claimed is answered 503 (retry), and its
     * retry then finds the first copy recorded and gets the duplicate MDN. */
    char first[64];
    mft_as2_bare_message_id(rq->message_id, dup_id, sizeof(dup_id));
    claimed = mft_store_dup_claim(in->store, rq->partner->id, dup_id, rq->uuid, DUP_CLAIM_MS, &err);
    if (claimed < 0) {
        claimed = 0;
        ret = fail_unavailable(rq, conn, &err);
        goto out;
    }
    if (claimed == 0) {
        mft_err_set(&err, MFT_E_DUPLICATE,
                    "a copy of this message is being received on another connection");
        mft_err_detail(&err, "partner %s, Message-ID %s", rq->partner->id, rq->message_id);
        snprintf(err.remedy, sizeof(err.remedy),
                 "nothing to do: the partner's retry gets the MDN of the first copy");
        reject(rq, "as2", 503, "", &err);
        ret = answer_error(conn, 503, &err);
        goto out;
    }
    int dup = mft_store_dup_get(in->store, rq->partner->id, dup_id, first, sizeof(first), &err);
    if (dup < 0) {
        ret = fail_unavailable(rq, conn, &err);
        goto out;
    }
    if (dup == 1) {
        mft_info("message.duplicate", "duplicate answered, nothing delivered", "message_id",
                 rq->message_id, "partner", rq->partner->id, "first", first);
        mft_metric_inc("mft_ingress_duplicates_total", "");
        ret = answer_mdn(rq, conn, "processed/warning: duplicate-document", &res,
                         "This message was received before; the first copy was kept.\r\n", NULL);
        goto out;
    }

    /* Keep the payloads (fsync'd) and the raw message. */
    for (size_t i = 0; i < res.n_payloads; i++) {
        char name[32];
        snprintf(name, sizeof(name), "payload-%zu", i + 1);
        if (mft_payload_put(in->payloads, rq->uuid, name, res.payloads[i].data, res.payloads[i].len,
                            &refs[i], &err) < 0) {
            ret = fail_unavailable(rq, conn, &err);
            goto out;
        }
        kept = 1;
    }
    if (body) {
        mft_payload_unmap(body, body_len);
        body = NULL;
    }
    if (in->keep_raw) {
        struct mft_payload_writer *w = rq->spool;
        rq->spool = NULL;
        if (mft_payload_commit(w, NULL, &err) < 0) {
            ret = fail_unavailable(rq, conn, &err);
            goto out;
        }
    }

    /* Publish, wait for the broker, then record the state in Redis. */
    int mdn_signed = rq->partner->mdn_signing == MFT_MDN_SIGN_ALWAYS ||
                     (rq->partner->mdn_signing == MFT_MDN_SIGN_IF_REQUESTED && res.signed_receipt);
    mdn_signed = mdn_signed && rq->station->signing.key && mdn_wanted;
    struct received m = {
        .uuid = rq->uuid,
        .as2_message_id = rq->message_id,
        .as2_from = rq->as2_from,
        .as2_to = rq->as2_to,
        .station = rq->station,
        .partner = rq->partner,
        .res = &res,
        .refs = refs,
        .mdn_mode = mdn_mode,
        .mdn_disposition = mdn_wanted ? "processed" : "",
        .mdn_signed = mdn_signed,
        .peer_address = rq->peer_address,
        .tls = rq->tls ? mft_tlssrv_conn_facts(rq->tls) : NULL,
        .peer_cert = rq->tls ? mft_tlssrv_conn_peer(rq->tls) : NULL,
        .received_ms = rq->received_ms,
    };
    if (events_received(in, &m, &err) < 0) {
        ret = fail_unavailable(rq, conn, &err);
        goto out;
    }
    char size[32], ms[32];
    unsigned long long total = 0;
    for (size_t i = 0; i < res.n_payloads; i++)
        total += refs[i].size;
    snprintf(size, sizeof(size), "%llu", total);
    snprintf(ms, sizeof(ms), "%lld", rq->received_ms);
    const char *fields[] = {"state",
                            "received",
                            "direction",
                            "inbound",
                            "station",
                            rq->station->id,
                            "partner",
                            rq->partner->id,
                            "as2_message_id",
                            rq->message_id,
                            "as2_from",
                            rq->as2_from,
                            "as2_to",
                            rq->as2_to,
                            "received_ms",
                            ms,
                            "filename",
                            res.n_payloads ? res.payloads[0].filename : "",
                            "size",
                            size,
                            "payload_uri",
                            res.n_payloads ? refs[0].uri : "",
                            "sha256",
                            res.n_payloads ? refs[0].sha256 : "",
                            "mic",
                            res.mic_b64,
                            "mic_alg",
                            res.mic_alg,
                            "mdn_mode",
                            mdn_mode,
                            "mdn_disposition",
                            m.mdn_disposition,
                            NULL};
    if (mft_store_message_put(in->store, rq->uuid, rq->station->id, rq->partner->id, dup_id,
                              rq->received_ms, in->dup_ttl_s, fields, &err) < 0) {
        ret = fail_unavailable(rq, conn, &err);
        goto out;
    }
    kept = 0; /* the message is ours now: keep its files */
    mft_metric_inc("mft_ingress_messages_total", "");
    mft_metric_add("mft_ingress_bytes_total", "", (double)total);
    mft_info("message.received", "message received", "message_id", rq->uuid, "as2_message_id",
             rq->message_id, "station", rq->station->id, "partner", rq->partner->id, "mic",
             res.mic_b64, "size", size);
    if (!mdn_wanted) {
        ret = answer_text(conn, 200, "received");
        goto out;
    }
    ret =
        answer_mdn(rq, conn, "processed", &res, "The AS2 message was received and kept.\r\n", NULL);
out:
    if (claimed) {
        struct mft_err rerr;
        mft_err_clear(&rerr);
        mft_store_dup_release(in->store, rq->partner->id, dup_id, rq->uuid, &rerr);
    }
    if (body)
        mft_payload_unmap(body, body_len);
    if (kept)
        mft_payload_remove_message(in->payloads, rq->uuid);
    mft_as2_result_free(&res);
    return ret;
}

enum MHD_Result receive_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                const char *method, const char *version, const char *upload_data,
                                size_t *upload_data_size, void **con_cls)
{
    struct ingress *in = cls;
    struct request *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq)
            return MHD_NO;
        rq->in = in;
        *con_cls = rq;
        atomic_fetch_add(&in->inflight, 1);
        mft_metric_add("mft_ingress_inflight", "", 1);
        begin(rq, conn, url, method);
        if (rq->fail_status == 413) { /* do not read a body we will not take */
            reject(rq, "http", 413, "", &rq->fail);
            return answer_error(conn, 413, &rq->fail);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->fail_status)
            return MHD_YES; /* discard */
        if (mft_payload_size(rq->spool) + n > in->max_body) {
            rq->fail_status = 413;
            mft_err_set(&rq->fail, MFT_E_HTTP_TOO_LARGE, NULL);
            mft_err_detail(&rq->fail, "body larger than the limit of %llu bytes", in->max_body);
            mft_payload_abort(rq->spool);
            rq->spool = NULL;
            return MHD_YES;
        }
        struct mft_err err;
        mft_err_clear(&err);
        if (mft_payload_write(rq->spool, upload_data, n, &err) < 0) {
            rq->fail_status = 503;
            rq->fail = err;
            mft_payload_abort(rq->spool);
            rq->spool = NULL;
        }
        return MHD_YES;
    }
    if (rq->started)
        return MHD_YES; /* already answered */
    rq->started = 1;
    return finish(rq, conn);
}

void receive_completed(void *cls, struct MHD_Connection *conn, void **con_cls, int toe)
{
    struct ingress *in = cls;
    struct request *rq = *con_cls;
    if (!rq)
        return;
    mft_payload_abort(rq->spool);
    mft_registry_unref(rq->reg);
    free(rq);
    *con_cls = NULL;
    atomic_fetch_sub(&in->inflight, 1);
    mft_metric_add("mft_ingress_inflight", "", -1);
}

void receive_connection(void *cls, struct MHD_Connection *conn, void **socket_context, int toe)
{
    struct ingress *in = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        /* GnuTLS writes a handshake flight in several records: with Nagle
         * the last one can wait for the client's delayed ACK (40 ms) */
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        int one = 1;
        if (fd)
            setsockopt(fd->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
        char peer[64];
        peer_address_of(conn, peer, sizeof(peer));
        if (ci && ci->tls_session)
            *socket_context = mft_tlssrv_conn_begin(in->tls, ci->tls_session, peer);
        return;
    }
    struct mft_tlssrv_conn *c = *socket_context;
    if (!c)
        return;
    if (!mft_tlssrv_conn_established(c)) {
        struct mft_err err;
        mft_err_clear(&err);
        if (mft_tlssrv_conn_failure(c, &err) == 0) {
            const struct mft_tls_facts *facts = mft_tlssrv_conn_facts(c);
            struct rejection r = {
                .stage = "tls_handshake",
                .peer_address = facts->peer_address,
                .sni = facts->sni,
                .station_id = facts->station_id,
                .partner_id = facts->partner_id,
                .tls = facts,
                .tls_failed = 1,
                .peer_cert = mft_tlssrv_conn_peer(c),
            };
            events_rejected(in, &r, &err);
        }
    }
    if (mft_tlssrv_conn_verified_from_memory(c))
        mft_metric_add("mft_ingress_tls_verify_cache_hits_total", "", 1);
    mft_tlssrv_conn_end(c);
    *socket_context = NULL;
}
