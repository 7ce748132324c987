/*
 * mft_dial — how the gateway dials a partner over HTTPS: the TLS parts of an
 * mft_httpc request (server trust, the station's client identity, the
 * partner's TLS policy) made from the registry, in one place, so that egress
 * sending a message and `mftctl test-connection` checking the connection use
 * exactly the same settings.
 */
#ifndef MFT_DIAL_H
#define MFT_DIAL_H

#include "mft_httpc.h"
#include "mft_registry.h"

/* What a request points into: keep it alive as long as the request. */
struct mft_dial {
    struct mft_httpc_trust trust;
    struct mft_httpc_client_keys client;
};

/*
 * Sets rq's url (the partner's send.url), trust, client_keys (the station's
 * tls_client keypair, parsed once in the registry), TLS policy (versions,
 * cipher suites, server trust mode), timeout and the partner / station labels
 * of the handshake facts. Everything is borrowed from p (valid while the
 * registry reference is held) and d. Other fields of rq are left as they are.
 */
void mft_dial_request(const struct mft_partner *p, struct mft_dial *d,
                      struct mft_httpc_request *rq);

#endif
