/*
 * mft_payload — file-per-payload store with atomic publication: data goes to
 * <dir>/.tmp/<random>, is fsync'd, renamed to <dir>/<uuid>/<name>, and the
 * target directory is fsync'd (and the store directory when <uuid> is new), so
 * a crash never leaves a partial file under a final name nor loses a committed
 * one. SHA-256 is computed while writing. Errors carry errno text.
 */
#include "mft_payload.h"

#include "mft_spill.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct mft_payload_store {
    char dir[PATH_MAX];
    char tmp_dir[PATH_MAX + 8];
};

struct mft_payload_writer {
    struct mft_payload_store *ps;
    int fd;
    char tmp[PATH_MAX];
    char final_dir[PATH_MAX];
    char final[PATH_MAX];
    unsigned long long size;
    EVP_MD_CTX *md;
};

static int storage_err(struct mft_err *err, const char *what, const char *path)
{
    int e = errno;
    mft_err_set(err, MFT_E_STORAGE, NULL);
    return mft_err_detail(err, "%s %s: %s", what, path, strerror(e));
}

/* Creates path, and its missing parents only when it has some (the usual
 * case, a message directory in the store, is one mkdir). Returns 1 when it
 * created path itself, 0 when path was already a directory, -1 with errno. */
static int mkdir_p(const char *path)
{
    if (mkdir(path, 0750) == 0)
        return 1;
    if (errno == ENOENT) {
        char tmp[PATH_MAX];
        snprintf(tmp, sizeof(tmp), "%s", path);
        for (char *p = tmp + 1; *p; p++) {
            if (*p == '/') {
                *p = '\0';
                if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
                    return -1;
                *p = '/';
            }
        }
        if (mkdir(tmp, 0750) == 0)
            return 1;
    }
    struct stat st; /* EEXIST is fine only for a directory */
    if (errno != EEXIST || stat(path, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

int mft_payload_open(const char *dir, struct mft_payload_store **out, struct mft_err *err)
{
    struct mft_payload_store *ps = calloc(1, sizeof(*ps));
    char *tmp = ps ? ps->tmp_dir : NULL;
    if (!ps)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    if (strlen(dir) > 2048 || mkdir_p(dir) < 0 || !realpath(dir, ps->dir) ||
        strlen(ps->dir) > 2048) {
        storage_err(err, "cannot create", dir);
        free(ps);
        return -1;
    }
    snprintf(tmp, sizeof(ps->tmp_dir), "%s/.tmp", ps->dir);
    if (mkdir_p(tmp) < 0) {
        storage_err(err, "cannot create", tmp);
        free(ps);
        return -1;
    }
    *out = ps;
    return 0;
}

void mft_payload_close(struct mft_payload_store *ps)
{
    free(ps);
}

static int name_ok(const char *s)
{
    if (!s || !*s || strlen(s) > 128 || s[0] == '.')
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

int mft_payload_begin(struct mft_payload_store *ps, const char *uuid, const char *name,
                      struct mft_payload_writer **out, struct mft_err *err)
{
    if (!name_ok(uuid) || !name_ok(name))
        return mft_err_set(err, MFT_E_INTERNAL, "invalid payload name");
    struct mft_payload_writer *w = calloc(1, sizeof(*w));
    unsigned char rnd[8];
    if (!w)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    RAND_bytes(rnd, sizeof(rnd));
    w->ps = ps;
    snprintf(w->tmp, sizeof(w->tmp), "%s/.tmp/%s.%02x%02x%02x%02x%02x%02x%02x%02x", ps->dir, name,
             rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    snprintf(w->final_dir, sizeof(w->final_dir), "%s/%s", ps->dir, uuid);
    snprintf(w->final, sizeof(w->final), "%s/%s", w->final_dir, name);
    w->md = EVP_MD_CTX_new();
    w->fd = open(w->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (w->fd < 0 || !w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        storage_err(err, "cannot create", w->tmp);
        if (w->fd >= 0)
            close(w->fd);
        EVP_MD_CTX_free(w->md);
        free(w);
        return -1;
    }
    *out = w;
    return 0;
}

int mft_payload_write(struct mft_payload_writer *w, const void *data, size_t len,
                      struct mft_err *err)
{
    const unsigned char *p = data;
    while (len > 0) {
        /* a step at a time: a large payload lives in a mapping whose pages
         * are released once written and hashed (mft_spill.h) */
        ssize_t n = write(w->fd, p, len < MFT_RELEASE_STEP ? len : MFT_RELEASE_STEP);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return storage_err(err, "cannot write", w->tmp);
        EVP_DigestUpdate(w->md, p, (size_t)n);
        mft_release(p, (size_t)n);
        p += n;
        len -= (size_t)n;
        w->size += (unsigned long long)n;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int mft_payload_commit(struct mft_payload_writer *w, struct mft_payload_ref *ref,
                       struct mft_err *err)
{
    int rc = -1;
    unsigned char md[32];
    unsigned int mdlen = sizeof(md);
    if (fsync(w->fd) < 0) {
        storage_err(err, "cannot fsync", w->tmp);
        goto out;
    }
    if (close(w->fd) < 0) {
        w->fd = -1;
        storage_err(err, "cannot close", w->tmp);
        goto out;
    }
    w->fd = -1;
    int made = mkdir_p(w->final_dir);
    if (made < 0) {
        storage_err(err, "cannot create", w->final_dir);
        goto out;
    }
    if (rename(w->tmp, w->final) < 0) {
        storage_err(err, "cannot rename to", w->final);
        goto out;
    }
    w->tmp[0] = '\0';
    if (fsync_dir(w->final_dir) < 0) {
        storage_err(err, "cannot fsync", w->final_dir);
        goto out;
    }
    /* a new <uuid> directory is durable only once the store's own entry for
     * it is: without this a crash could lose a payload already acknowledged */
    if (made && fsync_dir(w->ps->dir) < 0) {
        storage_err(err, "cannot fsync", w->ps->dir);
        goto out;
    }
    EVP_DigestFinal_ex(w->md, md, &mdlen);
    if (ref) {
        snprintf(ref->path, sizeof(ref->path), "%s", w->final);
        snprintf(ref->uri, sizeof(ref->uri), "file://%s", w->final);
        ref->size = w->size;
        for (unsigned i = 0; i < 32; i++)
            snprintf(ref->sha256 + 2 * i, 3, "%02x", md[i]);
    }
    rc = 0;
out:
    mft_payload_abort(w);
    return rc;
}

int mft_payload_map(struct mft_payload_writer *w, const unsigned char **ptr, size_t *len,
                    struct mft_err *err)
{
    *ptr = NULL;
    *len = (size_t)w->size;
    if (w->size == 0)
        return 0;
    void *m = mmap(NULL, (size_t)w->size, PROT_READ, MAP_PRIVATE, w->fd, 0);
    if (m == MAP_FAILED)
        return storage_err(err, "cannot map", w->tmp);
    mft_map_register(m, (size_t)w->size);
    *ptr = m;
    return 0;
}

void mft_payload_unmap(const unsigned char *ptr, size_t len)
{
    if (!ptr)
        return;
    mft_map_unregister(ptr);
    munmap((void *)ptr, len);
}

const char *mft_payload_tmp_dir(const struct mft_payload_store *ps)
{
    return ps->tmp_dir;
}

unsigned long long mft_payload_size(const struct mft_payload_writer *w)
{
    return w ? w->size : 0;
}

void mft_payload_abort(struct mft_payload_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    if (w->tmp[0])
        unlink(w->tmp);
    EVP_MD_CTX_free(w->md);
    free(w);
}

int mft_payload_put(struct mft_payload_store *ps, const char *uuid, const char *name,
                    const void *data, size_t len, struct mft_payload_ref *ref, struct mft_err *err)
{
    struct mft_payload_writer *w = NULL;
    if (mft_payload_begin(ps, uuid, name, &w, err) < 0)
        return -1;
    if (mft_payload_write(w, data, len, err) < 0) {
        mft_payload_abort(w);
        return -1;
    }
    return mft_payload_commit(w, ref, err);
}

void mft_payload_remove_message(struct mft_payload_store *ps, const char *uuid)
{
    char dir[PATH_MAX], path[PATH_MAX + 300];
    if (!name_ok(uuid))
        return;
    snprintf(dir, sizeof(dir), "%s/%s", ps->dir, uuid);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

int mft_payload_check(struct mft_payload_store *ps, struct mft_err *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/.tmp/.probe-%d", ps->dir, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (fd < 0)
        return storage_err(err, "cannot write", path);
    close(fd);
    unlink(path);
    return 0;
}
