/*
 * test_ops — the metrics registry and the ops port. The rendered text is
 * parsed line by line as the Prometheus text format (HELP, TYPE, series with
 * labels and a number) and its values compared with what was added and set;
 * 4 threads x 10000 increments must add up exactly. The ops server is started
 * on a free loopback port and asked with raw HTTP/1.0: /livez, /readyz (ready
 * and not ready, with the reason), /metrics, an unknown path, a POST.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mft_ops.h"
#include "mft_testenv.h"

/* ---- a small Prometheus text-format parser ---- */

struct prom_series {
    char name[96];
    char labels[256];
    double value;
};

struct prom {
    struct prom_series s[128];
    size_t n;
    char help[16][96], help_text[16][200], type[16][16];
    size_t n_metrics;
};

static int name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return 0;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return 0;
    return 1;
}

/* Checks `a="x",b="y"` (no trailing comma needed, escapes \" \\ \n allowed). */
static int labels_ok(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t k = i;
        while (k < n && s[k] != '=')
            k++;
        if (k == n || !name_ok(s + i, k - i) || k + 1 >= n || s[k + 1] != '"')
            return 0;
        size_t v = k + 2;
        while (v < n && s[v] != '"') {
            if (s[v] == '\\') {
                if (v + 1 >= n || !strchr("\"\\n", s[v + 1]))
                    return 0;
                v++;
            }
            v++;
        }
        if (v >= n)
            return 0;
        i = v + 1;
        if (i < n) {
            if (s[i] != ',')
                return 0;
            i++;
        }
    }
    return 1;
}

static void prom_parse(const char *text, struct prom *p)
{
    memset(p, 0, sizeof(*p));
    assert_non_null(text);
    size_t tl = strlen(text);
    assert_true(tl == 0 || text[tl - 1] == '\n');
    const char *line = text;
    int lineno = 0;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = (size_t)(eol - line);
        char l[600];
        lineno++;
        assert_true(len < sizeof(l));
        memcpy(l, line, len);
        l[len] = '\0';
        line = eol + 1;
        if (strncmp(l, "# HELP ", 7) == 0) {
            char *sp = strchr(l + 7, ' ');
            if (!sp || !name_ok(l + 7, (size_t)(sp - l - 7)))
                fail_msg("line %d: bad HELP: %s", lineno, l);
            assert_true(p->n_metrics < 16);
            /* HELP opens a new metric family; names are unique */
            for (size_t m = 0; m < p->n_metrics; m++)
                if (strncmp(p->help[m], l + 7, (size_t)(sp - l - 7)) == 0 &&
                    p->help[m][sp - l - 7] == '\0')
                    fail_msg("line %d: metric declared twice: %s", lineno, l);
            snprintf(p->help[p->n_metrics], 96, "%.*s", (int)(sp - l - 7), l + 7);
            snprintf(p->help_text[p->n_metrics], 200, "%s", sp + 1);
            p->n_metrics++;
            continue;
        }
        if (strncmp(l, "# TYPE ", 7) == 0) {
            char *sp = strchr(l + 7, ' ');
            assert_non_null(sp);
            if (p->n_metrics == 0 || strlen(p->help[p->n_metrics - 1]) != (size_t)(sp - l - 7) ||
                strncmp(l + 7, p->help[p->n_metrics - 1], (size_t)(sp - l - 7)) != 0)
                fail_msg("line %d: TYPE not right after its HELP: %s", lineno, l);
            if (strcmp(sp + 1, "counter") != 0 && strcmp(sp + 1, "gauge") != 0)
                fail_msg("line %d: unknown type: %s", lineno, l);
            snprintf(p->type[p->n_metrics - 1], 16, "%s", sp + 1);
            continue;
        }
        if (l[0] == '#')
            fail_msg("line %d: unexpected comment: %s", lineno, l);
        /* series: name[{labels}] value */
        size_t nl = strcspn(l, "{ ");
        if (!name_ok(l, nl))
            fail_msg("line %d: bad metric name: %s", lineno, l);
        if (p->n_metrics == 0 || !p->type[p->n_metrics - 1][0] ||
            strlen(p->help[p->n_metrics - 1]) != nl ||
            strncmp(l, p->help[p->n_metrics - 1], nl) != 0)
            fail_msg("line %d: series outside its family: %s", lineno, l);
        struct prom_series *s = &p->s[p->n];
        assert_true(p->n < 128);
        snprintf(s->name, sizeof(s->name), "%.*s", (int)nl, l);
        const char *rest = l + nl;
        if (*rest == '{') {
            const char *close = strrchr(rest, '}');
            if (!close || !labels_ok(rest + 1, (size_t)(close - rest - 1)))
                fail_msg("line %d: bad labels: %s", lineno, l);
            snprintf(s->labels, sizeof(s->labels), "%.*s", (int)(close - rest - 1), rest + 1);
            rest = close + 1;
        }
        if (*rest != ' ')
            fail_msg("line %d: no space before the value: %s", lineno, l);
        char *end;
        s->value = strtod(rest + 1, &end);
        if (end == rest + 1 || *end)
            fail_msg("line %d: bad value: %s", lineno, l);
        for (size_t i = 0; i < p->n; i++)
            if (strcmp(p->s[i].name, s->name) == 0 && strcmp(p->s[i].labels, s->labels) == 0)
                fail_msg("line %d: duplicate series: %s", lineno, l);
        p->n++;
    }
}

/* Returns the series' value, or -12345 when absent. */
static double prom_value(const struct prom *p, const char *name, const char *labels)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->s[i].name, name) == 0 && strcmp(p->s[i].labels, labels) == 0)
            return p->s[i].value;
    return -12345;
}

static const char *prom_type(const struct prom *p, const char *name)
{
    for (size_t m = 0; m < p->n_metrics; m++)
        if (strcmp(p->help[m], name) == 0)
            return p->type[m];
    return NULL;
}

/* ---- tests ---- */

static void test_render(void **state)
{
    (void)state;
    mft_metric_declare("mft_t_messages_total", "counter", "Messages received, by kind.");
    mft_metric_declare("mft_t_queue_depth", "gauge", "Items waiting.");
    mft_metric_declare("mft_t_messages_total", "gauge", "declared twice: ignored");
    mft_metric_add("mft_t_messages_total", "kind=\"OK\",partner=\"p1\"", 1);
    mft_metric_inc("mft_t_messages_total", "kind=\"OK\",partner=\"p1\"");
    mft_metric_add("mft_t_messages_total", "kind=\"OK\",partner=\"p1\"", 0.5);
    mft_metric_inc("mft_t_messages_total", "kind=\"DECRYPT_FAILED\",partner=\"p2\"");
    mft_metric_inc("mft_t_messages_total", "");
    mft_metric_inc("mft_t_messages_total", NULL);
    mft_metric_set("mft_t_queue_depth", "", 5);
    mft_metric_set("mft_t_queue_depth", "", 7);
    mft_metric_set("mft_t_queue_depth", "queue=\"a\"", -2.25);
    mft_metric_add("mft_t_queue_depth", "queue=\"a\"", 1);
    mft_metric_inc("mft_t_undeclared_total", ""); /* ignored */

    char *text = mft_metrics_render();
    struct prom p;
    prom_parse(text, &p);
    assert_string_equal(prom_type(&p, "mft_t_messages_total"), "counter");
    assert_string_equal(prom_type(&p, "mft_t_queue_depth"), "gauge");
    assert_null(prom_type(&p, "mft_t_undeclared_total"));
    assert_non_null(strstr(text, "# HELP mft_t_messages_total Messages received, by kind.\n"
                                 "# TYPE mft_t_messages_total counter\n"));
    assert_null(strstr(text, "ignored"));
    assert_true(prom_value(&p, "mft_t_messages_total", "kind=\"OK\",partner=\"p1\"") == 2.5);
    assert_true(prom_value(&p, "mft_t_messages_total", "kind=\"DECRYPT_FAILED\",partner=\"p2\"") ==
                1);
    assert_true(prom_value(&p, "mft_t_messages_total", "") == 2);
    assert_true(prom_value(&p, "mft_t_queue_depth", "") == 7);
    assert_true(prom_value(&p, "mft_t_queue_depth", "queue=\"a\"") == -1.25);
    /* integers render as integers, not 7.0000000000000000 */
    assert_non_null(strstr(text, "\nmft_t_queue_depth 7\n"));
    free(text);
}

#define N_THREADS 4
#define N_INCS 10000

struct worker {
    pthread_t t;
    int id;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char labels[32];
    snprintf(labels, sizeof(labels), "thread=\"%d\"", w->id);
    for (int i = 0; i < N_INCS; i++) {
        mft_metric_inc("mft_t_conc_total", "");
        mft_metric_inc("mft_t_conc_total", labels);
    }
    return NULL;
}

static void test_concurrency(void **state)
{
    struct worker w[N_THREADS];
    (void)state;
    mft_metric_declare("mft_t_conc_total", "counter", "Concurrent increments.");
    for (int i = 0; i < N_THREADS; i++) {
        w[i].id = i;
        assert_int_equal(pthread_create(&w[i].t, NULL, work, &w[i]), 0);
    }
    /* render while they run: must stay well-formed */
    for (int i = 0; i < 20; i++) {
        char *t = mft_metrics_render();
        struct prom p;
        prom_parse(t, &p);
        free(t);
    }
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(w[i].t, NULL);
    char *text = mft_metrics_render();
    struct prom p;
    prom_parse(text, &p);
    assert_true(prom_value(&p, "mft_t_conc_total", "") == N_THREADS * N_INCS);
    for (int i = 0; i < N_THREADS; i++) {
        char labels[32];
        snprintf(labels, sizeof(labels), "thread=\"%d\"", i);
        assert_true(prom_value(&p, "mft_t_conc_total", labels) == N_INCS);
    }
    assert_non_null(strstr(text, "\nmft_t_conc_total 40000\n"));
    free(text);
}

static void test_parse_addr(void **state)
{
    struct sockaddr_in sa;
    char ip[32];
    (void)state;
    assert_int_equal(mft_ops_parse_addr("127.0.0.1:9101", &sa), 0);
    assert_int_equal(sa.sin_family, AF_INET);
    assert_int_equal(ntohs(sa.sin_port), 9101);
    assert_string_equal(inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip)), "127.0.0.1");
    assert_int_equal(mft_ops_parse_addr(":8080", &sa), 0);
    assert_int_equal(ntohs(sa.sin_port), 8080);
    assert_string_equal(inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip)), "0.0.0.0");
    assert_int_equal(mft_ops_parse_addr("localhost:1", &sa), 0);
    assert_string_equal(inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip)), "127.0.0.1");
    assert_int_equal(mft_ops_parse_addr("10.1.2.3:65535", &sa), 0);
    assert_int_equal(ntohs(sa.sin_port), 65535);
    static const char *const bad[] = {
        "9101",
        "127.0.0.1",
        "127.0.0.1:",
        ":",
        "127.0.0.1:-1",
        "127.0.0.1:65536",
        "127.0.0.1:80x",
        "example.org:80",
        "256.0.0.1:80",
        "1.2.3:80",
        "127.0.0.1: 80",
        "127.0.0.1:+80",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (mft_ops_parse_addr(bad[i], &sa) != -1)
            fail_msg("address \"%s\" accepted", bad[i]);
}

/* ---- the server, over raw HTTP/1.0 ---- */

struct readiness {
    int ready;
    int calls;
};

static int ready_cb(void *arg, char *why, size_t whylen)
{
    struct readiness *r = arg;
    r->calls++;
    if (r->ready)
        return 0;
    snprintf(why, whylen, "kafka unreachable (brokers 10.0.0.9:9092)");
    return -1;
}

struct resp {
    int status;
    char headers[2048];
    char *body;
};

static int http(int port, const char *method, const char *path, struct resp *r)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa;
    struct timeval tv = {5, 0};
    char req[256], buf[1 << 16];
    size_t len = 0;
    memset(r, 0, sizeof(*r));
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        return -1;
    }
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    for (;;) {
        ssize_t k = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    close(fd);
    buf[len] = '\0';
    if (len < 12 || strncmp(buf, "HTTP/1.", 7) != 0)
        return -1;
    r->status = (int)strtol(buf + 9, NULL, 10);
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep)
        return -1;
    snprintf(r->headers, sizeof(r->headers), "%.*s", (int)(sep - buf), buf);
    r->body = strdup(sep + 4);
    return 0;
}

static void test_server(void **state)
{
    struct readiness rd = {0, 0};
    struct mft_ops *ops = NULL, *ops2 = NULL;
    struct mft_err err;
    struct resp r;
    char addr[64];
    (void)state;

    mft_metric_declare("mft_t_http_total", "counter", "For the /metrics check.");
    mft_metric_add("mft_t_http_total", "route=\"x\"", 3);

    int port = mft_test_free_port();
    assert_true(port > 0);
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    mft_err_clear(&err);
    assert_int_equal(mft_ops_start(addr, ready_cb, &rd, &ops, &err), 0);
    assert_non_null(ops);

    assert_int_equal(http(port, "GET", "/livez", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);
    assert_int_equal(rd.calls, 0); /* liveness never asks readiness */

    assert_int_equal(http(port, "GET", "/readyz", &r), 0);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready: kafka unreachable (brokers 10.0.0.9:9092)\n");
    free(r.body);
    assert_int_equal(rd.calls, 1);
    rd.ready = 1;
    assert_int_equal(http(port, "GET", "/readyz", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ready\n");
    free(r.body);

    assert_int_equal(http(port, "GET", "/metrics", &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strcasestr(r.headers, "\r\nContent-Type: text/plain; version=0.0.4"));
    struct prom p;
    prom_parse(r.body, &p);
    assert_string_equal(prom_type(&p, "mft_t_http_total"), "counter");
    assert_true(prom_value(&p, "mft_t_http_total", "route=\"x\"") == 3);
    free(r.body);

    assert_int_equal(http(port, "GET", "/nope", &r), 0);
    assert_int_equal(r.status, 404);
    free(r.body);
    assert_int_equal(http(port, "POST", "/livez", &r), 0);
    assert_int_equal(r.status, 405);
    free(r.body);
    assert_int_equal(http(port, "HEAD", "/livez", &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "");
    free(r.body);

    /* the port is taken: a second server fails with CONFIG */
    mft_err_clear(&err);
    assert_int_equal(mft_ops_start(addr, NULL, NULL, &ops2, &err), -1);
    assert_null(ops2);
    assert_int_equal(err.kind, MFT_E_CONFIG);
    assert_non_null(strstr(err.message, addr));
    mft_err_clear(&err);
    assert_int_equal(mft_ops_start("nonsense", NULL, NULL, &ops2, &err), -1);
    assert_int_equal(err.kind, MFT_E_CONFIG);

    mft_ops_stop(ops);
    mft_ops_stop(NULL);
    assert_int_equal(http(port, "GET", "/livez", &r), -1); /* closed */

    /* no readiness callback: always ready */
    port = mft_test_free_port();
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
    assert_int_equal(mft_ops_start(addr, NULL, NULL, &ops, &err), 0);
    assert_int_equal(http(port, "GET", "/readyz", &r), 0);
    assert_int_equal(r.status, 200);
    free(r.body);
    mft_ops_stop(ops);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_concurrency),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_server),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
