/*
 * mft_payload — the payload store: a directory (a shared volume in a
 * cluster), one file per payload, written to a temporary name, fsync'd, then
 * renamed, so a file that exists under its final name is complete.
 *
 * Layout: <dir>/<message uuid>/<name>; temporaries in <dir>/.tmp/. Events
 * carry the claim check: file:// URI + size + SHA-256. Thread-safe: the store
 * holds only its directory path; each writer is used by one thread.
 */
#ifndef MFT_PAYLOAD_H
#define MFT_PAYLOAD_H

#include "mft_err.h"

#include <stddef.h>

struct mft_payload_store;
struct mft_payload_writer;

struct mft_payload_ref {
    char uri[4200];  /* file:///abs/path */
    char path[4096]; /* the file's absolute path */
    unsigned long long size;
    char sha256[65]; /* lowercase hex */
};

/* Creates dir (and dir/.tmp) when missing. Returns 0 or -1 (MFT_E_STORAGE). */
int mft_payload_open(const char *dir, struct mft_payload_store **out, struct mft_err *err);
void mft_payload_close(struct mft_payload_store *ps);

/* Starts a file <dir>/<uuid>/<name> (name: [A-Za-z0-9._-], checked). */
int mft_payload_begin(struct mft_payload_store *ps, const char *uuid, const char *name,
                      struct mft_payload_writer **out, struct mft_err *err);
/* Appends bytes (hashing as it goes). Returns 0 or -1 (MFT_E_STORAGE: disk full ...). */
int mft_payload_write(struct mft_payload_writer *w, const void *data, size_t len,
                      struct mft_err *err);
/* fsyncs, renames into place, fsyncs the directory; fills *ref; frees w.
 * Returns 0, or -1 (the temporary is removed). */
int mft_payload_commit(struct mft_payload_writer *w, struct mft_payload_ref *ref,
                       struct mft_err *err);
/* Maps what was written so far (read-only) for processing; *ptr is NULL for an
 * empty file. The mapping is registered with mft_spill, so walks over it may
 * release its pages (mft_release). Unmap with mft_payload_unmap. Returns 0 or -1. */
int mft_payload_map(struct mft_payload_writer *w, const unsigned char **ptr, size_t *len,
                    struct mft_err *err);
void mft_payload_unmap(const unsigned char *ptr, size_t len);

/* The store's directory for temporaries ("<dir>/.tmp"), same file system. */
const char *mft_payload_tmp_dir(const struct mft_payload_store *ps);

/* Bytes written so far. */
unsigned long long mft_payload_size(const struct mft_payload_writer *w);

/* Drops an unfinished file; accepts NULL. */
void mft_payload_abort(struct mft_payload_writer *w);

/* Whole-buffer convenience: begin + write + commit. */
int mft_payload_put(struct mft_payload_store *ps, const char *uuid, const char *name,
                    const void *data, size_t len, struct mft_payload_ref *ref, struct mft_err *err);

/* Removes <dir>/<uuid> and what it holds (used when a message is not kept). */
void mft_payload_remove_message(struct mft_payload_store *ps, const char *uuid);

/* Checks that the store is writable (creates and removes a probe file). */
int mft_payload_check(struct mft_payload_store *ps, struct mft_err *err);

#endif
