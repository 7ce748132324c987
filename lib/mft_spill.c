/*
 * mft_spill — memory-then-file output buffers, and the registry of mappings
 * whose consumed pages may be dropped (see mft_spill.h).
 */
#include "mft_spill.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SPILL_WBUF ((size_t)256 << 10) /* write buffer once on disk */

/* ---- the registry of mappings ---------------------------------------------- */

struct mapping {
    uintptr_t start, end;
};

static pthread_mutex_t maps_mu = PTHREAD_MUTEX_INITIALIZER;
static struct mapping *maps;
static size_t n_maps, cap_maps;

void mft_map_register(const void *p, size_t len)
{
    if (!p || !len)
        return;
    pthread_mutex_lock(&maps_mu);
    if (n_maps == cap_maps) {
        size_t ncap = cap_maps ? cap_maps * 2 : 64;
        struct mapping *nm = realloc(maps, ncap * sizeof(*nm));
        if (!nm) { /* not registered: its pages are simply never dropped early */
            pthread_mutex_unlock(&maps_mu);
            return;
        }
        maps = nm;
        cap_maps = ncap;
    }
    maps[n_maps].start = (uintptr_t)p;
    maps[n_maps].end = (uintptr_t)p + len;
    n_maps++;
    pthread_mutex_unlock(&maps_mu);
}

void mft_map_unregister(const void *p)
{
    pthread_mutex_lock(&maps_mu);
    for (size_t i = 0; i < n_maps; i++)
        if (maps[i].start == (uintptr_t)p) {
            maps[i] = maps[--n_maps];
            break;
        }
    pthread_mutex_unlock(&maps_mu);
}

void mft_release(const void *p, size_t len)
{
    static long page;
    if (!p || !len)
        return;
    if (!page)
        page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p, b = a + len, pg = (uintptr_t)page;
    pthread_mutex_lock(&maps_mu);
    for (size_t i = 0; i < n_maps; i++) {
        if (a < maps[i].start || b > maps[i].end)
            continue;
        /* from the page holding the first byte (what precedes it there was
         * consumed before; dropping a file page is only a later re-read) to
         * the last whole page: the page holding the next byte is still being
         * read, and touching a dropped page re-maps its whole folio */
        uintptr_t s = a & ~(pg - 1), e = b & ~(pg - 1);
        if (e > s)
            madvise((void *)s, e - s, MADV_DONTNEED);
        break;
    }
    pthread_mutex_unlock(&maps_mu);
}

/* ---- spills ---------------------------------------------------------------- */

void mft_spill_init(struct mft_spill *s, const char *dir, size_t threshold)
{
    memset(s, 0, sizeof(*s));
    s->dir = dir;
    s->threshold = threshold;
    s->fd = -1;
}

int mft_spill_on_disk(const struct mft_spill *s)
{
    return s->fd >= 0 || s->map;
}

static int storage_err(struct mft_err *err, const char *what, const char *dir)
{
    mft_err_set(err, MFT_E_STORAGE, "cannot %s a temporary file for a large message", what);
    return mft_err_detail(err, "%s: %s", dir ? dir : "(none)", strerror(errno));
}

static int flush(struct mft_spill *s, struct mft_err *err)
{
    size_t off = 0;
    while (off < s->len) {
        ssize_t w = write(s->fd, s->buf + off, s->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return storage_err(err, "write", s->dir);
        off += (size_t)w;
    }
    s->len = 0;
    return 0;
}

/* Moves the in-memory bytes to a new unlinked file in s->dir. */
static int to_disk(struct mft_spill *s, struct mft_err *err)
{
    s->fd = open(s->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (s->fd < 0) { /* file systems without O_TMPFILE */
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/.mft-spill-XXXXXX", s->dir);
        s->fd = mkostemp(path, O_CLOEXEC);
        if (s->fd < 0)
            return storage_err(err, "create", s->dir);
        unlink(path);
    }
    if (flush(s, err) < 0)
        return -1;
    if (s->cap < SPILL_WBUF) {
        unsigned char *nb = realloc(s->buf, SPILL_WBUF);
        if (!nb)
            return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        s->buf = nb;
        s->cap = SPILL_WBUF;
    }
    return 0;
}

int mft_spill_write(struct mft_spill *s, const void *p, size_t n, struct mft_err *err)
{
    const unsigned char *src = p;
    if (n == 0)
        return 0;
    if (s->fd < 0 && s->dir && s->len + n > s->threshold && to_disk(s, err) < 0)
        return -1;
    s->size += n;
    if (s->fd >= 0) {
        while (n > 0) {
            size_t k = s->cap - s->len < n ? s->cap - s->len : n;
            memcpy(s->buf + s->len, src, k);
            s->len += k;
            src += k;
            n -= k;
            if (s->len == s->cap && flush(s, err) < 0)
                return -1;
        }
        return 0;
    }
    if (s->len + n + 1 > s->cap) {
        size_t ncap = s->cap ? s->cap : 4096;
        while (ncap < s->len + n + 1)
            ncap *= 2;
        unsigned char *nb = realloc(s->buf, ncap);
        if (!nb)
            return mft_err_set(err, MFT_E_NO_MEMORY, "cannot hold %zu bytes", s->len + n);
        s->buf = nb;
        s->cap = ncap;
    }
    memcpy(s->buf + s->len, src, n);
    s->len += n;
    return 0;
}

int mft_spill_finish(struct mft_spill *s, const unsigned char **p, size_t *len, struct mft_err *err)
{
    if (s->fd >= 0) { /* on disk (so never empty): map it, drop the write buffer */
        if (flush(s, err) < 0)
            return -1;
        void *m = mmap(NULL, s->size, PROT_READ, MAP_SHARED, s->fd, 0);
        if (m == MAP_FAILED)
            return storage_err(err, "map", s->dir);
        mft_map_register(m, s->size);
        s->map = m;
        s->map_len = s->size;
        close(s->fd); /* the mapping keeps the file */
        s->fd = -1;
        free(s->buf);
        s->buf = NULL;
        s->cap = 0;
    }
    if (s->map) {
        *p = s->map;
        *len = s->map_len;
        return 0;
    }
    if (!s->buf && !(s->buf = malloc(1)))
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    if (!s->cap)
        s->cap = 1;
    s->buf[s->len] = '\0';
    *p = s->buf;
    *len = s->len;
    return 0;
}

unsigned char *mft_spill_take(struct mft_spill *s, size_t *len)
{
    if (mft_spill_on_disk(s))
        return NULL;
    unsigned char *b = s->buf ? s->buf : malloc(1);
    if (!b)
        return NULL;
    if (!s->buf)
        s->cap = 1;
    b[s->len] = '\0';
    *len = s->len;
    s->buf = NULL;
    s->len = s->cap = s->size = 0;
    return b;
}

void mft_spill_free(struct mft_spill *s)
{
    if (!s)
        return;
    if (s->map) {
        mft_map_unregister(s->map);
        munmap(s->map, s->map_len);
    }
    if (s->fd >= 0)
        close(s->fd);
    free(s->buf);
    mft_spill_init(s, s->dir, s->threshold);
}
