/*
 * ctl_tls — `mftctl test-connection PARTNER`: a pre-flight check of the TLS
 * connection egress would open to a partner. Loads the registry (Redis +
 * MFT_MASTER_KEY, as egress does), builds the request with mft_dial — the
 * same trust, station client certificate and TLS policy as egress — and
 * performs the TLS handshake alone (mft_httpc_handshake): no message is sent.
 * With --http it then POSTs an empty body (no AS2 headers, no message) to see
 * whether the server refuses our certificate in HTTP, as nginx does with a
 * 400. Prints the verdict (OK with the negotiated facts, or the error kind,
 * message and remedy) and every raw fact of the handshake, in the field names
 * of the TlsHandshake event message.
 */
#include "ctl_tls.h"
#include "mft_dial.h"
#include "mft_events.h"
#include "mft_httpc.h"
#include "mft_registry.h"
#include "mft_secret.h"
#include "mft_store.h"
#include "mft/v1/events.pb-c.h"

#include <openssl/crypto.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The facts as JSON, exactly as DeliveryUpdated.tls renders in events. */
static json_t *facts_json(const struct mft_tls_facts *f)
{
    Mft__V1__DeliveryUpdated ev = MFT__V1__DELIVERY_UPDATED__INIT;
    struct mft_events_tls b;
    json_t *all, *tls = NULL;
    unsigned char *buf;
    size_t len;

    ev.tls = mft_events_tls_fill(&b, f);
    len = mft__v1__delivery_updated__get_packed_size(&ev);
    if (!(buf = malloc(len ? len : 1)))
        return NULL;
    mft__v1__delivery_updated__pack(&ev, buf);
    all = mft_event_to_json(MFT_CE_DELIVERY_UPDATED, buf, len);
    free(buf);
    if (all && (tls = json_object_get(all, "tls")))
        json_incref(tls);
    json_decref(all);
    return tls;
}

static void usage_err(const char *msg)
{
    fprintf(stderr, "mftctl test-connection: %s\n", msg);
}

int ctl_test_connection(const struct mft_cfg_var *vars, int argc, char **argv, int *json,
                        json_t **view)
{
    const char *partner = NULL;
    long timeout = 10;
    int http = 0, rc = 1;
    unsigned char mk[MFT_SECRET_KEY_LEN];
    struct mft_store *store = NULL;
    struct mft_registry *reg = NULL;
    struct mft_err err;
    struct mft_tls_facts facts;
    struct mft_dial dial;
    struct mft_httpc_request rq;
    struct mft_httpc_response resp;

    *view = NULL;
    *json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            *json = strcmp(argv[++i], "json") == 0;
            if (!*json && strcmp(argv[i], "text") != 0) {
                usage_err("-o takes json or text");
                return 2;
            }
        } else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            char *end;
            timeout = strtol(argv[++i], &end, 10);
            if (*end || timeout < 1 || timeout > 300) {
                usage_err("--timeout takes 1..300 seconds");
                return 2;
            }
        } else if (strcmp(argv[i], "--http") == 0) {
            http = 1;
        } else if (argv[i][0] == '-' || partner) {
            usage_err("usage: mftctl test-connection PARTNER [-o json] [--timeout S] [--http]");
            return 2;
        } else {
            partner = argv[i];
        }
    }
    if (!partner) {
        usage_err("which partner?");
        return 2;
    }
    mft_err_clear(&err);
    memset(&resp, 0, sizeof(resp));
    if (mft_secret_parse_master_key(mft_cfg_get(vars, "MFT_MASTER_KEY"), mk, &err) != 0 ||
        mft_store_open(mft_cfg_get(vars, "MFT_REDIS_URL"), &store, &err) != 0 ||
        mft_registry_load(store, mk, &reg, &err) != 0) {
        fprintf(stderr, "mftctl test-connection: %s: %s%s%s\n", mft_err_kind_name(err.kind),
                err.message, err.detail[0] ? ": " : "", err.detail);
        goto out;
    }
    const struct mft_partner *p = mft_registry_partner(reg, partner);
    if (!p || !p->send.enabled) {
        fprintf(stderr, "mftctl test-connection: partner \"%s\" %s\n", partner,
                p ? "has no \"send\" settings (nothing to dial)" : "is not registered");
        goto out;
    }
    memset(&rq, 0, sizeof(rq));
    memset(&facts, 0, sizeof(facts));
    mft_dial_request(p, &dial, &rq);
    rq.connect_timeout_s = timeout;
    rq.timeout_s = timeout;
    rq.facts_out = &facts;
    int ok = mft_httpc_handshake(&rq, &err) == 0;
    if (ok && http) { /* an empty POST: no AS2 headers, no message */
        static const char *const hdr[] = {"Content-Type: text/plain", NULL};
        rq.headers = hdr;
        rq.body = (const unsigned char *)"";
        rq.content_length = 1;
        rq.facts_out = NULL; /* keep the handshake's facts */
        ok = mft_httpc_post(&rq, &resp, &err) == 0;
    }
    json_t *v = json_object();
    json_object_set_new(v, "partner", json_string(p->id));
    json_object_set_new(v, "station", json_string(p->station_id));
    json_object_set_new(v, "url", json_string(p->send.url));
    json_object_set_new(v, "verdict", json_string(ok ? "OK" : mft_err_kind_name(err.kind)));
    if (ok) {
        char neg[128];
        snprintf(neg, sizeof(neg), "TLS handshake completed: %s %s", facts.version, facts.cipher);
        json_object_set_new(v, "message", json_string(neg));
    } else {
        json_object_set_new(v, "message", json_string(err.message));
        json_object_set_new(v, "remedy", json_string(err.remedy));
        json_object_set_new(v, "detail", json_string(err.detail));
    }
    if (http && resp.status)
        json_object_set_new(v, "http_status", json_integer(resp.status));
    json_object_set_new(v, "tls", facts.direction[0] ? facts_json(&facts) : json_null());
    *view = v;
    rc = ok ? 0 : 1;
out:
    OPENSSL_cleanse(mk, sizeof(mk));
    mft_httpc_response_free(&resp);
    mft_registry_unref(reg);
    mft_store_close(store);
    return rc;
}
