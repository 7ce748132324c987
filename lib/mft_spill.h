/*
 * mft_spill — bounded memory for large messages.
 *
 * A spill is an output buffer that stays in memory while it is small and moves
 * to an unlinked temporary file once it grows past a threshold; when writing
 * ends, the bytes are handed back as one read-only span (heap, or a mapping of
 * that file). The AS2 receive path writes every intermediate layer (decrypted,
 * inflated, transfer-decoded) into a spill, so a 4 GB message never needs
 * 4 GB of memory.
 *
 * Mapped pages still count as resident once touched. Code that walks a large
 * span sequentially calls mft_release() on what it has consumed: for a span
 * inside a mapping registered here (spill files, the ingress spool) the pages
 * are dropped from the process (the page cache keeps them; a later read faults
 * them back in); for any other memory it does nothing. So protocol code can
 * call it on any span without knowing where the span lives.
 *
 * Thread-safe: the registry of mappings is shared behind a mutex; a spill is
 * used by one thread.
 */
#ifndef MFT_SPILL_H
#define MFT_SPILL_H

#include "mft_err.h"

#include <stddef.h>

/* How far a sequential walk goes between two mft_release() calls. */
#define MFT_RELEASE_STEP ((size_t)1 << 20)

struct mft_spill {
    const char *dir;  /* directory for the temporary file; NULL = memory only */
    size_t threshold; /* bytes kept in memory before moving to the file */
    unsigned char *buf;
    size_t len, cap; /* in memory */
    int fd;          /* -1 until spilled */
    size_t size;     /* bytes written in all */
    void *map;       /* the file's mapping once finished */
    size_t map_len;
};

/* Starts an empty spill (dir is borrowed and must outlive it). */
void mft_spill_init(struct mft_spill *s, const char *dir, size_t threshold);

/* Appends n bytes. Returns 0 or -1 (MFT_E_NO_MEMORY, MFT_E_STORAGE). */
int mft_spill_write(struct mft_spill *s, const void *p, size_t n, struct mft_err *err);

/*
 * Ends writing and sets *p / *len to the bytes, owned by the spill until
 * mft_spill_free (*p is never NULL; an in-memory result is NUL-terminated).
 * Returns 0 or -1 (MFT_E_STORAGE: the file could not be mapped).
 */
int mft_spill_finish(struct mft_spill *s, const unsigned char **p, size_t *len,
                     struct mft_err *err);

/* For a memory-only spill: hands over the malloc'd, NUL-terminated buffer
 * (caller frees) and resets the spill. NULL when spilled to a file or on
 * allocation failure. */
unsigned char *mft_spill_take(struct mft_spill *s, size_t *len);

/* Whether the spill moved to a file. */
int mft_spill_on_disk(const struct mft_spill *s);

/* Frees what the spill holds (buffer, file, mapping); accepts NULL. */
void mft_spill_free(struct mft_spill *s);

/* Registers / unregisters a read-only mapping whose pages mft_release may drop. */
void mft_map_register(const void *p, size_t len);
void mft_map_unregister(const void *p);

/*
 * Drops from the process the pages from the one holding p up to the last
 * whole page before p + len, inside a registered mapping; does nothing for
 * other memory. Safe on any span of a mapping (the bytes stay readable), meant
 * for what a walk has consumed; cheap enough every MFT_RELEASE_STEP bytes.
 */
void mft_release(const void *p, size_t len);

#endif
