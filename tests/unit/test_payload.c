/*
 * test_payload — the payload store: put publishes the exact bytes under
 * <dir>/<uuid>/<name> with the size and a SHA-256 equal to sha256sum's; a
 * streaming writer reports its size and maps what was written; abort and a
 * failed commit leave nothing under the final name and nothing in .tmp;
 * unsafe names are refused; an unusable directory is MFT_E_STORAGE;
 * remove_message removes the message's directory and nothing else.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mft_payload.h"
#include "mft_testenv.h"

#define UUID "6f1c2b9e-4a57-4c1d-9a43-0e8b7d2f11aa"

struct fx {
    char dir[128];
    char real[PATH_MAX];
    struct mft_payload_store *ps;
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof(*fx));
    struct mft_err err;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/mft-test-payload-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    /* the store is created one level below, to exercise mkdir -p */
    char sub[200];
    snprintf(sub, sizeof(sub), "%s/a/b/store", fx->dir);
    if (mft_payload_open(sub, &fx->ps, &err) != 0)
        return -1;
    if (!realpath(sub, fx->real))
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    mft_payload_close(fx->ps);
    mft_test_rmtree(fx->dir);
    free(fx);
    return 0;
}

static unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static size_t count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    size_t n = 0;
    struct dirent *e;
    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static size_t tmp_entries(const struct fx *fx)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s/.tmp", fx->real);
    return count_entries(tmp);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void sha256sum(const char *path, char hex[65])
{
    char *argv[] = {"sha256sum", (char *)path, NULL};
    char *out = NULL;
    size_t len = 0;
    int st = mft_test_run(argv, &out, &len, 10000);
    assert_int_equal(st, 0);
    assert_true(len >= 64);
    memcpy(hex, out, 64);
    hex[64] = '\0';
    free(out);
}

static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
    return p;
}

static void test_put(void **state)
{
    struct fx *fx = *state;
    struct mft_payload_ref ref;
    struct mft_err err;
    size_t n = 300001;
    unsigned char *data = pattern(n, 7);
    data[0] = 0;
    data[n - 1] = '\n';

    mft_err_clear(&err);
    memset(&ref, 0, sizeof(ref));
    assert_int_equal(mft_payload_put(fx->ps, UUID, "invoice_01.edi", data, n, &ref, &err), 0);
    char want_path[PATH_MAX + 200], want_uri[PATH_MAX + 220];
    snprintf(want_path, sizeof(want_path), "%s/%s/invoice_01.edi", fx->real, UUID);
    snprintf(want_uri, sizeof(want_uri), "file://%s", want_path);
    assert_string_equal(ref.path, want_path);
    assert_string_equal(ref.uri, want_uri);
    assert_true(ref.size == n);

    size_t got_len = 0;
    unsigned char *got = read_all(ref.path, &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, n);
    assert_memory_equal(got, data, n);
    free(got);

    char hex[65];
    sha256sum(ref.path, hex);
    assert_string_equal(ref.sha256, hex);
    assert_int_equal(tmp_entries(fx), 0);

    /* the empty payload: e3b0c442... */
    assert_int_equal(mft_payload_put(fx->ps, UUID, "empty", "", 0, &ref, &err), 0);
    assert_true(ref.size == 0);
    assert_string_equal(ref.sha256,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    struct stat st;
    assert_int_equal(stat(ref.path, &st), 0);
    assert_int_equal(st.st_size, 0);

    /* publishing again under the same name replaces the file atomically */
    assert_int_equal(mft_payload_put(fx->ps, UUID, "invoice_01.edi", "abc", 3, &ref, &err), 0);
    assert_string_equal(ref.sha256,
                        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    got = read_all(want_path, &got_len);
    assert_int_equal(got_len, 3);
    assert_memory_equal(got, "abc", 3);
    free(got);
    assert_int_equal(tmp_entries(fx), 0);
    free(data);
}

static void test_writer_and_map(void **state)
{
    struct fx *fx = *state;
    struct mft_payload_writer *w = NULL;
    struct mft_payload_ref ref;
    struct mft_err err;
    const unsigned char *m = (const unsigned char *)"junk";
    size_t mlen = 99;
    size_t n = 70000;
    unsigned char *data = pattern(n, 99);

    assert_int_equal(mft_payload_begin(fx->ps, UUID, "stream.bin", &w, &err), 0);
    assert_non_null(w);
    assert_true(mft_payload_size(w) == 0);
    assert_int_equal(mft_payload_map(w, &m, &mlen, &err), 0);
    assert_null(m);
    assert_int_equal(mlen, 0);
    assert_int_equal(tmp_entries(fx), 1);

    size_t off = 0, step = 1;
    while (off < n) {
        size_t k = n - off < step ? n - off : step;
        assert_int_equal(mft_payload_write(w, data + off, k, &err), 0);
        off += k;
        step = step * 3 + 1;
        assert_true(mft_payload_size(w) == off);
    }
    assert_int_equal(mft_payload_map(w, &m, &mlen, &err), 0);
    assert_non_null(m);
    assert_int_equal(mlen, n);
    assert_memory_equal(m, data, n);
    munmap((void *)m, mlen);
    /* not visible under the final name before commit */
    char final[PATH_MAX + 200];
    snprintf(final, sizeof(final), "%s/%s/stream.bin", fx->real, UUID);
    assert_false(exists(final));

    assert_int_equal(mft_payload_commit(w, &ref, &err), 0);
    assert_true(exists(final));
    assert_true(ref.size == n);
    char hex[65];
    sha256sum(final, hex);
    assert_string_equal(ref.sha256, hex);
    assert_int_equal(tmp_entries(fx), 0);
    assert_true(mft_payload_size(NULL) == 0);
    free(data);
}

static void test_abort(void **state)
{
    struct fx *fx = *state;
    struct mft_payload_writer *w = NULL;
    struct mft_err err;
    char final[PATH_MAX + 200], msgdir[PATH_MAX + 100];
    snprintf(msgdir, sizeof(msgdir), "%s/aborted-1", fx->real);
    snprintf(final, sizeof(final), "%s/part", msgdir);

    assert_int_equal(mft_payload_begin(fx->ps, "aborted-1", "part", &w, &err), 0);
    assert_int_equal(mft_payload_write(w, "half a message", 14, &err), 0);
    assert_int_equal(tmp_entries(fx), 1);
    mft_payload_abort(w);
    assert_false(exists(final));
    assert_false(exists(msgdir));
    assert_int_equal(tmp_entries(fx), 0);
    mft_payload_abort(NULL);

    /* the probe leaves nothing behind either */
    assert_int_equal(mft_payload_check(fx->ps, &err), 0);
    assert_int_equal(tmp_entries(fx), 0);
}

static void test_invalid_names(void **state)
{
    struct fx *fx = *state;
    struct mft_payload_writer *w = NULL;
    struct mft_payload_ref ref;
    struct mft_err err;
    char long_ok[129], too_long[130];
    memset(long_ok, 'n', 128);
    long_ok[128] = '\0';
    memset(too_long, 'n', 129);
    too_long[129] = '\0';
    static const char *const bad[] = {"../x", ".hidden", "a/b", "",    "..",  ".",
                                      "x y",  "a\\b",    "é",   "x\n", "/abs"};
    size_t before = count_entries(fx->real);

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        w = NULL;
        if (mft_payload_begin(fx->ps, UUID, bad[i], &w, &err) != -1)
            fail_msg("name \"%s\" accepted", bad[i]);
        assert_null(w);
        if (mft_payload_begin(fx->ps, bad[i], "file", &w, &err) != -1)
            fail_msg("uuid \"%s\" accepted", bad[i]);
        if (mft_payload_put(fx->ps, bad[i], "file", "x", 1, &ref, &err) != -1)
            fail_msg("put uuid \"%s\" accepted", bad[i]);
        assert_int_not_equal(err.kind, MFT_E_OK);
    }
    assert_int_equal(mft_payload_begin(fx->ps, UUID, too_long, &w, &err), -1);
    assert_int_equal(mft_payload_begin(fx->ps, UUID, NULL, &w, &err), -1);
    assert_int_equal(mft_payload_begin(fx->ps, NULL, "x", &w, &err), -1);
    assert_int_equal(count_entries(fx->real), before);
    assert_int_equal(tmp_entries(fx), 0);
    /* nothing escaped the store */
    char esc[300];
    snprintf(esc, sizeof(esc), "%s/a/b/x", fx->dir);
    assert_false(exists(esc));

    /* the longest allowed name and every allowed character */
    assert_int_equal(mft_payload_put(fx->ps, UUID, long_ok, "y", 1, &ref, &err), 0);
    assert_int_equal(mft_payload_put(fx->ps, UUID, "AZaz09._-name.x", "z", 1, &ref, &err), 0);
    assert_non_null(strstr(ref.path, "/AZaz09._-name.x"));
}

static void test_storage_errors(void **state)
{
    struct fx *fx = *state;
    struct mft_payload_store *ps = NULL;
    struct mft_payload_writer *w = NULL;
    struct mft_payload_ref ref;
    struct mft_err err;

    /* a directory below a file cannot be created (works as root, unlike chmod) */
    mft_err_clear(&err);
    assert_int_equal(mft_payload_open("/dev/null/x", &ps, &err), -1);
    assert_null(ps);
    assert_int_equal(err.kind, MFT_E_STORAGE);
    assert_non_null(strstr(err.detail, "/dev/null/x"));
    assert_string_equal(err.remedy, "check the payload volume (space, permissions)");

    /* commit fails when <dir>/<uuid> is a file: nothing published, temp removed */
    char blocker[PATH_MAX + 32];
    snprintf(blocker, sizeof(blocker), "%s/blocked", fx->real);
    FILE *f = fopen(blocker, "w");
    assert_non_null(f);
    fclose(f);
    mft_err_clear(&err);
    assert_int_equal(mft_payload_begin(fx->ps, "blocked", "p", &w, &err), 0);
    assert_int_equal(mft_payload_write(w, "data", 4, &err), 0);
    assert_int_equal(mft_payload_commit(w, &ref, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORAGE);
    assert_non_null(strstr(err.detail, "blocked"));
    assert_int_equal(tmp_entries(fx), 0);
    struct stat st;
    assert_int_equal(stat(blocker, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 0);
    mft_err_clear(&err);
    assert_int_equal(mft_payload_put(fx->ps, "blocked", "p", "x", 1, &ref, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORAGE);
    assert_int_equal(tmp_entries(fx), 0);

    /* .tmp replaced by a file: begin and check fail with STORAGE */
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s/.tmp", fx->real);
    assert_int_equal(rmdir(tmp), 0);
    f = fopen(tmp, "w");
    assert_non_null(f);
    fclose(f);
    mft_err_clear(&err);
    w = NULL;
    assert_int_equal(mft_payload_begin(fx->ps, UUID, "p", &w, &err), -1);
    assert_null(w);
    assert_int_equal(err.kind, MFT_E_STORAGE);
    assert_non_null(strstr(err.detail, ".tmp/"));
    mft_err_clear(&err);
    assert_int_equal(mft_payload_check(fx->ps, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORAGE);
    /* and reopening the store over it fails too */
    assert_int_equal(mft_payload_open(fx->real, &ps, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORAGE);
    unlink(tmp);
    assert_int_equal(mkdir(tmp, 0750), 0);
}

static void test_remove_message(void **state)
{
    struct fx *fx = *state;
    struct mft_payload_ref ref;
    struct mft_err err;
    char msgdir[PATH_MAX + 100], other[PATH_MAX + 100];
    snprintf(msgdir, sizeof(msgdir), "%s/msg-remove", fx->real);
    snprintf(other, sizeof(other), "%s/msg-keep/0", fx->real);

    assert_int_equal(mft_payload_put(fx->ps, "msg-remove", "0", "a", 1, &ref, &err), 0);
    assert_int_equal(mft_payload_put(fx->ps, "msg-remove", "1", "bb", 2, &ref, &err), 0);
    assert_int_equal(mft_payload_put(fx->ps, "msg-keep", "0", "c", 1, &ref, &err), 0);
    assert_int_equal(count_entries(msgdir), 2);
    mft_payload_remove_message(fx->ps, "msg-remove");
    assert_false(exists(msgdir));
    assert_true(exists(other));
    /* unsafe or unknown ids do nothing */
    mft_payload_remove_message(fx->ps, "../store");
    mft_payload_remove_message(fx->ps, ".tmp");
    mft_payload_remove_message(fx->ps, "no-such-message");
    assert_true(exists(other));
    assert_true(exists(fx->real));
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof(tmp), "%s/.tmp", fx->real);
    assert_true(exists(tmp));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_writer_and_map, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_storage_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_message, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
