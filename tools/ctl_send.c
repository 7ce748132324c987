/*
 * ctl_send — `mftctl send --partner P FILE`: asks the gateway to send a file,
 * exactly as an application would: publishes SendRequested on
 * mft.outbound.v1 (key = partner id). Further FILEs travel in the same
 * message as attachments (EDIINT multiple-attachments), always as claim
 * checks in the payload store. A first file of at most --inline-max bytes
 * (default 1 MiB) travels inline; a larger one is written to the payload
 * store (MFT_PAYLOAD_DIR, fsync'd) and sent as a claim check. Prints the
 * request id. With --wait SECONDS it then follows mft.status.v1 and prints
 * each DeliveryUpdated of this request as a JSON line until the message is
 * delivered (exit 0) or failed (exit 1), or the time is up (exit 1).
 */
#include "ctl_send.h"
#include "mft_bus.h"
#include "mft_events.h"
#include "mft_payload.h"
#include "mft_time.h"
#include "mft/v1/events.pb-c.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void fail_msg(const char *what, const struct mft_err *err)
{
    fprintf(stderr, "mftctl send: %s: %s: %s %s\n", what, mft_err_kind_name(err->kind),
            err->message, err->detail);
}

/* Copies path into the payload store as <uuid>/<name>, streaming. */
static int store_file(const char *dir, const char *path, const char *uuid, const char *name,
                      struct mft_payload_ref *ref, struct mft_err *err)
{
    struct mft_payload_store *ps = NULL;
    struct mft_payload_writer *w = NULL;
    FILE *f = NULL;
    int rc = -1;
    static unsigned char buf[1 << 16];
    if (mft_payload_open(dir, &ps, err) < 0 || mft_payload_begin(ps, uuid, name, &w, err) < 0)
        goto out;
    if (!(f = fopen(path, "rb"))) {
        mft_err_set(err, MFT_E_STORAGE, "cannot read %s: %s", path, strerror(errno));
        goto out;
    }
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        if (mft_payload_write(w, buf, n, err) < 0)
            goto out;
    if (ferror(f)) {
        mft_err_set(err, MFT_E_STORAGE, "read error on %s", path);
        goto out;
    }
    rc = mft_payload_commit(w, ref, err);
    w = NULL;
out:
    mft_payload_abort(w);
    if (f)
        fclose(f);
    mft_payload_close(ps);
    return rc;
}

/* Follows mft.status.v1 until request_id ends. Returns the exit status. */
static int wait_for(const char *brokers, const char *request_id, long seconds)
{
    struct mft_bus_consumer *c = NULL;
    struct mft_err err;
    mft_err_clear(&err);
    if (mft_bus_consumer_open(brokers, MFT_TOPIC_STATUS, NULL, &c, &err) < 0) {
        fail_msg("status topic", &err);
        return 1;
    }
    long long deadline = mft_now_ms() + seconds * 1000;
    int rc = 1;
    const char *final = NULL;
    while (!final && mft_now_ms() < deadline) {
        struct mft_bus_record rec;
        int got = mft_bus_consumer_poll(c, 500, &rec, &err);
        if (got <= 0)
            continue;
        const char *type = mft_bus_record_header(&rec, "ce_type");
        if (type && strcmp(type, MFT_CE_DELIVERY_UPDATED) == 0) {
            Mft__V1__DeliveryUpdated *ev =
                mft__v1__delivery_updated__unpack(NULL, rec.value_len, rec.value);
            if (ev && strcmp(ev->request_id, request_id) == 0) {
                json_t *o = mft_event_to_json(type, rec.value, rec.value_len);
                char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
                if (line)
                    puts(line);
                fflush(stdout);
                free(line);
                json_decref(o);
                if (strcmp(ev->state, "delivered") == 0)
                    final = "delivered", rc = 0;
                else if (strcmp(ev->state, "failed") == 0)
                    final = "failed", rc = 1;
            }
            if (ev)
                mft__v1__delivery_updated__free_unpacked(ev, NULL);
        }
        mft_bus_record_free(&rec);
    }
    if (!final)
        fprintf(stderr, "mftctl send: no final state for %s within %lds\n", request_id, seconds);
    mft_bus_consumer_close(c);
    return rc;
}

int ctl_send(const struct mft_cfg_var *vars, int argc, char **argv)
{
    const char *station = "", *partner = NULL, *file = NULL, *rid = NULL, *corr = "";
    const char *more[16];
    size_t n_more = 0;
    const char *ctype = "", *as = NULL, *sign = "", *enc = "", *cmp = "", *mdn = "", *subj = "";
    long wait_s = 0;
    unsigned long long inline_max = 1u << 20;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name, var)                                                                             \
    if (strcmp(a, name) == 0 && v) {                                                               \
        var = v;                                                                                   \
        i++;                                                                                       \
        continue;                                                                                  \
    }
        OPT("--station", station);
        OPT("--partner", partner);
        OPT("--request-id", rid);
        OPT("--correlation-id", corr);
        OPT("--content-type", ctype);
        OPT("--as", as);
        OPT("--sign", sign);
        OPT("--encrypt", enc);
        OPT("--compress", cmp);
        OPT("--mdn", mdn);
        OPT("--subject", subj);
#undef OPT
        if (strcmp(a, "--wait") == 0 && v) {
            wait_s = strtol(v, NULL, 10);
            i++;
        } else if (strcmp(a, "--inline-max") == 0 && v) {
            char *end = NULL;
            inline_max = strtoull(v, &end, 10);
            unsigned long long mult = !*end                          ? 1
                                      : (*end == 'K' || *end == 'k') ? 1ULL << 10
                                      : (*end == 'M' || *end == 'm') ? 1ULL << 20
                                                                     : 0;
            if (end == v || !mult || (*end && end[1]) || inline_max > (4ULL << 20) / mult) {
                fprintf(stderr, "mftctl send: --inline-max takes bytes, K or M, at most 4M\n");
                return 2;
            }
            inline_max *= mult;
            i++;
        } else if (!file && a[0] != '-') {
            file = a;
        } else if (file && a[0] != '-' && n_more < sizeof(more) / sizeof(more[0]) - 1) {
            more[n_more++] = a; /* at most 16 documents in all */
        } else {
            fprintf(stderr, "mftctl send: unexpected argument \"%s\"\n", a);
            return 2;
        }
    }
    if (!partner || !file || wait_s < 0) {
        fprintf(stderr,
                "usage: mftctl send --partner ID [--station ID] FILE [FILE...] [--wait SECONDS]\n");
        return 2;
    }
    struct stat st;
    if (stat(file, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "mftctl send: %s is not a readable file\n", file);
        return 1;
    }
    char uuid[37], request_id[1001];
    mft_uuid4(uuid);
    if (rid && (!*rid || strlen(rid) >= sizeof(request_id))) {
        fprintf(stderr, "mftctl send: --request-id takes 1..1000 characters\n");
        return 2;
    }
    snprintf(request_id, sizeof(request_id), "%s", rid ? rid : uuid);
    const char *base = strrchr(file, '/');
    base = as ? as : (base ? base + 1 : file);

    Mft__V1__SendRequested ev = MFT__V1__SEND_REQUESTED__INIT;
    Mft__V1__PayloadRef ref_ev = MFT__V1__PAYLOAD_REF__INIT;
    Mft__V1__SendOverrides ov = MFT__V1__SEND_OVERRIDES__INIT;
    struct mft_payload_ref ref;
    struct mft_err err;
    unsigned char *data = NULL;
    char when[40];
    mft_err_clear(&err);
    ev.request_id = request_id;
    ev.station_id = (char *)station;
    ev.partner_id = (char *)partner;
    ev.filename = (char *)base;
    ev.content_type = (char *)ctype;
    ev.correlation_id = (char *)corr;
    mft_rfc3339_ms(mft_now_ms(), when, sizeof(when));
    ev.time = when;
    if (*sign || *enc || *cmp || *mdn || *subj) {
        ov.sign = (char *)sign;
        ov.encrypt = (char *)enc;
        ov.compress = (char *)cmp;
        ov.mdn = (char *)mdn;
        ov.subject = (char *)subj;
        ev.overrides = &ov;
    }
    if ((unsigned long long)st.st_size <= inline_max) {
        FILE *f = fopen(file, "rb");
        data = malloc((size_t)st.st_size + 1);
        if (!f || !data || fread(data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            fprintf(stderr, "mftctl send: cannot read %s\n", file);
            if (f)
                fclose(f);
            free(data);
            return 1;
        }
        fclose(f);
        ev.inline_payload.data = data;
        ev.inline_payload.len = (size_t)st.st_size;
    } else {
        if (store_file(mft_cfg_get(vars, "MFT_PAYLOAD_DIR"), file, uuid, "payload", &ref, &err) <
            0) {
            fail_msg("payload store", &err);
            return 1;
        }
        ref_ev.uri = ref.uri;
        ref_ev.size = ref.size;
        ref_ev.sha256 = ref.sha256;
        ref_ev.filename = (char *)base;
        ev.payload = &ref_ev;
    }
    Mft__V1__PayloadRef att[16], *att_ptrs[16];
    struct mft_payload_ref att_ref[16];
    for (size_t i = 0; i < n_more; i++) {
        char name[32];
        const char *b = strrchr(more[i], '/');
        snprintf(name, sizeof(name), "attachment-%zu", i + 1);
        if (store_file(mft_cfg_get(vars, "MFT_PAYLOAD_DIR"), more[i], uuid, name, &att_ref[i],
                       &err) < 0) {
            fail_msg(more[i], &err);
            free(data);
            return 1;
        }
        mft__v1__payload_ref__init(&att[i]);
        att[i].uri = att_ref[i].uri;
        att[i].size = att_ref[i].size;
        att[i].sha256 = att_ref[i].sha256;
        att[i].filename = (char *)(b ? b + 1 : more[i]);
        att[i].content_type = (char *)ctype;
        att_ptrs[i] = &att[i];
    }
    ev.attachments = n_more ? att_ptrs : NULL;
    ev.n_attachments = n_more;
    size_t len = mft__v1__send_requested__get_packed_size(&ev);
    unsigned char *buf = malloc(len ? len : 1);
    struct mft_bus *bus = NULL;
    int rc = 1;
    const char *brokers = mft_cfg_get(vars, "MFT_KAFKA_BROKERS");
    if (!buf)
        goto out;
    mft__v1__send_requested__pack(&ev, buf);
    if (mft_bus_open(brokers, "/mft/mftctl", &bus, &err) < 0 ||
        mft_bus_publish(bus, MFT_TOPIC_OUTBOUND, partner, MFT_CE_SEND_REQUESTED, NULL, buf, len,
                        10000, NULL, &err) < 0) {
        fail_msg("publish", &err);
        goto out;
    }
    printf("{\"request_id\":\"%s\",\"partner\":\"%s\",\"bytes\":%lld,\"claim_check\":%s}\n",
           request_id, partner, (long long)st.st_size, ev.payload ? "true" : "false");
    fflush(stdout);
    rc = wait_s > 0 ? wait_for(brokers, request_id, wait_s) : 0;
out:
    mft_bus_close(bus, 5000);
    free(buf);
    free(data);
    return rc;
}
