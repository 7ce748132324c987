/*
 * mft_dial — the httpc request's TLS settings for a partner (see mft_dial.h).
 * Used by egress for every attempt and by mftctl test-connection. Pure: no
 * I/O, no allocation; everything points into the registry snapshot.
 */
#include "mft_dial.h"

void mft_dial_request(const struct mft_partner *p, struct mft_dial *d, struct mft_httpc_request *rq)
{
    static const enum mft_httpc_trust_mode modes[] = {
        [MFT_TLS_TRUST_ANY] = MFT_HTTPC_TRUST_ANY,
        [MFT_TLS_TRUST_CERTIFICATE] = MFT_HTTPC_TRUST_CERTS,
        [MFT_TLS_TRUST_CA] = MFT_HTTPC_TRUST_CAS,
        [MFT_TLS_TRUST_PIN] = MFT_HTTPC_TRUST_PINS,
    };
    const struct mft_partner_send *ps = &p->send;
    const struct mft_keypair *tc = &p->station->tls_client;
    const struct mft_tls_policy *pol = &p->tls_policy;

    d->trust.certs = ps->tls_server_certs;
    d->trust.cas = ps->tls_server_cas;
    d->trust.pins = ps->tls_server_pins;
    d->trust.n_pins = ps->n_pins;
    d->client.cert = tc->cert;
    d->client.chain = tc->chain;
    d->client.key = tc->key;
    rq->url = ps->url;
    rq->timeout_s = ps->timeout_s;
    rq->trust = &d->trust;
    rq->client_keys = tc->cert ? &d->client : NULL;
    rq->tls_min_version = pol->min_version;
    rq->tls_max_version = pol->max_version;
    rq->tls_ciphers = pol->n_ciphers ? (const char(*)[64])pol->ciphers : NULL;
    rq->n_tls_ciphers = pol->n_ciphers;
    rq->tls_trust = (unsigned)pol->trust < sizeof(modes) / sizeof(modes[0]) ? modes[pol->trust]
                                                                            : MFT_HTTPC_TRUST_ANY;
    rq->partner_id = p->id;
    rq->station_id = p->station_id;
}
