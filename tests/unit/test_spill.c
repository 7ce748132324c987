/*
 * test_spill — spills: small outputs stay in memory and can be taken; past the
 * threshold the bytes move to an unlinked temporary file (nothing is left in
 * the directory) and come back as one mapping equal to what was written, still
 * readable after mft_release dropped its pages; mft_release leaves memory it
 * does not know alone; an unusable directory is MFT_E_STORAGE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mft_spill.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/mft-test-spill-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(dir); /* fails when a spill left a file behind */
}

static size_t entries(const char *d)
{
    size_t n = 0;
    DIR *dp = opendir(d);
    struct dirent *e;
    while (dp && (e = readdir(dp)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    if (dp)
        closedir(dp);
    return n;
}

static void test_memory(void **state)
{
    (void)state;
    struct mft_spill sp;
    struct mft_err err;
    const unsigned char *p;
    size_t len;
    mft_err_clear(&err);
    mft_spill_init(&sp, dir, 1024);
    assert_int_equal(mft_spill_write(&sp, "hello ", 6, &err), 0);
    assert_int_equal(mft_spill_write(&sp, "world", 5, &err), 0);
    assert_false(mft_spill_on_disk(&sp));
    assert_int_equal(mft_spill_finish(&sp, &p, &len, &err), 0);
    assert_int_equal(len, 11);
    assert_string_equal((const char *)p, "hello world"); /* NUL-terminated */
    mft_release(p, len);                                 /* heap: left alone */
    assert_memory_equal(p, "hello world", 11);
    unsigned char *t = mft_spill_take(&sp, &len);
    assert_non_null(t);
    assert_int_equal(len, 11);
    free(t);
    mft_spill_free(&sp);

    /* nothing written: an empty, readable result */
    mft_spill_init(&sp, NULL, 0);
    assert_int_equal(mft_spill_finish(&sp, &p, &len, &err), 0);
    assert_non_null(p);
    assert_int_equal(len, 0);
    mft_spill_free(&sp);
}

static void test_disk(void **state)
{
    (void)state;
    struct mft_spill sp;
    struct mft_err err;
    const unsigned char *p;
    size_t len, total = 3 * MFT_RELEASE_STEP + 12345;
    unsigned char *want = malloc(total);
    assert_non_null(want);
    for (size_t i = 0; i < total; i++)
        want[i] = (unsigned char)(i * 31 + (i >> 12));
    mft_err_clear(&err);
    mft_spill_init(&sp, dir, 4096);
    for (size_t off = 0; off < total; off += 1000) /* odd-sized writes */
        assert_int_equal(
            mft_spill_write(&sp, want + off, total - off < 1000 ? total - off : 1000, &err), 0);
    assert_true(mft_spill_on_disk(&sp));
    assert_int_equal(entries(dir), 0); /* the file is unlinked from the start */
    assert_int_equal(mft_spill_finish(&sp, &p, &len, &err), 0);
    assert_int_equal(len, total);
    assert_memory_equal(p, want, total);
    assert_null(mft_spill_take(&sp, &len)); /* only memory spills hand over a buffer */
    mft_release(p + 100, total - 200);      /* pages dropped, bytes still there */
    assert_memory_equal(p, want, total);
    mft_spill_free(&sp);
    free(want);
}

static void test_bad_dir(void **state)
{
    (void)state;
    struct mft_spill sp;
    struct mft_err err;
    unsigned char buf[64] = {0};
    mft_err_clear(&err);
    mft_spill_init(&sp, "/nonexistent/mft-spill", 16);
    assert_int_equal(mft_spill_write(&sp, buf, 10, &err), 0); /* still in memory */
    assert_int_equal(mft_spill_write(&sp, buf, 10, &err), -1);
    assert_int_equal(err.kind, MFT_E_STORAGE);
    assert_non_null(strstr(err.detail, "/nonexistent/mft-spill"));
    mft_spill_free(&sp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_disk),
        cmocka_unit_test(test_bad_dir),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
