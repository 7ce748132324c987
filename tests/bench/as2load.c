/*
 * mft-as2load — the AS2 load generator of `./mft bench`. Posts one prebuilt
 * AS2 body (built by the openssl CLI, see tools/partner.sh) over keep-alive
 * HTTPS with a client certificate, from N threads, each with its own libcurl
 * easy handle (so each keeps one TLS connection open), with a unique
 * Message-ID per request so the receiver processes every one instead of
 * answering it as a duplicate. Stops at --count requests or after --seconds,
 * whichever comes first, and prints one JSON object on stdout: requests,
 * successes (HTTP 200 and an MDN that says "processed" without "error",
 * "failed" or "warning"), failures, seconds, msgs_per_s, latency percentiles.
 *
 * Threads share only an atomic request counter and the read-only body; each
 * owns its handle, its response buffer and its latency array (merged after
 * join). --dump DIR keeps the first responses (DIR/rN/resp.headers and
 * DIR/rN/resp.body) so the caller can verify the MDNs with openssl.
 * --reuse 0 opens a new TLS connection for every request instead (the
 * reference for a sender without connection reuse).
 */
#include "loadstat.h"

#include <curl/curl.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 256
#define MAX_RESPONSE (256 * 1024)
#define MAX_DUMP 100

struct opts {
    const char *url, *body_file, *ctype, *cte, *cert, *key, *cacert, *from, *to, *micalg;
    const char *filename, *dump_dir;
    long threads, max_count, dump, reuse;
    double seconds;
};

struct buf {
    char *p;
    size_t len, cap;
};

struct worker {
    pthread_t tid;
    int index;
    const struct opts *o;
    const unsigned char *body;
    size_t body_len;
    double *lat_ms; /* one per request, grown by doubling */
    size_t n_lat, cap_lat;
    long requests, successes, curl_errors, http_errors, mdn_errors;
    long connects;
    char first_error[300];
};

static atomic_long issued;
static atomic_long dumped;
static double deadline;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: mft-as2load --url URL --body FILE --content-type CT [options]\n"
            "  --cert FILE --key FILE --cacert FILE   client certificate, key, trusted CA\n"
            "  --threads N        concurrent keep-alive connections (default 8)\n"
            "  --seconds S        stop after S seconds (default 15)\n"
            "  --count N          stop after N requests (default 1000000)\n"
            "  --from ID --to ID  AS2-From / AS2-To (default GLOBEX / ACME)\n"
            "  --cte ENC          Content-Transfer-Encoding (default binary)\n"
            "  --micalg ALG       signed-receipt-micalg (default sha-256)\n"
            "  --filename NAME    Content-Disposition file name (default bench.bin)\n"
            "  --dump DIR --dump-count N  keep the first N responses in DIR/rK/\n"
            "  --reuse 0|1        0 = a new TLS connection (full handshake, no session\n"
            "                     resumption) for every request, as mft-egress does (default 1)\n"
            "Prints one JSON object: requests, successes, failures, seconds, msgs_per_s,\n"
            "p50_ms, p99_ms, max_ms, connections.\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->threads = 8;
    o->seconds = 15;
    o->max_count = 1000000;
    o->from = "GLOBEX";
    o->to = "ACME";
    o->cte = "binary";
    o->micalg = "sha-256";
    o->filename = "bench.bin";
    o->dump = 3;
    o->reuse = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int ok = 1;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (!v) {
            fprintf(stderr, "mft-as2load: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--url") == 0)
            o->url = v;
        else if (strcmp(a, "--body") == 0)
            o->body_file = v;
        else if (strcmp(a, "--content-type") == 0)
            o->ctype = v;
        else if (strcmp(a, "--cte") == 0)
            o->cte = v;
        else if (strcmp(a, "--cert") == 0)
            o->cert = v;
        else if (strcmp(a, "--key") == 0)
            o->key = v;
        else if (strcmp(a, "--cacert") == 0)
            o->cacert = v;
        else if (strcmp(a, "--from") == 0)
            o->from = v;
        else if (strcmp(a, "--to") == 0)
            o->to = v;
        else if (strcmp(a, "--micalg") == 0)
            o->micalg = v;
        else if (strcmp(a, "--filename") == 0)
            o->filename = v;
        else if (strcmp(a, "--dump") == 0)
            o->dump_dir = v;
        else if (strcmp(a, "--dump-count") == 0)
            ok = bench_parse_long(v, &o->dump) == 0 && o->dump <= MAX_DUMP;
        else if (strcmp(a, "--reuse") == 0)
            ok = bench_parse_long(v, &o->reuse) == 0 && o->reuse <= 1;
        else if (strcmp(a, "--threads") == 0)
            ok = bench_parse_long(v, &o->threads) == 0 && o->threads >= 1 &&
                 o->threads <= MAX_THREADS;
        else if (strcmp(a, "--count") == 0)
            ok = bench_parse_long(v, &o->max_count) == 0 && o->max_count >= 1 &&
                 o->max_count <= 100000000;
        else if (strcmp(a, "--seconds") == 0) {
            char *end = NULL;
            o->seconds = strtod(v, &end);
            ok = end && !*end && o->seconds > 0 && o->seconds <= 3600;
        } else {
            fprintf(stderr, "mft-as2load: unknown option %s\n", a);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "mft-as2load: invalid value for %s: %s\n", a, v);
            return -1;
        }
    }
    if (!o->url || !o->body_file || !o->ctype) {
        usage(stderr);
        return -1;
    }
    return 0;
}

static int read_file(const char *path, unsigned char **out, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p = NULL;
    long n;
    int rc = -1;
    if (!f)
        goto out;
    if (fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
        goto out;
    if (!(p = malloc((size_t)n + 1)))
        goto out;
    if (fread(p, 1, (size_t)n, f) != (size_t)n)
        goto out;
    *out = p;
    *out_len = (size_t)n;
    p = NULL;
    rc = 0;
out:
    free(p);
    if (f)
        fclose(f);
    return rc;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t n = size * nmemb;
    if (b->len + n + 1 > b->cap) {
        if (b->len + n + 1 > MAX_RESPONSE)
            return 0; /* an answer this large is not an MDN: fail the request */
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return 0;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, ptr, n);
    b->len += n;
    b->p[b->len] = '\0';
    return n;
}

static int write_all(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    int rc = fwrite(data, 1, len, f) == len ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static void dump_response(const struct opts *o, const struct buf *hdr, const struct buf *body)
{
    long k = atomic_fetch_add(&dumped, 1);
    char dir[4096], path[4200];
    if (!o->dump_dir || k >= o->dump)
        return;
    snprintf(dir, sizeof(dir), "%s/r%ld", o->dump_dir, k + 1);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return;
    snprintf(path, sizeof(path), "%s/resp.headers", dir);
    write_all(path, hdr->p ? hdr->p : "", hdr->len);
    snprintf(path, sizeof(path), "%s/resp.body", dir);
    write_all(path, body->p ? body->p : "", body->len);
}

static int mdn_ok(const struct buf *b)
{
    if (!b->p || !memmem(b->p, b->len, "processed", 9))
        return 0;
    return !memmem(b->p, b->len, "error", 5) && !memmem(b->p, b->len, "failed", 6) &&
           !memmem(b->p, b->len, "warning", 7);
}

/* Keeps the first failure of a thread: PREFIX, up to 200 bytes of TEXT, (CODE). */
static void note_error(struct worker *w, const char *prefix, const char *text, long code)
{
    if (!w->first_error[0])
        snprintf(w->first_error, sizeof(w->first_error), "%s%.200s (%ld)", prefix, text, code);
}

static void *work(void *arg)
{
    struct worker *w = arg;
    const struct opts *o = w->o;
    struct buf body = {0}, hdr = {0};
    struct curl_slist *fixed = NULL;
    char line[600], errbuf[CURL_ERROR_SIZE];
    CURL *h = curl_easy_init();
    if (!h) {
        note_error(w, "", "curl_easy_init failed", 0);
        return NULL;
    }
    snprintf(line, sizeof(line), "Content-Type: %s", o->ctype);
    fixed = curl_slist_append(fixed, line);
    snprintf(line, sizeof(line), "AS2-From: %s", o->from);
    fixed = curl_slist_append(fixed, line);
    snprintf(line, sizeof(line), "AS2-To: %s", o->to);
    fixed = curl_slist_append(fixed, line);
    fixed = curl_slist_append(fixed, "AS2-Version: 1.2");
    fixed = curl_slist_append(fixed, "MIME-Version: 1.0");
    snprintf(line, sizeof(line), "Content-Transfer-Encoding: %s", o->cte);
    fixed = curl_slist_append(fixed, line);
    snprintf(line, sizeof(line), "Content-Disposition: attachment; filename=\"%s\"", o->filename);
    fixed = curl_slist_append(fixed, line);
    fixed = curl_slist_append(fixed, "Disposition-Notification-To: mailto:as2@partner.example");
    snprintf(line, sizeof(line),
             "Disposition-Notification-Options: signed-receipt-protocol=optional, "
             "pkcs7-signature; signed-receipt-micalg=optional, %s",
             o->micalg);
    fixed = curl_slist_append(fixed, line);
    fixed = curl_slist_append(fixed, "Expect:");

    curl_easy_setopt(h, CURLOPT_URL, o->url);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, (const char *)w->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)w->body_len);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hdr);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (o->cert)
        curl_easy_setopt(h, CURLOPT_SSLCERT, o->cert);
    if (o->key)
        curl_easy_setopt(h, CURLOPT_SSLKEY, o->key);
    if (o->cacert)
        curl_easy_setopt(h, CURLOPT_CAINFO, o->cacert);
    if (!o->reuse) {
        curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    }

    unsigned long long seq = 0;
    while (bench_now_s() < deadline && atomic_fetch_add(&issued, 1) < o->max_count) {
        struct curl_slist *hs = NULL;
        snprintf(line, sizeof(line), "Message-ID: <bench-%ld-%d-%llu@as2load.example>",
                 (long)getpid(), w->index, ++seq);
        /* the fixed headers, then this request's Message-ID */
        for (struct curl_slist *s = fixed; s; s = s->next)
            hs = curl_slist_append(hs, s->data);
        hs = curl_slist_append(hs, line);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hs);
        body.len = hdr.len = 0;
        errbuf[0] = '\0';
        double t0 = bench_now_s();
        CURLcode cc = curl_easy_perform(h);
        double ms = (bench_now_s() - t0) * 1000.0;
        curl_slist_free_all(hs);
        w->requests++;
        if (w->n_lat == w->cap_lat) {
            size_t cap = w->cap_lat ? 2 * w->cap_lat : 4096;
            double *p = realloc(w->lat_ms, cap * sizeof(double));
            if (p) {
                w->lat_ms = p;
                w->cap_lat = cap;
            }
        }
        if (w->n_lat < w->cap_lat)
            w->lat_ms[w->n_lat++] = ms;
        long code = 0, conns = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
        w->connects += conns;
        if (cc != CURLE_OK) {
            w->curl_errors++;
            note_error(w, "curl: ", errbuf[0] ? errbuf : curl_easy_strerror(cc), (long)cc);
            continue;
        }
        dump_response(o, &hdr, &body);
        if (code != 200) {
            w->http_errors++;
            note_error(w, "HTTP error: ", body.p ? body.p : "", code);
        } else if (!mdn_ok(&body)) {
            w->mdn_errors++;
            /* the Disposition line says why, when there is one */
            const char *d = body.p ? memmem(body.p, body.len, "Disposition:", 12) : NULL;
            note_error(w, "not a positive MDN: ", d ? d : body.p ? body.p : "", 0);
        } else {
            w->successes++;
        }
    }
    curl_slist_free_all(fixed);
    curl_easy_cleanup(h);
    free(body.p);
    free(hdr.p);
    return NULL;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct worker *ws = NULL;
    unsigned char *body = NULL;
    size_t body_len = 0;
    double *all = NULL;
    int rc = 1;

    if (parse_args(argc, argv, &o) < 0)
        return 2;
    if (read_file(o.body_file, &body, &body_len) < 0) {
        fprintf(stderr, "mft-as2load: cannot read %s: %s\n", o.body_file, strerror(errno));
        return 1;
    }
    if (o.dump_dir && mkdir(o.dump_dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "mft-as2load: cannot create %s: %s\n", o.dump_dir, strerror(errno));
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "mft-as2load: curl_global_init failed\n");
        goto out;
    }
    if (!(ws = calloc((size_t)o.threads, sizeof(*ws))))
        goto out_curl;
    for (long i = 0; i < o.threads; i++) {
        ws[i].index = (int)i;
        ws[i].o = &o;
        ws[i].body = body;
        ws[i].body_len = body_len;
    }
    double t0 = bench_now_s();
    deadline = t0 + o.seconds;
    long started = 0;
    for (; started < o.threads; started++)
        if (pthread_create(&ws[started].tid, NULL, work, &ws[started]) != 0) {
            fprintf(stderr, "mft-as2load: pthread_create failed\n");
            break;
        }
    for (long i = 0; i < started; i++)
        pthread_join(ws[i].tid, NULL);
    double secs = bench_now_s() - t0;

    long req = 0, succ = 0, ce = 0, he = 0, me = 0, conns = 0;
    size_t n = 0;
    const char *first_error = "";
    for (long i = 0; i < started; i++) {
        req += ws[i].requests;
        succ += ws[i].successes;
        ce += ws[i].curl_errors;
        he += ws[i].http_errors;
        me += ws[i].mdn_errors;
        conns += ws[i].connects;
        n += ws[i].n_lat;
        if (!first_error[0] && ws[i].first_error[0])
            first_error = ws[i].first_error;
    }
    if (!(all = malloc((n ? n : 1) * sizeof(double))))
        goto out_curl;
    size_t k = 0;
    for (long i = 0; i < started; i++) {
        memcpy(all + k, ws[i].lat_ms, ws[i].n_lat * sizeof(double));
        k += ws[i].n_lat;
    }
    bench_sort(all, n);
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += all[i];
    mean = n ? mean / (double)n : 0;

    /* the first error as a JSON string: printable ASCII, quotes and backslashes dropped */
    char err_json[300];
    size_t j = 0;
    for (const char *p = first_error; *p && j < sizeof(err_json) - 1; p++)
        err_json[j++] = (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\') ? *p : ' ';
    err_json[j] = '\0';

    printf("{\"threads\": %ld, \"body_bytes\": %zu, \"requests\": %ld, \"successes\": %ld, "
           "\"failures\": %ld, \"curl_errors\": %ld, \"http_errors\": %ld, \"mdn_errors\": %ld, "
           "\"seconds\": %.3f, \"msgs_per_s\": %.1f, \"p50_ms\": %.2f, \"p90_ms\": %.2f, "
           "\"p99_ms\": %.2f, \"max_ms\": %.2f, \"mean_ms\": %.2f, \"connections\": %ld, "
           "\"first_error\": \"%s\"}\n",
           (long)started, body_len, req, succ, req - succ, ce, he, me, secs,
           secs > 0 ? (double)succ / secs : 0, bench_percentile(all, n, 0.50),
           bench_percentile(all, n, 0.90), bench_percentile(all, n, 0.99), n ? all[n - 1] : 0, mean,
           conns, err_json);
    rc = started == o.threads ? 0 : 1;
out_curl:
    curl_global_cleanup();
out:
    if (ws)
        for (long i = 0; i < o.threads; i++)
            free(ws[i].lat_ms);
    free(ws);
    free(all);
    free(body);
    return rc;
}
