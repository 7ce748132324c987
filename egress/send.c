/*
 * send — egress's own logic: accepting SendRequested events and making the
 * attempts that deliver them.
 *
 * Accepting (consumer thread, send_accept): decode, claim the request id
 * (mft:out:req:<id>, so a redelivered event is not sent twice), keep the
 * payload (inline bytes go to the payload store; a claim check is verified
 * against its size and SHA-256), write the record and schedule the first
 * attempt now. Requests that can never be sent are recorded as failed.
 *
 * Attempting (worker threads, send_worker): take a due entry from the retry
 * schedule with a lease (its HTTP timeout plus MFT_EGRESS_LEASE_MS, so a
 * crashed worker's message comes back), build the AS2 message from the
 * partner's settings and the request's overrides, record `sending`, POST it
 * with the station's TLS client certificate, and classify the outcome:
 * transport failures and HTTP 5xx/408/429 retry with exponential back-off and
 * jitter up to the partner's max_attempts; other HTTP errors, negative MDNs,
 * MIC mismatches and bad MDN signatures fail at once. Every resend reuses the
 * original Message-ID (RFC 4130), so the partner's duplicate detection keeps
 * its side idempotent. Workers share nothing but the store, bus and registry.
 */
#include "egress.h"
#include "mft_as2.h"
#include "mft_as2_send.h"
#include "mft_dial.h"
#include "mft_events.h"
#include "mft_httpc.h"
#include "mft_log.h"
#include "mft_ops.h"
#include "mft_smime.h"
#include "mft_time.h"
#include "mft/v1/events.pb-c.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CLAIM_TTL_S (30L * 24 * 3600)

static char *s(const char *v)
{
    return (char *)(v ? v : "");
}

static int record_change(struct egress *eg, const struct mft_outbox_msg *m,
                         const struct mft_outbox_change *c)
{
    struct mft_err e;
    mft_err_clear(&e);
    if (mft_outbox_change(&eg->outbox, m, c, &e) == 0)
        return 0;
    mft_error("outbound.record_failed", e.message, "message_id", m->uuid, "state", c->state,
              "error_kind", mft_err_kind_name(e.kind), "detail", e.detail);
    return -1;
}

/* --- payloads ------------------------------------------------------------- */

/* Maps the file a file:// URI names. Returns 0 and *p, *len (munmap when
 * *len > 0), or -1 with STORAGE. */
static int map_uri(const char *uri, const unsigned char **p, size_t *len, struct mft_err *err)
{
    *p = NULL;
    *len = 0;
    if (strncmp(uri, "file://", 7) != 0 || uri[7] != '/')
        return mft_err_set(err, MFT_E_STORAGE, "the payload URI is not a file:// URI: \"%.200s\"",
                           uri);
    const char *path = uri + 7;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        mft_err_set(err, MFT_E_STORAGE, "the payload cannot be read");
        return mft_err_detail(err, "%s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mft_err_set(err, MFT_E_STORAGE, "the payload is not a regular file: %.200s", path);
    }
    if (st.st_size > 0) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            close(fd);
            mft_err_set(err, MFT_E_STORAGE, "the payload cannot be mapped");
            return mft_err_detail(err, "%s: %s", path, strerror(errno));
        }
        *p = m;
        *len = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

static void sha256_hex(const unsigned char *p, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    EVP_Digest(p, len, md, &n, EVP_sha256(), NULL);
    for (unsigned i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* A file name safe inside a quoted header parameter. */
static void safe_filename(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *c = in; *c && o + 1 < outlen; c++)
        out[o++] = (*c == '"' || *c == '\\' || *c == '/' || (unsigned char)*c < 0x20) ? '_' : *c;
    out[o] = '\0';
}

/* A claim check: the file its URI names must exist and match its size and
 * SHA-256 when given. Returns 0 with *ref filled, or -1 with why (STORAGE). */
static int claim_check(const Mft__V1__PayloadRef *claim, struct mft_payload_ref *ref,
                       struct mft_err *why)
{
    const unsigned char *map;
    size_t map_len;
    memset(ref, 0, sizeof(*ref));
    if (!claim->uri || !*claim->uri)
        return mft_err_set(why, MFT_E_STORAGE, "a claim check has no URI");
    if (map_uri(claim->uri, &map, &map_len, why) < 0)
        return -1;
    snprintf(ref->uri, sizeof(ref->uri), "%s", claim->uri);
    ref->size = map_len;
    sha256_hex(map, map_len, ref->sha256);
    if (map_len)
        munmap((void *)map, map_len);
    if ((claim->size && claim->size != ref->size) ||
        (claim->sha256 && *claim->sha256 && strcasecmp(claim->sha256, ref->sha256) != 0)) {
        mft_err_set(why, MFT_E_STORAGE, "the payload does not match its claim check");
        return mft_err_detail(why, "%s: claim: %llu bytes, sha256 %s; file: %llu bytes, sha256 %s",
                              claim->uri, (unsigned long long)claim->size, s(claim->sha256),
                              (unsigned long long)ref->size, ref->sha256);
    }
    return 0;
}

/* The further documents of a request as the record keeps them: a JSON list
 * of {uri, size, sha256, filename, content_type}, each claim check verified.
 * Returns 0 with *out (NULL when there are none; free it), or -1 with why. */
static int attachments_record(const Mft__V1__SendRequested *ev, char **out, struct mft_err *why)
{
    *out = NULL;
    if (ev->n_attachments == 0)
        return 0;
    json_t *list = json_array();
    for (size_t i = 0; list && i < ev->n_attachments; i++) {
        struct mft_payload_ref ref;
        char fname[256];
        const Mft__V1__PayloadRef *a = ev->attachments[i];
        if (claim_check(a, &ref, why) < 0) {
            mft_err_detail(why, "attachment %zu", i + 1);
            json_decref(list);
            return -1;
        }
        safe_filename(a->filename && *a->filename ? a->filename : "payload.bin", fname,
                      sizeof(fname));
        json_array_append_new(
            list,
            json_pack("{s:s, s:I, s:s, s:s, s:s}", "uri", ref.uri, "size", (json_int_t)ref.size,
                      "sha256", ref.sha256, "filename", fname, "content_type",
                      a->content_type && *a->content_type && !strpbrk(a->content_type, "\r\n")
                          ? a->content_type
                          : "application/octet-stream"));
    }
    *out = list ? json_dumps(list, JSON_COMPACT) : NULL;
    json_decref(list);
    return *out ? 0 : mft_err_set(why, MFT_E_NO_MEMORY, NULL);
}

/* --- accepting ------------------------------------------------------------ */

/* An id usable in Redis keys (mft_store's rule): 1..256 printable ASCII, no
 * space or ':'. */
/* A debug line with the milliseconds each of five stages took (-1: not
 * known): where a slow request spent its time (the egress tail was found so). */
static void log_stages(const char *event, const char *msg, const char *id_key, const char *id,
                       const char *const stages[5], const long long ms[5])
{
    char t[5][24];
    for (int i = 0; i < 5; i++)
        snprintf(t[i], sizeof(t[i]), "%lld", ms[i]);
    mft_debug(event, msg, id_key, id, stages[0], t[0], stages[1], t[1], stages[2], t[2], stages[3],
              t[3], stages[4], t[4]);
}

static int valid_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 256)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] <= ' ' || (unsigned char)id[i] >= 0x7f || id[i] == ':')
            return 0;
    return 1;
}

/* Records a request that can never be sent as failed (and lists it). */
static int accept_failed(struct egress *eg, const char *uuid, const char *request_id,
                         const Mft__V1__SendRequested *ev, const struct mft_err *why)
{
    char created[32];
    long long now = mft_now_ms();
    snprintf(created, sizeof(created), "%lld", now);
    const char *station = ev && valid_id(ev->station_id) ? ev->station_id : "unknown";
    const char *extra[] = {"request_id",
                           s(request_id),
                           "correlation_id",
                           ev ? s(ev->correlation_id) : "",
                           "station",
                           station,
                           "partner",
                           ev ? s(ev->partner_id) : "",
                           "filename",
                           ev ? s(ev->filename) : "",
                           "created_ms",
                           created,
                           "direction",
                           "outbound",
                           NULL};
    struct mft_outbox_msg m = {uuid, request_id, ev ? ev->correlation_id : "",
                               "",   station,    ev ? ev->partner_id : ""};
    struct mft_outbox_change c = {
        .state = MFT_OUT_FAILED,
        .error = why,
        .extra = extra,
        .op = {.station_id = station, .created_ms = now},
    };
    mft_warn("send.refused", why->message, "message_id", uuid, "request_id", s(request_id),
             "error_kind", mft_err_kind_name(why->kind), "detail", why->detail);
    mft_metric_inc("mft_egress_requests_total", "result=\"refused\"");
    if (record_change(eg, &m, &c) == 0)
        return 0;
    /* Only an unreachable Redis or Kafka keeps the request for another try;
     * anything else would block its partition forever: logged above, dropped. */
    return 0;
}

static int valid_choice(const char *v, const char *const *list)
{
    if (!v || !*v)
        return 1;
    for (size_t i = 0; list[i]; i++)
        if (strcmp(v, list[i]) == 0)
            return 1;
    return 0;
}

int send_accept(struct egress *eg, const struct mft_bus_record *rec)
{
    Mft__V1__SendRequested *ev = NULL;
    struct mft_registry *reg = NULL;
    struct mft_err err, why;
    char uuid[64], existing[64], request_id[1001];
    char **kv = NULL;
    size_t nkv = 0;
    int rc = -1;
    char *attachments = NULL;

    long long t_start = mft_now_ms(), t_claimed = 0, t_stored = 0;
    mft_err_clear(&err);
    mft_err_clear(&why);
    mft_uuid4(uuid);
    const char *ce_type = mft_bus_record_header(rec, "ce_type");
    const char *ce_id = mft_bus_record_header(rec, "ce_id");
    if (ce_type && strcmp(ce_type, MFT_CE_SEND_REQUESTED) != 0) {
        mft_warn("send.ignored", "not a SendRequested event", "ce_type", ce_type);
        return 0;
    }
    ev = mft__v1__send_requested__unpack(NULL, rec->value_len, rec->value);
    if (!ev) {
        mft_err_set(&why, MFT_E_MALFORMED_MESSAGE,
                    "the SendRequested event does not decode as mft.v1.SendRequested");
        mft_err_detail(&why, "%s[%d] offset %lld, %zu bytes", rec->topic, rec->partition,
                       rec->offset, rec->value_len);
        snprintf(request_id, sizeof(request_id), "%s", s(ce_id));
        return accept_failed(eg, uuid, request_id, NULL, &why);
    }
    const char *rid = ev && ev->request_id && *ev->request_id ? ev->request_id : s(ce_id);
    snprintf(request_id, sizeof(request_id), "%s", *rid ? rid : uuid);
    if (strlen(rid) >= sizeof(request_id)) {
        mft_err_set(&why, MFT_E_CONFIG, "the request id is longer than %zu characters",
                    sizeof(request_id) - 1);
        rc = accept_failed(eg, uuid, request_id, ev, &why);
        goto out;
    }

    int claimed = mft_store_out_claim(eg->store, request_id, uuid, CLAIM_TTL_S, existing,
                                      sizeof(existing), &err);
    if (claimed < 0)
        goto store_down;
    t_claimed = mft_now_ms();
    if (claimed == 0) {
        int g = mft_store_out_get(eg->store, existing, &kv, &nkv, &err);
        if (g < 0)
            goto store_down;
        if (g == 0) { /* a repeat of a request already accepted */
            mft_info("send.repeat", "request already accepted", "request_id", request_id,
                     "message_id", existing);
            rc = 0;
            goto out;
        }
        snprintf(uuid, sizeof(uuid), "%s", existing); /* claimed, then crashed: go on */
    }

    reg = egress_registry(eg);
    const struct mft_partner *p = reg ? mft_registry_partner(reg, s(ev->partner_id)) : NULL;
    static const char *const signs[] = {"none",   "sha1",   "sha224", "sha256",
                                        "sha384", "sha512", NULL};
    static const char *const ciphers[] = {
        "none",         "aes-128-cbc", "aes-192-cbc", "aes-256-cbc",
        "des-ede3-cbc", "aes-128-gcm", "aes-256-gcm", NULL};
    static const char *const compressions[] = {"none", "before-signing", "after-signing", NULL};
    static const char *const mdns[] = {"sync", "async", "none", NULL};
    const Mft__V1__SendOverrides *ov = ev->overrides;
    if (!p) {
        mft_err_set(&why, MFT_E_UNKNOWN_PARTNER, "partner \"%.64s\" is not registered",
                    s(ev->partner_id));
    } else if (ev->station_id && *ev->station_id && !valid_id(ev->station_id)) {
        mft_err_set(&why, MFT_E_UNKNOWN_STATION, "the station id \"%.64s\" is not a valid id",
                    ev->station_id);
    } else if (ev->station_id && *ev->station_id && strcmp(ev->station_id, p->station_id) != 0) {
        mft_err_set(&why, MFT_E_UNKNOWN_STATION,
                    "partner \"%s\" is not a partner of station \"%.64s\"", p->id, ev->station_id);
    } else if (!p->send.enabled) {
        mft_err_set(&why, MFT_E_CONFIG, "partner \"%s\" has no \"send\" settings", p->id);
        snprintf(why.remedy, sizeof(why.remedy),
                 "declare the partner's AS2 URL and server trust in its \"send\" object");
    } else if (ov && (!valid_choice(ov->sign, signs) || !valid_choice(ov->encrypt, ciphers) ||
                      !valid_choice(ov->compress, compressions) || !valid_choice(ov->mdn, mdns))) {
        mft_err_set(&why, MFT_E_CONFIG, "the request's overrides name an unknown setting");
        mft_err_detail(&why, "sign=%s encrypt=%s compress=%s mdn=%s", s(ov->sign), s(ov->encrypt),
                       s(ov->compress), s(ov->mdn));
    } else if (ov && ov->mdn && strcmp(ov->mdn, "async") == 0 && !p->station->async_mdn_url[0]) {
        mft_err_set(&why, MFT_E_CONFIG,
                    "an async MDN was asked for but station \"%s\" has no "
                    "async_mdn_url",
                    p->station_id);
    }
    if (why.kind != MFT_E_OK) {
        rc = accept_failed(eg, uuid, request_id, ev, &why);
        goto out;
    }

    /* the payload: inline bytes are kept; a claim check is verified */
    struct mft_payload_ref ref;
    memset(&ref, 0, sizeof(ref));
    if (ev->inline_payload.len > 0 || !ev->payload || !ev->payload->uri || !*ev->payload->uri) {
        if (ev->inline_payload.len > eg->max_inline) {
            mft_err_set(&why, MFT_E_HTTP_TOO_LARGE,
                        "the inline payload (%zu bytes) is larger than MFT_EGRESS_MAX_INLINE",
                        ev->inline_payload.len);
            snprintf(why.remedy, sizeof(why.remedy),
                     "put large files in the payload store and send a claim check");
            rc = accept_failed(eg, uuid, request_id, ev, &why);
            goto out;
        }
        if (mft_payload_put(eg->payloads, uuid, "payload", ev->inline_payload.data,
                            ev->inline_payload.len, &ref, &err) < 0)
            goto store_down;
    } else if (claim_check(ev->payload, &ref, &why) < 0) {
        rc = accept_failed(eg, uuid, request_id, ev, &why);
        goto out;
    }
    /* further documents: only to a partner that takes several in one message */
    if (ev->n_attachments > 0 && !p->send.multiple_attachments) {
        mft_err_set(&why, MFT_E_CONFIG,
                    "the request has %zu attachments but partner \"%s\" does not take several "
                    "documents in one message",
                    ev->n_attachments, p->id);
        snprintf(why.remedy, sizeof(why.remedy),
                 "send the documents one by one, or set send.multiple_attachments for the "
                 "partner if its product announces EDIINT-Features: multiple-attachments");
        rc = accept_failed(eg, uuid, request_id, ev, &why);
        goto out;
    }
    if (ev->n_attachments + 1 > MFT_AS2_MAX_PARTS) {
        mft_err_set(&why, MFT_E_CONFIG, "a message carries at most %d documents, not %zu",
                    MFT_AS2_MAX_PARTS, ev->n_attachments + 1);
        rc = accept_failed(eg, uuid, request_id, ev, &why);
        goto out;
    }
    if (attachments_record(ev, &attachments, &why) < 0) {
        if (why.kind == MFT_E_NO_MEMORY) {
            err = why;
            goto store_down;
        }
        rc = accept_failed(eg, uuid, request_id, ev, &why);
        goto out;
    }

    char mid[300], created[32], size[32], fname[256], as2_from[140], as2_to[140];
    long long now = mft_now_ms();
    t_stored = now;
    snprintf(mid, sizeof(mid), "<mft-%s@%s>", uuid, eg->hostname);
    snprintf(created, sizeof(created), "%lld", now);
    snprintf(size, sizeof(size), "%llu", ref.size);
    safe_filename(ev->filename && *ev->filename
                      ? ev->filename
                      : (ev->payload && ev->payload->filename && *ev->payload->filename
                             ? ev->payload->filename
                             : "payload.bin"),
                  fname, sizeof(fname));
    snprintf(as2_from, sizeof(as2_from), "%s", p->station->as2_id);
    snprintf(as2_to, sizeof(as2_to), "%s", p->as2_id);
    const char *mdn_mode = ov && ov->mdn && *ov->mdn              ? ov->mdn
                           : p->send.mdn == MFT_MDN_REQUEST_ASYNC ? "async"
                           : p->send.mdn == MFT_MDN_REQUEST_NONE  ? "none"
                                                                  : "sync";
    const char *fields[] = {"direction",
                            "outbound",
                            "request_id",
                            request_id,
                            "correlation_id",
                            s(ev->correlation_id),
                            "station",
                            p->station_id,
                            "partner",
                            p->id,
                            "as2_message_id",
                            mid,
                            "as2_from",
                            as2_from,
                            "as2_to",
                            as2_to,
                            "filename",
                            fname,
                            "content_type",
                            ev->content_type && *ev->content_type ? ev->content_type
                                                                  : "application/octet-stream",
                            "payload_uri",
                            ref.uri,
                            "size",
                            size,
                            "sha256",
                            ref.sha256,
                            "subject",
                            ov ? s(ov->subject) : "",
                            "ov_sign",
                            ov ? s(ov->sign) : "",
                            "ov_encrypt",
                            ov ? s(ov->encrypt) : "",
                            "ov_compress",
                            ov ? s(ov->compress) : "",
                            "mdn_mode",
                            mdn_mode,
                            "attachments",
                            attachments ? attachments : "",
                            "created_ms",
                            created,
                            "attempt",
                            "0",
                            NULL};
    struct mft_outbox_msg m = {uuid, request_id, s(ev->correlation_id), mid, p->station_id, p->id};
    struct mft_outbox_change c = {
        .state = MFT_OUT_QUEUED,
        .extra = fields,
        .op = {.station_id = p->station_id,
               .created_ms = now,
               .index_mid = mid,
               .index_ttl_s = CLAIM_TTL_S,
               .schedule = MFT_STORE_OUT_RETRY,
               .due_ms = now},
    };
    if (mft_outbox_change(&eg->outbox, &m, &c, &err) < 0)
        goto store_down;
    mft_info("send.queued", "message queued", "message_id", uuid, "request_id", request_id,
             "partner", p->id, "size", size);
    if (mft_log_enabled(MFT_LOG_DEBUG)) {
        static const char *const stages[5] = {"produce_to_poll", "poll_to_accept", "claim",
                                              "payload", "record"};
        const long long ms[5] = {rec->timestamp_ms ? rec->polled_ms - rec->timestamp_ms : -1,
                                 t_start - rec->polled_ms, t_claimed - t_start,
                                 t_stored - t_claimed, mft_now_ms() - t_stored};
        log_stages("send.accept_timing", "acceptance stages (ms)", "request_id", request_id, stages,
                   ms);
    }
    mft_metric_inc("mft_egress_requests_total", "result=\"queued\"");
    egress_wake(eg);
    rc = 0;
    goto out;

store_down:
    mft_error("send.accept_failed", err.message, "request_id", request_id, "error_kind",
              mft_err_kind_name(err.kind), "detail", err.detail);
    /* Redis, Kafka or the payload volume down: keep the record and try again.
     * Anything else cannot get better by retrying: record it as failed. */
    if (mft_err_local_outage(err.kind))
        rc = -1;
    else
        rc = accept_failed(eg, uuid, request_id, ev, &err);
out:
    free(attachments);
    mft_store_free_list(kv, nkv);
    mft_registry_unref(reg);
    if (ev)
        mft__v1__send_requested__free_unpacked(ev, NULL);
    return rc;
}

/* --- attempting ----------------------------------------------------------- */

struct attempt {
    struct egress *eg;
    const char *uuid;
    char **kv;
    size_t nkv;
    struct mft_outbox_msg m;
    const struct mft_partner *p;
    unsigned n; /* this attempt's number */
    char mic[128], mic_alg[16];
    const struct mft_tls_facts *tls; /* a failed handshake's facts, for the event */
};

/* Milliseconds to wait before attempt n+1: base * 2^(n-1), capped, with
 * jitter in [0.75, 1.25) so a partner's recovery is not met by a burst. */
static long long backoff_ms(const struct mft_partner_send *ps, unsigned n)
{
    double d = (double)(ps->retry_base_s > 0 ? ps->retry_base_s : 30) * 1000.0;
    for (unsigned i = 1; i < n && d < 1e12; i++)
        d *= 2;
    double cap = (double)(ps->retry_max_s > 0 ? ps->retry_max_s : 3600) * 1000.0;
    if (d > cap)
        d = cap;
    unsigned short r = 0;
    RAND_bytes((unsigned char *)&r, sizeof(r));
    return (long long)(d * (0.75 + 0.5 * (double)r / 65536.0));
}

static void fail(struct attempt *a, const struct mft_err *why, long http_status,
                 const struct mft_httpc_response *server)
{
    struct mft_outbox_change c = {
        .state = MFT_OUT_FAILED,
        .attempt = a->n,
        .mic = a->mic[0] ? a->mic : NULL,
        .mic_alg = a->mic_alg,
        .http_status = http_status,
        .error = why,
        .server = server,
        .tls = a->tls,
        .op = {.unschedule = {MFT_STORE_OUT_RETRY, MFT_STORE_OUT_MDN}},
    };
    mft_warn("send.failed", why->message, "message_id", a->uuid, "partner", a->m.partner_id,
             "error_kind", mft_err_kind_name(why->kind), "detail", why->detail);
    record_change(a->eg, &a->m, &c);
}

/* A transient failure: retry later, or fail when the attempts are used up. */
static void retry_or_fail(struct attempt *a, struct mft_err *why, long http_status,
                          const struct mft_httpc_response *server)
{
    long max = a->p->send.max_attempts > 0 ? a->p->send.max_attempts : 10;
    if ((long)a->n >= max) {
        mft_err_detail(why, "gave up after %u attempts", a->n);
        fail(a, why, http_status, server);
        return;
    }
    long long next = mft_now_ms() + backoff_ms(&a->p->send, a->n);
    struct mft_outbox_change c = {
        .state = MFT_OUT_RETRYING,
        .attempt = a->n,
        .next_ms = next,
        .mic = a->mic[0] ? a->mic : NULL,
        .mic_alg = a->mic_alg,
        .http_status = http_status,
        .error = why,
        .server = server,
        .tls = a->tls,
        .op = {.schedule = MFT_STORE_OUT_RETRY, .due_ms = next},
    };
    char n[16];
    snprintf(n, sizeof(n), "%u", a->n);
    mft_info("send.retrying", why->message, "message_id", a->uuid, "partner", a->m.partner_id,
             "attempt", n, "error_kind", mft_err_kind_name(why->kind), "detail", why->detail);
    record_change(a->eg, &a->m, &c);
}

/* The HTTP headers of the AS2 request. Fills hdr (NULL-terminated) from buf. */
static void as2_headers(struct attempt *a, const struct mft_as2_message *msg, const char *mdn_mode,
                        int mdn_signed, const char *sign_md, char (*buf)[1200], const char **hdr)
{
    const struct mft_station *st = a->p->station;
    char from[140], to[140], date[64];
    size_t n = 0;
    mft_as2_id_header(st->as2_id, from, sizeof(from));
    mft_as2_id_header(a->p->as2_id, to, sizeof(to));
    mft_http_date(date, sizeof(date));
#define H(...) snprintf(buf[n], sizeof(buf[n]), __VA_ARGS__), hdr[n] = buf[n], n++
    H("AS2-Version: 1.2");
    H("AS2-From: %s", from);
    H("AS2-To: %s", to);
    H("Message-ID: %s", a->m.as2_message_id);
    H("Date: %s", date);
    H("MIME-Version: 1.0");
    const char *subject = mft_store_kv(a->kv, a->nkv, "subject");
    H("Subject: %s", *subject ? subject : mft_store_kv(a->kv, a->nkv, "filename"));
    H("Content-Type: %s", msg->content_type);
    if (msg->content_disposition)
        H("Content-Disposition: %s", msg->content_disposition);
    H("Content-Transfer-Encoding: %s", msg->transfer_encoding);
    H("EDIINT-Features: %s", *mft_store_kv(a->kv, a->nkv, "attachments")
                                 ? "multiple-attachments, AS2-Reliability"
                                 : "AS2-Reliability");
    if (strcmp(mdn_mode, "none") != 0) {
        H("Disposition-Notification-To: %s",
          strcmp(mdn_mode, "async") == 0 ? st->async_mdn_url : st->as2_id);
        if (mdn_signed) {
            const char *o = NULL, *rfc = "sha-256";
            if (sign_md && *sign_md)
                mft_smime_digest_name(sign_md, &o, &rfc);
            char alg[16];
            snprintf(alg, sizeof(alg), "%s", rfc);
            if (a->p->send.old_micalg_names) { /* "sha-256" -> "sha256" */
                char *d = strchr(alg, '-');
                if (d)
                    memmove(d, d + 1, strlen(d));
            }
            H("Disposition-Notification-Options: signed-receipt-protocol=optional, "
              "pkcs7-signature; signed-receipt-micalg=optional, %s",
              alg);
        }
        if (strcmp(mdn_mode, "async") == 0)
            H("Receipt-Delivery-Option: %s", st->async_mdn_url);
    }
#undef H
    hdr[n] = NULL;
}

/*
 * Connections kept per worker thread for the next message to the same partner
 * (no new TCP and TLS handshake: about 2 ms of CPU saved on each side). At most
 * KEPT partners per thread; the least recently used is closed first. The key
 * holds the registry snapshot's load number, so a trust or identity change
 * (any reload, even one after Redis lost its data and the version started
 * again) opens a new, newly verified connection.
 */
#define KEPT 8
static __thread struct kept {
    char partner[128];
    struct mft_httpc_conn *conn;
    long long used;
} kept[KEPT];

static struct mft_httpc_conn *kept_conn(const char *partner)
{
    size_t lru = 0;
    for (size_t i = 0; i < KEPT; i++) {
        if (kept[i].conn && strcmp(kept[i].partner, partner) == 0) {
            kept[i].used = mft_now_ms();
            return kept[i].conn;
        }
        if (kept[i].used < kept[lru].used)
            lru = i;
    }
    mft_httpc_conn_free(kept[lru].conn);
    kept[lru].conn = mft_httpc_conn_new();
    kept[lru].used = mft_now_ms();
    snprintf(kept[lru].partner, sizeof(kept[lru].partner), "%s", partner);
    return kept[lru].conn;
}

static void kept_close_all(void)
{
    for (size_t i = 0; i < KEPT; i++) {
        mft_httpc_conn_free(kept[i].conn);
        kept[i].conn = NULL;
    }
}

/*
 * Maps the message's documents: the payload, then the attachments the record
 * lists. parts[i] borrow their names from the record and from *attachments
 * (decref it after); mapped parts are unmapped by the caller, also on failure.
 * Returns 0, or -1 with why (STORAGE).
 */
static int map_parts(struct attempt *a, struct mft_as2_part *parts, size_t *n, json_t **attachments,
                     struct mft_err *why)
{
    const unsigned char *p;
    size_t len;
    *n = 0;
    *attachments = NULL;
    if (map_uri(mft_store_kv(a->kv, a->nkv, "payload_uri"), &p, &len, why) < 0)
        return -1;
    parts[(*n)++] = (struct mft_as2_part){p, len, mft_store_kv(a->kv, a->nkv, "filename"),
                                          mft_store_kv(a->kv, a->nkv, "content_type")};
    const char *list = mft_store_kv(a->kv, a->nkv, "attachments");
    if (!*list)
        return 0;
    *attachments = json_loads(list, 0, NULL);
    if (!json_is_array(*attachments))
        return mft_err_set(why, MFT_E_STORAGE, "the record's attachment list is not readable");
    for (size_t i = 0; i < json_array_size(*attachments) && *n < MFT_AS2_MAX_PARTS; i++) {
        const json_t *at = json_array_get(*attachments, i);
        const char *uri = json_string_value(json_object_get(at, "uri"));
        if (!uri)
            return mft_err_set(why, MFT_E_STORAGE, "attachment %zu has no URI", i + 1);
        if (map_uri(uri, &p, &len, why) < 0)
            return mft_err_detail(why, "attachment %zu", i + 1);
        parts[(*n)++] =
            (struct mft_as2_part){p, len, json_string_value(json_object_get(at, "filename")),
                                  json_string_value(json_object_get(at, "content_type"))};
        /* the claim was checked at acceptance; the file must not have changed */
        char sha[65];
        sha256_hex(p, len, sha);
        const char *want = json_string_value(json_object_get(at, "sha256"));
        if (want && strcmp(want, sha) != 0)
            return mft_err_set(why, MFT_E_STORAGE,
                               "attachment %zu changed since the request was accepted (%s)", i + 1,
                               uri);
    }
    return 0;
}

static void attempt_run(struct egress *eg, const char *uuid)
{
    struct attempt a = {.eg = eg, .uuid = uuid};
    struct mft_registry *reg = NULL;
    struct mft_as2_message msg;
    struct mft_httpc_response resp;
    struct mft_tls_facts facts;
    struct mft_err err;
    struct mft_as2_part parts[MFT_AS2_MAX_PARTS];
    size_t n_parts = 0;
    json_t *attachments = NULL;
    char bufs[24][1200];
    const char *hdr[25];
    long long t_take = mft_now_ms(), t_built = 0, t_sending = 0, t_posted = 0;

    memset(&msg, 0, sizeof(msg));
    memset(&resp, 0, sizeof(resp));
    memset(&facts, 0, sizeof(facts));
    mft_err_clear(&err);
    int g = mft_store_out_get(eg->store, uuid, &a.kv, &a.nkv, &err);
    if (g != 0) {
        if (g == 1) { /* no record: nothing to send */
            struct mft_store_out_op op = {.unschedule = {MFT_STORE_OUT_RETRY, NULL}};
            mft_store_out_put(eg->store, uuid, NULL, &op, &err);
        }
        goto out;
    }
    mft_outbox_msg_from_kv(&a.m, uuid, a.kv, a.nkv);
    const char *state = mft_store_kv(a.kv, a.nkv, "state");
    if (mft_outbox_state_final(state) || strcmp(state, MFT_OUT_SENT) == 0) {
        struct mft_store_out_op op = {.unschedule = {MFT_STORE_OUT_RETRY, NULL}};
        mft_store_out_put(eg->store, uuid, NULL, &op, &err);
        goto out;
    }
    a.n = (unsigned)strtoul(mft_store_kv(a.kv, a.nkv, "attempt"), NULL, 10) + 1;
    reg = egress_registry(eg);
    a.p = reg ? mft_registry_partner(reg, a.m.partner_id) : NULL;
    if (!a.p || !a.p->send.enabled) {
        struct mft_err why;
        mft_err_set(&why, a.p ? MFT_E_CONFIG : MFT_E_UNKNOWN_PARTNER,
                    "partner \"%s\" is no longer registered for sending", a.m.partner_id);
        fail(&a, &why, 0, NULL);
        goto out;
    }

    /* settings: the partner's, then the request's overrides */
    const struct mft_partner_send *ps = &a.p->send;
    const char *ov_sign = mft_store_kv(a.kv, a.nkv, "ov_sign");
    const char *ov_enc = mft_store_kv(a.kv, a.nkv, "ov_encrypt");
    const char *ov_cmp = mft_store_kv(a.kv, a.nkv, "ov_compress");
    const char *mdn_mode = mft_store_kv(a.kv, a.nkv, "mdn_mode");
    struct mft_as2_send_opts o = {
        .sign_md = *ov_sign ? (strcmp(ov_sign, "none") == 0 ? "" : ov_sign) : ps->sign_md,
        .cipher = *ov_enc ? (strcmp(ov_enc, "none") == 0 ? "" : ov_enc) : ps->cipher,
        .rsa_oaep = ps->rsa_oaep,
        .compress = (enum mft_as2_compress)ps->compress,
        .base64 = ps->base64,
        .old_micalg_names = ps->old_micalg_names,
        .no_alg_protection = !ps->alg_protection,
    };
    if (*ov_cmp)
        o.compress = strcmp(ov_cmp, "before-signing") == 0  ? MFT_AS2_COMPRESS_BEFORE_SIGNING
                     : strcmp(ov_cmp, "after-signing") == 0 ? MFT_AS2_COMPRESS_AFTER_SIGNING
                                                            : MFT_AS2_COMPRESS_NONE;
    if (!*mdn_mode)
        mdn_mode = "sync";
    int mdn_signed = ps->mdn_signed;
    /* An unsigned message's MIC uses the digest our Disposition-Notification-
     * Options name (sha-256), or RFC 4130's default sha1 when we send none. */
    o.mic_md = mdn_signed && strcmp(mdn_mode, "none") != 0 ? "sha-256" : "sha1";

    struct mft_err why;
    mft_err_clear(&why);
    if (map_parts(&a, parts, &n_parts, &attachments, &why) < 0) {
        fail(&a, &why, 0, NULL);
        goto out;
    }
    if (mft_as2_build_parts(parts, n_parts, &a.p->station->signing, a.p->encryption_cert, &o, &msg,
                            &why) < 0) {
        fail(&a, &why, 0, NULL);
        goto out;
    }
    snprintf(a.mic, sizeof(a.mic), "%s", msg.mic_b64);
    snprintf(a.mic_alg, sizeof(a.mic_alg), "%s", msg.mic_alg);
    t_built = mft_now_ms();

    const char *extra[] = {"mdn_signed_requested", mdn_signed ? "1" : "0", NULL};
    struct mft_outbox_change sending = {.state = MFT_OUT_SENDING,
                                        .attempt = a.n,
                                        .mic = a.mic,
                                        .mic_alg = a.mic_alg,
                                        .extra = extra};
    if (record_change(eg, &a.m, &sending) < 0)
        goto out; /* the lease brings it back */
    t_sending = mft_now_ms();

    as2_headers(&a, &msg, mdn_mode, mdn_signed, o.sign_md, bufs, hdr);
    /* trust, client identity (parsed once, in the registry) and TLS policy:
     * the same as mftctl test-connection */
    struct mft_dial dial;
    struct mft_httpc_request rq = {
        .headers = hdr,
        .body = msg.body,
        .len = msg.len,
        .content_length = ps->content_length,
        .max_response = eg->max_response,
        .facts_out = &facts,
    };
    mft_dial_request(a.p, &dial, &rq);
    atomic_fetch_add(&eg->inflight, 1);
    mft_metric_set("mft_egress_inflight", "", (double)atomic_load(&eg->inflight));
    char key[700];
    snprintf(key, sizeof(key), "%s|%llu|%s", a.p->id, reg ? reg->load_seq : 0ULL, ps->url);
    struct mft_httpc_conn *conn = eg->keepalive ? kept_conn(a.p->id) : NULL;
    int posted =
        conn ? mft_httpc_post_on(conn, key, &rq, &resp, &why) : mft_httpc_post(&rq, &resp, &why);
    atomic_fetch_sub(&eg->inflight, 1);
    t_posted = mft_now_ms();
    if (posted < 0) {
        mft_metric_inc("mft_egress_attempts_total", "result=\"transport\"");
        /* a TLS failure carries the handshake's raw facts into the event */
        if (strncmp(mft_err_kind_name(why.kind), "TLS_", 4) == 0 && facts.direction[0])
            a.tls = &facts;
        if (mft_httpc_err_transient(&why))
            retry_or_fail(&a, &why, 0, NULL);
        else
            fail(&a, &why, 0, NULL);
        goto out;
    }
    mft_metric_add("mft_egress_bytes_total", "", (double)msg.len);
    if (resp.status < 200 || resp.status > 299) {
        mft_metric_inc("mft_egress_attempts_total", "result=\"http_error\"");
        mft_err_set(&why, MFT_E_HTTP_STATUS, "the partner answered HTTP %ld", resp.status);
        mft_err_detail(&why, "%s: %.300s", s(resp.content_type),
                       resp.body ? (char *)resp.body : "");
        if (mft_httpc_status_transient(resp.status))
            retry_or_fail(&a, &why, resp.status, &resp);
        else
            fail(&a, &why, resp.status, &resp);
        goto out;
    }
    mft_metric_inc("mft_egress_attempts_total", "result=\"answered\"");
    if (strcmp(mdn_mode, "none") == 0) {
        struct mft_outbox_change c = {.state = MFT_OUT_DELIVERED,
                                      .attempt = a.n,
                                      .mic = a.mic,
                                      .mic_alg = a.mic_alg,
                                      .http_status = resp.status,
                                      .server = &resp,
                                      .op = {.unschedule = {MFT_STORE_OUT_RETRY, NULL}}};
        record_change(eg, &a.m, &c);
        goto out;
    }
    if (strcmp(mdn_mode, "async") == 0) {
        long long due = mft_now_ms() + (ps->mdn_timeout_s > 0 ? ps->mdn_timeout_s : 3600) * 1000LL;
        struct mft_outbox_change c = {
            .state = MFT_OUT_SENT,
            .attempt = a.n,
            .mic = a.mic,
            .mic_alg = a.mic_alg,
            .http_status = resp.status,
            .server = &resp,
            .op = {.unschedule = {MFT_STORE_OUT_RETRY, NULL},
                   .schedule = MFT_STORE_OUT_MDN,
                   .due_ms = due},
        };
        record_change(eg, &a.m, &c);
        goto out;
    }
    struct mft_outbox_mdn_result res;
    if (mft_outbox_take_mdn(&eg->outbox, reg, uuid, NULL, resp.content_type, resp.body, resp.len,
                            &resp, resp.status, &res, &why) < 0) {
        mft_error("outbound.record_failed", why.message, "message_id", uuid, "detail", why.detail);
        goto out;
    }
    if (res.already_final)
        mft_info("send.ended", "the message had already ended", "message_id", uuid, "state",
                 res.state);
    else if (res.outcome.kind != MFT_E_OK)
        mft_warn("send.failed", res.outcome.message, "message_id", uuid, "partner", a.m.partner_id,
                 "error_kind", mft_err_kind_name(res.outcome.kind), "detail", res.outcome.detail);
    else
        mft_info("send.delivered", "message delivered", "message_id", uuid, "partner",
                 a.m.partner_id, "disposition", res.disposition);
    if (mft_log_enabled(MFT_LOG_DEBUG)) {
        static const char *const stages[5] = {"queued_to_take", "build", "record_sending", "post",
                                              "record_final"};
        long long created = strtoll(mft_store_kv(a.kv, a.nkv, "created_ms"), NULL, 10);
        const long long ms[5] = {created ? t_take - created : -1, t_built - t_take,
                                 t_sending - t_built, t_posted - t_sending,
                                 mft_now_ms() - t_posted};
        log_stages("send.attempt_timing", "attempt stages (ms)", "message_id", uuid, stages, ms);
    }
out:
    for (size_t i = 0; i < n_parts; i++)
        if (parts[i].len)
            munmap((void *)parts[i].data, parts[i].len);
    json_decref(attachments);
    mft_httpc_response_free(&resp);
    mft_as2_message_free(&msg);
    mft_store_free_list(a.kv, a.nkv);
    mft_registry_unref(reg);
}

static long long lease_ms(struct egress *eg, const char *uuid)
{
    /* the lease must outlast the attempt: the partner's HTTP timeout + margin */
    struct mft_registry *reg = egress_registry(eg);
    long t = MFT_HTTPC_DEFAULT_TIMEOUT_S;
    char **kv = NULL;
    size_t n = 0;
    struct mft_err e;
    if (reg && mft_store_out_get(eg->store, uuid, &kv, &n, &e) == 0) {
        const struct mft_partner *p = mft_registry_partner(reg, mft_store_kv(kv, n, "partner"));
        if (p && p->send.timeout_s > 0)
            t = p->send.timeout_s;
    }
    mft_store_free_list(kv, n);
    mft_registry_unref(reg);
    return (long long)t * 1000 + eg->lease_extra_ms; /* CURLOPT_TIMEOUT bounds the whole exchange */
}

void *send_worker(void *arg)
{
    struct egress *eg = arg;
    while (!atomic_load(&eg->stopping)) {
        char **due = NULL;
        size_t n = 0;
        int did = 0;
        struct mft_err e;
        mft_err_clear(&e);
        /* A wake-up that comes while the schedule is being read must not be
         * lost: remember the generation first, sleep only if it is unchanged
         * (a lost wake-up cost a message up to MFT_EGRESS_POLL_MS). */
        pthread_mutex_lock(&eg->wake_lock);
        unsigned long gen = eg->wake_gen;
        pthread_mutex_unlock(&eg->wake_lock);
        if (mft_store_out_due(eg->store, MFT_STORE_OUT_RETRY, mft_now_ms(), 16, &due, &n, &e) < 0)
            mft_error("schedule.read_failed", e.message, "detail", e.detail);
        for (size_t i = 0; i < n && !atomic_load(&eg->stopping); i++) {
            if (mft_store_out_take(eg->store, MFT_STORE_OUT_RETRY, due[i], mft_now_ms(),
                                   lease_ms(eg, due[i]), &e) != 1)
                continue;
            attempt_run(eg, due[i]);
            did++;
        }
        mft_store_free_list(due, n);
        if (did || atomic_load(&eg->stopping))
            continue;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (eg->poll_ms % 1000) * 1000000L;
        ts.tv_sec += eg->poll_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_mutex_lock(&eg->wake_lock);
        while (eg->wake_gen == gen && !atomic_load(&eg->stopping))
            if (pthread_cond_timedwait(&eg->wake, &eg->wake_lock, &ts) != 0)
                break; /* the poll period is over */
        pthread_mutex_unlock(&eg->wake_lock);
    }
    kept_close_all();
    return NULL;
}

int send_expire_mdns(struct egress *eg)
{
    char **due = NULL;
    size_t n = 0;
    int done = 0;
    struct mft_err e;
    mft_err_clear(&e);
    long long now = mft_now_ms();
    if (mft_store_out_due(eg->store, MFT_STORE_OUT_MDN, now, 32, &due, &n, &e) < 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (mft_store_out_take(eg->store, MFT_STORE_OUT_MDN, due[i], now, 60000, &e) != 1)
            continue;
        char **kv = NULL;
        size_t nkv = 0;
        if (mft_store_out_get(eg->store, due[i], &kv, &nkv, &e) != 0)
            continue;
        struct mft_outbox_msg m;
        mft_outbox_msg_from_kv(&m, due[i], kv, nkv);
        if (strcmp(mft_store_kv(kv, nkv, "state"), MFT_OUT_SENT) == 0) {
            struct mft_err why;
            mft_err_set(&why, MFT_E_MDN_TIMEOUT, NULL);
            mft_err_detail(&why, "no MDN for Message-ID %s", m.as2_message_id);
            struct mft_outbox_change c = {
                .state = MFT_OUT_FAILED,
                .attempt = (unsigned)strtoul(mft_store_kv(kv, nkv, "attempt"), NULL, 10),
                .mic = mft_store_kv(kv, nkv, "mic"),
                .mic_alg = mft_store_kv(kv, nkv, "mic_alg"),
                .error = &why,
                .op = {.unschedule = {MFT_STORE_OUT_MDN, MFT_STORE_OUT_RETRY}},
            };
            mft_warn("send.failed", why.message, "message_id", due[i], "error_kind", "MDN_TIMEOUT");
            if (record_change(eg, &m, &c) == 0)
                done++;
        } else {
            struct mft_store_out_op op = {.unschedule = {MFT_STORE_OUT_MDN, NULL}};
            mft_store_out_put(eg->store, due[i], NULL, &op, &e);
        }
        mft_store_free_list(kv, nkv);
    }
    mft_store_free_list(due, n);
    return done;
}
