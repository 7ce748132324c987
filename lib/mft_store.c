/*
 * mft_store — Redis access (hiredis 0.14) for configuration records, message
 * state and duplicate-detection keys. Every key pattern written here is listed
 * in docs/redis-keys.md.
 *
 * One struct mft_store = MFT_REDIS_CONNECTIONS blocking redisContexts, each
 * guarded by its own mutex; every command (or MULTI ... EXEC block) goes
 * through run(), which takes a free connection (or waits for one), connects it
 * when needed, and on an I/O failure drops it, reconnects and replays the
 * whole block once. One connection shared by every thread made each service a
 * queue behind one Redis round trip at a time (egress's acceptors and workers
 * and ingress's connection threads waited on the one mutex, with CPU idle). A
 * thread's own calls stay in order (each waits for its reply); calls of
 * different threads were never ordered. Replaying is safe
 * because every block is idempotent apart from INCR mft:config:version, where
 * a double bump only makes readers reload once more. Commands are sent with
 * redisCommandArgv-style argument vectors, so ids and JSON are binary-safe and
 * never interpreted. I/O timeout: MFT_REDIS_TIMEOUT_MS (default 2000).
 */
#include "mft_store.h"
#include "mft_cfg.h"

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define MAX_ID_LEN 256
#define MAX_FIELDS 256

static const struct mft_cfg_var store_vars[] = {
    {"MFT_REDIS_TIMEOUT_MS", "2000", "Redis connect and command timeout in milliseconds"},
    {"MFT_REDIS_CONNECTIONS", "8",
     "Redis connections per process, used by whichever thread is free"},
    {NULL, NULL, NULL},
};

/* One connection of the pool (connected lazily). */
struct conn {
    pthread_mutex_t mu;
    redisContext *c;
};

struct mft_store {
    struct conn *conns;
    size_t n_conns;
    atomic_size_t next; /* where the search for a free connection starts */
    char *host, *user, *password;
    int port;
    long db;
    struct timeval tv;
};

/* One command of a block: argc strings with explicit lengths. */
struct cmd {
    int argc;
    const char **argv;
    size_t *len;
};

/* --- small helpers ------------------------------------------------------- */

/* Returns a malloc'd printf-formatted string, or NULL. */
static char *str_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Ids (station, partner, message uuid) are key components: 1..256 bytes of
 * printable ASCII without ':' or spaces. AS2 ids (as2 = 1) are the last
 * component of their keys: printable ASCII, spaces and ':' allowed. */
static int check_id(const char *what, const char *id, int as2, struct mft_err *err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > MAX_ID_LEN)
        return mft_err_set(err, MFT_E_CONFIG, "%s must be 1..%d characters", what, MAX_ID_LEN);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)id[i];
        if (ch < 0x20 || ch >= 0x7f || (!as2 && (ch == ' ' || ch == ':')))
            return mft_err_set(err, MFT_E_CONFIG,
                               "%s contains a character not allowed in an id (space, ':' or "
                               "non-ASCII)",
                               what);
    }
    return 0;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    static const char hex[] = "0123456789abcdef";
    if (EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        out[0] = '\0';
        return;
    }
    for (unsigned int i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 0x0f];
    }
    out[64] = '\0';
}

/* Decodes %XX escapes of a URL component into a malloc'd string. */
static char *url_decode(const char *s, size_t n)
{
    char *o = malloc(n + 1);
    size_t j = 0;
    if (!o)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (s[i] == '%' && i + 2 < n && (hi = OPENSSL_hexchar2int((unsigned char)s[i + 1])) >= 0 &&
            (lo = OPENSSL_hexchar2int((unsigned char)s[i + 2])) >= 0) {
            o[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            o[j++] = s[i];
        }
    }
    o[j] = '\0';
    return o;
}

/* Parses redis://[[user]:password@]host[:port][/db] into st. Returns 0 or -1. */
static int parse_url(struct mft_store *st, const char *url, struct mft_err *err)
{
    static const char scheme[] = "redis://";
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return mft_err_set(err, MFT_E_CONFIG, "MFT_REDIS_URL must start with redis://");
    const char *p = url + sizeof(scheme) - 1;
    const char *end = p + strcspn(p, "/?#");
    const char *at = memrchr(p, '@', (size_t)(end - p));
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (colon > p && !(st->user = url_decode(p, (size_t)(colon - p))))
                return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            if (!(st->password = url_decode(colon + 1, (size_t)(at - colon - 1))))
                return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        } else if (!(st->password = url_decode(p, (size_t)(at - p)))) {
            return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        }
        p = at + 1;
    }
    const char *hs = p, *he, *portp = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', (size_t)(end - p));
        if (!rb)
            return mft_err_set(err, MFT_E_CONFIG, "MFT_REDIS_URL: unterminated [ipv6] host");
        hs = p + 1;
        he = rb;
        if (rb + 1 < end && rb[1] == ':')
            portp = rb + 2;
    } else {
        const char *colon = memchr(p, ':', (size_t)(end - p));
        he = colon ? colon : end;
        if (colon)
            portp = colon + 1;
    }
    if (he == hs)
        return mft_err_set(err, MFT_E_CONFIG, "MFT_REDIS_URL has no host");
    if (!(st->host = url_decode(hs, (size_t)(he - hs))))
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    st->port = 6379;
    if (portp) {
        long v = 0;
        const char *q = portp;
        for (; q < end && *q >= '0' && *q <= '9' && v <= 65535; q++)
            v = v * 10 + (*q - '0');
        if (q == portp || q != end || v < 1 || v > 65535)
            return mft_err_set(err, MFT_E_CONFIG, "MFT_REDIS_URL: invalid port");
        st->port = (int)v;
    }
    st->db = 0;
    if (*end == '/' && end[1] && end[1] != '?' && end[1] != '#') {
        const char *q = end + 1;
        long v = 0;
        for (; *q >= '0' && *q <= '9' && v < 100000; q++)
            v = v * 10 + (*q - '0');
        if (q == end + 1 || (*q && *q != '?' && *q != '#'))
            return mft_err_set(err, MFT_E_CONFIG, "MFT_REDIS_URL: invalid database number");
        st->db = v;
    }
    return 0;
}

/* --- connection ---------------------------------------------------------- */

static void disconnect(struct conn *cn)
{
    if (cn->c)
        redisFree(cn->c);
    cn->c = NULL;
}

/* Sends one simple command on a fresh connection during set-up. */
static int setup_cmd(struct conn *cn, int argc, const char **argv, struct mft_err *err)
{
    redisReply *r = redisCommandArgv(cn->c, argc, argv, NULL);
    int rc = -1;
    if (!r) {
        mft_err_set(err, MFT_E_STORE_UNAVAILABLE, NULL);
        mft_err_detail(err, "%s: %s", argv[0], cn->c->errstr);
    } else if (r->type == REDIS_REPLY_ERROR) {
        mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "Redis refused %s", argv[0]);
        mft_err_detail(err, "%s", r->str);
    } else {
        rc = 0;
    }
    if (r)
        freeReplyObject(r);
    return rc;
}

/* Connects (mutex held). Returns 0 or -1 with STORE_UNAVAILABLE. */
static int connect_locked(struct mft_store *st, struct conn *cn, struct mft_err *err)
{
    if (cn->c)
        return 0;
    cn->c = redisConnectWithTimeout(st->host, st->port, st->tv);
    if (!cn->c) {
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    }
    if (cn->c->err) {
        mft_err_set(err, MFT_E_STORE_UNAVAILABLE, NULL);
        mft_err_detail(err, "connect %s:%d: %s", st->host, st->port, cn->c->errstr);
        disconnect(cn);
        return -1;
    }
    if (redisSetTimeout(cn->c, st->tv) != REDIS_OK) {
        mft_err_set(err, MFT_E_STORE_UNAVAILABLE, NULL);
        mft_err_detail(err, "set timeout: %s", cn->c->errstr);
        disconnect(cn);
        return -1;
    }
    if (st->password) {
        const char *a3[] = {"AUTH", st->user, st->password};
        const char *a2[] = {"AUTH", st->password};
        if (setup_cmd(cn, st->user ? 3 : 2, st->user ? a3 : a2, err) != 0) {
            disconnect(cn);
            return -1;
        }
    }
    if (st->db != 0) {
        char db[24];
        snprintf(db, sizeof(db), "%ld", st->db);
        const char *a[] = {"SELECT", db};
        if (setup_cmd(cn, 2, a, err) != 0) {
            disconnect(cn);
            return -1;
        }
    }
    return 0;
}

/* Sends the block (wrapped in MULTI/EXEC when multi) and reads every reply
 * (mutex held, connected). Returns the last reply (the command's own, or
 * EXEC's array), or NULL: *io = 1 for an I/O failure (retry-able), else a Redis
 * error reply, described in err. */
static redisReply *send_block(struct mft_store *st, struct conn *cn, const struct cmd *cmds,
                              size_t n, int multi, int *io, struct mft_err *err)
{
    static const char *multi_argv[] = {"MULTI"}, *exec_argv[] = {"EXEC"};
    redisReply *last = NULL;
    size_t total = n + (multi ? 2 : 0);

    *io = 0;
    if (multi)
        redisAppendCommandArgv(cn->c, 1, multi_argv, NULL);
    for (size_t i = 0; i < n; i++)
        redisAppendCommandArgv(cn->c, cmds[i].argc, cmds[i].argv, cmds[i].len);
    if (multi)
        redisAppendCommandArgv(cn->c, 1, exec_argv, NULL);

    int failed = 0;
    for (size_t i = 0; i < total; i++) {
        void *rv = NULL;
        if (redisGetReply(cn->c, &rv) != REDIS_OK || !rv) {
            *io = 1;
            mft_err_set(err, MFT_E_STORE_UNAVAILABLE, NULL);
            mft_err_detail(err, "%s:%d: %s", st->host, st->port,
                           cn->c->errstr[0] ? cn->c->errstr : "connection lost");
            if (last)
                freeReplyObject(last);
            return NULL;
        }
        redisReply *r = rv;
        if (r->type == REDIS_REPLY_ERROR && !failed) {
            failed = 1;
            mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "Redis refused the command");
            mft_err_detail(err, "%s", r->str);
        }
        if (last)
            freeReplyObject(last);
        last = r;
    }
    if (failed) {
        freeReplyObject(last);
        return NULL;
    }
    if (multi && last->type != REDIS_REPLY_ARRAY) {
        mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "Redis aborted the transaction");
        freeReplyObject(last);
        return NULL;
    }
    return last;
}

/* Takes a connection: the first free one from a moving start, else waits for
 * the start one. Returns it locked. */
static struct conn *take_conn(struct mft_store *st)
{
    size_t start = atomic_fetch_add(&st->next, 1) % st->n_conns;
    for (size_t i = 0; i < st->n_conns; i++) {
        struct conn *cn = &st->conns[(start + i) % st->n_conns];
        if (pthread_mutex_trylock(&cn->mu) == 0)
            return cn;
    }
    pthread_mutex_lock(&st->conns[start].mu);
    return &st->conns[start];
}

/* Runs a block on one connection of the pool, reconnecting and replaying once
 * after an I/O failure. Returns the reply (caller frees with freeReplyObject)
 * or NULL. */
static redisReply *run(struct mft_store *st, const struct cmd *cmds, size_t n, int multi,
                       struct mft_err *err)
{
    redisReply *r = NULL;
    if (!st) {
        mft_err_set(err, MFT_E_INTERNAL, "mft_store: no store");
        return NULL;
    }
    struct conn *cn = take_conn(st);
    for (int attempt = 0; attempt < 2; attempt++) {
        int io = 0;
        if (connect_locked(st, cn, err) != 0)
            break;
        r = send_block(st, cn, cmds, n, multi, &io, err);
        if (r || !io)
            break;
        disconnect(cn); /* the context is unusable after an I/O error */
    }
    pthread_mutex_unlock(&cn->mu);
    return r;
}

/* Runs one command given as NUL-terminated strings. */
static redisReply *run1(struct mft_store *st, struct mft_err *err, int argc, const char **argv)
{
    struct cmd c = {argc, argv, NULL};
    return run(st, &c, 1, 0, err);
}

/* --- public API ---------------------------------------------------------- */

int mft_store_open(const char *url, struct mft_store **out, struct mft_err *err)
{
    struct mft_store *st = NULL;
    long ms = 0, nc = 0;
    int rc = -1;

    *out = NULL;
    if (!(st = calloc(1, sizeof(*st)))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (mft_cfg_long(store_vars, "MFT_REDIS_TIMEOUT_MS", &ms) != 0 || ms < 1 || ms > 600000) {
        mft_err_set(err, MFT_E_CONFIG, "MFT_REDIS_TIMEOUT_MS must be 1..600000");
        goto out;
    }
    if (mft_cfg_long(store_vars, "MFT_REDIS_CONNECTIONS", &nc) != 0 || nc < 1 || nc > 256) {
        mft_err_set(err, MFT_E_CONFIG, "MFT_REDIS_CONNECTIONS must be 1..256");
        goto out;
    }
    if (!(st->conns = calloc((size_t)nc, sizeof(*st->conns)))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    for (; st->n_conns < (size_t)nc; st->n_conns++)
        pthread_mutex_init(&st->conns[st->n_conns].mu, NULL);
    st->tv.tv_sec = ms / 1000;
    st->tv.tv_usec = (ms % 1000) * 1000;
    if (parse_url(st, url, err) != 0)
        goto out;
    /* the first connection at once: an unreachable Redis is told at start */
    pthread_mutex_lock(&st->conns[0].mu);
    int c = connect_locked(st, &st->conns[0], err);
    pthread_mutex_unlock(&st->conns[0].mu);
    if (c != 0)
        goto out;
    *out = st;
    st = NULL;
    rc = 0;
out:
    mft_store_close(st);
    return rc;
}

void mft_store_close(struct mft_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n_conns; i++) {
        disconnect(&st->conns[i]);
        pthread_mutex_destroy(&st->conns[i].mu);
    }
    free(st->conns);
    free(st->host);
    free(st->user);
    if (st->password) {
        OPENSSL_cleanse(st->password, strlen(st->password));
        free(st->password);
    }
    free(st);
}

int mft_store_ping(struct mft_store *st, struct mft_err *err)
{
    const char *a[] = {"PING"};
    redisReply *r = run1(st, err, 1, a);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

/* Reads a string key: 0 and malloc'd *val, 1 when absent, -1 on error. */
static int get_string(struct mft_store *st, const char *cmd, const char *key, const char *field,
                      char **val, struct mft_err *err)
{
    const char *a[] = {cmd, key, field};
    *val = NULL;
    redisReply *r = run1(st, err, field ? 3 : 2, a);
    int rc = -1;
    if (!r)
        return -1;
    if (r->type == REDIS_REPLY_NIL) {
        rc = 1;
    } else if (r->type == REDIS_REPLY_STRING) {
        if ((*val = malloc(r->len + 1))) {
            memcpy(*val, r->str, r->len);
            (*val)[r->len] = '\0';
            rc = 0;
        } else {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        }
    } else {
        mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "unexpected Redis reply type %d for %s", r->type,
                    key);
    }
    freeReplyObject(r);
    return rc;
}

/* Copies an array reply of strings into a malloc'd, NULL-terminated list. */
static int reply_to_list(const redisReply *r, char ***out, size_t *n, struct mft_err *err)
{
    *out = NULL;
    *n = 0;
    if (r->type != REDIS_REPLY_ARRAY)
        return mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "unexpected Redis reply type %d", r->type);
    char **l = calloc(r->elements + 1, sizeof(*l));
    if (!l)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || !(l[i] = malloc(e->len + 1))) {
            mft_store_free_list(l, i);
            return mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "unexpected Redis list element");
        }
        memcpy(l[i], e->str, e->len);
        l[i][e->len] = '\0';
    }
    *out = l;
    *n = r->elements;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_set_sorted(struct mft_store *st, const char *key, char ***ids, size_t *n,
                           struct mft_err *err)
{
    const char *a[] = {"SMEMBERS", key};
    redisReply *r = run1(st, err, 2, a);
    if (!r) {
        *ids = NULL;
        *n = 0;
        return -1;
    }
    int rc = reply_to_list(r, ids, n, err);
    freeReplyObject(r);
    if (rc == 0 && *n > 1)
        qsort(*ids, *n, sizeof(**ids), cmp_str);
    return rc;
}

void mft_store_free_list(char **ids, size_t n)
{
    if (!ids)
        return;
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

int mft_store_put_station(struct mft_store *st, const char *id, const char *as2_id,
                          const char *json, struct mft_err *err)
{
    char *k_rec = NULL, *k_idx = NULL;
    int rc = -1;
    if (check_id("station id", id, 0, err) || check_id("station AS2 id", as2_id, 1, err))
        goto out;
    if (!json) {
        mft_err_set(err, MFT_E_CONFIG, "station %s: no JSON", id);
        goto out;
    }
    k_rec = str_fmt("mft:station:%s", id);
    k_idx = str_fmt("mft:idx:station-as2:%s", as2_id);
    if (!k_rec || !k_idx) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    const char *set_rec[] = {"SET", k_rec, json};
    const char *set_idx[] = {"SET", k_idx, id};
    const char *add[] = {"SADD", "mft:stations", id};
    const char *ver[] = {"INCR", "mft:config:version"};
    const struct cmd cmds[] = {
        {3, set_rec, NULL}, {3, set_idx, NULL}, {3, add, NULL}, {2, ver, NULL}};
    redisReply *r = run(st, cmds, 4, 1, err);
    if (!r)
        goto out;
    freeReplyObject(r);
    rc = 0;
out:
    free(k_rec);
    free(k_idx);
    return rc;
}

int mft_store_put_partner(struct mft_store *st, const char *id, const char *station_id,
                          const char *as2_id, const char *json, struct mft_err *err)
{
    char *k_rec = NULL, *k_idx = NULL, *k_set = NULL;
    int rc = -1;
    if (check_id("partner id", id, 0, err) || check_id("station id", station_id, 0, err) ||
        check_id("partner AS2 id", as2_id, 1, err))
        goto out;
    if (!json) {
        mft_err_set(err, MFT_E_CONFIG, "partner %s: no JSON", id);
        goto out;
    }
    k_rec = str_fmt("mft:partner:%s", id);
    k_idx = str_fmt("mft:idx:partner-as2:%s:%s", station_id, as2_id);
    k_set = str_fmt("mft:station:%s:partners", station_id);
    if (!k_rec || !k_idx || !k_set) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    const char *set_rec[] = {"SET", k_rec, json};
    const char *set_idx[] = {"SET", k_idx, id};
    const char *add_st[] = {"SADD", k_set, id};
    const char *add[] = {"SADD", "mft:partners", id};
    const char *ver[] = {"INCR", "mft:config:version"};
    const struct cmd cmds[] = {
        {3, set_rec, NULL}, {3, set_idx, NULL}, {3, add_st, NULL}, {3, add, NULL}, {2, ver, NULL}};
    redisReply *r = run(st, cmds, 5, 1, err);
    if (!r)
        goto out;
    freeReplyObject(r);
    rc = 0;
out:
    free(k_rec);
    free(k_idx);
    free(k_set);
    return rc;
}

int mft_store_list_stations(struct mft_store *st, char ***ids, size_t *n, struct mft_err *err)
{
    return list_set_sorted(st, "mft:stations", ids, n, err);
}

int mft_store_list_partners(struct mft_store *st, char ***ids, size_t *n, struct mft_err *err)
{
    return list_set_sorted(st, "mft:partners", ids, n, err);
}

static int get_record(struct mft_store *st, const char *prefix, const char *id, char **json,
                      struct mft_err *err)
{
    *json = NULL;
    if (check_id("id", id, 0, err))
        return -1;
    char *k = str_fmt("%s%s", prefix, id);
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    int rc = get_string(st, "GET", k, NULL, json, err);
    free(k);
    return rc;
}

int mft_store_get_station(struct mft_store *st, const char *id, char **json, struct mft_err *err)
{
    return get_record(st, "mft:station:", id, json, err);
}

int mft_store_get_partner(struct mft_store *st, const char *id, char **json, struct mft_err *err)
{
    return get_record(st, "mft:partner:", id, json, err);
}

int mft_store_config_version(struct mft_store *st, long long *version, struct mft_err *err)
{
    char *v = NULL;
    *version = 0;
    int rc = get_string(st, "GET", "mft:config:version", NULL, &v, err);
    if (rc < 0)
        return -1;
    if (rc == 1)
        return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    rc = 0;
    if (errno || end == v || *end)
        rc = mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "mft:config:version is not an integer");
    else
        *version = x;
    free(v);
    return rc;
}

/* Builds mft:dup:<partner>:<sha256-hex(message_id)>. */
static char *dup_key(const char *partner_id, const char *message_id)
{
    char hex[65];
    sha256_hex(message_id, hex);
    if (!hex[0])
        return NULL;
    return str_fmt("mft:dup:%s:%s", partner_id, hex);
}

int mft_store_dup_get(struct mft_store *st, const char *partner_id, const char *message_id,
                      char *out, size_t outlen, struct mft_err *err)
{
    char *k = NULL, *v = NULL;
    int rc = -1;
    if (out && outlen)
        out[0] = '\0';
    if (check_id("partner id", partner_id, 0, err))
        goto out;
    if (!message_id || !*message_id) {
        mft_err_set(err, MFT_E_INTERNAL, "mft_store_dup_get: empty message id");
        goto out;
    }
    if (!(k = dup_key(partner_id, message_id))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    int g = get_string(st, "GET", k, NULL, &v, err);
    if (g < 0)
        goto out;
    if (g == 1) {
        rc = 0;
        goto out;
    }
    if (!out || strlen(v) >= outlen) {
        mft_err_set(err, MFT_E_INTERNAL, "mft_store_dup_get: output buffer too small");
        goto out;
    }
    memcpy(out, v, strlen(v) + 1);
    rc = 1;
out:
    free(k);
    free(v);
    return rc;
}

int mft_store_dup_claim(struct mft_store *st, const char *partner_id, const char *message_id,
                        const char *uuid, long lease_ms, struct mft_err *err)
{
    char lease[32];
    if (check_id("partner id", partner_id, 0, err) || check_id("message uuid", uuid, 0, err))
        return -1;
    if (!message_id || !*message_id)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_store_dup_claim: empty message id");
    char *d = dup_key(partner_id, message_id), *k = d ? str_fmt("%s:wip", d) : NULL;
    free(d);
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    snprintf(lease, sizeof(lease), "%ld", lease_ms > 0 ? lease_ms : 900000L);
    const char *a[] = {"SET", k, uuid, "NX", "PX", lease};
    redisReply *r = run1(st, err, 6, a);
    free(k);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_STATUS ? 1 : r->type == REDIS_REPLY_NIL ? 0 : -1;
    if (rc < 0)
        mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "unexpected Redis reply to SET NX PX");
    freeReplyObject(r);
    return rc;
}

int mft_store_dup_release(struct mft_store *st, const char *partner_id, const char *message_id,
                          const char *uuid, struct mft_err *err)
{
    /* compare-and-delete: a claim that expired and was taken over stays */
    static const char script[] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
        "return 0";
    if (check_id("partner id", partner_id, 0, err) || !message_id || !*message_id)
        return -1;
    char *d = dup_key(partner_id, message_id), *k = d ? str_fmt("%s:wip", d) : NULL;
    free(d);
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    const char *a[] = {"EVAL", script, "1", k, uuid};
    redisReply *r = run1(st, err, 5, a);
    free(k);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

int mft_store_message_put(struct mft_store *st, const char *uuid, const char *station_id,
                          const char *partner_id, const char *message_id, long long received_ms,
                          long dup_ttl_s, const char *const *fields, struct mft_err *err)
{
    char *k_msg = NULL, *k_st = NULL, *k_dup = NULL;
    const char **hset = NULL;
    char score[32], ttl[32];
    int rc = -1;
    size_t nf = 0;

    if (check_id("message uuid", uuid, 0, err) || check_id("station id", station_id, 0, err) ||
        check_id("partner id", partner_id, 0, err))
        goto out;
    if (dup_ttl_s > 0 && (!message_id || !*message_id)) {
        mft_err_set(err, MFT_E_INTERNAL, "mft_store_message_put: dup key needs a message id");
        goto out;
    }
    while (fields && fields[nf] && nf <= MAX_FIELDS * 2)
        nf++;
    if (nf % 2 != 0 || nf > MAX_FIELDS * 2) {
        mft_err_set(err, MFT_E_INTERNAL,
                    "mft_store_message_put: fields must be key,value pairs "
                    "(at most %d)",
                    MAX_FIELDS);
        goto out;
    }
    k_msg = str_fmt("mft:msg:%s", uuid);
    k_st = str_fmt("mft:msgs:%s", station_id);
    hset = calloc(nf + 2, sizeof(*hset));
    if (!k_msg || !k_st || !hset) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    snprintf(score, sizeof(score), "%lld", received_ms);
    snprintf(ttl, sizeof(ttl), "%ld", dup_ttl_s);
    hset[0] = "HSET";
    hset[1] = k_msg;
    for (size_t i = 0; i < nf; i++)
        hset[2 + i] = fields[i];
    const char *z_st[] = {"ZADD", k_st, score, uuid};
    const char *z_all[] = {"ZADD", "mft:msgs", score, uuid};
    struct cmd cmds[4];
    size_t n = 0;
    if (nf > 0)
        cmds[n++] = (struct cmd){(int)nf + 2, hset, NULL};
    cmds[n++] = (struct cmd){4, z_st, NULL};
    cmds[n++] = (struct cmd){4, z_all, NULL};
    const char *set_dup[] = {"SET", NULL, uuid, "EX", ttl};
    if (dup_ttl_s > 0) {
        if (!(k_dup = dup_key(partner_id, message_id))) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
        set_dup[1] = k_dup;
        cmds[n++] = (struct cmd){5, set_dup, NULL};
    }
    redisReply *r = run(st, cmds, n, 1, err);
    if (!r)
        goto out;
    freeReplyObject(r);
    rc = 0;
out:
    free(k_msg);
    free(k_st);
    free(k_dup);
    free(hset);
    return rc;
}

int mft_store_message_field(struct mft_store *st, const char *uuid, const char *field, char **value,
                            struct mft_err *err)
{
    *value = NULL;
    if (check_id("message uuid", uuid, 0, err))
        return -1;
    if (!field || !*field)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_store_message_field: no field");
    char *k = str_fmt("mft:msg:%s", uuid);
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    int rc = get_string(st, "HGET", k, field, value, err);
    free(k);
    return rc;
}

/* The newest `limit` members of <base>[:<station_id>] (a ZSET by time). */
static int list_newest(struct mft_store *st, const char *base, const char *station_id, size_t limit,
                       char ***uuids, size_t *n, struct mft_err *err);

int mft_store_list_messages(struct mft_store *st, const char *station_id, size_t limit,
                            char ***uuids, size_t *n, struct mft_err *err)
{
    return list_newest(st, "mft:msgs", station_id, limit, uuids, n, err);
}

int mft_store_list_out(struct mft_store *st, const char *station_id, size_t limit, char ***uuids,
                       size_t *n, struct mft_err *err)
{
    return list_newest(st, "mft:outs", station_id, limit, uuids, n, err);
}

static int list_newest(struct mft_store *st, const char *base, const char *station_id, size_t limit,
                       char ***uuids, size_t *n, struct mft_err *err)
{
    char *k = NULL;
    char stop[32];
    int rc = -1;
    *uuids = NULL;
    *n = 0;
    if (station_id && check_id("station id", station_id, 0, err))
        goto out;
    if (limit == 0) {
        if (!(*uuids = calloc(1, sizeof(**uuids)))) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
        rc = 0;
        goto out;
    }
    k = station_id ? str_fmt("%s:%s", base, station_id) : str_fmt("%s", base);
    if (!k) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    snprintf(stop, sizeof(stop), "%zu", limit - 1);
    const char *a[] = {"ZREVRANGE", k, "0", stop};
    redisReply *r = run1(st, err, 4, a);
    if (!r)
        goto out;
    rc = reply_to_list(r, uuids, n, err);
    freeReplyObject(r);
out:
    free(k);
    return rc;
}

static int hash_get(struct mft_store *st, const char *prefix, const char *uuid, char ***kv,
                    size_t *count, struct mft_err *err);

int mft_store_message_get(struct mft_store *st, const char *uuid, char ***kv, size_t *count,
                          struct mft_err *err)
{
    return hash_get(st, "mft:msg:", uuid, kv, count, err);
}

int mft_store_out_get(struct mft_store *st, const char *uuid, char ***kv, size_t *count,
                      struct mft_err *err)
{
    return hash_get(st, "mft:out:", uuid, kv, count, err);
}

/* HGETALL <prefix><uuid>: 0, 1 when absent, -1. */
static int hash_get(struct mft_store *st, const char *prefix, const char *uuid, char ***kv,
                    size_t *count, struct mft_err *err)
{
    *kv = NULL;
    *count = 0;
    if (check_id("message uuid", uuid, 0, err))
        return -1;
    char *k = str_fmt("%s%s", prefix, uuid);
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    const char *a[] = {"HGETALL", k};
    redisReply *r = run1(st, err, 2, a);
    free(k);
    if (!r)
        return -1;
    int rc = reply_to_list(r, kv, count, err);
    freeReplyObject(r);
    if (rc == 0 && *count == 0) {
        mft_store_free_list(*kv, 0);
        *kv = NULL;
        rc = 1;
    }
    return rc;
}

/* --- outgoing messages ---------------------------------------------------- */

/* mft:out:mid:<sha256-hex of the Message-ID without angle brackets> */
static char *mid_key(const char *mid)
{
    char hex[65], *bare = NULL, *k = NULL;
    size_t n = strlen(mid);
    if (n >= 2 && mid[0] == '<' && mid[n - 1] == '>')
        bare = strndup(mid + 1, n - 2);
    else
        bare = strdup(mid);
    if (!bare)
        return NULL;
    sha256_hex(bare, hex);
    if (hex[0])
        k = str_fmt("mft:out:mid:%s", hex);
    free(bare);
    return k;
}

static int check_schedule(const char *s, struct mft_err *err)
{
    if (s && strcmp(s, MFT_STORE_OUT_RETRY) != 0 && strcmp(s, MFT_STORE_OUT_MDN) != 0)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_store: unknown schedule \"%s\"", s);
    return 0;
}

int mft_store_out_claim(struct mft_store *st, const char *request_id, const char *uuid, long ttl_s,
                        char *existing, size_t existing_len, struct mft_err *err)
{
    char ttl[32];
    int rc = -1;
    if (existing && existing_len)
        existing[0] = '\0';
    /* any caller's id fits the key: it is hashed (like Message-IDs) */
    char hex[65];
    if (!request_id || !*request_id || strlen(request_id) > 1000)
        return mft_err_set(err, MFT_E_CONFIG, "a request id must be 1..1000 characters");
    if (check_id("message uuid", uuid, 0, err))
        return -1;
    sha256_hex(request_id, hex);
    char *k = hex[0] ? str_fmt("mft:out:req:%s", hex) : NULL;
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    snprintf(ttl, sizeof(ttl), "%ld", ttl_s > 0 ? ttl_s : 2592000L);
    const char *a[] = {"SET", k, uuid, "NX", "EX", ttl, "GET"};
    redisReply *r = run1(st, err, 7, a);
    if (!r)
        goto out;
    if (r->type == REDIS_REPLY_NIL) {
        rc = 1;
    } else if (r->type == REDIS_REPLY_STRING && existing && r->len < existing_len) {
        memcpy(existing, r->str, r->len);
        existing[r->len] = '\0';
        rc = 0;
    } else {
        mft_err_set(err, MFT_E_STORE_UNAVAILABLE, "unexpected Redis reply to SET NX GET on %s", k);
    }
    freeReplyObject(r);
out:
    free(k);
    return rc;
}

/*
 * The guarded form of mft_store_out_put: one script, so a message that has
 * ended (an async MDN arrived while egress was still recording the HTTP
 * answer) is never moved back. Returns 0 applied, 1 skipped, -1 on error.
 */
static int put_unless_final(struct mft_store *st, const char *k, const char *uuid,
                            const char **fields, size_t nf, char *const unsched[2],
                            const char *k_due, const char *due, const char *event,
                            struct mft_err *err)
{
    static const char script[] =
        "local s = redis.call('HGET', KEYS[1], 'state') "
        "if s == 'delivered' or s == 'failed' then return 0 end "
        "if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end "
        "if KEYS[2] ~= '' then redis.call('ZREM', KEYS[2], ARGV[1]) end "
        "if KEYS[3] ~= '' then redis.call('ZREM', KEYS[3], ARGV[1]) end "
        "if KEYS[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[2], ARGV[1]) end "
        "if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[5], ARGV[3]) end "
        "return 1";
    const char **a = calloc(nf + 11, sizeof(*a));
    if (!a)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    size_t n = 0;
    a[n++] = "EVAL";
    a[n++] = script;
    a[n++] = "5";
    a[n++] = k;
    a[n++] = unsched[0] ? unsched[0] : "";
    a[n++] = unsched[1] ? unsched[1] : "";
    a[n++] = k_due ? k_due : "";
    a[n++] = MFT_STORE_OUT_EVENTS_KEY;
    a[n++] = uuid;
    a[n++] = due;
    a[n++] = event ? event : "";
    for (size_t i = 0; i < nf; i++)
        a[n++] = fields[i];
    redisReply *r = run1(st, err, (int)n, a);
    free(a);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER ? (r->integer == 1 ? 0 : 1)
                                            : mft_err_set(err, MFT_E_STORE_UNAVAILABLE,
                                                          "unexpected reply to the guarded write");
    freeReplyObject(r);
    return rc;
}

int mft_store_out_put(struct mft_store *st, const char *uuid, const char *const *fields,
                      const struct mft_store_out_op *op, struct mft_err *err)
{
    static const struct mft_store_out_op none;
    char *k = NULL, *k_st = NULL, *k_mid = NULL, *k_due = NULL, *k_un[2] = {NULL, NULL};
    const char **hset = NULL;
    char created[32], due[32], ttl[32];
    size_t nf = 0, n = 0;
    int rc = -1;
    struct cmd cmds[10];

    if (!op)
        op = &none;
    if (check_id("message uuid", uuid, 0, err) || check_schedule(op->schedule, err) ||
        check_schedule(op->unschedule[0], err) || check_schedule(op->unschedule[1], err))
        return -1;
    if (op->created_ms > 0 && check_id("station id", op->station_id, 0, err))
        return -1;
    while (fields && fields[nf] && nf <= MAX_FIELDS * 2)
        nf++;
    if (nf % 2 != 0 || nf > MAX_FIELDS * 2)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_store_out_put: fields must be pairs");
    if (!(k = str_fmt("mft:out:%s", uuid)) || !(hset = calloc(nf + 2, sizeof(*hset)))) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    hset[0] = "HSET";
    hset[1] = k;
    for (size_t i = 0; i < nf; i++)
        hset[2 + i] = fields[i];
    if (nf > 0)
        cmds[n++] = (struct cmd){(int)nf + 2, hset, NULL};

    snprintf(created, sizeof(created), "%lld", op->created_ms);
    const char *z_all[] = {"ZADD", "mft:outs", created, uuid};
    const char *z_st[] = {"ZADD", NULL, created, uuid};
    if (op->created_ms > 0) {
        if (!(k_st = str_fmt("mft:outs:%s", op->station_id))) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
        z_st[1] = k_st;
        cmds[n++] = (struct cmd){4, z_all, NULL};
        cmds[n++] = (struct cmd){4, z_st, NULL};
    }
    snprintf(ttl, sizeof(ttl), "%ld", op->index_ttl_s > 0 ? op->index_ttl_s : 2592000L);
    const char *set_mid[] = {"SET", NULL, uuid, "EX", ttl};
    if (op->index_mid && *op->index_mid) {
        if (!(k_mid = mid_key(op->index_mid))) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
        set_mid[1] = k_mid;
        cmds[n++] = (struct cmd){5, set_mid, NULL};
    }
    const char *zrem[2][3];
    for (int i = 0; i < 2; i++) {
        if (!op->unschedule[i])
            continue;
        if (!(k_un[i] = str_fmt("mft:out:due:%s", op->unschedule[i]))) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
        zrem[i][0] = "ZREM";
        zrem[i][1] = k_un[i];
        zrem[i][2] = uuid;
        cmds[n++] = (struct cmd){3, zrem[i], NULL};
    }
    snprintf(due, sizeof(due), "%lld", op->due_ms);
    const char *z_due[] = {"ZADD", NULL, due, uuid};
    if (op->schedule) {
        if (!(k_due = str_fmt("mft:out:due:%s", op->schedule))) {
            mft_err_set(err, MFT_E_NO_MEMORY, NULL);
            goto out;
        }
        z_due[1] = k_due;
        cmds[n++] = (struct cmd){4, z_due, NULL};
    }
    const char *rpush[] = {"RPUSH", MFT_STORE_OUT_EVENTS_KEY, op->pending_event};
    if (op->pending_event && !op->unless_final)
        cmds[n++] = (struct cmd){3, rpush, NULL};
    if (n == 0) {
        rc = 0;
        goto out;
    }
    if (op->unless_final) {
        rc = put_unless_final(st, k, uuid, hset + 2, nf, k_un, op->schedule ? k_due : NULL, due,
                              op->pending_event, err);
        goto out;
    }
    redisReply *r = run(st, cmds, n, 1, err);
    if (!r)
        goto out;
    freeReplyObject(r);
    rc = 0;
out:
    free(k);
    free(k_st);
    free(k_mid);
    free(k_due);
    free(k_un[0]);
    free(k_un[1]);
    free(hset);
    return rc;
}

int mft_store_out_due(struct mft_store *st, const char *schedule, long long now_ms, size_t limit,
                      char ***uuids, size_t *n, struct mft_err *err)
{
    char max[32], cnt[32];
    *uuids = NULL;
    *n = 0;
    if (!schedule || check_schedule(schedule, err))
        return -1;
    char *k = str_fmt("mft:out:due:%s", schedule);
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    snprintf(max, sizeof(max), "%lld", now_ms);
    snprintf(cnt, sizeof(cnt), "%zu", limit ? limit : 1);
    const char *a[] = {"ZRANGE", k, "-inf", max, "BYSCORE", "LIMIT", "0", cnt};
    redisReply *r = run1(st, err, 8, a);
    free(k);
    if (!r)
        return -1;
    int rc = reply_to_list(r, uuids, n, err);
    freeReplyObject(r);
    return rc;
}

int mft_store_out_take(struct mft_store *st, const char *schedule, const char *uuid,
                       long long now_ms, long long lease_ms, struct mft_err *err)
{
    /* compare-and-set on the score: only one worker moves a due entry */
    static const char script[] =
        "local s = redis.call('ZSCORE', KEYS[1], ARGV[1]) "
        "if s and tonumber(s) <= tonumber(ARGV[2]) then "
        "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) return 1 end return 0";
    char now[32], until[32];
    if (!schedule || check_schedule(schedule, err) || check_id("message uuid", uuid, 0, err))
        return -1;
    char *k = str_fmt("mft:out:due:%s", schedule);
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    snprintf(now, sizeof(now), "%lld", now_ms);
    snprintf(until, sizeof(until), "%lld", now_ms + lease_ms);
    const char *a[] = {"EVAL", script, "1", k, uuid, now, until};
    redisReply *r = run1(st, err, 7, a);
    free(k);
    if (!r)
        return -1;
    int rc = r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 1 : 0;
    freeReplyObject(r);
    return rc;
}

int mft_store_out_by_mid(struct mft_store *st, const char *mid, char *uuid, size_t uuid_len,
                         struct mft_err *err)
{
    char *v = NULL;
    if (uuid && uuid_len)
        uuid[0] = '\0';
    if (!mid || !*mid)
        return 0;
    char *k = mid_key(mid);
    if (!k)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    int g = get_string(st, "GET", k, NULL, &v, err);
    free(k);
    if (g != 0)
        return g < 0 ? -1 : 0;
    int rc = 1;
    if (!uuid || strlen(v) >= uuid_len)
        rc = mft_err_set(err, MFT_E_INTERNAL, "mft_store_out_by_mid: buffer too small");
    else
        memcpy(uuid, v, strlen(v) + 1);
    free(v);
    return rc;
}

int mft_store_out_events(struct mft_store *st, size_t limit, char ***entries, size_t *n,
                         struct mft_err *err)
{
    char last[32];
    *entries = NULL;
    *n = 0;
    snprintf(last, sizeof(last), "%zu", limit ? limit - 1 : 0);
    const char *a[] = {"LRANGE", MFT_STORE_OUT_EVENTS_KEY, "0", last};
    redisReply *r = run1(st, err, 4, a);
    if (!r)
        return -1;
    int rc = reply_to_list(r, entries, n, err);
    freeReplyObject(r);
    return rc;
}

int mft_store_out_event_done(struct mft_store *st, const char *entry, struct mft_err *err)
{
    const char *a[] = {"LREM", MFT_STORE_OUT_EVENTS_KEY, "1", entry};
    redisReply *r = run1(st, err, 4, a);
    if (!r)
        return -1;
    freeReplyObject(r);
    return 0;
}

const char *mft_store_kv(char *const *kv, size_t count, const char *key)
{
    for (size_t i = 0; kv && i + 1 < count; i += 2)
        if (kv[i] && strcmp(kv[i], key) == 0)
            return kv[i + 1] ? kv[i + 1] : "";
    return "";
}
