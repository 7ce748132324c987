/*
 * mft_secret — AES-256-GCM wrapping of private keys stored in Redis.
 *
 * mftctl (and later certd) wraps; the registry unwraps at load. Stateless and
 * thread-safe: each call has its own EVP_CIPHER_CTX, nonces come from
 * RAND_bytes (96 bits, random: a master key wraps far fewer than 2^32 keys).
 * Every plaintext buffer this module allocates or copies through is cleansed
 * before it is freed; the master key is never logged or put in an error.
 */
#include "mft_secret.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define NONCE_LEN 12
#define TAG_LEN 16
#define PREFIX_LEN 3

void mft_secret_free(void *p, size_t len)
{
    if (p) {
        OPENSSL_cleanse(p, len);
        free(p);
    }
}

void mft_secret_free_str(char *s)
{
    if (s)
        mft_secret_free(s, strlen(s));
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int mft_secret_parse_master_key(const char *hex, unsigned char key[MFT_SECRET_KEY_LEN],
                                struct mft_err *err)
{
    size_t n;
    if (!hex)
        return mft_err_set(err, MFT_E_CONFIG, "MFT_MASTER_KEY is not set");
    while (isspace((unsigned char)*hex))
        hex++;
    n = strlen(hex);
    while (n > 0 && isspace((unsigned char)hex[n - 1]))
        n--;
    if (n != 2 * MFT_SECRET_KEY_LEN)
        return mft_err_set(err, MFT_E_CONFIG,
                           "MFT_MASTER_KEY must be 64 hex digits (32 bytes), got %zu characters",
                           n);
    for (size_t i = 0; i < MFT_SECRET_KEY_LEN; i++) {
        int hi = hexval((unsigned char)hex[2 * i]), lo = hexval((unsigned char)hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            OPENSSL_cleanse(key, MFT_SECRET_KEY_LEN);
            return mft_err_set(err, MFT_E_CONFIG,
                               "MFT_MASTER_KEY must be 64 hex digits: non-hex character at %zu",
                               2 * i + (hi < 0 ? 0 : 1));
        }
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int mft_secret_wrap(const unsigned char key[MFT_SECRET_KEY_LEN], const char *aad, const void *plain,
                    size_t len, char **wrapped, struct mft_err *err)
{
    int rc = -1, outl = 0, finl = 0;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *raw = NULL;
    char *txt = NULL;
    size_t rawlen = NONCE_LEN + len + TAG_LEN, b64len;

    *wrapped = NULL;
    if (!aad || (!plain && len) || len > MFT_SECRET_MAX_PLAIN)
        return mft_err_set(err, MFT_E_INTERNAL, "mft_secret_wrap: bad arguments");
    raw = malloc(rawlen);
    b64len = 4 * ((rawlen + 2) / 3);
    txt = malloc(PREFIX_LEN + b64len + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (!raw || !txt || !ctx) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (RAND_bytes(raw, NONCE_LEN) != 1 ||
        !EVP_EncryptInit_ex2(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) ||
        !EVP_EncryptInit_ex2(ctx, NULL, key, raw, NULL) ||
        !EVP_EncryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad, (int)strlen(aad)) ||
        !EVP_EncryptUpdate(ctx, raw + NONCE_LEN, &outl, plain, (int)len) ||
        !EVP_EncryptFinal_ex(ctx, raw + NONCE_LEN + outl, &finl) || (size_t)(outl + finl) != len ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, raw + NONCE_LEN + len)) {
        mft_err_set(err, MFT_E_INTERNAL, "AES-256-GCM encryption failed");
        mft_err_openssl(err);
        goto out;
    }
    memcpy(txt, MFT_SECRET_PREFIX, PREFIX_LEN);
    if (EVP_EncodeBlock((unsigned char *)txt + PREFIX_LEN, raw, (int)rawlen) != (int)b64len) {
        mft_err_set(err, MFT_E_INTERNAL, "base64 encoding failed");
        goto out;
    }
    txt[PREFIX_LEN + b64len] = '\0';
    *wrapped = txt;
    txt = NULL;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    free(raw); /* ciphertext only: not secret */
    free(txt);
    return rc;
}

int mft_secret_unwrap(const unsigned char key[MFT_SECRET_KEY_LEN], const char *aad,
                      const char *wrapped, char **plain, size_t *len, struct mft_err *err)
{
    int rc = -1, outl = 0, finl = 0, declen;
    EVP_CIPHER_CTX *ctx = NULL;
    unsigned char *raw = NULL, *pt = NULL;
    size_t b64len, rawcap, rawlen = 0, ctlen = 0;
    const char *b64;

    *plain = NULL;
    if (len)
        *len = 0;
    if (!aad || !wrapped || strncmp(wrapped, MFT_SECRET_PREFIX, PREFIX_LEN) != 0)
        return mft_err_set(err, MFT_E_CONFIG, "wrapped key: not in the \"v1:\" format");
    b64 = wrapped + PREFIX_LEN;
    b64len = strlen(b64);
    if (b64len == 0 || b64len % 4 != 0 || b64len > 4 * ((MFT_SECRET_MAX_PLAIN + 30) / 3 + 1))
        return mft_err_set(err, MFT_E_CONFIG, "wrapped key: bad base64 length");
    rawcap = b64len / 4 * 3;
    raw = malloc(rawcap);
    if (!raw)
        return mft_err_set(err, MFT_E_NO_MEMORY, NULL);
    declen = EVP_DecodeBlock(raw, (const unsigned char *)b64, (int)b64len);
    if (declen < 0) {
        mft_err_set(err, MFT_E_CONFIG, "wrapped key: bad base64");
        goto out;
    }
    /* EVP_DecodeBlock counts the '=' padding as zero bytes */
    rawlen = (size_t)declen;
    if (b64[b64len - 1] == '=')
        rawlen--;
    if (b64[b64len - 2] == '=')
        rawlen--;
    if (rawlen < NONCE_LEN + TAG_LEN) {
        mft_err_set(err, MFT_E_CONFIG, "wrapped key: too short");
        goto out;
    }
    ctlen = rawlen - NONCE_LEN - TAG_LEN;
    pt = malloc(ctlen + 1);
    ctx = EVP_CIPHER_CTX_new();
    if (!pt || !ctx) {
        mft_err_set(err, MFT_E_NO_MEMORY, NULL);
        goto out;
    }
    if (!EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) ||
        !EVP_DecryptInit_ex2(ctx, NULL, key, raw, NULL) ||
        !EVP_DecryptUpdate(ctx, NULL, &outl, (const unsigned char *)aad, (int)strlen(aad)) ||
        !EVP_DecryptUpdate(ctx, pt, &outl, raw + NONCE_LEN, (int)ctlen) ||
        !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, raw + NONCE_LEN + ctlen) ||
        EVP_DecryptFinal_ex(ctx, pt + outl, &finl) <= 0 || (size_t)(outl + finl) != ctlen) {
        ERR_clear_error();
        mft_err_set(err, MFT_E_CONFIG,
                    "wrapped key does not decrypt: wrong MFT_MASTER_KEY, or the record was "
                    "altered or copied from another record");
        goto out;
    }
    pt[ctlen] = '\0';
    *plain = (char *)pt;
    if (len)
        *len = ctlen;
    pt = NULL;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    mft_secret_free(pt, ctlen + 1);
    free(raw);
    return rc;
}
