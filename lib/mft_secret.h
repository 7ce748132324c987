/*
 * mft_secret — private keys at rest: AES-256-GCM under the master key.
 *
 * The master key is 32 bytes given to the services as MFT_MASTER_KEY (64 hex
 * digits). A wrapped secret is the ASCII string
 *     "v1:" base64( nonce[12] | ciphertext | tag[16] )
 * with the record id (e.g. the station id) as additional authenticated data,
 * so a wrapped key copied into another record does not unwrap. Plaintext
 * buffers handed out by this module are secrets: free them with
 * mft_secret_free / mft_secret_free_str, which wipe before freeing.
 */
#ifndef MFT_SECRET_H
#define MFT_SECRET_H

#include "mft_err.h"

#include <stddef.h>

#define MFT_SECRET_KEY_LEN 32
#define MFT_SECRET_PREFIX "v1:"
/* Largest plaintext wrap / unwrap accept (a PEM private key is a few KiB). */
#define MFT_SECRET_MAX_PLAIN (1u << 20)

/* Parses 64 hex digits (either case, surrounding whitespace ignored) into key.
 * Returns 0, or -1 with MFT_E_CONFIG naming MFT_MASTER_KEY (the value itself
 * is never copied into err). */
int mft_secret_parse_master_key(const char *hex, unsigned char key[MFT_SECRET_KEY_LEN],
                                struct mft_err *err);

/*
 * Encrypts plain[0..len) under key with a fresh random nonce and aad (a
 * NUL-terminated record id, may be "" but not NULL). Returns 0 and a malloc'd
 * NUL-terminated "v1:..." string (not secret; free()), or -1 with err.
 */
int mft_secret_wrap(const unsigned char key[MFT_SECRET_KEY_LEN], const char *aad, const void *plain,
                    size_t len, char **wrapped, struct mft_err *err);

/*
 * Decrypts a "v1:..." string under key and aad. Returns 0 and a malloc'd
 * plaintext (with a NUL after its *len bytes; len may be NULL) to be freed with
 * mft_secret_free(plain, len) or mft_secret_free_str; or -1 with MFT_E_CONFIG
 * when the format is wrong or authentication fails (wrong master key, wrong
 * record, altered bytes — GCM cannot tell which).
 */
int mft_secret_unwrap(const unsigned char key[MFT_SECRET_KEY_LEN], const char *aad,
                      const char *wrapped, char **plain, size_t *len, struct mft_err *err);

/* Wipes len bytes then frees; accepts NULL. */
void mft_secret_free(void *p, size_t len);

/* Wipes a NUL-terminated string then frees it; accepts NULL. */
void mft_secret_free_str(char *s);

#endif
