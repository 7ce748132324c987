/*
 * test_cfg — MFT_* configuration: environment over table default, sizes with
 * K/M/G suffixes, invalid and overflowing values (which must be refused and
 * logged with the variable's name), non-negative integers, and the --help
 * table listing every variable with its doc and default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mft_cfg.h"
#include "mft_log.h"

static const struct mft_cfg_var VARS[] = {
    MFT_CFG_COMMON,
    {"MFT_T_SIZE", "64M", "a size"},
    {"MFT_T_LONG", "42", "a count"},
    {"MFT_T_NODEF", NULL, "optional, unset by default"},
    {NULL, NULL, NULL},
};

/* Runs mft_cfg_size with stderr captured; returns rc, the log text in log. */
static int size_logged(const char *value, unsigned long long *out, char *log, size_t loglen)
{
    char path[] = "/tmp/mft-test-cfg-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fd, STDERR_FILENO) >= 0);
    setenv("MFT_T_SIZE", value, 1);
    int rc = mft_cfg_size(VARS, "MFT_T_SIZE", out);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    ssize_t n = pread(fd, log, loglen - 1, 0);
    log[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    return rc;
}

static void test_get(void **state)
{
    (void)state;
    unsetenv("MFT_T_SIZE");
    unsetenv("MFT_REDIS_URL");
    unsetenv("MFT_T_NODEF");
    unsetenv("MFT_T_NOT_IN_TABLE");
    assert_string_equal(mft_cfg_get(VARS, "MFT_T_SIZE"), "64M");
    assert_string_equal(mft_cfg_get(VARS, "MFT_REDIS_URL"), "redis://127.0.0.1:6379/0");
    assert_null(mft_cfg_get(VARS, "MFT_T_NODEF"));
    unsetenv("MFT_MASTER_KEY");
    assert_null(mft_cfg_get(VARS, "MFT_MASTER_KEY"));
    assert_null(mft_cfg_get(VARS, "MFT_T_NOT_IN_TABLE"));
    assert_null(mft_cfg_get(NULL, "MFT_T_NOT_IN_TABLE"));

    setenv("MFT_T_SIZE", "1G", 1);
    assert_string_equal(mft_cfg_get(VARS, "MFT_T_SIZE"), "1G");
    setenv("MFT_T_NODEF", "set", 1);
    assert_string_equal(mft_cfg_get(VARS, "MFT_T_NODEF"), "set");
    setenv("MFT_T_NOT_IN_TABLE", "env-only", 1);
    assert_string_equal(mft_cfg_get(VARS, "MFT_T_NOT_IN_TABLE"), "env-only");
    /* set but empty counts as unset */
    setenv("MFT_T_SIZE", "", 1);
    assert_string_equal(mft_cfg_get(VARS, "MFT_T_SIZE"), "64M");
    setenv("MFT_T_NODEF", "", 1);
    assert_null(mft_cfg_get(VARS, "MFT_T_NODEF"));
    unsetenv("MFT_T_SIZE");
    unsetenv("MFT_T_NODEF");
    unsetenv("MFT_T_NOT_IN_TABLE");
}

static void test_size_valid(void **state)
{
    static const struct {
        const char *in;
        unsigned long long want;
    } cases[] = {
        {"0", 0},
        {"4096", 4096},
        {"1k", 1024},
        {"2K", 2048},
        {"64M", 64ULL << 20},
        {"3m", 3ULL << 20},
        {"1G", 1ULL << 30},
        {"16g", 16ULL << 30},
        {"18446744073709551615", ULLONG_MAX},
        {"17179869183G", 17179869183ULL << 30},
        {"17592186044415M", 17592186044415ULL << 20},
    };
    char log[4096];
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned long long v = 12345;
        if (size_logged(cases[i].in, &v, log, sizeof(log)) != 0)
            fail_msg("size %s refused: %s", cases[i].in, log);
        if (v != cases[i].want)
            fail_msg("size %s = %llu, want %llu", cases[i].in, v, cases[i].want);
    }
    /* the table's default when unset */
    unsigned long long v = 0;
    unsetenv("MFT_T_SIZE");
    assert_int_equal(mft_cfg_size(VARS, "MFT_T_SIZE", &v), 0);
    assert_true(v == 64ULL << 20);
}

static void test_size_invalid(void **state)
{
    static const char *const bad[] = {
        "abc",
        "12X",
        "M",
        "1MB",
        "1.5M",
        "-1",
        "-64M",
        "+5",
        " 12",
        "12 ",
        "0x10",
        "1e3",
        "G1",
        "1KK",
        "18446744073709551616",       /* ULLONG_MAX + 1 */
        "99999999999999999999999999", /* way beyond */
        "17179869184G",               /* 2^34 G = 2^64 */
        "17592186044416M",            /* 2^44 M = 2^64 */
        "18014398509481984K",         /* 2^54 K = 2^64 */
    };
    char log[4096];
    (void)state;
    mft_log_init("test_cfg");
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned long long v = 777;
        if (size_logged(bad[i], &v, log, sizeof(log)) != -1)
            fail_msg("size \"%s\" accepted as %llu", bad[i], v);
        if (v != 777)
            fail_msg("size \"%s\" refused but *out changed", bad[i]);
        /* the log names the variable */
        if (!strstr(log, "MFT_T_SIZE") || !strstr(log, "config.invalid"))
            fail_msg("size \"%s\": log does not name the variable: %s", bad[i], log);
    }
    unsetenv("MFT_T_SIZE");
    /* no value at all */
    unsigned long long v = 5;
    unsetenv("MFT_T_NODEF");
    assert_int_equal(mft_cfg_size(VARS, "MFT_T_NODEF", &v), -1);
    assert_true(v == 5);
}

static void test_long(void **state)
{
    long v = -5;
    (void)state;
    unsetenv("MFT_T_LONG");
    assert_int_equal(mft_cfg_long(VARS, "MFT_T_LONG", &v), 0);
    assert_int_equal(v, 42);
    setenv("MFT_T_LONG", "0", 1);
    assert_int_equal(mft_cfg_long(VARS, "MFT_T_LONG", &v), 0);
    assert_int_equal(v, 0);
    setenv("MFT_T_LONG", "9223372036854775807", 1);
    assert_int_equal(mft_cfg_long(VARS, "MFT_T_LONG", &v), 0);
    assert_true(v == LONG_MAX);

    static const char *const bad[] = {"-1", "12a", "x", "9223372036854775808", "1.0", "1k"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        v = 99;
        setenv("MFT_T_LONG", bad[i], 1);
        if (mft_cfg_long(VARS, "MFT_T_LONG", &v) != -1)
            fail_msg("long \"%s\" accepted as %ld", bad[i], v);
        assert_int_equal(v, 99);
    }
    unsetenv("MFT_T_LONG");
    unsetenv("MFT_T_NODEF");
    assert_int_equal(mft_cfg_long(VARS, "MFT_T_NODEF", &v), -1);
}

static void test_usage(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    (void)state;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    mft_cfg_usage(f, "usage: prog [--help]", VARS);
    fclose(f);
    assert_non_null(buf);
    assert_memory_equal(buf, "usage: prog [--help]\n", 21);
    size_t n_vars = 0;
    for (const struct mft_cfg_var *v = VARS; v->name; v++, n_vars++) {
        /* the variable's own line: name, doc, default */
        const char *line = NULL;
        for (const char *p = buf; (p = strstr(p, v->name)) != NULL; p++) {
            if (p[-1] == ' ' && p[strlen(v->name)] == ' ') {
                line = p;
                break;
            }
        }
        if (!line)
            fail_msg("usage does not list %s:\n%s", v->name, buf);
        const char *eol = strchr(line, '\n');
        assert_non_null(eol);
        char l[512];
        snprintf(l, sizeof(l), "%.*s", (int)(eol - line), line);
        if (!strstr(l, v->doc))
            fail_msg("%s: doc missing in \"%s\"", v->name, l);
        if (v->def) {
            char d[300];
            snprintf(d, sizeof(d), "[default: %s]", v->def);
            if (!strstr(l, d))
                fail_msg("%s: default missing in \"%s\"", v->name, l);
        } else if (strstr(l, "[default:")) {
            fail_msg("%s has no default but shows one: \"%s\"", v->name, l);
        }
    }
    /* one line per variable after the header */
    size_t lines = 0;
    for (const char *p = strstr(buf, "Environment:\n"); p && *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, n_vars + 1);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),          cmocka_unit_test(test_size_valid),
        cmocka_unit_test(test_size_invalid), cmocka_unit_test(test_long),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
